/* One layer tar into the store: extraction into a stage (tar_in.c), then the store's own
 * hashing and adoption (lyr_stage_commit), so a tar layer gets exactly the ID that the same
 * tree gets from `import DIR` or from a commit on the same parent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs/oci.h"
#include "oci-int.h"

int oci_parent_root(lyr_store *s, const char *parent_id, lyr_oci_root *ret)
{
	*ret = (lyr_oci_root){0755, geteuid(), getegid(), {0, 0}};
	if (!parent_id)
		return 0;
	char **dirs;
	int r = lyr_layer_chain(s, parent_id, &dirs);
	if (r < 0)
		return r;
	struct stat st;
	r = stat(dirs[0], &st) < 0 ? -errno : 0;
	lyr_strv_free(dirs);
	if (r < 0)
		return r;
	*ret = (lyr_oci_root){st.st_mode & 07777, st.st_uid, st.st_gid, st.st_mtim};
	return 0;
}

int lyr_oci_import_tar(lyr_store *s, int fd, const char *parent_id, const char *desc,
		       const char *tag, const lyr_progress *progress, lyr_oci_error *err,
		       char *ret_id)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	if (tag && lyr_tag_valid(tag) < 0)
		return -EINVAL;
	lyr_oci_root root;
	int r = oci_parent_root(s, parent_id, &root);
	if (r < 0)
		return r;
	lyr_stage *st;
	r = lyr_stage_new(s, "tar", &st);
	if (r < 0)
		return r;
	r = lyr_oci_tar_extract(fd, lyr_stage_fd(st), &root, progress, err);
	if (r >= 0) {
		if (err)
			err->why[0] = '\0';
		r = lyr_stage_commit(st, parent_id, desc, tag, NULL, ret_id);
	}
	lyr_stage_free(st);
	return r;
}
