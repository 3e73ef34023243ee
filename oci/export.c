/* export: a view as one tar.  Either the merged tree of a stack, as `docker export` writes a
 * container's filesystem (oci_tree_write: every file whole, no markers), or the topmost layer's
 * own changes in OCI layer form (oci_layer_write), byte for byte the uncompressed layer tar a
 * save writes for it: the same PAX writer with the same fixed settings (libarchive's default
 * 10240-byte blocking, as save.c's tar has), so its digest is the layer's diff_id.  The bytes
 * are hashed and counted on their way to the file descriptor; nothing else is buffered. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "layerfs/hash.h"
#include "layerfs/oci.h"
#include "layerfs/stack.h"
#include "oci-int.h"

typedef struct sink {
	int fd;
	lyr_sha256_ctx *h;
	uint64_t size;
	const lyr_progress *progress;
	int err; /* the write's errno, negated */
} sink;

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *p, size_t n)
{
	sink *k = ctx;
	for (size_t done = 0; done < n;) {
		ssize_t w = write(k->fd, (const char *)p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			k->err = -errno;
			archive_set_error(a, errno, "writing the tar: %s", strerror(errno));
			return -1;
		}
		done += (size_t)w;
	}
	lyr_sha256_update(k->h, p, n);
	k->size += n;
	lyr_progress_report(k->progress, (uint64_t)archive_file_count(a), k->size);
	return (la_ssize_t)n;
}

int lyr_oci_export(const char *const *dirs, size_t n, bool diff, int fd,
		   const lyr_progress *progress, lyr_oci_error *err, lyr_oci_exported *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	sink k = {.fd = fd, .progress = progress};
	int r = lyr_sha256_new(&k.h);
	if (r < 0)
		return r;
	lyr_stack *stack = NULL;
	if (!diff) {
		size_t bad = 0;
		r = lyr_stack_open(dirs, n, &bad, &stack);
		if (r < 0) {
			lyr_sha256_free(k.h);
			return oci_fail(err, r, "", "opening layer directory '%s': %s", dirs[bad],
					strerror(-r));
		}
	}
	struct archive *a = archive_write_new();
	if (!a)
		r = -ENOMEM;
	if (r == 0) {
		archive_write_set_format_pax(a);
		/* a plain tar says xattrs once, in the form GNU tar and Go read; a layer tar is
		 * left exactly as save writes it */
		if (!diff && archive_write_set_options(a, "pax:xattrheader=SCHILY") != ARCHIVE_OK)
			r = oci_fail(err, -EIO, "", "%s", archive_error_string(a));
		if (r == 0 &&
		    archive_write_open2(a, &k, NULL, sink_write, NULL, NULL) != ARCHIVE_OK)
			r = oci_fail(err, k.err ? k.err : -EIO, "", "%s", archive_error_string(a));
	}
	if (r == 0)
		r = diff ? oci_layer_write(a, dirs, n, err) : oci_tree_write(a, stack, err);
	if (a) {
		uint64_t entries = (uint64_t)archive_file_count(a);
		if (archive_write_close(a) != ARCHIVE_OK && r == 0)
			r = oci_fail(err, k.err ? k.err : -EIO, "", "%s", archive_error_string(a));
		archive_write_free(a);
		if (ret)
			ret->entries = entries;
	}
	/* an entry that failed for want of room names the write, not the entry */
	if (r < 0 && k.err < 0)
		r = oci_fail(err, k.err, "", "writing the tar: %s", strerror(-k.err));
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(k.h, d);
	lyr_sha256_free(k.h);
	lyr_stack_free(stack);
	if (r == 0 && ret) {
		lyr_digest_text(d, ret->digest);
		ret->size = k.size;
	}
	return r;
}
