/* node.h -- one Conclave server: the libuv loop that drives the Raft core, the storage
 * thread, the peer transport and the KV state machine.
 *
 * The node owns everything below the API layer. Callers (the HTTP API, later RESP) ask
 * it to propose a KV command or to make a read safe, and get a callback on the loop
 * thread when that happened:
 *
 *   node_propose(n, cmd, len, cb, arg)   leader only; cb(status, sm_result) after the
 *                                        command is committed and applied here (cb may
 *                                        be NULL: fire-and-forget)
 *   node_read(n, linearizable, cb, arg)  cb(status) once the local state machine may be
 *                                        read: after a batched ReadIndex round
 *                                        (linearizable) or at once (serializable)
 *   node_cancel(n, arg)                  forget every pending callback with this arg
 *
 * Durability order (raft.h host contract): an update's persist part goes to the storage
 * thread; its msgs_now leave at once; msgs_after_persist wait until the storage thread
 * reports that batch (and every earlier one) durable; committed entries are applied only
 * after that too (the core guarantees it).
 *
 * Ownership: node_start() allocates the node; node_stop() closes every handle and frees it
 * from its close callback. kv_result pointers passed to callbacks die when they return.
 */
#ifndef CC_NODE_NODE_H
#define CC_NODE_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node/transport.h"
#include "raft/raft.h"
#include "storage/storage_thread.h"
#include "sm/kv.h"
#include "sm/machine.h"

#define NODE_NAME_BYTES    64    /* member names: short, printable */
#define NODE_ADDR_BYTES    262   /* "host:port" + NUL, as TRANSPORT_ADDR_BYTES_MAX */
#define NODE_PATH_BYTES    4096  /* data directory */
#define NODE_PENDING_MAX   65536 /* proposals + reads waiting on one node: bounds memory */
#define NODE_SNAPSHOT_KEEP 2     /* snapshot files kept; the WAL is kept back to the oldest */
#define NODE_MEMBERS_MAX   MEMBERS_MAX /* flag members + directory entries known */
#define NODE_OBSERVERS_MAX 8     /* node_observe subscribers (API parts, watch hub) */
#define NODE_LAZY_MS       2     /* longest a node_propose_lazy entry waits for company */
#define NODE_LAZY_MAX      1024  /* lazy entries waiting; more are proposed at once */
#define NODE_STALL_TICKS   4     /* ticks apart that count as a stalled loop (logged) */

enum {
    NODE_ENOTLEADER = -1801, /* propose on a follower: forward to node_leader_http() */
    NODE_EFULL = -1802,      /* NODE_PENDING_MAX reached */
    NODE_ESTOPPED = -1803,   /* the node is shutting down */
    NODE_ELOST = -1804,      /* the entry at our index was replaced: not committed */
    NODE_EINVAL = -1805,     /* bad configuration */
    NODE_ESTORAGE = -1806,   /* the data directory could not be opened or recovered */
    NODE_EUNKNOWN = -1807,   /* a snapshot replaced the log: the command may have applied */
    NODE_ENOSPACE = -1808,   /* the disk is full: writes refused until the WAL can grow */
};
const char *node_strerror(int rv);

struct node_member {
    uint32_t id;
    char name[NODE_NAME_BYTES];
    char peer_addr[NODE_ADDR_BYTES];
    char http_addr[NODE_ADDR_BYTES];
};

struct node_config {
    uint32_t id;
    char data_dir[NODE_PATH_BYTES];
    uint64_t cluster_id;
    uint32_t tick_ms;        /* one Raft tick */
    uint32_t election_ticks; /* election timeout in ticks */
    uint64_t snapshot_every; /* applied entries between state machine snapshots */
    /* Encode and write snapshots in a fork()ed child (a copy-on-write image of the state
     * machine), so the loop never stalls for the encode; off: encode on the loop. */
    bool snapshot_in_child;
    /* While not leading, write the WAL on the loop thread when the storage worker is
     * idle (storage_write_inline): the ack waits for that write anyway. */
    bool wal_inline_when_following;
    /* Automatic compaction: the leader keeps this many revisions of history and compacts
     * older ones (0 = only on request, POST /v1/compact). */
    uint64_t compact_retain_revisions;
    bool join;               /* start empty and wait to be added, instead of bootstrapping */
    /* TEST ONLY (serve --test-stale-reads): linearizable reads skip ReadIndex and read the
     * local state at once. Exists so the chaos suite can prove it catches stale reads. */
    bool test_stale_reads;
    /* the founding members (including this one), or the known ones when joining */
    struct node_member members[RAFT_SERVERS_MAX];
    uint32_t n_members;
    void (*log_cb)(void *arg, const char *line);
    void *log_arg;
};
void node_config_default(struct node_config *c);

struct node;
/* res is NULL unless status is 0 or a state machine error; for node_change it is NULL. */
typedef void (*node_apply_cb)(void *arg, int status, const struct sm_result *res);
typedef void (*node_read_cb)(void *arg, int status);

int node_start(uv_loop_t *loop, const struct node_config *c, struct node **out, char *msg,
               size_t msg_cap);
void node_stop(struct node *n);

int node_propose(struct node *n, const uint8_t *cmd, size_t len, node_apply_cb cb, void *arg);
/* node_propose for an entry nobody waits on soon (a lock waiter joining a queue): it
 * waits up to NODE_LAZY_MS for the next ordinary proposal and goes into the log just
 * before it, sharing its fdatasync instead of taking one of its own just ahead of it (a
 * lock holder's release arriving while the disk syncs the join). Order is kept: a lazy
 * entry precedes every later proposal. node_cancel before it is proposed drops it.
 * Returns NODE_ENOTLEADER at once when not leading; later failures go to cb. */
int node_propose_lazy(struct node *n, const uint8_t *cmd, size_t len, node_apply_cb cb,
                      void *arg);
/* Drops arg's lazy entries not yet proposed; true if there was one (it never reaches the
 * log, so the caller has nothing to take back). */
bool node_drop_lazy(struct node *n, void *arg);
int node_read(struct node *n, bool linearizable, node_read_cb cb, void *arg);
/* A membership change (raft_change): cb(status, NULL) once the configuration entry is
 * applied here, or with NODE_ELOST / NODE_EUNKNOWN as for proposals. Leader only. */
int node_change(struct node *n, enum raft_change_op op, uint32_t id, node_apply_cb cb, void *arg);
void node_cancel(struct node *n, void *arg);

struct kv *node_kv(struct node *n);
const struct machine *node_machine(const struct node *n); /* for reads: leases, locks, ids */
const struct node_config *node_get_config(const struct node *n);
struct raft *node_raft(struct node *n);
/* Leases (sm/lease.h; the leader keeps deadlines, node/lease_timer.h). GRANT and REVOKE
 * are ordinary proposals (lease_encode_*). A keepalive is not: on the leader it runs a
 * ReadIndex round, then moves the lease's deadline and calls cb(status, ttl_ms) with
 * status 0, LEASE_TIMER_ENOTFOUND, LEASE_TIMER_EEXPIRED, NODE_ENOTLEADER or a read
 * error. node_cancel(n, arg) cancels it. */
typedef void (*node_keepalive_cb)(void *arg, int status, int64_t ttl_ms);
int node_lease_keepalive(struct node *n, int64_t lease, node_keepalive_cb cb, void *arg);
/* Leader only: ms until the lease's deadline (0 once passed). */
int node_lease_remaining(const struct node *n, int64_t lease, uint64_t *remaining_ms);

/* Observers see every applied command (after its proposer's callback) and every state
 * replacement by an installed snapshot (reset_cb: the index it covers). Called on the
 * loop thread; res dies when the callback returns. A callback may propose (proposals
 * only queue). Removed by arg. */
struct node_observer {
    void (*applied_cb)(void *arg, const struct sm_result *res);
    void (*reset_cb)(void *arg, uint64_t index);
    void *arg;
};
int node_observe(struct node *n, const struct node_observer *o); /* 0 or NODE_EFULL */
void node_unobserve(struct node *n, void *arg);

/* Members by id: the --member flags, completed by the replicated directory. NULL when
 * unknown. node_members_gen() changes whenever the table does. */
const struct node_member *node_member(const struct node *n, uint32_t id);
const struct node_member *node_member_by_name(const struct node *n, const char *name);
uint64_t node_members_gen(const struct node *n);
const struct members *node_directory(const struct node *n); /* the replicated part */
const struct node_member *node_self(const struct node *n);

struct node_stats {
    uint64_t proposals, applied_entries, reads, read_rounds;
    uint64_t storage_batches, storage_syncs;
    uint64_t snapshots_taken, snapshots_installed;
    uint64_t leader_changes;
    uint64_t inline_backoffs; /* slow inline WAL writes that sent writes back to the worker */
    uint64_t lazy_proposals;   /* node_propose_lazy entries proposed ... */
    uint64_t lazy_alone;       /* ... of which NODE_LAZY_MS passed with no company */
    uint64_t loop_stalls;      /* ticks NODE_STALL_TICKS or more apart */
};
void node_get_stats(const struct node *n, struct node_stats *out);
/* The WAL could not store the last batch (ENOSPC): it is retried every
 * STORAGE_FULL_RETRY_MS, nothing is lost or reordered, new proposals get NODE_ENOSPACE,
 * appends from a leader are not taken, and a leader hands leadership away. */
bool node_storage_full(const struct node *n);
void node_storage_stats(const struct node *n, struct storage_stats *out);
/* 0, or TRANSPORT_ENOPEER for ids we do not dial */
int node_peer_stats(const struct node *n, uint32_t id, struct transport_peer_stats *out);

#endif /* CC_NODE_NODE_H */
