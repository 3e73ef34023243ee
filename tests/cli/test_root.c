/* Where a store may be: read-only commands never create one, writing commands create one only
 * in a missing or empty directory, and an empty --root is a usage error. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>

#include "layerfs/common.h"
#include "testutil.h"

static tu_dirs dirs;

static void setup(void)
{
	tu_dirs_init(&dirs);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs);
}

TestSuite(cli_root, .init = setup, .fini = teardown);

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* `ls -A DIR`: the names a command may have left there. */
static char *names(const char *dir)
{
	const char *argv[] = {"/bin/ls", "-A", dir, NULL};
	return tu_ok(tu_cmd(NULL, argv));
}

Test(cli_root, read_only_commands_on_a_missing_store_create_nothing)
{
	_cleanup_free_ char *deep = tu_path(dirs.tmp, "no/deep");
	_cleanup_free_ char *no = tu_path(dirs.tmp, "no");
	const char *const cmds[][3] = {{"ls", NULL},
				       {"du", NULL},
				       {"fsck", NULL},
				       {"prune", NULL},
				       {"inspect", "base", NULL},
				       {"fsck", "--repair", NULL}};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cmds); i++) {
		tu_run r = tu_lf(deep, cmds[i][0], cmds[i][1], NULL);
		cr_assert_eq(r.status, 1, "%s exited %d", cmds[i][0], r.status);
		_cleanup_free_ char *want = NULL;
		cr_assert(
		    asprintf(&want,
			     "layerfs: no store at '%s' (commands that write, such as import, "
			     "create one)\n",
			     deep) > 0);
		cr_assert_str_eq(r.err, want, "%s", cmds[i][0]);
		cr_assert_str_eq(r.out, "");
		tu_run_free(&r);
		cr_assert(!exists(no), "%s created %s", cmds[i][0], no);
	}
}

Test(cli_root, a_non_empty_directory_that_is_no_store_is_refused_and_left_alone)
{
	tu_write(dirs.tmp, "other/keep", "mine\n");
	tu_write(dirs.src, "f", "x\n");
	_cleanup_free_ char *other = tu_path(dirs.tmp, "other");

	tu_run r = tu_lf(other, "ls", NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "layerfs: store '%s': not a layerfs store (the directory is not empty "
			   "and has no db/ or layers/)\n",
			   other) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	r = tu_lf(other, "import", dirs.src, NULL);
	cr_assert_eq(r.status, 1);
	free(want);
	cr_assert(asprintf(&want,
			   "layerfs: store '%s': not a layerfs store (the directory is not empty "
			   "and has no db/ or layers/); refusing to create a store in it\n",
			   other) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	_cleanup_free_ char *after = names(other);
	cr_assert_str_eq(after, "keep\n");
	_cleanup_free_ char *keep = tu_read(other, "keep");
	cr_assert_str_eq(keep, "mine\n");
}

Test(cli_root, the_root_directory_of_the_host_is_not_a_store)
{
	tu_run r = tu_lf("/", "ls", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: store '/': not a layerfs store (the directory is not "
				"empty and has no db/ or layers/)\n");
	tu_run_free(&r);
	cr_assert(!exists("/db") && !exists("/layers") && !exists("/lock"));
}

Test(cli_root, import_and_new_create_a_store_in_a_missing_or_empty_directory)
{
	tu_write(dirs.src, "f", "x\n");
	_cleanup_free_ char *deep = tu_path(dirs.tmp, "a/b/store");
	free(tu_ok(tu_lf(deep, "import", dirs.src, NULL)));
	_cleanup_free_ char *empty = tu_path(dirs.tmp, "empty");
	cr_assert_eq(mkdir(empty, 0755), 0);
	_cleanup_free_ char *ref = tu_ok(tu_lf(empty, "new", NULL));
	cr_assert_eq(strlen(ref), 65, "%s", ref);
	/* and then read-only commands find them */
	_cleanup_free_ char *ls = tu_ok(tu_lf(empty, "ls", "--json", NULL));
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "\"refs\":[{\"id\":\"%.64s\"", ref) > 0);
	cr_assert_not_null(strstr(ls, want), "%s", ls);
}

Test(cli_root, an_empty_root_is_a_usage_error)
{
	const char *a[] = {"--root", "", "ls", NULL};
	tu_run r = tu_layerfs(NULL, a);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err, "layerfs: --root: empty store directory\n");
	tu_run_free(&r);

	const char *b[] = {"import", "--root", "", "/nonexistent", NULL};
	r = tu_layerfs(NULL, b);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err, "layerfs import: --root: empty store directory\n");
	tu_run_free(&r);
}
