/* `layerfs import --tar`: tars built here for the purpose (with libarchive, or GNU tar where a
 * dialect is the point), imported through the command line, and the layers they make read
 * back byte for byte; bad tars refused with the entry named and the store left as it was. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/hash.h"
#include "testutil.h"

/* Entry tables name the first fields by position and the rest by designator. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static tu_dirs dirs;

static void setup(void)
{
	tu_dirs_init(&dirs);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs);
}

TestSuite(oci_tar_in, .init = setup, .fini = teardown);

/* One entry of a tar made by mktar. */
typedef struct tent {
	const char *name;
	char type;	  /* f file, d dir, l symlink, h hard link, p fifo, c / b device */
	const char *data; /* file content; link target */
	unsigned mode;
	unsigned uid, gid;
	long long sec;
	long nsec;
	const char *xname; /* one xattr, or NULL */
	const char *xval;
	size_t xlen;
	unsigned maj, mnr;
} tent;

enum { TAR_PLAIN, TAR_GZIP, TAR_ZSTD };

/* Writes the N entries T as a PAX tar to PATH. */
static void mktar(const char *path, int filter, const tent *t, size_t n)
{
	struct archive *a = archive_write_new();
	cr_assert(a);
	archive_write_set_format_pax(a);
	if (filter == TAR_GZIP)
		archive_write_add_filter_gzip(a);
	else if (filter == TAR_ZSTD)
		archive_write_add_filter_zstd(a);
	cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK, "%s",
		     archive_error_string(a));
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, t[i].name);
		unsigned mode = t[i].mode ? t[i].mode : t[i].type == 'd' ? 0755 : 0644;
		archive_entry_set_perm(e, mode);
		archive_entry_set_uid(e, t[i].uid);
		archive_entry_set_gid(e, t[i].gid);
		archive_entry_set_mtime(e, t[i].sec, t[i].nsec);
		size_t len = t[i].type == 'f' && t[i].data ? strlen(t[i].data) : 0;
		switch (t[i].type) {
		case 'f':
			archive_entry_set_filetype(e, AE_IFREG);
			break;
		case 'd':
			archive_entry_set_filetype(e, AE_IFDIR);
			break;
		case 'p':
			archive_entry_set_filetype(e, AE_IFIFO);
			break;
		case 'l':
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, t[i].data);
			break;
		case 'h':
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, t[i].data);
			break;
		case 'c':
		case 'b':
			archive_entry_set_filetype(e, t[i].type == 'c' ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_rdevmajor(e, t[i].maj);
			archive_entry_set_rdevminor(e, t[i].mnr);
			break;
		}
		archive_entry_set_size(e, (la_int64_t)len);
		if (t[i].xname)
			archive_entry_xattr_add_entry(e, t[i].xname, t[i].xval, t[i].xlen);
		cr_assert_eq(archive_write_header(a, e), ARCHIVE_OK, "%s", archive_error_string(a));
		if (len)
			cr_assert_eq(archive_write_data(a, t[i].data, len), (la_ssize_t)len);
		archive_entry_free(e);
	}
	cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static char *tar_path(const char *name)
{
	return tu_path(dirs.tmp, name);
}

/* import --tar PATH [--parent P]: the printed ID (heap), after asserting success. */
static char *import_tar(const char *path, const char *parent)
{
	tu_run r = parent ? tu_lf(dirs.store, "import", "--tar", path, "--parent", parent, NULL)
			  : tu_lf(dirs.store, "import", "--tar", path, NULL);
	char *out = tu_ok(r);
	cr_assert_eq(strlen(out), 72, "import printed '%s'", out);
	out[71] = '\0';
	return out;
}

/* The diff directory of layer ID (heap). */
static char *diff_dir(const char *id)
{
	char *p;
	cr_assert(asprintf(&p, "%s/layers/%s/diff", dirs.store, id + 7) > 0);
	return p;
}

Test(oci_tar_in, plain_gzip_and_zstd_tars_of_a_tree_give_the_id_import_dir_gives)
{
	if (tu_sh("command -v zstd >/dev/null") != 0) {
		const char *ci = getenv("CI");
		cr_assert(!(ci && strcmp(ci, "true") == 0), "zstd is missing (scripts/setup)");
		cr_skip_test("zstd is not installed");
	}
	tu_write(dirs.src, "d/f", "hello\n");
	tu_write(dirs.src, "d/e/g", "");
	cr_assert_eq(
	    tu_sh("cd %s && ln -s ../nowhere l && ln d/f d/hard && mkfifo p && "
		  "setfattr -n user.a -v 1 d/f && "
		  "touch -h -d '2020-01-01 00:00:00.123456789' d/f l d/e . && chmod 0750 d",
		  dirs.src),
	    0);
	char *dir_id = tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL));
	dir_id[71] = '\0';
	static const char *const flags[] = {"", "-z", "--zstd"};
	for (size_t i = 0; i < 3; i++) {
		/* the name says nothing: the compression is told from the bytes */
		_cleanup_free_ char *tar = tar_path("layer.bin");
		cr_assert_eq(
		    tu_sh("tar --xattrs --format=posix %s -C %s -cf %s .", flags[i], dirs.src, tar),
		    0);
		_cleanup_free_ char *id = import_tar(tar, NULL);
		cr_assert_str_eq(id, dir_id, "tar %s", flags[i]);
	}
	/* and from standard input, with --json */
	_cleanup_free_ char *out = NULL;
	cr_assert_eq(tu_sh("tar --xattrs --format=posix -z -C %s -cf - . | %s --root %s --json "
			   "import --tar - > %s/out",
			   dirs.src, LAYERFS_BIN, dirs.store, dirs.tmp),
		     0);
	out = tu_read(dirs.tmp, "out");
	char want[128];
	snprintf(want, sizeof want, "{\"id\":\"%s\"}\n", dir_id);
	cr_assert_str_eq(out, want);
	free(dir_id);
}

Test(oci_tar_in, whiteouts_and_opaque_dirs_become_the_stores_markers_over_a_parent)
{
	tent base[] = {
	    {"./", 'd', .sec = 100},	   {"a/", 'd', .sec = 100}, {"a/x", 'f', "x", .sec = 100},
	    {"a/y", 'f', "y", .sec = 100}, {"d/", 'd', .sec = 100}, {"d/z", 'f', "z", .sec = 100},
	};
	_cleanup_free_ char *t1 = tar_path("base.tar");
	mktar(t1, TAR_PLAIN, base, LYR_ARRAY_SIZE(base));
	_cleanup_free_ char *parent = import_tar(t1, NULL);

	tent top[] = {
	    {"a/.wh.x", 'f', "", .mode = 0600, .sec = 200, .nsec = 5},
	    {"d/", 'd', .mode = 0700, .sec = 300},
	    {"d/.wh..wh..opq", 'f', "", .sec = 300},
	    {"d/new", 'f', "n", .sec = 300},
	    {"a/.wh.y", 'f', "", .sec = 200}, /* then y again: this layer's own y stays */
	    {"a/y", 'f', "y2", .sec = 200},
	};
	_cleanup_free_ char *t2 = tar_path("top.tar.zst");
	mktar(t2, TAR_ZSTD, top, LYR_ARRAY_SIZE(top));
	_cleanup_free_ char *id = import_tar(t2, parent);

	/* the same tree built by hand, hashed and chained: the ID the store must give it */
	_cleanup_free_ char *want = tu_path(dirs.tmp, "want");
	cr_assert_eq(
	    tu_sh("mkdir -p %s/a %s/d && mknod %s/a/x c 0 0 && chmod 0600 %s/a/x && "
		  "touch -h -d @200.000000005 %s/a/x && printf n > %s/d/new && "
		  "printf y2 > %s/a/y && touch -d @300 %s/d/new && touch -d @200 %s/a/y && "
		  "setfattr -n trusted.overlay.opaque -v y %s/d && chmod 0700 %s/d && "
		  "touch -d @300 %s/d && touch -d @0 %s/a && touch -d @100 %s",
		  want, want, want, want, want, want, want, want, want, want, want, want, want,
		  want),
	    0);
	int fd = open(want, O_RDONLY | O_DIRECTORY);
	char digest[LYR_DIGEST_TEXT_LEN], expect[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_diff(fd, NULL, digest, NULL), 0);
	close(fd);
	lyr_layer_id(parent, digest, expect);
	cr_assert_str_eq(id, expect);

	_cleanup_free_ char *diff = diff_dir(id);
	_cleanup_free_ char *wh = tu_path(diff, "a/x");
	struct stat st;
	cr_assert_eq(lstat(wh, &st), 0);
	cr_assert(S_ISCHR(st.st_mode) && st.st_rdev == 0);
	cr_assert_eq(st.st_mtim.tv_sec, 200);
	cr_assert_eq(st.st_mtim.tv_nsec, 5);
	_cleanup_free_ char *marker = tu_path(diff, "d/.wh..wh..opq");
	cr_assert_eq(lstat(marker, &st), -1, "no OCI marker is left in the layer");
	_cleanup_free_ char *d = tu_path(diff, "d");
	char v[4] = "";
	cr_assert_eq(getxattr(d, "trusted.overlay.opaque", v, sizeof v), 1);
	cr_assert_eq(v[0], 'y');

	/* and what the store reads from it: x gone, y replaced, z hidden by the opaque d */
	char *changes = tu_ok(tu_lf(dirs.store, "diff", id, NULL));
	cr_assert(tu_has_line(changes, "D /a/x"), "%s", changes);
	cr_assert(tu_has_line(changes, "C /a/y"), "%s", changes);
	cr_assert(tu_has_line(changes, "D /d/z"), "%s", changes);
	cr_assert(tu_has_line(changes, "A /d/new"), "%s", changes);
	free(changes);
}

Test(oci_tar_in, keeps_owners_times_xattrs_devices_long_names_and_hard_links)
{
	if (geteuid() != 0)
		cr_skip_test("owners, devices and security.capability need root");
	char longname[300];
	memset(longname, 'n', 250);
	strcpy(longname + 250, "/file");
	static const char cap[20] = {1, 0, 0, 2, 0, 0x20}; /* cap_net_bind_service, vfs v2 */
	tent t[] = {
	    {"bin/", 'd', .mode = 0755, .uid = 0, .gid = 0, .sec = 7},
	    {"bin/ping", 'f', "ping", .mode = 04755, .uid = 1234, .gid = 5678, .sec = 1500000000,
	     .nsec = 123456789, .xname = "security.capability", .xval = cap, .xlen = sizeof cap},
	    {"bin/ping2", 'h', "bin/ping"},
	    {"dev/null", 'c', .mode = 0666, .maj = 1, .mnr = 3, .sec = 9},
	    {"dev/loop0", 'b', .mode = 0660, .maj = 7, .mnr = 0, .sec = 9},
	    {"run/fifo", 'p', .mode = 0640, .sec = 9},
	    {longname, 'f', "deep"},
	    {"lnk", 'l',
	     "/a/target/of/any/length/beyond/one/hundred/bytes/xxxxxxxxxxxxxxxxxxxxxxxx"
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	     .sec = 11},
	};
	_cleanup_free_ char *tar = tar_path("rich.tgz");
	mktar(tar, TAR_GZIP, t, LYR_ARRAY_SIZE(t));
	_cleanup_free_ char *id = import_tar(tar, NULL);
	_cleanup_free_ char *diff = diff_dir(id);
	struct stat st, st2;
	_cleanup_free_ char *ping = tu_path(diff, "bin/ping");
	_cleanup_free_ char *ping2 = tu_path(diff, "bin/ping2");
	cr_assert_eq(lstat(ping, &st), 0);
	cr_assert_eq(st.st_mode, S_IFREG | 04755);
	cr_assert_eq(st.st_uid, 1234);
	cr_assert_eq(st.st_gid, 5678);
	cr_assert_eq(st.st_mtim.tv_sec, 1500000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 123456789);
	char v[32];
	cr_assert_eq(lgetxattr(ping, "security.capability", v, sizeof v), (ssize_t)sizeof cap);
	cr_assert_eq(memcmp(v, cap, sizeof cap), 0);
	cr_assert_eq(lstat(ping2, &st2), 0);
	cr_assert_eq(st2.st_ino, st.st_ino, "a hard link stays a link");
	cr_assert_eq(st.st_nlink, 2);
	_cleanup_free_ char *null = tu_path(diff, "dev/null");
	cr_assert_eq(lstat(null, &st), 0);
	cr_assert_eq(st.st_mode, S_IFCHR | 0666);
	cr_assert_eq(st.st_rdev, makedev(1, 3));
	_cleanup_free_ char *loop = tu_path(diff, "dev/loop0");
	cr_assert_eq(lstat(loop, &st), 0);
	cr_assert_eq(st.st_mode, S_IFBLK | 0660);
	cr_assert_eq(st.st_rdev, makedev(7, 0));
	_cleanup_free_ char *fifo = tu_path(diff, "run/fifo");
	cr_assert_eq(lstat(fifo, &st), 0);
	cr_assert_eq(st.st_mode, S_IFIFO | 0640);
	_cleanup_free_ char *deep = tu_read(diff, longname);
	cr_assert_str_eq(deep, "deep");
	_cleanup_free_ char *lnk = tu_path(diff, "lnk");
	char target[256];
	ssize_t n = readlink(lnk, target, sizeof target);
	cr_assert_eq(n, (ssize_t)strlen(t[7].data));
	cr_assert_eq(memcmp(target, t[7].data, (size_t)n), 0);
	/* implied directories: 0755, mtime 0; listed ones as listed */
	_cleanup_free_ char *dev = tu_path(diff, "dev");
	cr_assert_eq(lstat(dev, &st), 0);
	cr_assert_eq(st.st_mode, S_IFDIR | 0755);
	cr_assert_eq(st.st_mtim.tv_sec, 0);
	_cleanup_free_ char *bin = tu_path(diff, "bin");
	cr_assert_eq(lstat(bin, &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 7);
}

Test(oci_tar_in, sparse_files_keep_their_holes_and_size)
{
	_cleanup_free_ char *f = tu_path(dirs.tmp, "sp/big");
	cr_assert_eq(tu_sh("mkdir %s/sp && truncate -s 64M %s && printf mid | "
			   "dd of=%s bs=1 seek=1000000 conv=notrunc status=none && "
			   "tar --format=posix -S -C %s/sp -cf %s/sp.tar big",
			   dirs.tmp, f, f, dirs.tmp, dirs.tmp),
		     0);
	_cleanup_free_ char *tar = tar_path("sp.tar");
	struct stat st;
	cr_assert_eq(stat(tar, &st), 0);
	cr_assert_lt(st.st_size, 1 << 20, "tar stored the file sparse");
	_cleanup_free_ char *id = import_tar(tar, NULL);
	_cleanup_free_ char *diff = diff_dir(id);
	_cleanup_free_ char *big = tu_path(diff, "big");
	cr_assert_eq(stat(big, &st), 0);
	cr_assert_eq(st.st_size, 64 << 20);
	cr_assert_lt(st.st_blocks * 512, 1 << 20, "holes stay holes");
	cr_assert_eq(tu_sh("cmp -s %s %s", f, big), 0);
}

/* Imports TAR expecting failure with exactly MESSAGE on stderr, and the store unchanged. */
static void refused(const char *tar, const char *message, const char *const *extra)
{
	/* a tag that must not move, and a layer it points at */
	tent one[] = {{"keep", 'f', "k"}};
	_cleanup_free_ char *kt = tar_path("keep.tar");
	mktar(kt, TAR_PLAIN, one, 1);
	_cleanup_free_ char *keep = import_tar(kt, NULL);
	free(tu_ok(tu_lf(dirs.store, "tag", "t", keep, NULL)));
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	const char *argv[16] = {"--root", dirs.store, "import", "--tar", tar, "--tag", "t"};
	size_t n = 7;
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	tu_run r = tu_layerfs(NULL, argv);
	cr_assert_eq(r.status, 1, "status %d, stderr %s", r.status, r.err);
	char want[1024];
	snprintf(want, sizeof want, "layerfs: import --tar '%s': %s\n", tar, message);
	cr_assert_str_eq(r.err, want);
	cr_assert_str_eq(r.out, "");
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(after, before);
}

static void refused_entries(const tent *t, size_t n, const char *message)
{
	_cleanup_free_ char *tar = tar_path("bad.tar");
	mktar(tar, TAR_PLAIN, t, n);
	refused(tar, message, NULL);
}

Test(oci_tar_in, refuses_names_that_climb_out_and_reads_absolute_ones_below_the_root)
{
	tent up[] = {{"ok", 'f', "1"}, {"../x", 'f', "evil"}};
	refused_entries(up, 2, "entry '../x': '..' in the name would leave the layer");
	tent mid[] = {{"a/../../x", 'f', "evil"}};
	refused_entries(mid, 1, "entry 'a/../../x': '..' in the name would leave the layer");
	_cleanup_free_ char *x = tu_path(dirs.tmp, "x");
	struct stat st;
	cr_assert_eq(lstat(x, &st), -1, "nothing written outside the store");
	/* "/x" is "x" and "/" the root, as tar reads them; the same tree as the relative names */
	tent abs[] = {{"/", 'd', .mode = 0750, .sec = 5},
		      {"/etc/x", 'f', "in", .sec = 6},
		      {"/h", 'h', "/etc/x"}};
	tent rel[] = {{"./", 'd', .mode = 0750, .sec = 5},
		      {"etc/x", 'f', "in", .sec = 6},
		      {"h", 'h', "etc/x"}};
	_cleanup_free_ char *ta = tar_path("abs.tar");
	_cleanup_free_ char *tr = tar_path("rel.tar");
	mktar(ta, TAR_PLAIN, abs, 3);
	mktar(tr, TAR_PLAIN, rel, 3);
	_cleanup_free_ char *ia = import_tar(ta, NULL);
	_cleanup_free_ char *ir = import_tar(tr, NULL);
	cr_assert_str_eq(ia, ir);
	cr_assert_eq(lstat("/etc/x", &st) == 0 && st.st_size == 2 && st.st_mtime == 6, 0,
		     "nothing written at the absolute path");
}

Test(oci_tar_in, refuses_writing_through_a_symlink_an_earlier_entry_made)
{
	_cleanup_free_ char *outside = tu_path(dirs.tmp, "outside");
	cr_assert_eq(mkdir(outside, 0755), 0);
	tent t[] = {{"l", 'l', outside}, {"l/planted", 'f', "evil"}};
	refused_entries(t, 2,
			"entry 'l/planted': 'l' is a symlink made by an earlier entry: refusing to "
			"write through it");
	_cleanup_free_ char *planted = tu_path(outside, "planted");
	struct stat st;
	cr_assert_eq(lstat(planted, &st), -1);
	/* a hard link through it, too */
	tent h[] = {{"l", 'l', "/etc"}, {"h", 'h', "l/passwd"}};
	refused_entries(h, 2,
			"entry 'h': 'l' is a symlink made by an earlier entry: refusing to write "
			"through it");
}

Test(oci_tar_in, refuses_hard_links_outside_the_layer_or_to_later_entries)
{
	tent later[] = {{"h", 'h', "f"}, {"f", 'f', "1"}};
	refused_entries(later, 2, "entry 'h': hard link to 'f', which no earlier entry made");
	tent out[] = {{"h", 'h', "../../etc/passwd"}};
	refused_entries(out, 1,
			"entry 'h': hard link to '../../etc/passwd': '..' in the name would leave "
			"the layer");
	tent abs[] = {{"h", 'h', "/etc/passwd"}};
	refused_entries(abs, 1,
			"entry 'h': hard link to '/etc/passwd', which no earlier entry made");
	tent dir[] = {{"d/", 'd'}, {"h", 'h', "d"}};
	refused_entries(dir, 2, "entry 'h': hard link to 'd', which is a directory");
}

Test(oci_tar_in, refuses_the_stores_own_markers_in_the_input)
{
	tent dev[] = {{"wh", 'c', .maj = 0, .mnr = 0}};
	refused_entries(dev, 1,
			"entry 'wh': a character device 0/0 is a whiteout marker in the store; OCI "
			"tars use .wh. names");
	tent xa[] = {{"d/", 'd', .xname = "user.overlay.redirect", .xval = "/etc", .xlen = 4}};
	refused_entries(xa, 1,
			"entry 'd/': xattr 'user.overlay.redirect' is an overlay marker, which a "
			"layer would obey");
	tent aufs[] = {{".wh..wh.plnk", 'f', ""}};
	refused_entries(
	    aufs, 1, "entry '.wh..wh.plnk': not an OCI whiteout (AUFS metadata is not supported)");
	tent wdir[] = {{".wh.d/f", 'f', ""}};
	refused_entries(wdir, 1,
			"entry '.wh.d/f': directory '.wh.d' has an overlay marker name (.wh.*)");
}

Test(oci_tar_in, refuses_truncated_and_corrupt_streams)
{
	char big[20000];
	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	tent t[] = {{"small", 'f', "s"}, {"big", 'f', big}};
	_cleanup_free_ char *tar = tar_path("t.tar");
	mktar(tar, TAR_PLAIN, t, 2);
	cr_assert_eq(truncate(tar, 8192), 0);
	refused(tar, "entry 'big': reading its data: Truncated tar archive", NULL);

	_cleanup_free_ char *gz = tar_path("t.tgz");
	mktar(gz, TAR_GZIP, t, 2);
	cr_assert_eq(
	    tu_sh("printf 'garbagegarbage' | dd of=%s bs=1 seek=40 conv=notrunc status=none", gz),
	    0);
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	tu_run r = tu_lf(dirs.store, "import", "--tar", gz, NULL);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "layerfs: import --tar '") == r.err, "%s", r.err);
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(after, before);

	_cleanup_free_ char *junk = tu_path(dirs.tmp, "junk");
	tu_write(dirs.tmp, "junk", "this is not a tar at all, and it is long enough to tell.\n");
	refused(junk, "Unrecognized archive format", NULL);
}

Test(oci_tar_in, refuses_devices_without_the_privilege_to_make_them)
{
	tent t[] = {{"dev/sda", 'b', .maj = 8, .mnr = 0}};
	_cleanup_free_ char *tar = tar_path("dev.tar");
	mktar(tar, TAR_PLAIN, t, 1);
	if (geteuid() != 0) {
		refused(tar, "entry 'dev/sda': creating a device needs root (CAP_MKNOD)", NULL);
		return;
	}
	/* as root: the same command with CAP_MKNOD out of reach, on an existing store */
	tu_write(dirs.src, "f", "x");
	free(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	const char *argv[] = {"/usr/bin/setpriv",
			      "--bounding-set=-mknod",
			      LAYERFS_BIN,
			      "--root",
			      dirs.store,
			      "import",
			      "--tar",
			      tar,
			      NULL};
	tu_run r = tu_cmd(NULL, argv);
	cr_assert_eq(r.status, 1, "%s", r.err);
	char want[512];
	snprintf(want, sizeof want,
		 "layerfs: import --tar '%s': entry 'dev/sda': creating a device needs root "
		 "(CAP_MKNOD)\n",
		 tar);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(after, before);
}

Test(oci_tar_in, usage_errors_exit_2)
{
	tu_run r = tu_lf(dirs.store, "import", "--tar", "x", dirs.src, NULL);
	cr_assert_eq(r.status, 2);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "import", dirs.src, "--parent", "abc", NULL);
	cr_assert_eq(r.status, 2);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "import", "--tar", "/nonexistent/x.tar", NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "layerfs: import --tar '/nonexistent/x.tar': No such file or "
				"directory\n");
	tu_run_free(&r);
}

Test(oci_tar_in, a_tar_ending_right_after_the_last_data_is_read_as_go_reads_it)
{
	/* no padding, no end blocks (what umoci insert writes): nothing is lost, so accepted */
	tu_write(dirs.src, "f", "abcd");
	_cleanup_free_ char *tar = tar_path("short.tar");
	cr_assert_eq(
	    tu_sh("tar --format=ustar -C %s -cf %s f && truncate -s 516 %s", dirs.src, tar, tar),
	    0);
	_cleanup_free_ char *id = import_tar(tar, NULL);
	_cleanup_free_ char *diff = diff_dir(id);
	_cleanup_free_ char *f = tu_read(diff, "f");
	cr_assert_str_eq(f, "abcd");
	/* one byte of data less is a truncated stream */
	cr_assert_eq(truncate(tar, 515), 0);
	refused(tar, "entry 'f': reading its data: Truncated tar archive", NULL);
}
