/* lease_timer.h -- the leader's lease deadlines: local, not replicated, pure.
 *
 * The replicated lease table (sm/lease.h) knows which leases exist and their TTLs but
 * no time. This tracker is the other half: on the leader only, one deadline per lease,
 * moved by keepalives, and a list of leases whose deadline has passed so the leader can
 * propose EXPIRE for them. Time is an input (now_ms, a monotonic clock in ms: the node
 * passes uv_now / CLOCK_MONOTONIC, the simulator its virtual clock); nothing here reads
 * a clock, allocates on the keepalive path, or does IO.
 *
 * How the node drives it:
 *   - becoming leader: lease_timer_on_become_leader(now, extend = the election timeout,
 *     i.e. election_ticks * tick_ms; the randomized maximum is safer still);
 *   - stepping down (any reason): lease_timer_on_step_down();
 *   - applying GRANT / REVOKE / EXPIRE on any replica: lease_timer_on_grant() /
 *     lease_timer_on_revoke() (no-ops unless this node leads);
 *   - a keepalive request: run a ReadIndex round, wait until the state machine has
 *     applied up to the read index, then lease_timer_keepalive(id, now) with now taken
 *     after the round completed, and only then answer the client;
 *   - a timer (lease_timer_next_due_ms() says when): while the leader has a quorum,
 *     lease_timer_next_expired(now, budget) and propose EXPIRE(id, granted_index) for
 *     each; an EXPIRE that does not apply is offered again LEASE_TIMER_RETRY_MS later.
 *
 * Safety argument ("no grant while a prior holder's lease could still be valid"). A
 * client that sent a keepalive at time c0 and got a success may trust its lease until
 * c0 + ttl on its own clock (less its margin for clock-rate drift). Claims:
 *
 *  1. The leader that answers a keepalive is the leader: the ReadIndex round proves a
 *     quorum still followed it after the request arrived. A deposed leader that has not
 *     noticed (partitioned, paused) cannot complete the round, so it renews nothing;
 *     etcd answered renewals from an unconfirmed leader, one of the ways Jepsen found a
 *     lock granted under a still-valid lease (etcd#11456).
 *  2. The renewal is ordered after every committed REVOKE/EXPIRE: waiting for the apply
 *     index to reach the read index means a lease that already died is not in the timer
 *     any more (on_revoke ran), so keepalive says ENOTFOUND instead of reviving it. And
 *     once a deadline has passed, keepalive says EEXPIRED even before the EXPIRE commits:
 *     the leader never renews a lease it may already have proposed to expire.
 *  3. The deadline it sets is at least (time the round completed) + ttl >= c0 + ttl,
 *     and keepalive never lowers a deadline. So this leader expires nothing early.
 *  4. A new leader B expires nothing early either. For any keepalive A answered, A sent
 *     the confirming heartbeats at some s >= c0, and some voter of B acknowledged them
 *     (term T_A) before it voted in B's higher term (quorums intersect; a node never
 *     acknowledges a lower term once it has moved on). So B became leader after s, and
 *     B's deadlines now_B + ttl + extend exceed c0 + ttl, the most the client relies on.
 *     The extend (etcd#4778, etcd#9395) is not needed for that inequality given claim 1;
 *     it gives clients an election timeout to find B and renew, so a failover alone
 *     never expires a healthy client's lease (liveness), it keeps B's deadlines past
 *     A's own when A heard the acknowledgements late, and it absorbs clock-rate skew.
 *  5. An EXPIRE proposed by A and committed under B still cannot kill a lease B renewed:
 *     B commits its own no-op before it can finish any ReadIndex round, so A's EXPIRE is
 *     either applied before B's first renewal (and that renewal sees ENOTFOUND) or never
 *     commits. An EXPIRE that reaches a re-granted id is LEASE_ESTALE (granted_index).
 *  6. A leader without a quorum expires nothing: the node calls next_expired only while
 *     raft says a quorum is active (CheckQuorum), and without one no EXPIRE can commit
 *     anyway. With CheckQuorum such a leader steps down within an election timeout; when
 *     it (or another node) leads again, on_become_leader restarts every countdown with
 *     the extension, so time without a quorum is never charged to a lease (liveness).
 *     Within one leadership a passed deadline is never extended (see become_leader);
 *     across leaderships the timer starts empty, and the new leader's no-op commits any
 *     EXPIRE its log holds before its first ReadIndex round ends (claim 5).
 *
 * What is not claimed: a lease survives exactly ttl. It may live longer (a leader change
 * restarts countdowns from the full TTL, as in etcd#9395), never shorter than the client
 * can compute from its own successful renewals.
 *
 * Errors are negative LEASE_TIMER_E* codes in -2281..-2299 (reserved in sm/lease.h).
 * Ownership: the tracker owns its entries; nothing handed in is retained.
 */
#ifndef CONCLAVE_NODE_LEASE_TIMER_H
#define CONCLAVE_NODE_LEASE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "sm/lease.h"

/* An expired lease whose EXPIRE has not applied is offered again after this long: the
 * proposal may have been dropped (queue full, lost with a term change). */
#define LEASE_TIMER_RETRY_MS 1000u
/* The largest extension on becoming leader (ten minutes): a misconfigured election
 * timeout must not make leases immortal. */
#define LEASE_TIMER_EXTEND_MS_MAX UINT64_C(600000) /* LEASE_TIMER_EINVAL */

enum {
    LEASE_TIMER_ENOTFOUND = -2281,  /* no such lease (never granted, or dead) */
    LEASE_TIMER_EEXPIRED = -2282,   /* the deadline passed: no renewal, EXPIRE is due */
    LEASE_TIMER_ENOTLEADER = -2283, /* the tracker is inactive (this node does not lead) */
    LEASE_TIMER_ENOMEM = -2284,     /* allocation failed */
    LEASE_TIMER_EINVAL = -2285,     /* bad argument (extend too large, bad id or TTL) */
};
const char *lease_timer_strerror(int rv);

struct lease_timer;

/* What next_expired yields: propose EXPIRE(id, granted_index). */
struct lease_timer_expiry {
    int64_t id;
    uint64_t granted_index;
};

/* An inactive tracker. 0 or LEASE_TIMER_ENOMEM. */
int lease_timer_new(struct lease_timer **out);
void lease_timer_free(struct lease_timer *t);

/* Activates the tracker and gives every lease in `leases` the deadline
 * now + ttl + extend. Called again while active (e.g. after regaining a quorum), it
 * keeps the later of the old and the new deadline for each lease, so no deadline ever
 * moves earlier, except that a lease whose deadline already passed stays expired (its
 * EXPIRE may be in the log: reviving it could let a keepalive succeed just before that
 * EXPIRE commits); leases no longer in the table are dropped. O(n log n).
 * 0, LEASE_TIMER_EINVAL (extend > LEASE_TIMER_EXTEND_MS_MAX) or LEASE_TIMER_ENOMEM
 * (then the tracker is inactive and empty). */
int lease_timer_on_become_leader(struct lease_timer *t, const struct lease_table *leases,
                                 uint64_t now_ms, uint64_t extend_ms);
/* Deactivates and empties the tracker. A follower keeps no deadlines. */
void lease_timer_on_step_down(struct lease_timer *t);
bool lease_timer_active(const struct lease_timer *t);

/* A GRANT applied: while active, the lease gets deadline now + ttl (a fresh lease's
 * client started counting when it sent the request, before this). Inactive: 0, no-op.
 * An id already tracked keeps the later deadline. 0, LEASE_TIMER_EINVAL or
 * LEASE_TIMER_ENOMEM. */
int lease_timer_on_grant(struct lease_timer *t, int64_t id, int64_t ttl_ms, uint64_t granted_index,
                         uint64_t now_ms);
/* A REVOKE or EXPIRE applied: forget the lease (no-op when unknown or inactive). */
void lease_timer_on_revoke(struct lease_timer *t, int64_t id);

/* A keepalive, after the ReadIndex round (see above): deadline = max(deadline,
 * now + ttl). Fills *deadline_ms and *ttl_ms (the lease's TTL: what the client is told)
 * on success. LEASE_TIMER_ENOTLEADER, LEASE_TIMER_ENOTFOUND or LEASE_TIMER_EEXPIRED
 * (now >= deadline: expiry is final). O(log n), no allocation. */
int lease_timer_keepalive(struct lease_timer *t, int64_t id, uint64_t now_ms, uint64_t *deadline_ms,
                          int64_t *ttl_ms);
/* Time left until the deadline (0 once passed). LEASE_TIMER_ENOTLEADER or
 * LEASE_TIMER_ENOTFOUND otherwise. */
int lease_timer_remaining_ms(const struct lease_timer *t, int64_t id, uint64_t now_ms,
                             uint64_t *remaining_ms);

/* Fills out[] with up to budget leases whose deadline is <= now and that were not
 * offered in the last LEASE_TIMER_RETRY_MS, earliest deadline first (ties by id), and
 * marks them offered. Returns how many. O(budget log n). Inactive: 0. */
uint32_t lease_timer_next_expired(struct lease_timer *t, uint64_t now_ms,
                                  struct lease_timer_expiry *out, uint32_t budget);
/* When next_expired will next have something to offer (UINT64_MAX: nothing tracked). */
uint64_t lease_timer_next_due_ms(const struct lease_timer *t);
uint32_t lease_timer_count(const struct lease_timer *t);

#endif /* CONCLAVE_NODE_LEASE_TIMER_H */
