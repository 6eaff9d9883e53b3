/* fuzz_http.c -- arbitrary bytes as one HTTP connection's input, through the server's
 * request state machine (api/http.h's socketless feeder: no sockets, loop or timers).
 *
 * What must hold for every input:
 *   - no crash, no out-of-bounds access, no leak (ASan), no assertion;
 *   - everything the server writes parses as a sequence of HTTP responses (checked with
 *     http-parser in response mode), skipped only when a HEAD request may be involved
 *     (its responses carry Content-Length without a body, which a response parser
 *     cannot know);
 *   - responses leave in request order even though the handler answers some requests
 *     late and in reverse order: the X-Id header of each final response increases.
 *
 * Input: byte 0 picks the limits (small ones reach every limit path), byte 1 the size of
 * the pieces the rest is fed in (so messages split at every boundary), byte 2 how many
 * requests the handler holds back before answering them in reverse. The rest is the
 * connection's bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/http.h"
#include "base/assert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_DEFER_MAX     32
#define FZ_OUT_BYTES_MAX (8u << 20)

struct fz {
    struct http_req *deferred[FZ_DEFER_MAX];
    uint32_t n_deferred;
    uint32_t defer_budget;
    uint32_t n_close_cbs;
    bool saw_head;
    uint8_t *out;
    size_t out_len;
    bool out_truncated;
};

static void fz_out(void *arg, const void *bytes, size_t n)
{
    struct fz *z = arg;
    CC_ASSERT(n > 0);
    if (z->out_truncated || n > FZ_OUT_BYTES_MAX - z->out_len) {
        z->out_truncated = true;
        return;
    }
    memcpy(z->out + z->out_len, bytes, n);
    z->out_len += n;
}

static void fz_on_close(struct http_req *req, void *arg)
{
    struct fz *z = arg;
    z->n_close_cbs++;
    CC_ASSERT(http_req_is_closed(req));
}

static void fz_answer(struct fz *z, struct http_req *req)
{
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)req->id);
    if (http_req_is_closed(req)) {
        http_respond(req, 200, NULL, NULL, 0); /* only frees it */
        return;
    }
    CC_ASSERT(http_respond_header(req, "X-Id", id) == 0);
    if (req->path_len > 0 && memchr(req->path, 's', req->path_len) != NULL) {
        if (http_stream_begin(req, 200, "text/event-stream") == 0) {
            for (int i = 0; i < 3; i++) {
                (void)http_stream_write(req, "data: x\n\n", 9);
            }
        }
        http_stream_end(req);
        return;
    }
    if (req->path_len > 0 && memchr(req->path, 'e', req->path_len) != NULL) {
        http_respond_error(req, 404, "not_found", "no key '%.*s'", (int)req->path_len, req->path);
        return;
    }
    if (req->path_len > 0 && memchr(req->path, 'j', req->path_len) != NULL) {
        http_respond_json(req, 200, json_pack("{s:I}", "id", (json_int_t)req->id));
        return;
    }
    http_respond(req, 200, "application/octet-stream", req->body, req->body_len);
}

static void fz_handler(struct http_req *req, void *arg)
{
    struct fz *z = arg;
    char buf[64];
    size_t len;
    bool b;
    uint64_t u;

    CC_ASSERT(req->path != NULL);
    CC_ASSERT(req->path[req->path_len] == '\0');
    CC_ASSERT(req->path_raw[req->path_raw_len] == '\0');
    CC_ASSERT(req->path_len <= req->path_raw_len);
    CC_ASSERT(req->body_len == 0 || req->body[req->body_len] == 0);
    CC_ASSERT(req->query == NULL || req->query[req->query_len] == '\0');
    for (uint32_t i = 0; i < req->n_headers; i++) {
        CC_ASSERT(req->headers[i].name != NULL && req->headers[i].value != NULL);
        CC_ASSERT(http_req_header(req, req->headers[i].name) != NULL);
    }
    if (req->method == HTTP_HEAD) {
        z->saw_head = true;
    }
    const int rv = http_query_get(req, "a", buf, sizeof(buf), &len);
    CC_ASSERT(rv == 0 || rv == HTTP_ENOTFOUND || rv == HTTP_ETOOLONG || rv == HTTP_EBADVALUE);
    if (rv == 0) {
        CC_ASSERT(len < sizeof(buf) && buf[len] == '\0');
    }
    (void)http_query_bool(req, "b", &b);
    (void)http_query_u64(req, "u", &u);
    (void)http_respond_header(req, "X-Bad\r\n", "v");

    if (z->defer_budget > 0 && z->n_deferred < FZ_DEFER_MAX) {
        z->defer_budget--;
        CC_ASSERT(http_req_on_close(req, fz_on_close, z) == 0);
        z->deferred[z->n_deferred++] = req;
        return;
    }
    fz_answer(z, req);
}

/* Answers held requests newest first, so later responses are ready before earlier. */
static void fz_flush(struct fz *z)
{
    while (z->n_deferred > 0) {
        fz_answer(z, z->deferred[--z->n_deferred]);
    }
}

/* ---- response-side check ----------------------------------------------------------- */

struct fz_resp {
    bool in_id;
    char id[24];
    size_t id_len;
    bool last_was_id;
    unsigned long long last_id;
    uint32_t n_final;
};

static int fz_r_field(http_parser *p, const char *at, size_t n)
{
    struct fz_resp *s = p->data;
    s->in_id = n == 4 && strncasecmp(at, "X-Id", 4) == 0;
    s->id_len = 0;
    return 0;
}

static int fz_r_value(http_parser *p, const char *at, size_t n)
{
    struct fz_resp *s = p->data;
    if (s->in_id && n < sizeof(s->id) - s->id_len) {
        memcpy(s->id + s->id_len, at, n);
        s->id_len += n;
        s->id[s->id_len] = '\0';
        s->last_was_id = true;
    }
    return 0;
}

static int fz_r_begin(http_parser *p)
{
    struct fz_resp *s = p->data;
    s->last_was_id = false;
    s->id_len = 0;
    s->id[0] = '\0';
    return 0;
}

static int fz_r_done(http_parser *p)
{
    struct fz_resp *s = p->data;
    CC_ASSERT(p->status_code == 100 || (p->status_code >= 200 && p->status_code <= 599));
    if (p->status_code >= 200) {
        s->n_final++;
        if (s->last_was_id) {
            const unsigned long long id = strtoull(s->id, NULL, 10);
            CC_ASSERT(id > s->last_id); /* responses in request order */
            s->last_id = id;
        }
    }
    return 0;
}

static void fz_check_output(const struct fz *z)
{
    static const http_parser_settings settings = {
        .on_message_begin = fz_r_begin,
        .on_header_field = fz_r_field,
        .on_header_value = fz_r_value,
        .on_message_complete = fz_r_done,
    };
    struct fz_resp s = {0};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &s;
    const size_t n = http_parser_execute(&p, &settings, (const char *)z->out, z->out_len);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || n != z->out_len) { /* show what broke */
        fprintf(stderr, "fuzz_http: response stream does not parse at byte %zu: %s\n", n,
                http_errno_description(HTTP_PARSER_ERRNO(&p)));
        fwrite(z->out, 1, z->out_len, stderr);
    }
    CC_ASSERT(HTTP_PARSER_ERRNO(&p) == HPE_OK);
    CC_ASSERT(n == z->out_len);
}

static bool fz_contains(const uint8_t *data, size_t size, const char *needle)
{
    const size_t n = strlen(needle);
    for (size_t i = 0; i + n <= size; i++) {
        if (memcmp(data + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[FZ_OUT_BYTES_MAX];
    if (size < 3) {
        return 0;
    }
    struct http_limits lim;
    http_limits_default(&lim);
    const uint8_t mode = data[0];
    if (mode & 1) {
        lim.header_bytes_max = 256;
        lim.url_bytes_max = 16 + (mode & 0x30);
        lim.body_bytes_max = (mode >> 6) * 20u;
    }
    lim.pipeline_max = 1 + ((mode >> 1) & 7);
    const size_t step = 1 + data[1];
    struct fz z = {.defer_budget = data[2] & 15, .out = out};

    struct http_feeder *f;
    CC_ASSERT(http_feeder_new(&lim, fz_handler, &z, fz_out, &z, &f) == 0);
    const uint8_t *p = data + 3;
    size_t left = size - 3;
    uint32_t stuck = 0;
    while (left > 0 && !http_feeder_closed(f)) {
        const size_t want = left < step ? left : step;
        const size_t took = http_feeder_feed(f, p, want);
        CC_ASSERT(took <= want);
        p += took;
        left -= took;
        if (took < want) { /* pipeline full: answer what is held, then go on */
            fz_flush(&z);
            (void)http_feeder_feed(f, NULL, 0);
            if (++stuck > 1000000) {
                CC_ASSERT(false); /* the feeder must make progress once answered */
            }
        }
    }
    if (mode & 0x08) {
        http_feeder_eof(f);
    }
    fz_flush(&z);
    (void)http_feeder_feed(f, NULL, 0);
    fz_flush(&z);
    http_feeder_free(f);
    fz_flush(&z); /* requests detached by the close: finishing only frees them */

    const bool has_head = fz_contains(data, size, "HEAD");
    if (!z.out_truncated && !z.saw_head && !has_head) {
        fz_check_output(&z);
    }
    return 0;
}
