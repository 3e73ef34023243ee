/* What the OCI world knows about a layer, kept beside its diff: the config of the image whose
 * top layer it was (layers/<hex>/image-config.json, compact JSON) and the diff_id of the layer
 * tar it was loaded from (layers/<hex>/diff-id, "sha256:<hex>"), by which a later load or pull
 * finds it without reading the blob again.  Metadata about how the layer was delivered, not
 * content: not hashed; a later load replaces it (the last one wins).  Writes are a rename of a
 * complete temporary file under the namespace lock, so readers see the old or the new text and
 * a layer being removed is never written into. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db-int.h"

#define CONFIG_NAME "image-config.json"
#define DIFF_ID_NAME "diff-id"
#define META_MAX (4 << 20)

static int meta_set(lyr_store *s, const char *id, const char *name, const char *json, size_t len)
{
	char dir[160], tmp[200], to[200];
	snprintf(dir, sizeof dir, "layers/%s", layer_hex(id));
	snprintf(tmp, sizeof tmp, "%s/.%s.%d", dir, name, (int)getpid());
	snprintf(to, sizeof to, "%s/%s", dir, name);
	int r = ns_lock(s);
	if (r < 0)
		return r;
	lyr_layer_info info;
	r = lyr_layer_get(s, id, &info);
	if (r == 0) {
		lyr_layer_info_clear(&info);
		int fd = openat(s->rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			r = -errno;
		else {
			if (write(fd, json, len) != (ssize_t)len)
				r = -EIO;
			if (close(fd) < 0 && r == 0)
				r = -errno;
			if (r == 0 && renameat(s->rootfd, tmp, s->rootfd, to) < 0)
				r = -errno;
			if (r < 0)
				unlinkat(s->rootfd, tmp, 0);
		}
		if (r < 0)
			db_seterr("layer '%s': writing %s: %s", id, name, strerror(-r));
	}
	ns_unlock(s);
	return r;
}

static int meta_get(lyr_store *s, const char *id, const char *name, char **ret)
{
	char path[200];
	snprintf(path, sizeof path, "layers/%s/%s", layer_hex(id), name);
	int fd = openat(s->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : st.st_size > META_MAX ? -EFBIG : 0;
	char *buf = r == 0 ? malloc((size_t)st.st_size + 1) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	if (r == 0 && read(fd, buf, (size_t)st.st_size) != st.st_size)
		r = -EIO;
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[st.st_size] = '\0';
	*ret = buf;
	return 0;
}

int lyr_layer_config_set(lyr_store *s, const char *id, const char *json, size_t len)
{
	return meta_set(s, id, CONFIG_NAME, json, len);
}

int lyr_layer_config_get(lyr_store *s, const char *id, char **ret)
{
	return meta_get(s, id, CONFIG_NAME, ret);
}

int lyr_layer_diff_id_set(lyr_store *s, const char *id, const char *diff_id)
{
	return meta_set(s, id, DIFF_ID_NAME, diff_id, strlen(diff_id));
}

typedef struct children {
	char **ids;
	size_t n;
} children;

static int add_child(void *ctx, char kind, const char *name)
{
	children *c = ctx;
	if (kind != USE_LAYER)
		return 0;
	char **nv = realloc(c->ids, (c->n + 1) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	c->ids = nv;
	return (c->ids[c->n] = strdup(name)) ? (c->n++, 0) : -ENOMEM;
}

static void children_clear(children *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->ids[i]);
	free(c->ids);
	c->ids = NULL;
	c->n = 0;
}

typedef struct child_ctx {
	const char *parent;
	children c;
} child_ctx;

static int children_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	child_ctx *cc = ctx;
	children_clear(&cc->c); /* a retried transaction starts over */
	int r = use_each(s, txn, cc->parent, add_child, &cc->c);
	return r < 0 ? r : 0;
}

static int add_base(void *ctx, const lyr_layer_info *info)
{
	return info->parent[0] ? 0 : add_child(ctx, USE_LAYER, info->id);
}

int lyr_layer_find_diff_id(lyr_store *s, const char *parent_id, const char *diff_id, char *ret_id)
{
	child_ctx cc = {parent_id ? parent_id : "", {NULL, 0}};
	int r = parent_id && *parent_id ? txn_run(s, children_txn, &cc)
					: lyr_layer_list(s, add_base, &cc.c);
	if (r >= 0)
		r = -ENOENT;
	for (size_t i = 0; r == -ENOENT && i < cc.c.n; i++) {
		char *text;
		if (meta_get(s, cc.c.ids[i], DIFF_ID_NAME, &text) == 0) {
			if (strcmp(text, diff_id) == 0) {
				snprintf(ret_id, LYR_ID_MAX, "%s", cc.c.ids[i]);
				r = 0;
			}
			free(text);
		}
	}
	children_clear(&cc.c);
	return r;
}

int lyr_layer_meta_set(lyr_store *s, const char *id, const char *name, const char *data, size_t len)
{
	return meta_set(s, id, name, data, len);
}

int lyr_layer_meta_get(lyr_store *s, const char *id, const char *name, char **ret)
{
	return meta_get(s, id, name, ret);
}
