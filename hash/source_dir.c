/* A content-hash source over a plain directory.  Entry handles are O_PATH fds opened one name
 * at a time with O_NOFOLLOW below the source's root fd, so nothing is ever followed and nothing
 * outside the directory is reachable; the hasher does the symlink resolution itself.  Xattrs and
 * file contents are reached through /proc/self/fd, whose magic links land on the entry itself
 * (a symlink's own xattrs, never its target's).  Handles hold one fd each; the hasher keeps one
 * per directory level it is in. */
#include <fcntl.h>
#include <string.h>
#include <sys/xattr.h>

#include "layerfs/hash.h"

struct lyr_hash_ent {
	int fd;
};

typedef struct dir_source {
	int root;
	char *prefix;
} dir_source;

static int ent_new(int fd, const struct stat *st_unused, lyr_hash_ent **ret)
{
	(void)st_unused;
	lyr_hash_ent *e = malloc(sizeof *e);
	if (!e) {
		close(fd);
		return -ENOMEM;
	}
	e->fd = fd;
	*ret = e;
	return 0;
}

static int ds_root(void *ctx, lyr_hash_ent **ret, struct stat *st)
{
	dir_source *s = ctx;
	int fd = openat(s->root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return ent_new(fd, st, ret);
}

static int ds_lookup(void *ctx, lyr_hash_ent *dir, const char *name, lyr_hash_ent **ret,
		     struct stat *st)
{
	(void)ctx;
	int fd = openat(dir->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR ? -ENOENT : -errno;
	if (fstat(fd, st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return ent_new(fd, st, ret);
}

static int ds_list(void *ctx, lyr_hash_ent *dir, int (*fn)(void *arg, const char *name), void *arg)
{
	(void)ctx;
	int fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int r = -errno;
		close(fd);
		return r;
	}
	int r = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			r = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = fn(arg, de->d_name);
		if (r < 0)
			break;
	}
	closedir(d);
	return r;
}

static ssize_t ds_readlink(void *ctx, lyr_hash_ent *ent, char *buf, size_t size)
{
	(void)ctx;
	ssize_t n = readlinkat(ent->fd, "", buf, size);
	return n < 0 ? -errno : n;
}

static void proc_path(const lyr_hash_ent *ent, char out[40])
{
	snprintf(out, 40, "/proc/self/fd/%d", ent->fd);
}

static ssize_t ds_listxattr(void *ctx, lyr_hash_ent *ent, char *buf, size_t size)
{
	(void)ctx;
	char p[40];
	proc_path(ent, p);
	ssize_t n = listxattr(p, buf, size);
	return n < 0 ? -errno : n;
}

static ssize_t ds_getxattr(void *ctx, lyr_hash_ent *ent, const char *name, void *buf, size_t size)
{
	(void)ctx;
	char p[40];
	proc_path(ent, p);
	ssize_t n = getxattr(p, name, buf, size);
	return n < 0 ? -errno : n;
}

static int ds_open(void *ctx, lyr_hash_ent *ent)
{
	(void)ctx;
	char p[40];
	proc_path(ent, p);
	int fd = lyr_open_noatime(AT_FDCWD, p, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	return fd < 0 ? -errno : fd;
}

static int ds_cache_key(void *ctx, lyr_hash_ent *ent, const char *path, char *buf, size_t size)
{
	dir_source *s = ctx;
	(void)ent;
	if (!s->prefix)
		return 0;
	int n = snprintf(buf, size, "%s:%s", s->prefix, path);
	return n < 0 || (size_t)n >= size ? 0 : n;
}

static void ds_release(void *ctx, lyr_hash_ent *ent)
{
	(void)ctx;
	if (!ent)
		return;
	close(ent->fd);
	free(ent);
}

static const lyr_hash_source_ops dir_ops = {
	.root = ds_root,
	.lookup = ds_lookup,
	.list = ds_list,
	.readlink = ds_readlink,
	.listxattr = ds_listxattr,
	.getxattr = ds_getxattr,
	.open = ds_open,
	.cache_key = ds_cache_key,
	.release = ds_release,
};

int lyr_hash_source_dir(int dirfd, const char *cache_prefix, lyr_hash_source *ret)
{
	dir_source *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->root = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (s->root < 0) {
		free(s);
		return -errno;
	}
	if (cache_prefix && !(s->prefix = strdup(cache_prefix))) {
		close(s->root);
		free(s);
		return -ENOMEM;
	}
	ret->ops = &dir_ops;
	ret->ctx = s;
	return 0;
}

void lyr_hash_source_dir_free(lyr_hash_source *src)
{
	if (!src || !src->ctx)
		return;
	dir_source *s = src->ctx;
	close(s->root);
	free(s->prefix);
	free(s);
	src->ctx = NULL;
}
