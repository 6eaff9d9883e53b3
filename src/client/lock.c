/* lock.c -- distributed locks and elections for the C client library: acquire with a
 * server-made lease, a renewal thread per hold that runs the watchdog rule
 * (watchdog.h), owner-checked release (include/conclave/client.h; docs/client.md).
 *
 * Acquire. POST /v1/lock/{name} (or /v1/election/{name}/campaign) without a lease: the
 * server grants one of ttl_ms for this hold, keeps it alive while the request waits in
 * the FIFO, and names it in the answer. A wait longer than the server's 10 s per
 * request is a series of requests; between them, and after a 503 or a lost connection,
 * the request is sent again while the wait lasts.
 *
 * The first bound. The lease was made after our request was sent, and a lease deadline
 * only moves later, so the acquire's send time s0 already gives a safe bound
 * s0 + ttl - margin. After a long wait that bound may be nearly or wholly spent although
 * the lease is fine (the server renewed it while we waited); so when the first renewal
 * is already due at the grant (now >= s0 + ttl/3), one keepalive confirms the hold
 * before the handle is handed out, and its send time becomes the basis. If that
 * keepalive says the lease is gone, the grant is worthless: it is given back and, while
 * the wait lasts, the acquire starts over.
 *
 * Threads. Each handle owns one renewal thread (all signals blocked, so a program's
 * handlers run on its own threads), which runs cc_wd_run with the real clock and HTTP
 * and calls lost_cb. cc_lock_release stops it (a condition variable on
 * CLOCK_MONOTONIC wakes it; an in-flight keepalive ends within its ttl/3 timeout) and
 * joins it. valid_until/lost are atomics in the watchdog core, read lock-free.
 *
 * Sections: limits | handle | acquire | renewal thread | public API.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/assert.h"
#include "client/client_internal.h"
#include "client/watchdog.h"

/* ---- limits --------------------------------------------------------------------------- */

#define CC_WAIT_CHUNK_MS      10000u /* one request's wait: the server's API_LOCK_WAIT_MS_MAX */
#define CC_RETRY_BACKOFF_MS   200u   /* between acquire attempts after a 503 or lost node */
#define CC_CONFIRM_TRIES      3u     /* keepalives that may confirm a grant after a long wait */
#define CC_CONFIRM_BACKOFF_MS 50u
#define CC_GRANT_ROUNDS_MAX   4u      /* grants whose lease died before confirmation, retried */
#define CC_SLEEP_WAKEUPS_MAX  100000u /* spurious condvar wake-ups tolerated per sleep */
#define CC_TARGET_BYTES       (3u * CC_LOCK_NAME_BYTES_MAX + 64u)

_Static_assert(CC_WAIT_CHUNK_MS + CLIENT_TIMEOUT_MS_MAX <= UINT32_MAX, "a chunk's timeout fits");

/* ---- handle ---------------------------------------------------------------------------- */

struct cc_lock {
    cc_client *client; /* borrowed: outlives the handle */
    bool election;
    char name[CC_LOCK_NAME_BYTES_MAX + 1];
    char owner[CC_LOCK_OWNER_BYTES_MAX + 1];
    char esc_name[3 * CC_LOCK_NAME_BYTES_MAX + 1];
    uint32_t ttl_ms;
    uint32_t margin_ms; /* 0: the default for ttl_ms */
    uint64_t token;
    int64_t lease;
    struct cc_wd wd;
    cc_lock_lost_cb lost_cb;
    void *lost_arg;
    pthread_mutex_t mu; /* guards stop */
    pthread_cond_t cond;
    bool stop;
    bool thread_started;
    pthread_t thread;
};

static void lock_sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static struct cc_lock *lock_new(cc_client *c, bool election, const char *name, const char *owner,
                                uint32_t ttl_ms, cc_lock_lost_cb lost_cb, void *lost_arg)
{
    struct cc_lock *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(l);
        return NULL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        free(l);
        return NULL;
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        pthread_cond_destroy(&l->cond);
        free(l);
        return NULL;
    }
    l->client = c;
    l->election = election;
    snprintf(l->name, sizeof(l->name), "%s", name);
    if (owner)
        snprintf(l->owner, sizeof(l->owner), "%s", owner);
    else
        cc__make_owner(l->owner, sizeof(l->owner));
    cc__escape_segment(l->name, l->esc_name, sizeof(l->esc_name));
    l->ttl_ms = ttl_ms;
    l->margin_ms = c->lock_margin_ms;
    l->lost_cb = lost_cb;
    l->lost_arg = lost_arg;
    return l;
}

static void lock_free(struct cc_lock *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
    free(l);
}

/* One keepalive of the hold's lease, bounded by timeout_ms. */
static enum cc_wd_outcome lock_keepalive(struct cc_lock *l, uint32_t timeout_ms)
{
    char t[64];
    snprintf(t, sizeof(t), "/v1/lease/%" PRId64 "/keepalive", l->lease);
    struct client_response resp;
    int rv = cc__request(l->client, "POST", t, NULL, timeout_ms, &resp);
    if (rv != 0)
        return CC_WD_FAILED;
    int status = resp.status;
    if (status != 200)
        cc__status_error(&resp); /* keeps the server's message as this thread's detail */
    client_response_free(&resp);
    return status == 200 ? CC_WD_OK : status == 404 || status == 410 ? CC_WD_GONE : CC_WD_FAILED;
}

/* Releases (or resigns) the hold, then revokes its lease. Returns the release's result. */
static int lock_give_back(struct cc_lock *l)
{
    cc_client *c = l->client;
    json_t *b = json_pack("{s:s, s:I}", "owner", l->owner, "token", (json_int_t)l->token);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body)
        return CC_ENOMEM;
    char t[CC_TARGET_BYTES];
    if (l->election)
        snprintf(t, sizeof(t), "/v1/election/%s/resign", l->esc_name);
    else
        snprintf(t, sizeof(t), "/v1/lock/%s", l->esc_name);
    struct client_response resp;
    int rv = cc__request(c, l->election ? "POST" : "DELETE", t, body, c->request_timeout_ms, &resp);
    free(body);
    if (rv == 0 && resp.status / 100 != 2)
        rv = cc__status_error(&resp);
    client_response_free(&resp);
    /* Best effort: a lease nobody renews ends within ttl anyway. */
    snprintf(t, sizeof(t), "/v1/lease/%" PRId64, l->lease);
    if (cc__request(c, "DELETE", t, NULL, c->request_timeout_ms, &resp) == 0)
        client_response_free(&resp);
    return rv;
}

/* ---- acquire ----------------------------------------------------------------------------- */

static bool acquire_retriable(int rv, uint32_t attempt)
{
    return rv == CC_ELOCKTIMEOUT || rv == CC_EGONE || rv == CC_EUNAVAILABLE || rv == CC_EUNKNOWN ||
           rv == CC_ETIMEDOUT || (rv == CC_EUNREACHABLE && attempt > 0);
}

/* Sends acquire requests until granted (token and lease set, *send_ms = the granted
 * request's send time), refused, or the wait is over. */
static int lock_grant(struct cc_lock *l, const char *value, int64_t wait_ms, uint64_t deadline,
                      uint64_t *send_ms)
{
    cc_client *c = l->client;
    char t[CC_TARGET_BYTES];
    if (l->election)
        snprintf(t, sizeof(t), "/v1/election/%s/campaign", l->esc_name);
    else
        snprintf(t, sizeof(t), "/v1/lock/%s", l->esc_name);
    int rv = 0;
    /* Bounded by the deadline (each pass waits a chunk or backs off), or endless for
     * CC_WAIT_FOREVER, which is what the caller asked for. */
    for (uint32_t attempt = 0;; attempt++) {
        uint64_t now = cc__mono_ms();
        uint64_t chunk = 0;
        if (wait_ms != 0) {
            uint64_t left = deadline > now ? deadline - now : 0;
            chunk = left < CC_WAIT_CHUNK_MS ? left : CC_WAIT_CHUNK_MS;
        }
        json_t *b = json_pack("{s:s, s:I, s:I}", "owner", l->owner, "ttl_ms", (json_int_t)l->ttl_ms,
                              "wait_ms", (json_int_t)chunk);
        if (b && value)
            json_object_set_new(b, "value", json_string(value));
        char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        if (!body)
            return CC_ENOMEM;
        *send_ms = cc__mono_ms();
        struct client_response resp;
        rv = cc__request(c, "POST", t, body, (uint32_t)chunk + c->request_timeout_ms, &resp);
        free(body);
        if (rv == 0 && resp.status == 200) {
            json_t *j = cc__reply_json(&resp);
            client_response_free(&resp);
            if (!j)
                return CC_EPROTO;
            json_int_t token = json_integer_value(json_object_get(j, "token"));
            json_int_t lease = json_integer_value(json_object_get(j, "lease"));
            json_decref(j);
            if (token <= 0 || lease <= 0) {
                cc__set_detail("the grant has no token or lease");
                return CC_EPROTO;
            }
            l->token = (uint64_t)token;
            l->lease = (int64_t)lease;
            return 0;
        }
        if (rv == 0) {
            rv = cc__status_error(&resp);
            client_response_free(&resp);
        }
        if (wait_ms != 0 && rv == CC_EBUSY)
            rv = CC_ELOCKTIMEOUT; /* a zero chunk at the very end of the wait */
        now = cc__mono_ms();
        if (wait_ms == 0 || !acquire_retriable(rv, attempt) || now >= deadline)
            return rv;
        if (rv != CC_ELOCKTIMEOUT || now - *send_ms < chunk / 2) { /* never spin */
            uint64_t left = deadline - now;
            lock_sleep_ms(left < CC_RETRY_BACKOFF_MS ? left : CC_RETRY_BACKOFF_MS);
        }
    }
}

/* Makes sure the hold starts out valid (see "The first bound" above). Returns 0,
 * CC_ELOST (the lease is gone) or CC_EUNAVAILABLE (could not confirm). */
static int lock_confirm(struct cc_lock *l)
{
    if (cc__mono_ms() < l->wd.next_try_ms)
        return 0;
    uint32_t timeout = l->ttl_ms / 3;
    for (uint32_t i = 0; i < CC_CONFIRM_TRIES; i++) {
        uint64_t send = cc__mono_ms();
        enum cc_wd_outcome r = lock_keepalive(l, timeout);
        if (r == CC_WD_GONE) {
            cc__set_detail("the lease of the grant ended before it could be confirmed");
            return CC_ELOST;
        }
        if (r == CC_WD_OK) {
            int rv = cc_wd_init(&l->wd, l->ttl_ms, l->margin_ms, send);
            CC_ASSERT(rv == 0); /* checked before the first request */
            if (cc_wd_valid(&l->wd, cc__mono_ms()))
                return 0;
        }
        lock_sleep_ms(CC_CONFIRM_BACKOFF_MS);
    }
    cc__set_detail("granted, but the lease could not be confirmed after a long wait");
    return CC_EUNAVAILABLE;
}

/* ---- renewal thread -------------------------------------------------------------------- */

static uint64_t wd_now(void *arg)
{
    (void)arg;
    return cc__mono_ms();
}

static bool wd_sleep_until(void *arg, uint64_t until_ms)
{
    struct cc_lock *l = arg;
    struct timespec ts = {.tv_sec = (time_t)(until_ms / 1000),
                          .tv_nsec = (long)(until_ms % 1000) * 1000000L};
    pthread_mutex_lock(&l->mu);
    for (uint32_t i = 0; i < CC_SLEEP_WAKEUPS_MAX && !l->stop; i++) {
        if (cc__mono_ms() >= until_ms)
            break;
        if (pthread_cond_timedwait(&l->cond, &l->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    return stop;
}

static enum cc_wd_outcome wd_keepalive(void *arg, uint32_t timeout_ms)
{
    return lock_keepalive(arg, timeout_ms);
}

static bool wd_stopping(void *arg)
{
    struct cc_lock *l = arg;
    pthread_mutex_lock(&l->mu);
    bool stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    return stop;
}

static void wd_lost(void *arg)
{
    struct cc_lock *l = arg;
    if (l->lost_cb)
        l->lost_cb(l, l->lost_arg);
}

static void *lock_thread(void *arg)
{
    struct cc_lock *l = arg;
    struct cc_wd_env env = {.arg = l,
                            .now_ms = wd_now,
                            .sleep_until = wd_sleep_until,
                            .keepalive = wd_keepalive,
                            .stopping = wd_stopping,
                            .lost = wd_lost};
    cc_wd_run(&l->wd, &env);
    return NULL;
}

static int lock_start_thread(struct cc_lock *l)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&l->thread, NULL, lock_thread, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        cc__set_detail("pthread_create: %s", strerror(rc));
        return CC_ETHREAD;
    }
    l->thread_started = true;
    return 0;
}

static void lock_stop_thread(struct cc_lock *l)
{
    if (!l->thread_started)
        return;
    CC_ASSERT(!pthread_equal(pthread_self(), l->thread)); /* not from lost_cb */
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->thread_started = false;
}

/* ---- public API ------------------------------------------------------------------------- */

static int lock_check_args(const char *name, const char *owner, const char *value, int64_t ttl_ms,
                           int64_t wait_ms)
{
    if (!name || !name[0] || strchr(name, '/')) {
        cc__set_detail("a lock name is 1-%u bytes without '/'", CC_LOCK_NAME_BYTES_MAX);
        return CC_EINVAL;
    }
    if (strlen(name) > CC_LOCK_NAME_BYTES_MAX) {
        cc__set_detail("the name is %zu bytes; the limit is %u", strlen(name),
                       CC_LOCK_NAME_BYTES_MAX);
        return CC_ENAMETOOBIG;
    }
    if (owner && !owner[0]) {
        cc__set_detail("the owner is empty (NULL makes one)");
        return CC_EINVAL;
    }
    if (owner && strlen(owner) > CC_LOCK_OWNER_BYTES_MAX) {
        cc__set_detail("the owner is %zu bytes; the limit is %u", strlen(owner),
                       CC_LOCK_OWNER_BYTES_MAX);
        return CC_EOWNERTOOBIG;
    }
    if (value && strlen(value) > CC_LOCK_VALUE_BYTES_MAX) {
        cc__set_detail("the value is %zu bytes; the limit is %u", strlen(value),
                       CC_LOCK_VALUE_BYTES_MAX);
        return CC_ELOCKVALUETOOBIG;
    }
    if (ttl_ms < CC_TTL_MS_MIN || ttl_ms > (int64_t)CC_TTL_MS_MAX) {
        cc__set_detail("ttl_ms %" PRId64 " is outside %u..%u", ttl_ms, CC_TTL_MS_MIN,
                       CC_TTL_MS_MAX);
        return CC_ETTL;
    }
    if (wait_ms < CC_WAIT_FOREVER) {
        cc__set_detail("wait_ms is 0, positive, or CC_WAIT_FOREVER");
        return CC_EINVAL;
    }
    return 0;
}

static int lock_acquire(cc_client *c, bool election, const char *name, const char *owner,
                        const char *value, int64_t ttl_ms, int64_t wait_ms, cc_lock_lost_cb lost_cb,
                        void *lost_arg, cc_lock **out)
{
    CC_ASSERT(c != NULL && out != NULL);
    cc__clear_detail();
    *out = NULL;
    int rv = lock_check_args(name, owner, value, ttl_ms, wait_ms);
    if (rv != 0)
        return rv;
    struct cc_wd probe;
    rv = cc_wd_init(&probe, (uint32_t)ttl_ms, c->lock_margin_ms, 0);
    if (rv != 0) {
        cc__set_detail("lock_margin_ms %u is above ttl/2 (%" PRId64 " ms)", c->lock_margin_ms,
                       ttl_ms / 2);
        return rv;
    }
    struct cc_lock *l = lock_new(c, election, name, owner, (uint32_t)ttl_ms, lost_cb, lost_arg);
    if (!l)
        return CC_ENOMEM;
    uint64_t deadline = wait_ms < 0 ? UINT64_MAX : cc__mono_ms() + (uint64_t)wait_ms;
    for (uint32_t round = 0;; round++) {
        uint64_t send = 0;
        rv = lock_grant(l, election ? (value ? value : "") : NULL, wait_ms, deadline, &send);
        if (rv != 0)
            goto err_after_lock;
        rv = cc_wd_init(&l->wd, l->ttl_ms, l->margin_ms, send);
        CC_ASSERT(rv == 0);
        rv = lock_confirm(l);
        if (rv == 0)
            break;
        char why[CC_DETAIL_BYTES];
        snprintf(why, sizeof(why), "%s", cc_last_error());
        lock_give_back(l);
        cc__set_detail("%s", why);
        if (rv == CC_ELOST && wait_ms != 0 && cc__mono_ms() >= deadline) {
            /* Typically this process was paused through its grant: it never held the
             * lock, and the wait is over, so it is a timeout, not a loss. */
            cc__set_detail("%s (was this process paused?), and wait_ms ran out", why);
            rv = CC_ELOCKTIMEOUT;
        }
        if (rv != CC_ELOST || wait_ms == 0 || round + 1 >= CC_GRANT_ROUNDS_MAX ||
            cc__mono_ms() >= deadline)
            goto err_after_lock;
    }
    rv = lock_start_thread(l);
    if (rv != 0) {
        lock_give_back(l);
        goto err_after_lock;
    }
    atomic_fetch_add(&c->n_locks, 1);
    *out = l;
    return 0;

err_after_lock:
    lock_free(l);
    CC_ASSERT(rv != 0);
    return rv;
}

int cc_lock_acquire(cc_client *c, const char *name, const char *owner, int64_t ttl_ms,
                    int64_t wait_ms, cc_lock_lost_cb lost_cb, void *lost_arg, cc_lock **out)
{
    return lock_acquire(c, false, name, owner, NULL, ttl_ms, wait_ms, lost_cb, lost_arg, out);
}

int cc_election_campaign(cc_client *c, const char *name, const char *owner, const char *value,
                         int64_t ttl_ms, int64_t wait_ms, cc_lock_lost_cb lost_cb, void *lost_arg,
                         cc_lock **out)
{
    return lock_acquire(c, true, name, owner, value, ttl_ms, wait_ms, lost_cb, lost_arg, out);
}

uint64_t cc_lock_token(const cc_lock *l)
{
    CC_ASSERT(l != NULL);
    return l->token;
}

int64_t cc_lock_lease(const cc_lock *l)
{
    CC_ASSERT(l != NULL);
    return l->lease;
}

const char *cc_lock_name(const cc_lock *l)
{
    CC_ASSERT(l != NULL);
    return l->name;
}

const char *cc_lock_owner(const cc_lock *l)
{
    CC_ASSERT(l != NULL);
    return l->owner;
}

bool cc_lock_valid(const cc_lock *l)
{
    CC_ASSERT(l != NULL);
    return cc_wd_valid(&l->wd, cc__mono_ms());
}

uint64_t cc_lock_valid_ms(const cc_lock *l)
{
    CC_ASSERT(l != NULL);
    uint64_t now = cc__mono_ms();
    if (!cc_wd_valid(&l->wd, now))
        return 0;
    return cc_wd_valid_until(&l->wd) - now;
}

int cc_lock_release(cc_lock *l)
{
    CC_ASSERT(l != NULL);
    cc__clear_detail();
    lock_stop_thread(l);
    bool lost = !cc_wd_valid(&l->wd, cc__mono_ms());
    int rv = lock_give_back(l); /* also after a loss: owner+token make it harmless */
    if (lost)
        cc__set_detail("the lock had been lost before the release (token %" PRIu64 ")", l->token);
    CC_ASSERT(atomic_load(&l->client->n_locks) > 0);
    atomic_fetch_sub(&l->client->n_locks, 1);
    lock_free(l);
    return lost ? CC_ELOST : rv;
}

int cc_election_resign(cc_lock *l)
{
    CC_ASSERT(l != NULL && l->election);
    return cc_lock_release(l);
}

int cc_election_proclaim(cc_lock *l, const char *value)
{
    CC_ASSERT(l != NULL);
    cc__clear_detail();
    if (!l->election || !value) {
        cc__set_detail("proclaim needs an election handle and a value");
        return CC_EINVAL;
    }
    if (strlen(value) > CC_LOCK_VALUE_BYTES_MAX) {
        cc__set_detail("the value is %zu bytes; the limit is %u", strlen(value),
                       CC_LOCK_VALUE_BYTES_MAX);
        return CC_ELOCKVALUETOOBIG;
    }
    json_t *b = json_pack("{s:s, s:I, s:s}", "owner", l->owner, "token", (json_int_t)l->token,
                          "value", value);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body)
        return CC_ENOMEM;
    char t[CC_TARGET_BYTES];
    snprintf(t, sizeof(t), "/v1/election/%s/proclaim", l->esc_name);
    struct client_response resp;
    int rv = cc__request(l->client, "POST", t, body, l->client->request_timeout_ms, &resp);
    free(body);
    if (rv == 0 && resp.status / 100 != 2)
        rv = cc__status_error(&resp);
    client_response_free(&resp);
    return rv;
}
