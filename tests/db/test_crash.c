/* Crash safety: a child runs one operation with $LAYERFS_FAULT set and dies by SIGKILL at
 * the named point; then the store opens, fsck reports exactly the expected finding, repair
 * fixes it, a second fsck finds nothing, and the store shows exactly the state before or
 * after the operation.  The after-state comes from a twin store built the same way (fixed
 * ref IDs and timestamps make every layer ID equal) where the operation ran to the end. */
#include <fcntl.h>
#include <sys/stat.h>

#include "../../db/testing.h"
#include "dbtest.h"

#define BASE_REF "1111111111111111111111111111111111111111111111111111111111111111"
#define WORK_REF "2222222222222222222222222222222222222222222222222222222222222222"
#define SIDE_REF "3333333333333333333333333333333333333333333333333333333333333333"

static void fix_times(const char *dir, const char *rel)
{
	char *p = rel ? tu_path(dir, rel) : strdup(dir);
	struct timespec ts[2] = {{1700000000, 0}, {1700000000, 0}};
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0, "%s", p);
	free(p);
}

static void fixed_ref(lyr_store *s, const char *id, const char *parent, const char *rel,
		      const char *data)
{
	cr_assert_eq(lyr_store_debug_ref_new(s, id, parent), 0);
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(s, id, &upper, &work), 0);
	tu_write(upper, rel, data);
	fix_times(upper, rel);
	fix_times(upper, NULL);
	free(upper), free(work);
}

typedef struct world {
	tstore t;
	char base[LYR_ID_MAX], side[LYR_ID_MAX];
	char *src;
} world;

/* base layer (tagged), a side layer on it, a ref WORK_REF on it holding f, a source tree. */
static void build(world *w)
{
	ts_setup(&w->t);
	fixed_ref(w->t.s, BASE_REF, NULL, "etc", "b");
	cr_assert_eq(lyr_ref_commit(w->t.s, BASE_REF, "base", NULL, w->base), 0);
	fixed_ref(w->t.s, SIDE_REF, w->base, "side", "s");
	cr_assert_eq(lyr_ref_commit(w->t.s, SIDE_REF, NULL, NULL, w->side), 0);
	fixed_ref(w->t.s, WORK_REF, w->base, "f", "hello");
	w->src = tu_path(w->t.dir, "src");
	tu_write(w->src, "x/y", "data");
	fix_times(w->src, "x/y");
	fix_times(w->src, "x");
	fix_times(w->src, NULL);
}

static void unbuild(world *w)
{
	free(w->src);
	ts_teardown(&w->t);
}

enum op { OP_IMPORT, OP_COMMIT, OP_RM_LAYER, OP_RM_REF, OP_NEW };

typedef struct opctx {
	enum op op;
	world *w;
	char out[LYR_ID_MAX];
} opctx;

static void run_op(lyr_store *s, void *ctx)
{
	opctx *o = ctx;
	switch (o->op) {
	case OP_IMPORT:
		lyr_store_import(s, o->w->src, NULL, "imp", NULL, NULL, o->out);
		break;
	case OP_COMMIT:
		lyr_ref_commit(s, WORK_REF, "done", NULL, o->out);
		break;
	case OP_RM_LAYER:
		lyr_store_rm(s, o->w->side);
		break;
	case OP_RM_REF:
		lyr_store_rm(s, WORK_REF);
		break;
	case OP_NEW:
		lyr_ref_new(s, o->w->base, NULL, o->out);
		break;
	}
}

/* The finding templates below are literals of this file, passed through crash_case. */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"

/* FINDING has one %s: filled with the name that only the crashed run knows (a temporary
 * directory) or with the ID the operation produces in the twin. */
static void crash_case(const char *point, enum op op, bool forward, const char *finding,
		       const char *what)
{
	world twin, w;
	build(&twin);
	char *twin_before = ts_state(&twin.t);
	opctx o = {op, &twin, ""};
	run_op(twin.t.s, &o);
	char *twin_after = ts_state(&twin.t);
	cr_assert_str_neq(twin_after, twin_before, "the operation changed nothing");

	build(&w);
	char *before = ts_state(&w.t);
	cr_assert_str_eq(before, twin_before, "twins differ");
	opctx co = {op, &w, ""};
	ts_crash(w.t.root, point, run_op, &co);
	ts_reopen(&w.t); /* the store opens (recovery runs: the child died holding it) */

	char name[300] = "";
	if (strcmp(what, "tmp") == 0) {
		char *ls = ts_ls(w.t.root, "tmp");
		snprintf(name, sizeof name, "%s", ls);
		free(ls);
	} else if (strcmp(what, "side") == 0) {
		snprintf(name, sizeof name, "%s", w.side);
	} else if (strcmp(what, "layer") == 0) {
		snprintf(name, sizeof name, "%s", o.out);
	} else if (strcmp(what, "new-ref") == 0) {
		char *ls = ts_ls(w.t.root, "refs");
		/* the one directory that is not WORK_REF */
		char *p = strstr(ls, WORK_REF);
		cr_assert_not_null(p);
		memmove(p, p + 64, strlen(p + 64) + 1);
		char *s = ls;
		while (*s == ' ')
			s++;
		snprintf(name, sizeof name, "%.64s", s);
		free(ls);
	}
	char want[600], want_fixed[700];
	snprintf(want, sizeof want, finding, name, forward ? "to roll forward" : "to roll back");
	strcat(want, "\n");
	int left;
	char *found = ts_fsck(&w.t, false, &left);
	cr_assert_str_eq(found, want);
	cr_assert_eq(left, 1);
	free(found);

	snprintf(want, sizeof want, finding, name, forward ? "rolled forward" : "rolled back");
	snprintf(want_fixed, sizeof want_fixed, "fixed: %s\n", want);
	found = ts_fsck(&w.t, true, &left);
	cr_assert_str_eq(found, want_fixed);
	cr_assert_eq(left, 0);
	free(found);
	found = ts_fsck(&w.t, true, &left);
	cr_assert_str_eq(found, "");
	cr_assert_eq(left, 0);
	free(found);

	char *after = ts_state(&w.t);
	if (op == OP_NEW) /* the new ref's ID is random: its twin has another one */
		cr_assert_str_eq(after, before);
	else
		cr_assert_str_eq(after, forward ? twin_after : twin_before);
	free(after), free(before), free(twin_before), free(twin_after);
	unbuild(&w);
	unbuild(&twin);
}

Test(db_crash, import_killed_after_the_copy_leaves_a_temporary_directory_fsck_removes)
{
	crash_case("import-after-copy", OP_IMPORT, false, "temporary directory tmp/%s", "tmp");
}

Test(db_crash, import_killed_after_the_rename_is_rolled_back)
{
	crash_case("import-after-rename", OP_IMPORT, false, "layer %s: interrupted import (%s)",
		   "layer");
}

Test(db_crash, commit_killed_after_the_intent_is_rolled_back)
{
	crash_case("commit-after-intent", OP_COMMIT, false,
		   "ref " WORK_REF ": interrupted commit to layer %s (%s)", "layer");
}

Test(db_crash, commit_killed_after_the_rename_is_rolled_forward)
{
	crash_case("commit-after-rename", OP_COMMIT, true,
		   "ref " WORK_REF ": interrupted commit to layer %s (%s)", "layer");
}

Test(db_crash, commit_killed_after_the_transaction_leaves_the_ref_dir_fsck_removes)
{
	crash_case("commit-after-txn", OP_COMMIT, true,
		   "ref " WORK_REF "%s: interrupted commit (%s)", "none");
}

Test(db_crash, rm_of_a_layer_killed_after_the_transaction_is_rolled_forward)
{
	crash_case("rm-after-txn", OP_RM_LAYER, true, "layer %s: interrupted rm (%s)", "side");
}

Test(db_crash, rm_of_a_layer_killed_after_the_rename_leaves_a_temporary_dir)
{
	crash_case("rm-after-rename", OP_RM_LAYER, true, "temporary directory tmp/%s", "tmp");
}

Test(db_crash, rm_of_a_ref_killed_after_the_transaction_is_rolled_forward)
{
	crash_case("rm-after-txn", OP_RM_REF, true, "ref " WORK_REF "%s: interrupted rm (%s)",
		   "none");
}

Test(db_crash, new_ref_killed_after_the_rename_is_rolled_back)
{
	crash_case("new-after-rename", OP_NEW, false, "ref %s: interrupted new (%s)", "new-ref");
}

Test(db_crash, an_interrupted_commit_is_settled_when_the_ref_is_used_again)
{
	world w;
	build(&w);
	opctx co = {OP_COMMIT, &w, ""};
	ts_crash(w.t.root, "commit-after-rename", run_op, &co);
	char layer[LYR_ID_MAX];
	/* rolled forward by the commit itself: the ref is gone, its layer is there */
	cr_assert_eq(lyr_ref_commit(w.t.s, WORK_REF, NULL, NULL, layer), -ENOENT);
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	cr_assert_eq(lyr_store_resolve(w.t.s, "done", &kind, id), 0);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(w.t.s, id, &info), 0);
	cr_assert_str_eq(info.parent, w.base);
	cr_assert_eq(info.size, 5);
	lyr_layer_info_clear(&info);
	int left;
	char *found = ts_fsck(&w.t, false, &left);
	cr_assert_str_eq(found, "");
	free(found);
	unbuild(&w);
}

Test(db_crash, fsck_clears_a_stale_mount_record)
{
	world w;
	build(&w);
	int release;
	pid_t pid = ts_live_child(&release);
	cr_assert_eq(lyr_ref_set_mount(w.t.s, WORK_REF, "/mnt/w", pid), 0);
	close(release);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	char want[300];
	snprintf(want, sizeof want, "ref " WORK_REF ": stale mount record (pid %d, '/mnt/w')\n",
		 (int)pid);
	int left;
	char *found = ts_fsck(&w.t, false, &left);
	cr_assert_str_eq(found, want);
	cr_assert_eq(left, 1);
	free(found);
	found = ts_fsck(&w.t, true, &left);
	char fixed[320];
	snprintf(fixed, sizeof fixed, "fixed: %s", want);
	cr_assert_str_eq(found, fixed);
	cr_assert_eq(left, 0);
	free(found);
	found = ts_fsck(&w.t, false, &left);
	cr_assert_str_eq(found, "");
	free(found);
	unbuild(&w);
}

Test(db_crash, fsck_reports_records_without_data_and_does_not_delete_them)
{
	world w;
	build(&w);
	char rel[200];
	snprintf(rel, sizeof rel, "layers/%s", w.side + 7);
	char *dir = tu_path(w.t.root, rel);
	tu_rmtree(dir);
	snprintf(rel, sizeof rel, "refs/%s/upper", WORK_REF);
	char *upper = tu_path(w.t.root, rel);
	tu_rmtree(upper);
	char want[600];
	snprintf(want, sizeof want,
		 "ref " WORK_REF " has no upper directory\nlayer %s has no diff directory\n",
		 w.side);
	int left;
	char *found = ts_fsck(&w.t, true, &left);
	cr_assert_str_eq(found, want);
	cr_assert_eq(left, 2);
	free(found);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(w.t.s, w.side, &info), 0);
	lyr_layer_info_clear(&info);
	free(dir), free(upper);
	unbuild(&w);
}
