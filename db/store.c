/* Opening and closing a store: the directory layout (db/, layers/, refs/, tmp/, lock), the
 * format check, the default root, and the namespace lock.
 *
 * The namespace lock is an exclusive flock on ROOT/lock.  It is held from just before a
 * directory is renamed into or out of layers/ or refs/ until the transaction recording that
 * change has committed, so any process holding it sees every directory matched by its record
 * (except after a crash, which is what fsck reconciles).  Copying and hashing happen outside
 * it; it is released when the process dies. */
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "db-int.h"
#include "layerfs/tree.h"

#define META_FORMAT "format"

int64_t now_seconds(void)
{
	return (int64_t)time(NULL);
}

const char *layer_hex(const char *id)
{
	return strncmp(id, LYR_DIGEST_PREFIX, strlen(LYR_DIGEST_PREFIX)) == 0
		       ? id + strlen(LYR_DIGEST_PREFIX)
		       : id;
}

int ns_lock(lyr_store *s)
{
	if (s->lock_depth++ > 0)
		return 0;
	while (flock(s->lockfd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			s->lock_depth--;
			return -errno;
		}
	}
	return 0;
}

void ns_unlock(lyr_store *s)
{
	if (--s->lock_depth == 0)
		flock(s->lockfd, LOCK_UN);
}

int dir_stash(lyr_store *s, const char *sub, const char *name, const char *op, char *ret_tmp,
	      size_t len)
{
	char from[512], to[256];
	snprintf(from, sizeof from, "%s/%s", sub, name);
	tmp_name(s, op, ret_tmp, len);
	snprintf(to, sizeof to, "tmp/%s", ret_tmp);
	if (renameat(s->rootfd, from, s->rootfd, to) < 0) {
		ret_tmp[0] = '\0';
		return errno == ENOENT ? 0 : -errno;
	}
	return 0;
}

int tmp_remove(lyr_store *s, const char *tmp)
{
	if (!*tmp)
		return 0;
	_cleanup_close_ int tmpfd = openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tmpfd < 0)
		return -errno;
	return lyr_tree_remove(tmpfd, tmp);
}

int dir_discard(lyr_store *s, const char *sub, const char *name, const char *op)
{
	char tmp[128];
	int r = dir_stash(s, sub, name, op, tmp, sizeof tmp);
	return r < 0 ? r : tmp_remove(s, tmp);
}

/* Reads the format record into *CTX (0 when there is none; it is written by set_format_txn). */
static int meta_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	uint32_t *format = ctx;
	void *v = NULL;
	size_t len;
	*format = 0;
	int r = rec_get(s->meta, txn, META_FORMAT, strlen(META_FORMAT), &v, &len);
	if (r == -ENOENT)
		return 0;
	if (r)
		return r;
	uint32_t le = 0;
	if (len == sizeof le)
		memcpy(&le, v, sizeof le);
	free(v);
	if (len != sizeof le)
		return -EBADMSG;
	*format = le32toh(le);
	return 0;
}

/* Writes the format record of a new store (another process may have just done so). */
static int new_format_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	(void)ctx;
	uint32_t le = htole32(LYR_STORE_FORMAT);
	int r =
	    rec_put(s->meta, txn, META_FORMAT, strlen(META_FORMAT), &le, sizeof le, DB_NOOVERWRITE);
	return r == -EEXIST ? 0 : r;
}

static int set_format_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	uint32_t le = htole32(*(uint32_t *)ctx);
	return rec_put(s->meta, txn, META_FORMAT, strlen(META_FORMAT), &le, sizeof le, 0);
}

/* For tests of the format check (declared in db/testing.h). */
int lyr_store_debug_set_format(lyr_store *s, uint32_t format)
{
	return txn_run(s, set_format_txn, &format);
}

static int fail(int r, const char *root, const char *what)
{
	if (r == -EROFS)
		db_seterr("store '%s': read-only file system (cannot %s)", root, what);
	else
		db_seterr("store '%s': cannot %s: %s", root, what, strerror(-r));
	return r;
}

/* What ROOT holds: nothing (missing or an empty directory), a store (db/ or layers/ is
 * there, even when the database is damaged), or something else. */
enum root_kind { ROOT_NONE, ROOT_STORE, ROOT_OTHER };

static int probe_root(const char *root, enum root_kind *ret)
{
	_cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			return -errno;
		*ret = ROOT_NONE;
		return 0;
	}
	/* emptiness first: db/ is the first entry a store gets, so a directory that was not
	 * empty a moment ago has it by now if it is a store being created at the same time */
	int r = lyr_dir_empty(fd);
	if (r < 0)
		return r;
	struct stat st;
	if (r)
		*ret = ROOT_NONE;
	else if (fstatat(fd, "db", &st, AT_SYMLINK_NOFOLLOW) == 0 ||
		 fstatat(fd, "layers", &st, AT_SYMLINK_NOFOLLOW) == 0)
		*ret = ROOT_STORE;
	else
		*ret = ROOT_OTHER;
	return 0;
}

#define LOSS                                                                                       \
	"(layers and refs are rebuilt from their directories; tags, descriptions and caches "      \
	"are lost)"

/* Whether ROOT/SUB holds anything (a missing SUB holds nothing). */
static bool has_entries(lyr_store *s, const char *sub)
{
	_cleanup_close_ int fd = openat(s->rootfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd >= 0 && lyr_dir_empty(fd) == 0;
}

/* No format record: a new store (write it), or a database that lost its records while
 * layers/ or refs/ kept their directories (refused; fsck notes it, and with repair writes
 * the record again and re-adopts the directories). */
static int format_missing(lyr_store *s, unsigned mode, bool db_made)
{
	bool lost = has_entries(s, "layers") || has_entries(s, "refs");
	if (lost && !(mode & (LYR_OPEN_CHECK | LYR_OPEN_REPAIR))) {
		db_seterr("store '%s': the database has lost its records (db/meta.db has no format "
			  "record, yet layers/ or refs/ hold directories); run 'layerfs fsck "
			  "--repair' %s",
			  s->root, LOSS);
		return -EUCLEAN;
	}
	if (lost && !(mode & LYR_OPEN_REPAIR)) {
		damage_add(s, false,
			   "database: no format record: the database lost its records; --repair "
			   "writes it again %s",
			   LOSS);
		return 0;
	}
	if (lost && !db_made)
		damage_add(s, true,
			   "database: no format record: the database lost its records; "
			   "written again " LOSS);
	int r = txn_run(s, new_format_txn, NULL);
	return r < 0 ? fail(r, s->root, "write the format record") : 0;
}

static int open_layout(lyr_store *s, unsigned mode)
{
	enum root_kind kind = ROOT_NONE;
	int r = probe_root(s->root, &kind);
	if (r < 0)
		return fail(r, s->root, "open the store directory");
	if (kind == ROOT_OTHER) {
		db_seterr("store '%s': not a layerfs store (the directory is not empty and has no "
			  "db/ or layers/)%s",
			  s->root,
			  mode & LYR_OPEN_CREATE ? "; refusing to create a store in it" : "");
		return -ENOTEMPTY;
	}
	if (kind == ROOT_NONE && !(mode & LYR_OPEN_CREATE)) {
		db_seterr("no store at '%s' (commands that write, such as import, create one)",
			  s->root);
		return -ENOENT;
	}
	/* 0700 throughout: what layers hold is for the store's owner only (modes.c) */
	r = lyr_mkdir_p(s->root, 0700);
	if (r < 0)
		return fail(r, s->root, "create the store directory");
	/* Paths handed out (layer chains, ref dirs) must stay valid after a chdir. */
	char *abs = realpath(s->root, NULL);
	if (!abs)
		return fail(-errno, s->root, "resolve the store directory");
	free(s->root);
	free(s->dbdir);
	s->root = abs;
	if (asprintf(&s->dbdir, "%s/db", abs) < 0) {
		s->dbdir = NULL;
		return -ENOMEM;
	}
	struct statvfs vfs;
	if (statvfs(s->root, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
		return fail(-EROFS, s->root, "write");
	s->rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->rootfd < 0)
		return fail(-errno, s->root, "open the store directory");
	struct stat st;
	bool db_made = false;
	if (kind == ROOT_STORE && fstatat(s->rootfd, "db", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (!(mode & LYR_OPEN_REPAIR)) {
			db_seterr("store '%s': the database directory db/ is missing; run 'layerfs "
				  "fsck --repair' %s",
				  s->root, LOSS);
			return -EUCLEAN;
		}
		damage_add(s, true, "database directory db/ was missing: made anew %s", LOSS);
		db_made = true;
	}
	if (mkdirat(s->rootfd, "db", 0700) < 0 && errno != EEXIST)
		return fail(-errno, s->root, "create db/");
	/* after db/: a store directory holding only "lock" would read as not a store */
	s->lockfd = openat(s->rootfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lockfd < 0)
		return fail(-errno, s->root, "open the lock file");
	r = env_open(s);
	if (r == -EUCLEAN)
		return r; /* the message names the damaged table */
	if (r < 0)
		return fail(r, s->root, "open the database");
	uint32_t format = 0;
	r = txn_run(s, meta_txn, &format);
	if (r < 0)
		return fail(r, s->root, "read the format record");
	if (format == 0) {
		/* Under the namespace lock and read again: a process creating the same store at
		 * once may have written the record meanwhile, and made its first refs since, which
		 * would read as a database that lost its records. */
		while (flock(s->lockfd, LOCK_EX) < 0)
			if (errno != EINTR)
				return fail(-errno, s->root, "lock the store");
		r = txn_run(s, meta_txn, &format);
		if (r < 0) {
			r = fail(r, s->root, "read the format record");
		} else if (format == 0) {
			r = format_missing(s, mode, db_made);
			format = LYR_STORE_FORMAT;
		}
		flock(s->lockfd, LOCK_UN);
		if (r < 0)
			return r;
	}
	if (format > LYR_STORE_FORMAT) {
		db_seterr("store '%s': format %u is newer than this layerfs supports (%d)", s->root,
			  format, LYR_STORE_FORMAT);
		return -EPROTO;
	}
	for (size_t i = 0; i < STORE_TOP_DIRS; i++)
		if (mkdirat(s->rootfd, store_top_dirs[i], 0700) < 0 && errno != EEXIST)
			return fail(-errno, s->root, "create a store directory");
	r = owner_self(&s->self);
	if (r < 0)
		return fail(r, s->root, "read /proc/self/stat");
	return 0;
}

int lyr_store_open(const char *root, lyr_store **ret)
{
	return lyr_store_open_mode(root, LYR_OPEN_CREATE, ret);
}

int lyr_store_open_mode(const char *root, unsigned mode, lyr_store **ret)
{
	lyr_store *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->rootfd = s->lockfd = -1;
	s->mode = mode;
	s->root = strdup(root);
	if (!s->root || asprintf(&s->dbdir, "%s/db", root) < 0) {
		s->dbdir = NULL;
		lyr_store_free(s);
		return -ENOMEM;
	}
	int r = open_layout(s, mode);
	if (r < 0) {
		lyr_store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void lyr_store_free(lyr_store *s)
{
	if (!s)
		return;
	env_close(s);
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->rootfd >= 0)
		close(s->rootfd);
	free(s->root);
	free(s->dbdir);
	free(s);
}

const char *lyr_store_root(const lyr_store *s)
{
	return s->root;
}

char *lyr_store_default_root(void)
{
	const char *env = getenv("LAYERFS_ROOT");
	char *p = NULL;
	if (env && *env)
		return strdup(env);
	if (geteuid() == 0)
		return strdup("/var/lib/layerfs");
	env = getenv("XDG_DATA_HOME");
	if (env && *env == '/')
		return asprintf(&p, "%s/layerfs", env) < 0 ? NULL : p;
	const char *home = getenv("HOME");
	if (!home || *home != '/') {
		struct passwd *pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home)
		return NULL;
	return asprintf(&p, "%s/.local/share/layerfs", home) < 0 ? NULL : p;
}

void lyr_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}
