/* Resolving what a user typed into a layer or ref ID.  Order: a full ID (64 hex digits, with
 * "sha256:" for layers only), then a tag, then a unique prefix of LYR_MIN_PREFIX or more hex
 * digits.  A prefix is looked up with one DB_SET_RANGE cursor step per table plus one step
 * to see whether a second key shares it: the cost does not grow with the store. */
#include <ctype.h>
#include <string.h>

#include "db-int.h"

typedef struct resolve_ctx {
	const char *text;
	char hex[80];
	bool layer_only, is_hex;
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	int matches;
} resolve_ctx;

/* Counts keys of DB starting with PREFIX (0, 1 or 2 = "more than one"); keeps the first. */
static int prefix_count(DB *db, DB_TXN *txn, const char *prefix, char *first, int *ret)
{
	size_t plen = strlen(prefix);
	DBC *c;
	int r = dbx(db->cursor(db, txn, &c, 0));
	if (r)
		return r;
	DBT k = {0}, v = {0};
	k.flags = DB_DBT_REALLOC;
	v.flags = DB_DBT_USERMEM | DB_DBT_PARTIAL; /* keys only */
	k.data = strdup(prefix);
	if (!k.data) {
		c->close(c);
		return -ENOMEM;
	}
	k.size = (uint32_t)plen;
	int n = 0;
	for (uint32_t op = DB_SET_RANGE; n < 2; op = DB_NEXT) {
		r = dbx(c->get(c, &k, &v, op));
		if (r == -ENOENT) {
			r = 0;
			break;
		}
		if (r)
			break;
		if (k.size < plen || memcmp(k.data, prefix, plen) != 0)
			break;
		if (n == 0 && k.size < LYR_ID_MAX)
			memcpy(first, k.data, k.size), first[k.size] = '\0';
		n++;
	}
	free(k.data);
	int e = dbx(c->close(c));
	if (r == 0)
		r = e;
	*ret = n;
	return r;
}

static int resolve_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	resolve_ctx *x = ctx;
	char layer_key[sizeof x->hex + 8];
	size_t n = strlen(x->hex);
	int r = 0;
	x->matches = 0;
	x->kind = LYR_OBJ_NONE;
	snprintf(layer_key, sizeof layer_key, "%s%s", LYR_DIGEST_PREFIX, x->hex);

	if (x->is_hex && n == 64) {
		if (rec_exists(s->layers, txn, layer_key, strlen(layer_key), &r)) {
			x->kind = LYR_OBJ_LAYER, x->matches = 1;
			snprintf(x->id, sizeof x->id, "%.71s", layer_key);
			return 0;
		}
		if (r)
			return r;
		if (!x->layer_only && rec_exists(s->refs, txn, x->hex, n, &r)) {
			x->kind = LYR_OBJ_REF, x->matches = 1;
			snprintf(x->id, sizeof x->id, "%.64s", x->hex);
			return 0;
		}
		return r ? r : -ENOENT;
	}
	if (!x->layer_only && lyr_tag_valid(x->text) == 0) {
		_cleanup_free_ void *v = NULL;
		_cleanup_free_ char *layer = NULL;
		size_t len;
		r = rec_get(s->tags, txn, x->text, strlen(x->text), &v, &len);
		if (r == 0 && (r = tag_rec_decode(v, len, &layer)) == 0) {
			x->kind = LYR_OBJ_LAYER, x->matches = 1;
			snprintf(x->id, sizeof x->id, "%s", layer);
			return 0;
		}
		if (r != -ENOENT)
			return r;
	}
	if (!x->is_hex || n < LYR_MIN_PREFIX || n > 64) {
		if (x->layer_only || (x->is_hex && n < LYR_MIN_PREFIX))
			return -EINVAL;
		return lyr_tag_valid(x->text) == 0 ? -ENOENT : -EINVAL;
	}
	int cl = 0, cr = 0;
	char first[LYR_ID_MAX] = "";
	r = prefix_count(s->layers, txn, layer_key, first, &cl);
	if (r)
		return r;
	if (cl == 1) {
		x->kind = LYR_OBJ_LAYER;
		snprintf(x->id, sizeof x->id, "%s", first);
	}
	if (!x->layer_only && cl < 2) {
		r = prefix_count(s->refs, txn, x->hex, first, &cr);
		if (r)
			return r;
		if (cr == 1 && cl == 0) {
			x->kind = LYR_OBJ_REF;
			snprintf(x->id, sizeof x->id, "%s", first);
		}
	}
	x->matches = cl + cr;
	return x->matches == 0 ? -ENOENT : (x->matches > 1 ? -EEXIST : 0);
}

int lyr_store_resolve(lyr_store *s, const char *text, lyr_obj_kind *ret_kind, char *ret_id)
{
	resolve_ctx x = {.text = text};
	const char *h = text;
	if (strncmp(h, LYR_DIGEST_PREFIX, strlen(LYR_DIGEST_PREFIX)) == 0) {
		h += strlen(LYR_DIGEST_PREFIX);
		x.layer_only = true;
	}
	size_t n = strlen(h);
	if (n == 0 || n >= sizeof x.hex) {
		db_seterr("'%s': not an ID or tag", text);
		return -EINVAL;
	}
	x.is_hex = true;
	for (size_t i = 0; i <= n; i++) {
		x.hex[i] = (char)tolower((unsigned char)h[i]);
		if (i < n && !isxdigit((unsigned char)h[i]))
			x.is_hex = false;
	}
	int r = txn_run(s, resolve_txn, &x);
	if (r < 0) {
		if (r == -ENOENT)
			db_seterr("'%s': no such layer, ref or tag", text);
		else if (r == -EEXIST)
			db_seterr("'%s': ambiguous: more than one ID starts with it", text);
		else if (r == -EINVAL)
			db_seterr("'%s': not an ID (at least %d hex digits) or tag name", text,
				  LYR_MIN_PREFIX);
		return r;
	}
	*ret_kind = x.kind;
	snprintf(ret_id, LYR_ID_MAX, "%s", x.id);
	return 0;
}
