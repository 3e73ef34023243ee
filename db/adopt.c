/* Directories without records: the notes layers and refs keep beside their data, and fsck's
 * handling of a layers/ or refs/ directory the database does not know.
 *
 * Two small files live in a layer's or ref's directory, next to diff/ or upper/:
 *   parent   the parent layer ID ("" for a base layer or a scratch ref), written before the
 *            directory is renamed into layers/ or refs/, never changed;
 *   pending  the operation under way ("import", "new", "commit", "rm"), written before the
 *            rename or transaction it covers and removed after the transaction commits, all
 *            under the namespace lock.  Whoever holds the lock and finds one sees an
 *            operation whose process died.
 *
 * A directory without a record is therefore one of: an operation that died (pending says
 * which, and fsck finishes or undoes it exactly as the operation would have), or a record the
 * database lost (no pending).  A lost layer record is rebuilt from the directory: its ID is
 * recomputed from the diff and the parent and must equal the directory's name, so nothing is
 * adopted under a wrong ID; a lost ref record is rebuilt from its parent note.  Layer data is
 * never deleted here except to finish an rm or undo an import that died: removing data is
 * only ever rm's and prune's. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"
#include "layerfs/tree.h"

static bool is_hex64(const char *name)
{
	return strlen(name) == 64 && strspn(name, "0123456789abcdef") == 64;
}

int note_put(lyr_store *s, const char *dir, const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	_cleanup_close_ int fd =
	    openat(s->rootfd, path,
		   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int note_get(lyr_store *s, const char *dir, const char *name, char *buf, size_t len)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	/* O_NONBLOCK: a fifo put in a note's place must not hang whoever reads it */
	_cleanup_close_ int fd =
	    openat(s->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size >= len)
		return -EBADMSG;
	ssize_t n = read(fd, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return memchr(buf, '\0', (size_t)n) ? -EBADMSG : 0; /* zeroed by a damaged disk */
}

int note_get_parent(lyr_store *s, const char *dir, char *buf, size_t len)
{
	int r = note_get(s, dir, NOTE_PARENT, buf, len);
	if (r < 0)
		return r;
	size_t plen = strlen(LYR_DIGEST_PREFIX);
	bool id = strncmp(buf, LYR_DIGEST_PREFIX, plen) == 0 && is_hex64(buf + plen);
	return !*buf || id ? 0 : -EBADMSG;
}

int note_get_pending(lyr_store *s, const char *dir, bool layer, char *buf, size_t len)
{
	static const char *const layer_ops[] = {"import", "rm"}, *const ref_ops[] = {
								     "new", "commit", "rm"};
	int r = note_get(s, dir, NOTE_PENDING, buf, len);
	if (r < 0)
		return r;
	const char *const *ops = layer ? layer_ops : ref_ops;
	size_t n = layer ? LYR_ARRAY_SIZE(layer_ops) : LYR_ARRAY_SIZE(ref_ops);
	for (size_t i = 0; i < n; i++)
		if (strcmp(buf, ops[i]) == 0)
			return 0;
	return -EBADMSG;
}

void note_del(lyr_store *s, const char *dir, const char *name)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlinkat(s->rootfd, path, 0);
}

/* Creation time of a rebuilt record: when the directory last changed (its commit, import
 * or creation), which is as close as the directory can tell. */
static int64_t dir_time(lyr_store *s, const char *dir)
{
	struct stat st;
	return fstatat(s->rootfd, dir, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (int64_t)st.st_mtime
								      : now_seconds();
}

typedef struct adopt_ctx {
	const char *id;
	layer_rec l;
	ref_rec r;
	bool is_layer;
} adopt_ctx;

static int adopt_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	adopt_ctx *a = ctx;
	int r;
	DB *db = a->is_layer ? s->layers : s->refs;
	if (rec_exists(db, txn, a->id, strlen(a->id), &r) || r)
		return r;
	if (a->is_layer) {
		r = layer_store(s, txn, a->id, &a->l);
		if (r == 0 && *a->l.parent)
			r = use_put(s, txn, a->l.parent, USE_LAYER, a->id);
	} else {
		r = ref_store(s, txn, a->id, &a->r);
		if (r == 0 && *a->r.parent)
			r = use_put(s, txn, a->r.parent, USE_REF, a->id);
	}
	return r;
}

/* The parent of layer directory HEX whose diff has DIGEST: the one its parent note names, or
 * for layers written before notes existed, the first of CANDIDATES (layer IDs; "" for none)
 * with which the digest gives the directory's name.  Returns a pointer into CANDIDATES or to
 * a static "", or NULL when none fits. */
static const char *find_parent(const char *hex, const char *digest, const char *note,
			       char *const *candidates, size_t n)
{
	char want[LYR_ID_MAX], id[LYR_DIGEST_TEXT_LEN];
	snprintf(want, sizeof want, "%s%s", LYR_DIGEST_PREFIX, hex);
	if (note) {
		lyr_layer_id(note, digest, id);
		return strcmp(id, want) == 0 ? note : NULL;
	}
	lyr_layer_id("", digest, id);
	if (strcmp(id, want) == 0)
		return "";
	for (size_t i = 0; i < n; i++) {
		lyr_layer_id(candidates[i], digest, id);
		if (strcmp(id, want) == 0 && strcmp(candidates[i], want) != 0)
			return candidates[i];
	}
	return NULL;
}

int adopt_layer(lyr_store *s, const char *hex, char *const *candidates, size_t n,
		const char **ret_why)
{
	char dir[128], diff[160], note[LYR_ID_MAX + 8], digest[LYR_DIGEST_TEXT_LEN],
	    errpath[PATH_MAX];
	snprintf(dir, sizeof dir, "layers/%s", hex);
	snprintf(diff, sizeof diff, "%s/diff", dir);
	_cleanup_close_ int fd = openat(s->rootfd, diff, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		*ret_why = "it has no diff directory";
		return -errno;
	}
	int r = note_get_parent(s, dir, note, sizeof note);
	if (r < 0 && r != -ENOENT && r != -EBADMSG) {
		*ret_why = "its parent note cannot be read";
		return r;
	}
	/* a damaged note is no note: the parent is then found by the ID, as before notes */
	bool noted = r == 0, damaged = r == -EBADMSG;
	r = lyr_hash_diff(fd, NULL, digest, errpath);
	if (r < 0) {
		*ret_why = "its diff cannot be read";
		return r;
	}
	const char *parent = find_parent(hex, digest, noted ? note : NULL, candidates, n);
	if (!parent) {
		*ret_why = noted ? "its diff and parent note do not give its ID"
				 : "its diff does not give its ID with any parent";
		return -EBADMSG;
	}
	char id[LYR_ID_MAX];
	snprintf(id, sizeof id, "%s%s", LYR_DIGEST_PREFIX, hex);
	adopt_ctx a = {.id = id, .is_layer = true};
	a.l = (layer_rec){
	    .created = dir_time(s, dir), .parent = (char *)parent, .digest = digest, .desc = ""};
	r = lyr_tree_usage(fd, &a.l.size, &a.l.entries);
	if (r < 0) {
		*ret_why = "its diff cannot be measured";
		return r;
	}
	if (damaged)
		note_del(s, dir, NOTE_PARENT);
	if (!noted)
		note_put(s, dir, NOTE_PARENT, parent); /* found once, kept for next time */
	r = txn_run(s, adopt_txn, &a);
	if (r < 0)
		*ret_why = "the database refused the record";
	return r;
}

int adopt_ref(lyr_store *s, const char *id, const char **ret_why)
{
	char dir[128], sub[160], note[LYR_ID_MAX + 8];
	snprintf(dir, sizeof dir, "refs/%s", id);
	int r = note_get_parent(s, dir, note, sizeof note);
	if (r < 0) {
		*ret_why = r == -ENOENT	   ? "it has no parent note"
			   : r == -EBADMSG ? "its parent note is not a layer ID"
					   : "its parent note cannot be read";
		return r;
	}
	snprintf(sub, sizeof sub, "%s/upper", dir);
	struct stat st;
	if (fstatat(s->rootfd, sub, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
		*ret_why = "it has no upper directory";
		return -ENOENT;
	}
	snprintf(sub, sizeof sub, "%s/work", dir);
	if (mkdirat(s->rootfd, sub, 0700) < 0 && errno != EEXIST) {
		*ret_why = "its work directory cannot be made";
		return -errno;
	}
	adopt_ctx a = {.id = id, .is_layer = false};
	a.r = (ref_rec){.created = dir_time(s, dir), .parent = note, .desc = ""};
	r = txn_run(s, adopt_txn, &a);
	if (r < 0)
		*ret_why = "the database refused the record";
	return r;
}

bool is_store_id(const char *name)
{
	return is_hex64(name);
}

typedef struct unrec_ctx {
	const char *sub;
	char **names;
	size_t n;
	size_t lost;
	char first[LYR_ID_MAX];
} unrec_ctx;

typedef struct target_ctx {
	const char *id;
	bool hit;
} target_ctx;

static int is_target(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key, (void)klen;
	target_ctx *t = ctx;
	ref_rec rec;
	int r = ref_rec_decode(val, vlen, &rec);
	if (r)
		return r;
	t->hit |= rec.state == REF_COMMITTING && rec.target && strcmp(rec.target, t->id) == 0;
	ref_rec_clear(&rec);
	return 0;
}

/* Counts the directories of NAMES that have no record, no pending note and (layers) are no
 * pending commit's target. */
static int unrecorded_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	unrec_ctx *u = ctx;
	bool layers = strcmp(u->sub, "layers") == 0;
	u->lost = 0;
	for (size_t i = 0; i < u->n; i++) {
		char id[LYR_ID_MAX + 8], dir[128], op[32];
		snprintf(id, sizeof id, "%s%s", layers ? LYR_DIGEST_PREFIX : "", u->names[i]);
		snprintf(dir, sizeof dir, "%s/%s", u->sub, u->names[i]);
		int r;
		if (rec_exists(layers ? s->layers : s->refs, txn, id, strlen(id), &r) || r) {
			if (r)
				return r;
			continue;
		}
		if (note_get_pending(s, dir, layers, op, sizeof op) == 0)
			continue;
		if (layers) {
			target_ctx t = {id, false};
			r = rec_each(s->refs, txn, is_target, &t);
			if (r < 0)
				return r;
			if (t.hit)
				continue;
		}
		if (u->lost++ == 0 || strcmp(u->names[i], u->first) < 0)
			snprintf(u->first, sizeof u->first, "%s", u->names[i]);
	}
	return 0;
}

static int check_sub(lyr_store *s, const char *sub, unrec_ctx *u)
{
	_cleanup_close_ int fd = openat(s->rootfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(fd);
	if (!d)
		return -errno;
	fd = -1;
	_cleanup_closedir_ DIR *dir = d;
	u->sub = sub;
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(dir))) {
		if (!is_hex64(de->d_name))
			continue;
		char **nv = realloc(u->names, (u->n + 1) * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		u->names = nv;
		if (!(nv[u->n] = strdup(de->d_name)))
			return -ENOMEM;
		u->n++;
	}
	r = txn_run(s, unrecorded_txn, u);
	if (r >= 0 && u->lost) {
		/* Operations rename and record under the namespace lock: look again holding it. */
		r = ns_lock(s);
		if (r >= 0) {
			r = txn_run(s, unrecorded_txn, u);
			ns_unlock(s);
		}
	}
	return r;
}

int lyr_store_check_records(lyr_store *s)
{
	static const char *const subs[] = {"layers", "refs"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(subs); i++) {
		unrec_ctx u = {0};
		int r = check_sub(s, subs[i], &u);
		for (size_t j = 0; j < u.n; j++)
			free(u.names[j]);
		free(u.names);
		if (r < 0)
			return r;
		if (u.lost) {
			db_seterr("store '%s': the database has no record of %s/%s%s: it lost "
				  "records; run 'layerfs fsck --repair' (it re-adopts them)",
				  s->root, subs[i], u.first,
				  u.lost > 1 ? " and other directories" : "");
			return -EUCLEAN;
		}
	}
	return 0;
}
