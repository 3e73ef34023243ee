/* Mutable refs: records, creation, queries, and mount records.
 *
 * A ref is the record in refs.db keyed by its 64-hex ID and the directory refs/<id> holding
 * upper/ and work/.  Creation builds the directory in tmp/, renames it into refs/ and records
 * it under the namespace lock, so a crash leaves at worst a directory without a record.  A
 * mount record names the serving process (pid and start time); a record whose process is
 * gone is stale and is cleared by the next reader. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"
#include "layerfs/tree.h"

int ref_load(lyr_store *s, DB_TXN *txn, const char *id, ref_rec *ret)
{
	_cleanup_free_ void *v = NULL;
	size_t len;
	int r = rec_get(s->refs, txn, id, strlen(id), &v, &len);
	if (r)
		return r;
	return ref_rec_decode(v, len, ret);
}

int ref_store(lyr_store *s, DB_TXN *txn, const char *id, const ref_rec *f)
{
	_cleanup_free_ void *v = NULL;
	size_t len;
	int r = ref_rec_encode(f, &v, &len);
	if (r)
		return r;
	return rec_put(s->refs, txn, id, strlen(id), v, len, 0);
}

static bool valid_ref_id(const char *id)
{
	if (strlen(id) != LYR_REF_ID_LEN - 1)
		return false;
	return strspn(id, "0123456789abcdef") == LYR_REF_ID_LEN - 1;
}

void lyr_ref_info_clear(lyr_ref_info *info)
{
	free(info->desc);
	free(info->mountpoint);
	memset(info, 0, sizeof *info);
}

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif

bool mount_alive(const lyr_owner *owner, const char *mountpoint)
{
	if (owner->pid != MOUNT_KERNEL)
		return owner_alive(owner);
	/* no process to ask: the mount itself, while it is the one recorded at its mountpoint.
	 * Seen from another mount namespace than the one it was made in, it looks gone. */
	struct statx stx;
	if (!mountpoint || statx(AT_FDCWD, mountpoint, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
				 STATX_MNT_ID_UNIQUE, &stx) < 0)
		return false;
	return (stx.stx_mask & (STATX_MNT_ID_UNIQUE | STATX_MNT_ID)) &&
	       stx.stx_mnt_id == owner->start;
}

/* Drops a mount record whose process (or kernel mount) is gone; true when REC changed. */
static bool drop_stale_mount(ref_rec *rec)
{
	if (rec->mount_owner.pid == 0 || mount_alive(&rec->mount_owner, rec->mountpoint))
		return false;
	rec->mount_owner = (lyr_owner){0, 0};
	free(rec->mountpoint);
	rec->mountpoint = NULL;
	return true;
}

static int ref_info_fill(const char *id, const ref_rec *rec, lyr_ref_info *info)
{
	memset(info, 0, sizeof *info);
	snprintf(info->id, sizeof info->id, "%s", id);
	snprintf(info->parent, sizeof info->parent, "%s", rec->parent);
	info->created = rec->created;
	info->desc = strdup(rec->desc);
	if (!info->desc)
		return -ENOMEM;
	if (rec->mount_owner.pid) {
		info->mount_kernel = rec->mount_owner.pid == MOUNT_KERNEL;
		info->mount_pid = info->mount_kernel ? 0 : rec->mount_owner.pid;
		info->mountpoint = strdup(rec->mountpoint);
		if (!info->mountpoint) {
			lyr_ref_info_clear(info);
			return -ENOMEM;
		}
	}
	return 0;
}

typedef struct get_ctx {
	const char *id;
	lyr_ref_info info;
} get_ctx;

static int ref_get_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	get_ctx *g = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, g->id, &rec);
	if (r)
		return r;
	if (drop_stale_mount(&rec))
		r = ref_store(s, txn, g->id, &rec);
	if (r == 0)
		r = ref_info_fill(g->id, &rec, &g->info);
	ref_rec_clear(&rec);
	return r;
}

int lyr_ref_get(lyr_store *s, const char *id, lyr_ref_info *ret)
{
	if (!valid_ref_id(id)) {
		db_seterr("ref '%s': not a ref ID", id);
		return -EINVAL;
	}
	get_ctx g = {.id = id};
	int r = txn_run(s, ref_get_txn, &g);
	if (r < 0) {
		if (r == -ENOENT)
			db_seterr("ref '%s': no such ref", id);
		return r;
	}
	*ret = g.info;
	return 0;
}

typedef struct list_ctx {
	lyr_ref_info *v;
	size_t n;
} list_ctx;

static void list_reset(list_ctx *l)
{
	for (size_t i = 0; i < l->n; i++)
		lyr_ref_info_clear(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int list_one_ref(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	list_ctx *l = ctx;
	_cleanup_free_ char *id = strndup(key, klen);
	if (!id)
		return -ENOMEM;
	ref_rec rec;
	int r = ref_rec_decode(val, vlen, &rec);
	if (r)
		return r;
	drop_stale_mount(&rec); /* reported as not mounted; cleared by the next writer */
	lyr_ref_info *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
	if (!nv) {
		ref_rec_clear(&rec);
		return -ENOMEM;
	}
	l->v = nv;
	r = ref_info_fill(id, &rec, &l->v[l->n]);
	ref_rec_clear(&rec);
	if (r)
		return r;
	l->n++;
	return 0;
}

static int ref_list_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	list_ctx *l = ctx;
	list_reset(l); /* a retried transaction starts over */
	return rec_each(s->refs, txn, list_one_ref, l);
}

int lyr_ref_list(lyr_store *s, int (*fn)(void *ctx, const lyr_ref_info *), void *ctx)
{
	list_ctx l = {0};
	int r = txn_run(s, ref_list_txn, &l);
	for (size_t i = 0; r >= 0 && i < l.n; i++)
		r = fn(ctx, &l.v[i]);
	list_reset(&l);
	return r < 0 ? r : 0;
}

typedef struct new_ctx {
	const char *id, *parent;
	const char *desc;
} new_ctx;

static int ref_new_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	new_ctx *n = ctx;
	int r = 0;
	if (n->parent && !rec_exists(s->layers, txn, n->parent, strlen(n->parent), &r))
		return r ? r : -ENOENT;
	ref_rec rec = {.created = now_seconds(), .parent = (char *)(n->parent ? n->parent : ""),
		       .desc = (char *)(n->desc ? n->desc : "")};
	_cleanup_free_ void *v = NULL;
	size_t len;
	r = ref_rec_encode(&rec, &v, &len);
	if (r == 0)
		r = rec_put(s->refs, txn, n->id, strlen(n->id), v, len, DB_NOOVERWRITE);
	if (r == 0 && n->parent)
		r = use_put(s, txn, n->parent, USE_REF, n->id);
	return r;
}

static int ref_new_id(lyr_store *s, const char *id, const char *parent_id, const char *desc)
{
	char tmp[128], path[200], to[128];
	if (parent_id && !*parent_id)
		parent_id = NULL;
	tmp_name(s, "new", tmp, sizeof tmp);
	snprintf(path, sizeof path, "tmp/%s", tmp);
	if (mkdirat(s->rootfd, path, 0755) < 0)
		return -errno;
	int r = 0;
	static const char *const subs[] = {"upper", "work"};
	for (size_t i = 0; r == 0 && i < LYR_ARRAY_SIZE(subs); i++) {
		char sub[256];
		snprintf(sub, sizeof sub, "%s/%s", path, subs[i]);
		if (mkdirat(s->rootfd, sub, i == 0 ? 0755 : 0700) < 0)
			r = -errno;
	}
	if (r == 0)
		r = note_put(s, path, NOTE_PARENT, parent_id ? parent_id : "");
	if (r == 0)
		r = note_put(s, path, NOTE_PENDING, "new");
	snprintf(to, sizeof to, "refs/%s", id);
	if (r == 0)
		r = ns_lock(s);
	if (r == 0) {
		if (renameat(s->rootfd, path, s->rootfd, to) < 0) {
			r = -errno;
		} else {
			lyr_fault("new-after-rename");
			new_ctx n = {id, parent_id, desc};
			r = txn_run(s, ref_new_txn, &n);
			if (r < 0)
				renameat(s->rootfd, to, s->rootfd, path);
			else
				note_del(s, to, NOTE_PENDING);
		}
		ns_unlock(s);
	}
	if (r < 0) {
		lyr_tree_remove(s->rootfd, path);
		if (r == -ENOENT)
			db_seterr("new ref on '%s': no such layer", parent_id);
		else if (r == -EEXIST)
			db_seterr("new ref '%s': exists", id);
		return r;
	}
	return 0;
}

int lyr_ref_new(lyr_store *s, const char *parent_id, const char *desc, char *ret_id)
{
	char id[LYR_REF_ID_LEN];
	rand_hex(id, 32);
	int r = ref_new_id(s, id, parent_id, desc);
	if (r == 0)
		memcpy(ret_id, id, LYR_REF_ID_LEN);
	return r;
}

/* For tests that need chosen ref IDs (declared in db/testing.h). */
int lyr_store_debug_ref_new(lyr_store *s, const char *id, const char *parent_id)
{
	return valid_ref_id(id) ? ref_new_id(s, id, parent_id, "") : -EINVAL;
}

static int ref_exists_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	int r;
	const char *id = ctx;
	if (!rec_exists(s->refs, txn, id, strlen(id), &r))
		return r ? r : -ENOENT;
	return 0;
}

static int ref_check(lyr_store *s, const char *id)
{
	if (!valid_ref_id(id)) {
		db_seterr("ref '%s': not a ref ID", id);
		return -EINVAL;
	}
	int r = txn_run(s, ref_exists_txn, (void *)id);
	if (r == -ENOENT)
		db_seterr("ref '%s': no such ref", id);
	return r;
}

int lyr_ref_dirs(lyr_store *s, const char *ref_id, char **ret_upper, char **ret_work)
{
	int r = ref_check(s, ref_id);
	if (r < 0)
		return r;
	char *u = NULL, *w = NULL;
	if (asprintf(&u, "%s/refs/%s/upper", s->root, ref_id) < 0)
		return -ENOMEM;
	if (asprintf(&w, "%s/refs/%s/work", s->root, ref_id) < 0) {
		free(u);
		return -ENOMEM;
	}
	*ret_upper = u;
	*ret_work = w;
	return 0;
}

int lyr_ref_usage(lyr_store *s, const char *ref_id, uint64_t *ret_bytes, uint64_t *ret_entries)
{
	int r = ref_check(s, ref_id);
	if (r < 0)
		return r;
	char path[128];
	snprintf(path, sizeof path, "refs/%s/upper", ref_id);
	_cleanup_close_ int fd = openat(s->rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		db_seterr("ref '%s': upper directory: %s", ref_id, strerror(errno));
		return -errno;
	}
	return lyr_tree_usage(fd, ret_bytes, ret_entries);
}

typedef struct mount_ctx {
	const char *id, *mountpoint;
	lyr_owner owner;
	char *busy_at; /* where a live mount already is */
} mount_ctx;

static int set_mount_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	mount_ctx *m = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, m->id, &rec);
	if (r)
		return r;
	drop_stale_mount(&rec);
	/* a record the calling process holds may be handed on: `layerfs mount` claims the ref, then
	 * records the serving process it forked */
	if (rec.mount_owner.pid && rec.mount_owner.pid != getpid()) {
		free(m->busy_at);
		m->busy_at = strdup(rec.mountpoint);
		r = -EBUSY;
	} else if (rec.state == REF_COMMITTING && owner_alive(&rec.owner)) {
		free(m->busy_at);
		m->busy_at = NULL;
		r = -EBUSY;
	} else {
		rec.mount_owner = m->owner;
		free(rec.mountpoint);
		rec.mountpoint = NULL;
		if (m->mountpoint && !(rec.mountpoint = strdup(m->mountpoint)))
			r = -ENOMEM;
		if (r == 0)
			r = ref_store(s, txn, m->id, &rec);
	}
	ref_rec_clear(&rec);
	return r;
}

/* Records M->owner as the mount of M->id (settled first); -EBUSY as lyr_ref_set_mount. */
static int set_mount(lyr_store *s, mount_ctx *m);

int lyr_ref_set_mount(lyr_store *s, const char *ref_id, const char *mountpoint, pid_t pid)
{
	mount_ctx m = {ref_id, mountpoint, {0, 0}, NULL};
	int r = owner_of(pid, &m.owner);
	if (r < 0) {
		int e = ref_check(s, ref_id);
		if (e < 0)
			return e;
		db_seterr("ref '%s': mount process %d: %s", ref_id, (int)pid, strerror(-r));
		return r;
	}
	return set_mount(s, &m);
}

int lyr_ref_set_kernel_mount(lyr_store *s, const char *ref_id, const char *mountpoint,
			     uint64_t mnt_id)
{
	mount_ctx m = {ref_id, mountpoint, {MOUNT_KERNEL, mnt_id}, NULL};
	return set_mount(s, &m);
}

static int set_mount(lyr_store *s, mount_ctx *m)
{
	const char *ref_id = m->id;
	int r = ref_check(s, ref_id);
	if (r < 0)
		return r;
	r = ref_settle(s, ref_id);
	if (r < 0)
		return r;
	r = txn_run(s, set_mount_txn, m);
	if (r == -EBUSY)
		db_seterr(m->busy_at ? "ref '%s': already mounted at '%s'"
				     : "ref '%s': being committed%s",
			  ref_id, m->busy_at ? m->busy_at : "");
	free(m->busy_at);
	return r;
}

static int clear_mount_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	mount_ctx *m = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, m->id, &rec);
	if (r)
		return r;
	if (rec.mount_owner.pid) {
		rec.mount_owner = (lyr_owner){0, 0};
		free(rec.mountpoint);
		rec.mountpoint = NULL;
		r = ref_store(s, txn, m->id, &rec);
	}
	ref_rec_clear(&rec);
	return r;
}

int lyr_ref_clear_mount(lyr_store *s, const char *ref_id)
{
	int r = ref_check(s, ref_id);
	if (r < 0)
		return r;
	mount_ctx m = {ref_id, NULL, {0, 0}, NULL};
	return txn_run(s, clear_mount_txn, &m);
}
