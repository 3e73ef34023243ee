/* hash: the content hash of selector paths of a layer, a ref or a plain directory, as
 * hash.h's lyr_hash_selectors computes it (BuildKit-compatible).  Store objects are hashed
 * through the layer stack, without mounting, with the store's per-layer digest cache. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "layerfs/stack.h"

int cli_hash_view(lyr_cli *cli, lyr_obj_kind kind, const char *id, const char *const *selectors,
		  size_t n, const lyr_hash_opts *opts, char ret_digest[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_(cli_view_clear) cli_view view = {0};
	int r = cli_view_get(cli, kind, id, &view);
	if (r < 0)
		return r;
	/* A layer whose content no longer gives its ID has no digest to serve, cached or not. */
	if (view.nlowers && (r = lyr_layer_verify_failed(cli->store, view.ids[0])) != 0)
		return r > 0 ? -EUCLEAN : r;
	size_t n_dirs = view.nlowers + (view.upper ? 1 : 0);
	_cleanup_free_ const char **dirs = calloc(n_dirs + 1, sizeof(char *));
	_cleanup_free_ const char **ids = calloc(n_dirs + 1, sizeof(char *));
	if (!dirs || !ids)
		return -ENOMEM;
	size_t k = 0;
	if (view.upper)
		dirs[k++] = view.upper; /* changes: never cached */
	for (size_t i = 0; i < view.nlowers; i++, k++) {
		dirs[k] = view.lowers[i];
		ids[k] = view.ids[i];
	}
	lyr_stack *stack = NULL;
	r = lyr_stack_open(dirs, n_dirs, NULL, &stack);
	if (r < 0)
		return r;
	lyr_hash_source src;
	r = lyr_hash_source_stack(stack, ids, &src);
	if (r >= 0) {
		lyr_hash_opts o = opts ? *opts : (lyr_hash_opts){0};
		lyr_hash_cache cache;
		lyr_store_hash_cache(cli->store, &cache);
		o.cache = &cache;
		r = lyr_hash_selectors(&src, selectors, n, &o, ret_digest);
		lyr_hash_source_stack_free(&src);
	}
	lyr_stack_free(stack);
	return r;
}

typedef struct hash_args {
	bool follow_links;
	const char **include, **exclude;
	size_t n_include, n_exclude;
} hash_args;

static int push(const char ***v, size_t *n, const char *s)
{
	const char **nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

static int hash_opt(void *ctx, int c, const char *arg)
{
	hash_args *a = ctx;
	switch (c) {
	case 'L':
		a->follow_links = true;
		return 0;
	case 'i':
		return push(&a->include, &a->n_include, arg);
	case 'x':
		return push(&a->exclude, &a->n_exclude, arg);
	default:
		return -1;
	}
}

/* A mistyped glob is a usage error, not a pattern that silently matches nothing. */
static bool bad_pattern(const char *cmd, const char *opt, const char *const *pats, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const char *why;
		if (lyr_hash_check_pattern(pats[k], &why) < 0) {
			cli_usage(cmd, "%s '%s': %s", opt, pats[k], why);
			return true;
		}
	}
	return false;
}

/* What to hash: a store object, or a plain directory.  A path-like argument ("/", "./x", ".")
 * is a directory; otherwise an ID or tag, and failing that a directory of that name. */
typedef struct hash_target {
	lyr_obj_kind kind; /* LYR_OBJ_NONE: a directory */
	char id[LYR_ID_MAX];
	int dirfd;
} hash_target;

static int pick_target(lyr_cli *cli, const char *text, hash_target *t)
{
	t->dirfd = -1;
	t->kind = LYR_OBJ_NONE;
	bool pathlike = strchr(text, '/') || !strcmp(text, ".") || !strcmp(text, "..");
	if (!pathlike) {
		lyr_store *s = cli_store(cli);
		if (!s)
			return -EIO;
		int r = lyr_store_resolve(s, text, &t->kind, t->id);
		if (r == 0)
			return 0;
		struct stat st;
		if (r != -ENOENT || stat(text, &st) < 0 || !S_ISDIR(st.st_mode))
			return cli_resolve(cli, text, LYR_OBJ_NONE, &t->kind, t->id);
		t->kind = LYR_OBJ_NONE;
	}
	t->dirfd = open(text, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dirfd < 0) {
		cli_fail("hash '%s': %s", text, strerror(errno));
		return -errno;
	}
	return 0;
}

static int hash_target_run(lyr_cli *cli, hash_target *t, const char *const *sel, size_t n,
			   const lyr_hash_opts *o, char *ret)
{
	if (t->kind != LYR_OBJ_NONE)
		return cli_hash_view(cli, t->kind, t->id, sel, n, o, ret);
	lyr_hash_source src;
	int r = lyr_hash_source_dir(t->dirfd, NULL, &src);
	if (r < 0)
		return r;
	r = lyr_hash_selectors(&src, sel, n, o, ret);
	lyr_hash_source_dir_free(&src);
	return r;
}

int cmd_hash(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("hash");
	static const struct option opts[] = {
		{"follow-links", no_argument, NULL, 'L'},
		{"include", required_argument, NULL, 'i'},
		{"exclude", required_argument, NULL, 'x'},
	};
	hash_args a = {0};
	int i = cli_parse(cli, cmd, argc, argv, opts, 3, hash_opt, &a);
	if (argc - i < 1) {
		free(a.include);
		free(a.exclude);
		return cli_usage(cmd->name, "expects an ID or a directory");
	}
	const char *what = argv[i];
	const char *const *sel = (const char *const *)argv + i + 1;
	size_t n = (size_t)(argc - i - 1);

	hash_target t = {.dirfd = -1};
	int status = EXIT_USAGE;
	if (bad_pattern(cmd->name, "--include", a.include, a.n_include) ||
	    bad_pattern(cmd->name, "--exclude", a.exclude, a.n_exclude))
		goto out;
	status = EXIT_FAIL;
	if (pick_target(cli, what, &t) < 0)
		goto out;

	char err_path[PATH_MAX] = "";
	progress_line pl;
	progress_start(&pl, cli, "hash");
	lyr_hash_opts o = {
		.follow_links = a.follow_links,
		.include = a.include,
		.n_include = a.n_include,
		.exclude = a.exclude,
		.n_exclude = a.n_exclude,
		.err_path = err_path,
		.progress = &pl.p,
	};
	char digest[LYR_DIGEST_TEXT_LEN];
	int r = hash_target_run(cli, &t, sel, n, &o, digest);
	progress_done(&pl);
	if (r < 0) {
		if (r == -EUCLEAN)
			cli_fail("hash '%s': %s", what, lyr_store_last_error());
		else if (err_path[0] && r == -EINVAL)
			cli_fail("hash '%s': '%s': selector leaves the root", what, err_path);
		else if (err_path[0])
			cli_fail("hash '%s': '%s': %s", what, err_path, cli_strerror(r));
		else
			cli_fail("hash '%s': %s", what, cli_strerror(r));
		goto out;
	}
	if (!cli->json) {
		printf("%s\n", digest);
		status = EXIT_OK;
		goto out;
	}

	/* --json: the combined digest and that of each selector left after dedupe */
	char **list = NULL;
	size_t nlist = 0;
	static const char *const whole[] = {"/"};
	r = lyr_hash_selectors_dedupe(n ? sel : whole, n ? n : 1, o.n_include || o.n_exclude, &list,
				      &nlist, NULL);
	if (r < 0) {
		cli_fail("hash '%s': %s", what, cli_strerror(r));
		goto out;
	}
	json_out j;
	json_begin(&j, stdout);
	json_str(&j, "digest", digest);
	json_arr_open(&j, "selectors");
	for (size_t k = 0; k < nlist && r >= 0; k++) {
		char one[LYR_DIGEST_TEXT_LEN];
		const char *s1 = list[k];
		r = hash_target_run(cli, &t, &s1, 1, &o, one);
		if (r < 0)
			break;
		json_obj_open(&j, NULL);
		json_str(&j, "selector", list[k]);
		json_str(&j, "digest", one);
		json_obj_close(&j);
	}
	json_arr_close(&j);
	json_end(&j);
	lyr_hash_selectors_free(list, nlist);
	status = r < 0 ? cli_fail("hash '%s': %s", what, cli_strerror(r)) : EXIT_OK;
out:
	if (t.dirfd >= 0)
		close(t.dirfd);
	free(a.include);
	free(a.exclude);
	return status;
}
