/* Copy-up: making the upper layer hold an object that so far lives only in a lower layer.
 *
 * An object is built under a temporary name in the work directory (same filesystem as the
 * upper), completed (data, xattrs, origin inode, owner, mode, times: times last), and renamed
 * into its upper parent, so a crash never leaves a half-copied object visible.  Directories are
 * copied up parents first.  Regular files can be copied up metadata only: the upper file gets the
 * lower file's size as a hole and an overlay.metacopy xattr (kernel overlayfs' format: empty
 * value) plus, where the data is not at the same path below (an index copy), an absolute
 * overlay.redirect naming where it is, so chmod, chown, utimes,
 * xattr changes, rename and link copy no data.  The data follows in place on the first open for
 * writing (FICLONE, then copy_file_range, then read/write; holes are kept).
 *
 * Locking: the inode's cu_lock is held for the whole copy (so one copy-up per object at a time,
 * and no rename or unlink of it meanwhile); the parent's and the inode's rwlocks are taken, in
 * that order, only around the final rename and the swap of the inode's node. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ovl.h"

void ovl_tmp_name(struct ovl_fs *fs, char name[32])
{
	/* the work dir is emptied at every mount, so a sequence number is unique enough */
	uint64_t seq = atomic_fetch_add(&fs->tmp_seq, 1);
	snprintf(name, 32, "#%llx", (unsigned long long)seq);
}

int ovl_set_private_xattr(struct ovl_fs *fs, int fd, const char *suffix, const void *value,
			  size_t size)
{
	char name[128], proc[64];
	snprintf(name, sizeof(name), "%s%s", fs->xattr_prefix, suffix);
	ovl_proc_path(fd, proc);
	return setxattr(proc, name, value, size, 0) < 0 ? -errno : 0;
}

static void remove_private_xattr(int fd, const char *suffix)
{
	static const char *const ns[] = {"trusted.overlay.", "user.overlay."};
	char name[128], proc[64];
	ovl_proc_path(fd, proc);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(ns); i++) {
		snprintf(name, sizeof(name), "%s%s", ns[i], suffix);
		removexattr(proc, name);
	}
}

int ovl_make_whiteout(struct ovl_fs *fs, int dirfd, const char *name)
{
	(void)fs;
	return mknodat(dirfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0 ? -errno : 0;
}

static int copy_range_rw(int src, int dst, off_t off, off_t end)
{
	char buf[1 << 16];
	while (off < end) {
		size_t want = (size_t)(end - off) < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
		ssize_t n = pread(src, buf, want, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(dst, buf + done, (size_t)(n - done), off + done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			done += w;
		}
		off += n;
	}
	return 0;
}

/* Bytes copied between starts of writeback when the copy is to be synced. */
#define WRITEBACK_CHUNK (32 << 20)

static int copy_range(int src, int dst, off_t off, off_t end, bool *use_cfr, bool writeback)
{
	while (*use_cfr && off < end) {
		loff_t in = off, out = off;
		size_t len = (size_t)(end - off);
		if (writeback && len > WRITEBACK_CHUNK)
			len = WRITEBACK_CHUNK;
		ssize_t n = copy_file_range(src, &in, dst, &out, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			    errno == EOPNOTSUPP || errno == EBADF) {
				*use_cfr = false;
				break;
			}
			return -errno;
		}
		if (n == 0)
			return 0;
		/* the disk writes the copy while the rest is copied, instead of all of it in
		 * the fdatasync that follows */
		if (writeback)
			sync_file_range(dst, off, n, SYNC_FILE_RANGE_WRITE);
		off += n;
	}
	return off < end ? copy_range_rw(src, dst, off, end) : 0;
}

/* Copies SIZE bytes of SRC into DST (both open for I/O), keeping holes.  WRITEBACK: the caller
 * syncs DST afterwards, so its writeback is started as the copy goes. */
static int copy_data(int src, int dst, off_t size, bool writeback)
{
	if (size == 0)
		return ftruncate(dst, 0) < 0 ? -errno : 0;
	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	bool use_cfr = true;
	off_t off = 0;
	while (off < size) {
		off_t data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break; /* only a hole remains */
			/* no SEEK_DATA support: copy everything */
			int r = copy_range(src, dst, off, size, &use_cfr, writeback);
			if (r < 0)
				return r;
			break;
		}
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		int r = copy_range(src, dst, data, hole, &use_cfr, writeback);
		if (r < 0)
			return r;
		off = hole;
	}
	return ftruncate(dst, size) < 0 ? -errno : 0;
}

/* Owner, mode and times of ST onto the object at O_PATH FD (times last: the rest changes ctime
 * only). */
static int copy_meta(struct ovl_fs *fs, int fd, const struct stat *st)
{
	/* EINVAL: an owner the user namespace we run in cannot name; the copy then belongs to us,
	 * which is what an unprivileged copy gets anyway */
	if (fchownat(fd, "", st->st_uid, st->st_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 &&
	    errno != EINVAL && (fs->privileged || errno != EPERM))
		return -errno;
	if (!S_ISLNK(st->st_mode)) {
		char proc[64];
		ovl_proc_path(fd, proc);
		if (chmod(proc, st->st_mode & 07777) < 0)
			return -errno;
	}
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	if (utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int set_origin(struct ovl_fs *fs, int fd, uint64_t ino, mode_t type)
{
	char v[32];
	int n = snprintf(v, sizeof(v), "%llu", (unsigned long long)ino);
	int r = ovl_set_private_xattr(fs, fd, LYR_OVL_INO, v, (size_t)n);
	/* user.* xattrs are not allowed on symlinks and devices: such objects keep the upper's
	 * inode number after copy-up */
	if (r < 0 && !S_ISREG(type) && !S_ISDIR(type))
		return 0;
	return r;
}

/* Puts back the parent directory's times after a copy-up renamed an object into it: a copy-up
 * is not a change of the directory (kernel overlayfs does the same). */
static void keep_parent_times(int parent_upper, const struct stat *before)
{
	struct timespec ts[2] = {before->st_atim, before->st_mtim};
	utimensat(parent_upper, "", ts, AT_EMPTY_PATH);
}

/* Swaps in the upper copy of IN, now at NAME in PARENT's upper dir. */
static int refresh_node(struct ovl_fs *fs, struct ovl_inode *parent, struct ovl_inode *in,
			const char *name)
{
	lyr_stack_node node;
	int r = lyr_stack_lookup(fs->stack, &parent->node, name, &node);
	if (r < 0)
		return r;
	ovl_inode_set_node(fs, in, &node);
	return 0;
}

/* True when PATH (absolute in the merged view) is NAME in PARENT. */
static bool same_path(struct ovl_inode *parent, const char *name, const char *path)
{
	pthread_rwlock_rdlock(&parent->lock);
	const char *dir = parent->node.nparts ? parent->node.parts[0].path : NULL;
	size_t n = dir ? strlen(dir) : 0;
	if (n == 1 && dir[0] == '/')
		n = 0; /* the root */
	bool same = dir && strncmp(path, dir, n) == 0 && path[n] == '/' &&
		    strcmp(path + n + 1, name) == 0;
	pthread_rwlock_unlock(&parent->lock);
	return same;
}

/* Swaps in the upper copy of regular file IN just renamed to NAME in PARENT's upper dir, built
 * from what the copy-up knows instead of looked up again: OPATH (taken) is the copy, which
 * carries IN's st_ino as its origin; a metacopy's data is what IN showed before.  The caller
 * holds PARENT's and IN's locks exclusively.  Equal to refresh_node, without the walk of the
 * redirect from the root. */
static int adopt_copy(struct ovl_fs *fs, struct ovl_inode *parent, struct ovl_inode *in,
		      const char *name, int *opath, bool metacopy)
{
	int data = in->node.data_fd >= 0 ? in->node.data_fd : in->node.fd;
	if (parent->node.nparts == 0 || parent->node.parts[0].layer != 0 || (metacopy && data < 0))
		return refresh_node(fs, parent, in, name);
	lyr_stack_node n;
	memset(&n, 0, sizeof(n));
	n.fd = n.data_fd = -1;
	if (fstatat(*opath, "", &n.st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return refresh_node(fs, parent, in, name);
	if (asprintf(&n.lower_path, "%s/%s", parent->node.parts[0].path, name) < 0)
		return -ENOMEM;
	if (metacopy) {
		n.data_fd = fcntl(data, F_DUPFD_CLOEXEC, 3);
		if (n.data_fd < 0) {
			int r = -errno;
			free(n.lower_path);
			return r;
		}
		n.metacopy = true;
		n.data_layer = in->node.data_fd >= 0 ? in->node.data_layer : in->node.layer;
		/* blocks come from the data copy, as a lookup reports them */
		n.st.st_blocks = in->node.st.st_blocks;
	}
	n.fd = *opath;
	*opath = -1;
	n.layer = 0;
	n.ino = in->ino;
	ovl_inode_set_node(fs, in, &n);
	return 0;
}

int ovl_copy_up_dir(struct ovl_fs *fs, struct ovl_inode *dir)
{
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	if (dir == fs->root)
		return 0;
	pthread_mutex_lock(&dir->cu_lock);
	pthread_rwlock_rdlock(&dir->lock);
	if (dir->node.layer == 0) {
		pthread_rwlock_unlock(&dir->lock);
		pthread_mutex_unlock(&dir->cu_lock);
		return 0;
	}
	struct ovl_inode *parent = dir->parent;
	_cleanup_free_ char *name = dir->name ? strdup(dir->name) : NULL;
	struct stat st = dir->node.st;
	_cleanup_close_ int src = fcntl(dir->node.fd, F_DUPFD_CLOEXEC, 3);
	if (parent)
		ovl_inode_ref(fs, parent);
	pthread_rwlock_unlock(&dir->lock);
	int r = 0;
	char tmp[32] = "";
	_cleanup_close_ int fd = -1;
	if (!parent || !name || src < 0) {
		r = src < 0 ? -errno : -ENOENT;
		goto out;
	}
	r = ovl_copy_up_dir(fs, parent);
	if (r < 0)
		goto out;
	ovl_tmp_name(fs, tmp);
	if (mkdirat(fs->work_fd, tmp, 0700) < 0) {
		r = -errno;
		tmp[0] = '\0';
		goto out;
	}
	fd = openat(fs->work_fd, tmp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if ((r = ovl_copy_xattrs(fs, src, fd)) < 0 ||
	    (r = set_origin(fs, fd, dir->ino, S_IFDIR)) < 0 || (r = copy_meta(fs, fd, &st)) < 0)
		goto out;
	pthread_rwlock_wrlock(&parent->lock);
	pthread_rwlock_wrlock(&dir->lock);
	struct stat pst;
	bool have_pst = fstat(parent->node.parts[0].fd, &pst) == 0;
	struct ovl_wscope ws = {0};
	ovl_writable_add(fs, &ws, parent->node.parts[0].fd);
	ovl_writable_add(fs, &ws, fd); /* a directory changing parent has its ".." rewritten */
	int rr = renameat(fs->work_fd, tmp, parent->node.parts[0].fd, name);
	int rerr = errno;
	ovl_writable_end(&ws);
	if (rr < 0) {
		r = -rerr;
	} else {
		tmp[0] = '\0';
		if (have_pst)
			keep_parent_times(parent->node.parts[0].fd, &pst);
		r = refresh_node(fs, parent, dir, name);
	}
	pthread_rwlock_unlock(&dir->lock);
	pthread_rwlock_unlock(&parent->lock);
out:
	if (tmp[0])
		unlinkat(fs->work_fd, tmp, AT_REMOVEDIR);
	if (parent)
		ovl_inode_unref(fs, parent);
	pthread_mutex_unlock(&dir->cu_lock);
	return r;
}

/* Completes the data of IN's upper metacopy file in place (or empties it). */
static int fill_metacopy(struct ovl_fs *fs, struct ovl_inode *in, enum ovl_copy_mode mode)
{
	int r = ovl_inode_rdlock(fs, in);
	if (r < 0)
		return r;
	_cleanup_close_ int dst = ovl_reopen(in->node.fd, O_WRONLY);
	_cleanup_close_ int src =
	    in->node.data_fd >= 0 ? ovl_reopen(in->node.data_fd, O_RDONLY) : -1;
	off_t size = in->node.st.st_size;
	pthread_rwlock_unlock(&in->lock);
	if (dst < 0)
		return dst;
	if (mode == OVL_COPY_EMPTY || src < 0)
		r = ftruncate(dst, 0) < 0 ? -errno : 0;
	else
		r = copy_data(src, dst, size, !fs->cfg.no_fsync);
	if (r < 0)
		return r;
	if (fs->cfg.no_fsync == false && mode == OVL_COPY_DATA)
		fdatasync(dst);
	remove_private_xattr(dst, LYR_OVL_METACOPY);
	remove_private_xattr(dst, LYR_OVL_REDIRECT);
	pthread_rwlock_wrlock(&in->lock);
	in->node.metacopy = false;
	if (in->node.data_fd >= 0)
		close(in->node.data_fd);
	in->node.data_fd = -1;
	fstat(dst, &in->node.st);
	atomic_fetch_add(&in->data_gen, 1);
	pthread_rwlock_unlock(&in->lock);
	return 0;
}

int ovl_copy_up(struct ovl_fs *fs, struct ovl_inode *in, enum ovl_copy_mode mode)
{
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	if (S_ISDIR(in->type))
		return ovl_copy_up_dir(fs, in);
	if (!S_ISREG(in->type) && mode != OVL_COPY_META)
		mode = OVL_COPY_META;
	pthread_mutex_lock(&in->cu_lock);
	int r = ovl_inode_rdlock(fs, in);
	if (r < 0) {
		pthread_mutex_unlock(&in->cu_lock);
		return r;
	}
	char tmp[32] = "";
	struct ovl_inode *parent = NULL;
	_cleanup_free_ char *name = NULL;
	_cleanup_free_ char *redirect = NULL;
	_cleanup_close_ int src = -1, data = -1, fd = -1, opath = -1;
	if (in->node.layer == 0) {
		bool meta = in->node.metacopy;
		pthread_rwlock_unlock(&in->lock);
		if (meta && mode != OVL_COPY_META)
			r = fill_metacopy(fs, in, mode);
		pthread_mutex_unlock(&in->cu_lock);
		return r;
	}
	struct stat st = in->node.st;
	parent = in->parent;
	if (parent)
		ovl_inode_ref(fs, parent);
	name = in->name ? strdup(in->name) : NULL;
	src = fcntl(in->node.fd, F_DUPFD_CLOEXEC, 3);
	if (S_ISREG(st.st_mode) && mode == OVL_COPY_DATA)
		data = ovl_reopen(in->node.data_fd >= 0 ? in->node.data_fd : in->node.fd, O_RDONLY);
	pthread_rwlock_unlock(&in->lock);
	if (!parent || !name || src < 0) {
		r = src < 0 ? -errno : -ENOENT;
		goto out;
	}
	if (data < 0 && S_ISREG(st.st_mode) && mode == OVL_COPY_DATA) {
		r = data;
		goto out;
	}
	if ((r = ovl_copy_up_dir(fs, parent)) < 0)
		goto out;
	if (S_ISREG(st.st_mode) && mode == OVL_COPY_META &&
	    (r = ovl_lower_path(fs, in, &redirect)) < 0)
		goto out;

	ovl_tmp_name(fs, tmp);
	/* a file of a lower hard-link group: one upper copy for the whole group, in the index */
	char idx[24] = "";
	if (S_ISREG(st.st_mode) && st.st_nlink > 1 && fs->index_fd >= 0) {
		/* before the copy appears in the index: a lookup that can find it checks there */
		atomic_store_explicit(&fs->index_used, true, memory_order_release);
		snprintf(idx, sizeof(idx), "%llu", (unsigned long long)in->ino);
		if (linkat(fs->index_fd, idx, fs->work_fd, tmp, 0) == 0)
			goto link_in; /* copied up before, through another name */
		if (errno != ENOENT) {
			r = -errno;
			tmp[0] = '\0';
			goto out;
		}
	}
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:
		fd = openat(fs->work_fd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
		if (fd < 0)
			break;
		if (mode == OVL_COPY_DATA) {
			r = copy_data(data, fd, st.st_size, !fs->cfg.no_fsync);
			if (r == 0 && !fs->cfg.no_fsync)
				fdatasync(fd);
		} else if (mode == OVL_COPY_META && ftruncate(fd, st.st_size) < 0) {
			r = -errno;
		}
		break;
	case S_IFLNK: {
		char target[4097];
		ssize_t n = readlinkat(src, "", target, sizeof(target) - 1);
		if (n < 0) {
			r = -errno;
			tmp[0] = '\0';
			goto out;
		}
		target[n] = '\0';
		if (symlinkat(target, fs->work_fd, tmp) < 0)
			fd = -1;
		else
			fd = -2;
		break;
	}
	default:
		fd = mknodat(fs->work_fd, tmp, st.st_mode & (S_IFMT | 0600), st.st_rdev) < 0 ? -1
											     : -2;
		break;
	}
	if (fd == -1) {
		r = -errno;
		tmp[0] = '\0';
		goto out;
	}
	if (r < 0)
		goto out;
	opath = openat(fs->work_fd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (opath < 0) {
		r = -errno;
		goto out;
	}
	if ((r = ovl_copy_xattrs(fs, src, opath)) < 0)
		goto out;
	if ((r = set_origin(fs, opath, in->ino, st.st_mode & S_IFMT)) < 0)
		goto out;
	if (redirect) {
		/* the data at the same path below needs no redirect: kernel overlayfs writes none
		 * there either, so the copy commits alike from both */
		bool here = !idx[0] && same_path(parent, name, redirect);
		if ((r = ovl_set_private_xattr(fs, opath, LYR_OVL_METACOPY, "", 0)) < 0 ||
		    (!here && (r = ovl_set_private_xattr(fs, opath, LYR_OVL_REDIRECT, redirect,
							 strlen(redirect))) < 0))
			goto out;
	}
	if ((r = copy_meta(fs, opath, &st)) < 0)
		goto out;
	if (idx[0]) {
		char v[32];
		int n = snprintf(v, sizeof(v), "%lu", (unsigned long)st.st_nlink);
		if ((r = ovl_set_private_xattr(fs, opath, "layerfs.nlink", v, (size_t)n)) < 0)
			goto out;
		if (linkat(fs->work_fd, tmp, fs->index_fd, idx, 0) < 0 && errno != EEXIST) {
			r = -errno;
			goto out;
		}
	}
link_in:
	pthread_rwlock_wrlock(&parent->lock);
	pthread_rwlock_wrlock(&in->lock);
	struct stat pst;
	bool have_pst = fstat(parent->node.parts[0].fd, &pst) == 0;
	struct ovl_wscope ws = {0};
	ovl_writable_add(fs, &ws, parent->node.parts[0].fd);
	int rr = renameat2(fs->work_fd, tmp, parent->node.parts[0].fd, name, RENAME_NOREPLACE);
	int rerr = errno;
	ovl_writable_end(&ws);
	if (rr < 0) {
		r = -rerr;
	} else {
		tmp[0] = '\0';
		if (have_pst)
			keep_parent_times(parent->node.parts[0].fd, &pst);
		r = S_ISREG(st.st_mode) && opath >= 0
			? adopt_copy(fs, parent, in, name, &opath, redirect != NULL)
			: refresh_node(fs, parent, in, name);
		if (idx[0])
			in->indexed = true;
		if (r == 0 && !in->node.metacopy)
			atomic_fetch_add(&in->data_gen, 1);
	}
	bool fill = r == 0 && in->node.metacopy && mode != OVL_COPY_META;
	pthread_rwlock_unlock(&in->lock);
	pthread_rwlock_unlock(&parent->lock);
	if (fill) /* the group's copy was metadata only so far */
		r = fill_metacopy(fs, in, mode);
out:
	if (tmp[0])
		unlinkat(fs->work_fd, tmp, 0);
	if (r < 0 && r != -ENOSPC && r != -EDQUOT && r != -EROFS)
		ovl_log("copy-up of '%s' failed: %s", name ? name : "?", strerror(-r));
	if (parent)
		ovl_inode_unref(fs, parent);
	pthread_mutex_unlock(&in->cu_lock);
	return r;
}
