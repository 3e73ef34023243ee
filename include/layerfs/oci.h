/* oci/: the OCI world.  Layer tars in (libarchive reads tar, PAX, GNU and sparse entries,
 * plain, gzip or zstd, told apart by their bytes), with OCI whiteouts turned into the store's
 * own markers.  A tar is untrusted input: no entry ever lands outside the layer being built
 * (docs/oci.md lists what is refused and why). */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"
#include "layerfs/store.h"

typedef struct lyr_oci_error {
	char entry[4096]; /* the tar entry's name as the archive gives it; "" for the stream */
	char why[512];	  /* what is wrong with it */
} lyr_oci_error;

/* Attributes of a layer root that the tar does not describe (no "./" entry). */
typedef struct lyr_oci_root {
	mode_t mode; /* permission bits */
	uid_t uid;
	gid_t gid;
	struct timespec mtime;
} lyr_oci_root;

/* Extracts the tar stream read from FD (plain, gzip or zstd) into the empty directory DIRFD,
 * the diff root of a layer being built: ".wh.NAME" becomes a whiteout (character device 0/0
 * with the marker entry's mode, owner and times) unless this layer has NAME itself,
 * ".wh..wh..opq" makes its directory opaque (xattr trusted.overlay.opaque=y, or
 * user.overlay.opaque=y without CAP_SYS_ADMIN).  Kept: modes, owners (as root; otherwise the
 * files are the importer's), times (nanoseconds from PAX), hard links, symlinks, fifos,
 * devices (as root), xattrs, sparse files.  ROOT gives the root directory's attributes unless
 * the tar has a "./" entry; directories the tar implies but does not list get mode 0755,
 * the importer's owner and mtime 0.  Returns 0, or -errno with ERR naming the entry and the
 * cause: -EINVAL for an entry the layer must not take (an absolute or ".." name, a path
 * through a symlink, a hard link to a path not earlier in the tar, an overlay marker or
 * marker xattr in the input), -EPERM for a device without privilege, -EBADMSG for a corrupt
 * or truncated stream.  On failure DIRFD holds a partial tree for the caller to discard. */
int lyr_oci_tar_extract(int fd, int dirfd, const lyr_oci_root *root, const lyr_progress *progress,
			lyr_oci_error *err);

/* One layer from a tar stream: extracts FD into a stage of store S (lyr_stage_new) and
 * commits it on PARENT_ID (a full layer ID, or NULL for a base layer) with DESC and TAG (may
 * be NULL).  The root directory takes the parent's root attributes when the tar has no "./"
 * entry (mode 0755, the importer's owner, mtime 0 for a base layer).  The ID is the one
 * `import DIR` or a commit gives the same tree on the same parent.  On failure nothing in
 * the store changes; ERR names the entry (extraction) or is empty (store failure:
 * lyr_store_last_error() says why). */
int lyr_oci_import_tar(lyr_store *s, int fd, const char *parent_id, const char *desc,
		       const char *tag, const lyr_progress *progress, lyr_oci_error *err,
		       char *ret_id);

typedef enum { LYR_OCI_GZIP = 0, LYR_OCI_ZSTD, LYR_OCI_NONE } lyr_oci_compression;

/* What a save wrote: digests ("sha256:<hex>") of the manifest, the config and each layer blob
 * with its diff_id (the digest of the uncompressed tar), base first. */
typedef struct lyr_oci_saved {
	char manifest[LYR_DIGEST_TEXT_LEN], config[LYR_DIGEST_TEXT_LEN];
	size_t layers;
	char (*layer_digests)[LYR_DIGEST_TEXT_LEN]; /* heap */
	char (*diff_ids)[LYR_DIGEST_TEXT_LEN];	    /* heap */
} lyr_oci_saved;
void lyr_oci_saved_clear(lyr_oci_saved *saved);

/* Saves the chain of LAYER_ID (a full layer ID) as an image at DEST: "oci:DIR[:REF]" (an OCI
 * image layout, created when missing; an existing one gains the image, replacing an earlier one
 * of the same REF; REF "latest" by default), "oci-archive:FILE[:REF]" (that layout as a tar),
 * "docker-archive:FILE[:NAME[:TAG]]" (the layout with uncompressed layers and a docker
 * manifest.json, as `docker save` writes since Docker 25).  One layer tar per store layer, base
 * first (docs/oci.md: whiteouts, renamed directories and metacopy files), compressed with C;
 * the same chain gives byte-identical blobs on every save.  Returns 0 and fills RET (clear it
 * with lyr_oci_saved_clear), or -errno with ERR naming what failed (-EINVAL: a malformed
 * DEST). */
int lyr_oci_save(lyr_store *s, const char *layer_id, const char *dest, lyr_oci_compression c,
		 lyr_oci_error *err, lyr_oci_saved *ret);

/* What an export wrote: the digest ("sha256:<hex>") and size of the tar, and its entries. */
typedef struct lyr_oci_exported {
	char digest[LYR_DIGEST_TEXT_LEN];
	uint64_t size, entries;
} lyr_oci_exported;

/* Writes one uncompressed tar to FD.  DIRS[0..N) is a view's stack, topmost first: a layer's
 * chain (its own diff first), or a ref's upper over its parent's chain.  Without DIFF: the merged
 * tree, as `docker export` writes it (no whiteouts or other markers, no overlay xattrs, every
 * file whole, hard-link groups as tar hard links, xattrs as PAX SCHILY.xattr, mtimes to the
 * nanosecond); with DIFF: DIRS[0]'s own changes as an OCI layer tar, the bytes `save` writes
 * for that layer uncompressed (digest = its diff_id).  Entries come in name order with fixed
 * header fields, so the same tree gives the same bytes.  PROGRESS (may be NULL) hears the
 * entries and bytes written.  Returns 0 and fills RET (may be NULL), or -errno with ERR naming
 * the path and the cause; FD then holds a partial tar for the caller to discard. */
int lyr_oci_export(const char *const *dirs, size_t n, bool diff, int fd,
		   const lyr_progress *progress, lyr_oci_error *err, lyr_oci_exported *ret);

/* What a load made: the store layer of each image layer, base first (the top is ids[n-1]). */
typedef struct lyr_oci_loaded {
	size_t n;
	char (*ids)[LYR_ID_MAX]; /* heap */
} lyr_oci_loaded;
void lyr_oci_loaded_clear(lyr_oci_loaded *loaded);

/* Loads the image SOURCE: "oci:DIR[:REF]" (REF: the org.opencontainers.image.ref.name of an
 * index entry; without it the layout must hold one image), "oci-archive:FILE[:REF]",
 * "docker-archive:FILE[:NAME[:TAG]]".  An index with several platforms is resolved with
 * PLATFORM ("os/arch[/variant]"; NULL: linux and the host's architecture).  Each image layer
 * becomes one store layer on the previous one (import --tar semantics), the top tagged TAG (may
 * be NULL).  Every manifest and config is checked against its digest before it is read, every
 * layer blob against the manifest's digest and size and, uncompressed, against the config's
 * diff_id; all layers are extracted and checked before the first is committed, so a bad image
 * changes nothing.  Layers the store holds already are reused (same diff on the same parent).
 * Returns 0 and fills RET (clear with lyr_oci_loaded_clear), or -errno with ERR naming the blob
 * or file and the cause (-EBADMSG a digest, size or format mismatch, -ENOENT no such image,
 * -EINVAL a malformed SOURCE or an ambiguous one). */
int lyr_oci_load(lyr_store *s, const char *source, const char *tag, const char *platform,
		 const lyr_progress *progress, lyr_oci_error *err, lyr_oci_loaded *ret);

/* Registries (OCI distribution API; plain HTTP for localhost, 127.0.0.1 and [::1], HTTPS
 * otherwise, its certificate verified unless TLS_VERIFY is false, which also allows plain HTTP
 * to a registry that speaks no TLS).  A 401 is answered as the registry asks: basic
 * credentials, or a bearer token fetched with them, from the first auth file that has the
 * registry ($REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.docker/config.json).
 * Transient failures (no connection, reset, timeout, 5xx, 429) are tried again with backoff
 * ($LAYERFS_REGISTRY_RETRIES more times, 3 by default; $LAYERFS_REGISTRY_TIMEOUT seconds to
 * connect or of a stalled transfer, 10 by default).  NAME is REGISTRY/REPOSITORY[:TAG|@DIGEST] (TAG
 * "latest" by default). lyr_oci_pull downloads the image (the manifest for PLATFORM from an index)
 * into a scratch layout in the store and loads it with lyr_oci_load's checks and guarantees.
 * lyr_oci_push saves the chain of LAYER_ID (gzip) and uploads the blobs the registry lacks (HEAD
 * first), then the manifest under TAG; RET as lyr_oci_save fills it.  Failures name the blob or
 * reference and give the registry's own error text.  PROGRESS (pull; may be NULL): the files
 * and bytes load extracts.  BLOBS (may be NULL): the bytes DONE of TOTAL of each blob sent or
 * received, called from the download threads too; a first call with both 0 announces a blob
 * (blobs are announced in the order they are best shown in), TOTAL is 0 until it is known. */
typedef struct lyr_oci_blob_progress {
	void (*fn)(void *ctx, const char *digest, uint64_t done, uint64_t total);
	void *ctx;
} lyr_oci_blob_progress;
int lyr_oci_pull(lyr_store *s, const char *name, bool tls_verify, const char *tag,
		 const char *platform, const lyr_progress *progress,
		 const lyr_oci_blob_progress *blobs, lyr_oci_error *err, lyr_oci_loaded *ret);
int lyr_oci_push(lyr_store *s, const char *layer_id, const char *name, bool tls_verify,
		 const lyr_oci_blob_progress *blobs, lyr_oci_error *err, lyr_oci_saved *ret);

static inline void lyr_oci_blob_progress_report(const lyr_oci_blob_progress *p,
						const char *digest, uint64_t done, uint64_t total)
{
	if (p && p->fn)
		p->fn(p->ctx, digest, done, total);
}

/* The exec cache in a registry (docs/cache.md).  NAME is a repository, REGISTRY/REPOSITORY
 * without a tag; one record per cache key under the tag "lfc-<the key's hex>".  TLS_VERIFY as
 * for lyr_oci_pull: false skips the certificate check and falls back to plain HTTP (the
 * registries of `--tls-verify=false`); true by default everywhere.  Requests have
 * the cache's bounds: $LAYERFS_CACHE_TIMEOUT seconds (5 by default) per request, one retry.
 * Failures return -errno with ERR naming the blob, tag or host and the cause (the registry's
 * own text when it gave one): -EBADMSG a record that fails a check, -EACCES a refused login,
 * -ETIMEDOUT, -EIO, -EINVAL a malformed NAME or $LAYERFS_CACHE_TIMEOUT. */
#define LYR_OCI_CACHE_TAG_PREFIX "lfc-"
#define LYR_OCI_CACHE_TAG_LEN (4 + 64 + 1)
/* The tag of KEY ("sha256:<hex>"); -EINVAL for anything else. */
int lyr_oci_cache_tag(const char *key, char ret[LYR_OCI_CACHE_TAG_LEN]);
/* 0 when NAME is a repository name a cache can be, -EINVAL with ERR saying why.  Neither a
 * request nor a library load: the check costs an exec answered locally nothing. */
int lyr_oci_cache_check_name(const char *name, lyr_oci_error *err);
/* Looks KEY up in NAME: 0 when there is no record; 1 when there is one and it passed every
 * check: the output layers S lacks (with their missing parents) are imported, each checked
 * against its blob digest and the record's layer ID, and the result is stored in S's action
 * cache (lyr_action_get answers it).  On failure every layer this call imported is removed. */
int lyr_oci_cache_fetch(lyr_store *s, const char *name, bool tls_verify, const char *key,
			lyr_oci_error *err);
/* Publishes A, the result of KEY, to NAME: the layer blobs of every output's chain the
 * registry lacks, the record, then the manifest.  1 published, 0 when NAME holds a record for
 * KEY already (then nothing is sent). */
int lyr_oci_cache_publish(lyr_store *s, const char *name, bool tls_verify, const char *key,
			  const lyr_action *a, lyr_oci_error *err);

/* One record of a cache repository. */
typedef struct lyr_oci_cache_entry {
	char key[LYR_DIGEST_TEXT_LEN];
	char digest[LYR_DIGEST_TEXT_LEN]; /* of its manifest */
	int64_t created;		  /* Unix time (to the minute); -1 when not given */
	uint64_t size;			  /* its config and layer blobs, in bytes */
} lyr_oci_cache_entry;
/* Every record of NAME (a manifest GET per "lfc-" tag) into RET (heap, RET_N long), in the
 * registry's tag order.  Push/pull request bounds. */
int lyr_oci_cache_list(const char *name, bool tls_verify, lyr_oci_error *err,
		       lyr_oci_cache_entry **ret, size_t *ret_n);
/* Deletes the manifest DIGEST of NAME (its blobs stay until the registry's GC). */
int lyr_oci_cache_delete(const char *name, bool tls_verify, const char *digest, lyr_oci_error *err);
