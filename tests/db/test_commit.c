#include <time.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "dbtest.h"

/* The layer ID the store must give DIR committed on PARENT. */
static void expected_id(const char *dir, const char *parent, char *ret)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	char digest[LYR_DIGEST_TEXT_LEN], err[4096];
	cr_assert_eq(lyr_hash_diff(fd, NULL, digest, err), 0);
	close(fd);
	lyr_layer_id(parent, digest, ret);
}

static char *layer_dir(tstore *t, const char *id)
{
	char rel[160];
	snprintf(rel, sizeof rel, "layers/%s/diff", id + strlen("sha256:"));
	return tu_path(t->root, rel);
}

Test(db_commit, commit_renames_the_upper_into_the_layer_and_records_it)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX], layer[LYR_ID_MAX], want[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "a", "hello");
	ts_write(t.s, ref, "d/b", "abc");
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(t.s, ref, &upper, &work), 0);
	struct stat before;
	char *a = tu_path(upper, "a");
	cr_assert_eq(stat(a, &before), 0);
	expected_id(upper, "", want);

	cr_assert_eq(lyr_ref_commit(t.s, ref, NULL, NULL, layer), 0);
	cr_assert_str_eq(layer, want);
	char *diff = layer_dir(&t, layer);
	char *a2 = tu_path(diff, "a");
	struct stat after;
	cr_assert_eq(stat(a2, &after), 0);
	cr_assert_eq(after.st_ino, before.st_ino, "the file was copied, not renamed");
	cr_assert_eq(after.st_dev, before.st_dev);
	char *got = tu_read(diff, "d/b");
	cr_assert_str_eq(got, "abc");

	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, layer, &info), 0);
	cr_assert_str_eq(info.parent, "");
	cr_assert_eq(info.size, 8);
	cr_assert_eq(info.entries, 3);
	cr_assert_str_eq(info.desc, "test");
	cr_assert_null(info.tags[0]);
	cr_assert_eq(info.children, 0);
	cr_assert_eq(info.refs, 0);
	lyr_layer_info_clear(&info);
	lyr_ref_info rinfo;
	cr_assert_eq(lyr_ref_get(t.s, ref, &rinfo), -ENOENT);
	ts_assert_empty(t.root, "refs");
	ts_assert_empty(t.root, "tmp");
	free(upper), free(work), free(a), free(a2), free(diff), free(got);
	ts_teardown(&t);
}

Test(db_commit, the_same_diff_on_the_same_parent_twice_reuses_the_first_layer)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX], l1[LYR_ID_MAX], l2[LYR_ID_MAX], r2[LYR_ID_MAX];
	ts_layer(t.s, NULL, "base", "b", NULL, base);
	ts_layer(t.s, base, "f", "same", NULL, l1);
	char *diff = layer_dir(&t, l1);
	struct stat st1;
	char *f = tu_path(diff, "f");
	cr_assert_eq(stat(f, &st1), 0);
	ts_new(t.s, base, r2);
	/* same content and metadata: copy the timestamps of the first commit */
	ts_write(t.s, r2, "f", "same");
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(t.s, r2, &upper, &work), 0);
	char *f2 = tu_path(upper, "f");
	struct timespec ts[2] = {st1.st_atim, st1.st_mtim};
	cr_assert_eq(utimensat(AT_FDCWD, f2, ts, 0), 0);
	struct stat dst1;
	cr_assert_eq(stat(diff, &dst1), 0);
	struct timespec dts[2] = {dst1.st_atim, dst1.st_mtim};
	cr_assert_eq(utimensat(AT_FDCWD, upper, dts, 0), 0);
	cr_assert_eq(lyr_ref_commit(t.s, r2, NULL, NULL, l2), 0);
	cr_assert_str_eq(l2, l1);
	struct stat st2;
	cr_assert_eq(stat(f, &st2), 0);
	cr_assert_eq(st2.st_ino, st1.st_ino, "the first layer's data was replaced");
	char *ls = ts_ls(t.root, "layers");
	char want[200];
	snprintf(want, sizeof want, "%s %s", strcmp(base, l1) < 0 ? base + 7 : l1 + 7,
		 strcmp(base, l1) < 0 ? l1 + 7 : base + 7);
	cr_assert_str_eq(ls, want);
	free(ls);
	ts_assert_empty(t.root, "refs");
	ts_assert_empty(t.root, "tmp");
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, base, &info), 0);
	cr_assert_eq(info.children, 1);
	cr_assert_eq(info.refs, 0);
	lyr_layer_info_clear(&info);
	free(diff), free(f), free(f2), free(upper), free(work);
	ts_teardown(&t);
}

Test(db_commit, a_layer_id_depends_on_the_parent)
{
	tstore t;
	ts_setup(&t);
	char p1[LYR_ID_MAX], p2[LYR_ID_MAX], r1[LYR_ID_MAX], r2[LYR_ID_MAX], want[LYR_ID_MAX];
	ts_layer(t.s, NULL, "p", "1", NULL, p1);
	ts_layer(t.s, NULL, "p", "2", NULL, p2);
	ts_new(t.s, p1, r1);
	ts_new(t.s, p2, r2);
	ts_write(t.s, r1, "c", "same");
	ts_write(t.s, r2, "c", "same");
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(t.s, r1, &upper, &work), 0);
	expected_id(upper, p1, want);
	char l1[LYR_ID_MAX], l2[LYR_ID_MAX];
	cr_assert_eq(lyr_ref_commit(t.s, r1, NULL, NULL, l1), 0);
	cr_assert_eq(lyr_ref_commit(t.s, r2, NULL, NULL, l2), 0);
	cr_assert_str_eq(l1, want);
	cr_assert_str_neq(l1, l2);
	free(upper), free(work);
	ts_teardown(&t);
}

Test(db_commit, commit_with_a_tag_points_the_tag_at_the_new_layer)
{
	tstore t;
	ts_setup(&t);
	char layer[LYR_ID_MAX], id[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "x", "v1", layer);
	lyr_obj_kind kind;
	cr_assert_eq(lyr_store_resolve(t.s, "v1", &kind, id), 0);
	cr_assert_eq(kind, LYR_OBJ_LAYER);
	cr_assert_str_eq(id, layer);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, layer, &info), 0);
	cr_assert_str_eq(info.tags[0], "v1");
	cr_assert_null(info.tags[1]);
	lyr_layer_info_clear(&info);
	ts_teardown(&t);
}

Test(db_commit, a_mounted_ref_is_refused_with_ebusy_and_left_as_it_was)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX], layer[LYR_ID_MAX] = "";
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "f", "x");
	cr_assert_eq(lyr_ref_set_mount(t.s, ref, "/mnt/x", getpid()), 0);
	char *before = ts_state(&t);
	cr_assert_eq(lyr_ref_commit(t.s, ref, NULL, NULL, layer), -EBUSY);
	char want[256];
	snprintf(want, sizeof want, "commit '%s': ref is mounted at '/mnt/x'", ref);
	cr_assert_str_eq(lyr_store_last_error(), want);
	cr_assert_str_eq(layer, "");
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after);
	ts_teardown(&t);
}

Test(db_commit, a_bad_tag_is_refused_before_anything_changes)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX], layer[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "f", "x");
	char *before = ts_state(&t);
	cr_assert_eq(lyr_ref_commit(t.s, ref, "a/b", NULL, layer), -EINVAL);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after);
	ts_teardown(&t);
}

Test(db_commit, the_chain_lists_diff_dirs_topmost_first)
{
	tstore t;
	ts_setup(&t);
	char l1[LYR_ID_MAX], l2[LYR_ID_MAX], l3[LYR_ID_MAX];
	ts_layer(t.s, NULL, "a", "1", NULL, l1);
	ts_layer(t.s, l1, "b", "2", NULL, l2);
	ts_layer(t.s, l2, "c", "3", NULL, l3);
	char **dirs;
	cr_assert_eq(lyr_layer_chain(t.s, l3, &dirs), 0);
	char *d3 = layer_dir(&t, l3), *d2 = layer_dir(&t, l2), *d1 = layer_dir(&t, l1);
	cr_assert_str_eq(dirs[0], d3);
	cr_assert_str_eq(dirs[1], d2);
	cr_assert_str_eq(dirs[2], d1);
	cr_assert_null(dirs[3]);
	lyr_strv_free(dirs);
	const char *missing = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	cr_assert_eq(lyr_layer_chain(t.s, missing, &dirs), -ENOENT);
	free(d1), free(d2), free(d3);
	ts_teardown(&t);
}

static void write_many(const char *dir, int n)
{
	char name[512];
	for (int i = 0; i < n; i++) {
		if (i % 1000 == 0) {
			snprintf(name, sizeof name, "%s/d%d", dir, i / 1000);
			cr_assert_eq(mkdir(name, 0755), 0);
		}
		snprintf(name, sizeof name, "%s/d%d/f%d", dir, i / 1000, i);
		int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		cr_assert_geq(fd, 0);
		close(fd);
	}
}

/* Commit must not walk the parent: with the parent's diff directory moved away, committing a
 * one-file change on top still works and gives the ID of the upper alone. */
Test(db_commit, commit_reads_only_the_upper_and_never_the_parent)
{
	/* 50,000 file creations take seconds on a busy disk: use a tmpfs where we may. */
	char *mnt = tu_mkdtemp();
	bool mounted = geteuid() == 0 && mount("tmpfs", mnt, "tmpfs", 0, "size=512m") == 0;
	tstore t = {.dir = mnt, .root = tu_path(mnt, "store")};
	cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
	char base_ref[LYR_ID_MAX], base[LYR_ID_MAX], ref[LYR_ID_MAX], layer[LYR_ID_MAX];
	ts_new(t.s, NULL, base_ref);
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(t.s, base_ref, &upper, &work), 0);
	write_many(upper, 50000);
	cr_assert_eq(lyr_ref_commit(t.s, base_ref, NULL, NULL, base), 0);
	free(upper), free(work);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, base, &info), 0);
	cr_assert_eq(info.entries, 50050);
	lyr_layer_info_clear(&info);

	ts_new(t.s, base, ref);
	ts_write(t.s, ref, "d7/f7001", "changed");
	char *diff = layer_dir(&t, base);
	char *away = tu_path(t.dir, "away");
	cr_assert_eq(rename(diff, away), 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = lyr_ref_commit(t.s, ref, NULL, NULL, layer);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(rename(away, diff), 0);
	cr_assert_eq(r, 0);
	cr_log_info("commit of one changed file on a 50,000-file parent: %.2f ms",
		    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	cr_assert_eq(lyr_layer_get(t.s, layer, &info), 0);
	cr_assert_eq(info.entries, 2);
	cr_assert_eq(info.size, 7);
	cr_assert_str_eq(info.parent, base);
	lyr_layer_info_clear(&info);
	free(diff), free(away);
	lyr_store_free(t.s);
	if (mounted)
		umount2(mnt, MNT_DETACH);
	tu_rmtree(mnt);
	free(mnt), free(t.root);
}

/* Sets the times of REF's upper directory to SECONDS, as if it had been made then. */
static void age_upper(lyr_store *s, const char *ref, time_t seconds)
{
	_cleanup_free_ char *upper = NULL, *work = NULL;
	cr_assert_eq(lyr_ref_dirs(s, ref, &upper, &work), 0);
	struct timespec ts[2] = {{seconds, 0}, {seconds, 0}};
	cr_assert_eq(utimensat(AT_FDCWD, upper, ts, 0), 0);
}

Test(db_commit, empty_refs_on_one_parent_commit_to_one_layer_whenever_they_were_made)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX], a[LYR_ID_MAX], b[LYR_ID_MAX], la[LYR_ID_MAX], lb[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "x", NULL, base);
	ts_new(t.s, base, a);
	ts_new(t.s, base, b);
	age_upper(t.s, a, 1000000000);
	age_upper(t.s, b, 1100000000);
	cr_assert_eq(lyr_ref_commit(t.s, a, NULL, NULL, la), 0);
	cr_assert_eq(lyr_ref_commit(t.s, b, NULL, NULL, lb), 0);
	cr_assert_str_eq(la, lb);
	cr_assert_str_neq(la, base);
	/* scratch too */
	ts_new(t.s, NULL, a);
	ts_new(t.s, NULL, b);
	age_upper(t.s, a, 1000000000);
	age_upper(t.s, b, 1100000000);
	cr_assert_eq(lyr_ref_commit(t.s, a, NULL, NULL, la), 0);
	cr_assert_eq(lyr_ref_commit(t.s, b, NULL, NULL, lb), 0);
	cr_assert_str_eq(la, lb);
	ts_teardown(&t);
}

Test(db_commit, a_chmod_of_the_root_alone_is_a_change)
{
	tstore t;
	ts_setup(&t);
	char base[LYR_ID_MAX], a[LYR_ID_MAX], b[LYR_ID_MAX], la[LYR_ID_MAX], lb[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "x", NULL, base);
	ts_new(t.s, base, a);
	ts_new(t.s, base, b);
	_cleanup_free_ char *upper = NULL, *work = NULL;
	cr_assert_eq(lyr_ref_dirs(t.s, b, &upper, &work), 0);
	cr_assert_eq(chmod(upper, 0700), 0);
	cr_assert_eq(lyr_ref_commit(t.s, a, NULL, NULL, la), 0);
	cr_assert_eq(lyr_ref_commit(t.s, b, NULL, NULL, lb), 0);
	cr_assert_str_neq(la, lb);
	ts_teardown(&t);
}

Test(db_commit, commit_moves_the_file_list_beside_the_diff)
{
	tstore t;
	ts_setup(&t);
	char ref[LYR_ID_MAX], layer[LYR_ID_MAX];
	ts_new(t.s, NULL, ref);
	ts_write(t.s, ref, "d/b", "abc");
	cr_assert_eq(lyr_ref_commit(t.s, ref, NULL, NULL, layer), 0, "%s", lyr_store_last_error());
	char rel[160];
	snprintf(rel, sizeof rel, "layers/%s/filelist", layer + strlen("sha256:"));
	_cleanup_free_ char *list = tu_read(t.root, rel);
	cr_assert_not_null(list);
	cr_assert_eq(strncmp(list, "layerfs-filelist 1\n0:", 21), 0);
	cr_assert_not_null(strstr(list, "3:d/b"));
	ts_teardown(&t);
}
