/* Private to exec/: the sandbox's mount state, shared by sandbox.c (the processes) and
 * sandbox_mount.c (the mounts).  Grouped by the file that defines each function. */
#pragma once

#include "layerfs/exec.h"

/* What the sandbox's init mounted and created, so that it can undo it after the run.  The
 * arrays hold MAX_* entries and are allocated before the fork. */
typedef struct lyr_exec_mounts {
	int rootfd; /* O_PATH of the root (bound onto itself) */
	size_t max_mounted, max_created;
	int *mounted; /* O_PATH fds of each mount's root, in mount order */
	size_t n_mounted;
	struct {
		int parentfd;
		char name[256];
		bool file; /* an empty file made for a file bound onto it */
	} * created;	   /* directories (and files) created for a mount target, outermost first */
	size_t n_created;
	/* The filesystems of the sandbox's /proc and /dev (proc, its masks, the /dev tmpfs,
	 * devpts, /dev/shm, the bound nodes' devtmpfs), filled once they are mounted: no mount
	 * target may lie on one of them. */
	struct {
		dev_t dev;
		const char *where; /* "/proc" or "/dev" */
	} sys[16];
	size_t n_sys;
} lyr_exec_mounts;

/* sandbox_mount.c */
/* Mounts /proc, /dev and SB's mounts (parents first) inside ST->rootfd.  Returns 0 or -errno
 * with ERR naming the mount and the cause. */
int lyr_exec_mounts_apply(lyr_exec_mounts *st, const lyr_sandbox *sb, lyr_exec_error *err);
/* Detaches every recorded mount and removes the directories created for them. */
void lyr_exec_mounts_undo(lyr_exec_mounts *st);
/* Brings up "lo" in the current network namespace. */
int lyr_exec_loopback_up(void);
