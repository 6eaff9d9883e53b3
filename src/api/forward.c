/* forward.c -- relay one HTTP request to another node (the leader) and its answer back.
 *
 * A follower that receives a write cannot propose it, so it sends the same request to
 * the leader's HTTP address and relays the leader's status, Content-Type and body. The
 * relayed request carries FORWARD_HEADER so a node that is no longer leader answers 503
 * instead of forwarding again (no loops). One connection per forwarded request, with
 * "Connection: close": forwarding is the slow path, kept simple.
 *
 * Bounds: FORWARD_RESPONSE_BYTES_MAX on what we buffer, FORWARD_TIMEOUT_MS on the whole
 * exchange. Any failure answers the client 502/504 with a JSON error that names the
 * leader address and what went wrong.
 *
 * Sections: state | completion | libuv callbacks | entry point.
 */
#include "api/forward.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FORWARD_RESPONSE_BYTES_MAX (UINT32_C(72) << 20) /* a 64 MiB range reply + slack */
#define FORWARD_TIMEOUT_MS 15000 /* longer than a write's own timeout on the leader */
#define FORWARD_CTYPE_BYTES 128

/* ==== state =============================================================== */

struct fwd {
    struct http_req *req;   /* relaying: the client's request; NULL for forward_call */
    forward_done_cb done_cb; /* forward_call: told the outcome instead */
    void *done_arg;
    const char *send_body;  /* bytes after the head: req's body or own_body */
    size_t send_body_len;
    char *own_body;
    char target[FORWARD_ADDR_BYTES];
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uv_getaddrinfo_t gai;
    char *out;         /* the request bytes */
    http_parser parser;
    http_parser_settings settings;
    char ctype[FORWARD_CTYPE_BYTES];
    bool in_ctype;
    char *body;
    size_t body_len, body_cap;
    bool done;         /* the client has been answered */
    bool message_complete;
    int n_open;        /* handles still open */
};

/* ==== completion ============================================================ */

/* Handles and the address lookup each hold f; the last one frees it. */
static void fwd_release(struct fwd *f)
{
    if (--f->n_open == 0) {
        free(f->out);
        free(f->body);
        free(f->own_body);
        free(f);
    }
}

static void fwd_on_closed(uv_handle_t *h) { fwd_release(h->data); }

static void fwd_finish(struct fwd *f, int status, const char *code, const char *why)
{
    if (!f->done && !f->req) {
        f->done = true;
        if (f->done_cb)
            f->done_cb(f->done_arg, code ? status : (int)f->parser.status_code);
    } else if (!f->done) {
        f->done = true;
        if (code)
            http_respond_error(f->req, status, code, "forwarding to the leader at %s: %s",
                               f->target, why);
        else
            http_respond(f->req, status, f->ctype[0] ? f->ctype : NULL, f->body, f->body_len);
    }
    if (!uv_is_closing((uv_handle_t *)&f->timer))
        uv_close((uv_handle_t *)&f->timer, fwd_on_closed);
    if (!uv_is_closing((uv_handle_t *)&f->tcp))
        uv_close((uv_handle_t *)&f->tcp, fwd_on_closed);
}

/* ==== response parsing ========================================================= */

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct fwd *f = p->data;
    f->in_ctype = n == 12 && strncasecmp(at, "Content-Type", 12) == 0;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct fwd *f = p->data;
    if (f->in_ctype && n < sizeof(f->ctype)) {
        memcpy(f->ctype, at, n);
        f->ctype[n] = 0;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct fwd *f = p->data;
    if (f->body_len + n > FORWARD_RESPONSE_BYTES_MAX)
        return 1;
    if (f->body_len + n > f->body_cap) {
        size_t cap = f->body_cap ? f->body_cap : 4096;
        while (cap < f->body_len + n)
            cap *= 2;
        char *nb = realloc(f->body, cap);
        if (!nb)
            return 1;
        f->body = nb;
        f->body_cap = cap;
    }
    memcpy(f->body + f->body_len, at, n);
    f->body_len += n;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct fwd *f = p->data;
    f->message_complete = true;
    return 0;
}

/* ==== libuv callbacks ========================================================= */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct fwd *f = s->data;
    if (nread > 0) {
        size_t used = http_parser_execute(&f->parser, &f->settings, buf->base, (size_t)nread);
        if (f->parser.http_errno != HPE_OK || used != (size_t)nread)
            fwd_finish(f, 502, "bad_gateway", "malformed or oversized response");
        else if (f->message_complete)
            fwd_finish(f, (int)f->parser.status_code, NULL, NULL);
    } else if (nread < 0) {
        http_parser_execute(&f->parser, &f->settings, NULL, 0); /* EOF ends a body */
        if (f->message_complete)
            fwd_finish(f, (int)f->parser.status_code, NULL, NULL);
        else
            fwd_finish(f, 502, "bad_gateway", nread == UV_EOF ? "connection closed early"
                                                              : uv_strerror((int)nread));
    }
    free(buf->base);
}

static void on_written(uv_write_t *w, int status)
{
    struct fwd *f = w->data;
    if (status != 0)
        fwd_finish(f, 502, "bad_gateway", uv_strerror(status));
}

static void on_connected(uv_connect_t *c, int status)
{
    struct fwd *f = c->data;
    if (f->done)
        return;
    if (status != 0) {
        fwd_finish(f, 502, "leader_unreachable", uv_strerror(status));
        return;
    }
    uv_buf_t b[2] = {uv_buf_init(f->out, (unsigned)strlen(f->out)),
                     uv_buf_init((char *)f->send_body, (unsigned)f->send_body_len)};
    f->write.data = f;
    uv_write(&f->write, (uv_stream_t *)&f->tcp, b, f->send_body_len ? 2 : 1, on_written);
    uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct fwd *f = g->data;
    if (f->done) {
        /* answered already (timeout): nothing to connect */
    } else if (status != 0 || !ai) {
        fwd_finish(f, 502, "leader_unreachable", status ? uv_strerror(status) : "no address");
    } else {
        f->connect.data = f;
        int rv = uv_tcp_connect(&f->connect, &f->tcp, ai->ai_addr, on_connected);
        if (rv != 0)
            fwd_finish(f, 502, "leader_unreachable", uv_strerror(rv));
    }
    uv_freeaddrinfo(ai);
    fwd_release(f);
}

static void on_timeout(uv_timer_t *t)
{
    fwd_finish(t->data, 504, "forward_timeout", "no answer in time; a write may still apply");
}

/* ==== entry point =============================================================== */

static bool split_host_port(const char *host_port, char *host, size_t host_cap, char *port,
                            size_t port_cap)
{
    const char *colon = strrchr(host_port, ':');
    if (!colon || (size_t)(colon - host_port) >= host_cap || strlen(colon + 1) >= port_cap)
        return false;
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = 0;
    snprintf(port, port_cap, "%s", colon + 1);
    return true;
}

static void fwd_start(uv_loop_t *loop, struct fwd *f, const char *host, const char *port);

void forward_request(uv_loop_t *loop, const char *host_port, struct http_req *req)
{
    char host[FORWARD_ADDR_BYTES], port[16];
    if (!split_host_port(host_port, host, sizeof(host), port, sizeof(port))) {
        http_respond_error(req, 502, "bad_leader_address", "leader address '%s' is not host:port",
                           host_port);
        return;
    }
    struct fwd *f = calloc(1, sizeof(*f));
    size_t cap = req->path_raw_len + req->query_len + 256;
    if (f)
        f->out = malloc(cap);
    if (!f || !f->out) {
        free(f);
        http_respond_error(req, 503, "no_memory", "cannot forward: out of memory");
        return;
    }
    f->req = req;
    f->send_body = (const char *)req->body;
    f->send_body_len = req->body_len;
    snprintf(f->target, sizeof(f->target), "%s", host_port);
    snprintf(f->out, cap,
             "%s %.*s%s%.*s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s: 1\r\n"
             "Content-Length: %zu\r\n\r\n",
             http_method_name(req->method), (int)req->path_raw_len, req->path_raw,
             req->query ? "?" : "", req->query ? (int)req->query_len : 0,
             req->query ? req->query : "", host_port, FORWARD_HEADER, req->body_len);
    fwd_start(loop, f, host, port);
}

int forward_call(uv_loop_t *loop, const char *host_port, const char *method, const char *path,
                 const void *body, size_t body_len, forward_done_cb cb, void *arg)
{
    char host[FORWARD_ADDR_BYTES], port[16];
    if (!split_host_port(host_port, host, sizeof(host), port, sizeof(port)))
        return -1;
    struct fwd *f = calloc(1, sizeof(*f));
    size_t cap = strlen(path) + strlen(method) + strlen(host_port) + 256;
    if (f) {
        f->out = malloc(cap);
        f->own_body = malloc(body_len ? body_len : 1);
    }
    if (!f || !f->out || !f->own_body) {
        if (f) {
            free(f->out);
            free(f->own_body);
        }
        free(f);
        return -1;
    }
    memcpy(f->own_body, body, body_len);
    f->send_body = f->own_body;
    f->send_body_len = body_len;
    f->done_cb = cb;
    f->done_arg = arg;
    snprintf(f->target, sizeof(f->target), "%s", host_port);
    snprintf(f->out, cap,
             "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s: 1\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             method, path, host_port, FORWARD_HEADER, body_len);
    fwd_start(loop, f, host, port);
    return 0;
}

static void fwd_start(uv_loop_t *loop, struct fwd *f, const char *host, const char *port)
{
    http_parser_init(&f->parser, HTTP_RESPONSE);
    f->parser.data = f;
    http_parser_settings_init(&f->settings);
    f->settings.on_header_field = on_header_field;
    f->settings.on_header_value = on_header_value;
    f->settings.on_body = on_body;
    f->settings.on_message_complete = on_message_complete;
    uv_tcp_init(loop, &f->tcp);
    uv_timer_init(loop, &f->timer);
    f->tcp.data = f->timer.data = f;
    f->n_open = 3; /* tcp, timer, address lookup */
    uv_timer_start(&f->timer, on_timeout, FORWARD_TIMEOUT_MS, 0);
    f->gai.data = f;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rv = uv_getaddrinfo(loop, &f->gai, on_resolved, host, port, &hints);
    if (rv != 0) {
        fwd_finish(f, 502, "leader_unreachable", uv_strerror(rv));
        fwd_release(f);
    }
}
