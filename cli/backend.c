/* Which backend serves a view: kernel overlayfs where this process may mount it and it shows
 * the chain as the daemon would, the FUSE daemon otherwise (as podman picks native overlay or
 * fuse-overlayfs).  --backend wins over $LAYERFS_BACKEND, which wins over auto.
 *
 * Whether the kernel lets this process mount overlay is probed once per store by mounting a
 * small overlay in it (STORE/kernel/), and the answer kept in STORE/kernel/probe keyed by what
 * it depends on: the kernel release, the effective uid, the effective capabilities and the user
 * namespace.  A different key probes again. */
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "commands.h"
#include "layerfs/stack.h"
#include "layerfs/tree.h"

/* snprintf for texts whose truncation is harmless (messages) or checked by the caller. */
static int __attribute__((format(printf, 3, 4))) fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(buf, size, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int cli_backend_want(const char *cmd, const char *opt, lyr_fs_backend *ret)
{
	const char *env = getenv("LAYERFS_BACKEND");
	const char *text = opt ? opt : env && *env ? env : "auto";
	if (lyr_fs_backend_parse(text, ret) == 0)
		return 0;
	if (opt)
		return cli_usage(cmd, "--backend %s: expects auto, kernel or fuse", opt);
	cli_fail("%s: LAYERFS_BACKEND=%s: expects auto, kernel or fuse", cmd, text);
	return EXIT_USAGE;
}

/* What the probe's answer depends on, as one line. */
static void probe_key(char *buf, size_t size)
{
	struct utsname u;
	if (uname(&u) < 0)
		fmt(u.release, sizeof u.release, "?");
	char caps[32] = "?", line[256];
	FILE *f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "CapEff:", 7) == 0)
			sscanf(line + 7, "%31s", caps);
	if (f)
		fclose(f);
	struct stat ns;
	if (stat("/proc/self/ns/user", &ns) < 0)
		ns.st_ino = 0;
	fmt(buf, size, "%s uid=%u caps=%s userns=%llu", u.release, (unsigned)geteuid(), caps,
		 (unsigned long long)ns.st_ino);
}

static const char *const mode_names[] = {"none", "trusted", "userxattr"};

/* Reads the cached answer for KEY from DIR/probe: 0 with *RET, -ENOENT when none or stale. */
static int probe_cached(int dirfd, const char *key, lyr_fs_kernel_mode *ret, char *why,
			size_t why_size)
{
	_cleanup_close_ int fd = openat(dirfd, "probe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	char buf[1024];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n <= 0)
		return -ENOENT;
	buf[n] = '\0';
	/* "KEY\nMODE\nWHY\n" */
	char *nl = strchr(buf, '\n');
	if (!nl || (size_t)(nl - buf) != strlen(key) || strncmp(buf, key, strlen(key)) != 0)
		return -ENOENT;
	char *mode = nl + 1, *nl2 = strchr(mode, '\n');
	if (!nl2)
		return -ENOENT;
	*nl2 = '\0';
	for (size_t i = 0; i < LYR_ARRAY_SIZE(mode_names); i++)
		if (strcmp(mode, mode_names[i]) == 0) {
			*ret = (lyr_fs_kernel_mode)i;
			char *end = strchr(nl2 + 1, '\n');
			if (end)
				*end = '\0';
			fmt(why, why_size, "%s", nl2 + 1);
			return 0;
		}
	return -ENOENT;
}

static void probe_store(int dirfd, const char *key, lyr_fs_kernel_mode mode, const char *why)
{
	char tmp[64], text[1200];
	fmt(tmp, sizeof tmp, ".probe.%d", (int)getpid());
	if (fmt(text, sizeof text, "%s\n%s\n%s\n", key, mode_names[mode], why) < 0)
		return;
	ssize_t len = (ssize_t)strlen(text);
	_cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return; /* a cache only: the next command probes again */
	if (write(fd, text, (size_t)len) == len)
		renameat(dirfd, tmp, dirfd, "probe");
	else
		unlinkat(dirfd, tmp, 0);
}

/* STORE/kernel: the probe's answer and the empty lower of scratch trees. */
static int kernel_dir(lyr_cli *cli, char *path, size_t size)
{
	if (fmt(path, size, "%s/kernel", lyr_store_root(cli->store)) < 0)
		return -ENAMETOOLONG;
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	char empty[PATH_MAX];
	if (fmt(empty, sizeof empty, "%s/empty", path) < 0)
		return -ENAMETOOLONG;
	if (mkdir(empty, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The kernel mode this process has on the store, probed or from the cache; WHY says why not
 * when it has none. */
static lyr_fs_kernel_mode kernel_mode(lyr_cli *cli, char *why, size_t why_size)
{
	char dir[PATH_MAX], key[512];
	int r = kernel_dir(cli, dir, sizeof dir);
	if (r < 0) {
		fmt(why, why_size, "'%s': %s", dir, strerror(-r));
		return LYR_KERNEL_NONE;
	}
	_cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	probe_key(key, sizeof key);
	lyr_fs_kernel_mode mode = LYR_KERNEL_NONE;
	if (dfd >= 0 && probe_cached(dfd, key, &mode, why, why_size) == 0)
		return mode;
	char scratch[PATH_MAX];
	fmt(scratch, sizeof scratch, "%s/probe-XXXXXX", dir);
	if (!mkdtemp(scratch)) {
		fmt(why, why_size, "'%s': %s", scratch, strerror(errno));
		return LYR_KERNEL_NONE;
	}
	lyr_fs_error err = {{0}};
	if (getenv("LAYERFS_KERNEL_PROBE_FAIL")) /* tests: the kernel refusing, whatever it says */
		fmt(err.msg, sizeof err.msg, "kernel overlayfs refused the mount: "
						  "LAYERFS_KERNEL_PROBE_FAIL is set");
	else
		lyr_fs_kernel_probe(scratch, &mode, &err);
	fmt(why, why_size, "%s", mode == LYR_KERNEL_NONE ? err.msg : "");
	const char *name = strrchr(scratch, '/') + 1;
	lyr_tree_remove(dfd, name);
	if (dfd >= 0 && !getenv("LAYERFS_KERNEL_PROBE_FAIL"))
		probe_store(dfd, key, mode, why);
	return mode;
}

/* Marker kinds (and hard-link groups) a layer holds, found once per layer and kept with it
 * (layers never change). */
enum {
	MARK_TRUSTED = 1,  /* trusted.overlay.{opaque,redirect,metacopy} */
	MARK_USER = 2,	   /* user.overlay.{opaque,redirect,metacopy} */
	MARK_REDIRECT = 4, /* overlay.redirect */
	MARK_METACOPY = 8, /* overlay.metacopy */
	MARK_AUFS = 16,	   /* ".wh." names (OCI/AUFS markers) */
	MARK_LINKS = 32,   /* a non-directory with more than one name (a hard-link group) */
};
#define MARKS_META "overlay-markers"

static int mark_entry(void *ctx, int dirfd, const char *name, const struct stat *st,
		      const char *path)
{
	(void)path;
	unsigned *m = ctx;
	if (lyr_stack_is_marker_name(name))
		*m |= MARK_AUFS;
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1)
		*m |= MARK_LINKS;
	if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))
		return 0;
	char proc[PATH_MAX + 32], list[4096];
	fmt(proc, sizeof proc, "/proc/self/fd/%d/%s", dirfd, name);
	ssize_t n = llistxattr(proc, list, sizeof list);
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(list + off) + 1) {
		const char *x = list + off, *suffix = NULL;
		unsigned ns = 0;
		if (strncmp(x, "trusted.overlay.", 16) == 0)
			ns = MARK_TRUSTED, suffix = x + 16;
		else if (strncmp(x, "user.overlay.", 13) == 0)
			ns = MARK_USER, suffix = x + 13;
		if (!suffix)
			continue;
		if (strcmp(suffix, LYR_OVL_REDIRECT) == 0)
			*m |= ns | MARK_REDIRECT;
		else if (strcmp(suffix, LYR_OVL_METACOPY) == 0)
			*m |= ns | MARK_METACOPY;
		else if (strcmp(suffix, LYR_OVL_OPAQUE) == 0)
			*m |= ns;
	}
	return 0;
}

/* The marker kinds of layer ID (diff at DIR), from its note or found now and noted. */
static int layer_marks(lyr_cli *cli, const char *id, const char *dir, unsigned *ret)
{
	_cleanup_free_ char *note = NULL;
	if (lyr_layer_meta_get(cli->store, id, MARKS_META, &note) == 0) {
		char *end;
		unsigned long m = strtoul(note, &end, 10);
		if (end != note && *end == '\n') {
			*ret = (unsigned)m;
			return 0;
		}
	}
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unsigned m = 0;
	lyr_tree_visit visit = {.entry = mark_entry, .ctx = &m};
	int r = lyr_tree_walk(fd, &visit, NULL);
	if (r < 0)
		return r;
	char text[16];
	fmt(text, sizeof text, "%u\n", m);
	lyr_layer_meta_set(cli->store, id, MARKS_META, text, strlen(text)); /* a cache */
	*ret = m;
	return 0;
}

/* 0 when kernel overlayfs in MODE reads every marker of the layers IDS (NULL-terminated, at
 * DIRS) as the daemon does; else -EOPNOTSUPP with WHY naming the layer and the marker. */
static int chain_refuses(lyr_cli *cli, char *const *ids, char *const *dirs,
			 lyr_fs_kernel_mode mode, char *why, size_t size, unsigned *ret_all)
{
	*ret_all = 0;
	for (size_t i = 0; ids && ids[i]; i++) {
		unsigned m = 0;
		int r = layer_marks(cli, ids[i], dirs[i], &m);
		*ret_all |= m;
		const char *what = NULL;
		if (r < 0)
			what = strerror(-r);
		else if (m & MARK_AUFS)
			what = "it holds OCI/AUFS whiteout markers (.wh.*), which kernel overlayfs "
			       "does not read";
		else if (mode == LYR_KERNEL_TRUSTED && (m & MARK_USER))
			what = "its overlay markers are user.overlay.* xattrs (written without "
			       "CAP_SYS_ADMIN), which a privileged kernel mount does not read";
		else if (mode == LYR_KERNEL_USERXATTR && (m & MARK_TRUSTED))
			what = "its overlay markers are trusted.overlay.* xattrs, which a userxattr "
			       "mount does not read";
		else if (mode == LYR_KERNEL_USERXATTR && (m & (MARK_REDIRECT | MARK_METACOPY)))
			what = m & MARK_REDIRECT ? "it has directory redirects, which the kernel "
						   "refuses to follow with userxattr"
						 : "it has metacopy files, which the kernel refuses "
						   "with userxattr";
		if (what) {
			fmt(why, size, "layer %.19s: %s", ids[i], what);
			return r < 0 ? r : -EOPNOTSUPP;
		}
	}
	return 0;
}

int cli_backend_choose(lyr_cli *cli, lyr_fs_backend want, lyr_fs_config *cfg,
		       const cli_view *view, cli_backend *ret)
{
	memset(ret, 0, sizeof *ret);
	ret->kind = LYR_FS_FUSE;
	if (want == LYR_FS_FUSE)
		return 0;
	ret->mode = kernel_mode(cli, ret->why, sizeof ret->why);
	lyr_fs_error why = {{0}};
	unsigned marks = 0;
	int r = ret->mode == LYR_KERNEL_NONE ? -EPERM : lyr_fs_kernel_refuses(cfg, ret->mode, &why);
	if (r == 0)
		r = chain_refuses(cli, view->ids, view->lowers, ret->mode, why.msg, sizeof why.msg,
				  &marks);
	if (r < 0 && ret->mode != LYR_KERNEL_NONE)
		fmt(ret->why, sizeof ret->why, "%s", why.msg);
	if (r < 0) {
		if (want == LYR_FS_KERNEL) {
			cli_fail("the kernel backend cannot serve this view: %s", ret->why);
			return r;
		}
		if (getenv("LAYERFS_DEBUG"))
			fprintf(stderr, "layerfs: using FUSE: %s\n", ret->why);
		return 0;
	}
	ret->kind = LYR_FS_KERNEL;
	cfg->kernel_index = marks & MARK_LINKS;
	fmt(ret->empty, sizeof ret->empty, "%s/kernel/empty", lyr_store_root(cli->store));
	return 0;
}
