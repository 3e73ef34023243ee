/* Byte buffers with length-prefixed fields, and xattr lists in name order, for the digest
 * encodings of hash/ (docs/diff-digest.md, the content hash).  No shared state. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/xattr.h>

#include "layerfs/common.h"

void hb_free(hbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

void hb_reset(hbuf *b)
{
	b->len = 0;
}

void hb_put(hbuf *b, const void *data, size_t len)
{
	if (b->oom || len == 0)
		return;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

void hb_lstr(hbuf *b, const void *data, size_t len)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%zu:", len);
	hb_put(b, num, (size_t)n);
	hb_put(b, data, len);
}

void hb_lcstr(hbuf *b, const char *s)
{
	hb_lstr(b, s, strlen(s));
}

void hb_lnum(hbuf *b, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%" PRIu64, v);
	hb_lstr(b, num, (size_t)n);
}

/* The fd or /proc path an entry is reached through, for hx_read. */
typedef struct xsrc {
	int fd;
	char path[64 + 256];
} xsrc;

static ssize_t src_list(void *arg, char *buf, size_t size)
{
	const xsrc *x = arg;
	ssize_t n = x->fd >= 0 ? flistxattr(x->fd, buf, size) : llistxattr(x->path, buf, size);
	return n < 0 ? -errno : n;
}

static ssize_t src_get(void *arg, const char *name, void *buf, size_t size)
{
	const xsrc *x = arg;
	ssize_t n = x->fd >= 0 ? fgetxattr(x->fd, name, buf, size)
			       : lgetxattr(x->path, name, buf, size);
	return n < 0 ? -errno : n;
}

static int attr_cmp(const void *a, const void *b)
{
	return strcmp(((const hx_attr *)a)->name, ((const hx_attr *)b)->name);
}

void hx_free(hx_list *l)
{
	free(l->v);
	free(l->names);
	free(l->vals);
	memset(l, 0, sizeof *l);
}

int hx_read_cb(ssize_t (*list)(void *arg, char *buf, size_t size),
	       ssize_t (*get)(void *arg, const char *name, void *buf, size_t size), void *arg,
	       hx_list *ret)
{
	hx_list l = {0};
	int r;

	/* Sizes can change between the size query and the read; retry on ERANGE. */
	for (;;) {
		ssize_t sz = list(arg, NULL, 0);
		if (sz == -ENOTSUP) {
			*ret = l;
			return 0;
		}
		if (sz < 0)
			return (int)sz;
		if (sz == 0) {
			*ret = l;
			return 0;
		}
		free(l.names);
		l.names = malloc((size_t)sz);
		if (!l.names)
			return -ENOMEM;
		ssize_t got = list(arg, l.names, (size_t)sz);
		if (got == -ERANGE)
			continue;
		if (got < 0) {
			r = (int)got;
			goto fail;
		}
		sz = got;
		size_t count = 0;
		for (ssize_t off = 0; off < sz; off += (ssize_t)strlen(l.names + off) + 1)
			count++;
		l.v = calloc(count ? count : 1, sizeof *l.v);
		size_t *offs = calloc(count ? count : 1, sizeof *offs);
		if (!l.v || !offs) {
			free(offs);
			r = -ENOMEM;
			goto fail;
		}
		size_t vlen = 0, i = 0;
		bool again = false;
		for (ssize_t off = 0; off < sz; off += (ssize_t)strlen(l.names + off) + 1, i++) {
			l.v[i].name = l.names + off;
			ssize_t v = get(arg, l.v[i].name, NULL, 0);
			if (v == -ENODATA) {
				again = true; /* removed meanwhile */
				break;
			}
			if (v < 0) {
				r = (int)v;
				free(offs);
				goto fail;
			}
			offs[i] = vlen;
			l.v[i].len = (size_t)v;
			vlen += (size_t)v;
		}
		if (!again) {
			l.vals = malloc(vlen ? vlen : 1);
			if (!l.vals) {
				free(offs);
				r = -ENOMEM;
				goto fail;
			}
			for (i = 0; i < count; i++) {
				ssize_t v = get(arg, l.v[i].name, l.vals + offs[i], l.v[i].len);
				if (v == -ERANGE || v == -ENODATA) {
					again = true;
					break;
				}
				if (v < 0) {
					r = (int)v;
					free(offs);
					goto fail;
				}
				if ((size_t)v != l.v[i].len) {
					again = true; /* shrank meanwhile */
					break;
				}
				l.v[i].value = l.vals + offs[i];
			}
		}
		free(offs);
		if (again) {
			hx_free(&l);
			continue;
		}
		l.n = count;
		qsort(l.v, l.n, sizeof *l.v, attr_cmp);
		*ret = l;
		return 0;
	}
fail:
	hx_free(&l);
	return r;
}

int hx_read(int fd, int dirfd, const char *name, hx_list *ret)
{
	xsrc x = {.fd = fd};
	if (fd < 0) {
		int n = snprintf(x.path, sizeof x.path, "/proc/self/fd/%d/%s", dirfd, name);
		if (n < 0 || (size_t)n >= sizeof x.path)
			return -ENAMETOOLONG;
	}
	return hx_read_cb(src_list, src_get, &x, ret);
}
