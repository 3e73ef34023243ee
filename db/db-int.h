/* Private to db/: the store handle, the transaction runner, record encodings, process
 * identity and the namespace lock.  Prototypes are grouped under the file that defines them.
 * Only db/ includes this header (it pulls in <db.h>). */
#pragma once

#include <db.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "layerfs/store.h"

/* A live process: pid plus its start time in clock ticks since boot, so a recycled pid is
 * not mistaken for the process that wrote a record. */
typedef struct lyr_owner {
	int32_t pid;
	uint64_t start;
} lyr_owner;

#define DAMAGE_MAX 10

struct lyr_store {
	char *root;
	char *dbdir;
	int rootfd; /* O_DIRECTORY of the root; every path below is opened *at() it */
	int lockfd; /* ROOT/lock: flock serialises directory moves with their records */
	int lock_depth;
	struct shared_env *shared;
	/* The shared environment's handles, bound by txn_run for the transaction it runs. */
	DB_ENV *env;
	DB *meta, *layers, *refs, *tags, *uses, *hashes, *actions;
	lyr_owner self;
	unsigned mode; /* LYR_OPEN_* */
	/* Damage found (and with LYR_OPEN_REPAIR mended) while opening; fsck reports it. */
	struct damage {
		char text[400];
		bool fixed;
	} damage[DAMAGE_MAX];
	int ndamage;
};

/* Berkeley DB return values the runner retries on; every other value is converted to -errno
 * by dbx() at the call site. */
static inline bool db_retryable(int r)
{
	return r == DB_LOCK_DEADLOCK || r == DB_LOCK_NOTGRANTED || r == DB_RUNRECOVERY;
}

/* env.c */
int dbx(int r);
/* Notes damage for fsck to report (FIXED: mended already). */
void damage_add(lyr_store *s, bool fixed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int env_open(lyr_store *s);
void env_close(lyr_store *s);
typedef int (*txn_fn)(lyr_store *s, DB_TXN *txn, void *ctx);
int txn_run(lyr_store *s, txn_fn fn, void *ctx);
void db_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Record get/put/del inside TXN; get returns a heap copy in *ret and its length. */
int rec_get(DB *db, DB_TXN *txn, const void *key, size_t klen, void **ret, size_t *ret_len);
int rec_put(DB *db, DB_TXN *txn, const void *key, size_t klen, const void *val, size_t vlen,
	    uint32_t flags);
int rec_del(DB *db, DB_TXN *txn, const void *key, size_t klen);
bool rec_exists(DB *db, DB_TXN *txn, const void *key, size_t klen, int *ret_err);
/* Calls FN for every record of DB inside TXN, in key order.  FN returns 0 to go on, REC_DELETE
 * to delete the record it was given and go on, or -errno to stop (returned).  KEY and VAL are
 * valid during the call only.  A retried transaction runs the whole walk again. */
#define REC_DELETE 1
typedef int (*rec_fn)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen);
int rec_each(DB *db, DB_TXN *txn, rec_fn fn, void *ctx);

/* record.c: records as fixed little-endian fields and u32-length-prefixed strings. */
#define REC_LAYER_VERSION 1
#define REC_REF_VERSION 1
#define REC_TAG_VERSION 1

typedef struct layer_rec {
	uint64_t size, entries;
	int64_t created;
	char *parent, *digest, *desc;
} layer_rec;

enum { REF_IDLE = 0, REF_COMMITTING = 1 };

typedef struct ref_rec {
	uint16_t state;
	int64_t created;
	char *parent, *desc;
	lyr_owner mount_owner; /* pid 0: not mounted */
	char *mountpoint;
	lyr_owner owner;	     /* who runs the commit (state COMMITTING) */
	char *target, *digest, *tag; /* intent: layer the commit produces ("" until hashed) */
	uint64_t size, entries;
	int64_t stamp; /* time the intent was recorded */
} ref_rec;

void layer_rec_clear(layer_rec *r);
void ref_rec_clear(ref_rec *r);
int layer_rec_encode(const layer_rec *r, void **ret, size_t *ret_len);
int layer_rec_decode(const void *buf, size_t len, layer_rec *ret);
int ref_rec_encode(const ref_rec *r, void **ret, size_t *ret_len);
int ref_rec_decode(const void *buf, size_t len, ref_rec *ret);
int tag_rec_encode(const char *layer, void **ret, size_t *ret_len);
int tag_rec_decode(const void *buf, size_t len, char **ret_layer);

/* Reads records by ID inside TXN (-ENOENT when missing). */
int layer_load(lyr_store *s, DB_TXN *txn, const char *id, layer_rec *ret);
int ref_load(lyr_store *s, DB_TXN *txn, const char *id, ref_rec *ret);
int ref_store(lyr_store *s, DB_TXN *txn, const char *id, const ref_rec *r);
int layer_store(lyr_store *s, DB_TXN *txn, const char *id, const layer_rec *r);

/* "uses" index: key "<layer id>\0<kind><name>" for every child layer (L), ref (R) and tag
 * (T) that keeps a layer alive. */
#define USE_LAYER 'L'
#define USE_REF 'R'
#define USE_TAG 'T'
int use_put(lyr_store *s, DB_TXN *txn, const char *layer, char kind, const char *name);
int use_del(lyr_store *s, DB_TXN *txn, const char *layer, char kind, const char *name);
/* Calls FN for every use of LAYER (kind, name); FN returns 0 to go on, 1 to stop, <0 error.
 * Returns the number of uses visited or -errno. */
int use_each(lyr_store *s, DB_TXN *txn, const char *layer,
	     int (*fn)(void *ctx, char kind, const char *name), void *ctx);

/* proc.c */
int owner_self(lyr_owner *ret);
int owner_of(pid_t pid, lyr_owner *ret);
bool owner_alive(const lyr_owner *o);
/* A mount record with no serving process: kernel overlayfs (ref.c).  Its owner is
 * {MOUNT_KERNEL, mount ID}; it is live while that mount is still at its mountpoint. */
#define MOUNT_KERNEL (-1)
/* True when a ref's mount record (mount_owner set) names a live mount. */
bool mount_alive(const lyr_owner *owner, const char *mountpoint);
/* Temporary names below tmp/: "<op>-<pid>-<start>-<rand>", so fsck can tell whose they are. */
void tmp_name(const lyr_store *s, const char *op, char *ret, size_t len);
/* Owner of a temporary name; false when NAME is not one. */
bool tmp_owner(const char *name, lyr_owner *ret);
void rand_hex(char *out, size_t nbytes);

/* modes.c: the directories below the root, all 0700 (the root too). */
#define STORE_TOP_DIRS 5
extern const char *const store_top_dirs[STORE_TOP_DIRS];

/* store.c */
int ns_lock(lyr_store *s);
void ns_unlock(lyr_store *s);
int64_t now_seconds(void);
/* "sha256:<hex>" -> "<hex>" (the directory name of a layer). */
const char *layer_hex(const char *id);
/* Moves ROOT/SUB/NAME into tmp/ under a temporary name for OP (RET_TMP gets it, "" when
 * there was nothing); tmp_remove deletes it.  Stashing is one rename, so it can happen
 * under the namespace lock and the slow removal after it. */
int dir_stash(lyr_store *s, const char *sub, const char *name, const char *op, char *ret_tmp,
	      size_t len);
int tmp_remove(lyr_store *s, const char *tmp);
/* Both at once; ENOENT counts as success. */
int dir_discard(lyr_store *s, const char *sub, const char *name, const char *op);

/* commit.c: finishes or undoes the commit recorded on a ref whose owner died.  Must hold the
 * namespace lock.  FN (may be NULL) gets a line of text describing what was done. */
int commit_settle(lyr_store *s, const char *ref_id, bool repair,
		  void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx,
		  bool *ret_found);

/* Settles a dead process's commit on REF_ID, if any, under the namespace lock.  Returns 0
 * (nothing to do, or rolled back), -ENOENT when it was rolled forward (the ref is gone). */
int ref_settle(lyr_store *s, const char *ref_id);

/* layer.c */
int tag_point_txn(lyr_store *s, DB_TXN *txn, const char *name, const char *layer);
/* layer.c: adds the filled, hashed tmp/TMP as layer lyr_layer_id(PARENT, DIGEST) (see there). */
int layer_adopt(lyr_store *s, int tmpfd, const char *tmp, const char *parent,
		const char *digest, const lyr_diff_list *files, const char *desc, const char *tag,
		char *ret_id);

/* filelist.c: a layer's file list (layers/<hex>/filelist).  Write creates or replaces NAME in
 * DIRFD (removed again on failure); read returns -ENOENT when missing, -EBADMSG when damaged. */
#define FILELIST_NAME "filelist"
int filelist_write(int dirfd, const char *name, const lyr_diff_list *l);
int filelist_read(int dirfd, const char *name, lyr_diff_list *ret);
/* One L(...) field (decimal length, ':', bytes) at *POS of BUF (LEN bytes): its bytes and
 * length, *POS moved past it; or -EBADMSG. */
int filelist_field(const char *buf, size_t len, size_t *pos, const char **ret, size_t *ret_len);

/* verify.c: a layer marked as failed verification gets FROM (a directory at FROMFD whose
 * content was just hashed to the layer's ID) in place of TO (below the root: "layers/<hex>" or
 * "layers/<hex>/diff"), in one atomic exchange: FROM then holds the changed copy, for the
 * caller to remove.  The mark and the layer's digest cache entries go.  Returns 1 when done,
 * 0 when the layer is not marked, or -errno.  Hold the namespace lock. */
int layer_restore(lyr_store *s, const char *id, int fromfd, const char *from, const char *to);

/* verify_cache.c: the digest cache entries of a layer being verified. */
typedef struct centry {
	char kind; /* f, d or h (db/hashcache.c) */
	char *path;
	char digest[LYR_DIGEST_TEXT_LEN];
	char fresh[LYR_DIGEST_TEXT_LEN]; /* computed in the verifying read ("" when not) */
	bool checked, stale;
} centry;

typedef struct centries {
	const char *hex; /* the layer's ID without "sha256:" */
	centry *v;
	size_t n;
} centries;

void centries_clear(centries *c);
/* The entries of layer C->hex, sorted by kind and path. */
int centries_load(lyr_store *s, centries *c);
/* Drops the stale entries (or all), a thousand per transaction. */
int centries_drop(lyr_store *s, const centries *c, bool stale_only);
/* lyr_diff_opts.file_prefix with CTX a centries: a file with an entry gets its content-hash
 * digest from the verifying read; centries_fresh then takes them from the listing NOW and sets
 * those entries' checked and stale. */
int centries_file_prefix(void *ctx, int fd, const struct stat *st, const char *path, uint8_t **ret,
			 size_t *ret_len);
void centries_fresh(centries *c, const lyr_diff_list *now);
/* Recomputes every entry not checked yet through the content hash of the layer's view (CHAIN:
 * its ID and its ancestors', N of them) on THREADS threads (0: all); entries the hash never
 * reaches stay unchecked.  0 or -errno. */
int centries_check(lyr_store *s, centries *c, char **chain, size_t n, unsigned threads);

/* adopt.c: notes in a layer's or ref's directory (DIR relative to the root, NAME "parent" or
 * "pending"; see adopt.c) and rebuilding lost records from directories.  Must hold the
 * namespace lock. */
#define NOTE_PARENT "parent"
#define NOTE_PENDING "pending"
int note_put(lyr_store *s, const char *dir, const char *name, const char *text);
/* A note that is not a regular file, too long for BUF or holds a NUL is -EBADMSG; so is a
 * parent note that is not "" or a layer ID, and a pending note that names no operation on a
 * layer (LAYER) or a ref. */
int note_get(lyr_store *s, const char *dir, const char *name, char *buf, size_t len);
int note_get_parent(lyr_store *s, const char *dir, char *buf, size_t len);
int note_get_pending(lyr_store *s, const char *dir, bool layer, char *buf, size_t len);
void note_del(lyr_store *s, const char *dir, const char *name);
bool is_store_id(const char *name); /* 64 lower-case hex digits */
/* Records layer directory layers/HEX again: its ID is recomputed from the diff and the parent
 * (its parent note, else the first of CANDIDATES[0..N) that gives the name).  On failure
 * *RET_WHY says why for people ("its diff does not give its ID with any parent", ...). */
int adopt_layer(lyr_store *s, const char *hex, char *const *candidates, size_t n,
		const char **ret_why);
/* Records refs/ID again from its parent note (idle, not mounted, no description). */
int adopt_ref(lyr_store *s, const char *id, const char **ret_why);

/* remove.c */
int layer_remove(lyr_store *s, const char *id, uint64_t *ret_size);
int ref_remove(lyr_store *s, const char *id, uint64_t *ret_size);
