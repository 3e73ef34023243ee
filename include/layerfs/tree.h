/* common/tree.c: whole-tree operations on directory fds: copy (import), removal, usage.
 * They never follow symlinks inside the tree and never build full path strings. */
#pragma once

#include <stdint.h>

#include "layerfs/common.h"

typedef struct lyr_tree_error {
	char path[4096]; /* relative to the source root; "" for the root itself */
	int err;         /* positive errno */
} lyr_tree_error;

/* Copies everything below SRC_DIRFD into the empty directory DST_DIRFD: regular files (FICLONE,
 * then copy_file_range, then read/write), directories, symlinks, hard links (kept as links),
 * fifos, sockets, devices when permitted, xattrs, mode, owner when permitted, timestamps
 * (directories' last, after their children).  Returns 0 or -errno; on failure fills ERR (may be
 * NULL) with the failing path.  PROGRESS may be NULL. */
int lyr_tree_copy(int src_dirfd, int dst_dirfd, const lyr_progress *progress, lyr_tree_error *err);

/* rm -rf of NAME inside PARENT_DIRFD, not following symlinks; ENOENT counts as success. */
int lyr_tree_remove(int parent_dirfd, const char *name);

/* Apparent size (sum of st_size of regular files and symlinks) and entry count below DIRFD. */
int lyr_tree_usage(int dirfd, uint64_t *ret_bytes, uint64_t *ret_entries);
