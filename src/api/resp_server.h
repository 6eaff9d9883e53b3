/* resp_server.h -- the Redis protocol (RESP2/RESP3) listener on top of a node (issue #6).
 *
 * `conclave serve --resp HOST:PORT` (default RESP_SERVER_DEFAULT_ADDR) runs one of these
 * next to the HTTP API. It speaks to redis-cli, redis-benchmark and Redis client
 * libraries; the key space is the node's KV store, so `SET k v` over RESP is
 * `GET /v1/kv/k` over HTTP. Protocol parsing and reply framing are resp_proto.h, the
 * command table and its errors resp_cmdtab.h; docs/resp.md says what every command does
 * on a Raft cluster, and which error a client sees when.
 *
 *   resp_server_start(loop, node, "127.0.0.1:6479", &srv, errmsg, cap)
 *   ... uv_run ...
 *   resp_server_stop(srv, done_cb, arg)     before node_stop(): every pending callback
 *                                          is cancelled, every client disconnected, and
 *                                          done_cb(arg) runs once all handles closed
 *
 * Consistency in one paragraph: every write is one Raft entry proposed on the leader (a
 * follower answers `-READONLY ...` naming the leader: RESP does not forward); reads wait
 * for a batched ReadIndex round (linearizable) unless the connection said READONLY;
 * read-modify-write commands (INCR, APPEND, RENAME, ...) and MULTI/EXEC become one KV
 * transaction whose compares pin what was read, retried a bounded number of times.
 *
 * Ownership: the server is allocated by resp_server_start and freed after done_cb ran
 * (the pointer is invalid once resp_server_stop returns... until done_cb: do not touch it
 * after calling stop). Single-threaded: the node's loop thread only.
 *
 * Errors are negative ints in -1941..-1949 (the api 1900s, before resp_proto's and
 * resp_cmdtab's -1951..-1979); resp_server_strerror() names them.
 */
#ifndef CC_API_RESP_SERVER_H
#define CC_API_RESP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/node.h"

#define RESP_SERVER_DEFAULT_ADDR "127.0.0.1:6479"

enum {
    RESP_SERVER_EADDR = -1941,   /* the listen address is not host:port, or does not resolve */
    RESP_SERVER_ELISTEN = -1942, /* bind or listen failed (the port is taken, ...) */
    RESP_SERVER_ENOMEM = -1943,
};
const char *resp_server_strerror(int rv);

struct resp_server;

/* Listens on host_port ("127.0.0.1:6479"; port 0 picks a free one). On failure *out is
 * NULL and errmsg says why. node must outlive the server. */
int resp_server_start(uv_loop_t *loop, struct node *node, const char *host_port,
                      struct resp_server **out, char *errmsg, size_t errmsg_cap);

/* Closes the listener and every connection, cancels every pending node callback, then
 * frees the server and calls done_cb(arg) (may be NULL) from a close callback. */
void resp_server_stop(struct resp_server *srv, void (*done_cb)(void *arg), void *arg);

/* The port actually bound (useful with port 0), or -1. */
int resp_server_bound_port(const struct resp_server *srv);

/* Counters for /metrics (monotonic unless said otherwise). */
struct resp_server_stats {
    uint64_t commands_total;       /* commands answered (queued MULTI commands included) */
    uint64_t errors_total;         /* error replies */
    uint64_t connections_total;    /* connections accepted */
    uint64_t connections_rejected; /* refused at RESP_SERVER_CLIENTS_MAX */
    uint64_t protocol_errors;      /* connections closed for a malformed request */
    uint64_t output_overflows;     /* clients cut off at the output buffer limit */
    uint64_t rmw_retries;          /* read-modify-write attempts lost to a conflict */
    uint64_t proposals;            /* Raft entries proposed for RESP commands */
    uint64_t reads;                /* ReadIndex rounds asked for */
    uint32_t clients_connected;    /* now (a gauge) */
};
void resp_server_get_stats(const struct resp_server *srv, struct resp_server_stats *out);

#endif /* CC_API_RESP_SERVER_H */
