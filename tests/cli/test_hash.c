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
#include "testutil.h"

#define DATA0 "sha256:cd8e75bca50f2d695f220d0cb0997d8ead387e4f926e8669a92d7f104cc9885b"
#define DATA1 "sha256:c2b5e234f5f38fc5864da7def04782f82501a40d46192e4207d5b3f0c3c4732b"
#define D0 "sha256:d47454417d2c554067fbefe5f5719edc49f3cfe969c36b62e34a187a4da0cc9a"
#define D0_NO_GHI "sha256:555ffa3028630d97ba37832b749eda85ab676fd64ffb629fbf0f4ec8c1e3bff1"
#define ROOT "sha256:427c9cf9ae98c0f81fb57a3076b965c7c149b6b0a85625ad4e884236649a42c6"

static char *tmp, *store, *tree;

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
	tmp = tu_mkdtemp();
	store = tu_path(tmp, "store");
	tree = tu_path(tmp, "tree");
	make_tree(tree);
}

static void teardown(void)
{
	tu_rmtree(tmp);
	free(tmp);
	free(store);
	free(tree);
}

TestSuite(cli_hash, .init = setup, .fini = teardown);

/* Runs `layerfs hash` and returns its single output line without the newline. */
static char *hash(const char *what, ...) __attribute__((sentinel));
static char *hash(const char *what, ...)
{
	const char *argv[32] = {"--root", store, "hash", what};
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

static char *ok(tu_run r)
{
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	free(r.err);
	return r.out;
}

Test(cli_hash, a_directory_gives_buildkits_vectors)
{
	char *d;
	cr_assert_str_eq(d = hash(tree, "/foo", NULL), DATA0);
	free(d);
	cr_assert_str_eq(d = hash(tree, "bar", NULL), DATA1);
	free(d);
	cr_assert_str_eq(d = hash(tree, "/d0", NULL), D0);
	free(d);
	cr_assert_str_eq(d = hash(tree, NULL), ROOT);
	free(d);
	cr_assert_str_eq(d = hash(tree, "/", NULL), ROOT);
	free(d);
}

Test(cli_hash, a_layer_gives_the_same_digests_as_its_directory)
{
	free(ok(tu_lf(store, "import", tree, "--tag", "t", NULL)));
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
	free(ok(tu_lf(store, "import", tree, "--tag", "t", NULL)));
	char *out = ok(tu_lf(store, "new", "t", NULL));
	out[64] = '\0';
	_cleanup_free_ char *ref = out;
	_cleanup_free_ char *info = ok(tu_lf(store, "inspect", "--json", ref, NULL));
	const char *p = strstr(info, "\"upper\":\"") + 9;
	_cleanup_free_ char *upper = strndup(p, strcspn(p, "\""));

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
	tu_write(tree, "Gemfile", "gems\n");
	tu_write(tree, "Gemfile.lock", "locked\n");
	_cleanup_free_ char *g = hash(tree, "/Gemfile", NULL);
	_cleanup_free_ char *gl = hash(tree, "/Gemfile.lock", NULL);
	_cleanup_free_ char *both = hash(tree, "/Gemfile", "/Gemfile.lock", NULL);
	/* sha256 of the two digest texts joined by "\0", in sorted order */
	char joined[2 * LYR_DIGEST_TEXT_LEN];
	snprintf(joined, sizeof(joined), "%s", g);
	memcpy(joined + 71 + 1, gl, 71);
	uint8_t raw[LYR_SHA256_LEN];
	lyr_sha256(joined, 71 + 1 + 71, raw);
	char want[LYR_DIGEST_TEXT_LEN];
	lyr_digest_text(raw, want);
	cr_assert_str_eq(both, want);
	_cleanup_free_ char *rev = hash(tree, "/Gemfile.lock", "./Gemfile", NULL);
	cr_assert_str_eq(rev, want);

	/* /d0 covers /d0/abc: the pair hashes as /d0 alone */
	_cleanup_free_ char *covered = hash(tree, "/d0/abc", "/d0", NULL);
	cr_assert_str_eq(covered, D0);
}

Test(cli_hash, json_lists_each_selector_after_dedupe)
{
	_cleanup_free_ char *out = ok(tu_lf(store, "hash", "--json", tree, "/foo", "/d0/abc", "/d0", NULL));
	_cleanup_free_ char *combined = hash(tree, "/d0", "/foo", NULL);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "{\"digest\":\"%s\",\"selectors\":[{\"selector\":\"/d0\",\"digest\":\"" D0
			   "\"},{\"selector\":\"/foo\",\"digest\":\"" DATA0 "\"}]}\n",
			   combined) > 0);
	cr_assert_str_eq(out, want);
}

Test(cli_hash, missing_and_escaping_selectors_are_refused)
{
	tu_run r = tu_lf(store, "hash", tree, "/nope", NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: hash '%s': '/nope': No such file or directory\n", tree) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	r = tu_lf(store, "hash", tree, "../../etc/passwd", NULL);
	cr_assert_eq(r.status, 1);
	free(want);
	cr_assert(asprintf(&want, "layerfs: hash '%s': '../../etc/passwd': selector leaves the root\n",
			   tree) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);

	/* a symlink pointing out of the root is resolved inside it */
	_cleanup_free_ char *out = tu_path(tree, "out");
	cr_assert_eq(symlink("/../../../foo", out), 0);
	char *d = hash(tree, "/out", "--follow-links", NULL);
	cr_assert_str_eq(d, DATA0);
	free(d);
}

Test(cli_hash, digests_of_a_layer_are_cached_in_the_store)
{
	_cleanup_free_ char *id_out = ok(tu_lf(store, "import", tree, "--tag", "t", NULL));
	id_out[71] = '\0';
	char *d = hash("t", "/foo", NULL);
	cr_assert_str_eq(d, DATA0);
	free(d);
	/* Tamper with the immutable layer behind the store's back: a cached digest does not read
	 * the file again, an uncached one does. */
	_cleanup_free_ char *foo = NULL;
	cr_assert(asprintf(&foo, "%s/layers/%s/diff", store, id_out + 7) > 0);
	tu_write(foo, "foo", "data1");
	tu_write(foo, "bar", "data0");
	cr_assert_str_eq(d = hash("t", "/foo", NULL), DATA0);
	free(d);
	cr_assert_str_eq(d = hash("t", "/bar", NULL), DATA0);
	free(d);
}

Test(cli_hash, a_child_layer_reads_only_its_own_files)
{
	free(ok(tu_lf(store, "import", tree, "--tag", "base", NULL)));
	char *d = hash("base", NULL);
	cr_assert_str_eq(d, ROOT);
	free(d);
	char *out = ok(tu_lf(store, "new", "base", NULL));
	out[64] = '\0';
	_cleanup_free_ char *ref = out;
	_cleanup_free_ char *info = ok(tu_lf(store, "inspect", "--json", ref, NULL));
	const char *p = strstr(info, "\"upper\":\"") + 9;
	_cleanup_free_ char *upper = strndup(p, strcspn(p, "\""));
	tu_write(upper, "new", "data1");
	_cleanup_free_ char *nf = tu_path(upper, "new");
	cr_assert_eq(chmod(nf, 0644), 0);
	_cleanup_free_ char *child = ok(tu_lf(store, "commit", ref, "--tag", "child", NULL));
	child[71] = '\0';

	/* The base's files now hold other bytes on disk; the child's digest still uses the
	 * base's cached digests, so it is what the untampered tree gives. */
	_cleanup_free_ char *base_dir = NULL;
	_cleanup_free_ char *base_id = ok(tu_lf(store, "inspect", "--json", "base", NULL));
	p = strstr(base_id, "\"id\":\"sha256:") + 13;
	cr_assert(asprintf(&base_dir, "%s/layers/%.64s/diff", store, p) > 0);
	tu_write(base_dir, "bar", "tampered");
	tu_write(tree, "new", "data1");
	_cleanup_free_ char *tree_new = tu_path(tree, "new");
	cr_assert_eq(chmod(tree_new, 0644), 0);
	_cleanup_free_ char *want = hash(tree, "/bar", "/d0", "/foo", "/new", NULL);
	_cleanup_free_ char *got = hash("child", "/bar", "/d0", "/foo", "/new", NULL);
	cr_assert_str_eq(got, want);
}
