/* The sandbox: three processes.
 *
 *   caller ──clone(new mount/pid/uts/ipc/cgroup[/net][/user] namespaces)──▶ init (pid 1)
 *                                                                    └─fork─▶ command
 *
 * The init makes the mounts (sandbox_mount.c), pivots into the root, sets the hostname and
 * forks the command, which drops to the requested user and capabilities, loads the seccomp
 * filter (seccomp.c; unless insecure) and execs.  The init stays pid 1: it forwards signals
 * to the command, reaps orphans, and when the command exits kills whatever is left, undoes
 * its mounts and created directories, and exits with the command's status (128+N for signal
 * N, as docker reports it).  The command is not pid 1 so that it keeps ordinary signal
 * semantics (a pid 1 ignores signals it has no handler for, even SIGKILL sent by itself).
 *
 * The init starts a session of its own (setsid), so the sandbox is its own process group with
 * no controlling terminal: kill(0, SIG) inside signals the sandbox, not the caller's job on
 * the host, and the caller's terminal is only a file on the standard streams (TIOCSTI on a
 * terminal that is not one's controlling terminal needs CAP_SYS_ADMIN).  Signals the
 * terminal sends to its foreground job reach the caller, which forwards them.
 *
 * The whole sandbox dies with the caller: the init has PR_SET_PDEATHSIG(SIGKILL), and the
 * kernel kills every process of a pid namespace when its init dies; the mount namespace, and
 * with it every mount, goes away with its last process.  Nothing is ever mounted in the
 * caller's namespace.
 *
 * Setup failures travel to the caller through a close-on-exec pipe as one record (-errno and
 * a message); the pipe reaching EOF without a record means the command was executed.
 *
 * Signal forwarding uses one process-wide slot: one sandbox at a time per process.  The init
 * is created with a raw clone (no fork handlers run), so the caller must be single-threaded
 * (the CLI is; FUSE daemons are processes of their own). */
#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "internal.h"
#include "sandbox.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_HOSTNAME "layerfs"
#define MAX_GROUPS 64

/* One setup failure, written atomically (smaller than PIPE_BUF). */
struct errrec {
	int err;
	char msg[sizeof(((lyr_exec_error *)0)->msg)];
};

typedef struct run {
	const lyr_sandbox *sb;
	lyr_exec_mounts st;
	bool userns;
	bool in_init; /* false in the caller and the command: only the init undoes mounts */
	int sync_rd, err_wr;
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	size_t n_groups;
} run;

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static _Noreturn void die(run *c, int e, const lyr_exec_error *err)
{
	struct errrec rec = {.err = e};
	memcpy(rec.msg, err->msg, sizeof rec.msg);
	rec.msg[sizeof rec.msg - 1] = '\0';
	(void)!write(c->err_wr, &rec, sizeof rec);
	if (c->in_init)
		lyr_exec_mounts_undo(&c->st);
	_exit(125);
}

static _Noreturn void die_errno(run *c, const char *what, const char *obj)
{
	int e = errno;
	lyr_exec_error err;
	lyr_exec_errf(&err, "%s '%s': %s", what, obj, strerror(e));
	die(c, -e, &err);
}

/* The environment of the command: SB's variables, PATH when they have none, and each proxy
 * variable under its upper- and lower-case name (unless SB's variables set that name). */
static char **build_env(const lyr_sandbox *sb)
{
	size_t n = 0, np = 0;
	while (sb->env && sb->env[n])
		n++;
	while (sb->proxy_env && sb->proxy_env[np])
		np++;
	char **envp = calloc(n + 2 * np + 2, sizeof(char *));
	if (!envp)
		return NULL;
	size_t k = 0;
	bool have_path = false;
	for (size_t i = 0; i < n; i++) {
		envp[k++] = (char *)sb->env[i];
		have_path = have_path || strncmp(sb->env[i], "PATH=", 5) == 0;
	}
	if (!have_path)
		envp[k++] = "PATH=" DEFAULT_PATH;
	for (size_t i = 0; i < np; i++) {
		const char *kv = sb->proxy_env[i];
		size_t nl = strcspn(kv, "=");
		for (int lower = 0; lower < 2; lower++) {
			char *v = strdup(kv);
			if (!v)
				return NULL;
			for (size_t j = 0; j < nl; j++)
				v[j] = lower ? (char)tolower((unsigned char)v[j])
					     : (char)toupper((unsigned char)v[j]);
			bool taken = false;
			for (size_t j = 0; j < k; j++)
				taken = taken || strncmp(envp[j], v, nl + 1) == 0;
			if (taken)
				free(v);
			else
				envp[k++] = v;
		}
	}
	envp[k] = NULL;
	return envp;
}

/* execve through $PATH of ENVP (not the caller's, as execvpe would).  Returns the errno that
 * decides the exit status: ENOENT when no candidate exists, else the first other error. */
static int exec_command(const char *const *args, char **envp)
{
	const char *cmd = args[0];
	if (strchr(cmd, '/')) {
		execve(cmd, (char *const *)args, envp);
		return errno;
	}
	const char *path = "";
	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			path = envp[i] + 5;
	int result = ENOENT;
	char full[4096];
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		int n = snprintf(full, sizeof full, "%.*s%s%s", (int)(end - p), p,
				 end == p ? "" : "/", cmd);
		if (n > 0 && (size_t)n < sizeof full) {
			execve(full, (char *const *)args, envp);
			if (errno != ENOENT && errno != ENOTDIR && result == ENOENT)
				result = errno;
		}
		if (!*end)
			break;
		p = end;
	}
	return result;
}

static _Noreturn void command_main(run *c)
{
	const lyr_sandbox *sb = c->sb;
	/* The command starts with every signal at its default and none blocked, whatever the
	 * caller had ignored (a CLI commonly ignores SIGPIPE). */
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);

	if (!sb->stdin_passthrough) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || dup2(fd, 0) < 0)
			die_errno(c, "stdin from", "/dev/null");
		close(fd);
	}
	lyr_exec_error err;
	int r = lyr_exec_caps_bound();
	if (r < 0) {
		lyr_exec_errf(&err, "capability bounding set: %s", strerror(-r));
		die(c, r, &err);
	}
	if (!c->userns && setgroups(c->n_groups, c->groups) < 0)
		die_errno(c, "supplementary groups of user", sb->user ? sb->user : "0");
	if (c->userns && c->n_groups) {
		lyr_exec_errf(&err, "user '%s': supplementary groups need root outside the sandbox",
			      sb->user);
		die(c, -EPERM, &err);
	}
	if (setresgid(c->gid, c->gid, c->gid) < 0)
		die_errno(c, "group of user", sb->user ? sb->user : "0");
	if (setresuid(c->uid, c->uid, c->uid) < 0)
		die_errno(c, "user", sb->user ? sb->user : "0");
	r = lyr_exec_caps_apply(c->uid);
	if (r < 0) {
		lyr_exec_errf(&err, "capability sets: %s", strerror(-r));
		die(c, r, &err);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die_errno(c, "prctl", "no_new_privs");
	const char *cwd = sb->cwd ? sb->cwd : "/";
	if (chdir(cwd) < 0)
		die_errno(c, "working directory", cwd);
	char **envp = build_env(sb);
	if (!envp) {
		lyr_exec_errf(&err, "environment: %s", strerror(ENOMEM));
		die(c, -ENOMEM, &err);
	}
	/* Last, after no_new_privs (without CAP_SYS_ADMIN the kernel loads a filter only then):
	 * the filter is the command's, the setup above runs without it. */
	if (sb->security != LYR_SECURITY_INSECURE && (r = lyr_exec_seccomp_load()) < 0) {
		lyr_exec_errf(&err, "seccomp filter: %s%s", strerror(-r),
			      r == -EINVAL ? " (a kernel without seccomp filters needs "
					     "--security=insecure)"
					   : "");
		die(c, r, &err);
	}
	int e = exec_command(sb->args, envp);
	/* Not a sandbox failure: the command itself cannot run, reported like docker does. */
	if (e == ENOENT)
		fprintf(stderr, "layerfs: exec '%s': %s\n", sb->args[0],
			strchr(sb->args[0], '/') ? "no such file" : "not found in $PATH");
	else
		fprintf(stderr, "layerfs: exec '%s': %s\n", sb->args[0], strerror(e));
	_exit(e == ENOENT ? 127 : 126);
}

static void noop(int sig)
{
	(void)sig;
}

/* Pid 1: wait for the command, forward the signals it gets (from the caller, or from the
 * command's own processes), reap everything. */
static _Noreturn void init_wait(run *c, pid_t cmd)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(forwarded); i++)
		sigaddset(&set, forwarded[i]);
	int status = 0;
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(cmd, sig);
			continue;
		}
		int st;
		pid_t p;
		bool done = false;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0)
			if (p == cmd) {
				status = st;
				done = true;
			}
		if (done)
			break;
	}
	kill(-1, SIGKILL); /* the command's leftovers; never reaches the init itself */
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	lyr_exec_mounts_undo(&c->st);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* Closes every descriptor above 2 except A and B. */
static void close_all_but(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;
	unsigned ranges[3][2] = {
	    {3, (unsigned)lo - 1}, {(unsigned)lo + 1, (unsigned)hi - 1}, {(unsigned)hi + 1, ~0U}};
	for (size_t i = 0; i < 3; i++) {
		if (ranges[i][0] > ranges[i][1])
			continue;
		if (syscall(SYS_close_range, ranges[i][0], ranges[i][1], 0) == 0)
			continue;
		/* Before Linux 5.9: close one by one up to the descriptor limit. */
		long max = sysconf(_SC_OPEN_MAX);
		for (long fd = ranges[i][0]; fd <= (long)ranges[i][1] && fd < max; fd++)
			close((int)fd);
	}
}

static _Noreturn void init_main(run *c)
{
	const lyr_sandbox *sb = c->sb;
	lyr_exec_error err;
	int r;

	c->in_init = true;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Out of the caller's session and process group (the file's header says why); it cannot
	 * fail, the init being no group leader. */
	if (setsid() < 0)
		_exit(125);
	/* Nothing of the caller's (store database, FUSE devices, host directories) may reach
	 * the sandbox: keep only stdio and the two channels to the caller. */
	close_all_but(c->sync_rd, c->err_wr);
	char go = 0;
	if (read(c->sync_rd, &go, 1) != 1 || go != 'g')
		_exit(125); /* the caller is gone or gave up */
	close(c->sync_rd);

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die_errno(c, "mount propagation of", "/");
	if (mount(sb->rootfs, sb->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
		die_errno(c, "bind mount of root", sb->rootfs);
	c->st.rootfd = open(sb->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->st.rootfd < 0)
		die_errno(c, "root", sb->rootfs);
	r = lyr_exec_mounts_apply(&c->st, sb, &err);
	if (r < 0)
		die(c, r, &err);
	if (sb->network == LYR_NET_NONE && (r = lyr_exec_loopback_up()) < 0) {
		lyr_exec_errf(&err, "network: bringing up 'lo': %s", strerror(-r));
		die(c, r, &err);
	}
	const char *host = sb->hostname ? sb->hostname : DEFAULT_HOSTNAME;
	if (sethostname(host, strlen(host)) < 0)
		die_errno(c, "hostname", host);

	if (fchdir(c->st.rootfd) < 0)
		die_errno(c, "root", sb->rootfs);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die_errno(c, "pivot_root into", sb->rootfs);
	if (umount2(".", MNT_DETACH) < 0)
		die_errno(c, "detaching the old root under", sb->rootfs);
	if (chdir("/") < 0)
		die_errno(c, "chdir in", sb->rootfs);

	_cleanup_close_ int newroot = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (newroot < 0)
		die_errno(c, "root", sb->rootfs);
	c->n_groups = MAX_GROUPS;
	r = lyr_exec_user_resolve(newroot, sb->user, &c->uid, &c->gid, c->groups, &c->n_groups,
				  &err);
	if (r < 0)
		die(c, r, &err);
	if (c->userns && (c->uid != 0 || c->gid != 0)) {
		lyr_exec_errf(&err,
			      "user '%s': an unprivileged caller can only run the command as "
			      "root (its user namespace maps just the caller)",
			      sb->user);
		die(c, -EPERM, &err);
	}

	/* Signals arrive through sigwaitinfo; handlers (not SIG_DFL) make sure the kernel
	 * queues them for a pid 1 instead of dropping them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(forwarded); i++) {
		sigaddset(&set, forwarded[i]);
		signal(forwarded[i], noop);
	}
	signal(SIGCHLD, noop);
	sigprocmask(SIG_BLOCK, &set, NULL);

	pid_t cmd = fork();
	if (cmd < 0)
		die_errno(c, "fork of", sb->args[0]);
	if (cmd == 0) {
		c->in_init = false;
		command_main(c);
	}
	close(c->err_wr);
	init_wait(c, cmd);
}

void lyr_exec_sandbox_from_op(const lyr_exec_op *op, const char *rootfs, lyr_sandbox_mount *mounts,
			      lyr_sandbox *ret)
{
	for (size_t i = 0; i < op->n_mounts; i++) {
		const lyr_exec_mount *m = &op->mounts[i];
		mounts[i] = (lyr_sandbox_mount){
		    .type = m->type == LYR_MOUNT_TMPFS ? LYR_MOUNT_TMPFS : LYR_MOUNT_BIND,
		    .target = m->target,
		    .readonly = m->readonly,
		    .size = m->size,
		};
	}
	*ret = (lyr_sandbox){
	    .rootfs = rootfs,
	    .mounts = mounts,
	    .n_mounts = op->n_mounts,
	    .args = (const char *const *)op->args,
	    .env = (const char *const *)op->env,
	    .proxy_env = (const char *const *)op->proxy_env,
	    .cwd = op->cwd,
	    .user = op->user,
	    .hostname = op->hostname,
	    .network = op->network,
	    .security = op->security,
	    .stdin_passthrough = op->interactive,
	};
}

static volatile pid_t forward_to;

/* Every forwarded signal the caller gets goes to the init, a terminal's too: the sandbox is in
 * no process group of the terminal's. */
static void forward(int sig)
{
	pid_t p = forward_to;
	if (p > 0)
		kill(p, sig);
}

static int write_file(pid_t pid, const char *name, const char *text)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	if (n < 0)
		return -errno;
	return (size_t)n == strlen(text) ? 0 : -EIO;
}

/* Maps the caller's uid and gid to root in the new user namespace of PID. */
static int map_user(pid_t pid, lyr_exec_error *err)
{
	char map[64];
	int r = write_file(pid, "setgroups", "deny");
	if (r >= 0) {
		snprintf(map, sizeof map, "0 %u 1\n", (unsigned)geteuid());
		r = write_file(pid, "uid_map", map);
	}
	if (r >= 0) {
		snprintf(map, sizeof map, "0 %u 1\n", (unsigned)getegid());
		r = write_file(pid, "gid_map", map);
	}
	if (r < 0)
		lyr_exec_errf(err, "user namespace: mapping uid %u to root: %s",
			      (unsigned)geteuid(), strerror(-r));
	return r;
}

/* The standard streams are the only descriptors of the caller's the command gets.  A
 * directory among them would be a way out of the root (/proc/self/fd/N/.. is the host's
 * filesystem; runc's CVE-2024-21626 was a leaked directory descriptor).  Returns 0, or
 * -EISDIR with ERR filled. */
static int check_streams(const lyr_sandbox *sb, lyr_exec_error *err)
{
	static const char *const names[] = {"input", "output", "error"};
	for (int fd = sb->stdin_passthrough ? 0 : 1; fd < 3; fd++) {
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			lyr_exec_errf(err,
				      "sandbox: standard %s is a directory, which the command "
				      "could leave the root through",
				      names[fd]);
			return -EISDIR;
		}
	}
	return 0;
}

int lyr_exec_sandbox_run(const lyr_sandbox *sb, int *ret_status, lyr_exec_error *err)
{
	if (!sb->rootfs || !sb->args || !sb->args[0]) {
		lyr_exec_errf(err, "sandbox: no root directory or no command");
		return -EINVAL;
	}
	int r = check_streams(sb, err);
	if (r < 0)
		return r;
	run c = {.sb = sb, .userns = geteuid() != 0, .sync_rd = -1, .err_wr = -1};
	c.st.rootfd = -1;
	/* /proc, /dev, /dev/pts, /dev/shm and the caller's; at most one created directory per
	 * path component of each target. */
	c.st.max_mounted = sb->n_mounts + 4;
	c.st.max_created = 4;
	for (size_t i = 0; i < sb->n_mounts; i++)
		for (const char *p = sb->mounts[i].target; p && *p; p++)
			c.st.max_created += *p == '/';
	_cleanup_free_ int *mounted = calloc(c.st.max_mounted, sizeof *mounted);
	_cleanup_free_ void *created = calloc(c.st.max_created, sizeof *c.st.created);
	if (!mounted || !created)
		return -ENOMEM;
	c.st.mounted = mounted;
	c.st.created = created;

	int syncp[2], errp[2];
	/* A socket, not a pipe: send(MSG_NOSIGNAL) to an init that died cannot raise SIGPIPE
	 * in the caller. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, syncp) < 0)
		return -errno;
	if (pipe2(errp, O_CLOEXEC) < 0) {
		int e = -errno;
		close(syncp[0]);
		close(syncp[1]);
		return e;
	}
	c.sync_rd = syncp[0];
	c.err_wr = errp[1];

	/* a cgroup namespace too, as Docker makes one: the caller's cgroup path is the host's */
	unsigned long flags =
	    CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
	if (sb->network == LYR_NET_NONE)
		flags |= CLONE_NEWNET;
	if (c.userns)
		flags |= CLONE_NEWUSER;

	sigset_t block, old_mask;
	sigemptyset(&block);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(forwarded); i++)
		sigaddset(&block, forwarded[i]);
	sigprocmask(SIG_BLOCK, &block, &old_mask);

	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid == 0) {
		close(syncp[1]);
		close(errp[0]);
		init_main(&c);
	}
	int clone_errno = errno;
	close(syncp[0]);
	close(errp[1]);
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		close(syncp[1]);
		close(errp[0]);
		lyr_exec_errf(err, "sandbox: creating namespaces: %s%s", strerror(clone_errno),
			      clone_errno == EPERM || clone_errno == ENOSPC
				  ? " (are user namespaces disabled?)"
				  : "");
		return -clone_errno;
	}

	struct sigaction fwd = {.sa_handler = forward, .sa_flags = SA_RESTART};
	struct sigaction old_act[LYR_ARRAY_SIZE(forwarded)];
	sigemptyset(&fwd.sa_mask);
	forward_to = pid;
	for (size_t i = 0; i < LYR_ARRAY_SIZE(forwarded); i++)
		sigaction(forwarded[i], &fwd, &old_act[i]);
	/* a signal the caller caught before the block above would otherwise be lost: the init
	 * takes it as it takes any later one (it waits for signals before the command starts) */
	if (sb->caught && *sb->caught > 0)
		kill(pid, *sb->caught);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);

	r = c.userns ? map_user(pid, err) : 0;
	if (r >= 0 && send(syncp[1], "g", 1, MSG_NOSIGNAL) != 1) {
		r = -errno;
		lyr_exec_errf(err, "sandbox: starting the init: %s", strerror(-r));
	}
	close(syncp[1]);

	struct errrec rec;
	size_t got = 0;
	while (r >= 0 && got < sizeof rec) {
		ssize_t n = read(errp[0], (char *)&rec + got, sizeof rec - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(errp[0]);
	if (r < 0)
		kill(pid, SIGKILL);

	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	forward_to = 0;
	for (size_t i = 0; i < LYR_ARRAY_SIZE(forwarded); i++)
		sigaction(forwarded[i], &old_act[i], NULL);

	if (r < 0)
		return r;
	if (got == sizeof rec) {
		rec.msg[sizeof rec.msg - 1] = '\0';
		lyr_exec_errf(err, "%s", rec.msg);
		return rec.err < 0 ? rec.err : -EIO;
	}
	*ret_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}
