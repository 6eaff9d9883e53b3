/* test_sim_locks.c -- the simulator's lease and lock world (sim/lockworld.h) and its
 * checker (sim/lockcheck.h).
 *
 * Two halves:
 *   - whole runs: a lock seed replays byte-identically (same trace hash, verdict and
 *     counters), it does real work (grants, resource writes, renewals), and a seed
 *     without lock clients runs exactly as it did before they existed (--locks off and
 *     --locks mixed agree on every seed mixed leaves without locks);
 *   - the checker alone, fed by hand: every check passes its legal case and fails its
 *     illegal one (negative controls), and stays failed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lockcheck.h"
#include "lockworld.h"
#include "sim.h"

#define TEST_SHORT_TICKS 300 /* 3 s of faults per run */
#define TEST_DRIFT_PPM   20000u

/* ---- whole runs -------------------------------------------------------------------- */

static void run(uint64_t seed, uint32_t ticks, uint32_t locks, struct sim_result *res)
{
    struct sim_config cfg;
    sim_config_default(&cfg, seed);
    cfg.fault_ticks = ticks;
    cfg.locks = locks;
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
    assert_int_equal(a->locks, b->locks);
    assert_int_equal(a->n_lock_grants, b->n_lock_grants);
    assert_int_equal(a->n_lock_writes_ok, b->n_lock_writes_ok);
    assert_int_equal(a->n_lock_writes_fenced, b->n_lock_writes_fenced);
    assert_int_equal(a->n_lease_expiries, b->n_lease_expiries);
    assert_int_equal(a->n_keepalives_ok, b->n_keepalives_ok);
}

static void test_lock_seed_replays(void **state)
{
    static const uint64_t seeds[] = {1, 2, 3, 0xfeedfacecafebeefull};
    uint64_t grants = 0, writes = 0, renewals = 0;
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        struct sim_result a, b;
        run(seeds[i], TEST_SHORT_TICKS, SIM_LOCKS_ON, &a);
        run(seeds[i], TEST_SHORT_TICKS, SIM_LOCKS_ON, &b);
        assert_true(a.locks);
        assert_same(&a, &b);
        grants += a.n_lock_grants;
        writes += a.n_lock_writes_ok;
        renewals += a.n_keepalives_ok;
    }
    assert_true(grants > 0); /* the checks had something to look at */
    assert_true(writes > 0);
    assert_true(renewals > 0);
}

static void test_lock_seed_default_length(void **state)
{
    struct sim_result a, b;
    run(7, 0, SIM_LOCKS_ON, &a);
    run(7, 0, SIM_LOCKS_ON, &b);
    assert_same(&a, &b);
    assert_true(a.n_lock_grants > 0);
    assert_true(a.n_lease_expiries > 0); /* locks also change hands by expiry */
}

/* Mixed mode: a seed without lock clients is exactly the --locks off run, one with them
 * exactly the --locks on run; both kinds occur. */
static void test_mixed_is_off_or_on(void **state)
{
    uint32_t with = 0, without = 0;
    for (uint64_t seed = 1; seed <= 9; seed++) {
        struct sim_result mixed, forced;
        run(seed, TEST_SHORT_TICKS / 3, SIM_LOCKS_MIXED, &mixed);
        run(seed, TEST_SHORT_TICKS / 3, mixed.locks ? SIM_LOCKS_ON : SIM_LOCKS_OFF, &forced);
        assert_same(&mixed, &forced);
        with += mixed.locks;
        without += !mixed.locks;
    }
    assert_true(with > 0);
    assert_true(without > 0);
}

static void test_off_differs_from_on(void **state)
{
    struct sim_result off, on;
    run(2, TEST_SHORT_TICKS / 3, SIM_LOCKS_OFF, &off);
    run(2, TEST_SHORT_TICKS / 3, SIM_LOCKS_ON, &on);
    assert_false(off.locks);
    assert_int_equal(off.n_lock_grants, 0);
    assert_true(on.locks);
    assert_int_not_equal(off.trace_hash, on.trace_hash);
}

/* ---- the checker alone ------------------------------------------------------------------ */

static void expect_fail(struct lockchk *c, int rv, const char *name)
{
    assert_int_equal(rv, -1);
    assert_true(c->failed);
    assert_string_equal(c->name, name);
}

static void test_bound_math(void **state)
{
    /* 980 ms on a clock that may run 2% slow last at most 1 s of real time */
    assert_int_equal(lockchk_bound_us(20000, 1000, 980000), 1000 + 1000000);
    assert_int_equal(lockchk_bound_us(0, 5, 100), 105);
    assert_true(lockchk_bound_us(20000, 0, 1) == 2); /* rounds up */
}

/* Client 1 holds token 1 of L0 with a belief bound of 1 s; client 2 gets token 2. */
static void overlap_setup(struct lockchk *c)
{
    lockchk_init(c, TEST_DRIFT_PPM);
    lockchk_lease(c, 1, 11);
    lockchk_renewed(c, 1, 0, 980000); /* bound 1 000 000 us */
    assert_int_equal(lockchk_grant(c, 1, 10, 0, 1, 1, 0, 5000), 0);
    assert_int_equal(lockchk_hold(c, 1, 0, 0, 1, 6000), 0);
}

static void test_overlap(void **state)
{
    struct lockchk c;
    overlap_setup(&c); /* legal: the grant comes after the bound */
    assert_int_equal(lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 1000000), 0);
    assert_int_equal(lockchk_grant(&c, 2, 20, 0, 2, 2, 0, 1000500), 0); /* replica 2 agrees */
    lockchk_free(&c);

    overlap_setup(&c); /* illegal: a grant while client 1 may still believe */
    expect_fail(&c, lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 999999), "lock-overlap");
    assert_int_equal(lockchk_write(&c, 0, 1, 1, 0, 1, 1, true), -1); /* stays failed */
    lockchk_free(&c);

    overlap_setup(&c); /* legal: it released first */
    lockchk_unhold(&c, 1);
    assert_int_equal(lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 500000), 0);
    lockchk_free(&c);

    overlap_setup(&c); /* legal: another lock */
    assert_int_equal(lockchk_grant(&c, 1, 20, 1, 2, 2, 0, 500000), 0);
    lockchk_free(&c);

    overlap_setup(&c); /* illegal: learning of token 1 after token 2 went out, bound ahead */
    lockchk_unhold(&c, 1);
    assert_int_equal(lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 500000), 0);
    expect_fail(&c, lockchk_hold(&c, 1, 0, 0, 1, 600000), "lock-overlap");
    lockchk_free(&c);

    overlap_setup(&c); /* legal: a crashed client believes nothing */
    lockchk_session_end(&c, 1);
    assert_int_equal(lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 500000), 0);
    lockchk_free(&c);
}

static void test_token_order(void **state)
{
    struct lockchk c;
    lockchk_init(&c, TEST_DRIFT_PPM);
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 5, 1, 0, 0), 0);
    assert_int_equal(lockchk_grant(&c, 1, 30, 0, 9, 2, 0, 0), 0);
    assert_int_equal(lockchk_grant(&c, 2, 30, 0, 9, 2, 0, 0), 0); /* n2 skipped 10 (snapshot) */
    assert_int_equal(lockchk_grant(&c, 3, 20, 0, 7, 3, 0, 0), 0); /* fills the gap in order */
    assert_int_equal(c.n_grants, 3);
    expect_fail(&c, lockchk_grant(&c, 1, 40, 0, 8, 1, 0, 0), "token-order"); /* n1 went back */
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* two replicas, two tokens at one index */
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 5, 1, 0, 0), 0);
    expect_fail(&c, lockchk_grant(&c, 2, 10, 0, 6, 1, 0, 0), "token-order");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* a later index with a lower token, across replicas */
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 5, 1, 0, 0), 0);
    expect_fail(&c, lockchk_grant(&c, 2, 20, 0, 4, 1, 0, 0), "token-order");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* a restored replica continues from next_token */
    lockchk_replica_reset(&c, 1, 10);
    expect_fail(&c, lockchk_grant(&c, 1, 50, 0, 9, 1, 0, 0), "token-order");
    lockchk_free(&c);
}

static void test_digest(void **state)
{
    struct lockchk c;
    bool first = false;
    lockchk_init(&c, TEST_DRIFT_PPM);
    assert_int_equal(lockchk_digest(&c, 1, 7, 0xabc, &first), 0);
    assert_true(first);
    assert_int_equal(lockchk_digest(&c, 2, 7, 0xabc, &first), 0);
    assert_false(first);
    assert_int_equal(lockchk_digest(&c, 2, 100000, 0x1, &first), 0); /* grows */
    expect_fail(&c, lockchk_digest(&c, 3, 7, 0xabd, &first), "lock-digest");
    lockchk_free(&c);
}

static void test_resource(void **state)
{
    struct lockchk c;
    lockchk_init(&c, TEST_DRIFT_PPM);
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 1, 1, 0, 0), 0);
    assert_int_equal(lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 0), 0);
    assert_int_equal(lockchk_write(&c, 0, 1, 1, 0, 100, 50, true), 0);
    assert_int_equal(lockchk_write(&c, 0, 1, 1, 0, 150, 50, true), 0);  /* same holder */
    assert_int_equal(lockchk_write(&c, 0, 2, 2, 0, 300, 200, true), 0); /* learned at 200 */
    assert_int_equal(lockchk_write(&c, 0, 1, 1, 0, 160, 50, false), 0); /* fenced: fine */
    assert_int_equal(c.n_writes_ok, 3);
    assert_int_equal(c.n_writes_fenced, 1);
    expect_fail(&c, lockchk_write(&c, 0, 1, 1, 0, 170, 50, true), "fencing"); /* went back */
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* a token nobody was granted */
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 1, 1, 0, 0), 0);
    expect_fail(&c, lockchk_write(&c, 0, 3, 1, 0, 100, 50, true), "fencing");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* granted, but to someone else */
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 1, 1, 0, 0), 0);
    expect_fail(&c, lockchk_write(&c, 0, 1, 2, 0, 100, 50, true), "fencing");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* both succeed although their beliefs overlapped */
    assert_int_equal(lockchk_grant(&c, 1, 10, 0, 1, 1, 0, 0), 0);
    assert_int_equal(lockchk_grant(&c, 1, 20, 0, 2, 2, 0, 0), 0);
    assert_int_equal(lockchk_write(&c, 0, 1, 1, 0, 400, 50, true), 0);
    expect_fail(&c, lockchk_write(&c, 0, 2, 2, 0, 500, 300, true), "resource-overlap");
    lockchk_free(&c);
}

static void test_direct_checks(void **state)
{
    struct lockchk c;
    lockchk_init(&c, TEST_DRIFT_PPM);
    assert_int_equal(lockchk_expire_proposed(&c, 1, 3, true), 0);
    expect_fail(&c, lockchk_expire_proposed(&c, 1, 3, false), "expire-quorum");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* term 3 had a leader from 100 us on */
    lockchk_elected(&c, 2, 10);
    lockchk_elected(&c, 3, 100);
    lockchk_elected(&c, 3, 900); /* the first time counts */
    assert_int_equal(lockchk_renew_ok(&c, 1, 2, 99), 0);
    assert_int_equal(lockchk_renew_ok(&c, 1, 3, 5000), 0);
    expect_fail(&c, lockchk_renew_ok(&c, 1, 2, 101), "renew-deposed");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* bound 1 000 000 us for lease 11 of client 1 */
    lockchk_lease(&c, 1, 11);
    lockchk_renewed(&c, 1, 0, 980000);
    assert_int_equal(lockchk_deadline(&c, 1, 1, 0, 1020000), 0); /* 1.02 s fast = 1 s */
    expect_fail(&c, lockchk_deadline(&c, 1, 1, 0, 1019000), "lease-deadline");
    lockchk_free(&c);

    lockchk_init(&c, TEST_DRIFT_PPM); /* no lease, no belief: nothing to honour */
    lockchk_renewed(&c, 1, 0, 980000);
    lockchk_session_end(&c, 1);
    assert_int_equal(lockchk_deadline(&c, 1, 1, 0, 0), 0);
    lockchk_free(&c);
}

static void test_owner_parse(void **state)
{
    uint32_t client = 0, inc = 0;
    assert_true(lockcl_owner_parse((const uint8_t *)"c1.0", 4, &client, &inc));
    assert_int_equal(client, 1);
    assert_int_equal(inc, 0);
    assert_true(lockcl_owner_parse((const uint8_t *)"c4.123", 6, &client, &inc));
    assert_int_equal(client, 4);
    assert_int_equal(inc, 123);
    static const char *const bad[] = {"c0.1", "c1.", "c.1", "x1.0", "c1.2.3", "c5.0", "c1-0", "c1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(
            lockcl_owner_parse((const uint8_t *)bad[i], (uint16_t)strlen(bad[i]), &client, &inc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_seed_replays),  cmocka_unit_test(test_lock_seed_default_length),
        cmocka_unit_test(test_mixed_is_off_or_on), cmocka_unit_test(test_off_differs_from_on),
        cmocka_unit_test(test_bound_math),         cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_token_order),        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_resource),           cmocka_unit_test(test_direct_checks),
        cmocka_unit_test(test_owner_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
