/* lockcheck.h -- the simulator's lease and lock invariants (issue #5, "Simulator").
 *
 * The lock world (sim/lockworld.h) reports what its clients believe, what each replica's
 * lock machine grants, what the protected resource accepts and what leaders propose;
 * this module decides whether any of it is wrong. It keeps no pointers into the world
 * and reads no clock: every time is an argument, in simulated microseconds of real
 * (world) time. Checks, each a FAIL of its own name:
 *
 *   lock-overlap     "no grant while a prior holder's lease could still be valid":
 *                    when a replica applies a grant of token t2 on lock L, no client
 *                    holding an older token t1 < t2 on L may still believe it holds L.
 *                    A client believes until (send time of its last successful renewal,
 *                    on its own clock) + ttl - margin; converted to real time with the
 *                    largest clock-rate error any clock may have (drift_ppm) that is at
 *                    most sent_us + belief_us * 1e6 / (1e6 - drift_ppm), the "bound"
 *                    below. Also when a client starts to hold t1 while a newer token was
 *                    already granted on L and its bound has not passed.
 *   resource-overlap two holders both succeed on the resource with overlapping belief:
 *                    a write with token t2 is accepted although an accepted write with
 *                    an older token was decided (by a believing holder) at or after the
 *                    moment t2's holder learned of its grant.
 *   fencing          the resource accepted a token lower than one it accepted before,
 *                    or a token the lock machine never granted to the writer.
 *   token-order      tokens granted per lock do not strictly increase along one
 *                    replica's apply stream, or two replicas grant different tokens at
 *                    one index, or tokens do not increase with the index across replicas.
 *   lock-digest      two replicas' lease+lock table digests differ after one index.
 *   expire-quorum    (direct) a leader appended an EXPIRE while raft reported no active
 *                    quorum (lease_timer.h claim 6). A liveness rule: an expiry without
 *                    a quorum cannot overlap a belief, so only this check sees it.
 *   lease-deadline   (direct) a leader activated its lease timer with a deadline for a
 *                    client's lease that its clock (running fast by drift_ppm) could
 *                    reach before that client's belief bound: it could expire the lease
 *                    while the client may still believe (lease_timer.h claims 3-4). This
 *                    sees a too-early deadline the moment it is set, not only when an
 *                    expiry and a grant happen to follow before anything extends it.
 *   renew-deposed    (direct) a node answered a keepalive it took while leader of term T
 *                    although a leader of a term above T had been elected before it took
 *                    it (lease_timer.h claim 1). A ReadIndex round started then cannot
 *                    succeed: the new leader's voters had left term T and quorums meet.
 *
 * On the first violation the checker records the name and a one-line detail; every later
 * call returns -1 at once.
 *
 * Ownership: lockchk_* copy what they keep. lockchk_free() releases the tables.
 */
#ifndef CONCLAVE_SIM_LOCKCHECK_H
#define CONCLAVE_SIM_LOCKCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOCKCHK_CLIENTS_MAX   8       /* lock clients a world may run (slots 1..MAX) */
#define LOCKCHK_LOCKS_MAX     4       /* lock names (0..MAX-1), each with one resource */
#define LOCKCHK_NODES_MAX     7       /* replicas (1..MAX), as checks.h */
#define LOCKCHK_DRIFT_PPM_MAX 100000u /* a 10% clock-rate error bound is already absurd */
#define LOCKCHK_NAME_MAX      32
#define LOCKCHK_DETAIL_MAX    480

struct lockchk_grant { /* one grant, as the replicas applied it */
    uint64_t index, token;
    uint32_t client, inc; /* the holder: client slot and incarnation */
};

struct lockchk_client {
    int64_t lease; /* of the current session; 0 = none */
    bool holding;  /* believes in (lock, token) while its bound lasts */
    uint32_t lock;
    uint64_t token;
    uint32_t inc;
    uint64_t bound_us; /* latest real time its current lease belief can last; 0 = none */
};

struct lockchk_lock {
    struct lockchk_grant *grants; /* ascending by index (and so by token) */
    size_t n_grants, cap_grants;
    uint64_t last_token[LOCKCHK_NODES_MAX + 1]; /* per replica apply stream */
    /* the protected resource, as accepted */
    bool res_any;
    uint64_t res_token;          /* highest accepted */
    uint64_t res_cur_decided_us; /* latest decision among accepted writes of res_token */
    uint64_t res_old_decided_us; /* latest decision among accepted older tokens */
};

struct lockchk_digest_at {
    uint64_t digest;
    bool set;
};

struct lockchk {
    uint32_t drift_ppm;
    uint64_t *elected_us; /* by term: when its leader was first seen (0 = none yet) */
    size_t cap_elected;
    uint64_t max_term;
    struct lockchk_client clients[LOCKCHK_CLIENTS_MAX + 1]; /* [0] unused */
    struct lockchk_lock locks[LOCKCHK_LOCKS_MAX];
    struct lockchk_digest_at *digests; /* by index */
    size_t cap_digests;
    uint64_t n_grants; /* distinct grants (by index) */
    uint64_t n_writes_ok, n_writes_fenced;
    bool failed;
    char name[LOCKCHK_NAME_MAX];
    char detail[LOCKCHK_DETAIL_MAX];
};

/* drift_ppm: the largest clock-rate error (|rate - 1| * 1e6) of any node or client. */
void lockchk_init(struct lockchk *c, uint32_t drift_ppm);
void lockchk_free(struct lockchk *c);

/* The latest real time a belief of belief_us (on the believer's clock), counted from a
 * request sent at real time sent_us, can last when that clock runs slow by drift_ppm. */
uint64_t lockchk_bound_us(uint32_t drift_ppm, uint64_t sent_us, uint64_t belief_us);

/* ---- what clients believe ---- */

/* Client slot `client` now has `lease` (its GRANT succeeded). */
void lockchk_lease(struct lockchk *c, uint32_t client, int64_t lease);
/* Client slot `client` had a renewal (or the grant) sent at real sent_us succeed: its
 * lease belief now lasts belief_us on its clock from then (the bound only grows). */
void lockchk_renewed(struct lockchk *c, uint32_t client, uint64_t sent_us, uint64_t belief_us);
/* It learned at now_us that it holds (lock, token) as incarnation inc. Checks that no
 * newer token was granted on the lock while its belief could still last. */
int lockchk_hold(struct lockchk *c, uint32_t client, uint32_t inc, uint32_t lock, uint64_t token,
                 uint64_t now_us);
/* It stopped believing in its lock (it sent RELEASE, or gave up). */
void lockchk_unhold(struct lockchk *c, uint32_t client);
/* Its lease session ended (lease known dead, abandoned, or the client crashed). */
void lockchk_session_end(struct lockchk *c, uint32_t client);

/* ---- what replicas apply ---- */

/* Replica `node` applied, at `index`, a new hold of `lock` with `token` for (client, inc)
 * at real time now_us. Checks lock-overlap and token-order. */
int lockchk_grant(struct lockchk *c, uint32_t node, uint64_t index, uint32_t lock, uint64_t token,
                  uint32_t client, uint32_t inc, uint64_t now_us);
/* Replica `node` restarted or restored a snapshot whose lock table hands out next_token
 * next: its apply stream continues from there. */
void lockchk_replica_reset(struct lockchk *c, uint32_t node, uint64_t next_token);
/* Replica `node`'s lease+lock digest after `index`. *first: no replica had reported
 * this index before (for counting things once). */
int lockchk_digest(struct lockchk *c, uint32_t node, uint64_t index, uint64_t digest, bool *first);
/* Leader `node` appended an EXPIRE; quorum_active is what raft said at that moment. */
int lockchk_expire_proposed(struct lockchk *c, uint32_t node, uint64_t term, bool quorum_active);
/* Leader `node` (re)activated its lease timer at now_us and holds a deadline
 * remaining_us away (on its clock) for client slot `client`'s lease. */
int lockchk_deadline(struct lockchk *c, uint32_t node, uint32_t client, uint64_t now_us,
                     uint64_t remaining_us);
/* Some node became leader of `term` at now_us. */
void lockchk_elected(struct lockchk *c, uint64_t term, uint64_t now_us);
/* `node` renewed a lease for a keepalive it took at taken_us as leader of `term`. */
int lockchk_renew_ok(struct lockchk *c, uint32_t node, uint64_t term, uint64_t taken_us);

/* ---- the protected resource ---- */

/* A write to lock's resource with `token` from (client, inc), decided at decided_us by a
 * holder that learned of its grant at rx_us, was accepted or rejected (fenced). */
int lockchk_write(struct lockchk *c, uint32_t lock, uint64_t token, uint32_t client, uint32_t inc,
                  uint64_t decided_us, uint64_t rx_us, bool accepted);

#endif /* CONCLAVE_SIM_LOCKCHECK_H */
