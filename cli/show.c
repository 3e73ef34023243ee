/* Commands that only read the store: ls and inspect (diff lives in diff.c). */
#include <stdlib.h>
#include <string.h>

#include "commands.h"

/* One line of `ls`, copied out of the store's records. */
typedef struct ls_row {
	lyr_obj_kind kind;
	char id[LYR_ID_MAX], parent[LYR_ID_MAX];
	int64_t created;
	uint64_t size;
	char *name; /* tags joined by ", ", or the description, or the mountpoint */
	char *desc;
	char **tags;
	char *mountpoint;
} ls_row;

typedef struct ls_rows {
	ls_row *v;
	size_t n, cap;
} ls_rows;

static ls_row *rows_add(ls_rows *rows)
{
	if (rows->n == rows->cap) {
		rows->cap = rows->cap ? rows->cap * 2 : 64;
		ls_row *nv = realloc(rows->v, rows->cap * sizeof(*nv));
		if (!nv)
			return NULL;
		rows->v = nv;
	}
	ls_row *row = &rows->v[rows->n++];
	memset(row, 0, sizeof(*row));
	return row;
}

static char **strv_dup(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **out = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; out && i < n; i++)
		out[i] = strdup(v[i]);
	return out;
}

static char *strv_join(char **v, const char *sep)
{
	size_t len = 1;
	for (size_t i = 0; v && v[i]; i++)
		len += strlen(v[i]) + strlen(sep);
	char *out = calloc(1, len);
	for (size_t i = 0; out && v && v[i]; i++) {
		if (i)
			strcat(out, sep);
		strcat(out, v[i]);
	}
	return out;
}

static int collect_layer(void *ctx, const lyr_layer_info *info)
{
	ls_row *row = rows_add(ctx);
	if (!row)
		return -ENOMEM;
	row->kind = LYR_OBJ_LAYER;
	memcpy(row->id, info->id, LYR_ID_MAX);
	memcpy(row->parent, info->parent, LYR_ID_MAX);
	row->created = info->created;
	row->size = info->size;
	row->desc = strdup(info->desc ? info->desc : "");
	row->tags = strv_dup(info->tags);
	row->name = row->tags && row->tags[0] ? strv_join(row->tags, ", ") : strdup(row->desc);
	return 0;
}

static int collect_ref(void *ctx, const lyr_ref_info *info)
{
	ls_row *row = rows_add(ctx);
	if (!row)
		return -ENOMEM;
	row->kind = LYR_OBJ_REF;
	memcpy(row->id, info->id, LYR_ID_MAX);
	memcpy(row->parent, info->parent, LYR_ID_MAX);
	row->created = info->created;
	row->desc = strdup(info->desc ? info->desc : "");
	row->tags = calloc(1, sizeof(char *));
	row->mountpoint = info->mountpoint ? strdup(info->mountpoint) : NULL;
	if (row->mountpoint && asprintf(&row->name, "mounted at %s", row->mountpoint) < 0)
		row->name = NULL;
	if (!row->name)
		row->name = strdup(row->desc);
	return 0;
}

static int row_cmp(const void *a, const void *b)
{
	const ls_row *x = a, *y = b;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

static void rows_free(ls_rows *rows)
{
	for (size_t i = 0; i < rows->n; i++) {
		ls_row *r = &rows->v[i];
		free(r->name);
		free(r->desc);
		free(r->mountpoint);
		lyr_strv_free(r->tags);
	}
	free(rows->v);
}

int cmd_ls(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("ls");
	static const struct option opts[] = {{"no-trunc", no_argument, NULL, 'n'}};
	bool no_trunc = false;
	if (cli_parse(cli, cmd, argc, argv, opts, 1, cli_set_flag, &no_trunc) != argc)
		return cli_usage(cmd->name, "takes no arguments");
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;

	_cleanup_(rows_free) ls_rows rows = {0};
	int r = lyr_store_check_records(s);
	if (r < 0)
		return cli_fail("%s", lyr_store_last_error());
	r = lyr_layer_list(s, collect_layer, &rows);
	if (r >= 0)
		r = lyr_ref_list(s, collect_ref, &rows);
	if (r < 0)
		return cli_fail("ls: %s", cli_strerror(r));
	if (rows.n)
		qsort(rows.v, rows.n, sizeof(ls_row), row_cmp);

	if (cli->json) {
		json_out j;
		json_begin(&j, stdout);
		json_arr_open(&j, "layers");
		for (size_t i = 0; i < rows.n; i++) {
			ls_row *row = &rows.v[i];
			if (row->kind != LYR_OBJ_LAYER)
				continue;
			char t[32];
			fmt_time_rfc3339(row->created, t, sizeof(t));
			json_obj_open(&j, NULL);
			json_str(&j, "id", row->id);
			json_str(&j, "parent", row->parent[0] ? row->parent : NULL);
			json_str(&j, "created", t);
			json_u64(&j, "size", row->size);
			json_str(&j, "description", row->desc);
			json_arr_open(&j, "tags");
			for (size_t k = 0; row->tags && row->tags[k]; k++)
				json_str(&j, NULL, row->tags[k]);
			json_arr_close(&j);
			json_obj_close(&j);
		}
		json_arr_close(&j);
		json_arr_open(&j, "refs");
		for (size_t i = 0; i < rows.n; i++) {
			ls_row *row = &rows.v[i];
			if (row->kind != LYR_OBJ_REF)
				continue;
			char t[32];
			fmt_time_rfc3339(row->created, t, sizeof(t));
			json_obj_open(&j, NULL);
			json_str(&j, "id", row->id);
			json_str(&j, "parent", row->parent[0] ? row->parent : NULL);
			json_str(&j, "created", t);
			json_str(&j, "description", row->desc);
			json_str(&j, "mountpoint", row->mountpoint);
			json_obj_close(&j);
		}
		json_arr_close(&j);
		json_end(&j);
		return EXIT_OK;
	}

	static const char *const headers[] = {"KIND", "ID", "PARENT", "CREATED", "SIZE", "NAME"};
	table *t = table_new(6, headers);
	for (size_t i = 0; i < rows.n; i++) {
		ls_row *row = &rows.v[i];
		char id[16], parent[16], created[32], size[32] = "";
		fmt_time(row->created, created, sizeof(created));
		if (row->kind == LYR_OBJ_LAYER)
			fmt_size(row->size, size, sizeof(size));
		table_row(t, row->kind == LYR_OBJ_LAYER ? "layer" : "ref",
			  no_trunc ? row->id : short_id(row->id, id),
			  row->parent[0] ? (no_trunc ? row->parent : short_id(row->parent, parent)) : NULL,
			  created, size, row->name);
	}
	table_print(t, stdout);
	table_free(t);
	return EXIT_OK;
}

static void strv_freep(char ***v)
{
	lyr_strv_free(*v);
}

static int inspect_layer(lyr_cli *cli, const char *id)
{
	lyr_layer_info info = {0};
	int r = lyr_layer_get(cli->store, id, &info);
	if (r < 0)
		return cli_fail("inspect '%s': %s", id, cli_strerror(r));
	_cleanup_(strv_freep) char **chain = NULL;
	r = lyr_layer_chain(cli->store, id, &chain);
	if (r < 0) {
		lyr_layer_info_clear(&info);
		return cli_fail("inspect '%s': %s", id, cli_strerror(r));
	}
	size_t depth = 0;
	while (chain[depth])
		depth++;
	char created[32];
	if (cli->json) {
		fmt_time_rfc3339(info.created, created, sizeof(created));
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "kind", "layer");
		json_str(&j, "id", info.id);
		json_str(&j, "parent", info.parent[0] ? info.parent : NULL);
		json_str(&j, "diff_digest", info.diff_digest);
		json_str(&j, "created", created);
		json_u64(&j, "size", info.size);
		json_u64(&j, "entries", info.entries);
		json_str(&j, "description", info.desc);
		json_arr_open(&j, "tags");
		for (size_t k = 0; info.tags && info.tags[k]; k++)
			json_str(&j, NULL, info.tags[k]);
		json_arr_close(&j);
		json_u64(&j, "children", info.children);
		json_u64(&j, "refs", info.refs);
		json_str(&j, "path", chain[0]);
		json_u64(&j, "depth", depth);
		json_end(&j);
	} else {
		char size[32];
		fmt_time(info.created, created, sizeof(created));
		fmt_size(info.size, size, sizeof(size));
		_cleanup_free_ char *tags = strv_join(info.tags, ", ");
		printf("ID:           %s\n"
		       "Kind:         layer\n"
		       "Parent:       %s\n"
		       "Diff digest:  %s\n"
		       "Created:      %s\n"
		       "Size:         %s (%llu entries)\n"
		       "Description:  %s\n"
		       "Tags:         %s\n"
		       "Needed by:    %u layers, %u refs\n"
		       "Depth:        %zu\n"
		       "Path:         %s\n",
		       info.id, info.parent[0] ? info.parent : "-", info.diff_digest, created, size,
		       (unsigned long long)info.entries, info.desc && *info.desc ? info.desc : "-",
		       tags && *tags ? tags : "-", info.children, info.refs, depth, chain[0]);
	}
	lyr_layer_info_clear(&info);
	return EXIT_OK;
}

static int inspect_ref(lyr_cli *cli, const char *id)
{
	lyr_ref_info info = {0};
	int r = lyr_ref_get(cli->store, id, &info);
	if (r < 0)
		return cli_fail("inspect '%s': %s", id, cli_strerror(r));
	_cleanup_free_ char *upper = NULL, *work = NULL;
	uint64_t bytes = 0, entries = 0;
	if (cli_ref_upper_check(cli, "inspect", id, id) != EXIT_OK) {
		lyr_ref_info_clear(&info);
		return EXIT_FAIL;
	}
	r = lyr_ref_dirs(cli->store, id, &upper, &work);
	if (r >= 0)
		r = lyr_ref_usage(cli->store, id, &bytes, &entries);
	if (r < 0) {
		lyr_ref_info_clear(&info);
		return cli_fail("inspect '%s': %s", id, cli_strerror(r));
	}
	char created[32];
	if (cli->json) {
		fmt_time_rfc3339(info.created, created, sizeof(created));
		json_out j;
		json_begin(&j, stdout);
		json_str(&j, "kind", "ref");
		json_str(&j, "id", info.id);
		json_str(&j, "parent", info.parent[0] ? info.parent : NULL);
		json_str(&j, "created", created);
		json_str(&j, "description", info.desc);
		json_str(&j, "mountpoint", info.mountpoint);
		if (info.mountpoint) {
			json_i64(&j, "mount_pid", info.mount_pid);
			json_str(&j, "backend", info.mount_kernel ? "kernel" : "fuse");
		}
		json_str(&j, "upper", upper);
		json_str(&j, "work", work);
		json_u64(&j, "size", bytes);
		json_u64(&j, "entries", entries);
		json_end(&j);
	} else {
		char size[32];
		fmt_time(info.created, created, sizeof(created));
		fmt_size(bytes, size, sizeof(size));
		printf("ID:           %s\n"
		       "Kind:         ref\n"
		       "Parent:       %s\n"
		       "Created:      %s\n"
		       "Description:  %s\n",
		       info.id, info.parent[0] ? info.parent : "scratch", created,
		       info.desc && *info.desc ? info.desc : "-");
		if (info.mountpoint)
			if (info.mount_kernel)
				printf("Mounted:      at %s (kernel overlayfs)\n", info.mountpoint);
			else
				printf("Mounted:      at %s (pid %d, FUSE)\n", info.mountpoint,
				       (int)info.mount_pid);
		else
			printf("Mounted:      no\n");
		printf("Size:         %s (%llu entries)\n"
		       "Upper:        %s\n"
		       "Work:         %s\n",
		       size, (unsigned long long)entries, upper, work);
	}
	lyr_ref_info_clear(&info);
	return EXIT_OK;
}

int cmd_inspect(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("inspect");
	int i = cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one ID");
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i], LYR_OBJ_NONE, &kind, id) < 0)
		return EXIT_FAIL;
	return kind == LYR_OBJ_LAYER ? inspect_layer(cli, id) : inspect_ref(cli, id);
}
