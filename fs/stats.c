/* Request counts per FUSE opcode, for finding where a workload's round trips go and for tests
 * that keep them from growing.  Off unless the serving process starts with LAYERFS_FUSE_STATS
 * naming a file (an absolute path: the serving process changes to /); the counts are written
 * there, one "NAME COUNT" line per opcode seen, when the session ends (after the unmount).
 * Counters are atomics bumped by the request loop before each request is dispatched; opcodes
 * this table does not know are counted as OTHER. */
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ovl.h"

#define OPCODES 64 /* above every opcode of linux/fuse.h but CUSE's */

static const char *const names[OPCODES] = {
    [FUSE_LOOKUP] = "LOOKUP",
    [FUSE_FORGET] = "FORGET",
    [FUSE_GETATTR] = "GETATTR",
    [FUSE_SETATTR] = "SETATTR",
    [FUSE_READLINK] = "READLINK",
    [FUSE_SYMLINK] = "SYMLINK",
    [FUSE_MKNOD] = "MKNOD",
    [FUSE_MKDIR] = "MKDIR",
    [FUSE_UNLINK] = "UNLINK",
    [FUSE_RMDIR] = "RMDIR",
    [FUSE_RENAME] = "RENAME",
    [FUSE_LINK] = "LINK",
    [FUSE_OPEN] = "OPEN",
    [FUSE_READ] = "READ",
    [FUSE_WRITE] = "WRITE",
    [FUSE_STATFS] = "STATFS",
    [FUSE_RELEASE] = "RELEASE",
    [FUSE_FSYNC] = "FSYNC",
    [FUSE_SETXATTR] = "SETXATTR",
    [FUSE_GETXATTR] = "GETXATTR",
    [FUSE_LISTXATTR] = "LISTXATTR",
    [FUSE_REMOVEXATTR] = "REMOVEXATTR",
    [FUSE_FLUSH] = "FLUSH",
    [FUSE_INIT] = "INIT",
    [FUSE_OPENDIR] = "OPENDIR",
    [FUSE_READDIR] = "READDIR",
    [FUSE_RELEASEDIR] = "RELEASEDIR",
    [FUSE_FSYNCDIR] = "FSYNCDIR",
    [FUSE_GETLK] = "GETLK",
    [FUSE_SETLK] = "SETLK",
    [FUSE_SETLKW] = "SETLKW",
    [FUSE_ACCESS] = "ACCESS",
    [FUSE_CREATE] = "CREATE",
    [FUSE_INTERRUPT] = "INTERRUPT",
    [FUSE_BMAP] = "BMAP",
    [FUSE_DESTROY] = "DESTROY",
    [FUSE_IOCTL] = "IOCTL",
    [FUSE_POLL] = "POLL",
    [FUSE_NOTIFY_REPLY] = "NOTIFY_REPLY",
    [FUSE_BATCH_FORGET] = "BATCH_FORGET",
    [FUSE_FALLOCATE] = "FALLOCATE",
    [FUSE_READDIRPLUS] = "READDIRPLUS",
    [FUSE_RENAME2] = "RENAME2",
    [FUSE_LSEEK] = "LSEEK",
    [FUSE_COPY_FILE_RANGE] = "COPY_FILE_RANGE",
    [FUSE_SETUPMAPPING] = "SETUPMAPPING",
    [FUSE_REMOVEMAPPING] = "REMOVEMAPPING",
    [FUSE_SYNCFS] = "SYNCFS",
    [FUSE_TMPFILE] = "TMPFILE",
};

static atomic_uint_fast64_t counts[OPCODES + 1]; /* the last: OTHER */
static bool enabled;

void ovl_stats_start(void)
{
	const char *path = getenv("LAYERFS_FUSE_STATS");
	enabled = path && *path;
	for (size_t i = 0; i <= OPCODES; i++)
		atomic_store(&counts[i], 0);
}

void ovl_stats_count(uint32_t opcode)
{
	if (enabled)
		atomic_fetch_add_explicit(
		    &counts[opcode < OPCODES && names[opcode] ? opcode : OPCODES], 1,
		    memory_order_relaxed);
}

void ovl_stats_finish(void)
{
	if (!enabled)
		return;
	const char *path = getenv("LAYERFS_FUSE_STATS");
	FILE *f = fopen(path, "we");
	if (!f) {
		ovl_log("request counts: '%s': %m", path);
		return;
	}
	for (size_t i = 0; i <= OPCODES; i++) {
		uint64_t n = atomic_load(&counts[i]);
		if (n)
			fprintf(f, "%s %llu\n", i < OPCODES ? names[i] : "OTHER",
				(unsigned long long)n);
	}
	if (fclose(f) != 0)
		ovl_log("request counts: '%s': %m", path);
}
