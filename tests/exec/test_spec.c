/* The exec op: --mount SPEC grammar, JSON spec, normalization and validation. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "layerfs/exec.h"
#include "testutil.h"

static lyr_exec_op *op_new(void)
{
	lyr_exec_op *op = NULL;
	cr_assert_eq(lyr_exec_op_new(&op), 0);
	cr_assert_eq(lyr_exec_op_set_root(op, "sha256:1234567890ab"), 0);
	cr_assert_eq(lyr_exec_op_add_arg(op, "make"), 0);
	return op;
}

/* The error of adding SPEC to a fresh op (which must fail with -EINVAL). */
static void expect_mount_error(const char *spec, const char *msg)
{
	lyr_exec_op *op = op_new();
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_add_mount_spec(op, spec, &err), -EINVAL, "%s", spec);
	cr_assert_str_eq(err.msg, msg);
	cr_assert_eq(op->n_mounts, 0);
	lyr_exec_op_free(op);
}

Test(exec_spec, path_normalize_collapses_slashes_and_dots_and_refuses_dotdot)
{
	char *p = NULL;
	cr_assert_eq(lyr_exec_path_normalize("//a/./b//", &p), 0);
	cr_assert_str_eq(p, "/a/b");
	free(p);
	cr_assert_eq(lyr_exec_path_normalize("/./", &p), 0);
	cr_assert_str_eq(p, "/");
	free(p);
	cr_assert_eq(lyr_exec_path_normalize("/a/..b", &p), 0);
	cr_assert_str_eq(p, "/a/..b");
	free(p);
	p = NULL;
	cr_assert_eq(lyr_exec_path_normalize("/a/../b", &p), -EINVAL);
	cr_assert_eq(lyr_exec_path_normalize("/..", &p), -EINVAL);
	cr_assert_eq(lyr_exec_path_normalize("a/b", &p), -EINVAL);
	cr_assert_eq(lyr_exec_path_normalize("", &p), -EINVAL);
	cr_assert_null(p);
}

Test(exec_spec, mount_spec_sets_every_key)
{
	lyr_exec_op *op = op_new();
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_add_mount_spec(op,
						"type=cache,target=/root//.cache/,id=gems,"
						"sharing=locked,source=abcdef123456",
						&err),
		     0, "%s", err.msg);
	cr_assert_eq(lyr_exec_op_add_mount_spec(
			 op,
			 "type=bind,target=/src,source=sha256:aa,selector=/app/./lib,readonly,"
			 "output",
			 &err),
		     0, "%s", err.msg);
	cr_assert_eq(lyr_exec_op_add_mount_spec(op, "type=tmpfs,target=/tmp,size=1048576", &err), 0,
		     "%s", err.msg);
	cr_assert_eq(lyr_exec_op_add_mount_spec(
			 op, "target=/out,type=bind,output=true,readonly=false", &err),
		     0, "%s", err.msg);
	cr_assert_eq(lyr_exec_op_add_mount_spec(op, "type=cache,target=/var/cache", &err), 0);
	cr_assert_eq(op->n_mounts, 5);

	const lyr_exec_mount *m = &op->mounts[0];
	cr_assert_eq(m->type, LYR_MOUNT_CACHE);
	cr_assert_str_eq(m->target, "/root/.cache");
	cr_assert_str_eq(m->cache_id, "gems");
	cr_assert_eq(m->sharing, LYR_SHARING_LOCKED);
	cr_assert_str_eq(m->source, "abcdef123456");
	cr_assert_null(m->selector);

	m = &op->mounts[1];
	cr_assert_eq(m->type, LYR_MOUNT_BIND);
	cr_assert_str_eq(m->selector, "/app/lib");
	cr_assert(m->readonly && m->output);

	m = &op->mounts[2];
	cr_assert_eq(m->type, LYR_MOUNT_TMPFS);
	cr_assert_eq(m->size, 1048576);
	cr_assert_null(m->source);

	m = &op->mounts[3];
	cr_assert(m->output && !m->readonly);
	cr_assert_null(m->source);

	m = &op->mounts[4];
	cr_assert_str_eq(m->cache_id, "/var/cache", "a cache id defaults to the target");
	cr_assert_eq(m->sharing, LYR_SHARING_SHARED);
	lyr_exec_op_free(op);
}

Test(exec_spec, mount_spec_errors_name_the_bad_key_or_value)
{
	expect_mount_error("type=bind,tagret=/x",
			   "mount 'type=bind,tagret=/x': unknown key 'tagret'");
	expect_mount_error("type=volume,target=/x",
			   "mount 'type=volume,target=/x': type 'volume': expected bind, cache or "
			   "tmpfs");
	expect_mount_error("type=bind", "mount 'type=bind': missing key 'target'");
	expect_mount_error("target=/x", "mount 'target=/x': missing key 'type'");
	expect_mount_error("type=bind,target=x",
			   "mount 'type=bind,target=x': target 'x': must be an absolute path "
			   "without '..'");
	expect_mount_error("type=bind,target=/a/../etc",
			   "mount 'type=bind,target=/a/../etc': target '/a/../etc': must be an "
			   "absolute path without '..'");
	expect_mount_error("type=bind,target=/",
			   "mount 'type=bind,target=/': target '/': the root is ROOT, not a mount");
	expect_mount_error("type=bind,target=/x,target=/y",
			   "mount 'type=bind,target=/x,target=/y': key 'target' given twice");
	expect_mount_error("type=bind,target=/x,size=10",
			   "mount 'type=bind,target=/x,size=10': size: only tmpfs mounts take it, "
			   "not bind");
	expect_mount_error("type=tmpfs,target=/x,sharing=shared",
			   "mount 'type=tmpfs,target=/x,sharing=shared': sharing: only cache "
			   "mounts take it, not tmpfs");
	expect_mount_error("type=bind,target=/x,id=a",
			   "mount 'type=bind,target=/x,id=a': id: only cache mounts take it, not "
			   "bind");
	expect_mount_error("type=cache,target=/x,sharing=exclusive",
			   "mount 'type=cache,target=/x,sharing=exclusive': sharing 'exclusive': "
			   "expected shared, private or locked");
	expect_mount_error("type=tmpfs,target=/x,size=12k",
			   "mount 'type=tmpfs,target=/x,size=12k': size '12k': expected a positive "
			   "number of bytes");
	expect_mount_error("type=tmpfs,target=/x,size=0",
			   "mount 'type=tmpfs,target=/x,size=0': size '0': expected a positive "
			   "number of bytes");
	expect_mount_error("type=tmpfs,target=/x,source=abc",
			   "mount 'type=tmpfs,target=/x,source=abc': source: a tmpfs mount takes "
			   "no source, selector or output");
	expect_mount_error("type=bind,target=/x,selector=/a",
			   "mount 'type=bind,target=/x,selector=/a': selector: needs a source");
	expect_mount_error("type=cache,target=/x,output",
			   "mount 'type=cache,target=/x,output': output: a cache mount is never "
			   "committed");
	expect_mount_error("type=bind,target=/x,readonly=yes",
			   "mount 'type=bind,target=/x,readonly=yes': readonly 'yes': a flag takes "
			   "no value, or true/false");
	expect_mount_error("type=bind,target=/x,source=",
			   "mount 'type=bind,target=/x,source=': key 'source' needs a value");
	expect_mount_error("type=bind,,target=/x", "mount 'type=bind,,target=/x': empty item");
	expect_mount_error("type=bind,target=/x,", "mount 'type=bind,target=/x,': empty item");
	expect_mount_error("type=bind,target=/x,output,readonly",
			   "mount 'type=bind,target=/x,output,readonly': output: a readonly output "
			   "is its input layer, and there is no source");
}

Test(exec_spec, validate_sorts_mounts_parents_first_and_rejects_duplicate_targets)
{
	lyr_exec_op *op = op_new();
	lyr_exec_error err = {{0}};
	const char *specs[] = {"type=tmpfs,target=/a-b", "type=tmpfs,target=/a/b/c",
			       "type=tmpfs,target=/a", "type=tmpfs,target=/a/b",
			       "type=tmpfs,target=/A"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(specs); i++)
		cr_assert_eq(lyr_exec_op_add_mount_spec(op, specs[i], &err), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), 0, "%s", err.msg);
	const char *want[] = {"/A", "/a", "/a/b", "/a/b/c", "/a-b"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(want); i++)
		cr_assert_str_eq(op->mounts[i].target, want[i]);
	cr_assert_eq(lyr_exec_op_add_mount_spec(op, "type=bind,target=/a/b/,source=x", &err), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "mount target '/a/b': given twice");
	lyr_exec_op_free(op);
}

Test(exec_spec, validate_checks_mounts_built_field_by_field)
{
	lyr_exec_op *op = op_new();
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_add_mount_spec(op, "type=bind,target=/x,source=s", &err), 0);
	op->mounts[0].size = 10;
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "mount '/x': size is only for tmpfs");
	op->mounts[0].size = 0;
	op->mounts[0].sharing = LYR_SHARING_LOCKED;
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "mount '/x': sharing is only for cache mounts");
	op->mounts[0].sharing = LYR_SHARING_SHARED;
	op->mounts[0].type = LYR_MOUNT_CACHE;
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "mount '/x': an id is for, and required by, cache mounts");
	op->mounts[0].type = LYR_MOUNT_BIND;
	free(op->mounts[0].target);
	op->mounts[0].target = strdup("/x/../y");
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "mount 1: target '/x/../y' is not a normalized absolute path "
				  "below '/'");
	lyr_exec_op_free(op);
}

Test(exec_spec, validate_rejects_missing_command_root_and_duplicate_env)
{
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_new(&op), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "no ROOT given");
	cr_assert_eq(lyr_exec_op_set_root(op, "base"), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "no command given");
	cr_assert_eq(lyr_exec_op_add_arg(op, "true"), 0);
	cr_assert_eq(lyr_exec_op_add_env(op, "A=1", &err), 0);
	cr_assert_eq(lyr_exec_op_add_env(op, "AB=2", &err), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), 0, "%s", err.msg);
	cr_assert_eq(lyr_exec_op_add_env(op, "A=3", &err), 0);
	cr_assert_eq(lyr_exec_op_validate(op, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "env 'A': given twice");
	lyr_exec_op_free(op);
}

Test(exec_spec, setters_check_their_values)
{
	lyr_exec_op *op = op_new();
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_add_env(op, "NOVALUE", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "env 'NOVALUE': expected NAME=VALUE");
	cr_assert_eq(lyr_exec_op_add_env(op, "=x", &err), -EINVAL);
	cr_assert_eq(lyr_exec_op_add_proxy_env(op, "HOME=/root", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "proxy env 'HOME=/root': expected one of HTTP_PROXY HTTPS_PROXY "
				  "FTP_PROXY NO_PROXY ALL_PROXY as NAME=VALUE");
	cr_assert_eq(lyr_exec_op_add_proxy_env(op, "no_proxy=localhost", &err), 0);
	cr_assert_eq(lyr_exec_op_set_network(op, "bridge", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "network 'bridge': expected none or host");
	cr_assert_eq(lyr_exec_op_set_network(op, "host", &err), 0);
	cr_assert_eq(op->network, LYR_NET_HOST);
	cr_assert_eq(lyr_exec_op_set_cwd(op, "rel", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "cwd 'rel': must be an absolute path without '..'");
	cr_assert_eq(lyr_exec_op_set_cwd(op, "/src/./app/", &err), 0);
	cr_assert_str_eq(op->cwd, "/src/app");
	cr_assert_eq(lyr_exec_op_set_user(op, "1000:", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "user '1000:': expected UID[:GID] or NAME[:GROUP]");
	cr_assert_eq(lyr_exec_op_set_user(op, "a:b:c", &err), -EINVAL);
	cr_assert_eq(lyr_exec_op_set_user(op, "alice:wheel", &err), 0);
	cr_assert_eq(lyr_exec_op_set_hostname(op, "bad host", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "hostname 'bad host': 1-64 letters, digits, '-', '_' or '.'");
	cr_assert_eq(op->security, LYR_SECURITY_SANDBOX);
	cr_assert_eq(lyr_exec_op_set_security(op, "privileged", &err), -EINVAL);
	cr_assert_str_eq(err.msg, "security 'privileged': expected sandbox or insecure");
	cr_assert_eq(lyr_exec_op_set_security(op, "insecure", &err), 0);
	cr_assert_eq(op->security, LYR_SECURITY_INSECURE);
	cr_assert_eq(lyr_exec_op_set_security(op, "sandbox", &err), 0);
	cr_assert_eq(op->security, LYR_SECURITY_SANDBOX);
	lyr_exec_op_free(op);
}

Test(exec_spec, json_spec_reads_every_field)
{
	const char *text =
	    "{\"root\": \"sha256:abcdefabcdef\", \"args\": [\"sh\", \"-c\", \"make\"],\n"
	    " \"env\": [\"A=1\"], \"cwd\": \"/src\", \"user\": \"1000:1000\",\n"
	    " \"hostname\": \"builder\", \"network\": \"host\", \"security\": \"insecure\",\n"
	    " \"proxy_env\": [\"HTTP_PROXY=http://p:3128\"],\n"
	    " \"mounts\": [\n"
	    "  {\"type\": \"tmpfs\", \"target\": \"/tmp\", \"size\": 4096},\n"
	    "  {\"type\": \"bind\", \"target\": \"/src\", \"source\": \"srcid\",\n"
	    "   \"selector\": \"/app\", \"readonly\": true, \"output\": false},\n"
	    "  {\"type\": \"cache\", \"target\": \"/root/.cache\", \"id\": \"pip\",\n"
	    "   \"sharing\": \"private\"}],\n"
	    " \"cache_from\": [\"r1/team/c\", \"r2/team/c\"], \"cache_to\": [\"r1/team/c\"],\n"
	    " \"tls_verify\": false,\n"
	    " \"cache\": true, \"interactive\": false, \"commit_on_failure\": true}\n";
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_parse_json(text, &op, &err), 0, "%s", err.msg);
	cr_assert_str_eq(op->root, "sha256:abcdefabcdef");
	cr_assert_eq(op->n_args, 3);
	cr_assert_str_eq(op->args[2], "make");
	cr_assert_null(op->args[3]);
	cr_assert_str_eq(op->env[0], "A=1");
	cr_assert_str_eq(op->cwd, "/src");
	cr_assert_str_eq(op->user, "1000:1000");
	cr_assert_str_eq(op->hostname, "builder");
	cr_assert_eq(op->network, LYR_NET_HOST);
	cr_assert_eq(op->security, LYR_SECURITY_INSECURE);
	cr_assert_str_eq(op->proxy_env[0], "HTTP_PROXY=http://p:3128");
	cr_assert(op->cache && !op->interactive && op->commit_on_failure);
	cr_assert_eq(op->n_cache_from, 2);
	cr_assert_str_eq(op->cache_from[0], "r1/team/c");
	cr_assert_str_eq(op->cache_from[1], "r2/team/c");
	cr_assert_null(op->cache_from[2]);
	cr_assert_eq(op->n_cache_to, 1);
	cr_assert_str_eq(op->cache_to[0], "r1/team/c");
	cr_assert_not(op->tls_verify);
	cr_assert_eq(op->n_mounts, 3);
	/* sorted: /root/.cache, /src, /tmp */
	cr_assert_str_eq(op->mounts[0].target, "/root/.cache");
	cr_assert_str_eq(op->mounts[0].cache_id, "pip");
	cr_assert_eq(op->mounts[0].sharing, LYR_SHARING_PRIVATE);
	cr_assert_str_eq(op->mounts[1].selector, "/app");
	cr_assert(op->mounts[1].readonly && !op->mounts[1].output);
	cr_assert_eq(op->mounts[2].size, 4096);
	lyr_exec_op_free(op);
}

Test(exec_spec, tls_verify_is_on_unless_the_op_turns_it_off)
{
	lyr_exec_op *op = NULL;
	cr_assert_eq(lyr_exec_op_new(&op), 0);
	cr_assert(op->tls_verify);
	lyr_exec_op_free(op);
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_parse_json("{\"root\": \"r\", \"args\": [\"x\"], "
					    "\"cache_to\": [\"r1/team/c\"]}",
					    &op, &err),
		     0, "%s", err.msg);
	cr_assert(op->tls_verify);
	lyr_exec_op_free(op);
}

static void expect_json_error(const char *text, const char *msg)
{
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_parse_json(text, &op, &err), -EINVAL, "%s", text);
	cr_assert_null(op);
	cr_assert_str_eq(err.msg, msg);
}

Test(exec_spec, json_spec_errors_name_the_path_of_the_bad_value)
{
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"mount\": []}",
			  "spec: unknown key 'mount'");
	expect_json_error("{\"root\": \"r\", \"args\": \"x\"}",
			  "args: expected an array of strings");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\", 1]}", "args[1]: expected a string");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"mounts\": [{\"type\": \"tmpfs\", "
			  "\"target\": \"/t\", \"size\": \"1k\"}]}",
			  "mounts[0].size: expected a positive integer");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"mounts\": [{\"type\": \"bind\", "
			  "\"target\": \"/t\", \"readonly\": 1}]}",
			  "mounts[0].readonly: expected true or false");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"mounts\": [{\"type\": \"bind\", "
			  "\"target\": \"/t\", \"tagret\": \"/u\"}]}",
			  "mounts[0]: unknown key 'tagret'");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"mounts\": [{\"type\": \"bind\", "
			  "\"target\": \"/t\"}, {\"type\": \"tmpfs\", \"target\": \"/t/\"}]}",
			  "mount target '/t': given twice");
	expect_json_error("{\"root\": \"r\",\n \"root\": \"s\", \"args\": [\"x\"]}",
			  "spec: line 2 column 7: duplicate object key near '\"root\"'");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"]} x",
			  "spec: line 1 column 30: end of file expected near 'x'");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"security\": \"off\"}",
			  "security 'off': expected sandbox or insecure");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"security\": false}",
			  "security: expected a string");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"cache_from\": \"r/c\"}",
			  "cache_from: expected an array of strings");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"cache_to\": [true]}",
			  "cache_to[0]: expected a string");
	expect_json_error("{\"root\": \"r\", \"args\": [\"x\"], \"tls_verify\": \"false\"}",
			  "tls_verify: expected true or false");
	expect_json_error("[]", "spec: expected a JSON object at the top");
	expect_json_error("{\"args\": [\"x\"]}", "no ROOT given");
}

Test(exec_spec, json_spec_file_errors_name_the_file)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "spec.json", "{\"root\": 3}");
	_cleanup_free_ char *path = tu_path(dir, "spec.json"), *missing = tu_path(dir, "no.json");
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	cr_assert_eq(lyr_exec_op_load_json(path, &op, &err), -EINVAL);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "spec '%s': root: expected a string", path) > 0);
	cr_assert_str_eq(err.msg, want);
	cr_assert_eq(lyr_exec_op_load_json(missing, &op, &err), -ENOENT);
	cr_assert_null(op);
	tu_rmtree(dir);
}

Test(exec_spec, json_spec_file_over_the_limit_is_refused_without_reading_on)
{
	lyr_exec_op *op = NULL;
	lyr_exec_error err = {{0}};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(lyr_exec_op_load_json("/dev/zero", &op, &err), -EFBIG);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_null(op);
	cr_assert_str_eq(err.msg, "spec '/dev/zero': larger than the limit of 16 MiB");
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_lt(s, 2.0, "reading /dev/zero took %.2f s", s);

	/* A regular file one byte over: refused the same way; one exactly at it is read. */
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "big.json", "");
	_cleanup_free_ char *path = tu_path(dir, "big.json");
	cr_assert_eq(truncate(path, LYR_EXEC_SPEC_MAX + 1), 0);
	cr_assert_eq(lyr_exec_op_load_json(path, &op, &err), -EFBIG);
	cr_assert_eq(truncate(path, LYR_EXEC_SPEC_MAX), 0);
	cr_assert_eq(lyr_exec_op_load_json(path, &op, &err), -EINVAL);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want, "spec '%s': contains a NUL byte", path) > 0);
	cr_assert_str_eq(err.msg, want);
	tu_rmtree(dir);
}
