/* The progress line of import, hash and commit, as a person at a terminal sees it: the real
 * binary runs with stdout and stderr on pseudo-terminals (or pipes).  LAYERFS_PROGRESS_MS=0
 * draws a frame at every entry, so what stderr holds is exact: frames "\r\033[K" +
 * "LABEL: N files, SIZE", then one "\r\033[K" that erases the last frame, and nothing else.
 * The tree is a, b, c and d/e, each holding the 5 bytes "data0". */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layerfs/common.h"
#include "testutil.h"

#define F(label, n, size) "\r\033[K" label ": " #n " files, " size
#define ERASE "\r\033[K"

static const char *const every_entry[] = {"LAYERFS_PROGRESS_MS=0", NULL};

static tu_dirs dirs;

static void make_tree(const char *dir)
{
	tu_write(dir, "a", "data0");
	tu_write(dir, "b", "data0");
	tu_write(dir, "c", "data0");
	tu_write(dir, "d/e", "data0");
}

static void setup(void)
{
	tu_dirs_init(&dirs);
	make_tree(dirs.src);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs);
}

TestSuite(cli_progress, .init = setup, .fini = teardown);

/* `layerfs --root STORE A1 A2 A3` (trailing NULLs end it early) with stdout to OUT, stderr
 * to ERR and ENV added to the environment. */
static tu_run run_on(tu_sink out, tu_sink err, const char *const *env, const char *a1,
		     const char *a2, const char *a3)
{
	const char *argv[] = {"--root", dirs.store, a1, a2, a3, NULL};
	return tu_layerfs_on(out, err, env, argv);
}

static void assert_one_id(const tu_run *r)
{
	cr_assert_eq(r->status, 0, "exit %d: %s", r->status, r->err);
	regex_t re;
	cr_assert_eq(regcomp(&re, "^sha256:[0-9a-f]{64}\n$", REG_EXTENDED | REG_NOSUB), 0);
	bool ok = regexec(&re, r->out, 0, NULL, 0) == 0;
	regfree(&re);
	cr_assert(ok, "stdout '%s'", r->out);
}

Test(cli_progress, import_counts_files_and_their_bytes_then_erases_the_line)
{
	tu_run r = run_on(TU_PTY, TU_PTY, every_entry, "import", dirs.src, NULL);
	assert_one_id(&r);
	/* directories are not counted: the copy reports after each file it wrote */
	cr_assert_str_eq(r.err, F("import", 1, "5 B") F("import", 2, "10 B") F("import", 3, "15 B")
				    F("import", 4, "20 B") ERASE);
	tu_run_free(&r);
}

Test(cli_progress, hash_counts_every_entry_in_walk_order_then_erases_the_line)
{
	tu_run r = run_on(TU_PTY, TU_PTY, every_entry, "hash", dirs.src, NULL);
	assert_one_id(&r);
	/* the root, a, b, c, d, d/e: directories count as entries but hold no bytes */
	cr_assert_str_eq(r.err,
			 F("hash", 1, "0 B") F("hash", 2, "5 B") F("hash", 3, "10 B")
			     F("hash", 4, "15 B") F("hash", 5, "15 B") F("hash", 6, "20 B") ERASE);
	/* the digest is the one printed without a terminal */
	tu_run plain = run_on(TU_PIPE, TU_PIPE, every_entry, "hash", dirs.src, NULL);
	cr_assert_eq(plain.status, 0);
	cr_assert_str_eq(r.out, plain.out);
	cr_assert_str_eq(plain.err, "");
	tu_run_free(&plain);
	tu_run_free(&r);
}

Test(cli_progress, commit_counts_files_then_shows_all_bytes_and_erases_the_line)
{
	tu_run r = run_on(TU_PIPE, TU_PIPE, NULL, "new", NULL, NULL);
	cr_assert_eq(r.status, 0, "new: %s", r.err);
	cr_assert_eq(strlen(r.out), 65);
	r.out[64] = '\0';
	_cleanup_free_ char *ref = strdup(r.out);
	tu_run_free(&r);
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	make_tree(upper);

	r = run_on(TU_PTY, TU_PTY, every_entry, "commit", ref, NULL);
	assert_one_id(&r);
	/* One frame a file as the walk meets it; its bytes are those the hashing threads have
	 * read by then (at most the files met so far).  The last frame, drawn once hashing is done,
	 * holds all. */
	regex_t re;
	cr_assert_eq(regcomp(&re,
			     "^\r\033\\[Kcommit: 1 files, (0|5) B"
			     "\r\033\\[Kcommit: 2 files, (0|5|10) B"
			     "\r\033\\[Kcommit: 3 files, (0|5|10|15) B"
			     "\r\033\\[Kcommit: 4 files, (0|5|10|15|20) B"
			     "\r\033\\[Kcommit: 4 files, 20 B\r\033\\[K$",
			     REG_EXTENDED | REG_NOSUB),
		     0);
	bool ok = regexec(&re, r.err, 0, NULL, 0) == 0;
	regfree(&re);
	cr_assert(ok, "stderr '%s'", r.err);
	tu_run_free(&r);
}

Test(cli_progress, nothing_is_drawn_when_stdout_is_not_a_terminal)
{
	tu_run r = run_on(TU_PIPE, TU_PTY, every_entry, "import", dirs.src, NULL);
	assert_one_id(&r);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
}

Test(cli_progress, nothing_is_drawn_when_stderr_is_not_a_terminal)
{
	tu_run r = run_on(TU_PTY, TU_PIPE, every_entry, "hash", dirs.src, NULL);
	assert_one_id(&r);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
}

Test(cli_progress, nothing_is_drawn_for_json)
{
	tu_run r = run_on(TU_PTY, TU_PTY, every_entry, "--json", "import", dirs.src);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_eq(strncmp(r.out, "{\"id\":\"sha256:", 14), 0, "stdout '%s'", r.out);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
}

Test(cli_progress, quick_work_draws_nothing_by_default)
{
	/* a few entries take far less than the default 100 ms; an empty value, or one that is
	 * not a whole number of milliseconds, means the default */
	static const char *const empty[] = {"LAYERFS_PROGRESS_MS=", NULL};
	static const char *const not_a_number[] = {"LAYERFS_PROGRESS_MS=0x", NULL};
	const char *const *envs[] = {empty, not_a_number};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(envs); i++) {
		tu_run r = run_on(TU_PTY, TU_PTY, envs[i], "hash", dirs.src, NULL);
		assert_one_id(&r);
		cr_assert_str_eq(r.err, "", "with %s", envs[i][0]);
		tu_run_free(&r);
	}
}
