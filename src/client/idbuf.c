/* idbuf.c -- the client's local segment buffer: cc_id_next (conclave/client.h "ids";
 * docs/client.md "IDs"). Tinyid-client style: ids come from memory, segments from the
 * cluster.
 *
 * State. One struct cc_ids per client (made by the first cc_id_next, CAS-published in
 * c->ids) holds up to CC_ID_TAGS_MAX struct cc_idtag, one mutex for all of them, and one
 * refill thread. A tag has two ranges, cur [cur_next, cur_end) and spare
 * [spare_start, spare_end); ids come from cur; when cur is empty the spare takes its
 * place at once. Invariant: spare, when held, lies above cur (it was committed later).
 *
 * Fetches. Callers never do IO for a fetch: they set `want` and signal the refill
 * thread, which runs POST /v1/id/segments/{tag}/alloc {"count"} (one Raft ALLOC on the
 * leader; a follower relays it) outside the mutex, then installs [start, end) as the
 * spare (or as cur if cur is empty) and wakes waiters. One fetch per tag at a time, so
 * a client's ranges increase in the order it receives them. A fetch that fails or times
 * out is retried after a backoff; its range, if the server did commit it, is a gap.
 *
 * When to fetch (the node buffer's policy, sm/idgen/idbuf.h): no spare, and cur is 20%
 * used, or what is left in cur would last less than two fetch times at the measured
 * rate. How much: the larger of the rate over the last fetch interval and a peak that
 * halves every CC_ID_SEGMENT_MS, times CC_ID_SEGMENT_MS, clamped to
 * CC_ID_STEP_MIN..CC_ID_STEP_MAX. The first fetch asks for the tag's own step (count 0).
 *
 * Errors. A fetch answered 4xx (no such tag, bad request) is final: waiters get it at
 * once (CC_ENOTFOUND, ...). Anything else (unreachable, 503, timeout) is retried in the
 * background while waiters wait up to request_timeout_ms; then they get the last error.
 *
 * Sections: types | helpers | the refill thread | public calls.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/assert.h"
#include "client/client_internal.h"

#define CC_ID_TRIGGER_PCT   20u   /* fetch once cur is this much used */
#define CC_ID_RETRY_MS_MIN  50u   /* backoff after a failed fetch, doubling ... */
#define CC_ID_RETRY_MS_MAX  500u  /* ... up to this */
#define CC_ID_IDLE_WAIT_MS  1000u /* the refill thread rechecks this often when idle */

_Static_assert(CC_ID_STEP_MIN >= 1 && CC_ID_STEP_MIN <= CC_ID_STEP_MAX, "a sane step range");
_Static_assert(CC_ID_STEP_MAX <= 100000000, "the server's ALLOC count limit (IDSEG_COUNT_MAX)");

/* ---- types ------------------------------------------------------------------------------ */

struct cc_idtag {
    char tag[CC_ID_TAG_BYTES_MAX + 1];
    int64_t cur_next, cur_end;     /* serving; empty when equal */
    int64_t cur_size;              /* size of cur when it was installed */
    int64_t spare_start, spare_end; /* held when start < end */
    bool want;                     /* a fetch is asked for */
    bool fetching;                 /* the refill thread is fetching it */
    bool first;                    /* no segment yet: count 0 (the tag's step) */
    int err;                       /* the last fetch's error, 0 after a success */
    bool err_final;                /* ... and it was a 4xx: waiters return it */
    uint64_t err_gen;              /* bumped on every failed fetch */
    char err_detail[CC_DETAIL_BYTES];
    uint64_t retry_at_ms;
    uint32_t backoff_ms;
    /* rate */
    uint64_t taken_since_fetch;    /* ids handed out since the last fetch started */
    uint64_t last_fetch_ms;        /* mono, when the last fetch started */
    double peak_per_ms;            /* decays: halves every CC_ID_SEGMENT_MS */
    uint64_t fetch_latency_ms;     /* the last successful fetch's duration */
    struct cc_id_stats st;
};

struct cc_ids {
    cc_client *c; /* borrowed: the owner */
    pthread_mutex_t mu;
    pthread_cond_t work;  /* the refill thread: a tag wants a fetch, or stop */
    pthread_cond_t ready; /* callers: a segment arrived, or a fetch failed */
    struct cc_idtag *tags[CC_ID_TAGS_MAX];
    uint32_t n_tags;
    pthread_t thread;
    bool thread_started;
    bool stop;
};

/* ---- helpers ---------------------------------------------------------------------------- */

static bool cc__tag_ok(const char *tag)
{
    size_t n = strnlen(tag, CC_ID_TAG_BYTES_MAX + 1);
    if (n == 0 || n > CC_ID_TAG_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = tag[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

static void cc__abs_deadline(uint64_t ms_from_now, struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms_from_now / 1000);
    ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int cc__cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0)
        return -1;
    int rv = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rv == 0)
        rv = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rv;
}

/* The size of the next fetch (mu held). */
static int64_t cc__next_step(struct cc_idtag *t, uint64_t now)
{
    if (t->first)
        return 0; /* the tag's own step */
    uint64_t dt = now > t->last_fetch_ms ? now - t->last_fetch_ms : 1;
    double rate = (double)t->taken_since_fetch / (double)dt; /* ids per ms */
    /* the peak halves every CC_ID_SEGMENT_MS (linear approximation per interval) */
    double decay = (double)dt / (double)CC_ID_SEGMENT_MS;
    t->peak_per_ms = decay >= 1.0 ? 0.0 : t->peak_per_ms * (1.0 - 0.5 * decay);
    if (rate > t->peak_per_ms)
        t->peak_per_ms = rate;
    double want = t->peak_per_ms * (double)CC_ID_SEGMENT_MS;
    int64_t step = want < (double)CC_ID_STEP_MIN   ? CC_ID_STEP_MIN
                   : want > (double)CC_ID_STEP_MAX ? CC_ID_STEP_MAX
                                                   : (int64_t)want;
    return step;
}

/* Whether t should fetch now (mu held). */
static bool cc__fetch_due(const struct cc_idtag *t, uint64_t now)
{
    if (t->fetching || t->spare_start < t->spare_end)
        return false;
    if (t->first || t->cur_next >= t->cur_end)
        return true;
    int64_t left = t->cur_end - t->cur_next;
    int64_t used = t->cur_size - left;
    if (used * 100 >= t->cur_size * (int64_t)CC_ID_TRIGGER_PCT)
        return true;
    /* what is left would last less than two fetch times at the recent rate */
    uint64_t dt = now > t->last_fetch_ms ? now - t->last_fetch_ms : 1;
    double rate = (double)t->taken_since_fetch / (double)dt;
    return rate > 0 && (double)left / rate < 2.0 * (double)t->fetch_latency_ms;
}

static void cc__maybe_want(struct cc_ids *ids, struct cc_idtag *t, uint64_t now)
{
    if (!t->want && cc__fetch_due(t, now)) {
        t->want = true;
        pthread_cond_signal(&ids->work);
    }
}

/* ---- the refill thread ------------------------------------------------------------------ */

/* One ALLOC for t (mu NOT held): 0 with [*start, *end), or a CC_E* (detail set). */
static int cc__fetch(cc_client *c, const char *tag, int64_t count, int64_t *start, int64_t *end,
                     bool *final)
{
    char target[sizeof("/v1/id/segments//alloc") + CC_ID_TAG_BYTES_MAX + 1];
    char body[64];
    snprintf(target, sizeof(target), "/v1/id/segments/%s/alloc", tag); /* tag chars need no escape */
    snprintf(body, sizeof(body), "{\"count\":%" PRId64 "}", count);
    struct client_response resp;
    *final = false;
    int rv = cc__request(c, "POST", target, body, c->request_timeout_ms, &resp);
    if (rv != 0)
        return rv;
    if (resp.status != 200) {
        *final = resp.status >= 400 && resp.status < 500;
        rv = cc__status_error(&resp);
        client_response_free(&resp);
        return rv;
    }
    json_t *j = cc__reply_json(&resp);
    client_response_free(&resp);
    if (!j)
        return CC_EPROTO;
    json_t *s = json_object_get(j, "start"), *e = json_object_get(j, "end");
    if (!json_is_integer(s) || !json_is_integer(e) || json_integer_value(s) < 1 ||
        json_integer_value(e) <= json_integer_value(s)) {
        cc__set_detail("the alloc answer has no valid [start, end)");
        json_decref(j);
        return CC_EPROTO;
    }
    *start = json_integer_value(s);
    *end = json_integer_value(e);
    json_decref(j);
    return 0;
}

/* The tag that should be fetched now (mu held), or NULL; *wait_ms: until a retry is due. */
static struct cc_idtag *cc__pick(struct cc_ids *ids, uint64_t now, uint64_t *wait_ms)
{
    *wait_ms = CC_ID_IDLE_WAIT_MS;
    for (uint32_t i = 0; i < ids->n_tags; i++) {
        struct cc_idtag *t = ids->tags[i];
        if (!t->want || t->fetching)
            continue;
        if (now >= t->retry_at_ms)
            return t;
        if (t->retry_at_ms - now < *wait_ms)
            *wait_ms = t->retry_at_ms - now;
    }
    return NULL;
}

static void *cc__refill_main(void *arg)
{
    struct cc_ids *ids = arg;
    pthread_mutex_lock(&ids->mu);
    for (;;) { /* bounded by ids->stop: cc__ids_free sets it and joins */
        if (ids->stop)
            break;
        uint64_t now = cc__mono_ms(), wait_ms = 0;
        struct cc_idtag *t = cc__pick(ids, now, &wait_ms);
        if (!t) {
            struct timespec ts;
            cc__abs_deadline(wait_ms, &ts);
            pthread_cond_timedwait(&ids->work, &ids->mu, &ts);
            continue;
        }
        int64_t count = cc__next_step(t, now);
        char tag[sizeof(t->tag)];
        memcpy(tag, t->tag, sizeof(tag));
        t->fetching = true;
        t->last_fetch_ms = now;
        t->taken_since_fetch = 0;
        pthread_mutex_unlock(&ids->mu);
        int64_t start = 0, end = 0;
        bool final = false;
        int rv = cc__fetch(ids->c, tag, count, &start, &end, &final);
        char detail[CC_DETAIL_BYTES];
        snprintf(detail, sizeof(detail), "%s", cc_last_error());
        uint64_t done = cc__mono_ms();
        pthread_mutex_lock(&ids->mu);
        t->fetching = false;
        t->want = false;
        if (rv == 0) {
            t->first = false;
            t->err = 0;
            t->backoff_ms = 0;
            t->fetch_latency_ms = done - now;
            t->st.fetches++;
            t->st.last_step = end - start;
            if (t->cur_next >= t->cur_end) {
                t->cur_next = start;
                t->cur_end = end;
                t->cur_size = end - start;
            } else {
                CC_ASSERT(start >= t->cur_end); /* committed after cur: above it */
                t->spare_start = start;
                t->spare_end = end;
            }
        } else {
            t->st.fetch_errors++;
            t->err = rv;
            t->err_final = final;
            t->err_gen++;
            snprintf(t->err_detail, sizeof(t->err_detail), "%s", detail);
            t->backoff_ms = t->backoff_ms == 0 ? CC_ID_RETRY_MS_MIN
                            : t->backoff_ms * 2 > CC_ID_RETRY_MS_MAX ? CC_ID_RETRY_MS_MAX
                                                                     : t->backoff_ms * 2;
            t->retry_at_ms = done + t->backoff_ms;
            t->want = !final && t->cur_next >= t->cur_end; /* keep trying for waiters */
        }
        pthread_cond_broadcast(&ids->ready);
        if (rv == 0 || !final) /* a final error is retried only when asked for again */
            cc__maybe_want(ids, t, done);
    }
    pthread_mutex_unlock(&ids->mu);
    return NULL;
}

void cc__ids_free(struct cc_ids *ids)
{
    if (!ids)
        return;
    pthread_mutex_lock(&ids->mu);
    ids->stop = true;
    pthread_cond_broadcast(&ids->work);
    pthread_mutex_unlock(&ids->mu);
    if (ids->thread_started)
        pthread_join(ids->thread, NULL); /* at most one fetch: request_timeout_ms */
    for (uint32_t i = 0; i < ids->n_tags; i++)
        free(ids->tags[i]);
    pthread_cond_destroy(&ids->ready);
    pthread_cond_destroy(&ids->work);
    pthread_mutex_destroy(&ids->mu);
    free(ids);
}

/* ---- public calls ----------------------------------------------------------------------- */

/* c's ids, made on first use. NULL: out of memory. */
static struct cc_ids *cc__ids_get(cc_client *c)
{
    struct cc_ids *ids = atomic_load(&c->ids);
    if (ids)
        return ids;
    ids = calloc(1, sizeof(*ids));
    if (!ids)
        return NULL;
    ids->c = c;
    if (pthread_mutex_init(&ids->mu, NULL) != 0) {
        free(ids);
        return NULL;
    }
    if (cc__cond_init_mono(&ids->work) != 0) {
        pthread_mutex_destroy(&ids->mu);
        free(ids);
        return NULL;
    }
    if (cc__cond_init_mono(&ids->ready) != 0) {
        pthread_cond_destroy(&ids->work);
        pthread_mutex_destroy(&ids->mu);
        free(ids);
        return NULL;
    }
    struct cc_ids *expected = NULL;
    if (!atomic_compare_exchange_strong(&c->ids, &expected, ids)) {
        cc__ids_free(ids); /* another thread won: use its */
        return expected;
    }
    return ids;
}

/* The tag's state (mu held), made if new. NULL: CC_ID_TAGS_MAX reached or no memory. */
static struct cc_idtag *cc__tag_get(struct cc_ids *ids, const char *tag, bool make)
{
    for (uint32_t i = 0; i < ids->n_tags; i++)
        if (strcmp(ids->tags[i]->tag, tag) == 0)
            return ids->tags[i];
    if (!make || ids->n_tags == CC_ID_TAGS_MAX)
        return NULL;
    struct cc_idtag *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    snprintf(t->tag, sizeof(t->tag), "%s", tag);
    t->first = true;
    t->last_fetch_ms = cc__mono_ms();
    ids->tags[ids->n_tags++] = t;
    return t;
}

int cc_id_next(cc_client *c, const char *tag, int64_t *out)
{
    CC_ASSERT(c != NULL && out != NULL);
    cc__clear_detail();
    if (!tag || !cc__tag_ok(tag)) {
        cc__set_detail("a tag is 1-%u characters of [A-Za-z0-9._:-]", CC_ID_TAG_BYTES_MAX);
        return CC_EINVAL;
    }
    struct cc_ids *ids = cc__ids_get(c);
    if (!ids)
        return CC_ENOMEM;
    int rv = 0;
    pthread_mutex_lock(&ids->mu);
    if (!ids->thread_started) {
        if (pthread_create(&ids->thread, NULL, cc__refill_main, ids) != 0) {
            cc__set_detail("cannot start the id refill thread");
            rv = CC_ETHREAD;
            goto out;
        }
        ids->thread_started = true;
    }
    struct cc_idtag *t = cc__tag_get(ids, tag, true);
    if (!t) {
        cc__set_detail("this client buffers at most %u tags", CC_ID_TAGS_MAX);
        rv = ids->n_tags == CC_ID_TAGS_MAX ? CC_ELIMIT : CC_ENOMEM;
        goto out;
    }
    uint64_t now = cc__mono_ms(), deadline = now + c->request_timeout_ms;
    uint64_t gen = t->err_gen;
    bool counted = false;
    for (;;) { /* bounded by the deadline */
        if (t->cur_next < t->cur_end) {
            *out = t->cur_next++;
            t->taken_since_fetch++;
            t->st.served++;
            cc__maybe_want(ids, t, now);
            goto out;
        }
        if (t->spare_start < t->spare_end) {
            t->cur_next = t->spare_start;
            t->cur_end = t->spare_end;
            t->cur_size = t->spare_end - t->spare_start;
            t->spare_start = t->spare_end = 0;
            continue;
        }
        if (!counted && !t->first) {
            t->st.empty_waits++;
            counted = true;
        }
        if (t->err_gen != gen && t->err_final) {
            cc__set_detail("%s", t->err_detail);
            rv = t->err;
            goto out;
        }
        if (now >= deadline) {
            rv = t->err ? t->err : CC_ETIMEDOUT;
            cc__set_detail("no segment of tag '%s' within %u ms%s%s", tag, c->request_timeout_ms,
                           t->err ? ": " : "", t->err ? t->err_detail : "");
            goto out;
        }
        cc__maybe_want(ids, t, now);
        struct timespec ts;
        cc__abs_deadline(deadline - now, &ts);
        pthread_cond_timedwait(&ids->ready, &ids->mu, &ts);
        now = cc__mono_ms();
    }
out:
    pthread_mutex_unlock(&ids->mu);
    return rv;
}

int cc_id_stats(cc_client *c, const char *tag, struct cc_id_stats *out)
{
    CC_ASSERT(c != NULL && out != NULL);
    cc__clear_detail();
    struct cc_ids *ids = atomic_load(&c->ids);
    if (!tag || !ids) {
        cc__set_detail("no ids of that tag were asked for by this client");
        return CC_ENOTFOUND;
    }
    pthread_mutex_lock(&ids->mu);
    struct cc_idtag *t = cc__tag_get(ids, tag, false);
    if (t) {
        *out = t->st;
        out->remaining = (t->cur_end - t->cur_next) +
                         (t->spare_start < t->spare_end ? t->spare_end - t->spare_start : 0);
    }
    pthread_mutex_unlock(&ids->mu);
    if (!t) {
        cc__set_detail("no ids of tag '%s' were asked for by this client", tag);
        return CC_ENOTFOUND;
    }
    return 0;
}
