/* save: a layer's chain as an OCI image.  One layer tar per store layer, base first; each is
 * written once through two libarchive writers, the tar (its bytes hashed: the diff_id) feeding a
 * raw writer that compresses (its bytes hashed and stored: the blob), so nothing is read twice;
 * the compressing half runs on a thread of its own (see layer_out).
 * Blobs are written to a temporary name in blobs/sha256/ and renamed to their digest; a blob
 * already there is kept.  JSON is written compact with sorted keys, the config has no times, and
 * compression settings are fixed (gzip level 6 without a timestamp, zstd level 3), so the same
 * chain gives the same digests on every save and every machine.  An archive destination is the
 * layout built in a temporary directory beside it, then written as one tar. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "layerfs/hash.h"
#include "layerfs/oci.h"
#include "layerfs/tree.h"
#include "oci-int.h"

static int name_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar"

/* A blob being written: a temporary file in blobs/sha256 and the digest of what went in. */
typedef struct blob {
	int dir; /* blobs/sha256 */
	int fd;
	char tmp[64];
	lyr_sha256_ctx *h;
	uint64_t size;
	int err;
} blob;

static int blob_open(blob *b, int dir)
{
	*b = (blob){.dir = dir, .fd = -1};
	snprintf(b->tmp, sizeof b->tmp, ".tmp-%d-%lx", (int)getpid(), (unsigned long)random());
	int r = lyr_sha256_new(&b->h);
	if (r < 0)
		return r;
	b->fd = openat(dir, b->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	return b->fd < 0 ? -errno : 0;
}

static int blob_write(blob *b, const void *p, size_t n)
{
	lyr_sha256_update(b->h, p, n);
	b->size += n;
	for (size_t done = 0; done < n;) {
		ssize_t w = write(b->fd, (const char *)p + done, n - done);
		if (w < 0)
			return b->err = -errno;
		done += (size_t)w;
	}
	return 0;
}

/* Closes B and names it by its digest (RET_DIGEST); a failed blob is removed. */
static int blob_close(blob *b, int r, char ret_digest[LYR_DIGEST_TEXT_LEN])
{
	if (b->fd >= 0 && (close(b->fd) < 0) && r >= 0)
		r = -errno;
	b->fd = -1;
	if (b->h) {
		uint8_t d[LYR_SHA256_LEN];
		lyr_sha256_final(b->h, d);
		lyr_sha256_free(b->h);
		b->h = NULL;
		lyr_digest_text(d, ret_digest);
	}
	if (r >= 0 && b->err < 0)
		r = b->err;
	if (r >= 0 && renameat(b->dir, b->tmp, b->dir, ret_digest + 7) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(b->dir, b->tmp, 0);
	return r;
}

static int write_json_blob(int dir, json_t *j, char ret_digest[LYR_DIGEST_TEXT_LEN],
			   uint64_t *ret_size)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	blob b;
	int r = blob_open(&b, dir);
	if (r == 0)
		r = blob_write(&b, text, strlen(text));
	r = blob_close(&b, r, ret_digest);
	*ret_size = b.size;
	free(text);
	return r;
}

/* The pipeline of one layer: tar bytes -> diff_id hash -> compressor -> blob, on two threads
 * so that compression, by far the dearest step, runs beside the walk.  The tar writer's thread
 * reads the files, builds the tar bytes, hashes them (the diff_id) and copies them into a ring of
 * PIPE_BUFS buffers; the compressor thread takes the full buffers in order, compresses them, and
 * hashes and writes the blob.  The compressor sees exactly the byte stream a single thread would
 * give it, in the same order, and its output does not depend on how the stream is cut, so the
 * blob is the same byte for byte.  LOCK guards COUNT, HEAD, DONE and ERR: a buffer belongs to the
 * tar writer (which fills buf[TAIL]) until it is counted, then to the compressor until HEAD moves
 * past it.  Without a thread (none could be started) the tar writer compresses each full buffer
 * itself. */
#define PIPE_BUFS 4
#define PIPE_CHUNK (1 << 20)

typedef struct layer_out {
	lyr_sha256_ctx *diff;
	struct archive *z; /* raw + filter, or NULL for no compression */
	blob *b;
	char *buf[PIPE_BUFS];
	size_t len[PIPE_BUFS];
	size_t tail, fill; /* the tar writer's own: the buffer it fills and how far */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t head, count;
	bool done, threaded;
	int err;       /* the first failure of either side: the other stops */
	char why[256]; /* the compressor's failure, for the tar writer's message */
	pthread_t thread;
} layer_out;

/* Compresses (or, without compression, writes) P[0..N) into the blob. */
static int out_put(layer_out *o, const char *p, size_t n)
{
	if (!o->z) {
		int r = blob_write(o->b, p, n);
		if (r < 0)
			snprintf(o->why, sizeof o->why, "writing the blob: %s", strerror(-r));
		return r;
	}
	if (archive_write_data(o->z, p, n) == (la_ssize_t)n)
		return 0;
	snprintf(o->why, sizeof o->why, "%s", archive_error_string(o->z));
	return -EIO;
}

static void *compressor(void *arg)
{
	layer_out *o = arg;
	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (o->count == 0 && !o->done && o->err == 0)
			pthread_cond_wait(&o->cond, &o->lock);
		if (o->count == 0 || o->err < 0)
			break;
		size_t i = o->head;
		pthread_mutex_unlock(&o->lock);
		int r = out_put(o, o->buf[i], o->len[i]);
		pthread_mutex_lock(&o->lock);
		if (r < 0 && o->err == 0)
			o->err = r;
		o->head = (o->head + 1) % PIPE_BUFS;
		o->count--;
		pthread_cond_broadcast(&o->cond);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

static int out_start(layer_out *o)
{
	for (size_t i = 0; i < PIPE_BUFS; i++)
		if (!(o->buf[i] = malloc(PIPE_CHUNK)))
			return -ENOMEM;
	o->threaded = pthread_create(&o->thread, NULL, compressor, o) == 0;
	return 0;
}

/* Hands the buffer being filled to the compressor and waits for a free one; the first failure
 * of either side. */
static int out_pass(layer_out *o)
{
	int r;
	if (!o->threaded) {
		r = o->err = o->err < 0 ? o->err : out_put(o, o->buf[o->tail], o->fill);
	} else {
		pthread_mutex_lock(&o->lock);
		o->len[o->tail] = o->fill;
		o->count++;
		pthread_cond_broadcast(&o->cond);
		while (o->count == PIPE_BUFS && o->err == 0)
			pthread_cond_wait(&o->cond, &o->lock);
		r = o->err;
		pthread_mutex_unlock(&o->lock);
	}
	o->tail = (o->tail + 1) % PIPE_BUFS;
	o->fill = 0;
	return r;
}

/* Ends the pipeline: with R == 0 what is left is compressed, otherwise the compressor stops
 * where it is.  Returns R or the compressor's failure. */
static int out_finish(layer_out *o, int r)
{
	if (r == 0 && o->fill > 0)
		r = out_pass(o);
	if (o->threaded) {
		pthread_mutex_lock(&o->lock);
		o->done = true;
		if (r < 0 && o->err == 0)
			o->err = r;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
		pthread_join(o->thread, NULL);
		o->threaded = false;
	}
	for (size_t i = 0; i < PIPE_BUFS; i++)
		free(o->buf[i]);
	return r < 0 ? r : o->err;
}

static la_ssize_t tar_bytes(struct archive *a, void *ctx, const void *p, size_t n)
{
	layer_out *o = ctx;
	lyr_sha256_update(o->diff, p, n);
	for (size_t done = 0; done < n;) {
		size_t k = n - done < PIPE_CHUNK - o->fill ? n - done : PIPE_CHUNK - o->fill;
		memcpy(o->buf[o->tail] + o->fill, (const char *)p + done, k);
		o->fill += k;
		done += k;
		if (o->fill == PIPE_CHUNK && out_pass(o) < 0) {
			archive_set_error(a, EIO, "%s", o->why[0] ? o->why : "compressing");
			return -1;
		}
	}
	return (la_ssize_t)n;
}

static la_ssize_t zbytes(struct archive *a, void *ctx, const void *p, size_t n)
{
	blob *b = ctx;
	if (blob_write(b, p, n) < 0) {
		archive_set_error(a, EIO, "writing the blob: %s", strerror(-b->err));
		return -1;
	}
	return (la_ssize_t)n;
}

/* Writes the layer CHAIN[0] (ancestors after it) as a blob; fills its digests and size. */
static int save_layer(int blobs, const char *const *chain, size_t n, lyr_oci_compression c,
		      lyr_oci_error *err, char digest[LYR_DIGEST_TEXT_LEN],
		      char diff_id[LYR_DIGEST_TEXT_LEN], uint64_t *size)
{
	blob b = {.fd = -1};
	layer_out o = {
	    .b = &b, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct archive *t = archive_write_new();
	int r = t ? blob_open(&b, blobs) : -ENOMEM;
	if (r == 0)
		r = lyr_sha256_new(&o.diff);
	if (r == 0 && c != LYR_OCI_NONE) {
		o.z = archive_write_new();
		if (!o.z)
			r = -ENOMEM;
		else {
			archive_write_set_format_raw(o.z);
			if (c == LYR_OCI_GZIP) {
				archive_write_add_filter_gzip(o.z);
				archive_write_set_options(
				    o.z, "gzip:!timestamp,gzip:compression-level=6");
			} else {
				archive_write_add_filter_zstd(o.z);
				archive_write_set_options(o.z, "zstd:compression-level=3");
			}
			archive_write_set_bytes_per_block(o.z, 0); /* no padding after the stream */
			struct archive_entry *e = archive_entry_new();
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_pathname(e, "layer.tar");
			if (!e ||
			    archive_write_open2(o.z, &b, NULL, zbytes, NULL, NULL) != ARCHIVE_OK ||
			    archive_write_header(o.z, e) != ARCHIVE_OK)
				r = oci_fail(err, -EIO, chain[0], "compressing: %s",
					     archive_error_string(o.z));
			archive_entry_free(e);
		}
	}
	if (r == 0)
		r = out_start(&o);
	if (r == 0) {
		archive_write_set_format_pax(t);
		if (archive_write_open2(t, &o, NULL, tar_bytes, NULL, NULL) != ARCHIVE_OK)
			r = oci_fail(err, -EIO, chain[0], "%s", archive_error_string(t));
	}
	if (r == 0)
		r = oci_layer_write(t, chain, n, err);
	if (t) {
		if (archive_write_close(t) != ARCHIVE_OK && r == 0)
			r = oci_fail(err, -EIO, chain[0], "%s", archive_error_string(t));
		archive_write_free(t);
	}
	int rf = out_finish(&o, r);
	if (r == 0 && rf < 0)
		r = oci_fail(err, rf, chain[0], "%s", o.why);
	if (o.z) {
		if (archive_write_close(o.z) != ARCHIVE_OK && r == 0)
			r = oci_fail(err, -EIO, chain[0], "%s", archive_error_string(o.z));
		archive_write_free(o.z);
	}
	if (o.diff) {
		uint8_t d[LYR_SHA256_LEN];
		lyr_sha256_final(o.diff, d);
		lyr_sha256_free(o.diff);
		lyr_digest_text(d, diff_id);
	}
	if (b.h || b.fd >= 0)
		r = blob_close(&b, r, digest);
	*size = b.size;
	return r;
}

const char *oci_host_arch(void)
{
	static struct utsname u;
	if (uname(&u) < 0)
		return "amd64";
	static const char *const map[][2] = {
	    {"x86_64", "amd64"},    {"aarch64", "arm64"}, {"i686", "386"},	 {"armv7l", "arm"},
	    {"ppc64le", "ppc64le"}, {"s390x", "s390x"},	  {"riscv64", "riscv64"}};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(map); i++)
		if (strcmp(u.machine, map[i][0]) == 0)
			return map[i][1];
	return u.machine;
}

static json_t *descriptor(const char *mt, const char *digest, uint64_t size)
{
	return json_pack("{s:s,s:s,s:I}", "mediaType", mt, "digest", digest, "size",
			 (json_int_t)size);
}

/* Adds MANIFEST under REF to DIR/index.json (replacing the entry of the same ref). */
static int update_index(int dirfd, json_t *manifest_desc, const char *ref)
{
	json_t *index = NULL;
	int fd = openat(dirfd, "index.json", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		index = json_loadfd(fd, 0, NULL);
		close(fd);
	}
	if (!index || !json_is_array(json_object_get(index, "manifests"))) {
		json_decref(index);
		index = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", MT_INDEX,
				  "manifests");
	}
	json_t *list = json_object_get(index, "manifests");
	for (size_t i = 0; i < json_array_size(list);) {
		json_t *name =
		    json_object_get(json_object_get(json_array_get(list, i), "annotations"),
				    "org.opencontainers.image.ref.name");
		if (name && json_is_string(name) && strcmp(json_string_value(name), ref) == 0)
			json_array_remove(list, i);
		else
			i++;
	}
	json_object_set_new(manifest_desc, "annotations",
			    json_pack("{s:s}", "org.opencontainers.image.ref.name", ref));
	json_array_append(list, manifest_desc);
	char *text = json_dumps(index, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(index);
	if (!text)
		return -ENOMEM;
	int r = oci_write_file(dirfd, "index.json", text, strlen(text));
	free(text);
	return r;
}

int oci_write_file(int dirfd, const char *name, const void *data, size_t len)
{
	char tmp[NAME_MAX + 1];
	snprintf(tmp, sizeof tmp, ".%s.tmp-%d", name, (int)getpid());
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int r = write(fd, data, len) == (ssize_t)len ? 0 : -EIO;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(dirfd, tmp, 0);
	return r;
}

/* Saves into the OCI layout at DIRFD. */
/* The note "blob-<compression>" of a layer: "<digest> <size> <diff_id>" of its last save. */
static int blob_note(lyr_store *s, const char *id, lyr_oci_compression c,
		     char digest[LYR_DIGEST_TEXT_LEN], uint64_t *size,
		     char diff_id[LYR_DIGEST_TEXT_LEN])
{
	static const char *const names[] = {"blob-gzip", "blob-zstd", "blob-none"};
	char *text;
	int r = lyr_layer_meta_get(s, id, names[c], &text);
	if (r < 0)
		return r;
	unsigned long long sz;
	char d[80], di[80];
	r = sscanf(text, "%79s %llu %79s", d, &sz, di) == 3 && strlen(d) == 71 && strlen(di) == 71
		? 0
		: -EBADMSG;
	free(text);
	if (r == 0) {
		memcpy(digest, d, 72); /* both 71 characters and a NUL, checked above */
		memcpy(diff_id, di, 72);
		*size = sz;
	}
	return r;
}

static void blob_note_set(lyr_store *s, const char *id, lyr_oci_compression c, const char *digest,
			  uint64_t size, const char *diff_id)
{
	static const char *const names[] = {"blob-gzip", "blob-zstd", "blob-none"};
	char text[200];
	int n =
	    snprintf(text, sizeof text, "%s %llu %s", digest, (unsigned long long)size, diff_id);
	lyr_layer_meta_set(s, id, names[c], text, (size_t)n); /* a cache: failing is harmless */
}

int oci_save_layout(lyr_store *s, const char *layer_id, int dirfd, const char *ref,
		    lyr_oci_compression c, bool reuse, lyr_oci_error *err, lyr_oci_saved *ret)
{
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	int r = oci_write_file(dirfd, "oci-layout", layout, sizeof layout - 1);
	if (r == 0 && (mkdirat(dirfd, "blobs", 0755) < 0 && errno != EEXIST))
		r = -errno;
	if (r == 0 && (mkdirat(dirfd, "blobs/sha256", 0755) < 0 && errno != EEXIST))
		r = -errno;
	if (r < 0)
		return oci_fail(err, r, "", "writing the image layout: %s", strerror(-r));
	_cleanup_close_ int blobs =
	    openat(dirfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (blobs < 0)
		return oci_fail(err, -errno, "", "blobs/sha256: %s", strerror(errno));

	char **dirs;
	r = lyr_layer_chain(s, layer_id, &dirs);
	if (r < 0)
		return r;
	size_t n = 0;
	while (dirs[n])
		n++;
	/* the descriptions, topmost first as the chain */
	char **descs = calloc(n + 1, sizeof *descs);
	char cur[LYR_ID_MAX];
	snprintf(cur, sizeof cur, "%s", layer_id);
	json_t *loaded = NULL; /* the config of the nearest loaded image in the chain */
	char(*ids)[LYR_ID_MAX] = calloc(n + 1, sizeof *ids);
	if (!ids)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && descs && i < n; i++) {
		lyr_layer_info info;
		r = lyr_layer_get(s, cur, &info);
		if (r < 0)
			break;
		char *text;
		if (!loaded && lyr_layer_config_get(s, cur, &text) == 0) {
			loaded = json_loads(text, 0, NULL);
			free(text);
			if (loaded && !json_is_object(loaded)) {
				json_decref(loaded);
				loaded = NULL;
			}
		}
		descs[i] = strdup(info.desc);
		snprintf(ids[i], LYR_ID_MAX, "%s", cur);
		snprintf(cur, sizeof cur, "%s", info.parent);
		lyr_layer_info_clear(&info);
	}
	if (!descs)
		r = -ENOMEM;
	json_t *diff_ids = json_array(), *history = json_array(), *layers = json_array();
	const char *mt = c == LYR_OCI_GZIP   ? MT_LAYER "+gzip"
			 : c == LYR_OCI_ZSTD ? MT_LAYER "+zstd"
					     : MT_LAYER;
	memset(ret, 0, sizeof *ret);
	ret->layer_digests = calloc(n + 1, sizeof *ret->layer_digests);
	ret->diff_ids = calloc(n + 1, sizeof *ret->diff_ids);
	if (!ret->layer_digests || !ret->diff_ids)
		r = -ENOMEM;
	for (size_t i = n; r == 0 && i-- > 0;) {
		char digest[LYR_DIGEST_TEXT_LEN], diff_id[LYR_DIGEST_TEXT_LEN];
		uint64_t size;
		/* a blob saved before is known by its note (the save is deterministic) */
		if (!reuse || blob_note(s, ids[i], c, digest, &size, diff_id) < 0) {
			r = save_layer(blobs, (const char *const *)dirs + i, n - i, c, err, digest,
				       diff_id, &size);
			if (r < 0)
				break;
			blob_note_set(s, ids[i], c, digest, size, diff_id);
		}
		snprintf(ret->layer_digests[n - 1 - i], LYR_DIGEST_TEXT_LEN, "%s", digest);
		snprintf(ret->diff_ids[n - 1 - i], LYR_DIGEST_TEXT_LEN, "%s", diff_id);
		json_array_append_new(diff_ids, json_string(diff_id));
		json_array_append_new(history,
				      json_pack("{s:s}", "created_by", descs[i] ? descs[i] : ""));
		json_array_append_new(layers, descriptor(mt, digest, size));
	}
	char cfg_digest[LYR_DIGEST_TEXT_LEN] = "", man_digest[LYR_DIGEST_TEXT_LEN] = "";
	uint64_t cfg_size = 0, man_size = 0;
	if (r == 0) {
		/* a loaded image's fields (config, architecture, ...) with this chain's layers */
		json_t *config = loaded ? json_incref(loaded)
					: json_pack("{s:s,s:s,s:{}}", "architecture",
						    oci_host_arch(), "os", "linux", "config");
		if (config && (json_object_set_new(config, "rootfs",
						   json_pack("{s:s,s:O}", "type", "layers",
							     "diff_ids", diff_ids)) < 0 ||
			       json_object_set(config, "history", history) < 0)) {
			json_decref(config);
			config = NULL;
		}
		r = config ? write_json_blob(blobs, config, cfg_digest, &cfg_size) : -ENOMEM;
		json_decref(config);
	}
	if (r == 0) {
		json_t *man = json_pack(
		    "{s:i,s:s,s:o,s:O}", "schemaVersion", 2, "mediaType", MT_MANIFEST, "config",
		    descriptor(MT_CONFIG, cfg_digest, cfg_size), "layers", layers);
		r = man ? write_json_blob(blobs, man, man_digest, &man_size) : -ENOMEM;
		json_decref(man);
	}
	if (r == 0) {
		json_t *d = descriptor(MT_MANIFEST, man_digest, man_size);
		r = update_index(dirfd, d, ref);
		json_decref(d);
		if (r < 0)
			oci_fail(err, r, "", "writing index.json: %s", strerror(-r));
	}
	if (r == 0) {
		snprintf(ret->manifest, sizeof ret->manifest, "%s", man_digest);
		snprintf(ret->config, sizeof ret->config, "%s", cfg_digest);
		ret->layers = n;
	} else {
		lyr_oci_saved_clear(ret);
	}
	json_decref(loaded);
	free(ids);
	json_decref(diff_ids);
	json_decref(history);
	json_decref(layers);
	for (size_t i = 0; descs && i < n; i++)
		free(descs[i]);
	free(descs);
	lyr_strv_free(dirs);
	return r;
}

void lyr_oci_saved_clear(lyr_oci_saved *saved)
{
	free(saved->layer_digests);
	free(saved->diff_ids);
	memset(saved, 0, sizeof *saved);
}

/* Adds the tree at AT (PATH its name in the archive, "" the top) to A: names in byte order,
 * fixed modes, owner 0, mtime 0, so the archive depends only on the files' contents. */
static int write_tree_entries(struct archive *a, int at, const char *path)
{
	int fd = openat(at, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	char **names = NULL;
	size_t n = 0;
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || strcmp(de->d_name, "..") == 0))
			continue;
		char **nv = realloc(names, (n + 1) * sizeof *nv);
		if (!nv || !(nv[n] = strdup(de->d_name)))
			r = -ENOMEM;
		if (nv)
			names = nv;
		if (r == 0)
			n++;
	}
	if (r == 0)
		qsort(names, n, sizeof *names, name_cmp_str);
	for (size_t i = 0; r == 0 && i < n; i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s%s", path, names[i]);
		struct stat st;
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		struct archive_entry *e = archive_entry_new();
		bool dir = S_ISDIR(st.st_mode);
		if (dir)
			strncat(p, "/", sizeof p - strlen(p) - 1);
		archive_entry_set_pathname(e, p);
		archive_entry_set_mode(e, dir ? S_IFDIR | 0755 : S_IFREG | 0644);
		archive_entry_set_size(e, dir ? 0 : st.st_size);
		archive_entry_set_mtime(e, 0, 0);
		if (archive_write_header(a, e) != ARCHIVE_OK)
			r = -EIO;
		archive_entry_free(e);
		if (r == 0 && dir) {
			int sub = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			r = sub < 0 ? -errno : write_tree_entries(a, sub, p);
			if (sub >= 0)
				close(sub);
		} else if (r == 0) {
			int f = openat(dirfd(d), names[i], O_RDONLY | O_CLOEXEC);
			char buf[1 << 16];
			ssize_t k;
			if (f < 0)
				r = -errno;
			while (r == 0 && (k = read(f, buf, sizeof buf)) > 0)
				if (archive_write_data(a, buf, (size_t)k) != k)
					r = -EIO;
			if (f >= 0)
				close(f);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return r;
}

/* docker-archive: manifest.json beside the layout, naming the config and layer blobs. */
static int docker_manifest(int dirfd, const lyr_oci_saved *saved, const char *ref)
{
	json_t *layers = json_array();
	for (size_t i = 0; i < saved->layers; i++) {
		char p[128];
		snprintf(p, sizeof p, "blobs/sha256/%s", saved->layer_digests[i] + 7);
		json_array_append_new(layers, json_string(p));
	}
	char cfg[128];
	snprintf(cfg, sizeof cfg, "blobs/sha256/%s", saved->config + 7);
	json_t *tags = json_array();
	if (ref) {
		char t[512];
		snprintf(t, sizeof t, "%s%s", ref, strchr(ref, ':') ? "" : ":latest");
		json_array_append_new(tags, json_string(t));
	}
	json_t *m = json_pack("[{s:s,s:o,s:o}]", "Config", cfg, "RepoTags", tags, "Layers", layers);
	char *text = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(m);
	if (!text)
		return -ENOMEM;
	int r = oci_write_file(dirfd, "manifest.json", text, strlen(text));
	free(text);
	return r;
}

int lyr_oci_save(lyr_store *s, const char *layer_id, const char *dest, lyr_oci_compression c,
		 lyr_oci_error *err, lyr_oci_saved *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	oci_kind kind;
	_cleanup_free_ char *path = NULL;
	const char *ref;
	int r = oci_parse_name(dest, err, &kind, &path, &ref);
	if (r < 0)
		return r;
	bool oci = kind == OCI_DIR, docker = kind == OCI_DOCKER_ARCHIVE;
	if (oci) {
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return oci_fail(err, -errno, path, "%s", strerror(errno));
		_cleanup_close_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			return oci_fail(err, -errno, path, "%s", strerror(errno));
		return oci_save_layout(s, layer_id, dirfd, ref ? ref : "latest", c, false, err,
				       ret);
	}
	/* an archive: the layout in a temporary directory beside FILE, then one tar */
	_cleanup_free_ char *tmpl = NULL, *tmpfile = NULL;
	const char *slash = strrchr(path, '/');
	if (asprintf(&tmpl, "%.*s.layerfs-save-XXXXXX", slash ? (int)(slash - path + 1) : 0, path) <
		0 ||
	    asprintf(&tmpfile, "%s.tmp-%d", path, (int)getpid()) < 0)
		return -ENOMEM;
	if (!mkdtemp(tmpl))
		return oci_fail(err, -errno, path, "a temporary directory beside it: %s",
				strerror(errno));
	_cleanup_close_ int dirfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		r = oci_fail(err, -errno, tmpl, "%s", strerror(errno));
		goto out;
	}
	r = oci_save_layout(s, layer_id, dirfd, ref ? ref : "latest", docker ? LYR_OCI_NONE : c,
			    false, err, ret);
	if (r == 0 && docker && (r = docker_manifest(dirfd, ret, ref)) < 0)
		oci_fail(err, r, path, "writing manifest.json: %s", strerror(-r));
	if (r < 0)
		goto out;
	struct archive *a = archive_write_new();
	if (!a) {
		r = -ENOMEM;
		goto out;
	}
	archive_write_set_format_pax_restricted(a);
	if (archive_write_open_filename(a, tmpfile) != ARCHIVE_OK)
		r = oci_fail(err, -EIO, path, "%s", archive_error_string(a));
	else if ((r = write_tree_entries(a, dirfd, "")) < 0)
		oci_fail(err, r, path, "writing the archive: %s", strerror(-r));
	if (archive_write_close(a) != ARCHIVE_OK && r == 0)
		r = oci_fail(err, -EIO, path, "%s", archive_error_string(a));
	archive_write_free(a);
	if (r == 0 && rename(tmpfile, path) < 0)
		r = oci_fail(err, -errno, path, "%s", strerror(errno));
	if (r < 0)
		unlink(tmpfile);
out:
	if (r < 0)
		lyr_oci_saved_clear(ret);
	lyr_tree_remove(AT_FDCWD, tmpl);
	return r;
}
