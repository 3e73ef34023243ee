/* File times: the stored value is the one the kernel shows.
 *
 * mtime under the writeback cache.  The kernel then keeps a regular file's mtime and ctime
 * itself: write(2) moves them in the kernel's inode, and the kernel sends them later in a
 * SETATTR.  The data comes in WRITE requests, served on other threads before or after that
 * SETATTR, and each pwrite moves the backing file's mtime to the time of the pwrite.  So a
 * request that changes data leaves the stored mtime where the kernel last put it (the value the
 * file had when the kernel first looked, or the last SETATTR's), and only SETATTR moves it.
 * ctime cannot be set on the backing file; it is not part of a layer's digest.
 *
 * atime.  Reads served from the page cache never reach the daemon, and the kernel does not keep
 * atime for a FUSE file, so atime moves when a file is opened for reading or a directory for
 * listing, under relatime's rule (see relatime_due), on
 * the upper copy only: a lower file is not copied up for its atime, as with kernel overlayfs.
 * The daemon's own reads never move a backing atime (O_NOATIME where allowed). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "ovl.h"

#define RELATIME_SECONDS (24 * 60 * 60)

static pthread_mutex_t *times_lock(struct ovl_fs *fs, const struct ovl_inode *in)
{
	return &fs->times_locks[in->ino % OVL_TIMES_LOCKS];
}

static bool kernel_keeps_mtime(const struct ovl_fs *fs, const struct ovl_inode *in)
{
	return fs->cfg.writeback && S_ISREG(in->type);
}

void ovl_times_data_begin(struct ovl_fs *fs, struct ovl_inode *in, int fd)
{
	if (!kernel_keeps_mtime(fs, in))
		return;
	pthread_mutex_t *l = times_lock(fs, in);
	pthread_mutex_lock(l);
	struct stat st;
	if (!in->mtime_known && fstat(fd, &st) == 0) {
		in->mtime = st.st_mtim;
		in->mtime_known = true;
	}
	pthread_mutex_unlock(l);
}

void ovl_times_data_end(struct ovl_fs *fs, struct ovl_inode *in, int fd)
{
	if (!kernel_keeps_mtime(fs, in))
		return;
	pthread_mutex_t *l = times_lock(fs, in);
	pthread_mutex_lock(l);
	if (in->mtime_known) {
		struct timespec ts[2] = {{0, UTIME_OMIT}, in->mtime};
		if (futimens(fd, ts) < 0)
			ovl_log("cannot keep the mtime of inode %llu: %m",
				(unsigned long long)in->ino);
	}
	pthread_mutex_unlock(l);
}

int ovl_times_set(struct ovl_fs *fs, struct ovl_inode *in, int fd, const struct timespec ts[2])
{
	if (!kernel_keeps_mtime(fs, in))
		return utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	pthread_mutex_t *l = times_lock(fs, in);
	pthread_mutex_lock(l);
	int r = 0;
	struct stat st;
	if (utimensat(fd, "", ts, AT_EMPTY_PATH) < 0)
		r = -errno;
	else if (fstat(fd, &st) == 0) {
		in->mtime = st.st_mtim;
		in->mtime_known = true;
	} else
		in->mtime_known = false;
	pthread_mutex_unlock(l);
	return r;
}

/* relatime's rule: atime not later than mtime, earlier than ctime, or a day old.  (The kernel
 * also moves an atime equal to ctime; here the daemon's own update leaves them equal.) */
static bool relatime_due(const struct stat *st)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	const struct timespec *a = &st->st_atim, *m = &st->st_mtim, *c = &st->st_ctim;
	bool not_after_m =
	    a->tv_sec < m->tv_sec || (a->tv_sec == m->tv_sec && a->tv_nsec <= m->tv_nsec);
	bool before_c =
	    a->tv_sec < c->tv_sec || (a->tv_sec == c->tv_sec && a->tv_nsec < c->tv_nsec);
	return not_after_m || before_c || now.tv_sec - a->tv_sec >= RELATIME_SECONDS;
}

void ovl_times_accessed(struct ovl_fs *fs, struct ovl_inode *in)
{
	bool dir = S_ISDIR(in->type);
	if (fs->cfg.noatime || (dir && fs->cfg.nodiratime) || !fs->has_upper || fs->read_only)
		return;
	if (ovl_inode_rdlock(fs, in) < 0)
		return;
	bool moved = false;
	struct stat st;
	if (in->node.layer == 0 && fstatat(in->node.fd, "", &st, AT_EMPTY_PATH) == 0 &&
	    relatime_due(&st)) {
		struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
		moved = utimensat(in->node.fd, "", ts, AT_EMPTY_PATH) == 0;
	}
	pthread_rwlock_unlock(&in->lock);
	/* the kernel keeps attributes for the entry timeout: it must ask again to see the atime */
	if (moved && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ovl_inode_id(fs, in), -1, 0);
}
