/* POSIX ACLs through the mount: the kernel enforces them for another user (65534, reaching the
 * mount through allow_other), new objects inherit default ACLs or get the caller's umask, chmod
 * keeps the mask in step, and noacl turns all of it off.  ACL values are built here in the
 * kernel's xattr format.  Needs root, /dev/fuse and a temporary directory on a filesystem with
 * ACLs; skips otherwise. */
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mnt.h"

#define NOBODY 65534
#define ACCESS "system.posix_acl_access"
#define DEFAULT "system.posix_acl_default"

enum { USER_OBJ = 1, USER = 2, GROUP_OBJ = 4, GROUP = 8, MASK = 0x10, OTHER = 0x20 };
#define NO_ID 0xffffffffu

typedef struct ace {
	uint16_t tag, perm;
	uint32_t id;
} ace;

typedef struct acl {
	size_t len;
	char bytes[4 + 8 * 8];
} acl;

/* The xattr value of the entries E (canonical order: the kernel keeps them sorted by tag). */
static acl acl_of(const ace *e, size_t n)
{
	acl a = {.len = 4 + 8 * n};
	cr_assert_leq(n, 8);
	char *p = a.bytes;
	p[0] = 2, p[1] = p[2] = p[3] = 0;
	for (size_t i = 0; i < n; i++) {
		char *q = p + 4 + 8 * i;
		q[0] = (char)(e[i].tag & 0xff), q[1] = (char)(e[i].tag >> 8);
		q[2] = (char)(e[i].perm & 0xff), q[3] = (char)(e[i].perm >> 8);
		for (int k = 0; k < 4; k++)
			q[4 + k] = (char)((e[i].id >> (8 * k)) & 0xff);
	}
	return a;
}
#define ACL(...)                                                                                   \
	acl_of((const ace[]){__VA_ARGS__}, sizeof((const ace[]){__VA_ARGS__}) / sizeof(ace))

/* rw- for the owner, r-- for user 65534 through a mask of MASK_PERM, nothing for the rest. */
static acl nobody_reads(uint16_t mask_perm)
{
	return ACL({USER_OBJ, 6, NO_ID}, {USER, 4, NOBODY}, {GROUP_OBJ, 0, NO_ID},
		   {MASK, mask_perm, NO_ID}, {OTHER, 0, NO_ID});
}

static void set_acl(const char *path, const char *name, acl a)
{
	cr_assert_eq(setxattr(path, name, a.bytes, a.len, 0), 0, "setxattr %s %s: %s", path, name,
		     strerror(errno));
}

static void assert_acl(const char *path, const char *name, acl want)
{
	char got[256];
	ssize_t n = getxattr(path, name, got, sizeof(got));
	cr_assert_eq(n, (ssize_t)want.len, "%s %s: %zd bytes (%s)", path, name, n,
		     n < 0 ? strerror(errno) : "");
	cr_assert_eq(memcmp(got, want.bytes, want.len), 0, "%s %s: other entries", path, name);
}

static void assert_no_acl(const char *path, const char *name, int err)
{
	char got[256];
	cr_assert_eq(getxattr(path, name, got, sizeof(got)), -1, "%s has %s", path, name);
	cr_assert_eq(errno, err, "%s %s: %s", path, name, strerror(errno));
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "lstat %s: %s", path, strerror(errno));
	return st.st_mode & 07777;
}

static int child_status(pid_t child)
{
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Reads PATH as user and group 65534 (no supplementary groups): 0 when it holds WANT, else the
 * errno open or read failed with (200 and up: the child could not become that user, or read
 * something else). */
static int nobody_read(const char *path, const char *want)
{
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
		    setresuid(NOBODY, NOBODY, NOBODY) < 0)
			_exit(200);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			_exit(errno);
		char buf[64];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0)
			_exit(errno);
		_exit((size_t)n == strlen(want) && memcmp(buf, want, (size_t)n) == 0 ? 0 : 201);
	}
	return child_status(child);
}

/* Skips unless the filesystem under the mount's layers has POSIX ACLs. */
static void need_acls(void)
{
	const char *probe = in_dir(M.root, "probe");
	tu_write(M.root, "probe", "");
	cr_assert_eq(chmod(probe, 0644), 0);
	acl a = ACL({USER_OBJ, 6, NO_ID}, {GROUP_OBJ, 4, NO_ID}, {OTHER, 4, NO_ID});
	if (setxattr(probe, ACCESS, a.bytes, a.len, 0) < 0 && errno == EOPNOTSUPP) {
		mnt_teardown();
		cr_skip_test("the temporary directory's filesystem has no POSIX ACLs");
	}
	cr_assert_eq(unlink(probe), 0);
}

/* The default ACL of "shared" (and what its children inherit). */
static acl shared_default(void)
{
	return ACL({USER_OBJ, 7, NO_ID}, {USER, 5, NOBODY}, {GROUP_OBJ, 5, NO_ID}, {MASK, 7, NO_ID},
		   {OTHER, 0, NO_ID});
}

/* Lower files root owns with mode 0600: "secret" lets 65534 read through an ACL, "masked" names
 * 65534 too but its mask takes the read away, "closed" and "plain" have no ACL.  "shared" is a
 * lower directory with a default ACL, holding a file and a directory that get deleted. */
static void acl_layers(mnt_opts o)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	need_acls();
	/* 65534 must reach the mount point */
	cr_assert_eq(chmod(M.root, 0755), 0);
	const char *files[] = {"secret", "masked", "closed", "plain"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(files); i++) {
		tu_write(M.l1, files[i], "S");
		cr_assert_eq(chmod(in_dir(M.l1, files[i]), 0600), 0);
	}
	set_acl(in_dir(M.l1, "secret"), ACCESS, nobody_reads(4));
	set_acl(in_dir(M.l1, "masked"), ACCESS, nobody_reads(0));
	cr_assert_eq(mkdir(in_dir(M.l1, "shared"), 0755), 0);
	set_acl(in_dir(M.l1, "shared"), DEFAULT, shared_default());
	tu_write(M.l2, "shared/gone", "G");
	cr_assert_eq(mkdir(in_dir(M.l2, "shared/gonedir"), 0755), 0);
	cr_assert_eq(mkdir(in_dir(M.l2, "open"), 0755), 0);
	tu_write(M.l2, "open/gone", "G");
	o.allow_other = true;
	mnt_mount_opts(&o);
}

static void acl_on(void)
{
	acl_layers((mnt_opts){0});
}

TestSuite(fs_acl, .init = acl_on, .fini = mnt_teardown, .timeout = 60);

Test(fs_acl, an_acl_of_a_lower_file_is_enforced_without_copy_up)
{
	cr_assert_eq(nobody_read(MP("secret"), "S"), 0);
	cr_assert_eq(nobody_read(MP("closed"), "S"), EACCES);
	cr_assert_eq(nobody_read(MP("masked"), "S"), EACCES,
		     "the mask takes the entry's read away");
	assert_acl(MP("secret"), ACCESS, nobody_reads(4));
	cr_assert_eq(mode_of(MP("secret")), 0640, "the group bits show the mask");
	struct stat st;
	cr_assert_eq(lstat(UP("secret"), &st), -1, "reading copied the file up");
	cr_assert_eq(errno, ENOENT);
}

Test(fs_acl, copy_up_keeps_the_acl_of_a_file)
{
	put(MP("secret"), "new");
	assert_acl(UP("secret"), ACCESS, nobody_reads(4));
	cr_assert_eq(mode_of(UP("secret")), 0640);
	cr_assert_eq(nobody_read(MP("secret"), "new"), 0);
	cr_assert_eq(nobody_read(MP("masked"), "S"), EACCES);
}

Test(fs_acl, setfacl_through_the_mount_reaches_the_upper_and_chmod_updates_the_mask)
{
	cr_assert_eq(nobody_read(MP("plain"), "S"), EACCES);
	set_acl(MP("plain"), ACCESS, nobody_reads(4));
	cr_assert_eq(nobody_read(MP("plain"), "S"), 0);
	cr_assert_eq(mode_of(MP("plain")), 0640, "setting the ACL set the group bits to its mask");
	/* a metadata-only copy carries it; the lower file is untouched */
	assert_acl(UP("plain"), ACCESS, nobody_reads(4));
	cr_assert(all_hole(UP("plain")), "setting an ACL copied data");
	assert_no_acl(in_dir(M.l1, "plain"), ACCESS, ENODATA);

	cr_assert_eq(chmod(MP("plain"), 0600), 0);
	assert_acl(MP("plain"), ACCESS, nobody_reads(0));
	assert_acl(UP("plain"), ACCESS, nobody_reads(0));
	cr_assert_eq(nobody_read(MP("plain"), "S"), EACCES, "chmod g-r took the read away");
	cr_assert_eq(chmod(MP("plain"), 0670), 0);
	assert_acl(MP("plain"), ACCESS, nobody_reads(7));
	cr_assert_eq(nobody_read(MP("plain"), "S"), 0);

	/* an ACL that the mode says all of is no ACL */
	set_acl(MP("plain"), ACCESS,
		ACL({USER_OBJ, 6, NO_ID}, {GROUP_OBJ, 4, NO_ID}, {OTHER, 0, NO_ID}));
	assert_no_acl(MP("plain"), ACCESS, ENODATA);
	cr_assert_eq(mode_of(MP("plain")), 0640);
	cr_assert_eq(nobody_read(MP("plain"), "S"), EACCES);
}

/* What a child of "shared" made with MODE inherits as its access ACL. */
static acl inherited(uint16_t user_obj, uint16_t mask)
{
	return ACL({USER_OBJ, user_obj, NO_ID}, {USER, 5, NOBODY}, {GROUP_OBJ, 5, NO_ID},
		   {MASK, mask, NO_ID}, {OTHER, 0, NO_ID});
}

Test(fs_acl, new_objects_inherit_the_default_acl_and_ignore_the_umask)
{
	/* two of each: one made in its upper parent, one made over a whiteout (in the work dir
	 * first, where nothing is inherited) */
	cr_assert_eq(unlink(MP("shared/gone")), 0);
	cr_assert_eq(rmdir(MP("shared/gonedir")), 0);
	mode_t old = umask(022);
	const char *files[] = {"shared/new", "shared/gone"};
	for (size_t i = 0; i < 2; i++) {
		int fd = open(MP(files[i]), O_CREAT | O_EXCL | O_WRONLY, 0666);
		cr_assert_geq(fd, 0, "%s: %s", files[i], strerror(errno));
		cr_assert_eq(write(fd, "N", 1), 1);
		cr_assert_eq(close(fd), 0);
	}
	cr_assert_eq(mkdir(MP("shared/sub"), 0777), 0);
	cr_assert_eq(mkdir(MP("shared/gonedir"), 0777), 0);
	cr_assert_eq(mkfifo(MP("shared/fifo"), 0640), 0);
	umask(old);

	/* the parent's upper copy kept its default ACL */
	assert_acl(UP("shared"), DEFAULT, shared_default());
	for (size_t i = 0; i < 2; i++) {
		/* rw-rw-rw- asked: owner rw-, mask rw-, other --- */
		cr_assert_eq(mode_of(MP(files[i])), 0660, "%s", files[i]);
		assert_acl(MP(files[i]), ACCESS, inherited(6, 6));
		assert_acl(UP(files[i]), ACCESS, inherited(6, 6));
		assert_no_acl(MP(files[i]), DEFAULT, ENODATA);
		cr_assert_eq(nobody_read(MP(files[i]), "N"), 0, "%s", files[i]);
	}
	const char *dirs[] = {"shared/sub", "shared/gonedir"};
	for (size_t i = 0; i < 2; i++) {
		cr_assert_eq(mode_of(MP(dirs[i])), 0770, "%s", dirs[i]);
		assert_acl(MP(dirs[i]), ACCESS, inherited(7, 7));
		assert_acl(MP(dirs[i]), DEFAULT, shared_default());
	}
	char v[8];
	cr_assert_eq(getxattr(UP("shared/gonedir"), "trusted.overlay.opaque", v, sizeof(v)), 1);
	/* rw-r----- asked: the mask is limited to r-- */
	cr_assert_eq(mode_of(MP("shared/fifo")), 0640);
	assert_acl(MP("shared/fifo"), ACCESS, inherited(6, 4));
	/* a grandchild inherits through the new directory */
	cr_assert_eq(mkdir(MP("shared/sub/deeper"), 0700), 0);
	cr_assert_eq(mode_of(MP("shared/sub/deeper")), 0700);
	assert_acl(MP("shared/sub/deeper"), ACCESS, inherited(7, 0));
	assert_acl(MP("shared/sub/deeper"), DEFAULT, shared_default());
}

/* Makes, with umask 027 in a child, a file (0666), a directory (0777) and a fifo (0666) in
 * "open", plus a file over the deleted "open/gone"; 0 or the errno that failed. */
static int make_with_umask(void)
{
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		umask(027);
		int fd = open(MP("open/f"), O_CREAT | O_EXCL | O_WRONLY, 0666);
		if (fd < 0 || close(fd) < 0)
			_exit(errno);
		fd = open(MP("open/gone"), O_CREAT | O_EXCL | O_WRONLY, 0666);
		if (fd < 0 || close(fd) < 0)
			_exit(errno);
		if (mkdir(MP("open/d"), 0777) < 0 || mkfifo(MP("open/p"), 0666) < 0)
			_exit(errno);
		_exit(0);
	}
	return child_status(child);
}

Test(fs_acl, the_umask_applies_where_the_parent_has_no_default_acl)
{
	cr_assert_eq(unlink(MP("open/gone")), 0);
	cr_assert_eq(make_with_umask(), 0);
	cr_assert_eq(mode_of(MP("open/f")), 0640);
	cr_assert_eq(mode_of(MP("open/gone")), 0640);
	cr_assert_eq(mode_of(MP("open/d")), 0750);
	cr_assert_eq(mode_of(MP("open/p")), 0640);
	assert_no_acl(MP("open/f"), ACCESS, ENODATA);
	assert_no_acl(MP("open/d"), DEFAULT, ENODATA);
}

static void acl_read_only(void)
{
	acl_layers((mnt_opts){.read_only_no_upper = true});
}

Test(fs_acl_ro, a_read_only_mount_enforces_the_acls_of_its_layers, .init = acl_read_only,
     .fini = mnt_teardown, .timeout = 60)
{
	cr_assert_eq(nobody_read(MP("secret"), "S"), 0);
	cr_assert_eq(nobody_read(MP("masked"), "S"), EACCES);
	cr_assert_eq(nobody_read(MP("closed"), "S"), EACCES);
	assert_acl(MP("shared"), DEFAULT, shared_default());
}

static void acl_off(void)
{
	acl_layers((mnt_opts){.noacl = true});
}

TestSuite(fs_noacl, .init = acl_off, .fini = mnt_teardown, .timeout = 60);

Test(fs_noacl, acl_xattrs_are_not_supported_and_not_enforced)
{
	cr_assert_eq(nobody_read(MP("secret"), "S"), EACCES);
	assert_no_acl(MP("secret"), ACCESS, EOPNOTSUPP);
	assert_no_acl(MP("shared"), DEFAULT, EOPNOTSUPP);
	cr_assert_eq(listxattr(MP("secret"), NULL, 0), 0, "an ACL is listed");
	acl a = nobody_reads(4);
	cr_assert_eq(setxattr(MP("plain"), ACCESS, a.bytes, a.len, 0), -1);
	cr_assert_eq(errno, EOPNOTSUPP);
	cr_assert_eq(removexattr(MP("secret"), ACCESS), -1);
	cr_assert_eq(errno, EOPNOTSUPP);
	struct stat st;
	cr_assert_eq(lstat(UP("plain"), &st), -1, "a refused setxattr copied the file up");
	/* the layer keeps what it holds */
	assert_acl(in_dir(M.l1, "secret"), ACCESS, nobody_reads(4));
}

Test(fs_noacl, new_objects_get_the_umask_and_no_inherited_acl)
{
	cr_assert_eq(unlink(MP("shared/gone")), 0);
	mode_t old = umask(022);
	int fd = open(MP("shared/new"), O_CREAT | O_EXCL | O_WRONLY, 0666);
	cr_assert_geq(fd, 0);
	cr_assert_eq(close(fd), 0);
	fd = open(MP("shared/gone"), O_CREAT | O_EXCL | O_WRONLY, 0666);
	cr_assert_geq(fd, 0);
	cr_assert_eq(close(fd), 0);
	cr_assert_eq(mkdir(MP("shared/sub"), 0777), 0);
	umask(old);
	cr_assert_eq(mode_of(MP("shared/new")), 0644);
	cr_assert_eq(mode_of(MP("shared/gone")), 0644);
	cr_assert_eq(mode_of(MP("shared/sub")), 0755);
	/* the upper parent holds the default ACL (copied up with it), the new objects nothing */
	assert_acl(UP("shared"), DEFAULT, shared_default());
	assert_no_acl(UP("shared/new"), ACCESS, ENODATA);
	assert_no_acl(UP("shared/gone"), ACCESS, ENODATA);
	assert_no_acl(UP("shared/sub"), ACCESS, ENODATA);
	assert_no_acl(UP("shared/sub"), DEFAULT, ENODATA);
}

Test(fs_acl, objects_made_in_the_work_dir_inherit_nothing_from_where_it_lives)
{
	mnt_umount();
	set_acl(M.work, DEFAULT, shared_default());
	mnt_mount_opts(&(mnt_opts){.allow_other = true});
	/* a copy-up and an object made over a whiteout are both built in the work dir */
	cr_assert_eq(chmod(MP("closed"), 0640), 0);
	assert_no_acl(UP("closed"), ACCESS, ENODATA);
	cr_assert_eq(mode_of(UP("closed")), 0640);
	cr_assert_eq(unlink(MP("open/gone")), 0);
	mode_t old = umask(0);
	cr_assert_eq(mkdir(MP("open/gone"), 0751), 0);
	umask(old);
	cr_assert_eq(mode_of(MP("open/gone")), 0751);
	assert_no_acl(UP("open/gone"), ACCESS, ENODATA);
	assert_no_acl(UP("open/gone"), DEFAULT, ENODATA);
}

static void acl_mapped(void)
{
	/* 65534 in the mount is 165534 on disk */
	static const lyr_fs_idmap map[] = {{0, 0, 1}, {NOBODY, 100000 + NOBODY, 1}};
	mnt_skip_unless_fuse();
	mnt_dirs();
	need_acls();
	cr_assert_eq(chmod(M.root, 0755), 0);
	tu_write(M.l1, "secret", "S");
	tu_write(M.l1, "plain", "S");
	cr_assert_eq(chmod(in_dir(M.l1, "secret"), 0600), 0);
	cr_assert_eq(chmod(in_dir(M.l1, "plain"), 0600), 0);
	set_acl(in_dir(M.l1, "secret"), ACCESS,
		ACL({USER_OBJ, 6, NO_ID}, {USER, 4, 100000 + NOBODY}, {GROUP_OBJ, 0, NO_ID},
		    {MASK, 4, NO_ID}, {OTHER, 0, NO_ID}));
	mnt_mount_opts(&(mnt_opts){.allow_other = true, .uidmap = map, .nuidmap = 2});
}

Test(fs_acl_idmap, acl_entries_name_ids_as_the_mount_shows_them, .init = acl_mapped,
     .fini = mnt_teardown, .timeout = 60)
{
	assert_acl(MP("secret"), ACCESS, nobody_reads(4));
	cr_assert_eq(nobody_read(MP("secret"), "S"), 0);
	set_acl(MP("plain"), ACCESS, nobody_reads(4));
	assert_acl(UP("plain"), ACCESS,
		   ACL({USER_OBJ, 6, NO_ID}, {USER, 4, 100000 + NOBODY}, {GROUP_OBJ, 0, NO_ID},
		       {MASK, 4, NO_ID}, {OTHER, 0, NO_ID}));
	cr_assert_eq(nobody_read(MP("plain"), "S"), 0);
	/* an id the mapping does not reach cannot be stored, as chown to it cannot */
	acl a = ACL({USER_OBJ, 6, NO_ID}, {USER, 4, 4242}, {GROUP_OBJ, 0, NO_ID}, {MASK, 4, NO_ID},
		    {OTHER, 0, NO_ID});
	cr_assert_eq(setxattr(MP("plain"), ACCESS, a.bytes, a.len, 0), -1);
	cr_assert_eq(errno, EINVAL);
	assert_acl(MP("plain"), ACCESS, nobody_reads(4));
}

Test(fs_acl, an_o_tmpfile_file_inherits_the_default_acl_when_it_is_linked)
{
	mode_t old = umask(022);
	int fd = open(MP("shared"), O_TMPFILE | O_RDWR, 0666);
	umask(old);
	cr_assert_geq(fd, 0, "open O_TMPFILE: %s", strerror(errno));
	cr_assert_eq(write(fd, "T", 1), 1);
	cr_assert_eq(link_fd(fd, MP("shared/tmp")), 0, "linkat: %s", strerror(errno));
	close(fd);
	/* rw-rw-rw- asked, the umask ignored: owner rw-, mask rw-, other --- */
	cr_assert_eq(mode_of(MP("shared/tmp")), 0660);
	assert_acl(MP("shared/tmp"), ACCESS, inherited(6, 6));
	cr_assert_eq(nobody_read(MP("shared/tmp"), "T"), 0);
}

Test(fs_acl, a_default_acl_set_after_the_first_create_applies_to_the_next)
{
	cr_assert_eq(mkdir(MP("later"), 0755), 0);
	mode_t old = umask(022);
	int fd = open(MP("later/before"), O_CREAT | O_EXCL | O_WRONLY, 0666);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(mode_of(MP("later/before")), 0644);
	set_acl(MP("later"), DEFAULT, shared_default());
	fd = open(MP("later/after"), O_CREAT | O_EXCL | O_WRONLY, 0666);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(mode_of(MP("later/after")), 0660);
	assert_acl(MP("later/after"), ACCESS, inherited(6, 6));
	/* and taken away again */
	cr_assert_eq(removexattr(MP("later"), DEFAULT), 0);
	fd = open(MP("later/last"), O_CREAT | O_EXCL | O_WRONLY, 0666);
	cr_assert_geq(fd, 0);
	close(fd);
	umask(old);
	cr_assert_eq(mode_of(MP("later/last")), 0644);
	assert_no_acl(MP("later/last"), ACCESS, ENODATA);
}
