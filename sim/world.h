/* world.h -- internal to the simulator: the world shared by sim.c (event loop,
 * node host, network), fault.c (fault injection and operators), client.c
 * (clients and their history) and, on lock seeds, the lock world (lockworld.h).
 * Not a public interface; include sim.h instead.
 *
 * Time is simulated microseconds (now_us). Every random draw comes from one of
 * the world's prng streams, all derived from the run's seed; there is no other
 * source of nondeterminism.
 */
#ifndef CONCLAVE_SIM_WORLD_H
#define CONCLAVE_SIM_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/prng.h"
#include "checks.h"
#include "disk.h"
#include "disk_wal.h"
#include "evq.h"
#include "kvsm.h"
#include "lincheck.h"
#include "raft/raft.h"
#include "sim.h"

/* ---- limits (each with its reason) ---------------------------------------- */

#define WORLD_NODES_MAX        SIM_NODES_MAX
#define WORLD_CLIENTS_MAX      6         /* enough overlap for interesting histories */
#define WORLD_ELECTION_TICKS   10        /* election timeout is [10, 20) ticks */
#define WORLD_LIVENESS_TICKS   600       /* 60 election timeouts to elect and commit after heal */
#define WORLD_CONVERGE_TICKS   600       /* then 60 more for every replica to catch up */
#define WORLD_HEAL_STEP_US     10000     /* how often the heal phase looks at the cluster */
#define WORLD_OP_TIMEOUT_US    500000    /* a client gives up on an op after 500 ms */
#define WORLD_OPS_PER_KEY_MAX  600       /* keeps each key's WGL search cheap */
#define WORLD_LIN_STATES_MAX   400000    /* lincheck budget per key */
#define WORLD_EVENTS_MAX       50000000u /* runaway guard: a message storm fails the run */
#define WORLD_DRAIN_ROUNDS_MAX 16        /* take/handle rounds per input before giving up */
#define WORLD_SEEN_MAX         4         /* recently observed values per key (CAS expectations) */
#define WORLD_TRACE_LINE_MAX   320

_Static_assert(WORLD_NODES_MAX <= CHECKS_NODES_MAX, "checks must cover every node");
_Static_assert(64 >= WORLD_NODES_MAX * WORLD_NODES_MAX, "link masks are one uint64");
_Static_assert(KVSM_ABSENT == LIN_ABSENT, "the KV model and lincheck agree on absence");

/* ---- events ---------------------------------------------------------------- */

enum world_ev {
    WEV_TICK = 1,    /* node, a = tick generation */
    WEV_DELIVER,     /* node = to, a = from, ptr = struct raft_msg copy */
    WEV_SYNC,        /* node, a = epoch: the oldest queued disk sync completes */
    WEV_CLIENT_REQ,  /* node, a = op: a client request arrives */
    WEV_FORWARD,     /* node, a = op: a write forwarded by a follower arrives */
    WEV_CLIENT_NEXT, /* a = client: issue the next op */
    WEV_OP_TIMEOUT,  /* a = op */
    WEV_CRASH,       /* node, a = epoch (targeted crash) */
    WEV_RESTART,     /* node, a = epoch */
    WEV_RESUME,      /* node, a = pause generation */
    WEV_FAULT,       /* inject the next random fault */
    WEV_FAULT_END,   /* a = fault record: undo its link cuts */
    WEV_FLAP,        /* a = fault record: toggle a flapping link */
    WEV_DISK_FAST,   /* node: a slow-disk period ends */
    WEV_OPERATOR,    /* membership change / leader transfer */
    WEV_HEAL,        /* end of the fault phase */
    WEV_HEAL_STEP,   /* liveness and convergence polling */
    WEV_STORAGE_FATAL, /* node, a = epoch: real storage failed, the process exits */
    /* the lock world (lockworld.h); "gen|c" = generation << 8 | client slot */
    WEV_LOCK_REQ,     /* node, a = message: a lock client's request arrives */
    WEV_LOCK_STEP,    /* a = gen|c: the client's next step */
    WEV_LOCK_KA,      /* a = gen|c: the client's renewal timer */
    WEV_LOCK_REPLY,   /* a = message: an answer (or a grant notification) reaches the client */
    WEV_LOCK_TIMEOUT, /* a = message: the client gives up waiting for it */
    WEV_LOCK_WRITE,   /* a = write: a write reaches the protected resource */
    WEV_LOCK_FAULT,   /* crash or pause a lock client */
    WEV_LOCK_RESUME,  /* a = pause gen|c */
    WEV_LOCK_RESTART, /* a = incarnation|c */
    WEV_LOCK_HANDOVER, /* node, a = term: the leader that just renewed a lease hands over */
};

enum world_phase { WORLD_FAULTS, WORLD_LIVENESS, WORLD_CONVERGE, WORLD_DONE };

enum world_write {                /* what a queued disk write carries, for targeted crashes */
                   WRITE_PLAIN,   /* nothing a peer relies on */
                   WRITE_PROMISE, /* entries, an ack, a candidate's self-vote */
                   WRITE_VOTE     /* a vote granted to another node */
};

struct lockworld;

/* ---- nodes ------------------------------------------------------------------ */

struct world_job {                  /* one queued disk sync: raft.h host contract step 3 */
    uint64_t upto_seq;              /* disk ops below this become durable */
    uint64_t last_index, last_term; /* stored log's last entry when written */
    struct raft_msg *msgs;          /* msgs_after_persist copies, owned */
    uint32_t n_msgs;
};

struct world_node {
    uint32_t id;
    struct raft *raft; /* NULL while crashed */
    struct disk disk; /* the model; with the real WAL, a shadow the checks read */
    bool real;        /* storage goes through dw (disk_wal.h) as well */
    struct dwal dw;
    bool storage_failed; /* a fatal storage error: no more writes until the crash */
    bool dead;           /* recovery refused a corrupt disk: kept down for good */
    bool flipped;        /* a crash flipped a bit on its disk (the only allowed corruption) */
    struct kvsm kv;
    bool up, paused;
    uint32_t epoch;         /* bumps on crash: stale syncs, crashes, restarts are ignored */
    uint32_t tick_gen;      /* bumps on pause and crash: ends the tick chain */
    uint32_t pause_gen;     /* bumps on pause: matches its resume */
    uint64_t tick_us;       /* tick period on the world clock (clock skew) */
    struct world_job *jobs; /* FIFO */
    size_t n_jobs, cap_jobs;
    uint64_t sync_seq;      /* disk ops covered by queued jobs */
    uint64_t sync_done_us;  /* completion time of the newest job (FIFO order) */
    bool disk_slow;         /* a slow-disk fault is active */
    bool disk_sluggish;     /* this node's disk is slow all run long (per seed) */
    struct evq_event *held; /* events that arrived while paused */
    size_t n_held, cap_held;
    uint64_t snap_index; /* host's latest state machine snapshot */
    uint64_t last_crash_us;
    int seen_role; /* role/term/commit as last traced */
    uint64_t seen_term, seen_commit;
};

/* ---- per-seed knobs ----------------------------------------------------------- */

struct world_knobs {
    uint32_t intensity; /* 0 calm, 1 moderate, 2 brutal */
    uint64_t fault_end_us;
    uint32_t loss_ppm, dup_ppm, tail_ppm, fsync_slow_ppm;
    uint64_t fault_gap_min_us, fault_gap_max_us;
    uint64_t operator_gap_min_us, operator_gap_max_us; /* 0: fault.c's 50-250 ms */
    uint32_t target_crash_ppm;  /* per durable write carrying entries or an ack */
    uint32_t vote_crash_ppm;    /* per durable write granting a vote */
    uint32_t ack_fault_ppm;     /* per write acknowledged by a leader */
    uint32_t elected_crash_ppm; /* per election won: crash within the first fsync */
    uint32_t elected_cut_ppm;   /* per election won: isolate the new leader */
    uint32_t max_down;          /* nodes crashed or paused at once (random faults) */
    uint64_t snap_threshold;    /* entries applied between host snapshots */
    uint32_t chunk_bytes;
    uint64_t think_max_us; /* client pause between ops */
    uint32_t n_clients;
    /* real WAL seeds only */
    uint32_t fsync_fail_ppm; /* per sync */
    uint32_t enospc_ppm;     /* per sync: the disk fills up soon after */
    uint32_t flip_ppm;       /* per crash: a bit flips in an old, synced segment */
};

/* ---- clients ------------------------------------------------------------------- */

enum world_op_state {
    OP_SENT = 1,  /* request on its way to a node */
    OP_FORWARDED, /* write on its way to the leader */
    OP_PROPOSED,  /* in a leader's log at (index, term) */
    OP_READING,   /* ReadIndex requested */
    OP_READ_WAIT, /* read index known, waiting for apply */
    OP_DONE
};

struct world_op { /* bookkeeping beside hist[i] */
    uint8_t state;
    bool dropped; /* a read that failed or timed out: left out of the history */
    bool probe;   /* the heal phase's liveness write */
    uint32_t node;
    uint64_t index, term;
};

struct world_client {
    uint32_t id;
    bool busy;
    size_t op;
    uint64_t counter;
    bool wrote;        /* has written, so last_key is meaningful */
    uint32_t last_key; /* key of its latest write: read-your-writes probes */
};

struct world_fault { /* a set of cut links that heals later */
    uint64_t mask;   /* bit (from-1)*WORLD_NODES_MAX + (to-1) */
    bool active, applied;
    uint32_t flips_left;
    uint64_t flip_us;
};

struct world {
    const struct sim_config *cfg;
    struct sim_result *res;
    struct prng rng_net, rng_fault, rng_client, rng_disk, rng_wal;
    uint64_t now_us;
    struct evq q;
    uint64_t n_events;
    enum world_phase phase;
    struct world_knobs k;
    uint32_t n_nodes;
    struct world_node nodes[WORLD_NODES_MAX + 1];          /* by id, [0] unused */
    uint8_t cut[WORLD_NODES_MAX + 1][WORLD_NODES_MAX + 1]; /* active cuts per link */
    struct checks checks;
    bool failed;
    uint64_t trace_hash;

    /* clients (client.c) */
    struct world_client clients[WORLD_CLIENTS_MAX + 1]; /* [0] is the heal probe */
    struct lin_op *hist;
    struct world_op *hops;
    size_t n_ops, cap_ops, cap_hops;
    uint32_t ops_per_key[KVSM_KEYS];
    int64_t seen[KVSM_KEYS][WORLD_SEEN_MAX];
    uint32_t n_seen[KVSM_KEYS];
    bool probe_ok;

    /* faults (fault.c) */
    struct world_fault *faults;
    size_t n_faults, cap_faults;

    uint32_t n_flipped; /* nodes given a bit flip (at most one per run: see host_crash) */

    /* leases, locks, lock clients (lockworld.h); NULL on seeds without them */
    struct lockworld *lk;

    /* heal phase and stats */
    uint64_t heal_us, converge_us;
    bool failover_pending;
    uint64_t failover_start_us, failover_term;
};

/* ---- sim.c ---------------------------------------------------------------------- */

void world_push(struct world *w, uint64_t at_us, uint32_t kind, uint32_t node, uint64_t a,
                void *ptr);
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
/* A trace line that is part of the run's trace hash (printed with --verbose). */
void world_trace(struct world *w, uint32_t node, const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
/* A failed check: records it and stops the run. */
void world_fail(struct world *w, const char *check, const char *fmt, ...);
/* world_fail() with the checker's recorded name and detail. */
void world_fail_checks(struct world *w);
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
/* Verbose-only detail (message traffic, commits), not hashed as text: the
 * event loop folds every event into the hash instead, which is cheaper. */
void world_vtrace(struct world *w, uint32_t node, const char *fmt, ...);
uint64_t world_mix(uint64_t x); /* splitmix64 finaliser, for derived seeds */
/* The up, unpaused leader with the highest term, or NULL. */
struct world_node *world_leader(struct world *w);
bool world_link_up(const struct world *w, uint32_t from, uint32_t to);
uint64_t world_net_delay_us(struct world *w);
uint32_t world_n_unavailable(const struct world *w); /* crashed or paused */
uint32_t world_n_dead(const struct world *w);        /* refused a corrupt disk */

/* ---- host.c --------------------------------------------------------------------- */

/* After any input to n's core: take and handle updates, then check. */
void host_drain(struct world *w, struct world_node *n);
/* An event addressed to a node (tick, delivery, sync, client request). Owns
 * ev->ptr: frees it or keeps it (held while paused). */
void host_event(struct world *w, const struct evq_event *ev);
/* Boots n's core from its durable image (also the first start). */
void host_restart(struct world *w, struct world_node *n);
void host_crash(struct world *w, struct world_node *n, const char *why);
void host_pause(struct world *w, struct world_node *n);
void host_resume(struct world *w, struct world_node *n);
/* Releases an event's payload (evq_free() callback). */
void host_free_event(struct evq_event *ev, void *arg);
/* Releases everything n owns (end of run). */
void host_free(struct world_node *n);
/* WEV_STORAGE_FATAL: the node's process exits after a storage error; it restarts later. */
void host_storage_fatal(struct world *w, struct world_node *n);

/* ---- fault.c -------------------------------------------------------------------- */

void fault_start(struct world *w);
void fault_event(struct world *w, const struct evq_event *ev);
/* n queued a durable write of kind what (not WRITE_PLAIN) that completes at sync_us. */
void fault_on_write(struct world *w, struct world_node *n, uint64_t sync_us, enum world_write what);
/* Leader n just acknowledged a client write: followers may not know the new
 * commit index yet, the moment to cut the leader off or kill it. */
void fault_on_ack(struct world *w, struct world_node *n);
/* n just became leader: its no-op is not durable or replicated yet. */
void fault_on_elected(struct world *w, struct world_node *n);
void fault_heal(struct world *w);
void fault_heal_membership(struct world *w);
/* Cuts node id off from every peer, both ways, for duration_us (clients still reach it). */
void fault_isolate(struct world *w, uint32_t id, uint64_t duration_us, const char *what);
uint64_t fault_fsync_us(struct world *w, const struct world_node *n);

/* ---- client.c ------------------------------------------------------------------- */

void client_start(struct world *w);
/* WEV_CLIENT_NEXT / WEV_OP_TIMEOUT (n == NULL), WEV_CLIENT_REQ / WEV_FORWARD at an
 * up, unpaused node n. */
void client_event(struct world *w, const struct evq_event *ev, struct world_node *n);
/* A WEV_CLIENT_REQ / WEV_FORWARD reached a crashed node. */
void client_lost(struct world *w, const struct evq_event *ev);
void client_applied(struct world *w, struct world_node *n, const struct raft_entry *e,
                    int64_t result);
void client_read_ready(struct world *w, struct world_node *n, const struct raft_read_ready *rr);
void client_serve_reads(struct world *w, struct world_node *n);
void client_crashed(struct world *w, struct world_node *n);
/* Heal phase: keeps one liveness write in flight; true once one was acknowledged. */
bool client_probe(struct world *w);
/* End of run: acknowledged writes and linearizability. */
void client_finish(struct world *w);
void client_free(struct world *w);

#endif /* CONCLAVE_SIM_WORLD_H */
