/* Private header of the overlay daemon, grouped by the file that defines each function.
 *
 * Objects: one struct ovl_fs per mount; one struct ovl_inode per object the kernel knows (or that
 * the daemon holds internally), keyed by the st_ino the mount shows, so hard links share one
 * inode.  The FUSE node id of an inode is its address (the root is FUSE_ROOT_ID).
 *
 * Counts: nlookup (kernel lookups, dropped by forget) and refs (the daemon's own references:
 * children's parent pointers, operations in flight) are kept apart; an inode is freed when both
 * reach zero.  Both are guarded by the table shard lock of the inode.
 *
 * Locks, in the order they are taken (never the other way round):
 *   0. an open file's lock (struct ovl_file: shared while its fd is used, exclusive to switch a
 *      reader to the upper copy) and an open directory's snapshot mutex;
 *   1. cu_lock of an inode being copied up, renamed or unlinked (a child's before its parent's:
 *      copy-up of a file copies up its parent directory while holding its own cu_lock; two
 *      unrelated inodes in address order);
 *   2. lock (rwlock) of inodes: a parent directory before its child; two directories of a rename
 *      in address order (the kernel already serializes renames that could make them related);
 *      ovl_inode_rdlock, which may reopen an fd through the parent, is called with no inode
 *      lock held;
 *   3. a table shard lock, the evictor's lock, the open-directory list lock (leaves: nothing is
 *      waited for while one is held; the evictor only trylocks inodes).
 * The rwlock protects node, parent, name and the flags.  Readers (lookup, getattr, read of the
 * node's fds) take it shared; copy-up and namespace changes take it exclusive for the short
 * moment they swap in new state.  Data copies run under cu_lock only, so a long copy-up blocks
 * nothing but operations on the same file. */
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "layerfs/common.h"
#include "layerfs/fs.h"
#include "layerfs/stack.h"

#define OVL_NAME_MAX 255
#define OVL_LOWERS_MAX 500 /* as kernel overlayfs */
#define OVL_SHARDS 64
#define OVL_TIMES_LOCKS 64 /* striped by inode number (times.c) */

struct ovl_inode {
	pthread_mutex_t cu_lock;
	pthread_rwlock_t lock;
	uint64_t ino;	  /* st_ino shown; the table key; constant */
	mode_t type;	  /* S_IFMT bits; constant */
	uint64_t nlookup; /* shard lock */
	uint64_t refs;	  /* shard lock */
	bool hashed;	  /* in the table (shard lock) */
	/* lock: */
	lyr_stack_node node; /* where the object is now */
	/* the directory it was last seen in (holds a ref), NULL for the root */
	struct ovl_inode *parent;
	char *name;
	bool unlinked;	  /* its last name is gone */
	bool linkable;	  /* unlinked as made (O_TMPFILE): linkat may give it a name */
	bool pinned;	  /* keeps node.fd: its name no longer finds it (see inode.c) */
	bool indexed;	  /* a lower hard-link group's upper copy, kept in the index */
	atomic_bool used; /* touched since the fd evictor last looked */
	/* directories: whether the topmost copy has a default ACL (OVL_DACL_*), learnt at the first
	 * create in it and forgotten when an xattr of it changes; lower copies never change and the
	 * upper changes only through the mount, so the answer holds until then */
	atomic_uchar dacl;
	atomic_uint_fast64_t data_gen; /* bumped when the data moves to the upper (copy-up) */
	/* fs->times_locks: the mtime the kernel last gave a regular file under the writeback
	 * cache, which data requests restore (times.c) */
	struct timespec mtime;
	bool mtime_known;
	struct ovl_inode *hnext;	 /* shard hash chain (hashed inodes) */
	struct ovl_inode *anext, *aprev; /* shard list of all inodes, hashed or not */
};

enum { OVL_DACL_UNKNOWN, OVL_DACL_YES, OVL_DACL_NO };

struct ovl_shard {
	pthread_mutex_t lock;
	size_t n, cap;
	struct ovl_inode **buckets;
	struct ovl_inode *all; /* every live inode of the shard, so unmount frees them all */
};

struct ovl_fs {
	lyr_fs_config cfg; /* copied; pointers into the caller's config stay the caller's */
	lyr_fs_idmap *uidmap, *gidmap;
	lyr_stack *stack; /* layer 0 is the upper when has_upper */
	bool has_upper;
	bool read_only;
	unsigned first_lower;	  /* 1 with an upper, else 0 */
	int upper_fd;		  /* O_PATH root of the upper, -1 without */
	int work_fd;		  /* O_PATH dir for temporary objects (WORK/work), -1 without */
	int index_fd;		  /* O_PATH WORK/index: upper copies of lower hard-link groups */
	atomic_bool index_used;	  /* the index may hold copies (else lookups skip it) */
	const char *xattr_prefix; /* "trusted.overlay." with CAP_SYS_ADMIN, else "user.overlay." */
	const char *override_xattr; /* xattr_permissions name, or NULL */
	bool privileged;	    /* may chown / mknod devices */
	uid_t uid;		    /* the daemon's ids: what the objects it makes get */
	gid_t gid;
	bool dac_override; /* may write into directories read-only to their owner */
	/* POSIX ACLs enforced by the kernel: not noacl and some layer's filesystem has them; set
	 * at mount and by init (when the kernel cannot), before any other request is read */
	bool acl;
	double timeout;
	/* FUSE_HANDLE_KILLPRIV_V2 is on: the daemon clears set-id bits where the kernel says */
	atomic_bool killpriv;
	atomic_uint_fast64_t tmp_seq;
	atomic_long open_fds; /* O_PATH fds held by non-directory inodes */
	long fd_budget;	      /* above it, fds of idle non-directory inodes are closed */
	pthread_mutex_t evict_lock;
	pthread_mutex_t times_locks[OVL_TIMES_LOCKS];
	size_t evict_shard; /* evict_lock: where the next eviction scan starts */
	struct ovl_inode *root;
	struct ovl_shard shards[OVL_SHARDS];
	pthread_mutex_t dirs_lock;
	struct ovl_dir *dirs; /* open directory handles (the kernel may not release them all) */
	struct fuse_session *se;
};

/* An open directory: a snapshot of the merged listing, refreshed on rewind (offset 0). */
struct ovl_dirent {
	char *name;
	uint64_t ino;
	unsigned char type;
	bool ino_known; /* ino is computed when first needed: readdirplus gets it by lookup */
	unsigned layer; /* where the entry's topmost copy is, and its inode number there */
	ino_t raw_ino;
};

struct ovl_dir {
	struct ovl_dir *next, *prev; /* fs->dirs_lock: every open handle, freed at unmount */
	pthread_mutex_t lock;
	size_t n;
	struct ovl_dirent *entries; /* entries[0] ".", entries[1] "..", then the merged names */
	bool read_once;
};

/* inode.c */
struct ovl_inode *ovl_inode_from_id(struct ovl_fs *fs, fuse_ino_t id);
fuse_ino_t ovl_inode_id(struct ovl_fs *fs, struct ovl_inode *in);
int ovl_inode_root_new(struct ovl_fs *fs);
/* Finds or creates the inode for NODE (consumed on success) seen as NAME in PARENT; takes one
 * lookup count when LOOKUP, else one ref.  Returns the inode in *RET. */
int ovl_inode_get(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
		  lyr_stack_node *node, bool lookup, struct ovl_inode **ret);
/* The inode with st_ino INO, with a ref taken, or NULL. */
struct ovl_inode *ovl_inode_find(struct ovl_fs *fs, uint64_t ino);
void ovl_inode_ref(struct ovl_fs *fs, struct ovl_inode *in);
void ovl_inode_unref(struct ovl_fs *fs, struct ovl_inode *in);
void ovl_inode_forget(struct ovl_fs *fs, struct ovl_inode *in, uint64_t n);
/* Replaces IN's place in the tree (under IN's write lock). */
int ovl_inode_set_name(struct ovl_fs *fs, struct ovl_inode *in, struct ovl_inode *parent,
		       const char *name);
void ovl_table_free(struct ovl_fs *fs);
/* Takes IN's lock shared with IN->node.fd open (reopened through the parent if the evictor closed
 * it).  Must not be called with any inode lock held.  0 or -errno (then nothing is held). */
int ovl_inode_rdlock(struct ovl_fs *fs, struct ovl_inode *in);
/* Installs NODE (consumed) as IN's node; the caller holds IN's lock exclusively. */
void ovl_inode_set_node(struct ovl_fs *fs, struct ovl_inode *in, lyr_stack_node *node);
/* Makes IN keep its fd for good, because the name it was found by is about to go: the caller
 * holds IN's parent's lock and IN's lock, both exclusively.  0 or -errno. */
int ovl_inode_pin(struct ovl_fs *fs, struct ovl_inode *in);
/* Closes fds of idle non-directory inodes when more than fs->fd_budget are open. */
void ovl_inode_evict(struct ovl_fs *fs);

/* namei.c */
int ovl_check_name(const char *name, bool creating);
/* Looks NAME up in PARENT: fills E (entry with attributes) and takes a lookup count. */
int ovl_lookup(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
	       struct fuse_entry_param *e);
/* Looks NAME up in PARENT (under PARENT's lock, shared or exclusive, held by the caller). */
int ovl_lookup_node(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
		    lyr_stack_node *ret);
/* When NODE is a lower file of a hard-link group that has been copied up, replaces it by the
 * upper copy kept in the index (so every name of the group shows the same data, also after a
 * remount).  Returns 1 when replaced, 0 when not, -errno. */
int ovl_index_lookup(struct ovl_fs *fs, lyr_stack_node *node);
/* Adds DELTA to the link count kept on an indexed inode's copy (caller holds its lock). */
void ovl_index_nlink_add(struct ovl_fs *fs, struct ovl_inode *in, int delta);
/* 1 when the layers below the upper hold NAME in PARENT (so removing it needs a whiteout). */
int ovl_lower_has(struct ovl_fs *fs, struct ovl_inode *parent, const char *name);
/* Path of IN in the merged view of the lower layers ("/a/b"), as a redirect names it. */
int ovl_lower_path(struct ovl_fs *fs, struct ovl_inode *in, char **ret);
void ovl_fill_entry(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *st,
		    struct fuse_entry_param *e);

/* copy_up.c */
enum ovl_copy_mode {
	OVL_COPY_META,	/* metadata only (data stays below, marked metacopy) */
	OVL_COPY_DATA,	/* metadata and data */
	OVL_COPY_EMPTY, /* metadata, data truncated to 0 (open with O_TRUNC, truncate to 0) */
};
/* Makes sure the upper holds IN (and its parents), copying what MODE says.  0 or -errno. */
int ovl_copy_up(struct ovl_fs *fs, struct ovl_inode *in, enum ovl_copy_mode mode);
/* Makes sure directory DIR has a part in the upper. */
int ovl_copy_up_dir(struct ovl_fs *fs, struct ovl_inode *dir);
/* A fresh name for a temporary object in the work dir. */
void ovl_tmp_name(struct ovl_fs *fs, char name[32]);
/* Sets overlay xattr SUFFIX (our namespace) on the object at FD. */
int ovl_set_private_xattr(struct ovl_fs *fs, int fd, const char *suffix, const void *value,
			  size_t size);
int ovl_make_whiteout(struct ovl_fs *fs, int dirfd, const char *name);

/* dir.c */
struct ovl_create_args {
	mode_t mode; /* with S_IFMT */
	dev_t rdev;
	const char *link;	    /* symlink target */
	struct ovl_inode *link_src; /* hard link source */
	int open_flags;		    /* create: open flags, else -1 */
	mode_t umask;		    /* the caller's (applied when no default ACL is inherited) */
	uid_t uid;		    /* on-disk owner */
	gid_t gid;
};
int ovl_create(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
	       const struct ovl_create_args *a, struct fuse_entry_param *e, int *ret_fd);
/* An unnamed regular file for O_TMPFILE in PARENT (A as for a create): fills E, takes a lookup
 * count and returns the open fd in *RET_FD.  A link gives it a name. */
int ovl_tmpfile(struct ovl_fs *fs, struct ovl_inode *parent, const struct ovl_create_args *a,
		struct fuse_entry_param *e, int *ret_fd);
int ovl_unlink(struct ovl_fs *fs, struct ovl_inode *parent, const char *name, bool dir);
int ovl_rename(struct ovl_fs *fs, struct ovl_inode *p1, const char *n1, struct ovl_inode *p2,
	       const char *n2, unsigned flags);

/* readdir.c */
int ovl_dir_open(struct ovl_fs *fs, struct ovl_inode *dir, struct ovl_dir **ret);
void ovl_dir_free(struct ovl_fs *fs, struct ovl_dir *d);
/* Frees every handle still open (at unmount). */
void ovl_dir_free_all(struct ovl_fs *fs);
/* Fills BUF with entries from offset OFF; with PLUS, looks each up.  Returns bytes used. */
int ovl_dir_read(struct ovl_fs *fs, fuse_req_t req, struct ovl_inode *dir, struct ovl_dir *d,
		 char *buf, size_t size, off_t off, bool plus);

/* attr.c */
int ovl_getattr(struct ovl_fs *fs, struct ovl_inode *in, struct stat *ret);
/* ovl_getattr, taking KNOWN (a stat of the node just looked up) instead of a fresh fstat when it
 * is of the object IN holds. */
int ovl_getattr_known(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *known,
		      struct stat *ret);
int ovl_setattr(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *attr, int valid,
		int fd);
/* Clears IN's set-user-ID bit, and its set-group-ID bit when it is group-executable, as a write,
 * truncate or chown by the caller must (FD: an open fd of IN, or -1).  0 or -errno. */
int ovl_kill_suidgid(struct ovl_fs *fs, struct ovl_inode *in, int fd);
/* Ids between the mount and the disk (uidmapping/gidmapping): to the disk (uid_t)-1 when
 * unmapped, from the disk 65534 when unmapped. */
uid_t ovl_uid_to_disk(struct ovl_fs *fs, uid_t uid);
gid_t ovl_gid_to_disk(struct ovl_fs *fs, gid_t gid);
uid_t ovl_uid_from_disk(struct ovl_fs *fs, uid_t uid);
gid_t ovl_gid_from_disk(struct ovl_fs *fs, gid_t gid);
int ovl_readlink(struct ovl_fs *fs, struct ovl_inode *in, char *buf, size_t size);
int ovl_statfs(struct ovl_fs *fs, struct statvfs *ret);

/* file.c */
/* An open file.  A handle opened for reading before its file was copied up reads the lower copy;
 * once the data has moved up (another handle wrote), it switches to the upper copy, so every
 * reader sees every write. */
struct ovl_file {
	pthread_rwlock_t lock; /* shared while fd is in use; exclusive to switch it */
	int fd;
	int flags;
	struct ovl_inode *in; /* holds a ref */
	bool lower;	      /* fd reads a lower copy */
	uint64_t gen;	      /* in->data_gen when fd was opened */
};
/* The flags a backing file is opened with for a FUSE open with FLAGS: read-write and without
 * O_APPEND under the writeback cache, never O_DIRECT. */
int ovl_backing_flags(const struct ovl_fs *fs, int flags);
/* Opens IN for I/O with FLAGS (copying up first when writing). */
int ovl_open(struct ovl_fs *fs, struct ovl_inode *in, int flags, bool *ret_keep_cache,
	     struct ovl_file **ret);
/* Wraps FD, just created in the upper for IN, as a handle. */
int ovl_file_new(struct ovl_fs *fs, struct ovl_inode *in, int fd, int flags, struct ovl_file **ret);
/* The fd to use now, with F's lock held shared until ovl_file_put. */
int ovl_file_get(struct ovl_fs *fs, struct ovl_file *f);
void ovl_file_put(struct ovl_file *f);
void ovl_file_release(struct ovl_fs *fs, struct ovl_file *f);
/* An fd for I/O on the object at O_PATH FD.  Reading through it never moves the object's atime
 * where O_NOATIME is allowed (times.c). */
int ovl_reopen(int fd, int flags);

/* times.c */
/* Around a request that changes a regular file's data through FD: keeps the stored mtime the
 * kernel's under the writeback cache (no-ops without it). */
void ovl_times_data_begin(struct ovl_fs *fs, struct ovl_inode *in, int fd);
void ovl_times_data_end(struct ovl_fs *fs, struct ovl_inode *in, int fd);
/* utimensat of the object at O_PATH FD (IN's node), remembering the mtime the kernel gave. */
int ovl_times_set(struct ovl_fs *fs, struct ovl_inode *in, int fd, const struct timespec ts[2]);
/* IN was opened for reading or listing: moves its upper copy's atime as relatime does. */
void ovl_times_accessed(struct ovl_fs *fs, struct ovl_inode *in);

/* xattr.c */
bool ovl_xattr_private(struct ovl_fs *fs, const char *name);
ssize_t ovl_getxattr(struct ovl_fs *fs, struct ovl_inode *in, const char *name, void *buf,
		     size_t size);
ssize_t ovl_listxattr(struct ovl_fs *fs, struct ovl_inode *in, char *buf, size_t size);
int ovl_setxattr(struct ovl_fs *fs, struct ovl_inode *in, const char *name, const void *value,
		 size_t size, int flags);
int ovl_removexattr(struct ovl_fs *fs, struct ovl_inode *in, const char *name);
/* Copies the xattrs of SRC to DST except the overlay's private ones. */
int ovl_copy_xattrs(struct ovl_fs *fs, int src, int dst);

/* loop.c */
/* Serves SE's requests on up to MAX threads until the session ends; 0 or the -errno of a failed
 * read. */
int ovl_loop_run(struct fuse_session *se, unsigned max);
/* Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (OLD gets the previous mask), so that
 * threads started meanwhile leave them to the main thread, whose handlers end the session. */
void ovl_block_exit_signals(sigset_t *old);
/* Set while the current thread handles a FUSE_TMPFILE, which reaches the create handler. */
extern _Thread_local bool ovl_loop_tmpfile;
/* Set while the current thread handles a WRITE, SETATTR or OPEN the kernel marked for clearing
 * the set-id bits (FUSE_HANDLE_KILLPRIV_V2), which libfuse 3.14 does not pass on. */
extern _Thread_local bool ovl_loop_kill_suidgid;
/* Makes SE's mounted connection go through the loop's reads and writes, which add
 * FUSE_HANDLE_KILLPRIV_V2 to the INIT reply when the kernel offers it (then *KILLPRIV becomes
 * true before any other request is read).  Call after fuse_session_mount.  0 or -errno. */
int ovl_loop_attach(struct fuse_session *se, atomic_bool *killpriv);

/* stats.c */
/* Request counts per opcode when LAYERFS_FUSE_STATS names a file (docs/overlay.md, "Round
 * trips").  Start before the first request is read; count from any thread; finish once the
 * session has ended, which writes the counts. */
void ovl_stats_start(void);
void ovl_stats_count(uint32_t opcode);
void ovl_stats_finish(void);

/* acl.c */
/* What a new object gets from its parent: the mode to make it with and, when ACLs are on and the
 * parent has a default ACL, the ACLs to set on it. */
struct ovl_acl_new {
	mode_t mode;	     /* permission bits */
	bool parent_default; /* the parent's upper copy has a default ACL */
	char *access;	     /* access ACL to set (NULL: the mode says it all) */
	size_t access_len;
	char *dflt; /* directories: the default ACL they inherit */
	size_t dflt_len;
};
/* system.posix_acl_access or system.posix_acl_default. */
bool ovl_acl_name(const char *name);
/* True unless the filesystem of the object at FD has no POSIX ACLs. */
bool ovl_acl_supported(int fd);
/* Works out what an object of MODE (with S_IFMT) asked for with UMASK gets in the directory at
 * PARENT_FD, the topmost copy of PARENT (whose lock the caller holds).  Free *RET with
 * ovl_acl_new_clear. */
int ovl_acl_prepare(struct ovl_fs *fs, struct ovl_inode *parent, int parent_fd, mode_t mode,
		    mode_t umask, struct ovl_acl_new *ret);
/* Gives the new object at FD (made with A->mode) the ACLs of A, or, with ACLs off, takes away
 * what its backing filesystem inherited. */
int ovl_acl_apply(struct ovl_fs *fs, int fd, const struct ovl_acl_new *a);
void ovl_acl_new_clear(struct ovl_acl_new *a);
/* Rewrites the ids of the named entries of ACL value BUF (LEN bytes) to those on disk (TO_DISK:
 * a value being set; -EINVAL when an id has no disk id, as for chown) or to those the mount shows
 * (a value being read).  0 or -errno. */
int ovl_acl_map_ids(struct ovl_fs *fs, char *buf, size_t len, bool to_disk);
/* Removes any ACL from the directory at FD (the work dir: what is made there inherits nothing
 * from where the work dir happens to live). */
void ovl_acl_strip_dir(int fd);

/* ops.c */
extern const struct fuse_lowlevel_ops ovl_ops;

/* super.c */
int ovl_fs_new(const lyr_fs_config *cfg, lyr_fs_error *err, struct ovl_fs **ret);
void ovl_fs_free(struct ovl_fs *fs);

/* Small helpers (util.c). */
/* "/proc/self/fd/N" of FD into BUF. */
void ovl_proc_path(int fd, char buf[64]);
/* Fills ERR (may be NULL) with a message for people and returns R. */
int ovl_fail(lyr_fs_error *err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Logs a rate-limited line about an unexpected condition: on stderr, or to syslog once the
 * serving process has left its terminal (ovl_log_to_syslog). */
extern bool ovl_log_to_syslog;
void ovl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Upper directories that are read-only to their owner (copies of such lower directories) made
 * owner-writable for the span of one change, when the daemon cannot override permissions (an
 * unprivileged daemon owns the upper but has no CAP_DAC_OVERRIDE).  Callers hold the lock of
 * each directory's inode exclusively, so no other change sees the mode in between. */
struct ovl_wscope {
	int n;
	int fd[4];
	mode_t mode[4];
};
void ovl_writable_add(struct ovl_fs *fs, struct ovl_wscope *w, int dirfd);
void ovl_writable_end(struct ovl_wscope *w);
/* rm -rf of NAME in DIRFD (not following symlinks); 0 or -errno. */
int ovl_remove_tree(int dirfd, const char *name);
