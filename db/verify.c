/* fsck --verify: is each layer still the content its ID names?
 *
 * A layer is verified by hashing its diff directory again with the code commit and import use
 * (lyr_hash_diff_ex, every core) and recomputing its ID from the recorded parent.  The ID is the
 * authority: if it comes out the same, the layer is intact, whatever else says.  If not:
 *   - the layer is marked, layers/<hex>/verify-failed (a file holding what was found), so that
 *     `hash` and `exec --cache` refuse it (lyr_layer_verify_failed) until a verification finds
 *     it intact again (its files restored) or it is removed with the directory;
 *   - the entries that changed are named by comparing the listing of this pass with the layer's
 *     file list (filelist.c), entry by entry: header fields and content digest;
 *   - a layer without a file list (written before they existed) is named from its digest cache
 *     entries, where `hash` left some: an entry digest that no longer matches names its file.
 * Digest cache entries (hashes.db, db/hashcache.c) of every verified layer are checked against
 * the content (verify_cache.c).
 * Repair drops stale entries (all of them for a failed layer: none can be trusted) and writes
 * a missing or wrong file list of an intact layer.  It never changes content: nothing here can
 * know what a changed byte was.
 *
 * Layers are verified one after another, each on all cores.  No lock is held while hashing: a
 * layer removed meanwhile only loses its mark with its directory. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "db-int.h"

#define MARK_NAME "verify-failed"

typedef struct verify {
	lyr_store *s;
	const lyr_verify_opts *o;
	int left;
	lyr_verify_stats stats;
} verify;

static void report(verify *v, const char *layer, const char *path, bool repaired, const char *fmt,
		   ...) __attribute__((format(printf, 5, 6)));
static void report(verify *v, const char *layer, const char *path, bool repaired, const char *fmt,
		   ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (!repaired)
		v->left++;
	if (v->o->fn) {
		lyr_verify_finding f = {layer, path, text, repaired};
		v->o->fn(v->o->ctx, &f);
	}
}

static void layer_path(const char *id, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "layers/%s/%s", layer_hex(id), name);
}

/* ---- the mark ------------------------------------------------------------------------------ */

/* 1 when layer ID itself is marked, 0 when not, or -errno. */
static int marked(lyr_store *s, const char *id)
{
	char p[160];
	layer_path(id, MARK_NAME, p, sizeof p);
	struct stat st;
	if (fstatat(s->rootfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return 1;
}

/* The mark holds what was found, for people; its existence is what counts. */
static int mark_set(lyr_store *s, const char *id, const char *why)
{
	char p[160];
	layer_path(id, MARK_NAME, p, sizeof p);
	_cleanup_close_ int fd = openat(
	    s->rootfd, p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno; /* removed meanwhile: nothing left to mark */
	char line[1200];
	int n = snprintf(line, sizeof line, "%lld %s\n", (long long)time(NULL), why);
	if (n > 0 && write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
		return -errno;
	return 0;
}

static int mark_clear(lyr_store *s, const char *id)
{
	char p[160];
	layer_path(id, MARK_NAME, p, sizeof p);
	return unlinkat(s->rootfd, p, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* ---- the layer's records --------------------------------------------------------------------- */

typedef struct layer_ctx {
	const char *id;
	layer_rec rec;
	char **ids; /* the chain, the layer first (with_chain) */
	size_t n;
	bool with_chain;
	bool broken;	/* an ancestor has no record: the chain stops there */
	centries cache; /* its digest cache entries */
} layer_ctx;

static int load_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	layer_ctx *c = ctx;
	layer_rec_clear(&c->rec);
	lyr_strv_free(c->ids);
	c->ids = NULL;
	c->n = 0;
	c->broken = false;
	int r = layer_load(s, txn, c->id, &c->rec);
	if (r || !c->with_chain)
		return r;
	_cleanup_free_ char *cur = strdup(c->id);
	while (r == 0 && cur && *cur) {
		char **nv = realloc(c->ids, (c->n + 2) * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		c->ids = nv;
		c->ids[c->n++] = LYR_TAKE_PTR(cur);
		c->ids[c->n] = NULL;
		layer_rec p;
		r = layer_load(s, txn, c->ids[c->n - 1], &p);
		if (r == 0) {
			cur = LYR_TAKE_PTR(p.parent);
			layer_rec_clear(&p);
		} else if (r == -ENOENT && c->n > 1) {
			c->broken = true; /* fsck reports the missing record */
			free(c->ids[--c->n]);
			c->ids[c->n] = NULL;
			return 0;
		}
		if (c->n > 100000)
			r = -ELOOP;
	}
	return r ? r : cur ? 0 : -ENOMEM;
}

static void layer_ctx_clear(layer_ctx *c)
{
	layer_rec_clear(&c->rec);
	lyr_strv_free(c->ids);
	c->ids = NULL;
	centries_clear(&c->cache);
}

int lyr_layer_verify_failed(lyr_store *s, const char *id)
{
	layer_ctx l = {.id = id, .with_chain = true};
	int r = txn_run(s, load_txn, &l);
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		r = marked(s, l.ids[i]);
		if (r > 0)
			db_seterr("layer %s failed verification; run layerfs fsck --repair or "
				  "layerfs rm",
				  l.ids[i]);
		if (r != 0)
			break;
	}
	layer_ctx_clear(&l);
	if (r == -ENOENT)
		db_seterr("layer '%s': no such layer", id);
	return r;
}

/* ---- naming what changed: the file list ----------------------------------------------------- */

typedef struct field {
	const char *key, *val;
	size_t klen, vlen;
} field;

/* Splits an entry header into its fields (docs/diff-digest.md, "Entry header"); the value of
 * "xattrs" is everything from the count on.  Returns the number of fields. */
static size_t split_header(const uint8_t *h, size_t len, field *out, size_t max)
{
	size_t pos = 0, n = 0;
	while (n < max && pos < len) {
		field *f = &out[n];
		if (filelist_field((const char *)h, len, &pos, &f->key, &f->klen) < 0)
			break;
		size_t start = pos;
		if (filelist_field((const char *)h, len, &pos, &f->val, &f->vlen) < 0)
			break;
		n++;
		if (f->klen == 6 && memcmp(f->key, "xattrs", 6) == 0) {
			f->vlen = len - start;
			f->val = (const char *)h + start;
			break;
		}
	}
	return n;
}

static bool same(const char *a, size_t al, const char *b, size_t bl)
{
	return al == bl && memcmp(a, b, al) == 0;
}

/* "content", "mode and mtime", "content, size and mtime": what differs between two listings of
 * one path, into BUF; false when nothing does. */
static bool what_differs(const lyr_diff_entry *was, const lyr_diff_entry *now, char *buf,
			 size_t size)
{
	const char *names[16];
	size_t n = 0;
	if (was->has_data != now->has_data ||
	    (was->has_data && memcmp(was->data, now->data, LYR_SHA256_LEN) != 0))
		names[n++] = "content";
	field a[12], b[12];
	size_t na = split_header(was->header, was->header_len, a, 12);
	size_t nb = split_header(now->header, now->header_len, b, 12);
	char keys[12][16];
	for (size_t i = 0; i < na && n < 15; i++) {
		bool found = false, differs = true;
		for (size_t j = 0; j < nb && !found; j++)
			if (same(a[i].key, a[i].klen, b[j].key, b[j].klen)) {
				found = true;
				differs = !same(a[i].val, a[i].vlen, b[j].val, b[j].vlen);
			}
		if (differs) {
			snprintf(keys[i], sizeof keys[i], "%.*s", (int)a[i].klen, a[i].key);
			names[n++] = keys[i];
		}
	}
	if (n == 0 && !same((const char *)was->header, was->header_len, (const char *)now->header,
			    now->header_len))
		names[n++] = "attributes";
	if (n == 0)
		return false;
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%s",
					i == 0	     ? ""
					: i + 1 == n ? " and "
						     : ", ",
					names[i]);
	if (off < size)
		snprintf(buf + off, size - off, " %s", n == 1 ? "differs" : "differ");
	return true;
}

/* Names every entry that differs between the file list WAS and NOW; returns how many. */
static size_t name_from_list(verify *v, const char *id, const lyr_diff_list *was,
			     const lyr_diff_list *now)
{
	size_t i = 0, j = 0, named = 0;
	char path[PATH_MAX + 2], what[256];
	while (i < was->n || j < now->n) {
		int c = i == was->n ? 1 : j == now->n ? -1 : strcmp(was->v[i].path, now->v[j].path);
		const char *p = c <= 0 ? was->v[i].path : now->v[j].path;
		snprintf(path, sizeof path, "/%s", p);
		if (c < 0) {
			report(v, id, path, false, "removed since the layer was written");
			named++, i++;
		} else if (c > 0) {
			report(v, id, path, false, "added since the layer was written");
			named++, j++;
		} else {
			if (what_differs(&was->v[i], &now->v[j], what, sizeof what)) {
				report(v, id, path, false, "%s from the layer's digest", what);
				named++;
			}
			i++, j++;
		}
	}
	return named;
}

static bool lists_equal(const lyr_diff_list *a, const lyr_diff_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const lyr_diff_entry *x = &a->v[i], *y = &b->v[i];
		if (strcmp(x->path, y->path) != 0 || x->has_data != y->has_data ||
		    memcmp(x->data, y->data, LYR_SHA256_LEN) != 0 ||
		    !same((const char *)x->header, x->header_len, (const char *)y->header,
			  y->header_len))
			return false;
	}
	return true;
}

/* Writes the file list of an intact layer (a temporary name, then a rename). */
static int list_write(lyr_store *s, const char *id, const lyr_diff_list *l)
{
	char tmp[160], to[160];
	layer_path(id, "." FILELIST_NAME ".new", tmp, sizeof tmp);
	layer_path(id, FILELIST_NAME, to, sizeof to);
	int r = filelist_write(s->rootfd, tmp, l);
	if (r == 0 && renameat(s->rootfd, tmp, s->rootfd, to) < 0) {
		r = -errno;
		unlinkat(s->rootfd, tmp, 0);
	}
	return r;
}

/* Checks the layer's digest cache entries.  FAILED: the layer's content changed, so a stale
 * file entry names a changed file (reported when NAME), and repair drops every entry.  Returns the
 * number of files named that way (FAILED) or of stale entries, or -errno. */
static int check_cache(verify *v, layer_ctx *l, bool failed, bool name)
{
	centries *c = &l->cache;
	if (l->broken)
		return 0; /* no view to hash them in */
	int r = c->n ? centries_check(v->s, c, l->ids, l->n, v->o->threads) : 0;
	int named = 0;
	for (size_t i = 0; r >= 0 && i < c->n; i++) {
		centry *e = &c->v[i];
		if (failed) {
			if (name && e->kind == 'f' && e->stale) {
				report(v, l->id, e->path, false,
				       "differs from its digest cache entry (changed after it was "
				       "hashed)");
				named++;
			}
		} else if (e->stale || !e->checked) {
			report(v, l->id, e->path, v->o->repair, "digest cache entry (%c) %s%s",
			       e->kind,
			       e->stale ? "does not match the content"
					: "names nothing in the layer",
			       v->o->repair ? " (dropped)" : "");
			e->stale = true;
			named++;
		}
	}
	if (r >= 0 && v->o->repair && c->n && (failed || named)) {
		r = centries_drop(v->s, c, !failed);
		if (r >= 0 && failed)
			report(v, l->id, NULL, true, "%zu digest cache entr%s dropped", c->n,
			       c->n == 1 ? "y" : "ies");
	}
	return r < 0 ? r : named;
}

int layer_restore(lyr_store *s, const char *id, int fromfd, const char *from, const char *to)
{
	int r = marked(s, id);
	if (r <= 0)
		return r;
	if (renameat2(fromfd, from, s->rootfd, to, RENAME_EXCHANGE) < 0)
		return -errno;
	r = mark_clear(s, id);
	/* digests cached while it was changed may be wrong: the content hash starts afresh */
	centries c = {.hex = layer_hex(id)};
	if (r >= 0)
		r = centries_load(s, &c);
	if (r >= 0)
		r = centries_drop(s, &c, false);
	centries_clear(&c);
	return r < 0 ? r : 1;
}

/* ---- one layer ------------------------------------------------------------------------------ */

static void count(void *ctx, uint64_t files, uint64_t bytes)
{
	uint64_t *last = ctx;
	last[0] = files;
	last[1] = bytes;
}

/* An intact layer: its mark goes, its file list is mended, its cache entries are checked. */
static int intact(verify *v, layer_ctx *l, const char *digest, const lyr_diff_list *now, int listed,
		  const lyr_diff_list *was)
{
	char p[160];
	layer_path(l->id, FILELIST_NAME, p, sizeof p);
	if (strcmp(digest, l->rec.digest) != 0)
		report(v, l->id, NULL, false,
		       "its record's diff digest %s is not that of its content (%s)", l->rec.digest,
		       digest);
	int r = marked(v->s, l->id);
	if (r > 0) {
		r = mark_clear(v->s, l->id);
		if (r < 0)
			return r;
		report(v, l->id, NULL, true,
		       "content matches its ID again; verification mark cleared");
	}
	if (listed == -ENOENT && v->o->repair) {
		r = list_write(v->s, l->id, now);
		if (r < 0)
			return r;
		report(v, l->id, NULL, true, "had no file list (%s written)", p);
	} else if (listed != -ENOENT && (listed < 0 || !lists_equal(was, now))) {
		bool fix = v->o->repair && list_write(v->s, l->id, now) == 0;
		report(v, l->id, NULL, fix, "file list %s does not match the layer%s", p,
		       fix ? " (rewritten)" : "");
	}
	r = check_cache(v, l, false, true);
	return r < 0 ? r : 0;
}

static int failed(verify *v, layer_ctx *l, const char *digest, const lyr_diff_list *now, int listed,
		  const lyr_diff_list *was)
{
	char why[400], p[160];
	snprintf(why, sizeof why, "content does not match its ID (its diff digest is now %s)",
		 digest);
	int r = mark_set(v->s, l->id, why);
	if (r < 0)
		return r;
	report(v, l->id, NULL, false, "%s; marked as failed verification", why);
	size_t named = listed == 0 ? name_from_list(v, l->id, was, now) : 0;
	r = check_cache(v, l, true, named == 0);
	if (r < 0)
		return r;
	if (named == 0 && r == 0) {
		layer_path(l->id, FILELIST_NAME, p, sizeof p);
		if (listed == -ENOENT)
			report(v, l->id, NULL, false,
			       "the changed files cannot be named: the layer has no file list (it "
			       "was written before layerfs kept them) and none of its digest cache "
			       "entries differs");
		else if (listed < 0)
			report(
			    v, l->id, NULL, false,
			    "the changed files cannot be named: its file list %s is damaged (%s)",
			    p, strerror(-listed));
		else
			report(v, l->id, NULL, false,
			       "the changed files cannot be named: its file list %s shows no "
			       "change, so it was changed too",
			       p);
	}
	if (v->o->repair)
		report(v, l->id, NULL, false,
		       "fsck cannot restore content: put the files back and run 'layerfs fsck "
		       "--repair', or remove the layer with 'layerfs rm'");
	return 0;
}

static int verify_layer(verify *v, const char *id)
{
	layer_ctx l = {.id = id, .with_chain = true};
	int r = txn_run(v->s, load_txn, &l);
	if (r < 0) {
		layer_ctx_clear(&l);
		if (r == -ENOENT)
			db_seterr("layer '%s': no such layer", id);
		return r;
	}
	char list[160], diff[160];
	layer_path(id, FILELIST_NAME, list, sizeof list);
	layer_path(id, "diff", diff, sizeof diff);
	_cleanup_close_ int fd =
	    openat(v->s->rootfd, diff, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		report(v, id, NULL, false, "cannot be verified: %s: %s", diff, strerror(errno));
		layer_ctx_clear(&l);
		return 0;
	}
	lyr_diff_list now = {0}, was = {0};
	uint64_t totals[2] = {0};
	lyr_progress progress = {count, totals};
	l.cache.hex = layer_hex(id);
	r = centries_load(v->s, &l.cache);
	if (r < 0) {
		layer_ctx_clear(&l);
		return r;
	}
	lyr_diff_opts o = {.progress = &progress, .threads = v->o->threads, .entries = &now};
	if (!o.threads)
		o.threads = lyr_hash_cpu_threads();
	if (l.cache.n && !l.broken)
		o.file_prefix = centries_file_prefix, o.ctx = &l.cache;
	char digest[LYR_DIGEST_TEXT_LEN], errpath[PATH_MAX] = "", got[LYR_DIGEST_TEXT_LEN];
	r = lyr_hash_diff_ex(fd, &o, digest, errpath);
	if (r >= 0)
		centries_fresh(&l.cache, &now);
	if (r < 0) {
		if (r != -ENOMEM)
			report(v, id, NULL, false, "cannot be verified: '/%s': %s", errpath,
			       strerror(-r));
		layer_ctx_clear(&l);
		return r == -ENOMEM ? r : 0;
	}
	v->stats.layers++;
	v->stats.files += totals[0];
	v->stats.bytes += totals[1];
	lyr_layer_id(l.rec.parent, digest, got);
	int listed = filelist_read(v->s->rootfd, list, &was);
	if (listed == -ENOMEM)
		r = listed;
	else if (strcmp(got, id) == 0)
		r = intact(v, &l, digest, &now, listed, &was);
	else
		r = failed(v, &l, digest, &now, listed, &was);
	lyr_diff_list_clear(&now);
	lyr_diff_list_clear(&was);
	layer_ctx_clear(&l);
	return r;
}

/* A quick fsck: the marks earlier verifications left. */
static int report_mark(verify *v, const char *id)
{
	char p[160];
	layer_path(id, MARK_NAME, p, sizeof p);
	int r = marked(v->s, id);
	if (r > 0)
		report(v, id, NULL, false,
		       "failed verification (marked in %s); 'layerfs fsck --verify' names what "
		       "changed",
		       p);
	return r < 0 ? r : 0;
}

static int collect_layer(void *ctx, const lyr_layer_info *info)
{
	char ***ids = ctx;
	size_t n = 0;
	while (*ids && (*ids)[n])
		n++;
	char **nv = realloc(*ids, (n + 2) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	*ids = nv;
	nv[n + 1] = NULL;
	return (nv[n] = strdup(info->id)) ? 0 : -ENOMEM;
}

int lyr_store_verify(lyr_store *s, const char *const *ids, size_t n, const lyr_verify_opts *opts,
		     lyr_verify_stats *ret_stats)
{
	lyr_verify_opts none = {0};
	verify v = {s, opts ? opts : &none, 0, {0}};
	char **all = NULL;
	int r = 0;
	if (n == 0) {
		r = lyr_layer_list(s, collect_layer, &all);
		for (; r >= 0 && all && all[n]; n++)
			;
		ids = (const char *const *)all;
	}
	for (size_t i = 0; r >= 0 && i < n; i++) {
		if (v.o->no_hash)
			r = report_mark(&v, ids[i]);
		else if (!v.o->marked_only || (r = marked(s, ids[i])) > 0)
			r = verify_layer(&v, ids[i]);
	}
	lyr_strv_free(all);
	if (ret_stats)
		*ret_stats = v.stats;
	if (r < 0 && r != -ENOENT)
		db_seterr("verify '%s': %s", s->root, strerror(-r));
	return r < 0 ? r : v.left;
}
