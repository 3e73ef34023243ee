#include <fcntl.h>
#include <sys/stat.h>

#include "dbtest.h"

Test(db_ref, a_new_ref_on_scratch_has_an_empty_upper_and_work_dir)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(t.s, ref, &upper, &work), 0);
	char want[512];
	snprintf(want, sizeof want, "%s/refs/%s/upper", t.root, ref);
	cr_assert_str_eq(upper, want);
	snprintf(want, sizeof want, "%s/refs/%s/work", t.root, ref);
	cr_assert_str_eq(work, want);
	char *ls = ts_ls(t.root, "refs");
	cr_assert_str_eq(ls, ref);
	free(ls);
	snprintf(want, sizeof want, "refs/%s/upper", ref);
	ls = ts_ls(t.root, want);
	cr_assert_str_eq(ls, "");
	free(ls);
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_str_eq(info.parent, "");
	cr_assert_str_eq(info.desc, "test");
	cr_assert_null(info.mountpoint);
	cr_assert_leq(labs((long)(info.created - time(NULL))), 2);
	lyr_ref_info_clear(&info);
	free(upper), free(work);
	ts_teardown(&t);
}

Test(db_ref, a_new_ref_on_a_missing_layer_fails_with_enoent_and_leaves_nothing)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX] = "";
	const char *missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	cr_assert_eq(lyr_ref_new(t.s, missing, NULL, ref), -ENOENT);
	cr_assert_str_eq(ref, "");
	char *state = ts_state(&t);
	cr_assert_str_eq(state, "layers/: \nrefs/: \ntmp/: \n");
	free(state);
	ts_teardown(&t);
}

Test(db_ref, unknown_and_malformed_ref_ids_are_refused)
{
	tstore t;
	ts_setup(&t);
	char *u = NULL, *w = NULL;
	char unknown[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	cr_assert_eq(lyr_ref_dirs(t.s, unknown, &u, &w), -ENOENT);
	cr_assert_eq(lyr_ref_dirs(t.s, "../../etc", &u, &w), -EINVAL);
	cr_assert_null(u);
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, unknown, &info), -ENOENT);
	cr_assert_eq(lyr_ref_get(t.s, "abc", &info), -EINVAL);
	cr_assert_eq(lyr_ref_release(t.s, unknown), -ENOENT);
	cr_assert_eq(lyr_ref_set_mount(t.s, unknown, "/mnt", getpid()), -ENOENT);
	ts_teardown(&t);
}

Test(db_ref, usage_counts_the_bytes_and_entries_of_the_upper)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "a", "hello");
	ts_write(t.s, ref, "d/b", "abc");
	uint64_t bytes, entries;
	cr_assert_eq(lyr_ref_usage(t.s, ref, &bytes, &entries), 0);
	cr_assert_eq(bytes, 8);
	cr_assert_eq(entries, 3);
	ts_teardown(&t);
}

/* A process that stays alive until killed: the holder of a mount record. */
static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

Test(db_ref, a_live_mount_record_is_shown_and_blocks_a_second_mount)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	pid_t server = spawn_sleeper();
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/a", server), 0);
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_str_eq(info.mountpoint, "/mnt/a");
	cr_assert_eq(info.mount_pid, server);
	lyr_ref_info_clear(&info);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/b", getpid()), -EBUSY);
	char want[256];
	snprintf(want, sizeof want, "ref '%s': already mounted at '/mnt/a'", ref);
	cr_assert_str_eq(lyr_store_last_error(), want);
	cr_assert_eq(lyr_ref_clear_mount(t.s, ref), 0);
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_null(info.mountpoint);
	cr_assert_eq(info.mount_pid, 0);
	lyr_ref_info_clear(&info);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/b", getpid()), 0);
	reap(server);
	ts_teardown(&t);
}

Test(db_ref, a_claim_of_the_calling_process_is_handed_to_its_server)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/a", getpid()), 0);
	pid_t server = spawn_sleeper();
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/a", server), 0);
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_eq(info.mount_pid, server);
	lyr_ref_info_clear(&info);
	/* now held by the server: the caller cannot take it back */
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/c", getpid()), -EBUSY);
	reap(server);
	/* a dead server's record is stale */
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_null(info.mountpoint);
	lyr_ref_info_clear(&info);
	ts_teardown(&t);
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

Test(db_ref, a_mount_record_of_a_dead_process_counts_as_not_mounted_and_is_cleared)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	/* A zombie still has /proc/<pid>: record the child while it is alive, then reap it. */
	int release;
	pid_t pid = ts_live_child(&release);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/gone", pid), 0);
	close(release);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_null(info.mountpoint);
	lyr_ref_info_clear(&info);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/new", getpid()), 0);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/x", dead_pid()), -ESRCH);
	ts_teardown(&t);
}

Test(db_ref, release_drops_the_record_and_the_directories_unless_mounted)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "f", "x");
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/a", getpid()), 0);
	cr_assert_eq(lyr_ref_release(t.s, ref), -EBUSY);
	char want[256];
	snprintf(want, sizeof want, "rm '%s': ref is mounted at '/mnt/a'", ref);
	cr_assert_str_eq(lyr_store_last_error(), want);
	cr_assert_eq(lyr_ref_clear_mount(t.s, ref), 0);
	cr_assert_eq(lyr_ref_release(t.s, ref), 0);
	char *state = ts_state(&t);
	cr_assert_str_eq(state, "layers/: \nrefs/: \ntmp/: \n");
	free(state);
	cr_assert_eq(lyr_ref_release(t.s, ref), -ENOENT);
	ts_teardown(&t);
}

static int count_ref(void *ctx, const lyr_ref_info *info)
{
	(void)info;
	(*(int *)ctx)++;
	return 0;
}

Test(db_ref, list_shows_every_ref_once)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	for (int i = 0; i < 5; i++)
		ts_new(t.s, NULL, ref);
	int n = 0;
	cr_assert_eq(lyr_ref_list(t.s, count_ref, &n), 0);
	cr_assert_eq(n, 5);
	ts_teardown(&t);
}
