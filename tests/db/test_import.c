#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "dbtest.h"

static void hash_dir(const char *dir, char *ret_id)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	char digest[LYR_DIGEST_TEXT_LEN], err[4096];
	cr_assert_eq(lyr_hash_diff(fd, NULL, digest, err), 0);
	close(fd);
	lyr_layer_id("", digest, ret_id);
}

static char *make_source(tstore *t)
{
	char *src = tu_path(t->dir, "src");
	tu_write(src, "etc/hostname", "box\n");
	tu_write(src, "bin/tool", "#!/bin/sh\n");
	char *link = tu_path(src, "etc/link");
	cr_assert_eq(symlink("hostname", link), 0);
	free(link);
	return src;
}

Test(db_import, import_copies_the_tree_into_a_base_layer_named_by_its_content)
{
	tstore t;
	ts_setup(&t);
	char *src = make_source(&t);
	char id[LYR_ID_MAX], want[LYR_ID_MAX];
	hash_dir(src, want);
	lyr_tree_error err = {0};
	int r = lyr_store_import(t.s, src, "rootfs", "base", NULL, &err, id);
	cr_assert_eq(r, 0, "%s", lyr_store_last_error());
	cr_assert_str_eq(id, want);
	char **dirs;
	cr_assert_eq(lyr_layer_chain(t.s, id, &dirs), 0);
	char *got = tu_read(dirs[0], "etc/hostname");
	cr_assert_str_eq(got, "box\n");
	cr_assert_null(dirs[1]);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, id, &info), 0);
	cr_assert_str_eq(info.parent, "");
	cr_assert_str_eq(info.desc, "rootfs");
	cr_assert_str_eq(info.tags[0], "base");
	cr_assert_eq(info.size, strlen("box\n") + strlen("#!/bin/sh\n") + strlen("hostname"));
	cr_assert_eq(info.entries, 5);
	lyr_layer_info_clear(&info);
	char *ls = ts_ls(t.root, "tmp");
	cr_assert_str_eq(ls, "");
	free(ls), free(got), free(src);
	lyr_strv_free(dirs);
	ts_teardown(&t);
}

Test(db_import, importing_the_same_tree_twice_reuses_the_layer)
{
	tstore t;
	ts_setup(&t);
	char *src = make_source(&t);
	char id1[LYR_ID_MAX], id2[LYR_ID_MAX];
	cr_assert_eq(lyr_store_import(t.s, src, NULL, NULL, NULL, NULL, id1), 0);
	char *before = ts_state(&t);
	cr_assert_eq(lyr_store_import(t.s, src, NULL, "again", NULL, NULL, id2), 0);
	cr_assert_str_eq(id2, id1);
	cr_assert_eq(lyr_tag_remove(t.s, "again"), 0);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after), free(src);
	ts_teardown(&t);
}

Test(db_import, a_missing_source_fails_with_enoent_and_changes_nothing)
{
	tstore t;
	ts_setup(&t);
	char *before = ts_state(&t);
	char *src = tu_path(t.dir, "nope");
	lyr_tree_error err = {.err = 0};
	char id[LYR_ID_MAX] = "";
	cr_assert_eq(lyr_store_import(t.s, src, NULL, NULL, NULL, &err, id), -ENOENT);
	cr_assert_eq(err.err, ENOENT);
	cr_assert_str_eq(err.path, "");
	cr_assert_str_eq(id, "");
	char want[512];
	snprintf(want, sizeof want, "import '%s': No such file or directory", src);
	cr_assert_str_eq(lyr_store_last_error(), want);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after), free(src);
	ts_teardown(&t);
}

Test(db_import, a_bad_tag_fails_with_einval_and_changes_nothing)
{
	tstore t;
	ts_setup(&t);
	char *src = make_source(&t);
	char *before = ts_state(&t);
	char id[LYR_ID_MAX];
	cr_assert_eq(lyr_store_import(t.s, src, NULL, "bad tag", NULL, NULL, id), -EINVAL);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	free(before), free(after), free(src);
	ts_teardown(&t);
}

/* Exit codes of the unprivileged child below: 0 all as expected. */
static int import_unreadable_as_nobody(const char *root, const char *src)
{
	if (setgid(65534) < 0 || setuid(65534) < 0)
		return 10;
	lyr_store *s;
	if (lyr_store_open(root, &s) < 0)
		return 11;
	lyr_tree_error err = {0};
	char id[LYR_ID_MAX];
	int r = lyr_store_import(s, src, NULL, NULL, NULL, &err, id);
	if (r != -EACCES)
		return 12;
	if (strcmp(err.path, "etc/secret") != 0 || err.err != EACCES)
		return 13;
	char *tmp = tu_path(root, "tmp"), *layers = tu_path(root, "layers");
	DIR *dt = opendir(tmp), *dl = opendir(layers);
	if (!dt || !dl)
		return 14;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dt)))
		n += de->d_name[0] != '.';
	while ((de = readdir(dl)))
		n += de->d_name[0] != '.';
	lyr_store_free(s);
	return n == 0 ? 0 : 15;
}

Test(db_import, an_unreadable_source_file_is_named_and_changes_nothing)
{
	tstore t = {.dir = tu_mkdtemp()};
	t.root = tu_path(t.dir, "store");
	char *src = tu_path(t.dir, "src");
	tu_write(src, "etc/ok", "fine");
	tu_write(src, "etc/secret", "hidden");
	char *secret = tu_path(src, "etc/secret");
	cr_assert_eq(chmod(secret, 0), 0);
	if (geteuid() != 0) {
		/* unprivileged already: the mode alone makes it unreadable */
		cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
		lyr_tree_error err = {0};
		char id[LYR_ID_MAX];
		cr_assert_eq(lyr_store_import(t.s, src, NULL, NULL, NULL, &err, id), -EACCES);
		cr_assert_str_eq(err.path, "etc/secret");
		char *state = ts_state(&t);
		cr_assert_str_eq(state, "layers/: \nrefs/: \ntmp/: \n");
		free(state);
		ts_teardown(&t);
	} else {
		/* root reads anything: run the import as nobody on a store nobody owns */
		cr_assert_eq(chmod(t.dir, 0755), 0);
		cr_assert_eq(mkdir(t.root, 0755), 0);
		cr_assert_eq(chown(t.root, 65534, 65534), 0);
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0)
			_exit(import_unreadable_as_nobody(t.root, src));
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status), "status %#x", status);
		cr_assert_eq(WEXITSTATUS(status), 0);
		tu_rmtree(t.dir);
		free(t.root), free(t.dir);
	}
	free(src), free(secret);
}

Test(db_import, a_full_filesystem_fails_with_enospc_and_leaves_the_store_as_it_was)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a small tmpfs");
	char *dir = tu_mkdtemp();
	char *mnt = tu_path(dir, "mnt");
	cr_assert_eq(mkdir(mnt, 0755), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") < 0)
		cr_skip_test("cannot mount tmpfs: %s", strerror(errno));
	tstore t = {.dir = mnt, .root = tu_path(mnt, "store")};
	cr_assert_eq(lyr_store_open(t.root, &t.s), 0);
	char base[LYR_ID_MAX];
	ts_layer(t.s, NULL, "f", "small", "base", base);
	char *before = ts_state(&t);

	char *src = tu_path(dir, "src");
	char *big = malloc(1 << 20);
	memset(big, 'x', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	for (int i = 0; i < 4; i++) {
		char rel[32];
		snprintf(rel, sizeof rel, "blob%d", i);
		tu_write(src, rel, big);
	}
	lyr_tree_error err = {0};
	char id[LYR_ID_MAX];
	int r = lyr_store_import(t.s, src, NULL, "big", NULL, &err, id);
	cr_assert_eq(r, -ENOSPC);
	cr_assert_eq(err.err, ENOSPC);
	char *after = ts_state(&t);
	cr_assert_str_eq(after, before);
	ts_reopen(&t);
	free(after);
	after = ts_state(&t);
	cr_assert_str_eq(after, before);
	int left;
	char *findings = ts_fsck(&t, false, &left);
	cr_assert_str_eq(findings, "");
	cr_assert_eq(left, 0);
	lyr_store_free(t.s);
	umount2(mnt, MNT_DETACH);
	tu_rmtree(dir);
	free(before), free(after), free(findings), free(src), free(big), free(t.root), free(mnt),
		free(dir);
}

/* The layer keeps what each entry looked like (layers/<hex>/filelist), so a changed file can
 * be named later; the format is in docs/store-format.md. */
Test(db_import, import_writes_the_layer_file_list)
{
	tstore t;
	ts_setup(&t);
	_cleanup_free_ char *src = make_source(&t);
	char id[LYR_ID_MAX];
	lyr_tree_error err = {0};
	cr_assert_eq(lyr_store_import(t.s, src, NULL, NULL, NULL, &err, id), 0);
	char rel[160];
	snprintf(rel, sizeof rel, "layers/%s/filelist", id + 7);
	_cleanup_free_ char *list = tu_read(t.root, rel);
	cr_assert_not_null(list);
	cr_assert_eq(strncmp(list, "layerfs-filelist 1\n0:", 21), 0);
	cr_assert_not_null(strstr(list, "12:etc/hostname"));
	cr_assert_not_null(strstr(list, "8:bin/tool"));
	ts_teardown(&t);
}

/* The layer's size and entry count come from the hashing pass, not from a walk of their own:
 * they must still be what lyr_tree_usage says of the layer (each inode once, symlinks by their
 * target's length, every name counted), for files copied both ways (through the buffer and,
 * over 1 MiB, by copy_file_range and read back). */
Test(db_import, size_and_entries_count_each_inode_once)
{
	tstore t;
	ts_setup(&t);
	char *src = tu_path(t.dir, "src");
	tu_write(src, "a", "0123456789");
	tu_write(src, "d/e", "xyz");
	char *big = malloc((3 << 20) + 1);
	memset(big, 'b', 3 << 20);
	big[3 << 20] = '\0';
	tu_write(src, "d/big", big);
	char *a = tu_path(src, "a"), *b = tu_path(src, "b"), *c = tu_path(src, "c");
	char *big1 = tu_path(src, "d/big"), *big2 = tu_path(src, "big2");
	cr_assert_eq(link(a, b), 0);
	cr_assert_eq(link(big1, big2), 0);
	cr_assert_eq(symlink("a", c), 0);
	char id[LYR_ID_MAX], want[LYR_ID_MAX];
	hash_dir(src, want);
	lyr_tree_error err = {0};
	cr_assert_eq(lyr_store_import(t.s, src, NULL, NULL, NULL, &err, id), 0, "%s",
		     lyr_store_last_error());
	cr_assert_str_eq(id, want);
	lyr_layer_info info;
	cr_assert_eq(lyr_layer_get(t.s, id, &info), 0);
	cr_assert_eq(info.size, 10 + 3 + (3 << 20) + 1);
	cr_assert_eq(info.entries, 7); /* a b big2 c d d/big d/e */
	char **dirs;
	cr_assert_eq(lyr_layer_chain(t.s, id, &dirs), 0);
	int fd = open(dirs[0], O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	uint64_t bytes, entries;
	cr_assert_eq(lyr_tree_usage(fd, &bytes, &entries), 0);
	close(fd);
	cr_assert_eq(info.size, bytes);
	cr_assert_eq(info.entries, entries);
	char *got = tu_read(dirs[0], "d/big");
	cr_assert_str_eq(got, big);
	lyr_layer_info_clear(&info);
	lyr_strv_free(dirs);
	free(got), free(big), free(a), free(b), free(c), free(big1), free(big2), free(src);
	ts_teardown(&t);
}
