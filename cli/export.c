/* export: a layer's or a ref's tree as one tar, as `docker export` writes a container's (the
 * merged view: every file whole, no markers), or with --diff that object's own changes as the
 * OCI layer tar `save --compression none` writes.  The store is read without mounting, through
 * the layer stack (oci/export.c).
 *
 * A ref is read in a consistent state: its mount record is claimed for this process for the
 * whole export (as `mount` claims it), so a ref mounted now is refused, naming the mountpoint,
 * and no mount or commit can begin until the tar is written.  The claim of a process that dies
 * is stale and the store clears it.  The hard-link groups the overlay copied up are first linked
 * into the upper as a commit links them, which changes nothing the mount shows.
 *
 * A tar to a file is written under a temporary name beside it and renamed over FILE at the end:
 * a failed or interrupted export leaves no partial FILE (and no temporary file: SIGINT, SIGTERM,
 * SIGHUP, SIGPIPE, SIGQUIT and SIGXFSZ, a file-size limit reached, remove it before the process
 * ends by that signal). */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "layerfs/fs.h"
#include "layerfs/oci.h"

struct export_opts {
	const char *out;
	bool diff;
};

static int export_opt(void *ctx, int c, const char *arg)
{
	struct export_opts *o = ctx;
	if (c == 'o')
		o->out = arg;
	else if (c == 'd')
		o->diff = true;
	else
		return -1;
	return 0;
}

/* The temporary file being written, removed by a signal that ends the process. */
static char *volatile tmp_path;

static void on_fatal_signal(int sig)
{
	char *p = tmp_path;
	if (p)
		unlink(p);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_fatal_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT, SIGXFSZ};
	struct sigaction sa = {.sa_handler = on_fatal_signal};
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < LYR_ARRAY_SIZE(sigs); i++) {
		/* one ignored on entry stays ignored (a write then fails with its errno) */
		struct sigaction old;
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
			sigaction(sigs[i], &sa, NULL);
	}
}

static void drop_temp(char *p)
{
	if (!p)
		return;
	tmp_path = NULL;
	unlink(p);
	free(p);
}

/* An empty temporary file beside FILE, mode 0666 less the umask as a new FILE would get. */
static int open_temp(const char *file, char **ret_path)
{
	char *p;
	if (asprintf(&p, "%s.tmp-XXXXXX", file) < 0)
		return -ENOMEM;
	catch_fatal_signals();
	int fd = mkostemp(p, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(p);
		return -e;
	}
	tmp_path = p;
	mode_t mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) < 0) {
		int e = errno;
		close(fd);
		drop_temp(p);
		return -e;
	}
	*ret_path = p;
	return fd;
}

/* Claims ref ID for this process, as a mount does; EXIT_OK, or says why not. */
static int claim_ref(lyr_cli *cli, const char *text, const char *id)
{
	char who[64];
	snprintf(who, sizeof who, "(export, pid %d)", (int)getpid());
	int r = lyr_ref_set_mount(cli->store, id, who, getpid());
	if (r == 0)
		return EXIT_OK;
	if (r != -EBUSY)
		return cli_fail("export '%s': %s", text, cli_strerror(r));
	lyr_ref_info info = {0};
	if (lyr_ref_get(cli->store, id, &info) == 0 && info.mountpoint) {
		cli_fail("export '%s': ref is mounted at '%s' and may be written; unmount it first",
			 text, info.mountpoint);
		lyr_ref_info_clear(&info);
		return EXIT_FAIL;
	}
	lyr_ref_info_clear(&info);
	return cli_fail("export '%s': ref is being mounted or committed", text);
}

/* Writes the tar of the view and reports it; the ref (if any) is claimed by the caller. */
static int export_view(lyr_cli *cli, const char *text, lyr_obj_kind kind, const char *id,
		       const struct export_opts *o, bool to_stdout)
{
	_cleanup_(cli_view_clear) cli_view view = {0};
	int r = cli_view_get(cli, kind, id, &view);
	if (r < 0)
		return cli_fail("export '%s': %s", text, cli_strerror(r));
	if (view.upper) {
		lyr_fs_error ferr = {{0}};
		r = lyr_fs_prepare_commit((const char *const *)view.lowers, view.nlowers,
					  view.upper, view.work, &ferr);
		if (r < 0)
			return cli_fail("export '%s': %s", text,
					ferr.msg[0] ? ferr.msg : cli_strerror(r));
	}
	size_t n;
	_cleanup_free_ const char **dirs = cli_view_stack(&view, &n);
	if (!dirs)
		return cli_fail("out of memory");

	char *tmp = NULL;
	int fd = to_stdout ? STDOUT_FILENO : open_temp(o->out, &tmp);
	if (fd < 0)
		return cli_fail("export '%s': '%s': %s", text, o->out, strerror(-fd));
	progress_line pl;
	progress_start(&pl, cli, "export");
	lyr_oci_error err;
	lyr_oci_exported done;
	r = lyr_oci_export(dirs, n, o->diff, fd, &pl.p, &err, &done);
	progress_done(&pl);
	if (r < 0) {
		if (!to_stdout)
			close(fd);
		drop_temp(tmp);
		if (err.why[0] && err.entry[0])
			return cli_fail("export '%s': '%s': %s", text, err.entry, err.why);
		return cli_fail("export '%s': %s", text, err.why[0] ? err.why : cli_strerror(r));
	}
	if (!to_stdout) {
		r = fsync(fd) < 0 ? -errno : 0;
		if (close(fd) < 0 && r == 0)
			r = -errno;
		if (r == 0 && rename(tmp, o->out) < 0)
			r = -errno;
		if (r < 0) {
			drop_temp(tmp);
			return cli_fail("export '%s': '%s': %s", text, o->out, strerror(-r));
		}
		tmp_path = NULL;
		free(tmp);
	}
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "id", id);
		json_str(&j, "kind", kind == LYR_OBJ_LAYER ? "layer" : "ref");
		json_str(&j, "output", o->out);
		json_bool(&j, "diff", o->diff);
		json_str(&j, "digest", done.digest);
		json_u64(&j, "size", done.size);
		json_u64(&j, "entries", done.entries);
		json_end(&j);
	} else if (!to_stdout) {
		printf("%s\n", done.digest);
	}
	return EXIT_OK;
}

int cmd_export(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("export");
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"diff", no_argument, NULL, 'd'},
	};
	struct export_opts o = {0};
	int i = cli_parse_short(cli, cmd, argc, argv, "ho:", opts, 2, export_opt, &o);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one layer, ref or tag");
	bool to_stdout = !o.out || strcmp(o.out, "-") == 0;
	if (to_stdout && cli->json)
		return cli_usage(cmd->name,
				 "--json needs -o FILE: the tar goes to standard output");
	if (to_stdout && isatty(STDOUT_FILENO))
		return cli_usage(cmd->name, "refusing to write a tar to a terminal; give -o FILE "
					    "or redirect standard output");
	if (!o.out)
		o.out = "-";
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i], LYR_OBJ_NONE, &kind, id) < 0)
		return EXIT_FAIL;
	struct stat st;
	if (!to_stdout && stat(o.out, &st) == 0 && S_ISDIR(st.st_mode))
		return cli_fail("export '%s': '%s': %s", argv[i], o.out, strerror(EISDIR));
	if (kind == LYR_OBJ_REF) {
		if (cli_ref_upper_check(cli, "export", argv[i], id) != EXIT_OK ||
		    claim_ref(cli, argv[i], id) != EXIT_OK)
			return EXIT_FAIL;
	}
	int status = export_view(cli, argv[i], kind, id, &o, to_stdout);
	if (kind == LYR_OBJ_REF)
		lyr_ref_clear_mount(cli->store, id);
	return status;
}
