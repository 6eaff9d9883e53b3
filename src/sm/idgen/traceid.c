/* traceid.c -- trace ids, W3C traceparent and hierarchical span ids (see traceid.h).
 *
 * Invariant of a generator once started: the last trace id had (last_ms, seq), with
 * seq in [TRACEID_SEQ_MIN, TRACEID_SEQ_MAX]; the next has a larger last_ms, or the same
 * last_ms and seq + 1. So (ms, seq) never repeats within a generator.
 *
 * Span ids are parsed left to right in one bounded pass (at most TRACEID_SPAN_LEN_MAX
 * characters); nothing recurses.
 *
 * Sections: generator | text forms | traceparent | span ids | errors.
 */
#include "sm/idgen/traceid.h"

#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "base/hash.h"

static const char HEX[] = "0123456789abcdef";

/* ==== generator ========================================================== */

void traceid_gen_init(struct traceid_gen *g, uint32_t ipv4, uint32_t pid)
{
    memset(g, 0, sizeof *g);
    g->ipv4 = ipv4;
    g->pid = pid;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n_bytes)
{
    for (unsigned i = 0; i < n_bytes; i++) {
        p[i] = (uint8_t)(v >> (8 * (n_bytes - 1 - i)));
    }
}

static uint64_t get_be(const uint8_t *p, unsigned n_bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n_bytes; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static void compose(const struct traceid_parts *p, struct traceid *out)
{
    put_be(out->b, p->ipv4, 4);
    put_be(out->b + 4, (uint64_t)p->unix_ms, 6);
    put_be(out->b + 10, p->sequence, 2);
    put_be(out->b + 12, p->pid, 4);
}

int traceid_next(struct traceid_gen *g, int64_t now_ms, struct traceid *out)
{
    CC_ASSERT(g != NULL);
    CC_ASSERT(out != NULL);
    if (now_ms < 0 || now_ms > TRACEID_MS_MAX) {
        return TRACEID_ECLOCK;
    }
    int64_t ms;
    uint32_t seq;
    if (!g->started || now_ms > g->last_ms) {
        ms = now_ms;
        seq = TRACEID_SEQ_MIN;
    } else if (g->seq < TRACEID_SEQ_MAX) {
        ms = g->last_ms; /* same ms, or a clock that went back */
        seq = g->seq + 1;
    } else {
        if (g->last_ms >= TRACEID_MS_MAX) {
            return TRACEID_ECLOCK;
        }
        ms = g->last_ms + 1;
        seq = TRACEID_SEQ_MIN;
        g->n_ahead++;
    }
    struct traceid_parts p = {g->ipv4, ms, seq, g->pid};
    compose(&p, out);
    g->started = true;
    g->last_ms = ms;
    g->seq = seq;
    return 0;
}

void traceid_parts(const struct traceid *t, struct traceid_parts *out)
{
    out->ipv4 = (uint32_t)get_be(t->b, 4);
    out->unix_ms = (int64_t)get_be(t->b + 4, 6);
    out->sequence = (uint32_t)get_be(t->b + 10, 2);
    out->pid = (uint32_t)get_be(t->b + 12, 4);
}

/* ==== text forms ========================================================= */

static int hex_lc(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[b[i] >> 4];
        out[2 * i + 1] = HEX[b[i] & 0x0f];
    }
}

/* Lowercase hex only (W3C HEXDIGLC). */
static bool hex_decode(const char *s, size_t n_bytes, uint8_t *out)
{
    for (size_t i = 0; i < n_bytes; i++) {
        int hi = hex_lc(s[2 * i]), lo = hex_lc(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

void traceid_format_hex(const struct traceid *t, char out[TRACEID_HEX_LEN + 1])
{
    hex_encode(t->b, TRACEID_BYTES, out);
    out[TRACEID_HEX_LEN] = '\0';
}

int traceid_parse_hex(const char *s, size_t n, struct traceid *out)
{
    struct traceid t;
    if (s == NULL || n != TRACEID_HEX_LEN || !hex_decode(s, TRACEID_BYTES, t.b)) {
        return TRACEID_ESYNTAX;
    }
    if (all_zero(t.b, TRACEID_BYTES)) {
        return TRACEID_EZERO;
    }
    *out = t;
    return 0;
}

size_t traceid_format_sofa(const struct traceid *t, char out[TRACEID_SOFA_LEN_MAX + 1])
{
    struct traceid_parts p;
    traceid_parts(t, &p);
    CC_ASSERT(p.unix_ms <= TRACEID_MS_MAX);
    CC_ASSERT(p.sequence >= TRACEID_SEQ_MIN && p.sequence <= TRACEID_SEQ_MAX);
    int n = snprintf(out, TRACEID_SOFA_LEN_MAX + 1, "%08x%013lld%04u%u", (unsigned)p.ipv4,
                     (long long)p.unix_ms, (unsigned)p.sequence, (unsigned)p.pid);
    CC_ASSERT(n > 0 && (size_t)n <= TRACEID_SOFA_LEN_MAX);
    return (size_t)n;
}

/* Parses n decimal digits; false on a non-digit. */
static bool parse_dec(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *v = x;
    return true;
}

int traceid_parse_sofa(const char *s, size_t n, struct traceid *out)
{
    if (s == NULL || n < 8 + 13 + 4 + 1 || n > TRACEID_SOFA_LEN_MAX) {
        return TRACEID_ESYNTAX;
    }
    uint8_t ip[4];
    uint64_t ms, seq, pid;
    size_t pid_len = n - 25;
    if (!hex_decode(s, 4, ip) || !parse_dec(s + 8, 13, &ms) || !parse_dec(s + 21, 4, &seq) ||
        !parse_dec(s + 25, pid_len, &pid) || seq < TRACEID_SEQ_MIN ||
        (pid_len > 1 && s[25] == '0') || pid > UINT32_MAX) {
        return TRACEID_ESYNTAX;
    }
    struct traceid_parts p = {(uint32_t)get_be(ip, 4), (int64_t)ms, (uint32_t)seq, (uint32_t)pid};
    compose(&p, out);
    return 0;
}

/* ==== traceparent ======================================================== */

int traceparent_format(const struct traceid *t, uint64_t parent_id, uint8_t flags,
                       char out[TRACEPARENT_LEN + 1])
{
    if (parent_id == 0 || all_zero(t->b, TRACEID_BYTES)) {
        return TRACEID_EZERO;
    }
    uint8_t pid[8], fl[1] = {flags};
    put_be(pid, parent_id, 8);
    memcpy(out, "00-", 3);
    hex_encode(t->b, TRACEID_BYTES, out + 3);
    out[35] = '-';
    hex_encode(pid, 8, out + 36);
    out[52] = '-';
    hex_encode(fl, 1, out + 53);
    out[TRACEPARENT_LEN] = '\0';
    return 0;
}

int traceparent_parse(const char *s, size_t n, struct traceparent *out)
{
    CC_ASSERT(out != NULL);
    uint8_t version, pid[8], flags;
    struct traceid t;
    if (s == NULL || n < TRACEPARENT_LEN || !hex_decode(s, 1, &version) || s[2] != '-' ||
        !hex_decode(s + 3, TRACEID_BYTES, t.b) || s[35] != '-' || !hex_decode(s + 36, 8, pid) ||
        s[52] != '-' || !hex_decode(s + 53, 1, &flags)) {
        return TRACEID_ESYNTAX;
    }
    if (version == 0xff) {
        return TRACEID_EVERSION;
    }
    /* Version 00 is exactly 55 characters; a later version may append "-..." */
    if (n > TRACEPARENT_LEN && (version == 0 || s[TRACEPARENT_LEN] != '-')) {
        return TRACEID_ESYNTAX;
    }
    if (all_zero(t.b, TRACEID_BYTES) || all_zero(pid, 8)) {
        return TRACEID_EZERO;
    }
    out->version = version;
    out->trace_id = t;
    out->parent_id = get_be(pid, 8);
    out->flags = flags;
    return 0;
}

/* ==== span ids =========================================================== */

int traceid_span_check(const char *span, size_t n, uint32_t *depth)
{
    if (n > TRACEID_SPAN_LEN_MAX) {
        return TRACEID_ESPANLEN;
    }
    if (span == NULL || n == 0 || span[0] != '0' || (n > 1 && span[1] != '.')) {
        return TRACEID_ESYNTAX;
    }
    uint32_t d = 1;
    size_t i = 1;
    while (i < n) {
        CC_ASSERT(span[i] == '.');
        i++; /* the dot */
        size_t start = i;
        uint64_t v = 0;
        while (i < n && span[i] != '.') {
            if (span[i] < '0' || span[i] > '9') {
                return TRACEID_ESYNTAX;
            }
            v = v * 10 + (uint64_t)(span[i] - '0'); /* stays <= 10 * INDEX_MAX + 9 */
            if (v > TRACEID_SPAN_INDEX_MAX) {
                return TRACEID_EINDEX;
            }
            i++;
        }
        if (i == start || span[start] == '0') {
            return TRACEID_ESYNTAX; /* empty component, leading zero, or 0 below the root */
        }
        d++;
        if (d > TRACEID_SPAN_DEPTH_MAX) {
            return TRACEID_EDEPTH;
        }
    }
    if (depth != NULL) {
        *depth = d;
    }
    return 0;
}

/* Writes prefix (n bytes) + "." + index + NUL into out. */
static int span_write(const char *prefix, size_t n, uint32_t index, char *out, size_t cap,
                      size_t *out_len)
{
    char digits[16];
    int k = snprintf(digits, sizeof digits, "%u", (unsigned)index);
    CC_ASSERT(k > 0 && (size_t)k < sizeof digits);
    size_t len = n + 1 + (size_t)k;
    if (len > TRACEID_SPAN_LEN_MAX) {
        return TRACEID_ESPANLEN;
    }
    if (out == NULL || cap < len + 1) {
        return TRACEID_ESPACE;
    }
    memmove(out, prefix, n); /* out may alias prefix (next_sibling in place) */
    out[n] = '.';
    memcpy(out + n + 1, digits, (size_t)k);
    out[len] = '\0';
    if (out_len != NULL) {
        *out_len = len;
    }
    return 0;
}

int traceid_span_child(const char *span, size_t n, uint32_t index, char *out, size_t cap,
                       size_t *out_len)
{
    uint32_t depth;
    int rv = traceid_span_check(span, n, &depth);
    if (rv != 0) {
        return rv;
    }
    if (index == 0) {
        return TRACEID_ESYNTAX;
    }
    if (index > TRACEID_SPAN_INDEX_MAX) {
        return TRACEID_EINDEX;
    }
    if (depth + 1 > TRACEID_SPAN_DEPTH_MAX) {
        return TRACEID_EDEPTH;
    }
    return span_write(span, n, index, out, cap, out_len);
}

int traceid_span_next_sibling(const char *span, size_t n, char *out, size_t cap, size_t *out_len)
{
    uint32_t depth;
    int rv = traceid_span_check(span, n, &depth);
    if (rv != 0) {
        return rv;
    }
    if (depth == 1) {
        return TRACEID_EROOT;
    }
    size_t dot = n;
    while (dot > 0 && span[dot - 1] != '.') {
        dot--;
    }
    CC_ASSERT(dot >= 2);
    uint64_t last;
    bool ok = parse_dec(span + dot, n - dot, &last);
    CC_ASSERT(ok);
    if (last + 1 > TRACEID_SPAN_INDEX_MAX) {
        return TRACEID_EINDEX;
    }
    return span_write(span, dot - 1, (uint32_t)(last + 1), out, cap, out_len);
}

uint64_t traceid_span_w3c_id(const struct traceid *t, const char *span, size_t n)
{
    uint64_t h = hash_fnv1a64(HASH_FNV_INIT, t->b, TRACEID_BYTES);
    h = hash_fnv1a64(h, span, n);
    return h != 0 ? h : 1; /* W3C forbids an all-zero parent-id */
}

void traceid_span_root(struct traceid_span *s)
{
    memset(s, 0, sizeof *s);
    s->id[0] = '0';
    s->len = 1;
}

int traceid_span_from(struct traceid_span *s, const char *span, size_t n)
{
    int rv = traceid_span_check(span, n, NULL);
    if (rv != 0) {
        return rv;
    }
    memset(s, 0, sizeof *s);
    memcpy(s->id, span, n);
    s->len = n;
    return 0;
}

int traceid_span_fork(struct traceid_span *parent, struct traceid_span *child)
{
    CC_ASSERT(parent != child);
    struct traceid_span c;
    memset(&c, 0, sizeof c);
    if (parent->n_children >= TRACEID_SPAN_INDEX_MAX) {
        return TRACEID_EINDEX;
    }
    int rv = traceid_span_child(parent->id, parent->len, parent->n_children + 1, c.id, sizeof c.id,
                                &c.len);
    if (rv != 0) {
        return rv;
    }
    parent->n_children++;
    *child = c;
    return 0;
}

/* ==== errors ============================================================= */

const char *traceid_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case TRACEID_ECLOCK:
        return "clock outside the 13-digit millisecond range";
    case TRACEID_ESYNTAX:
        return "malformed trace id, traceparent or span id";
    case TRACEID_EVERSION:
        return "traceparent version ff is invalid";
    case TRACEID_EZERO:
        return "all-zero trace-id or parent-id";
    case TRACEID_EDEPTH:
        return "span id deeper than TRACEID_SPAN_DEPTH_MAX";
    case TRACEID_EINDEX:
        return "span id component above TRACEID_SPAN_INDEX_MAX";
    case TRACEID_ESPANLEN:
        return "span id longer than TRACEID_SPAN_LEN_MAX";
    case TRACEID_EROOT:
        return "the root span has no sibling";
    case TRACEID_ESPACE:
        return "output buffer too small";
    default:
        return "unknown traceid error";
    }
}
