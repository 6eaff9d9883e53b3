/* test_idgen_shorturl.c -- unit tests for sm/idgen/shorturl.
 *
 * Pins known answers (from an independent Python transcription of shorturl.h and
 * feistel.h), the length tiers and their boundaries, round trips, that 100k
 * consecutive ids give 100k distinct codes which do not resemble their neighbours,
 * that the key matters, and each error.
 *
 * Sections: known answers | tiers | collisions and spread | errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/prng.h"
#include "sm/idgen/shorturl.h"

#define S(s)  (s), strlen(s)
#define P62_6 UINT64_C(56800235584)
#define P62_7 UINT64_C(3521614606208)

static const uint8_t KEY[32] = "conclave-shorturl-test-key-32byt";

static void open_s(struct shorturl *s, unsigned len_min)
{
    assert_int_equal(shorturl_init(s, KEY, sizeof KEY, len_min), 0);
}

static void round_trip(struct shorturl *s, uint64_t id, size_t want_len)
{
    char code[SHORTURL_LEN_MAX + 1];
    size_t n;
    uint64_t back;
    assert_int_equal(shorturl_encode(s, id, code, &n), 0);
    assert_int_equal(n, want_len);
    assert_int_equal(strlen(code), want_len);
    assert_int_equal(shorturl_decode(s, code, n, &back), 0);
    assert_int_equal(back, id);
}

/* ==== known answers ====================================================== */

static void test_known_answers(void **state)
{
    struct shorturl s;
    open_s(&s, SHORTURL_LEN_MIN_DEFAULT);
    const struct {
        uint64_t id;
        const char *code;
    } ka[] = {
        {0, "r2gosP"},
        {1, "xkv5EK"},
        {2, "3Lfviz"},
        {P62_6, "vvO6xO8"},
        {P62_6 + P62_7, "tzpREqrk"},
    };
    char code[SHORTURL_LEN_MAX + 1];
    size_t n;
    for (size_t i = 0; i < sizeof ka / sizeof ka[0]; i++) {
        assert_int_equal(shorturl_encode(&s, ka[i].id, code, &n), 0);
        assert_string_equal(code, ka[i].code);
        uint64_t id;
        assert_int_equal(shorturl_decode(&s, S(ka[i].code), &id), 0);
        assert_int_equal(id, ka[i].id);
    }
    shorturl_fini(&s);
}

/* ==== tiers ============================================================== */

static void test_tiers(void **state)
{
    struct shorturl s;
    open_s(&s, 6);
    round_trip(&s, 0, 6);
    round_trip(&s, P62_6 - 1, 6);
    round_trip(&s, P62_6, 7);
    round_trip(&s, P62_6 + P62_7 - 1, 7);
    round_trip(&s, P62_6 + P62_7, 8);
    uint64_t max = shorturl_id_max(&s);
    round_trip(&s, max, SHORTURL_LEN_MAX);
    char code[SHORTURL_LEN_MAX + 1];
    size_t n;
    assert_int_equal(shorturl_encode(&s, max + 1, code, &n), SHORTURL_ERANGE);
    /* every code of a length decodes, and back: the all-'z' and all-'0' codes */
    uint64_t id;
    for (unsigned len = 6; len <= SHORTURL_LEN_MAX; len++) {
        char z[SHORTURL_LEN_MAX + 1], o[SHORTURL_LEN_MAX + 1];
        memset(z, 'z', len);
        memset(o, '0', len);
        z[len] = o[len] = '\0';
        assert_int_equal(shorturl_decode(&s, z, len, &id), 0);
        assert_int_equal(shorturl_encode(&s, id, code, &n), 0);
        assert_string_equal(code, z);
        assert_int_equal(shorturl_decode(&s, o, len, &id), 0);
        assert_int_equal(shorturl_encode(&s, id, code, &n), 0);
        assert_string_equal(code, o);
    }
    shorturl_fini(&s);
    /* the shortest configuration */
    open_s(&s, SHORTURL_LEN_MIN_MIN);
    round_trip(&s, 0, 4);
    round_trip(&s, 14776335, 4); /* 62^4 - 1 */
    round_trip(&s, 14776336, 5);
    shorturl_fini(&s);
    /* random ids over the whole range */
    open_s(&s, 6);
    struct prng r;
    prng_seed(&r, 62);
    for (int i = 0; i < 5000; i++) {
        uint64_t x = prng_below(&r, shorturl_id_max(&s) + 1);
        char c[SHORTURL_LEN_MAX + 1];
        assert_int_equal(shorturl_encode(&s, x, c, &n), 0);
        assert_int_equal(shorturl_decode(&s, c, n, &id), 0);
        assert_int_equal(id, x);
    }
    shorturl_fini(&s);
}

/* ==== collisions and spread ============================================== */

static int cmp_code(const void *a, const void *b)
{
    return memcmp(a, b, 6);
}

static void test_consecutive_ids_distinct_and_unrelated(void **state)
{
    enum { N = 100000 };
    char(*codes)[6] = malloc((size_t)N * 6);
    assert_non_null(codes);
    struct shorturl s;
    open_s(&s, 6);
    char code[SHORTURL_LEN_MAX + 1], prev[SHORTURL_LEN_MAX + 1] = "";
    size_t n;
    uint32_t near = 0;
    uint64_t first = 1000000; /* ids from a segment */
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(shorturl_encode(&s, first + i, code, &n), 0);
        assert_int_equal(n, 6);
        memcpy(codes[i], code, 6);
        if (i > 0) {
            unsigned same = 0;
            for (int k = 0; k < 6; k++) {
                same += code[k] == prev[k];
            }
            near += same >= 4; /* by chance: about 15 * 61^2 / 62^6 per pair */
        }
        memcpy(prev, code, sizeof code);
    }
    assert_true(near < 5);
    qsort(codes, N, 6, cmp_code);
    for (uint32_t i = 1; i < N; i++) {
        assert_true(memcmp(codes[i - 1], codes[i], 6) != 0);
    }
    free(codes);

    /* another key, another mapping */
    struct shorturl t;
    uint8_t key2[32];
    memcpy(key2, KEY, sizeof key2);
    key2[3] ^= 1;
    assert_int_equal(shorturl_init(&t, key2, sizeof key2, 6), 0);
    char a[SHORTURL_LEN_MAX + 1], b[SHORTURL_LEN_MAX + 1];
    uint32_t same = 0;
    for (uint64_t id = 0; id < 1000; id++) {
        assert_int_equal(shorturl_encode(&s, id, a, &n), 0);
        assert_int_equal(shorturl_encode(&t, id, b, &n), 0);
        same += strcmp(a, b) == 0;
    }
    assert_int_equal(same, 0);
    shorturl_fini(&s);
    shorturl_fini(&t);
}

/* ==== errors ============================================================= */

static void test_errors(void **state)
{
    struct shorturl s;
    assert_int_equal(shorturl_init(&s, KEY, 10, 6), SHORTURL_EKEY);
    assert_int_equal(shorturl_init(&s, KEY, sizeof KEY, 3), SHORTURL_ECONFIG);
    assert_int_equal(shorturl_init(&s, KEY, sizeof KEY, 11), SHORTURL_ECONFIG);
    open_s(&s, 6);
    uint64_t id;
    assert_int_equal(shorturl_decode(&s, S("abcde"), &id), SHORTURL_ELENGTH);
    assert_int_equal(shorturl_decode(&s, S("abcdefghijk"), &id), SHORTURL_ELENGTH);
    assert_int_equal(shorturl_decode(&s, S("abc-ef"), &id), SHORTURL_ECHAR);
    assert_int_equal(shorturl_decode(&s, S("abc ef"), &id), SHORTURL_ECHAR);
    assert_string_equal(shorturl_strerror(SHORTURL_ECHAR), "code character outside 0-9A-Za-z");
    shorturl_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_tiers),
        cmocka_unit_test(test_consecutive_ids_distinct_and_unrelated),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
