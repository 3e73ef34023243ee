/* Small helpers shared by the daemon's files: /proc/self/fd paths and a rate-limited log. */
#include <stdarg.h>
#include <stdio.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ovl.h"

int ovl_fail(lyr_fs_error *err, int r, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return r;
}

void ovl_proc_path(int fd, char buf[64])
{
	snprintf(buf, 64, "/proc/self/fd/%d", fd);
}

bool ovl_log_to_syslog;

void ovl_log(const char *fmt, ...)
{
	/* at most 10 lines a minute: a broken layer must not flood the log */
	static atomic_long window_start;
	static atomic_int count;
	long now = (long)time(NULL);
	long start = atomic_load(&window_start);
	if (now - start >= 60 && atomic_compare_exchange_strong(&window_start, &start, now))
		atomic_store(&count, 0);
	if (atomic_fetch_add(&count, 1) >= 10)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (ovl_log_to_syslog) {
		vsyslog(LOG_WARNING, fmt, ap);
	} else {
		fputs("layerfs: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

/* rm -rf of NAME in DIRFD without following symlinks; ENOENT is success.  Depth-first with one
 * fd per level, so the depth it handles is bounded by the fd limit, not by PATH_MAX. */
int ovl_remove_tree(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int r = -errno;
		close(fd);
		return r;
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int q = ovl_remove_tree(fd, de->d_name);
		if (q < 0 && r == 0)
			r = q;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r;
}

void ovl_writable_add(struct ovl_fs *fs, struct ovl_wscope *w, int dirfd)
{
	if (fs->dac_override || dirfd < 0 || w->n >= (int)LYR_ARRAY_SIZE(w->fd))
		return;
	for (int i = 0; i < w->n; i++)
		if (w->fd[i] == dirfd)
			return;
	struct stat st;
	if (fstatat(dirfd, "", &st, AT_EMPTY_PATH) < 0 || !S_ISDIR(st.st_mode) ||
	    (st.st_mode & 0300) == 0300)
		return;
	char proc[64];
	ovl_proc_path(dirfd, proc);
	if (chmod(proc, (st.st_mode & 07777) | 0300) < 0)
		return;
	w->fd[w->n] = dirfd;
	w->mode[w->n] = st.st_mode & 07777;
	w->n++;
}

void ovl_writable_end(struct ovl_wscope *w)
{
	for (int i = w->n - 1; i >= 0; i--) {
		char proc[64];
		ovl_proc_path(w->fd[i], proc);
		chmod(proc, w->mode[i]);
	}
	w->n = 0;
}
