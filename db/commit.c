/* Commit: a ref's upper directory becomes a layer by one rename, after one hashing pass over
 * the upper alone (the parent is never read, so the cost follows what changed).
 *
 * Order, so a crash anywhere leaves a store fsck can settle (docs/store-format.md):
 *   1. txn: ref state := COMMITTING by this process (refuses a live mount or commit);
 *   2. hash and measure refs/<id>/upper -> layer ID X;
 *   3. namespace lock; txn: record the intent "-> X" (digest, size, entries, tag) on the ref;
 *   4. unless layer X exists: mkdir layers/<X>, rename refs/<id>/upper -> layers/<X>/diff;
 *   5. txn: add layer X (or reuse it), drop the ref, move the tag; unlock;
 *   6. discard refs/<id> (work dir, or the redundant upper when X was reused).
 * A ref left COMMITTING by a dead process is settled by commit_settle: forward when the
 * layer exists or the upper already moved, back otherwise. */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"
#include "layerfs/tree.h"

typedef struct commit_ctx {
	const char *id;
	const char *tag;
	char layer[LYR_DIGEST_TEXT_LEN];
	char digest[LYR_DIGEST_TEXT_LEN];
	uint64_t size, entries;
	char *parent, *desc; /* copied from the ref in step 1 */
	char *busy_at;
	bool reuse;
} commit_ctx;

static int begin_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	commit_ctx *c = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, c->id, &rec);
	if (r)
		return r;
	if (rec.mount_owner.pid && !mount_alive(&rec.mount_owner, rec.mountpoint)) {
		rec.mount_owner = (lyr_owner){0, 0};
		free(rec.mountpoint);
		rec.mountpoint = NULL;
	}
	if (rec.mount_owner.pid) {
		free(c->busy_at);
		c->busy_at = strdup(rec.mountpoint);
		r = -EBUSY;
	} else if (rec.state == REF_COMMITTING) {
		free(c->busy_at);
		c->busy_at = NULL;
		r = -EBUSY; /* ref_settle ran first, so its owner is alive */
	} else {
		rec.state = REF_COMMITTING;
		rec.owner = s->self;
		rec.stamp = now_seconds();
		free(c->parent), free(c->desc);
		c->parent = strdup(rec.parent);
		c->desc = strdup(rec.desc);
		r = c->parent && c->desc ? ref_store(s, txn, c->id, &rec) : -ENOMEM;
	}
	ref_rec_clear(&rec);
	return r;
}

static int intent_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	commit_ctx *c = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, c->id, &rec);
	if (r)
		return r;
	if (rec.state != REF_COMMITTING || rec.owner.pid != s->self.pid) {
		ref_rec_clear(&rec);
		return -ESTALE;
	}
	free(rec.target), free(rec.digest), free(rec.tag);
	rec.target = strdup(c->layer);
	rec.digest = strdup(c->digest);
	rec.tag = strdup(c->tag ? c->tag : "");
	rec.size = c->size;
	rec.entries = c->entries;
	c->reuse = rec_exists(s->layers, txn, c->layer, strlen(c->layer), &r);
	if (r == 0)
		r = rec.target && rec.digest && rec.tag ? ref_store(s, txn, c->id, &rec) : -ENOMEM;
	ref_rec_clear(&rec);
	return r;
}

static int idle_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	const char *id = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, id, &rec);
	if (r)
		return r;
	rec.state = REF_IDLE;
	rec.owner = (lyr_owner){0, 0};
	free(rec.target), free(rec.digest), free(rec.tag);
	rec.target = rec.digest = rec.tag = NULL;
	rec.size = rec.entries = 0;
	rec.stamp = 0;
	r = ref_store(s, txn, id, &rec);
	ref_rec_clear(&rec);
	return r;
}

/* The finishing transaction, shared by commit and by roll-forward: adds layer LAYER from the
 * ref's intent unless it exists, drops the ref, points the tag. */
typedef struct finish_ctx {
	const char *id;
} finish_ctx;

static int finish_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	finish_ctx *f = ctx;
	ref_rec rec;
	int r = ref_load(s, txn, f->id, &rec);
	if (r)
		return r;
	if (rec.state != REF_COMMITTING || !rec.target || !*rec.target) {
		ref_rec_clear(&rec);
		return -ESTALE;
	}
	if (!rec_exists(s->layers, txn, rec.target, strlen(rec.target), &r) && r == 0) {
		layer_rec l = {.size = rec.size, .entries = rec.entries, .created = now_seconds(),
			       .parent = rec.parent, .digest = rec.digest, .desc = rec.desc};
		r = layer_store(s, txn, rec.target, &l);
		if (r == 0 && *rec.parent)
			r = use_put(s, txn, rec.parent, USE_LAYER, rec.target);
	}
	if (r == 0)
		r = rec_del(s->refs, txn, f->id, strlen(f->id));
	if (r == 0 && *rec.parent)
		r = use_del(s, txn, rec.parent, USE_REF, f->id);
	if (r == 0 && *rec.tag)
		r = tag_point_txn(s, txn, rec.tag, rec.target);
	ref_rec_clear(&rec);
	return r;
}

static int back_to_idle(lyr_store *s, const char *id, int err)
{
	txn_run(s, idle_txn, (void *)id);
	return err;
}

/* The file list written next to the upper goes with it (docs/store-format.md); a layer
 * without one is still whole, so a failure here only costs naming files in fsck --verify. */
static void move_filelist(lyr_store *s, const char *ref_id, const char *layerdir)
{
	char from[160], to[160];
	snprintf(from, sizeof from, "refs/%s/%s", ref_id, FILELIST_NAME);
	snprintf(to, sizeof to, "%s/%s", layerdir, FILELIST_NAME);
	(void)renameat(s->rootfd, from, s->rootfd, to);
}

/* Steps 3-5, under the namespace lock. */
static int commit_locked(lyr_store *s, commit_ctx *c)
{
	char layerdir[128], diff[160], upper[128];
	snprintf(layerdir, sizeof layerdir, "layers/%s", layer_hex(c->layer));
	snprintf(diff, sizeof diff, "%s/diff", layerdir);
	snprintf(upper, sizeof upper, "refs/%s/upper", c->id);

	int r = txn_run(s, intent_txn, c);
	if (r < 0)
		return back_to_idle(s, c->id, r);
	lyr_fault("commit-after-intent");
	if (!c->reuse) {
		r = lyr_tree_remove(s->rootfd, layerdir); /* debris of an earlier crash */
		if (r >= 0 && mkdirat(s->rootfd, layerdir, 0755) < 0)
			r = -errno;
		if (r >= 0)
			r = note_put(s, layerdir, NOTE_PARENT, c->parent);
		if (r >= 0 && renameat(s->rootfd, upper, s->rootfd, diff) < 0)
			r = -errno;
		if (r >= 0)
			move_filelist(s, c->id, layerdir);
		if (r < 0) {
			lyr_tree_remove(s->rootfd, layerdir);
			return back_to_idle(s, c->id, r);
		}
		lyr_fault("commit-after-rename");
	}
	/* The ref's record goes in the next transaction and its directory after the lock is
	 * released: the note tells fsck that directory is a finished commit's. */
	char refdir[128];
	snprintf(refdir, sizeof refdir, "refs/%s", c->id);
	finish_ctx f = {c->id};
	r = note_put(s, refdir, NOTE_PENDING, "commit");
	if (r >= 0)
		r = txn_run(s, finish_txn, &f);
	if (r < 0) {
		note_del(s, refdir, NOTE_PENDING);
		if (!c->reuse) {
			renameat(s->rootfd, diff, s->rootfd, upper);
			lyr_tree_remove(s->rootfd, layerdir);
		}
		return back_to_idle(s, c->id, r);
	}
	lyr_fault("commit-after-txn");
	if (c->reuse) /* the same content again puts back a layer that failed verification */
		(void)layer_restore(s, c->layer, s->rootfd, upper, diff);
	return 0;
}

/* An upper that holds nothing is no change, but its own times are those of the moment the ref
 * was made or last touched: left alone, every empty commit on one parent would be a new layer.
 * Such a root takes the parent's root times (0 for scratch) unless its mode or owner changed,
 * so the empty diff on a parent is one layer. */
static int settle_empty_root(lyr_store *s, int upperfd, const char *parent)
{
	int empty = lyr_dir_empty(upperfd);
	if (empty <= 0)
		return empty;
	struct stat up, base = {.st_mode = S_IFDIR | 0755};
	if (fstat(upperfd, &up) < 0)
		return -errno;
	base.st_uid = up.st_uid, base.st_gid = up.st_gid;
	if (*parent) {
		char dir[160];
		snprintf(dir, sizeof dir, "layers/%s/diff", layer_hex(parent));
		if (fstatat(s->rootfd, dir, &base, 0) < 0)
			return -errno;
	}
	if ((up.st_mode & 07777) != (base.st_mode & 07777) || up.st_uid != base.st_uid ||
	    up.st_gid != base.st_gid)
		return 0; /* chmod or chown of "/" is a change */
	struct timespec times[2] = {base.st_atim, base.st_mtim};
	return futimens(upperfd, times) < 0 ? -errno : 0;
}

int lyr_ref_commit(lyr_store *s, const char *ref_id, const char *tag, const lyr_progress *progress,
		   char *ret_layer_id)
{
	if (tag && lyr_tag_valid(tag) < 0) {
		db_seterr("tag '%s': invalid name", tag);
		return -EINVAL;
	}
	_cleanup_close_ int fd = -1;
	char upper[128], errpath[PATH_MAX] = "";
	lyr_ref_info info;
	int r = lyr_ref_get(s, ref_id, &info); /* checks the ID, clears a stale mount */
	if (r < 0)
		return r;
	lyr_ref_info_clear(&info);
	r = ref_settle(s, ref_id);
	if (r < 0) {
		if (r == -ENOENT)
			db_seterr("ref '%s': no such ref (an interrupted commit of it completed)",
				  ref_id);
		return r;
	}

	commit_ctx c = {.id = ref_id, .tag = tag};
	r = txn_run(s, begin_txn, &c);
	if (r < 0) {
		if (r == -EBUSY)
			db_seterr(c.busy_at ? "commit '%s': ref is mounted at '%s'"
					    : "commit '%s': ref is being committed%s",
				  ref_id, c.busy_at ? c.busy_at : "");
		goto out;
	}

	snprintf(upper, sizeof upper, "refs/%s/upper", ref_id);
	fd = openat(s->rootfd, upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = back_to_idle(s, ref_id, -errno);
		db_seterr("commit '%s': upper directory: %s", ref_id, strerror(-r));
		goto out;
	}
	r = settle_empty_root(s, fd, c.parent);
	lyr_diff_list files = {0};
	lyr_diff_opts o = {.progress = progress, .entries = &files};
	if (r >= 0)
		r = lyr_hash_diff_ex(fd, &o, c.digest, errpath);
	if (r >= 0) { /* beside the upper, until the layer directory exists */
		char list[160];
		snprintf(list, sizeof list, "refs/%s/%s", ref_id, FILELIST_NAME);
		if ((r = filelist_write(s->rootfd, list, &files)) < 0)
			snprintf(errpath, sizeof errpath, "%s", list);
		lyr_diff_list_clear(&files);
	}
	if (r >= 0)
		r = lyr_tree_usage(fd, &c.size, &c.entries);
	if (r < 0) {
		back_to_idle(s, ref_id, r);
		db_seterr("commit '%s': reading '%s': %s", ref_id, errpath, strerror(-r));
		goto out;
	}
	lyr_layer_id(c.parent, c.digest, c.layer);

	r = ns_lock(s);
	if (r < 0) {
		back_to_idle(s, ref_id, r);
		goto out;
	}
	r = commit_locked(s, &c);
	ns_unlock(s);
	if (r < 0) {
		db_seterr("commit '%s': %s", ref_id, strerror(-r));
		goto out;
	}
	dir_discard(s, "refs", ref_id, "commit");
	snprintf(ret_layer_id, LYR_ID_MAX, "%s", c.layer);
out:
	free(c.parent), free(c.desc), free(c.busy_at);
	return r < 0 ? r : 0;
}

static int report(void (*fn)(void *, const char *, bool), void *ctx, bool repaired,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int report(void (*fn)(void *, const char *, bool), void *ctx, bool repaired,
		  const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (fn)
		fn(ctx, line, repaired);
	return 0;
}

static bool dir_exists(lyr_store *s, const char *path)
{
	struct stat st;
	return fstatat(s->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

typedef struct peek_ctx {
	const char *id;
	ref_rec rec;
	bool have;
	bool layer_exists;
} peek_ctx;

static int peek_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	peek_ctx *p = ctx;
	if (p->have)
		ref_rec_clear(&p->rec);
	p->have = false;
	int r = ref_load(s, txn, p->id, &p->rec);
	if (r)
		return r;
	p->have = true;
	p->layer_exists = p->rec.target && *p->rec.target &&
			  rec_exists(s->layers, txn, p->rec.target, strlen(p->rec.target), &r);
	return r;
}

int commit_settle(lyr_store *s, const char *ref_id, bool repair,
		  void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx, bool *ret_found)
{
	peek_ctx p = {ref_id, {0}, false, false};
	int r = txn_run(s, peek_txn, &p);
	*ret_found = false;
	if (r < 0)
		goto out;
	if (p.rec.state != REF_COMMITTING || owner_alive(&p.rec.owner))
		goto out;
	*ret_found = true;
	const char *x = p.rec.target;
	char layerdir[128], diff[160], upper[128];
	snprintf(layerdir, sizeof layerdir, "layers/%s", layer_hex(x));
	snprintf(diff, sizeof diff, "%s/diff", layerdir);
	snprintf(upper, sizeof upper, "refs/%s/upper", ref_id);
	bool has_upper = dir_exists(s, upper);

	if (!*x) {
		if (repair)
			r = txn_run(s, idle_txn, (void *)ref_id);
		report(fn, ctx, repair && r >= 0, "ref %s: interrupted commit before hashing (%s)",
		       ref_id, repair ? "rolled back" : "to roll back");
	} else if (p.layer_exists || (!has_upper && dir_exists(s, diff))) {
		if (repair) {
			finish_ctx f = {ref_id};
			r = txn_run(s, finish_txn, &f);
			if (r >= 0)
				r = dir_discard(s, "refs", ref_id, "commit");
			if (r >= 0)
				r = 1;
		}
		report(fn, ctx, repair && r >= 0, "ref %s: interrupted commit to layer %s (%s)",
		       ref_id, x, repair ? "rolled forward" : "to roll forward");
	} else if (has_upper) {
		if (repair) {
			r = lyr_tree_remove(s->rootfd, layerdir);
			if (r >= 0)
				r = txn_run(s, idle_txn, (void *)ref_id);
		}
		report(fn, ctx, repair && r >= 0, "ref %s: interrupted commit to layer %s (%s)",
		       ref_id, x, repair ? "rolled back" : "to roll back");
	} else {
		report(fn, ctx, false, "ref %s: interrupted commit to layer %s lost the upper directory",
		       ref_id, x);
		*ret_found = true;
		r = 0;
	}
out:
	if (p.have)
		ref_rec_clear(&p.rec);
	return r;
}

int ref_settle(lyr_store *s, const char *ref_id)
{
	int r = ns_lock(s);
	if (r < 0)
		return r;
	bool found;
	r = commit_settle(s, ref_id, true, NULL, NULL, &found);
	ns_unlock(s);
	return r == 1 ? -ENOENT : (r < 0 ? r : 0);
}
