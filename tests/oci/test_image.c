/* `layerfs save` and `layerfs load`: images read back by umoci and skopeo (independent
 * implementations), compared file by file with what `layerfs mount` shows; images written by umoci
 * loaded and run; save and load round trips keep layer IDs and digests. */
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
	tu_dirs_fini(&dirs); /* unmounts what a test left, and fails it */
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
	need_tool("jq");
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

/* tree_text of layer ID as `layerfs mount` shows it. */
static char *mounted_tree(const char *id)
{
	_cleanup_free_ char *mp = tu_path(dirs.tmp, "view");
	mkdir(mp, 0755);
	free(tu_ok(tu_lf(dirs.store, "mount", id, mp, NULL)));
	char *seen = tree_text(mp);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	return seen;
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

	_cleanup_free_ char *seen = mounted_tree(top);
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

TestSuite(oci_load, .init = setup, .fini = teardown);

Test(oci_load, a_saved_chain_loads_into_another_store_with_the_same_layer_ids)
{
	need_tool("jq");
	_cleanup_free_ char *top = make_chain(dirs.store);
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "--json", "inspect", top, NULL));
	_cleanup_free_ char *base = tu_json_field(info, "parent");
	char want[256];
	snprintf(want, sizeof want, "{\"id\":\"%s\",\"layers\":[\"%s\",\"%s\"]}\n", top, base, top);
	static const char *const kinds[][2] = {
	    {"oci:", "/img:t"}, {"oci-archive:", "/img.tar:t"}, {"docker-archive:", "/d.tar:lf:t"}};
	for (size_t i = 0; i < 3; i++) {
		char dest[4200], store2[4200];
		snprintf(dest, sizeof dest, "%s%s%s", kinds[i][0], dirs.tmp, kinds[i][1]);
		snprintf(store2, sizeof store2, "%s/store-%zu", dirs.tmp, i);
		free(tu_ok(tu_lf(dirs.store, "save", top, "-o", dest, NULL)));
		_cleanup_free_ char *out =
		    tu_ok(tu_lf(store2, "--json", "load", dest, "--tag", "img", NULL));
		cr_assert_str_eq(out, want, "%s", dest);
		/* loading again adds nothing */
		_cleanup_free_ char *before = tu_store_state(store2);
		_cleanup_free_ char *again = tu_ok(tu_lf(store2, "--json", "load", dest, NULL));
		cr_assert_str_eq(again, want);
		_cleanup_free_ char *after = tu_store_state(store2);
		cr_assert_str_eq(after, before);
	}
	/* a layer the store has is found by its diff_id: its blob is not even read */
	cr_assert_eq(tu_sh("cd %s/img && for d in $(jq -r '.layers[].digest' blobs/sha256/$(jq -r "
			   "'.manifests[0].digest' index.json | cut -c8-) | cut -c8-); do "
			   "rm blobs/sha256/$d; done",
			   dirs.tmp),
		     0);
	char src[4200], store0[4200];
	snprintf(src, sizeof src, "oci:%s/img:t", dirs.tmp);
	snprintf(store0, sizeof store0, "%s/store-0", dirs.tmp);
	_cleanup_free_ char *again = tu_ok(tu_lf(store0, "--json", "load", src, NULL));
	cr_assert_str_eq(again, want);
}

Test(oci_load, an_image_umoci_wrote_runs_under_exec)
{
	need_tool("umoci");
	tu_need_busybox();
	if (geteuid() != 0)
		cr_skip_test("exec of a loaded root tree needs root here (owners 0:0)");
	cr_assert_eq(tu_sh("cd %s && umoci init --layout img && umoci new --image img:t && "
			   "umoci unpack --image img:t bundle >/dev/null",
			   dirs.tmp),
		     0);
	_cleanup_free_ char *rootfs = tu_path(dirs.tmp, "bundle/rootfs");
	static const char *const applets[] = {"sh", "cat", "ls", "echo", "id", "pwd"};
	tu_busybox_root(rootfs, applets, 6, "root:x:0:0:root:/:/bin/sh\n", "root:x:0:\n");
	tu_write(rootfs, "etc/gone", "deleted later\n");
	tu_write(rootfs, "opt/old/a", "old\n");
	tu_write(rootfs, "opt/keep", "kept\n");
	cr_assert_eq(tu_sh("cd %s && umoci repack --image img:t bundle >/dev/null && "
			   "mkdir -p new/b && echo new > new/b/file && "
			   "umoci insert --image img:t --whiteout /etc/gone >/dev/null && "
			   "umoci insert --image img:t --opaque new /opt >/dev/null && "
			   "umoci config --image img:t --config.env FOO=image --config.env BAR=b "
			   "--config.workingdir /opt/b --config.user 1000:1000",
			   dirs.tmp),
		     0);
	char src[4200];
	snprintf(src, sizeof src, "oci:%s/img:t", dirs.tmp);
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "--json", "load", src, "--tag", "bb", NULL));
	cr_assert(strstr(out, "\"layers\":[\"sha256:"), "%s", out);
	size_t nlayers = 0;
	for (const char *p = out; (p = strstr(p, "\"sha256:")); p++)
		nlayers++;
	cr_assert_eq(nlayers, 1 + 3, "top id plus three layers: %s", out);
	_cleanup_free_ char *ran = tu_ok(tu_lf(dirs.store, "exec", "bb", "--", "/bin/sh", "-c",
					       "echo hi; ls /opt /opt/b; cat /opt/b/file; "
					       "cat /etc/gone 2>/dev/null || echo gone",
					       NULL));
	cr_assert_str_eq(ran, "hi\n/opt:\nb\n\n/opt/b:\nfile\nnew\ngone\n");
	/* the image's Env, WorkingDir and User are the defaults; the command line wins */
	_cleanup_free_ char *defaults = tu_ok(tu_lf(dirs.store, "exec", "bb", "--", "/bin/sh", "-c",
						    "echo $FOO $BAR; pwd; id -u", NULL));
	cr_assert_str_eq(defaults, "image b\n/opt/b\n1000\n");
	_cleanup_free_ char *given =
	    tu_ok(tu_lf(dirs.store, "exec", "--env", "FOO=cli", "--cwd", "/", "--user", "0", "bb",
			"--", "/bin/sh", "-c", "echo $FOO $BAR; pwd; id -u", NULL));
	cr_assert_str_eq(given, "cli b\n/\n0\n");
}

/* Rewrites the manifest of the layout at DIR (tag t) with the jq program FILTER, and seals it:
 * the manifest blob and index.json are rewritten to match. */
static void reseal(const char *dir, const char *filter)
{
	cr_assert_eq(
	    tu_sh("cd %s && m=$(jq -r '.manifests[0].digest' index.json | cut -c8-) && "
		  "jq -c '%s' blobs/sha256/$m > m.json && n=$(sha256sum m.json | cut -c1-64) "
		  "&& mv m.json blobs/sha256/$n && s=$(stat -c %%s blobs/sha256/$n) && "
		  "jq -c \".manifests[0].digest=\\\"sha256:$n\\\" | .manifests[0].size=$s\" "
		  "index.json > i.json && mv i.json index.json",
		  dir, filter),
	    0);
}

/* Loads the layout at DIR expecting exit 1 with MESSAGE (after "load 'oci:DIR:t': "; with
 * PREFIX, the message starts so) and the store unchanged. */
static void load_refused_as(const char *dir, const char *message, bool prefix)
{
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	char src[4200];
	snprintf(src, sizeof src, "oci:%s:t", dir);
	tu_run r = tu_lf(dirs.store, "load", src, "--tag", "t", NULL);
	cr_assert_eq(r.status, 1, "%s", r.err);
	char want[8192];
	snprintf(want, sizeof want, "layerfs: load '%s': %s%s", src, message, prefix ? "" : "\n");
	if (prefix)
		cr_assert(strncmp(r.err, want, strlen(want)) == 0, "%s", r.err);
	else
		cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(after, before);
}

static void load_refused(const char *dir, const char *message)
{
	load_refused_as(dir, message, false);
}

static void load_refused_prefix(const char *dir, const char *message)
{
	load_refused_as(dir, message, true);
}

/* A saved two-layer image at DIR; RET_BLOB gets the top layer blob's digest. */
static void saved_image(const char *dir, char *ret_blob)
{
	_cleanup_free_ char *top = make_chain(dirs.store);
	char dest[4200];
	snprintf(dest, sizeof dest, "oci:%s:t", dir);
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "--json", "save", top, "-o", dest, NULL));
	const char *last = strrchr(out, '{');
	_cleanup_free_ char *d = tu_json_field(last, "digest");
	strcpy(ret_blob, d);
	free(tu_ok(tu_lf(dirs.store, "tag", "t", top, NULL)));
}

Test(oci_load, a_blob_that_does_not_match_its_digest_changes_nothing)
{
	_cleanup_free_ char *dir = tu_path(dirs.tmp, "img");
	char blob[128];
	saved_image(dir, blob);
	/* zero blocks after the tar's end: still a valid tar, but not the blob the manifest names
	 */
	cr_assert_eq(
	    tu_sh("cd %s/blobs/sha256 && f=%s && chmod u+w $f && "
		  "head -c 1024 /dev/zero | gzip -n >> $f && sha256sum $f | cut -c1-64 > %s/new",
		  dir, blob + 7, dirs.tmp),
	    0);
	_cleanup_free_ char *now = tu_read(dirs.tmp, "new");
	now[strcspn(now, "\n")] = '\0';
	char msg[512];
	snprintf(msg, sizeof msg, "'%s': digest mismatch: the blob is sha256:%s", blob, now);
	load_refused(dir, msg);
}

Test(oci_load, a_missing_blob_a_non_layer_and_a_short_diff_id_list_are_refused)
{
	need_tool("jq");
	_cleanup_free_ char *dir = tu_path(dirs.tmp, "img");
	char blob[128];
	saved_image(dir, blob);
	cr_assert_eq(tu_sh("mv %s/blobs/sha256/%s %s/saved", dir, blob + 7, dirs.tmp), 0);
	char msg[512];
	snprintf(msg, sizeof msg, "'%s': missing from the image (No such file or directory)", blob);
	load_refused(dir, msg);
	cr_assert_eq(tu_sh("mv %s/saved %s/blobs/sha256/%s", dirs.tmp, dir, blob + 7), 0);

	reseal(dir, ".layers[1].mediaType=\"application/vnd.oci.image.config.v1+json\"");
	snprintf(msg, sizeof msg,
		 "'%s': media type 'application/vnd.oci.image.config.v1+json' is not a layer",
		 blob);
	load_refused(dir, msg);

	reseal(dir, ".layers[1].mediaType=\"application/vnd.oci.image.layer.v1.tar+gzip\" | "
		    ".layers += [.layers[1]]");
	load_refused(dir, "'config': rootfs.diff_ids lists 2 layers, the manifest 3");
}

Test(oci_load, a_layer_whose_diff_id_differs_from_the_config_is_refused)
{
	need_tool("jq");
	_cleanup_free_ char *dir = tu_path(dirs.tmp, "img");
	char blob[128];
	saved_image(dir, blob);
	/* the top layer's blob swapped for the base layer's, digests in the manifest made to match
	 */
	reseal(dir, ".layers[1] = .layers[0]");
	char msg[512];
	cr_assert_eq(tu_sh("cd %s && jq -r '.layers[0].digest' blobs/sha256/$(jq -r "
			   "'.manifests[0].digest' index.json | cut -c8-) > %s/base",
			   dir, dirs.tmp),
		     0);
	_cleanup_free_ char *base = tu_read(dirs.tmp, "base");
	base[strcspn(base, "\n")] = '\0';
	snprintf(msg, sizeof msg, "'%s': diff_id mismatch: the uncompressed layer is ", base);
	load_refused_prefix(dir, msg);
}

Test(oci_load, an_index_of_several_platforms_is_resolved_with_platform)
{
	need_tool("jq");
	/* two images in one layout, one per platform, in one index entry each */
	tu_write(dirs.src, "which", "amd64\n");
	_cleanup_free_ char *a = id_of(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	tu_write(dirs.src, "which", "arm64\n");
	_cleanup_free_ char *b = id_of(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	_cleanup_free_ char *dir = tu_path(dirs.tmp, "img");
	char d1[4200], d2[4200];
	snprintf(d1, sizeof d1, "oci:%s:a", dir);
	snprintf(d2, sizeof d2, "oci:%s:b", dir);
	free(tu_ok(tu_lf(dirs.store, "save", a, "-o", d1, NULL)));
	free(tu_ok(tu_lf(dirs.store, "save", b, "-o", d2, NULL)));
	cr_assert_eq(tu_sh("cd %s && jq -c '.manifests[0].platform={\"os\":\"linux\","
			   "\"architecture\":\"amd64\"} | .manifests[1].platform={\"os\":\"linux\","
			   "\"architecture\":\"arm64\",\"variant\":\"v8\"} | "
			   "del(.manifests[].annotations)' index.json > i && mv i index.json",
			   dir),
		     0);
	char src[4200];
	snprintf(src, sizeof src, "oci:%s", dir);
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *got_a =
	    tu_ok(tu_lf(store2, "load", src, "--platform", "linux/amd64", NULL));
	_cleanup_free_ char *got_b =
	    tu_ok(tu_lf(store2, "load", src, "--platform", "linux/arm64/v8", NULL));
	cr_assert_eq(strncmp(got_a, a, 71), 0, "%s", got_a);
	cr_assert_eq(strncmp(got_b, b, 71), 0, "%s", got_b);
	tu_run r = tu_lf(store2, "load", src, "--platform", "linux/s390x", NULL);
	cr_assert_eq(r.status, 1);
	char want[4400];
	snprintf(want, sizeof want,
		 "layerfs: load '%s': 'index.json': no image for platform linux/s390x\n", src);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
}

/* ---- registries: docker-registry on 127.0.0.1, started per test ---- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

static pid_t registry_pid;
static char registry[64];
static const char *registry_ip = "127.0.0.1"; /* where the next registry_start listens */

static pid_t front_pid;

static void registry_stop(void)
{
	if (front_pid > 0) {
		kill(front_pid, SIGTERM);
		waitpid(front_pid, NULL, 0);
		front_pid = 0;
	}
	if (registry_pid > 0) {
		kill(registry_pid, SIGTERM);
		waitpid(registry_pid, NULL, 0);
		registry_pid = 0;
	}
	teardown();
}

/* Starts docker-registry on a free port of REGISTRY_IP with its storage below the test's
 * directory and CONFIG (YAML lines, "" for none) added to its configuration; REGISTRY gets
 * "IP:PORT". */
static void registry_start(const char *config)
{
	need_tool("docker-registry");
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = inet_addr(registry_ip)};
	socklen_t len = sizeof a;
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	int port = ntohs(a.sin_port);
	close(s);
	snprintf(registry, sizeof registry, "%s:%d", registry_ip, port);
	_cleanup_free_ char *cfg = tu_path(dirs.tmp, "registry.yml");
	cr_assert_eq(tu_sh("mkdir %s/registry && printf 'version: 0.1\\nlog:\\n  level: error\\n"
			   "storage:\\n  filesystem:\\n    rootdirectory: %s/registry\\nhttp:\\n"
			   "  addr: %s\\n%s' > %s",
			   dirs.tmp, dirs.tmp, registry, config, cfg),
		     0);
	_cleanup_free_ char *log = tu_path(dirs.tmp, "registry.log");
	registry_pid = fork();
	cr_assert_geq(registry_pid, 0);
	if (registry_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("docker-registry", "docker-registry", "serve", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) { /* up to 5 s for it to listen */
		int c = socket(AF_INET, SOCK_STREAM, 0);
		int ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0;
		close(c);
		if (ok)
			return;
		usleep(50000);
	}
	cr_assert_fail("docker-registry did not start listening on %s", registry);
}

static void registry_setup(void)
{
	setup();
	registry_ip = "127.0.0.1";
	registry_start("");
}

TestSuite(oci_registry, .init = registry_setup, .fini = registry_stop);

/* Requests in the registry's access log that start with TEXT ("POST /v2/", ...). */
static int registry_requests(const char *text)
{
	_cleanup_free_ char *log = tu_read(dirs.tmp, "registry.log");
	int n = 0;
	for (const char *p = log; p && (p = strstr(p, text)); p++)
		n++;
	return n;
}

static int registry_blob_gets(void)
{
	return registry_requests("\"GET /v2/up/img/blobs/");
}

static int registry_uploads(void)
{
	return registry_requests("\"POST /v2/");
}

Test(oci_registry, push_then_skopeo_and_umoci_give_the_mount_tree_and_a_second_push_uploads_nothing)
{
	tu_need_fuse();
	need_tool("skopeo");
	need_tool("umoci");
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/layerfs/test:v1", registry);
	_cleanup_free_ char *m1 = tu_ok(tu_lf(dirs.store, "push", top, name, NULL));
	int uploads = registry_uploads();
	cr_assert_eq(uploads, 3, "two layers and a config uploaded");
	_cleanup_free_ char *m2 = tu_ok(tu_lf(dirs.store, "push", top, name, NULL));
	cr_assert_str_eq(m2, m1);
	cr_assert_eq(registry_uploads(), uploads, "the second push only asks (HEAD)");
	/* another repository lacks the blobs, which the push then builds again and sends */
	char other[256];
	snprintf(other, sizeof other, "%s/layerfs/other:v1", registry);
	_cleanup_free_ char *m3 = tu_ok(tu_lf(dirs.store, "push", top, other, NULL));
	cr_assert_str_eq(m3, m1);
	cr_assert_eq(registry_uploads(), uploads + 3);
	cr_assert_eq(tu_sh("skopeo inspect -n --tls-verify=false docker://%s >/dev/null", other),
		     0);

	cr_assert_eq(
	    tu_sh("cd %s && skopeo copy -q --src-tls-verify=false docker://%s oci:copy:t && "
		  "umoci unpack --image copy:t bundle >/dev/null 2>&1",
		  dirs.tmp, name),
	    0);
	_cleanup_free_ char *seen = mounted_tree(top);
	_cleanup_free_ char *rootfs = tu_path(dirs.tmp, "bundle/rootfs");
	_cleanup_free_ char *unpacked = tree_text(rootfs);
	cr_assert_str_eq(unpacked, seen);
}

Test(oci_registry, an_image_skopeo_copied_pulls_to_the_layer_ids_load_gives)
{
	need_tool("skopeo");
	need_tool("umoci");
	cr_assert_eq(tu_sh("cd %s && umoci init --layout img && umoci new --image img:t && "
			   "mkdir -p a/etc b && echo one > a/etc/one && echo two > b/two && "
			   "umoci insert --image img:t a / >/dev/null && "
			   "umoci insert --image img:t --opaque b /etc >/dev/null && "
			   "skopeo copy -q --dest-tls-verify=false oci:img:t docker://%s/up/img:t",
			   dirs.tmp, registry),
		     0);
	char src[4200], name[256];
	snprintf(src, sizeof src, "oci:%s/img:t", dirs.tmp);
	snprintf(name, sizeof name, "%s/up/img:t", registry);
	_cleanup_free_ char *loaded = tu_ok(tu_lf(dirs.store, "--json", "load", src, NULL));
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *pulled =
	    tu_ok(tu_lf(store2, "--json", "pull", name, "--tag", "img", NULL));
	cr_assert_str_eq(pulled, loaded);
	/* a second pull asks for the manifest and config only */
	int gets = registry_blob_gets();
	_cleanup_free_ char *again = tu_ok(tu_lf(store2, "--json", "pull", name, NULL));
	cr_assert_str_eq(again, loaded);
	cr_assert_eq(registry_blob_gets(), gets + 1, "only the config blob is fetched again");
	/* an unknown tag: the registry's own words */
	snprintf(name, sizeof name, "%s/up/img:nope", registry);
	tu_run r = tu_lf(store2, "pull", name, NULL);
	cr_assert_eq(r.status, 1);
	char want[512];
	snprintf(want, sizeof want, "layerfs: pull '%s': 'nope': HTTP 404: manifest unknown\n",
		 name);
	cr_assert_str_eq(r.err, want);
	tu_run_free(&r);
}

/* Starts tests/oci/front.py before the registry: FAILS failures first (a 429, a dropped
 * connection, then 503s), then a bearer-token login with USER_PASS; with STALL no answer ever.
 * Returns "127.0.0.1:PORT"; its requests are logged in front-N.log. */
static char *front_start(const char *user_pass, int fails, bool stall)
{
	static int n;
	need_tool("python3");
	char port_file[4200], log[4200];
	snprintf(port_file, sizeof port_file, "%s/front-%d.port", dirs.tmp, ++n);
	snprintf(log, sizeof log, "%s/front-%d.log", dirs.tmp, n);
	char nfails[16];
	snprintf(nfails, sizeof nfails, "%d", fails);
	if (front_pid > 0) {
		kill(front_pid, SIGTERM);
		waitpid(front_pid, NULL, 0);
	}
	front_pid = fork();
	cr_assert_geq(front_pid, 0);
	if (front_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		execlp("python3", "python3", LAYERFS_SOURCE_DIR "/tests/oci/front.py", port_file,
		       registry, user_pass, nfails, stall ? "stall" : NULL, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) { /* up to 10 s */
		FILE *f = fopen(port_file, "r");
		int port = 0;
		if (f) {
			int got = fscanf(f, "%d", &port);
			fclose(f);
			if (got == 1) {
				char *ret;
				cr_assert(asprintf(&ret, "127.0.0.1:%d", port) > 0);
				return ret;
			}
		}
		usleep(50000);
	}
	cr_assert_fail("front.py did not start");
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(oci_registry, a_registry_that_is_down_is_tried_four_times_then_named)
{
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/down/img:v1", registry);
	kill(registry_pid, SIGTERM);
	waitpid(registry_pid, NULL, 0);
	registry_pid = 0;
	double t0 = now_s();
	tu_run r = tu_lf(dirs.store, "push", top, name, NULL);
	double took = now_s() - t0;
	cr_assert_eq(r.status, 1, "%s", r.err);
	char re[512];
	snprintf(re, sizeof re,
		 "^layerfs: push '%s' to '%s': '%s': [^\n]*Couldn't connect to server \\(4 "
		 "tries\\)\n$",
		 top, name, registry);
	cr_assert(tu_matches(re, r.err), "%s", r.err);
	/* backoff 0.25 + 0.5 + 1 s between the tries */
	cr_assert(took >= 1.7 && took < 6, "took %.2f s", took);
	tu_run_free(&r);
	const char *once[] = {"LAYERFS_REGISTRY_RETRIES=0", NULL};
	r = tu_lf_env(once, dirs.store, "push", top, name, NULL);
	snprintf(re, sizeof re, "Couldn't connect to server \\(1 try\\)\n$");
	cr_assert(r.status == 1 && tu_matches(re, r.err), "%s", r.err);
	tu_run_free(&r);
}

/* An auth file in the docker/podman format for HOST with USER:PASS, written to NAME. */
static char *auth_file_for(const char *host, const char *name, const char *user_pass);

Test(oci_registry, a_registry_that_never_answers_times_out_as_configured)
{
	_cleanup_free_ char *front = front_start("alice:s3cret", 0, true);
	char name[256];
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	const char *env[] = {"LAYERFS_REGISTRY_TIMEOUT=1", "LAYERFS_REGISTRY_RETRIES=1", NULL};
	double t0 = now_s();
	tu_run r = tu_lf_env(env, dirs.store, "pull", name, NULL);
	double took = now_s() - t0;
	char re[512];
	snprintf(re, sizeof re,
		 "^layerfs: pull '%s': '%s': timed out: no progress for 1 s \\(2 tries\\)\n$", name,
		 front);
	cr_assert(r.status == 1 && tu_matches(re, r.err), "%d %s", r.status, r.err);
	/* 1 s each try, 250 ms between them */
	cr_assert(took >= 2.2 && took < 6, "took %.2f s", took);
	tu_run_free(&r);
	_cleanup_free_ char *log = tu_read(dirs.tmp, "front-1.log");
	cr_assert_str_eq(
	    log, "GET /v2/up/img/manifests/v1 stalled\nGET /v2/up/img/manifests/v1 stalled\n");
}

Test(oci_registry, unavailable_answers_are_retried_and_a_bearer_token_is_fetched)
{
	need_tool("python3");
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/up/img:v1", registry);
	free(tu_ok(tu_lf(dirs.store, "push", top, name, NULL)));

	_cleanup_free_ char *front = front_start("alice:s3cret", 3, false);
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	_cleanup_free_ char *good = auth_file_for(front, "front.json", "alice:s3cret");
	char e_file[4200];
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", good);
	const char *env[] = {e_file, NULL};
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	double t0 = now_s();
	_cleanup_free_ char *pulled = id_of(tu_ok(tu_lf_env(env, store2, "pull", name, NULL)));
	double took = now_s() - t0;
	cr_assert_str_eq(pulled, top);
	cr_assert(took >= 2.5, "Retry-After: 1, then 500 ms and 1 s: took %.2f s", took);
	_cleanup_free_ char *log = tu_read(dirs.tmp, "front-1.log");
	cr_assert(tu_matches("^GET /v2/up/img/manifests/v1 429\n"
			     "GET /v2/up/img/manifests/v1 dropped\n"
			     "GET /v2/up/img/manifests/v1 503\n"
			     "GET /v2/up/img/manifests/v1 401\n"
			     "GET /token\\?service=front&scope=repository%3Ax%3Apull 200\n"
			     "GET /v2/up/img/manifests/v1 200\n",
			     log),
		  "%s", log);

	/* a front that stays unavailable: three tries, then its own words */
	free(front);
	front = front_start("alice:s3cret", 100, false);
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	_cleanup_free_ char *good2 = auth_file_for(front, "front2.json", "alice:s3cret");
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", good2);
	const char *env2[] = {e_file, "LAYERFS_REGISTRY_RETRIES=2", NULL};
	tu_fails(tu_lf_env(env2, store2, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'v1': HTTP 503: the front is busy\n", name);
	_cleanup_free_ char *log2 = tu_read(dirs.tmp, "front-2.log");
	cr_assert_str_eq(log2, "GET /v2/up/img/manifests/v1 503\nGET /v2/up/img/manifests/v1 "
			       "503\nGET /v2/up/img/manifests/v1 503\n");

	/* credentials the token server refuses: its words, the registry named */
	free(front);
	front = front_start("alice:s3cret", 0, false);
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	_cleanup_free_ char *bad = auth_file_for(front, "front3.json", "alice:nope");
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", bad);
	tu_fails(tu_lf_env(env, store2, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'http://%s/token': HTTP 401: bad credentials for the token "
		 "(registry %s, as user 'alice')\n",
		 name, front, front);
}

/* ---- the same registry with htpasswd (basic) authentication: alice, password "s3cret" ---- */

#include <crypt.h>

static void auth_registry_setup(void)
{
	setup();
	registry_ip = "127.0.0.1";
	char *hash = crypt("s3cret", crypt_gensalt("$2b$", 5, NULL, 0));
	cr_assert(hash && strncmp(hash, "$2b$", 4) == 0, "libcrypt makes bcrypt hashes");
	_cleanup_free_ char *line = NULL;
	cr_assert(asprintf(&line, "alice:%s\n", hash) > 0);
	tu_write(dirs.tmp, "htpasswd", line);
	char config[4400];
	snprintf(config, sizeof config,
		 "auth:\\n  htpasswd:\\n    realm: layerfs-test\\n    path: %s/htpasswd\\n",
		 dirs.tmp);
	registry_start(config);
}

TestSuite(oci_registry_auth, .init = auth_registry_setup, .fini = registry_stop);

static char *auth_file_for(const char *host, const char *name, const char *user_pass)
{
	_cleanup_free_ char *b64 = NULL;
	_cleanup_free_ char *path = tu_path(dirs.tmp, name);
	cr_assert_eq(tu_sh("mkdir -p $(dirname %s) && printf '{\"auths\": {\"other:1\": {}, "
			   "\"%s\": {\"auth\": \"%%s\"}}}' $(printf %%s '%s' | base64 -w0) > %s",
			   path, host, user_pass, path),
		     0);
	return tu_path(dirs.tmp, name);
}

/* An auth file in the docker/podman format for the test's registry, USER:PASS in it. */
static char *auth_file(const char *name, const char *user_pass)
{
	return auth_file_for(registry, name, user_pass);
}

Test(oci_registry_auth, credentials_from_each_auth_file_log_in_and_a_refused_login_says_why)
{
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/sec/img:v1", registry);
	/* no credentials anywhere: the registry's refusal, naming it */
	_cleanup_free_ char *home = tu_path(dirs.tmp, "home");
	_cleanup_free_ char *run = tu_path(dirs.tmp, "run");
	char e_home[4200], e_run[4200], e_docker[4200];
	snprintf(e_home, sizeof e_home, "HOME=%s", home);
	snprintf(e_run, sizeof e_run, "XDG_RUNTIME_DIR=%s", run);
	snprintf(e_docker, sizeof e_docker, "DOCKER_CONFIG=");
	const char *none[] = {e_home, e_run, e_docker, "REGISTRY_AUTH_FILE=", NULL};
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	tu_fails(tu_lf_env(none, store2, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'v1': HTTP 401: authentication required (registry %s, "
		 "no credentials)\n",
		 name, registry);

	/* a wrong password in $REGISTRY_AUTH_FILE: refused, the user named */
	_cleanup_free_ char *bad = auth_file("bad.json", "alice:wrong");
	char e_file[4200];
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", bad);
	const char *wrong[] = {e_home, e_run, e_docker, e_file, NULL};
	tu_fails(tu_lf_env(wrong, store2, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'v1': HTTP 401: authentication required (registry %s, "
		 "as user 'alice')\n",
		 name, registry);

	/* the right one: push with $REGISTRY_AUTH_FILE, pull with each of the other two files */
	_cleanup_free_ char *good = auth_file("good.json", "alice:s3cret");
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", good);
	const char *right[] = {e_home, e_run, e_docker, e_file, NULL};
	_cleanup_free_ char *m = tu_ok(tu_lf_env(right, dirs.store, "push", top, name, NULL));
	cr_assert_eq(strlen(m), 72, "the manifest digest: '%s'", m);
	free(auth_file("run/containers/auth.json", "alice:s3cret"));
	_cleanup_free_ char *p1 = id_of(tu_ok(tu_lf_env(none, store2, "pull", name, NULL)));
	cr_assert_str_eq(p1, top);
	cr_assert_eq(tu_sh("rm -r %s/containers", run), 0);
	free(auth_file("home/.docker/config.json", "alice:s3cret"));
	_cleanup_free_ char *store3 = tu_path(dirs.tmp, "store3");
	_cleanup_free_ char *p2 = id_of(tu_ok(tu_lf_env(none, store3, "pull", name, NULL)));
	cr_assert_str_eq(p2, top);
	/* $REGISTRY_AUTH_FILE comes first: its wrong password is the one tried */
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", bad);
	tu_fails(tu_lf_env(wrong, store3, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'v1': HTTP 401: authentication required (registry %s, "
		 "as user 'alice')\n",
		 name, registry);
}

/* ---- a registry that is not on a loopback name (127.0.0.2): HTTPS by default ---- */

static void far_registry_setup(void)
{
	setup();
	registry_ip = "127.0.0.2";
	registry_start("");
}

/* The same with TLS, its certificate self-signed. */
static void tls_registry_setup(void)
{
	setup();
	cr_assert_eq(tu_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
			   "ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem "
			   "-days 2 -subj /CN=127.0.0.2 -addext subjectAltName=IP:127.0.0.2 "
			   "2>/dev/null",
			   dirs.tmp),
		     0);
	char config[9000];
	snprintf(config, sizeof config,
		 "  tls:\\n    certificate: %s/cert.pem\\n    key: %s/key.pem\\n", dirs.tmp,
		 dirs.tmp);
	registry_ip = "127.0.0.2";
	registry_start(config);
}

TestSuite(oci_registry_far, .init = far_registry_setup, .fini = registry_stop);
TestSuite(oci_registry_tls, .init = tls_registry_setup, .fini = registry_stop);

/* A push to REGISTRY without --tls-verify=false fails as RE says; with it, the push and a pull
 * into another store work. */
static void tls_verify_false_needed(const char *re)
{
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/far/img:v1", registry);
	tu_run r = tu_lf(dirs.store, "push", top, name, NULL);
	cr_assert(r.status == 1 && tu_matches(re, r.err), "%d %s", r.status, r.err);
	tu_run_free(&r);
	tu_fails(tu_lf(dirs.store, "push", "--tls-verify=maybe", top, name, NULL), 2,
		 "layerfs push: --tls-verify takes true or false, not 'maybe'\n"
		 "Try 'layerfs push --help'.\n");
	free(tu_ok(tu_lf(dirs.store, "push", "--tls-verify=false", top, name, NULL)));
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *pulled =
	    id_of(tu_ok(tu_lf(store2, "pull", "--tls-verify=false", name, NULL)));
	cr_assert_str_eq(pulled, top);
}

Test(oci_registry_far, plain_http_beyond_loopback_names_only_with_tls_verify_false)
{
	tls_verify_false_needed("^layerfs: push '[^']*' to '127\\.0\\.0\\.2:[0-9]+/far/img:v1': "
				"'127\\.0\\.0\\.2:[0-9]+': [^\n]*SSL[^\n]* \\(1 try\\)\n$");
}

Test(oci_registry_tls, a_self_signed_certificate_only_with_tls_verify_false)
{
	tls_verify_false_needed("^layerfs: push '[^']*' to '127\\.0\\.0\\.2:[0-9]+/far/img:v1': "
				"'127\\.0\\.0\\.2:[0-9]+': SSL certificate problem: self[- ]signed "
				"certificate \\(1 try\\)\n$");
}

Test(oci_load, the_image_config_stays_with_the_top_layer_and_save_writes_it_back)
{
	need_tool("jq");
	need_tool("umoci");
	cr_assert_eq(
	    tu_sh("cd %s && umoci init --layout img && umoci new --image img:t && "
		  "mkdir -p a/opt && echo x > a/opt/x && "
		  "umoci insert --image img:t a / >/dev/null && "
		  "umoci config --image img:t --config.env FOO=bar --config.workingdir /opt "
		  "--config.user 1000:1000",
		  dirs.tmp),
	    0);
	char src[4200], dest[4200];
	snprintf(src, sizeof src, "oci:%s/img:t", dirs.tmp);
	snprintf(dest, sizeof dest, "oci:%s/out:t", dirs.tmp);
	_cleanup_free_ char *top = id_of(tu_ok(tu_lf(dirs.store, "load", src, NULL)));
	free(tu_ok(tu_lf(dirs.store, "save", top, "-o", dest, NULL)));
	cr_assert_eq(
	    tu_sh("cd %s/out && c=$(jq -r .config.digest blobs/sha256/$(jq -r "
		  "'.manifests[0].digest' index.json | cut -c8-) | cut -c8-) && "
		  "jq -c '[.config.Env, .config.WorkingDir, .config.User, "
		  "(.rootfs.diff_ids | length), (.history | length)]' blobs/sha256/$c > %s/cfg",
		  dirs.tmp, dirs.tmp),
	    0);
	_cleanup_free_ char *cfg = tu_read(dirs.tmp, "cfg");
	cr_assert_str_eq(cfg, "[[\"FOO=bar\"],\"/opt\",\"1000:1000\",1,1]\n");
	/* and a save of what load gave, loaded again, saves to the same manifest */
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *again = id_of(tu_ok(tu_lf(store2, "load", dest, NULL)));
	cr_assert_str_eq(again, top);
	char d2[4200];
	snprintf(d2, sizeof d2, "oci:%s/out2:t", dirs.tmp);
	_cleanup_free_ char *m1 = tu_ok(tu_lf(dirs.store, "save", top, "-o", dest, NULL));
	_cleanup_free_ char *m2 = tu_ok(tu_lf(store2, "save", again, "-o", d2, NULL));
	cr_assert_str_eq(m1, m2);
}
