/* test_hash.c -- unit tests for base/hash: FNV-1a 64 published vectors and chaining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/hash.h"

static uint64_t fnv_str(const char *s)
{
    return hash_fnv1a64(HASH_FNV_INIT, s, strlen(s));
}

static void test_vectors(void **state)
{
    assert_int_equal(fnv_str(""), 0xcbf29ce484222325);
    assert_int_equal(fnv_str("a"), 0xaf63dc4c8601ec8c);
    assert_int_equal(fnv_str("foobar"), 0x85944171f73967e8);
    assert_int_equal(hash_fnv1a64(HASH_FNV_INIT, NULL, 0), HASH_FNV_INIT);
}

static void test_chaining(void **state)
{
    const uint64_t head = fnv_str("foo");
    assert_int_equal(hash_fnv1a64(head, "bar", 3), fnv_str("foobar"));
}

static void test_sensitive_to_order(void **state)
{
    assert_int_not_equal(fnv_str("ab"), fnv_str("ba"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_chaining),
        cmocka_unit_test(test_sensitive_to_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
