/* The requested user of a sandboxed command, looked up in the root's own etc/passwd and
 * etc/group (never the host's NSS).  Called inside the sandbox after pivot_root, so a symlink in
 * the root cannot point the lookup at a host file.  Lines longer than 4 KiB are ignored. */
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "internal.h"

/* Splits LINE (modified) at ':' into at most MAX fields; returns their count. */
static size_t split(char *line, char **f, size_t max)
{
	size_t n = 0;
	line[strcspn(line, "\n")] = '\0';
	while (n < max) {
		f[n++] = line;
		char *c = strchr(line, ':');
		if (!c)
			break;
		*c = '\0';
		line = c + 1;
	}
	return n;
}

static bool parse_id(const char *s, unsigned *ret)
{
	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10)
		return false;
	unsigned long v = strtoul(s, NULL, 10);
	if (v > UINT32_MAX - 1)
		return false;
	*ret = (unsigned)v;
	return true;
}

/* The largest /etc/passwd or /etc/group read: far beyond any real one. */
#define ID_FILE_MAX (64 << 20)

/* Opens the root's REL (etc/passwd, etc/group) into *RET, or leaves *RET NULL when there is
 * none.  The init reads it as root with every capability and no filter, so a layer must not
 * choose what it reads: only a regular file outside /proc, of a sane size, is read.  A FIFO
 * would block the run forever, /dev/zero spin it, a symlink to /proc/kmsg consume the host's
 * kernel log, /dev/stdin the caller's input.  Returns 0 or -errno with ERR filled for USER. */
static int open_in(int rootfd, const char *rel, const char *user, FILE **ret, lyr_exec_error *err)
{
	*ret = NULL;
	int fd = openat(rootfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* no such file, or none the init may read: no entries */
	struct stat st;
	struct statfs sf;
	if (fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0 || !S_ISREG(st.st_mode) ||
	    sf.f_type == PROC_SUPER_MAGIC || st.st_size > ID_FILE_MAX) {
		close(fd);
		lyr_exec_errf(err, "user '%s': '/%s' is not a regular file of at most %d MiB", user,
			      rel, ID_FILE_MAX >> 20);
		return -EINVAL;
	}
	*ret = fdopen(fd, "r");
	if (!*ret) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

int lyr_exec_user_resolve(int rootfd, const char *user, uid_t *ret_uid, gid_t *ret_gid,
			  gid_t *groups, size_t *n_groups, lyr_exec_error *err)
{
	if (!user)
		user = "0";
	char spec[256];
	if (strlen(user) >= sizeof spec) {
		lyr_exec_errf(err, "user '%s': too long", user);
		return -EINVAL;
	}
	strcpy(spec, user);
	char *gspec = strchr(spec, ':');
	if (gspec)
		*gspec++ = '\0';

	unsigned uid = 0, gid = 0;
	bool uid_numeric = parse_id(spec, &uid), have_entry = false;
	char name[256] = "";
	char line[4096];
	_cleanup_fclose_ FILE *pw = NULL;
	int r = open_in(rootfd, "etc/passwd", user, &pw, err);
	if (r < 0)
		return r;
	while (pw && fgets(line, sizeof line, pw)) {
		char *f[7];
		unsigned u, g;
		if (split(line, f, 7) < 4 || !parse_id(f[2], &u) || !parse_id(f[3], &g))
			continue;
		if (uid_numeric ? u == uid : strcmp(f[0], spec) == 0) {
			snprintf(name, sizeof name, "%s", f[0]);
			uid = u;
			gid = g;
			have_entry = true;
			break;
		}
	}
	if (!uid_numeric && !have_entry) {
		lyr_exec_errf(err, "user '%s': no such user in the root's /etc/passwd", spec);
		return -ENOENT;
	}

	size_t max = *n_groups, n = 0;
	if (gspec && !parse_id(gspec, &gid)) {
		bool found = false;
		_cleanup_fclose_ FILE *gr = NULL;
		if ((r = open_in(rootfd, "etc/group", user, &gr, err)) < 0)
			return r;
		while (gr && !found && fgets(line, sizeof line, gr)) {
			char *f[4];
			unsigned g;
			if (split(line, f, 4) >= 3 && parse_id(f[2], &g) &&
			    strcmp(f[0], gspec) == 0) {
				gid = g;
				found = true;
			}
		}
		if (!found) {
			lyr_exec_errf(err, "group '%s': no such group in the root's /etc/group",
				      gspec);
			return -ENOENT;
		}
	}
	if (name[0]) {
		_cleanup_fclose_ FILE *gr = NULL;
		if ((r = open_in(rootfd, "etc/group", user, &gr, err)) < 0)
			return r;
		while (gr && fgets(line, sizeof line, gr)) {
			char *f[4];
			unsigned g;
			if (split(line, f, 4) < 4 || !parse_id(f[2], &g))
				continue;
			char *save = NULL;
			for (char *m = strtok_r(f[3], ",", &save); m;
			     m = strtok_r(NULL, ",", &save))
				if (strcmp(m, name) == 0 && n < max) {
					groups[n++] = g;
					break;
				}
		}
	}
	*ret_uid = uid;
	*ret_gid = gid;
	*n_groups = n;
	return 0;
}
