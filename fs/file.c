/* Opening files for I/O.  Opening for writing copies the data up first (or, with O_TRUNC, only the
 * metadata); reading a metacopy file reads its lower data.  The returned fd serves read, write,
 * fsync, fallocate, lseek and copy_file_range directly (see ops.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "ovl.h"

int ovl_reopen(int fd, int flags)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	flags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC;
	int r = (flags & O_ACCMODE) == O_RDONLY && !(flags & O_PATH)
		    ? lyr_open_noatime(AT_FDCWD, proc, flags)
		    : open(proc, flags);
	return r < 0 ? -errno : r;
}

static struct ovl_file *file_alloc(struct ovl_fs *fs, struct ovl_inode *in, int fd, int flags,
				   bool lower, uint64_t gen)
{
	struct ovl_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	pthread_rwlock_init(&f->lock, NULL);
	f->fd = fd;
	f->flags = flags;
	f->in = in;
	f->lower = lower;
	f->gen = gen;
	ovl_inode_ref(fs, in);
	return f;
}

int ovl_backing_flags(const struct ovl_fs *fs, int flags)
{
	if (fs->cfg.writeback) {
		/* the kernel reads pages to fill partial writes, and it tracks the append offset */
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	/* the kernel already sends a program's O_DIRECT I/O past its page cache, as requests of
	 * whatever offset and size the program used; the daemon serves them from and into its
	 * own unaligned buffers, which a backing file opened O_DIRECT would refuse (EINVAL) */
	return flags & ~O_DIRECT;
}

int ovl_open(struct ovl_fs *fs, struct ovl_inode *in, int flags, bool *ret_keep_cache,
	     struct ovl_file **ret)
{
	bool writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	if (writing) {
		if (!fs->has_upper || fs->read_only)
			return -EROFS;
		int r = ovl_copy_up(fs, in, (flags & O_TRUNC) ? OVL_COPY_EMPTY : OVL_COPY_DATA);
		if (r < 0)
			return r;
	}
	flags = ovl_backing_flags(fs, flags);
	uint64_t gen = atomic_load(&in->data_gen);
	int r = ovl_inode_rdlock(fs, in);
	if (r < 0)
		return r;
	bool meta = in->node.metacopy && in->node.data_fd >= 0;
	int src = meta && !writing ? in->node.data_fd : in->node.fd;
	bool lower = meta || (fs->has_upper && in->node.layer != 0);
	int fd = ovl_reopen(src, flags);
	pthread_rwlock_unlock(&in->lock);
	if (fd < 0)
		return fd;
	struct ovl_file *f = file_alloc(fs, in, fd, flags & ~O_TRUNC, lower && !writing, gen);
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	/* lower layers never change and upper files change only through this mount */
	*ret_keep_cache = true;
	*ret = f;
	return 0;
}

int ovl_file_new(struct ovl_fs *fs, struct ovl_inode *in, int fd, int flags, struct ovl_file **ret)
{
	struct ovl_file *f = file_alloc(fs, in, fd, flags, false, 0);
	if (!f)
		return -ENOMEM;
	*ret = f;
	return 0;
}

int ovl_file_get(struct ovl_fs *fs, struct ovl_file *f)
{
	pthread_rwlock_rdlock(&f->lock);
	if (!f->lower || atomic_load(&f->in->data_gen) == f->gen)
		return f->fd;
	pthread_rwlock_unlock(&f->lock);
	pthread_rwlock_wrlock(&f->lock);
	uint64_t gen = atomic_load(&f->in->data_gen);
	if (f->lower && gen != f->gen && ovl_inode_rdlock(fs, f->in) == 0) {
		struct ovl_inode *in = f->in;
		bool meta = in->node.metacopy && in->node.data_fd >= 0;
		int fd = ovl_reopen(meta ? in->node.data_fd : in->node.fd, f->flags);
		bool lower = meta || in->node.layer != 0;
		pthread_rwlock_unlock(&in->lock);
		if (fd >= 0) {
			close(f->fd);
			f->fd = fd;
			f->lower = lower;
			f->gen = gen;
		}
	}
	pthread_rwlock_unlock(&f->lock);
	pthread_rwlock_rdlock(&f->lock);
	return f->fd;
}

void ovl_file_put(struct ovl_file *f)
{
	pthread_rwlock_unlock(&f->lock);
}

void ovl_file_release(struct ovl_fs *fs, struct ovl_file *f)
{
	/* a read replies while it holds the lock (the reply splices from the fd), and the kernel
	 * may send the release as soon as it has that reply: wait for the reader to let go */
	pthread_rwlock_wrlock(&f->lock);
	pthread_rwlock_unlock(&f->lock);
	close(f->fd);
	ovl_inode_unref(fs, f->in);
	pthread_rwlock_destroy(&f->lock);
	free(f);
}
