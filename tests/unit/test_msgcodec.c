/* test_msgcodec.c -- unit tests for node/msgcodec: round trips of every message type with
 * random contents (fixed seeds), the largest messages, a named error for every rule,
 * every truncation of valid frames, and random garbage.
 *
 * The rule checked throughout: decode either refuses with a named error or returns a
 * message that re-encodes to exactly the input bytes.
 *
 * Sections: helpers | round trips | limits | named errors | truncation and garbage | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/le.h"
#include "base/prng.h"
#include "node/msgcodec.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define POOL_BYTES (RAFT_APPEND_ENTRIES_MAX * 4096 + MSGCODEC_CHUNK_BYTES_MAX)

#define ASSERT_RV(expr, want)                                                                 \
    do {                                                                                      \
        const int rv_ = (expr);                                                               \
        if (rv_ != (want)) {                                                                  \
            fail_msg("%s returned %d (%s), want %d (%s)", #expr, rv_, msgcodec_strerror(rv_), \
                     (want), msgcodec_strerror(want));                                        \
        }                                                                                     \
    } while (0)

/* Storage a generated message points into. */
struct gen {
    struct prng prng;
    struct raft_entry entries[RAFT_APPEND_ENTRIES_MAX];
    uint8_t *pool;
};

static void gen_init(struct gen *g, uint64_t seed)
{
    prng_seed(&g->prng, seed);
    g->pool = malloc(POOL_BYTES);
    assert_non_null(g->pool);
}

static void gen_free(struct gen *g)
{
    free(g->pool);
}

static uint64_t rnd(struct gen *g, uint64_t n)
{
    return prng_below(&g->prng, n);
}

/* A value with interesting magnitudes: 0, small, or full 64-bit. */
static uint64_t rnd_u64(struct gen *g)
{
    switch (rnd(g, 4)) {
    case 0:
        return 0;
    case 1:
        return rnd(g, 100);
    case 2:
        return UINT64_MAX - rnd(g, 3);
    default:
        return prng_next(&g->prng);
    }
}

static void gen_config(struct gen *g, struct raft_config *c)
{
    memset(c, 0, sizeof(*c));
    c->n_servers = (uint32_t)rnd(g, RAFT_SERVERS_MAX + 1);
    for (uint32_t i = 0; i < c->n_servers; i++) {
        c->servers[i].id = (uint32_t)(i * 1000 + 1 + rnd(g, 999)); /* distinct, nonzero */
        c->servers[i].role = (uint8_t)(1 + rnd(g, 2));
    }
}

/* Gives m exactly n random entries of up to bytes_max bytes each. */
static void gen_entries(struct gen *g, struct raft_msg *m, uint32_t n, uint32_t bytes_max)
{
    size_t used = 0;
    m->append.n_entries = n;
    m->append.entries = n ? g->entries : NULL;
    for (uint32_t i = 0; i < n; i++) {
        struct raft_entry *e = &g->entries[i];
        e->term = rnd_u64(g);
        e->index = rnd_u64(g);
        e->type = (uint8_t)(1 + rnd(g, 3));
        e->n_bytes = (uint32_t)rnd(g, (uint64_t)bytes_max + 1);
        assert_true(used + e->n_bytes <= POOL_BYTES);
        e->bytes = e->n_bytes ? g->pool + used : NULL;
        for (uint32_t k = 0; k < e->n_bytes; k++) {
            e->bytes[k] = (uint8_t)prng_next(&g->prng);
        }
        used += e->n_bytes;
    }
}

/* A random valid message of the given type. n_entries_max and entry_bytes_max bound an
 * APPEND; the bytes live in g->pool. */
static void gen_msg(struct gen *g, uint8_t type, struct raft_msg *m, uint32_t n_entries_max,
                    uint32_t entry_bytes_max)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = (uint32_t)prng_next(&g->prng);
    m->to = (uint32_t)prng_next(&g->prng);
    m->term = rnd_u64(g);
    switch (type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        m->vote.last_log_index = rnd_u64(g);
        m->vote.last_log_term = rnd_u64(g);
        m->vote.transfer = rnd(g, 2);
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        m->vote_resp.granted = rnd(g, 2);
        break;
    case RAFT_MSG_APPEND:
        m->append.prev_index = rnd_u64(g);
        m->append.prev_term = rnd_u64(g);
        m->append.commit = rnd_u64(g);
        gen_entries(g, m, (uint32_t)rnd(g, (uint64_t)n_entries_max + 1), entry_bytes_max);
        break;
    case RAFT_MSG_APPEND_RESP:
        m->append_resp.reject = rnd(g, 2);
        m->append_resp.index = rnd_u64(g);
        m->append_resp.hint_index = rnd_u64(g);
        m->append_resp.hint_term = rnd_u64(g);
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        m->heartbeat.commit = rnd_u64(g);
        m->heartbeat.round = rnd_u64(g);
        break;
    case RAFT_MSG_SNAPSHOT:
        m->snapshot.index = rnd_u64(g);
        m->snapshot.term = rnd_u64(g);
        gen_config(g, &m->snapshot.config);
        m->snapshot.n_total = rnd_u64(g);
        m->snapshot.offset = rnd_u64(g);
        m->snapshot.n_bytes = (uint32_t)rnd(g, 4097);
        m->snapshot.bytes = m->snapshot.n_bytes ? g->pool : NULL;
        for (uint32_t k = 0; k < m->snapshot.n_bytes; k++) {
            g->pool[k] = (uint8_t)prng_next(&g->prng);
        }
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        m->snapshot_resp.index = rnd_u64(g);
        m->snapshot_resp.offset = rnd_u64(g);
        m->snapshot_resp.done = rnd(g, 2);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        m->read.read_id = rnd_u64(g);
        m->read.index = rnd_u64(g);
        m->read.status = (int32_t)(uint32_t)prng_next(&g->prng);
        break;
    default:
        fail_msg("bad type %u", type);
    }
}

/* Encodes m as a frame into a fresh buffer; *n_out gets its length. */
static uint8_t *frame_of(const struct raft_msg *m, size_t *n_out)
{
    const uint64_t n = MSGCODEC_HEADER_BYTES + msgcodec_payload_size(m);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    ASSERT_RV(msgcodec_frame_encode_raft(m, buf, (size_t)n, n_out), 0);
    assert_int_equal(*n_out, n);
    return buf;
}

/* decode(encode(m)) == m, and re-encoding the decoded message gives the same bytes. */
static void check_round_trip(const struct raft_msg *m, struct msgcodec_scratch *scratch)
{
    const uint64_t size = msgcodec_payload_size(m);
    uint8_t *buf = malloc((size_t)size);
    uint8_t *again = malloc((size_t)size);
    assert_non_null(buf);
    assert_non_null(again);
    size_t n = 0;
    ASSERT_RV(msgcodec_encode(m, buf, (size_t)size, &n), 0);
    assert_int_equal(n, size);
    struct raft_msg d;
    ASSERT_RV(msgcodec_decode(buf, n, &d, scratch), 0);
    if (!msgcodec_msg_equal(m, &d)) {
        fail_msg("round trip of %s (%zu bytes) changed the message", raft_msg_type_name(m->type),
                 n);
    }
    size_t n_again = 0;
    ASSERT_RV(msgcodec_encode(&d, again, (size_t)size, &n_again), 0);
    assert_int_equal(n_again, n);
    assert_memory_equal(buf, again, n);
    free(again);
    free(buf);
}

/* ---- round trips ------------------------------------------------------------------ */

static void test_round_trip_every_type(void **state)
{
    struct gen g;
    gen_init(&g, 0xC0DEC);
    struct msgcodec_scratch scratch;
    for (unsigned type = 1; type <= RAFT_MSG_TYPE_MAX; type++) {
        for (int i = 0; i < 300; i++) {
            struct raft_msg m;
            gen_msg(&g, (uint8_t)type, &m, 8, 200);
            check_round_trip(&m, &scratch);
        }
    }
    gen_free(&g);
}

static void test_frame_round_trip(void **state)
{
    struct gen g;
    gen_init(&g, 77);
    struct msgcodec_scratch scratch;
    for (unsigned type = 1; type <= RAFT_MSG_TYPE_MAX; type++) {
        struct raft_msg m;
        gen_msg(&g, (uint8_t)type, &m, 4, 64);
        size_t n = 0;
        uint8_t *buf = frame_of(&m, &n);
        assert_memory_equal(buf, "CNCL", 4);
        assert_int_equal(buf[4], MSGCODEC_VERSION);
        assert_int_equal(buf[5], MSGCODEC_KIND_RAFT);
        assert_int_equal(le_get_u32(buf + 8), n - MSGCODEC_HEADER_BYTES);
        assert_int_equal(le_get_u32(buf + 12),
                         crc32c(0, buf + MSGCODEC_HEADER_BYTES, n - MSGCODEC_HEADER_BYTES));
        struct msgcodec_frame f;
        ASSERT_RV(msgcodec_frame_decode(buf, n, &f, &scratch), 0);
        assert_int_equal(f.kind, MSGCODEC_KIND_RAFT);
        assert_true(msgcodec_msg_equal(&m, &f.msg));
        free(buf);
    }
    const struct msgcodec_hello hello = {.id = 7, .cluster_id = 0x1122334455667788u};
    uint8_t buf[MSGCODEC_HEADER_BYTES + MSGCODEC_HELLO_BYTES];
    size_t n = 0;
    ASSERT_RV(msgcodec_frame_encode_hello(&hello, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, sizeof(buf));
    struct msgcodec_frame f;
    ASSERT_RV(msgcodec_frame_decode(buf, n, &f, &scratch), 0);
    assert_int_equal(f.kind, MSGCODEC_KIND_HELLO);
    assert_int_equal(f.hello.id, 7);
    assert_int_equal(f.hello.cluster_id, 0x1122334455667788u);
    gen_free(&g);
}

/* Hand-checked layout of one message, so the format in msgcodec.h cannot drift. */
static void test_known_bytes(void **state)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HEARTBEAT;
    m.from = 0x01020304;
    m.to = 5;
    m.term = 6;
    m.heartbeat.commit = 7;
    m.heartbeat.round = 8;
    uint8_t buf[64];
    size_t n = 0;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), 0);
    const uint8_t want[] = {RAFT_MSG_HEARTBEAT,
                            4,
                            3,
                            2,
                            1,
                            5,
                            0,
                            0,
                            0,
                            6,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            7,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            8,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

/* ---- limits ----------------------------------------------------------------------- */

static void test_max_entries(void **state)
{
    struct gen g;
    gen_init(&g, 5);
    struct msgcodec_scratch scratch;
    /* a full entry list, several KiB each */
    for (int i = 0; i < 20; i++) {
        struct raft_msg m;
        gen_msg(&g, RAFT_MSG_APPEND, &m, 0, 0);
        gen_entries(&g, &m, RAFT_APPEND_ENTRIES_MAX, 4096);
        check_round_trip(&m, &scratch);
    }
    /* one largest entry among 63 small ones: still fits one frame */
    struct raft_msg m;
    gen_msg(&g, RAFT_MSG_APPEND, &m, 1, 16);
    for (uint32_t i = 0; i < RAFT_APPEND_ENTRIES_MAX; i++) {
        g.entries[i] = (struct raft_entry){.term = 3, .index = 10 + i, .type = 1, .n_bytes = 1};
        g.entries[i].bytes = g.pool + i;
    }
    g.entries[17].n_bytes = RAFT_ENTRY_BYTES_MAX;
    g.entries[17].bytes = g.pool + 4096;
    m.append.n_entries = RAFT_APPEND_ENTRIES_MAX;
    m.append.entries = g.entries;
    check_round_trip(&m, &scratch);
    size_t n = 0;
    uint8_t *frame = frame_of(&m, &n);
    struct msgcodec_frame f;
    ASSERT_RV(msgcodec_frame_decode(frame, n, &f, &scratch), 0);
    assert_true(msgcodec_msg_equal(&m, &f.msg));
    free(frame);
    /* a largest snapshot chunk with a full configuration fits one frame */
    gen_msg(&g, RAFT_MSG_SNAPSHOT, &m, 0, 0);
    gen_config(&g, &m.snapshot.config);
    m.snapshot.n_bytes = MSGCODEC_CHUNK_BYTES_MAX;
    m.snapshot.bytes = g.pool;
    check_round_trip(&m, &scratch);
    frame = frame_of(&m, &n);
    free(frame);
    gen_free(&g);
}

/* An APPEND larger than a frame is refused by the frame encoder; append_fit() finds the
 * prefix that fits exactly. */
static void test_append_fit(void **state)
{
    struct gen g;
    gen_init(&g, 9);
    uint8_t *big = calloc(1, RAFT_ENTRY_BYTES_MAX);
    assert_non_null(big);
    struct raft_msg m;
    gen_msg(&g, RAFT_MSG_APPEND, &m, 0, 0);
    for (uint32_t i = 0; i < RAFT_APPEND_ENTRIES_MAX; i++) {
        g.entries[i] = (struct raft_entry){.term = 1, .index = 1 + i, .type = 1};
        g.entries[i].n_bytes = RAFT_ENTRY_BYTES_MAX;
        g.entries[i].bytes = big;
    }
    m.append.n_entries = RAFT_APPEND_ENTRIES_MAX;
    m.append.entries = g.entries;
    assert_true(msgcodec_payload_size(&m) > MSGCODEC_PAYLOAD_BYTES_MAX);
    size_t n = 0;
    uint8_t hdr[MSGCODEC_HEADER_BYTES];
    ASSERT_RV(msgcodec_frame_encode_raft(&m, hdr, sizeof(hdr), &n), MSGCODEC_EFRAMETOOBIG);
    const uint32_t k = msgcodec_append_fit(&m, MSGCODEC_PAYLOAD_BYTES_MAX);
    assert_int_equal(k, 1); /* two 1 MiB entries exceed 2 MiB with headers */
    m.append.n_entries = k;
    assert_true(msgcodec_payload_size(&m) <= MSGCODEC_PAYLOAD_BYTES_MAX);
    /* exact boundaries */
    for (uint32_t i = 0; i < RAFT_APPEND_ENTRIES_MAX; i++) {
        g.entries[i].n_bytes = 100;
    }
    m.append.n_entries = RAFT_APPEND_ENTRIES_MAX;
    const uint64_t per = MSGCODEC_ENTRY_FIXED_BYTES + 100;
    assert_int_equal(msgcodec_append_fit(&m, MSGCODEC_APPEND_FIXED_BYTES - 1), 0);
    assert_int_equal(msgcodec_append_fit(&m, MSGCODEC_APPEND_FIXED_BYTES), 0);
    assert_int_equal(msgcodec_append_fit(&m, MSGCODEC_APPEND_FIXED_BYTES + 3 * per), 3);
    assert_int_equal(msgcodec_append_fit(&m, MSGCODEC_APPEND_FIXED_BYTES + 4 * per - 1), 3);
    assert_int_equal(msgcodec_append_fit(&m, UINT64_MAX), RAFT_APPEND_ENTRIES_MAX);
    free(big);
    gen_free(&g);
}

/* ---- named errors ----------------------------------------------------------------- */

/* Encodes m, lets edit() damage the payload, and expects decode to fail with want. */
static void expect_decode_error(const struct raft_msg *m, size_t at, uint8_t byte, int want)
{
    uint8_t buf[4096];
    size_t n = 0;
    ASSERT_RV(msgcodec_encode(m, buf, sizeof(buf), &n), 0);
    assert_true(at < n);
    buf[at] = byte;
    struct msgcodec_scratch scratch;
    struct raft_msg d;
    ASSERT_RV(msgcodec_decode(buf, n, &d, &scratch), want);
}

static void test_decode_errors(void **state)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_VOTE;
    m.from = 1;
    m.to = 2;
    m.term = 3;
    /* type */
    expect_decode_error(&m, 0, 0, MSGCODEC_ETYPE);
    expect_decode_error(&m, 0, RAFT_MSG_TYPE_MAX + 1, MSGCODEC_ETYPE);
    expect_decode_error(&m, 0, 0xff, MSGCODEC_ETYPE);
    /* bool */
    expect_decode_error(&m, MSGCODEC_HEAD_BYTES + 16, 2, MSGCODEC_EBOOL);

    /* entries: count, type, size */
    uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct raft_entry e[2] = {{.term = 1, .index = 1, .type = 1, .n_bytes = 8, .bytes = bytes},
                              {.term = 1, .index = 2, .type = 3, .n_bytes = 0}};
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.append.n_entries = 2;
    m.append.entries = e;
    const size_t at_count = MSGCODEC_HEAD_BYTES + 24;
    expect_decode_error(&m, at_count, RAFT_APPEND_ENTRIES_MAX + 1, MSGCODEC_ETOOMANY);
    expect_decode_error(&m, at_count, 3, MSGCODEC_ETRUNCATED); /* claims a third entry */
    expect_decode_error(&m, at_count, 1, MSGCODEC_ETRAILING);  /* second entry left over */
    const size_t at_etype = MSGCODEC_APPEND_FIXED_BYTES + 16;
    expect_decode_error(&m, at_etype, 0, MSGCODEC_EENTRYTYPE);
    expect_decode_error(&m, at_etype, 4, MSGCODEC_EENTRYTYPE);
    const size_t at_nbytes_hi = MSGCODEC_APPEND_FIXED_BYTES + 17 + 2; /* byte 2 of n_bytes */
    expect_decode_error(&m, at_nbytes_hi, 0x10, MSGCODEC_ETOOBIG);    /* 1 MiB + 8 */
    expect_decode_error(&m, at_nbytes_hi, 0x01, MSGCODEC_ETRUNCATED); /* 64 KiB + 8 */

    /* snapshot: configuration and chunk size */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_SNAPSHOT;
    m.from = 1;
    m.to = 2;
    m.snapshot.index = 5;
    m.snapshot.term = 1;
    m.snapshot.config.n_servers = 2;
    m.snapshot.config.servers[0] = (struct raft_server){.id = 1, .role = RAFT_VOTER};
    m.snapshot.config.servers[1] = (struct raft_server){.id = 2, .role = RAFT_LEARNER};
    m.snapshot.n_bytes = 8;
    m.snapshot.bytes = bytes;
    const size_t at_cfg = MSGCODEC_HEAD_BYTES + 16;
    expect_decode_error(&m, at_cfg, RAFT_SERVERS_MAX + 1, MSGCODEC_ECONFIG);
    expect_decode_error(&m, at_cfg + 4, 2, MSGCODEC_ECONFIG);     /* duplicate id 2 */
    expect_decode_error(&m, at_cfg + 4, 0, MSGCODEC_ECONFIG);     /* id 0 */
    expect_decode_error(&m, at_cfg + 4 + 4, 3, MSGCODEC_ECONFIG); /* role 3 */
    const size_t at_chunk_hi = at_cfg + 4 + 10 + 16 + 2;
    expect_decode_error(&m, at_chunk_hi, 0x10, MSGCODEC_ETOOBIG);
}

static void test_encode_errors(void **state)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    uint8_t buf[256];
    size_t n = 0;
    m.type = 0;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ETYPE);
    m.type = RAFT_MSG_TYPE_MAX + 1;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ETYPE);
    m.type = RAFT_MSG_HEARTBEAT;
    ASSERT_RV(msgcodec_encode(&m, buf, MSGCODEC_HEAD_BYTES + 15, &n), MSGCODEC_ENOSPC);
    ASSERT_RV(msgcodec_encode(&m, buf, MSGCODEC_HEAD_BYTES + 16, &n), 0);
    ASSERT_RV(msgcodec_frame_encode_raft(&m, buf, 8, &n), MSGCODEC_ENOSPC);

    m.type = RAFT_MSG_APPEND;
    m.append.n_entries = 1;
    m.append.entries = NULL;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_EINVAL);
    struct raft_entry e = {.type = 1, .n_bytes = 4, .bytes = NULL};
    m.append.entries = &e;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_EINVAL);
    e.type = 9;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_EENTRYTYPE);
    e.type = 1;
    e.n_bytes = RAFT_ENTRY_BYTES_MAX + 1;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ETOOBIG);
    m.append.n_entries = RAFT_APPEND_ENTRIES_MAX + 1;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ETOOMANY);

    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_SNAPSHOT;
    m.snapshot.config.n_servers = RAFT_SERVERS_MAX + 1;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ECONFIG);
    m.snapshot.config.n_servers = 1;
    m.snapshot.config.servers[0].id = 0;
    m.snapshot.config.servers[0].role = RAFT_VOTER;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ECONFIG);
    m.snapshot.config.servers[0].id = 4;
    m.snapshot.n_bytes = MSGCODEC_CHUNK_BYTES_MAX + 1;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_ETOOBIG);
    m.snapshot.n_bytes = 3;
    ASSERT_RV(msgcodec_encode(&m, buf, sizeof(buf), &n), MSGCODEC_EINVAL);

    const struct msgcodec_hello zero = {.id = 0, .cluster_id = 1};
    ASSERT_RV(msgcodec_frame_encode_hello(&zero, buf, sizeof(buf), &n), MSGCODEC_EHELLO);
    assert_string_not_equal(msgcodec_strerror(MSGCODEC_EHELLO), "unknown msgcodec error");
}

static void test_frame_errors(void **state)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_TIMEOUT_NOW;
    m.from = 1;
    m.to = 2;
    uint8_t good[64];
    size_t n = 0;
    ASSERT_RV(msgcodec_frame_encode_raft(&m, good, sizeof(good), &n), 0);
    struct msgcodec_scratch scratch;
    struct msgcodec_frame f;
    uint8_t buf[65];
    assert_int_equal(n, MSGCODEC_HEADER_BYTES + MSGCODEC_HEAD_BYTES); /* payload_len 0x11 */
    struct {
        size_t at;
        uint8_t flip; /* xor mask */
        int want;
    } cases[] = {
        {0, 0x20, MSGCODEC_EMAGIC},        {3, 0x01, MSGCODEC_EMAGIC},
        {4, 0x01, MSGCODEC_EVERSION}, /* 0 */
        {4, 0x03, MSGCODEC_EVERSION}, /* 2 */
        {5, 0x02, MSGCODEC_EKIND},    /* 0 */
        {5, 0x01, MSGCODEC_EKIND},    /* 3 */
        {6, 0x01, MSGCODEC_ERESERVED},     {7, 0x80, MSGCODEC_ERESERVED},
        {11, 0x01, MSGCODEC_EFRAMETOOBIG}, /* 16 MiB + 17 */
        {10, 0x20, MSGCODEC_EFRAMETOOBIG}, /* 2 MiB + 17 */
        {8, 0x03, MSGCODEC_ETRUNCATED},    /* 18: one more byte than present */
        {8, 0x01, MSGCODEC_ETRAILING},     /* 16 */
        {12, 0xff, MSGCODEC_ECRC},         {MSGCODEC_HEADER_BYTES + 3, 0x55, MSGCODEC_ECRC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(buf, good, n);
        buf[cases[i].at] ^= cases[i].flip;
        ASSERT_RV(msgcodec_frame_decode(buf, n, &f, &scratch), cases[i].want);
    }
    /* A payload with a correct CRC still has to decode. */
    memcpy(buf, good, n);
    buf[MSGCODEC_HEADER_BYTES] = 0; /* message type 0 */
    le_put_u32(buf + 12, crc32c(0, buf + MSGCODEC_HEADER_BYTES, n - MSGCODEC_HEADER_BYTES));
    ASSERT_RV(msgcodec_frame_decode(buf, n, &f, &scratch), MSGCODEC_ETYPE);
    /* HELLO: sender 0, wrong length */
    uint8_t hello[MSGCODEC_HEADER_BYTES + MSGCODEC_HELLO_BYTES + 1] = {0};
    msgcodec_header_encode(hello, MSGCODEC_KIND_HELLO, hello + MSGCODEC_HEADER_BYTES,
                           MSGCODEC_HELLO_BYTES);
    ASSERT_RV(
        msgcodec_frame_decode(hello, MSGCODEC_HEADER_BYTES + MSGCODEC_HELLO_BYTES, &f, &scratch),
        MSGCODEC_EHELLO);
    msgcodec_header_encode(hello, MSGCODEC_KIND_HELLO, hello + MSGCODEC_HEADER_BYTES,
                           MSGCODEC_HELLO_BYTES + 1);
    ASSERT_RV(msgcodec_frame_decode(hello, sizeof(hello), &f, &scratch), MSGCODEC_ETRAILING);
}

/* ---- truncation and garbage ------------------------------------------------------- */

/* Every proper prefix of a valid frame, and of its payload, is refused. */
static void test_every_truncation_refused(void **state)
{
    struct gen g;
    gen_init(&g, 1234);
    struct msgcodec_scratch scratch;
    for (unsigned type = 1; type <= RAFT_MSG_TYPE_MAX; type++) {
        for (int rep = 0; rep < 3; rep++) {
            struct raft_msg m;
            gen_msg(&g, (uint8_t)type, &m, 3, 40);
            size_t n = 0;
            uint8_t *frame = frame_of(&m, &n);
            for (size_t cut = 0; cut < n; cut++) {
                /* a copy of exactly cut bytes, so ASan sees any read past the end */
                uint8_t *p = malloc(cut > 0 ? cut : 1);
                assert_non_null(p);
                memcpy(p, frame, cut);
                struct msgcodec_frame f;
                ASSERT_RV(msgcodec_frame_decode(p, cut, &f, &scratch), MSGCODEC_ETRUNCATED);
                if (cut >= MSGCODEC_HEADER_BYTES) {
                    struct raft_msg d;
                    ASSERT_RV(msgcodec_decode(p + MSGCODEC_HEADER_BYTES,
                                              cut - MSGCODEC_HEADER_BYTES, &d, &scratch),
                              MSGCODEC_ETRUNCATED);
                }
                free(p);
            }
            /* and one byte too many */
            uint8_t *longer = malloc(n + 1);
            assert_non_null(longer);
            memcpy(longer, frame, n);
            longer[n] = 0;
            struct raft_msg d;
            ASSERT_RV(msgcodec_decode(longer + MSGCODEC_HEADER_BYTES, n + 1 - MSGCODEC_HEADER_BYTES,
                                      &d, &scratch),
                      MSGCODEC_ETRAILING);
            free(longer);
            free(frame);
        }
    }
    gen_free(&g);
}

/* Random bytes and randomly damaged valid payloads: refused with a named error, or
 * accepted and canonical (re-encode gives the input back). */
static void test_random_garbage(void **state)
{
    struct gen g;
    gen_init(&g, 0xBADBAD);
    struct msgcodec_scratch scratch;
    uint8_t buf[512];
    uint8_t again[512];
    uint32_t n_accepted = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n;
        if (i % 2 == 0) {
            n = (size_t)rnd(&g, sizeof(buf) + 1);
            for (size_t k = 0; k < n; k++) {
                buf[k] = (uint8_t)prng_next(&g.prng);
            }
            if (n > 0 && rnd(&g, 2)) {
                buf[0] = (uint8_t)(1 + rnd(&g, RAFT_MSG_TYPE_MAX)); /* get past the type */
            }
        } else {
            struct raft_msg m;
            gen_msg(&g, (uint8_t)(1 + rnd(&g, RAFT_MSG_TYPE_MAX)), &m, 3, 16);
            if (msgcodec_encode(&m, buf, sizeof(buf), &n) != 0) {
                continue; /* a snapshot chunk too big for buf */
            }
            const uint64_t flips = 1 + rnd(&g, 3);
            for (uint64_t k = 0; k < flips && n > 0; k++) {
                buf[rnd(&g, n)] ^= (uint8_t)(1u << rnd(&g, 8));
            }
        }
        struct raft_msg d;
        const int rv = msgcodec_decode(buf, n, &d, &scratch);
        if (rv != 0) {
            assert_true(rv <= MSGCODEC_ETRUNCATED && rv >= MSGCODEC_EHELLO);
            assert_string_not_equal(msgcodec_strerror(rv), "unknown msgcodec error");
            continue;
        }
        n_accepted++;
        size_t n_again = 0;
        ASSERT_RV(msgcodec_encode(&d, again, sizeof(again), &n_again), 0);
        assert_int_equal(n_again, n);
        assert_memory_equal(again, buf, n);
    }
    assert_true(n_accepted > 1000); /* the damaged-payload half mostly flips values */
    gen_free(&g);
}

/* ---- main --------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_frame_round_trip),
        cmocka_unit_test(test_known_bytes),
        cmocka_unit_test(test_max_entries),
        cmocka_unit_test(test_append_fit),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_random_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
