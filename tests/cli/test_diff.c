/* `layerfs diff`: A, C and D lines of a ref and of a layer against the parent, from whiteouts
 * (0/0 devices and OCI .wh. names), opaque directories and redirected (renamed) directories. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "testutil.h"

static tu_dirs dirs;

static void setup(void)
{
	tu_dirs_init(&dirs);
	tu_write(dirs.src, "a", "a\n");
	tu_write(dirs.src, "d/x", "x\n");
	tu_write(dirs.src, "d/y", "y\n");
	tu_write(dirs.src, "e/old", "old\n");
	tu_write(dirs.src, "e/older", "older\n");
	tu_write(dirs.src, "f/gone", "gone\n");
}

static void teardown(void)
{
	tu_dirs_fini(&dirs);
}

TestSuite(cli_diff, .init = setup, .fini = teardown);

Test(cli_diff, a_base_layer_is_all_additions)
{
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL));
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", "base", NULL));
	cr_assert_str_eq(diff, "A /a\nA /d\nA /d/x\nA /d/y\nA /e\nA /e/old\nA /e/older\nA /f\nA /f/gone\n");
}

Test(cli_diff, a_ref_shows_changes_whiteouts_and_opaque_directories)
{
	if (geteuid() != 0)
		cr_skip_test("needs root for trusted.overlay xattrs");
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL));
	_cleanup_free_ char *ref_out = tu_ok(tu_lf(dirs.store, "new", "base", NULL));
	_cleanup_free_ char *ref = strndup(ref_out, 64);
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);

	tu_write(upper, "a", "changed\n");
	tu_write(upper, "b", "new\n");
	_cleanup_free_ char *d = tu_path(upper, "d");
	cr_assert_eq(mkdir(d, 0755), 0);
	_cleanup_free_ char *wh = tu_path(upper, "d/x");
	cr_assert_eq(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0);
	_cleanup_free_ char *e = tu_path(upper, "e");
	cr_assert_eq(mkdir(e, 0755), 0);
	cr_assert_eq(setxattr(e, "trusted.overlay.opaque", "y", 1, 0), 0);
	tu_write(upper, "e/older", "kept name, new file\n");
	tu_write(upper, ".wh.f", "");

	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", ref, NULL));
	cr_assert_str_eq(diff, "C /a\nA /b\nC /d\nD /d/x\nC /e\nD /e/old\nC /e/older\nD /f\n");

	_cleanup_free_ char *json = tu_ok(tu_lf(dirs.store, "diff", "--json", ref, NULL));
	const char *prefix = "{\"changes\":[{\"kind\":\"C\",\"path\":\"/a\"},{\"kind\":\"A\",\"path\":\"/b\"},";
	cr_assert_eq(strncmp(json, prefix, strlen(prefix)), 0, "%s", json);

	/* Committing keeps the same diff against the same parent. */
	_cleanup_free_ char *layer_out =
	    tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "child", NULL));
	_cleanup_free_ char *after = tu_ok(tu_lf(dirs.store, "diff", "child", NULL));
	cr_assert_str_eq(after, diff);
}

Test(cli_diff, an_unchanged_ref_has_an_empty_diff)
{
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL));
	_cleanup_free_ char *ref_out = tu_ok(tu_lf(dirs.store, "new", "base", NULL));
	ref_out[64] = '\0';
	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", ref_out, NULL));
	cr_assert_str_eq(diff, "");
}

/* A directory renamed onto a removed one (a redirect to where its lower files are): the removed
 * directory's files are deleted, the ones the rename brings are added, and a whiteout of a name
 * only the old place had is no change at the new one. */
Test(cli_diff, a_renamed_directory_shows_what_it_brings_and_what_it_hides)
{
	if (geteuid() != 0)
		cr_skip_test("needs root for trusted.overlay xattrs");
	tu_write(dirs.src, "e/sub/deep", "deep\n");
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL));
	_cleanup_free_ char *ref_out = tu_ok(tu_lf(dirs.store, "new", "base", NULL));
	_cleanup_free_ char *ref = strndup(ref_out, 64);
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);

	/* mv e d (d removed first), then a file written into it and one of its files removed */
	_cleanup_free_ char *d = tu_path(upper, "d");
	cr_assert_eq(mkdir(d, 0755), 0);
	cr_assert_eq(setxattr(d, "trusted.overlay.redirect", "/e", 2, 0), 0);
	tu_write(upper, "d/new", "new\n");
	_cleanup_free_ char *wh = tu_path(upper, "d/older");
	cr_assert_eq(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0);
	_cleanup_free_ char *e = tu_path(upper, "e");
	cr_assert_eq(mknod(e, S_IFCHR | 0000, makedev(0, 0)), 0);

	_cleanup_free_ char *diff = tu_ok(tu_lf(dirs.store, "diff", ref, NULL));
	cr_assert_str_eq(diff, "C /d\nA /d/new\nA /d/old\nA /d/sub\nA /d/sub/deep\nD /d/x\nD /d/y\n"
			       "D /e\n");
}
