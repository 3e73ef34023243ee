/* `layerfs hash`: BuildKit's test vectors on a directory and on a layer, whiteouts and opaque
 * directories of a ref, selector rules, errors, --json, and the per-layer digest cache. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "hashutil.h"
#include "testutil.h"

#define DATA0 "sha256:cd8e75bca50f2d695f220d0cb0997d8ead387e4f926e8669a92d7f104cc9885b"
#define DATA1 "sha256:c2b5e234f5f38fc5864da7def04782f82501a40d46192e4207d5b3f0c3c4732b"
#define D0 "sha256:d47454417d2c554067fbefe5f5719edc49f3cfe969c36b62e34a187a4da0cc9a"
#define D0_NO_GHI "sha256:555ffa3028630d97ba37832b749eda85ab676fd64ffb629fbf0f4ec8c1e3bff1"
#define ROOT "sha256:427c9cf9ae98c0f81fb57a3076b965c7c149b6b0a85625ad4e884236649a42c6"

static tu_dirs dirs;

/* The tree of BuildKit's vectors: bar (data1), d0/{abc (data0), def -> abc, ghi -> nosuchfile},
 * foo (data0); owner 0:0, files 0644, directories 0755. */
static void make_tree(const char *dir)
{
	tu_write(dir, "foo", "data0");
	tu_write(dir, "bar", "data1");
	tu_write(dir, "d0/abc", "data0");
	_cleanup_free_ char *def = tu_path(dir, "d0/def");
	_cleanup_free_ char *ghi = tu_path(dir, "d0/ghi");
	cr_assert_eq(symlink("abc", def), 0);
	cr_assert_eq(symlink("nosuchfile", ghi), 0);
	cr_assert_eq(tu_sh("chmod 0644 '%s/foo' '%s/bar' '%s/d0/abc' && chmod 0755 '%s' '%s/d0'", dir,
			   dir, dir, dir, dir),
		     0);
}

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("the vectors need files owned by 0:0");
	tu_dirs_init(&dirs);
	make_tree(dirs.src);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs);
}

TestSuite(cli_hash, .init = setup, .fini = teardown);

/* Runs `layerfs hash` and returns its single output line without the newline. */
static char *hash(const char *what, ...) __attribute__((sentinel));
static char *hash(const char *what, ...)
{
	const char *argv[32] = {"--root", dirs.store, "hash", what};
	size_t n = 4;
	va_list ap;
	va_start(ap, what);
	const char *a;
	while ((a = va_arg(ap, const char *)))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	tu_run r = tu_layerfs(NULL, argv);
	cr_assert_eq(r.status, 0, "hash %s: exit %d: %s", what, r.status, r.err);
	cr_assert_eq(strlen(r.out), 72, "%s", r.out);
	r.out[71] = '\0';
	free(r.err);
	return r.out;
}

Test(cli_hash, a_directory_gives_buildkits_vectors)
{
	char *d;
	cr_assert_str_eq(d = hash(dirs.src, "/foo", NULL), DATA0);
	free(d);
	cr_assert_str_eq(d = hash(dirs.src, "bar", NULL), DATA1);
	free(d);
	cr_assert_str_eq(d = hash(dirs.src, "/d0", NULL), D0);
	free(d);
	cr_assert_str_eq(d = hash(dirs.src, NULL), ROOT);
	free(d);
	cr_assert_str_eq(d = hash(dirs.src, "/", NULL), ROOT);
	free(d);
}

Test(cli_hash, a_layer_gives_the_same_digests_as_its_directory)
{
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "t", NULL)));
	char *d;
	cr_assert_str_eq(d = hash("t", NULL), ROOT);
	free(d);
	cr_assert_str_eq(d = hash("t", "/d0", NULL), D0);
	free(d);
	/* the second time comes from the cache and agrees */
	cr_assert_str_eq(d = hash("t", NULL), ROOT);
	free(d);
}

Test(cli_hash, whiteouts_and_opaque_directories_of_a_ref_count)
{
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "t", NULL)));
	char *out = tu_ok(tu_lf(dirs.store, "new", "t", NULL));
	out[64] = '\0';
	_cleanup_free_ char *ref = out;
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);

	/* a whiteout of d0/ghi: d0 hashes as the vector without ghi */
	_cleanup_free_ char *d0 = tu_path(upper, "d0");
	cr_assert_eq(mkdir(d0, 0755), 0);
	_cleanup_free_ char *ghi = tu_path(upper, "d0/ghi");
	cr_assert_eq(mknod(ghi, S_IFCHR | 0, makedev(0, 0)), 0);
	char *d;
	cr_assert_str_eq(d = hash(ref, "/d0", NULL), D0_NO_GHI);
	free(d);

	/* an opaque d0 holding only abc and def: the same */
	cr_assert_eq(unlink(ghi), 0);
	cr_assert_eq(setxattr(d0, "trusted.overlay.opaque", "y", 1, 0), 0);
	tu_write(upper, "d0/abc", "data0");
	_cleanup_free_ char *abc = tu_path(upper, "d0/abc");
	_cleanup_free_ char *def = tu_path(upper, "d0/def");
	cr_assert_eq(chmod(abc, 0644), 0);
	cr_assert_eq(symlink("abc", def), 0);
	cr_assert_str_eq(d = hash(ref, "/d0", NULL), D0_NO_GHI);
	free(d);
	/* the root: bar and foo from the layer, d0 from the ref */
	cr_assert_str_neq(d = hash(ref, NULL), ROOT);
	free(d);
}

Test(cli_hash, several_selectors_are_deduplicated_by_whole_components)
{
	tu_write(dirs.src, "Gemfile", "gems\n");
	tu_write(dirs.src, "Gemfile.lock", "locked\n");
	_cleanup_free_ char *g = hash(dirs.src, "/Gemfile", NULL);
	_cleanup_free_ char *gl = hash(dirs.src, "/Gemfile.lock", NULL);
	_cleanup_free_ char *both = hash(dirs.src, "/Gemfile", "/Gemfile.lock", NULL);
	/* sha256 of the two digest texts joined by "\0", in sorted order */
	char joined[2 * LYR_DIGEST_TEXT_LEN];
	snprintf(joined, sizeof(joined), "%s", g);
	memcpy(joined + 71 + 1, gl, 71);
	uint8_t raw[LYR_SHA256_LEN];
	lyr_sha256(joined, 71 + 1 + 71, raw);
	char want[LYR_DIGEST_TEXT_LEN];
	lyr_digest_text(raw, want);
	cr_assert_str_eq(both, want);
	_cleanup_free_ char *rev = hash(dirs.src, "/Gemfile.lock", "./Gemfile", NULL);
	cr_assert_str_eq(rev, want);

	/* /d0 covers /d0/abc: the pair hashes as /d0 alone */
	_cleanup_free_ char *covered = hash(dirs.src, "/d0/abc", "/d0", NULL);
	cr_assert_str_eq(covered, D0);
}

Test(cli_hash, json_lists_each_selector_after_dedupe)
{
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "hash", "--json", dirs.src, "/foo", "/d0/abc", "/d0", NULL));
	_cleanup_free_ char *combined = hash(dirs.src, "/d0", "/foo", NULL);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "{\"digest\":\"%s\",\"selectors\":[{\"selector\":\"/d0\",\"digest\":\"" D0
			   "\"},{\"selector\":\"/foo\",\"digest\":\"" DATA0 "\"}]}\n",
			   combined) > 0);
	cr_assert_str_eq(out, want);
}

/* The library's digest of the tree for SEL (NULL: all of it) with the NULL-terminated glob
 * lists INC and EXC (NULL: none). */
static void lib_digest(const char *sel, const char *const *inc, const char *const *exc,
		       char out[LYR_DIGEST_TEXT_LEN])
{
	size_t n_inc = 0, n_exc = 0;
	while (inc && inc[n_inc])
		n_inc++;
	while (exc && exc[n_exc])
		n_exc++;
	lyr_hash_opts o = {.include = inc, .n_include = n_inc, .exclude = exc, .n_exclude = n_exc};
	cr_assert_eq(tu_hash_dir(dirs.src, NULL, &sel, sel ? 1 : 0, &o, out), 0);
}

Test(cli_hash, include_and_exclude_select_what_the_library_selects)
{
	static const char *const d0[] = {"d0", NULL}, *const ghi[] = {"d0/ghi", NULL},
				 *const foo_bar[] = {"foo", "bar", NULL},
				 *const rel_ghi[] = {"ghi", NULL},
				 *const any_abc[] = {"**/abc", NULL};
	static const struct {
		const char *sel;
		const char *const *inc, *const *exc;
		const char *args[6];
	} cases[] = {
	    {NULL, d0, NULL, {"--include", "d0"}},
	    {NULL, d0, ghi, {"--include", "d0", "--exclude", "d0/ghi"}},
	    {NULL, foo_bar, NULL, {"--include", "foo", "--include", "bar"}},
	    {NULL, foo_bar, NULL, {"--include", "bar", "--include", "foo"}},
	    {NULL, NULL, d0, {"--exclude", "d0"}},
	    {NULL, any_abc, NULL, {"--include", "**/abc"}},
	    /* globs are relative to the selector */
	    {"/d0", NULL, rel_ghi, {"/d0", "--exclude", "ghi"}},
	};
	char got[LYR_ARRAY_SIZE(cases)][LYR_DIGEST_TEXT_LEN];
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		char want[LYR_DIGEST_TEXT_LEN];
		lib_digest(cases[i].sel, cases[i].inc, cases[i].exc, want);
		const char *const *a = cases[i].args;
		_cleanup_free_ char *d = hash(dirs.src, a[0], a[1], a[2], a[3], a[4], a[5], NULL);
		cr_assert_str_eq(d, want, "case %zu", i);
		snprintf(got[i], sizeof(got[i]), "%s", d);
	}
	/* The order of repeated flags does not count, and including foo and bar lists what
	 * excluding d0 lists; every other pair selects different entries. */
	cr_assert_str_eq(got[2], got[3]);
	cr_assert_str_eq(got[2], got[4]);
	static const size_t distinct[] = {0, 1, 2, 5, 6};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(distinct); i++) {
		cr_assert_str_neq(got[distinct[i]], ROOT, "case %zu", distinct[i]);
		cr_assert_str_neq(got[distinct[i]], D0, "case %zu", distinct[i]);
		for (size_t j = i + 1; j < LYR_ARRAY_SIZE(distinct); j++)
			cr_assert_str_neq(got[distinct[i]], got[distinct[j]], "cases %zu and %zu",
					  distinct[i], distinct[j]);
	}

	/* a layer of the same tree selects the same */
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "t", NULL)));
	_cleanup_free_ char *layer = hash("t", "--include", "d0", "--exclude", "d0/ghi", NULL);
	cr_assert_str_eq(layer, got[1]);
}

/* `layerfs hash TREE ARGS...` must be refused as a usage error with MESSAGE. */
static void usage_error(const char *message, const char *a1, const char *a2)
{
	tu_run r = tu_lf(dirs.store, "hash", dirs.src, a1, a2, NULL);
	cr_assert_eq(r.status, 2, "%s %s: exit %d: %s", a1, a2, r.status, r.err);
	cr_assert_str_eq(r.out, "");
	cr_assert_str_eq(r.err, message);
	tu_run_free(&r);
}

Test(cli_hash, a_malformed_glob_is_a_usage_error)
{
	usage_error("layerfs hash: --include '[ab': '[' without a closing ']'\n"
		    "Try 'layerfs hash --help'.\n",
		    "--include", "[ab");
	usage_error("layerfs hash: --exclude 'd0\\': ends in a '\\' that escapes nothing\n"
		    "Try 'layerfs hash --help'.\n",
		    "--exclude", "d0\\");
	usage_error("layerfs hash: --include '': empty pattern\nTry 'layerfs hash --help'.\n",
		    "--include", "");
	usage_error("layerfs hash: option '--include' requires an argument\n"
		    "Try 'layerfs hash --help'.\n",
		    "--include", NULL);
	/* refused before the target is looked at */
	tu_run r = tu_lf(dirs.store, "hash", "./no/such/dir", "--exclude", "[", NULL);
	cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
	cr_assert_str_eq(r.err, "layerfs hash: --exclude '[': '[' without a closing ']'\n"
				"Try 'layerfs hash --help'.\n");
	tu_run_free(&r);
	/* an escaped '[' is a literal one, not a mistake */
	_cleanup_free_ char *d = hash(dirs.src, "--exclude", "\\[ab", NULL);
	char want[LYR_DIGEST_TEXT_LEN];
	static const char *const esc[] = {"\\[ab", NULL};
	lib_digest(NULL, NULL, esc, want);
	cr_assert_str_eq(d, want);
}

Test(cli_hash, missing_and_escaping_selectors_are_refused)
{
	tu_run r = tu_lf(dirs.store, "hash", dirs.src, "/nope", NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: hash '%s': '/nope': No such file or directory\n",
			   dirs.src) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "hash", dirs.src, "../../etc/passwd", NULL);
	cr_assert_eq(r.status, 1);
	free(want);
	cr_assert(asprintf(&want,
			   "layerfs: hash '%s': '../../etc/passwd': selector leaves the root\n",
			   dirs.src) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	/* a symlink pointing out of the root is resolved inside it */
	_cleanup_free_ char *out = tu_path(dirs.src, "out");
	cr_assert_eq(symlink("/../../../foo", out), 0);
	char *d = hash(dirs.src, "/out", "--follow-links", NULL);
	cr_assert_str_eq(d, DATA0);
	free(d);
}

Test(cli_hash, digests_of_a_layer_are_cached_in_the_store)
{
	_cleanup_free_ char *id_out =
	    tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "t", NULL));
	id_out[71] = '\0';
	char *d = hash("t", "/foo", NULL);
	cr_assert_str_eq(d, DATA0);
	free(d);
	/* Tamper with the immutable layer behind the store's back: a cached digest does not read
	 * the file again, an uncached one does. */
	_cleanup_free_ char *foo = NULL;
	cr_assert(asprintf(&foo, "%s/layers/%s/diff", dirs.store, id_out + 7) > 0);
	tu_write(foo, "foo", "data1");
	tu_write(foo, "bar", "data0");
	cr_assert_str_eq(d = hash("t", "/foo", NULL), DATA0);
	free(d);
	cr_assert_str_eq(d = hash("t", "/bar", NULL), DATA0);
	free(d);
}

Test(cli_hash, a_child_layer_reads_only_its_own_files)
{
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL)));
	char *d = hash("base", NULL);
	cr_assert_str_eq(d, ROOT);
	free(d);
	char *out = tu_ok(tu_lf(dirs.store, "new", "base", NULL));
	out[64] = '\0';
	_cleanup_free_ char *ref = out;
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	tu_write(upper, "new", "data1");
	_cleanup_free_ char *nf = tu_path(upper, "new");
	cr_assert_eq(chmod(nf, 0644), 0);
	_cleanup_free_ char *child =
	    tu_ok(tu_lf(dirs.store, "commit", ref, "--tag", "child", NULL));
	child[71] = '\0';

	/* The base's files now hold other bytes on disk; the child's digest still uses the
	 * base's cached digests, so it is what the untampered tree gives. */
	_cleanup_free_ char *base_dir = NULL;
	_cleanup_free_ char *base_id = tu_ok(tu_lf(dirs.store, "inspect", "--json", "base", NULL));
	const char *p = strstr(base_id, "\"id\":\"sha256:") + 13;
	cr_assert(asprintf(&base_dir, "%s/layers/%.64s/diff", dirs.store, p) > 0);
	tu_write(base_dir, "bar", "tampered");
	tu_write(dirs.src, "new", "data1");
	_cleanup_free_ char *tree_new = tu_path(dirs.src, "new");
	cr_assert_eq(chmod(tree_new, 0644), 0);
	_cleanup_free_ char *want = hash(dirs.src, "/bar", "/d0", "/foo", "/new", NULL);
	_cleanup_free_ char *got = hash("child", "/bar", "/d0", "/foo", "/new", NULL);
	cr_assert_str_eq(got, want);
}
