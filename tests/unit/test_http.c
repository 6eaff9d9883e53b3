/* test_http.c -- unit tests for api/http: the HTTP/1.1 server on real loopback sockets,
 * plus its socketless feeder for the parsing details.
 *
 * Socket tests start a server on 127.0.0.1 port 0 whose uv loop runs on its own thread;
 * the test thread is a raw blocking-socket client (5 s timeouts) that parses responses
 * with http-parser. The handler (loop thread) routes on the path:
 *   /echo          200 with the request body; X-Method, X-Query headers
 *   /path/<key>    200 with the decoded key bytes
 *   /sync?id=I     200 "id=I" at once
 *   /async?ms=M&id=I   200 "id=I" after a uv timer of M ms
 *   /hold?ms=M     registers on_close, answers after M ms (a no-op if the client left)
 *   /sse?n=K       a chunked stream of K events
 *   /flood         streams 64 KiB chunks every ms until HTTP_ESLOW
 *   /json /err     http_respond_json / http_respond_error
 * The loop thread never asserts; it counts in atomics that the test thread checks.
 * Every wait is bounded (socket timeouts, WAIT_MS polls). At teardown the server stops,
 * the thread joins and uv_loop_close() must succeed (every handle closed), and ASan
 * checks that nothing leaked.
 *
 * Sections: fixture | handler | client | basic | pipelining | expect/chunked | limits |
 * timeouts | garbage | disconnect | streams | versions | feeder | curl | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"

#define WAIT_MS      5000
#define SLOW_WAIT_MS 15000

/* ---- fixture ----------------------------------------------------------------------- */

struct fix {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop_async;
    struct http_server *srv;
    int port;
    bool running;
    struct http_server_stats stats; /* snapshot taken just before the stop */

    atomic_int dispatched;
    atomic_int outstanding;
    atomic_int outstanding_max;
    atomic_int order_errors; /* a handler call out of request-id order */
    atomic_ullong last_id;
    atomic_int holds; /* /hold requests received */
    atomic_int close_cbs;
    atomic_int late_responds; /* responds after on_close (must be no-ops) */
    atomic_int eslow;         /* /flood saw HTTP_ESLOW */
    atomic_ullong flood_bytes;
    atomic_int flood_unbounded; /* /flood wrote a lot without ESLOW */
    atomic_int loop_errors;
    atomic_int access_logs;
    atomic_int access_499;
};

static struct fix *g_fix;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define WAIT_FOR(cond, ms)                                                 \
    do {                                                                   \
        int waited_ = 0;                                                   \
        while (!(cond) && waited_ < (ms)) {                                \
            sleep_ms(2);                                                   \
            waited_ += 2;                                                  \
        }                                                                  \
        if (!(cond)) {                                                     \
            fail_msg("timed out after %d ms waiting for %s", (ms), #cond); \
        }                                                                  \
    } while (0)

static void handler(struct http_req *req, void *arg);

static void on_access(void *arg, const struct http_access *e)
{
    struct fix *f = arg;
    atomic_fetch_add(&f->access_logs, 1);
    if (e->status == 499) {
        atomic_fetch_add(&f->access_499, 1);
    }
}

static void on_server_done(void *arg)
{
    (void)arg;
}

static void on_stop_async(uv_async_t *a)
{
    struct fix *f = a->data;
    if (f->srv != NULL) { /* else a handler stopped it already */
        http_server_stats(f->srv, &f->stats);
        http_server_stop(f->srv, on_server_done, f);
        f->srv = NULL;
    }
    uv_close((uv_handle_t *)a, NULL);
}

static void loop_thread(void *arg)
{
    struct fix *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* The fixture lives on the heap (g_fix) so the teardown can stop it after a failed test
 * longjmp'd out of the test's frame. */
static struct fix *fix_start(const struct http_limits *lim)
{
    char errmsg[256] = "";
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    g_fix = f;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    const int rv =
        http_server_start(&f->loop, "127.0.0.1:0", lim, handler, f, &f->srv, errmsg, sizeof errmsg);
    if (rv != 0) {
        fail_msg("http_server_start: %d (%s): %s", rv, http_strerror(rv), errmsg);
    }
    http_server_set_access_log(f->srv, on_access, f);
    f->port = http_server_bound_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->stop_async, on_stop_async), 0);
    f->stop_async.data = f;
    assert_int_equal(uv_thread_create(&f->thread, loop_thread, f), 0);
    f->running = true;
    return f;
}

static void fix_stop(struct fix *f)
{
    if (!f->running) {
        return;
    }
    f->running = false;
    uv_async_send(&f->stop_async);
    uv_thread_join(&f->thread);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_int_equal(atomic_load(&f->loop_errors), 0);
    assert_int_equal(atomic_load(&f->order_errors), 0);
}

static int fix_teardown(void **state)
{
    if (g_fix != NULL) {
        struct fix *f = g_fix;
        g_fix = NULL;
        fix_stop(f);
        free(f);
    }
    return 0;
}

static struct http_limits limits(void)
{
    struct http_limits lim;
    http_limits_default(&lim);
    return lim;
}

/* ---- handler (loop thread) --------------------------------------------------------- */

struct pending {
    uv_timer_t timer;
    struct fix *f;
    struct http_req *req;
    bool closed;
    bool hold;
    char body[48];
};

static void pending_closed(uv_handle_t *h)
{
    free(h->data);
}

static void note_answer(struct fix *f)
{
    atomic_fetch_sub(&f->outstanding, 1);
}

static void pending_fire(uv_timer_t *t)
{
    struct pending *p = t->data;
    if (p->closed) {
        atomic_fetch_add(&p->f->late_responds, 1);
    }
    if (!p->closed && http_req_is_closed(p->req)) {
        atomic_fetch_add(&p->f->loop_errors, 1); /* closed without the callback */
    }
    http_respond(p->req, 200, "text/plain", p->body, strlen(p->body));
    note_answer(p->f);
    uv_close((uv_handle_t *)&p->timer, pending_closed);
}

static void pending_on_close(struct http_req *req, void *arg)
{
    struct pending *p = arg;
    if (p->req != req || !http_req_is_closed(req)) {
        atomic_fetch_add(&p->f->loop_errors, 1);
    }
    p->closed = true;
    atomic_fetch_add(&p->f->close_cbs, 1);
}

static void defer(struct fix *f, struct http_req *req, uint64_t ms, const char *body, bool hold)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        atomic_fetch_add(&f->loop_errors, 1);
        http_respond(req, 500, NULL, NULL, 0);
        note_answer(f);
        return;
    }
    p->f = f;
    p->req = req;
    p->hold = hold;
    snprintf(p->body, sizeof(p->body), "%s", body);
    uv_timer_init(&f->loop, &p->timer);
    p->timer.data = p;
    if (http_req_on_close(req, pending_on_close, p) != 0) {
        atomic_fetch_add(&f->loop_errors, 1);
    }
    uv_timer_start(&p->timer, pending_fire, ms, 0);
}

struct flood {
    uv_timer_t timer;
    struct fix *f;
    struct http_req *req;
    uint64_t written;
};

static void flood_closed(uv_handle_t *h)
{
    free(h->data);
}

static void flood_tick(uv_timer_t *t)
{
    static uint8_t chunk[64 << 10];
    struct flood *fl = t->data;
    for (int i = 0; i < 64; i++) {
        const int rv = http_stream_write(fl->req, chunk, sizeof(chunk));
        if (rv == HTTP_ESLOW || rv == HTTP_ECLOSED || fl->written > (1ull << 30)) {
            if (rv == HTTP_ESLOW) {
                atomic_store(&fl->f->flood_bytes, fl->written);
                atomic_store(&fl->f->eslow, 1);
            } else if (rv != HTTP_ECLOSED) {
                atomic_store(&fl->f->flood_unbounded, 1);
            }
            http_stream_end(fl->req);
            note_answer(fl->f);
            uv_timer_stop(t);
            uv_close((uv_handle_t *)t, flood_closed);
            return;
        }
        if (rv != 0) {
            atomic_fetch_add(&fl->f->loop_errors, 1);
        }
        fl->written += sizeof(chunk);
    }
}

static bool path_is(const struct http_req *req, const char *p)
{
    return strcmp(req->path, p) == 0;
}

static void handler(struct http_req *req, void *arg)
{
    struct fix *f = arg;
    char buf[64];
    uint64_t id = 0, ms = 0;

    atomic_fetch_add(&f->dispatched, 1);
    const int now = atomic_fetch_add(&f->outstanding, 1) + 1;
    int prev = atomic_load(&f->outstanding_max);
    while (now > prev && !atomic_compare_exchange_weak(&f->outstanding_max, &prev, now)) {
    }
    if (http_query_u64(req, "id", &id) == 0) {
        const unsigned long long last = atomic_exchange(&f->last_id, id + 1);
        if (id + 1 <= last) {
            atomic_fetch_add(&f->order_errors, 1);
        }
    }
    (void)http_query_u64(req, "ms", &ms);

    if (path_is(req, "/echo")) {
        http_respond_header(req, "X-Method", http_method_name(req->method));
        if (req->query != NULL) {
            http_respond_header(req, "X-Query", req->query);
        }
        http_respond(req, 200, "application/octet-stream", req->body, req->body_len);
    } else if (strncmp(req->path, "/path/", 6) == 0) {
        http_respond(req, 200, "application/octet-stream", req->path + 6, req->path_len - 6);
    } else if (path_is(req, "/sync")) {
        snprintf(buf, sizeof(buf), "id=%llu", (unsigned long long)id);
        http_respond(req, 200, "text/plain", buf, strlen(buf));
    } else if (path_is(req, "/async")) {
        snprintf(buf, sizeof(buf), "id=%llu", (unsigned long long)id);
        defer(f, req, ms, buf, false);
        return;
    } else if (path_is(req, "/hold")) {
        atomic_fetch_add(&f->holds, 1);
        defer(f, req, ms, "held", true);
        return;
    } else if (path_is(req, "/sse")) {
        uint64_t n = 0;
        (void)http_query_u64(req, "n", &n);
        if (http_stream_begin(req, 200, "text/event-stream") != 0) {
            atomic_fetch_add(&f->loop_errors, 1);
        }
        for (uint64_t i = 0; i < n; i++) {
            const int len = snprintf(buf, sizeof(buf), "data: %llu\n\n", (unsigned long long)i);
            if (http_stream_write(req, buf, (size_t)len) != 0) {
                atomic_fetch_add(&f->loop_errors, 1);
            }
        }
        http_stream_end(req);
    } else if (path_is(req, "/flood")) {
        struct flood *fl = calloc(1, sizeof(*fl));
        if (fl == NULL || http_stream_begin(req, 200, "application/octet-stream") != 0) {
            atomic_fetch_add(&f->loop_errors, 1);
            free(fl);
            http_stream_end(req);
        } else {
            fl->f = f;
            fl->req = req;
            uv_timer_init(&f->loop, &fl->timer);
            fl->timer.data = fl;
            uv_timer_start(&fl->timer, flood_tick, 1, 1);
            return;
        }
    } else if (path_is(req, "/big")) {
        uint64_t kb = 0;
        (void)http_query_u64(req, "kb", &kb);
        uint8_t *b = malloc(kb << 10);
        if (b == NULL) {
            atomic_fetch_add(&f->loop_errors, 1);
            http_respond(req, 500, NULL, NULL, 0);
        } else {
            memset(b, (int)('a' + id % 26), kb << 10);
            http_respond(req, 200, "application/octet-stream", b, kb << 10);
            free(b);
        }
    } else if (path_is(req, "/stop")) {
        /* stop from inside the handler: every connection closes, this request too */
        http_server_stats(f->srv, &f->stats);
        http_server_stop(f->srv, on_server_done, f);
        f->srv = NULL;
        if (!http_req_is_closed(req)) {
            atomic_fetch_add(&f->loop_errors, 1);
        }
        http_respond(req, 200, NULL, NULL, 0); /* only frees it */
    } else if (path_is(req, "/json")) {
        http_respond_json(req, 201, json_pack("{s:s,s:I}", "hello", "world", "n", (json_int_t)7));
    } else if (path_is(req, "/err")) {
        http_respond_error(req, 404, "key_not_found", "no key '%s' (revision %d)", "k\xff", 3);
    } else {
        http_respond_error(req, 404, "no_route", "no route for %s", req->path);
    }
    note_answer(f);
}

/* ---- client ------------------------------------------------------------------------ */

#define CLI_BUF_BYTES (256u << 10)
#define RESP_HDRS_MAX 16

struct resp {
    int status;
    uint32_t n_hdr;
    char names[RESP_HDRS_MAX][64];
    char values[RESP_HDRS_MAX][256];
    bool in_value;
    uint8_t *body;
    size_t body_len;
    size_t body_cap;
    bool complete;
};

struct cli {
    int fd;
    http_parser p;
    uint8_t buf[CLI_BUF_BYTES];
    size_t len;
    struct resp *r;
};

static int cli_on_begin(http_parser *p)
{
    struct cli *c = p->data;
    memset(c->r, 0, offsetof(struct resp, body));
    c->r->body_len = 0;
    return 0;
}

static void append(char *dst, size_t cap, const char *at, size_t n)
{
    const size_t have = strlen(dst);
    if (n > cap - 1 - have) {
        n = cap - 1 - have;
    }
    memcpy(dst + have, at, n);
    dst[have + n] = '\0';
}

static int cli_on_field(http_parser *p, const char *at, size_t n)
{
    struct resp *r = ((struct cli *)p->data)->r;
    if (r->in_value || r->n_hdr == 0) {
        if (r->n_hdr == RESP_HDRS_MAX) {
            return 0;
        }
        r->n_hdr++;
        r->names[r->n_hdr - 1][0] = '\0';
        r->values[r->n_hdr - 1][0] = '\0';
    }
    r->in_value = false;
    append(r->names[r->n_hdr - 1], sizeof(r->names[0]), at, n);
    return 0;
}

static int cli_on_value(http_parser *p, const char *at, size_t n)
{
    struct resp *r = ((struct cli *)p->data)->r;
    r->in_value = true;
    if (r->n_hdr > 0) {
        append(r->values[r->n_hdr - 1], sizeof(r->values[0]), at, n);
    }
    return 0;
}

static int cli_on_body(http_parser *p, const char *at, size_t n)
{
    struct resp *r = ((struct cli *)p->data)->r;
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) {
            cap *= 2;
        }
        r->body = realloc(r->body, cap);
        assert_non_null(r->body);
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return 0;
}

static int cli_on_done(http_parser *p)
{
    struct cli *c = p->data;
    c->r->status = (int)p->status_code;
    c->r->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings cli_settings = {
    .on_message_begin = cli_on_begin,
    .on_header_field = cli_on_field,
    .on_header_value = cli_on_value,
    .on_body = cli_on_body,
    .on_message_complete = cli_on_done,
};

static struct cli *cli_open_rcvbuf(int port, int rcvbuf)
{
    struct cli *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (rcvbuf > 0) {
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    return c;
}

static struct cli *cli_open(int port)
{
    return cli_open_rcvbuf(port, 0);
}

static void cli_close(struct cli *c)
{
    if (c != NULL) {
        close(c->fd);
        free(c);
    }
}

static void cli_send(struct cli *c, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        const ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            fail_msg("send: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
}

static void cli_sends(struct cli *c, const char *s)
{
    cli_send(c, s, strlen(s));
}

/* Reads one response (an interim 100 counts as one). Returns 0, or -1 when the server
 * closed or the read timed out first. r->body must be freed with resp_free. */
static int cli_read(struct cli *c, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    c->r = r;
    for (;;) {
        if (c->len > 0) {
            const size_t n = http_parser_execute(&c->p, &cli_settings, (char *)c->buf, c->len);
            const enum http_errno e = HTTP_PARSER_ERRNO(&c->p);
            if (e != HPE_OK && e != HPE_PAUSED) {
                fail_msg("response does not parse: %s", http_errno_description(e));
            }
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            if (e == HPE_PAUSED) {
                http_parser_pause(&c->p, 0);
                return 0;
            }
        }
        const ssize_t got = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (got <= 0) {
            http_parser_execute(&c->p, &cli_settings, NULL, 0); /* EOF-delimited body */
            if (HTTP_PARSER_ERRNO(&c->p) == HPE_PAUSED) {
                http_parser_pause(&c->p, 0);
                return 0;
            }
            return -1;
        }
        c->len += (size_t)got;
    }
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

static const char *resp_header(const struct resp *r, const char *name)
{
    for (uint32_t i = 0; i < r->n_hdr; i++) {
        if (strcasecmp(r->names[i], name) == 0) {
            return r->values[i];
        }
    }
    return NULL;
}

static void expect_response(struct cli *c, struct resp *r, int status)
{
    if (cli_read(c, r) != 0) {
        fail_msg("no response (want %d)", status);
    }
    if (r->status != status) {
        fail_msg("status %d, want %d; body: %.*s", r->status, status, (int)r->body_len,
                 r->body != NULL ? (char *)r->body : "");
    }
}

/* The server closes: recv gives EOF (or a reset) and no more bytes. */
static void expect_closed(struct cli *c)
{
    assert_int_equal(c->len, 0);
    char b[256];
    const ssize_t got = recv(c->fd, b, sizeof(b), 0);
    if (got > 0) {
        fail_msg("expected close, got %zd more bytes: %.*s", got, (int)got, b);
    }
    if (got < 0 && errno != ECONNRESET) {
        fail_msg("expected close, recv: %s", strerror(errno));
    }
}

/* Error body {"error":{"code":code,...}} whose message contains needle. */
static void expect_error_body(const struct resp *r, const char *code, const char *needle)
{
    json_error_t jerr;
    assert_non_null(r->body);
    json_t *o = json_loadb((const char *)r->body, r->body_len, 0, &jerr);
    if (o == NULL) {
        fail_msg("error body is not JSON (%s): %.*s", jerr.text, (int)r->body_len, r->body);
    }
    const char *got_code = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    assert_non_null(got_code);
    assert_non_null(msg);
    assert_string_equal(got_code, code);
    if (needle != NULL && strstr(msg, needle) == NULL) {
        fail_msg("error message '%s' lacks '%s'", msg, needle);
    }
    json_decref(o);
}

/* ---- basic ------------------------------------------------------------------------- */

static void test_get_put(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open(f->port);
    struct resp r;

    cli_sends(c, "GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_response(c, &r, 200);
    assert_string_equal(resp_header(&r, "Server"), "conclave");
    assert_string_equal(resp_header(&r, "Content-Length"), "0");
    assert_string_equal(resp_header(&r, "X-Method"), "GET");
    assert_string_equal(resp_header(&r, "X-Query"), "a=1");
    assert_null(resp_header(&r, "Connection"));
    resp_free(&r);

    cli_sends(c, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
    expect_response(c, &r, 200);
    assert_string_equal(resp_header(&r, "Content-Length"), "11");
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "hello world", 11);
    resp_free(&r);

    cli_sends(c, "GET /json HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 201);
    assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
    assert_string_equal((char *)r.body, "{\"hello\":\"world\",\"n\":7}\n");
    resp_free(&r);

    cli_sends(c, "GET /err HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 404);
    expect_error_body(&r, "key_not_found", "no key 'k?' (revision 3)");
    resp_free(&r);

    cli_close(c);
    fix_stop(f);
    assert_int_equal(f->stats.conns_accepted, 1);
    assert_int_equal(f->stats.requests, 4);
}

static void test_keepalive_reuse(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open(f->port);
    for (int i = 0; i < 20; i++) {
        char req[128];
        struct resp r;
        snprintf(req, sizeof(req), "GET /sync?id=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        cli_sends(c, req);
        expect_response(c, &r, 200);
        char want[32];
        snprintf(want, sizeof(want), "id=%d", i);
        assert_string_equal((char *)r.body, want);
        resp_free(&r);
    }
    cli_close(c);
    fix_stop(f);
    assert_int_equal(f->stats.conns_accepted, 1);
    assert_int_equal(f->stats.requests, 20);
}

static void test_binary_path(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open(f->port);
    struct resp r;

    cli_sends(c, "GET /path/a%00b%2Fc+d%ff HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 200);
    assert_int_equal(r.body_len, 8);
    assert_memory_equal(r.body, "a\0b/c+d\xff", 8);
    resp_free(&r);

    /* A bad escape is the request's fault, not the connection's: 400, then go on. */
    cli_sends(c, "GET /path/%zz HTTP/1.1\r\n\r\nGET /sync?id=1 HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 400);
    expect_error_body(&r, "bad_request", "percent-escape");
    assert_null(resp_header(&r, "Connection"));
    resp_free(&r);
    expect_response(c, &r, 200);
    assert_string_equal((char *)r.body, "id=1");
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
}

/* ---- pipelining -------------------------------------------------------------------- */

static void run_pipeline(uint32_t pipeline_max)
{
    struct http_limits lim = limits();
    lim.pipeline_max = pipeline_max;
    struct fix *f = fix_start(&lim);
    struct cli *c = cli_open(f->port);

    /* 100 requests in one write; most answered after timers that make later requests
     * ready before earlier ones. */
    static char reqs[100 * 64];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        if (i % 3 == 0) {
            n +=
                (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET /sync?id=%d HTTP/1.1\r\n\r\n", i);
        } else {
            n += (size_t)snprintf(reqs + n, sizeof(reqs) - n,
                                  "GET /async?id=%d&ms=%d HTTP/1.1\r\n\r\n", i, (100 - i) % 7 * 3);
        }
    }
    cli_send(c, reqs, n);
    for (int i = 0; i < 100; i++) {
        struct resp r;
        char want[32];
        expect_response(c, &r, 200);
        snprintf(want, sizeof(want), "id=%d", i);
        if (r.body == NULL || strcmp((char *)r.body, want) != 0) {
            fail_msg("response %d is '%s', want '%s'", i, r.body ? (char *)r.body : "", want);
        }
        resp_free(&r);
    }
    cli_close(c);
    fix_stop(f);
    assert_int_equal(atomic_load(&f->dispatched), 100);
    assert_true(atomic_load(&f->outstanding_max) <= (int)pipeline_max);
    assert_true(atomic_load(&f->outstanding_max) >= 2); /* async answers overlapped */
    assert_int_equal(f->stats.conns_accepted, 1);
}

static void test_pipeline_100(void **state)
{
    run_pipeline(HTTP_PIPELINE_MAX);
}

static void test_pipeline_backpressure(void **state)
{
    run_pipeline(3);
}

/* ---- expect / chunked -------------------------------------------------------------- */

static void test_expect_continue(void **state)
{
    struct http_limits lim = limits();
    lim.body_bytes_max = 4096;
    struct fix *f = fix_start(&lim);
    struct cli *c = cli_open(f->port);
    struct resp r;
    static char body[2000];
    memset(body, 'b', sizeof(body));

    cli_sends(c, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    expect_response(c, &r, 100);
    resp_free(&r);
    cli_send(c, body, sizeof(body));
    expect_response(c, &r, 200);
    assert_int_equal(r.body_len, sizeof(body));
    assert_memory_equal(r.body, body, sizeof(body));
    resp_free(&r);

    /* Too large: the 413 comes at once, without waiting for the body. */
    cli_sends(c, "PUT /echo HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    expect_response(c, &r, 413);
    expect_error_body(&r, "body_too_large", "4096");
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* Anything but 100-continue: 417. */
    c = cli_open(f->port);
    cli_sends(c, "PUT /echo HTTP/1.1\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx");
    expect_response(c, &r, 417);
    expect_error_body(&r, "expectation_failed", "teapot");
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
}

static void test_chunked_body(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open(f->port);
    struct resp r;
    cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    sleep_ms(20);
    cli_sends(c, "1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n");
    expect_response(c, &r, 200);
    assert_int_equal(r.body_len, 12);
    assert_memory_equal(r.body, "hello world!", 12);
    resp_free(&r);
    /* the connection goes on after trailers */
    cli_sends(c, "GET /sync?id=5 HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 200);
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
}

/* ---- limits ------------------------------------------------------------------------ */

static void test_limit_headers_431(void **state)
{
    struct http_limits lim = limits();
    lim.header_bytes_max = 1024;
    struct fix *f = fix_start(&lim);
    struct resp r;

    struct cli *c = cli_open(f->port);
    static char big[1200];
    memset(big, 'v', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    cli_sends(c, "GET /sync?id=1 HTTP/1.1\r\nX-Big: ");
    cli_sends(c, big);
    cli_sends(c, "\r\n\r\n");
    expect_response(c, &r, 431);
    expect_error_body(&r, "headers_too_large", "1024 bytes (header_bytes_max)");
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    c = cli_open(f->port);
    cli_sends(c, "GET /sync?id=2 HTTP/1.1\r\n");
    for (unsigned i = 0; i <= HTTP_HEADERS_MAX; i++) {
        cli_sends(c, "A: b\r\n");
    }
    cli_sends(c, "\r\n");
    expect_response(c, &r, 431);
    expect_error_body(&r, "headers_too_large", "HTTP_HEADERS_MAX");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);
    fix_stop(f);
    assert_int_equal(atomic_load(&f->dispatched), 0);
}

static void test_limit_body_413(void **state)
{
    struct http_limits lim = limits();
    lim.body_bytes_max = 1000;
    struct fix *f = fix_start(&lim);
    struct resp r;

    struct cli *c = cli_open(f->port);
    cli_sends(c, "PUT /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n");
    expect_response(c, &r, 413);
    expect_error_body(&r, "body_too_large", "exceeds 1000 bytes (body_bytes_max)");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* chunked: caught while the chunks arrive */
    c = cli_open(f->port);
    cli_sends(c, "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    static char chunk[600];
    memset(chunk, 'c', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        cli_sends(c, "258\r\n"); /* 600 */
        cli_send(c, chunk, sizeof(chunk));
        cli_sends(c, "\r\n");
    }
    expect_response(c, &r, 413);
    expect_error_body(&r, "body_too_large", "1000");
    resp_free(&r);
    cli_close(c);

    /* exactly at the limit is fine */
    c = cli_open(f->port);
    static char ok[1000];
    memset(ok, 'o', sizeof(ok));
    cli_sends(c, "PUT /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    cli_send(c, ok, sizeof(ok));
    expect_response(c, &r, 200);
    assert_int_equal(r.body_len, 1000);
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
}

static void test_limit_url_414(void **state)
{
    struct http_limits lim = limits();
    lim.url_bytes_max = 100;
    struct fix *f = fix_start(&lim);
    struct resp r;
    struct cli *c = cli_open(f->port);
    char req[512];
    memset(req, 0, sizeof(req));
    strcpy(req, "GET /");
    memset(req + 5, 'u', 120);
    strcat(req, " HTTP/1.1\r\n\r\n");
    cli_sends(c, req);
    expect_response(c, &r, 414);
    expect_error_body(&r, "url_too_long", "100 bytes (url_bytes_max)");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);
    fix_stop(f);
}

static void test_limit_conns_503(void **state)
{
    struct http_limits lim = limits();
    lim.conns_max = 2;
    struct fix *f = fix_start(&lim);
    struct resp r;
    struct cli *a = cli_open(f->port);
    struct cli *b = cli_open(f->port);
    cli_sends(a, "GET /sync?id=1 HTTP/1.1\r\n\r\n");
    expect_response(a, &r, 200);
    resp_free(&r);
    cli_sends(b, "GET /sync?id=2 HTTP/1.1\r\n\r\n");
    expect_response(b, &r, 200);
    resp_free(&r);

    struct cli *c = cli_open(f->port);
    expect_response(c, &r, 503);
    expect_error_body(&r, "too_many_connections", "2 open connections");
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* a freed slot is usable again, once the server has seen the close */
    cli_close(a);
    int status = 0;
    for (int tries = 0; tries < 250 && status != 200; tries++) {
        c = cli_open(f->port);
        cli_sends(c, "GET /sync?id=3 HTTP/1.1\r\n\r\n");
        if (cli_read(c, &r) == 0) {
            status = r.status;
            resp_free(&r);
        }
        cli_close(c);
        if (status != 200) {
            sleep_ms(20);
        }
    }
    assert_int_equal(status, 200);
    cli_close(b);
    fix_stop(f);
    assert_true(f->stats.conns_refused >= 1);
}

/* ---- timeouts ---------------------------------------------------------------------- */

static void test_request_timeout_408(void **state)
{
    struct http_limits lim = limits();
    lim.request_timeout_ms = 150;
    struct fix *f = fix_start(&lim);
    struct resp r;
    struct cli *c = cli_open(f->port);
    cli_sends(c, "GET /sync?id=1 HTTP/1.1\r\nHost: x\r\n"); /* never finishes the head */
    expect_response(c, &r, 408);
    expect_error_body(&r, "request_timeout", "150 ms");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* a body that stops arriving counts too */
    c = cli_open(f->port);
    cli_sends(c, "PUT /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    expect_response(c, &r, 408);
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
    assert_int_equal(f->stats.timeouts_request, 2);
}

static void test_idle_timeout(void **state)
{
    struct http_limits lim = limits();
    lim.idle_timeout_ms = 100;
    struct fix *f = fix_start(&lim);
    struct resp r;
    struct cli *c = cli_open(f->port);
    cli_sends(c, "GET /sync?id=1 HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 200);
    resp_free(&r);
    expect_closed(c); /* silently, after ~100 ms of nothing */
    cli_close(c);

    /* bare CRLFs between requests are not activity: they cannot hold the connection */
    c = cli_open(f->port);
    bool closed = false;
    for (int i = 0; i < 100 && !closed; i++) {
        char b[16];
        send(c->fd, "\r\n", 2, MSG_NOSIGNAL);
        sleep_ms(20);
        const ssize_t got = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
        closed = got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    assert_true(closed);
    cli_close(c);

    /* a slow handler is not the client's fault: no timeout while it works */
    c = cli_open(f->port);
    cli_sends(c, "GET /async?id=2&ms=300 HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 200);
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
    assert_true(f->stats.timeouts_idle >= 2);
}

/* ---- garbage ----------------------------------------------------------------------- */

static void test_garbage_400(void **state)
{
    struct fix *f = fix_start(NULL);
    struct resp r;
    struct cli *c = cli_open(f->port);
    cli_sends(c, "\x01\x02\xff garbage\r\n\r\n");
    expect_response(c, &r, 400);
    expect_error_body(&r, "bad_request", "malformed HTTP request");
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* a good request, then garbage: the good one is answered first */
    c = cli_open(f->port);
    cli_sends(c, "GET /async?id=1&ms=30 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n");
    expect_response(c, &r, 200);
    assert_string_equal((char *)r.body, "id=1");
    resp_free(&r);
    expect_response(c, &r, 400);
    expect_error_body(&r, "bad_request", "header");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* smuggling shapes are refused */
    c = cli_open(f->port);
    cli_sends(
        c,
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_response(c, &r, 400);
    resp_free(&r);
    cli_close(c);

    c = cli_open(f->port);
    cli_sends(c, "GET / HTTP/2.0\r\n\r\n");
    expect_response(c, &r, 505);
    resp_free(&r);
    cli_close(c);

    /* the server still works, and never crashed on random bytes */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 20; k++) {
        c = cli_open(f->port);
        uint8_t junk[512];
        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        if (k % 2 == 0) {
            memcpy(junk, "GET /", 5);
        }
        send(c->fd, junk, sizeof(junk), MSG_NOSIGNAL);
        cli_close(c);
    }
    c = cli_open(f->port);
    cli_sends(c, "GET /sync?id=9 HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 200);
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
}

/* ---- disconnect -------------------------------------------------------------------- */

static void test_disconnect_during_async(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open(f->port);
    cli_sends(c, "GET /hold?ms=200 HTTP/1.1\r\n\r\n");
    WAIT_FOR(atomic_load(&f->holds) == 1, WAIT_MS);
    cli_close(c);
    WAIT_FOR(atomic_load(&f->close_cbs) == 1, WAIT_MS);
    WAIT_FOR(atomic_load(&f->late_responds) == 1, WAIT_MS); /* the respond was a no-op */
    WAIT_FOR(atomic_load(&f->access_499) == 1, WAIT_MS);

    /* stopping the server with a request outstanding: on_close, then the late respond */
    c = cli_open(f->port);
    cli_sends(c, "GET /hold?ms=100 HTTP/1.1\r\n\r\n");
    WAIT_FOR(atomic_load(&f->holds) == 2, WAIT_MS);
    fix_stop(f);
    assert_int_equal(atomic_load(&f->close_cbs), 2);
    assert_int_equal(atomic_load(&f->late_responds), 2);
    cli_close(c);
}

static void test_stop_from_handler(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *a = cli_open(f->port);
    cli_sends(a, "GET /hold?ms=100 HTTP/1.1\r\n\r\n");
    WAIT_FOR(atomic_load(&f->holds) == 1, WAIT_MS);
    struct cli *b = cli_open(f->port);
    cli_sends(b, "GET /stop HTTP/1.1\r\n\r\nGET /sync?id=1 HTTP/1.1\r\n\r\n");
    expect_closed(b);
    expect_closed(a);
    WAIT_FOR(atomic_load(&f->late_responds) == 1, WAIT_MS);
    fix_stop(f);
    assert_int_equal(atomic_load(&f->close_cbs), 1);
    assert_int_equal(atomic_load(&f->dispatched), 2); /* /sync was never handled */
    cli_close(a);
    cli_close(b);
}

/* ---- streams ----------------------------------------------------------------------- */

static void test_sse_chunked(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open(f->port);
    cli_sends(c, "GET /sse?n=3 HTTP/1.1\r\n\r\n");
    /* check the raw framing first */
    char raw[1024];
    size_t n = 0;
    raw[0] = '\0';
    while (n < sizeof(raw) - 1 && strstr(raw, "0\r\n\r\n") == NULL) {
        const ssize_t got = recv(c->fd, raw + n, sizeof(raw) - 1 - n, 0);
        assert_true(got > 0);
        n += (size_t)got;
        raw[n] = '\0';
    }
    assert_non_null(strstr(raw, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(raw, "Content-Type: text/event-stream\r\n"));
    assert_null(strstr(raw, "Content-Length"));
    assert_non_null(strstr(
        raw, "\r\n\r\n9\r\ndata: 0\n\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"));

    /* and that it parses, with the connection still usable */
    cli_sends(c, "GET /sse?n=2 HTTP/1.1\r\n\r\nGET /sync?id=1 HTTP/1.1\r\n\r\n");
    struct resp r;
    expect_response(c, &r, 200);
    assert_string_equal((char *)r.body, "data: 0\n\ndata: 1\n\n");
    resp_free(&r);
    expect_response(c, &r, 200);
    assert_string_equal((char *)r.body, "id=1");
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
}

static void test_sse_slow_reader(void **state)
{
    struct http_limits lim = limits();
    lim.stream_buffer_bytes_max = 256u << 10;
    struct fix *f = fix_start(&lim);
    struct cli *c = cli_open_rcvbuf(f->port, 4096);
    cli_sends(c, "GET /flood HTTP/1.1\r\n\r\n");
    /* never read: the server must hit HTTP_ESLOW instead of buffering without bound */
    WAIT_FOR(atomic_load(&f->eslow) == 1 || atomic_load(&f->flood_unbounded) == 1, SLOW_WAIT_MS);
    assert_int_equal(atomic_load(&f->flood_unbounded), 0);
    const unsigned long long written = atomic_load(&f->flood_bytes);
    /* what the kernel buffers on both sides, plus the stream limit */
    if (written > (64ull << 20)) {
        fail_msg("wrote %llu bytes before HTTP_ESLOW", written);
    }
    cli_close(c);
    fix_stop(f);
    assert_true(f->stats.stream_slow >= 1);
}

static void test_stalled_reader_closed(void **state)
{
    struct http_limits lim = limits();
    lim.stream_buffer_bytes_max = 64u << 10;
    lim.idle_timeout_ms = 100;
    struct fix *f = fix_start(&lim);
    struct cli *c = cli_open_rcvbuf(f->port, 4096);
    cli_sends(c, "GET /flood HTTP/1.1\r\n\r\n");
    WAIT_FOR(atomic_load(&f->eslow) == 1, SLOW_WAIT_MS);
    /* the stream ended, but the client reads nothing: after idle_timeout_ms the
     * connection is closed rather than held forever (as stalled while our queue still
     * holds bytes, as idle once the kernel took them all) */
    WAIT_FOR(atomic_load(&f->access_logs) == 1, WAIT_MS);
    sleep_ms(400);
    fix_stop(f);
    assert_int_equal(f->stats.timeouts_stalled + f->stats.timeouts_idle, 1);
    assert_int_equal(f->stats.n_conns, 0);
    cli_close(c);
}

/* A client that pipelines requests with large responses but never reads: the server
 * stops reading requests once HTTP_OUT_BYTES_HIGH_WATER is unsent, instead of queueing
 * every response; when the client reads, everything arrives in order. */
static void test_output_backpressure(void **state)
{
    struct fix *f = fix_start(NULL);
    struct cli *c = cli_open_rcvbuf(f->port, 4096);
    static char reqs[64 * 48];
    size_t n = 0;
    const int total = 60;
    for (int i = 0; i < total; i++) {
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET /big?id=%d&kb=512 HTTP/1.1\r\n\r\n",
                              i);
    }
    cli_send(c, reqs, n);
    sleep_ms(300);
    const int seen = atomic_load(&f->dispatched);
    if (seen >= total) {
        fail_msg("all %d requests were handled while nobody read 30 MiB of responses", seen);
    }
    for (int i = 0; i < total; i++) {
        struct resp r;
        expect_response(c, &r, 200);
        assert_int_equal(r.body_len, 512u << 10);
        assert_int_equal(r.body[0], 'a' + i % 26);
        assert_int_equal(r.body[r.body_len - 1], 'a' + i % 26);
        resp_free(&r);
    }
    cli_close(c);
    fix_stop(f);
    assert_int_equal(atomic_load(&f->dispatched), total);
}

/* ---- versions ---------------------------------------------------------------------- */

static void test_http10_and_close(void **state)
{
    struct fix *f = fix_start(NULL);
    struct resp r;

    struct cli *c = cli_open(f->port);
    cli_sends(c, "GET /sync?id=1 HTTP/1.0\r\n\r\n");
    expect_response(c, &r, 200);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    assert_string_equal((char *)r.body, "id=1");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    c = cli_open(f->port);
    cli_sends(c, "GET /sync?id=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_response(c, &r, 200);
    assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
    resp_free(&r);
    cli_sends(c, "GET /sync?id=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_response(c, &r, 200);
    resp_free(&r);
    cli_close(c);

    /* 1.1 with Connection: close; a request pipelined after it is never read */
    c = cli_open(f->port);
    cli_sends(c, "GET /async?id=4&ms=20 HTTP/1.1\r\nConnection: close\r\n\r\n"
                 "GET /sync?id=5 HTTP/1.1\r\n\r\n");
    expect_response(c, &r, 200);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    assert_string_equal((char *)r.body, "id=4");
    resp_free(&r);
    expect_closed(c);
    cli_close(c);

    /* a 1.0 stream is delimited by the close */
    c = cli_open(f->port);
    cli_sends(c, "GET /sse?n=2 HTTP/1.0\r\n\r\n");
    expect_response(c, &r, 200);
    assert_null(resp_header(&r, "Transfer-Encoding"));
    assert_string_equal((char *)r.body, "data: 0\n\ndata: 1\n\n");
    resp_free(&r);
    cli_close(c);
    fix_stop(f);
    assert_int_equal(atomic_load(&f->dispatched), 5);
}

/* ---- feeder ------------------------------------------------------------------------ */

struct outbuf {
    char bytes[64 << 10];
    size_t n;
};

static void out_append(void *arg, const void *b, size_t n)
{
    struct outbuf *o = arg;
    assert_true(n <= sizeof(o->bytes) - 1 - o->n);
    memcpy(o->bytes + o->n, b, n);
    o->n += n;
    o->bytes[o->n] = '\0';
}

struct held {
    struct http_req *reqs[32];
    int n;
    int closes;
};

static void feed_handler(struct http_req *req, void *arg)
{
    struct held *h = arg;
    if (strcmp(req->path, "/hold") == 0) {
        assert_true(h->n < 32);
        h->reqs[h->n++] = req;
        return;
    }
    char body[512];
    char q[64];
    size_t qlen = 0;
    bool b = false;
    uint64_t u = 0;
    const int rq = http_query_get(req, "q", q, sizeof(q), &qlen);
    const int rb = http_query_bool(req, "b", &b);
    const int ru = http_query_u64(req, "u", &u);
    const char *ua = http_req_header(req, "user-AGENT");
    const int n = snprintf(body, sizeof(body), "%s %s q=%d:%zu b=%d:%d u=%d:%llu ua=%s len=%zu",
                           http_method_name(req->method), req->path, rq, qlen, rb, (int)b, ru,
                           (unsigned long long)u, ua ? ua : "-", req->body_len);
    http_respond(req, 200, "text/plain", body, (size_t)n);
}

static void feed_all(const struct http_limits *lim, const char *in, size_t step, struct outbuf *out,
                     struct held *h)
{
    struct http_feeder *f;
    assert_int_equal(http_feeder_new(lim, feed_handler, h, out_append, out, &f), 0);
    const size_t len = strlen(in);
    size_t pos = 0;
    while (pos < len && !http_feeder_closed(f)) {
        const size_t want = len - pos < step ? len - pos : step;
        const size_t took = http_feeder_feed(f, in + pos, want);
        assert_int_equal(took, want);
        pos += took;
    }
    http_feeder_free(f);
}

static void test_feeder_split_anywhere(void **state)
{
    const char *in =
        "GET /a%20b?q=x%2By+z&b=yes&u=18446744073709551615 HTTP/1.1\r\nUser-Agent: t/1\r\n\r\n"
        "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        "HEAD /h?b=maybe&u=1x HTTP/1.1\r\n\r\n"
        "PUT /z?q&u=18446744073709551616 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    static struct outbuf whole, piece;
    struct held h = {0};
    whole.n = 0;
    feed_all(NULL, in, strlen(in), &whole, &h);
    assert_non_null(
        strstr(whole.bytes, "GET /a b q=0:5 b=0:1 u=0:18446744073709551615 ua=t/1 len=0"));
    assert_non_null(strstr(whole.bytes, "POST /p q=-1908:0 b=-1908:0 u=-1908:0 ua=- len=3"));
    assert_non_null(strstr(whole.bytes, "PUT /z q=0:0 b=-1908:0 u=-1910:0 ua=- len=2"));
    /* HEAD: the length of the body it would have had, and no body */
    const char *head = strstr(whole.bytes, "HTTP/1.1 200 OK\r\nServer: conclave\r\nContent-Type: "
                                           "text/plain\r\nContent-Length: 48\r\n\r\nHTTP/1.1");
    assert_non_null(head);
    for (size_t step = 1; step < 40; step++) {
        piece.n = 0;
        feed_all(NULL, in, step, &piece, &h);
        assert_int_equal(piece.n, whole.n);
        assert_memory_equal(piece.bytes, whole.bytes, whole.n);
    }
}

static void test_feeder_order_and_close(void **state)
{
    static struct outbuf out;
    struct held h = {0};
    struct http_limits lim = limits();
    lim.pipeline_max = 2;
    struct http_feeder *f;
    out.n = 0;
    assert_int_equal(http_feeder_new(&lim, feed_handler, &h, out_append, &out, &f), 0);
    const char *in = "GET /hold HTTP/1.1\r\n\r\nGET /hold HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n";
    const size_t took = http_feeder_feed(f, in, strlen(in));
    assert_int_equal(took, strlen(in)); /* taken into the buffer ... */
    assert_int_equal(h.n, 2);           /* ... but parsing waits: pipeline_max = 2 */
    assert_int_equal(out.n, 0);

    /* the second answer is ready first, yet nothing leaves before the first */
    assert_int_equal(http_respond_header(h.reqs[1], "Location", "/two"), 0);
    assert_int_equal(http_respond_header(h.reqs[1], "X-Bad", "a\r\nb"), HTTP_EINVAL);
    assert_int_equal(http_respond_header(h.reqs[1], "Bad Name", "v"), HTTP_EINVAL);
    assert_int_equal(http_respond_header(h.reqs[1], "content-length", "1"), HTTP_EINVAL);
    http_respond(h.reqs[1], 201, NULL, "two", 3);
    assert_int_equal(out.n, 0);
    http_respond(h.reqs[0], 200, NULL, "one", 3);
    const char *one = strstr(out.bytes, "one");
    const char *two = strstr(out.bytes, "two");
    assert_non_null(one);
    assert_non_null(two);
    assert_true(one < two);
    assert_non_null(strstr(out.bytes, "Location: /two\r\n"));
    assert_null(strstr(out.bytes, "GET /x")); /* third not yet parsed */
    assert_int_equal(http_feeder_feed(f, NULL, 0), 0);
    assert_non_null(strstr(out.bytes, "GET /x"));

    /* EOF with a request outstanding: it is detached; its finish only frees it */
    h.n = 0;
    assert_int_equal(http_feeder_feed(f, "GET /hold HTTP/1.1\r\n\r\n", 22), 22);
    assert_int_equal(h.n, 1);
    assert_false(http_req_is_closed(h.reqs[0]));
    http_feeder_eof(f);
    assert_true(http_feeder_closed(f));
    assert_true(http_req_is_closed(h.reqs[0]));
    assert_int_equal(http_respond_header(h.reqs[0], "A", "b"), HTTP_ECLOSED);
    assert_int_equal(http_stream_begin(h.reqs[0], 200, NULL), HTTP_ECLOSED);
    const size_t before = out.n;
    http_respond(h.reqs[0], 200, NULL, "late", 4);
    assert_int_equal(out.n, before);
    http_feeder_free(f);
}

static void test_helpers(void **state)
{
    char out[16];
    size_t n = 0;
    assert_int_equal(http_path_decode("/a%41%2f+", 9, out, sizeof(out), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "/aA/+", 6);
    assert_int_equal(http_path_decode("%0", 2, out, sizeof(out), &n), HTTP_EBADVALUE);
    assert_int_equal(http_path_decode("%g0", 3, out, sizeof(out), &n), HTTP_EBADVALUE);
    assert_int_equal(http_path_decode("abcd", 4, out, 4, &n), HTTP_ETOOLONG);
    assert_int_equal(http_path_decode("abc", 3, out, 4, &n), 0);
    assert_string_equal(http_strerror(HTTP_ESLOW), "client reads too slowly: stream buffer full");

    /* limits are validated, each with its name in the message */
    uv_loop_t loop;
    struct http_server *srv = (struct http_server *)1;
    char errmsg[256];
    struct http_limits lim = limits();
    assert_int_equal(uv_loop_init(&loop), 0);
    lim.pipeline_max = 0;
    assert_int_equal(http_server_start(&loop, "127.0.0.1:0", &lim, feed_handler, NULL, &srv, errmsg,
                                       sizeof(errmsg)),
                     HTTP_EINVAL);
    assert_null(srv);
    assert_non_null(strstr(errmsg, "pipeline_max"));
    lim = limits();
    lim.body_bytes_max = HTTP_BODY_BYTES_MAX + 1;
    assert_int_equal(http_server_start(&loop, "127.0.0.1:0", &lim, feed_handler, NULL, &srv, errmsg,
                                       sizeof(errmsg)),
                     HTTP_EINVAL);
    assert_non_null(strstr(errmsg, "body_bytes_max"));
    const char *bad[] = {"",       "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
                         "::1:80", "[::1:80",   "h:8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(http_server_start(&loop, bad[i], NULL, feed_handler, NULL, &srv, errmsg,
                                           sizeof(errmsg)),
                         HTTP_EADDR);
    }
    /* a port in use: ELISTEN, and the loop still closes cleanly */
    struct http_server *a = NULL;
    assert_int_equal(http_server_start(&loop, "127.0.0.1:0", NULL, feed_handler, NULL, &a, errmsg,
                                       sizeof(errmsg)),
                     0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", http_server_bound_port(a));
    assert_int_equal(
        http_server_start(&loop, addr, NULL, feed_handler, NULL, &srv, errmsg, sizeof(errmsg)),
        HTTP_ELISTEN);
    assert_non_null(strstr(errmsg, "cannot listen"));
    http_server_stop(a, NULL, NULL);
    /* names and IPv6 literals (skipped where the host has no IPv6 loopback) */
    assert_int_equal(http_server_start(&loop, "localhost:0", NULL, feed_handler, NULL, &a, errmsg,
                                       sizeof(errmsg)),
                     0);
    assert_true(http_server_bound_port(a) > 0);
    http_server_stop(a, NULL, NULL);
    if (http_server_start(&loop, "[::1]:0", NULL, feed_handler, NULL, &a, errmsg, sizeof(errmsg)) ==
        0) {
        assert_true(http_server_bound_port(a) > 0);
        http_server_stop(a, NULL, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- curl -------------------------------------------------------------------------- */

static bool have_curl(void)
{
    return access("/usr/bin/curl", X_OK) == 0;
}

/* Runs a shell command (bounded by `timeout`), returns its stdout (first line). */
static void run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    const int rc = pclose(p);
    if (rc != 0) {
        fail_msg("command failed (%d): %s -> %s", rc, cmd, out);
    }
}

static void test_curl(void **state)
{
    if (!have_curl()) {
        skip();
    }
    struct fix *f = fix_start(NULL);
    char dir[] = "/tmp/test_http_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], cmd[1024], out[512];
    snprintf(path, sizeof(path), "%s/value.bin", dir);

    /* a 1 MiB value: curl sends Expect: 100-continue for it */
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < (1 << 20); i++) {
        fputc((i * 7) & 0xff, fp);
    }
    fclose(fp);
    snprintf(cmd, sizeof(cmd),
             "timeout 20 curl -sS -X PUT -H 'Expect: 100-continue' --data-binary @%s "
             "-o %s/echo.bin -w '%%{http_code} %%{size_upload} %%{size_download}' "
             "http://127.0.0.1:%d/echo",
             path, dir, f->port);
    run_cmd(cmd, out, sizeof(out));
    assert_string_equal(out, "200 1048576 1048576");
    snprintf(cmd, sizeof(cmd), "cmp %s %s/echo.bin", path, dir);
    run_cmd(cmd, out, sizeof(out));

    /* chunked upload */
    snprintf(cmd, sizeof(cmd),
             "printf 'chunky' | timeout 20 curl -sS -X POST -H 'Transfer-Encoding: chunked' "
             "--data-binary @- http://127.0.0.1:%d/echo",
             f->port);
    run_cmd(cmd, out, sizeof(out));
    assert_string_equal(out, "chunky");

    /* keep-alive: two URLs, one connection */
    snprintf(cmd, sizeof(cmd),
             "timeout 20 curl -sS -o /dev/null -o /dev/null -w '%%{num_connects} ' "
             "http://127.0.0.1:%d/sync?id=1 http://127.0.0.1:%d/sync?id=2",
             f->port, f->port);
    run_cmd(cmd, out, sizeof(out));
    assert_string_equal(out, "1 0 ");

    /* SSE and a JSON error, as a user would see them */
    snprintf(cmd, sizeof(cmd), "timeout 20 curl -sS -N http://127.0.0.1:%d/sse?n=2", f->port);
    run_cmd(cmd, out, sizeof(out));
    assert_string_equal(out, "data: 0\n\ndata: 1\n\n");
    snprintf(cmd, sizeof(cmd),
             "timeout 20 curl -sS -w ' %%{http_code}' http://127.0.0.1:%d/nowhere", f->port);
    run_cmd(cmd, out, sizeof(out));
    assert_string_equal(out, "{\"error\":{\"code\":\"no_route\",\"message\":\"no route for "
                             "/nowhere\"}}\n 404");
    /* HEAD */
    snprintf(cmd, sizeof(cmd), "timeout 20 curl -sS -I http://127.0.0.1:%d/json | tr -d '\\r'",
             f->port);
    run_cmd(cmd, out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 201 Created\nServer: conclave\n"));
    assert_non_null(strstr(out, "Content-Length: 24\n"));

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    run_cmd(cmd, out, sizeof(out));
    fix_stop(f);
    assert_true(atomic_load(&f->access_logs) >= 6);
}

/* ---- main -------------------------------------------------------------------------- */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_get_put, fix_teardown),
        cmocka_unit_test_teardown(test_keepalive_reuse, fix_teardown),
        cmocka_unit_test_teardown(test_binary_path, fix_teardown),
        cmocka_unit_test_teardown(test_pipeline_100, fix_teardown),
        cmocka_unit_test_teardown(test_pipeline_backpressure, fix_teardown),
        cmocka_unit_test_teardown(test_expect_continue, fix_teardown),
        cmocka_unit_test_teardown(test_chunked_body, fix_teardown),
        cmocka_unit_test_teardown(test_limit_headers_431, fix_teardown),
        cmocka_unit_test_teardown(test_limit_body_413, fix_teardown),
        cmocka_unit_test_teardown(test_limit_url_414, fix_teardown),
        cmocka_unit_test_teardown(test_limit_conns_503, fix_teardown),
        cmocka_unit_test_teardown(test_request_timeout_408, fix_teardown),
        cmocka_unit_test_teardown(test_idle_timeout, fix_teardown),
        cmocka_unit_test_teardown(test_garbage_400, fix_teardown),
        cmocka_unit_test_teardown(test_disconnect_during_async, fix_teardown),
        cmocka_unit_test_teardown(test_stop_from_handler, fix_teardown),
        cmocka_unit_test_teardown(test_sse_chunked, fix_teardown),
        cmocka_unit_test_teardown(test_sse_slow_reader, fix_teardown),
        cmocka_unit_test_teardown(test_stalled_reader_closed, fix_teardown),
        cmocka_unit_test_teardown(test_output_backpressure, fix_teardown),
        cmocka_unit_test_teardown(test_http10_and_close, fix_teardown),
        cmocka_unit_test(test_feeder_split_anywhere),
        cmocka_unit_test(test_feeder_order_and_close),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test_teardown(test_curl, fix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
