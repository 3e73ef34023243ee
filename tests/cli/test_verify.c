/* `layerfs fsck --verify` over a real store whose layer files are changed behind its back: the
 * changed entries are named, the layer is marked so `hash` and `exec --cache` refuse it, plain
 * fsck reports the mark, and putting the bytes back and repairing clears it.  Also stale digest
 * cache entries of an intact layer, a layer without a file list, --json and bad arguments. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "testutil.h"

static tu_dirs dirs;

static void setup(void)
{
	tu_dirs_init(&dirs);
	tu_write(dirs.src, "etc/hostname", "box\n");
	tu_write(dirs.src, "bin/tool", "#!/bin/sh\necho hi\n");
	tu_write(dirs.src, "usr/share/doc/readme", "layerfs\n");
}

static void teardown(void)
{
	tu_dirs_fini(&dirs); /* unmounts what a test left, and fails it */
}

TestSuite(cli_verify, .init = setup, .fini = teardown, .timeout = 120);

static char *import(const char *dir)
{
	char *out = tu_ok(tu_lf(dirs.store, "import", dir, NULL));
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* DIRS.store/layers/<hex>/REL for layer ID. */
static char *in_layer(const char *id, const char *rel)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/layers/%s/%s", dirs.store, id + strlen("sha256:"), rel) > 0);
	return p;
}

/* Overwrites the byte at OFF of a layer's file with BYTE, keeping its times: the change
 * only the content shows. */
static void poke(const char *id, const char *rel, off_t off, char byte)
{
	_cleanup_free_ char *p = in_layer(id, rel);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0, "%s", p);
	int fd = open(p, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, &byte, 1, off), 1);
	const struct timespec t[2] = {st.st_atim, st.st_mtim};
	cr_assert_eq(futimens(fd, t), 0);
	close(fd);
}

/* The diff digest of a layer's directory as it is now. */
static void digest_now(const char *id, char out[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_free_ char *p = in_layer(id, "diff");
	int fd = open(p, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(lyr_hash_diff(fd, NULL, out, NULL), 0);
	close(fd);
}

/* Asserts R's exit STATUS and that its stdout matches the extended regex RE; frees R. */
static void expect_match(tu_run r, int status, const char *re)
{
	cr_assert_eq(r.status, status, "%s", r.err);
	cr_assert(tu_matches(re, r.out), "%s", r.out);
	tu_run_free(&r);
}

/* R's stdout up to its "verified ..." line, which is checked and cut off (its time varies). */
static void cut_verified(tu_run *r, unsigned layers, unsigned files, const char *size)
{
	_cleanup_free_ char *re = NULL;
	cr_assert(asprintf(&re,
			   "(^|\n)verified %u layers? \\(%u files, %s\\) in [0-9]+\\.[0-9]{2} s: "
			   "[0-9]+ MB/s\n",
			   layers, files, size) > 0);
	cr_assert(tu_matches(re, r->out), "%s", r->out);
	char *v = strstr(r->out, "verified ");
	memmove(v, v + strcspn(v, "\n") + 1, strlen(v + strcspn(v, "\n") + 1) + 1);
}

/* Asserts R's exit STATUS and that its stdout (ERR false; the "verified" line of 1 layer, 3
 * files, 30 B cut off when VERIFIED) or its stderr (ERR true; stdout empty) is what FMT
 * formats; frees R. */
static void expect(tu_run r, int status, bool err, bool verified, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void expect(tu_run r, int status, bool err, bool verified, const char *fmt, ...)
{
	cr_assert_eq(r.status, status, "%s", r.err);
	if (verified)
		cut_verified(&r, 1, 3, "30 B");
	_cleanup_free_ char *want = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&want, fmt, ap) > 0);
	va_end(ap);
	cr_assert_str_eq(err ? r.err : r.out, want);
	if (err)
		cr_assert_str_eq(r.out, "");
	tu_run_free(&r);
}

#define expect_out(r, status, verified, ...) expect(r, status, false, verified, __VA_ARGS__)
#define expect_err(r, status, ...) expect(r, status, true, false, __VA_ARGS__)

static void expect_failed_verification(const char *id)
{
	char now[LYR_DIGEST_TEXT_LEN];
	digest_now(id, now);
	tu_run r = tu_lf(dirs.store, "fsck", "--verify", NULL);
	cr_assert_str_eq(r.err, "layerfs: fsck: 2 problems left (run 'layerfs fsck --repair')\n");
	expect_out(r, 1, true,
		   "problem: layer %s: content does not match its ID (its diff digest is now %s); "
		   "marked as failed verification\n"
		   "problem: layer %s: /etc/hostname: content differs from the layer's digest\n",
		   id, now, id);
}

/* Also: the digests cached by `hash` (files with and without xattrs, directories) agree with
 * those the verifying read computes for its files and the content hash for the rest. */
Test(cli_verify, an_intact_store_verifies_with_no_problems)
{
	_cleanup_free_ char *tool = tu_path(dirs.src, "bin/tool");
	if (setxattr(tool, "user.note", "v", 1, 0) < 0)
		cr_assert_eq(errno, ENOTSUP);
	_cleanup_free_ char *id = import(dirs.src);
	_cleanup_free_ char *whole = tu_ok(tu_lf(dirs.store, "hash", id, NULL));
	tu_run r = tu_lf(dirs.store, "fsck", "--verify", NULL);
	cr_assert_str_eq(r.err, "");
	expect_out(r, 0, true, "store '%s': no problems\n", dirs.store);
}

/* The whole story of one changed byte. */
Test(cli_verify, a_changed_byte_is_named_refused_and_cleared_once_restored)
{
	_cleanup_free_ char *id = import(dirs.src);
	_cleanup_free_ char *before = tu_ok(tu_lf(dirs.store, "hash", id, "/etc", NULL));
	poke(id, "diff/etc/hostname", 0, 'f');

	/* plain fsck reads no content: it cannot know yet */
	_cleanup_free_ char *fine = tu_ok(tu_lf(dirs.store, "fsck", NULL));
	expect_failed_verification(id);

	/* plain fsck now reports the mark */
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_str_eq(r.err, "layerfs: fsck: 1 problem left (run 'layerfs fsck --repair')\n");
	expect_out(r, 1, false,
		   "problem: layer %s: failed verification (marked in layers/%s/verify-failed); "
		   "'layerfs fsck --verify' names what changed\n",
		   id, id + 7);

	/* hash serves nothing from it, cached or not */
	expect_err(tu_lf(dirs.store, "hash", id, "/etc", NULL), 1,
		   "layerfs: hash '%s': layer %s failed verification; run layerfs fsck --repair "
		   "or layerfs rm\n",
		   id, id);

	/* repair cannot restore content: the layer stays marked, its cache entries go */
	expect_match(tu_lf(dirs.store, "fsck", "--repair", NULL), 1,
		     "^problem: layer [^\n]*: content does not match its ID [^\n]*\n"
		     "problem: layer [^\n]*: /etc/hostname: content differs from the layer's "
		     "digest\n"
		     "repaired: layer [^\n]*: 3 digest cache entries dropped\n"
		     "problem: layer [^\n]*: fsck cannot restore content: put the files back "
		     "and run 'layerfs fsck --repair', or remove the layer with 'layerfs rm'\n$");

	/* the byte back: repair verifies the marked layer again and clears the mark */
	poke(id, "diff/etc/hostname", 0, 'b');
	expect_out(tu_lf(dirs.store, "fsck", "--repair", NULL), 0, false,
		   "repaired: layer %s: content matches its ID again; verification mark cleared\n"
		   "store '%s': no problems\n",
		   id, dirs.store);
	_cleanup_free_ char *after = tu_ok(tu_lf(dirs.store, "hash", id, "/etc", NULL));
	cr_assert_str_eq(after, before);
	_cleanup_free_ char *p = in_layer(id, "verify-failed");
	cr_assert_eq(access(p, F_OK), -1);
}

Test(cli_verify, verify_of_the_restored_layer_clears_the_mark_too)
{
	_cleanup_free_ char *id = import(dirs.src);
	poke(id, "diff/bin/tool", 3, 'X');
	expect_match(tu_lf(dirs.store, "fsck", "--verify", id, NULL), 1,
		     ": /bin/tool: content differs from the layer's digest\n");
	poke(id, "diff/bin/tool", 3, 'b');
	expect_out(tu_lf(dirs.store, "fsck", "--verify", id, NULL), 0, true,
		   "repaired: layer %s: content matches its ID again; verification mark cleared\n"
		   "store '%s': no problems\n",
		   id, dirs.store);
}

/* Every kind of change is named with what differs. */
Test(cli_verify, changed_attributes_added_and_removed_entries_are_named)
{
	_cleanup_free_ char *id = import(dirs.src);
	_cleanup_free_ char *tool = in_layer(id, "diff/bin/tool");
	_cleanup_free_ char *readme = in_layer(id, "diff/usr/share/doc/readme");
	cr_assert_eq(chmod(tool, 0700), 0);
	cr_assert_eq(unlink(readme), 0);
	_cleanup_free_ char *layerdir = in_layer(id, "diff");
	tu_write(layerdir, "etc/new", "x");
	tu_write(layerdir, "etc/hostname", "boxes\n");
	expect_match(tu_lf(dirs.store, "fsck", "--verify", NULL), 1,
		     "^problem: layer [^\n]*: content does not match its ID [^\n]*\n"
		     "problem: layer [^\n]*: /bin/tool: mode differs from the layer's digest\n"
		     "problem: layer [^\n]*: /etc: mtime differs from the layer's digest\n"
		     "problem: layer [^\n]*: /etc/hostname: content, size and mtime differ "
		     "from the layer's digest\n"
		     "problem: layer [^\n]*: /etc/new: added since the layer was written\n"
		     "problem: layer [^\n]*: /usr/share/doc: mtime differs from the layer's "
		     "digest\n"
		     "problem: layer [^\n]*: /usr/share/doc/readme: removed since the layer was "
		     "written\n"
		     "verified ");
}

/* A layer written before layers kept file lists: named from its digest cache entries, or
 * reported as not nameable, with the reason. */
Test(cli_verify, without_a_file_list_the_digest_cache_names_the_file)
{
	_cleanup_free_ char *id = import(dirs.src);
	_cleanup_free_ char *list = in_layer(id, "filelist");
	cr_assert_eq(unlink(list), 0);
	poke(id, "diff/usr/share/doc/readme", 0, 'L');
	expect_match(tu_lf(dirs.store, "fsck", "--verify", NULL), 1,
		     "^problem: layer [^\n]*: content does not match its ID [^\n]*\n"
		     "problem: layer [^\n]*: the changed files cannot be named: the layer has "
		     "no file list \\(it was written before layerfs kept them\\) and none of its "
		     "digest cache entries differs\n"
		     "verified ");

	/* restored, hashed (cache entries made), changed again */
	poke(id, "diff/usr/share/doc/readme", 0, 'l');
	_cleanup_free_ char *ok = tu_ok(tu_lf(dirs.store, "fsck", "--verify", NULL));
	_cleanup_free_ char *h = tu_ok(tu_lf(dirs.store, "hash", id, NULL));
	poke(id, "diff/usr/share/doc/readme", 0, 'L');
	expect_match(tu_lf(dirs.store, "fsck", "--verify", NULL), 1,
		     "^problem: layer [^\n]*: content does not match its ID [^\n]*\n"
		     "problem: layer [^\n]*: /usr/share/doc/readme: differs from its digest "
		     "cache entry \\(changed after it was hashed\\)\n"
		     "verified ");
}

/* A digest cached while the layer was changed is stale once it is restored: verification finds
 * it, repair drops it, and hash gives the digest of the real content again. */
Test(cli_verify, stale_digest_cache_entries_of_an_intact_layer_are_found_and_dropped)
{
	_cleanup_free_ char *id = import(dirs.src);
	_cleanup_free_ char *good = tu_ok(tu_lf(dirs.store, "hash", dirs.src, "/bin/tool", NULL));
	poke(id, "diff/bin/tool", 0, '?');
	_cleanup_free_ char *bad = tu_ok(tu_lf(dirs.store, "hash", id, "/bin/tool", NULL));
	cr_assert_str_neq(bad, good);
	poke(id, "diff/bin/tool", 0, '#');
	/* the layer is intact, its cache entry is not */
	_cleanup_free_ char *served = tu_ok(tu_lf(dirs.store, "hash", id, "/bin/tool", NULL));
	cr_assert_str_eq(served, bad);
	expect_out(tu_lf(dirs.store, "fsck", "--verify", NULL), 1, true,
		   "problem: layer %s: /bin/tool: digest cache entry (f) does not match the "
		   "content\n",
		   id);
	expect_out(tu_lf(dirs.store, "fsck", "--verify", "--repair", NULL), 0, true,
		   "repaired: layer %s: /bin/tool: digest cache entry (f) does not match the "
		   "content (dropped)\nstore '%s': no problems\n",
		   id, dirs.store);
	_cleanup_free_ char *now = tu_ok(tu_lf(dirs.store, "hash", id, "/bin/tool", NULL));
	cr_assert_str_eq(now, good);
}

Test(cli_verify, json_gives_each_finding_with_its_layer_and_path)
{
	_cleanup_free_ char *id = import(dirs.src);
	poke(id, "diff/etc/hostname", 1, 'X');
	char now[LYR_DIGEST_TEXT_LEN];
	digest_now(id, now);
	tu_run r = tu_lf(dirs.store, "--json", "fsck", "--verify", id, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(
	    asprintf(&want,
		     "{\"findings\":[{\"finding\":\"layer %s: content does not match its ID "
		     "(its diff digest is now %s); marked as failed verification\","
		     "\"repaired\":false,\"layer\":\"%s\",\"path\":null,\"problem\":\"content "
		     "does not match its ID (its diff digest is now %s); marked as failed "
		     "verification\"},{\"finding\":\"layer %s: /etc/hostname: content differs "
		     "from the layer's digest\",\"repaired\":false,\"layer\":\"%s\",\"path\":"
		     "\"/etc/hostname\",\"problem\":\"content differs from the layer's "
		     "digest\"}],\"problems\":2,\"verified\":{\"layers\":1,\"files\":3,"
		     "\"bytes\":30,",
		     id, now, id, now, id, id) > 0);
	cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
	cr_assert(tu_matches("\"milliseconds\":[0-9]+,\"mb_per_s\":[0-9]+}}\n$", r.out), "%s",
		  r.out);
	tu_run_free(&r);
}

Test(cli_verify, bad_arguments_change_nothing)
{
	_cleanup_free_ char *id = import(dirs.src);
	expect_err(tu_lf(dirs.store, "fsck", id, NULL), 2,
		   "layerfs fsck: takes no arguments (layers go after --verify)\n"
		   "Try 'layerfs fsck --help'.\n");
	expect_err(tu_lf(dirs.store, "fsck", "--verify", "nosuchtag", NULL), 1,
		   "layerfs: 'nosuchtag': no such layer or tag\n");
	_cleanup_free_ char *ref = tu_ok(tu_lf(dirs.store, "new", id, NULL));
	ref[strcspn(ref, "\n")] = '\0';
	expect_err(tu_lf(dirs.store, "fsck", "--verify", ref, NULL), 1,
		   "layerfs: '%s': is a ref, not a layer\n", ref);
}

/* exec --cache answers from the action cache only while the layers of the stored result still
 * match their IDs; without --cache a run over a failed input layer goes on, uncached. */
Test(cli_verify, exec_cache_refuses_a_result_over_a_failed_layer)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (namespaces, mounts)");
	tu_need_fuse();
	tu_need_busybox();
	static const char *const applets[] = {"sh", "echo", "cat"};
	_cleanup_free_ char *rootfs = tu_path(dirs.tmp, "rootfs");
	tu_busybox_root(rootfs, applets, LYR_ARRAY_SIZE(applets), "root:x:0:0:root:/root:/bin/sh\n",
			"root:x:0:\n");
	_cleanup_free_ char *root = import(rootfs);
	_cleanup_free_ char *tmpenv = NULL;
	cr_assert(asprintf(&tmpenv, "TMPDIR=%s", dirs.tmp) > 0);
	const char *env[] = {tmpenv, NULL};
	_cleanup_free_ char *first =
	    tu_ok(tu_lf_env(env, dirs.store, "--json", "exec", "--cache", root, "--", "sh", "-c",
			    "echo x > /out", NULL));
	_cleanup_free_ char *key = tu_json_field(first, "cache_key");
	_cleanup_free_ char *again =
	    tu_ok(tu_lf_env(env, dirs.store, "--json", "exec", "--cache", root, "--", "sh", "-c",
			    "echo x > /out", NULL));
	_cleanup_free_ char *cached = tu_json_field(again, "cached");
	cr_assert_str_eq(cached, "true");

	poke(root, "diff/etc/passwd", 0, 'R');
	expect_match(tu_lf(dirs.store, "fsck", "--verify", root, NULL), 1,
		     ": /etc/passwd: content differs from the layer's digest\n");

	expect_err(tu_lf_env(env, dirs.store, "exec", "--cache", root, "--", "sh", "-c",
			     "echo x > /out", NULL),
		   125,
		   "layerfs: exec: cached result %s: layer %s failed verification; run layerfs "
		   "fsck --repair or layerfs rm\n",
		   key, root);

	/* a read-only input over a failed layer has no content hash: without --cache the run goes
	 * on, uncached; with --cache it is refused */
	_cleanup_free_ char *data = import(dirs.src);
	poke(data, "diff/etc/hostname", 0, 'B');
	tu_run v = tu_lf(dirs.store, "fsck", "--verify", data, NULL);
	cr_assert_eq(v.status, 1);
	tu_run_free(&v);
	_cleanup_free_ char *bind = NULL;
	cr_assert(asprintf(&bind, "type=bind,source=%s,target=/in,readonly", data) > 0);
	tu_run x = tu_lf_env(env, dirs.store, "--json", "exec", "--mount", bind, root, "--", "cat",
			     "/in/etc/hostname", NULL);
	cr_assert_eq(x.status, 0, "%s", x.err);
	cr_assert(tu_matches("\"cache_key\":null", x.out), "%s", x.out);
	_cleanup_free_ char *warned = NULL;
	cr_assert(asprintf(&warned,
			   "layerfs: exec: '%s': layer %s failed verification; run layerfs fsck "
			   "--repair or layerfs rm; the result is not cached\nBox\n",
			   data, data) > 0);
	cr_assert_str_eq(x.err, warned);
	tu_run_free(&x);
	expect_err(tu_lf_env(env, dirs.store, "exec", "--cache", "--mount", bind, root, "--", "cat",
			     "/in/etc/hostname", NULL),
		   125,
		   "layerfs: exec: '%s': layer %s failed verification; run layerfs fsck --repair "
		   "or layerfs rm\n",
		   data, data);

	/* restored and repaired: the stored result is an answer again */
	poke(root, "diff/etc/passwd", 0, 'r');
	poke(data, "diff/etc/hostname", 0, 'b');
	_cleanup_free_ char *fixed = tu_ok(tu_lf(dirs.store, "fsck", "--repair", NULL));
	_cleanup_free_ char *third =
	    tu_ok(tu_lf_env(env, dirs.store, "--json", "exec", "--cache", root, "--", "sh", "-c",
			    "echo x > /out", NULL));
	_cleanup_free_ char *cached3 = tu_json_field(third, "cached");
	cr_assert_str_eq(cached3, "true");
}

/* Removing a failed layer removes its mark with it: the store has no problem left. */
Test(cli_verify, removing_a_failed_layer_leaves_no_problem)
{
	_cleanup_free_ char *id = import(dirs.src);
	poke(id, "diff/etc/hostname", 0, 'B');
	expect_match(tu_lf(dirs.store, "fsck", "--verify", NULL), 1,
		     ": /etc/hostname: content differs from the layer's digest\n");
	_cleanup_free_ char *gone = tu_ok(tu_lf(dirs.store, "rm", id, NULL));
	expect_out(tu_lf(dirs.store, "fsck", NULL), 0, false, "store '%s': no problems\n",
		   dirs.store);
	expect_match(
	    tu_lf(dirs.store, "fsck", "--verify", NULL), 0,
	    "^verified 0 layers \\(0 files, 0 B\\) in [0-9.]+ s: 0 MB/s\nstore '[^']*': no "
	    "problems\n$");
}

/* A fifo in the file list's place (a careless hand, a damaged directory) is reported as a
 * file list that does not match, never opened blocking; repair writes it anew. */
Test(cli_verify, a_fifo_for_a_file_list_does_not_hang_verify)
{
	_cleanup_free_ char *id = import(dirs.src);
	_cleanup_free_ char *fl = in_layer(id, "filelist");
	cr_assert_eq(unlink(fl), 0);
	cr_assert_eq(mkfifo(fl, 0644), 0);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "^problem: layer %s: file list layers/%s/filelist does not match the "
			   "layer\nverified 1 layer ",
			   id, id + 7) > 0);
	expect_match(tu_lf(dirs.store, "fsck", "--verify", NULL), 1, want);
	tu_run r = tu_lf(dirs.store, "fsck", "--verify", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tu_run_free(&r);
	struct stat st;
	cr_assert_eq(lstat(fl, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
}
