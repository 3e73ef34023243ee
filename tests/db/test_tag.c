#include "dbtest.h"

Test(db_tag, names_follow_the_documented_rules)
{
	const char *good[] = {"v1", "base", "a.b_c:d-e", "A", "x-", "cafe", "abcdef01234", NULL};
	const char *bad[] = {"", ".hidden", "-flag", "a/b", "a b", "a\tb", "ä", "sha256:abc",
			     "abcdef012345", "a\n", NULL};
	for (const char **n = good; *n; n++)
		cr_assert_eq(lyr_tag_valid(*n), 0, "'%s'", *n);
	for (const char **n = bad; *n; n++)
		cr_assert_eq(lyr_tag_valid(*n), -EINVAL, "'%s'", *n);
	char long_name[130];
	memset(long_name, 'x', 128);
	long_name[128] = '\0';
	cr_assert_eq(lyr_tag_valid(long_name), 0);
	long_name[128] = 'x';
	long_name[129] = '\0';
	cr_assert_eq(lyr_tag_valid(long_name), -EINVAL);
}

Test(db_tag, setting_an_existing_tag_moves_it)
{
	tstore t;
	ts_setup(&t);
	char l1[LYR_ID_MAX], l2[LYR_ID_MAX], id[LYR_ID_MAX];
	lyr_obj_kind kind;
	ts_layer(t.s, NULL, "f", "1", "v", l1);
	ts_layer(t.s, NULL, "f", "2", NULL, l2);
	cr_assert_eq(lyr_tag_set(t.s, "v", l2), 0);
	cr_assert_eq(lyr_store_resolve(t.s, "v", &kind, id), 0);
	cr_assert_str_eq(id, l2);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, l1, &info), 0);
	cr_assert_null(info.tags[0]);
	lyr_layer_info_clear(&info);
	cr_assert_eq(lyr_layer_get(t.s, l2, &info), 0);
	cr_assert_str_eq(info.tags[0], "v");
	lyr_layer_info_clear(&info);
	ts_teardown(&t);
}

Test(db_tag, a_layer_lists_its_tags_in_name_order)
{
	tstore t;
	ts_setup(&t);
	char l[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "1", "zeta", l);
	cr_assert_eq(lyr_tag_set(t.s, "alpha", l), 0);
	cr_assert_eq(lyr_tag_set(t.s, "mid", l), 0);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, l, &info), 0);
	cr_assert_str_eq(info.tags[0], "alpha");
	cr_assert_str_eq(info.tags[1], "mid");
	cr_assert_str_eq(info.tags[2], "zeta");
	cr_assert_null(info.tags[3]);
	lyr_layer_info_clear(&info);
	ts_teardown(&t);
}

Test(db_tag, bad_names_and_missing_layers_or_tags_change_nothing)
{
	tstore t;
	ts_setup(&t);
	char l[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "1", "v", l);
	char *before = ts_state(&t);
	cr_assert_eq(lyr_tag_set(t.s, "a b", l), -EINVAL);
	cr_assert_eq(lyr_tag_set(t.s, "../x", l), -EINVAL);
	cr_assert_eq(
		lyr_tag_set(t.s, "w",
			    "sha256:0000000000000000000000000000000000000000000000000000000000000000"),
		-ENOENT);
	cr_assert_str_eq(lyr_store_last_error(),
			 "tag 'w': no such layer "
			 "'sha256:0000000000000000000000000000000000000000000000000000000000000000'");
	cr_assert_eq(lyr_tag_remove(t.s, "nope"), -ENOENT);
	cr_assert_str_eq(lyr_store_last_error(), "tag 'nope': no such tag");
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	cr_assert_eq(lyr_tag_remove(t.s, "v"), 0);
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	cr_assert_eq(lyr_store_resolve(t.s, "v", &kind, id), -ENOENT);
	free(before), free(after);
	ts_teardown(&t);
}
