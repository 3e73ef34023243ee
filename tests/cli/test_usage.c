/* Help, version and usage errors: exit status 0 for help, 2 for usage errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "layerfs/common.h"
#include "layerfs/version.h"
#include "testutil.h"

Test(cli_usage, version_prints_the_version)
{
	const char *argv[] = {"--version", NULL};
	tu_run r = tu_layerfs(NULL, argv);
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "layerfs " LAYERFS_VERSION "\n");
	tu_run_free(&r);
}

Test(cli_usage, every_command_answers_help_with_its_usage)
{
	const char *cmds[] = {"import", "new", "commit", "diff", "ls", "inspect", "tag",
			      "untag", "rm", "du", "prune", "fsck"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cmds); i++) {
		const char *argv[] = {cmds[i], "--help", NULL};
		tu_run r = tu_layerfs(NULL, argv);
		cr_assert_eq(r.status, 0, "%s --help exited %d", cmds[i], r.status);
		_cleanup_free_ char *prefix = NULL;
		cr_assert(asprintf(&prefix, "Usage: layerfs [--root DIR] [--json] %s", cmds[i]) > 0);
		cr_assert_eq(strncmp(r.out, prefix, strlen(prefix)), 0, "%s", r.out);
		cr_assert_str_eq(r.err, "");
		tu_run_free(&r);
	}
}

Test(cli_usage, no_command_and_unknown_commands_exit_2)
{
	const char *none[] = {NULL};
	tu_run r = tu_layerfs(NULL, none);
	cr_assert_eq(r.status, 2);
	cr_assert_eq(strncmp(r.err, "Usage: layerfs", 14), 0);
	tu_run_free(&r);

	const char *bogus[] = {"frobnicate", NULL};
	r = tu_layerfs(NULL, bogus);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err, "layerfs: unknown command 'frobnicate'\nTry 'layerfs --help'.\n");
	tu_run_free(&r);
}

Test(cli_usage, wrong_argument_counts_and_unknown_options_exit_2)
{
	const char *a[] = {"--root", "/nonexistent/store", "commit", NULL};
	tu_run r = tu_layerfs(NULL, a);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err, "layerfs commit: expects one ref\nTry 'layerfs commit --help'.\n");
	tu_run_free(&r);

	const char *b[] = {"ls", "--bogus", NULL};
	r = tu_layerfs(NULL, b);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "Try 'layerfs ls --help'."), "%s", r.err);
	tu_run_free(&r);
}
