/* Commands of the OCI world: import --tar, save, load, push, pull, and the defaults an image's
 * config gives exec. */
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "layerfs/exec.h"
#include "layerfs/oci.h"

int cli_import_tar(lyr_cli *cli, const char *file, const char *parent, const char *tag,
		   const char *desc)
{
	char pid[LYR_ID_MAX] = "";
	if (parent && cli_resolve(cli, parent, LYR_OBJ_LAYER, NULL, pid) < 0)
		return EXIT_FAIL;
	bool in = strcmp(file, "-") == 0;
	_cleanup_close_ int fd = in ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_fail("import --tar '%s': %s", file, strerror(errno));
	_cleanup_free_ char *abs = in ? NULL : realpath(file, NULL);
	_cleanup_free_ char *d = NULL;
	if (!desc && asprintf(&d, "import --tar %s", in ? "-" : abs ? abs : file) < 0)
		return cli_fail("out of memory");
	lyr_store *s = cli_store_create(cli);
	if (!s)
		return EXIT_FAIL;
	progress_line pl;
	progress_start(&pl, cli, "import");
	lyr_oci_error err;
	char id[LYR_ID_MAX];
	int r =
	    lyr_oci_import_tar(s, fd, pid[0] ? pid : NULL, desc ? desc : d, tag, &pl.p, &err, id);
	progress_done(&pl);
	if (r < 0) {
		if (err.why[0] && err.entry[0])
			return cli_fail("import --tar '%s': entry '%s': %s", file, err.entry,
					err.why);
		if (err.why[0])
			return cli_fail("import --tar '%s': %s", file, err.why);
		const char *why = lyr_store_last_error();
		return cli_fail("import --tar '%s': %s", file, why[0] ? why : cli_strerror(r));
	}
	return cli_print_id(cli, "id", id);
}

/* The manifest digest, or with --json every digest a save or push wrote; clears SAVED. */
static int print_saved(lyr_cli *cli, lyr_oci_saved *saved)
{
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "manifest", saved->manifest);
		json_str(&j, "config", saved->config);
		json_arr_open(&j, "layers");
		for (size_t k = 0; k < saved->layers; k++) {
			json_obj_open(&j, NULL);
			json_str(&j, "digest", saved->layer_digests[k]);
			json_str(&j, "diff_id", saved->diff_ids[k]);
			json_obj_close(&j);
		}
		json_arr_close(&j);
		json_end(&j);
	} else {
		printf("%s\n", saved->manifest);
	}
	lyr_oci_saved_clear(saved);
	return EXIT_OK;
}

/* The top layer's ID, or with --json it and every layer of a load or pull; clears LOADED. */
static int print_loaded(lyr_cli *cli, lyr_oci_loaded *loaded)
{
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "id", loaded->ids[loaded->n - 1]);
		json_arr_open(&j, "layers");
		for (size_t k = 0; k < loaded->n; k++)
			json_str(&j, NULL, loaded->ids[k]);
		json_arr_close(&j);
		json_end(&j);
	} else {
		printf("%s\n", loaded->ids[loaded->n - 1]);
	}
	lyr_oci_loaded_clear(loaded);
	return EXIT_OK;
}

struct save_opts {
	const char *dest;
	lyr_oci_compression c;
	bool bad;
};

static int save_opt(void *ctx, int c, const char *arg)
{
	struct save_opts *o = ctx;
	if (c == 'o') {
		o->dest = arg;
	} else if (c == 'c') {
		static const char *const names[] = {"gzip", "zstd", "none"};
		for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++)
			if (strcmp(arg, names[i]) == 0) {
				o->c = (lyr_oci_compression)i;
				return 0;
			}
		cli_usage("save", "--compression takes gzip, zstd or none, not '%s'", arg);
		return -1;
	} else {
		return -1;
	}
	return 0;
}

int cmd_save(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("save");
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"compression", required_argument, NULL, 'c'},
	};
	struct save_opts o = {NULL, LYR_OCI_GZIP, false};
	int i = cli_parse_short(cli, cmd, argc, argv, "ho:", opts, 2, save_opt, &o);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one layer or tag");
	if (!o.dest)
		return cli_usage(cmd->name, "needs -o DEST (oci:DIR[:TAG], oci-archive:FILE[:TAG], "
					    "docker-archive:FILE[:NAME[:TAG]])");
	if (strncmp(o.dest, "oci:", 4) != 0 && strncmp(o.dest, "oci-archive:", 12) != 0 &&
	    strncmp(o.dest, "docker-archive:", 15) != 0)
		return cli_usage(cmd->name,
				 "destination '%s' is not oci:DIR, oci-archive:FILE or "
				 "docker-archive:FILE",
				 o.dest);
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i], LYR_OBJ_LAYER, NULL, id) < 0)
		return EXIT_FAIL;
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;
	lyr_oci_error err;
	lyr_oci_saved saved;
	int r = lyr_oci_save(s, id, o.dest, o.c, &err, &saved);
	if (r < 0) {
		if (err.why[0])
			return cli_fail("save '%s' to '%s': '%s': %s", argv[i], o.dest, err.entry,
					err.why);
		const char *why = lyr_store_last_error();
		return cli_fail("save '%s' to '%s': %s", argv[i], o.dest,
				why[0] ? why : cli_strerror(r));
	}
	return print_saved(cli, &saved);
}

struct load_opts {
	const char *tag, *platform;
	int tls_verify; /* 1: verify the registry's certificate (--tls-verify=false: 0) */
};

int cli_tls_verify_opt(const char *cmd, const char *arg, int *tls_verify)
{
	if (!arg || strcmp(arg, "true") == 0)
		*tls_verify = 1;
	else if (strcmp(arg, "false") == 0)
		*tls_verify = 0;
	else {
		fprintf(stderr, "layerfs %s: --tls-verify takes true or false, not '%s'\n", cmd,
			arg);
		return -1;
	}
	return 0;
}

static int load_opt(void *ctx, int c, const char *arg)
{
	struct load_opts *o = ctx;
	if (c == 't')
		o->tag = arg;
	else if (c == 'p')
		o->platform = arg;
	else if (c == 'k')
		return cli_tls_verify_opt("pull", arg, &o->tls_verify);
	else
		return -1;
	return 0;
}

/* load and pull: an image into layers (PULL: from a registry) with --tag and --platform. */
static int fetch(lyr_cli *cli, const char *name, int argc, char **argv, bool pull)
{
	const cli_command *cmd = cli_find(name);
	static const struct option opts[] = {
	    {"tag", required_argument, NULL, 't'},
	    {"platform", required_argument, NULL, 'p'},
	    {"tls-verify", optional_argument, NULL, 'k'},
	};
	struct load_opts o = {.tls_verify = 1};
	int i = cli_parse(cli, cmd, argc, argv, opts, pull ? 3 : 2, load_opt, &o);
	if (argc - i != 1)
		return cli_usage(cmd->name,
				 pull ? "expects one image name" : "expects one image source");
	const char *src = argv[i];
	const char *why;
	if (o.tag && lyr_tag_check(o.tag, &why) < 0)
		return cli_usage(cmd->name, "invalid tag name '%s': %s", o.tag, why);
	if (!pull && strncmp(src, "oci:", 4) != 0 && strncmp(src, "oci-archive:", 12) != 0 &&
	    strncmp(src, "docker-archive:", 15) != 0)
		return cli_usage(
		    cmd->name,
		    "source '%s' is not oci:DIR, oci-archive:FILE or docker-archive:FILE", src);
	lyr_store *s = cli_store_create(cli);
	if (!s)
		return EXIT_FAIL;
	progress_line pl;
	progress_start(&pl, cli, name);
	lyr_oci_error err;
	lyr_oci_loaded loaded;
	int r = pull ? lyr_oci_pull(s, src, o.tls_verify, o.tag, o.platform, &pl.p, &pl.blobs,
				    &err, &loaded)
		     : lyr_oci_load(s, src, o.tag, o.platform, &pl.p, &err, &loaded);
	progress_done(&pl);
	if (r < 0) {
		if (err.why[0])
			return cli_fail("%s '%s': '%s': %s", name, src, err.entry, err.why);
		const char *w = lyr_store_last_error();
		return cli_fail("%s '%s': %s", name, src, w[0] ? w : cli_strerror(r));
	}
	return print_loaded(cli, &loaded);
}

int cmd_load(lyr_cli *cli, int argc, char **argv)
{
	return fetch(cli, "load", argc, argv, false);
}

int cmd_pull(lyr_cli *cli, int argc, char **argv)
{
	return fetch(cli, "pull", argc, argv, true);
}

static int push_opt(void *ctx, int c, const char *arg)
{
	return c == 'k' ? cli_tls_verify_opt("push", arg, ctx) : -1;
}

int cmd_push(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("push");
	static const struct option opts[] = {
	    {"tls-verify", optional_argument, NULL, 'k'},
	};
	int tls_verify = 1;
	int i = cli_parse(cli, cmd, argc, argv, opts, 1, push_opt, &tls_verify);
	if (argc - i != 2)
		return cli_usage(cmd->name, "expects a layer and an image name");
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i], LYR_OBJ_LAYER, NULL, id) < 0)
		return EXIT_FAIL;
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;
	lyr_oci_error err;
	lyr_oci_saved saved;
	progress_line pl;
	progress_start(&pl, cli, "push");
	int r = lyr_oci_push(s, id, argv[i + 1], tls_verify, &pl.blobs, &err, &saved);
	progress_done(&pl);
	if (r < 0) {
		if (err.why[0])
			return cli_fail("push '%s' to '%s': '%s': %s", argv[i], argv[i + 1],
					err.entry, err.why);
		const char *w = lyr_store_last_error();
		return cli_fail("push '%s' to '%s': %s", argv[i], argv[i + 1],
				w[0] ? w : cli_strerror(r));
	}
	return print_saved(cli, &saved);
}

/* The config of the nearest loaded image in the chain of layer ID (NULL: none). */
static json_t *chain_config(lyr_store *s, const char *id)
{
	char cur[LYR_ID_MAX];
	snprintf(cur, sizeof cur, "%s", id);
	for (int depth = 0; cur[0] && depth < 100000; depth++) {
		char *text;
		if (lyr_layer_config_get(s, cur, &text) == 0) {
			json_t *j = json_loads(text, 0, NULL);
			free(text);
			return j;
		}
		lyr_layer_info info;
		if (lyr_layer_get(s, cur, &info) < 0)
			return NULL;
		snprintf(cur, sizeof cur, "%s", info.parent);
		lyr_layer_info_clear(&info);
	}
	return NULL;
}

static bool has_env(const lyr_exec_op *op, const char *kv)
{
	size_t k = strcspn(kv, "=");
	for (size_t i = 0; i < op->n_env; i++)
		if (strncmp(op->env[i], kv, k) == 0 && op->env[i][k] == '=')
			return true;
	return false;
}

int cli_image_defaults(lyr_cli *cli, lyr_exec_op *op)
{
	lyr_store *s = cli_store(cli);
	if (!s)
		return -EIO;
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	if (lyr_store_resolve(s, op->root, &kind, id) < 0)
		return 0; /* the run says what is wrong with ROOT */
	if (kind == LYR_OBJ_REF) {
		lyr_ref_info ref;
		if (lyr_ref_get(s, id, &ref) < 0)
			return 0;
		snprintf(id, sizeof id, "%s", ref.parent);
		lyr_ref_info_clear(&ref);
		if (!id[0])
			return 0;
	}
	json_t *all = chain_config(s, id);
	json_t *c = json_object_get(all, "config");
	lyr_exec_error err = {{0}};
	int r = 0;
	json_t *env = json_object_get(c, "Env");
	for (size_t i = 0; r == 0 && i < json_array_size(env); i++) {
		const char *kv = json_string_value(json_array_get(env, i));
		if (kv && strchr(kv, '=') && !has_env(op, kv))
			r = lyr_exec_op_add_env(op, kv, &err);
	}
	const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
	if (r == 0 && !op->cwd && wd && *wd)
		r = lyr_exec_op_set_cwd(op, wd, &err);
	const char *user = json_string_value(json_object_get(c, "User"));
	if (r == 0 && !op->user && user && *user)
		r = lyr_exec_op_set_user(op, user, &err);
	json_decref(all);
	if (r < 0)
		cli_fail("exec: the image config of '%s': %s", op->root,
			 err.msg[0] ? err.msg : cli_strerror(r));
	return r;
}
