/* `layerfs mount` and `umount` over a real store: a ref mounts read-write and is recorded, a
 * layer mounts read-only, a mounted ref is neither committed nor mounted twice, umount waits for
 * the serving process, a record whose process died is stale and cleared. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <grp.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "testutil.h"

static tu_dirs dirs;
static char *mp;

static void setup(void)
{
	tu_dirs_init(&dirs);
	mp = tu_path(dirs.tmp, "mnt");
	tu_write(dirs.src, "etc/hostname", "box\n");
	tu_write(dirs.src, "data/keep", "keep\n");
	tu_write(dirs.src, "data/drop", "drop\n");
	cr_assert_eq(mkdir(mp, 0755), 0);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs); /* unmounts what a test left, and fails it */
	free(mp);
}

TestSuite(cli_mount, .init = setup, .fini = teardown);

static char *new_ref_on_base(void)
{
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL)));
	char *out = tu_ok(tu_lf(dirs.store, "new", "base", NULL));
	out[64] = '\0';
	return out;
}

Test(cli_mount, a_ref_mounts_read_write_and_its_changes_commit)
{
	tu_need_fuse();
	_cleanup_free_ char *ref = new_ref_on_base();
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	tu_write(mp, "etc/motd", "hello\n");
	_cleanup_free_ char *drop = tu_path(mp, "data/drop");
	cr_assert_eq(unlink(drop), 0);
	_cleanup_free_ char *host = tu_read(mp, "etc/hostname");
	cr_assert_str_eq(host, "box\n");

	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
	_cleanup_free_ char *where = tu_json_field(info, "mountpoint");
	_cleanup_free_ char *abs = realpath(mp, NULL);
	cr_assert_str_eq(where, abs);

	tu_run r = tu_lf(dirs.store, "commit", ref, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: commit '%s': ref is mounted at '%s'\n", ref, abs) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	free(tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "v1", NULL)));
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", "v1", NULL));
	cr_assert_str_eq(diff, "C /data\nD /data/drop\nC /etc\nA /etc/motd\n");
}

Test(cli_mount, a_layer_mounts_read_only)
{
	tu_need_fuse();
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL)));
	_cleanup_free_ char *out = tu_ok(tu_lf(dirs.store, "--json", "mount", "base", mp, NULL));
	_cleanup_free_ char *ro = tu_json_field(out, "read_only");
	cr_assert_str_eq(ro, "true");
	_cleanup_free_ char *keep = tu_read(mp, "data/keep");
	cr_assert_str_eq(keep, "keep\n");
	_cleanup_free_ char *f = tu_path(mp, "new");
	cr_assert_eq(open(f, O_CREAT | O_WRONLY, 0644), -1);
	cr_assert_eq(errno, EROFS);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

Test(cli_mount, a_mounted_ref_is_not_mounted_twice)
{
	tu_need_fuse();
	_cleanup_free_ char *ref = new_ref_on_base();
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	_cleanup_free_ char *mp2 = tu_path(dirs.tmp, "mnt2");
	cr_assert_eq(mkdir(mp2, 0755), 0);
	tu_run r = tu_lf(dirs.store, "mount", ref, mp2, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *abs = realpath(mp, NULL);
	_cleanup_free_ char *want = NULL;
	cr_assert(
	    asprintf(&want, "layerfs: mount '%s': ref is already mounted at '%s'\n", ref, abs) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	cr_assert_eq(umount2(mp2, 0), -1, "the second mount must not exist");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

Test(cli_mount, umount_returns_after_the_serving_process_exited)
{
	tu_need_fuse();
	tu_backend("fuse"); /* the serving process */
	_cleanup_free_ char *ref = new_ref_on_base();
	_cleanup_free_ char *out = tu_ok(tu_lf(dirs.store, "--json", "mount", ref, mp, NULL));
	_cleanup_free_ char *pid_text = tu_json_field(out, "pid");
	pid_t pid = (pid_t)atoi(pid_text);
	cr_assert_gt(pid, 1);
	cr_assert_eq(kill(pid, 0), 0);
	tu_write(mp, "f", "data\n");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	cr_assert(!tu_process_running(pid), "the serving process %d still runs", pid);
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
	cr_assert_not_null(strstr(info, "\"mountpoint\":null"), "%s", info);
}

Test(cli_mount, a_record_whose_server_died_is_stale_and_cleared)
{
	tu_need_fuse();
	tu_backend("fuse"); /* the serving process */
	_cleanup_free_ char *ref = new_ref_on_base();
	_cleanup_free_ char *out = tu_ok(tu_lf(dirs.store, "--json", "mount", ref, mp, NULL));
	_cleanup_free_ char *pid_text = tu_json_field(out, "pid");
	pid_t pid = (pid_t)atoi(pid_text);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	for (int i = 0; i < 500 && tu_process_running(pid); i++)
		usleep(10000);
	cr_assert_eq(umount2(mp, MNT_DETACH), 0); /* the dead mount itself */
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
	cr_assert_not_null(strstr(info, "\"mountpoint\":null"), "%s", info);
	_cleanup_free_ char *layer = tu_ok(tu_lf(dirs.store, "commit", ref, NULL));
	cr_assert_eq(strncmp(layer, "sha256:", 7), 0);
}

Test(cli_mount, a_foreground_mount_serves_until_unmounted)
{
	tu_need_fuse();
	_cleanup_free_ char *ref = new_ref_on_base();
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 1);
		execl(LAYERFS_BIN, LAYERFS_BIN, "--root", dirs.store, "mount", "-f", ref, mp,
		      (char *)NULL);
		_exit(127);
	}
	_cleanup_free_ char *abs = realpath(mp, NULL);
	bool live = false;
	for (int i = 0; i < 500 && !live; i++) {
		_cleanup_free_ char *info =
		    tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
		live = strstr(info, abs) != NULL;
		if (!live)
			usleep(10000);
	}
	cr_assert(live, "the foreground mount never went live");
	tu_write(mp, "fg", "foreground\n");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", ref, NULL));
	cr_assert_str_eq(diff, "A /fg\n");
}

Test(cli_mount, a_scratch_ref_mounts_with_no_parent)
{
	tu_need_fuse();
	char *out = tu_ok(tu_lf(dirs.store, "new", NULL));
	out[64] = '\0';
	_cleanup_free_ char *ref = out;
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	tu_write(mp, "d/a", "a\n");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", ref, NULL));
	cr_assert_str_eq(diff, "A /d\nA /d/a\n");
}

Test(cli_mount, mount_refuses_layer_directories_and_bad_options)
{
	_cleanup_free_ char *ref = new_ref_on_base();
	tu_run r = tu_lf(dirs.store, "mount", "-o", "upperdir=/tmp", ref, mp, NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err,
			 "layerfs mount: lowerdir, upperdir and workdir come from the store "
			 "(use 'layerfs overlay' for directories)\nTry 'layerfs mount --help'.\n");
	tu_run_free(&r);
	r = tu_lf(dirs.store, "mount", "-o", "xattr_permissions=7", ref, mp, NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(
	    r.err, "layerfs mount: -o xattr_permissions=7: xattr_permissions must be 0, 1 or 2\n"
		   "Try 'layerfs mount --help'.\n");
	tu_run_free(&r);
	_cleanup_free_ char *missing = tu_path(dirs.tmp, "nope");
	r = tu_lf(dirs.store, "mount", ref, missing, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "layerfs: mount '%s': mountpoint '%s': No such file or directory\n", ref,
			   missing) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	/* nothing was recorded */
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
	cr_assert_not_null(strstr(info, "\"mountpoint\":null"), "%s", info);
}

Test(cli_mount, the_mount_helper_name_takes_mount8_arguments)
{
	tu_need_fuse();
	_cleanup_free_ char *helper = tu_path(dirs.tmp, "mount.fuse.layerfs");
	cr_assert_eq(symlink(LAYERFS_BIN, helper), 0);
	_cleanup_free_ char *opts = NULL;
	cr_assert(asprintf(&opts, "lowerdir=%s", dirs.src) > 0);
	const char *argv[] = {helper, "mysource", mp, "-o", opts, NULL};
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	_cleanup_free_ char *host = tu_read(mp, "etc/hostname");
	cr_assert_str_eq(host, "box\n");
	/* mount(8) shows the source it was given */
	_cleanup_free_ char *mounts = NULL;
	cr_assert_eq(lyr_read_file("/proc/self/mounts", &mounts, NULL), 0);
	_cleanup_free_ char *abs = realpath(mp, NULL);
	_cleanup_free_ char *line = NULL;
	cr_assert(asprintf(&line, "mysource %s fuse.layerfs ", abs) > 0);
	cr_assert_not_null(strstr(mounts, line), "%s", mounts);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

Test(cli_mount, a_write_through_one_lower_hard_link_is_committed_for_both_names)
{
	tu_need_fuse();
	_cleanup_free_ char *a = tu_path(dirs.src, "data/keep");
	_cleanup_free_ char *b = tu_path(dirs.src, "data/keep-link");
	cr_assert_eq(link(a, b), 0);
	_cleanup_free_ char *ref = new_ref_on_base();
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	tu_write(mp, "data/keep", "changed\n");
	_cleanup_free_ char *through_b = tu_read(mp, "data/keep-link");
	cr_assert_str_eq(through_b, "changed\n");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	free(tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "v1", NULL)));
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", "v1", NULL));
	cr_assert_str_eq(diff, "C /data\nC /data/keep\nC /data/keep-link\n");

	/* the committed layer shows one file under two names, with the new content */
	free(tu_ok(tu_lf(dirs.store, "mount", "v1", mp, NULL)));
	_cleanup_free_ char *ka = tu_path(mp, "data/keep");
	_cleanup_free_ char *kb = tu_path(mp, "data/keep-link");
	struct stat sa, sb;
	cr_assert_eq(stat(ka, &sa), 0);
	cr_assert_eq(stat(kb, &sb), 0);
	cr_assert_eq(sa.st_ino, sb.st_ino);
	cr_assert_eq(sa.st_nlink, 2);
	_cleanup_free_ char *kb_data = tu_read(mp, "data/keep-link");
	cr_assert_str_eq(kb_data, "changed\n");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

/* Makes TMP/upper (its path in *RET_UPPER) and TMP/work and returns the -o text of an overlay
 * of the source tree with them. */
static char *overlay_opts(char **ret_upper)
{
	char *upper = tu_path(dirs.tmp, "upper");
	_cleanup_free_ char *work = tu_path(dirs.tmp, "work");
	cr_assert_eq(mkdir(upper, 0755), 0);
	cr_assert_eq(mkdir(work, 0755), 0);
	char *opts = NULL;
	cr_assert(asprintf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s", dirs.src, upper, work) > 0);
	*ret_upper = upper;
	return opts;
}

Test(cli_mount, layerfs_overlay_takes_fuse_overlayfs_arguments_as_a_mount_program)
{
	tu_need_fuse();
	_cleanup_free_ char *prog = tu_path(dirs.tmp, "layerfs-overlay");
	cr_assert_eq(symlink(LAYERFS_BIN, prog), 0);
	_cleanup_free_ char *upper = NULL;
	_cleanup_free_ char *opts = overlay_opts(&upper);
	const char *argv[] = {prog, "-o", opts, mp, NULL};
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	tu_write(mp, "etc/hostname", "changed\n");
	cr_assert_eq(umount2(mp, 0), 0);
	_cleanup_free_ char *up = tu_read(upper, "etc/hostname");
	cr_assert_str_eq(up, "changed\n");
	_cleanup_free_ char *low = tu_read(dirs.src, "etc/hostname");
	cr_assert_str_eq(low, "box\n");
}

/* Steps of the unprivileged run; the child exits with the number of the first that failed. */
enum {
	NP_OK,
	NP_NS = 100, /* no private mount namespace, no device node: skipped */
	NP_USER = 110,
	NP_MOUNT,
	NP_UNLINK,
	NP_MKDIR,
	NP_WRITE,
	NP_UMOUNT,
};

/* Runs ARGV (searched in PATH) with the caller's stdio and returns its exit status, or -1.  No
 * assertions: it runs in a forked child. */
static int run(const char *const *argv)
{
	pid_t pid;
	extern char **environ;
	if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ) != 0)
		return -1;
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* In a private mount namespace whose /dev/fuse is open to everyone (a node of our own bound over
 * it: this machine's is 0600), as nobody: `layerfs overlay` mounts through fusermount3, the
 * user changes the tree, fusermount3 -u unmounts. */
static int unprivileged_run(const char *lower, const char *upper, const char *work,
			    const char *node)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mknod(node, S_IFCHR | 0666, makedev(10, 229)) < 0 || chmod(node, 0666) < 0 ||
	    mount(node, "/dev/fuse", NULL, MS_BIND, NULL) < 0)
		return NP_NS;
	if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
		return NP_USER;
	char opts[4096];
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
	const char *argv[] = {LAYERFS_BIN, "overlay", "-o", opts, mp, NULL};
	if (run(argv) != 0)
		return NP_MOUNT;
	int fail = NP_OK;
	char path[4096];
	snprintf(path, sizeof(path), "%s/data/drop", mp);
	if (unlink(path) < 0)
		fail = NP_UNLINK;
	snprintf(path, sizeof(path), "%s/data", mp);
	char again[4096];
	snprintf(again, sizeof(again), "%s/data/keep", mp);
	if (!fail && (unlink(again) < 0 || rmdir(path) < 0 || mkdir(path, 0755) < 0))
		fail = NP_MKDIR;
	snprintf(path, sizeof(path), "%s/etc/motd", mp);
	if (!fail && unlink(path) < 0)
		fail = NP_UNLINK;
	snprintf(path, sizeof(path), "%s/etc/hostname", mp);
	int fd = fail ? -1 : open(path, O_WRONLY | O_TRUNC);
	if (!fail && (fd < 0 || write(fd, "mine\n", 5) != 5))
		fail = NP_WRITE;
	if (fd >= 0)
		close(fd);
	const char *um[] = {"fusermount3", "-u", mp, NULL};
	if (run(um) != 0 && !fail)
		fail = NP_UMOUNT;
	return fail;
}

Test(cli_mount, an_unprivileged_user_mounts_through_fusermount3)
{
	tu_need_fuse();
	if (geteuid() != 0)
		cr_skip_test("sets up a private /dev/fuse node: needs root (runs as root in CI)");
	_cleanup_free_ char *upper = tu_path(dirs.tmp, "upper");
	_cleanup_free_ char *work = tu_path(dirs.tmp, "work");
	_cleanup_free_ char *node = tu_path(dirs.tmp, "fuse");
	cr_assert_eq(mkdir(upper, 0755), 0);
	cr_assert_eq(mkdir(work, 0755), 0);
	/* nobody owns the upper, the work dir and the mountpoint, and may walk to them */
	cr_assert_eq(chown(upper, 65534, 65534), 0);
	cr_assert_eq(chown(work, 65534, 65534), 0);
	cr_assert_eq(chown(mp, 65534, 65534), 0);
	cr_assert_eq(chmod(dirs.tmp, 0755), 0);
	tu_write(dirs.src, "etc/motd", "hello\n");
	/* the lower tree is nobody's too: the kernel checks nobody's permissions to change it */
	cr_assert_eq(tu_sh("chown -R 65534:65534 '%s'", dirs.src), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0)
		_exit(unprivileged_run(dirs.src, upper, work, node));
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st));
	if (WEXITSTATUS(st) == NP_NS)
		cr_skip_test("no private mount namespace or device node here");
	cr_assert_eq(WEXITSTATUS(st), NP_OK, "step %d failed", WEXITSTATUS(st));
	/* what the unprivileged daemon wrote: its own ids, a 0/0 whiteout, user.* markers */
	struct stat s;
	_cleanup_free_ char *wh = tu_path(upper, "data/drop");
	_cleanup_free_ char *dir = tu_path(upper, "data");
	_cleanup_free_ char *host = tu_path(upper, "etc/hostname");
	cr_assert_eq(lstat(dir, &s), 0);
	cr_assert(S_ISDIR(s.st_mode));
	cr_assert_eq(s.st_uid, 65534);
	char v[8] = "";
	cr_assert_eq(lgetxattr(dir, "user.overlay.opaque", v, sizeof(v)), 1);
	cr_assert_eq(v[0], 'y');
	cr_assert_eq(lgetxattr(dir, "trusted.overlay.opaque", v, sizeof(v)), -1);
	/* the directory was made over a whiteout: nothing of the lower one shows, no marker left */
	cr_assert_eq(lstat(wh, &s), -1);
	_cleanup_free_ char *motd = tu_path(upper, "etc/motd");
	cr_assert_eq(lstat(motd, &s), 0);
	cr_assert(S_ISCHR(s.st_mode) && s.st_rdev == 0, "a 0/0 whiteout");
	cr_assert_eq(s.st_uid, 65534);
	_cleanup_free_ char *h = tu_read(upper, "etc/hostname");
	cr_assert_str_eq(h, "mine\n");
	cr_assert_eq(lstat(host, &s), 0);
	cr_assert_eq(s.st_uid, 65534);
	_cleanup_free_ char *low = tu_read(dirs.src, "etc/hostname");
	cr_assert_str_eq(low, "box\n");
}

/* dd with oflag=direct and iflag=direct on a ref's mount, with the writeback cache (the
 * default) and without: page-sized and odd-sized blocks at odd offsets, read back byte for byte
 * through the mount and found in the committed layer. */
static void direct_dd(const char *opts)
{
	tu_need_fuse();
	tu_backend("fuse"); /* odd-sized direct I/O is the daemon's; ext4 refuses it (EINVAL) */
	_cleanup_free_ char *ref = new_ref_on_base();
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, "-o", opts, NULL)));
	_cleanup_free_ char *want = tu_path(dirs.tmp, "want");
	_cleanup_free_ char *got = tu_path(dirs.tmp, "got");
	/* keep\n, then 3 pages at 8192, then 7 blocks of 1000 bytes from 5003 */
	cr_assert_eq(
	    tu_sh("set -e; cd '%s'; head -c 12288 /dev/urandom >pages;"
		  " head -c 7000 /dev/urandom >odd;"
		  " printf 'keep\\n' >want; dd if=pages of=want bs=4096 seek=2 conv=notrunc"
		  " status=none; dd if=odd of=want bs=1000 seek=5003 oflag=seek_bytes"
		  " conv=notrunc status=none",
		  dirs.tmp),
	    0);
	cr_assert_eq(tu_sh("set -e; cd '%s'; dd if=pages of='%s/data/keep' bs=4096 seek=2"
			   " oflag=direct conv=notrunc status=none;"
			   " dd if=odd of='%s/data/keep' bs=1000 seek=5003 oflag=direct,seek_bytes"
			   " conv=notrunc status=none",
			   dirs.tmp, mp, mp),
		     0);
	cr_assert_eq(
	    tu_sh("dd if='%s/data/keep' of='%s' bs=1000 iflag=direct status=none", mp, got), 0);
	cr_assert_eq(tu_sh("cmp '%s' '%s'", want, got), 0);
	cr_assert_eq(tu_sh("cmp '%s' '%s/data/keep'", want, mp), 0);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	_cleanup_free_ char *layer = tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "out", NULL));
	free(tu_ok(tu_lf(dirs.store, "mount", "out", mp, NULL)));
	cr_assert_eq(tu_sh("cmp '%s' '%s/data/keep'", want, mp), 0);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

Test(cli_mount, dd_with_o_direct_writes_and_reads_a_ref)
{
	direct_dd("writeback=1");
}

Test(cli_mount, dd_with_o_direct_writes_and_reads_a_ref_without_writeback)
{
	direct_dd("writeback=0");
}

/* S with each T replaced by the temporary directory T. */
static char *with_t(const char *s, const char *t)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	for (const char *p = s; *p; p++)
		if (*p == 'T')
			fputs(t, f);
		else
			fputc(*p, f);
	fclose(f);
	return out;
}

/* `layerfs overlay` with directories that overlap: exit 1, the two paths named, nothing
 * mounted (the mountpoint inside the upper used to hang its first lookup). */
Test(cli_mount, overlay_refuses_overlapping_directories)
{
	tu_need_fuse();
	_cleanup_free_ char *t = realpath(dirs.tmp, NULL);
	const char *made[] = {"l/u", "l/w", "u/m", "u/w", "w/work", "l2", "m"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(made); i++) {
		_cleanup_free_ char *p = tu_path(t, made[i]);
		cr_assert_eq(lyr_mkdir_p(p, 0755), 0);
	}
	static const struct {
		const char *lower, *upper, *work, *mp, *msg;
	} cases[] = {
	    {"l", "u", "w", "u/m",
	     "mountpoint 'T/u/m' is inside upper directory 'T/u' (the mount would serve its own "
	     "lookups)"},
	    {"l", "u", "w", "l/u",
	     "mountpoint 'T/l/u' is inside lower directory 'T/l' (the mount would serve its own "
	     "lookups)"},
	    {"l", "u", "w", "w/work",
	     "mountpoint 'T/w/work' is inside work directory 'T/w' (the mount would serve its own "
	     "lookups)"},
	    {"l", "l/u", "w", "m", "upper directory 'T/l/u' is inside lower directory 'T/l'"},
	    {"l", "u", "l/w", "m", "work directory 'T/l/w' is inside lower directory 'T/l'"},
	    {"l", "u", "u", "m", "upper directory 'T/u' is also the work directory"},
	    {"l", "u", "u/w", "m", "work directory 'T/u/w' is inside upper directory 'T/u'"},
	    {"u", "u/w", "w", "m", "upper directory 'T/u/w' is inside lower directory 'T/u'"},
	    {"w/work", "u", "w", "m", "lower directory 'T/w/work' is inside work directory 'T/w'"},
	    {"u/m", "u", "w", "m", "lower directory 'T/u/m' is inside upper directory 'T/u'"},
	    {"w", "u", "w", "m", "work directory 'T/w' is also a lower directory"},
	    {"l2:u", "u", "w", "m", "upper directory 'T/u' is also a lower directory"},
	    {"l:l2:l/w", "u", "w", "m", "lower directory 'T/l/w' is inside lower directory 'T/l'"},
	    {"l2:l", NULL, NULL, "l/u",
	     "mountpoint 'T/l/u' is inside lower directory 'T/l' (the mount would serve its own "
	     "lookups)"},
	    {"l:l", NULL, NULL, "m", "lower directory 'T/l' is given twice"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *opts = NULL, *lowers = strdup(cases[i].lower), *abs = NULL;
		/* each lower as T/NAME */
		char *list = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&list, &len);
		for (char *save, *l = strtok_r(lowers, ":", &save); l;
		     l = strtok_r(NULL, ":", &save))
			fprintf(f, "%s%s/%s", ftell(f) ? ":" : "", t, l);
		fclose(f);
		if (cases[i].upper)
			cr_assert(asprintf(&opts, "lowerdir=%s,upperdir=%s/%s,workdir=%s/%s", list,
					   t, cases[i].upper, t, cases[i].work) > 0);
		else
			cr_assert(asprintf(&opts, "lowerdir=%s", list) > 0);
		free(list);
		_cleanup_free_ char *mpath = tu_path(t, cases[i].mp);
		cr_assert_eq(lyr_mkdir_p(mpath, 0755), 0);
		const char *argv[] = {"overlay", "-o", opts, mpath, NULL};
		tu_run r = tu_layerfs(NULL, argv);
		_cleanup_free_ char *msg = with_t(cases[i].msg, t), *want = NULL;
		cr_assert(
		    asprintf(&want, "layerfs overlay: cannot mount at '%s': %s\n", mpath, msg) > 0);
		if (r.status == 0)
			umount2(mpath, MNT_DETACH);
		cr_assert_eq(r.status, 1, "case %zu: exit %d: %s", i, r.status, r.err);
		cr_assert_str_eq(r.err, want, "case %zu", i);
		tu_run_free(&r);
		cr_assert_eq(umount2(mpath, 0), -1, "case %zu: mounted anyway", i);
	}
}

/* A bind mount gives a directory a second path: T/lb is T/l.  Overlaps are judged by identity,
 * not by path (an upper reached through the alias used to mount and give EIO). */
Test(cli_mount, overlay_refuses_overlaps_through_a_bind_mount)
{
	tu_need_fuse();
	_cleanup_free_ char *t = realpath(dirs.tmp, NULL);
	const char *made[] = {"l/u/m", "lb", "u", "w", "m"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(made); i++) {
		_cleanup_free_ char *p = tu_path(t, made[i]);
		cr_assert_eq(lyr_mkdir_p(p, 0755), 0);
	}
	_cleanup_free_ char *l = tu_path(t, "l"), *lb = tu_path(t, "lb");
	if (mount(l, lb, NULL, MS_BIND, NULL) < 0)
		cr_skip_test("cannot bind-mount here: %s", strerror(errno));
	static const struct {
		const char *opts, *mp, *msg;
	} cases[] = {
	    {"lowerdir=T/l,upperdir=T/lb/u,workdir=T/w", "T/m",
	     "upper directory 'T/lb/u' is inside lower directory 'T/l'"},
	    {"lowerdir=T/lb,upperdir=T/u,workdir=T/l/u", "T/m",
	     "work directory 'T/l/u' is inside lower directory 'T/lb'"},
	    {"lowerdir=T/l:T/lb", "T/m",
	     "lower directory 'T/lb' is the same directory as lower directory 'T/l'"},
	    {"lowerdir=T/l,upperdir=T/u,workdir=T/w", "T/lb/u/m",
	     "mountpoint 'T/lb/u/m' is inside lower directory 'T/l' (the mount would serve its "
	     "own lookups)"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *opts = with_t(cases[i].opts, t);
		_cleanup_free_ char *at = with_t(cases[i].mp, t);
		_cleanup_free_ char *msg = with_t(cases[i].msg, t);
		const char *argv[] = {"overlay", "-o", opts, at, NULL};
		tu_run r = tu_layerfs(NULL, argv);
		if (r.status == 0)
			umount2(at, MNT_DETACH);
		_cleanup_free_ char *want = NULL;
		cr_assert(asprintf(&want, "layerfs overlay: cannot mount at '%s': %s\n", at, msg) >
			  0);
		cr_assert_eq(r.status, 1, "case %zu: exit %d: %s", i, r.status, r.err);
		cr_assert_str_eq(r.err, want, "case %zu", i);
		tu_run_free(&r);
	}
	/* the alias of a lower as the mountpoint is the usual idiom, as the lower itself is */
	_cleanup_free_ char *opts = with_t("lowerdir=T/l,upperdir=T/u,workdir=T/w", t);
	const char *argv[] = {"overlay", "-o", opts, lb, NULL};
	tu_run r = tu_layerfs(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	_cleanup_free_ char *seen = tu_path(lb, "u");
	struct stat st;
	cr_assert_eq(stat(seen, &st), 0);
	cr_assert_eq(umount2(lb, 0), 0);
	cr_assert_eq(umount2(lb, 0), 0);
}

/* A layer at the mountpoint (mount over the lower directory itself, as is usual with kernel
 * overlayfs) is fine: the daemon opened the layers before it mounted. */
Test(cli_mount, overlay_mounts_over_its_lower_directory)
{
	tu_need_fuse();
	_cleanup_free_ char *upper = NULL;
	_cleanup_free_ char *opts = overlay_opts(&upper);
	const char *argv[] = {"overlay", "-o", opts, dirs.src, NULL};
	tu_run r = tu_layerfs(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	tu_write(dirs.src, "etc/hostname", "changed\n");
	_cleanup_free_ char *keep = tu_read(dirs.src, "data/keep");
	cr_assert_str_eq(keep, "keep\n");
	cr_assert_eq(umount2(dirs.src, 0), 0);
	_cleanup_free_ char *up = tu_read(upper, "etc/hostname");
	cr_assert_str_eq(up, "changed\n");
	_cleanup_free_ char *low = tu_read(dirs.src, "etc/hostname");
	cr_assert_str_eq(low, "box\n");
}

/* The serving process of the mount at DIR, found by its command line (it ends with DIR). */
static pid_t server_of(const char *dir)
{
	_cleanup_free_ char *abs = realpath(dir, NULL);
	DIR *d = opendir("/proc");
	cr_assert_not_null(d);
	pid_t found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		pid_t pid = (pid_t)atoi(de->d_name);
		_cleanup_free_ char *path = NULL, *cmd = NULL;
		size_t len = 0;
		cr_assert(asprintf(&path, "/proc/%s/cmdline", de->d_name) > 0);
		if (pid <= 0 || pid == getpid() || lyr_read_file(path, &cmd, &len) < 0 || len < 2)
			continue;
		const char *last = cmd + len - 1;
		while (last > cmd && last[-1])
			last--;
		if (strcmp(last, dir) == 0 || strcmp(last, abs) == 0)
			found = pid;
	}
	closedir(d);
	cr_assert_gt(found, 0, "no process serves '%s'", dir);
	return found;
}

/* Kills PID, the server of the mount at DIR, and waits until the mount is dead (ENOTCONN). */
static void kill_server(pid_t pid, const char *dir)
{
	cr_assert_eq(kill(pid, SIGKILL), 0);
	struct stat st;
	for (int i = 0; i < 500 && (stat(dir, &st) == 0 || errno != ENOTCONN); i++)
		usleep(10000);
	cr_assert_eq(stat(dir, &st), -1);
	cr_assert_eq(errno, ENOTCONN);
}

/* How many mounts /proc/self/mountinfo has at MP (resolved). */
static int mounts_at(const char *abs)
{
	_cleanup_free_ char *info = NULL;
	cr_assert_eq(lyr_read_file("/proc/self/mountinfo", &info, NULL), 0);
	_cleanup_free_ char *needle = NULL;
	cr_assert(asprintf(&needle, " %s ", abs) > 0);
	int n = 0;
	for (const char *p = info; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* Runs ARGV, a command that mounts at mp (its last argument) and leaves a server behind, and
 * kills that server. */
static void mount_and_kill(const char *const *argv)
{
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	kill_server(server_of(mp), mp);
}

static pid_t mount_ref(const char *ref)
{
	_cleanup_free_ char *out = tu_ok(tu_lf(dirs.store, "--json", "mount", ref, mp, NULL));
	_cleanup_free_ char *pid = tu_json_field(out, "pid");
	return (pid_t)atoi(pid);
}

Test(cli_mount, a_mount_on_a_dead_layerfs_mount_clears_it_first)
{
	tu_need_fuse();
	tu_backend("fuse"); /* the serving process */
	_cleanup_free_ char *ref = new_ref_on_base();
	_cleanup_free_ char *abs = realpath(mp, NULL);
	kill_server(mount_ref(ref), mp);
	tu_run r = tu_lf(dirs.store, "mount", ref, mp, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: mount '%s': cleared the dead layerfs mount at '%s'\n",
			   ref, mp) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	cr_assert_eq(mounts_at(abs), 1, "the new mount is not stacked on the dead one");
	_cleanup_free_ char *keep = tu_read(mp, "data/keep");
	cr_assert_str_eq(keep, "keep\n");
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	cr_assert_eq(mounts_at(abs), 0);
	struct stat st;
	cr_assert_eq(stat(mp, &st), 0, "%s", strerror(errno));
}

Test(cli_mount, umount_of_a_dead_mount_unmounts_it_and_releases_the_ref)
{
	tu_need_fuse();
	tu_backend("fuse"); /* the serving process */
	_cleanup_free_ char *ref = new_ref_on_base();
	_cleanup_free_ char *abs = realpath(mp, NULL);
	kill_server(mount_ref(ref), mp);
	tu_run r = tu_lf(dirs.store, "umount", mp, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
	cr_assert_eq(mounts_at(abs), 0);
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
	cr_assert_not_null(strstr(info, "\"mountpoint\":null"), "%s", info);
	_cleanup_free_ char *layer = tu_ok(tu_lf(dirs.store, "commit", ref, NULL));
	cr_assert_eq(strncmp(layer, "sha256:", 7), 0);
	/* nothing is mounted there any more */
	tu_fails(tu_lf(dirs.store, "umount", mp, NULL), 1,
		 "layerfs: umount '%s': unmounting '%s': not a mountpoint\n", mp, abs);
}

Test(cli_mount, overlay_on_a_dead_layerfs_mount_clears_it_first)
{
	tu_need_fuse();
	_cleanup_free_ char *abs = realpath(mp, NULL);
	_cleanup_free_ char *lower = NULL;
	cr_assert(asprintf(&lower, "lowerdir=%s", dirs.src) > 0);
	const char *argv[] = {LAYERFS_BIN, "overlay", "-o", lower, abs, NULL};
	mount_and_kill(argv);
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(
	    asprintf(&want, "layerfs overlay: cleared the dead layerfs mount at '%s'\n", abs) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	cr_assert_eq(mounts_at(abs), 1);
	_cleanup_free_ char *keep = tu_read(mp, "data/keep");
	cr_assert_str_eq(keep, "keep\n");
	cr_assert_eq(umount2(mp, 0), 0);
}

/* R (freed here) failed (exit 1) saying "WHAT: mountpoint ..." about the dead fuse-overlayfs
 * mount at mp (ABS resolved). */
static void assert_refused_dead(tu_run r, const char *what, const char *abs)
{
	tu_fails(r, 1,
		 "%s: mountpoint '%s' is a dead fuse.fuse-overlayfs mount (its serving process is "
		 "gone): unmount it first with 'umount -l %s' or 'fusermount3 -u -z %s'\n",
		 what, mp, abs, abs);
}

Test(cli_mount, a_dead_mount_of_another_filesystem_is_refused_with_the_way_out)
{
	tu_need_fuse();
	if (access("/usr/bin/fuse-overlayfs", X_OK) != 0)
		cr_skip_test("needs fuse-overlayfs for a dead FUSE mount that is not layerfs'");
	_cleanup_free_ char *abs = realpath(mp, NULL);
	_cleanup_free_ char *lower = NULL;
	cr_assert(asprintf(&lower, "lowerdir=%s", dirs.src) > 0);
	const char *fo[] = {"/usr/bin/fuse-overlayfs", "-o", lower, abs, NULL};
	mount_and_kill(fo);
	_cleanup_free_ char *ref = new_ref_on_base();
	tu_run r = tu_lf(dirs.store, "mount", ref, mp, NULL);
	_cleanup_free_ char *what = NULL;
	cr_assert(asprintf(&what, "layerfs: mount '%s'", ref) > 0);
	assert_refused_dead(r, what, abs);
	cr_assert_eq(mounts_at(abs), 1, "the dead mount is left alone");
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "inspect", "--json", ref, NULL));
	cr_assert_not_null(strstr(info, "\"mountpoint\":null"), "%s", info);
	const char *argv[] = {"overlay", "-o", lower, mp, NULL};
	r = tu_layerfs(NULL, argv);
	free(what);
	cr_assert(asprintf(&what, "layerfs overlay: cannot mount at '%s'", mp) > 0);
	assert_refused_dead(r, what, abs);
	cr_assert_eq(umount2(mp, MNT_DETACH), 0);
}

/* What a ref's mount showed of REL's times, against the upper after umount, the committed layer
 * and a read-only mount of that layer: one value everywhere, to the nanosecond. */
static void check_times_survive_commit(const char *wb_option)
{
	tu_need_fuse();
	_cleanup_free_ char *ref = new_ref_on_base();
	free(tu_ok(tu_lf(dirs.store, "mount", "-o", wb_option, ref, mp, NULL)));
	const char *names[] = {"etc/hostname", "etc/new", "data/keep"};
	struct stat shown[3];
	for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = tu_path(mp, names[i]);
		int fd = open(p, O_WRONLY | O_CREAT | (i == 2 ? O_APPEND : O_TRUNC), 0644);
		cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
		cr_assert_eq(write(fd, "ccc\n", 4), 4);
		cr_assert_eq(close(fd), 0);
	}
	for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = tu_path(mp, names[i]);
		cr_assert_eq(stat(p, &shown[i]), 0);
	}
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	_cleanup_free_ char *id = tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "v1", NULL));
	id[strcspn(id, "\n")] = '\0';
	_cleanup_free_ char *diff = NULL;
	cr_assert(asprintf(&diff, "%s/layers/%s/diff", dirs.store, id + strlen("sha256:")) > 0);
	free(tu_ok(tu_lf(dirs.store, "mount", "v1", mp, NULL)));
	const char *where[] = {diff, mp};
	for (size_t w = 0; w < LYR_ARRAY_SIZE(where); w++) {
		for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++) {
			_cleanup_free_ char *p = tu_path(where[w], names[i]);
			struct stat st;
			cr_assert_eq(stat(p, &st), 0, "%s: %s", p, strerror(errno));
			cr_assert(st.st_mtim.tv_sec == shown[i].st_mtim.tv_sec &&
				      st.st_mtim.tv_nsec == shown[i].st_mtim.tv_nsec,
				  "%s: mtime %lld.%09ld, shown %lld.%09ld", p,
				  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
				  (long long)shown[i].st_mtim.tv_sec, shown[i].st_mtim.tv_nsec);
			cr_assert(st.st_atim.tv_sec == shown[i].st_atim.tv_sec &&
				      st.st_atim.tv_nsec == shown[i].st_atim.tv_nsec,
				  "%s: atime differs from the one shown", p);
		}
	}
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

Test(cli_mount, times_shown_are_the_times_committed_with_the_writeback_cache)
{
	check_times_survive_commit("writeback=1");
}

Test(cli_mount, times_shown_are_the_times_committed_without_the_writeback_cache)
{
	check_times_survive_commit("writeback=0");
}

Test(cli_mount, strictatime_is_refused_with_the_reason)
{
	_cleanup_free_ char *ref = new_ref_on_base();
	tu_run r = tu_lf(dirs.store, "mount", "-o", "strictatime", ref, mp, NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err,
			 "layerfs mount: -o strictatime: option strictatime is not supported: "
			 "reads served from the kernel's page cache never reach the daemon, so "
			 "atime moves only when a file is opened (relatime's rule, the default) "
			 "or never (noatime)\nTry 'layerfs mount --help'.\n");
	tu_run_free(&r);
}
