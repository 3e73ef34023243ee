/* Entry points: lyr_fs_mount in the foreground (serving until unmounted, then freeing
 * everything), lyr_fs_umount, and the fuse-overlayfs-compatible command line with its option
 * grammar and mount(8)'s helper convention.  Needs /dev/fuse; skips otherwise. */
#include <linux/capability.h>
#include <sched.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>

#include "mnt.h"

static void dirs_only(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	tu_write(M.l1, "top", "T");
	tu_write(M.l2, "bottom", "B");
}

extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Sanitizer builds: the test runner itself (libcriterion) sometimes leaks one 48-byte block when
 * workers that fork and run threads finish together; that is not ours to fix or to fail on.  Any
 * leak in layerfs code is still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libcriterion.so\n";
}

TestSuite(fs_mount, .init = dirs_only, .fini = mnt_teardown, .timeout = 60);

static void ready(void *ctx, pid_t pid)
{
	int fd = *(int *)ctx;
	cr_assert_eq(write(fd, &pid, sizeof(pid)), (ssize_t)sizeof(pid));
	close(fd);
}

Test(fs_mount, foreground_mount_serves_until_unmounted_and_exits_cleanly)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(p[0]);
		lyr_fs_config cfg;
		mnt_config(&cfg);
		cfg.foreground = true;
		cfg.ready = ready;
		cfg.ready_ctx = &p[1];
		lyr_fs_error err;
		pid_t pid = 0;
		int r = lyr_fs_mount(&cfg, M.mp, &err, &pid);
		/* everything the mount allocated must be freed by now: in sanitizer builds, check
		 * (not through exit(), which would run the test runner's exit hooks in this copy)
		 */
		int leaks =
		    __lsan_do_recoverable_leak_check ? __lsan_do_recoverable_leak_check() : 0;
		_exit(r == 0 && pid == getpid() && !leaks ? 0 : 1);
	}
	close(p[1]);
	pid_t served = 0;
	cr_assert_eq(read(p[0], &served, sizeof(served)), (ssize_t)sizeof(served));
	close(p[0]);
	cr_assert_eq(served, child);
	/* some work for the inode table: lookups, copy-up, rename, unlink, readdir */
	_cleanup_free_ char *t = slurp(MP("top"));
	cr_assert_str_eq(t, "T");
	put(MP("bottom"), "B2");
	cr_assert_eq(rename(MP("top"), MP("top2")), 0);
	cr_assert_eq(unlink(MP("bottom")), 0);
	cr_assert_eq(mkdir(MP("d"), 0755), 0);
	DIR *d = opendir(M.mp);
	cr_assert_not_null(d);
	while (readdir(d))
		;
	closedir(d);
	lyr_fs_error err;
	cr_assert_eq(lyr_fs_umount(M.mp, 0, &err), 0, "%s", err.msg);
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0);
}

Test(fs_mount, mount_failures_name_the_cause)
{
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	const char *lowers[] = {M.l1, "/nonexistent/layer"};
	cfg.lowers = lowers;
	cfg.nlowers = 2;
	lyr_fs_error err;
	pid_t pid;
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &pid), -ENOENT);
	cr_assert_str_eq(err.msg,
			 "lower directory '/nonexistent/layer': No such file or directory");
	cfg.nlowers = 1;
	cfg.upper = M.upper;
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &pid), -EINVAL);
	cfg.work = "/dev/shm";
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &pid), -EXDEV);
	cr_assert_eq(lyr_fs_mount(&cfg, "/nonexistent/mnt", &err, &pid), -ENOENT);
	cfg.work = M.work;
	cfg.upper = M.l1;
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &pid), -EINVAL);
	cr_assert(strstr(err.msg, "is also a lower directory"), "%s", err.msg);
	cr_assert_eq(lyr_fs_umount(M.mp, 0, &err), -EINVAL);
}

/* Runs lyr_fs_overlay_main with ARGV, capturing stderr into *ERR_OUT (heap). */
static int overlay(char **err_out, const char *const *argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	char path[] = "/tmp/layerfs-stderr-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	int status = lyr_fs_overlay_main(argc, (char **)argv);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);
	cr_assert_eq(pread(fd, buf, (size_t)len, 0), len);
	close(fd);
	*err_out = buf;
	return status;
}

static void unmount_and_reap(void)
{
	lyr_fs_error err;
	cr_assert_eq(lyr_fs_umount(M.mp, 0, &err), 0, "%s", err.msg);
	while (waitpid(-1, NULL, 0) > 0)
		;
}

Test(fs_mount, overlay_command_accepts_the_fuse_overlayfs_grammar)
{
	/* a lower dir with a colon in its name, given relative to the working directory */
	cr_assert_eq(chdir(M.root), 0);
	cr_assert_eq(rename("l1", "l:1"), 0);
	char opts[8192];
	snprintf(opts, sizeof(opts),
		 "lowerdir=l\\:1:%s,upperdir=upper,workdir=work,,context=\"system_u:object_r:"
		 "container_file_t:s0:c1,c2\",uidmapping=:0:0:4294967295,gidmapping=0:0:4294967295,"
		 "xattr_permissions=0,fsync=0,static_nlink,noacl,timeout=5,threaded=1,writeback=1,"
		 "nodev,noatime,redirect_dir=on,index=off,",
		 M.l2);
	const char *argv[] = {"layerfs overlay", "-o", opts, "mnt", NULL};
	_cleanup_free_ char *err = NULL;
	cr_assert_eq(overlay(&err, argv), 0, "stderr: %s", err);
	cr_assert_str_eq(err,
			 "layerfs overlay: ignoring unknown options: redirect_dir=on,index=off\n");
	_cleanup_free_ char *t = slurp(MP("top"));
	cr_assert_str_eq(t, "T");
	_cleanup_free_ char *b = slurp(MP("bottom"));
	cr_assert_str_eq(b, "B");
	put(MP("new"), "N");
	struct stat st;
	cr_assert_eq(stat(MP("."), &st), 0);
	cr_assert_eq(st.st_nlink, 1); /* static_nlink */
	unmount_and_reap();
	_cleanup_free_ char *n = slurp(UP("new"));
	cr_assert_str_eq(n, "N");
}

Test(fs_mount, mount_helper_convention_is_understood)
{
	char opts[8192];
	snprintf(opts, sizeof(opts), "rw,lowerdir=%s:%s", M.l1, M.l2);
	const char *argv[] = {"/sbin/mount.fuse.layerfs", "none", M.mp, "-o", opts, NULL};
	_cleanup_free_ char *err = NULL;
	cr_assert_eq(overlay(&err, argv), 0, "stderr: %s", err);
	cr_assert_str_eq(err, "");
	_cleanup_free_ char *t = slurp(MP("top"));
	cr_assert_str_eq(t, "T");
	/* no upperdir: read-only */
	cr_assert_eq(open(MP("top"), O_WRONLY), -1);
	cr_assert_eq(errno, EROFS);
	unmount_and_reap();
}

Test(fs_mount, overlay_command_usage_errors)
{
	_cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL;
	const char *help[] = {"layerfs overlay", "--help", NULL};
	cr_assert_eq(overlay(&e1, help), 0);
	const char *none[] = {"layerfs overlay", NULL};
	cr_assert_eq(overlay(&e2, none), 2);
	const char *nolower[] = {"layerfs overlay", "-o", "upperdir=/tmp", M.mp, NULL};
	cr_assert_eq(overlay(&e3, nolower), 2);
	cr_assert_str_eq(e3, "layerfs overlay: no lowerdir given\n");
	const char *badmap[] = {"layerfs overlay", "-o", "lowerdir=/tmp,uidmapping=1:2", M.mp,
				NULL};
	cr_assert_eq(overlay(&e4, badmap), 2);
	cr_assert_str_eq(
	    e4, "layerfs overlay: option uidmapping=1:2: expected C:H:S triplets of numbers\n");
	const char *missing[] = {"layerfs overlay", "-o", "lowerdir=/nonexistent", M.mp, NULL};
	cr_assert_eq(overlay(&e5, missing), 1);
	cr_assert_str_eq(
	    e5, "layerfs overlay: lower directory '/nonexistent': No such file or directory\n");
}

/* An option that needs a value and has none (or an empty one) is named with what it needs. */
Test(fs_mount, options_without_their_value_are_usage_errors)
{
	static const struct {
		const char *opts, *msg;
	} cases[] = {
	    {"lowerdir", "option lowerdir needs directories (lowerdir=A[:B...])"},
	    {"lowerdir=", "option lowerdir needs directories (lowerdir=A[:B...])"},
	    {"lowerdir=/tmp,upperdir", "option upperdir needs a directory"},
	    {"lowerdir=/tmp,uidmapping",
	     "option uidmapping needs mappings (uidmapping=C:H:S[:C:H:S...])"},
	    {"lowerdir=/tmp,uidmapping=:",
	     "option uidmapping needs mappings (uidmapping=C:H:S[:C:H:S...])"},
	    {"lowerdir=/tmp,gidmapping=",
	     "option gidmapping needs mappings (gidmapping=C:H:S[:C:H:S...])"},
	    {"lowerdir=/tmp,squash_to_uid", "option squash_to_uid needs a non-negative number"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		const char *argv[] = {"layerfs overlay", "-o", cases[i].opts, "/nonexistent", NULL};
		_cleanup_free_ char *err = NULL, *want = NULL;
		cr_assert_eq(overlay(&err, argv), 2, "%s: %s", cases[i].opts, err);
		cr_assert(asprintf(&want, "layerfs overlay: %s\n", cases[i].msg) > 0);
		cr_assert_str_eq(err, want);
	}
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static bool has_xattr(const char *path, const char *name)
{
	return lgetxattr(path, name, NULL, 0) >= 0;
}

/* In a child: enters a new user namespace (uid and gid 0 mapped to themselves) and a private
 * mount namespace.  Returns 0, or 100, 101 or 102 for the step that is not available here. */
static int enter_userns(void)
{
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return 100;
	if (write_file("/proc/self/setgroups", "deny") < 0 ||
	    write_file("/proc/self/uid_map", "0 0 1") < 0 ||
	    write_file("/proc/self/gid_map", "0 0 1") < 0)
		return 101;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 102;
	return 0;
}

/* Runs in a child inside a new user namespace: mounts, changes things, checks the upper.
 * Returns 0 or the number of the first check that failed. */
static int userns_run(void)
{
	int step = enter_userns();
	if (step)
		return step;
	lyr_fs_config cfg;
	mnt_config(&cfg);
	lyr_fs_error err;
	pid_t pid;
	if (lyr_fs_mount(&cfg, M.mp, &err, &pid) < 0)
		return 103;
	int fail = 0;
	char up[4096];
	struct stat st;
	if (unlink(MP("bottom")) < 0)
		fail = 1;
	snprintf(up, sizeof(up), "%s/bottom", M.upper);
	if (!fail && (lstat(up, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != 0))
		fail = 2;
	if (!fail && mkdir(MP("bottom"), 0755) < 0)
		fail = 3;
	if (!fail &&
	    (!has_xattr(up, "user.overlay.opaque") || has_xattr(up, "trusted.overlay.opaque")))
		fail = 4;
	if (!fail && chmod(MP("top"), 0600) < 0)
		fail = 5;
	snprintf(up, sizeof(up), "%s/top", M.upper);
	if (!fail && !has_xattr(up, "user.overlay.metacopy"))
		fail = 6;
	if (!fail && rename(MP("ldir"), MP("moved")) < 0)
		fail = 7;
	snprintf(up, sizeof(up), "%s/moved", M.upper);
	if (!fail && !has_xattr(up, "user.overlay.redirect"))
		fail = 8;
	if (!fail) {
		char *c = slurp(MP("moved/inner"));
		if (!c || strcmp(c, "I") != 0)
			fail = 9;
		free(c);
	}
	if (lyr_fs_umount(M.mp, pid, &err) < 0 && !fail)
		fail = 10;
	return fail;
}

Test(fs_mount, inside_a_user_namespace_markers_use_the_user_xattr_namespace)
{
	tu_write(M.l2, "ldir/inner", "I");
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0)
		_exit(userns_run());
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st));
	if (WEXITSTATUS(st) >= 100 && WEXITSTATUS(st) <= 102)
		cr_skip_test("user namespaces are not available here (step %d)", WEXITSTATUS(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "check %d failed", WEXITSTATUS(st));
}

Test(fs_mount, option_strings_parse_into_a_config)
{
	lyr_fs_options *o;
	cr_assert_eq(lyr_fs_options_new(&o), 0);
	cr_assert_eq(lyr_fs_options_parse(o, "writeback=1,timeout=2.5,uidmapping=0:1000:1,,"
					     "allow_other,ro,context=\"a,b\",squash_to_gid=7"),
		     0, "%s", lyr_fs_options_error(o));
	cr_assert_not(lyr_fs_options_has_dirs(o));
	lyr_fs_config *cfg = lyr_fs_options_config(o);
	cr_assert(cfg->writeback);
	cr_assert_float_eq(cfg->timeout, 2.5, 1e-9);
	cr_assert_eq(cfg->nuidmap, 1);
	cr_assert_eq(cfg->uidmap[0].outer, 1000);
	cr_assert(cfg->allow_other);
	cr_assert(cfg->read_only);
	cr_assert_str_eq(cfg->context, "a,b");
	cr_assert_eq(cfg->squash_to_gid, 7);
	cr_assert_eq(lyr_fs_options_parse(o, "index=on,noacl"), 0);
	cr_assert_str_eq(lyr_fs_options_unknown(o), "index=on");
	cr_assert(lyr_fs_options_config(o)->noacl);
	cr_assert_eq(lyr_fs_options_parse(o, "timeout=x"), -EINVAL);
	cr_assert_str_eq(lyr_fs_options_error(o), "option timeout needs a number of seconds");
	cr_assert_eq(lyr_fs_options_parse(o, "lowerdir=/tmp"), 0);
	cr_assert(lyr_fs_options_has_dirs(o));
	lyr_fs_options_free(o);
}

Test(fs_mount, five_hundred_lower_layers)
{
	char **dirs = calloc(500, sizeof(char *));
	for (int i = 0; i < 500; i++) {
		char name[32];
		snprintf(name, sizeof(name), "layer%03d", i);
		dirs[i] = tu_path(M.root, name);
		cr_assert_eq(mkdir(dirs[i], 0755), 0);
	}
	tu_write(dirs[499], "deep/bottom", "from the lowest");
	tu_write(dirs[0], "deep/top", "from the topmost");
	cr_assert_eq(lyr_mkdir_p(in_dir(dirs[250], "deep"), 0755), 0);
	mk_whiteout(dirs[250], "deep/gone");
	tu_write(dirs[400], "deep/gone", "hidden");
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	cfg.lowers = (const char *const *)dirs;
	cfg.nlowers = 500;
	cfg.upper = M.upper;
	cfg.work = M.work;
	lyr_fs_error err;
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &M.pid), 0, "%s", err.msg);
	M.mounted = true;
	_cleanup_free_ char *b = slurp(MP("deep/bottom"));
	cr_assert_str_eq(b, "from the lowest");
	_cleanup_free_ char *t = slurp(MP("deep/top"));
	cr_assert_str_eq(t, "from the topmost");
	struct stat st;
	cr_assert_eq(lstat(MP("deep/gone"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	put(MP("deep/bottom"), "changed");
	_cleanup_free_ char *c = slurp(UP("deep/bottom"));
	cr_assert_str_eq(c, "changed");
	cfg.nlowers = 501;
	mnt_umount();
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &M.pid), -EINVAL);
	for (int i = 0; i < 500; i++)
		free(dirs[i]);
	free(dirs);
}

/* In a user namespace, without CAP_DAC_OVERRIDE: a write to a file in a directory that is
 * read-only to its owner copies both up, and the directory stays read-only. */
static int no_dac_run(void)
{
	int step = enter_userns();
	if (step)
		return step;
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return 103;
	unsigned drop = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
	data[0].effective &= ~drop;
	data[0].permitted &= ~drop;
	data[0].inheritable &= ~drop;
	if (syscall(SYS_capset, &hdr, data) < 0)
		return 104;
	lyr_fs_config cfg;
	mnt_config(&cfg);
	lyr_fs_error err;
	pid_t pid;
	if (lyr_fs_mount(&cfg, M.mp, &err, &pid) < 0)
		return 1;
	int fail = 0;
	int fd = open(MP("rodir/f"), O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "y", 1) != 1)
		fail = 2;
	if (fd >= 0)
		close(fd);
	char *c = slurp(MP("rodir/f"));
	if (!fail && (!c || strcmp(c, "xy") != 0))
		fail = 3;
	free(c);
	char up[4096];
	snprintf(up, sizeof(up), "%s/rodir", M.upper);
	struct stat st;
	if (!fail && (lstat(up, &st) < 0 || (st.st_mode & 07777) != 0555))
		fail = 4;
	if (!fail && chmod(MP("rodir/g"), 0600) < 0)
		fail = 5;
	if (lyr_fs_umount(M.mp, pid, &err) < 0 && !fail)
		fail = 6;
	return fail;
}

Test(fs_mount, read_only_directories_take_copies_without_dac_override)
{
	tu_write(M.l1, "rodir/f", "x");
	tu_write(M.l1, "rodir/g", "g");
	cr_assert_eq(chmod(in_dir(M.l1, "rodir/f"), 0666), 0);
	cr_assert_eq(chmod(in_dir(M.l1, "rodir"), 0555), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0)
		_exit(no_dac_run());
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st));
	if (WEXITSTATUS(st) >= 100)
		cr_skip_test("user namespaces or capabilities are not available here (step %d)",
			     WEXITSTATUS(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "check %d failed", WEXITSTATUS(st));
}

Test(fs_mount, an_upper_alone_is_a_scratch_tree)
{
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	cfg.upper = M.upper;
	cfg.work = M.work;
	lyr_fs_error err;
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &M.pid), 0, "%s", err.msg);
	M.mounted = true;
	put(MP("new"), "n");
	cr_assert_eq(mkdir(MP("d"), 0755), 0);
	cr_assert_eq(rename(MP("new"), MP("d/moved")), 0);
	_cleanup_free_ char *c = slurp(UP("d/moved"));
	cr_assert_str_eq(c, "n");
	cr_assert_eq(unlink(MP("d/moved")), 0);
	struct stat st;
	cr_assert_eq(lstat(UP("d/moved"), &st), -1, "no whiteout without lowers");
}
