/* The overlay mounted for real: what the merged view shows, and what each change does to the
 * upper layer.  Needs /dev/fuse (and root or fusermount3); skips otherwise. */
#include <dirent.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "mnt.h"

#define BIG_SIZE 100000

static void big_content(char *buf)
{
	for (int i = 0; i < BIG_SIZE; i++)
		buf[i] = (char)('a' + i % 23);
	buf[BIG_SIZE] = '\0';
}

static void layers(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	/* l1, the upper of the two lowers */
	mk_whiteout(M.l1, "gone");
	tu_write(M.l1, ".wh.oci", "");
	tu_write(M.l1, "opq/mine", "M");
	cr_assert_eq(setxattr(in_dir(M.l1, "opq"), "trusted.overlay.opaque", "y", 1, 0), 0);
	tu_write(M.l1, "aufs/.wh..wh..opq", "");
	tu_write(M.l1, "aufs/own", "O");
	static char big[BIG_SIZE + 1];
	big_content(big);
	tu_write(M.l1, "big", big);
	tu_write(M.l1, "dir/sub/f", "F");
	tu_write(M.l1, "dir/g", "G");
	tu_write(M.l1, "link1", "L");
	cr_assert_eq(link(in_dir(M.l1, "link1"), in_dir(M.l1, "link2")), 0);
	cr_assert_eq(symlink("big", in_dir(M.l1, "sym")), 0);
	tu_write(M.l1, "ro", "RO");
	cr_assert_eq(chmod(in_dir(M.l1, "ro"), 0444), 0);
	cr_assert_eq(setxattr(in_dir(M.l1, "big"), "user.color", "red", 3, 0), 0);
	/* l2, the lowest */
	tu_write(M.l2, "gone", "gone");
	tu_write(M.l2, "oci", "oci");
	tu_write(M.l2, "opq/hidden", "h");
	tu_write(M.l2, "aufs/below", "b");
	tu_write(M.l2, "dir/h", "H");
	tu_write(M.l2, "a", "A");
	int fd = open(in_dir(M.l2, "sparse"), O_WRONLY | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	char block[4096];
	memset(block, 'S', sizeof(block));
	cr_assert_eq(pwrite(fd, block, sizeof(block), 0), 4096);
	cr_assert_eq(pwrite(fd, block, sizeof(block), 512 * 1024), 4096);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	mnt_mount();
}

TestSuite(fs_overlay, .init = layers, .fini = mnt_teardown, .timeout = 60);

static char *sorted_listing(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		cr_assert_lt(n, 256);
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(names[i], names[j]) > 0) {
				char *t = names[i];
				names[i] = names[j];
				names[j] = t;
			}
	char *out = calloc(1, 8192);
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, names[i]);
		free(names[i]);
	}
	return out;
}

Test(fs_overlay, merged_root_lists_each_name_once_without_markers)
{
	_cleanup_free_ char *s = sorted_listing(M.mp);
	cr_assert_str_eq(s, "a,aufs,big,dir,link1,link2,opq,ro,sparse,sym");
	_cleanup_free_ char *d = sorted_listing(MP("dir"));
	cr_assert_str_eq(d, "g,h,sub");
}

Test(fs_overlay, whiteouts_and_opaque_dirs_hide_lower_entries)
{
	struct stat st;
	cr_assert_eq(lstat(MP("gone"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(lstat(MP("oci"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(lstat(MP(".wh.oci"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	_cleanup_free_ char *o = sorted_listing(MP("opq"));
	cr_assert_str_eq(o, "mine");
	_cleanup_free_ char *a = sorted_listing(MP("aufs"));
	cr_assert_str_eq(a, "own");
	cr_assert_eq(lstat(MP("aufs/below"), &st), -1);
	cr_assert_eq(errno, ENOENT);
}

Test(fs_overlay, file_contents_come_from_the_topmost_layer)
{
	_cleanup_free_ char *a = slurp(MP("a"));
	cr_assert_str_eq(a, "A");
	_cleanup_free_ char *f = slurp(MP("dir/sub/f"));
	cr_assert_str_eq(f, "F");
	char link[64] = "";
	cr_assert_eq(readlink(MP("sym"), link, sizeof(link)), 3);
	cr_assert_str_eq(link, "big");
}

Test(fs_overlay, private_xattrs_are_invisible_and_cannot_be_set)
{
	char list[1024];
	ssize_t n = llistxattr(MP("opq"), list, sizeof(list));
	cr_assert_eq(n, 0);
	char v[16];
	cr_assert_eq(lgetxattr(MP("opq"), "trusted.overlay.opaque", v, sizeof(v)), -1);
	cr_assert_eq(errno, ENODATA);
	cr_assert_eq(setxattr(MP("a"), "trusted.overlay.opaque", "y", 1, 0), -1);
	cr_assert_eq(errno, EPERM);
	cr_assert_eq(getxattr(MP("big"), "user.color", v, sizeof(v)), 3);
	cr_assert_eq(memcmp(v, "red", 3), 0);
}

Test(fs_overlay, writing_a_lower_file_copies_it_up_with_the_same_inode_number)
{
	ino_t before = ino_of(MP("a"));
	int fd = open(MP("a"), O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "BC", 2), 2);
	cr_assert_eq(close(fd), 0);
	_cleanup_free_ char *m = slurp(MP("a"));
	cr_assert_str_eq(m, "ABC");
	_cleanup_free_ char *u = slurp(UP("a"));
	cr_assert_str_eq(u, "ABC");
	_cleanup_free_ char *l = slurp(in_dir(M.l2, "a"));
	cr_assert_str_eq(l, "A");
	cr_assert_eq(ino_of(MP("a")), before);
}

Test(fs_overlay, chmod_chown_utimes_and_xattrs_copy_no_data)
{
	cr_assert_eq(chmod(MP("big"), 0600), 0);
	cr_assert_eq(chown(MP("dir/g"), 1234, 5678), 0);
	struct timespec ts[2] = {{1000, 0}, {2000, 0}};
	cr_assert_eq(utimensat(AT_FDCWD, MP("dir/sub/f"), ts, 0), 0);
	cr_assert_eq(setxattr(MP("a"), "user.k", "v", 1, 0), 0);
	const char *files[] = {"big", "dir/g", "dir/sub/f", "a"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(files); i++) {
		struct stat st;
		cr_assert_eq(lstat(UP(files[i]), &st), 0, "%s not in the upper", files[i]);
		cr_assert(all_hole(UP(files[i])), "%s: data was copied", files[i]);
	}
	struct stat st;
	cr_assert_eq(stat(MP("big"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(st.st_size, BIG_SIZE);
	cr_assert_eq(stat(MP("dir/g"), &st), 0);
	cr_assert_eq(st.st_uid, 1234);
	cr_assert_eq(st.st_gid, 5678);
	cr_assert_eq(stat(MP("dir/sub/f"), &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 2000);
	static char big[BIG_SIZE + 1];
	big_content(big);
	_cleanup_free_ char *b = slurp(MP("big"));
	cr_assert_str_eq(b, big);
	_cleanup_free_ char *g = slurp(MP("dir/g"));
	cr_assert_str_eq(g, "G");
	char v[8];
	cr_assert_eq(getxattr(MP("a"), "user.k", v, sizeof(v)), 1);
	/* the first write brings the data */
	int fd = open(MP("big"), O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "Z", 1, 5), 1);
	cr_assert_eq(close(fd), 0);
	big[5] = 'Z';
	_cleanup_free_ char *b2 = slurp(MP("big"));
	cr_assert_str_eq(b2, big);
	_cleanup_free_ char *b3 = slurp(UP("big"));
	cr_assert_str_eq(b3, big);
	char list[256];
	cr_assert_eq(llistxattr(MP("big"), list, sizeof(list)), (ssize_t)sizeof("user.color"));
}

Test(fs_overlay, unlink_of_a_lower_file_leaves_only_a_whiteout)
{
	cr_assert_eq(unlink(MP("big")), 0);
	struct stat st;
	cr_assert_eq(lstat(MP("big"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(lstat(UP("big"), &st), 0);
	cr_assert(S_ISCHR(st.st_mode));
	cr_assert_eq(st.st_rdev, makedev(0, 0));
	_cleanup_free_ char *s = sorted_listing(M.mp);
	cr_assert_str_eq(s, "a,aufs,dir,link1,link2,opq,ro,sparse,sym");
	/* a read-only lower file can be deleted too */
	cr_assert_eq(unlink(MP("ro")), 0);
}

Test(fs_overlay, rename_of_a_lower_file_copies_no_data)
{
	ino_t ino = ino_of(MP("big"));
	cr_assert_eq(rename(MP("big"), MP("dir/moved")), 0);
	cr_assert(all_hole(UP("dir/moved")));
	cr_assert_eq(ino_of(MP("dir/moved")), ino);
	static char big[BIG_SIZE + 1];
	big_content(big);
	_cleanup_free_ char *b = slurp(MP("dir/moved"));
	cr_assert_str_eq(b, big);
	struct stat st;
	cr_assert_eq(lstat(MP("big"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	/* moved twice, the data is still found */
	cr_assert_eq(rename(MP("dir/moved"), MP("again")), 0);
	_cleanup_free_ char *c = slurp(MP("again"));
	cr_assert_str_eq(c, big);
	cr_assert_eq(rename(MP("ro"), MP("ro2")), 0);
	_cleanup_free_ char *r = slurp(MP("ro2"));
	cr_assert_str_eq(r, "RO");
}

Test(fs_overlay, rename_of_a_lower_directory_works_without_copying)
{
	ino_t ino = ino_of(MP("dir"));
	ino_t fino = ino_of(MP("dir/sub/f"));
	cr_assert_eq(rename(MP("dir"), MP("renamed")), 0);
	_cleanup_free_ char *s = sorted_listing(MP("renamed"));
	cr_assert_str_eq(s, "g,h,sub");
	_cleanup_free_ char *f = slurp(MP("renamed/sub/f"));
	cr_assert_str_eq(f, "F");
	_cleanup_free_ char *h = slurp(MP("renamed/h"));
	cr_assert_str_eq(h, "H");
	cr_assert_eq(ino_of(MP("renamed")), ino);
	cr_assert_eq(ino_of(MP("renamed/sub/f")), fino);
	struct stat st;
	cr_assert_eq(lstat(MP("dir"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	/* the upper holds the directory only, none of its files */
	_cleanup_free_ char *u = sorted_listing(UP("renamed"));
	cr_assert_str_eq(u, "");
	/* a renamed directory's lower files can be changed and moved out */
	cr_assert_eq(rename(MP("renamed/sub/f"), MP("f2")), 0);
	_cleanup_free_ char *f2 = slurp(MP("f2"));
	cr_assert_str_eq(f2, "F");
	put(MP("renamed/g"), "new");
	_cleanup_free_ char *g = slurp(MP("renamed/g"));
	cr_assert_str_eq(g, "new");
	/* and a directory can be re-created at the old name, empty */
	cr_assert_eq(mkdir(MP("dir"), 0755), 0);
	_cleanup_free_ char *e = sorted_listing(MP("dir"));
	cr_assert_str_eq(e, "");
}

Test(fs_overlay, rename_noreplace_and_exchange)
{
	cr_assert_eq(renameat2(AT_FDCWD, MP("a"), AT_FDCWD, MP("link1"), RENAME_NOREPLACE), -1);
	cr_assert_eq(errno, EEXIST);
	cr_assert_eq(renameat2(AT_FDCWD, MP("a"), AT_FDCWD, MP("dir"), RENAME_EXCHANGE), 0);
	_cleanup_free_ char *a = slurp(MP("dir"));
	cr_assert_str_eq(a, "A");
	_cleanup_free_ char *s = sorted_listing(MP("a"));
	cr_assert_str_eq(s, "g,h,sub");
	cr_assert_eq(renameat2(AT_FDCWD, MP("a"), AT_FDCWD, MP("nothing"), RENAME_EXCHANGE), -1);
	cr_assert_eq(errno, ENOENT);
	/* a file over a lower file: replaced */
	cr_assert_eq(rename(MP("link1"), MP("sparse")), 0);
	_cleanup_free_ char *l = slurp(MP("sparse"));
	cr_assert_str_eq(l, "L");
	/* a directory onto a non-empty one */
	cr_assert_eq(mkdir(MP("empty"), 0755), 0);
	cr_assert_eq(rename(MP("empty"), MP("a")), -1);
	cr_assert_eq(errno, ENOTEMPTY);
	cr_assert_eq(rename(MP("a"), MP("empty")), 0);
	_cleanup_free_ char *e = sorted_listing(MP("empty"));
	cr_assert_str_eq(e, "g,h,sub");
}

Test(fs_overlay, readdir_inode_numbers_match_stat)
{
	cr_assert_eq(chmod(MP("a"), 0640), 0); /* one copied-up entry */
	const char *dirs[] = {"", "dir", "opq"};
	for (size_t k = 0; k < LYR_ARRAY_SIZE(dirs); k++) {
		DIR *d = opendir(MP(dirs[k]));
		cr_assert_not_null(d);
		struct dirent *de;
		size_t n = 0;
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, "..") == 0)
				continue;
			char rel[512];
			snprintf(rel, sizeof(rel), "%s/%s", dirs[k], de->d_name);
			cr_assert_eq(de->d_ino, ino_of(MP(rel)), "d_ino of %s", rel);
			n++;
		}
		closedir(d);
		cr_assert_gt(n, 1);
	}
}

Test(fs_overlay, hard_links_share_inode_and_true_link_count)
{
	struct stat s1, s2;
	cr_assert_eq(stat(MP("link1"), &s1), 0);
	cr_assert_eq(s1.st_nlink, 2);
	cr_assert_eq(stat(MP("link2"), &s2), 0);
	cr_assert_eq(s1.st_ino, s2.st_ino);
	put(MP("link1"), "changed");
	_cleanup_free_ char *c = slurp(MP("link2"));
	cr_assert_str_eq(c, "changed");
	/* a new hard link of a lower file */
	cr_assert_eq(link(MP("a"), MP("a-link")), 0);
	cr_assert_eq(stat(MP("a-link"), &s2), 0);
	cr_assert_eq(s2.st_ino, ino_of(MP("a")));
	cr_assert_eq(s2.st_nlink, 2);
	_cleanup_free_ char *a = slurp(MP("a-link"));
	cr_assert_str_eq(a, "A");
}

Test(fs_overlay, marker_names_long_names_and_whiteout_devices_are_refused)
{
	cr_assert_eq(open(MP(".wh.x"), O_CREAT | O_WRONLY, 0644), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(mkdir(MP(".wh..wh..opq"), 0755), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(rename(MP("a"), MP(".wh.a")), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(mknod(MP("wh"), S_IFCHR | 0644, makedev(0, 0)), -1);
	cr_assert_eq(errno, EPERM);
	char name[300];
	memset(name, 'n', 256);
	name[256] = '\0';
	cr_assert_eq(open(MP(name), O_CREAT | O_WRONLY, 0644), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
	struct stat st;
	cr_assert_eq(lstat(MP(name), &st), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
	name[255] = '\0';
	int fd = open(MP(name), O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
}

Test(fs_overlay, unlinked_open_file_keeps_working)
{
	int fd = open(MP("a"), O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(unlink(MP("a")), 0);
	cr_assert_eq(pwrite(fd, "xyz", 3, 1), 3);
	char buf[8] = "";
	cr_assert_eq(pread(fd, buf, sizeof(buf), 0), 4);
	cr_assert_str_eq(buf, "Axyz");
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_nlink, 0);
	close(fd);
	cr_assert_eq(lstat(MP("a"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	/* the name can be used again */
	put(MP("a"), "again");
	_cleanup_free_ char *a = slurp(MP("a"));
	cr_assert_str_eq(a, "again");
}

Test(fs_overlay, rmdir_of_lower_directory_needs_it_empty)
{
	cr_assert_eq(rmdir(MP("dir/sub")), -1);
	cr_assert_eq(errno, ENOTEMPTY);
	cr_assert_eq(unlink(MP("dir/sub/f")), 0);
	cr_assert_eq(rmdir(MP("dir/sub")), 0);
	struct stat st;
	cr_assert_eq(lstat(MP("dir/sub"), &st), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(mkdir(MP("dir/sub"), 0700), 0);
	_cleanup_free_ char *s = sorted_listing(MP("dir/sub"));
	cr_assert_str_eq(s, "");
	cr_assert_eq(rmdir(MP("a")), -1);
	cr_assert_eq(errno, ENOTDIR);
	cr_assert_eq(unlink(MP("dir")), -1);
	cr_assert_eq(errno, EISDIR);
}

Test(fs_overlay, new_objects_of_every_kind)
{
	cr_assert_eq(mkdir(MP("newdir"), 0750), 0);
	put(MP("newdir/file"), "data");
	cr_assert_eq(symlink("newdir/file", MP("newlink")), 0);
	cr_assert_eq(mkfifo(MP("fifo"), 0600), 0);
	struct stat st;
	cr_assert_eq(stat(MP("newlink"), &st), 0);
	cr_assert_eq(st.st_size, 4);
	cr_assert_eq(lstat(MP("fifo"), &st), 0);
	cr_assert(S_ISFIFO(st.st_mode));
	cr_assert_eq(stat(MP("newdir"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0750);
	_cleanup_free_ char *u = slurp(UP("newdir/file"));
	cr_assert_str_eq(u, "data");
	cr_assert_eq(unlink(MP("newdir/file")), 0);
	cr_assert_eq(lstat(UP("newdir/file"), &st), -1); /* no whiteout needed */
	cr_assert_eq(rmdir(MP("newdir")), 0);
	struct statvfs sv;
	cr_assert_eq(statvfs(M.mp, &sv), 0);
	cr_assert_eq(sv.f_namemax, 255);
}

Test(fs_overlay, seek_data_hole_fallocate_and_copy_file_range)
{
	int fd = open(MP("sparse"), O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(lseek(fd, 0, SEEK_HOLE), 4096);
	cr_assert_eq(lseek(fd, 8192, SEEK_DATA), 512 * 1024);
	close(fd);
	int out = open(MP("copy"), O_RDWR | O_CREAT, 0644);
	int in = open(MP("a"), O_RDONLY);
	cr_assert_geq(out, 0);
	cr_assert_geq(in, 0);
	loff_t oi = 0, oo = 0;
	cr_assert_eq(copy_file_range(in, &oi, out, &oo, 10, 0), 1);
	cr_assert_eq(fallocate(out, 0, 0, 8192), 0);
	struct stat st;
	cr_assert_eq(fstat(out, &st), 0);
	cr_assert_eq(st.st_size, 8192);
	close(in);
	close(out);
	char buf[2] = "";
	int c = open(MP("copy"), O_RDONLY);
	cr_assert_eq(read(c, buf, 1), 1);
	close(c);
	cr_assert_str_eq(buf, "A");
}

Test(fs_overlay, inode_numbers_survive_copy_up_and_remount)
{
	ino_t a = ino_of(MP("a")), d = ino_of(MP("dir")), f = ino_of(MP("dir/sub/f"));
	cr_assert_eq(chmod(MP("dir/sub/f"), 0600), 0);
	put(MP("a"), "new");
	mnt_umount();
	mnt_mount();
	cr_assert_eq(ino_of(MP("a")), a);
	cr_assert_eq(ino_of(MP("dir")), d);
	cr_assert_eq(ino_of(MP("dir/sub/f")), f);
	_cleanup_free_ char *s = slurp(MP("a"));
	cr_assert_str_eq(s, "new");
	struct stat st;
	cr_assert_eq(stat(MP("dir/sub/f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
}

Test(fs_overlay, remount_shows_what_was_there_after_renames)
{
	cr_assert_eq(rename(MP("dir"), MP("d2")), 0);
	cr_assert_eq(rename(MP("big"), MP("d2/big")), 0);
	cr_assert_eq(unlink(MP("a")), 0);
	mnt_umount();
	mnt_mount();
	_cleanup_free_ char *s = sorted_listing(M.mp);
	cr_assert_str_eq(s, "aufs,d2,link1,link2,opq,ro,sparse,sym");
	_cleanup_free_ char *d = sorted_listing(MP("d2"));
	cr_assert_str_eq(d, "big,g,h,sub");
	static char big[BIG_SIZE + 1];
	big_content(big);
	_cleanup_free_ char *b = slurp(MP("d2/big"));
	cr_assert_str_eq(b, big);
}

Test(fs_overlay, setuid_is_cleared_by_chown)
{
	cr_assert_eq(chmod(MP("a"), 04755), 0);
	struct stat st;
	cr_assert_eq(stat(MP("a"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 04755);
	cr_assert_eq(chown(MP("a"), 1000, 1000), 0);
	cr_assert_eq(stat(MP("a"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0755);
}

Test(fs_readonly, mount_without_upper_refuses_writes, .fini = mnt_teardown, .timeout = 60)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	tu_write(M.l2, "f", "x");
	mnt_mount_opts(&(mnt_opts){.read_only_no_upper = true});
	_cleanup_free_ char *f = slurp(MP("f"));
	cr_assert_str_eq(f, "x");
	cr_assert_eq(open(MP("f"), O_WRONLY), -1);
	cr_assert_eq(errno, EROFS);
	cr_assert_eq(mkdir(MP("d"), 0755), -1);
	cr_assert_eq(errno, EROFS);
	cr_assert_eq(open(M.mp, O_TMPFILE | O_RDWR, 0600), -1);
	cr_assert_eq(errno, EROFS);
}

Test(fs_overlay, hard_link_groups_stay_together_across_remount)
{
	put(MP("link1"), "changed");
	struct stat st;
	cr_assert_eq(stat(MP("link2"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	mnt_umount();
	mnt_mount();
	_cleanup_free_ char *c = slurp(MP("link2"));
	cr_assert_str_eq(c, "changed");
	cr_assert_eq(stat(MP("link2"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	cr_assert_eq(st.st_ino, ino_of(MP("link1")));
	/* writing through the name that was never copied up reaches the same file */
	put(MP("link2"), "again");
	_cleanup_free_ char *a = slurp(MP("link1"));
	cr_assert_str_eq(a, "again");
	cr_assert_eq(unlink(MP("link1")), 0);
	cr_assert_eq(stat(MP("link2"), &st), 0);
	cr_assert_eq(st.st_nlink, 1);
	cr_assert_eq(link(MP("link2"), MP("link3")), 0);
	mnt_umount();
	mnt_mount();
	cr_assert_eq(stat(MP("link3"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	_cleanup_free_ char *b = slurp(MP("link3"));
	cr_assert_str_eq(b, "again");
}

Test(fs_overlay, unlink_of_a_lower_hard_link_keeps_the_count_of_the_other)
{
	cr_assert_eq(unlink(MP("link2")), 0);
	struct stat st;
	cr_assert_eq(stat(MP("link1"), &st), 0);
	cr_assert_eq(st.st_nlink, 1);
	/* the group's count lives on a metadata-only copy in the index: no data was copied */
	char idx[64];
	snprintf(idx, sizeof(idx), "index/%llu", (unsigned long long)st.st_ino);
	cr_assert(all_hole(in_dir(M.work, idx)), "unlink copied data");
	_cleanup_free_ char *l = slurp(MP("link1"));
	cr_assert_str_eq(l, "L");
}

Test(fs_overlay, renaming_either_name_of_a_lower_hard_link_pair)
{
	struct stat st;
	cr_assert_eq(stat(MP("link2"), &st), 0); /* the inode now carries the name link2 */
	cr_assert_eq(rename(MP("link1"), MP("dir/l1")), 0);
	_cleanup_free_ char *a = slurp(MP("dir/l1"));
	cr_assert_str_eq(a, "L");
	put(MP("link2"), "both");
	_cleanup_free_ char *b = slurp(MP("dir/l1"));
	cr_assert_str_eq(b, "both");
	cr_assert_eq(rename(MP("link2"), MP("dir/l2")), 0);
	cr_assert_eq(stat(MP("dir/l2"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	cr_assert_eq(st.st_ino, ino_of(MP("dir/l1")));
	mnt_umount();
	mnt_mount();
	_cleanup_free_ char *c = slurp(MP("dir/l2"));
	cr_assert_str_eq(c, "both");
	_cleanup_free_ char *d = slurp(MP("dir/l1"));
	cr_assert_str_eq(d, "both");
	_cleanup_free_ char *s = sorted_listing(M.mp);
	cr_assert_str_eq(s, "a,aufs,big,dir,opq,ro,sparse,sym");
}

Test(fs_overlay, writes_by_other_users_clear_setuid)
{
	/* let the other user reach the mount */
	mnt_umount();
	cr_assert_eq(chmod(M.root, 0755), 0);
	mnt_mount_opts(&(mnt_opts){.allow_other = true});
	cr_assert_eq(chmod(MP("a"), 04777), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		if (setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
			_exit(2);
		int fd = open(MP("a"), O_WRONLY | O_APPEND);
		if (fd < 0 || write(fd, "x", 1) != 1)
			_exit(3);
		close(fd);
		_exit(0);
	}
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert_eq(WEXITSTATUS(status), 0);
	struct stat st;
	cr_assert_eq(stat(MP("a"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0777);
	_cleanup_free_ char *a = slurp(MP("a"));
	cr_assert_str_eq(a, "Ax");
}

Test(fs_overlay, copy_up_keeps_times_and_changes_only_what_posix_says)
{
	struct timespec old[2] = {{1000, 0}, {1000, 0}};
	mnt_umount();
	cr_assert_eq(utimensat(AT_FDCWD, in_dir(M.l1, "dir"), old, 0), 0);
	cr_assert_eq(utimensat(AT_FDCWD, in_dir(M.l1, "dir/g"), old, 0), 0);
	mnt_mount();
	struct stat st;
	cr_assert_eq(chmod(MP("dir/g"), 0600), 0);
	cr_assert_eq(stat(MP("dir"), &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1000, "a copy-up is not a change of the directory");
	cr_assert_eq(stat(MP("dir/g"), &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1000, "chmod does not change mtime");
	cr_assert_gt(st.st_ctim.tv_sec, 1000, "chmod changes ctime");
	cr_assert_eq(rename(MP("dir/g"), MP("dir/g2")), 0);
	cr_assert_eq(stat(MP("dir/g2"), &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1000, "rename does not change mtime");
	cr_assert_eq(stat(MP("dir"), &st), 0);
	cr_assert_gt(st.st_mtim.tv_sec, 1000, "rename changes the directory");
	put(MP("dir/g2"), "new");
	cr_assert_eq(stat(MP("dir/g2"), &st), 0);
	cr_assert_gt(st.st_mtim.tv_sec, 1000, "a write changes mtime");
}

static void squashed(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	tu_write(M.l1, "f", "f");
	cr_assert_eq(chown(in_dir(M.l1, "f"), 123, 456), 0);
	mnt_mount_opts(&(mnt_opts){.squash_to_root = true});
}

Test(fs_squash, squash_to_root_shows_every_file_owned_by_root, .init = squashed,
     .fini = mnt_teardown, .timeout = 60)
{
	struct stat st;
	cr_assert_eq(stat(MP("f"), &st), 0);
	cr_assert_eq(st.st_uid, 0);
	cr_assert_eq(st.st_gid, 0);
	cr_assert_eq(lstat(in_dir(M.l1, "f"), &st), 0);
	cr_assert_eq(st.st_uid, 123);
}

Test(fs_overlay, a_reader_opened_before_copy_up_sees_later_writes)
{
	int r = open(MP("big"), O_RDONLY);
	cr_assert_geq(r, 0);
	int w = open(MP("big"), O_WRONLY);
	cr_assert_geq(w, 0);
	cr_assert_eq(pwrite(w, "#", 1, 50001), 1);
	cr_assert_eq(close(w), 0);
	char c = 0;
	cr_assert_eq(pread(r, &c, 1, 50001), 1);
	cr_assert_eq(c, '#');
	close(r);
}

Test(fs_overlay, prepare_commit_puts_the_whole_hard_link_group_in_the_upper)
{
	put(MP("link1"), "changed");
	mnt_umount();
	const char *lowers[] = {M.l1, M.l2};
	lyr_fs_error err;
	cr_assert_eq(lyr_fs_prepare_commit(lowers, 2, M.upper, M.work, &err), 0, "%s", err.msg);
	struct stat a, b;
	cr_assert_eq(lstat(UP("link1"), &a), 0);
	cr_assert_eq(lstat(UP("link2"), &b), 0);
	cr_assert_eq(a.st_ino, b.st_ino);
	/* the upper as a committed layer over the old ones, read-only */
	char *committed = M.upper;
	M.upper = tu_path(M.root, "upper2");
	cr_assert_eq(mkdir(M.upper, 0755), 0);
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	const char *stack[] = {committed, M.l1, M.l2};
	cfg.lowers = stack;
	cfg.nlowers = 3;
	cr_assert_eq(lyr_fs_mount(&cfg, M.mp, &err, &M.pid), 0, "%s", err.msg);
	M.mounted = true;
	_cleanup_free_ char *c1 = slurp(MP("link1"));
	_cleanup_free_ char *c2 = slurp(MP("link2"));
	cr_assert_str_eq(c1, "changed");
	cr_assert_str_eq(c2, "changed");
	cr_assert_eq(ino_of(MP("link1")), ino_of(MP("link2")));
	free(committed);
}

Test(fs_overlay, xattrs_of_lower_files_change_in_the_upper_only)
{
	char v[16] = "";
	cr_assert_eq(setxattr(MP("big"), "user.color", "blue", 4, XATTR_CREATE), -1);
	cr_assert_eq(errno, EEXIST);
	cr_assert_eq(setxattr(MP("big"), "user.color", "blue", 4, XATTR_REPLACE), 0);
	cr_assert_eq(getxattr(MP("big"), "user.color", v, sizeof(v)), 4);
	cr_assert_eq(memcmp(v, "blue", 4), 0);
	cr_assert_eq(getxattr(in_dir(M.l1, "big"), "user.color", v, sizeof(v)), 3);
	cr_assert_eq(removexattr(MP("big"), "user.color"), 0);
	cr_assert_eq(getxattr(MP("big"), "user.color", v, sizeof(v)), -1);
	cr_assert_eq(errno, ENODATA);
	cr_assert_eq(removexattr(MP("a"), "user.none"), -1);
	cr_assert_eq(errno, ENODATA);
	struct stat st;
	cr_assert_eq(lstat(UP("a"), &st), -1, "removing nothing copied the file up");
	cr_assert_eq(listxattr(MP("big"), NULL, 0), 0);
	cr_assert_eq(setxattr(MP("dir"), "user.d", "1", 1, 0), 0);
	cr_assert_eq(getxattr(MP("dir"), "user.d", v, sizeof(v)), 1);
	/* the directory's upper copy carries it, and its lower entries still show */
	_cleanup_free_ char *s = sorted_listing(MP("dir"));
	cr_assert_str_eq(s, "g,h,sub");
}

Test(fs_overlay, new_objects_get_the_mode_the_caller_asked_for)
{
	mode_t old = umask(0);
	cr_assert_eq(mkdir(MP("open"), 0777), 0);
	int fd = open(MP("open/f"), O_CREAT | O_WRONLY, 0666);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(mkfifo(MP("open/p"), 0662), 0);
	umask(027);
	cr_assert_eq(mkdir(MP("closed"), 0777), 0);
	umask(old);
	struct stat st;
	cr_assert_eq(stat(MP("open"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0777);
	cr_assert_eq(stat(MP("open/f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0666);
	cr_assert_eq(lstat(MP("open/p"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0662);
	cr_assert_eq(stat(MP("closed"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0750);
}

Test(fs_overlay, o_tmpfile_makes_an_unnamed_file_that_a_link_names)
{
	mode_t old = umask(027);
	int fd = open(MP("dir"), O_TMPFILE | O_RDWR, 0666);
	umask(old);
	cr_assert_geq(fd, 0, "open O_TMPFILE: %s", strerror(errno));
	cr_assert_eq(write(fd, "unnamed", 7), 7);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_nlink, 0);
	cr_assert_eq(st.st_mode, S_IFREG | 0640);
	cr_assert_eq(st.st_size, 7);
	/* nothing in the directory shows it */
	_cleanup_free_ char *before = sorted_listing(MP("dir"));
	cr_assert_str_eq(before, "g,h,sub");
	cr_assert_eq(link_fd(fd, MP("dir/named")), 0, "linkat: %s", strerror(errno));
	struct stat named;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(stat(MP("dir/named"), &named), 0);
	cr_assert_eq(st.st_nlink, 1);
	cr_assert_eq(named.st_ino, st.st_ino);
	/* writes through the fd show through the name, and the name stays after close */
	cr_assert_eq(pwrite(fd, "N", 1, 0), 1);
	close(fd);
	_cleanup_free_ char *data = slurp(MP("dir/named"));
	cr_assert_str_eq(data, "Nnnamed");
	_cleanup_free_ char *after = sorted_listing(MP("dir"));
	cr_assert_str_eq(after, "g,h,named,sub");
	/* the upper holds it under its name; the work dir holds nothing */
	_cleanup_free_ char *up = tu_read(M.upper, "dir/named");
	cr_assert_str_eq(up, "Nnnamed");
	_cleanup_free_ char *work = sorted_listing(M.work);
	cr_assert_str_eq(work, "index,work");
	_cleanup_free_ char *wwork = tu_path(M.work, "work");
	_cleanup_free_ char *w = sorted_listing(wwork);
	cr_assert_str_eq(w, "");
}

Test(fs_overlay, o_tmpfile_left_unnamed_leaves_nothing_and_o_excl_refuses_a_link)
{
	int fd = open(M.mp, O_TMPFILE | O_WRONLY | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "open O_TMPFILE: %s", strerror(errno));
	cr_assert_eq(write(fd, "gone", 4), 4);
	cr_assert_eq(link_fd(fd, MP("kept")), -1);
	cr_assert_eq(errno, ENOENT);
	close(fd);
	_cleanup_free_ char *s = sorted_listing(M.mp);
	cr_assert_str_eq(s, "a,aufs,big,dir,link1,link2,opq,ro,sparse,sym");
	_cleanup_free_ char *wwork = tu_path(M.work, "work");
	_cleanup_free_ char *w = sorted_listing(wwork);
	cr_assert_str_eq(w, "");
}
