/* hash/: SHA-256 (OpenSSL EVP), digest texts, the diff digest behind layer IDs
 * (docs/diff-digest.md), import (copy + diff digest in one pass), and the BuildKit-compatible
 * content hash of selector paths over a pluggable source (docs/content-hash.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "layerfs/common.h"
#include "layerfs/tree.h"

#define LYR_SHA256_LEN 32
/* "sha256:" + 64 hex digits + NUL */
#define LYR_DIGEST_TEXT_LEN 72
#define LYR_DIGEST_PREFIX "sha256:"

/* Streaming SHA-256 context (opaque; the type is not named lyr_sha256 because C puts types and
 * functions in one namespace and lyr_sha256() is the one-shot digest below). */
typedef struct lyr_sha256_ctx lyr_sha256_ctx;

/* Streaming SHA-256.  _new returns 0 or -ENOMEM; _final may be called once; _free accepts NULL.
 * A context belongs to one thread at a time. */
int lyr_sha256_new(lyr_sha256_ctx **ret);
void lyr_sha256_update(lyr_sha256_ctx *h, const void *data, size_t len);
void lyr_sha256_final(lyr_sha256_ctx *h, uint8_t out[LYR_SHA256_LEN]);
void lyr_sha256_free(lyr_sha256_ctx *h);
/* One-shot digest of a buffer. */
void lyr_sha256(const void *data, size_t len, uint8_t out[LYR_SHA256_LEN]);

/* Writes "sha256:<hex>" of DIGEST into OUT. */
void lyr_digest_text(const uint8_t digest[LYR_SHA256_LEN], char out[LYR_DIGEST_TEXT_LEN]);
/* Parses a full "sha256:<64 hex>" text; returns 0 or -EINVAL. */
int lyr_digest_parse(const char *text, uint8_t out[LYR_SHA256_LEN]);

/* Diff digest of the layer directory open at DIRFD: a Merkle digest over every entry below
 * it (names, type, mode, uid, gid, size, mtime, symlink targets, device numbers, xattrs,
 * hard links, contents), as docs/diff-digest.md specifies.  On failure returns -errno and,
 * when ERR_PATH is non-NULL, writes the path (relative to DIRFD) that failed into it
 * (PATH_MAX bytes).  Reports PROGRESS (may be NULL) as files are read. */
int lyr_hash_diff(int dirfd, const lyr_progress *progress, char ret_digest[LYR_DIGEST_TEXT_LEN],
		  char *err_path);

/* One entry of a diff directory as the diff digest read it: enough to tell later which entry
 * of a layer changed and how (a layer's file list, docs/store-format.md). */
typedef struct lyr_diff_entry {
	char *path;        /* relative to the diff directory, "" for the directory itself */
	uint8_t *header;   /* HDR(e) of docs/diff-digest.md ("type h" for later hard-link names) */
	size_t header_len;
	bool has_data;     /* a regular file's first name: DATA is sha256 of its content */
	uint8_t data[LYR_SHA256_LEN];
	bool has_extra;    /* lyr_diff_opts.file_prefix asked for EXTRA */
	uint8_t extra[LYR_SHA256_LEN];
} lyr_diff_entry;

/* Every entry below a diff directory and the directory itself, sorted by path (strcmp), and
 * the tree's apparent size as lyr_tree_usage counts it (regular files and symlinks, each inode
 * once), so that a caller needs no walk of its own for it. */
typedef struct lyr_diff_list {
	lyr_diff_entry *v;
	size_t n;
	uint64_t bytes;
} lyr_diff_list;

void lyr_diff_list_clear(lyr_diff_list *l);

typedef struct lyr_diff_opts {
	const lyr_progress *progress; /* may be NULL */
	unsigned threads;             /* file reading threads: 0 the default (2), else 1..256 */
	lyr_diff_list *entries;       /* NULL, or filled on success (clear it) */
	/* With ENTRIES, optional: a second digest of a regular file from the same read,
	 * sha256(prefix + content), into the entry's EXTRA.  Called by the walking thread for each
	 * file listed with data, with its open fd, stat and path: returns 1 and a heap prefix when
	 * one is wanted, 0 when not, or -errno to stop. */
	int (*file_prefix)(void *ctx, int fd, const struct stat *st, const char *path,
			   uint8_t **ret, size_t *ret_len);
	void *ctx;
} lyr_diff_opts;

/* lyr_hash_diff with options (OPTS may be NULL). */
int lyr_hash_diff_ex(int dirfd, const lyr_diff_opts *opts, char ret_digest[LYR_DIGEST_TEXT_LEN],
		     char *err_path);

/* Threads for work that should use every core: the CPUs this process may run on (1..256). */
unsigned lyr_hash_cpu_threads(void);

/* Layer ID: "sha256:" + hex(sha256(PARENT_ID or "" + " " + DIFF_DIGEST)). */
void lyr_layer_id(const char *parent_id, const char *diff_digest, char ret_id[LYR_DIGEST_TEXT_LEN]);

/* ---- content hash of selector paths (BuildKit contenthash compatible) ----------------------
 *
 * The tree being hashed is a *source*: a read-only view reached through the operations below,
 * so a plain directory (lyr_hash_source_dir) and a layer stack (diff dirs merged with overlay
 * whiteout/opaque rules) hash the same way.  An entry handle (lyr_hash_ent) is defined by the
 * source; the hasher only passes it back.  All paths given to the source are single names: the
 * hasher resolves selectors itself, component by component, keeping ".." and symlink targets
 * inside the view's root.  The hasher calls a source's operations, and a cache's get and put,
 * only from the thread that called lyr_hash_selectors; its worker threads only read the fds that
 * `open` returned. */
typedef struct lyr_hash_ent lyr_hash_ent;

typedef struct lyr_hash_source_ops {
	/* The view's root directory; fills ST. */
	int (*root)(void *ctx, lyr_hash_ent **ret, struct stat *st);
	/* NAME (one component, never "", "." or "..") inside directory DIR, with lstat semantics:
	 * -ENOENT when the view has no such name (a whiteout hides it, for example). */
	int (*lookup)(void *ctx, lyr_hash_ent *dir, const char *name, lyr_hash_ent **ret,
		      struct stat *st);
	/* Calls FN once for every name the view shows in directory DIR (not "." and ".."), in any
	 * order; stops with FN's negative return. */
	int (*list)(void *ctx, lyr_hash_ent *dir, int (*fn)(void *arg, const char *name), void *arg);
	/* readlink of a symlink entry: writes at most SIZE bytes, returns the length or -errno. */
	ssize_t (*readlink)(void *ctx, lyr_hash_ent *ent, char *buf, size_t size);
	/* listxattr / getxattr of the entry itself (never what a symlink points to), with the
	 * syscalls' size conventions; -errno on failure.  A source hides its private markers. */
	ssize_t (*listxattr)(void *ctx, lyr_hash_ent *ent, char *buf, size_t size);
	ssize_t (*getxattr)(void *ctx, lyr_hash_ent *ent, const char *name, void *buf, size_t size);
	/* A new fd open for reading a regular file's content (the hasher closes it), or -errno. */
	int (*open)(void *ctx, lyr_hash_ent *ent);
	/* Optional (may be NULL): a key under which ENT's digests may be cached, such as the ID of
	 * the immutable layer the entry comes from plus PATH (its path in the view); returns the
	 * key's length, or 0 when ENT must not be cached (a mutable upper dir, for example). */
	int (*cache_key)(void *ctx, lyr_hash_ent *ent, const char *path, char *buf, size_t size);
	/* Releases a handle from root or lookup. */
	void (*release)(void *ctx, lyr_hash_ent *ent);
} lyr_hash_source_ops;

typedef struct lyr_hash_source {
	const lyr_hash_source_ops *ops;
	void *ctx;
} lyr_hash_source;

/* A source over the plain directory open at DIRFD (duplicated; the caller keeps DIRFD).
 * CACHE_PREFIX, when non-NULL, makes every entry cacheable under CACHE_PREFIX + ":" + path: pass
 * it only for a directory that never changes (an immutable layer's diff dir).  Returns 0 or
 * -errno; release with lyr_hash_source_dir_free. */
int lyr_hash_source_dir(int dirfd, const char *cache_prefix, lyr_hash_source *ret);
void lyr_hash_source_dir_free(lyr_hash_source *src);

/* A source over the merged view of the layer stack S (include/layerfs/stack.h; S must outlive
 * the source): whiteouts, opaque directories, redirects and metacopy files are resolved as a
 * mount shows them, and overlay xattrs (trusted.overlay.*, user.overlay.*) are hidden.
 * LAYER_IDS (may be NULL) holds, per layer of S (topmost first), the layer's ID, or NULL for a
 * layer that may change (a ref's upper); entries whose topmost copy is in a layer with an ID are
 * cacheable under "<that ID>:<path>".  Release with lyr_hash_source_stack_free. */
typedef struct lyr_stack lyr_stack;
int lyr_hash_source_stack(const lyr_stack *s, const char *const *layer_ids,
			  lyr_hash_source *ret);
void lyr_hash_source_stack_free(lyr_hash_source *src);

/* A digest cache, such as the store's per-layer one.  get returns 1 and fills DIGEST when KEY
 * is known, 0 when not, or -errno; put stores a digest (errors are returned, not ignored).
 * Keys are "<kind>:<source key>" with kind f (entry digest), d (directory content digest) or
 * h (directory header digest). */
typedef struct lyr_hash_cache {
	int (*get)(void *ctx, const char *key, char digest[LYR_DIGEST_TEXT_LEN]);
	int (*put)(void *ctx, const char *key, const char *digest);
	void *ctx;
} lyr_hash_cache;

typedef struct lyr_hash_opts {
	bool follow_links;             /* follow a symlink in a selector's last component */
	const char *const *include;    /* globs filtering the selected subtrees (may be NULL) */
	size_t n_include;
	const char *const *exclude;
	size_t n_exclude;
	const lyr_hash_cache *cache;   /* may be NULL */
	char *err_path;                /* NULL or PATH_MAX bytes: on failure, what failed */
	const lyr_progress *progress;  /* may be NULL: running count of entries and bytes hashed */
	unsigned threads;              /* threads reading and hashing file contents: 0 one per CPU
	                                * this process may use, 1 only the calling thread */
} lyr_hash_opts;

/* The content hash of SELECTORS (N paths in the view, "" or "/" for all of it; wildcards `*`,
 * `?`, `[` allowed) as the hash issue specifies: each selector is normalised (-EINVAL, naming
 * it, when ".." leaves the root), deduplicated by lyr_hash_selectors_dedupe (FILTERED when OPTS
 * has include or exclude globs), and the rest sorted.  One remaining selector gives its own digest; several give sha256 of
 * their digest texts joined by "\0".  N == 0 means the whole view.  A missing (non-wildcard)
 * selector fails with -ENOENT naming it; a wildcard matching nothing gives sha256 of "".  OPTS
 * may be NULL.  Writes "sha256:<hex>" to RET_DIGEST. */
int lyr_hash_selectors(const lyr_hash_source *src, const char *const *selectors, size_t n,
		       const lyr_hash_opts *opts, char ret_digest[LYR_DIGEST_TEXT_LEN]);

/* The bytes that precede a regular file's content in its content-hash digest (the file's digest
 * is sha256 of them + the content), for the file open at FD with stat ST as a layer view shows
 * it (the overlay's trusted.overlay.* and user.overlay.* attributes hidden).  Not for metacopy
 * files, whose content lives in a lower layer.  Returns 0 or -errno; *RET is heap. */
int lyr_hash_file_prefix(int fd, const struct stat *st, uint8_t **ret, size_t *ret_len);

/* Normalises one selector: absolute, no "." or empty components, ".." applied ("/" for the
 * whole view).  Returns 0, or -EINVAL when ".." would leave the root.  *RET is heap. */
int lyr_hash_selector_normalize(const char *sel, char **ret);

/* Normalises SELECTORS, drops plain ones inside another plain one by whole path component
 * (`/a` covers `/a/b`, not `/ab`) and duplicates of plain ones, and sorts the rest (byte
 * order).  Wildcard selectors, and every selector when FILTERED (--include/--exclude globs
 * apply), are kept as they are, duplicates too, as BuildKit keeps them.  On -EINVAL, *RET_BAD
 * (if non-NULL) is the index of the offending selector.  Free with lyr_hash_selectors_free. */
int lyr_hash_selectors_dedupe(const char *const *selectors, size_t n, bool filtered, char ***ret,
			      size_t *ret_n, size_t *ret_bad);
void lyr_hash_selectors_free(char **list, size_t n);

/* True when SEL contains an unescaped `*`, `?` or `[`. */
bool lyr_hash_selector_is_wildcard(const char *sel);

/* Checks an --include/--exclude glob as BuildKit's pattern matcher would: returns 0, or -EINVAL
 * when PAT is empty, ends in a backslash that escapes nothing, or has a `[` without its `]`
 * (or a bracket expression over 255 bytes); then *RET_WHY (if non-NULL) is a static text
 * saying which.  The matcher itself takes such a `[` or `\` literally, so a caller that
 * wants a mistyped pattern to be an error, not a pattern that matches nothing, checks first. */
int lyr_hash_check_pattern(const char *pat, const char **ret_why);

/* Import: copies everything below SRC_DIRFD into the empty directory DST_DIRFD exactly as
 * lyr_tree_copy does, gives DST_DIRFD the mode, owner (when permitted) and times of SRC_DIRFD,
 * and returns the diff digest of the copy (lyr_hash_diff of DST_DIRFD).
 * The digest is made during the copy, from each entry of the copy as it is completed (its own
 * stat and xattrs): a file of up to 1 MiB is hashed from the buffer that wrote it, a bigger one
 * read back by a worker while the copy goes on; the copy is not walked a second time.  On failure returns -errno and fills ERR (may be
 * NULL) with the failing path (of the source for copy errors, of the copy for hash errors).
 * The copy is plain: an entry the store would read as an overlay marker (a name starting with
 * ".wh.", a character device 0/0, a trusted.overlay.* or user.overlay.* xattr) fails with
 * -EINVAL, ERR->why saying which. */
int lyr_hash_import(int src_dirfd, int dst_dirfd, const lyr_progress *progress,
		    lyr_tree_error *err, char ret_digest[LYR_DIGEST_TEXT_LEN]);
/* lyr_hash_import that also fills RET_ENTRIES (may be NULL; clear it) as lyr_hash_diff_ex does. */
int lyr_hash_import_list(int src_dirfd, int dst_dirfd, const lyr_progress *progress,
			 lyr_tree_error *err, char ret_digest[LYR_DIGEST_TEXT_LEN],
			 lyr_diff_list *ret_entries);
