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
#include "hashutil.h"
#include "registry.h"
#include "testutil.h"

static tu_dirs dirs;
static tu_registry reg;
static char cache[128]; /* the cache repository: REGISTRY/team/cache */
static char base[LYR_ID_MAX];

/* A busybox root imported into store A ("a"), saved as an image DIRS.tmp/img:v1 and loaded
 * into store B ("b"): both have it under the same ID.  The registry is started already. */
static void stores_setup(void)
{
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

static void setup(void)
{
	tu_dirs_init(&dirs);
	tu_registry_start(&reg, dirs.tmp, "127.0.0.1", "");
	stores_setup();
}

/* The same with the registry on 127.0.0.2 speaking TLS, its certificate self-signed. */
static void tls_setup(void)
{
	tu_dirs_init(&dirs);
	tu_registry_start_tls(&reg, dirs.tmp, "127.0.0.2");
	stores_setup();
}

static void teardown(void)
{
	tu_registry_stop(&reg);
	tu_umount_below(dirs.tmp);
	tu_dirs_fini(&dirs);
}

TestSuite(oci_cache, .init = setup, .fini = teardown, .timeout = 240);
TestSuite(oci_cache_tls, .init = tls_setup, .fini = teardown, .timeout = 240);

static char *store(const char *name)
{
	return tu_path(dirs.tmp, name);
}

/* The op every test runs: writes /out/f (WHAT in it) and a directory, says "ran" on
 * stderr (stdout is the JSON's); times fixed, so every store gets the same output layers.
 * FLAG1 NAME1 and FLAG2 NAME2 (NULL: none) are options before it; a NULL NAME gives FLAG
 * alone ("--tls-verify=false"). */
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
	const char *opts[] = {flag1, name1, flag2, name2};
	for (size_t i = 0; i < 4; i += 2)
		if (opts[i]) {
			argv[n++] = opts[i];
			if (opts[i + 1])
				argv[n++] = opts[i + 1];
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

/* RUN's JSON as a hit of the same result says it: "cached" true, "backend" null (a hit mounts
 * no view) and no "fallback". */
static char *as_cached(const char *json)
{
	char *c = strdup(json);
	char *p = strstr(c, "\"cached\":false");
	cr_assert(p, "%s", json);
	memcpy(p, "\"cached\":true,", 14);
	memmove(p + 13, p + 14, strlen(p + 14) + 1);
	/* a hit mounts no view: no backend, no fallback */
	p = strstr(c, "\"backend\":\"");
	cr_assert(p, "%s", json);
	char *end = strchr(p + 11, '"') + 1;
	const char *fallback = ",\"fallback\":\"";
	if (strncmp(end, fallback, strlen(fallback)) == 0)
		end = strchr(end + strlen(fallback), '"') + 1;
	memcpy(p, "\"backend\":null", 14);
	memmove(p + 14, end, strlen(end) + 1);
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

/* tu_tree_attrs of layer ID of store ST as a read-only mount shows it. */
static char *layer_tree(const char *st, const char *id)
{
	_cleanup_free_ char *mp = tu_path(dirs.tmp, "view");
	return tu_mounted_attrs(st, id, mp);
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

Test(oci_cache, a_result_the_registry_holds_already_is_not_sent_again)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	int puts = tu_registry_requests(&reg, "\"PUT /v2/");
	int posts = tu_registry_requests(&reg, "\"POST /v2/");
	/* B runs the op itself (no --cache-from): the record found, nothing more is sent */
	tu_run rb = exec_op(NULL, b, "--cache-to", cache, NULL, NULL, "one");
	cr_assert_eq(rb.status, 0, "%s", rb.err);
	cr_assert_str_eq(rb.err, "ran\n");
	cr_assert_str_eq(rb.out, pub);
	cr_assert_eq(tu_registry_requests(&reg, "\"PUT /v2/"), puts);
	cr_assert_eq(tu_registry_requests(&reg, "\"POST /v2/"), posts);
	tu_run_free(&rb);
}

/* What a fallback looks like: the command ran (it said so), the result is its own, and it is
 * stored locally: a later --cache run answers it without any registry. */
static void ran_locally(tu_run *r, const char *st, const char *warning_re)
{
	cr_assert_eq(r->status, 0, "%s", r->err);
	cr_assert(tu_matches(warning_re, r->err), "stderr: %s", r->err);
	_cleanup_free_ char *cached = tu_json_field(r->out, "cached");
	cr_assert_str_eq(cached, "false");
	tu_run hit = exec_op(NULL, st, "--cache-from", "127.0.0.1:1/unused", NULL, NULL, "one");
	_cleanup_free_ char *want = as_cached(r->out);
	cr_assert_str_eq(hit.out, want, "%s", hit.err);
	cr_assert_str_eq(hit.err, "", "a local hit asks no registry");
	tu_run_free(&hit);
	tu_run_free(r);
}

/* Anchored regular expression for the one warning line about NAME with CAUSE_RE, after "ran". */
static char *warning(const char *dir, const char *name, const char *cause_re, const char *then)
{
	char *re;
	cr_assert(asprintf(&re,
			   "^(ran\n)?layerfs: exec: warning: cache %s '%s': %s; %s\n(ran\n)?$",
			   dir, name, cause_re, then) > 0);
	return re;
}

Test(oci_cache, a_registry_that_is_down_warns_and_the_run_goes_on_locally)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	tu_registry_stop(&reg);
	/* --cache-to after a successful run: a warning, the command's status */
	tu_run ra = exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one");
	_cleanup_free_ char *re_to =
	    warning("to", cache, "[^\n]*Couldn't connect to server \\(2 tries\\)",
		    "the result is not published");
	cr_assert(ra.status == 0 && tu_matches(re_to, ra.err), "%d %s", ra.status, ra.err);
	tu_run_free(&ra);
	/* --cache-from: a warning, then the run */
	tu_run rb = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	_cleanup_free_ char *re_from =
	    warning("from", cache, "[^\n]*Couldn't connect to server \\(2 tries\\)",
		    "continuing without it");
	ran_locally(&rb, b, re_from);
}

Test(oci_cache, a_registry_answering_500_warns_and_the_run_goes_on_locally)
{
	tu_need_fuse();
	_cleanup_free_ char *b = store("b");
	_cleanup_free_ char *front = tu_front_start(&reg, "-", 0, "500");
	char name[256];
	snprintf(name, sizeof name, "%s/team/cache", front);
	tu_run rb = exec_op(NULL, b, "--cache-from", name, NULL, NULL, "one");
	_cleanup_free_ char *re = warning("from", name,
					  "lfc-[0-9a-f]{64}: HTTP 500: the storage is broken",
					  "continuing without it");
	ran_locally(&rb, b, re);
	_cleanup_free_ char *log = tu_read(dirs.tmp, "front-1.log");
	cr_assert(tu_matches("^(GET /v2/team/cache/manifests/lfc-[0-9a-f]{64} 500\n){2}$", log),
		  "one retry, no more: %s", log);
}

Test(oci_cache, a_registry_slower_than_the_timeout_warns_and_the_run_goes_on_locally)
{
	tu_need_fuse();
	_cleanup_free_ char *b = store("b");
	_cleanup_free_ char *front = tu_front_start(&reg, "-", 0, "delay:8");
	char name[256];
	snprintf(name, sizeof name, "%s/team/cache", front);
	const char *env[] = {"LAYERFS_CACHE_TIMEOUT=1", NULL};
	double t0 = tu_now();
	tu_run rb = exec_op(env, b, "--cache-from", name, NULL, NULL, "one");
	double took = tu_now() - t0;
	char cause[256];
	snprintf(cause, sizeof cause, "%s: timed out: no progress for 1 s \\(2 tries\\)", front);
	_cleanup_free_ char *re = warning("from", name, cause, "continuing without it");
	cr_assert(took < 7, "two tries of 1 s, not one answer after 8 s: %.2f s", took);
	ran_locally(&rb, b, re);
	/* a timeout that is not a number is a cause like any other */
	const char *bad[] = {"LAYERFS_CACHE_TIMEOUT=soon", NULL};
	tu_run rc = exec_op(bad, b, "--cache-from", name, NULL, NULL, "two");
	_cleanup_free_ char *re2 = warning(
	    "from", name,
	    "LAYERFS_CACHE_TIMEOUT: 'soon' is not a whole number of seconds from 1 to 86400",
	    "continuing without it");
	cr_assert(rc.status == 0 && tu_matches(re2, rc.err), "%s", rc.err);
	tu_run_free(&rc);
}

/* The layers of store ST that a cache fetch imported (their description says so). */
static int fetched_layers(const char *st)
{
	_cleanup_free_ char *ls = tu_ok(tu_lf(st, "ls", NULL));
	int n = 0;
	for (const char *p = ls; (p = strstr(p, "exec cache from")); p++)
		n++;
	return n;
}

Test(oci_cache, a_tampered_blob_is_detected_and_nothing_fetched_stays)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	/* the /out layer's blob, as save writes it (the same bytes the cache published) */
	_cleanup_free_ char *out = output_layer(pub, "/out");
	char img[4200];
	snprintf(img, sizeof img, "oci:%s/out:v1", dirs.tmp);
	_cleanup_free_ char *saved = tu_ok(tu_lf(a, "--json", "save", out, "-o", img, NULL));
	const char *d = strstr(saved, "\"digest\":\"sha256:");
	cr_assert(d, "%s", saved);
	char hex[65];
	snprintf(hex, sizeof hex, "%.64s", d + 17);
	cr_assert_eq(tu_sh("printf tampered > %s/registry/docker/registry/v2/blobs/sha256/%.2s/%s/data",
			   dirs.tmp, hex, hex),
		     0);
	tu_run rb = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	char cause[256];
	snprintf(cause, sizeof cause,
		 "sha256:%s: the registry sent a blob that is sha256:[0-9a-f]{64}", hex);
	_cleanup_free_ char *re = warning("from", cache, cause, "continuing without it");
	ran_locally(&rb, b, re);
	/* the root's layer, fetched before the /out one failed, was removed again (the run
	 * made the same layer afresh) */
	cr_assert_eq(fetched_layers(b), 0);
}

Test(oci_cache, a_record_whose_layer_id_is_wrong_is_ignored_and_nothing_fetched_stays)
{
	tu_need_fuse();
	tu_need_tool("python3");
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	_cleanup_free_ char *key = tu_json_field(pub, "cache_key");
	_cleanup_free_ char *out = output_layer(pub, "/out");
	cr_assert_eq(tu_sh("python3 %s/tests/oci/retarget.py %s team/cache lfc-%s /out",
			   LAYERFS_SOURCE_DIR, reg.addr, key + 7),
		     0);
	tu_run rb = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	char cause[512];
	snprintf(cause, sizeof cause,
		 "sha256:[0-9a-f]{64}: the blob gives layer %s, the record says sha256:0{64}",
		 out);
	_cleanup_free_ char *re = warning("from", cache, cause, "continuing without it");
	ran_locally(&rb, b, re);
	cr_assert_eq(fetched_layers(b), 0);
}

/* The size `cache ls` gives the record of KEY: its config and layer blobs, from its manifest. */
static unsigned long long record_size(const char *key)
{
	_cleanup_free_ char *out = tu_path(dirs.tmp, "size.txt");
	cr_assert_eq(tu_sh("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "
			   "http://%s/v2/team/cache/manifests/lfc-%s | "
			   "jq '[.config.size, .layers[].size] | add' > %s",
			   reg.addr, key + 7, out),
		     0);
	_cleanup_free_ char *text = tu_read(dirs.tmp, "size.txt");
	return strtoull(text, NULL, 10);
}

Test(oci_cache, cache_ls_lists_the_records_and_prune_deletes_those_older_than_asked)
{
	tu_need_fuse();
	tu_need_tool("jq");
	tu_need_tool("curl");
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *one = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	_cleanup_free_ char *two = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "two"));
	_cleanup_free_ char *k1 = tu_json_field(one, "cache_key"), *k2 = tu_json_field(two, "cache_key");
	_cleanup_free_ char *ls = tu_ok(tu_lf(a, "--json", "cache", "ls", cache, NULL));
	const char *keys[] = {k1, k2};
	for (size_t i = 0; i < 2; i++) {
		char re[512];
		snprintf(re, sizeof re,
			 "\\{\"key\":\"%s\",\"digest\":\"sha256:[0-9a-f]{64}\",\"created\":\"20[0-9]{2}-"
			 "[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:00Z\",\"age_seconds\":[0-9]+,\"size\":%llu\\}",
			 keys[i], record_size(keys[i]));
		cr_assert(tu_matches(re, ls), "%s in %s", re, ls);
	}
	cr_assert(tu_matches("^\\{\"entries\":\\[\\{[^]]*\\},\\{[^]]*\\}\\]\\}\n$", ls), "%s", ls);
	/* for people: a header and a line each */
	_cleanup_free_ char *text = tu_ok(tu_lf(a, "cache", "ls", cache, NULL));
	cr_assert(tu_matches("^KEY +CREATED +AGE +SIZE\n(sha256:[0-9a-f]{12}  20[-0-9]{8} "
			     "[0-9:]{8} +[0-9]+[smhd] +[0-9.]+ [kM]?B\n){2}$",
			     text),
		  "%s", text);

	_cleanup_free_ char *none =
	    tu_ok(tu_lf(a, "--json", "cache", "prune", cache, "--older-than", "1h", NULL));
	cr_assert_str_eq(none, "{\"removed\":[],\"kept\":2}\n");
	_cleanup_free_ char *all =
	    tu_ok(tu_lf(a, "cache", "prune", cache, "--older-than", "0s", NULL));
	char want[400];
	snprintf(want, sizeof want, "removed %s\nremoved %s\n", k1, k2);
	_cleanup_free_ char *want2 = NULL;
	cr_assert(asprintf(&want2, "removed %s\nremoved %s\n", k2, k1) > 0);
	cr_assert(strcmp(all, want) == 0 || strcmp(all, want2) == 0, "%s", all);
	_cleanup_free_ char *empty = tu_ok(tu_lf(a, "--json", "cache", "ls", cache, NULL));
	cr_assert_str_eq(empty, "{\"entries\":[]}\n");
	/* gone: another store misses, quietly, and runs */
	tu_run rb = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	cr_assert_eq(rb.status, 0, "%s", rb.err);
	cr_assert_str_eq(rb.err, "ran\n");
	tu_run_free(&rb);

	tu_fails(tu_lf(a, "cache", "prune", cache, NULL), 2,
		 "layerfs cache: prune needs --older-than DURATION\n"
		 "Try 'layerfs cache --help'.\n");
	char tagged[256];
	snprintf(tagged, sizeof tagged, "%s:v1", cache);
	tu_fails(tu_lf(a, "cache", "ls", tagged, NULL), 2,
		 "layerfs cache: '%s': a cache is a repository: REGISTRY/REPOSITORY, without a "
		 "tag\nTry 'layerfs cache --help'.\n",
		 tagged);
}

Test(oci_cache, eight_stores_publishing_one_result_at_once_leave_one_valid_record)
{
	tu_need_fuse();
	char img[4200];
	snprintf(img, sizeof img, "oci:%s/img:v1", dirs.tmp);
	for (int i = 0; i < 9; i++) { /* s0..s7 publish, s8 reads */
		char name[16];
		snprintf(name, sizeof name, "s%d", i);
		_cleanup_free_ char *st = store(name);
		free(tu_ok(tu_lf(st, "load", img, NULL)));
	}
	cr_assert_eq(tu_sh("cd %s && for i in 0 1 2 3 4 5 6 7; do "
			   "%s --root s$i --json exec --cache-to %s --mount %s %s sh -c "
			   "'echo ran >&2; echo one > /out/f && mkdir /out/d && echo g > /out/d/g && "
			   "touch -d @0 /out/f /out/d/g /out/d /out' >out$i 2>err$i & done; wait",
			   dirs.tmp, LAYERFS_BIN, cache, OP_MOUNT, base),
		     0);
	_cleanup_free_ char *first = tu_read(dirs.tmp, "out0");
	for (int i = 0; i < 8; i++) {
		char name[16];
		snprintf(name, sizeof name, "out%d", i);
		_cleanup_free_ char *out = tu_read(dirs.tmp, name);
		name[0] = 'e', name[1] = 'r', name[2] = 'r';
		_cleanup_free_ char *err = tu_read(dirs.tmp, name);
		cr_assert_str_eq(err, "ran\n", "store %d: %s", i, err);
		cr_assert_str_eq(out, first, "store %d", i);
	}
	/* one tag; its manifest was PUT at least once, and at most four times by each (the
	 * registry fails some concurrent PUTs of the same manifest: they are tried again) */
	_cleanup_free_ char *tags = tu_path(dirs.tmp, "tags");
	cr_assert_eq(tu_sh("curl -sf http://%s/v2/team/cache/tags/list > %s", reg.addr, tags), 0);
	_cleanup_free_ char *list = tu_read(dirs.tmp, "tags");
	cr_assert(tu_matches("^\\{\"name\":\"team/cache\",\"tags\":\\[\"lfc-[0-9a-f]{64}\"\\]\\}", list),
		  "%s", list);
	int puts = tu_registry_requests(&reg, "\"PUT /v2/team/cache/manifests/lfc-");
	cr_assert(puts >= 1 && puts <= 32, "%d manifest PUTs", puts);
	/* the same bytes from every publisher: one manifest (two when the eight straddled a
	 * minute, the record's one time) */
	_cleanup_free_ char *revs = tu_path(dirs.tmp, "revs");
	cr_assert_eq(tu_sh("ls %s/registry/docker/registry/v2/repositories/team/cache/_manifests/"
			   "revisions/sha256 | wc -l > %s",
			   dirs.tmp, revs),
		     0);
	_cleanup_free_ char *nrevs = tu_read(dirs.tmp, "revs");
	cr_assert(atoi(nrevs) == 1 || (atoi(nrevs) == 2 && puts >= 2), "%s manifests", nrevs);
	/* and the record is whole: a ninth store takes it */
	_cleanup_free_ char *s8 = store("s8");
	tu_run r = exec_op(NULL, s8, "--cache-from", cache, NULL, NULL, "one");
	_cleanup_free_ char *want = as_cached(first);
	cr_assert_str_eq(r.out, want, "%s", r.err);
	cr_assert_str_eq(r.err, "");
	tu_run_free(&r);
}

/* Store B gets the output layers (not the result) of PUB, an exec's JSON in store A, through
 * save and load. */
static void give_outputs(const char *a, const char *b, const char *pub)
{
	const char *targets[] = {"/", "/out"};
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *id = output_layer(pub, targets[i]);
		char img[4200];
		snprintf(img, sizeof img, "oci:%s/o%zu:v1", dirs.tmp, i);
		free(tu_ok(tu_lf(a, "save", id, "-o", img, NULL)));
		_cleanup_free_ char *got = tu_ok(tu_lf(b, "load", img, NULL));
		cr_assert_eq(strncmp(got, id, 71), 0, "%s %s", got, id);
	}
}

Test(oci_cache, a_hit_whose_layers_the_store_has_asks_for_the_manifest_only)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	give_outputs(a, b, pub);
	int blobs = tu_registry_requests(&reg, "\"GET /v2/team/cache/blobs/");
	int manifests = tu_registry_requests(&reg, "\"GET /v2/team/cache/manifests/");
	tu_run rb = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "one");
	_cleanup_free_ char *want = as_cached(pub);
	cr_assert_str_eq(rb.out, want, "%s", rb.err);
	cr_assert_str_eq(rb.err, "");
	cr_assert_eq(tu_registry_requests(&reg, "\"GET /v2/team/cache/blobs/"), blobs);
	cr_assert_eq(tu_registry_requests(&reg, "\"GET /v2/team/cache/manifests/"), manifests + 1);
	tu_run_free(&rb);
}

/* A hit answered by the manifest reads no tar: libarchive (and the libraries it pulls in) is
 * not loaded; a hit of the local cache loads no registry library either.  The dynamic
 * linker's trace (LD_DEBUG=libs, on stderr) names every library a process loads. */
Test(oci_cache, a_hit_whose_layers_the_store_has_loads_libcurl_alone)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	give_outputs(a, b, pub);
	const char *env[] = {"LD_DEBUG=libs", NULL};
	tu_run remote = exec_op(env, b, "--cache-from", cache, NULL, NULL, "one");
	_cleanup_free_ char *want = as_cached(pub);
	cr_assert_str_eq(remote.out, want, "%s", remote.err);
	cr_assert_not_null(strstr(remote.err, "libcurl.so.4"), "%s", remote.err);
	cr_assert_null(strstr(remote.err, "libarchive.so"), "%s", remote.err);
	tu_run local = exec_op(env, b, "--cache-from", cache, NULL, NULL, "one");
	cr_assert_str_eq(local.out, want, "%s", local.err);
	cr_assert_null(strstr(local.err, "libcurl.so"), "%s", local.err);
	cr_assert_null(strstr(local.err, "libarchive.so"), "%s", local.err);
	tu_run_free(&remote);
	tu_run_free(&local);
}

/* Lines of LOG that are TEXT exactly. */
static int lines(const char *log, const char *text)
{
	int n = 0;
	size_t len = strlen(text);
	for (const char *p = log; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		n += strncmp(p, text, len) == 0 && (p[len] == '\n' || p[len] == '\0');
	return n;
}

/* A publish and a fetch that takes the config and the layer blobs each make all their
 * requests on one connection (keep-alive), counted by a front that logs connections. */
Test(oci_cache, a_publish_and_a_fetch_each_use_one_connection)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *front = tu_front_start(&reg, "-", 0, "connections");
	char name[300];
	snprintf(name, sizeof name, "%s/team/cache", front);
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", name, NULL, NULL, "one"));
	_cleanup_free_ char *log = tu_read(dirs.tmp, "front-1.log");
	cr_assert_eq(lines(log, "connection"), 1, "%s", log);
	cr_assert(tu_matches("^connection\n(GET|HEAD|POST|PUT|PATCH) ", log), "%s", log);
	int published = (int)strlen(log);
	tu_run rb = exec_op(NULL, b, "--cache-from", name, NULL, NULL, "one");
	_cleanup_free_ char *want = as_cached(pub);
	cr_assert_str_eq(rb.out, want, "%s", rb.err);
	cr_assert_str_eq(rb.err, "");
	_cleanup_free_ char *log2 = tu_read(dirs.tmp, "front-1.log");
	const char *fetch = log2 + published;
	/* the manifest, the config and the two layers' blobs */
	cr_assert(tu_matches("^connection\nGET /v2/team/cache/manifests/lfc-[0-9a-f]{64} 200\n"
			     "(GET /v2/team/cache/blobs/sha256:[0-9a-f]{64} 200\n){3}$",
			     fetch),
		  "%s", fetch);
	tu_run_free(&rb);
}

/* The op of exec_op(..., "one") as a --spec file DIRS.tmp/op.json with the top-level members
 * MORE ("\"key\": value, ..."); returns its path. */
static char *spec_file(const char *more)
{
	char spec[2048];
	snprintf(spec, sizeof spec,
		 "{\"root\": \"%s\", \"args\": [\"sh\", \"-c\", \"echo ran >&2; echo one > "
		 "/out/f && mkdir /out/d && echo g > /out/d/g && touch -d @0 /out/f /out/d/g "
		 "/out/d /out\"], \"mounts\": [{\"type\": \"bind\", \"target\": \"/out\", "
		 "\"output\": true}], %s}",
		 base, more);
	tu_write(dirs.tmp, "op.json", spec);
	return tu_path(dirs.tmp, "op.json");
}

Test(oci_cache, a_spec_names_its_registries_and_a_tagged_name_is_a_usage_error)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	_cleanup_free_ char *pub = tu_ok(exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one"));
	char more[512];
	snprintf(more, sizeof more, "\"cache_from\": [\"127.0.0.1:1/nothing/here\", \"%s\"]",
		 cache);
	_cleanup_free_ char *file = spec_file(more);
	/* the first registry is down: a warning; the second answers */
	tu_run rb = tu_lf(b, "--json", "exec", "--spec", file, NULL);
	_cleanup_free_ char *want = as_cached(pub);
	cr_assert_str_eq(rb.out, want, "%s", rb.err);
	_cleanup_free_ char *re = warning("from", "127.0.0.1:1/nothing/here",
					  "[^\n]*Couldn't connect to server \\(2 tries\\)",
					  "continuing without it");
	cr_assert(tu_matches(re, rb.err), "%s", rb.err);
	tu_run_free(&rb);

	char tagged[256];
	snprintf(tagged, sizeof tagged, "%s:v1", cache);
	tu_fails(tu_lf(b, "exec", "--cache-to", tagged, base, "true", NULL), 2,
		 "layerfs exec: --cache-to '%s': a cache is a repository: REGISTRY/REPOSITORY, "
		 "without a tag\nTry 'layerfs exec --help'.\n",
		 tagged);
	tu_fails(tu_lf(b, "exec", "--cache-from", "nohost", base, "true", NULL), 2,
		 "layerfs exec: --cache-from 'nohost': expected REGISTRY/REPOSITORY[:TAG|@DIGEST]\n"
		 "Try 'layerfs exec --help'.\n");
}

Test(oci_cache, a_refused_login_warns_and_the_run_goes_on_locally)
{
	tu_need_fuse();
	_cleanup_free_ char *b = store("b");
	/* a bearer login, whose token server refuses a request without credentials */
	_cleanup_free_ char *front = tu_front_start(&reg, "alice:s3cret", 0, NULL);
	char name[256];
	snprintf(name, sizeof name, "%s/team/cache", front);
	const char *env[] = {"REGISTRY_AUTH_FILE=/nonexistent", "DOCKER_CONFIG=/nonexistent",
			     "XDG_RUNTIME_DIR=/nonexistent", "HOME=/nonexistent", NULL};
	tu_run rb = exec_op(env, b, "--cache-from", name, NULL, NULL, "one");
	char cause[512];
	snprintf(cause, sizeof cause,
		 "http://%s/token: HTTP 401: bad credentials for the token \\(registry %s, no "
		 "credentials\\)",
		 front, front);
	_cleanup_free_ char *re = warning("from", name, cause, "continuing without it");
	ran_locally(&rb, b, re);
}

/* ---- a registry with a self-signed certificate: --tls-verify=false ---- */

Test(oci_cache_tls, a_self_signed_certificate_warns_unless_tls_verify_is_false)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a"), *b = store("b");
	/* verified (the default): one warning with the cause, the command's own status */
	tu_run r0 = exec_op(NULL, a, "--cache-to", cache, NULL, NULL, "one");
	char cause[256];
	snprintf(cause, sizeof cause,
		 "%s: SSL certificate problem: self[- ]signed certificate \\(1 try\\)", reg.addr);
	_cleanup_free_ char *re_to = warning("to", cache, cause, "the result is not published");
	cr_assert(r0.status == 0 && tu_matches(re_to, r0.err), "%d %s", r0.status, r0.err);
	_cleanup_free_ char *c0 = tu_json_field(r0.out, "cached");
	cr_assert_str_eq(c0, "false");
	tu_run_free(&r0);
	cr_assert_eq(tu_registry_requests(&reg, "\"PUT /v2/team/cache/manifests/lfc-"), 0);
	/* a failing command keeps its status too */
	tu_run fail = tu_lf(a, "exec", "--cache-to", cache, base, "sh", "-c", "exit 3", NULL);
	cr_assert_eq(fail.status, 3, "%s", fail.err);
	tu_run_free(&fail);
	tu_run rf = exec_op(NULL, b, "--cache-from", cache, NULL, NULL, "two");
	_cleanup_free_ char *re_from = warning("from", cache, cause, "continuing without it");
	cr_assert(rf.status == 0 && tu_matches(re_from, rf.err), "%d %s", rf.status, rf.err);
	tu_run_free(&rf);

	/* --tls-verify=false: published (by the run that was stored locally above), and
	 * answered in another store without running */
	_cleanup_free_ char *pub =
	    tu_ok(exec_op(NULL, a, "--cache-to", cache, "--tls-verify=false", NULL, "one"));
	cr_assert_eq(tu_registry_requests(&reg, "\"PUT /v2/team/cache/manifests/lfc-"), 1);
	tu_run rb = exec_op(NULL, b, "--tls-verify=false", NULL, "--cache-from", cache, "one");
	_cleanup_free_ char *want = as_cached(pub);
	cr_assert_str_eq(rb.out, want, "%s", rb.err);
	cr_assert_str_eq(rb.err, "");
	tu_run_free(&rb);

	/* cache ls and prune: refused when verified, as push is; listed and pruned without */
	_cleanup_free_ char *key = tu_json_field(pub, "cache_key");
	char why[512];
	snprintf(why, sizeof why,
		 "^layerfs: cache ls '%s': '%s': SSL certificate problem: self[- ]signed "
		 "certificate \\(1 try\\)\n$",
		 cache, reg.addr);
	tu_run ls0 = tu_lf(a, "cache", "ls", cache, NULL);
	cr_assert(ls0.status == 1 && tu_matches(why, ls0.err), "%d %s", ls0.status, ls0.err);
	tu_run_free(&ls0);
	_cleanup_free_ char *ls =
	    tu_ok(tu_lf(a, "--json", "cache", "ls", "--tls-verify=false", cache, NULL));
	char re[512];
	snprintf(re, sizeof re, "^\\{\"entries\":\\[\\{\"key\":\"%s\",[^]]*\\}\\]\\}\n$", key);
	cr_assert(tu_matches(re, ls), "%s", ls);
	tu_run pr0 = tu_lf(a, "cache", "prune", cache, "--older-than", "0s", NULL);
	cr_assert_eq(pr0.status, 1, "%s", pr0.err);
	tu_run_free(&pr0);
	_cleanup_free_ char *pruned = tu_ok(
	    tu_lf(a, "cache", "prune", cache, "--older-than", "0s", "--tls-verify=false", NULL));
	char removed[128];
	snprintf(removed, sizeof removed, "removed %s\n", key);
	cr_assert_str_eq(pruned, removed);
}

Test(oci_cache_tls, a_spec_says_tls_verify_false_and_a_bad_value_is_a_usage_error)
{
	tu_need_fuse();
	_cleanup_free_ char *a = store("a");
	_cleanup_free_ char *pub =
	    tu_ok(exec_op(NULL, a, "--tls-verify=false", NULL, "--cache-to", cache, "one"));
	_cleanup_free_ char *want = as_cached(pub);
	char img[4200];
	snprintf(img, sizeof img, "oci:%s/img:v1", dirs.tmp);
	char more[512];
	snprintf(more, sizeof more, "\"cache_from\": [\"%s\"], \"tls_verify\": false", cache);
	_cleanup_free_ char *file = spec_file(more);
	_cleanup_free_ char *c = store("c");
	free(tu_ok(tu_lf(c, "load", img, NULL)));
	tu_run rc = tu_lf(c, "--json", "exec", "--spec", file, NULL);
	cr_assert_str_eq(rc.out, want, "%s", rc.err);
	cr_assert_str_eq(rc.err, "");
	tu_run_free(&rc);
	/* the command line's --tls-verify goes with --spec and wins over the file's */
	snprintf(more, sizeof more, "\"cache_from\": [\"%s\"], \"tls_verify\": true", cache);
	free(spec_file(more));
	_cleanup_free_ char *d = store("d");
	free(tu_ok(tu_lf(d, "load", img, NULL)));
	tu_run rd = tu_lf(d, "--json", "exec", "--tls-verify=false", "--spec", file, NULL);
	cr_assert_str_eq(rd.out, want, "%s", rd.err);
	cr_assert_str_eq(rd.err, "");
	tu_run_free(&rd);

	tu_fails(tu_lf(a, "exec", "--tls-verify=maybe", "--cache-to", cache, base, "true", NULL), 2,
		 "layerfs exec: --tls-verify takes true or false, not 'maybe'\n"
		 "Try 'layerfs exec --help'.\n");
	tu_fails(tu_lf(a, "cache", "ls", "--tls-verify=maybe", cache, NULL), 2,
		 "layerfs cache ls: --tls-verify takes true or false, not 'maybe'\n"
		 "Try 'layerfs cache --help'.\n");
	snprintf(more, sizeof more, "\"cache_from\": [\"%s\"], \"tls_verify\": \"no\"", cache);
	free(spec_file(more));
	tu_fails(tu_lf(a, "exec", "--spec", file, NULL), 2,
		 "layerfs exec: spec '%s': tls_verify: expected true or false\n"
		 "Try 'layerfs exec --help'.\n",
		 file);
}
