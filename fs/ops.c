/* The FUSE low-level operations table: one handler per operation, each ending in exactly one
 * fuse_reply_*.  Handlers translate between FUSE's types and the daemon's functions, which
 * return -errno; nothing here decides overlay semantics. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ovl.h"

#define FS(req) ((struct ovl_fs *)fuse_req_userdata(req))
#define INODE(req, id) ovl_inode_from_id(FS(req), (id))
#define FILE_OF(fi) ((struct ovl_file *)(uintptr_t)(fi)->fh)

static void reply_entry(fuse_req_t req, int r, const struct fuse_entry_param *e)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ovl_fs *fs = userdata;
	/* requests are read, not spliced: libfuse splices each request into a pipe and then reads
	 * all but large writes out of it again, one more syscall per request; a large write costs
	 * the same two copies either way (into the pipe and out of it, or into memory and out) */
	unsigned want = FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_PARALLEL_DIROPS |
			FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_ASYNC_READ |
			FUSE_CAP_CACHE_SYMLINKS;
	if (fs->cfg.writeback)
		want |= FUSE_CAP_WRITEBACK_CACHE;
	/* the kernel enforces ACLs and sends modes unmasked with the umask beside them: whether
	 * the umask applies depends on the parent's default ACL, which the daemon reads */
	if (fs->acl)
		want |= FUSE_CAP_POSIX_ACL;
	want |= FUSE_CAP_DONT_MASK;
	conn->want |= want & conn->capable;
	fs->acl = (conn->want & FUSE_CAP_POSIX_ACL) != 0;
	/* no automatic page-cache invalidation on mtime change: lower files never change and the
	 * upper changes only through this mount */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_write = fs->cfg.max_write ? fs->cfg.max_write : 1u << 20;
	conn->max_readahead = 1u << 20;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ovl_fs *fs = FS(req);
	struct fuse_entry_param e;
	int r = ovl_lookup(fs, INODE(req, parent), name, &e);
	if (r == -ENOENT) {
		/* a negative entry the kernel may cache: lower layers never change and every change
		 * of the upper passes through the kernel */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, r, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ovl_inode_forget(FS(req), INODE(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		ovl_inode_forget(FS(req), INODE(req, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	int r = ovl_getattr(FS(req), INODE(req, ino), &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, FS(req)->timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct ovl_fs *fs = FS(req);
	struct ovl_inode *in = INODE(req, ino);
	int fd = fi ? ovl_file_get(fs, FILE_OF(fi)) : -1;
	int r = ovl_setattr(fs, in, attr, valid, fd);
	/* a chown or truncate the kernel marked: the kill flag comes without a mode */
	if (r == 0 && ovl_loop_kill_suidgid)
		r = ovl_kill_suidgid(fs, in, fd);
	if (fi)
		ovl_file_put(FILE_OF(fi));
	struct stat st;
	if (r == 0)
		r = ovl_getattr(fs, in, &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int r = ovl_readlink(FS(req), INODE(req, ino), buf, sizeof(buf));
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, buf);
}

static void create_args(fuse_req_t req, struct ovl_create_args *a, mode_t mode)
{
	struct ovl_fs *fs = FS(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	memset(a, 0, sizeof(*a));
	a->mode = mode;
	a->open_flags = -1;
	/* sent with mknod, mkdir and create (0 for the rest, which take no umask) */
	a->umask = ctx->umask;
	a->uid = ovl_uid_to_disk(fs, ctx->uid);
	a->gid = ovl_gid_to_disk(fs, ctx->gid);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct ovl_create_args a;
	create_args(req, &a, mode);
	a.rdev = rdev;
	struct fuse_entry_param e;
	reply_entry(req, ovl_create(FS(req), INODE(req, parent), name, &a, &e, NULL), &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ovl_create_args a;
	create_args(req, &a, S_IFDIR | (mode & 07777));
	struct fuse_entry_param e;
	reply_entry(req, ovl_create(FS(req), INODE(req, parent), name, &a, &e, NULL), &e);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct ovl_create_args a;
	create_args(req, &a, S_IFLNK | 0777);
	a.link = link;
	struct fuse_entry_param e;
	reply_entry(req, ovl_create(FS(req), INODE(req, parent), name, &a, &e, NULL), &e);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct ovl_create_args a;
	create_args(req, &a, S_IFREG);
	a.link_src = INODE(req, ino);
	struct fuse_entry_param e;
	reply_entry(req, ovl_create(FS(req), INODE(req, newparent), newname, &a, &e, NULL), &e);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -ovl_unlink(FS(req), INODE(req, parent), name, false));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -ovl_unlink(FS(req), INODE(req, parent), name, true));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, -ovl_rename(FS(req), INODE(req, parent), name, INODE(req, newparent),
					newname, flags));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = FS(req);
	bool keep = false;
	struct ovl_file *f;
	int r = ovl_open(fs, INODE(req, ino), fi->flags, &keep, &f);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	/* an O_TRUNC open the kernel marked (FUSE_OPEN_KILL_SUIDGID) */
	if (ovl_loop_kill_suidgid) {
		r = ovl_kill_suidgid(fs, INODE(req, ino), ovl_file_get(fs, f));
		ovl_file_put(f);
	}
	if (r < 0) {
		ovl_file_release(fs, f);
		fuse_reply_err(req, -r);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_WRONLY && !(fi->flags & (O_TRUNC | O_NOATIME)))
		ovl_times_accessed(fs, INODE(req, ino));
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->keep_cache = keep;
	/* closing a handle that cannot have written needs no FLUSH round trip: there is nothing
	 * for the backing filesystem to write back or report, and locks are the kernel's */
	fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
	if (fuse_reply_open(req, fi) == -ENOENT)
		ovl_file_release(fs, f); /* the request was interrupted */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct ovl_fs *fs = FS(req);
	struct ovl_create_args a;
	create_args(req, &a, S_IFREG | (mode & 07777));
	int flags = ovl_backing_flags(fs, fi->flags);
	a.open_flags = flags;
	struct fuse_entry_param e;
	int fd = -1;
	int r = ovl_loop_tmpfile ? ovl_tmpfile(fs, INODE(req, parent), &a, &e, &fd)
				 : ovl_create(fs, INODE(req, parent), name, &a, &e, &fd);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	struct ovl_file *f;
	r = ovl_file_new(fs, ovl_inode_from_id(fs, e.ino), fd,
			 flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_TMPFILE), &f);
	if (r < 0) {
		close(fd);
		ovl_inode_forget(fs, ovl_inode_from_id(fs, e.ino), 1);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->keep_cache = 1;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		ovl_file_release(fs, f);
}

/* Reads up to this size are copied through memory: pread and one writev, where a splice
 * reply takes a vmsplice of the header and two splices (and a pipe's pages) to save a copy that
 * costs less than those calls at this size. */
#define READ_COPY_MAX (64u << 10)

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	struct ovl_file *f = FILE_OF(fi);
	if (size <= READ_COPY_MAX) {
		char *mem = malloc(size ? size : 1);
		if (!mem) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		ssize_t n = pread(ovl_file_get(FS(req), f), mem, size, off);
		int e = errno;
		ovl_file_put(f);
		if (n < 0)
			fuse_reply_err(req, e);
		else
			fuse_reply_buf(req, mem, (size_t)n);
		free(mem);
		return;
	}
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = ovl_file_get(FS(req), f);
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
	ovl_file_put(f);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in_buf, off_t off,
			 struct fuse_file_info *fi)
{
	(void)ino;
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in_buf));
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	struct ovl_file *f = FILE_OF(fi);
	out.buf[0].fd = ovl_file_get(FS(req), f);
	out.buf[0].pos = off;
	/* a write through the cache of a set-id file by a caller without CAP_FSETID */
	int k = ovl_loop_kill_suidgid ? ovl_kill_suidgid(FS(req), f->in, out.buf[0].fd) : 0;
	if (k < 0) {
		ovl_file_put(f);
		fuse_reply_err(req, -k);
		return;
	}
	ovl_times_data_begin(FS(req), f->in, out.buf[0].fd);
	ssize_t r = fuse_buf_copy(&out, in_buf, 0);
	ovl_times_data_end(FS(req), f->in, out.buf[0].fd);
	ovl_file_put(f);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	ovl_file_release(FS(req), FILE_OF(fi));
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int r = 0;
	if (!FS(req)->cfg.no_fsync) {
		int fd = ovl_file_get(FS(req), FILE_OF(fi));
		r = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0;
		ovl_file_put(FILE_OF(fi));
	}
	fuse_reply_err(req, r);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_dir *d;
	int r = ovl_dir_open(FS(req), INODE(req, ino), &d);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (!(fi->flags & O_NOATIME))
		ovl_times_accessed(FS(req), INODE(req, ino));
	fi->fh = (uint64_t)(uintptr_t)d;
	/* the kernel may keep listings: lower dirs never change, and it drops its copy itself when
	 * a directory changes through the mount */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		ovl_dir_free(FS(req), d);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct ovl_dir *d = (struct ovl_dir *)(uintptr_t)fi->fh;
	int r = ovl_dir_read(FS(req), req, INODE(req, ino), d, buf, size, off, plus);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	ovl_dir_free(FS(req), (struct ovl_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)fi;
	struct ovl_fs *fs = FS(req);
	struct ovl_inode *in = INODE(req, ino);
	int r = 0;
	if (!fs->cfg.no_fsync) {
		pthread_rwlock_rdlock(&in->lock);
		int fd = ovl_reopen(in->node.fd, O_RDONLY | O_DIRECTORY);
		pthread_rwlock_unlock(&in->lock);
		if (fd < 0)
			r = -fd;
		else {
			r = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0;
			close(fd);
		}
	}
	fuse_reply_err(req, r);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv;
	int r = ovl_statfs(FS(req), &sv);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_statfs(req, &sv);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	fuse_reply_err(req, -ovl_setxattr(FS(req), INODE(req, ino), name, value, size, flags));
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t r = ovl_getxattr(FS(req), INODE(req, ino), name, buf, size);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)r);
	else
		fuse_reply_xattr(req, (size_t)r);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t r = ovl_listxattr(FS(req), INODE(req, ino), buf, size);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)r);
	else
		fuse_reply_xattr(req, (size_t)r);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -ovl_removexattr(FS(req), INODE(req, ino), name));
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	/* the kernel checks permissions (default_permissions); only writes to a read-only mount
	 * are refused here */
	struct ovl_fs *fs = FS(req);
	(void)ino;
	fuse_reply_err(req, (mask & W_OK) && (!fs->has_upper || fs->read_only) ? EROFS : 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)ino;
	struct ovl_file *f = FILE_OF(fi);
	int fd = ovl_file_get(FS(req), f);
	ovl_times_data_begin(FS(req), f->in, fd);
	int r = fallocate(fd, mode, off, len) < 0 ? errno : 0;
	ovl_times_data_end(FS(req), f->in, fd);
	ovl_file_put(f);
	fuse_reply_err(req, r);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)ino;
	off_t r = lseek(ovl_file_get(FS(req), FILE_OF(fi)), off, whence);
	int e = errno;
	ovl_file_put(FILE_OF(fi));
	if (r < 0)
		fuse_reply_err(req, e);
	else
		fuse_reply_lseek(req, r);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in, (void)ino_out;
	loff_t in = off_in, out = off_out;
	struct ovl_file *fin = FILE_OF(fi_in), *fout = FILE_OF(fi_out);
	int ifd = ovl_file_get(FS(req), fin);
	int ofd = fin == fout ? ifd : ovl_file_get(FS(req), fout);
	ovl_times_data_begin(FS(req), fout->in, ofd);
	ssize_t r = copy_file_range(ifd, &in, ofd, &out, len, (unsigned)flags);
	int e = errno;
	ovl_times_data_end(FS(req), fout->in, ofd);
	if (fout != fin)
		ovl_file_put(fout);
	ovl_file_put(fin);
	if (r < 0)
		fuse_reply_err(req, e);
	else
		fuse_reply_write(req, (size_t)r);
}

/* No flush operation: the kernel then sends no FLUSH on close (it writes back a handle's dirty
 * pages and reports their errors itself), which costs a round trip per close otherwise (the
 * writeback cache ignores FOPEN_NOFLUSH).  The upper filesystems overlays use (ext4, xfs, btrfs,
 * tmpfs) have no flush operation of their own to pass a close on to; the backing fd is closed at
 * release. */
const struct fuse_lowlevel_ops ovl_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .link = op_link,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write_buf = op_write_buf,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
    .copy_file_range = op_copy_file_range,
};
