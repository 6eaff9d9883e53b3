/* test_idgen_idbuf.c -- unit tests and load simulations for sm/idgen/idbuf.
 *
 * Scenario tests pin the protocol (cold start, fetch trigger, spare promotion, stale
 * and bad replies, retry after failure, batch take) and the step computed from the
 * rate. The simulations run a buffer against the real idseg state machine with a fetch
 * latency: steady load, then a 10x burst, then steady again. The adaptive buffer never
 * finds both segments empty; the same buffer with a fixed Leaf-like step (2000, fetch
 * at 10%) does -- the negative control that shows the check can fail. A multi-node run
 * with restarts checks that no ID is ever served twice.
 *
 * Sections: helpers | protocol | step | burst simulation | restarts.
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
#include "sm/idgen/idbuf.h"
#include "sm/idgen/idseg.h"

/* ==== helpers ============================================================ */

static struct idseg *seg_store(const char *tag)
{
    struct idseg *s;
    assert_int_equal(idseg_new(&s), 0);
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    struct idseg_result res;
    assert_int_equal(idseg_encode_create(tag, strlen(tag), 1, 1000, 0, buf, sizeof buf, &n), 0);
    assert_int_equal(idseg_apply(s, buf, n, &res), 0);
    return s;
}

static void seg_alloc(struct idseg *s, const char *tag, int64_t count, int64_t *start, int64_t *end)
{
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    struct idseg_result res;
    assert_int_equal(idseg_encode_alloc(tag, strlen(tag), count, 0, buf, sizeof buf, &n), 0);
    assert_int_equal(idseg_apply(s, buf, n, &res), 0);
    *start = res.start;
    *end = res.end;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ==== protocol =========================================================== */

static void test_config_bounds(void **state)
{
    struct idbuf b;
    struct idbuf_config c;
    idbuf_config_default(&c);
    assert_int_equal(idbuf_init(&b, &c, 0), 0);
    struct idbuf_config bad[8];
    for (int i = 0; i < 8; i++) {
        bad[i] = c;
    }
    bad[0].step_min = 0;
    bad[1].step_max = IDSEG_COUNT_MAX + 1;
    bad[2].step_initial = c.step_max + 1;
    bad[3].step_min = c.step_max + 1;
    bad[4].segment_ms = 0;
    bad[5].fetch_pct = 0;
    bad[6].fetch_pct = IDBUF_FETCH_PCT_MAX + 1;
    bad[7].retry_ms = -1;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(idbuf_init(&b, &bad[i], 0), IDBUF_ECONFIG);
    }
    assert_int_equal(idbuf_init(&b, NULL, 0), IDBUF_ECONFIG);
}

static void test_protocol(void **state)
{
    struct idbuf b;
    struct idbuf_config c;
    idbuf_config_default(&c);
    c.step_initial = 1000;
    assert_int_equal(idbuf_init(&b, &c, 0), 0);
    int64_t id, count, start, n;
    /* cold: nothing held, a fetch is due at once for the initial step */
    assert_true(idbuf_fetch_due(&b, 0, &count));
    assert_int_equal(count, 1000);
    assert_int_equal(idbuf_next(&b, 0, &id), IDBUF_EEMPTY);
    assert_int_equal(b.n_empty_cold, 1);
    assert_false(idbuf_fetch_due(&b, 0, &count)); /* one in flight */
    assert_int_equal(idbuf_fetch_done(&b, 5, 1, 1001), 0);
    assert_int_equal(idbuf_fetch_done(&b, 5, 1, 1001), IDBUF_ESTATE); /* stale duplicate */
    assert_int_equal(idbuf_remaining(&b), 1000);
    /* 199 served: below 20% */
    for (int64_t i = 1; i <= 199; i++) {
        assert_int_equal(idbuf_next(&b, 10, &id), 0);
        assert_int_equal(id, i);
    }
    assert_false(idbuf_fetch_due(&b, 10, &count));
    assert_int_equal(idbuf_next(&b, 10, &id), 0);
    assert_true(idbuf_fetch_due(&b, 10, &count)); /* 200 of 1000 used */
    /* it fails; no retry before retry_ms */
    assert_int_equal(idbuf_fetch_failed(&b, 30), 0);
    assert_int_equal(idbuf_fetch_failed(&b, 30), IDBUF_ESTATE);
    assert_false(idbuf_fetch_due(&b, 30 + c.retry_ms - 1, &count));
    assert_true(idbuf_fetch_due(&b, 30 + c.retry_ms, &count));
    /* a bad range ends the fetch too */
    assert_int_equal(idbuf_fetch_done(&b, 140, 0, 10), IDBUF_ERANGE);
    assert_true(idbuf_fetch_due(&b, 140 + c.retry_ms, &count));
    assert_int_equal(idbuf_fetch_done(&b, 250, 5000, 5000 + count), 0);
    assert_false(idbuf_fetch_due(&b, 250, &count)); /* a spare is held */
    /* batch: the rest of cur (800), then the spare takes over without a gap in service */
    assert_int_equal(idbuf_take(&b, 260, 10000, &start, &n), 0);
    assert_int_equal(start, 201);
    assert_int_equal(n, 800);
    assert_int_equal(idbuf_take(&b, 260, 3, &start, &n), 0);
    assert_int_equal(start, 5000);
    assert_int_equal(n, 3);
    assert_int_equal(b.n_empty_dry, 0);
    assert_int_equal(b.n_served, 1003);
    assert_string_equal(idbuf_strerror(IDBUF_EEMPTY),
                        "both segments are empty: a fetch is pending");
}

/* ==== step =============================================================== */

static void test_step_follows_rate(void **state)
{
    struct idbuf b;
    struct idbuf_config c;
    idbuf_config_default(&c);
    assert_int_equal(idbuf_init(&b, &c, 0), 0);
    int64_t id, count;
    assert_true(idbuf_fetch_due(&b, 0, &count));
    assert_int_equal(idbuf_fetch_done(&b, 0, 1, 100000001), 0);
    /* 10 IDs per ms for 3 s */
    for (int64_t t = 0; t < 3000; t++) {
        for (int k = 0; k < 10; k++) {
            assert_int_equal(idbuf_next(&b, t, &id), 0);
        }
    }
    double r = idbuf_rate_per_ms(&b, 2999);
    assert_true(r > 9.5 && r < 10.5);
    /* force a fetch decision: the step is the rate times 15 s */
    b.cur.next = b.cur.start + (b.cur.end - b.cur.start) / 2;
    assert_true(idbuf_fetch_due(&b, 2999, &count));
    assert_true(count > 142000 && count < 158000);
    /* after a minute idle the peak has decayed (half-life 15 s: 1/16) and the step
     * shrinks, but never below step_min */
    assert_int_equal(idbuf_fetch_done(&b, 3000, 200000000, 200000000 + count), 0);
    assert_int_equal(idbuf_next(&b, 63000, &id), 0);
    r = idbuf_rate_per_ms(&b, 63000);
    assert_true(r > 0.4 && r < 0.9);
    struct idbuf z;
    assert_int_equal(idbuf_init(&z, &c, 0), 0);
    assert_true(idbuf_fetch_due(&z, 0, &count));
    assert_int_equal(idbuf_fetch_done(&z, 0, 1, 2), 0);
    assert_int_equal(idbuf_next(&z, 1, &id), 0);
    assert_true(idbuf_fetch_due(&z, 1000000, &count));
    assert_int_equal(count, c.step_min);
}

/* ==== burst simulation =================================================== */

#define WARMUP_MS 10000 /* the first segment takes a fetch latency; steady load from here */

struct load_result {
    uint64_t dry;        /* requests that found both segments empty after warm-up */
    uint64_t dry_warmup; /* ... during the warm-up (cold start, initial step too small) */
    uint64_t served;
    uint64_t fetches;
    int64_t max_step;
};

/* Steady `base` IDs/ms for 60 s with a 10x burst for 10 s from burst_ms; fetches take
 * latency_ms. Checks that the IDs served are strictly increasing (one node). */
static struct load_result run_load(const struct idbuf_config *c, int64_t base, int64_t latency_ms,
                                   int64_t burst_ms)
{
    struct idseg *s = seg_store("t");
    struct idbuf b;
    assert_int_equal(idbuf_init(&b, c, 0), 0);
    bool pending = false;
    int64_t due_at = 0, p_start = 0, p_end = 0, last = 0, max_step = 0;
    uint64_t dry = 0, dry_warmup = 0;
    for (int64_t t = 0; t < 60000; t++) {
        if (pending && t >= due_at) {
            assert_int_equal(idbuf_fetch_done(&b, t, p_start, p_end), 0);
            pending = false;
        }
        int64_t load = (t >= burst_ms && t < burst_ms + 10000) ? 10 * base : base;
        for (int64_t k = 0; k < load; k++) {
            int64_t id;
            int rv = idbuf_next(&b, t, &id);
            if (rv == 0) {
                assert_true(id > last);
                last = id;
            } else {
                assert_int_equal(rv, IDBUF_EEMPTY);
                dry += t >= WARMUP_MS;
                dry_warmup += t < WARMUP_MS;
            }
            int64_t count;
            if (!pending && idbuf_fetch_due(&b, t, &count)) {
                seg_alloc(s, "t", count, &p_start, &p_end);
                pending = true;
                due_at = t + latency_ms;
                if (count > max_step) {
                    max_step = count;
                }
            }
        }
    }
    assert_int_equal(dry + dry_warmup, b.n_empty_cold + b.n_empty_dry);
    struct load_result r = {dry, dry_warmup, b.n_served, b.n_fetches, max_step};
    idseg_free(s);
    return r;
}

static void test_burst_never_runs_dry(void **state)
{
    struct idbuf_config adaptive, fixed;
    idbuf_config_default(&adaptive);
    adaptive.step_initial = 2000;
    fixed = adaptive;
    fixed.step_min = fixed.step_max = 2000; /* Leaf's default-sized fixed step */
    fixed.fetch_pct = 10;                   /* and Leaf's trigger */

    /* bursts starting at several phases of the segment cycle, two fetch latencies: 50 ms
     * (a Raft commit under load) and 1 s (a leader election) */
    const int64_t latencies[] = {50, 50, 50, 50, 1000, 1000};
    const int64_t bursts[] = {30000, 31237, 33911, 42000, 30000, 36500};
    for (size_t i = 0; i < sizeof latencies / sizeof latencies[0]; i++) {
        struct load_result a = run_load(&adaptive, 10, latencies[i], bursts[i]);
        printf("# adaptive, latency %lld ms, burst at %lld ms: served %llu, fetches %llu, "
               "max step %lld, dry %llu (warm-up %llu)\n",
               (long long)latencies[i], (long long)bursts[i], (unsigned long long)a.served,
               (unsigned long long)a.fetches, (long long)a.max_step, (unsigned long long)a.dry,
               (unsigned long long)a.dry_warmup);
        assert_int_equal(a.dry, 0);
        assert_int_equal(a.served, 30000 * 10 + 10000 * 100 + 20000 * 10 - a.dry_warmup);
        assert_true(a.max_step > 100000); /* it did adapt to the burst */
    }
    struct load_result f = run_load(&fixed, 10, 50, 30000);
    printf("# fixed 2000, latency 50 ms: served %llu, fetches %llu, dry %llu (warm-up %llu)\n",
           (unsigned long long)f.served, (unsigned long long)f.fetches, (unsigned long long)f.dry,
           (unsigned long long)f.dry_warmup);
    assert_true(f.dry > 100000); /* the negative control: both segments empty, often */
}

/* ==== restarts =========================================================== */

#define NODES 3

/* Three nodes share one tag; nodes restart at random (dropping their buffer and any
 * fetch in flight, whose range the cluster allocated anyway). No ID is served twice. */
static void test_restarts_never_reissue(void **state)
{
    struct idseg *s = seg_store("shared");
    struct prng r;
    prng_seed(&r, 99);
    struct {
        struct idbuf b;
        bool pending;
        int64_t due_at, start, end, last;
    } nodes[NODES];
    memset(nodes, 0, sizeof nodes);
    struct idbuf_config c;
    idbuf_config_default(&c);
    c.step_min = 10;
    c.step_initial = 50;
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(idbuf_init(&nodes[i].b, &c, 0), 0);
    }
    enum { CAP = 600000 };
    int64_t *ids = malloc(sizeof(int64_t) * CAP);
    assert_non_null(ids);
    uint32_t n_ids = 0, restarts = 0;
    int64_t abandoned = 0;
    for (int64_t t = 0; t < 20000 && n_ids < CAP - 64; t++) {
        for (int i = 0; i < NODES; i++) {
            if (prng_chance(&r, 1000)) { /* kill -9 and restart */
                abandoned += idbuf_remaining(&nodes[i].b);
                memset(&nodes[i], 0, sizeof nodes[i]);
                assert_int_equal(idbuf_init(&nodes[i].b, &c, t), 0);
                restarts++;
            }
            if (nodes[i].pending && t >= nodes[i].due_at) {
                assert_int_equal(idbuf_fetch_done(&nodes[i].b, t, nodes[i].start, nodes[i].end), 0);
                nodes[i].pending = false;
            }
            int64_t load = (int64_t)prng_below(&r, 20);
            for (int64_t k = 0; k < load && n_ids < CAP; k++) {
                int64_t id;
                if (idbuf_next(&nodes[i].b, t, &id) == 0) {
                    assert_true(id > nodes[i].last); /* increasing within a node's life */
                    nodes[i].last = id;
                    ids[n_ids++] = id;
                }
            }
            int64_t count;
            if (!nodes[i].pending && idbuf_fetch_due(&nodes[i].b, t, &count)) {
                seg_alloc(s, "shared", count, &nodes[i].start, &nodes[i].end);
                nodes[i].pending = true;
                nodes[i].due_at = t + 1 + (int64_t)prng_below(&r, 30);
            }
        }
    }
    qsort(ids, n_ids, sizeof(int64_t), cmp_i64);
    for (uint32_t i = 1; i < n_ids; i++) {
        if (ids[i] == ids[i - 1]) {
            fail_msg("id %lld served twice", (long long)ids[i]);
        }
    }
    printf("# restarts: %u ids, %u restarts, %lld ids abandoned\n", n_ids, restarts,
           (long long)abandoned);
    assert_true(restarts >= 20);
    assert_true(n_ids > 100000);
    free(ids);
    idseg_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_bounds),          cmocka_unit_test(test_protocol),
        cmocka_unit_test(test_step_follows_rate),      cmocka_unit_test(test_burst_never_runs_dry),
        cmocka_unit_test(test_restarts_never_reissue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
