/* Test helpers that need the hash module: the content hash of a plain directory. */
#pragma once

#include <stddef.h>

#include "layerfs/hash.h"

/* lyr_hash_selectors (SELS, N, OPTS) over the plain directory DIR as a directory source with
 * CACHE_PREFIX (may be NULL); returns its result, the digest in OUT. */
int tu_hash_dir(const char *dir, const char *cache_prefix, const char *const *sels, size_t n,
		const lyr_hash_opts *opts, char out[LYR_DIGEST_TEXT_LEN]);
/* Everything below ROOT (ROOT itself left out) as text, one line per entry in name order,
 * depth first, with every attribute a tree comparison needs: path, mode (type and bits),
 * uid:gid, mtime to the nanosecond; for regular files size, content digest and the first path
 * of the file's hard-link group ("links-to=-" for the first); symlink targets; device numbers;
 * xattrs (security.selinux left out).  Heap. */
char *tu_tree_attrs(const char *root);
/* tu_tree_attrs of layer or ref ID of the store at STORE as `layerfs mount` shows it at MP
 * (created when missing), unmounted again. */
char *tu_mounted_attrs(const char *store, const char *id, const char *mp);
