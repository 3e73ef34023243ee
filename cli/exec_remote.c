/* The registry side of exec's cache (docs/cache.md): a local miss asks each --cache-from
 * repository in order, and a result (run or answered) is published to each --cache-to one.
 * Neither ever fails the run: a registry that cannot be used gets one warning line naming it
 * and the cause, and the run goes on as it would without it. */
#include <string.h>
#include <time.h>

#include "exec.h"
#include "layerfs/oci.h"

/* The one warning line about registry NAME (DIR: "from" or "to"). */
static void warn(const char *dir, const char *name, const lyr_oci_error *err, int r,
		 const char *then)
{
	const char *why = err->why[0] ? err->why : strerror(-r);
	if (err->entry[0])
		fprintf(stderr, "layerfs: exec: warning: cache %s '%s': %s: %s; %s\n", dir, name,
			err->entry, why, then);
	else
		fprintf(stderr, "layerfs: exec: warning: cache %s '%s': %s; %s\n", dir, name, why,
			then);
}

int exec_remote_fetch(lyr_store *s, const lyr_exec_op *op, const char *key)
{
	for (size_t i = 0; i < op->n_cache_from; i++) {
		lyr_oci_error err;
		int r = lyr_oci_cache_fetch(s, op->cache_from[i], op->tls_verify, key, &err);
		if (r > 0)
			return 1;
		if (r < 0)
			warn("from", op->cache_from[i], &err, r, "continuing without it");
	}
	return 0;
}

void exec_remote_publish(lyr_store *s, const lyr_exec_op *op, const exec_result *res)
{
	if (op->n_cache_to == 0)
		return;
	lyr_action a = {.exit_code = res->status, .created = time(NULL)};
	lyr_action_output o[res->n_outputs + 1];
	for (size_t i = 0; i < res->n_outputs; i++) {
		o[i].target = (char *)res->outputs[i].target;
		memcpy(o[i].layer, res->outputs[i].layer, LYR_ID_MAX);
	}
	a.outputs = o;
	a.n_outputs = res->n_outputs;
	for (size_t i = 0; i < op->n_cache_to; i++) {
		lyr_oci_error err = {"", ""};
		int r = res->has_key ? lyr_oci_cache_publish(s, op->cache_to[i], op->tls_verify,
							     res->key, &a, &err)
				     : -ENOKEY;
		if (r == -ENOKEY)
			snprintf(err.why, sizeof err.why,
				 "the run has no cache key (a written input is a ref)");
		if (r < 0)
			warn("to", op->cache_to[i], &err, r, "the result is not published");
	}
}
