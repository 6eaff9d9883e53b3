/* test_crc32c.c -- unit tests for base/crc32c: published vectors (RFC 3720 B.4),
 * chaining, and agreement with a bit-at-a-time reference at every length, offset and
 * split point, which exercises both the 8-byte loop and the byte tail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/crc32c.h"

static uint32_t crc32c_ref(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0);
        }
    }
    return ~crc;
}

static void test_check_value(void **state)
{
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283);
    assert_int_equal(crc32c(0, NULL, 0), 0);
    assert_int_equal(crc32c(0xE3069283, NULL, 0), 0xE3069283);
}

static void test_rfc3720_vectors(void **state)
{
    unsigned char buf[32];

    memset(buf, 0x00, sizeof buf);
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x8A9136AA);
    memset(buf, 0xFF, sizeof buf);
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x62A8AB43);
    for (int i = 0; i < 32; i++) {
        buf[i] = (unsigned char)i;
    }
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x46DD794E);
    for (int i = 0; i < 32; i++) {
        buf[i] = (unsigned char)(31 - i);
    }
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x113FDB5C);
}

static void test_matches_reference_all_offsets(void **state)
{
    unsigned char buf[96];
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] = (unsigned char)(i * 131u + 7u);
    }
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; off + len <= sizeof buf; len++) {
            assert_int_equal(crc32c(0, buf + off, len), crc32c_ref(0, buf + off, len));
            assert_int_equal(crc32c_sw(0, buf + off, len), crc32c_ref(0, buf + off, len));
            assert_int_equal(crc32c_sw(0x12345678, buf + off, len),
                             crc32c(0x12345678, buf + off, len)); /* both paths, chained */
        }
    }
}

static void test_chaining(void **state)
{
    unsigned char buf[70];
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] = (unsigned char)(i ^ 0x5a);
    }
    const uint32_t whole = crc32c(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        const uint32_t head = crc32c(0, buf, cut);
        assert_int_equal(crc32c(head, buf + cut, sizeof buf - cut), whole);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_value),
        cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_matches_reference_all_offsets),
        cmocka_unit_test(test_chaining),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
