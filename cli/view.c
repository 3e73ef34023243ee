/* The directories behind a layer or ref: what `mount` hands the overlay and what `diff` walks. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"

int cli_view_get(lyr_cli *cli, lyr_obj_kind kind, const char *id, cli_view *ret)
{
	cli_view v = {0};
	int r;
	if (kind == LYR_OBJ_LAYER) {
		r = lyr_layer_chain(cli->store, id, &v.lowers);
	} else {
		lyr_ref_info info = {0};
		r = lyr_ref_get(cli->store, id, &info);
		if (r >= 0 && info.parent[0])
			r = lyr_layer_chain(cli->store, info.parent, &v.lowers);
		lyr_ref_info_clear(&info);
		if (r >= 0)
			r = lyr_ref_dirs(cli->store, id, &v.upper, &v.work);
	}
	if (r >= 0 && !v.lowers && !(v.lowers = calloc(1, sizeof(char *))))
		r = -ENOMEM;
	if (r < 0) {
		cli_view_clear(&v);
		return r;
	}
	while (v.lowers[v.nlowers])
		v.nlowers++;
	/* the layer IDs of the chain, in the same order: the parents' records name them */
	v.ids = calloc(v.nlowers + 1, sizeof(char *));
	if (!v.ids)
		r = -ENOMEM;
	char next[LYR_ID_MAX] = "";
	if (kind == LYR_OBJ_LAYER)
		snprintf(next, sizeof(next), "%s", id);
	else if (v.nlowers) {
		lyr_ref_info info = {0};
		r = lyr_ref_get(cli->store, id, &info);
		snprintf(next, sizeof(next), "%s", info.parent);
		lyr_ref_info_clear(&info);
	}
	for (size_t i = 0; r >= 0 && i < v.nlowers; i++) {
		lyr_layer_info info = {0};
		r = lyr_layer_get(cli->store, next, &info);
		if (r >= 0 && !(v.ids[i] = strdup(next)))
			r = -ENOMEM;
		if (r >= 0)
			memcpy(next, info.parent, LYR_ID_MAX);
		lyr_layer_info_clear(&info);
	}
	if (r < 0) {
		cli_view_clear(&v);
		return r;
	}
	*ret = v;
	return 0;
}

void cli_view_clear(cli_view *v)
{
	lyr_strv_free(v->lowers);
	lyr_strv_free(v->ids);
	free(v->upper);
	free(v->work);
	memset(v, 0, sizeof(*v));
}

const char **cli_view_stack(const cli_view *v, size_t *ret_n)
{
	const char **dirs = calloc(v->nlowers + 2, sizeof(char *));
	if (!dirs)
		return NULL;
	size_t n = 0;
	if (v->upper)
		dirs[n++] = v->upper;
	for (size_t k = 0; k < v->nlowers; k++)
		dirs[n++] = v->lowers[k];
	*ret_n = n;
	return dirs;
}

int cli_ref_upper_check(lyr_cli *cli, const char *what, const char *text, const char *id)
{
	_cleanup_free_ char *upper = NULL, *work = NULL;
	int r = lyr_ref_dirs(cli->store, id, &upper, &work);
	if (r < 0)
		return cli_fail("%s '%s': %s", what, text, cli_strerror(r));
	struct stat st;
	if (stat(upper, &st) < 0)
		return cli_fail("%s '%s': upper directory '%s': %s", what, text, upper,
				strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_fail("%s '%s': upper directory '%s': not a directory", what, text,
				upper);
	return EXIT_OK;
}
