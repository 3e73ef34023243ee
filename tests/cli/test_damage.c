/* A damaged store: records lost, tables truncated or garbage, region files garbage,
 * directories missing.  Each case asserts what commands say about it, the exact findings of
 * fsck, and the result of fsck --repair: layers re-adopted under the same IDs with the same
 * parents, their data untouched, and what could not be rebuilt named as lost. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "testutil.h"

static tu_dirs dirs;

/* The store every case damages: base (tagged "base") <- child (tagged "child") <- a ref
 * holding a file nobody committed. */
static struct {
	char *base, *child, *ref;
	char *base_line, *child_line; /* what survives a rebuild, see layer_line */
} w;

static char *first_line(tu_run r)
{
	char *out = tu_ok(r);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* The facts about a layer that a rebuild must give back exactly: ID, parent, diff digest,
 * size, entries (`inspect --json`). */
static char *layer_line(const char *id)
{
	_cleanup_free_ char *js = tu_ok(tu_lf(dirs.store, "inspect", "--json", id, NULL));
	static const char *const keys[] = {"id", "parent", "diff_digest", "size", "entries"};
	char *line = NULL;
	for (size_t i = 0; i < LYR_ARRAY_SIZE(keys); i++) {
		_cleanup_free_ char *v = tu_json_field(js, keys[i]);
		char *next;
		cr_assert(asprintf(&next, "%s%s=%s ", line ? line : "", keys[i], v ? v : "?") > 0);
		free(line);
		line = next;
	}
	return line;
}

static void setup(void)
{
	tu_dirs_init(&dirs);
	tu_write(dirs.src, "etc/hostname", "box\n");
	w.base = first_line(tu_lf(dirs.store, "import", dirs.src, "--tag", "base", NULL));
	_cleanup_free_ char *r1 = first_line(tu_lf(dirs.store, "new", "base", NULL));
	_cleanup_free_ char *up1 = tu_ref_upper(dirs.store, r1);
	tu_write(up1, "etc/motd", "hello\n");
	w.child = first_line(tu_lf(dirs.store, "commit", r1, "--tag", "child", NULL));
	w.ref = first_line(tu_lf(dirs.store, "new", "child", NULL));
	_cleanup_free_ char *up2 = tu_ref_upper(dirs.store, w.ref);
	tu_write(up2, "work/notes", "a week of work\n");
	w.base_line = layer_line(w.base);
	w.child_line = layer_line(w.child);
}

static void teardown(void)
{
	free(w.base), free(w.child), free(w.ref), free(w.base_line), free(w.child_line);
	tu_dirs_fini(&dirs);
}

TestSuite(cli_damage, .init = setup, .fini = teardown);

/* The three directories of the store the database forgot, as fsck lists them: layers in
 * name order, then the ref. */
static char *lost_findings(const char *prefix)
{
	const char *a = w.base, *b = w.child;
	if (strcmp(a, b) > 0)
		a = w.child, b = w.base;
	char *s;
	cr_assert(asprintf(&s,
			   "%slayer %s: directory present but not recorded in the database\n"
			   "%slayer %s: directory present but not recorded in the database\n"
			   "%sref %s: directory present but not recorded in the database\n",
			   prefix, a, prefix, b, prefix, w.ref) > 0);
	return s;
}

/* After a rebuild: both layers are back with the same IDs, parents, digests and sizes, the
 * ref is back on its parent with its upper untouched, and a second fsck finds nothing. */
static void assert_rebuilt(void)
{
	_cleanup_free_ char *b = layer_line(w.base), *c = layer_line(w.child);
	cr_assert_str_eq(b, w.base_line);
	cr_assert_str_eq(c, w.child_line);
	_cleanup_free_ char *js = tu_ok(tu_lf(dirs.store, "inspect", "--json", w.ref, NULL));
	_cleanup_free_ char *parent = tu_json_field(js, "parent");
	cr_assert_str_eq(parent, w.child);
	_cleanup_free_ char *up = tu_ref_upper(dirs.store, w.ref);
	_cleanup_free_ char *notes = tu_read(up, "work/notes");
	cr_assert_str_eq(notes, "a week of work\n");
	_cleanup_free_ char *ok = NULL;
	cr_assert(asprintf(&ok, "store '%s': no problems\n", dirs.store) > 0);
	_cleanup_free_ char *again = tu_ok(tu_lf(dirs.store, "fsck", NULL));
	cr_assert_str_eq(again, ok);
}

static void rm_db_files(const char *glob)
{
	cr_assert_eq(tu_sh("rm -f '%s'/db/%s", dirs.store, glob), 0);
}

Test(cli_damage, records_lost_with_every_database_file_are_re_adopted_and_never_deleted)
{
	rm_db_files("*");
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *want = lost_findings("problem: ");
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);

	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	free(want);
	want = lost_findings("repaired: ");
	cr_assert(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
	tu_run_free(&r);
	assert_rebuilt();
}

Test(cli_damage, layers_without_a_parent_note_find_their_parent_by_their_id)
{
	/* stores written before parent notes existed */
	cr_assert_eq(tu_sh("rm -f '%s'/layers/*/parent", dirs.store), 0);
	rm_db_files("*");
	tu_run r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tu_run_free(&r);
	assert_rebuilt();
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s/parent", w.child + 7) > 0);
	_cleanup_free_ char *note = tu_read(dirs.store, rel);
	cr_assert_str_eq(note, w.base, "the parent found is noted for next time");
}

Test(cli_damage, a_layer_whose_content_does_not_give_its_id_is_kept_not_adopted)
{
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s/diff/etc/hostname", w.base + 7) > 0);
	_cleanup_free_ char *changed = tu_path(dirs.store, rel);
	cr_assert_eq(tu_sh("echo altered > '%s'", changed), 0);
	rm_db_files("*");
	tu_run r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 1);
	/* the child is adopted all the same, naming the parent it was committed on */
	char kept[400], child[300], ref[300];
	snprintf(kept, sizeof kept,
		 "problem: layer %s: directory present but not recorded in the database (its diff "
		 "and parent note do not give its ID: kept, not adopted)\n",
		 w.base);
	snprintf(child, sizeof child,
		 "repaired: layer %s: directory present but not recorded in the database\n",
		 w.child);
	snprintf(ref, sizeof ref,
		 "repaired: ref %s: directory present but not recorded in the database\n", w.ref);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "%s%s%sproblem: layer %s: parent layer %s has no record\n",
			   strcmp(w.base, w.child) < 0 ? kept : child,
			   strcmp(w.base, w.child) < 0 ? child : kept, ref, w.child, w.base) > 0);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "layerfs: fsck: 2 problems left\n");
	tu_run_free(&r);
	_cleanup_free_ char *data = tu_read(dirs.store, rel);
	cr_assert_str_eq(data, "altered\n");
}
