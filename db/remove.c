/* Removing things: rm of a layer or ref, release of a ref, prune, and du (which walks what
 * prune would weigh).
 *
 * Removal order: under the namespace lock, one transaction drops the record (refusing a
 * needed layer or a mounted ref), then the directory is renamed into tmp/; the slow delete
 * runs after the lock is released.  The directory is marked pending "rm" first, so a crash
 * after the transaction leaves a marked directory without a record, after the rename a
 * temporary directory of a dead process: fsck removes both (and never an unmarked one). */
#include <fcntl.h>
#include <string.h>

#include "db-int.h"
#include "layerfs/tree.h"

typedef struct rm_ctx {
	const char *id;
	uint64_t size;
	char why[160]; /* what keeps a layer, or where a ref is mounted */
} rm_ctx;

static int first_use(void *ctx, char kind, const char *name)
{
	rm_ctx *c = ctx;
	const char *what = kind == USE_LAYER ? "child layer" : kind == USE_REF ? "ref" : "tag";
	snprintf(c->why, sizeof c->why, "%s %s", what, name);
	return 1;
}

static int layer_rm_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	rm_ctx *c = ctx;
	layer_rec rec;
	int r = layer_load(s, txn, c->id, &rec);
	if (r)
		return r;
	c->size = rec.size;
	r = use_each(s, txn, c->id, first_use, c);
	if (r > 0)
		r = -EBUSY;
	if (r == 0)
		r = rec_del(s->layers, txn, c->id, strlen(c->id));
	if (r == 0 && *rec.parent)
		r = use_del(s, txn, rec.parent, USE_LAYER, c->id);
	layer_rec_clear(&rec);
	return r;
}

/* Under the namespace lock: marks SUB/NAME pending "rm", drops the record with FN, and moves
 * the directory into tmp/ (RET_TMP).  A crash after the transaction leaves the marked
 * directory, which fsck then removes as rm would have. */
static int rm_locked(lyr_store *s, const char *sub, const char *name, txn_fn fn, rm_ctx *c,
		     char *ret_tmp, size_t len)
{
	char dir[128];
	snprintf(dir, sizeof dir, "%s/%s", sub, name);
	int r = note_put(s, dir, NOTE_PENDING, "rm");
	if (r == -ENOENT)
		r = 0; /* no directory: the record alone goes */
	if (r >= 0)
		r = txn_run(s, fn, c);
	if (r < 0) {
		note_del(s, dir, NOTE_PENDING);
		return r;
	}
	lyr_fault("rm-after-txn");
	return dir_stash(s, sub, name, "rm", ret_tmp, len);
}

int layer_remove(lyr_store *s, const char *id, uint64_t *ret_size)
{
	rm_ctx c = {.id = id};
	char tmp[128] = "";
	int r = ns_lock(s);
	if (r < 0)
		return r;
	r = rm_locked(s, "layers", layer_hex(id), layer_rm_txn, &c, tmp, sizeof tmp);
	ns_unlock(s);
	if (r == -EBUSY)
		db_seterr("rm '%s': layer is needed by %s", id, c.why);
	else if (r == -ENOENT)
		db_seterr("rm '%s': no such layer", id);
	if (r < 0)
		return r;
	lyr_fault("rm-after-rename");
	tmp_remove(s, tmp);
	if (ret_size)
		*ret_size = c.size;
	return 0;
}

static int ref_rm_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	rm_ctx *c = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, c->id, &rec);
	if (r)
		return r;
	if (rec.mount_owner.pid && mount_alive(&rec.mount_owner, rec.mountpoint)) {
		snprintf(c->why, sizeof c->why, "ref is mounted at '%s'", rec.mountpoint);
		r = -EBUSY;
	} else if (rec.state == REF_COMMITTING && owner_alive(&rec.owner)) {
		snprintf(c->why, sizeof c->why, "ref is being committed");
		r = -EBUSY;
	}
	if (r == 0)
		r = rec_del(s->refs, txn, c->id, strlen(c->id));
	if (r == 0 && *rec.parent)
		r = use_del(s, txn, rec.parent, USE_REF, c->id);
	ref_rec_clear(&rec);
	return r;
}

int ref_remove(lyr_store *s, const char *id, uint64_t *ret_size)
{
	rm_ctx c = {.id = id};
	char tmp[128] = "";
	int r = ref_settle(s, id);
	if (r < 0) {
		if (r == -ENOENT)
			db_seterr("ref '%s': no such ref (an interrupted commit of it completed)", id);
		return r;
	}
	if (ret_size) {
		uint64_t entries;
		r = lyr_ref_usage(s, id, &c.size, &entries);
		if (r < 0 && r != -ENOENT)
			c.size = 0; /* the upper is gone: the ref can still be dropped */
	}
	r = ns_lock(s);
	if (r < 0)
		return r;
	r = rm_locked(s, "refs", id, ref_rm_txn, &c, tmp, sizeof tmp);
	ns_unlock(s);
	if (r == -EBUSY)
		db_seterr("rm '%s': %s", id, c.why);
	else if (r == -ENOENT)
		db_seterr("rm '%s': no such ref", id);
	if (r < 0)
		return r;
	lyr_fault("rm-after-rename");
	tmp_remove(s, tmp);
	if (ret_size)
		*ret_size = c.size;
	return 0;
}

static bool is_ref_id(const char *id)
{
	return strlen(id) == LYR_REF_ID_LEN - 1 &&
	       strspn(id, "0123456789abcdef") == LYR_REF_ID_LEN - 1;
}

static bool is_layer_id(const char *id)
{
	size_t p = strlen(LYR_DIGEST_PREFIX);
	return strncmp(id, LYR_DIGEST_PREFIX, p) == 0 && is_ref_id(id + p);
}

int lyr_store_rm(lyr_store *s, const char *id)
{
	if (is_layer_id(id))
		return layer_remove(s, id, NULL);
	if (is_ref_id(id))
		return ref_remove(s, id, NULL);
	db_seterr("rm '%s': not a full layer or ref ID", id);
	return -EINVAL;
}

int lyr_ref_release(lyr_store *s, const char *ref_id)
{
	if (!is_ref_id(ref_id)) {
		db_seterr("release '%s': not a ref ID", ref_id);
		return -EINVAL;
	}
	return ref_remove(s, ref_id, NULL);
}

typedef struct ids {
	char (*v)[LYR_ID_MAX];
	size_t n;
} ids;

static int ids_add(ids *l, const char *id)
{
	char(*nv)[LYR_ID_MAX] = realloc(l->v, (l->n + 1) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	snprintf(l->v[l->n++], LYR_ID_MAX, "%s", id);
	return 0;
}

typedef struct prune_ctx {
	int64_t cutoff;
	ids pick;
} prune_ctx;

static int pick_ref(void *ctx, const lyr_ref_info *info)
{
	prune_ctx *p = ctx;
	if (info->mountpoint || info->created > p->cutoff)
		return 0;
	return ids_add(&p->pick, info->id);
}

static int pick_layer(void *ctx, const lyr_layer_info *info)
{
	prune_ctx *p = ctx;
	if (info->children || info->refs || (info->tags && info->tags[0]) ||
	    info->created > p->cutoff)
		return 0;
	return ids_add(&p->pick, info->id);
}

int lyr_store_prune(lyr_store *s, bool all, int64_t keep_seconds,
		    void (*fn)(void *ctx, lyr_obj_kind kind, const char *id, uint64_t size), void *ctx)
{
	prune_ctx p = {.cutoff = now_seconds() - (keep_seconds > 0 ? keep_seconds : 0)};
	/* A database that forgot records may have forgotten tags too: pruning by it would
	 * remove what the tags kept. */
	int r = lyr_store_check_records(s);
	if (r < 0)
		return r;
	if (all) {
		r = lyr_ref_list(s, pick_ref, &p);
		for (size_t i = 0; r >= 0 && i < p.pick.n; i++) {
			uint64_t size = 0;
			int e = ref_remove(s, p.pick.v[i], &size);
			if (e == 0 && fn)
				fn(ctx, LYR_OBJ_REF, p.pick.v[i], size);
			else if (e < 0 && e != -EBUSY && e != -ENOENT)
				r = e; /* mounted or committed meanwhile: skipped */
		}
		p.pick.n = 0;
	}
	/* Removing a layer can free its parent: repeat until a round removes nothing. */
	for (bool again = true; r >= 0 && again;) {
		again = false;
		p.pick.n = 0;
		r = lyr_layer_list(s, pick_layer, &p);
		for (size_t i = 0; r >= 0 && i < p.pick.n; i++) {
			uint64_t size = 0;
			int e = layer_remove(s, p.pick.v[i], &size);
			if (e == 0) {
				again = true;
				if (fn)
					fn(ctx, LYR_OBJ_LAYER, p.pick.v[i], size);
			} else if (e != -EBUSY && e != -ENOENT) {
				r = e;
			}
		}
	}
	free(p.pick.v);
	return r < 0 ? r : 0;
}

typedef struct du_ctx {
	lyr_store *s;
	int (*ref_fn)(void *ctx, const lyr_ref_info *);
	void *ctx;
} du_ctx;

static int du_ref(void *ctx, const lyr_ref_info *info)
{
	du_ctx *d = ctx;
	lyr_ref_info copy = *info;
	uint64_t entries;
	char path[128];
	snprintf(path, sizeof path, "refs/%s/upper", info->id);
	_cleanup_close_ int fd = openat(d->s->rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	copy.size = 0;
	if (fd >= 0) {
		int r = lyr_tree_usage(fd, &copy.size, &entries);
		if (r < 0 && r != -ENOENT)
			return r;
	}
	return d->ref_fn(d->ctx, &copy);
}

int lyr_store_du(lyr_store *s, int (*layer_fn)(void *ctx, const lyr_layer_info *),
		 int (*ref_fn)(void *ctx, const lyr_ref_info *), void *ctx)
{
	int r = layer_fn ? lyr_layer_list(s, layer_fn, ctx) : 0;
	if (r < 0 || !ref_fn)
		return r;
	du_ctx d = {s, ref_fn, ctx};
	return lyr_ref_list(s, du_ref, &d);
}
