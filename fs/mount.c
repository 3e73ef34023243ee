/* Mounting and unmounting: the FUSE session around one ovl_fs, run in the foreground or in a
 * forked serving process that reports back through a pipe once the kernel mount exists, so the
 * caller returns only when the mount is live (or with the reason it is not).  A serving process
 * may watch an owner process (a pidfd, polled by one thread that blocks the exit signals): when
 * the owner has gone, it signals its own main thread as SIGTERM would, so the mount ends by the
 * one path every ending takes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "ovl.h"

extern char **environ;

void lyr_fs_config_init(lyr_fs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->timeout = -1;
	/* the kernel gathers small writes into large requests and keeps pages of files being
	 * written: the daemon opens such files read-write and leaves O_APPEND to the kernel */
	cfg->writeback = true;
	/* libfuse's and fuse-overlayfs' default: device nodes on a FUSE mount do not open */
	cfg->nodev = true;
	cfg->kernel_index = true;
	cfg->squash_to_uid = -1;
	cfg->squash_to_gid = -1;
}

#define fail ovl_fail

static void append(char *buf, size_t size, const char *opt)
{
	size_t len = strlen(buf);
	size_t add = strlen(opt) + (len ? 1 : 0);
	if (len + add >= size)
		return; /* cannot happen with the option sizes used here */
	if (len)
		buf[len++] = ',';
	memcpy(buf + len, opt, strlen(opt) + 1);
}

/* Status record the serving process sends its parent. */
struct mount_status {
	int r;
	char msg[sizeof(((lyr_fs_error *)0)->msg)];
};

static void report(int fd, int r, const lyr_fs_error *err)
{
	if (fd < 0)
		return;
	struct mount_status st = {.r = r};
	if (err)
		memcpy(st.msg, err->msg, sizeof(st.msg));
	ssize_t w = write(fd, &st, sizeof(st));
	(void)w;
	close(fd);
}

/* True when path A is B or below it (both resolved, absolute, without a trailing '/'). */
static bool path_within(const char *a, const char *b)
{
	size_t n = strlen(b);
	if (n == 1) /* "/" */
		return true;
	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

struct layer_dir {
	const char *what; /* "upper directory", ... */
	char *path;	  /* resolved; NULL when it does not resolve (opening it will fail) */
	struct stat st;	  /* its identity: a bind mount gives one directory two paths */
};

static bool same_dir(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* True when directory A is strictly below directory B by identity: some ancestor of A, reached
 * through "..", is B.  Paths alone miss a directory reached through a bind mount of another
 * (the upper as lb/u with lb a bind mount of lower l). */
static bool below(const char *a, const struct stat *b)
{
	int fd = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat cur;
	if (fd < 0 || fstat(fd, &cur) < 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	bool hit = false;
	for (int depth = 0; depth < 4096 && !hit; depth++) {
		int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct stat st;
		close(fd);
		fd = up;
		if (fd < 0 || fstat(fd, &st) < 0 || same_dir(&st, &cur))
			break; /* the root */
		hit = same_dir(&st, b);
		cur = st;
	}
	if (fd >= 0)
		close(fd);
	return hit;
}

/* A inside B, by path or by identity (both resolved). */
static bool inside(const struct layer_dir *a, const struct layer_dir *b)
{
	return (path_within(a->path, b->path) && strcmp(a->path, b->path) != 0) ||
	       below(a->path, &b->st);
}

/* Refuses directories that overlap as kernel overlayfs refuses them, and more: no two of the
 * upper, the work dir and the lowers may be equal or one inside the other (kernel overlayfs lets
 * an upper or work dir inside a lower mount, only to fail lookups of that path with ELOOP), and
 * the mountpoint may not be inside any of them, since the daemon reaches objects through those
 * directories and would find its own mount there and wait on itself.  A layer at or below the
 * mountpoint is fine: the daemon opens every layer before it mounts.  MP is resolved. */
static int check_overlaps(const lyr_fs_config *cfg, const char *mp, lyr_fs_error *err)
{
	if (cfg->nlowers > OVL_LOWERS_MAX)
		return 0; /* a config ovl_fs_new refuses, before it reads any lower */
	size_t n = cfg->nlowers + (cfg->upper ? 2 : 0);
	struct layer_dir *d = calloc(n ? n : 1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	size_t k = 0;
	if (cfg->upper) {
		d[k++] = (struct layer_dir){.what = "upper directory",
					    .path = realpath(cfg->upper, NULL)};
		d[k++] =
		    (struct layer_dir){.what = "work directory", .path = realpath(cfg->work, NULL)};
	}
	for (size_t i = 0; i < cfg->nlowers; i++)
		d[k++] = (struct layer_dir){.what = "lower directory",
					    .path = realpath(cfg->lowers[i], NULL)};
	for (size_t i = 0; i < n; i++)
		if (d[i].path && stat(d[i].path, &d[i].st) < 0)
			free(d[i].path), d[i].path = NULL;
	struct layer_dir m = {.what = "mountpoint", .path = (char *)mp};
	if (stat(mp, &m.st) < 0)
		memset(&m.st, 0, sizeof m.st);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!d[i].path)
			continue;
		if (inside(&m, &d[i]) && !same_dir(&m.st, &d[i].st))
			r = fail(err, -EINVAL,
				 "mountpoint '%s' is inside %s '%s' (the mount would serve its own "
				 "lookups)",
				 mp, d[i].what, d[i].path);
		for (size_t j = i + 1; j < n && r == 0; j++) {
			if (!d[j].path)
				continue;
			if (strcmp(d[i].path, d[j].path) == 0 && d[i].what == d[j].what)
				r = fail(err, -EINVAL, "%s '%s' is given twice", d[i].what,
					 d[i].path);
			else if (strcmp(d[i].path, d[j].path) == 0)
				r = fail(err, -EINVAL, "%s '%s' is also %s %s", d[i].what,
					 d[i].path, d[j].what[0] == 'l' ? "a" : "the", d[j].what);
			else if (same_dir(&d[i].st, &d[j].st))
				r = fail(err, -EINVAL, "%s '%s' is the same directory as %s '%s'",
					 d[j].what, d[j].path, d[i].what, d[i].path);
			else if (inside(&d[i], &d[j]))
				r = fail(err, -EINVAL, "%s '%s' is inside %s '%s'", d[i].what,
					 d[i].path, d[j].what, d[j].path);
			else if (inside(&d[j], &d[i]))
				r = fail(err, -EINVAL, "%s '%s' is inside %s '%s'", d[j].what,
					 d[j].path, d[i].what, d[i].path);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(d[i].path);
	free(d);
	return r;
}

/* The thread that watches the owner of a mount. */
struct watch {
	const lyr_fs_config *cfg;
	int pidfd;
	pthread_t thread;
	volatile bool orphaned; /* read after the join */
};

static void *watch_owner(void *arg)
{
	struct watch *w = arg;
	struct pollfd p = {w->pidfd, POLLIN, 0};
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return NULL; /* cannot watch: serve on, as an unwatched mount would */
	for (;;) {
		/* the answer is not cut short: the mount ending otherwise waits for it */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		bool end = !w->cfg->owner_gone || w->cfg->owner_gone(w->cfg->owner_ctx);
		if (end) {
			w->orphaned = true;
			kill(getpid(), SIGTERM); /* blocked here: the main thread takes it */
			return NULL;
		}
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		usleep(LYR_FS_OWNER_RECHECK_MS * 1000); /* where an unmount's cancel ends us */
	}
}

/* Starts W's thread with the exit signals blocked; false when it could not start. */
static bool watch_start(struct watch *w)
{
	sigset_t old;
	ovl_block_exit_signals(&old);
	int e = pthread_create(&w->thread, NULL, watch_owner, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return e == 0;
}

/* Mounts and serves until unmounted; NOTIFY (or -1) gets the status once the mount is live,
 * OWNER_FD (or -1) is a pidfd of CFG->owner to watch while serving (closed after serving; a
 * failure before that is followed by the serving process's exit). */
static int serve(const lyr_fs_config *cfg, const char *mountpoint, lyr_fs_error *err, int notify,
		 int owner_fd)
{
	char mp[PATH_MAX];
	struct stat st;
	if (!realpath(mountpoint, mp) || stat(mp, &st) < 0) {
		int r = fail(err, -errno, "mountpoint '%s': %s", mountpoint, strerror(errno));
		report(notify, r, err);
		return r;
	}
	if (!S_ISDIR(st.st_mode)) {
		int r = fail(err, -ENOTDIR, "mountpoint '%s': not a directory", mountpoint);
		report(notify, r, err);
		return r;
	}
	int cr = check_overlaps(cfg, mp, err);
	if (cr < 0) {
		report(notify, cr, err);
		return cr;
	}
	/* every inode the kernel holds keeps an O_PATH fd: allow as many as we may */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct ovl_fs *fs;
	int r = ovl_fs_new(cfg, err, &fs);
	if (r < 0) {
		report(notify, r, err);
		return r;
	}
	char opts[4096] = "";
	append(opts, sizeof(opts), "default_permissions");
	char fsname[PATH_MAX + 16];
	snprintf(fsname, sizeof(fsname), "fsname=%s", cfg->fsname ? cfg->fsname : "layerfs");
	append(opts, sizeof(opts), fsname);
	append(opts, sizeof(opts), "subtype=layerfs");
	if (cfg->allow_other)
		append(opts, sizeof(opts), "allow_other");
	if (cfg->allow_root)
		append(opts, sizeof(opts), "allow_root");
	if (fs->read_only)
		append(opts, sizeof(opts), "ro");
	append(opts, sizeof(opts), cfg->nodev ? "nodev" : "dev");
	/* set-id programs of a container's root must work (as with fuse-overlayfs) unless the
	 * caller asks otherwise; fusermount3 makes every mount of a user nosuid anyway */
	append(opts, sizeof(opts), cfg->nosuid || geteuid() != 0 ? "nosuid" : "suid");
	if (cfg->noexec)
		append(opts, sizeof(opts), "noexec");
	if (cfg->noatime)
		append(opts, sizeof(opts), "noatime");
	/* context= means something only to SELinux; elsewhere the kernel would refuse the mount */
	if (cfg->context && access("/sys/fs/selinux/enforce", F_OK) == 0) {
		char ctx[1024];
		snprintf(ctx, sizeof(ctx), "context=%s", cfg->context);
		append(opts, sizeof(opts), ctx);
	}
	char *argv[] = {"layerfs", "-o", opts, cfg->debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(cfg->debug ? 4 : 3, argv);
	struct fuse_session *se = fuse_session_new(&args, &ovl_ops, sizeof(ovl_ops), fs);
	fuse_opt_free_args(&args);
	if (!se) {
		r = fail(err, -EINVAL, "mount options '%s' were refused", opts);
		ovl_fs_free(fs);
		report(notify, r, err);
		return r;
	}
	fs->se = se;
	if (fuse_set_signal_handlers(se) < 0 || fuse_session_mount(se, mp) < 0) {
		r = fail(err, -EIO,
			 "mounting at '%s' failed (is /dev/fuse usable and fusermount3 installed?)",
			 mountpoint);
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
		ovl_fs_free(fs);
		report(notify, r, err);
		return r;
	}
	if ((r = ovl_loop_attach(se, &fs->killpriv)) < 0) {
		r = fail(err, r, "mounting at '%s': cannot serve the connection: %s", mountpoint,
			 strerror(-r));
		fuse_session_unmount(se);
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
		ovl_fs_free(fs);
		report(notify, r, err);
		return r;
	}
	/* modes arrive unmasked (FUSE_CAP_DONT_MASK): each creation applies the caller's umask or
	 * the parent's default ACL itself (acl.c), and ours must not take more */
	mode_t old_umask = umask(0);
	if (notify >= 0) {
		report(notify, 0, NULL);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			if (!cfg->debug)
				dup2(null, 2);
			close(null);
		}
		if (!cfg->debug) {
			openlog("layerfs", LOG_PID, LOG_DAEMON);
			ovl_log_to_syslog = true;
		}
		if (chdir("/") < 0)
			ovl_log("chdir /: %s", strerror(errno));
	}
	if (cfg->ready && notify < 0)
		cfg->ready(cfg->ready_ctx, getpid());
	struct watch w = {.cfg = cfg, .pidfd = owner_fd};
	bool watching = owner_fd >= 0 && watch_start(&w);
	if (owner_fd >= 0 && !watching)
		ovl_log("cannot watch process %d: the mount outlives it", (int)cfg->owner);
	int lr = ovl_loop_run(se, cfg->threads ? cfg->threads : 16);
	if (lr < 0)
		ovl_log("reading requests: %s", strerror(-lr));
	if (watching) {
		pthread_cancel(w.thread);
		pthread_join(w.thread, NULL);
	}
	if (owner_fd >= 0)
		close(owner_fd);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	ovl_fs_free(fs);
	umask(old_umask);
	if (w.orphaned && cfg->orphaned)
		cfg->orphaned(cfg->owner_ctx);
	return 0;
}

/* A pidfd for the owner of a mount, opened in the serving process just forked by PARENT, or
 * -ESRCH when the owner has exited already (our parent may have died, and its pid been
 * reused, before the pidfd was opened: getppid() tells). */
static int owner_open(pid_t owner, pid_t parent)
{
	int fd = (int)syscall(SYS_pidfd_open, owner, 0);
	if (fd < 0)
		return -errno;
	if (owner == parent && getppid() != parent) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

int lyr_fs_mount(const lyr_fs_config *cfg, const char *mountpoint, lyr_fs_error *err,
		 pid_t *ret_pid)
{
	if (err)
		err->msg[0] = '\0';
	if (cfg->foreground) {
		int r = serve(cfg, mountpoint, err, -1, -1);
		if (r == 0)
			*ret_pid = getpid();
		return r;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return fail(err, -errno, "pipe: %s", strerror(errno));
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int r = -errno;
		close(p[0]);
		close(p[1]);
		return fail(err, r, "fork: %s", strerror(-r));
	}
	if (pid == 0) {
		close(p[0]);
		/* the serving process holds nothing of its parent's but the status pipe */
		if (p[1] > 3)
			close_range(3, (unsigned)p[1] - 1, 0);
		close_range((unsigned)p[1] + 1, ~0U, 0);
		setsid();
		/* libfuse installs its exit handlers only over the default dispositions: a
		 * caller's own handlers (exec catches SIGTERM) must not keep the mount alive */
		static const int exits[] = {SIGINT, SIGTERM, SIGHUP};
		for (size_t i = 0; i < sizeof(exits) / sizeof(exits[0]); i++)
			signal(exits[i], SIG_DFL);
		lyr_fs_error cerr = {{0}};
		int owner = cfg->owner > 0 ? owner_open(cfg->owner, parent) : -1;
		if (owner < 0 && cfg->owner > 0) {
			/* nobody waits for the status: the caller was its owner */
			fail(&cerr, owner, "process %d: %s", (int)cfg->owner, strerror(-owner));
			report(p[1], owner, &cerr);
			_exit(1);
		}
		int r = serve(cfg, mountpoint, &cerr, p[1], owner);
		_exit(r < 0 ? 1 : 0);
	}
	close(p[1]);
	struct mount_status st;
	ssize_t n;
	do
		n = read(p[0], &st, sizeof(st));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n != (ssize_t)sizeof(st)) {
		waitpid(pid, NULL, 0);
		return fail(err, -EIO, "the serving process for '%s' died before mounting",
			    mountpoint);
	}
	if (st.r < 0) {
		waitpid(pid, NULL, 0);
		if (err)
			memcpy(err->msg, st.msg, sizeof(err->msg));
		return st.r;
	}
	*ret_pid = pid;
	return 0;
}

static int wait_exit(pid_t pid)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd >= 0) {
		struct pollfd p = {pfd, POLLIN, 0};
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		close(pfd);
	} else if (errno != ESRCH) {
		/* no pidfd: poll for the process to go */
		while (kill(pid, 0) == 0) {
			int st;
			if (waitpid(pid, &st, WNOHANG) == pid)
				return 0;
			usleep(10000);
		}
	}
	waitpid(pid, NULL, WNOHANG); /* reap it when it is our child */
	return 0;
}

/* Unmounts MOUNTPOINT, detached from its users when LAZY (a dead mount, which nothing can use). */
static int unmount(const char *mountpoint, bool lazy, lyr_fs_error *err)
{
	if (geteuid() == 0) {
		if (umount2(mountpoint, UMOUNT_NOFOLLOW | (lazy ? MNT_DETACH : 0)) < 0)
			return fail(err, -errno, "unmounting '%s': %s", mountpoint,
				    errno == EINVAL ? "not a mountpoint" : strerror(errno));
		return 0;
	}
	char *argv[] = {"fusermount3", "-u", "-q", lazy ? "-z" : NULL, NULL, NULL};
	argv[lazy ? 4 : 3] = (char *)mountpoint;
	pid_t child;
	int e = posix_spawnp(&child, "fusermount3", NULL, NULL, argv, environ);
	if (e)
		return fail(err, -e, "unmounting '%s': fusermount3: %s", mountpoint, strerror(e));
	int st;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fail(err, -EPERM, "unmounting '%s': fusermount3 -u%s failed", mountpoint,
			    lazy ? " -z" : "");
	return 0;
}

int lyr_fs_mountpoint_path(const char *path, char *ret, size_t size)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	size_t len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	char *slash = strrchr(copy, '/');
	const char *base = slash ? slash + 1 : copy;
	const char *parent = slash ? (slash == copy ? "/" : copy) : ".";
	if (slash)
		*slash = '\0';
	char dir[PATH_MAX];
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		/* no last name to keep: the whole path resolves like any other */
		if (!realpath(path, dir))
			return -errno;
		base = "";
	} else if (!realpath(parent, dir)) {
		return -errno;
	}
	int n = snprintf(ret, size, "%s%s%s", dir, *base && strcmp(dir, "/") ? "/" : "", base);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The filesystem type of the topmost mount at PATH (resolved) into TYPE, "" when none. */
static void mount_type_at(const char *path, char *type, size_t size)
{
	type[0] = '\0';
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		char *mp, *fstype;
		if (lyr_mountinfo_parse(line, &mp, &fstype) == 0 && strcmp(mp, path) == 0)
			snprintf(type, size, "%s", fstype);
	}
	free(line);
	fclose(f);
}

int lyr_fs_clear_dead(const char *mountpoint, lyr_fs_error *err)
{
	if (err)
		err->msg[0] = '\0';
	char path[PATH_MAX];
	int cleared = 0;
	struct stat st;
	/* mounts may be stacked, each dead: clear them one by one, topmost first */
	for (int i = 0; i < 64; i++) {
		if (lyr_fs_mountpoint_path(mountpoint, path, sizeof(path)) < 0 ||
		    stat(path, &st) == 0 || errno != ENOTCONN)
			return cleared;
		char type[64];
		mount_type_at(path, type, sizeof(type));
		if (strcmp(type, "fuse.layerfs") != 0)
			return fail(
			    err, -ENOTCONN,
			    "mountpoint '%s' is a dead %s mount (its serving process is "
			    "gone): unmount it first with 'umount -l %s' or 'fusermount3 -u -z "
			    "%s'",
			    mountpoint, *type ? type : "FUSE", path, path);
		int r = unmount(path, true, err);
		if (r < 0)
			return r;
		cleared = 1;
	}
	return fail(err, -ELOOP, "mountpoint '%s': more than 64 dead mounts", mountpoint);
}

int lyr_fs_umount(const char *mountpoint, pid_t pid, lyr_fs_error *err)
{
	if (err)
		err->msg[0] = '\0';
	/* a dead mount (its server gone) is one nothing can use: detach it */
	struct stat st;
	bool dead = stat(mountpoint, &st) < 0 && errno == ENOTCONN;
	int r = unmount(mountpoint, dead, err);
	if (r == 0 && pid > 0)
		wait_exit(pid);
	return r;
}
