/* The exec cache in a registry (docs/cache.md): one manifest per cache key under the tag
 * "lfc-<hex>", its config a JSON record of the outputs and of every layer of their chains, its
 * layers the gzip blobs `layerfs save` writes for those layers.
 *
 * A fetch downloads into a scratch stage of the store (removed at the end) and imports only
 * the layers the store lacks, parents first, each checked against its blob digest and, once
 * imported, against the record's layer ID; on any failure the layers it imported are removed
 * again.  A publish uploads blobs (HEAD first), then the config, then the manifest, so that a
 * reader never finds a record whose blobs are missing.  Record JSON is compact with sorted keys
 * and its one time is kept to the minute, so publishers of the same result PUT the same bytes.
 * Cache traffic has tighter bounds than push and pull: $LAYERFS_CACHE_TIMEOUT seconds (5 by
 * default) per request and one retry. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "layerfs/hash.h"
#include "layerfs/oci.h"
#include "layerfs/tree.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_RECORD "application/vnd.layerfs.exec.cache.v1+json"
#define MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define CREATED "org.opencontainers.image.created"
#define RESULT "dev.layerfs.exec.result"
#define CACHE_TIMEOUT_DEFAULT 5

static void decrefp(json_t **j)
{
	if (*j)
		json_decref(*j);
}

int lyr_oci_cache_tag(const char *key, char ret[LYR_OCI_CACHE_TAG_LEN])
{
	if (!key || strncmp(key, "sha256:", 7) != 0 || strlen(key) != 71 ||
	    strspn(key + 7, "0123456789abcdef") != 64)
		return -EINVAL;
	snprintf(ret, LYR_OCI_CACHE_TAG_LEN, "%s%s", LYR_OCI_CACHE_TAG_PREFIX, key + 7);
	return 0;
}

/* The repository NAME (no tag, no digest) opened into RET, its certificate checked when
 * TLS_VERIFY, with the cache's request bounds when CACHE_BOUNDS. */
static int cache_open(const char *name, bool tls_verify, bool cache_bounds, oci_registry *ret,
		      lyr_oci_error *err)
{
	const char *slash = strchr(name, '/');
	if (slash && (strchr(slash, ':') || strchr(slash, '@')))
		return oci_fail(err, -EINVAL, name,
				"a cache is a repository: REGISTRY/REPOSITORY, without a tag");
	int r = oci_registry_open(name, tls_verify, ret, err);
	if (r < 0 || !cache_bounds)
		return r;
	ret->timeout_s = CACHE_TIMEOUT_DEFAULT;
	ret->retries = 1;
	const char *v = getenv("LAYERFS_CACHE_TIMEOUT");
	if (v && *v) {
		char *end;
		errno = 0;
		long n = strtol(v, &end, 10);
		if (errno || *end || n < 1 || n > 86400)
			return oci_fail(err, -EINVAL, "LAYERFS_CACHE_TIMEOUT",
					"'%s' is not a whole number of seconds from 1 to 86400",
					v);
		ret->timeout_s = n;
	}
	return 0;
}

int lyr_oci_cache_check_name(const char *name, lyr_oci_error *err)
{
	/* no library is loaded: an exec answered from the local cache never needs one */
	if (err)
		err->entry[0] = err->why[0] = '\0';
	oci_registry ir;
	return cache_open(name, true, false, &ir, err);
}

/* Checks the file HEX-named by DIGEST in DIR against DIGEST (and SIZE unless negative). */
static int blob_check(int dir, const char *digest, json_int_t size, lyr_oci_error *err)
{
	_cleanup_close_ int fd = openat(dir, digest + 7, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return oci_fail(err, -errno, digest, "%s", strerror(errno));
	lyr_sha256_ctx *h;
	int r = lyr_sha256_new(&h);
	if (r < 0)
		return r;
	static __thread char buf[1 << 16];
	uint64_t n = 0;
	ssize_t k;
	while ((k = read(fd, buf, sizeof buf)) > 0) {
		lyr_sha256_update(h, buf, (size_t)k);
		n += (uint64_t)k;
	}
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(h, d);
	lyr_sha256_free(h);
	if (k < 0)
		return oci_fail(err, -errno, digest, "%s", strerror(errno));
	char got[LYR_DIGEST_TEXT_LEN];
	lyr_digest_text(d, got);
	if (strcmp(got, digest) != 0)
		return oci_fail(err, -EBADMSG, digest, "the registry sent a blob that is %s", got);
	if (size >= 0 && (uint64_t)size != n)
		return oci_fail(err, -EBADMSG, digest, "%llu bytes, the record says %lld",
				(unsigned long long)n, (long long)size);
	return 0;
}

/* The string member KEY of O when it is a digest text; NULL otherwise. */
static const char *digest_of(json_t *o, const char *key)
{
	const char *d = json_string_value(json_object_get(o, key));
	uint8_t scratch[LYR_SHA256_LEN];
	return d && lyr_digest_parse(d, scratch) == 0 ? d : NULL;
}

/* The scratch stage of store S into *ST and its fd into *DIR, unless made already.  It is
 * made only when a blob is downloaded or written: a hit answered by the manifest alone, or a
 * publish that finds the record there, touches no disk. */
static int scratch(lyr_store *s, lyr_stage **st, int *dir, lyr_oci_error *err)
{
	if (*st)
		return 0;
	int r = lyr_stage_new(s, "cache", st);
	if (r < 0)
		return oci_fail(err, r, "store", "a scratch directory: %s", strerror(-r));
	*dir = lyr_stage_fd(*st);
	return 0;
}

/* ---- fetch ---- */

typedef struct fetch {
	lyr_store *s;
	oci_registry ir;
	lyr_stage *scratch; /* made by the first download (see scratch) */
	int dir;	    /* its fd: downloaded blobs */
	const char *key;
	json_t *man, *rec;
	char (*imported)[LYR_ID_MAX]; /* layers this fetch added, in order */
	size_t n_imported;
} fetch;

/* The first object of ARRAY whose string MEMBER is VALUE; NULL when none is. */
static json_t *find_by(json_t *array, const char *member, const char *value)
{
	size_t i;
	json_t *o;
	json_array_foreach(array, i, o)
	{
		const char *v = json_string_value(json_object_get(o, member));
		if (v && strcmp(v, value) == 0)
			return o;
	}
	return NULL;
}

static bool store_has(lyr_store *s, const char *id)
{
	lyr_layer_info info;
	if (lyr_layer_get(s, id, &info) < 0)
		return false;
	lyr_layer_info_clear(&info);
	return true;
}

/* Fetches and imports layer entry L (its parent is in the store by now). */
static int import_layer(fetch *f, json_t *l, lyr_oci_error *err)
{
	const char *id = json_string_value(json_object_get(l, "id"));
	const char *parent = json_string_value(json_object_get(l, "parent"));
	const char *digest = digest_of(l, "digest");
	json_t *size = json_object_get(l, "size");
	if (!digest || !parent || !json_is_integer(size) || !find_by(json_object_get(f->man, "layers"), "digest", digest))
		return oci_fail(err, -EBADMSG, id, "the record's entry for the layer is malformed");
	int r = scratch(f->s, &f->scratch, &f->dir, err);
	if (r == 0)
		r = oci_registry_blob_get(&f->ir, digest, f->dir, err);
	if (r == 0)
		r = blob_check(f->dir, digest, json_integer_value(size), err);
	_cleanup_close_ int fd = r == 0 ? openat(f->dir, digest + 7, O_RDONLY | O_CLOEXEC) : -1;
	if (r == 0 && fd < 0)
		r = oci_fail(err, -errno, digest, "%s", strerror(errno));
	if (r < 0)
		return r;
	char got[LYR_ID_MAX], desc[1024];
	snprintf(desc, sizeof desc, "exec cache from %s/%s", f->ir.host, f->ir.repo);
	lyr_oci_error ierr;
	r = lyr_oci_import_tar(f->s, fd, parent[0] ? parent : NULL, desc, NULL, NULL, &ierr, got);
	unlinkat(f->dir, digest + 7, 0); /* read: its space is the store's again */
	if (r < 0) {
		if (ierr.why[0])
			return oci_fail(err, r, digest, "entry '%s': %s", ierr.entry, ierr.why);
		const char *why = lyr_store_last_error();
		return oci_fail(err, r, digest, "importing it: %s", why[0] ? why : strerror(-r));
	}
	if (strcmp(got, id) != 0) {
		/* a layer the store held already (the same tree) is someone else's */
		bool existed = false;
		for (size_t i = 0; i < f->n_imported; i++)
			existed |= strcmp(f->imported[i], got) == 0;
		if (!existed)
			lyr_store_rm(f->s, got);
		return oci_fail(err, -EBADMSG, digest, "the blob gives layer %s, the record says %s",
				got, id);
	}
	snprintf(f->imported[f->n_imported++], LYR_ID_MAX, "%s", got);
	return 0;
}

/* The record's layers the store lacks for output layer ID, base first, appended to TODO
 * (each once). */
static int missing_chain(fetch *f, const char *id, json_t *todo, lyr_oci_error *err)
{
	json_t *chain = json_array();
	int r = 0;
	for (const char *cur = id; r == 0 && cur[0] && !store_has(f->s, cur);) {
		json_t *l = find_by(json_object_get(f->rec, "layers"), "id", cur);
		if (!l) {
			r = oci_fail(err, -EBADMSG, cur, "the record does not describe the layer");
			break;
		}
		bool listed = false;
		size_t i;
		json_t *t;
		json_array_foreach(todo, i, t) listed |= t == l;
		if (listed)
			break; /* it and its parents are fetched for an earlier output */
		json_array_insert(chain, 0, l);
		const char *parent = json_string_value(json_object_get(l, "parent"));
		if (!parent || json_array_size(chain) > 4096)
			r = oci_fail(err, -EBADMSG, cur, "the record's chain is malformed");
		cur = parent ? parent : "";
	}
	if (r == 0)
		json_array_extend(todo, chain);
	json_decref(chain);
	return r;
}

static int fetch_record(fetch *f, const char *tag, lyr_oci_error *err)
{
	char mdigest[LYR_DIGEST_TEXT_LEN];
	int r = oci_registry_manifest_get(&f->ir, tag, -1, err, mdigest, &f->man);
	if (r == -ENOENT)
		return 0; /* no record: a miss */
	if (r < 0)
		return r;
	json_t *cfg = json_object_get(f->man, "config");
	const char *mt = json_string_value(json_object_get(cfg, "mediaType"));
	const char *cdigest = digest_of(cfg, "digest");
	if (!mt || strcmp(mt, MT_RECORD) != 0 || !cdigest)
		return oci_fail(err, -EBADMSG, tag, "not a layerfs cache record");
	/* the result in the manifest's annotation answers when the store has every output
	 * layer: then nothing is imported, and the config is not needed */
	const char *text =
	    json_string_value(json_object_get(json_object_get(f->man, "annotations"), RESULT));
	_cleanup_(decrefp) json_t *result = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL)
						 : NULL;
	json_t *outs = json_object_get(result, "outputs");
	bool local = json_is_integer(json_object_get(result, "exit_code")) &&
		     json_is_array(outs);
	size_t i;
	json_t *o;
	json_array_foreach(outs, i, o)
	{
		const char *l = json_string_value(json_object_get(o, "layer"));
		local = local && l && store_has(f->s, l);
	}
	if (local) {
		f->rec = json_pack("{s:O,s:O,s:[]}", "exit_code",
				   json_object_get(result, "exit_code"), "outputs", outs, "layers");
		return f->rec ? 1 : -ENOMEM;
	}
	json_t *csize = json_object_get(cfg, "size");
	r = scratch(f->s, &f->scratch, &f->dir, err);
	if (r == 0)
		r = oci_registry_blob_get(&f->ir, cdigest, f->dir, err);
	if (r == 0)
		r = blob_check(f->dir, cdigest,
			       json_is_integer(csize) ? json_integer_value(csize) : -1, err);
	if (r < 0)
		return r;
	char path[128];
	snprintf(path, sizeof path, "/proc/self/fd/%d/%s", f->dir, cdigest + 7);
	f->rec = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	const char *key = json_string_value(json_object_get(f->rec, "cache_key"));
	if (!key || strcmp(key, f->key) != 0)
		return oci_fail(err, -EBADMSG, tag, "the record is for another key (%s)",
				key ? key : "none");
	if (!json_is_integer(json_object_get(f->rec, "exit_code")) ||
	    !json_is_array(json_object_get(f->rec, "outputs")) ||
	    !json_is_array(json_object_get(f->rec, "layers")))
		return oci_fail(err, -EBADMSG, tag, "the record is malformed");
	if (result && (!json_equal(json_object_get(result, "exit_code"),
				   json_object_get(f->rec, "exit_code")) ||
		       !json_equal(outs, json_object_get(f->rec, "outputs"))))
		return oci_fail(err, -EBADMSG, tag,
				"the manifest's result differs from the record's");
	return 1;
}

/* The record's outputs into A (targets borrowed from the record). */
static int record_outputs(fetch *f, const char *tag, lyr_action *a, lyr_oci_error *err)
{
	json_t *outs = json_object_get(f->rec, "outputs");
	a->exit_code = (int)json_integer_value(json_object_get(f->rec, "exit_code"));
	a->created = time(NULL);
	a->n_outputs = json_array_size(outs);
	a->outputs = calloc(a->n_outputs + 1, sizeof *a->outputs);
	if (!a->outputs)
		return -ENOMEM;
	size_t i;
	json_t *o;
	json_array_foreach(outs, i, o)
	{
		const char *t = json_string_value(json_object_get(o, "target"));
		const char *l = json_string_value(json_object_get(o, "layer"));
		if (!t || !l || t[0] != '/' || strlen(l) >= LYR_ID_MAX)
			return oci_fail(err, -EBADMSG, tag, "output %zu is malformed", i);
		a->outputs[i].target = (char *)t;
		snprintf(a->outputs[i].layer, LYR_ID_MAX, "%s", l);
	}
	return 0;
}

/* The start of a fetch or publish of KEY in NAME: its TAG, the registry opened into IR with the
 * cache's bounds (TLS_VERIFY as cache_open) and one connection for all its requests
 * (oci_registry_close it). */
static int cache_begin(const char *name, bool tls_verify, const char *key, oci_registry *ir,
		       char tag[LYR_OCI_CACHE_TAG_LEN], lyr_oci_error *err)
{
	if (oci_begin_net(err) < 0)
		return -ENOSYS;
	if (lyr_oci_cache_tag(key, tag) < 0)
		return oci_fail(err, -EINVAL, key, "not a cache key");
	int r = cache_open(name, tls_verify, true, ir, err);
	return r < 0 ? r : oci_registry_keep(ir);
}

int lyr_oci_cache_fetch(lyr_store *s, const char *name, bool tls_verify, const char *key,
			lyr_oci_error *err)
{
	char tag[LYR_OCI_CACHE_TAG_LEN];
	fetch f = {.s = s, .key = key, .dir = -1};
	int r = cache_begin(name, tls_verify, key, &f.ir, tag, err);
	if (r < 0)
		return r;
	lyr_action a = {0};
	json_t *todo = json_array();
	r = todo ? fetch_record(&f, tag, err) : -ENOMEM;
	bool found = r > 0;
	if (found)
		r = record_outputs(&f, tag, &a, err);
	for (size_t i = 0; found && r == 0 && i < a.n_outputs; i++)
		r = missing_chain(&f, a.outputs[i].layer, todo, err);
	if (found && r == 0 &&
	    !(f.imported = calloc(json_array_size(todo) + 1, sizeof *f.imported)))
		r = -ENOMEM;
	for (size_t i = 0; found && r == 0 && i < json_array_size(todo); i++)
		r = import_layer(&f, json_array_get(todo, i), err);
	if (found && r == 0) {
		r = lyr_action_put(s, key, &a);
		if (r < 0)
			oci_fail(err, r, key, "storing the result: %s", lyr_store_last_error());
		else
			r = 1;
	}
	if (r < 0) /* nothing half-imported stays: children go before their parents */
		for (size_t i = f.n_imported; i-- > 0;)
			lyr_store_rm(s, f.imported[i]);
	free(a.outputs);
	free(f.imported);
	json_decref(todo);
	json_decref(f.man);
	json_decref(f.rec);
	lyr_stage_free(f.scratch);
	oci_registry_close(&f.ir);
	return r;
}

/* ---- publish ---- */

typedef struct publish {
	lyr_store *s;
	oci_registry ir;
	lyr_stage *scratch; /* made once there is something to send (see scratch) */
	int dir;	    /* its fd: the scratch layout */
	int blobs; /* its blobs/sha256 */
	json_t *layers; /* record entries, parents first */
} publish;

/* Saves the chain of output layer ID into the scratch layout (REUSE: layers saved before are
 * known by their notes) and adds its layers to P->layers. */
static int save_chain(publish *p, const char *id, bool reuse, lyr_oci_error *err)
{
	lyr_oci_saved saved = {0};
	int r = oci_libs_load(err);
	if (r == 0)
		r = oci_save_layout(p->s, id, p->dir, "cache", LYR_OCI_GZIP, reuse, err, &saved);
	if (r == 0 && p->blobs < 0 &&
	    (p->blobs = openat(p->dir, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = oci_fail(err, -errno, "blobs/sha256", "%s", strerror(errno));
	if (r < 0) {
		lyr_oci_saved_clear(&saved);
		return r;
	}
	/* the sizes are in the manifest the save wrote */
	char path[128];
	snprintf(path, sizeof path, "/proc/self/fd/%d/%.64s", p->blobs, saved.manifest + 7);
	_cleanup_(decrefp) json_t *man = json_load_file(path, 0, NULL);
	json_t *descs = json_object_get(man, "layers");
	if (json_array_size(descs) != saved.layers)
		r = oci_fail(err, -EIO, path, "the saved manifest is unreadable");
	/* the chain's IDs, topmost first; the save lists them base first */
	char(*ids)[LYR_ID_MAX] = calloc(saved.layers + 1, sizeof *ids);
	char(*parents)[LYR_ID_MAX] = calloc(saved.layers + 1, sizeof *parents);
	if (!ids || !parents)
		r = -ENOMEM;
	char cur[LYR_ID_MAX];
	snprintf(cur, sizeof cur, "%s", id);
	for (size_t i = 0; r == 0 && i < saved.layers; i++) {
		lyr_layer_info info;
		r = lyr_layer_get(p->s, cur, &info);
		if (r < 0)
			break;
		snprintf(ids[i], LYR_ID_MAX, "%s", cur);
		snprintf(parents[i], LYR_ID_MAX, "%s", info.parent);
		snprintf(cur, sizeof cur, "%s", info.parent);
		lyr_layer_info_clear(&info);
	}
	for (size_t k = 0; r == 0 && k < saved.layers; k++) {
		size_t i = saved.layers - 1 - k; /* base first */
		if (find_by(p->layers, "id", ids[i]))
			continue;
		json_t *size = json_object_get(json_array_get(descs, k), "size");
		json_array_append_new(p->layers,
				      json_pack("{s:s,s:s,s:s,s:s,s:O}", "id", ids[i], "parent",
						parents[i], "diff_id", saved.diff_ids[k], "digest",
						saved.layer_digests[k], "size", size));
	}
	free(ids);
	free(parents);
	lyr_oci_saved_clear(&saved);
	return r;
}

/* 1 when the registry holds a layerfs record under TAG, 0 when it holds none. */
static int record_there(publish *p, const char *tag, lyr_oci_error *err)
{
	char mdigest[LYR_DIGEST_TEXT_LEN];
	json_t *old = NULL;
	int r = oci_registry_manifest_get(&p->ir, tag, -1, err, mdigest, &old);
	const char *mt =
	    json_string_value(json_object_get(json_object_get(old, "config"), "mediaType"));
	/* MT lives in OLD: compared before OLD goes */
	bool ours = r == 0 && mt && strcmp(mt, MT_RECORD) == 0;
	json_decref(old);
	if (ours)
		return 1;
	return r == 0 || r == -ENOENT ? 0 : r;
}

/* oci_registry_blob_put of DIGEST; a failed upload of a blob the registry has now (a
 * concurrent publisher's) is no failure: registries refuse some concurrent uploads of the
 * same bytes (docker-registry with "digest did not match uploaded content"). */
static int put_blob(publish *p, const char *digest, lyr_oci_error *err)
{
	int r = oci_registry_blob_put(&p->ir, p->blobs, digest, err);
	if (r < 0 && r != -ENODATA && oci_registry_blob_has(&p->ir, digest, NULL) == 1)
		r = 0;
	return r;
}

/* Writes TEXT into the scratch blobs as a blob; RET_DIGEST gets its digest. */
static int put_json_blob(publish *p, const char *text, char ret_digest[LYR_DIGEST_TEXT_LEN],
			 lyr_oci_error *err)
{
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256(text, strlen(text), d);
	lyr_digest_text(d, ret_digest);
	int r = oci_write_file(p->blobs, ret_digest + 7, text, strlen(text));
	if (r < 0)
		return oci_fail(err, r, ret_digest, "%s", strerror(-r));
	return put_blob(p, ret_digest, err);
}

/* PUTs the manifest TEXT under TAG: 1 done, 0 when a concurrent publisher's record is there
 * instead.  docker-registry writes a manifest's bytes in place, so concurrent PUTs of the same
 * manifest can fail each other ("digest did not match uploaded content"): a failed PUT is
 * tried again after a short random pause, unless a record has landed meanwhile. */
static int put_manifest(publish *p, const char *tag, const char *text, lyr_oci_error *err)
{
	for (int tries = 1;; tries++) {
		int r = oci_registry_manifest_put(&p->ir, tag, MT_MANIFEST, text, strlen(text), err);
		if (r == 0)
			return 1;
		if (r != -EIO || tries == 4)
			return r;
		/* random per process: the publishers that collided must not meet again */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		unsigned seed = (unsigned)ts.tv_nsec ^ (unsigned)getpid() * 2654435761u;
		ts = (struct timespec){0, (50 + rand_r(&seed) % 200) * 1000000L};
		nanosleep(&ts, NULL);
		if (record_there(p, tag, NULL) == 1)
			return 0;
	}
}

/* The record of A as config JSON text (heap); without KEY (and LAYERS), the result only: the
 * exit code and the outputs, for the manifest's annotation. */
static char *record_text(const char *key, const lyr_action *a, json_t *layers)
{
	json_t *outs = json_array();
	for (size_t i = 0; outs && i < a->n_outputs; i++)
		json_array_append_new(outs, json_pack("{s:s,s:s}", "target", a->outputs[i].target,
						      "layer", a->outputs[i].layer));
	_cleanup_(decrefp) json_t *rec =
	    outs ? json_pack("{s:i,s:o}", "exit_code", a->exit_code, "outputs", outs) : NULL;
	if (rec && key &&
	    (json_object_set_new(rec, "cache_key", json_string(key)) < 0 ||
	     json_object_set(rec, "layers", layers) < 0))
		return NULL;
	return rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

int lyr_oci_cache_publish(lyr_store *s, const char *name, bool tls_verify, const char *key,
			  const lyr_action *a, lyr_oci_error *err)
{
	char tag[LYR_OCI_CACHE_TAG_LEN];
	publish p = {.s = s, .dir = -1, .blobs = -1};
	bool published = false;
	json_t *descs = NULL;
	_cleanup_free_ char *rec = NULL;
	int r = cache_begin(name, tls_verify, key, &p.ir, tag, err);
	if (r < 0)
		return r;
	/* a record there already stays: the first one published is the answer */
	r = record_there(&p, tag, err);
	if (r != 0)
		goto out;
	r = scratch(s, &p.scratch, &p.dir, err);
	if (r == 0 && (!(p.layers = json_array()) || !(descs = json_array())))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < a->n_outputs; i++)
		r = save_chain(&p, a->outputs[i].layer, true, err);
	for (size_t i = 0; r == 0 && i < json_array_size(p.layers); i++) {
		json_t *l = json_array_get(p.layers, i);
		const char *digest = json_string_value(json_object_get(l, "digest"));
		r = put_blob(&p, digest, err);
		if (r == -ENODATA) {
			/* the registry lacks a blob known by its note only: build it */
			json_t *keep = p.layers;
			p.layers = json_array();
			r = p.layers ? save_chain(&p, json_string_value(json_object_get(l, "id")),
						  false, err)
				     : -ENOMEM;
			json_decref(p.layers);
			p.layers = keep;
			if (r == 0)
				r = put_blob(&p, digest, err);
		}
		json_array_append_new(descs, json_pack("{s:s,s:s,s:O}", "mediaType", MT_LAYER_GZIP,
						       "digest", digest, "size",
						       json_object_get(l, "size")));
	}
	if (r == 0 && !(rec = record_text(key, a, p.layers)))
		r = -ENOMEM;
	char cdigest[LYR_DIGEST_TEXT_LEN];
	if (r == 0)
		r = put_json_blob(&p, rec, cdigest, err);
	if (r == 0) {
		char created[32];
		time_t now = time(NULL);
		now -= now % 60; /* to the minute: publishers of one result send the same bytes */
		strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
		_cleanup_free_ char *result = record_text(NULL, a, NULL);
		_cleanup_(decrefp) json_t *man =
		    result ? json_pack("{s:i,s:s,s:s,s:{s:s,s:s,s:I},s:O,s:{s:s,s:s}}",
				       "schemaVersion", 2, "mediaType", MT_MANIFEST, "artifactType",
				       MT_RECORD, "config", "mediaType", MT_RECORD, "digest",
				       cdigest, "size", (json_int_t)strlen(rec), "layers", descs,
				       "annotations", CREATED, created, RESULT, result)
			   : NULL;
		_cleanup_free_ char *text = man ? json_dumps(man, JSON_COMPACT | JSON_SORT_KEYS)
						: NULL;
		r = text ? put_manifest(&p, tag, text, err) : -ENOMEM;
		published = r == 1;
	}
out:
	json_decref(descs);
	if (p.blobs >= 0)
		close(p.blobs);
	json_decref(p.layers);
	lyr_stage_free(p.scratch);
	oci_registry_close(&p.ir);
	return r < 0 ? r : published;
}

/* ---- the registry side: list and delete ---- */

int lyr_oci_cache_list(const char *name, bool tls_verify, lyr_oci_error *err,
		       lyr_oci_cache_entry **ret, size_t *ret_n)
{
	if (oci_begin_net(err) < 0)
		return -ENOSYS;
	/* one connection for the tag list and every manifest */
	_cleanup_(oci_registry_close) oci_registry ir = {0};
	int r = cache_open(name, tls_verify, false, &ir, err);
	if (r == 0)
		r = oci_registry_keep(&ir);
	if (r < 0)
		return r;
	_cleanup_(decrefp) json_t *tags = NULL;
	r = oci_registry_tags_list(&ir, err, &tags);
	if (r < 0)
		return r;
	/* manifests are written to a directory as they arrive: a private one */
	const char *tmp = getenv("TMPDIR");
	_cleanup_free_ char *dir = NULL;
	if (asprintf(&dir, "%s/layerfs-cache.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0) {
		dir = NULL;
		return -ENOMEM;
	}
	if (!mkdtemp(dir))
		return oci_fail(err, -errno, dir, "%s", strerror(errno));
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	lyr_oci_cache_entry *all = calloc(json_array_size(tags) + 1, sizeof *all);
	size_t n = 0;
	r = dfd < 0 ? oci_fail(err, -errno, dir, "%s", strerror(errno)) : all ? 0 : -ENOMEM;
	size_t plen = strlen(LYR_OCI_CACHE_TAG_PREFIX);
	for (size_t i = 0; r == 0 && i < json_array_size(tags); i++) {
		const char *tag = json_string_value(json_array_get(tags, i));
		if (strncmp(tag, LYR_OCI_CACHE_TAG_PREFIX, plen) != 0 || strlen(tag) != plen + 64)
			continue;
		json_t *man = NULL;
		lyr_oci_cache_entry *e = &all[n];
		r = oci_registry_manifest_get(&ir, tag, dfd, err, e->digest, &man);
		if (r == -ENOENT) { /* deleted meanwhile */
			r = 0;
			continue;
		}
		json_t *cfg = json_object_get(man, "config");
		const char *mt = json_string_value(json_object_get(cfg, "mediaType"));
		if (r == 0 && mt && strcmp(mt, MT_RECORD) == 0) {
			snprintf(e->key, sizeof e->key, "sha256:%s", tag + plen);
			e->size = (uint64_t)json_integer_value(json_object_get(cfg, "size"));
			size_t k;
			json_t *l;
			json_array_foreach(json_object_get(man, "layers"), k, l)
			    e->size += (uint64_t)json_integer_value(json_object_get(l, "size"));
			const char *c = json_string_value(
			    json_object_get(json_object_get(man, "annotations"), CREATED));
			struct tm tm = {0};
			const char *end = c ? strptime(c, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
			e->created = end && !*end ? (int64_t)timegm(&tm) : -1;
			n++;
		}
		json_decref(man);
	}
	lyr_tree_remove(AT_FDCWD, dir);
	if (r < 0) {
		free(all);
		return r;
	}
	*ret = all;
	*ret_n = n;
	return 0;
}

int lyr_oci_cache_delete(const char *name, bool tls_verify, const char *digest, lyr_oci_error *err)
{
	if (oci_begin_net(err) < 0)
		return -ENOSYS;
	oci_registry ir;
	int r = cache_open(name, tls_verify, false, &ir, err);
	return r < 0 ? r : oci_registry_manifest_delete(&ir, digest, err);
}
