/* fuzz_resp.c -- arbitrary bytes as one RESP connection's input, through api/resp_proto's
 * request parser, fed in pieces of varying size the way a socket delivers them.
 *
 * What must hold for every input:
 *   - no crash, no out-of-bounds access, no leak (ASan), no assertion, no endless loop;
 *   - every argument view lies inside the parser's buffer and within the limits;
 *   - split invariance: the commands and the final code are the same whether the
 *     bytes come in the fuzzer's pieces (through reserve/commit) or all at once;
 *   - round trip: every command, re-encoded as a multibulk request with resp_out and
 *     parsed by a fresh parser, comes back as exactly one command with the same argv;
 *   - a protocol error has Redis's "Protocol error: ..." text.
 *
 * Input: byte 0 picks the mode (bit 0 small limits, bit 1 unauthenticated, bit 2 a
 * tiny query buffer, which disables the split-invariance check since how much is held
 * then depends on the pieces), byte 1 seeds the piece sizes. The rest is the
 * connection's bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/resp_proto.h"
#include "base/assert.h"
#include "base/hash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_sum {
    uint64_t n_cmds;
    uint64_t hash; /* FNV-1a over argc, lengths and bytes of every command */
    int final;     /* the code that ended the parse */
};

static void fz_hash_cmd(struct fz_sum *s, const struct resp_cmd *c)
{
    s->n_cmds++;
    s->hash = hash_fnv1a64(s->hash, &c->argc, sizeof(c->argc));
    for (uint32_t i = 0; i < c->argc; i++) {
        const uint64_t len = c->argv[i].len;
        s->hash = hash_fnv1a64(s->hash, &len, sizeof(len));
        s->hash = hash_fnv1a64(s->hash, c->argv[i].ptr, c->argv[i].len);
    }
}

/* Every view is inside the parser's buffer and obeys the limits. */
static void fz_check_views(const struct resp_parser *p, const struct resp_cmd *c)
{
    CC_ASSERT(c->argc >= 1);
    CC_ASSERT(c->is_inline || c->argc <= p->lim.multibulk_max);
    for (uint32_t i = 0; i < c->argc; i++) {
        const struct resp_arg *a = &c->argv[i];
        CC_ASSERT(a->len <= p->lim.arg_bytes_max);
        CC_ASSERT(a->ptr >= p->buf);
        CC_ASSERT(a->ptr + a->len <= p->buf + p->len);
        if (c->is_inline) {
            CC_ASSERT(a->len > 0); /* empty inline words are dropped */
        }
    }
}

/* Re-encodes c as a multibulk request, parses it back, and compares. */
static void fz_roundtrip(const struct resp_cmd *c)
{
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    CC_ASSERT(resp_out_array(&o, c->argc) == 0);
    for (uint32_t i = 0; i < c->argc; i++) {
        CC_ASSERT(resp_out_bulk(&o, c->argv[i].ptr, c->argv[i].len) == 0);
    }
    size_t n;
    const uint8_t *bytes = resp_out_data(&o, &n);

    struct resp_parser q;
    CC_ASSERT(resp_parser_init(&q, NULL) == 0);
    CC_ASSERT(resp_parser_feed(&q, bytes, n) == 0);
    struct resp_cmd back;
    CC_ASSERT(resp_parser_next(&q, &back) == 0);
    CC_ASSERT(!back.is_inline);
    CC_ASSERT(back.argc == c->argc);
    for (uint32_t i = 0; i < c->argc; i++) {
        CC_ASSERT(back.argv[i].len == c->argv[i].len);
        CC_ASSERT(memcmp(back.argv[i].ptr, c->argv[i].ptr, c->argv[i].len) == 0);
    }
    CC_ASSERT(resp_parser_next(&q, &back) == RESP_EAGAIN);
    resp_parser_free(&q);
    resp_out_free(&o);
}

/* Pulls every ready command; returns the code that stopped it. */
static int fz_drain(struct resp_parser *p, struct fz_sum *s, bool roundtrip)
{
    struct resp_cmd c;
    for (;;) { /* each round consumes input, and a parser holds finitely many bytes */
        const int rv = resp_parser_next(p, &c);
        if (rv != 0) {
            CC_ASSERT(rv < 0);
            return rv;
        }
        fz_check_views(p, &c);
        fz_hash_cmd(s, &c);
        if (roundtrip) {
            fz_roundtrip(&c);
        }
    }
}

static void fz_limits(uint8_t mode, size_t size, struct resp_limits *lim)
{
    resp_limits_default(lim);
    if (mode & 1) {
        lim->inline_bytes_max = 16 + (mode >> 3) * 8;
        lim->arg_bytes_max = lim->inline_bytes_max + (mode >> 4) * 40;
        lim->multibulk_max = 1 + (mode >> 5);
    }
    const uint64_t query_min = lim->arg_bytes_max + 2ull * lim->inline_bytes_max;
    /* large enough that feeding everything at once never overflows it */
    lim->query_bytes_max = query_min > size + 1 ? query_min : size + 1;
    if (mode & 4) {
        lim->query_bytes_max = query_min;
    }
}

static struct fz_sum fz_run_pieces(const struct resp_limits *lim, bool unauth, uint8_t seed,
                                   const uint8_t *p, size_t n)
{
    struct fz_sum s = {.hash = HASH_FNV_INIT, .final = RESP_EAGAIN};
    struct resp_parser ps;
    CC_ASSERT(resp_parser_init(&ps, lim) == 0);
    resp_parser_set_authenticated(&ps, !unauth);
    uint32_t x = seed * 2654435761u + 1; /* piece sizes: a small LCG, deterministic */
    size_t off = 0;
    while (off < n) {
        x = x * 1664525u + 1013904223u;
        size_t want = 1 + (x >> 24) % 64;
        if (((x >> 8) & 7) == 0) {
            want = 1 + (x >> 12) % 4096; /* now and then a big read */
        }
        if (want > n - off) {
            want = n - off;
        }
        void *dst;
        size_t room;
        const int rv = resp_parser_reserve(&ps, want, &dst, &room);
        if (rv != 0) {
            s.final = rv;
            break;
        }
        CC_ASSERT(room >= 1);
        const size_t k = room < want ? room : want;
        memcpy(dst, p + off, k);
        resp_parser_commit(&ps, k);
        off += k;
        s.final = fz_drain(&ps, &s, true);
        if (s.final != RESP_EAGAIN) {
            break;
        }
    }
    if (s.final != RESP_EAGAIN) {
        CC_ASSERT(strncmp(resp_parser_errmsg(&ps), "Protocol error: ", 16) == 0);
        struct resp_cmd c;
        CC_ASSERT(resp_parser_next(&ps, &c) == s.final); /* terminal */
    }
    resp_parser_free(&ps);
    return s;
}

static struct fz_sum fz_run_once(const struct resp_limits *lim, bool unauth, const uint8_t *p,
                                 size_t n)
{
    struct fz_sum s = {.hash = HASH_FNV_INIT, .final = RESP_EAGAIN};
    struct resp_parser ps;
    CC_ASSERT(resp_parser_init(&ps, lim) == 0);
    resp_parser_set_authenticated(&ps, !unauth);
    const int rv = resp_parser_feed(&ps, p, n);
    CC_ASSERT(rv == 0);
    s.final = fz_drain(&ps, &s, false);
    resp_parser_free(&ps);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    const uint8_t mode = data[0];
    const uint8_t seed = data[1];
    const uint8_t *p = data + 2;
    const size_t n = size - 2;
    struct resp_limits lim;
    fz_limits(mode, n, &lim);
    const bool unauth = (mode & 2) != 0;

    const struct fz_sum a = fz_run_pieces(&lim, unauth, seed, p, n);
    if (!(mode & 4)) {
        const struct fz_sum b = fz_run_once(&lim, unauth, p, n);
        CC_ASSERT(a.n_cmds == b.n_cmds);
        CC_ASSERT(a.hash == b.hash);
        CC_ASSERT(a.final == b.final);
    }
    return 0;
}
