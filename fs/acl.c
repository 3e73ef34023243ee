/* POSIX ACLs.  Unless `noacl` is given, the kernel enforces the system.posix_acl_* xattrs it
 * reads through the mount (FUSE_CAP_POSIX_ACL) and leaves two things to the daemon, as a
 * filesystem's own ACL code does them: a new object inherits its parent's default ACL, and the
 * caller's umask applies only when there is none (FUSE_CAP_DONT_MASK: the kernel sends the mode
 * unmasked and the umask beside it).  Keeping the mode and the ACL of an existing object in step
 * (chmod, setfacl) is the backing filesystem's work: the daemon changes the backing object.
 *
 * Objects are usually made in their upper parent, whose filesystem inherits the default ACL by
 * itself; objects made in the work dir first (over a whiteout) get nothing from it, so the
 * inherited ACLs are always set explicitly.  With ACLs off, what the backing filesystem inherited
 * is taken away again, so a new object has exactly the mode the caller's umask leaves.
 *
 * Value format (the kernel's posix_acl_xattr): a little-endian u32 version 2, then entries of
 * {u16 tag, u16 perm, u32 id}.  ACLs are small (a page at most: the kernel asks for no more). */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "ovl.h"

#define ACL_VERSION 2
#define ACL_HEADER 4
#define ACL_ENTRY 8
#define TAG_USER_OBJ 0x01
#define TAG_USER 0x02
#define TAG_GROUP_OBJ 0x04
#define TAG_GROUP 0x08
#define TAG_MASK 0x10
#define TAG_OTHER 0x20

static const char ACL_ACCESS[] = "system.posix_acl_access";
static const char ACL_DEFAULT[] = "system.posix_acl_default";

bool ovl_acl_name(const char *name)
{
	return strcmp(name, ACL_ACCESS) == 0 || strcmp(name, ACL_DEFAULT) == 0;
}

bool ovl_acl_supported(int fd)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	return getxattr(proc, ACL_ACCESS, NULL, 0) >= 0 || errno != EOPNOTSUPP;
}

/* The xattr NAME of the object at FD into a heap buffer: its length, -ENODATA when it has
 * none (or its filesystem has no ACLs), -errno. */
static ssize_t read_acl(int fd, const char *name, char **ret)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	for (;;) {
		ssize_t n = getxattr(proc, name, NULL, 0);
		if (n < 0)
			return errno == EOPNOTSUPP ? -ENODATA : -errno;
		char *buf = malloc(n ? (size_t)n : 1);
		if (!buf)
			return -ENOMEM;
		ssize_t m = getxattr(proc, name, buf, (size_t)n);
		if (m < 0) {
			int e = errno;
			free(buf);
			if (e == ERANGE)
				continue;
			return e == EOPNOTSUPP ? -ENODATA : -e;
		}
		*ret = buf;
		return m;
	}
}

static unsigned get16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static void put16(char *p, unsigned v)
{
	uint16_t le = htole16((uint16_t)v);
	memcpy(p, &le, sizeof(le));
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static void put32(char *p, uint32_t v)
{
	uint32_t le = htole32(v);
	memcpy(p, &le, sizeof(le));
}

/* Limits the default ACL in BUF (LEN bytes, made the access ACL of the new object) by the mode
 * asked for, as POSIX says: the owner, other and group-class entries (the mask, or the owning
 * group without one) keep only the permissions the matching bits of *MODE grant, and *MODE's
 * permission bits become those entries'.  Returns 1 when the ACL says more than the mode (named
 * entries or a mask), 0 when the mode says it all, -EIO for a malformed ACL. */
static int limit_by_mode(char *buf, size_t len, mode_t *mode)
{
	if (len < ACL_HEADER || (len - ACL_HEADER) % ACL_ENTRY != 0)
		return -EIO;
	if (get32(buf) != ACL_VERSION)
		return -EIO;
	mode_t m = *mode, perm = 0;
	char *group_obj = NULL, *mask = NULL;
	bool user_obj = false, other = false, extended = false;
	for (size_t off = ACL_HEADER; off < len; off += ACL_ENTRY) {
		char *e = buf + off;
		unsigned p = get16(e + 2) & 7;
		switch (get16(e)) {
		case TAG_USER_OBJ:
			p &= (m >> 6) & 7;
			perm |= p << 6;
			user_obj = true;
			break;
		case TAG_OTHER:
			p &= m & 7;
			perm |= p;
			other = true;
			break;
		case TAG_GROUP_OBJ:
			group_obj = e;
			continue;
		case TAG_MASK:
			mask = e;
			extended = true;
			continue;
		case TAG_USER:
		case TAG_GROUP:
			extended = true;
			continue;
		default:
			return -EIO;
		}
		put16(e + 2, p);
	}
	char *group_class = mask ? mask : group_obj;
	if (!user_obj || !other || !group_obj)
		return -EIO;
	unsigned g = get16(group_class + 2) & 7 & ((m >> 3) & 7);
	put16(group_class + 2, g);
	perm |= g << 3;
	*mode = (m & ~(mode_t)0777) | perm;
	return extended;
}

int ovl_acl_prepare(struct ovl_fs *fs, struct ovl_inode *parent, int parent_fd, mode_t mode,
		    mode_t umask, struct ovl_acl_new *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->mode = mode & ~umask & 07777;
	if (S_ISLNK(mode) || atomic_load(&parent->dacl) == OVL_DACL_NO)
		return 0;
	char *dflt = NULL;
	ssize_t n = read_acl(parent_fd, ACL_DEFAULT, &dflt);
	if (n == -ENODATA) {
		atomic_store(&parent->dacl, OVL_DACL_NO);
		return 0;
	}
	if (n < 0)
		return (int)n;
	atomic_store(&parent->dacl, OVL_DACL_YES);
	ret->parent_default = true;
	if (!fs->acl) {
		free(dflt);
		return 0;
	}
	/* the parent's default ACL decides; the umask does not apply */
	char *access = malloc((size_t)n ? (size_t)n : 1);
	if (!access) {
		free(dflt);
		return -ENOMEM;
	}
	memcpy(access, dflt, (size_t)n);
	mode_t m = mode & 07777;
	int extended = limit_by_mode(access, (size_t)n, &m);
	if (extended < 0) {
		free(access);
		free(dflt);
		return extended;
	}
	ret->mode = m;
	if (extended) {
		ret->access = access;
		ret->access_len = (size_t)n;
	} else {
		free(access);
	}
	if (S_ISDIR(mode)) {
		ret->dflt = dflt;
		ret->dflt_len = (size_t)n;
	} else {
		free(dflt);
	}
	return 0;
}

int ovl_acl_apply(struct ovl_fs *fs, int fd, const struct ovl_acl_new *a)
{
	if (!a->parent_default)
		return 0;
	char proc[64];
	ovl_proc_path(fd, proc);
	if (!fs->acl) {
		/* the backing filesystem may have inherited what the mount does not show */
		if ((removexattr(proc, ACL_ACCESS) < 0 && errno != ENODATA) ||
		    (removexattr(proc, ACL_DEFAULT) < 0 && errno != ENODATA))
			return -errno;
		return chmod(proc, a->mode) < 0 ? -errno : 0;
	}
	if (a->access && setxattr(proc, ACL_ACCESS, a->access, a->access_len, 0) < 0)
		return -errno;
	if (a->dflt && setxattr(proc, ACL_DEFAULT, a->dflt, a->dflt_len, 0) < 0)
		return -errno;
	return 0;
}

void ovl_acl_new_clear(struct ovl_acl_new *a)
{
	free(a->access);
	free(a->dflt);
	a->access = a->dflt = NULL;
}

int ovl_acl_map_ids(struct ovl_fs *fs, char *buf, size_t len, bool to_disk)
{
	if (!fs->cfg.nuidmap && !fs->cfg.ngidmap)
		return 0;
	/* a malformed value read from a layer goes to the kernel as it is, which refuses it */
	if (len < ACL_HEADER || (len - ACL_HEADER) % ACL_ENTRY != 0)
		return to_disk ? -EINVAL : 0;
	for (size_t off = ACL_HEADER; off < len; off += ACL_ENTRY) {
		char *e = buf + off;
		unsigned tag = get16(e);
		if (tag != TAG_USER && tag != TAG_GROUP)
			continue;
		uint32_t id = get32(e + 4);
		if (tag == TAG_USER)
			id = to_disk ? ovl_uid_to_disk(fs, id) : ovl_uid_from_disk(fs, id);
		else
			id = to_disk ? ovl_gid_to_disk(fs, id) : ovl_gid_from_disk(fs, id);
		if (to_disk && id == (uint32_t)-1)
			return -EINVAL;
		put32(e + 4, id);
	}
	return 0;
}

void ovl_acl_strip_dir(int fd)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	removexattr(proc, ACL_DEFAULT);
	removexattr(proc, ACL_ACCESS);
}
