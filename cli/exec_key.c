/* The cache key of an exec op over the store: per input, the content hash of its selectors
 * when every mount only reads it, else its layer ID (docs/exec-spec.md, "Cache key").
 * Content hashes are taken over the input's layer stack, never over a mount (cli_hash_view,
 * with the store's per-layer digest cache), so computing a key mounts nothing.  An input with a
 * layer that failed verification has no content hash: with --cache that is an error, without
 * it the run has no key (and its result is not stored). */
#include <string.h>

#include "commands.h"
#include "exec.h"

int exec_cache_key(lyr_cli *cli, const lyr_exec_op *op, const lyr_obj_kind *kinds,
		   char ret_key[LYR_DIGEST_TEXT_LEN])
{
	lyr_exec_input *in = NULL;
	size_t n = 0;
	int r = lyr_exec_op_inputs(op, &in, &n);
	if (r < 0)
		return r;
	lyr_exec_input_digest *d = calloc(n, sizeof *d);
	char(*digests)[LYR_DIGEST_TEXT_LEN] = calloc(n, sizeof *digests);
	bool cacheable = true;
	if (!d || !digests)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		d[i].selector_digest = in[i].selector_digest;
		d[i].digest = digests[i];
		if (in[i].read_only) {
			r = cli_hash_view(cli, kinds[i], in[i].source,
					  (const char *const *)in[i].selectors, in[i].n_selectors,
					  NULL, digests[i]);
			if (r == -EUCLEAN && !op->cache) {
				/* damaged input: the run may go on, but its result has no key */
				fprintf(stderr, "layerfs: exec: '%s': %s; the result is not cached\n",
					in[i].source, lyr_store_last_error());
				r = 0;
				cacheable = false;
				break;
			}
			if (r == -EUCLEAN)
				cli_fail("exec: '%s': %s", in[i].source, lyr_store_last_error());
			else if (r < 0)
				cli_fail("exec: hashing %s of '%s': %s",
					 in[i].n_selectors == 1 ? in[i].selectors[0]
								: "the selectors",
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
