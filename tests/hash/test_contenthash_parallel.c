/* The content hash on several threads: the same digests as on one thread and as an independent
 * reference computed here, the same cache records, cache calls from the calling thread only,
 * and failures that still name the path that failed. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "layerfs/hash.h"
#include "hashutil.h"
#include "testutil.h"

/* ---- a tree of many files of mixed sizes ---------------------------------------------------- */

/* Writes SIZE bytes of deterministic noise (seeded by SEED) to DIR/REL. */
static void noise_file(const char *dir, const char *rel, size_t size, uint32_t seed)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	_cleanup_free_ uint8_t *buf = malloc(size ? size : 1);
	cr_assert_not_null(buf);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
	_cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(write(fd, buf, size), (ssize_t)size);
}

static void mkdir_at(const char *dir, const char *rel, mode_t mode)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(mkdir(p, mode), 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(chmod(p, mode), 0);
}

/* 16 directories of 20 files each (0 B to 3 MiB, most of them small), symlinks, an empty
 * directory, a nested directory and odd modes: about 380 entries, 16 MiB. */
static char *mixed_tree(void)
{
	static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 65536, 70001, 1 << 20,
				       (3 << 20) + 7};
	char *dir = tu_mkdtemp();
	for (int d = 0; d < 16; d++) {
		char rel[64];
		snprintf(rel, sizeof rel, "d%02d", d);
		mkdir_at(dir, rel, d == 5 ? 0700 : 0755);
		for (int f = 0; f < 20; f++) {
			snprintf(rel, sizeof rel, "d%02d/f%02d", d, f);
			/* the big sizes once per directory, so the whole tree stays small */
			size_t size = sizes[f < 10		  ? f % 8
					    : f == 10 && d % 2 == 0 ? 8
					    : f == 11 && d % 8 == 0 ? 9
								    : f % 7];
			noise_file(dir, rel, size, (uint32_t)(d * 100 + f));
			if (f == 3) {
				_cleanup_free_ char *p = tu_path(dir, rel);
				cr_assert_eq(chmod(p, 04755), 0);
			}
		}
		snprintf(rel, sizeof rel, "d%02d/link", d);
		_cleanup_free_ char *lp = tu_path(dir, rel);
		cr_assert_eq(symlink(d % 2 ? "f01" : "/nowhere", lp), 0);
	}
	mkdir_at(dir, "d03/empty", 0755);
	mkdir_at(dir, "d07/sub", 0750);
	mkdir_at(dir, "d07/sub/deeper", 0755);
	noise_file(dir, "d07/sub/deeper/big", (2 << 20) + 1, 4242);
	noise_file(dir, "d07/sub/small", 10, 4243);
	return dir;
}

/* ---- the reference: the hash issue's rules written out, one entry at a time ----------------- */

static void sha_text(const void *p, size_t n, char out[LYR_DIGEST_TEXT_LEN])
{
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256(p, n, d);
	lyr_digest_text(d, out);
}

static bool kept(const char *name)
{
	return strcmp(name, "security.capability") == 0 ||
	       (strncmp(name, "security.", 9) != 0 && strncmp(name, "system.", 7) != 0 &&
		strncmp(name, "com.apple.", 10) != 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The header of the entry at PATH into BUF (large enough); returns its length. */
static size_t header(const char *path, const struct stat *st, char *buf, size_t size)
{
	char target[PATH_MAX] = "";
	char flag = S_ISDIR(st->st_mode) ? '5' : S_ISLNK(st->st_mode) ? '2' : '0';
	if (S_ISLNK(st->st_mode))
		cr_assert_geq(readlink(path, target, sizeof target - 1), 0);
	unsigned mode = S_ISLNK(st->st_mode) ? 0777 : st->st_mode & 07777;
	int n = snprintf(buf, size,
			 "namemode%uuid%ugid%usize%lldtypeflag%clinkname%sunamegnamedevmajor0devminor0",
			 mode, st->st_uid, st->st_gid,
			 S_ISREG(st->st_mode) ? (long long)st->st_size : 0LL, flag, target);
	size_t len = (size_t)n;
	char names[4096];
	ssize_t nl = llistxattr(path, names, sizeof names);
	cr_assert_geq(nl, 0);
	char *v[64];
	size_t nv = 0;
	for (ssize_t off = 0; off < nl; off += (ssize_t)strlen(names + off) + 1)
		if (kept(names + off) && nv < 64)
			v[nv++] = names + off;
	qsort(v, nv, sizeof *v, cmp_str);
	for (size_t i = 0; i < nv; i++) {
		len += (size_t)snprintf(buf + len, size - len, "%s", v[i]);
		ssize_t vl = lgetxattr(path, v[i], buf + len, size - len);
		cr_assert_geq(vl, 0);
		len += (size_t)vl;
	}
	return len;
}

static void ref_digest(const char *path, char out[LYR_DIGEST_TEXT_LEN])
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0);
	char hdr[8192];
	size_t hl = header(path, &st, hdr, sizeof hdr);
	if (S_ISREG(st.st_mode)) {
		_cleanup_free_ char *all = malloc(hl + (size_t)st.st_size + 1);
		memcpy(all, hdr, hl);
		_cleanup_close_ int fd = open(path, O_RDONLY);
		cr_assert_eq(read(fd, all + hl, (size_t)st.st_size + 1), st.st_size);
		sha_text(all, hl + (size_t)st.st_size, out);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		sha_text(hdr, hl, out);
		return;
	}
	char hd[LYR_DIGEST_TEXT_LEN];
	sha_text(hdr, hl, hd);
	struct dirent **ents = NULL;
	int n = scandir(path, &ents, NULL, NULL);
	cr_assert_geq(n, 0);
	char **names = calloc((size_t)n, sizeof *names);
	size_t nn = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, ".."))
			names[nn++] = strdup(ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	qsort(names, nn, sizeof *names, cmp_str);
	lyr_sha256_ctx *h = NULL;
	cr_assert_eq(lyr_sha256_new(&h), 0);
	lyr_sha256_update(h, "", 1);
	lyr_sha256_update(h, hd, LYR_DIGEST_TEXT_LEN - 1);
	for (size_t i = 0; i < nn; i++) {
		_cleanup_free_ char *child = tu_path(path, names[i]);
		char cd[LYR_DIGEST_TEXT_LEN];
		ref_digest(child, cd);
		lyr_sha256_update(h, "", 1);
		lyr_sha256_update(h, names[i], strlen(names[i]));
		lyr_sha256_update(h, cd, LYR_DIGEST_TEXT_LEN - 1);
		free(names[i]);
	}
	free(names);
	uint8_t raw[LYR_SHA256_LEN];
	lyr_sha256_final(h, raw);
	lyr_sha256_free(h);
	lyr_digest_text(raw, out);
}

/* ---- hashing through a directory source ------------------------------------------------------ */

static const unsigned thread_counts[] = {1, 2, 7, 0};

Test(hash_contenthash_parallel, every_thread_count_gives_the_reference_digests)
{
	_cleanup_free_ char *dir = mixed_tree();
	struct {
		const char *sel;
		const char *rel; /* for the reference */
	} cases[] = {
		{"/", ""}, {"/d07", "d07"}, {"/d07/sub", "d07/sub"}, {"/d11/f08", "d11/f08"},
		{"/d00/f09", "d00/f09"}, {"/d03/empty", "d03/empty"}, {"/d01/link", "d01/link"},
	};
	for (size_t k = 0; k < LYR_ARRAY_SIZE(cases); k++) {
		_cleanup_free_ char *p = *cases[k].rel ? tu_path(dir, cases[k].rel) : strdup(dir);
		char want[LYR_DIGEST_TEXT_LEN];
		ref_digest(p, want);
		for (size_t t = 0; t < LYR_ARRAY_SIZE(thread_counts); t++) {
			char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
			lyr_hash_opts o = {.threads = thread_counts[t], .err_path = err};
			const char *sel[] = {cases[k].sel};
			int r = tu_hash_dir(dir, NULL, sel, 1, &o, got);
			cr_assert_eq(r, 0, "%s with %u threads: %s at '%s'", cases[k].sel,
				     thread_counts[t], strerror(-r), err);
			cr_assert_str_eq(got, want, "%s with %u threads", cases[k].sel, thread_counts[t]);
		}
	}
	tu_rmtree(dir);
}

Test(hash_contenthash_parallel, selections_and_several_selectors_agree_with_one_thread)
{
	_cleanup_free_ char *dir = mixed_tree();
	const char *wild[] = {"/d0*"};
	const char *several[] = {"/d02", "/d13/f10", "/d07/sub", "/d09"};
	const char *inc[] = {"**/f0[0-4]"};
	const char *exc[] = {"d1*"};
	struct {
		const char *const *sels;
		size_t n;
		const char *const *include, *const *exclude;
	} cases[] = {
		{wild, 1, NULL, NULL},
		{several, 4, NULL, NULL},
		{NULL, 0, inc, exc},
	};
	for (size_t k = 0; k < LYR_ARRAY_SIZE(cases); k++) {
		char one[LYR_DIGEST_TEXT_LEN] = "";
		for (size_t t = 0; t < LYR_ARRAY_SIZE(thread_counts); t++) {
			char got[LYR_DIGEST_TEXT_LEN];
			lyr_hash_opts o = {.threads = thread_counts[t],
					   .include = cases[k].include,
					   .n_include = cases[k].include ? 1 : 0,
					   .exclude = cases[k].exclude,
					   .n_exclude = cases[k].exclude ? 1 : 0};
			cr_assert_eq(tu_hash_dir(dir, NULL, cases[k].sels, cases[k].n, &o, got), 0);
			if (t == 0)
				memcpy(one, got, sizeof got);
			cr_assert_str_eq(got, one, "case %zu with %u threads", k, thread_counts[t]);
		}
		cr_assert_str_neq(one, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
				  "case %zu selects something", k);
	}
	tu_rmtree(dir);
}

/* ---- the cache ------------------------------------------------------------------------------- */

typedef struct rec {
	char *key;
	char digest[LYR_DIGEST_TEXT_LEN];
} rec;

typedef struct bigcache {
	rec *v;
	size_t n, cap, gets, puts;
	pthread_t owner;
	bool other_thread;
} bigcache;

static int bc_get(void *ctx, const char *key, char digest[LYR_DIGEST_TEXT_LEN])
{
	bigcache *c = ctx;
	c->other_thread |= !pthread_equal(pthread_self(), c->owner);
	c->gets++;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].key, key) == 0) {
			memcpy(digest, c->v[i].digest, LYR_DIGEST_TEXT_LEN);
			return 1;
		}
	return 0;
}

static int bc_put(void *ctx, const char *key, const char *digest)
{
	bigcache *c = ctx;
	c->other_thread |= !pthread_equal(pthread_self(), c->owner);
	c->puts++;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->v = realloc(c->v, c->cap * sizeof *c->v);
		cr_assert_not_null(c->v);
	}
	c->v[c->n].key = strdup(key);
	memcpy(c->v[c->n++].digest, digest, LYR_DIGEST_TEXT_LEN);
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	return strcmp(((const rec *)a)->key, ((const rec *)b)->key);
}

static void bc_free(bigcache *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].key);
	free(c->v);
}

Test(hash_contenthash_parallel, the_cache_gets_the_same_records_from_the_calling_thread_only)
{
	_cleanup_free_ char *dir = mixed_tree();
	bigcache one = {.owner = pthread_self()}, many = {.owner = pthread_self()};
	lyr_hash_cache c1 = {bc_get, bc_put, &one}, cm = {bc_get, bc_put, &many};
	char d1[LYR_DIGEST_TEXT_LEN], dm[LYR_DIGEST_TEXT_LEN], again[LYR_DIGEST_TEXT_LEN];
	lyr_hash_opts o1 = {.threads = 1, .cache = &c1}, om = {.threads = 4, .cache = &cm};
	cr_assert_eq(tu_hash_dir(dir, "sha256:layer", NULL, 0, &o1, d1), 0);
	cr_assert_eq(tu_hash_dir(dir, "sha256:layer", NULL, 0, &om, dm), 0);
	cr_assert_str_eq(dm, d1);
	cr_assert_not(many.other_thread, "get and put are called from the calling thread");
	/* an f record for each of the 16 x 21 + 2 non-directories, an h and a d record for each
	 * of the 16 + 3 directories and the root */
	cr_assert_eq(one.n, 16 * 21 + 2 + 2 * (16 + 3 + 1));
	cr_assert_eq(many.n, one.n);
	cr_assert_eq(many.gets, one.gets);
	qsort(one.v, one.n, sizeof *one.v, rec_cmp);
	qsort(many.v, many.n, sizeof *many.v, rec_cmp);
	for (size_t i = 0; i < one.n; i++) {
		cr_assert_str_eq(many.v[i].key, one.v[i].key);
		cr_assert_str_eq(many.v[i].digest, one.v[i].digest, "%s", one.v[i].key);
	}
	/* Served from the cache: no file is read again, nothing is stored again. */
	size_t puts = many.puts;
	cr_assert_eq(tu_hash_dir(dir, "sha256:layer", NULL, 0, &om, again), 0);
	cr_assert_str_eq(again, d1);
	cr_assert_eq(many.puts, puts);
	bc_free(&one);
	bc_free(&many);
	tu_rmtree(dir);
}

/* ---- failures name their path ------------------------------------------------------------- */

/* A directory source whose open of one file (by inode) fails, or hands out an fd that cannot
 * be read (write-only), as an unreadable file or a failing disk would. */
typedef struct faulty {
	lyr_hash_source inner;
	ino_t bad;
	int how; /* 0: open fails with EACCES; 1: read fails with EBADF */
} faulty;

static int f_root(void *ctx, lyr_hash_ent **ret, struct stat *st)
{
	faulty *f = ctx;
	return f->inner.ops->root(f->inner.ctx, ret, st);
}

static int f_lookup(void *ctx, lyr_hash_ent *dir, const char *name, lyr_hash_ent **ret,
		    struct stat *st)
{
	faulty *f = ctx;
	return f->inner.ops->lookup(f->inner.ctx, dir, name, ret, st);
}

static int f_list(void *ctx, lyr_hash_ent *dir, int (*fn)(void *arg, const char *name), void *arg)
{
	faulty *f = ctx;
	return f->inner.ops->list(f->inner.ctx, dir, fn, arg);
}

static ssize_t f_readlink(void *ctx, lyr_hash_ent *ent, char *buf, size_t size)
{
	faulty *f = ctx;
	return f->inner.ops->readlink(f->inner.ctx, ent, buf, size);
}

static ssize_t f_listxattr(void *ctx, lyr_hash_ent *ent, char *buf, size_t size)
{
	faulty *f = ctx;
	return f->inner.ops->listxattr(f->inner.ctx, ent, buf, size);
}

static ssize_t f_getxattr(void *ctx, lyr_hash_ent *ent, const char *name, void *buf, size_t size)
{
	faulty *f = ctx;
	return f->inner.ops->getxattr(f->inner.ctx, ent, name, buf, size);
}

static int f_open(void *ctx, lyr_hash_ent *ent)
{
	faulty *f = ctx;
	int fd = f->inner.ops->open(f->inner.ctx, ent);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_ino != f->bad)
		return fd;
	close(fd);
	if (f->how == 0)
		return -EACCES;
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void f_release(void *ctx, lyr_hash_ent *ent)
{
	faulty *f = ctx;
	f->inner.ops->release(f->inner.ctx, ent);
}

static const lyr_hash_source_ops faulty_ops = {
	.root = f_root,
	.lookup = f_lookup,
	.list = f_list,
	.readlink = f_readlink,
	.listxattr = f_listxattr,
	.getxattr = f_getxattr,
	.open = f_open,
	.release = f_release,
};

Test(hash_contenthash_parallel, a_file_that_cannot_be_opened_or_read_fails_naming_its_path)
{
	_cleanup_free_ char *dir = mixed_tree();
	_cleanup_free_ char *bad = tu_path(dir, "d07/sub/deeper/big");
	struct stat st;
	cr_assert_eq(stat(bad, &st), 0);
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY);
	faulty f = {.bad = st.st_ino};
	cr_assert_eq(lyr_hash_source_dir(fd, NULL, &f.inner), 0);
	lyr_hash_source src = {&faulty_ops, &f};
	const char *whole[] = {"/"}, *wild[] = {"/d0*"}, *file[] = {"/d07/sub/deeper/big"};
	const char *const *sels[] = {whole, wild, file};
	for (int how = 0; how < 2; how++) {
		f.how = how;
		for (size_t k = 0; k < LYR_ARRAY_SIZE(sels); k++) {
			for (size_t t = 0; t < LYR_ARRAY_SIZE(thread_counts); t++) {
				char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
				lyr_hash_opts o = {.threads = thread_counts[t], .err_path = err};
				int r = lyr_hash_selectors(&src, sels[k], 1, &o, got);
				cr_assert_eq(r, how == 0 ? -EACCES : -EBADF, "%s, %u threads: %s",
					     sels[k][0], thread_counts[t], strerror(-r));
				cr_assert_str_eq(err, "/d07/sub/deeper/big", "%s, %u threads",
						 sels[k][0], thread_counts[t]);
			}
		}
	}
	lyr_hash_source_dir_free(&f.inner);
	tu_rmtree(dir);
}
