/* http.h -- the HTTP/1.1 server every Conclave HTTP surface sits on (/v1 API, /metrics,
 * watches). It parses requests with http-parser, runs on one libuv loop, and hands each
 * complete request to one handler, which answers now or later.
 *
 * What a connection does (docs/http.md has the user-facing version):
 *   - Keep-alive and pipelining. Requests on one connection reach the handler in order,
 *     and responses leave in request order even when a later request is answered first:
 *     its bytes wait until every earlier response has been written. At most
 *     pipeline_max requests per connection are read but unanswered; beyond that the
 *     server stops reading the socket (TCP backpressure) instead of failing.
 *   - HTTP/1.0, "Connection: close", "Expect: 100-continue" (answered with an interim
 *     100 unless the declared body is already too large), chunked request bodies.
 *   - Every limit below has its own status and a JSON error body naming the limit:
 *     431 header bytes/count, 414 URL, 413 body, 408 slow request, 503 connections.
 *     A malformed request gets 400 with a JSON error naming what was wrong, then the
 *     connection closes. Nothing a socket sends can crash the server or make it
 *     allocate beyond the limits; a body buffer grows only as bytes arrive.
 *   - Responses always carry Content-Length (or chunked encoding for streams) and
 *     "Server: conclave".
 *
 * Threading: everything runs on the loop's thread; no function is thread-safe.
 *
 * Ownership and lifetimes:
 *   - struct http_server is allocated by http_server_start() and freed by the server
 *     after http_server_stop() closed every handle, just before done_cb runs.
 *   - struct http_req and everything it points to belong to the server. The handler
 *     may read (and edit in place) the public fields until it finishes the request.
 *   - Every request the handler receives is finished exactly once, by http_respond*()
 *     or by http_stream_end() — also when the client has gone away (see
 *     http_req_on_close): then the call sends nothing and only frees the request. After
 *     that call the request must not be touched. A handler that never finishes a
 *     request leaks it; the server cannot free what the handler may still hold.
 *   - Bodies passed to http_respond() and http_stream_write() stay the caller's; they
 *     are copied before the call returns. http_respond_json() takes the json_t.
 *
 * Errors are negative ints in the HTTP range (-1901...), named below; http_strerror()
 * gives a phrase. Sections: limits | errors | requests | server | responses | streams |
 * helpers | socketless feeder (tests, fuzzing).
 */
#ifndef CC_API_HTTP_H
#define CC_API_HTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <jansson.h>
#include <uv.h>

/* ---- limits ------------------------------------------------------------------------
 * Each is the default and the ceiling of the matching struct http_limits field; a
 * server may lower them (tests do), never raise them. */

#define HTTP_HEADER_BYTES_MAX                                             \
    (32u << 10)              /* 431: header names + values of one request \
                                (nginx allows 4 x 8 KiB); bounds its buffer */
#define HTTP_HEADERS_MAX 64u /* 431: header fields per request; fixed index */
#define HTTP_URL_BYTES_MAX                                      \
    (16u << 10) /* 414: request target; a 4 KiB key (kv.h's     \
                   KV_KEY_BYTES_MAX) percent-encoded at 3 bytes \
                   a byte, plus prefix and query */
#define HTTP_BODY_BYTES_MAX                                 \
    (4u << 20) /* 413: one request body; a 1 MiB value (the \
                  Raft entry limit) even base64'd inside JSON */
#define HTTP_BODY_BYTES_TOTAL_MAX                               \
    (256u << 20)             /* 503: request bodies held by all \
                                connections together (memory bound) */
#define HTTP_CONNS_MAX 1024u /* open client connections; beyond: accept, 503, close */
#define HTTP_REJECTS_MAX                                 \
    64u /* connections being refused with a 503 at once; \
           beyond that they are closed without a response */
#define HTTP_PIPELINE_MAX                                       \
    16u /* requests read but unanswered per connection; beyond: \
           stop reading (backpressure) */
#define HTTP_OUT_BYTES_HIGH_WATER                            \
    (1u << 20) /* unsent response bytes per connection above \
                  which no further request is read: a client \
                  that pipelines but never reads cannot make \
                  the server queue unbounded responses */
#define HTTP_STREAM_BUFFER_BYTES_MAX                    \
    (1u << 20) /* unsent bytes a stream write may leave \
                  queued on its connection; HTTP_ESLOW */
#define HTTP_IDLE_TIMEOUT_MS                                 \
    60000u /* keep-alive connection with nothing to do, or a \
              client that stopped reading our output: closed */
#define HTTP_REQUEST_TIMEOUT_MS                                                 \
    30000u                      /* 408: from a request's first byte to its last \
                                   (slow-loris); 1 MiB at 35 KiB/s still fits */
#define HTTP_TIMEOUT_MS_MIN 10u /* lowest settable timeout (tests) */
#define HTTP_LINGER_MS                                                 \
    2000u /* after the last response: drain the client's unread bytes  \
             this long so our close sends FIN, not RST, and the client \
             gets to read the response */
#define HTTP_READ_BYTES                                                                     \
    (16u << 10)                           /* per-connection receive buffer; also bounds the \
                                             parse work of one read callback */
#define HTTP_RESP_HEADERS_BYTES_MAX 4096u /* extra response headers (http_respond_header) */
#define HTTP_ERRMSG_BYTES           512u  /* http_respond_error message; longer is truncated */
#define HTTP_ADDR_BYTES_MAX         262u  /* "host:port" + NUL: 253-byte DNS name, [], port */

_Static_assert(HTTP_HEADER_BYTES_MAX + HTTP_URL_BYTES_MAX + 1024 <= HTTP_MAX_HEADER_SIZE,
               "http-parser's own head limit must not cut in before ours (431 vs 414)");
_Static_assert(HTTP_STREAM_BUFFER_BYTES_MAX <= HTTP_OUT_BYTES_HIGH_WATER,
               "a full stream buffer must not by itself be enough to stall reading");
_Static_assert(HTTP_BODY_BYTES_MAX <= HTTP_BODY_BYTES_TOTAL_MAX,
               "one largest body must fit the server-wide budget");
_Static_assert(HTTP_REJECTS_MAX <= HTTP_CONNS_MAX, "refusals are a small side channel");

/* Per-server limits; http_limits_default() fills every field with its HTTP_*_MAX. */
struct http_limits {
    uint32_t header_bytes_max;        /* [256, HTTP_HEADER_BYTES_MAX] */
    uint32_t url_bytes_max;           /* [16, HTTP_URL_BYTES_MAX] */
    uint64_t body_bytes_max;          /* [0, HTTP_BODY_BYTES_MAX] */
    uint32_t conns_max;               /* [1, HTTP_CONNS_MAX] */
    uint32_t pipeline_max;            /* [1, HTTP_PIPELINE_MAX] */
    uint32_t stream_buffer_bytes_max; /* [1024, HTTP_STREAM_BUFFER_BYTES_MAX] */
    uint32_t idle_timeout_ms;         /* [HTTP_TIMEOUT_MS_MIN, HTTP_IDLE_TIMEOUT_MS] */
    uint32_t request_timeout_ms;      /* [HTTP_TIMEOUT_MS_MIN, HTTP_REQUEST_TIMEOUT_MS] */
};
void http_limits_default(struct http_limits *lim);

/* ---- errors (negative, in the HTTP range) ------------------------------------------ */

enum {
    HTTP_EINVAL = -1901,    /* bad argument (errmsg / the message says which) */
    HTTP_EADDR = -1902,     /* malformed "host:port" or unresolvable host */
    HTTP_ELISTEN = -1903,   /* bind or listen failed */
    HTTP_ENOMEM = -1904,    /* allocation failed */
    HTTP_ECLOSED = -1905,   /* the client went away; the request only awaits its finish */
    HTTP_ESLOW = -1906,     /* stream: client reads too slowly, stream_buffer_bytes_max
                               reached; the caller should end the stream */
    HTTP_ESTATE = -1907,    /* call out of order (header after respond, write before begin) */
    HTTP_ENOTFOUND = -1908, /* query parameter absent */
    HTTP_ETOOLONG = -1909,  /* decoded value does not fit the caller's buffer */
    HTTP_EBADVALUE = -1910, /* malformed percent-escape, or not a bool / u64 */
    HTTP_EFULL = -1911,     /* extra response headers over HTTP_RESP_HEADERS_BYTES_MAX */
};
const char *http_strerror(int rv);

/* ---- requests ---------------------------------------------------------------------- */

struct http_header {
    const char *name;  /* as sent, NUL-terminated; compare case-insensitively */
    const char *value; /* as sent minus surrounding whitespace, NUL-terminated */
};

/* One parsed request. Strings are NUL-terminated and also carry lengths, because a
 * decoded path may hold any byte (binary keys arrive as %00). */
struct http_req {
    int method;                /* enum http_method: HTTP_GET, HTTP_PUT, ... */
    unsigned short http_major; /* always 1 (other majors get 505) */
    unsigned short http_minor; /* as sent: 0 means HTTP/1.0 */
    char *path;                /* percent-decoded ('+' stays '+'); may contain NUL */
    size_t path_len;
    const char *path_raw; /* as sent, e.g. "/v1/kv/a%2Fb"; route on this when a
                             decoded '/' must not split a segment */
    size_t path_raw_len;
    const char *query; /* raw text after '?', NULL when there was no '?' */
    size_t query_len;
    const struct http_header *headers;
    uint32_t n_headers;
    uint8_t *body; /* NULL when body_len == 0; else body[body_len] == 0 */
    size_t body_len;
    bool keep_alive; /* false: the connection closes after this response */
    uint64_t id;     /* per server, counts from 1; for logs */
};

/* The first header with this name (case-insensitive), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);

/* Called once per request, in request order per connection. The handler finishes req
 * now or later with exactly one http_respond*() or http_stream_end(). It may call any
 * function here, http_server_stop() included. */
typedef void (*http_handler_fn)(struct http_req *req, void *arg);

/* Registers cb to run once if the client goes away (disconnect, reset, server stop)
 * before req is finished, so async work can be cancelled. req stays valid after cb:
 * the handler must still finish it (http_respond*() or http_stream_end() then only
 * frees it), from inside cb or later, e.g. when the cancelled Raft proposal reports.
 * A second call replaces the first. Returns 0, or HTTP_ECLOSED when the client is
 * already gone (cb will not run). */
int http_req_on_close(struct http_req *req, void (*cb)(struct http_req *req, void *arg), void *arg);

/* True once the client has gone away; every response call is then a no-op. */
bool http_req_is_closed(const struct http_req *req);

/* ---- server ------------------------------------------------------------------------ */

struct http_server;

struct http_server_stats {
    uint64_t conns_accepted;   /* connections served */
    uint64_t conns_refused;    /* over conns_max: 503 (or bare close past REJECTS_MAX) */
    uint64_t requests;         /* handed to the handler */
    uint64_t errors_sent;      /* 4xx/5xx the server itself sent (parse errors, limits) */
    uint64_t timeouts_request; /* 408s */
    uint64_t timeouts_idle;    /* idle keep-alive connections closed */
    uint64_t timeouts_stalled; /* connections closed because the client stopped reading */
    uint64_t client_aborts;    /* requests whose client went away before the finish */
    uint64_t stream_slow;      /* HTTP_ESLOW returned */
    uint32_t n_conns;          /* open client connections now */
};

/* One finished request, for access logs; valid only during the call. Status 499 means
 * the client went away first (nginx's convention). */
struct http_access {
    int method;
    const char *path_raw;
    size_t path_raw_len;
    int status;
    uint64_t duration_us; /* from the request's last byte to its finish */
    uint64_t body_bytes;  /* request body */
    uint64_t id;
};
typedef void (*http_access_log_cb)(void *log_arg, const struct http_access *e);

/* Listens on host_port ("127.0.0.1:8080", "[::1]:0", "localhost:8080"; port 0 picks a
 * free port, see http_server_bound_port) and serves with handler(req, arg). lim NULL
 * means the defaults. On failure returns HTTP_EINVAL (lim out of range), HTTP_EADDR,
 * HTTP_ELISTEN or HTTP_ENOMEM, writes the reason into errmsg (may be NULL) and *out is
 * NULL; a handle may still be closing, so run the loop before uv_loop_close(). */
int http_server_start(uv_loop_t *loop, const char *host_port, const struct http_limits *lim,
                      http_handler_fn handler, void *arg, struct http_server **out, char *errmsg,
                      size_t errmsg_cap);

/* The bound TCP port, or -1. */
int http_server_bound_port(const struct http_server *srv);

/* Stops listening and closes every connection at once; unfinished requests see their
 * on_close callback and then only await their finish (see Ownership). After the last
 * handle closed the server frees itself and calls done_cb(arg) (may be NULL), always
 * from the loop, never inside this call. Call once. */
void http_server_stop(struct http_server *srv, void (*done_cb)(void *arg), void *arg);

void http_server_set_access_log(struct http_server *srv, http_access_log_cb cb, void *log_arg);
void http_server_stats(const struct http_server *srv, struct http_server_stats *out);

/* ---- responses ----------------------------------------------------------------------
 * Exactly one finishing call per request: http_respond, http_respond_json,
 * http_respond_error or http_stream_end. status is 200..599 (an assertion). HEAD
 * requests get the headers and Content-Length without the body. */

/* Adds "name: value" to the response (Location, X-Conclave-Leader, ...). Call before
 * the finishing call or http_stream_begin. Returns 0; HTTP_EINVAL for a name that is
 * not a token or a value with CR, LF or NUL, or for Content-Length, Transfer-Encoding,
 * Server and Connection other than "close" (which makes the connection close after
 * this response); HTTP_EFULL past HTTP_RESP_HEADERS_BYTES_MAX; HTTP_ESTATE after the
 * response began; HTTP_ECLOSED if the client is gone. */
int http_respond_header(struct http_req *req, const char *name, const char *value);

/* Sends status, Content-Type (omitted when NULL) and body[0, n) (copied). Finishes req. */
void http_respond(struct http_req *req, int status, const char *content_type, const void *body,
                  size_t n);

/* Sends obj as compact JSON plus "\n", application/json; takes obj (decref'd here, may
 * be NULL, which sends a 500). Finishes req. */
void http_respond_json(struct http_req *req, int status, json_t *obj);

/* Sends {"error":{"code":code,"message":<printf>}}; the message is truncated to
 * HTTP_ERRMSG_BYTES and bytes that are not UTF-8 become '?'. Finishes req. */
void http_respond_error(struct http_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void http_respond_verror(struct http_req *req, int status, const char *code, const char *fmt,
                         va_list ap) __attribute__((format(printf, 4, 0)));

/* ---- streams (Server-Sent Events for watches) ---------------------------------------
 * A stream keeps its connection's pipeline slot until it ends; later pipelined requests
 * wait behind it, as HTTP requires. HTTP/1.1 clients get chunked encoding; HTTP/1.0
 * clients get the raw bytes and the connection closes at the end. */

/* Sends the head (status, content_type, extra headers). Returns 0, HTTP_ECLOSED, or
 * HTTP_ESTATE (already responding). After an error the request still needs its finish. */
int http_stream_begin(struct http_req *req, int status, const char *content_type);

/* Queues data[0, n) (copied) as one chunk; n == 0 does nothing. Returns 0;
 * HTTP_ESLOW when the connection already holds stream_buffer_bytes_max unsent bytes
 * (nothing queued: end the stream, the client cannot keep up); HTTP_EINVAL when n alone
 * exceeds that limit; HTTP_ECLOSED; HTTP_ESTATE before http_stream_begin. */
int http_stream_write(struct http_req *req, const void *data, size_t n);

/* Ends the stream and finishes req (also when begin failed or the client is gone). */
void http_stream_end(struct http_req *req);

/* ---- helpers ----------------------------------------------------------------------- */

/* Percent-decodes raw[0, n) into out (cap bytes, NUL-terminated; cap >= n + 1 always
 * suffices); '+' stays '+'. *out_len (may be NULL) gets the decoded length. Returns 0,
 * HTTP_EBADVALUE for a '%' not followed by two hex digits, HTTP_ETOOLONG. */
int http_path_decode(const char *raw, size_t n, char *out, size_t cap, size_t *out_len);

/* The first query parameter `name` (compared after decoding), form-decoded ('+' is a
 * space) into buf (cap bytes, NUL-terminated); "?flag" without '=' gives "". *len_out
 * (may be NULL) gets the decoded length, which may include NUL bytes. Returns 0,
 * HTTP_ENOTFOUND, HTTP_ETOOLONG, HTTP_EBADVALUE (bad percent-escape). */
int http_query_get(const struct http_req *req, const char *name, char *buf, size_t cap,
                   size_t *len_out);

/* "", 1, true, yes, on -> true; 0, false, no, off -> false (any case). Returns 0,
 * HTTP_ENOTFOUND (*out untouched) or HTTP_EBADVALUE. */
int http_query_bool(const struct http_req *req, const char *name, bool *out);

/* Decimal digits only, no sign, fits uint64_t. Returns 0, HTTP_ENOTFOUND (*out
 * untouched) or HTTP_EBADVALUE. */
int http_query_u64(const struct http_req *req, const char *name, uint64_t *out);

/* "GET", "PUT", ... */
const char *http_method_name(int method);

/* ---- socketless feeder (tests, fuzzing) ---------------------------------------------
 * One connection's state machine with no socket, loop or timers: bytes go in through
 * http_feeder_feed(), everything the server would write comes out through out_cb. The
 * handler contract is the same as for a server. */

struct http_feeder;
typedef void (*http_out_cb)(void *out_arg, const void *bytes, size_t n);

int http_feeder_new(const struct http_limits *lim, http_handler_fn handler, void *arg,
                    http_out_cb out_cb, void *out_arg, struct http_feeder **out);

/* Parses as much of data[0, n) as the connection accepts and returns how many bytes it
 * took: fewer than n when pipeline_max requests are unanswered (answer some, then feed
 * the rest) or once the connection has closed. n == 0 resumes parsing held bytes. */
size_t http_feeder_feed(struct http_feeder *f, const void *data, size_t n);

/* True once the connection closed (an error response, Connection: close, ...). */
bool http_feeder_closed(const struct http_feeder *f);

/* Tells the feeder the client hung up (like EOF on a socket). */
void http_feeder_eof(struct http_feeder *f);

/* Closes the connection (unfinished requests see on_close and await their finish) and
 * frees the feeder. */
void http_feeder_free(struct http_feeder *f);

#endif /* CC_API_HTTP_H */
