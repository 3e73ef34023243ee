#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>

#include "../../db/testing.h"
#include "dbtest.h"

static bool is_dir(const char *root, const char *rel)
{
	char *p = tu_path(root, rel);
	struct stat st;
	bool yes = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return yes;
}

Test(db_store, open_creates_the_layout_and_an_empty_store)
{
	tstore t;
	ts_setup(&t);
	cr_assert(is_dir(t.root, "db"));
	cr_assert(is_dir(t.root, "layers"));
	cr_assert(is_dir(t.root, "refs"));
	cr_assert(is_dir(t.root, "tmp"));
	cr_assert_str_eq(lyr_store_root(t.s), t.root);
	char *state = ts_state(&t);
	cr_assert_str_eq(state, "layers/: \nrefs/: \ntmp/: \n");
	free(state);
	ts_teardown(&t);
}

Test(db_store, reopening_keeps_what_was_stored)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	char *before = ts_state(&t);
	ts_reopen(&t);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	cr_assert_eq(strlen(ref), 64);
	free(before);
	free(after);
	ts_teardown(&t);
}

Test(db_store, two_handles_in_one_process_see_each_others_changes)
{
	tstore t;
	ts_setup(&t);
	lyr_store *other;
	cr_assert_eq(lyr_store_open(t.root, &other), 0);
	char ref[LYR_ID_MAX];
	ts_new(other, NULL, ref);
	lyr_ref_info info;
	cr_assert_eq(lyr_ref_get(t.s, ref, &info), 0);
	cr_assert_str_eq(info.id, ref);
	lyr_ref_info_clear(&info);
	lyr_store_free(other);
	ts_teardown(&t);
}

Test(db_store, a_store_of_a_newer_format_is_refused_with_eproto_and_left_alone)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	cr_assert_eq(lyr_store_debug_set_format(t.s, LYR_STORE_FORMAT + 1), 0);
	lyr_store_free(t.s);
	t.s = NULL;
	char *refs_before = ts_ls(t.root, "refs");
	lyr_store *s = NULL;
	cr_assert_eq(lyr_store_open(t.root, &s), -EPROTO);
	cr_assert_null(s);
	char want[512];
	snprintf(want, sizeof want, "store '%s': format %d is newer than this layerfs supports (%d)",
		 t.root, LYR_STORE_FORMAT + 1, LYR_STORE_FORMAT);
	cr_assert_str_eq(lyr_store_last_error(), want);
	char *refs_after = ts_ls(t.root, "refs");
	cr_assert_str_eq(refs_after, refs_before);
	cr_assert_str_eq(refs_after, ref);
	free(refs_before);
	free(refs_after);
	ts_teardown(&t);
}

Test(db_store, default_root_prefers_layerfs_root_then_the_system_or_user_location)
{
	setenv("LAYERFS_ROOT", "/srv/layers", 1);
	char *p = lyr_store_default_root();
	cr_assert_str_eq(p, "/srv/layers");
	free(p);
	unsetenv("LAYERFS_ROOT");
	setenv("XDG_DATA_HOME", "/home/u/.data", 1);
	setenv("HOME", "/home/u", 1);
	p = lyr_store_default_root();
	cr_assert_str_eq(p, geteuid() == 0 ? "/var/lib/layerfs" : "/home/u/.data/layerfs");
	free(p);
	unsetenv("XDG_DATA_HOME");
	p = lyr_store_default_root();
	cr_assert_str_eq(p, geteuid() == 0 ? "/var/lib/layerfs" : "/home/u/.local/share/layerfs");
	free(p);
}

Test(db_store, a_store_on_a_read_only_filesystem_is_refused_with_erofs_and_unchanged)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a read-only tmpfs");
	char *dir = tu_mkdtemp();
	if (mount("tmpfs", dir, "tmpfs", 0, "size=64m") < 0)
		cr_skip_test("cannot mount tmpfs: %s", strerror(errno));
	tstore t = {.dir = dir, .root = tu_path(dir, "store")};
	cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
	char ref[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	char *before = ts_state(&t);
	lyr_store_free(t.s);
	t.s = NULL;
	cr_assert_eq(mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0, "%s", strerror(errno));
	lyr_store *s = NULL;
	int r = lyr_store_open(t.root, &s);
	char *msg = strdup(lyr_store_last_error());
	/* a new store on it cannot be created either */
	char *other = tu_path(dir, "other");
	int r2 = lyr_store_open(other, &s);
	cr_assert_eq(mount(NULL, dir, NULL, MS_REMOUNT, NULL), 0);
	cr_assert_eq(r, -EROFS);
	cr_assert_eq(r2, -EROFS);
	char want[512];
	snprintf(want, sizeof want, "store '%s': read-only file system (cannot write)", t.root);
	cr_assert_str_eq(msg, want);
	cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	lyr_store_free(t.s);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	free(before), free(after), free(msg), free(other), free(t.root), free(dir);
}

Test(db_store, a_relative_root_is_made_absolute_so_handed_out_paths_survive_chdir)
{
	tstore t;
	ts_setup(&t);
	cr_assert_eq(chdir(t.dir), 0);
	lyr_store *s;
	cr_assert_eq(lyr_store_open("./store", &s), 0);
	cr_assert_str_eq(lyr_store_root(s), t.root);
	char ref[LYR_ID_MAX], *upper, *work;
	ts_new(s, NULL, ref);
	cr_assert_eq(lyr_ref_dirs(s, ref, &upper, &work), 0);
	cr_assert_eq(upper[0], '/');
	cr_assert_eq(chdir("/"), 0);
	struct stat st;
	cr_assert_eq(stat(upper, &st), 0);
	free(upper), free(work);
	lyr_store_free(s);
	ts_teardown(&t);
}
