#include "dbtest.h"

Test(db_remove, rm_refuses_a_layer_that_a_child_a_ref_or_a_tag_needs)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX], child[LYR_ID_MAX], ref[LYR_ID_MAX], tagged[LYR_ID_MAX];
	ts_layer(t.s, NULL, "a", "1", NULL, base);
	ts_layer(t.s, base, "b", "2", NULL, child);
	char *before = ts_state(&t);
	cr_assert_eq(lyr_store_rm(t.s, base), -EBUSY);
	char want[512];
	snprintf(want, sizeof want, "rm '%s': layer is needed by child layer %s", base, child);
	cr_assert_str_eq(lyr_store_last_error(), want);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after);

	ts_new(t.s, child, ref);
	cr_assert_eq(lyr_store_rm(t.s, child), -EBUSY);
	snprintf(want, sizeof want, "rm '%s': layer is needed by ref %s", child, ref);
	cr_assert_str_eq(lyr_store_last_error(), want);

	ts_layer(t.s, NULL, "c", "3", "keep", tagged);
	cr_assert_eq(lyr_store_rm(t.s, tagged), -EBUSY);
	snprintf(want, sizeof want, "rm '%s': layer is needed by tag keep", tagged);
	cr_assert_str_eq(lyr_store_last_error(), want);
	ts_teardown(&t);
}

Test(db_remove, rm_of_an_unneeded_layer_removes_its_record_and_directory)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX], child[LYR_ID_MAX];
	ts_layer(t.s, NULL, "a", "1", NULL, base);
	char *only_base = ts_state(&t);
	ts_layer(t.s, base, "b", "2", NULL, child);
	cr_assert_eq(lyr_store_rm(t.s, child), 0);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, only_base);
	cr_assert_eq(lyr_store_rm(t.s, child), -ENOENT);
	cr_assert_eq(lyr_store_rm(t.s, "abc"), -EINVAL);
	cr_assert_eq(lyr_store_rm(t.s, base), 0);
	free(after);
	after = ts_state(&t);
	cr_assert_str_eq(after, "layers/: \nrefs/: \ntmp/: \n");
	free(after), free(only_base);
	ts_teardown(&t);
}

typedef struct pruned {
	char lines[16][200];
	int n;
} pruned;

static void on_prune(void *ctx, lyr_obj_kind kind, const char *id, uint64_t size)
{
	pruned *p = ctx;
	snprintf(p->lines[p->n++], 200, "%s %s %llu", kind == LYR_OBJ_LAYER ? "layer" : "ref", id,
		 (unsigned long long)size);
}

Test(db_remove, prune_removes_unneeded_layers_repeatedly_and_keeps_tagged_chains)
{
	tstore t;
	ts_setup(&t);
	char a[LYR_ID_MAX], b[LYR_ID_MAX], c[LYR_ID_MAX], k1[LYR_ID_MAX], k2[LYR_ID_MAX];
	char ref[LYR_ID_MAX];
	ts_layer(t.s, NULL, "a", "1", NULL, a);
	ts_layer(t.s, a, "b", "22", NULL, b);
	ts_layer(t.s, b, "c", "333", NULL, c);
	ts_layer(t.s, NULL, "k", "k", NULL, k1);
	ts_layer(t.s, k1, "k2", "kk", "keep", k2);
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "r", "12345");

	pruned p = {0};
	cr_assert_eq(lyr_store_prune(t.s, false, 3600, on_prune, &p), 0);
	cr_assert_eq(p.n, 0, "keep-duration protects new layers");

	cr_assert_eq(lyr_store_prune(t.s, false, 0, on_prune, &p), 0);
	cr_assert_eq(p.n, 3);
	char want[200];
	snprintf(want, sizeof want, "layer %s 3", c);
	cr_assert_str_eq(p.lines[0], want);
	snprintf(want, sizeof want, "layer %s 2", b);
	cr_assert_str_eq(p.lines[1], want);
	snprintf(want, sizeof want, "layer %s 1", a);
	cr_assert_str_eq(p.lines[2], want);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, k1, &info), 0);
	lyr_layer_info_clear(&info);
	cr_assert_eq(lyr_layer_get(t.s, k2, &info), 0);
	lyr_layer_info_clear(&info);
	lyr_ref_info rinfo;
	cr_assert_eq(lyr_ref_get(t.s, ref, &rinfo), 0, "refs stay without all");
	lyr_ref_info_clear(&rinfo);

	p.n = 0;
	cr_assert_eq(lyr_store_prune(t.s, true, 0, on_prune, &p), 0);
	cr_assert_eq(p.n, 1);
	snprintf(want, sizeof want, "ref %s 5", ref);
	cr_assert_str_eq(p.lines[0], want);
	ts_assert_empty(t.root, "refs");
	ts_assert_empty(t.root, "tmp");
	ts_teardown(&t);
}

Test(db_remove, prune_all_keeps_a_mounted_ref_and_its_layers)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX], ref[LYR_ID_MAX];
	ts_layer(t.s, NULL, "a", "1", NULL, base);
	ts_new(t.s, base, ref);
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/m", getpid()), 0);
	char *before = ts_state(&t);
	pruned p = {0};
	cr_assert_eq(lyr_store_prune(t.s, true, 0, on_prune, &p), 0);
	cr_assert_eq(p.n, 0);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after);
	ts_teardown(&t);
}

typedef struct du {
	uint64_t layers, refs;
	int nl, nr;
} du;

static int du_layer(void *ctx, const lyr_layer_info *l)
{
	du *d = ctx;
	d->layers += l->size;
	d->nl++;
	return 0;
}

static int du_ref(void *ctx, const lyr_ref_info *r)
{
	du *d = ctx;
	d->refs += r->size;
	d->nr++;
	return 0;
}

Test(db_remove, du_reports_own_layer_sizes_and_current_upper_usage)
{
	tstore t;
	ts_setup(&t);
	char a[LYR_ID_MAX], b[LYR_ID_MAX], ref[LYR_ID_MAX];
	ts_layer(t.s, NULL, "a", "1234", NULL, a);
	ts_layer(t.s, a, "b", "123456", NULL, b);
	ts_new(t.s, b, ref);
	ts_write(t.s, ref, "x", "12");
	du d = {0};
	cr_assert_eq(lyr_store_du(t.s, du_layer, du_ref, &d), 0);
	cr_assert_eq(d.nl, 2);
	cr_assert_eq(d.layers, 10);
	cr_assert_eq(d.nr, 1);
	cr_assert_eq(d.refs, 2);
	ts_write(t.s, ref, "y", "345");
	d = (du){0};
	cr_assert_eq(lyr_store_du(t.s, NULL, du_ref, &d), 0);
	cr_assert_eq(d.nl, 0);
	cr_assert_eq(d.refs, 5);
	ts_teardown(&t);
}
