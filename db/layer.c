/* Layers: their records, queries (get, list, chain) and import.
 *
 * A layer is the record in layers.db keyed by its ID text and the directory
 * layers/<hex>/diff.  Import copies the source into tmp/ (outside any lock), hashes the copy,
 * then under the namespace lock renames it into layers/ and records it in one transaction;
 * a crash leaves either a temporary directory of a dead process or a layer directory marked
 * pending "import" without a record, and fsck removes both (adopt.c). */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"
#include "layerfs/tree.h"

int layer_load(lyr_store *s, DB_TXN *txn, const char *id, layer_rec *ret)
{
	_cleanup_free_ void *v = NULL;
	size_t len;
	int r = rec_get(s->layers, txn, id, strlen(id), &v, &len);
	if (r)
		return r;
	return layer_rec_decode(v, len, ret);
}

int layer_store(lyr_store *s, DB_TXN *txn, const char *id, const layer_rec *l)
{
	_cleanup_free_ void *v = NULL;
	size_t len;
	int r = layer_rec_encode(l, &v, &len);
	if (r)
		return r;
	return rec_put(s->layers, txn, id, strlen(id), v, len, 0);
}

void lyr_layer_info_clear(lyr_layer_info *info)
{
	free(info->desc);
	lyr_strv_free(info->tags);
	memset(info, 0, sizeof *info);
}

typedef struct info_ctx {
	lyr_layer_info *info;
	size_t ntags;
	int err;
} info_ctx;

static int count_use(void *ctx, char kind, const char *name)
{
	info_ctx *c = ctx;
	if (kind == USE_LAYER)
		c->info->children++;
	else if (kind == USE_REF)
		c->info->refs++;
	else if (kind == USE_TAG) {
		char **nt = realloc(c->info->tags, (c->ntags + 2) * sizeof *nt);
		if (!nt)
			return -ENOMEM;
		c->info->tags = nt;
		if (!(nt[c->ntags] = strdup(name)))
			return -ENOMEM;
		nt[++c->ntags] = NULL;
	}
	return 0;
}

/* Fills INFO for the layer ID from REC plus its uses. */
static int layer_info_fill(lyr_store *s, DB_TXN *txn, const char *id, const layer_rec *rec,
			   lyr_layer_info *info)
{
	memset(info, 0, sizeof *info);
	snprintf(info->id, sizeof info->id, "%s", id);
	snprintf(info->parent, sizeof info->parent, "%s", rec->parent);
	snprintf(info->diff_digest, sizeof info->diff_digest, "%s", rec->digest);
	info->size = rec->size;
	info->entries = rec->entries;
	info->created = rec->created;
	info->desc = strdup(rec->desc);
	info->tags = calloc(1, sizeof *info->tags);
	if (!info->desc || !info->tags) {
		lyr_layer_info_clear(info);
		return -ENOMEM;
	}
	info_ctx c = {info, 0, 0};
	int r = use_each(s, txn, id, count_use, &c);
	if (r < 0) {
		lyr_layer_info_clear(info);
		return r;
	}
	return 0;
}

typedef struct get_ctx {
	const char *id;
	lyr_layer_info info;
} get_ctx;

static int layer_get_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	get_ctx *g = ctx;
	layer_rec rec;
	int r = layer_load(s, txn, g->id, &rec);
	if (r)
		return r;
	r = layer_info_fill(s, txn, g->id, &rec, &g->info);
	layer_rec_clear(&rec);
	return r;
}

int lyr_layer_get(lyr_store *s, const char *id, lyr_layer_info *ret)
{
	get_ctx g = {.id = id};
	int r = txn_run(s, layer_get_txn, &g);
	if (r < 0) {
		if (r == -ENOENT)
			db_seterr("layer '%s': no such layer", id);
		return r;
	}
	*ret = g.info;
	return 0;
}

typedef struct list_ctx {
	lyr_layer_info *v;
	size_t n;
} list_ctx;

static void list_reset(list_ctx *l)
{
	for (size_t i = 0; i < l->n; i++)
		lyr_layer_info_clear(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

typedef struct layer_list_ctx {
	lyr_store *s;
	DB_TXN *txn;
	list_ctx *l;
} layer_list_ctx;

static int list_one_layer(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	layer_list_ctx *c = ctx;
	list_ctx *l = c->l;
	_cleanup_free_ char *id = strndup(key, klen);
	if (!id)
		return -ENOMEM;
	layer_rec rec;
	int r = layer_rec_decode(val, vlen, &rec);
	if (r)
		return r;
	lyr_layer_info *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
	if (!nv) {
		layer_rec_clear(&rec);
		return -ENOMEM;
	}
	l->v = nv;
	r = layer_info_fill(c->s, c->txn, id, &rec, &l->v[l->n]);
	layer_rec_clear(&rec);
	if (r)
		return r;
	l->n++;
	return 0;
}

static int layer_list_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	list_ctx *l = ctx;
	list_reset(l); /* a retried transaction starts over */
	layer_list_ctx c = {s, txn, l};
	return rec_each(s->layers, txn, list_one_layer, &c);
}

/* Collects every layer in one transaction, then calls FN outside it, so a retried
 * transaction never shows the caller a layer twice. */
int lyr_layer_list(lyr_store *s, int (*fn)(void *ctx, const lyr_layer_info *), void *ctx)
{
	list_ctx l = {0};
	int r = txn_run(s, layer_list_txn, &l);
	for (size_t i = 0; r >= 0 && i < l.n; i++)
		r = fn(ctx, &l.v[i]);
	list_reset(&l);
	return r < 0 ? r : 0;
}

typedef struct chain_ctx {
	const char *id;
	char **ids;
	size_t n;
} chain_ctx;

static int chain_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	chain_ctx *c = ctx;
	lyr_strv_free(c->ids);
	c->ids = NULL;
	c->n = 0;
	_cleanup_free_ char *cur = strdup(c->id);
	if (!cur)
		return -ENOMEM;
	while (*cur) {
		layer_rec rec;
		int r = layer_load(s, txn, cur, &rec);
		if (r)
			return r == -ENOENT && c->n ? -EUCLEAN : r; /* a parent without record */
		char **nv = realloc(c->ids, (c->n + 2) * sizeof *nv);
		if (!nv) {
			layer_rec_clear(&rec);
			return -ENOMEM;
		}
		c->ids = nv;
		c->ids[c->n++] = LYR_TAKE_PTR(cur);
		c->ids[c->n] = NULL;
		cur = LYR_TAKE_PTR(rec.parent);
		layer_rec_clear(&rec);
		if (c->n > 100000)
			return -ELOOP;
	}
	return 0;
}

int lyr_layer_chain(lyr_store *s, const char *layer_id, char ***ret_dirs)
{
	chain_ctx c = {layer_id, NULL, 0};
	int r = txn_run(s, chain_txn, &c);
	if (r < 0) {
		if (r == -ENOENT)
			db_seterr("layer '%s': no such layer", layer_id);
		else if (r == -EUCLEAN)
			db_seterr("layer '%s': an ancestor has no record (run fsck)", layer_id);
		lyr_strv_free(c.ids);
		return r;
	}
	for (size_t i = 0; i < c.n; i++) {
		char *p;
		if (asprintf(&p, "%s/layers/%s/diff", s->root, layer_hex(c.ids[i])) < 0) {
			lyr_strv_free(c.ids);
			return -ENOMEM;
		}
		free(c.ids[i]);
		c.ids[i] = p;
	}
	*ret_dirs = c.ids;
	return 0;
}

/* The record and directory of a new layer, written by import and commit. */
typedef struct add_ctx {
	const char *id;
	const layer_rec *rec; /* rec->parent: "" for a base layer */
	const char *tag;
	bool existed;
} add_ctx;

static int tag_point(lyr_store *s, DB_TXN *txn, const char *name, const char *layer)
{
	_cleanup_free_ void *v = NULL;
	size_t len;
	int r = rec_get(s->tags, txn, name, strlen(name), &v, &len);
	if (r == 0) {
		_cleanup_free_ char *old = NULL;
		r = tag_rec_decode(v, len, &old);
		if (r == 0)
			r = use_del(s, txn, old, USE_TAG, name);
	} else if (r == -ENOENT) {
		r = 0;
	}
	if (r)
		return r;
	_cleanup_free_ void *nv = NULL;
	r = tag_rec_encode(layer, &nv, &len);
	if (r == 0)
		r = rec_put(s->tags, txn, name, strlen(name), nv, len, 0);
	if (r == 0)
		r = use_put(s, txn, layer, USE_TAG, name);
	return r;
}

/* Points tag NAME at LAYER inside TXN (moving it when it exists); db/tag.c uses it too. */
int tag_point_txn(lyr_store *s, DB_TXN *txn, const char *name, const char *layer)
{
	return tag_point(s, txn, name, layer);
}

static int import_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	add_ctx *a = ctx;
	int r;
	a->existed = rec_exists(s->layers, txn, a->id, strlen(a->id), &r);
	if (r)
		return r;
	if (!a->existed) {
		const char *parent = a->rec->parent;
		if (*parent && !rec_exists(s->layers, txn, parent, strlen(parent), &r))
			return r ? r : -ENOLINK; /* the parent was removed meanwhile */
		r = layer_store(s, txn, a->id, a->rec);
		if (r == 0 && *parent)
			r = use_put(s, txn, parent, USE_LAYER, a->id);
		if (r)
			return r;
	}
	return a->tag ? tag_point(s, txn, a->tag, a->id) : 0;
}

static int exists_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	add_ctx *a = ctx;
	int r;
	a->existed = rec_exists(s->layers, txn, a->id, strlen(a->id), &r);
	return r;
}

static int layer_exists(lyr_store *s, const char *id, bool *ret)
{
	add_ctx a = {id, NULL, NULL, false};
	int r = txn_run(s, exists_txn, &a);
	*ret = a.existed;
	return r;
}

/* Makes the filled, hashed directory tmp/TMP (open at TMPFD; FILES lists the entries of its
 * diff/, with their apparent size) the layer lyr_layer_id(PARENT, DIGEST): its file list and notes are
 * written beside the diff, then under the namespace lock it is renamed into layers/ and recorded
 * with TAG in one transaction, or, when that layer exists, only TAG is pointed (a layer marked
 * as failing verification gets this copy back) and the copy is removed.  -ENOLINK when PARENT
 * has no record.  On failure tmp/TMP is left for the caller. */
int layer_adopt(lyr_store *s, int tmpfd, const char *tmp, const char *parent,
		const char *digest, const lyr_diff_list *files, const char *desc, const char *tag,
		char *ret_id)
{
	char id[LYR_DIGEST_TEXT_LEN], path[160];
	snprintf(path, sizeof path, "%s/%s", tmp, FILELIST_NAME);
	int r = filelist_write(tmpfd, path, files);
	if (r < 0)
		return r;
	lyr_fault("import-after-copy");
	lyr_layer_id(parent, digest, id);
	layer_rec rec = {.created = now_seconds(), .parent = (char *)parent, .digest = (char *)digest,
			 .desc = (char *)(desc ? desc : "")};
	/* The hashing pass listed every entry (and the root) and summed the sizes: no other walk. */
	rec.size = files->bytes;
	rec.entries = files->n ? files->n - 1 : 0;
	char tmprel[160];
	snprintf(tmprel, sizeof tmprel, "tmp/%s", tmp);
	r = note_put(s, tmprel, NOTE_PARENT, parent);
	if (r >= 0)
		r = note_put(s, tmprel, NOTE_PENDING, "import");
	if (r < 0)
		return r;
	r = ns_lock(s);
	if (r < 0)
		return r;
	bool existed;
	r = layer_exists(s, id, &existed);
	char to[160];
	snprintf(to, sizeof to, "layers/%s", layer_hex(id));
	if (r >= 0 && !existed) {
		/* A directory without a record is debris of a crash: replace it. */
		r = lyr_tree_remove(s->rootfd, to);
		if (r >= 0 && renameat(tmpfd, tmp, s->rootfd, to) < 0)
			r = -errno;
		if (r >= 0) {
			lyr_fault("import-after-rename");
			add_ctx a = {id, &rec, tag, false};
			r = txn_run(s, import_txn, &a);
			if (r < 0) /* put the directory back where nothing refers to it */
				renameat(s->rootfd, to, tmpfd, tmp);
			else
				note_del(s, to, NOTE_PENDING);
		}
	} else if (r >= 0) {
		/* importing the tree again puts back a layer that failed verification */
		r = layer_restore(s, id, tmpfd, tmp, to);
		if (r > 0)
			note_del(s, to, NOTE_PENDING);
		add_ctx a = {id, &rec, tag, false};
		if (r >= 0 && tag)
			r = txn_run(s, import_txn, &a);
	}
	ns_unlock(s);
	if (r == -ENOLINK)
		db_seterr("parent layer '%s': no such layer (removed meanwhile?)", parent);
	if (r < 0)
		return r;
	lyr_tree_remove(tmpfd, tmp); /* the copy of an existing layer; ENOENT when renamed */
	snprintf(ret_id, LYR_ID_MAX, "%s", id);
	return 0;
}

int lyr_store_import(lyr_store *s, const char *src_dir, const char *desc, const char *tag,
		     const lyr_progress *progress, lyr_tree_error *err, char *ret_id)
{
	char tmp[128], tmpdiff[160], digest[LYR_DIGEST_TEXT_LEN];
	int r;

	if (tag && lyr_tag_valid(tag) < 0) {
		db_seterr("tag '%s': invalid name", tag);
		return -EINVAL;
	}
	_cleanup_close_ int src = open(src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src < 0) {
		r = -errno;
		if (err)
			err->path[0] = '\0', err->err = -r;
		db_seterr("import '%s': %s", src_dir, strerror(-r));
		return r;
	}
	tmp_name(s, "import", tmp, sizeof tmp);
	_cleanup_close_ int tmpfd = openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tmpfd < 0)
		return -errno;
	if (mkdirat(tmpfd, tmp, 0755) < 0)
		return -errno;
	snprintf(tmpdiff, sizeof tmpdiff, "%s/diff", tmp);
	_cleanup_close_ int dst = -1;
	if (mkdirat(tmpfd, tmpdiff, 0755) < 0 ||
	    (dst = openat(tmpfd, tmpdiff, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = -errno;
		goto fail;
	}
	/* Copy and hash in one pass: each file is hashed from the copy right after it is written. */
	lyr_diff_list files = {0};
	r = lyr_hash_import_list(src, dst, progress, err, digest, &files);
	if (r < 0) {
		db_seterr("import '%s': copying '%s': %s", src_dir, err ? err->path : "",
			  err && err->why[0] ? err->why : strerror(-r));
		goto fail;
	}
	r = layer_adopt(s, tmpfd, tmp, "", digest, &files, desc, tag, ret_id);
	lyr_diff_list_clear(&files);
	if (r >= 0)
		return 0;
fail:
	lyr_tree_remove(tmpfd, tmp);
	return r;
}
