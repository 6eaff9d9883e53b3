/* test_idgen_redeem.c -- unit tests for sm/idgen/redeem.
 *
 * Pins known answers (from an independent Python transcription of redeem.h), the
 * alphabet and grouping, input normalisation, and the acceptance checks: a
 * million codes without a collision; every single-character change and every swap of
 * neighbours rejected; 100k random codes rejected; a code of another campaign (or
 * under another key) rejected.
 *
 * Sections: known answers | input | collisions | typos and forgeries | campaigns.
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
#include "sm/idgen/redeem.h"

#define S(s) (s), strlen(s)

static const uint8_t KEY[32] = "conclave-redeem-campaign-key-001";

static void open_campaign(struct redeem *r, uint32_t campaign)
{
    assert_int_equal(redeem_init(r, KEY, sizeof KEY, campaign), 0);
}

/* ==== known answers ====================================================== */

static void test_known_answers(void **state)
{
    struct redeem r;
    char code[REDEEM_CODE_CHARS + 1], grouped[REDEEM_GROUPED_CHARS + 1];
    uint32_t serial;
    open_campaign(&r, 1);
    assert_int_equal(redeem_make(&r, 0, code), 0);
    assert_string_equal(code, "22232S5U43BKM8BM");
    assert_int_equal(redeem_make(&r, 1, code), 0);
    assert_string_equal(code, "2223QP8FQHEML8RG");
    redeem_group(code, grouped);
    assert_string_equal(grouped, "2223-QP8F-QHEM-L8RG");
    assert_int_equal(redeem_verify(&r, S(grouped), &serial), 0);
    assert_int_equal(serial, 1);
    redeem_fini(&r);
    open_campaign(&r, 12345);
    assert_int_equal(redeem_make(&r, 999999, code), 0);
    assert_string_equal(code, "2E3T9HWLAHYPS2SK");
    uint32_t campaign;
    assert_int_equal(redeem_campaign_of(S(code), &campaign), 0);
    assert_int_equal(campaign, 12345);
    assert_int_equal(redeem_make(&r, REDEEM_SERIAL_MAX, code), 0);
    assert_int_equal(redeem_verify(&r, S(code), &serial), 0);
    assert_int_equal(serial, REDEEM_SERIAL_MAX);
    assert_int_equal(redeem_make(&r, REDEEM_SERIAL_MAX + 1, code), REDEEM_ESERIAL);
    redeem_fini(&r);

    assert_int_equal(redeem_init(&r, KEY, 15, 1), REDEEM_EKEY);
    assert_int_equal(redeem_init(&r, KEY, sizeof KEY, REDEEM_CAMPAIGN_MAX + 1), REDEEM_ECAMPAIGN);
    assert_int_equal(redeem_init(&r, KEY, sizeof KEY, REDEEM_CAMPAIGN_MAX), 0);
    redeem_fini(&r);
    assert_string_equal(redeem_strerror(REDEEM_EFORGED), "invalid code");
}

/* ==== input ============================================================== */

static void test_input_normalisation(void **state)
{
    struct redeem r;
    open_campaign(&r, 7);
    char code[REDEEM_CODE_CHARS + 1];
    uint32_t serial;
    assert_int_equal(redeem_make(&r, 4242, code), 0);
    for (size_t i = 0; i < REDEEM_CODE_CHARS; i++) {
        assert_non_null(strchr(REDEEM_ALPHABET, code[i]));
    }
    char lower[REDEEM_CODE_CHARS + 1];
    for (size_t i = 0; i <= REDEEM_CODE_CHARS; i++) {
        lower[i] = (char)((code[i] >= 'A' && code[i] <= 'Z') ? code[i] - 'A' + 'a' : code[i]);
    }
    assert_int_equal(redeem_verify(&r, S(lower), &serial), 0);
    assert_int_equal(serial, 4242);
    char spaced[40];
    memcpy(spaced, " ", 1);
    memcpy(spaced + 1, code, 8);
    memcpy(spaced + 9, " - ", 3);
    memcpy(spaced + 12, code + 8, 8);
    spaced[20] = '\0';
    assert_int_equal(redeem_verify(&r, S(spaced), &serial), 0);

    char t[REDEEM_CODE_CHARS + 2];
    memcpy(t, code, sizeof code);
    const char ambiguous[] = {'0', 'O', '1', 'I', 'o', 'i', '*'};
    for (size_t i = 0; i < sizeof ambiguous; i++) {
        t[5] = ambiguous[i];
        assert_int_equal(redeem_verify(&r, t, REDEEM_CODE_CHARS, &serial), REDEEM_ECHAR);
    }
    assert_int_equal(redeem_verify(&r, code, REDEEM_CODE_CHARS - 1, &serial), REDEEM_ELENGTH);
    memcpy(t, code, REDEEM_CODE_CHARS);
    t[REDEEM_CODE_CHARS] = 'A';
    assert_int_equal(redeem_verify(&r, t, REDEEM_CODE_CHARS + 1, &serial), REDEEM_ELENGTH);
    char longest[REDEEM_INPUT_CHARS_MAX + 1];
    memset(longest, '-', sizeof longest);
    memcpy(longest, code, REDEEM_CODE_CHARS);
    assert_int_equal(redeem_verify(&r, longest, REDEEM_INPUT_CHARS_MAX, &serial), 0);
    assert_int_equal(redeem_verify(&r, longest, REDEEM_INPUT_CHARS_MAX + 1, &serial),
                     REDEEM_ELENGTH);
    redeem_fini(&r);
}

/* ==== collisions ========================================================= */

static int cmp_code(const void *a, const void *b)
{
    return memcmp(a, b, REDEEM_CODE_CHARS);
}

static void test_million_codes_no_collision(void **state)
{
    enum { N = 1000000 };
    char(*codes)[REDEEM_CODE_CHARS] = malloc((size_t)N * REDEEM_CODE_CHARS);
    assert_non_null(codes);
    struct redeem r;
    open_campaign(&r, 99);
    char code[REDEEM_CODE_CHARS + 1];
    for (uint32_t s = 0; s < N; s++) {
        assert_int_equal(redeem_make(&r, s, code), 0);
        memcpy(codes[s], code, REDEEM_CODE_CHARS);
    }
    qsort(codes, N, REDEEM_CODE_CHARS, cmp_code);
    for (uint32_t i = 1; i < N; i++) {
        assert_true(memcmp(codes[i - 1], codes[i], REDEEM_CODE_CHARS) != 0);
    }
    free(codes);
    redeem_fini(&r);
}

/* ==== typos and forgeries ================================================ */

static void test_typos_and_random_codes_rejected(void **state)
{
    struct redeem r;
    open_campaign(&r, 5);
    char code[REDEEM_CODE_CHARS + 1], t[REDEEM_CODE_CHARS + 1];
    uint32_t serial;
    uint32_t n_flips = 0, n_swaps = 0;
    for (uint32_t s = 0; s < 200; s++) {
        assert_int_equal(redeem_make(&r, s * 80021, code), 0);
        assert_int_equal(redeem_verify(&r, S(code), &serial), 0);
        for (unsigned i = 0; i < REDEEM_CODE_CHARS; i++) {
            for (unsigned k = 0; k < 32; k++) {
                char c = REDEEM_ALPHABET[k];
                if (c == code[i]) {
                    continue;
                }
                memcpy(t, code, sizeof code);
                t[i] = c;
                int rv = redeem_verify(&r, S(t), &serial);
                /* the first four characters are the campaign */
                int want = i < 4 ? REDEEM_ECAMPAIGN : REDEEM_EFORGED;
                if (rv != want) {
                    fail_msg("%s -> %s: %d", code, t, rv);
                }
                n_flips++;
            }
        }
        for (unsigned i = 0; i + 1 < REDEEM_CODE_CHARS; i++) {
            if (code[i] == code[i + 1]) {
                continue;
            }
            memcpy(t, code, sizeof code);
            t[i] = code[i + 1];
            t[i + 1] = code[i];
            int rv = redeem_verify(&r, S(t), &serial);
            assert_true(rv == REDEEM_EFORGED || rv == REDEEM_ECAMPAIGN);
            n_swaps++;
        }
    }
    assert_true(n_flips == 200u * 16u * 31u);
    assert_true(n_swaps > 2500);

    /* 100k random codes: with this campaign's prefix (the hard case) and fully random */
    struct prng p;
    prng_seed(&p, 11);
    for (uint32_t i = 0; i < 100000; i++) {
        for (unsigned k = 0; k < REDEEM_CODE_CHARS; k++) {
            t[k] = REDEEM_ALPHABET[prng_below(&p, 32)];
        }
        t[REDEEM_CODE_CHARS] = '\0';
        int rv = redeem_verify(&r, S(t), &serial);
        assert_true(rv == REDEEM_ECAMPAIGN || rv == REDEEM_EFORGED);
        memcpy(t, code, 4);
        assert_int_equal(redeem_verify(&r, S(t), &serial), REDEEM_EFORGED);
    }
    redeem_fini(&r);
}

/* ==== campaigns ========================================================== */

static void test_other_campaigns_and_keys(void **state)
{
    struct redeem a, b, a_other_key;
    open_campaign(&a, 1);
    open_campaign(&b, 2);
    uint8_t key2[32];
    memcpy(key2, KEY, sizeof key2);
    key2[31] ^= 0x80;
    assert_int_equal(redeem_init(&a_other_key, key2, sizeof key2, 1), 0);
    char code[REDEEM_CODE_CHARS + 1], forged[REDEEM_CODE_CHARS + 1];
    uint32_t serial;
    for (uint32_t s = 0; s < 1000; s++) {
        assert_int_equal(redeem_make(&a, s, code), 0);
        assert_int_equal(redeem_verify(&b, S(code), &serial), REDEEM_ECAMPAIGN);
        assert_int_equal(redeem_verify(&a_other_key, S(code), &serial), REDEEM_EFORGED);
        /* relabel the campaign prefix as campaign 2: campaign 2's key rejects it */
        assert_int_equal(redeem_make(&b, s, forged), 0);
        memcpy(forged + 4, code + 4, REDEEM_CODE_CHARS - 4);
        assert_int_equal(redeem_verify(&b, S(forged), &serial), REDEEM_EFORGED);
    }
    redeem_fini(&a);
    redeem_fini(&b);
    redeem_fini(&a_other_key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_input_normalisation),
        cmocka_unit_test(test_million_codes_no_collision),
        cmocka_unit_test(test_typos_and_random_codes_rejected),
        cmocka_unit_test(test_other_campaigns_and_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
