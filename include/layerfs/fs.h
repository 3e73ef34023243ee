/* fs/: the copy-on-write FUSE overlay.  A mount shows a stack of read-only lower layers (topmost
 * first) and, optionally, one writable upper directory as one tree; changes go to the upper
 * (copy-up), deletions become whiteouts there.  Without an upper the mount is read-only.
 * The layer rules themselves (what the merged tree holds) are in stack.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One line of an id mapping: ids INNER..INNER+COUNT-1 as the mount shows them are stored on disk
 * as OUTER..OUTER+COUNT-1 (fuse-overlayfs' uidmapping=INNER:OUTER:COUNT). */
typedef struct lyr_fs_idmap {
	uint32_t inner, outer, count;
} lyr_fs_idmap;

typedef struct lyr_fs_config {
	const char *const *lowers; /* lower layer directories, topmost first */
	size_t nlowers;		   /* 1..500 (0 with an upper: a scratch tree) */
	const char *upper;	   /* NULL: read-only mount */
	const char *work; /* required with UPPER: an empty-able dir on UPPER's filesystem */

	bool foreground;  /* serve in the calling process until unmounted */
	/* UPPER was only ever written through layerfs (a store ref), so it holds no OCI/AUFS
	 * ".wh." markers and lookups need not probe it for them; off for `layerfs overlay`, whose
	 * upper fuse-overlayfs may have written */
	bool upper_native;
	bool read_only;	  /* mount read-only even with an upper */
	bool allow_other; /* let other users in (FUSE allow_other) */
	bool allow_root;
	bool nodev;	  /* device nodes do not open (lyr_fs_config_init: on, as libfuse) */
	bool nosuid;	  /* set-id bits ignored; always so for a mount by another user than root */
	bool noexec, noatime;
	bool nodiratime; /* directories' atime never moves (noatime: no atime moves) */
	bool writeback;	    /* FUSE writeback cache (lyr_fs_config_init: on) */
	bool no_fsync;	    /* fsync=0 / volatile: fsync is a no-op */
	/* the kernel backend's index=on (lyr_fs_config_init: on): needed only to keep a lower
	 * hard-link group one file across a copy-up, and it costs every lookup of a lower file a
	 * search of the index */
	bool kernel_index;
	bool static_nlink;  /* directories report st_nlink 1 */
	bool noacl;	    /* POSIX ACLs not enforced, their xattrs EOPNOTSUPP */
	bool debug;	    /* libfuse debug output (foreground only) */
	double timeout;	    /* entry/attr/negative cache seconds; < 0: default (86400) */
	unsigned threads;   /* max worker threads; 0: default; 1: single-threaded loop */
	unsigned max_write; /* bytes; 0: default (1 MiB) */
	/* owner and mode kept in an xattr: 0 off; 1 user.containers.override_stat;
	 * 2 security.fuseoverlayfs.override_stat */
	int xattr_permissions;

	const lyr_fs_idmap *uidmap; /* NULL/0: identity */
	size_t nuidmap;
	const lyr_fs_idmap *gidmap;
	size_t ngidmap;
	bool squash_to_root;   /* every file shows uid/gid 0 */
	int64_t squash_to_uid; /* >= 0: every file shows this uid */
	int64_t squash_to_gid;

	const char *fsname;  /* shown in /proc/mounts; default "layerfs" */
	const char *context; /* SELinux context= mount option, or NULL */

	/* Called once a FOREGROUND mount is live, in the serving process (NULL: none). */
	void (*ready)(void *ctx, pid_t pid);
	void *ready_ctx;

	/* Background mounts whose life is another process's (exec's views): when OWNER > 0 (the
	 * caller or one of its ancestors), the serving process watches it through a pidfd.  Once
	 * OWNER has exited, however it ended, OWNER_GONE (NULL: always true) is asked, in a
	 * thread of the serving process, whether the mount should end, and asked again every
	 * LYR_FS_OWNER_RECHECK_MS while it says no and the mount lives; once it says yes the
	 * mount ends as on SIGTERM (unmounted, lazily when busy) and ORPHANED (may be NULL) runs
	 * in the serving process after the unmount, before it exits.  Both get OWNER_CTX, as the
	 * caller set it up before lyr_fs_mount (the serving process holds a copy of the caller's
	 * memory and no descriptor of it: a store must be opened afresh there). */
	pid_t owner;
	bool (*owner_gone)(void *ctx);
	void (*orphaned)(void *ctx);
	void *owner_ctx;
} lyr_fs_config;

#define LYR_FS_OWNER_RECHECK_MS 250

/* A message for people naming the object and the cause of a failure. */
typedef struct lyr_fs_error {
	char msg[1024];
} lyr_fs_error;

/* Defaults: no layers, timeout -1, squash ids -1, nodev and writeback on, everything else
 * off. */
void lyr_fs_config_init(lyr_fs_config *cfg);

/* Mounts CFG at MOUNTPOINT.  Without CFG->foreground: forks a serving process, waits until the
 * mount is live (or failed), and returns 0 with the serving process's pid in *RET_PID; that
 * process has its own session and exits after the mount is unmounted.  With CFG->foreground:
 * serves in the calling process until unmounted (or SIGINT/SIGTERM/SIGHUP), then returns 0 with
 * *RET_PID = its pid.  On failure returns -errno and fills ERR (may be NULL): -EINVAL bad config
 * (directories that overlap among it: two layers equal or nested, or the mountpoint inside a
 * layer), -ENOENT/-ENOTDIR/-EACCES a layer, work dir or mountpoint, -EXDEV work dir on another
 * filesystem than the upper, -EIO the kernel refused the mount. */
int lyr_fs_mount(const lyr_fs_config *cfg, const char *mountpoint, lyr_fs_error *err,
		 pid_t *ret_pid);

/* The absolute path of PATH with its parent resolved and its last name kept as given, so that a
 * dead mount (whose root cannot be looked at) has one.  0 or -errno (from the parent). */
int lyr_fs_mountpoint_path(const char *path, char *ret, size_t size);

/* When MOUNTPOINT is a dead FUSE mount (its serving process gone: ENOTCONN), detaches it if it
 * is a layerfs one (fuse.layerfs), each of several stacked, and returns 1; any other dead mount
 * is refused with -ENOTCONN and ERR saying how to clear it.  0 when it is not a dead mount. */
int lyr_fs_clear_dead(const char *mountpoint, lyr_fs_error *err);

/* Unmounts MOUNTPOINT (umount2 when privileged, else `fusermount3 -u`; lazily when the mount is
 * dead).  When PID > 0, waits
 * until that serving process has exited (reaping it when it is a child).  Returns 0 or -errno:
 * -EBUSY in use, -EINVAL not a mount, -EPERM; ERR (may be NULL) says why. */
int lyr_fs_umount(const char *mountpoint, pid_t pid, lyr_fs_error *err);

/* Before the upper of a ref is frozen into a layer (commit), with the ref not mounted: makes each
 * name of a lower hard-link group that was copied up while mounted (WORK/index) an upper hard
 * link of the group's copy, so the layer holds the whole group with its new content.  LOWERS
 * topmost first as for the mount.  Does nothing when no group was copied up.  0 or -errno (ERR
 * says why). */
int lyr_fs_prepare_commit(const char *const *lowers, size_t nlowers, const char *upper,
			  const char *work, lyr_fs_error *err);

/* Option strings in fuse-overlayfs' grammar (comma-separated; "context=..." may hold commas in
 * quotes; "\," and "\:" escape), as `layerfs overlay -o` and `layerfs mount -o` take them.
 * Unknown options are collected, not refused (see lyr_fs_options_unknown). */
typedef struct lyr_fs_options lyr_fs_options;

int lyr_fs_options_new(lyr_fs_options **ret);
void lyr_fs_options_free(lyr_fs_options *o);
/* Applies TEXT; may be called several times (later options win).  Returns 0, or -errno with a
 * message in lyr_fs_options_error (-EINVAL: a bad value). */
int lyr_fs_options_parse(lyr_fs_options *o, const char *text);
const char *lyr_fs_options_error(const lyr_fs_options *o);
/* The unknown options seen, comma-separated ("" when none). */
const char *lyr_fs_options_unknown(const lyr_fs_options *o);
/* True when lowerdir, upperdir or workdir was given. */
bool lyr_fs_options_has_dirs(const lyr_fs_options *o);
/* The configuration the options describe (owned by O; valid while O lives and unchanged). */
lyr_fs_config *lyr_fs_options_config(lyr_fs_options *o);

/* The fuse-overlayfs-compatible command: `overlay -o lowerdir=A:B[,upperdir=U,workdir=W][,...]
 * MOUNTPOINT`, or mount(8)'s helper form `SOURCE MOUNTPOINT -o OPTS` when argv[0]'s basename is
 * "mount.fuse.layerfs".  ARGV[0] is the command name.  Returns the process exit status: 0 mounted
 * (or --help/--version), 1 mount failed (reason on stderr), 2 usage error. */
int lyr_fs_overlay_main(int argc, char **argv);

/* --- the kernel backend (kernel.c) ----------------------------------------------------------
 * A view mounted by kernel overlayfs instead of the daemon: same directories, same tree, no
 * serving process (docs/overlay.md, "Backends"). */
typedef enum lyr_fs_backend { LYR_FS_AUTO = 0, LYR_FS_KERNEL = 1, LYR_FS_FUSE = 2 } lyr_fs_backend;

/* "auto", "kernel", "fuse": 0, or -EINVAL for anything else. */
int lyr_fs_backend_parse(const char *text, lyr_fs_backend *ret);
const char *lyr_fs_backend_name(lyr_fs_backend b);

/* How this process may mount kernel overlayfs: not at all; privileged (trusted.overlay.*
 * markers, redirect_dir and metacopy followed); or in a user namespace with userxattr
 * (user.overlay.* markers; the kernel refuses redirect_dir and metacopy there). */
typedef enum lyr_fs_kernel_mode {
	LYR_KERNEL_NONE = 0,
	LYR_KERNEL_TRUSTED = 1,
	LYR_KERNEL_USERXATTR = 2,
} lyr_fs_kernel_mode;

/* Tries a small kernel overlay mount in SCRATCH (an existing empty directory on the upper
 * directories' filesystem; left with a few empty directories in it): privileged first (in the
 * initial user namespace only), then userxattr.  Returns 0 with the mode in *RET, or -errno with
 * *RET = LYR_KERNEL_NONE and WHY (may be NULL) holding the kernel's reason. */
int lyr_fs_kernel_probe(const char *scratch, lyr_fs_kernel_mode *ret, lyr_fs_error *why);

/* 0 when kernel overlayfs in MODE can show CFG as the daemon would; otherwise -errno with WHY
 * (may be NULL) naming what needs the daemon (an option only it has, the stack depth...). */
int lyr_fs_kernel_refuses(const lyr_fs_config *cfg, lyr_fs_kernel_mode mode, lyr_fs_error *why);

/* Mounts CFG at MOUNTPOINT with kernel overlayfs in MODE (CFG->foreground, ready and owner are
 * not used).  With an upper, the kernel works in CFG->work/kernel (made here).  EMPTY is an
 * empty directory serving as the lower of a scratch tree.  Returns 0 with the mount's ID
 * (statx stx_mnt_id, unique on Linux >= 6.8; 0 if unknown) in *RET_MNT_ID (may be NULL), or
 * -errno with ERR saying why (the kernel's own words when it refused). */
int lyr_fs_kernel_mount(const lyr_fs_config *cfg, lyr_fs_kernel_mode mode, const char *empty,
			const char *mountpoint, lyr_fs_error *err, uint64_t *ret_mnt_id);

/* The mount ID of the mount at MOUNTPOINT (as lyr_fs_kernel_mount returns it), or -errno. */
int lyr_fs_kernel_mount_id(const char *mountpoint, uint64_t *ret);
