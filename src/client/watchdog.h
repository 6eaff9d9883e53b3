/* watchdog.h -- the lock watchdog's deadline rule as a pure core, and the loop that
 * drives it through an injectable environment (clock, sleep, keepalive, lost).
 *
 * The rule (include/conclave/client.h, docs/client.md): a lease renewed by a keepalive
 * SENT at time s cannot expire on the server before s + ttl, so the holder trusts its
 * lock until
 *
 *     valid_until = s_last + ttl - margin
 *
 * where s_last is the send time of the last successful keepalive (at first: the send
 * time of the acquire that created the lease, or of the first confirming keepalive).
 * The core never lets anything extend trust past that: a keepalive's timeout is capped
 * so that it ends by valid_until, a success that arrives at or after valid_until is
 * ignored, and once now >= valid_until the core reports LOST exactly once and then only
 * STOPPED. A GONE answer (404/410) makes the lock invalid at once.
 *
 * Schedule: the next keepalive is due at s_last + ttl/3; after a failure it is retried
 * every CC_WD_RETRY_MS-ish (ttl/20 clamped to [10, 250] ms) until the bound.
 *
 * Pure: cc_wd_init/next/on_result take the time as an argument and do no IO. Only
 * valid_until_ms and lost are atomics, so that other threads may read validity while
 * the renewal thread (the only writer) runs the loop. cc_wd_run is the loop itself: the
 * library's renewal thread runs it with the real clock and HTTP; the unit test runs
 * the same function with a fake clock and transport.
 *
 * Errors: cc_wd_init returns CC_EMARGIN / CC_ETTL (include/conclave/client.h).
 */
#ifndef CC_CLIENT_WATCHDOG_H
#define CC_CLIENT_WATCHDOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CC_WD_RETRY_MS_MIN 10u  /* a failed keepalive is retried no sooner than this */
#define CC_WD_RETRY_MS_MAX 250u /* ... and no later than this (unless the bound is nearer) */

enum cc_wd_action {
    CC_WD_WAIT = 1, /* sleep until *until_ms (or until stopped) */
    CC_WD_RENEW,    /* send a keepalive now, bounded by *timeout_ms */
    CC_WD_LOST,     /* call lost_cb now; reported exactly once */
    CC_WD_STOPPED,  /* lost was reported: nothing more to do */
};

enum cc_wd_outcome {
    CC_WD_OK = 1, /* 200: the lease was renewed */
    CC_WD_GONE,   /* 404/410: the lease no longer exists */
    CC_WD_FAILED, /* anything else: unreachable, timeout, 503... */
};

struct cc_wd {
    uint32_t ttl_ms;
    uint32_t margin_ms;
    uint64_t last_send_ms;           /* send time of the last success (the basis of the bound) */
    uint64_t next_try_ms;            /* when the next keepalive is due */
    uint32_t n_failures;             /* consecutive failed keepalives */
    uint32_t n_renewals;             /* successful keepalives */
    _Atomic uint64_t valid_until_ms; /* last_send_ms + ttl - margin, or earlier if GONE */
    atomic_bool lost;                /* LOST has been reported */
};

/* The default margin for a ttl: max(ttl/10, CC_MARGIN_MS_MIN). */
uint32_t cc_wd_default_margin_ms(uint32_t ttl_ms);

/* Starts the bound from send_ms, the send time of the request that created or last
 * renewed the lease. margin_ms 0 means the default. Returns 0, CC_ETTL (ttl outside
 * the server's range) or CC_EMARGIN (margin > ttl/2). May be called again to restart
 * from a fresher confirmed send time (before the loop runs). */
int cc_wd_init(struct cc_wd *wd, uint32_t ttl_ms, uint32_t margin_ms, uint64_t send_ms);

/* What to do at now_ms. WAIT: *until_ms is when to call again (never later than the
 * bound). RENEW: *timeout_ms bounds the keepalive so that it ends by the bound and
 * within ttl/3. LOST: report it now (the core has marked itself lost). */
enum cc_wd_action cc_wd_next(struct cc_wd *wd, uint64_t now_ms, uint64_t *until_ms,
                             uint32_t *timeout_ms);

/* The outcome of the keepalive sent at send_ms, known at now_ms (>= send_ms). */
void cc_wd_on_result(struct cc_wd *wd, uint64_t send_ms, uint64_t now_ms,
                     enum cc_wd_outcome outcome);

/* now_ms < valid_until and LOST not reported. Any thread. */
bool cc_wd_valid(const struct cc_wd *wd, uint64_t now_ms);
uint64_t cc_wd_valid_until(const struct cc_wd *wd);

/* ---- the loop ------------------------------------------------------------------------ */

struct cc_wd_env {
    void *arg;
    uint64_t (*now_ms)(void *arg);
    /* Blocks until now_ms() >= until_ms or a stop is requested; true when stopping. */
    bool (*sleep_until)(void *arg, uint64_t until_ms);
    /* One keepalive that returns within timeout_ms (the loop relies on it). */
    enum cc_wd_outcome (*keepalive)(void *arg, uint32_t timeout_ms);
    /* True once a stop has been requested (checked after each keepalive). */
    bool (*stopping)(void *arg);
    /* Called once when the lock is lost, then the loop returns. */
    void (*lost)(void *arg);
};

/* Runs the rule until LOST (env->lost called, then returns) or a stop. Each iteration
 * sleeps to a later time or sends one bounded keepalive, so it neither spins nor
 * blocks past the bound. */
void cc_wd_run(struct cc_wd *wd, const struct cc_wd_env *env);

#endif /* CC_CLIENT_WATCHDOG_H */
