/* The exec cache in a registry (docs/cache.md), against docker-registry on 127.0.0.1: two
 * stores that loaded the same image share results; every failure of the registry (down, 500,
 * slow, a tampered blob or record) warns and runs locally; cache ls and prune; eight stores
 * publishing one result at once. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/store.h"
#include "registry.h"
#include "testutil.h"

static tu_dirs dirs;
static tu_registry reg;
static char cache[128]; /* the cache repository: REGISTRY/team/cache */
static char base[LYR_ID_MAX];

/* A busybox root imported into store A ("a"), saved as an image and loaded into store B
 * ("b"): both have it under the same ID. */
static void setup(void)
{
	tu_dirs_init(&dirs);
	tu_registry_start(&reg, dirs.tmp, "127.0.0.1", "");
	snprintf(cache, sizeof cache, "%s/team/cache", reg.addr);
	tu_need_busybox();
	const char *applets[] = {"sh", "echo", "mkdir", "touch", "cat", "true"};
	tu_busybox_root(dirs.src, applets, LYR_ARRAY_SIZE(applets),
			"root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n");
	_cleanup_free_ char *a = tu_path(dirs.tmp, "a"), *b = tu_path(dirs.tmp, "b");
	_cleanup_free_ char *id = tu_ok(tu_lf(a, "import", dirs.src, NULL));
	snprintf(base, sizeof base, "%.71s", id);
	char img[4200];
	snprintf(img, sizeof img, "oci:%s/img:v1", dirs.tmp);
	free(tu_ok(tu_lf(a, "save", base, "-o", img, NULL)));
	_cleanup_free_ char *loaded = tu_ok(tu_lf(b, "load", img, NULL));
	cr_assert_eq(strncmp(loaded, base, 71), 0, "B loaded %s, A has %s", loaded, base);
}

static void teardown(void)
{
	tu_registry_stop(&reg);
	tu_umount_below(dirs.tmp);
	tu_dirs_fini(&dirs);
}

TestSuite(oci_cache, .init = setup, .fini = teardown, .timeout = 240);

static char *store(const char *name)
{
	return tu_path(dirs.tmp, name);
}

/* The op every test runs: writes /out/f (WHAT in it) and a directory, says "ran" on
 * stderr (stdout is the JSON's); times fixed, so every store gets the same output layers. */
#define OP_MOUNT "type=bind,target=/out,output"
static tu_run exec_op(const char *const *env, const char *st, const char *flag1,
		      const char *name1, const char *flag2, const char *name2, const char *what)
{
	char script[512];
	snprintf(script, sizeof script,
		 "echo ran >&2; echo %s > /out/f && mkdir /out/d && echo g > /out/d/g && "
		 "touch -d @0 /out/f /out/d/g /out/d /out",
		 what);
	const char *argv[16];
	size_t n = 0;
	argv[n++] = "--json";
	argv[n++] = "exec";
	if (flag1) {
		argv[n++] = flag1;
		argv[n++] = name1;
	}
	if (flag2) {
		argv[n++] = flag2;
		argv[n++] = name2;
	}
	argv[n++] = "--mount";
	argv[n++] = OP_MOUNT;
	argv[n++] = base;
	argv[n++] = "sh";
	argv[n++] = "-c";
	argv[n++] = script;
	argv[n] = NULL;
	const char *full[20] = {"--root", st};
	memcpy(full + 2, argv, (n + 1) * sizeof *argv);
	return tu_layerfs(env, full);
}

/* RUN's JSON with "cached":false made true: what the same result answered from a cache says. */
static char *as_cached(const char *json)
{
	char *c = strdup(json);
	char *p = strstr(c, "\"cached\":false");
	cr_assert(p, "%s", json);
	memcpy(p, "\"cached\":true,", 14);
	memmove(p + 13, p + 14, strlen(p + 14) + 1);
	return c;
}

/* The layer of output TARGET ("/" or "/out") in an exec's JSON (heap). */
static char *output_layer(const char *json, const char *target)
{
	char pat[64];
	snprintf(pat, sizeof pat, "{\"target\":\"%s\",\"layer\":\"", target);
	const char *p = strstr(json, pat);
	cr_assert(p, "no output %s in %s", target, json);
	return strndup(p + strlen(pat), 71);
}

/* tu_tree_detail of layer ID of store ST as a read-only mount shows it. */
static char *layer_tree(const char *st, const char *id)
{
	_cleanup_free_ char *mp = tu_path(dirs.tmp, "view");
	mkdir(mp, 0755);
	free(tu_ok(tu_lf(st, "mount", id, mp, NULL)));
	char *seen = tu_tree_detail(mp);
	free(tu_ok(tu_lf(st, "umount", mp, NULL)));
	return seen;
}

Test(oci_cache, two_stores_compute_the_same_key_for_the_same_op_on_a_loaded_image)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	tu_run ra = exec_op(NULL, a, NULL, NULL, NULL, NULL, "one");
	tu_run rb = exec_op(NULL, b, NULL, NULL, NULL, NULL, "one");
	cr_assert_eq(ra.status, 0, "%s", ra.err);
	cr_assert_eq(rb.status, 0, "%s", rb.err);
	_cleanup_free_ char *ka = tu_json_field(ra.out, "cache_key");
	_cleanup_free_ char *kb = tu_json_field(rb.out, "cache_key");
	cr_assert(tu_matches("^sha256:[0-9a-f]{64}$", ka), "%s", ka);
	cr_assert_str_eq(kb, ka);
	/* the op is deterministic: the same outputs too */
	cr_assert_str_eq(rb.out, ra.out);
	tu_run_free(&ra);
	tu_run_free(&rb);
}

Test(oci_cache, a_result_published_by_one_store_is_answered_in_another_as_a_local_hit)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	tu_run ra = exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one");
	cr_assert_eq(ra.status, 0, "%s", ra.err);
	cr_assert_str_eq(ra.err, "ran\n");
	/* blobs first, the manifest last */
	cr_assert_eq(tu_registry_requests(&reg, "\"PUT /v2/team/cache/manifests/lfc-"), 1);
	_cleanup_free_ char *key = tu_json_field(ra.out, "cache_key");
	char tag[128];
	snprintf(tag, sizeof tag, "\"GET /v2/team/cache/manifests/lfc-%s", key + 7);

	int gets = tu_registry_requests(&reg, "\"GET /v2/team/cache/blobs/");
	tu_run rb = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	cr_assert_eq(rb.status, 0, "%s", rb.err);
	cr_assert_str_eq(rb.err, "", "the command did not run, nothing to warn about");
	_cleanup_free_ char *want = as_cached(ra.out);
	cr_assert_str_eq(rb.out, want);
	/* the config and the two output layers; B has the base layer */
	cr_assert_eq(tu_registry_requests(&reg, "\"GET /v2/team/cache/blobs/"), gets + 3);
	const char *targets[] = {"/", "/out"};
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *id = output_layer(ra.out, targets[i]);
		_cleanup_free_ char *ta = layer_tree(a, id), *tb = layer_tree(b, id);
		cr_assert_str_eq(tb, ta, "%s", targets[i]);
	}
	/* stored locally: answered again without the registry */
	int asked = tu_registry_requests(&reg, tag);
	tu_run again = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	cr_assert_str_eq(again.out, want);
	cr_assert_eq(tu_registry_requests(&reg, tag), asked);
	tu_run_free(&again);

	/* a changed input is another key: a miss, quietly, and a run */
	tu_run miss = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "two");
	cr_assert_eq(miss.status, 0, "%s", miss.err);
	cr_assert_str_eq(miss.err, "ran\n");
	_cleanup_free_ char *cached = tu_json_field(miss.out, "cached");
	cr_assert_str_eq(cached, "false");
	_cleanup_free_ char *k2 = tu_json_field(miss.out, "cache_key");
	cr_assert_str_neq(k2, key);
	tu_run_free(&miss);
	tu_run_free(&ra);
	tu_run_free(&rb);
}
