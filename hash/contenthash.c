/* The content hash of selector paths, byte-compatible with BuildKit's cache/contenthash.
 *
 * Digests are handled as their texts ("sha256:<hex>"), because that is what enters the
 * enclosing hashes:
 *   - an entry's header is the tarsum v1 selection of tar header fields (name and mtime left
 *     out), written as name+value pairs without separators, then the kept xattrs by name;
 *   - a file's digest is sha256(header + content); a symlink's or device's is sha256(header);
 *   - a directory's digest is sha256("\0" + its header digest, then "\0" + name + digest for
 *     each child in byte order of names).  (BuildKit keys its radix tree by path with '/' as
 *     NUL; the directory's header key is the directory key + NUL, hence the leading "\0".)
 *   - wildcard and include/exclude selections list files, symlinks and directory *headers*
 *     in key order (depth first, names in byte order), each as its path relative to the
 *     literal prefix with '/' as NUL, followed by its digest.
 * Selectors are resolved by this file, one name at a time through the source's lookup, with a
 * stack of the directories on the way: ".." pops (never above the root), an absolute symlink
 * target restarts at the root, at most 255 symlinks per resolution.  So no selector or symlink
 * reaches outside the view.  Recursion depth is the tree's depth; each level holds one source
 * handle and its sorted child names.
 *
 * Threads: the calling thread (the walker) does the whole walk — every source operation, every
 * header, every cache get and put — and hands each regular file that has content and no cached
 * digest, as an open fd plus its header bytes, to a pool of worker threads (filepool.c, one per
 * CPU, or opts->threads) that read and hash it.  So sources and caches are only ever called from
 * the calling thread.  A directory's digest needs its children's in name order, and they finish
 * in any order: each directory being hashed is a node (dnode) holding a digest slot per child and
 * a count of what it still waits for (one per unfinished child, plus one until the walker has
 * left the directory).  Finished jobs come back to the walker (collect, called after each
 * submission and when too many files are out), which writes the digest into its slot, stores it
 * in the cache, and drops the count; the one who drops it to zero (always the walker) combines
 * the directory's digest, stores it, frees the node and tells the parent.  The combination is
 * the same ordered computation as with one thread, so the result does not depend on the order in
 * which files finish.  Every selector's digest ends with settle, which waits for all jobs out;
 * after a failure nothing more is stored, workers stop reading, and unfinished nodes are freed
 * there.  At most 4 files per worker are out at a time (each holds an fd and its header). */
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "internal.h"
#include "layerfs/hash.h"

#define MAX_LINKS 255

typedef struct dnode dnode;

typedef struct ch {
	const lyr_hash_source *src;
	const lyr_hash_opts *opts;
	uint8_t *rbuf;  /* HJOB_BUF bytes, for hashing files here when there is one thread */
	char *err;      /* PATH_MAX or NULL */
	bool err_set;
	uint64_t files, bytes; /* for progress */
	unsigned threads;      /* file hashing threads; 1: this thread, no pool */
	hpool *pool;           /* started at the first file to hash */
	size_t out;            /* jobs submitted and not taken back */
	int failed;            /* the first failure; then nothing more is stored or finished */
	dnode *live;           /* directories not finished yet */
} ch;

static void set_err(ch *c, const char *what)
{
	if (c->err && !c->err_set) {
		snprintf(c->err, PATH_MAX, "%s", *what ? what : "/");
		c->err_set = true;
	}
}

#define OPS(c) ((c)->src->ops)
#define CTX(c) ((c)->src->ctx)

static void release(ch *c, lyr_hash_ent *e)
{
	if (e)
		OPS(c)->release(CTX(c), e);
}

/* ---- digests of single entries ------------------------------------------------------------- */

static void text_of(const void *data, size_t len, char out[LYR_DIGEST_TEXT_LEN])
{
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256(data, len, d);
	lyr_digest_text(d, out);
}

/* Cache lookups: kind 'f' entry digest, 'd' directory digest, 'h' directory header. */
static int cache_key(ch *c, lyr_hash_ent *e, const char *path, char kind, char *key, size_t size)
{
	if (!c->opts || !c->opts->cache || !OPS(c)->cache_key)
		return 0;
	key[0] = kind;
	key[1] = ':';
	int n = OPS(c)->cache_key(CTX(c), e, *path ? path : "/", key + 2, size - 2);
	return n > 0 ? n + 2 : 0;
}

static int cache_get(ch *c, const char *key, char out[LYR_DIGEST_TEXT_LEN])
{
	const lyr_hash_cache *k = c->opts->cache;
	char tmp[LYR_DIGEST_TEXT_LEN];
	int r = k->get(k->ctx, key, tmp);
	if (r <= 0)
		return r;
	uint8_t raw[LYR_SHA256_LEN];
	if (lyr_digest_parse(tmp, raw) < 0)
		return 0; /* a damaged record is recomputed, not trusted */
	memcpy(out, tmp, LYR_DIGEST_TEXT_LEN);
	return 1;
}

static int cache_put(ch *c, const char *key, const char *digest)
{
	const lyr_hash_cache *k = c->opts->cache;
	return k->put(k->ctx, key, digest);
}

static bool xattr_kept(const char *name)
{
	if (strcmp(name, "security.capability") == 0)
		return true;
	return strncmp(name, "security.", 9) != 0 && strncmp(name, "system.", 7) != 0 &&
	       strncmp(name, "com.apple.", 10) != 0;
}

typedef struct xarg {
	ch *c;
	lyr_hash_ent *e;
} xarg;

static ssize_t x_list(void *arg, char *buf, size_t size)
{
	xarg *x = arg;
	return OPS(x->c)->listxattr(CTX(x->c), x->e, buf, size);
}

static ssize_t x_get(void *arg, const char *name, void *buf, size_t size)
{
	xarg *x = arg;
	return OPS(x->c)->getxattr(CTX(x->c), x->e, name, buf, size);
}

static void put_num(hbuf *b, const char *key, unsigned long long v)
{
	char num[32];
	int n = snprintf(num, sizeof num, "%llu", v);
	hb_puts(b, key);
	hb_put(b, num, (size_t)n);
}

/* The tarsum v1 header of an entry with stat ST, symlink target TARGET (TLEN bytes) and
 * extended attributes XA (sorted by name) into B. */
static int header_of(const struct stat *st, const char *target, size_t tlen, const hx_list *xa,
		     hbuf *b)
{
	char flag;
	switch (st->st_mode & S_IFMT) {
	case S_IFREG: flag = '0'; break;
	case S_IFDIR: flag = '5'; break;
	case S_IFLNK: flag = '2'; break;
	case S_IFCHR: flag = '3'; break;
	case S_IFBLK: flag = '4'; break;
	case S_IFIFO: flag = '6'; break;
	/* No tar form: BuildKit clears the socket bit, leaving a regular file's header with the
	 * socket's size (0), and hashes no content. */
	case S_IFSOCK: flag = '0'; break;
	default: return -EOPNOTSUPP;
	}
	unsigned long long mode = st->st_mode & 07777;
	if (S_ISLNK(st->st_mode))
		mode = 0777;
	bool dev = S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode);

	hb_puts(b, "name");
	put_num(b, "mode", mode);
	put_num(b, "uid", st->st_uid);
	put_num(b, "gid", st->st_gid);
	bool sized = S_ISREG(st->st_mode) || S_ISSOCK(st->st_mode);
	put_num(b, "size", sized ? (unsigned long long)st->st_size : 0);
	hb_puts(b, "typeflag");
	hb_put(b, &flag, 1);
	hb_puts(b, "linkname");
	hb_put(b, target, tlen);
	hb_puts(b, "uname");
	hb_puts(b, "gname");
	put_num(b, "devmajor", dev ? major(st->st_rdev) : 0);
	put_num(b, "devminor", dev ? minor(st->st_rdev) : 0);
	for (size_t i = 0; i < xa->n; i++) {
		if (!xattr_kept(xa->v[i].name))
			continue;
		hb_puts(b, xa->v[i].name);
		hb_put(b, xa->v[i].value, xa->v[i].len);
	}
	return b->oom ? -ENOMEM : 0;
}

/* The tarsum v1 header of an entry into B. */
static int tar_header(ch *c, lyr_hash_ent *e, const struct stat *st, hbuf *b)
{
	char target[PATH_MAX + 1];
	ssize_t tlen = 0;
	if (S_ISLNK(st->st_mode)) {
		tlen = OPS(c)->readlink(CTX(c), e, target, sizeof target);
		if (tlen < 0)
			return (int)tlen;
		if ((size_t)tlen >= sizeof target)
			return -ENAMETOOLONG;
	}
	hx_list xa = {0};
	xarg xg = {c, e};
	int r = hx_read_cb(x_list, x_get, &xg, &xa);
	if (r == 0)
		r = header_of(st, target, (size_t)tlen, &xa, b);
	hx_free(&xa);
	return r;
}

int lyr_hash_file_prefix(int fd, const struct stat *st, uint8_t **ret, size_t *ret_len)
{
	if (!S_ISREG(st->st_mode))
		return -EINVAL;
	hx_list xa = {0};
	int r = hx_read(fd, -1, NULL, &xa);
	if (r < 0)
		return r;
	size_t k = 0; /* a layer view hides the overlay's own attributes (source_stack.c) */
	for (size_t i = 0; i < xa.n; i++)
		if (strncmp(xa.v[i].name, "trusted.overlay.", 16) != 0 &&
		    strncmp(xa.v[i].name, "user.overlay.", 13) != 0)
			xa.v[k++] = xa.v[i];
	xa.n = k;
	hbuf b = {0};
	r = header_of(st, "", 0, &xa, &b);
	hx_free(&xa);
	if (r < 0) {
		hb_free(&b);
		return r;
	}
	*ret = b.p;
	*ret_len = b.len;
	return 0;
}

/* ---- directories --------------------------------------------------------------------------- */

typedef struct names {
	char **v;
	size_t n, cap;
} names;

static int names_add(void *arg, const char *name)
{
	names *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **nv = realloc(l->v, cap * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(name)))
		return -ENOMEM;
	l->n++;
	return 0;
}

static void names_free(names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The children of DIR in byte order of names. */
static int list_sorted(ch *c, lyr_hash_ent *dir, names *ret)
{
	names l = {0};
	int r = OPS(c)->list(CTX(c), dir, names_add, &l);
	if (r < 0) {
		names_free(&l);
		return r;
	}
	if (l.n) /* qsort's base may not be NULL, even for no elements */
		qsort(l.v, l.n, sizeof *l.v, cmp_name);
	*ret = l;
	return 0;
}

static char *join(const char *dir, const char *name)
{
	char *p;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* ---- jobs: file contents hashed on the pool ------------------------------------------------ */

/* A directory whose digest waits for its children's (see the file header). */
struct dnode {
	struct dnode *parent;
	struct dnode *prev, *next; /* c->live */
	char *out;                 /* where its digest goes */
	char *path;                /* for messages */
	char *key;                 /* 'd' cache key, or NULL */
	char hdr[LYR_DIGEST_TEXT_LEN];
	names l;                   /* children, sorted */
	char (*dig)[LYR_DIGEST_TEXT_LEN];
	bool *skip;                /* children removed since the listing: they contribute nothing */
	long pending;              /* unfinished children, plus one while the walker is inside */
};

static void node_free(ch *c, dnode *d)
{
	if (d->prev)
		d->prev->next = d->next;
	else
		c->live = d->next;
	if (d->next)
		d->next->prev = d->prev;
	names_free(&d->l);
	free(d->dig);
	free(d->skip);
	free(d->path);
	free(d->key);
	free(d);
}

/* Records the first failure R (PATH, when given, is what failed) and stops the workers' reading. */
static void fail(ch *c, int r, const char *path)
{
	if (c->failed)
		return;
	c->failed = r;
	if (path)
		set_err(c, path);
	if (c->pool)
		hpool_abort(c->pool);
}

/* All children of D are in: its digest goes to D->out and the cache, D is freed, and its parent
 * is told, upward while parents complete. */
static void finish(ch *c, dnode *d)
{
	while (d && !c->failed) {
		lyr_sha256_ctx *h = NULL;
		int r = lyr_sha256_new(&h);
		if (r < 0) {
			fail(c, r, d->path);
			return;
		}
		lyr_sha256_update(h, "", 1);
		lyr_sha256_update(h, d->hdr, LYR_DIGEST_TEXT_LEN - 1);
		for (size_t i = 0; i < d->l.n; i++) {
			if (d->skip[i])
				continue;
			lyr_sha256_update(h, "", 1);
			lyr_sha256_update(h, d->l.v[i], strlen(d->l.v[i]));
			lyr_sha256_update(h, d->dig[i], LYR_DIGEST_TEXT_LEN - 1);
		}
		uint8_t raw[LYR_SHA256_LEN];
		lyr_sha256_final(h, raw);
		lyr_sha256_free(h);
		lyr_digest_text(raw, d->out);
		if (d->key && (r = cache_put(c, d->key, d->out)) < 0) {
			fail(c, r, d->path);
			return;
		}
		dnode *parent = d->parent;
		node_free(c, d);
		d = parent && --parent->pending == 0 ? parent : NULL;
	}
}

static void job_free(hjob *j)
{
	if (j->fd >= 0)
		close(j->fd);
	hb_free(&j->hdr);
	free(j->path);
	free(j->key);
	free(j);
}

/* A job came back: its digest goes where it was asked for and to the cache, and the directory
 * waiting for it is told.  Returns the first failure so far (0 if none). */
static int job_done(ch *c, hjob *j)
{
	c->out--;
	if (j->err < 0) {
		fail(c, j->err, j->path);
	} else if (!c->failed) {
		memcpy(j->out, j->digest, LYR_DIGEST_TEXT_LEN);
		int r = j->key ? cache_put(c, j->key, j->digest) : 0;
		if (r < 0)
			fail(c, r, j->path);
		else if (j->node && --((dnode *)j->node)->pending == 0)
			finish(c, j->node);
	}
	job_free(j);
	return c->failed;
}

/* Takes back the finished jobs (with WAIT, at least one). */
static int collect(ch *c, bool wait)
{
	hjob *j = hpool_take(c->pool, wait);
	while (j) {
		hjob *next = j->next;
		job_done(c, j);
		j = next;
	}
	return c->failed;
}

/* Hands J to the pool (or, with one thread, hashes it here).  Returns the first failure so far. */
static int submit(ch *c, hjob *j)
{
	if (j->node)
		((dnode *)j->node)->pending++;
	c->out++;
	if (c->threads > 1 && !c->pool && hpool_new(c->threads, &c->pool) < 0)
		c->threads = 1; /* no threads to be had: hash here */
	if (c->threads <= 1) {
		hjob_run(j, c->rbuf, NULL);
		return job_done(c, j);
	}
	hpool_submit(c->pool, j);
	/* Every job out holds an open file: keep a few per worker queued, no more. */
	size_t max = 4 * (size_t)c->threads;
	int r = collect(c, false);
	while (r == 0 && c->out >= max)
		r = collect(c, true);
	return r;
}

/* Waits for every job out.  Returns R if negative, else the first failure, else 0; after a
 * failure, frees the directories left unfinished. */
static int settle(ch *c, int r)
{
	if (r < 0)
		fail(c, r, NULL);
	while (c->out > 0)
		collect(c, true);
	if (!c->failed)
		return 0;
	while (c->live)
		node_free(c, c->live);
	return c->failed;
}

/* ---- digests of entries -------------------------------------------------------------------- */

/* Starts the digest of a non-directory entry, or the header digest of a directory, for OUT.
 * Header-only and cached digests are in OUT when this returns; a regular file with content
 * becomes a job, its digest lands in OUT when the job is taken back (by settle at the latest),
 * and NODE (may be NULL) waits for it. */
static int start_entry(ch *c, lyr_hash_ent *e, const struct stat *st, const char *path,
		       dnode *node, char out[LYR_DIGEST_TEXT_LEN])
{
	char key[PATH_MAX + 64];
	int kl = cache_key(c, e, path, S_ISDIR(st->st_mode) ? 'h' : 'f', key, sizeof key);
	int r;
	if (kl > 0 && (r = cache_get(c, key, out)) != 0)
		return r < 0 ? r : 0;

	hbuf b = {0};
	r = tar_header(c, e, st, &b);
	if (r < 0) {
		hb_free(&b);
		return r;
	}
	c->files++;
	if (S_ISREG(st->st_mode))
		c->bytes += (uint64_t)st->st_size;
	if (c->opts)
		lyr_progress_report(c->opts->progress, c->files, c->bytes);
	if (!S_ISREG(st->st_mode) || st->st_size == 0) {
		text_of(b.p, b.len, out);
		hb_free(&b);
		return kl > 0 ? cache_put(c, key, out) : 0;
	}
	int fd = OPS(c)->open(CTX(c), e);
	if (fd < 0) {
		hb_free(&b);
		return fd;
	}
	hjob *j = calloc(1, sizeof *j);
	if (!j || !(j->path = strdup(path)) || (kl > 0 && !(j->key = strdup(key)))) {
		if (j)
			free(j->path);
		free(j);
		close(fd);
		hb_free(&b);
		return -ENOMEM;
	}
	j->fd = fd;
	j->size = st->st_size;
	j->hdr = b;
	j->out = out;
	j->node = node;
	return submit(c, j);
}

/* Starts the digest of directory E at PATH for OUT, which holds it once the directory and all
 * below it are hashed; PARENT (may be NULL) waits for it. */
static int start_dir(ch *c, lyr_hash_ent *e, const struct stat *st, const char *path,
		     dnode *parent, char out[LYR_DIGEST_TEXT_LEN])
{
	char key[PATH_MAX + 64];
	int kl = cache_key(c, e, path, 'd', key, sizeof key);
	int r;
	if (kl > 0 && (r = cache_get(c, key, out)) != 0)
		return r < 0 ? r : 0;

	dnode *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->next = c->live;
	if (c->live)
		c->live->prev = d;
	c->live = d;
	d->parent = parent;
	d->out = out;
	d->pending = 1;
	if (parent)
		parent->pending++;
	if (!(d->path = strdup(path)) || (kl > 0 && !(d->key = strdup(key))))
		return -ENOMEM; /* D is freed by settle */

	r = start_entry(c, e, st, path, NULL, d->hdr);
	if (r >= 0)
		r = list_sorted(c, e, &d->l);
	if (r < 0) {
		set_err(c, path);
		return r;
	}
	if (d->l.n && (!(d->dig = calloc(d->l.n, sizeof *d->dig)) ||
		       !(d->skip = calloc(d->l.n, sizeof *d->skip))))
		return -ENOMEM;
	for (size_t i = 0; r >= 0 && i < d->l.n; i++) {
		_cleanup_free_ char *cpath = join(path, d->l.v[i]);
		if (!cpath)
			return -ENOMEM;
		lyr_hash_ent *ce = NULL;
		struct stat cst;
		r = OPS(c)->lookup(CTX(c), e, d->l.v[i], &ce, &cst);
		if (r == -ENOENT) {
			d->skip[i] = true; /* removed since the listing */
			release(c, ce);
			r = 0;
			continue;
		}
		if (r >= 0)
			r = S_ISDIR(cst.st_mode) ? start_dir(c, ce, &cst, cpath, d, d->dig[i])
						 : start_entry(c, ce, &cst, cpath, d, d->dig[i]);
		release(c, ce);
		if (r < 0)
			set_err(c, cpath);
	}
	if (r < 0)
		return r;
	if (--d->pending == 0)
		finish(c, d);
	return c->failed;
}

/* ---- resolution ---------------------------------------------------------------------------- */


/* Resolves the normalised absolute PATH in the view: symlinks in every component but the last
 * are followed, the last one too with FOLLOW_LAST; ".." never goes above the root.  Returns the
 * entry (caller releases) and its stat, or -ENOENT / -ELOOP / -errno. */
static int resolve(ch *c, const char *path, bool follow_last, lyr_hash_ent **ret, struct stat *ret_st)
{
	/* The directories from the root to where the walk is; all of them directories. */
	lyr_hash_ent **stack = NULL;
	struct stat *stats = NULL;
	size_t depth = 0, cap = 0;
	lyr_hash_ent *e = NULL;
	struct stat st;
	int links = 0, r;
	char *rest = strdup(path);
	if (!rest)
		return -ENOMEM;
	r = OPS(c)->root(CTX(c), &e, &st);
	if (r < 0)
		goto out;
	for (;;) {
		if (e) {
			if (depth == cap) {
				cap = cap ? cap * 2 : 16;
				lyr_hash_ent **ns = realloc(stack, cap * sizeof *ns);
				if (ns)
					stack = ns;
				struct stat *nt = realloc(stats, cap * sizeof *nt);
				if (nt)
					stats = nt;
				if (!ns || !nt) {
					release(c, e);
					r = -ENOMEM;
					goto out;
				}
			}
			stack[depth] = e;
			stats[depth++] = st;
			e = NULL;
		}
		char *p = rest + strspn(rest, "/");
		if (!*p)
			break;
		size_t n = strcspn(p, "/");
		char name[NAME_MAX + 1];
		if (n > NAME_MAX) {
			r = -ENAMETOOLONG;
			goto out;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		memmove(rest, p + n, strlen(p + n) + 1);
		bool last = rest[strspn(rest, "/")] == '\0';
		if (strcmp(name, ".") == 0)
			continue;
		if (strcmp(name, "..") == 0) {
			if (depth > 1)
				release(c, stack[--depth]);
			continue;
		}
		r = OPS(c)->lookup(CTX(c), stack[depth - 1], name, &e, &st);
		if (r < 0)
			goto out;
		if (S_ISLNK(st.st_mode) && (!last || follow_last)) {
			char target[PATH_MAX + 1];
			ssize_t tl = ++links > MAX_LINKS ? -ELOOP
							 : OPS(c)->readlink(CTX(c), e, target, PATH_MAX);
			release(c, e);
			e = NULL;
			if (tl < 0 || tl >= PATH_MAX) {
				r = tl < 0 ? (int)tl : -ENAMETOOLONG;
				goto out;
			}
			target[tl] = '\0';
			char *nr;
			if (asprintf(&nr, "%s/%s", target, rest) < 0) {
				r = -ENOMEM;
				goto out;
			}
			free(rest);
			rest = nr;
			if (target[0] == '/') /* from the view's root, never the host's */
				while (depth > 1)
					release(c, stack[--depth]);
			continue;
		}
		if (last) {
			*ret = e;
			*ret_st = st;
			r = 0;
			goto out;
		}
		if (!S_ISDIR(st.st_mode)) {
			release(c, e);
			r = -ENOENT; /* a file used as a directory: no such path */
			goto out;
		}
	}
	/* The path ended on a directory of the stack ("/", "..", or a trailing symlink to one). */
	*ret = stack[--depth];
	*ret_st = stats[depth];
	r = 0;
out:
	while (depth > 0)
		release(c, stack[--depth]);
	free(stack);
	free(stats);
	free(rest);
	return r;
}

/* The digest of one normalised non-wildcard selector without patterns. */
static int path_digest(ch *c, const char *sel, bool follow, char out[LYR_DIGEST_TEXT_LEN])
{
	lyr_hash_ent *e = NULL;
	struct stat st;
	int r = resolve(c, sel, follow, &e, &st);
	if (r < 0) {
		set_err(c, sel);
		return r;
	}
	const char *path = strcmp(sel, "/") == 0 ? "" : sel;
	if (S_ISDIR(st.st_mode))
		r = start_dir(c, e, &st, path, NULL, out);
	else
		r = start_entry(c, e, &st, path, NULL, out);
	release(c, e);
	r = settle(c, r);
	if (r < 0)
		set_err(c, sel);
	return r;
}

/* ---- selections: wildcards and include/exclude --------------------------------------------- */

typedef struct item {
	char *path; /* in the view, "" for the root */
	char digest[LYR_DIGEST_TEXT_LEN];
	bool symlink, included;
	bool top; /* no listed directory above it: a matched path itself, never its content */
} item;

typedef struct sel {
	const char *pattern; /* wildcard pattern, or NULL */
	const char *base;    /* non-wildcard: the selected path ("" for the root) */
	size_t pattern_depth;
	const char *last_matched;
	item **parents;
	size_t n_parents, cap_parents;
	item **out;
	size_t n_out, cap_out;
	item **all;
	size_t n_all, cap_all;
} sel;

static int push(item ***v, size_t *n, size_t *cap, item *it)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		item **nv = realloc(*v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = it;
	return 0;
}

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

static size_t depth_of(const char *path)
{
	size_t n = 0;
	for (; *path; path++)
		n += *path == '/';
	return n;
}

static bool any_match(const char *const *pats, size_t n, const char *cand)
{
	for (size_t i = 0; i < n; i++) {
		const char *p = pats[i];
		while (*p == '/')
			p++;
		if (hglob_match_path(p, cand))
			return true;
	}
	return false;
}

static bool should_include(ch *c, const char *cand)
{
	const lyr_hash_opts *o = c->opts;
	if (!o)
		return true;
	if (o->n_include && !any_match(o->include, o->n_include, cand))
		return false;
	if (o->n_exclude && any_match(o->exclude, o->n_exclude, cand))
		return false;
	return true;
}

/* Relative part of PATH below DIR ("" when equal). */
static const char *rel_to(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	if (strncmp(path, dir, n) != 0)
		return path;
	path += n;
	while (*path == '/')
		path++;
	return path;
}

static int visit(ch *c, sel *s, lyr_hash_ent *e, const struct stat *st, const char *fn);

static int visit_children(ch *c, sel *s, lyr_hash_ent *dir, const char *fn)
{
	names l = {0};
	int r = list_sorted(c, dir, &l);
	if (r < 0)
		set_err(c, fn);
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		_cleanup_free_ char *cfn = join(fn, l.v[i]);
		if (!cfn) {
			r = -ENOMEM;
			break;
		}
		lyr_hash_ent *ce = NULL;
		struct stat cst;
		r = OPS(c)->lookup(CTX(c), dir, l.v[i], &ce, &cst);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r < 0) {
			set_err(c, cfn);
			break;
		}
		r = visit(c, s, ce, &cst, cfn);
		release(c, ce);
	}
	names_free(&l);
	return r;
}

/* One entry of the selection walk (in key order), as BuildKit's includedPaths does it. */
static int visit(ch *c, sel *s, lyr_hash_ent *e, const struct stat *st, const char *fn)
{
	bool dir = S_ISDIR(st->st_mode);
	while (s->n_parents && !under(fn, s->parents[s->n_parents - 1]->path))
		s->n_parents--;

	bool matched_now = false;
	if (s->pattern && (!s->last_matched || !under(fn, s->last_matched))) {
		if (fnmatch(s->pattern, fn, FNM_PATHNAME) != 0) {
			/* `*` never crosses '/', so only shallower directories can hold a match. */
			if (dir && depth_of(fn) < s->pattern_depth)
				return visit_children(c, s, e, fn);
			return 0;
		}
		matched_now = true;
	}

	item *it = calloc(1, sizeof *it);
	if (!it || !(it->path = strdup(fn))) {
		free(it);
		return -ENOMEM;
	}
	int r = push(&s->all, &s->n_all, &s->cap_all, it);
	if (r < 0) {
		free(it->path);
		free(it);
		return r;
	}
	if (matched_now)
		s->last_matched = it->path; /* items live until the selection is done */
	it->top = s->n_parents == 0;
	const char *cand = rel_to(fn, s->pattern ? s->last_matched : s->base);

	bool inc = should_include(c, cand);
	if (!inc && !dir)
		return 0;
	r = start_entry(c, e, st, fn, NULL, it->digest); /* a file's lands by settle */
	if (r < 0) {
		set_err(c, fn);
		return r;
	}
	it->symlink = S_ISLNK(st->st_mode);
	if (inc) {
		for (size_t i = 0; i < s->n_parents; i++) {
			if (s->parents[i]->included)
				continue;
			s->parents[i]->included = true;
			if ((r = push(&s->out, &s->n_out, &s->cap_out, s->parents[i])) < 0)
				return r;
		}
		it->included = true;
		if ((r = push(&s->out, &s->n_out, &s->cap_out, it)) < 0)
			return r;
	}
	if (dir) {
		if ((r = push(&s->parents, &s->n_parents, &s->cap_parents, it)) < 0)
			return r;
		return visit_children(c, s, e, fn);
	}
	return 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* Splits pattern P (normalised, absolute) into its literal directory prefix ("" for the root)
 * and returns it as a heap string. */
static char *literal_prefix(const char *p)
{
	char *out = strdup(p);
	if (!out)
		return NULL;
	size_t keep = 0;
	for (char *comp = out; *comp;) {
		while (*comp == '/')
			comp++;
		char *end = strchrnul(comp, '/');
		char save = *end;
		*end = '\0';
		bool wild = lyr_hash_selector_is_wildcard(comp);
		*end = save;
		if (wild)
			break;
		keep = (size_t)(end - out);
		comp = end;
	}
	out[keep] = '\0';
	return out;
}

static int selection_digest(ch *c, const char *selector, bool wildcard, char out[LYR_DIGEST_TEXT_LEN])
{
	bool follow = c->opts && c->opts->follow_links;
	const char *text = strcmp(selector, "/") == 0 ? "" : selector;
	_cleanup_free_ char *prefix = wildcard ? literal_prefix(text) : strdup(text);
	if (!prefix)
		return -ENOMEM;
	sel s = {.pattern = wildcard ? selector : NULL, .base = text,
		 .pattern_depth = depth_of(selector)};
	lyr_hash_ent *e = NULL;
	struct stat st;
	int r;

	if (wildcard) {
		r = *prefix ? resolve(c, prefix, true, &e, &st) : OPS(c)->root(CTX(c), &e, &st);
		if (r == -ENOENT || r == -ENOTDIR) {
			r = 0; /* nothing under a missing prefix matches */
		} else if (r >= 0) {
			r = S_ISDIR(st.st_mode) ? visit_children(c, &s, e, prefix) : 0;
		}
	} else {
		r = resolve(c, *text ? text : "/", false, &e, &st);
		if (r < 0)
			set_err(c, selector);
		else if (S_ISDIR(st.st_mode))
			r = visit(c, &s, e, &st, text);
	}
	release(c, e);
	r = settle(c, r); /* every item's digest is in */
	if (r < 0)
		set_err(c, selector); /* unless a deeper path was named already */

	/* As BuildKit's COPY: a matched symlink is followed, a symlink met while walking the
	 * content below a match never is (it is listed as a link, dangling or not). */
	for (size_t i = 0; r >= 0 && follow && i < s.n_out; i++) {
		item *it = s.out[i];
		if (it->symlink && it->top)
			r = path_digest(c, *it->path ? it->path : "/", true, it->digest);
	}
	if (r >= 0) {
		if (s.n_out == 0) {
			text_of("", 0, out);
		} else if (s.n_out == 1 && strcmp(base_name(selector), base_name(s.out[0]->path)) == 0) {
			memcpy(out, s.out[0]->digest, LYR_DIGEST_TEXT_LEN);
		} else {
			lyr_sha256_ctx *h = NULL;
			r = lyr_sha256_new(&h);
			for (size_t i = 0; r >= 0 && i < s.n_out; i++) {
				const char *rel = s.out[i]->path + strlen(prefix);
				if (!*rel) {
					lyr_sha256_update(h, "", 1);
				} else {
					/* the relative path with every '/' written as NUL */
					for (const char *p = rel; *p;) {
						size_t n = strcspn(p, "/");
						lyr_sha256_update(h, p, n);
						p += n;
						if (*p == '/') {
							lyr_sha256_update(h, "", 1);
							p++;
						}
					}
				}
				lyr_sha256_update(h, s.out[i]->digest, LYR_DIGEST_TEXT_LEN - 1);
			}
			if (r >= 0) {
				uint8_t raw[LYR_SHA256_LEN];
				lyr_sha256_final(h, raw);
				lyr_digest_text(raw, out);
			}
			lyr_sha256_free(h);
		}
	}
	for (size_t i = 0; i < s.n_all; i++) {
		free(s.all[i]->path);
		free(s.all[i]);
	}
	free(s.all);
	free(s.out);
	free(s.parents);
	return r;
}

static int one_digest(ch *c, const char *selector, char out[LYR_DIGEST_TEXT_LEN])
{
	const lyr_hash_opts *o = c->opts;
	bool wildcard = lyr_hash_selector_is_wildcard(selector);
	bool patterns = o && (o->n_include || o->n_exclude);
	if (!wildcard && !patterns)
		return path_digest(c, selector, o && o->follow_links, out);
	return selection_digest(c, selector, wildcard, out);
}

int lyr_hash_selectors(const lyr_hash_source *src, const char *const *selectors, size_t n,
		       const lyr_hash_opts *opts, char ret_digest[LYR_DIGEST_TEXT_LEN])
{
	ch c = {.src = src, .opts = opts, .err = opts ? opts->err_path : NULL,
		.threads = opts && opts->threads ? opts->threads : hpool_default_threads()};
	if (c.threads > HPOOL_MAX_THREADS)
		c.threads = HPOOL_MAX_THREADS;
	static const char *const whole[] = {"/"};
	char **list = NULL;
	size_t kept = 0, bad = 0;
	char **digests = NULL;
	int r;

	if (n == 0) {
		selectors = whole;
		n = 1;
	}
	bool filtered = opts && (opts->n_include || opts->n_exclude);
	r = lyr_hash_selectors_dedupe(selectors, n, filtered, &list, &kept, &bad);
	if (r < 0) {
		if (r == -EINVAL)
			set_err(&c, selectors[bad]);
		return r;
	}
	c.rbuf = malloc(HJOB_BUF);
	digests = calloc(kept, sizeof *digests);
	if (!c.rbuf || !digests) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < kept; i++) {
		digests[i] = malloc(LYR_DIGEST_TEXT_LEN);
		if (!digests[i]) {
			r = -ENOMEM;
			goto out;
		}
		r = one_digest(&c, list[i], digests[i]);
		if (r < 0)
			goto out;
	}
	if (kept == 1) {
		memcpy(ret_digest, digests[0], LYR_DIGEST_TEXT_LEN);
	} else {
		lyr_sha256_ctx *h = NULL;
		r = lyr_sha256_new(&h);
		if (r < 0)
			goto out;
		for (size_t i = 0; i < kept; i++) {
			if (i)
				lyr_sha256_update(h, "", 1);
			lyr_sha256_update(h, digests[i], LYR_DIGEST_TEXT_LEN - 1);
		}
		uint8_t raw[LYR_SHA256_LEN];
		lyr_sha256_final(h, raw);
		lyr_sha256_free(h);
		lyr_digest_text(raw, ret_digest);
	}
	r = 0;
out:
	for (size_t i = 0; digests && i < kept; i++)
		free(digests[i]);
	free(digests);
	lyr_hash_selectors_free(list, kept);
	hpool_free(c.pool); /* every job was taken back by settle */
	free(c.rbuf);
	return r;
}
