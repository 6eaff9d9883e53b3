/* checks.c -- incremental Raft safety invariants for the simulator (see checks.h).
 *
 * Data: three global tables survive crashes and span the whole run --
 *   leader_of_term[term]   who led each term (election safety);
 *   committed[index]       (term, content hash, KV digest) of every index any
 *                          node has committed or applied (state machine safety,
 *                          leader completeness, acknowledged writes);
 *   slots                  open-addressing map (index, term) -> (content hash,
 *                          term of index-1) for every entry any node stored.
 * The last one is Log Matching made incremental: if every stored entry agrees
 * with the map, two logs holding (i, t) agree on i's content and on the term of
 * i-1, hence (by induction down the prev terms) on their whole prefix.
 *
 * Per node we keep the role/term/last entry seen at the previous check (leader
 * append-only, "became leader"), the commit index already verified, the last
 * hard state written and the vote granted in each term.
 *
 * Every check is O(what changed): new entries, newly committed indexes, one
 * pass over the new leader's in-memory log on election.
 *
 * Sections: helpers | lifecycle | log matching | hard state and messages |
 * commits and applies | per-node check.
 */
#include "checks.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "base/hash.h"
#include "mem.h"

#define CHECKS_SLOTS_MIN 1024 /* initial log-matching table size (power of two) */

/* ---- helpers ------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
checks_fail(struct checks *c, const char *name, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = true;
    snprintf(c->name, sizeof(c->name), "%s", name);
    va_list ap;
    va_start(ap, fmt);
    /* The analyzer loses va_start when clang-tidy is given several files at once. */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    return -1;
}

/* Grows a zero-initialised array so that index need-1 exists. */
static void checks_reserve(void **items, size_t *cap, size_t need, size_t elem)
{
    size_t old = *cap;
    if (need <= old)
        return;
    mem_grow(items, cap, need, elem);
    memset((char *)*items + old * elem, 0, (*cap - old) * elem);
}

static struct checks_committed *checks_committed_at(struct checks *c, uint64_t index)
{
    checks_reserve((void **)&c->committed, &c->cap_committed, (size_t)index + 1,
                   sizeof(*c->committed));
    return &c->committed[index];
}

static uint64_t checks_mix(uint64_t index, uint64_t term)
{
    uint64_t x = index * UINT64_C(0x9e3779b97f4a7c15) ^ term * UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 31;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 29);
}

uint64_t checks_entry_hash(const struct raft_entry *e)
{
    uint64_t h = hash_fnv1a64(HASH_FNV_INIT, &e->type, 1);
    return hash_fnv1a64(h, e->bytes, e->n_bytes);
}

/* ---- lifecycle ----------------------------------------------------------- */

void checks_init(struct checks *c, uint32_t n_nodes, bool direct)
{
    CC_ASSERT(n_nodes >= 1 && n_nodes <= CHECKS_NODES_MAX);
    memset(c, 0, sizeof(*c));
    c->n_nodes = n_nodes;
    c->direct = direct;
    c->n_slots = CHECKS_SLOTS_MIN;
    c->slots = mem_calloc(c->n_slots, sizeof(*c->slots));
}

void checks_free(struct checks *c)
{
    for (uint32_t id = 0; id <= CHECKS_NODES_MAX; id++)
        free(c->nodes[id].vote_of_term);
    free(c->leader_of_term);
    free(c->committed);
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

/* ---- log matching -------------------------------------------------------- */

static struct checks_slot *checks_slot_find(struct checks *c, uint64_t index, uint64_t term)
{
    size_t mask = c->n_slots - 1;
    size_t s = (size_t)checks_mix(index, term) & mask;
    while (c->slots[s].index != 0 && (c->slots[s].index != index || c->slots[s].term != term))
        s = (s + 1) & mask;
    return &c->slots[s];
}

static void checks_slots_grow(struct checks *c)
{
    struct checks_slot *old = c->slots;
    size_t n_old = c->n_slots;
    c->n_slots *= 2;
    c->slots = mem_calloc(c->n_slots, sizeof(*c->slots));
    for (size_t i = 0; i < n_old; i++)
        if (old[i].index != 0)
            *checks_slot_find(c, old[i].index, old[i].term) = old[i];
    free(old);
}

int checks_entries(struct checks *c, uint32_t id, uint64_t prev_term, const struct raft_entry *e,
                   uint32_t n)
{
    if (c->failed)
        return -1;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t prev = k == 0 ? prev_term : e[k - 1].term;
        uint64_t hash = checks_entry_hash(&e[k]);
        if (e[k].index == 0 || e[k].term == 0)
            return checks_fail(c, "log-matching", "n%u stores entry %" PRIu64 "/%" PRIu64, id,
                               e[k].index, e[k].term);
        if (prev > e[k].term)
            return checks_fail(c, "log-matching",
                               "n%u stores entry %" PRIu64 " term %" PRIu64 " after term %" PRIu64
                               " (terms must not decrease)",
                               id, e[k].index, e[k].term, prev);
        if ((c->n_used + 1) * 2 > c->n_slots)
            checks_slots_grow(c);
        struct checks_slot *s = checks_slot_find(c, e[k].index, e[k].term);
        if (s->index == 0) {
            *s = (struct checks_slot){e[k].index, e[k].term, hash, prev};
            c->n_used++;
            continue;
        }
        if (s->hash != hash)
            return checks_fail(c, "log-matching",
                               "n%u stores entry %" PRIu64 "/%" PRIu64
                               " with different content than another log",
                               id, e[k].index, e[k].term);
        if (s->prev_term == 0)
            s->prev_term = prev;
        else if (prev != 0 && prev != s->prev_term)
            return checks_fail(c, "log-matching",
                               "n%u stores entry %" PRIu64 "/%" PRIu64 " after term %" PRIu64
                               ", another log has it after term %" PRIu64,
                               id, e[k].index, e[k].term, prev, s->prev_term);
    }
    return 0;
}

int checks_truncate(struct checks *c, uint32_t id, uint64_t from)
{
    struct checks_node *nd = &c->nodes[id];
    if (nd->truncated_from == 0 || from < nd->truncated_from)
        nd->truncated_from = from;
    return c->failed ? -1 : 0;
}

/* ---- hard state and messages --------------------------------------------- */

int checks_hard_state(struct checks *c, uint32_t id, const struct raft_hard_state *hs)
{
    struct checks_node *nd = &c->nodes[id];
    if (c->failed)
        return -1;
    if (nd->have_hs && hs->term < nd->hs.term)
        return checks_fail(c, "hard-state", "n%u term went back from %" PRIu64 " to %" PRIu64, id,
                           nd->hs.term, hs->term);
    if (nd->have_hs && hs->term == nd->hs.term && nd->hs.vote != 0 && hs->vote != nd->hs.vote)
        return checks_fail(c, "hard-state",
                           "n%u changed its vote in term %" PRIu64 " from n%u to n%u", id, hs->term,
                           nd->hs.vote, hs->vote);
    nd->have_hs = true;
    nd->hs = *hs;
    return 0;
}

/* Is index durably stored (as an entry or under the durable snapshot)? A
 * message sent at once (not after a sync) describes the current log, so the
 * durable entry must also be the current one. One sent when its batch became
 * durable describes the log as of that batch, which is exactly the durable
 * image then (later batches are not synced yet); the node may have moved on
 * since, which is no different from the network delaying the message. */
static bool checks_durable_has(const struct disk *d, uint64_t index, bool at_sync)
{
    if (index == 0 || index <= disk_image_snapshot_index(&d->durable))
        return true;
    uint64_t t = disk_image_term_at(&d->durable, index);
    if (at_sync)
        return t != 0;
    uint64_t now = disk_image_term_at(&d->current, index);
    return t != 0 && (now == 0 || now == t);
}

int checks_send(struct checks *c, uint32_t id, const struct raft_msg *m, const struct disk *d,
                bool at_sync)
{
    struct checks_node *nd = &c->nodes[id];
    const struct raft_hard_state *hs = &d->durable.hard_state;
    if (c->failed)
        return -1;
    if (!c->direct)
        return 0;
    if (m->type == RAFT_MSG_VOTE_RESP && m->vote_resp.granted) {
        checks_reserve((void **)&nd->vote_of_term, &nd->cap_vote_of_term, (size_t)m->term + 1,
                       sizeof(*nd->vote_of_term));
        uint32_t *v = &nd->vote_of_term[m->term];
        if (*v != 0 && *v != m->to)
            return checks_fail(c, "vote-once",
                               "n%u granted votes in term %" PRIu64 " to n%u and to n%u", id,
                               m->term, *v, m->to);
        *v = m->to;
        if (hs->term < m->term || (hs->term == m->term && hs->vote != m->to))
            return checks_fail(c, "durability",
                               "n%u sent a vote for n%u in term %" PRIu64
                               " but its durable hard state is term %" PRIu64 " vote n%u",
                               id, m->to, m->term, hs->term, hs->vote);
    }
    if (m->type == RAFT_MSG_VOTE && (hs->term < m->term || (hs->term == m->term && hs->vote != id)))
        return checks_fail(c, "durability",
                           "n%u asked for votes in term %" PRIu64
                           " but its durable hard state is term %" PRIu64 " vote n%u",
                           id, m->term, hs->term, hs->vote);
    if (m->type == RAFT_MSG_APPEND_RESP && !m->append_resp.reject &&
        !checks_durable_has(d, m->append_resp.index, at_sync))
        return checks_fail(c, "durability",
                           "n%u acknowledged index %" PRIu64
                           " to n%u before storing it durably (durable last %" PRIu64 ")",
                           id, m->append_resp.index, m->to, disk_image_last_index(&d->durable));
    if (m->type == RAFT_MSG_SNAPSHOT_RESP && m->snapshot_resp.done &&
        !checks_durable_has(d, m->snapshot_resp.index, at_sync))
        return checks_fail(c, "durability",
                           "n%u acknowledged snapshot %" PRIu64 " to n%u before storing it durably",
                           id, m->snapshot_resp.index, m->to);
    return 0;
}

/* ---- commits and applies ------------------------------------------------- */

/* Node id, in term node_term, knows index is committed with term (and content
 * hash when has_hash). */
static int checks_commit_entry(struct checks *c, uint32_t id, uint64_t node_term, uint64_t index,
                               uint64_t term, bool has_hash, uint64_t hash, const char *how)
{
    struct checks_committed *ce = checks_committed_at(c, index);
    if (ce->seen_term == 0 || node_term < ce->seen_term)
        ce->seen_term = node_term;
    if (ce->term == 0) {
        ce->term = term;
    } else if (ce->term != term) {
        return checks_fail(c, "state-machine-safety",
                           "n%u %s index %" PRIu64 " with term %" PRIu64 ", but term %" PRIu64
                           " was committed there",
                           id, how, index, term, ce->term);
    }
    if (has_hash && !ce->has_hash) {
        ce->has_hash = true;
        ce->hash = hash;
    } else if (has_hash && ce->hash != hash) {
        return checks_fail(c, "state-machine-safety",
                           "n%u %s index %" PRIu64 "/%" PRIu64
                           " with different content than was committed",
                           id, how, index, term);
    }
    if (index > c->max_committed)
        c->max_committed = index;
    return 0;
}

static int checks_digest(struct checks *c, uint32_t id, uint64_t index, uint64_t digest)
{
    struct checks_committed *ce = checks_committed_at(c, index);
    if (!ce->has_digest) {
        ce->has_digest = true;
        ce->digest = digest;
        return 0;
    }
    if (ce->digest != digest)
        return checks_fail(c, "state-machine-safety",
                           "n%u KV digest after index %" PRIu64 " is %016" PRIx64
                           ", another replica had %016" PRIx64,
                           id, index, digest, ce->digest);
    return 0;
}

int checks_snapshot(struct checks *c, uint32_t id, uint64_t node_term, uint64_t index,
                    uint64_t term, uint64_t digest)
{
    if (c->failed)
        return -1;
    if (checks_commit_entry(c, id, node_term, index, term, false, 0, "restored a snapshot at") != 0)
        return -1;
    return checks_digest(c, id, index, digest);
}

int checks_apply(struct checks *c, uint32_t id, uint64_t node_term, const struct raft_entry *e,
                 uint64_t digest)
{
    if (c->failed)
        return -1;
    if (checks_commit_entry(c, id, node_term, e->index, e->term, true, checks_entry_hash(e),
                            "applied") != 0)
        return -1;
    return checks_digest(c, id, e->index, digest);
}

int checks_acked(struct checks *c, uint64_t index, uint64_t term)
{
    if (c->failed)
        return -1;
    uint64_t t = index < c->cap_committed ? c->committed[index].term : 0;
    if (t != term)
        return checks_fail(c, "acked-write-lost",
                           "write acknowledged at %" PRIu64 "/%" PRIu64
                           " but the committed term there is %" PRIu64,
                           index, term, t);
    return 0;
}

bool checks_digest_at(const struct checks *c, uint64_t index, uint64_t *digest)
{
    if (index >= c->cap_committed || !c->committed[index].has_digest)
        return false;
    *digest = c->committed[index].digest;
    return true;
}

/* ---- per-node check ------------------------------------------------------ */

void checks_node_crashed(struct checks *c, uint32_t id)
{
    struct checks_node *nd = &c->nodes[id];
    nd->role = 0;
    nd->leading = false;
    nd->truncated_from = 0;
    nd->commit = 0;
    nd->have_hs = false;
}

void checks_node_restarted(struct checks *c, uint32_t id, const struct raft_hard_state *hs)
{
    struct checks_node *nd = &c->nodes[id];
    checks_node_crashed(c, id);
    nd->have_hs = true;
    nd->hs = *hs;
}

/* Raft §5.4.1: the leader of term T holds every entry committed in a term
 * below T. A late election in an old term (its votes were delayed) owes
 * nothing to later terms, so only entries some node saw committed while in a
 * term below T count (the committing leader's term is at most that). Entries
 * below the leader's snapshot are vouched for by the snapshot (whose index
 * and term are checked) and by the digest check when they were applied. */
static int checks_completeness(struct checks *c, uint32_t id, const struct raft *r)
{
    uint64_t first = raft_first_index(r);
    uint64_t lo = first > 1 ? first - 1 : 1;
    uint64_t last = raft_last_index(r);
    for (uint64_t i = lo; i <= c->max_committed; i++) {
        const struct checks_committed *ce = i < c->cap_committed ? &c->committed[i] : NULL;
        uint64_t ct = ce ? ce->term : 0;
        if (ct == 0 || ce->seen_term >= raft_term(r))
            continue;
        if (i > last)
            return checks_fail(c, "leader-completeness",
                               "n%u became leader of term %" PRIu64 " with last index %" PRIu64
                               " but %" PRIu64 "/%" PRIu64 " is committed",
                               id, raft_term(r), last, i, ct);
        uint64_t t = raft_term_at(r, i);
        if (t != 0 && t != ct)
            return checks_fail(c, "leader-completeness",
                               "n%u became leader of term %" PRIu64 " holding %" PRIu64 "/%" PRIu64
                               " but %" PRIu64 "/%" PRIu64 " is committed",
                               id, raft_term(r), i, t, i, ct);
    }
    return 0;
}

static int checks_commits(struct checks *c, uint32_t id, const struct raft *r)
{
    struct checks_node *nd = &c->nodes[id];
    uint64_t commit = raft_commit(r);
    if (commit < nd->commit)
        return checks_fail(c, "state-machine-safety",
                           "n%u commit index went back from %" PRIu64 " to %" PRIu64, id,
                           nd->commit, commit);
    if (commit > raft_last_index(r))
        return checks_fail(c, "state-machine-safety",
                           "n%u commit %" PRIu64 " is beyond its last index %" PRIu64, id, commit,
                           raft_last_index(r));
    uint64_t first = raft_first_index(r);
    uint64_t lo = nd->commit + 1;
    if (first > 1 && lo < first - 1)
        lo = first - 1;
    for (uint64_t i = lo; i <= commit; i++) {
        const struct raft_entry *e = raft_entry_at(r, i);
        int rv;
        uint64_t term = raft_term(r);
        if (e != NULL)
            rv = checks_commit_entry(c, id, term, i, e->term, true, checks_entry_hash(e),
                                     "committed");
        else if (raft_term_at(r, i) != 0)
            rv = checks_commit_entry(c, id, term, i, raft_term_at(r, i), false, 0, "committed");
        else
            rv = 0;
        if (rv != 0)
            return rv;
    }
    nd->commit = commit;
    return 0;
}

int checks_node(struct checks *c, uint32_t id, const struct raft *r, bool *became_leader)
{
    struct checks_node *nd = &c->nodes[id];
    int role = raft_role(r);
    uint64_t term = raft_term(r);
    *became_leader = false;
    if (c->failed)
        return -1;
    if (role == RAFT_LEADER) {
        checks_reserve((void **)&c->leader_of_term, &c->cap_leader_of_term, (size_t)term + 1,
                       sizeof(*c->leader_of_term));
        uint32_t *l = &c->leader_of_term[term];
        if (*l != 0 && *l != id)
            return checks_fail(c, "election-safety", "n%u and n%u both led term %" PRIu64, *l, id,
                               term);
        *l = id;
        *became_leader = !(nd->role == RAFT_LEADER && nd->term == term);
    }
    if (role == RAFT_LEADER && nd->leading && nd->lead_term == term) {
        uint64_t commit = raft_commit(r), ct = raft_term_at(r, commit);
        if (c->direct && commit > nd->lead_commit && ct != 0 && ct != term)
            return checks_fail(c, "commit-current-term",
                               "n%u leader of term %" PRIu64 " advanced its commit from %" PRIu64
                               " to %" PRIu64 ", an entry of term %" PRIu64 " (Raft 5.4.2)",
                               id, term, nd->lead_commit, commit, ct);
        uint64_t t = raft_term_at(r, nd->lead_last_index);
        if (raft_last_index(r) < nd->lead_last_index ||
            (nd->truncated_from != 0 && nd->truncated_from <= nd->lead_last_index) ||
            (t != 0 && t != nd->lead_last_term))
            return checks_fail(c, "leader-append-only",
                               "n%u leader of term %" PRIu64 " had %" PRIu64 "/%" PRIu64
                               ", now last %" PRIu64 " term there %" PRIu64
                               " (truncated from %" PRIu64 ")",
                               id, term, nd->lead_last_index, nd->lead_last_term,
                               raft_last_index(r), t, nd->truncated_from);
    }
    nd->leading = role == RAFT_LEADER;
    nd->lead_term = term;
    nd->lead_last_index = raft_last_index(r);
    nd->lead_last_term = raft_last_term(r);
    nd->lead_commit = raft_commit(r);
    nd->truncated_from = 0;
    nd->role = role;
    nd->term = term;
    if (checks_commits(c, id, r) != 0)
        return -1;
    if (*became_leader) {
        c->n_elections++;
        if (checks_completeness(c, id, r) != 0)
            return -1;
    }
    return 0;
}
