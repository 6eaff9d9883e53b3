/* lockworld.h -- internal to the simulator: leases, locks, lock clients and a protected
 * resource in the simulated world (issue #5, "Simulator"; docs/simulator.md, "Leases and
 * locks"). Not a public interface.
 *
 * Two halves share this header:
 *   lockhost.c (lockhost_*)  the node side: each replica applies lease and lock commands
 *                            with the composite machine (sm/machine.h) and, as the node
 *                            does (src/node/node.c), runs the leader-only lease timer
 *                            (node/lease_timer.h): activated with an election timeout of
 *                            extension on becoming leader, emptied on stepping down,
 *                            EXPIRE proposed for due leases only with an active quorum,
 *                            on_grant/on_revoke on apply, and keepalives answered only
 *                            after a ReadIndex round has been applied. The SIM_MUTANT_*
 *                            macros break exactly these rules.
 *   lockclient.c (lockcl_*)  lock clients with skewed clocks that grant a lease, acquire a
 *                            mutex (with wait), renew every ttl/3, write to the resource
 *                            while they believe they hold the lock, then release; they
 *                            crash and pause. And the resource itself, which rejects a
 *                            token older than the newest it accepted.
 * sim/lockcheck.h decides what is wrong. Everything random comes from the lock world's own
 * prng stream, so a seed without lock clients runs exactly as it did before they existed.
 *
 * Messages between clients and nodes are records in lk->msgs (indexes travel in events);
 * each carries the sender's incarnation and session, so a late answer for an earlier life
 * of a client is recognised and ignored.
 */
#ifndef CONCLAVE_SIM_LOCKWORLD_H
#define CONCLAVE_SIM_LOCKWORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/prng.h"
#include "lockcheck.h"
#include "world.h"

/* ---- limits and model constants (each with its reason) --------------------------- */

#define LOCKW_CLIENTS_MAX 4 /* enough contention for queues, few enough to stay cheap */
#define LOCKW_NAMES_MAX   2 /* lock names L0, L1 (each with its resource) */
/* The clock-rate bound every clock obeys: nodes tick every 9800..10200 us of real time for
 * 10 ms of their own (rates 0.98039..1.02041), clients run at 1 +- LOCKW_CLIENT_SKEW_PPM. */
#define LOCKW_DRIFT_PPM       20500u
#define LOCKW_CLIENT_SKEW_PPM 20000u
/* A client's safety margin: it believes until send time + ttl - ttl/LOCKW_MARGIN_DIV. The
 * lease holds for at least ttl/(1+rho) of real time after the send; the belief lasts at
 * most (ttl - margin)/(1-rho); so margin >= 2*rho/(1+rho)*ttl = 4.02% of ttl is needed. */
#define LOCKW_MARGIN_DIV    20u
#define LOCKW_TTL_MS_MIN    500u    /* LEASE_TTL_MS_MIN: as short as the machine allows */
#define LOCKW_TTL_MS_MAX    1500u   /* so that leases expire and change hands within a run */
#define LOCKW_OP_TIMEOUT_US 500000u /* a client gives up on a lock op after 500 ms */
#define LOCKW_REWAIT_US     800000u /* a queued client asks again where it stands */
#define LOCKW_EXPIRE_BUDGET 64u     /* EXPIRE proposals per tick (node.c NODE_EXPIRE_BUDGET) */
#define LOCKW_WRITES_MAX    4u      /* writes to the resource per hold */
#define LOCKW_READ_BIT      (UINT64_C(1) << 62) /* read ids of keepalives (KV reads are small) */

_Static_assert(LOCKW_CLIENTS_MAX <= LOCKCHK_CLIENTS_MAX, "the checker covers every client");
_Static_assert(LOCKW_NAMES_MAX <= LOCKCHK_LOCKS_MAX, "the checker covers every lock");
_Static_assert(LOCKW_NAMES_MAX <= 10, "lock names are L0..L9");
_Static_assert(WORLD_NODES_MAX <= LOCKCHK_NODES_MAX, "the checker covers every node");
_Static_assert(LOCKW_CLIENT_SKEW_PPM <= LOCKW_DRIFT_PPM, "clients obey the drift bound");
_Static_assert(UINT64_C(1000000) / LOCKW_MARGIN_DIV >
                   UINT64_C(2) * LOCKW_DRIFT_PPM * 1000000u / (1000000u + LOCKW_DRIFT_PPM),
               "the margin covers the drift bound: 1/DIV > 2 rho / (1 + rho)");

/* Errors of the lock world's own making; the rest are the machine's and the lease
 * timer's codes (lockw_strerror names all). */
enum {
    LOCKW_ENOTLEADER = -3001, /* the node does not lead; the answer carries a hint */
    LOCKW_ELOST = -3002,      /* the proposal will never commit (another entry won) */
    LOCKW_EUNKNOWN = -3003,   /* a snapshot covered the proposal: outcome not knowable */
};
const char *lockw_strerror(int rv);

/* What a message record carries. */
enum lockw_kind {
    LOCKW_GRANT = 1,
    LOCKW_KEEPALIVE,
    LOCKW_ACQUIRE,
    LOCKW_RELEASE,
    LOCKW_REVOKE,
    LOCKW_NOTIFY, /* node -> waiting client: its queued request was granted */
};

enum lockw_state {
    LOCKW_SENT = 1,  /* on its way to a node */
    LOCKW_PROPOSED,  /* in a leader's log at (index, term) */
    LOCKW_READING,   /* keepalive: ReadIndex requested */
    LOCKW_READ_WAIT, /* keepalive: read index known, waiting for apply */
    LOCKW_ANSWERED,  /* answer on its way back */
    LOCKW_GONE       /* the serving node crashed: no answer ever */
};

struct lockw_msg {
    uint8_t kind, state;
    uint32_t client, inc, session; /* the sender's identity and life */
    uint32_t node;                 /* serving node */
    uint64_t index, term;          /* PROPOSED at; keepalive: term when taken */
    uint64_t taken_us;             /* keepalive: when a leader took it */
    uint64_t read_index;           /* keepalive */
    int64_t lease, ttl_ms;
    uint32_t lock;
    uint64_t rid, token; /* ACQUIRE request id; RELEASE / NOTIFY token */
    uint64_t sent_us, sent_local_us;
    /* the answer */
    int err;       /* 0, LOCKW_E*, or the machine's / lease timer's code */
    uint32_t hint; /* LOCKW_ENOTLEADER: the leader it knows */
    int64_t r_lease;
    uint8_t r_status; /* ACQUIRE: enum lock_status */
    uint64_t r_token;
};

struct lockw_write { /* a write on its way to a resource */
    uint32_t client, inc, lock;
    uint64_t token, decided_us, rx_us;
};

enum lockcl_state {
    LOCKCL_DOWN = 0,
    LOCKCL_IDLE,      /* no lease: next step grants one */
    LOCKCL_GRANTING,  /* GRANT in flight */
    LOCKCL_READY,     /* a lease, no lock: next step acquires */
    LOCKCL_ACQUIRING, /* ACQUIRE in flight */
    LOCKCL_WAITING,   /* queued; a NOTIFY or a re-ask ends it */
    LOCKCL_HOLDING,   /* holds (lock, token): writes while it believes */
    LOCKCL_RELEASING  /* RELEASE in flight */
};

struct lockcl { /* fields by size, widest first (no padding to speak of) */
    /* clock: local_us = clock_off_us + now_us * rate_ppm / 1e6 */
    uint64_t rate_ppm, clock_off_us;
    int64_t ttl_ms;
    /* the lease session */
    int64_t lease; /* 0: none */
    uint64_t belief_end_local_us;
    uint64_t renewed_sent_us; /* real send time of its latest successful renewal */
    /* the lock */
    uint64_t rid;
    uint64_t token;
    uint64_t grant_rx_us;
    /* outstanding requests and timers */
    size_t op_msg, ka_msg;
    uint64_t step_gen, ka_gen, pause_gen;
    size_t pending_write;   /* valid when has_pending_write */
    struct evq_event *held; /* events that arrived while paused */
    size_t n_held, cap_held;
    uint32_t id;  /* slot 1..n */
    uint32_t inc; /* incarnation: bumps on crash; part of the owner id */
    uint32_t leader_hint;
    uint32_t session; /* bumps whenever a lease is given up */
    uint32_t lock;
    uint32_t writes_left;
    uint32_t watch_node;   /* WAITING: the node that queued it, which notifies it */
    uint32_t ka_redirects; /* "not leader" bounces followed this renewal round */
    uint16_t owner_len;
    char owner[24]; /* "c<id>.<inc>" */
    uint8_t state;  /* enum lockcl_state */
    bool up, paused;
    bool spread;   /* sends each request to a random node (else: to the last leader) */
    bool use_hint; /* the next request follows a "not leader" hint even if spread */
    bool holding;
    bool op_busy, ka_busy;
    bool has_pending_write; /* decided just before a pause: sent on resume */
};

struct lockw_resource {
    uint64_t max_token; /* newest accepted; 0 = none */
};

struct lockw_knobs {
    uint32_t n_clients, n_names;
    uint32_t tail_ppm; /* share of client<->node hops that take 2-300 ms */
    uint64_t fault_gap_min_us, fault_gap_max_us; /* client crash/pause; 0 = none */
    uint32_t gap_pause_ppm;     /* per write: a pause between the belief check and the send */
    uint32_t renew_pause_ppm;   /* per renewal: a pause right after it succeeded, so the
                                   client lives on that renewal alone (targeted) */
    uint32_t moved_pause_ppm;   /* the same, when the renewing node no longer leads by the
                                   time its answer arrives: a leader change is under way */
    uint32_t elected_pause_ppm; /* per new leader: a holder whose last renewal was sent
                                   within an election timeout before pauses */
    uint32_t handover_ppm;      /* per renewal answered: its leader transfers leadership */
    uint64_t think_max_us;      /* between a client's writes */
    bool no_check_quorum;       /* raft runs without CheckQuorum (see lockcl_setup) */
};

struct lockhost { /* per node, while it is up */
    struct machine *sm;
    struct lease_timer *timer;
    bool leading; /* as of the last drain (node.c n->leading) */
    uint64_t lead_term;
    uint64_t digest; /* lease+lock digest of sm, cached */
    size_t *pending; /* msgs this node serves (proposed or reading) */
    size_t n_pending, cap_pending;
};

struct lockworld {
    struct prng rng;
    struct lockw_knobs k;
    struct lockchk chk;
    struct lockcl clients[LOCKW_CLIENTS_MAX + 1]; /* [0] unused */
    struct lockhost hosts[WORLD_NODES_MAX + 1];   /* by node id */
    struct lockw_msg *msgs;
    size_t n_msgs, cap_msgs;
    struct lockw_write *writes;
    size_t n_writes, cap_writes;
    struct lockw_resource res[LOCKW_NAMES_MAX];
    uint32_t n_expiries, n_keepalives_ok, n_keepalives_failed, n_client_crashes, n_client_pauses;
};

/* ---- lockhost.c ------------------------------------------------------------------ */

/* Whether e is a lease or lock command (it goes to the machine, not the toy KV). */
bool lockhost_is_cmd(const struct raft_entry *e);
/* Boot (first start and every restart): machine from the lock part of the durable
 * snapshot image (img == NULL: empty), a fresh inactive lease timer. 0 or -1 (failed). */
int lockhost_boot(struct world *w, struct world_node *n, const uint8_t *img, size_t len,
                  uint64_t index);
void lockhost_crash(struct world *w, struct world_node *n);
void lockhost_free(struct world *w, struct world_node *n);
/* The lock part of a host snapshot; *img is malloc'd (caller frees). */
void lockhost_snapshot(struct world *w, struct world_node *n, uint8_t **img, size_t *len);
/* An installed snapshot's lock part, at index. 0 or -1 (failed). */
int lockhost_restore(struct world *w, struct world_node *n, const uint8_t *img, size_t len,
                     uint64_t index);
/* Every applied entry (commands and others) of a lock seed. */
void lockhost_applied(struct world *w, struct world_node *n, const struct raft_entry *e);
/* End of host_drain: the leading transition (node.c flush()). */
void lockhost_after_drain(struct world *w, struct world_node *n);
/* After raft_tick, before the drain: propose due expiries (node.c on_tick). */
void lockhost_tick(struct world *w, struct world_node *n);
/* A WEV_LOCK_REQ at an up, unpaused node. */
void lockhost_request(struct world *w, struct world_node *n, size_t m);
void lockhost_read_ready(struct world *w, struct world_node *n, const struct raft_read_ready *rr);
void lockhost_serve(struct world *w, struct world_node *n);
/* Leader n appended these entries of its own (direct check: EXPIRE needs a quorum). */
void lockhost_appended(struct world *w, struct world_node *n, const struct raft_entry *e,
                       uint32_t count);
/* n's lease+lock digest (final convergence check). */
uint64_t lockhost_digest(const struct world *w, const struct world_node *n);

/* ---- lockclient.c ------------------------------------------------------------------ */

/* Sets up the lock world on w->lk when the seed runs lock clients. */
void lockcl_setup(struct world *w);
void lockcl_start(struct world *w);
/* Lock-world events that are not addressed to a node. */
void lockcl_event(struct world *w, const struct evq_event *ev);
/* A node answers message m (its answer fields are filled): the answer travels back. */
void lockcl_answer(struct world *w, size_t m);
/* Node n applied a GRANTED event for (owner, lease, rid): a client waiting on n hears. */
void lockcl_granted(struct world *w, struct world_node *n, uint32_t lock, const uint8_t *owner,
                    uint16_t owner_len, int64_t lease, uint64_t rid, uint64_t token);
/* Parses "c<id>.<inc>". */
bool lockcl_owner_parse(const uint8_t *owner, uint16_t len, uint32_t *client, uint32_t *inc);
void lockcl_node_crashed(struct world *w, struct world_node *n);
/* n just became leader (targeted client pauses). */
void lockcl_on_elected(struct world *w, struct world_node *n);
/* Leader n renewed a lease (targeted leader transfer right after). */
void lockcl_on_renewed(struct world *w, struct world_node *n);
/* Copies the lock world's counters into w->res. */
void lockcl_report(struct world *w);
void lockcl_free(struct world *w);

#endif /* CONCLAVE_SIM_LOCKWORLD_H */
