/* common/tree.c: whole-tree operations on directory fds: copy (import), removal, usage.
 * They never follow symlinks inside the tree and never build full path strings. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "layerfs/common.h"

typedef struct lyr_tree_error {
	char path[4096]; /* relative to the source root; "" for the root itself */
	int err;         /* positive errno */
	char why[384];   /* what is wrong with the entry, when ERR alone does not say; else "" */
} lyr_tree_error;

/* Copies everything below SRC_DIRFD into the empty directory DST_DIRFD: regular files (FICLONE,
 * then copy_file_range, then read/write), directories, symlinks, hard links (kept as links),
 * fifos, sockets, devices when permitted, xattrs, mode, owner when permitted, timestamps
 * (directories' last, after their children).  Returns 0 or -errno; on failure fills ERR (may be
 * NULL) with the failing path.  PROGRESS may be NULL. */
int lyr_tree_copy(int src_dirfd, int dst_dirfd, const lyr_progress *progress, lyr_tree_error *err);

/* lyr_tree_copy with hooks, so that a caller can learn the copy while it is made (import digests
 * it this way, without walking it again).  Each hook may be NULL; all get CTX; a negative return
 * stops the copy with that error.  With SORTED, each directory's entries are copied in byte order
 * of their names (strcmp), the order of lyr_tree_walk with `sorted`.
 * - DATA copies the content of the regular file IN (fstat ST) into the new, empty OUT itself, or
 *   returns LYR_TREE_DEFAULT to leave it to the copy's own way (FICLONE, copy_file_range, ...).
 * - DIR: directory NAME (lstat ST of the source) is about to be made and entered.
 * - DONE: the non-directory NAME in DIRFD (the copy's directory) is complete, data and metadata:
 *   FD is a read-write fd of the copy when it is a regular file (else -1); FIRST is NULL, or for
 *   a later name of a hard-link group the relative path of the group's first name (whose DONE
 *   came earlier).  Both fds are valid only during the call.
 * - DIR_DONE: the copy of a directory, open read-only at FD, is complete, its own metadata
 *   included; called for the root too, last, with PATH "".
 * PATH is the entry's path relative to the root (the same in the source and in the copy). */
#define LYR_TREE_DEFAULT 1

typedef struct lyr_tree_copy_opts {
	const lyr_progress *progress;
	void *ctx;
	bool sorted;
	int (*data)(void *ctx, int in, int out, const struct stat *st);
	int (*dir)(void *ctx, const char *name, const struct stat *st, const char *path);
	int (*done)(void *ctx, int dirfd, const char *name, int fd, const char *first,
		    const char *path);
	int (*dir_done)(void *ctx, int fd, const char *path);
} lyr_tree_copy_opts;

int lyr_tree_copy_ex(int src_dirfd, int dst_dirfd, const lyr_tree_copy_opts *opts,
		     lyr_tree_error *err);

/* rm -rf of NAME inside PARENT_DIRFD, not following symlinks; ENOENT counts as success. */
int lyr_tree_remove(int parent_dirfd, const char *name);

/* Apparent size (sum of st_size of regular files and symlinks, each inode counted once however
 * many hard links it has) and entry count (every name, directories included) below DIRFD. */
int lyr_tree_usage(int dirfd, uint64_t *ret_bytes, uint64_t *ret_entries);

/* A walk over the tree below a directory fd, in the same fd-economical way as the operations
 * above (any depth, a bounded number of open fds, nothing followed).  ENTRY is called for every
 * entry below the root with its parent directory's fd, its name, its lstat and its path relative
 * to the root; for a directory, returning LYR_TREE_SKIP keeps the walk out of it, otherwise the
 * walk goes in and calls LEAVE with the directory's own fd (read-only) and fstat after its
 * entries.  LEAVE is called for the root too, with path "".  With SORTED, the entries of each
 * directory come in byte order of their names (strcmp); otherwise in readdir order.  A negative
 * return from a callback stops the walk and is returned; ERR (may be NULL) then names the entry
 * (or the directory, from LEAVE) where it stopped.  The fds passed to callbacks stay owned by
 * the walk. */
#define LYR_TREE_SKIP 1

typedef struct lyr_tree_visit {
	int (*entry)(void *ctx, int dirfd, const char *name, const struct stat *st, const char *path);
	int (*leave)(void *ctx, int fd, const struct stat *st, const char *path);
	void *ctx;
	bool sorted;
} lyr_tree_visit;

int lyr_tree_walk(int dirfd, const lyr_tree_visit *visit, lyr_tree_error *err);
