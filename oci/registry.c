/* push and pull of images (layerfs/oci.h).
 *
 * Neither speaks the image format itself: pull downloads the manifest (and index), config and
 * layer blobs into an OCI layout in a scratch stage of the store and hands it to load, which
 * checks every digest before anything is committed (layer blobs are downloaded a few at a time,
 * see oci_registry_blobs_get); push saves the chain into a scratch layout
 * and uploads what the registry lacks (a HEAD per blob first; monolithic POST + PUT uploads),
 * then the manifest under the tag.  The requests themselves are client.c's. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "layerfs/hash.h"
#include "layerfs/oci.h"

/* The note "blob-repos" of a layer: where the registries hold its blob, one line
 * "DIGEST HOST REPOSITORY" per place it was pulled from or pushed to, the newest first, at most
 * BLOB_REPOS_MAX; push asks a registry to mount a blob from another of its repositories that
 * the note names.  A cache: a lost or stale note costs an upload, nothing else. */
#define BLOB_REPOS_MAX 8

/* A repository of IR's registry other than IR's own that the note of layer ID names as
 * holding DIGEST, into FROM; false when there is none. */
static bool blob_repo_find(lyr_store *s, const char *id, const char *digest,
			   const oci_registry *ir, char *from, size_t len)
{
	char *text;
	if (lyr_layer_meta_get(s, id, "blob-repos", &text) < 0)
		return false;
	bool found = false;
	for (char *save, *line = strtok_r(text, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		char d[80], host[256], repo[512];
		found = sscanf(line, "%79s %255s %511s", d, host, repo) == 3 &&
			strcmp(d, digest) == 0 && strcmp(host, ir->host) == 0 &&
			strcmp(repo, ir->repo) != 0;
		if (found)
			snprintf(from, len, "%s", repo);
	}
	free(text);
	return found;
}

/* Adds to the note of layer ID that IR's repository holds DIGEST (unless it says so). */
static void blob_repo_note(lyr_store *s, const char *id, const char *digest,
			   const oci_registry *ir)
{
	char *old = NULL, line[1024];
	lyr_layer_meta_get(s, id, "blob-repos", &old);
	int n = snprintf(line, sizeof line, "%s %s %s\n", digest, ir->host, ir->repo);
	size_t ol = old ? strlen(old) : 0;
	char *text = malloc((size_t)n + ol + 1);
	if (text && n > 0 && (size_t)n < sizeof line) {
		size_t len = (size_t)n, kept = 1;
		memcpy(text, line, len);
		for (char *p = old, *eol; p && *p && kept < BLOB_REPOS_MAX; p = eol + 1) {
			eol = strchr(p, '\n');
			if (!eol)
				break;
			if ((size_t)(eol + 1 - p) == len && memcmp(p, line, len) == 0) {
				if (p == old)
					break; /* the newest line already: nothing to write */
				continue;
			}
			memcpy(text + len, p, (size_t)(eol + 1 - p));
			len += (size_t)(eol + 1 - p);
			kept++;
		}
		if (!(old && strncmp(old, line, (size_t)n) == 0))
			lyr_layer_meta_set(s, id, "blob-repos", text, len);
	}
	free(text);
	free(old);
}

int lyr_oci_pull(lyr_store *s, const char *name, bool tls_verify, const char *tag,
		 const char *platform, const lyr_progress *progress,
		 const lyr_oci_blob_progress *blobs_progress, lyr_oci_error *err,
		 lyr_oci_loaded *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	memset(ret, 0, sizeof *ret);
	oci_registry ir;
	int r = oci_registry_open(name, tls_verify, &ir, err);
	if (r < 0)
		return r;
	ir.progress = blobs_progress;
	lyr_stage *scratch;
	r = lyr_stage_new(s, "pull", &scratch);
	if (r < 0)
		return r;
	int dir = lyr_stage_fd(scratch);
	int blobs = -1;
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	if (mkdirat(dir, "blobs", 0755) < 0 || mkdirat(dir, "blobs/sha256", 0755) < 0 ||
	    (blobs = openat(dir, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = -errno;
	if (r == 0)
		r = oci_write_file(dir, "oci-layout", layout, sizeof layout - 1);
	char top[LYR_DIGEST_TEXT_LEN] = "";
	json_t *m = NULL;
	if (r == 0)
		r = oci_registry_manifest_get(&ir, ir.ref, blobs, err, top, &m);
	const char *mt = json_string_value(json_object_get(m, "mediaType"));
	bool index = mt && (strstr(mt, "index") || strstr(mt, "manifest.list"));
	char want[80];
	snprintf(want, sizeof want, "linux/%s", oci_host_arch());
	if (!platform)
		platform = want;
	json_t *man = m;
	char mdigest[LYR_DIGEST_TEXT_LEN];
	snprintf(mdigest, sizeof mdigest, "%s", top);
	if (r == 0 && index) {
		/* the platform's manifest; load checks the choice again from the same blobs */
		json_t *list = json_object_get(m, "manifests");
		const char *pick = NULL;
		for (size_t i = 0; i < json_array_size(list) && !pick; i++) {
			json_t *d = json_array_get(list, i), *p = json_object_get(d, "platform");
			char os[64] = "", arch[64] = "", var[64] = "";
			sscanf(platform, "%63[^/]/%63[^/]/%63s", os, arch, var);
			const char *pv = json_string_value(json_object_get(p, "variant"));
			if (p &&
			    strcmp(json_string_value(json_object_get(p, "os")) ?: "", os) == 0 &&
			    strcmp(json_string_value(json_object_get(p, "architecture")) ?: "",
				   arch) == 0 &&
			    (!*var || (pv && strcmp(pv, var) == 0)))
				pick = json_string_value(json_object_get(d, "digest"));
		}
		if (!pick)
			r = oci_fail(err, -ENOENT, name, "no image for platform %s", platform);
		else
			r = oci_registry_manifest_get(&ir, pick, blobs, err, mdigest, &man);
	}
	const char *cfg_digest =
	    json_string_value(json_object_get(json_object_get(man, "config"), "digest"));
	if (r == 0)
		r = oci_registry_blob_get(&ir, cfg_digest, blobs, err);
	json_t *layers = json_object_get(man, "layers");
	/* the layers the store has (load finds them by diff_id too) are not downloaded */
	size_t known = 0;
	if (r == 0) {
		json_t *cfg = NULL;
		int fd = openat(blobs, cfg_digest + 7, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			cfg = json_loadfd(fd, 0, NULL);
			close(fd);
		}
		json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
		char prev[LYR_ID_MAX] = "", cur[LYR_ID_MAX];
		while (known < json_array_size(ids) && known < json_array_size(layers) &&
		       json_is_string(json_array_get(ids, known)) &&
		       lyr_layer_find_diff_id(s, prev[0] ? prev : NULL,
					      json_string_value(json_array_get(ids, known)),
					      cur) == 0) {
			snprintf(prev, sizeof prev, "%s", cur);
			known++;
		}
		json_decref(cfg);
	}
	/* the rest, a few at a time; a digest named twice is fetched once */
	size_t nl = json_array_size(layers), nget = 0;
	const char **get = r == 0 && nl > known ? calloc(nl - known, sizeof *get) : NULL;
	if (r == 0 && nl > known && !get)
		r = -ENOMEM;
	for (size_t i = known; r == 0 && i < nl; i++) {
		const char *d = json_string_value(json_object_get(json_array_get(layers, i), "digest"));
		bool dup = false;
		for (size_t k = 0; k < nget && d && !dup; k++)
			dup = get[k] && strcmp(get[k], d) == 0;
		if (!dup)
			get[nget++] = d;
	}
	if (r == 0 && nget)
		r = oci_registry_blobs_get(&ir, get, nget, blobs, err);
	free(get);
	if (r == 0) {
		json_t *ix = json_pack(
		    "{s:i,s:[{s:s,s:s,s:{s:s}}]}", "schemaVersion", 2, "manifests", "mediaType",
		    index ? "application/vnd.oci.image.index.v1+json"
			  : "application/vnd.oci.image.manifest.v1+json",
		    "digest", top, "annotations", "org.opencontainers.image.ref.name", "pulled");
		char *text = json_dumps(ix, JSON_COMPACT);
		r = text ? oci_write_file(dir, "index.json", text, strlen(text)) : -ENOMEM;
		free(text);
		json_decref(ix);
	}
	if (blobs >= 0)
		close(blobs);
	if (r == 0) {
		char src[256];
		snprintf(src, sizeof src, "oci:/proc/self/fd/%d:pulled", dir);
		r = lyr_oci_load(s, src, tag, platform, progress, err, ret);
	}
	/* a later push of these layers to another repository here can mount their blobs */
	for (size_t i = 0; r == 0 && i < ret->n && i < nl; i++) {
		const char *d = json_string_value(json_object_get(json_array_get(layers, i), "digest"));
		if (d)
			blob_repo_note(s, ret->ids[i], d, &ir);
	}
	if (man != m)
		json_decref(man);
	json_decref(m);
	lyr_stage_free(scratch);
	return r;
}

int lyr_oci_push(lyr_store *s, const char *layer_id, const char *name, bool tls_verify,
		 const lyr_oci_blob_progress *blobs_progress, lyr_oci_error *err, lyr_oci_saved *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	memset(ret, 0, sizeof *ret);
	oci_registry ir;
	int r = oci_registry_open(name, tls_verify, &ir, err);
	if (r < 0)
		return r;
	if (strncmp(ir.ref, "sha256:", 7) == 0)
		return oci_fail(err, -EINVAL, name, "push needs a tag, not a digest");
	ir.progress = blobs_progress;
	lyr_stage *scratch;
	r = lyr_stage_new(s, "push", &scratch);
	if (r < 0)
		return r;
	int dir = lyr_stage_fd(scratch);
	/* layers saved before are known by their notes: a registry that has their blobs gets
	 * HEAD requests only, and no blob is built */
	r = oci_save_layout(s, layer_id, dir, "push", LYR_OCI_GZIP, true, err, ret);
	int blobs = r == 0 ? openat(dir, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (r == 0 && blobs < 0)
		r = -errno;
	/* the chain's layer IDs, base first as the digests */
	char(*ids)[LYR_ID_MAX] = r == 0 ? calloc(ret->layers + 1, sizeof *ids) : NULL;
	if (r == 0 && !ids)
		r = -ENOMEM;
	for (size_t i = ret->layers; r == 0 && i-- > 0;) {
		lyr_layer_info info;
		snprintf(ids[i], LYR_ID_MAX, "%s", i + 1 == ret->layers ? layer_id : "");
		if (!ids[i][0] && (r = lyr_layer_get(s, ids[i + 1], &info)) == 0) {
			snprintf(ids[i], LYR_ID_MAX, "%s", info.parent);
			lyr_layer_info_clear(&info);
		}
	}
	for (size_t i = 0; r == 0 && i < ret->layers; i++) {
		/* a blob another repository here holds is mounted from there */
		char from[512];
		bool known = blob_repo_find(s, ids[i], ret->layer_digests[i], &ir, from,
					    sizeof from);
		r = oci_registry_blob_put_from(&ir, blobs, ret->layer_digests[i],
					       known ? from : NULL, err);
		if (r ==
		    -ENODATA) { /* the registry lacks a blob we did not build: build them all */
			lyr_oci_saved_clear(ret);
			r = oci_save_layout(s, layer_id, dir, "push", LYR_OCI_GZIP, false, err,
					    ret);
			if (r == 0)
				r = oci_registry_blob_put(&ir, blobs, ret->layer_digests[i], err);
		}
		if (r >= 0)
			blob_repo_note(s, ids[i], ret->layer_digests[i], &ir);
		r = r < 0 ? r : 0;
	}
	free(ids);
	if (r == 0)
		r = oci_registry_blob_put(&ir, blobs, ret->config, err);
	if (r == 0) {
		char path[128], *man = NULL;
		size_t len = 0;
		snprintf(path, sizeof path, "/proc/self/fd/%d/%s", blobs, ret->manifest + 7);
		r = lyr_read_file(path, &man, &len);
		if (r == 0)
			r = oci_registry_manifest_put(&ir, ir.ref,
						      "application/vnd.oci.image.manifest.v1+json",
						      man, len, err);
		free(man);
	}
	if (blobs >= 0)
		close(blobs);
	if (r < 0)
		lyr_oci_saved_clear(ret);
	lyr_stage_free(scratch);
	return r;
}
