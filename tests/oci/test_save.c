/* `layerfs save`: images read back by umoci and skopeo (independent implementations), compared
 * file by file with what `layerfs mount` shows; the same chain saved twice, and from a second
 * store, gives the same blob digests. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "testutil.h"

static tu_dirs dirs;

static void setup(void)
{
	tu_dirs_init(&dirs);
}

static void teardown(void)
{
	tu_umount_below(dirs.tmp);
	tu_dirs_fini(&dirs);
}

TestSuite(oci_save, .init = setup, .fini = teardown);

/* A tool the test needs: skipped where missing, except in CI, where it must be installed. */
static void need_tool(const char *name)
{
	if (tu_sh("command -v %s >/dev/null 2>&1", name) == 0)
		return;
	const char *ci = getenv("CI");
	cr_assert(!(ci && strcmp(ci, "true") == 0), "%s is missing (scripts/setup installs it)",
		  name);
	cr_skip_test("%s is not installed", name);
}

static char *id_of(char *out)
{
	cr_assert_geq(strlen(out), 71, "printed '%s'", out);
	out[71] = '\0';
	return out;
}

/* A chain of two layers: a base tree, and a tar layer with whiteouts over it. */
static char *make_chain(const char *store)
{
	tu_write(dirs.src, "etc/hostname", "box\n");
	tu_write(dirs.src, "etc/motd", "hello\n");
	tu_write(dirs.src, "usr/lib/a", "aaaa");
	tu_write(dirs.src, "usr/lib/b", "bbbb");
	cr_assert_eq(tu_sh("cd %s && ln usr/lib/a usr/lib/a2 && ln -s ../etc/motd usr/motd && "
			   "setfattr -n user.k -v v etc/motd && "
			   "touch -h -d @1600000000.5 usr/motd etc/motd usr/lib/a usr/lib/b "
			   "etc/hostname usr/lib usr etc . 2>/dev/null; true",
			   dirs.src),
		     0);
	_cleanup_free_ char *base = id_of(tu_ok(tu_lf(store, "import", dirs.src, NULL)));
	_cleanup_free_ char *top = tu_path(dirs.tmp, "top");
	cr_assert_eq(
	    tu_sh("rm -rf %s && mkdir -p %s/usr/lib %s/etc && touch %s/etc/.wh.motd && "
		  "touch %s/usr/lib/.wh..wh..opq && printf c > %s/usr/lib/c && "
		  "touch -d @1700000000 %s/usr/lib/c %s/usr/lib/.wh..wh..opq %s/etc/.wh.motd "
		  "%s/usr/lib %s/usr %s/etc %s && "
		  "tar --format=posix -C %s -cf %s.tar .",
		  top, top, top, top, top, top, top, top, top, top, top, top, top, top, top),
	    0);
	char *tar;
	cr_assert(asprintf(&tar, "%s.tar", top) > 0);
	char *id = id_of(tu_ok(tu_lf(store, "import", "--tar", tar, "--parent", base, NULL)));
	free(tar);
	return id;
}

Test(oci_save, saving_twice_and_from_another_store_gives_identical_digests)
{
	_cleanup_free_ char *id = make_chain(dirs.store);
	static const char *const comps[] = {"gzip", "zstd", "none"};
	_cleanup_free_ char *other = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *id2 = NULL;
	for (size_t i = 0; i < 3; i++) {
		char d1[4200], d2[4200];
		snprintf(d1, sizeof d1, "oci:%s/one-%s:t", dirs.tmp, comps[i]);
		snprintf(d2, sizeof d2, "oci:%s/two-%s:t", dirs.tmp, comps[i]);
		_cleanup_free_ char *a = tu_ok(tu_lf(dirs.store, "--json", "save", id, "-o", d1,
						     "--compression", comps[i], NULL));
		_cleanup_free_ char *b = tu_ok(tu_lf(dirs.store, "--json", "save", id, "-o", d2,
						     "--compression", comps[i], NULL));
		cr_assert_str_eq(a, b, "%s", comps[i]);
		cr_assert(strstr(a, "\"layers\":[{\"digest\":\"sha256:"), "%s", a);
	}
	/* a second store: the same imports, the same layer and manifest digests */
	cr_assert_eq(tu_sh("rm -rf %s/src", dirs.tmp), 0);
	id2 = make_chain(other);
	cr_assert_str_eq(id2, id);
	char d3[4200], d1[4200];
	snprintf(d1, sizeof d1, "oci:%s/one-gzip:t", dirs.tmp);
	snprintf(d3, sizeof d3, "oci:%s/three:t", dirs.tmp);
	_cleanup_free_ char *m1 = tu_ok(tu_lf(dirs.store, "save", id, "-o", d1, NULL));
	_cleanup_free_ char *m3 = tu_ok(tu_lf(other, "save", id, "-o", d3, NULL));
	cr_assert_str_eq(m1, m3);
	/* gzip and zstd blobs differ, their diff_ids do not */
	cr_assert_eq(
	    tu_sh("cd %s && for c in one-gzip one-zstd one-none; do "
		  "jq -c .rootfs.diff_ids $c/blobs/sha256/$(jq -r .config.digest "
		  "$c/blobs/sha256/$(jq -r '.manifests[0].digest' $c/index.json | cut -c8-) "
		  "| cut -c8-); done | uniq | wc -l | grep -qx 1",
		  dirs.tmp),
	    0);
}

/* One line per entry of the tree at ROOT, in name order: type, mode, owner, mtime, size,
 * content digest, link target, xattrs, and the first path of its hard-link group. */
static void listing(FILE *out, const char *root, const char *rel, char ***seen, size_t *nseen)
{
	char *dir = tu_path(root, rel);
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	cr_assert_geq(n, 0, "scandir %s", dir);
	for (int i = 0; i < n; i++) {
		const char *nm = names[i]->d_name;
		if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) {
			free(names[i]);
			continue;
		}
		char p[4096], full[8192];
		snprintf(p, sizeof p, "%s%s%s", rel, *rel ? "/" : "", nm);
		snprintf(full, sizeof full, "%s/%s", root, p);
		struct stat st;
		cr_assert_eq(lstat(full, &st), 0, "%s", full);
		fprintf(out, "%s %o %u:%u %lld.%09ld", p, st.st_mode, st.st_uid, st.st_gid,
			(long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		if (S_ISREG(st.st_mode)) {
			char key[64];
			snprintf(key, sizeof key, "%lu:%lu", (unsigned long)st.st_dev,
				 (unsigned long)st.st_ino);
			const char *first = NULL;
			for (size_t k = 0; k < *nseen; k += 2)
				if (strcmp((*seen)[k], key) == 0)
					first = (*seen)[k + 1];
			if (!first) {
				*seen = realloc(*seen, (*nseen + 2) * sizeof **seen);
				(*seen)[(*nseen)++] = strdup(key);
				(*seen)[(*nseen)++] = strdup(p);
			}
			_cleanup_free_ char *data = tu_read(root, p);
			uint8_t d[LYR_SHA256_LEN];
			char text[LYR_DIGEST_TEXT_LEN];
			lyr_sha256(data, strlen(data), d);
			lyr_digest_text(d, text);
			fprintf(out, " size=%lld %s links-to=%s", (long long)st.st_size, text,
				first ? first : "-");
		}
		if (S_ISLNK(st.st_mode)) {
			char t[4096];
			ssize_t k = readlink(full, t, sizeof t - 1);
			t[k > 0 ? k : 0] = '\0';
			fprintf(out, " -> %s", t);
		}
		if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
			fprintf(out, " dev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
		char xl[4096];
		ssize_t xn = llistxattr(full, xl, sizeof xl);
		for (ssize_t k = 0; k < xn; k += (ssize_t)strlen(xl + k) + 1) {
			if (strncmp(xl + k, "security.selinux", 16) == 0)
				continue;
			char v[1024];
			ssize_t vl = lgetxattr(full, xl + k, v, sizeof v - 1);
			v[vl > 0 ? vl : 0] = '\0';
			fprintf(out, " %s=%s", xl + k, v);
		}
		fputc('\n', out);
		if (S_ISDIR(st.st_mode))
			listing(out, root, p, seen, nseen);
		free(names[i]);
	}
	free(names);
	free(dir);
}

static char *tree_text(const char *root)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char **seen = NULL;
	size_t nseen = 0;
	listing(f, root, "", &seen, &nseen);
	fclose(f);
	for (size_t i = 0; i < nseen; i++)
		free(seen[i]);
	free(seen);
	return buf;
}

Test(oci_save, umoci_unpacks_the_tree_a_mount_shows_with_renames_metacopy_and_links)
{
	tu_need_fuse();
	need_tool("umoci");
	need_tool("skopeo");
	_cleanup_free_ char *chain = make_chain(dirs.store);
	/* a third layer made through a mount: a renamed lower directory (redirect), a chmod of a
	 * lower file (metacopy), a new hard link */
	_cleanup_free_ char *ref = tu_ok(tu_lf(dirs.store, "new", chain, NULL));
	ref[64] = '\0';
	_cleanup_free_ char *mp = tu_path(dirs.tmp, "mnt");
	cr_assert_eq(mkdir(mp, 0755), 0);
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	cr_assert_eq(
	    tu_sh("cd %s && mv usr/lib usr/lib64 && chmod 0600 etc/hostname && "
		  "ln etc/hostname etc/hostname2 && mkdir usr/lib && printf new > usr/lib/n",
		  mp),
	    0);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	_cleanup_free_ char *top = id_of(tu_ok(tu_lf(dirs.store, "commit", ref, NULL)));
	/* the layer really holds a redirect and a metacopy */
	cr_assert_eq(tu_sh("cd %s/layers/%s/diff && getfattr -h -d -m overlay. usr/lib64 | "
			   "grep -q redirect && getfattr -h -d -m overlay. etc/hostname | "
			   "grep -q metacopy",
			   dirs.store, top + 7),
		     0, "the chain should exercise redirect and metacopy");

	char dest[4200];
	snprintf(dest, sizeof dest, "oci:%s/img:t", dirs.tmp);
	free(tu_ok(tu_lf(dirs.store, "save", top, "-o", dest, NULL)));
	cr_assert_eq(
	    tu_sh("skopeo inspect %s > %s/inspect.json && grep -q '\"Layers\"' %s/inspect.json",
		  dest, dirs.tmp, dirs.tmp),
	    0);
	cr_assert_eq(tu_sh("cd %s && umoci unpack --image img:t bundle >/dev/null 2>&1", dirs.tmp),
		     0);

	free(tu_ok(tu_lf(dirs.store, "mount", top, mp, NULL)));
	_cleanup_free_ char *seen = tree_text(mp);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	_cleanup_free_ char *rootfs = tu_path(dirs.tmp, "bundle/rootfs");
	_cleanup_free_ char *unpacked = tree_text(rootfs);
	cr_assert_str_eq(unpacked, seen);
	cr_assert(strstr(seen, "usr/lib64/c "), "%s", seen);
	cr_assert(strstr(seen, "etc/hostname2 100600"), "%s", seen);
	cr_assert(!strstr(seen, "\netc/motd "), "%s", seen);

	/* the archives are accepted too */
	char ar[4200];
	snprintf(ar, sizeof ar, "oci-archive:%s/img.tar:t", dirs.tmp);
	free(tu_ok(tu_lf(dirs.store, "save", top, "-o", ar, "--compression", "zstd", NULL)));
	cr_assert_eq(tu_sh("skopeo inspect %s >/dev/null", ar), 0);
	snprintf(ar, sizeof ar, "docker-archive:%s/docker.tar:lf:v1", dirs.tmp);
	free(tu_ok(tu_lf(dirs.store, "save", top, "-o", ar, NULL)));
	cr_assert_eq(
	    tu_sh("skopeo inspect docker-archive:%s/docker.tar:lf:v1 >/dev/null", dirs.tmp), 0);
}

Test(oci_save, bad_destinations_are_usage_errors)
{
	tu_write(dirs.src, "f", "x");
	_cleanup_free_ char *id = id_of(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	tu_run r = tu_lf(dirs.store, "save", id, "-o", "docker://x", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "destination 'docker://x' is not oci:DIR"), "%s", r.err);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "save", id, NULL);
	cr_assert_eq(r.status, 2);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "save", id, "-o", "oci:/x", "--compression", "lz4", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--compression takes gzip, zstd or none, not 'lz4'"), "%s", r.err);
	tu_run_free(&r);
	r = tu_lf(dirs.store, "save", "nosuchtag", "-o", "oci:/x", NULL);
	cr_assert_eq(r.status, 1);
	tu_run_free(&r);
}
