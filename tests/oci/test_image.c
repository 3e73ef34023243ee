/* `layerfs save` and `layerfs load`: images read back by umoci and skopeo (independent
 * implementations), compared file by file with what `layerfs mount` shows; images written by umoci
 * loaded and run; save and load round trips keep layer IDs and digests. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "hashutil.h"
#include "registry.h"
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

static void need_tool(const char *name)
{
	tu_need_tool(name);
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

/* Saves layer ID twice with each compression, into one-C and two-C in the test's directory, and
 * asserts that both saves print the same digests. */
static void save_each_twice(const char *id)
{
	static const char *const comps[] = {"gzip", "zstd", "none"};
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
}

Test(oci_save, saving_twice_and_from_another_store_gives_identical_digests)
{
	need_tool("jq");
	_cleanup_free_ char *id = make_chain(dirs.store);
	save_each_twice(id);
	_cleanup_free_ char *other = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *id2 = NULL;
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

/* A layer of several MiB crosses the save pipeline's buffers many times over: each compressed
 * blob still decompresses to exactly the uncompressed one, whose digest is the diff_id, and a
 * second save gives the same bytes. */
Test(oci_save, a_layer_of_many_pipeline_buffers_decompresses_to_its_diff_id)
{
	need_tool("jq");
	need_tool("zstd");
	cr_assert_eq(
	    tu_sh("mkdir -p %s && cd %s && mkdir a b && head -c 9437184 /dev/urandom > a/big && "
		  "yes layer | head -c 3000000 > b/text && "
		  "for i in $(seq 300); do echo $i > b/f$i; done",
		  dirs.src, dirs.src),
	    0);
	_cleanup_free_ char *id = id_of(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	save_each_twice(id);
	cr_assert_eq(
	    tu_sh(
		"cd %s && blob() { m=$(jq -r '.manifests[0].digest' $1/index.json | cut -c8-) && "
		"echo $1/blobs/sha256/$(jq -r '.layers[0].digest' $1/blobs/sha256/$m | cut -c8-); "
		"} && "
		"diff_id() { m=$(jq -r '.manifests[0].digest' $1/index.json | cut -c8-) && "
		"c=$(jq -r .config.digest $1/blobs/sha256/$m | cut -c8-) && "
		"jq -r '.rootfs.diff_ids[0]' $1/blobs/sha256/$c; } && "
		"t=$(blob one-none) && [ $(stat -c %%s $t) -gt 12000000 ] && "
		"gzip -dc $(blob one-gzip) | cmp - $t && zstd -qdc $(blob one-zstd) | cmp - $t && "
		"[ sha256:$(sha256sum < $t | cut -c1-64) = $(diff_id one-gzip) ] && "
		"[ $(diff_id one-zstd) = $(diff_id one-gzip) ]",
		dirs.tmp),
	    0);
}

/* The disk filling up while the blob is written (by the compressing thread) fails the save with
 * the cause named, and leaves no partial blob behind. */
Test(oci_save, a_full_disk_during_a_save_is_named_and_leaves_no_partial_blob)
{
	if (geteuid() != 0)
		cr_skip_test("mounting a small tmpfs needs root");
	cr_assert_eq(
	    tu_sh("mkdir -p %s/a && head -c 8388608 /dev/urandom > %s/a/big", dirs.src, dirs.src),
	    0);
	_cleanup_free_ char *id = id_of(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	_cleanup_free_ char *full = tu_path(dirs.tmp, "full");
	cr_assert_eq(mkdir(full, 0755), 0);
	cr_assert_eq(tu_sh("mount -t tmpfs -o size=2m tmpfs %s", full), 0);
	static const char *const comps[] = {"gzip", "zstd", "none"};
	for (size_t i = 0; i < 3; i++) {
		char d[4200];
		snprintf(d, sizeof d, "oci:%s/%s:t", full, comps[i]);
		tu_run r = tu_lf(dirs.store, "save", id, "-o", d, "--compression", comps[i], NULL);
		cr_assert_eq(r.status, 1, "%s: %s", comps[i], r.err);
		cr_assert(strstr(r.err, "writing the blob: No space left on device"), "%s: %s",
			  comps[i], r.err);
		tu_run_free(&r);
		cr_assert_eq(tu_sh("ls -A %s/%s/blobs/sha256 | grep -q .", full, comps[i]), 1,
			     "%s left a file in blobs/sha256", comps[i]);
	}
	cr_assert_eq(tu_sh("umount %s", full), 0);
}

/* One line per entry of the tree at ROOT with every attribute (hashutil.h). */
static char *tree_text(const char *root)
{
	return tu_tree_attrs(root);
}

/* tree_text of layer ID as `layerfs mount` shows it. */
static char *mounted_tree(const char *id)
{
	_cleanup_free_ char *mp = tu_path(dirs.tmp, "view");
	return tu_mounted_attrs(dirs.store, id, mp);
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

static tu_registry reg;
static char *registry = reg.addr;
static const char *registry_ip = "127.0.0.1"; /* where the next registry_start listens */

static void registry_stop(void)
{
	tu_registry_stop(&reg);
	teardown();
}

/* Starts docker-registry on a free port of REGISTRY_IP (registry.h). */
static void registry_start(const char *config)
{
	tu_registry_start(&reg, dirs.tmp, registry_ip, config);
}

static void registry_setup(void)
{
	setup();
	registry_ip = "127.0.0.1";
	registry_start("");
}

TestSuite(oci_registry, .init = registry_setup, .fini = registry_stop);

static int registry_requests(const char *text)
{
	return tu_registry_requests(&reg, text);
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
	/* another repository of the registry lacks the blobs: the layers' are mounted from the
	 * first (nothing sent), the config is uploaded */
	char other[256];
	snprintf(other, sizeof other, "%s/layerfs/other:v1", registry);
	_cleanup_free_ char *m3 = tu_ok(tu_lf(dirs.store, "push", top, other, NULL));
	cr_assert_str_eq(m3, m1);
	cr_assert_eq(registry_uploads(), uploads + 3);
	cr_assert_eq(registry_requests("\"POST /v2/layerfs/other/blobs/uploads/?mount=sha256:"), 2);
	cr_assert_eq(registry_requests("&from=layerfs%2Ftest HTTP/1.1\" 201 "), 2);
	cr_assert_eq(registry_requests("\"PUT /v2/layerfs/other/blobs/uploads/"), 1);
	cr_assert_eq(registry_requests("\"PATCH /v2/"), 0);
	cr_assert_eq(tu_sh("skopeo inspect -n --tls-verify=false docker://%s >/dev/null", other),
		     0);
	/* pulled into another store, the layers remember where from: a push of them to a third
	 * repository mounts their blobs from there */
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *pulled = id_of(tu_ok(tu_lf(store2, "pull", other, NULL)));
	cr_assert_str_eq(pulled, top);
	char third[256];
	snprintf(third, sizeof third, "%s/layerfs/third:v1", registry);
	_cleanup_free_ char *m4 = tu_ok(tu_lf(store2, "push", top, third, NULL));
	cr_assert_str_eq(m4, m1);
	cr_assert_eq(registry_requests("&from=layerfs%2Fother HTTP/1.1\" 201 "), 2);
	cr_assert_eq(registry_requests("\"PUT /v2/layerfs/third/blobs/uploads/"), 1);
	/* a note gone stale (that repository lost the layers): the registry opens an upload
	 * instead of mounting, and the blob goes up through it */
	cr_assert_eq(tu_sh("rm -r %s/registry/docker/registry/v2/repositories/layerfs/other/_layers",
			   dirs.tmp),
		     0);
	char fourth[256];
	snprintf(fourth, sizeof fourth, "%s/layerfs/fourth:v1", registry);
	_cleanup_free_ char *m5 = tu_ok(tu_lf(dirs.store, "push", top, fourth, NULL));
	cr_assert_str_eq(m5, m1);
	cr_assert_eq(registry_requests("&from=layerfs%2Fother HTTP/1.1\" 202 "), 2);
	/* the blobs were known by their notes, not built: after the first 202 they are built and
	 * that blob goes up through an upload of its own; the second layer's through the upload
	 * its 202 opened; the config's through another */
	cr_assert_eq(registry_requests("\"POST /v2/layerfs/fourth/blobs/uploads/ "), 2);
	cr_assert_eq(registry_requests("\"PUT /v2/layerfs/fourth/blobs/uploads/"), 3);

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

static char *front_start(const char *user_pass, int fails, const char *mode)
{
	return tu_front_start(&reg, user_pass, fails, mode);
}

Test(oci_registry, a_registry_that_is_down_is_tried_four_times_then_named)
{
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/down/img:v1", registry);
	tu_registry_stop(&reg);
	double t0 = tu_now();
	tu_run r = tu_lf(dirs.store, "push", top, name, NULL);
	double took = tu_now() - t0;
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
	_cleanup_free_ char *front = front_start("alice:s3cret", 0, "stall");
	char name[256];
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	const char *env[] = {"LAYERFS_REGISTRY_TIMEOUT=1", "LAYERFS_REGISTRY_RETRIES=1", NULL};
	double t0 = tu_now();
	tu_run r = tu_lf_env(env, dirs.store, "pull", name, NULL);
	double took = tu_now() - t0;
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

	_cleanup_free_ char *front = front_start("alice:s3cret", 3, NULL);
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	_cleanup_free_ char *good = auth_file_for(front, "front.json", "alice:s3cret");
	char e_file[4200];
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", good);
	const char *env[] = {e_file, NULL};
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	double t0 = tu_now();
	_cleanup_free_ char *pulled = id_of(tu_ok(tu_lf_env(env, store2, "pull", name, NULL)));
	double took = tu_now() - t0;
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
	front = front_start("alice:s3cret", 100, NULL);
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
	front = front_start("alice:s3cret", 0, NULL);
	snprintf(name, sizeof name, "%s/up/img:v1", front);
	_cleanup_free_ char *bad = auth_file_for(front, "front3.json", "alice:nope");
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", bad);
	tu_fails(tu_lf_env(env, store2, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'http://%s/token': HTTP 401: bad credentials for the token "
		 "(registry %s, as user 'alice')\n",
		 name, front, front);
}

/* An image of N layers (umoci; layer K adds the file "K") copied by skopeo into the registry
 * as REPO:t; its layout stays in the test's directory as REPO-img. */
static void layered_image(const char *repo, int n)
{
	need_tool("skopeo");
	need_tool("umoci");
	cr_assert_eq(tu_sh("cd %s && umoci init --layout %s-img && umoci new --image %s-img:t && "
			   "for k in $(seq %d); do mkdir -p l$k && echo $k > l$k/$k && "
			   "umoci insert --image %s-img:t l$k / >/dev/null || exit 1; done && "
			   "skopeo copy -q --dest-tls-verify=false oci:%s-img:t docker://%s/%s:t",
			   dirs.tmp, repo, repo, n, repo, repo, registry, repo),
		     0);
}

/* The digest of layer K of the image REF (REPO:TAG) in the registry (heap). */
static char *layer_digest(const char *ref, int k)
{
	_cleanup_free_ char *out = tu_path(dirs.tmp, "digest.txt");
	cr_assert_eq(tu_sh("skopeo inspect --raw --tls-verify=false docker://%s/%s | "
			   "jq -jr '.layers[%d].digest' > %s",
			   registry, ref, k, out),
		     0);
	char *d = tu_read(dirs.tmp, "digest.txt");
	cr_assert_eq(strlen(d), 71, "'%s'", d);
	return d;
}

Test(oci_registry, layer_blobs_download_a_few_at_once_and_the_first_failure_is_named)
{
	layered_image("many", 5);
	char src[4200], name[256];
	snprintf(src, sizeof src, "oci:%s/many-img:t", dirs.tmp);
	_cleanup_free_ char *loaded = tu_ok(tu_lf(dirs.store, "--json", "load", src, NULL));
	/* behind a front that holds each blob GET 400 ms and logs how many were in flight */
	_cleanup_free_ char *front = front_start("alice:s3cret", 0, "delay=400");
	_cleanup_free_ char *auth = auth_file_for(front, "front.json", "alice:s3cret");
	char e_file[4200];
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", auth);
	const char *env[] = {e_file, NULL};
	snprintf(name, sizeof name, "%s/many:t", front);
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *pulled = tu_ok(tu_lf_env(env, store2, "--json", "pull", name, NULL));
	cr_assert_str_eq(pulled, loaded);
	_cleanup_free_ char *log = tu_read(dirs.tmp, "front-1.log");
	/* one at a time would never log 2; the bound is 3 */
	cr_assert(tu_has_line(log, "blob GETs at once: 2"), "%s", log);
	cr_assert(!tu_has_line(log, "blob GETs at once: 4"), "%s", log);
	int gets = 0;
	for (const char *p = log; (p = strstr(p, "GET /v2/many/blobs/sha256:")); p++)
		gets++;
	cr_assert_eq(gets, 6, "a config and five layers: %s", log);

	/* the registry lost the data of layer 3 of 5: that blob is named, nothing is kept */
	_cleanup_free_ char *lost = layer_digest("many:t", 2);
	cr_assert_eq(tu_sh("rm %s/registry/docker/registry/v2/blobs/sha256/%.2s/%s/data", dirs.tmp,
			   lost + 7, lost + 7),
		     0);
	_cleanup_free_ char *store3 = tu_path(dirs.tmp, "store3");
	tu_write(dirs.src, "f", "x");
	free(tu_ok(tu_lf(store3, "import", dirs.src, NULL)));
	_cleanup_free_ char *before = tu_store_state(store3);
	tu_fails(tu_lf_env(env, store3, "pull", name, NULL), 1,
		 "layerfs: pull '%s': '%s': HTTP 404: blob unknown to registry\n", name, lost);
	_cleanup_free_ char *after = tu_store_state(store3);
	cr_assert_str_eq(after, before);
}

/* The sum of N in the "+N bytes" of the lines of LOG that start with PREFIX. */
static long logged_bytes(const char *log, const char *prefix)
{
	long sum = 0;
	for (const char *p = log; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *eol = strchr(p, '\n'), *plus = strstr(p, " +");
		if (strncmp(p, prefix, strlen(prefix)) == 0 && plus && (!eol || plus < eol))
			sum += strtol(plus + 2, NULL, 10);
	}
	return sum;
}

/* The image NAME read back by skopeo (which checks every digest) into the layout copy:TAG and
 * unpacked by umoci: its file "big" is the one in the test's source tree. */
static void read_back_big(const char *name, const char *tag)
{
	cr_assert_eq(tu_sh("cd %s && skopeo copy -q --src-tls-verify=false docker://%s oci:copy:%s "
			   "&& umoci unpack --image copy:%s bundle-%s >/dev/null 2>&1 && "
			   "cmp bundle-%s/rootfs/big %s/big",
			   dirs.tmp, name, tag, tag, tag, tag, dirs.src),
		     0);
}

/* Pushes layer ID as REPO:v1 in chunks of 64 KiB through the Nth front of the test, started
 * in MODE; returns the front's log (heap). */
static char *push_in_chunks(const char *id, const char *repo, const char *mode, int n)
{
	_cleanup_free_ char *front = front_start("alice:s3cret", 0, mode);
	char file[64], e_file[4200], name[256];
	snprintf(file, sizeof file, "front-%d.json", n);
	_cleanup_free_ char *auth = auth_file_for(front, file, "alice:s3cret");
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", auth);
	const char *env[] = {e_file, "LAYERFS_REGISTRY_CHUNK=65536", NULL};
	snprintf(name, sizeof name, "%s/%s:v1", front, repo);
	free(tu_ok(tu_lf_env(env, dirs.store, "push", id, name, NULL)));
	snprintf(file, sizeof file, "front-%d.log", n);
	return tu_read(dirs.tmp, file);
}

Test(oci_registry, a_blob_larger_than_a_chunk_goes_up_in_chunks_and_a_cut_chunk_resumes)
{
	need_tool("skopeo");
	need_tool("umoci");
	cr_assert_eq(tu_sh("mkdir -p %s && head -c 300000 /dev/urandom > %s/big", dirs.src, dirs.src),
		     0);
	_cleanup_free_ char *id = id_of(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	/* the second PATCH reaches the registry half sent, and its connection drops */
	_cleanup_free_ char *log = push_in_chunks(id, "big", "cut=2", 1);
	char name[256];
	cr_assert(tu_matches("\nPOST /v2/big/blobs/uploads/ 202\n"
			     "PATCH /v2/big/blobs/uploads/[^ ]+ 202 \\+65536 bytes\n"
			     "PATCH /v2/big/blobs/uploads/[^ ]+ cut \\+32768 bytes\n"
			     "GET /v2/big/blobs/uploads/[^ ]+ 204\n"
			     "PATCH /v2/big/blobs/uploads/[^ ]+ 202 \\+65536 bytes\n"
			     "(PATCH /v2/big/blobs/uploads/[^ ]+ 202 \\+[0-9]+ bytes\n)+"
			     "PUT /v2/big/blobs/uploads/[^ ]+digest=sha256:[0-9a-f]{64} 201\n",
			     log),
		  "%s", log);
	/* each byte of the layer went once: from where the registry said it stood */
	snprintf(name, sizeof name, "%s/big:v1", registry);
	_cleanup_free_ char *size_file = tu_path(dirs.tmp, "size.txt");
	cr_assert_eq(tu_sh("skopeo inspect --raw --tls-verify=false docker://%s | "
			   "jq -jr '.layers[0].size' > %s",
			   name, size_file),
		     0);
	_cleanup_free_ char *size = tu_read(dirs.tmp, "size.txt");
	cr_assert_gt(atol(size), 3 * 65536, "the layer is %s bytes", size);
	cr_assert_eq(logged_bytes(log, "PATCH "), atol(size), "%s", log);
	/* the config fits in a chunk: one PUT with its bytes */
	cr_assert(tu_matches("\nPUT /v2/big/blobs/uploads/[^ ]+digest=sha256:[0-9a-f]{64} 201 "
			     "\\+[0-9]+ bytes\n",
			     log),
		  "%s", log);
	read_back_big(name, "t");

	/* a registry that loses the upload a cut chunk belonged to (as the reference registry
	 * does): a new upload session, from the first byte */
	_cleanup_free_ char *log2 = push_in_chunks(id, "big2", "lose=2", 2);
	cr_assert(tu_matches("\nPOST /v2/big2/blobs/uploads/ 202\n"
			     "PATCH /v2/big2/blobs/uploads/[^ ]+ 202 \\+65536 bytes\n"
			     "PATCH /v2/big2/blobs/uploads/[^ ]+ cut \\+32768 bytes\n"
			     "GET /v2/big2/blobs/uploads/[^ ]+ 404\n"
			     "POST /v2/big2/blobs/uploads/ 202\n"
			     "(PATCH /v2/big2/blobs/uploads/[^ ]+ 202 \\+[0-9]+ bytes\n)+"
			     "PUT /v2/big2/blobs/uploads/[^ ]+digest=sha256:[0-9a-f]{64} 201\n",
			     log2),
		  "%s", log2);
	cr_assert_eq(logged_bytes(log2, "PATCH "), 65536 + 32768 + atol(size), "%s", log2);
	snprintf(name, sizeof name, "%s/big2:v1", registry);
	read_back_big(name, "t2");

	/* a registry that keeps refusing the chunks: each try asks where the upload stands, then
	 * the blob is named with the registry's words and the number of tries */
	_cleanup_free_ char *busy = front_start("alice:s3cret", 0, "busy-uploads");
	_cleanup_free_ char *auth3 = auth_file_for(busy, "front-busy.json", "alice:s3cret");
	char e_file[4200];
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", auth3);
	const char *env3[] = {e_file, "LAYERFS_REGISTRY_CHUNK=65536", "LAYERFS_REGISTRY_RETRIES=1",
			      NULL};
	snprintf(name, sizeof name, "%s/big3:v1", busy);
	_cleanup_free_ char *layer = layer_digest("big:v1", 0);
	tu_fails(tu_lf_env(env3, dirs.store, "push", id, name, NULL), 1,
		 "layerfs: push '%s' to '%s': '%s': HTTP 503: uploads are paused (2 tries)\n", id,
		 name, layer);
	_cleanup_free_ char *log3 = tu_read(dirs.tmp, "front-3.log");
	cr_assert(tu_matches("\nPOST /v2/big3/blobs/uploads/ 202\n"
			     "PATCH /v2/big3/blobs/uploads/[^ ]+ 503\n"
			     "GET /v2/big3/blobs/uploads/[^ ]+ 204\n"
			     "PATCH /v2/big3/blobs/uploads/[^ ]+ 503\n$",
			     log3),
		  "%s", log3);

	const char *bad[] = {"LAYERFS_REGISTRY_CHUNK=0", NULL};
	snprintf(name, sizeof name, "%s/big3:v1", registry);
	tu_fails(tu_lf_env(bad, dirs.store, "push", id, name, NULL), 1,
		 "layerfs: push '%s' to '%s': 'LAYERFS_REGISTRY_CHUNK': '0' is not a whole number "
		 "from 1 to 9223372036854775807\n",
		 id, name);
}

/* The final lines a terminal shows for the blobs of image NAME (as the registry has it) in the
 * order WHICH ("layers,config" or "config,layers"): the cursor taken up to the first blob's
 * line, then "blob HEX12  SIZE  done" for each (heap). */
static char *final_blob_lines(const char *name, const char *which)
{
	_cleanup_free_ char *out = tu_path(dirs.tmp, "blob-lines.txt");
	const char *order = strcmp(which, "config,layers") == 0 ? "(.config, .layers[])"
								: "(.layers[], .config)";
	cr_assert_eq(tu_sh("skopeo inspect --raw --tls-verify=false docker://%s | jq -r '%s | "
			   "\"\\(.digest[7:19]) \\(.size)\"' > %s",
			   name, order, out),
		     0);
	_cleanup_free_ char *list = tu_read(dirs.tmp, "blob-lines.txt");
	char *text = NULL;
	size_t len = 0, n = 0;
	FILE *f = open_memstream(&text, &len);
	char hex[13];
	long size;
	for (const char *p = list; sscanf(p, "%12s %ld", hex, &size) == 2; p = strchr(p, '\n') + 1) {
		cr_assert_lt(size, 1000, "small blobs only: their sizes print as bytes");
		fprintf(f, "\r\033[Kblob %s  %ld B  done\n", hex, size);
		n++;
	}
	fclose(f);
	char *ret;
	cr_assert(asprintf(&ret, "\033[%zuA%s", n, text) > 0);
	free(text);
	return ret;
}

static bool ends_with(const char *text, const char *end)
{
	size_t n = strlen(text), k = strlen(end);
	return n >= k && strcmp(text + n - k, end) == 0;
}

Test(oci_registry, push_and_pull_show_each_blob_on_a_terminal)
{
	need_tool("skopeo");
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/prog/img:v1", registry);
	static const char *const every_step[] = {"LAYERFS_PROGRESS_MS=0", NULL};
	const char *push[] = {"--root", dirs.store, "push", top, name, NULL};
	tu_run r = tu_layerfs_on(TU_PTY, TU_PTY, every_step, push);
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* the layers base first, then the config: each line left as its blob ended */
	_cleanup_free_ char *pushed = final_blob_lines(name, "layers,config");
	cr_assert(ends_with(r.err, pushed), "stderr '%s', want it to end with '%s'", r.err,
		  pushed);
	tu_run_free(&r);

	/* pull: the config, then the layers in the manifest's order however their downloads
	 * overlap (each announced "waiting" first); then load's line, erased */
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	const char *pull[] = {"--root", store2, "pull", name, NULL};
	r = tu_layerfs_on(TU_PTY, TU_PTY, every_step, pull);
	cr_assert_eq(r.status, 0, "%s", r.err);
	_cleanup_free_ char *pulled = final_blob_lines(name, "config,layers");
	char *want;
	cr_assert(asprintf(&want, "%s\r\033[K", pulled) > 0);
	cr_assert(ends_with(r.err, want), "stderr '%s', want it to end with '%s'", r.err, want);
	cr_assert(tu_matches("blob [0-9a-f]{12}  waiting\n", r.err), "%s", r.err);
	free(want);
	tu_run_free(&r);

	/* nothing when stderr is not a terminal, nor with --json */
	_cleanup_free_ char *store3 = tu_path(dirs.tmp, "store3");
	const char *pull3[] = {"--root", store3, "pull", name, NULL};
	r = tu_layerfs_on(TU_PTY, TU_PIPE, every_step, pull3);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
	_cleanup_free_ char *store4 = tu_path(dirs.tmp, "store4");
	const char *pull4[] = {"--root", store4, "--json", "pull", name, NULL};
	r = tu_layerfs_on(TU_PTY, TU_PTY, every_step, pull4);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);

	/* a blob in chunks: while it moves, its bytes so far of all and the rate */
	cr_assert_eq(tu_sh("mkdir -p %s/big && head -c 300000 /dev/urandom > %s/big/f", dirs.tmp,
			   dirs.tmp),
		     0);
	_cleanup_free_ char *bigdir = tu_path(dirs.tmp, "big");
	_cleanup_free_ char *big = id_of(tu_ok(tu_lf(dirs.store, "import", bigdir, NULL)));
	snprintf(name, sizeof name, "%s/prog/big:v1", registry);
	static const char *const chunks[] = {"LAYERFS_PROGRESS_MS=0", "LAYERFS_REGISTRY_CHUNK=65536",
					     NULL};
	const char *push_big[] = {"--root", dirs.store, "push", big, name, NULL};
	r = tu_layerfs_on(TU_PTY, TU_PTY, chunks, push_big);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(tu_matches("\r\033\\[Kblob [0-9a-f]{12}  [0-9.]+ kB / 30[0-9] kB  [0-9.]+ [kMG]?B/s\n",
			     r.err),
		  "%s", r.err);
	cr_assert(tu_matches("\r\033\\[Kblob [0-9a-f]{12}  30[0-9] kB  done\n$", r.err) ||
		      tu_matches("\r\033\\[Kblob [0-9a-f]{12}  30[0-9] kB  done\n"
				 "\r\033\\[Kblob [0-9a-f]{12}  [0-9]+ B  done\n$",
				 r.err),
		  "%s", r.err);
	tu_run_free(&r);
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

/* Writes the credential helper docker-credential-NAME into the directory BIN: a shell script
 * that keeps what it was given on its standard input in BIN/asked-NAME and runs BODY. */
static void cred_helper(const char *bin, const char *name, const char *body)
{
	_cleanup_free_ char *path = NULL;
	cr_assert(asprintf(&path, "%s/docker-credential-%s", bin, name) > 0);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\n[ \"$1\" = get ] || exit 3\ncat > %s/asked-%s\n%s\n", bin, name,
		body);
	fclose(f);
	cr_assert_eq(chmod(path, 0755), 0);
}

Test(oci_registry_auth, credential_helpers_named_by_credhelpers_and_credsstore_log_in)
{
	_cleanup_free_ char *top = make_chain(dirs.store);
	char name[256];
	snprintf(name, sizeof name, "%s/sec/img:v1", registry);
	_cleanup_free_ char *bin = tu_path(dirs.tmp, "bin");
	_cleanup_free_ char *home = tu_path(dirs.tmp, "home");
	cr_assert_eq(tu_sh("mkdir -p %s %s/.docker", bin, home), 0);
	char answer[512];
	snprintf(answer, sizeof answer,
		 "if [ \"$(cat %s/asked-good)\" = %s ]; then echo '{\"ServerURL\":\"%s\","
		 "\"Username\":\"alice\",\"Secret\":\"s3cret\"}'; else echo 'credentials not "
		 "found in native keychain'; exit 1; fi",
		 bin, registry, registry);
	cred_helper(bin, "good", answer);
	cred_helper(bin, "none", "echo 'credentials not found in native keychain'; exit 1");
	cred_helper(bin, "broken", "echo 'the keychain is locked'; exit 1");
	char e_path[8192], e_home[4200], e_file[4200];
	snprintf(e_path, sizeof e_path, "PATH=%s:%s", bin, getenv("PATH"));
	snprintf(e_home, sizeof e_home, "HOME=%s", home);
	const char *env[] = {e_path, e_home, "DOCKER_CONFIG=", "XDG_RUNTIME_DIR=", e_file, NULL};
	_cleanup_free_ char *auth = tu_path(dirs.tmp, "auth.json");

	/* credHelpers in containers' auth.json: the helper is asked for this registry */
	cr_assert_eq(tu_sh("printf '{\"credHelpers\": {\"other:1\": \"broken\", \"%s\": "
			   "\"good\"}}' > %s",
			   registry, auth),
		     0);
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", auth);
	_cleanup_free_ char *m = tu_ok(tu_lf_env(env, dirs.store, "push", top, name, NULL));
	cr_assert_eq(strlen(m), 72, "the manifest digest: '%s'", m);
	_cleanup_free_ char *asked = tu_read(bin, "asked-good");
	cr_assert_str_eq(asked, registry);

	/* credsStore in docker's config.json, for every registry */
	cr_assert_eq(tu_sh("printf '{\"auths\": {\"%s\": {}}, \"credsStore\": \"good\"}' > "
			   "%s/.docker/config.json",
			   registry, home),
		     0);
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=");
	_cleanup_free_ char *store2 = tu_path(dirs.tmp, "store2");
	_cleanup_free_ char *p1 = id_of(tu_ok(tu_lf_env(env, store2, "pull", name, NULL)));
	cr_assert_str_eq(p1, top);

	/* credsStore counts in docker's file only; a helper without an entry gives nothing; one
	 * that fails is named with its words; one that is missing is named with the file */
	cr_assert_eq(tu_sh("printf '{\"credsStore\": \"good\"}' > %s && "
			   "printf '{\"credsStore\": \"none\"}' > %s/.docker/config.json",
			   auth, home),
		     0);
	snprintf(e_file, sizeof e_file, "REGISTRY_AUTH_FILE=%s", auth);
	_cleanup_free_ char *store3 = tu_path(dirs.tmp, "store3");
	tu_fails(tu_lf_env(env, store3, "pull", name, NULL), 1,
		 "layerfs: pull '%s': 'v1': HTTP 401: authentication required (registry %s, "
		 "no credentials)\n",
		 name, registry);
	/* (the message after "layerfs: pull 'NAME': ") */
	const char *const helpers[] = {"broken", "gone", "../x"};
	char want[3][2048];
	snprintf(want[0], sizeof want[0],
		 "'docker-credential-broken': failed for %s: the keychain is locked", registry);
	snprintf(want[1], sizeof want[1],
		 "'docker-credential-gone': cannot run it (named by %s for %s): No such file or "
		 "directory",
		 auth, registry);
	snprintf(want[2], sizeof want[2], "'%s': '../x' is not a credential helper's name", auth);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(helpers); i++) {
		cr_assert_eq(tu_sh("printf '{\"credHelpers\": {\"%s\": \"%s\"}}' > %s",
				   registry, helpers[i], auth),
			     0);
		tu_fails(tu_lf_env(env, store3, "pull", name, NULL), 1,
			 "layerfs: pull '%s': %s\n", name, want[i]);
	}
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
	registry_ip = "127.0.0.2";
	tu_registry_start_tls(&reg, dirs.tmp, registry_ip);
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
