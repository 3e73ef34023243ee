/* fsck: checks records against directories and the uses index against records, holding the
 * namespace lock throughout so no import, commit or rm is half way through a rename.
 *
 * Findings, in this order (docs/store-format.md lists the texts):
 *   damage  what opening the store found wrong with the database (and with LYR_OPEN_REPAIR
 *           mended: env.c, store.c);
 *   refs    interrupted commits of dead processes (settled: forward or back), stale mount
 *           records (cleared), missing upper (reported) or work (recreated) directories,
 *           missing parent layers (reported);
 *   layers  missing diff directories, missing parents (reported);
 *   tags    tags of missing layers (reported);
 *   uses    index entries without their record (removed) and missing entries (added);
 *   dirs    layers/ and refs/ directories without a record: an operation that died (its
 *           pending note says which: finished or undone), or a record the database lost
 *           (re-adopted, adopt.c); temporary directories of dead processes (removed).
 * Records without data are never deleted: that would hide the loss.  Layer directories are
 * never deleted either, except to finish an rm or undo an import that died. */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"
#include "layerfs/tree.h"

typedef struct fsck {
	lyr_store *s;
	bool repair;
	void (*fn)(void *ctx, const char *finding, bool repaired);
	void *ctx;
	int left;
	char **targets; /* layer dirs that pending commits will claim (reported with them) */
	size_t ntargets;
} fsck;

static void finding(fsck *f, bool repaired, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finding(fsck *f, bool repaired, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (!repaired)
		f->left++;
	if (f->fn)
		f->fn(f->ctx, line, repaired);
}

static void settle_report(void *ctx, const char *line, bool repaired)
{
	fsck *f = ctx;
	if (!repaired)
		f->left++;
	if (f->fn)
		f->fn(f->ctx, line, repaired);
}

static bool is_dir(lyr_store *s, const char *path)
{
	struct stat st;
	return fstatat(s->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Tables are named, not passed as DB handles: txn_run binds the handles of the current
 * environment for each attempt, and a reopen after recovery replaces them. */
enum table { T_LAYERS, T_REFS, T_TAGS, T_USES };

static DB *table_of(lyr_store *s, enum table t)
{
	switch (t) {
	case T_LAYERS:
		return s->layers;
	case T_REFS:
		return s->refs;
	case T_TAGS:
		return s->tags;
	default:
		return s->uses;
	}
}

/* Keys of a table, collected in one transaction. */
typedef struct keys {
	enum table table;
	char **v;
	size_t n;
} keys;

static void keys_reset(keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
	k->v = NULL;
	k->n = 0;
}

/* Adds a copy of the string NAME (list_dir's lists hold plain strings). */
static int keys_add(keys *k, const char *name)
{
	char **nv = realloc(k->v, (k->n + 1) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	k->v = nv;
	if (!(nv[k->n] = strdup(name)))
		return -ENOMEM;
	k->n++;
	return 0;
}

static int keys_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	keys *k = ctx;
	keys_reset(k);
	DB *db = table_of(s, k->table);
	DBC *c;
	int r = dbx(db->cursor(db, txn, &c, 0));
	if (r)
		return r;
	DBT key = {0}, v = {0};
	key.flags = DB_DBT_REALLOC;
	v.flags = DB_DBT_USERMEM | DB_DBT_PARTIAL;
	while ((r = dbx(c->get(c, &key, &v, DB_NEXT))) == 0) {
		char **nv = realloc(k->v, (k->n + 1) * sizeof *nv);
		if (!nv) {
			r = -ENOMEM;
			break;
		}
		k->v = nv;
		/* uses keys hold a NUL: keep the raw bytes with the length in front */
		char *copy = malloc(key.size + 5);
		if (!copy) {
			r = -ENOMEM;
			break;
		}
		memcpy(copy, &key.size, 4);
		memcpy(copy + 4, key.data, key.size);
		copy[4 + key.size] = '\0';
		k->v[k->n++] = copy;
	}
	free(key.data);
	int e = dbx(c->close(c));
	return r == -ENOENT ? e : r;
}

static int collect(lyr_store *s, enum table t, keys *k)
{
	k->table = t;
	return txn_run(s, keys_txn, k);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *key_str(const char *k)
{
	return k + 4;
}

static uint32_t key_len(const char *k)
{
	uint32_t n;
	memcpy(&n, k, 4);
	return n;
}

typedef struct one_ctx {
	const char *id;
	layer_rec l;
	ref_rec r;
	bool is_layer, have;
	bool exists_parent;
	char *tag_layer;
} one_ctx;

static int load_ref_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	one_ctx *o = ctx;
	if (o->have)
		ref_rec_clear(&o->r);
	o->have = false;
	int r = ref_load(s, txn, o->id, &o->r);
	if (r)
		return r;
	o->have = true;
	o->exists_parent =
	    !*o->r.parent || rec_exists(s->layers, txn, o->r.parent, strlen(o->r.parent), &r);
	return r;
}

static int clear_mount_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	const char *id = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, id, &rec);
	if (r)
		return r;
	if (rec.mount_owner.pid && !mount_alive(&rec.mount_owner, rec.mountpoint)) {
		rec.mount_owner = (lyr_owner){0, 0};
		free(rec.mountpoint);
		rec.mountpoint = NULL;
		r = ref_store(s, txn, id, &rec);
	}
	ref_rec_clear(&rec);
	return r;
}

/* The parent note of a recorded layer or ref (in DIR) is what rebuilds its record should the
 * database lose it: one that is damaged or disagrees with the record's PARENT is written
 * again from the record.  A missing note (stores from before notes) is left alone. */
static void check_parent_note(fsck *f, const char *kind, const char *id, const char *dir,
			      const char *parent)
{
	char note[LYR_ID_MAX + 8];
	int r = note_get_parent(f->s, dir, note, sizeof note);
	if (r == -ENOENT || (r == 0 && strcmp(note, parent) == 0) || !is_dir(f->s, dir))
		return;
	bool fixed = false;
	if (f->repair) {
		note_del(f->s, dir, NOTE_PARENT);
		fixed = note_put(f->s, dir, NOTE_PARENT, parent) == 0;
	}
	finding(f, fixed, "%s %s: parent note %s/" NOTE_PARENT " %s (%s)", kind, id, dir,
		r == 0 ? "names another parent than the record" : "is damaged",
		fixed ? "written again from the record" : "to write again from the record");
}

static int check_ref(fsck *f, const char *id)
{
	lyr_store *s = f->s;
	bool found;
	int r = commit_settle(s, id, f->repair, settle_report, f, &found);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if (r == 1)
		return 0; /* rolled forward: the ref is gone */
	one_ctx o = {.id = id};
	r = txn_run(s, load_ref_txn, &o);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if (o.r.mount_owner.pid && !mount_alive(&o.r.mount_owner, o.r.mountpoint)) {
		int e = f->repair ? txn_run(s, clear_mount_txn, (void *)id) : -1;
		if (o.r.mount_owner.pid == MOUNT_KERNEL)
			finding(f, e >= 0, "ref %s: stale mount record (kernel overlay, '%s')", id,
				o.r.mountpoint);
		else
			finding(f, e >= 0, "ref %s: stale mount record (pid %d, '%s')", id,
				(int)o.r.mount_owner.pid, o.r.mountpoint);
	}
	char path[160];
	snprintf(path, sizeof path, "refs/%s/upper", id);
	if (!found && !is_dir(s, path))
		finding(f, false, "ref %s has no upper directory", id);
	snprintf(path, sizeof path, "refs/%s", id);
	if (!found)
		check_parent_note(f, "ref", id, path, o.r.parent);
	snprintf(path, sizeof path, "refs/%s/work", id);
	if (!is_dir(s, path)) {
		char ref[128];
		snprintf(ref, sizeof ref, "refs/%s", id);
		bool ok = f->repair && is_dir(s, ref) && mkdirat(s->rootfd, path, 0700) == 0;
		finding(f, ok, "ref %s has no work directory", id);
	}
	ref_rec_clear(&o.r);
	return 0;
}

static int need_use(fsck *f, const char *layer, char kind, const char *name);

/* After lost layers were adopted: the ref's parent and its uses entry. */
static int check_ref_parent(fsck *f, const char *id)
{
	one_ctx o = {.id = id};
	int r = txn_run(f->s, load_ref_txn, &o);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if (!o.exists_parent)
		finding(f, false, "ref %s: parent layer %s has no record", id, o.r.parent);
	r = need_use(f, o.r.parent, USE_REF, id);
	ref_rec_clear(&o.r);
	return r;
}

static int load_layer_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	one_ctx *o = ctx;
	if (o->have)
		layer_rec_clear(&o->l);
	o->have = false;
	int r = layer_load(s, txn, o->id, &o->l);
	if (r)
		return r;
	o->have = true;
	o->exists_parent =
	    !*o->l.parent || rec_exists(s->layers, txn, o->l.parent, strlen(o->l.parent), &r);
	return r;
}

static int check_layer(fsck *f, const char *id)
{
	one_ctx o = {.id = id};
	int r = txn_run(f->s, load_layer_txn, &o);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	char path[160];
	snprintf(path, sizeof path, "layers/%s/diff", layer_hex(id));
	if (!is_dir(f->s, path))
		finding(f, false, "layer %s has no diff directory", id);
	snprintf(path, sizeof path, "layers/%s", layer_hex(id));
	check_parent_note(f, "layer", id, path, o.l.parent);
	if (!o.exists_parent)
		finding(f, false, "layer %s: parent layer %s has no record", id, o.l.parent);
	layer_rec_clear(&o.l);
	return 0;
}

typedef struct tag_ctx {
	const char *name;
	char *layer;
	bool layer_exists;
} tag_ctx;

static int load_tag_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	tag_ctx *t = ctx;
	_cleanup_free_ void *v = NULL;
	size_t len;
	free(t->layer);
	t->layer = NULL;
	int r = rec_get(s->tags, txn, t->name, strlen(t->name), &v, &len);
	if (r == 0)
		r = tag_rec_decode(v, len, &t->layer);
	if (r == 0)
		t->layer_exists = rec_exists(s->layers, txn, t->layer, strlen(t->layer), &r);
	return r;
}

/* One uses entry: is its record there and does it say the same?  Repair drops it. */
typedef struct use_ctx {
	const char *key;
	uint32_t len;
	bool valid;
	bool repair;
} use_ctx;

static int use_check_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	use_ctx *u = ctx;
	const char *layer = u->key;
	size_t ll = strlen(layer);
	if (ll + 2 > u->len) {
		u->valid = false;
	} else {
		char kind = u->key[ll + 1];
		_cleanup_free_ char *name = strndup(u->key + ll + 2, u->len - ll - 2);
		if (!name)
			return -ENOMEM;
		layer_rec l;
		ref_rec f;
		int r = 0;
		u->valid = false;
		if (kind == USE_LAYER && (r = layer_load(s, txn, name, &l)) == 0) {
			u->valid = strcmp(l.parent, layer) == 0;
			layer_rec_clear(&l);
		} else if (kind == USE_REF && (r = ref_load(s, txn, name, &f)) == 0) {
			u->valid = strcmp(f.parent, layer) == 0;
			ref_rec_clear(&f);
		} else if (kind == USE_TAG) {
			_cleanup_free_ void *v = NULL;
			_cleanup_free_ char *target = NULL;
			size_t len;
			r = rec_get(s->tags, txn, name, strlen(name), &v, &len);
			if (r == 0 && (r = tag_rec_decode(v, len, &target)) == 0)
				u->valid = strcmp(target, layer) == 0;
		}
		if (r && r != -ENOENT)
			return r;
	}
	if (!u->valid && u->repair)
		return rec_del(s->uses, txn, u->key, u->len);
	return 0;
}

/* A record's entry in the uses index, added when missing. */
typedef struct need_ctx {
	const char *layer, *name;
	char kind;
	bool missing, repair;
} need_ctx;

static int use_need_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	need_ctx *n = ctx;
	size_t ll = strlen(n->layer), nl = strlen(n->name);
	_cleanup_free_ char *k = malloc(ll + 2 + nl);
	if (!k)
		return -ENOMEM;
	memcpy(k, n->layer, ll + 1);
	k[ll + 1] = n->kind;
	memcpy(k + ll + 2, n->name, nl);
	int r;
	n->missing = !rec_exists(s->uses, txn, k, ll + 2 + nl, &r);
	if (r)
		return r;
	if (n->missing && n->repair)
		return use_put(s, txn, n->layer, n->kind, n->name);
	return 0;
}

static const char *kind_name(char kind)
{
	return kind == USE_LAYER ? "child layer" : kind == USE_REF ? "ref" : "tag";
}

static int need_use(fsck *f, const char *layer, char kind, const char *name)
{
	if (!*layer)
		return 0;
	need_ctx n = {layer, name, kind, false, f->repair};
	int r = txn_run(f->s, use_need_txn, &n);
	if (r < 0)
		return r;
	if (n.missing)
		finding(f, f->repair, "index entry for %s %s of layer %s was missing",
			kind_name(kind), name, layer);
	return 0;
}

/* The names in ROOT/SUB, sorted (a retried fsck reports in the same order). */
static int list_dir(fsck *f, const char *sub, keys *ret)
{
	_cleanup_close_ int fd = openat(f->s->rootfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d)
		return -errno;
	fd = -1;
	_cleanup_closedir_ DIR *dir = d;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int r = keys_add(ret, de->d_name);
		if (r < 0)
			return r;
	}
	if (ret->n)
		qsort(ret->v, ret->n, sizeof *ret->v, cmp_str);
	return 0;
}

static int check_tmp(fsck *f)
{
	keys names = {0};
	int r = list_dir(f, "tmp", &names);
	for (size_t i = 0; r == 0 && i < names.n; i++) {
		lyr_owner o;
		if (tmp_owner(names.v[i], &o) && owner_alive(&o))
			continue;
		int e = f->repair ? dir_discard(f->s, "tmp", names.v[i], "fsck") : -1;
		finding(f, e >= 0, "temporary directory tmp/%s", names.v[i]);
	}
	keys_reset(&names);
	return r;
}

typedef struct exists_ctx {
	enum table table;
	const char *key;
	bool yes;
} exists_ctx;

static int exists_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	exists_ctx *e = ctx;
	int r;
	e->yes = rec_exists(table_of(s, e->table), txn, e->key, strlen(e->key), &r);
	return r;
}

/* True when the record exists; an error counts as "exists" so nothing is removed on it. */
static bool exists_in(fsck *f, enum table t, const char *key)
{
	exists_ctx e = {t, key, false};
	return txn_run(f->s, exists_txn, &e) < 0 || e.yes;
}

static bool is_target(fsck *f, const char *hex)
{
	for (size_t i = 0; i < f->ntargets; i++)
		if (strcmp(f->targets[i], hex) == 0)
			return true;
	return false;
}

/* What fsck does with a directory ROOT/SUB/NAME that has a record but a pending note: the
 * operation died before its transaction (rm), or after it but before the note went
 * (import, new): either way the record stands and the note is stale. */
static void stale_note(fsck *f, const char *kind, const char *id, const char *dir, const char *op)
{
	if (f->repair)
		note_del(f->s, dir, NOTE_PENDING);
	finding(f, f->repair, "%s %s: stale note of an interrupted %s (%s)", kind, id, op,
		f->repair ? "removed" : "to remove");
}

/* A pending note that cannot be read or names no operation (ERR) tells nothing about the
 * directory, which is then treated as if it had none: never removed for it. */
static void damaged_note(fsck *f, const char *kind, const char *id, const char *dir, int err)
{
	char path[160];
	snprintf(path, sizeof path, "%s/" NOTE_PENDING, dir);
	bool removed = f->repair && unlinkat(f->s->rootfd, path, 0) == 0;
	finding(f, removed, "%s %s: damaged note %s (%s; %s)", kind, id, path,
		err == -EBADMSG ? "not an operation's note" : strerror(-err),
		removed	    ? "removed"
		: f->repair ? "cannot be removed"
			    : "to remove");
}

/* A directory without a record whose pending note names OP: finish or undo OP as its
 * process would have.  rm and commit had dropped the record: the directory goes (rolled
 * forward); import and new had not recorded it yet: it goes too (rolled back). */
static void pending_dir(fsck *f, const char *kind, const char *id, const char *sub,
			const char *name, const char *op)
{
	bool forward = strcmp(op, "rm") == 0 || strcmp(op, "commit") == 0;
	int e = f->repair ? dir_discard(f->s, sub, name, "fsck") : -1;
	finding(f, e >= 0, "%s %s: interrupted %s (%s)", kind, id, op,
		forward ? (f->repair ? "rolled forward" : "to roll forward")
			: (f->repair ? "rolled back" : "to roll back"));
}

/* SUB/NAME, the directory of KIND ID: true when its record is lost (no record, no pending
 * note); an operation that died is settled here, a stale note removed. */
static bool record_lost(fsck *f, const char *kind, const char *id, const char *sub,
			const char *name, enum table t)
{
	char dir[128], op[32];
	snprintf(dir, sizeof dir, "%s/%s", sub, name);
	int e = note_get_pending(f->s, dir, t == T_LAYERS, op, sizeof op);
	bool pending = e == 0;
	if (e < 0 && e != -ENOENT)
		damaged_note(f, kind, id, dir, e);
	if (exists_in(f, t, t == T_LAYERS ? id : name)) {
		if (pending)
			stale_note(f, kind, id, dir, op);
		return false;
	}
	if (pending)
		pending_dir(f, kind, id, sub, name, op);
	return !pending;
}

#define LOST " directory present but not recorded in the database"

/* layers/: every directory that is a layer's (its name a layer ID) either has a record, is
 * claimed by a pending commit, carries an interrupted operation's note, or lost its record,
 * which repair rebuilds (adopt.c).  Nothing else is touched. */
static int check_layer_dirs(fsck *f)
{
	lyr_store *s = f->s;
	keys names = {0}, known = {0}, lost = {0};
	int r = list_dir(f, "layers", &names);
	if (r >= 0)
		r = collect(s, T_LAYERS, &known);
	for (size_t i = 0; r >= 0 && i < names.n; i++) {
		const char *name = names.v[i];
		char id[LYR_ID_MAX + 8];
		snprintf(id, sizeof id, "%s%s", LYR_DIGEST_PREFIX, name);
		if (!is_store_id(name)) {
			finding(f, false, "unexpected entry layers/%s (not a layer ID; left alone)",
				name);
			continue;
		}
		if (!is_target(f, name) && record_lost(f, "layer", id, "layers", name, T_LAYERS))
			r = keys_add(&lost, id);
	}
	/* Parents of layers without a parent note: any layer recorded or found here. */
	size_t n = known.n + lost.n;
	char **cands = r >= 0 ? calloc(n + 1, sizeof *cands) : NULL;
	if (r >= 0 && !cands)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < known.n; i++)
		cands[i] = (char *)key_str(known.v[i]);
	for (size_t i = 0; r >= 0 && i < lost.n; i++)
		cands[known.n + i] = lost.v[i];
	for (size_t i = 0; r >= 0 && i < lost.n; i++) {
		const char *id = lost.v[i], *why = NULL;
		int e = f->repair ? adopt_layer(s, layer_hex(id), cands, n, &why) : -1;
		if (why)
			finding(f, false, "layer %s:" LOST " (%s: kept, not adopted)", id, why);
		else
			finding(f, e >= 0, "layer %s:" LOST, id);
	}
	free(cands);
	keys_reset(&names), keys_reset(&known), keys_reset(&lost);
	return r;
}

/* refs/: the same for refs; a ref whose record was lost is rebuilt from its parent note. */
static int check_ref_dirs(fsck *f)
{
	lyr_store *s = f->s;
	keys names = {0};
	int r = list_dir(f, "refs", &names);
	for (size_t i = 0; r >= 0 && i < names.n; i++) {
		const char *name = names.v[i];
		if (!is_store_id(name)) {
			finding(f, false, "unexpected entry refs/%s (not a ref ID; left alone)",
				name);
			continue;
		}
		if (record_lost(f, "ref", name, "refs", name, T_REFS)) {
			const char *why = NULL;
			int e = f->repair ? adopt_ref(s, name, &why) : -1;
			if (why)
				finding(f, false, "ref %s:" LOST " (%s: kept, not adopted)", name,
					why);
			else
				finding(f, e >= 0, "ref %s:" LOST, name);
		}
	}
	keys_reset(&names);
	return r;
}

static int fsck_run(fsck *f)
{
	lyr_store *s = f->s;
	keys k = {0};
	for (int i = 0; i < s->ndamage; i++)
		finding(f, s->damage[i].fixed, "%s", s->damage[i].text);
	int r = collect(s, T_REFS, &k);
	for (size_t i = 0; r >= 0 && i < k.n; i++) {
		const char *id = key_str(k.v[i]);
		r = check_ref(f, id);
		one_ctx o = {.id = id};
		if (r >= 0 && txn_run(s, load_ref_txn, &o) >= 0) {
			if (o.r.state == REF_COMMITTING && *o.r.target) {
				char **nv = realloc(f->targets, (f->ntargets + 1) * sizeof *nv);
				if (!nv || !(nv[f->ntargets] = strdup(layer_hex(o.r.target))))
					r = -ENOMEM;
				if (nv)
					f->targets = nv;
				if (r >= 0)
					f->ntargets++;
			}
			ref_rec_clear(&o.r);
		}
	}
	if (r >= 0)
		r = check_layer_dirs(f);
	if (r >= 0)
		r = check_ref_dirs(f);
	for (size_t i = 0; r >= 0 && i < k.n; i++)
		r = check_ref_parent(f, key_str(k.v[i]));
	keys_reset(&k);
	if (r >= 0)
		r = collect(s, T_LAYERS, &k);
	for (size_t i = 0; r >= 0 && i < k.n; i++) {
		const char *id = key_str(k.v[i]);
		r = check_layer(f, id);
		one_ctx o = {.id = id};
		if (r >= 0 && txn_run(s, load_layer_txn, &o) >= 0) {
			r = need_use(f, o.l.parent, USE_LAYER, id);
			layer_rec_clear(&o.l);
		}
	}
	keys_reset(&k);
	if (r >= 0)
		r = collect(s, T_TAGS, &k);
	for (size_t i = 0; r >= 0 && i < k.n; i++) {
		tag_ctx t = {key_str(k.v[i]), NULL, false};
		r = txn_run(s, load_tag_txn, &t);
		if (r >= 0 && !t.layer_exists)
			finding(f, false, "tag %s points to layer %s, which has no record", t.name,
				t.layer);
		if (r >= 0)
			r = need_use(f, t.layer, USE_TAG, t.name);
		free(t.layer);
	}
	keys_reset(&k);
	if (r >= 0)
		r = collect(s, T_USES, &k);
	for (size_t i = 0; r >= 0 && i < k.n; i++) {
		use_ctx u = {key_str(k.v[i]), key_len(k.v[i]), false, f->repair};
		r = txn_run(s, use_check_txn, &u);
		if (r >= 0 && !u.valid) {
			size_t ll = strlen(u.key);
			finding(f, f->repair, "index entry for %s %.*s of layer %s has no record",
				ll + 2 <= u.len ? kind_name(u.key[ll + 1]) : "?",
				ll + 2 <= u.len ? (int)(u.len - ll - 2) : 0, u.key + ll + 2, u.key);
		}
	}
	keys_reset(&k);
	if (r >= 0)
		r = check_tmp(f);
	return r;
}

int lyr_store_fsck(lyr_store *s, bool repair,
		   void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx)
{
	fsck f = {s, repair, fn, ctx, 0, NULL, 0};
	int r = ns_lock(s);
	if (r < 0)
		return r;
	r = fsck_run(&f);
	ns_unlock(s);
	for (size_t i = 0; i < f.ntargets; i++)
		free(f.targets[i]);
	free(f.targets);
	if (r < 0) {
		db_seterr("fsck '%s': %s", s->root, strerror(-r));
		return r;
	}
	return f.left;
}
