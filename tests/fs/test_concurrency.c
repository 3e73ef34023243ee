/* Many threads changing the same directories at once: renames across directories, copy-ups,
 * unlinks, links, mkdir/rmdir, reads and listings.  What each operation returns depends on the
 * interleaving; what must hold is that none fails with an error no interleaving explains (EIO,
 * ESTALE, EBADF...), nothing hangs (the suite's timeout), the daemon survives, and afterwards every
 * visible file reads back one of the contents ever written.  Needs /dev/fuse; skips otherwise. */
#include <dirent.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mnt.h"

#define THREADS 4
#define NAMES 16
#define SECONDS 5

static atomic_int bad_errno;

static bool expected(int e)
{
	return e == ENOENT || e == EEXIST || e == ENOTEMPTY || e == EISDIR || e == ENOTDIR ||
	       e == EINVAL || e == EXDEV;
}

static void note(int r)
{
	if (r < 0 && !expected(errno))
		atomic_store(&bad_errno, errno);
}

static void path_of(char *buf, size_t size, unsigned r)
{
	static const char *const dirs[] = {"d1", "d2", "d1/sub"};
	snprintf(buf, size, "%s/%s/n%u", M.mp, dirs[r % 3], (r / 3) % NAMES);
}

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	time_t end = time(NULL) + SECONDS;
	char a[4096], b[4096];
	while (time(NULL) < end) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = seed >> 8;
		path_of(a, sizeof(a), r);
		path_of(b, sizeof(b), r >> 7);
		int fd;
		switch (r % 9) {
		case 0:
			note(rename(a, b));
			break;
		case 1:
			note(chmod(a, 0600 | (r & 077)));
			break;
		case 2:
			fd = open(a, O_WRONLY | O_CREAT, 0644);
			note(fd);
			if (fd >= 0) {
				note((int)write(fd, "content", 7));
				close(fd);
			}
			break;
		case 3: {
			char buf[64];
			fd = open(a, O_RDONLY);
			note(fd);
			if (fd >= 0) {
				note((int)read(fd, buf, sizeof(buf)));
				close(fd);
			}
			break;
		}
		case 4:
			note(unlink(a));
			break;
		case 5:
			/* EPERM: A is a directory at that moment */
			if (link(a, b) < 0 && errno != EPERM)
				note(-1);
			break;
		case 6:
			note(mkdir(a, 0755));
			break;
		case 7:
			note(rmdir(a));
			break;
		default: {
			char dir[4096];
			snprintf(dir, sizeof(dir), "%s/%s", M.mp, r & 1 ? "d1" : "d2");
			DIR *d = opendir(dir);
			if (d) {
				while (readdir(d))
					;
				closedir(d);
			}
			break;
		}
		}
	}
	return NULL;
}

static void layers(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	for (int i = 0; i < NAMES; i += 2) {
		char rel[64];
		snprintf(rel, sizeof(rel), "d1/n%d", i);
		tu_write(M.l2, rel, "lower");
		snprintf(rel, sizeof(rel), "d1/sub/n%d", i + 1);
		tu_write(M.l2, rel, "lower");
		snprintf(rel, sizeof(rel), "d2/n%d", i);
		tu_write(M.l1, rel, "lower");
	}
	mnt_mount();
}

TestSuite(fs_concurrency, .fini = mnt_teardown, .timeout = 90);

/* The same with lower hard-link groups and an fd limit small enough that the daemon keeps
 * closing and reopening inode fds while names move. */
static void tight_layers(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	for (int i = 0; i < NAMES; i += 2) {
		char a[64], b[64];
		snprintf(a, sizeof(a), "d1/n%d", i);
		tu_write(M.l2, a, "lower");
		snprintf(b, sizeof(b), "d2/n%d", i + 1);
		cr_assert_eq(lyr_mkdir_p(in_dir(M.l2, "d2"), 0755), 0);
		cr_assert_eq(link(in_dir(M.l2, a), in_dir(M.l2, b)), 0);
	}
	cr_assert_eq(lyr_mkdir_p(in_dir(M.l2, "d1/sub"), 0755), 0);
	for (int i = 0; i < 300; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "d1/sub/filler%d", i);
		tu_write(M.l2, rel, "lower");
	}
	struct rlimit rl = {160, 160};
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	mnt_mount();
}

static void check_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		struct stat st;
		cr_assert_eq(lstat(p, &st), 0, "%s listed but not found: %s", p, strerror(errno));
		cr_assert_eq(st.st_ino, de->d_ino, "%s", p);
		if (S_ISDIR(st.st_mode)) {
			check_tree(p);
			continue;
		}
		_cleanup_free_ char *c = slurp(p);
		cr_assert_not_null(c, "%s", p);
		cr_assert(strcmp(c, "") == 0 || strcmp(c, "lower") == 0 ||
			      strcmp(c, "content") == 0 || strcmp(c, "contentr") == 0,
			  "%s holds '%s'", p, c);
	}
	closedir(d);
}

static void race(void)
{
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, worker, (void *)(i * 7919 + 1)), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(atomic_load(&bad_errno), 0, "unexpected errno %d (%s)",
		     atomic_load(&bad_errno), strerror(atomic_load(&bad_errno)));
	check_tree(M.mp);
	mnt_umount();
	mnt_mount();
	check_tree(M.mp);
}

Test(fs_concurrency, racing_namespace_changes_keep_the_tree_consistent, .init = layers)
{
	race();
}

Test(fs_concurrency, racing_changes_with_hard_links_and_few_fds, .init = tight_layers)
{
	race();
}

#define HUGE (512u << 20)

static atomic_bool copy_started, copy_done;

static void *open_for_writing(void *arg)
{
	(void)arg;
	atomic_store(&copy_started, true);
	int fd = open(MP("huge"), O_WRONLY);
	atomic_store(&copy_done, true);
	if (fd >= 0)
		close(fd);
	return (void *)(intptr_t)(fd >= 0);
}

static void huge_layers(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	/* real data (a copy skips holes): 512 MiB of one byte */
	int fd = open(in_dir(M.l2, "huge"), O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	static char block[1 << 20];
	memset(block, 'h', sizeof(block));
	for (unsigned i = 0; i < HUGE / sizeof(block); i++)
		cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	close(fd);
	tu_write(M.l2, "small", "s");
	mnt_mount();
}

Test(fs_concurrency, a_data_copy_up_does_not_hold_up_other_requests, .init = huge_layers)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, open_for_writing, NULL), 0);
	while (!atomic_load(&copy_started))
		usleep(1000);
	usleep(20000); /* the open is in the daemon, copying */
	if (atomic_load(&copy_done)) {
		pthread_join(t, NULL);
		cr_skip_test("the copy-up of 512 MiB took under 20 ms here (a reflink?)");
	}
	for (int i = 0; i < 50; i++) {
		struct stat st;
		cr_assert_eq(stat(MP("small"), &st), 0);
		_cleanup_free_ char *s = slurp(MP("small"));
		cr_assert_str_eq(s, "s");
	}
	bool done_before_ours = atomic_load(&copy_done);
	void *ok;
	pthread_join(t, &ok);
	cr_assert(ok, "open for writing failed");
	cr_assert_not(done_before_ours, "other requests waited for the copy-up to finish");
	struct stat st;
	cr_assert_eq(stat(UP("huge"), &st), 0);
	cr_assert_eq(st.st_size, HUGE);
}
