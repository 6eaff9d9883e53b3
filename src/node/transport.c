/* transport.c -- Raft peer transport over libuv TCP (transport.h has the contract).
 *
 * Objects and who frees them:
 *   - struct transport: the caller's.
 *   - struct transport_peer: one per configured peer, heap-allocated because its handles
 *     outlive transport_set_peer(id, NULL): a removed peer is unlinked at once and freed
 *     by whichever callback drops its last reference (n_refs counts its open handles and
 *     outstanding requests).
 *   - struct transport__frame: one encoded frame, owned by its peer's queue from
 *     transport_send() until its write completes or it is dropped.
 *   - struct transport_conn: one accepted connection, freed by its close callback.
 *
 * Invariants:
 *   - t->n_pending counts every open handle and outstanding request of the transport;
 *     close_cb runs when transport_close() was called and it reaches 0. So the last
 *     statement of each libuv callback is the one that may drop it (transport__done),
 *     and nothing touches t afterwards.
 *   - A peer's queue is a FIFO; its first n_writing frames are inside the one uv_write
 *     in flight (at most one per peer), the rest wait. queue_bytes/queue_frames count
 *     both, so the limits bound all memory a peer's traffic holds.
 *   - A peer's queue survives a dropped connection (only frames in flight are lost) but
 *     not a failed dial: messages waiting for a dead peer go stale, and fresh ones
 *     should not queue behind them.
 *   - On an inbound connection no byte from the wire sizes an allocation before
 *     msgcodec_header_decode() has checked it against MSGCODEC_PAYLOAD_BYTES_MAX, and
 *     no payload is decoded before its CRC matched.
 *   - Work per callback is bounded: one read callback parses at most what one read put
 *     into a buffer of at most MSGCODEC_FRAME_BYTES_MAX; one write takes at most
 *     TRANSPORT_WRITE_BUFS_MAX frames.
 *
 * Sections: types | errors and logging | addresses | references and closing |
 * queue | outbound (dial, write, backoff) | inbound (accept, parse, deliver) | sweep |
 * API.
 */
#include "node/transport.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

/* ---- types ------------------------------------------------------------------------ */

#define TRANSPORT__CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define TRANSPORT__SWEEP_MS   1000 /* how often never-HELLO'd inbound connections are checked */
#define TRANSPORT__PORT_BYTES 6    /* "65535" + NUL */
/* A dial into a black hole fails this fast, not after the kernel's SYN retries. */
#define TRANSPORT__CONNECT_TIMEOUT_MS 3000
#define TRANSPORT__LISTEN_BACKLOG     128

struct transport__frame {
    struct transport__frame *next;
    uint32_t n_bytes;
    uint8_t bytes[]; /* header + payload */
};

struct transport_peer {
    struct transport *t;
    uint32_t id;
    uint32_t n_refs; /* open handles + outstanding requests; freed at 0 once removed */
    bool removed;

    char addr[TRANSPORT_ADDR_BYTES_MAX]; /* as configured, for logs */
    char host[TRANSPORT_ADDR_BYTES_MAX];
    char port[TRANSPORT__PORT_BYTES];
    bool numeric; /* sa holds the address; otherwise resolve host on every dial */
    struct sockaddr_storage sa;

    uv_timer_t timer; /* backoff and connect timeout; open from creation to removal */
    uv_getaddrinfo_t gai_req;
    bool resolving;
    uv_tcp_t tcp;
    bool tcp_open;
    bool tcp_closing;
    uv_connect_t connect_req;
    bool connecting;
    bool connected;
    uint64_t connected_at_ms;
    uint8_t junk[64]; /* receive buffer: peers never write on our outbound connection */

    uv_write_t write_req;
    bool writing;
    bool writing_hello;
    uint32_t n_writing; /* queue frames in the write in flight */
    bool flush_wanted;
    uint8_t hello[MSGCODEC_HEADER_BYTES + MSGCODEC_HELLO_BYTES];
    bool hello_due; /* the connection is new: HELLO goes first */

    struct transport__frame *head;
    struct transport__frame *tail;

    uint32_t backoff_ms;
    uint32_t failures_in_row;
    struct transport_peer_stats stats;
};

struct transport_conn {
    struct transport *t;
    struct transport_conn *prev;
    struct transport_conn *next;
    uv_tcp_t tcp;
    bool linked; /* on t->inbound */
    bool closing;
    bool hello_done;
    uint32_t peer_id; /* from HELLO */
    uint64_t accepted_ms;
    char addr[TRANSPORT_ADDR_BYTES_MAX]; /* remote address, for logs */
    uint8_t *rbuf;                       /* [0, rlen) holds received bytes not yet parsed */
    size_t rlen;
    size_t rcap; /* TRANSPORT_RECV_CHUNK_BYTES, or the frame being received */
};

/* ---- errors and logging ----------------------------------------------------------- */

const char *transport_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case TRANSPORT_EINVAL:
        return "invalid argument or message";
    case TRANSPORT_EADDR:
        return "bad address (want host:port)";
    case TRANSPORT_ELISTEN:
        return "cannot listen";
    case TRANSPORT_ENOPEER:
        return "no such peer";
    case TRANSPORT_ETOOMANY:
        return "more peers than TRANSPORT_PEERS_MAX";
    case TRANSPORT_EFULL:
        return "peer send queue full; message dropped";
    case TRANSPORT_ENOMEM:
        return "out of memory; message dropped";
    case TRANSPORT_ECLOSED:
        return "transport is closing";
    default:
        return "unknown transport error";
    }
}

static void transport__log(struct transport *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void transport__log(struct transport *t, const char *fmt, ...)
{
    char line[TRANSPORT_LOG_LINE_BYTES];
    int n = snprintf(line, sizeof(line), "transport %" PRIu32 ": ", t->self_id);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        n = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    char *tail = line + n;
    const size_t room = sizeof(line) - (size_t)n;
    vsnprintf(tail, room, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
    if (t->log_cb != NULL) {
        t->log_cb(t->log_data, line);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

/* Records the detail for transport_errmsg() and returns rv. */
static int transport__fail(struct transport *t, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int transport__fail(struct transport *t, int rv, const char *fmt, ...)
{
    CC_ASSERT(rv != 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->errmsg, sizeof(t->errmsg), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
    return rv;
}

/* ---- addresses -------------------------------------------------------------------- */

/* Splits "host:port" or "[v6]:port" into host and port strings (buffers of
 * TRANSPORT_ADDR_BYTES_MAX and TRANSPORT__PORT_BYTES) and the port number. */
static int transport__split(const char *host_port, bool port_zero_ok, char *host, char *port,
                            int *port_out)
{
    const size_t n = strnlen(host_port, TRANSPORT_ADDR_BYTES_MAX);
    if (n == 0 || n >= TRANSPORT_ADDR_BYTES_MAX) {
        return TRANSPORT_EADDR;
    }
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL) {
        return TRANSPORT_EADDR;
    }
    const char *h = host_port;
    size_t n_host = (size_t)(colon - host_port);
    if (n_host >= 2 && h[0] == '[' && h[n_host - 1] == ']') {
        h++;
        n_host -= 2;
    } else if (memchr(h, ':', n_host) != NULL || memchr(h, '[', n_host) != NULL) {
        return TRANSPORT_EADDR; /* IPv6 literals need brackets */
    }
    if (n_host == 0) {
        return TRANSPORT_EADDR;
    }
    const char *p = colon + 1;
    const size_t n_port = strlen(p);
    if (n_port == 0 || n_port >= TRANSPORT__PORT_BYTES) {
        return TRANSPORT_EADDR;
    }
    int value = 0;
    for (size_t i = 0; i < n_port; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return TRANSPORT_EADDR;
        }
        value = value * 10 + (p[i] - '0');
    }
    if (value > 65535 || (value == 0 && !port_zero_ok)) {
        return TRANSPORT_EADDR;
    }
    memcpy(host, h, n_host);
    host[n_host] = '\0';
    memcpy(port, p, n_port + 1);
    *port_out = value;
    return 0;
}

/* True when host is an IPv4 or IPv6 literal; sa then holds host:port. */
static bool transport__numeric(const char *host, int port, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof(*sa));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0) {
        return true;
    }
    memset(sa, 0, sizeof(*sa));
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0;
}

static void transport__sa_name(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char ip[64] = "?";
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "(unknown address family %d)", (int)sa->ss_family);
    }
}

/* ---- references and closing ------------------------------------------------------- */

/* One pending handle or request of t has finished. May run close_cb: callers touch
 * nothing of t afterwards. */
static void transport__done(struct transport *t)
{
    CC_ASSERT(t->n_pending > 0);
    t->n_pending--;
    if (t->closing && t->n_pending == 0 && t->close_cb != NULL) {
        transport_close_cb cb = t->close_cb;
        t->close_cb = NULL;
        cb(t);
    }
}

static void transport__on_handle_close(uv_handle_t *h)
{
    transport__done(h->data);
}

/* Adds the lifetime counters of s into sum. */
static void transport__stats_add(struct transport_peer_stats *sum,
                                 const struct transport_peer_stats *s)
{
    sum->frames_sent += s->frames_sent;
    sum->bytes_sent += s->bytes_sent;
    sum->frames_received += s->frames_received;
    sum->bytes_received += s->bytes_received;
    sum->frames_dropped += s->frames_dropped;
    sum->bytes_dropped += s->bytes_dropped;
    sum->entries_trimmed += s->entries_trimmed;
    sum->connects += s->connects;
    sum->reconnects += s->reconnects;
    sum->connect_failures += s->connect_failures;
}

static void transport__peer_ref(struct transport_peer *p)
{
    p->n_refs++;
    p->t->n_pending++;
}

static void transport__peer_unref(struct transport_peer *p)
{
    struct transport *t = p->t;
    CC_ASSERT(p->n_refs > 0);
    p->n_refs--;
    if (p->removed && p->n_refs == 0) {
        CC_ASSERT(p->head == NULL);
        transport__stats_add(&t->stats.sum, &p->stats);
        free(p);
    }
    transport__done(t);
}

static struct transport_peer *transport__find_peer(const struct transport *t, uint32_t id)
{
    for (uint32_t i = 0; i < t->n_peers; i++) {
        if (t->peers[i]->id == id) {
            return t->peers[i];
        }
    }
    return NULL;
}

/* ---- queue ------------------------------------------------------------------------ */

static void transport__queue_push(struct transport_peer *p, struct transport__frame *f)
{
    f->next = NULL;
    if (p->tail != NULL) {
        p->tail->next = f;
    } else {
        p->head = f;
    }
    p->tail = f;
    p->stats.queue_frames++;
    p->stats.queue_bytes += f->n_bytes;
}

/* Removes the head frame, counting it as sent or dropped. */
static void transport__queue_pop(struct transport_peer *p, bool sent)
{
    struct transport__frame *f = p->head;
    CC_ASSERT(f != NULL);
    p->head = f->next;
    if (p->head == NULL) {
        p->tail = NULL;
    }
    CC_ASSERT(p->stats.queue_frames > 0);
    CC_ASSERT(p->stats.queue_bytes >= f->n_bytes);
    p->stats.queue_frames--;
    p->stats.queue_bytes -= f->n_bytes;
    if (sent) {
        p->stats.frames_sent++;
        p->stats.bytes_sent += f->n_bytes;
    } else {
        p->stats.frames_dropped++;
        p->stats.bytes_dropped += f->n_bytes;
    }
    free(f);
}

/* Drops every frame that is not inside the write in flight. */
static void transport__queue_drop_waiting(struct transport_peer *p)
{
    struct transport__frame *keep_tail = NULL;
    struct transport__frame *f = p->head;
    for (uint32_t i = 0; i < p->n_writing; i++) {
        CC_ASSERT(f != NULL);
        keep_tail = f;
        f = f->next;
    }
    if (keep_tail != NULL) {
        keep_tail->next = NULL;
    } else {
        p->head = NULL;
    }
    p->tail = keep_tail;
    while (f != NULL) {
        struct transport__frame *next = f->next;
        p->stats.queue_frames--;
        p->stats.queue_bytes -= f->n_bytes;
        p->stats.frames_dropped++;
        p->stats.bytes_dropped += f->n_bytes;
        free(f);
        f = next;
    }
}

/* ---- outbound (dial, write, backoff) ----------------------------------------------- */

static void transport__dial(struct transport_peer *p);
static void transport__write(struct transport_peer *p);

static void transport__on_redial(uv_timer_t *timer)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(timer, struct transport_peer, timer);
    transport__dial(p);
}

/* Equal jitter: half the delay fixed, half drawn, so peers that lost the same node do
 * not redial in lockstep. */
static void transport__schedule_redial(struct transport_peer *p)
{
    CC_ASSERT(!p->removed);
    CC_ASSERT(!p->t->closing);
    const uint32_t base = p->backoff_ms;
    const uint64_t delay_ms = base / 2 + prng_below(&p->t->prng, base / 2 + 1);
    p->backoff_ms = base * 2 < TRANSPORT_BACKOFF_MS_MAX ? base * 2 : TRANSPORT_BACKOFF_MS_MAX;
    uv_timer_start(&p->timer, transport__on_redial, delay_ms, 0);
}

static void transport__on_tcp_close(uv_handle_t *h)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(h, struct transport_peer, tcp);
    p->tcp_open = false;
    p->tcp_closing = false;
    p->hello_due = false;
    if (!p->removed && !p->t->closing) {
        transport__schedule_redial(p);
    }
    transport__peer_unref(p);
}

/* Closes the outbound connection (if any); its close callback schedules the redial. A
 * connection that stayed up for a while resets the backoff. */
static void transport__close_tcp(struct transport_peer *p)
{
    if (!p->tcp_open || p->tcp_closing) {
        return;
    }
    p->tcp_closing = true;
    if (p->connected) {
        p->connected = false;
        if (uv_now(p->t->loop) - p->connected_at_ms >= TRANSPORT_BACKOFF_MS_MAX) {
            p->backoff_ms = TRANSPORT_BACKOFF_MS_MIN;
        }
    }
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->tcp, transport__on_tcp_close);
}

/* A resolve or dial failed: messages waiting for this peer are stale by the time a
 * redial could carry them, so they go; the first failure in a row is logged. */
static void transport__dial_failed(struct transport_peer *p, const char *step, int status)
{
    CC_ASSERT(p->n_writing == 0);
    p->stats.connect_failures++;
    p->failures_in_row++;
    if (p->failures_in_row == 1) {
        transport__log(p->t,
                       "cannot reach peer %" PRIu32 " at %s: %s: %s; redialling with backoff "
                       "(further failures are counted, not logged)",
                       p->id, p->addr, step, uv_strerror(status));
    }
    transport__queue_drop_waiting(p);
    if (p->tcp_open) {
        transport__close_tcp(p);
    } else {
        transport__schedule_redial(p);
    }
}

static void transport__alloc_junk(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(h, struct transport_peer, tcp);
    *buf = uv_buf_init((char *)p->junk, sizeof(p->junk));
}

/* We only read our outbound connection to learn when it dies. */
static void transport__on_outbound_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(s, struct transport_peer, tcp);
    if (nread == 0 || p->tcp_closing) {
        return;
    }
    if (nread > 0) {
        transport__log(p->t,
                       "peer %" PRIu32 " at %s wrote %zd bytes on our outbound connection, "
                       "which carries nothing inbound; reconnecting",
                       p->id, p->addr, nread);
    } else if (nread == UV_EOF) {
        transport__log(p->t, "peer %" PRIu32 " at %s closed the connection; reconnecting", p->id,
                       p->addr);
    } else {
        transport__log(p->t, "connection to peer %" PRIu32 " at %s failed: %s; reconnecting", p->id,
                       p->addr, uv_strerror((int)nread));
    }
    transport__close_tcp(p);
}

static void transport__on_connect_timeout(uv_timer_t *timer)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(timer, struct transport_peer, timer);
    if (p->connecting && !p->tcp_closing) {
        transport__dial_failed(p, "connect", UV_ETIMEDOUT);
    }
}

static void transport__on_connect(uv_connect_t *req, int status)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(req, struct transport_peer, connect_req);
    p->connecting = false;
    if (status == UV_ECANCELED || p->tcp_closing) {
        goto out; /* closed under the dial: removal, close or connect timeout */
    }
    uv_timer_stop(&p->timer);
    if (status != 0) {
        transport__dial_failed(p, "connect", status);
        goto out;
    }
    /* Raft messages are small and latency-bound: no Nagle. Keepalive finds a peer
     * that vanished without a FIN (power loss, partition). */
    uv_tcp_nodelay(&p->tcp, 1);
    uv_tcp_keepalive(&p->tcp, 1, TRANSPORT_KEEPALIVE_S);
    const int rv =
        uv_read_start((uv_stream_t *)&p->tcp, transport__alloc_junk, transport__on_outbound_read);
    if (rv != 0) {
        transport__dial_failed(p, "read", rv);
        goto out;
    }
    p->connected = true;
    p->connected_at_ms = uv_now(p->t->loop);
    p->stats.connects++;
    if (p->stats.connects > 1) {
        p->stats.reconnects++;
    }
    transport__log(p->t, "connected to peer %" PRIu32 " at %s (after %" PRIu32 " failed dials)",
                   p->id, p->addr, p->failures_in_row);
    p->failures_in_row = 0;
    p->hello_due = true;
    transport__write(p);
out:
    transport__peer_unref(p);
}

static void transport__connect(struct transport_peer *p, const struct sockaddr *sa)
{
    int rv = uv_tcp_init(p->t->loop, &p->tcp);
    if (rv != 0) {
        transport__dial_failed(p, "socket", rv);
        return;
    }
    p->tcp_open = true;
    transport__peer_ref(p);
    rv = uv_tcp_connect(&p->connect_req, &p->tcp, sa, transport__on_connect);
    if (rv != 0) {
        transport__dial_failed(p, "connect", rv);
        return;
    }
    p->connecting = true;
    transport__peer_ref(p);
    uv_timer_start(&p->timer, transport__on_connect_timeout, TRANSPORT__CONNECT_TIMEOUT_MS, 0);
}

static void transport__on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(req, struct transport_peer, gai_req);
    p->resolving = false;
    if (!p->removed && !p->t->closing) {
        if (status != 0 || res == NULL) {
            transport__dial_failed(p, "resolve", status != 0 ? status : UV_EAI_NONAME);
        } else {
            /* a name with several addresses ("localhost": ::1 and 127.0.0.1): each
             * failed dial in a row moves on to the next one */
            uint32_t n_addrs = 0;
            for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
                n_addrs++;
            }
            const struct addrinfo *pick = res;
            for (uint32_t i = 0; i < p->failures_in_row % n_addrs; i++) {
                pick = pick->ai_next;
            }
            transport__connect(p, pick->ai_addr);
        }
    }
    uv_freeaddrinfo(res);
    transport__peer_unref(p);
}

/* Starts one dial. Names are resolved on every dial, so a peer whose DNS record moves
 * is found at its new address. */
static void transport__dial(struct transport_peer *p)
{
    CC_ASSERT(!p->removed);
    CC_ASSERT(!p->tcp_open);
    CC_ASSERT(!p->resolving);
    if (p->numeric) {
        transport__connect(p, (const struct sockaddr *)&p->sa);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const int rv =
        uv_getaddrinfo(p->t->loop, &p->gai_req, transport__on_resolved, p->host, p->port, &hints);
    if (rv != 0) {
        transport__dial_failed(p, "resolve", rv);
        return;
    }
    p->resolving = true;
    transport__peer_ref(p);
}

static void transport__on_write(uv_write_t *req, int status)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(req, struct transport_peer, write_req);
    const uint32_t n_frames = p->n_writing;
    p->writing = false;
    p->writing_hello = false;
    p->n_writing = 0;
    for (uint32_t i = 0; i < n_frames; i++) {
        transport__queue_pop(p, status == 0);
    }
    if (status == 0) {
        transport__write(p); /* whatever queued meanwhile, in one write */
    } else if (status != UV_ECANCELED && !p->tcp_closing) {
        transport__log(p->t,
                       "write to peer %" PRIu32 " at %s failed: %s; %" PRIu32
                       " frames lost, reconnecting",
                       p->id, p->addr, uv_strerror(status), n_frames);
        transport__close_tcp(p);
    }
    transport__peer_unref(p);
}

/* Starts one write of HELLO (on a new connection) and up to TRANSPORT_WRITE_BUFS_MAX
 * queued frames, unless one is in flight already. */
static void transport__write(struct transport_peer *p)
{
    if (!p->connected || p->writing || p->tcp_closing) {
        return;
    }
    uv_buf_t bufs[TRANSPORT_WRITE_BUFS_MAX + 1];
    uint32_t n_bufs = 0;
    uint32_t n_frames = 0;
    if (p->hello_due) {
        bufs[n_bufs++] = uv_buf_init((char *)p->hello, sizeof(p->hello));
    }
    for (struct transport__frame *f = p->head; f != NULL && n_frames < TRANSPORT_WRITE_BUFS_MAX;
         f = f->next) {
        bufs[n_bufs++] = uv_buf_init((char *)f->bytes, f->n_bytes);
        n_frames++;
    }
    if (n_bufs == 0) {
        return;
    }
    const int rv =
        uv_write(&p->write_req, (uv_stream_t *)&p->tcp, bufs, n_bufs, transport__on_write);
    if (rv != 0) {
        transport__log(p->t, "write to peer %" PRIu32 " at %s failed: %s; reconnecting", p->id,
                       p->addr, uv_strerror(rv));
        transport__close_tcp(p);
        return;
    }
    p->writing = true;
    p->writing_hello = p->hello_due;
    p->hello_due = false;
    p->n_writing = n_frames;
    transport__peer_ref(p);
}

/* Runs once per loop iteration while some peer has frames to go: everything sent in
 * one iteration leaves in one write per peer. */
static void transport__on_flush(uv_prepare_t *h)
{
    struct transport *t = TRANSPORT__CONTAINER_OF(h, struct transport, flush);
    uv_prepare_stop(h);
    for (uint32_t i = 0; i < t->n_peers; i++) {
        struct transport_peer *p = t->peers[i];
        if (p->flush_wanted) {
            p->flush_wanted = false;
            transport__write(p);
        }
    }
}

static void transport__want_write(struct transport_peer *p)
{
    if (!p->connected || p->writing || p->flush_wanted) {
        return;
    }
    p->flush_wanted = true;
    uv_prepare_start(&p->t->flush, transport__on_flush);
}

static void transport__on_peer_timer_close(uv_handle_t *h)
{
    struct transport_peer *p = TRANSPORT__CONTAINER_OF(h, struct transport_peer, timer);
    transport__peer_unref(p);
}

/* Unlinks p and starts closing everything it holds; the last callback frees it. */
static void transport__peer_remove(struct transport *t, struct transport_peer *p)
{
    uint32_t i = 0;
    while (i < t->n_peers && t->peers[i] != p) {
        i++;
    }
    CC_ASSERT(i < t->n_peers);
    t->peers[i] = t->peers[t->n_peers - 1];
    t->peers[t->n_peers - 1] = NULL;
    t->n_peers--;
    p->removed = true;
    p->flush_wanted = false;
    transport__queue_drop_waiting(p);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, transport__on_peer_timer_close);
    if (p->resolving) {
        uv_cancel((uv_req_t *)&p->gai_req); /* fails harmlessly once it runs */
    }
    transport__close_tcp(p);
}

/* ---- inbound (accept, parse, deliver) ---------------------------------------------- */

static void transport__on_conn_close(uv_handle_t *h)
{
    struct transport_conn *c = TRANSPORT__CONTAINER_OF(h, struct transport_conn, tcp);
    struct transport *t = c->t;
    free(c->rbuf);
    free(c);
    transport__done(t);
}

static void transport__conn_close(struct transport_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->linked) {
        struct transport *t = c->t;
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            t->inbound = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        c->linked = false;
        CC_ASSERT(t->n_inbound > 0);
        t->n_inbound--;
    }
    uv_close((uv_handle_t *)&c->tcp, transport__on_conn_close);
}

/* A malformed stream: one line naming the remote end and the fault, then close. */
static void transport__conn_error(struct transport_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void transport__conn_error(struct transport_conn *c, const char *fmt, ...)
{
    char what[TRANSPORT_LOG_LINE_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
    char who[32] = "";
    if (c->hello_done) {
        snprintf(who, sizeof(who), " (peer %" PRIu32 ")", c->peer_id);
    }
    transport__log(c->t, "inbound connection from %s%s: %s; closing it", c->addr, who, what);
    c->t->stats.protocol_errors++;
    transport__conn_close(c);
}

static void transport__on_hello(struct transport_conn *c, const uint8_t *payload, uint32_t n)
{
    struct transport *t = c->t;
    if (c->hello_done) {
        transport__conn_error(c, "second HELLO on one connection");
        return;
    }
    struct msgcodec_hello hello;
    const int rv = msgcodec_hello_decode(payload, n, &hello);
    if (rv != 0) {
        transport__conn_error(c, "bad HELLO: %s", msgcodec_strerror(rv));
        return;
    }
    if (hello.cluster_id != t->cluster_id) {
        transport__conn_error(
            c, "peer %" PRIu32 " belongs to cluster %016" PRIx64 ", we are cluster %016" PRIx64,
            hello.id, hello.cluster_id, t->cluster_id);
        return;
    }
    if (hello.id == t->self_id) {
        transport__conn_error(c, "HELLO claims our own id %" PRIu32, hello.id);
        return;
    }
    c->hello_done = true;
    c->peer_id = hello.id;
    /* A peer dials a new connection only after its old one died (or it restarted): an
     * older inbound connection from the same id is a half-open leftover. */
    struct transport_conn *next;
    for (struct transport_conn *o = t->inbound; o != NULL; o = next) {
        next = o->next;
        if (o != c && o->hello_done && o->peer_id == hello.id) {
            transport__log(t,
                           "inbound connection from %s (peer %" PRIu32
                           ") superseded by a new one from %s; closing it",
                           o->addr, o->peer_id, c->addr);
            transport__conn_close(o);
        }
    }
}

static void transport__on_raft(struct transport_conn *c, const uint8_t *payload, uint32_t n)
{
    struct transport *t = c->t;
    if (!c->hello_done) {
        transport__conn_error(c, "first frame is not HELLO");
        return;
    }
    struct raft_msg m;
    const int rv = msgcodec_decode(payload, n, &m, &t->scratch);
    if (rv != 0) {
        transport__conn_error(c, "undecodable message (%" PRIu32 " bytes): %s", n,
                              msgcodec_strerror(rv));
        return;
    }
    if (m.from != c->peer_id) {
        transport__conn_error(c, "message claims to be from %" PRIu32, m.from);
        return;
    }
    if (m.to != t->self_id) {
        transport__conn_error(c, "message addressed to %" PRIu32 ", we are %" PRIu32, m.to,
                              t->self_id);
        return;
    }
    struct transport_peer *p = transport__find_peer(t, m.from);
    struct transport_peer_stats *s = p != NULL ? &p->stats : &t->stats.sum;
    s->frames_received++;
    s->bytes_received += MSGCODEC_HEADER_BYTES + (uint64_t)n;
    t->recv_cb(t->cb_data, &m);
}

/* Delivers every whole frame in rbuf, then keeps the partial one at the front with room
 * for all of it. Stops at the first fault or once the connection is closing (the
 * callback may close it, or the whole transport). */
static void transport__parse(struct transport_conn *c)
{
    size_t off = 0;
    size_t need = MSGCODEC_HEADER_BYTES;
    while (!c->closing) {
        const size_t avail = c->rlen - off;
        if (avail < MSGCODEC_HEADER_BYTES) {
            break;
        }
        const uint8_t *hb = c->rbuf + off;
        struct msgcodec_header h;
        int rv = msgcodec_header_decode(hb, &h);
        if (rv != 0) {
            transport__conn_error(
                c,
                "bad frame header: %s (bytes %02x %02x %02x %02x %02x %02x "
                "%02x %02x, length %" PRIu32 ")",
                msgcodec_strerror(rv), hb[0], hb[1], hb[2], hb[3], hb[4], hb[5], hb[6], hb[7],
                (uint32_t)(hb[8] | hb[9] << 8 | hb[10] << 16 | (uint32_t)hb[11] << 24));
            return;
        }
        const size_t total = MSGCODEC_HEADER_BYTES + (size_t)h.payload_len;
        if (avail < total) {
            need = total;
            break;
        }
        const uint8_t *payload = hb + MSGCODEC_HEADER_BYTES;
        rv = msgcodec_payload_check(&h, payload);
        if (rv != 0) {
            transport__conn_error(c, "%s (frame kind %u, %" PRIu32 " payload bytes)",
                                  msgcodec_strerror(rv), (unsigned)h.kind, h.payload_len);
            return;
        }
        off += total;
        if (h.kind == MSGCODEC_KIND_HELLO) {
            transport__on_hello(c, payload, h.payload_len);
        } else {
            transport__on_raft(c, payload, h.payload_len);
        }
    }
    if (c->closing) {
        return;
    }
    c->rlen -= off;
    if (off > 0 && c->rlen > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen);
    }
    /* Grow for a large frame only once its header passed; shrink back after it. */
    const size_t cap = need > TRANSPORT_RECV_CHUNK_BYTES ? need : TRANSPORT_RECV_CHUNK_BYTES;
    CC_ASSERT(c->rlen < cap);
    if (cap != c->rcap) {
        uint8_t *rbuf = realloc(c->rbuf, cap);
        if (rbuf != NULL) {
            c->rbuf = rbuf;
            c->rcap = cap;
        } else if (cap > c->rcap) {
            transport__log(c->t,
                           "inbound connection from %s: out of memory for a %zu-byte frame; "
                           "closing it",
                           c->addr, cap);
            transport__conn_close(c);
        }
    }
}

static void transport__alloc_inbound(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct transport_conn *c = TRANSPORT__CONTAINER_OF(h, struct transport_conn, tcp);
    CC_ASSERT(c->rlen < c->rcap);
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void transport__on_inbound_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct transport_conn *c = TRANSPORT__CONTAINER_OF(s, struct transport_conn, tcp);
    if (c->closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        char who[32] = "";
        if (c->hello_done) {
            snprintf(who, sizeof(who), " (peer %" PRIu32 ")", c->peer_id);
        }
        transport__log(c->t, "inbound connection from %s%s %s%s", c->addr, who,
                       nread == UV_EOF ? "closed by the remote end" : "failed: ",
                       nread == UV_EOF ? "" : uv_strerror((int)nread));
        transport__conn_close(c);
        return;
    }
    CC_ASSERT((size_t)nread <= c->rcap - c->rlen);
    c->rlen += (size_t)nread;
    transport__parse(c);
}

static void transport__on_connection(uv_stream_t *server, int status)
{
    struct transport *t = server->data;
    if (status != 0) {
        transport__log(t, "accept failed: %s", uv_strerror(status));
        t->stats.inbound_refused++;
        return;
    }
    struct transport_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        /* Not accepting stalls the listener until libuv retries; nothing better to do
         * without memory. */
        transport__log(t, "out of memory accepting a connection");
        t->stats.inbound_refused++;
        return;
    }
    c->t = t;
    int rv = uv_tcp_init(t->loop, &c->tcp);
    if (rv != 0) {
        transport__log(t, "accept failed: %s", uv_strerror(rv));
        t->stats.inbound_refused++;
        free(c);
        return;
    }
    t->n_pending++;
    rv = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rv != 0) {
        transport__log(t, "accept failed: %s", uv_strerror(rv));
        t->stats.inbound_refused++;
        transport__conn_close(c);
        return;
    }
    struct sockaddr_storage sa;
    int n_sa = sizeof(sa);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &n_sa) == 0) {
        transport__sa_name(&sa, c->addr, sizeof(c->addr));
    } else {
        snprintf(c->addr, sizeof(c->addr), "(unknown address)");
    }
    c->linked = true;
    c->next = t->inbound;
    if (t->inbound != NULL) {
        t->inbound->prev = c;
    }
    t->inbound = c;
    t->n_inbound++;
    if (t->n_inbound > TRANSPORT_INBOUND_MAX) {
        transport__log(t,
                       "refusing inbound connection from %s: %d already open "
                       "(TRANSPORT_INBOUND_MAX)",
                       c->addr, TRANSPORT_INBOUND_MAX);
        t->stats.inbound_refused++;
        transport__conn_close(c);
        return;
    }
    c->rbuf = malloc(TRANSPORT_RECV_CHUNK_BYTES);
    if (c->rbuf == NULL) {
        transport__log(t, "out of memory for inbound connection from %s; closing it", c->addr);
        t->stats.inbound_refused++;
        transport__conn_close(c);
        return;
    }
    c->rcap = TRANSPORT_RECV_CHUNK_BYTES;
    c->accepted_ms = uv_now(t->loop);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, TRANSPORT_KEEPALIVE_S);
    rv =
        uv_read_start((uv_stream_t *)&c->tcp, transport__alloc_inbound, transport__on_inbound_read);
    if (rv != 0) {
        transport__log(t, "cannot read inbound connection from %s: %s; closing it", c->addr,
                       uv_strerror(rv));
        t->stats.inbound_refused++;
        transport__conn_close(c);
        return;
    }
    t->stats.inbound_accepted++;
}

/* ---- sweep -------------------------------------------------------------------------- */

/* Closes inbound connections that never said HELLO, so strays and port scanners cannot
 * hold TRANSPORT_INBOUND_MAX slots. */
static void transport__on_sweep(uv_timer_t *timer)
{
    struct transport *t = timer->data;
    const uint64_t now_ms = uv_now(t->loop);
    struct transport_conn *next;
    for (struct transport_conn *c = t->inbound; c != NULL; c = next) {
        next = c->next;
        if (!c->hello_done && now_ms - c->accepted_ms >= TRANSPORT_HELLO_TIMEOUT_MS) {
            transport__conn_error(c, "no HELLO within %d ms", TRANSPORT_HELLO_TIMEOUT_MS);
        }
    }
}

/* ---- API -------------------------------------------------------------------------- */

/* libuv writes with plain write(2) on Linux: a peer that resets mid-write would raise
 * SIGPIPE and kill the node. Ignore it (unless the host installed its own handler) so
 * the write fails with EPIPE and the connection is redialled. */
static void transport__ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        struct sigaction ign;
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);
    }
}

static int transport__listen(struct transport *t, const char *listen_host_port)
{
    char host[TRANSPORT_ADDR_BYTES_MAX];
    char port[TRANSPORT__PORT_BYTES];
    int port_value;
    int rv = transport__split(listen_host_port, true, host, port, &port_value);
    if (rv != 0) {
        return transport__fail(t, rv, "listen address \"%.*s\" is not host:port",
                               TRANSPORT_ADDR_BYTES_MAX, listen_host_port);
    }
    struct sockaddr_storage sa;
    if (!transport__numeric(host, port_value, &sa)) {
        /* startup only: a blocking resolve is fine here */
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        uv_getaddrinfo_t req;
        rv = uv_getaddrinfo(t->loop, &req, NULL, host, port, &hints);
        if (rv != 0) {
            return transport__fail(t, TRANSPORT_EADDR, "cannot resolve listen host \"%s\": %s",
                                   host, uv_strerror(rv));
        }
        CC_ASSERT(req.addrinfo->ai_addrlen <= sizeof(sa));
        memcpy(&sa, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
        uv_freeaddrinfo(req.addrinfo);
    }
    rv = uv_tcp_init(t->loop, &t->listener);
    if (rv != 0) {
        return transport__fail(t, TRANSPORT_ELISTEN, "listen socket: %s", uv_strerror(rv));
    }
    t->listener.data = t;
    t->listening = true;
    t->n_pending++;
    rv = uv_tcp_bind(&t->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&t->listener, TRANSPORT__LISTEN_BACKLOG,
                       transport__on_connection);
    }
    if (rv != 0) {
        return transport__fail(t, TRANSPORT_ELISTEN, "cannot listen on %s: %s", listen_host_port,
                               uv_strerror(rv));
    }
    return 0;
}

int transport_init(struct transport *t, uv_loop_t *loop, uint32_t self_id, uint64_t cluster_id,
                   const char *listen_host_port, transport_recv_cb cb, void *cb_data)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(loop != NULL);
    CC_ASSERT(cb != NULL);
    CC_ASSERT(self_id != 0);
    memset(t, 0, sizeof(*t));
    t->loop = loop;
    t->self_id = self_id;
    t->cluster_id = cluster_id;
    t->recv_cb = cb;
    t->cb_data = cb_data;
    t->queue_bytes_max = TRANSPORT_QUEUE_BYTES_MAX;
    t->queue_frames_max = TRANSPORT_QUEUE_FRAMES_MAX;
    prng_seed(&t->prng, cluster_id ^ ((uint64_t)self_id * UINT64_C(0x9E3779B97F4A7C15)));
    transport__ignore_sigpipe();

    /* Neither can fail on Unix; they exist from here on, so transport_close() always
     * has a handle to wait for and close_cb never runs inside it. */
    int rv = uv_prepare_init(loop, &t->flush);
    CC_ASSERT(rv == 0);
    t->flush.data = t;
    t->n_pending++;
    rv = uv_timer_init(loop, &t->sweep);
    CC_ASSERT(rv == 0);
    t->sweep.data = t;
    t->n_pending++;
    uv_timer_start(&t->sweep, transport__on_sweep, TRANSPORT__SWEEP_MS, TRANSPORT__SWEEP_MS);
    uv_unref((uv_handle_t *)&t->sweep); /* housekeeping must not keep the loop alive */

    if (listen_host_port == NULL) {
        return 0;
    }
    return transport__listen(t, listen_host_port);
}

void transport_close(struct transport *t, transport_close_cb close_cb)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(!t->closing);
    t->closing = true;
    t->close_cb = close_cb;
    while (t->n_peers > 0) {
        transport__peer_remove(t, t->peers[t->n_peers - 1]);
    }
    while (t->inbound != NULL) {
        transport__conn_close(t->inbound);
    }
    if (t->listening) {
        t->listening = false;
        uv_close((uv_handle_t *)&t->listener, transport__on_handle_close);
    }
    uv_close((uv_handle_t *)&t->flush, transport__on_handle_close);
    uv_close((uv_handle_t *)&t->sweep, transport__on_handle_close);
}

int transport_set_peer(struct transport *t, uint32_t id, const char *host_port)
{
    CC_ASSERT(t != NULL);
    int rv;
    if (t->closing) {
        rv = transport__fail(t, TRANSPORT_ECLOSED, "set_peer after close");
        goto err;
    }
    if (id == 0 || id == t->self_id) {
        rv = transport__fail(t, TRANSPORT_EINVAL, "peer id %" PRIu32 " is 0 or our own", id);
        goto err;
    }
    struct transport_peer *old = transport__find_peer(t, id);
    if (host_port == NULL) {
        if (old != NULL) {
            transport__log(t, "peer %" PRIu32 " at %s removed", id, old->addr);
            transport__peer_remove(t, old);
        }
        return 0;
    }
    char host[TRANSPORT_ADDR_BYTES_MAX];
    char port[TRANSPORT__PORT_BYTES];
    int port_value;
    rv = transport__split(host_port, false, host, port, &port_value);
    if (rv != 0) {
        rv = transport__fail(t, rv, "peer %" PRIu32 " address \"%.*s\" is not host:port", id,
                             TRANSPORT_ADDR_BYTES_MAX, host_port);
        goto err;
    }
    if (old != NULL && strcmp(old->addr, host_port) == 0) {
        return 0;
    }
    if (old == NULL && t->n_peers == TRANSPORT_PEERS_MAX) {
        rv = transport__fail(t, TRANSPORT_ETOOMANY, "already %d peers", TRANSPORT_PEERS_MAX);
        goto err;
    }
    struct transport_peer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        rv = transport__fail(t, TRANSPORT_ENOMEM, "no memory for peer %" PRIu32, id);
        goto err;
    }
    p->t = t;
    p->id = id;
    snprintf(p->addr, sizeof(p->addr), "%s", host_port);
    snprintf(p->host, sizeof(p->host), "%s", host);
    snprintf(p->port, sizeof(p->port), "%s", port);
    p->numeric = transport__numeric(host, port_value, &p->sa);
    p->backoff_ms = TRANSPORT_BACKOFF_MS_MIN;
    const struct msgcodec_hello hello = {.id = t->self_id, .cluster_id = t->cluster_id};
    size_t n_hello = 0;
    rv = msgcodec_frame_encode_hello(&hello, p->hello, sizeof(p->hello), &n_hello);
    CC_ASSERT(rv == 0);
    CC_ASSERT(n_hello == sizeof(p->hello));
    rv = uv_timer_init(t->loop, &p->timer); /* cannot fail on Unix */
    CC_ASSERT(rv == 0);
    transport__peer_ref(p);
    if (old != NULL) {
        /* the old connection and queue belong to the old address */
        transport__log(t, "peer %" PRIu32 " moves from %s to %s", id, old->addr, host_port);
        transport__peer_remove(t, old);
    }
    t->peers[t->n_peers++] = p;
    transport__dial(p);
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int transport_send(struct transport *t, const struct raft_msg *m)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(m != NULL);
    int rv;
    if (t->closing) {
        rv = transport__fail(t, TRANSPORT_ECLOSED, "send after close");
        goto err;
    }
    if (m->from != t->self_id) {
        rv = transport__fail(t, TRANSPORT_EINVAL,
                             "message from %" PRIu32 " sent by transport %" PRIu32, m->from,
                             t->self_id);
        goto err;
    }
    struct transport_peer *p = transport__find_peer(t, m->to);
    if (p == NULL) {
        t->stats.no_peer_drops++;
        rv = transport__fail(t, TRANSPORT_ENOPEER, "no peer %" PRIu32, m->to);
        goto err;
    }
    rv = msgcodec_check(m);
    if (rv != 0) {
        rv = transport__fail(t, TRANSPORT_EINVAL, "unencodable %s to %" PRIu32 ": %s",
                             raft_msg_type_name(m->type), m->to, msgcodec_strerror(rv));
        goto err;
    }
    /* The one message type that can outgrow a frame is APPEND: cut its entry list. A
     * follower acks the prefix it got; the leader resends the rest (Raft §5.3). */
    struct raft_msg trimmed;
    const struct raft_msg *out = m;
    uint64_t n_payload = msgcodec_payload_size(m);
    if (n_payload > MSGCODEC_PAYLOAD_BYTES_MAX) {
        CC_ASSERT(m->type == RAFT_MSG_APPEND);
        trimmed = *m;
        trimmed.append.n_entries = msgcodec_append_fit(m, MSGCODEC_PAYLOAD_BYTES_MAX);
        CC_ASSERT(trimmed.append.n_entries >= 1); /* msgcodec.h asserts one entry fits */
        p->stats.entries_trimmed += m->append.n_entries - trimmed.append.n_entries;
        out = &trimmed;
        n_payload = msgcodec_payload_size(out);
    }
    const uint64_t n_frame = MSGCODEC_HEADER_BYTES + n_payload;
    CC_ASSERT(n_frame <= MSGCODEC_FRAME_BYTES_MAX);
    if (p->stats.queue_frames + 1 > t->queue_frames_max ||
        p->stats.queue_bytes + n_frame > t->queue_bytes_max) {
        p->stats.frames_dropped++;
        p->stats.bytes_dropped += n_frame;
        rv = transport__fail(
            t, TRANSPORT_EFULL,
            "queue to peer %" PRIu32 " full (%" PRIu32 " frames, %" PRIu64 " bytes); %s dropped",
            p->id, p->stats.queue_frames, p->stats.queue_bytes, raft_msg_type_name(m->type));
        goto err;
    }
    struct transport__frame *f = malloc(sizeof(*f) + (size_t)n_frame);
    if (f == NULL) {
        p->stats.frames_dropped++;
        p->stats.bytes_dropped += n_frame;
        rv =
            transport__fail(t, TRANSPORT_ENOMEM, "no memory for a %" PRIu64 "-byte frame", n_frame);
        goto err;
    }
    size_t n_written = 0;
    rv = msgcodec_frame_encode_raft(out, f->bytes, (size_t)n_frame, &n_written);
    CC_ASSERT(rv == 0); /* checked and sized above */
    CC_ASSERT(n_written == n_frame);
    f->n_bytes = (uint32_t)n_frame;
    transport__queue_push(p, f);
    transport__want_write(p);
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int transport_set_queue_limits(struct transport *t, uint64_t bytes_max, uint32_t frames_max)
{
    CC_ASSERT(t != NULL);
    if (bytes_max < MSGCODEC_FRAME_BYTES_MAX || bytes_max > TRANSPORT_QUEUE_BYTES_MAX ||
        frames_max < 1 || frames_max > TRANSPORT_QUEUE_FRAMES_MAX) {
        return transport__fail(t, TRANSPORT_EINVAL, "queue limits out of range");
    }
    t->queue_bytes_max = bytes_max;
    t->queue_frames_max = frames_max;
    return 0;
}

void transport_set_log(struct transport *t, transport_log_cb cb, void *log_data)
{
    CC_ASSERT(t != NULL);
    t->log_cb = cb;
    t->log_data = log_data;
}

uint16_t transport_bound_port(const struct transport *t)
{
    CC_ASSERT(t != NULL);
    if (!t->listening) {
        return 0;
    }
    struct sockaddr_storage sa;
    int n = sizeof(sa);
    if (uv_tcp_getsockname(&t->listener, (struct sockaddr *)&sa, &n) != 0) {
        return 0;
    }
    if (sa.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)&sa)->sin_port);
    }
    if (sa.ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)&sa)->sin6_port);
    }
    return 0;
}

int transport_peer_stats(const struct transport *t, uint32_t id, struct transport_peer_stats *out)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(out != NULL);
    const struct transport_peer *p = transport__find_peer(t, id);
    if (p == NULL) {
        return TRANSPORT_ENOPEER;
    }
    *out = p->stats;
    out->connected = p->connected;
    return 0;
}

void transport_stats(const struct transport *t, struct transport_stats *out)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(out != NULL);
    *out = t->stats;
    for (uint32_t i = 0; i < t->n_peers; i++) {
        const struct transport_peer *p = t->peers[i];
        transport__stats_add(&out->sum, &p->stats);
        out->sum.queue_bytes += p->stats.queue_bytes;
        out->sum.queue_frames += p->stats.queue_frames;
        out->sum.connected = out->sum.connected || p->connected;
    }
    out->n_inbound = t->n_inbound;
    out->n_peers = t->n_peers;
}

const char *transport_errmsg(const struct transport *t)
{
    CC_ASSERT(t != NULL);
    return t->errmsg;
}
