/* mount, umount and overlay: the store's views through the FUSE overlay (fs/).
 *   mount ID MOUNTPOINT [-f] [-o OPTS]: a ref read-write over its parent chain, a layer read-only.
 *   umount MOUNTPOINT: unmounts and waits for the serving process to finish.
 *   overlay ...: the fuse-overlayfs-compatible entry point (no store involved).
 * A ref's mount is recorded in the store: the command claims the ref under its own pid before it
 * mounts (so two mounts of one ref cannot both succeed), then hands the record to the serving
 * process; a record whose process is gone is stale and the store clears it. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "commands.h"

typedef struct mount_opts {
	bool foreground;
	const char *backend; /* --backend */
	lyr_fs_options *fs;
} mount_opts;

static int mount_opt(void *ctx, int c, const char *arg)
{
	mount_opts *o = ctx;
	if (c == 'f') {
		o->foreground = true;
		return 0;
	}
	if (c == 'B') {
		o->backend = arg;
		return 0;
	}
	if (c == 'S' || c == 'D') {
		lyr_fs_config *cfg = lyr_fs_options_config(o->fs);
		*(c == 'S' ? &cfg->nosuid : &cfg->nodev) = false;
		return 0;
	}
	if (c == 'o') {
		int r = lyr_fs_options_parse(o->fs, arg);
		if (r < 0)
			fprintf(stderr, "layerfs mount: -o %s: %s\n", arg,
				*lyr_fs_options_error(o->fs) ? lyr_fs_options_error(o->fs)
							     : cli_strerror(r));
		return r;
	}
	return -1;
}

struct live_ctx {
	lyr_store *store;
	const char *ref, *mountpoint;
};

static void record_live(void *ctx, pid_t pid)
{
	struct live_ctx *l = ctx;
	int r = lyr_ref_set_mount(l->store, l->ref, l->mountpoint, pid);
	if (r < 0)
		fprintf(stderr, "layerfs: mount '%s': recording the mount: %s\n", l->ref,
			cli_strerror(r));
}

/* Mounts the view through kernel overlayfs and records a ref's mount; 0 or -errno with ERR
 * saying why (nothing recorded then). */
static int mount_kernel(lyr_cli *cli, const char *id, lyr_obj_kind kind, const lyr_fs_config *cfg,
			const cli_backend *b, const char *abs, lyr_fs_error *err)
{
	uint64_t mnt_id = 0;
	int r = lyr_fs_kernel_mount(cfg, b->mode, b->empty, abs, err, &mnt_id);
	if (r < 0 || kind != LYR_OBJ_REF)
		return r;
	r = lyr_ref_set_kernel_mount(cli->store, id, abs, mnt_id);
	if (r < 0) {
		umount2(abs, MNT_DETACH);
		snprintf(err->msg, sizeof err->msg, "recording the mount: %s", cli_strerror(r));
	}
	return r;
}

static void print_mounted(lyr_cli *cli, const char *id, const char *abs, lyr_obj_kind kind,
			  const lyr_fs_config *cfg, const cli_backend *b, pid_t pid)
{
	if (!cli->json)
		return;
	json_out j;
	json_begin(&j, stdout);
	json_str(&j, "id", id);
	json_str(&j, "mountpoint", abs);
	json_i64(&j, "pid", pid);
	json_bool(&j, "read_only", kind == LYR_OBJ_LAYER || cfg->read_only);
	json_str(&j, "backend", lyr_fs_backend_name(b->kind));
	if (b->kind == LYR_FS_FUSE && b->why[0])
		json_str(&j, "fallback", b->why);
	json_end(&j);
}

static int do_mount(lyr_cli *cli, const char *text, const char *mp, mount_opts *o)
{
	lyr_fs_backend want;
	int r = cli_backend_want("mount", o->backend, &want);
	if (r != 0)
		return r;
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, text, LYR_OBJ_NONE, &kind, id) < 0)
		return EXIT_FAIL;
	lyr_fs_error err = {{0}};
	r = lyr_fs_clear_dead(mp, &err);
	if (r < 0)
		return cli_fail("mount '%s': %s", text, err.msg);
	if (r > 0)
		fprintf(stderr, "layerfs: mount '%s': cleared the dead layerfs mount at '%s'\n",
			text, mp);
	char abs[PATH_MAX];
	struct stat st;
	if (!realpath(mp, abs) || stat(abs, &st) < 0)
		return cli_fail("mount '%s': mountpoint '%s': %s", text, mp, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_fail("mount '%s': mountpoint '%s': not a directory", text, mp);

	lyr_fs_config *cfg = lyr_fs_options_config(o->fs);
	cfg->foreground = o->foreground;
	_cleanup_(cli_view_clear) cli_view view = {0};
	r = cli_view_get(cli, kind, id, &view);
	if (r < 0)
		return cli_fail("mount '%s': %s", text, cli_strerror(r));
	cfg->lowers = (const char *const *)view.lowers;
	cfg->nlowers = view.nlowers;
	cfg->upper = view.upper;
	cfg->work = view.work;
	cfg->upper_native = true;
	char fsname[80];
	snprintf(fsname, sizeof(fsname), "layerfs:%.12s", kind == LYR_OBJ_LAYER ? id + 7 : id);
	cfg->fsname = fsname;
	cli_backend b;
	if (cli_backend_choose(cli, want, cfg, &view, &b) < 0)
		return EXIT_FAIL;

	if (kind == LYR_OBJ_REF) {
		/* the claim names no mountpoint: inspect shows one only once the mount is live */
		r = lyr_ref_set_mount(cli->store, id, NULL, getpid());
		if (r == -EBUSY) {
			lyr_ref_info info = {0};
			if (lyr_ref_get(cli->store, id, &info) == 0 && info.mountpoint)
				cli_fail("mount '%s': ref is already mounted at '%s'", text,
					 info.mountpoint);
			else
				cli_fail("mount '%s': ref is being committed", text);
			lyr_ref_info_clear(&info);
			return EXIT_FAIL;
		}
		if (r < 0)
			return cli_fail("mount '%s': %s", text, cli_strerror(r));
	}
	pid_t pid = 0;
	if (b.kind == LYR_FS_KERNEL) {
		r = mount_kernel(cli, id, kind, cfg, &b, abs, &err);
		if (r < 0 && want == LYR_FS_KERNEL) {
			if (kind == LYR_OBJ_REF)
				lyr_ref_clear_mount(cli->store, id);
			return cli_fail("mount '%s' at '%s': %s", text, mp, err.msg);
		}
		if (r < 0) { /* a layer on a filesystem the kernel refuses, ...: the daemon can */
			b.kind = LYR_FS_FUSE;
			snprintf(b.why, sizeof b.why, "%s", err.msg);
			if (getenv("LAYERFS_DEBUG"))
				fprintf(stderr, "layerfs: using FUSE: %s\n", b.why);
		} else {
			print_mounted(cli, id, abs, kind, cfg, &b, 0);
			return EXIT_OK;
		}
	}
	struct live_ctx live = {cli->store, id, abs};
	if (kind == LYR_OBJ_REF) {
		cfg->ready = record_live; /* foreground: called once the mount is live */
		cfg->ready_ctx = &live;
	}
	r = lyr_fs_mount(cfg, abs, &err, &pid);
	if (r < 0) {
		if (kind == LYR_OBJ_REF)
			lyr_ref_clear_mount(cli->store, id);
		return cli_fail("mount '%s' at '%s': %s", text, mp, err.msg[0] ? err.msg : cli_strerror(r));
	}
	if (kind == LYR_OBJ_REF) {
		/* foreground: the mount is over; background: hand the claim to the server */
		r = o->foreground ? lyr_ref_clear_mount(cli->store, id)
				  : lyr_ref_set_mount(cli->store, id, abs, pid);
		if (r < 0)
			return cli_fail("mount '%s': recording the mount: %s", text, cli_strerror(r));
	}
	if (!o->foreground)
		print_mounted(cli, id, abs, kind, cfg, &b, pid);
	return EXIT_OK;
}

int cmd_mount(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("mount");
	static const struct option opts[] = {
		{"foreground", no_argument, NULL, 'f'},
		{"options", required_argument, NULL, 'o'},
		{"suid", no_argument, NULL, 'S'},
		{"dev", no_argument, NULL, 'D'},
		{"backend", required_argument, NULL, 'B'},
	};
	mount_opts o = {0};
	if (lyr_fs_options_new(&o.fs) < 0)
		return cli_fail("out of memory");
	/* as mount(8) treats a user's mount: what layers hold (set-id programs, device nodes
	 * committed by whoever ran in them) has no power here unless asked for */
	lyr_fs_config *cfg = lyr_fs_options_config(o.fs);
	cfg->nosuid = cfg->nodev = true;
	int i = cli_parse_short(cli, cmd, argc, argv, "hfo:", opts, LYR_ARRAY_SIZE(opts), mount_opt, &o);
	int status;
	if (argc - i != 2)
		status = cli_usage(cmd->name, "expects an ID and a mountpoint");
	else if (lyr_fs_options_has_dirs(o.fs))
		status = cli_usage(cmd->name, "lowerdir, upperdir and workdir come from the store "
					      "(use 'layerfs overlay' for directories)");
	else {
		if (*lyr_fs_options_unknown(o.fs))
			fprintf(stderr, "layerfs mount: ignoring unknown options: %s\n",
				lyr_fs_options_unknown(o.fs));
		status = do_mount(cli, argv[i], argv[i + 1], &o);
	}
	lyr_fs_options_free(o.fs);
	return status;
}

typedef struct find_mount {
	const char *mountpoint;
	char id[LYR_ID_MAX];
	pid_t pid;
} find_mount;

static int match_mount(void *ctx, const lyr_ref_info *info)
{
	find_mount *f = ctx;
	if (info->mountpoint && strcmp(info->mountpoint, f->mountpoint) == 0) {
		memcpy(f->id, info->id, LYR_ID_MAX);
		f->pid = info->mount_pid;
	}
	return 0;
}

int cmd_umount(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("umount");
	int i = cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects a mountpoint");
	const char *mp = argv[i];
	int r;
	/* a dead mount's root cannot be resolved: its parent can */
	char abs[PATH_MAX];
	if (!realpath(mp, abs) && (r = lyr_fs_mountpoint_path(mp, abs, sizeof(abs))) < 0)
		return cli_fail("umount '%s': %s", mp, cli_strerror(r));
	/* A mount made by 'overlay' or mount(8) needs no store: without one, nothing is
	 * recorded about it. */
	bool failed;
	lyr_store *s = cli_store_if_any(cli, &failed);
	if (failed)
		return EXIT_FAIL;
	find_mount f = {.mountpoint = abs};
	r = s ? lyr_ref_list(s, match_mount, &f) : 0;
	if (r < 0)
		return cli_fail("umount '%s': %s", mp, cli_strerror(r));
	lyr_fs_error err = {{0}};
	r = lyr_fs_umount(abs, f.id[0] ? f.pid : 0, &err);
	if (r < 0)
		return cli_fail("umount '%s': %s", mp, err.msg[0] ? err.msg : cli_strerror(r));
	if (f.id[0] && (r = lyr_ref_clear_mount(s, f.id)) < 0)
		return cli_fail("umount '%s': clearing the mount record: %s", mp, cli_strerror(r));
	return EXIT_OK;
}

int cmd_overlay(lyr_cli *cli, int argc, char **argv)
{
	(void)cli;
	return lyr_fs_overlay_main(argc, argv);
}
