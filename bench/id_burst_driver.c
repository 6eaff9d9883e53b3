/* id_burst_driver.c -- open-loop, constant-rate load for bench/id_bench.py's burst test:
 * single-ID requests on a fixed schedule, latency measured from each request's
 * SCHEDULED time, so a server (or driver) stall is charged to every request it delays.
 *
 *   id_burst_driver resp|http|ping|sleep HOST:PORT --tag T [--http-stats HOST:PORT] [--rate R]
 *                   [--burst X] [--seconds D] [--warmup W] [--threads K] [--conns C]
 *   id_burst_driver --selftest
 *
 * What one request is (every connection keep-alive, ONE request in flight on it, no
 * pipelining: a request waits for an idle connection, and that wait counts):
 *   resp  ID.NEXT T 1 on the RESP port; the answer must be an integer (":id").
 *   http  POST /v1/id/segments/T/next (Content-Length: 0); the answer must be 200 with
 *         "ids":[id].
 *   ping  PING on the RESP port; the answer must be "+PONG". The floor: the same server
 *         loop, transport, driver and schedule without the ID service, so a tail that
 *         PING shows too is the machine's (scheduling, loopback TCP), not the IDs'.
 *   sleep no request at all: each thread only wakes at every scheduled time, and the
 *         "answer" is the wake-up (HOST:PORT is still parsed; nothing connects). The
 *         floor under the floor: how late this machine runs a thread that asked to be
 *         woken, so no server answers below its tail here.
 * Per connection the ids must grow (one node serves its segments in order, and a later
 * segment is always above an earlier one): "id_regressions" counts the exceptions.
 *
 * Schedule: phases warmup (rate R for W s, not a result), steady (R for D s), burst (X*R
 * for D s), after (R for D s). K threads share the rate; thread k sends request j of a
 * phase at phase_start + (j + k/K) / (rate/K), so the threads interleave evenly. Each
 * thread has C connections and one poll loop: it sends every due request that has an
 * idle connection, then sleeps in ppoll() until the next one is due or an answer comes.
 * Latency = answer time - scheduled time (no coordinated omission: a request sent late,
 * because the connections were all busy or the driver was descheduled, counts its
 * lateness). Its two parts are reported apart: "lag" (send - scheduled: waiting for an
 * idle connection, or for the CPU) and "svc" (answer - send: all a closed-loop driver
 * such as wrk or redis-benchmark would see).
 * A request belongs to the phase it was scheduled in; "achieved_rps" counts the answers
 * that ARRIVED within a phase's window, over the window: below the offered rate, the
 * schedule was not kept and the phase's latencies describe a backlog, not the server.
 *
 * Tag counters: with --http-stats the main thread GETs /v1/id/segments/T at the start
 * and end of every phase and reports the buffer's empty_dry (requests that found both
 * segments empty), fetches, allocs and last_step there (the caller takes differences).
 *
 * Output: one JSON object on stdout. Exit 0 when it ran (the caller judges), 1 on a
 * usage or connect error, 2 when --selftest fails.
 *
 * Bounds: rate <= IB_RATE_MAX, D and W <= IB_SECONDS_MAX, a reply <= IB_BUF bytes, every
 * socket has a IB_IO_TIMEOUT_S timeout for the stats GET; after the last phase the driver
 * waits at most IB_DRAIN_S for answers still due (the rest count as "unfinished"), and
 * the poll loop runs at most IB_LOOPS_MAX times per thread.
 *
 * Built by bench/id_bench.py with the system's cc (not part of libconclave).
 * Sections: limits and state | connections | stats | worker | selftest | main.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* ---- limits and state ------------------------------------------------------------- */

#define IB_THREADS_MAX  64
#define IB_CONNS_MAX    64      /* per thread */
#define IB_RATE_MAX     2000000 /* requests/s offered, all threads, burst included */
#define IB_SECONDS_MAX  600
#define IB_BUF          4096 /* one reply (one request in flight per connection) */
#define IB_REQ_MAX      512
#define IB_TAG_MAX      128
#define IB_IO_TIMEOUT_S 10
#define IB_DRAIN_S      5.0 /* after the last phase: wait this long for answers */
#define IB_LOOPS_MAX    400000000L
#define IB_PHASES       4

_Static_assert(IB_REQ_MAX > IB_TAG_MAX + 128, "a request holds the tag and the framing");

enum ib_proto { IB_RESP, IB_HTTP, IB_PING, IB_SLEEP };

static const char *const ib_phase_name[IB_PHASES] = {"warmup", "steady", "burst", "after"};

struct ib_conn {
    int fd;
    bool busy;         /* a request is in flight */
    double sched_us;   /* its scheduled time */
    double sent_us;    /* and when it was sent */
    int phase;         /* and phase */
    size_t len;        /* reply bytes read */
    long long last_id; /* the previous id on this connection, or -1 */
    char buf[IB_BUF + 1];
};

struct ib_phase_stats {
    struct bench_hist lat; /* answer - scheduled */
    struct bench_hist lag; /* send - scheduled: waiting for a connection or the CPU */
    struct bench_hist svc; /* answer - send: what a closed-loop driver would report */
    long scheduled;        /* requests due in the phase */
    long sent, answered, errors, unfinished;
    long answered_in_window; /* answers (of any phase) that arrived in this window */
};

struct ib_thread {
    int idx;
    pthread_t thread;
    struct ib_conn conn[IB_CONNS_MAX];
    struct ib_phase_stats ph[IB_PHASES];
    long id_regressions;
    char err[256];
};

struct ib_tagstat {
    long long empty_dry, empty_cold, fetches, allocs, last_step, served;
    bool ok;
};

static struct {
    enum ib_proto proto;
    struct sockaddr_in addr, stats_addr;
    char host[64];
    bool have_stats;
    char tag[IB_TAG_MAX];
    double rate, burst, seconds, warmup;
    int threads, conns;
    char req[IB_REQ_MAX];
    size_t req_len;
    double phase_start_us[IB_PHASES + 1]; /* [IB_PHASES] = the end of the last phase */
    double phase_rate[IB_PHASES];
    pthread_barrier_t barrier;
    atomic_int connect_failed;
    struct ib_tagstat tag_at[IB_PHASES + 1]; /* at each phase start, and at the end */
} g;

static void ib_seterr(struct ib_thread *t, const char *what, const char *detail)
{
    if (t->err[0] == '\0') {
        snprintf(t->err, sizeof(t->err), "%s: %.200s", what, detail);
    }
}

/* ---- connections ------------------------------------------------------------------ */

/* A blocking TCP connection with NODELAY and IB_IO_TIMEOUT_S timeouts, or -1. Blocking
 * is enough: a send never fills a buffer (one small request in flight), and the poll
 * loop only recv()s (MSG_DONTWAIT) what poll said is readable. */
static int ib_connect(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    struct timeval tv = {.tv_sec = IB_IO_TIMEOUT_S};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Parses the reply in c->buf. Returns 1 complete and good (*id set), 0 incomplete,
 * -1 complete but an error reply, -2 malformed. */
static int ib_parse(struct ib_conn *c, long long *id)
{
    c->buf[c->len] = '\0';
    if (g.proto == IB_RESP || g.proto == IB_PING) {
        char *eol = strstr(c->buf, "\r\n");
        if (eol == NULL) {
            return c->len >= IB_BUF ? -2 : 0;
        }
        if (eol + 2 != c->buf + c->len) {
            return -2; /* more than one reply: impossible with one request in flight */
        }
        if (g.proto == IB_PING) {
            *id = -1; /* no id: nothing to check for order */
            return strcmp(c->buf, "+PONG\r\n") == 0 ? 1 : -1;
        }
        if (c->buf[0] != ':') {
            return -1;
        }
        *id = strtoll(c->buf + 1, NULL, 10);
        return 1;
    }
    char *hend = strstr(c->buf, "\r\n\r\n");
    if (hend == NULL) {
        return c->len >= IB_BUF ? -2 : 0;
    }
    const char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (cl == NULL || cl > hend) {
        return -2; /* the server frames every reply with Content-Length */
    }
    size_t total = (size_t)(hend - c->buf) + 4 + (size_t)strtoull(cl + 17, NULL, 10);
    if (total > IB_BUF) {
        return -2;
    }
    if (c->len < total) {
        return 0;
    }
    if (c->len > total) {
        return -2;
    }
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1) {
        return -2;
    }
    const char *ids = strstr(hend, "\"ids\":[");
    if (status != 200 || ids == NULL) {
        return -1;
    }
    *id = strtoll(ids + 7, NULL, 10);
    return 1;
}

/* ---- stats ------------------------------------------------------------------------ */

static long long ib_json_int(const char *body, const char *field)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", field);
    const char *p = strstr(body, pat);
    return p == NULL ? -1 : strtoll(p + strlen(pat), NULL, 10);
}

/* GET /v1/id/segments/T over a fresh connection (Connection: close). */
static void ib_tagstat(struct ib_tagstat *out)
{
    memset(out, 0, sizeof(*out));
    if (!g.have_stats) {
        return;
    }
    int fd = ib_connect(&g.stats_addr);
    if (fd < 0) {
        return;
    }
    char req[IB_REQ_MAX];
    int n = snprintf(req, sizeof(req),
                     "GET /v1/id/segments/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     g.tag, g.host);
    static char buf[IB_BUF * 4 + 1];
    size_t len = 0;
    if (n > 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        for (int i = 0; i < 64 && len < sizeof(buf) - 1; i++) {
            ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
            if (r <= 0) {
                break;
            }
            len += (size_t)r;
        }
    }
    close(fd);
    buf[len] = '\0';
    const char *b = strstr(buf, "\"buffer\":{");
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0 || b == NULL) {
        return;
    }
    out->allocs = ib_json_int(buf, "allocs");
    out->empty_dry = ib_json_int(b, "empty_dry");
    out->empty_cold = ib_json_int(b, "empty_cold");
    out->fetches = ib_json_int(b, "fetches");
    out->last_step = ib_json_int(b, "last_step");
    out->served = ib_json_int(b, "served");
    out->ok = out->empty_dry >= 0 && out->fetches >= 0;
}

/* ---- worker ----------------------------------------------------------------------- */

/* The scheduled time of request j of phase p for thread k, or a time past the phase's
 * end when there is no such request. */
static double ib_due(int p, long j, int k)
{
    const double per_thread = g.phase_rate[p] / g.threads;
    return g.phase_start_us[p] + ((double)j + (double)k / g.threads) * 1e6 / per_thread;
}

/* Moves (p, j, due) to the thread's next request: the next j, or the first of the next
 * phase that has one; p == IB_PHASES after the last. */
static void ib_advance(int k, int *p, long *j, double *due)
{
    (*j)++;
    *due = ib_due(*p, *j, k);
    while (*p < IB_PHASES && *due >= g.phase_start_us[*p + 1]) {
        (*p)++;
        *j = 0;
        *due = *p < IB_PHASES ? ib_due(*p, 0, k) : 0;
    }
}

static int ib_phase_at(double t_us)
{
    for (int p = IB_PHASES - 1; p >= 0; p--) {
        if (t_us >= g.phase_start_us[p]) {
            return t_us < g.phase_start_us[IB_PHASES] ? p : -1;
        }
    }
    return -1;
}

static void ib_answer(struct ib_thread *t, struct ib_conn *c, double now)
{
    long long id = 0;
    int rv = ib_parse(c, &id);
    if (rv == 0) {
        return;
    }
    struct ib_phase_stats *ps = &t->ph[c->phase];
    if (rv == 1) {
        double lat = now - c->sched_us;
        bench_hist_record(&ps->lat, (uint64_t)(lat > 0 ? lat * 1e3 : 0));
        bench_hist_record(&ps->svc, (uint64_t)((now - c->sent_us) * 1e3));
        ps->answered++;
        if (id >= 0 && c->last_id >= 0 && id <= c->last_id) {
            t->id_regressions++;
        }
        c->last_id = id;
    } else {
        ps->errors++;
        ib_seterr(t, rv == -1 ? "error reply" : "malformed reply", c->buf);
    }
    int wp = ib_phase_at(now);
    if (wp >= 0) {
        t->ph[wp].answered_in_window++;
    }
    c->busy = false;
    c->len = 0;
}

/* proto sleep: the schedule alone. Every request due is "answered" at once, so its
 * latency is how late the thread woke for it. */
static void ib_sleep_schedule(struct ib_thread *t)
{
    int p = 0;
    long j = 0;
    double due = ib_due(0, 0, t->idx);
    for (long loop = 0; loop < IB_LOOPS_MAX && p < IB_PHASES; loop++) {
        double now = bench_now_us();
        while (p < IB_PHASES && due <= now) {
            struct ib_phase_stats *ps = &t->ph[p];
            const uint64_t late_ns = (uint64_t)((now - due) * 1e3);
            bench_hist_record(&ps->lag, late_ns);
            bench_hist_record(&ps->svc, 0);
            bench_hist_record(&ps->lat, late_ns);
            ps->scheduled++;
            ps->sent++;
            ps->answered++;
            int wp = ib_phase_at(now);
            if (wp >= 0)
                t->ph[wp].answered_in_window++;
            ib_advance(t->idx, &p, &j, &due);
        }
        if (p >= IB_PHASES)
            break;
        double wait_us = due - bench_now_us();
        if (wait_us > 0) {
            struct timespec ts = {.tv_sec = (time_t)(wait_us / 1e6),
                                  .tv_nsec = (long)(fmod(wait_us, 1e6) * 1e3)};
            (void)ppoll(NULL, 0, &ts, NULL); /* same wait as the I/O loop, no fds */
        }
    }
}

static void *ib_worker(void *arg)
{
    struct ib_thread *t = arg;
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* ppoll wakes on time, not 50 us late */
    if (g.proto == IB_SLEEP) {
        pthread_barrier_wait(&g.barrier);
        pthread_barrier_wait(&g.barrier);
        ib_sleep_schedule(t);
        return NULL;
    }
    bool ok = true;
    for (int i = 0; i < g.conns; i++) {
        t->conn[i].last_id = -1;
        t->conn[i].fd = ib_connect(&g.addr);
        if (t->conn[i].fd < 0) {
            ib_seterr(t, "connect", strerror(errno));
            ok = false;
        }
    }
    if (!ok) {
        atomic_store(&g.connect_failed, 1);
    }
    pthread_barrier_wait(&g.barrier); /* main sets the phase times here */
    pthread_barrier_wait(&g.barrier);
    if (atomic_load(&g.connect_failed)) {
        goto out;
    }
    int p = 0;
    long j = 0;
    double due = ib_due(0, 0, t->idx);
    const double drain_end = g.phase_start_us[IB_PHASES] + IB_DRAIN_S * 1e6;
    struct pollfd pfd[IB_CONNS_MAX];
    for (long loop = 0; loop < IB_LOOPS_MAX; loop++) {
        double now = bench_now_us();
        /* send what is due, as long as a connection is idle */
        int n_busy = 0;
        for (int i = 0; i < g.conns; i++) {
            n_busy += t->conn[i].busy;
        }
        while (p < IB_PHASES && due <= now && n_busy < g.conns) {
            struct ib_conn *c = NULL;
            for (int i = 0; i < g.conns && c == NULL; i++) {
                c = t->conn[i].busy ? NULL : &t->conn[i];
            }
            c->busy = true;
            c->sched_us = due;
            c->sent_us = now;
            c->phase = p;
            c->len = 0;
            n_busy++;
            t->ph[p].scheduled++;
            t->ph[p].sent++;
            bench_hist_record(&t->ph[p].lag, (uint64_t)((now - due) * 1e3));
            ib_advance(t->idx, &p, &j, &due);
            if (send(c->fd, g.req, g.req_len, MSG_NOSIGNAL) != (ssize_t)g.req_len) {
                ib_seterr(t, "send", strerror(errno));
                t->ph[c->phase].errors++;
                c->busy = false;
                goto out;
            }
        }
        if (p >= IB_PHASES && n_busy == 0) {
            break; /* all sent, all answered */
        }
        if (now > drain_end) {
            break;
        }
        /* wait for answers, or until the next request is due */
        int nf = 0;
        for (int i = 0; i < g.conns; i++) {
            if (t->conn[i].busy) {
                pfd[nf].fd = t->conn[i].fd;
                pfd[nf].events = POLLIN;
                pfd[nf].revents = 0;
                nf++;
            }
        }
        double wait_us = drain_end - now;
        if (p < IB_PHASES && n_busy < g.conns) {
            wait_us = due - now;
        }
        if (wait_us < 0) {
            wait_us = 0;
        }
        struct timespec ts = {.tv_sec = (time_t)(wait_us / 1e6),
                              .tv_nsec =
                                  (long)((wait_us - (double)(time_t)(wait_us / 1e6) * 1e6) * 1e3)};
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_nsec = 999999999L;
        }
        int r = ppoll(pfd, (nfds_t)nf, &ts, NULL);
        if (r < 0 && errno != EINTR) {
            ib_seterr(t, "ppoll", strerror(errno));
            break;
        }
        if (r <= 0) {
            continue;
        }
        for (int i = 0, f = 0; i < g.conns && f < nf; i++) {
            struct ib_conn *c = &t->conn[i];
            if (!c->busy) {
                continue;
            }
            short rev = pfd[f++].revents;
            if (rev == 0) {
                continue;
            }
            ssize_t got = recv(c->fd, c->buf + c->len, IB_BUF - c->len, MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            if (got <= 0) {
                ib_seterr(t, "recv", got == 0 ? "connection closed" : strerror(errno));
                goto out;
            }
            c->len += (size_t)got;
            ib_answer(t, c, bench_now_us());
        }
    }
out:
    for (int i = 0; i < g.conns; i++) {
        struct ib_conn *c = &t->conn[i];
        if (c->busy) {
            t->ph[c->phase].unfinished++;
        }
        if (c->fd >= 0) {
            close(c->fd);
        }
    }
    /* requests due but never sent (a stall past the drain, or an error) */
    for (long guard = 0; p < IB_PHASES && guard < (long)IB_RATE_MAX * IB_SECONDS_MAX; guard++) {
        t->ph[p].scheduled++;
        t->ph[p].unfinished++;
        ib_advance(t->idx, &p, &j, &due);
    }
    return NULL;
}

/* ---- selftest --------------------------------------------------------------------- */

/* The histogram against exact order statistics of the same samples, and a negative
 * control: a histogram that lost its tail must disagree. Returns 0 when all agree. */
static int ib_selftest(void)
{
    enum { N = 200000 };
    static struct bench_hist h, cut;
    double *v = malloc(N * sizeof(double));
    if (v == NULL) {
        return 1;
    }
    uint64_t x = 88172645463325252ULL; /* xorshift64: a fixed, reproducible sequence */
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* log-uniform over 50 ns .. 100 us, plus a 0.2% tail of exact 200 ms values */
        double u = (double)(x >> 11) / 9007199254740992.0;
        uint64_t ns = i % 500 == 0 ? 200000000ULL : (uint64_t)(50.0 * exp(u * 7.6));
        v[i] = (double)ns;
        bench_hist_record(&h, ns);
        if (ns < 200000000ULL) {
            bench_hist_record(&cut, ns);
        }
    }
    bench_sort(v, N);
    int bad = 0;
    const double qs[] = {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        size_t rank = (size_t)(qs[i] * N + 0.999999);
        double exact = v[(rank < 1 ? 1 : rank) - 1];
        double got = (double)bench_hist_quantile(&h, qs[i]);
        bool ok = got >= exact && got <= exact * (1.0 + 1.0 / (1 << BENCH_HIST_SUB_BITS)) + 1;
        printf("selftest q=%.4f exact=%.0f hist=%.0f %s\n", qs[i], exact, got, ok ? "ok" : "BAD");
        bad += !ok;
    }
    for (uint64_t t = 0; t < (1ULL << 20); t += 7) { /* every bucket covers its values */
        uint32_t b = bench_hist_index(t);
        if (bench_hist_upper(b) < t || (b > 0 && bench_hist_upper(b - 1) >= t)) {
            printf("selftest bucket of %" PRIu64 " is wrong\n", t);
            bad++;
            break;
        }
    }
    /* negative control: without the 200 ms tail the p99.9 must come out below 200 ms */
    bool control = bench_hist_quantile(&cut, 0.999) < 200000000ULL &&
                   bench_hist_quantile(&h, 0.999) >= 200000000ULL;
    printf("selftest negative control (tail removed -> p99.9 drops): %s\n", control ? "ok" : "BAD");
    bad += !control;
    free(v);
    printf("selftest %s\n", bad == 0 ? "PASS" : "FAIL");
    return bad == 0 ? 0 : 2;
}

/* ---- main ------------------------------------------------------------------------- */

static void ib_usage(void)
{
    fprintf(stderr,
            "usage: id_burst_driver resp|http|ping|sleep HOST:PORT --tag T [--http-stats HOST:PORT]\n"
            "       [--rate R] [--burst X] [--seconds D] [--warmup W] [--threads K] [--conns C]\n"
            "       id_burst_driver --selftest\n");
    exit(1);
}

static bool ib_addr(const char *s, struct sockaddr_in *out, char *host, size_t cap)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= cap) {
        return false;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

static void ib_parse_args(int argc, char **argv)
{
    if (argc < 3) {
        ib_usage();
    }
    if (strcmp(argv[1], "resp") == 0) {
        g.proto = IB_RESP;
    } else if (strcmp(argv[1], "http") == 0) {
        g.proto = IB_HTTP;
    } else if (strcmp(argv[1], "ping") == 0) {
        g.proto = IB_PING;
    } else if (strcmp(argv[1], "sleep") == 0) {
        g.proto = IB_SLEEP;
    } else {
        ib_usage();
    }
    if (!ib_addr(argv[2], &g.addr, g.host, sizeof(g.host))) {
        ib_usage();
    }
    g.rate = 5000;
    g.burst = 10;
    g.seconds = 5;
    g.warmup = 1;
    g.threads = 4;
    g.conns = 8;
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        char shost[64];
        if (strcmp(k, "--tag") == 0 && strlen(v) < IB_TAG_MAX) {
            snprintf(g.tag, sizeof(g.tag), "%s", v);
        } else if (strcmp(k, "--http-stats") == 0) {
            g.have_stats = ib_addr(v, &g.stats_addr, shost, sizeof(shost));
            if (!g.have_stats) {
                ib_usage();
            }
        } else if (strcmp(k, "--rate") == 0) {
            g.rate = atof(v);
        } else if (strcmp(k, "--burst") == 0) {
            g.burst = atof(v);
        } else if (strcmp(k, "--seconds") == 0) {
            g.seconds = atof(v);
        } else if (strcmp(k, "--warmup") == 0) {
            g.warmup = atof(v);
        } else if (strcmp(k, "--threads") == 0) {
            g.threads = atoi(v);
        } else if (strcmp(k, "--conns") == 0) {
            g.conns = atoi(v);
        } else {
            ib_usage();
        }
    }
    if ((argc - 3) % 2 != 0 || g.tag[0] == '\0' || strpbrk(g.tag, " \r\n/") != NULL ||
        !(g.rate > 0 && g.burst >= 1 && g.rate * g.burst <= IB_RATE_MAX) ||
        !(g.seconds > 0 && g.seconds <= IB_SECONDS_MAX) ||
        !(g.warmup > 0 && g.warmup <= IB_SECONDS_MAX) || g.threads < 1 ||
        g.threads > IB_THREADS_MAX || g.conns < 1 || g.conns > IB_CONNS_MAX) {
        ib_usage();
    }
}

static void ib_print_phase(int p, const struct ib_phase_stats *s, double window_s)
{
    const struct ib_tagstat *a = &g.tag_at[p], *b = &g.tag_at[p + 1];
    printf("{\"name\":\"%s\",\"offered_rps\":%.1f,\"seconds\":%.3f,\"scheduled\":%ld,"
           "\"sent\":%ld,\"answered\":%ld,\"errors\":%ld,\"unfinished\":%ld,"
           "\"achieved_rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f,\"lag_p50_us\":%.1f,\"lag_p999_us\":%.1f,\"lag_max_us\":%.1f,"
           "\"svc_p50_us\":%.1f,\"svc_p99_us\":%.1f,\"svc_p999_us\":%.1f,\"svc_max_us\":%.1f,",
           ib_phase_name[p], g.phase_rate[p], window_s, s->scheduled, s->sent, s->answered,
           s->errors, s->unfinished, (double)s->answered_in_window / window_s,
           (double)bench_hist_quantile(&s->lat, 0.5) / 1e3,
           (double)bench_hist_quantile(&s->lat, 0.99) / 1e3,
           (double)bench_hist_quantile(&s->lat, 0.999) / 1e3, (double)s->lat.max_ns / 1e3,
           (double)bench_hist_quantile(&s->lag, 0.5) / 1e3,
           (double)bench_hist_quantile(&s->lag, 0.999) / 1e3, (double)s->lag.max_ns / 1e3,
           (double)bench_hist_quantile(&s->svc, 0.5) / 1e3,
           (double)bench_hist_quantile(&s->svc, 0.99) / 1e3,
           (double)bench_hist_quantile(&s->svc, 0.999) / 1e3, (double)s->svc.max_ns / 1e3);
    if (a->ok && b->ok) {
        printf("\"tag\":{\"empty_dry\":%lld,\"empty_cold\":%lld,\"fetches\":%lld,"
               "\"allocs\":%lld,\"served\":%lld,\"last_step_end\":%lld}}",
               b->empty_dry - a->empty_dry, b->empty_cold - a->empty_cold, b->fetches - a->fetches,
               b->allocs - a->allocs, b->served - a->served, b->last_step);
    } else {
        printf("\"tag\":null}");
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--selftest") == 0) {
        return ib_selftest();
    }
    ib_parse_args(argc, argv);
    int n;
    if (g.proto == IB_PING || g.proto == IB_SLEEP) {
        n = snprintf(g.req, sizeof(g.req), "*1\r\n$4\r\nPING\r\n");
    } else if (g.proto == IB_RESP) {
        n = snprintf(g.req, sizeof(g.req), "*3\r\n$7\r\nID.NEXT\r\n$%zu\r\n%s\r\n$1\r\n1\r\n",
                     strlen(g.tag), g.tag);
    } else {
        n = snprintf(
            g.req, sizeof(g.req),
            "POST /v1/id/segments/%s/next HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", g.tag,
            g.host);
    }
    if (n < 0 || (size_t)n >= sizeof(g.req)) {
        ib_usage();
    }
    g.req_len = (size_t)n;
    struct ib_thread *ts = calloc((size_t)g.threads, sizeof(*ts));
    if (ts == NULL) {
        return 1;
    }
    pthread_barrier_init(&g.barrier, NULL, (unsigned)g.threads + 1);
    for (int i = 0; i < g.threads; i++) {
        ts[i].idx = i;
        for (int c = 0; c < IB_CONNS_MAX; c++) {
            ts[i].conn[c].fd = -1;
        }
        if (pthread_create(&ts[i].thread, NULL, ib_worker, &ts[i]) != 0) {
            fprintf(stderr, "id_burst_driver: no threads\n");
            return 1;
        }
    }
    pthread_barrier_wait(&g.barrier); /* every connection open */
    const double durations[IB_PHASES] = {g.warmup, g.seconds, g.seconds, g.seconds};
    const double rates[IB_PHASES] = {g.rate, g.rate, g.rate * g.burst, g.rate};
    double t = bench_now_us() + 20000; /* 20 ms for the threads to reach their loops */
    for (int p = 0; p < IB_PHASES; p++) {
        g.phase_start_us[p] = t;
        g.phase_rate[p] = rates[p];
        t += durations[p] * 1e6;
    }
    g.phase_start_us[IB_PHASES] = t;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    pthread_barrier_wait(&g.barrier);
    /* the tag's counters at every phase boundary, read while the workers run */
    for (int p = 0; p <= IB_PHASES && !atomic_load(&g.connect_failed); p++) {
        for (int guard = 0; guard < 100000; guard++) {
            double left = g.phase_start_us[p] - bench_now_us();
            if (left <= 0) {
                break;
            }
            usleep((useconds_t)(left > 100000 ? 100000 : left));
        }
        ib_tagstat(&g.tag_at[p]);
    }
    for (int i = 0; i < g.threads; i++) {
        pthread_join(ts[i].thread, NULL);
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    static struct ib_phase_stats sum[IB_PHASES];
    long regress = 0;
    const char *first_err = "";
    for (int i = 0; i < g.threads; i++) {
        regress += ts[i].id_regressions;
        if (first_err[0] == '\0' && ts[i].err[0] != '\0') {
            first_err = ts[i].err;
        }
        for (int p = 0; p < IB_PHASES; p++) {
            struct ib_phase_stats *d = &sum[p], *s = &ts[i].ph[p];
            bench_hist_add(&d->lat, &s->lat);
            bench_hist_add(&d->lag, &s->lag);
            bench_hist_add(&d->svc, &s->svc);
            d->scheduled += s->scheduled;
            d->sent += s->sent;
            d->answered += s->answered;
            d->errors += s->errors;
            d->unfinished += s->unfinished;
            d->answered_in_window += s->answered_in_window;
        }
    }
    printf("{\"proto\":\"%s\",\"tag\":\"%s\",\"threads\":%d,\"conns_per_thread\":%d,"
           "\"rate\":%.1f,\"burst\":%.2f,\"seconds\":%.3f,\"warmup\":%.3f,\"phases\":[",
           g.proto == IB_RESP    ? "resp"
           : g.proto == IB_HTTP  ? "http"
           : g.proto == IB_SLEEP ? "sleep"
                                 : "ping",
           g.tag, g.threads, g.conns, g.rate, g.burst, g.seconds, g.warmup);
    for (int p = 0; p < IB_PHASES; p++) {
        ib_print_phase(p, &sum[p], durations[p]);
        printf(p + 1 < IB_PHASES ? "," : "");
    }
    printf("],\"id_regressions\":%ld,\"connect_failed\":%d,\"client_cpu_s\":%.3f,"
           "\"first_error\":\"",
           regress, atomic_load(&g.connect_failed), cpu);
    for (const char *p = first_err; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            putchar('\\');
        }
        putchar(*p >= 0x20 ? *p : ' ');
    }
    printf("\"}\n");
    free(ts);
    return atomic_load(&g.connect_failed) ? 1 : 0;
}
