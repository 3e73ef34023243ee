/* oci/ internals shared between its files. */
#pragma once

#include <archive.h>
#include <stddef.h>

#include "layerfs/oci.h"

/* tar_out.c: writes the diff of CHAIN[0] (a layer's diff directory; CHAIN[1..N) its ancestors,
 * parent first) as the entries of an OCI layer tar into A (format and filters already set, open).
 * Returns 0 or -errno with ERR naming the path and the cause. */
int oci_layer_write(struct archive *a, const char *const *chain, size_t n, lyr_oci_error *err);

/* save.c: writes NAME in DIRFD atomically (a temporary name, then rename). */
int oci_write_file(int dirfd, const char *name, const void *data, size_t len);
/* save.c: the chain of LAYER_ID as an image in the OCI layout open at DIRFD, tagged REF. */
int oci_save_layout(lyr_store *s, const char *layer_id, int dirfd, const char *ref,
		    lyr_oci_compression c, lyr_oci_error *err, lyr_oci_saved *ret);
