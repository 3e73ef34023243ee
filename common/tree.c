/* Whole-tree operations on directory fds: copy (with hooks that see the copy as it is made), rm -rf, usage,
 * and a generic walk (sorted or not) for other modules such as the diff digest.
 *
 * Every syscall works relative to an open directory fd with a single name (*at() calls,
 * O_NOFOLLOW), so a symlink inside the tree is never followed and no path length limit applies.
 * The relative path of the entry being worked on is kept as a string only for error messages.
 *
 * The walk is iterative: a stack of frames, one per directory level, each holding that
 * directory's names (read in full when it is entered, so no DIR stream stays open) and its open
 * fds.  Only the deepest FD_WINDOW frames keep their fds open; a shallower frame's fds are closed
 * when the walk goes deeper and reopened through ".." of the child on the way back, checked
 * against the recorded device and inode (a mismatch means the tree was moved under us: -ESTALE).
 * So a walk holds at most about 2 * FD_WINDOW + 4 fds whatever the depth, and memory grows with
 * the depth times the directory sizes along the current path.
 *
 * One loop, walk_tree, drives both the copy (its frames hold the source directory and the copy's
 * side by side, two fds each) and lyr_tree_walk, through a table of steps.  Removal and usage
 * keep loops of their own: removal unlinks by d_type without an lstat per entry and removes a
 * directory from its parent after popping it, and usage passes over entries that vanish meanwhile.
 *
 * Copy order per entry: create, data, owner, xattrs, mode, timestamps.  Owner comes first because
 * chown clears setuid/setgid bits and security.capability; xattrs come before the mode because an
 * unprivileged owner may not set user.* xattrs on a file it made read-only.  Directories are
 * created 0700 (so a read-only source directory can still be filled) and get their metadata when
 * the walk leaves them, after their children, so their mtime is not disturbed by the copy. */
#include "layerfs/tree.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <search.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define FD_WINDOW 16
#define COPY_CHUNK (1u << 20)

/* ---- directory listings -------------------------------------------------------------------- */

typedef struct ent {
	char *name;
	unsigned char type; /* d_type; DT_UNKNOWN when the file system does not say */
} ent;

typedef struct listing {
	ent *ents;
	size_t n;
	char *pool; /* all names, NUL-separated */
} listing;

static void listing_free(listing *l)
{
	free(l->ents);
	free(l->pool);
	l->ents = NULL;
	l->pool = NULL;
	l->n = 0;
}

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const ent *)a)->name, ((const ent *)b)->name);
}

/* Reads every name of the directory open at FD except "." and ".."; SORTED puts them in byte
 * order (strcmp compares as unsigned char). */
static int listing_read(int fd, bool sorted, listing *ret)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int r = -errno;
		close(dfd);
		return r;
	}
	size_t cap = 16, n = 0, pcap = 1024, plen = 0;
	ent *ents = malloc(cap * sizeof *ents);
	char *pool = malloc(pcap);
	size_t *offs = malloc(cap * sizeof *offs);
	int r = 0;
	if (!ents || !pool || !offs) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			r = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		size_t len = strlen(de->d_name) + 1;
		if (n == cap) {
			cap *= 2;
			ent *ne = realloc(ents, cap * sizeof *ents);
			if (ne)
				ents = ne;
			size_t *no = realloc(offs, cap * sizeof *offs);
			if (no)
				offs = no;
			if (!ne || !no) {
				r = -ENOMEM;
				goto out;
			}
		}
		while (plen + len > pcap) {
			char *np = realloc(pool, pcap * 2);
			if (!np) {
				r = -ENOMEM;
				goto out;
			}
			pool = np;
			pcap *= 2;
		}
		memcpy(pool + plen, de->d_name, len);
		offs[n] = plen;
		ents[n].type = de->d_type;
		plen += len;
		n++;
	}
	if (r == 0) {
		/* The pool moved while growing; names are fixed up once it is final. */
		for (size_t i = 0; i < n; i++)
			ents[i].name = pool + offs[i];
		if (sorted)
			qsort(ents, n, sizeof *ents, ent_cmp);
		ret->ents = LYR_TAKE_PTR(ents);
		ret->pool = LYR_TAKE_PTR(pool);
		ret->n = n;
	}
out:
	closedir(d);
	free(ents);
	free(pool);
	free(offs);
	return r;
}

/* ---- the frame stack ----------------------------------------------------------------------- */

typedef struct frame {
	listing l;
	size_t next;      /* index of the next entry to visit */
	int fd[2];        /* [0] the walked tree, [1] the copy (copy only); -1 while parked */
	dev_t dev[2];
	ino_t ino[2];
	struct stat st;   /* the walked directory, for the metadata applied when leaving it */
	size_t path_len;  /* length of this directory's relative path in walk.path */
} frame;

typedef struct walk {
	frame *frames;
	size_t depth, cap;
	int nfd;          /* fds per frame: 2 for copy, 1 otherwise */
	bool sorted;      /* listings in byte order of names */
	char *path;       /* relative path of the current entry, for messages only */
	size_t path_len, path_cap;
} walk;

static void walk_free(walk *w)
{
	for (size_t i = 0; i < w->depth; i++) {
		for (int k = 0; k < w->nfd; k++)
			if (w->frames[i].fd[k] >= 0)
				close(w->frames[i].fd[k]);
		listing_free(&w->frames[i].l);
	}
	free(w->frames);
	free(w->path);
}

/* Sets walk.path to the directory of frame TOP plus NAME (NULL: the directory itself). */
static int path_set(walk *w, size_t base, const char *name)
{
	size_t nl = name ? strlen(name) : 0;
	size_t need = base + (base && name ? 1 : 0) + nl + 1;
	if (need > w->path_cap) {
		size_t cap = w->path_cap ? w->path_cap : 256;
		while (cap < need)
			cap *= 2;
		char *np = realloc(w->path, cap);
		if (!np)
			return -ENOMEM;
		w->path = np;
		w->path_cap = cap;
	}
	size_t len = base;
	if (name) {
		if (base)
			w->path[len++] = '/';
		memcpy(w->path + len, name, nl);
		len += nl;
	}
	w->path[len] = '\0';
	w->path_len = len;
	return 0;
}

/* Pushes a frame owning FDS (taken over even on failure). */
static int walk_push(walk *w, const int *fds, const struct stat *st)
{
	int r = 0;
	if (w->depth == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 32;
		frame *nf = realloc(w->frames, cap * sizeof *nf);
		if (!nf) {
			r = -ENOMEM;
			goto fail;
		}
		w->frames = nf;
		w->cap = cap;
	}
	frame *f = &w->frames[w->depth];
	memset(f, 0, sizeof *f);
	f->st = *st;
	f->path_len = w->path_len;
	for (int k = 0; k < w->nfd; k++) {
		struct stat s;
		f->fd[k] = fds[k];
		if (fstat(fds[k], &s) < 0) {
			r = -errno;
			goto fail;
		}
		f->dev[k] = s.st_dev;
		f->ino[k] = s.st_ino;
	}
	r = listing_read(fds[0], w->sorted, &f->l);
	if (r < 0)
		goto fail;
	w->depth++;
	/* Park the frame that just left the window. */
	if (w->depth > FD_WINDOW) {
		frame *old = &w->frames[w->depth - 1 - FD_WINDOW];
		for (int k = 0; k < w->nfd; k++) {
			if (old->fd[k] >= 0)
				close(old->fd[k]);
			old->fd[k] = -1;
		}
	}
	return 0;
fail:
	for (int k = 0; k < w->nfd; k++)
		close(fds[k]);
	return r;
}

/* Makes sure the parent of the top frame has open fds, reopening them through "..". */
static int walk_unpark_parent(walk *w)
{
	if (w->depth < 2)
		return 0;
	frame *child = &w->frames[w->depth - 1], *parent = &w->frames[w->depth - 2];
	for (int k = 0; k < w->nfd; k++) {
		if (parent->fd[k] >= 0)
			continue;
		int fd = openat(child->fd[k], "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		struct stat s;
		if (fstat(fd, &s) < 0 || s.st_dev != parent->dev[k] || s.st_ino != parent->ino[k]) {
			close(fd);
			return -ESTALE;
		}
		parent->fd[k] = fd;
	}
	return 0;
}

static void walk_pop(walk *w)
{
	frame *f = &w->frames[--w->depth];
	for (int k = 0; k < w->nfd; k++)
		if (f->fd[k] >= 0)
			close(f->fd[k]);
	listing_free(&f->l);
}

static void set_error(lyr_tree_error *err, const walk *w, int r)
{
	if (!err)
		return;
	snprintf(err->path, sizeof err->path, "%s", w->path ? w->path : "");
	err->err = -r;
}

/* ---- the walk loop ------------------------------------------------------------------------- */

/* What a walk does at each step (see walk_tree).  F is the frame of the directory at hand, its
 * fds open; w->path names the entry or directory. */
typedef struct walk_ops {
	/* Entry NAME of F with its lstat ST.  For a directory, LYR_TREE_SKIP keeps the walk out. */
	int (*entry)(void *ctx, walk *w, frame *f, const char *name, const struct stat *st);
	/* Directory NAME of F is entered and CFD[0] is open on it: opens CFD[1] (walks with two
	 * fds a frame only).  May be NULL. */
	int (*enter)(void *ctx, frame *f, const char *name, int *cfd);
	/* F is left, after all its entries.  May be NULL. */
	int (*leave)(void *ctx, walk *w, frame *f);
} walk_ops;

/* Pushes the frame of directory NAME of F (lstat ST) with fds from OPS->enter. */
static int walk_enter(walk *w, const walk_ops *ops, void *ctx, frame *f, const char *name,
		      const struct stat *st)
{
	int cfd[2] = {openat(f->fd[0], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), -1};
	if (cfd[0] < 0)
		return -errno;
	/* Replaced between the lstat and the open: not the directory the entry was. */
	struct stat now;
	int r = fstat(cfd[0], &now) < 0 ? -errno : 0;
	if (r == 0 && (now.st_ino != st->st_ino || now.st_dev != st->st_dev))
		r = -ESTALE;
	if (r == 0 && ops->enter)
		r = ops->enter(ctx, f, name, cfd);
	if (r < 0) {
		close(cfd[0]);
		return r;
	}
	return walk_push(w, cfd, &now);
}

/* Walks the tree below DIRFDS (w->nfd of them, walked in step; the first is the one listed)
 * calling OPS with CTX; directories are left after their entries.  Returns 0 or the first
 * error, which ERR (may be NULL) names; W is freed either way. */
static int walk_tree(walk *w, const int *dirfds, const walk_ops *ops, void *ctx,
		     lyr_tree_error *err)
{
	int fds[2] = {-1, -1};
	struct stat st;
	int r = path_set(w, 0, NULL);
	if (r < 0)
		goto out;
	for (int k = 0; k < w->nfd; k++)
		fds[k] = openat(dirfds[k], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fds[0] < 0 || (w->nfd > 1 && fds[1] < 0) || fstat(fds[0], &st) < 0) {
		r = -errno;
		for (int k = 0; k < w->nfd; k++)
			if (fds[k] >= 0)
				close(fds[k]);
		goto out;
	}
	r = walk_push(w, fds, &st);
	while (r == 0 && w->depth > 0) {
		frame *f = &w->frames[w->depth - 1];
		if (f->next == f->l.n) {
			r = path_set(w, f->path_len, NULL);
			if (r == 0)
				r = walk_unpark_parent(w);
			if (r == 0 && ops->leave)
				r = ops->leave(ctx, w, f);
			if (r == 0)
				walk_pop(w);
			continue;
		}
		const char *name = f->l.ents[f->next++].name;
		r = path_set(w, f->path_len, name);
		if (r < 0)
			break;
		if (fstatat(f->fd[0], name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		r = ops->entry(ctx, w, f, name, &st);
		if (r < 0)
			break;
		if (S_ISDIR(st.st_mode) && r != LYR_TREE_SKIP)
			r = walk_enter(w, ops, ctx, f, name, &st);
		else
			r = 0;
	}
out:
	if (r < 0)
		set_error(err, w, r);
	walk_free(w);
	return r;
}

/* ---- xattrs -------------------------------------------------------------------------------- */

/* An xattr target: an fd open on the object, or (fd < 0) NAME inside DIRFD, reached through
 * /proc/self/fd so that a symlink or device node need not be opened. */
typedef struct xref {
	int fd;
	int dirfd;
	const char *name;
	char proc[64 + NAME_MAX];
} xref;

static void xref_fd(xref *x, int fd)
{
	x->fd = fd;
	x->dirfd = -1;
	x->name = NULL;
}

static int xref_at(xref *x, int dirfd, const char *name)
{
	x->fd = -1;
	x->dirfd = dirfd;
	x->name = name;
	int n = snprintf(x->proc, sizeof x->proc, "/proc/self/fd/%d/%s", dirfd, name);
	return n < 0 || n >= (int)sizeof x->proc ? -ENAMETOOLONG : 0;
}

static ssize_t x_list(const xref *x, char *buf, size_t size)
{
	return x->fd >= 0 ? flistxattr(x->fd, buf, size) : llistxattr(x->proc, buf, size);
}

static ssize_t x_get(const xref *x, const char *n, void *buf, size_t size)
{
	return x->fd >= 0 ? fgetxattr(x->fd, n, buf, size) : lgetxattr(x->proc, n, buf, size);
}

static int x_set(const xref *x, const char *n, const void *v, size_t size)
{
	return x->fd >= 0 ? fsetxattr(x->fd, n, v, size, 0) : lsetxattr(x->proc, n, v, size, 0);
}

/* Reads the list of xattr names of X into a heap buffer (NULL, 0 when there are none). */
static int xattr_names(const xref *x, char **ret, size_t *ret_len)
{
	*ret = NULL;
	*ret_len = 0;
	for (;;) {
		ssize_t n = x_list(x, NULL, 0);
		if (n < 0)
			return errno == ENOTSUP ? 0 : -errno;
		if (n == 0)
			return 0;
		char *buf = malloc((size_t)n);
		if (!buf)
			return -ENOMEM;
		ssize_t m = x_list(x, buf, (size_t)n);
		if (m < 0) {
			int r = errno;
			free(buf);
			if (r == ERANGE)
				continue; /* grew meanwhile */
			return -r;
		}
		*ret = buf;
		*ret_len = (size_t)m;
		return 0;
	}
}

static int copy_xattrs(const xref *src, const xref *dst)
{
	_cleanup_free_ char *names = NULL;
	size_t len;
	int r = xattr_names(src, &names, &len);
	if (r < 0)
		return r;
	size_t vcap = 256;
	_cleanup_free_ char *val = malloc(vcap);
	if (!val)
		return -ENOMEM;
	for (size_t off = 0; off < len; off += strlen(names + off) + 1) {
		const char *n = names + off;
		ssize_t vl;
		for (;;) {
			vl = x_get(src, n, val, vcap);
			if (vl >= 0)
				break;
			if (errno != ERANGE)
				return -errno;
			ssize_t want = x_get(src, n, NULL, 0);
			if (want < 0)
				return -errno;
			char *nv = realloc(val, (size_t)want + 1);
			if (!nv)
				return -ENOMEM;
			val = nv;
			vcap = (size_t)want + 1;
		}
		if (x_set(dst, n, val, (size_t)vl) < 0) {
			/* Without privilege trusted.* cannot be written; everything else must be. */
			if ((errno == EPERM || errno == ENOTSUP) && geteuid() != 0 &&
			    strncmp(n, "trusted.", 8) == 0)
				continue;
			return -errno;
		}
	}
	return 0;
}

/* ---- copy ---------------------------------------------------------------------------------- */

typedef struct link_rec {
	dev_t dev;
	ino_t ino;
	char *path; /* relative path of the first copy */
} link_rec;

static int link_cmp(const void *a, const void *b)
{
	const link_rec *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

static void link_free(void *p)
{
	link_rec *l = p;
	free(l->path);
	free(l);
}

typedef struct copier {
	int dst_root;
	const lyr_progress *progress;
	uint64_t files, bytes;
	void *links; /* tsearch tree of link_rec, for inodes with more than one name */
	const lyr_tree_copy_opts *opts; /* the caller's hooks */
	const char *path; /* of the entry being copied */
	char *buf;   /* read/write fallback buffer */
	bool no_clone_set, no_cfr_set; /* a device that offers no reflink / copy_file_range */
	dev_t no_clone_dev, no_cfr_dev;
	bool privileged;
} copier;

static int chown_ok(int r)
{
	/* Without privilege, files end up owned by whoever imports them. */
	return r == 0 || ((errno == EPERM || errno == EINVAL) && geteuid() != 0) ? 0 : -errno;
}

/* Errors that mean "this file system does not offer it", not "this copy failed". */
static bool not_offered(int e)
{
	return e == EOPNOTSUPP || e == ENOTTY || e == EINVAL || e == EXDEV || e == ENOSYS ||
	       e == EPERM || e == EBADF;
}

/* Copies SIZE bytes of IN (on device DEV) to OUT: a reflink where the file system offers one,
 * else copy_file_range, else read/write.  What a device does not offer is remembered, so a
 * tree of small files does not pay a failing syscall per file. */
static int copy_data(copier *c, int in, int out, dev_t dev, off_t size)
{
	if (size == 0)
		return 0;
	if (!(c->no_clone_set && c->no_clone_dev == dev)) {
		if (ioctl(out, FICLONE, in) == 0) {
			c->bytes += (uint64_t)size;
			return 0;
		}
		if (not_offered(errno)) {
			c->no_clone_set = true;
			c->no_clone_dev = dev;
		}
	}
	off_t done = 0;
	if (!(c->no_cfr_set && c->no_cfr_dev == dev)) {
		while (done < size) {
			ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)(size - done), 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (done == 0 && not_offered(errno)) {
					c->no_cfr_set = true;
					c->no_cfr_dev = dev;
					break; /* fall back to read/write */
				}
				return -errno;
			}
			if (n == 0)
				return 0; /* shrank meanwhile: the copy is what was there */
			done += n;
			c->bytes += (uint64_t)n;
		}
		if (done >= size)
			return 0;
	}
	if (!c->buf && !(c->buf = malloc(COPY_CHUNK)))
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(in, c->buf, COPY_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			ssize_t m = write(out, c->buf + off, (size_t)(n - off));
			if (m < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			off += m;
		}
		c->bytes += (uint64_t)n;
	}
}

static int copy_times_fd(int fd, const struct stat *st)
{
	const struct timespec ts[2] = {st->st_atim, st->st_mtim};
	return futimens(fd, ts) < 0 ? -errno : 0;
}

/* Owner, xattrs, mode and times of a directory or regular file open at SRC/DST. */
static int finish_fd(int src, int dst, const struct stat *st)
{
	xref xs, xd;
	int r = chown_ok(fchown(dst, st->st_uid, st->st_gid));
	if (r < 0)
		return r;
	xref_fd(&xs, src);
	xref_fd(&xd, dst);
	r = copy_xattrs(&xs, &xd);
	if (r < 0)
		return r;
	if (fchmod(dst, st->st_mode & 07777) < 0)
		return -errno;
	return copy_times_fd(dst, st);
}

static int copy_regular(copier *c, int sdir, int ddir, const char *name, const struct stat *st)
{
	_cleanup_close_ int in =
	    lyr_open_noatime(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (in < 0)
		return -errno;
	struct stat now;
	if (fstat(in, &now) < 0)
		return -errno;
	if (now.st_dev != st->st_dev || now.st_ino != st->st_ino)
		return -ESTALE;
	_cleanup_close_ int out =
		openat(ddir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	const lyr_tree_copy_opts *o = c->opts;
	int r = o->data ? o->data(o->ctx, in, out, &now) : LYR_TREE_DEFAULT;
	if (r == LYR_TREE_DEFAULT)
		r = copy_data(c, in, out, now.st_dev, now.st_size);
	else if (r == 0)
		c->bytes += (uint64_t)now.st_size;
	if (r < 0)
		return r;
	r = finish_fd(in, out, &now);
	if (r < 0 || !o->done)
		return r;
	return o->done(o->ctx, ddir, name, out, NULL, c->path);
}

/* Symlinks, fifos, sockets and device nodes: created by name, never opened. */
static int copy_special(int sdir, int ddir, const char *name, const struct stat *st)
{
	if (S_ISLNK(st->st_mode)) {
		size_t cap = (size_t)st->st_size + 1;
		_cleanup_free_ char *target = NULL;
		for (;;) {
			free(target);
			target = malloc(cap);
			if (!target)
				return -ENOMEM;
			ssize_t n = readlinkat(sdir, name, target, cap);
			if (n < 0)
				return -errno;
			if ((size_t)n < cap) {
				target[n] = '\0';
				break;
			}
			cap *= 2;
		}
		if (symlinkat(target, ddir, name) < 0)
			return -errno;
	} else if (S_ISFIFO(st->st_mode)) {
		if (mkfifoat(ddir, name, 0600) < 0)
			return -errno;
	} else if (S_ISSOCK(st->st_mode) || S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		/* EPERM for a device other than a 0/0 whiteout without privilege: reported. */
		if (mknodat(ddir, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) < 0)
			return -errno;
	} else {
		return -EINVAL;
	}

	int r = chown_ok(fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW));
	if (r < 0)
		return r;
	xref xs, xd;
	if ((r = xref_at(&xs, sdir, name)) < 0 || (r = xref_at(&xd, ddir, name)) < 0)
		return r;
	r = copy_xattrs(&xs, &xd);
	if (r < 0)
		return r;
	if (!S_ISLNK(st->st_mode) && fchmodat(ddir, name, st->st_mode & 07777, 0) < 0)
		return -errno;
	const struct timespec ts[2] = {st->st_atim, st->st_mtim};
	if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

/* Opens PATH below ROOT as an O_PATH fd without leaving ROOT or following symlinks. */
static int open_beneath(int root, const char *path)
{
	struct open_how how = {
		.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, root, path, &how, sizeof how);
	return fd < 0 ? -errno : (int)fd;
}

/* Makes DDIR/NAME another name of the copy at relative path FIRST. */
static int make_link(copier *c, int ddir, const char *name, const char *first)
{
	_cleanup_close_ int fd = open_beneath(c->dst_root, first);
	if (fd < 0)
		return fd;
	if (linkat(fd, "", ddir, name, AT_EMPTY_PATH) == 0)
		return 0;
	/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc's magic link does the same without it. */
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, ddir, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

/* Copies one non-directory entry; the walk's path names it. */
static int copy_entry(copier *c, walk *w, int sdir, int ddir, const char *name,
		      const struct stat *st)
{
	link_rec *rec = NULL;
	if (st->st_nlink > 1) {
		link_rec key = {.dev = st->st_dev, .ino = st->st_ino};
		link_rec **found = tfind(&key, &c->links, link_cmp);
		if (found) {
			const lyr_tree_copy_opts *o = c->opts;
			int r = make_link(c, ddir, name, (*found)->path);
			if (r == 0 && o->done)
				r = o->done(o->ctx, ddir, name, -1, (*found)->path, w->path);
			if (r == 0)
				c->files++;
			return r;
		}
		rec = calloc(1, sizeof *rec);
		if (!rec || !(rec->path = strdup(w->path))) {
			free(rec);
			return -ENOMEM;
		}
		rec->dev = st->st_dev;
		rec->ino = st->st_ino;
	}
	c->path = w->path;
	int r = S_ISREG(st->st_mode) ? copy_regular(c, sdir, ddir, name, st)
				     : copy_special(sdir, ddir, name, st);
	if (r == 0 && !S_ISREG(st->st_mode) && c->opts->done)
		r = c->opts->done(c->opts->ctx, ddir, name, -1, NULL, w->path);
	if (r < 0) {
		if (rec)
			link_free(rec);
		return r;
	}
	if (rec && !tsearch(rec, &c->links, link_cmp)) {
		link_free(rec);
		return -ENOMEM;
	}
	c->files++;
	return 0;
}

int lyr_tree_copy(int src_dirfd, int dst_dirfd, const lyr_progress *progress, lyr_tree_error *err)
{
	lyr_tree_copy_opts o = {.progress = progress};
	return lyr_tree_copy_ex(src_dirfd, dst_dirfd, &o, err);
}

/* The copy's steps of the walk: a non-directory is copied when met; a directory is made (0700,
 * so that a read-only source directory can still be filled) when entered, and gets its
 * metadata when left, after its children. */
static int copy_step(void *ctx, walk *w, frame *f, const char *name, const struct stat *st)
{
	copier *c = ctx;
	if (S_ISDIR(st->st_mode))
		return c->opts->dir ? c->opts->dir(c->opts->ctx, name, st, w->path) : 0;
	int r = copy_entry(c, w, f->fd[0], f->fd[1], name, st);
	if (r < 0)
		return r;
	lyr_progress_report(c->progress, c->files, c->bytes);
	return 0;
}

static int copy_enter(void *ctx, frame *f, const char *name, int *cfd)
{
	(void)ctx;
	if (mkdirat(f->fd[1], name, 0700) < 0)
		return -errno;
	cfd[1] = openat(f->fd[1], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return cfd[1] < 0 ? -errno : 0;
}

static int copy_leave(void *ctx, walk *w, frame *f)
{
	copier *c = ctx;
	int r = finish_fd(f->fd[0], f->fd[1], &f->st);
	if (r == 0 && c->opts->dir_done)
		r = c->opts->dir_done(c->opts->ctx, f->fd[1], w->path);
	return r;
}

int lyr_tree_copy_ex(int src_dirfd, int dst_dirfd, const lyr_tree_copy_opts *opts,
		     lyr_tree_error *err)
{
	static const walk_ops ops = {.entry = copy_step, .enter = copy_enter, .leave = copy_leave};
	copier c = {.dst_root = dst_dirfd, .progress = opts->progress, .opts = opts};
	walk w = {.nfd = 2, .sorted = opts->sorted};
	const int dirfds[2] = {src_dirfd, dst_dirfd};
	int r = walk_tree(&w, dirfds, &ops, &c, err);
	tdestroy(c.links, link_free);
	free(c.buf);
	return r;
}

/* ---- remove -------------------------------------------------------------------------------- */

/* Opens directory NAME in DIRFD for removal, making it readable and writable first if needed. */
static int open_for_removal(int dirfd, const char *name, struct stat *ret_st)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == EACCES) {
		if (fchmodat(dirfd, name, 0700, 0) < 0)
			return -errno;
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, ret_st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	/* Removing children needs write and search permission on the directory. */
	if ((ret_st->st_mode & 0700) != 0700 && fchmod(fd, (ret_st->st_mode & 07777) | 0700) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int lyr_tree_remove(int parent_dirfd, const char *name)
{
	if (unlinkat(parent_dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM && errno != EACCES)
		return -errno;

	walk w = {.nfd = 1};
	struct stat st;
	int r = path_set(&w, 0, name);
	if (r < 0)
		goto out;
	int fd = open_for_removal(parent_dirfd, name, &st);
	if (fd < 0) {
		r = fd == -ENOENT ? 0 : fd;
		goto out;
	}
	r = walk_push(&w, &fd, &st);
	if (r < 0)
		goto out;
	while (w.depth > 0) {
		frame *f = &w.frames[w.depth - 1];
		if (f->next == f->l.n) {
			r = walk_unpark_parent(&w);
			if (r < 0)
				goto out;
			if (w.depth == 1) {
				walk_pop(&w);
				if (unlinkat(parent_dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
					r = -errno;
				goto out;
			}
			frame *parent = &w.frames[w.depth - 2];
			const char *dname = parent->l.ents[parent->next - 1].name;
			walk_pop(&w);
			if (unlinkat(parent->fd[0], dname, AT_REMOVEDIR) < 0 && errno != ENOENT) {
				r = -errno;
				goto out;
			}
			continue;
		}
		const ent *e = &f->l.ents[f->next++];
		if (e->type != DT_DIR) {
			if (unlinkat(f->fd[0], e->name, 0) == 0 || errno == ENOENT)
				continue;
			if (errno != EISDIR) {
				r = -errno;
				goto out;
			}
		}
		fd = open_for_removal(f->fd[0], e->name, &st);
		if (fd == -ENOENT)
			continue;
		if (fd < 0) {
			r = fd;
			goto out;
		}
		r = walk_push(&w, &fd, &st);
		if (r < 0)
			goto out;
	}
out:
	walk_free(&w);
	return r;
}

/* ---- generic walk ------------------------------------------------------------------------ */

static int visit_entry(void *ctx, walk *w, frame *f, const char *name, const struct stat *st)
{
	const lyr_tree_visit *v = ctx;
	return v->entry ? v->entry(v->ctx, f->fd[0], name, st, w->path) : 0;
}

static int visit_leave(void *ctx, walk *w, frame *f)
{
	const lyr_tree_visit *v = ctx;
	return v->leave ? v->leave(v->ctx, f->fd[0], &f->st, w->path) : 0;
}

int lyr_tree_walk(int dirfd, const lyr_tree_visit *v, lyr_tree_error *err)
{
	static const walk_ops ops = {.entry = visit_entry, .leave = visit_leave};
	walk w = {.nfd = 1, .sorted = v->sorted};
	return walk_tree(&w, &dirfd, &ops, (void *)v, err);
}

/* ---- usage --------------------------------------------------------------------------------- */

static int ino_cmp(const void *a, const void *b)
{
	const struct stat *x = a, *y = b;
	if (x->st_dev != y->st_dev)
		return x->st_dev < y->st_dev ? -1 : 1;
	if (x->st_ino != y->st_ino)
		return x->st_ino < y->st_ino ? -1 : 1;
	return 0;
}

int lyr_tree_usage(int dirfd, uint64_t *ret_bytes, uint64_t *ret_entries)
{
	walk w = {.nfd = 1};
	void *seen = NULL;
	uint64_t bytes = 0, entries = 0;
	struct stat st;
	int r;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = walk_push(&w, &fd, &st);
	while (r == 0 && w.depth > 0) {
		frame *f = &w.frames[w.depth - 1];
		if (f->next == f->l.n) {
			r = walk_unpark_parent(&w);
			walk_pop(&w);
			continue;
		}
		const char *name = f->l.ents[f->next++].name;
		if (fstatat(f->fd[0], name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = errno == ENOENT ? 0 : -errno;
			continue;
		}
		entries++;
		if (S_ISDIR(st.st_mode)) {
			fd = openat(f->fd[0], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			r = fd < 0 ? -errno : walk_push(&w, &fd, &st);
			continue;
		}
		if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
			continue;
		if (st.st_nlink > 1) {
			/* Other names of one inode add no bytes. */
			struct stat *key = malloc(sizeof *key);
			if (!key) {
				r = -ENOMEM;
				continue;
			}
			*key = st;
			struct stat **slot = tsearch(key, &seen, ino_cmp);
			if (!slot) {
				free(key);
				r = -ENOMEM;
				continue;
			}
			if (*slot != key) {
				free(key);
				continue;
			}
		}
		bytes += (uint64_t)st.st_size;
	}
	walk_free(&w);
	tdestroy(seen, free);
	if (r < 0)
		return r;
	*ret_bytes = bytes;
	*ret_entries = entries;
	return 0;
}
