/* checks.h -- the simulator's safety invariants, checked incrementally.
 *
 * The host (sim.c) reports what each node does -- entries it stores, hard
 * states it writes, messages it sends, entries it applies -- and calls
 * checks_node() after every event that touched a node. Each call does work
 * proportional to what changed, so checking after every event stays cheap.
 *
 * Invariants (Raft paper Figure 3 plus the host contract in raft.h):
 *   election-safety     at most one leader per term, over the whole run (§5.2)
 *   vote-once           a node grants at most one vote per term, across crashes (§5.2)
 *                       (a direct check, see below)
 *   leader-append-only  a leader never removes or rewrites its own entries (§5.3)
 *   log-matching        (index, term) names one entry content and one previous
 *                       term, everywhere and forever (§5.3, checked inductively)
 *   leader-completeness a new leader holds every entry known committed (§5.4)
 *   state-machine-safety commits and applies agree on (term, content) per index,
 *                       and every replica's KV digest after index i is equal (§5.4.3)
 *   hard-state          a node's term never goes back and its vote never changes
 *                       within a term
 * and three "direct" checks that catch a broken rule the moment it is broken,
 * before it has consequences (they can be switched off to measure how well
 * the fault injection alone exposes a bug):
 *   durability          votes and acks are only sent for durable state (Figure 2,
 *                       raft.h step 3)
 *   vote-once           (as above)
 *   commit-current-term a leader only advances its commit index to an entry of
 *                       its own term (§5.4.2)
 *
 * On the first violation the checker records a check name and a one-line
 * detail and every later call returns -1 at once; the host stops the run.
 *
 * Ownership: checks_* copy what they keep; no pointer passed in is retained.
 */
#ifndef CONCLAVE_SIM_CHECKS_H
#define CONCLAVE_SIM_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk.h"
#include "raft/raft.h"

#define CHECKS_NODES_MAX  7   /* the simulator runs at most 7 nodes */
#define CHECKS_NAME_MAX   32  /* longest check name */
#define CHECKS_DETAIL_MAX 480 /* one human-readable line */

struct checks_committed {
    uint64_t term;      /* 0 = not known to be committed */
    uint64_t seen_term; /* lowest current term of a node that saw it committed: the
                           leader that committed it had at most this term */
    uint64_t hash;      /* entry content hash, valid when has_hash */
    uint64_t digest;    /* KV digest after applying this index, valid when has_digest */
    bool has_hash, has_digest;
};

struct checks_slot { /* log-matching table entry; index 0 = empty */
    uint64_t index, term;
    uint64_t hash, prev_term;
};

struct checks_node {
    int role; /* as of the last checks_node(); 0 while down */
    uint64_t term;
    bool leading; /* tracked as leader of lead_term */
    uint64_t lead_term, lead_last_index, lead_last_term, lead_commit;
    uint64_t truncated_from; /* lowest truncate since the last checks_node(), 0 = none */
    uint64_t commit;         /* highest commit index already checked */
    bool have_hs;
    struct raft_hard_state hs; /* last hard state written */
    uint32_t *vote_of_term;    /* candidate granted in each term, 0 = none */
    size_t cap_vote_of_term;
};

struct checks {
    uint32_t n_nodes;
    bool direct;                                    /* run the direct checks (on by default) */
    struct checks_node nodes[CHECKS_NODES_MAX + 1]; /* by id, [0] unused */
    uint32_t *leader_of_term;
    size_t cap_leader_of_term;
    struct checks_committed *committed; /* by index */
    size_t cap_committed;
    uint64_t max_committed;
    struct checks_slot *slots;
    size_t n_slots, n_used;
    uint32_t n_elections; /* times some node became leader */
    bool failed;
    char name[CHECKS_NAME_MAX];
    char detail[CHECKS_DETAIL_MAX];
};

void checks_init(struct checks *c, uint32_t n_nodes, bool direct);
void checks_free(struct checks *c);

/* FNV-1a over an entry's type and bytes. */
uint64_t checks_entry_hash(const struct raft_entry *e);

/* Node id stores entries e[0..n) after the entry at e[0].index - 1, whose term
 * in its log is prev_term (0 if unknown). */
int checks_entries(struct checks *c, uint32_t id, uint64_t prev_term, const struct raft_entry *e,
                   uint32_t n);
int checks_truncate(struct checks *c, uint32_t id, uint64_t from);
int checks_hard_state(struct checks *c, uint32_t id, const struct raft_hard_state *hs);
/* Node id puts m on the wire now; d is its disk (for the durability check).
 * at_sync: m is a msgs_after_persist message whose batch just became durable. */
int checks_send(struct checks *c, uint32_t id, const struct raft_msg *m, const struct disk *d,
                bool at_sync);
/* Node id, now in term node_term, restored its state machine from a snapshot
 * at (index, term). */
int checks_snapshot(struct checks *c, uint32_t id, uint64_t node_term, uint64_t index,
                    uint64_t term, uint64_t digest);
/* Node id, now in term node_term, applied e; digest is its KV digest afterwards. */
int checks_apply(struct checks *c, uint32_t id, uint64_t node_term, const struct raft_entry *e,
                 uint64_t digest);
/* After every event that touched node id. *became_leader says whether it just
 * became leader (of a new term). */
int checks_node(struct checks *c, uint32_t id, const struct raft *r, bool *became_leader);
void checks_node_crashed(struct checks *c, uint32_t id);
void checks_node_restarted(struct checks *c, uint32_t id, const struct raft_hard_state *hs);
/* A client write was acknowledged at (index, term). */
int checks_acked(struct checks *c, uint64_t index, uint64_t term);
/* KV digest after index, if some replica applied it. */
bool checks_digest_at(const struct checks *c, uint64_t index, uint64_t *digest);

#endif /* CONCLAVE_SIM_CHECKS_H */
