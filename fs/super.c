/* Setting up and tearing down one mount's state: the layer stack (upper first when there is one),
 * the work directory (WORK/work, emptied at mount; it holds objects under construction), the
 * private xattr namespace and the root inode. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

static int fail(lyr_fs_error *err, int r, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return r;
}

static lyr_fs_idmap *copy_map(const lyr_fs_idmap *m, size_t n)
{
	if (!n)
		return NULL;
	lyr_fs_idmap *c = malloc(n * sizeof(*c));
	if (c)
		memcpy(c, m, n * sizeof(*c));
	return c;
}

int ovl_fs_new(const lyr_fs_config *cfg, lyr_fs_error *err, struct ovl_fs **ret)
{
	/* an upper alone is a scratch tree (a store ref with no parent) */
	if (cfg->nlowers > 500 || (cfg->nlowers < 1 && !cfg->upper))
		return fail(err, -EINVAL, "%zu lower layers given (1 to 500 are allowed)", cfg->nlowers);
	if (!cfg->upper != !cfg->work)
		return fail(err, -EINVAL, "an upper directory needs a work directory and the other way round");
	if (cfg->xattr_permissions < 0 || cfg->xattr_permissions > 2)
		return fail(err, -EINVAL, "xattr_permissions must be 0, 1 or 2");
	struct ovl_fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	fs->upper_fd = fs->work_fd = -1;
	for (size_t i = 0; i < OVL_SHARDS; i++)
		pthread_mutex_init(&fs->shards[i].lock, NULL);
	fs->uidmap = copy_map(cfg->uidmap, cfg->nuidmap);
	fs->gidmap = copy_map(cfg->gidmap, cfg->ngidmap);
	fs->has_upper = cfg->upper != NULL;
	fs->read_only = cfg->read_only || !fs->has_upper;
	fs->first_lower = fs->has_upper ? 1 : 0;
	fs->privileged = has_cap(CAP_CHOWN);
	fs->xattr_prefix = has_cap(CAP_SYS_ADMIN) ? "trusted.overlay." : "user.overlay.";
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
		_cleanup_close_ int wfd = open(cfg->work, O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct stat ust, wst;
		if (wfd < 0) {
			r = fail(err, -errno, "work directory '%s': %s", cfg->work, strerror(errno));
			goto out_fail;
		}
		if (fstat(fs->upper_fd, &ust) < 0 || fstat(wfd, &wst) < 0) {
			r = fail(err, -errno, "work directory '%s': %s", cfg->work, strerror(errno));
			goto out_fail;
		}
		if (ust.st_dev != wst.st_dev) {
			r = fail(err, -EXDEV, "work directory '%s' is not on the upper directory's filesystem",
				 cfg->work);
			goto out_fail;
		}
		/* leftovers of an interrupted copy-up are garbage: start with an empty work dir */
		ovl_remove_tree(wfd, "work");
		if (mkdirat(wfd, "work", 0700) < 0 ||
		    (fs->work_fd = openat(wfd, "work", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			r = fail(err, -errno, "work directory '%s': %s", cfg->work, strerror(errno));
			goto out_fail;
		}
	}
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
	ovl_table_free(fs);
	for (size_t i = 0; i < OVL_SHARDS; i++)
		pthread_mutex_destroy(&fs->shards[i].lock);
	if (fs->work_fd >= 0)
		close(fs->work_fd);
	lyr_stack_free(fs->stack);
	free(fs->uidmap);
	free(fs->gidmap);
	free(fs);
}
