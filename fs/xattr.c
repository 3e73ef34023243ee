/* Extended attributes.  The overlay's private xattrs ({trusted,user}.overlay.*, and the
 * override_stat xattr when xattr_permissions is on) are invisible through the mount and cannot be
 * set there; every other xattr is read from the topmost copy and written to the upper after a
 * metadata-only copy-up.  POSIX ACL xattrs are such xattrs when ACLs are on (the backing
 * filesystem keeps the mode in step when one is set); with them off (noacl, or no layer's
 * filesystem has ACLs) they are not supported (EOPNOTSUPP) and not listed, as on a filesystem
 * mounted with noacl. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "ovl.h"

static bool overlay_private(const char *name)
{
	return lyr_stack_xattr_private(name);
}

bool ovl_xattr_private(struct ovl_fs *fs, const char *name)
{
	return overlay_private(name) ||
	       (fs->override_xattr && strcmp(name, fs->override_xattr) == 0);
}

ssize_t ovl_getxattr(struct ovl_fs *fs, struct ovl_inode *in, const char *name, void *buf,
		     size_t size)
{
	if (ovl_xattr_private(fs, name))
		return -ENODATA;
	bool acl = ovl_acl_name(name);
	if (acl && !fs->acl)
		return -EOPNOTSUPP;
	char proc[64];
	int lr = ovl_inode_rdlock(fs, in);
	if (lr < 0)
		return lr;
	ovl_proc_path(in->node.fd, proc);
	ssize_t r = getxattr(proc, name, buf, size);
	if (r < 0)
		r = -errno;
	pthread_rwlock_unlock(&in->lock);
	/* a layer whose filesystem has no ACLs holds none: the kernel takes any other error as a
	 * failed permission check */
	if (acl && r == -EOPNOTSUPP)
		return -ENODATA;
	if (acl && r > 0 && size > 0)
		ovl_acl_map_ids(fs, buf, (size_t)r, false); /* never fails that way round */
	return r;
}

/* All names of the object at FD into a heap buffer; returns its length or -errno. */
static ssize_t list_all(int fd, char **ret)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	for (;;) {
		ssize_t n = listxattr(proc, NULL, 0);
		if (n < 0)
			return errno == ENOTSUP ? 0 : -errno;
		char *buf = malloc((size_t)n + 1);
		if (!buf)
			return -ENOMEM;
		ssize_t m = n ? listxattr(proc, buf, (size_t)n) : 0;
		if (m < 0) {
			free(buf);
			if (errno == ERANGE)
				continue;
			return -errno;
		}
		*ret = buf;
		return m;
	}
}

ssize_t ovl_listxattr(struct ovl_fs *fs, struct ovl_inode *in, char *buf, size_t size)
{
	char *all = NULL;
	int lr = ovl_inode_rdlock(fs, in);
	if (lr < 0)
		return lr;
	ssize_t n = list_all(in->node.fd, &all);
	pthread_rwlock_unlock(&in->lock);
	if (n < 0)
		return n;
	size_t out = 0;
	for (ssize_t i = 0; i < n;) {
		const char *name = all + i;
		size_t len = strlen(name) + 1;
		i += (ssize_t)len;
		if (ovl_xattr_private(fs, name) || (!fs->acl && ovl_acl_name(name)))
			continue;
		if (size) {
			if (out + len > size) {
				free(all);
				return -ERANGE;
			}
			memcpy(buf + out, name, len);
		}
		out += len;
	}
	free(all);
	return (ssize_t)out;
}

int ovl_setxattr(struct ovl_fs *fs, struct ovl_inode *in, const char *name, const void *value,
		 size_t size, int flags)
{
	if (ovl_xattr_private(fs, name))
		return -EPERM;
	bool acl = ovl_acl_name(name);
	if (acl && !fs->acl)
		return -EOPNOTSUPP;
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	/* the ids an ACL names are stored as the disk knows them, as owners are */
	_cleanup_free_ char *mapped = NULL;
	if (acl && (fs->cfg.nuidmap || fs->cfg.ngidmap)) {
		if (!(mapped = malloc(size ? size : 1)))
			return -ENOMEM;
		memcpy(mapped, value, size);
		int mr = ovl_acl_map_ids(fs, mapped, size, true);
		if (mr < 0)
			return mr;
		value = mapped;
	}
	int r = ovl_copy_up(fs, in, OVL_COPY_META);
	if (r < 0)
		return r;
	char proc[64];
	if ((r = ovl_inode_rdlock(fs, in)) < 0)
		return r;
	ovl_proc_path(in->node.fd, proc);
	r = setxattr(proc, name, value, size, flags) < 0 ? -errno : 0;
	atomic_store(&in->dacl, OVL_DACL_UNKNOWN);
	pthread_rwlock_unlock(&in->lock);
	return r;
}

int ovl_removexattr(struct ovl_fs *fs, struct ovl_inode *in, const char *name)
{
	if (ovl_xattr_private(fs, name))
		return -EPERM;
	if (!fs->acl && ovl_acl_name(name))
		return -EOPNOTSUPP;
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	/* nothing to copy up for an xattr that is not there */
	ssize_t has = ovl_getxattr(fs, in, name, NULL, 0);
	if (has < 0)
		return (int)has;
	int r = ovl_copy_up(fs, in, OVL_COPY_META);
	if (r < 0)
		return r;
	char proc[64];
	if ((r = ovl_inode_rdlock(fs, in)) < 0)
		return r;
	ovl_proc_path(in->node.fd, proc);
	r = removexattr(proc, name) < 0 ? -errno : 0;
	atomic_store(&in->dacl, OVL_DACL_UNKNOWN);
	pthread_rwlock_unlock(&in->lock);
	return r;
}

int ovl_copy_xattrs(struct ovl_fs *fs, int src, int dst)
{
	(void)fs;
	char *all = NULL;
	ssize_t n = list_all(src, &all);
	if (n < 0)
		return n == -EOPNOTSUPP ? 0 : (int)n;
	char sproc[64], dproc[64];
	ovl_proc_path(src, sproc);
	ovl_proc_path(dst, dproc);
	int r = 0;
	for (ssize_t i = 0; i < n && r == 0;) {
		const char *name = all + i;
		i += (ssize_t)strlen(name) + 1;
		if (overlay_private(name))
			continue;
		ssize_t len = getxattr(sproc, name, NULL, 0);
		if (len < 0)
			continue;
		char *v = malloc((size_t)len + 1);
		if (!v) {
			r = -ENOMEM;
			break;
		}
		len = getxattr(sproc, name, v, (size_t)len);
		if (len >= 0 && setxattr(dproc, name, v, (size_t)len, 0) < 0 &&
		    errno != EOPNOTSUPP && errno != EPERM)
			r = -errno;
		free(v);
	}
	free(all);
	return r;
}
