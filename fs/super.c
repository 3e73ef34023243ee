/* Setting up and tearing down one mount's state: the layer stack (upper first when there is one),
 * the work directory (WORK/work, emptied at mount; it holds objects under construction), the
 * private xattr namespace and the root inode. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ovl.h"

static bool has_cap(int cap)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[cap / 32].effective & (1u << (cap % 32));
}

/* True when a trusted.* xattr can be set on the directory at FD (removed again at once). */
static bool fsetxattr_probe(int fd)
{
	char proc[64];
	ovl_proc_path(fd, proc);
	const char *name = "trusted.overlay.layerfs.probe";
	if (setxattr(proc, name, "1", 1, 0) < 0)
		return false;
	removexattr(proc, name);
	return true;
}

#define fail ovl_fail

static lyr_fs_idmap *copy_map(const lyr_fs_idmap *m, size_t n)
{
	if (!n)
		return NULL;
	lyr_fs_idmap *c = malloc(n * sizeof(*c));
	if (c)
		memcpy(c, m, n * sizeof(*c));
	return c;
}

/* True when the filesystem of some layer has POSIX ACLs (asked once per filesystem): a
 * read-only stack whose lower files carry ACLs must enforce them as much as a writable one. */
static bool any_layer_has_acls(lyr_stack *stack)
{
	size_t n = lyr_stack_layers(stack);
	dev_t seen[8];
	size_t nseen = 0;
	for (size_t i = 0; i < n; i++) {
		int fd = lyr_stack_layer_fd(stack, i);
		struct stat st;
		if (fstat(fd, &st) < 0)
			continue;
		bool known = false;
		for (size_t k = 0; k < nseen; k++)
			known = known || seen[k] == st.st_dev;
		if (known)
			continue;
		if (ovl_acl_supported(fd))
			return true;
		if (nseen < LYR_ARRAY_SIZE(seen))
			seen[nseen++] = st.st_dev;
	}
	return false;
}

/* False only when the index directory at FD (O_PATH) certainly holds no entry. */
static bool index_nonempty(int fd)
{
	int dfd = ovl_reopen(fd, O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		return true;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return true;
	}
	bool any = false;
	struct dirent *de;
	while (!any && (de = readdir(d)))
		any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return any;
}

int ovl_fs_new(const lyr_fs_config *cfg, lyr_fs_error *err, struct ovl_fs **ret)
{
	/* an upper alone is a scratch tree (a store ref with no parent) */
	if (cfg->nlowers > OVL_LOWERS_MAX || (cfg->nlowers < 1 && !cfg->upper))
		return fail(err, -EINVAL, "%zu lower layers given (1 to %d are allowed)",
			    cfg->nlowers, OVL_LOWERS_MAX);
	if (!cfg->upper != !cfg->work)
		return fail(err, -EINVAL,
			    "an upper directory needs a work directory and the other way round");
	if (cfg->xattr_permissions < 0 || cfg->xattr_permissions > 2)
		return fail(err, -EINVAL, "xattr_permissions must be 0, 1 or 2");
	struct ovl_fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	fs->upper_fd = fs->work_fd = fs->index_fd = -1;
	for (size_t i = 0; i < OVL_SHARDS; i++)
		pthread_mutex_init(&fs->shards[i].lock, NULL);
	pthread_mutex_init(&fs->evict_lock, NULL);
	for (size_t i = 0; i < OVL_TIMES_LOCKS; i++)
		pthread_mutex_init(&fs->times_locks[i], NULL);
	pthread_mutex_init(&fs->dirs_lock, NULL);
	/* half the fds we may have for non-directory inodes; the rest for directories, open files
	 * and copy-ups */
	struct rlimit rl;
	fs->fd_budget = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
			    ? (long)(rl.rlim_cur / 2)
			    : 1L << 19;
	if (fs->fd_budget < 32)
		fs->fd_budget = 32;
	fs->uidmap = copy_map(cfg->uidmap, cfg->nuidmap);
	fs->gidmap = copy_map(cfg->gidmap, cfg->ngidmap);
	fs->has_upper = cfg->upper != NULL;
	fs->read_only = cfg->read_only || !fs->has_upper;
	fs->first_lower = fs->has_upper ? 1 : 0;
	fs->privileged = has_cap(CAP_CHOWN);
	fs->uid = geteuid();
	fs->gid = getegid();
	fs->dac_override = has_cap(CAP_DAC_OVERRIDE);
	fs->xattr_prefix = "user.overlay.";
	fs->override_xattr = cfg->xattr_permissions == 1   ? "user.containers.override_stat"
			     : cfg->xattr_permissions == 2 ? "security.fuseoverlayfs.override_stat"
							   : NULL;
	fs->timeout = cfg->timeout >= 0 ? cfg->timeout : 86400.0;

	size_t n = cfg->nlowers + (fs->has_upper ? 1 : 0);
	const char **dirs = calloc(n, sizeof(char *));
	if (!dirs) {
		ovl_fs_free(fs);
		return -ENOMEM;
	}
	size_t k = 0;
	if (fs->has_upper)
		dirs[k++] = cfg->upper;
	for (size_t i = 0; i < cfg->nlowers; i++)
		dirs[k++] = cfg->lowers[i];
	size_t bad = 0;
	int r = lyr_stack_open(dirs, n, &bad, &fs->stack);
	if (r < 0) {
		r = fail(err, r, "%s directory '%s': %s",
			 fs->has_upper && bad == 0 ? "upper" : "lower", dirs[bad], strerror(-r));
		free(dirs);
		ovl_fs_free(fs);
		return r;
	}
	free(dirs);

	if (fs->has_upper) {
		fs->upper_fd = lyr_stack_layer_fd(fs->stack, 0);
		/* names starting with .wh. cannot be made through the mount */
		if (cfg->upper_native && (r = lyr_stack_set_native(fs->stack, 0)) < 0) {
			r = fail(err, r, "upper directory '%s': %s", cfg->upper, strerror(-r));
			goto out_fail;
		}
		/* the upper must not also be read as a lower: copy-up would copy onto itself */
		struct stat us, ls;
		if (fstat(fs->upper_fd, &us) == 0)
			for (size_t i = 1; i < lyr_stack_layers(fs->stack); i++)
				if (fstat(lyr_stack_layer_fd(fs->stack, i), &ls) == 0 &&
				    ls.st_dev == us.st_dev && ls.st_ino == us.st_ino) {
					r = fail(err, -EINVAL,
						 "upper directory '%s' is also a lower directory",
						 cfg->upper);
					goto out_fail;
				}
		_cleanup_close_ int wfd = open(cfg->work, O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct stat ust, wst;
		if (wfd < 0) {
			r = fail(err, -errno, "work directory '%s': %s", cfg->work,
				 strerror(errno));
			goto out_fail;
		}
		if (fstat(fs->upper_fd, &ust) < 0 || fstat(wfd, &wst) < 0) {
			r = fail(err, -errno, "work directory '%s': %s", cfg->work,
				 strerror(errno));
			goto out_fail;
		}
		if (ust.st_dev != wst.st_dev) {
			r = fail(err, -EXDEV,
				 "work directory '%s' is not on the upper directory's filesystem",
				 cfg->work);
			goto out_fail;
		}
		/* leftovers of an interrupted copy-up are garbage: start with an empty work dir */
		ovl_remove_tree(wfd, "work");
		if (mkdirat(wfd, "work", 0700) < 0 ||
		    (fs->work_fd = openat(wfd, "work", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			r = fail(err, -errno, "work directory '%s': %s", cfg->work,
				 strerror(errno));
			goto out_fail;
		}
		/* a default ACL of the dir it is in would be inherited by every object under
		 * construction (copy-ups included) */
		ovl_acl_strip_dir(fs->work_fd);
		/* trusted.* when the upper's filesystem lets us (CAP_SYS_ADMIN in its user
		 * namespace, which a capability check of our own namespace cannot tell) */
		if (fsetxattr_probe(fs->work_fd))
			fs->xattr_prefix = "trusted.overlay.";
		/* the index outlives mounts: it is what keeps hard-link groups together */
		if ((mkdirat(wfd, "index", 0700) < 0 && errno != EEXIST) ||
		    (fs->index_fd = openat(wfd, "index", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			r = fail(err, -errno, "work directory '%s': index: %s", cfg->work,
				 strerror(errno));
			goto out_fail;
		}
		atomic_init(&fs->index_used, index_nonempty(fs->index_fd));
	}
	fs->acl = !cfg->noacl && any_layer_has_acls(fs->stack);
	r = ovl_inode_root_new(fs);
	if (r < 0) {
		r = fail(err, r, "root of the layers: %s", strerror(-r));
		goto out_fail;
	}
	*ret = fs;
	return 0;
out_fail:
	ovl_fs_free(fs);
	return r;
}

void ovl_fs_free(struct ovl_fs *fs)
{
	if (!fs)
		return;
	ovl_dir_free_all(fs);
	ovl_table_free(fs);
	for (size_t i = 0; i < OVL_SHARDS; i++)
		pthread_mutex_destroy(&fs->shards[i].lock);
	pthread_mutex_destroy(&fs->evict_lock);
	for (size_t i = 0; i < OVL_TIMES_LOCKS; i++)
		pthread_mutex_destroy(&fs->times_locks[i]);
	pthread_mutex_destroy(&fs->dirs_lock);
	if (fs->work_fd >= 0)
		close(fs->work_fd);
	if (fs->index_fd >= 0)
		close(fs->index_fd);
	lyr_stack_free(fs->stack);
	free(fs->uidmap);
	free(fs->gidmap);
	free(fs);
}
