/* The command line over a real store: import, new, commit, tag, untag, rm, ls, inspect, du,
 * prune, fsck; exit codes, messages, and that bad input leaves the store unchanged. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <regex.h>
#include <string.h>
#include <sys/mount.h>
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
	tu_write(dirs.src, "etc/hostname", "box\n");
	tu_write(dirs.src, "bin/tool", "#!/bin/sh\necho hi\n");
	tu_write(dirs.src, "usr/share/doc/readme", "layerfs\n");
}

static void teardown(void)
{
	tu_dirs_fini(&dirs);
}

TestSuite(cli_layers, .init = setup, .fini = teardown);

static bool matches(const char *re, const char *text)
{
	regex_t rx;
	cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	bool ok = regexec(&rx, text, 0, NULL, 0) == 0;
	regfree(&rx);
	return ok;
}

/* Imports SRC and returns the printed layer ID (heap, no newline). */
static char *import(const char *dir, const char *tag)
{
	tu_run r = tag ? tu_lf(dirs.store, "import", dir, "--tag", tag, NULL)
		       : tu_lf(dirs.store, "import", dir, NULL);
	cr_assert_eq(r.status, 0, "import failed: %s", r.err);
	cr_assert(matches("^sha256:[0-9a-f]{64}\n$", r.out), "import printed '%s'", r.out);
	char *id = strndup(r.out, 71);
	tu_run_free(&r);
	return id;
}

/* Creates a ref on PARENT (NULL: scratch) and returns its ID. */
static char *new_ref(const char *parent)
{
	tu_run r = parent ? tu_lf(dirs.store, "new", parent, NULL) : tu_lf(dirs.store, "new", NULL);
	cr_assert_eq(r.status, 0, "new failed: %s", r.err);
	cr_assert(matches("^[0-9a-f]{64}\n$", r.out), "new printed '%s'", r.out);
	char *id = strndup(r.out, 64);
	tu_run_free(&r);
	return id;
}

static char *commit(const char *ref)
{
	tu_run r = tu_lf(dirs.store, "commit", ref, NULL);
	cr_assert_eq(r.status, 0, "commit failed: %s", r.err);
	cr_assert(matches("^sha256:[0-9a-f]{64}\n$", r.out), "commit printed '%s'", r.out);
	char *id = strndup(r.out, 71);
	tu_run_free(&r);
	return id;
}

Test(cli_layers, import_prints_the_layer_id_and_ls_lists_it_with_its_tag)
{
	_cleanup_free_ char *id = import(dirs.src, "base");
	tu_run r = tu_lf(dirs.store, "ls", "--no-trunc", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert(matches("^KIND +ID +PARENT +CREATED +SIZE +NAME\n", r.out), "%s", r.out);
	_cleanup_free_ char *line = NULL;
	cr_assert(asprintf(&line, "layer +%s +- +[0-9-]+ [0-9:]+ +30 B +base\n", id) > 0);
	cr_assert(matches(line, r.out), "ls printed:\n%s", r.out);
	tu_run_free(&r);
}

Test(cli_layers, importing_the_same_tree_twice_gives_the_same_layer)
{
	_cleanup_free_ char *a = import(dirs.src, NULL);
	_cleanup_free_ char *b = import(dirs.src, NULL);
	cr_assert_str_eq(a, b);
	tu_run r = tu_lf(dirs.store, "ls", "--json", NULL);
	cr_assert_eq(r.status, 0);
	/* exactly one layer */
	const char *first = strstr(r.out, "\"id\":");
	cr_assert_not_null(first);
	cr_assert_null(strstr(first + 1, "\"id\":"), "%s", r.out);
	tu_run_free(&r);
}

Test(cli_layers, a_layer_is_found_by_a_twelve_digit_prefix_and_by_tag)
{
	_cleanup_free_ char *id = import(dirs.src, "base");
	char prefix[20];
	snprintf(prefix, sizeof(prefix), "%.12s", id + 7);
	tu_run a = tu_lf(dirs.store, "inspect", "--json", prefix, NULL);
	tu_run b = tu_lf(dirs.store, "inspect", "--json", "base", NULL);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert_eq(b.status, 0, "%s", b.err);
	cr_assert_str_eq(a.out, b.out);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "\"id\":\"%s\"", id) > 0);
	cr_assert_not_null(strstr(a.out, want), "%s", a.out);
	tu_run_free(&a);
	tu_run_free(&b);
}

Test(cli_layers, new_ref_commit_gives_a_child_layer_and_the_ref_is_gone)
{
	_cleanup_free_ char *base = import(dirs.src, NULL);
	_cleanup_free_ char *ref = new_ref(base);
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	tu_write(upper, "etc/motd", "hello\n");
	_cleanup_free_ char *layer = commit(ref);
	cr_assert_str_neq(layer, base);

	tu_run r = tu_lf(dirs.store, "inspect", "--json", layer, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "\"parent\":\"%s\"", base) > 0);
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "\"size\":6,"), "%s", r.out);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "inspect", ref, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *msg = NULL;
	cr_assert(asprintf(&msg, "layerfs: '%s': no such layer, ref or tag\n", ref) > 0);
	cr_assert_str_eq(r.err, msg);
	tu_run_free(&r);
}

Test(cli_layers, committing_the_same_change_twice_reuses_the_layer)
{
	_cleanup_free_ char *base = import(dirs.src, NULL);
	char *layers[2];
	for (int i = 0; i < 2; i++) {
		_cleanup_free_ char *ref = new_ref(base);
		_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
		tu_write(upper, "f", "same\n");
		_cleanup_free_ char *f = tu_path(upper, "f");
		_cleanup_free_ char *d = tu_path(upper, ".");
		struct timespec ts[2] = {{1700000000, 5}, {1700000000, 5}};
		cr_assert_eq(utimensat(AT_FDCWD, f, ts, AT_SYMLINK_NOFOLLOW), 0);
		cr_assert_eq(utimensat(AT_FDCWD, d, ts, AT_SYMLINK_NOFOLLOW), 0);
		layers[i] = commit(ref);
	}
	cr_assert_str_eq(layers[0], layers[1]);
	free(layers[0]);
	free(layers[1]);
	_cleanup_free_ char *state = tu_store_state(dirs.store);
	/* base + one child, and no ref left */
	int n = 0;
	for (const char *p = state; (p = strstr(p, "\nlayers/")); p++)
		n++;
	cr_assert_eq(n, 2, "%s", state);
	cr_assert_null(strstr(state, "\nrefs/"), "%s", state);
}

Test(cli_layers, tag_untag_and_rm_follow_what_needs_a_layer)
{
	_cleanup_free_ char *id = import(dirs.src, "base");
	tu_run r = tu_lf(dirs.store, "rm", "base", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: rm 'base': layer is tagged 'base' (untag it first)\n");
	tu_run_free(&r);

	r = tu_lf(dirs.store, "untag", "base", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "untag", "base", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: untag 'base': no such tag\n");
	tu_run_free(&r);

	_cleanup_free_ char *ref = new_ref(id);
	r = tu_lf(dirs.store, "rm", id, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *msg = NULL;
	cr_assert(asprintf(&msg, "layerfs: rm '%s': layer is the parent of 1 ref\n", id) > 0);
	cr_assert_str_eq(r.err, msg);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "rm", ref, id, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *out = NULL;
	cr_assert(asprintf(&out, "%s\n%s\n", ref, id) > 0);
	cr_assert_str_eq(r.out, out);
	tu_run_free(&r);
	_cleanup_free_ char *state = tu_store_state(dirs.store);
	cr_assert_str_eq(state, "{\"layers\":[],\"refs\":[]}\n");
}

Test(cli_layers, rm_with_one_unknown_id_removes_nothing)
{
	_cleanup_free_ char *id = import(dirs.src, NULL);
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	tu_run r = tu_lf(dirs.store, "rm", id, "0123456789abcdef", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: '0123456789abcdef': no such layer, ref or tag\n");
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);
}

Test(cli_layers, bad_tag_names_are_usage_errors_and_change_nothing)
{
	_cleanup_free_ char *id = import(dirs.src, NULL);
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	const char *bad[] = {"a/b", "a b", "", "-x", ".hidden"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(bad); i++) {
		tu_run r = tu_lf(dirs.store, "tag", "--", bad[i], id, NULL);
		cr_assert_eq(r.status, 2, "tag '%s' exited %d", bad[i], r.status);
		_cleanup_free_ char *want = NULL;
		cr_assert(asprintf(&want,
				   "layerfs tag: invalid tag name '%s': use 1-128 of A-Z a-z 0-9 . _ : -, "
				   "not starting with '.' or '-'\nTry 'layerfs tag --help'.\n",
				   bad[i]) > 0);
		cr_assert_str_eq(r.err, want);
		tu_run_free(&r);
		r = tu_lf(dirs.store, "import", dirs.src, "--tag", bad[i], NULL);
		cr_assert_eq(r.status, 2);
		tu_run_free(&r);
	}
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);
}

Test(cli_layers, tags_that_read_as_ids_are_refused_by_every_command)
{
	_cleanup_free_ char *id = import(dirs.src, "base");
	_cleanup_free_ char *ref = new_ref(id);
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	char upper[13];
	for (int k = 0; k < 12; k++)
		upper[k] = (char)toupper((unsigned char)id[7 + k]);
	upper[12] = '\0';
	static const char *const hex = "12 or more hex digits (in either case) read as an ID prefix";
	const char *const cases[][2] = {
	    {upper, hex},
	    {"e244a1e87b89", hex},
	    {"AbCdEf0123456789", hex},
	    {"sha256:base", "it starts with 'sha256:', as a layer ID does"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		const char *name = cases[i][0];
		tu_run runs[3] = {
		    tu_lf(dirs.store, "tag", name, "base", NULL),
		    tu_lf(dirs.store, "import", dirs.src, "--tag", name, NULL),
		    tu_lf(dirs.store, "commit", ref, "--tag", name, NULL),
		};
		const char *cmds[3] = {"tag", "import", "commit"};
		for (int c = 0; c < 3; c++) {
			cr_assert_eq(runs[c].status, 2, "%s '%s': status %d", cmds[c], name,
				     runs[c].status);
			_cleanup_free_ char *want = NULL;
			cr_assert(asprintf(&want,
					   "layerfs %s: invalid tag name '%s': %s\nTry 'layerfs %s "
					   "--help'.\n",
					   cmds[c], name, cases[i][1], cmds[c]) > 0);
			cr_assert_str_eq(runs[c].err, want);
			cr_assert_str_eq(runs[c].out, "");
			tu_run_free(&runs[c]);
		}
	}
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);

	/* So an upper-case ID prefix always means the ID: the same layer as the lower-case one. */
	tu_run a = tu_lf(dirs.store, "inspect", "--json", upper, NULL);
	char lower[13];
	snprintf(lower, sizeof lower, "%.12s", id + 7);
	tu_run b = tu_lf(dirs.store, "inspect", "--json", lower, NULL);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert_eq(b.status, 0, "%s", b.err);
	cr_assert_str_eq(a.out, b.out);
	tu_run_free(&a);
	tu_run_free(&b);
}

Test(cli_layers, importing_a_missing_directory_fails_and_changes_nothing)
{
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	_cleanup_free_ char *missing = tu_path(dirs.tmp, "nope");
	tu_run r = tu_lf(dirs.store, "import", missing, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: import '%s': No such file or directory\n", missing) > 0);
	cr_assert_str_eq(r.err, want);
	cr_assert_str_eq(r.out, "");
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);
}

Test(cli_layers, importing_a_symlink_loop_fails_and_changes_nothing)
{
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	_cleanup_free_ char *loop = tu_path(dirs.tmp, "loop");
	cr_assert_eq(symlink("loop", loop), 0);
	tu_run r = tu_lf(dirs.store, "import", loop, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: import '%s': Too many levels of symbolic links\n", loop) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);
}

Test(cli_layers, importing_an_unreadable_file_names_it_and_changes_nothing)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to run the import as another user");
	/* The store and the tree belong to nobody, except one file nobody may read. */
	tu_write(dirs.src, "secret", "x");
	free(tu_ok(tu_lf(dirs.store, "new", NULL)));
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	cr_assert_eq(
	    tu_sh("chown -R 65534:65534 '%s' '%s' && chmod 755 '%s' && chown 0:0 '%s/secret' "
		  "&& chmod 600 '%s/secret'",
		  dirs.store, dirs.src, dirs.tmp, dirs.src, dirs.src),
	    0);
	const char *argv[] = {
	    "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", LAYERFS_BIN,
	    "--root",		dirs.store,	 "import",	  dirs.src,	    NULL};
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 1, "status %d: %s", r.status, r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: import '%s': 'secret': Permission denied\n", dirs.src) >
		  0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);
}

/* Adds one entry to the source tree that a layer would read as an overlay marker; returns false
 * (after saying why) when this system cannot make it. */
typedef bool (*marker_fn)(const char *src);

static bool wh_file(const char *src)
{
	tu_write(src, "etc/.wh.hostname", "x");
	return true;
}

static bool wh_opaque(const char *src)
{
	tu_write(src, "usr/share/.wh..wh..opq", "");
	return true;
}

static bool wh_device(const char *src)
{
	_cleanup_free_ char *p = tu_path(src, "bin/gone");
	return mknod(p, S_IFCHR | 0644, makedev(0, 0)) == 0;
}

static bool opaque_xattr(const char *src)
{
	_cleanup_free_ char *p = tu_path(src, "usr");
	return setxattr(p, "user.overlay.opaque", "y", 1, 0) == 0;
}

static bool redirect_xattr(const char *src)
{
	_cleanup_free_ char *p = tu_path(src, "bin/tool");
	return setxattr(p, "trusted.overlay.redirect", "/x", 2, 0) == 0;
}

static void marker_gone(const char *src)
{
	const char *names[] = {"etc/.wh.hostname", "usr/share/.wh..wh..opq", "bin/gone"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = tu_path(src, names[i]);
		unlink(p);
	}
	_cleanup_free_ char *usr = tu_path(src, "usr");
	_cleanup_free_ char *tool = tu_path(src, "bin/tool");
	removexattr(usr, "user.overlay.opaque");
	removexattr(tool, "trusted.overlay.redirect");
}

Test(cli_layers, import_refuses_entries_a_layer_would_read_as_markers)
{
	_cleanup_free_ char *id = import(dirs.src, "base");
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	static const struct {
		marker_fn make;
		const char *path, *why;
	} cases[] = {
	    {wh_file, "etc/.wh.hostname", "a name starting with '.wh.' is a whiteout marker"},
	    {wh_opaque, "usr/share/.wh..wh..opq", "a name starting with '.wh.' is a whiteout marker"},
	    {wh_device, "bin/gone", "a character device 0/0 is a whiteout"},
	    {opaque_xattr, "usr", "xattr 'user.overlay.opaque' is an overlay marker"},
	    {redirect_xattr, "bin/tool", "xattr 'trusted.overlay.redirect' is an overlay marker"},
	};
	size_t tried = 0;
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		if (!cases[i].make(dirs.src)) {
			cr_log_warn("cannot make '%s' here (%s): case skipped", cases[i].path,
				    strerror(errno));
			continue;
		}
		tried++;
		tu_run r = tu_lf(dirs.store, "import", dirs.src, NULL);
		cr_assert_eq(r.status, 1, "'%s': status %d", cases[i].path, r.status);
		_cleanup_free_ char *want = NULL;
		cr_assert(asprintf(&want,
				   "layerfs: import '%s': '%s': %s in a layer: a directory import "
				   "copies files and refuses it\n",
				   dirs.src, cases[i].path, cases[i].why) > 0);
		cr_assert_str_eq(r.err, want);
		cr_assert_str_eq(r.out, "");
		tu_run_free(&r);
		_cleanup_free_ char *after = tu_store_state(dirs.store);
		cr_assert_str_eq(before, after, "'%s' changed the store", cases[i].path);
		marker_gone(dirs.src);
	}
	cr_assert_geq(tried, 3, "the file cases run everywhere");
	/* Without the markers it imports again (a new layer: the directories' mtimes moved). */
	_cleanup_free_ char *again = import(dirs.src, NULL);
	cr_assert_str_neq(again, id);
}

Test(cli_layers, import_keeps_devices_other_than_0_0)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to make a device node");
	_cleanup_free_ char *p = tu_path(dirs.src, "null");
	cr_assert_eq(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
	_cleanup_free_ char *id = import(dirs.src, NULL);
	_cleanup_free_ char *layer = NULL;
	cr_assert(asprintf(&layer, "%s/layers/%s/diff/null", dirs.store, id + 7) > 0);
	struct stat st;
	cr_assert_eq(lstat(layer, &st), 0, "%s: %s", layer, strerror(errno));
	cr_assert(S_ISCHR(st.st_mode));
	cr_assert_eq(st.st_rdev, makedev(1, 3));
}

Test(cli_layers, unknown_ids_and_wrong_kinds_are_named_in_the_message)
{
	_cleanup_free_ char *id = import(dirs.src, "base");
	tu_run r = tu_lf(dirs.store, "commit", "base", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: 'base': is a layer, not a ref\n");
	tu_run_free(&r);

	r = tu_lf(dirs.store, "new", "0123456789abcdef0123", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: '0123456789abcdef0123': no such layer or tag\n");
	tu_run_free(&r);

	r = tu_lf(dirs.store, "inspect", "nosuchtag", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: 'nosuchtag': no such layer, ref or tag\n");
	tu_run_free(&r);
}

Test(cli_layers, du_reports_each_size_and_the_total)
{
	_cleanup_free_ char *base = import(dirs.src, NULL);
	_cleanup_free_ char *ref = new_ref(base);
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	tu_write(upper, "big", "0123456789");
	tu_run r = tu_lf(dirs.store, "du", "--json", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "{\"layers\":[{\"id\":\"%s\",\"size\":30}],\"refs\":[{\"id\":\"%s\",\"size\":10}],"
			   "\"total\":40}\n",
			   base, ref) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "du", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert(matches("\ntotal +- +40 B +-\n$", r.out), "%s", r.out);
	tu_run_free(&r);
}

Test(cli_layers, prune_removes_what_nothing_needs_and_respects_keep_duration)
{
	_cleanup_free_ char *kept = import(dirs.src, "keep");
	tu_write(dirs.tmp, "other/file", "other\n");
	_cleanup_free_ char *other = tu_path(dirs.tmp, "other");
	_cleanup_free_ char *loose = import(other, NULL);

	tu_run r = tu_lf(dirs.store, "prune", "--keep-duration", "1h", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Total reclaimed space: 0 B\n");
	tu_run_free(&r);

	r = tu_lf(dirs.store, "prune", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "removed layer %s\nTotal reclaimed space: 6 B\n", loose) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "inspect", kept, NULL);
	cr_assert_eq(r.status, 0);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "prune", "--keep-duration", "soon", NULL);
	cr_assert_eq(r.status, 2);
	tu_run_free(&r);
}

Test(cli_layers, prune_all_removes_unmounted_refs_then_their_parents)
{
	_cleanup_free_ char *base = import(dirs.src, NULL);
	_cleanup_free_ char *ref = new_ref(base);
	tu_run r = tu_lf(dirs.store, "prune", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "Total reclaimed space: 0 B\n");
	tu_run_free(&r);
	r = tu_lf(dirs.store, "prune", "--all", "--json", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "{\"removed\":[{\"kind\":\"ref\",\"id\":\"%s\",\"size\":0},"
			   "{\"kind\":\"layer\",\"id\":\"%s\",\"size\":30}],\"reclaimed\":30}\n",
			   ref, base) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
}

Test(cli_layers, fsck_of_a_healthy_store_finds_nothing)
{
	_cleanup_free_ char *id = import(dirs.src, NULL);
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "store '%s': no problems\n", dirs.store) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
}

Test(cli_layers, fsck_reports_a_layer_directory_without_record_and_never_removes_it)
{
	_cleanup_free_ char *id = import(dirs.src, NULL);
	const char *hex = "00000000000000000000000000000000000000000000000000000000000000aa";
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s", hex) > 0);
	_cleanup_free_ char *stray = tu_path(dirs.store, rel);
	cr_assert_eq(mkdir(stray, 0700), 0);
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "problem: layer sha256:%s: directory present but not recorded in the "
			   "database\n",
			   hex) > 0);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "layerfs: fsck: 1 problem left (run 'layerfs fsck --repair')\n");
	tu_run_free(&r);
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 1, "%s", r.err);
	free(want);
	cr_assert(asprintf(&want,
			   "problem: layer sha256:%s: directory present but not recorded in the "
			   "database (it has no diff directory: kept, not adopted)\n",
			   hex) > 0);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "layerfs: fsck: 1 problem left\n");
	tu_run_free(&r);
	cr_assert_eq(access(stray, F_OK), 0);
}

Test(cli_layers, a_store_on_a_read_only_filesystem_is_refused_unchanged)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a read-only tmpfs");
	_cleanup_free_ char *mnt = tu_path(dirs.tmp, "ro");
	cr_assert_eq(mkdir(mnt, 0755), 0);
	cr_assert_eq(mount("tmpfs", mnt, "tmpfs", 0, "size=16m"), 0);
	_cleanup_free_ char *store = tu_path(mnt, "store");
	tu_run r = tu_lf(store, "import", dirs.src, "--tag", "t", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	_cleanup_free_ char *before = tu_store_state(store);
	cr_assert_eq(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	r = tu_lf(store, "import", dirs.src, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: store '%s': read-only file system (cannot write)\n", store) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	cr_assert_eq(mount(NULL, mnt, NULL, MS_REMOUNT, NULL), 0);
	_cleanup_free_ char *after = tu_store_state(store);
	cr_assert_str_eq(before, after);
	cr_assert_eq(umount2(mnt, MNT_DETACH), 0);
}

Test(cli_layers, a_full_filesystem_fails_the_import_and_changes_nothing)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a small tmpfs");
	_cleanup_free_ char *mnt = tu_path(dirs.tmp, "small");
	cr_assert_eq(mkdir(mnt, 0755), 0);
	cr_assert_eq(mount("tmpfs", mnt, "tmpfs", 0, "size=16m"), 0);
	_cleanup_free_ char *store = tu_path(mnt, "store");
	tu_run r = tu_lf(store, "import", dirs.src, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_free(&r);
	_cleanup_free_ char *before = tu_store_state(store);
	_cleanup_free_ char *big = tu_path(dirs.tmp, "big");
	cr_assert_eq(tu_sh("mkdir -p '%s' && head -c 24M /dev/zero > '%s/blob'", big, big), 0);
	r = tu_lf(store, "import", big, NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: import '%s': 'blob': No space left on device\n", big) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(store);
	cr_assert_str_eq(before, after);
	r = tu_lf(store, "fsck", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tu_run_free(&r);
	cr_assert_eq(umount2(mnt, MNT_DETACH), 0);
}

/* A ref whose upper directory was removed behind the store's back: each command that needs it
 * names the directory and the cause, and changes nothing. */
Test(cli_layers, commands_on_a_ref_whose_upper_is_gone_name_the_directory)
{
	_cleanup_free_ char *base = import(dirs.src, "base");
	_cleanup_free_ char *ref = tu_ok(tu_lf(dirs.store, "new", "base", NULL));
	ref[strcspn(ref, "\n")] = '\0';
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	tu_rmtree(upper);
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	const char *cmds[] = {"diff", "commit", "inspect"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cmds); i++)
		tu_fails(tu_lf(dirs.store, cmds[i], ref, NULL), 1,
			 "layerfs: %s '%s': upper directory '%s': No such file or directory\n",
			 cmds[i], ref, upper);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(before, after);
}
