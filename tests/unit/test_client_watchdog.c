/* test_client_watchdog.c -- unit tests for the C client library's lock watchdog
 * (src/client/watchdog.{h,c}) and the lock handle around it (src/client/lock.c).
 *
 * The rule under test (include/conclave/client.h): lost_cb fires no later than
 * last_success_send + ttl - margin, and not before it unless the lease is gone; after
 * that nothing is renewed and the lock is never valid again.
 *
 * Three levels:
 *   - arithmetic: the core's answers at chosen instants (bound, schedule, timeout cap,
 *     late successes, GONE, LOST once).
 *   - simulation: the library's own loop, cc_wd_run, against a fake clock and a fake
 *     transport (seeded regimes: healthy, flaky, slow, refusing, hanging, lease gone).
 *     An independent checker recomputes the bound from the recorded keepalives and
 *     demands that LOST fire exactly at it, that no keepalive leave after trust ran
 *     out, that validity sampled mid-sleep matches, and that renewals come every ttl/3.
 *     Negative controls run through the same checker and must be caught: a naive
 *     watchdog (lost only on "gone" or after 3 failures: the Redisson-style bug), a
 *     driver that feeds the core receive times instead of send times, and the real
 *     loop over a transport that ignores its timeout.
 *   - the handle: cc_lock_acquire with a real renewal thread and real time over an
 *     injected transport (cc__set_transport): renewals, lost_cb timing after refusals,
 *     hangs and 404, the confirmation keepalive after a long wait, failover, error
 *     mapping, release.
 *
 * Sections: helpers | arithmetic | simulation | negative controls | handle | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/prng.h"
#include "client/client_internal.h"
#include "client/watchdog.h"
#include "conclave/client.h"

#define TEST_ALARM_S    120
#define SIM_SEEDS       300
#define SIM_TTLS        60u    /* horizon of one simulated hold, in ttls */
#define SIM_KAS_MAX     20000  /* keepalives recorded per run */
#define SIM_SAMPLES_MAX 40000  /* validity samples per run */
#define SIM_STEPS_MAX   200000 /* env calls per run: the fake loop's budget */

/* ==== helpers ============================================================================ */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ==== arithmetic ========================================================================== */

static void test_margin_and_init(void **state)
{
    (void)state;
    assert_int_equal(cc_wd_default_margin_ms(500), 50);
    assert_int_equal(cc_wd_default_margin_ms(499 * 2), 99);
    assert_int_equal(cc_wd_default_margin_ms(10000), 1000);
    struct cc_wd wd;
    assert_int_equal(cc_wd_init(&wd, 499, 0, 0), CC_ETTL);
    assert_int_equal(cc_wd_init(&wd, CC_TTL_MS_MAX + 1u, 0, 0), CC_ETTL);
    assert_int_equal(cc_wd_init(&wd, 1000, 501, 0), CC_EMARGIN);
    assert_int_equal(cc_wd_init(&wd, 1000, 500, 0), 0);
    assert_int_equal(cc_wd_valid_until(&wd), 500);
    assert_int_equal(cc_wd_init(&wd, 1000, 0, 7000), 0);
    assert_int_equal(wd.margin_ms, 100);
    assert_int_equal(cc_wd_valid_until(&wd), 7900);
    assert_true(cc_wd_valid(&wd, 7899));
    assert_false(cc_wd_valid(&wd, 7900));
}

static void test_schedule_and_bound(void **state)
{
    (void)state;
    struct cc_wd wd;
    uint64_t until = 0;
    uint32_t timeout = 0;
    assert_int_equal(cc_wd_init(&wd, 3000, 0, 1000), 0); /* margin 300, bound 3700 */
    assert_int_equal(cc_wd_next(&wd, 1000, &until, &timeout), CC_WD_WAIT);
    assert_int_equal(until, 2000); /* s + ttl/3 */
    assert_int_equal(cc_wd_next(&wd, 2000, &until, &timeout), CC_WD_RENEW);
    assert_int_equal(timeout, 1000); /* ttl/3: the bound (1700 away) is farther */
    /* success sent at 2000, known at 2400: bound from the SEND time */
    cc_wd_on_result(&wd, 2000, 2400, CC_WD_OK);
    assert_int_equal(cc_wd_valid_until(&wd), 2000 + 3000 - 300);
    assert_int_equal(cc_wd_next(&wd, 2400, &until, &timeout), CC_WD_WAIT);
    assert_int_equal(until, 3000);
    /* failures: retried every ttl/20 = 150 ms, timeouts capped at the bound */
    cc_wd_on_result(&wd, 3000, 3000 + 1000, CC_WD_FAILED);
    assert_int_equal(cc_wd_next(&wd, 4000, &until, &timeout), CC_WD_WAIT);
    assert_int_equal(until, 4150);
    assert_int_equal(cc_wd_next(&wd, 4150, &until, &timeout), CC_WD_RENEW);
    assert_int_equal(timeout, 4700 - 4150);
    cc_wd_on_result(&wd, 4150, 4690, CC_WD_FAILED);
    assert_int_equal(cc_wd_next(&wd, 4690, &until, &timeout), CC_WD_WAIT);
    assert_int_equal(until, 4700); /* the retry (4840) is past the bound: wake at the bound */
    assert_true(cc_wd_valid(&wd, 4699));
    assert_int_equal(cc_wd_next(&wd, 4700, &until, &timeout), CC_WD_LOST);
    assert_false(cc_wd_valid(&wd, 4700));
    assert_false(cc_wd_valid(&wd, 0)); /* lost is final, whatever the time */
    assert_int_equal(cc_wd_next(&wd, 4700, &until, &timeout), CC_WD_STOPPED);
    cc_wd_on_result(&wd, 4600, 4701, CC_WD_OK); /* a straggler changes nothing */
    assert_int_equal(cc_wd_valid_until(&wd), 4700);
    assert_int_equal(cc_wd_next(&wd, 9999, &until, &timeout), CC_WD_STOPPED);
}

static void test_late_success_is_ignored(void **state)
{
    (void)state;
    struct cc_wd wd;
    uint64_t until = 0;
    uint32_t timeout = 0;
    assert_int_equal(cc_wd_init(&wd, 1000, 0, 0), 0); /* bound 900 */
    cc_wd_on_result(&wd, 850, 900, CC_WD_OK);         /* arrives exactly at the bound */
    assert_int_equal(cc_wd_valid_until(&wd), 900);
    assert_int_equal(cc_wd_next(&wd, 900, &until, &timeout), CC_WD_LOST);
    /* an in-time success moves the bound; one with an older send time never moves it back */
    assert_int_equal(cc_wd_init(&wd, 1000, 0, 0), 0);
    cc_wd_on_result(&wd, 500, 600, CC_WD_OK);
    assert_int_equal(cc_wd_valid_until(&wd), 1400);
    cc_wd_on_result(&wd, 400, 700, CC_WD_OK);
    assert_int_equal(cc_wd_valid_until(&wd), 1400);
}

static void test_gone_is_immediate(void **state)
{
    (void)state;
    struct cc_wd wd;
    uint64_t until = 0;
    uint32_t timeout = 0;
    assert_int_equal(cc_wd_init(&wd, 1000, 0, 0), 0);
    cc_wd_on_result(&wd, 333, 340, CC_WD_GONE);
    assert_false(cc_wd_valid(&wd, 340));
    assert_true(cc_wd_valid(&wd, 339)); /* it was trusted until the answer came */
    assert_int_equal(cc_wd_next(&wd, 340, &until, &timeout), CC_WD_LOST);
    assert_int_equal(cc_wd_next(&wd, 341, &until, &timeout), CC_WD_STOPPED);
}

/* ==== simulation ========================================================================== */

enum transport_kind { T_HONEST, T_OVERRUN };
enum driver_kind { D_LIBRARY, D_RECV_TIME, D_NAIVE };

struct ka {
    uint64_t send, recv;
    enum cc_wd_outcome out;
};

struct sample {
    uint64_t t;
    bool valid;
};

struct world {
    struct prng rng;
    uint32_t ttl, margin;
    bool calm; /* a third of the seeds: no faults, the hold lasts to the horizon */
    enum transport_kind transport;
    uint64_t now, horizon;
    /* the current regime */
    uint64_t regime_until;
    uint32_t fail_ppm, gone_ppm, lat_min, lat_max;
    struct ka kas[SIM_KAS_MAX];
    uint32_t n_kas;
    struct sample samples[SIM_SAMPLES_MAX];
    uint32_t n_samples;
    uint32_t n_lost;
    uint64_t lost_at;
    uint32_t steps;
    struct cc_wd *wd; /* sampled for validity (library drivers) */
};

static void world_regime(struct world *w)
{
    uint32_t ttl = w->ttl;
    uint64_t r = prng_below(&w->rng, 20);
    if (w->calm) { /* a calm hold: latencies up to ttl/4, always answered */
        w->fail_ppm = 0, w->lat_min = 1, w->lat_max = r < 10 ? ttl / 10 : ttl / 4;
    } else if (r < 10) { /* healthy */
        w->fail_ppm = 0, w->lat_min = 1, w->lat_max = ttl / 10;
    } else if (r < 13) { /* flaky */
        w->fail_ppm = 400000, w->lat_min = 1, w->lat_max = ttl / 2;
    } else if (r < 16) { /* slow but working: latencies around and beyond ttl/3 */
        w->fail_ppm = 0, w->lat_min = ttl / 5, w->lat_max = ttl;
    } else if (r < 18) { /* refusing: fast failures */
        w->fail_ppm = 1000000, w->lat_min = 1, w->lat_max = 5;
    } else { /* hanging: answers (if ever) far too late */
        w->fail_ppm = 500000, w->lat_min = ttl / 2, w->lat_max = 2 * ttl;
    }
    w->gone_ppm = !w->calm && prng_chance(&w->rng, 100000) ? 20000 : 0;
    w->regime_until = w->now + ttl / 2 + prng_below(&w->rng, 3 * (uint64_t)ttl);
}

static void world_init(struct world *w, uint64_t seed, uint32_t ttl, uint32_t margin,
                       enum transport_kind t)
{
    memset(w, 0, sizeof(*w));
    prng_seed(&w->rng, seed);
    w->ttl = ttl;
    w->margin = margin ? margin : cc_wd_default_margin_ms(ttl);
    w->transport = t;
    w->calm = seed % 3 == 0;
    w->now = 1000000 + prng_below(&w->rng, 1000); /* the hold's acquire was sent now */
    w->horizon = w->now + (uint64_t)SIM_TTLS * ttl;
    world_regime(w);
}

static void world_sample(struct world *w, uint64_t t)
{
    if (w->wd && w->n_samples < SIM_SAMPLES_MAX) {
        w->samples[w->n_samples].t = t;
        w->samples[w->n_samples].valid = cc_wd_valid(w->wd, t);
        w->n_samples++;
    }
}

static uint64_t sim_now(void *arg)
{
    struct world *w = arg;
    return w->now;
}

static bool sim_sleep_until(void *arg, uint64_t until)
{
    struct world *w = arg;
    assert_true(until > w->now); /* the loop never asks to sleep into the past */
    assert_true(++w->steps < SIM_STEPS_MAX);
    world_sample(w, w->now);
    world_sample(w, w->now + (until - w->now) / 2);
    w->now = until;
    if (w->now >= w->regime_until)
        world_regime(w);
    return w->now >= w->horizon;
}

static enum cc_wd_outcome sim_keepalive(void *arg, uint32_t timeout_ms)
{
    struct world *w = arg;
    assert_true(++w->steps < SIM_STEPS_MAX);
    assert_true(w->n_kas < SIM_KAS_MAX);
    world_sample(w, w->now);
    uint64_t lat = w->lat_min + prng_below(&w->rng, (uint64_t)w->lat_max - w->lat_min + 1);
    enum cc_wd_outcome out = prng_chance(&w->rng, w->gone_ppm)   ? CC_WD_GONE
                             : prng_chance(&w->rng, w->fail_ppm) ? CC_WD_FAILED
                                                                 : CC_WD_OK;
    struct ka *k = &w->kas[w->n_kas++];
    k->send = w->now;
    if (w->transport == T_HONEST && lat > timeout_ms) { /* the exchange gives up in time */
        lat = timeout_ms;
        out = CC_WD_FAILED;
    }
    w->now += lat;
    k->recv = w->now;
    k->out = out;
    if (w->now >= w->regime_until)
        world_regime(w);
    return out;
}

static bool sim_stopping(void *arg)
{
    struct world *w = arg;
    return w->now >= w->horizon;
}

static void sim_lost(void *arg)
{
    struct world *w = arg;
    w->n_lost++;
    w->lost_at = w->now;
}

static const struct cc_wd_env sim_env_template = {.now_ms = sim_now,
                                                  .sleep_until = sim_sleep_until,
                                                  .keepalive = sim_keepalive,
                                                  .stopping = sim_stopping,
                                                  .lost = sim_lost};

/* A driver that feeds the core receive times instead of send times (negative control):
 * cc_wd_run's loop with exactly that one change. */
static void run_recv_time_driver(struct cc_wd *wd, const struct cc_wd_env *env)
{
    for (uint32_t i = 0; i < SIM_STEPS_MAX; i++) {
        uint64_t until = 0;
        uint32_t timeout = 0;
        uint64_t now = env->now_ms(env->arg);
        switch (cc_wd_next(wd, now, &until, &timeout)) {
        case CC_WD_LOST:
            env->lost(env->arg);
            return;
        case CC_WD_STOPPED:
            return;
        case CC_WD_RENEW: {
            enum cc_wd_outcome r = env->keepalive(env->arg, timeout);
            uint64_t recv = env->now_ms(env->arg);
            cc_wd_on_result(wd, recv, recv, r); /* the bug */
            if (env->stopping(env->arg))
                return;
            break;
        }
        case CC_WD_WAIT:
            if (env->sleep_until(env->arg, until))
                return;
            break;
        }
    }
}

/* A naive watchdog (negative control): renews every ttl/3 and declares the lock lost
 * only when the server says the lease is gone or after 3 failures in a row. */
static void run_naive_driver(struct world *w, const struct cc_wd_env *env)
{
    uint64_t next = w->now + w->ttl / 3;
    uint32_t fails = 0;
    for (uint32_t i = 0; i < SIM_STEPS_MAX; i++) {
        if (next > w->now && env->sleep_until(env->arg, next))
            return;
        enum cc_wd_outcome r = env->keepalive(env->arg, w->ttl / 3);
        if (r == CC_WD_GONE || (r == CC_WD_FAILED && ++fails >= 3)) {
            env->lost(env->arg);
            return;
        }
        if (r == CC_WD_OK)
            fails = 0;
        next = w->now + (r == CC_WD_OK ? w->ttl / 3 : 100);
        if (env->stopping(env->arg))
            return;
    }
}

/* Runs one simulated hold. */
static void sim_run(struct world *w, enum driver_kind d)
{
    struct cc_wd wd;
    assert_int_equal(cc_wd_init(&wd, w->ttl, w->margin, w->now), 0);
    struct cc_wd_env env = sim_env_template;
    env.arg = w;
    w->wd = d == D_NAIVE ? NULL : &wd;
    if (d == D_LIBRARY)
        cc_wd_run(&wd, &env);
    else if (d == D_RECV_TIME)
        run_recv_time_driver(&wd, &env);
    else
        run_naive_driver(w, &env);
    w->wd = NULL;
}

enum verdict { V_OK = 0, V_UNSAFE, V_OTHER };

/* The independent checker. Returns V_OK when the run obeyed the rule; else V_UNSAFE
 * (trust lasted too long: lost_cb late or missing, a renewal after trust ran out) or
 * V_OTHER (premature lost_cb, wrong validity, cadence), with what broke in buf. The
 * bound is recomputed from the recorded keepalives alone: each success that came back
 * while the lock was still trusted moves it to send + ttl - margin; a "gone" that came
 * back in time ends trust at its arrival. */
static enum verdict sim_check(const struct world *w, uint64_t start, bool check_cadence, char *buf,
                              size_t cap)
{
    uint64_t bound = start + w->ttl - w->margin;
    uint32_t s = 0; /* next validity sample to check */
    for (uint32_t i = 0; i < w->n_kas; i++) {
        const struct ka *k = &w->kas[i];
        /* samples before this keepalive's answer see the bound as it stands */
        for (; s < w->n_samples && w->samples[s].t < k->recv; s++)
            if (w->samples[s].valid != (w->samples[s].t < bound)) {
                snprintf(buf, cap, "valid(%llu) = %d, bound %llu",
                         (unsigned long long)w->samples[s].t, w->samples[s].valid,
                         (unsigned long long)bound);
                return V_OTHER;
            }
        if (k->send >= bound) {
            snprintf(buf, cap, "keepalive #%u sent at %llu, after trust ran out at %llu", i,
                     (unsigned long long)k->send, (unsigned long long)bound);
            return V_UNSAFE;
        }
        if (w->n_lost && k->send >= w->lost_at) {
            snprintf(buf, cap, "keepalive #%u sent after lost_cb", i);
            return V_UNSAFE;
        }
        uint64_t prev_bound = bound;
        if (k->out == CC_WD_OK && k->recv < bound) {
            uint64_t b = k->send + w->ttl - w->margin;
            bound = b > bound ? b : bound;
        } else if (k->out == CC_WD_GONE && k->recv < bound) {
            bound = k->recv;
        }
        if (check_cadence && i + 1 < w->n_kas && k->recv < prev_bound) {
            const struct ka *n = &w->kas[i + 1];
            uint64_t want = k->out == CC_WD_OK
                                ? (k->send + w->ttl / 3 > k->recv ? k->send + w->ttl / 3 : k->recv)
                                : 0;
            if (k->out == CC_WD_OK && n->send != want) {
                snprintf(buf, cap, "renewal after a success at %llu went at %llu, not %llu",
                         (unsigned long long)k->send, (unsigned long long)n->send,
                         (unsigned long long)want);
                return V_OTHER;
            }
            if (k->out == CC_WD_FAILED && n->send > k->recv + CC_WD_RETRY_MS_MAX) {
                snprintf(buf, cap, "retry after a failure at %llu only at %llu",
                         (unsigned long long)k->recv, (unsigned long long)n->send);
                return V_OTHER;
            }
        }
    }
    for (; s < w->n_samples; s++)
        if (w->samples[s].valid != (w->samples[s].t < bound)) {
            snprintf(buf, cap, "valid(%llu) = %d, final bound %llu",
                     (unsigned long long)w->samples[s].t, w->samples[s].valid,
                     (unsigned long long)bound);
            return V_OTHER;
        }
    if (w->n_lost > 1) {
        snprintf(buf, cap, "lost_cb called %u times", w->n_lost);
        return V_OTHER;
    }
    if (w->n_lost == 1 && w->lost_at > bound) {
        snprintf(buf, cap, "lost_cb at %llu, LATER than last_success_send + ttl - margin = %llu",
                 (unsigned long long)w->lost_at, (unsigned long long)bound);
        return V_UNSAFE;
    }
    if (w->n_lost == 1 && w->lost_at < bound) {
        snprintf(buf, cap, "lost_cb at %llu, before the bound %llu", (unsigned long long)w->lost_at,
                 (unsigned long long)bound);
        return V_OTHER;
    }
    if (w->n_lost == 0 && w->now > bound) { /* stopped exactly at it: fine */
        snprintf(buf, cap, "no lost_cb, but the bound %llu passed (now %llu)",
                 (unsigned long long)bound, (unsigned long long)w->now);
        return V_UNSAFE;
    }
    return V_OK;
}

static struct world g_world; /* large: kept off the stack */

static void test_sim_library_obeys_rule(void **state)
{
    (void)state;
    static const uint32_t ttls[] = {500, 1000, 3000, 10000};
    static const uint32_t margins[] = {0, 0, 200, 50};
    uint32_t n_lost = 0, n_gone = 0, n_renewals = 0;
    char buf[256];
    for (uint32_t seed = 1; seed <= SIM_SEEDS; seed++) {
        struct world *w = &g_world;
        uint32_t k = seed % 4;
        world_init(w, seed, ttls[k], margins[k], T_HONEST);
        uint64_t start = w->now;
        sim_run(w, D_LIBRARY);
        if (sim_check(w, start, true, buf, sizeof(buf)) != V_OK)
            fail_msg("seed %u ttl %u margin %u: %s", seed, w->ttl, w->margin, buf);
        /* The server model: every renewal it answered 200 was sent before it arrived,
         * so the lease lives at least to (latest such send) + ttl; lost_cb came a full
         * margin before that. */
        uint64_t server_expiry = start + w->ttl;
        for (uint32_t i = 0; i < w->n_kas; i++)
            if (w->kas[i].out == CC_WD_OK && w->kas[i].send + w->ttl > server_expiry)
                server_expiry = w->kas[i].send + w->ttl;
        if (w->n_lost && !(w->lost_at + w->margin <= server_expiry))
            fail_msg("seed %u: lost_cb at %llu, server expiry %llu", seed,
                     (unsigned long long)w->lost_at, (unsigned long long)server_expiry);
        n_lost += w->n_lost;
        for (uint32_t i = 0; i < w->n_kas; i++) {
            n_gone += w->kas[i].out == CC_WD_GONE;
            n_renewals += w->kas[i].out == CC_WD_OK;
        }
    }
    printf("simulated %u holds: %u lost, %u renewals, %u gone answers\n", SIM_SEEDS, n_lost,
           n_renewals, n_gone);
    /* the regimes did exercise both endings and plenty of renewals */
    assert_true(n_lost > SIM_SEEDS / 4 && n_lost < SIM_SEEDS - SIM_SEEDS / 20);
    assert_true(n_gone > 0);
    assert_true(n_renewals > 20 * SIM_SEEDS);
}

/* ==== negative controls ==================================================================== */

/* Each mutant runs through the same checker and must be caught on some seeds; the
 * library, on the very same seeds, passes (test_sim_library_obeys_rule). */
static uint32_t count_violations(enum driver_kind d, enum transport_kind t, const char **example,
                                 char *buf, size_t cap)
{
    uint32_t bad = 0;
    *example = NULL;
    for (uint32_t seed = 1; seed <= SIM_SEEDS; seed++) {
        struct world *w = &g_world;
        world_init(w, seed, 1000, 0, t);
        uint64_t start = w->now;
        sim_run(w, d);
        char why[256];
        enum verdict v = sim_check(w, start, false, why, sizeof(why));
        if (v == V_UNSAFE) {
            bad++;
            snprintf(buf, cap, "%s", why);
            *example = buf;
        }
        if (t == T_HONEST && d == D_LIBRARY && v != V_OK)
            fail_msg("seed %u: the library failed the check: %s", seed, why);
    }
    return bad;
}

static void test_negative_naive_watchdog(void **state)
{
    (void)state;
    char buf[256];
    const char *ex;
    uint32_t bad = count_violations(D_NAIVE, T_HONEST, &ex, buf, sizeof(buf));
    printf("naive watchdog: %u of %u runs caught (e.g. %s)\n", bad, SIM_SEEDS, ex ? ex : "-");
    assert_true(bad > SIM_SEEDS / 10);
}

static void test_negative_receive_time(void **state)
{
    (void)state;
    char buf[256];
    const char *ex;
    uint32_t bad = count_violations(D_RECV_TIME, T_HONEST, &ex, buf, sizeof(buf));
    printf("receive-time driver: %u of %u runs caught (e.g. %s)\n", bad, SIM_SEEDS, ex ? ex : "-");
    assert_true(bad > SIM_SEEDS / 10);
}

static void test_negative_transport_overrun(void **state)
{
    (void)state;
    char buf[256];
    const char *ex;
    uint32_t bad = count_violations(D_LIBRARY, T_OVERRUN, &ex, buf, sizeof(buf));
    printf("library over a transport ignoring its timeout: %u of %u runs caught (e.g. %s)\n", bad,
           SIM_SEEDS, ex ? ex : "-");
    assert_true(bad > SIM_SEEDS / 10);
    /* control of the control: the honest transport, same driver, no violation */
    assert_int_equal(count_violations(D_LIBRARY, T_HONEST, &ex, buf, sizeof(buf)), 0);
}

/* ==== handle: a real renewal thread over an injected transport ============================== */

enum ka_mode { KA_OK, KA_REFUSE, KA_HANG, KA_GONE };

#define REC_MAX 4096

struct rec {
    uint64_t t_ms;
    char endpoint[32];
    char method[8];
    char target[128];
    char body[256];
};

struct fake {
    pthread_mutex_t mu;
    _Atomic int ka_mode;
    uint32_t grant_delay_ms;
    int grant_status; /* 200, or an error status for the acquire */
    const char *grant_code;
    const char *refuse_endpoint;   /* this endpoint is unreachable */
    const char *noleader_endpoint; /* this one answers 503 no_leader */
    const char *kv_body;           /* GET /v1/kv answer, NULL: 404 */
    struct rec recs[REC_MAX];
    uint32_t n_recs;
    uint64_t last_ok_ka_ms; /* call time of the last keepalive answered 200 */
    uint32_t n_ka, n_ka_ok;
};

static struct fake g_fake;

static void fake_reset(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->grant_status = 200;
}

static void fake_respond(struct client_response *resp, int status, const char *body)
{
    resp->status = status;
    size_t n = strlen(body);
    resp->body = malloc(n + 1);
    if (!resp->body)
        abort(); /* runs on the renewal thread: no cmocka assertions there */
    memcpy(resp->body, body, n + 1);
    resp->body_len = n;
}

static int fake_transport(void *arg, const char *endpoint, const struct client_opts *opts,
                          const struct client_request *req, struct client_response *resp,
                          char *errmsg, size_t cap)
{
    struct fake *f = arg;
    uint64_t t0 = mono_ms();
    pthread_mutex_lock(&f->mu);
    if (f->n_recs < REC_MAX) {
        struct rec *r = &f->recs[f->n_recs++];
        r->t_ms = t0;
        snprintf(r->endpoint, sizeof(r->endpoint), "%s", endpoint);
        snprintf(r->method, sizeof(r->method), "%s", req->method);
        snprintf(r->target, sizeof(r->target), "%s", req->target);
        snprintf(r->body, sizeof(r->body), "%.*s", (int)req->body_len,
                 req->body ? (const char *)req->body : "");
    }
    pthread_mutex_unlock(&f->mu);
    memset(resp, 0, sizeof(*resp));
    if (f->refuse_endpoint && strcmp(endpoint, f->refuse_endpoint) == 0) {
        snprintf(errmsg, cap, "connection refused");
        return CLIENT_EREFUSED;
    }
    if (f->noleader_endpoint && strcmp(endpoint, f->noleader_endpoint) == 0) {
        fake_respond(resp, 503, "{\"error\":{\"code\":\"no_leader\",\"message\":\"no leader\"}}");
        return 0;
    }
    const char *t = req->target;
    if (strstr(t, "/keepalive")) {
        int mode = atomic_load(&f->ka_mode);
        pthread_mutex_lock(&f->mu);
        f->n_ka++;
        if (mode == KA_OK) {
            f->n_ka_ok++;
            f->last_ok_ka_ms = t0;
        }
        pthread_mutex_unlock(&f->mu);
        switch (mode) {
        case KA_OK:
            fake_respond(resp, 200, "{\"id\":42,\"ttl_ms\":1000}");
            return 0;
        case KA_GONE:
            fake_respond(resp, 404,
                         "{\"error\":{\"code\":\"lease_not_found\",\"message\":\"no lease 42\"}}");
            return 0;
        case KA_HANG:
            sleep_ms(opts->timeout_ms); /* a silent server: the exchange times out */
            snprintf(errmsg, cap, "no complete response in time");
            return CLIENT_ETIMEDOUT;
        default:
            snprintf(errmsg, cap, "connection refused");
            return CLIENT_EREFUSED;
        }
    }
    if (strncmp(t, "/v1/lock/", 9) == 0 || strstr(t, "/campaign")) {
        if (strcmp(req->method, "DELETE") == 0) {
            fake_respond(resp, 200, "{\"token\":7,\"hold_count\":0,\"released\":true}");
            return 0;
        }
        if (f->grant_delay_ms)
            sleep_ms(f->grant_delay_ms);
        if (f->grant_status != 200) {
            char b[160];
            snprintf(b, sizeof(b), "{\"error\":{\"code\":\"%s\",\"message\":\"scripted\"}}",
                     f->grant_code ? f->grant_code : "x");
            fake_respond(resp, f->grant_status, b);
            return 0;
        }
        fake_respond(resp, 200,
                     "{\"name\":\"job\",\"owner\":\"w\",\"token\":7,\"hold_count\":1,"
                     "\"reentrant\":false,\"lease\":42,\"ttl_ms\":1000}");
        return 0;
    }
    if (strstr(t, "/resign")) {
        fake_respond(resp, 200, "{\"token\":7,\"hold_count\":0,\"released\":true}");
        return 0;
    }
    if (strncmp(t, "/v1/lease/", 10) == 0 && strcmp(req->method, "DELETE") == 0) {
        fake_respond(resp, 200, "{\"id\":42,\"deleted_keys\":0,\"released_locks\":0}");
        return 0;
    }
    if (strncmp(t, "/v1/kv/", 7) == 0 && strcmp(req->method, "GET") == 0) {
        if (f->kv_body)
            fake_respond(resp, 200, f->kv_body);
        else
            fake_respond(resp, 404,
                         "{\"error\":{\"code\":\"key_not_found\",\"message\":\"key not found\"}}");
        return 0;
    }
    fake_respond(resp, 500, "{\"error\":{\"code\":\"unexpected\",\"message\":\"fake\"}}");
    return 0;
}

static uint32_t fake_count(struct fake *f, const char *method, const char *needle)
{
    uint32_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (uint32_t i = 0; i < f->n_recs; i++)
        n += strcmp(f->recs[i].method, method) == 0 && strstr(f->recs[i].target, needle) != NULL;
    pthread_mutex_unlock(&f->mu);
    return n;
}

struct lost_rec {
    atomic_int count;
    _Atomic uint64_t at_ms;
    atomic_bool valid_inside; /* cc_lock_valid as seen from inside the callback */
    _Atomic uint64_t token_inside;
};

static void on_lost(cc_lock *l, void *arg)
{
    struct lost_rec *r = arg;
    atomic_store(&r->at_ms, mono_ms());
    atomic_store(&r->valid_inside, cc_lock_valid(l));
    atomic_store(&r->token_inside, cc_lock_token(l)); /* readable from the callback */
    atomic_fetch_add(&r->count, 1);
}

static cc_client *fake_client(const char *endpoints, uint32_t margin_ms)
{
    cc_client *c = NULL;
    struct cc_options o = {.request_timeout_ms = 2000, .lock_margin_ms = margin_ms};
    assert_int_equal(cc_client_new(endpoints, &o, &c), 0);
    cc__set_transport(c, fake_transport, &g_fake);
    return c;
}

/* Waits (bounded) until lost_cb ran. */
static void wait_lost(struct lost_rec *r, uint64_t max_ms)
{
    uint64_t end = mono_ms() + max_ms;
    while (atomic_load(&r->count) == 0 && mono_ms() < end)
        sleep_ms(2);
    assert_int_equal(atomic_load(&r->count), 1);
}

static void test_handle_renews_and_releases(void **state)
{
    (void)state;
    fake_reset(&g_fake);
    cc_client *c = fake_client("10.0.0.1:2479", 0);
    struct lost_rec lr = {0};
    cc_lock *l = NULL;
    uint64_t t0 = mono_ms();
    assert_int_equal(cc_lock_acquire(c, "job", "w1", 1000, 0, on_lost, &lr, &l), 0);
    assert_int_equal(cc_lock_token(l), 7);
    assert_int_equal(cc_lock_lease(l), 42);
    assert_string_equal(cc_lock_name(l), "job");
    assert_string_equal(cc_lock_owner(l), "w1");
    assert_true(cc_lock_valid(l));
    assert_true(cc_lock_valid_ms(l) <= 900);
    assert_int_equal(fake_count(&g_fake, "POST", "/keepalive"), 0); /* fresh: no confirm */
    sleep_ms(1300);
    /* ttl/3 = 333 ms: keepalives near 333, 666, 1000 */
    uint32_t n = fake_count(&g_fake, "POST", "/keepalive");
    assert_true(n >= 2 && n <= 6); /* (slack for a loaded machine) */
    assert_true(cc_lock_valid(l));
    assert_true(cc_lock_valid_ms(l) > 200); /* renewed since the acquire's bound (t0+900) */
    assert_true(g_fake.last_ok_ka_ms >= t0 + 300);
    assert_int_equal(cc_lock_release(l), 0);
    assert_int_equal(fake_count(&g_fake, "DELETE", "/v1/lock/job"), 1);
    assert_int_equal(fake_count(&g_fake, "DELETE", "/v1/lease/42"), 1);
    bool found = false;
    for (uint32_t i = 0; i < g_fake.n_recs; i++)
        if (strcmp(g_fake.recs[i].method, "DELETE") == 0 &&
            strstr(g_fake.recs[i].target, "/v1/lock/job")) {
            assert_non_null(strstr(g_fake.recs[i].body, "\"owner\":\"w1\""));
            assert_non_null(strstr(g_fake.recs[i].body, "\"token\":7"));
            found = true;
        }
    assert_true(found);
    n = fake_count(&g_fake, "POST", "/keepalive");
    sleep_ms(500);
    assert_int_equal(fake_count(&g_fake, "POST", "/keepalive"), n); /* the thread is gone */
    assert_int_equal(atomic_load(&lr.count), 0);
    cc_client_free(c);
}

/* Renewals stop working (mode); lost_cb must come at last_ok_send + ttl - margin: not
 * before (minus clock-reading slack), and before the server's earliest expiry. */
static void check_lost_timing(enum ka_mode mode, uint32_t margin_opt)
{
    fake_reset(&g_fake);
    cc_client *c = fake_client("10.0.0.1:2479", margin_opt);
    uint32_t ttl = 1000, margin = margin_opt ? margin_opt : cc_wd_default_margin_ms(1000);
    struct lost_rec lr = {0};
    cc_lock *l = NULL;
    assert_int_equal(cc_lock_acquire(c, "job", NULL, ttl, 0, on_lost, &lr, &l), 0);
    assert_non_null(strchr(cc_lock_owner(l), ':')); /* a generated host:pid:random owner */
    sleep_ms(750);                                  /* two renewals */
    atomic_store(&g_fake.ka_mode, mode);
    wait_lost(&lr, 3 * (uint64_t)ttl);
    pthread_mutex_lock(&g_fake.mu); /* every 200 answered by now (one may have raced the switch) */
    uint64_t last_ok = g_fake.last_ok_ka_ms;
    pthread_mutex_unlock(&g_fake.mu);
    assert_true(last_ok > 0);
    uint64_t at = atomic_load(&lr.at_ms);
    uint64_t bound = last_ok + ttl - margin;
    printf("mode %d margin %u: lost_cb %lld ms after last_ok_send + ttl - margin "
           "(server expiry no earlier than %u ms after that)\n",
           mode, margin, (long long)at - (long long)bound, margin);
    assert_true(at + 20 >= bound);   /* not early (the watchdog's send time is a bit earlier) */
    assert_true(at < last_ok + ttl); /* before the server can have expired the lease */
    assert_false(atomic_load(&lr.valid_inside));
    assert_int_equal(atomic_load(&lr.token_inside), 7);
    assert_false(cc_lock_valid(l));
    assert_int_equal(cc_lock_valid_ms(l), 0);
    uint32_t n = g_fake.n_ka;
    sleep_ms(300);
    assert_int_equal(g_fake.n_ka, n);            /* renewing stopped */
    assert_int_equal(atomic_load(&lr.count), 1); /* exactly once */
    atomic_store(&g_fake.ka_mode, KA_OK);
    assert_int_equal(cc_lock_release(l), CC_ELOST);
    assert_int_equal(fake_count(&g_fake, "DELETE", "/v1/lock/job"), 1); /* still tried */
    cc_client_free(c);
}

/* Real time: the margins leave room for a loaded test machine's scheduling delays
 * (the exact instant is checked on the fake clock above). */
static void test_handle_lost_after_refusals(void **state)
{
    (void)state;
    check_lost_timing(KA_REFUSE, 250);
}

static void test_handle_lost_after_hangs(void **state)
{
    (void)state;
    check_lost_timing(KA_HANG, 250);
}

static void test_handle_lost_custom_margin(void **state)
{
    (void)state;
    check_lost_timing(KA_HANG, 450);
}

static void test_handle_lost_on_gone(void **state)
{
    (void)state;
    fake_reset(&g_fake);
    cc_client *c = fake_client("10.0.0.1:2479", 0);
    struct lost_rec lr = {0};
    cc_lock *l = NULL;
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, on_lost, &lr, &l), 0);
    uint64_t t0 = mono_ms(); /* the acquire's bound is near t0 + 900 */
    atomic_store(&g_fake.ka_mode, KA_GONE);
    wait_lost(&lr, 2000);
    uint64_t at = atomic_load(&lr.at_ms);
    pthread_mutex_lock(&g_fake.mu);
    uint64_t gone_at = 0; /* when the first 404 was answered */
    for (uint32_t i = 0; i < g_fake.n_recs && !gone_at; i++)
        if (strstr(g_fake.recs[i].target, "/keepalive"))
            gone_at = g_fake.recs[i].t_ms;
    pthread_mutex_unlock(&g_fake.mu);
    assert_true(gone_at > 0 && at >= gone_at);
    assert_true(at < t0 + 900 || at < gone_at + 50); /* at the answer, not at the bound */
    assert_false(cc_lock_valid(l));
    assert_int_equal(cc_lock_release(l), CC_ELOST);
    cc_client_free(c);
}

static void test_handle_confirms_after_long_wait(void **state)
{
    (void)state;
    fake_reset(&g_fake);
    g_fake.grant_delay_ms = 450; /* > ttl/3 of 1000: the acquire's own bound is stale */
    cc_client *c = fake_client("10.0.0.1:2479", 0);
    cc_lock *l = NULL;
    uint64_t t0 = mono_ms();
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 5000, NULL, NULL, &l), 0);
    assert_int_equal(fake_count(&g_fake, "POST", "/keepalive"), 1); /* before returning */
    assert_true(cc_lock_valid_ms(l) > 600); /* from the confirmation (the acquire's: <450) */
    assert_true(g_fake.last_ok_ka_ms >= t0 + 450);
    assert_int_equal(cc_lock_release(l), 0);
    /* If the lease turns out gone, the grant is given back and never handed out:
     * CC_ELOST when trying once, or after CC_GRANT_ROUNDS_MAX such grants with time
     * left; CC_ELOCKTIMEOUT when the wait ran out meanwhile (the caller never held it). */
    const struct {
        int64_t wait_ms;
        int want;
    } cases[] = {{0, CC_ELOST}, {1000, CC_ELOCKTIMEOUT}, {20000, CC_ELOST}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_reset(&g_fake);
        g_fake.grant_delay_ms = 450;
        atomic_store(&g_fake.ka_mode, KA_GONE);
        cc__set_transport(c, fake_transport, &g_fake);
        assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, cases[i].wait_ms, NULL, NULL, &l),
                         cases[i].want);
        assert_null(l);
        assert_non_null(strstr(cc_last_error(), "lease"));
        assert_true(fake_count(&g_fake, "DELETE", "/v1/lock/job") >= 1);
        assert_true(fake_count(&g_fake, "DELETE", "/v1/lock/job") ==
                    fake_count(&g_fake, "POST", "/v1/lock/job"));
    }
    cc_client_free(c);
}

static void test_handle_failover(void **state)
{
    (void)state;
    fake_reset(&g_fake);
    g_fake.refuse_endpoint = "a:1";
    g_fake.noleader_endpoint = "b:2";
    cc_client *c = fake_client("a:1, b:2 ,c:3", 0);
    cc_lock *l = NULL;
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), 0);
    assert_true(g_fake.n_recs >= 3);
    assert_string_equal(g_fake.recs[0].endpoint, "a:1");
    assert_string_equal(g_fake.recs[1].endpoint, "b:2");
    assert_string_equal(g_fake.recs[2].endpoint, "c:3");
    uint64_t end = mono_ms() + 3000;
    while (fake_count(&g_fake, "POST", "/keepalive") == 0 && mono_ms() < end)
        sleep_ms(5);
    assert_true(g_fake.n_recs >= 4);
    assert_string_equal(g_fake.recs[3].endpoint, "c:3"); /* the one that answered */
    assert_int_equal(cc_lock_release(l), 0);
    cc_client_free(c);
    /* nobody reachable */
    fake_reset(&g_fake);
    g_fake.refuse_endpoint = "a:1";
    c = fake_client("a:1,a:1", 0);
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), CC_EUNREACHABLE);
    assert_non_null(strstr(cc_last_error(), "none of the 2 endpoints"));
    cc_client_free(c);
}

static void test_handle_errors(void **state)
{
    (void)state;
    fake_reset(&g_fake);
    cc_client *c = fake_client("10.0.0.1:2479", 0);
    cc_lock *l = NULL;
    g_fake.grant_status = 409;
    g_fake.grant_code = "lock_busy";
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), CC_EBUSY);
    assert_non_null(strstr(cc_last_error(), "409 lock_busy"));
    g_fake.grant_code = "not_holder";
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), CC_ENOTHOLDER);
    g_fake.grant_status = 400;
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), CC_EBADREQUEST);
    g_fake.grant_status = 429;
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), CC_ELIMIT);
    /* a wait that keeps timing out ends with CC_ELOCKTIMEOUT once the wait is spent */
    g_fake.grant_status = 409;
    g_fake.grant_code = "lock_timeout";
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 50, NULL, NULL, &l), CC_ELOCKTIMEOUT);
    uint32_t sent = g_fake.n_recs;
    /* arguments are refused before anything is sent */
    char big[CC_LOCK_NAME_BYTES_MAX + 2];
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(cc_lock_acquire(c, big, "w", 1000, 0, NULL, NULL, &l), CC_ENAMETOOBIG);
    assert_int_equal(cc_lock_acquire(c, "a/b", "w", 1000, 0, NULL, NULL, &l), CC_EINVAL);
    assert_int_equal(cc_lock_acquire(c, "", "w", 1000, 0, NULL, NULL, &l), CC_EINVAL);
    assert_int_equal(cc_lock_acquire(c, "job", "", 1000, 0, NULL, NULL, &l), CC_EINVAL);
    assert_int_equal(cc_lock_acquire(c, "job", "w", 499, 0, NULL, NULL, &l), CC_ETTL);
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, -2, NULL, NULL, &l), CC_EINVAL);
    char owner[CC_LOCK_OWNER_BYTES_MAX + 2];
    memset(owner, 'o', sizeof(owner) - 1);
    owner[sizeof(owner) - 1] = '\0';
    assert_int_equal(cc_lock_acquire(c, "job", owner, 1000, 0, NULL, NULL, &l), CC_EOWNERTOOBIG);
    char value[CC_LOCK_VALUE_BYTES_MAX + 2];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    assert_int_equal(cc_election_campaign(c, "e", "w", value, 1000, 0, NULL, NULL, &l),
                     CC_ELOCKVALUETOOBIG);
    assert_int_equal(g_fake.n_recs, sent);
    cc_client_free(c);
    c = fake_client("10.0.0.1:2479", 501);
    assert_int_equal(cc_lock_acquire(c, "job", "w", 1000, 0, NULL, NULL, &l), CC_EMARGIN);
    cc_client_free(c);
    /* endpoints */
    assert_int_equal(cc_client_new("a:1,,b:2", NULL, &c), CC_EINVAL);
    assert_int_equal(cc_client_new("nohostport", NULL, &c), CC_EINVAL);
    assert_int_equal(cc_client_new("https://a:1", NULL, &c), CC_EINVAL);
    char many[CC_ENDPOINTS_MAX * 8 + 16] = "";
    size_t used = 0;
    for (uint32_t i = 0; i <= CC_ENDPOINTS_MAX; i++)
        used += (size_t)snprintf(many + used, sizeof(many) - used, "%sh:1", i ? "," : "");
    assert_true(used < sizeof(many));
    assert_int_equal(cc_client_new(many, NULL, &c), CC_EENDPOINTS);
}

static void test_election_and_kv(void **state)
{
    (void)state;
    fake_reset(&g_fake);
    cc_client *c = fake_client("10.0.0.1:2479", 0);
    cc_lock *l = NULL;
    assert_int_equal(cc_election_campaign(c, "svc", "n1", "10.0.0.1:80", 1000, 0, NULL, NULL, &l),
                     0);
    assert_non_null(strstr(g_fake.recs[0].target, "/v1/election/svc/campaign"));
    assert_non_null(strstr(g_fake.recs[0].body, "\"value\":\"10.0.0.1:80\""));
    assert_int_equal(cc_election_resign(l), 0);
    assert_int_equal(fake_count(&g_fake, "POST", "/v1/election/svc/resign"), 1);
    /* keys: text and base64 values, missing keys */
    uint8_t *v = NULL;
    size_t n = 0;
    int64_t mod = 0;
    g_fake.kv_body = "{\"key\":\"k\",\"value\":\"hello\",\"mod_revision\":9}";
    assert_int_equal(cc_kv_get(c, "k", &v, &n, &mod), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "hello", 5);
    assert_int_equal(mod, 9);
    free(v);
    g_fake.kv_body = "{\"key\":\"k\",\"value_base64\":\"YmluAP8=\",\"mod_revision\":10}";
    assert_int_equal(cc_kv_get(c, "k", &v, &n, NULL), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "bin\0\377", 5);
    free(v);
    g_fake.kv_body = NULL;
    assert_int_equal(cc_kv_get(c, "k", &v, &n, NULL), CC_ENOTFOUND);
    assert_null(v);
    assert_non_null(strstr(cc_last_error(), "key_not_found"));
    cc_client_free(c);
}

static void test_strerror_covers_every_code(void **state)
{
    (void)state;
    const char *unknown = cc_strerror(-1);
    for (int rv = CC_EINVAL; rv >= CC_EMARGIN; rv--) {
        assert_ptr_not_equal(cc_strerror(rv), unknown);
        for (int other = CC_EINVAL; other > rv; other--)
            assert_string_not_equal(cc_strerror(rv), cc_strerror(other));
    }
    assert_string_equal(cc_strerror(0), "success");
}

/* ==== main ================================================================================= */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(TEST_ALARM_S);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_margin_and_init),
        cmocka_unit_test(test_schedule_and_bound),
        cmocka_unit_test(test_late_success_is_ignored),
        cmocka_unit_test(test_gone_is_immediate),
        cmocka_unit_test(test_sim_library_obeys_rule),
        cmocka_unit_test(test_negative_naive_watchdog),
        cmocka_unit_test(test_negative_receive_time),
        cmocka_unit_test(test_negative_transport_overrun),
        cmocka_unit_test(test_handle_renews_and_releases),
        cmocka_unit_test(test_handle_lost_after_refusals),
        cmocka_unit_test(test_handle_lost_after_hangs),
        cmocka_unit_test(test_handle_lost_custom_margin),
        cmocka_unit_test(test_handle_lost_on_gone),
        cmocka_unit_test(test_handle_confirms_after_long_wait),
        cmocka_unit_test(test_handle_failover),
        cmocka_unit_test(test_handle_errors),
        cmocka_unit_test(test_election_and_kv),
        cmocka_unit_test(test_strerror_covers_every_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
