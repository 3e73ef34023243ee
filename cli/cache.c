/* cache: the registry side of exec's cache (docs/cache.md), for the people who pay for the
 * registry's disk.
 *   cache ls NAME [--json]                      every record: key, created, age, size
 *   cache prune NAME --older-than D [--json]    delete the records created more than D ago
 * NAME is a registry repository (REGISTRY/REPOSITORY); both take --tls-verify=BOOL as push
 * and pull do.  Deleting a record deletes its
 * manifest; its blobs stay until the registry's garbage collection. */
#include <string.h>
#include <time.h>

#include "commands.h"
#include "layerfs/oci.h"

static int fail(const char *what, const char *name, const lyr_oci_error *err, int r)
{
	const char *why = err->why[0] ? err->why : cli_strerror(r);
	if (err->entry[0])
		return cli_fail("cache %s '%s': '%s': %s", what, name, err->entry, why);
	return cli_fail("cache %s '%s': %s", what, name, why);
}

static void entry_json(json_out *j, const lyr_oci_cache_entry *e, time_t now)
{
	char created[32] = "";
	time_t t = (time_t)e->created;
	if (e->created >= 0)
		strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	json_obj_open(j, NULL);
	json_str(j, "key", e->key);
	json_str(j, "digest", e->digest);
	json_str(j, "created", e->created >= 0 ? created : NULL);
	if (e->created >= 0)
		json_i64(j, "age_seconds", (int64_t)now - e->created);
	else
		json_str(j, "age_seconds", NULL);
	json_u64(j, "size", e->size);
	json_obj_close(j);
}

/* "3d", "5h", "12m", "40s": the largest unit, rounded down. */
static void fmt_age(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s >= 86400)
		snprintf(buf, len, "%lldd", (long long)(s / 86400));
	else if (s >= 3600)
		snprintf(buf, len, "%lldh", (long long)(s / 3600));
	else if (s >= 60)
		snprintf(buf, len, "%lldm", (long long)(s / 60));
	else
		snprintf(buf, len, "%llds", (long long)s);
}

static int cache_ls(lyr_cli *cli, const char *name, bool tls_verify)
{
	lyr_oci_error err;
	lyr_oci_cache_entry *e = NULL;
	size_t n = 0;
	int r = lyr_oci_cache_list(name, tls_verify, &err, &e, &n);
	if (r < 0)
		return fail("ls", name, &err, r);
	time_t now = time(NULL);
	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_arr_open(&j, "entries");
		for (size_t i = 0; i < n; i++)
			entry_json(&j, &e[i], now);
		json_arr_close(&j);
		json_end(&j);
	} else {
		printf("%-19s  %-20s  %-5s  %s\n", "KEY", "CREATED", "AGE", "SIZE");
		for (size_t i = 0; i < n; i++) {
			char created[32] = "-", age[32], size[32];
			time_t t = (time_t)e[i].created;
			if (e[i].created >= 0)
				strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S", gmtime(&t));
			fmt_age(e[i].created >= 0 ? now - e[i].created : -1, age, sizeof age);
			fmt_size(e[i].size, size, sizeof size);
			printf("%.19s  %-20s  %-5s  %s\n", e[i].key, created, age, size);
		}
	}
	free(e);
	return EXIT_OK;
}

typedef struct cache_opts {
	const char *prog; /* "cache ls" or "cache prune" */
	int64_t older;	  /* --older-than, in seconds; -1 not given */
	int tls_verify;
} cache_opts;

static int cache_opt(void *ctx, int c, const char *arg)
{
	cache_opts *o = ctx;
	if (c == 'k')
		return cli_tls_verify_opt(o->prog, arg, &o->tls_verify);
	if (c != 'o')
		return -1;
	o->older = cli_parse_duration(arg);
	if (o->older < 0) {
		fprintf(stderr,
			"layerfs cache prune: invalid duration '%s' (use e.g. 90s, 10m, 24h, 7d, "
			"1h30m)\n",
			arg);
		return -1;
	}
	return 0;
}

static int cache_prune(lyr_cli *cli, const char *name, bool tls_verify, int64_t older)
{
	lyr_oci_error err;
	lyr_oci_cache_entry *e = NULL;
	size_t n = 0;
	int r = lyr_oci_cache_list(name, tls_verify, &err, &e, &n);
	if (r < 0)
		return fail("prune", name, &err, r);
	time_t now = time(NULL);
	json_out j;
	if (cli->json) {
		json_begin(&j, stdout);
		json_arr_open(&j, "removed");
	}
	size_t kept = 0;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		/* a record without a time is kept: its age is unknown */
		if (e[i].created < 0 || now - e[i].created < older) {
			kept++;
			continue;
		}
		r = lyr_oci_cache_delete(name, tls_verify, e[i].digest, &err);
		if (r < 0)
			break;
		if (cli->json)
			entry_json(&j, &e[i], now);
		else
			printf("removed %s\n", e[i].key);
	}
	if (cli->json) {
		json_arr_close(&j);
		json_u64(&j, "kept", kept);
		json_end(&j);
	}
	free(e);
	return r < 0 ? fail("prune", name, &err, r) : EXIT_OK;
}

int cmd_cache(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("cache");
	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
		return cli_help(cmd);
	if (argc < 2 || (strcmp(argv[1], "ls") != 0 && strcmp(argv[1], "prune") != 0))
		return cli_usage(cmd->name, "expects ls or prune");
	bool prune = strcmp(argv[1], "prune") == 0;
	/* the subcommand's options: argv[1] stands for the program */
	char prog[64];
	snprintf(prog, sizeof prog, "layerfs cache %s", argv[1]);
	argv[1] = prog;
	static const struct option opts[] = {
	    {"tls-verify", optional_argument, NULL, 'k'},
	    {"older-than", required_argument, NULL, 'o'},
	};
	cache_opts o = {.prog = prog + strlen("layerfs "), .older = -1, .tls_verify = 1};
	int i = cli_parse(cli, cmd, argc - 1, argv + 1, opts, prune ? 2 : 1, cache_opt, &o);
	if (argc - 1 - i != 1)
		return cli_usage(cmd->name, "%s expects one registry repository",
				 prune ? "prune" : "ls");
	const char *name = argv[1 + i];
	lyr_oci_error err;
	int r = lyr_oci_cache_check_name(name, &err);
	if (r == -EINVAL)
		return cli_usage(cmd->name, "'%s': %s", name, err.why);
	if (r < 0)
		return fail(prune ? "prune" : "ls", name, &err, r);
	if (!prune)
		return cache_ls(cli, name, o.tls_verify);
	if (o.older < 0)
		return cli_usage(cmd->name, "prune needs --older-than DURATION");
	return cache_prune(cli, name, o.tls_verify, o.older);
}
