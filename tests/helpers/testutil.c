/* Test helpers; see testutil.h.  Failures abort the test through Criterion's assertions. */
#include "testutil.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <poll.h>
#include <pty.h>
#include <regex.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "layerfs/tree.h"

extern char **environ;

/* Every temporary directory of a run of a test binary is named after the run (its runner's
 * pid, which the runner puts in the environment before it starts the tests' processes), so that
 * at the end the runner finds what a test whose teardown never ran (killed at its timeout, or
 * crashed) left there. */
#define RUN_ENV "LAYERFS_TEST_RUN"

static const char *tmp_base(void)
{
	const char *tmp = getenv("TMPDIR");
	return tmp && *tmp ? tmp : "/tmp";
}

char *tu_mkdtemp(void)
{
	const char *run = getenv(RUN_ENV);
	char *path;
	cr_assert(asprintf(&path, "%s/layerfs-test-%s%sXXXXXX", tmp_base(), run ? run : "",
			   run ? "-" : "") > 0);
	cr_assert_not_null(mkdtemp(path), "mkdtemp: %s", strerror(errno));
	return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (flag == FTW_DP)
		chmod(path, 0700);
	remove(path);
	return 0;
}

static int unlock_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D || flag == FTW_DNR)
		chmod(path, (st->st_mode & 07777) | 0700);
	return 0;
}

void tu_rmtree(const char *path)
{
	if (!path)
		return;
	nftw(path, unlock_one, 64, FTW_PHYS);
	nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS);
	/* nftw stops at PATH_MAX: a tree deeper than that goes through directory fds */
	lyr_tree_remove(AT_FDCWD, path);
}

void tu_dirs_init(tu_dirs *d)
{
	d->tmp = tu_mkdtemp();
	d->store = tu_path(d->tmp, "store");
	d->src = tu_path(d->tmp, "src");
}

void tu_dirs_fini(tu_dirs *d)
{
	tu_rmtree_unmounted(d->tmp);
	free(d->tmp);
	free(d->store);
	free(d->src);
	*d = (tu_dirs){0};
}

void tu_dirs_fini_mounted(tu_dirs *d)
{
	tu_umount_below(d->tmp);
	tu_dirs_fini(d);
}

char *tu_path(const char *dir, const char *rel)
{
	char *p;
	cr_assert(asprintf(&p, "%s/%s", dir, rel) > 0);
	return p;
}

void tu_write(const char *dir, const char *rel, const char *data)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	_cleanup_free_ char *parent = strdup(p);
	*strrchr(parent, '/') = '\0';
	cr_assert_eq(lyr_mkdir_p(parent, 0755), 0, "mkdir -p %s", parent);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "fopen %s: %s", p, strerror(errno));
	fputs(data, f);
	cr_assert_eq(fclose(f), 0);
}

char *tu_read(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	char *buf = NULL;
	if (lyr_read_file(p, &buf, NULL) < 0)
		return NULL;
	return buf;
}

static void drain(int fd, char **buf, size_t *len, size_t *cap, bool *open)
{
	if (*len + 4096 > *cap) {
		*cap = (*cap + 4096) * 2;
		*buf = realloc(*buf, *cap);
		cr_assert_not_null(*buf);
	}
	ssize_t r = read(fd, *buf + *len, *cap - *len - 1);
	if (r <= 0)
		*open = false;
	else
		*len += (size_t)r;
	(*buf)[*len] = '\0';
}

/* Opens where a child's output goes: a pipe, or a new pseudo-terminal in raw mode (no
 * newline translation, so the bytes read are the bytes written).  FDS[0] is read here,
 * FDS[1] becomes the child's descriptor; both are close-on-exec. */
static void open_sink(tu_sink kind, int fds[2])
{
	if (kind == TU_PIPE) {
		cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
		return;
	}
	cr_assert_eq(openpty(&fds[0], &fds[1], NULL, NULL, NULL), 0, "openpty: %s",
		     strerror(errno));
	struct termios t;
	cr_assert_eq(tcgetattr(fds[1], &t), 0);
	cfmakeraw(&t);
	cr_assert_eq(tcsetattr(fds[1], TCSANOW, &t), 0);
	cr_assert_eq(fcntl(fds[0], F_SETFD, FD_CLOEXEC), 0);
	cr_assert_eq(fcntl(fds[1], F_SETFD, FD_CLOEXEC), 0);
}

tu_run tu_cmd_on(tu_sink out_kind, tu_sink err_kind, const char *const *env,
		 const char *const *argv)
{
	int out[2], err[2];
	open_sink(out_kind, out);
	open_sink(err_kind, err);

	size_t n_env = 0, n_extra = 0;
	while (environ[n_env])
		n_env++;
	while (env && env[n_extra])
		n_extra++;
	char **envp = calloc(n_env + n_extra + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < n_env; i++) {
		bool overridden = false;
		for (size_t j = 0; j < n_extra; j++) {
			size_t kl = strcspn(env[j], "=");
			if (strncmp(environ[i], env[j], kl + 1) == 0)
				overridden = true;
		}
		if (!overridden)
			envp[k++] = environ[i];
	}
	for (size_t j = 0; j < n_extra; j++)
		envp[k++] = (char *)env[j];

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	pid_t pid;
	int r = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	cr_assert_eq(r, 0, "spawn %s: %s", argv[0], strerror(r));
	close(out[1]);
	close(err[1]);

	tu_run run = {0};
	size_t olen = 0, ocap = 0, elen = 0, ecap = 0;
	bool oopen = true, eopen = true;
	run.out = calloc(1, 1);
	run.err = calloc(1, 1);
	while (oopen || eopen) {
		struct pollfd p[2] = {{oopen ? out[0] : -1, POLLIN, 0}, {eopen ? err[0] : -1, POLLIN, 0}};
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[0].revents)
			drain(out[0], &run.out, &olen, &ocap, &oopen);
		if (p[1].revents)
			drain(err[0], &run.err, &elen, &ecap, &eopen);
	}
	close(out[0]);
	close(err[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	run.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return run;
}

tu_run tu_cmd(const char *const *env, const char *const *argv)
{
	return tu_cmd_on(TU_PIPE, TU_PIPE, env, argv);
}

/* argv with the built binary in front. */
static void layerfs_argv(const char *const *argv, const char *full[64])
{
	size_t i = 0;
	full[0] = LAYERFS_BIN;
	while (argv[i]) {
		cr_assert_lt(i + 2, 64);
		full[i + 1] = argv[i];
		i++;
	}
	full[i + 1] = NULL;
}

tu_run tu_layerfs(const char *const *env, const char *const *argv)
{
	const char *full[64];
	layerfs_argv(argv, full);
	return tu_cmd(env, full);
}

tu_run tu_layerfs_on(tu_sink out, tu_sink err, const char *const *env, const char *const *argv)
{
	const char *full[64];
	layerfs_argv(argv, full);
	return tu_cmd_on(out, err, env, full);
}

void tu_run_free(tu_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

bool tu_process_running(pid_t pid)
{
	_cleanup_free_ char *path = NULL, *stat = NULL;
	cr_assert(asprintf(&path, "/proc/%d/stat", (int)pid) > 0);
	if (lyr_read_file(path, &stat, NULL) < 0)
		return false;
	const char *p = strrchr(stat, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

bool tu_have_fuse(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

void tu_need_fuse(void)
{
	if (!tu_have_fuse())
		cr_skip_test("/dev/fuse cannot be opened here");
}

void tu_backend(const char *name)
{
	cr_assert_eq(setenv("LAYERFS_BACKEND", name, 1), 0);
}

static bool kernel_overlay(void)
{
	_cleanup_free_ char *fs = NULL;
	return geteuid() == 0 && lyr_read_file("/proc/filesystems", &fs, NULL) == 0 &&
	       strstr(fs, "\toverlay\n") != NULL;
}

bool tu_backend_kernel(void)
{
	const char *b = getenv("LAYERFS_BACKEND");
	if (b && strcmp(b, "fuse") == 0)
		return false;
	return (b && strcmp(b, "kernel") == 0) || kernel_overlay();
}

void tu_need_kernel_overlay(void)
{
	if (!kernel_overlay())
		cr_skip_test("kernel overlayfs needs root and the overlay module here");
}

/* tu_mounts_below without assertions (the runner has no test to fail): NULL on an error. */
static char *mounts_below(const char *dir)
{
	size_t dlen = strlen(dir);
	char *text = NULL;
	size_t len = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	FILE *out = open_memstream(&text, &len);
	if (!out) {
		fclose(f);
		return NULL;
	}
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		char *mp, *type;
		if (lyr_mountinfo_parse(line, &mp, &type) == 0 && strncmp(mp, dir, dlen) == 0 &&
		    (mp[dlen] == '/' || mp[dlen] == '\0'))
			fprintf(out, "%s (%s)\n", mp, type);
	}
	free(line);
	fclose(f);
	fclose(out);
	return text;
}

char *tu_mounts_below(const char *dir)
{
	char *text = mounts_below(dir);
	cr_assert_not_null(text, "/proc/self/mountinfo: %s", strerror(errno));
	return text;
}

void tu_umount_below(const char *dir)
{
	/* the most recent first, each lazily: what is busy goes once it is not */
	for (int round = 0; round < 64; round++) {
		_cleanup_free_ char *list = mounts_below(dir);
		if (!list)
			return;
		char *last = NULL;
		for (char *l = list; *l; l = strchr(l, '\n') + 1)
			last = l;
		if (!last)
			return;
		*strrchr(last, ' ') = '\0'; /* " (TYPE)" */
		umount2(last, MNT_DETACH);
	}
}

void tu_rmtree_unmounted(const char *dir)
{
	if (!dir)
		return;
	_cleanup_free_ char *left = tu_mounts_below(dir);
	tu_umount_below(dir);
	tu_rmtree(dir);
	if (*left) {
		/* an assertion here would not fail the test (Criterion 2.4 only logs it): the
		 * worker's exit status does, and the runner names the test */
		cr_log_error("the test left mounts behind below %s:\n%s", dir, left);
		fflush(NULL);
		_exit(1);
	}
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	char run[16];
	snprintf(run, sizeof run, "%d", (int)getpid());
	setenv(RUN_ENV, run, 1);
}

/* Once every test of the run has ended: unmounts and removes what the run's tests left in their
 * directories when their teardown never ran, and names the mounts.  The test itself already
 * failed (a timeout or a crash). */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	_cleanup_free_ char *pattern = NULL;
	if (asprintf(&pattern, "%s/layerfs-test-%d-*", tmp_base(), (int)getpid()) < 0)
		return;
	glob_t g;
	if (glob(pattern, GLOB_NOSORT, NULL, &g) != 0)
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		_cleanup_free_ char *left = mounts_below(g.gl_pathv[i]);
		if (left && *left)
			fprintf(stderr, "layerfs tests: a test whose teardown did not run left these "
					"mounted (now unmounted):\n%s",
				left);
		tu_umount_below(g.gl_pathv[i]);
		tu_rmtree(g.gl_pathv[i]);
	}
	globfree(&g);
}

void tu_need_busybox(void)
{
	if (access(TU_BUSYBOX, X_OK) != 0)
		cr_skip_test("needs %s (Debian package busybox-static)", TU_BUSYBOX);
}

void tu_busybox_root(const char *dir, const char *const *applets, size_t n, const char *passwd,
		     const char *group)
{
	_cleanup_free_ char *bin = tu_path(dir, "bin");
	cr_assert_eq(lyr_mkdir_p(bin, 0755), 0);
	cr_assert_eq(chmod(dir, 0755), 0);
	_cleanup_free_ char *bb = tu_path(dir, "bin/busybox");
	const char *cp[] = {"/bin/cp", TU_BUSYBOX, bb, NULL};
	tu_run r = tu_cmd(NULL, cp);
	cr_assert_eq(r.status, 0, "cp busybox: %s", r.err);
	tu_run_free(&r);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *l = tu_path(bin, applets[i]);
		cr_assert_eq(symlink("busybox", l), 0);
	}
	tu_write(dir, "etc/passwd", passwd);
	tu_write(dir, "etc/group", group);
}

bool tu_has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

void tu_add_probe_syscalls(const char *dir)
{
	_cleanup_free_ char *dst = tu_path(dir, "bin/probe-syscalls");
	const char *cp[] = {"/bin/cp", TU_PROBE_SYSCALLS, dst, NULL};
	tu_run r = tu_cmd(NULL, cp);
	cr_assert_eq(r.status, 0, "cp probe-syscalls: %s", r.err);
	tu_run_free(&r);
}

static tu_run lf_va(const char *const *env, const char *root, va_list ap)
{
	const char *argv[64] = {"--root", root};
	size_t n = 2;
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL) {
		cr_assert_lt(n + 1, LYR_ARRAY_SIZE(argv));
		argv[n++] = a;
	}
	argv[n] = NULL;
	return tu_layerfs(env, argv);
}

tu_run tu_lf(const char *root, ...)
{
	va_list ap;
	va_start(ap, root);
	tu_run r = lf_va(NULL, root, ap);
	va_end(ap);
	return r;
}

tu_run tu_lf_env(const char *const *env, const char *root, ...)
{
	va_list ap;
	va_start(ap, root);
	tu_run r = lf_va(env, root, ap);
	va_end(ap);
	return r;
}

char *tu_ok(tu_run r)
{
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	free(r.err);
	return r.out;
}

bool tu_matches(const char *re, const char *text)
{
	regex_t rx;
	cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0, "bad regex %s", re);
	bool ok = regexec(&rx, text, 0, NULL, 0) == 0;
	regfree(&rx);
	return ok;
}

void tu_fails(tu_run r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *want = NULL;
	cr_assert(vasprintf(&want, fmt, ap) >= 0);
	va_end(ap);
	cr_assert_eq(r.status, status, "exit %d, not %d: %s", r.status, status, r.err);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
}

char *tu_json_field(const char *json, const char *key)
{
	_cleanup_free_ char *k = NULL;
	cr_assert(asprintf(&k, "\"%s\":", key) > 0);
	const char *p = strstr(json, k);
	cr_assert_not_null(p, "%s not in %s", key, json);
	p += strlen(k);
	if (*p == '"')
		p++;
	return strndup(p, strcspn(p, "\",}"));
}

char *tu_ref_upper(const char *root, const char *ref)
{
	_cleanup_free_ char *info = tu_ok(tu_lf(root, "inspect", "--json", ref, NULL));
	return tu_json_field(info, "upper");
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the sorted entry names of ROOT/SUB to *OUT. */
static void append_names(char **out, const char *root, const char *sub)
{
	_cleanup_free_ char *dir = tu_path(root, sub);
	DIR *d = opendir(dir);
	char *names[4096];
	size_t n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) && n < LYR_ARRAY_SIZE(names))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			names[n++] = strdup(e->d_name);
	if (d)
		closedir(d);
	qsort(names, n, sizeof(char *), name_cmp);
	for (size_t i = 0; i < n; i++) {
		char *joined;
		cr_assert(asprintf(&joined, "%s%s/%s\n", *out, sub, names[i]) > 0);
		free(*out);
		*out = joined;
		free(names[i]);
	}
}

/* Appends the entries below ROOT/SUB (SUB "" for ROOT itself) to *OUT, names sorted, depth
 * first. */
static void append_tree(char **out, const char *root, const char *sub)
{
	_cleanup_free_ char *dir = *sub ? tu_path(root, sub) : strdup(root);
	DIR *d = opendir(dir);
	if (!d) {
		char *joined;
		cr_assert(asprintf(&joined, "%s%s/ (%s)\n", *out, sub, strerror(errno)) > 0);
		free(*out);
		*out = joined;
		return;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			names = realloc(names, (n + 1) * sizeof(*names));
			cr_assert_not_null(names);
			names[n++] = strdup(e->d_name);
		}
	closedir(d);
	if (n) /* an empty directory has no array, which qsort does not take */
		qsort(names, n, sizeof(char *), name_cmp);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *rel = NULL, *what = NULL;
		cr_assert(asprintf(&rel, "%s%s%s", sub, *sub ? "/" : "", names[i]) > 0);
		_cleanup_free_ char *path = tu_path(root, rel);
		struct stat st = {0};
		char *data = NULL;
		if (lstat(path, &st) < 0)
			cr_assert(asprintf(&what, " (%s)", strerror(errno)) > 0);
		else if (S_ISDIR(st.st_mode))
			what = strdup("/");
		else if (S_ISREG(st.st_mode) && lyr_read_file(path, &data, NULL) == 0)
			cr_assert(asprintf(&what, "=%s", data) > 0);
		else
			cr_assert(asprintf(&what, " (mode %o)", (unsigned)st.st_mode) > 0);
		free(data);
		char *joined;
		cr_assert(asprintf(&joined, "%s%s%s\n", *out, rel, what) > 0);
		free(*out);
		*out = joined;
		if (S_ISDIR(st.st_mode))
			append_tree(out, root, rel);
		free(names[i]);
	}
	free(names);
}

char *tu_tree_text(const char *dir)
{
	char *out = strdup("");
	cr_assert_not_null(out);
	append_tree(&out, dir, "");
	return out;
}

char *tu_store_state(const char *root)
{
	tu_run r = tu_lf(root, "ls", "--json", NULL);
	bool none = r.status == 1 && strncmp(r.err, "layerfs: no store at ", 21) == 0;
	cr_assert(r.status == 0 || none, "ls --json failed: %s", r.err);
	char *state = strdup(none ? "no store\n" : r.out);
	tu_run_free(&r);
	append_names(&state, root, "layers");
	append_names(&state, root, "refs");
	append_names(&state, root, "tmp");
	return state;
}

int tu_sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *cmd = NULL;
	cr_assert(vasprintf(&cmd, fmt, ap) > 0);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void tu_need_tool(const char *name)
{
	if (tu_sh("command -v %s >/dev/null 2>&1", name) == 0)
		return;
	const char *ci = getenv("CI");
	cr_assert(!(ci && strcmp(ci, "true") == 0), "%s is missing (scripts/setup installs it)",
		  name);
	cr_skip_test("%s is not installed", name);
}
