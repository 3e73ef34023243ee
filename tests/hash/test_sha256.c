#include <criterion/criterion.h>
#include <string.h>

#include "layerfs/hash.h"

static void text_of(const void *data, size_t len, char out[LYR_DIGEST_TEXT_LEN])
{
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256(data, len, d);
	lyr_digest_text(d, out);
}

Test(hash_sha256, one_shot_matches_the_fips_vectors)
{
	char t[LYR_DIGEST_TEXT_LEN];
	text_of("abc", 3, t);
	cr_assert_str_eq(t, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	text_of("", 0, t);
	cr_assert_str_eq(t, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	text_of(m, strlen(m), t);
	cr_assert_str_eq(t, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(hash_sha256, streaming_in_odd_pieces_matches_the_million_a_vector)
{
	lyr_sha256_ctx *h = NULL;
	cr_assert_eq(lyr_sha256_new(&h), 0);
	char chunk[997];
	memset(chunk, 'a', sizeof chunk);
	size_t left = 1000000;
	while (left) {
		size_t n = left < sizeof chunk ? left : sizeof chunk;
		lyr_sha256_update(h, chunk, n);
		left -= n;
	}
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(h, d);
	lyr_sha256_free(h);
	char t[LYR_DIGEST_TEXT_LEN];
	lyr_digest_text(d, t);
	cr_assert_str_eq(t, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

Test(hash_sha256, free_accepts_null)
{
	lyr_sha256_free(NULL);
}

Test(hash_sha256, digest_text_round_trips_through_parse)
{
	uint8_t d[LYR_SHA256_LEN], back[LYR_SHA256_LEN];
	for (size_t i = 0; i < sizeof d; i++)
		d[i] = (uint8_t)(i * 37 + 1);
	char t[LYR_DIGEST_TEXT_LEN];
	lyr_digest_text(d, t);
	cr_assert_eq(strlen(t), LYR_DIGEST_TEXT_LEN - 1);
	cr_assert_eq(lyr_digest_parse(t, back), 0);
	cr_assert_arr_eq(d, back, sizeof d);
}

Test(hash_sha256, parse_rejects_anything_but_the_canonical_text)
{
	uint8_t d[LYR_SHA256_LEN];
	const char *good = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	cr_assert_eq(lyr_digest_parse(good, d), 0);
	cr_assert_eq(d[0], 0xba);
	cr_assert_eq(d[31], 0xad);
	cr_assert_eq(lyr_digest_parse("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d), -EINVAL);
	cr_assert_eq(lyr_digest_parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a", d), -EINVAL);
	cr_assert_eq(lyr_digest_parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", d), -EINVAL);
	cr_assert_eq(lyr_digest_parse("sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d), -EINVAL);
	cr_assert_eq(lyr_digest_parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag", d), -EINVAL);
	cr_assert_eq(lyr_digest_parse(NULL, d), -EINVAL);
}

Test(hash_sha256, layer_id_of_a_base_layer_hashes_a_space_and_the_diff_digest)
{
	/* sha256(" sha256:" + hex(sha256("x"))), computed with sha256sum. */
	const char *diff = "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
	char id[LYR_DIGEST_TEXT_LEN];
	lyr_layer_id(NULL, diff, id);
	cr_assert_str_eq(id, "sha256:d1ed0d7351ba7a7ac215aeb6b8555932b1d72f7765509c261f79159171ecc1f1");
	lyr_layer_id("", diff, id);
	cr_assert_str_eq(id, "sha256:d1ed0d7351ba7a7ac215aeb6b8555932b1d72f7765509c261f79159171ecc1f1");
}

Test(hash_sha256, layer_id_with_a_parent_hashes_parent_space_diff)
{
	const char *parent = "sha256:148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940";
	const char *diff = "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
	char id[LYR_DIGEST_TEXT_LEN];
	lyr_layer_id(parent, diff, id);
	cr_assert_str_eq(id, "sha256:6135e5a935abe122d297bff9df0e159770154925756074ed880e18393a727d88");
}
