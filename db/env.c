/* The Berkeley DB environment of a store: opening it safely from many processes, running
 * transactions with retries, and converting Berkeley DB return values to -errno (the only
 * place that does).
 *
 * Many short-lived processes share one environment.  Every open uses DB_REGISTER, so the
 * environment knows which processes have it open, and DB_RECOVER, so an open that finds a
 * registered process gone without closing runs recovery (only then).  Recovery marks the
 * regions other processes have mapped as panicked: their next call returns DB_RUNRECOVERY, and
 * txn_run closes and reopens the environment (joining the recovered one) and reruns the
 * transaction.  Transactions never wait for a lock (DB_TXN_NOWAIT): a conflict returns
 * DB_LOCK_NOTGRANTED, the transaction is aborted and rerun after a short random backoff.  A
 * lock held by a process that died would otherwise be waited for forever (Berkeley DB only
 * enforces lock timeouts when the deadlock detector happens to run); after BUSY_REOPEN
 * conflicts in a row the environment is reopened, which is where DB_REGISTER notices a dead
 * process and recovery frees its locks.  No waiting also means no deadlocks.
 *
 * Failure checking (DB_FAILCHK, DB_ENV->failchk) is deliberately not used: in Berkeley DB 5.3,
 * __dbreg_failchk frees the log-file-name mutex of a dead process's database handle while
 * holding it locked, and the next handle that reuses that mutex blocks forever (seen here as
 * processes hung in __db_pthread_mutex_lock under __dbreg_failchk).  Every process of a store
 * keeps database handles open, so full recovery is the safe answer to a dead process.
 *
 * Cost of a recovery to a process that lives through it: Berkeley DB 5.3 does not free the
 * handles of an environment that panicked (DB->close and DB_ENV->close return early), about
 * 30 KB.  Forcing them closed (DB_NOPANIC) would flush the stale log buffer over the
 * recovered log, so the memory is left; CLI processes exit, daemons rarely see a recovery.
 *
 * A store handle is used by one thread at a time; handles of one process on one store share
 * one environment (DB_REGISTER allows no more), which any thread may use. */
#include <dirent.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "db-int.h"
#include "layerfs/hash.h"

#define TXN_ATTEMPTS 500   /* lock conflicts (about 4 s of backoff) */
#define BUSY_REOPEN 25	   /* conflicts in a row after which the holder may be dead */
#define RECOVER_ATTEMPTS 8 /* environment reopened after a panic */
#define OPEN_ATTEMPTS 100  /* opens while another process recovers (about 3 s) */

static __thread char last_error[512];

const char *lyr_store_last_error(void)
{
	return last_error;
}

void db_seterr(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
}

int dbx(int r)
{
	if (r == 0 || db_retryable(r))
		return r;
	if (r > 0)
		return -r; /* a system error passed through */
	switch (r) {
	case DB_NOTFOUND:
	case DB_KEYEMPTY:
		return -ENOENT;
	case DB_KEYEXIST:
		return -EEXIST;
	case DB_VERSION_MISMATCH:
		return -EPROTO;
	case DB_LOCK_NOTGRANTED:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* Berkeley DB's last complaint on this thread, and its last one naming a table file, for
 * saying what is damaged. */
static __thread char bdb_msg[256], bdb_file_msg[256];

void damage_add(lyr_store *s, bool fixed, const char *fmt, ...)
{
	if (s->ndamage >= DAMAGE_MAX)
		return;
	struct damage *d = &s->damage[s->ndamage++];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->text, sizeof d->text, fmt, ap);
	va_end(ap);
	d->fixed = fixed;
}

static void errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	(void)env, (void)pfx;
	snprintf(bdb_msg, sizeof bdb_msg, "%s", msg);
	if (strstr(msg, ".db:"))
		snprintf(bdb_file_msg, sizeof bdb_file_msg, "%s", msg);
	if (getenv("LAYERFS_DB_DEBUG"))
		fprintf(stderr, "layerfs: db: %s\n", msg);
}

static void msgcall(const DB_ENV *env, const char *msg)
{
	(void)env;
	if (getenv("LAYERFS_DB_DEBUG"))
		fprintf(stderr, "layerfs: db: %s\n", msg);
}

/* Each table, what it holds and what becomes of that when the table is lost and the log no
 * longer holds it (fsck --repair rebuilds it from the directories, or it is lost). */
static const struct {
	size_t off;
	const char *file;
	const char *holds, *fate;
} tables[] = {
    {offsetof(lyr_store, meta), "meta.db", "the format record", "is written again"},
    {offsetof(lyr_store, layers), "layers.db", "layer records",
     "are rebuilt from layers/ (descriptions are lost)"},
    {offsetof(lyr_store, refs), "refs.db", "ref records",
     "are rebuilt from refs/ (descriptions are lost)"},
    {offsetof(lyr_store, tags), "tags.db", "tags", "are lost"},
    {offsetof(lyr_store, uses), "uses.db", "uses index entries", "are rebuilt from the records"},
    {offsetof(lyr_store, hashes), "hashes.db", "cached digests", "are lost (computed again)"},
    {offsetof(lyr_store, actions), "actions.db", "exec cache entries and cache-mount bindings",
     "are lost"},
};
#define NTABLES LYR_ARRAY_SIZE(tables)

/* DB_REGISTER allows one DB_ENV handle per process and environment, so every lyr_store of a
 * process on one store shares this (found by the db directory's device and inode).  The
 * rwlock is read-held for the duration of each transaction and write-held to replace a
 * panicked environment; GEN counts replacements.  A child after fork() never touches its
 * parent's handles (PID tells them apart). */
struct shared_env {
	dev_t dev;
	ino_t ino;
	pid_t pid;
	unsigned refs, gen;
	pthread_rwlock_t lock;
	DB_ENV *env;
	DB *db[NTABLES];
	struct shared_env *next;
};

static pthread_mutex_t envs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared_env *envs;

static DB **table(lyr_store *s, size_t i)
{
	return (DB **)((char *)s + tables[i].off);
}

/* Copies the shared handles into S for the transaction about to run. */
static void env_bind(lyr_store *s)
{
	s->env = s->shared->env;
	for (size_t i = 0; i < NTABLES; i++)
		*table(s, i) = s->shared->db[i];
}

static void regions_seal_write(const char *dbdir);

/* Region files are mapped: Berkeley DB makes them sparse, and the first write to a page a
 * full filesystem cannot back kills the process with SIGBUS.  DB_REGION_INIT writes every
 * page when a region is made, so a full disk is an open failing with ENOSPC instead. */
static void region_init(DB_ENV *env)
{
	env->set_flags(env, DB_REGION_INIT, 1);
}

static void handles_close(struct shared_env *e, bool opened)
{
	/* DB_NOSYNC: the log already holds every committed change and recovery replays it;
	 * flushing each table here would cost an fdatasync per table on every CLI exit. */
	for (size_t i = 0; i < NTABLES; i++) {
		if (e->db[i])
			e->db[i]->close(e->db[i], DB_NOSYNC);
		e->db[i] = NULL;
	}
	char home[PATH_MAX] = "";
	const char *h = NULL;
	if (e->env && opened && e->env->get_home(e->env, &h) == 0 && h)
		snprintf(home, sizeof home, "%s", h);
	if (e->env) {
		/* Keep the log short: a checkpoint lets DB_LOG_AUTO_REMOVE drop old log files.
		 * It writes only when enough log accumulated, so closing stays cheap. */
		if (opened)
			e->env->txn_checkpoint(e->env, 512, 0, 0);
		e->env->close(e->env, 0);
	}
	e->env = NULL;
	if (*home)
		regions_seal_write(home); /* callers hold open.lock */
}

/* What is wrong with table FILE in DBDIR, for people: Berkeley DB only says "Invalid
 * argument".  A btree file starts with a metadata page: magic 0x053162 at byte 12, page size
 * at byte 20. */
static void describe_table(const char *dbdir, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dbdir, file);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t meta[24];
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(buf, len, "cannot be read (%s)", strerror(errno));
		return;
	}
	if (st.st_size == 0) {
		snprintf(buf, len, "empty (0 bytes)");
		return;
	}
	ssize_t n = pread(fd, meta, sizeof meta, 0);
	uint32_t magic = 0, pagesize = 0;
	if (n == (ssize_t)sizeof meta) {
		magic = (uint32_t)meta[12] | (uint32_t)meta[13] << 8 | (uint32_t)meta[14] << 16 |
			(uint32_t)meta[15] << 24;
		pagesize = (uint32_t)meta[20] | (uint32_t)meta[21] << 8 | (uint32_t)meta[22] << 16 |
			   (uint32_t)meta[23] << 24;
	}
	if (magic != 0x053162)
		snprintf(buf, len, "%s (%lld bytes with no Berkeley DB btree header)",
			 n < (ssize_t)sizeof meta ? "truncated" : "garbage", (long long)st.st_size);
	else if (pagesize >= 512 && pagesize <= 65536 && st.st_size % pagesize != 0)
		snprintf(buf, len, "truncated (%lld bytes, not a whole number of %u-byte pages)",
			 (long long)st.st_size, pagesize);
	else
		snprintf(buf, len, "damaged (%s)", *bdb_msg ? bdb_msg : "unreadable pages");
}

/* Table I is damaged: by the open's mode, refused naming the file (-EUCLEAN); noted for
 * fsck (LYR_OPEN_CHECK, when IN_MEMORY: the caller puts an empty table in memory in its
 * place, changing nothing); or moved aside to FILE.damaged to be made anew (REPAIR). */
static int table_verdict(lyr_store *s, size_t i, bool in_memory)
{
	char what[300];
	describe_table(s->dbdir, tables[i].file, what, sizeof what);
	bool repair = s->mode & LYR_OPEN_REPAIR;
	if (!repair && !(in_memory && (s->mode & LYR_OPEN_CHECK))) {
		db_seterr("store '%s': database table db/%s is %s; run 'layerfs fsck --repair' "
			  "(%s the log no longer holds %s)",
			  s->root, tables[i].file, what, tables[i].holds, tables[i].fate);
		return -EUCLEAN;
	}
	if (!repair) {
		damage_add(s, false,
			   "table db/%s is %s: --repair makes it anew (%s the log no longer holds "
			   "%s)",
			   tables[i].file, what, tables[i].holds, tables[i].fate);
		return 0;
	}
	char from[PATH_MAX], to[PATH_MAX + 16];
	snprintf(from, sizeof from, "%s/%s", s->dbdir, tables[i].file);
	snprintf(to, sizeof to, "%s.damaged", from);
	if (rename(from, to) < 0)
		return -errno;
	damage_add(s, true,
		   "table db/%s was %s: made anew from the log, the damaged file kept as "
		   "db/%s.damaged (%s the log no longer held %s)",
		   tables[i].file, what, tables[i].file, tables[i].holds, tables[i].fate);
	return 0;
}

/* Table I of E failed to open (after an environment open that worked): see table_verdict. */
static int table_damaged(lyr_store *s, struct shared_env *e, size_t i)
{
	if (e->db[i])
		e->db[i]->close(e->db[i], DB_NOSYNC);
	e->db[i] = NULL;
	int r = table_verdict(s, i, true);
	if (r < 0)
		return r;
	bool repair = s->mode & LYR_OPEN_REPAIR;
	r = db_create(&e->db[i], e->env, 0);
	if (r == 0)
		r = e->db[i]->open(e->db[i], NULL, repair ? tables[i].file : NULL, NULL, DB_BTREE,
				   DB_CREATE | DB_AUTO_COMMIT | DB_THREAD, 0644);
	return dbx(r);
}

/* *RET_ENV_FAILED tells an environment (region) failure from a table's. */
static int handles_open(struct shared_env *e, lyr_store *s, bool *ret_env_failed)
{
	DB_ENV *env;
	*ret_env_failed = false;
	int r = db_env_create(&env, 0);
	if (r)
		return dbx(r);
	e->env = env;
	env->set_errcall(env, errcall);
	env->set_msgcall(env, msgcall);
	env->set_lk_detect(env, DB_LOCK_DEFAULT);
	env->set_lg_max(env, 4 << 20);
	env->set_lg_bsize(env, 256 << 10);
	env->set_cachesize(env, 0, 4 << 20, 1);
	env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1);
	/* A killed process loses nothing it committed (the log is in the page cache); after a
	 * machine crash the last transactions may be lost, and fsck reconciles directories
	 * with whatever records survived. */
	env->set_flags(env, DB_TXN_WRITE_NOSYNC, 1);
	region_init(env);
	uint32_t flags = DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL |
			 DB_THREAD | DB_REGISTER | DB_RECOVER;
	r = env->open(env, s->dbdir, flags, 0644);
	if (r) {
		handles_close(e, false);
		*ret_env_failed = true;
		return dbx(r);
	}
	bool rebuilt = false;
	for (size_t i = 0; i < NTABLES; i++) {
		bdb_msg[0] = '\0';
		r = db_create(&e->db[i], env, 0);
		if (r == 0)
			r = e->db[i]->open(e->db[i], NULL, tables[i].file, NULL, DB_BTREE,
					   DB_CREATE | DB_AUTO_COMMIT | DB_THREAD, 0644);
		r = dbx(r);
		if (r && !db_retryable(r) && r != -EAGAIN && r != -EBUSY && r != -EACCES &&
		    r != -EROFS && r != -ENOSPC && r != -ENOMEM) {
			r = table_damaged(s, e, i);
			rebuilt = r == 0 && (s->mode & LYR_OPEN_REPAIR);
		}
		if (r) {
			handles_close(e, true);
			return r;
		}
	}
	/* Recovery must never replay the old file's log records into the new one. */
	if (rebuilt)
		env->txn_checkpoint(env, 0, 0, DB_FORCE);
	return 0;
}

static void backoff(int attempt)
{
	static __thread uint32_t seed;
	if (!seed)
		seed = (uint32_t)getpid() * 2654435761u | 1;
	seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
	unsigned cap = attempt < 8 ? 500u << (attempt / 2) : 16000u; /* microseconds */
	struct timespec ts = {0, (long)(seed % cap) * 1000};
	nanosleep(&ts, NULL);
}

/* ROOT/db/open.lock serialises opening and closing the environment across processes, so
 * DB_REGISTER never looks at the registry while another process is half registered or half
 * gone (the cause of spurious recoveries under heavy open/close churn).
 *
 * While it holds the lock, a process writes "<pid> <start time>" into the file and blanks
 * it when done.  Finding a marker whose process is gone means that process died inside an
 * environment open or close -- possibly while running recovery, when it is not registered and
 * its half-built regions would make every later open wait in __env_attach for a region that
 * never becomes valid.  *RET_DIRTY is then set, and the next open forces recovery.  Returns
 * the locked fd. */
/* The marker is rewritten in place at a fixed length (blank when free), so that once the
 * file has its block, marking never needs space: on a full disk an unwritable marker would
 * otherwise read as a dead opener and force a recovery. */
#define MARK_LEN 64

static int mark(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mark(int fd, const char *fmt, ...)
{
	char buf[MARK_LEN];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (len < 0 || len >= MARK_LEN)
		return -EINVAL;
	memset(buf + len, ' ', MARK_LEN - 1 - (size_t)len);
	buf[MARK_LEN - 1] = '\n';
	ssize_t n = pwrite(fd, buf, MARK_LEN, 0);
	if (n < 0)
		return -errno;
	if (n != MARK_LEN || ftruncate(fd, MARK_LEN) < 0)
		return -EIO;
	return 0;
}

static int env_lock(const char *dbdir, bool *ret_dirty)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/open.lock", dbdir) < 0)
		return -ENOMEM;
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int e = -errno;
			close(fd);
			return e;
		}
	}
	char buf[MARK_LEN + 1] = "";
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	lyr_owner prev = {0, 0}, self;
	unsigned long long start = 0;
	bool blank = n <= 0 || strspn(buf, " \n") == (size_t)n;
	*ret_dirty = !blank && (sscanf(buf, "%d %llu", &prev.pid, &start) != 2 ||
				(prev.start = start, !owner_alive(&prev)));
	int r = owner_self(&self);
	if (r == 0)
		r = mark(fd, "%d %llu", (int)self.pid, (unsigned long long)self.start);
	if (r < 0) {
		/* no marker, no safe open: recovering on a full disk would die of SIGBUS */
		close(fd);
		return r;
	}
	return fd;
}

/* Releases the lock; DIRTY leaves a marker of a dead process for the next opener. */
static void env_unlock(int fd, bool dirty)
{
	(void)mark(fd, "%s", dirty ? "0 0" : "");
	close(fd);
}

/* Recovery regardless of the registry: removes the environment (marking a valid one as
 * panicked for the processes still in it) and rebuilds it from the log. */
static int force_recovery(const char *dbdir)
{
	DB_ENV *env;
	int r = db_env_create(&env, 0);
	if (r)
		return dbx(r);
	env->set_errcall(env, errcall);
	env->set_msgcall(env, msgcall);
	region_init(env);
	r = env->open(env, dbdir,
		      DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL |
			  DB_RECOVER,
		      0644);
	int c = env->close(env, 0);
	return dbx(r ? r : c);
}

/* The environment's region files (__db.001 ...) hold nothing the log does not: when they are
 * damaged they are removed and recovery makes them again from the log. */
static int regions_remove(const char *dbdir)
{
	DIR *d = opendir(dbdir);
	if (!d)
		return -errno;
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "__db.", 5) == 0 && strcmp(de->d_name, "__db.register") &&
		    unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			r = -errno;
	closedir(d);
	return r;
}

/* Whether DBDIR holds log files but no region files: the regions were removed (they live
 * on disk beside the tables and hold pages not yet written to them), so the environment
 * must be rebuilt from the log, which DB_REGISTER alone would not do. */
static void db_files(const char *dbdir, bool *ret_region, bool *ret_log)
{
	*ret_region = *ret_log = false;
	DIR *d = opendir(dbdir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		*ret_region |= strncmp(de->d_name, "__db.0", 6) == 0;
		*ret_log |= strncmp(de->d_name, "log.", 4) == 0;
	}
	closedir(d);
}

static bool regions_gone(const char *dbdir)
{
	bool region, log;
	db_files(dbdir, &region, &log);
	return log && !region;
}

/* Region seal.  Berkeley DB maps the region files and trusts every byte: a truncated one makes
 * the open spin or die of SIGBUS, a zeroed or garbage one of SIGSEGV, before it can return an
 * error.  The regions hold nothing the log does not, so they are checked before anyone maps
 * them: the last process to close the environment (no other process registered) writes
 * db/regions.seal, a checksum of every region file's name, size and content (seal_ctx); the
 * first to open it again (the same) checks the seal and removes it, and when it does not match (or
 * is missing: a process died attached, or the store predates seals) the regions are removed
 * and recovery makes them again from the log.  Both run under open.lock. */
#define SEAL_NAME "regions.seal"
#define SEAL_LEN (LYR_DIGEST_TEXT_LEN - 1)

/* Set once this process replaced a panicked environment: Berkeley DB's close of it returns
 * early and keeps its registration, a record lock on __db.register. */
static atomic_bool registration_kept;

/* Whether no process is registered in DBDIR's environment: each registered process holds a
 * POSIX record lock on its slot of __db.register, which F_GETLK finds (not /proc/locks: reading
 * it waits for an RCU grace period, some 10 ms, twice per command).  Closing the descriptor
 * drops every record lock this process holds on the file, which is none at the two places this
 * runs (before the process opens the environment, after it closed it; fork does not pass
 * record locks on) unless a panicked environment kept its registration: then, and whenever in
 * doubt, not idle, and the regions are trusted as before. */
static bool registry_idle(const char *dbdir)
{
	if (atomic_load(&registration_kept))
		return false;
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/__db.register", dbdir);
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	bool idle = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_UNLCK;
	close(fd);
	return idle;
}

static int region_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The seal's checksum: four independent 64-bit lanes over 8-byte words (multiply-xor, as
 * FNV-1a does per byte), each finished with splitmix64's mixer.  It is there to tell damaged
 * regions from sound ones, not to stand against someone who can write db/ (who can do worse),
 * and it runs at memory speed: SHA-256 over the regions (about 1 MB) twice per command cost
 * some 3 ms. */
#define SEAL_PRIME 0x100000001b3ull
#define SEAL_BLOCK 32

typedef struct seal_ctx {
	uint64_t lane[4];
	uint64_t len;
	uint8_t tail[SEAL_BLOCK];
	size_t ntail;
} seal_ctx;

static void seal_block(seal_ctx *c, const uint8_t *p)
{
	for (int i = 0; i < 4; i++) {
		uint64_t w;
		memcpy(&w, p + 8 * i, 8);
		c->lane[i] = (c->lane[i] ^ w) * SEAL_PRIME;
	}
}

static void seal_update(seal_ctx *c, const void *data, size_t n)
{
	const uint8_t *p = data;
	c->len += n;
	if (c->ntail) {
		size_t take = SEAL_BLOCK - c->ntail < n ? SEAL_BLOCK - c->ntail : n;
		memcpy(c->tail + c->ntail, p, take);
		c->ntail += take, p += take, n -= take;
		if (c->ntail < SEAL_BLOCK)
			return;
		seal_block(c, c->tail);
		c->ntail = 0;
	}
	for (; n >= SEAL_BLOCK; p += SEAL_BLOCK, n -= SEAL_BLOCK)
		seal_block(c, p);
	memcpy(c->tail, p, n);
	c->ntail = n;
}

static uint64_t seal_mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* "seal64:" and the four lanes in hex: SEAL_LEN characters, as the seal file holds them. */
static void seal_final(seal_ctx *c, char out[LYR_DIGEST_TEXT_LEN])
{
	if (c->ntail) {
		memset(c->tail + c->ntail, 0, SEAL_BLOCK - c->ntail);
		seal_block(c, c->tail);
	}
	int n = snprintf(out, LYR_DIGEST_TEXT_LEN, "seal64:");
	for (int i = 0; i < 4; i++)
		n += snprintf(out + n, LYR_DIGEST_TEXT_LEN - (size_t)n, "%016llx",
			      (unsigned long long)seal_mix(c->lane[i] ^ c->len ^ (uint64_t)i));
}

/* The seal text of DBDIR's region files into OUT; -errno when one cannot be read (then there
 * is no valid seal). */
static int regions_seal(const char *dbdir, char out[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_closedir_ DIR *d = opendir(dbdir);
	if (!d)
		return -errno;
	char *names[64];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < LYR_ARRAY_SIZE(names))
		if (strncmp(de->d_name, "__db.0", 6) == 0)
			names[n++] = de->d_name;
	qsort(names, n, sizeof *names, region_cmp);
	seal_ctx c = {.lane = {0xcbf29ce484222325ull, 1, 2, 3}};
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int fd =
		    openat(dirfd(d), names[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0)
			return -errno;
		char head[96];
		int len = snprintf(head, sizeof head, "%s %lld\n", names[i], (long long)st.st_size);
		seal_update(&c, head, (size_t)len);
		static __thread uint8_t buf[1 << 16];
		ssize_t got;
		while ((got = read(fd, buf, sizeof buf)) > 0)
			seal_update(&c, buf, (size_t)got);
		if (got < 0)
			return -errno;
	}
	seal_final(&c, out);
	return 0;
}

/* At the last close: seals the regions (nothing is lost without a seal: the next open
 * rebuilds them). */
static void regions_seal_write(const char *dbdir)
{
	char seal[LYR_DIGEST_TEXT_LEN], p[PATH_MAX];
	snprintf(p, sizeof p, "%s/" SEAL_NAME, dbdir);
	if (!registry_idle(dbdir) || regions_seal(dbdir, seal) < 0)
		return;
	/* rewritten in place, like the open marker: a full disk must not lose the seal */
	_cleanup_close_ int fd =
	    open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
	if (fd >= 0 && pwrite(fd, seal, SEAL_LEN, 0) != SEAL_LEN)
		(void)ftruncate(fd, 0);
}

/* At the first open: whether the regions must be made again, the seal taken away either
 * way (the regions change once mapped). */
static bool regions_unsealed(const char *dbdir)
{
	if (!registry_idle(dbdir))
		return false; /* mapped by a live process: as sound as that process finds them */
	char seal[LYR_DIGEST_TEXT_LEN], want[LYR_DIGEST_TEXT_LEN + 1] = "", p[PATH_MAX];
	snprintf(p, sizeof p, "%s/" SEAL_NAME, dbdir);
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	ssize_t n = fd >= 0 ? read(fd, want, sizeof want - 1) : -1;
	if (n > 0)
		want[n] = '\0';
	if (n > 0) {
		char blank[SEAL_LEN];
		memset(blank, ' ', sizeof blank);
		_cleanup_close_ int w = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (w < 0 || pwrite(w, blank, sizeof blank, 0) != SEAL_LEN)
			unlink(p);
	}
	bool region, log;
	db_files(dbdir, &region, &log);
	return region && (n <= 0 || regions_seal(dbdir, seal) < 0 || strcmp(seal, want) != 0);
}

/* Recovery makes the regions again, and Berkeley DB grows them by writing to mapped pages
 * it never allocated: a filesystem without room kills the process with SIGBUS.  So recovery
 * (and removing regions, which calls for it) is refused with -ENOSPC unless this much is
 * free: the regions, the 4 MB cache, the log buffer, with a margin. */
#define RECOVERY_ROOM (16ull << 20)

static int recovery_room(const char *dbdir)
{
	struct statvfs sv;
	if (statvfs(dbdir, &sv) < 0)
		return -errno;
	/* a filesystem too small ever to have that much free must still recover */
	unsigned long long room = (unsigned long long)sv.f_blocks * sv.f_frsize / 4;
	if (room > RECOVERY_ROOM)
		room = RECOVERY_ROOM;
	return (unsigned long long)sv.f_bavail * sv.f_frsize >= room ? 0 : -ENOSPC;
}

/* force_recovery, where a damaged table makes recovery fail (Berkeley DB names the file
 * before it panics): the table is refused or, repairing, moved aside and recovery rerun. */
static int recover(lyr_store *s)
{
	int r = 0;
	for (size_t attempt = 0; attempt <= NTABLES; attempt++) {
		bdb_file_msg[0] = '\0';
		r = force_recovery(s->dbdir);
		if (r == 0)
			return 0;
		size_t i = 0;
		char name[64];
		for (; i < NTABLES; i++) {
			snprintf(name, sizeof name, "/%s:", tables[i].file);
			if (strstr(bdb_file_msg, name))
				break;
		}
		if (i == NTABLES)
			return r;
		r = table_verdict(s, i, false);
		if (r < 0)
			return r;
	}
	return r;
}

/* Opens E's handles, retrying while another process holds the environment in recovery. */
static int handles_open_retry(struct shared_env *e, lyr_store *s)
{
	const char *dbdir = s->dbdir;
	int r = 0;
	bool regions_made = false;
	for (int attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
		bool dirty, env_failed = false;
		int lk = env_lock(dbdir, &dirty);
		if (lk < 0)
			return lk;
		bool unsealed = regions_unsealed(dbdir);
		r = unsealed || dirty || regions_gone(dbdir) ? recovery_room(dbdir) : 0;
		if (r == 0 && unsealed)
			r = regions_remove(dbdir);
		if (r == 0)
			r = dirty || regions_gone(dbdir) ? recover(s) : 0;
		if (r == 0)
			dirty = false;
		if (r == 0)
			r = handles_open(e, s, &env_failed);
		if (env_failed && (r == -EINVAL || r == -EIO) && !regions_made) {
			/* garbage regions: made again from the log, once */
			regions_made = true;
			r = recovery_room(dbdir);
			if (r == 0)
				r = regions_remove(dbdir);
			if (r == 0)
				r = recover(s);
			if (r == 0)
				r = handles_open(e, s, &env_failed);
		}
		env_unlock(lk, dirty);
		if (r && getenv("LAYERFS_DB_DEBUG"))
			fprintf(stderr, "layerfs: db: pid %d: open: %s\n", (int)getpid(),
				r < 0 && r > -4096 ? strerror(-r) : db_strerror(r));
		/* EBUSY: recovery found the old regions still mapped by other processes (it
		 * panics them, and they reopen); the next attempt joins the new environment. */
		if (!db_retryable(r) && r != -EAGAIN && r != -EBUSY)
			return r;
		backoff(attempt);
	}
	return db_retryable(r) || r == -EBUSY ? -EAGAIN : r;
}

int env_open(lyr_store *s)
{
	struct stat st;
	if (stat(s->dbdir, &st) < 0)
		return -errno;
	pid_t pid = getpid();
	pthread_mutex_lock(&envs_lock);
	struct shared_env *e;
	for (e = envs; e; e = e->next)
		if (e->dev == st.st_dev && e->ino == st.st_ino && e->pid == pid)
			break;
	if (e) {
		e->refs++;
		pthread_mutex_unlock(&envs_lock);
		s->shared = e;
		return 0;
	}
	e = calloc(1, sizeof *e);
	if (!e) {
		pthread_mutex_unlock(&envs_lock);
		return -ENOMEM;
	}
	e->dev = st.st_dev, e->ino = st.st_ino, e->pid = pid, e->refs = 1;
	pthread_rwlock_init(&e->lock, NULL);
	int r = handles_open_retry(e, s);
	if (r < 0) {
		pthread_rwlock_destroy(&e->lock);
		free(e);
		pthread_mutex_unlock(&envs_lock);
		return r;
	}
	e->next = envs;
	envs = e;
	pthread_mutex_unlock(&envs_lock);
	s->shared = e;
	return 0;
}

void env_close(lyr_store *s)
{
	struct shared_env *e = s->shared;
	if (!e)
		return;
	s->shared = NULL;
	s->env = NULL;
	pthread_mutex_lock(&envs_lock);
	if (--e->refs == 0) {
		for (struct shared_env **p = &envs; *p; p = &(*p)->next)
			if (*p == e) {
				*p = e->next;
				break;
			}
		if (e->pid == getpid() && e->env) {
			bool dirty = false;
			int lk = env_lock(s->dbdir, &dirty);
			handles_close(e, true);
			if (lk >= 0)
				env_unlock(lk, dirty);
		}
		pthread_rwlock_destroy(&e->lock);
		free(e);
	}
	pthread_mutex_unlock(&envs_lock);
}

/* Replaces the panicked environment of generation GEN (unless another handle already did). */
static int reopen(lyr_store *s, unsigned gen)
{
	struct shared_env *e = s->shared;
	pthread_rwlock_wrlock(&e->lock);
	int r = 0;
	if (e->gen == gen || !e->env) {
		bool dirty;
		int lk = env_lock(s->dbdir, &dirty);
		if (lk < 0) {
			r = lk;
		} else {
			atomic_store(&registration_kept, true);
			handles_close(e, false);
			env_unlock(lk, dirty);
			r = handles_open_retry(e, s);
			e->gen++;
		}
	}
	pthread_rwlock_unlock(&e->lock);
	return r;
}

int txn_run(lyr_store *s, txn_fn fn, void *ctx)
{
	int recoveries = 0, busy = 0, r = 0;
	struct shared_env *e = s->shared;
	for (int attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
		pthread_rwlock_rdlock(&e->lock);
		unsigned gen = e->gen;
		if (!e->env) {
			r = DB_RUNRECOVERY; /* a reopen failed earlier: try again */
		} else {
			env_bind(s);
			DB_TXN *txn = NULL;
			r = dbx(s->env->txn_begin(s->env, NULL, &txn, DB_TXN_NOWAIT));
			if (r == 0) {
				r = fn(s, txn, ctx);
				if (r >= 0 && !db_retryable(r))
					r = dbx(txn->commit(txn, 0));
				else
					txn->abort(txn);
			}
		}
		pthread_rwlock_unlock(&e->lock);
		if (!db_retryable(r))
			return r;
		if (getenv("LAYERFS_DB_DEBUG"))
			fprintf(stderr, "layerfs: db: pid %d: retrying after %s\n", (int)getpid(),
				db_strerror(r));
		if (r == DB_RUNRECOVERY) {
			if (++recoveries > RECOVER_ATTEMPTS)
				break;
			int err = reopen(s, gen);
			if (err < 0)
				return err;
			continue;
		}
		if (++busy % BUSY_REOPEN == 0) {
			int err = reopen(s, gen);
			if (err < 0)
				return err;
		}
		backoff(busy);
	}
	db_seterr("store '%s': database stayed busy or in recovery; giving up", s->root);
	return r == DB_RUNRECOVERY ? -EIO : -EAGAIN;
}

static void dbt_in(DBT *d, const void *p, size_t len)
{
	memset(d, 0, sizeof *d);
	d->data = (void *)p;
	d->size = (uint32_t)len;
}

int rec_get(DB *db, DB_TXN *txn, const void *key, size_t klen, void **ret, size_t *ret_len)
{
	DBT k, v;
	dbt_in(&k, key, klen);
	memset(&v, 0, sizeof v);
	v.flags = DB_DBT_MALLOC;
	int r = dbx(db->get(db, txn, &k, &v, 0));
	if (r)
		return r;
	*ret = v.data;
	if (ret_len)
		*ret_len = v.size;
	return 0;
}

int rec_put(DB *db, DB_TXN *txn, const void *key, size_t klen, const void *val, size_t vlen,
	    uint32_t flags)
{
	DBT k, v;
	dbt_in(&k, key, klen);
	dbt_in(&v, val, vlen);
	return dbx(db->put(db, txn, &k, &v, flags));
}

int rec_each(DB *db, DB_TXN *txn, rec_fn fn, void *ctx)
{
	DBC *c;
	int r = dbx(db->cursor(db, txn, &c, 0));
	if (r)
		return r;
	DBT k = {0}, v = {0};
	k.flags = v.flags = DB_DBT_REALLOC;
	while ((r = dbx(c->get(c, &k, &v, DB_NEXT))) == 0) {
		r = fn(ctx, k.data, k.size, v.data, v.size);
		if (r < 0)
			break;
		if (r == REC_DELETE && (r = dbx(c->del(c, 0))) != 0)
			break;
	}
	free(k.data);
	free(v.data);
	int e = dbx(c->close(c));
	if (r == -ENOENT) /* DB_NOTFOUND: the end */
		r = e;
	return r;
}

int rec_del(DB *db, DB_TXN *txn, const void *key, size_t klen)
{
	DBT k;
	dbt_in(&k, key, klen);
	return dbx(db->del(db, txn, &k, 0));
}

bool rec_exists(DB *db, DB_TXN *txn, const void *key, size_t klen, int *ret_err)
{
	DBT k, v;
	dbt_in(&k, key, klen);
	memset(&v, 0, sizeof v);
	v.flags = DB_DBT_USERMEM | DB_DBT_PARTIAL; /* no data wanted */
	int r = dbx(db->get(db, txn, &k, &v, 0));
	*ret_err = r == -ENOENT ? 0 : r;
	return r == 0;
}
