/* test_transport.c -- unit tests for node/transport on real loopback sockets: 10k random
 * messages each way arrive intact and in order; oversize appends are trimmed; a peer
 * restart (either side) reconnects and delivery resumes; garbage from a raw socket
 * closes only that connection; a peer that never reads costs a bounded queue and
 * counted drops; argument errors; a callback that closes the transport.
 *
 * Every test runs its own uv loop, listens on 127.0.0.1 port 0 and reads the port back.
 * Every wait is bounded twice: by a uv timer and by an iteration budget (run_until).
 * The loop must close cleanly at the end (uv_loop_close() == 0), which proves every
 * handle was closed.
 *
 * Sections: helpers | message generator | exchange | trimming | restart | garbage |
 * queue limits | arguments | callbacks | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/le.h"
#include "base/prng.h"
#include "node/msgcodec.h"
#include "node/transport.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define CLUSTER    UINT64_C(0xC0C1A7E000000001)
#define LOG_LINES  64
#define WAIT_MS    5000    /* bound on any single wait; tests normally take milliseconds */
#define RUN_BUDGET 2000000 /* loop iterations per wait, a second bound */

#define OK(expr)                                                                        \
    do {                                                                                \
        const int ok_rv_ = (expr);                                                      \
        if (ok_rv_ != 0) {                                                              \
            fail_msg("%s returned %d (%s)", #expr, ok_rv_, transport_strerror(ok_rv_)); \
        }                                                                               \
    } while (0)

#define ASSERT_RV(expr, want)                                                                  \
    do {                                                                                       \
        const int rv_ = (expr);                                                                \
        if (rv_ != (want)) {                                                                   \
            fail_msg("%s returned %d (%s), want %d (%s)", #expr, rv_, transport_strerror(rv_), \
                     (want), transport_strerror(want));                                        \
        }                                                                                      \
    } while (0)

struct gen;

/* One transport plus what its callbacks saw. */
struct node {
    struct transport t;
    uint32_t id;
    bool open;
    bool closed;
    uint64_t n_recv;
    uint64_t last_round; /* heartbeat rounds carry sequence numbers */
    bool out_of_order;
    struct gen *expect; /* when set, each message must equal the next one it generates */
    uint64_t n_mismatch;
    uint32_t last_n_entries;
    struct raft_msg last; /* head and fixed fields of the last message (no pointers) */
    bool close_on_recv;
    bool keep; /* deep-copy each message into kept (raft_msg_copy) */
    bool has_kept;
    struct raft_msg kept;
    char logs[LOG_LINES][TRANSPORT_LOG_LINE_BYTES];
    uint32_t n_logs;
};

static void node_log(void *data, const char *line)
{
    struct node *n = data;
    snprintf(n->logs[n->n_logs % LOG_LINES], TRANSPORT_LOG_LINE_BYTES, "%s", line);
    n->n_logs++;
    printf("# %s\n", line);
}

static bool logged(const struct node *n, const char *needle)
{
    const uint32_t first = n->n_logs > LOG_LINES ? n->n_logs - LOG_LINES : 0;
    for (uint32_t i = first; i < n->n_logs; i++) {
        if (strstr(n->logs[i % LOG_LINES], needle) != NULL) {
            return true;
        }
    }
    return false;
}

static void on_closed(struct transport *t)
{
    struct node *n = (struct node *)(void *)t; /* t is the first member */
    n->closed = true;
}

typedef bool (*cond_fn)(void *arg);

/* uv_stop() too: the deadline may fire in the timer phase of the very iteration whose
 * poll would then block until the next event. */
static void on_deadline(uv_timer_t *timer)
{
    *(bool *)timer->data = true;
    uv_stop(timer->loop);
}

/* Runs the loop until cond(arg) holds, timeout_ms passes or the budget runs out. */
static bool run_until(uv_loop_t *loop, cond_fn cond, void *arg, uint64_t timeout_ms)
{
    bool expired = false;
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    timer.data = &expired;
    uv_timer_start(&timer, on_deadline, timeout_ms, 0);
    for (uint32_t i = 0; i < RUN_BUDGET && !expired && !(cond != NULL && cond(arg)); i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    const bool ok = cond != NULL && cond(arg);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* finishes closing the timer on our stack */
    return ok;
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    run_until(loop, NULL, NULL, ms);
}

static bool is_closed(void *arg)
{
    return ((struct node *)arg)->closed;
}

static void node_recv(void *cb_data, const struct raft_msg *m);

static void node_start_at(uv_loop_t *loop, struct node *n, uint32_t id, uint64_t cluster,
                          const char *listen)
{
    memset(n, 0, sizeof(*n));
    n->id = id;
    const int rv = transport_init(&n->t, loop, id, cluster, listen, node_recv, n);
    transport_set_log(&n->t, node_log, n);
    if (rv != 0) {
        fail_msg("transport_init(%s): %s: %s", listen, transport_strerror(rv),
                 transport_errmsg(&n->t));
    }
    n->open = true;
}

static void node_start(uv_loop_t *loop, struct node *n, uint32_t id)
{
    node_start_at(loop, n, id, CLUSTER, "127.0.0.1:0");
    assert_true(transport_bound_port(&n->t) != 0);
}

static void node_close(uv_loop_t *loop, struct node *n)
{
    if (!n->open) {
        return;
    }
    n->open = false;
    transport_close(&n->t, on_closed);
    assert_true(run_until(loop, is_closed, n, WAIT_MS));
}

static void addr_of(const struct node *n, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.1:%u", (unsigned)transport_bound_port(&n->t));
}

static void add_peer(struct node *from, const struct node *to)
{
    char addr[64];
    addr_of(to, addr, sizeof(addr));
    OK(transport_set_peer(&from->t, to->id, addr));
}

static struct transport_peer_stats peer_stats(const struct node *n, uint32_t id)
{
    struct transport_peer_stats s;
    OK(transport_peer_stats(&n->t, id, &s));
    return s;
}

static struct transport_stats all_stats(const struct node *n)
{
    struct transport_stats s;
    transport_stats(&n->t, &s);
    return s;
}

static void loop_init(uv_loop_t *loop)
{
    assert_int_equal(uv_loop_init(loop), 0);
}

static void loop_done(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static struct raft_msg heartbeat(uint32_t from, uint32_t to, uint64_t seq)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HEARTBEAT;
    m.from = from;
    m.to = to;
    m.term = 1;
    m.heartbeat.commit = seq;
    m.heartbeat.round = seq;
    return m;
}

/* Waits for n->n_recv >= want. */
struct want_recv {
    const struct node *n;
    uint64_t want;
};

static bool has_recv(void *arg)
{
    const struct want_recv *w = arg;
    return w->n->n_recv >= w->want;
}

static bool wait_recv(uv_loop_t *loop, const struct node *n, uint64_t want)
{
    struct want_recv w = {n, want};
    return run_until(loop, has_recv, &w, WAIT_MS);
}

/* Sends count heartbeats numbered from seq and waits until all arrived. */
static void send_and_check(uv_loop_t *loop, struct node *from, struct node *to, uint64_t seq,
                           uint32_t count)
{
    const uint64_t before = to->n_recv;
    for (uint32_t i = 0; i < count; i++) {
        struct raft_msg m = heartbeat(from->id, to->id, seq + i);
        OK(transport_send(&from->t, &m));
    }
    if (!wait_recv(loop, to, before + count)) {
        fail_msg("node %u got %llu of %u messages from node %u", to->id,
                 (unsigned long long)(to->n_recv - before), count, from->id);
    }
    assert_false(to->out_of_order);
    assert_int_equal(to->last_round, seq + count - 1);
}

/* ---- message generator -------------------------------------------------------------- */

#define BIG_ENTRIES     RAFT_APPEND_ENTRIES_MAX
#define BIG_ENTRY_BYTES 20000
#define POOL_BYTES      ((size_t)BIG_ENTRIES * BIG_ENTRY_BYTES + 8192)

/* A seeded stream of random valid messages; sender and receiver each run one with the
 * same seed, so the receiver knows what must arrive next. */
struct gen {
    struct prng prng;
    struct raft_entry entries[RAFT_APPEND_ENTRIES_MAX];
    uint8_t *pool;
    uint64_t i;
};

static void gen_init(struct gen *g, uint64_t seed)
{
    memset(g, 0, sizeof(*g));
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

static void gen_fill(struct gen *g, uint8_t *p, size_t n)
{
    for (size_t k = 0; k < n; k += 8) {
        uint64_t v = prng_next(&g->prng);
        for (size_t j = 0; j < 8 && k + j < n; j++) {
            p[k + j] = (uint8_t)(v >> (8 * j));
        }
    }
}

/* The next message from -> to: mostly small random ones of every type, every 500th a
 * large AppendEntries (64 entries of up to 20 KB). */
static void gen_next(struct gen *g, uint32_t from, uint32_t to, struct raft_msg *m)
{
    const bool big = g->i % 500 == 499;
    g->i++;
    memset(m, 0, sizeof(*m));
    m->type = big ? RAFT_MSG_APPEND : (uint8_t)(1 + rnd(g, RAFT_MSG_TYPE_MAX));
    m->from = from;
    m->to = to;
    m->term = prng_next(&g->prng);
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        m->vote.last_log_index = prng_next(&g->prng);
        m->vote.last_log_term = rnd(g, 1000);
        m->vote.transfer = rnd(g, 2);
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        m->vote_resp.granted = rnd(g, 2);
        break;
    case RAFT_MSG_APPEND: {
        m->append.prev_index = prng_next(&g->prng);
        m->append.prev_term = rnd(g, 1000);
        m->append.commit = prng_next(&g->prng);
        m->append.n_entries = big ? BIG_ENTRIES : (uint32_t)rnd(g, 5);
        m->append.entries = m->append.n_entries ? g->entries : NULL;
        const uint32_t bytes_max = big ? BIG_ENTRY_BYTES : 300;
        size_t used = 0;
        for (uint32_t i = 0; i < m->append.n_entries; i++) {
            struct raft_entry *e = &g->entries[i];
            e->term = rnd(g, 1000);
            e->index = m->append.prev_index + 1 + i;
            e->type = (uint8_t)(1 + rnd(g, 3));
            e->n_bytes = (uint32_t)rnd(g, (uint64_t)bytes_max + 1);
            e->bytes = e->n_bytes ? g->pool + used : NULL;
            gen_fill(g, g->pool + used, e->n_bytes);
            used += e->n_bytes;
        }
        break;
    }
    case RAFT_MSG_APPEND_RESP:
        m->append_resp.reject = rnd(g, 2);
        m->append_resp.index = prng_next(&g->prng);
        m->append_resp.hint_index = prng_next(&g->prng);
        m->append_resp.hint_term = rnd(g, 1000);
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        m->heartbeat.commit = prng_next(&g->prng);
        m->heartbeat.round = prng_next(&g->prng);
        break;
    case RAFT_MSG_SNAPSHOT:
        m->snapshot.index = prng_next(&g->prng);
        m->snapshot.term = 1 + rnd(g, 1000);
        m->snapshot.config.n_servers = (uint32_t)rnd(g, RAFT_SERVERS_MAX + 1);
        for (uint32_t i = 0; i < m->snapshot.config.n_servers; i++) {
            m->snapshot.config.servers[i].id = i + 1;
            m->snapshot.config.servers[i].role = (uint8_t)(1 + rnd(g, 2));
        }
        m->snapshot.n_total = prng_next(&g->prng);
        m->snapshot.offset = prng_next(&g->prng);
        m->snapshot.n_bytes = (uint32_t)rnd(g, 8192);
        m->snapshot.bytes = m->snapshot.n_bytes ? g->pool : NULL;
        gen_fill(g, g->pool, m->snapshot.n_bytes);
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        m->snapshot_resp.index = prng_next(&g->prng);
        m->snapshot_resp.offset = prng_next(&g->prng);
        m->snapshot_resp.done = rnd(g, 2);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        m->read.read_id = prng_next(&g->prng);
        m->read.index = prng_next(&g->prng);
        m->read.status = -(int32_t)rnd(g, 2000);
        break;
    default:
        fail_msg("bad type");
    }
}

static void node_recv(void *cb_data, const struct raft_msg *m)
{
    struct node *n = cb_data;
    n->n_recv++;
    n->last = *m;
    if (m->type == RAFT_MSG_HEARTBEAT) {
        if (n->n_recv > 1 && m->heartbeat.round <= n->last_round) {
            n->out_of_order = true;
        }
        n->last_round = m->heartbeat.round;
    }
    if (m->type == RAFT_MSG_APPEND) {
        n->last_n_entries = m->append.n_entries;
        /* the entries must be readable in the callback: ASan checks each byte here */
        uint64_t sum = 0;
        for (uint32_t i = 0; i < m->append.n_entries; i++) {
            for (uint32_t k = 0; k < m->append.entries[i].n_bytes; k++) {
                sum += m->append.entries[i].bytes[k];
            }
        }
        (void)sum;
    }
    if (n->expect != NULL) {
        struct raft_msg want;
        gen_next(n->expect, m->to, n->id, &want);
        want.from = m->from;
        if (!msgcodec_msg_equal(&want, m)) {
            n->n_mismatch++;
        }
    }
    if (n->keep) {
        if (n->has_kept) {
            raft_msg_free_copy(&n->kept);
        }
        assert_int_equal(raft_msg_copy(&n->kept, m), 0);
        n->has_kept = true;
    }
    if (n->close_on_recv && n->open) {
        n->open = false;
        transport_close(&n->t, on_closed);
    }
}

/* ---- exchange ----------------------------------------------------------------------- */

#define EXCHANGE_N      10000
#define EXCHANGE_WINDOW 256 /* unacknowledged messages per direction */

static void test_exchange_10k_each_way(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    node_start(&loop, a, 1);
    node_start(&loop, b, 2);
    add_peer(a, b);
    add_peer(b, a);
    struct gen a_tx, b_tx, a_rx, b_rx;
    gen_init(&a_tx, 100);
    gen_init(&b_rx, 100);
    gen_init(&b_tx, 200);
    gen_init(&a_rx, 200);
    a->expect = &a_rx;
    b->expect = &b_rx;

    bool expired = false;
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, on_deadline, 8000, 0);
    uint64_t a_sent = 0;
    uint64_t b_sent = 0;
    for (uint32_t iter = 0; iter < RUN_BUDGET && !expired; iter++) {
        while (a_sent < EXCHANGE_N && a_sent - b->n_recv < EXCHANGE_WINDOW) {
            struct raft_msg m;
            gen_next(&a_tx, 1, 2, &m);
            OK(transport_send(&a->t, &m));
            a_sent++;
        }
        while (b_sent < EXCHANGE_N && b_sent - a->n_recv < EXCHANGE_WINDOW) {
            struct raft_msg m;
            gen_next(&b_tx, 2, 1, &m);
            OK(transport_send(&b->t, &m));
            b_sent++;
        }
        if (a->n_recv == EXCHANGE_N && b->n_recv == EXCHANGE_N) {
            break;
        }
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&deadline, NULL);
    assert_int_equal(b->n_recv, EXCHANGE_N);
    assert_int_equal(a->n_recv, EXCHANGE_N);
    assert_int_equal(a->n_mismatch, 0);
    assert_int_equal(b->n_mismatch, 0);

    const struct transport_peer_stats sa = peer_stats(a, 2);
    const struct transport_peer_stats sb = peer_stats(b, 1);
    assert_int_equal(sa.frames_sent, EXCHANGE_N);
    assert_int_equal(sa.frames_received, EXCHANGE_N);
    assert_int_equal(sa.frames_dropped, 0);
    assert_int_equal(sa.entries_trimmed, 0);
    assert_int_equal(sa.connects, 1);
    assert_int_equal(sa.reconnects, 0);
    assert_int_equal(sa.queue_frames, 0);
    assert_int_equal(sa.queue_bytes, 0);
    assert_true(sa.connected);
    assert_int_equal(sa.bytes_sent, sb.bytes_received);
    assert_int_equal(sb.bytes_sent, sa.bytes_received);
    assert_true(sa.bytes_sent > UINT64_C(10000000)); /* the large appends went through */
    const struct transport_stats ta = all_stats(a);
    assert_int_equal(ta.protocol_errors, 0);
    assert_int_equal(ta.n_inbound, 1);
    assert_int_equal(ta.n_peers, 1);

    node_close(&loop, a);
    node_close(&loop, b);
    loop_done(&loop);
    gen_free(&a_tx);
    gen_free(&b_tx);
    gen_free(&a_rx);
    gen_free(&b_rx);
    free(a);
    free(b);
}

/* ---- trimming ----------------------------------------------------------------------- */

static void test_oversize_append_trimmed(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    node_start(&loop, a, 1);
    node_start(&loop, b, 2);
    add_peer(a, b);
    b->keep = true;

    const uint32_t entry_bytes = 100 * 1024;
    uint8_t *bytes = malloc(entry_bytes);
    assert_non_null(bytes);
    for (uint32_t k = 0; k < entry_bytes; k++) {
        bytes[k] = (uint8_t)(k * 31);
    }
    struct raft_entry entries[RAFT_APPEND_ENTRIES_MAX];
    for (uint32_t i = 0; i < RAFT_APPEND_ENTRIES_MAX; i++) {
        entries[i] = (struct raft_entry){
            .term = 2, .index = 11 + i, .type = RAFT_ENTRY_COMMAND, .n_bytes = entry_bytes};
        entries[i].bytes = bytes;
    }
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.term = 2;
    m.append.prev_index = 10;
    m.append.prev_term = 2;
    m.append.commit = 10;
    m.append.n_entries = RAFT_APPEND_ENTRIES_MAX;
    m.append.entries = entries;
    const uint32_t fit = msgcodec_append_fit(&m, MSGCODEC_PAYLOAD_BYTES_MAX);
    assert_int_equal(fit, 20);
    OK(transport_send(&a->t, &m));
    assert_int_equal(m.append.n_entries, RAFT_APPEND_ENTRIES_MAX); /* caller's copy intact */
    assert_true(wait_recv(&loop, b, 1));
    assert_int_equal(b->last.type, RAFT_MSG_APPEND);
    assert_int_equal(b->last_n_entries, fit);
    assert_int_equal(b->last.append.prev_index, 10);
    assert_int_equal(peer_stats(a, 2).entries_trimmed, RAFT_APPEND_ENTRIES_MAX - fit);
    /* what arrived is exactly the message cut to its first `fit` entries */
    m.append.n_entries = fit;
    assert_true(b->has_kept);
    assert_true(msgcodec_msg_equal(&m, &b->kept));
    raft_msg_free_copy(&b->kept);
    node_close(&loop, a);
    node_close(&loop, b);
    loop_done(&loop);
    free(bytes);
    free(a);
    free(b);
}

/* ---- restart ------------------------------------------------------------------------ */

struct want_connects {
    const struct node *n;
    uint32_t peer;
    uint64_t connects;
    bool connected;
};

static bool has_connects(void *arg)
{
    const struct want_connects *w = arg;
    struct transport_peer_stats s;
    if (transport_peer_stats(&w->n->t, w->peer, &s) != 0) {
        return false;
    }
    return s.connects >= w->connects && s.connected == w->connected;
}

static void test_peer_restart_reconnects(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    node_start(&loop, a, 1);
    node_start(&loop, b, 2);
    add_peer(a, b);
    add_peer(b, a);
    char b_addr[64];
    addr_of(b, b_addr, sizeof(b_addr));
    send_and_check(&loop, a, b, 1, 100);

    /* receiver restarts on the same port */
    node_close(&loop, b);
    struct want_connects down = {a, 2, 1, false};
    assert_true(run_until(&loop, has_connects, &down, WAIT_MS));
    assert_true(logged(a, "peer 2 at 127.0.0.1:")); /* EOF or reset: both redial */
    for (uint64_t seq = 101; seq < 111; seq++) {    /* sent into the outage: may be lost */
        struct raft_msg m = heartbeat(1, 2, seq);
        OK(transport_send(&a->t, &m));
    }
    run_for(&loop, 150); /* let a few dials fail */
    assert_true(peer_stats(a, 2).connect_failures >= 1);
    node_start_at(&loop, b, 2, CLUSTER, b_addr);
    add_peer(b, a);
    struct want_connects up = {a, 2, 2, true};
    assert_true(run_until(&loop, has_connects, &up, WAIT_MS));
    assert_int_equal(peer_stats(a, 2).reconnects, 1);
    send_and_check(&loop, a, b, 1000, 100);

    /* sender restarts: b's inbound from id 1 is replaced by the new one */
    char a_addr[64];
    addr_of(a, a_addr, sizeof(a_addr));
    node_close(&loop, a);
    node_start_at(&loop, a, 1, CLUSTER, a_addr);
    add_peer(a, b);
    b->n_recv = 0;
    send_and_check(&loop, a, b, 1, 100);
    /* and b -> a works over b's redialled connection */
    send_and_check(&loop, b, a, 1, 10);
    assert_int_equal(all_stats(b).protocol_errors, 0);
    assert_int_equal(all_stats(b).n_inbound, 1);

    node_close(&loop, a);
    node_close(&loop, b);
    loop_done(&loop);
    free(a);
    free(b);
}

/* ---- garbage ------------------------------------------------------------------------ */

static int raw_connect(uint16_t port)
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* Never blocks (the transport reads only while the loop runs): small writes must go
 * whole, a big one may go in part. */
static void raw_send(int fd, const void *p, size_t n)
{
    const ssize_t rv = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    assert_true(rv > 0);
    assert_true((size_t)rv == n || n > 4096);
}

/* True once the other end closed fd (recv sees EOF or a reset). */
static bool raw_closed(void *arg)
{
    const int fd = *(int *)arg;
    uint8_t buf[64];
    const ssize_t rv = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return rv == 0 || (rv < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static size_t hello_frame(uint8_t *buf, uint32_t id, uint64_t cluster)
{
    const struct msgcodec_hello h = {.id = id, .cluster_id = cluster};
    size_t n = 0;
    assert_int_equal(msgcodec_frame_encode_hello(&h, buf, 64, &n), 0);
    return n;
}

/* Sends n bytes from a raw socket and expects b to log `what` and close the connection,
 * while a -> b traffic keeps flowing. */
static void expect_refused(uv_loop_t *loop, struct node *a, struct node *b, const void *p, size_t n,
                           const char *what, bool protocol_error)
{
    const uint64_t errors = all_stats(b).protocol_errors;
    b->n_logs = 0;
    int fd = raw_connect(transport_bound_port(&b->t));
    raw_send(fd, p, n);
    if (!protocol_error) {
        shutdown(fd, SHUT_WR); /* we hang up */
    }
    if (!run_until(loop, raw_closed, &fd, WAIT_MS)) {
        fail_msg("connection not closed after: %s", what);
    }
    if (!logged(b, what)) {
        fail_msg("no log line containing \"%s\"", what);
    }
    assert_true(logged(b, "inbound connection from 127.0.0.1:"));
    assert_int_equal(all_stats(b).protocol_errors, errors + (protocol_error ? 1 : 0));
    close(fd);
    send_and_check(loop, a, b, b->last_round + 1, 5);
}

static void test_garbage_closes_connection(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    node_start(&loop, a, 1);
    node_start(&loop, b, 2);
    add_peer(a, b);
    send_and_check(&loop, a, b, 1, 10);

    const char http[] = "GET / HTTP/1.1\r\nHost: conclave\r\n\r\n";
    expect_refused(&loop, a, b, http, sizeof(http) - 1, "bad frame magic", true);

    uint8_t buf[256];
    size_t n = hello_frame(buf, 9, CLUSTER);
    buf[4] = 7;
    expect_refused(&loop, a, b, buf, n, "unsupported frame version", true);

    /* a header announcing 4 GiB: refused before any allocation */
    n = hello_frame(buf, 9, CLUSTER);
    le_put_u32(buf + 8, UINT32_MAX);
    expect_refused(&loop, a, b, buf, n, "longer than MSGCODEC_PAYLOAD_BYTES_MAX", true);

    n = hello_frame(buf, 9, CLUSTER ^ 1);
    expect_refused(&loop, a, b, buf, n, "belongs to cluster", true);

    n = hello_frame(buf, 2, CLUSTER);
    expect_refused(&loop, a, b, buf, n, "our own id", true);

    /* RAFT frame first */
    struct raft_msg m = heartbeat(9, 2, 1);
    size_t n_frame = 0;
    assert_int_equal(msgcodec_frame_encode_raft(&m, buf, sizeof(buf), &n_frame), 0);
    expect_refused(&loop, a, b, buf, n_frame, "first frame is not HELLO", true);

    /* HELLO, then a frame whose payload fails its CRC */
    n = hello_frame(buf, 9, CLUSTER);
    assert_int_equal(msgcodec_frame_encode_raft(&m, buf + n, sizeof(buf) - n, &n_frame), 0);
    buf[n + MSGCODEC_HEADER_BYTES + 5] ^= 1;
    expect_refused(&loop, a, b, buf, n + n_frame, "CRC mismatch", true);

    /* HELLO, then a correctly checksummed payload that does not decode */
    n = hello_frame(buf, 9, CLUSTER);
    assert_int_equal(msgcodec_frame_encode_raft(&m, buf + n, sizeof(buf) - n, &n_frame), 0);
    buf[n + MSGCODEC_HEADER_BYTES] = 99; /* message type */
    msgcodec_header_encode(buf + n, MSGCODEC_KIND_RAFT, buf + n + MSGCODEC_HEADER_BYTES,
                           (uint32_t)(n_frame - MSGCODEC_HEADER_BYTES));
    expect_refused(&loop, a, b, buf, n + n_frame, "undecodable message", true);

    /* HELLO as 9, message from 3 */
    n = hello_frame(buf, 9, CLUSTER);
    m = heartbeat(3, 2, 1);
    assert_int_equal(msgcodec_frame_encode_raft(&m, buf + n, sizeof(buf) - n, &n_frame), 0);
    expect_refused(&loop, a, b, buf, n + n_frame, "claims to be from 3", true);

    /* HELLO as 9, message for someone else */
    n = hello_frame(buf, 9, CLUSTER);
    m = heartbeat(9, 5, 1);
    assert_int_equal(msgcodec_frame_encode_raft(&m, buf + n, sizeof(buf) - n, &n_frame), 0);
    expect_refused(&loop, a, b, buf, n + n_frame, "addressed to 5", true);

    /* a second HELLO */
    n = hello_frame(buf, 9, CLUSTER);
    n += hello_frame(buf + n, 9, CLUSTER);
    expect_refused(&loop, a, b, buf, n, "second HELLO", true);

    /* half a frame, then the remote end hangs up: not a protocol error */
    n = hello_frame(buf, 9, CLUSTER);
    expect_refused(&loop, a, b, buf, n - 3, "closed by the remote end", false);

    /* 64 KiB of random bytes */
    struct prng r;
    prng_seed(&r, 42);
    uint8_t *junk = malloc(65536);
    assert_non_null(junk);
    for (size_t k = 0; k < 65536; k++) {
        junk[k] = (uint8_t)prng_next(&r);
    }
    expect_refused(&loop, a, b, junk, 65536, "bad frame", true);
    free(junk);

    /* a well-behaved raw client is delivered like a peer */
    n = hello_frame(buf, 9, CLUSTER);
    m = heartbeat(9, 2, b->last_round + 1);
    assert_int_equal(msgcodec_frame_encode_raft(&m, buf + n, sizeof(buf) - n, &n_frame), 0);
    const uint64_t before = b->n_recv;
    int fd = raw_connect(transport_bound_port(&b->t));
    raw_send(fd, buf, n + n_frame);
    assert_true(wait_recv(&loop, b, before + 1));
    assert_int_equal(b->last.from, 9);
    assert_int_equal(all_stats(b).sum.frames_received, before + 1); /* 9 is not a peer */
    close(fd);

    assert_int_equal(peer_stats(a, 2).connects, 1); /* a's connection was never disturbed */
    node_close(&loop, a);
    node_close(&loop, b);
    loop_done(&loop);
    free(a);
    free(b);
}

/* ---- queue limits ------------------------------------------------------------------- */

static void test_queue_full_drops_bounded(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    node_start(&loop, a, 1);

    /* a peer that accepts TCP connections (in the kernel) but never reads */
    const int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t n_sin = sizeof(sin);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &n_sin), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    OK(transport_set_peer(&a->t, 2, addr));
    struct want_connects up = {a, 2, 1, true};
    assert_true(run_until(&loop, has_connects, &up, WAIT_MS));

    /* 1 MiB appends until well past the 64 MiB queue */
    uint8_t *bytes = calloc(1, RAFT_ENTRY_BYTES_MAX);
    assert_non_null(bytes);
    struct raft_entry e = {.term = 1, .index = 1, .type = 1, .n_bytes = RAFT_ENTRY_BYTES_MAX};
    e.bytes = bytes;
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.term = 1;
    m.append.n_entries = 1;
    m.append.entries = &e;
    const uint32_t n_sends = 100;
    uint32_t n_full = 0;
    for (uint32_t i = 0; i < n_sends; i++) {
        const int rv = transport_send(&a->t, &m);
        if (rv == TRANSPORT_EFULL) {
            n_full++;
        } else {
            OK(rv);
        }
        const struct transport_peer_stats s = peer_stats(a, 2);
        assert_true(s.queue_bytes <= TRANSPORT_QUEUE_BYTES_MAX);
        if (i % 10 == 0) {
            run_for(&loop, 5); /* let writes fill the kernel buffers */
        }
    }
    run_for(&loop, 50);
    struct transport_peer_stats s = peer_stats(a, 2);
    printf("# queue: %u frames %llu bytes; sent %llu dropped %llu\n", s.queue_frames,
           (unsigned long long)s.queue_bytes, (unsigned long long)s.frames_sent,
           (unsigned long long)s.frames_dropped);
    assert_true(n_full > 0);
    assert_int_equal(s.frames_dropped, n_full);
    assert_true(s.queue_bytes <= TRANSPORT_QUEUE_BYTES_MAX);
    assert_int_equal(s.frames_sent + s.frames_dropped + s.queue_frames, n_sends);
    assert_true(s.connected);

    /* a lower frame limit, no loop in between: exactly the excess is refused */
    OK(transport_set_queue_limits(&a->t, MSGCODEC_FRAME_BYTES_MAX, 8));
    ASSERT_RV(transport_set_queue_limits(&a->t, MSGCODEC_FRAME_BYTES_MAX - 1, 8), TRANSPORT_EINVAL);
    ASSERT_RV(transport_set_queue_limits(&a->t, TRANSPORT_QUEUE_BYTES_MAX, 0), TRANSPORT_EINVAL);
    struct node *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    node_start(&loop, c, 3);
    OK(transport_set_queue_limits(&c->t, MSGCODEC_FRAME_BYTES_MAX, 8));
    OK(transport_set_peer(&c->t, 2, addr));
    uint32_t n_refused = 0;
    for (uint32_t i = 0; i < 20; i++) {
        struct raft_msg hb = heartbeat(3, 2, i);
        n_refused += transport_send(&c->t, &hb) == TRANSPORT_EFULL;
    }
    assert_int_equal(n_refused, 12);
    assert_int_equal(peer_stats(c, 2).frames_dropped, 12);
    assert_int_equal(peer_stats(c, 2).queue_frames, 8);

    /* removing the peer frees its queue; the sums keep its counters */
    const uint64_t dropped_before = all_stats(a).sum.frames_dropped;
    OK(transport_set_peer(&a->t, 2, NULL));
    ASSERT_RV(transport_peer_stats(&a->t, 2, &s), TRANSPORT_ENOPEER);
    run_for(&loop, 20);
    const struct transport_stats ta = all_stats(a);
    assert_int_equal(ta.sum.queue_bytes, 0);
    assert_true(ta.sum.frames_dropped >= dropped_before);
    assert_int_equal(ta.sum.frames_sent + ta.sum.frames_dropped, n_sends);

    node_close(&loop, a);
    node_close(&loop, c);
    close(lfd);
    loop_done(&loop);
    free(bytes);
    free(a);
    free(c);
}

/* ---- arguments ---------------------------------------------------------------------- */

static void test_arguments(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    struct node *x = calloc(1, sizeof(*x));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(x);
    node_start(&loop, a, 1);
    node_start(&loop, b, 2);

    const char *bad[] = {
        "",    "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:12a",
        ":80", "::1:80",    "[::1]",      "[]:80",       "127.0.0.1:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const int rv = transport_set_peer(&a->t, 5, bad[i]);
        if (rv != TRANSPORT_EADDR) {
            fail_msg("\"%s\" gave %d, want TRANSPORT_EADDR", bad[i], rv);
        }
    }
    ASSERT_RV(transport_set_peer(&a->t, 0, "127.0.0.1:1"), TRANSPORT_EINVAL);
    ASSERT_RV(transport_set_peer(&a->t, 1, "127.0.0.1:1"), TRANSPORT_EINVAL);
    OK(transport_set_peer(&a->t, 5, NULL)); /* removing an unknown peer is a no-op */
    for (uint32_t id = 10; id < 10 + TRANSPORT_PEERS_MAX; id++) {
        OK(transport_set_peer(&a->t, id, "[::1]:9"));
    }
    ASSERT_RV(transport_set_peer(&a->t, 99, "127.0.0.1:9"), TRANSPORT_ETOOMANY);
    for (uint32_t id = 10; id < 10 + TRANSPORT_PEERS_MAX; id++) {
        OK(transport_set_peer(&a->t, id, NULL));
    }
    assert_int_equal(all_stats(a).n_peers, 0);

    struct raft_msg m = heartbeat(1, 2, 1);
    ASSERT_RV(transport_send(&a->t, &m), TRANSPORT_ENOPEER);
    assert_int_equal(all_stats(a).no_peer_drops, 1);

    /* a wrong port first, then the address moves to b: delivery follows */
    OK(transport_set_peer(&a->t, 2, "127.0.0.1:1"));
    run_for(&loop, 30);
    char addr[64];
    snprintf(addr, sizeof(addr), "localhost:%u", (unsigned)transport_bound_port(&b->t));
    OK(transport_set_peer(&a->t, 2, addr)); /* a name: resolved on every dial */
    assert_true(logged(a, "moves from 127.0.0.1:1"));
    struct want_connects up = {a, 2, 1, true}; /* localhost may try ::1 first */
    assert_true(run_until(&loop, has_connects, &up, WAIT_MS));
    send_and_check(&loop, a, b, 1, 10);
    OK(transport_set_peer(&a->t, 2, addr)); /* same address: nothing changes */
    assert_int_equal(peer_stats(a, 2).connects, 1);

    m = heartbeat(7, 2, 1); /* not from us */
    ASSERT_RV(transport_send(&a->t, &m), TRANSPORT_EINVAL);
    m = heartbeat(1, 2, 1);
    m.type = 0;
    ASSERT_RV(transport_send(&a->t, &m), TRANSPORT_EINVAL);
    assert_non_null(strstr(transport_errmsg(&a->t), "unknown message type"));
    m.type = RAFT_MSG_APPEND;
    m.append.n_entries = 1;
    m.append.entries = NULL;
    ASSERT_RV(transport_send(&a->t, &m), TRANSPORT_EINVAL);

    /* init failures still leave a closable transport */
    char b_addr[64];
    addr_of(b, b_addr, sizeof(b_addr));
    ASSERT_RV(transport_init(&x->t, &loop, 3, CLUSTER, b_addr, node_recv, x), TRANSPORT_ELISTEN);
    assert_non_null(strstr(transport_errmsg(&x->t), "cannot listen"));
    x->open = true;
    node_close(&loop, x);
    ASSERT_RV(transport_init(&x->t, &loop, 3, CLUSTER, "nonsense", node_recv, x), TRANSPORT_EADDR);
    x->open = true;
    x->closed = false;
    node_close(&loop, x);
    /* send-only transport */
    OK(transport_init(&x->t, &loop, 3, CLUSTER, NULL, node_recv, x));
    assert_int_equal(transport_bound_port(&x->t), 0);
    x->open = true;
    x->closed = false;
    node_close(&loop, x);
    const int rv6 = transport_init(&x->t, &loop, 3, CLUSTER, "[::1]:0", node_recv, x);
    assert_true(rv6 == 0 || rv6 == TRANSPORT_ELISTEN); /* a host without IPv6 */
    x->open = true;
    x->closed = false;
    ASSERT_RV(transport_set_peer(&x->t, 4, "127.0.0.1:9"), 0);
    node_close(&loop, x);
    ASSERT_RV(transport_send(&x->t, &m), TRANSPORT_ECLOSED);

    assert_string_not_equal(transport_strerror(TRANSPORT_ECLOSED), "unknown transport error");
    node_close(&loop, a);
    node_close(&loop, b);
    loop_done(&loop);
    free(a);
    free(b);
    free(x);
}

/* ---- callbacks ---------------------------------------------------------------------- */

/* A receiver that closes its transport from inside the callback, mid-stream. */
static void test_close_inside_callback(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    node_start(&loop, a, 1);
    node_start(&loop, b, 2);
    add_peer(a, b);
    b->close_on_recv = true;
    for (uint64_t i = 0; i < 50; i++) {
        struct raft_msg m = heartbeat(1, 2, i + 1);
        OK(transport_send(&a->t, &m));
    }
    assert_true(run_until(&loop, is_closed, b, WAIT_MS));
    assert_int_equal(b->n_recv, 1);
    node_close(&loop, a);
    loop_done(&loop);
    free(a);
    free(b);
}

/* Peers in different clusters never exchange a message. */
static void test_cluster_mismatch(void **state)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct node *a = calloc(1, sizeof(*a));
    struct node *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    node_start_at(&loop, a, 1, CLUSTER ^ 0xff, "127.0.0.1:0");
    node_start(&loop, b, 2);
    add_peer(a, b);
    struct raft_msg m = heartbeat(1, 2, 1);
    OK(transport_send(&a->t, &m));
    run_for(&loop, 300);
    assert_int_equal(b->n_recv, 0);
    assert_true(logged(b, "belongs to cluster"));
    assert_true(all_stats(b).protocol_errors >= 1);
    node_close(&loop, a);
    node_close(&loop, b);
    loop_done(&loop);
    free(a);
    free(b);
}

/* ---- main --------------------------------------------------------------------------- */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange_10k_each_way),
        cmocka_unit_test(test_oversize_append_trimmed),
        cmocka_unit_test(test_peer_restart_reconnects),
        cmocka_unit_test(test_garbage_closes_connection),
        cmocka_unit_test(test_queue_full_drops_bounded),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_cluster_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
