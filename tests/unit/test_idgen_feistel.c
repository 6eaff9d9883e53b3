/* test_idgen_feistel.c -- unit tests for sm/idgen/idmac (HMAC-SHA256) and
 * sm/idgen/feistel (the keyed mixed-radix permutation under orderno and shorturl).
 *
 * idmac: RFC 4231 test vectors, split input, reuse of one context, key limits.
 * feistel: a block of 100k points of the smallest allowed domain (10^6) maps injectively;
 * round trips over unbalanced, odd and large radices; the tweak and the key change
 * the permutation.
 *
 * Sections: idmac | feistel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/prng.h"
#include "sm/idgen/feistel.h"
#include "sm/idgen/idmac.h"

/* ==== idmac ============================================================== */

static void hex_to(const char *hex, uint8_t *out)
{
    for (size_t i = 0; hex[2 * i] != '\0'; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void test_idmac_rfc4231(void **state)
{
    struct idmac m;
    uint8_t key[20], want[32], out[32], data[50];
    /* RFC 4231 test case 1: key = 0x0b x 20, data = "Hi There" */
    memset(key, 0x0b, sizeof key);
    hex_to("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want);
    assert_int_equal(idmac_init(&m, key, sizeof key), 0);
    assert_int_equal(idmac_compute(&m, (const uint8_t *)"Hi There", 8, NULL, 0, out), 0);
    assert_memory_equal(out, want, 32);
    /* split input, and the same context again */
    assert_int_equal(idmac_compute(&m, (const uint8_t *)"Hi ", 3, (const uint8_t *)"There", 5, out),
                     0);
    assert_memory_equal(out, want, 32);
    idmac_fini(&m);
    idmac_fini(&m); /* twice is fine */
    /* test case 3: key = 0xaa x 20, data = 0xdd x 50 */
    memset(key, 0xaa, sizeof key);
    memset(data, 0xdd, sizeof data);
    hex_to("773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", want);
    assert_int_equal(idmac_init(&m, key, sizeof key), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(idmac_compute(&m, data, sizeof data, NULL, 0, out), 0);
        assert_memory_equal(out, want, 32);
    }
    idmac_fini(&m);
    uint8_t big[IDMAC_KEY_BYTES_MAX + 1] = {0};
    assert_int_equal(idmac_init(&m, big, IDMAC_KEY_BYTES_MIN - 1), IDMAC_EKEY);
    assert_null(m.ctx);
    assert_int_equal(idmac_init(&m, big, IDMAC_KEY_BYTES_MAX + 1), IDMAC_EKEY);
    assert_int_equal(idmac_init(&m, NULL, 32), IDMAC_EKEY);
    assert_int_equal(idmac_init(&m, big, IDMAC_KEY_BYTES_MAX), 0);
    idmac_fini(&m);
    assert_string_equal(idmac_strerror(IDMAC_EKEY),
                        "key length outside [IDMAC_KEY_BYTES_MIN, IDMAC_KEY_BYTES_MAX]");
}

/* ==== feistel ============================================================ */

static const uint8_t KEY[32] = "conclave-feistel-test-key-32byte";

/* The first 100k points of the smallest domain (10^6) land on 100k distinct points and
 * decrypt back. (Every Feistel network is a permutation whatever its round function;
 * this checks the mixed-radix bookkeeping, which is where a bug would break it. A full
 * enumeration takes 10^7 HMACs: ~4 s here, ~40 s under ASan.) */
static void test_domain_block_is_injective(void **state)
{
    struct idmac m;
    assert_int_equal(idmac_init(&m, KEY, sizeof KEY), 0);
    const uint64_t a = 1000, b = 1000, n = a * b;
    uint8_t *seen = calloc(n, 1);
    assert_non_null(seen);
    uint32_t fixed = 0, low = 0;
    for (uint64_t x = 0; x < 100000; x++) {
        uint64_t y, z;
        assert_int_equal(feistel_encrypt(&m, (const uint8_t *)"t", 1, a, b, x, &y), 0);
        assert_true(y < n);
        assert_int_equal(seen[y], 0);
        seen[y] = 1;
        fixed += y == x;
        low += y < 100000; /* about 10% of the images fall back into the block */
        assert_int_equal(feistel_decrypt(&m, (const uint8_t *)"t", 1, a, b, y, &z), 0);
        assert_int_equal(z, x);
    }
    assert_true(fixed < 10);
    assert_true(low > 9000 && low < 11000);
    free(seen);
    idmac_fini(&m);
}

static void test_round_trips_and_tweaks(void **state)
{
    struct idmac m, m2;
    assert_int_equal(idmac_init(&m, KEY, sizeof KEY), 0);
    uint8_t key2[32];
    memcpy(key2, KEY, sizeof key2);
    key2[0] ^= 1;
    assert_int_equal(idmac_init(&m2, key2, sizeof key2), 0);
    const struct {
        uint64_t a, b;
    } domains[] = {
        {1000, 10000},                              /* orderno, 7 digits */
        {2, 500000},                                /* very unbalanced */
        {7, 142858},                                /* odd radices */
        {UINT64_C(916132832), UINT64_C(916132832)}, /* shorturl, 10 characters */
        {2, UINT64_C(1) << 61},                     /* FEISTEL_DOMAIN_MAX */
    };
    struct prng r;
    prng_seed(&r, 5);
    for (size_t d = 0; d < sizeof domains / sizeof domains[0]; d++) {
        uint64_t a = domains[d].a, b = domains[d].b;
        uint32_t same_tweak = 0, same_key = 0;
        for (int i = 0; i < 2000; i++) {
            uint64_t x = prng_below(&r, a * b), y, z, y2;
            if (i == 0) {
                x = 0;
            } else if (i == 1) {
                x = a * b - 1;
            }
            assert_int_equal(feistel_encrypt(&m, (const uint8_t *)"A", 1, a, b, x, &y), 0);
            assert_true(y < a * b);
            assert_int_equal(feistel_decrypt(&m, (const uint8_t *)"A", 1, a, b, y, &z), 0);
            assert_int_equal(z, x);
            assert_int_equal(feistel_encrypt(&m, (const uint8_t *)"B", 1, a, b, x, &y2), 0);
            same_tweak += y2 == y;
            assert_int_equal(feistel_encrypt(&m2, (const uint8_t *)"A", 1, a, b, x, &y2), 0);
            same_key += y2 == y;
        }
        assert_true(same_tweak < 30);
        assert_true(same_key < 30);
    }
    idmac_fini(&m);
    idmac_fini(&m2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idmac_rfc4231),
        cmocka_unit_test(test_domain_block_is_injective),
        cmocka_unit_test(test_round_trips_and_tweaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
