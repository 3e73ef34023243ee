/* Layer tars out: one store layer's diff as an OCI layer tar, the same bytes every time.
 *
 * The layer's own diff directory is walked depth first with names in byte order, parents before
 * children, the root first as "./".  The store's markers become OCI's: a whiteout device is a
 * ".wh.NAME" file, an opaque directory gets a ".wh..wh..opq" entry.  What OCI cannot say is
 * written out: a directory with a redirect (a renamed lower directory) is written whole from the
 * merged view of the chain, opaque, at its new path (the whiteout the rename left at the old path
 * is in the diff already); a metacopy file is written with the data found below.  The overlay's
 * private xattrs never leave the store.  Headers carry only what a layer holds (type, mode,
 * owner ids, mtime with nanoseconds, size, link targets, device numbers, xattrs in name order):
 * no user or group names, no atime or ctime, so a save does not depend on the machine. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/oci.h"
#include "layerfs/stack.h"
#include "oci-int.h"

typedef struct link_ent {
	dev_t dev;
	ino_t ino;
	char *path;
} link_ent;

typedef struct writer {
	struct archive *a;
	const lyr_stack *stack; /* the layer's chain, the layer itself at 0 */
	link_ent *links;
	size_t nlinks, cap;
	lyr_oci_error *err;
	char buf[1 << 16];
} writer;

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The xattrs of the object open at FD (O_PATH works), overlay markers left out, in name order. */
static int add_xattrs(struct archive_entry *e, int fd)
{
	char pp[64], *names = NULL;
	snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
	ssize_t len = listxattr(pp, NULL, 0);
	if (len <= 0)
		return len < 0 && errno != ENOTSUP ? -errno : 0;
	names = malloc((size_t)len);
	if (!names)
		return -ENOMEM;
	len = listxattr(pp, names, (size_t)len);
	int r = len < 0 ? -errno : 0;
	size_t n = 0;
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1)
		n++;
	const char **v = calloc(n + 1, sizeof *v);
	if (!v)
		r = -ENOMEM;
	n = 0;
	for (ssize_t i = 0; r == 0 && i < len; i += (ssize_t)strlen(names + i) + 1)
		if (!lyr_stack_xattr_private(names + i))
			v[n++] = names + i;
	if (r == 0)
		qsort(v, n, sizeof *v, name_cmp);
	for (size_t i = 0; r == 0 && i < n; i++) {
		ssize_t vl = getxattr(pp, v[i], NULL, 0);
		void *val = vl >= 0 ? malloc((size_t)vl + 1) : NULL;
		if (vl < 0 || !val || (vl = getxattr(pp, v[i], val, (size_t)vl)) < 0)
			r = vl < 0 ? -errno : -ENOMEM;
		else
			archive_entry_xattr_add_entry(e, v[i], val, (size_t)vl);
		free(val);
	}
	free(v);
	free(names);
	return r;
}

/* Writes one entry NAME described by ST (its type, bits, owner, mtime), with XFD's xattrs
 * (-1: none), link target LINK, hard-link target HARD, and DATA's content (-1: none). */
static int put(writer *w, const char *name, const struct stat *st, int xfd, const char *link,
	       const char *hard, int data)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return -ENOMEM;
	int r = 0;
	archive_entry_set_pathname(e, name);
	archive_entry_set_mode(e, st->st_mode);
	archive_entry_set_uid(e, st->st_uid);
	archive_entry_set_gid(e, st->st_gid);
	archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		archive_entry_set_rdev(e, st->st_rdev);
	if (link)
		archive_entry_set_symlink(e, link);
	if (hard)
		archive_entry_set_hardlink(e, hard);
	archive_entry_set_size(e, S_ISREG(st->st_mode) && !hard && data >= 0 ? st->st_size : 0);
	if (xfd >= 0)
		r = add_xattrs(e, xfd);
	if (r < 0) {
		archive_entry_free(e);
		return oci_fail(w->err, r, name, "reading xattrs: %s", strerror(-r));
	}
	if (archive_write_header(w->a, e) != ARCHIVE_OK)
		r = oci_fail(w->err, -EIO, name, "%s", archive_error_string(w->a));
	archive_entry_free(e);
	if (r < 0 || hard || data < 0 || !S_ISREG(st->st_mode))
		return r;
	off_t left = st->st_size;
	while (left > 0) {
		ssize_t n = read(data, w->buf, sizeof w->buf);
		if (n < 0)
			return oci_fail(w->err, -errno, name, "reading: %s", strerror(errno));
		if (n == 0)
			return oci_fail(w->err, -EIO, name, "the file shrank while it was read");
		if (n > left)
			n = (ssize_t)left; /* a file that grew: the header said ST's size */
		if (archive_write_data(w->a, w->buf, (size_t)n) != n)
			return oci_fail(w->err, -EIO, name, "%s", archive_error_string(w->a));
		left -= n;
	}
	return 0;
}

/* The first name of ST's inode seen so far (NULL: this is the first, now recorded as PATH). */
static int hard_first(writer *w, const struct stat *st, const char *path, const char **ret)
{
	*ret = NULL;
	if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return 0;
	for (size_t i = 0; i < w->nlinks; i++)
		if (w->links[i].dev == st->st_dev && w->links[i].ino == st->st_ino) {
			*ret = w->links[i].path;
			return 0;
		}
	if (w->nlinks == w->cap) {
		size_t nc = w->cap ? 2 * w->cap : 16;
		link_ent *nv = realloc(w->links, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		w->links = nv;
		w->cap = nc;
	}
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	w->links[w->nlinks++] = (link_ent){st->st_dev, st->st_ino, p};
	return 0;
}

/* A non-directory at PATH open at FD (O_PATH), data from DATA (regular files). */
static int put_leaf(writer *w, const char *path, int fd, const struct stat *st, int data)
{
	const char *first;
	int r = hard_first(w, st, path, &first);
	if (r < 0)
		return r;
	if (first)
		return put(w, path, st, -1, NULL, first, -1);
	char target[PATH_MAX + 1];
	if (S_ISLNK(st->st_mode)) {
		ssize_t n = readlinkat(fd, "", target, PATH_MAX);
		if (n < 0)
			return oci_fail(w->err, -errno, path, "readlink: %s", strerror(errno));
		target[n] = '\0';
		return put(w, path, st, fd, target, NULL, -1);
	}
	return put(w, path, st, fd, NULL, NULL, data);
}

static int join(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s%s%s", dir, *dir ? "/" : "", name);
	return n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int put_opaque(writer *w, const char *dir, const struct stat *st)
{
	char p[PATH_MAX];
	if (join(p, dir, LYR_WH_OPAQUE) < 0)
		return -ENAMETOOLONG;
	struct stat m = {.st_mode = S_IFREG | 0,
			 .st_uid = st->st_uid,
			 .st_gid = st->st_gid,
			 .st_mtim = st->st_mtim};
	return put(w, p, &m, -1, NULL, NULL, -1);
}

static int put_dir(writer *w, const char *path, const struct stat *st, int xfd)
{
	char tn[PATH_MAX + 1];
	snprintf(tn, sizeof tn, "%s/", path);
	return put(w, *path ? tn : "./", st, xfd, NULL, NULL, -1);
}

static int put_merged_children(writer *w, lyr_stack_node *node, const char *path);

/* The merged directory NODE at PATH and everything below it, from the chain. */
static int put_merged(writer *w, lyr_stack_node *node, const char *path)
{
	int r = put_dir(w, path, &node->st, node->fd);
	return r < 0 ? r : put_merged_children(w, node, path);
}

/* What the merged directory NODE at PATH holds: the body of a renamed directory. */
static int put_merged_children(writer *w, lyr_stack_node *node, const char *path)
{
	lyr_stack_list list = {0};
	int r = lyr_stack_list_dir(w->stack, node, &list);
	if (r < 0)
		return oci_fail(w->err, r, path, "listing the merged directory: %s", strerror(-r));
	char **names = calloc(list.n + 1, sizeof *names);
	if (!names)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < list.n; i++)
		names[i] = list.entries[i].name;
	if (r == 0)
		qsort(names, list.n, sizeof *names, name_cmp);
	for (size_t i = 0; r == 0 && i < list.n; i++) {
		char p[PATH_MAX];
		lyr_stack_node c;
		if ((r = join(p, path, names[i])) < 0)
			break;
		r = lyr_stack_lookup(w->stack, node, names[i], &c);
		if (r < 0) {
			r = oci_fail(w->err, r, p, "%s", strerror(-r));
			break;
		}
		if (S_ISDIR(c.st.st_mode)) {
			r = put_merged(w, &c, p);
		} else {
			int data = S_ISREG(c.st.st_mode) ? lyr_stack_node_open(&c, O_RDONLY) : -1;
			if (S_ISREG(c.st.st_mode) && data < 0)
				r = oci_fail(w->err, data, p, "opening: %s", strerror(-data));
			else
				r = put_leaf(w, p, c.fd, &c.st, data);
			if (data >= 0)
				close(data);
		}
		lyr_stack_node_clear(&c);
	}
	free(names);
	lyr_stack_list_clear(&list);
	return r;
}

static int put_tree(writer *w, int at, const char *path);

/* One entry NAME of the layer's own directory DIRFD at PATH. */
static int put_own(writer *w, int dirfd, const char *dir, const char *name)
{
	char path[PATH_MAX];
	int r = join(path, dir, name);
	if (r < 0)
		return oci_fail(w->err, r, dir, "a name below is too long");
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = oci_fail(w->err, -errno, path, "%s", strerror(errno));
		goto out;
	}
	if (lyr_stack_is_whiteout(&st)) {
		char wh[PATH_MAX + 8];
		snprintf(wh, sizeof wh, "%s%s" LYR_WH_PREFIX "%s", dir, *dir ? "/" : "", name);
		struct stat m = st;
		m.st_mode = S_IFREG | (st.st_mode & 07777);
		r = put(w, wh, &m, -1, NULL, NULL, -1);
	} else if (S_ISDIR(st.st_mode)) {
		char v[PATH_MAX];
		if (lyr_stack_xattr_get(fd, LYR_OVL_REDIRECT, v, sizeof v) >= 0) {
			lyr_stack_node node;
			r = lyr_stack_resolve(w->stack, 0, path, &node);
			if (r < 0) {
				r = oci_fail(w->err, r, path, "resolving the renamed directory: %s",
					     strerror(-r));
				goto out;
			}
			/* whole and opaque: nothing below it at the new path shows through */
			r = put_dir(w, path, &node.st, node.fd);
			if (r == 0)
				r = put_opaque(w, path, &st);
			if (r == 0)
				r = put_merged_children(w, &node, path);
			lyr_stack_node_clear(&node);
		} else {
			r = put_dir(w, path, &st, fd);
			if (r == 0 && lyr_stack_dir_opaque(fd) == 1)
				r = put_opaque(w, path, &st);
			if (r == 0)
				r = put_tree(w, fd, path);
		}
	} else {
		int data = -1;
		if (S_ISREG(st.st_mode)) {
			if (lyr_stack_is_metacopy(fd) == 1) {
				lyr_stack_node node;
				r = lyr_stack_resolve(w->stack, 0, path, &node);
				if (r == 0) {
					data = lyr_stack_node_open(&node, O_RDONLY);
					lyr_stack_node_clear(&node);
				}
				if (r == 0 && data < 0)
					r = data;
			} else {
				data = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
				if (data < 0)
					r = -errno;
			}
			if (r < 0) {
				r = oci_fail(w->err, r, path, "opening: %s", strerror(-r));
				goto out;
			}
		}
		r = put_leaf(w, path, fd, &st, data);
		if (data >= 0)
			close(data);
	}
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* The entries of the layer's own directory AT (any fd of it) at PATH, in name order. */
static int put_tree(writer *w, int at, const char *path)
{
	int fd = openat(at, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return oci_fail(w->err, -errno, path, "%s", strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	struct dirent *de;
	while (r == 0 && (errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			char **nv = realloc(names, cap * sizeof *nv);
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			names = nv;
		}
		if (!(names[n] = strdup(de->d_name)))
			r = -ENOMEM;
		else
			n++;
	}
	if (r == 0 && errno)
		r = oci_fail(w->err, -errno, path, "listing: %s", strerror(errno));
	if (r == 0 && n > 0) /* an empty directory has no list at all */
		qsort(names, n, sizeof *names, name_cmp);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = put_own(w, dirfd(d), path, names[i]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return r;
}

int oci_layer_write(struct archive *a, const char *const *chain, size_t n, lyr_oci_error *err)
{
	writer w = {.a = a, .err = err};
	size_t bad = 0;
	lyr_stack *stack;
	int r = lyr_stack_open(chain, n, &bad, &stack);
	if (r < 0)
		return oci_fail(w.err, r, "", "opening layer directory '%s': %s", chain[bad],
				strerror(-r));
	w.stack = stack;
	int root = lyr_stack_layer_fd(stack, 0);
	struct stat st;
	r = fstat(root, &st) < 0 ? -errno : 0;
	if (r == 0)
		r = put_dir(&w, "", &st, root);
	if (r == 0 && lyr_stack_dir_opaque(root) == 1)
		r = put_opaque(&w, "", &st);
	if (r == 0)
		r = put_tree(&w, root, "");
	for (size_t i = 0; i < w.nlinks; i++)
		free(w.links[i].path);
	free(w.links);
	lyr_stack_free(stack);
	return r;
}
