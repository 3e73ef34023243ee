/* load: an image (OCI layout, OCI archive, docker archive) into the store, one store layer per
 * image layer, base first.
 *
 * Every name the image gives (digests, docker archive paths) is opened below the image's
 * directory with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and digests must be
 * "sha256:<64 hex>", so an image cannot make us read outside it.  Manifests and configs are read
 * whole (at most 4 MiB) and checked against their digests before they are parsed.  Each layer
 * blob is read once: a raw libarchive reader decompresses it (its input hashed: the blob digest
 * the manifest names), and a tar reader takes the decompressed bytes (hashed: the diff_id the
 * config names) and extracts them into a stage.  All layers are extracted and checked before the
 * first is committed, so a bad blob anywhere leaves the store as it was.  Archives are first
 * unpacked (safely, as any tar) into a scratch stage that is deleted at the end. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "layerfs/hash.h"
#include "layerfs/oci.h"
#include "oci-int.h"

#define MAX_JSON (4 << 20)

static int open_beneath(int dir, const char *path)
{
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
			       .resolve =
				   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	long fd = syscall(SYS_openat2, dir, path, &how, sizeof how);
	return fd < 0 ? -errno : (int)fd;
}

/* "blobs/sha256/<hex>" for DIGEST, which must be "sha256:" and 64 lower-case hex digits. */
static int blob_path(const char *digest, char out[96])
{
	if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
		return -EINVAL;
	for (const char *p = digest + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return -EINVAL;
	snprintf(out, 96, "blobs/sha256/%s", digest + 7);
	return 0;
}

/* Reads PATH below DIR whole (at most MAX_JSON bytes) and, when WANT is non-NULL, checks that
 * its digest is WANT.  RET is NUL-terminated. */
static int read_checked(int dir, const char *path, const char *want, lyr_oci_error *err, char **ret,
			size_t *ret_len)
{
	const char *what = want ? want : path;
	int fd = open_beneath(dir, path);
	if (fd < 0)
		return oci_fail(err, fd, what, "missing from the image (%s)", strerror(-fd));
	char *buf = malloc(MAX_JSON + 1);
	size_t len = 0;
	int r = buf ? 0 : -ENOMEM;
	while (r == 0) {
		ssize_t n = read(fd, buf + len, MAX_JSON + 1 - len);
		if (n < 0)
			r = oci_fail(err, -errno, what, "%s", strerror(errno));
		else if (n == 0)
			break;
		else if ((len += (size_t)n) > MAX_JSON)
			r = oci_fail(err, -EFBIG, what, "larger than %d bytes", MAX_JSON);
	}
	close(fd);
	if (r == 0 && want) {
		uint8_t d[LYR_SHA256_LEN];
		char text[LYR_DIGEST_TEXT_LEN];
		lyr_sha256(buf, len, d);
		lyr_digest_text(d, text);
		if (strcmp(text, want) != 0)
			r = oci_fail(err, -EBADMSG, what, "digest mismatch: the content is %s",
				     text);
	}
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int read_json(int dir, const char *path, const char *want, lyr_oci_error *err, json_t **ret)
{
	char *text = NULL;
	size_t len = 0;
	int r = read_checked(dir, path, want, err, &text, &len);
	if (r < 0)
		return r;
	json_error_t je;
	*ret = json_loadb(text, len, 0, &je);
	free(text);
	if (!*ret)
		return oci_fail(err, -EBADMSG, want ? want : path, "not JSON: %s", je.text);
	return 0;
}

static int read_blob_json(int dir, const char *digest, lyr_oci_error *err, json_t **ret)
{
	char path[96];
	if (blob_path(digest, path) < 0)
		return oci_fail(err, -EBADMSG, digest ? digest : "(none)",
				"not a sha256 digest this layout can hold");
	return read_json(dir, path, digest, err, ret);
}

/* One layer of the image: where its blob is, what it must hash to. */
typedef struct layer_src {
	char path[4096];
	char digest[LYR_DIGEST_TEXT_LEN]; /* "" when the source names none (docker archive) */
	char diff_id[LYR_DIGEST_TEXT_LEN];
	int64_t size; /* -1 unknown */
	char *desc;
} layer_src;

typedef struct image {
	json_t *config;
	layer_src *layers;
	size_t n;
} image;

static void image_clear(image *im)
{
	json_decref(im->config);
	for (size_t i = 0; i < im->n; i++)
		free(im->layers[i].desc);
	free(im->layers);
	memset(im, 0, sizeof *im);
}

static bool layer_media_type(const char *mt)
{
	static const char *const ok[] = {
	    "application/vnd.oci.image.layer.v1.tar",
	    "application/vnd.oci.image.layer.v1.tar+gzip",
	    "application/vnd.oci.image.layer.v1.tar+zstd",
	    "application/vnd.oci.image.layer.nondistributable.v1.tar",
	    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
	    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
	    "application/vnd.docker.image.rootfs.diff.tar.gzip",
	    "application/vnd.docker.image.rootfs.diff.tar",
	};
	for (size_t i = 0; mt && i < LYR_ARRAY_SIZE(ok); i++)
		if (strcmp(mt, ok[i]) == 0)
			return true;
	return false;
}

/* The config's diff_ids and history, for LAYERS already sized. */
static int take_config(image *im, const char *source, lyr_oci_error *err)
{
	json_t *ids = json_object_get(json_object_get(im->config, "rootfs"), "diff_ids");
	if (!json_is_array(ids) || json_array_size(ids) != im->n)
		return oci_fail(err, -EBADMSG, "config",
				"rootfs.diff_ids lists %zu layers, the manifest %zu",
				json_is_array(ids) ? json_array_size(ids) : 0, im->n);
	json_t *hist = json_object_get(im->config, "history");
	size_t h = 0;
	for (size_t i = 0; i < im->n; i++) {
		const char *id = json_string_value(json_array_get(ids, i));
		char p[96];
		if (blob_path(id, p) < 0)
			return oci_fail(err, -EBADMSG, "config",
					"diff_id %zu is not a sha256 digest", i);
		snprintf(im->layers[i].diff_id, LYR_DIGEST_TEXT_LEN, "%s", id);
		/* history entries with empty_layer made no layer */
		const char *by = NULL;
		while (h < json_array_size(hist)) {
			json_t *e = json_array_get(hist, h++);
			if (json_is_true(json_object_get(e, "empty_layer")))
				continue;
			by = json_string_value(json_object_get(e, "created_by"));
			break;
		}
		if (by && *by)
			im->layers[i].desc = strdup(by);
		else if (asprintf(&im->layers[i].desc, "load %s layer %zu", source, i + 1) < 0)
			im->layers[i].desc = NULL;
		if (!im->layers[i].desc)
			return -ENOMEM;
	}
	return 0;
}

static bool platform_matches(json_t *p, const char *want)
{
	char os[64] = "", arch[64] = "", variant[64] = "";
	sscanf(want, "%63[^/]/%63[^/]/%63s", os, arch, variant);
	const char *pos = json_string_value(json_object_get(p, "os"));
	const char *parch = json_string_value(json_object_get(p, "architecture"));
	const char *pvar = json_string_value(json_object_get(p, "variant"));
	return pos && parch && strcmp(pos, os) == 0 && strcmp(parch, arch) == 0 &&
	       (!*variant || (pvar && strcmp(pvar, variant) == 0));
}

static bool is_index(json_t *desc)
{
	const char *mt = json_string_value(json_object_get(desc, "mediaType"));
	return mt && (strcmp(mt, "application/vnd.oci.image.index.v1+json") == 0 ||
		      strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json") == 0);
}

/* Picks the manifest descriptor of INDEX for REF (NULL: the only one) and PLATFORM, following
 * one nested index. */
static int pick_manifest(int dir, json_t *index, const char *ref, const char *platform,
			 lyr_oci_error *err, json_t **ret_desc)
{
	json_t *list = json_object_get(index, "manifests");
	if (!json_is_array(list))
		return oci_fail(err, -EBADMSG, "index.json", "no manifests list");
	json_t *hits[64];
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(list) && n < LYR_ARRAY_SIZE(hits); i++) {
		json_t *d = json_array_get(list, i);
		const char *name = json_string_value(json_object_get(
		    json_object_get(d, "annotations"), "org.opencontainers.image.ref.name"));
		if (ref && (!name || strcmp(name, ref) != 0))
			continue;
		json_t *p = json_object_get(d, "platform");
		if (p && !platform_matches(p, platform))
			continue;
		hits[n++] = d;
	}
	if (n == 0)
		return oci_fail(err, -ENOENT, ref ? ref : "index.json",
				"no image%s%s for platform %s", ref ? " named " : "",
				ref ? ref : "", platform);
	if (n > 1)
		return oci_fail(err, -EINVAL, "index.json",
				"%zu images match; name one (oci:DIR:REF) or give --platform", n);
	if (is_index(hits[0])) {
		json_t *inner;
		int r = read_blob_json(dir, json_string_value(json_object_get(hits[0], "digest")),
				       err, &inner);
		if (r < 0)
			return r;
		json_t *d = NULL;
		r = pick_manifest(dir, inner, NULL, platform, err, &d);
		if (r == 0)
			*ret_desc = json_incref(d);
		json_decref(inner);
		return r;
	}
	*ret_desc = json_incref(hits[0]);
	return 0;
}

static int load_oci_image(int dir, const char *ref, const char *platform, const char *source,
			  lyr_oci_error *err, image *im)
{
	json_t *index = NULL, *desc = NULL, *man = NULL;
	int r = read_json(dir, "index.json", NULL, err, &index);
	if (r == 0)
		r = pick_manifest(dir, index, ref, platform, err, &desc);
	if (r == 0)
		r = read_blob_json(dir, json_string_value(json_object_get(desc, "digest")), err,
				   &man);
	if (r == 0)
		r = read_blob_json(
		    dir,
		    json_string_value(json_object_get(json_object_get(man, "config"), "digest")),
		    err, &im->config);
	json_t *layers = man ? json_object_get(man, "layers") : NULL;
	if (r == 0 && !json_is_array(layers))
		r = oci_fail(err, -EBADMSG, "manifest", "no layers list");
	if (r == 0) {
		im->n = json_array_size(layers);
		im->layers = calloc(im->n + 1, sizeof *im->layers);
		if (!im->layers)
			r = -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < im->n; i++) {
		json_t *l = json_array_get(layers, i);
		const char *digest = json_string_value(json_object_get(l, "digest"));
		const char *mt = json_string_value(json_object_get(l, "mediaType"));
		layer_src *ls = &im->layers[i];
		if (blob_path(digest, ls->path) < 0)
			r = oci_fail(err, -EBADMSG, digest ? digest : "layer",
				     "not a sha256 digest this layout can hold");
		else if (!layer_media_type(mt))
			r = oci_fail(err, -EBADMSG, digest, "media type '%s' is not a layer",
				     mt ? mt : "");
		else {
			snprintf(ls->digest, sizeof ls->digest, "%s", digest);
			json_t *sz = json_object_get(l, "size");
			ls->size = json_is_integer(sz) ? json_integer_value(sz) : -1;
		}
	}
	if (r == 0)
		r = take_config(im, source, err);
	json_decref(index);
	json_decref(desc);
	json_decref(man);
	return r;
}

static int load_docker_image(int dir, const char *ref, const char *source, lyr_oci_error *err,
			     image *im)
{
	json_t *all = NULL;
	int r = read_json(dir, "manifest.json", NULL, err, &all);
	if (r < 0)
		return r;
	json_t *pick = NULL;
	char want[512] = "";
	if (ref)
		snprintf(want, sizeof want, "%s%s", ref, strchr(ref, ':') ? "" : ":latest");
	for (size_t i = 0; i < json_array_size(all) && !pick; i++) {
		json_t *m = json_array_get(all, i);
		json_t *tags = json_object_get(m, "RepoTags");
		for (size_t k = 0; ref && k < json_array_size(tags); k++) {
			const char *t = json_string_value(json_array_get(tags, k));
			if (t && strcmp(t, want) == 0)
				pick = m;
		}
		if (!ref && json_array_size(all) == 1)
			pick = m;
	}
	if (!pick)
		r = oci_fail(err, -ENOENT, "manifest.json",
			     ref ? "no image tagged %s"
				 : "%s images; name one (docker-archive:FILE:REF)",
			     ref ? want : "several");
	const char *cfg = pick ? json_string_value(json_object_get(pick, "Config")) : NULL;
	if (r == 0 && !cfg)
		r = oci_fail(err, -EBADMSG, "manifest.json", "no Config");
	if (r == 0) {
		/* a config named by its digest (<hex>.json or blobs/sha256/<hex>) is checked */
		const char *base = strrchr(cfg, '/') ? strrchr(cfg, '/') + 1 : cfg;
		char digest[LYR_DIGEST_TEXT_LEN], p[96];
		snprintf(digest, sizeof digest, "sha256:%.64s", base);
		bool named = strlen(base) >= 64 && blob_path(digest, p) == 0;
		r = read_json(dir, cfg, named ? digest : NULL, err, &im->config);
	}
	json_t *layers = pick ? json_object_get(pick, "Layers") : NULL;
	if (r == 0) {
		im->n = json_array_size(layers);
		im->layers = calloc(im->n + 1, sizeof *im->layers);
		if (!im->layers)
			r = -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < im->n; i++) {
		const char *p = json_string_value(json_array_get(layers, i));
		layer_src *ls = &im->layers[i];
		if (!p || strlen(p) >= sizeof ls->path) {
			r = oci_fail(err, -EBADMSG, "manifest.json", "layer %zu has no path", i);
			break;
		}
		snprintf(ls->path, sizeof ls->path, "%s", p);
		ls->size = -1;
		char digest[LYR_DIGEST_TEXT_LEN], bp[96];
		if (strncmp(p, "blobs/sha256/", 13) == 0) {
			snprintf(digest, sizeof digest, "sha256:%s", p + 13);
			if (blob_path(digest, bp) == 0)
				snprintf(ls->digest, sizeof ls->digest, "%s", digest);
		}
	}
	if (r == 0)
		r = take_config(im, source, err);
	json_decref(all);
	return r;
}

/* The blob reader: raw bytes from the file, hashed (the blob digest). */
typedef struct blob_in {
	int fd;
	lyr_sha256_ctx *h;
	uint64_t n;
	char buf[1 << 17];
} blob_in;

static la_ssize_t blob_read(struct archive *a, void *ctx, const void **buf)
{
	blob_in *b = ctx;
	ssize_t n = read(b->fd, b->buf, sizeof b->buf);
	if (n < 0) {
		archive_set_error(a, errno, "reading the blob: %s", strerror(errno));
		return -1;
	}
	lyr_sha256_update(b->h, b->buf, (size_t)n);
	b->n += (uint64_t)n;
	*buf = b->buf;
	return n;
}

/* The tar reader's input: the decompressed bytes, hashed (the diff_id). */
typedef struct tar_in {
	struct archive *z;
	bool eof;
	lyr_sha256_ctx *h;
	char buf[1 << 17];
} tar_in;

static la_ssize_t tar_read(struct archive *a, void *ctx, const void **buf)
{
	tar_in *t = ctx;
	la_ssize_t n = archive_read_data(t->z, t->buf, sizeof t->buf);
	if (n < 0) {
		archive_set_error(a, EIO, "decompressing: %s", archive_error_string(t->z));
		return -1;
	}
	lyr_sha256_update(t->h, t->buf, (size_t)n);
	t->eof = n == 0;
	*buf = t->buf;
	return n;
}

/* Reads what is left of a stream through its callback RD, so that it is hashed. */
static int drain(struct archive *a, void *ctx,
		 la_ssize_t (*rd)(struct archive *, void *, const void **))
{
	const void *p;
	la_ssize_t n;
	while ((n = rd(a, ctx, &p)) > 0)
		;
	return n < 0 ? -EIO : 0;
}

static void final_text(lyr_sha256_ctx *h, char out[LYR_DIGEST_TEXT_LEN])
{
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(h, d);
	lyr_digest_text(d, out);
}

/* Extracts layer LS from DIR into the stage ST (root attributes ROOT), checking its digests. */
static int extract_layer(int dir, const layer_src *ls, lyr_stage *st, const lyr_oci_root *root,
			 const lyr_progress *progress, lyr_oci_error *err)
{
	const char *what = ls->digest[0] ? ls->digest : ls->path;
	blob_in *b = calloc(1, sizeof *b);
	tar_in *t = calloc(1, sizeof *t);
	struct archive *z = archive_read_new(), *a = archive_read_new();
	int r = b && t && z && a ? 0 : -ENOMEM;
	if (r == 0 && (b->fd = open_beneath(dir, ls->path)) < 0)
		r = oci_fail(err, b->fd, what, "missing from the image (%s)", strerror(-b->fd));
	if (r == 0 && ((r = lyr_sha256_new(&b->h)) < 0 || (r = lyr_sha256_new(&t->h)) < 0))
		goto out;
	if (r == 0) {
		archive_read_support_format_raw(z);
		archive_read_support_filter_gzip(z);
		archive_read_support_filter_zstd(z);
		archive_read_support_filter_none(z);
		struct archive_entry *e;
		if (archive_read_open(z, b, NULL, blob_read, NULL) != ARCHIVE_OK ||
		    archive_read_next_header(z, &e) != ARCHIVE_OK)
			r = oci_fail(err, -EBADMSG, what, "%s", archive_error_string(z));
	}
	if (r == 0) {
		t->z = z;
		archive_read_support_format_tar(a);
		archive_read_support_format_gnutar(a);
		if (archive_read_open(a, t, NULL, tar_read, NULL) != ARCHIVE_OK)
			r = oci_fail(err, -EBADMSG, what, "%s", archive_error_string(a));
	}
	if (r == 0) {
		r = oci_tar_extract(a, &t->eof, lyr_stage_fd(st), root, progress, err);
		if (r < 0 && err) { /* name the blob and the entry */
			char why[sizeof err->why + 300];
			snprintf(why, sizeof why, "entry '%.200s': %s", err->entry, err->why);
			oci_fail(err, r, what, "%s", why);
		}
	}
	/* the rest of both streams (tar end blocks, padding) belongs to the digests too */
	if (r == 0 && (drain(a, t, tar_read) < 0 || drain(z, b, blob_read) < 0))
		r = oci_fail(err, -EBADMSG, what, "%s", archive_error_string(a));
	if (r == 0) {
		char got[LYR_DIGEST_TEXT_LEN], diff[LYR_DIGEST_TEXT_LEN];
		final_text(b->h, got);
		final_text(t->h, diff);
		if (ls->digest[0] && strcmp(got, ls->digest) != 0)
			r = oci_fail(err, -EBADMSG, what, "digest mismatch: the blob is %s", got);
		else if (ls->size >= 0 && (uint64_t)ls->size != b->n)
			r = oci_fail(err, -EBADMSG, what,
				     "size mismatch: the blob has %llu bytes, the "
				     "manifest says %lld",
				     (unsigned long long)b->n, (long long)ls->size);
		else if (strcmp(diff, ls->diff_id) != 0)
			r = oci_fail(
			    err, -EBADMSG, what,
			    "diff_id mismatch: the uncompressed layer is %s, the config says %s",
			    diff, ls->diff_id);
	}
out:
	if (a)
		archive_read_free(a);
	if (z)
		archive_read_free(z);
	if (b) {
		if (b->fd > 0)
			close(b->fd);
		lyr_sha256_free(b->h);
	}
	if (t)
		lyr_sha256_free(t->h);
	free(b);
	free(t);
	return r;
}

/* The attributes a layer tar without a "./" entry gives its root: those of the layer below it
 * (the stage PREV, else the store layer PREV_ID; see oci_parent_root). */
static int layer_root(lyr_store *s, lyr_stage *prev, const char *prev_id, lyr_oci_root *ret)
{
	if (!prev)
		return oci_parent_root(s, prev_id, ret);
	struct stat st;
	if (fstat(lyr_stage_fd(prev), &st) < 0)
		return -errno;
	*ret = (lyr_oci_root){st.st_mode & 07777, st.st_uid, st.st_gid, st.st_mtim};
	return 0;
}

void lyr_oci_loaded_clear(lyr_oci_loaded *l)
{
	free(l->ids);
	memset(l, 0, sizeof *l);
}

int lyr_oci_load(lyr_store *s, const char *source, const char *tag, const char *platform,
		 const lyr_progress *progress, lyr_oci_error *err, lyr_oci_loaded *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	memset(ret, 0, sizeof *ret);
	oci_kind kind;
	char *path;
	const char *ref;
	int r = oci_parse_name(source, err, &kind, &path, &ref);
	if (r < 0)
		return r;
	bool oci = kind == OCI_DIR, docker = kind == OCI_DOCKER_ARCHIVE;
	if (tag && lyr_tag_valid(tag) < 0) {
		free(path);
		return oci_fail(err, -EINVAL, tag, "not a valid tag name");
	}
	char host[80];
	snprintf(host, sizeof host, "linux/%s", oci_host_arch());
	if (!platform)
		platform = host;
	lyr_stage *scratch = NULL;
	image im = {0};
	lyr_stage **stages = NULL;
	int dir = -1;
	if (oci) {
		dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dir < 0)
			r = oci_fail(err, -errno, path, "%s", strerror(errno));
	} else {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			r = oci_fail(err, -errno, path, "%s", strerror(errno));
		else if ((r = lyr_stage_new(s, "load", &scratch)) == 0) {
			lyr_oci_root root = {0700, geteuid(), getegid(), {0, 0}};
			r = lyr_oci_tar_extract(fd, lyr_stage_fd(scratch), &root, NULL, err);
			if (r < 0 && err) {
				char why[sizeof err->why + 300];
				snprintf(why, sizeof why, "entry '%.200s': %s", err->entry,
					 err->why);
				oci_fail(err, r, path, "%s", why);
			}
			if (r == 0 && (dir = dup(lyr_stage_fd(scratch))) < 0)
				r = -errno;
		}
		if (fd >= 0)
			close(fd);
	}
	if (r == 0)
		r = docker ? load_docker_image(dir, ref, source, err, &im)
			   : load_oci_image(dir, ref, platform, source, err, &im);
	if (r == 0 && im.n == 0)
		r = oci_fail(err, -EBADMSG, source, "the image has no layers");
	if (r == 0 && !(stages = calloc(im.n, sizeof *stages)))
		r = -ENOMEM;
	if (r == 0 && !(ret->ids = calloc(im.n, sizeof *ret->ids)))
		r = -ENOMEM;
	/* the layers the store has (the same diff_id on the same parent) are not read again */
	size_t known = 0;
	while (r == 0 && known < im.n &&
	       lyr_layer_find_diff_id(s, known ? ret->ids[known - 1] : NULL,
				      im.layers[known].diff_id, ret->ids[known]) == 0)
		known++;
	/* every other layer extracted and checked before anything is committed */
	for (size_t i = known; r == 0 && i < im.n; i++) {
		lyr_oci_root root;
		r = i ? layer_root(s, i > known ? stages[i - 1] : NULL, ret->ids[i - 1], &root)
		      : layer_root(s, NULL, NULL, &root);
		if (r == 0)
			r = lyr_stage_new(s, "load", &stages[i]);
		if (r == 0)
			r = extract_layer(dir, &im.layers[i], stages[i], &root, progress, err);
	}
	for (size_t i = 0; r == 0 && i < im.n; i++) {
		if (i >= known)
			r = lyr_stage_commit(stages[i], i ? ret->ids[i - 1] : NULL,
					     im.layers[i].desc, NULL, NULL, ret->ids[i]);
		if (r == 0 && i >= known)
			r = lyr_layer_diff_id_set(s, ret->ids[i], im.layers[i].diff_id);
		if (r == 0)
			ret->n = i + 1;
	}
	if (r == 0 && tag)
		r = lyr_tag_set(s, tag, ret->ids[im.n - 1]);
	if (r == 0) { /* the config stays with the top layer, for save (and exec defaults) */
		char *text = json_dumps(im.config, JSON_COMPACT | JSON_SORT_KEYS);
		r = text ? lyr_layer_config_set(s, ret->ids[im.n - 1], text, strlen(text))
			 : -ENOMEM;
		free(text);
	}
	for (size_t i = 0; stages && i < im.n; i++)
		lyr_stage_free(stages[i]);
	free(stages);
	image_clear(&im);
	if (dir >= 0)
		close(dir);
	lyr_stage_free(scratch);
	free(path);
	if (r < 0 && ret->n == 0)
		lyr_oci_loaded_clear(ret);
	return r;
}
