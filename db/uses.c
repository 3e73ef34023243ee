/* The "uses" index: one key per thing that keeps a layer alive, "<layer id>\0<kind><name>"
 * with kind L (a child layer), R (a ref on it) or T (a tag), and an empty value.  Keys sort
 * by layer, so every question about one layer ("is it needed?", "its children, refs and
 * tags") is one cursor range from DB_SET_RANGE, never a scan of all records.  The index is
 * written in the same transactions as the records it mirrors. */
#include <string.h>

#include "db-int.h"

static int use_key(const char *layer, char kind, const char *name, char **ret, size_t *ret_len)
{
	size_t l = strlen(layer), n = strlen(name);
	char *k = malloc(l + 2 + n);
	if (!k)
		return -ENOMEM;
	memcpy(k, layer, l);
	k[l] = '\0';
	k[l + 1] = kind;
	memcpy(k + l + 2, name, n);
	*ret = k;
	*ret_len = l + 2 + n;
	return 0;
}

int use_put(lyr_store *s, DB_TXN *txn, const char *layer, char kind, const char *name)
{
	_cleanup_free_ char *k = NULL;
	size_t len;
	int r = use_key(layer, kind, name, &k, &len);
	if (r)
		return r;
	return rec_put(s->uses, txn, k, len, "", 0, 0);
}

int use_del(lyr_store *s, DB_TXN *txn, const char *layer, char kind, const char *name)
{
	_cleanup_free_ char *k = NULL;
	size_t len;
	int r = use_key(layer, kind, name, &k, &len);
	if (r)
		return r;
	r = rec_del(s->uses, txn, k, len);
	return r == -ENOENT ? 0 : r;
}

int use_each(lyr_store *s, DB_TXN *txn, const char *layer,
	     int (*fn)(void *ctx, char kind, const char *name), void *ctx)
{
	size_t plen = strlen(layer) + 1; /* the prefix includes the NUL separator */
	DBC *c;
	int r = dbx(s->uses->cursor(s->uses, txn, &c, 0));
	if (r)
		return r;
	DBT k = {0}, v = {0};
	k.flags = v.flags = DB_DBT_REALLOC;
	k.data = malloc(plen);
	if (!k.data) {
		c->close(c);
		return -ENOMEM;
	}
	memcpy(k.data, layer, plen);
	k.size = (uint32_t)plen;
	int n = 0;
	for (uint32_t op = DB_SET_RANGE;; op = DB_NEXT) {
		r = dbx(c->get(c, &k, &v, op));
		if (r == -ENOENT) {
			r = 0;
			break;
		}
		if (r)
			break;
		if (k.size < plen + 1 || memcmp(k.data, layer, plen) != 0)
			break;
		n++;
		if (!fn)
			continue;
		_cleanup_free_ char *name = strndup((char *)k.data + plen + 1, k.size - plen - 1);
		if (!name) {
			r = -ENOMEM;
			break;
		}
		r = fn(ctx, ((char *)k.data)[plen], name);
		if (r) {
			r = r > 0 ? 0 : r;
			break;
		}
	}
	free(k.data);
	free(v.data);
	int e = dbx(c->close(c));
	if (r == 0)
		r = e;
	return r < 0 || db_retryable(r) ? r : n;
}
