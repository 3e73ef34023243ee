/* The layer half of fsck: `fsck --verify [LAYER...]` hashes layers again and compares them with
 * their IDs (lyr_store_verify); a plain `fsck` reports the marks earlier verifications left and
 * `fsck --repair` verifies the marked layers again.  Findings go out like fsck's own, with the
 * layer and the entry apart in --json. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "verify.h"

int cli_fsck_resolve(lyr_cli *cli, char **args, size_t n, char ***ret_ids)
{
	char **ids = calloc(n + 1, sizeof *ids);
	if (!ids)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		char id[LYR_ID_MAX];
		r = cli_resolve(cli, args[i], LYR_OBJ_LAYER, NULL, id);
		if (r >= 0 && !(ids[i] = strdup(id)))
			r = -ENOMEM;
	}
	if (r < 0) {
		lyr_strv_free(ids);
		return r;
	}
	*ret_ids = ids;
	return 0;
}

typedef struct out_ctx {
	json_out *j;
} out_ctx;

static void on_finding(void *ctx, const lyr_verify_finding *f)
{
	out_ctx *o = ctx;
	char line[2048];
	if (f->path)
		snprintf(line, sizeof line, "layer %s: %s: %s", f->layer, f->path, f->problem);
	else
		snprintf(line, sizeof line, "layer %s: %s", f->layer, f->problem);
	if (!o->j) {
		printf("%s: %s\n", f->repaired ? "repaired" : "problem", line);
		return;
	}
	json_obj_open(o->j, NULL);
	json_str(o->j, "finding", line);
	json_bool(o->j, "repaired", f->repaired);
	json_str(o->j, "layer", f->layer);
	json_str(o->j, "path", f->path);
	json_str(o->j, "problem", f->problem);
	json_obj_close(o->j);
}

int cli_fsck_layers(lyr_cli *cli, const cli_fsck_args *a, json_out *j, cli_fsck_stats *ret)
{
	out_ctx o = {j};
	lyr_verify_opts vo = {
	    .repair = a->repair,
	    .marked_only = !a->verify && a->repair,
	    .no_hash = !a->verify && !a->repair,
	    .fn = on_finding,
	    .ctx = &o,
	};
	size_t n = 0;
	while (a->ids && a->ids[n])
		n++;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = lyr_store_verify(cli->store, (const char *const *)a->ids, n, &vo, &ret->stats);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ret->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (r < 0)
		cli_fail("fsck: %s", lyr_store_last_error());
	return r;
}

void cli_fsck_stats_print(lyr_cli *cli, const cli_fsck_stats *st, json_out *j)
{
	double mbs = st->seconds > 0 ? (double)st->stats.bytes / st->seconds / 1e6 : 0;
	if (cli->json) {
		json_obj_open(j, "verified");
		json_u64(j, "layers", st->stats.layers);
		json_u64(j, "files", st->stats.files);
		json_u64(j, "bytes", st->stats.bytes);
		json_u64(j, "milliseconds", (uint64_t)(st->seconds * 1000 + 0.5));
		json_u64(j, "mb_per_s", (uint64_t)(mbs + 0.5));
		json_obj_close(j);
		return;
	}
	char size[32];
	fmt_size(st->stats.bytes, size, sizeof size);
	printf("verified %llu layer%s (%llu files, %s) in %.2f s: %.0f MB/s\n",
	       (unsigned long long)st->stats.layers, st->stats.layers == 1 ? "" : "s",
	       (unsigned long long)st->stats.files, size, st->seconds, mbs);
}
