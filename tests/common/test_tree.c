#include <criterion/criterion.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "layerfs/tree.h"
#include "testutil.h"

static int open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	return fd;
}

static void lstat_at(const char *dir, const char *rel, struct stat *st)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(lstat(p, st), 0, "lstat %s: %s", p, strerror(errno));
}

static void set_mtime(const char *dir, const char *rel, time_t sec, long nsec)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	const struct timespec ts[2] = {{sec - 5, 7}, {sec, nsec}};
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0, "utimensat %s", p);
}

static void mode_at(const char *dir, const char *rel, mode_t mode)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(chmod(p, mode), 0);
}

/* Copies SRC into a fresh DST directory; returns lyr_tree_copy's result. */
static int copy(const char *src, const char *dst, lyr_tree_error *err)
{
	_cleanup_close_ int s = open_dir(src);
	_cleanup_close_ int d = open_dir(dst);
	return lyr_tree_copy(s, d, NULL, err);
}

Test(common_tree, copy_keeps_exact_bytes_modes_and_nanosecond_times)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "a.txt", "hello");
	tu_write(src, "empty", "");
	tu_write(src, "ro/inner", "inside a read-only dir");
	/* A 3 MiB file with a pattern that catches misplaced chunks. */
	_cleanup_free_ char *big = malloc(3 << 20);
	for (size_t i = 0; i < (3u << 20); i++)
		big[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	{
		_cleanup_free_ char *p = tu_path(src, "big");
		FILE *f = fopen(p, "w");
		cr_assert_eq(fwrite(big, 1, 3 << 20, f), 3u << 20);
		fclose(f);
	}
	mode_at(src, "a.txt", 04751);
	mode_at(src, "empty", 0400);
	set_mtime(src, "a.txt", 1500000000, 123456789);
	set_mtime(src, "ro/inner", 1400000000, 1);
	set_mtime(src, "ro", 1300000000, 999999999);
	mode_at(src, "ro", 0555);

	lyr_tree_error err = {0};
	cr_assert_eq(copy(src, dst, &err), 0, "copy failed at '%s': %s", err.path, strerror(err.err));

	struct stat st;
	lstat_at(dst, "a.txt", &st);
	cr_assert_eq(st.st_mode & 07777, 04751);
	cr_assert_eq(st.st_mtim.tv_sec, 1500000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 123456789);
	cr_assert_eq(st.st_atim.tv_sec, 1500000000 - 5);
	cr_assert_eq(st.st_atim.tv_nsec, 7);
	lstat_at(dst, "empty", &st);
	cr_assert_eq(st.st_mode & 07777, 0400);
	cr_assert_eq(st.st_size, 0);
	lstat_at(dst, "ro", &st);
	cr_assert_eq(st.st_mode & 07777, 0555);
	cr_assert_eq(st.st_mtim.tv_sec, 1300000000, "directory mtime set after its children");
	cr_assert_eq(st.st_mtim.tv_nsec, 999999999);
	lstat_at(dst, "ro/inner", &st);
	cr_assert_eq(st.st_mtim.tv_sec, 1400000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 1);

	/* Contents last: reading updates atimes. */
	_cleanup_free_ char *a = tu_read(dst, "a.txt");
	_cleanup_free_ char *inner = tu_read(dst, "ro/inner");
	cr_assert_str_eq(a, "hello");
	cr_assert_str_eq(inner, "inside a read-only dir");
	_cleanup_free_ char *bigp = tu_path(dst, "big");
	_cleanup_free_ char *bigc = NULL;
	size_t len = 0;
	cr_assert_eq(lyr_read_file(bigp, &bigc, &len), 0);
	cr_assert_eq(len, 3u << 20);
	cr_assert_eq(memcmp(big, bigc, len), 0);

	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_keeps_user_xattrs_on_files_dirs_and_the_root)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "d/f", "x");
	_cleanup_free_ char *f = tu_path(src, "d/f");
	_cleanup_free_ char *d = tu_path(src, "d");
	cr_assert_eq(setxattr(f, "user.one", "1\0binary", 8, 0), 0);
	cr_assert_eq(setxattr(f, "user.empty", "", 0, 0), 0);
	cr_assert_eq(setxattr(d, "user.overlay.opaque", "y", 1, 0), 0);
	cr_assert_eq(setxattr(src, "user.root", "r", 1, 0), 0);
	cr_assert_eq(copy(src, dst, NULL), 0);

	_cleanup_free_ char *df = tu_path(dst, "d/f");
	_cleanup_free_ char *dd = tu_path(dst, "d");
	char buf[64];
	cr_assert_eq(getxattr(df, "user.one", buf, sizeof buf), 8);
	cr_assert_eq(memcmp(buf, "1\0binary", 8), 0);
	cr_assert_eq(getxattr(df, "user.empty", buf, sizeof buf), 0);
	cr_assert_eq(getxattr(dd, "user.overlay.opaque", buf, sizeof buf), 1);
	cr_assert_eq(buf[0], 'y');
	cr_assert_eq(getxattr(dst, "user.root", buf, sizeof buf), 1);
	cr_assert_eq(buf[0], 'r');
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_keeps_hard_links_as_links_in_the_copy)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "a", "shared");
	tu_write(src, "sub/other", "alone");
	_cleanup_free_ char *a = tu_path(src, "a");
	_cleanup_free_ char *b = tu_path(src, "sub/b");
	_cleanup_free_ char *c = tu_path(src, "c");
	cr_assert_eq(link(a, b), 0);
	cr_assert_eq(link(a, c), 0);
	cr_assert_eq(copy(src, dst, NULL), 0);

	struct stat sa, sb, sc, so, orig;
	lstat_at(dst, "a", &sa);
	lstat_at(dst, "sub/b", &sb);
	lstat_at(dst, "c", &sc);
	lstat_at(dst, "sub/other", &so);
	lstat_at(src, "a", &orig);
	cr_assert_eq(sa.st_ino, sb.st_ino);
	cr_assert_eq(sa.st_ino, sc.st_ino);
	cr_assert_eq(sa.st_nlink, 3);
	cr_assert_eq(so.st_nlink, 1);
	cr_assert_neq(sa.st_ino, orig.st_ino, "the copy is a new inode, not a link to the source");
	_cleanup_free_ char *content = tu_read(dst, "sub/b");
	cr_assert_str_eq(content, "shared");
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_keeps_symlink_targets_verbatim_even_dangling_or_looping)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	const char *links[][2] = {
		{"rel", "a.txt"},           {"dangling", "no/such/../file"},
		{"loop", "loop"},           {"abs", "/etc/passwd"},
		{"up", "../../outside"},    {"dirlink", "d"},
	};
	tu_write(src, "a.txt", "x");
	tu_write(src, "d/in", "y");
	for (size_t i = 0; i < LYR_ARRAY_SIZE(links); i++) {
		_cleanup_free_ char *p = tu_path(src, links[i][0]);
		cr_assert_eq(symlink(links[i][1], p), 0);
	}
	set_mtime(src, "rel", 1234567890, 42);
	cr_assert_eq(copy(src, dst, NULL), 0);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(links); i++) {
		_cleanup_free_ char *p = tu_path(dst, links[i][0]);
		char buf[256];
		ssize_t n = readlink(p, buf, sizeof buf - 1);
		cr_assert_geq(n, 0, "%s is not a symlink", links[i][0]);
		buf[n] = '\0';
		cr_assert_str_eq(buf, links[i][1]);
	}
	struct stat st;
	lstat_at(dst, "rel", &st);
	cr_assert_eq(st.st_mtim.tv_sec, 1234567890);
	cr_assert_eq(st.st_mtim.tv_nsec, 42);
	lstat_at(dst, "dirlink", &st);
	cr_assert(S_ISLNK(st.st_mode));
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_makes_fifos_sockets_and_whiteouts)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	_cleanup_free_ char *fifo = tu_path(src, "fifo");
	_cleanup_free_ char *sock = tu_path(src, "sock");
	_cleanup_free_ char *wh = tu_path(src, "gone");
	cr_assert_eq(mkfifo(fifo, 0640), 0);
	cr_assert_eq(mknod(sock, S_IFSOCK | 0600, 0), 0);
	cr_assert_eq(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0, "whiteout: %s", strerror(errno));
	cr_assert_eq(chmod(fifo, 0640), 0);
	cr_assert_eq(copy(src, dst, NULL), 0);
	struct stat st;
	lstat_at(dst, "fifo", &st);
	cr_assert(S_ISFIFO(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0640);
	lstat_at(dst, "sock", &st);
	cr_assert(S_ISSOCK(st.st_mode));
	lstat_at(dst, "gone", &st);
	cr_assert(S_ISCHR(st.st_mode));
	cr_assert_eq(st.st_rdev, makedev(0, 0));
	cr_assert_eq(st.st_mode & 07777, 0);
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_keeps_owners_and_devices_as_root)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to chown and mknod");
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "d/f", "x");
	_cleanup_free_ char *f = tu_path(src, "d/f");
	_cleanup_free_ char *d = tu_path(src, "d");
	_cleanup_free_ char *l = tu_path(src, "d/l");
	_cleanup_free_ char *null = tu_path(src, "null");
	_cleanup_free_ char *blk = tu_path(src, "blk");
	cr_assert_eq(symlink("f", l), 0);
	cr_assert_eq(chown(f, 1234, 5678), 0);
	cr_assert_eq(chmod(f, 06755), 0);
	cr_assert_eq(chown(d, 42, 43), 0);
	cr_assert_eq(lchown(l, 7, 8), 0);
	cr_assert_eq(mknod(null, S_IFCHR | 0666, makedev(1, 3)), 0);
	cr_assert_eq(chmod(null, 0666), 0);
	cr_assert_eq(mknod(blk, S_IFBLK | 0600, makedev(259, 70000)), 0);
	cr_assert_eq(copy(src, dst, NULL), 0);
	struct stat st;
	lstat_at(dst, "d/f", &st);
	cr_assert_eq(st.st_uid, 1234);
	cr_assert_eq(st.st_gid, 5678);
	cr_assert_eq(st.st_mode & 07777, 06755, "setuid/setgid survive the chown");
	lstat_at(dst, "d", &st);
	cr_assert_eq(st.st_uid, 42);
	cr_assert_eq(st.st_gid, 43);
	lstat_at(dst, "d/l", &st);
	cr_assert_eq(st.st_uid, 7);
	cr_assert_eq(st.st_gid, 8);
	lstat_at(dst, "null", &st);
	cr_assert(S_ISCHR(st.st_mode));
	cr_assert_eq(st.st_rdev, makedev(1, 3));
	cr_assert_eq(st.st_mode & 07777, 0666);
	lstat_at(dst, "blk", &st);
	cr_assert(S_ISBLK(st.st_mode));
	cr_assert_eq(major(st.st_rdev), 259);
	cr_assert_eq(minor(st.st_rdev), 70000);
	tu_rmtree(src);
	tu_rmtree(dst);
}

/* Runs FN in a child that dropped to uid/gid 65534; returns its exit status. */
static int as_nobody(int (*fn)(const char *, const char *), const char *src, const char *dst)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(99);
		_exit(fn(src, dst));
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int copy_expecting_eacces_at_secret(const char *src, const char *dst)
{
	lyr_tree_error err = {0};
	int fds = open(src, O_RDONLY | O_DIRECTORY), fdd = open(dst, O_RDONLY | O_DIRECTORY);
	if (fds < 0 || fdd < 0)
		return 98;
	int r = lyr_tree_copy(fds, fdd, NULL, &err);
	if (r != -EACCES)
		return 1;
	if (err.err != EACCES)
		return 2;
	if (strcmp(err.path, "sub/secret") != 0)
		return 3;
	return 0;
}

static int copy_expecting_eperm_at_device(const char *src, const char *dst)
{
	lyr_tree_error err = {0};
	int fds = open(src, O_RDONLY | O_DIRECTORY), fdd = open(dst, O_RDONLY | O_DIRECTORY);
	if (fds < 0 || fdd < 0)
		return 98;
	int r = lyr_tree_copy(fds, fdd, NULL, &err);
	if (r != -EPERM)
		return 1;
	if (strcmp(err.path, "dev/null") != 0)
		return 3;
	return 0;
}

static void share_with_nobody(const char *src, const char *dst)
{
	cr_assert_eq(chmod(src, 0755), 0);
	cr_assert_eq(chown(dst, 65534, 65534), 0);
}

Test(common_tree, copy_reports_the_path_of_an_unreadable_file)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to switch to an unprivileged uid");
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "sub/aaa", "readable");
	tu_write(src, "sub/secret", "not for you");
	mode_at(src, "sub/secret", 0000);
	share_with_nobody(src, dst);
	cr_assert_eq(as_nobody(copy_expecting_eacces_at_secret, src, dst), 0);
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_of_a_device_without_privilege_fails_naming_it)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to make the device and to switch uid");
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "dev/a", "x");
	_cleanup_free_ char *null = tu_path(src, "dev/null");
	cr_assert_eq(mknod(null, S_IFCHR | 0666, makedev(1, 3)), 0);
	share_with_nobody(src, dst);
	cr_assert_eq(as_nobody(copy_expecting_eperm_at_device, src, dst), 0);
	tu_rmtree(src);
	tu_rmtree(dst);
}

#define DEEP 1500

Test(common_tree, copy_and_remove_handle_1500_levels_with_64_fds)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	/* Build the chain with *at() calls: the full path exceeds what path-based tools take. */
	int fd = open_dir(src);
	for (int i = 0; i < DEEP; i++) {
		cr_assert_eq(mkdirat(fd, "d", 0755), 0);
		int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
		cr_assert_geq(next, 0);
		close(fd);
		fd = next;
	}
	int ffd = openat(fd, "leaf", O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(ffd, "bottom", 6), 6);
	close(ffd);
	close(fd);

	struct rlimit rl = {64, 64};
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	lyr_tree_error err = {0};
	cr_assert_eq(copy(src, dst, &err), 0, "copy failed at depth %zu: %s",
		     strlen(err.path) / 2, strerror(err.err));

	uint64_t bytes = 0, entries = 0;
	int dfd = open_dir(dst);
	cr_assert_eq(lyr_tree_usage(dfd, &bytes, &entries), 0);
	cr_assert_eq(bytes, 6);
	cr_assert_eq(entries, DEEP + 1);
	close(dfd);

	fd = open_dir(dst);
	for (int i = 0; i < DEEP; i++) {
		int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		cr_assert_geq(next, 0, "level %d missing", i);
		close(fd);
		fd = next;
	}
	char buf[16] = {0};
	ffd = openat(fd, "leaf", O_RDONLY);
	cr_assert_eq(read(ffd, buf, sizeof buf), 6);
	cr_assert_str_eq(buf, "bottom");
	close(ffd);
	close(fd);

	int sfd = open_dir(src);
	dfd = open_dir(dst);
	cr_assert_eq(lyr_tree_remove(sfd, "d"), 0);
	cr_assert_eq(lyr_tree_remove(dfd, "d"), 0);
	struct stat st;
	cr_assert_eq(fstatat(sfd, "d", &st, AT_SYMLINK_NOFOLLOW), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(fstatat(dfd, "d", &st, AT_SYMLINK_NOFOLLOW), -1);
	close(sfd);
	close(dfd);
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, remove_clears_read_only_dirs_and_does_not_follow_symlinks)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "outside/keep", "keep me");
	tu_write(dir, "victim/ro/f", "x");
	tu_write(dir, "victim/closed/g", "y");
	tu_write(dir, "victim/plain", "z");
	_cleanup_free_ char *lnk = tu_path(dir, "victim/ro/link");
	cr_assert_eq(symlink("../../outside", lnk), 0);
	mode_at(dir, "victim/ro", 0555);
	mode_at(dir, "victim/closed", 0000);
	int fd = open_dir(dir);
	cr_assert_eq(lyr_tree_remove(fd, "victim"), 0);
	struct stat st;
	cr_assert_eq(fstatat(fd, "victim", &st, AT_SYMLINK_NOFOLLOW), -1);
	cr_assert_eq(errno, ENOENT);
	_cleanup_free_ char *kept = tu_read(dir, "outside/keep");
	cr_assert_str_eq(kept, "keep me");
	cr_assert_eq(lyr_tree_remove(fd, "victim"), 0, "a missing name counts as removed");
	cr_assert_eq(lyr_tree_remove(fd, "outside/keep"), 0);
	cr_assert_eq(fstatat(fd, "outside/keep", &st, AT_SYMLINK_NOFOLLOW), -1);
	close(fd);
	tu_rmtree(dir);
}

Test(common_tree, usage_counts_files_and_symlinks_once_per_inode)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "a", "123");
	tu_write(dir, "sub/b", "12345");
	_cleanup_free_ char *a = tu_path(dir, "a");
	_cleanup_free_ char *h = tu_path(dir, "sub/hard");
	_cleanup_free_ char *l = tu_path(dir, "sub/link");
	cr_assert_eq(link(a, h), 0);
	cr_assert_eq(symlink("abcdefg", l), 0);
	int fd = open_dir(dir);
	uint64_t bytes = 0, entries = 0;
	cr_assert_eq(lyr_tree_usage(fd, &bytes, &entries), 0);
	cr_assert_eq(bytes, 3 + 5 + 7);
	cr_assert_eq(entries, 5); /* a, sub, sub/b, sub/hard, sub/link */
	close(fd);
	tu_rmtree(dir);
}

typedef struct seen {
	uint64_t files, bytes, calls;
} seen;

static void on_progress(void *ctx, uint64_t files, uint64_t bytes)
{
	seen *s = ctx;
	cr_assert_geq(files, s->files, "file count never goes back");
	cr_assert_geq(bytes, s->bytes, "byte count never goes back");
	s->files = files;
	s->bytes = bytes;
	s->calls++;
}

Test(common_tree, copy_reports_running_totals_of_files_and_bytes)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "a", "1234");
	tu_write(src, "d/b", "123456");
	tu_write(src, "d/e/c", "");
	seen s = {0};
	lyr_progress p = {on_progress, &s};
	_cleanup_close_ int sfd = open_dir(src);
	_cleanup_close_ int dfd = open_dir(dst);
	cr_assert_eq(lyr_tree_copy(sfd, dfd, &p, NULL), 0);
	cr_assert_eq(s.files, 3);
	cr_assert_eq(s.bytes, 10);
	cr_assert_eq(s.calls, 3);
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(common_tree, copy_into_a_non_empty_destination_fails_on_the_clash)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "d/x", "new");
	tu_write(dst, "d/x", "old");
	lyr_tree_error err = {0};
	cr_assert_eq(copy(src, dst, &err), -EEXIST);
	cr_assert_str_eq(err.path, "d");
	cr_assert_eq(err.err, EEXIST);
	tu_rmtree(src);
	tu_rmtree(dst);
}

typedef struct walk_log {
	char text[1024];
} walk_log;

static int log_entry(void *ctx, int dirfd, const char *name, const struct stat *st, const char *path)
{
	walk_log *l = ctx;
	(void)dirfd, (void)name;
	strcat(l->text, path);
	strcat(l->text, S_ISDIR(st->st_mode) ? "/ " : " ");
	return strcmp(path, "skip") == 0 ? LYR_TREE_SKIP : 0;
}

static int log_leave(void *ctx, int fd, const struct stat *st, const char *path)
{
	walk_log *l = ctx;
	struct stat now;
	cr_assert_eq(fstat(fd, &now), 0);
	cr_assert_eq(now.st_ino, st->st_ino);
	strcat(l->text, "<");
	strcat(l->text, path);
	strcat(l->text, "> ");
	return 0;
}

Test(common_tree, sorted_walk_visits_depth_first_in_byte_order_and_skips_on_request)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "b/y", "");
	tu_write(dir, "b/x", "");
	tu_write(dir, "a.b", "");
	tu_write(dir, "a/z", "");
	tu_write(dir, "skip/hidden", "");
	tu_write(dir, "B", "");
	_cleanup_free_ char *l = tu_path(dir, "b/link");
	cr_assert_eq(symlink("..", l), 0);
	walk_log log = {""};
	lyr_tree_visit v = {.entry = log_entry, .leave = log_leave, .ctx = &log, .sorted = true};
	int fd = open_dir(dir);
	cr_assert_eq(lyr_tree_walk(fd, &v, NULL), 0);
	cr_assert_str_eq(log.text,
			 "B a/ a/z <a> a.b b/ b/link b/x b/y <b> skip/ <> ");
	close(fd);
	tu_rmtree(dir);
}

static int fail_at_x(void *ctx, int dirfd, const char *name, const struct stat *st, const char *path)
{
	(void)ctx, (void)dirfd, (void)st, (void)path;
	return strcmp(name, "x") == 0 ? -EBADMSG : 0;
}

Test(common_tree, walk_stops_with_the_callback_error_naming_the_entry)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "d/x", "");
	lyr_tree_visit v = {.entry = fail_at_x, .sorted = true};
	lyr_tree_error err = {0};
	int fd = open_dir(dir);
	cr_assert_eq(lyr_tree_walk(fd, &v, &err), -EBADMSG);
	cr_assert_str_eq(err.path, "d/x");
	cr_assert_eq(err.err, EBADMSG);
	close(fd);
	tu_rmtree(dir);
}

Test(common_tree, copy_across_file_systems_falls_back_to_read_and_write)
{
	struct stat shm, tmp;
	_cleanup_free_ char *dst = tu_mkdtemp();
	if (stat("/dev/shm", &shm) < 0 || stat(dst, &tmp) < 0 || shm.st_dev == tmp.st_dev) {
		tu_rmtree(dst);
		cr_skip_test("needs /dev/shm on another file system than the temporary directory");
	}
	char src[] = "/dev/shm/layerfs-test-XXXXXX";
	cr_assert_not_null(mkdtemp(src));
	size_t len = (3u << 20) + 17;
	_cleanup_free_ char *data = malloc(len);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)(i * 131 + i / 4099);
	_cleanup_free_ char *p = tu_path(src, "f");
	FILE *f = fopen(p, "w");
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
	tu_write(src, "small", "tiny");
	cr_assert_eq(copy(src, dst, NULL), 0);
	_cleanup_free_ char *dp = tu_path(dst, "f");
	_cleanup_free_ char *got = NULL;
	size_t glen = 0;
	cr_assert_eq(lyr_read_file(dp, &got, &glen), 0);
	cr_assert_eq(glen, len);
	cr_assert_eq(memcmp(got, data, len), 0);
	_cleanup_free_ char *small = tu_read(dst, "small");
	cr_assert_str_eq(small, "tiny");
	tu_rmtree(src);
	tu_rmtree(dst);
}
