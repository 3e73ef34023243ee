/* What a layer may hold (set-id programs, device nodes a command made) has no power over the
 * host: the store is 0700, so no other user reaches a layer through its path; `layerfs mount`
 * and the views of `exec` are nosuid,nodev unless asked otherwise; `layerfs overlay` keeps
 * fuse-overlayfs' defaults.  Runs a static program that prints its effective uid as another
 * user (uid 65534) from a forked child; needs root (CI runs as root) and /dev/fuse. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/fs.h"
#include "testutil.h"

#define NOBODY 65534
#define FUSE_OVERLAYFS "/usr/bin/fuse-overlayfs"

static tu_dirs dirs;
static char *mp, *rootfs;

static void setup(void)
{
	tu_dirs_init(&dirs);
	/* only the store's own modes may keep another user out */
	cr_assert_eq(chmod(dirs.tmp, 0755), 0);
	mp = tu_path(dirs.tmp, "mnt");
	cr_assert_eq(mkdir(mp, 0755), 0);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs); /* unmounts what a test left, and fails it */
	free(mp);
	free(rootfs);
	rootfs = NULL;
}

TestSuite(cli_security, .init = setup, .fini = teardown, .timeout = 60);

static void need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (a set-uid-root program, another user, device nodes)");
}

/* Runs PATH as uid and gid NOBODY; returns what it printed, or "errno N" when it could not
 * be run.  Heap. */
static char *run_as_nobody(const char *path)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
			_exit(126);
		char *argv[] = {(char *)path, NULL}, *envp[] = {NULL};
		execve(path, argv, envp);
		printf("errno %d\n", errno);
		fflush(stdout);
		_exit(127);
	}
	close(p[1]);
	char buf[256];
	size_t len = 0;
	ssize_t n;
	while ((n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(p[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 126, "could not become uid %d", NOBODY);
	return strdup(buf);
}

/* Imports dirs.src as a layer; returns its ID (heap). */
static char *import_src(void)
{
	char *id = tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL));
	id[strcspn(id, "\n")] = '\0';
	return id;
}

/* A layer holding "euid", the static program, set-uid root (as a command run as root could
 * commit it). */
static char *setuid_layer(void)
{
	cr_assert_eq(lyr_mkdir_p(dirs.src, 0755), 0);
	_cleanup_free_ char *dst = tu_path(dirs.src, "euid");
	const char *cp[] = {"/bin/cp", TEST_EUID_BIN, dst, NULL};
	tu_run r = tu_cmd(NULL, cp);
	cr_assert_eq(r.status, 0, "cp: %s", r.err);
	tu_run_free(&r);
	cr_assert_eq(chown(dst, 0, 0), 0);
	cr_assert_eq(chmod(dst, 04755), 0);
	return import_src();
}

/* The per-mount options of the mount at PATH ("" when none).  Heap. */
static char *mount_opts(const char *path)
{
	_cleanup_free_ char *info = NULL;
	cr_assert_eq(lyr_read_file("/proc/self/mountinfo", &info, NULL), 0);
	char *found = strdup("");
	for (char *line = strtok(info, "\n"); line; line = strtok(NULL, "\n")) {
		char where[PATH_MAX], opts[512];
		if (sscanf(line, "%*s %*s %*s %*s %4095s %511s", where, opts) == 2 &&
		    strcmp(where, path) == 0) {
			free(found);
			found = strdup(opts);
		}
	}
	return found;
}

/* True when the comma-separated OPTS holds OPT. */
static bool has_opt(const char *opts, const char *opt)
{
	size_t n = strlen(opt);
	for (const char *p = opts; p; p = strchr(p, ',')) {
		p += *p == ',';
		if (strncmp(p, opt, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
	}
	return false;
}

static void umount_mp(void)
{
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
}

Test(cli_security, a_setuid_program_in_a_layer_is_out_of_reach_through_the_store)
{
	need_root();
	_cleanup_free_ char *id = setuid_layer();
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s/diff/euid", id + strlen("sha256:")) > 0);
	_cleanup_free_ char *path = tu_path(dirs.store, rel);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 04755, "the layer holds the set-uid program");
	cr_assert_eq(st.st_uid, 0);
	_cleanup_free_ char *out = run_as_nobody(path);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "errno %d\n", EACCES) > 0);
	cr_assert_str_eq(out, want);
	static const char *const top[] = {"", "/db", "/layers", "/refs", "/tmp"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(top); i++) {
		_cleanup_free_ char *d = NULL;
		cr_assert(asprintf(&d, "%s%s", dirs.store, top[i]) > 0);
		cr_assert_eq(stat(d, &st), 0);
		cr_assert_eq(st.st_mode & 07777, 0700, "%s: %o", d, st.st_mode & 07777);
	}
}

Test(cli_security, an_older_store_is_tightened_by_a_command_and_reported_by_fsck)
{
	need_root();
	free(tu_ok(tu_lf(dirs.store, "new", NULL))); /* creates the store */
	_cleanup_free_ char *layers = tu_path(dirs.store, "layers");
	_cleanup_free_ char *refs = tu_path(dirs.store, "refs");
	cr_assert_eq(chmod(dirs.store, 0755), 0);
	cr_assert_eq(chmod(layers, 0751), 0);

	/* fsck reports, exactly, and changes nothing */
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "problem: store directory '%s' has mode 0755, not 0700\n"
			   "problem: store directory '%s' has mode 0751, not 0700\n",
			   dirs.store, layers) > 0);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "layerfs: fsck: 2 problems left (run 'layerfs fsck --repair')\n");
	tu_run_free(&r);
	struct stat st;
	cr_assert_eq(stat(layers, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751);

	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	free(want);
	cr_assert(asprintf(&want,
			   "repaired: store directory '%s' has mode 0755, not 0700\n"
			   "repaired: store directory '%s' has mode 0751, not 0700\n"
			   "store '%s': no problems\n",
			   dirs.store, layers, dirs.store) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	cr_assert_eq(stat(layers, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);

	/* any other command tightens silently */
	cr_assert_eq(chmod(refs, 0755), 0);
	r = tu_lf(dirs.store, "ls", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
	cr_assert_eq(stat(refs, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
}

Test(cli_security, a_layer_mount_ignores_setuid_unless_asked)
{
	need_root();
	tu_need_fuse();
	_cleanup_free_ char *id = setuid_layer();
	_cleanup_free_ char *prog = tu_path(mp, "euid");

	free(tu_ok(tu_lf(dirs.store, "mount", "-o", "allow_other", id, mp, NULL)));
	_cleanup_free_ char *opts = mount_opts(mp);
	cr_assert(has_opt(opts, "nosuid") && has_opt(opts, "nodev"), "%s", opts);
	_cleanup_free_ char *out = run_as_nobody(prog);
	cr_assert_str_eq(out, "65534\n");
	umount_mp();

	/* what the test sees is the mount option: asked for, the bit works */
	free(tu_ok(tu_lf(dirs.store, "mount", "--suid", "-o", "allow_other", id, mp, NULL)));
	free(out);
	out = run_as_nobody(prog);
	cr_assert_str_eq(out, "0\n");
	umount_mp();

	free(tu_ok(tu_lf(dirs.store, "mount", "-o", "suid,allow_other", id, mp, NULL)));
	free(opts);
	opts = mount_opts(mp);
	cr_assert(!has_opt(opts, "nosuid") && has_opt(opts, "nodev"), "%s", opts);
	umount_mp();
}

Test(cli_security, a_device_node_in_a_layer_does_not_open_unless_asked)
{
	need_root();
	tu_need_fuse();
	cr_assert_eq(lyr_mkdir_p(dirs.src, 0755), 0);
	_cleanup_free_ char *node = tu_path(dirs.src, "null");
	cr_assert_eq(mknod(node, S_IFCHR | 0666, makedev(1, 3)), 0);
	_cleanup_free_ char *id = import_src();
	_cleanup_free_ char *dev = tu_path(mp, "null");

	free(tu_ok(tu_lf(dirs.store, "mount", id, mp, NULL)));
	errno = 0;
	cr_assert_eq(open(dev, O_RDONLY | O_CLOEXEC), -1);
	cr_assert_eq(errno, EACCES);
	umount_mp();

	free(tu_ok(tu_lf(dirs.store, "mount", "--dev", id, mp, NULL)));
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s", strerror(errno));
	char c;
	cr_assert_eq(read(fd, &c, 1), 0);
	close(fd);
	umount_mp();

	free(tu_ok(tu_lf(dirs.store, "mount", "-o", "dev", id, mp, NULL)));
	_cleanup_free_ char *opts = mount_opts(mp);
	cr_assert(!has_opt(opts, "nodev") && has_opt(opts, "nosuid"), "%s", opts);
	umount_mp();
}

/* nosuid and nodev of a mount at MP by COMMAND ("layerfs" or "fuse-overlayfs") with OPTS. */
static void overlay_flags(const char *command, const char *opts, bool *ret_nosuid, bool *ret_nodev)
{
	_cleanup_free_ char *all = NULL;
	cr_assert(asprintf(&all, "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work%s", dirs.tmp,
			   dirs.tmp, dirs.tmp, opts) > 0);
	const char *lf[] = {LAYERFS_BIN, "overlay", "-o", all, mp, NULL};
	const char *fo[] = {FUSE_OVERLAYFS, "-o", all, mp, NULL};
	tu_run r = tu_cmd(NULL, strcmp(command, "layerfs") == 0 ? lf : fo);
	cr_assert_eq(r.status, 0, "%s -o %s: %s", command, all, r.err);
	tu_run_free(&r);
	_cleanup_free_ char *m = mount_opts(mp);
	*ret_nosuid = has_opt(m, "nosuid");
	*ret_nodev = has_opt(m, "nodev");
	cr_assert_eq(umount2(mp, 0), 0);
}

Test(cli_security, overlay_keeps_the_defaults_of_fuse_overlayfs)
{
	need_root();
	tu_need_fuse();
	if (access(FUSE_OVERLAYFS, X_OK) != 0)
		cr_skip_test("needs %s to compare with", FUSE_OVERLAYFS);
	tu_write(dirs.tmp, "lower/f", "f\n");
	tu_write(dirs.tmp, "upper/.keep", "");
	_cleanup_free_ char *work = tu_path(dirs.tmp, "work");
	cr_assert_eq(mkdir(work, 0700), 0);
	static const char *const variants[] = {"", ",dev", ",nosuid", ",suid,dev", ",nodev"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(variants); i++) {
		bool ls, ld, fs, fd;
		overlay_flags("layerfs", variants[i], &ls, &ld);
		overlay_flags("fuse-overlayfs", variants[i], &fs, &fd);
		cr_assert_eq(ls, fs, "nosuid with '%s': layerfs %d, fuse-overlayfs %d", variants[i],
			     ls, fs);
		cr_assert_eq(ld, fd, "nodev with '%s': layerfs %d, fuse-overlayfs %d", variants[i],
			     ld, fd);
		if (i == 0)
			cr_assert(!ls && ld, "root's overlay default is suid,nodev");
	}
}

/* Skips without root, /dev/fuse or busybox; otherwise imports a busybox root as tag "bb". */
static void need_exec(void)
{
	need_root();
	tu_need_fuse();
	tu_need_busybox();
	static const char *const applets[] = {"sh", "sleep", "true", "cat"};
	rootfs = tu_path(dirs.tmp, "rootfs");
	tu_busybox_root(rootfs, applets, LYR_ARRAY_SIZE(applets), "root:x:0:0::/:/bin/sh\n",
			"root:x:0:\n");
	free(tu_ok(tu_lf(dirs.store, "import", rootfs, "--tag", "bb", NULL)));
}

/* Starts `layerfs exec ARGS...` with TMPDIR in the test's directory and its output in
 * TMP/NAME; returns its pid.  With OUTLIVES, the run is one that lives through the death of
 * another process of the store: Berkeley DB 5.3 keeps the handles of the environment that
 * recovery replaced (db/env.c), which a sanitizer build's leak check would report as the
 * run's exit status. */
static pid_t spawn_exec_to(const char *name, bool outlives, const char *const *args)
{
	_cleanup_free_ char *out = tu_path(dirs.tmp, name);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		dup2(fd, 1);
		dup2(fd, 2);
		dup2(null, 0);
		setenv("TMPDIR", dirs.tmp, 1);
		if (outlives) {
			const char *asan = getenv("ASAN_OPTIONS");
			_cleanup_free_ char *opts = NULL;
			if (asprintf(&opts, "%s%sdetect_leaks=0", asan ? asan : "",
				     asan && *asan ? ":" : "") > 0)
				setenv("ASAN_OPTIONS", opts, 1);
		}
		const char *argv[32] = {LAYERFS_BIN, "--root", dirs.store, "exec"};
		size_t n = 4;
		for (size_t i = 0; args[i] && n < 31; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(LAYERFS_BIN, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static pid_t spawn_exec(const char *const *args)
{
	return spawn_exec_to("exec.out", false, args);
}

/* The FUSE mounts of layerfs below the test's directory, one "MOUNTPOINT OPTIONS\n" line
 * each; *RET_N gets their number.  Heap. */
/* The layerfs views below the test's directory in the mount namespace of PID (0: ours): FUSE
 * mounts, and kernel overlayfs mounts (which a run makes in a namespace of its own). */
static char *views_of(pid_t pid, size_t *ret_n)
{
	_cleanup_free_ char *info = NULL, *path = NULL;
	if (pid)
		cr_assert(asprintf(&path, "/proc/%d/mountinfo", (int)pid) > 0);
	if (lyr_read_file(path ? path : "/proc/self/mountinfo", &info, NULL) < 0)
		cr_assert_eq(lyr_read_file("/proc/self/mountinfo", &info, NULL), 0);
	size_t cap = strlen(info) + 1, len = 0, n = 0;
	char *out = calloc(1, cap);
	size_t tl = strlen(dirs.tmp);
	for (char *line = strtok(info, "\n"); line; line = strtok(NULL, "\n")) {
		char where[PATH_MAX], opts[512];
		const char *type = strstr(line, " - ");
		if (sscanf(line, "%*s %*s %*s %*s %4095s %511s", where, opts) != 2 || !type ||
		    (strncmp(type, " - fuse.layerfs ", 16) != 0 &&
		     strncmp(type, " - overlay ", 11) != 0) ||
		    strncmp(where, dirs.tmp, tl) != 0)
			continue;
		len += (size_t)snprintf(out + len, cap - len, "%s %s\n", where, opts);
		n++;
	}
	*ret_n = n;
	return out;
}

static char *our_mounts(size_t *ret_n)
{
	return views_of(0, ret_n);
}

/* Waits (up to 10 s) until N mounts of layerfs are below the test's directory. */
static char *wait_mounts(size_t n, pid_t exec_pid)
{
	for (int i = 0; i < 1000; i++) {
		size_t have;
		char *m = views_of(exec_pid, &have);
		if (have == n)
			return m;
		free(m);
		cr_assert_eq(waitpid(exec_pid, NULL, WNOHANG), 0, "exec ended early");
		usleep(10000);
	}
	cr_assert_fail("the run never had %zu mounts", n);
	return NULL;
}

static int wait_status(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits (up to 10 s) until the command of a run has written /started into its root. */
static void wait_started(pid_t exec_pid)
{
	for (int i = 0; i < 1000; i++) {
		if (tu_sh("ls %s/refs/*/upper/started >/dev/null 2>&1", dirs.store) == 0)
			return;
		cr_assert_eq(waitpid(exec_pid, NULL, WNOHANG), 0, "exec ended early");
		usleep(10000);
	}
	cr_assert_fail("the command never started");
}

#define STARTED_SLEEP "echo > /started; exec sleep 100"

/* A run with a root, a writable bind and a cache mount: three views of its own. */
static const char *const three_views[] = {"--mount",	 "type=bind,target=/w,source=bb",
					  "--mount",	 "type=cache,target=/c",
					  "bb",		 "--",
					  "sh",		 "-c",
					  STARTED_SLEEP, NULL};

Test(cli_security, the_views_of_exec_are_nosuid_nodev)
{
	need_exec();
	pid_t pid = spawn_exec(three_views);
	_cleanup_free_ char *m = wait_mounts(3, pid);
	for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
		const char *opts = strchr(line, ' ') + 1;
		cr_assert(has_opt(opts, "nosuid") && has_opt(opts, "nodev"), "%s", line);
	}
	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_assert_eq(wait_status(pid), 143);
}

/* ---- lifetime: the views of a run die with it ---- */

/* These watch the serving processes of a run's views: the FUSE backend's. */
static void setup_fuse(void)
{
	setup();
	tu_backend("fuse");
}

TestSuite(cli_lifetime, .init = setup_fuse, .fini = teardown, .timeout = 60);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Entries of DIR (names, one a line, sorted) whose name starts with PREFIX.  Heap. */
static char *entries(const char *dir, const char *prefix)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	struct dirent **v;
	int n = scandir(dir, &v, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (v[i]->d_name[0] != '.' && strncmp(v[i]->d_name, prefix, strlen(prefix)) == 0)
			fprintf(f, "%s\n", v[i]->d_name);
		free(v[i]);
	}
	free(n >= 0 ? v : NULL);
	fclose(f);
	return out;
}

static size_t count(const char *s, const char *what)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

static void assert_fsck_clean(void)
{
	_cleanup_free_ char *fsck = tu_ok(tu_lf(dirs.store, "fsck", NULL));
	_cleanup_free_ char *clean = NULL;
	cr_assert(asprintf(&clean, "store '%s': no problems\n", dirs.store) > 0);
	cr_assert_str_eq(fsck, clean);
}

Test(cli_lifetime, a_run_killed_with_sigkill_takes_its_views_and_refs_along)
{
	need_exec();
	pid_t pid = spawn_exec(three_views);
	free(wait_mounts(3, pid));
	wait_started(pid);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(wait_status(pid), 128 + SIGKILL);
	double start = now();
	size_t n = 0;
	_cleanup_free_ char *runs = tu_path(dirs.store, "runs");
	_cleanup_free_ char *ls = NULL, *left = NULL, *records = NULL;
	/* within a second: no view mounted, no ref recorded as mounted, the refs the run made
	 * released (only the cache's ref is left), its directory and its record gone */
	do {
		free(ls);
		free(left);
		free(records);
		usleep(10000);
		free(our_mounts(&n));
		ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
		left = entries(dirs.tmp, "layerfs-exec.");
		records = entries(runs, "");
	} while ((n > 0 || count(ls, "\"mountpoint\":\"") > 0 || count(ls, "\"mountpoint\":") > 1 ||
		  *left || *records) &&
		 now() - start < 1.0);
	_cleanup_free_ char *m = our_mounts(&n);
	cr_assert_eq(n, 0, "still mounted after 1 s:\n%s", m);
	cr_assert_eq(count(ls, "\"mountpoint\":\""), 0, "a ref is still mounted after 1 s: %s", ls);
	cr_assert_eq(count(ls, "\"mountpoint\":"), 1, "%s", ls);
	cr_assert_str_eq(left, "");
	cr_assert_str_eq(records, "");
	assert_fsck_clean();
}

Test(cli_lifetime, a_run_whose_server_died_first_is_left_for_fsck_to_clean)
{
	need_exec();
	const char *args[] = {"bb", "--", "sh", "-c", STARTED_SLEEP, NULL};
	pid_t pid = spawn_exec(args);
	free(wait_mounts(1, pid));
	wait_started(pid);
	_cleanup_free_ char *runs = tu_path(dirs.store, "runs");
	_cleanup_free_ char *record = entries(runs, "exec-");
	record[strcspn(record, "\n")] = '\0';
	cr_assert_neq(strlen(record), 0);
	_cleanup_free_ char *ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	const char *at = strstr(ls, "\"refs\":[{\"id\":\"");
	cr_assert_not_null(at, "%s", ls);
	_cleanup_free_ char *ref = strndup(at + 15, 64);
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "--json", "inspect", ref, NULL));
	_cleanup_free_ char *server = tu_json_field(info, "mount_pid");
	_cleanup_free_ char *root = tu_json_field(info, "mountpoint");
	_cleanup_free_ char *dir = strndup(root, strlen(root) - strlen("/root"));

	/* the server goes first, then the run: nobody is left to clean up */
	cr_assert_eq(kill(atoi(server), SIGKILL), 0);
	for (int i = 0; i < 500 && tu_process_running(atoi(server)); i++)
		usleep(10000);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(wait_status(pid), 128 + SIGKILL);
	size_t n;
	free(our_mounts(&n));
	cr_assert_eq(n, 1, "the dead server's mount is left");

	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "problem: ref %s: mount at '%s' has no server (pid %s)\n"
			   "problem: run %s: directory '%s' was left\n"
			   "problem: run %s: temporary ref %s was left\n"
			   "problem: ref %s: stale mount record (pid %s, '%s')\n",
			   ref, root, server, record, dir, record, ref, ref, server, root) > 0);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	free(our_mounts(&n));
	cr_assert_eq(n, 1, "fsck without --repair changed nothing");

	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	free(want);
	cr_assert(asprintf(&want,
			   "repaired: ref %s: mount at '%s' has no server (pid %s)\n"
			   "repaired: run %s: directory '%s' was left\n"
			   "repaired: run %s: temporary ref %s was left\n"
			   "store '%s': no problems\n",
			   ref, root, server, record, dir, record, ref, dirs.store) > 0);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);

	_cleanup_free_ char *m = our_mounts(&n);
	cr_assert_eq(n, 0, "%s", m);
	cr_assert_eq(access(dir, F_OK), -1);
	_cleanup_free_ char *records = entries(runs, "");
	cr_assert_str_eq(records, "");
	free(ls);
	ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	cr_assert_eq(count(ls, "\"mountpoint\":"), 0, "the run's ref is gone: %s", ls);
	assert_fsck_clean();
}

/* Run A mounts the shared cache CACHE, run B (running SCRIPT, which first writes /c/b) uses it
 * too, and A is killed with SIGKILL.  Returns B's pid. */
static pid_t kill_a_run_sharing_the_cache_with_b(const char *cache, const char *script)
{
	const char *a[] = {"--mount", cache, "bb", "--", "sh", "-c", STARTED_SLEEP, NULL};
	pid_t pa = spawn_exec_to("a.out", false, a);
	free(wait_mounts(2, pa)); /* A's root and the cache */
	wait_started(pa);
	const char *b[] = {"--mount", cache, "bb", "--", "sh", "-c", script, NULL};
	pid_t pb = spawn_exec_to("b.out", true, b);
	free(wait_mounts(3, pb)); /* and B's root */
	for (int i = 0; i < 1000 && tu_sh("ls %s/refs/*/upper/b >/dev/null 2>&1", dirs.store); i++)
		usleep(10000); /* B runs */
	cr_assert_eq(kill(pa, SIGKILL), 0);
	cr_assert_eq(wait_status(pa), 128 + SIGKILL);
	return pb;
}

Test(cli_lifetime, a_shared_cache_outlives_a_killed_run_while_another_uses_it)
{
	need_exec();
	const char *cache = "type=cache,target=/c,id=shared";
	free(tu_ok(tu_lf(dirs.store, "exec", "--mount", cache, "bb", "--", "sh", "-c",
			 "echo kept > /c/x", NULL)));
	pid_t pb = kill_a_run_sharing_the_cache_with_b(cache, "echo > /c/b; sleep 1; cat /c/x");
	int st = wait_status(pb);
	_cleanup_free_ char *out = tu_read(dirs.tmp, "b.out");
	cr_assert_eq(st, 0, "B: %s", out);
	cr_assert_eq(strncmp(out, "kept\n", 5), 0, "%s", out);
	size_t n;
	_cleanup_free_ char *m = our_mounts(&n);
	for (int i = 0; i < 100 && n > 0; i++) {
		usleep(10000);
		free(m);
		m = our_mounts(&n);
	}
	cr_assert_eq(n, 0, "%s", m);
	assert_fsck_clean();
}

Test(cli_lifetime, a_shared_cache_goes_when_the_last_run_using_it_is_killed_too)
{
	need_exec();
	const char *cache = "type=cache,target=/c,id=shared";
	pid_t pb = kill_a_run_sharing_the_cache_with_b(cache, "echo > /c/b; sleep 100");
	/* B's root and the cache stay while B runs, A's root goes */
	usleep(3 * LYR_FS_OWNER_RECHECK_MS * 1000);
	size_t n;
	_cleanup_free_ char *m = wait_mounts(2, pb);
	cr_assert_eq(kill(pb, SIGKILL), 0);
	cr_assert_eq(wait_status(pb), 128 + SIGKILL);
	_cleanup_free_ char *ls = NULL;
	double start = now();
	do {
		free(m);
		free(ls);
		usleep(10000);
		m = our_mounts(&n);
		ls = tu_ok(tu_lf(dirs.store, "--json", "ls", NULL));
	} while ((n > 0 || count(ls, "\"mountpoint\":\"") > 0) && now() - start < 2.0);
	cr_assert_eq(n, 0, "still mounted after 2 s:\n%s", m);
	cr_assert_eq(count(ls, "\"mountpoint\":\""), 0, "a ref is still mounted: %s", ls);
	assert_fsck_clean();
}
