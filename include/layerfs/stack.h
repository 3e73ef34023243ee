/* fs/stack/: the rules of a layer stack, without FUSE.  A stack is a list of layer directories,
 * topmost first (when a writable upper is used, it is simply layer 0).  This module says what
 * the merged tree of those layers contains: how a name resolves in a merged directory
 * (whiteouts, opaque directories, redirects, metacopy files) and what a merged directory lists.
 * The overlay daemon and the content-hash walker both use it, so it has no FUSE types, returns
 * -errno, and is safe for any number of concurrent readers (a stack is immutable once open;
 * nodes are owned by their caller).
 *
 * Markers understood (DESIGN.md "Diff format"):
 *  - whiteout: a character device 0/0, or (OCI/AUFS) a file named ".wh.NAME" next to NAME's slot;
 *  - opaque directory: xattr trusted.overlay.opaque or user.overlay.opaque = "y", or (OCI/AUFS)
 *    an entry ".wh..wh..opq" inside it;
 *  - redirect: xattr {trusted,user}.overlay.redirect on a directory (or a metacopy file) in layer
 *    L: an absolute path ("/a/b") resolved from the root of the layers below L, or a plain name
 *    resolved in the same parent; the layers below L are looked up there instead of at the name;
 *  - metacopy: xattr {trusted,user}.overlay.metacopy on a regular file: its metadata is here, its
 *    data is in the file found below (at the same path, or at its redirect);
 *  - origin inode: xattr {trusted,user}.overlay.layerfs.ino (decimal): the st_ino the object showed
 *    before it was copied up, so st_ino is stable across copy-up and remount.
 * Names starting with ".wh." are markers: never listed, never found. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define LYR_STACK_MAX_LAYERS 512
#define LYR_WH_PREFIX ".wh."
#define LYR_WH_OPAQUE ".wh..wh..opq"

/* xattr suffixes below "trusted.overlay." / "user.overlay." */
#define LYR_OVL_OPAQUE "opaque"
#define LYR_OVL_REDIRECT "redirect"
#define LYR_OVL_METACOPY "metacopy"
#define LYR_OVL_INO "layerfs.ino"

typedef struct lyr_stack lyr_stack;

/* Opens the layer directories DIRS[0..N) (topmost first; N >= 1, at most LYR_STACK_MAX_LAYERS).
 * Relative paths are resolved against the working directory.  Returns 0 or -errno (-ENOTDIR,
 * -ENOENT, -EINVAL for N out of range); on failure *RET_FAILED (may be NULL) is the index of the
 * directory that could not be opened. */
int lyr_stack_open(const char *const *dirs, size_t n, size_t *ret_failed, lyr_stack **ret);
/* Same with directory fds (duplicated; the caller keeps its own). */
int lyr_stack_open_fds(const int *fds, size_t n, lyr_stack **ret);
void lyr_stack_free(lyr_stack *s);

size_t lyr_stack_layers(const lyr_stack *s);
/* Marks LAYER as written only through an overlay, which cannot create OCI/AUFS marker names, so
 * lookups skip probing it for them (an upper layer).  Call before the stack is shared. */
int lyr_stack_set_native(lyr_stack *s, size_t layer);
bool lyr_stack_native(const lyr_stack *s, size_t layer);
/* True when an OCI/AUFS ".wh.NAME" marker in DIRFD, a directory of layer LAYER, hides NAME in the
 * layers below (never in a native layer, which is not probed). */
bool lyr_stack_aufs_whiteout(const lyr_stack *s, unsigned layer, int dirfd, const char *name);
/* O_PATH directory fd of layer I's root (owned by the stack). */
int lyr_stack_layer_fd(const lyr_stack *s, size_t i);

/* The st_ino a merged view shows for an object whose topmost copy is RAW (device, inode) in layer
 * LAYER and carries origin inode ORIGIN (0: none).  All layers on one device: the origin or the raw
 * inode number.  Several devices: the raw number tagged with the device's index in the high bits
 * (as kernel overlayfs' xino does). */
uint64_t lyr_stack_ino(const lyr_stack *s, dev_t dev, ino_t raw, uint64_t origin);

/* --- markers on single objects --------------------------------------------------------------- */

/* True for a whiteout device (character device 0/0). */
static inline bool lyr_stack_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}
/* True for ".wh.*" names (whiteout and opaque markers of OCI/AUFS layers). */
bool lyr_stack_is_marker_name(const char *name);

/* Reads overlay xattr SUFFIX of the object open at FD (O_PATH fds work), trying trusted.overlay.
 * then user.overlay.  Returns the value length (the value NUL-terminated in BUF when it fits,
 * SIZE >= 1), -ENODATA when absent, or -errno. */
ssize_t lyr_stack_xattr_get(int fd, const char *suffix, char *buf, size_t size);
/* 1 when the directory at DIRFD is opaque (xattr or ".wh..wh..opq"), 0 when not, -errno. */
int lyr_stack_dir_opaque(int dirfd);
/* 1 when the regular file at FD is a metacopy, 0 when not. */
int lyr_stack_is_metacopy(int fd);
/* The origin inode number stored on FD, or 0. */
uint64_t lyr_stack_origin_ino(int fd);

/* --- merged directories and names --------------------------------------------------------------
 */

/* One layer's part of a merged directory. */
typedef struct lyr_stack_part {
	unsigned layer;
	int fd; /* O_PATH|O_DIRECTORY */
	char
	    *path; /* "/a/b": its path in the merged view of layers >= LAYER (used for redirects) */
} lyr_stack_part;

/* A resolved object of the merged tree.  All fds are owned by the node. */
typedef struct lyr_stack_node {
	struct stat st; /* lstat of the topmost copy */
	unsigned layer; /* layer of the topmost copy */
	int fd;		/* O_PATH fd of the topmost copy */
	uint64_t ino;	/* st_ino the merged view shows (lyr_stack_ino) */
	/* directories: the merged parts, topmost first (parts[0] is the topmost copy) */
	unsigned nparts;
	lyr_stack_part *parts;
	bool opaque; /* the lowest part ends the merge (opaque or followed by nothing) */
	/* regular files: where the data is (the topmost copy itself unless it is a metacopy) */
	bool metacopy;
	unsigned data_layer;
	int data_fd;	  /* metacopy files: O_PATH fd of the data copy; -1 otherwise (use FD) */
	char *lower_path; /* path of the topmost copy in the merged view of layers >= LAYER */
} lyr_stack_node;

/* Releases what NODE holds and zeroes it (NULL-safe, idempotent). */
void lyr_stack_node_clear(lyr_stack_node *node);
/* Deep copy of SRC into RET (fds duplicated).  0 or -errno. */
int lyr_stack_node_dup(const lyr_stack_node *src, lyr_stack_node *ret);

/* The root directory of the merged view of layers FROM..end. */
int lyr_stack_root(const lyr_stack *s, unsigned from, lyr_stack_node *ret);

/* The node of NAME, an object just made in the topmost part of directory DIR that nothing in the
 * layers below merges with (they hold no NAME, or it was whited out), and that carries no overlay
 * markers yet: one open and one stat instead of a lookup through every part. */
int lyr_stack_node_made(const lyr_stack *s, const lyr_stack_node *dir, const char *name,
			lyr_stack_node *ret);

/* Resolves NAME in the merged directory DIR.  Returns 0 and fills RET; -ENOENT when absent,
 * whited out or a marker name; -ENAMETOOLONG beyond 255 bytes; -EINVAL for "", "." or ".." or a
 * name with '/'; -ENOTDIR when DIR is not a directory; -EIO for a malformed layer (a metacopy
 * whose data is missing); other -errno from the layer filesystems.  A layer that cannot be read
 * at this name (EACCES, ELOOP, a vanished dir) ends the search below it with that error only when
 * nothing was found above it. */
int lyr_stack_lookup(const lyr_stack *s, const lyr_stack_node *dir, const char *name,
		     lyr_stack_node *ret);

/* lyr_stack_lookup, except that a non-directory without overlay markers comes back unopened
 * (fd -1; st, layer, ino and lower_path filled): a stat by name instead of an open and a stat,
 * for callers that may never need the fd (the overlay's lookups: most are for a stat). */
int lyr_stack_lookup_lazy(const lyr_stack *s, const lyr_stack_node *dir, const char *name,
			  lyr_stack_node *ret);

/* As lyr_stack_lookup, looking only at the parts of DIR in layers >= FROM (what the layers below
 * an upper layer hold at NAME). */
int lyr_stack_lookup_from(const lyr_stack *s, const lyr_stack_node *dir, unsigned from,
			  const char *name, lyr_stack_node *ret);

/* Resolves a "/"-separated PATH ("" or "/" is the root) in the merged view of layers FROM..end,
 * following redirects as lookups do.  Returns 0 or -errno as lyr_stack_lookup. */
int lyr_stack_resolve(const lyr_stack *s, unsigned from, const char *path, lyr_stack_node *ret);

/* Opens NODE's content for reading or writing with open(2) FLAGS (O_NOFOLLOW, O_CREAT and
 * O_EXCL are ignored): a metacopy file's data copy when reading, the topmost copy otherwise.
 * Returns an fd or -errno. */
int lyr_stack_node_open(const lyr_stack_node *node, int flags);

/* True for xattr names that are the overlay's private markers ({trusted,user}.overlay.*): they
 * are not part of what a merged tree shows. */
bool lyr_stack_xattr_private(const char *name);

/* One entry of a merged listing. */
typedef struct lyr_stack_dirent {
	char *name;
	unsigned layer;	    /* layer of the topmost copy */
	unsigned char type; /* DT_* of the topmost copy (DT_UNKNOWN if the layer fs did not say) */
	ino_t raw_ino;	    /* d_ino in that layer */
} lyr_stack_dirent;

typedef struct lyr_stack_list {
	size_t n;
	lyr_stack_dirent *entries; /* in listing order: layer by layer, topmost first */
} lyr_stack_list;

/* Lists the merged directory DIR: each visible name exactly once, with the layer of its topmost
 * copy; whiteouts, opaque markers and the names they hide are left out; "." and ".." are not
 * included.  Returns 0 or -errno (a part that cannot be read fails the listing). */
int lyr_stack_list_dir(const lyr_stack *s, const lyr_stack_node *dir, lyr_stack_list *ret);
void lyr_stack_list_clear(lyr_stack_list *list);
