/* File times through a mount: the times the mount shows are the ones stored in the upper, to
 * the nanosecond, with and without the writeback cache (where the kernel keeps mtime itself and
 * the data reaches the daemon later, on other threads); atime moves on open under relatime's
 * rule, never under noatime, and never because the daemon read a backing file.  Needs /dev/fuse
 * and root; skips otherwise. */
#include <dirent.h>
#include <time.h>

#include "mnt.h"

static void setup(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
}

TestSuite(fs_times, .init = setup, .fini = mnt_teardown);

static struct stat stat_of(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "lstat %s: %s", path, strerror(errno));
	return st;
}

#define assert_time_eq(a, b, what)                                                                 \
	cr_assert((a).tv_sec == (b).tv_sec && (a).tv_nsec == (b).tv_nsec,                          \
		  "%s: %lld.%09ld shown, %lld.%09ld stored", what, (long long)(a).tv_sec,          \
		  (long)(a).tv_nsec, (long long)(b).tv_sec, (long)(b).tv_nsec)

/* Writes DATA to PATH as `echo DATA > PATH` does (FLAGS: O_TRUNC or O_APPEND, and O_CREAT). */
static void echo(const char *path, int flags, const char *data)
{
	int fd = open(path, O_WRONLY | flags, 0644);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	cr_assert_eq(close(fd), 0);
}

/* Each change to REL (created, rewritten, appended to, truncated, copied up from a lower),
 * stat'ed through the mount and then in the upper after unmount. */
static void check_changes_keep_the_shown_times(bool writeback)
{
	put(in_dir(M.l1, "lower"), "from below\n");
	mnt_mount_opts(&(mnt_opts){.writeback = writeback});
	echo(MP("f"), O_CREAT | O_TRUNC, "ccc\n");
	struct stat created = stat_of(MP("f"));
	echo(MP("lower"), O_APPEND, "more\n");
	struct stat appended = stat_of(MP("lower"));
	usleep(10000);
	cr_assert_eq(truncate(MP("f"), 2), 0);
	struct stat truncated = stat_of(MP("f"));
	cr_assert(truncated.st_mtim.tv_sec != created.st_mtim.tv_sec ||
		  truncated.st_mtim.tv_nsec != created.st_mtim.tv_nsec);
	echo(MP("g"), O_CREAT | O_TRUNC, "ggg\n");
	struct timespec set[2] = {{1000000000, 123456789}, {1100000000, 987654321}};
	cr_assert_eq(utimensat(AT_FDCWD, MP("g"), set, 0), 0);
	struct stat stamped = stat_of(MP("g"));
	assert_time_eq(stamped.st_mtim, set[1], "utimensat mtime");
	assert_time_eq(stamped.st_atim, set[0], "utimensat atime");
	mnt_umount();

	struct stat f = stat_of(UP("f")), lower = stat_of(UP("lower")), g = stat_of(UP("g"));
	assert_time_eq(truncated.st_mtim, f.st_mtim, "f mtime");
	assert_time_eq(truncated.st_atim, f.st_atim, "f atime");
	cr_assert_eq(f.st_size, 2);
	assert_time_eq(appended.st_mtim, lower.st_mtim, "lower mtime");
	assert_time_eq(appended.st_atim, lower.st_atim, "lower atime");
	assert_time_eq(stamped.st_mtim, g.st_mtim, "g mtime");
	assert_time_eq(stamped.st_atim, g.st_atim, "g atime");

	/* and the same again through a new mount */
	mnt_mount_opts(&(mnt_opts){.writeback = writeback});
	assert_time_eq(stat_of(MP("f")).st_mtim, f.st_mtim, "f mtime after remount");
	assert_time_eq(stat_of(MP("lower")).st_mtim, lower.st_mtim, "lower mtime after remount");
}

Test(fs_times, changes_store_the_times_shown_with_the_writeback_cache)
{
	check_changes_keep_the_shown_times(true);
}

Test(fs_times, changes_store_the_times_shown_without_the_writeback_cache)
{
	check_changes_keep_the_shown_times(false);
}

/* A burst of small files written one after the other, as a shell script writes them: each
 * file's data reaches the daemon while the next one is being written. */
Test(fs_times, a_burst_of_small_files_stores_the_times_shown)
{
	enum { FILES = 32 };
	mnt_mount_opts(&(mnt_opts){.writeback = true});
	char names[FILES][16];
	struct timespec shown[FILES];
	for (int i = 0; i < FILES; i++) {
		snprintf(names[i], sizeof(names[i]), "f%d", i);
		echo(MP(names[i]), O_CREAT | O_TRUNC, "ccc\n");
	}
	for (int i = 0; i < FILES; i++)
		shown[i] = stat_of(MP(names[i])).st_mtim;
	mnt_umount();
	for (int i = 0; i < FILES; i++)
		assert_time_eq(shown[i], stat_of(UP(names[i])).st_mtim, names[i]);
}

static void age(const char *path, time_t atime, time_t mtime)
{
	struct timespec ts[2] = {{atime, 0}, {mtime, 0}};
	cr_assert_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0, "%s: %s", path,
		     strerror(errno));
}

static void read_all(const char *path)
{
	_cleanup_free_ char *data = slurp(path);
	cr_assert_not_null(data, "read %s: %s", path, strerror(errno));
}

static void list(const char *path)
{
	DIR *d = opendir(path);
	cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
	while (readdir(d))
		;
	closedir(d);
}

Test(fs_times, relatime_moves_atime_on_open_as_the_rule_says)
{
	time_t now = time(NULL);
	put(in_dir(M.l1, "lower"), "below\n");
	put(UP("old"), "old\n");
	age(UP("old"), now - 3 * 86400, now - 4 * 86400); /* after mtime, but a day old */
	put(UP("stale"), "stale\n");
	age(UP("stale"), now - 120, now - 60); /* before mtime */
	cr_assert_eq(mkdir(UP("dir"), 0755), 0);
	age(UP("dir"), now - 120, now - 60);
	age(in_dir(M.l1, "lower"), now - 120, now - 60);
	mnt_mount();

	read_all(MP("old"));
	read_all(MP("stale"));
	read_all(MP("lower"));
	list(MP("dir"));
	struct stat old = stat_of(MP("old")), stale = stat_of(MP("stale")),
		    dir = stat_of(MP("dir"));
	cr_assert_geq(old.st_atim.tv_sec, now);
	cr_assert_geq(stale.st_atim.tv_sec, now);
	cr_assert_geq(dir.st_atim.tv_sec, now);
	/* a lower file is not copied up for its atime, and the daemon's reads leave it alone */
	cr_assert_eq(stat_of(MP("lower")).st_atim.tv_sec, now - 120);

	/* now later than mtime and ctime, and recent: it stays */
	usleep(20000);
	read_all(MP("old"));
	read_all(MP("stale"));
	list(MP("dir"));
	assert_time_eq(stat_of(MP("old")).st_atim, old.st_atim, "old atime, read again");
	assert_time_eq(stat_of(MP("stale")).st_atim, stale.st_atim, "stale atime, read again");
	assert_time_eq(stat_of(MP("dir")).st_atim, dir.st_atim, "dir atime, listed again");
	mnt_umount();
	assert_time_eq(stale.st_atim, stat_of(UP("stale")).st_atim, "stale atime stored");
	assert_time_eq(dir.st_atim, stat_of(UP("dir")).st_atim, "dir atime stored");
	cr_assert_eq(stat_of(in_dir(M.l1, "lower")).st_atim.tv_sec, now - 120);
	cr_assert_eq(access(UP("lower"), F_OK), -1);
}

/* An open that moves atime may be followed by no READ or READDIR (nothing read, or the kernel
 * keeps the pages and the listing: keep_cache, cache_readdir), so nothing makes the kernel ask
 * for attributes again: the daemon must drop the ones the kernel holds itself, or the old atime
 * stays shown for the attribute timeout. */
Test(fs_times, an_atime_moved_while_the_kernel_keeps_the_data_is_shown)
{
	put(UP("f"), "data\n");
	cr_assert_eq(mkdir(UP("dir"), 0755), 0);
	mnt_mount();
	read_all(MP("f"));
	list(MP("dir"));
	/* through the mount, atime alone (before mtime: due again): the kernel now holds these
	 * attributes, the pages and the listing */
	time_t now = time(NULL);
	struct timespec ts[2] = {{now - 120, 0}, {0, UTIME_OMIT}};
	cr_assert_eq(utimensat(AT_FDCWD, MP("f"), ts, 0), 0);
	cr_assert_eq(utimensat(AT_FDCWD, MP("dir"), ts, 0), 0);
	cr_assert_eq(stat_of(MP("f")).st_atim.tv_sec, now - 120);
	cr_assert_eq(stat_of(MP("dir")).st_atim.tv_sec, now - 120);
	int fd = open(MP("f"), O_RDONLY);
	cr_assert_geq(fd, 0, "open f: %s", strerror(errno));
	cr_assert_eq(close(fd), 0);
	list(MP("dir"));
	struct stat f = stat_of(MP("f")), dir = stat_of(MP("dir"));
	cr_assert_geq(f.st_atim.tv_sec, now, "f: atime %lld shown", (long long)f.st_atim.tv_sec);
	cr_assert_geq(dir.st_atim.tv_sec, now, "dir: atime %lld shown",
		      (long long)dir.st_atim.tv_sec);
	mnt_umount();
	assert_time_eq(f.st_atim, stat_of(UP("f")).st_atim, "f atime stored");
	assert_time_eq(dir.st_atim, stat_of(UP("dir")).st_atim, "dir atime stored");
}

/* Under the writeback cache the daemon does not store the mtime and ctime of an upper file whose
 * last name is gone (the kernel shows its own, and no name reaches the file again); an O_TMPFILE
 * file has no name yet but may get one, so its times are stored. */
Test(fs_times, times_of_nameless_files_are_shown_and_a_tmpfile_keeps_them_when_linked)
{
	mnt_mount_opts(&(mnt_opts){.writeback = true});
	struct timespec ts[2] = {{1500000000, 5}, {1600000000, 7}};
	int fd = open(MP("gone"), O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0, "create gone: %s", strerror(errno));
	cr_assert_eq(write(fd, "abc", 3), 3);
	cr_assert_eq(unlink(MP("gone")), 0);
	cr_assert_eq(futimens(fd, ts), 0, "futimens of the unlinked file: %s", strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	assert_time_eq(st.st_atim, ts[0], "unlinked atime");
	assert_time_eq(st.st_mtim, ts[1], "unlinked mtime");
	cr_assert_eq(st.st_size, 3);
	cr_assert_eq(close(fd), 0);

	fd = open(M.mp, O_TMPFILE | O_RDWR, 0644);
	cr_assert_geq(fd, 0, "open O_TMPFILE: %s", strerror(errno));
	cr_assert_eq(write(fd, "tmp\n", 4), 4);
	cr_assert_eq(fsync(fd), 0);
	struct timespec mtime_only[2] = {{0, UTIME_OMIT}, {1600000000, 9}};
	cr_assert_eq(futimens(fd, mtime_only), 0);
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	cr_assert_eq(linkat(AT_FDCWD, proc, AT_FDCWD, MP("named"), AT_SYMLINK_FOLLOW), 0,
		     "link the tmpfile: %s", strerror(errno));
	cr_assert_eq(close(fd), 0);
	assert_time_eq(stat_of(MP("named")).st_mtim, mtime_only[1], "named mtime shown");
	mnt_umount();
	assert_time_eq(stat_of(UP("named")).st_mtim, mtime_only[1], "named mtime stored");
	cr_assert_eq(access(UP("gone"), F_OK), -1);
}

Test(fs_times, noatime_and_nodiratime_keep_atime_where_they_say)
{
	time_t now = time(NULL);
	put(UP("file"), "file\n");
	age(UP("file"), now - 120, now - 60);
	cr_assert_eq(mkdir(UP("dir"), 0755), 0);
	age(UP("dir"), now - 120, now - 60);

	mnt_mount_opts(&(mnt_opts){.nodiratime = true});
	read_all(MP("file"));
	list(MP("dir"));
	cr_assert_geq(stat_of(MP("file")).st_atim.tv_sec, now);
	cr_assert_eq(stat_of(MP("dir")).st_atim.tv_sec, now - 120);
	mnt_umount();

	age(UP("file"), now - 120, now - 60);
	mnt_mount_opts(&(mnt_opts){.noatime = true});
	read_all(MP("file"));
	list(MP("dir"));
	cr_assert_eq(stat_of(MP("file")).st_atim.tv_sec, now - 120);
	cr_assert_eq(stat_of(MP("dir")).st_atim.tv_sec, now - 120);
	mnt_umount();
	cr_assert_eq(stat_of(UP("file")).st_atim.tv_sec, now - 120);
	cr_assert_eq(stat_of(UP("dir")).st_atim.tv_sec, now - 120);
}

Test(fs_times_options, atime_options_parse_and_strictatime_is_refused)
{
	lyr_fs_options *o;
	cr_assert_eq(lyr_fs_options_new(&o), 0);
	cr_assert_eq(lyr_fs_options_parse(o, "noatime,nodiratime"), 0);
	cr_assert(lyr_fs_options_config(o)->noatime);
	cr_assert(lyr_fs_options_config(o)->nodiratime);
	cr_assert_eq(lyr_fs_options_parse(o, "relatime,diratime"), 0);
	cr_assert_not(lyr_fs_options_config(o)->noatime);
	cr_assert_not(lyr_fs_options_config(o)->nodiratime);
	cr_assert_eq(lyr_fs_options_parse(o, "strictatime"), -EINVAL);
	cr_assert_str_eq(lyr_fs_options_error(o),
			 "option strictatime is not supported: reads served from the kernel's page "
			 "cache never reach the daemon, so atime moves only when a file is opened "
			 "(relatime's rule, the default) or never (noatime)");
	lyr_fs_options_free(o);
}
