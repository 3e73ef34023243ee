/* oci/ internals shared between its files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "layerfs/oci.h"
#include "libs.h"

/* tar_out.c: writes the diff of CHAIN[0] (a layer's diff directory; CHAIN[1..N) its ancestors,
 * parent first) as the entries of an OCI layer tar into A (format and filters already set, open).
 * Returns 0 or -errno with ERR naming the path and the cause. */
int oci_layer_write(struct archive *a, const char *const *chain, size_t n, lyr_oci_error *err);
/* tar_out.c: writes the merged tree of STACK as the entries of one plain tar into A, as
 * oci_layer_write writes entries (PAX times and xattrs, names in byte order, the root as "./"),
 * but with no marker of any kind: whiteouts and what they hide left out, renamed directories
 * at their new paths, metacopy files whole, hard-link groups (one inode in one layer) as tar
 * hard links to their first name.  Returns 0 or -errno with ERR naming the path and cause. */
struct lyr_stack;
int oci_tree_write(struct archive *a, const struct lyr_stack *stack, lyr_oci_error *err);

/* save.c: writes NAME in DIRFD atomically (a temporary name, then rename). */
int oci_write_file(int dirfd, const char *name, const void *data, size_t len);
/* save.c: the chain of LAYER_ID as an image in the OCI layout open at DIRFD, tagged REF.  Each
 * layer blob written leaves a note of its digest, size and diff_id with the layer; with REUSE,
 * a layer with such a note is not written again (its blob is then missing from the layout: for
 * push, which needs the digests first and a blob only when the registry lacks it). */
int oci_save_layout(lyr_store *s, const char *layer_id, int dirfd, const char *ref,
		    lyr_oci_compression c, bool reuse, lyr_oci_error *err, lyr_oci_saved *ret);

/* tar_in.c: lyr_oci_tar_extract from the archive A, open for reading (formats and filters
 * chosen by the caller); A is not freed.  SRC_EOF (may be NULL) is true once the stream below
 * A has ended: a tar that ends right after an entry's data is then accepted (see there). */
int oci_tar_extract(struct archive *a, const bool *src_eof, int dirfd, const lyr_oci_root *root,
		    const lyr_progress *progress, lyr_oci_error *err);
/* save.c: the host's architecture as OCI names it (GOARCH: amd64, arm64, ...). */
const char *oci_host_arch(void);

/* error.c: fills ERR (may be NULL) with WHAT (the blob, entry or file) and the formatted cause;
 * returns R. */
int oci_fail(lyr_oci_error *err, int r, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* error.c: an image name "oci:DIR[:REF]", "oci-archive:FILE[:REF]" or
 * "docker-archive:FILE[:REF]" split into its kind, RET_PATH (heap) and RET_REF (pointing into
 * it, NULL when none).  -EINVAL with ERR filled for any other form or an empty part. */
typedef enum { OCI_DIR, OCI_ARCHIVE, OCI_DOCKER_ARCHIVE } oci_kind;
int oci_parse_name(const char *name, lyr_oci_error *err, oci_kind *ret_kind, char **ret_path,
		   const char **ret_ref);

/* import.c: the attributes a layer tar without a "./" entry gives its root: those of the root of
 * layer PARENT_ID, or for a base layer (NULL) mode 0755, the importer's owner, mtime 0. */
int oci_parent_root(lyr_store *s, const char *parent_id, lyr_oci_root *ret);

/* auth.c: the credentials for registry HOST ("host[:port]") from the first auth file that has
 * them ($REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, then
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json), or from the credential helper one
 * names for it.  1 found (RET filled, FILE naming the file or helper), 0 none, -EINVAL with ERR
 * naming the file when one is malformed, -errno with ERR naming a helper that failed. */
typedef struct oci_credentials {
	char user[256], pass[512], file[4096];
} oci_credentials;
int oci_credentials_find(const char *host, oci_credentials *ret, lyr_oci_error *err);
