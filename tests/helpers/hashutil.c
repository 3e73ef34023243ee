/* Test helpers over the hash module; see hashutil.h.  Failures to open the directory abort the
 * test through Criterion's assertions; the hash's own result goes back to the caller. */
#include "hashutil.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "layerfs/common.h"

int tu_hash_dir(const char *dir, const char *cache_prefix, const char *const *sels, size_t n,
		const lyr_hash_opts *opts, char out[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", dir, strerror(errno));
	lyr_hash_source src;
	cr_assert_eq(lyr_hash_source_dir(fd, cache_prefix, &src), 0);
	int r = lyr_hash_selectors(&src, sels, n, opts, out);
	lyr_hash_source_dir_free(&src);
	return r;
}
