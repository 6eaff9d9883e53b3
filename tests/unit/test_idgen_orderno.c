/* test_idgen_orderno.c -- unit tests for sm/idgen/orderno.
 *
 * Pins a known answer (computed by an independent Python transcription of feistel.h
 * and orderno.h), the calendar arithmetic, the round trip make -> open over many
 * sequences, that consecutive sequences land far apart (not enumerable), that every
 * single mistyped digit is caught by the Luhn digit and which neighbour swaps are,
 * and each error.
 *
 * Sections: dates | known answer | round trip | typos | errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sm/idgen/orderno.h"

static const uint8_t KEY[32] = "conclave-orderno-test-key-32byte";

static struct orderno *make_gen(unsigned digits)
{
    static struct orderno o;
    assert_int_equal(orderno_init(&o, KEY, sizeof KEY, digits), 0);
    return &o;
}

/* ==== dates ============================================================== */

static void test_dates(void **state)
{
    struct orderno_date d;
    assert_int_equal(orderno_date_from_unix_ms(0, 0, &d), 0);
    assert_int_equal(d.year, 1970);
    assert_int_equal(d.month, 1);
    assert_int_equal(d.day, 1);
    /* 2024-01-01T00:00:00Z; one ms before is still 2023 in UTC but 2024 in UTC+8 */
    assert_int_equal(orderno_date_from_unix_ms(INT64_C(1704067200000) - 1, 0, &d), 0);
    assert_int_equal(d.year, 2023);
    assert_int_equal(d.month, 12);
    assert_int_equal(d.day, 31);
    assert_int_equal(orderno_date_from_unix_ms(INT64_C(1704067200000) - 1, 480, &d), 0);
    assert_int_equal(d.year, 2024);
    assert_int_equal(d.day, 1);
    /* a leap day, and 2100 is not a leap year */
    assert_int_equal(orderno_date_from_unix_ms(INT64_C(1709164800000), 0, &d), 0);
    assert_int_equal(d.month, 2);
    assert_int_equal(d.day, 29);
    assert_int_equal(orderno_date_from_unix_ms(INT64_C(4107542400000), 0, &d), 0); /* 2100-03-01 */
    assert_int_equal(d.month, 3);
    assert_int_equal(d.day, 1);
    assert_int_equal(orderno_date_from_unix_ms(INT64_C(4107542400000) - 1, 0, &d), 0);
    assert_int_equal(d.month, 2);
    assert_int_equal(d.day, 28);
    assert_int_equal(orderno_date_from_unix_ms(0, -60, &d), ORDERNO_EDATE); /* 1969 */
    assert_int_equal(orderno_date_from_unix_ms(0, 15 * 60, &d), ORDERNO_EDATE);
    assert_int_equal(orderno_date_from_unix_ms(-1, 0, &d), ORDERNO_EDATE);
}

/* ==== known answer ======================================================= */

static void test_known_answer(void **state)
{
    struct orderno *o = make_gen(ORDERNO_MIDDLE_DIGITS_DEFAULT);
    struct orderno_date d = {2024, 1, 2};
    char out[ORDERNO_LEN_MAX + 1];
    size_t n;
    /* from the Python transcription (docs/id.md, "Checking the keyed generators") */
    const char *want[3] = {"2024010207216601242", "2024010207337603457", "2024010207489295037"};
    for (uint64_t seq = 0; seq < 3; seq++) {
        assert_int_equal(orderno_make(o, &d, 7, seq, out, sizeof out, &n), 0);
        assert_int_equal(n, 19);
        assert_string_equal(out, want[seq]);
    }
    orderno_fini(o);
}

/* ==== round trip ========================================================= */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_round_trip_and_spread(void **state)
{
    struct orderno *o = make_gen(ORDERNO_MIDDLE_DIGITS_DEFAULT);
    struct orderno_date d = {2024, 6, 30}, d2;
    enum { N = 20000 };
    uint64_t *middles = malloc(sizeof(uint64_t) * N);
    assert_non_null(middles);
    char out[ORDERNO_LEN_MAX + 1];
    size_t n;
    uint32_t close = 0;
    uint64_t prev = 0;
    for (uint64_t seq = 0; seq < N; seq++) {
        uint64_t s = seq * 4999; /* spread over the domain too */
        assert_int_equal(orderno_make(o, &d, 42, s, out, sizeof out, &n), 0);
        assert_int_equal(orderno_check(out, n, ORDERNO_MIDDLE_DIGITS_DEFAULT), 0);
        unsigned biz;
        uint64_t back;
        assert_int_equal(orderno_open(o, out, n, &d2, &biz, &back), 0);
        assert_int_equal(back, s);
        assert_int_equal(biz, 42);
        assert_int_equal(d2.year, 2024);
        assert_int_equal(d2.month, 6);
        assert_int_equal(d2.day, 30);
        assert_memory_equal(out, "2024063042", 10);
        uint64_t mid = strtoull(out + 10, NULL, 10) / 10; /* drop the check digit */
        middles[seq] = mid;
        if (seq > 0) {
            uint64_t diff = mid > prev ? mid - prev : prev - mid;
            close += diff < 100000; /* within 0.1% of the domain */
        }
        prev = mid;
    }
    /* consecutive orders are unrelated: about 2 in 1000 pairs land that close by chance */
    assert_true(close < 100);
    qsort(middles, N, sizeof(uint64_t), cmp_u64);
    for (uint32_t i = 1; i < N; i++) {
        assert_true(middles[i] != middles[i - 1]);
    }
    free(middles);

    /* the same sequence on another day, type or key gives another middle */
    char a[ORDERNO_LEN_MAX + 1], b[ORDERNO_LEN_MAX + 1];
    struct orderno_date next_day = {2024, 7, 1};
    assert_int_equal(orderno_make(o, &d, 1, 5, a, sizeof a, &n), 0);
    assert_int_equal(orderno_make(o, &next_day, 1, 5, b, sizeof b, &n), 0);
    assert_true(memcmp(a + 10, b + 10, 8) != 0);
    assert_int_equal(orderno_make(o, &d, 2, 5, b, sizeof b, &n), 0);
    assert_true(memcmp(a + 10, b + 10, 8) != 0);
    orderno_fini(o);
    struct orderno other;
    uint8_t key2[32];
    memcpy(key2, KEY, sizeof key2);
    key2[0] ^= 1;
    assert_int_equal(orderno_init(&other, key2, sizeof key2, 8), 0);
    assert_int_equal(orderno_make(&other, &d, 1, 5, b, sizeof b, &n), 0);
    assert_true(memcmp(a + 10, b + 10, 8) != 0);
    orderno_fini(&other);

    /* the other end of the limits: 6 and 12 middle digits */
    for (unsigned digits = ORDERNO_MIDDLE_DIGITS_MIN; digits <= ORDERNO_MIDDLE_DIGITS_MAX;
         digits += ORDERNO_MIDDLE_DIGITS_MAX - ORDERNO_MIDDLE_DIGITS_MIN) {
        o = make_gen(digits);
        uint64_t top = 1;
        for (unsigned i = 0; i < digits; i++) {
            top *= 10;
        }
        unsigned biz;
        uint64_t back;
        assert_int_equal(orderno_make(o, &d, 99, top - 1, out, sizeof out, &n), 0);
        assert_int_equal(n, ORDERNO_LEN(digits));
        assert_int_equal(orderno_open(o, out, n, &d2, &biz, &back), 0);
        assert_int_equal(back, top - 1);
        assert_int_equal(orderno_make(o, &d, 99, top, out, sizeof out, &n), ORDERNO_ESEQ);
        orderno_fini(o);
    }
}

/* ==== typos ============================================================== */

static void test_luhn_catches_typos(void **state)
{
    struct orderno *o = make_gen(ORDERNO_MIDDLE_DIGITS_DEFAULT);
    struct orderno_date d = {2025, 3, 14};
    char out[ORDERNO_LEN_MAX + 1], t[ORDERNO_LEN_MAX + 1];
    size_t n;
    uint32_t swaps_caught = 0, swaps_missed = 0, blind_swaps = 0;
    for (uint64_t seq = 0; seq < 300; seq++) {
        assert_int_equal(orderno_make(o, &d, 3, seq, out, sizeof out, &n), 0);
        for (size_t i = 0; i < n; i++) {
            for (char c = '0'; c <= '9'; c++) {
                if (c == out[i]) {
                    continue;
                }
                memcpy(t, out, n + 1);
                t[i] = c;
                int rv = orderno_check(t, n, ORDERNO_MIDDLE_DIGITS_DEFAULT);
                if (rv != ORDERNO_ECHECK) {
                    fail_msg("%s -> %s accepted (%d)", out, t, rv);
                }
            }
        }
        for (size_t i = 0; i + 1 < n; i++) {
            if (out[i] == out[i + 1]) {
                continue;
            }
            memcpy(t, out, n + 1);
            t[i] = out[i + 1];
            t[i + 1] = out[i];
            int rv = orderno_check(t, n, ORDERNO_MIDDLE_DIGITS_DEFAULT);
            bool blind =
                (out[i] == '0' && out[i + 1] == '9') || (out[i] == '9' && out[i + 1] == '0');
            if (blind) {
                blind_swaps++;
                swaps_missed += rv == 0;
            } else {
                assert_int_equal(rv, ORDERNO_ECHECK); /* Luhn's guarantee */
                swaps_caught++;
            }
        }
    }
    assert_true(swaps_caught > 3000);
    assert_int_equal(swaps_missed, blind_swaps); /* Luhn's one blind spot, as documented */
    assert_true(blind_swaps > 0);
    orderno_fini(o);
}

/* ==== errors ============================================================= */

static void test_errors(void **state)
{
    struct orderno o;
    assert_int_equal(orderno_init(&o, KEY, 15, 8), ORDERNO_EKEY);
    assert_int_equal(orderno_init(&o, KEY, 8, 8), ORDERNO_EKEY);
    assert_int_equal(orderno_init(&o, KEY, sizeof KEY, 5), ORDERNO_EDIGITS);
    assert_int_equal(orderno_init(&o, KEY, sizeof KEY, 13), ORDERNO_EDIGITS);
    struct orderno *g = make_gen(8);
    char out[ORDERNO_LEN_MAX + 1];
    size_t n;
    struct orderno_date bad_dates[] = {{2023, 2, 29},  {2024, 13, 1}, {2024, 4, 31},
                                       {1969, 12, 31}, {2024, 0, 1},  {2024, 1, 0}};
    for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++) {
        assert_int_equal(orderno_make(g, &bad_dates[i], 1, 0, out, sizeof out, &n), ORDERNO_EDATE);
    }
    struct orderno_date d = {2024, 2, 29};
    assert_int_equal(orderno_make(g, &d, 100, 0, out, sizeof out, &n), ORDERNO_EBIZ);
    assert_int_equal(orderno_make(g, &d, 1, 0, out, 19, &n), ORDERNO_ESPACE);
    assert_int_equal(orderno_make(g, &d, 1, 0, out, 20, &n), 0);
    assert_int_equal(orderno_check(out, n - 1, 8), ORDERNO_ELENGTH);
    assert_int_equal(orderno_check(out, n, 7), ORDERNO_ELENGTH);
    assert_int_equal(orderno_check(out, n, 4), ORDERNO_EDIGITS);
    out[3] = 'x';
    assert_int_equal(orderno_check(out, n, 8), ORDERNO_ESYNTAX);
    /* a well-checked number on a date that does not exist: 2023-02-29 */
    char fake[] = "2023022901123456780";
    /* exactly one of the ten check digits passes Luhn, and then the date fails */
    uint32_t n_date = 0;
    for (char c = '0'; c <= '9'; c++) {
        fake[18] = c;
        int rv = orderno_check(fake, 19, 8);
        assert_true(rv == ORDERNO_ECHECK || rv == ORDERNO_EDATE);
        n_date += rv == ORDERNO_EDATE;
    }
    assert_int_equal(n_date, 1);
    assert_string_equal(orderno_strerror(ORDERNO_ECHECK),
                        "order number check digit does not match");
    orderno_fini(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_round_trip_and_spread),
        cmocka_unit_test(test_luhn_catches_typos),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
