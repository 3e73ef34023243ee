/* The run of `layerfs exec`: every view the op names is mounted (through kernel overlayfs where
 * the process may, in a mount namespace of the run's own, else through the FUSE overlay;
 * cache mounts always through FUSE), the command runs in the sandbox over them, then
 * everything is unmounted, the outputs committed (root first, then mounts in order) and every
 * ref the run made released.
 *
 * Views (one FUSE mount each, below a private temporary directory):
 *   root      a layer: a new ref on it, mounted read-write, committed after the run;
 *             a ref: mounted read-write and used in place (not committed);
 *   bind      readonly: the read-only view of the source (no ref); output or writable: a new
 *             ref on the source layer (or scratch), committed when `output`, else released;
 *             a writable bind of a ref uses the ref in place;
 *   cache     the store's cache-mount ref for (id, source), mounted inside the ref's directory
 *             and shared there by concurrent shared runs (the last one out unmounts it);
 *   tmpfs     made by the sandbox itself.
 * A ref's mount is recorded in the store as `layerfs mount` does it: a ref others may know is
 * claimed under our pid first, then handed to the serving process; a ref this run made is
 * recorded once, under the serving process.
 *
 * Cleanup is unconditional: SIGINT, SIGTERM and SIGHUP only set a flag while views are being
 * set up or torn down (they also end a wait for a locked cache mount; the sandbox forwards
 * them to the command while it runs), and every step after a failure or a signal goes
 * straight to unmounting and releasing. */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "commands.h"
#include "exec.h"
#include "layerfs/fs.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

static const int caught[3] = {SIGINT, SIGTERM, SIGHUP};

/* Installs on_signal for the caught signals; with RESTART interrupted system calls resume
 * (what every step but a wait for a locked cache wants).  OLD (may be NULL) gets the previous
 * handlers. */
static void catch_signals(bool restart, struct sigaction old[3])
{
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = restart ? SA_RESTART : 0};
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(caught[i], &sa, old ? &old[i] : NULL);
}

typedef enum { VIEW_NONE = 0, VIEW_RO, VIEW_NEW_REF, VIEW_REF, VIEW_CACHE } view_kind;

/* What the serving process of a view does when the run dies under it (fs.h's owner watch):
 * filled before the mount, used in the serving process's copy of our memory. */
typedef struct orphan {
	const char *root;   /* the store, opened afresh there */
	const char *mp;	    /* the mountpoint, removed after the unmount (not for a cache) */
	const char *dir;    /* the run's directory, removed when it is the last view */
	const char *record; /* the run's record, removed with DIR */
	char ref[LYR_ID_MAX];
	bool claimed; /* the mount record is ours: clear it */
	bool created; /* the run made REF: release it */
	bool cache;   /* another run may share the mount: it stays while one does */
	lyr_store *s;
	lyr_cache_hold *hold;
} orphan;

/* One view of the run. */
typedef struct view {
	view_kind kind;
	char ref[LYR_ID_MAX]; /* VIEW_NEW_REF, VIEW_REF, VIEW_CACHE */
	bool created;	      /* the run made REF: commit or release it */
	bool claimed;	      /* the mount record is ours or our server's */
	char *mp;	      /* where it is mounted (heap) */
	pid_t pid;	      /* serving process; 0: not mounted by us */
	bool kernel;	      /* mounted by kernel overlayfs (in the run's mount namespace) */
	bool in_ns;	      /* mounted in the run's mount namespace (else in the host's) */
	lyr_cache_hold *hold; /* VIEW_CACHE */
	char *host;	      /* what the sandbox binds: MP or a directory below it (heap) */
	orphan own;	      /* the serving process's cleanup if the run dies */
} view;

typedef struct run {
	lyr_cli *cli;
	lyr_store *s;
	lyr_exec_op *op;
	lyr_obj_kind root_kind;
	lyr_obj_kind *src_kinds; /* per mount (LYR_OBJ_NONE: no source) */
	char *tmp;		 /* private directory holding the mountpoints */
	lyr_run *rec;		 /* the store's record of TMP and of the refs made */
	view root;
	view *views; /* per mount */
	char desc[256];
	lyr_fs_backend want; /* --backend */
	int host_ns;	     /* the mount namespace we came from, once in our own; else -1 */
	exec_result *res;
} run;

static void cmdline(const lyr_exec_op *op, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = 0;
	for (size_t i = 0; i < op->n_args && off + 1 < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "", op->args[i]);
}

static int resolve(run *R)
{
	lyr_exec_op *op = R->op;
	char id[LYR_ID_MAX];
	if (cli_resolve(R->cli, op->root, LYR_OBJ_NONE, &R->root_kind, id) < 0)
		return -ENOENT;
	char *full = strdup(id);
	if (!full)
		return -ENOMEM;
	free(op->root);
	op->root = full;
	for (size_t i = 0; i < op->n_mounts; i++) {
		lyr_exec_mount *m = &op->mounts[i];
		if (!m->source)
			continue;
		if (cli_resolve(R->cli, m->source, LYR_OBJ_NONE, &R->src_kinds[i], id) < 0)
			return -ENOENT;
		if (R->src_kinds[i] == LYR_OBJ_REF && (m->type == LYR_MOUNT_CACHE || m->output)) {
			cli_fail("exec: mount '%s': source '%s' is a ref; %s need a layer",
				 m->target, m->source,
				 m->type == LYR_MOUNT_CACHE ? "cache mounts" : "outputs");
			return -EINVAL;
		}
		if ((full = strdup(id)) == NULL)
			return -ENOMEM;
		free(m->source);
		m->source = full;
	}
	return 0;
}

/* In the serving process of a cache mount whose run died (asked again while it says no):
 * true when no run uses the cache any more; then the mount lock and the exclusive exec lock
 * are kept until the unmount is done, so no run mounts or uses the cache meanwhile. */
static bool owner_gone(void *ctx)
{
	orphan *o = ctx;
	if (!o->cache)
		return true;
	if (lyr_store_open(o->root, &o->s) < 0 ||
	    lyr_cache_hold_adopt(o->s, o->ref, &o->hold) < 0 ||
	    lyr_cache_hold_mount_lock(o->s, o->hold) < 0)
		return true; /* cannot tell: a view must not outlive its runs */
	if (lyr_cache_hold_last(o->hold) != 0)
		return true;
	/* A run still uses it: it unmounts it when done, or, if it dies too, we do.  Nothing is
	 * held meanwhile, the store included (a process that ends with it open makes the next
	 * one to open it run recovery). */
	lyr_cache_release(o->s, o->hold);
	o->hold = NULL;
	lyr_store_free(o->s);
	o->s = NULL;
	return false;
}

/* In the serving process of a view whose run died, after the unmount: what the run would
 * have done for this view at its end. */
static void orphaned(void *ctx)
{
	orphan *o = ctx;
	if (o->s || lyr_store_open(o->root, &o->s) >= 0) {
		if (o->claimed || o->created)
			lyr_ref_clear_mount(o->s, o->ref);
		if (o->created)
			lyr_ref_release(o->s, o->ref);
		lyr_cache_release(o->s, o->hold);
		lyr_store_free(o->s);
	}
	/* the last view out removes the directory and with it the record */
	if (!o->cache && rmdir(o->mp) == 0 && rmdir(o->dir) == 0)
		unlink(o->record);
}

/* Kernel views are mounted in a mount namespace of the run's own, so that they end with the
 * run however it ends, with nothing for anyone to clean up.  Cache mounts, shared with other
 * runs, are mounted before (setup_caches) in the host's namespace, and unmounted there
 * (teardown goes back).  Mounts of the host propagate in, ours never out. */
static int private_ns(run *R)
{
	if (R->host_ns >= 0)
		return 0;
	int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (unshare(CLONE_NEWNS) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
		int r = -errno;
		setns(fd, CLONE_NEWNS);
		close(fd);
		return r;
	}
	R->host_ns = fd;
	return 0;
}

/* Back to the host's mount namespace (ours, with whatever is left in it, ends). */
static void leave_ns(run *R)
{
	if (R->host_ns < 0)
		return;
	_cleanup_close_ int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (setns(R->host_ns, CLONE_NEWNS) < 0)
		cli_fail("exec: back to the host's mount namespace: %s", strerror(errno));
	if (cwd >= 0 && fchdir(cwd) < 0)
		cli_fail("exec: back to the working directory: %s", strerror(errno));
	close(R->host_ns);
	R->host_ns = -1;
}

/* Mounts CFG at V->mp through kernel overlayfs when B says so; 1 when it did, 0 when the view
 * is FUSE's after all (B's why then says why), or -errno after saying why. */
static int mount_kernel(run *R, view *v, const lyr_fs_config *cfg, cli_backend *b,
			const char *what, const char *id)
{
	if (b->kind != LYR_FS_KERNEL)
		return 0;
	lyr_fs_error err = {{0}};
	int r = private_ns(R);
	if (r < 0)
		snprintf(err.msg, sizeof err.msg, "a mount namespace of its own: %s",
			 strerror(-r));
	else
		r = lyr_fs_kernel_mount(cfg, b->mode, b->empty, v->mp, &err, NULL);
	if (r == 0) {
		v->kernel = true;
		return 1;
	}
	if (R->want == LYR_FS_KERNEL) {
		cli_fail("exec: mounting %s '%s': %s", what, id, err.msg);
		return r;
	}
	b->kind = LYR_FS_FUSE;
	snprintf(b->why, sizeof b->why, "%s", err.msg);
	return 0;
}

/* Mounts the view of KIND/ID (a ref read-write unless READ_ONLY) at V->mp. */
static int mount_view(run *R, view *v, lyr_obj_kind kind, const char *id, bool read_only,
		      const char *what)
{
	_cleanup_(cli_view_clear) cli_view cv = {0};
	int r = cli_view_get(R->cli, kind, id, &cv);
	if (r < 0) {
		cli_fail("exec: %s '%s': %s", what, id, cli_strerror(r));
		return r;
	}
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	/* a ref mounted read-only: its upper is just the topmost lower */
	_cleanup_free_ const char **lowers = calloc(cv.nlowers + 2, sizeof *lowers);
	if (!lowers)
		return -ENOMEM;
	size_t n = 0;
	if (read_only && cv.upper)
		lowers[n++] = cv.upper;
	for (size_t i = 0; i < cv.nlowers; i++)
		lowers[n++] = cv.lowers[i];
	cfg.lowers = lowers;
	cfg.nlowers = n;
	if (!read_only) {
		cfg.upper = cv.upper;
		cfg.work = cv.work;
		cfg.upper_native = true;
	}
	/* The command may run as another user (--user), and a shared cache mount may serve a later
	 * run's user: root lets them in (the mountpoints sit in a 0700 directory or in the store).
	 * Without root the sandbox's user namespace maps the caller, whom FUSE lets in anyway. */
	cfg.allow_other = geteuid() == 0;
	/* nodev too (the default): a layer's set-id programs and devices stay inert on the host */
	cfg.nosuid = true;
	char fsname[80];
	snprintf(fsname, sizeof fsname, "layerfs:%.12s", kind == LYR_OBJ_LAYER ? id + 7 : id);
	cfg.fsname = fsname;

	/* cache mounts are shared with other runs in the host's namespace: the daemon's */
	cli_backend b = {.kind = LYR_FS_FUSE};
	if (v->kind != VIEW_CACHE && (r = cli_backend_choose(R->cli, R->want, &cfg, &cv, &b)) < 0)
		return r;
	bool claim = kind == LYR_OBJ_REF && !read_only;
	/* the view dies with this process, however it ends */
	v->own = (orphan){.root = lyr_store_root(R->s),
			  .mp = v->mp,
			  .dir = R->tmp,
			  .record = lyr_run_path(R->rec),
			  .claimed = claim,
			  .created = v->created,
			  .cache = v->kind == VIEW_CACHE};
	snprintf(v->own.ref, sizeof v->own.ref, "%s", id);
	cfg.owner = getpid();
	cfg.owner_gone = owner_gone;
	cfg.orphaned = orphaned;
	cfg.owner_ctx = &v->own;
	/* a ref this run just made is known to no one else: recording the server is enough */
	if (claim && !v->created) {
		r = lyr_ref_set_mount(R->s, id, v->mp, getpid());
		if (r == -EBUSY) {
			cli_fail("exec: %s '%s': ref is mounted elsewhere or being committed", what,
				 id);
			return r;
		}
		if (r < 0) {
			cli_fail("exec: %s '%s': %s", what, id, cli_strerror(r));
			return r;
		}
		v->claimed = true;
	}
	r = mount_kernel(R, v, &cfg, &b, what, id);
	if (v == &R->root) {
		R->res->backend = b.kind;
		snprintf(R->res->fallback, sizeof R->res->fallback, "%s", b.why);
	}
	if (r < 0)
		return r;
	if (r == 1) {
		/* no serving process: the run holds the record while the view lives */
		v->in_ns = true;
		v->claimed = claim;
		if (claim && v->created && (r = lyr_ref_set_mount(R->s, id, v->mp, getpid())) < 0) {
			cli_fail("exec: %s '%s': recording the mount: %s", what, id,
				 cli_strerror(r));
			return r;
		}
		return 0;
	}
	if (getenv("LAYERFS_DEBUG") && b.why[0])
		fprintf(stderr, "layerfs: exec: %s through FUSE: %s\n", what, b.why);
	lyr_fs_error err = {{0}};
	pid_t pid = 0;
	r = lyr_fs_mount(&cfg, v->mp, &err, &pid);
	if (r < 0) {
		cli_fail("exec: mounting %s '%s': %s", what, id,
			 err.msg[0] ? err.msg : cli_strerror(r));
		return r;
	}
	v->pid = pid;
	v->in_ns = R->host_ns >= 0;
	v->claimed = claim;
	if (claim && (r = lyr_ref_set_mount(R->s, id, v->mp, pid)) < 0) {
		cli_fail("exec: %s '%s': recording the mount: %s", what, id, cli_strerror(r));
		return r;
	}
	return 0;
}

static int unmount_view(run *R, view *v)
{
	int r = 0;
	bool ours = v->kernel; /* a kernel view's record is the run's own: clear it */
	if (v->kernel) {
		if (umount2(v->mp, UMOUNT_NOFOLLOW) < 0) {
			r = -errno;
			cli_fail("exec: unmounting '%s': %s", v->mp, strerror(errno));
			umount2(v->mp, MNT_DETACH);
		}
		v->kernel = false;
	}
	if (v->pid > 0) {
		lyr_fs_error err = {{0}};
		r = lyr_fs_umount(v->mp, v->pid, &err);
		if (r < 0) {
			cli_fail("exec: unmounting '%s': %s", v->mp,
				 err.msg[0] ? err.msg : cli_strerror(r));
			/* lazily, so the ref can be released and nothing stays visible */
			umount2(v->mp, MNT_DETACH);
		}
		v->pid = 0;
	}
	/* the server has exited, so the record is stale already; clearing it matters only for
	 * refs that outlive the run (commit and release ignore stale records) */
	if (v->claimed && (!v->created || ours))
		lyr_ref_clear_mount(R->s, v->ref);
	v->claimed = false;
	return r;
}

static int make_mp(run *R, const char *name, char **ret)
{
	if (asprintf(ret, "%s/%s", R->tmp, name) < 0) {
		*ret = NULL;
		return -ENOMEM;
	}
	if (mkdir(*ret, 0755) < 0)
		return -errno;
	return 0;
}

/* The host directory for SELECTOR inside the view mounted at MP, resolved inside it (a symlink
 * on the way cannot lead out of the view). */
static int sub_path(const char *mp, const char *selector, char **ret)
{
	if (!selector || strcmp(selector, "/") == 0)
		return (*ret = strdup(mp)) ? 0 : -ENOMEM;
	_cleanup_close_ int dfd = open(mp, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	struct open_how how = {.flags = O_PATH | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	_cleanup_close_ int fd = (int)syscall(SYS_openat2, dfd, selector + 1, &how, sizeof how);
	if (fd < 0)
		return -errno;
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n < 0)
		return -errno;
	path[n] = 0;
	return (*ret = strdup(path)) ? 0 : -ENOMEM;
}

/* Records REF, just made, as the run's (fsck releases it if the run dies unnoticed). */
static int record_ref(run *R, const char *ref)
{
	int r = lyr_run_add_ref(R->rec, ref);
	if (r < 0)
		cli_fail("exec: recording ref %s of the run: %s", ref, cli_strerror(r));
	return r;
}

static int setup_root(run *R)
{
	view *v = &R->root;
	int r = make_mp(R, "root", &v->mp);
	if (r < 0)
		return r;
	if (R->root_kind == LYR_OBJ_LAYER) {
		r = lyr_ref_new(R->s, R->op->root, R->desc, v->ref);
		if (r < 0) {
			cli_fail("exec: root '%s': new ref: %s", R->op->root, cli_strerror(r));
			return r;
		}
		v->kind = VIEW_NEW_REF;
		v->created = true;
		if ((r = record_ref(R, v->ref)) < 0)
			return r;
	} else {
		snprintf(v->ref, sizeof v->ref, "%s", R->op->root);
		v->kind = VIEW_REF;
	}
	return mount_view(R, v, LYR_OBJ_REF, v->ref, false, "root");
}

static int setup_caches(run *R)
{
	lyr_exec_op *op = R->op;
	size_t n = 0;
	for (size_t i = 0; i < op->n_mounts; i++)
		n += op->mounts[i].type == LYR_MOUNT_CACHE;
	if (n == 0)
		return 0;
	_cleanup_free_ lyr_cache_req *reqs = calloc(n, sizeof *reqs);
	_cleanup_free_ char(*descs)[256] = calloc(n, sizeof *descs);
	_cleanup_free_ lyr_cache_hold **holds = calloc(n, sizeof *holds);
	if (!reqs || !descs || !holds)
		return -ENOMEM;
	char cmd[200];
	cmdline(op, cmd, sizeof cmd);
	size_t k = 0;
	for (size_t i = 0; i < op->n_mounts; i++) {
		const lyr_exec_mount *m = &op->mounts[i];
		if (m->type != LYR_MOUNT_CACHE)
			continue;
		snprintf(descs[k], sizeof descs[k], "cached mount %s from exec %s", m->target, cmd);
		reqs[k] = (lyr_cache_req){
		    .id = m->cache_id ? m->cache_id : m->target,
		    .source = m->source,
		    .sharing = m->sharing == LYR_SHARING_PRIVATE  ? LYR_CACHE_PRIVATE
			       : m->sharing == LYR_SHARING_LOCKED ? LYR_CACHE_LOCKED
								  : LYR_CACHE_SHARED,
		    .desc = descs[k],
		};
		k++;
	}
	/* waiting for a locked cache is the one wait a signal must end */
	catch_signals(false, NULL);
	int r = interrupted ? -EINTR : lyr_cache_acquire(R->s, reqs, n, holds);
	catch_signals(true, NULL);
	if (r == -EINTR && interrupted)
		return r;
	if (r < 0) {
		const char *why = lyr_store_last_error();
		cli_fail("exec: cache mounts: %s", why && *why ? why : cli_strerror(r));
		return r;
	}
	k = 0;
	for (size_t i = 0; i < op->n_mounts; i++)
		if (op->mounts[i].type == LYR_MOUNT_CACHE) {
			R->views[i].hold = holds[k++];
			R->views[i].kind = VIEW_CACHE;
		}
	return 0;
}

/* True when MP is a live mount (its device differs from its parent's). */
static bool is_mounted(const char *mp)
{
	struct stat a, b;
	_cleanup_free_ char *parent = NULL;
	if (asprintf(&parent, "%s/..", mp) < 0)
		return false;
	if (stat(mp, &a) < 0)
		return errno == ENOTCONN; /* a dead server's mount is still a mount */
	return stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* Mounts a cache hold's ref unless a concurrent run has it mounted already. */
static int mount_cache(run *R, size_t i)
{
	view *v = &R->views[i];
	for (size_t j = 0; j < i; j++)
		if (R->views[j].hold == v->hold) { /* the same cache twice in one run */
			v->host = strdup(R->views[j].host);
			return v->host ? 0 : -ENOMEM;
		}
	snprintf(v->ref, sizeof v->ref, "%s", lyr_cache_hold_ref(v->hold));
	int r = lyr_cache_hold_mount_lock(R->s, v->hold);
	if (r < 0) {
		cli_fail("exec: cache mount '%s': %s", R->op->mounts[i].target, cli_strerror(r));
		return r;
	}
	const char *mp = lyr_cache_hold_mountpoint(v->hold);
	struct stat st;
	if (is_mounted(mp) && stat(mp, &st) < 0)
		umount2(mp, MNT_DETACH); /* its server died (a run killed hard): mount it afresh */
	if (!is_mounted(mp)) {
		view tmp = {.mp = (char *)mp, .kind = VIEW_CACHE};
		snprintf(tmp.ref, sizeof tmp.ref, "%s", v->ref);
		r = mount_view(R, &tmp, LYR_OBJ_REF, v->ref, false, "cache mount");
		if (r < 0 && tmp.pid > 0)
			unmount_view(R, &tmp);
		else if (r < 0 && tmp.claimed)
			lyr_ref_clear_mount(R->s, v->ref);
	}
	lyr_cache_hold_mount_unlock(v->hold);
	if (r < 0)
		return r;
	v->host = strdup(mp);
	return v->host ? 0 : -ENOMEM;
}

static int setup_mount(run *R, size_t i)
{
	lyr_exec_mount *m = &R->op->mounts[i];
	view *v = &R->views[i];
	if (m->type == LYR_MOUNT_TMPFS)
		return 0;
	if (m->type == LYR_MOUNT_CACHE)
		return mount_cache(R, i);
	char name[32];
	snprintf(name, sizeof name, "m%zu", i);
	int r = make_mp(R, name, &v->mp);
	if (r < 0)
		return r;
	lyr_obj_kind kind = R->src_kinds[i];
	if (m->readonly && kind == LYR_OBJ_NONE) {
		/* read-only scratch: the empty mountpoint itself, bound read-only */
		v->kind = VIEW_RO;
	} else if (m->readonly) {
		v->kind = VIEW_RO;
		r = mount_view(R, v, kind, m->source, true, "mount source");
	} else if (kind == LYR_OBJ_REF) {
		v->kind = VIEW_REF;
		snprintf(v->ref, sizeof v->ref, "%s", m->source);
		r = mount_view(R, v, LYR_OBJ_REF, v->ref, false, "mount source");
	} else {
		char desc[300];
		snprintf(desc, sizeof desc, "%s %s of %s", m->output ? "output" : "scratch mount",
			 m->target, R->desc);
		r = lyr_ref_new(R->s, m->source, desc, v->ref);
		if (r < 0) {
			cli_fail("exec: mount '%s': new ref: %s", m->target, cli_strerror(r));
			return r;
		}
		v->kind = VIEW_NEW_REF;
		v->created = true;
		r = record_ref(R, v->ref);
		if (r >= 0)
			r = mount_view(R, v, LYR_OBJ_REF, v->ref, false, "mount");
	}
	if (r < 0)
		return r;
	r = sub_path(v->mp, m->selector, &v->host);
	if (r < 0)
		cli_fail("exec: mount '%s': selector '%s': %s", m->target, m->selector,
			 cli_strerror(r));
	return r;
}

/* Unmounts the run's own views (all but the shared caches) that were mounted in the run's
 * namespace (IN_NS) or in the host's, mounts last to first, then the root; returns the first
 * error (everything is tried). */
static int unmount_views(run *R, bool in_ns)
{
	int ret = 0, r;
	for (size_t i = R->op->n_mounts + 1; i-- > 0;) {
		view *v = i ? &R->views[i - 1] : &R->root;
		if (v->in_ns == in_ns && !(v->kind == VIEW_CACHE && v->hold) &&
		    (r = unmount_view(R, v)) < 0 && ret == 0)
			ret = r;
	}
	return ret;
}

/* Unmounts everything this run mounted; returns the first error (everything is tried). */
static int teardown(run *R)
{
	/* Each view where it was mounted: an unmount in the run's namespace reaches only its
	 * copy of a FUSE view mounted before the run moved there (a root the kernel cannot show,
	 * say), whose server would then serve the host's mount on, and never exit.  So the views
	 * of the run's namespace first, there; then, back in the host's, the others and the
	 * shared caches. */
	int ret = unmount_views(R, true), r;
	leave_ns(R);
	if ((r = unmount_views(R, false)) < 0 && ret == 0)
		ret = r;
	for (size_t i = R->op->n_mounts; i-- > 0;) {
		view *v = &R->views[i];
		if (v->kind == VIEW_CACHE && v->hold) {
			bool first = true;
			for (size_t j = 0; j < i; j++)
				first = first && R->views[j].hold != v->hold;
			if (first && lyr_cache_hold_mount_lock(R->s, v->hold) == 0) {
				if (lyr_cache_hold_last(v->hold) == 1) {
					view tmp = {.mp =
							(char *)lyr_cache_hold_mountpoint(v->hold)};
					snprintf(tmp.ref, sizeof tmp.ref, "%s",
						 lyr_cache_hold_ref(v->hold));
					lyr_ref_info info = {0};
					if (lyr_ref_get(R->s, tmp.ref, &info) == 0 &&
					    info.mountpoint)
						tmp.pid = info.mount_pid, tmp.claimed = true;
					lyr_ref_info_clear(&info);
					if (!tmp.pid && is_mounted(tmp.mp))
						umount2(tmp.mp, MNT_DETACH);
					if ((r = unmount_view(R, &tmp)) < 0 && ret == 0)
						ret = r;
				}
				lyr_cache_hold_mount_unlock(v->hold);
			}
		}
	}
	return ret;
}

static int add_output(exec_result *res, const char *target, const char *layer)
{
	exec_output *n = realloc(res->outputs, (res->n_outputs + 1) * sizeof *n);
	if (!n)
		return -ENOMEM;
	res->outputs = n;
	snprintf(n[res->n_outputs].target, sizeof n->target, "%s", target);
	snprintf(n[res->n_outputs].layer, sizeof n->layer, "%s", layer);
	res->n_outputs++;
	return 0;
}

static int commit_view(run *R, view *v, const char *target, exec_result *res)
{
	char layer[LYR_ID_MAX];
	int r = cli_commit_ref(R->cli, v->ref, NULL, NULL, layer);
	if (r < 0) {
		const char *why = lyr_store_last_error();
		cli_fail("exec: committing %s: %s", target, why && *why ? why : cli_strerror(r));
		return r;
	}
	v->created = false; /* consumed */
	return add_output(res, target, layer);
}

static int commit_outputs(run *R, exec_result *res)
{
	int r = 0;
	if (R->root.kind == VIEW_NEW_REF)
		r = commit_view(R, &R->root, "/", res);
	for (size_t i = 0; r >= 0 && i < R->op->n_mounts; i++) {
		const lyr_exec_mount *m = &R->op->mounts[i];
		if (!m->output)
			continue;
		if (m->readonly)
			r = add_output(res, m->target, m->source);
		else if (R->views[i].kind == VIEW_NEW_REF)
			r = commit_view(R, &R->views[i], m->target, res);
	}
	return r;
}

static void release_all(run *R)
{
	view *all[1 + R->op->n_mounts];
	all[0] = &R->root;
	for (size_t i = 0; i < R->op->n_mounts; i++)
		all[i + 1] = &R->views[i];
	for (size_t i = 0; i <= R->op->n_mounts; i++) {
		view *v = all[i];
		if (v->created) {
			int r = lyr_ref_release(R->s, v->ref);
			if (r < 0)
				cli_fail("exec: releasing ref %s: %s", v->ref, cli_strerror(r));
			v->created = false;
		}
		if (v->hold) {
			lyr_cache_release(R->s, v->hold);
			v->hold = NULL;
		}
		if (v->mp && v->kind != VIEW_CACHE)
			rmdir(v->mp);
		free(v->mp);
		free(v->host);
		v->mp = v->host = NULL;
	}
	if (R->tmp)
		rmdir(R->tmp);
	free(R->tmp);
	R->tmp = NULL;
}

static int run_sandbox(run *R, int *ret_status)
{
	lyr_exec_op *op = R->op;
	lyr_sandbox_mount sm[op->n_mounts ? op->n_mounts : 1];
	lyr_sandbox sb;
	lyr_exec_sandbox_from_op(op, R->root.mp, sm, &sb);
	sb.caught = &interrupted; /* a signal since the last look at it goes to the command */
	for (size_t i = 0; i < op->n_mounts; i++)
		sm[i].source = R->views[i].host;
	lyr_exec_error err = {{0}};
	int r = lyr_exec_sandbox_run(&sb, ret_status, &err);
	if (r < 0)
		cli_fail("exec: %s", err.msg[0] ? err.msg : cli_strerror(r));
	return r;
}

static int answer_cached(run *R, exec_result *res)
{
	lyr_action a = {0};
	int r = lyr_action_get(R->s, res->key, &a);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		cli_fail("exec: action cache '%s': %s", res->key, cli_strerror(r));
		return r;
	}
	/* A result whose layers no longer match their IDs is not an answer. */
	for (size_t i = 0; r >= 0 && i < a.n_outputs; i++) {
		r = lyr_layer_verify_failed(R->s, a.outputs[i].layer);
		if (r > 0) {
			cli_fail("exec: cached result %s: %s", res->key, lyr_store_last_error());
			r = -EUCLEAN;
		}
	}
	for (size_t i = 0; r >= 0 && i < a.n_outputs; i++)
		r = add_output(res, a.outputs[i].target, a.outputs[i].layer);
	res->status = a.exit_code;
	res->cached = true;
	lyr_action_clear(&a);
	return r < 0 ? r : 1;
}

static int store_action(run *R, exec_result *res)
{
	lyr_action a = {
	    .exit_code = res->status, .created = time(NULL), .n_outputs = res->n_outputs};
	_cleanup_free_ lyr_action_output *o = calloc(res->n_outputs + 1, sizeof *o);
	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < res->n_outputs; i++) {
		o[i].target = res->outputs[i].target;
		memcpy(o[i].layer, res->outputs[i].layer, LYR_ID_MAX);
	}
	a.outputs = o;
	int r = lyr_action_put(R->s, res->key, &a);
	if (r < 0)
		cli_fail("exec: storing the result under '%s': %s", res->key, cli_strerror(r));
	return r;
}

void exec_result_clear(exec_result *res)
{
	free(res->outputs);
	memset(res, 0, sizeof *res);
}

int exec_run(lyr_cli *cli, lyr_exec_op *op, lyr_fs_backend want, exec_result *res)
{
	memset(res, 0, sizeof *res);
	run R = {.cli = cli, .op = op, .want = want, .host_ns = -1, .res = res};
	R.s = cli_store_create(cli);
	if (!R.s)
		return -EIO;
	R.src_kinds = calloc(op->n_mounts + 1, sizeof *R.src_kinds);
	R.views = calloc(op->n_mounts + 1, sizeof *R.views);
	if (!R.src_kinds || !R.views) {
		free(R.src_kinds);
		free(R.views);
		return -ENOMEM;
	}
	char cmd[200];
	cmdline(op, cmd, sizeof cmd);
	snprintf(R.desc, sizeof R.desc, "exec %s", cmd);

	/* from here on a signal only marks the run as interrupted; we clean up and leave */
	struct sigaction old[3];
	interrupted = 0;
	catch_signals(true, old);

	int r = resolve(&R);
	if (r >= 0) {
		lyr_obj_kind kinds[op->n_mounts + 1];
		size_t nk = 0;
		kinds[nk++] = R.root_kind;
		/* inputs are the root, then distinct sources in mount order */
		for (size_t i = 0; i < op->n_mounts; i++) {
			int in = lyr_exec_mount_input(op, i);
			if (in > 0 && (size_t)in == nk)
				kinds[nk++] = R.src_kinds[i];
		}
		r = exec_cache_key(cli, op, kinds, res->key);
		res->has_key = r == 1;
		r = r < 0 ? r : 0;
	}
	if (r >= 0 && op->cache && res->has_key)
		r = answer_cached(&R, res);
	/* a local miss asks the registries; a record one gives is stored, then answered */
	if (r == 0 && op->n_cache_from && res->has_key && exec_remote_fetch(R.s, op, res->key))
		r = answer_cached(&R, res);
	if (r != 0)
		goto out; /* an error, or answered */

	bool ran = false;
	const char *tmpdir = getenv("TMPDIR");
	if (asprintf(&R.tmp, "%s/layerfs-exec.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp") < 0)
		R.tmp = NULL;
	if (!R.tmp || !mkdtemp(R.tmp)) {
		r = R.tmp ? -errno : -ENOMEM;
		free(R.tmp);
		R.tmp = NULL;
		cli_fail("exec: temporary directory: %s", cli_strerror(r));
		goto out;
	}
	r = lyr_run_new(R.s, R.tmp, &R.rec);
	if (r < 0)
		cli_fail("exec: %s", lyr_store_last_error());
	if (r >= 0)
		r = setup_caches(&R);
	/* caches first: shared with other runs, they are mounted in the host's namespace, before
	 * a kernel view moves the run into its own */
	for (size_t i = 0; r >= 0 && !interrupted && i < op->n_mounts; i++)
		if (op->mounts[i].type == LYR_MOUNT_CACHE)
			r = setup_mount(&R, i);
	if (r >= 0 && !interrupted)
		r = setup_root(&R);
	for (size_t i = 0; r >= 0 && !interrupted && i < op->n_mounts; i++)
		if (op->mounts[i].type != LYR_MOUNT_CACHE)
			r = setup_mount(&R, i);
	if (r >= 0 && !interrupted) {
		r = run_sandbox(&R, &res->status);
		ran = r >= 0;
	}
	int t = teardown(&R);
	if (r >= 0 && t < 0)
		r = t;
	if (interrupted && !ran && (r >= 0 || r == -EINTR)) {
		/* reported as if the command had been killed by it (docker run does so too) */
		cli_fail("exec: interrupted by signal %d before the command ran", (int)interrupted);
		res->status = 128 + interrupted;
		r = 0;
	}
	if (r >= 0 && ran && (res->status == 0 || op->commit_on_failure))
		r = commit_outputs(&R, res);
	if (r >= 0 && ran && res->status == 0 && res->has_key)
		r = store_action(&R, res);
	release_all(&R);
	lyr_run_end(R.rec);
	/* a run that failed is neither stored nor published */
	if (r >= 0 && ran && res->status == 0)
		exec_remote_publish(R.s, op, res);
out:
	if (r > 0) /* answered from a cache: published as a run would be */
		exec_remote_publish(R.s, op, res);
	for (int i = 0; i < 3; i++)
		sigaction(caught[i], &old[i], NULL);
	free(R.src_kinds);
	free(R.views);
	return r < 0 ? r : 0;
}
