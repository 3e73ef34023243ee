/* Many processes on one store at once, each opening and closing the store for every
 * operation as CLI invocations do: every operation must succeed and every record must be
 * there afterwards. */
#include <fcntl.h>
#include <time.h>

#include "dbtest.h"

#define PROCS 16
#define OPS 50

/* One worker: OPS times open, new ref, write one file, commit with a tag, close.  Returns
 * 0, or the step that failed (and says why on stderr). */
static int worker(const char *root, int p)
{
	for (int i = 0; i < OPS; i++) {
		lyr_store *s;
		char ref[LYR_ID_MAX], layer[LYR_ID_MAX], tag[32], rel[64], data[64];
		int r = lyr_store_open(root, &s);
		if (r < 0) {
			fprintf(stderr, "worker %d op %d: open: %s (%s)\n", p, i, strerror(-r),
				lyr_store_last_error());
			return 1;
		}
		snprintf(tag, sizeof tag, "p%d-%d", p, i);
		snprintf(rel, sizeof rel, "w%d/f%d", p, i);
		snprintf(data, sizeof data, "%d:%d", p, i);
		r = lyr_ref_new(s, NULL, tag, ref);
		if (r == 0) {
			char *upper, *work;
			r = lyr_ref_dirs(s, ref, &upper, &work);
			if (r == 0) {
				char *path = NULL;
				if (asprintf(&path, "%s/w%d", upper, p) < 0)
					return 9;
				mkdir(path, 0755);
				free(path);
				if (asprintf(&path, "%s/%s", upper, rel) < 0)
					return 9;
				int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
				if (fd < 0 ||
				    write(fd, data, strlen(data)) != (ssize_t)strlen(data))
					r = -EIO;
				if (fd >= 0)
					close(fd);
				free(path), free(upper), free(work);
			}
		}
		if (r == 0)
			r = lyr_ref_commit(s, ref, tag, NULL, layer);
		if (r < 0) {
			fprintf(stderr, "worker %d op %d: %s (%s)\n", p, i, strerror(-r),
				lyr_store_last_error());
			lyr_store_free(s);
			return 2;
		}
		lyr_store_free(s);
	}
	return 0;
}

static int count_refs(void *ctx, const lyr_ref_info *r)
{
	(void)r;
	(*(int *)ctx)++;
	return 0;
}

static int count_layer(void *ctx, const lyr_layer_info *l)
{
	(void)l;
	(*(int *)ctx)++;
	return 0;
}

Test(db_concurrent, sixteen_processes_creating_and_committing_at_once_all_succeed)
{
	tstore t;
	ts_setup(&t);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pids[PROCS];
	fflush(NULL);
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		cr_assert_geq(pids[p], 0);
		if (pids[p] == 0)
			_exit(worker(t.root, p));
	}
	int failed = 0;
	for (int p = 0; p < PROCS; p++) {
		int status;
		cr_assert_eq(waitpid(pids[p], &status, 0), pids[p]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("%d processes x %d operations: %.1f s", PROCS, OPS,
		    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	cr_assert_eq(failed, 0, "%d workers failed", failed);

	int layers = 0;
	cr_assert_eq(lyr_layer_list(t.s, count_layer, &layers), 0);
	cr_assert_eq(layers, PROCS * OPS);
	for (int p = 0; p < PROCS; p++) {
		for (int i = 0; i < OPS; i++) {
			char tag[32], rel[64], data[64], id[LYR_ID_MAX];
			lyr_obj_kind kind;
			snprintf(tag, sizeof tag, "p%d-%d", p, i);
			snprintf(rel, sizeof rel, "w%d/f%d", p, i);
			snprintf(data, sizeof data, "%d:%d", p, i);
			cr_assert_eq(lyr_store_resolve(t.s, tag, &kind, id), 0, "%s", tag);
			char **dirs;
			cr_assert_eq(lyr_layer_chain(t.s, id, &dirs), 0);
			char *got = tu_read(dirs[0], rel);
			cr_assert_str_eq(got, data, "%s", tag);
			free(got);
			lyr_strv_free(dirs);
		}
	}
	ts_assert_empty(t.root, "refs");
	ts_assert_empty(t.root, "tmp");
	int left;
	char *found = ts_fsck(&t, false, &left);
	cr_assert_str_eq(found, "");
	free(found);
	ts_teardown(&t);
}

/* Processes that die holding the store force recovery on the next open, which panics the
 * environment under every other process; their operations must still all succeed. */
Test(db_concurrent, operations_survive_recoveries_caused_by_killed_processes)
{
	tstore t;
	ts_setup(&t);
	/* The test process stays out of the store during the storm: Berkeley DB 5.3 never frees
	 * the handles of an environment that panicked under it (see db/env.c), which the leak
	 * checker would report; the workers go through that path and exit with _exit. */
	lyr_store_free(t.s);
	t.s = NULL;
	enum { WORKERS = 6, VICTIMS = 12 };
	pid_t pids[WORKERS];
	fflush(NULL);
	for (int p = 0; p < WORKERS; p++) {
		pids[p] = fork();
		cr_assert_geq(pids[p], 0);
		if (pids[p] == 0)
			_exit(worker(t.root, p));
	}
	static const char *const points[] = {"commit-after-intent", "commit-after-rename",
					     "commit-after-txn", "new-after-rename"};
	for (int v = 0; v < VICTIMS; v++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			setenv("LAYERFS_FAULT", points[v % 4], 1);
			lyr_store *s;
			char ref[LYR_ID_MAX], layer[LYR_ID_MAX];
			char *upper, *work, name[16];
			if (lyr_store_open(t.root, &s) < 0 ||
			    lyr_ref_new(s, NULL, "victim", ref) < 0 ||
			    lyr_ref_dirs(s, ref, &upper, &work) < 0)
				_exit(1);
			snprintf(name, sizeof name, "v%d", v);
			tu_write(upper, name, name); /* a diff of its own: no reuse */
			lyr_ref_commit(s, ref, NULL, NULL, layer);
			_exit(2);
		}
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "victim %d: %#x", v,
			  status);
	}
	int failed = 0;
	for (int p = 0; p < WORKERS; p++) {
		int status;
		cr_assert_eq(waitpid(pids[p], &status, 0), pids[p]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	cr_assert_eq(failed, 0, "%d workers failed", failed);
	cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
	int left;
	char *found = ts_fsck(&t, true, &left);
	cr_assert_eq(left, 0, "%s", found);
	free(found);
	found = ts_fsck(&t, false, &left);
	cr_assert_str_eq(found, "");
	free(found);
	for (int p = 0; p < WORKERS; p++) {
		for (int i = 0; i < OPS; i++) {
			char tag[32], id[LYR_ID_MAX];
			lyr_obj_kind kind;
			snprintf(tag, sizeof tag, "p%d-%d", p, i);
			cr_assert_eq(lyr_store_resolve(t.s, tag, &kind, id), 0, "%s", tag);
		}
	}
	ts_teardown(&t);
}

/* Processes killed at random moments, inside Berkeley DB calls too: afterwards the store
 * opens, every process still working finishes, and fsck can repair what the dead left. */
Test(db_concurrent, random_kills_never_leave_the_store_unusable)
{
	tstore t;
	ts_setup(&t);
	lyr_store_free(t.s); /* out of the store during the storm, as above */
	t.s = NULL;
	enum { HAMMERS = 4, ROUNDS = 40 };
	pid_t ham[HAMMERS];
	fflush(NULL);
	for (int h = 0; h < HAMMERS; h++) {
		ham[h] = fork();
		cr_assert_geq(ham[h], 0);
		if (ham[h] == 0) {
			alarm(120); /* a hang shows up as SIGALRM, not as a stuck suite */
			for (int i = 0; i < 1000000; i++)
				if (worker(t.root, 100 + h) != 0)
					_exit(1);
			_exit(0);
		}
	}
	unsigned seed = (unsigned)getpid();
	for (int k = 0; k < ROUNDS; k++) {
		struct timespec ts = {0, (long)(rand_r(&seed) % 40000) * 1000};
		nanosleep(&ts, NULL);
		int h = rand_r(&seed) % HAMMERS;
		kill(ham[h], SIGKILL);
		int status;
		cr_assert_eq(waitpid(ham[h], &status, 0), ham[h]);
		cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			  "hammer stopped on its own: %#x", status);
		ham[h] = fork();
		cr_assert_geq(ham[h], 0);
		if (ham[h] == 0) {
			alarm(120);
			for (int i = 0; i < 1000000; i++)
				if (worker(t.root, 100 + h) != 0)
					_exit(1);
			_exit(0);
		}
	}
	for (int h = 0; h < HAMMERS; h++) {
		kill(ham[h], SIGKILL);
		int status;
		cr_assert_eq(waitpid(ham[h], &status, 0), ham[h]);
		cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "hammer %d: %#x", h,
			  status);
	}
	/* a fresh process works on the store within bounded time */
	pid_t pid = fork();
	if (pid == 0) {
		alarm(60);
		_exit(worker(t.root, 1000));
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "after the kills: %#x", status);
	cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
	int left;
	char *found = ts_fsck(&t, true, &left);
	free(found);
	found = ts_fsck(&t, false, &left);
	cr_assert_str_eq(found, "");
	cr_assert_eq(left, 0);
	free(found);
	ts_teardown(&t);
}

Test(db_concurrent, processes_creating_one_store_at_once_all_succeed)
{
	char *dir = tu_mkdtemp();
	char *root = tu_path(dir, "new/store");
	enum { N = 8 };
	pid_t pids[N];
	fflush(NULL);
	for (int p = 0; p < N; p++) {
		pids[p] = fork();
		cr_assert_geq(pids[p], 0);
		if (pids[p] == 0) {
			lyr_store *s;
			char ref[LYR_ID_MAX];
			if (lyr_store_open(root, &s) < 0)
				_exit(1);
			int r = lyr_ref_new(s, NULL, NULL, ref);
			lyr_store_free(s);
			_exit(r < 0 ? 2 : 0);
		}
	}
	for (int p = 0; p < N; p++) {
		int status;
		cr_assert_eq(waitpid(pids[p], &status, 0), pids[p]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d: %#x", p,
			  status);
	}
	lyr_store *s;
	cr_assert_eq(lyr_store_open(root, &s), 0);
	int n = 0;
	cr_assert_eq(lyr_ref_list(s, count_refs, &n), 0);
	cr_assert_eq(n, N);
	lyr_store_free(s);
	tu_rmtree(dir);
	free(root), free(dir);
}

static ino_t region_ino(const char *root)
{
	_cleanup_free_ char *p = tu_path(root, "db/__db.001");
	struct stat st;
	cr_assert_eq(stat(p, &st), 0, "%s", p);
	return st.st_ino;
}

/* Whether db/regions.seal holds a seal (an open blanks it in place). */
static bool sealed(const char *root)
{
	_cleanup_free_ char *p = tu_path(root, "db/regions.seal");
	char buf[8] = "";
	int fd = open(p, O_RDONLY);
	bool yes = fd >= 0 && read(fd, buf, 7) == 7 && memcmp(buf, "seal64:", 7) == 0;
	if (fd >= 0)
		close(fd);
	return yes;
}

/* Regions are checked against their seal, and made again, only when no process has them
 * mapped: a process opening and closing the store while another holds it never removes
 * them (which would panic the holder), and the last close seals them so the next lone open
 * keeps them too. */
Test(db_concurrent, region_files_are_rebuilt_only_when_nobody_maps_them)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref); /* the environment is open and registered here */
	ino_t ino = region_ino(t.root);
	for (int i = 0; i < 3; i++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			lyr_store *s;
			char other[LYR_ID_MAX];
			int ok = lyr_store_open(t.root, &s) == 0 &&
				 lyr_ref_new(s, NULL, NULL, other) == 0;
			lyr_store_free(s);
			_exit(ok ? 0 : 1);
		}
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		cr_assert_eq(region_ino(t.root), ino, "a lone-looking open rebuilt mapped regions");
		cr_assert(!sealed(t.root), "sealed while mapped");
	}
	ts_new(t.s, NULL, ref); /* still works: no recovery panicked it */
	lyr_store_free(t.s);
	t.s = NULL;
	cr_assert(sealed(t.root), "the last close seals the regions");
	ts_reopen(&t);
	cr_assert_eq(region_ino(t.root), ino, "sound sealed regions are kept");
	cr_assert(!sealed(t.root), "an open takes the seal away");
	ts_teardown(&t);
}
