/* Modes of the store's own directories.  Layers hold whatever the commands that made them
 * wrote, set-id programs and device nodes included, so no other user may reach them: the
 * root and every top directory (db/, layers/, refs/, tmp/, runs/) are 0700.  A store opened
 * creates them so; stores made by older versions (0755) are tightened by the commands that
 * change the store, and fsck reports a looser mode (and --repair tightens it).  Only group
 * and other bits are taken away: the owner's bits stay as they are. */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"

const char *const store_top_dirs[STORE_TOP_DIRS] = {"db", "layers", "refs", "tmp", "runs"};

/* Tightens (with REPAIR) or reports NAME below the root ("." for the root itself). */
static int check_one(lyr_store *s, const char *name, bool repair,
		     void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx)
{
	struct stat st;
	if (fstatat(s->rootfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode) || !(st.st_mode & 077))
		return 0;
	bool fixed = repair && fchmodat(s->rootfd, name, st.st_mode & 07700, 0) == 0;
	if (fn) {
		char line[PATH_MAX + 64];
		snprintf(line, sizeof line, "store directory '%s%s%s' has mode %04o, not 0700",
			 s->root, strcmp(name, ".") ? "/" : "", strcmp(name, ".") ? name : "",
			 (unsigned)(st.st_mode & 07777));
		fn(ctx, line, fixed);
	}
	return fixed ? 0 : 1;
}

int lyr_store_modes(lyr_store *s, bool repair,
		    void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx)
{
	int left = check_one(s, ".", repair, fn, ctx);
	for (size_t i = 0; left >= 0 && i < STORE_TOP_DIRS; i++) {
		int r = check_one(s, store_top_dirs[i], repair, fn, ctx);
		left = r < 0 ? r : left + r;
	}
	if (left < 0)
		db_seterr("store '%s': reading directory modes: %s", s->root, strerror(-left));
	return left;
}
