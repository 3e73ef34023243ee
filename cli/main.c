/* layerfs: global options (--root, --json, --help, --version), the command table, dispatch,
 * and the helpers every command shares (messages, exit codes, opening the store, resolving
 * IDs).  Exit status: 0 success, 1 the operation failed, 2 usage error. */
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "layerfs/fs.h"
#include "layerfs/version.h"

static const cli_command commands[] = {
    {"import", cmd_import, "DIR | --tar FILE|- [--parent LAYER] [--tag NAME] [--desc TEXT]",
     "copy a directory tree, or one tar layer, into a new layer; prints its ID",
     "  --tar FILE|-     read one layer tar (plain, gzip or zstd; OCI whiteouts) from FILE\n"
     "                   or standard input instead of a directory\n"
     "  --parent LAYER   the layer the tar's changes apply to (--tar only; default none)\n"
     "  --tag NAME       tag the new layer\n"
     "  --desc TEXT      description kept with the layer\n"},
    {"new", cmd_new, "[LAYER] [--desc TEXT]",
     "create a mutable ref on LAYER (or scratch); prints the ref ID",
     "  --desc TEXT    description kept with the ref\n"},
    {"commit", cmd_commit, "REF [--tag NAME]",
     "freeze REF's changes into a layer; prints the layer ID",
     "  --tag NAME     tag the new layer\n"},
    {"diff", cmd_diff, "ID", "list changed paths of a layer or ref against its parent (A, C, D)",
     NULL},
    {"ls", cmd_ls, "[--no-trunc]", "list layers and refs", "  --no-trunc     print full IDs\n"},
    {"inspect", cmd_inspect, "ID", "show everything known about a layer or ref", NULL},
    {"tag", cmd_tag, "NAME ID", "point tag NAME at a layer (moves an existing tag)", NULL},
    {"untag", cmd_untag, "NAME", "remove a tag", NULL},
    {"rm", cmd_rm, "ID...", "remove layers or refs that nothing else needs", NULL},
    {"du", cmd_du, "", "show each layer's and ref's own size and the total", NULL},
    {"prune", cmd_prune, "[--all] [--keep-duration D]",
     "remove layers no tag, ref or child needs (and with --all, unmounted refs)",
     "  --all                 remove unmounted refs too\n"
     "  --keep-duration D     keep what was created in the last D (e.g. 30s, 10m, 24h, 7d)\n"},
    {"mount", cmd_mount, "ID MOUNTPOINT [-f] [--suid] [--dev] [--backend B] [-o OPTS]",
     "mount a ref read-write (a layer read-only): kernel overlayfs or FUSE",
     "  -f, --foreground     serve in this process until unmounted (FUSE)\n"
     "  --backend B          auto (default; $LAYERFS_BACKEND), kernel or fuse\n"
     "  --suid               honour set-id bits (default nosuid; -o suid does the same)\n"
     "  --dev                let device nodes open (default nodev; -o dev does the same)\n"
     "  -o, --options OPTS   mount options, as fuse-overlayfs takes them (ro, allow_other,\n"
     "                       writeback=0, timeout=S, threaded=0, squash_to_root, ...)\n"},
    {"umount", cmd_umount, "MOUNTPOINT", "unmount and wait for the serving process to finish",
     NULL},
    {"overlay", cmd_overlay, "-o lowerdir=A:B[,upperdir=U,workdir=W][,...] MOUNTPOINT",
     "fuse-overlayfs-compatible mount of plain directories (see 'layerfs overlay --help')", NULL},
    {"hash", cmd_hash,
     "ID|DIR [SELECTOR...] [--follow-links] [--include GLOB]... [--exclude GLOB]...",
     "content hash of selector paths (BuildKit-compatible); prints sha256:<hex>",
     "  --follow-links     follow a symlink in a selector's last component\n"
     "  --include GLOB     hash only paths matching GLOB (repeatable)\n"
     "  --exclude GLOB     leave out paths matching GLOB (repeatable)\n"},
    {"exec", cmd_exec, "[OPTION]... ROOT [--] CMD [ARG...] | --spec FILE.json",
     "run a command in a sandbox over layer views; commit its outputs",
     "  --mount SPEC          type=bind|cache|tmpfs,target=PATH[,source=ID][,selector=P]\n"
     "                        [,readonly][,output][,id=NAME][,sharing=shared|private|locked]\n"
     "                        [,size=BYTES]\n"
     "  --env K=V             environment variable (PATH is added when none is given)\n"
     "  --proxy-env K=V       proxy variable (both cases set; not part of the cache key)\n"
     "  --cwd DIR             working directory inside the sandbox\n"
     "  --user UID[:GID]      user (or NAME[:GROUP] from the root's /etc/passwd, /etc/group)\n"
     "  --network none|host   network namespace (default none)\n"
     "  --security sandbox|insecure\n"
     "                        the default seccomp filter, or none (default sandbox)\n"
     "  --hostname H          hostname (default layerfs)\n"
     "  --cache               answer from the action cache when the same run is stored\n"
     "  -i, --interactive     pass stdin to the command\n"
     "  --commit-on-failure   commit outputs even when the command exits non-zero\n"
     "  --cache-from NAME     on a local miss, look the result up in registry repository\n"
     "                        NAME (REGISTRY/REPOSITORY; repeatable, tried in order;\n"
     "                        implies --cache)\n"
     "  --cache-to NAME       publish the result to registry repository NAME (repeatable)\n"
     "  --tls-verify=false    for every --cache-from and --cache-to registry: as for push\n"
     "  --spec FILE.json      read the whole op from a file (docs/exec-spec.md)\n"
     "  --backend B           views through auto (default; $LAYERFS_BACKEND), kernel or fuse\n"
     "Exit status: the command's; 125 layerfs failed; 126 cannot execute; 127 not found.\n"},
    {"load", cmd_load, "SOURCE [--tag NAME] [--platform OS/ARCH[/VARIANT]]",
     "load an OCI or docker image, one layer per image layer; prints the top layer's ID",
     "  SOURCE              oci:DIR[:REF], oci-archive:FILE[:REF],\n"
     "                      docker-archive:FILE[:NAME[:TAG]]\n"
     "  --tag NAME          tag the top layer\n"
     "  --platform P        the image of an index for platform P (default: linux and\n"
     "                      this machine's architecture)\n"},
    {"save", cmd_save, "LAYER|TAG -o DEST [--compression gzip|zstd|none]",
     "write a layer's chain as an OCI image; prints the manifest digest",
     "  -o, --output DEST      oci:DIR[:TAG] (an OCI image layout), oci-archive:FILE[:TAG],\n"
     "                         docker-archive:FILE[:NAME[:TAG]]\n"
     "  --compression C        gzip (default), zstd or none (docker-archive: always none)\n"},
    {"export", cmd_export, "LAYER|REF|TAG [-o FILE|-] [--diff]",
     "write a layer's or ref's merged tree (or its own changes) as one tar",
     "  -o, --output FILE   write the tar to FILE (replaced whole at the end; a failed\n"
     "                      export leaves no FILE); '-' or none: standard output, which\n"
     "                      must not be a terminal; prints the tar's digest\n"
     "  --diff              only this layer's or ref's own changes, as the OCI layer tar\n"
     "                      'save --compression none' writes (its digest is the diff_id)\n"},
    {"push", cmd_push, "LAYER|TAG REGISTRY/REPOSITORY[:TAG] [--tls-verify=false]",
     "upload a layer's chain as an image to a registry; prints the manifest digest",
     "  --tls-verify=false  do not verify the registry's TLS certificate, and speak plain\n"
     "                      HTTP to a registry without TLS (plain HTTP is the default for\n"
     "                      localhost, 127.0.0.1 and [::1] only)\n"},
    {"pull", cmd_pull,
     "REGISTRY/REPOSITORY[:TAG|@DIGEST] [--tag NAME] [--platform P] [--tls-verify=false]",
     "download an image from a registry into layers; prints the top layer's ID",
     "  --tag NAME          tag the top layer\n"
     "  --platform P        the image of an index for platform P (default: linux and\n"
     "                      this machine's architecture)\n"
     "  --tls-verify=false  as for push\n"},
    {"cache", cmd_cache, "ls NAME | prune NAME --older-than DURATION [--tls-verify=false]",
     "list or delete the exec results kept in registry repository NAME (docs/cache.md)",
     "  ls NAME                   each record: key, created, age, size of its blobs\n"
     "  prune NAME --older-than D delete the records created more than D ago (e.g. 12h,\n"
     "                            7d); the registry's garbage collection frees the blobs\n"
     "  --tls-verify=false        as for push\n"},
    {"fsck", cmd_fsck, "[--repair] [--verify [LAYER...]]",
     "check the store; --repair fixes what it can",
     "  --repair       finish or undo interrupted operations, re-adopt layers and refs the\n"
     "                 database lost, clear stale mounts, unmount and release what dead runs\n"
     "                 left, tighten store modes to 0700 (layer data is never deleted);\n"
     "                 verify layers marked by an earlier --verify again\n"
     "  --verify       hash every layer (or each LAYER) again and compare it with its ID;\n"
     "                 name the files that changed and mark a changed layer as failed\n"},
};

const cli_command *cli_find(const char *name)
{
	for (size_t i = 0; i < LYR_ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("layerfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return EXIT_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "layerfs %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry 'layerfs %s --help'.\n", cmd);
	va_end(ap);
	return EXIT_USAGE;
}

const char *cli_strerror(int r)
{
	switch (-r) {
	case EPROTO:
		return "written by a newer version of layerfs";
	default:
		return strerror(-r);
	}
}

/* Opens the store; where there is none and MISSING_OK, returns NULL without a message. */
static lyr_store *store_open(lyr_cli *cli, unsigned mode, bool missing_ok, bool *ret_failed)
{
	*ret_failed = false;
	if (cli->store)
		return cli->store;
	_cleanup_free_ char *dflt = NULL;
	const char *root = cli->root;
	if (!root) {
		dflt = lyr_store_default_root();
		if (!dflt) {
			*ret_failed = true;
			cli_fail("no store directory: set --root or $LAYERFS_ROOT");
			return NULL;
		}
		root = dflt;
	}
	int r = lyr_store_open_mode(root, mode, &cli->store);
	if (r == -ENOENT && missing_ok)
		return NULL;
	*ret_failed = r < 0;
	if (r < 0) {
		const char *why = lyr_store_last_error();
		if (why && *why)
			cli_fail("%s", why);
		else
			cli_fail("store '%s': %s", root, cli_strerror(r));
		return NULL;
	}
	/* Stores made while their directories were 0755 are tightened by every command but
	 * fsck, which reports them instead; a user other than the owner changes nothing. */
	if (!(mode & (LYR_OPEN_CHECK | LYR_OPEN_REPAIR)))
		lyr_store_modes(cli->store, true, NULL, NULL);
	return cli->store;
}

lyr_store *cli_store_mode(lyr_cli *cli, unsigned mode)
{
	bool failed;
	return store_open(cli, mode, false, &failed);
}

lyr_store *cli_store_if_any(lyr_cli *cli, bool *ret_failed)
{
	return store_open(cli, LYR_OPEN_EXISTING, true, ret_failed);
}

lyr_store *cli_store(lyr_cli *cli)
{
	return cli_store_mode(cli, LYR_OPEN_EXISTING);
}

lyr_store *cli_store_create(lyr_cli *cli)
{
	return cli_store_mode(cli, LYR_OPEN_CREATE);
}

int cli_resolve(lyr_cli *cli, const char *text, lyr_obj_kind want, lyr_obj_kind *ret_kind,
		char *ret_id)
{
	lyr_store *s = cli_store(cli);
	if (!s)
		return -EIO;
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	int r = lyr_store_resolve(s, text, &kind, id);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		cli_fail("'%s': no such %s", text,
			 want == LYR_OBJ_LAYER ? "layer or tag"
			 : want == LYR_OBJ_REF ? "ref"
					       : "layer, ref or tag");
		return r;
	case -EINVAL:
		cli_fail("'%s': not an ID or tag (an ID prefix needs %d hex digits at least)", text,
			 LYR_MIN_PREFIX);
		return r;
	case -EEXIST:
		cli_fail("'%s': ambiguous, more than one ID starts with it", text);
		return r;
	default:
		cli_fail("'%s': %s", text, cli_strerror(r));
		return r;
	}
	if (want != LYR_OBJ_NONE && kind != want) {
		cli_fail("'%s': is a %s, not a %s", text, kind == LYR_OBJ_LAYER ? "layer" : "ref",
			 want == LYR_OBJ_LAYER ? "layer" : "ref");
		return -EINVAL;
	}
	if (ret_kind)
		*ret_kind = kind;
	memcpy(ret_id, id, LYR_ID_MAX);
	return 0;
}

int cli_help(const cli_command *cmd)
{
	printf("Usage: layerfs [--root DIR] [--json] %s %s\n\n%c%s.\n", cmd->name, cmd->usage,
	       cmd->summary[0] - 32 * (cmd->summary[0] >= 'a' && cmd->summary[0] <= 'z'),
	       cmd->summary + 1);
	printf("\nOptions:\n%s"
	       "  --json         machine-readable output on stdout\n"
	       "  --root DIR     the store (default $LAYERFS_ROOT, $XDG_DATA_HOME/layerfs)\n"
	       "  -h, --help     show this help\n",
	       cmd->help ? cmd->help : "");
	return EXIT_OK;
}

int cli_common_opt(lyr_cli *cli, const cli_command *cmd, int c)
{
	switch (c) {
	case 'h':
		cli_help(cmd);
		exit(EXIT_OK);
	case OPT_JSON:
		cli->json = true;
		return 1;
	case OPT_ROOT:
		if (!*optarg) {
			fprintf(stderr, "layerfs %s: --root: empty store directory\n", cmd->name);
			exit(EXIT_USAGE);
		}
		cli->root = optarg;
		return 1;
	case '?':
		fprintf(stderr, "Try 'layerfs %s --help'.\n", cmd->name);
		exit(EXIT_USAGE);
	default:
		return 0;
	}
}

int cli_parse(lyr_cli *cli, const cli_command *cmd, int argc, char **argv,
	      const struct option *local, size_t n_local, local_opt_fn fn, void *ctx)
{
	return cli_parse_short(cli, cmd, argc, argv, "h", local, n_local, fn, ctx);
}

int cli_parse_short(lyr_cli *cli, const cli_command *cmd, int argc, char **argv,
		    const char *shortopts, const struct option *local, size_t n_local,
		    local_opt_fn fn, void *ctx)
{
	struct option opts[32] = {CLI_COMMON_OPTIONS};
	size_t n = 3;
	for (size_t i = 0; i < n_local && n + 1 < LYR_ARRAY_SIZE(opts); i++)
		opts[n++] = local[i];
	int c;
	while ((c = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		if (cli_common_opt(cli, cmd, c))
			continue;
		if (!fn || fn(ctx, c, optarg) < 0) {
			/* the callback said why */
			fprintf(stderr, "Try 'layerfs %s --help'.\n", cmd->name);
			exit(EXIT_USAGE);
		}
	}
	return optind;
}

int cli_set_flag(void *ctx, int c, const char *arg)
{
	(void)c, (void)arg;
	*(bool *)ctx = true;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: layerfs [--root DIR] [--json] COMMAND [ARG...]\n\n"
		   "A copy-on-write layer store with a FUSE overlay filesystem.\n\nCommands:\n");
	for (size_t i = 0; i < LYR_ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nGlobal options:\n"
		   "  --root DIR     the store (default $LAYERFS_ROOT, $XDG_DATA_HOME/layerfs,\n"
		   "                 /var/lib/layerfs for root)\n"
		   "  --json         machine-readable output on stdout\n"
		   "  --version      print the version\n"
		   "  -h, --help     show this help; 'layerfs COMMAND --help' for a command\n"
		   "\nExit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	/* mount(8) runs "mount.fuse.layerfs SOURCE MOUNTPOINT -o OPTS" for type fuse.layerfs;
	 * podman and buildah run their mount_program as "PROGRAM -o OPTS MOUNTPOINT", which
	 * layerfs-overlay answers as fuse-overlayfs would. */
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	if (strcmp(base, "mount.fuse.layerfs") == 0 || strcmp(base, "layerfs-overlay") == 0)
		return lyr_fs_overlay_main(argc, argv);

	lyr_cli cli = {.tty = isatty(STDOUT_FILENO)};
	static const struct option opts[] = {
	    {"root", required_argument, NULL, OPT_ROOT},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};

	/* Global options stop at the first non-option: the command name. */
	int c;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ROOT:
			if (!*optarg) {
				fprintf(stderr, "layerfs: --root: empty store directory\n");
				return EXIT_USAGE;
			}
			cli.root = optarg;
			break;
		case OPT_JSON:
			cli.json = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("layerfs %s\n", LAYERFS_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const cli_command *cmd = cli_find(argv[optind]);
	if (!cmd) {
		fprintf(stderr, "layerfs: unknown command '%s'\nTry 'layerfs --help'.\n",
			argv[optind]);
		return EXIT_USAGE;
	}
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	/* getopt names the program in its messages: "layerfs tag: invalid option -- 'x'" */
	char prog[64];
	snprintf(prog, sizeof(prog), "layerfs %s", cmd->name);
	sub_argv[0] = prog;
	optind = 0; /* a full getopt reset for the subcommand */
	int status = cmd->run(&cli, sub_argc, sub_argv);
	lyr_store_free(cli.store);
	return status;
}
