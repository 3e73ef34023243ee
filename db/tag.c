/* Tags: names pointing at layers.  A tag record (tags.db, key = name) holds the layer ID; the
 * same transaction keeps the layer's T entry in the uses index, so a tagged layer and its
 * ancestors survive prune and refuse rm. */
#include <string.h>

#include "db-int.h"

#define TAG_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"
_Static_assert(LYR_MIN_PREFIX == 12, "the hex-only rule's message says 12");

/* Why NAME breaks the rules of its characters and length (static text), or NULL. */
static const char *chars_fault(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 128 || name[0] == '.' || name[0] == '-' || strspn(name, TAG_CHARS) != n)
		return "use 1-128 of A-Z a-z 0-9 . _ : -, not starting with '.' or '-'";
	return NULL;
}

int lyr_tag_check(const char *name, const char **ret_why)
{
	const char *why = chars_fault(name);
	/* Names that read as layer IDs or ID prefixes would make resolution ambiguous: the
	 * resolver reads hex digits in either case, and looks a tag up before a prefix. */
	size_t n = why ? 0 : strlen(name);
	if (!why && strncmp(name, LYR_DIGEST_PREFIX, strlen(LYR_DIGEST_PREFIX)) == 0)
		why = "it starts with 'sha256:', as a layer ID does";
	else if (!why && n >= LYR_MIN_PREFIX && strspn(name, "0123456789abcdefABCDEF") == n)
		why = "12 or more hex digits (in either case) read as an ID prefix";
	if (!why)
		return 0;
	if (ret_why)
		*ret_why = why;
	return -EINVAL;
}

int lyr_tag_valid(const char *name)
{
	return lyr_tag_check(name, NULL);
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
	const char *why;
	if (lyr_tag_check(name, &why) < 0) {
		db_seterr("tag '%s': invalid name: %s", name, why);
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
	if (chars_fault(name)) {
		db_seterr("tag '%s': invalid name", name);
		return -EINVAL;
	}
	int r = txn_run(s, tag_remove_txn, (void *)name);
	if (r == -ENOENT)
		db_seterr("tag '%s': no such tag", name);
	return r;
}
