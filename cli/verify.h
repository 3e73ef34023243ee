/* verify.c: the layer half of `fsck` (--verify, and the marks of earlier verifications). */
#pragma once

#include "cli.h"

typedef struct cli_fsck_args {
	bool repair, verify;
	char **ids; /* --verify's layers (full IDs, NULL-terminated), or NULL for all */
} cli_fsck_args;

typedef struct cli_fsck_stats {
	lyr_verify_stats stats;
	double seconds;
} cli_fsck_stats;

/* Resolves the N layer names in ARGS into full IDs (a NULL-terminated heap list); on failure a
 * message names the argument and a negative errno is returned. */
int cli_fsck_resolve(lyr_cli *cli, char **args, size_t n, char ***ret_ids);
/* Verifies layers as A says (store open), sending findings to stdout or J's findings array.
 * Returns the problems left or -errno (after printing why). */
int cli_fsck_layers(lyr_cli *cli, const cli_fsck_args *a, json_out *j, cli_fsck_stats *ret);
/* "verified N layers (...) in S s: X MB/s", or a "verified" object in J. */
void cli_fsck_stats_print(lyr_cli *cli, const cli_fsck_stats *st, json_out *j);
