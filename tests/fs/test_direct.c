/* O_DIRECT through the overlay: a bounded fsx-style run of random direct writes, reads and
 * truncates at aligned and unaligned offsets, sizes and buffer addresses, mixed with buffered I/O
 * on a second descriptor, each result checked against an in-memory model of the file, with and
 * without the writeback cache, on a copied-up lower file and on a file the mount creates.  Needs
 * /dev/fuse and root; skips otherwise. */
#include <stdio.h>
#include <stdlib.h>

#include "mnt.h"

#define FSX_MAX (256 << 10) /* largest file the run makes */
#define FSX_IO (64 << 10)   /* largest single read or write */
#define FSX_OPS 2000

TestSuite(fs_direct, .fini = mnt_teardown, .timeout = 120);

static void direct_layers(bool writeback)
{
	mnt_skip_unless_fuse();
	mnt_dirs();
	tu_write(M.l2, "lower", "the lower copy of the file\n");
	mnt_opts o = {.writeback = writeback};
	mnt_mount_opts(&o);
}

static void with_writeback(void)
{
	direct_layers(true);
}

static void without_writeback(void)
{
	direct_layers(false);
}

/* An offset or size: page-aligned, sector-aligned or anywhere, a third of the time each. */
static size_t pick(unsigned *seed, size_t limit)
{
	size_t v = (size_t)rand_r(seed) % limit;
	switch (rand_r(seed) % 3) {
	case 0:
		return v & ~(size_t)4095;
	case 1:
		return v & ~(size_t)511;
	default:
		return v;
	}
}

static void check_read(int fd, const unsigned char *model, size_t size, size_t off, size_t len,
		       unsigned char *buf, int op, const char *how)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);
	size_t want = off >= size ? 0 : (size - off < len ? size - off : len);
	cr_assert_eq(n, (ssize_t)want, "op %d: %s read of %zu at %zu: %zd (%s), want %zu", op, how,
		     len, off, n, n < 0 ? strerror(errno) : "short", want);
	cr_assert_eq(memcmp(buf, model + off, want), 0,
		     "op %d: %s read of %zu at %zu differs from the model", op, how, len, off);
}

/* Runs FSX_OPS random operations on PATH (opened O_DIRECT with FLAGS, and buffered) and checks
 * every read, the size after each step and, once closed, the upper copy's bytes. */
static void fsx(const char *path, int flags, const char *upper_path)
{
	unsigned char *model = calloc(1, FSX_MAX + FSX_IO);
	unsigned char *mem;
	cr_assert_eq(posix_memalign((void **)&mem, 4096, FSX_IO + 4096), 0);
	int dfd = open(path, flags | O_RDWR | O_DIRECT, 0644);
	cr_assert_geq(dfd, 0, "open %s O_DIRECT: %s", path, strerror(errno));
	int bfd = open(path, O_RDWR);
	cr_assert_geq(bfd, 0, "open %s: %s", path, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(dfd, &st), 0);
	size_t size = (size_t)st.st_size;
	cr_assert_eq(pread(bfd, model, size, 0), (ssize_t)size);
	unsigned seed = 20261203;
	for (int op = 0; op < FSX_OPS; op++) {
		/* the buffer itself is page-aligned, or not, like the offsets */
		unsigned char *buf = mem + (rand_r(&seed) % 2 ? 0 : 1 + rand_r(&seed) % 4000);
		size_t off = pick(&seed, FSX_MAX);
		size_t len = 1 + pick(&seed, FSX_IO - 1);
		int kind = rand_r(&seed) % 10;
		if (kind < 4) {
			for (size_t i = 0; i < len; i++)
				buf[i] = (unsigned char)rand_r(&seed);
			int fd = kind < 3 ? dfd : bfd;
			ssize_t n = pwrite(fd, buf, len, (off_t)off);
			cr_assert_eq(n, (ssize_t)len, "op %d: %s write of %zu at %zu: %s", op,
				     fd == dfd ? "direct" : "buffered", len, off,
				     n < 0 ? strerror(errno) : "short");
			memcpy(model + off, buf, len);
			if (off + len > size)
				size = off + len;
		} else if (kind < 7) {
			check_read(dfd, model, size, off, len, buf, op, "direct");
		} else if (kind < 9) {
			check_read(bfd, model, size, off, len, buf, op, "buffered");
		} else {
			size_t to = pick(&seed, FSX_MAX);
			cr_assert_eq(ftruncate(dfd, (off_t)to), 0, "op %d: truncate to %zu: %s", op,
				     to, strerror(errno));
			if (to < size) /* the model holds zeros past the end */
				memset(model + to, 0, size - to);
			size = to;
		}
		cr_assert_eq(fstat(dfd, &st), 0);
		cr_assert_eq((size_t)st.st_size, size, "op %d: size %lld, want %zu", op,
			     (long long)st.st_size, size);
	}
	cr_assert_eq(fsync(dfd), 0);
	cr_assert_eq(close(dfd), 0);
	cr_assert_eq(close(bfd), 0);
	char *disk = NULL;
	size_t disk_len = 0;
	cr_assert_eq(lyr_read_file(upper_path, &disk, &disk_len), 0);
	cr_assert_eq(disk_len, size);
	cr_assert_eq(memcmp(disk, model, size), 0, "the upper copy differs from the model");
	free(disk);
	free(mem);
	free(model);
}

Test(fs_direct, random_direct_io_on_a_lower_file_matches_a_model, .init = with_writeback)
{
	fsx(MP("lower"), 0, UP("lower"));
}

Test(fs_direct, random_direct_io_on_a_lower_file_matches_a_model_without_writeback,
     .init = without_writeback)
{
	fsx(MP("lower"), 0, UP("lower"));
}

Test(fs_direct, random_direct_io_on_a_created_file_matches_a_model, .init = with_writeback)
{
	fsx(MP("new"), O_CREAT | O_EXCL, UP("new"));
}

Test(fs_direct, random_direct_io_on_a_created_file_matches_a_model_without_writeback,
     .init = without_writeback)
{
	fsx(MP("new"), O_CREAT | O_EXCL, UP("new"));
}

/* what dd iflag=direct does to a file no one has written: reads of the lower copy */
Test(fs_direct, direct_reads_of_a_lower_file_return_its_bytes, .init = with_writeback)
{
	unsigned char *buf;
	cr_assert_eq(posix_memalign((void **)&buf, 4096, 8192), 0);
	int fd = open(MP("lower"), O_RDONLY | O_DIRECT);
	cr_assert_geq(fd, 0, "open: %s", strerror(errno));
	cr_assert_eq(pread(fd, buf, 4096, 0), 27, "%s", strerror(errno));
	cr_assert_eq(memcmp(buf, "the lower copy of the file\n", 27), 0);
	cr_assert_eq(pread(fd, buf + 3, 5, 4), 5, "%s", strerror(errno));
	cr_assert_eq(memcmp(buf + 3, "lower", 5), 0);
	cr_assert_eq(close(fd), 0);
	free(buf);
}
