/* The kernel backend: the same view as the FUSE daemon's, mounted by kernel overlayfs over the
 * same directories (the store's diff format is overlayfs' own), with no serving process.
 *
 * Two modes, as the kernel allows them: TRUSTED (CAP_SYS_ADMIN in the initial user namespace:
 * markers in trusted.overlay.*, redirect_dir and metacopy on, so renames of lower directories
 * and metadata-only copy-ups are written as the FUSE daemon writes them) and USERXATTR (a user
 * namespace whose owner may mount overlay, kernel >= 5.11: markers in user.overlay.*, and the
 * kernel refuses redirect_dir and metacopy).  index is on in the privileged mode (a lower
 * hard-link group stays one file after a copy-up, as with the daemon) and off with userxattr
 * (file handles cannot be opened there: a copy-up breaks the group, as in podman's rootless
 * native overlay).
 *
 * Mounts go through the new mount API (fsopen/fsconfig/fsmount/move_mount): each lower is its
 * own "lowerdir+" parameter (Linux >= 6.8), so a deep chain is not bound by the one page a
 * mount(2) option string may fill; older kernels get one joined "lowerdir" string, refused
 * here when it would not fit.  The kernel's own messages about a refusal are read back from
 * the fs context and returned to the caller. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ovl.h"

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif

/* The kernel's FILESYSTEM_MAX_STACK_DEPTH-independent limit on lower layers (OVL_MAX_STACK). */
#define KERNEL_LOWERS_MAX 500

#define fail ovl_fail

int lyr_fs_backend_parse(const char *text, lyr_fs_backend *ret)
{
	static const char *const names[] = {"auto", "kernel", "fuse"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++)
		if (strcmp(text, names[i]) == 0) {
			*ret = (lyr_fs_backend)i;
			return 0;
		}
	return -EINVAL;
}

const char *lyr_fs_backend_name(lyr_fs_backend b)
{
	return b == LYR_FS_KERNEL ? "kernel" : b == LYR_FS_FUSE ? "fuse" : "auto";
}

int lyr_fs_kernel_refuses(const lyr_fs_config *cfg, lyr_fs_kernel_mode mode, lyr_fs_error *why)
{
	if (why)
		why->msg[0] = '\0';
	if (mode == LYR_KERNEL_NONE)
		return fail(why, -EPERM, "this process may not mount kernel overlayfs");
	if (cfg->foreground)
		return fail(why, -EOPNOTSUPP, "a foreground mount needs a serving process");
	if (cfg->nuidmap || cfg->ngidmap || cfg->squash_to_root || cfg->squash_to_uid >= 0 ||
	    cfg->squash_to_gid >= 0)
		return fail(why, -EOPNOTSUPP, "id mapping and squashing are FUSE options");
	if (cfg->xattr_permissions)
		return fail(why, -EOPNOTSUPP, "xattr_permissions is a FUSE option");
	if (cfg->static_nlink)
		return fail(why, -EOPNOTSUPP, "static_nlink is a FUSE option");
	if (cfg->noacl)
		return fail(why, -EOPNOTSUPP, "noacl is a FUSE option");
	if (cfg->context && access("/sys/fs/selinux/enforce", F_OK) == 0)
		return fail(why, -EOPNOTSUPP, "context= is passed to FUSE mounts only");
	if (cfg->nlowers > KERNEL_LOWERS_MAX)
		return fail(why, -E2BIG, "%zu lower layers: kernel overlayfs stacks at most %d",
			    cfg->nlowers, KERNEL_LOWERS_MAX);
	return 0;
}

/* Appends the kernel's messages queued on the fs context FD (lines "e overlay: ...") to BUF. */
static void context_messages(int fd, char *buf, size_t size)
{
	char line[512];
	ssize_t n;
	size_t len = strlen(buf);
	while ((n = read(fd, line, sizeof(line) - 1)) > 0) {
		line[n] = '\0';
		const char *text = n > 2 && line[1] == ' ' ? line + 2 : line;
		int w = snprintf(buf + len, size - len, "%s%s", len ? "; " : "", text);
		if (w < 0 || (size_t)w >= size - len)
			break;
		len += (size_t)w;
	}
}

static int set_string(int fd, const char *key, const char *value)
{
	return fsconfig(fd, value ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, value, 0) < 0
		   ? -errno
		   : 0;
}

/* The lowers as one "lowerdir" value (":" separated, topmost first, ':' and ',' escaped), for
 * kernels without "lowerdir+"; -E2BIG when it does not fit in the page a mount option may
 * take. */
static int joined_lowers(const char *const *lowers, size_t n, char **ret)
{
	size_t cap = 1;
	for (size_t i = 0; i < n; i++)
		cap += 2 * strlen(lowers[i]) + 1;
	char *s = malloc(cap), *w = s;
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (i)
			*w++ = ':';
		for (const char *p = lowers[i]; *p; p++) {
			if (*p == ':' || *p == ',' || *p == '\\')
				*w++ = '\\';
			*w++ = *p;
		}
	}
	*w = '\0';
	if ((size_t)(w - s) >= 4096 - 64) { /* the rest of the page holds the other options */
		free(s);
		return -E2BIG;
	}
	*ret = s;
	return 0;
}

static int configure(int fd, const lyr_fs_config *cfg, lyr_fs_kernel_mode mode,
		     const char *empty, const char *kwork, lyr_fs_error *err)
{
	int r = 0;
	const char *const *lowers = cfg->lowers;
	size_t n = cfg->nlowers;
	const char *pair[2] = {n ? lowers[0] : empty, empty};
	if (n == 0) { /* a scratch ref: overlayfs wants a lower */
		lowers = pair;
		n = 1;
	}
	if (n == 1 && !cfg->upper) { /* and two of them without an upper */
		lowers = pair;
		n = 2;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		r = set_string(fd, "lowerdir+", lowers[i]);
		if (r == -EINVAL && i == 0) {
			/* before Linux 6.8: one string for the whole stack */
			char joined[64] = "";
			context_messages(fd, joined, sizeof(joined)); /* drop "unknown parameter" */
			_cleanup_free_ char *all = NULL;
			r = joined_lowers(lowers, n, &all);
			if (r == -E2BIG)
				return fail(err, r,
					    "%zu lower layers do not fit in one mount option string "
					    "on this kernel (no lowerdir+ before Linux 6.8)",
					    n);
			if (r == 0)
				r = set_string(fd, "lowerdir", all);
			if (r < 0)
				return fail(err, r, "lower directories: %s", strerror(-r));
			break;
		}
		if (r < 0)
			return fail(err, r, "lower directory '%s': %s", lowers[i], strerror(-r));
	}
	if (cfg->upper && !cfg->read_only) {
		if ((r = set_string(fd, "upperdir", cfg->upper)) < 0)
			return fail(err, r, "upper directory '%s': %s", cfg->upper, strerror(-r));
		if ((r = set_string(fd, "workdir", kwork)) < 0)
			return fail(err, r, "work directory '%s': %s", kwork, strerror(-r));
	} else if (cfg->upper) {
		/* a ref mounted read-only: its upper is the topmost lower (not done by callers that
		 * pass it as a lower themselves) */
		return fail(err, -EINVAL, "a read-only ref is mounted with its upper as a lower");
	}
	if (mode == LYR_KERNEL_USERXATTR)
		r = set_string(fd, "userxattr", NULL);
	else if ((r = set_string(fd, "redirect_dir", "on")) == 0)
		r = set_string(fd, "metacopy", "on");
	/* the kernel's index keeps a lower hard-link group together across a copy-up, as the
	 * daemon's does; commit links the group's other names from it (commit.c).  It needs file
	 * handles, which a user namespace may not open, and costs every lookup of a lower file a
	 * search of the index: callers turn it off for chains without hard links. */
	bool index = mode == LYR_KERNEL_TRUSTED && cfg->upper && cfg->kernel_index;
	if (r == 0)
		r = set_string(fd, "index", index ? "on" : "off");
	if (r == 0 && cfg->no_fsync && cfg->upper)
		r = set_string(fd, "volatile", NULL);
	if (r < 0)
		return fail(err, r, "overlay options: %s", strerror(-r));
	return 0;
}

int lyr_fs_kernel_mount(const lyr_fs_config *cfg, lyr_fs_kernel_mode mode, const char *empty,
			const char *mountpoint, lyr_fs_error *err, uint64_t *ret_mnt_id)
{
	if (err)
		err->msg[0] = '\0';
	int r = lyr_fs_kernel_refuses(cfg, mode, err);
	if (r < 0)
		return r;
	/* the kernel's own work directory, apart from the daemon's (index and temporary names) */
	_cleanup_free_ char *kwork = NULL;
	if (cfg->upper) {
		if (asprintf(&kwork, "%s/kernel", cfg->work) < 0)
			return -ENOMEM;
		if (mkdir(kwork, 0700) < 0 && errno != EEXIST)
			return fail(err, -errno, "work directory '%s': %s", kwork, strerror(errno));
	}
	_cleanup_close_ int fd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fd < 0)
		return fail(err, -errno, "this process may not mount kernel overlayfs: %s",
			    strerror(errno));
	r = configure(fd, cfg, mode, empty, kwork, err);
	if (r == 0 && fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		r = -errno;
		char why[sizeof(err->msg) - 64] = "";
		context_messages(fd, why, sizeof(why));
		return fail(err, r, "kernel overlayfs refused the mount: %s",
			    why[0] ? why : r == -EINVAL ? "Invalid argument (the kernel log says why)"
							: strerror(-r));
	}
	if (r < 0)
		return r;
	unsigned attr = 0;
	if (!cfg->upper || cfg->read_only)
		attr |= MOUNT_ATTR_RDONLY;
	if (cfg->nosuid)
		attr |= MOUNT_ATTR_NOSUID;
	if (cfg->nodev)
		attr |= MOUNT_ATTR_NODEV;
	if (cfg->noexec)
		attr |= MOUNT_ATTR_NOEXEC;
	if (cfg->noatime)
		attr |= MOUNT_ATTR_NOATIME;
	else if (cfg->nodiratime)
		attr |= MOUNT_ATTR_NODIRATIME;
	_cleanup_close_ int mfd = fsmount(fd, FSMOUNT_CLOEXEC, attr);
	if (mfd < 0)
		return fail(err, -errno, "kernel overlayfs: fsmount: %s", strerror(errno));
	struct statx stx;
	uint64_t id = 0;
	if (statx(mfd, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE, &stx) == 0 &&
	    (stx.stx_mask & (STATX_MNT_ID_UNIQUE | STATX_MNT_ID)))
		id = stx.stx_mnt_id;
	if (move_mount(mfd, "", AT_FDCWD, mountpoint, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return fail(err, -errno, "mounting at '%s': %s", mountpoint, strerror(errno));
	if (ret_mnt_id)
		*ret_mnt_id = id;
	return 0;
}

int lyr_fs_kernel_mount_id(const char *mountpoint, uint64_t *ret)
{
	struct statx stx;
	if (statx(AT_FDCWD, mountpoint, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
		  STATX_MNT_ID_UNIQUE, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & (STATX_MNT_ID_UNIQUE | STATX_MNT_ID)))
		return -EOPNOTSUPP;
	*ret = stx.stx_mnt_id;
	return 0;
}

/* Makes DIR/NAME (a directory) and returns its path in BUF. */
static int probe_dir(int dirfd, const char *dir, const char *name, char *buf, size_t size)
{
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(buf, size, "%s/%s", dir, name);
	return 0;
}

/* True in the initial user namespace (its uid map is the whole identity range). */
static bool initial_userns(void)
{
	FILE *f = fopen("/proc/self/uid_map", "re");
	if (!f)
		return false;
	unsigned long inner, outer, count;
	int n = fscanf(f, "%lu %lu %lu", &inner, &outer, &count);
	fclose(f);
	return n == 3 && inner == 0 && outer == 0 && count == 4294967295UL;
}

int lyr_fs_kernel_probe(const char *scratch, lyr_fs_kernel_mode *ret, lyr_fs_error *why)
{
	if (why)
		why->msg[0] = '\0';
	*ret = LYR_KERNEL_NONE;
	_cleanup_close_ int dfd = open(scratch, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return fail(why, -errno, "'%s': %s", scratch, strerror(errno));
	char l1[PATH_MAX], l2[PATH_MAX], up[PATH_MAX], wk[PATH_MAX], mp[PATH_MAX];
	int r = probe_dir(dfd, scratch, "l1", l1, sizeof l1);
	if (r == 0)
		r = probe_dir(dfd, scratch, "l2", l2, sizeof l2);
	if (r == 0)
		r = probe_dir(dfd, scratch, "u", up, sizeof up);
	if (r == 0)
		r = probe_dir(dfd, scratch, "w", wk, sizeof wk);
	if (r == 0)
		r = probe_dir(dfd, scratch, "m", mp, sizeof mp);
	if (r < 0)
		return fail(why, r, "'%s': %s", scratch, strerror(-r));
	const char *lowers[] = {l1, l2};
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	cfg.lowers = lowers;
	cfg.nlowers = 2;
	cfg.upper = up;
	cfg.work = wk;
	cfg.nodev = cfg.nosuid = true;
	/* privileged first, as containers/storage tries it: only then are redirects and
	 * metacopy files of lower layers followed */
	static const lyr_fs_kernel_mode modes[] = {LYR_KERNEL_TRUSTED, LYR_KERNEL_USERXATTR};
	lyr_fs_error e = {{0}};
	/* in a user namespace the kernel may accept a trusted mount and then write no marker:
	 * trusted.* xattrs belong to the initial namespace's CAP_SYS_ADMIN */
	for (size_t i = initial_userns() ? 0 : 1; i < LYR_ARRAY_SIZE(modes); i++) {
		r = lyr_fs_kernel_mount(&cfg, modes[i], l1, mp, &e, NULL);
		if (r == 0) {
			umount2(mp, MNT_DETACH);
			*ret = modes[i];
			return 0;
		}
		if (why && !why->msg[0])
			memcpy(why->msg, e.msg, sizeof(why->msg));
	}
	return r;
}
