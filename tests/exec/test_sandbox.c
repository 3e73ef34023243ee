/* The sandbox over a busybox root.  Needs root (CI runs as root); each test builds its own
 * root directory from Debian's busybox-static and runs lyr_exec_sandbox_run in a forked child
 * whose stdout and stderr go to files. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "layerfs/exec.h"
#include "testutil.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *const applets[] = {
    "sh",    "cat", "echo", "id",   "ls",  "true",     "false", "sleep", "hostname", "mkdir",
    "touch", "env", "dd",   "kill", "pwd", "readlink", "mknod", "wc",	 "chmod",    "chown"};

static void need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (namespaces, mounts)");
	tu_need_busybox();
}

/* A root directory: /bin/busybox with applet links, /etc/passwd and /etc/group. */
static char *make_root(void)
{
	char *root = tu_mkdtemp();
	tu_busybox_root(
	    root, applets, LYR_ARRAY_SIZE(applets),
	    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n",
	    "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\n");
	return root;
}

typedef struct result {
	int r;
	int status;
	char msg[512];
	char *out, *err;
} result;

static void result_free(result *res)
{
	free(res->out);
	free(res->err);
}

/* In a forked child: runs SB and writes its result to WFD, then exits. */
static _Noreturn void run_and_report(const lyr_sandbox *sb, int wfd)
{
	result res = {0};
	lyr_exec_error err = {{0}};
	res.r = lyr_exec_sandbox_run(sb, &res.status, &err);
	memcpy(res.msg, err.msg, sizeof res.msg);
	(void)!write(wfd, &res, sizeof res);
	_exit(0);
}

/* The result run_and_report wrote to RFD (which is closed). */
static result read_report(int rfd)
{
	result res = {0};
	cr_assert_eq(read(rfd, &res, sizeof res), (ssize_t)sizeof res, "runner died");
	close(rfd);
	return res;
}

/* Runs SB in a child with stdout/stderr captured; STDIN_DATA (may be NULL) feeds its stdin.
 * When READY (a host path) is given, the child gets signal SIG as soon as that file exists. */
static result run_sig(const lyr_sandbox *sb, const char *stdin_data, const char *ready, int sig)
{
	char *dir = tu_mkdtemp();
	_cleanup_free_ char *outp = tu_path(dir, "out"), *errp = tu_path(dir, "err");
	int pfd[2], in[2];
	cr_assert_eq(pipe(pfd), 0);
	cr_assert_eq(pipe(in), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(o, 1);
		dup2(e, 2);
		dup2(in[0], 0);
		close(in[1]);
		run_and_report(sb, pfd[1]);
	}
	close(pfd[1]);
	close(in[0]);
	if (stdin_data)
		(void)!write(in[1], stdin_data, strlen(stdin_data));
	close(in[1]);
	if (ready) {
		for (int i = 0; i < 1000 && access(ready, F_OK) != 0; i++)
			usleep(10000);
		cr_assert_eq(access(ready, F_OK), 0, "the command never got ready");
		kill(pid, sig);
	}
	result res = read_report(pfd[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	res.out = tu_read(dir, "out");
	res.err = tu_read(dir, "err");
	tu_rmtree(dir);
	free(dir);
	return res;
}

static result run_ex(const lyr_sandbox *sb, const char *stdin_data, const char *ready)
{
	return run_sig(sb, stdin_data, ready, SIGTERM);
}

static result run(const lyr_sandbox *sb)
{
	return run_ex(sb, NULL, NULL);
}

/* Runs SB and asserts that the command exits with STATUS, printing exactly OUT, and exactly
 * ERR on stderr unless ERR is NULL. */
static void expect_run(const lyr_sandbox *sb, int status, const char *out, const char *err)
{
	result res = run(sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, status, "%s", res.err);
	cr_assert_str_eq(res.out, out);
	if (err)
		cr_assert_str_eq(res.err, err);
	result_free(&res);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(exec_sandbox, command_is_a_child_of_pid_1_and_sees_no_host_process)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("ls", "/proc")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	char pids[64] = "";
	char *save = NULL;
	for (char *t = strtok_r(res.out, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
		if (strspn(t, "0123456789") == strlen(t)) {
			strcat(pids, t);
			strcat(pids, " ");
		}
	cr_assert_str_eq(pids, "1 2 ");
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, root_gets_the_default_capabilities_and_no_new_privs)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("cat", "/proc/self/status")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_not_null(strstr(res.out, "\nCapInh:\t0000000000000000\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapPrm:\t00000000a80425fb\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapEff:\t00000000a80425fb\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapBnd:\t00000000a80425fb\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapAmb:\t0000000000000000\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nNoNewPrivs:\t1\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nUid:\t0\t0\t0\t0\n"), "%s", res.out);
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, numeric_user_and_group_run_as_that_user_without_capabilities)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root,
			  .user = "1000:1000",
			  .args = ARGS("sh", "-c", "id -u; id -g; id -G; cat /proc/self/status")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_eq(strncmp(res.out, "1000\n1000\n1000 10\n", 18), 0, "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapPrm:\t0000000000000000\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapEff:\t0000000000000000\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nCapBnd:\t00000000a80425fb\n"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, "\nNoNewPrivs:\t1\n"), "%s", res.out);
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, user_name_is_looked_up_in_the_roots_passwd_and_group)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {
	    .rootfs = root, .user = "alice:wheel", .args = ARGS("sh", "-c", "id -u; id -g; id -G")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "1000\n10\n10\n");
	result_free(&res);

	sb.user = "mallory";
	res = run(&sb);
	cr_assert_eq(res.r, -ENOENT);
	cr_assert_str_eq(res.msg, "user 'mallory': no such user in the root's /etc/passwd");
	result_free(&res);
	tu_rmtree(root);
}

/* The init looks the user up as root with every capability: what a layer puts at
 * /etc/passwd or /etc/group must not make it block (a FIFO), spin (/dev/zero) or read a
 * kernel interface (/proc/kmsg consumes the host's kernel log). */
Test(exec_sandbox, user_files_that_are_not_regular_files_are_refused, .timeout = 60)
{
	need_root();
	static const struct {
		const char *file, *link, *user;
	} cases[] = {
	    {"etc/passwd", "/proc/self/status", NULL},
	    {"etc/passwd", "/dev/zero", "alice"},
	    {"etc/group", "/proc/self/environ", "alice"},
	    {"etc/group", NULL, "0:wheel"}, /* a FIFO */
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *root = make_root();
		_cleanup_free_ char *f = tu_path(root, cases[i].file);
		cr_assert_eq(unlink(f), 0);
		if (cases[i].link)
			cr_assert_eq(symlink(cases[i].link, f), 0);
		else
			cr_assert_eq(mkfifo(f, 0644), 0);
		lyr_sandbox sb = {.rootfs = root, .user = cases[i].user, .args = ARGS("true")};
		result res = run(&sb);
		char want[256];
		snprintf(want, sizeof want,
			 "user '%s': '/%s' is not a regular file of at most 64 MiB",
			 cases[i].user ? cases[i].user : "0", cases[i].file);
		cr_assert_eq(res.r, -EINVAL, "case %zu: %d %s", i, res.r, res.msg);
		cr_assert_str_eq(res.msg, want);
		result_free(&res);
		tu_rmtree(root);
	}
}

Test(exec_sandbox, exit_codes_propagate_like_docker_run)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	tu_write(root, "bin/notexec", "#!/bin/sh\necho never\n");
	_cleanup_free_ char *ne = tu_path(root, "bin/notexec");
	chmod(ne, 0644);
	struct {
		const char *const *args;
		int status;
	} cases[] = {
	    {ARGS("true"), 0},
	    {ARGS("false"), 1},
	    {ARGS("sh", "-c", "exit 3"), 3},
	    {ARGS("/bin/notexec"), 126},
	    {ARGS("notexec"), 126},
	    {ARGS("/bin/nosuch"), 127},
	    {ARGS("nosuch"), 127},
	    {ARGS("sh", "-c", "kill -9 $$"), 128 + 9},
	    {ARGS("sh", "-c", "kill -TERM $$"), 128 + 15},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		lyr_sandbox sb = {.rootfs = root, .args = cases[i].args};
		result res = run(&sb);
		cr_assert_eq(res.r, 0, "%s", res.msg);
		cr_assert_eq(res.status, cases[i].status, "%s: %d (%s)", cases[i].args[0],
			     res.status, res.err);
		if (cases[i].status == 127)
			cr_assert_not_null(strstr(res.err, "layerfs: exec '"), "%s", res.err);
		result_free(&res);
	}
	tu_rmtree(root);
}

Test(exec_sandbox, mount_through_a_symlink_to_etc_lands_inside_the_root)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *src = tu_mkdtemp();
	char name[64], target[96], host[96], inside[256];
	snprintf(name, sizeof name, "layerfs-evil-%d", (int)getpid());
	snprintf(target, sizeof target, "/evil/%s", name);
	snprintf(host, sizeof host, "/etc/%s", name);
	snprintf(inside, sizeof inside, "echo hi > %s/f && cat /etc/%s/f", target, name);
	cr_assert_eq(access(host, F_OK), -1);
	_cleanup_free_ char *evil = tu_path(root, "evil");
	cr_assert_eq(symlink("/etc", evil), 0);

	lyr_sandbox_mount m = {.type = LYR_MOUNT_BIND, .target = target, .source = src};
	lyr_sandbox sb = {
	    .rootfs = root, .mounts = &m, .n_mounts = 1, .args = ARGS("sh", "-c", inside)};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "hi\n");
	_cleanup_free_ char *f = tu_read(src, "f");
	cr_assert_str_eq(f, "hi\n");
	cr_assert_eq(access(host, F_OK), -1, "the host's /etc was touched");
	_cleanup_free_ char *made = tu_path(root, host + 1);
	cr_assert_eq(access(made, F_OK), -1, "the directory made for the mount is left over");
	result_free(&res);
	tu_rmtree(src);
	tu_rmtree(root);
}

Test(exec_sandbox, a_target_that_leads_back_to_the_root_is_refused_like_slash)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *tmp = tu_path(root, "tmp"), *up = tu_path(root, "up");
	cr_assert_eq(symlink("/", tmp), 0);
	cr_assert_eq(symlink("etc/..", up), 0);
	static const char *const targets[] = {"/tmp", "/up"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(targets); i++) {
		lyr_sandbox_mount m = {.type = LYR_MOUNT_TMPFS, .target = targets[i]};
		lyr_sandbox sb = {
		    .rootfs = root, .mounts = &m, .n_mounts = 1, .args = ARGS("true")};
		result res = run(&sb);
		char want[128];
		snprintf(want, sizeof want,
			 "mount target '%s': resolves to '/' inside the root, not below it",
			 targets[i]);
		cr_assert_eq(res.r, -EINVAL, "%s: %d %s", targets[i], res.r, res.msg);
		cr_assert_str_eq(res.msg, want);
		result_free(&res);
	}
	_cleanup_free_ char *bin = tu_path(root, "bin/busybox");
	cr_assert_eq(access(bin, X_OK), 0, "the root was covered");
	tu_rmtree(root);
}

/* /proc and /dev are the sandbox's: a mount there would cover the masks and the read-only
 * sysctls, or replace /dev/null, which the command's process opens for its stdin while it
 * still holds every capability (a layer's /dev/null -> /proc/kmsg would read the host's
 * kernel log).  A layer's symlink must not lead a mount there either. */
Test(exec_sandbox, a_target_on_or_below_proc_or_dev_is_refused)
{
	need_root();
	static const struct {
		const char *target, *link, *dest, *where;
	} cases[] = {
	    {"/work", "work", "/dev", "/dev"}, {"/data/x", "data", "../proc/sys", "/proc"},
	    {"/n", "n", "/dev/null", "/dev"},  {"/proc/sys/kernel", NULL, NULL, "/proc"},
	    {"/dev/shm", NULL, NULL, "/dev"},  {"/proc", NULL, NULL, "/proc"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *root = make_root();
		if (cases[i].link) {
			_cleanup_free_ char *l = tu_path(root, cases[i].link);
			cr_assert_eq(symlink(cases[i].dest, l), 0);
		}
		/* "/n -> /dev/null" takes a file: bind one */
		_cleanup_free_ char *src = tu_path(root, "src-file");
		tu_write(root, "src-file", "x");
		bool file = strcmp(cases[i].target, "/n") == 0;
		lyr_sandbox_mount m = {.type = file ? LYR_MOUNT_BIND : LYR_MOUNT_TMPFS,
				       .target = cases[i].target,
				       .source = file ? src : NULL};
		lyr_sandbox sb = {
		    .rootfs = root, .mounts = &m, .n_mounts = 1, .args = ARGS("ls", "/dev")};
		result res = run(&sb);
		char want[256];
		snprintf(want, sizeof want,
			 "mount target '%s': on or below the sandbox's %s, which no mount may "
			 "cover",
			 cases[i].target, cases[i].where);
		cr_assert_eq(res.r, -EINVAL, "case %zu: %d %s %s", i, res.r, res.msg, res.out);
		cr_assert_str_eq(res.msg, want);
		result_free(&res);
		tu_rmtree(root);
	}
}

Test(exec_sandbox, targets_through_dotdot_survive_a_rename_storm)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *storm = tu_mkdtemp();
	_cleanup_free_ char *a = tu_path(storm, "a"), *b = tu_path(storm, "b");
	_cleanup_free_ char *deep = tu_path(root, "d/e/f"), *link = tu_path(root, "l");
	cr_assert_eq(mkdir(a, 0755), 0);
	cr_assert_eq(lyr_mkdir_p(deep, 0755), 0);
	/* Every ".." lets openat2(RESOLVE_IN_ROOT) give up with EAGAIN when a rename anywhere on
	 * the system raced with the lookup. */
	cr_assert_eq(symlink("d/e/f/../../e/f/../../e/f/../../e/f/../../e/f/..", link), 0);
	pid_t renamer = fork();
	cr_assert_geq(renamer, 0);
	if (renamer == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			if (rename(a, b) == 0)
				(void)rename(b, a);
	}
	lyr_sandbox_mount m[] = {
	    {.type = LYR_MOUNT_TMPFS, .target = "/l/t"},
	    {.type = LYR_MOUNT_TMPFS, .target = "/l/f/u"},
	};
	lyr_sandbox sb = {
	    .rootfs = root, .mounts = m, .n_mounts = 2, .args = ARGS("sh", "-c", "ls /d/e /d/e/f")};
	int failed = 0;
	char first[512] = "";
	for (int i = 0; i < 40; i++) {
		result res = run(&sb);
		if (res.r < 0 || res.status != 0 ||
		    strcmp(res.out, "/d/e:\nf\nt\n\n/d/e/f:\nu\n") != 0) {
			if (!failed++)
				snprintf(first, sizeof first, "%d %.300s %.200s", res.r, res.msg,
					 res.out);
		}
		result_free(&res);
	}
	kill(renamer, SIGKILL);
	cr_assert_eq(waitpid(renamer, NULL, 0), renamer);
	cr_assert_eq(failed, 0, "%d of 40 runs failed, the first: %s", failed, first);
	tu_rmtree(storm);
	tu_rmtree(root);
}

Test(exec_sandbox, missing_target_directories_are_created_and_removed_afterwards)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *src = tu_mkdtemp();
	tu_write(src, "hello", "world\n");
	tu_write(root, "keep/.placeholder", "");
	lyr_sandbox_mount m[] = {
	    {.type = LYR_MOUNT_BIND, .target = "/new/deep/dir", .source = src},
	    {.type = LYR_MOUNT_TMPFS, .target = "/keep/t"},
	};
	lyr_sandbox sb = {.rootfs = root,
			  .mounts = m,
			  .n_mounts = 2,
			  .args = ARGS("sh", "-c", "cat /new/deep/dir/hello; ls /keep")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "world\nt\n");
	_cleanup_free_ char *n = tu_path(root, "new"), *t = tu_path(root, "keep/t"),
			    *k = tu_path(root, "keep"), *p = tu_path(root, "proc"),
			    *d = tu_path(root, "dev");
	cr_assert_eq(access(n, F_OK), -1);
	cr_assert_eq(access(t, F_OK), -1);
	cr_assert_eq(access(k, F_OK), 0);
	cr_assert_eq(access(p, F_OK), -1, "/proc was made only for the mount");
	cr_assert_eq(access(d, F_OK), -1, "/dev was made only for the mount");
	result_free(&res);
	tu_rmtree(src);
	tu_rmtree(root);
}

Test(exec_sandbox, readonly_bind_refuses_writes_and_tmpfs_honours_its_size)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *src = tu_mkdtemp();
	lyr_sandbox_mount m[] = {
	    {.type = LYR_MOUNT_TMPFS, .target = "/t", .size = 65536},
	    {.type = LYR_MOUNT_BIND, .target = "/ro", .source = src, .readonly = true},
	};
	lyr_sandbox sb = {.rootfs = root,
			  .mounts = m,
			  .n_mounts = 2,
			  .args = ARGS("sh", "-c",
				       "touch /ro/f; dd if=/dev/zero of=/t/f bs=4096 "
				       "count=32 2>&1; ls -l /t/f")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_not_null(strstr(res.err, "touch: /ro/f: Read-only file system"), "%s", res.err);
	cr_assert_not_null(strstr(res.out, "No space left on device"), "%s", res.out);
	cr_assert_not_null(strstr(res.out, " 65536 "), "the file fills exactly 64 KiB: %s",
			   res.out);
	_cleanup_free_ char *f = tu_path(src, "f");
	cr_assert_eq(access(f, F_OK), -1);
	result_free(&res);
	tu_rmtree(src);
	tu_rmtree(root);
}

Test(exec_sandbox, device_nodes_made_or_found_inside_cannot_be_opened)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *src = tu_mkdtemp();
	/* A node already in the root, as a layer committed by an earlier command holds it. */
	_cleanup_free_ char *old = tu_path(root, "old-mem");
	cr_assert_eq(mknod(old, S_IFCHR | 0666, makedev(1, 1)), 0);
	lyr_sandbox_mount m[] = {
	    {.type = LYR_MOUNT_TMPFS, .target = "/t"},
	    {.type = LYR_MOUNT_BIND, .target = "/b", .source = src},
	};
	lyr_sandbox sb = {.rootfs = root,
			  .mounts = m,
			  .n_mounts = 2,
			  .args = ARGS("sh", "-c",
				       "cat /old-mem 2>&1; "
				       "for d in '' /dev /t /b; do "
				       "mknod $d/loop b 7 0 && mknod $d/mem c 1 1 || exit 9; "
				       "cat $d/loop 2>&1; cat $d/mem 2>&1; done")};
	expect_run(&sb, 1,
		   "cat: can't open '/old-mem': Permission denied\n"
		   "cat: can't open '/loop': Permission denied\n"
		   "cat: can't open '/mem': Permission denied\n"
		   "cat: can't open '/dev/loop': Permission denied\n"
		   "cat: can't open '/dev/mem': Permission denied\n"
		   "cat: can't open '/t/loop': Permission denied\n"
		   "cat: can't open '/t/mem': Permission denied\n"
		   "cat: can't open '/b/loop': Permission denied\n"
		   "cat: can't open '/b/mem': Permission denied\n",
		   NULL);
	tu_rmtree(src);
	tu_rmtree(root);
}

Test(exec_sandbox, standard_devices_keep_working)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root,
			  .args = ARGS("sh", "-c",
				       "echo gone > /dev/null && cat /dev/null && echo null; "
				       "dd if=/dev/zero bs=1000 count=3 2>/dev/null | wc -c; "
				       "dd if=/dev/urandom bs=16 count=1 2>/dev/null | wc -c; "
				       "dd if=/dev/random bs=8 count=1 2>/dev/null | wc -c; "
				       "echo x > /dev/full; "
				       "exec 3<>/dev/ptmx && echo ptmx")};
	expect_run(&sb, 0, "null\n3000\n16\n8\nptmx\n",
		   "sh: write error: No space left on device\n");
	tu_rmtree(root);
}

/* The standard nodes are the host's own inodes: a chmod or chown inside would change the
 * host's /dev/null for every process on it.  The modes and owners asked for here are the
 * ones the nodes already have, so that the host stays as it is even where the call
 * succeeds. */
Test(exec_sandbox, standard_devices_are_the_hosts_and_cannot_be_changed)
{
	need_root();
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	char script[1024] = "", want[1024] = "";
	for (size_t i = 0; i < LYR_ARRAY_SIZE(nodes); i++) {
		char p[32];
		struct stat s;
		snprintf(p, sizeof p, "/dev/%s", nodes[i]);
		if (stat(p, &s) < 0)
			continue; /* not bound in where the host lacks it */
		snprintf(script + strlen(script), sizeof script - strlen(script),
			 "chmod %o %s; chown %u:%u %s; ", (unsigned)(s.st_mode & 07777), p,
			 (unsigned)s.st_uid, (unsigned)s.st_gid, p);
		snprintf(want + strlen(want), sizeof want - strlen(want),
			 "chmod: %s: Read-only file system\n"
			 "chown: %s: Read-only file system\n",
			 p, p);
	}
	/* the masks over /proc are binds of the host's /dev/null too */
	struct stat null;
	cr_assert_eq(stat("/dev/null", &null), 0);
	snprintf(script + strlen(script), sizeof script - strlen(script),
		 "chmod %o /proc/keys; echo x > /proc/keys && echo written",
		 (unsigned)(null.st_mode & 07777));
	strcat(want, "chmod: /proc/keys: Read-only file system\n");
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("sh", "-c", script)};
	expect_run(&sb, 0, "written\n", want);
	tu_rmtree(root);
}

Test(exec_sandbox, kernel_settings_in_proc_are_read_only)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *before = NULL, *after = NULL;
	cr_assert_eq(lyr_read_file("/proc/sys/kernel/core_pattern", &before, NULL), 0);
	/* "true >" opens for writing and writes nothing: harmless even where the open succeeds. */
	bool sysrq = access("/proc/sysrq-trigger", F_OK) == 0;
	char script[512];
	snprintf(script, sizeof script,
		 "echo layerfs-core-%%p > /proc/sys/kernel/core_pattern; "
		 "echo 1 > /proc/sys/net/ipv4/ip_forward; "
		 "true > /proc/irq/default_smp_affinity; %s"
		 "echo 500 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj",
		 sysrq ? "true > /proc/sysrq-trigger; " : "");
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("sh", "-c", script)};
	result res = run(&sb);
	cr_assert_eq(lyr_read_file("/proc/sys/kernel/core_pattern", &after, NULL), 0);
	if (strcmp(before, after) != 0)
		tu_write("/proc/sys/kernel", "core_pattern", before); /* the host's, back */
	cr_assert_str_eq(after, before, "the host's core_pattern was changed");
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	/* The rest of /proc stays usable: the command's own entries are writable. */
	cr_assert_str_eq(res.out, "500\n");
	char want[512];
	snprintf(want, sizeof want,
		 "sh: can't create /proc/sys/kernel/core_pattern: Read-only file system\n"
		 "sh: can't create /proc/sys/net/ipv4/ip_forward: Read-only file system\n"
		 "sh: can't create /proc/irq/default_smp_affinity: Read-only file system\n%s",
		 sysrq ? "sh: can't create /proc/sysrq-trigger: Read-only file system\n" : "");
	cr_assert_str_eq(res.err, want);
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, host_kernel_state_in_proc_is_masked)
{
	need_root();
	static const char *const masked[] = {"acpi",	   "asound",	    "interrupts",  "kcore",
					     "keys",	   "latency_stats", "sched_debug", "scsi",
					     "timer_list", "timer_stats"};
	char script[2048] = "", want[2048] = "";
	for (size_t i = 0; i < LYR_ARRAY_SIZE(masked); i++) {
		char p[64];
		struct stat s;
		snprintf(p, sizeof p, "/proc/%s", masked[i]);
		if (stat(p, &s) < 0)
			continue;
		/* A masked file reads as empty; a masked directory lists nothing. */
		snprintf(script + strlen(script), sizeof script - strlen(script),
			 S_ISDIR(s.st_mode) ? "echo %s $(ls -A %s | wc -l); "
					    : "echo %s $(cat %s | wc -c); ",
			 p, p);
		snprintf(want + strlen(want), sizeof want - strlen(want), "%s 0\n", p);
	}
	if (!*want)
		cr_skip_test("this kernel has none of the masked /proc paths");
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("sh", "-c", script)};
	expect_run(&sb, 0, want, "");
	tu_rmtree(root);
}

/* Moves this process into a new child of its cgroup2 cgroup, so that its path is not "/"
 * whatever cgroup the tests run in.  Writes the directory made to MADE and the one left to
 * FROM ("" when the host has no cgroup2 hierarchy this process may write). */
static void enter_child_cgroup(char made[PATH_MAX], char from[PATH_MAX])
{
	made[0] = from[0] = '\0';
	_cleanup_free_ char *info = NULL, *self = NULL;
	if (lyr_read_file("/proc/self/mountinfo", &info, NULL) < 0 ||
	    lyr_read_file("/proc/self/cgroup", &self, NULL) < 0)
		return;
	char *unified = strstr(self, "0::");
	char *mnt = NULL;
	for (char *line = strtok(info, "\n"); line && !mnt; line = strtok(NULL, "\n")) {
		char point[PATH_MAX], type[64];
		if (sscanf(line, "%*s %*s %*s %*s %4095s %*s %*[^-]- %63s", point, type) == 2 &&
		    strcmp(type, "cgroup2") == 0)
			mnt = strdup(point);
	}
	if (!unified || !mnt)
		return free(mnt);
	unified += 3;
	unified[strcspn(unified, "\n")] = '\0';
	snprintf(from, PATH_MAX, "%s%s", mnt, strcmp(unified, "/") ? unified : "");
	snprintf(made, PATH_MAX, "%s/layerfs-test-%d", from, (int)getpid());
	free(mnt);
	char procs[PATH_MAX + 16];
	snprintf(procs, sizeof procs, "%s/cgroup.procs", made);
	int fd = -1;
	if (mkdir(made, 0755) < 0 || (fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0 ||
	    write(fd, "0", 1) != 1) {
		if (fd >= 0)
			close(fd);
		rmdir(made);
		made[0] = from[0] = '\0';
		return;
	}
	close(fd);
}

static void leave_child_cgroup(const char *made, const char *from)
{
	if (!*made)
		return;
	char procs[PATH_MAX + 16];
	snprintf(procs, sizeof procs, "%s/cgroup.procs", from);
	int fd = open(procs, O_WRONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", procs, strerror(errno));
	cr_assert_eq(write(fd, "0", 1), 1, "%s: %s", procs, strerror(errno));
	close(fd);
	cr_assert_eq(rmdir(made), 0, "%s: %s", made, strerror(errno));
}

/* The caller's cgroup path (a service's name, a container's id on the host) is not the
 * command's to see: in a cgroup namespace of its own every hierarchy reads as "/".  The test
 * runs from a cgroup of its own, so that the caller's path is never "/" already. */
Test(exec_sandbox, the_command_sees_its_cgroups_as_the_root)
{
	need_root();
	char made[PATH_MAX], from[PATH_MAX];
	enter_child_cgroup(made, from);
	_cleanup_free_ char *host = NULL;
	cr_assert_eq(lyr_read_file("/proc/self/cgroup", &host, NULL), 0);
	char want[4096] = "";
	for (char *line = host, *end; *line; line = end + 1) {
		end = strchrnul(line, '\n');
		char *path = memrchr(line, ':', (size_t)(end - line));
		cr_assert_not_null(path);
		snprintf(want + strlen(want), sizeof want - strlen(want), "%.*s:/\n",
			 (int)(path - line), line);
		if (!*end)
			break;
	}
	if (strcmp(want, host) == 0) {
		/* every path is "/" already: the run would show it with or without a namespace */
		leave_child_cgroup(made, from);
		cr_skip_test("this process is in the root cgroup and could not make a child cgroup "
			     "(no writable cgroup2 hierarchy)");
	}
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("cat", "/proc/self/cgroup")};
	expect_run(&sb, 0, want, "");
	leave_child_cgroup(made, from);
	tu_rmtree(root);
}

Test(exec_sandbox, network_none_has_only_loopback_and_hostname_is_set)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root,
			  .hostname = "box",
			  .network = LYR_NET_NONE,
			  .args = ARGS("sh", "-c", "hostname; cat /proc/net/dev")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	char *nl = strchr(res.out, '\n');
	cr_assert_not_null(nl);
	*nl = '\0';
	cr_assert_str_eq(res.out, "box");
	char names[256] = "";
	char *save = NULL;
	for (char *line = strtok_r(nl + 1, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		strcat(names, line + strspn(line, " "));
		strcat(names, " ");
	}
	cr_assert_str_eq(names, "lo ");
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, environment_is_exactly_the_given_variables_plus_path_and_proxies)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root,
			  .env = ARGS("A=1", "B=two words"),
			  .proxy_env = ARGS("HTTPS_PROXY=http://proxy:3128"),
			  .args = ARGS("env")};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "A=1\nB=two words\n" DEFAULT_PATH "\n"
				  "HTTPS_PROXY=http://proxy:3128\nhttps_proxy=http://proxy:3128\n");
	result_free(&res);

	lyr_sandbox sb2 = {
	    .rootfs = root, .env = ARGS("PATH=/bin"), .cwd = "/etc", .args = ARGS("env")};
	res = run(&sb2);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "PATH=/bin\n");
	result_free(&res);

	sb2.args = ARGS("pwd");
	res = run(&sb2);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "/etc\n");
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, fifty_thousand_variables_are_checked_and_passed_in_linear_time)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	enum { N = 50000 };
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_new(&op), 0);
	cr_assert_eq(lyr_exec_op_set_root(op, "r"), 0);
	cr_assert_eq(lyr_exec_op_add_arg(op, "env"), 0);
	size_t cap = (size_t)N * 24 + 128, len = 0;
	_cleanup_free_ char *want = malloc(cap);
	cr_assert_not_null(want);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++) {
		char kv[32];
		snprintf(kv, sizeof kv, "V%d=%d", N - i, i);
		cr_assert_eq(lyr_exec_op_add_env(op, kv, &err), 0);
		len += (size_t)snprintf(want + len, cap - len, "%s\n", kv);
	}
	snprintf(want + len, cap - len, "%s\n", DEFAULT_PATH);
	cr_assert_eq(lyr_exec_op_validate(op, &err), 0, "%s", err.msg);
	lyr_sandbox sb;
	lyr_exec_sandbox_from_op(op, root, NULL, &sb);
	result res = run(&sb);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, want);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_lt(secs, 2.0, "adding, checking and passing %d variables took %.2f s", N, secs);
	cr_assert_eq(lyr_exec_op_add_env(op, "V7=again", &err), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "env 'V7': given twice");
	result_free(&res);
	lyr_exec_op_free(op);
	tu_rmtree(root);
}

Test(exec_sandbox, stdin_is_dev_null_unless_passed_through)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("cat")};
	result res = run_ex(&sb, "hello\n", NULL);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "");
	result_free(&res);
	sb.stdin_passthrough = true;
	res = run_ex(&sb, "hello\n", NULL);
	cr_assert_eq(res.status, 0, "%s", res.err);
	cr_assert_str_eq(res.out, "hello\n");
	result_free(&res);
	tu_rmtree(root);
}

Test(exec_sandbox, sigint_and_sigterm_to_the_caller_reach_the_command)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *flags = tu_mkdtemp();
	_cleanup_free_ char *r1 = tu_path(flags, "r1"), *r2 = tu_path(flags, "r2");
	lyr_sandbox_mount m = {.type = LYR_MOUNT_BIND, .target = "/ready", .source = flags};
	lyr_sandbox sb = {.rootfs = root,
			  .mounts = &m,
			  .n_mounts = 1,
			  .args = ARGS("sh", "-c",
				       "trap 'echo got TERM; exit 7' TERM; "
				       "sleep 20 & touch /ready/r1; wait")};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	result res = run_ex(&sb, NULL, r1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 7, "%s", res.err);
	cr_assert_str_eq(res.out, "got TERM\n");
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 10, "the background sleep kept the sandbox alive");
	result_free(&res);

	lyr_sandbox plain = {.rootfs = root,
			     .mounts = &m,
			     .n_mounts = 1,
			     .args = ARGS("sh", "-c", "touch /ready/r2; exec sleep 20")};
	res = run_ex(&plain, NULL, r2);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 128 + SIGTERM);
	result_free(&res);
	cr_assert_eq(unlink(r2), 0);

	res = run_sig(&plain, NULL, r2, SIGINT);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 128 + SIGINT);
	result_free(&res);
	tu_rmtree(flags);
	tu_rmtree(root);
}

/* The mount point (fifth field) of mountinfo LINE, copied into OUT. */
static void mount_point(const char *line, char *out, size_t size)
{
	const char *p = line;
	for (int i = 0; i < 4 && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	size_t n = p ? strcspn(p, " \n") : 0;
	snprintf(out, size, "%.*s", (int)n, p ? p : "");
}

/* /proc/self/mountinfo without what other suites on this machine may mount meanwhile (FUSE
 * filesystems, anything in their temporary directories), and the number of mounts at or below
 * each of UNDER[0..1] (which must be 0 for this test's own directories). */
static char *mountinfo_stable(const char *const under[2], int count[2])
{
	char *buf = NULL;
	cr_assert_eq(lyr_read_file("/proc/self/mountinfo", &buf, NULL), 0);
	const char *tmp = getenv("TMPDIR");
	char scratch[512];
	snprintf(scratch, sizeof scratch, "%s/layerfs-test-", tmp && *tmp ? tmp : "/tmp");
	count[0] = count[1] = 0;
	size_t o = 0;
	for (char *line = buf; *line;) {
		char *end = strchrnul(line, '\n');
		size_t n = (size_t)(end - line) + (*end ? 1 : 0);
		char mp[1024];
		mount_point(line, mp, sizeof mp);
		for (int i = 0; i < 2; i++)
			if (strncmp(mp, under[i], strlen(under[i])) == 0)
				count[i]++;
		if (!memmem(line, n, " - fuse", 7) && strncmp(mp, scratch, strlen(scratch)) != 0) {
			memmove(buf + o, line, n);
			o += n;
		}
		line += n;
	}
	buf[o] = '\0';
	return buf;
}

Test(exec_sandbox, host_sees_no_leftover_mounts)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *src = tu_mkdtemp();
	const char *const control[2] = {"/proc", "/"};
	int c[2];
	free(mountinfo_stable(control, c));
	cr_assert(c[0] >= 1 && c[1] > c[0], "mountinfo parsing: %d %d", c[0], c[1]);
	const char *const ours[2] = {root, src};
	int n[2];
	_cleanup_free_ char *before = mountinfo_stable(ours, n);
	lyr_sandbox_mount m[] = {
	    {.type = LYR_MOUNT_BIND, .target = "/src", .source = src},
	    {.type = LYR_MOUNT_TMPFS, .target = "/src/tmp"},
	};
	lyr_sandbox sb = {
	    .rootfs = root, .mounts = m, .n_mounts = 2, .args = ARGS("sh", "-c", "exit 5")};
	result res = run(&sb);
	cr_assert_eq(res.status, 5, "%s %s", res.msg, res.err);
	result_free(&res);
	_cleanup_free_ char *after = mountinfo_stable(ours, n);
	cr_assert_str_eq(after, before);
	cr_assert_eq(n[0], 0, "a mount below the root is visible on the host");
	cr_assert_eq(n[1], 0, "a mount below the bind source is visible on the host");
	tu_rmtree(src);
	tu_rmtree(root);
}

Test(exec_sandbox, setup_failure_is_an_error_naming_the_cause)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	lyr_sandbox_mount m = {
	    .type = LYR_MOUNT_BIND, .target = "/x", .source = "/nonexistent-src"};
	lyr_sandbox sb = {.rootfs = root, .mounts = &m, .n_mounts = 1, .args = ARGS("true")};
	result res = run(&sb);
	cr_assert_eq(res.r, -ENOENT);
	cr_assert_str_eq(res.msg,
			 "bind mount source '/nonexistent-src': No such file or directory");
	result_free(&res);
	_cleanup_free_ char *dev = tu_path(root, "dev");
	cr_assert_eq(access(dev, F_OK), -1, "a failed setup leaves the directories it made");

	_cleanup_free_ char *proc = tu_path(root, "proc");
	cr_assert_eq(symlink("/etc", proc), 0);
	sb = (lyr_sandbox){.rootfs = root, .args = ARGS("true")};
	res = run(&sb);
	cr_assert_eq(res.r, -ENOTDIR);
	cr_assert_str_eq(res.msg, "root directory '/proc': not a directory (a symlink)");
	result_free(&res);
	cr_assert_eq(unlink(proc), 0);

	sb = (lyr_sandbox){.rootfs = root, .cwd = "/nowhere", .args = ARGS("true")};
	res = run(&sb);
	cr_assert_eq(res.r, -ENOENT);
	cr_assert_str_eq(res.msg, "working directory '/nowhere': No such file or directory");
	result_free(&res);
	tu_rmtree(root);
}

/* True when some process runs exactly ARGV0 ARGV1 (its cmdline "ARGV0\0ARGV1\0"). */
static bool process_running(const char *argv0, const char *argv1)
{
	char want[64];
	int n = snprintf(want, sizeof want, "%s%c%s", argv0, '\0', argv1) + 1;
	DIR *d = opendir("/proc");
	cr_assert_not_null(d);
	bool found = false;
	for (struct dirent *e; !found && (e = readdir(d));) {
		if (strspn(e->d_name, "0123456789") != strlen(e->d_name))
			continue;
		char path[300], buf[128];
		snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t r = read(fd, buf, sizeof buf);
		close(fd);
		found = r == n && memcmp(buf, want, (size_t)n) == 0;
	}
	closedir(d);
	return found;
}

/* kill(0, SIG) signals the sender's process group, wherever its members are: a command in
 * the caller's process group reached the caller and every process of the caller's job on the
 * host (a build script's common "trap 'kill 0' EXIT" would kill the shell pipeline that ran
 * layerfs).  The sandbox is a session and process group of its own. */
Test(exec_sandbox, the_command_cannot_signal_the_callers_process_group)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *out = tu_path(root, "kill.out");
	lyr_sandbox sb = {.rootfs = root,
			  .args = ARGS("sh", "-c", "trap '' USR1; kill -USR1 0; echo kill=$?")};
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* a job of its own, as a shell makes one: the runner and a sibling */
		setpgid(0, 0);
		signal(SIGUSR1, SIG_DFL);
		pid_t sibling = fork();
		if (sibling == 0) {
			pause();
			_exit(0);
		}
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (sibling < 0 || o < 0 || dup2(o, 1) < 0)
			_exit(100);
		lyr_exec_error err;
		int status = 0;
		int r = lyr_exec_sandbox_run(&sb, &status, &err);
		usleep(100000);
		kill(sibling, SIGKILL);
		int st;
		waitpid(sibling, &st, 0);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			_exit(102); /* the sibling was killed from inside */
		_exit(r < 0 ? 101 : status);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "the runner was killed by signal %d", WTERMSIG(st));
	cr_assert_eq(WEXITSTATUS(st), 0);
	_cleanup_free_ char *got = tu_read(root, "kill.out");
	cr_assert_str_eq(got, "kill=0\n");
	tu_rmtree(root);
}

/* A directory on a standard stream is a door out of the root: /proc/self/fd/N/ inside is the
 * host's directory, readable and writable by root (runc's CVE-2024-21626 was a leaked
 * directory descriptor).  A run with one is refused before anything is mounted. */
Test(exec_sandbox, a_directory_on_a_standard_stream_is_refused)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *host = tu_mkdtemp();
	tu_write(host, "secret", "host file\n");
	static const char *const names[] = {"input", "output", "error"};
	for (int fd = 0; fd < 3; fd++) {
		lyr_sandbox sb = {.rootfs = root,
				  .args = ARGS("cat", "/proc/self/fd/0/secret",
					       "/proc/self/fd/1/secret", "/proc/self/fd/2/secret"),
				  .stdin_passthrough = true};
		int pfd[2];
		cr_assert_eq(pipe(pfd), 0);
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			int d = open(host, O_RDONLY | O_DIRECTORY);
			int n = open("/dev/null", O_RDWR);
			for (int i = 0; i < 3; i++)
				dup2(i == fd ? d : n, i);
			run_and_report(&sb, pfd[1]);
		}
		close(pfd[1]);
		result res = read_report(pfd[0]);
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		char want[256];
		snprintf(want, sizeof want,
			 "sandbox: standard %s is a directory, which the command could leave "
			 "the root through",
			 names[fd]);
		cr_assert_eq(res.r, -EISDIR, "fd %d: %d %s", fd, res.r, res.msg);
		cr_assert_str_eq(res.msg, want);
	}
	tu_rmtree(host);
	tu_rmtree(root);
}

Test(exec_sandbox, killing_the_caller_kills_the_whole_sandbox)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	char secs[16];
	snprintf(secs, sizeof secs, "%d", 3000 + (int)(getpid() % 1000));
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("sh", "-c", "sleep $0 & wait", secs)};
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int st;
		lyr_exec_error err;
		_exit(lyr_exec_sandbox_run(&sb, &st, &err) < 0 ? 1 : 0);
	}
	bool seen = false;
	for (int i = 0; i < 100 && !seen; i++) {
		usleep(20000);
		seen = process_running("sleep", secs);
	}
	cr_assert(seen, "the command never started");
	kill(pid, SIGKILL);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	bool gone = false;
	for (int i = 0; i < 100 && !gone; i++) {
		gone = !process_running("sleep", secs);
		if (!gone)
			usleep(20000);
	}
	cr_assert(gone, "the sandboxed sleep outlived its caller");
	tu_rmtree(root);
}

Test(exec_sandbox, interrupted_run_undoes_its_mounts_and_directories)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *src = tu_mkdtemp();
	const char *const ours[2] = {root, src};
	int n[2];
	_cleanup_free_ char *before = mountinfo_stable(ours, n);
	lyr_sandbox_mount m = {.type = LYR_MOUNT_BIND, .target = "/made/here", .source = src};
	_cleanup_free_ char *ready = tu_path(src, "r");
	lyr_sandbox sb = {.rootfs = root,
			  .mounts = &m,
			  .n_mounts = 1,
			  .args = ARGS("sh", "-c", "touch /made/here/r; exec sleep 20")};
	result res = run_ex(&sb, NULL, ready);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 128 + SIGTERM);
	result_free(&res);
	_cleanup_free_ char *after = mountinfo_stable(ours, n);
	cr_assert_str_eq(after, before);
	cr_assert_eq(n[0], 0, "a mount below the root is visible on the host");
	cr_assert_eq(n[1], 0, "a mount below the bind source is visible on the host");
	_cleanup_free_ char *made = tu_path(root, "made");
	cr_assert_eq(access(made, F_OK), -1);
	tu_rmtree(src);
	tu_rmtree(root);
}

Test(exec_sandbox, unprivileged_caller_runs_as_root_in_a_user_namespace)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	/* An unprivileged user cannot create these in a root-owned directory. */
	_cleanup_free_ char *proc = tu_path(root, "proc"), *dev = tu_path(root, "dev");
	cr_assert_eq(mkdir(proc, 0755), 0);
	cr_assert_eq(mkdir(dev, 0755), 0);
	_cleanup_free_ char *dir = tu_mkdtemp();
	chmod(dir, 0777);
	_cleanup_free_ char *outp = tu_path(dir, "out");
	lyr_sandbox sb = {.rootfs = root,
			  .args = ARGS("sh", "-c",
				       "id -u; cat /proc/self/uid_map; "
				       "cat /proc/self/status")};
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(o, 1);
		result res = {0};
		lyr_exec_error err = {{0}};
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0 ||
		    /* a uid change makes a process non-dumpable, which an ordinary
		     * unprivileged caller is not; its /proc files would belong to root */
		    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0) {
			res.r = -errno;
			snprintf(res.msg, sizeof res.msg, "dropping to nobody: %s",
				 strerror(errno));
		} else {
			res.r = lyr_exec_sandbox_run(&sb, &res.status, &err);
			memcpy(res.msg, err.msg, sizeof res.msg);
		}
		(void)!write(pfd[1], &res, sizeof res);
		_exit(0);
	}
	close(pfd[1]);
	result res = {0};
	cr_assert_eq(read(pfd[0], &res, sizeof res), (ssize_t)sizeof res);
	close(pfd[0]);
	waitpid(pid, NULL, 0);
	if (res.r == -EPERM || res.r == -ENOSPC) {
		tu_rmtree(dir);
		tu_rmtree(root);
		cr_skip_test("unprivileged user namespaces are not available here: %s", res.msg);
	}
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0);
	_cleanup_free_ char *out = tu_read(dir, "out");
	cr_assert_eq(strncmp(out, "0\n         0      65534          1\n", 35), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\nCapBnd:\t00000000a80425fb\n"), "%s", out);
	cr_assert_not_null(strstr(out, "\nNoNewPrivs:\t1\n"), "%s", out);
	tu_rmtree(dir);
	tu_rmtree(root);
}

Test(exec_sandbox, an_op_from_json_runs_with_its_mounts_once_sources_are_set)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	_cleanup_free_ char *view = tu_mkdtemp();
	tu_write(view, "in.txt", "input\n");
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_parse_json(
			 "{\"root\": \"r\", \"args\": [\"sh\", \"-c\", \"cat in.txt; hostname; "
			 "echo $HTTP_PROXY $no_proxy; touch /t/x /src/y\"],"
			 " \"cwd\": \"/src\", \"hostname\": \"jsonbox\", \"env\": [\"A=1\"],"
			 " \"proxy_env\": [\"HTTP_PROXY=http://p\", \"NO_PROXY=l\"],"
			 " \"mounts\": [{\"type\": \"tmpfs\", \"target\": \"/t\", \"size\": 4096},"
			 "  {\"type\": \"cache\", \"target\": \"/src\", \"readonly\": true}]}",
			 &op, &err),
		     0, "%s", err.msg);
	lyr_sandbox_mount mounts[2];
	lyr_sandbox sb;
	lyr_exec_sandbox_from_op(op, root, mounts, &sb);
	cr_assert_eq(sb.n_mounts, 2);
	cr_assert_str_eq(mounts[0].target, "/src");
	cr_assert_eq(mounts[0].type, LYR_MOUNT_BIND);
	cr_assert(mounts[0].readonly);
	cr_assert_null(mounts[0].source);
	cr_assert_eq(mounts[1].type, LYR_MOUNT_TMPFS);
	cr_assert_eq(mounts[1].size, 4096);
	mounts[0].source = view;
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 1, "touch of the read-only /src/y fails: %s", res.err);
	cr_assert_str_eq(res.out, "input\njsonbox\nhttp://p l\n");
	cr_assert_str_eq(res.err, "touch: /src/y: Read-only file system\n");
	result_free(&res);
	lyr_exec_op_free(op);
	tu_rmtree(view);
	tu_rmtree(root);
}

/* What probe-syscalls (tests/probe/) prints when it is the command under SECURITY. */
static char *probe_output(lyr_security security)
{
	_cleanup_free_ char *root = make_root();
	tu_add_probe_syscalls(root);
	lyr_sandbox sb = {.rootfs = root, .args = ARGS("probe-syscalls"), .security = security};
	result res = run(&sb);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 0, "%s", res.err);
	free(res.err);
	tu_rmtree(root);
	return res.out;
}

Test(exec_sandbox, the_default_filter_refuses_what_container_runtimes_refuse_on_every_abi)
{
	need_root();
	_cleanup_free_ char *out = probe_output(LYR_SECURITY_SANDBOX);
	/* EPERM for each; clone3 ENOSYS so that libc falls back to clone; flags without a
	 * namespace, and the personalities Docker allows, pass */
	static const char want[] = "unshare_user EPERM\n"
				   "unshare_fs 0\n"
				   "clone_newuser EPERM\n"
				   "clone_newns EPERM\n"
				   "fork 0\n"
				   "clone3 ENOSYS\n"
				   "setns EPERM\n"
				   "keyctl EPERM\n"
				   "add_key EPERM\n"
				   "request_key EPERM\n"
				   "bpf EPERM\n"
				   "perf_event_open EPERM\n"
				   "kexec_load EPERM\n"
				   "init_module EPERM\n"
				   "open_by_handle_at EPERM\n"
				   "name_to_handle_at EPERM\n"
				   "mount EPERM\n"
				   "umount2 EPERM\n"
				   "open_tree EPERM\n"
				   "fsopen EPERM\n"
				   "clock_settime EPERM\n"
				   "userfaultfd EPERM\n"
				   "io_uring_setup EPERM\n"
				   "personality_addr_no_randomize EPERM\n"
				   "personality_all_but_query EPERM\n"
				   "personality_linux32 0\n"
				   "personality_uname26_linux32 0\n"
				   "personality_query 0\n"
				   "ptrace_init EPERM\n";
	cr_assert_eq(strncmp(out, want, strlen(want)), 0, "%s", out);
	const char *compat = out + strlen(want);
#if defined(__x86_64__)
	/* the i386 (int 0x80) and x32 tables are filtered too */
	if (strncmp(compat, "i386_getpid unavailable\n", 24) == 0)
		cr_assert_str_eq(compat, "i386_getpid unavailable\nx32_unshare_user EPERM\n");
	else
		cr_assert_str_eq(compat, "i386_getpid 0\n"
					 "i386_unshare_user EPERM\n"
					 "i386_keyctl EPERM\n"
					 "x32_unshare_user EPERM\n");
#else
	cr_assert_str_eq(compat, "");
#endif
}

/* A terminal on the command's stdin (or its /dev/tty) is the caller's: TIOCSTI on it would
 * type into the shell that started layerfs, which runs what it reads as the caller on the
 * host (CVE-2017-5226 in bubblewrap).  The sandbox has no controlling terminal (/dev/tty
 * does not open), and the filter refuses TIOCSTI and TIOCLINUX whatever the high bits of the
 * request. */
Test(exec_sandbox, the_command_cannot_type_into_the_callers_terminal)
{
	need_root();
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		cr_skip_test("no pseudo-terminals: %s", strerror(errno));
	cr_assert_eq(grantpt(master), 0);
	cr_assert_eq(unlockpt(master), 0);
	const char *slave = ptsname(master);
	cr_assert_not_null(slave);
	_cleanup_free_ char *root = make_root();
	tu_add_probe_syscalls(root);
	_cleanup_free_ char *out = tu_path(root, "probe.out");
	lyr_sandbox sb = {
	    .rootfs = root, .args = ARGS("probe-syscalls", "tty"), .stdin_passthrough = true};
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* a session of its own whose controlling terminal is the pty, like a shell's */
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int t = setsid() < 0 ? -1 : open(slave, O_RDWR);
		if (t < 0 || o < 0 || dup2(o, 1) < 0 || dup2(t, 0) < 0)
			_exit(100);
		lyr_exec_error err;
		int status = 0;
		_exit(lyr_exec_sandbox_run(&sb, &status, &err) < 0 ? 101 : status);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	_cleanup_free_ char *got = tu_read(root, "probe.out");
	static const char want[] =
	    "open_tty ENXIO\ntiocsti EPERM\ntiocsti_high_bits EPERM\ntioclinux EPERM\n";
	cr_assert_eq(strncmp(got, want, strlen(want)), 0, "%s", got);
#if defined(__x86_64__)
	/* and through the i386 table where this kernel has it, and the x32 one */
	const char *compat = got + strlen(want);
	if (strncmp(compat, "i386_", 5) == 0)
		cr_assert_str_eq(compat, "i386_tiocsti EPERM\nx32_tiocsti EPERM\n");
	else
		cr_assert_str_eq(compat, "x32_tiocsti EPERM\n");
#else
	cr_assert_str_eq(got, want);
#endif
	close(master);
	tu_rmtree(root);
}

Test(exec_sandbox, insecure_runs_the_command_without_the_filter)
{
	need_root();
	_cleanup_free_ char *out = probe_output(LYR_SECURITY_INSECURE);
	/* the kernel's own answers: the EPERMs above came from the filter */
	static const char *const lines[] = {"unshare_user 0",
					    "clone_newuser 0",
					    "clone3 EINVAL",
					    "setns EBADF",
					    "keyctl 0",
					    "perf_event_open EFAULT",
					    "name_to_handle_at EFAULT",
					    "mount ENOENT",
					    "open_tree 0",
					    "personality_addr_no_randomize 0"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(lines); i++)
		cr_assert(tu_has_line(out, lines[i]), "%s not in:\n%s", lines[i], out);
#if defined(__x86_64__)
	if (tu_has_line(out, "i386_getpid 0"))
		cr_assert(tu_has_line(out, "i386_unshare_user 0"), "%s", out);
#endif
}

Test(exec_sandbox, an_op_carries_its_security_setting_into_the_sandbox)
{
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_parse_json("{\"root\": \"r\", \"args\": [\"true\"]}", &op, &err),
		     0);
	lyr_sandbox sb;
	lyr_exec_sandbox_from_op(op, "/r", NULL, &sb);
	cr_assert_eq(sb.security, LYR_SECURITY_SANDBOX);
	cr_assert_eq(lyr_exec_op_set_security(op, "insecure", &err), 0);
	lyr_exec_sandbox_from_op(op, "/r", NULL, &sb);
	cr_assert_eq(sb.security, LYR_SECURITY_INSECURE);
	lyr_exec_op_free(op);
}

Test(exec_sandbox, every_call_the_filter_refuses_is_listed_in_the_security_docs)
{
	/* the generated program's header names each refused call in lines " * EPERM, GROUP:
	 * NAMES" */
	_cleanup_free_ char *program = NULL, *doc = NULL;
	cr_assert_eq(lyr_read_file(LAYERFS_BUILD_DIR "/exec/seccomp_program.h", &program, NULL), 0);
	cr_assert_eq(lyr_read_file(LAYERFS_SOURCE_DIR "/docs/security.md", &doc, NULL), 0);
	char *section = strstr(doc, "\n## System calls\n");
	cr_assert_not_null(section);
	char *next = strstr(section + 1, "\n## ");
	if (next)
		*next = '\0'; /* other sections name mounts too */
	size_t n = 0;
	for (const char *p = program; (p = strstr(p, "\n * EPERM, ")) != NULL;) {
		p = strchr(p, ':');
		cr_assert_not_null(p);
		const char *end = strchr(p, '\n');
		for (p++; p < end;) {
			p += strspn(p, " ");
			size_t len = strcspn(p, " \n");
			char name[80];
			snprintf(name, sizeof name, "`%.*s`", (int)len, p);
			cr_assert_not_null(strstr(section, name), "%s is not in docs/security.md",
					   name);
			n++;
			p += len;
		}
	}
	cr_assert_geq(n, 50, "only %zu names found in the generated program", n);
}

/* A signal the caller caught after it last looked and before the sandbox began to forward
 * (SB.caught already set when the run starts) still reaches the command: it ends as if the
 * signal had come while it ran, not after its own 100 seconds. */
Test(exec_sandbox, a_signal_caught_before_forwarding_began_reaches_the_command)
{
	need_root();
	_cleanup_free_ char *root = make_root();
	static volatile sig_atomic_t caught;
	caught = SIGTERM;
	lyr_sandbox sb = {.rootfs = root,
			  .args = ARGS("sleep", "100"),
			  .caught = &caught};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	result res = run(&sb);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(res.r, 0, "%s", res.msg);
	cr_assert_eq(res.status, 128 + SIGTERM, "%s", res.err);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 10);
	result_free(&res);
	tu_rmtree(root);
}
