/* The cache key of an exec op over the store: per input, the content hash of its selectors
 * when every mount only reads it, else its layer ID (docs/exec-spec.md, "Cache key").
 *
 * A content hash is taken over the merged view of the input (a lyr_stack of its layer chain,
 * topmost first; a ref's upper on top), never over a mount, so computing a key mounts
 * nothing.  Layers carry their IDs into the hash source, which makes their entries cacheable
 * by layer. */
#include <string.h>

#include "commands.h"
#include "exec.h"
#include "layerfs/stack.h"

/* IDs of LAYER_ID and its ancestors, topmost first (heap strings in a NULL-terminated array). */
static int chain_ids(lyr_store *s, const char *layer_id, char ***ret)
{
	char **v = NULL;
	size_t n = 0;
	char id[LYR_ID_MAX];
	snprintf(id, sizeof id, "%s", layer_id);
	int r = 0;
	while (id[0]) {
		lyr_layer_info info = {0};
		r = lyr_layer_get(s, id, &info);
		if (r < 0)
			break;
		char **nv = realloc(v, (n + 2) * sizeof *nv);
		if (!nv || !(nv[n] = strdup(id))) {
			if (nv)
				v = nv;
			lyr_layer_info_clear(&info);
			r = -ENOMEM;
			break;
		}
		v = nv;
		v[++n] = NULL;
		snprintf(id, sizeof id, "%s", info.parent);
		lyr_layer_info_clear(&info);
	}
	if (r < 0) {
		lyr_strv_free(v);
		return r;
	}
	*ret = v;
	return 0;
}

int exec_view_hash(lyr_cli *cli, lyr_obj_kind kind, const char *id, const char *const *selectors,
		   size_t n, char ret_digest[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_(cli_view_clear) cli_view view = {0};
	int r = cli_view_get(cli, kind, id, &view);
	if (r < 0)
		return r;
	char **ids = NULL;
	if (kind == LYR_OBJ_LAYER) {
		r = chain_ids(cli->store, id, &ids);
	} else {
		lyr_ref_info info = {0};
		r = lyr_ref_get(cli->store, id, &info);
		if (r >= 0 && info.parent[0])
			r = chain_ids(cli->store, info.parent, &ids);
		lyr_ref_info_clear(&info);
	}
	if (r < 0)
		return r;
	/* the stack: a ref's upper (no ID: it changes) over the chain */
	size_t nl = view.nlowers + (view.upper != NULL);
	_cleanup_free_ const char **dirs = calloc(nl + 1, sizeof *dirs);
	_cleanup_free_ const char **lids = calloc(nl + 1, sizeof *lids);
	if (!dirs || !lids) {
		lyr_strv_free(ids);
		return -ENOMEM;
	}
	size_t k = 0;
	if (view.upper)
		dirs[k] = view.upper, lids[k++] = NULL;
	for (size_t i = 0; i < view.nlowers; i++, k++)
		dirs[k] = view.lowers[i], lids[k] = ids && ids[i] ? ids[i] : NULL;
	if (nl == 0) { /* scratch with nothing: hash an empty view */
		lyr_strv_free(ids);
		return -ENOENT;
	}
	lyr_stack *st = NULL;
	r = lyr_stack_open(dirs, nl, NULL, &st);
	if (r >= 0) {
		lyr_hash_source src;
		r = lyr_hash_source_stack(st, lids, &src);
		if (r >= 0) {
			r = lyr_hash_selectors(&src, selectors, n, NULL, ret_digest);
			lyr_hash_source_stack_free(&src);
		}
		lyr_stack_free(st);
	}
	lyr_strv_free(ids);
	return r;
}

int exec_cache_key(lyr_cli *cli, const lyr_exec_op *op, const lyr_obj_kind *kinds,
		   char ret_key[LYR_DIGEST_TEXT_LEN])
{
	lyr_exec_input *in = NULL;
	size_t n = 0;
	int r = lyr_exec_op_inputs(op, &in, &n);
	if (r < 0)
		return r;
	lyr_exec_input_digest *d = calloc(n, sizeof *d);
	char (*digests)[LYR_DIGEST_TEXT_LEN] = calloc(n, sizeof *digests);
	bool cacheable = true;
	if (!d || !digests)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		d[i].selector_digest = in[i].selector_digest;
		d[i].digest = digests[i];
		if (in[i].read_only) {
			r = exec_view_hash(cli, kinds[i], in[i].source,
					   (const char *const *)in[i].selectors, in[i].n_selectors,
					   digests[i]);
			if (r < 0)
				cli_fail("exec: hashing %s of '%s': %s",
					 in[i].n_selectors == 1 ? in[i].selectors[0] : "the selectors",
					 in[i].source, cli_strerror(r));
		} else if (kinds[i] == LYR_OBJ_LAYER) {
			snprintf(digests[i], LYR_DIGEST_TEXT_LEN, "%s", in[i].source);
		} else {
			cacheable = false; /* a written ref: its content has no name */
			break;
		}
	}
	if (r >= 0 && cacheable) {
		r = lyr_exec_cache_key(op, NULL, d, n, ret_key);
		if (r < 0)
			cli_fail("exec: computing the cache key: %s", cli_strerror(r));
		else
			r = 1;
	} else if (r >= 0) {
		r = 0;
	}
	free(d);
	free(digests);
	lyr_exec_inputs_free(in, n);
	return r;
}
