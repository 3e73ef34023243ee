/* Test helpers for tests that mount the overlay for real: two lower layers, an upper and a work
 * dir under a fresh temporary root, mounted through the library (a daemonized serving process)
 * and always unmounted in teardown. */
#pragma once

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/fs.h"
#include "testutil.h"

typedef struct mnt {
	char *root, *l1, *l2, *upper, *work, *mp;
	const char *lowers[2]; /* l1 over l2 */
	pid_t pid;
	bool mounted;
} mnt;

static mnt M;

static inline void mnt_skip_unless_fuse(void)
{
	tu_need_fuse();
	/* the layers these tests build carry trusted.* xattrs, foreign owners and devices */
	if (geteuid() != 0)
		cr_skip_test("these mount tests need root (they run as root in CI)");
}

static inline void mnt_dirs(void)
{
	M.root = tu_mkdtemp();
	M.l1 = tu_path(M.root, "l1");
	M.l2 = tu_path(M.root, "l2");
	M.upper = tu_path(M.root, "upper");
	M.work = tu_path(M.root, "work");
	M.mp = tu_path(M.root, "mnt");
	M.lowers[0] = M.l1;
	M.lowers[1] = M.l2;
	const char *dirs[] = {M.l1, M.l2, M.upper, M.work, M.mp};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(dirs); i++)
		cr_assert_eq(mkdir(dirs[i], 0755), 0);
}

typedef struct mnt_opts {
	bool read_only_no_upper;
	bool writeback;
	int xattr_permissions;
	const lyr_fs_idmap *uidmap;
	size_t nuidmap;
	bool squash_to_root;
	bool allow_other;
	bool noacl;
	bool noatime, nodiratime;
} mnt_opts;

/* CFG as the usual mount has it: l1 over l2, with the upper and the work dir. */
static inline void mnt_config(lyr_fs_config *cfg)
{
	lyr_fs_config_init(cfg);
	cfg->lowers = M.lowers;
	cfg->nlowers = 2;
	cfg->upper = M.upper;
	cfg->work = M.work;
}

static inline void mnt_mount_opts(const mnt_opts *o)
{
	lyr_fs_config cfg;
	mnt_config(&cfg);
	if (o && o->read_only_no_upper) {
		cfg.upper = NULL;
		cfg.work = NULL;
	}
	if (o) {
		cfg.writeback = o->writeback;
		cfg.xattr_permissions = o->xattr_permissions;
		cfg.uidmap = o->uidmap;
		cfg.nuidmap = o->nuidmap;
		cfg.squash_to_root = o->squash_to_root;
		cfg.allow_other = o->allow_other;
		cfg.noacl = o->noacl;
		cfg.noatime = o->noatime;
		cfg.nodiratime = o->nodiratime;
	}
	lyr_fs_error err = {{0}};
	int r = lyr_fs_mount(&cfg, M.mp, &err, &M.pid);
	cr_assert_eq(r, 0, "mount: %d %s", r, err.msg);
	M.mounted = true;
}

static inline void mnt_mount(void)
{
	mnt_mount_opts(NULL);
}

static inline void mnt_umount(void)
{
	if (!M.mounted)
		return;
	lyr_fs_error err;
	if (lyr_fs_umount(M.mp, M.pid, &err) < 0) {
		umount2(M.mp, MNT_DETACH);
		kill(M.pid, SIGTERM);
		waitpid(M.pid, NULL, 0);
	}
	M.mounted = false;
}

static inline void mnt_teardown(void)
{
	mnt_umount();
	tu_rmtree_unmounted(M.root); /* fails a test that left another mount */
	free(M.root);
	free(M.l1);
	free(M.l2);
	free(M.upper);
	free(M.work);
	free(M.mp);
	memset(&M, 0, sizeof(M));
}

/* Path inside the mount / a layer (static buffers, rotating). */
static inline const char *in_dir(const char *dir, const char *rel)
{
	static char bufs[8][4096];
	static int k;
	char *b = bufs[k++ % 8];
	snprintf(b, 4096, "%s/%s", dir, rel);
	return b;
}
/* A short name made from FMT (static buffers, rotating: the last eight stay valid). */
static inline const char *short_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline const char *short_name(const char *fmt, ...)
{
	static char bufs[8][64];
	static int k;
	char *b = bufs[k++ % 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, 64, fmt, ap);
	va_end(ap);
	return b;
}

#define MP(rel) in_dir(M.mp, rel)
#define UP(rel) in_dir(M.upper, rel)

/* Names the file open at FD (an O_TMPFILE file) PATH, as linkat(2) suggests: through its
 * /proc/self/fd entry.  linkat's result, errno set. */
static inline int link_fd(int fd, const char *path)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

static inline void mk_whiteout(const char *dir, const char *rel)
{
	const char *p = in_dir(dir, rel);
	cr_assert_eq(mknod(p, S_IFCHR | 0600, makedev(0, 0)), 0, "mknod %s: %s", p,
		     strerror(errno));
}

static inline char *slurp(const char *path)
{
	char *buf = NULL;
	if (lyr_read_file(path, &buf, NULL) < 0)
		return NULL;
	return buf;
}

static inline void put(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	size_t len = strlen(data);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(close(fd), 0);
}

static inline ino_t ino_of(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "lstat %s: %s", path, strerror(errno));
	return st.st_ino;
}

/* True when the file at PATH holds no data blocks (a metadata-only copy: all hole). */
static inline bool all_hole(const char *path)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	off_t r = lseek(fd, 0, SEEK_DATA);
	int e = errno;
	close(fd);
	return r < 0 && e == ENXIO;
}
