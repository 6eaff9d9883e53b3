/* transport.h -- the Raft peer transport: struct raft_msg between nodes over TCP, on a
 * libuv loop.
 *
 * Shape (after canonical/raft's uv transport and etcd's rafthttp streams):
 *   - Each node dials one outbound TCP connection per peer and only ever writes on it;
 *     it accepts inbound connections and only ever reads on them. Two nodes therefore
 *     share two connections, one per direction, and neither side has to decide who
 *     dials whom.
 *   - Every connection opens with a HELLO frame (sender id, cluster id); the receiver
 *     refuses a foreign cluster, then takes RAFT frames (msgcodec.h has the format).
 *   - Sending never blocks and never fails loudly: transport_send() encodes the message
 *     at once into the peer's bounded queue, or drops it and counts the drop. Raft
 *     tolerates loss (the leader retries), so a slow or dead follower costs the leader
 *     at most TRANSPORT_QUEUE_BYTES_MAX of memory.
 *   - Lost connections are redialled with jittered exponential backoff.
 *   - Anything malformed on an inbound connection (bad magic, version, CRC, length,
 *     payload) is logged in one line naming the remote address and the fault, and that
 *     connection is closed. Nothing a peer sends can crash the node or make it allocate
 *     more than MSGCODEC_FRAME_BYTES_MAX for one connection.
 *
 * Threading: everything runs on the loop's thread; no call is thread-safe.
 *
 * Signals: transport_init() sets SIGPIPE to SIG_IGN if it is at its default, because
 * libuv writes with write(2) and a peer that resets mid-write must cost an EPIPE, not
 * the process.
 *
 * Ownership: struct transport is owned by the caller (embed or allocate it) and must
 * stay valid from transport_init() until close_cb has run. Messages passed to
 * transport_send() stay the caller's; they are copied (encoded) before it returns. A
 * message handed to transport_recv_cb is valid only during the callback; use
 * raft_msg_copy() to keep it.
 */
#ifndef CC_NODE_TRANSPORT_H
#define CC_NODE_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "base/prng.h"
#include "node/msgcodec.h"
#include "raft/raft.h"

/* ---- limits ----------------------------------------------------------------------- */

/* Every other member of the largest configuration. */
#define TRANSPORT_PEERS_MAX RAFT_SERVERS_MAX
/* Accepted connections: one per peer plus stale ones from restarts and strays. Bounds
 * receive buffers (each at most MSGCODEC_FRAME_BYTES_MAX). */
#define TRANSPORT_INBOUND_MAX 64
/* Per peer: what a slow or dead follower may cost the leader in memory. */
#define TRANSPORT_QUEUE_BYTES_MAX (UINT64_C(64) << 20)
/* Per peer: bounds a queue of tiny messages. */
#define TRANSPORT_QUEUE_FRAMES_MAX 4096
/* Frames coalesced into one uv_write(). */
#define TRANSPORT_WRITE_BUFS_MAX 64
/* Redial delays double from MIN to MAX, half of each drawn at random. A connection that
 * stayed up for MAX counts as healthy again and resets the delay. */
#define TRANSPORT_BACKOFF_MS_MIN 50
#define TRANSPORT_BACKOFF_MS_MAX 2000
/* An inbound connection must say HELLO by then, or it is closed. */
#define TRANSPORT_HELLO_TIMEOUT_MS 5000
/* TCP keepalive idle time: finds a peer that vanished without a FIN. */
#define TRANSPORT_KEEPALIVE_S 10
/* "host:port" + NUL: a 253-byte DNS name, brackets, colon, port. */
#define TRANSPORT_ADDR_BYTES_MAX 262
/* Receive buffer between frames; it grows to one frame while a large one arrives. */
#define TRANSPORT_RECV_CHUNK_BYTES (UINT32_C(64) << 10)
#define TRANSPORT_ERRMSG_BYTES     256
#define TRANSPORT_LOG_LINE_BYTES   512

_Static_assert(TRANSPORT_QUEUE_BYTES_MAX >= MSGCODEC_FRAME_BYTES_MAX,
               "an empty queue must take the largest frame");
_Static_assert(TRANSPORT_QUEUE_FRAMES_MAX >= RAFT_INFLIGHT_MAX * 2,
               "a full AppendEntries pipeline plus as many small messages must fit");
_Static_assert(TRANSPORT_RECV_CHUNK_BYTES >= MSGCODEC_HEADER_BYTES,
               "a header always fits the idle receive buffer");
_Static_assert(TRANSPORT_BACKOFF_MS_MIN < TRANSPORT_BACKOFF_MS_MAX, "backoff must grow");

/* ---- errors (negative, in the transport range) ------------------------------------ */

enum {
    TRANSPORT_EINVAL = -1701,   /* bad argument or unencodable message (see errmsg) */
    TRANSPORT_EADDR = -1702,    /* malformed "host:port" or unresolvable listen host */
    TRANSPORT_ELISTEN = -1703,  /* bind or listen failed (see errmsg) */
    TRANSPORT_ENOPEER = -1704,  /* no peer with that id */
    TRANSPORT_ETOOMANY = -1705, /* more than TRANSPORT_PEERS_MAX peers */
    TRANSPORT_EFULL = -1706,    /* peer queue at its byte or frame limit: message dropped */
    TRANSPORT_ENOMEM = -1707,   /* allocation failed: message dropped */
    TRANSPORT_ECLOSED = -1708,  /* transport_close() was called */
};
const char *transport_strerror(int rv);

/* ---- callbacks and stats ---------------------------------------------------------- */

struct transport;

/* One message from a peer; m and everything it points to is valid only during the
 * call. The transport has checked its form (msgcodec), that m->from is the peer that
 * said HELLO on this connection and that m->to is us; meaning is raft_step()'s job. The
 * callback may call any transport function, transport_close() included. */
typedef void (*transport_recv_cb)(void *cb_data, const struct raft_msg *m);
typedef void (*transport_close_cb)(struct transport *t);
/* One log line without a trailing newline; valid only during the call. */
typedef void (*transport_log_cb)(void *log_data, const char *line);

struct transport_peer_stats {
    uint64_t frames_sent;     /* RAFT frames fully written to the socket */
    uint64_t bytes_sent;      /* their bytes, headers included */
    uint64_t frames_received; /* RAFT frames delivered from this peer */
    uint64_t bytes_received;
    uint64_t frames_dropped; /* queue full, connection lost, address changed */
    uint64_t bytes_dropped;
    uint64_t entries_trimmed;  /* APPEND entries cut so the message fits one frame */
    uint64_t connects;         /* outbound connections established */
    uint64_t reconnects;       /* ... of which after the first */
    uint64_t connect_failures; /* failed resolves and dials */
    uint64_t queue_bytes;      /* now: queued plus being written */
    uint32_t queue_frames;
    bool connected;
};

struct transport_stats {
    struct transport_peer_stats sum; /* over current peers and removed ones, plus frames
                                        received from ids that are not peers */
    uint64_t inbound_accepted;
    uint64_t inbound_refused; /* over TRANSPORT_INBOUND_MAX, or accept failed */
    uint64_t protocol_errors; /* inbound connections closed for a malformed stream */
    uint64_t no_peer_drops;   /* transport_send() to an unknown id */
    uint32_t n_inbound;       /* open inbound connections now */
    uint32_t n_peers;
};

/* ---- the transport ---------------------------------------------------------------- */

struct transport_peer; /* transport.c */
struct transport_conn; /* transport.c */

/* Fields are private to transport.c; they are here so the caller can embed it. */
struct transport {
    uv_loop_t *loop;
    uint32_t self_id;
    uint64_t cluster_id;
    transport_recv_cb recv_cb;
    void *cb_data;
    transport_log_cb log_cb;
    void *log_data;
    transport_close_cb close_cb;
    bool closing;
    uint32_t n_pending; /* open handles and outstanding requests; close_cb waits for 0 */

    uv_tcp_t listener;
    bool listening;
    uv_prepare_t flush; /* writes queued frames once per loop iteration (coalescing) */
    uv_timer_t sweep;   /* closes inbound connections that never said HELLO */
    struct prng prng;   /* backoff jitter */

    struct transport_peer *peers[TRANSPORT_PEERS_MAX];
    uint32_t n_peers;
    struct transport_conn *inbound; /* list of open inbound connections */
    uint32_t n_inbound;
    uint64_t queue_bytes_max;
    uint32_t queue_frames_max;

    struct transport_stats stats;    /* sum.* folds in removed peers */
    struct msgcodec_scratch scratch; /* entries of the message being delivered */
    char errmsg[TRANSPORT_ERRMSG_BYTES];
};

/* Starts listening on listen_host_port ("127.0.0.1:7001", "[::1]:0", "localhost:7001";
 * port 0 picks a free one, see transport_bound_port; NULL: no listener, send only).
 * self_id is nonzero. The backoff jitter is seeded from self_id and cluster_id.
 * Whatever it returns, t must afterwards be closed with transport_close(), and the
 * loop run until close_cb, before t's memory is reused: on failure errmsg says why. */
int transport_init(struct transport *t, uv_loop_t *loop, uint32_t self_id, uint64_t cluster_id,
                   const char *listen_host_port, transport_recv_cb cb, void *cb_data);

/* Closes every connection, timer and listener, drops every queued message, then calls
 * close_cb (from the loop, never from inside this call). Afterwards t may be freed. */
void transport_close(struct transport *t, transport_close_cb close_cb);

/* Adds the peer, moves it to a new address, or (host_port NULL) removes it, dropping its
 * queue; a moved peer's queue is dropped too and it redials at once. Membership changes
 * call this as the configuration changes. A new peer is dialled immediately. */
int transport_set_peer(struct transport *t, uint32_t id, const char *host_port);

/* Encodes m (from == self_id, to == a peer) into the peer's queue, to be written on the
 * next loop iteration once connected. An APPEND too large for one frame loses a suffix
 * of its entries (counted in entries_trimmed; Raft resends them). Returns 0 when
 * queued; TRANSPORT_EFULL / TRANSPORT_ENOMEM when dropped and counted;
 * TRANSPORT_ENOPEER, TRANSPORT_EINVAL, TRANSPORT_ECLOSED otherwise. m stays the
 * caller's. */
int transport_send(struct transport *t, const struct raft_msg *m);

/* Lowers the per-peer queue limits (operators, tests). bytes_max must lie in
 * [MSGCODEC_FRAME_BYTES_MAX, TRANSPORT_QUEUE_BYTES_MAX], frames_max in
 * [1, TRANSPORT_QUEUE_FRAMES_MAX]; else TRANSPORT_EINVAL. Queued frames stay. */
int transport_set_queue_limits(struct transport *t, uint64_t bytes_max, uint32_t frames_max);

/* Replaces the default logger (one line to stderr). cb NULL restores it. */
void transport_set_log(struct transport *t, transport_log_cb cb, void *log_data);

/* The port the listener is bound to (resolves port 0); 0 when not listening. */
uint16_t transport_bound_port(const struct transport *t);

/* Returns 0, or TRANSPORT_ENOPEER. */
int transport_peer_stats(const struct transport *t, uint32_t id, struct transport_peer_stats *out);
void transport_stats(const struct transport *t, struct transport_stats *out);

/* Detail of the last failure of init, set_peer or send. */
const char *transport_errmsg(const struct transport *t);

#endif /* CC_NODE_TRANSPORT_H */
