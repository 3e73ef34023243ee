/* Commands that create and remove objects: import, new, commit, tag, untag, rm.  Each checks
 * its arguments fully before it changes the store, so bad input changes nothing. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "layerfs/fs.h"

static int check_tag(const char *cmd, const char *tag)
{
	const char *why;
	if (tag && lyr_tag_check(tag, &why) < 0)
		return cli_usage(cmd, "invalid tag name '%s': %s", tag, why);
	return EXIT_OK;
}

int cli_print_id(lyr_cli *cli, const char *key, const char *id)
{
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, key, id);
		json_end(&j);
	} else {
		printf("%s\n", id);
	}
	return EXIT_OK;
}

struct tag_desc {
	const char *tag, *desc;
	const char *tar, *parent; /* import only */
};

static int tag_desc_opt(void *ctx, int c, const char *arg)
{
	struct tag_desc *td = ctx;
	if (c == 't')
		td->tag = arg;
	else if (c == 'd')
		td->desc = arg;
	else if (c == 'T')
		td->tar = arg;
	else if (c == 'p')
		td->parent = arg;
	else
		return -1;
	return 0;
}

static const struct option tag_desc_opts[] = {
	{"tag", required_argument, NULL, 't'},
	{"desc", required_argument, NULL, 'd'},
	{"tar", required_argument, NULL, 'T'},
	{"parent", required_argument, NULL, 'p'},
};

int cmd_import(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("import");
	struct tag_desc td = {0};
	int i = cli_parse(cli, cmd, argc, argv, tag_desc_opts, 4, tag_desc_opt, &td);
	if (check_tag(cmd->name, td.tag))
		return EXIT_USAGE;
	if (td.tar) {
		if (argc - i != 0)
			return cli_usage(cmd->name, "--tar takes the tar; no directory with it");
		return cli_import_tar(cli, td.tar, td.parent, td.tag, td.desc);
	}
	if (td.parent)
		return cli_usage(cmd->name, "--parent goes with --tar (a directory is a base layer)");
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one directory");
	const char *src = argv[i];

	_cleanup_free_ char *abs = realpath(src, NULL);
	_cleanup_free_ char *desc = NULL;
	if (!td.desc && asprintf(&desc, "import %s", abs ? abs : src) < 0)
		return cli_fail("out of memory");

	/* A source that cannot be read leaves no new store behind. */
	_cleanup_close_ int srcfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (srcfd < 0)
		return cli_fail("import '%s': %s", src, strerror(errno));
	lyr_store *s = cli_store_create(cli);
	if (!s)
		return EXIT_FAIL;
	progress_line pl;
	progress_start(&pl, cli, "import");
	lyr_tree_error err = {0};
	char id[LYR_ID_MAX];
	int r = lyr_store_import(s, src, td.desc ? td.desc : desc, td.tag, &pl.p, &err, id);
	progress_done(&pl);
	if (r < 0) {
		const char *why = err.why[0] ? err.why : cli_strerror(err.err ? -err.err : r);
		if (err.path[0])
			return cli_fail("import '%s': '%s': %s", src, err.path, why);
		return cli_fail("import '%s': %s", src, why);
	}
	return cli_print_id(cli, "id", id);
}

int cmd_new(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("new");
	struct tag_desc td = {0};
	int i = cli_parse(cli, cmd, argc, argv, tag_desc_opts + 1, 1, tag_desc_opt, &td);
	if (argc - i > 1)
		return cli_usage(cmd->name, "expects at most one layer");
	char parent[LYR_ID_MAX] = "";
	if (argc - i == 1 && cli_resolve(cli, argv[i], LYR_OBJ_LAYER, NULL, parent) < 0)
		return EXIT_FAIL;
	lyr_store *s = cli_store_create(cli);
	if (!s)
		return EXIT_FAIL;
	char id[LYR_ID_MAX];
	int r = lyr_ref_new(s, parent[0] ? parent : NULL, td.desc ? td.desc : "", id);
	if (r < 0)
		return cli_fail("new ref on '%s': %s", parent[0] ? argv[i] : "scratch",
				cli_strerror(r));
	return cli_print_id(cli, "id", id);
}

/* Message for a ref that is mounted. */
static int fail_mounted(lyr_cli *cli, const char *what, const char *text, const char *ref)
{
	lyr_ref_info info = {0};
	if (lyr_ref_get(cli->store, ref, &info) == 0 && info.mountpoint) {
		cli_fail("%s '%s': ref is mounted at '%s'", what, text, info.mountpoint);
		lyr_ref_info_clear(&info);
		return EXIT_FAIL;
	}
	lyr_ref_info_clear(&info);
	return cli_fail("%s '%s': ref is in use", what, text);
}

int cli_commit_ref(lyr_cli *cli, const char *ref, const char *tag, const lyr_progress *progress,
		   char *ret_id)
{
	/* A mounted ref is refused before anything touches its upper. */
	lyr_ref_info info = {0};
	int r = lyr_ref_get(cli->store, ref, &info);
	bool mounted = r >= 0 && info.mountpoint;
	lyr_ref_info_clear(&info);
	if (r < 0)
		return r;
	if (mounted)
		return -EBUSY;
	/* Hard-link groups the overlay copied up live in the work dir's index until now. */
	_cleanup_(cli_view_clear) cli_view view = {0};
	r = cli_view_get(cli, LYR_OBJ_REF, ref, &view);
	if (r < 0)
		return r;
	lyr_fs_error err = {{0}};
	r = lyr_fs_prepare_commit((const char *const *)view.lowers, view.nlowers, view.upper,
				  view.work, &err);
	if (r < 0) {
		fprintf(stderr, "layerfs: commit '%s': %s\n", ref, err.msg[0] ? err.msg : strerror(-r));
		return r;
	}
	return lyr_ref_commit(cli->store, ref, tag, progress, ret_id);
}

int cmd_commit(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("commit");
	struct tag_desc td = {0};
	int i = cli_parse(cli, cmd, argc, argv, tag_desc_opts, 1, tag_desc_opt, &td);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one ref");
	if (check_tag(cmd->name, td.tag))
		return EXIT_USAGE;
	char ref[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i], LYR_OBJ_REF, NULL, ref) < 0 ||
	    cli_ref_upper_check(cli, "commit", argv[i], ref) != EXIT_OK)
		return EXIT_FAIL;
	progress_line pl;
	progress_start(&pl, cli, "commit");
	char id[LYR_ID_MAX];
	int r = cli_commit_ref(cli, ref, td.tag, &pl.p, id);
	progress_done(&pl);
	if (r == -EBUSY)
		return fail_mounted(cli, "commit", argv[i], ref);
	if (r < 0)
		return cli_fail("commit '%s': %s", argv[i], cli_strerror(r));
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "id", id);
		json_str(&j, "ref", ref);
		json_end(&j);
		return EXIT_OK;
	}
	return cli_print_id(cli, "id", id);
}

int cmd_tag(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("tag");
	int i = cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL);
	if (argc - i != 2)
		return cli_usage(cmd->name, "expects a name and a layer");
	if (check_tag(cmd->name, argv[i]))
		return EXIT_USAGE;
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i + 1], LYR_OBJ_LAYER, NULL, id) < 0)
		return EXIT_FAIL;
	int r = lyr_tag_set(cli->store, argv[i], id);
	if (r < 0)
		return cli_fail("tag '%s': %s", argv[i], cli_strerror(r));
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "tag", argv[i]);
		json_str(&j, "id", id);
		json_end(&j);
	}
	return EXIT_OK;
}

int cmd_untag(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("untag");
	int i = cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one tag name");
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;
	int r = lyr_tag_remove(s, argv[i]);
	if (r == -ENOENT)
		return cli_fail("untag '%s': no such tag", argv[i]);
	if (r < 0)
		return cli_fail("untag '%s': %s", argv[i], cli_strerror(r));
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "tag", argv[i]);
		json_end(&j);
	}
	return EXIT_OK;
}

/* Why a layer cannot be removed, from its record. */
static int fail_layer_busy(lyr_cli *cli, const char *text, const char *id)
{
	lyr_layer_info info = {0};
	if (lyr_layer_get(cli->store, id, &info) < 0)
		return cli_fail("rm '%s': in use", text);
	size_t ntags = 0;
	while (info.tags && info.tags[ntags])
		ntags++;
	if (ntags)
		cli_fail("rm '%s': layer is tagged '%s'%s (untag it first)", text, info.tags[0],
			 ntags > 1 ? " and more" : "");
	else if (info.children)
		cli_fail("rm '%s': layer is the parent of %u other layer%s", text, info.children,
			 info.children == 1 ? "" : "s");
	else
		cli_fail("rm '%s': layer is the parent of %u ref%s", text, info.refs,
			 info.refs == 1 ? "" : "s");
	lyr_layer_info_clear(&info);
	return EXIT_FAIL;
}

int cmd_rm(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("rm");
	int i = cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL);
	int n = argc - i;
	if (n < 1)
		return cli_usage(cmd->name, "expects at least one ID");

	/* Resolve everything first: a typo removes nothing. */
	_cleanup_free_ char (*ids)[LYR_ID_MAX] = calloc((size_t)n, LYR_ID_MAX);
	_cleanup_free_ lyr_obj_kind *kinds = calloc((size_t)n, sizeof(*kinds));
	if (!ids || !kinds)
		return cli_fail("out of memory");
	for (int k = 0; k < n; k++)
		if (cli_resolve(cli, argv[i + k], LYR_OBJ_NONE, &kinds[k], ids[k]) < 0)
			return EXIT_FAIL;

	int status = EXIT_OK;
	json_out j;
	if (cli->json) {
		json_begin(&j, stdout);
		json_arr_open(&j, "removed");
	}
	for (int k = 0; k < n; k++) {
		int r = lyr_store_rm(cli->store, ids[k]);
		if (r == -EBUSY)
			status = kinds[k] == LYR_OBJ_REF
					 ? fail_mounted(cli, "rm", argv[i + k], ids[k])
					 : fail_layer_busy(cli, argv[i + k], ids[k]);
		else if (r == -ENOENT) /* an earlier argument named it too */
			continue;
		else if (r < 0)
			status = cli_fail("rm '%s': %s", argv[i + k], cli_strerror(r));
		else if (cli->json)
			json_str(&j, NULL, ids[k]);
		else
			printf("%s\n", ids[k]);
	}
	if (cli->json) {
		json_arr_close(&j);
		json_end(&j);
	}
	return status;
}
