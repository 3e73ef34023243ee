/* The store's per-layer digest cache, behind lyr_store_hash_cache: the content hash (hash/)
 * asks it for the digest of an entry of an immutable layer before reading the entry, and
 * tells it every digest it computes.  A layer ID names its content exactly (it is a digest of
 * the layer's diff and its parent), so a cached digest can never go stale; entries of a removed
 * layer stay valid should the same layer be committed again.
 *
 * Keys come from the hasher as "<kind>:sha256:<64 hex>:<path>" (kind f, d or h; see hash.h)
 * and are kept as "<64 hex>\0<kind><path>" in the hashes table, so that all of a layer's
 * entries sit together.  Values are the digest text.  Each get and put is one short
 * transaction. */
#include <string.h>

#include "db-int.h"

/* Builds the table key from a hasher key; returns its length, or 0 for a key that does not
 * name a layer entry (those are not cached). */
static size_t table_key(const char *key, char *buf, size_t size)
{
	static const char prefix[] = LYR_DIGEST_PREFIX;
	size_t plen = sizeof(prefix) - 1, klen = strlen(key);
	if (klen < 2 + plen + 64 + 1 || key[1] != ':' || strncmp(key + 2, prefix, plen) != 0 ||
	    key[2 + plen + 64] != ':')
		return 0;
	const char *hex = key + 2 + plen;
	const char *path = hex + 64 + 1;
	size_t pathlen = strlen(path);
	if (64 + 2 + pathlen > size)
		return 0;
	memcpy(buf, hex, 64);
	buf[64] = '\0';
	buf[65] = key[0];
	memcpy(buf + 66, path, pathlen);
	return 66 + pathlen;
}

typedef struct cache_op {
	const char *key;
	size_t klen;
	const char *digest; /* put */
	char *ret;          /* get: LYR_DIGEST_TEXT_LEN bytes */
	bool found;
} cache_op;

static int get_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	cache_op *op = ctx;
	void *val = NULL;
	size_t len = 0;
	int r = rec_get(s->hashes, txn, op->key, op->klen, &val, &len);
	if (r == -ENOENT) {
		op->found = false;
		return 0;
	}
	if (r < 0)
		return r;
	op->found = len == LYR_DIGEST_TEXT_LEN - 1;
	if (op->found) {
		memcpy(op->ret, val, len);
		op->ret[len] = '\0';
	}
	free(val);
	return 0;
}

static int put_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	cache_op *op = ctx;
	return rec_put(s->hashes, txn, op->key, op->klen, op->digest, strlen(op->digest), 0);
}

static int cache_get(void *ctx, const char *key, char digest[LYR_DIGEST_TEXT_LEN])
{
	char buf[4200];
	cache_op op = {.ret = digest};
	op.klen = table_key(key, buf, sizeof(buf));
	if (!op.klen)
		return 0;
	op.key = buf;
	int r = txn_run(ctx, get_txn, &op);
	return r < 0 ? r : op.found;
}

static int cache_put(void *ctx, const char *key, const char *digest)
{
	char buf[4200];
	cache_op op = {.digest = digest};
	op.klen = table_key(key, buf, sizeof(buf));
	if (!op.klen || strlen(digest) != LYR_DIGEST_TEXT_LEN - 1)
		return 0;
	op.key = buf;
	return txn_run(ctx, put_txn, &op);
}

void lyr_store_hash_cache(lyr_store *s, lyr_hash_cache *ret)
{
	ret->get = cache_get;
	ret->put = cache_put;
	ret->ctx = s;
}
