/* Shared helpers with no dependency beyond libc: fault injection for crash tests, hex
 * encoding, mkdir -p, whole-file reads.  All functions are thread-safe. */
#include "layerfs/common.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

void lyr_fault(const char *point)
{
	const char *list = getenv("LAYERFS_FAULT");
	size_t n = strlen(point);

	while (list && *list) {
		const char *end = strchrnul(list, ',');
		if ((size_t)(end - list) == n && memcmp(list, point, n) == 0) {
			kill(getpid(), SIGKILL);
			pause();
		}
		list = *end ? end + 1 : end;
	}
}

void lyr_hex(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

int lyr_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int lyr_open_noatime(int dirfd, const char *path, int flags)
{
	int fd = openat(dirfd, path, flags | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, path, flags);
	return fd;
}

int lyr_read_file(const char *path, char **ret, size_t *ret_len)
{
	return lyr_read_file_max(path, SIZE_MAX - 1, ret, ret_len);
}

int lyr_read_file_max(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t cap = 4096, len = 0;
	_cleanup_free_ char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				return -ENOMEM;
			buf = nb;
			cap *= 2;
		}
		/* One byte past MAX tells a file over the limit from one exactly at it. */
		size_t want = cap - len - 1;
		if (want > max - len + 1)
			want = max - len + 1;
		ssize_t r = read(fd, buf + len, want);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > max)
			return -EFBIG;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = LYR_TAKE_PTR(buf);
	return 0;
}

int lyr_dir_empty(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = -errno;
		close(fd);
		return e;
	}
	int empty = 1;
	struct dirent *e;
	errno = 0;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	int r = empty && errno ? -errno : empty;
	closedir(d);
	return r;
}

/* Undoes the octal escapes (\040 ...) of a mountinfo field in place. */
static void mountinfo_unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

int lyr_mountinfo_parse(char *line, char **ret_mountpoint, char **ret_type)
{
	/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER */
	char *save, *mp = strtok_r(line, " \n", &save);
	for (int i = 0; mp && i < 4; i++)
		mp = strtok_r(NULL, " \n", &save);
	char *field;
	while ((field = strtok_r(NULL, " \n", &save)) && strcmp(field, "-") != 0)
		;
	char *type = field ? strtok_r(NULL, " \n", &save) : NULL;
	if (!mp || !type)
		return -EINVAL;
	mountinfo_unescape(mp);
	*ret_mountpoint = mp;
	*ret_type = type;
	return 0;
}
