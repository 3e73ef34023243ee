/* Private to cli/exec*.c: the run behind `layerfs exec`, split from option parsing and output.
 *   exec.c      options and --spec into an op, the result for people and --json;
 *   exec_key.c  the op's cache key over the store (content hashes of read-only inputs);
 *   exec_run.c  views mounted, the sandbox run, outputs committed, everything cleaned up;
 *   exec_remote.c  the cache in registries: --cache-from and --cache-to. */
#pragma once

#include "cli.h"
#include "layerfs/exec.h"
#include "layerfs/fs.h"

/* Exit status when layerfs itself failed (as `docker run` reports it). */
#define EXEC_EXIT_FAILED 125

typedef struct exec_output {
	char target[4096];
	char layer[LYR_ID_MAX];
} exec_output;

typedef struct exec_result {
	int status;  /* the command's, as lyr_exec_sandbox_run reports it */
	bool cached; /* answered from the action cache, nothing ran */
	bool has_key;
	char key[LYR_DIGEST_TEXT_LEN];
	exec_output *outputs; /* heap, mount order, the root first */
	size_t n_outputs;
	lyr_fs_backend backend; /* what served the root view (LYR_FS_AUTO: nothing mounted) */
	char fallback[1024];	/* with FUSE under auto: why not the kernel ("" otherwise) */
} exec_result;

void exec_result_clear(exec_result *res);

/* The cache key of validated OP whose IDs are resolved to full IDs; KINDS[i] is the kind of
 * input i (lyr_exec_op_inputs order).  exec_key.c.  Returns 1 with RET_KEY when the run can be
 * cached, 0 when not (a written input is a ref: its content has no ID), or a negative errno
 * after printing why. */
int exec_cache_key(lyr_cli *cli, const lyr_exec_op *op, const lyr_obj_kind *kinds,
		   char ret_key[LYR_DIGEST_TEXT_LEN]);

/* Runs validated OP: resolves its IDs (writing full IDs back into OP), answers from the action
 * cache with op->cache, otherwise mounts, runs, commits and cleans up.  Returns 0 with RES
 * filled (status = the command's), or a negative errno after printing why (report 125). */
int exec_run(lyr_cli *cli, lyr_exec_op *op, lyr_fs_backend want, exec_result *res);

/* exec_remote.c (docs/cache.md).  Asks each of OP's --cache-from registries in order for KEY;
 * 1 when one answered (its result is in S's action cache now), 0 otherwise (a warning printed
 * for each registry that failed). */
int exec_remote_fetch(lyr_store *s, const lyr_exec_op *op, const char *key);
/* Publishes RES to each of OP's --cache-to registries; a failure is a warning only. */
void exec_remote_publish(lyr_store *s, const lyr_exec_op *op, const exec_result *res);
