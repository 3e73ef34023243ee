/* A layer stack: the open layer roots and the markers on single objects (whiteouts, opaque,
 * metacopy, origin inode).  A stack never changes after lyr_stack_open, so every function here is
 * safe for concurrent callers without locks.  xattrs of O_PATH fds are read through
 * /proc/self/fd/N, the only way to read them without opening the object for I/O. */
#include "layerfs/stack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"

struct lyr_stack {
	size_t n;
	int *fds;
	dev_t *devs;
	/* xino: index of each distinct device (in layer order) when layers span devices */
	bool multi_dev;
	size_t ndevs;
	dev_t *dev_list;
};

static int stack_finish(lyr_stack *s)
{
	s->devs = calloc(s->n, sizeof(dev_t));
	s->dev_list = calloc(s->n, sizeof(dev_t));
	if (!s->devs || !s->dev_list)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		struct stat st;
		if (fstat(s->fds[i], &st) < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		s->devs[i] = st.st_dev;
		size_t k;
		for (k = 0; k < s->ndevs; k++)
			if (s->dev_list[k] == st.st_dev)
				break;
		if (k == s->ndevs)
			s->dev_list[s->ndevs++] = st.st_dev;
	}
	s->multi_dev = s->ndevs > 1;
	return 0;
}

static lyr_stack *stack_alloc(size_t n)
{
	lyr_stack *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fds = malloc(n * sizeof(int));
	if (!s->fds) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		s->fds[i] = -1;
	s->n = n;
	return s;
}

int lyr_stack_open(const char *const *dirs, size_t n, size_t *ret_failed, lyr_stack **ret)
{
	if (n == 0 || n > LYR_STACK_MAX_LAYERS)
		return -EINVAL;
	lyr_stack *s = stack_alloc(n);
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		s->fds[i] = open(dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (s->fds[i] < 0) {
			int r = -errno;
			if (ret_failed)
				*ret_failed = i;
			lyr_stack_free(s);
			return r;
		}
	}
	int r = stack_finish(s);
	if (r < 0) {
		lyr_stack_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int lyr_stack_open_fds(const int *fds, size_t n, lyr_stack **ret)
{
	if (n == 0 || n > LYR_STACK_MAX_LAYERS)
		return -EINVAL;
	lyr_stack *s = stack_alloc(n);
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		s->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (s->fds[i] < 0) {
			int r = -errno;
			lyr_stack_free(s);
			return r;
		}
	}
	int r = stack_finish(s);
	if (r < 0) {
		lyr_stack_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void lyr_stack_free(lyr_stack *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (s->fds[i] >= 0)
			close(s->fds[i]);
	free(s->fds);
	free(s->devs);
	free(s->dev_list);
	free(s);
}

size_t lyr_stack_layers(const lyr_stack *s) { return s->n; }

int lyr_stack_layer_fd(const lyr_stack *s, size_t i) { return i < s->n ? s->fds[i] : -1; }

uint64_t lyr_stack_ino(const lyr_stack *s, dev_t dev, ino_t raw, uint64_t origin)
{
	if (origin)
		return origin;
	if (!s->multi_dev)
		return raw;
	uint64_t idx = 0;
	for (size_t k = 0; k < s->ndevs; k++)
		if (s->dev_list[k] == dev)
			idx = k;
	/* Inode numbers of real filesystems stay far below 2^48; the device index goes above. */
	return ((uint64_t)raw & ((UINT64_C(1) << 48) - 1)) | (idx << 48);
}

bool lyr_stack_is_marker_name(const char *name)
{
	return strncmp(name, LYR_WH_PREFIX, sizeof(LYR_WH_PREFIX) - 1) == 0;
}

static ssize_t fd_getxattr(int fd, const char *name, char *buf, size_t size)
{
	ssize_t r = fgetxattr(fd, name, buf, size);
	if (r >= 0 || errno != EBADF)
		return r < 0 ? -errno : r;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	r = getxattr(proc, name, buf, size);
	return r < 0 ? -errno : r;
}

ssize_t lyr_stack_xattr_get(int fd, const char *suffix, char *buf, size_t size)
{
	static const char *const ns[] = {"trusted.overlay.", "user.overlay."};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(ns); i++) {
		char name[128];
		snprintf(name, sizeof(name), "%s%s", ns[i], suffix);
		ssize_t r = fd_getxattr(fd, name, buf, size > 0 ? size - 1 : 0);
		if (r >= 0) {
			if (size > 0)
				buf[(size_t)r < size ? (size_t)r : size - 1] = '\0';
			return r;
		}
		/* ERANGE: present but bigger than BUF; report it as present with its size */
		if (r == -ERANGE) {
			r = fd_getxattr(fd, name, NULL, 0);
			return r >= 0 ? r : -ERANGE;
		}
		if (r != -ENODATA && r != -EOPNOTSUPP && r != -EPERM && r != -EACCES)
			return r;
	}
	return -ENODATA;
}

int lyr_stack_dir_opaque(int dirfd)
{
	char v[8];
	ssize_t r = lyr_stack_xattr_get(dirfd, LYR_OVL_OPAQUE, v, sizeof(v));
	if (r == 1 && v[0] == 'y')
		return 1;
	if (r < 0 && r != -ENODATA)
		return (int)r;
	struct stat st;
	if (fstatat(dirfd, LYR_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int lyr_stack_is_metacopy(int fd)
{
	char v[64];
	ssize_t r = lyr_stack_xattr_get(fd, LYR_OVL_METACOPY, v, sizeof(v));
	return r >= 0 || r == -ERANGE ? 1 : 0;
}

uint64_t lyr_stack_origin_ino(int fd)
{
	char v[32];
	ssize_t r = lyr_stack_xattr_get(fd, LYR_OVL_INO, v, sizeof(v));
	if (r <= 0 || r >= (ssize_t)sizeof(v))
		return 0;
	char *end;
	errno = 0;
	unsigned long long ino = strtoull(v, &end, 10);
	if (errno || *end != '\0')
		return 0;
	return ino;
}
