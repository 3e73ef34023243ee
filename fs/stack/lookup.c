/* Name resolution in the merged tree.  A merged directory is the list of its parts, one per
 * layer that contributes to it, topmost first.  Looking a name up walks those parts downwards:
 * the first copy found decides the type; a non-directory hides everything below it; directories
 * merge until a whiteout, an opaque directory, a non-directory or a redirect ends the merge
 * (a redirect continues the merge at another path of the layers below instead).
 * Everything works on O_PATH fds with *at() calls; the paths kept in parts are only used as the
 * values of redirect markers, never handed to a syscall.  Nodes belong to their caller, so any
 * number of threads may look up concurrently. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/stack.h"
#include "stack_private.h"

#define NAME_MAX_BYTES 255

void lyr_stack_node_clear(lyr_stack_node *node)
{
	if (!node)
		return;
	for (unsigned i = 0; i < node->nparts; i++) {
		if (node->parts[i].fd >= 0 && node->parts[i].fd != node->fd)
			close(node->parts[i].fd);
		free(node->parts[i].path);
	}
	free(node->parts);
	if (node->data_fd >= 0 && node->data_fd != node->fd)
		close(node->data_fd);
	if (node->fd >= 0)
		close(node->fd);
	free(node->lower_path);
	memset(node, 0, sizeof(*node));
	node->fd = node->data_fd = -1;
}

static void node_init(lyr_stack_node *n)
{
	memset(n, 0, sizeof(*n));
	n->fd = n->data_fd = -1;
}

int lyr_stack_node_dup(const lyr_stack_node *src, lyr_stack_node *ret)
{
	lyr_stack_node n;
	node_init(&n);
	n.st = src->st;
	n.layer = src->layer;
	n.ino = src->ino;
	n.opaque = src->opaque;
	n.metacopy = src->metacopy;
	n.data_layer = src->data_layer;
	if (src->fd >= 0 && (n.fd = fcntl(src->fd, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	if (src->data_fd >= 0 && (n.data_fd = fcntl(src->data_fd, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	if (src->lower_path && !(n.lower_path = strdup(src->lower_path)))
		goto fail;
	if (src->nparts) {
		n.parts = calloc(src->nparts, sizeof(*n.parts));
		if (!n.parts)
			goto fail;
		for (unsigned i = 0; i < src->nparts; i++) {
			n.parts[i].fd = -1;
			n.nparts = i + 1;
			n.parts[i].layer = src->parts[i].layer;
			if (i == 0 && src->parts[0].fd == src->fd)
				n.parts[0].fd = n.fd;
			else if ((n.parts[i].fd = fcntl(src->parts[i].fd, F_DUPFD_CLOEXEC, 3)) < 0)
				goto fail;
			if (!(n.parts[i].path = strdup(src->parts[i].path)))
				goto fail;
		}
	}
	*ret = n;
	return 0;
fail:;
	int r = errno ? -errno : -ENOMEM;
	lyr_stack_node_clear(&n);
	return r;
}

static char *join_path(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static int add_part(lyr_stack_node *n, unsigned layer, int fd, char *path)
{
	lyr_stack_part *parts = realloc(n->parts, (n->nparts + 1) * sizeof(*parts));
	if (!parts)
		return -ENOMEM;
	n->parts = parts;
	parts[n->nparts].layer = layer;
	parts[n->nparts].fd = fd;
	parts[n->nparts].path = path;
	n->nparts++;
	return 0;
}

static uint64_t node_ino(const lyr_stack *s, int fd, const struct stat *st, unsigned marks)
{
	uint64_t origin = marks & LYR_MARK_INO ? lyr_stack_origin_ino(fd) : 0;
	return lyr_stack_ino(s, st->st_dev, st->st_ino, origin);
}

/* 1 when the directory at FD (carrying MARKS) ends the merge; AUFS: it may hold an AUFS
 * opaque marker. */
static int dir_opaque(int fd, unsigned marks, bool aufs)
{
	if (marks & LYR_MARK_OPAQUE) {
		char v[8];
		ssize_t r = lyr_stack_xattr_get(fd, LYR_OVL_OPAQUE, v, sizeof(v));
		if (r == 1 && v[0] == 'y')
			return 1;
	}
	struct stat st;
	return aufs && fstatat(fd, LYR_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int lyr_stack_root(const lyr_stack *s, unsigned from, lyr_stack_node *ret)
{
	size_t n_layers = lyr_stack_layers(s);
	if (from >= n_layers)
		return -ENOENT;
	lyr_stack_node n;
	node_init(&n);
	int r;
	for (unsigned l = from; l < n_layers; l++) {
		int fd = fcntl(lyr_stack_layer_fd(s, l), F_DUPFD_CLOEXEC, 3);
		char *path = strdup("");
		if (fd < 0 || !path) {
			r = fd < 0 ? -errno : -ENOMEM;
			if (fd >= 0)
				close(fd);
			free(path);
			goto fail;
		}
		if (l == from) {
			n.fd = fd;
			n.layer = l;
			if (fstat(fd, &n.st) < 0) {
				r = -errno;
				free(path);
				goto fail;
			}
			n.ino = node_ino(s, fd, &n.st, lyr_stack_marks(fd));
		}
		r = add_part(&n, l, fd, path);
		if (r < 0) {
			if (fd != n.fd)
				close(fd);
			free(path);
			goto fail;
		}
		if (dir_opaque(fd, lyr_stack_marks(fd), !lyr_stack_native(s, l)) == 1) {
			n.opaque = true;
			break;
		}
	}
	*ret = n;
	return 0;
fail:
	lyr_stack_node_clear(&n);
	return r;
}

static int check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	if (len > NAME_MAX_BYTES)
		return -ENAMETOOLONG;
	if (lyr_stack_is_marker_name(name))
		return -ENOENT;
	return 0;
}

bool lyr_stack_aufs_whiteout(const lyr_stack *s, unsigned layer, int dirfd, const char *name)
{
	if (lyr_stack_native(s, layer))
		return false;
	char wh[NAME_MAX_BYTES + 8];
	if (strlen(name) + sizeof(LYR_WH_PREFIX) > sizeof(wh))
		return false;
	snprintf(wh, sizeof(wh), LYR_WH_PREFIX "%s", name);
	struct stat st;
	return fstatat(dirfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int lookup_parts(const lyr_stack *s, const lyr_stack_part *parts, unsigned nparts,
			const char *name, int depth, bool lazy, lyr_stack_node *ret);

/* Finds the data of a metacopy file found in PARTS[i] (its redirect, else the same name below). */
static int find_data(const lyr_stack *s, const lyr_stack_part *parts, unsigned nparts, unsigned i,
		     const char *name, int depth, lyr_stack_node *n)
{
	char redirect[4096];
	lyr_stack_node d;
	node_init(&d);
	int r;
	ssize_t rl = lyr_stack_xattr_get(n->fd, LYR_OVL_REDIRECT, redirect, sizeof(redirect));
	if (rl > 0 && (size_t)rl < sizeof(redirect) && redirect[0] == '/') {
		if (depth > 40)
			return -ELOOP;
		r = lyr_stack_resolve(s, n->layer + 1, redirect, &d);
	} else {
		/* a relative redirect (kernel overlayfs writes one for a move within the
		 * directory) names the copy beside this one in the layers below */
		bool relative = rl > 0 && (size_t)rl < sizeof(redirect) && !strchr(redirect, '/');
		r = lookup_parts(s, parts + i + 1, nparts - i - 1, relative ? redirect : name,
				 depth + 1, false, &d);
	}
	if (r < 0)
		return r == -ENOENT || r == -EINVAL || r == -ENOTDIR ? -EIO : r;
	if (!S_ISREG(d.st.st_mode)) {
		lyr_stack_node_clear(&d);
		return -EIO;
	}
	n->data_layer = d.data_fd >= 0 ? d.data_layer : d.layer;
	if (d.data_fd >= 0) {
		n->data_fd = LYR_TAKE_FD(d.data_fd);
	} else {
		n->data_fd = LYR_TAKE_FD(d.fd);
	}
	/* blocks come from the data copy, as kernel overlayfs reports them */
	struct stat dst;
	if (fstatat(n->data_fd, "", &dst, AT_EMPTY_PATH) == 0)
		n->st.st_blocks = dst.st_blocks;
	lyr_stack_node_clear(&d);
	return 0;
}

/* Appends the parts a redirect of the directory in PARTS[i] points at. */
static int follow_redirect(const lyr_stack *s, const lyr_stack_part *parts, unsigned nparts,
			   unsigned i, const char *value, int depth, lyr_stack_node *n)
{
	lyr_stack_node d;
	node_init(&d);
	int r;
	if (depth > 40)
		return -ELOOP;
	if (value[0] == '/')
		r = lyr_stack_resolve(s, parts[i].layer + 1, value, &d);
	else if (!strchr(value, '/'))
		r = lookup_parts(s, parts + i + 1, nparts - i - 1, value, depth + 1, false, &d);
	else
		r = -ENOENT;
	/* a redirect naming nothing, or malformed ("..", empty components): nothing below */
	if (r == -ENOENT || r == -EINVAL || r == -ENOTDIR)
		return 0;
	if (r < 0)
		return r;
	if (S_ISDIR(d.st.st_mode)) {
		for (unsigned k = 0; k < d.nparts; k++) {
			if (d.parts[k].layer <= parts[i].layer)
				continue;
			int fd = d.parts[k].fd;
			if (fd == d.fd)
				d.fd = -1;
			r = add_part(n, d.parts[k].layer, fd, d.parts[k].path);
			if (r < 0) {
				if (d.fd == -1)
					d.fd = fd;
				break;
			}
			d.parts[k].fd = -1;
			d.parts[k].path = NULL;
		}
		n->opaque = d.opaque;
	}
	lyr_stack_node_clear(&d);
	return r;
}

/* The topmost copy of NAME, found in part P as ST, when it needs no fd: a non-directory without
 * overlay markers (no metacopy data to find, no origin inode to read).  1 when *RET was filled,
 * 0 when the caller must open it. */
static int lazy_node(const lyr_stack *s, const lyr_stack_part *p, const char *name,
		     const struct stat *st, lyr_stack_node *ret)
{
	if (S_ISDIR(st->st_mode) || lyr_stack_marks_at(p->fd, name, -1) != 0)
		return 0;
	char *path = join_path(p->path, name);
	if (!path)
		return -ENOMEM;
	node_init(ret);
	ret->st = *st;
	ret->layer = p->layer;
	ret->ino = lyr_stack_ino(s, st->st_dev, st->st_ino, 0);
	ret->lower_path = path;
	return 1;
}

static int lookup_parts(const lyr_stack *s, const lyr_stack_part *parts, unsigned nparts,
			const char *name, int depth, bool lazy, lyr_stack_node *ret)
{
	lyr_stack_node n;
	node_init(&n);
	bool found = false;
	int r = 0;
	for (unsigned i = 0; i < nparts; i++) {
		const lyr_stack_part *p = &parts[i];
		struct stat st;
		int fd;
		if (lazy && !found) {
			/* stat by name; open only what needs an fd */
			if (fstatat(p->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				fd = -1;
			} else if (lyr_stack_is_whiteout(&st)) {
				break;
			} else if ((r = lazy_node(s, p, name, &st, ret)) != 0) {
				return r < 0 ? r : 0;
			} else {
				fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			}
		} else {
			/* open first and stat the fd: one walk of the name instead of two */
			fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0) {
			if (errno == ENOENT || errno == ENOTDIR) {
				if (lyr_stack_aufs_whiteout(s, p->layer, p->fd, name))
					break;
				continue;
			}
			if (!found) {
				r = -errno;
				goto fail;
			}
			break; /* an unreadable lower part ends the merge */
		}
		if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
			int e = errno;
			close(fd);
			if (found)
				break;
			r = -e;
			goto fail;
		}
		if (lyr_stack_is_whiteout(&st) || (found && !S_ISDIR(st.st_mode))) {
			close(fd);
			break;
		}
		char *path = join_path(p->path, name);
		if (!path) {
			close(fd);
			r = -ENOMEM;
			goto fail;
		}
		unsigned marks = lyr_stack_marks_at(p->fd, name, fd);
		if (!found) {
			found = true;
			n.fd = fd;
			n.st = st;
			n.layer = p->layer;
			n.ino = node_ino(s, fd, &st, marks);
			if (!S_ISDIR(st.st_mode)) {
				n.lower_path = path;
				if (S_ISREG(st.st_mode) && (marks & LYR_MARK_METACOPY)) {
					n.metacopy = true;
					r = find_data(s, parts, nparts, i, name, depth, &n);
					if (r < 0)
						goto fail;
				}
				*ret = n;
				return 0;
			}
		}
		r = add_part(&n, p->layer, fd, path);
		if (r < 0) {
			if (fd != n.fd)
				close(fd);
			free(path);
			goto fail;
		}
		if (dir_opaque(fd, marks, !lyr_stack_native(s, p->layer)) == 1) {
			n.opaque = true;
			break;
		}
		char redirect[4096];
		ssize_t rl =
		    marks & LYR_MARK_REDIRECT
			? lyr_stack_xattr_get(fd, LYR_OVL_REDIRECT, redirect, sizeof(redirect))
			: -ENODATA;
		if (rl > 0 && (size_t)rl < sizeof(redirect)) {
			r = follow_redirect(s, parts, nparts, i, redirect, depth, &n);
			if (r < 0)
				goto fail;
			break;
		}
	}
	if (!found) {
		r = -ENOENT;
		goto fail;
	}
	if (!n.lower_path && !(n.lower_path = strdup(n.parts[0].path))) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = n;
	return 0;
fail:
	lyr_stack_node_clear(&n);
	return r;
}

int lyr_stack_node_made(const lyr_stack *s, const lyr_stack_node *dir, const char *name,
			lyr_stack_node *ret)
{
	if (!dir->nparts)
		return -ENOTDIR;
	const lyr_stack_part *p = &dir->parts[0];
	lyr_stack_node n;
	node_init(&n);
	int r;
	n.fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (n.fd < 0)
		return -errno;
	if (fstatat(n.fd, "", &n.st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto fail;
	}
	n.layer = p->layer;
	n.ino = lyr_stack_ino(s, n.st.st_dev, n.st.st_ino, 0);
	if (!(n.lower_path = join_path(p->path, name))) {
		r = -ENOMEM;
		goto fail;
	}
	if (S_ISDIR(n.st.st_mode)) {
		char *path = strdup(n.lower_path);
		if (!path || (r = add_part(&n, p->layer, n.fd, path)) < 0) {
			free(path);
			r = -ENOMEM;
			goto fail;
		}
		n.opaque = true; /* nothing below merges with it */
	}
	*ret = n;
	return 0;
fail:
	lyr_stack_node_clear(&n);
	return r;
}

static int lookup_in(const lyr_stack *s, const lyr_stack_node *dir, const char *name, bool lazy,
		     lyr_stack_node *ret)
{
	if (!S_ISDIR(dir->st.st_mode))
		return -ENOTDIR;
	int r = check_name(name);
	if (r < 0)
		return r;
	return lookup_parts(s, dir->parts, dir->nparts, name, 0, lazy, ret);
}

int lyr_stack_lookup(const lyr_stack *s, const lyr_stack_node *dir, const char *name,
		     lyr_stack_node *ret)
{
	return lookup_in(s, dir, name, false, ret);
}

int lyr_stack_lookup_lazy(const lyr_stack *s, const lyr_stack_node *dir, const char *name,
			  lyr_stack_node *ret)
{
	return lookup_in(s, dir, name, true, ret);
}

int lyr_stack_lookup_from(const lyr_stack *s, const lyr_stack_node *dir, unsigned from,
			  const char *name, lyr_stack_node *ret)
{
	if (!S_ISDIR(dir->st.st_mode))
		return -ENOTDIR;
	int r = check_name(name);
	if (r < 0)
		return r;
	unsigned i = 0;
	while (i < dir->nparts && dir->parts[i].layer < from)
		i++;
	return lookup_parts(s, dir->parts + i, dir->nparts - i, name, 0, false, ret);
}

int lyr_stack_resolve(const lyr_stack *s, unsigned from, const char *path, lyr_stack_node *ret)
{
	lyr_stack_node cur;
	int r = lyr_stack_root(s, from, &cur);
	if (r < 0)
		return r;
	_cleanup_free_ char *copy = strdup(path);
	if (!copy) {
		lyr_stack_node_clear(&cur);
		return -ENOMEM;
	}
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		lyr_stack_node next;
		r = lyr_stack_lookup(s, &cur, c, &next);
		lyr_stack_node_clear(&cur);
		if (r < 0)
			return r;
		cur = next;
	}
	*ret = cur;
	return 0;
}
