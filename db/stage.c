/* Staged layers: a layer built in place by a caller (a tar extracted entry by entry) rather
 * than copied from a directory.  The stage is tmp/<op>-<pid>-<start>-<rand>/diff, owned by
 * this process (fsck removes it if the process dies), filled by the caller through its fd,
 * then hashed with lyr_hash_diff and adopted by the same code as import (layer_adopt): the
 * same tree on the same parent gets the same ID however it came in.  A stage that is freed
 * without being committed is deleted, so a failed fill leaves the store as it was. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>

#include "db-int.h"
#include "layerfs/tree.h"

struct lyr_stage {
	lyr_store *s;
	int tmpfd, diff;
	char tmp[128];
};

int lyr_stage_new(lyr_store *s, const char *op, lyr_stage **ret)
{
	lyr_stage *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	st->s = s;
	st->diff = -1;
	tmp_name(s, op, st->tmp, sizeof st->tmp);
	char diff[160];
	snprintf(diff, sizeof diff, "%s/diff", st->tmp);
	int r = 0;
	st->tmpfd = openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->tmpfd < 0 || mkdirat(st->tmpfd, st->tmp, 0700) < 0 ||
	    mkdirat(st->tmpfd, diff, 0755) < 0 ||
	    (st->diff = openat(st->tmpfd, diff, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = -errno;
	if (r < 0) {
		db_seterr("store '%s': making a staging directory: %s", s->root, strerror(-r));
		lyr_stage_free(st);
		return r;
	}
	*ret = st;
	return 0;
}

int lyr_stage_fd(const lyr_stage *st)
{
	return st->diff;
}

int lyr_stage_commit(lyr_stage *st, const char *parent_id, const char *desc, const char *tag,
		     const lyr_progress *progress, char *ret_id)
{
	char digest[LYR_DIGEST_TEXT_LEN], bad[PATH_MAX] = "";
	if (tag && lyr_tag_valid(tag) < 0) {
		db_seterr("tag '%s': invalid name", tag);
		return -EINVAL;
	}
	lyr_diff_list files = {0};
	lyr_diff_opts o = {.progress = progress, .entries = &files};
	int r = lyr_hash_diff_ex(st->diff, &o, digest, bad);
	if (r < 0) {
		db_seterr("hashing the staged layer: '%s': %s", bad, strerror(-r));
		return r;
	}
	r = layer_adopt(st->s, st->tmpfd, st->tmp, parent_id ? parent_id : "", digest, &files,
			desc, tag, ret_id);
	lyr_diff_list_clear(&files);
	if (r >= 0)
		st->tmp[0] = '\0'; /* renamed into layers/, or removed as a copy */
	return r;
}

void lyr_stage_free(lyr_stage *st)
{
	if (!st)
		return;
	if (st->diff >= 0)
		close(st->diff);
	if (st->tmpfd >= 0) {
		if (st->tmp[0])
			lyr_tree_remove(st->tmpfd, st->tmp);
		close(st->tmpfd);
	}
	free(st);
}
