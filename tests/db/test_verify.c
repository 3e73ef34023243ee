/* lyr_store_verify and the mark of a failed layer through the store API: committing or
 * importing the same content again puts a failed layer back. */
#include <fcntl.h>
#include <sys/stat.h>

#include "dbtest.h"

/* D/F = "hello" in REF's upper, every time fixed, so two refs commit to one layer. */
static void fill(lyr_store *s, const char *ref)
{
	ts_write(s, ref, "d/f", "hello");
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(s, ref, &upper, &work), 0);
	const struct timespec t[2] = {{1500000000, 0}, {1500000000, 0}};
	const char *rels[] = {"d/f", "d", "."};
	for (size_t i = 0; i < 3; i++) {
		char *p = tu_path(upper, rels[i]);
		cr_assert_eq(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0, "%s", p);
		free(p);
	}
	free(upper), free(work);
}

/* Changes the first byte of layer ID's d/f, keeping its times. */
static void damage(tstore *t, const char *id)
{
	char rel[200];
	snprintf(rel, sizeof rel, "layers/%s/diff/d/f", id + 7);
	char *p = tu_path(t->root, rel);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	int fd = open(p, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "J", 1, 0), 1);
	const struct timespec times[2] = {st.st_atim, st.st_mtim};
	cr_assert_eq(futimens(fd, times), 0);
	close(fd);
	free(p);
}

Test(db_verify, committing_the_same_content_again_restores_a_failed_layer)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX], layer[LYR_ID_MAX], again[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	fill(t.s, ref);
	cr_assert_eq(lyr_ref_commit(t.s, ref, NULL, NULL, layer), 0, "%s", lyr_store_last_error());
	const char *ids[] = {layer};
	cr_assert_eq(lyr_store_verify(t.s, ids, 1, NULL, NULL), 0);
	damage(&t, layer);
	lyr_verify_stats st;
	cr_assert_eq(lyr_store_verify(t.s, ids, 1, NULL, &st), 2); /* the layer, and d/f */
	cr_assert_eq(st.layers, 1);
	cr_assert_eq(st.files, 1);
	cr_assert_eq(st.bytes, 5);
	cr_assert_eq(lyr_layer_verify_failed(t.s, layer), 1);

	ts_new(t.s, NULL, ref);
	fill(t.s, ref);
	cr_assert_eq(lyr_ref_commit(t.s, ref, NULL, NULL, again), 0, "%s", lyr_store_last_error());
	cr_assert_str_eq(again, layer);
	cr_assert_eq(lyr_layer_verify_failed(t.s, layer), 0);
	cr_assert_eq(lyr_store_verify(t.s, ids, 1, NULL, NULL), 0);
	cr_assert_eq(lyr_store_fsck(t.s, false, NULL, NULL), 0);
	char rel[200];
	snprintf(rel, sizeof rel, "layers/%s/diff/d/f", layer + 7);
	char *got = tu_read(t.root, rel);
	cr_assert_str_eq(got, "hello");
	free(got);
	char *ls = ts_ls(t.root, "refs");
	cr_assert_str_eq(ls, ""); /* the changed copy went with the ref */
	free(ls);
	ts_teardown(&t);
}

Test(db_verify, importing_the_same_tree_again_restores_a_failed_layer)
{
	tstore t;
	ts_setup(&t);
	char *src = tu_path(t.dir, "src");
	tu_write(src, "d/f", "hello");
	char layer[LYR_ID_MAX], again[LYR_ID_MAX];
	lyr_tree_error err = {0};
	cr_assert_eq(lyr_store_import(t.s, src, NULL, NULL, NULL, &err, layer), 0);
	damage(&t, layer);
	const char *ids[] = {layer};
	cr_assert_eq(lyr_store_verify(t.s, ids, 1, NULL, NULL), 2);
	cr_assert_eq(lyr_layer_verify_failed(t.s, layer), 1);
	cr_assert_eq(lyr_store_import(t.s, src, NULL, "fixed", NULL, &err, again), 0);
	cr_assert_str_eq(again, layer);
	cr_assert_eq(lyr_layer_verify_failed(t.s, layer), 0);
	cr_assert_eq(lyr_store_verify(t.s, ids, 1, NULL, NULL), 0);
	cr_assert_eq(lyr_store_fsck(t.s, false, NULL, NULL), 0);
	char *ls = ts_ls(t.root, "tmp");
	cr_assert_str_eq(ls, "");
	free(ls);
	free(src);
	ts_teardown(&t);
}

/* An unknown layer is an error naming it, not a finding. */
Test(db_verify, an_unknown_layer_is_enoent)
{
	tstore t;
	ts_setup(&t);
	const char *ids[] = {
	    "sha256:00000000000000000000000000000000000000000000000000000000000000aa"};
	cr_assert_eq(lyr_store_verify(t.s, ids, 1, NULL, NULL), -ENOENT);
	cr_assert_str_eq(
	    lyr_store_last_error(),
	    "layer 'sha256:00000000000000000000000000000000000000000000000000000000000000aa': no "
	    "such layer");
	ts_teardown(&t);
}
