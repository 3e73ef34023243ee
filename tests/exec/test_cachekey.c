/* The cache key: the documented encoding byte for byte, what enters it and what does not,
 * and the inputs with their selectors. */
#include <criterion/criterion.h>
#include <string.h>

#include "layerfs/exec.h"
#include "testutil.h"

#define DIGEST_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DIGEST_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* An op from a root, a command line (args separated by '|'), env and mount specs. */
static lyr_exec_op *op_make(const char *args, const char *const *env, const char *const *mounts)
{
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_new(&op), 0);
	cr_assert_eq(lyr_exec_op_set_root(op, "base"), 0);
	_cleanup_free_ char *copy = strdup(args);
	char *save = NULL;
	for (char *a = strtok_r(copy, "|", &save); a; a = strtok_r(NULL, "|", &save))
		cr_assert_eq(lyr_exec_op_add_arg(op, a), 0);
	for (size_t i = 0; env && env[i]; i++)
		cr_assert_eq(lyr_exec_op_add_env(op, env[i], &err), 0);
	for (size_t i = 0; mounts && mounts[i]; i++)
		cr_assert_eq(lyr_exec_op_add_mount_spec(op, mounts[i], &err), 0, "%s", err.msg);
	cr_assert_eq(lyr_exec_op_validate(op, &err), 0, "%s", err.msg);
	return op;
}

/* Key with made-up input digests: the selector digests from the op, contents all DIGEST_A. */
static void key_of(const lyr_exec_op *op, char key[LYR_DIGEST_TEXT_LEN])
{
	lyr_exec_input *in = NULL;
	size_t n = 0;
	cr_assert_eq(lyr_exec_op_inputs(op, &in, &n), 0);
	lyr_exec_input_digest d[16];
	cr_assert_leq(n, 16);
	for (size_t i = 0; i < n; i++)
		d[i] = (lyr_exec_input_digest){in[i].selector_digest, DIGEST_A};
	cr_assert_eq(lyr_exec_cache_key(op, "linux/amd64", d, n, key), 0);
	lyr_exec_inputs_free(in, n);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(exec_cachekey, small_op_has_the_documented_encoding_and_digest)
{
	lyr_exec_op *op = op_make("sh|-c|echo hi", L("B=2", "A=1"),
				  L("type=tmpfs,target=/tmp,size=4096",
				    "type=bind,target=/src,source=srcid,selector=/app,readonly"));
	lyr_exec_error err;
	cr_assert_eq(lyr_exec_op_add_proxy_env(op, "HTTP_PROXY=http://proxy:3128", &err), 0);

	static const char expect[] = "17:layerfs-exec-op/1,8:platform,11:linux/amd64,"
				     "4:args,1:3,2:sh,2:-c,7:echo hi,"
				     "3:env,1:2,3:A=1,3:B=2,"
				     "3:cwd,1:/,4:user,0:,8:hostname,7:layerfs,7:network,4:none,"
				     "6:mounts,1:2,"
				     "4:bind,4:/src,1:1,1:1,1:0,0:,0:,1:0,"
				     "5:tmpfs,4:/tmp,1:-,1:0,1:0,0:,0:,4:4096,";
	uint8_t *enc = NULL;
	size_t len = 0;
	cr_assert_eq(lyr_exec_op_encode(op, "linux/amd64", &enc, &len), 0);
	cr_assert_eq(len, sizeof expect - 1);
	cr_assert_eq(memcmp(enc, expect, len), 0, "%.*s", (int)len, (char *)enc);
	free(enc);

	lyr_exec_input *in = NULL;
	size_t n = 0;
	cr_assert_eq(lyr_exec_op_inputs(op, &in, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(in[0].source, "base");
	cr_assert_str_eq(in[0].selector_digest, /* sha256("/") */
			 "sha256:8a5edab282632443219e051e4ade2d1d5bbc671c781051bf1437897cbdfea0f1");
	cr_assert_str_eq(in[1].source, "srcid");
	cr_assert_str_eq(in[1].selector_digest, /* sha256("/app") */
			 "sha256:f53b52ad6d21cceb72dfa78fb67614fe14f110c58e68412b01508d6a485501c3");
	cr_assert(!in[0].read_only && in[1].read_only);

	/* The key, computed here from the documented layout. */
	_cleanup_free_ char *all = NULL;
	int alen = asprintf(&all, "%s6:inputs,1:2,71:%s,71:%s,71:%s,71:%s,", expect,
			    in[0].selector_digest, DIGEST_A, in[1].selector_digest, DIGEST_B);
	cr_assert_gt(alen, 0);
	uint8_t d[LYR_SHA256_LEN];
	char want[LYR_DIGEST_TEXT_LEN];
	lyr_sha256(all, (size_t)alen, d);
	lyr_digest_text(d, want);
	cr_assert_str_eq(want,
			 "sha256:d968caa12f51f2cbd2d72fd62966c971765afa24868ab44ec04c4195d491f158");

	lyr_exec_input_digest digests[] = {{in[0].selector_digest, DIGEST_A},
					   {in[1].selector_digest, DIGEST_B}};
	char key[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_exec_cache_key(op, "linux/amd64", digests, 2, key), 0);
	cr_assert_str_eq(key, want);

	cr_assert_eq(lyr_exec_cache_key(op, "linux/amd64", digests, 1, key), -EINVAL);
	digests[1].digest = "sha256:abc";
	cr_assert_eq(lyr_exec_cache_key(op, "linux/amd64", digests, 2, key), -EINVAL);
	lyr_exec_inputs_free(in, n);
	lyr_exec_op_free(op);
}

Test(exec_cachekey, every_mount_field_is_part_of_the_key)
{
	const char *base = "type=bind,target=/src,source=s1";
	const char *variants[] = {
	    base,
	    "type=bind,target=/src2,source=s1",
	    "type=bind,target=/src,source=s1,readonly",
	    "type=bind,target=/src,source=s1,output",
	    "type=cache,target=/src,source=s1",
	    "type=cache,target=/src,source=s1,id=other",
	    "type=cache,target=/src,source=s1,sharing=locked",
	    "type=cache,target=/src,source=s1,sharing=private",
	    "type=tmpfs,target=/src",
	    "type=tmpfs,target=/src,size=4096",
	    "type=tmpfs,target=/src,size=8192",
	    "type=bind,target=/src",
	};
	char keys[LYR_ARRAY_SIZE(variants)][LYR_DIGEST_TEXT_LEN];
	for (size_t i = 0; i < LYR_ARRAY_SIZE(variants); i++) {
		lyr_exec_op *op = op_make("make", NULL, L(variants[i]));
		key_of(op, keys[i]);
		lyr_exec_op_free(op);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(keys[i], keys[j], "%s vs %s", variants[i], variants[j]);
	}
	lyr_exec_op *none = op_make("make", NULL, NULL);
	char k[LYR_DIGEST_TEXT_LEN];
	key_of(none, k);
	cr_assert_str_neq(k, keys[0], "dropping the mount must change the key");
	lyr_exec_op_free(none);
}

Test(exec_cachekey, which_input_a_mount_reads_is_part_of_the_key)
{
	/* Same mounts, but in one op both read input 1, in the other they read inputs 1 and 2. */
	lyr_exec_op *a = op_make(
	    "make", NULL,
	    L("type=bind,target=/a,source=x,readonly", "type=bind,target=/b,source=x,readonly"));
	lyr_exec_op *b = op_make(
	    "make", NULL,
	    L("type=bind,target=/a,source=x,readonly", "type=bind,target=/b,source=y,readonly"));
	cr_assert_eq(lyr_exec_mount_input(a, 1), 1);
	cr_assert_eq(lyr_exec_mount_input(b, 1), 2);
	uint8_t *ea = NULL, *eb = NULL;
	size_t la = 0, lb = 0;
	cr_assert_eq(lyr_exec_op_encode(a, "linux/amd64", &ea, &la), 0);
	cr_assert_eq(lyr_exec_op_encode(b, "linux/amd64", &eb, &lb), 0);
	cr_assert(la != lb || memcmp(ea, eb, la) != 0);
	free(ea);
	free(eb);
	lyr_exec_op_free(a);
	lyr_exec_op_free(b);
}

Test(exec_cachekey, proxy_variables_and_env_order_do_not_change_the_key)
{
	lyr_exec_op *a = op_make("make", L("A=1", "B=2"), NULL);
	lyr_exec_op *b = op_make("make", L("B=2", "A=1"), NULL);
	lyr_exec_op *c = op_make("make", L("A=1", "B=3"), NULL);
	lyr_exec_error err;
	cr_assert_eq(lyr_exec_op_add_proxy_env(b, "HTTPS_PROXY=http://p:1", &err), 0);
	cr_assert_eq(lyr_exec_op_add_proxy_env(b, "no_proxy=localhost", &err), 0);
	char ka[LYR_DIGEST_TEXT_LEN], kb[LYR_DIGEST_TEXT_LEN], kc[LYR_DIGEST_TEXT_LEN];
	key_of(a, ka);
	key_of(b, kb);
	key_of(c, kc);
	cr_assert_str_eq(ka, kb);
	cr_assert_str_neq(ka, kc);
	lyr_exec_op_free(a);
	lyr_exec_op_free(b);
	lyr_exec_op_free(c);
}

Test(exec_cachekey, meta_fields_and_platform_are_part_of_the_key)
{
	lyr_exec_op *op = op_make("make|all", NULL, NULL);
	lyr_exec_error err;
	char k[6][LYR_DIGEST_TEXT_LEN];
	key_of(op, k[0]);
	cr_assert_eq(lyr_exec_op_set_cwd(op, "/src", &err), 0);
	key_of(op, k[1]);
	cr_assert_eq(lyr_exec_op_set_user(op, "1000", &err), 0);
	key_of(op, k[2]);
	cr_assert_eq(lyr_exec_op_set_hostname(op, "h", &err), 0);
	key_of(op, k[3]);
	cr_assert_eq(lyr_exec_op_set_network(op, "host", &err), 0);
	key_of(op, k[4]);
	cr_assert_eq(lyr_exec_op_add_arg(op, "-j2"), 0);
	key_of(op, k[5]);
	for (size_t i = 1; i < 6; i++)
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(k[i], k[j]);

	lyr_exec_input *in = NULL;
	size_t n = 0;
	cr_assert_eq(lyr_exec_op_inputs(op, &in, &n), 0);
	lyr_exec_input_digest d = {in[0].selector_digest, DIGEST_A};
	char amd[LYR_DIGEST_TEXT_LEN], arm[LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_exec_cache_key(op, "linux/amd64", &d, 1, amd), 0);
	cr_assert_eq(lyr_exec_cache_key(op, "linux/arm64", &d, 1, arm), 0);
	cr_assert_str_neq(amd, arm);
	d.digest = DIGEST_B;
	cr_assert_eq(lyr_exec_cache_key(op, "linux/amd64", &d, 1, arm), 0);
	cr_assert_str_neq(amd, arm, "the root's layer ID is part of the key");
	lyr_exec_inputs_free(in, n);
	lyr_exec_op_free(op);
}

Test(exec_cachekey, insecure_adds_a_trailing_field_and_sandbox_keeps_the_old_encoding)
{
	lyr_exec_op *op = op_make("true", NULL, NULL);
	lyr_exec_error err;
	static const char sandbox[] = "17:layerfs-exec-op/1,8:platform,11:linux/amd64,"
				      "4:args,1:1,4:true,3:env,1:0,"
				      "3:cwd,1:/,4:user,0:,8:hostname,7:layerfs,7:network,4:none,"
				      "6:mounts,1:0,";
	uint8_t *enc = NULL;
	size_t len = 0;
	char k[3][LYR_DIGEST_TEXT_LEN];
	cr_assert_eq(lyr_exec_op_set_security(op, "sandbox", &err), 0);
	cr_assert_eq(lyr_exec_op_encode(op, "linux/amd64", &enc, &len), 0);
	cr_assert_eq(len, strlen(sandbox));
	cr_assert_eq(memcmp(enc, sandbox, len), 0, "%.*s", (int)len, enc);
	free(enc);
	key_of(op, k[0]);

	cr_assert_eq(lyr_exec_op_set_security(op, "insecure", &err), 0);
	cr_assert_eq(lyr_exec_op_encode(op, "linux/amd64", &enc, &len), 0);
	static const char insecure[] = "8:security,8:insecure,";
	cr_assert_eq(len, strlen(sandbox) + strlen(insecure));
	cr_assert_eq(memcmp(enc, sandbox, strlen(sandbox)), 0);
	cr_assert_eq(memcmp(enc + strlen(sandbox), insecure, strlen(insecure)), 0, "%.*s", (int)len,
		     enc);
	free(enc);
	key_of(op, k[1]);
	cr_assert_str_neq(k[0], k[1]);

	cr_assert_eq(lyr_exec_op_set_security(op, "sandbox", &err), 0);
	key_of(op, k[2]);
	cr_assert_str_eq(k[0], k[2]);
	lyr_exec_op_free(op);
}

Test(exec_cachekey, selectors_are_blanked_in_the_op_and_keyed_per_input)
{
	lyr_exec_op *a =
	    op_make("make", NULL, L("type=bind,target=/s,source=x,selector=/a,readonly"));
	lyr_exec_op *b =
	    op_make("make", NULL, L("type=bind,target=/s,source=x,selector=/b,readonly"));
	uint8_t *ea = NULL, *eb = NULL;
	size_t la = 0, lb = 0;
	cr_assert_eq(lyr_exec_op_encode(a, "linux/amd64", &ea, &la), 0);
	cr_assert_eq(lyr_exec_op_encode(b, "linux/amd64", &eb, &lb), 0);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(ea, eb, la), 0);
	free(ea);
	free(eb);
	char ka[LYR_DIGEST_TEXT_LEN], kb[LYR_DIGEST_TEXT_LEN];
	key_of(a, ka);
	key_of(b, kb);
	cr_assert_str_neq(ka, kb, "the selector digest enters the key");
	lyr_exec_op_free(a);
	lyr_exec_op_free(b);
}

/* The inputs of an op with MOUNTS, as "source:sel,sel:ro|..." */
static void expect_inputs(const char *const *mounts, const char *want)
{
	lyr_exec_op *op = op_make("make", NULL, mounts);
	lyr_exec_input *in = NULL;
	size_t n = 0;
	cr_assert_eq(lyr_exec_op_inputs(op, &in, &n), 0);
	char got[512] = "";
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(got, "|");
		strcat(got, in[i].source);
		strcat(got, ":");
		for (size_t j = 0; j < in[i].n_selectors; j++) {
			if (j)
				strcat(got, ",");
			strcat(got, in[i].selectors[j]);
		}
		strcat(got, in[i].read_only ? ":ro" : ":rw");
	}
	cr_assert_str_eq(got, want);
	lyr_exec_inputs_free(in, n);
	lyr_exec_op_free(op);
}

Test(exec_cachekey, inputs_dedupe_selectors_by_whole_path_component)
{
	expect_inputs(NULL, "base:/:rw");
	expect_inputs(L("type=bind,target=/g,source=x,selector=/Gemfile,readonly",
			"type=bind,target=/l,source=x,selector=/Gemfile.lock,readonly"),
		      "base:/:rw|x:/Gemfile,/Gemfile.lock:ro");
	expect_inputs(L("type=bind,target=/a,source=x,selector=/a/b,readonly",
			"type=bind,target=/b,source=x,selector=/a,readonly",
			"type=bind,target=/c,source=x,selector=/ab,readonly"),
		      "base:/:rw|x:/a,/ab:ro");
	/* Byte order, as the hash module sorts them ('-' before '/'). */
	expect_inputs(L("type=bind,target=/a,source=x,selector=/a/c,readonly",
			"type=bind,target=/b,source=x,selector=/a-b,readonly"),
		      "base:/:rw|x:/a-b,/a/c:ro");
	/* A whole-input mount next to a sub-path mount keys on the whole input. */
	expect_inputs(L("type=bind,target=/a,source=x,selector=/lib,readonly",
			"type=bind,target=/b,source=x,readonly"),
		      "base:/:rw|x:/:ro");
	/* One writable mount makes the input keyed by its layer ID. */
	expect_inputs(L("type=bind,target=/a,source=x,readonly", "type=bind,target=/b,source=x",
			"type=cache,target=/c,source=y,readonly", "type=tmpfs,target=/t"),
		      "base:/:rw|x:/:rw|y:/:rw");
}

Test(exec_cachekey, platform_names_this_machine)
{
	char p[32];
	lyr_exec_platform(p);
	FILE *f = popen("uname -m", "r");
	cr_assert_not_null(f);
	char m[64] = "";
	cr_assert_not_null(fgets(m, sizeof m, f));
	pclose(f);
	m[strcspn(m, "\n")] = '\0';
	if (strcmp(m, "x86_64") == 0)
		cr_assert_str_eq(p, "linux/amd64");
	else if (strcmp(m, "aarch64") == 0)
		cr_assert_str_eq(p, "linux/arm64");
	else
		cr_assert_eq(strncmp(p, "linux/", 6), 0);
}
