/* Tags: names pointing at layers.  A tag record (tags.db, key = name) holds the layer ID; the
 * same transaction keeps the layer's T entry in the uses index, so a tagged layer and its
 * ancestors survive prune and refuse rm. */
#include <string.h>

#include "db-int.h"

int lyr_tag_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 128 || name[0] == '.' || name[0] == '-')
		return -EINVAL;
	if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") != n)
		return -EINVAL;
	/* Names that read as layer IDs or ID prefixes would make resolution ambiguous. */
	if (strncmp(name, LYR_DIGEST_PREFIX, strlen(LYR_DIGEST_PREFIX)) == 0)
		return -EINVAL;
	if (n >= LYR_MIN_PREFIX && strspn(name, "0123456789abcdef") == n)
		return -EINVAL;
	return 0;
}

typedef struct tag_ctx {
	const char *name, *layer;
} tag_ctx;

static int tag_set_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	tag_ctx *t = ctx;
	int r;
	if (!rec_exists(s->layers, txn, t->layer, strlen(t->layer), &r))
		return r ? r : -ENOENT;
	return tag_point_txn(s, txn, t->name, t->layer);
}

int lyr_tag_set(lyr_store *s, const char *name, const char *layer_id)
{
	if (lyr_tag_valid(name) < 0) {
		db_seterr("tag '%s': invalid name (1-128 of A-Z a-z 0-9 . _ : -, not starting "
			  "with . or -, not an ID)",
			  name);
		return -EINVAL;
	}
	tag_ctx t = {name, layer_id};
	int r = txn_run(s, tag_set_txn, &t);
	if (r == -ENOENT)
		db_seterr("tag '%s': no such layer '%s'", name, layer_id);
	return r;
}

static int tag_remove_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	const char *name = ctx;
	_cleanup_free_ void *v = NULL;
	_cleanup_free_ char *layer = NULL;
	size_t len;
	int r = rec_get(s->tags, txn, name, strlen(name), &v, &len);
	if (r == 0)
		r = tag_rec_decode(v, len, &layer);
	if (r == 0)
		r = rec_del(s->tags, txn, name, strlen(name));
	if (r == 0)
		r = use_del(s, txn, layer, USE_TAG, name);
	return r;
}

int lyr_tag_remove(lyr_store *s, const char *name)
{
	if (lyr_tag_valid(name) < 0) {
		db_seterr("tag '%s': invalid name", name);
		return -EINVAL;
	}
	int r = txn_run(s, tag_remove_txn, (void *)name);
	if (r == -ENOENT)
		db_seterr("tag '%s': no such tag", name);
	return r;
}
