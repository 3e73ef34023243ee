/* Help, version and usage errors: exit status 0 for help, 2 for usage errors. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

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

/* A bad op in a --spec file is the usage error it is on the command line (exit 2), named once
 * with the file; a file that cannot be read is a failure (125). */
Test(cli_usage, spec_errors_exit_2_like_the_same_error_on_the_command_line)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	_cleanup_free_ char *store = tu_path(dir, "store"), *spec = tu_path(dir, "op.json");
	const char *cl[] = {"--root", store, "exec", "--network", "foo", "bb", "--", "true", NULL};
	tu_fails(tu_layerfs(NULL, cl), 2,
		 "layerfs exec: network 'foo': expected none or host\n"
		 "Try 'layerfs exec --help'.\n");
	static const struct {
		const char *json, *msg;
	} cases[] = {
	    {"{\"root\": \"bb\", \"args\": [\"true\"], \"network\": \"foo\"}",
	     "network 'foo': expected none or host"},
	    {"{\"root\": \"bb\", \"args\": [\"true\"], \"netwrk\": \"foo\"}",
	     "unknown key 'netwrk'"},
	    {"{\"args\": [\"true\"]}", "no ROOT given"},
	    {"[]", "expected a JSON object at the top"},
	    {"{\"root\": \"r\",\n \"root\": \"s\", \"args\": [\"x\"]}",
	     "line 2 column 7: duplicate object key near '\"root\"'"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		tu_write(dir, "op.json", cases[i].json);
		const char *argv[] = {"--root", store, "exec", "--spec", spec, NULL};
		tu_fails(tu_layerfs(NULL, argv), 2,
			 "layerfs exec: spec '%s': %s\nTry 'layerfs exec --help'.\n", spec,
			 cases[i].msg);
	}
	_cleanup_free_ char *missing = tu_path(dir, "none.json");
	const char *argv[] = {"--root", store, "exec", "--spec", missing, NULL};
	tu_fails(tu_layerfs(NULL, argv), 125,
		 "layerfs exec: spec '%s': No such file or directory\n", missing);
	cr_assert_eq(access(store, F_OK), -1, "a usage error created the store");
	tu_rmtree(dir);
}

/* libarchive and libcurl (and the forty libraries they pull in) are opened by the OCI commands
 * that use them: linked in, they cost every command, exec and mount included, some 12 ms of
 * dynamic linking before main. */
Test(cli_usage, the_binary_loads_no_archive_or_http_library_until_it_needs_one)
{
	const char *argv[] = {"/usr/bin/ldd", LAYERFS_BIN, NULL};
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_not_null(strstr(r.out, "libc.so"), "%s", r.out);
	cr_assert_null(strstr(r.out, "libarchive"), "%s", r.out);
	cr_assert_null(strstr(r.out, "libcurl"), "%s", r.out);
	tu_run_free(&r);
}
