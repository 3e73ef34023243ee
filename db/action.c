/* The action cache: what an exec run produced, keyed by its cache key (actions.db, key =
 * "sha256:<hex>" text).  A record holds the exit code, the created time and the outputs in
 * mount order (root first), each a target path and a layer ID.
 *
 * Layers are not kept alive by entries: prune removes layers without looking here, so get
 * checks in the same transaction that every output layer still exists and drops an entry that
 * names a removed one.  Cache-mount records (cachemount.c) share this table under keys that
 * start with "cache-mount\0"; everything here skips keys that do not start with "sha256:".
 *
 * Record: u16 version, i32 exit code, i64 created, u32 count, then per output two
 * u32-length-prefixed strings (target, layer), all little-endian. */
#include <string.h>

#include "db-int.h"

#define REC_ACTION_VERSION 1

void lyr_action_clear(lyr_action *a)
{
	for (size_t i = 0; a->outputs && i < a->n_outputs; i++)
		free(a->outputs[i].target);
	free(a->outputs);
	memset(a, 0, sizeof *a);
}

static bool is_action_key(const void *key, size_t len)
{
	size_t n = strlen(LYR_DIGEST_PREFIX);
	return len > n && memcmp(key, LYR_DIGEST_PREFIX, n) == 0;
}

static void put_le(uint8_t **p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		*(*p)++ = (uint8_t)(v >> (8 * i));
}

static int get_le(const uint8_t **p, const uint8_t *end, int bytes, uint64_t *ret)
{
	if (end - *p < bytes)
		return -EBADMSG;
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)(*(*p)++) << (8 * i);
	*ret = v;
	return 0;
}

static int get_str(const uint8_t **p, const uint8_t *end, char **ret)
{
	uint64_t len;
	int r = get_le(p, end, 4, &len);
	if (r < 0 || (uint64_t)(end - *p) < len)
		return -EBADMSG;
	*ret = strndup((const char *)*p, len);
	if (!*ret)
		return -ENOMEM;
	*p += len;
	return 0;
}

static int action_encode(const lyr_action *a, void **ret, size_t *ret_len)
{
	size_t len = 2 + 4 + 8 + 4;
	for (size_t i = 0; i < a->n_outputs; i++)
		len += 8 + strlen(a->outputs[i].target) + strlen(a->outputs[i].layer);
	uint8_t *buf = malloc(len), *p = buf;
	if (!buf)
		return -ENOMEM;
	put_le(&p, REC_ACTION_VERSION, 2);
	put_le(&p, (uint32_t)a->exit_code, 4);
	put_le(&p, (uint64_t)a->created, 8);
	put_le(&p, a->n_outputs, 4);
	for (size_t i = 0; i < a->n_outputs; i++) {
		const char *f[2] = {a->outputs[i].target, a->outputs[i].layer};
		for (int k = 0; k < 2; k++) {
			size_t n = strlen(f[k]);
			put_le(&p, n, 4);
			memcpy(p, f[k], n);
			p += n;
		}
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int action_decode(const void *buf, size_t len, lyr_action *ret)
{
	const uint8_t *p = buf, *end = p + len;
	uint64_t version, code, created, n;
	lyr_action a = {0};
	int r = get_le(&p, end, 2, &version);
	if (r == 0 && version != REC_ACTION_VERSION)
		r = -EPROTO;
	if (r == 0)
		r = get_le(&p, end, 4, &code);
	if (r == 0)
		r = get_le(&p, end, 8, &created);
	if (r == 0)
		r = get_le(&p, end, 4, &n);
	if (r == 0 && n > len)
		r = -EBADMSG;
	if (r < 0)
		return r;
	a.exit_code = (int32_t)(uint32_t)code;
	a.created = (int64_t)created;
	a.outputs = calloc(n ? n : 1, sizeof *a.outputs);
	if (!a.outputs)
		return -ENOMEM;
	for (; a.n_outputs < n; a.n_outputs++) {
		lyr_action_output *o = &a.outputs[a.n_outputs];
		_cleanup_free_ char *layer = NULL;
		r = get_str(&p, end, &o->target);
		if (r == 0)
			r = get_str(&p, end, &layer);
		if (r == 0 && strlen(layer) >= sizeof o->layer)
			r = -EBADMSG;
		if (r < 0) {
			a.n_outputs += o->target != NULL;
			lyr_action_clear(&a);
			return r;
		}
		memcpy(o->layer, layer, strlen(layer) + 1);
	}
	*ret = a;
	return 0;
}

typedef struct action_ctx {
	const char *key;
	lyr_action a;
	const lyr_action *put;
	bool gone; /* the entry was dropped (or unreadable) */
} action_ctx;

static int action_get_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	action_ctx *c = ctx;
	lyr_action_clear(&c->a);
	c->gone = false;
	_cleanup_free_ void *v = NULL;
	size_t len;
	int r = rec_get(s->actions, txn, c->key, strlen(c->key), &v, &len);
	if (r)
		return r;
	r = action_decode(v, len, &c->a);
	for (size_t i = 0; r == 0 && i < c->a.n_outputs; i++) {
		const char *layer = c->a.outputs[i].layer;
		if (!rec_exists(s->layers, txn, layer, strlen(layer), &r) && r == 0) {
			/* an output was pruned: the entry can never be answered again */
			c->gone = true;
			return rec_del(s->actions, txn, c->key, strlen(c->key));
		}
	}
	if (r == -EBADMSG || r == -EPROTO) { /* unreadable entry: a cache may forget */
		c->gone = true;
		return 0;
	}
	return r;
}

int lyr_action_get(lyr_store *s, const char *key, lyr_action *ret)
{
	if (!is_action_key(key, strlen(key)))
		return -EINVAL;
	action_ctx c = {.key = key};
	int r = txn_run(s, action_get_txn, &c);
	if (r == 0 && c.gone)
		r = -ENOENT;
	if (r < 0) {
		lyr_action_clear(&c.a);
		return r;
	}
	*ret = c.a;
	return 0;
}

static int action_put_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	action_ctx *c = ctx;
	_cleanup_free_ void *v = NULL;
	size_t len;
	for (size_t i = 0; i < c->put->n_outputs; i++) {
		const char *layer = c->put->outputs[i].layer;
		int r;
		if (!rec_exists(s->layers, txn, layer, strlen(layer), &r))
			return r ? r : -ENOENT;
	}
	int r = action_encode(c->put, &v, &len);
	if (r == 0)
		r = rec_put(s->actions, txn, c->key, strlen(c->key), v, len, 0);
	return r;
}

int lyr_action_put(lyr_store *s, const char *key, const lyr_action *a)
{
	if (!is_action_key(key, strlen(key)))
		return -EINVAL;
	action_ctx c = {.key = key, .put = a};
	int r = txn_run(s, action_put_txn, &c);
	if (r == -ENOENT)
		db_seterr("action cache '%s': an output layer does not exist", key);
	return r;
}

typedef struct prune_actions_ctx {
	lyr_store *s;
	DB_TXN *txn;
	int64_t cutoff;
	size_t removed;
} prune_actions_ctx;

/* An entry goes when it is older than the cutoff, malformed, or names a layer that is gone. */
static int prune_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	prune_actions_ctx *p = ctx;
	if (!is_action_key(key, klen))
		return 0;
	lyr_action a;
	bool drop = action_decode(val, vlen, &a) < 0;
	int r = 0;
	if (!drop) {
		drop = a.created <= p->cutoff;
		for (size_t i = 0; !drop && i < a.n_outputs; i++) {
			const char *layer = a.outputs[i].layer;
			drop = !rec_exists(p->s->layers, p->txn, layer, strlen(layer), &r) && r == 0;
			if (r)
				break;
		}
		lyr_action_clear(&a);
	}
	if (r)
		return r;
	if (!drop)
		return 0;
	p->removed++;
	return REC_DELETE;
}

static int action_prune_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	prune_actions_ctx *p = ctx;
	p->removed = 0; /* a retried transaction starts over */
	p->s = s;
	p->txn = txn;
	return rec_each(s->actions, txn, prune_one, p);
}

int lyr_action_prune(lyr_store *s, bool all, int64_t keep_seconds, size_t *ret_removed)
{
	prune_actions_ctx p = {.cutoff = all ? now_seconds() - (keep_seconds > 0 ? keep_seconds : 0)
					     : INT64_MIN};
	int r = txn_run(s, action_prune_txn, &p);
	if (r < 0)
		return r;
	if (ret_removed)
		*ret_removed = p.removed;
	return 0;
}
