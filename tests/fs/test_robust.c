/* The overlay with malformed or vanishing layers, id mappings, override_stat permissions, large
 * and changing directories, deep paths and locks.  Needs /dev/fuse; skips otherwise. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "mnt.h"

static void bad_layers(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	const char *dev = in_dir(M.l1, "dev13");
	cr_assert_eq(mknod(dev, S_IFCHR | 0600, makedev(1, 3)), 0);
	tu_write(M.l1, "redir/own", "own");
	cr_assert_eq(setxattr(in_dir(M.l1, "redir"), "trusted.overlay.redirect", "../../etc", 9, 0),
		     0);
	tu_write(M.l1, "orphan", "");
	cr_assert_eq(setxattr(in_dir(M.l1, "orphan"), "trusted.overlay.metacopy", "", 0, 0), 0);
	tu_write(M.l1, "dir/g", "G");
	tu_write(M.l2, "dir/h", "H");
	tu_write(M.l2, "etc/passwd", "not this one");
	mnt_mount();
}

TestSuite(fs_robust, .fini = mnt_teardown, .timeout = 60);

Test(fs_robust, malformed_layers_give_errors_not_crashes, .init = bad_layers)
{
	struct stat st;
	cr_assert_eq(lstat(MP("dev13"), &st), 0);
	cr_assert(S_ISCHR(st.st_mode));
	cr_assert_eq(st.st_rdev, makedev(1, 3));
	cr_assert_eq(lstat(MP("redir/own"), &st), 0);
	cr_assert_eq(lstat(MP("redir/passwd"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(lstat(MP("orphan"), &st), -1);
	cr_assert_eq(errno, EIO);
	/* a lower layer vanishes under the mount */
	tu_rmtree(M.l2);
	cr_assert_eq(lstat(MP("dir/h"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	_cleanup_free_ char *g = slurp(MP("dir/g"));
	cr_assert_str_eq(g, "G");
	put(MP("dir/new"), "still serving");
	_cleanup_free_ char *n = slurp(MP("dir/new"));
	cr_assert_str_eq(n, "still serving");
}

/* 400 files and, among them, one whose lookup fails: a malformed metacopy xattr. */
static void a_bad_entry_among_many(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	for (int i = 0; i < 400; i++) {
		char rel[32];
		snprintf(rel, sizeof rel, "many/f%03d", i);
		tu_write(M.l1, rel, "f");
	}
	tu_write(M.l1, "many/bad", "");
	cr_assert_eq(setxattr(in_dir(M.l1, "many/bad"), "trusted.overlay.metacopy", "zz", 2, 0), 0);
	mnt_mount();
}

/* Such an entry made a readdirplus fail with its error, so `ls -l` of the directory showed
 * nothing past it.  It is listed like every other entry, and only its own stat fails. */
Test(fs_robust, an_entry_that_cannot_be_looked_up_does_not_break_its_directory_listing,
     .init = a_bad_entry_among_many)
{
	for (int round = 0; round < 2; round++) {
		DIR *d = opendir(MP("many"));
		cr_assert_not_null(d);
		size_t n = 0;
		struct dirent *de;
		errno = 0;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			n++;
			_cleanup_free_ char *p = NULL;
			cr_assert(asprintf(&p, "%s/many/%s", M.mp, de->d_name) > 0);
			struct stat st;
			int r = lstat(p, &st);
			if (strcmp(de->d_name, "bad") == 0)
				cr_assert(r == -1 && errno == EIO, "%s: %d %s", p, r,
					  strerror(errno));
			else
				cr_assert_eq(r, 0, "%s: %s", p, strerror(errno));
			errno = 0;
		}
		cr_assert_eq(errno, 0, "round %d: readdir: %s", round, strerror(errno));
		closedir(d);
		cr_assert_eq(n, 401, "round %d", round);
	}
}

static void plain_layers(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	tu_write(M.l1, "mapped", "m");
	cr_assert_eq(chown(in_dir(M.l1, "mapped"), 100005, 100006), 0);
	tu_write(M.l1, "unmapped", "u");
	cr_assert_eq(chown(in_dir(M.l1, "unmapped"), 7, 7), 0);
	tu_write(M.l2, "file", "f");
}

Test(fs_robust, id_mappings_apply_to_stat_chown_and_new_files, .init = plain_layers)
{
	static const lyr_fs_idmap map = {0, 100000, 65536};
	mnt_mount_opts(&(mnt_opts){.uidmap = &map, .nuidmap = 1});
	struct stat st;
	cr_assert_eq(stat(MP("mapped"), &st), 0);
	cr_assert_eq(st.st_uid, 5);
	cr_assert_eq(st.st_gid, 100006); /* no gid mapping given */
	cr_assert_eq(stat(MP("unmapped"), &st), 0);
	cr_assert_eq(st.st_uid, 65534);
	cr_assert_eq(chown(MP("file"), 10, -1), 0);
	cr_assert_eq(stat(MP("file"), &st), 0);
	cr_assert_eq(st.st_uid, 10);
	cr_assert_eq(lstat(UP("file"), &st), 0);
	cr_assert_eq(st.st_uid, 100010);
	put(MP("created"), "c");
	cr_assert_eq(lstat(UP("created"), &st), 0);
	cr_assert_eq(st.st_uid, 100000);
	cr_assert_eq(stat(MP("created"), &st), 0);
	cr_assert_eq(st.st_uid, 0);
}

Test(fs_robust, xattr_permissions_keep_owner_and_mode_in_an_xattr, .init = plain_layers)
{
	mnt_mount_opts(&(mnt_opts){.xattr_permissions = 1});
	cr_assert_eq(chown(MP("file"), 1000, 1001), 0);
	cr_assert_eq(chmod(MP("file"), 0640), 0);
	struct stat st;
	cr_assert_eq(stat(MP("file"), &st), 0);
	cr_assert_eq(st.st_uid, 1000);
	cr_assert_eq(st.st_gid, 1001);
	cr_assert_eq(st.st_mode & 07777, 0640);
	cr_assert_eq(lstat(UP("file"), &st), 0);
	cr_assert_eq(st.st_uid, 0);
	cr_assert_eq(st.st_mode & 07777, 0644);
	char v[64] = "";
	cr_assert_eq(getxattr(UP("file"), "user.containers.override_stat", v, sizeof(v)), 14);
	cr_assert_str_eq(v, "1000:1001:0640");
	char list[256];
	cr_assert_eq(listxattr(MP("file"), list, sizeof(list)), 0);
	/* honoured when found on a lower file */
	cr_assert_eq(
	    setxattr(in_dir(M.l1, "mapped"), "user.containers.override_stat", "3:4:0700", 8, 0), 0);
	cr_assert_eq(stat(MP("mapped"), &st), 0);
	cr_assert_eq(st.st_uid, 3);
	cr_assert_eq(st.st_gid, 4);
	cr_assert_eq(st.st_mode & 07777, 0700);
}

#define BIGDIR 100000 /* the size: offsets must hold at this scale too */

static void big_dir(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	cr_assert_eq(mkdir(in_dir(M.l2, "big"), 0755), 0);
	int dfd = open(in_dir(M.l2, "big"), O_DIRECTORY | O_RDONLY);
	for (int i = 0; i < BIGDIR; i++) {
		char name[32];
		snprintf(name, sizeof(name), "entry-%06d", i);
		int fd = openat(dfd, name, O_CREAT | O_WRONLY, 0644);
		cr_assert_geq(fd, 0);
		close(fd);
	}
	close(dfd);
	mnt_mount();
}

Test(fs_robust, readdir_lists_every_entry_once_while_the_directory_changes, .init = big_dir)
{
	static unsigned char seen[BIGDIR];
	DIR *d = opendir(MP("big"));
	cr_assert_not_null(d);
	size_t count = 0;
	long pos = -1;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		int i = atoi(de->d_name + 6);
		cr_assert_eq(seen[i], 0, "%s listed twice", de->d_name);
		seen[i] = 1;
		if (++count == 30000) {
			pos = telldir(d);
			/* change the directory under the open stream */
			for (int k = 0; k < 50; k++) {
				char name[64];
				snprintf(name, sizeof(name), "big/new-%d", k);
				put(MP(name), "n");
			}
			cr_assert_eq(unlink(MP("big/entry-099999")), 0);
			seekdir(d, pos);
		}
	}
	closedir(d);
	cr_assert_eq(count, BIGDIR);
	/* a fresh listing sees the changes */
	d = opendir(MP("big"));
	count = 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			count++;
	closedir(d);
	cr_assert_eq(count, BIGDIR - 1 + 50);
}

Test(fs_robust, paths_deeper_than_path_max_work, .init = plain_layers)
{
	mnt_mount();
	char name[201];
	memset(name, 'd', 200);
	name[200] = '\0';
	int fd = open(M.mp, O_DIRECTORY | O_RDONLY);
	cr_assert_geq(fd, 0);
	for (int depth = 0; depth < 30; depth++) { /* 30 * 201 bytes > PATH_MAX */
		cr_assert_eq(mkdirat(fd, name, 0755), 0, "mkdir at depth %d: %s", depth,
			     strerror(errno));
		int next = openat(fd, name, O_DIRECTORY | O_RDONLY);
		cr_assert_geq(next, 0);
		close(fd);
		fd = next;
	}
	int f = openat(fd, "leaf", O_CREAT | O_RDWR, 0644);
	cr_assert_geq(f, 0);
	cr_assert_eq(write(f, "deep", 4), 4);
	char buf[8] = "";
	cr_assert_eq(pread(f, buf, sizeof(buf), 0), 4);
	cr_assert_str_eq(buf, "deep");
	close(f);
	cr_assert_eq(renameat(fd, "leaf", fd, "leaf2"), 0);
	close(fd);
}

Test(fs_robust, flock_and_record_locks_work, .init = plain_layers)
{
	mnt_mount();
	int a = open(MP("file"), O_RDWR);
	int b = open(MP("file"), O_RDWR);
	cr_assert_geq(a, 0);
	cr_assert_geq(b, 0);
	cr_assert_eq(flock(a, LOCK_EX), 0);
	cr_assert_eq(flock(b, LOCK_EX | LOCK_NB), -1);
	cr_assert_eq(errno, EWOULDBLOCK);
	cr_assert_eq(flock(a, LOCK_UN), 0);
	cr_assert_eq(flock(b, LOCK_EX | LOCK_NB), 0);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
	cr_assert_eq(fcntl(a, F_OFD_SETLK, &fl), 0);
	cr_assert_eq(fcntl(b, F_OFD_SETLK, &fl), -1);
	cr_assert_eq(errno, EAGAIN);
	close(a);
	close(b);
	/* private and shared mappings of a lower file */
	int fd = open(MP("mapped"), O_RDONLY);
	char *p = mmap(NULL, 1, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(p[0], 'm');
	munmap(p, 1);
	close(fd);
}

#define MANY 600

/* N lower files many/fI holding "file-I" (read back by check_many). */
static void lower_many(int n)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	cr_assert_eq(mkdir(in_dir(M.l2, "many"), 0755), 0);
	for (int i = 0; i < n; i++) {
		char rel[64], data[64];
		snprintf(rel, sizeof(rel), "many/f%d", i);
		snprintf(data, sizeof(data), "file-%d", i);
		tu_write(M.l2, rel, data);
	}
}

static void many_files(void)
{
	lower_many(MANY);
	/* the serving process inherits a small fd limit: it must close and reopen inode fds */
	struct rlimit rl = {200, 200};
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	mnt_mount();
}

static void check_many(const char *prefix, int from, int to, int step)
{
	for (int i = from; i < to; i += step) {
		char rel[64], want[64];
		snprintf(rel, sizeof(rel), "many/%s%d", prefix, i);
		snprintf(want, sizeof(want), "file-%d", i);
		_cleanup_free_ char *got = slurp(MP(rel));
		cr_assert_not_null(got, "read %s: %s", rel, strerror(errno));
		cr_assert_str_eq(got, want, "%s", rel);
	}
}

Test(fs_robust, more_inodes_than_the_fd_limit_keep_working, .init = many_files)
{
	static ino_t inos[MANY];
	for (int i = 0; i < MANY; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "many/f%d", i);
		inos[i] = ino_of(MP(rel));
	}
	check_many("f", 0, MANY, 1);
	for (int i = 0; i < MANY; i += 2) {
		char rel[64];
		snprintf(rel, sizeof(rel), "many/f%d", i);
		cr_assert_eq(chmod(MP(rel), 0600), 0, "chmod %s: %s", rel, strerror(errno));
	}
	check_many("f", 0, MANY, 1);
	int fds[5];
	for (int k = 0; k < 5; k++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "many/f%d", 100 + k);
		fds[k] = open(MP(rel), O_RDONLY);
		cr_assert_geq(fds[k], 0);
		cr_assert_eq(unlink(MP(rel)), 0);
	}
	for (int i = 200; i < 300; i++) {
		char a[64], b[64];
		snprintf(a, sizeof(a), "many/f%d", i);
		snprintf(b, sizeof(b), "many/r%d", i);
		cr_assert_eq(rename(MP(a), MP(b)), 0);
	}
	check_many("r", 200, 300, 1);
	check_many("f", 300, MANY, 1);
	for (int k = 0; k < 5; k++) {
		char buf[32] = "", want[32];
		snprintf(want, sizeof(want), "file-%d", 100 + k);
		cr_assert_eq(pread(fds[k], buf, sizeof(buf), 0), (ssize_t)strlen(want));
		cr_assert_str_eq(buf, want);
		close(fds[k]);
	}
	DIR *d = opendir(MP("many"));
	struct dirent *de;
	size_t n = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char rel[300];
		snprintf(rel, sizeof(rel), "many/%s", de->d_name);
		int i = atoi(de->d_name + 1);
		cr_assert_eq(de->d_ino, inos[i], "d_ino of %s", rel);
		cr_assert_eq(ino_of(MP(rel)), inos[i], "st_ino of %s", rel);
		n++;
	}
	closedir(d);
	cr_assert_eq(n, MANY - 5);
}

static void small_fd_limit(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	/* the serving process inherits a small fd limit */
	struct rlimit rl = {200, 200};
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	mnt_mount();
}

Test(fs_robust, creating_more_files_than_the_fd_limit_works, .init = small_fd_limit)
{
	/* creates alone, no lookups in between: an untar */
	cr_assert_eq(mkdir(MP("made"), 0755), 0);
	for (int i = 0; i < MANY; i++) {
		char rel[64], data[64];
		snprintf(rel, sizeof(rel), "made/c%d", i);
		snprintf(data, sizeof(data), "made-%d", i);
		int fd = open(MP(rel), O_CREAT | O_EXCL | O_WRONLY, 0644);
		cr_assert_geq(fd, 0, "create %s: %s", rel, strerror(errno));
		cr_assert_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
		cr_assert_eq(close(fd), 0);
	}
	for (int i = 0; i < MANY; i += 7) {
		char rel[64], want[64];
		snprintf(rel, sizeof(rel), "made/c%d", i);
		snprintf(want, sizeof(want), "made-%d", i);
		_cleanup_free_ char *got = slurp(MP(rel));
		cr_assert_not_null(got, "read %s: %s", rel, strerror(errno));
		cr_assert_str_eq(got, want);
	}
}

Test(fs_robust, layers_on_several_filesystems_get_distinct_stable_inode_numbers)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	char shm[] = "/dev/shm/layerfs-test-XXXXXX";
	if (!mkdtemp(shm))
		cr_skip_test("no /dev/shm here");
	/* the upper and work dir on tmpfs, the lowers on the temporary directory's filesystem */
	free(M.upper);
	free(M.work);
	M.upper = tu_path(shm, "upper");
	M.work = tu_path(shm, "work");
	cr_assert_eq(mkdir(M.upper, 0755), 0);
	cr_assert_eq(mkdir(M.work, 0755), 0);
	tu_write(M.l1, "lower", "l");
	mnt_mount();
	put(MP("upper"), "u");
	ino_t lo = ino_of(MP("lower")), up = ino_of(MP("upper"));
	cr_assert_neq(lo, up);
	struct stat raw;
	cr_assert_eq(lstat(in_dir(M.l1, "lower"), &raw), 0);
	cr_assert_neq(lo, raw.st_ino, "inode numbers of different filesystems are tagged");
	put(MP("lower"), "changed"); /* copy-up onto tmpfs */
	cr_assert_eq(ino_of(MP("lower")), lo);
	mnt_umount();
	mnt_mount();
	cr_assert_eq(ino_of(MP("lower")), lo);
	cr_assert_eq(ino_of(MP("upper")), up);
	mnt_umount();
	tu_rmtree(shm);
}

/* An upper another overlay wrote (fuse-overlayfs may leave OCI ".wh." files in it): its markers
 * hide what they name, and a new file can take the name. */
Test(fs_robust, aufs_whiteouts_in_the_upper_hide_names_and_let_them_be_made, .init = plain_layers)
{
	tu_write(M.upper, ".wh.file", "");
	mnt_mount();
	struct stat st;
	cr_assert_eq(stat(MP("file"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	int fd = open(MP("file"), O_CREAT | O_EXCL | O_WRONLY, 0644);
	cr_assert_geq(fd, 0, "create over the marker: %s", strerror(errno));
	cr_assert_eq(write(fd, "new", 3), 3);
	close(fd);
	_cleanup_free_ char *f = tu_read(M.mp, "file");
	cr_assert_str_eq(f, "new");
	/* a name the layers below hold and no marker hides exists */
	cr_assert_eq(open(MP("mapped"), O_CREAT | O_EXCL | O_WRONLY, 0644), -1);
	cr_assert_eq(errno, EEXIST);
}

/* A directory made, or a new one renamed, where such a marker hides a lower directory shows
 * none of the lower files, also after a remount. */
Test(fs_robust, a_directory_made_over_an_aufs_whiteout_in_the_upper_hides_the_lower_one,
     .init = plain_layers)
{
	tu_write(M.l1, "made/a", "a");
	tu_write(M.l1, "moved/b", "b");
	tu_write(M.upper, ".wh.made", "");
	tu_write(M.upper, ".wh.moved", "");
	mnt_mount();
	cr_assert_eq(mkdir(MP("made"), 0755), 0, "mkdir: %s", strerror(errno));
	cr_assert_eq(mkdir(MP("new"), 0755), 0);
	put(MP("new/x"), "x");
	cr_assert_eq(rename(MP("new"), MP("moved")), 0, "rename: %s", strerror(errno));
	for (int round = 0; round < 2; round++) {
		_cleanup_free_ char *made = tu_tree_text(MP("made"));
		cr_assert_str_eq(made, "", "round %d", round);
		_cleanup_free_ char *moved = tu_tree_text(MP("moved"));
		cr_assert_str_eq(moved, "x=x\n", "round %d", round);
		mnt_umount();
		mnt_mount();
	}
}

/* The files and directories PID holds open (libfuse's per-thread pipes aside: their number
 * follows the request threads, not the requests). */
static size_t fds_of(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	cr_assert_not_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char target[PATH_MAX] = "";
		if (readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1) > 0 &&
		    strncmp(target, "pipe:", 5) != 0)
			n++;
	}
	closedir(d);
	return n;
}

#define STATDIR 2000

static void stat_dir(void)
{
	lower_many(STATDIR);
	mnt_mount();
}

Test(fs_robust, a_stat_storm_opens_no_file_and_reads_still_work, .init = stat_dir)
{
	size_t before = fds_of(M.pid);
	for (int i = 0; i < STATDIR; i++) {
		char rel[64], data[64];
		snprintf(rel, sizeof(rel), "many/f%d", i);
		struct stat st;
		cr_assert_eq(lstat(MP(rel), &st), 0);
		cr_assert_eq(st.st_size, snprintf(data, sizeof(data), "file-%d", i));
	}
	/* the directory is opened (its children are looked up through it), the files are not */
	size_t after = fds_of(M.pid);
	cr_assert_lt(after, before + 10, "%zu fds before, %zu after", before, after);
	check_many("f", 0, STATDIR, 97);
}
