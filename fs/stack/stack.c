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
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "stack_private.h"

struct lyr_stack {
	size_t n;
	int *fds;
	dev_t *devs;
	/* xino: index of each distinct device (in layer order) when layers span devices */
	bool multi_dev;
	size_t ndevs;
	dev_t *dev_list;
	bool *native; /* layers written only through an overlay: no OCI/AUFS markers */
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
	free(s->native);
	free(s);
}

size_t lyr_stack_layers(const lyr_stack *s)
{
	return s->n;
}

int lyr_stack_set_native(lyr_stack *s, size_t layer)
{
	if (layer >= s->n)
		return -EINVAL;
	if (!s->native && !(s->native = calloc(s->n, sizeof(bool))))
		return -ENOMEM;
	s->native[layer] = true;
	return 0;
}

bool lyr_stack_native(const lyr_stack *s, size_t layer)
{
	return s->native && layer < s->n && s->native[layer];
}

int lyr_stack_layer_fd(const lyr_stack *s, size_t i)
{
	return i < s->n ? s->fds[i] : -1;
}

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
	/* fgetxattr refuses O_PATH fds, which is what layers are walked with; the proc path
	 * works for every kind of fd and names the object itself, not a symlink's target */
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t r = getxattr(proc, name, buf, size);
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

int lyr_stack_node_open(const lyr_stack_node *node, int flags)
{
	bool writing = (flags & O_ACCMODE) != O_RDONLY;
	int fd = node->metacopy && node->data_fd >= 0 && !writing ? node->data_fd : node->fd;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int r = open(proc, (flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL)) | O_CLOEXEC);
	return r < 0 ? -errno : r;
}

bool lyr_stack_xattr_private(const char *name)
{
	return strncmp(name, "trusted.overlay.", 16) == 0 ||
	       strncmp(name, "user.overlay.", 13) == 0;
}

static unsigned mark_of(const char *name)
{
	const char *suffix;
	if (strncmp(name, "trusted.overlay.", 16) == 0)
		suffix = name + 16;
	else if (strncmp(name, "user.overlay.", 13) == 0)
		suffix = name + 13;
	else
		return 0;
	if (strcmp(suffix, LYR_OVL_OPAQUE) == 0)
		return LYR_MARK_OPAQUE;
	if (strcmp(suffix, LYR_OVL_REDIRECT) == 0)
		return LYR_MARK_REDIRECT;
	if (strcmp(suffix, LYR_OVL_METACOPY) == 0)
		return LYR_MARK_METACOPY;
	if (strcmp(suffix, LYR_OVL_INO) == 0)
		return LYR_MARK_INO;
	return 0;
}

/* listxattrat(2) (Linux 6.13) names an entry by directory fd and name, without the procfs path
 * walk; older kernels answer ENOSYS once and the proc path is used from then on. */
#ifndef __NR_listxattrat
#define __NR_listxattrat 465
#endif
static atomic_bool no_listxattrat;

static ssize_t list_names(int dirfd, const char *name, int fd, char *buf, size_t size)
{
	if (dirfd >= 0 && !atomic_load_explicit(&no_listxattrat, memory_order_relaxed)) {
		long r = syscall(__NR_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, buf, size);
		if (r >= 0 || errno != ENOSYS)
			return r;
		atomic_store(&no_listxattrat, true);
	}
	if (fd < 0) {
		/* only the entry's name is known: the procfs path of the directory and the name */
		char path[64 + 256 + 2];
		snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);
		return llistxattr(path, buf, size);
	}
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return listxattr(proc, buf, size);
}

unsigned lyr_stack_marks_at(int dirfd, const char *name, int fd)
{
	char small[1024];
	char *buf = small;
	ssize_t n = list_names(dirfd, name, fd, small, sizeof(small));
	if (n < 0 && errno == ERANGE) {
		ssize_t want = list_names(dirfd, name, fd, NULL, 0);
		if (want <= 0 || !(buf = malloc((size_t)want)))
			return 0;
		n = list_names(dirfd, name, fd, buf, (size_t)want);
	}
	unsigned marks = 0;
	for (ssize_t i = 0; i < n;) {
		marks |= mark_of(buf + i);
		i += (ssize_t)strlen(buf + i) + 1;
	}
	if (buf != small)
		free(buf);
	return marks;
}

unsigned lyr_stack_marks(int fd)
{
	return lyr_stack_marks_at(-1, NULL, fd);
}
