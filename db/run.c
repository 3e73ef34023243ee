/* Run records and the fsck of what dead processes left mounted.
 *
 * A run record is a small text file, runs/exec-<pid>-<start>-<rand>, that an exec run writes
 * before it makes anything that must not outlive it: "dir PATH\n" (its private directory of
 * mountpoints) first, then "ref ID\n" for each ref it makes.  Lines are appended whole
 * (O_APPEND), so a crash leaves at most a last line without its newline, which is ignored.
 * The run removes its record once everything is released; when it dies instead, the serving
 * processes of its views release what is theirs (fs.h's owner watch) and the last one removes
 * the record, and what is left after that is fsck's: the record's owner is dead, so nothing
 * it names can be in use by the run any more.
 *
 * fsck touches nothing but what a record names: refs are released through the store's own
 * path (which refuses a ref with a live mount), and below DIR only entries are unmounted
 * (lazily) and removed with rmdir, never walked into. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "db-int.h"

struct lyr_run {
	int fd;
	char *path;
};

static int append(int fd, const char *key, const char *value)
{
	char line[PATH_MAX + 16];
	int n = snprintf(line, sizeof line, "%s %s\n", key, value);
	if (n < 0 || (size_t)n >= sizeof line)
		return -ENAMETOOLONG;
	ssize_t w = write(fd, line, (size_t)n);
	if (w < 0)
		return -errno;
	return w == n ? 0 : -EIO;
}

int lyr_run_new(lyr_store *s, const char *dir, lyr_run **ret)
{
	lyr_run *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	char name[128], rel[160];
	tmp_name(s, "exec", name, sizeof name);
	snprintf(rel, sizeof rel, "runs/%s", name);
	r->fd = openat(s->rootfd, rel, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int e = r->fd < 0 ? -errno : 0;
	if (e == 0 && asprintf(&r->path, "%s/%s", s->root, rel) < 0) {
		r->path = NULL;
		e = -ENOMEM;
	}
	if (e == 0)
		e = append(r->fd, "dir", dir);
	if (e < 0) {
		if (r->fd >= 0)
			unlinkat(s->rootfd, rel, 0);
		db_seterr("store '%s': run record %s: %s", s->root, rel, strerror(-e));
		lyr_run_end(r);
		return e;
	}
	*ret = r;
	return 0;
}

int lyr_run_add_ref(lyr_run *r, const char *ref_id)
{
	return append(r->fd, "ref", ref_id);
}

const char *lyr_run_path(const lyr_run *r)
{
	return r->path;
}

void lyr_run_end(lyr_run *r)
{
	if (!r)
		return;
	if (r->path)
		unlink(r->path);
	if (r->fd >= 0)
		close(r->fd);
	free(r->path);
	free(r);
}

typedef struct check {
	lyr_store *s;
	bool repair;
	void (*fn)(void *ctx, const char *finding, bool repaired);
	void *ctx;
	int left;
} check;

static void say(check *c, bool repaired, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(check *c, bool repaired, const char *fmt, ...)
{
	char line[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (!repaired)
		c->left++;
	if (c->fn)
		c->fn(c->ctx, line, repaired);
}

/* Unmounts (lazily) and removes every entry of DIR, then DIR.  0 or -errno. */
static int clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		/* EINVAL: not a mount (a view not mounted yet, or unmounted already) */
		if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && r == 0)
			r = -errno;
		if (rmdir(path) < 0 && r == 0)
			r = -errno;
	}
	closedir(d);
	if (r == 0 && rmdir(dir) < 0)
		r = -errno;
	return r;
}

typedef struct ref_exists {
	const char *id;
	bool *yes;
} ref_exists;

/* A plain read: lyr_ref_get would clear a stale mount record, which is for fsck to report. */
static int ref_exists_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	ref_exists *e = ctx;
	int r;
	*e->yes = rec_exists(s->refs, txn, e->id, strlen(e->id), &r);
	return r;
}

/* One record below runs/: nothing to do while its process lives. */
static int check_run(check *c, const char *name)
{
	lyr_owner o;
	if (tmp_owner(name, &o) && owner_alive(&o))
		return 0;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/runs/%s", c->s->root, name);
	_cleanup_free_ char *text = NULL;
	int r = lyr_read_file(path, &text, NULL);
	if (r < 0)
		return r == -ENOENT ? 0 : r; /* removed meanwhile by a serving process */
	bool left = false;
	for (char *line = text, *next; *line; line = next) {
		char *nl = strchr(line, '\n');
		if (!nl)
			break; /* cut short by a crash */
		*nl = '\0';
		next = nl + 1;
		if (strncmp(line, "ref ", 4) == 0) {
			const char *id = line + 4;
			bool exists = false;
			r = txn_run(c->s, ref_exists_txn, &(ref_exists){id, &exists});
			if (r < 0)
				return r;
			if (!exists)
				continue; /* committed or released */
			bool fixed = c->repair && lyr_ref_release(c->s, id) >= 0;
			say(c, fixed, "run %s: temporary ref %s was left", name, id);
			left |= !fixed;
		} else if (strncmp(line, "dir ", 4) == 0 && line[4] == '/') {
			const char *dir = line + 4;
			struct stat st;
			if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			bool fixed = c->repair && clear_dir(dir) == 0;
			say(c, fixed, "run %s: directory '%s' was left", name, dir);
			left |= !fixed;
		}
	}
	/* a record that names nothing left goes silently: the serving processes did the work */
	if (c->repair && !left)
		unlink(path);
	return 0;
}

/* A ref whose mount record names a dead process. */
typedef struct dead_mount {
	char id[LYR_ID_MAX];
	char *mountpoint;
	pid_t pid;
} dead_mount;

typedef struct dead_list {
	dead_mount *v;
	size_t n;
} dead_list;

static void dead_list_clear(dead_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].mountpoint);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int dead_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	dead_list *l = ctx;
	ref_rec rec;
	if (klen >= LYR_ID_MAX || ref_rec_decode(val, vlen, &rec) < 0)
		return 0; /* lyr_store_fsck's to report */
	int r = 0;
	/* a kernel mount has no server to die: its record is live or stale, never a dead mount */
	if (rec.mount_owner.pid && rec.mount_owner.pid != MOUNT_KERNEL && rec.mountpoint &&
	    !owner_alive(&rec.mount_owner)) {
		dead_mount *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
		if (!nv) {
			r = -ENOMEM;
		} else {
			l->v = nv;
			dead_mount *d = &l->v[l->n];
			memcpy(d->id, key, klen);
			d->id[klen] = '\0';
			d->pid = rec.mount_owner.pid;
			d->mountpoint = strdup(rec.mountpoint);
			r = d->mountpoint ? 0 : -ENOMEM;
			l->n += r == 0;
		}
	}
	ref_rec_clear(&rec);
	return r;
}

static int dead_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	dead_list_clear(ctx);
	return rec_each(s->refs, txn, dead_one, ctx);
}

/* Mounts of refs whose server is dead: the kernel answers ENOTCONN to what it must ask the
 * server (statfs always asks; stat may be answered from cached attributes). */
static int check_dead_mounts(check *c)
{
	dead_list l = {0};
	int r = txn_run(c->s, dead_txn, &l);
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		struct statfs st;
		if (statfs(l.v[i].mountpoint, &st) == 0 || errno != ENOTCONN)
			continue;
		bool fixed =
		    c->repair && umount2(l.v[i].mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) == 0;
		say(c, fixed, "ref %s: mount at '%s' has no server (pid %d)", l.v[i].id,
		    l.v[i].mountpoint, (int)l.v[i].pid);
	}
	dead_list_clear(&l);
	return r;
}

int lyr_store_fsck_runs(lyr_store *s, bool repair,
			void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx)
{
	check c = {s, repair, fn, ctx, 0};
	int r = 0;
	_cleanup_close_ int fd = openat(s->rootfd, "runs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		r = -errno;
	else
		fd = -1;
	/* names first: repairs remove entries */
	char **names = NULL;
	size_t n = 0;
	for (struct dirent *e; d && r == 0 && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char **nv = realloc(names, (n + 1) * sizeof *nv);
		if (!nv || !(nv[n] = strdup(e->d_name))) {
			names = nv ? nv : names;
			r = -ENOMEM;
			break;
		}
		names = nv;
		n++;
	}
	if (d)
		closedir(d);
	/* dead mounts first: unmounted, a run's directory can be cleared */
	if (r >= 0)
		r = check_dead_mounts(&c);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = check_run(&c, names[i]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (r < 0) {
		db_seterr("fsck '%s': runs: %s", s->root, strerror(-r));
		return r;
	}
	return c.left;
}
