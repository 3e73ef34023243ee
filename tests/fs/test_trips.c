/* Round trips: how many FUSE requests fixed workloads cost, counted by the serving process
 * (LAYERFS_FUSE_STATS, fs/stats.c), so that a change which adds requests per file fails here
 * instead of showing only as a slower benchmark.  The budgets are the counts measured on Linux
 * 6.18 with the writeback cache (docs/overlay.md, "Round trips") plus a small margin for what the
 * kernel sends on its own schedule (forgets, the flush of times it keeps).  Needs /dev/fuse and
 * root; skips otherwise. */
#include <dirent.h>
#include <stdlib.h>

#include "mnt.h"

static char *stats_path;

static void setup(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
}

static void teardown(void)
{
	unsetenv("LAYERFS_FUSE_STATS");
	free(stats_path);
	stats_path = NULL;
	mnt_teardown();
}

TestSuite(fs_trips, .init = setup, .fini = teardown, .timeout = 120);

/* Mounts with the serving process counting its requests into a fresh file. */
static void mount_counting(const char *tag)
{
	free(stats_path);
	stats_path = tu_path(M.root, tag);
	cr_assert_eq(setenv("LAYERFS_FUSE_STATS", stats_path, 1), 0);
	mnt_mount();
	unsetenv("LAYERFS_FUSE_STATS");
}

struct counts {
	unsigned long long total;
	char names[64][24];
	unsigned long long n[64];
	size_t len;
};

/* Unmounts (which waits for the serving process to exit) and reads what it counted. */
static struct counts umount_counts(void)
{
	mnt_umount();
	struct counts c = {0};
	FILE *f = fopen(stats_path, "r");
	cr_assert_not_null(f, "%s: %s", stats_path, strerror(errno));
	char name[24];
	unsigned long long n;
	while (c.len < 64 && fscanf(f, "%23s %llu", name, &n) == 2) {
		snprintf(c.names[c.len], sizeof(c.names[c.len]), "%s", name);
		c.n[c.len++] = n;
		c.total += n;
	}
	fclose(f);
	cr_assert_gt(c.total, 0, "no requests counted in %s", stats_path);
	return c;
}

static unsigned long long count_of(const struct counts *c, const char *name)
{
	for (size_t i = 0; i < c->len; i++)
		if (strcmp(c->names[i], name) == 0)
			return c->n[i];
	return 0;
}

static void print_counts(const char *what, const struct counts *c)
{
	char line[1024] = "";
	for (size_t i = 0; i < c->len; i++) {
		size_t used = strlen(line);
		snprintf(line + used, sizeof(line) - used, " %s=%llu", c->names[i], c->n[i]);
	}
	cr_log_info("%s: %llu requests:%s", what, c->total, line);
}

#define assert_at_most(c, name, max)                                                               \
	cr_assert_leq(count_of(&(c), name), (unsigned long long)(max), "%s: %llu, at most %llu",   \
		      name, count_of(&(c), name), (unsigned long long)(max))

/* Requests every mount costs whatever it does: INIT, the root's first GETATTR, STATFS from the
 * unmount, the first STATX and FLUSH (answered ENOSYS once, then never sent again), DESTROY. */
#define FIXED 12

enum { STORM = 100, DIRS = 5, FILES = 20 };

Test(fs_trips, a_create_stat_unlink_storm_costs_at_most_nine_requests_a_file)
{
	mount_counting("storm.stats");
	for (int i = 0; i < STORM; i++) {
		const char *p = in_dir(M.mp, short_name("f%d", i));
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		cr_assert_geq(fd, 0, "create %s: %s", p, strerror(errno));
		cr_assert_eq(close(fd), 0);
		struct stat st;
		cr_assert_eq(stat(p, &st), 0);
		cr_assert_eq(st.st_size, 0);
		cr_assert_eq(unlink(p), 0, "unlink %s: %s", p, strerror(errno));
	}
	struct counts c = umount_counts();
	print_counts("storm", &c);
	cr_assert_eq(count_of(&c, "CREATE"), STORM);
	cr_assert_eq(count_of(&c, "UNLINK"), STORM);
	/* one negative lookup per new name; create opens, so no OPEN; no ACCESS, no xattr */
	assert_at_most(c, "LOOKUP", STORM + 2);
	cr_assert_eq(count_of(&c, "OPEN"), 0);
	cr_assert_eq(count_of(&c, "ACCESS"), 0);
	cr_assert_eq(count_of(&c, "GETXATTR"), 0);
	assert_at_most(c, "FLUSH", 1);
	/* the ctime the writeback cache flushes after an unlink, and nothing else */
	assert_at_most(c, "SETATTR", STORM);
	/* the parent refreshed after each of its two changes, the file once for its blocks */
	assert_at_most(c, "GETATTR", 3 * STORM + 2);
	cr_assert_leq(c.total, 9 * STORM + FIXED, "%llu requests for %d files", c.total, STORM);
}

/* Makes DIRS directories of FILES small files as `tar x` does: create exclusively, write, set
 * the mtime, owner and mode through the open file, close; then the directories' own times. */
static void untar(void)
{
	for (int d = 0; d < DIRS; d++) {
		char *dir = tu_path(M.mp, short_name("d%d", d));
		cr_assert_eq(mkdir(dir, 0700), 0, "mkdir %s: %s", dir, strerror(errno));
		for (int i = 0; i < FILES; i++) {
			const char *p = in_dir(dir, short_name("f%d", i));
			int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY, 0600);
			cr_assert_geq(fd, 0, "create %s: %s", p, strerror(errno));
			cr_assert_eq(write(fd, "hello\n", 6), 6);
			struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1700000000}};
			cr_assert_eq(futimens(fd, ts), 0);
			cr_assert_eq(fchown(fd, 0, 0), 0);
			cr_assert_eq(fchmod(fd, 0644), 0);
			cr_assert_eq(close(fd), 0);
		}
		free(dir);
	}
	for (int d = 0; d < DIRS; d++) {
		const char *dir = in_dir(M.mp, short_name("d%d", d));
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1700000000}};
		cr_assert_eq(utimensat(AT_FDCWD, dir, ts, AT_SYMLINK_NOFOLLOW), 0);
		cr_assert_eq(chmod(dir, 0755), 0);
	}
}

Test(fs_trips, a_tar_extraction_costs_at_most_eleven_requests_a_file)
{
	mount_counting("untar.stats");
	untar();
	struct counts c = umount_counts();
	print_counts("untar", &c);
	cr_assert_eq(count_of(&c, "CREATE"), DIRS * FILES);
	cr_assert_eq(count_of(&c, "MKDIR"), DIRS);
	assert_at_most(c, "LOOKUP", DIRS * FILES + DIRS + 2);
	cr_assert_eq(count_of(&c, "OPEN"), 0);
	/* security.capability, asked by the kernel before the first write and before the chown */
	assert_at_most(c, "GETXATTR", 2 * DIRS * FILES);
	/* the parent's, after each change in it; none before a chown (FUSE_HANDLE_KILLPRIV_V2) */
	assert_at_most(c, "GETATTR", DIRS * FILES + 2 * DIRS + 2);
	cr_assert_leq(c.total, 11 * DIRS * FILES + 4 * DIRS + FIXED, "%llu requests for %d files",
		      c.total, DIRS * FILES);
}

/* Removes everything under the directory at DIRFD as `rm -rf` does: list, then unlink. */
static void remove_under(int dirfd)
{
	int fd = dup(dirfd);
	cr_assert_geq(fd, 0);
	DIR *d = fdopendir(fd);
	cr_assert_not_null(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type == DT_DIR) {
			int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
			cr_assert_geq(sub, 0, "%s: %s", de->d_name, strerror(errno));
			remove_under(sub);
			close(sub);
			cr_assert_eq(unlinkat(dirfd, de->d_name, AT_REMOVEDIR), 0, "rmdir %s: %s",
				     de->d_name, strerror(errno));
		} else {
			cr_assert_eq(unlinkat(dirfd, de->d_name, 0), 0, "unlink %s: %s", de->d_name,
				     strerror(errno));
		}
	}
	closedir(d);
}

Test(fs_trips, removing_a_fresh_tree_costs_at_most_five_requests_a_file_and_no_lookups)
{
	mnt_mount();
	untar();
	mnt_umount();
	/* a fresh mount: the kernel knows nothing of the tree, as after an untar in another view */
	mount_counting("rm.stats");
	int root = open(M.mp, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(root, 0);
	remove_under(root);
	close(root);
	struct counts c = umount_counts();
	struct stat st;
	cr_assert_eq(lstat(in_dir(M.upper, "d0"), &st), -1, "the upper still holds d0");
	cr_assert_eq(errno, ENOENT);
	print_counts("rm -rf", &c);
	cr_assert_eq(count_of(&c, "UNLINK"), DIRS * FILES);
	cr_assert_eq(count_of(&c, "RMDIR"), DIRS);
	/* the listings (READDIRPLUS) bring every entry with its attributes */
	cr_assert_eq(count_of(&c, "LOOKUP"), 0);
	cr_assert_eq(count_of(&c, "GETXATTR"), 0);
	cr_assert_eq(count_of(&c, "ACCESS"), 0);
	assert_at_most(c, "SETATTR", DIRS * FILES);
	cr_assert_leq(c.total, 5 * DIRS * FILES + 6 * DIRS + FIXED, "%llu requests for %d files",
		      c.total, DIRS * FILES);
}

/* DIRS directories of FILES files in the upper lower layer (l1), as a layer of the store is. */
static void lower_tree(void)
{
	for (int d = 0; d < DIRS; d++) {
		char *dir = tu_path(M.l1, short_name("d%d", d));
		cr_assert_eq(mkdir(dir, 0755), 0, "mkdir %s: %s", dir, strerror(errno));
		for (int i = 0; i < FILES; i++)
			put(in_dir(dir, short_name("f%d", i)), "data\n");
		free(dir);
	}
}

/* Lists the directory at PATH and stats every entry, then descends, as `find -printf '%s'` and
 * `ls -lR` do. */
static void stat_walk(const char *path)
{
	DIR *d = opendir(path);
	cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
	char *subs[DIRS + 1];
	size_t nsubs = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		cr_assert_eq(fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW), 0,
			     "%s/%s: %s", path, de->d_name, strerror(errno));
		if (S_ISDIR(st.st_mode) && nsubs < LYR_ARRAY_SIZE(subs))
			subs[nsubs++] = tu_path(path, de->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < nsubs; i++) {
		stat_walk(subs[i]);
		free(subs[i]);
	}
}

/* Walks the mount WALKS times in a fresh mount and returns the requests it cost. */
static struct counts counted_walks(const char *tag, int walks)
{
	mount_counting(tag);
	for (int i = 0; i < walks; i++)
		stat_walk(M.mp);
	struct counts c = umount_counts();
	print_counts(tag, &c);
	return c;
}

Test(fs_trips, a_stat_storm_costs_four_requests_a_directory_and_none_a_file)
{
	lower_tree();
	struct counts c = counted_walks("stat-once.stats", 1);
	/* each listing brings its entries' attributes (READDIRPLUS), the next read finds its end */
	cr_assert_eq(count_of(&c, "OPENDIR"), DIRS + 1);
	cr_assert_eq(count_of(&c, "READDIRPLUS") + count_of(&c, "READDIR"), 2 * (DIRS + 1));
	cr_assert_eq(count_of(&c, "RELEASEDIR"), DIRS + 1);
	cr_assert_eq(count_of(&c, "LOOKUP"), 0);
	cr_assert_eq(count_of(&c, "GETXATTR"), 0);
	/* the root's, and none for a file: 3 on Linux 6.18 */
	assert_at_most(c, "GETATTR", 3);
	cr_assert_leq(c.total, 4 * (DIRS + 1) + FIXED, "%llu requests for %d files", c.total,
		      DIRS * FILES);
}

Test(fs_trips, a_second_stat_storm_reads_no_listing_and_looks_nothing_up)
{
	lower_tree();
	struct counts once = counted_walks("stat-once.stats", 1);
	struct counts twice = counted_walks("stat-twice.stats", 2);
	/* listings and attributes stay with the kernel (cache_readdir, timeouts): the second walk
	 * opens each directory and asks for its attributes, which the kernel itself drops when it
	 * reads a listing (the daemon may move atime then), and nothing else */
	const char *none[] = {"READDIRPLUS", "READDIR", "LOOKUP", "GETXATTR"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(none); i++)
		cr_assert_eq(count_of(&twice, none[i]), count_of(&once, none[i]),
			     "%s: %llu, then %llu", none[i], count_of(&once, none[i]),
			     count_of(&twice, none[i]));
	cr_assert_eq(count_of(&twice, "OPENDIR"), 2 * (DIRS + 1));
	cr_assert_eq(count_of(&twice, "RELEASEDIR"), 2 * (DIRS + 1));
	cr_assert_leq(count_of(&twice, "GETATTR"), count_of(&once, "GETATTR") + DIRS + 1,
		      "GETATTR: %llu, then %llu", count_of(&once, "GETATTR"),
		      count_of(&twice, "GETATTR"));
	cr_assert_leq(twice.total, once.total + 3 * (DIRS + 1) + 2,
		      "%llu requests, %llu the first time", twice.total, once.total);
}

Test(fs_trips, small_writes_cost_no_xattr_request_each)
{
	mount_counting("writes.stats");
	const char *p = in_dir(M.mp, "f");
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0, "create %s: %s", p, strerror(errno));
	for (int i = 0; i < 20; i++)
		cr_assert_eq(write(fd, "x", 1), 1);
	cr_assert_eq(close(fd), 0);
	struct counts c = umount_counts();
	print_counts("20 writes", &c);
	/* security.capability is asked once per file, not before each write() call */
	assert_at_most(c, "GETXATTR", 1);
	/* the times the writeback cache may flush at the close */
	assert_at_most(c, "SETATTR", 1);
	cr_assert_leq(c.total, 6 + FIXED, "%llu requests", c.total);
	struct stat st;
	cr_assert_eq(stat(in_dir(M.upper, "f"), &st), 0);
	cr_assert_eq(st.st_size, 20);
}

/* Set-id bits, which the daemon clears where the kernel marks a request for it
 * (FUSE_HANDLE_KILLPRIV_V2): as a file system clears them for a caller without CAP_FSETID. */

enum change { WRITE, TRUNCATE, OPEN_TRUNC };

/* Makes REL with MODE through the mount (owner root) and changes it as user 1000. */
static void change_as_other_user(const char *rel, mode_t mode, enum change what)
{
	const char *p = in_dir(M.mp, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0, "create %s: %s", p, strerror(errno));
	cr_assert_eq(write(fd, "abc", 3), 3);
	cr_assert_eq(close(fd), 0);
	cr_assert_eq(chmod(p, mode), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		if (setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
			_exit(2);
		int f = open(p, O_WRONLY | (what == OPEN_TRUNC ? O_TRUNC : O_APPEND));
		if (f < 0)
			_exit(3);
		if (what == WRITE && write(f, "x", 1) != 1)
			_exit(4);
		if (what == TRUNCATE && ftruncate(f, 1) < 0)
			_exit(5);
		_exit(close(f) < 0 ? 6 : 0);
	}
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the change failed: %d", status);
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_mode & 07777;
}

static void mount_for_other_users(const mnt_opts *o)
{
	cr_assert_eq(chmod(M.root, 0755), 0);
	mnt_opts opts = o ? *o : (mnt_opts){.writeback = true};
	opts.allow_other = true;
	mnt_mount_opts(&opts);
}

static void changes_by_other_users_clear_set_id_bits(bool writeback)
{
	mount_for_other_users(&(mnt_opts){.writeback = writeback});
	change_as_other_user("w", 06777, WRITE);
	change_as_other_user("t", 06777, TRUNCATE);
	change_as_other_user("o", 06777, OPEN_TRUNC);
	/* set-group-ID without group execute marks mandatory locking: it stays */
	change_as_other_user("g", 02767, WRITE);
	const char *rels[] = {"w", "t", "o", "g"};
	const mode_t want[] = {0777, 0777, 0777, 02767};
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < LYR_ARRAY_SIZE(rels); i++) {
			const char *p = in_dir(pass ? M.upper : M.mp, rels[i]);
			cr_assert_eq(mode_of(p), want[i], "%s: mode 0%o, want 0%o", p, mode_of(p),
				     want[i]);
		}
		mnt_umount(); /* the second pass reads what reached the upper */
	}
	struct stat st;
	cr_assert_eq(stat(in_dir(M.upper, "t"), &st), 0);
	cr_assert_eq(st.st_size, 1);
	cr_assert_eq(stat(in_dir(M.upper, "o"), &st), 0);
	cr_assert_eq(st.st_size, 0);
}

Test(fs_trips, changes_by_other_users_clear_set_id_bits_with_the_writeback_cache)
{
	changes_by_other_users_clear_set_id_bits(true);
}

Test(fs_trips, changes_by_other_users_clear_set_id_bits_without_the_writeback_cache)
{
	changes_by_other_users_clear_set_id_bits(false);
}

Test(fs_trips, writes_by_root_keep_set_id_bits)
{
	mnt_mount();
	const char *p = in_dir(M.mp, "f");
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fchmod(fd, 06755), 0);
	cr_assert_eq(write(fd, "abc", 3), 3);
	cr_assert_eq(ftruncate(fd, 1), 0);
	cr_assert_eq(close(fd), 0);
	cr_assert_eq(mode_of(p), 06755);
	mnt_umount();
	cr_assert_eq(mode_of(in_dir(M.upper, "f")), 06755);
}

static void chown_clears_set_id_bits(int xattr_permissions)
{
	mnt_mount_opts(&(mnt_opts){.writeback = true, .xattr_permissions = xattr_permissions});
	const char *rels[] = {"x", "nx"};
	const mode_t before[] = {06755, 02745}, after[] = {0755, 02745};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(rels); i++) {
		const char *p = in_dir(M.mp, rels[i]);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
		cr_assert_geq(fd, 0);
		cr_assert_eq(close(fd), 0);
		cr_assert_eq(chmod(p, before[i]), 0);
		cr_assert_eq(chown(p, 1000, 1000), 0, "chown %s: %s", p, strerror(errno));
		cr_assert_eq(mode_of(p), after[i], "%s: mode 0%o, want 0%o", p, mode_of(p),
			     after[i]);
	}
	mnt_umount();
	mnt_mount_opts(&(mnt_opts){.writeback = true, .xattr_permissions = xattr_permissions});
	for (size_t i = 0; i < LYR_ARRAY_SIZE(rels); i++)
		cr_assert_eq(mode_of(in_dir(M.mp, rels[i])), after[i], "%s after a remount",
			     rels[i]);
}

Test(fs_trips, chown_clears_set_user_id_and_group_executable_set_group_id)
{
	chown_clears_set_id_bits(0);
}

Test(fs_trips, chown_clears_set_id_bits_kept_in_override_stat)
{
	chown_clears_set_id_bits(1);
}

/* The kernel sends the new ctime of every unlinked regular file as a SETATTR (writeback cache):
 * for a file of a lower layer that is a change of times of an object that has no name left. */
static void times_of_an_unlinked_lower_file(bool writeback)
{
	FILE *f = fopen(in_dir(M.l1, "low"), "w");
	cr_assert_not_null(f);
	fputs("lower\n", f);
	fclose(f);
	mnt_mount_opts(&(mnt_opts){.writeback = writeback});
	const char *p = in_dir(M.mp, "low");
	int fd = open(p, O_RDONLY);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(unlink(p), 0, "unlink %s: %s", p, strerror(errno));
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1600000000}};
	cr_assert_eq(futimens(fd, ts), 0, "futimens of the unlinked file: %s", strerror(errno));
	char buf[16] = {0};
	cr_assert_eq(pread(fd, buf, sizeof(buf) - 1, 0), 6);
	cr_assert_str_eq(buf, "lower\n");
	cr_assert_eq(close(fd), 0);
	mnt_umount();
	/* nothing of the file reached the upper or stayed in the work dir: only the whiteout */
	struct stat st;
	cr_assert_eq(lstat(in_dir(M.upper, "low"), &st), 0);
	cr_assert(S_ISCHR(st.st_mode) && st.st_rdev == 0, "no whiteout: mode 0%o", st.st_mode);
	DIR *d = opendir(in_dir(M.work, "work"));
	cr_assert_not_null(d);
	struct dirent *de;
	while ((de = readdir(d)))
		cr_assert(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0,
			  "left in the work dir: %s", de->d_name);
	closedir(d);
}

Test(fs_trips, an_unlinked_lower_file_takes_new_times_with_the_writeback_cache)
{
	times_of_an_unlinked_lower_file(true);
}

Test(fs_trips, an_unlinked_lower_file_takes_new_times_without_the_writeback_cache)
{
	times_of_an_unlinked_lower_file(false);
}
