/* The diff digest behind layer IDs: a Merkle digest of a diff directory, encoded exactly as
 * docs/diff-digest.md specifies.
 *
 * The calling thread walks the tree (lyr_tree_walk, sorted, any depth) and builds, for each
 * directory on the way, a node holding its children's names and digest slots.  Regular files are
 * opened by the walker and handed, with their encoded header, to a pool of workers (HASH_THREADS,
 * or as many as the caller asks for) that read and hash the contents; everything else is digested
 * by the walker on the spot.  A
 * directory's digest can only be computed once all its children's digests are in, which may be
 * after the walker has moved on, so each node counts what it still waits for (`pending`: one per
 * unfinished child plus one until the walker has left the directory).  Whoever drops the count to
 * zero — the walker or a worker — computes the directory's digest, writes it into the parent's
 * slot, frees the node and passes the completion upward.  Only the finished part of the tree is
 * freed, so memory holds the directories along the walk plus those waiting for queued files.
 * A file of PIPELINE_MIN bytes or more is read ahead by a short-lived reader thread, because one
 * file's SHA-256 cannot be split and the page-cache copy is all a second core can take over.
 *
 * Import (lyr_hash_import) digests the copy while lyr_tree_copy_ex makes it, in one pass: the
 * copy goes in the walk's sorted order and its hooks hand the walker each entry of the copy as
 * it is completed (import_*), so the tree is neither walked nor opened a second time.  A file of
 * up to INLINE_MAX bytes is copied through a buffer and hashed from that buffer on the spot (one
 * read of the source, no hand-over); a bigger one is copied the copy's own way (reflink,
 * copy_file_range) and read back by a worker, while the copy goes on.  The import also refuses
 * what it must not turn into overlay markers (see plain_entry).
 *
 * Listing (lyr_diff_opts.entries): the walker also keeps each entry's header and path; a worker
 * writes the content digest into the entry of its job, read after the workers are joined.
 *
 * Locking: `lock` protects the job queue, every node's `pending`, and the first
 * error.  The
 * walker alone appends children (only to the node it is in, which cannot finish meanwhile);
 * a worker writes only the digest of the child its job names; a node's children are read only by
 * the thread that finishes it, after the count reached zero under the lock.  At most QUEUE_LEN
 * files are open in the queue. */
#include "layerfs/hash.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "internal.h"
#include "layerfs/stack.h"
#include "layerfs/tree.h"

#define HASH_THREADS 2
#define QUEUE_LEN 32
#define READ_CHUNK (1u << 20)

typedef struct kid {
	char *name;
	uint8_t digest[LYR_SHA256_LEN];
} kid;

typedef struct dnode {
	struct dnode *parent;
	kid *slot; /* where this directory's digest goes; NULL for the root */
	kid **kids;
	size_t n, cap;
	long pending;
	hbuf hdr;
} dnode;

typedef struct job {
	int fd;
	off_t size;
	hbuf hdr;
	kid *slot;
	dnode *node;
	char *path;
	lyr_diff_entry *ent; /* where the content digest goes too, when listing */
	lyr_sha256_ctx *extra; /* fed the prefix, then the content (lyr_diff_opts.file_prefix) */
} job;

typedef struct link_rec {
	dev_t dev;
	ino_t ino;
	char *path;
} link_rec;

typedef struct hasher {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	job *queue[QUEUE_LEN];
	size_t qhead, qlen;
	bool stop;

	atomic_int error; /* first failure, negative errno */
	char *err_path;   /* its relative path, under lock */

	dnode *cur;       /* the directory the walker is in (walker only) */
	void *links;      /* hard-link groups seen so far (walker only) */
	uint8_t root[LYR_SHA256_LEN];
	bool root_done;

	const lyr_progress *progress;
	uint64_t files;   /* walker only */
	uint64_t usage;   /* apparent size so far, as lyr_tree_usage counts it (walker only) */
	atomic_uint_fast64_t bytes;
	hbuf scratch;     /* walker only */

	pthread_t *threads; /* nthreads, of which `started` run */
	unsigned nthreads, started;
	bool listing;          /* collect every entry (lyr_diff_opts.entries) */
	const lyr_diff_opts *opts;
	hbuf ents;             /* lyr_diff_entry pointers; walker only (workers fill in the data
				* of their job's entry) */
	bool plain;       /* an import: overlay markers are refused (see plain_*) */
	int src_root;     /* an import's source directory */
	uint8_t *copybuf; /* an import's buffer for small files (walker only) */
	uint8_t copied[LYR_SHA256_LEN]; /* the content digest of the file just copied through it */
	bool copied_set;
	char why[sizeof ((lyr_tree_error *)0)->why]; /* what a refused entry is (walker only) */
} hasher;

static void fail(hasher *h, int r, const char *path)
{
	pthread_mutex_lock(&h->lock);
	if (atomic_load(&h->error) == 0) {
		atomic_store(&h->error, r);
		free(h->err_path);
		h->err_path = strdup(path);
	}
	pthread_mutex_unlock(&h->lock);
}

static void node_free(dnode *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->kids[i]->name);
		free(d->kids[i]);
	}
	free(d->kids);
	hb_free(&d->hdr);
	free(d);
}

/* The last thing node D waited for has arrived: digest it and complete it in its parent, and so
 * on upward.  Called without the lock, by the one thread that dropped the count to zero. */
static void finish(hasher *h, dnode *d)
{
	while (d) {
		hbuf b = {0};
		hb_put(&b, d->hdr.p, d->hdr.len);
		hb_lcstr(&b, "entries");
		hb_lnum(&b, d->n);
		for (size_t i = 0; i < d->n; i++) {
			hb_lcstr(&b, d->kids[i]->name);
			hb_put(&b, d->kids[i]->digest, LYR_SHA256_LEN);
		}
		uint8_t dig[LYR_SHA256_LEN];
		if (b.oom || d->hdr.oom) {
			fail(h, -ENOMEM, "");
			memset(dig, 0, sizeof dig);
		} else {
			lyr_sha256(b.p, b.len, dig);
		}
		hb_free(&b);

		dnode *parent = d->parent;
		if (d->slot)
			memcpy(d->slot->digest, dig, sizeof dig);
		else {
			memcpy(h->root, dig, sizeof dig);
			h->root_done = true;
		}
		node_free(d);
		if (!parent)
			return;
		pthread_mutex_lock(&h->lock);
		bool done = --parent->pending == 0;
		pthread_mutex_unlock(&h->lock);
		d = done ? parent : NULL;
	}
}

static void complete(hasher *h, dnode *d)
{
	pthread_mutex_lock(&h->lock);
	bool done = --d->pending == 0;
	pthread_mutex_unlock(&h->lock);
	if (done)
		finish(h, d);
}

/* Adds a child NAME to the walker's current directory; its digest is filled in later. */
static kid *add_kid(hasher *h, const char *name)
{
	dnode *d = h->cur;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		kid **nk = realloc(d->kids, cap * sizeof *nk);
		if (!nk)
			return NULL;
		d->kids = nk;
		d->cap = cap;
	}
	kid *k = calloc(1, sizeof *k);
	if (!k || !(k->name = strdup(name))) {
		free(k);
		return NULL;
	}
	d->kids[d->n++] = k;
	return k;
}

/* Lists the entry PATH with header HDR when listing; *RET (may be NULL) gets it, or NULL when
 * not listing.  Walker only. */
static int list_entry(hasher *h, const char *path, const hbuf *hdr, lyr_diff_entry **ret)
{
	if (ret)
		*ret = NULL;
	if (!h->listing)
		return 0;
	lyr_diff_entry *e = calloc(1, sizeof *e);
	if (e)
		hb_put(&h->ents, &e, sizeof e);
	if (!e || h->ents.oom || !(e->path = strdup(path)) ||
	    !(e->header = malloc(hdr->len ? hdr->len : 1))) {
		if (e && !h->ents.oom)
			h->ents.len -= sizeof e;
		if (e)
			free(e->path);
		free(e);
		return -ENOMEM;
	}
	memcpy(e->header, hdr->p, hdr->len);
	e->header_len = hdr->len;
	if (ret)
		*ret = e;
	return 0;
}

static char type_char(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return 'f';
	case S_IFDIR: return 'd';
	case S_IFLNK: return 'l';
	case S_IFCHR: return 'c';
	case S_IFBLK: return 'b';
	case S_IFIFO: return 'p';
	case S_IFSOCK: return 's';
	default: return 0;
	}
}

/* True for an overlay xattr that is bookkeeping of the mount that wrote it, in either
 * namespace: the daemon's (overlay.layerfs.*: an origin inode number, a hard-link group's
 * count) and kernel overlayfs' (origin and upper file handles, impure and nlink caches, the
 * filesystem's uuid).  Local facts, not content: the same change committed from either
 * backend, on any machine, gets the same layer ID.  Markers (opaque, redirect, metacopy,
 * whiteout, protattr) are content and stay. */
static bool local_xattr(const char *name)
{
	static const char *const ns[] = {"trusted.overlay.", "user.overlay."};
	static const char *const local[] = {"origin", "upper", "impure", "nlink", "uuid"};
	for (size_t p = 0; p < LYR_ARRAY_SIZE(ns); p++) {
		if (strncmp(name, ns[p], strlen(ns[p])) != 0)
			continue;
		const char *suffix = name + strlen(ns[p]);
		if (strncmp(suffix, "layerfs.", 8) == 0)
			return true;
		for (size_t i = 0; i < LYR_ARRAY_SIZE(local); i++)
			if (strcmp(suffix, local[i]) == 0)
				return true;
	}
	return false;
}

static void drop_local_xattrs(hx_list *xa)
{
	size_t k = 0;
	for (size_t i = 0; i < xa->n; i++)
		if (!local_xattr(xa->v[i].name))
			xa->v[k++] = xa->v[i];
	xa->n = k;
}

/* ---- imports of plain trees ---------------------------------------------------------------- */

/* A layer's diff is read as an overlay upper: a ".wh." name (OCI/AUFS marker), a character
 * device 0/0 (whiteout) and an overlay xattr (opaque, redirect, metacopy, ...) are markers, not
 * content.  A directory import is a plain copy, so such an entry in its source is refused (-EINVAL
 * with h->why saying what it is) rather than silently turned into a marker. */
static int plain_refuse(hasher *h, const char *what, const char *name, const char *marker)
{
	snprintf(h->why, sizeof h->why, "%s%s%s%s is %s in a layer: a directory import copies files "
		 "and refuses it", what, name ? " '" : "", name ? name : "", name ? "'" : "", marker);
	return -EINVAL;
}

static int plain_entry(hasher *h, const char *name, const struct stat *st)
{
	if (!h->plain)
		return 0;
	if (strncmp(name, LYR_WH_PREFIX, strlen(LYR_WH_PREFIX)) == 0)
		return plain_refuse(h, "a name starting with", LYR_WH_PREFIX, "a whiteout marker");
	if (lyr_stack_is_whiteout(st))
		return plain_refuse(h, "a character device 0/0", NULL, "a whiteout");
	return 0;
}

/* Reads the xattrs of an entry as hx_read does, refuses overlay markers in an import and drops
 * the store's local bookkeeping. */
static int read_xattrs(hasher *h, int fd, int dirfd, const char *name, hx_list *xa)
{
	int r = hx_read(fd, dirfd, name, xa);
	if (r < 0)
		return r;
	static const char *const overlay[] = {"trusted.overlay.", "user.overlay."};
	for (size_t i = 0; h->plain && i < xa->n; i++)
		for (size_t p = 0; p < LYR_ARRAY_SIZE(overlay); p++)
			if (strncmp(xa->v[i].name, overlay[p], strlen(overlay[p])) == 0)
				return plain_refuse(h, "xattr", xa->v[i].name,
						    "an overlay marker");
	drop_local_xattrs(xa);
	return 0;
}

/* Encodes the header of docs/diff-digest.md ("Entry header") into B. */
static int encode_header(hbuf *b, const struct stat *st, const char *target, size_t target_len,
			 const hx_list *xa)
{
	char t[2] = {type_char(st->st_mode), 0};
	if (!t[0])
		return -EINVAL;
	char num[64];

	hb_lcstr(b, "type");
	hb_lcstr(b, t);
	hb_lcstr(b, "mode");
	hb_lnum(b, st->st_mode & 07777);
	hb_lcstr(b, "uid");
	hb_lnum(b, st->st_uid);
	hb_lcstr(b, "gid");
	hb_lnum(b, st->st_gid);
	hb_lcstr(b, "size");
	hb_lnum(b, S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0);
	hb_lcstr(b, "mtime");
	snprintf(num, sizeof num, "%lld.%09ld", (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	hb_lcstr(b, num);
	if (S_ISLNK(st->st_mode)) {
		hb_lcstr(b, "link");
		hb_lstr(b, target, target_len);
	}
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		hb_lcstr(b, "rdev");
		snprintf(num, sizeof num, "%u:%u", major(st->st_rdev), minor(st->st_rdev));
		hb_lcstr(b, num);
	}
	hb_lcstr(b, "xattrs");
	hb_lnum(b, xa->n);
	for (size_t i = 0; i < xa->n; i++) {
		hb_lcstr(b, xa->v[i].name);
		hb_lstr(b, xa->v[i].value, xa->v[i].len);
	}
	return b->oom ? -ENOMEM : 0;
}

/* ---- workers ------------------------------------------------------------------------------- */

/* Reading a big file ahead in a second thread: SHA-256 of one file cannot be split, so the
 * copy out of the page cache is what a second core can take off the hashing thread. */
#define PIPE_BUFS 4
#define PIPELINE_MIN (16u << 20)

typedef struct reader {
	int fd;
	uint8_t *buf[PIPE_BUFS];
	size_t len[PIPE_BUFS];
	size_t head, count;
	bool eof, cancel;
	int err;
	pthread_mutex_t lock;
	pthread_cond_t cond;
} reader;

static void *reader_run(void *arg)
{
	reader *rd = arg;
	for (;;) {
		pthread_mutex_lock(&rd->lock);
		while (rd->count == PIPE_BUFS && !rd->cancel)
			pthread_cond_wait(&rd->cond, &rd->lock);
		size_t idx = (rd->head + rd->count) % PIPE_BUFS;
		bool cancel = rd->cancel;
		pthread_mutex_unlock(&rd->lock);
		if (cancel)
			return NULL;
		ssize_t n;
		do
			n = read(rd->fd, rd->buf[idx], READ_CHUNK);
		while (n < 0 && errno == EINTR);
		pthread_mutex_lock(&rd->lock);
		if (n <= 0) {
			rd->eof = true;
			rd->err = n < 0 ? -errno : 0;
		} else {
			rd->len[idx] = (size_t)n;
			rd->count++;
		}
		pthread_cond_broadcast(&rd->cond);
		pthread_mutex_unlock(&rd->lock);
		if (n <= 0)
			return NULL;
	}
}

/* Feeds the file to C through a reader thread; returns bytes hashed or -errno, or 1 in
 * *FALLBACK when no thread could be made (the caller then reads by itself). */
static int64_t hash_pipelined(hasher *h, int fd, lyr_sha256_ctx *c, lyr_sha256_ctx *c2,
			      bool *fallback)
{
	reader rd = {.fd = fd};
	int64_t total = 0;
	*fallback = false;
	for (int i = 0; i < PIPE_BUFS; i++)
		if (!(rd.buf[i] = malloc(READ_CHUNK)))
			*fallback = true;
	pthread_t t;
	pthread_mutex_init(&rd.lock, NULL);
	pthread_cond_init(&rd.cond, NULL);
	if (!*fallback && pthread_create(&t, NULL, reader_run, &rd) != 0)
		*fallback = true;
	if (!*fallback) {
		for (;;) {
			pthread_mutex_lock(&rd.lock);
			while (rd.count == 0 && !rd.eof)
				pthread_cond_wait(&rd.cond, &rd.lock);
			if (rd.count == 0 || atomic_load(&h->error)) {
				rd.cancel = true;
				pthread_cond_broadcast(&rd.cond);
				pthread_mutex_unlock(&rd.lock);
				break;
			}
			size_t idx = rd.head;
			pthread_mutex_unlock(&rd.lock);
			lyr_sha256_update(c, rd.buf[idx], rd.len[idx]);
			if (c2)
				lyr_sha256_update(c2, rd.buf[idx], rd.len[idx]);
			total += (int64_t)rd.len[idx];
			atomic_fetch_add(&h->bytes, (uint64_t)rd.len[idx]);
			pthread_mutex_lock(&rd.lock);
			rd.head = (rd.head + 1) % PIPE_BUFS;
			rd.count--;
			pthread_cond_broadcast(&rd.cond);
			pthread_mutex_unlock(&rd.lock);
		}
		pthread_join(t, NULL);
		if (rd.err < 0)
			total = rd.err;
		else if (atomic_load(&h->error))
			total = atomic_load(&h->error);
	}
	pthread_cond_destroy(&rd.cond);
	pthread_mutex_destroy(&rd.lock);
	for (int i = 0; i < PIPE_BUFS; i++)
		free(rd.buf[i]);
	return total;
}

static int hash_contents(hasher *h, job *j, uint8_t *buf, uint8_t out[LYR_SHA256_LEN])
{
	lyr_sha256_ctx *c = NULL;
	int r = lyr_sha256_new(&c);
	if (r < 0)
		return r;
	/* An import hands over the fd it just wrote through. */
	if (lseek(j->fd, 0, SEEK_SET) < 0) {
		lyr_sha256_free(c);
		return -errno;
	}
	/* Whole files are read once, front to back: tell the kernel to read ahead further. */
	(void)posix_fadvise(j->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	int64_t total = 0;
	bool fallback = true;
	if (j->size >= (off_t)PIPELINE_MIN) {
		total = hash_pipelined(h, j->fd, c, j->extra, &fallback);
		if (total < 0)
			r = (int)total;
	}
	while (fallback && r == 0) {
		if (atomic_load(&h->error)) {
			r = atomic_load(&h->error);
			break;
		}
		ssize_t n = read(j->fd, buf, READ_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		lyr_sha256_update(c, buf, (size_t)n);
		if (j->extra)
			lyr_sha256_update(j->extra, buf, (size_t)n);
		total += n;
		atomic_fetch_add(&h->bytes, (uint64_t)n);
	}
	if (r == 0 && total != (int64_t)j->size)
		r = -ESTALE; /* changed while being hashed: the header would not describe it */
	lyr_sha256_final(c, out);
	lyr_sha256_free(c);
	return r;
}

static void job_free(job *j)
{
	lyr_sha256_free(j->extra);
	if (j->fd >= 0)
		close(j->fd);
	hb_free(&j->hdr);
	free(j->path);
	free(j);
}

static void run_job(hasher *h, job *j, uint8_t *buf)
{
	uint8_t content[LYR_SHA256_LEN];
	int r = atomic_load(&h->error);
	if (r == 0)
		r = hash_contents(h, j, buf, content);
	if (r == 0 && j->ent) {
		memcpy(j->ent->data, content, sizeof content);
		j->ent->has_data = true;
		if (j->extra) {
			lyr_sha256_final(j->extra, j->ent->extra);
			j->ent->has_extra = true;
		}
	}
	if (r == 0) {
		hb_lcstr(&j->hdr, "data");
		hb_lstr(&j->hdr, content, sizeof content);
		if (j->hdr.oom)
			r = -ENOMEM;
		else
			lyr_sha256(j->hdr.p, j->hdr.len, j->slot->digest);
	}
	if (r < 0)
		fail(h, r, j->path);
	dnode *d = j->node;
	job_free(j);
	complete(h, d);
}

static void *worker(void *arg)
{
	hasher *h = arg;
	uint8_t *buf = malloc(READ_CHUNK);
	for (;;) {
		pthread_mutex_lock(&h->lock);
		while (h->qlen == 0 && !h->stop)
			pthread_cond_wait(&h->not_empty, &h->lock);
		if (h->qlen == 0) {
			pthread_mutex_unlock(&h->lock);
			break;
		}
		job *j = h->queue[h->qhead];
		h->qhead = (h->qhead + 1) % QUEUE_LEN;
		h->qlen--;
		pthread_cond_signal(&h->not_full);
		pthread_mutex_unlock(&h->lock);
		if (!buf) {
			fail(h, -ENOMEM, j->path);
			dnode *d = j->node;
			job_free(j);
			complete(h, d);
		} else {
			run_job(h, j, buf);
		}
	}
	free(buf);
	return NULL;
}

static void enqueue(hasher *h, job *j)
{
	pthread_mutex_lock(&h->lock);
	while (h->qlen == QUEUE_LEN)
		pthread_cond_wait(&h->not_full, &h->lock);
	h->queue[(h->qhead + h->qlen) % QUEUE_LEN] = j;
	h->qlen++;
	pthread_cond_signal(&h->not_empty);
	pthread_mutex_unlock(&h->lock);
}

/* ---- the walk ------------------------------------------------------------------------------ */

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

/* The digest of PATH, a later name of the hard-link group whose first name is FIRST; returns 1. */
static int link_digest(hasher *h, const char *path, const char *first, kid *k)
{
	hbuf *b = &h->scratch;
	hb_reset(b);
	hb_lcstr(b, "type");
	hb_lcstr(b, "h");
	hb_lcstr(b, "link");
	hb_lcstr(b, first);
	if (b->oom || list_entry(h, path, b, NULL) < 0)
		return -ENOMEM;
	lyr_sha256(b->p, b->len, k->digest);
	return 1;
}

/* For a later name of a hard-link group, its digest (docs: "Hard links"); returns 1 when NAME
 * is such a name, 0 when it is the first (and remembers it), or -errno. */
static int hard_link(hasher *h, const struct stat *st, const char *path, kid *k)
{
	if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return 0;
	link_rec key = {.dev = st->st_dev, .ino = st->st_ino};
	link_rec **found = tfind(&key, &h->links, link_cmp);
	if (found)
		return link_digest(h, path, (*found)->path, k);
	link_rec *rec = calloc(1, sizeof *rec);
	if (!rec || !(rec->path = strdup(path))) {
		free(rec);
		return -ENOMEM;
	}
	rec->dev = st->st_dev;
	rec->ino = st->st_ino;
	if (!tsearch(rec, &h->links, link_cmp)) {
		link_free(rec);
		return -ENOMEM;
	}
	return 0;
}

/* Starts J's second digest when the caller wants one (lyr_diff_opts.file_prefix). */
static int extra_digest(hasher *h, job *j, const struct stat *st, const char *path)
{
	uint8_t *prefix = NULL;
	size_t len = 0;
	int r = h->opts->file_prefix(h->opts->ctx, j->fd, st, path, &prefix, &len);
	if (r > 0 && (r = lyr_sha256_new(&j->extra)) == 0)
		lyr_sha256_update(j->extra, prefix, len);
	free(prefix);
	return r < 0 ? r : 0;
}

/* Digests the regular file open at FD with fstat ST into K: at once when CONTENT (its content
 * digest, known already) is given, FD then only read from; else through a worker, FD taken
 * over. */
static int hash_regular(hasher *h, int fd, const struct stat *st, const char *path, kid *k,
			const uint8_t *content)
{
	job *j = calloc(1, sizeof *j);
	if (!j) {
		if (!content)
			close(fd);
		return -ENOMEM;
	}
	j->fd = content ? -1 : fd;
	hx_list xa = {0};
	int r = read_xattrs(h, fd, -1, NULL, &xa);
	if (r == 0)
		r = encode_header(&j->hdr, st, NULL, 0, &xa);
	hx_free(&xa);
	if (r == 0 && !content && !(j->path = strdup(path)))
		r = -ENOMEM;
	if (r == 0)
		r = list_entry(h, path, &j->hdr, &j->ent);
	if (r == 0 && j->ent && h->opts && h->opts->file_prefix)
		r = extra_digest(h, j, st, path);
	if (r < 0) {
		job_free(j);
		return r;
	}
	j->size = st->st_size;
	h->usage += (uint64_t)st->st_size;
	if (content) {
		if (j->ent) {
			memcpy(j->ent->data, content, LYR_SHA256_LEN);
			j->ent->has_data = true;
		}
		hb_lcstr(&j->hdr, "data");
		hb_lstr(&j->hdr, content, LYR_SHA256_LEN);
		r = j->hdr.oom ? -ENOMEM : 0;
		if (r == 0) {
			lyr_sha256(j->hdr.p, j->hdr.len, k->digest);
			atomic_fetch_add(&h->bytes, (uint64_t)st->st_size);
		}
		job_free(j);
		return r;
	}
	j->slot = k;
	j->node = h->cur;
	pthread_mutex_lock(&h->lock);
	h->cur->pending++;
	pthread_mutex_unlock(&h->lock);
	enqueue(h, j);
	return 0;
}

static int on_regular(hasher *h, int dirfd, const char *name, const struct stat *st,
		      const char *path, kid *k)
{
	int fd = lyr_open_noatime(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat now;
	int r = fstat(fd, &now) < 0 ? -errno : 0;
	if (r == 0 && (now.st_dev != st->st_dev || now.st_ino != st->st_ino))
		r = -ESTALE;
	if (r < 0) {
		close(fd);
		return r;
	}
	return hash_regular(h, fd, &now, path, k, NULL);
}

static int on_other(hasher *h, int dirfd, const char *name, const struct stat *st,
		    const char *path, kid *k)
{
	_cleanup_free_ char *target = NULL;
	size_t tlen = 0;
	if (S_ISLNK(st->st_mode)) {
		h->usage += (uint64_t)st->st_size;
		size_t cap = (size_t)st->st_size + 1;
		for (;;) {
			free(target);
			if (!(target = malloc(cap)))
				return -ENOMEM;
			ssize_t n = readlinkat(dirfd, name, target, cap);
			if (n < 0)
				return -errno;
			if ((size_t)n < cap) {
				tlen = (size_t)n;
				break;
			}
			cap *= 2;
		}
	}
	hx_list xa = {0};
	int r = read_xattrs(h, -1, dirfd, name, &xa);
	if (r < 0) {
		hx_free(&xa);
		return r;
	}
	hb_reset(&h->scratch);
	r = encode_header(&h->scratch, st, target, tlen, &xa);
	hx_free(&xa);
	if (r == 0)
		r = list_entry(h, path, &h->scratch, NULL);
	if (r < 0)
		return r;
	lyr_sha256(h->scratch.p, h->scratch.len, k->digest);
	return 0;
}

/* The walker goes into the directory whose digest goes to K. */
static int enter_dir(hasher *h, kid *k)
{
	dnode *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->parent = h->cur;
	d->slot = k;
	d->pending = 1;
	pthread_mutex_lock(&h->lock);
	h->cur->pending++;
	pthread_mutex_unlock(&h->lock);
	h->cur = d;
	return 0;
}

static int on_entry(void *ctx, int dirfd, const char *name, const struct stat *st, const char *path)
{
	hasher *h = ctx;
	int r = atomic_load(&h->error);
	if (r < 0)
		return r;
	if ((r = plain_entry(h, name, st)) < 0)
		return r;
	kid *k = add_kid(h, name);
	if (!k)
		return -ENOMEM;
	if (S_ISDIR(st->st_mode))
		return enter_dir(h, k);
	h->files++;
	r = hard_link(h, st, path, k);
	if (r == 0)
		r = S_ISREG(st->st_mode) ? on_regular(h, dirfd, name, st, path, k)
					 : on_other(h, dirfd, name, st, path, k);
	lyr_progress_report(h->progress, h->files, atomic_load(&h->bytes));
	return r < 0 ? r : 0;
}

static int on_leave(void *ctx, int fd, const struct stat *st, const char *path)
{
	hasher *h = ctx;
	dnode *d = h->cur;
	hx_list xa = {0};
	int r = read_xattrs(h, fd, -1, NULL, &xa);
	if (r == 0)
		r = encode_header(&d->hdr, st, NULL, 0, &xa);
	hx_free(&xa);
	if (r == 0)
		r = list_entry(h, path, &d->hdr, NULL);
	if (r < 0)
		return r;
	h->cur = d->parent;
	complete(h, d);
	return 0;
}

static void hasher_init(hasher *h, const lyr_progress *progress, unsigned threads, bool listing)
{
	memset(h, 0, sizeof *h);
	h->progress = progress;
	h->nthreads = threads ? threads : HASH_THREADS;
	if (h->nthreads > HPOOL_MAX_THREADS)
		h->nthreads = HPOOL_MAX_THREADS;
	h->listing = listing;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->not_empty, NULL);
	pthread_cond_init(&h->not_full, NULL);
}

static void hasher_destroy(hasher *h)
{
	tdestroy(h->links, link_free);
	free(h->copybuf);
	hb_free(&h->scratch);
	free(h->err_path);
	free(h->threads);
	lyr_diff_entry **ents = (lyr_diff_entry **)h->ents.p;
	for (size_t i = 0; i < h->ents.len / sizeof *ents; i++) {
		free(ents[i]->path);
		free(ents[i]->header);
		free(ents[i]);
	}
	hb_free(&h->ents);
	pthread_cond_destroy(&h->not_empty);
	pthread_cond_destroy(&h->not_full);
	pthread_mutex_destroy(&h->lock);
}

static int start_workers(hasher *h)
{
	if (!(h->threads = calloc(h->nthreads, sizeof *h->threads)))
		return -ENOMEM;
	for (h->started = 0; h->started < h->nthreads; h->started++) {
		int r = pthread_create(&h->threads[h->started], NULL, worker, h);
		if (r != 0)
			return -r;
	}
	return 0;
}

static void stop_workers(hasher *h)
{
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->not_empty);
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < h->started; i++)
		pthread_join(h->threads[i], NULL);
}

/* Makes the root's node, where the walk starts.  R is the result so far. */
static int diff_begin(hasher *h, int r)
{
	if (r == 0 && !(h->cur = calloc(1, sizeof *h->cur)))
		r = -ENOMEM;
	if (r == 0)
		h->cur->pending = 1;
	return r;
}

/* After the walk that ended with R (WERR naming where it stopped): stops the workers and
 * returns the digest, or the first failure with WERR naming it. */
static int diff_end(hasher *h, int r, lyr_tree_error *werr, char ret_digest[LYR_DIGEST_TEXT_LEN])
{
	stop_workers(h);

	/* A worker's failure wins: it names the file that failed, the walk only where it stopped. */
	int werror = atomic_load(&h->error);
	if (werror < 0) {
		r = werror;
		snprintf(werr->path, sizeof werr->path, "%s", h->err_path ? h->err_path : "");
		h->why[0] = '\0'; /* about the walker's entry, not the worker's */
	}
	if (r == 0 && !h->root_done)
		r = -EIO; /* cannot happen: the walk left the root and all jobs ran */
	if (r < 0) {
		/* Directories the walker was still in never finished; the rest freed themselves. */
		for (dnode *d = h->cur; d;) {
			dnode *parent = d->parent;
			node_free(d);
			d = parent;
		}
		h->cur = NULL;
		return r;
	}
	hbuf b = {0};
	hb_lcstr(&b, "layerfs-diff");
	hb_lcstr(&b, "1");
	hb_put(&b, h->root, sizeof h->root);
	if (b.oom) {
		r = -ENOMEM;
	} else {
		uint8_t d[LYR_SHA256_LEN];
		lyr_sha256(b.p, b.len, d);
		lyr_digest_text(d, ret_digest);
		lyr_progress_report(h->progress, h->files, atomic_load(&h->bytes));
	}
	hb_free(&b);
	return r;
}

/* The walk and the digest of DIRFD, with the workers running; stops them before returning.
 * R is the result so far (a failure skips the walk). */
static int run_diff(hasher *h, int r, int dirfd, char ret_digest[LYR_DIGEST_TEXT_LEN],
		    char *err_path)
{
	lyr_tree_error werr = {0};
	r = diff_begin(h, r);
	if (r == 0) {
		lyr_tree_visit v = {.entry = on_entry, .leave = on_leave, .ctx = h, .sorted = true};
		r = lyr_tree_walk(dirfd, &v, &werr);
	}
	r = diff_end(h, r, &werr, ret_digest);
	if (r < 0 && err_path)
		snprintf(err_path, PATH_MAX, "%s", werr.path);
	return r;
}

static int by_path(const void *a, const void *b)
{
	const lyr_diff_entry *const *x = a, *const *y = b;
	return strcmp((*x)->path, (*y)->path);
}

/* Hands the listed entries over to RET, sorted by path. */
static int take_list(hasher *h, lyr_diff_list *ret)
{
	lyr_diff_entry **ents = (lyr_diff_entry **)h->ents.p;
	size_t n = h->ents.len / sizeof *ents;
	lyr_diff_entry *v = calloc(n ? n : 1, sizeof *v);
	if (!v)
		return -ENOMEM;
	qsort(ents, n, sizeof *ents, by_path);
	for (size_t i = 0; i < n; i++) {
		v[i] = *ents[i];
		free(ents[i]);
	}
	ret->v = v;
	ret->n = n;
	ret->bytes = h->usage;
	h->ents.len = 0;
	return 0;
}

void lyr_diff_list_clear(lyr_diff_list *l)
{
	for (size_t i = 0; l && i < l->n; i++) {
		free(l->v[i].path);
		free(l->v[i].header);
	}
	if (l) {
		free(l->v);
		l->v = NULL;
		l->n = 0;
		l->bytes = 0;
	}
}

unsigned lyr_hash_cpu_threads(void)
{
	return hpool_default_threads();
}

int lyr_hash_diff_ex(int dirfd, const lyr_diff_opts *opts, char ret_digest[LYR_DIGEST_TEXT_LEN],
		     char *err_path)
{
	lyr_diff_opts o = opts ? *opts : (lyr_diff_opts){0};
	hasher h;
	hasher_init(&h, o.progress, o.threads, o.entries != NULL);
	h.opts = &o;
	int r = start_workers(&h);
	r = run_diff(&h, r, dirfd, ret_digest, err_path);
	if (r >= 0 && o.entries)
		r = take_list(&h, o.entries);
	hasher_destroy(&h);
	return r;
}

int lyr_hash_diff(int dirfd, const lyr_progress *progress, char ret_digest[LYR_DIGEST_TEXT_LEN],
		  char *err_path)
{
	lyr_diff_opts o = {.progress = progress};
	return lyr_hash_diff_ex(dirfd, &o, ret_digest, err_path);
}

/* ---- import: the digest of the copy, made while copying ----------------------------------- */

/* Files up to this size are copied through the walker's buffer and hashed from it. */
#define INLINE_MAX READ_CHUNK

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A small file: read once, written from the same buffer, hashed from it into h->copied. */
static int import_data(void *ctx, int in, int out, const struct stat *st)
{
	hasher *h = ctx;
	h->copied_set = false;
	if (st->st_size > (off_t)INLINE_MAX)
		return LYR_TREE_DEFAULT;
	if (!h->copybuf && !(h->copybuf = malloc(INLINE_MAX)))
		return -ENOMEM;
	size_t len = 0, want = (size_t)st->st_size;
	while (len < want) {
		ssize_t n = read(in, h->copybuf + len, want - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* shrank meanwhile: the copy is what was there, as copy_file_range does */
		len += (size_t)n;
	}
	int r = write_all(out, h->copybuf, len);
	if (r < 0)
		return r;
	lyr_sha256(h->copybuf, len, h->copied);
	h->copied_set = true;
	return 0;
}

static int import_dir(void *ctx, const char *name, const struct stat *st, const char *path)
{
	hasher *h = ctx;
	(void)path;
	int r = atomic_load(&h->error);
	if (r < 0 || (r = plain_entry(h, name, st)) < 0)
		return r;
	kid *k = add_kid(h, name);
	return k ? enter_dir(h, k) : -ENOMEM;
}

/* An entry of the copy is complete: digested as the walk of the finished copy would (on_entry),
 * from the copy's own stat and xattrs. */
static int import_done(void *ctx, int dirfd, const char *name, int fd, const char *first,
		       const char *path)
{
	hasher *h = ctx;
	int r = atomic_load(&h->error);
	if (r < 0)
		return r;
	struct stat st;
	if ((fd >= 0 ? fstat(fd, &st) : fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) < 0)
		return -errno;
	if ((r = plain_entry(h, name, &st)) < 0)
		return r;
	kid *k = add_kid(h, name);
	if (!k)
		return -ENOMEM;
	h->files++;
	if (first) {
		r = link_digest(h, path, first, k);
	} else if (fd >= 0 && S_ISREG(st.st_mode)) {
		bool copied = h->copied_set;
		h->copied_set = false;
		int own = copied ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3); /* a worker reads it later */
		r = own < 0 ? -errno : hash_regular(h, own, &st, path, k, copied ? h->copied : NULL);
	} else {
		r = on_other(h, dirfd, name, &st, path, k);
	}
	return r < 0 ? r : 0;
}

static int import_dir_done(void *ctx, int fd, const char *path)
{
	hasher *h = ctx;
	int r = atomic_load(&h->error);
	if (r < 0)
		return r;
	struct stat st;
	/* The root's own attributes belong to the diff too (importing the same tree twice gives the
	 * same digest). */
	if (!path[0] && (fstat(h->src_root, &st) < 0 || fchmod(fd, st.st_mode & 07777) < 0 ||
			 (fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EPERM) ||
			 futimens(fd, (struct timespec[]){st.st_atim, st.st_mtim}) < 0))
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	return on_leave(h, fd, &st, path);
}

int lyr_hash_import(int src_dirfd, int dst_dirfd, const lyr_progress *progress,
		    lyr_tree_error *err, char ret_digest[LYR_DIGEST_TEXT_LEN])
{
	return lyr_hash_import_list(src_dirfd, dst_dirfd, progress, err, ret_digest, NULL);
}

int lyr_hash_import_list(int src_dirfd, int dst_dirfd, const lyr_progress *progress,
			 lyr_tree_error *err, char ret_digest[LYR_DIGEST_TEXT_LEN],
			 lyr_diff_list *ret_entries)
{
	hasher h;
	hasher_init(&h, NULL, 0, ret_entries != NULL);
	h.plain = true;
	h.src_root = src_dirfd;
	lyr_tree_error werr = {0};
	int r = diff_begin(&h, start_workers(&h));
	if (r == 0) {
		lyr_tree_copy_opts o = {.progress = progress, .ctx = &h, .sorted = true,
					.data = import_data, .dir = import_dir,
					.done = import_done, .dir_done = import_dir_done};
		r = lyr_tree_copy_ex(src_dirfd, dst_dirfd, &o, &werr);
	}
	r = diff_end(&h, r, &werr, ret_digest);
	if (r < 0 && err) {
		memcpy(err->path, werr.path, sizeof err->path);
		err->err = -r;
		memcpy(err->why, h.why, sizeof err->why);
	}
	if (r >= 0 && ret_entries)
		r = take_list(&h, ret_entries);
	hasher_destroy(&h);
	return r;
}
