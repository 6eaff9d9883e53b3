/* test_sim_replay.c -- the simulator replays a seed exactly (STYLE.md rule 14).
 *
 * sim_run() twice on the same seed must produce the same trace hash (and the
 * same verdict, event count and simulated time); different seeds must differ.
 * Runs are shortened with fault_ticks so the suite stays quick under ASan;
 * one run uses the default length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sim.h"

#define TEST_SHORT_TICKS 150 /* 1.5 s of faults per run */

static void run(uint64_t seed, uint32_t ticks, uint32_t nodes, struct sim_result *res)
{
    struct sim_config cfg;
    sim_config_default(&cfg, seed);
    cfg.fault_ticks = ticks;
    cfg.n_nodes = nodes;
    int rv = sim_run(&cfg, res);
    if (rv != 0)
        fail_msg("seed %llu failed: check=%s %s", (unsigned long long)seed, res->check,
                 res->detail);
}

static void assert_same(const struct sim_result *a, const struct sim_result *b)
{
    assert_int_equal(a->trace_hash, b->trace_hash);
    assert_int_equal(a->failed, b->failed);
    assert_int_equal(a->n_events, b->n_events);
    assert_int_equal(a->sim_us, b->sim_us);
    assert_int_equal(a->n_elections, b->n_elections);
    assert_int_equal(a->ops_ok, b->ops_ok);
    assert_int_equal(a->ops_fail, b->ops_fail);
    assert_int_equal(a->ops_unknown, b->ops_unknown);
}

static void test_same_seed_same_trace(void **state)
{
    static const uint64_t seeds[] = {1, 2, 3, 0xdeadbeefcafef00dull};
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        struct sim_result a, b;
        run(seeds[i], TEST_SHORT_TICKS, 0, &a);
        run(seeds[i], TEST_SHORT_TICKS, 0, &b);
        assert_same(&a, &b);
        assert_true(a.n_events > 0);
        assert_true(a.ops_ok > 0);
    }
}

static void test_same_seed_default_length(void **state)
{
    struct sim_result a, b;
    run(7, 0, 0, &a);
    run(7, 0, 0, &b);
    assert_same(&a, &b);
}

static void test_forced_sizes_replay(void **state)
{
    for (uint32_t nodes = 3; nodes <= 7; nodes += 2) {
        struct sim_result a, b;
        run(11, TEST_SHORT_TICKS, nodes, &a);
        run(11, TEST_SHORT_TICKS, nodes, &b);
        assert_same(&a, &b);
        assert_int_equal(a.n_nodes, nodes);
    }
}

/* The real storage backend (storage/wal.c over simfs) replays exactly too. */
static void test_real_disk_replays(void **state)
{
    static const uint64_t seeds[] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        struct sim_config cfg;
        struct sim_result a, b;
        sim_config_default(&cfg, seeds[i]);
        cfg.fault_ticks = TEST_SHORT_TICKS;
        cfg.disk = SIM_DISK_REAL;
        assert_int_equal(sim_run(&cfg, &a), 0);
        assert_int_equal(sim_run(&cfg, &b), 0);
        assert_true(a.disk_real);
        assert_same(&a, &b);
        assert_int_equal(a.n_wal_recoveries, b.n_wal_recoveries);
        assert_int_equal(a.n_torn_tails, b.n_torn_tails);
    }
}

static void test_different_seeds_differ(void **state)
{
    struct sim_result a, b, c;
    run(1, TEST_SHORT_TICKS, 0, &a);
    run(2, TEST_SHORT_TICKS, 0, &b);
    run(3, TEST_SHORT_TICKS, 0, &c);
    assert_int_not_equal(a.trace_hash, b.trace_hash);
    assert_int_not_equal(a.trace_hash, c.trace_hash);
    assert_int_not_equal(b.trace_hash, c.trace_hash);
}

static void test_bad_config_fails_cleanly(void **state)
{
    struct sim_config cfg;
    struct sim_result res;
    sim_config_default(&cfg, 1);
    cfg.n_nodes = SIM_NODES_MAX + 1;
    assert_int_equal(sim_run(&cfg, &res), 1);
    assert_true(res.failed);
    assert_string_equal(res.check, "config");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_trace),
        cmocka_unit_test(test_same_seed_default_length),
        cmocka_unit_test(test_forced_sizes_replay),
        cmocka_unit_test(test_real_disk_replays),
        cmocka_unit_test(test_different_seeds_differ),
        cmocka_unit_test(test_bad_config_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
