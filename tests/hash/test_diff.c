#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "layerfs/hash.h"
#include "testutil.h"

/* ---- expected bytes, built the way docs/diff-digest.md describes them ---------------------- */

typedef struct bytes {
	char *p;
	size_t len;
} bytes;

static void put(bytes *b, const void *data, size_t len)
{
	b->p = realloc(b->p, b->len + len + 1);
	cr_assert_not_null(b->p);
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

/* L(b): decimal length, ':', the bytes. */
static void L(bytes *b, const void *data, size_t len)
{
	char n[32];
	int k = snprintf(n, sizeof n, "%zu:", len);
	put(b, n, (size_t)k);
	put(b, data, len);
}

static void Ls(bytes *b, const char *s) { L(b, s, strlen(s)); }

static void Lf(bytes *b, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	Ls(b, buf);
}

static void sha(const bytes *b, uint8_t out[32]) { lyr_sha256(b->p, b->len, out); }

static void final_text(const uint8_t root[32], char out[LYR_DIGEST_TEXT_LEN])
{
	bytes b = {0};
	Ls(&b, "layerfs-diff");
	Ls(&b, "1");
	put(&b, root, 32);
	uint8_t d[32];
	sha(&b, d);
	lyr_digest_text(d, out);
	free(b.p);
}

/* An independent reference walk over paths (this test's own code, not the library's). */
typedef struct ref_link {
	dev_t dev;
	ino_t ino;
	char path[PATH_MAX];
} ref_link;

typedef struct ref {
	ref_link links[256];
	size_t nlinks;
} ref;

static int byte_order(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static void ref_header(bytes *b, const char *full, const struct stat *st)
{
	const char *t = S_ISREG(st->st_mode) ? "f" : S_ISDIR(st->st_mode) ? "d" : S_ISLNK(st->st_mode) ? "l"
		      : S_ISCHR(st->st_mode) ? "c" : S_ISBLK(st->st_mode) ? "b" : S_ISFIFO(st->st_mode) ? "p" : "s";
	Ls(b, "type"), Ls(b, t);
	Ls(b, "mode"), Lf(b, "%u", st->st_mode & 07777);
	Ls(b, "uid"), Lf(b, "%u", st->st_uid);
	Ls(b, "gid"), Lf(b, "%u", st->st_gid);
	Ls(b, "size"), Lf(b, "%lld", S_ISREG(st->st_mode) ? (long long)st->st_size : 0LL);
	Ls(b, "mtime"), Lf(b, "%lld.%09ld", (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(full, target, sizeof target);
		cr_assert_geq(n, 0);
		Ls(b, "link"), L(b, target, (size_t)n);
	}
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		Ls(b, "rdev"), Lf(b, "%u:%u", major(st->st_rdev), minor(st->st_rdev));
	char names[4096];
	ssize_t nl = llistxattr(full, names, sizeof names);
	cr_assert_geq(nl, 0);
	const char *sorted[64];
	size_t n = 0;
	for (ssize_t off = 0; off < nl; off += (ssize_t)strlen(names + off) + 1)
		sorted[n++] = names + off;
	for (size_t i = 0; i < n; i++) /* insertion sort by bytes */
		for (size_t j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
			const char *tmp = sorted[j];
			sorted[j] = sorted[j - 1];
			sorted[j - 1] = tmp;
		}
	Ls(b, "xattrs"), Lf(b, "%zu", n);
	for (size_t i = 0; i < n; i++) {
		char val[4096];
		ssize_t vl = lgetxattr(full, sorted[i], val, sizeof val);
		cr_assert_geq(vl, 0);
		Ls(b, sorted[i]);
		L(b, val, (size_t)vl);
	}
}

static void ref_digest(ref *r, const char *root, const char *rel, uint8_t out[32])
{
	char full[PATH_MAX];
	snprintf(full, sizeof full, "%s%s%s", root, *rel ? "/" : "", rel);
	struct stat st;
	cr_assert_eq(lstat(full, &st), 0);
	bytes b = {0};
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
		for (size_t i = 0; i < r->nlinks; i++)
			if (r->links[i].dev == st.st_dev && r->links[i].ino == st.st_ino) {
				Ls(&b, "type"), Ls(&b, "h"), Ls(&b, "link"), Ls(&b, r->links[i].path);
				sha(&b, out);
				free(b.p);
				return;
			}
		ref_link *l = &r->links[r->nlinks++];
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		snprintf(l->path, sizeof l->path, "%s", rel);
	}
	ref_header(&b, full, &st);
	if (S_ISREG(st.st_mode)) {
		_cleanup_free_ char *content = NULL;
		size_t len = 0;
		cr_assert_eq(lyr_read_file(full, &content, &len), 0);
		uint8_t c[32];
		lyr_sha256(content, len, c);
		Ls(&b, "data"), L(&b, c, 32);
	} else if (S_ISDIR(st.st_mode)) {
		struct dirent **list;
		int n = scandir(full, &list, NULL, byte_order);
		cr_assert_geq(n, 0);
		int k = 0;
		for (int i = 0; i < n; i++)
			k += strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, "..");
		Ls(&b, "entries"), Lf(&b, "%d", k);
		for (int i = 0; i < n; i++) {
			const char *name = list[i]->d_name;
			if (strcmp(name, ".") && strcmp(name, "..")) {
				char crel[PATH_MAX];
				snprintf(crel, sizeof crel, "%s%s%s", rel, *rel ? "/" : "", name);
				uint8_t cd[32];
				ref_digest(r, root, crel, cd);
				Ls(&b, name);
				put(&b, cd, 32);
			}
			free(list[i]);
		}
		free(list);
	}
	sha(&b, out);
	free(b.p);
}

static void reference(const char *dir, char out[LYR_DIGEST_TEXT_LEN])
{
	static ref r;
	r.nlinks = 0;
	uint8_t root[32];
	ref_digest(&r, dir, "", root);
	final_text(root, out);
}

static int digest_of(const char *dir, char out[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	char err[PATH_MAX] = "";
	return lyr_hash_diff(fd, NULL, out, err);
}

static void set_time(const char *dir, const char *rel, time_t sec, long nsec)
{
	_cleanup_free_ char *p = *rel ? tu_path(dir, rel) : strdup(dir);
	const struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0, "utimensat %s", p);
}

/* Runs the shell command TEMPLATE with every "%s" replaced by DIR. */
static void run(const char *template, const char *dir)
{
	char cmd[4096];
	size_t len = 0, dl = strlen(dir);
	for (const char *t = template; *t; t++) {
		cr_assert_lt(len + dl + 2, sizeof cmd);
		if (t[0] == '%' && t[1] == 's') {
			memcpy(cmd + len, dir, dl);
			len += dl;
			t++;
		} else {
			cmd[len++] = *t;
		}
	}
	cmd[len] = '\0';
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* ---- tests --------------------------------------------------------------------------------- */

Test(hash_diff, digest_of_a_small_tree_matches_the_documented_bytes)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "a", "hello");
	_cleanup_free_ char *a = tu_path(dir, "a");
	_cleanup_free_ char *d = tu_path(dir, "d");
	_cleanup_free_ char *l = tu_path(dir, "d/l");
	_cleanup_free_ char *h = tu_path(dir, "d/h");
	cr_assert_eq(mkdir(d, 0750), 0);
	cr_assert_eq(chmod(d, 0750), 0);
	cr_assert_eq(chmod(a, 0644), 0);
	cr_assert_eq(chmod(dir, 0755), 0);
	cr_assert_eq(setxattr(a, "user.a", "x", 1, 0), 0);
	cr_assert_eq(symlink("../a", l), 0);
	cr_assert_eq(link(a, h), 0);
	set_time(dir, "a", 1500000000, 1);
	set_time(dir, "d/l", 1600000000, 0);
	set_time(dir, "d", 1700000000, 999999999);
	set_time(dir, "", 1000000000, 5);
	unsigned u = getuid(), g = getgid();

	/* The entries exactly as docs/diff-digest.md spells them out. */
	uint8_t ca[32], da[32], dl[32], dh[32], dd[32], droot[32];
	lyr_sha256("hello", 5, ca);
	bytes b = {0};
	Ls(&b, "type"), Ls(&b, "f"), Ls(&b, "mode"), Ls(&b, "420"), Ls(&b, "uid"), Lf(&b, "%u", u);
	Ls(&b, "gid"), Lf(&b, "%u", g), Ls(&b, "size"), Ls(&b, "5");
	Ls(&b, "mtime"), Ls(&b, "1500000000.000000001"), Ls(&b, "xattrs"), Ls(&b, "1");
	Ls(&b, "user.a"), Ls(&b, "x"), Ls(&b, "data"), L(&b, ca, 32);
	if (u == 0 && g == 0) {
		const char *doc = "4:type1:f4:mode3:4203:uid1:03:gid1:04:size1:55:mtime20:1500000000.000000001"
				  "6:xattrs1:16:user.a1:x4:data32:";
		cr_assert_eq(memcmp(b.p, doc, strlen(doc)), 0, "the documented example");
	}
	sha(&b, da);
	b.len = 0;
	Ls(&b, "type"), Ls(&b, "h"), Ls(&b, "link"), Ls(&b, "a");
	sha(&b, dh);
	b.len = 0;
	Ls(&b, "type"), Ls(&b, "l"), Ls(&b, "mode"), Ls(&b, "511"), Ls(&b, "uid"), Lf(&b, "%u", u);
	Ls(&b, "gid"), Lf(&b, "%u", g), Ls(&b, "size"), Ls(&b, "0");
	Ls(&b, "mtime"), Ls(&b, "1600000000.000000000"), Ls(&b, "link"), Ls(&b, "../a");
	Ls(&b, "xattrs"), Ls(&b, "0");
	sha(&b, dl);
	b.len = 0;
	Ls(&b, "type"), Ls(&b, "d"), Ls(&b, "mode"), Ls(&b, "488"), Ls(&b, "uid"), Lf(&b, "%u", u);
	Ls(&b, "gid"), Lf(&b, "%u", g), Ls(&b, "size"), Ls(&b, "0");
	Ls(&b, "mtime"), Ls(&b, "1700000000.999999999"), Ls(&b, "xattrs"), Ls(&b, "0");
	Ls(&b, "entries"), Ls(&b, "2"), Ls(&b, "h"), put(&b, dh, 32), Ls(&b, "l"), put(&b, dl, 32);
	sha(&b, dd);
	b.len = 0;
	Ls(&b, "type"), Ls(&b, "d"), Ls(&b, "mode"), Ls(&b, "493"), Ls(&b, "uid"), Lf(&b, "%u", u);
	Ls(&b, "gid"), Lf(&b, "%u", g), Ls(&b, "size"), Ls(&b, "0");
	Ls(&b, "mtime"), Ls(&b, "1000000000.000000005"), Ls(&b, "xattrs"), Ls(&b, "0");
	Ls(&b, "entries"), Ls(&b, "2"), Ls(&b, "a"), put(&b, da, 32), Ls(&b, "d"), put(&b, dd, 32);
	sha(&b, droot);
	free(b.p);
	char expected[LYR_DIGEST_TEXT_LEN], got[LYR_DIGEST_TEXT_LEN];
	final_text(droot, expected);

	cr_assert_eq(digest_of(dir, got), 0);
	cr_assert_str_eq(got, expected);
	tu_rmtree(dir);
}

/* A tree with every type, many files (so both hashing threads take part) and links. */
static void build_rich(const char *dir, bool reverse)
{
	char rel[64], data[64];
	for (int k = 0; k < 60; k++) {
		int i = reverse ? 59 - k : k;
		snprintf(rel, sizeof rel, "files/%02d/f%d", i % 7, i);
		snprintf(data, sizeof data, "file number %d", i * i);
		tu_write(dir, rel, data);
	}
	/* Files of many read chunks, below and above the size read ahead by a second thread. */
	_cleanup_free_ char *bigp = tu_path(dir, "big");
	_cleanup_free_ char *hugep = tu_path(dir, "huge");
	size_t huge = (17u << 20) + 5;
	_cleanup_free_ char *pat = malloc(huge);
	for (size_t i = 0; i < huge; i++)
		pat[i] = (char)('a' + (i * 31 + i / 65536) % 23);
	FILE *f = fopen(bigp, "w");
	cr_assert_eq(fwrite(pat, 1, (3u << 20) + 5, f), (3u << 20) + 5);
	fclose(f);
	f = fopen(hugep, "w");
	cr_assert_eq(fwrite(pat, 1, huge, f), huge);
	fclose(f);
	run("ln -s files/00/f0 %s/sym && ln -s /nowhere %s/dangling && ln %s/files/01/f1 %s/files/hard &&"
	    " mkfifo %s/fifo && mknod %s/wh c 0 0",
	    dir);
	_cleanup_free_ char *files = tu_path(dir, "files");
	cr_assert_eq(setxattr(files, "user.overlay.opaque", "y", 1, 0), 0);
	cr_assert_eq(setxattr(bigp, "user.z", "1", 1, 0), 0);
	cr_assert_eq(setxattr(bigp, "user.b", "2", 1, 0), 0);
	run("chmod 0644 %s/files/*/* %s/big %s/huge && chmod 0755 %s/files %s/files/* %s && chmod 0600 %s/wh", dir);
	run("find %s -exec touch -h -d '2020-01-02 03:04:05.123456789' {} +", dir);
}

Test(hash_diff, digest_matches_an_independent_walk_of_a_rich_tree)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	build_rich(dir, false);
	char expected[LYR_DIGEST_TEXT_LEN], got[LYR_DIGEST_TEXT_LEN];
	reference(dir, expected);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(digest_of(dir, got), 0);
		cr_assert_str_eq(got, expected, "run %d", i);
	}
	tu_rmtree(dir);
}

Test(hash_diff, same_tree_built_twice_in_other_order_gives_the_same_digest)
{
	_cleanup_free_ char *a = tu_mkdtemp();
	_cleanup_free_ char *b = tu_mkdtemp();
	build_rich(a, false);
	build_rich(b, true);
	char da[LYR_DIGEST_TEXT_LEN], db[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(digest_of(a, da), 0);
	cr_assert_eq(digest_of(b, db), 0);
	cr_assert_str_eq(da, db);
	tu_rmtree(a);
	tu_rmtree(b);
}

/* Builds the base tree in a fresh dir, applies CHANGE (a shell command with %s for the dir, or
 * NULL), pins every time, and returns its digest. */
static void digest_with(const char *change, char out[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	run("mkdir %s/d && printf hello > %s/d/f && printf other > %s/g && ln %s/d/f %s/d/link && "
	    "ln -s target %s/s",
	    dir);
	run("chmod 0644 %s/d/f %s/g && chmod 0755 %s/d %s", dir);
	if (change)
		run(change, dir);
	run("find %s -exec touch -h -d '2021-05-06 07:08:09.5' {} +", dir);
	cr_assert_eq(digest_of(dir, out), 0);
	char expected[LYR_DIGEST_TEXT_LEN];
	reference(dir, expected);
	cr_assert_str_eq(out, expected, "after '%s'", change ? change : "");
	tu_rmtree(dir);
}

Test(hash_diff, each_covered_attribute_changes_the_digest)
{
	char base[LYR_DIGEST_TEXT_LEN], again[LYR_DIGEST_TEXT_LEN];
	digest_with(NULL, base);
	digest_with(NULL, again);
	cr_assert_str_eq(base, again);
	const char *changes[] = {
		"printf hellp > %s/d/f",                            /* content, same size */
		"chmod 0640 %s/d/f",                                /* mode */
		"chmod 4755 %s/d/f",                                /* setuid */
		"chmod 1755 %s/d",                                  /* sticky on a dir */
		"setfattr -n user.k -v v %s/d/f",                   /* xattr */
		"setfattr -n user.overlay.opaque -v y %s/d",        /* opaque marker */
		"rm %s/s && ln -s targe2 %s/s",                     /* symlink target */
		"rm %s/d/link && cp -p %s/d/f %s/d/link",           /* copy instead of hard link */
		"mknod %s/d/gone c 0 0",                            /* a whiteout */
		"mv %s/g %s/h",                                     /* a name */
		"rm %s/g && mkfifo %s/g",                           /* a type */
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(changes); i++) {
		char d[LYR_DIGEST_TEXT_LEN];
		digest_with(changes[i], d);
		cr_assert_str_neq(d, base, "'%s' left the digest unchanged", changes[i]);
	}
}

Test(hash_diff, owner_and_nanoseconds_of_mtime_change_the_digest)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "f", "x");
	set_time(dir, "f", 1600000000, 100);
	set_time(dir, "", 1600000000, 0);
	char base[LYR_DIGEST_TEXT_LEN], d[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(digest_of(dir, base), 0);
	set_time(dir, "f", 1600000000, 101);
	set_time(dir, "", 1600000000, 0);
	cr_assert_eq(digest_of(dir, d), 0);
	cr_assert_str_neq(d, base);
	set_time(dir, "f", 1600000000, 100);
	set_time(dir, "", 1600000000, 0);
	cr_assert_eq(digest_of(dir, d), 0);
	cr_assert_str_eq(d, base);
	if (geteuid() == 0) {
		_cleanup_free_ char *f = tu_path(dir, "f");
		cr_assert_eq(lchown(f, 1000, 0), 0);
		cr_assert_eq(digest_of(dir, d), 0);
		cr_assert_str_neq(d, base, "uid");
		cr_assert_eq(lchown(f, 0, 1000), 0);
		char d2[LYR_DIGEST_TEXT_LEN];
		cr_assert_eq(digest_of(dir, d2), 0);
		cr_assert_str_neq(d2, base, "gid");
		cr_assert_str_neq(d2, d);
	}
	tu_rmtree(dir);
}

Test(hash_diff, deep_tree_is_hashed_like_the_reference)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	char rel[1024] = "";
	for (int i = 0; i < 200; i++)
		strcat(rel, "d/");
	strcat(rel, "leaf");
	tu_write(dir, rel, "bottom");
	char expected[LYR_DIGEST_TEXT_LEN], got[LYR_DIGEST_TEXT_LEN];
	reference(dir, expected);
	cr_assert_eq(digest_of(dir, got), 0);
	cr_assert_str_eq(got, expected);
	tu_rmtree(dir);
}

static void count_progress(void *ctx, uint64_t files, uint64_t nbytes)
{
	uint64_t *last = ctx;
	last[0] = files;
	last[1] = nbytes;
}

Test(hash_diff, progress_ends_with_all_files_and_bytes)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "a", "1234");
	tu_write(dir, "s/b", "12345678");
	uint64_t last[2] = {0};
	lyr_progress p = {count_progress, last};
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY);
	char got[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_diff(fd, &p, got, NULL), 0);
	cr_assert_eq(last[0], 2);
	cr_assert_eq(last[1], 12);
	tu_rmtree(dir);
}

static int hash_expecting_eacces(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return 98;
	char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
	int r = lyr_hash_diff(fd, NULL, got, err);
	if (r != -EACCES)
		return 1;
	if (strcmp(err, "sub/secret") != 0)
		return 2;
	return 0;
}

Test(hash_diff, unreadable_file_fails_naming_its_path)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to switch to an unprivileged uid");
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "sub/aaa", "fine");
	tu_write(dir, "sub/secret", "hidden");
	run("chmod 0755 %s && chmod 000 %s/sub/secret", dir);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(99);
		_exit(hash_expecting_eacces(dir));
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0);
	tu_rmtree(dir);
}

Test(hash_diff, import_refuses_overlay_markers_naming_the_first)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	build_rich(src, false);
	_cleanup_close_ int sfd = open(src, O_RDONLY | O_DIRECTORY);
	_cleanup_close_ int dfd = open(dst, O_RDONLY | O_DIRECTORY);
	lyr_tree_error err = {0};
	char got[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_import(sfd, dfd, NULL, &err, got), -EINVAL);
	cr_assert_str_eq(err.path, "files"); /* its xattr is met when the walk leaves it */
	cr_assert_eq(err.err, EINVAL);
	cr_assert_str_eq(err.why, "xattr 'user.overlay.opaque' is an overlay marker in a layer: a "
				  "directory import copies files and refuses it");
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(hash_diff, import_copies_and_returns_the_digest_of_the_copy)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	build_rich(src, false);
	/* An import is a plain copy: no overlay markers (the test above). */
	_cleanup_free_ char *files = tu_path(src, "files");
	cr_assert_eq(removexattr(files, "user.overlay.opaque"), 0);
	run("rm %s/wh", src);
	_cleanup_close_ int sfd = open(src, O_RDONLY | O_DIRECTORY);
	_cleanup_close_ int dfd = open(dst, O_RDONLY | O_DIRECTORY);
	lyr_tree_error err = {0};
	char got[LYR_DIGEST_TEXT_LEN], of_copy[LYR_DIGEST_TEXT_LEN], of_src[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_import(sfd, dfd, NULL, &err, got), 0, "import failed at '%s': %s",
		     err.path, strerror(err.err));
	cr_assert_eq(digest_of(dst, of_copy), 0);
	cr_assert_str_eq(got, of_copy);
	reference(dst, of_copy);
	cr_assert_str_eq(got, of_copy, "the reference walk agrees");
	if (geteuid() == 0) {
		/* A privileged copy is exact, so it digests like its source. */
		cr_assert_eq(digest_of(src, of_src), 0);
		cr_assert_str_eq(got, of_src);
	}
	_cleanup_free_ char *a = tu_read(src, "files/03/f10");
	_cleanup_free_ char *b = tu_read(dst, "files/03/f10");
	cr_assert_str_eq(a, b);
	tu_rmtree(src);
	tu_rmtree(dst);
}

Test(hash_diff, the_overlays_local_bookkeeping_xattrs_are_left_out)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "f", "content");
	_cleanup_free_ char *f = tu_path(dir, "f");
	char before[LYR_DIGEST_TEXT_LEN], after[LYR_DIGEST_TEXT_LEN], other[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(digest_of(dir, before), 0);
	cr_assert_eq(setxattr(f, "user.overlay.layerfs.ino", "4242", 4, 0), 0);
	cr_assert_eq(setxattr(dir, "user.overlay.layerfs.nlink", "2", 1, 0), 0);
	cr_assert_eq(digest_of(dir, after), 0);
	cr_assert_str_eq(after, before);
	/* any other overlay xattr is content */
	cr_assert_eq(setxattr(f, "user.overlay.metacopy", "", 0, 0), 0);
	cr_assert_eq(digest_of(dir, other), 0);
	cr_assert_str_neq(other, before);
	tu_rmtree(dir);
}

/* The listing of lyr_hash_diff_ex: each entry's header bytes as the digest encodes them, and a
 * regular file's content digest, sorted by path; the digest is the same as without listing and
 * with any number of threads. */
Test(hash_diff, listing_gives_each_header_and_content_digest)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "a/f", "hello");
	tu_write(dir, "b", "");
	_cleanup_free_ char *f = tu_path(dir, "a/f");
	_cleanup_free_ char *l = tu_path(dir, "a/l");
	cr_assert_eq(link(f, l), 0);
	cr_assert_eq(chmod(f, 0640), 0);
	set_time(dir, "a/f", 1500000000, 1);
	char plain[LYR_DIGEST_TEXT_LEN], listed[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(digest_of(dir, plain), 0);
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY);
	lyr_diff_list list = {0};
	lyr_diff_opts o = {.threads = 5, .entries = &list};
	cr_assert_eq(lyr_hash_diff_ex(fd, &o, listed, NULL), 0);
	cr_assert_str_eq(listed, plain);

	cr_assert_eq(list.n, 5);
	const char *paths[] = {"", "a", "a/f", "a/l", "b"};
	for (size_t i = 0; i < 5; i++)
		cr_assert_str_eq(list.v[i].path, paths[i]);
	bytes h = {0};
	Ls(&h, "type"), Ls(&h, "f"), Ls(&h, "mode"), Ls(&h, "416");
	Ls(&h, "uid"), Lf(&h, "%u", (unsigned)getuid()), Ls(&h, "gid"), Lf(&h, "%u", (unsigned)getgid());
	Ls(&h, "size"), Ls(&h, "5"), Ls(&h, "mtime"), Ls(&h, "1500000000.000000001");
	cr_assert_eq(list.v[2].header_len, h.len + 11);
	cr_assert_eq(memcmp(list.v[2].header, h.p, h.len), 0);
	cr_assert_eq(memcmp(list.v[2].header + h.len, "6:xattrs1:0", 11), 0);
	cr_assert(list.v[2].has_data);
	uint8_t want[32];
	lyr_sha256("hello", 5, want);
	cr_assert_eq(memcmp(list.v[2].data, want, 32), 0);
	/* the second name of the link is "type h" pointing at the first */
	bytes hl = {0};
	Ls(&hl, "type"), Ls(&hl, "h"), Ls(&hl, "link"), Ls(&hl, "a/f");
	cr_assert_eq(list.v[3].header_len, hl.len);
	cr_assert_eq(memcmp(list.v[3].header, hl.p, hl.len), 0);
	cr_assert(!list.v[3].has_data);
	/* an empty file's content digest is that of "" */
	lyr_sha256("", 0, want);
	cr_assert(list.v[4].has_data);
	cr_assert_eq(memcmp(list.v[4].data, want, 32), 0);
	cr_assert(!list.v[0].has_data && !list.v[1].has_data);
	cr_assert_eq(memcmp(list.v[1].header, "4:type1:d", 9), 0);
	lyr_diff_list_clear(&list);
	free(h.p);
	free(hl.p);
	tu_rmtree(dir);
}

Test(hash_diff, import_lists_the_copy)
{
	_cleanup_free_ char *src = tu_mkdtemp();
	_cleanup_free_ char *dst = tu_mkdtemp();
	tu_write(src, "x/y", "data");
	_cleanup_close_ int sfd = open(src, O_RDONLY | O_DIRECTORY);
	_cleanup_close_ int dfd = open(dst, O_RDONLY | O_DIRECTORY);
	lyr_tree_error err = {0};
	lyr_diff_list list = {0};
	char got[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_import_list(sfd, dfd, NULL, &err, got, &list), 0);
	cr_assert_eq(list.n, 3);
	cr_assert_str_eq(list.v[2].path, "x/y");
	uint8_t want[32];
	lyr_sha256("data", 4, want);
	cr_assert(list.v[2].has_data);
	cr_assert_eq(memcmp(list.v[2].data, want, 32), 0);
	lyr_diff_list_clear(&list);
	tu_rmtree(src);
	tu_rmtree(dst);
}
