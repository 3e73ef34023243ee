/* hash/: SHA-256 (OpenSSL EVP), digest texts, the diff digest behind layer IDs.
 * The content hash of selector paths (BuildKit-compatible) lands here too. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "layerfs/common.h"

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

/* Layer ID: "sha256:" + hex(sha256(PARENT_ID or "" + " " + DIFF_DIGEST)). */
void lyr_layer_id(const char *parent_id, const char *diff_digest, char ret_id[LYR_DIGEST_TEXT_LEN]);
