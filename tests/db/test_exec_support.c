/* The store's exec support: the action cache (entries naming removed layers are never
 * returned; prune drops them) and cache-mount refs (reused by id and source; shared, private
 * and locked holds between processes; locks die with their process). */
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/file.h>

#include "dbtest.h"

#define KEY1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define KEY2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void put(lyr_store *s, const char *key, int code, int64_t created, const char *l1,
		const char *l2)
{
	lyr_action_output o[2] = {{.target = "/"}, {.target = "/out"}};
	snprintf(o[0].layer, sizeof o[0].layer, "%s", l1);
	if (l2)
		snprintf(o[1].layer, sizeof o[1].layer, "%s", l2);
	lyr_action a = {
	    .exit_code = code, .created = created, .outputs = o, .n_outputs = l2 ? 2 : 1};
	int r = lyr_action_put(s, key, &a);
	cr_assert_eq(r, 0, "put: %s", strerror(-r));
}

Test(db_exec_support, an_action_comes_back_as_it_was_stored)
{
	tstore t;
	ts_setup(&t);
	char a[LYR_ID_MAX], b[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "1", NULL, a);
	ts_layer(t.s, a, "g", "2", NULL, b);
	put(t.s, KEY1, 3, 1700000000, a, b);
	lyr_action got;
	cr_assert_eq(lyr_action_get(t.s, KEY1, &got), 0);
	cr_assert_eq(got.exit_code, 3);
	cr_assert_eq(got.created, 1700000000);
	cr_assert_eq(got.n_outputs, 2);
	cr_assert_str_eq(got.outputs[0].target, "/");
	cr_assert_str_eq(got.outputs[0].layer, a);
	cr_assert_str_eq(got.outputs[1].target, "/out");
	cr_assert_str_eq(got.outputs[1].layer, b);
	lyr_action_clear(&got);
	cr_assert_eq(lyr_action_get(t.s, KEY2, &got), -ENOENT);
	cr_assert_eq(lyr_action_get(t.s, "nope", &got), -EINVAL);
	ts_teardown(&t);
}

Test(db_exec_support, an_action_naming_a_removed_layer_is_not_returned)
{
	tstore t;
	ts_setup(&t);
	char a[LYR_ID_MAX], b[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "1", NULL, a);
	ts_layer(t.s, a, "g", "2", NULL, b);
	put(t.s, KEY1, 0, time(NULL), a, b);
	cr_assert_eq(lyr_store_rm(t.s, b), 0);
	lyr_action got;
	cr_assert_eq(lyr_action_get(t.s, KEY1, &got), -ENOENT);
	/* and putting one that names a missing layer is refused */
	lyr_action_output o = {.target = "/"};
	snprintf(o.layer, sizeof o.layer, "%s", b);
	lyr_action x = {.outputs = &o, .n_outputs = 1};
	cr_assert_eq(lyr_action_put(t.s, KEY2, &x), -ENOENT);
	ts_teardown(&t);
}

Test(db_exec_support, prune_drops_entries_of_removed_layers_and_with_all_old_ones)
{
	tstore t;
	ts_setup(&t);
	char a[LYR_ID_MAX], b[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "1", NULL, a);
	ts_layer(t.s, NULL, "g", "2", NULL, b);
	put(t.s, KEY1, 0, time(NULL) - 100, a, NULL);
	put(t.s, KEY2, 0, time(NULL) - 100, b, NULL);
	cr_assert_eq(lyr_store_rm(t.s, b), 0);
	size_t n = 9;
	cr_assert_eq(lyr_action_prune(t.s, false, 0, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(lyr_action_prune(t.s, true, 1000, &n), 0);
	cr_assert_eq(n, 0, "younger than the keep duration");
	lyr_action got;
	cr_assert_eq(lyr_action_get(t.s, KEY1, &got), 0);
	lyr_action_clear(&got);
	cr_assert_eq(lyr_action_prune(t.s, true, 10, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(lyr_action_get(t.s, KEY1, &got), -ENOENT);
	ts_teardown(&t);
}

static lyr_cache_hold *acquire(lyr_store *s, const char *id, const char *source,
			       lyr_cache_sharing sharing)
{
	lyr_cache_req req = {.id = id, .source = source, .sharing = sharing, .desc = "cache"};
	lyr_cache_hold *h = NULL;
	int r = lyr_cache_acquire(s, &req, 1, &h);
	cr_assert_eq(r, 0, "acquire %s: %s (%s)", id, strerror(-r), lyr_store_last_error());
	return h;
}

Test(db_exec_support, a_cache_ref_is_kept_by_id_and_source_and_reused)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "1", NULL, base);
	lyr_cache_hold *h = acquire(t.s, "pip", NULL, LYR_CACHE_SHARED);
	char ref[LYR_ID_MAX];
	snprintf(ref, sizeof ref, "%s", lyr_cache_hold_ref(h));
	char want[512];
	snprintf(want, sizeof want, "%s/refs/%s/mnt", t.root, ref);
	cr_assert_str_eq(lyr_cache_hold_mountpoint(h), want);
	ts_write(t.s, ref, "counter", "1");
	lyr_cache_release(t.s, h);

	h = acquire(t.s, "pip", NULL, LYR_CACHE_SHARED);
	cr_assert_str_eq(lyr_cache_hold_ref(h), ref);
	lyr_cache_release(t.s, h);
	h = acquire(t.s, "pip", base, LYR_CACHE_SHARED);
	cr_assert_str_neq(lyr_cache_hold_ref(h), ref, "another source is another cache");
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, lyr_cache_hold_ref(h), &info), 0);
	cr_assert_str_eq(info.parent, base);
	lyr_ref_info_clear(&info);
	lyr_cache_release(t.s, h);

	/* a pruned cache ref is replaced by a new one */
	cr_assert_eq(lyr_store_rm(t.s, ref), 0);
	h = acquire(t.s, "pip", NULL, LYR_CACHE_SHARED);
	cr_assert_str_neq(lyr_cache_hold_ref(h), ref);
	lyr_cache_release(t.s, h);
	ts_teardown(&t);
}

Test(db_exec_support, private_holds_get_distinct_refs_and_free_ones_are_reused)
{
	tstore t;
	ts_setup(&t);
	lyr_cache_hold *a = acquire(t.s, "c", NULL, LYR_CACHE_PRIVATE);
	lyr_cache_hold *b = acquire(t.s, "c", NULL, LYR_CACHE_PRIVATE);
	char ra[LYR_ID_MAX];
	snprintf(ra, sizeof ra, "%s", lyr_cache_hold_ref(a));
	cr_assert_str_neq(ra, lyr_cache_hold_ref(b));
	lyr_cache_release(t.s, a);
	lyr_cache_hold *c = acquire(t.s, "c", NULL, LYR_CACHE_PRIVATE);
	cr_assert_str_eq(lyr_cache_hold_ref(c), ra);
	lyr_cache_release(t.s, b);
	lyr_cache_release(t.s, c);
	ts_teardown(&t);
}

Test(db_exec_support, shared_holds_use_one_ref_and_only_the_last_is_last)
{
	tstore t;
	ts_setup(&t);
	lyr_cache_hold *a = acquire(t.s, "c", NULL, LYR_CACHE_SHARED);
	lyr_cache_hold *b = acquire(t.s, "c", NULL, LYR_CACHE_SHARED);
	cr_assert_str_eq(lyr_cache_hold_ref(a), lyr_cache_hold_ref(b));
	cr_assert_eq(lyr_cache_hold_mount_lock(t.s, a), 0);
	cr_assert_eq(lyr_cache_hold_last(a), 0);
	lyr_cache_hold_mount_unlock(a);
	lyr_cache_release(t.s, a);
	cr_assert_eq(lyr_cache_hold_mount_lock(t.s, b), 0);
	cr_assert_eq(lyr_cache_hold_last(b), 1);
	lyr_cache_hold_mount_unlock(b);
	lyr_cache_release(t.s, b);
	ts_teardown(&t);
}

Test(db_exec_support, one_run_naming_a_cache_twice_gets_one_hold)
{
	tstore t;
	ts_setup(&t);
	lyr_cache_req reqs[3] = {
	    {.id = "b", .sharing = LYR_CACHE_LOCKED, .desc = "x"},
	    {.id = "a", .sharing = LYR_CACHE_LOCKED, .desc = "x"},
	    {.id = "b", .sharing = LYR_CACHE_LOCKED, .desc = "x"},
	};
	lyr_cache_hold *h[3];
	cr_assert_eq(lyr_cache_acquire(t.s, reqs, 3, h), 0);
	cr_assert_eq(h[0], h[2]);
	cr_assert_neq(h[0], h[1]);
	cr_assert_eq(lyr_cache_hold_last(h[0]), 1, "no other process uses b");
	for (int i = 0; i < 3; i++)
		lyr_cache_release(t.s, h[i]);
	ts_teardown(&t);
}

/* A child that, once GO is readable, acquires ID locked and reports on FD when it holds it,
 * then exits.  Forked before the parent takes its own lock: a forked child would share the
 * parent's lock descriptor. */
static pid_t locker(const char *root, const char *id, int go, int fd)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave it waiting */
		char c;
		if (read(go, &c, 1) != 1)
			_exit(4);
		lyr_store *s;
		if (lyr_store_open(root, &s) < 0)
			_exit(1);
		lyr_cache_req req = {.id = id, .sharing = LYR_CACHE_LOCKED, .desc = "x"};
		lyr_cache_hold *h;
		if (lyr_cache_acquire(s, &req, 1, &h) < 0)
			_exit(2);
		if (write(fd, "x", 1) != 1)
			_exit(3);
		lyr_cache_release(s, h);
		lyr_store_free(s);
		_exit(0);
	}
	return pid;
}

Test(db_exec_support, a_locked_hold_waits_for_the_holder_and_its_death_frees_it)
{
	tstore t;
	ts_setup(&t);
	int p[2], go[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(pipe(go), 0);
	pid_t child = locker(t.root, "l", go[0], p[1]);
	lyr_cache_hold *h = acquire(t.s, "l", NULL, LYR_CACHE_LOCKED);
	cr_assert_eq(write(go[1], "g", 1), 1);
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 300), 0, "the second holder did not wait");
	lyr_cache_release(t.s, h);
	cr_assert_eq(poll(&pfd, 1, 10000), 1, "the second holder never got the lock");
	char c;
	cr_assert_eq(read(p[0], &c, 1), 1);
	cr_assert_eq(c, 'x');
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* a holder killed while holding frees the lock */
	pid_t holder = fork();
	cr_assert_geq(holder, 0);
	if (holder == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		lyr_store *s;
		if (lyr_store_open(t.root, &s) < 0)
			_exit(1);
		lyr_cache_req req = {.id = "l", .sharing = LYR_CACHE_LOCKED, .desc = "x"};
		lyr_cache_hold *hh;
		if (lyr_cache_acquire(s, &req, 1, &hh) < 0)
			_exit(2);
		if (write(p[1], "y", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	cr_assert_eq(read(p[0], &c, 1), 1);
	cr_assert_eq(c, 'y');
	cr_assert_eq(kill(holder, SIGKILL), 0);
	cr_assert_eq(waitpid(holder, &st, 0), holder);
	h = acquire(t.s, "l", NULL, LYR_CACHE_LOCKED);
	lyr_cache_release(t.s, h);
	ts_teardown(&t);
}

/* A child that, once GO is readable, acquires REQS locked (in that order as given) and writes
 * one byte to FD when it holds them all; it keeps them until killed. */
static pid_t holder_of(const char *root, const lyr_cache_req *reqs, size_t n, int go, int fd)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave it waiting */
		char c;
		if (read(go, &c, 1) != 1)
			_exit(4);
		lyr_store *s;
		if (lyr_store_open(root, &s) < 0)
			_exit(1);
		lyr_cache_hold *h[4];
		if (lyr_cache_acquire(s, reqs, n, h) < 0)
			_exit(2);
		if (write(fd, "h", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	return pid;
}

/* True once /proc/locks shows PID waiting for an exclusive flock. */
static bool waits_for_flock(pid_t pid)
{
	char waiter[48];
	snprintf(waiter, sizeof waiter, "-> FLOCK  ADVISORY  WRITE %d ", (int)pid);
	for (int i = 0; i < 1000; i++) {
		char *locks = NULL;
		cr_assert_eq(lyr_read_file("/proc/locks", &locks, NULL), 0);
		bool found = strstr(locks, waiter) != NULL;
		free(locks);
		if (found)
			return true;
		usleep(10000);
	}
	return false;
}

Test(db_exec_support, locks_are_taken_sorted_by_id_so_a_waiter_holds_nothing_after_its_wait)
{
	tstore t;
	ts_setup(&t);
	/* make both caches exist first, so the waits are on their locks */
	lyr_cache_hold *hx = acquire(t.s, "x", NULL, LYR_CACHE_LOCKED);
	lyr_cache_release(t.s, hx);
	lyr_cache_hold *hy = acquire(t.s, "y", NULL, LYR_CACHE_LOCKED);
	lyr_cache_release(t.s, hy);

	lyr_cache_req yx[2] = {{.id = "y", .sharing = LYR_CACHE_LOCKED, .desc = "d"},
			       {.id = "x", .sharing = LYR_CACHE_LOCKED, .desc = "d"}};
	lyr_cache_req y[1] = {{.id = "y", .sharing = LYR_CACHE_LOCKED, .desc = "d"}};
	int go2[2], go3[2], rep[2];
	cr_assert_eq(pipe(go2), 0);
	cr_assert_eq(pipe(go3), 0);
	cr_assert_eq(pipe(rep), 0);
	pid_t c2 = holder_of(t.root, yx, 2, go2[0], rep[1]);
	pid_t c3 = holder_of(t.root, y, 1, go3[0], rep[1]);
	hx = acquire(t.s, "x", NULL, LYR_CACHE_LOCKED);
	/* C2 asks for y then x: it must wait for x before taking y */
	cr_assert_eq(write(go2[1], "g", 1), 1);
	cr_assert(waits_for_flock(c2), "C2 never waited for x");
	cr_assert_eq(write(go3[1], "g", 1), 1);
	struct pollfd pfd = {.fd = rep[0], .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 10000), 1, "C3 could not take y: C2 held it while waiting");
	char c;
	cr_assert_eq(read(rep[0], &c, 1), 1);
	kill(c3, SIGKILL);
	lyr_cache_release(t.s, hx);
	cr_assert_eq(poll(&pfd, 1, 10000), 1, "C2 never got x and y");
	kill(c2, SIGKILL);
	waitpid(c2, NULL, 0);
	waitpid(c3, NULL, 0);
	ts_teardown(&t);
}
