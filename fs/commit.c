/* Readying an upper directory to become a layer.  The hard-link index (WORK/index, see
 * copy_up.c) keeps a lower hard-link group together while a ref is mounted, but it lives in the
 * work directory, which a commit leaves behind.  Before the upper is frozen, every lower name of
 * such a group that the upper does not hold yet becomes an upper hard link of the group's copy,
 * so the new layer holds the whole group with its new content.  One walk over the merged tree,
 * done only when the index is not empty; never while the ref is mounted.  Kernel overlayfs keeps
 * the same kind of index (index=on, WORK/kernel/index, entries named by the origin file handle
 * of the lower inode): its entries are matched to lower names by the inode their origin xattr
 * opens, so a ref changed through either backend commits the whole group. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ovl.h"

/* An entry of kernel overlayfs' index: the lower inode it is the copy of. */
struct kernel_entry {
	dev_t dev;
	ino_t ino;
	char name[128]; /* its name in WORK/kernel/index */
};

struct commit_walk {
	lyr_stack *stack;
	int index_fd;	/* WORK/index (-1: none) */
	uint64_t *inos; /* index entries, sorted */
	size_t ninos;
	int kindex_fd; /* WORK/kernel/index (-1: none) */
	struct kernel_entry *kernel; /* its entries, sorted by lower inode */
	size_t nkernel;
	const char *xattr_prefix;
	size_t linked;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_kernel(const void *a, const void *b);

/* The index holding the upper copy of lower file NODE and the copy's name there: 0, or
 * -ENOENT when neither index has one. */
static int indexed(const struct commit_walk *w, const lyr_stack_node *node, int *ret_fd,
		   char name[128])
{
	if (w->ninos && bsearch(&node->ino, w->inos, w->ninos, sizeof(uint64_t), cmp_u64)) {
		*ret_fd = w->index_fd;
		snprintf(name, 128, "%llu", (unsigned long long)node->ino);
		return 0;
	}
	struct kernel_entry key = {.dev = node->st.st_dev, .ino = node->st.st_ino};
	const struct kernel_entry *e =
	    w->nkernel ? bsearch(&key, w->kernel, w->nkernel, sizeof(key), cmp_kernel) : NULL;
	if (!e)
		return -ENOENT;
	*ret_fd = w->kindex_fd;
	snprintf(name, 128, "%s", e->name);
	return 0;
}

/* One directory of the walk: its upper dir fd once known or made (-1 until then). */
struct level {
	struct level *parent;
	const lyr_stack_node *dir;
	const char *name;
	int upper;
};

/* Makes L's upper directory exist (its parents first), as a copy-up would. */
static int ensure_upper(struct commit_walk *w, struct level *l)
{
	if (l->upper >= 0)
		return 0;
	if (l->dir->nparts && l->dir->parts[0].layer == 0) {
		l->upper = fcntl(l->dir->parts[0].fd, F_DUPFD_CLOEXEC, 3);
		return l->upper < 0 ? -errno : 0;
	}
	int r = ensure_upper(w, l->parent);
	if (r < 0)
		return r;
	const struct stat *st = &l->dir->st;
	if (mkdirat(l->parent->upper, l->name, st->st_mode & 07777) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(l->parent->upper, l->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char proc[64], v[32], xname[128];
	ovl_proc_path(fd, proc);
	int n = snprintf(v, sizeof(v), "%llu", (unsigned long long)l->dir->ino);
	snprintf(xname, sizeof(xname), "%s%s", w->xattr_prefix, LYR_OVL_INO);
	setxattr(proc, xname, v, (size_t)n, 0);
	fchownat(fd, "", st->st_uid, st->st_gid, AT_EMPTY_PATH);
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	utimensat(fd, "", ts, AT_EMPTY_PATH);
	l->upper = fd;
	return 0;
}

static int walk(struct commit_walk *w, struct level *l, int depth)
{
	if (depth > 4096)
		return -ELOOP;
	lyr_stack_list list;
	int r = lyr_stack_list_dir(w->stack, l->dir, &list);
	if (r < 0)
		return r;
	for (size_t i = 0; r == 0 && i < list.n; i++) {
		lyr_stack_dirent *e = &list.entries[i];
		if (e->type != DT_DIR && e->type != DT_REG && e->type != DT_UNKNOWN)
			continue;
		if (e->type == DT_REG && e->layer == 0)
			continue; /* an upper name already */
		lyr_stack_node child;
		int ifd;
		char idx[128];
		r = lyr_stack_lookup(w->stack, l->dir, e->name, &child);
		if (r == -ENOENT || r == -EIO) {
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		if (S_ISDIR(child.st.st_mode)) {
			struct level sub = {l, &child, e->name, -1};
			r = walk(w, &sub, depth + 1);
			if (sub.upper >= 0)
				close(sub.upper);
		} else if (S_ISREG(child.st.st_mode) && child.layer != 0 && child.st.st_nlink > 1 &&
			   indexed(w, &child, &ifd, idx) == 0 && (r = ensure_upper(w, l)) == 0) {
			/* the directory keeps the times the view showed: the link is no change */
			struct stat dst;
			bool timed = fstatat(l->upper, "", &dst, AT_EMPTY_PATH) == 0;
			if (linkat(ifd, idx, l->upper, e->name, 0) < 0 && errno != EEXIST)
				r = -errno;
			else
				w->linked++;
			struct timespec ts[2] = {dst.st_atim, dst.st_mtim};
			if (timed)
				utimensat(l->upper, "", ts, AT_EMPTY_PATH);
		}
		lyr_stack_node_clear(&child);
	}
	lyr_stack_list_clear(&list);
	return r;
}

/* Opens the index directory WORK/PATH (WFD) for reading into *RET_DIR and a descriptor of it
 * for linking into *RET_FD: 1, 0 when there is none, or -errno. */
static int open_index(int wfd, const char *path, DIR **ret_dir, int *ret_fd)
{
	int fd = openat(wfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	int keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	DIR *d = keep < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int r = -errno;
		close(fd);
		if (keep >= 0)
			close(keep);
		return r;
	}
	*ret_dir = d;
	*ret_fd = keep;
	return 1;
}

/* Reads the daemon's index (WORK/index, names are view inode numbers) into W. */
static int read_fuse_index(struct commit_walk *w, int wfd)
{
	DIR *d;
	int r = open_index(wfd, "index", &d, &w->index_fd);
	if (r <= 0)
		return r;
	size_t cap = 0;
	struct dirent *de;
	r = 0;
	while (r == 0 && (de = readdir(d))) {
		char *end;
		unsigned long long ino = strtoull(de->d_name, &end, 10);
		if (de->d_name[0] == '.' || *end)
			continue;
		if (w->ninos == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *n = realloc(w->inos, cap * sizeof(uint64_t));
			if (!n) {
				r = -ENOMEM;
				break;
			}
			w->inos = n;
		}
		w->inos[w->ninos++] = ino;
	}
	closedir(d);
	if (w->ninos)
		qsort(w->inos, w->ninos, sizeof(uint64_t), cmp_u64);
	return r;
}

/* The lower inode a kernel index entry stands for: its origin xattr is kernel overlayfs'
 * struct ovl_fb (version, magic 0xfb, length, flags, handle type, 16-byte uuid, then the
 * filesystem's file handle), opened through the root of any lower on that filesystem. */
static int kernel_origin(int entry_fd, const lyr_stack *stack, struct kernel_entry *ret)
{
	unsigned char fb[256];
	char proc[64];
	ovl_proc_path(entry_fd, proc);
	ssize_t n = getxattr(proc, "trusted.overlay.origin", fb, sizeof(fb));
	if (n < 21 || fb[1] != 0xfb || fb[2] != n)
		return -ENODATA;
	size_t hlen = (size_t)n - 21;
	struct file_handle *fh = malloc(sizeof(*fh) + hlen);
	if (!fh)
		return -ENOMEM;
	fh->handle_bytes = (unsigned)hlen;
	fh->handle_type = fb[4];
	memcpy(fh->f_handle, fb + 21, hlen);
	int r = -ESTALE;
	for (size_t i = 1; i < lyr_stack_layers(stack) && r < 0; i++) {
		char root[64];
		ovl_proc_path(lyr_stack_layer_fd(stack, i), root);
		int mfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (mfd < 0)
			continue;
		int fd = open_by_handle_at(mfd, fh, O_PATH | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0) {
			ret->dev = st.st_dev;
			ret->ino = st.st_ino;
			r = 0;
		}
		if (fd >= 0)
			close(fd);
		close(mfd);
	}
	free(fh);
	return r;
}

static int cmp_kernel(const void *a, const void *b)
{
	const struct kernel_entry *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Reads kernel overlayfs' index (WORK/kernel/index, index=on: names are origin file handles)
 * into W: the lower inode of each entry that is a regular file. */
static int read_kernel_index(struct commit_walk *w, int wfd)
{
	DIR *d;
	int r = open_index(wfd, "kernel/index", &d, &w->kindex_fd);
	if (r <= 0)
		return r;
	int ifd = dirfd(d);
	size_t cap = 0;
	struct dirent *de;
	r = 0;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(w->kernel->name))
			continue;
		int fd = openat(ifd, de->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		struct kernel_entry e;
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    kernel_origin(fd, w->stack, &e) < 0) {
			if (fd >= 0)
				close(fd);
			continue; /* not a copy of a lower file: nothing to link */
		}
		close(fd);
		memcpy(e.name, de->d_name, strlen(de->d_name) + 1); /* fits: checked above */
		if (w->nkernel == cap) {
			cap = cap ? cap * 2 : 16;
			struct kernel_entry *n = realloc(w->kernel, cap * sizeof(*n));
			if (!n) {
				r = -ENOMEM;
				break;
			}
			w->kernel = n;
		}
		w->kernel[w->nkernel++] = e;
	}
	closedir(d);
	if (w->nkernel)
		qsort(w->kernel, w->nkernel, sizeof(*w->kernel), cmp_kernel);
	return r;
}

int lyr_fs_prepare_commit(const char *const *lowers, size_t nlowers, const char *upper,
			  const char *work, lyr_fs_error *err)
{
	if (err)
		err->msg[0] = '\0';
	_cleanup_close_ int wfd = open(work, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (wfd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (nlowers == 0)
		return 0;
	struct commit_walk w = {.index_fd = -1, .kindex_fd = -1};
	const char **dirs = calloc(nlowers + 1, sizeof(char *));
	if (!dirs)
		return -ENOMEM;
	dirs[0] = upper;
	for (size_t i = 0; i < nlowers; i++)
		dirs[i + 1] = lowers[i];
	size_t bad = 0;
	int r = lyr_stack_open(dirs, nlowers + 1, &bad, &w.stack);
	if (r < 0) {
		if (err)
			snprintf(err->msg, sizeof(err->msg), "'%s': %s", dirs[bad], strerror(-r));
		free(dirs);
		return r;
	}
	free(dirs);
	r = read_fuse_index(&w, wfd);
	if (r == 0)
		r = read_kernel_index(&w, wfd);
	if (r < 0 || (w.ninos == 0 && w.nkernel == 0))
		goto out;
	/* the namespace the daemon used: whichever the index copies carry */
	w.xattr_prefix = "user.overlay.";
	char proc[64];
	ovl_proc_path(lyr_stack_layer_fd(w.stack, 0), proc);
	if (setxattr(proc, "trusted.overlay.layerfs.probe", "1", 1, 0) == 0) {
		removexattr(proc, "trusted.overlay.layerfs.probe");
		w.xattr_prefix = "trusted.overlay.";
	}
	lyr_stack_node root;
	r = lyr_stack_root(w.stack, 0, &root);
	if (r == 0) {
		struct level top = {NULL, &root, "", -1};
		r = walk(&w, &top, 0);
		if (top.upper >= 0)
			close(top.upper);
		lyr_stack_node_clear(&root);
	}
out:
	if (r < 0 && err)
		snprintf(err->msg, sizeof(err->msg), "linking hard-link groups into '%s': %s",
			 upper, strerror(-r));
	lyr_stack_free(w.stack);
	free(w.inos);
	free(w.kernel);
	if (w.index_fd >= 0)
		close(w.index_fd);
	if (w.kindex_fd >= 0)
		close(w.kindex_fd);
	return r;
}
