/* test_prng.c -- unit tests for base/prng: exact streams, determinism, bounds, bias.
 *
 * The golden vectors were computed with an independent Python transcription of the
 * xoshiro256** and splitmix64 reference code; if they change, every recorded
 * simulator seed stops replaying, so treat a mismatch as a compatibility break.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/prng.h"

static void test_golden_streams(void **state)
{
    static const struct {
        uint64_t seed;
        uint64_t out[4];
    } cases[] = {
        {0, {0x99ec5f36cb75f2b4, 0xbf6e1f784956452a, 0x1a5f849d4933e6e0, 0x6aa594f1262d2d2c}},
        {1, {0xb3f2af6d0fc710c5, 0x853b559647364cea, 0x92f89756082a4514, 0x642e1c7bc266a3a7}},
        {0xdeadbeef,
         {0xc5555444a74d7e83, 0x65c30d37b4b16e38, 0x54f773200a4efa23, 0x429aed75fb958af7}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct prng p;
        prng_seed(&p, cases[c].seed);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(prng_next(&p), cases[c].out[i]);
        }
    }
}

static void test_same_seed_same_stream(void **state)
{
    struct prng a, b;
    prng_seed(&a, 42);
    prng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(prng_next(&a), prng_next(&b));
    }
}

static void test_different_seeds_differ(void **state)
{
    struct prng a, b;
    prng_seed(&a, 7);
    prng_seed(&b, 8);
    int same = 0;
    for (int i = 0; i < 100; i++) {
        same += prng_next(&a) == prng_next(&b);
    }
    assert_int_equal(same, 0);
}

static void test_below_in_range(void **state)
{
    static const uint64_t bounds[] = {
        1, 2, 3, 7, 10, 1000, UINT64_C(1) << 32, (UINT64_C(1) << 63) + 1, UINT64_MAX};
    struct prng p;
    prng_seed(&p, 3);
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        for (int i = 0; i < 2000; i++) {
            assert_true(prng_below(&p, bounds[b]) < bounds[b]);
        }
    }
    assert_int_equal(prng_below(&p, 1), 0);
}

/* 60000 draws into 6 buckets: each expects 10000 with sd ~91; allow 5 sd. */
static void test_below_roughly_uniform(void **state)
{
    enum { BUCKETS = 6, DRAWS = 60000, SLACK = 460 };
    unsigned counts[BUCKETS] = {0};
    struct prng p;
    prng_seed(&p, 12345);
    for (int i = 0; i < DRAWS; i++) {
        counts[prng_below(&p, BUCKETS)]++;
    }
    for (int k = 0; k < BUCKETS; k++) {
        assert_in_range(counts[k], DRAWS / BUCKETS - SLACK, DRAWS / BUCKETS + SLACK);
    }
}

/* n just above 2^63 rejects almost half of all draws; the results must still split
 * evenly between the lower and upper halves of [0, n). */
static void test_below_large_n_unbiased(void **state)
{
    const uint64_t n = (UINT64_C(1) << 63) + (UINT64_C(1) << 62);
    struct prng p;
    prng_seed(&p, 99);
    int low = 0;
    for (int i = 0; i < 20000; i++) {
        low += prng_below(&p, n) < n / 2;
    }
    assert_in_range(low, 10000 - 400, 10000 + 400);
}

static void test_chance(void **state)
{
    struct prng p;
    prng_seed(&p, 5);
    int hits_never = 0, hits_always = 0, hits_half = 0;
    for (int i = 0; i < 20000; i++) {
        hits_never += prng_chance(&p, 0);
        hits_always += prng_chance(&p, PRNG_PER_MILLION);
        hits_half += prng_chance(&p, PRNG_PER_MILLION / 2);
    }
    assert_int_equal(hits_never, 0);
    assert_int_equal(hits_always, 20000);
    assert_in_range(hits_half, 10000 - 400, 10000 + 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_streams),
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_different_seeds_differ),
        cmocka_unit_test(test_below_in_range),
        cmocka_unit_test(test_below_roughly_uniform),
        cmocka_unit_test(test_below_large_n_unbiased),
        cmocka_unit_test(test_chance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
