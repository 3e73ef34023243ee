/* Opening files for I/O.  Opening for writing copies the data up first (or, with O_TRUNC, only the
 * metadata); reading a metacopy file reads its lower data.  The returned fd serves read, write,
 * fsync, fallocate, lseek and copy_file_range directly (see ops.c). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "ovl.h"

int ovl_reopen(int fd, int flags)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	int r = open(proc, (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC);
	return r < 0 ? -errno : r;
}

int ovl_open(struct ovl_fs *fs, struct ovl_inode *in, int flags, bool *ret_keep_cache)
{
	int acc = flags & O_ACCMODE;
	bool writing = acc != O_RDONLY || (flags & O_TRUNC);
	if (writing) {
		if (!fs->has_upper || fs->read_only)
			return -EROFS;
		int r = ovl_copy_up(fs, in, (flags & O_TRUNC) ? OVL_COPY_EMPTY : OVL_COPY_DATA);
		if (r < 0)
			return r;
	}
	if (fs->cfg.writeback) {
		/* the kernel reads pages to fill partial writes, and it tracks the append offset */
		if (acc == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	pthread_rwlock_rdlock(&in->lock);
	int src = in->node.metacopy && in->node.data_fd >= 0 && !writing ? in->node.data_fd : in->node.fd;
	int fd = ovl_reopen(src, flags);
	pthread_rwlock_unlock(&in->lock);
	/* lower layers never change and upper files change only through this mount */
	*ret_keep_cache = true;
	return fd;
}
