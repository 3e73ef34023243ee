/* SHA-256 over OpenSSL's EVP interface, digest texts ("sha256:<64 hex>") and layer IDs.
 *
 * This is the one place in layerfs that talks to OpenSSL's digest API, so it is also the one
 * place that converts OpenSSL's 1-on-success/0-on-failure returns.  EVP picks the SHA-NI or AVX2
 * code path for this CPU at run time; nothing here is tuned by hand.  The only failures EVP can
 * report for SHA-256 are allocation failures and an unusable provider; once a context is
 * initialised, update and final cannot fail for this algorithm, so a failure there means the
 * library is broken and we abort rather than return a wrong digest.  A lyr_sha256_ctx belongs to one
 * thread at a time. */
#include "layerfs/hash.h"

#include <openssl/evp.h>
#include <string.h>

struct lyr_sha256_ctx {
	EVP_MD_CTX *ctx;
};

/* OpenSSL returns 1 on success and 0 on failure. */
static void ossl_check(int r, const char *what)
{
	if (r != 1) {
		fprintf(stderr, "layerfs: OpenSSL %s failed for SHA-256\n", what);
		abort();
	}
}

int lyr_sha256_new(lyr_sha256_ctx **ret)
{
	lyr_sha256_ctx *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx) {
		free(h);
		return -ENOMEM;
	}
	if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->ctx);
		free(h);
		return -ENOMEM;
	}
	*ret = h;
	return 0;
}

void lyr_sha256_update(lyr_sha256_ctx *h, const void *data, size_t len)
{
	if (len)
		ossl_check(EVP_DigestUpdate(h->ctx, data, len), "update");
}

void lyr_sha256_final(lyr_sha256_ctx *h, uint8_t out[LYR_SHA256_LEN])
{
	unsigned int n = 0;
	ossl_check(EVP_DigestFinal_ex(h->ctx, out, &n), "final");
	if (n != LYR_SHA256_LEN)
		ossl_check(0, "final length");
}

void lyr_sha256_free(lyr_sha256_ctx *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void lyr_sha256(const void *data, size_t len, uint8_t out[LYR_SHA256_LEN])
{
	unsigned int n = 0;
	ossl_check(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL), "digest");
	if (n != LYR_SHA256_LEN)
		ossl_check(0, "digest length");
}

void lyr_digest_text(const uint8_t digest[LYR_SHA256_LEN], char out[LYR_DIGEST_TEXT_LEN])
{
	memcpy(out, LYR_DIGEST_PREFIX, sizeof LYR_DIGEST_PREFIX - 1);
	lyr_hex(digest, LYR_SHA256_LEN, out + sizeof LYR_DIGEST_PREFIX - 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int lyr_digest_parse(const char *text, uint8_t out[LYR_SHA256_LEN])
{
	const size_t plen = sizeof LYR_DIGEST_PREFIX - 1;
	uint8_t tmp[LYR_SHA256_LEN];

	/* Only the canonical lower-case form is accepted, so one digest has one text. */
	if (!text || strncmp(text, LYR_DIGEST_PREFIX, plen) != 0 ||
	    strlen(text) != plen + 2 * LYR_SHA256_LEN)
		return -EINVAL;
	for (size_t i = 0; i < LYR_SHA256_LEN; i++) {
		int hi = hexval(text[plen + 2 * i]), lo = hexval(text[plen + 2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(out, tmp, sizeof tmp);
	return 0;
}

void lyr_layer_id(const char *parent_id, const char *diff_digest, char ret_id[LYR_DIGEST_TEXT_LEN])
{
	const char *p = parent_id ? parent_id : "";
	uint8_t d[LYR_SHA256_LEN];
	unsigned int n = 0;

	/* Allocation of an EVP context is the only way this can fail; callers get an ID or an
	 * abort, never a wrong ID. */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		ossl_check(0, "context allocation");
	ossl_check(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), "init");
	ossl_check(EVP_DigestUpdate(ctx, p, strlen(p)), "update");
	ossl_check(EVP_DigestUpdate(ctx, " ", 1), "update");
	ossl_check(EVP_DigestUpdate(ctx, diff_digest, strlen(diff_digest)), "update");
	ossl_check(EVP_DigestFinal_ex(ctx, d, &n), "final");
	EVP_MD_CTX_free(ctx);
	lyr_digest_text(d, ret_id);
}
