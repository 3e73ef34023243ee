/* exec: run a command in a sandbox over layer views, commit what it wrote, cache the result.
 *   exec [--mount SPEC]... [--env K=V]... [--cwd DIR] [--user U[:G]] [--network none|host]
 *        [--security sandbox|insecure] [--hostname H] [--proxy-env K=V]... [--cache] [-i]
 *        [--commit-on-failure] [--cache-from NAME]... [--cache-to NAME]...
 *        [--tls-verify=BOOL] ROOT [--] CMD [ARG...]
 *   exec --spec FILE.json [--cache] [--cache-from NAME]... [--cache-to NAME]...
 *        [--tls-verify=BOOL] [--json]
 * Options come before ROOT; everything after it is the command.  The command's stdout and
 * stderr stream live; the summary for people goes to stderr so stdout stays the command's,
 * and with --json the command's stdout is sent to stderr so stdout holds exactly one JSON
 * object.  Exit status: the command's own, 125 when layerfs failed, 126/127 when the command
 * cannot be run or is not found (as `docker run` reports them), 2 for usage errors (as every
 * layerfs command). */
#include <string.h>

#include "commands.h"
#include "exec.h"
#include "layerfs/oci.h"

enum {
	OPT_MOUNT = OPT_FIRST_LOCAL,
	OPT_ENV,
	OPT_CWD,
	OPT_USER,
	OPT_NETWORK,
	OPT_SECURITY,
	OPT_HOSTNAME,
	OPT_PROXY_ENV,
	OPT_CACHE,
	OPT_COMMIT_ON_FAILURE,
	OPT_SPEC,
	OPT_CACHE_FROM,
	OPT_CACHE_TO,
	OPT_TLS_VERIFY,
	OPT_BACKEND,
};

typedef struct exec_opts {
	lyr_exec_op *op;
	const char *spec;
	const char *backend; /* --backend: how views are served, not part of the op */
	unsigned op_flags; /* options that describe the op (not allowed with --spec) */
	bool cache, interactive, commit_on_failure;
	/* --cache-from and --cache-to (argv strings), added to the op once it is built */
	const char **from, **to;
	size_t n_from, n_to;
	int tls_verify; /* --tls-verify: 1 or 0; -1 not given (the op's own stays) */
} exec_opts;

static int push_name(const char ***v, size_t *n, const char *name)
{
	const char **nv = realloc(*v, (*n + 1) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = name;
	*v = nv;
	return 0;
}

static int exec_opt(void *ctx, int c, const char *arg)
{
	exec_opts *o = ctx;
	lyr_exec_error err = {{0}};
	int r = 0;
	o->op_flags += c != OPT_CACHE && c != OPT_SPEC && c != OPT_CACHE_FROM &&
		       c != OPT_CACHE_TO && c != OPT_TLS_VERIFY && c != OPT_BACKEND;
	switch (c) {
	case OPT_MOUNT:
		r = lyr_exec_op_add_mount_spec(o->op, arg, &err);
		break;
	case OPT_ENV:
		r = lyr_exec_op_add_env(o->op, arg, &err);
		break;
	case OPT_CWD:
		r = lyr_exec_op_set_cwd(o->op, arg, &err);
		break;
	case OPT_USER:
		r = lyr_exec_op_set_user(o->op, arg, &err);
		break;
	case OPT_NETWORK:
		r = lyr_exec_op_set_network(o->op, arg, &err);
		break;
	case OPT_SECURITY:
		r = lyr_exec_op_set_security(o->op, arg, &err);
		break;
	case OPT_HOSTNAME:
		r = lyr_exec_op_set_hostname(o->op, arg, &err);
		break;
	case OPT_PROXY_ENV:
		r = lyr_exec_op_add_proxy_env(o->op, arg, &err);
		break;
	case OPT_CACHE:
		o->cache = true;
		break;
	case 'i':
		o->interactive = true;
		break;
	case OPT_COMMIT_ON_FAILURE:
		o->commit_on_failure = true;
		break;
	case OPT_SPEC:
		o->spec = arg;
		break;
	case OPT_CACHE_FROM:
		r = push_name(&o->from, &o->n_from, arg);
		break;
	case OPT_CACHE_TO:
		r = push_name(&o->to, &o->n_to, arg);
		break;
	case OPT_TLS_VERIFY:
		return cli_tls_verify_opt("exec", arg, &o->tls_verify);
	case OPT_BACKEND:
		o->backend = arg;
		break;
	default:
		return -1;
	}
	if (r < 0)
		fprintf(stderr, "layerfs exec: %s\n", err.msg[0] ? err.msg : cli_strerror(r));
	return r;
}

static void print_result(lyr_cli *cli, const exec_result *res)
{
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_i64(&j, "exit_code", res->status);
		json_str(&j, "cache_key", res->has_key ? res->key : NULL);
		json_bool(&j, "cached", res->cached);
		json_str(&j, "backend", res->backend ? lyr_fs_backend_name(res->backend) : NULL);
		if (res->fallback[0])
			json_str(&j, "fallback", res->fallback);
		json_arr_open(&j, "outputs");
		for (size_t i = 0; i < res->n_outputs; i++) {
			json_obj_open(&j, NULL);
			json_str(&j, "target", res->outputs[i].target);
			json_str(&j, "layer", res->outputs[i].layer);
			json_obj_close(&j);
		}
		json_arr_close(&j);
		json_end(&j);
		fflush(stdout);
		return;
	}
	fprintf(stderr, "exit status %d%s\n", res->status, res->cached ? " (cached)" : "");
	for (size_t i = 0; i < res->n_outputs; i++)
		fprintf(stderr, "%-12s %s\n", res->outputs[i].target, res->outputs[i].layer);
}

/* Usage errors exit 2 like every other command; failures before the run are layerfs's (125). */
static int build_op(lyr_cli *cli, const cli_command *cmd, int argc, char **argv, exec_opts *o)
{
	static const struct option opts[] = {
	    {"mount", required_argument, NULL, OPT_MOUNT},
	    {"env", required_argument, NULL, OPT_ENV},
	    {"cwd", required_argument, NULL, OPT_CWD},
	    {"user", required_argument, NULL, OPT_USER},
	    {"network", required_argument, NULL, OPT_NETWORK},
	    {"security", required_argument, NULL, OPT_SECURITY},
	    {"hostname", required_argument, NULL, OPT_HOSTNAME},
	    {"proxy-env", required_argument, NULL, OPT_PROXY_ENV},
	    {"cache", no_argument, NULL, OPT_CACHE},
	    {"interactive", no_argument, NULL, 'i'},
	    {"commit-on-failure", no_argument, NULL, OPT_COMMIT_ON_FAILURE},
	    {"spec", required_argument, NULL, OPT_SPEC},
	    {"cache-from", required_argument, NULL, OPT_CACHE_FROM},
	    {"cache-to", required_argument, NULL, OPT_CACHE_TO},
	    {"tls-verify", optional_argument, NULL, OPT_TLS_VERIFY},
	    {"backend", required_argument, NULL, OPT_BACKEND},
	};
	/* "+": stop at ROOT, so the command's own options stay its own */
	int i =
	    cli_parse_short(cli, cmd, argc, argv, "+hi", opts, LYR_ARRAY_SIZE(opts), exec_opt, o);
	lyr_exec_error err = {{0}};
	if (o->spec) {
		if (o->op_flags || i < argc)
			return cli_usage(cmd->name,
					 "--spec takes the whole op from the file; only "
					 "--cache, --cache-from, --cache-to, --tls-verify, "
					 "--backend and --json go with it");
		lyr_exec_op_free(o->op);
		o->op = NULL;
		int r = lyr_exec_op_load_json(o->spec, &o->op, &err);
		/* a bad op is a usage error wherever it was written; an unreadable file is not */
		if (r == -EINVAL)
			return cli_usage(cmd->name, "%s", err.msg);
		if (r < 0) {
			/* the library's message already names the file */
			if (err.msg[0])
				fprintf(stderr, "layerfs exec: %s\n", err.msg);
			else
				fprintf(stderr, "layerfs exec: --spec '%s': %s\n", o->spec,
					cli_strerror(r));
			return EXEC_EXIT_FAILED;
		}
	} else {
		if (i >= argc)
			return cli_usage(cmd->name, "expects ROOT and a command");
		if (lyr_exec_op_set_root(o->op, argv[i++]) < 0)
			return cli_fail("out of memory"), EXEC_EXIT_FAILED;
		if (i < argc && strcmp(argv[i], "--") == 0)
			i++;
		if (i >= argc)
			return cli_usage(cmd->name, "expects a command after ROOT");
		for (; i < argc; i++)
			if (lyr_exec_op_add_arg(o->op, argv[i]) < 0)
				return cli_fail("out of memory"), EXEC_EXIT_FAILED;
		if (cli_image_defaults(cli, o->op) < 0)
			return EXEC_EXIT_FAILED;
		if (lyr_exec_op_validate(o->op, &err) < 0)
			return cli_usage(cmd->name, "%s", err.msg);
	}
	for (size_t k = 0; k < o->n_from; k++)
		if (lyr_exec_op_add_cache_from(o->op, o->from[k]) < 0)
			return cli_fail("out of memory"), EXEC_EXIT_FAILED;
	for (size_t k = 0; k < o->n_to; k++)
		if (lyr_exec_op_add_cache_to(o->op, o->to[k]) < 0)
			return cli_fail("out of memory"), EXEC_EXIT_FAILED;
	/* a registry name is checked before anything runs: a typo is a usage error */
	char **names[2] = {o->op->cache_from, o->op->cache_to};
	for (int k = 0; k < 2; k++)
		for (size_t n = 0; names[k] && names[k][n]; n++) {
			lyr_oci_error oerr;
			int r = lyr_oci_cache_check_name(names[k][n], &oerr);
			if (r == -EINVAL)
				return cli_usage(cmd->name, "%s '%s': %s",
						 k ? "--cache-to" : "--cache-from", names[k][n],
						 oerr.why);
			if (r < 0)
				return cli_fail("exec: %s", oerr.why), EXEC_EXIT_FAILED;
		}
	/* --cache-from answers from caches, the local one first (as BuildKit's does) */
	o->op->cache |= o->cache || o->op->n_cache_from > 0;
	o->op->interactive |= o->interactive;
	o->op->commit_on_failure |= o->commit_on_failure;
	if (o->tls_verify >= 0)
		o->op->tls_verify = o->tls_verify;
	return 0;
}

int cmd_exec(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("exec");
	exec_opts o = {.tls_verify = -1};
	if (lyr_exec_op_new(&o.op) < 0)
		return cli_fail("out of memory"), EXEC_EXIT_FAILED;
	int status = build_op(cli, cmd, argc, argv, &o);
	free(o.from);
	free(o.to);
	if (status != 0) {
		lyr_exec_op_free(o.op);
		return status;
	}
	/* with --json, stdout is the result's: the command writes to our stderr */
	int saved_stdout = -1;
	if (cli->json) {
		fflush(stdout);
		saved_stdout = dup(STDOUT_FILENO);
		if (saved_stdout < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
			lyr_exec_op_free(o.op);
			return cli_fail("exec: redirecting stdout: %s", strerror(errno)),
			       EXEC_EXIT_FAILED;
		}
	}
	lyr_fs_backend want;
	status = cli_backend_want(cmd->name, o.backend, &want);
	if (status != 0) {
		lyr_exec_op_free(o.op);
		return status;
	}
	exec_result res;
	int r = exec_run(cli, o.op, want, &res);
	if (saved_stdout >= 0) {
		dup2(saved_stdout, STDOUT_FILENO);
		close(saved_stdout);
	}
	if (r < 0)
		status = EXEC_EXIT_FAILED;
	else {
		print_result(cli, &res);
		status = res.status;
	}
	exec_result_clear(&res);
	lyr_exec_op_free(o.op);
	return status;
}
