/* test_client_idbuf.c -- the C client's local segment buffer (cc_id_next, src/client/idbuf.c)
 * against a fake server behind the injected transport (cc__set_transport).
 *
 * The fake holds each tag's max_id like the replicated idseg does: an ALLOC returns
 * [max_id, max_id + count) and advances it, count 0 meaning the tag's step. It can delay
 * answers, refuse connections (a server down or restarting), and commit a range but lose
 * the reply (the outcome-unknown case: the range must become a gap, never reused).
 *
 * Tests:
 *   - 8 threads x 40k ids: no duplicates, every thread's ids strictly increase, every id
 *     lies in a range the fake committed, and the client fetched far fewer segments than
 *     it served ids;
 *   - an outage (refused connections), a lost reply and a client restart in between:
 *     no id is handed out twice, ids after the restart lie above all earlier ones, and
 *     the failures were counted;
 *   - an unknown tag fails fast with CC_ENOTFOUND (and the failure is not sticky once the
 *     tag exists); bad tags are CC_EINVAL;
 *   - a 10x burst after a steady phase finds both segments empty 0 times and grows the
 *     step; the negative control with the burst starting on a cold tag of step 100 and a
 *     slow server does find them empty (so the counter can see the failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_internal.h"
#include "conclave/client.h"

#define FAKE_TAGS_MAX   8
#define FAKE_RANGES_MAX 100000

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct fake_tag {
    char name[64];
    int64_t max_id, step;
};

struct fake {
    pthread_mutex_t mu;
    struct fake_tag tags[FAKE_TAGS_MAX];
    int n_tags;
    int64_t ranges[FAKE_RANGES_MAX][2]; /* every committed [start, end) */
    int n_ranges;
    atomic_uint delay_ms;
    atomic_bool refuse;     /* connection refused */
    atomic_int lose_next;   /* commit, then time out, this many times */
    atomic_uint n_allocs;
};

static struct fake g_fake;

static void fake_reset(void)
{
    pthread_mutex_destroy(&g_fake.mu);
    memset(&g_fake, 0, sizeof(g_fake));
    pthread_mutex_init(&g_fake.mu, NULL);
}

static void fake_add_tag(const char *name, int64_t initial, int64_t step)
{
    pthread_mutex_lock(&g_fake.mu);
    struct fake_tag *t = &g_fake.tags[g_fake.n_tags++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->max_id = initial;
    t->step = step;
    pthread_mutex_unlock(&g_fake.mu);
}

static void respond(struct client_response *resp, int status, const char *body)
{
    resp->status = status;
    size_t n = strlen(body);
    resp->body = malloc(n + 1);
    memcpy(resp->body, body, n + 1);
    resp->body_len = n;
}

static int fake_transport(void *arg, const char *endpoint, const struct client_opts *opts,
                          const struct client_request *req, struct client_response *resp,
                          char *errmsg, size_t cap)
{
    (void)arg;
    (void)endpoint;
    (void)opts;
    memset(resp, 0, sizeof(*resp));
    unsigned d = atomic_load(&g_fake.delay_ms);
    if (d)
        sleep_ms(d);
    if (atomic_load(&g_fake.refuse)) {
        snprintf(errmsg, cap, "connection refused");
        return CLIENT_EREFUSED;
    }
    char tag[64] = "";
    const char *p = strstr(req->target, "/v1/id/segments/");
    const char *q = p ? strstr(p + 16, "/alloc") : NULL;
    if (!q || strcmp(req->method, "POST") != 0) {
        respond(resp, 404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\"}}");
        return 0;
    }
    snprintf(tag, sizeof(tag), "%.*s", (int)(q - (p + 16)), p + 16);
    long long count = -1;
    const char *c = req->body ? strstr((const char *)req->body, "\"count\":") : NULL;
    if (c)
        count = strtoll(c + 8, NULL, 10);
    assert_true(count >= 0 && count <= CC_ID_STEP_MAX);
    pthread_mutex_lock(&g_fake.mu);
    struct fake_tag *t = NULL;
    for (int i = 0; i < g_fake.n_tags; i++)
        if (strcmp(g_fake.tags[i].name, tag) == 0)
            t = &g_fake.tags[i];
    if (!t) {
        pthread_mutex_unlock(&g_fake.mu);
        respond(resp, 404, "{\"error\":{\"code\":\"tag_not_found\",\"message\":\"tag not found\"}}");
        return 0;
    }
    int64_t n = count == 0 ? t->step : count;
    int64_t start = t->max_id, end = start + n;
    t->max_id = end;
    if (g_fake.n_ranges < FAKE_RANGES_MAX) {
        g_fake.ranges[g_fake.n_ranges][0] = start;
        g_fake.ranges[g_fake.n_ranges][1] = end;
        g_fake.n_ranges++;
    }
    pthread_mutex_unlock(&g_fake.mu);
    atomic_fetch_add(&g_fake.n_allocs, 1);
    if (atomic_load(&g_fake.lose_next) > 0) {
        atomic_fetch_sub(&g_fake.lose_next, 1);
        snprintf(errmsg, cap, "no complete response in time");
        return CLIENT_ETIMEDOUT; /* committed, but the client never learns the range */
    }
    char body[160];
    snprintf(body, sizeof(body), "{\"tag\":\"%s\",\"start\":%" PRId64 ",\"end\":%" PRId64 "}", tag,
             start, end);
    respond(resp, 200, body);
    return 0;
}

static cc_client *new_client(uint32_t timeout_ms)
{
    struct cc_options o = {.request_timeout_ms = timeout_ms};
    cc_client *c = NULL;
    assert_int_equal(cc_client_new("127.0.0.1:1", &o, &c), 0);
    cc__set_transport(c, fake_transport, NULL);
    return c;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* No duplicates in ids[0..n) (sorts them). */
static void assert_unique(int64_t *ids, size_t n)
{
    qsort(ids, n, sizeof(int64_t), cmp_i64);
    for (size_t i = 1; i < n; i++) {
        if (ids[i] == ids[i - 1])
            fail_msg("id %" PRId64 " handed out twice", ids[i]);
    }
}

static bool in_committed(int64_t id)
{
    for (int i = 0; i < g_fake.n_ranges; i++)
        if (id >= g_fake.ranges[i][0] && id < g_fake.ranges[i][1])
            return true;
    return false;
}

/* ---- many threads ---------------------------------------------------------------------- */

#define THREADS     8
#define PER_THREAD  40000

struct worker {
    cc_client *c;
    const char *tag;
    int64_t *ids;
    size_t n;
    int err;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (size_t i = 0; i < w->n; i++) {
        int rv = cc_id_next(w->c, w->tag, &w->ids[i]);
        if (rv != 0) {
            w->err = rv;
            return NULL;
        }
    }
    return NULL;
}

static void test_many_threads_no_duplicates(void **state)
{
    (void)state;
    fake_reset();
    fake_add_tag("orders", 1000, 500);
    atomic_store(&g_fake.delay_ms, 2);
    cc_client *c = new_client(5000);
    struct worker w[THREADS];
    pthread_t th[THREADS];
    int64_t *all = calloc((size_t)THREADS * PER_THREAD, sizeof(int64_t));
    assert_non_null(all);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.c = c, .tag = "orders", .ids = all + (size_t)i * PER_THREAD,
                               .n = PER_THREAD};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].err, 0);
        for (size_t k = 1; k < PER_THREAD; k++)
            if (w[i].ids[k] <= w[i].ids[k - 1])
                fail_msg("thread %d: id %" PRId64 " after %" PRId64, i, w[i].ids[k],
                         w[i].ids[k - 1]);
    }
    for (size_t k = 0; k < (size_t)THREADS * PER_THREAD; k += 997)
        assert_true(in_committed(all[k]));
    assert_unique(all, (size_t)THREADS * PER_THREAD);
    struct cc_id_stats st;
    assert_int_equal(cc_id_stats(c, "orders", &st), 0);
    assert_int_equal(st.served, (uint64_t)THREADS * PER_THREAD);
    assert_true(st.fetches >= 2 && st.fetches < 200);
    assert_int_equal(st.fetch_errors, 0);
    assert_int_equal(cc_id_stats(c, "other", &st), CC_ENOTFOUND);
    cc_client_free(c);
    free(all);
}

/* ---- outages, lost replies, client restarts ------------------------------------------- */

struct pacer {
    cc_client *c;
    int64_t *ids;
    size_t n, cap;
    atomic_bool stop;
    uint64_t n_errors;
};

static void *pacer_main(void *arg)
{
    struct pacer *p = arg;
    uint64_t end = mono_ms() + 20000; /* bound */
    while (!atomic_load(&p->stop) && p->n < p->cap && mono_ms() < end) {
        int64_t id = 0;
        int rv = cc_id_next(p->c, "restart", &id);
        if (rv == 0)
            p->ids[p->n++] = id;
        else
            p->n_errors++; /* the caller's retry */
        if (p->n % 64 == 0)
            sleep_ms(1);
    }
    return NULL;
}

static void test_outage_lost_reply_and_restart_never_reissue(void **state)
{
    (void)state;
    fake_reset();
    fake_add_tag("restart", 1, 100);
    atomic_store(&g_fake.delay_ms, 1);
    size_t cap = 2000000;
    int64_t *ids = calloc(cap, sizeof(int64_t));
    assert_non_null(ids);
    size_t total = 0;
    int64_t max_before_restart = 0;
    for (int life = 0; life < 3; life++) { /* three client lives */
        cc_client *c = new_client(300);
        struct pacer p = {.c = c, .ids = ids + total, .cap = cap - total};
        pthread_t th;
        atomic_store(&g_fake.refuse, true); /* the server is down (restarting) ... */
        assert_int_equal(pthread_create(&th, NULL, pacer_main, &p), 0);
        sleep_ms(400);
        atomic_store(&g_fake.lose_next, 1);  /* ... its first answer after is lost ... */
        atomic_store(&g_fake.refuse, false); /* ... and then it serves */
        sleep_ms(1500);
        atomic_store(&p.stop, true);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(atomic_load(&g_fake.lose_next), 0);
        assert_true(p.n_errors >= 1); /* the callers saw the outage (300 ms timeout) */
        struct cc_id_stats st;
        assert_int_equal(cc_id_stats(c, "restart", &st), 0);
        assert_true(st.fetch_errors >= 2); /* refused, then the lost reply */
        assert_true(p.n > 100);
        if (life > 0)
            assert_true(p.ids[0] > max_before_restart); /* a new life starts above */
        for (size_t k = 1; k < p.n; k++)
            assert_true(p.ids[k] > p.ids[k - 1]);
        max_before_restart = p.ids[p.n - 1];
        total += p.n;
        cc_client_free(c); /* its unused rest is abandoned */
    }
    assert_unique(ids, total);
    free(ids);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_unknown_and_bad_tags(void **state)
{
    (void)state;
    fake_reset();
    cc_client *c = new_client(5000);
    int64_t id = 0;
    uint64_t t0 = mono_ms();
    assert_int_equal(cc_id_next(c, "nope", &id), CC_ENOTFOUND);
    assert_true(mono_ms() - t0 < 2000); /* final: not waited out */
    assert_non_null(strstr(cc_last_error(), "not found"));
    assert_int_equal(cc_id_next(c, "a/b", &id), CC_EINVAL);
    assert_int_equal(cc_id_next(c, "", &id), CC_EINVAL);
    char big[CC_ID_TAG_BYTES_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(cc_id_next(c, big, &id), CC_EINVAL);
    big[CC_ID_TAG_BYTES_MAX] = 0; /* exactly the limit: fine, but unknown */
    assert_int_equal(cc_id_next(c, big, &id), CC_ENOTFOUND);
    fake_add_tag("nope", 7, 10); /* created later: the error is not sticky */
    assert_int_equal(cc_id_next(c, "nope", &id), 0);
    assert_int_equal(id, 7);
    cc_client_free(c);
}

/* ---- bursts ---------------------------------------------------------------------------- */

/* rate ids per ms for ms milliseconds (paced per ms). */
static void take_at(cc_client *c, const char *tag, int rate, int ms, int64_t *last)
{
    uint64_t t0 = mono_ms();
    for (int k = 0; k < ms; k++) {
        for (int i = 0; i < rate; i++) {
            int64_t id = 0;
            assert_int_equal(cc_id_next(c, tag, &id), 0);
            assert_true(id > *last);
            *last = id;
        }
        uint64_t due = t0 + (uint64_t)k + 1;
        uint64_t now = mono_ms();
        if (now < due)
            sleep_ms(due - now);
    }
}

static void test_burst_never_finds_both_segments_empty(void **state)
{
    (void)state;
    fake_reset();
    fake_add_tag("burst", 1, 1000);
    fake_add_tag("cold", 1, 100);
    atomic_store(&g_fake.delay_ms, 20);
    cc_client *c = new_client(5000);
    int64_t last = 0;
    take_at(c, "burst", 20, 1500, &last);  /* steady: 20k ids/s */
    struct cc_id_stats st;
    assert_int_equal(cc_id_stats(c, "burst", &st), 0);
    uint64_t empty_steady = st.empty_waits;
    take_at(c, "burst", 200, 1000, &last); /* 10x */
    assert_int_equal(cc_id_stats(c, "burst", &st), 0);
    print_message("burst: fetches %" PRIu64 ", last step %" PRId64 ", empty %" PRIu64
                  " (steady %" PRIu64 ")\n", st.fetches, st.last_step, st.empty_waits,
                  empty_steady);
    assert_int_equal(st.empty_waits, empty_steady);
    assert_true(st.last_step > 1000);
    /* negative control: a cold tag with step 100 and a 20 ms server at 200 ids/ms runs dry */
    last = 0;
    take_at(c, "cold", 200, 100, &last);
    assert_int_equal(cc_id_stats(c, "cold", &st), 0);
    assert_true(st.empty_waits > 0);
    cc_client_free(c);
}

int main(void)
{
    pthread_mutex_init(&g_fake.mu, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_no_duplicates),
        cmocka_unit_test(test_outage_lost_reply_and_restart_never_reissue),
        cmocka_unit_test(test_unknown_and_bad_tags),
        cmocka_unit_test(test_burst_never_finds_both_segments_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
