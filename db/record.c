/* Record encodings (docs/store-format.md): each record starts with a u16 record version,
 * then fixed little-endian integers and strings as u32 length + bytes (no NUL).  Decoders
 * check every length against the buffer and refuse a newer version with -EPROTO and a
 * damaged record with -EBADMSG; decoded strings are heap copies, NUL-terminated. */
#include <endian.h>
#include <string.h>

#include "db-int.h"

typedef struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
} wbuf;

static void put(wbuf *w, const void *data, size_t n)
{
	if (w->oom || n == 0)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *np = realloc(w->p, cap);
		if (!np) {
			w->oom = true;
			return;
		}
		w->p = np, w->cap = cap;
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void put_u16(wbuf *w, uint16_t v)
{
	v = htole16(v);
	put(w, &v, 2);
}
static void put_u32(wbuf *w, uint32_t v)
{
	v = htole32(v);
	put(w, &v, 4);
}
static void put_u64(wbuf *w, uint64_t v)
{
	v = htole64(v);
	put(w, &v, 8);
}
static void put_str(wbuf *w, const char *str)
{
	size_t n = str ? strlen(str) : 0;
	put_u32(w, (uint32_t)n);
	put(w, str, n);
}

static int finish(wbuf *w, void **ret, size_t *ret_len)
{
	if (w->oom) {
		free(w->p);
		return -ENOMEM;
	}
	*ret = w->p;
	*ret_len = w->len;
	return 0;
}

typedef struct rbuf {
	const uint8_t *p;
	size_t len, off;
	int err;
} rbuf;

static const uint8_t *take(rbuf *r, size_t n)
{
	if (r->err || r->len - r->off < n) {
		r->err = r->err ? r->err : -EBADMSG;
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint16_t get_u16(rbuf *r)
{
	uint16_t v = 0;
	const uint8_t *p = take(r, 2);
	if (p)
		memcpy(&v, p, 2);
	return le16toh(v);
}
static uint32_t get_u32(rbuf *r)
{
	uint32_t v = 0;
	const uint8_t *p = take(r, 4);
	if (p)
		memcpy(&v, p, 4);
	return le32toh(v);
}
static uint64_t get_u64(rbuf *r)
{
	uint64_t v = 0;
	const uint8_t *p = take(r, 8);
	if (p)
		memcpy(&v, p, 8);
	return le64toh(v);
}
static char *get_str(rbuf *r)
{
	uint32_t n = get_u32(r);
	const uint8_t *p = take(r, n);
	if (!p)
		return NULL;
	if (memchr(p, 0, n)) {
		r->err = -EBADMSG;
		return NULL;
	}
	char *str = strndup((const char *)p, n);
	if (!str)
		r->err = -ENOMEM;
	return str;
}

static int check_version(rbuf *r, uint16_t known)
{
	uint16_t v = get_u16(r);
	if (r->err)
		return r->err;
	return v > known ? -EPROTO : (v == 0 ? -EBADMSG : 0);
}

void layer_rec_clear(layer_rec *r)
{
	free(r->parent), free(r->digest), free(r->desc);
	memset(r, 0, sizeof *r);
}

void ref_rec_clear(ref_rec *r)
{
	free(r->parent), free(r->desc), free(r->mountpoint);
	free(r->target), free(r->digest), free(r->tag);
	memset(r, 0, sizeof *r);
}

int layer_rec_encode(const layer_rec *r, void **ret, size_t *ret_len)
{
	wbuf w = {0};
	put_u16(&w, REC_LAYER_VERSION);
	put_u64(&w, r->size);
	put_u64(&w, r->entries);
	put_u64(&w, (uint64_t)r->created);
	put_str(&w, r->parent);
	put_str(&w, r->digest);
	put_str(&w, r->desc);
	return finish(&w, ret, ret_len);
}

int layer_rec_decode(const void *buf, size_t len, layer_rec *ret)
{
	rbuf r = {buf, len, 0, 0};
	int e = check_version(&r, REC_LAYER_VERSION);
	if (e)
		return e;
	layer_rec l = {0};
	l.size = get_u64(&r);
	l.entries = get_u64(&r);
	l.created = (int64_t)get_u64(&r);
	l.parent = get_str(&r);
	l.digest = get_str(&r);
	l.desc = get_str(&r);
	if (r.err) {
		layer_rec_clear(&l);
		return r.err;
	}
	*ret = l;
	return 0;
}

int ref_rec_encode(const ref_rec *r, void **ret, size_t *ret_len)
{
	wbuf w = {0};
	put_u16(&w, REC_REF_VERSION);
	put_u16(&w, r->state);
	put_u64(&w, (uint64_t)r->created);
	put_str(&w, r->parent);
	put_str(&w, r->desc);
	put_u32(&w, (uint32_t)r->mount_owner.pid);
	put_u64(&w, r->mount_owner.start);
	put_str(&w, r->mountpoint);
	put_u32(&w, (uint32_t)r->owner.pid);
	put_u64(&w, r->owner.start);
	put_u64(&w, (uint64_t)r->stamp);
	put_str(&w, r->target);
	put_str(&w, r->digest);
	put_u64(&w, r->size);
	put_u64(&w, r->entries);
	put_str(&w, r->tag);
	return finish(&w, ret, ret_len);
}

int ref_rec_decode(const void *buf, size_t len, ref_rec *ret)
{
	rbuf r = {buf, len, 0, 0};
	int e = check_version(&r, REC_REF_VERSION);
	if (e)
		return e;
	ref_rec f = {0};
	f.state = get_u16(&r);
	f.created = (int64_t)get_u64(&r);
	f.parent = get_str(&r);
	f.desc = get_str(&r);
	f.mount_owner.pid = (int32_t)get_u32(&r);
	f.mount_owner.start = get_u64(&r);
	f.mountpoint = get_str(&r);
	f.owner.pid = (int32_t)get_u32(&r);
	f.owner.start = get_u64(&r);
	f.stamp = (int64_t)get_u64(&r);
	f.target = get_str(&r);
	f.digest = get_str(&r);
	f.size = get_u64(&r);
	f.entries = get_u64(&r);
	f.tag = get_str(&r);
	if (!r.err && f.state > REF_COMMITTING)
		r.err = -EBADMSG;
	if (r.err) {
		ref_rec_clear(&f);
		return r.err;
	}
	*ret = f;
	return 0;
}

int tag_rec_encode(const char *layer, void **ret, size_t *ret_len)
{
	wbuf w = {0};
	put_u16(&w, REC_TAG_VERSION);
	put_str(&w, layer);
	return finish(&w, ret, ret_len);
}

int tag_rec_decode(const void *buf, size_t len, char **ret_layer)
{
	rbuf r = {buf, len, 0, 0};
	int e = check_version(&r, REC_TAG_VERSION);
	if (e)
		return e;
	char *layer = get_str(&r);
	if (r.err) {
		free(layer);
		return r.err;
	}
	*ret_layer = layer;
	return 0;
}
