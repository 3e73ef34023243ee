/* The directories behind a layer or ref: what `mount` hands the overlay and what `diff` walks. */
#include <stdlib.h>
#include <string.h>

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
	*ret = v;
	return 0;
}

void cli_view_clear(cli_view *v)
{
	lyr_strv_free(v->lowers);
	free(v->upper);
	free(v->work);
	memset(v, 0, sizeof(*v));
}
