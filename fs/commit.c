/* Readying an upper directory to become a layer.  The hard-link index (WORK/index, see
 * copy_up.c) keeps a lower hard-link group together while a ref is mounted, but it lives in the
 * work directory, which a commit leaves behind.  Before the upper is frozen, every lower name of
 * such a group that the upper does not hold yet becomes an upper hard link of the group's copy,
 * so the new layer holds the whole group with its new content.  One walk over the merged tree,
 * done only when the index is not empty; never while the ref is mounted. */
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

struct commit_walk {
	lyr_stack *stack;
	int index_fd;
	uint64_t *inos; /* index entries, sorted */
	size_t ninos;
	const char *xattr_prefix;
	size_t linked;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool indexed(const struct commit_walk *w, uint64_t ino)
{
	return bsearch(&ino, w->inos, w->ninos, sizeof(uint64_t), cmp_u64) != NULL;
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
			   indexed(w, child.ino) && (r = ensure_upper(w, l)) == 0) {
			char idx[24];
			snprintf(idx, sizeof(idx), "%llu", (unsigned long long)child.ino);
			if (linkat(w->index_fd, idx, l->upper, e->name, 0) < 0 && errno != EEXIST)
				r = -errno;
			else
				w->linked++;
		}
		lyr_stack_node_clear(&child);
	}
	lyr_stack_list_clear(&list);
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
	int ifd = openat(wfd, "index", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ifd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct commit_walk w = {.index_fd = ifd};
	DIR *d = fdopendir(ifd);
	if (!d) {
		close(ifd);
		return -errno;
	}
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		unsigned long long ino = strtoull(de->d_name, &end, 10);
		if (de->d_name[0] == '.' || *end)
			continue;
		if (w.ninos == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *n = realloc(w.inos, cap * sizeof(uint64_t));
			if (!n) {
				free(w.inos);
				closedir(d);
				return -ENOMEM;
			}
			w.inos = n;
		}
		w.inos[w.ninos++] = ino;
	}
	int r = 0;
	if (w.ninos == 0 || nlowers == 0)
		goto out;
	qsort(w.inos, w.ninos, sizeof(uint64_t), cmp_u64);
	const char **dirs = calloc(nlowers + 1, sizeof(char *));
	if (!dirs) {
		r = -ENOMEM;
		goto out;
	}
	dirs[0] = upper;
	for (size_t i = 0; i < nlowers; i++)
		dirs[i + 1] = lowers[i];
	size_t bad = 0;
	r = lyr_stack_open(dirs, nlowers + 1, &bad, &w.stack);
	if (r < 0) {
		if (err)
			snprintf(err->msg, sizeof(err->msg), "'%s': %s", dirs[bad], strerror(-r));
		free(dirs);
		goto out;
	}
	free(dirs);
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
	if (r < 0 && err)
		snprintf(err->msg, sizeof(err->msg), "linking hard-link groups into '%s': %s",
			 upper, strerror(-r));
	lyr_stack_free(w.stack);
out:
	free(w.inos);
	closedir(d);
	return r;
}
