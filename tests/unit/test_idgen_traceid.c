/* test_idgen_traceid.c -- unit tests for sm/idgen/traceid.
 *
 * Pins the SOFATracer example from the docs, both text forms round-tripping, the
 * sequence rules (1000..9999 per ms, running ahead instead of repeating, holding the
 * time when the clock goes back) with a uniqueness check over 300k ids from two
 * processes, W3C traceparent output and every parse rule (lowercase, version ff, zero
 * ids, longer future versions), and span ids: children, siblings, the fork counter and
 * each limit's error.
 *
 * Sections: generator | text | traceparent | spans.
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
#include "sm/idgen/traceid.h"

#define S(s) (s), strlen(s)

/* ==== generator ========================================================== */

static void test_sofa_example(void **state)
{
    struct traceid_gen g;
    traceid_gen_init(&g, 0x0ad1348f, 56696); /* 10.209.52.143 */
    struct traceid t;
    assert_int_equal(traceid_next(&g, INT64_C(1403169275002), &t), 0);
    assert_int_equal(traceid_next(&g, INT64_C(1403169275002), &t), 0);
    assert_int_equal(traceid_next(&g, INT64_C(1403169275002), &t), 0);
    assert_int_equal(traceid_next(&g, INT64_C(1403169275002), &t), 0);
    char sofa[TRACEID_SOFA_LEN_MAX + 1];
    assert_int_equal(traceid_format_sofa(&t, sofa), 30);
    assert_string_equal(sofa, "0ad1348f1403169275002100356696");
    char hex[TRACEID_HEX_LEN + 1];
    traceid_format_hex(&t, hex);
    assert_string_equal(hex, "0ad1348f0146b367fc7a03eb0000dd78");
    struct traceid u;
    assert_int_equal(traceid_parse_sofa(S(sofa), &u), 0);
    assert_memory_equal(&u, &t, sizeof t);
    assert_int_equal(traceid_parse_hex(S(hex), &u), 0);
    assert_memory_equal(&u, &t, sizeof t);
    struct traceid_parts p;
    traceid_parts(&t, &p);
    assert_int_equal(p.ipv4, 0x0ad1348f);
    assert_int_equal(p.unix_ms, INT64_C(1403169275002));
    assert_int_equal(p.sequence, 1003);
    assert_int_equal(p.pid, 56696);
}

static void test_sequence_rules(void **state)
{
    struct traceid_gen g;
    traceid_gen_init(&g, 1, 2);
    struct traceid t;
    struct traceid_parts p;
    for (uint32_t i = 0; i < 9000; i++) {
        assert_int_equal(traceid_next(&g, 5000, &t), 0);
        traceid_parts(&t, &p);
        assert_int_equal(p.unix_ms, 5000);
        assert_int_equal(p.sequence, 1000 + i);
    }
    /* the 9001st in one ms: the time runs one ms ahead, the sequence restarts */
    assert_int_equal(traceid_next(&g, 5000, &t), 0);
    traceid_parts(&t, &p);
    assert_int_equal(p.unix_ms, 5001);
    assert_int_equal(p.sequence, 1000);
    assert_int_equal(g.n_ahead, 1);
    /* a clock that went back keeps the last time */
    assert_int_equal(traceid_next(&g, 4000, &t), 0);
    traceid_parts(&t, &p);
    assert_int_equal(p.unix_ms, 5001);
    assert_int_equal(p.sequence, 1001);
    /* a new ms restarts at 1000 */
    assert_int_equal(traceid_next(&g, 6000, &t), 0);
    traceid_parts(&t, &p);
    assert_int_equal(p.sequence, 1000);
    assert_int_equal(traceid_next(&g, -1, &t), TRACEID_ECLOCK);
    assert_int_equal(traceid_next(&g, TRACEID_MS_MAX + 1, &t), TRACEID_ECLOCK);
}

static int cmp_tid(const void *a, const void *b)
{
    return memcmp(a, b, TRACEID_BYTES);
}

/* Two processes on one host, bursts beyond 9000/ms and clock steps back: no repeats. */
static void test_unique_across_bursts_and_rollbacks(void **state)
{
    enum { N = 300000 };
    struct traceid *all = malloc(sizeof(struct traceid) * N);
    assert_non_null(all);
    struct traceid_gen g[2];
    traceid_gen_init(&g[0], 0x7f000001, 100);
    traceid_gen_init(&g[1], 0x7f000001, 101);
    struct prng r;
    prng_seed(&r, 3);
    int64_t clock = INT64_C(1700000000000);
    for (uint32_t i = 0; i < N; i++) {
        if (prng_chance(&r, 50)) { /* ~10000 ids per generator per ms: bursts */
            clock += 1;
        }
        if (prng_chance(&r, 20)) {
            clock -= 50;
        }
        assert_int_equal(traceid_next(&g[i & 1], clock, &all[i]), 0);
    }
    qsort(all, N, sizeof(struct traceid), cmp_tid);
    for (uint32_t i = 1; i < N; i++) {
        assert_true(memcmp(&all[i - 1], &all[i], TRACEID_BYTES) != 0);
    }
    assert_true(g[0].n_ahead > 5);
    free(all);
}

/* ==== text =============================================================== */

static void test_text_errors(void **state)
{
    struct traceid t;
    assert_int_equal(traceid_parse_hex(S("0ad1348f014732bd517a03eb0000dd7"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_hex(S("0AD1348F014732BD517A03EB0000DD78"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_hex(S("00000000000000000000000000000000"), &t), TRACEID_EZERO);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f140316927500210035669x"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f1403169275002100305669"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f14031692750021003566960"), &t), 0);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f140316927500210030"), &t), 0); /* pid 0 */
    assert_int_equal(traceid_parse_sofa(S("0ad1348f1403169275002100300"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f1403169275002"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f1403169275002099956696"), &t), TRACEID_ESYNTAX);
    assert_int_equal(traceid_parse_sofa(S("0ad1348f140316927500210034294967296"), &t),
                     TRACEID_ESYNTAX); /* pid 2^32 */
}

/* ==== traceparent ======================================================== */

static void test_traceparent(void **state)
{
    struct traceid t;
    assert_int_equal(traceid_parse_hex(S("4bf92f3577b34da6a3ce929d0e0e4736"), &t), 0);
    char out[TRACEPARENT_LEN + 1];
    assert_int_equal(traceparent_format(&t, UINT64_C(0x00f067aa0ba902b7), 1, out), 0);
    /* the W3C specification's example */
    assert_string_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    struct traceparent tp;
    assert_int_equal(traceparent_parse(S(out), &tp), 0);
    assert_int_equal(tp.version, 0);
    assert_memory_equal(&tp.trace_id, &t, sizeof t);
    assert_int_equal(tp.parent_id, UINT64_C(0x00f067aa0ba902b7));
    assert_int_equal(tp.flags, TRACEPARENT_FLAG_SAMPLED);
    assert_int_equal(traceparent_format(&t, 0, 1, out), TRACEID_EZERO);

    struct {
        const char *s;
        int want;
    } cases[] = {
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 0},
        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", TRACEID_ESYNTAX},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", TRACEID_ESYNTAX},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", TRACEID_ESYNTAX},
        {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TRACEID_ESYNTAX},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", TRACEID_ESYNTAX},
        {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TRACEID_EVERSION},
        {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", TRACEID_EZERO},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", TRACEID_EZERO},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future", 0},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", TRACEID_ESYNTAX},
        {"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rv = traceparent_parse(S(cases[i].s), &tp);
        if (rv != cases[i].want) {
            fail_msg("%s: got %d want %d", cases[i].s, rv, cases[i].want);
        }
    }
}

/* ==== spans ============================================================== */

static void test_span_ids(void **state)
{
    char out[TRACEID_SPAN_LEN_MAX + 1];
    size_t n;
    uint32_t depth;
    /* the notes' example: A calls B, C, D; C calls E, F */
    struct traceid_span a, b, c, d, e, f;
    traceid_span_root(&a);
    assert_string_equal(a.id, "0");
    assert_int_equal(traceid_span_fork(&a, &b), 0);
    assert_int_equal(traceid_span_fork(&a, &c), 0);
    assert_int_equal(traceid_span_fork(&a, &d), 0);
    assert_string_equal(b.id, "0.1");
    assert_string_equal(c.id, "0.2");
    assert_string_equal(d.id, "0.3");
    struct traceid_span c_remote; /* C receives "0.2" over RPC */
    assert_int_equal(traceid_span_from(&c_remote, S("0.2")), 0);
    assert_int_equal(traceid_span_fork(&c_remote, &e), 0);
    assert_int_equal(traceid_span_fork(&c_remote, &f), 0);
    assert_string_equal(e.id, "0.2.1");
    assert_string_equal(f.id, "0.2.2");

    assert_int_equal(traceid_span_next_sibling(S("0.2.1"), out, sizeof out, &n), 0);
    assert_string_equal(out, "0.2.2");
    assert_int_equal(traceid_span_next_sibling(S("0.9"), out, sizeof out, &n), 0);
    assert_string_equal(out, "0.10");
    assert_int_equal(n, 4);
    assert_int_equal(traceid_span_next_sibling(S("0"), out, sizeof out, &n), TRACEID_EROOT);
    assert_int_equal(traceid_span_child(S("0.2"), 7, out, sizeof out, &n), 0);
    assert_string_equal(out, "0.2.7");
    assert_int_equal(traceid_span_child(S("0.2"), 0, out, sizeof out, &n), TRACEID_ESYNTAX);
    assert_int_equal(traceid_span_child(S("0.2"), 1, out, 5, &n), TRACEID_ESPACE);
    assert_int_equal(traceid_span_check(S("0.2.1"), &depth), 0);
    assert_int_equal(depth, 3);

    const char *bad[] = {"", "1", "00", "0.", "0..1", "0.01", "0.0", "0.1.", ".1", "0.a", "0 .1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (traceid_span_check(S(bad[i]), NULL) != TRACEID_ESYNTAX) {
            fail_msg("span '%s' accepted", bad[i]);
        }
    }
    /* limits, each with its own error */
    assert_int_equal(traceid_span_check(S("0.999999"), NULL), 0);
    assert_int_equal(traceid_span_check(S("0.1000000"), NULL), TRACEID_EINDEX);
    assert_int_equal(traceid_span_next_sibling(S("0.999999"), out, sizeof out, &n), TRACEID_EINDEX);
    char deep[TRACEID_SPAN_LEN_MAX + 8] = "0";
    size_t len = 1;
    for (uint32_t i = 1; i < TRACEID_SPAN_DEPTH_MAX; i++) {
        assert_int_equal(traceid_span_child(deep, len, 1, deep, sizeof deep, &len), 0);
    }
    assert_int_equal(traceid_span_check(deep, len, &depth), 0);
    assert_int_equal(depth, TRACEID_SPAN_DEPTH_MAX);
    assert_int_equal(traceid_span_child(deep, len, 1, out, sizeof out, &n), TRACEID_EDEPTH);
    strcpy(deep + len, ".1");
    assert_int_equal(traceid_span_check(deep, len + 2, NULL), TRACEID_EDEPTH);
    /* length: 19 components of 6 digits pass the depth limit but not the length */
    char wide[256] = "0";
    len = 1;
    for (int i = 0; i < 18; i++) {
        len += (size_t)sprintf(wide + len, ".999999");
    }
    assert_int_equal(len, 127);
    assert_int_equal(traceid_span_check(wide, len, NULL), 0);
    assert_int_equal(traceid_span_child(wide, len, 999999, out, sizeof out, &n), TRACEID_ESPANLEN);
    len += (size_t)sprintf(wide + len, ".999999");
    assert_int_equal(traceid_span_check(wide, len, NULL), TRACEID_ESPANLEN);

    /* the W3C parent-id of a span: stable, distinct per span, never 0 */
    struct traceid t;
    struct traceid_gen g;
    traceid_gen_init(&g, 1, 1);
    assert_int_equal(traceid_next(&g, 1000, &t), 0);
    uint64_t x = traceid_span_w3c_id(&t, S("0.2.1"));
    assert_int_equal(x, traceid_span_w3c_id(&t, S("0.2.1")));
    assert_true(x != traceid_span_w3c_id(&t, S("0.2.2")));
    assert_true(x != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sofa_example),
        cmocka_unit_test(test_sequence_rules),
        cmocka_unit_test(test_unique_across_bursts_and_rollbacks),
        cmocka_unit_test(test_text_errors),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_span_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
