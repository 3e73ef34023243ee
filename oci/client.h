/* oci/client.c: the OCI distribution API over libcurl, for push and pull (registry.c) and for
 * anything else that keeps blobs and manifests in a registry.  One oci_registry is one
 * repository on one registry, with the login state the registry asked for; it is not shared
 * between threads.  Every call returns 0 (or the documented positive value) or -errno with ERR
 * naming the blob or reference and giving the registry's own error text: -ENOENT a 404,
 * -EACCES a refused login, -ETIMEDOUT a stalled transfer, -EIO anything else. */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "oci-int.h"

typedef struct oci_registry {
	char host[256], repo[512], ref[160]; /* ref: the TAG or DIGEST of the name, "latest" */
	bool plain_http, tls_verify;
	/* per-request bounds: 0 takes $LAYERFS_REGISTRY_TIMEOUT (seconds; 10 by default) and
	 * $LAYERFS_REGISTRY_RETRIES (more tries after the first; 3 by default) */
	long timeout_s;
	int retries;
	/* authentication, as the registry asked for it: credentials (looked up on the first
	 * 401), sent as basic auth once a Basic challenge came, or a bearer token */
	oci_credentials creds;
	bool creds_looked, basic, token_request;
	char bearer[8192];
	/* NULL, or a flag that stops the handle's requests (-ECANCELED) once it is true: set by
	 * another thread when a transfer beside this one failed */
	const atomic_bool *cancel;
	/* NULL, or where the bytes of blob transfers are reported */
	const lyr_oci_blob_progress *progress;
	/* NULL (a connection for each request), or the libcurl handle oci_registry_keep made:
	 * its open connections serve the next requests */
	CURL *conn;
} oci_registry;

/* NAME ("REGISTRY/REPOSITORY[:TAG|@DIGEST]") into RET; no request is made.  Plain HTTP for
 * localhost, 127.0.0.1 and [::1], HTTPS otherwise (certificate checked unless TLS_VERIFY is
 * false, which also lets a registry without TLS be spoken to in plain HTTP).  -EINVAL for a
 * malformed name. */
int oci_registry_open(const char *name, bool tls_verify, oci_registry *ret, lyr_oci_error *err);

/* From now until oci_registry_close, the requests of R reuse one connection (HTTP keep-alive)
 * instead of each connecting, and over HTTPS shaking hands, again.  For a handle one thread
 * uses: the copies oci_registry_blobs_get makes for its threads connect on their own.
 * -ENOMEM. */
int oci_registry_keep(oci_registry *r);
/* Closes the connections oci_registry_keep kept (none: nothing to do). */
void oci_registry_close(oci_registry *r);

/* GET the manifest or index REF (a tag or a digest) into the file named by its hex digest in
 * the directory BLOBS (-1: not kept); RET_DIGEST gets its digest, RET its JSON.  A manifest asked for by
 * digest is checked against it (-EBADMSG). */
int oci_registry_manifest_get(oci_registry *r, const char *ref, int blobs, lyr_oci_error *err,
			      char ret_digest[LYR_DIGEST_TEXT_LEN], json_t **ret);

/* PUT DATA (LEN bytes, of MEDIA_TYPE) as the manifest REF (a tag or its digest). */
int oci_registry_manifest_put(oci_registry *r, const char *ref, const char *media_type,
			      const void *data, size_t len, lyr_oci_error *err);

/* DELETE the manifest DIGEST (registries refuse deletes by tag; the reference registry needs
 * storage.delete.enabled, else -EACCES or -EIO with its text). */
int oci_registry_manifest_delete(oci_registry *r, const char *digest, lyr_oci_error *err);

/* Every tag of the repository (following the registry's pagination) as a JSON array of
 * strings into RET; an unknown repository has no tags (an empty array). */
int oci_registry_tags_list(oci_registry *r, lyr_oci_error *err, json_t **ret);

/* 1 when the registry has the blob DIGEST (HEAD), 0 when not. */
int oci_registry_blob_has(oci_registry *r, const char *digest, lyr_oci_error *err);

/* GET the blob DIGEST into the file named by its hex digest in BLOBS (not checked against the
 * digest: the caller checks what it reads). */
int oci_registry_blob_get(oci_registry *r, const char *digest, int blobs, lyr_oci_error *err);

/* oci_registry_blob_get of the N blobs DIGESTS, OCI_REGISTRY_DOWNLOADS at a time, each
 * download on a copy of R (its login state as R has it).  The first failure stops the others
 * and is the one returned; files of blobs not (wholly) fetched may be left in BLOBS. */
#define OCI_REGISTRY_DOWNLOADS 3
int oci_registry_blobs_get(oci_registry *r, const char *const *digests, size_t n, int blobs,
			   lyr_oci_error *err);

/* Uploads the blob DIGEST from the file named by its hex digest in BLOBS unless the registry
 * has it (HEAD first), streamed from the file: monolithic (one PUT) up to
 * $LAYERFS_REGISTRY_CHUNK bytes (OCI_REGISTRY_CHUNK by default, or the registry's
 * OCI-Chunk-Min-Length when larger), in PATCHed chunks of that size above.  -ENODATA when the
 * registry lacks it and BLOBS has no such file (the caller writes it and calls again). */
#define OCI_REGISTRY_CHUNK (32L << 20)
int oci_registry_blob_put(oci_registry *r, int blobs, const char *digest, lyr_oci_error *err);

/* oci_registry_blob_put, but a blob the repository lacks is first asked for as a
 * cross-repository mount from the repository FROM (may be NULL: none) of the same registry:
 * 1 when the registry mounted it (nothing was sent), 0 when it was there or got uploaded (a
 * registry that does not mount answers with an upload session, which is then used). */
int oci_registry_blob_put_from(oci_registry *r, int blobs, const char *digest, const char *from,
			       lyr_oci_error *err);
