#include "../../db/testing.h"
#include "dbtest.h"

static int resolve(tstore *t, const char *text, lyr_obj_kind *kind, char *id)
{
	*kind = LYR_OBJ_NONE;
	id[0] = '\0';
	return lyr_store_resolve(t->s, text, kind, id);
}

Test(db_resolve, a_layer_resolves_by_full_id_hex_prefix_and_tag)
{
	tstore t;
	ts_setup(&t);
	char layer[LYR_ID_MAX], id[LYR_ID_MAX], text[LYR_ID_MAX];
	lyr_obj_kind kind;
	ts_layer(t.s, NULL, "f", "x", "base", layer);
	const char *hex = layer + strlen("sha256:");
	const char *inputs[] = {layer, hex, "base", NULL};
	for (const char **in = inputs; *in; in++) {
		cr_assert_eq(resolve(&t, *in, &kind, id), 0, "%s", *in);
		cr_assert_eq(kind, LYR_OBJ_LAYER);
		cr_assert_str_eq(id, layer);
	}
	snprintf(text, sizeof text, "%.12s", hex);
	cr_assert_eq(resolve(&t, text, &kind, id), 0);
	cr_assert_str_eq(id, layer);
	snprintf(text, sizeof text, "sha256:%.12s", hex);
	cr_assert_eq(resolve(&t, text, &kind, id), 0);
	cr_assert_str_eq(id, layer);
	ts_teardown(&t);
}

Test(db_resolve, a_ref_resolves_by_full_id_and_prefix_but_not_with_sha256)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX], id[LYR_ID_MAX], text[LYR_ID_MAX];
	lyr_obj_kind kind;
	ts_new(t.s, NULL, ref);
	cr_assert_eq(resolve(&t, ref, &kind, id), 0);
	cr_assert_eq(kind, LYR_OBJ_REF);
	cr_assert_str_eq(id, ref);
	snprintf(text, sizeof text, "%.13s", ref);
	cr_assert_eq(resolve(&t, text, &kind, id), 0);
	cr_assert_eq(kind, LYR_OBJ_REF);
	cr_assert_str_eq(id, ref);
	snprintf(text, sizeof text, "sha256:%.13s", ref);
	cr_assert_eq(resolve(&t, text, &kind, id), -ENOENT);
	ts_teardown(&t);
}

Test(db_resolve, a_prefix_shared_by_two_objects_is_ambiguous)
{
	tstore t;
	ts_setup(&t);
	char id[LYR_ID_MAX];
	lyr_obj_kind kind;
	const char *a = "abcdef0123451111111111111111111111111111111111111111111111111111";
	const char *b = "abcdef0123452222222222222222222222222222222222222222222222222222";
	cr_assert_eq(lyr_store_debug_ref_new(t.s, a, NULL), 0);
	cr_assert_eq(lyr_store_debug_ref_new(t.s, b, NULL), 0);
	cr_assert_eq(resolve(&t, "abcdef012345", &kind, id), -EEXIST);
	cr_assert_str_eq(lyr_store_last_error(),
			 "'abcdef012345': ambiguous: more than one ID starts with it");
	cr_assert_eq(resolve(&t, "abcdef0123452", &kind, id), 0);
	cr_assert_str_eq(id, b);
	cr_assert_eq(resolve(&t, "ABCDEF0123451", &kind, id), 0);
	cr_assert_str_eq(id, a);
	ts_teardown(&t);
}

Test(db_resolve, a_layer_and_a_ref_sharing_a_prefix_are_ambiguous)
{
	tstore t;
	ts_setup(&t);
	char layer[LYR_ID_MAX], id[LYR_ID_MAX], ref[LYR_ID_MAX];
	lyr_obj_kind kind;
	ts_layer(t.s, NULL, "f", "x", NULL, layer);
	snprintf(ref, sizeof ref, "%.20s%s", layer + 7, "00000000000000000000000000000000000000000000");
	cr_assert_eq(lyr_store_debug_ref_new(t.s, ref, NULL), 0);
	char text[32];
	snprintf(text, sizeof text, "%.16s", layer + 7);
	cr_assert_eq(resolve(&t, text, &kind, id), -EEXIST);
	snprintf(text, sizeof text, "sha256:%.16s", layer + 7);
	cr_assert_eq(resolve(&t, text, &kind, id), 0, "sha256: names layers only");
	cr_assert_str_eq(id, layer);
	ts_teardown(&t);
}

Test(db_resolve, short_malformed_and_unknown_inputs_are_told_apart)
{
	tstore t;
	ts_setup(&t);
	char layer[LYR_ID_MAX], id[LYR_ID_MAX];
	lyr_obj_kind kind;
	ts_layer(t.s, NULL, "f", "x", NULL, layer);
	char text[32];
	snprintf(text, sizeof text, "%.11s", layer + 7);
	cr_assert_eq(resolve(&t, text, &kind, id), -EINVAL, "11 hex digits are too few");
	snprintf(text, sizeof text, "sha256:%.11s", layer + 7);
	cr_assert_eq(resolve(&t, text, &kind, id), -EINVAL);
	cr_assert_eq(resolve(&t, "sha256:xyz", &kind, id), -EINVAL);
	cr_assert_eq(resolve(&t, "", &kind, id), -EINVAL);
	cr_assert_eq(resolve(&t, "no/such", &kind, id), -EINVAL);
	cr_assert_eq(resolve(&t, "nosuchtag", &kind, id), -ENOENT);
	cr_assert_eq(resolve(&t, "000000000000", &kind, id), -ENOENT);
	cr_assert_eq(
		resolve(&t, "sha256:0000000000000000000000000000000000000000000000000000000000000000",
			&kind, id),
		-ENOENT);
	cr_assert_eq(kind, LYR_OBJ_NONE);
	cr_assert_str_eq(id, "");
	ts_teardown(&t);
}

Test(db_resolve, a_short_hex_tag_name_resolves_as_a_tag)
{
	tstore t;
	ts_setup(&t);
	char layer[LYR_ID_MAX], id[LYR_ID_MAX];
	lyr_obj_kind kind;
	ts_layer(t.s, NULL, "f", "x", "cafe", layer);
	cr_assert_eq(resolve(&t, "cafe", &kind, id), 0);
	cr_assert_str_eq(id, layer);
	ts_teardown(&t);
}
