/* test_idgen_uuid.c -- unit tests for sm/idgen/uuid (RFC 9562 v4 and v7).
 *
 * Checks the version and variant bits, the RFC's example UUIDs through the text codec,
 * the v7 layout (timestamp, counter in rand_a and rand_b), strict monotonicity over a
 * million UUIDs while the clock stalls, jumps forward and goes back by 1 ms, 50 ms
 * and 10 s, the counter-overflow path, and the parser's errors.
 *
 * Sections: v4 | text | v7 | monotonicity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "base/prng.h"
#include "sm/idgen/uuid.h"

static void fill(struct prng *r, uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)prng_next(r);
    }
}

/* ==== v4 ================================================================= */

static void test_v4_bits(void **state)
{
    uint8_t rnd[16];
    struct uuid u;
    memset(rnd, 0xff, sizeof rnd);
    uuid_v4(rnd, &u);
    assert_int_equal(u.b[6], 0x4f);
    assert_int_equal(u.b[8], 0xbf);
    memset(rnd, 0, sizeof rnd);
    uuid_v4(rnd, &u);
    assert_int_equal(u.b[6], 0x40);
    assert_int_equal(u.b[8], 0x80);
    assert_int_equal(uuid_version(&u), 4);
    /* the other 122 bits are the input's */
    struct prng r;
    prng_seed(&r, 4);
    fill(&r, rnd, sizeof rnd);
    uuid_v4(rnd, &u);
    for (int i = 0; i < 16; i++) {
        uint8_t mask = i == 6 ? 0x0f : i == 8 ? 0x3f : 0xff;
        assert_int_equal(u.b[i] & mask, rnd[i] & mask);
    }
    int64_t ms;
    assert_int_equal(uuid_v7_unix_ms(&u, &ms), UUID_EVERSION);
}

/* ==== text =============================================================== */

static void test_text_and_rfc_examples(void **state)
{
    struct uuid u;
    char text[UUID_TEXT_LEN + 1];
    /* RFC 9562 Appendix A.3 (v4) and A.6 (v7) example values */
    assert_int_equal(uuid_parse("919108f7-52d1-4320-9bac-f847db4148a8", 36, &u), 0);
    assert_int_equal(uuid_version(&u), 4);
    uuid_format(&u, text);
    assert_string_equal(text, "919108f7-52d1-4320-9bac-f847db4148a8");
    assert_int_equal(uuid_parse("017F22E2-79B0-7CC3-98C4-DC0C0C07398F", 36, &u), 0);
    assert_int_equal(uuid_version(&u), 7);
    int64_t ms;
    assert_int_equal(uuid_v7_unix_ms(&u, &ms), 0);
    assert_int_equal(ms, INT64_C(0x017F22E279B0)); /* 2022-02-22T19:22:22Z */
    assert_int_equal(ms, INT64_C(1645557742000));
    uuid_format(&u, text);
    assert_string_equal(text, "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");

    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398", 35, &u), UUID_ELENGTH);
    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398ff", 37, &u), UUID_ELENGTH);
    assert_int_equal(uuid_parse("{17f22e2-79b0-7cc3-98c4-dc0c0c07398f", 36, &u), UUID_ESYNTAX);
    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4_dc0c0c07398f", 36, &u), UUID_ESYNTAX);
    assert_int_equal(uuid_parse("017f22e279b0-7cc3-98c4-dc0c0c07398f-", 36, &u), UUID_ESYNTAX);
    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398g", 36, &u), UUID_ESYNTAX);
    assert_int_equal(uuid_parse(NULL, 0, &u), UUID_ELENGTH);
    assert_string_equal(uuid_strerror(UUID_ESYNTAX), "UUID text must be 8-4-4-4-12 hex digits");
}

/* ==== v7 ================================================================= */

static void test_v7_layout(void **state)
{
    struct uuid_v7 g;
    uuid_v7_init(&g);
    uint8_t rnd[UUID_V7_RANDOM_BYTES] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xde, 0xad, 0xbe, 0xef};
    struct uuid u;
    assert_int_equal(uuid_v7_next(&g, INT64_C(0x017F22E279B0), rnd, &u), 0);
    char text[UUID_TEXT_LEN + 1];
    uuid_format(&u, text);
    /* counter seed = 41 one-bits: rand_a = 0x7ff (guard bit clear), rand_b's 30 counter
     * bits all ones, then deadbeef */
    assert_string_equal(text, "017f22e2-79b0-77ff-bfff-ffffdeadbeef");
    assert_int_equal(uuid_version(&u), 7);
    assert_int_equal(g.counter, (UINT64_C(1) << 41) - 1);
    /* same ms: counter + 1 carries into the guard bit */
    assert_int_equal(uuid_v7_next(&g, INT64_C(0x017F22E279B0), rnd, &u), 0);
    uuid_format(&u, text);
    assert_string_equal(text, "017f22e2-79b0-7800-8000-0000deadbeef");

    assert_int_equal(uuid_v7_next(&g, -1, rnd, &u), UUID_ECLOCK);
    assert_int_equal(uuid_v7_next(&g, UUID_V7_MS_MAX + 1, rnd, &u), UUID_ECLOCK);
}

static void test_v7_counter_overflow_runs_ahead(void **state)
{
    struct uuid_v7 g;
    uuid_v7_init(&g);
    uint8_t rnd[UUID_V7_RANDOM_BYTES] = {0};
    struct uuid a, b;
    assert_int_equal(uuid_v7_next(&g, 1000, rnd, &a), 0);
    g.counter = (UINT64_C(1) << UUID_V7_COUNTER_BITS) - 2; /* as if 2^42 - 2 were issued */
    assert_int_equal(uuid_v7_next(&g, 1000, rnd, &b), 0);
    assert_true(uuid_cmp(&a, &b) < 0);
    a = b;
    assert_int_equal(uuid_v7_next(&g, 1000, rnd, &b), 0); /* overflow: ts 1001 */
    assert_true(uuid_cmp(&a, &b) < 0);
    int64_t ms;
    assert_int_equal(uuid_v7_unix_ms(&b, &ms), 0);
    assert_int_equal(ms, 1001);
    assert_int_equal(g.n_ahead, 1);
    /* the clock catching up does not go back */
    a = b;
    assert_int_equal(uuid_v7_next(&g, 1000, rnd, &b), 0);
    assert_true(uuid_cmp(&a, &b) < 0);
    assert_int_equal(uuid_v7_unix_ms(&b, &ms), 0);
    assert_int_equal(ms, 1001);
}

/* ==== monotonicity ======================================================= */

static void test_v7_monotonic_across_clock_jumps(void **state)
{
    struct prng r;
    prng_seed(&r, 7);
    struct uuid_v7 g;
    uuid_v7_init(&g);
    struct uuid prev, u;
    uint8_t rnd[UUID_V7_RANDOM_BYTES];
    int64_t clock = INT64_C(1700000000000);
    char text[UUID_TEXT_LEN + 1], prev_text[UUID_TEXT_LEN + 1] = "";
    uint32_t back = 0;
    for (uint32_t i = 0; i < 1000000; i++) {
        uint64_t ev = prng_below(&r, 1000);
        if (ev < 300) {
            clock += 1;
        } else if (ev < 302) {
            clock -= 1;
            back++;
        } else if (ev < 303) {
            clock -= 50;
            back++;
        } else if (ev == 303) {
            clock -= 10000;
            back++;
        } else if (ev == 304) {
            clock += 20000;
        }
        fill(&r, rnd, sizeof rnd);
        assert_int_equal(uuid_v7_next(&g, clock, rnd, &u), 0);
        assert_int_equal(uuid_version(&u), 7);
        assert_int_equal(u.b[8] & 0xc0, 0x80);
        if (i > 0 && uuid_cmp(&prev, &u) >= 0) {
            fail_msg("uuid %u not above the previous one", i);
        }
        if (i % 97 == 0) { /* text order is byte order, and text round-trips */
            uuid_format(&u, text);
            assert_true(strcmp(prev_text, text) < 0);
            struct uuid back_u;
            assert_int_equal(uuid_parse(text, UUID_TEXT_LEN, &back_u), 0);
            assert_int_equal(uuid_cmp(&back_u, &u), 0);
            memcpy(prev_text, text, sizeof text);
        }
        prev = u;
    }
    assert_true(back > 1000);
    assert_true(g.n_behind > 100000); /* the clock spent a long time behind */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_bits),
        cmocka_unit_test(test_text_and_rfc_examples),
        cmocka_unit_test(test_v7_layout),
        cmocka_unit_test(test_v7_counter_overflow_runs_ahead),
        cmocka_unit_test(test_v7_monotonic_across_clock_jumps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
