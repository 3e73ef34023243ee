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

#define LOSS                                                                                       \
	"(layers and refs are rebuilt from their directories; tags, descriptions and caches "      \
	"are lost)"

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
	tu_dirs_fini(&dirs); /* unmounts what a test left, and fails it */
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

/* Commands that read the store refuse it with MESSAGE (after "layerfs: store 'ROOT': ")
 * instead of showing an empty or partial store; nothing is changed. */
static void assert_refused(const char *message)
{
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: store '%s': %s\n", dirs.store, message) > 0);
	static const char *const cmds[][2] = {{"ls", NULL}, {"du", NULL}, {"inspect", "base"}};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cmds); i++) {
		tu_run r = tu_lf(dirs.store, cmds[i][0], cmds[i][1], NULL);
		cr_assert_eq(r.status, 1, "%s exited %d", cmds[i][0], r.status);
		cr_assert_str_eq(r.out, "");
		cr_assert_str_eq(r.err, want, "%s", cmds[i][0]);
		tu_run_free(&r);
	}
}

/* The tags lived only in the database. */
static void assert_tags_lost(void)
{
	tu_run r = tu_lf(dirs.store, "inspect", "base", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: 'base': no such layer, ref or tag\n");
	tu_run_free(&r);
}

static void assert_tags_kept(void)
{
	_cleanup_free_ char *js = tu_ok(tu_lf(dirs.store, "inspect", "--json", "child", NULL));
	_cleanup_free_ char *id = tu_json_field(js, "id");
	cr_assert_str_eq(id, w.child);
}

Test(cli_damage, records_lost_with_every_database_file_are_re_adopted_and_never_deleted)
{
	rm_db_files("*");
	assert_refused("the database has lost its records (db/meta.db has no format record, yet "
		       "layers/ or refs/ hold directories); run 'layerfs fsck --repair' " LOSS);
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	_cleanup_free_ char *lost = lost_findings("problem: "), *want = NULL;
	cr_assert(asprintf(&want,
			   "problem: database: no format record: the database lost its records; "
			   "--repair writes it again " LOSS "\n%s",
			   lost) > 0);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "layerfs: fsck: 4 problems left (run 'layerfs fsck --repair')\n");
	tu_run_free(&r);

	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	free(lost), free(want);
	lost = lost_findings("repaired: ");
	cr_assert(asprintf(&want,
			   "repaired: database: no format record: the database lost its records; "
			   "written again " LOSS "\n%sstore '%s': no problems\n",
			   lost, dirs.store) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	assert_rebuilt();
	assert_tags_lost();
}

Test(cli_damage, records_lost_with_the_log_are_re_adopted)
{
	/* the log and the regions (where pages not yet written to the tables live) */
	rm_db_files("log.*");
	rm_db_files("__db.0*");
	tu_run r = tu_lf(dirs.store, "ls", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, "");
	cr_assert_not_null(strstr(r.err, "run 'layerfs fsck --repair'"), "%s", r.err);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	_cleanup_free_ char *lost = lost_findings("repaired: ");
	cr_assert_not_null(strstr(r.out, lost), "%s", r.out);
	tu_run_free(&r);
	assert_rebuilt();
}

Test(cli_damage, a_lost_table_file_is_reported_by_ls_du_and_prune_which_remove_nothing)
{
	rm_db_files("layers.db");
	const char *a = w.base + 7, *b = w.child + 7;
	_cleanup_free_ char *msg = NULL;
	cr_assert(asprintf(&msg,
			   "the database has no record of layers/%s and other directories: it lost "
			   "records; run 'layerfs fsck --repair' (it re-adopts them)",
			   strcmp(a, b) < 0 ? a : b) > 0);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: store '%s': %s\n", dirs.store, msg) > 0);
	tu_run r = tu_lf(dirs.store, "ls", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	free(want);
	cr_assert(asprintf(&want, "layerfs: prune: store '%s': %s\n", dirs.store, msg) > 0);
	r = tu_lf(dirs.store, "prune", "--all", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tu_run_free(&r);
	assert_rebuilt();
	assert_tags_kept(); /* tags.db was whole */
}

Test(cli_damage, a_truncated_table_is_named_and_rebuilt_from_the_log)
{
	_cleanup_free_ char *file = tu_path(dirs.store, "db/layers.db");
	cr_assert_eq(truncate(file, 100), 0);
	rm_db_files("__db.0*"); /* as after a reboot that lost the page cache */
	assert_refused("database table db/layers.db is truncated (100 bytes, not a whole number "
		       "of 4096-byte pages); run 'layerfs fsck --repair' (layer records the log "
		       "no longer holds are rebuilt from layers/ (descriptions are lost))");
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, "");
	tu_run_free(&r);
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(
	    asprintf(&want,
		     "repaired: table db/layers.db was truncated (100 bytes, not a whole "
		     "number of 4096-byte pages): made anew from the log, the damaged file "
		     "kept as db/layers.db.damaged (layer records the log no longer held are "
		     "rebuilt from layers/ (descriptions are lost))\nstore '%s': no problems\n",
		     dirs.store) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	_cleanup_free_ char *kept = tu_path(dirs.store, "db/layers.db.damaged");
	struct stat st;
	cr_assert_eq(stat(kept, &st), 0);
	cr_assert_eq(st.st_size, 100);
	assert_rebuilt();
	assert_tags_kept();
}

Test(cli_damage, a_garbage_table_is_named_and_repair_says_what_it_held)
{
	_cleanup_free_ char *file = tu_path(dirs.store, "db/tags.db");
	cr_assert_eq(tu_sh("head -c 8192 /dev/urandom > '%s'", file), 0);
	assert_refused("database table db/tags.db is garbage (8192 bytes with no Berkeley DB "
		       "btree header); run 'layerfs fsck --repair' (tags the log no longer holds "
		       "are lost)");
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	/* the uses index still names the tags the table held */
	char base[200], child[200];
	snprintf(base, sizeof base, "problem: index entry for tag base of layer %s has no record\n",
		 w.base);
	snprintf(child, sizeof child,
		 "problem: index entry for tag child of layer %s has no record\n", w.child);
	_cleanup_free_ char *found = NULL;
	cr_assert(
	    asprintf(&found,
		     "problem: table db/tags.db is garbage (8192 bytes with no Berkeley DB "
		     "btree header): --repair makes it anew (tags the log no longer holds are "
		     "lost)\n%s%s",
		     strcmp(w.base, w.child) < 0 ? base : child,
		     strcmp(w.base, w.child) < 0 ? child : base) > 0);
	cr_assert_str_eq(r.out, found);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	const char *want = "repaired: table db/tags.db was garbage (8192 bytes with no Berkeley DB "
			   "btree header): made anew from the log, the damaged file kept as "
			   "db/tags.db.damaged (tags the log no longer held are lost)\n";
	cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
	tu_run_free(&r);
	assert_rebuilt();
}

Test(cli_damage, garbage_region_files_are_rebuilt_silently)
{
	_cleanup_free_ char *before = tu_ok(tu_lf(dirs.store, "ls", "--json", NULL));
	for (int i = 1; i <= 3; i++) {
		_cleanup_free_ char *rel = NULL;
		cr_assert(asprintf(&rel, "db/__db.00%d", i) > 0);
		_cleanup_free_ char *region = tu_path(dirs.store, rel);
		cr_assert_eq(tu_sh("head -c 4096 /dev/urandom > '%s'", region), 0);
	}
	tu_run r = tu_lf(dirs.store, "ls", "--json", NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "");
	cr_assert_str_eq(r.out, before);
	tu_run_free(&r);
	_cleanup_free_ char *ok = NULL;
	cr_assert(asprintf(&ok, "store '%s': no problems\n", dirs.store) > 0);
	_cleanup_free_ char *fsck = tu_ok(tu_lf(dirs.store, "fsck", NULL));
	cr_assert_str_eq(fsck, ok);
}

/* Berkeley DB maps region files and trusts them: truncated, zeroed or half-length ones made
 * the next command spin or die of SIGBUS or SIGSEGV.  Each kind of damage to each region is
 * mended silently, nothing lost. */
Test(cli_damage, truncated_zeroed_or_cut_region_files_are_rebuilt_silently, .timeout = 120)
{
	_cleanup_free_ char *before = tu_ok(tu_lf(dirs.store, "ls", "--json", NULL));
	_cleanup_free_ char *ok = NULL;
	cr_assert(asprintf(&ok, "store '%s': no problems\n", dirs.store) > 0);
	/* R: the region file; the zeros and garbage keep its size */
	static const char *const damage[] = {
	    ": > \"$R\"",
	    "head -c $(stat -c %s \"$R\") /dev/zero > \"$R.new\" && mv \"$R.new\" \"$R\"",
	    "truncate -s $(( $(stat -c %s \"$R\") / 2 + 100 )) \"$R\"",
	    "head -c $(stat -c %s \"$R\") /dev/urandom > \"$R.new\" && mv \"$R.new\" \"$R\"",
	};
	for (int i = 1; i <= 3; i++) {
		for (size_t k = 0; k < LYR_ARRAY_SIZE(damage); k++) {
			_cleanup_free_ char *rel = NULL;
			cr_assert(asprintf(&rel, "db/__db.00%d", i) > 0);
			_cleanup_free_ char *region = tu_path(dirs.store, rel);
			cr_assert_eq(tu_sh("R='%s'; %s", region, damage[k]), 0);
			tu_run r = tu_lf(dirs.store, "ls", "--json", NULL);
			cr_assert_eq(r.status, 0, "%s damage %zu: %d %s", rel, k, r.status, r.err);
			cr_assert_str_eq(r.err, "");
			cr_assert_str_eq(r.out, before);
			tu_run_free(&r);
			_cleanup_free_ char *fsck = tu_ok(tu_lf(dirs.store, "fsck", NULL));
			cr_assert_str_eq(fsck, ok);
		}
	}
	assert_tags_kept();
}

Test(cli_damage, a_missing_database_directory_is_named_and_rebuilt)
{
	_cleanup_free_ char *db = tu_path(dirs.store, "db");
	tu_rmtree(db);
	assert_refused("the database directory db/ is missing; run 'layerfs fsck --repair' " LOSS);
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	tu_run_free(&r);
	struct stat st;
	cr_assert_eq(stat(db, &st), -1, "a check made db/");
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	_cleanup_free_ char *lost = lost_findings("repaired: "), *want = NULL;
	cr_assert(asprintf(&want,
			   "repaired: database directory db/ was missing: made anew " LOSS
			   "\n%sstore '%s': no problems\n",
			   lost, dirs.store) > 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	assert_rebuilt();
	assert_tags_lost();
}

Test(cli_damage, a_missing_layer_directory_is_reported_and_its_record_kept)
{
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s", w.child + 7) > 0);
	_cleanup_free_ char *dir = tu_path(dirs.store, rel);
	tu_rmtree(dir);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "problem: layer %s has no diff directory\n", w.child) > 0);
	for (int repair = 0; repair < 2; repair++) {
		tu_run r = repair ? tu_lf(dirs.store, "fsck", "--repair", NULL)
				  : tu_lf(dirs.store, "fsck", NULL);
		cr_assert_eq(r.status, 1);
		cr_assert_str_eq(r.out, want);
		tu_run_free(&r);
	}
	_cleanup_free_ char *c = layer_line(w.child);
	cr_assert_str_eq(c, w.child_line);
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
	cr_assert(asprintf(&want,
			   "repaired: database: no format record: the database lost its records; "
			   "written again " LOSS
			   "\n%s%s%sproblem: layer %s: parent layer %s has no "
			   "record\n",
			   strcmp(w.base, w.child) < 0 ? kept : child,
			   strcmp(w.base, w.child) < 0 ? child : kept, ref, w.child, w.base) > 0);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "layerfs: fsck: 2 problems left\n");
	tu_run_free(&r);
	_cleanup_free_ char *data = tu_read(dirs.store, rel);
	cr_assert_str_eq(data, "altered\n");
}

Test(cli_damage, what_is_not_a_layer_or_cannot_be_adopted_is_reported_and_left_alone)
{
	_cleanup_free_ char *junk = tu_path(dirs.store, "layers/junk");
	cr_assert_eq(mkdir(junk, 0755), 0);
	/* a ref directory from before parent notes, whose record was lost */
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "refs/%s/parent", w.ref) > 0);
	_cleanup_free_ char *note = tu_path(dirs.store, rel);
	cr_assert_eq(unlink(note), 0);
	rm_db_files("refs.db");
	rm_db_files("__db.0*");
	rm_db_files("log.*");
	tu_run r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_not_null(
	    strstr(r.out, "problem: unexpected entry layers/junk (not a layer ID; left alone)\n"),
	    "%s", r.out);
	_cleanup_free_ char *want = NULL;
	cr_assert(
	    asprintf(&want,
		     "problem: ref %s: directory present but not recorded in the database (it "
		     "has no parent note: kept, not adopted)\n",
		     w.ref) > 0);
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_str_eq(r.err, "layerfs: fsck: 2 problems left\n");
	tu_run_free(&r);
	struct stat st;
	cr_assert_eq(stat(junk, &st), 0);
	_cleanup_free_ char *up = NULL;
	cr_assert(asprintf(&up, "refs/%s/upper/work/notes", w.ref) > 0);
	_cleanup_free_ char *notes = tu_read(dirs.store, up);
	cr_assert_str_eq(notes, "a week of work\n");
}

Test(cli_damage, a_stale_note_of_an_operation_on_a_recorded_layer_is_removed)
{
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s", w.child + 7) > 0);
	_cleanup_free_ char *dir = tu_path(dirs.store, rel);
	tu_write(dir, "pending", "rm");
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "problem: layer %s: stale note of an interrupted rm (to remove)\n",
			   w.child) > 0);
	tu_run r = tu_lf(dirs.store, "fsck", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	free(want);
	cr_assert(
	    asprintf(&want,
		     "repaired: layer %s: stale note of an interrupted rm (removed)\nstore '%s': "
		     "no problems\n",
		     w.child, dirs.store) > 0);
	r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, want);
	tu_run_free(&r);
	_cleanup_free_ char *c = layer_line(w.child);
	cr_assert_str_eq(c, w.child_line);
}

/* What a damaged disk or a careless hand leaves in a note: zeros, garbage, a fifo (which
 * must not hang fsck). */
static void damage_note(const char *dir, const char *name, int how)
{
	_cleanup_free_ char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	unlink(p);
	if (how == 0)
		cr_assert_eq(tu_sh("head -c 71 /dev/zero > '%s'", p), 0);
	else if (how == 1)
		tu_write(dir, name, "rm\nsha256:zzz\n");
	else
		cr_assert_eq(mkfifo(p, 0644), 0);
}

static char *layer_dir(const char *id)
{
	_cleanup_free_ char *rel = NULL;
	cr_assert(asprintf(&rel, "layers/%s", id + 7) > 0);
	return tu_path(dirs.store, rel);
}

/* A pending note that names no operation says nothing about the directory: with the records
 * lost, the layers are re-adopted, never removed as an import that died. */
Test(cli_damage, a_damaged_pending_note_never_removes_a_layer, .timeout = 60)
{
	for (int how = 0; how < 3; how++) {
		if (how > 0) { /* a fresh store for each kind of damage */
			teardown();
			setup();
		}
		_cleanup_free_ char *b = layer_dir(w.base), *c = layer_dir(w.child);
		damage_note(b, "pending", how);
		damage_note(c, "pending", (how + 1) % 3);
		rm_db_files("*");
		tu_run r = tu_lf(dirs.store, "fsck", "--repair", NULL);
		cr_assert_eq(r.status, 0, "%d: %s%s", how, r.out, r.err);
		for (int i = 0; i < 2; i++) {
			const char *id = i ? w.child : w.base;
			_cleanup_free_ char *want = NULL;
			cr_assert(
			    asprintf(&want,
				     "repaired: layer %s: damaged note layers/%s/pending (not "
				     "an operation's note; removed)\n",
				     id, id + 7) > 0);
			cr_assert_not_null(strstr(r.out, want), "%d: %s", how, r.out);
		}
		_cleanup_free_ char *lost = lost_findings("repaired: ");
		cr_assert_not_null(strstr(r.out, lost), "%d: %s", how, r.out);
		tu_run_free(&r);
		assert_rebuilt();
	}
}

/* A damaged parent note of a layer is no note: the parent is found by the ID and the note
 * written again; a ref's is refused rather than read as "scratch" (zeros) or garbage. */
Test(cli_damage, a_damaged_parent_note_never_adopts_under_a_wrong_parent, .timeout = 60)
{
	for (int how = 0; how < 3; how++) {
		if (how > 0) {
			teardown();
			setup();
		}
		_cleanup_free_ char *c = layer_dir(w.child), *rrel = NULL;
		cr_assert(asprintf(&rrel, "refs/%s", w.ref) > 0);
		_cleanup_free_ char *rdir = tu_path(dirs.store, rrel);
		damage_note(c, "parent", how);
		damage_note(rdir, "parent", how);
		rm_db_files("*");
		tu_run r = tu_lf(dirs.store, "fsck", "--repair", NULL);
		cr_assert_eq(r.status, 1, "%d: %s%s", how, r.out, r.err);
		_cleanup_free_ char *want = NULL;
		cr_assert(asprintf(&want,
				   "problem: ref %s: directory present but not recorded in the "
				   "database (its parent note is not a layer ID: kept, not "
				   "adopted)\n",
				   w.ref) > 0);
		cr_assert_not_null(strstr(r.out, want), "%d: %s", how, r.out);
		cr_assert_str_eq(r.err, "layerfs: fsck: 1 problem left\n");
		tu_run_free(&r);
		_cleanup_free_ char *cl = layer_line(w.child), *note = tu_read(c, "parent");
		cr_assert_str_eq(cl, w.child_line);
		cr_assert_str_eq(note, w.base);
		/* the note put right by hand, the ref comes back on its parent */
		_cleanup_free_ char *np = tu_path(rdir, "parent");
		unlink(np);
		tu_write(rdir, "parent", w.child);
		r = tu_lf(dirs.store, "fsck", "--repair", NULL);
		cr_assert_eq(r.status, 0, "%d: %s%s", how, r.out, r.err);
		tu_run_free(&r);
		assert_rebuilt();
	}
}

/* A full disk under the store: the first write to a region page the filesystem cannot back
 * killed the process with SIGBUS (a marker that could not be written read as a dead
 * opener and forced a recovery that grew the regions).  Commands that must write now fail
 * naming the object and ENOSPC, those that read work, and nothing is left to repair. */
Test(cli_damage, a_full_disk_fails_commands_cleanly_and_leaves_a_sound_store, .timeout = 120)
{
	if (geteuid() != 0)
		cr_skip_test("mounts a small tmpfs: needs root (runs as root in CI)");
	_cleanup_free_ char *fs = tu_path(dirs.tmp, "full");
	cr_assert_eq(mkdir(fs, 0700), 0);
	if (tu_sh("mount -t tmpfs -o size=24m tmpfs '%s' 2>/dev/null", fs) != 0)
		cr_skip_test("cannot mount a tmpfs here");
	_cleanup_free_ char *store = tu_path(fs, "s");
	_cleanup_free_ char *base =
	    first_line(tu_lf(store, "import", dirs.src, "--tag", "base", NULL));
	_cleanup_free_ char *ref = first_line(tu_lf(store, "new", "base", NULL));
	_cleanup_free_ char *before = tu_ok(tu_lf(store, "ls", "--json", NULL));
	/* fill it: dd stops at ENOSPC */
	tu_sh("dd if=/dev/zero of='%s/fill' bs=64k 2>/dev/null", fs);
	tu_run r = tu_lf(store, "new", "base", NULL);
	cr_assert_eq(r.status, 1, "%d %s", r.status, r.err);
	cr_assert_str_eq(r.err, "layerfs: new ref on 'base': No space left on device\n");
	tu_run_free(&r);
	_cleanup_free_ char *up = tu_ref_upper(store, ref);
	tu_sh("echo change > '%s/file' 2>/dev/null", up);
	r = tu_lf(store, "commit", ref, NULL);
	cr_assert_eq(r.status, 1, "%d %s", r.status, r.err);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "layerfs: commit '%s': No space left on device\n", ref) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	_cleanup_free_ char *ok = NULL;
	cr_assert(asprintf(&ok, "store '%s': no problems\n", store) > 0);
	for (int freed = 0; freed < 2; freed++) {
		_cleanup_free_ char *now = tu_ok(tu_lf(store, "ls", "--json", NULL));
		cr_assert_str_eq(now, before);
		_cleanup_free_ char *fsck = tu_ok(tu_lf(store, "fsck", NULL));
		cr_assert_str_eq(fsck, ok);
		cr_assert_eq(tu_sh("rm -f '%s/fill'", fs), 0);
	}
	_cleanup_free_ char *layer = first_line(tu_lf(store, "commit", ref, NULL));
	cr_assert_str_neq(layer, base);
	cr_assert_eq(tu_sh("umount '%s'", fs), 0);
}

/* The parent notes are what rebuilds lost records: fsck checks those of recorded layers and
 * refs against the records, and repair writes a damaged or wrong one again, so a later loss
 * of the database finds them sound. */
Test(cli_damage, a_damaged_or_wrong_parent_note_is_written_again_from_the_record)
{
	_cleanup_free_ char *c = layer_dir(w.child), *rrel = NULL;
	cr_assert(asprintf(&rrel, "refs/%s", w.ref) > 0);
	_cleanup_free_ char *rdir = tu_path(dirs.store, rrel);
	damage_note(c, "parent", 0);
	_cleanup_free_ char *np = tu_path(rdir, "parent");
	unlink(np);
	tu_write(rdir, "parent", w.base); /* the ref is on the child */
	_cleanup_free_ char *want = NULL;
	for (int repair = 0; repair < 2; repair++) {
		const char *what = repair ? "repaired" : "problem",
			   *fix = repair ? "written again" : "to write again";
		free(want);
		cr_assert(asprintf(&want,
				   "%s: ref %s: parent note refs/%s/parent names another parent "
				   "than the record (%s from the record)\n"
				   "%s: layer %s: parent note layers/%s/parent is damaged (%s from "
				   "the record)\n",
				   what, w.ref, w.ref, fix, what, w.child, w.child + 7, fix) > 0);
		tu_run r = repair ? tu_lf(dirs.store, "fsck", "--repair", NULL)
				  : tu_lf(dirs.store, "fsck", NULL);
		cr_assert_eq(r.status, repair ? 0 : 1, "%s", r.err);
		cr_assert_not_null(strstr(r.out, want), "%s", r.out);
		tu_run_free(&r);
	}
	_cleanup_free_ char *cn = tu_read(c, "parent"), *rn = tu_read(rdir, "parent");
	cr_assert_str_eq(cn, w.base);
	cr_assert_str_eq(rn, w.child);
	/* and a loss of the database now rebuilds the ref on its true parent */
	rm_db_files("*");
	tu_run r = tu_lf(dirs.store, "fsck", "--repair", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tu_run_free(&r);
	assert_rebuilt();
}
