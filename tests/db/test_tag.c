#include "dbtest.h"

Test(db_tag, names_follow_the_documented_rules)
{
	const char *good[] = {"v1",   "base", "a.b_c:d-e",   "A",	     "x-",
			      "cafe", "CAFE", "abcdef01234", "ABCDEF01234", "20240101",
			      "E244A1E87B89x", "sha256", NULL};
	const char *bad[] = {"",	     ".hidden",	     "-flag",	     "a/b",
			     "a b",	     "a\tb",	     "ä",	     "sha256:abc",
			     "abcdef012345", "E244A1E87B89", "AbCdEf012345", "a\n",
			     "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", NULL};
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

Test(db_tag, a_refused_name_comes_with_the_rule_it_breaks)
{
	static const char *const cases[][2] = {
	    {"a/b", "use 1-128 of A-Z a-z 0-9 . _ : -, not starting with '.' or '-'"},
	    {"sha256:E244", "it starts with 'sha256:', as a layer ID does"},
	    {"E244A1E87B89", "12 or more hex digits (in either case) read as an ID prefix"},
	    {"e244a1e87b89", "12 or more hex digits (in either case) read as an ID prefix"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		const char *why = NULL;
		cr_assert_eq(lyr_tag_check(cases[i][0], &why), -EINVAL, "'%s'", cases[i][0]);
		cr_assert_str_eq(why, cases[i][1], "'%s'", cases[i][0]);
	}
	const char *why = "untouched";
	cr_assert_eq(lyr_tag_check("E244A1E87B8", &why), 0);
	cr_assert_str_eq(why, "untouched");
}

Test(db_tag, an_id_like_name_can_still_be_untagged)
{
	tstore t;
	ts_setup(&t);
	/* A tag made before the rule would be unreachable otherwise: removal checks only the
	 * characters, so it gets as far as the lookup. */
	cr_assert_eq(lyr_tag_remove(t.s, "E244A1E87B89"), -ENOENT);
	cr_assert_eq(lyr_tag_remove(t.s, "a/b"), -EINVAL);
	ts_teardown(&t);
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
