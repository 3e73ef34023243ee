/* The mounts of a sandbox, made by its init process inside its own mount namespace before
 * pivot_root: the root bound onto itself, /proc, a minimal /dev, then the caller's mounts in
 * component order (parents first).
 *
 * Everything the command can write to is nodev (the root and whatever is mounted below it,
 * /dev, tmpfs, binds); only the standard nodes bound into /dev, each a mount of its own,
 * allow devices.  /proc carries the OCI runtime spec's default masks and read-only paths
 * (docs/security.md).
 *
 * Every target is resolved inside the root: with openat2(RESOLVE_IN_ROOT) a symlink is
 * followed as if the root were "/" (so "/evil -> /etc" leads to ROOT/etc, never the host's
 * /etc); on kernels without openat2 any symlink on the way is refused.  Missing directories are
 * created and remembered, and lyr_exec_mounts_undo removes them again after the run (when they
 * are still empty).  Mounts are made on the resolved O_PATH descriptor (/proc/self/fd/N or
 * move_mount), never on a path string that could be swapped underneath.
 *
 * Everything here runs in a short-lived child; the state lives in a fixed array sized by the
 * caller before the fork. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "internal.h"
#include "sandbox.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct mount_attr_arg {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int fail(lyr_exec_error *err, int r, const char *what, const char *path)
{
	lyr_exec_errf(err, "%s '%s': %s", what, path, strerror(-r));
	return r;
}

/* How often a lookup is retried when openat2 reports EAGAIN: it does so whenever a rename or
 * mount anywhere on the system races with a ".." step, so a busy host needs a few tries. */
#define OPENAT2_TRIES 64

/* Opens PATH (absolute, normalized) inside the root ROOTFD as O_PATH: a directory, or with
 * ANY_TYPE an object of any type (a file a file is bound onto). */
static int open_in_root_as(int rootfd, const char *path, bool any_type)
{
	const char *rel = path[1] ? path + 1 : ".";
	struct open_how how = {
	    .flags = O_PATH | O_CLOEXEC | (any_type ? 0 : O_DIRECTORY),
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = -1;
	for (int i = 0; i < OPENAT2_TRIES; i++) {
		fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	if (fd >= 0 || errno != ENOSYS)
		return fd < 0 ? -errno : fd;

	/* No openat2: walk component by component and refuse every symlink. */
	int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	_cleanup_free_ char *copy = strdup(rel);
	if (!copy) {
		close(cur);
		return -ENOMEM;
	}
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		bool leaf = !*save;
		int next = openat(
		    cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC | (any_type && leaf ? 0 : O_DIRECTORY));
		int e = errno;
		close(cur);
		if (next < 0)
			return e == ENOTDIR ? -ELOOP : -e;
		cur = next;
	}
	if (any_type) {
		/* a symlink opened with O_NOFOLLOW is refused like one on the way */
		struct stat st;
		if (fstat(cur, &st) < 0 || S_ISLNK(st.st_mode)) {
			close(cur);
			return -ELOOP;
		}
	}
	return cur;
}

/* open_in_root_as for a directory. */
static int open_in_root(int rootfd, const char *path)
{
	return open_in_root_as(rootfd, path, false);
}

/* Remembers NAME, just created in the directory at CUR, for removal after the run. */
static void record_created(lyr_exec_mounts *st, int cur, const char *name, bool file)
{
	if (st->n_created >= st->max_created)
		return;
	st->created[st->n_created].parentfd = fcntl(cur, F_DUPFD_CLOEXEC, 3);
	st->created[st->n_created].file = file;
	snprintf(st->created[st->n_created].name, sizeof st->created[0].name, "%s", name);
	st->n_created++;
}

/* No mount may cover the sandbox's /proc (its masks, the read-only sysctls) or /dev (the nodes
 * the command's process opens before it drops its capabilities), whether TARGET names them or
 * a symlink leads there: checks that FD, a component of TARGET resolved, lies on none of
 * their filesystems.  Returns 0 or -EINVAL with ERR filled. */
static int check_not_system(const lyr_exec_mounts *st, int fd, const char *target,
			    lyr_exec_error *err)
{
	struct stat s;
	if (st->n_sys == 0 || fstat(fd, &s) < 0)
		return 0; /* the sandbox's own mounts, or a vanished file the mount will fail on */
	for (size_t i = 0; i < st->n_sys; i++)
		if (s.st_dev == st->sys[i].dev) {
			lyr_exec_errf(err,
				      "mount target '%s': on or below the sandbox's %s, which no "
				      "mount may cover",
				      target, st->sys[i].where);
			return -EINVAL;
		}
	return 0;
}

/* Resolves TARGET inside the root, creating missing directories, and with FILE a missing last
 * component as an empty file (each recorded in ST for removal).  Returns an O_PATH fd of the
 * target (a directory unless FILE) or -errno with ERR filled. */
static int resolve_target(lyr_exec_mounts *st, const char *target, bool file, lyr_exec_error *err)
{
	_cleanup_free_ char *prefix = malloc(strlen(target) + 1);
	if (!prefix)
		return -ENOMEM;
	int cur = fcntl(st->rootfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return fail(err, -errno, "mount target", target);
	size_t len = 0;
	const char *p = target;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchrnul(p, '/');
		prefix[len++] = '/';
		memcpy(prefix + len, p, (size_t)(end - p));
		len += (size_t)(end - p);
		prefix[len] = '\0';
		_cleanup_free_ char *name = strndup(p, (size_t)(end - p));
		p = end;
		if (!name) {
			close(cur);
			return -ENOMEM;
		}
		bool leaf_file = file && !p[strspn(p, "/")];
		int fd = open_in_root_as(st->rootfd, prefix, leaf_file);
		if (fd == -ENOENT) {
			int made =
			    leaf_file
				? openat(cur, name,
					 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)
				: mkdirat(cur, name, 0755);
			if (made >= 0) {
				if (leaf_file)
					close(made);
				record_created(st, cur, name, leaf_file);
			} else if (errno != EEXIST) {
				int e = -errno;
				close(cur);
				lyr_exec_errf(err, "mount target '%s': cannot create '%s': %s",
					      target, prefix, strerror(-e));
				return e;
			}
			fd = open_in_root_as(st->rootfd, prefix, leaf_file);
		}
		close(cur);
		if (fd < 0) {
			if (fd == -ELOOP)
				lyr_exec_errf(err,
					      "mount target '%s': '%s' is a symlink, which this "
					      "kernel cannot resolve safely inside the root",
					      target, prefix);
			else
				lyr_exec_errf(err, "mount target '%s': '%s': %s", target, prefix,
					      strerror(-fd));
			return fd;
		}
		cur = fd;
		int r = check_not_system(st, cur, target, err);
		if (r < 0) {
			close(cur);
			return r;
		}
	}
	/* A symlink can lead back to the root ("/tmp -> /"): mounting there would cover the
	 * whole root, which target "/" is refused for. */
	struct stat a, b;
	if (fstat(cur, &a) < 0 || fstat(st->rootfd, &b) < 0) {
		int e = -errno;
		close(cur);
		return fail(err, e, "mount target", target);
	}
	if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
		close(cur);
		lyr_exec_errf(err,
			      "mount target '%s': resolves to '/' inside the root, not below it",
			      target);
		return -EINVAL;
	}
	return cur;
}

/* Remembers the mount now sitting on TARGET (a directory unless FILE) so that undo can detach
 * it. */
static void record_mount(lyr_exec_mounts *st, const char *target, bool file)
{
	if (st->n_mounted >= st->max_mounted)
		return;
	int fd = open_in_root_as(st->rootfd, target, file);
	if (fd >= 0)
		st->mounted[st->n_mounted++] = fd;
}

static void fdpath(char out[64], int fd)
{
	snprintf(out, 64, "/proc/self/fd/%d", fd);
}

/* A new filesystem of TYPE on TARGET (resolved inside the root). */
static int mount_fs(lyr_exec_mounts *st, const char *target, const char *type, unsigned long flags,
		    const char *data, lyr_exec_error *err)
{
	int fd = resolve_target(st, target, false, err);
	if (fd < 0)
		return fd;
	char at[64];
	fdpath(at, fd);
	int r = mount(type, at, type, flags, data) < 0 ? -errno : 0;
	close(fd);
	if (r < 0) {
		lyr_exec_errf(err, "%s mount on '%s': %s", type, target, strerror(-r));
		return r;
	}
	record_mount(st, target, false);
	return 0;
}

/* Sets the mount attributes SET and clears CLR on the detached or attached mount FD, and on
 * every mount below it when RECURSIVE.  Returns 0 or -errno. */
static int set_attr(int fd, uint64_t set, uint64_t clr, bool recursive)
{
	struct mount_attr_arg attr = {.attr_set = set, .attr_clr = clr};
	unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
	return syscall(SYS_mount_setattr, fd, "", flags, &attr, sizeof attr) < 0 ? -errno : 0;
}

/* A detached copy of the mount (tree, when RECURSIVE) at PATH relative to DIRFD, with the
 * attributes SET set and CLR cleared.  Returns its fd or -errno. */
static int clone_tree(int dirfd, const char *path, bool recursive, uint64_t set, uint64_t clr)
{
	unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0) |
			 (*path ? 0 : AT_EMPTY_PATH);
	int tree = (int)syscall(SYS_open_tree, dirfd, path, flags);
	if (tree < 0)
		return -errno;
	int r = set_attr(tree, set, clr, recursive);
	if (r < 0) {
		close(tree);
		return r;
	}
	return tree;
}

/* Attaches the detached mount TREE onto the file or directory open at FD. */
static int attach(int tree, int fd)
{
	return syscall(SYS_move_mount, tree, "", fd, "",
		       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0
		   ? -errno
		   : 0;
}

/* Binds host directory or file SOURCE (recursively, nodev, read-only when asked) onto TARGET,
 * which must be of the same kind (a missing one is made so). */
static int mount_bind(lyr_exec_mounts *st, const char *source, const char *target, bool readonly,
		      lyr_exec_error *err)
{
	_cleanup_close_ int tree = clone_tree(
	    AT_FDCWD, source, true, MOUNT_ATTR_NODEV | (readonly ? MOUNT_ATTR_RDONLY : 0), 0);
	if (tree < 0)
		return fail(err, tree, "bind mount source", source);
	struct stat sst;
	if (fstat(tree, &sst) < 0)
		return fail(err, -errno, "bind mount source", source);
	bool file = !S_ISDIR(sst.st_mode);
	_cleanup_close_ int fd = resolve_target(st, target, file, err);
	if (fd < 0)
		return fd;
	struct stat tst;
	if (file && fstat(fd, &tst) == 0 && S_ISDIR(tst.st_mode)) {
		lyr_exec_errf(err, "mount target '%s': a directory, and the source is a file",
			      target);
		return -EISDIR;
	}
	int r = attach(tree, fd);
	if (r < 0)
		return fail(err, r, "bind mount on", target);
	record_mount(st, target, file);
	return 0;
}

/* Binds the host's device node HOST onto the file open at FD.  The bind is a mount of its own
 * that allows devices, whatever the mount under FD says.  It is read-only: the node is the
 * host's own inode, and a chmod, chown or utime through a writable mount would change it for
 * the whole host (reading and writing the device itself is not affected by the mount's
 * read-only flag). */
static int bind_node(const char *host, int fd)
{
	_cleanup_close_ int tree =
	    clone_tree(AT_FDCWD, host, false,
		       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NODEV);
	return tree < 0 ? tree : attach(tree, fd);
}

/* /proc, with the OCI runtime spec's default masks (runc's and Docker's lists): files that
 * show the host's kernel state or keys read as /dev/null, such directories as an empty
 * read-only tmpfs, and the kernel's global knobs (sysctls, sysrq, irq affinity) are
 * read-only.  /proc/sys/net is read-only too: with "--network host" it is the host's. */
static const char *const masked[] = {"acpi",	   "asound",	    "interrupts",  "kcore",
				     "keys",	   "latency_stats", "sched_debug", "scsi",
				     "timer_list", "timer_stats"};

static int mount_proc(lyr_exec_mounts *st, lyr_exec_error *err)
{
	static const char *const readonly[] = {"bus", "fs", "irq", "sys", "sysrq-trigger"};
	int r = mount_fs(st, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err);
	if (r < 0)
		return r;
	_cleanup_close_ int proc = open_in_root(st->rootfd, "/proc");
	if (proc < 0)
		return fail(err, proc, "open of", "/proc");
	char path[64];
	for (size_t i = 0; i < LYR_ARRAY_SIZE(masked) + LYR_ARRAY_SIZE(readonly); i++) {
		bool mask = i < LYR_ARRAY_SIZE(masked);
		const char *name = mask ? masked[i] : readonly[i - LYR_ARRAY_SIZE(masked)];
		snprintf(path, sizeof path, "/proc/%s", name);
		_cleanup_close_ int fd = openat(proc, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat s;
		if (fd < 0 && errno == ENOENT)
			continue; /* this kernel has no such file */
		if (fd < 0 || fstat(fd, &s) < 0)
			return fail(err, -errno, "open of", path);
		if (!mask) {
			_cleanup_close_ int tree =
			    clone_tree(fd, "", true,
				       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					   MOUNT_ATTR_NOEXEC,
				       0);
			r = tree < 0 ? tree : attach(tree, fd);
		} else if (S_ISDIR(s.st_mode)) {
			char at[64];
			fdpath(at, fd);
			r = mount("tmpfs", at, "tmpfs",
				  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=555") < 0
				? -errno
				: 0;
		} else {
			r = bind_node("/dev/null", fd);
		}
		if (r < 0)
			return fail(err, r, mask ? "masking" : "read-only bind mount of", path);
	}
	return 0;
}

/* The minimal /dev: a small nodev tmpfs holding bind mounts of the host's harmless character
 * devices, a private devpts instance, /dev/shm and the usual symlinks.  Only the bound nodes
 * and devpts allow devices: a node the command makes in /dev cannot be opened. */
static int mount_dev(lyr_exec_mounts *st, lyr_exec_error *err)
{
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	int r = mount_fs(st, "/dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			 "mode=755,size=65536", err);
	if (r < 0)
		return r;
	_cleanup_close_ int dev = open_in_root(st->rootfd, "/dev");
	if (dev < 0)
		return fail(err, dev, "open of", "/dev");
	for (size_t i = 0; i < LYR_ARRAY_SIZE(nodes); i++) {
		char host[32];
		snprintf(host, sizeof host, "/dev/%s", nodes[i]);
		if (access(host, F_OK) < 0 && strcmp(nodes[i], "null") != 0)
			continue; /* a host without it (a minimal CI container): leave it out */
		int f = openat(dev, nodes[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
		if (f < 0)
			return fail(err, -errno, "create of /dev node", nodes[i]);
		close(f);
		_cleanup_close_ int node = openat(dev, nodes[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (node < 0)
			return fail(err, -errno, "open of /dev node", nodes[i]);
		r = bind_node(host, node);
		if (r < 0)
			return fail(err, r, "bind mount of", host);
	}
	if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0)
		return fail(err, -errno, "mkdir in", "/dev");
	r = mount_fs(st, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		     "newinstance,ptmxmode=0666,mode=0620", err);
	if (r < 0)
		return r;
	r = mount_fs(st, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		     "mode=1777,size=67108864", err);
	if (r < 0)
		return r;
	static const char *const links[][2] = {{"pts/ptmx", "ptmx"},
					       {"/proc/self/fd", "fd"},
					       {"/proc/self/fd/0", "stdin"},
					       {"/proc/self/fd/1", "stdout"},
					       {"/proc/self/fd/2", "stderr"}};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(links); i++)
		if (symlinkat(links[i][0], dev, links[i][1]) < 0)
			return fail(err, -errno, "symlink in /dev", links[i][1]);
	return 0;
}

static int mount_cmp(const void *a, const void *b)
{
	return lyr_exec_path_cmp((*(const lyr_sandbox_mount *const *)a)->target,
				 (*(const lyr_sandbox_mount *const *)b)->target);
}

/* /proc and /dev must be directories (or missing) in the root itself: a symlink there would
 * put the sandbox's /proc or /dev over some other directory of the root. */
static int check_system_dir(lyr_exec_mounts *st, const char *name, lyr_exec_error *err)
{
	struct stat s;
	if (fstatat(st->rootfd, name, &s, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : fail(err, -errno, "root directory", name);
	if (!S_ISDIR(s.st_mode)) {
		lyr_exec_errf(err, "root directory '/%s': not a directory (%s)", name,
			      S_ISLNK(s.st_mode) ? "a symlink" : "some other file");
		return -ENOTDIR;
	}
	return 0;
}

/* Records the filesystem of PATH (inside the root) as one of the sandbox's under WHERE. */
static void note_system(lyr_exec_mounts *st, const char *path, const char *where)
{
	struct stat s;
	if (fstatat(st->rootfd, path, &s, AT_SYMLINK_NOFOLLOW) < 0)
		return; /* a mask this kernel has no path for */
	for (size_t i = 0; i < st->n_sys; i++)
		if (st->sys[i].dev == s.st_dev)
			return;
	if (st->n_sys < LYR_ARRAY_SIZE(st->sys))
		st->sys[st->n_sys++] = (typeof(st->sys[0])){.dev = s.st_dev, .where = where};
}

/* Fills ST's list of the sandbox's own filesystems, once /proc and /dev are mounted. */
static void note_systems(lyr_exec_mounts *st)
{
	static const char *const dev[] = {"dev", "dev/pts", "dev/shm", "dev/null"};
	/* /dev first: the masks of files in /proc are binds of /dev/null as well */
	for (size_t i = 0; i < LYR_ARRAY_SIZE(dev); i++)
		note_system(st, dev[i], "/dev");
	note_system(st, "proc", "/proc");
	for (size_t i = 0; i < LYR_ARRAY_SIZE(masked); i++) {
		char path[64];
		snprintf(path, sizeof path, "proc/%s", masked[i]);
		note_system(st, path, "/proc");
	}
}

int lyr_exec_mounts_apply(lyr_exec_mounts *st, const lyr_sandbox *sb, lyr_exec_error *err)
{
	int r = check_system_dir(st, "proc", err);
	if (r == 0)
		r = check_system_dir(st, "dev", err);
	if (r < 0)
		return r;
	/* Device nodes in the root view (made by the command, or committed into a layer by an
	 * earlier one) stay inert: only /dev's own nodes open. */
	r = set_attr(st->rootfd, MOUNT_ATTR_NODEV, 0, true);
	if (r < 0)
		return fail(err, r, "nodev remount of", "/");
	r = mount_proc(st, err);
	if (r < 0)
		return r;
	r = mount_dev(st, err);
	if (r < 0)
		return r;
	note_systems(st);

	_cleanup_free_ const lyr_sandbox_mount **order = calloc(sb->n_mounts + 1, sizeof *order);
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < sb->n_mounts; i++)
		order[i] = &sb->mounts[i];
	qsort(order, sb->n_mounts, sizeof *order, mount_cmp);
	for (size_t i = 0; i < sb->n_mounts; i++) {
		const lyr_sandbox_mount *m = order[i];
		_cleanup_free_ char *target = NULL;
		r = lyr_exec_path_normalize(m->target, &target);
		if (r < 0 || strcmp(target, "/") == 0) {
			lyr_exec_errf(err,
				      "mount target '%s': not an absolute path below '/' "
				      "without '..'",
				      m->target);
			return -EINVAL;
		}
		if (m->type == LYR_MOUNT_TMPFS) {
			char data[64] = "";
			if (m->size)
				snprintf(data, sizeof data, "size=%llu",
					 (unsigned long long)m->size);
			r = mount_fs(st, target, "tmpfs", MS_NOSUID | MS_NODEV, data, err);
		} else if (m->source) {
			r = mount_bind(st, m->source, target, m->readonly, err);
		} else {
			lyr_exec_errf(err, "mount target '%s': a bind mount needs a source",
				      target);
			r = -EINVAL;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

void lyr_exec_mounts_undo(lyr_exec_mounts *st)
{
	/* Detach through the descriptor of each mount's root: fchdir + umount(".") needs no
	 * path that the command could have replaced, and no /proc. */
	for (size_t i = st->n_mounted; i-- > 0;) {
		char at[64];
		fdpath(at, st->mounted[i]);
		if (fchdir(st->mounted[i]) == 0)
			(void)umount2(".", MNT_DETACH);
		else /* a file bound onto a file: no directory to enter */
			(void)umount2(at, MNT_DETACH);
		close(st->mounted[i]);
	}
	(void)chdir("/");
	for (size_t i = st->n_created; i-- > 0;) {
		if (st->created[i].parentfd < 0)
			continue;
		(void)unlinkat(st->created[i].parentfd, st->created[i].name,
			       st->created[i].file ? 0 : AT_REMOVEDIR);
		close(st->created[i].parentfd);
	}
	st->n_mounted = st->n_created = 0;
}

int lyr_exec_loopback_up(void)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return -errno;
	return 0;
}
