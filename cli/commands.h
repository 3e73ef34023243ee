/* The subcommands, one function each, grouped in files by concern: layers.c (import, new,
 * commit, tag, untag, rm), show.c (ls, inspect), diff.c, space.c (du, prune, fsck), mount.c
 * (mount, umount, overlay). */
#pragma once

#include <getopt.h>

#include "cli.h"
#include "layerfs/fs.h"

/* Long-option codes shared by every subcommand. */
enum { OPT_JSON = 1000, OPT_ROOT, OPT_FIRST_LOCAL };
#define CLI_COMMON_OPTIONS                                                                        \
	{"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, OPT_JSON},                  \
		{"root", required_argument, NULL, OPT_ROOT }

/* Handles -h/--help (prints and exits 0), --json, --root and getopt errors (exit 2).
 * Returns 1 when C was one of those, 0 when it is the command's own. */
int cli_common_opt(lyr_cli *cli, const cli_command *cmd, int c);
int cli_help(const cli_command *cmd);

/* Parses a subcommand's options: the common ones plus LOCAL (N_LOCAL entries, no terminator),
 * whose codes go to FN (which prints why and returns < 0 for a bad one).  Returns the index of the first
 * positional argument; usage errors exit with status 2. */
typedef int (*local_opt_fn)(void *ctx, int c, const char *arg);
int cli_parse(lyr_cli *cli, const cli_command *cmd, int argc, char **argv,
	      const struct option *local, size_t n_local, local_opt_fn fn, void *ctx);
/* The same with short options SHORTOPTS (which must include "h").  When FN refuses an option
 * (after printing why), exits with status 2. */
int cli_parse_short(lyr_cli *cli, const cli_command *cmd, int argc, char **argv,
		    const char *shortopts, const struct option *local, size_t n_local,
		    local_opt_fn fn, void *ctx);
/* A local_opt_fn for commands with one boolean flag: sets *(bool *)ctx. */
int cli_set_flag(void *ctx, int c, const char *arg);
const char *cli_strerror(int r);

/* The directories of a layer's or ref's view: a layer's chain (its own diff first), or a ref's
 * upper and work dirs over its parent's chain (none for scratch).  view.c. */
typedef struct cli_view {
	char **lowers; /* topmost first, NULL-terminated (maybe empty) */
	char **ids;    /* the layer ID of each lower, same order */
	size_t nlowers;
	char *upper, *work; /* refs only */
} cli_view;
int cli_view_get(lyr_cli *cli, lyr_obj_kind kind, const char *id, cli_view *ret);
void cli_view_clear(cli_view *v);
/* The view's layer stack, topmost first: the upper (refs), then the lowers.  A heap array of
 * pointers into V (NULL-terminated), its length in RET_N; NULL when out of memory. */
const char **cli_view_stack(const cli_view *v, size_t *ret_n);
/* EXIT_OK when ref ID's upper directory is there; otherwise says "WHAT 'TEXT': upper directory
 * 'PATH': CAUSE" and returns EXIT_FAIL (TEXT: the ref as the user wrote it). */
int cli_ref_upper_check(lyr_cli *cli, const char *what, const char *text, const char *id);

/* The backend that serves a view (backend.c). */
typedef struct cli_backend {
	lyr_fs_backend kind;	 /* LYR_FS_KERNEL or LYR_FS_FUSE */
	lyr_fs_kernel_mode mode; /* how the kernel may be used (LYR_KERNEL_NONE: not at all) */
	char why[1024];		 /* with FUSE under auto: why not the kernel ("" when not asked) */
	char empty[4096];	 /* with the kernel: the empty lower of a scratch tree */
} cli_backend;
/* The backend asked for: OPT (--backend), else $LAYERFS_BACKEND, else auto.  0, or EXIT_USAGE
 * after saying what is wrong (CMD: the command's name). */
int cli_backend_want(const char *cmd, const char *opt, lyr_fs_backend *ret);
/* Chooses the backend for CFG, the view VIEW of a layer or ref, under WANT: FUSE when asked
 * for; otherwise the kernel when this process may mount overlay (probed once per store) and
 * kernel overlayfs shows the view as the daemon would (its options, the chain's markers and
 * depth), else FUSE with *RET's why (under LYR_FS_KERNEL that is a failure: printed, -errno).
 * Under auto, LAYERFS_DEBUG prints why FUSE was chosen.  With the kernel, CFG's kernel_index
 * is on only when a lower layer of VIEW holds a hard-link group. */
int cli_backend_choose(lyr_cli *cli, lyr_fs_backend want, lyr_fs_config *cfg,
		       const cli_view *view, cli_backend *ret);

/* The content hash of SELECTORS (N; 0: the whole view) of a layer's or ref's view, through the
 * layer stack without mounting, with the store's digest cache for the immutable layers.  OPTS
 * (may be NULL) as lyr_hash_selectors takes them; its cache is replaced by the store's.
 * hash.c. */
int cli_hash_view(lyr_cli *cli, lyr_obj_kind kind, const char *id, const char *const *selectors,
		  size_t n, const lyr_hash_opts *opts, char ret_digest[LYR_DIGEST_TEXT_LEN]);

/* Commits REF into a layer: refused (-EBUSY) while mounted; readies the upper first (the
 * overlay's hard-link groups, lyr_fs_prepare_commit), then lyr_ref_commit.  layers.c. */
int cli_commit_ref(lyr_cli *cli, const char *ref, const char *tag, const lyr_progress *progress,
		   char *ret_id);

/* Prints ID as a line, or with --json as {KEY: ID}; returns EXIT_OK.  layers.c. */
int cli_print_id(lyr_cli *cli, const char *key, const char *id);

/* import --tar FILE|- [--parent LAYER]: one layer from a tar stream (arguments checked except
 * PARENT, which is resolved here).  oci.c. */
int cli_import_tar(lyr_cli *cli, const char *file, const char *parent, const char *tag,
		   const char *desc);

/* A duration: a sequence of NUMBER UNIT with units s, m, h, d (e.g. "1h30m", "7d"); a bare
 * number means seconds.  Seconds, or -1 when malformed.  space.c. */
int64_t cli_parse_duration(const char *text);

/* --tls-verify[=true|false] (push, pull, exec, cache) into *TLS_VERIFY (1 or 0); -1 after
 * printing "layerfs CMD: --tls-verify takes true or false, not 'ARG'".  oci.c. */
int cli_tls_verify_opt(const char *cmd, const char *arg, int *tls_verify);

int cmd_import(lyr_cli *cli, int argc, char **argv);
int cmd_save(lyr_cli *cli, int argc, char **argv);
int cmd_export(lyr_cli *cli, int argc, char **argv);
/* Adds to OP what the config of the nearest loaded image in its root's chain gives, as BuildKit
 * takes an image's config: Env entries whose keys OP does not set, WorkingDir and User unless
 * OP has them.  Returns 0 (also when ROOT has no config or does not resolve: the run reports
 * that), or -errno after printing why.  oci.c. */
struct lyr_exec_op;
int cli_image_defaults(lyr_cli *cli, struct lyr_exec_op *op);
int cmd_load(lyr_cli *cli, int argc, char **argv);
int cmd_push(lyr_cli *cli, int argc, char **argv);
int cmd_pull(lyr_cli *cli, int argc, char **argv);
int cmd_new(lyr_cli *cli, int argc, char **argv);
int cmd_commit(lyr_cli *cli, int argc, char **argv);
int cmd_tag(lyr_cli *cli, int argc, char **argv);
int cmd_untag(lyr_cli *cli, int argc, char **argv);
int cmd_rm(lyr_cli *cli, int argc, char **argv);
int cmd_ls(lyr_cli *cli, int argc, char **argv);
int cmd_inspect(lyr_cli *cli, int argc, char **argv);
int cmd_diff(lyr_cli *cli, int argc, char **argv);
int cmd_du(lyr_cli *cli, int argc, char **argv);
int cmd_prune(lyr_cli *cli, int argc, char **argv);
int cmd_fsck(lyr_cli *cli, int argc, char **argv);
int cmd_mount(lyr_cli *cli, int argc, char **argv);
int cmd_umount(lyr_cli *cli, int argc, char **argv);
int cmd_overlay(lyr_cli *cli, int argc, char **argv);
int cmd_hash(lyr_cli *cli, int argc, char **argv);
int cmd_exec(lyr_cli *cli, int argc, char **argv);
int cmd_cache(lyr_cli *cli, int argc, char **argv);
