/* `layerfs exec` end to end over a real store: a busybox root (Debian's busybox-static) is
 * imported as a layer, commands run in the sandbox over FUSE views of it, what they write is
 * committed into output layers (checked with `layerfs diff`), cache mounts persist across runs
 * and behave per sharing under concurrent runs, --cache answers from the action cache, and the
 * cache key follows the inputs' content exactly as the issue lists.  Needs root and /dev/fuse.
 * Every run uses the test's own TMPDIR, so "nothing left behind" is checked there alone. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "testutil.h"

static const char *const applets[] = {"sh",    "cat",	"echo",	 "id",	"ls",	"true", "false",
				      "sleep", "mkdir", "touch", "env", "grep", "kill", "rm",
				      "wc",    "seq",	"head",	 "tr",	"mknod"};

static tu_dirs dirs;
static char *rootfs, *tmpenv;
static const char *tmpenv_list[2];

static void setup(void)
{
	tu_dirs_init(&dirs);
	rootfs = tu_path(dirs.tmp, "rootfs");
	cr_assert(asprintf(&tmpenv, "TMPDIR=%s", dirs.tmp) > 0);
	tmpenv_list[0] = tmpenv;
}

/* Unmounts whatever a test left below TMP (failing it), then removes it. */
static void teardown(void)
{
	tu_dirs_fini(&dirs);
	free(rootfs);
	free(tmpenv);
}

TestSuite(cli_exec, .init = setup, .fini = teardown, .timeout = 120);

/* Skips without root, /dev/fuse or busybox; otherwise builds the root tree and imports it as
 * tag "bb". */
static void need_all(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (namespaces, mounts)");
	tu_need_fuse();
	tu_need_busybox();
	tu_busybox_root(rootfs, applets, LYR_ARRAY_SIZE(applets), "root:x:0:0:root:/root:/bin/sh\n",
			"root:x:0:\n");
	tu_run i = tu_lf(dirs.store, "import", rootfs, "--tag", "bb", NULL);
	cr_assert_eq(i.status, 0, "import: %s", i.err);
	tu_run_free(&i);
}

/* `layerfs --root ROOT ARGS...` with TMPDIR set to the test's directory. */
#define lx(...) tu_lf_env(tmpenv_list, dirs.store, __VA_ARGS__)

/* The layer ID reported for TARGET in an exec --json result (NULL when not there). */
static char *output_of(const char *json, const char *target)
{
	_cleanup_free_ char *k = NULL;
	cr_assert(asprintf(&k, "{\"target\":\"%s\",\"layer\":\"", target) > 0);
	const char *p = strstr(json, k);
	if (!p)
		return NULL;
	p += strlen(k);
	return strndup(p, strcspn(p, "\""));
}

/* Asserts that KEY of JSON is WANT. */
static void expect(const char *json, const char *key, const char *want)
{
	_cleanup_free_ char *v = tu_json_field(json, key);
	cr_assert_str_eq(v, want, "%s in %s", key, json);
}

/* Asserts that KEY (or, with OUTPUT, the layer of output TARGET) is the same in A and B. */
static void same(const char *a, const char *b, const char *key, bool output)
{
	_cleanup_free_ char *va = output ? output_of(a, key) : tu_json_field(a, key);
	_cleanup_free_ char *vb = output ? output_of(b, key) : tu_json_field(b, key);
	cr_assert_not_null(va);
	cr_assert_not_null(vb);
	cr_assert_str_eq(va, vb, "%s differs: %s / %s", key, a, b);
}

static size_t count(const char *s, const char *what)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/* Nothing of a run is left: no mount below TMP or the store, no temporary directory, no ref
 * but the cache refs (N_CACHE_REFS of them). */
static void assert_clean(size_t n_cache_refs)
{
	_cleanup_free_ char *mounts = NULL;
	cr_assert_eq(lyr_read_file("/proc/self/mountinfo", &mounts, NULL), 0);
	cr_assert_null(strstr(mounts, dirs.tmp), "a mount is left below %s:\n%s", dirs.tmp, mounts);
	DIR *d = opendir(dirs.tmp);
	cr_assert_not_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		cr_assert_neq(strncmp(e->d_name, "layerfs-exec.", 13), 0, "left behind: %s",
			      e->d_name);
	closedir(d);
	_cleanup_free_ char *ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	cr_assert_eq(count(ls, "\"mountpoint\":"), n_cache_refs, "%s", ls);
}

Test(cli_exec, writes_land_in_the_root_output_layer_and_nowhere_on_the_host)
{
	need_all();
	_cleanup_free_ char *name = NULL;
	cr_assert(asprintf(&name, "/layerfs-exec-test-%d", (int)getpid()) > 0);
	_cleanup_free_ char *script = NULL;
	cr_assert(asprintf(&script, "echo hi > %s; mkdir /d; echo x > /d/f; rm /etc/group", name) >
		  0);
	_cleanup_free_ char *out =
	    tu_ok(lx("--json", "exec", "bb", "--", "sh", "-c", script, NULL));
	expect(out, "exit_code", "0");
	expect(out, "cached", "false");
	_cleanup_free_ char *key = tu_json_field(out, "cache_key");
	cr_assert_eq(strncmp(key, "sha256:", 7), 0);
	_cleanup_free_ char *layer = output_of(out, "/");
	cr_assert_not_null(layer, "%s", out);
	cr_assert_eq(count(out, "\"target\""), 1);
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", layer, NULL));
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "A /d\nA /d/f\nC /etc\nD /etc/group\nA %s\n", name) > 0);
	cr_assert_str_eq(diff, want);
	cr_assert_eq(access(name, F_OK), -1, "%s appeared on the host", name);
	cr_assert_eq(access("/d/f", F_OK), -1);
	/* the root layer itself is untouched */
	_cleanup_free_ char *group = tu_read(rootfs, "etc/group");
	cr_assert_str_eq(group, "root:x:0:\n");
	assert_clean(0);
}

Test(cli_exec, the_people_summary_goes_to_stderr_and_stdout_is_the_commands)
{
	need_all();
	tu_run r = lx("exec", "bb", "--", "sh", "-c", "echo from-the-command", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "from-the-command\n");
	cr_assert_eq(strncmp(r.err, "exit status 0\n/            sha256:", 34), 0, "%s", r.err);
	tu_run_free(&r);
}

Test(cli_exec, exit_codes_propagate_and_a_failure_commits_nothing)
{
	need_all();
	_cleanup_free_ char *before = tu_ok(tu_lf(dirs.store, "ls", "--json", NULL));
	static const struct {
		const char *cmd;
		int status;
	} cases[] = {
	    {"exit 3", 3},
	    {"kill -TERM $$", 143},
	    {"kill -KILL $$", 137},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		tu_run r = lx("--json", "exec", "bb", "--", "sh", "-c", cases[i].cmd, NULL);
		cr_assert_eq(r.status, cases[i].status, "%s: %d %s", cases[i].cmd, r.status, r.err);
		_cleanup_free_ char *code = tu_json_field(r.out, "exit_code");
		cr_assert_eq(atoi(code), cases[i].status);
		cr_assert_not_null(strstr(r.out, "\"outputs\":[]"), "%s", r.out);
		tu_run_free(&r);
	}
	tu_run r = lx("exec", "bb", "--", "no-such-command", NULL);
	cr_assert_eq(r.status, 127, "%s", r.err);
	tu_run_free(&r);
	r = lx("exec", "bb", "--", "/etc/passwd", NULL);
	cr_assert_eq(r.status, 126, "%s", r.err);
	tu_run_free(&r);
	r = lx("exec", "no-such-layer", "--", "true", NULL);
	cr_assert_eq(r.status, 125);
	cr_assert_str_eq(r.err, "layerfs: 'no-such-layer': no such layer, ref or tag\n");
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_ok(tu_lf(dirs.store, "ls", "--json", NULL));
	cr_assert_str_eq(after, before, "a failed run changed the store");
	_cleanup_free_ char *out = tu_ok(lx("--json", "exec", "bb", "--", "true", NULL));
	expect(out, "exit_code", "0");
	assert_clean(0);
}

Test(cli_exec, commit_on_failure_commits_the_outputs_of_a_failed_run)
{
	need_all();
	tu_run r =
	    lx("--json", "exec", "--commit-on-failure", "--mount", "type=bind,target=/out,output",
	       "bb", "--", "sh", "-c", "echo a > /a; echo b > /out/b; exit 3", NULL);
	cr_assert_eq(r.status, 3, "%s", r.err);
	_cleanup_free_ char *rl = output_of(r.out, "/"), *ol = output_of(r.out, "/out");
	cr_assert_not_null(rl, "%s", r.out);
	cr_assert_not_null(ol, "%s", r.out);
	cr_assert_lt(strstr(r.out, rl) - r.out, strstr(r.out, ol) - r.out, "root first");
	_cleanup_free_ char *d1 = tu_ok(tu_lf(dirs.store, "diff", rl, NULL));
	cr_assert_str_eq(d1, "A /a\n");
	_cleanup_free_ char *d2 = tu_ok(tu_lf(dirs.store, "diff", ol, NULL));
	cr_assert_str_eq(d2, "A /b\n");
	tu_run_free(&r);
	assert_clean(0);
}

Test(cli_exec, bind_mounts_read_write_and_report_outputs_in_mount_order)
{
	need_all();
	_cleanup_free_ char *data = tu_path(dirs.tmp, "data");
	tu_write(data, "app/main.c", "int main;\n");
	tu_write(data, "README", "read me\n");
	_cleanup_free_ char *dl = tu_ok(tu_lf(dirs.store, "import", data, "--tag", "data", NULL));
	dl[strcspn(dl, "\n")] = 0;

	_cleanup_free_ char *out = tu_ok(lx(
	    "--json", "exec", "--mount", "type=bind,target=/src,source=data,selector=/app,readonly",
	    "--mount", "type=bind,target=/ro-out,source=data,readonly,output", "--mount",
	    "type=bind,target=/work,source=data", "--mount", "type=bind,target=/out,output", "bb",
	    "--", "sh", "-c",
	    "cat /src/main.c > /out/copy && ! touch /src/x 2>/dev/null && "
	    "echo scratch > /work/new && cat /work/README >> /out/copy && ! ls /src/app "
	    "2>/dev/null",
	    NULL));
	_cleanup_free_ char *rl = output_of(out, "/"), *ro = output_of(out, "/ro-out"),
			    *ol = output_of(out, "/out");
	cr_assert_not_null(rl, "%s", out);
	cr_assert_str_eq(ro, dl, "a readonly output is its input layer");
	_cleanup_free_ char *wl = output_of(out, "/work");
	cr_assert_null(wl, "a bind without output is no output");
	cr_assert_eq(count(out, "\"target\""), 3, "%s", out);
	cr_assert_lt(strstr(out, "/out\"") - out, strstr(out, "/ro-out") - out, "mount order");
	_cleanup_free_ char *d = tu_ok(tu_lf(dirs.store, "diff", ol, NULL));
	cr_assert_str_eq(d, "A /copy\n");
	_cleanup_free_ char *view = tu_path(dirs.tmp, "view");
	cr_assert_eq(mkdir(view, 0755), 0);
	free(tu_ok(tu_lf(dirs.store, "mount", ol, view, NULL)));
	_cleanup_free_ char *copy = tu_read(view, "copy");
	free(tu_ok(tu_lf(dirs.store, "umount", view, NULL)));
	cr_assert_str_eq(copy, "int main;\nread me\n");
	/* the mount points the sandbox needed were created only for it */
	_cleanup_free_ char *rd = tu_ok(tu_lf(dirs.store, "diff", rl, NULL));
	cr_assert_str_eq(rd, "");
	assert_clean(0);
}

Test(cli_exec, a_tmpfs_mount_is_fresh_nosuid_sized_and_discarded)
{
	need_all();
	_cleanup_free_ char *out = tu_ok(
	    lx("--json", "exec", "--mount", "type=tmpfs,target=/t,size=1048576", "bb", "--", "sh",
	       "-c",
	       "test -z \"$(ls /t)\" && echo x > /t/f && grep ' /t tmpfs ' /proc/mounts | grep "
	       "-q nosuid "
	       "&& grep ' /t tmpfs ' /proc/mounts | grep -q size=1024k",
	       NULL));
	expect(out, "exit_code", "0");
	_cleanup_free_ char *rl = output_of(out, "/");
	_cleanup_free_ char *d = tu_ok(tu_lf(dirs.store, "diff", rl, NULL));
	cr_assert_str_eq(d, "");
	assert_clean(0);
}

Test(cli_exec, a_cache_mount_keeps_a_counter_across_runs)
{
	need_all();
	const char *count_up =
	    "n=$(cat /c/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /c/n; echo $n";
	for (int i = 1; i <= 3; i++) {
		tu_run r = lx("exec", "--mount", "type=cache,target=/c,id=counter", "bb", "--",
			      "sh", "-c", count_up, NULL);
		cr_assert_eq(r.status, 0, "%s", r.err);
		char want[8];
		snprintf(want, sizeof want, "%d\n", i);
		cr_assert_str_eq(r.out, want);
		tu_run_free(&r);
	}
	/* another id is another cache */
	tu_run r = lx("exec", "--mount", "type=cache,target=/c,id=other", "bb", "--", "sh", "-c",
		      count_up, NULL);
	cr_assert_str_eq(r.out, "1\n");
	tu_run_free(&r);
	_cleanup_free_ char *ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	cr_assert_not_null(strstr(ls, "cached mount /c from exec sh -c"), "%s", ls);
	/* the root ref of each run was committed; only the two cache refs stay */
	assert_clean(2);
}

/* Starts `layerfs exec ARGS` in the background with stdout+stderr to OUT_PATH. */
static pid_t spawn(const char *out_path, const char *const *args)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test must not leave runs behind */
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		setenv("TMPDIR", dirs.tmp, 1);
		const char *argv[32] = {LAYERFS_BIN, "--root", dirs.store, "exec"};
		size_t n = 4;
		for (size_t i = 0; args[i]; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(LAYERFS_BIN, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits (up to 10 s) until a file named NAME exists in the upper dir of some ref. */
static void wait_upper_file(const char *name)
{
	for (int i = 0; i < 1000; i++) {
		if (tu_sh("ls %s/refs/*/upper/%s >/dev/null 2>&1", dirs.store, name) == 0)
			return;
		usleep(10000);
	}
	cr_assert_fail("no ref's upper holds %s", name);
}

/* Two runs of one cache at once, each writing its own name and looking (up to 3 s) for the
 * other's; returns what each saw. */
static void concurrent(const char *sharing, char **ret_a, char **ret_b)
{
	_cleanup_free_ char *spec = NULL;
	cr_assert(asprintf(&spec, "type=cache,target=/c,id=conc,sharing=%s", sharing) > 0);
#define LOOK(me, other)                                                                            \
	"echo > /c/" me "; i=0; while [ ! -e /c/" other " ] && [ $i -lt 30 ]; do sleep 0.1; "      \
	"i=$((i+1)); done; ls /c | tr '\\n' ' '"
	const char *sa = LOOK("a", "b"), *sb = LOOK("b", "a");
	_cleanup_free_ char *oa = tu_path(dirs.tmp, "a.out"), *ob = tu_path(dirs.tmp, "b.out");
	const char *aa[] = {"--mount", spec, "bb", "--", "sh", "-c", sa, NULL};
	const char *ab[] = {"--mount", spec, "bb", "--", "sh", "-c", sb, NULL};
	pid_t pa = spawn(oa, aa);
	wait_upper_file("a");
	pid_t pb = spawn(ob, ab);
	cr_assert_eq(wait_status(pa), 0);
	cr_assert_eq(wait_status(pb), 0);
	*ret_a = tu_read(dirs.tmp, "a.out");
	*ret_b = tu_read(dirs.tmp, "b.out");
}

Test(cli_exec, shared_cache_mounts_are_one_ref_for_concurrent_runs)
{
	need_all();
	_cleanup_free_ char *a = NULL, *b = NULL;
	concurrent("shared", &a, &b);
	cr_assert_eq(strncmp(a, "a b exit status 0\n", 18), 0, "%s", a);
	cr_assert_eq(strncmp(b, "a b exit status 0\n", 18), 0, "%s", b);
	assert_clean(1);
}

Test(cli_exec, a_private_cache_mount_gives_a_concurrent_run_its_own_ref)
{
	need_all();
	_cleanup_free_ char *a = NULL, *b = NULL;
	concurrent("private", &a, &b);
	cr_assert_eq(strncmp(a, "a exit status 0\n", 16), 0, "%s", a);
	cr_assert_eq(strncmp(b, "b exit status 0\n", 16), 0, "%s", b);
	assert_clean(2);
	/* later runs reuse the first free one */
	tu_run r = lx("exec", "--mount", "type=cache,target=/c,id=conc,sharing=private", "bb", "--",
		      "ls", "/c", NULL);
	cr_assert(strcmp(r.out, "a\n") == 0 || strcmp(r.out, "b\n") == 0, "%s", r.out);
	tu_run_free(&r);
	assert_clean(2);
}

Test(cli_exec, a_locked_cache_mount_makes_a_concurrent_run_wait)
{
	need_all();
	const char *spec = "type=cache,target=/c,id=lk,sharing=locked";
	const char *aa[] = {
	    "--mount", spec, "bb", "--", "sh", "-c", "echo A >> /c/log; sleep 1; echo A >> /c/log",
	    NULL};
	const char *ab[] = {
	    "--mount", spec, "bb", "--", "sh", "-c", "echo B >> /c/log; echo B >> /c/log", NULL};
	_cleanup_free_ char *oa = tu_path(dirs.tmp, "a.out"), *ob = tu_path(dirs.tmp, "b.out");
	pid_t pa = spawn(oa, aa);
	wait_upper_file("log");
	pid_t pb = spawn(ob, ab);
	cr_assert_eq(wait_status(pa), 0);
	cr_assert_eq(wait_status(pb), 0);
	tu_run r = lx("exec", "--mount", spec, "bb", "--", "cat", "/c/log", NULL);
	cr_assert_str_eq(r.out, "A\nA\nB\nB\n");
	tu_run_free(&r);
	assert_clean(1);
}

Test(cli_exec, cache_returns_the_stored_outputs_without_running)
{
	need_all();
	/* the cache mount counts real runs; it is no input, so the key does not see it */
	const char *cmd =
	    "n=$(cat /c/n 2>/dev/null || echo 0); echo $((n+1)) > /c/n; echo built > /built";
	const char *m = "type=cache,target=/c,id=runs";
	_cleanup_free_ char *o1 =
	    tu_ok(lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "sh", "-c", cmd, NULL));
	_cleanup_free_ char *o2 =
	    tu_ok(lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "sh", "-c", cmd, NULL));
	expect(o1, "cached", "false");
	expect(o2, "cached", "true");
	same(o1, o2, "cache_key", false);
	same(o1, o2, "/", true);
	tu_run r = lx("exec", "--mount", m, "bb", "--", "cat", "/c/n", NULL);
	cr_assert_str_eq(r.out, "1\n", "the cached run must not have run");
	tu_run_free(&r);

	/* without --cache it runs again, and its result replaces the stored one */
	_cleanup_free_ char *o3 =
	    tu_ok(lx("--json", "exec", "--mount", m, "bb", "--", "sh", "-c", cmd, NULL));
	expect(o3, "cached", "false");
	r = lx("exec", "--mount", m, "bb", "--", "cat", "/c/n", NULL);
	cr_assert_str_eq(r.out, "2\n");
	tu_run_free(&r);

	_cleanup_free_ char *o3b =
	    tu_ok(lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "sh", "-c", cmd, NULL));
	expect(o3b, "cached", "true");
	same(o3b, o3, "/", true);

	/* an entry whose output layer was removed is not answered */
	_cleanup_free_ char *layer = output_of(o3, "/");
	free(tu_ok(tu_lf(dirs.store, "rm", layer, NULL)));
	_cleanup_free_ char *o4 =
	    tu_ok(lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "sh", "-c", cmd, NULL));
	expect(o4, "cached", "false");
	r = lx("exec", "--mount", m, "bb", "--", "cat", "/c/n", NULL);
	cr_assert_str_eq(r.out, "3\n");
	tu_run_free(&r);
	assert_clean(1);
}

Test(cli_exec, a_failed_run_is_not_cached)
{
	need_all();
	tu_run r = lx("--json", "exec", "--cache", "bb", "--", "sh", "-c", "exit 4", NULL);
	cr_assert_eq(r.status, 4);
	tu_run_free(&r);
	r = lx("--json", "exec", "--cache", "bb", "--", "sh", "-c", "exit 4", NULL);
	cr_assert_eq(r.status, 4);
	expect(r.out, "cached", "false");
	tu_run_free(&r);
}

/* The cache key of `exec --json ARGS...` (it runs, too). */
static char *key_of(const char *first, ...)
{
	const char *argv[40] = {"--root", dirs.store, "--json", "exec", first};
	size_t n = 5;
	va_list ap;
	va_start(ap, first);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	tu_run r = tu_layerfs(tmpenv_list, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	char *k = tu_json_field(r.out, "cache_key");
	tu_run_free(&r);
	cr_assert_eq(strlen(k), 71, "%s", k);
	return k;
}

/* Imports DIR's tree as tag TAG (moving it). */
static void import_as(const char *dir, const char *tag)
{
	free(tu_ok(tu_lf(dirs.store, "import", dir, "--tag", tag, NULL)));
}

Test(cli_exec, the_key_follows_a_read_only_inputs_selector_only)
{
	need_all();
	_cleanup_free_ char *d = tu_path(dirs.tmp, "d");
	tu_write(d, "app/a", "1\n");
	tu_write(d, "other", "x\n");
	import_as(d, "src");
	const char *m = "type=bind,target=/src,source=src,selector=/app,readonly";
	_cleanup_free_ char *k1 = key_of("--mount", m, "bb", "--", "cat", "/src/a", NULL);
	tu_write(d, "other", "y\n"); /* outside the selector */
	import_as(d, "src");
	_cleanup_free_ char *k2 = key_of("--mount", m, "bb", "--", "cat", "/src/a", NULL);
	cr_assert_str_eq(k1, k2);
	tu_write(d, "app/a", "2\n"); /* inside */
	import_as(d, "src");
	_cleanup_free_ char *k3 = key_of("--mount", m, "bb", "--", "cat", "/src/a", NULL);
	cr_assert_str_neq(k1, k3);

	/* and with --cache: outside the selector is answered, inside reruns */
	tu_write(d, "app/a", "1\n");
	tu_write(d, "other", "x\n");
	import_as(d, "src");
	free(tu_ok(
	    lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "cat", "/src/a", NULL)));
	tu_write(d, "other", "z\n");
	import_as(d, "src");
	_cleanup_free_ char *o =
	    tu_ok(lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "cat", "/src/a", NULL));
	expect(o, "cached", "true");
	tu_write(d, "app/a", "3\n");
	import_as(d, "src");
	tu_run r = lx("--json", "exec", "--cache", "--mount", m, "bb", "--", "cat", "/src/a", NULL);
	expect(r.out, "cached", "false");
	cr_assert_str_eq(r.err, "3\n", "it ran over the new content");
	tu_run_free(&r);
}

Test(cli_exec, a_byte_anywhere_in_the_root_changes_the_key)
{
	need_all();
	_cleanup_free_ char *k1 = key_of("bb", "--", "true", NULL);
	tu_write(rootfs, "usr/share/doc/x", "1\n");
	import_as(rootfs, "bb");
	_cleanup_free_ char *k2 = key_of("bb", "--", "true", NULL);
	tu_write(rootfs, "usr/share/doc/x", "2\n");
	import_as(rootfs, "bb");
	_cleanup_free_ char *k3 = key_of("bb", "--", "true", NULL);
	cr_assert_str_neq(k1, k2);
	cr_assert_str_neq(k2, k3);
	cr_assert_str_neq(k1, k3);
}

Test(cli_exec, a_whole_input_next_to_a_sub_path_mount_keys_on_the_whole_input)
{
	need_all();
	_cleanup_free_ char *d = tu_path(dirs.tmp, "d");
	tu_write(d, "app/a", "1\n");
	tu_write(d, "other", "x\n");
	import_as(d, "src");
	const char *m1 = "type=bind,target=/a,source=src,selector=/app,readonly";
	const char *m2 = "type=bind,target=/b,source=src,readonly";
	_cleanup_free_ char *k1 = key_of("--mount", m1, "--mount", m2, "bb", "--", "true", NULL);
	tu_write(d, "other", "y\n");
	import_as(d, "src");
	_cleanup_free_ char *k2 = key_of("--mount", m1, "--mount", m2, "bb", "--", "true", NULL);
	cr_assert_str_neq(k1, k2, "/other is seen through the whole-input mount");
}

Test(cli_exec, gemfile_does_not_cover_gemfile_lock)
{
	need_all();
	_cleanup_free_ char *d = tu_path(dirs.tmp, "d");
	tu_write(d, "Gemfile/g", "gem 'x'\n");
	tu_write(d, "Gemfile.lock/l", "x (1.0)\n");
	import_as(d, "src");
	const char *m1 = "type=bind,target=/g,source=src,selector=/Gemfile,readonly";
	const char *m2 = "type=bind,target=/l,source=src,selector=/Gemfile.lock,readonly";
	_cleanup_free_ char *k1 = key_of("--mount", m1, "--mount", m2, "bb", "--", "true", NULL);
	tu_write(d, "Gemfile.lock/l", "x (2.0)\n");
	import_as(d, "src");
	_cleanup_free_ char *k2 = key_of("--mount", m1, "--mount", m2, "bb", "--", "true", NULL);
	cr_assert_str_neq(k1, k2);
}

Test(cli_exec, proxy_variables_reach_the_command_but_not_the_key)
{
	need_all();
	tu_run r = lx("exec", "--proxy-env", "HTTP_PROXY=http://p1:3128", "bb", "--", "sh", "-c",
		      "echo $HTTP_PROXY $http_proxy", NULL);
	cr_assert_str_eq(r.out, "http://p1:3128 http://p1:3128\n");
	tu_run_free(&r);
	_cleanup_free_ char *k1 =
	    key_of("--proxy-env", "HTTP_PROXY=http://p1:3128", "bb", "--", "true", NULL);
	_cleanup_free_ char *k2 =
	    key_of("--proxy-env", "HTTP_PROXY=http://p2:3128", "bb", "--", "true", NULL);
	_cleanup_free_ char *k3 = key_of("bb", "--", "true", NULL);
	cr_assert_str_eq(k1, k2);
	cr_assert_str_eq(k1, k3);
	_cleanup_free_ char *k4 = key_of("--env", "A=1", "bb", "--", "true", NULL);
	cr_assert_str_neq(k1, k4);
}

Test(cli_exec, mounts_are_part_of_the_key)
{
	need_all();
	_cleanup_free_ char *k1 = key_of("bb", "--", "true", NULL);
	_cleanup_free_ char *k2 =
	    key_of("--mount", "type=tmpfs,target=/t", "bb", "--", "true", NULL);
	_cleanup_free_ char *k3 =
	    key_of("--mount", "type=tmpfs,target=/u", "bb", "--", "true", NULL);
	_cleanup_free_ char *k4 =
	    key_of("--mount", "type=cache,target=/t", "bb", "--", "true", NULL);
	cr_assert_str_neq(k1, k2);
	cr_assert_str_neq(k2, k3);
	cr_assert_str_neq(k2, k4);
}

Test(cli_exec, an_interrupted_run_leaves_no_mount_and_no_ref)
{
	need_all();
	_cleanup_free_ char *o = tu_path(dirs.tmp, "o.out");
	const char *args[] = {"--mount",
			      "type=bind,target=/out,output",
			      "--mount",
			      "type=cache,target=/c",
			      "bb",
			      "--",
			      "sh",
			      "-c",
			      "echo > /c/started; sleep 30",
			      NULL};
	pid_t pid = spawn(o, args);
	wait_upper_file("started");
	cr_assert_eq(kill(pid, SIGTERM), 0);
	int st = wait_status(pid);
	cr_assert_eq(st, 143, "status %d", st);
	assert_clean(1);
	_cleanup_free_ char *fsck = tu_ok(tu_lf(dirs.store, "fsck", NULL));
	(void)fsck;
}

/* kill -9 of the run itself: no handler runs.  Its views end with it all the same (kernel
 * views with the run's mount namespace, FUSE views with their servers, which watch it), and
 * fsck releases the refs it made and removes its directory. */
/* Whether a process other than this one was started with the argument ARG (its servers keep
 * the command line of the run that forked them). */
static bool a_process_has_arg(const char *arg)
{
	DIR *d = opendir("/proc");
	cr_assert_not_null(d);
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9' || atoi(de->d_name) == getpid())
			continue;
		char path[300];
		snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
		_cleanup_free_ char *cmd = NULL;
		size_t len = 0;
		if (lyr_read_file(path, &cmd, &len) < 0)
			continue;
		for (size_t off = 0; !found && off < len; off += strlen(cmd + off) + 1)
			found = strcmp(cmd + off, arg) == 0;
	}
	closedir(d);
	return found;
}

Test(cli_exec, a_run_killed_with_sigkill_leaves_no_mount_and_fsck_the_rest)
{
	need_all();
	_cleanup_free_ char *o = tu_path(dirs.tmp, "o.out");
	const char *args[] = {"--mount", "type=bind,target=/out,output", "bb", "--", "sh", "-c",
			      "echo > /started; sleep 30", NULL};
	pid_t pid = spawn(o, args);
	wait_upper_file("started");
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(wait_status(pid), 128 + SIGKILL);
	_cleanup_free_ char *mounts = NULL;
	for (int i = 0; i < 500; i++) {
		free(mounts);
		mounts = NULL;
		cr_assert_eq(lyr_read_file("/proc/self/mountinfo", &mounts, NULL), 0);
		if (!strstr(mounts, dirs.tmp))
			break;
		usleep(10000);
	}
	cr_assert_null(strstr(mounts, dirs.tmp), "a mount is left below %s:\n%s", dirs.tmp, mounts);
	/* the servers release what the run made after their mounts are gone: fsck comes after */
	for (int i = 0; i < 500 && a_process_has_arg(dirs.store); i++)
		usleep(10000);
	cr_assert(!a_process_has_arg(dirs.store), "a server of the run is still there after 5 s");
	free(tu_ok(tu_lf(dirs.store, "fsck", "--repair", NULL)));
	assert_clean(0);
	_cleanup_free_ char *ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	cr_assert_eq(count(ls, "\"refs\":[]"), 1, "%s", ls);
}

/* A root the kernel cannot show (it holds OCI/AUFS markers) is served by FUSE, in the host's
 * mount namespace; a view after it through the kernel moves the run into a namespace of its
 * own.  The run ends each view in the namespace it was mounted in: unmounted from the run's
 * own, the FUSE root lost only its copy there, its server never saw the end of the mount, and
 * the run waited for that server forever with the root still mounted on the host. */
Test(cli_exec, a_fuse_root_beside_kernel_views_is_unmounted_where_it_was_mounted)
{
	need_all();
	tu_need_kernel_overlay();
	tu_backend("auto");
	_cleanup_free_ char *ref = tu_ok(tu_lf(dirs.store, "new", "bb", NULL));
	ref[64] = '\0';
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	tu_write(upper, ".wh.gone", "");
	free(tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "aufs", NULL)));
	_cleanup_free_ char *o = tu_path(dirs.tmp, "o.out");
	const char *args[] = {"--mount", "type=bind,target=/out,output", "aufs", "--", "sh", "-c",
			      "echo made > /out/f && grep -c ' / fuse.layerfs ' /proc/mounts", NULL};
	pid_t pid = spawn(o, args);
	int st = -1;
	for (int i = 0; i < 2000 && waitpid(pid, &st, WNOHANG) == 0; i++)
		usleep(10000);
	bool hung = kill(pid, 0) == 0;
	if (hung) {
		kill(pid, SIGKILL); /* its FUSE server sees it go and unmounts the root */
		waitpid(pid, &st, 0);
	}
	_cleanup_free_ char *text = tu_read(dirs.tmp, "o.out");
	cr_assert(!hung, "the run did not end after its command: %s", text);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", text);
	cr_assert(tu_has_line(text, "1"), "the root is not the FUSE one: %s", text);
	/* what went through the kernel view is committed */
	const char *line = strstr(text, "\n/out ");
	cr_assert_not_null(line, "%s", text);
	_cleanup_free_ char *layer = strndup(strstr(line, "sha256:"), 71);
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", layer, NULL));
	cr_assert_str_eq(diff, "A /f\n");
	assert_clean(0);
}

Test(cli_exec, a_user_runs_as_that_user_over_the_fuse_root)
{
	need_all();
	tu_run r = lx("exec", "--user", "1000:1000", "bb", "--", "sh", "-c",
		      "id -u; id -g; cat /etc/passwd >/dev/null && echo read", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "1000\n1000\nread\n");
	tu_run_free(&r);
}

Test(cli_exec, a_symlink_in_the_root_does_not_lead_a_mount_to_the_hosts_etc)
{
	need_all();
	_cleanup_free_ char *evil = tu_path(rootfs, "evil");
	cr_assert_eq(symlink("/etc", evil), 0);
	import_as(rootfs, "bb");
	_cleanup_free_ char *name = NULL;
	cr_assert(asprintf(&name, "/etc/layerfs-exec-evil-%d", (int)getpid()) > 0);
	_cleanup_free_ char *target = NULL;
	cr_assert(asprintf(&target, "type=tmpfs,target=/evil/layerfs-exec-evil-%d", (int)getpid()) >
		  0);
	tu_run r = lx("exec", "--mount", target, "bb", "--", "true", NULL);
	tu_run_free(&r);
	cr_assert_eq(access(name, F_OK), -1, "%s was created on the host", name);
	assert_clean(0);
}

Test(cli_exec, device_nodes_in_the_root_view_stay_inert)
{
	need_all();
	/* One node comes with the layer, as a committed earlier run would leave it. */
	_cleanup_free_ char *mem = tu_path(rootfs, "mem");
	cr_assert_eq(mknod(mem, S_IFCHR | 0666, makedev(1, 1)), 0);
	import_as(rootfs, "bb");
	tu_run r = lx("exec", "bb", "--", "sh", "-c",
		      "cat /mem; mknod /null2 c 1 3 && cat /null2; cat /dev/null && echo ok", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "ok\n");
	cr_assert_not_null(strstr(r.err, "cat: can't open '/mem': Permission denied\n"
					 "cat: can't open '/null2': Permission denied\n"),
			   "%s", r.err);
	tu_run_free(&r);
	assert_clean(0);
}

Test(cli_exec, a_mount_target_leading_back_to_the_root_fails_like_slash)
{
	need_all();
	_cleanup_free_ char *tmp = tu_path(rootfs, "tmp");
	cr_assert_eq(symlink("/", tmp), 0);
	import_as(rootfs, "bb");
	tu_run r = lx("exec", "--mount", "type=tmpfs,target=/tmp", "bb", "--", "true", NULL);
	cr_assert_eq(r.status, 125, "%s", r.err);
	cr_assert_str_eq(
	    r.err,
	    "layerfs: exec: mount target '/tmp': resolves to '/' inside the root, not below it\n");
	tu_run_free(&r);
	assert_clean(0);
}

Test(cli_exec, a_spec_file_describes_the_whole_op)
{
	need_all();
	_cleanup_free_ char *spec = tu_path(dirs.tmp, "op.json");
	tu_write(dirs.tmp, "op.json",
		 "{\"root\": \"bb\", \"args\": [\"sh\", \"-c\", \"echo $X > /out/x; hostname\"],"
		 " \"env\": [\"X=42\"], \"hostname\": \"builder\","
		 " \"mounts\": [{\"type\": \"bind\", \"target\": \"/out\", \"output\": true}]}");
	tu_run r = lx("--json", "exec", "--spec", spec, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "builder\n");
	_cleanup_free_ char *ol = output_of(r.out, "/out");
	_cleanup_free_ char *d = tu_ok(tu_lf(dirs.store, "diff", ol, NULL));
	cr_assert_str_eq(d, "A /x\n");
	tu_run_free(&r);
	r = lx("exec", "--spec", spec, "--env", "A=1", NULL);
	cr_assert_eq(r.status, 2);
	tu_run_free(&r);
	r = lx("exec", "--spec", "/dev/zero", NULL);
	cr_assert_eq(r.status, 125);
	cr_assert_str_eq(r.err,
			 "layerfs exec: spec '/dev/zero': larger than the limit of 16 MiB\n");
	tu_run_free(&r);
}

Test(cli_exec, stdin_reaches_the_command_only_with_i)
{
	need_all();
	_cleanup_free_ char *o1 = tu_path(dirs.tmp, "i.out"), *o2 = tu_path(dirs.tmp, "n.out");
	cr_assert_eq(tu_sh("echo piped | TMPDIR=%s %s --root %s exec -i bb -- cat > %s 2>/dev/null",
			   dirs.tmp, LAYERFS_BIN, dirs.store, o1),
		     0);
	cr_assert_eq(tu_sh("echo piped | TMPDIR=%s %s --root %s exec bb -- cat > %s 2>/dev/null",
			   dirs.tmp, LAYERFS_BIN, dirs.store, o2),
		     0);
	_cleanup_free_ char *with = tu_read(dirs.tmp, "i.out"),
			    *without = tu_read(dirs.tmp, "n.out");
	cr_assert_str_eq(with, "piped\n");
	cr_assert_str_eq(without, "");
}

Test(cli_exec, usage_errors_exit_2_and_name_the_problem)
{
	need_all();
	tu_run r = lx("exec", "--mount", "type=bind,tagret=/x", "bb", "--", "true", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "tagret"), "%s", r.err);
	tu_run_free(&r);
	r = lx("exec", "bb", NULL);
	cr_assert_eq(r.status, 2);
	tu_run_free(&r);
	r = lx("exec", "--mount", "type=cache,target=/c,source=bb-ref-missing", "bb", "--", "true",
	       NULL);
	cr_assert_eq(r.status, 125);
	tu_run_free(&r);
	_cleanup_free_ char *ref = tu_ok(tu_lf(dirs.store, "new", "bb", NULL));
	ref[strcspn(ref, "\n")] = 0;
	_cleanup_free_ char *spec = NULL;
	cr_assert(asprintf(&spec, "type=bind,target=/o,source=%s,readonly,output", ref) > 0);
	r = lx("exec", "--mount", spec, "bb", "--", "true", NULL);
	cr_assert_eq(r.status, 125);
	_cleanup_free_ char *want = NULL;
	cr_assert(
	    asprintf(&want,
		     "layerfs: exec: mount '/o': source '%s' is a ref; outputs need a layer\n",
		     ref) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	free(tu_ok(tu_lf(dirs.store, "rm", ref, NULL)));
	assert_clean(0);
}

Test(cli_exec, a_run_waiting_for_a_locked_cache_ends_on_sigterm_and_leaves_nothing)
{
	need_all();
	const char *spec = "type=cache,target=/c,id=lk,sharing=locked";
	const char *aa[] = {"--mount", spec, "bb", "--", "sh", "-c", "echo > /c/held; sleep 30",
			    NULL};
	const char *ab[] = {"--mount", spec, "--mount", "type=bind,target=/out,output",
			    "bb",      "--", "true",	NULL};
	_cleanup_free_ char *oa = tu_path(dirs.tmp, "a.out"), *ob = tu_path(dirs.tmp, "b.out");
	pid_t pa = spawn(oa, aa);
	wait_upper_file("held");
	pid_t pb = spawn(ob, ab);
	/* B waits for the lock (/proc/locks lists it as a blocked flock of its pid) */
	char waiter[32];
	snprintf(waiter, sizeof waiter, "-> FLOCK  ADVISORY  WRITE %d ", (int)pb);
	bool waiting = false;
	for (int i = 0; i < 1000 && !waiting; i++) {
		_cleanup_free_ char *locks = NULL;
		cr_assert_eq(lyr_read_file("/proc/locks", &locks, NULL), 0);
		waiting = strstr(locks, waiter) != NULL;
		if (!waiting) {
			cr_assert_eq(waitpid(pb, NULL, WNOHANG), 0, "B did not wait for the lock");
			usleep(10000);
		}
	}
	cr_assert(waiting, "B never waited for the locked cache");
	cr_assert_eq(kill(pb, SIGTERM), 0);
	cr_assert_eq(wait_status(pb), 143);
	_cleanup_free_ char *out = tu_read(dirs.tmp, "b.out");
	cr_assert_str_eq(out, "layerfs: exec: interrupted by signal 15 before the command ran\n"
			      "exit status 143\n");
	cr_assert_eq(kill(pa, SIGTERM), 0);
	cr_assert_eq(wait_status(pa), 143);
	assert_clean(1);
}

Test(cli_exec, a_ref_root_is_used_in_place_and_has_no_cache_key)
{
	need_all();
	_cleanup_free_ char *ref = tu_ok(tu_lf(dirs.store, "new", "bb", "--desc", "work", NULL));
	ref[strcspn(ref, "\n")] = 0;
	_cleanup_free_ char *out =
	    tu_ok(lx("--json", "exec", "--cache", ref, "--", "sh", "-c", "echo 1 >> /f", NULL));
	/* the root view's backend: whichever this suite runs on */
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "{\"exit_code\":0,\"cache_key\":null,\"cached\":false,\"backend\":\"%s\","
			   "\"outputs\":[]}\n",
			   tu_backend_kernel() ? "kernel" : "fuse") > 0);
	cr_assert_str_eq(out, want);
	free(tu_ok(lx("exec", ref, "--", "sh", "-c", "echo 2 >> /f", NULL)));
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", ref, NULL));
	cr_assert_str_eq(diff, "A /f\n");
	/* read through a read-only bind of the ref, and written through a writable one */
	_cleanup_free_ char *ro = NULL, *rw = NULL;
	cr_assert(asprintf(&ro, "type=bind,target=/r,source=%s,readonly", ref) > 0);
	tu_run r = lx("exec", "--mount", ro, "bb", "--", "cat", "/r/f", NULL);
	cr_assert_str_eq(r.out, "1\n2\n");
	tu_run_free(&r);
	cr_assert(asprintf(&rw, "type=bind,target=/w,source=%s", ref) > 0);
	free(tu_ok(lx("exec", "--mount", rw, "bb", "--", "sh", "-c", "echo 3 >> /w/f", NULL)));
	_cleanup_free_ char *view = tu_path(dirs.tmp, "view");
	cr_assert_eq(mkdir(view, 0755), 0);
	free(tu_ok(tu_lf(dirs.store, "mount", ref, view, NULL)));
	_cleanup_free_ char *f = tu_read(view, "f");
	free(tu_ok(tu_lf(dirs.store, "umount", view, NULL)));
	cr_assert_str_eq(f, "1\n2\n3\n");
	assert_clean(1);
}

Test(cli_exec, a_cache_mount_whose_server_died_is_mounted_afresh)
{
	need_all();
	tu_backend("fuse"); /* a serving process to kill */
	const char *m = "type=cache,target=/c,id=k";
	free(tu_ok(lx("exec", "--mount", m, "bb", "--", "sh", "-c", "echo 1 > /c/n", NULL)));
	_cleanup_free_ char *ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	const char *refs = strstr(ls, "\"refs\":[{\"id\":\"");
	cr_assert_not_null(refs, "%s", ls);
	_cleanup_free_ char *ref = strndup(refs + 15, 64);
	_cleanup_free_ char *mp = NULL;
	cr_assert(asprintf(&mp, "%s/refs/%s/mnt", dirs.store, ref) > 0);
	/* what a run killed with SIGKILL leaves when its cache's server dies too */
	_cleanup_free_ char *out = tu_ok(tu_lf(dirs.store, "--json", "mount", ref, mp, NULL));
	_cleanup_free_ char *pid = tu_json_field(out, "pid");
	cr_assert_eq(kill(atoi(pid), SIGKILL), 0);
	for (int i = 0; i < 500 && access(mp, F_OK) == 0; i++)
		usleep(10000);
	tu_run r = lx("exec", "--mount", m, "bb", "--", "cat", "/c/n", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "1\n");
	tu_run_free(&r);
	assert_clean(1);
}

Test(cli_exec, prune_all_drops_stored_results_even_of_kept_layers)
{
	need_all();
	_cleanup_free_ char *o1 =
	    tu_ok(lx("--json", "exec", "--cache", "bb", "--", "sh", "-c", "echo > /f", NULL));
	_cleanup_free_ char *layer = output_of(o1, "/");
	free(tu_ok(tu_lf(dirs.store, "tag", "keep", layer, NULL)));
	_cleanup_free_ char *o2 =
	    tu_ok(lx("--json", "exec", "--cache", "bb", "--", "sh", "-c", "echo > /f", NULL));
	expect(o2, "cached", "true");
	free(tu_ok(tu_lf(dirs.store, "prune", NULL)));
	_cleanup_free_ char *o3 =
	    tu_ok(lx("--json", "exec", "--cache", "bb", "--", "sh", "-c", "echo > /f", NULL));
	expect(o3, "cached", "true"); /* plain prune keeps results whose layers stay */
	free(tu_ok(tu_lf(dirs.store, "prune", "--all", NULL)));
	_cleanup_free_ char *o4 =
	    tu_ok(lx("--json", "exec", "--cache", "bb", "--", "sh", "-c", "echo > /f", NULL));
	expect(o4, "cached", "false");
}

Test(cli_exec, the_command_is_confined_with_the_default_capabilities)
{
	need_all();
	tu_run r = lx("exec", "bb", "--", "sh", "-c",
		      "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; "
		      "ls /proc | grep -c '^[0-9]'",
		      NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* init, sh, ls and grep: no host process is visible */
	cr_assert_str_eq(r.out, "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n"
				"NoNewPrivs:\t1\n4\n");
	tu_run_free(&r);
}

Test(cli_exec, a_selector_through_a_symlink_stays_inside_the_source_view)
{
	need_all();
	_cleanup_free_ char *d = tu_path(dirs.tmp, "d");
	tu_write(d, "etc/hostname", "inner\n");
	_cleanup_free_ char *evil = tu_path(d, "evil");
	cr_assert_eq(symlink("/etc", evil), 0);
	import_as(d, "src");
	tu_run r = lx("exec", "--mount", "type=bind,target=/x,source=src,selector=/evil,readonly",
		      "bb", "--", "ls", "/x", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "hostname\n", "the host's /etc was mounted");
	tu_run_free(&r);
	assert_clean(0);
}

Test(cli_exec, one_cache_at_two_targets_is_one_ref_and_is_unmounted_after)
{
	need_all();
	tu_run r = lx("exec", "--mount", "type=cache,target=/a,id=both", "--mount",
		      "type=cache,target=/b,id=both", "bb", "--", "sh", "-c",
		      "echo x > /a/f; cat /b/f", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "x\n");
	tu_run_free(&r);
	assert_clean(1);
}

/* A bind whose selector is a file binds that file (BuildKit's bind of a single file): onto a new
 * name, which is gone again after the run, or over a file of the root; read-only when asked;
 * as an output, the write lands in the output layer.  A file onto a directory is refused by
 * name. */
Test(cli_exec, a_bind_with_a_file_selector_binds_the_file)
{
	need_all();
	tu_write(dirs.src, "conf/app.conf", "setting=1\n");
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "data", NULL)));
	tu_run r = lx("exec", "--mount",
		      "type=bind,target=/x/app.conf,source=data,selector=/conf/app.conf", "bb",
		      "--", "sh", "-c", "cat /x/app.conf; ls -l /x | grep -c conf", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "setting=1\n1\n");
	tu_run_free(&r);
	r = lx("exec", "--mount",
	       "type=bind,target=/etc/group,source=data,selector=/conf/app.conf,readonly", "bb",
	       "--", "sh", "-c", "cat /etc/group; echo x > /etc/group", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, "setting=1\n");
	cr_assert_not_null(strstr(r.err, "Read-only file system"), "%s", r.err);
	tu_run_free(&r);
	_cleanup_free_ char *json =
	    tu_ok(lx("--json", "exec", "--mount",
		     "type=bind,target=/c,source=data,selector=/conf/app.conf,"
		     "output",
		     "bb", "--", "sh", "-c", "echo setting=2 > /c", NULL));
	_cleanup_free_ char *out = output_of(json, "/c"), *root = output_of(json, "/");
	_cleanup_free_ char *d = tu_ok(tu_lf(dirs.store, "diff", out, NULL));
	cr_assert_str_eq(d, "C /conf\nC /conf/app.conf\n");
	/* the name made for the bind is not part of the root's output */
	_cleanup_free_ char *rd = tu_ok(tu_lf(dirs.store, "diff", root, NULL));
	cr_assert_str_eq(rd, "");
	r = lx("exec", "--mount", "type=bind,target=/etc,source=data,selector=/conf/app.conf", "bb",
	       "--", "true", NULL);
	tu_fails(r, 125,
		 "layerfs: exec: mount target '/etc': a directory, and the source is a file\n");
	assert_clean(0);
}

Test(cli_exec, the_default_filter_holds_over_a_layer_root_and_insecure_is_another_key)
{
	need_all();
	_cleanup_free_ char *d = tu_path(dirs.tmp, "probe-root");
	tu_busybox_root(d, applets, LYR_ARRAY_SIZE(applets), "root:x:0:0:root:/root:/bin/sh\n",
			"root:x:0:\n");
	tu_add_probe_syscalls(d);
	import_as(d, "probe");
	/* with --json the command's stdout is on stderr */
	tu_run r = lx("--json", "exec", "probe", "--", "probe-syscalls", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	static const char *const refused[] = {"unshare_user EPERM", "keyctl EPERM",
					      "bpf EPERM",	    "perf_event_open EPERM",
					      "kexec_load EPERM",   "open_by_handle_at EPERM",
					      "mount EPERM"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(refused); i++)
		cr_assert(tu_has_line(r.err, refused[i]), "%s not in:\n%s", refused[i], r.err);
	_cleanup_free_ char *k_sandbox = tu_json_field(r.out, "cache_key");
	tu_run_free(&r);

	r = lx("--json", "exec", "--security=insecure", "probe", "--", "probe-syscalls", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(tu_has_line(r.err, "unshare_user 0"), "%s", r.err);
	_cleanup_free_ char *k_insecure = tu_json_field(r.out, "cache_key");
	tu_run_free(&r);
	cr_assert_str_neq(k_sandbox, k_insecure);

	/* the same setting through --spec, and an explicit sandbox is the default */
	_cleanup_free_ char *spec = tu_path(dirs.tmp, "op.json");
	tu_write(
	    dirs.tmp, "op.json",
	    "{\"root\": \"probe\", \"args\": [\"probe-syscalls\"], \"security\": \"insecure\"}");
	r = lx("--json", "exec", "--spec", spec, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(tu_has_line(r.err, "unshare_user 0"), "%s", r.err);
	expect(r.out, "cache_key", k_insecure);
	tu_run_free(&r);
	r = lx("--json", "exec", "--security", "sandbox", "probe", "--", "probe-syscalls", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	expect(r.out, "cache_key", k_sandbox);
	tu_run_free(&r);

	r = lx("exec", "--security", "off", "probe", "--", "true", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err, "layerfs exec: security 'off': expected sandbox or insecure\n"
				"Try 'layerfs exec --help'.\n");
	tu_run_free(&r);
	assert_clean(0);
}
