/* client.c -- a tiny blocking HTTP/1.1 client for the /v1 API, and the CLI glue the
 * client subcommands share (client.h has the contract, docs/cli.md the user's view).
 *
 * One exchange is: resolve, connect (non-blocking connect + poll, one address after
 * another, each bounded by the connect timeout), send the head and the body, read
 * until http-parser (HTTP_RESPONSE mode) reports the message complete, close. The
 * socket stays non-blocking throughout and every wait is a poll() against one
 * monotonic deadline, so no call can outlive opts->timeout_ms, whatever the peer does.
 *
 * Invariants:
 *   - The response body never exceeds response_bytes_max: a larger Content-Length is
 *     refused as soon as the head arrives, a chunked or close-delimited body as soon as
 *     it crosses the limit. Each recv() is CLIENT_READ_BYTES, bounding parse work.
 *   - On success resp->body is non-NULL and NUL-terminated; on failure resp is empty.
 *   - A send error does not end the exchange at once: a server may answer early (413
 *     for a body it will not take) and close, and that answer is worth more than EPIPE.
 *
 * Sections: limits | errors | endpoint | escaping | time and sockets | connect |
 * response parsing | exchange | streaming exchange (watch streams) | cli glue.
 */
#include "cli/client.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "base/assert.h"
#include "sm/kv.h"

/* ---- limits ------------------------------------------------------------------------ */

#define CLIENT_READ_BYTES         (16u << 10) /* one recv(); bounds parse work per read */
#define CLIENT_BODY_BYTES_INITIAL 4096u       /* first body buffer; doubles as needed */
#define CLIENT_HEAD_EXTRA_BYTES   512u        /* request head besides target, host, type */
#define CLIENT_METHOD_BYTES_MAX   16u         /* "DELETE" is the longest we send */
#define CLIENT_ERROR_BODY_SHOWN   200u        /* bytes of a non-JSON error body printed */

_Static_assert(CLIENT_TARGET_BYTES_MAX == HTTP_URL_BYTES_MAX,
               "a target the server would refuse with 414 is refused here first");
_Static_assert(CLIENT_ENDPOINT_BYTES == HTTP_ADDR_BYTES_MAX, "same host:port bound as the server");
_Static_assert(CLIENT_RESPONSE_BYTES_MAX >= KV_RESULT_BYTES_MAX / 3 * 4 + KV_RANGE_LIMIT_MAX * 256u,
               "a full range page, base64'd, with per-key JSON fields, fits");
_Static_assert(CLIENT_TARGET_BYTES_MAX >= 3 * KV_KEY_BYTES_MAX + 256,
               "a longest key, percent-encoded, plus prefix and query fits in a target");

/* ---- errors ------------------------------------------------------------------------ */

const char *client_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case CLIENT_EINVAL:
        return "invalid argument";
    case CLIENT_ERESOLVE:
        return "host name does not resolve";
    case CLIENT_EREFUSED:
        return "connection refused";
    case CLIENT_ECONNECT:
        return "cannot connect";
    case CLIENT_ECONNTIMEOUT:
        return "connect timed out";
    case CLIENT_ETIMEDOUT:
        return "no complete response in time";
    case CLIENT_EIO:
        return "send or receive failed";
    case CLIENT_EPROTO:
        return "malformed or truncated response";
    case CLIENT_ETOOBIG:
        return "response too large";
    case CLIENT_ENOMEM:
        return "out of memory";
    default:
        return "unknown client error";
    }
}

bool client_error_is_unreachable(int rv)
{
    return rv == CLIENT_ERESOLVE || rv == CLIENT_EREFUSED || rv == CLIENT_ECONNECT ||
           rv == CLIENT_ECONNTIMEOUT;
}

/* ---- endpoint ---------------------------------------------------------------------- */

int client_endpoint_split(const char *endpoint, char *host, size_t host_cap, char *port,
                          size_t port_cap, char *errmsg, size_t errmsg_cap)
{
    CC_ASSERT(endpoint != NULL);
    CC_ASSERT(host != NULL && host_cap > 0);
    CC_ASSERT(port != NULL && port_cap > 0);
    const char *s = endpoint;
    if (strncmp(s, "https://", 8) == 0) {
        snprintf(errmsg, errmsg_cap, "https is not supported: the API speaks plain HTTP");
        return CLIENT_EINVAL;
    }
    if (strncmp(s, "http://", 7) == 0)
        s += 7;
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '/')
        n--;
    const char *h = s;
    size_t h_len = 0;
    const char *p = NULL;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close + 1 >= s + n || close[1] != ':') {
            snprintf(errmsg, errmsg_cap, "'%s': want [IPV6]:PORT", endpoint);
            return CLIENT_EINVAL;
        }
        h = s + 1;
        h_len = (size_t)(close - h);
        p = close + 2;
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++) {
            if (s[i] != ':')
                continue;
            if (colon) {
                snprintf(errmsg, errmsg_cap, "'%s': an IPv6 address needs brackets: [ADDR]:PORT",
                         endpoint);
                return CLIENT_EINVAL;
            }
            colon = s + i;
        }
        if (!colon) {
            snprintf(errmsg, errmsg_cap, "'%s': want HOST:PORT (e.g. %s)", endpoint,
                     CLIENT_DEFAULT_ENDPOINT);
            return CLIENT_EINVAL;
        }
        h_len = (size_t)(colon - s);
        p = colon + 1;
    }
    size_t p_len = (size_t)(s + n - p);
    unsigned long port_num = 0;
    for (size_t i = 0; i < p_len && i < 6; i++)
        port_num = (p[i] >= '0' && p[i] <= '9') ? port_num * 10 + (unsigned)(p[i] - '0') : 0;
    if (h_len == 0) {
        snprintf(errmsg, errmsg_cap, "'%s': the host is missing", endpoint);
        return CLIENT_EINVAL;
    }
    if (p_len == 0 || p_len > 5 || strspn(p, "0123456789") < p_len || port_num == 0 ||
        port_num > 65535) {
        snprintf(errmsg, errmsg_cap, "'%s': the port must be a number in 1..65535", endpoint);
        return CLIENT_EINVAL;
    }
    if (h_len >= host_cap || p_len >= port_cap) {
        snprintf(errmsg, errmsg_cap, "'%s': too long", endpoint);
        return CLIENT_EINVAL;
    }
    memcpy(host, h, h_len);
    host[h_len] = '\0';
    memcpy(port, p, p_len);
    port[p_len] = '\0';
    return 0;
}

/* ---- escaping ---------------------------------------------------------------------- */

size_t client_escape(const void *bytes, size_t n, bool keep_slash, char *out, size_t out_cap)
{
    static const char hex[] = "0123456789ABCDEF";
    CC_ASSERT(bytes != NULL || n == 0);
    CC_ASSERT(out != NULL);
    CC_ASSERT(n <= (SIZE_MAX - 1) / 3);
    CC_ASSERT(out_cap >= 3 * n + 1);
    const uint8_t *b = bytes;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        if (plain) {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
    return k;
}

static int client__b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long client_b64_decode(const char *s, size_t n, uint8_t *out)
{
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        int v = client__b64_value(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)k;
}

void client_print_escaped(const uint8_t *p, size_t n, bool keep_utf8)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '\\')
            fputs("\\\\", stdout);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !keep_utf8))
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

bool client_print_field(json_t *obj, const char *name, bool escape_text)
{
    json_t *s = json_object_get(obj, name);
    if (json_is_string(s)) {
        if (escape_text)
            client_print_escaped((const uint8_t *)json_string_value(s), json_string_length(s),
                                 true);
        else
            fwrite(json_string_value(s), 1, json_string_length(s), stdout);
        return true;
    }
    char b64name[64];
    snprintf(b64name, sizeof(b64name), "%s_base64", name);
    s = json_object_get(obj, b64name);
    if (!json_is_string(s))
        return false;
    size_t n = json_string_length(s);
    uint8_t *bytes = malloc(n / 4 * 3 + 3);
    long k = bytes ? client_b64_decode(json_string_value(s), n, bytes) : -1;
    if (k >= 0)
        client_print_escaped(bytes, (size_t)k, false);
    else
        fputs(json_string_value(s), stdout);
    free(bytes);
    return true;
}

/* ---- time and sockets -------------------------------------------------------------- */

static uint64_t client__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits for events on fd until deadline_ms. Returns 1 ready, 0 deadline passed, -1 poll
 * failed (errno set). EINTR restarts with the time that is left. */
static int client__poll(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = client__now_ms();
        if (now >= deadline_ms)
            return 0;
        uint64_t left = deadline_ms - now;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 1;
        if (n == 0)
            continue; /* re-check the clock: poll may wake a little early */
        if (errno != EINTR)
            return -1;
    }
}

static int client__set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* ---- connect ----------------------------------------------------------------------- */

/* Connects to one address: 0 with *fd_out set, or a CLIENT_E* code with errmsg set. */
static int client__connect_one(const struct addrinfo *ai, uint32_t connect_timeout_ms,
                               uint64_t deadline_ms, int *fd_out, char *errmsg, size_t cap)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
        snprintf(errmsg, cap, "socket: %s", strerror(errno));
        return CLIENT_ECONNECT;
    }
    int rv = 0;
    if (client__set_nonblocking(fd) != 0) {
        snprintf(errmsg, cap, "fcntl: %s", strerror(errno));
        rv = CLIENT_ECONNECT;
        goto err_after_socket;
    }
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        err = errno;
        if (err == EINPROGRESS || err == EINTR) {
            uint64_t start_ms = client__now_ms();
            uint64_t attempt_deadline = start_ms + connect_timeout_ms;
            if (attempt_deadline > deadline_ms)
                attempt_deadline = deadline_ms;
            int ready = client__poll(fd, POLLOUT, attempt_deadline);
            if (ready == 0) {
                snprintf(errmsg, cap, "connect timed out after %llu ms",
                         (unsigned long long)(attempt_deadline > start_ms
                                                  ? attempt_deadline - start_ms
                                                  : 0));
                rv = CLIENT_ECONNTIMEOUT;
                goto err_after_socket;
            }
            socklen_t len = sizeof(err);
            if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
        }
    }
    if (err == ECONNREFUSED) {
        snprintf(errmsg, cap, "connection refused");
        rv = CLIENT_EREFUSED;
        goto err_after_socket;
    }
    if (err != 0) {
        snprintf(errmsg, cap, "%s", strerror(err));
        rv = CLIENT_ECONNECT;
        goto err_after_socket;
    }
    *fd_out = fd;
    return 0;

err_after_socket:
    close(fd);
    CC_ASSERT(rv != 0);
    return rv;
}

static int client__connect(const char *host, const char *port, uint32_t connect_timeout_ms,
                           uint64_t deadline_ms, int *fd_out, char *errmsg, size_t cap)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(errmsg, cap, "cannot resolve '%s': %s", host, gai_strerror(g));
        return CLIENT_ERESOLVE;
    }
    int rv = CLIENT_ECONNECT;
    snprintf(errmsg, cap, "no address to connect to");
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (client__now_ms() >= deadline_ms) {
            snprintf(errmsg, cap, "connect timed out");
            rv = CLIENT_ECONNTIMEOUT;
            break;
        }
        rv = client__connect_one(ai, connect_timeout_ms, deadline_ms, fd_out, errmsg, cap);
        if (rv == 0)
            break;
    }
    freeaddrinfo(res);
    return rv;
}

/* ---- response parsing -------------------------------------------------------------- */

struct client__rx {
    struct client_response *resp;
    size_t body_cap; /* bytes allocated at resp->body */
    size_t max;      /* response_bytes_max */
    bool skip_body;  /* a HEAD request: the response has none, whatever it says */
    char field[16];  /* the current header name, enough to recognise Content-Type */
    size_t field_len;
    bool field_long; /* the name did not fit: not one we want */
    bool in_value;   /* the last callback was a header value */
    bool is_ct;      /* the current value is Content-Type's */
    size_t ct_len;   /* bytes in resp->content_type */
    bool done;       /* a final (non-1xx) message is complete */
    int err;         /* set by a callback that stopped the parser */
};

static int client__on_message_begin(http_parser *p)
{
    struct client__rx *rx = p->data;
    rx->resp->status = 0;
    rx->resp->content_type[0] = '\0';
    rx->resp->body_len = 0;
    rx->ct_len = 0;
    rx->field_len = 0;
    rx->field_long = false;
    rx->in_value = false;
    return 0;
}

static int client__on_header_field(http_parser *p, const char *at, size_t n)
{
    struct client__rx *rx = p->data;
    if (rx->in_value) { /* a new field starts */
        rx->in_value = false;
        rx->field_len = 0;
        rx->field_long = false;
    }
    if (rx->field_len + n >= sizeof(rx->field)) {
        rx->field_long = true;
        return 0;
    }
    memcpy(rx->field + rx->field_len, at, n);
    rx->field_len += n;
    rx->field[rx->field_len] = '\0';
    return 0;
}

static int client__on_header_value(http_parser *p, const char *at, size_t n)
{
    struct client__rx *rx = p->data;
    if (!rx->in_value) {
        rx->in_value = true;
        rx->field[rx->field_len] = '\0';
        rx->is_ct = !rx->field_long && strcasecmp(rx->field, "content-type") == 0;
        if (rx->is_ct)
            rx->ct_len = 0;
    }
    if (!rx->is_ct)
        return 0;
    size_t room = sizeof(rx->resp->content_type) - 1 - rx->ct_len;
    size_t take = n < room ? n : room; /* longer types are truncated: we only compare */
    memcpy(rx->resp->content_type + rx->ct_len, at, take);
    rx->ct_len += take;
    rx->resp->content_type[rx->ct_len] = '\0';
    return 0;
}

static int client__on_headers_complete(http_parser *p)
{
    struct client__rx *rx = p->data;
    rx->resp->status = (int)p->status_code;
    if (rx->skip_body)
        return 1; /* http-parser: this message has no body */
    if (p->content_length != ULLONG_MAX && p->content_length > rx->max) {
        rx->err = CLIENT_ETOOBIG;
        return -1;
    }
    return 0;
}

static int client__on_body(http_parser *p, const char *at, size_t n)
{
    struct client__rx *rx = p->data;
    struct client_response *r = rx->resp;
    if (n > rx->max - r->body_len) {
        rx->err = CLIENT_ETOOBIG;
        return -1;
    }
    size_t need = r->body_len + n + 1; /* + NUL */
    if (need > rx->body_cap) {
        size_t cap = rx->body_cap ? rx->body_cap : CLIENT_BODY_BYTES_INITIAL;
        while (cap < need)
            cap = cap > (rx->max + 1) / 2 ? rx->max + 1 : cap * 2;
        uint8_t *b = realloc(r->body, cap);
        if (!b) {
            rx->err = CLIENT_ENOMEM;
            return -1;
        }
        r->body = b;
        rx->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    return 0;
}

static int client__on_message_complete(http_parser *p)
{
    struct client__rx *rx = p->data;
    if (p->status_code / 100 == 1)
        return 0; /* an interim response (100 Continue): the real one follows */
    rx->done = true;
    http_parser_pause(p, 1); /* stop here: anything after it is not ours */
    return 0;
}

static const http_parser_settings client__parser_settings = {
    .on_message_begin = client__on_message_begin,
    .on_header_field = client__on_header_field,
    .on_header_value = client__on_header_value,
    .on_headers_complete = client__on_headers_complete,
    .on_body = client__on_body,
    .on_message_complete = client__on_message_complete,
};

/* ---- exchange ---------------------------------------------------------------------- */

/* Sends n bytes by the deadline: 0, CLIENT_ETIMEDOUT or CLIENT_EIO (errmsg set). */
static int client__send_all(int fd, const void *buf, size_t n, uint64_t deadline_ms, char *errmsg,
                            size_t cap)
{
    const char *b = buf;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ready = client__poll(fd, POLLOUT, deadline_ms);
            if (ready > 0)
                continue;
            if (ready == 0) {
                snprintf(errmsg, cap, "timed out sending the request");
                return CLIENT_ETIMEDOUT;
            }
        }
        snprintf(errmsg, cap, "send: %s", strerror(errno));
        return CLIENT_EIO;
    }
    return 0;
}

/* Reads and parses until the response is complete, by the deadline. */
static int client__receive(int fd, http_parser *parser, struct client__rx *rx, uint32_t timeout_ms,
                           uint64_t deadline_ms, char *errmsg, size_t cap)
{
    char buf[CLIENT_READ_BYTES];
    while (!rx->done) {
        int ready = client__poll(fd, POLLIN, deadline_ms);
        if (ready == 0) {
            snprintf(errmsg, cap, "no complete response within %u ms", (unsigned)timeout_ms);
            return CLIENT_ETIMEDOUT;
        }
        ssize_t n = ready > 0 ? recv(fd, buf, sizeof(buf), 0) : -1;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            snprintf(errmsg, cap, "receive: %s", strerror(errno));
            return CLIENT_EIO;
        }
        /* Returns short of n only on an error or our pause; both are checked below. */
        http_parser_execute(parser, &client__parser_settings, buf, (size_t)n);
        enum http_errno e = HTTP_PARSER_ERRNO(parser);
        if (rx->err == CLIENT_ETOOBIG) {
            snprintf(errmsg, cap, "the response body is over the limit of %zu bytes", rx->max);
            return CLIENT_ETOOBIG;
        }
        if (rx->err != 0) {
            snprintf(errmsg, cap, "%s", client_strerror(rx->err));
            return rx->err;
        }
        if (n == 0 && !rx->done) { /* EOF; a close-delimited body completed above */
            snprintf(errmsg, cap,
                     "the server closed the connection before the response "
                     "was complete");
            return CLIENT_EPROTO;
        }
        if (e != HPE_OK && !(e == HPE_PAUSED && rx->done)) {
            snprintf(errmsg, cap, "malformed response: %s", http_errno_description(e));
            return CLIENT_EPROTO;
        }
    }
    return 0;
}

int client_do(const char *endpoint, const struct client_opts *opts,
              const struct client_request *req, struct client_response *resp, char *errmsg,
              size_t errmsg_cap)
{
    CC_ASSERT(endpoint != NULL);
    CC_ASSERT(opts != NULL);
    CC_ASSERT(opts->timeout_ms > 0);
    CC_ASSERT(opts->response_bytes_max <= CLIENT_RESPONSE_BYTES_MAX);
    CC_ASSERT(req != NULL && req->method != NULL && req->target != NULL);
    CC_ASSERT(req->body != NULL || req->body_len == 0);
    CC_ASSERT(resp != NULL);
    memset(resp, 0, sizeof(*resp));
    char scratch[8];
    if (!errmsg || errmsg_cap == 0) { /* detail not wanted */
        errmsg = scratch;
        errmsg_cap = sizeof(scratch);
    }
    errmsg[0] = '\0';

    int rv = 0;
    size_t target_len = strlen(req->target);
    size_t type_len = req->content_type ? strlen(req->content_type) : 0;
    if (target_len >= CLIENT_TARGET_BYTES_MAX) {
        snprintf(errmsg, errmsg_cap, "the request target is %zu bytes; the limit is %u", target_len,
                 CLIENT_TARGET_BYTES_MAX - 1);
        return CLIENT_EINVAL;
    }
    if (req->target[0] != '/' || strpbrk(req->target, " \r\n") ||
        strlen(req->method) >= CLIENT_METHOD_BYTES_MAX || strpbrk(req->method, " \r\n") ||
        type_len >= CLIENT_CONTENT_TYPE_BYTES ||
        (req->content_type && strpbrk(req->content_type, "\r\n"))) {
        snprintf(errmsg, errmsg_cap, "malformed request line or header");
        return CLIENT_EINVAL;
    }
    char host[CLIENT_ENDPOINT_BYTES], port[8];
    rv =
        client_endpoint_split(endpoint, host, sizeof(host), port, sizeof(port), errmsg, errmsg_cap);
    if (rv != 0)
        return rv;

    uint64_t deadline_ms = client__now_ms() + opts->timeout_ms;
    uint32_t connect_ms =
        opts->connect_timeout_ms ? opts->connect_timeout_ms : CLIENT_CONNECT_TIMEOUT_MS;
    int fd = -1;
    rv = client__connect(host, port, connect_ms, deadline_ms, &fd, errmsg, errmsg_cap);
    if (rv != 0)
        return rv;

    size_t head_cap = target_len + strlen(host) + type_len + CLIENT_HEAD_EXTRA_BYTES;
    char *head = malloc(head_cap);
    if (!head) {
        snprintf(errmsg, errmsg_cap, "out of memory");
        rv = CLIENT_ENOMEM;
        goto err_after_fd;
    }
    bool v6 = strchr(host, ':') != NULL;
    bool with_length =
        req->body_len > 0 || strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0;
    int head_len = snprintf(head, head_cap,
                            "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: conclave-cli\r\n"
                            "Accept: */*\r\nConnection: close\r\n",
                            req->method, req->target, v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (req->content_type)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len, "Content-Type: %s\r\n",
                             req->content_type);
    if (with_length)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len,
                             "Content-Length: %zu\r\n", req->body_len);
    head_len += snprintf(head + head_len, head_cap - (size_t)head_len, "\r\n");
    CC_ASSERT(head_len > 0 && (size_t)head_len < head_cap);

    char send_msg[CLIENT_ERRMSG_BYTES] = "";
    int send_rv =
        client__send_all(fd, head, (size_t)head_len, deadline_ms, send_msg, sizeof(send_msg));
    if (send_rv == 0 && req->body_len > 0)
        send_rv =
            client__send_all(fd, req->body, req->body_len, deadline_ms, send_msg, sizeof(send_msg));
    free(head);
    if (send_rv == CLIENT_ETIMEDOUT) {
        snprintf(errmsg, errmsg_cap, "%s", send_msg);
        rv = send_rv;
        goto err_after_fd;
    }

    /* Read even after a send error: the server may have answered early and closed. */
    struct client__rx rx = {
        .resp = resp,
        .max = opts->response_bytes_max ? opts->response_bytes_max : CLIENT_RESPONSE_BYTES_MAX,
        .skip_body = strcmp(req->method, "HEAD") == 0,
    };
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &rx;
    rv = client__receive(fd, &parser, &rx, opts->timeout_ms, deadline_ms, errmsg, errmsg_cap);
    if (rv != 0 && send_rv != 0) {
        snprintf(errmsg, errmsg_cap, "%s", send_msg); /* the root cause */
        rv = send_rv;
    }
    if (rv != 0)
        goto err_after_body;
    if (!resp->body) {
        resp->body = malloc(1);
        if (!resp->body) {
            snprintf(errmsg, errmsg_cap, "out of memory");
            rv = CLIENT_ENOMEM;
            goto err_after_body;
        }
    }
    resp->body[resp->body_len] = '\0';
    close(fd);
    return 0;

err_after_body:
    client_response_free(resp);
    memset(resp, 0, sizeof(*resp));
err_after_fd:
    close(fd);
    CC_ASSERT(rv != 0);
    return rv;
}

void client_response_free(struct client_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* ---- streaming exchange ------------------------------------------------------------ */

/* client__rx first, so the shared header callbacks (which see a client__rx) work. */
struct client__srx {
    struct client__rx rx;
    client_body_cb body_cb;
    void *arg;
    bool streaming; /* a 2xx head arrived: the body goes to body_cb */
    bool head_done;
    int cb_rv; /* body_cb's stop value */
};

static int client__s_on_headers_complete(http_parser *p)
{
    struct client__srx *s = p->data;
    if (p->status_code / 100 == 1)
        return 0; /* interim: the real head follows */
    s->head_done = true;
    s->streaming = p->status_code / 100 == 2;
    return client__on_headers_complete(p);
}

static int client__s_on_body(http_parser *p, const char *at, size_t n)
{
    struct client__srx *s = p->data;
    if (!s->streaming)
        return client__on_body(p, at, n);
    int rv = s->body_cb(s->arg, (const uint8_t *)at, n);
    if (rv > 0) {
        s->cb_rv = rv;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings client__stream_settings = {
    .on_message_begin = client__on_message_begin,
    .on_header_field = client__on_header_field,
    .on_header_value = client__on_header_value,
    .on_headers_complete = client__s_on_headers_complete,
    .on_body = client__s_on_body,
    .on_message_complete = client__on_message_complete,
};

/* Reads until the message ends, body_cb stops, or a deadline: the head's by
 * head_deadline_ms, then (streaming) silence_ms after the last bytes. */
static int client__stream_receive(int fd, http_parser *parser, struct client__srx *s,
                                  uint64_t head_deadline_ms, uint32_t silence_ms, char *errmsg,
                                  size_t cap)
{
    char buf[CLIENT_READ_BYTES];
    uint64_t deadline_ms = head_deadline_ms;
    while (!s->rx.done && s->cb_rv == 0) {
        int ready = client__poll(fd, POLLIN, deadline_ms);
        if (ready == 0) {
            snprintf(errmsg, cap,
                     s->streaming ? "no bytes from the server for %u ms"
                                  : "no complete response within %u ms",
                     (unsigned)silence_ms);
            return CLIENT_ETIMEDOUT;
        }
        ssize_t n = ready > 0 ? recv(fd, buf, sizeof(buf), 0) : -1;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            snprintf(errmsg, cap, "receive: %s", strerror(errno));
            return CLIENT_EIO;
        }
        http_parser_execute(parser, &client__stream_settings, buf, (size_t)n);
        enum http_errno e = HTTP_PARSER_ERRNO(parser);
        if (s->rx.err == CLIENT_ETOOBIG) {
            snprintf(errmsg, cap, "the response body is over the limit of %zu bytes", s->rx.max);
            return CLIENT_ETOOBIG;
        }
        if (s->rx.err != 0) {
            snprintf(errmsg, cap, "%s", client_strerror(s->rx.err));
            return s->rx.err;
        }
        if (e != HPE_OK && !(e == HPE_PAUSED && (s->rx.done || s->cb_rv != 0))) {
            snprintf(errmsg, cap, "malformed response: %s", http_errno_description(e));
            return CLIENT_EPROTO;
        }
        if (n == 0 && !s->rx.done && s->cb_rv == 0) {
            if (s->streaming)
                return 0; /* a close-delimited stream (HTTP/1.0 framing) ended */
            snprintf(errmsg, cap,
                     "the server closed the connection before the response was complete");
            return CLIENT_EPROTO;
        }
        if (s->streaming)
            deadline_ms = client__now_ms() + silence_ms;
    }
    return s->cb_rv;
}

int client_stream(const char *endpoint, const struct client_opts *opts,
                  const struct client_request *req, struct client_response *resp,
                  client_body_cb body_cb, void *arg, char *errmsg, size_t errmsg_cap)
{
    CC_ASSERT(endpoint != NULL && opts != NULL && opts->timeout_ms > 0);
    CC_ASSERT(opts->response_bytes_max <= CLIENT_RESPONSE_BYTES_MAX);
    CC_ASSERT(req != NULL && req->method != NULL && req->target != NULL);
    CC_ASSERT(req->body != NULL || req->body_len == 0);
    CC_ASSERT(resp != NULL && body_cb != NULL);
    memset(resp, 0, sizeof(*resp));
    char scratch[8];
    if (!errmsg || errmsg_cap == 0) {
        errmsg = scratch;
        errmsg_cap = sizeof(scratch);
    }
    errmsg[0] = '\0';
    size_t target_len = strlen(req->target);
    size_t type_len = req->content_type ? strlen(req->content_type) : 0;
    if (target_len >= CLIENT_TARGET_BYTES_MAX || req->target[0] != '/' ||
        strpbrk(req->target, " \r\n") || strlen(req->method) >= CLIENT_METHOD_BYTES_MAX ||
        strpbrk(req->method, " \r\n") || type_len >= CLIENT_CONTENT_TYPE_BYTES ||
        (req->content_type && strpbrk(req->content_type, "\r\n"))) {
        snprintf(errmsg, errmsg_cap, "malformed request line or header");
        return CLIENT_EINVAL;
    }
    char host[CLIENT_ENDPOINT_BYTES], port[8];
    int rv =
        client_endpoint_split(endpoint, host, sizeof(host), port, sizeof(port), errmsg, errmsg_cap);
    if (rv != 0)
        return rv;
    uint64_t deadline_ms = client__now_ms() + opts->timeout_ms;
    uint32_t connect_ms =
        opts->connect_timeout_ms ? opts->connect_timeout_ms : CLIENT_CONNECT_TIMEOUT_MS;
    int fd = -1;
    rv = client__connect(host, port, connect_ms, deadline_ms, &fd, errmsg, errmsg_cap);
    if (rv != 0)
        return rv;
    size_t head_cap = target_len + strlen(host) + type_len + CLIENT_HEAD_EXTRA_BYTES;
    char *head = malloc(head_cap);
    if (!head) {
        snprintf(errmsg, errmsg_cap, "out of memory");
        rv = CLIENT_ENOMEM;
        goto err_after_fd;
    }
    bool v6 = strchr(host, ':') != NULL;
    int head_len = snprintf(head, head_cap,
                            "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: conclave-cli\r\n"
                            "Accept: text/event-stream\r\nConnection: close\r\n",
                            req->method, req->target, v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (req->content_type)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len, "Content-Type: %s\r\n",
                             req->content_type);
    if (req->body_len > 0)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len,
                             "Content-Length: %zu\r\n", req->body_len);
    head_len += snprintf(head + head_len, head_cap - (size_t)head_len, "\r\n");
    CC_ASSERT(head_len > 0 && (size_t)head_len < head_cap);
    rv = client__send_all(fd, head, (size_t)head_len, deadline_ms, errmsg, errmsg_cap);
    if (rv == 0 && req->body_len > 0)
        rv = client__send_all(fd, req->body, req->body_len, deadline_ms, errmsg, errmsg_cap);
    free(head);
    if (rv != 0)
        goto err_after_fd;
    struct client__srx s = {
        .rx = {.resp = resp,
               .max =
                   opts->response_bytes_max ? opts->response_bytes_max : CLIENT_RESPONSE_BYTES_MAX},
        .body_cb = body_cb,
        .arg = arg,
    };
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &s;
    rv = client__stream_receive(fd, &parser, &s, deadline_ms, opts->timeout_ms, errmsg, errmsg_cap);
    if (rv < 0)
        goto err_after_body;
    if (!s.streaming) {
        if (!resp->body && !(resp->body = malloc(1))) {
            snprintf(errmsg, errmsg_cap, "out of memory");
            rv = CLIENT_ENOMEM;
            goto err_after_body;
        }
        resp->body[resp->body_len] = '\0';
    }
    close(fd);
    return rv;

err_after_body:
    client_response_free(resp);
    memset(resp, 0, sizeof(*resp));
err_after_fd:
    close(fd);
    CC_ASSERT(rv < 0);
    return rv;
}

/* ---- cli glue ---------------------------------------------------------------------- */

/* Matches "--name VALUE", "--name=VALUE" (and "-oVALUE" for short names) at argv[*i];
 * on a match sets *value (NULL when VALUE is missing) and advances *i past it. */
static bool client__flag(const char *name, int argc, char **argv, int *i, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return false;
    if (a[n] == '\0') {
        *value = *i + 1 < argc ? argv[++*i] : NULL;
        return true;
    }
    if (a[n] == '=' || (name[1] != '-' && n == 2)) { /* --x=V, or -oV */
        *value = a + n + (a[n] == '=');
        return true;
    }
    return false;
}

bool client_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    CC_ASSERT(max <= INT64_MAX && min <= max);
    if (!s || s[0] < '0' || s[0] > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int client_cli_init(struct client_cli *cli, const char *prog, int *argc, char **argv, char *errmsg,
                    size_t errmsg_cap)
{
    CC_ASSERT(cli != NULL && prog != NULL);
    CC_ASSERT(argc != NULL && *argc >= 1 && argv != NULL);
    memset(cli, 0, sizeof(*cli));
    cli->prog = prog;
    cli->timeout_ms = CLIENT_TIMEOUT_MS_DEFAULT;
    const char *endpoint = getenv(CLIENT_ENDPOINT_ENV);
    const char *endpoint_from = "$" CLIENT_ENDPOINT_ENV;
    if (!endpoint || !endpoint[0]) {
        endpoint = CLIENT_DEFAULT_ENDPOINT;
        endpoint_from = "the default endpoint";
    }
    int out = 1;
    int i = 1;
    for (; i < *argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--") == 0)
            break;
        if (client__flag("--endpoint", *argc, argv, &i, &v)) {
            if (!v || !v[0]) {
                snprintf(errmsg, errmsg_cap, "--endpoint needs HOST:PORT");
                return CLIENT_EXIT_USAGE;
            }
            endpoint = v;
            endpoint_from = "--endpoint";
        } else if (client__flag("--output", *argc, argv, &i, &v) ||
                   client__flag("-o", *argc, argv, &i, &v)) {
            if (v && strcmp(v, "json") == 0) {
                cli->json = true;
            } else if (v && strcmp(v, "text") == 0) {
                cli->json = false;
            } else {
                snprintf(errmsg, errmsg_cap, "-o wants json or text, not '%s'", v ? v : "");
                return CLIENT_EXIT_USAGE;
            }
        } else if (client__flag("--timeout-ms", *argc, argv, &i, &v)) {
            char *end = NULL;
            unsigned long long ms = v ? strtoull(v, &end, 10) : 0;
            if (!v || !v[0] || *end || v[0] == '-' || ms == 0 || ms > CLIENT_TIMEOUT_MS_MAX) {
                snprintf(errmsg, errmsg_cap, "--timeout-ms wants a number of ms in 1..%u",
                         CLIENT_TIMEOUT_MS_MAX);
                return CLIENT_EXIT_USAGE;
            }
            cli->timeout_ms = (uint32_t)ms;
        } else {
            argv[out++] = argv[i];
        }
    }
    for (; i < *argc; i++) /* "--" and what follows it */
        argv[out++] = argv[i];
    argv[out] = NULL;
    *argc = out;

    /* a comma-separated list: each must be a valid HOST:PORT */
    for (const char *p = endpoint;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (cli->n_endpoints == CLIENT_CLI_ENDPOINTS_MAX) {
            snprintf(errmsg, errmsg_cap, "%s lists more than %u endpoints", endpoint_from,
                     CLIENT_CLI_ENDPOINTS_MAX);
            return CLIENT_EXIT_USAGE;
        }
        if (len == 0 || len >= CLIENT_ENDPOINT_BYTES) {
            snprintf(errmsg, errmsg_cap, "bad endpoint from %s: %s", endpoint_from,
                     len ? "longer than a HOST:PORT can be" : "an empty entry in the list");
            return CLIENT_EXIT_USAGE;
        }
        char *ep = cli->endpoints[cli->n_endpoints];
        memcpy(ep, p, len);
        ep[len] = '\0';
        char host[CLIENT_ENDPOINT_BYTES], port[8], why[CLIENT_ERRMSG_BYTES];
        if (client_endpoint_split(ep, host, sizeof(host), port, sizeof(port), why,
                                  sizeof(why)) != 0) {
            snprintf(errmsg, errmsg_cap, "bad endpoint '%s' from %s: %s", ep, endpoint_from,
                     why);
            return CLIENT_EXIT_USAGE;
        }
        cli->n_endpoints++;
        if (!comma)
            break;
        p = comma + 1;
    }
    snprintf(cli->endpoint, sizeof(cli->endpoint), "%s", cli->endpoints[0]);
    return 0;
}

void client_error_line(const struct client_response *resp, char *out, size_t out_cap)
{
    CC_ASSERT(resp != NULL);
    CC_ASSERT(out != NULL && out_cap > 0);
    json_t *j =
        resp->body_len ? json_loadb((const char *)resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *e = j ? json_object_get(j, "error") : NULL;
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *code = json_string_value(json_object_get(e, "code"));
    if (msg) {
        snprintf(out, out_cap, "%s (%d %s)", msg, resp->status, code ? code : "error");
        json_decref(j);
        return;
    }
    json_decref(j);
    char shown[CLIENT_ERROR_BODY_SHOWN + 1];
    size_t n = 0;
    for (size_t i = 0; i < resp->body_len && n < CLIENT_ERROR_BODY_SHOWN; i++) {
        uint8_t c = resp->body[i];
        char ch = '.';
        if (c >= 0x20 && c < 0x7f)
            ch = (char)c;
        else if (c == '\n')
            ch = ' ';
        shown[n++] = ch;
    }
    while (n > 0 && shown[n - 1] == ' ')
        n--;
    shown[n] = '\0';
    snprintf(out, out_cap, "HTTP %d%s%s%s", resp->status, n ? ": " : "", shown,
             resp->body_len > CLIENT_ERROR_BODY_SHOWN ? "..." : "");
}

int client_cli_call(const struct client_cli *cli, const char *what,
                    const struct client_request *req, struct client_response *resp)
{
    CC_ASSERT(cli != NULL && what != NULL);
    char msg[CLIENT_ERRMSG_BYTES];
    struct client_opts opts = {.timeout_ms = cli->timeout_ms};
    uint32_t n = cli->n_endpoints ? cli->n_endpoints : 1;
    const char *ep = cli->endpoint;
    int rv = 0;
    for (uint32_t i = 0; i < n; i++) { /* on to the next only while nothing was sent */
        ep = cli->n_endpoints ? cli->endpoints[i] : cli->endpoint;
        rv = client_do(ep, &opts, req, resp, msg, sizeof(msg));
        if (rv == 0 || !client_error_is_unreachable(rv))
            break;
        if (i + 1 < n)
            fprintf(stderr, "%s: cannot reach %s (%s); trying %s\n", what, ep, msg,
                    cli->endpoints[i + 1]);
    }
    if (rv != 0 && client_error_is_unreachable(rv)) {
        fprintf(stderr, "%s: cannot reach Conclave at %s: %s%s\n", what,
                n > 1 ? "any endpoint" : ep, msg,
                rv == CLIENT_EREFUSED ? " \u2014 is `conclave serve` running?" : "");
        return CLIENT_EXIT_UNREACHABLE;
    }
    if (rv != 0) {
        bool is_read = strcmp(req->method, "GET") == 0;
        fprintf(stderr, "%s: %s: %s%s\n", what, ep, msg,
                rv == CLIENT_ETIMEDOUT && !is_read ? "; the change may or may not have been applied"
                                                   : "");
        return CLIENT_EXIT_FAIL;
    }
    if (resp->status / 100 != 2) {
        char line[CLIENT_ERRMSG_BYTES];
        client_error_line(resp, line, sizeof(line));
        fprintf(stderr, "%s: %s\n", what, line);
        client_response_free(resp);
        return CLIENT_EXIT_FAIL;
    }
    return CLIENT_EXIT_OK;
}

void client_cli_print_body(const struct client_response *resp)
{
    CC_ASSERT(resp != NULL);
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body_len == 0 || resp->body[resp->body_len - 1] != '\n')
        fputc('\n', stdout);
}
