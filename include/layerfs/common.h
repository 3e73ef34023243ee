/* Small shared helpers: cleanup attributes, fault injection, progress callbacks.
 * Every module may include this header; it pulls in no dependency but libc. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void lyr_freep(void *p) { free(*(void **)p); }
static inline void lyr_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void lyr_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void lyr_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(lyr_freep)
#define _cleanup_close_ _cleanup_(lyr_closep)
#define _cleanup_fclose_ _cleanup_(lyr_fclosep)
#define _cleanup_closedir_ _cleanup_(lyr_closedirp)

/* Hand a resource over to the caller: returns it and leaves the local empty. */
#define LYR_TAKE_PTR(p)                    \
	({                                 \
		typeof(p) _tmp_ = (p);     \
		(p) = NULL;                \
		_tmp_;                     \
	})
#define LYR_TAKE_FD(fd)                    \
	({                                 \
		int _tmp_ = (fd);          \
		(fd) = -1;                 \
		_tmp_;                     \
	})

#define LYR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Fault injection for crash tests: when $LAYERFS_FAULT names POINT (a comma-separated list
 * of point names), the process kills itself with SIGKILL right there, as a crash would. */
void lyr_fault(const char *point);

/* Progress of a long operation; fn may be NULL.  Called with running totals. */
typedef struct lyr_progress {
	void (*fn)(void *ctx, uint64_t files, uint64_t bytes);
	void *ctx;
} lyr_progress;

static inline void lyr_progress_report(const lyr_progress *p, uint64_t files, uint64_t bytes)
{
	if (p && p->fn)
		p->fn(p->ctx, files, bytes);
}

/* Lower-case hex of LEN bytes into OUT (2*LEN+1 bytes). */
void lyr_hex(const uint8_t *bytes, size_t len, char *out);

/* mkdir -p of PATH (absolute or relative to the cwd) with MODE; returns 0 or -errno. */
int lyr_mkdir_p(const char *path, mode_t mode);

/* Reads PATH fully into a NUL-terminated heap buffer; returns 0 or -errno. */
int lyr_read_file(const char *path, char **ret, size_t *ret_len);
/* The same for a file of at most MAX bytes: reads no more than MAX + 1 bytes and returns
 * -EFBIG for a longer file (or an endless one such as /dev/zero). */
int lyr_read_file_max(const char *path, size_t max, char **ret, size_t *ret_len);
/* openat(2) for reading that leaves the object's atime alone: O_NOATIME where the caller may
 * (the owner, or CAP_FOWNER), plain otherwise.  The fd, or -1 with errno set. */
int lyr_open_noatime(int dirfd, const char *path, int flags);

/* Whether the directory open as DIRFD holds no entry but "." and ".." (DIRFD itself is left
 * open and unread).  Returns 1 empty, 0 not, or -errno. */
int lyr_dir_empty(int dirfd);

/* Splits LINE, one line of /proc/self/mountinfo, in place: its mount point (octal escapes such
 * as \040 undone) into *RET_MOUNTPOINT and its filesystem type into *RET_TYPE, both pointing
 * into LINE.  0, or -EINVAL when LINE is not such a line. */
int lyr_mountinfo_parse(char *line, char **ret_mountpoint, char **ret_type);
