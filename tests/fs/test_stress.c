/* Data integrity under random operations: reads, writes, truncates, renames and shared mmap
 * writes over files that start in a lower layer, checked against an in-memory model after every
 * read and in full at the end and after a remount; beside them, directories that start merged,
 * opaque (both marker formats) or whited out in the lowers are removed, refilled, and replaced
 * by new or other directories renamed onto their names, whose listings must show exactly what
 * the model holds (no deleted lower file comes back).  Bounded in time (a few seconds per run);
 * run with and without the writeback cache.  Needs /dev/fuse; skips otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "layerfs/stack.h"
#include "mnt.h"

#define NAMES 12
#define MAX_SIZE (192 * 1024)
#define SECONDS 6

typedef struct model_file {
	bool exists;
	size_t size;
	unsigned char *data; /* MAX_SIZE bytes */
} model_file;

static model_file model[NAMES];
static unsigned seed;

#define DIRS 5
#define DIR_FILES 4

/* Directory dK holds files eJ, J < DIR_FILES, with short contents ("" when absent). */
typedef struct model_dir {
	bool exists;
	char file[DIR_FILES][16];
} model_dir;

static model_dir dirs[DIRS];

static unsigned rnd(unsigned n)
{
	seed = seed * 1103515245u + 12345u;
	return n ? (seed >> 8) % n : 0;
}

static const char *fname(int i)
{
	return short_name("f%d", i);
}

static void fill(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)rnd(256);
}

static const char *dname(int k)
{
	return short_name("d%d", k);
}

static const char *dfile(int k, int j)
{
	return short_name("d%d/e%d", k, j);
}

/* Lower dir K's file J holding DATA in LAYER, and in the model when SHOWN. */
static void lower_dir_file(const char *layer, int k, int j, const char *data, bool shown)
{
	tu_write(layer, dfile(k, j), data);
	if (shown) {
		dirs[k].exists = true;
		snprintf(dirs[k].file[j], sizeof(dirs[k].file[j]), "%s", data);
	}
}

/* d0 in l2 alone; d1 merged from both; d2 opaque in l1 (xattr), d3 opaque in l1 (".wh..wh..opq"),
 * each over an l2 copy with other files; d4 whited out in l1: every deleted or hidden lower file
 * has a name that a new directory may get too. */
static void build_lower_dirs(void)
{
	memset(dirs, 0, sizeof(dirs));
	lower_dir_file(M.l2, 0, 0, "l2-d0e0", true);
	lower_dir_file(M.l2, 0, 1, "l2-d0e1", true);
	lower_dir_file(M.l2, 1, 0, "l2-d1e0", true);
	lower_dir_file(M.l2, 1, 1, "l2-d1e1", false);
	lower_dir_file(M.l1, 1, 2, "l1-d1e2", true);
	mk_whiteout(M.l1, "d1/e1");
	for (int k = 2; k <= 3; k++) {
		lower_dir_file(M.l2, k, 0, "l2-hidden", false);
		lower_dir_file(M.l2, k, 3, "l2-hidden", false);
		lower_dir_file(M.l1, k, 1, k == 2 ? "l1-d2e1" : "l1-d3e1", true);
	}
	cr_assert_eq(setxattr(in_dir(M.l1, "d2"), "trusted.overlay.opaque", "y", 1, 0), 0);
	tu_write(M.l1, "d3/" LYR_WH_OPAQUE, "");
	lower_dir_file(M.l2, 4, 0, "l2-hidden", false);
	lower_dir_file(M.l2, 4, 2, "l2-hidden", false);
	mk_whiteout(M.l1, "d4");
}

static void build_lowers(void)
{
	for (int i = 0; i < NAMES; i++) {
		model[i].data = calloc(1, MAX_SIZE);
		cr_assert_not_null(model[i].data);
		if (i >= 9)
			continue; /* names that start absent */
		model[i].exists = true;
		model[i].size = rnd(MAX_SIZE / 2);
		fill(model[i].data, model[i].size);
		const char *layer = i % 3 == 0 ? M.l1 : M.l2;
		int fd = open(in_dir(layer, fname(i)), O_WRONLY | O_CREAT, 0644);
		cr_assert_geq(fd, 0);
		cr_assert_eq(write(fd, model[i].data, model[i].size), (ssize_t)model[i].size);
		close(fd);
	}
	/* a whiteout over one lower name: it starts absent */
	tu_write(M.l2, "f9", "hidden");
	mk_whiteout(M.l1, "f9");
	build_lower_dirs();
}

static void check_file(int i)
{
	int fd = open(MP(fname(i)), O_RDONLY);
	if (!model[i].exists) {
		cr_assert_eq(fd, -1, "%s should not exist", fname(i));
		cr_assert_eq(errno, ENOENT);
		return;
	}
	cr_assert_geq(fd, 0, "open %s: %s", fname(i), strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq((size_t)st.st_size, model[i].size, "size of %s (seed %u)", fname(i), seed);
	unsigned char *buf = malloc(MAX_SIZE + 1);
	ssize_t n = pread(fd, buf, MAX_SIZE + 1, 0);
	close(fd);
	cr_assert_eq(n, (ssize_t)model[i].size, "read of %s", fname(i));
	cr_assert_eq(memcmp(buf, model[i].data, model[i].size), 0, "content of %s", fname(i));
	free(buf);
}

static void check_dir(int k)
{
	_cleanup_free_ char *got = NULL, *want = strdup("");
	if (dirs[k].exists) {
		got = tu_tree_text(MP(dname(k)));
		for (int j = 0; j < DIR_FILES; j++) {
			if (!dirs[k].file[j][0])
				continue;
			char *w;
			cr_assert(asprintf(&w, "%se%d=%s\n", want, j, dirs[k].file[j]) > 0);
			free(want);
			want = w;
		}
	} else {
		struct stat st;
		got = strdup(lstat(MP(dname(k)), &st) == 0 ? "present" : strerror(errno));
		free(want);
		want = strdup(strerror(ENOENT));
	}
	cr_assert_str_eq(got, want, "listing of %s (seed %u)", dname(k), seed);
}

static void check_all(void)
{
	for (int i = 0; i < NAMES; i++)
		check_file(i);
	for (int k = 0; k < DIRS; k++)
		check_dir(k);
}

static int pick_existing(void)
{
	for (int tries = 0; tries < 64; tries++) {
		int i = (int)rnd(NAMES);
		if (model[i].exists)
			return i;
	}
	return -1;
}

static void op_write(int i)
{
	size_t off = rnd(MAX_SIZE - 1);
	size_t len = 1 + rnd((unsigned)(MAX_SIZE - off < 20000 ? MAX_SIZE - off : 20000));
	unsigned char *buf = malloc(len);
	fill(buf, len);
	int fd = open(MP(fname(i)), O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
	if (off > model[i].size)
		memset(model[i].data + model[i].size, 0, off - model[i].size);
	memcpy(model[i].data + off, buf, len);
	if (off + len > model[i].size)
		model[i].size = off + len;
	free(buf);
}

static void op_truncate(int i)
{
	size_t size = rnd(MAX_SIZE);
	cr_assert_eq(truncate(MP(fname(i)), (off_t)size), 0);
	if (size > model[i].size)
		memset(model[i].data + model[i].size, 0, size - model[i].size);
	model[i].size = size;
}

static void op_rename(int i)
{
	int j = (int)rnd(NAMES);
	if (j == i)
		return;
	cr_assert_eq(rename(MP(fname(i)), MP(fname(j))), 0, "rename %s %s: %s", fname(i), fname(j),
		     strerror(errno));
	unsigned char *t = model[j].data;
	model[j] = model[i];
	model[i].data = t;
	model[i].exists = false;
	model[i].size = 0;
}

static void op_mmap(int i)
{
	if (model[i].size == 0)
		return;
	int fd = open(MP(fname(i)), O_RDWR);
	cr_assert_geq(fd, 0);
	unsigned char *p = mmap(NULL, model[i].size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED, "mmap %s: %s", fname(i), strerror(errno));
	size_t off = rnd((unsigned)model[i].size);
	size_t len = 1 + rnd((unsigned)(model[i].size - off));
	unsigned char *buf = malloc(len);
	fill(buf, len);
	memcpy(p + off, buf, len);
	memcpy(model[i].data + off, buf, len);
	cr_assert_eq(memcmp(p, model[i].data, model[i].size), 0);
	cr_assert_eq(msync(p, model[i].size, MS_SYNC), 0);
	munmap(p, model[i].size);
	close(fd);
	free(buf);
}

static void op_read(int i)
{
	int fd = open(MP(fname(i)), O_RDONLY);
	cr_assert_geq(fd, 0);
	size_t off = rnd((unsigned)model[i].size + 1);
	size_t len = rnd(40000);
	unsigned char *buf = malloc(len + 1);
	ssize_t n = pread(fd, buf, len, (off_t)off);
	close(fd);
	size_t want =
	    off >= model[i].size ? 0 : (model[i].size - off < len ? model[i].size - off : len);
	cr_assert_eq(n, (ssize_t)want, "read %s at %zu (seed %u)", fname(i), off, seed);
	cr_assert_eq(memcmp(buf, model[i].data + off, want), 0, "bytes of %s at %zu", fname(i),
		     off);
	free(buf);
}

static void create_missing(void)
{
	int i = (int)rnd(NAMES);
	if (model[i].exists)
		return;
	model[i].exists = true;
	model[i].size = rnd(5000);
	fill(model[i].data, model[i].size);
	int fd = open(MP(fname(i)), O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0, "create %s: %s", fname(i), strerror(errno));
	cr_assert_eq(write(fd, model[i].data, model[i].size), (ssize_t)model[i].size);
	close(fd);
}

/* A directory of the model other than K that exists (EXISTS) or not, or -1. */
static int pick_dir(int k, bool exists)
{
	for (int tries = 0; tries < 16; tries++) {
		int j = (int)rnd(DIRS);
		if (j != k && dirs[j].exists == exists)
			return j;
	}
	return -1;
}

static void random_text(char *buf, size_t size)
{
	size_t n = 1 + rnd((unsigned)size - 1);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + rnd(26));
	buf[n] = '\0';
}

/* Writes file J of directory K, in the mount and in the model. */
static void dir_write(int k, int j)
{
	random_text(dirs[k].file[j], sizeof(dirs[k].file[j]) - 1);
	put(MP(dfile(k, j)), dirs[k].file[j]);
}

/* A directory operation on dK: an existing one is removed, written into or renamed onto a
 * missing name; a missing name gets a new directory (made elsewhere, with some files, and
 * renamed onto it) or an existing directory renamed onto it. */
static void op_dir(int k)
{
	int j;
	if (dirs[k].exists) {
		switch (rnd(3)) {
		case 0:
			tu_rmtree(MP(dname(k)));
			memset(&dirs[k], 0, sizeof(dirs[k]));
			break;
		case 1:
			dir_write(k, (int)rnd(DIR_FILES));
			break;
		default:
			if ((j = pick_dir(k, false)) < 0)
				return;
			cr_assert_eq(rename(MP(dname(k)), MP(dname(j))), 0, "rename %s %s: %s",
				     dname(k), dname(j), strerror(errno));
			dirs[j] = dirs[k];
			memset(&dirs[k], 0, sizeof(dirs[k]));
		}
		return;
	}
	if (rnd(2) == 0 && (j = pick_dir(k, true)) >= 0) {
		cr_assert_eq(rename(MP(dname(j)), MP(dname(k))), 0, "rename %s %s: %s", dname(j),
			     dname(k), strerror(errno));
		dirs[k] = dirs[j];
		memset(&dirs[j], 0, sizeof(dirs[j]));
		return;
	}
	cr_assert_eq(mkdir(MP("new"), 0755), 0, "mkdir new: %s", strerror(errno));
	for (int f = 0; f < DIR_FILES; f++)
		if (rnd(2)) {
			random_text(dirs[k].file[f], sizeof(dirs[k].file[f]) - 1);
			char rel[32];
			snprintf(rel, sizeof(rel), "new/e%d", f);
			put(MP(rel), dirs[k].file[f]);
		}
	cr_assert_eq(rename(MP("new"), MP(dname(k))), 0, "rename new %s: %s", dname(k),
		     strerror(errno));
	dirs[k].exists = true;
}

static void run(bool writeback, unsigned s)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	seed = s;
	build_lowers();
	mnt_mount_opts(&(mnt_opts){.writeback = writeback});
	check_all();
	time_t end = time(NULL) + SECONDS;
	unsigned ops = 0;
	while (time(NULL) < end) {
		if (rnd(6) == 0) {
			op_dir((int)rnd(DIRS));
			if (++ops % 64 == 0)
				check_all();
			continue;
		}
		int i = pick_existing();
		if (i < 0 || rnd(20) == 0) {
			create_missing();
			continue;
		}
		switch (rnd(6)) {
		case 0:
			op_write(i);
			break;
		case 1:
			op_truncate(i);
			break;
		case 2:
			op_rename(i);
			break;
		case 3:
			op_mmap(i);
			break;
		default:
			op_read(i);
			break;
		}
		if (++ops % 64 == 0)
			check_all();
	}
	check_all();
	mnt_umount();
	mnt_mount_opts(&(mnt_opts){.writeback = writeback});
	check_all();
	cr_log_info("%u operations, seed %u", ops, s);
	for (int i = 0; i < NAMES; i++)
		free(model[i].data);
}

TestSuite(fs_stress, .fini = mnt_teardown, .timeout = 120);

Test(fs_stress, random_operations_match_the_model)
{
	run(false, 20261129u);
}

Test(fs_stress, random_operations_match_the_model_with_writeback_cache)
{
	run(true, 4242u);
}
