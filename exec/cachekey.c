/* The cache key of an exec op: sha256 over the canonical encoding of the op followed by one
 * (selector digest, content-or-layer digest) pair per input.  docs/exec-spec.md is the
 * normative description; a change to the byte layout must bump the version string below so
 * that old action-cache entries stop matching. */
#include "layerfs/exec.h"

#include <inttypes.h>
#include <string.h>
#include <sys/utsname.h>

#include "internal.h"

#define ENCODING_VERSION "layerfs-exec-op/1"
#define DEFAULT_HOSTNAME "layerfs"

void lyr_exec_platform(char out[32])
{
	static const struct {
		const char *machine, *arch;
	} map[] = {{"x86_64", "amd64"},	   {"aarch64", "arm64"}, {"armv7l", "arm/v7"},
		   {"armv6l", "arm/v6"},   {"i686", "386"},	 {"i386", "386"},
		   {"ppc64le", "ppc64le"}, {"s390x", "s390x"},	 {"riscv64", "riscv64"}};
	struct utsname u;
	const char *arch = "unknown";
	if (uname(&u) == 0) {
		arch = u.machine;
		for (size_t i = 0; i < LYR_ARRAY_SIZE(map); i++)
			if (strcmp(map[i].machine, u.machine) == 0)
				arch = map[i].arch;
	}
	snprintf(out, 32, "linux/%.24s", arch);
}

/* A growing byte buffer; OOM is sticky and reported once at the end. */
typedef struct buf {
	uint8_t *data;
	size_t len, cap;
	bool oom;
} buf;

static void put(buf *b, const void *p, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t cap = (b->cap + n) * 2;
		uint8_t *nd = realloc(b->data, cap);
		if (!nd) {
			b->oom = true;
			return;
		}
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* A netstring: decimal length, ':', the bytes, ','. */
static void ns(buf *b, const char *s)
{
	char head[32];
	size_t n = strlen(s);
	int h = snprintf(head, sizeof head, "%zu:", n);
	put(b, head, (size_t)h);
	put(b, s, n);
	put(b, ",", 1);
}

static void ns_u64(buf *b, uint64_t v)
{
	char s[32];
	snprintf(s, sizeof s, "%" PRIu64, v);
	ns(b, s);
}

static int env_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
	int c = memcmp(x, y, nx < ny ? nx : ny);
	if (c)
		return c;
	return nx < ny ? -1 : nx > ny ? 1 : strcmp(x, y);
}

int lyr_exec_mount_input(const lyr_exec_op *op, size_t i)
{
	if (i >= op->n_mounts || !op->mounts[i].source)
		return -1;
	int idx = 0;
	for (size_t j = 0; j <= i; j++) {
		const char *s = op->mounts[j].source;
		if (!s)
			continue;
		bool first = true;
		for (size_t k = 0; k < j && first; k++)
			first = !op->mounts[k].source || strcmp(op->mounts[k].source, s) != 0;
		if (!first)
			continue;
		idx++;
		if (strcmp(s, op->mounts[i].source) == 0)
			return idx;
	}
	return -1; /* not reached: mount I itself is a first appearance at the latest */
}

int lyr_exec_op_encode(const lyr_exec_op *op, const char *platform, uint8_t **ret, size_t *ret_len)
{
	char plat[32];
	if (!platform) {
		lyr_exec_platform(plat);
		platform = plat;
	}
	buf b = {0};
	ns(&b, ENCODING_VERSION);
	ns(&b, "platform");
	ns(&b, platform);
	ns(&b, "args");
	ns_u64(&b, op->n_args);
	for (size_t i = 0; i < op->n_args; i++)
		ns(&b, op->args[i]);

	_cleanup_free_ const char **env = calloc(op->n_env + 1, sizeof(char *));
	if (!env) {
		free(b.data);
		return -ENOMEM;
	}
	for (size_t i = 0; i < op->n_env; i++)
		env[i] = op->env[i];
	qsort(env, op->n_env, sizeof(char *), env_cmp);
	ns(&b, "env");
	ns_u64(&b, op->n_env);
	for (size_t i = 0; i < op->n_env; i++)
		ns(&b, env[i]);

	ns(&b, "cwd");
	ns(&b, op->cwd ? op->cwd : "/");
	ns(&b, "user");
	ns(&b, op->user ? op->user : "");
	ns(&b, "hostname");
	ns(&b, op->hostname ? op->hostname : DEFAULT_HOSTNAME);
	ns(&b, "network");
	ns(&b, op->network == LYR_NET_HOST ? "host" : "none");

	ns(&b, "mounts");
	ns_u64(&b, op->n_mounts);
	for (size_t i = 0; i < op->n_mounts; i++) {
		const lyr_exec_mount *m = &op->mounts[i];
		int input = lyr_exec_mount_input(op, i);
		ns(&b, lyr_exec_mount_type_name(m->type));
		ns(&b, m->target);
		if (input < 0)
			ns(&b, "-");
		else
			ns_u64(&b, (uint64_t)input);
		ns(&b, m->readonly ? "1" : "0");
		ns(&b, m->output ? "1" : "0");
		ns(&b, m->type == LYR_MOUNT_CACHE ? m->cache_id : "");
		ns(&b, m->type == LYR_MOUNT_CACHE ? lyr_exec_sharing_name(m->sharing) : "");
		ns_u64(&b, m->type == LYR_MOUNT_TMPFS ? m->size : 0);
	}
	/* Only when insecure, so that the keys of sandboxed runs stay what they were. */
	if (op->security == LYR_SECURITY_INSECURE) {
		ns(&b, "security");
		ns(&b, "insecure");
	}
	if (b.oom) {
		free(b.data);
		return -ENOMEM;
	}
	*ret = b.data;
	*ret_len = b.len;
	return 0;
}

static int input_add_selector(lyr_exec_input *in, const char *sel)
{
	char **nv = realloc(in->selectors, (in->n_selectors + 2) * sizeof(char *));
	if (!nv)
		return -ENOMEM;
	in->selectors = nv;
	nv[in->n_selectors] = strdup(sel);
	if (!nv[in->n_selectors]) {
		nv[in->n_selectors] = NULL;
		return -ENOMEM;
	}
	nv[++in->n_selectors] = NULL;
	return 0;
}

/* Dedupes and sorts the selectors with the hash module's rules (the same list the content
 * hash of the input is computed over) and digests what is left.  Returns 0 or -errno. */
static int input_finish(lyr_exec_input *in)
{
	char **list = NULL;
	size_t n = 0;
	int r = lyr_hash_selectors_dedupe((const char *const *)in->selectors, in->n_selectors,
					  false, &list, &n, NULL);
	if (r < 0)
		return r;
	char **nv = realloc(list, (n + 1) * sizeof(char *));
	if (!nv) {
		lyr_hash_selectors_free(list, n);
		return -ENOMEM;
	}
	nv[n] = NULL;
	for (size_t i = 0; i < in->n_selectors; i++)
		free(in->selectors[i]);
	free(in->selectors);
	in->selectors = nv;
	in->n_selectors = n;

	lyr_sha256_ctx *h = NULL;
	r = lyr_sha256_new(&h);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (i)
			lyr_sha256_update(h, "", 1);
		lyr_sha256_update(h, nv[i], strlen(nv[i]));
	}
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(h, d);
	lyr_sha256_free(h);
	lyr_digest_text(d, in->selector_digest);
	return 0;
}

void lyr_exec_inputs_free(lyr_exec_input *inputs, size_t n)
{
	for (size_t i = 0; inputs && i < n; i++) {
		for (size_t j = 0; j < inputs[i].n_selectors; j++)
			free(inputs[i].selectors[j]);
		free(inputs[i].selectors);
	}
	free(inputs);
}

int lyr_exec_op_inputs(const lyr_exec_op *op, lyr_exec_input **ret, size_t *ret_n)
{
	lyr_exec_input *in = calloc(op->n_mounts + 1, sizeof *in);
	if (!in)
		return -ENOMEM;
	size_t n = 1;
	in[0].source = op->root;
	int r = input_add_selector(&in[0], "/");
	for (size_t i = 0; r >= 0 && i < op->n_mounts; i++) {
		const lyr_exec_mount *m = &op->mounts[i];
		int idx = lyr_exec_mount_input(op, i);
		if (idx < 0)
			continue;
		if ((size_t)idx == n) {
			in[n].source = m->source;
			in[n].read_only = true;
			n++;
		}
		lyr_exec_input *x = &in[idx];
		x->read_only = x->read_only && m->type == LYR_MOUNT_BIND && m->readonly;
		r = input_add_selector(x, m->selector ? m->selector : "/");
	}
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = input_finish(&in[i]);
	if (r < 0) {
		lyr_exec_inputs_free(in, n);
		return r;
	}
	*ret = in;
	*ret_n = n;
	return 0;
}

int lyr_exec_cache_key(const lyr_exec_op *op, const char *platform,
		       const lyr_exec_input_digest *inputs, size_t n_inputs,
		       char ret_key[LYR_DIGEST_TEXT_LEN])
{
	size_t want = 1;
	for (size_t i = 0; i < op->n_mounts; i++) {
		int idx = lyr_exec_mount_input(op, i);
		if (idx >= 0 && (size_t)idx + 1 > want)
			want = (size_t)idx + 1;
	}
	if (n_inputs != want)
		return -EINVAL;
	uint8_t scratch[LYR_SHA256_LEN];
	for (size_t i = 0; i < n_inputs; i++)
		if (!inputs[i].selector_digest || !inputs[i].digest ||
		    lyr_digest_parse(inputs[i].selector_digest, scratch) < 0 ||
		    lyr_digest_parse(inputs[i].digest, scratch) < 0)
			return -EINVAL;

	_cleanup_free_ uint8_t *enc = NULL;
	size_t len = 0;
	int r = lyr_exec_op_encode(op, platform, &enc, &len);
	if (r < 0)
		return r;
	lyr_sha256_ctx *h = NULL;
	r = lyr_sha256_new(&h);
	if (r < 0)
		return r;
	lyr_sha256_update(h, enc, len);
	buf b = {0};
	ns(&b, "inputs");
	ns_u64(&b, n_inputs);
	for (size_t i = 0; i < n_inputs; i++) {
		ns(&b, inputs[i].selector_digest);
		ns(&b, inputs[i].digest);
	}
	if (b.oom) {
		lyr_sha256_free(h);
		free(b.data);
		return -ENOMEM;
	}
	lyr_sha256_update(h, b.data, b.len);
	free(b.data);
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(h, d);
	lyr_sha256_free(h);
	lyr_digest_text(d, ret_key);
	return 0;
}
