/* test_lease_timer.c -- unit tests for node/lease_timer, the leader's lease deadlines.
 *
 * Scenarios pin the contract: inactive on followers, the extension on becoming leader,
 * keepalives that never shorten a deadline, expiry that is final (no renewal once the
 * deadline passed, even before EXPIRE commits, and not after re-activation either),
 * offers in deadline order within a budget and again after LEASE_TIMER_RETRY_MS. A
 * randomized run checks the heap against a brute-force scan, and a failover property
 * run checks the safety claim of lease_timer.h: a lease never expires on any leader
 * before c0 + ttl, where c0 is when the client sent its last successful keepalive.
 *
 * Sections: helpers | scenarios | random runs.
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
#include "node/lease_timer.h"
#include "sm/lease.h"

/* ==== helpers ============================================================ */

static uint64_t g_index = 1;

static int64_t grant(struct lease_table *lt, int64_t id, int64_t ttl_ms, uint64_t *gi)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_grant(id, ttl_ms, buf, sizeof buf, &n), 0);
    struct lease_result res;
    assert_int_equal(lease_apply(lt, buf, n, g_index++, &res), 0);
    int64_t got = res.id;
    if (gi != NULL) {
        *gi = res.granted_index;
    }
    lease_result_free(&res);
    return got;
}

static void revoke(struct lease_table *lt, int64_t id)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_revoke(id, buf, sizeof buf, &n), 0);
    struct lease_result res;
    assert_int_equal(lease_apply(lt, buf, n, g_index++, &res), 0);
    lease_result_free(&res);
}

static struct lease_timer *timer_make(void)
{
    struct lease_timer *t;
    assert_int_equal(lease_timer_new(&t), 0);
    return t;
}

static uint64_t remaining(struct lease_timer *t, int64_t id, uint64_t now)
{
    uint64_t r;
    assert_int_equal(lease_timer_remaining_ms(t, id, now, &r), 0);
    return r;
}

/* ==== scenarios ========================================================== */

static void test_inactive_on_followers(void **state)
{
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    struct lease_timer *t = timer_make();
    int64_t id = grant(lt, 0, 1000, NULL);
    assert_false(lease_timer_active(t));
    assert_int_equal(lease_timer_on_grant(t, id, 1000, 1, 0), 0); /* no-op */
    assert_int_equal(lease_timer_count(t), 0);
    uint64_t d, r;
    int64_t ttl;
    assert_int_equal(lease_timer_keepalive(t, id, 0, &d, &ttl), LEASE_TIMER_ENOTLEADER);
    assert_int_equal(lease_timer_remaining_ms(t, id, 0, &r), LEASE_TIMER_ENOTLEADER);
    struct lease_timer_expiry out[4];
    assert_int_equal(lease_timer_next_expired(t, UINT64_MAX, out, 4), 0);
    assert_int_equal(lease_timer_next_due_ms(t), UINT64_MAX);
    lease_timer_on_revoke(t, id); /* unknown: no-op */
    lease_timer_free(t);
    lease_free(lt);
}

static void test_become_leader_extends(void **state)
{
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    uint64_t gi_a, gi_b;
    int64_t a = grant(lt, 0, 1000, &gi_a);
    int64_t b = grant(lt, 0, 5000, &gi_b);
    struct lease_timer *t = timer_make();
    assert_int_equal(lease_timer_on_become_leader(t, lt, 10000, LEASE_TIMER_EXTEND_MS_MAX + 1),
                     LEASE_TIMER_EINVAL);
    assert_false(lease_timer_active(t));
    assert_int_equal(lease_timer_on_become_leader(t, lt, 10000, 2000), 0);
    assert_true(lease_timer_active(t));
    assert_int_equal(lease_timer_count(t), 2);
    assert_int_equal(remaining(t, a, 10000), 3000); /* ttl + extend */
    assert_int_equal(remaining(t, b, 10000), 7000);
    assert_int_equal(lease_timer_next_due_ms(t), 13000);

    /* A keepalive right away does not shorten the extended deadline. */
    uint64_t d;
    int64_t ttl;
    assert_int_equal(lease_timer_keepalive(t, a, 10500, &d, &ttl), 0);
    assert_int_equal(d, 13000);
    assert_int_equal(ttl, 1000);
    /* Later it moves the deadline to now + ttl. */
    assert_int_equal(lease_timer_keepalive(t, a, 12900, &d, &ttl), 0);
    assert_int_equal(d, 13900);
    assert_int_equal(remaining(t, a, 13000), 900);
    assert_int_equal(remaining(t, a, 20000), 0);

    struct lease_timer_expiry out[4];
    assert_int_equal(lease_timer_next_expired(t, 13899, out, 4), 0);
    assert_int_equal(lease_timer_next_expired(t, 13900, out, 4), 1);
    assert_int_equal(out[0].id, a);
    assert_int_equal(out[0].granted_index, gi_a);
    lease_timer_free(t);
    lease_free(lt);
}

static void test_expiry_is_final(void **state)
{
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    int64_t a = grant(lt, 0, 1000, NULL);
    struct lease_timer *t = timer_make();
    assert_int_equal(lease_timer_on_become_leader(t, lt, 0, 0), 0);
    uint64_t d;
    int64_t ttl;
    /* At the deadline exactly: expired, no renewal. */
    assert_int_equal(lease_timer_keepalive(t, a, 1000, &d, &ttl), LEASE_TIMER_EEXPIRED);
    struct lease_timer_expiry out[2];
    assert_int_equal(lease_timer_next_expired(t, 1000, out, 2), 1);
    assert_int_equal(lease_timer_keepalive(t, a, 1001, &d, &ttl), LEASE_TIMER_EEXPIRED);
    /* Regaining a quorum (become_leader again while active) does not revive it: the
     * EXPIRE may already be in the log. */
    assert_int_equal(lease_timer_on_become_leader(t, lt, 1500, 5000), 0);
    assert_int_equal(lease_timer_keepalive(t, a, 1600, &d, &ttl), LEASE_TIMER_EEXPIRED);
    assert_int_equal(remaining(t, a, 1600), 0);
    /* A grant of a new lease in the same run is tracked normally. */
    uint64_t gi;
    int64_t b = grant(lt, 0, 2000, &gi);
    assert_int_equal(lease_timer_on_grant(t, b, 2000, gi, 1600), 0);
    assert_int_equal(remaining(t, b, 1600), 2000);
    /* Stepping down and leading again (new term) restarts every countdown. */
    lease_timer_on_step_down(t);
    assert_false(lease_timer_active(t));
    assert_int_equal(lease_timer_count(t), 0);
    assert_int_equal(lease_timer_on_become_leader(t, lt, 5000, 1000), 0);
    assert_int_equal(remaining(t, a, 5000), 2000);
    assert_int_equal(lease_timer_keepalive(t, a, 5000, &d, &ttl), 0);
    lease_timer_free(t);
    lease_free(lt);
}

static void test_become_leader_again_keeps_later_deadline(void **state)
{
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    int64_t a = grant(lt, 0, 10000, NULL);
    struct lease_timer *t = timer_make();
    assert_int_equal(lease_timer_on_become_leader(t, lt, 0, 5000), 0);
    assert_int_equal(remaining(t, a, 0), 15000);
    /* Called again at 1000 with a smaller extension: the earlier promise stands. */
    assert_int_equal(lease_timer_on_become_leader(t, lt, 1000, 0), 0);
    assert_int_equal(remaining(t, a, 1000), 14000);
    /* With a larger one it grows. */
    assert_int_equal(lease_timer_on_become_leader(t, lt, 9000, 8000), 0);
    assert_int_equal(remaining(t, a, 9000), 18000);
    /* Leases the table lost meanwhile are dropped. */
    revoke(lt, a);
    assert_int_equal(lease_timer_on_become_leader(t, lt, 9000, 0), 0);
    assert_int_equal(lease_timer_count(t), 0);
    lease_timer_free(t);
    lease_free(lt);
}

static void test_grant_and_revoke_tracking(void **state)
{
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    struct lease_timer *t = timer_make();
    assert_int_equal(lease_timer_on_become_leader(t, lt, 0, 1000), 0);
    uint64_t gi;
    int64_t a = grant(lt, 0, 700, &gi);
    assert_int_equal(lease_timer_on_grant(t, a, 700, gi, 100), 0);
    assert_int_equal(remaining(t, a, 100), 700); /* a fresh grant gets no extension */
    assert_int_equal(lease_timer_on_grant(t, a, 100, gi, 100), LEASE_TIMER_EINVAL);
    assert_int_equal(lease_timer_on_grant(t, 0, 700, gi, 100), LEASE_TIMER_EINVAL);
    lease_timer_on_revoke(t, a);
    uint64_t d, r;
    int64_t ttl;
    assert_int_equal(lease_timer_keepalive(t, a, 200, &d, &ttl), LEASE_TIMER_ENOTFOUND);
    assert_int_equal(lease_timer_remaining_ms(t, a, 200, &r), LEASE_TIMER_ENOTFOUND);
    assert_int_equal(lease_timer_count(t), 0);
    lease_timer_free(t);
    lease_free(lt);
}

static void test_offers_in_order_with_budget_and_retry(void **state)
{
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    struct lease_timer *t = timer_make();
    assert_int_equal(lease_timer_on_become_leader(t, lt, 0, 0), 0);
    /* ids 1..6; deadlines 1000 (ids 4,5,6), 2000 (id 2), 3000 (ids 1, 3) */
    int64_t ttl_of[7] = {0, 3000, 2000, 3000, 1000, 1000, 1000};
    for (int64_t i = 1; i <= 6; i++) {
        uint64_t gi;
        int64_t id = grant(lt, 0, ttl_of[i], &gi);
        assert_int_equal(id, i);
        assert_int_equal(lease_timer_on_grant(t, id, ttl_of[i], gi, 0), 0);
    }
    struct lease_timer_expiry out[8];
    assert_int_equal(lease_timer_next_expired(t, 999, out, 8), 0);
    assert_int_equal(lease_timer_next_expired(t, 2500, out, 2), 2); /* budget */
    assert_int_equal(out[0].id, 4);
    assert_int_equal(out[1].id, 5);
    assert_int_equal(lease_timer_next_expired(t, 2500, out, 8), 2);
    assert_int_equal(out[0].id, 6);
    assert_int_equal(out[1].id, 2);
    assert_int_equal(lease_timer_next_expired(t, 2500, out, 8), 0); /* offered already */
    assert_int_equal(lease_timer_next_due_ms(t), 3000);             /* ids 1 and 3 */
    /* id 5's EXPIRE applied; the others were lost: offered again after the retry. */
    lease_timer_on_revoke(t, 5);
    assert_int_equal(lease_timer_next_expired(t, 2999, out, 8), 0);
    uint32_t k = lease_timer_next_expired(t, 3500, out, 8);
    assert_int_equal(k, 5);
    assert_int_equal(out[0].id, 1); /* deadline 3000 */
    assert_int_equal(out[1].id, 3);
    assert_int_equal(out[2].id, 2); /* retry due 3500, ties by id */
    assert_int_equal(out[3].id, 4);
    assert_int_equal(out[4].id, 6);
    lease_timer_free(t);
    lease_free(lt);
}

static void test_strerror(void **state)
{
    for (int rv = -2285; rv <= -2281; rv++) {
        assert_string_not_equal(lease_timer_strerror(rv), "unknown lease timer error");
    }
    assert_string_equal(lease_timer_strerror(-2299), "unknown lease timer error");
}

/* ==== random runs ======================================================== */

/* The heap agrees with a brute-force scan over a shadow array. */
static void test_random_against_scan(void **state)
{
    enum { N = 200 };
    struct prng p;
    prng_seed(&p, 7);
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    struct lease_timer *t = timer_make();
    assert_int_equal(lease_timer_on_become_leader(t, lt, 0, 0), 0);
    struct {
        bool live;
        int64_t ttl;
        uint64_t deadline;
        bool offered;
        uint64_t offered_at;
    } s[N + 1] = {0};
    uint64_t now = 0;
    for (int step = 0; step < 50000; step++) {
        now += prng_below(&p, 50);
        int64_t id = 1 + (int64_t)prng_below(&p, N);
        unsigned op = (unsigned)prng_below(&p, 4);
        if (op == 0 && !s[id].live) {
            int64_t ttl = 500 + (int64_t)prng_below(&p, 3000);
            assert_int_equal(lease_timer_on_grant(t, id, ttl, 1, now), 0);
            s[id].live = true;
            s[id].ttl = ttl;
            s[id].deadline = now + (uint64_t)ttl;
            s[id].offered = false;
        } else if (op == 1) {
            uint64_t d;
            int64_t ttl;
            int rv = lease_timer_keepalive(t, id, now, &d, &ttl);
            if (!s[id].live) {
                assert_int_equal(rv, LEASE_TIMER_ENOTFOUND);
            } else if (now >= s[id].deadline) {
                assert_int_equal(rv, LEASE_TIMER_EEXPIRED);
            } else {
                assert_int_equal(rv, 0);
                if (now + (uint64_t)s[id].ttl > s[id].deadline) {
                    s[id].deadline = now + (uint64_t)s[id].ttl;
                }
                assert_int_equal(d, s[id].deadline);
            }
        } else if (op == 2) {
            lease_timer_on_revoke(t, id);
            s[id].live = false;
        } else {
            uint32_t budget = (uint32_t)prng_below(&p, 6);
            struct lease_timer_expiry out[8];
            uint32_t k = lease_timer_next_expired(t, now, out, budget);
            /* Expected: due entries by (due, id), first `budget` of them. */
            uint32_t expect = 0;
            uint64_t last_due = 0;
            int64_t last_id = 0;
            for (uint32_t i = 0; i < k; i++) {
                int64_t x = out[i].id;
                assert_true(s[x].live);
                uint64_t due =
                    s[x].offered ? s[x].offered_at + LEASE_TIMER_RETRY_MS : s[x].deadline;
                assert_true(due <= now);
                assert_true(i == 0 || due > last_due || (due == last_due && x > last_id));
                last_due = due;
                last_id = x;
            }
            for (int64_t x = 1; x <= N; x++) {
                if (!s[x].live) {
                    continue;
                }
                uint64_t due =
                    s[x].offered ? s[x].offered_at + LEASE_TIMER_RETRY_MS : s[x].deadline;
                if (due <= now) {
                    expect++;
                    /* Anything due but not offered must sort after the last offered. */
                    bool got = false;
                    for (uint32_t i = 0; i < k; i++) {
                        got |= out[i].id == x;
                    }
                    if (!got) {
                        assert_true(k == budget);
                        assert_true(due > last_due || (due == last_due && x > last_id));
                    }
                }
            }
            assert_int_equal(k, expect < budget ? expect : budget);
            for (uint32_t i = 0; i < k; i++) {
                s[out[i].id].offered = true;
                s[out[i].id].offered_at = now;
            }
        }
        uint32_t live = 0;
        for (int x = 1; x <= N; x++) {
            live += s[x].live;
        }
        assert_int_equal(lease_timer_count(t), live);
    }
    lease_timer_free(t);
    lease_free(lt);
}

/* The safety claim across failovers: a client that sent a keepalive at c0 which
 * succeeded trusts its lease until c0 + ttl; no leader may offer it for expiry before
 * then. The node's protocol is modelled: a keepalive is answered only by a leader whose
 * confirming round completes while it still leads, with now = the completion time; a
 * new leader becomes active after an election gap and calls on_become_leader with the
 * election timeout; clients die now and then (stop renewing), so expiries happen.
 *
 * With `mutant` set, a deposed leader that has not noticed yet keeps answering
 * keepalives from its own timer for up to two election timeouts without confirming
 * (etcd's unconfirmed renewals, one road to etcd#11456). Returns how many expiries were
 * offered before the client's trust ran out: 0 is the claim; the mutant must produce
 * some, or the check could not fail. */
static unsigned run_failover(uint64_t seed, bool mutant, unsigned *n_offered)
{
    enum { NODES = 3, CLIENTS = 8 };
    const uint64_t election_ms = 1000, ttl = 3000;
    struct prng p;
    prng_seed(&p, seed);
    struct lease_table *lt;
    assert_int_equal(lease_new(&lt), 0);
    struct lease_timer *timers[NODES];
    for (int i = 0; i < NODES; i++) {
        timers[i] = timer_make();
    }
    int64_t ids[CLIENTS];
    uint64_t trust_until[CLIENTS]; /* c0 + ttl of the last successful keepalive */
    bool dead[CLIENTS] = {0};
    for (int c = 0; c < CLIENTS; c++) {
        ids[c] = grant(lt, 0, (int64_t)ttl, NULL);
        trust_until[c] = ttl; /* granted at time 0 */
    }
    int leader = 0, deposed = -1;
    uint64_t now = 0, deposed_until = 0;
    unsigned violations = 0;
    assert_int_equal(lease_timer_on_become_leader(timers[leader], lt, now, election_ms), 0);
    for (int step = 0; step < 4000; step++) {
        now += 1 + prng_below(&p, 200);
        if (deposed >= 0 && now >= deposed_until) {
            lease_timer_on_step_down(timers[deposed]); /* it noticed at last */
            deposed = -1;
        }
        if (prng_chance(&p, 20000) && deposed < 0) {
            /* Failover. The old leader may not notice for a while (partitioned). */
            int old = leader;
            leader = (leader + 1 + (int)prng_below(&p, NODES - 1)) % NODES;
            now += election_ms + prng_below(&p, election_ms);
            if (mutant) {
                deposed = old;
                deposed_until = now + prng_below(&p, 2 * election_ms);
            } else {
                lease_timer_on_step_down(timers[old]);
            }
            assert_int_equal(lease_timer_on_become_leader(timers[leader], lt, now, election_ms), 0);
        }
        int c = (int)prng_below(&p, CLIENTS);
        if (!dead[c] && prng_chance(&p, 2000)) {
            dead[c] = true; /* a crashed client: no more renewals */
        }
        if (!dead[c] && prng_chance(&p, 600000)) {
            /* Keepalive sent at c0 = now, confirmed (or not) after a round trip. A client
             * still talking to a deposed leader stays with it until it notices. */
            uint64_t c0 = now, done = now + prng_below(&p, 50);
            int to = (deposed >= 0 && prng_chance(&p, 500000)) ? deposed : leader;
            uint64_t d;
            int64_t t_ms;
            int rv = lease_timer_keepalive(timers[to], ids[c], done, &d, &t_ms);
            /* Correct protocol: the deposed leader's ReadIndex round fails. */
            bool answered = rv == 0 && (to == leader || mutant);
            if (answered) {
                assert_true(d >= c0 + ttl);
                if (c0 + ttl > trust_until[c]) {
                    trust_until[c] = c0 + ttl;
                }
            }
        }
        struct lease_timer_expiry out[CLIENTS];
        uint32_t k = lease_timer_next_expired(timers[leader], now, out, CLIENTS);
        *n_offered += k;
        for (uint32_t i = 0; i < k; i++) {
            int x = 0;
            while (x < CLIENTS && ids[x] != out[i].id) {
                x++;
            }
            assert_true(x < CLIENTS);
            if (now < trust_until[x]) {
                violations++;
            }
            /* The EXPIRE commits and applies; a live client starts over with a new lease
             * (the lock-lost path), a dead one stays gone. */
            uint8_t buf[LEASE_CMD_BYTES_MAX];
            size_t n;
            struct lease_result res;
            assert_int_equal(
                lease_encode_expire(out[i].id, out[i].granted_index, buf, sizeof buf, &n), 0);
            assert_int_equal(lease_apply(lt, buf, n, g_index++, &res), 0);
            lease_result_free(&res);
            lease_timer_on_revoke(timers[leader], out[i].id);
            ids[x] = -1;
            if (!dead[x]) {
                uint64_t gi;
                ids[x] = grant(lt, 0, (int64_t)ttl, &gi);
                assert_int_equal(
                    lease_timer_on_grant(timers[leader], ids[x], (int64_t)ttl, gi, now), 0);
                trust_until[x] = now + ttl;
            }
        }
    }
    for (int i = 0; i < NODES; i++) {
        lease_timer_free(timers[i]);
    }
    lease_free(lt);
    return violations;
}

static void test_failover_never_expires_early(void **state)
{
    unsigned offered = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        assert_int_equal(run_failover(seed, false, &offered), 0);
    }
    assert_true(offered > 100); /* expiries really happened and were checked */
}

/* Negative control: the same check catches a deposed leader answering renewals. */
static void test_failover_negative_control(void **state)
{
    unsigned caught = 0, offered = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        caught += run_failover(seed, true, &offered);
    }
    print_message("mutant: %u of %u expiry offers came before the client's trust ran out\n", caught,
                  offered);
    assert_true(caught > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inactive_on_followers),
        cmocka_unit_test(test_become_leader_extends),
        cmocka_unit_test(test_expiry_is_final),
        cmocka_unit_test(test_become_leader_again_keeps_later_deadline),
        cmocka_unit_test(test_grant_and_revoke_tracking),
        cmocka_unit_test(test_offers_in_order_with_budget_and_retry),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_random_against_scan),
        cmocka_unit_test(test_failover_never_expires_early),
        cmocka_unit_test(test_failover_negative_control),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
