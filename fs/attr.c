/* Attributes: getattr (with the st_ino rules, id mapping, squashing and override_stat xattrs),
 * setattr (metadata-only copy-up for chmod, chown and utimes; data copy-up for truncate),
 * readlink and statfs. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ovl.h"

#define OVERFLOW_ID 65534

static uint32_t map_out(const lyr_fs_idmap *m, size_t n, uint32_t id)
{
	if (!n)
		return id;
	for (size_t i = 0; i < n; i++)
		if (id >= m[i].outer && id - m[i].outer < m[i].count)
			return m[i].inner + (id - m[i].outer);
	return OVERFLOW_ID;
}

static uint32_t map_in(const lyr_fs_idmap *m, size_t n, uint32_t id)
{
	if (!n)
		return id;
	for (size_t i = 0; i < n; i++)
		if (id >= m[i].inner && id - m[i].inner < m[i].count)
			return m[i].outer + (id - m[i].inner);
	return (uint32_t)-1;
}

uid_t ovl_uid_to_disk(struct ovl_fs *fs, uid_t uid)
{
	return map_in(fs->uidmap, fs->cfg.nuidmap, uid);
}

gid_t ovl_gid_to_disk(struct ovl_fs *fs, gid_t gid)
{
	return map_in(fs->gidmap, fs->cfg.ngidmap, gid);
}

uid_t ovl_uid_from_disk(struct ovl_fs *fs, uid_t uid)
{
	return map_out(fs->uidmap, fs->cfg.nuidmap, uid);
}

gid_t ovl_gid_from_disk(struct ovl_fs *fs, gid_t gid)
{
	return map_out(fs->gidmap, fs->cfg.ngidmap, gid);
}

/* override_stat: "UID:GID:MODE" (MODE octal, permission bits), as fuse-overlayfs and
 * containers/storage write it. */
static bool read_override(struct ovl_fs *fs, int fd, uid_t *uid, gid_t *gid, mode_t *mode)
{
	char proc[64], v[128];
	ovl_proc_path(fd, proc);
	ssize_t n = getxattr(proc, fs->override_xattr, v, sizeof(v) - 1);
	if (n <= 0)
		return false;
	v[n] = '\0';
	unsigned u, g, m;
	if (sscanf(v, "%u:%u:%o", &u, &g, &m) != 3)
		return false;
	*uid = u;
	*gid = g;
	*mode = m & 07777;
	return true;
}

int ovl_getattr(struct ovl_fs *fs, struct ovl_inode *in, struct stat *st)
{
	return ovl_getattr_known(fs, in, NULL, st);
}

int ovl_getattr_known(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *known,
		      struct stat *st)
{
	/* a lookup has just stat'ed the very object the inode holds (blocks from a metacopy's
	 * data included): no need to ask again, nor to open it (a lazy lookup leaves it unopened)
	 * unless an xattr of it must be read */
	pthread_rwlock_rdlock(&in->lock);
	bool fresh =
	    known && known->st_ino == in->node.st.st_ino && known->st_dev == in->node.st.st_dev;
	int r = 0;
	if ((!fresh || in->indexed || fs->override_xattr) && in->node.fd < 0) {
		pthread_rwlock_unlock(&in->lock);
		if ((r = ovl_inode_rdlock(fs, in)) < 0)
			return r;
		fresh = known && known->st_ino == in->node.st.st_ino &&
			known->st_dev == in->node.st.st_dev;
	}
	if (fresh)
		*st = *known;
	else
		r = fstatat(in->node.fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno
											  : 0;
	if (r == 0 && !fresh && in->node.metacopy && in->node.data_fd >= 0) {
		struct stat dst;
		if (fstatat(in->node.data_fd, "", &dst, AT_EMPTY_PATH) == 0)
			st->st_blocks = dst.st_blocks;
	}
	if (r == 0 && in->indexed) {
		/* the copy's own count includes the index; the group's count is kept on it */
		char v[32];
		ssize_t n = lyr_stack_xattr_get(in->node.fd, "layerfs.nlink", v, sizeof(v));
		if (n > 0)
			st->st_nlink = (nlink_t)strtoul(v, NULL, 10);
	}
	if (r == 0 && in->unlinked && !S_ISDIR(st->st_mode))
		st->st_nlink = 0;
	uid_t ou;
	gid_t og;
	mode_t om;
	if (r == 0 && fs->override_xattr && read_override(fs, in->node.fd, &ou, &og, &om)) {
		st->st_uid = ou;
		st->st_gid = og;
		st->st_mode = (st->st_mode & S_IFMT) | om;
	}
	bool merged = in->node.nparts > 1;
	pthread_rwlock_unlock(&in->lock);
	if (r < 0)
		return r;
	st->st_ino = in->ino;
	/* a merged directory's link count would be a guess; 1 tells find(1) and fts not to
	 * count on it (as kernel overlayfs reports it) */
	if (S_ISDIR(st->st_mode) && (fs->cfg.static_nlink || merged))
		st->st_nlink = 1;
	st->st_uid = ovl_uid_from_disk(fs, st->st_uid);
	st->st_gid = ovl_gid_from_disk(fs, st->st_gid);
	if (fs->cfg.squash_to_root)
		st->st_uid = st->st_gid = 0;
	if (fs->cfg.squash_to_uid >= 0)
		st->st_uid = (uid_t)fs->cfg.squash_to_uid;
	if (fs->cfg.squash_to_gid >= 0)
		st->st_gid = (gid_t)fs->cfg.squash_to_gid;
	return 0;
}

static int write_override(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *attr,
			  int valid)
{
	struct stat cur;
	int r = ovl_inode_rdlock(fs, in);
	if (r < 0)
		return r;
	int fd = in->node.fd;
	r = fstatat(fd, "", &cur, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	uid_t u = cur.st_uid;
	gid_t g = cur.st_gid;
	mode_t m = cur.st_mode & 07777;
	if (r == 0)
		read_override(fs, fd, &u, &g, &m);
	if (valid & FUSE_SET_ATTR_UID)
		u = attr->st_uid;
	if (valid & FUSE_SET_ATTR_GID)
		g = attr->st_gid;
	if (valid & FUSE_SET_ATTR_MODE)
		m = attr->st_mode & 07777;
	char v[64], proc[64];
	int n = snprintf(v, sizeof(v), "%u:%u:0%o", (unsigned)u, (unsigned)g, (unsigned)m);
	ovl_proc_path(fd, proc);
	if (r == 0 && setxattr(proc, fs->override_xattr, v, (size_t)n, 0) < 0)
		r = -errno;
	pthread_rwlock_unlock(&in->lock);
	return r;
}

int ovl_kill_suidgid(struct ovl_fs *fs, struct ovl_inode *in, int fd)
{
	if (!S_ISREG(in->type))
		return 0;
	struct stat st;
	int r = ovl_getattr(fs, in, &st);
	if (r < 0)
		return r;
	mode_t kill = S_ISUID | ((st.st_mode & S_IXGRP) ? S_ISGID : 0);
	if (!(st.st_mode & kill))
		return 0;
	st.st_mode &= ~kill;
	return ovl_setattr(fs, in, &st, FUSE_SET_ATTR_MODE, fd);
}

int ovl_setattr(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *attr, int valid, int fd)
{
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	int r;
	if (valid & FUSE_SET_ATTR_SIZE) {
		if (S_ISDIR(in->type))
			return -EISDIR;
		r = ovl_copy_up(fs, in, attr->st_size == 0 ? OVL_COPY_EMPTY : OVL_COPY_DATA);
		if (r < 0)
			return r;
		_cleanup_close_ int own = -1;
		if (fd < 0) {
			if ((r = ovl_inode_rdlock(fs, in)) < 0)
				return r;
			own = ovl_reopen(in->node.fd, O_WRONLY);
			pthread_rwlock_unlock(&in->lock);
			if (own < 0)
				return own;
			fd = own;
		}
		ovl_times_data_begin(fs, in, fd);
		r = ftruncate(fd, attr->st_size) < 0 ? -errno : 0;
		ovl_times_data_end(fs, in, fd);
		if (r < 0)
			return r;
	}
	int meta = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
		   FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		   FUSE_SET_ATTR_MTIME_NOW;
	if (!(valid & meta))
		return 0;
	/* new times for a file whose last name is gone for good, which the kernel sends for every
	 * unlinked file under the writeback cache (its ctime): no one can reach the file through
	 * the layers again, so they stay in the kernel's cache.  For a lower file a copy-up would
	 * need a name to go to; an upper file's mtime and ctime are the kernel's to show under the
	 * writeback cache, so storing them costs two syscalls for nothing (its atime, which the
	 * daemon shows, is still stored) */
	int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		    FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	int kept = FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	if (!(valid & ~times)) {
		pthread_rwlock_rdlock(&in->lock);
		bool gone = in->unlinked && !in->linkable;
		bool gone_below = gone && in->node.layer >= fs->first_lower;
		bool kernel_times =
		    gone && fs->cfg.writeback && S_ISREG(in->type) && !(valid & ~kept);
		pthread_rwlock_unlock(&in->lock);
		if (gone_below || kernel_times)
			return 0;
	}
	if ((r = ovl_copy_up(fs, in, OVL_COPY_META)) < 0)
		return r;
	int owner = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID;
	if (fs->override_xattr && (valid & owner)) {
		if ((r = write_override(fs, in, attr, valid)) < 0)
			return r;
		valid &= ~owner;
	}
	if ((r = ovl_inode_rdlock(fs, in)) < 0)
		return r;
	int ofd = in->node.fd;
	if (valid & FUSE_SET_ATTR_MODE && !S_ISLNK(in->type)) {
		char proc[64];
		ovl_proc_path(ofd, proc);
		if (chmod(proc, attr->st_mode & 07777) < 0)
			r = -errno;
	}
	if (r == 0 && valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t u = (uid_t)-1;
		gid_t g = (gid_t)-1;
		if (valid & FUSE_SET_ATTR_UID &&
		    (u = ovl_uid_to_disk(fs, attr->st_uid)) == (uid_t)-1)
			r = -EINVAL;
		if (valid & FUSE_SET_ATTR_GID &&
		    (g = ovl_gid_to_disk(fs, attr->st_gid)) == (gid_t)-1)
			r = -EINVAL;
		if (r == 0 && fchownat(ofd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			r = -errno;
	}
	if (r == 0 && valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			       FUSE_SET_ATTR_MTIME_NOW)) {
		struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		r = ovl_times_set(fs, in, ofd, ts);
	}
	pthread_rwlock_unlock(&in->lock);
	return r;
}

int ovl_readlink(struct ovl_fs *fs, struct ovl_inode *in, char *buf, size_t size)
{
	int r = ovl_inode_rdlock(fs, in);
	if (r < 0)
		return r;
	ssize_t n = readlinkat(in->node.fd, "", buf, size - 1);
	r = n < 0 ? -errno : (int)n;
	pthread_rwlock_unlock(&in->lock);
	if (r >= 0)
		buf[r] = '\0';
	return r;
}

int ovl_statfs(struct ovl_fs *fs, struct statvfs *ret)
{
	if (fstatvfs(lyr_stack_layer_fd(fs->stack, 0), ret) < 0)
		return -errno;
	ret->f_namemax = OVL_NAME_MAX;
	return 0;
}
