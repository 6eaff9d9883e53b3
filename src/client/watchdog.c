/* watchdog.c -- the lock watchdog: deadline rule (pure) and the loop that drives it.
 *
 * Invariants (watchdog.h has the rule and its reason):
 *   - valid_until_ms only moves later on a success that arrived before it, and only to
 *     (send time of that success) + ttl - margin; it moves earlier only on GONE.
 *   - A RENEW's timeout never reaches past valid_until_ms, so the loop is back in
 *     cc_wd_next by the bound and reports LOST there, not later.
 *   - LOST is reported once; afterwards cc_wd_next says STOPPED and results are ignored.
 *
 * Sections: rule | loop.
 */
#include "client/watchdog.h"

#include "base/assert.h"
#include "conclave/client.h"

/* ---- rule ------------------------------------------------------------------------------ */

uint32_t cc_wd_default_margin_ms(uint32_t ttl_ms)
{
    uint32_t m = ttl_ms / 10;
    return m > CC_MARGIN_MS_MIN ? m : CC_MARGIN_MS_MIN;
}

_Static_assert(CC_MARGIN_MS_MIN <= CC_TTL_MS_MIN / 2, "the default margin fits the smallest ttl");

static uint32_t wd_retry_ms(uint32_t ttl_ms)
{
    uint32_t r = ttl_ms / 20;
    return r < CC_WD_RETRY_MS_MIN   ? CC_WD_RETRY_MS_MIN
           : r > CC_WD_RETRY_MS_MAX ? CC_WD_RETRY_MS_MAX
                                    : r;
}

int cc_wd_init(struct cc_wd *wd, uint32_t ttl_ms, uint32_t margin_ms, uint64_t send_ms)
{
    CC_ASSERT(wd != NULL);
    if (ttl_ms < CC_TTL_MS_MIN || ttl_ms > CC_TTL_MS_MAX)
        return CC_ETTL;
    if (margin_ms == 0)
        margin_ms = cc_wd_default_margin_ms(ttl_ms);
    if (margin_ms > ttl_ms / 2)
        return CC_EMARGIN;
    wd->ttl_ms = ttl_ms;
    wd->margin_ms = margin_ms;
    wd->last_send_ms = send_ms;
    wd->next_try_ms = send_ms + ttl_ms / 3;
    wd->n_failures = 0;
    wd->n_renewals = 0;
    atomic_store(&wd->valid_until_ms, send_ms + ttl_ms - margin_ms);
    atomic_store(&wd->lost, false);
    return 0;
}

enum cc_wd_action cc_wd_next(struct cc_wd *wd, uint64_t now_ms, uint64_t *until_ms,
                             uint32_t *timeout_ms)
{
    CC_ASSERT(wd != NULL && until_ms != NULL && timeout_ms != NULL);
    if (atomic_load(&wd->lost))
        return CC_WD_STOPPED;
    uint64_t vu = atomic_load(&wd->valid_until_ms);
    if (now_ms >= vu) {
        atomic_store(&wd->lost, true);
        return CC_WD_LOST;
    }
    if (now_ms >= wd->next_try_ms) {
        uint64_t left = vu - now_ms;
        uint32_t t = wd->ttl_ms / 3;
        *timeout_ms = left < t ? (uint32_t)left : t;
        CC_ASSERT(*timeout_ms > 0);
        return CC_WD_RENEW;
    }
    *until_ms = wd->next_try_ms < vu ? wd->next_try_ms : vu;
    CC_ASSERT(*until_ms > now_ms);
    return CC_WD_WAIT;
}

void cc_wd_on_result(struct cc_wd *wd, uint64_t send_ms, uint64_t now_ms,
                     enum cc_wd_outcome outcome)
{
    CC_ASSERT(wd != NULL);
    CC_ASSERT(send_ms <= now_ms);
    if (atomic_load(&wd->lost))
        return;
    uint64_t vu = atomic_load(&wd->valid_until_ms);
    switch (outcome) {
    case CC_WD_OK: {
        if (now_ms >= vu)
            return; /* too late: trust already ran out, and it does not come back */
        uint64_t bound = send_ms + wd->ttl_ms - wd->margin_ms;
        if (bound > vu)
            atomic_store(&wd->valid_until_ms, bound);
        if (send_ms > wd->last_send_ms)
            wd->last_send_ms = send_ms;
        wd->next_try_ms = send_ms + wd->ttl_ms / 3;
        wd->n_failures = 0;
        wd->n_renewals++;
        return;
    }
    case CC_WD_GONE:
        if (now_ms < vu)
            atomic_store(&wd->valid_until_ms, now_ms);
        return;
    case CC_WD_FAILED:
        wd->n_failures++;
        wd->next_try_ms = now_ms + wd_retry_ms(wd->ttl_ms);
        return;
    }
    CC_UNREACHABLE();
}

bool cc_wd_valid(const struct cc_wd *wd, uint64_t now_ms)
{
    CC_ASSERT(wd != NULL);
    return !atomic_load(&wd->lost) && now_ms < atomic_load(&wd->valid_until_ms);
}

uint64_t cc_wd_valid_until(const struct cc_wd *wd)
{
    CC_ASSERT(wd != NULL);
    return atomic_load(&wd->valid_until_ms);
}

/* ---- loop ------------------------------------------------------------------------------ */

void cc_wd_run(struct cc_wd *wd, const struct cc_wd_env *env)
{
    CC_ASSERT(wd != NULL && env != NULL);
    CC_ASSERT(env->now_ms && env->sleep_until && env->keepalive && env->stopping && env->lost);
    for (;;) {
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
            /* The send time is taken before the request goes out (even before the
             * connect): the server's now when it renews is later still, so the bound
             * derived from it is on the safe side. */
            enum cc_wd_outcome r = env->keepalive(env->arg, timeout);
            cc_wd_on_result(wd, now, env->now_ms(env->arg), r);
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
