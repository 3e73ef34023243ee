/* The digest cache entries (hashes.db, db/hashcache.c) of a layer being verified: loaded in
 * one cursor range, their file digests taken from the verifying read (centries_file_prefix,
 * centries_fresh), the rest recomputed through the content hash of the layer's view with a
 * cache that answers "unknown" for the layer's own keys and compares what the hasher then
 * stores with what was stored (centries_check), and stale ones dropped.  db/verify.c decides
 * what to report.  Entries are kept sorted by kind and path for lookups; a layer has a few
 * per file it holds. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "db-int.h"
#include "layerfs/stack.h"

#define HEX_LEN 64

void centries_clear(centries *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].path);
	free(c->v);
	c->v = NULL;
	c->n = 0;
}

/* The layer's entries sit together in hashes.db under "<hex>\0<kind><path>". */
static int centries_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	centries *c = ctx;
	centries_clear(c);
	DBC *cur;
	int r = dbx(s->hashes->cursor(s->hashes, txn, &cur, 0));
	if (r)
		return r;
	char prefix[HEX_LEN + 1];
	memcpy(prefix, c->hex, HEX_LEN);
	prefix[HEX_LEN] = '\0';
	DBT k = {0}, val = {0};
	k.flags = val.flags = DB_DBT_REALLOC;
	k.data = malloc(sizeof prefix);
	if (!k.data) {
		cur->close(cur);
		return -ENOMEM;
	}
	memcpy(k.data, prefix, sizeof prefix);
	k.size = sizeof prefix;
	u_int32_t how = DB_SET_RANGE;
	while ((r = dbx(cur->get(cur, &k, &val, how))) == 0) {
		how = DB_NEXT;
		if (k.size < sizeof prefix + 1 || memcmp(k.data, prefix, sizeof prefix) != 0)
			break;
		centry *nv = realloc(c->v, (c->n + 1) * sizeof *nv);
		if (!nv) {
			r = -ENOMEM;
			break;
		}
		c->v = nv;
		centry *e = &c->v[c->n];
		memset(e, 0, sizeof *e);
		e->kind = ((char *)k.data)[sizeof prefix];
		e->path = strndup((char *)k.data + sizeof prefix + 1, k.size - sizeof prefix - 1);
		if (!e->path) {
			r = -ENOMEM;
			break;
		}
		snprintf(e->digest, sizeof e->digest, "%.*s", (int)val.size, (char *)val.data);
		c->n++;
	}
	free(k.data);
	free(val.data);
	int e = dbx(cur->close(cur));
	return r == -ENOENT || r == 0 ? e : r;
}

static int centry_cmp(const void *a, const void *b)
{
	const centry *x = a, *y = b;
	return x->kind != y->kind ? (x->kind < y->kind ? -1 : 1) : strcmp(x->path, y->path);
}

static centry *centry_find(centries *c, char kind, const char *path)
{
	centry key = {.kind = kind, .path = (char *)path};
	return c->n ? bsearch(&key, c->v, c->n, sizeof *c->v, centry_cmp) : NULL;
}

/* The layer's entries, sorted by kind and path. */
int centries_load(lyr_store *s, centries *c)
{
	int r = txn_run(s, centries_txn, c);
	if (r >= 0 && c->n)
		qsort(c->v, c->n, sizeof *c->v, centry_cmp);
	return r;
}

/* lyr_diff_opts.file_prefix: a file with a digest cache entry gets its content-hash digest from
 * the verifying read itself, so checking the entry reads the file no second time.  Metacopy
 * files are left to the content hash (their data lives in a lower layer). */
int centries_file_prefix(void *ctx, int fd, const struct stat *st, const char *path, uint8_t **ret,
			 size_t *ret_len)
{
	char p[PATH_MAX + 2];
	snprintf(p, sizeof p, "/%s", path);
	if (!centry_find(ctx, 'f', p))
		return 0;
	static const char *const meta[] = {"trusted.overlay.metacopy", "user.overlay.metacopy"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(meta); i++)
		if (fgetxattr(fd, meta[i], NULL, 0) >= 0)
			return 0;
	int r = lyr_hash_file_prefix(fd, st, ret, ret_len);
	return r < 0 ? r : 1;
}

/* Takes the digests file_prefix asked for out of the listing NOW. */
void centries_fresh(centries *c, const lyr_diff_list *now)
{
	char p[PATH_MAX + 2];
	for (size_t i = 0; i < now->n; i++) {
		if (!now->v[i].has_extra)
			continue;
		snprintf(p, sizeof p, "/%s", now->v[i].path);
		centry *e = centry_find(c, 'f', p);
		if (!e)
			continue;
		lyr_digest_text(now->v[i].extra, e->fresh);
		e->checked = true;
		e->stale = strcmp(e->fresh, e->digest) != 0;
	}
}

typedef struct drop_ctx {
	const centries *c;
	size_t from, to;
	bool stale_only;
} drop_ctx;

static int drop_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	drop_ctx *d = ctx;
	char key[HEX_LEN + 2 + PATH_MAX];
	for (size_t i = d->from; i < d->to; i++) {
		const centry *e = &d->c->v[i];
		if (d->stale_only && !e->stale)
			continue;
		size_t pl = strlen(e->path);
		if (pl > PATH_MAX)
			continue;
		memcpy(key, d->c->hex, HEX_LEN);
		key[HEX_LEN] = '\0';
		key[HEX_LEN + 1] = e->kind;
		memcpy(key + HEX_LEN + 2, e->path, pl);
		int r = rec_del(s->hashes, txn, key, HEX_LEN + 2 + pl);
		if (r && r != -ENOENT)
			return r;
	}
	return 0;
}

/* Drops the stale entries (or all), a thousand per transaction. */
int centries_drop(lyr_store *s, const centries *c, bool stale_only)
{
	for (size_t from = 0; from < c->n; from += 1000) {
		drop_ctx d = {c, from, c->n - from < 1000 ? c->n : from + 1000, stale_only};
		int r = txn_run(s, drop_txn, &d);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The cache the hasher sees while entries are checked: the layer's own keys are unknown, so
 * they are computed from the content and "stored", which compares them with the entry; keys
 * of the layers below are answered from the store (they are checked with their own layer). */
typedef struct vcache {
	centries *c;
	lyr_hash_cache real;
} vcache;

/* The entry KEY ("<kind>:sha256:<hex>:<path>") names, when it is one of the layer's. */
static centry *centry_of(vcache *vc, const char *key)
{
	size_t pl = strlen(LYR_DIGEST_PREFIX);
	if (strlen(key) < 2 + pl + HEX_LEN + 1 || memcmp(key + 2 + pl, vc->c->hex, HEX_LEN) != 0)
		return NULL;
	return centry_find(vc->c, key[0], key + 2 + pl + HEX_LEN + 1);
}

static bool own_key(vcache *vc, const char *key)
{
	size_t pl = strlen(LYR_DIGEST_PREFIX);
	return strlen(key) > 2 + pl + HEX_LEN && memcmp(key + 2 + pl, vc->c->hex, HEX_LEN) == 0;
}

static int vc_get(void *ctx, const char *key, char digest[LYR_DIGEST_TEXT_LEN])
{
	vcache *vc = ctx;
	if (!own_key(vc, key))
		return vc->real.get(vc->real.ctx, key, digest);
	/* a file digest of the verifying read: the content, not the entry */
	centry *e = centry_of(vc, key);
	if (!e || !*e->fresh)
		return 0;
	memcpy(digest, e->fresh, LYR_DIGEST_TEXT_LEN);
	return 1;
}

static int vc_put(void *ctx, const char *key, const char *digest)
{
	centry *e = centry_of(ctx, key);
	if (e) {
		e->checked = true;
		e->stale = strcmp(e->digest, digest) != 0;
	}
	return 0;
}

/* What to hash to reach PATH: the path itself, or its nearest ancestor a selector can name
 * literally (a selector with `*`, `?`, `[` or `\` would be a pattern). */
static char *selector_for(const char *path)
{
	char *sel = strdup(path);
	if (!sel)
		return NULL;
	char *bad = strpbrk(sel, "*?[\\");
	if (bad) {
		*bad = '\0';
		char *slash = strrchr(sel, '/');
		if (slash)
			slash[slash == sel ? 1 : 0] = '\0';
	}
	return sel;
}

/* Recomputes every entry of C through the content hash of the layer's view (CHAIN: the layer
 * and its ancestors).  Sets checked and stale; entries the hash never reached stay unchecked. */
int centries_check(lyr_store *s, centries *c, char **chain, size_t n, unsigned threads)
{
	_cleanup_free_ const char **dirs = calloc(n + 1, sizeof *dirs);
	_cleanup_free_ char **sels = calloc(c->n + 1, sizeof *sels);
	if (!dirs || !sels)
		return -ENOMEM;
	size_t ns = 0;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < c->n; i++)
		if (!c->v[i].checked && !(sels[ns++] = selector_for(c->v[i].path)))
			r = -ENOMEM;
	if (ns == 0)
		return r; /* the verifying read checked them all */
	char **paths = NULL;
	if (r >= 0)
		r = lyr_layer_chain(s, chain[0], &paths);
	for (size_t i = 0; r >= 0 && i < n; i++)
		dirs[i] = paths[i];
	lyr_stack *stack = NULL;
	if (r >= 0)
		r = lyr_stack_open(dirs, n, NULL, &stack);
	lyr_hash_source src = {0};
	if (r >= 0)
		r = lyr_hash_source_stack(stack, (const char *const *)chain, &src);
	char **list = NULL;
	size_t kept = 0;
	if (r >= 0)
		r = lyr_hash_selectors_dedupe((const char *const *)sels, ns, false, &list, &kept,
					      NULL);
	vcache vc = {.c = c};
	lyr_store_hash_cache(s, &vc.real);
	lyr_hash_cache cache = {vc_get, vc_put, &vc};
	lyr_hash_opts o = {.cache = &cache, .threads = threads};
	for (size_t i = 0; r >= 0 && i < kept; i++) {
		const char *one = list[i];
		char out[LYR_DIGEST_TEXT_LEN];
		int e = lyr_hash_selectors(&src, &one, 1, &o, out);
		if (e == -ENOMEM)
			r = e; /* anything else: its entries stay unchecked */
	}
	lyr_hash_selectors_free(list, kept);
	for (size_t i = 0; i < ns; i++)
		free(sels[i]);
	lyr_hash_source_stack_free(&src);
	lyr_stack_free(stack);
	lyr_strv_free(paths);
	return r;
}
