/* Commands about space and health: du, prune, fsck. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "verify.h"

typedef struct du_ctx {
	lyr_cli *cli;
	table *t;
	json_out *j;
	uint64_t total;
	int err;
} du_ctx;

static void du_row(du_ctx *d, const char *kind, const char *id, uint64_t size, const char *name)
{
	d->total += size;
	if (d->j) {
		json_obj_open(d->j, NULL);
		json_str(d->j, "id", id);
		json_u64(d->j, "size", size);
		json_obj_close(d->j);
		return;
	}
	char sid[16], ssize[32];
	fmt_size(size, ssize, sizeof(ssize));
	table_row(d->t, kind, short_id(id, sid), ssize, name);
}

static int du_layer(void *ctx, const lyr_layer_info *info)
{
	du_row(ctx, "layer", info->id, info->size,
	       info->tags && info->tags[0] ? info->tags[0] : info->desc);
	return 0;
}

static int du_ref(void *ctx, const lyr_ref_info *info)
{
	du_ctx *d = ctx;
	uint64_t bytes = 0, entries = 0;
	int r = lyr_ref_usage(d->cli->store, info->id, &bytes, &entries);
	if (r < 0) {
		cli_fail("du: ref %s: %s", info->id, cli_strerror(r));
		d->err = r;
		return 0; /* go on with the others */
	}
	du_row(d, "ref", info->id, bytes, info->desc);
	return 0;
}

int cmd_du(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("du");
	if (cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL) != argc)
		return cli_usage(cmd->name, "takes no arguments");
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;
	int r = lyr_store_check_records(s);
	if (r < 0)
		return cli_fail("%s", lyr_store_last_error());

	static const char *const headers[] = {"KIND", "ID", "SIZE", "NAME"};
	du_ctx d = {.cli = cli};
	json_out j;
	if (cli->json) {
		d.j = &j;
		json_begin(&j, stdout);
		json_arr_open(&j, "layers");
	} else {
		d.t = table_new(4, headers);
	}
	r = lyr_layer_list(s, du_layer, &d);
	if (cli->json) {
		json_arr_close(&j);
		json_arr_open(&j, "refs");
	}
	if (r >= 0)
		r = lyr_ref_list(s, du_ref, &d);
	if (cli->json) {
		json_arr_close(&j);
		json_u64(&j, "total", d.total);
		json_end(&j);
	} else {
		char total[32];
		fmt_size(d.total, total, sizeof(total));
		table_row(d.t, "total", "", total, "");
		table_print(d.t, stdout);
		table_free(d.t);
	}
	if (r < 0)
		return cli_fail("du: %s", cli_strerror(r));
	return d.err ? EXIT_FAIL : EXIT_OK;
}

int64_t cli_parse_duration(const char *text)
{
	int64_t total = 0;
	const char *p = text;
	if (!*p)
		return -1;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -1;
		char *end;
		long long n = strtoll(p, &end, 10);
		int64_t unit;
		switch (*end) {
		case '\0':
			if (p != text)
				return -1; /* "1h30" is ambiguous */
			unit = 1;
			break;
		case 's':
			unit = 1;
			break;
		case 'm':
			unit = 60;
			break;
		case 'h':
			unit = 3600;
			break;
		case 'd':
			unit = 86400;
			break;
		default:
			return -1;
		}
		if (n < 0 || n > INT64_MAX / unit / 2)
			return -1;
		total += n * unit;
		p = *end ? end + 1 : end;
	}
	return total;
}

typedef struct prune_opts {
	bool all;
	int64_t keep;
} prune_opts;

static int prune_opt(void *ctx, int c, const char *arg)
{
	prune_opts *o = ctx;
	if (c == 'a') {
		o->all = true;
		return 0;
	}
	o->keep = cli_parse_duration(arg);
	if (o->keep < 0) {
		fprintf(stderr, "layerfs prune: invalid duration '%s' (use e.g. 90s, 10m, 24h, 7d, 1h30m)\n",
			arg);
		return -1;
	}
	return 0;
}

typedef struct prune_ctx {
	json_out *j;
	uint64_t total;
} prune_ctx;

static void prune_removed(void *ctx, lyr_obj_kind kind, const char *id, uint64_t size)
{
	prune_ctx *p = ctx;
	p->total += size;
	if (p->j) {
		json_obj_open(p->j, NULL);
		json_str(p->j, "kind", kind == LYR_OBJ_LAYER ? "layer" : "ref");
		json_str(p->j, "id", id);
		json_u64(p->j, "size", size);
		json_obj_close(p->j);
	} else {
		printf("removed %s %s\n", kind == LYR_OBJ_LAYER ? "layer" : "ref", id);
	}
}

int cmd_prune(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("prune");
	static const struct option opts[] = {
		{"all", no_argument, NULL, 'a'},
		{"keep-duration", required_argument, NULL, 'k'},
	};
	prune_opts o = {0};
	int i = cli_parse(cli, cmd, argc, argv, opts, 2, prune_opt, &o);
	if (i != argc)
		return cli_usage(cmd->name, "takes no arguments");
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;
	json_out j;
	prune_ctx p = {0};
	if (cli->json) {
		p.j = &j;
		json_begin(&j, stdout);
		json_arr_open(&j, "removed");
	}
	int r = lyr_store_prune(s, o.all, o.keep, prune_removed, &p);
	/* exec results naming what went (and with --all, old ones) go with it */
	if (r >= 0)
		r = lyr_action_prune(s, o.all, o.keep, NULL);
	char total[32];
	fmt_size(p.total, total, sizeof(total));
	if (cli->json) {
		json_arr_close(&j);
		json_u64(&j, "reclaimed", p.total);
		json_end(&j);
	} else {
		printf("Total reclaimed space: %s\n", total);
	}
	if (r < 0)
		return cli_fail("prune: %s",
				r == -EUCLEAN ? lyr_store_last_error() : cli_strerror(r));
	return EXIT_OK;
}

typedef struct fsck_ctx {
	json_out *j;
} fsck_ctx;

static void fsck_finding(void *ctx, const char *finding, bool repaired)
{
	fsck_ctx *f = ctx;
	if (f->j) {
		json_obj_open(f->j, NULL);
		json_str(f->j, "finding", finding);
		json_bool(f->j, "repaired", repaired);
		json_obj_close(f->j);
	} else {
		printf("%s: %s\n", repaired ? "repaired" : "problem", finding);
	}
}

/* One family of checks: findings to FN, the number left or -errno. */
typedef int (*fsck_check)(lyr_store *s, bool repair,
			  void (*fn)(void *ctx, const char *finding, bool repaired), void *ctx);

static int fsck_opt(void *ctx, int c, const char *arg)
{
	(void)arg;
	cli_fsck_args *a = ctx;
	*(c == 'v' ? &a->verify : &a->repair) = true;
	return 0;
}

int cmd_fsck(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("fsck");
	static const struct option opts[] = {{"repair", no_argument, NULL, 'r'},
					     {"verify", no_argument, NULL, 'v'}};
	cli_fsck_args a = {0};
	int i = cli_parse(cli, cmd, argc, argv, opts, 2, fsck_opt, &a);
	if (i != argc && !a.verify)
		return cli_usage(cmd->name, "takes no arguments (layers go after --verify)");
	lyr_store *s = cli_store_mode(cli, a.repair ? LYR_OPEN_REPAIR : LYR_OPEN_CHECK);
	if (!s)
		return EXIT_FAIL;
	if (i != argc && cli_fsck_resolve(cli, argv + i, (size_t)(argc - i), &a.ids) < 0)
		return EXIT_FAIL;
	bool repair = a.repair;
	json_out j;
	fsck_ctx f = {0};
	if (cli->json) {
		f.j = &j;
		json_begin(&j, stdout);
		json_arr_open(&j, "findings");
	}
	/* runs first: releasing a dead run's refs settles their mount records too */
	static const fsck_check checks[] = {lyr_store_modes, lyr_store_fsck_runs, lyr_store_fsck};
	int left = 0;
	for (size_t k = 0; left >= 0 && k < LYR_ARRAY_SIZE(checks); k++) {
		int more = checks[k](s, repair, fsck_finding, &f);
		left = more < 0 ? more : left + more;
	}
	cli_fsck_stats vs = {0};
	int vleft = left < 0 ? 0 : cli_fsck_layers(cli, &a, f.j, &vs);
	lyr_strv_free(a.ids);
	if (left >= 0)
		left = vleft < 0 ? vleft : left + vleft;
	if (cli->json) {
		json_arr_close(&j);
		json_i64(&j, "problems", left < 0 ? -1 : left);
		if (a.verify)
			cli_fsck_stats_print(cli, &vs, &j);
		json_end(&j);
	} else if (left >= 0 && a.verify) {
		cli_fsck_stats_print(cli, &vs, NULL);
	}
	if (!cli->json && left == 0)
		printf("store '%s': no problems\n", lyr_store_root(s));
	if (vleft < 0)
		return EXIT_FAIL; /* said why */
	if (left < 0)
		return cli_fail("fsck: %s", cli_strerror(left));
	if (left > 0)
		return cli_fail("fsck: %d problem%s left%s", left, left == 1 ? "" : "s",
				repair ? "" : " (run 'layerfs fsck --repair')");
	return EXIT_OK;
}
