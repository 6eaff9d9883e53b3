/* test_cli_client.c -- unit tests for cli/client: the blocking HTTP/1.1 client the
 * `conclave kv|cluster` commands use, against a throwaway server inside the test.
 *
 * The server is a raw listening socket on 127.0.0.1 port 0 served by one pthread. It
 * accepts one connection, reads one request (the head, then a Content-Length body) and
 * keeps a copy for the test to check, then plays its script: the canned response bytes,
 * written `piece` bytes at a time, and then either closes or (hold) keeps the
 * connection open without a word until the test ends. Every wait is bounded: the
 * accept and every read poll in slices against WAIT_MS, the thread checks a stop flag,
 * the teardown joins it, and main() arms an alarm for the whole binary.
 *
 * Sections: fixture | server thread | helpers | escaping and endpoints | requests |
 * responses | limits | failures | cli glue | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"

#define WAIT_MS       5000        /* longest any single step may take */
#define SLICE_MS      20          /* poll slice while watching the stop flag */
#define REQ_BYTES_MAX (64u << 10) /* one captured request */
#define TEST_ALARM_S  120         /* the whole binary, should a bound be missed */

/* ---- fixture ----------------------------------------------------------------------- */

struct srv {
    int lfd;
    int port;
    pthread_t thread;
    bool started;
    /* script, set before srv_start */
    const char *response; /* canned bytes to send; NULL: send nothing */
    size_t response_len;
    size_t piece; /* bytes per send (0: all at once) */
    bool hold;    /* after the response (if any), keep the connection open */
    char *owned;  /* a malloc'd response, freed by the teardown */
    /* results */
    char req[REQ_BYTES_MAX + 1];
    size_t req_len;
    size_t req_head_len; /* up to and including the blank line */
    atomic_int accepted;
    atomic_int req_complete;
    atomic_int stop;
};

static struct srv g_srv;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int srv_reset(void **state)
{
    memset(&g_srv, 0, sizeof(g_srv));
    g_srv.lfd = -1;
    return 0;
}

static int srv_teardown(void **state)
{
    if (g_srv.started) {
        atomic_store(&g_srv.stop, 1);
        pthread_join(g_srv.thread, NULL); /* every wait in the thread is bounded */
        g_srv.started = false;
    }
    if (g_srv.lfd >= 0)
        close(g_srv.lfd);
    g_srv.lfd = -1;
    free(g_srv.owned);
    g_srv.owned = NULL;
    return 0;
}

/* ---- server thread ----------------------------------------------------------------- */

/* Polls fd in SLICE_MS slices until ready, stop, or WAIT_MS: 1 ready, 0 not. */
static int srv_wait(int fd, short events)
{
    uint64_t end = now_ms() + WAIT_MS;
    while (!atomic_load(&g_srv.stop) && now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, SLICE_MS);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
    return 0;
}

/* Content-Length of a captured head (0 when absent). */
static size_t srv_content_length(const char *head, size_t n)
{
    static const char name[] = "\r\ncontent-length:";
    size_t k = sizeof(name) - 1;
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(head + i, name, k) == 0)
            return (size_t)strtoul(head + i + k, NULL, 10);
    return 0;
}

static void srv_read_request(int fd)
{
    struct srv *s = &g_srv;
    size_t want = 0;
    while (s->req_len < REQ_BYTES_MAX && srv_wait(fd, POLLIN)) {
        ssize_t n = recv(fd, s->req + s->req_len, REQ_BYTES_MAX - s->req_len, 0);
        if (n <= 0)
            return;
        s->req_len += (size_t)n;
        s->req[s->req_len] = '\0';
        if (s->req_head_len == 0) {
            char *end = strstr(s->req, "\r\n\r\n");
            if (!end)
                continue;
            s->req_head_len = (size_t)(end + 4 - s->req);
            want = s->req_head_len + srv_content_length(s->req, s->req_head_len);
        }
        if (s->req_len >= want) {
            atomic_store(&s->req_complete, 1);
            return;
        }
    }
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    if (!srv_wait(s->lfd, POLLIN))
        return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    atomic_store(&s->accepted, 1);
    srv_read_request(fd);
    size_t sent = 0;
    while (s->response && sent < s->response_len && !atomic_load(&s->stop)) {
        size_t n = s->response_len - sent;
        if (s->piece && n > s->piece)
            n = s->piece;
        if (!srv_wait(fd, POLLOUT))
            break;
        ssize_t w = send(fd, s->response + sent, n, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the client gave up (a size limit): fine */
        sent += (size_t)w;
    }
    if (s->hold) { /* keep it open, say nothing, until the test ends */
        uint64_t end = now_ms() + 2 * WAIT_MS;
        while (!atomic_load(&s->stop) && now_ms() < end) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = SLICE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    close(fd);
    return NULL;
}

/* Listens on 127.0.0.1:0 and starts the thread with the script in g_srv. */
static void srv_start(const char *response, size_t piece, bool hold)
{
    struct srv *s = &g_srv;
    s->response = response;
    s->response_len = response ? strlen(response) : 0;
    s->piece = piece;
    s->hold = hold;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
    s->started = true;
}

/* ---- helpers ----------------------------------------------------------------------- */

static const char *srv_endpoint(void)
{
    static char ep[32];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", g_srv.port);
    return ep;
}

/* One exchange against the test server. */
static int do_req(const char *method, const char *target, const void *body, size_t body_len,
                  uint32_t timeout_ms, size_t max, struct client_response *resp, char *msg,
                  size_t msg_cap)
{
    struct client_opts o = {.timeout_ms = timeout_ms, .response_bytes_max = max};
    struct client_request req = {
        .method = method, .target = target, .body = body, .body_len = body_len};
    return client_do(srv_endpoint(), &o, &req, resp, msg, msg_cap);
}

/* Does the captured head contain needle? (memmem is a GNU extension.) */
static bool head_has(const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= g_srv.req_head_len; i++)
        if (memcmp(g_srv.req + i, needle, n) == 0)
            return true;
    return false;
}

/* Does the captured head hold this exact line? */
static bool head_has_line(const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\r\n%s\r\n", line);
    return head_has(want);
}

/* ---- escaping and endpoints -------------------------------------------------------- */

static void test_escape(void **state)
{
    static const uint8_t key[] = {0x00, 0xff, 'a', '/', 'b', ' ', '%', '~', '-',
                                  '.',  '_',  'Z', '9', '?', '#', '&', '+', 0x80};
    char out[3 * sizeof(key) + 1];
    size_t n = client_escape(key, sizeof(key), true, out, sizeof(out));
    assert_string_equal(out, "%00%FFa/b%20%25~-._Z9%3F%23%26%2B%80");
    assert_int_equal(n, strlen(out));
    client_escape(key, sizeof(key), false, out, sizeof(out));
    assert_string_equal(out, "%00%FFa%2Fb%20%25~-._Z9%3F%23%26%2B%80");
    assert_int_equal(client_escape("", 0, true, out, 1), 0);
    assert_string_equal(out, "");
}

/* client_b64_decode against the RFC 4648 vectors, every byte value, and bad input. */
static void test_b64_decode(void **state)
{
    (void)state;
    static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                      "Zm9vYmFy"};
    static const char *const dec[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    uint8_t out[64];
    for (size_t i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
        long k = client_b64_decode(enc[i], strlen(enc[i]), out);
        assert_int_equal(k, (long)strlen(dec[i]));
        assert_memory_equal(out, dec[i], (size_t)k);
    }
    /* all 256 byte values: "AAECAwQF..." is base64 of 0x00 0x01 0x02 ... */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t bytes[256], back[256 / 3 * 4 + 8];
    char text[256 / 3 * 4 + 8];
    for (int i = 0; i < 256; i++)
        bytes[i] = (uint8_t)i;
    size_t t = 0;
    for (int i = 0; i < 255; i += 3) { /* 255 = 85 full groups, then one byte */
        uint32_t v = (uint32_t)bytes[i] << 16 | (uint32_t)bytes[i + 1] << 8 | bytes[i + 2];
        for (int k = 3; k >= 0; k--)
            text[t++] = alphabet[(v >> (6 * k)) & 63];
    }
    text[t++] = alphabet[bytes[255] >> 2];
    text[t++] = alphabet[(bytes[255] & 3) << 4];
    text[t++] = '=';
    text[t++] = '=';
    assert_int_equal(client_b64_decode(text, t, back), 256);
    assert_memory_equal(back, bytes, 256);
    /* a character outside the alphabet is refused, not skipped */
    assert_int_equal(client_b64_decode("Zm9v*mFy", 8, out), -1);
    assert_int_equal(client_b64_decode("Zm9v YmFy", 9, out), -1);
}

static void test_endpoint_split(void **state)
{
    char host[64], port[8], msg[256];
    assert_int_equal(client_endpoint_split("127.0.0.1:7379", host, sizeof(host), port, sizeof(port),
                                           msg, sizeof(msg)),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "7379");
    assert_int_equal(client_endpoint_split("http://db.example:80/", host, sizeof(host), port,
                                           sizeof(port), msg, sizeof(msg)),
                     0);
    assert_string_equal(host, "db.example");
    assert_string_equal(port, "80");
    assert_int_equal(client_endpoint_split("[::1]:7379", host, sizeof(host), port, sizeof(port),
                                           msg, sizeof(msg)),
                     0);
    assert_string_equal(host, "::1");
    static const char *bad[] = {
        "",      "localhost", ":7379", "h:",        "h:0",         "h:65536",
        "h:12a", "::1:7379",  "[::1]", "[::1]7379", "https://h:1", "h:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg[0] = '\0';
        int rv =
            client_endpoint_split(bad[i], host, sizeof(host), port, sizeof(port), msg, sizeof(msg));
        if (rv != CLIENT_EINVAL)
            fail_msg("endpoint '%s' accepted (rv=%d)", bad[i], rv);
        assert_true(msg[0] != '\0');
    }
}

/* ---- requests ---------------------------------------------------------------------- */

static const char ok_json[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Length: 15\r\n\r\n{\"revision\":12}";

static void test_request_put_binary(void **state)
{
    srv_start(ok_json, 0, false);
    static const uint8_t key[] = {'a', 0x00, 0xff, '/', ' '};
    static const uint8_t value[] = {'v', 0x00, '\r', '\n', 0xfe};
    char target[64] = "/v1/kv/";
    client_escape(key, sizeof(key), true, target + 7, sizeof(target) - 7);
    struct client_opts o = {.timeout_ms = WAIT_MS};
    struct client_request req = {.method = "PUT",
                                 .target = target,
                                 .content_type = "application/octet-stream",
                                 .body = value,
                                 .body_len = sizeof(value)};
    struct client_response resp;
    char msg[256];
    int rv = client_do(srv_endpoint(), &o, &req, &resp, msg, sizeof(msg));
    if (rv != 0)
        fail_msg("client_do: %d %s", rv, msg);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "application/json");
    assert_int_equal(resp.body_len, 15);
    assert_string_equal((char *)resp.body, "{\"revision\":12}");
    client_response_free(&resp);

    assert_true(atomic_load(&g_srv.req_complete));
    const char *line = "PUT /v1/kv/a%00%FF/%20 HTTP/1.1\r\n";
    assert_memory_equal(g_srv.req, line, strlen(line));
    char host[64];
    snprintf(host, sizeof(host), "Host: %s", srv_endpoint());
    assert_true(head_has_line(host));
    assert_true(head_has_line("Content-Length: 5"));
    assert_true(head_has_line("Content-Type: application/octet-stream"));
    assert_true(head_has_line("Connection: close"));
    assert_int_equal(g_srv.req_len - g_srv.req_head_len, sizeof(value));
    assert_memory_equal(g_srv.req + g_srv.req_head_len, value, sizeof(value));
}

static void test_request_get_has_no_length(void **state)
{
    srv_start(ok_json, 0, false);
    struct client_response resp;
    assert_int_equal(
        do_req("GET", "/v1/kv/x?prefix=true&limit=2", NULL, 0, WAIT_MS, 0, &resp, NULL, 0), 0);
    client_response_free(&resp);
    const char *line = "GET /v1/kv/x?prefix=true&limit=2 HTTP/1.1\r\n";
    assert_memory_equal(g_srv.req, line, strlen(line));
    assert_false(head_has("Content-Length"));
    assert_false(head_has("Content-Type"));
}

static void test_request_post_empty_body(void **state)
{
    srv_start(ok_json, 0, false);
    struct client_response resp;
    assert_int_equal(
        do_req("POST", "/v1/cluster/leader/transfer", NULL, 0, WAIT_MS, 0, &resp, NULL, 0), 0);
    client_response_free(&resp);
    assert_true(head_has_line("Content-Length: 0"));
    assert_int_equal(g_srv.req_len, g_srv.req_head_len);
}

static void test_request_bad_target(void **state)
{
    struct client_response resp;
    char msg[256];
    char *long_target = malloc(CLIENT_TARGET_BYTES_MAX + 1);
    assert_non_null(long_target);
    memset(long_target, 'a', CLIENT_TARGET_BYTES_MAX);
    long_target[0] = '/';
    long_target[CLIENT_TARGET_BYTES_MAX] = '\0';
    struct client_opts o = {.timeout_ms = WAIT_MS};
    struct client_request req = {.method = "GET", .target = long_target};
    assert_int_equal(client_do("127.0.0.1:1", &o, &req, &resp, msg, sizeof(msg)), CLIENT_EINVAL);
    free(long_target);
    req.target = "/a b";
    assert_int_equal(client_do("127.0.0.1:1", &o, &req, &resp, msg, sizeof(msg)), CLIENT_EINVAL);
    req.target = "/x";
    req.content_type = "text/plain\r\nX-Injected: 1";
    assert_int_equal(client_do("127.0.0.1:1", &o, &req, &resp, msg, sizeof(msg)), CLIENT_EINVAL);
    assert_null(resp.body);
}

/* ---- responses --------------------------------------------------------------------- */

static void test_response_chunked_bytewise(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                            "content-type: text/plain\r\n\r\n"
                            "5\r\nhello\r\n2;ext=1\r\n, \r\n7\r\nchunked\r\n0\r\nX-T: 1\r\n\r\n";
    srv_start(r, 1, false); /* one byte per send: every parser state sees a split */
    struct client_response resp;
    char msg[256];
    int rv = do_req("GET", "/x", NULL, 0, WAIT_MS, 0, &resp, msg, sizeof(msg));
    if (rv != 0)
        fail_msg("client_do: %d %s", rv, msg);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "text/plain");
    assert_string_equal((char *)resp.body, "hello, chunked");
    assert_int_equal(resp.body_len, 14);
    client_response_free(&resp);
}

static void test_response_close_delimited(void **state)
{
    static const char r[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n"
                            "no length: the body ends when the connection does";
    srv_start(r, 7, false);
    struct client_response resp;
    char msg[256];
    int rv = do_req("GET", "/x", NULL, 0, WAIT_MS, 0, &resp, msg, sizeof(msg));
    if (rv != 0)
        fail_msg("client_do: %d %s", rv, msg);
    assert_int_equal(resp.status, 503);
    assert_string_equal(resp.content_type, "");
    assert_string_equal((char *)resp.body, "no length: the body ends when the connection does");
    client_response_free(&resp);
}

/* A Content-Length response is complete at its last byte: no waiting for the close. */
static void test_response_length_no_close(void **state)
{
    srv_start(ok_json, 0, true);
    struct client_response resp;
    uint64_t t0 = now_ms();
    assert_int_equal(do_req("GET", "/x", NULL, 0, WAIT_MS, 0, &resp, NULL, 0), 0);
    assert_true(now_ms() - t0 < WAIT_MS / 2);
    assert_string_equal((char *)resp.body, "{\"revision\":12}");
    client_response_free(&resp);
}

static void test_response_interim_100(void **state)
{
    static const char r[] = "HTTP/1.1 100 Continue\r\n\r\n"
                            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                            "Content-Length: 21\r\n\r\n{\"transferring_to\":2}";
    srv_start(r, 0, false);
    struct client_response resp;
    assert_int_equal(do_req("POST", "/x", "{}", 2, WAIT_MS, 0, &resp, NULL, 0), 0);
    assert_int_equal(resp.status, 202);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal((char *)resp.body, "{\"transferring_to\":2}");
    client_response_free(&resp);
}

static void test_response_empty_body(void **state)
{
    srv_start("HTTP/1.1 204 No Content\r\n\r\n", 0, true);
    struct client_response resp;
    assert_int_equal(do_req("DELETE", "/x", NULL, 0, WAIT_MS, 0, &resp, NULL, 0), 0);
    assert_int_equal(resp.status, 204);
    assert_non_null(resp.body); /* always a NUL-terminated buffer on success */
    assert_int_equal(resp.body_len, 0);
    assert_string_equal((char *)resp.body, "");
    client_response_free(&resp);
}

/* ---- limits ------------------------------------------------------------------------ */

static void test_limit_content_length(void **state)
{
    /* Refused from the head alone: the body never needs to arrive. */
    srv_start("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nabc", 0, true);
    struct client_response resp;
    char msg[256];
    uint64_t t0 = now_ms();
    assert_int_equal(do_req("GET", "/x", NULL, 0, WAIT_MS, 1024, &resp, msg, sizeof(msg)),
                     CLIENT_ETOOBIG);
    assert_true(now_ms() - t0 < WAIT_MS / 2);
    assert_non_null(strstr(msg, "1024"));
    assert_null(resp.body);
}

static char *chunked_response(size_t n_chunks, size_t chunk_bytes)
{
    size_t cap = 128 + n_chunks * (chunk_bytes + 16);
    char *r = malloc(cap);
    assert_non_null(r);
    size_t k = (size_t)snprintf(r, cap, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < n_chunks; i++) {
        k += (size_t)snprintf(r + k, cap - k, "%zx\r\n", chunk_bytes);
        memset(r + k, 'a' + (int)(i % 26), chunk_bytes);
        k += chunk_bytes;
        k += (size_t)snprintf(r + k, cap - k, "\r\n");
    }
    k += (size_t)snprintf(r + k, cap - k, "0\r\n\r\n");
    return r;
}

static void test_limit_chunked(void **state)
{
    char *r = g_srv.owned = chunked_response(8, 200); /* 1600 bytes, no length up front */
    srv_start(r, 0, false);
    struct client_response resp;
    char msg[256];
    assert_int_equal(do_req("GET", "/x", NULL, 0, WAIT_MS, 1024, &resp, msg, sizeof(msg)),
                     CLIENT_ETOOBIG);
    assert_null(resp.body);
}

static void test_limit_exactly_max(void **state)
{
    char *r = g_srv.owned = chunked_response(8, 128); /* exactly 1024 bytes: allowed */
    srv_start(r, 100, false);
    struct client_response resp;
    char msg[256];
    int rv = do_req("GET", "/x", NULL, 0, WAIT_MS, 1024, &resp, msg, sizeof(msg));
    if (rv != 0)
        fail_msg("client_do: %d %s", rv, msg);
    assert_int_equal(resp.body_len, 1024);
    assert_int_equal(resp.body[0], 'a');
    assert_int_equal(resp.body[1023], 'h');
    assert_int_equal(resp.body[1024], '\0');
    client_response_free(&resp);
}

/* ---- failures ---------------------------------------------------------------------- */

static void test_truncated_response(void **state)
{
    srv_start("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", 0, false);
    struct client_response resp;
    char msg[256];
    assert_int_equal(do_req("GET", "/x", NULL, 0, WAIT_MS, 0, &resp, msg, sizeof(msg)),
                     CLIENT_EPROTO);
    assert_non_null(strstr(msg, "closed"));
    assert_null(resp.body);
}

static void test_malformed_response(void **state)
{
    srv_start("SSH-2.0-OpenSSH_9.6\r\n\r\n", 0, false);
    struct client_response resp;
    char msg[256];
    assert_int_equal(do_req("GET", "/x", NULL, 0, WAIT_MS, 0, &resp, msg, sizeof(msg)),
                     CLIENT_EPROTO);
    assert_non_null(strstr(msg, "malformed"));
}

static void test_connection_refused(void **state)
{
    /* A bound socket that does not listen holds the port and answers SYN with RST. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char ep[32];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", ntohs(a.sin_port));
    struct client_opts o = {.timeout_ms = WAIT_MS};
    struct client_request req = {.method = "GET", .target = "/v1/cluster/status"};
    struct client_response resp;
    char msg[256];
    uint64_t t0 = now_ms();
    int rv = client_do(ep, &o, &req, &resp, msg, sizeof(msg));
    assert_int_equal(rv, CLIENT_EREFUSED);
    assert_true(client_error_is_unreachable(rv));
    assert_string_equal(msg, "connection refused");
    assert_true(now_ms() - t0 < WAIT_MS / 2);

    /* The CLI glue maps it to exit 3 (and prints the hint to stderr). */
    struct client_cli cli;
    char *argv[] = {"kv", "--endpoint", ep, NULL};
    int argc = 3;
    assert_int_equal(client_cli_init(&cli, "conclave kv", &argc, argv, msg, sizeof(msg)), 0);
    assert_int_equal(client_cli_call(&cli, "test", &req, &resp), CLIENT_EXIT_UNREACHABLE);
    assert_null(resp.body);
    close(fd);
}

static void test_timeout_silent_server(void **state)
{
    srv_start(NULL, 0, true); /* accepts, reads, never answers */
    struct client_response resp;
    char msg[256];
    uint64_t t0 = now_ms();
    assert_int_equal(do_req("GET", "/x", NULL, 0, 300, 0, &resp, msg, sizeof(msg)),
                     CLIENT_ETIMEDOUT);
    uint64_t took = now_ms() - t0;
    if (took < 250 || took > 3000)
        fail_msg("timeout of 300 ms took %llu ms", (unsigned long long)took);
    assert_true(atomic_load(&g_srv.req_complete)); /* the request did go out */
    assert_non_null(strstr(msg, "300 ms"));
    assert_false(client_error_is_unreachable(CLIENT_ETIMEDOUT));
}

static void test_timeout_mid_body(void **state)
{
    /* Half a body, then silence: the deadline covers the whole exchange. */
    srv_start("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", 0, true);
    struct client_response resp;
    uint64_t t0 = now_ms();
    assert_int_equal(do_req("GET", "/x", NULL, 0, 300, 0, &resp, NULL, 0), CLIENT_ETIMEDOUT);
    assert_true(now_ms() - t0 < 3000);
    assert_null(resp.body);
}

/* ---- cli glue ---------------------------------------------------------------------- */

static void test_error_line(void **state)
{
    char out[256];
    static char j[] = "{\"error\":{\"code\":\"key_not_found\",\"message\":\"key not found\"}}\n";
    struct client_response r = {.status = 404, .body = (uint8_t *)j, .body_len = strlen(j)};
    client_error_line(&r, out, sizeof(out));
    assert_string_equal(out, "key not found (404 key_not_found)");
    static char html[] = "<html>bad\ngateway</html>\n";
    r = (struct client_response){.status = 502, .body = (uint8_t *)html, .body_len = strlen(html)};
    client_error_line(&r, out, sizeof(out));
    assert_string_equal(out, "HTTP 502: <html>bad gateway</html>");
    static char empty[] = "";
    r = (struct client_response){.status = 503, .body = (uint8_t *)empty};
    client_error_line(&r, out, sizeof(out));
    assert_string_equal(out, "HTTP 503");
}

static void test_cli_call_server_error(void **state)
{
    static const char body[] =
        "{\"error\":{\"code\":\"key_not_found\",\"message\":\"key not found\"}}\n";
    static char r[256];
    snprintf(r, sizeof(r),
             "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    srv_start(r, 0, false);
    struct client_cli cli;
    char msg[256];
    char ep[64];
    snprintf(ep, sizeof(ep), "--endpoint=%s", srv_endpoint());
    char *argv[] = {"kv", ep, NULL};
    int argc = 2;
    assert_int_equal(client_cli_init(&cli, "conclave kv", &argc, argv, msg, sizeof(msg)), 0);
    struct client_request req = {.method = "GET", .target = "/v1/kv/nope"};
    struct client_response resp;
    assert_int_equal(client_cli_call(&cli, "test", &req, &resp), CLIENT_EXIT_FAIL);
    assert_null(resp.body);
}

static void test_cli_init_flags(void **state)
{
    struct client_cli cli;
    char msg[256];
    unsetenv(CLIENT_ENDPOINT_ENV);
    char *a1[] = {"kv", "get", "-o", "json", "k", "--timeout-ms", "250", "--prefix", NULL};
    int n1 = 8;
    assert_int_equal(client_cli_init(&cli, "conclave kv", &n1, a1, msg, sizeof(msg)), 0);
    assert_true(cli.json);
    assert_int_equal(cli.timeout_ms, 250);
    assert_string_equal(cli.endpoint, CLIENT_DEFAULT_ENDPOINT);
    assert_int_equal(n1, 4);
    assert_string_equal(a1[1], "get");
    assert_string_equal(a1[2], "k");
    assert_string_equal(a1[3], "--prefix");
    assert_null(a1[4]);

    /* the environment, then --endpoint over it; `--` protects what follows */
    setenv(CLIENT_ENDPOINT_ENV, "10.0.0.1:1234", 1);
    char *a2[] = {"kv", "put", "--endpoint", "[::1]:80", "--", "-o", "x", NULL};
    int n2 = 7;
    assert_int_equal(client_cli_init(&cli, "conclave kv", &n2, a2, msg, sizeof(msg)), 0);
    assert_string_equal(cli.endpoint, "[::1]:80");
    assert_false(cli.json);
    assert_int_equal(n2, 5);
    assert_string_equal(a2[2], "--");
    assert_string_equal(a2[3], "-o");
    char *a3[] = {"kv", "get", "k", NULL};
    int n3 = 3;
    assert_int_equal(client_cli_init(&cli, "conclave kv", &n3, a3, msg, sizeof(msg)), 0);
    assert_string_equal(cli.endpoint, "10.0.0.1:1234");
    assert_int_equal(cli.timeout_ms, CLIENT_TIMEOUT_MS_DEFAULT);

    setenv(CLIENT_ENDPOINT_ENV, "no-port", 1);
    int n4 = 3;
    char *a4[] = {"kv", "get", "k", NULL};
    assert_int_equal(client_cli_init(&cli, "conclave kv", &n4, a4, msg, sizeof(msg)),
                     CLIENT_EXIT_USAGE);
    assert_non_null(strstr(msg, CLIENT_ENDPOINT_ENV));
    unsetenv(CLIENT_ENDPOINT_ENV);

    static const char *bad[][3] = {{"-o", "yaml", NULL},
                                   {"--timeout-ms", "0", NULL},
                                   {"--timeout-ms", "-5", NULL},
                                   {"--endpoint", NULL, NULL},
                                   {"-o", NULL, NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *av[4] = {"kv", (char *)bad[i][0], (char *)bad[i][1], NULL};
        int ac = bad[i][1] ? 3 : 2;
        if (client_cli_init(&cli, "conclave kv", &ac, av, msg, sizeof(msg)) != CLIENT_EXIT_USAGE)
            fail_msg("flags '%s %s' accepted", bad[i][0], bad[i][1] ? bad[i][1] : "");
    }
}

/* ---- main -------------------------------------------------------------------------- */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(TEST_ALARM_S);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_b64_decode),
        cmocka_unit_test(test_endpoint_split),
        cmocka_unit_test_setup_teardown(test_request_put_binary, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_request_get_has_no_length, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_request_post_empty_body, srv_reset, srv_teardown),
        cmocka_unit_test(test_request_bad_target),
        cmocka_unit_test_setup_teardown(test_response_chunked_bytewise, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_response_close_delimited, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_response_length_no_close, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_response_interim_100, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_response_empty_body, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_limit_content_length, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_limit_chunked, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_limit_exactly_max, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_response, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_response, srv_reset, srv_teardown),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test_setup_teardown(test_timeout_silent_server, srv_reset, srv_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_mid_body, srv_reset, srv_teardown),
        cmocka_unit_test(test_error_line),
        cmocka_unit_test_setup_teardown(test_cli_call_server_error, srv_reset, srv_teardown),
        cmocka_unit_test(test_cli_init_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
