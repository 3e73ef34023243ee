/* db/: the layer store.  A store is one directory holding a transactional Berkeley DB
 * environment (layer, ref, tag, mount records; room for the hash and action caches), the
 * immutable layer diff directories and the refs' upper and work directories.  This header
 * is the only interface to it; nothing outside db/ includes <db.h>.  docs/store-format.md
 * describes the layout, records, crash order, fault points and fsck findings.
 *
 * IDs: a layer ID is "sha256:<64 hex>" (see hash.h); a ref ID is 64 hex digits with no
 * prefix.  Functions that take an ID from a user go through lyr_store_resolve first; the
 * others take full IDs.
 *
 * Errors are -errno; after a failure lyr_store_last_error() has a message for people.  Many
 * processes may use one store at once (every change is a Berkeley DB transaction, retried
 * on conflicts and after recovery).  A lyr_store is used by one thread at a time; open one
 * per thread (handles of a process share one environment).  Do not use a handle in a child
 * after fork(): open a new one there. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "layerfs/tree.h"

typedef struct lyr_store lyr_store;

#define LYR_REF_ID_LEN 65 /* 64 hex + NUL */
#define LYR_ID_MAX 72     /* fits a layer ID text and a ref ID */
#define LYR_MIN_PREFIX 12 /* hex digits a user must give at least */

/* Current on-disk format version; a store with a higher one is refused (-EPROTO). */
#define LYR_STORE_FORMAT 1

/* Opens (creating when missing or empty, mkdir -p) the store at ROOT; the root is made absolute, so
 * paths handed out stay valid after chdir.  Returns 0, or -errno: -EROFS when the store is on
 * a read-only filesystem (a store is never opened read-only), -EPROTO when it was written by
 * a newer format (nothing is changed then), -EUCLEAN when its database is damaged or lost
 * records (see LYR_OPEN_CHECK; the message names the file and the damage).  Takes well under
 * a millisecond on an existing store.  Interrupted commits are not settled here (see
 * lyr_store_fsck). */
int lyr_store_open(const char *root, lyr_store **ret);

/* How lyr_store_open_mode treats ROOT.  Without LYR_OPEN_CREATE only an existing store is
 * opened (-ENOENT "no store at ..." for a missing or empty directory): read-only commands
 * never create one.  With it, a store is created in a missing or empty directory.  Either way
 * a directory that is neither empty nor a store (it has no db/ or layers/) is refused with
 * -ENOTEMPTY and left alone. */
enum {
	LYR_OPEN_EXISTING = 0,
	LYR_OPEN_CREATE = 1 << 0,
	/* For fsck.  A store whose database is damaged is refused by other opens (-EUCLEAN, the
	 * message names the damaged file and what is wrong with it, and suggests fsck
	 * --repair).  LYR_OPEN_CHECK opens it anyway without changing it (a damaged table is
	 * replaced by an empty one in memory) so fsck can report; LYR_OPEN_REPAIR mends the
	 * database: a damaged table file is moved aside to db/FILE.damaged and made anew, a
	 * missing db/ or format record is made again.  Either way lyr_store_fsck reports the
	 * damage first and then rebuilds what the directories allow (layers, refs, parents,
	 * sizes, the uses index); tags, descriptions and caches of a lost table stay lost. */
	LYR_OPEN_CHECK = 1 << 1,
	LYR_OPEN_REPAIR = 1 << 2,
};
int lyr_store_open_mode(const char *root, unsigned mode, lyr_store **ret);
void lyr_store_free(lyr_store *s);
const char *lyr_store_root(const lyr_store *s);

/* A message for people about the most recent failure of a store function on this thread,
 * naming the object and the cause ("store '/x': format 2 is newer than this layerfs supports
 * (1)"); "" before any.  Successful calls do not clear it: read it right after a failure. */
const char *lyr_store_last_error(void);

/* Default store directory: $LAYERFS_ROOT, else $XDG_DATA_HOME/layerfs (~/.local/share/layerfs),
 * or /var/lib/layerfs for root.  Returns a heap string or NULL. */
char *lyr_store_default_root(void);

typedef enum { LYR_OBJ_NONE = 0, LYR_OBJ_LAYER, LYR_OBJ_REF } lyr_obj_kind;

/* Resolves what a user typed, in this order: a full ID (64 hex digits: a layer, else a ref;
 * "sha256:<64 hex>": a layer only), a tag name, a unique prefix of at least LYR_MIN_PREFIX hex
 * digits (upper case accepted; with "sha256:" only layers are candidates).  Returns 0 and
 * fills RET_KIND and RET_ID (LYR_ID_MAX bytes); -ENOENT unknown, -EINVAL malformed (fewer than
 * LYR_MIN_PREFIX hex digits, "sha256:" with non-hex, a string that is neither an ID nor a
 * valid tag name), -EEXIST ambiguous (more than one layer or ref starts with the prefix). */
int lyr_store_resolve(lyr_store *s, const char *text, lyr_obj_kind *ret_kind, char *ret_id);

typedef struct lyr_layer_info {
	char id[LYR_ID_MAX];
	char parent[LYR_ID_MAX]; /* "" for a base layer */
	char diff_digest[LYR_DIGEST_TEXT_LEN];
	uint64_t size;    /* bytes of the layer's own diff */
	uint64_t entries; /* entries in its own diff */
	int64_t created;  /* Unix time, seconds */
	char *desc;       /* heap, may be "" */
	char **tags;      /* heap, NULL-terminated */
	unsigned children, refs; /* layers and refs that have this layer as parent */
} lyr_layer_info;

typedef struct lyr_ref_info {
	char id[LYR_ID_MAX];
	char parent[LYR_ID_MAX]; /* "" for scratch */
	int64_t created;
	char *desc;
	char *mountpoint; /* NULL when not mounted (a stale record is reported as not mounted) */
	pid_t mount_pid;   /* the serving process; 0 for a kernel overlayfs mount */
	bool mount_kernel; /* mounted by kernel overlayfs (no serving process) */
	uint64_t size; /* bytes in the upper dir (filled by lyr_store_du only) */
} lyr_ref_info;

void lyr_layer_info_clear(lyr_layer_info *info);
void lyr_ref_info_clear(lyr_ref_info *info);

/* -ENOENT when missing; lyr_ref_get: -EINVAL for a malformed ref ID, and a stale mount record
 * (its process is gone or is another process with a reused pid) is cleared. */
int lyr_layer_get(lyr_store *s, const char *id, lyr_layer_info *ret);
int lyr_ref_get(lyr_store *s, const char *id, lyr_ref_info *ret);

/* Lists every layer / ref; the callback returns 0 to go on or a negative errno to stop. */
int lyr_layer_list(lyr_store *s, int (*fn)(void *ctx, const lyr_layer_info *), void *ctx);
int lyr_ref_list(lyr_store *s, int (*fn)(void *ctx, const lyr_ref_info *), void *ctx);

/* Diff directories of LAYER_ID and its ancestors, topmost first, as a NULL-terminated heap
 * array of heap strings (free with lyr_strv_free).  The paths stay valid while the layers
 * exist. */
int lyr_layer_chain(lyr_store *s, const char *layer_id, char ***ret_dirs);
/* Upper and work directories of a ref (absolute heap strings); -EINVAL malformed ID, -ENOENT
 * unknown ref.  Callers may fill the upper directly (as a mount does). */
int lyr_ref_dirs(lyr_store *s, const char *ref_id, char **ret_upper, char **ret_work);
/* Bytes and entries currently in a ref's upper dir (walks it). */
int lyr_ref_usage(lyr_store *s, const char *ref_id, uint64_t *ret_bytes, uint64_t *ret_entries);
void lyr_strv_free(char **v);

/* import: copies SRC_DIR (with the root directory's mode, owner and times) into a new base
 * layer whose ID is lyr_layer_id("", lyr_hash_diff(copy)), reusing an identical existing
 * layer; tags it with TAG when non-NULL (-EINVAL bad tag, checked first).  On failure nothing
 * in the store changes and ERR (may be NULL) names the failing source path ("" for SRC_DIR
 * itself, e.g. -ENOENT) and errno; -ENOSPC and -EACCES come from the copy.  RET_ID gets the
 * layer ID (LYR_ID_MAX bytes). */
int lyr_store_import(lyr_store *s, const char *src_dir, const char *desc, const char *tag,
		     const lyr_progress *progress, lyr_tree_error *err, char *ret_id);

/* Staged layers: a new layer built in place (a tar extracted entry by entry).  lyr_stage_new
 * makes an empty staging directory in the store's tmp/ (OP names the operation, e.g. "tar");
 * the caller fills it through lyr_stage_fd (an O_DIRECTORY fd of the layer's diff root, owned
 * by the stage) with the store's own markers (whiteouts 0/0, opaque xattrs) where it needs
 * them.  lyr_stage_commit hashes it and adds it exactly as import does: the layer ID is
 * lyr_layer_id(PARENT_ID or "", lyr_hash_diff(diff)), an identical existing layer is reused,
 * TAG (may be NULL; -EINVAL when invalid) is pointed at it; -ENOLINK when PARENT_ID has no
 * record.  RET_ID gets the layer ID (LYR_ID_MAX bytes).  lyr_stage_free (NULL-safe) deletes
 * a stage that was not committed, so a failed fill changes nothing in the store. */
typedef struct lyr_stage lyr_stage;
int lyr_stage_new(lyr_store *s, const char *op, lyr_stage **ret);
int lyr_stage_fd(const lyr_stage *st);
int lyr_stage_commit(lyr_stage *st, const char *parent_id, const char *desc, const char *tag,
		     const lyr_progress *progress, char *ret_id);
void lyr_stage_free(lyr_stage *st);

/* The image config kept with layer ID (the top layer of a loaded image): set replaces it
 * (-ENOENT when the layer does not exist); get returns a heap NUL-terminated copy, -ENOENT when
 * the layer has none.  Not part of the layer's content or ID (docs/store-format.md). */
int lyr_layer_config_set(lyr_store *s, const char *id, const char *json, size_t len);
int lyr_layer_config_get(lyr_store *s, const char *id, char **ret);
/* The diff_id (digest of the uncompressed layer tar) a layer was loaded from, and the layer on
 * PARENT_ID (NULL or "": a base layer) loaded from DIFF_ID: 0 with RET_ID (LYR_ID_MAX bytes),
 * -ENOENT when there is none. */
int lyr_layer_diff_id_set(lyr_store *s, const char *id, const char *diff_id);
int lyr_layer_find_diff_id(lyr_store *s, const char *parent_id, const char *diff_id,
			   char *ret_id);
/* Other notes of the same kind (NAME a fixed file name chosen by the caller, such as
 * "blob-gzip": what a save of the layer wrote), with the same semantics. */
int lyr_layer_meta_set(lyr_store *s, const char *id, const char *name, const char *data,
		       size_t len);
int lyr_layer_meta_get(lyr_store *s, const char *id, const char *name, char **ret);

/* new: a mutable ref on PARENT_ID (a full layer ID, or NULL for scratch).  RET_ID gets the ref
 * ID (LYR_ID_MAX bytes). */
int lyr_ref_new(lyr_store *s, const char *parent_id, const char *desc, char *ret_id);

/* commit: freezes the ref's upper dir into a layer (rename, no copy; hashing only the upper,
 * never the parent) and removes the ref.  The layer ID is lyr_layer_id(parent,
 * lyr_hash_diff(upper)); size and entries are measured then.  An identical existing layer is
 * reused and the ref's upper discarded.  Tags the layer with TAG when non-NULL.  -EINVAL bad
 * tag or ref ID, -ENOENT unknown ref, -EBUSY mounted (lyr_ref_get tells where) or being
 * committed by another live process; on failure the ref is left as it was.  An interrupted
 * commit of this ref by a dead process is settled first (if it is rolled forward, the ref is
 * gone: -ENOENT). */
int lyr_ref_commit(lyr_store *s, const char *ref_id, const char *tag, const lyr_progress *progress,
		   char *ret_layer_id);

/* release: drops a ref and its directories (-EBUSY when mounted or being committed, -ENOENT
 * unknown, -EINVAL malformed). */
int lyr_ref_release(lyr_store *s, const char *ref_id);

/* Records that REF_ID is mounted at MOUNTPOINT by PID (-EBUSY if a live record of another
 * process exists or the ref is being committed; one held by the calling process is replaced,
 * so a mount command can claim a ref first and then hand it to the serving process it
 * forked), or clears that record.  PID's start time is recorded too, so a reused pid does not
 * count; -ESRCH when PID is not a live process.  A record whose process is gone (or a zombie)
 * is stale: it counts as not mounted and is cleared when seen. */
int lyr_ref_set_mount(lyr_store *s, const char *ref_id, const char *mountpoint, pid_t pid);
int lyr_ref_clear_mount(lyr_store *s, const char *ref_id);
/* Records that REF_ID is mounted at MOUNTPOINT by kernel overlayfs, as the mount with ID MNT_ID
 * (lyr_fs_kernel_mount): a record without a process, live while that mount is at MOUNTPOINT
 * as seen from the reader's mount namespace.  -EBUSY as lyr_ref_set_mount; a claim the calling
 * process holds is replaced. */
int lyr_ref_set_kernel_mount(lyr_store *s, const char *ref_id, const char *mountpoint,
			     uint64_t mnt_id);

/* Tags: NAME is 1-128 bytes of [A-Za-z0-9._:-], not starting with '.' or '-', not starting
 * with "sha256:", and not LYR_MIN_PREFIX or more hex digits only, in either letter case (IDs
 * and their prefixes are read in either case, so such a name would shadow one); else -EINVAL,
 * with *RET_WHY (if non-NULL) a static text saying which rule it breaks.  Setting an existing
 * tag moves it; -ENOENT when the layer does not exist.  lyr_tag_remove checks only the
 * characters, so a tag made before a rule existed can still be removed. */
int lyr_tag_check(const char *name, const char **ret_why);
int lyr_tag_valid(const char *name); /* lyr_tag_check without the reason */
int lyr_tag_set(lyr_store *s, const char *name, const char *layer_id);
int lyr_tag_remove(lyr_store *s, const char *name); /* -ENOENT when missing */

/* rm: removes a layer (-EBUSY when a child layer, a ref or a tag needs it; tags are not
 * removed implicitly) or a ref (-EBUSY when mounted or being committed), given its full ID
 * (-EINVAL otherwise, -ENOENT unknown).  The last error names what needs the layer. */
int lyr_store_rm(lyr_store *s, const char *id);

/* prune: removes refs that are not mounted and layers that no tag, no ref and no child needs,
 * repeatedly (a removed child can free its parent).  Only objects created at least
 * KEEP_SECONDS ago are removed (0: all).  Without ALL, refs are kept and only layers go.  The
 * callback (may be NULL) is told each removed ID and its size (a layer's own diff size, a
 * ref's upper usage), in removal order. */
int lyr_store_prune(lyr_store *s, bool all, int64_t keep_seconds,
		    void (*fn)(void *ctx, lyr_obj_kind kind, const char *id, uint64_t size), void *ctx);

/* du: calls LAYER_FN (may be NULL) for every layer, with size = bytes of its own diff, and
 * REF_FN (may be NULL) for every ref, with size = bytes now in its upper dir (walked). */
int lyr_store_du(lyr_store *s, int (*layer_fn)(void *ctx, const lyr_layer_info *),
		 int (*ref_fn)(void *ctx, const lyr_ref_info *), void *ctx);

/* The per-layer digest cache for the content hash (hash.h's lyr_hash_cache), kept in the
 * store: digests of entries of immutable layers, keyed by layer ID and path.  Valid while S
 * lives. */
void lyr_store_hash_cache(lyr_store *s, lyr_hash_cache *ret);

/* fsck: checks records against directories (holding the store's namespace lock, so no
 * import, commit or rm is half way).  Each finding goes to FN (may be NULL) as one line of
 * text ("orphan directory layers/ab12...", "layer sha256:... has no diff directory", ...; the
 * full list is in docs/store-format.md) with whether it was repaired.  With REPAIR:
 * temporary directories of dead processes are removed, interrupted commits, imports, news and
 * rms are rolled forward or back, layer and ref directories whose records the database lost
 * are re-adopted (a layer only under the ID its content gives), stale mount records cleared,
 * the uses index mended; records without data and layer directories that cannot be adopted
 * are reported, never deleted.  Returns the number of problems left (>= 0) or -errno. */
int lyr_store_fsck(lyr_store *s, bool repair,
		   void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx);

/* verify (fsck --verify): recomputes each layer's diff digest and ID from its diff directory
 * with the code commit and import use, and compares the ID with the layer's own.  A layer whose
 * content no longer gives its ID is marked (layers/<hex>/verify-failed) until a later
 * verification finds it intact again or it is removed; the entries that changed are named from
 * the layer's file list or, for a layer without one, from its digest cache entries.  For every
 * layer verified, the digest cache entries (lyr_store_hash_cache) are checked against the
 * content.  Layers are verified one after another, each on THREADS threads.  No lock is held
 * while hashing.  docs/store-format.md lists the findings. */
typedef struct lyr_verify_finding {
	const char *layer;   /* the layer's ID */
	const char *path;    /* an entry ("/etc/passwd", "/" for the diff's root), or NULL */
	const char *problem; /* "content differs from the layer's digest", ... */
	bool repaired;
} lyr_verify_finding;

typedef struct lyr_verify_opts {
	/* Drops stale digest cache entries (all of those of a failed layer), writes a missing or
	 * wrong file list of an intact layer.  Content is never changed: a failed layer stays
	 * marked until its files are restored or it is removed. */
	bool repair;
	bool marked_only; /* only layers marked by an earlier verification */
	bool no_hash;     /* do not hash: report the marks of earlier verifications */
	unsigned threads; /* file reading threads: 0 one per CPU this process may use */
	void (*fn)(void *ctx, const lyr_verify_finding *f); /* may be NULL */
	void *ctx;
} lyr_verify_opts;

typedef struct lyr_verify_stats {
	uint64_t layers, files, bytes; /* verified, and read doing so */
} lyr_verify_stats;

/* Verifies the layers IDS[0..N) (full IDs; N == 0: every layer).  Returns the number of
 * problems left (>= 0) or -errno (-ENOENT for an unknown layer, named in the last error).
 * RET_STATS may be NULL. */
int lyr_store_verify(lyr_store *s, const char *const *ids, size_t n, const lyr_verify_opts *opts,
		     lyr_verify_stats *ret_stats);

/* 1 when layer ID or one of its ancestors is marked as failed verification, 0 when not, or
 * -errno (-ENOENT unknown layer).  When 1, the last error names the marked layer: "layer
 * sha256:... failed verification; run layerfs fsck --repair or layerfs rm". */
int lyr_layer_verify_failed(lyr_store *s, const char *id);

/* Whether every directory in layers/ and refs/ whose name is an ID has its record (or is an
 * operation under way): 0, or -EUCLEAN when the database lost records (the message names one
 * such directory and suggests fsck --repair).  Reads both directories: commands that show or
 * decide from every record (ls, du, prune) call it so that a store whose database forgot
 * layers is never shown or pruned as if they did not exist. */
int lyr_store_check_records(lyr_store *s);

/* The modes of the store's root and top directories (db/, layers/, refs/, tmp/, runs/), which
 * must be 0700: layers may hold set-id programs and device nodes that no other user may
 * reach.  Each looser one goes to FN (may be NULL) as one line ("store directory '/s/layers'
 * has mode 0755, not 0700"); with REPAIR its group and other bits are cleared (which needs
 * the owner or root).  Returns the number of looser modes left (>= 0) or -errno. */
int lyr_store_modes(lyr_store *s, bool repair,
		    void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx);

/* ---- runs ---------------------------------------------------------------------------------
 * An exec run keeps a record in the store of what must not outlive it: the private directory
 * holding its mountpoints and the refs it made.  The record (runs/exec-<pid>-<start>-<rand>)
 * names its process, so fsck can tell a dead run's leftovers from a live run's views. */
typedef struct lyr_run lyr_run;

/* Starts the record of a run of the calling process whose mountpoints are the entries of DIR
 * (an absolute path).  0 or -errno. */
int lyr_run_new(lyr_store *s, const char *dir, lyr_run **ret);
/* Adds REF_ID, a ref the run made (to be committed or released before it ends). */
int lyr_run_add_ref(lyr_run *r, const char *ref_id);
/* The record's absolute path: a process that finishes the run's cleanup on its behalf (the
 * serving process of its last view) unlinks it once DIR is gone. */
const char *lyr_run_path(const lyr_run *r);
/* Ends the run (everything released): removes its record and frees R (NULL-safe). */
void lyr_run_end(lyr_run *r);

/* fsck of what dead processes left mounted: runs whose process is dead (refs they made and
 * did not release: released; their directory: every view below it unmounted lazily, the
 * directories removed, never anything else; then the record) and refs whose mount record
 * names a dead serving process while the mountpoint is still its dead FUSE mount (unmounted
 * lazily; the record itself is lyr_store_fsck's).  Findings go to FN as lyr_store_fsck's do
 * (docs/store-format.md lists them).  Returns the number of problems left or -errno. */
int lyr_store_fsck_runs(lyr_store *s, bool repair,
			void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx);

/* ---- exec support ------------------------------------------------------------------------- */

/* The action cache: what an exec run with a given cache key produced.  Entries do not keep
 * layers alive; one naming a layer that no longer exists is never returned (get drops it). */
typedef struct lyr_action_output {
	char *target;		 /* heap: "/" for the root, else the mount target */
	char layer[LYR_ID_MAX]; /* full layer ID */
} lyr_action_output;

typedef struct lyr_action {
	int exit_code;
	int64_t created; /* Unix time, seconds (set by the caller before put) */
	lyr_action_output *outputs; /* heap, in mount order, the root first */
	size_t n_outputs;
} lyr_action;

void lyr_action_clear(lyr_action *a);
/* Looks up KEY ("sha256:<hex>").  Returns 0 and fills RET (clear it with lyr_action_clear),
 * -ENOENT when there is no entry or one of its layers is gone, -EINVAL for a malformed key. */
int lyr_action_get(lyr_store *s, const char *key, lyr_action *ret);
/* Stores (replacing) the entry for KEY.  -ENOENT when an output layer does not exist. */
int lyr_action_put(lyr_store *s, const char *key, const lyr_action *a);
/* Drops entries that name a removed layer and, with ALL, every entry created more than
 * KEEP_SECONDS ago.  RET_REMOVED (may be NULL) gets the number dropped. */
int lyr_action_prune(lyr_store *s, bool all, int64_t keep_seconds, size_t *ret_removed);

/* Cache-mount refs: mutable refs kept for exec cache mounts under (cache id, source layer),
 * never committed, reused across runs.  A run acquires all its cache mounts at once; the locks
 * are taken sorted by id then source (so concurrent runs cannot deadlock) and die with the
 * process.  SHARED: concurrent runs use one ref; PRIVATE: a concurrent run gets a ref no one
 * holds (a new one when all are busy); LOCKED: a concurrent run waits for the holder. */
typedef enum { LYR_CACHE_SHARED = 0, LYR_CACHE_PRIVATE, LYR_CACHE_LOCKED } lyr_cache_sharing;

typedef struct lyr_cache_req {
	const char *id;	    /* cache id */
	const char *source; /* full layer ID, or NULL for scratch */
	lyr_cache_sharing sharing;
	const char *desc; /* description of a ref made for it */
} lyr_cache_req;

typedef struct lyr_cache_hold lyr_cache_hold;

/* Acquires a ref for each of REQS[0..N) (waiting while another process holds a LOCKED one, or
 * holds a SHARED one that a LOCKED request waits for), creating refs as needed.  RET (N
 * entries) gets a hold per request, in request order; requests with equal id and source share
 * one hold.  Returns 0 or -errno (nothing is held then): -EINTR when a signal whose handler
 * was installed without SA_RESTART ended a wait. */
int lyr_cache_acquire(lyr_store *s, const lyr_cache_req *reqs, size_t n, lyr_cache_hold **ret);
/* A hold on the cache ref REF_ID that holds no lock yet, for the serving process of its mount
 * when the run that mounted it died: with the mount lock taken, lyr_cache_hold_last tells
 * whether another run still uses the ref.  0 or -errno (-ENOENT: no such ref directory). */
int lyr_cache_hold_adopt(lyr_store *s, const char *ref_id, lyr_cache_hold **ret);
/* The ref ID of a hold, and the directory where runs mount it (inside the ref's directory;
 * shared runs use one mount there). */
const char *lyr_cache_hold_ref(const lyr_cache_hold *h);
const char *lyr_cache_hold_mountpoint(const lyr_cache_hold *h);
/* Serialises mounting and unmounting a hold's mountpoint among processes (exclusive, waits). */
int lyr_cache_hold_mount_lock(lyr_store *s, lyr_cache_hold *h);
void lyr_cache_hold_mount_unlock(lyr_cache_hold *h);
/* Call once per hold (not per request sharing it), with the mount lock held, when done: 1
 * when no other process uses the ref any more (the caller unmounts it; the hold is then
 * exclusive), 0 when one does, or -errno. */
int lyr_cache_hold_last(lyr_cache_hold *h);
/* Drops one request's share of a hold (NULL-safe); the last one releases its locks. */
void lyr_cache_release(lyr_store *s, lyr_cache_hold *h);
