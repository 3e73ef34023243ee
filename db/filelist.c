/* A layer's file list, layers/<hex>/filelist: what each entry of the diff looked like when the
 * layer was committed or imported (hash.h's lyr_diff_list), so that `fsck --verify` can name the
 * entry that changed when a layer's content no longer gives its ID.  It is written beside the
 * diff directory from the listing the commit's own hashing pass made (no second read), and it
 * is only ever used to name entries: the layer ID stays the authority on whether a layer is
 * intact.  A layer without one (written before file lists existed) can still be verified.
 *
 * Format (docs/store-format.md): the line "layerfs-filelist 1\n", then per entry, sorted by
 * path, L(path) L(header) L(content digest: 32 raw bytes, or nothing) with L(b) = decimal
 * length + ":" + bytes, as in docs/diff-digest.md.  Sizes: a hundred bytes or so per entry. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"

#define FILELIST_MAGIC "layerfs-filelist 1\n"

static void put_field(FILE *f, const void *data, size_t len)
{
	fprintf(f, "%zu:", len);
	fwrite(data, 1, len, f);
}

int filelist_write(int dirfd, const char *name, const lyr_diff_list *l)
{
	int fd = openat(dirfd, name,
			O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int r = -errno;
		close(fd);
		unlinkat(dirfd, name, 0);
		return r;
	}
	fputs(FILELIST_MAGIC, f);
	for (size_t i = 0; i < l->n; i++) {
		const lyr_diff_entry *e = &l->v[i];
		put_field(f, e->path, strlen(e->path));
		put_field(f, e->header, e->header_len);
		put_field(f, e->data, e->has_data ? LYR_SHA256_LEN : 0);
	}
	int r = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r < 0)
		unlinkat(dirfd, name, 0);
	return r;
}

int filelist_field(const char *buf, size_t len, size_t *pos, const char **ret, size_t *ret_len)
{
	size_t n = 0, p = *pos;
	if (p >= len || buf[p] < '0' || buf[p] > '9')
		return -EBADMSG;
	while (p < len && buf[p] >= '0' && buf[p] <= '9' && n < ((size_t)1 << 32))
		n = n * 10 + (size_t)(buf[p++] - '0');
	if (p >= len || buf[p] != ':' || len - p - 1 < n)
		return -EBADMSG;
	*ret = buf + p + 1;
	*ret_len = n;
	*pos = p + 1 + n;
	return 0;
}

static int parse(const char *buf, size_t len, lyr_diff_list *l)
{
	size_t pos = strlen(FILELIST_MAGIC), cap = 0;
	if (len < pos || memcmp(buf, FILELIST_MAGIC, pos) != 0)
		return -EBADMSG;
	while (pos < len) {
		const char *path, *hdr, *data;
		size_t plen, hlen, dlen;
		int r = filelist_field(buf, len, &pos, &path, &plen);
		if (r == 0)
			r = filelist_field(buf, len, &pos, &hdr, &hlen);
		if (r == 0)
			r = filelist_field(buf, len, &pos, &data, &dlen);
		if (r == 0 && ((dlen != 0 && dlen != LYR_SHA256_LEN) || memchr(path, 0, plen)))
			r = -EBADMSG;
		if (r < 0)
			return r;
		if (l->n == cap) {
			cap = cap ? cap * 2 : 64;
			lyr_diff_entry *nv = realloc(l->v, cap * sizeof *nv);
			if (!nv)
				return -ENOMEM;
			l->v = nv;
		}
		lyr_diff_entry *e = &l->v[l->n];
		memset(e, 0, sizeof *e);
		e->path = strndup(path, plen);
		e->header = malloc(hlen ? hlen : 1);
		if (!e->path || !e->header) {
			free(e->path);
			free(e->header);
			return -ENOMEM;
		}
		l->n++;
		memcpy(e->header, hdr, hlen);
		e->header_len = hlen;
		e->has_data = dlen != 0;
		memcpy(e->data, data, dlen);
		if (l->n > 1 && strcmp(l->v[l->n - 2].path, e->path) >= 0)
			return -EBADMSG; /* sorted and unique, or it was not written by us */
	}
	return 0;
}

int filelist_read(int dirfd, const char *name, lyr_diff_list *ret)
{
	_cleanup_close_ int fd =
	    openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	lyr_diff_list l = {0};
	int r = parse(buf, got, &l);
	if (r < 0) {
		lyr_diff_list_clear(&l);
		return r;
	}
	*ret = l;
	return 0;
}
