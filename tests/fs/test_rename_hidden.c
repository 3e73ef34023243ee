/* Directories renamed onto names whose lower entries are hidden (a whited-out lower directory, a
 * removed merged or redirected directory, a name under a removed or renamed directory) show only
 * their own content.  One table: every kind of source directory renamed onto every kind of such
 * target, each case in its own directory "cST" of the same lower layers, compared (names and
 * contents, recursively) with a model: the same operations done on a plain directory that starts
 * as the merged view of the lowers.  The table runs on a library mount (before and after a
 * remount, and read-only with the upper as a lower), on a store ref (before and after a remount,
 * and its commit mounted read-only), with the lowers' markers in both formats (overlay xattrs
 * with whiteout devices; OCI/AUFS ".wh." names), and, as root where the kernel allows it, on
 * kernel overlayfs, which must agree with the model; then each overlay reads the upper the other
 * one wrote.  Needs root and /dev/fuse (the layers carry trusted.* xattrs and devices). */
#include <stdio.h>
#include <stdlib.h>

#include "layerfs/stack.h"
#include "mnt.h"

typedef enum marker_format { MARKERS_XATTR, MARKERS_AUFS } marker_format;

/* One object of a layer, relative to a case directory: 'f' a file holding DATA, 'w' a whiteout,
 * 'o' an opaque directory. */
typedef struct entry {
	char kind;
	const char *path, *data;
} entry;

/* l2, the bottom layer: the directories the cases hide and move */
static const entry lower2[] = {
    {'f', "d/a", "a2"},	     {'f', "d/b", "b2"},     {'f', "d/sub/s2", "s2"},	{'f', "q/q1", "q1"},
    {'f', "q/sub/q2", "q2"}, {'f', "p/d/a", "pa"},   {'f', "p/d/sub/ps", "ps"}, {'f', "p/o", "po"},
    {'f', "s/f", "f2"},	     {'f', "s/sub/z", "z2"}, {'f', "s/k", "k2"},
};

/* l1, over it: merges with l2's directories, hides some names, ends the merge of others */
static const entry lower1[] = {
    {'f', "d/c", "c1"},	     {'w', "d/b", NULL},   {'o', "d/sub", NULL},
    {'f', "d/sub/s1", "s1"}, {'f', "p/d/e", "pe"}, {'f', "s/g", "g1"},
    {'w', "s/f", NULL},	     {'o', "s/sub", NULL}, {'f', "s/sub/y", "y1"},
};

/* what l1 over l2 shows: where the model starts */
static const entry merged[] = {
    {'f', "d/a", "a2"},	  {'f', "d/c", "c1"},	     {'f', "d/sub/s1", "s1"},
    {'f', "q/q1", "q1"},  {'f', "q/sub/q2", "q2"},   {'f', "p/d/a", "pa"},
    {'f', "p/d/e", "pe"}, {'f', "p/d/sub/ps", "ps"}, {'f', "p/o", "po"},
    {'f', "s/g", "g1"},	  {'f', "s/k", "k2"},	     {'f', "s/sub/y", "y1"},
};

/* A change made through the view: 'm' mkdir A, 'w' write B into A, 'u' unlink A, 'r' rm -rf A,
 * 'v' rename A to B, 'x' exchange A and B (RENAME_EXCHANGE). */
typedef struct op {
	char kind;
	const char *a, *b;
} op;

typedef struct rename_case {
	const char *what;
	op prep[4];	/* run first (sources, then targets) */
	const char *at; /* the source's path, or the target's */
	op post[2];	/* targets: run after the rename (and after writing AT/late) */
	char move;	/* targets: 'v' when the source is renamed onto the target, 'x' when the two
			 * are exchanged */
} rename_case;

static const rename_case sources[] = {
    {"a new empty directory", {{'m', "n", NULL}}, "n", {{0}}, 'v'},
    {"a new directory with files",
     {{'m', "n", NULL}, {'w', "n/x", "x"}, {'m', "n/sub", NULL}, {'w', "n/sub/y", "ny"}},
     "n",
     {{0}},
     'v'},
    {"a lower directory", {{0}}, "s", {{0}}, 'v'},
    {"a lower directory changed in the upper",
     {{'w', "s/h", "h"}, {'u', "s/g", NULL}, {'w', "s/sub/w", "w"}},
     "s",
     {{0}},
     'v'},
    {"a lower directory renamed before", {{'v', "s", "s2"}}, "s2", {{0}}, 'v'},
    {"a new directory renamed before",
     {{'m', "n", NULL}, {'w', "n/x", "x"}, {'v', "n", "n2"}},
     "n2",
     {{0}},
     'v'},
    {"a directory made where a lower one was removed",
     {{'r', "s", NULL}, {'m', "s", NULL}, {'w', "s/x", "x"}},
     "s",
     {{0}},
     'v'},
};

static const rename_case targets[] = {
    {"the whiteout of a lower directory", {{'r', "d", NULL}}, "d", {{0}}, 'v'},
    {"a removed merged directory", {{'w', "d/u", "u"}, {'r', "d", NULL}}, "d", {{0}}, 'v'},
    {"a removed redirected directory",
     {{'r', "d", NULL}, {'v', "q", "d"}, {'w', "d/v", "v"}, {'r', "d", NULL}},
     "d",
     {{0}},
     'v'},
    {"a name under a removed directory", {{'r', "p", NULL}, {'m', "p", NULL}}, "p/d", {{0}}, 'v'},
    {"a name under a directory moved onto a removed one",
     {{'r', "p", NULL}, {'m', "t", NULL}, {'v', "t", "p"}},
     "p/d",
     {{0}},
     'v'},
    {"a name under a renamed lower directory",
     {{'v', "p", "p2"}, {'r', "p2/d", NULL}},
     "p2/d",
     {{0}},
     'v'},
    {"a name in a lower directory renamed afterwards",
     {{'r', "p/d", NULL}},
     "p/d",
     {{'v', "p", "p3"}},
     'v'},
    {"a lower directory emptied of its files",
     {{'u', "d/a", NULL}, {'u', "d/c", NULL}, {'r', "d/sub", NULL}},
     "d",
     {{0}},
     'v'},
    {"a lower directory it is exchanged with", {{0}}, "d", {{0}}, 'x'},
};

#define NSRC LYR_ARRAY_SIZE(sources)
#define NTGT LYR_ARRAY_SIZE(targets)

static char *expected[NSRC][NTGT];

static const char *case_dir(size_t s, size_t t)
{
	return short_name("c%zu%zu", s, t);
}

static void mkdirs(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *c = buf + 1; *c; c++)
		if (*c == '/') {
			*c = '\0';
			cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", buf,
				  strerror(errno));
			*c = '/';
		}
	cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", buf, strerror(errno));
}

/* Writes ENTRIES into the case directory DIR of the layer at ROOT, markers in FORMAT. */
static void build(const char *root, const char *dir, const entry *entries, size_t n,
		  marker_format format)
{
	for (size_t i = 0; i < n; i++) {
		const entry *e = &entries[i];
		_cleanup_free_ char *rel = NULL;
		cr_assert(asprintf(&rel, "%s/%s", dir, e->path) > 0);
		_cleanup_free_ char *path = tu_path(root, rel);
		if (e->kind == 'f') {
			tu_write(root, rel, e->data);
		} else if (e->kind == 'o') {
			mkdirs(path);
			if (format == MARKERS_XATTR)
				cr_assert_eq(setxattr(path, "trusted.overlay.opaque", "y", 1, 0),
					     0);
			else
				tu_write(path, LYR_WH_OPAQUE, "");
		} else {
			char *slash = strrchr(path, '/');
			*slash = '\0';
			mkdirs(path);
			if (format == MARKERS_XATTR) {
				*slash = '/';
				cr_assert_eq(mknod(path, S_IFCHR | 0600, makedev(0, 0)), 0);
			} else {
				_cleanup_free_ char *wh = NULL;
				cr_assert(asprintf(&wh, LYR_WH_PREFIX "%s", slash + 1) > 0);
				tu_write(path, wh, "");
			}
		}
	}
}

/* Writes ENTRIES into every case directory of the layer at ROOT. */
static void build_all(const char *root, const entry *entries, size_t n, marker_format format)
{
	for (size_t s = 0; s < NSRC; s++)
		for (size_t t = 0; t < NTGT; t++)
			build(root, case_dir(s, t), entries, n, format);
}

/* What failed in each case of the view being changed: an operation that fails there does not
 * stop the other cases, it shows in the comparison. */
static char *failed[NSRC][NTGT];

/* Does O in case directory DIR of the view at ROOT; 0 or the errno. */
static int run_op(const char *root, const char *dir, const op *o)
{
	char a[4096], b[4096] = "";
	snprintf(a, sizeof(a), "%s/%s/%s", root, dir, o->a);
	if (o->b)
		snprintf(b, sizeof(b), "%s/%s/%s", root, dir, o->b);
	int r = 0, fd;
	struct stat st;
	switch (o->kind) {
	case 'm':
		r = mkdir(a, 0755);
		break;
	case 'w':
		if ((fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0 ||
		    write(fd, o->b, strlen(o->b)) != (ssize_t)strlen(o->b))
			r = -1;
		if (fd >= 0)
			close(fd);
		break;
	case 'u':
		r = unlink(a);
		break;
	case 'r':
		tu_rmtree(a);
		if (lstat(a, &st) == 0) {
			r = -1;
			errno = EEXIST; /* something could not be removed */
		} else {
			r = errno == ENOENT ? 0 : -1;
		}
		break;
	case 'v':
		r = rename(a, b);
		break;
	case 'x':
		r = renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
		break;
	}
	return r < 0 ? errno : 0;
}

/* Runs OPS (up to N, ending at kind 0) in case S, T of the view at ROOT until one fails, which
 * is noted in failed[S][T]; false then. */
static bool run_ops(const char *root, size_t s, size_t t, const op *ops, size_t n)
{
	for (size_t i = 0; i < n && ops[i].kind; i++) {
		int e = run_op(root, case_dir(s, t), &ops[i]);
		if (e) {
			cr_assert(asprintf(&failed[s][t], "failed: %c %s %s: %s\n", ops[i].kind,
					   ops[i].a, ops[i].b ? ops[i].b : "", strerror(e)) > 0);
			return false;
		}
	}
	return true;
}

static void forget_failures(void)
{
	for (size_t s = 0; s < NSRC; s++)
		for (size_t t = 0; t < NTGT; t++) {
			free(failed[s][t]);
			failed[s][t] = NULL;
		}
}

/* Every case on the view at ROOT: prepare the source and the target, rename one onto the other,
 * write into the moved directory, then what the target says comes after. */
static void run_cases(const char *root)
{
	forget_failures();
	for (size_t s = 0; s < NSRC; s++)
		for (size_t t = 0; t < NTGT; t++) {
			const rename_case *src = &sources[s], *tgt = &targets[t];
			char late[64];
			snprintf(late, sizeof(late), "%s/late", tgt->at);
			op moves[] = {{tgt->move, src->at, tgt->at}, {'w', late, "late"}};
			if (run_ops(root, s, t, src->prep, LYR_ARRAY_SIZE(src->prep)) &&
			    run_ops(root, s, t, tgt->prep, LYR_ARRAY_SIZE(tgt->prep)) &&
			    run_ops(root, s, t, moves, LYR_ARRAY_SIZE(moves)))
				run_ops(root, s, t, tgt->post, LYR_ARRAY_SIZE(tgt->post));
		}
}

/* The model: the merged lowers as a plain directory under SCRATCH, every case run on it. */
static void model(const char *scratch)
{
	_cleanup_free_ char *plain = tu_path(scratch, "model");
	cr_assert_eq(mkdir(plain, 0755), 0);
	build_all(plain, merged, LYR_ARRAY_SIZE(merged), MARKERS_XATTR);
	run_cases(plain);
	for (size_t s = 0; s < NSRC; s++)
		for (size_t t = 0; t < NTGT; t++) {
			cr_assert_null(failed[s][t], "the model: %s", failed[s][t]);
			_cleanup_free_ char *dir = tu_path(plain, case_dir(s, t));
			expected[s][t] = tu_tree_text(dir);
		}
}

static void model_free(void)
{
	forget_failures();
	for (size_t s = 0; s < NSRC; s++)
		for (size_t t = 0; t < NTGT; t++) {
			free(expected[s][t]);
			expected[s][t] = NULL;
		}
}

/* Compares every case of the view at ROOT with the model; returns how many differ. */
static int compare(const char *root, const char *what)
{
	int bad = 0;
	for (size_t s = 0; s < NSRC; s++)
		for (size_t t = 0; t < NTGT; t++) {
			_cleanup_free_ char *dir = tu_path(root, case_dir(s, t));
			_cleanup_free_ char *tree = tu_tree_text(dir);
			_cleanup_free_ char *got = NULL;
			cr_assert(asprintf(&got, "%s%s", failed[s][t] ? failed[s][t] : "", tree) >
				  0);
			if (strcmp(got, expected[s][t]) == 0)
				continue;
			bad++;
			cr_expect_str_eq(got, expected[s][t], "%s, %s renamed onto %s (%s)", what,
					 sources[s].what, targets[t].what, case_dir(s, t));
		}
	return bad;
}

/* Mounts LOWERS (N, topmost first) read-only at M.mp through the library. */
static void mount_read_only(const char *const *lowers, size_t n)
{
	lyr_fs_config cfg;
	lyr_fs_config_init(&cfg);
	cfg.lowers = lowers;
	cfg.nlowers = n;
	lyr_fs_error err = {{0}};
	int r = lyr_fs_mount(&cfg, M.mp, &err, &M.pid);
	cr_assert_eq(r, 0, "mount: %d %s", r, err.msg);
	M.mounted = true;
}

static void setup(void)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	model(M.root);
}

static bool kernel_mounted;

static void teardown(void)
{
	if (kernel_mounted)
		umount2(M.mp, MNT_DETACH);
	kernel_mounted = false;
	model_free();
	mnt_teardown();
}

TestSuite(fs_rename_hidden, .init = setup, .fini = teardown, .timeout = 180);

/* The library mount: the cases, a remount, and the upper read as a lower (what a commit of it
 * would show). */
static void on_library_mount(marker_format format)
{
	build_all(M.l1, lower1, LYR_ARRAY_SIZE(lower1), format);
	build_all(M.l2, lower2, LYR_ARRAY_SIZE(lower2), format);
	mnt_mount();
	run_cases(M.mp);
	compare(M.mp, "mounted");
	mnt_umount();
	mnt_mount();
	compare(M.mp, "remounted");
	mnt_umount();
	const char *frozen[] = {M.upper, M.l1, M.l2};
	mount_read_only(frozen, 3);
	compare(M.mp, "upper as a lower");
	mnt_umount();
}

Test(fs_rename_hidden, with_xattr_markers_in_the_lowers)
{
	on_library_mount(MARKERS_XATTR);
}

Test(fs_rename_hidden, with_aufs_markers_in_the_lowers)
{
	on_library_mount(MARKERS_AUFS);
}

/* `layerfs ARGS...` in the test's store, which must succeed; its stdout (heap). */
#define LF(...) tu_ok(tu_lf(store, __VA_ARGS__, NULL))

/* A store ref on two layers (l2 imported, l1 written into a ref's upper and committed): the
 * cases, a remount, and the committed layer mounted read-only. */
static void on_store_ref(marker_format format)
{
	_cleanup_free_ char *store = tu_path(M.root, "store");
	_cleanup_free_ char *src = tu_path(M.root, "src");
	cr_assert_eq(mkdir(src, 0755), 0);
	build_all(src, lower2, LYR_ARRAY_SIZE(lower2), format);
	free(LF("import", src, "--tag", "l2"));
	_cleanup_free_ char *ref1 = LF("new", "l2");
	ref1[strcspn(ref1, "\n")] = '\0';
	_cleanup_free_ char *upper1 = tu_ref_upper(store, ref1);
	build_all(upper1, lower1, LYR_ARRAY_SIZE(lower1), format);
	free(LF("commit", ref1, "--tag", "l1"));
	_cleanup_free_ char *ref = LF("new", "l1");
	ref[strcspn(ref, "\n")] = '\0';

	free(LF("mount", ref, M.mp));
	run_cases(M.mp);
	compare(M.mp, "store ref");
	free(LF("umount", M.mp));
	free(LF("mount", ref, M.mp));
	compare(M.mp, "store ref remounted");
	free(LF("umount", M.mp));
	free(LF("commit", ref, "--tag", "top"));
	free(LF("mount", "top", M.mp));
	compare(M.mp, "committed layer");
	free(LF("umount", M.mp));
}

Test(fs_rename_hidden, on_a_store_ref_and_its_commit_with_xattr_markers)
{
	on_store_ref(MARKERS_XATTR);
}

Test(fs_rename_hidden, on_a_store_ref_and_its_commit_with_aufs_markers)
{
	on_store_ref(MARKERS_AUFS);
}

/* Mounts kernel overlayfs at M.mp: LOWERDIR ("a:b", overlay xattrs: it reads no ".wh." names)
 * under UPPER with renamed directories allowed, or read-only without UPPER.  0 or -errno. */
static int kernel_mount(const char *lowerdir, const char *upper, const char *work)
{
	_cleanup_free_ char *opts = NULL;
	if (upper)
		cr_assert(asprintf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=on",
				   lowerdir, upper, work) > 0);
	else
		cr_assert(asprintf(&opts, "lowerdir=%s,redirect_dir=follow", lowerdir) > 0);
	if (mount("overlay", M.mp, "overlay", upper ? 0 : MS_RDONLY, opts) < 0)
		return -errno;
	kernel_mounted = true;
	return 0;
}

static void kernel_umount(void)
{
	cr_assert_eq(umount2(M.mp, 0), 0, "umount %s: %s", M.mp, strerror(errno));
	kernel_mounted = false;
}

Test(fs_rename_hidden, kernel_overlayfs_agrees_with_the_model_and_reads_the_same_uppers)
{
	build_all(M.l1, lower1, LYR_ARRAY_SIZE(lower1), MARKERS_XATTR);
	build_all(M.l2, lower2, LYR_ARRAY_SIZE(lower2), MARKERS_XATTR);
	_cleanup_free_ char *kupper = tu_path(M.root, "kupper");
	_cleanup_free_ char *kwork = tu_path(M.root, "kwork");
	cr_assert_eq(mkdir(kupper, 0755), 0);
	cr_assert_eq(mkdir(kwork, 0755), 0);
	_cleanup_free_ char *lowers = NULL, *frozen = NULL;
	cr_assert(asprintf(&lowers, "%s:%s", M.l1, M.l2) > 0);
	cr_assert(asprintf(&frozen, "%s:%s", M.upper, lowers) > 0);
	int r = kernel_mount(lowers, kupper, kwork);
	if (r < 0)
		cr_skip_test("kernel overlayfs cannot be mounted here: %s", strerror(-r));
	run_cases(M.mp);
	int bad = compare(M.mp, "kernel overlayfs");
	kernel_umount();
	cr_assert_eq(bad, 0, "the model disagrees with kernel overlayfs");

	/* layerfs reads the upper the kernel wrote (relative redirects, its own opaque dirs) */
	const char *kernel_stack[] = {kupper, M.l1, M.l2};
	mount_read_only(kernel_stack, 3);
	compare(M.mp, "the kernel's upper read by layerfs");
	mnt_umount();

	/* and the kernel reads the upper layerfs writes */
	mnt_mount();
	run_cases(M.mp);
	mnt_umount();
	r = kernel_mount(frozen, NULL, NULL);
	cr_assert_eq(r, 0, "kernel overlayfs over layerfs's upper: %s", strerror(-r));
	compare(M.mp, "layerfs's upper read by kernel overlayfs");
	kernel_umount();
}
