/* Process identity for records that name a live process (mount records, commit intents,
 * temporary directories): a pid plus its start time from /proc/<pid>/stat, so a pid reused
 * by an unrelated process after a crash does not keep a stale record alive. */
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/random.h>

#include "db-int.h"

int owner_of(pid_t pid, lyr_owner *ret)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n <= 0)
		return n < 0 ? -errno : -ESRCH;
	buf[n] = '\0';
	/* The command name may hold spaces and ')': fields resume after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	p++;
	/* A zombie has exited; only its parent has not reaped it yet (a daemon's parent is init). */
	if (p[0] == ' ' && (p[1] == 'Z' || p[1] == 'X'))
		return -ESRCH;
	/* After ")": state is field 3, starttime field 22, i.e. the 20th token from here. */
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	char *end;
	uint64_t start = strtoull(p + 1, &end, 10);
	if (end == p + 1)
		return -EIO;
	ret->pid = (int32_t)pid;
	ret->start = start;
	return 0;
}

int owner_self(lyr_owner *ret)
{
	return owner_of(getpid(), ret);
}

bool owner_alive(const lyr_owner *o)
{
	lyr_owner now;
	if (o->pid <= 0)
		return false;
	if (owner_of(o->pid, &now) < 0)
		return false;
	return now.start == o->start;
}

void rand_hex(char *out, size_t nbytes)
{
	uint8_t buf[64];
	size_t got = 0;
	while (got < nbytes) {
		ssize_t n = getrandom(buf + got, nbytes - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			abort(); /* the kernel's CSPRNG cannot fail after boot */
		}
		got += (size_t)n;
	}
	lyr_hex(buf, nbytes, out);
}

void tmp_name(const lyr_store *s, const char *op, char *ret, size_t len)
{
	char r[9];
	rand_hex(r, 4);
	snprintf(ret, len, "%s-%" PRId32 "-%" PRIu64 "-%s", op, s->self.pid, s->self.start, r);
}

bool tmp_owner(const char *name, lyr_owner *ret)
{
	const char *p = strchr(name, '-');
	if (!p)
		return false;
	char *end;
	long pid = strtol(p + 1, &end, 10);
	if (*end != '-' || pid <= 0)
		return false;
	unsigned long long start = strtoull(end + 1, &end, 10);
	if (*end != '-')
		return false;
	ret->pid = (int32_t)pid;
	ret->start = start;
	return true;
}
