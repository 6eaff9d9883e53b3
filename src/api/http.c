/* http.c -- HTTP/1.1 server on libuv + http-parser (http.h has the contract).
 *
 * Objects and who frees them:
 *   - struct http_server: allocated by http_server_start(), freed when it is stopping
 *     and its last handle (listener, idle, every connection's tcp and timer) closed.
 *   - struct http__conn: one per accepted socket, freed when both its handles closed.
 *     A feeder owns exactly one, with no handles, and frees it itself.
 *   - struct http__req: allocated at a request's first byte and linked into its
 *     connection's pipeline FIFO. The connection frees it once its response is fully
 *     handed to the socket. If the connection dies first, a request the handler holds
 *     is detached (conn = srv = NULL) and freed by its finishing call instead.
 *   - struct http__chunk: bytes to write. Owned by its request (held list) until the
 *     request reaches the pipeline head, then by the uv_write in flight, freed by the
 *     write callback (libuv calls it, with UV_ECANCELED, even when the socket closes).
 *
 * Invariants:
 *   - The pipeline holds requests in arrival order: finished ones waiting for earlier
 *     ones, ones the handler holds, and last, possibly, the one being parsed (c->cur).
 *     Only the head may write; the others keep their chunks in their held list, so
 *     responses leave in request order. When the head finishes it is popped and the next
 *     one's held chunks go out (http__conn_advance).
 *   - The parser pauses after every complete message; the parse loop then calls the
 *     handler outside http_parser_execute(). The loop never re-enters itself
 *     (c->in_parse); work found while it runs (a slot freed by a synchronous respond) is
 *     picked up by the loop itself, and work found outside it (an async respond) is
 *     deferred to the server's idle handle, so a respond never calls the handler.
 *   - Requests are parsed only while n_pipeline < pipeline_max and out_bytes is below
 *     HTTP_OUT_BYTES_HIGH_WATER; otherwise unparsed bytes stay in rbuf and the socket is
 *     not read (backpressure). The socket is read only into an empty rbuf.
 *   - Every byte-sized allocation is checked against its limit before it is made, and a
 *     body buffer grows only as bytes arrive (doubling, capped by the limit and by the
 *     declared Content-Length). srv->body_bytes_held counts every body buffer.
 *   - One timer per connection; http__conn_update() re-arms it for whichever deadline
 *     applies now: request (408), stalled output, idle, or linger.
 *   - A connection that must close after a response stops parsing, writes what it owes,
 *     shuts down its write side, drains (lingers) and only then closes, so the client
 *     reads the response instead of a reset.
 *
 * Sections: types | errors and limits | small helpers | requests | output | response
 * heads | parser callbacks | parse loop | connections | server | API: requests |
 * API: responses | API: streams | API: helpers | feeder.
 */
#include "api/http.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/assert.h"

/* ---- types ------------------------------------------------------------------------- */

#define HTTP__CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define HTTP__LISTEN_BACKLOG   511  /* as nginx; the kernel caps it at somaxconn */
#define HTTP__URL_BYTES_FIRST  256  /* first URL buffer; doubles up to url_bytes_max */
#define HTTP__HDR_BYTES_FIRST  1024 /* first header buffer; doubles up to its limit */
#define HTTP__BODY_BYTES_FIRST 4096 /* first body buffer when no Content-Length fits */
#define HTTP__HEAD_BYTES_FIXED 256  /* status line, Server, lengths, Connection, CRLFs */
#define HTTP__ACCEPT_RETRY_MS  100  /* after a failed allocation for a new connection */

_Static_assert(HTTP__URL_BYTES_FIRST <= HTTP_URL_BYTES_MAX, "first URL buffer fits");

enum http__req_state {
    HTTP__PARSING = 1, /* bytes still arriving; not visible to the handler */
    HTTP__HANDLING,    /* complete; the handler (or an internal error) answers it */
    HTTP__STREAMING,   /* http_stream_begin() sent the head */
    HTTP__DONE,        /* final bytes produced; waits for earlier responses */
};

enum http__framing {
    HTTP__FRAME_LENGTH,  /* Content-Length */
    HTTP__FRAME_NONE,    /* 204/304: no body, no length */
    HTTP__FRAME_CHUNKED, /* HTTP/1.1 stream */
    HTTP__FRAME_EOF,     /* HTTP/1.0 stream: the body ends when the connection does */
};

enum http__timer_kind {
    HTTP__TIMER_NONE,
    HTTP__TIMER_REQUEST, /* a request is arriving too slowly: 408 */
    HTTP__TIMER_STALL,   /* the client stopped reading our output: close */
    HTTP__TIMER_IDLE,    /* keep-alive connection unused: close */
    HTTP__TIMER_LINGER,  /* draining after shutdown: close */
};

struct http__conn;

struct http__chunk {
    struct http__chunk *next;
    struct http__conn *conn;
    uv_write_t wreq;
    size_t n;
    uint8_t bytes[];
};

struct http__hdr_index {
    uint32_t name_off;
    uint32_t value_off;
};

struct http__req {
    struct http_req pub;
    struct http_server *srv; /* NULL once detached */
    struct http__conn *conn; /* NULL once detached */
    struct http__req *next;  /* pipeline FIFO; a local list while detaching */
    enum http__req_state state;
    bool visible;     /* handed to the handler */
    bool internal;    /* answered by the server itself (errors) */
    bool close_after; /* the connection closes after this response */
    bool head_method;
    bool in_close_pass; /* detached, on_close not yet called (see detach_all) */
    bool finished;      /* finished while in_close_pass: free after the pass */
    bool headers_done;
    bool in_field; /* last header callback was a name */
    enum http__framing framing;
    void (*close_cb)(struct http_req *req, void *arg);
    void *close_arg;

    /* parsing */
    char *url; /* raw request target, NUL-terminated */
    uint32_t url_len;
    uint32_t url_cap;
    char *hbuf; /* header names and values, each NUL-terminated */
    uint32_t hbuf_len;
    uint32_t hbuf_cap;
    uint32_t header_bytes; /* names + values as sent, for header_bytes_max */
    uint32_t n_hdr;
    struct http__hdr_index hidx[HTTP_HEADERS_MAX];
    struct http_header headers[HTTP_HEADERS_MAX];
    char *tbuf; /* path_raw NUL query NUL path NUL */
    uint8_t *body;
    size_t body_cap;       /* counted in srv->body_bytes_held */
    uint64_t declared_len; /* Content-Length, or UINT64_MAX */
    int pending_status;    /* nonzero: answer with this error instead of the handler */
    const char *pending_code;
    char pending_msg[128];

    /* response */
    char *xhdr; /* extra "Name: value\r\n" lines */
    size_t xhdr_len;
    struct http__chunk *held_head;
    struct http__chunk *held_tail;
    size_t held_bytes;
    int status;
    uint64_t t_start_ns;
};

struct http__conn {
    struct http_server *srv;
    struct http__conn *prev; /* srv->conns */
    struct http__conn *next;
    struct http__conn *rs_prev; /* srv resume list */
    struct http__conn *rs_next;
    bool on_resume;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    uint32_t n_open_handles;
    enum http__timer_kind timer_kind;

    bool rejecting; /* over conns_max: only sends the 503 */
    bool closing;
    bool close_pending;     /* close at the next idle callback */
    bool stop_parsing;      /* a response that closes the connection is due */
    bool close_after_write; /* that response is out: shut down once written */
    bool shutting_down;
    bool lingering;
    bool eof;
    bool reading;
    bool in_parse;
    bool resume_wanted; /* feeder: parse held bytes at the next feed */

    http_parser parser;
    struct http__req *head; /* pipeline */
    struct http__req *tail;
    struct http__req *cur;   /* being parsed (also the tail) */
    struct http__req *ready; /* complete, to dispatch after the parser paused */
    uint32_t n_pipeline;

    size_t rpos; /* rbuf[rpos, rlen) is received but not yet parsed */
    size_t rlen;
    uint64_t bytes_in;
    size_t out_bytes; /* handed to uv_write, not yet written */
    uint32_t n_writes;
    uint64_t active_ms;    /* last read, write progress or finished response */
    uint64_t out_since_ms; /* last write progress while out_bytes > 0 */
    uint64_t cur_start_ms;

    int fail_status; /* set by a parser callback that returns -1 */
    const char *fail_code;
    char fail_msg[HTTP_ERRMSG_BYTES];

    uint8_t rbuf[HTTP_READ_BYTES];
};

struct http_server {
    uv_loop_t *loop; /* NULL: a feeder */
    struct http_limits lim;
    http_handler_fn handler;
    void *arg;
    http_access_log_cb log_cb;
    void *log_arg;
    http_out_cb out_cb; /* feeder only */
    void *out_arg;

    uv_tcp_t listener;
    uv_idle_t idle;          /* runs deferred parsing and closes (resume list) */
    uv_timer_t accept_retry; /* libuv polls the listener again only after uv_accept() */
    bool idle_active;
    uint32_t n_handles; /* open handles; the server is freed at 0 once stopping */
    bool stopping;
    void (*done_cb)(void *arg);
    void *done_arg;

    struct http__conn *conns;
    struct http__conn *rs_head;
    struct http__conn *rs_tail;
    uint32_t n_resume;
    uint32_t n_conns;
    uint32_t n_rejecting;
    uint64_t body_bytes_held;
    uint64_t next_id;
    struct http_server_stats stats;
};

struct http_feeder {
    struct http_server srv;
    struct http__conn *conn;
};

static void http__conn_close(struct http__conn *c);
static void http__conn_update(struct http__conn *c);
static void http__conn_parse(struct http__conn *c);
static void http__conn_advance(struct http__conn *c);
static void http__conn_fail(struct http__conn *c, int status, const char *code, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));
static void http__respond_error_msg(struct http__req *r, int status, const char *code,
                                    const char *msg);

/* ---- errors and limits ------------------------------------------------------------- */

const char *http_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case HTTP_EINVAL:
        return "invalid argument";
    case HTTP_EADDR:
        return "bad address (want host:port)";
    case HTTP_ELISTEN:
        return "cannot listen";
    case HTTP_ENOMEM:
        return "out of memory";
    case HTTP_ECLOSED:
        return "client went away";
    case HTTP_ESLOW:
        return "client reads too slowly: stream buffer full";
    case HTTP_ESTATE:
        return "call out of order for this request";
    case HTTP_ENOTFOUND:
        return "query parameter absent";
    case HTTP_ETOOLONG:
        return "value longer than the buffer";
    case HTTP_EBADVALUE:
        return "malformed value";
    case HTTP_EFULL:
        return "response headers exceed HTTP_RESP_HEADERS_BYTES_MAX";
    default:
        return "unknown http error";
    }
}

void http_limits_default(struct http_limits *lim)
{
    CC_ASSERT(lim != NULL);
    lim->header_bytes_max = HTTP_HEADER_BYTES_MAX;
    lim->url_bytes_max = HTTP_URL_BYTES_MAX;
    lim->body_bytes_max = HTTP_BODY_BYTES_MAX;
    lim->conns_max = HTTP_CONNS_MAX;
    lim->pipeline_max = HTTP_PIPELINE_MAX;
    lim->stream_buffer_bytes_max = HTTP_STREAM_BUFFER_BYTES_MAX;
    lim->idle_timeout_ms = HTTP_IDLE_TIMEOUT_MS;
    lim->request_timeout_ms = HTTP_REQUEST_TIMEOUT_MS;
}

static void http__errmsg(char *errmsg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void http__errmsg(char *errmsg, size_t cap, const char *fmt, ...)
{
    if (errmsg == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, cap, fmt, ap);
    va_end(ap);
}

#define HTTP__CHECK_RANGE(field, lo, hi)                                                           \
    do {                                                                                           \
        if ((uint64_t)lim->field < (uint64_t)(lo) || (uint64_t)lim->field > (uint64_t)(hi)) {      \
            http__errmsg(errmsg, cap,                                                              \
                         "http limits: " #field " = %" PRIu64 " is outside [%" PRIu64 ", %" PRIu64 \
                         "]",                                                                      \
                         (uint64_t)lim->field, (uint64_t)(lo), (uint64_t)(hi));                    \
            return HTTP_EINVAL;                                                                    \
        }                                                                                          \
    } while (0)

static int http__limits_check(const struct http_limits *lim, char *errmsg, size_t cap)
{
    HTTP__CHECK_RANGE(header_bytes_max, 256, HTTP_HEADER_BYTES_MAX);
    HTTP__CHECK_RANGE(url_bytes_max, 16, HTTP_URL_BYTES_MAX);
    if (lim->body_bytes_max > HTTP_BODY_BYTES_MAX) { /* 0 is fine: no bodies at all */
        http__errmsg(errmsg, cap, "http limits: body_bytes_max = %" PRIu64 " exceeds %u",
                     lim->body_bytes_max, HTTP_BODY_BYTES_MAX);
        return HTTP_EINVAL;
    }
    HTTP__CHECK_RANGE(conns_max, 1, HTTP_CONNS_MAX);
    HTTP__CHECK_RANGE(pipeline_max, 1, HTTP_PIPELINE_MAX);
    HTTP__CHECK_RANGE(stream_buffer_bytes_max, 1024, HTTP_STREAM_BUFFER_BYTES_MAX);
    HTTP__CHECK_RANGE(idle_timeout_ms, HTTP_TIMEOUT_MS_MIN, HTTP_IDLE_TIMEOUT_MS);
    HTTP__CHECK_RANGE(request_timeout_ms, HTTP_TIMEOUT_MS_MIN, HTTP_REQUEST_TIMEOUT_MS);
    return 0;
}

/* ---- small helpers ----------------------------------------------------------------- */

static uint64_t http__now_ms(const struct http_server *srv)
{
    return srv->loop != NULL ? uv_now(srv->loop) : 0;
}

static int http__hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Decodes one byte of percent-encoded text at *p (< end); form: '+' is a space.
 * Returns the byte, or -1 for a malformed escape. */
static int http__decode_next(const char **p, const char *end, bool form)
{
    const unsigned char ch = (unsigned char)**p;
    if (ch == '%') {
        if (end - *p < 3) {
            return -1;
        }
        const int hi = http__hexval((unsigned char)(*p)[1]);
        const int lo = http__hexval((unsigned char)(*p)[2]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        *p += 3;
        return hi * 16 + lo;
    }
    *p += 1;
    return (form && ch == '+') ? ' ' : ch;
}

static bool http__is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
        return true;
    }
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool http__is_field_value(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\r' || *s == '\n') {
            return false;
        }
    }
    return true;
}

/* Replaces every byte that is not part of a well-formed UTF-8 sequence with '?', so
 * jansson accepts the string (error messages may quote binary keys). */
static void http__utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p != '\0') {
        size_t n;
        uint32_t cp;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xE0) == 0xC0) {
            n = 2;
            cp = *p & 0x1F;
        } else if ((*p & 0xF0) == 0xE0) {
            n = 3;
            cp = *p & 0x0F;
        } else if ((*p & 0xF8) == 0xF0) {
            n = 4;
            cp = *p & 0x07;
        } else {
            *p++ = '?';
            continue;
        }
        size_t i = 1;
        for (; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                break;
            }
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        const bool overlong =
            (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
        if (i < n || overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* Grows *buf to hold need bytes: doubles, never past limit (need <= limit). */
static int http__grow(void *bufp, uint32_t *cap, size_t need, size_t first, size_t limit)
{
    char **buf = bufp;
    CC_ASSERT(need <= limit);
    if (need <= *cap) {
        return 0;
    }
    size_t ncap = *cap == 0 ? first : (size_t)*cap * 2;
    if (ncap < need) {
        ncap = need;
    }
    if (ncap > limit) {
        ncap = limit;
    }
    char *nb = realloc(*buf, ncap);
    if (nb == NULL) {
        return HTTP_ENOMEM;
    }
    *buf = nb;
    *cap = (uint32_t)ncap;
    return 0;
}

static const char *http__reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return (s == NULL || s[0] == '<') ? "Status" : s;
}

/* ---- requests ---------------------------------------------------------------------- */

static struct http__req *http__req_of(struct http_req *req)
{
    CC_ASSERT(req != NULL);
    return HTTP__CONTAINER_OF(req, struct http__req, pub);
}

static void http__chunks_free(struct http__chunk *ch)
{
    while (ch != NULL) {
        struct http__chunk *next = ch->next;
        free(ch);
        ch = next;
    }
}

static void http__req_free(struct http__req *r)
{
    if (r->srv != NULL) {
        CC_ASSERT(r->srv->body_bytes_held >= r->body_cap);
        r->srv->body_bytes_held -= r->body_cap;
    }
    http__chunks_free(r->held_head);
    free(r->url);
    free(r->hbuf);
    free(r->tbuf);
    free(r->body);
    free(r->xhdr);
    free(r);
}

/* A new request at the pipeline's tail, or NULL (out of memory). */
static struct http__req *http__req_new(struct http__conn *c)
{
    struct http__req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->srv = c->srv;
    r->conn = c;
    r->state = HTTP__PARSING;
    r->declared_len = UINT64_MAX;
    r->framing = HTTP__FRAME_LENGTH;
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    c->n_pipeline++;
    return r;
}

static void http__access_log(struct http__req *r, int status)
{
    struct http_server *srv = r->srv;
    if (srv == NULL || srv->log_cb == NULL) {
        return;
    }
    const uint64_t now_ns = uv_hrtime();
    struct http_access e = {
        .method = r->pub.method,
        .path_raw = r->pub.path_raw != NULL ? r->pub.path_raw : "",
        .path_raw_len = r->pub.path_raw != NULL ? r->pub.path_raw_len : 0,
        .status = status,
        .duration_us = now_ns > r->t_start_ns ? (now_ns - r->t_start_ns) / 1000 : 0,
        .body_bytes = r->pub.body_len,
        .id = r->pub.id,
    };
    srv->log_cb(srv->log_arg, &e);
}

/* The finishing call of a detached request: free it, unless detach_all is still going
 * to look at it. */
static void http__req_release_detached(struct http__req *r)
{
    CC_ASSERT(r->conn == NULL);
    CC_ASSERT(!r->finished);
    if (r->in_close_pass) {
        r->finished = true;
        return;
    }
    http__req_free(r);
}

/* Empties the pipeline: requests the handler never saw or already finished are freed;
 * requests it holds are detached and their on_close callbacks run. Two passes, because
 * a callback may finish any detached request, including ones not yet called back. */
static void http__conn_detach_all(struct http__conn *c)
{
    struct http__req *list = NULL;
    struct http__req **tail = &list;
    while (c->head != NULL) {
        struct http__req *r = c->head;
        c->head = r->next;
        r->next = NULL;
        c->n_pipeline--;
        if (!r->visible || r->internal || r->state == HTTP__DONE) {
            http__req_free(r);
            continue;
        }
        if (r->srv != NULL) {
            r->srv->stats.client_aborts++;
        }
        http__access_log(r, 499);
        http__chunks_free(r->held_head);
        r->held_head = r->held_tail = NULL;
        r->held_bytes = 0;
        if (r->srv != NULL) {
            CC_ASSERT(r->srv->body_bytes_held >= r->body_cap);
            r->srv->body_bytes_held -= r->body_cap;
        }
        r->srv = NULL;
        r->conn = NULL;
        r->in_close_pass = true;
        *tail = r;
        tail = &r->next;
    }
    CC_ASSERT(c->n_pipeline == 0);
    c->tail = NULL;
    c->cur = NULL;
    c->ready = NULL;

    struct http__req *next;
    for (struct http__req *r = list; r != NULL; r = next) {
        next = r->next;
        r->next = NULL;
        r->in_close_pass = false;
        if (r->finished) {
            http__req_free(r);
            continue;
        }
        if (r->close_cb != NULL) {
            void (*cb)(struct http_req *, void *) = r->close_cb;
            r->close_cb = NULL;
            cb(&r->pub, r->close_arg); /* may finish r, which frees it */
        }
    }
}

/* ---- output ------------------------------------------------------------------------ */

static void http__on_write(uv_write_t *w, int status);

static struct http__chunk *http__chunk_new(size_t n)
{
    struct http__chunk *ch = malloc(sizeof(*ch) + n);
    if (ch != NULL) {
        ch->next = NULL;
        ch->conn = NULL;
        ch->n = 0;
    }
    return ch;
}

static void http__conn_close_soon(struct http__conn *c);

/* Hands ch to the socket (or the feeder's out_cb). Takes ch. */
static void http__conn_issue(struct http__conn *c, struct http__chunk *ch)
{
    struct http_server *srv = c->srv;
    if (c->closing || c->close_pending) {
        free(ch);
        return;
    }
    if (srv->loop == NULL) {
        srv->out_cb(srv->out_arg, ch->bytes, ch->n);
        free(ch);
        return;
    }
    CC_ASSERT(ch->n <= UINT_MAX);
    ch->conn = c;
    uv_buf_t buf = uv_buf_init((char *)ch->bytes, (unsigned int)ch->n);
    if (c->out_bytes == 0) {
        c->out_since_ms = http__now_ms(srv);
    }
    const size_t n = ch->n;
    if (uv_write(&ch->wreq, (uv_stream_t *)&c->tcp, &buf, 1, http__on_write) != 0) {
        free(ch);
        http__conn_close_soon(c);
        return;
    }
    c->out_bytes += n;
    c->n_writes++;
}

/* Queues ch as r's next output: out now if r heads the pipeline, else held. */
static void http__req_output(struct http__req *r, struct http__chunk *ch)
{
    struct http__conn *c = r->conn;
    CC_ASSERT(c != NULL);
    if (c->head == r && r->held_head == NULL) {
        http__conn_issue(c, ch);
        return;
    }
    if (r->held_tail != NULL) {
        r->held_tail->next = ch;
    } else {
        r->held_head = ch;
    }
    r->held_tail = ch;
    r->held_bytes += ch->n;
}

/* Once the close-after response is out: shut down the write side, then linger. */
static void http__on_shutdown(uv_shutdown_t *req, int status);
static void http__conn_maybe_finish(struct http__conn *c)
{
    if (!c->close_after_write || c->n_writes > 0 || c->shutting_down || c->closing) {
        return;
    }
    if (c->srv->loop == NULL) {
        http__conn_close(c);
        return;
    }
    c->shutting_down = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    uv_timer_stop(&c->timer);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, http__on_shutdown) != 0) {
        http__conn_close(c);
    }
}

/* Writes the head's held output; pops finished heads; closes after a close-after one. */
static void http__conn_advance(struct http__conn *c)
{
    while (c->head != NULL && !c->closing) {
        struct http__req *r = c->head;
        struct http__chunk *ch = r->held_head;
        r->held_head = r->held_tail = NULL;
        r->held_bytes = 0;
        while (ch != NULL) {
            struct http__chunk *next = ch->next;
            ch->next = NULL;
            http__conn_issue(c, ch);
            ch = next;
        }
        if (r->state != HTTP__DONE) {
            break;
        }
        c->head = r->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        CC_ASSERT(c->n_pipeline > 0);
        c->n_pipeline--;
        const bool close = r->close_after;
        http__req_free(r);
        c->active_ms = http__now_ms(c->srv);
        if (close) {
            c->stop_parsing = true;
            c->close_after_write = true;
            http__conn_detach_all(c); /* requests pipelined after a close: dropped */
            break;
        }
    }
    if (!c->closing) {
        http__conn_maybe_finish(c);
    }
}

/* ---- response heads ---------------------------------------------------------------- */

/* Appends src[0, n) to ch, which was allocated with room for cap bytes. */
static void http__put(struct http__chunk *ch, size_t cap, const void *src, size_t n)
{
    CC_ASSERT(n <= cap - ch->n);
    if (n > 0) {
        memcpy(ch->bytes + ch->n, src, n);
        ch->n += n;
    }
}

static void http__puts(struct http__chunk *ch, size_t cap, const char *s)
{
    http__put(ch, cap, s, strlen(s));
}

/* A chunk holding the response head for r, with room for payload_cap more bytes. */
static struct http__chunk *http__head_new(struct http__req *r, int status, const char *content_type,
                                          enum http__framing framing, size_t content_length,
                                          size_t payload_cap)
{
    const char *reason = http__reason(status);
    if (content_type != NULL && !http__is_field_value(content_type)) {
        content_type = "application/octet-stream"; /* never let a CR/LF split the head */
    }
    const size_t ct_len = content_type != NULL ? strlen(content_type) : 0;
    const size_t cap = HTTP__HEAD_BYTES_FIXED + strlen(reason) + ct_len + r->xhdr_len;
    CC_ASSERT(payload_cap <= SIZE_MAX - cap);
    struct http__chunk *ch = http__chunk_new(cap + payload_cap);
    if (ch == NULL) {
        return NULL;
    }
    char line[64 + sizeof("Content-Length: \r\n") + 20];
    int ln = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    CC_ASSERT(ln > 0 && (size_t)ln < sizeof(line));
    http__put(ch, cap, line, (size_t)ln);
    http__put(ch, cap, reason, strlen(reason));
    http__puts(ch, cap, "\r\nServer: conclave\r\n");
    if (content_type != NULL) {
        http__puts(ch, cap, "Content-Type: ");
        http__put(ch, cap, content_type, ct_len);
        http__puts(ch, cap, "\r\n");
    }
    switch (framing) {
    case HTTP__FRAME_LENGTH:
        ln = snprintf(line, sizeof(line), "Content-Length: %zu\r\n", content_length);
        CC_ASSERT(ln > 0 && (size_t)ln < sizeof(line));
        http__put(ch, cap, line, (size_t)ln);
        break;
    case HTTP__FRAME_CHUNKED:
        http__puts(ch, cap, "Transfer-Encoding: chunked\r\n");
        break;
    case HTTP__FRAME_NONE:
    case HTTP__FRAME_EOF:
        break;
    }
    if (r->close_after) {
        http__puts(ch, cap, "Connection: close\r\n");
    } else if (r->pub.http_minor == 0) {
        http__puts(ch, cap, "Connection: keep-alive\r\n");
    }
    http__put(ch, cap, r->xhdr, r->xhdr_len);
    http__puts(ch, cap, "\r\n");
    return ch;
}

static void http__req_finish(struct http__req *r, int status)
{
    struct http__conn *c = r->conn;
    r->state = HTTP__DONE;
    r->status = status;
    http__access_log(r, status);
    if (c->head == r) {
        http__conn_advance(c);
    }
    http__conn_update(c);
}

/* The common path of every non-streaming response: head + body parts a and b. */
static void http__respond2(struct http__req *r, int status, const char *content_type, const void *a,
                           size_t an, const void *b, size_t bn)
{
    CC_ASSERT(status >= 200 && status <= 599);
    CC_ASSERT(an <= SIZE_MAX - bn);
    if (r->conn == NULL) {
        http__req_release_detached(r);
        return;
    }
    CC_ASSERT(r->state == HTTP__HANDLING);
    struct http__conn *c = r->conn;
    const bool no_body = status == 204 || status == 304;
    const enum http__framing framing = no_body ? HTTP__FRAME_NONE : HTTP__FRAME_LENGTH;
    const bool send_body = !no_body && !r->head_method;
    const size_t payload = send_body ? an + bn : 0;
    struct http__chunk *ch = http__head_new(r, status, content_type, framing, an + bn, payload);
    if (ch == NULL) {
        r->state = HTTP__DONE;
        http__conn_close_soon(c);
        return;
    }
    if (send_body) {
        if (an > 0) {
            memcpy(ch->bytes + ch->n, a, an);
        }
        if (bn > 0) {
            memcpy(ch->bytes + ch->n + an, b, bn);
        }
        ch->n += an + bn;
    }
    http__req_output(r, ch);
    http__req_finish(r, status);
}

static void http__respond_error_msg(struct http__req *r, int status, const char *code,
                                    const char *msg)
{
    char mbuf[HTTP_ERRMSG_BYTES];
    char cbuf[64];
    snprintf(mbuf, sizeof(mbuf), "%s", msg);
    snprintf(cbuf, sizeof(cbuf), "%s", code != NULL ? code : "error");
    http__utf8_scrub(mbuf);
    http__utf8_scrub(cbuf);
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", cbuf, "message", mbuf);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) {
        static const char fallback[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":"
                                       "\"server could not encode the error\"}}\n";
        http__respond2(r, status, "application/json", fallback, sizeof(fallback) - 1, NULL, 0);
        return;
    }
    http__respond2(r, status, "application/json", s, strlen(s), "\n", 1);
    free(s);
}

/* ---- parser callbacks -------------------------------------------------------------- */

static int http__cb_fail(struct http__conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int http__cb_fail(struct http__conn *c, int status, const char *code, const char *fmt, ...)
{
    c->fail_status = status;
    c->fail_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
    va_end(ap);
    return -1;
}

static int http__on_message_begin(http_parser *p)
{
    struct http__conn *c = p->data;
    CC_ASSERT(c->cur == NULL);
    struct http__req *r = http__req_new(c);
    if (r == NULL) {
        return http__cb_fail(c, 503, "out_of_memory", "server is out of memory");
    }
    c->cur = r;
    c->cur_start_ms = c->active_ms = http__now_ms(c->srv);
    return 0;
}

static int http__on_url(http_parser *p, const char *at, size_t n)
{
    struct http__conn *c = p->data;
    struct http__req *r = c->cur;
    const uint32_t max = c->srv->lim.url_bytes_max;
    if (n > max - r->url_len) {
        return http__cb_fail(c, 414, "url_too_long",
                             "request target exceeds %" PRIu32 " bytes (url_bytes_max)", max);
    }
    if (http__grow(&r->url, &r->url_cap, r->url_len + n + 1, HTTP__URL_BYTES_FIRST,
                   (size_t)max + 1) != 0) {
        return http__cb_fail(c, 503, "out_of_memory", "server is out of memory");
    }
    memcpy(r->url + r->url_len, at, n);
    r->url_len += (uint32_t)n;
    r->url[r->url_len] = '\0';
    return 0;
}

/* Appends header text; the NUL terminators are not counted against header_bytes_max but
 * have their reserved room (one per name and value). */
static int http__hdr_append(struct http__conn *c, struct http__req *r, const char *at, size_t n,
                            bool terminator)
{
    const uint32_t max = c->srv->lim.header_bytes_max;
    if (!terminator) {
        if (n > max - r->header_bytes) {
            return http__cb_fail(c, 431, "headers_too_large",
                                 "request headers exceed %" PRIu32 " bytes (header_bytes_max)",
                                 max);
        }
        if (memchr(at, '\0', n) != NULL) {
            return http__cb_fail(c, 400, "bad_request", "request header contains a NUL byte");
        }
        r->header_bytes += (uint32_t)n;
    }
    if (r->headers_done) {
        return 0; /* trailers: counted, not kept */
    }
    const size_t limit = (size_t)max + (size_t)HTTP_HEADERS_MAX * 2 + 1;
    if (http__grow(&r->hbuf, &r->hbuf_cap, r->hbuf_len + n, HTTP__HDR_BYTES_FIRST, limit) != 0) {
        return http__cb_fail(c, 503, "out_of_memory", "server is out of memory");
    }
    memcpy(r->hbuf + r->hbuf_len, at, n);
    r->hbuf_len += (uint32_t)n;
    return 0;
}

static int http__on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http__conn *c = p->data;
    struct http__req *r = c->cur;
    if (!r->in_field && !r->headers_done) { /* a new field */
        if (r->n_hdr > 0 && http__hdr_append(c, r, "", 1, true) != 0) {
            return -1;
        }
        if (r->n_hdr == HTTP_HEADERS_MAX) {
            return http__cb_fail(c, 431, "headers_too_large",
                                 "request has more than %u header fields (HTTP_HEADERS_MAX)",
                                 HTTP_HEADERS_MAX);
        }
        r->hidx[r->n_hdr].name_off = r->hbuf_len;
        r->hidx[r->n_hdr].value_off = r->hbuf_len;
        r->n_hdr++;
    }
    r->in_field = true;
    return http__hdr_append(c, r, at, n, false);
}

static int http__on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http__conn *c = p->data;
    struct http__req *r = c->cur;
    if (r->in_field && !r->headers_done) {
        if (http__hdr_append(c, r, "", 1, true) != 0) {
            return -1;
        }
        r->hidx[r->n_hdr - 1].value_off = r->hbuf_len;
    }
    r->in_field = false;
    return http__hdr_append(c, r, at, n, false);
}

/* Splits the raw target into path and query and decodes the path. Problems that do not
 * break framing become pending errors, answered in order without closing. */
static int http__req_parse_target(struct http__conn *c, struct http__req *r)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url == NULL || http_parser_parse_url(r->url, r->url_len, 0, &u) != 0) {
        r->pending_status = 400;
        r->pending_code = "bad_request";
        snprintf(r->pending_msg, sizeof(r->pending_msg), "malformed request target");
        return 0;
    }
    const char *path = "/";
    size_t path_len = 1;
    if (u.field_set & (1u << UF_PATH)) {
        path = r->url + u.field_data[UF_PATH].off;
        path_len = u.field_data[UF_PATH].len;
    }
    const bool has_query = memchr(r->url, '?', r->url_len) != NULL; /* "/a?" has one */
    const char *query = "";
    size_t query_len = 0;
    if (u.field_set & (1u << UF_QUERY)) {
        query = r->url + u.field_data[UF_QUERY].off;
        query_len = u.field_data[UF_QUERY].len;
    }
    r->tbuf = malloc(2 * path_len + query_len + 3);
    if (r->tbuf == NULL) {
        return http__cb_fail(c, 503, "out_of_memory", "server is out of memory");
    }
    char *raw = r->tbuf;
    memcpy(raw, path, path_len);
    raw[path_len] = '\0';
    char *q = raw + path_len + 1;
    memcpy(q, query, query_len);
    q[query_len] = '\0';
    char *dec = q + query_len + 1;
    r->pub.path_raw = raw;
    r->pub.path_raw_len = path_len;
    r->pub.query = has_query ? q : NULL;
    r->pub.query_len = query_len;
    r->pub.path = dec;
    if (http_path_decode(raw, path_len, dec, path_len + 1, &r->pub.path_len) != 0) {
        dec[0] = '\0';
        r->pub.path_len = 0;
        r->pending_status = 400;
        r->pending_code = "bad_request";
        snprintf(r->pending_msg, sizeof(r->pending_msg),
                 "request path has a malformed percent-escape (want %%XX with hex digits)");
    }
    return 0;
}

static void http__emit_continue(struct http__req *r)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct http__chunk *ch = http__chunk_new(sizeof(cont) - 1);
    if (ch == NULL) {
        http__conn_close_soon(r->conn);
        return;
    }
    memcpy(ch->bytes, cont, sizeof(cont) - 1);
    ch->n = sizeof(cont) - 1;
    http__req_output(r, ch);
}

static int http__on_headers_complete(http_parser *p)
{
    struct http__conn *c = p->data;
    struct http__req *r = c->cur;
    if (r->n_hdr > 0 && !r->in_field && http__hdr_append(c, r, "", 1, true) != 0) {
        return -1;
    }
    r->headers_done = true;
    for (uint32_t i = 0; i < r->n_hdr; i++) {
        r->headers[i].name = r->hbuf + r->hidx[i].name_off;
        r->headers[i].value = r->hbuf + r->hidx[i].value_off;
    }
    r->pub.headers = r->headers;
    r->pub.n_headers = r->n_hdr;
    r->pub.method = p->method;
    r->pub.http_major = p->http_major;
    r->pub.http_minor = p->http_minor;
    r->head_method = p->method == HTTP_HEAD;
    if (p->http_major != 1) {
        return http__cb_fail(c, 505, "http_version_not_supported",
                             "HTTP/%u.%u is not supported; use HTTP/1.1", p->http_major,
                             p->http_minor);
    }
    if (p->method == HTTP_CONNECT) {
        return http__cb_fail(c, 405, "method_not_allowed", "CONNECT is not supported");
    }
    if (http__req_parse_target(c, r) != 0) {
        return -1;
    }
    const uint64_t max = c->srv->lim.body_bytes_max;
    const bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    const bool chunked = (p->flags & F_CHUNKED) != 0;
    if (has_length && !chunked) {
        r->declared_len = p->content_length;
        if (p->content_length > max) {
            return http__cb_fail(c, 413, "body_too_large",
                                 "request body of %" PRIu64 " bytes exceeds %" PRIu64
                                 " bytes (body_bytes_max)",
                                 (uint64_t)p->content_length, max);
        }
    }
    const char *expect = http_req_header(&r->pub, "Expect");
    if (expect != NULL && p->http_minor >= 1) {
        if (strcasecmp(expect, "100-continue") != 0) {
            return http__cb_fail(c, 417, "expectation_failed",
                                 "unsupported Expect header '%.64s' (only 100-continue)", expect);
        }
        if (chunked || (has_length && p->content_length > 0)) {
            http__emit_continue(r); /* ordered behind earlier responses like any output */
        }
    }
    return 0;
}

static int http__on_body(http_parser *p, const char *at, size_t n)
{
    struct http__conn *c = p->data;
    struct http__req *r = c->cur;
    struct http_server *srv = c->srv;
    const uint64_t max = srv->lim.body_bytes_max;
    if (n > max - r->pub.body_len) {
        return http__cb_fail(c, 413, "body_too_large",
                             "request body exceeds %" PRIu64 " bytes (body_bytes_max)", max);
    }
    const size_t need = r->pub.body_len + n + 1; /* + NUL */
    if (need > r->body_cap) {
        size_t ncap = r->body_cap == 0 ? HTTP__BODY_BYTES_FIRST : r->body_cap * 2;
        if (r->declared_len != UINT64_MAX && ncap > r->declared_len + 1) {
            ncap = (size_t)r->declared_len + 1;
        }
        if (ncap > max + 1) {
            ncap = (size_t)max + 1;
        }
        if (ncap < need) {
            ncap = need;
        }
        const size_t grow = ncap - r->body_cap;
        if (grow > HTTP_BODY_BYTES_TOTAL_MAX - srv->body_bytes_held) {
            return http__cb_fail(c, 503, "server_busy",
                                 "request bodies in flight exceed %u bytes "
                                 "(HTTP_BODY_BYTES_TOTAL_MAX); retry later",
                                 HTTP_BODY_BYTES_TOTAL_MAX);
        }
        uint8_t *nb = realloc(r->body, ncap);
        if (nb == NULL) {
            return http__cb_fail(c, 503, "out_of_memory", "server is out of memory");
        }
        r->body = nb;
        r->body_cap = ncap;
        srv->body_bytes_held += grow;
    }
    memcpy(r->body + r->pub.body_len, at, n);
    r->pub.body_len += n;
    return 0;
}

static int http__on_message_complete(http_parser *p)
{
    struct http__conn *c = p->data;
    struct http__req *r = c->cur;
    c->cur = NULL;
    r->pub.keep_alive = http_should_keep_alive(p) != 0;
    if (r->pub.body_len > 0) {
        r->body[r->pub.body_len] = 0;
        r->pub.body = r->body;
    }
    r->state = HTTP__HANDLING;
    CC_ASSERT(c->ready == NULL);
    c->ready = r;
    http_parser_pause(p, 1); /* the loop dispatches outside http_parser_execute() */
    return 0;
}

static const http_parser_settings http__settings = {
    .on_message_begin = http__on_message_begin,
    .on_url = http__on_url,
    .on_header_field = http__on_header_field,
    .on_header_value = http__on_header_value,
    .on_headers_complete = http__on_headers_complete,
    .on_body = http__on_body,
    .on_message_complete = http__on_message_complete,
};

/* ---- parse loop -------------------------------------------------------------------- */

/* Whether the parser may run. Backpressure applies between messages only: a request
 * already begun (c->cur, counted in n_pipeline) may always complete. */
static bool http__conn_can_parse(const struct http__conn *c)
{
    if (c->closing || c->close_pending || c->stop_parsing) {
        return false;
    }
    return c->cur != NULL ||
           (c->n_pipeline < c->srv->lim.pipeline_max && c->out_bytes < HTTP_OUT_BYTES_HIGH_WATER);
}

/* Answers with a server error as the next response in order, then closes. */
static void http__conn_fail(struct http__conn *c, int status, const char *code, const char *fmt,
                            ...)
{
    char msg[HTTP_ERRMSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    c->stop_parsing = true;
    struct http__req *r = c->cur;
    c->cur = NULL;
    if (r == NULL) {
        r = http__req_new(c);
        if (r == NULL) {
            http__conn_close_soon(c);
            return;
        }
    }
    if (r->pub.http_minor == 0 && r->pub.http_major == 0) {
        r->pub.http_major = 1;
        r->pub.http_minor = 1;
    }
    r->internal = true;
    r->state = HTTP__HANDLING;
    r->close_after = true;
    r->t_start_ns = uv_hrtime();
    c->srv->stats.errors_sent++;
    http__respond_error_msg(r, status, code, msg);
}

static void http__conn_parse_failed(struct http__conn *c, enum http_errno e)
{
    if (c->fail_status != 0) {
        const int status = c->fail_status;
        c->fail_status = 0;
        http__conn_fail(c, status, c->fail_code, "%s", c->fail_msg);
        return;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        http__conn_fail(c, 431, "headers_too_large",
                        "request head exceeds %u bytes (http-parser HTTP_MAX_HEADER_SIZE)",
                        (unsigned)HTTP_MAX_HEADER_SIZE);
        return;
    }
    http__conn_fail(c, 400, "bad_request",
                    "malformed HTTP request near byte %" PRIu64 " of the connection: %s (%s)",
                    c->bytes_in - (uint64_t)(c->rlen - c->rpos), http_errno_description(e),
                    http_errno_name(e));
}

static void http__conn_dispatch(struct http__conn *c)
{
    struct http__req *r = c->ready;
    struct http_server *srv = c->srv;
    c->ready = NULL;
    CC_ASSERT(r != NULL);
    r->t_start_ns = uv_hrtime();
    r->pub.id = ++srv->next_id;
    c->active_ms = http__now_ms(srv);
    if (!r->pub.keep_alive || c->parser.upgrade) {
        r->close_after = true; /* also: after an Upgrade the bytes are not HTTP */
        c->stop_parsing = true;
    }
    if (r->pending_status != 0) {
        r->internal = true;
        srv->stats.errors_sent++;
        http__respond_error_msg(r, r->pending_status, r->pending_code, r->pending_msg);
        return;
    }
    r->visible = true;
    srv->stats.requests++;
    srv->handler(&r->pub, srv->arg); /* may finish r, close c, stop srv */
}

static void http__conn_parse(struct http__conn *c)
{
    if (c->in_parse) {
        return; /* the running loop sees whatever changed */
    }
    c->in_parse = true;
    while (http__conn_can_parse(c) && c->rpos < c->rlen) {
        const size_t avail = c->rlen - c->rpos;
        const size_t n = http_parser_execute(&c->parser, &http__settings,
                                             (const char *)c->rbuf + c->rpos, avail);
        CC_ASSERT(n <= avail);
        c->rpos += n;
        const enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            http__conn_dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            http__conn_parse_failed(c, e);
            break;
        }
        if (n < avail) { /* upgrade: what follows is not HTTP */
            c->stop_parsing = true;
            break;
        }
    }
    if (c->rpos == c->rlen || c->stop_parsing) {
        c->rpos = c->rlen = 0;
    }
    c->in_parse = false;
    http__conn_update(c);
}

/* ---- connections ------------------------------------------------------------------- */

static void http__server_maybe_free(struct http_server *srv);

static void http__on_handle_closed(uv_handle_t *h)
{
    struct http__conn *c = h->data;
    struct http_server *srv = c->srv;
    CC_ASSERT(srv->n_handles > 0);
    srv->n_handles--;
    CC_ASSERT(c->n_open_handles > 0);
    if (--c->n_open_handles == 0) {
        free(c);
    }
    http__server_maybe_free(srv);
}

static void http__resume_unlink(struct http__conn *c)
{
    struct http_server *srv = c->srv;
    if (!c->on_resume) {
        return;
    }
    if (c->rs_prev != NULL) {
        c->rs_prev->rs_next = c->rs_next;
    } else {
        srv->rs_head = c->rs_next;
    }
    if (c->rs_next != NULL) {
        c->rs_next->rs_prev = c->rs_prev;
    } else {
        srv->rs_tail = c->rs_prev;
    }
    c->rs_prev = c->rs_next = NULL;
    c->on_resume = false;
    srv->n_resume--;
}

static void http__conn_close(struct http__conn *c)
{
    if (c->closing) {
        return;
    }
    struct http_server *srv = c->srv;
    c->closing = true;
    http__resume_unlink(c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else if (srv->conns == c) {
        srv->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    if (c->rejecting) {
        CC_ASSERT(srv->n_rejecting > 0);
        srv->n_rejecting--;
    } else if (srv->loop != NULL) {
        CC_ASSERT(srv->n_conns > 0);
        srv->n_conns--;
    }
    if (srv->loop != NULL) {
        uv_close((uv_handle_t *)&c->tcp, http__on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, http__on_handle_closed);
    }
    http__conn_detach_all(c); /* runs on_close callbacks; c stays valid until closed */
}

static void http__on_idle(uv_idle_t *h);

static void http__conn_schedule(struct http__conn *c)
{
    struct http_server *srv = c->srv;
    if (c->closing || c->on_resume) {
        return;
    }
    if (srv->loop == NULL) {
        c->resume_wanted = true;
        return;
    }
    c->on_resume = true;
    c->rs_next = NULL;
    c->rs_prev = srv->rs_tail;
    if (srv->rs_tail != NULL) {
        srv->rs_tail->rs_next = c;
    } else {
        srv->rs_head = c;
    }
    srv->rs_tail = c;
    srv->n_resume++;
    if (!srv->idle_active && !srv->stopping) {
        uv_idle_start(&srv->idle, http__on_idle);
        srv->idle_active = true;
    }
}

/* Closes c from the next idle callback: used where closing now would run on_close
 * callbacks inside a respond call (a failed write) or inside the parser. */
static void http__conn_close_soon(struct http__conn *c)
{
    if (c->closing) {
        return;
    }
    if (c->srv->loop == NULL) {
        c->close_pending = true;
        c->stop_parsing = true;
        c->resume_wanted = true;
        return;
    }
    c->close_pending = true;
    c->stop_parsing = true;
    http__conn_schedule(c);
}

static void http__on_idle(uv_idle_t *h)
{
    struct http_server *srv = HTTP__CONTAINER_OF(h, struct http_server, idle);
    uint32_t budget = srv->n_resume; /* those scheduled meanwhile wait one iteration */
    while (budget-- > 0 && srv->rs_head != NULL) {
        struct http__conn *c = srv->rs_head;
        http__resume_unlink(c);
        if (c->close_pending) {
            http__conn_close(c);
        } else {
            http__conn_parse(c);
        }
    }
    if (srv->rs_head == NULL && srv->idle_active) {
        uv_idle_stop(&srv->idle);
        srv->idle_active = false;
    }
}

static void http__on_timer(uv_timer_t *t);

static void http__conn_arm_timer(struct http__conn *c)
{
    const struct http_limits *lim = &c->srv->lim;
    const uint64_t now = http__now_ms(c->srv);
    uint64_t deadline;
    if (c->lingering || c->shutting_down) {
        return; /* the linger timer was set when the shutdown completed */
    }
    if (c->cur != NULL && !c->stop_parsing) {
        c->timer_kind = HTTP__TIMER_REQUEST;
        deadline = c->cur_start_ms + lim->request_timeout_ms;
    } else if (c->out_bytes > 0) {
        c->timer_kind = HTTP__TIMER_STALL;
        deadline = c->out_since_ms + lim->idle_timeout_ms;
    } else if (c->head == NULL) {
        c->timer_kind = HTTP__TIMER_IDLE;
        deadline = c->active_ms + lim->idle_timeout_ms;
    } else {
        c->timer_kind = HTTP__TIMER_NONE; /* the handler is working: not the client's fault */
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, http__on_timer, deadline > now ? deadline - now : 0, 0);
}

static void http__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void http__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Brings reading, deferred parsing and the timer in line with c's state. */
static void http__conn_update(struct http__conn *c)
{
    if (c->closing) {
        return;
    }
    const bool can_parse = http__conn_can_parse(c);
    if (c->rpos < c->rlen && can_parse && !c->in_parse) {
        http__conn_schedule(c);
    }
    if (c->srv->loop == NULL) {
        return;
    }
    const bool want_read =
        c->lingering || (!c->eof && !c->shutting_down && c->rpos == c->rlen && can_parse);
    if (want_read && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, http__on_alloc, http__on_read) != 0) {
            http__conn_close_soon(c);
            return;
        }
        c->reading = true;
    } else if (!want_read && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    http__conn_arm_timer(c);
}

static bool http__conn_has_unfinished(const struct http__conn *c)
{
    for (const struct http__req *r = c->head; r != NULL; r = r->next) {
        if (r->state != HTTP__DONE) {
            return true;
        }
    }
    return false;
}

/* The client closed its side. A request still in the making or still being answered
 * means it went away (as Go and nginx read it); otherwise finish writing, then close. */
static void http__conn_eof(struct http__conn *c)
{
    c->eof = true;
    if (c->srv->loop != NULL && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (c->cur != NULL || http__conn_has_unfinished(c) || c->n_writes == 0) {
        http__conn_close(c);
        return;
    }
    c->stop_parsing = true;
    c->close_after_write = true;
    http__conn_maybe_finish(c);
    http__conn_update(c);
}

static void http__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http__conn *c = h->data;
    if (!c->lingering) {
        CC_ASSERT(c->rlen == 0);
    }
    buf->base = (char *)c->rbuf;
    buf->len = sizeof(c->rbuf);
}

static void http__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http__conn *c = s->data;
    if (c->closing || nread == 0) {
        return;
    }
    if (c->lingering) { /* discard until EOF, error or the linger timer */
        if (nread < 0) {
            http__conn_close(c);
        }
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            http__conn_eof(c);
        } else {
            http__conn_close(c);
        }
        return;
    }
    CC_ASSERT(buf->base == (char *)c->rbuf);
    CC_ASSERT((size_t)nread <= sizeof(c->rbuf));
    c->rpos = 0;
    c->rlen = (size_t)nread;
    c->bytes_in += (uint64_t)nread;
    http__conn_parse(c); /* not activity by itself: bare CRLFs must not defer the idle close */
}

static void http__on_write(uv_write_t *w, int status)
{
    struct http__chunk *ch = HTTP__CONTAINER_OF(w, struct http__chunk, wreq);
    struct http__conn *c = ch->conn;
    CC_ASSERT(c->n_writes > 0);
    CC_ASSERT(c->out_bytes >= ch->n);
    const bool was_high = c->out_bytes >= HTTP_OUT_BYTES_HIGH_WATER;
    c->n_writes--;
    c->out_bytes -= ch->n;
    free(ch);
    if (c->closing) {
        return;
    }
    if (status < 0) {
        http__conn_close(c);
        return;
    }
    c->out_since_ms = c->active_ms = http__now_ms(c->srv);
    http__conn_maybe_finish(c);
    if (c->closing) {
        return;
    }
    if (was_high && c->out_bytes < HTTP_OUT_BYTES_HIGH_WATER) {
        http__conn_parse(c); /* top level: safe to run the handler */
        return;
    }
    http__conn_update(c);
}

static void http__on_shutdown(uv_shutdown_t *req, int status)
{
    struct http__conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        http__conn_close(c);
        return;
    }
    c->lingering = true;
    c->rpos = c->rlen = 0;
    if (!c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, http__on_alloc, http__on_read) != 0) {
            http__conn_close(c);
            return;
        }
        c->reading = true;
    }
    c->timer_kind = HTTP__TIMER_LINGER;
    uv_timer_start(&c->timer, http__on_timer, HTTP_LINGER_MS, 0);
}

static void http__on_timer(uv_timer_t *t)
{
    struct http__conn *c = t->data;
    struct http_server *srv = c->srv;
    if (c->closing) {
        return;
    }
    switch (c->timer_kind) {
    case HTTP__TIMER_REQUEST:
        srv->stats.timeouts_request++;
        http__conn_fail(c, 408, "request_timeout",
                        "request not complete within %" PRIu32 " ms (request_timeout_ms)",
                        srv->lim.request_timeout_ms);
        if (!c->closing) {
            http__conn_update(c);
        }
        return;
    case HTTP__TIMER_STALL:
        srv->stats.timeouts_stalled++;
        http__conn_close(c);
        return;
    case HTTP__TIMER_IDLE:
        srv->stats.timeouts_idle++;
        http__conn_close(c);
        return;
    case HTTP__TIMER_LINGER:
        http__conn_close(c);
        return;
    case HTTP__TIMER_NONE:
        return;
    }
}

static void http__conn_init(struct http__conn *c, struct http_server *srv)
{
    c->srv = srv;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->active_ms = http__now_ms(srv);
}

/* ---- server ------------------------------------------------------------------------ */

static void http__server_maybe_free(struct http_server *srv)
{
    if (!srv->stopping || srv->n_handles > 0) {
        return;
    }
    void (*done_cb)(void *) = srv->done_cb;
    void *done_arg = srv->done_arg;
    free(srv);
    if (done_cb != NULL) {
        done_cb(done_arg);
    }
}

static void http__on_server_handle_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    CC_ASSERT(srv->n_handles > 0);
    srv->n_handles--;
    http__server_maybe_free(srv);
}

static void http__send_refusal(struct http__conn *c)
{
    char body[256];
    const int n = snprintf(body, sizeof(body),
                           "{\"error\":{\"code\":\"too_many_connections\",\"message\":"
                           "\"server has %" PRIu32 " open connections (conns_max); "
                           "retry later\"}}\n",
                           c->srv->lim.conns_max);
    CC_ASSERT(n > 0 && (size_t)n < sizeof(body));
    char head[256];
    const int h = snprintf(head, sizeof(head),
                           "HTTP/1.1 503 Service Unavailable\r\nServer: conclave\r\n"
                           "Content-Type: application/json\r\nContent-Length: %d\r\n"
                           "Connection: close\r\nRetry-After: 1\r\n\r\n",
                           n);
    CC_ASSERT(h > 0 && (size_t)h < sizeof(head));
    struct http__chunk *ch = http__chunk_new((size_t)h + (size_t)n);
    if (ch == NULL) {
        http__conn_close(c);
        return;
    }
    memcpy(ch->bytes, head, (size_t)h);
    memcpy(ch->bytes + h, body, (size_t)n);
    ch->n = (size_t)h + (size_t)n;
    c->stop_parsing = true;
    c->close_after_write = true;
    http__conn_issue(c, ch);
    http__conn_maybe_finish(c);
}

static void http__on_connection(uv_stream_t *listener, int status);

static void http__on_accept_retry(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    http__on_connection((uv_stream_t *)&srv->listener, 0);
}

static void http__on_connection(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    if (status < 0 || srv->stopping) {
        return;
    }
    struct http__conn *c = calloc(1, sizeof(*c));
    if (c == NULL) { /* the pending socket waits; libuv will not poll until we accept */
        uv_timer_start(&srv->accept_retry, http__on_accept_retry, HTTP__ACCEPT_RETRY_MS, 0);
        return;
    }
    http__conn_init(c, srv);
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->n_open_handles = 2;
    srv->n_handles += 2;
    c->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    const bool refuse = srv->n_conns >= srv->lim.conns_max;
    if (refuse) {
        c->rejecting = true;
        srv->n_rejecting++;
        srv->stats.conns_refused++;
    } else {
        srv->n_conns++;
        srv->stats.conns_accepted++;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        http__conn_close(c);
        return;
    }
    if (refuse) {
        if (srv->n_rejecting > HTTP_REJECTS_MAX) {
            http__conn_close(c);
            return;
        }
        http__send_refusal(c);
        http__conn_update(c); /* arms the stall timer */
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http__conn_update(c);
}

static int http__parse_addr(const char *host_port, char *host, char *port, size_t port_cap)
{
    const size_t n = strlen(host_port);
    if (n == 0 || n >= HTTP_ADDR_BYTES_MAX) {
        return HTTP_EADDR;
    }
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL || colon == host_port) {
        return HTTP_EADDR;
    }
    const char *h = host_port;
    size_t hl = (size_t)(colon - host_port);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']') {
            return HTTP_EADDR;
        }
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl) != NULL) {
        return HTTP_EADDR; /* bare IPv6 needs brackets */
    }
    const char *p = colon + 1;
    const size_t pl = strlen(p);
    if (pl == 0 || pl >= port_cap || pl > 5) {
        return HTTP_EADDR;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return HTTP_EADDR;
        }
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v > 65535) {
        return HTTP_EADDR;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return 0;
}

int http_server_start(uv_loop_t *loop, const char *host_port, const struct http_limits *lim,
                      http_handler_fn handler, void *arg, struct http_server **out, char *errmsg,
                      size_t errmsg_cap)
{
    struct http_limits defaults;
    char host[HTTP_ADDR_BYTES_MAX];
    char port[8];
    struct addrinfo *ai = NULL;
    struct http_server *srv = NULL;
    int rv;

    CC_ASSERT(loop != NULL);
    CC_ASSERT(handler != NULL);
    CC_ASSERT(out != NULL);
    *out = NULL;
    if (lim == NULL) {
        http_limits_default(&defaults);
        lim = &defaults;
    }
    rv = http__limits_check(lim, errmsg, errmsg_cap);
    if (rv != 0) {
        goto err;
    }
    if (host_port == NULL || http__parse_addr(host_port, host, port, sizeof(port)) != 0) {
        http__errmsg(errmsg, errmsg_cap, "bad listen address '%.*s' (want host:port)", 64,
                     host_port != NULL ? host_port : "(null)");
        rv = HTTP_EADDR;
        goto err;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    const int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        http__errmsg(errmsg, errmsg_cap, "cannot resolve listen host '%s': %s", host,
                     gai_strerror(gai));
        rv = HTTP_EADDR;
        goto err;
    }
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        http__errmsg(errmsg, errmsg_cap, "out of memory");
        rv = HTTP_ENOMEM;
        goto err_after_ai;
    }
    srv->loop = loop;
    srv->lim = *lim;
    srv->handler = handler;
    srv->arg = arg;
    uv_idle_init(loop, &srv->idle);
    srv->idle.data = srv;
    uv_timer_init(loop, &srv->accept_retry);
    srv->accept_retry.data = srv;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->n_handles = 3;
    rv = uv_tcp_bind(&srv->listener, ai->ai_addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&srv->listener, HTTP__LISTEN_BACKLOG, http__on_connection);
    }
    if (rv != 0) {
        http__errmsg(errmsg, errmsg_cap, "cannot listen on %s: %s", host_port, uv_strerror(rv));
        rv = HTTP_ELISTEN;
        goto err_after_handles;
    }
    freeaddrinfo(ai);
    *out = srv;
    return 0;

err_after_handles:
    srv->stopping = true; /* freed by the close callbacks */
    uv_close((uv_handle_t *)&srv->listener, http__on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->idle, http__on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->accept_retry, http__on_server_handle_closed);
err_after_ai:
    freeaddrinfo(ai);
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int http_server_bound_port(const struct http_server *srv)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

void http_server_stop(struct http_server *srv, void (*done_cb)(void *arg), void *arg)
{
    CC_ASSERT(srv != NULL);
    CC_ASSERT(!srv->stopping);
    CC_ASSERT(srv->loop != NULL);
    srv->stopping = true;
    srv->done_cb = done_cb;
    srv->done_arg = arg;
    uv_close((uv_handle_t *)&srv->listener, http__on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->idle, http__on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->accept_retry, http__on_server_handle_closed);
    srv->idle_active = false;
    while (srv->conns != NULL) { /* bounded: each pass unlinks one; none can be added */
        http__conn_close(srv->conns);
    }
}

void http_server_set_access_log(struct http_server *srv, http_access_log_cb cb, void *log_arg)
{
    CC_ASSERT(srv != NULL);
    srv->log_cb = cb;
    srv->log_arg = log_arg;
}

void http_server_stats(const struct http_server *srv, struct http_server_stats *out)
{
    CC_ASSERT(srv != NULL);
    CC_ASSERT(out != NULL);
    *out = srv->stats;
    out->n_conns = srv->n_conns;
}

/* ---- API: requests ----------------------------------------------------------------- */

const char *http_req_header(const struct http_req *req, const char *name)
{
    CC_ASSERT(req != NULL);
    CC_ASSERT(name != NULL);
    for (uint32_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

int http_req_on_close(struct http_req *req, void (*cb)(struct http_req *req, void *arg), void *arg)
{
    struct http__req *r = http__req_of(req);
    if (r->conn == NULL) {
        return HTTP_ECLOSED;
    }
    r->close_cb = cb;
    r->close_arg = arg;
    return 0;
}

bool http_req_is_closed(const struct http_req *req)
{
    const struct http__req *r = HTTP__CONTAINER_OF(req, const struct http__req, pub);
    return r->conn == NULL;
}

/* ---- API: responses ---------------------------------------------------------------- */

int http_respond_header(struct http_req *req, const char *name, const char *value)
{
    struct http__req *r = http__req_of(req);
    CC_ASSERT(name != NULL);
    CC_ASSERT(value != NULL);
    if (r->conn == NULL) {
        return HTTP_ECLOSED;
    }
    if (r->state != HTTP__HANDLING) {
        return HTTP_ESTATE;
    }
    const size_t nl = strlen(name);
    const size_t vl = strlen(value);
    if (nl == 0 || !http__is_field_value(value)) {
        return HTTP_EINVAL;
    }
    for (size_t i = 0; i < nl; i++) {
        if (!http__is_tchar((unsigned char)name[i])) {
            return HTTP_EINVAL;
        }
    }
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
        strcasecmp(name, "Server") == 0) {
        return HTTP_EINVAL;
    }
    if (strcasecmp(name, "Connection") == 0) {
        if (strcasecmp(value, "close") != 0) {
            return HTTP_EINVAL;
        }
        r->close_after = true;
        r->conn->stop_parsing = true;
        return 0;
    }
    const size_t add = nl + 2 + vl + 2;
    if (add > HTTP_RESP_HEADERS_BYTES_MAX - r->xhdr_len) {
        return HTTP_EFULL;
    }
    char *nb = realloc(r->xhdr, r->xhdr_len + add);
    if (nb == NULL) {
        return HTTP_ENOMEM;
    }
    r->xhdr = nb;
    const struct {
        const char *s;
        size_t n;
    } parts[] = {{name, nl}, {": ", 2}, {value, vl}, {"\r\n", 2}};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        memmove(r->xhdr + r->xhdr_len, parts[i].s, parts[i].n);
        r->xhdr_len += parts[i].n;
    }
    return 0;
}

void http_respond(struct http_req *req, int status, const char *content_type, const void *body,
                  size_t n)
{
    CC_ASSERT(body != NULL || n == 0);
    http__respond2(http__req_of(req), status, content_type, body, n, NULL, 0);
}

void http_respond_json(struct http_req *req, int status, json_t *obj)
{
    struct http__req *r = http__req_of(req);
    char *s = obj != NULL ? json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(obj);
    if (s == NULL) {
        http__respond_error_msg(r, 500, "internal",
                                "response could not be encoded as JSON (out of memory?)");
        return;
    }
    http__respond2(r, status, "application/json", s, strlen(s), "\n", 1);
    free(s);
}

void http_respond_verror(struct http_req *req, int status, const char *code, const char *fmt,
                         va_list ap)
{
    char msg[HTTP_ERRMSG_BYTES];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    http__respond_error_msg(http__req_of(req), status, code, msg);
}

void http_respond_error(struct http_req *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    http_respond_verror(req, status, code, fmt, ap);
    va_end(ap);
}

/* ---- API: streams ------------------------------------------------------------------ */

int http_stream_begin(struct http_req *req, int status, const char *content_type)
{
    struct http__req *r = http__req_of(req);
    CC_ASSERT(status >= 200 && status <= 599);
    if (r->conn == NULL) {
        return HTTP_ECLOSED;
    }
    if (r->state != HTTP__HANDLING) {
        return HTTP_ESTATE;
    }
    if (r->pub.http_minor == 0) {
        r->framing = HTTP__FRAME_EOF;
        r->close_after = true;
        r->conn->stop_parsing = true;
    } else {
        r->framing = HTTP__FRAME_CHUNKED;
    }
    struct http__chunk *ch = http__head_new(r, status, content_type, r->framing, 0, 0);
    if (ch == NULL) {
        return HTTP_ENOMEM;
    }
    r->status = status;
    r->state = HTTP__STREAMING;
    http__req_output(r, ch);
    http__conn_update(r->conn);
    return 0;
}

int http_stream_write(struct http_req *req, const void *data, size_t n)
{
    struct http__req *r = http__req_of(req);
    CC_ASSERT(data != NULL || n == 0);
    if (r->conn == NULL) {
        return HTTP_ECLOSED;
    }
    if (r->state != HTTP__STREAMING) {
        return HTTP_ESTATE;
    }
    struct http__conn *c = r->conn;
    const size_t limit = c->srv->lim.stream_buffer_bytes_max;
    if (n > limit) {
        return HTTP_EINVAL;
    }
    if (n == 0 || r->head_method) {
        return 0;
    }
    if (c->out_bytes + r->held_bytes + n > limit) {
        c->srv->stats.stream_slow++;
        return HTTP_ESLOW;
    }
    const size_t framing = r->framing == HTTP__FRAME_CHUNKED ? 20 : 0; /* hex + 2 CRLF */
    struct http__chunk *ch = http__chunk_new(n + framing);
    if (ch == NULL) {
        return HTTP_ENOMEM;
    }
    size_t pos = 0;
    if (framing > 0) {
        pos = (size_t)snprintf((char *)ch->bytes, framing, "%zx\r\n", n);
    }
    memcpy(ch->bytes + pos, data, n);
    pos += n;
    if (framing > 0) {
        memcpy(ch->bytes + pos, "\r\n", 2);
        pos += 2;
    }
    ch->n = pos;
    http__req_output(r, ch);
    http__conn_update(c);
    return 0;
}

void http_stream_end(struct http_req *req)
{
    struct http__req *r = http__req_of(req);
    if (r->conn == NULL) {
        http__req_release_detached(r);
        return;
    }
    if (r->state == HTTP__HANDLING) { /* begin failed (ENOMEM): nothing was sent */
        http__respond_error_msg(r, 500, "internal", "stream could not start");
        return;
    }
    CC_ASSERT(r->state == HTTP__STREAMING);
    if (r->framing == HTTP__FRAME_CHUNKED && !r->head_method) {
        static const char last[] = "0\r\n\r\n";
        struct http__chunk *ch = http__chunk_new(sizeof(last) - 1);
        if (ch == NULL) {
            r->state = HTTP__DONE;
            http__conn_close_soon(r->conn);
            return;
        }
        memcpy(ch->bytes, last, sizeof(last) - 1);
        ch->n = sizeof(last) - 1;
        http__req_output(r, ch);
    }
    http__req_finish(r, r->status);
}

/* ---- API: helpers ------------------------------------------------------------------ */

int http_path_decode(const char *raw, size_t n, char *out, size_t cap, size_t *out_len)
{
    CC_ASSERT(raw != NULL || n == 0);
    CC_ASSERT(out != NULL);
    const char *p = raw;
    const char *end = raw + n;
    size_t len = 0;
    while (p < end) {
        const int b = http__decode_next(&p, end, false);
        if (b < 0) {
            return HTTP_EBADVALUE;
        }
        if (len + 1 >= cap) {
            return HTTP_ETOOLONG;
        }
        out[len++] = (char)b;
    }
    if (cap == 0) {
        return HTTP_ETOOLONG;
    }
    out[len] = '\0';
    if (out_len != NULL) {
        *out_len = len;
    }
    return 0;
}

/* True if the form-encoded key [p, end) decodes to exactly name. */
static bool http__key_equals(const char *p, const char *end, const char *name)
{
    while (p < end) {
        const int b = http__decode_next(&p, end, true);
        if (b < 0 || *name == '\0' || (unsigned char)*name != b) {
            return false;
        }
        name++;
    }
    return *name == '\0';
}

int http_query_get(const struct http_req *req, const char *name, char *buf, size_t cap,
                   size_t *len_out)
{
    CC_ASSERT(req != NULL);
    CC_ASSERT(name != NULL);
    CC_ASSERT(buf != NULL);
    if (req->query == NULL) {
        return HTTP_ENOTFOUND;
    }
    const char *p = req->query;
    const char *end = req->query + req->query_len;
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq != NULL ? eq : pair_end;
        if (key_end > p && http__key_equals(p, key_end, name)) {
            const char *v = eq != NULL ? eq + 1 : pair_end;
            size_t len = 0;
            while (v < pair_end) {
                const int b = http__decode_next(&v, pair_end, true);
                if (b < 0) {
                    return HTTP_EBADVALUE;
                }
                if (len + 1 >= cap) {
                    return HTTP_ETOOLONG;
                }
                buf[len++] = (char)b;
            }
            if (cap == 0) {
                return HTTP_ETOOLONG;
            }
            buf[len] = '\0';
            if (len_out != NULL) {
                *len_out = len;
            }
            return 0;
        }
        if (amp == NULL) {
            break;
        }
        p = amp + 1;
    }
    return HTTP_ENOTFOUND;
}

int http_query_bool(const struct http_req *req, const char *name, bool *out)
{
    char v[8];
    size_t len;
    CC_ASSERT(out != NULL);
    const int rv = http_query_get(req, name, v, sizeof(v), &len);
    if (rv == HTTP_ENOTFOUND) {
        return rv;
    }
    if (rv != 0 || len != strlen(v)) {
        return HTTP_EBADVALUE;
    }
    if (v[0] == '\0' || strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
        strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 ||
        strcasecmp(v, "off") == 0) {
        *out = false;
        return 0;
    }
    return HTTP_EBADVALUE;
}

int http_query_u64(const struct http_req *req, const char *name, uint64_t *out)
{
    char v[24];
    size_t len;
    CC_ASSERT(out != NULL);
    const int rv = http_query_get(req, name, v, sizeof(v), &len);
    if (rv == HTTP_ENOTFOUND) {
        return rv;
    }
    if (rv != 0 || len == 0) {
        return HTTP_EBADVALUE;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return HTTP_EBADVALUE;
        }
        const uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10) {
            return HTTP_EBADVALUE;
        }
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

const char *http_method_name(int method)
{
    return http_method_str((enum http_method)method);
}

/* ---- feeder ------------------------------------------------------------------------ */

int http_feeder_new(const struct http_limits *lim, http_handler_fn handler, void *arg,
                    http_out_cb out_cb, void *out_arg, struct http_feeder **out)
{
    struct http_limits defaults;
    CC_ASSERT(handler != NULL);
    CC_ASSERT(out_cb != NULL);
    CC_ASSERT(out != NULL);
    *out = NULL;
    if (lim == NULL) {
        http_limits_default(&defaults);
        lim = &defaults;
    }
    if (http__limits_check(lim, NULL, 0) != 0) {
        return HTTP_EINVAL;
    }
    struct http_feeder *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return HTTP_ENOMEM;
    }
    f->conn = calloc(1, sizeof(*f->conn));
    if (f->conn == NULL) {
        free(f);
        return HTTP_ENOMEM;
    }
    f->srv.lim = *lim;
    f->srv.handler = handler;
    f->srv.arg = arg;
    f->srv.out_cb = out_cb;
    f->srv.out_arg = out_arg;
    http__conn_init(f->conn, &f->srv);
    *out = f;
    return 0;
}

/* Runs what earlier calls deferred: a close, or parsing of held bytes. */
static void http__feeder_resume(struct http_feeder *f)
{
    struct http__conn *c = f->conn;
    while (c->resume_wanted && !c->closing) {
        c->resume_wanted = false;
        if (c->close_pending) {
            http__conn_close(c);
            return;
        }
        http__conn_parse(c);
    }
}

size_t http_feeder_feed(struct http_feeder *f, const void *data, size_t n)
{
    CC_ASSERT(f != NULL);
    CC_ASSERT(data != NULL || n == 0);
    struct http__conn *c = f->conn;
    size_t taken = 0;
    c->resume_wanted = c->resume_wanted || c->rpos < c->rlen;
    http__feeder_resume(f);
    while (taken < n && !c->closing && c->rpos == c->rlen && http__conn_can_parse(c)) {
        size_t m = n - taken;
        if (m > sizeof(c->rbuf)) {
            m = sizeof(c->rbuf);
        }
        memcpy(c->rbuf, (const uint8_t *)data + taken, m);
        c->rpos = 0;
        c->rlen = m;
        c->bytes_in += m;
        taken += m;
        http__conn_parse(c);
        http__feeder_resume(f);
    }
    return taken;
}

bool http_feeder_closed(const struct http_feeder *f)
{
    CC_ASSERT(f != NULL);
    return f->conn->closing || f->conn->close_pending;
}

void http_feeder_eof(struct http_feeder *f)
{
    CC_ASSERT(f != NULL);
    if (!f->conn->closing) {
        http__conn_eof(f->conn);
    }
}

void http_feeder_free(struct http_feeder *f)
{
    if (f == NULL) {
        return;
    }
    http__conn_close(f->conn);
    CC_ASSERT(f->srv.body_bytes_held == 0);
    free(f->conn);
    free(f);
}
