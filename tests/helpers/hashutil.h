/* Test helpers that need the hash module: the content hash of a plain directory. */
#pragma once

#include <stddef.h>

#include "layerfs/hash.h"

/* lyr_hash_selectors (SELS, N, OPTS) over the plain directory DIR as a directory source with
 * CACHE_PREFIX (may be NULL); returns its result, the digest in OUT. */
int tu_hash_dir(const char *dir, const char *cache_prefix, const char *const *sels, size_t n,
		const lyr_hash_opts *opts, char out[LYR_DIGEST_TEXT_LEN]);
