#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "layerfs/hash.h"
#include "layerfs/stack.h"
#include "hashutil.h"
#include "testutil.h"

/* ---- building trees with the owners and modes of the test vectors -------------------------- */

static void file_at(const char *dir, const char *rel, const char *data)
{
	tu_write(dir, rel, data);
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(chmod(p, 0644), 0);
}

static void dir_at(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = *rel ? tu_path(dir, rel) : strdup(dir);
	mkdir(p, 0755);
	cr_assert_eq(chmod(p, 0755), 0);
}

static void link_at(const char *dir, const char *rel, const char *target)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(symlink(target, p), 0);
}

static char *vector_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("the vectors are for files owned by 0:0; needs root");
	char *dir = tu_mkdtemp();
	dir_at(dir, "");
	return dir;
}

/* Hashes SELECTORS of DIR with OPTS (may be NULL); returns the result code. */
static void expect(const char *dir, const char *sel, bool follow, const char *want)
{
	char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
	lyr_hash_opts o = {.follow_links = follow, .err_path = err};
	const char *sels[] = {sel};
	int r = tu_hash_dir(dir, NULL, sels, 1, &o, got);
	cr_assert_eq(r, 0, "hash of '%s' failed: %s (at '%s')", sel, strerror(-r), err);
	cr_assert_str_eq(got, want, "selector '%s'", sel);
}

/* Hashing SEL of DIR fails with WANT_R, naming WANT_ERR. */
static void expect_fail(const char *dir, const char *sel, bool follow, int want_r,
			const char *want_err)
{
	char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
	lyr_hash_opts o = {.follow_links = follow, .err_path = err};
	const char *sels[] = {sel};
	cr_assert_eq(tu_hash_dir(dir, NULL, sels, 1, &o, got), want_r, "selector '%s'", sel);
	cr_assert_str_eq(err, want_err, "selector '%s'", sel);
}

/* ---- the digests written out independently (tarsum v1 headers) ----------------------------- */

static void sha_text(const void *p, size_t n, char out[LYR_DIGEST_TEXT_LEN])
{
	uint8_t d[32];
	lyr_sha256(p, n, d);
	lyr_digest_text(d, out);
}

static void file_digest(const char *content, unsigned mode, char out[LYR_DIGEST_TEXT_LEN])
{
	char buf[512];
	int n = snprintf(buf, sizeof buf,
			 "namemode%uuid0gid0size%zutypeflag0linknameunamegnamedevmajor0devminor0%s", mode,
			 strlen(content), content);
	sha_text(buf, (size_t)n, out);
}

static void symlink_digest(const char *target, char out[LYR_DIGEST_TEXT_LEN])
{
	char buf[512];
	int n = snprintf(buf, sizeof buf,
			 "namemode511uid0gid0size0typeflag2linkname%sunamegnamedevmajor0devminor0", target);
	sha_text(buf, (size_t)n, out);
}

static void dir_header_digest(unsigned mode, char out[LYR_DIGEST_TEXT_LEN])
{
	char buf[512];
	int n = snprintf(buf, sizeof buf,
			 "namemode%uuid0gid0size0typeflag5linknameunamegnamedevmajor0devminor0", mode);
	sha_text(buf, (size_t)n, out);
}

/* Appends KEY (with '/' written as NUL) and DIGEST to BUF. */
static size_t put_item(char *buf, size_t len, const char *key, const char *digest)
{
	for (const char *k = key; *k; k++)
		buf[len++] = *k == '/' ? '\0' : *k;
	memcpy(buf + len, digest, 71);
	return len + 71;
}

/* The digest of two selectors' digests: sha256(A + "\0" + B). */
static void joined_digest(const char *a, const char *b, char out[LYR_DIGEST_TEXT_LEN])
{
	char buf[143];
	memcpy(buf, a, 71);
	buf[71] = '\0';
	memcpy(buf + 72, b, 71);
	sha_text(buf, sizeof buf, out);
}

/* ---- the vectors ---------------------------------------------------------------------------- */

#define D_DATA0 "sha256:cd8e75bca50f2d695f220d0cb0997d8ead387e4f926e8669a92d7f104cc9885b"
#define D_DATA1 "sha256:c2b5e234f5f38fc5864da7def04782f82501a40d46192e4207d5b3f0c3c4732b"
#define D_D0 "sha256:d47454417d2c554067fbefe5f5719edc49f3cfe969c36b62e34a187a4da0cc9a"
#define D_D0_NO_GHI "sha256:555ffa3028630d97ba37832b749eda85ab676fd64ffb629fbf0f4ec8c1e3bff1"
#define D_ROOT "sha256:427c9cf9ae98c0f81fb57a3076b965c7c149b6b0a85625ad4e884236649a42c6"
#define D_WILD_F "sha256:0b6731924f0a32a812bf8a729202e55e54ded331f9e4ff2397f681e43694e086"
#define D_WILD_Y "sha256:982153600b9653a1decb0f961e09e2bc1be335cfcaac9b39dbd1120b65fdf92c"
#define D_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void build_vector_tree(const char *dir)
{
	file_at(dir, "bar", "data1");
	file_at(dir, "foo", "data0");
	dir_at(dir, "d0");
	file_at(dir, "d0/abc", "data0");
	link_at(dir, "d0/def", "abc");
	link_at(dir, "d0/ghi", "nosuchfile");
}

Test(hash_contenthash, files_match_the_vectors)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	expect(dir, "/foo", false, D_DATA0);
	expect(dir, "/bar", false, D_DATA1);
	expect(dir, "foo", false, D_DATA0);
	/* The vectors agree with the header layout written out in this test. */
	char own[LYR_DIGEST_TEXT_LEN];
	file_digest("data0", 0644, own);
	cr_assert_str_eq(own, D_DATA0);
	file_at(dir, "odd", "data1");
	_cleanup_free_ char *odd = tu_path(dir, "odd");
	cr_assert_eq(chmod(odd, 02751), 0);
	file_digest("data1", 02751, own);
	expect(dir, "/odd", false, own);
	tu_rmtree(dir);
}

Test(hash_contenthash, directories_and_the_root_match_the_vectors)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	expect(dir, "/d0", false, D_D0);
	expect(dir, "/", false, D_ROOT);
	expect(dir, "", false, D_ROOT);
	char got[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(tu_hash_dir(dir, NULL, NULL, 0, NULL, got), 0);
	cr_assert_str_eq(got, D_ROOT, "no selector means the whole view");
	_cleanup_free_ char *ghi = tu_path(dir, "d0/ghi");
	cr_assert_eq(unlink(ghi), 0);
	expect(dir, "/d0", false, D_D0_NO_GHI);
	tu_rmtree(dir);
}

Test(hash_contenthash, wildcards_match_the_vectors)
{
	_cleanup_free_ char *dir = vector_root();
	file_at(dir, "foo", "data0");
	file_at(dir, "fox", "data2");
	link_at(dir, "y1", "foo");
	link_at(dir, "y2", "fox");
	expect(dir, "/f*", false, D_WILD_F);
	expect(dir, "f*", false, D_WILD_F);
	expect(dir, "/y*", true, D_WILD_Y);
	/* Without following, the symlinks' own digests are listed. */
	char y1[LYR_DIGEST_TEXT_LEN], y2[LYR_DIGEST_TEXT_LEN], want[LYR_DIGEST_TEXT_LEN];
	symlink_digest("foo", y1);
	symlink_digest("fox", y2);
	char buf[256];
	size_t len = put_item(buf, 0, "/y1", y1);
	len = put_item(buf, len, "/y2", y2);
	sha_text(buf, len, want);
	expect(dir, "/y*", false, want);
	tu_rmtree(dir);
}

Test(hash_contenthash, wildcard_with_one_match_of_the_same_base_name_gives_its_own_digest)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	expect(dir, "/d*/abc", false, D_DATA0);
	expect(dir, "/nomatch*", false, D_EMPTY);
	/* One match whose base name differs from the pattern's is still listed. */
	char want[LYR_DIGEST_TEXT_LEN], buf[256];
	size_t len = put_item(buf, 0, "/bar", D_DATA1);
	sha_text(buf, len, want);
	expect(dir, "/b?r", false, want);
	tu_rmtree(dir);
}

Test(hash_contenthash, wildcard_matching_a_directory_lists_its_header_and_contents)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	char hdr[LYR_DIGEST_TEXT_LEN], def[LYR_DIGEST_TEXT_LEN], ghi[LYR_DIGEST_TEXT_LEN];
	char want[LYR_DIGEST_TEXT_LEN], buf[512];
	dir_header_digest(0755, hdr);
	symlink_digest("abc", def);
	symlink_digest("nosuchfile", ghi);
	size_t len = put_item(buf, 0, "/d0", hdr);
	len = put_item(buf, len, "/d0/abc", D_DATA0);
	len = put_item(buf, len, "/d0/def", def);
	len = put_item(buf, len, "/d0/ghi", ghi);
	sha_text(buf, len, want);
	expect(dir, "/d?", false, want);
	tu_rmtree(dir);
}

Test(hash_contenthash, include_and_exclude_filter_a_directory_listing)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	char root[LYR_DIGEST_TEXT_LEN], hdr[LYR_DIGEST_TEXT_LEN], def[LYR_DIGEST_TEXT_LEN];
	char ghi[LYR_DIGEST_TEXT_LEN], want[LYR_DIGEST_TEXT_LEN], got[LYR_DIGEST_TEXT_LEN];
	dir_header_digest(0755, root);
	dir_header_digest(0755, hdr);
	symlink_digest("abc", def);
	symlink_digest("nosuchfile", ghi);
	/* The root's header has the empty relative path, written as one NUL. */
	char buf[1024];
	buf[0] = '\0';
	memcpy(buf + 1, root, 71);
	size_t len = 72;
	len = put_item(buf, len, "/d0", hdr);
	len = put_item(buf, len, "/d0/abc", D_DATA0);
	len = put_item(buf, len, "/d0/def", def);
	size_t without_ghi = len;
	len = put_item(buf, len, "/d0/ghi", ghi);

	const char *inc[] = {"d0"};
	const char *exc[] = {"d0/ghi"};
	lyr_hash_opts o = {.include = inc, .n_include = 1};
	cr_assert_eq(tu_hash_dir(dir, NULL, NULL, 0, &o, got), 0);
	sha_text(buf, len, want);
	cr_assert_str_eq(got, want);
	o.exclude = exc;
	o.n_exclude = 1;
	cr_assert_eq(tu_hash_dir(dir, NULL, NULL, 0, &o, got), 0);
	sha_text(buf, without_ghi, want);
	cr_assert_str_eq(got, want);
	tu_rmtree(dir);
}

/* A directory's digest written out: "\0" + header digest, then "\0" + name + digest per child
 * (NAMES in byte order). */
static void dir_digest(const char *hdr, const char *const *names, const char *const *digests,
		       size_t n, char out[LYR_DIGEST_TEXT_LEN])
{
	char buf[1024];
	size_t len = 0;
	buf[len++] = '\0';
	memcpy(buf + len, hdr, 71);
	len += 71;
	for (size_t i = 0; i < n; i++) {
		buf[len++] = '\0';
		memcpy(buf + len, names[i], strlen(names[i]));
		len += strlen(names[i]);
		memcpy(buf + len, digests[i], 71);
		len += 71;
	}
	sha_text(buf, len, out);
}

/* A listing's digest written out: per item its key (a path relative to the literal prefix,
 * "" for the prefix itself) with '/' as NUL, then its digest. */
static void listing_digest(const char *const (*items)[2], size_t n, char out[LYR_DIGEST_TEXT_LEN])
{
	char buf[1024];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		if (!*items[i][0])
			buf[len++] = '\0';
		len = put_item(buf, len, items[i][0], items[i][1]);
	}
	sha_text(buf, len, out);
}

/* /ff (data0), /b/l -> ../ff, /b/m -> nosuchfile, /lnk -> b. */
static void build_link_tree(const char *dir)
{
	static const char *const links[][2] = {{"b/l", "../ff"}, {"b/m", "nosuchfile"}, {"lnk", "b"}};
	file_at(dir, "ff", "data0");
	dir_at(dir, "b");
	for (size_t i = 0; i < LYR_ARRAY_SIZE(links); i++)
		link_at(dir, links[i][0], links[i][1]);
}

/* The link tree's pieces: /b's header digest and the digests of the links /b/l and /b/m. */
typedef struct link_digests {
	char hdr[LYR_DIGEST_TEXT_LEN], l[LYR_DIGEST_TEXT_LEN], m[LYR_DIGEST_TEXT_LEN];
} link_digests;

static char *link_tree(link_digests *d)
{
	char *dir = vector_root();
	build_link_tree(dir);
	dir_header_digest(0755, d->hdr);
	symlink_digest("../ff", d->l);
	symlink_digest("nosuchfile", d->m);
	return dir;
}

Test(hash_contenthash, follow_links_never_follows_links_below_a_matched_directory)
{
	link_digests d;
	_cleanup_free_ char *dir = link_tree(&d);
	char want[LYR_DIGEST_TEXT_LEN];
	/* `/?` matches the directory /b only: its header and its links as links, dangling or not. */
	const char *const matched[][2] = {{"/b", d.hdr}, {"/b/l", d.l}, {"/b/m", d.m}};
	listing_digest(matched, 3, want);
	expect(dir, "/?", false, want);
	expect(dir, "/?", true, want);

	/* A plain selector with a filter lists the same way: the links below it stay links. */
	char got[LYR_DIGEST_TEXT_LEN];
	const char *const selected[][2] = {{"", d.hdr}, {"/l", d.l}, {"/m", d.m}};
	listing_digest(selected, 3, want);
	const char *inc[] = {"*"};
	const char *b[] = {"/b"};
	for (int follow = 0; follow < 2; follow++) {
		lyr_hash_opts o = {.follow_links = follow, .include = inc, .n_include = 1};
		cr_assert_eq(tu_hash_dir(dir, NULL, b, 1, &o, got), 0);
		cr_assert_str_eq(got, want, "follow %d", follow);
	}
	tu_rmtree(dir);
}

Test(hash_contenthash, follow_links_follows_a_matched_link_and_links_in_the_prefix)
{
	link_digests d;
	_cleanup_free_ char *dir = link_tree(&d);
	char lnk[LYR_DIGEST_TEXT_LEN], b[LYR_DIGEST_TEXT_LEN], want[LYR_DIGEST_TEXT_LEN];
	symlink_digest("b", lnk);
	const char *names[] = {"l", "m"};
	const char *digests[] = {d.l, d.m};
	dir_digest(d.hdr, names, digests, 2, b);

	/* The prefix /lnk is resolved to /b either way; the matched /lnk/l is followed only when
	 * asked, through /b, to /ff. */
	const char *const link[][2] = {{"/l", d.l}}, *const followed[][2] = {{"/l", D_DATA0}};
	listing_digest(link, 1, want);
	expect(dir, "/lnk/l*", false, want);
	listing_digest(followed, 1, want);
	expect(dir, "/lnk/l*", true, want);

	/* The matched link /lnk stands for the whole directory it names. */
	const char *const dlink[][2] = {{"/lnk", lnk}}, *const ddir[][2] = {{"/lnk", b}};
	listing_digest(dlink, 1, want);
	expect(dir, "/ln?", false, want);
	listing_digest(ddir, 1, want);
	expect(dir, "/ln?", true, want);

	/* A matched link that dangles cannot be followed: that fails, naming it. */
	expect_fail(dir, "/b/m*", true, -ENOENT, "/b/m");
	tu_rmtree(dir);
}

Test(hash_contenthash, sockets_are_hashed_by_their_header_as_buildkit_does)
{
	_cleanup_free_ char *dir = vector_root();
	dir_at(dir, "d");
	file_at(dir, "d/f", "data0");
	_cleanup_free_ char *s = tu_path(dir, "d/s");
	cr_assert_eq(mknod(s, S_IFSOCK | 0600, 0), 0);
	cr_assert_eq(chmod(s, 0755), 0);
	/* BuildKit clears the socket bit: the header of an empty regular file, no content. */
	char sock[LYR_DIGEST_TEXT_LEN], hdr[LYR_DIGEST_TEXT_LEN], want[LYR_DIGEST_TEXT_LEN];
	file_digest("", 0755, sock);
	cr_assert_str_eq(sock, "sha256:f17a848b35eb7ee0d2782522a9daf8a81f8bb998a53d4dd0c2142715f145d194");
	dir_header_digest(0755, hdr);
	const char *names[] = {"f", "s"};
	const char *digests[] = {D_DATA0, sock};
	dir_digest(hdr, names, digests, 2, want);
	expect(dir, "/d", false, want);
	expect(dir, "/d/s", false, sock);
	const char *const listed[][2] = {{"/f", D_DATA0}, {"/s", sock}};
	listing_digest(listed, 2, want);
	expect(dir, "/d/*", false, want);
	tu_rmtree(dir);
}

/* ---- resolution ---------------------------------------------------------------------------- */

Test(hash_contenthash, symlinks_are_followed_inside_the_root_only)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	link_at(dir, "link", "d0");
	link_at(dir, "abs", "/d0/abc");
	link_at(dir, "esc", "../../../../../foo");
	dir_at(dir, "etc");
	file_at(dir, "etc/passwd", "data1");
	link_at(dir, "pw", "/etc/passwd");
	link_at(dir, "loop", "loop");
	char own[LYR_DIGEST_TEXT_LEN];
	symlink_digest("abc", own);

	expect(dir, "/link/abc", false, D_DATA0);     /* an inner symlink is always followed */
	expect(dir, "/d0/def", false, own);           /* the last one only when asked */
	expect(dir, "/d0/def", true, D_DATA0);
	expect(dir, "/abs", true, D_DATA0);           /* absolute targets start at the view's root */
	expect(dir, "/esc", true, D_DATA0);           /* ".." stops at the view's root */
	expect(dir, "/pw", true, D_DATA1);            /* never the host's /etc/passwd */
	expect(dir, "/link", true, D_D0);

	expect_fail(dir, "/loop", true, -ELOOP, "/loop");
	expect_fail(dir, "/d0/ghi", true, -ENOENT, "/d0/ghi");
	tu_rmtree(dir);
}

Test(hash_contenthash, selector_leaving_the_root_is_refused_naming_it)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	file_at(dir, "foo", "x");
	char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
	lyr_hash_opts o = {.err_path = err};
	const char *sels[] = {"/foo", "../../etc/passwd"};
	cr_assert_eq(tu_hash_dir(dir, NULL, sels, 2, &o, got), -EINVAL);
	cr_assert_str_eq(err, "../../etc/passwd");
	tu_rmtree(dir);
}

Test(hash_contenthash, missing_selector_fails_with_enoent_naming_it)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	file_at(dir, "foo", "x");
	char got[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
	lyr_hash_opts o = {.err_path = err};
	const char *sels[] = {"/foo", "/nope/deeper"};
	cr_assert_eq(tu_hash_dir(dir, NULL, sels, 2, &o, got), -ENOENT);
	cr_assert_str_eq(err, "/nope/deeper");
	const char *through_file[] = {"/foo/bar"};
	cr_assert_eq(tu_hash_dir(dir, NULL, through_file, 1, &o, got), -ENOENT);
	tu_rmtree(dir);
}

/* ---- several selectors --------------------------------------------------------------------- */

Test(hash_contenthash, several_selectors_join_sorted_digests_with_nul)
{
	_cleanup_free_ char *dir = vector_root();
	file_at(dir, "Gemfile", "data0");
	file_at(dir, "Gemfile.lock", "data1");
	char want[LYR_DIGEST_TEXT_LEN], got[LYR_DIGEST_TEXT_LEN];
	joined_digest(D_DATA0, D_DATA1, want);
	const char *a[] = {"/Gemfile.lock", "/Gemfile"};
	cr_assert_eq(tu_hash_dir(dir, NULL, a, 2, NULL, got), 0);
	cr_assert_str_eq(got, want, "/Gemfile does not cover /Gemfile.lock");
	const char *b[] = {"Gemfile", "/./Gemfile.lock//", "/Gemfile"};
	cr_assert_eq(tu_hash_dir(dir, NULL, b, 3, NULL, got), 0);
	cr_assert_str_eq(got, want);
	tu_rmtree(dir);
}

Test(hash_contenthash, a_selector_inside_another_is_dropped)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	char got[LYR_DIGEST_TEXT_LEN];
	const char *a[] = {"/d0/abc", "/d0"};
	cr_assert_eq(tu_hash_dir(dir, NULL, a, 2, NULL, got), 0);
	cr_assert_str_eq(got, D_D0);
	const char *b[] = {"/foo", "/", "/d0"};
	cr_assert_eq(tu_hash_dir(dir, NULL, b, 3, NULL, got), 0);
	cr_assert_str_eq(got, D_ROOT);
	tu_rmtree(dir);
}

Test(hash_contenthash, a_wildcard_selector_under_a_plain_one_is_kept)
{
	_cleanup_free_ char *dir = vector_root();
	dir_at(dir, "a");
	file_at(dir, "a/x.c", "data0");
	file_at(dir, "a/y.h", "data1");
	char hdr[LYR_DIGEST_TEXT_LEN], a[LYR_DIGEST_TEXT_LEN], wild[LYR_DIGEST_TEXT_LEN];
	char want[LYR_DIGEST_TEXT_LEN], got[LYR_DIGEST_TEXT_LEN];
	dir_header_digest(0755, hdr);
	const char *names[] = {"x.c", "y.h"};
	const char *digests[] = {D_DATA0, D_DATA1};
	dir_digest(hdr, names, digests, 2, a);
	const char *const x[][2] = {{"/x.c", D_DATA0}};
	listing_digest(x, 1, wild);
	expect(dir, "/a/*.c", false, wild);

	/* D("/a") + "\0" + D(the wildcard): both digests, in selector order. */
	joined_digest(a, wild, want);
	const char *sels[] = {"/a/*.c", "/a"};
	cr_assert_eq(tu_hash_dir(dir, NULL, sels, 2, NULL, got), 0);
	cr_assert_str_eq(got, want);
	/* A plain path below a plain one still merges. */
	const char *plain[] = {"/a/x.c", "/a"};
	cr_assert_eq(tu_hash_dir(dir, NULL, plain, 2, NULL, got), 0);
	cr_assert_str_eq(got, a);

	/* With a filter every selector is a listing of its own and is kept: "/a" lists its header
	 * and x.c, the file "/a/x.c" lists nothing (sha256 of ""). */
	const char *const hx[][2] = {{"", hdr}, {"/x.c", D_DATA0}};
	char filtered[LYR_DIGEST_TEXT_LEN];
	listing_digest(hx, 2, filtered);
	joined_digest(filtered, D_EMPTY, want);
	const char *exc[] = {"y.h"};
	lyr_hash_opts o = {.exclude = exc, .n_exclude = 1};
	cr_assert_eq(tu_hash_dir(dir, NULL, plain, 2, &o, got), 0);
	cr_assert_str_eq(got, want);
	tu_rmtree(dir);
}

Test(hash_contenthash, dedupe_merges_plain_paths_only)
{
	const char *in[] = {"/a/*.c", "/a", "/a/b", "a/*.c", "/b*", "/b*/c", "/a"};
	char **out = NULL;
	size_t n = 0;
	cr_assert_eq(lyr_hash_selectors_dedupe(in, LYR_ARRAY_SIZE(in), false, &out, &n, NULL), 0);
	const char *want[] = {"/a", "/a/*.c", "/a/*.c", "/b*", "/b*/c"};
	cr_assert_eq(n, LYR_ARRAY_SIZE(want));
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(out[i], want[i], "[%zu]", i);
	lyr_hash_selectors_free(out, n);

	cr_assert_eq(lyr_hash_selectors_dedupe(in, LYR_ARRAY_SIZE(in), true, &out, &n, NULL), 0);
	const char *all[] = {"/a", "/a", "/a/*.c", "/a/*.c", "/a/b", "/b*", "/b*/c"};
	cr_assert_eq(n, LYR_ARRAY_SIZE(all));
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(out[i], all[i], "filtered [%zu]", i);
	lyr_hash_selectors_free(out, n);
}

Test(hash_contenthash, dedupe_compares_whole_path_components)
{
	const char *in[] = {"/ab", "a/b/", "/a", "/a/./c/..", "/a.b", "/ab/c", "x/../a.b"};
	char **out = NULL;
	size_t n = 0;
	cr_assert_eq(lyr_hash_selectors_dedupe(in, LYR_ARRAY_SIZE(in), false, &out, &n, NULL), 0);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(out[0], "/a");
	cr_assert_str_eq(out[1], "/a.b");
	cr_assert_str_eq(out[2], "/ab");
	lyr_hash_selectors_free(out, n);

	const char *bad[] = {"/ok", "/a/../../x"};
	size_t which = 99;
	cr_assert_eq(lyr_hash_selectors_dedupe(bad, 2, false, &out, &n, &which), -EINVAL);
	cr_assert_eq(which, 1);
}

Test(hash_contenthash, normalize_makes_paths_absolute_and_clean)
{
	const char *cases[][2] = {
		{"", "/"}, {"/", "/"}, {".", "/"}, {"a//b/", "/a/b"}, {"/a/./b/../c", "/a/c"},
		{"a/..", "/"}, {"f*", "/f*"},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *out = NULL;
		cr_assert_eq(lyr_hash_selector_normalize(cases[i][0], &out), 0);
		cr_assert_str_eq(out, cases[i][1], "normalize('%s')", cases[i][0]);
	}
	char *out = NULL;
	cr_assert_eq(lyr_hash_selector_normalize("..", &out), -EINVAL);
	cr_assert_eq(lyr_hash_selector_normalize("/a/../..", &out), -EINVAL);
	cr_assert(lyr_hash_selector_is_wildcard("/a/[bc]"));
	cr_assert(lyr_hash_selector_is_wildcard("?"));
	cr_assert_not(lyr_hash_selector_is_wildcard("/a\\*b"));
	cr_assert_not(lyr_hash_selector_is_wildcard("/plain"));
}

Test(hash_contenthash, check_pattern_refuses_what_would_match_only_literally)
{
	static const char *const good[] = {"d0",   "**/f0[0-4]", "[]x]", "[!a]b",
					   "a\\[", "x\\\\",	 "*"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(good); i++)
		cr_assert_eq(lyr_hash_check_pattern(good[i], NULL), 0, "'%s'", good[i]);
	char long_bracket[300] = "[";
	memset(long_bracket + 1, 'a', 254);
	strcpy(long_bracket + 255, "]"); /* 256 bytes from '[' to ']' */
	static const char *const why[] = {
	    "empty pattern",
	    "'[' without a closing ']'",
	    "'[' without a closing ']'",
	    "ends in a '\\' that escapes nothing",
	    "bracket expression longer than 255 bytes",
	};
	const char *bad[] = {"", "[ab", "d0/[]", "d0\\", long_bracket};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(bad); i++) {
		const char *got = NULL;
		cr_assert_eq(lyr_hash_check_pattern(bad[i], &got), -EINVAL, "'%s'", bad[i]);
		cr_assert_str_eq(got, why[i], "'%s'", bad[i]);
	}
	long_bracket[254] = ']'; /* now 255 bytes: one expression */
	long_bracket[255] = '\0';
	cr_assert_eq(lyr_hash_check_pattern(long_bracket, NULL), 0);
}

/* ---- what the digest covers ---------------------------------------------------------------- */

static void digest_of_dir(const char *dir, char out[LYR_DIGEST_TEXT_LEN])
{
	cr_assert_eq(tu_hash_dir(dir, NULL, NULL, 0, NULL, out), 0);
}

Test(hash_contenthash, mode_owner_content_target_and_kept_xattrs_change_the_digest)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	file_at(dir, "f", "content");
	link_at(dir, "l", "f");
	_cleanup_free_ char *f = tu_path(dir, "f");
	_cleanup_free_ char *l = tu_path(dir, "l");
	char base[LYR_DIGEST_TEXT_LEN], d[LYR_DIGEST_TEXT_LEN];
	digest_of_dir(dir, base);

	cr_assert_eq(chmod(f, 0600), 0);
	digest_of_dir(dir, d);
	cr_assert_str_neq(d, base, "mode");
	cr_assert_eq(chmod(f, 04644), 0);
	digest_of_dir(dir, d);
	cr_assert_str_neq(d, base, "setuid");
	cr_assert_eq(chmod(f, 0644), 0);
	digest_of_dir(dir, d);
	cr_assert_str_eq(d, base);

	if (geteuid() == 0) {
		cr_assert_eq(chown(f, 1, 0), 0);
		digest_of_dir(dir, d);
		cr_assert_str_neq(d, base, "uid");
		cr_assert_eq(chown(f, getuid(), getgid()), 0);
		cr_assert_eq(chmod(f, 0644), 0);
	}

	tu_write(dir, "f", "contenT");
	digest_of_dir(dir, d);
	cr_assert_str_neq(d, base, "content");
	tu_write(dir, "f", "content");

	cr_assert_eq(setxattr(f, "user.k", "v", 1, 0), 0);
	digest_of_dir(dir, d);
	cr_assert_str_neq(d, base, "user xattr");
	char with_v[LYR_DIGEST_TEXT_LEN];
	memcpy(with_v, d, sizeof d);
	cr_assert_eq(setxattr(f, "user.k", "w", 1, 0), 0);
	digest_of_dir(dir, d);
	cr_assert_str_neq(d, with_v, "xattr value");
	cr_assert_eq(removexattr(f, "user.k"), 0);

	cr_assert_eq(unlink(l), 0);
	link_at(dir, "l", "g");
	digest_of_dir(dir, d);
	cr_assert_str_neq(d, base, "symlink target");
	cr_assert_eq(unlink(l), 0);
	link_at(dir, "l", "f");
	digest_of_dir(dir, d);
	cr_assert_str_eq(d, base);
	tu_rmtree(dir);
}

Test(hash_contenthash, mtime_and_security_selinux_do_not_change_the_digest)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	file_at(dir, "f", "content");
	_cleanup_free_ char *f = tu_path(dir, "f");
	char base[LYR_DIGEST_TEXT_LEN], d[LYR_DIGEST_TEXT_LEN];
	digest_of_dir(dir, base);
	const struct timespec ts[2] = {{1, 2}, {3, 4}};
	cr_assert_eq(utimensat(AT_FDCWD, f, ts, 0), 0);
	cr_assert_eq(utimensat(AT_FDCWD, dir, ts, 0), 0);
	digest_of_dir(dir, d);
	cr_assert_str_eq(d, base, "mtime");
	if (setxattr(f, "security.selinux", "system_u:object_r:x_t:s0", 25, 0) < 0)
		cr_skip_test("cannot set security.selinux here: %s", strerror(errno));
	digest_of_dir(dir, d);
	cr_assert_str_eq(d, base, "security.selinux is not kept");
	tu_rmtree(dir);
}

/* ---- the cache interface ------------------------------------------------------------------- */

typedef struct memcache {
	char keys[64][PATH_MAX];
	char vals[64][LYR_DIGEST_TEXT_LEN];
	size_t n, gets, puts;
} memcache;

static int mc_get(void *ctx, const char *key, char digest[LYR_DIGEST_TEXT_LEN])
{
	memcache *m = ctx;
	m->gets++;
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->keys[i], key) == 0) {
			memcpy(digest, m->vals[i], LYR_DIGEST_TEXT_LEN);
			return 1;
		}
	return 0;
}

static int mc_put(void *ctx, const char *key, const char *digest)
{
	memcache *m = ctx;
	cr_assert_lt(m->n, 64);
	m->puts++;
	snprintf(m->keys[m->n], PATH_MAX, "%s", key);
	memcpy(m->vals[m->n++], digest, LYR_DIGEST_TEXT_LEN);
	return 0;
}

Test(hash_contenthash, cacheable_sources_store_and_reuse_digests)
{
	_cleanup_free_ char *dir = vector_root();
	build_vector_tree(dir);
	static memcache m;
	lyr_hash_cache cache = {mc_get, mc_put, &m};
	lyr_hash_opts o = {.cache = &cache};
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY);
	lyr_hash_source src;
	cr_assert_eq(lyr_hash_source_dir(fd, "sha256:layer", &src), 0);
	char got[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_selectors(&src, NULL, 0, &o, got), 0);
	cr_assert_str_eq(got, D_ROOT);
	bool saw_foo = false;
	for (size_t i = 0; i < m.n; i++) {
		if (strcmp(m.keys[i], "f:sha256:layer:/foo") == 0) {
			saw_foo = true;
			cr_assert_str_eq(m.vals[i], D_DATA0);
		}
	}
	cr_assert(saw_foo, "the file digest of /foo was stored");
	size_t puts = m.puts;

	/* Served from the cache: a stored root digest is returned without a walk. */
	cr_assert_eq(lyr_hash_selectors(&src, NULL, 0, &o, got), 0);
	cr_assert_str_eq(got, D_ROOT);
	cr_assert_eq(m.puts, puts, "nothing recomputed");
	for (size_t i = 0; i < m.n; i++)
		if (strcmp(m.keys[i], "f:sha256:layer:/foo") == 0)
			memcpy(m.vals[i], D_DATA1, LYR_DIGEST_TEXT_LEN);
	const char *foo[] = {"/foo"};
	cr_assert_eq(lyr_hash_selectors(&src, foo, 1, &o, got), 0);
	cr_assert_str_eq(got, D_DATA1, "the stored digest is what counts");
	lyr_hash_source_dir_free(&src);
	tu_rmtree(dir);
}

/* ---- layer stacks -------------------------------------------------------------------------- */

Test(hash_contenthash, a_layer_stack_hashes_as_its_merged_view)
{
	_cleanup_free_ char *lower = vector_root();
	_cleanup_free_ char *upper = vector_root();
	/* lower: the vector tree plus names the upper hides */
	build_vector_tree(lower);
	file_at(lower, "junk", "hidden by a whiteout");
	dir_at(lower, "olddir");
	file_at(lower, "olddir/x", "hidden with its directory");
	file_at(lower, "d0/zzz", "hidden by the opaque upper d0");
	/* upper: whiteouts, and d0 opaque with its own copy of the vector contents */
	_cleanup_free_ char *wh1 = tu_path(upper, "junk");
	_cleanup_free_ char *wh2 = tu_path(upper, "olddir");
	cr_assert_eq(mknod(wh1, S_IFCHR | 0600, makedev(0, 0)), 0);
	cr_assert_eq(mknod(wh2, S_IFCHR | 0600, makedev(0, 0)), 0);
	dir_at(upper, "d0");
	file_at(upper, "d0/abc", "data0");
	link_at(upper, "d0/def", "abc");
	link_at(upper, "d0/ghi", "nosuchfile");
	_cleanup_free_ char *ud0 = tu_path(upper, "d0");
	cr_assert_eq(setxattr(ud0, "user.overlay.opaque", "y", 1, 0), 0);

	const char *dirs[] = {upper, lower};
	lyr_stack *s = NULL;
	cr_assert_eq(lyr_stack_open(dirs, 2, NULL, &s), 0);
	lyr_hash_source src;
	cr_assert_eq(lyr_hash_source_stack(s, NULL, &src), 0);
	char got[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_hash_selectors(&src, NULL, 0, NULL, got), 0);
	cr_assert_str_eq(got, D_ROOT, "whiteouts, opaque dir and its marker xattr are not seen");
	const char *d0[] = {"/d0"};
	cr_assert_eq(lyr_hash_selectors(&src, d0, 1, NULL, got), 0);
	cr_assert_str_eq(got, D_D0);
	const char *junk[] = {"/junk"};
	cr_assert_eq(lyr_hash_selectors(&src, junk, 1, NULL, got), -ENOENT);
	lyr_hash_source_stack_free(&src);

	/* Cache keys name the layer an entry comes from; the upper has no ID here. */
	static memcache m;
	m.n = m.gets = m.puts = 0;
	lyr_hash_cache cache = {mc_get, mc_put, &m};
	lyr_hash_opts o = {.cache = &cache};
	const char *ids[] = {NULL, "sha256:lower"};
	cr_assert_eq(lyr_hash_source_stack(s, ids, &src), 0);
	cr_assert_eq(lyr_hash_selectors(&src, NULL, 0, &o, got), 0);
	cr_assert_str_eq(got, D_ROOT);
	bool saw_foo = false;
	for (size_t i = 0; i < m.n; i++) {
		cr_assert(strstr(m.keys[i], "sha256:lower:") != NULL, "key %s", m.keys[i]);
		cr_assert(strstr(m.keys[i], "/d0") == NULL, "d0 is in the mutable upper: %s", m.keys[i]);
		saw_foo |= strcmp(m.keys[i], "f:sha256:lower:/foo") == 0;
	}
	cr_assert(saw_foo);
	lyr_hash_source_stack_free(&src);
	lyr_stack_free(s);
	tu_rmtree(lower);
	tu_rmtree(upper);
}

static void last_progress(void *ctx, uint64_t files, uint64_t nbytes)
{
	uint64_t *v = ctx;
	v[0] = files;
	v[1] = nbytes;
}

Test(hash_contenthash, deep_trees_hash_and_progress_counts_entries_and_bytes)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	char rel[2048] = "";
	for (int i = 0; i < 400; i++)
		strcat(rel, "d/");
	strcat(rel, "leaf");
	tu_write(dir, rel, "bottom");
	tu_write(dir, "top", "12345");
	uint64_t seen[2] = {0};
	lyr_progress p = {last_progress, seen};
	lyr_hash_opts o = {.progress = &p};
	char whole[LYR_DIGEST_TEXT_LEN], leaf[LYR_DIGEST_TEXT_LEN], direct[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(tu_hash_dir(dir, NULL, NULL, 0, &o, whole), 0);
	cr_assert_eq(seen[0], 400 + 1 + 2, "every directory header, the root's and both files");
	cr_assert_eq(seen[1], 11);
	const char *sel[] = {rel};
	cr_assert_eq(tu_hash_dir(dir, NULL, sel, 1, NULL, leaf), 0);
	tu_write(dir, "flat", "bottom");
	_cleanup_free_ char *flat = tu_path(dir, "flat");
	_cleanup_free_ char *deep = tu_path(dir, rel);
	struct stat st;
	cr_assert_eq(stat(deep, &st), 0);
	cr_assert_eq(chmod(flat, st.st_mode & 07777), 0);
	const char *flat_sel[] = {"/flat"};
	cr_assert_eq(tu_hash_dir(dir, NULL, flat_sel, 1, NULL, direct), 0);
	cr_assert_str_eq(leaf, direct, "a file's digest does not depend on where it is");
	tu_rmtree(dir);
}
