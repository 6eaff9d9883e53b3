/* raft_harness.h -- a tiny deterministic network for unit-testing the pure Raft core.
 *
 * Header-only (static inline) because every tests/unit/test_*.c becomes its own
 * binary and only those files are compiled; this file is included, never built alone.
 *
 * The harness plays the host of raft.h for up to TH_NODES_MAX nodes (ids 1..n):
 *   - th_drain() takes a node's update and follows the host contract in raft.h:
 *     persist into an in-memory store (snapshot, truncate, append, hard state), queue
 *     msgs_now, queue msgs_after_persist, apply committed[], record reads[], then call
 *     raft_persisted() with the store's last entry. Everything is copied out of the
 *     update first, because the update dies at the next call into the core.
 *   - messages are deep-copied (raft_msg_copy) into one FIFO; th_deliver_all() hands
 *     them out in order, through the cut matrix (partitions), crashed nodes, and an
 *     optional per-test filter that may deliver, drop, hold back or rewrite a message.
 *   - nodes "crash" (raft_free, in-flight packets lost) and "restart" (raft_new from
 *     the store), which is how the Figure 8 scenario is staged.
 *
 * Invariants checked on every update, for every test (a violation fails the test):
 *   - Election Safety (§5.2): at most one leader per term.
 *   - State Machine Safety (§5.4.3): every node applies the same entry at an index.
 *   - committed[] is contiguous from the last applied index and already durable.
 *   - the stored term never decreases and a vote never changes within a term (§5.1).
 *   - granted votes and append acks wait for durability (msgs_after_persist, step 3).
 *
 * Nothing here reads a clock or draws randomness: one seed reproduces a run. Set
 * TH_TRACE=1 in the environment to print every delivered message.
 *
 * Sections: limits and asserts | types | store | messages | update (drain) | network |
 * lifecycle | queries.
 */
#ifndef TH_RAFT_HARNESS_H
#define TH_RAFT_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "raft/raft.h"

/* ---- limits and asserts ------------------------------------------------------------ */

#define TH_NODES_MAX       RAFT_SERVERS_MAX /* node ids 1..TH_NODES_MAX */
#define TH_ELECTION_TICKS  10               /* T in the tests; timeouts fall in [T, 2T) */
#define TH_HEARTBEAT_TICKS 1
#define TH_DELIVER_BUDGET  500000 /* messages per th_deliver_all: a livelock fails */
#define TH_DRAIN_BUDGET    256    /* updates per th_drain: the core must go quiet */
#define TH_LEADERS_MAX     4096   /* distinct terms with a leader per network */

_Static_assert(TH_HEARTBEAT_TICKS < TH_ELECTION_TICKS, "raft.h: heartbeat_ticks < T");

/* Assertions that print both values (STYLE.md rule 15). Values are widened to
 * unsigned long long; use ASSERT_RC for return codes, which prints their names. */
#define TH_CMP_(a, op, b)                                                                         \
    do {                                                                                          \
        const unsigned long long th_a_ = (unsigned long long)(a);                                 \
        const unsigned long long th_b_ = (unsigned long long)(b);                                 \
        if (!(th_a_ op th_b_)) {                                                                  \
            print_error("%s:%d: ASSERT(%s %s %s) failed: %llu vs %llu\n", __FILE__, __LINE__, #a, \
                        #op, #b, th_a_, th_b_);                                                   \
            _fail(__FILE__, __LINE__);                                                            \
        }                                                                                         \
    } while (0)
#define ASSERT_EQ(a, b) TH_CMP_(a, ==, b)
#define ASSERT_NE(a, b) TH_CMP_(a, !=, b)
#define ASSERT_LT(a, b) TH_CMP_(a, <, b)
#define ASSERT_LE(a, b) TH_CMP_(a, <=, b)
#define ASSERT_GT(a, b) TH_CMP_(a, >, b)
#define ASSERT_GE(a, b) TH_CMP_(a, >=, b)
#define ASSERT_TRUE(c)  TH_CMP_(!!(c), ==, 1)
#define ASSERT_RC(rv, expected)                                                           \
    do {                                                                                  \
        const int th_r_ = (rv);                                                           \
        const int th_e_ = (expected);                                                     \
        if (th_r_ != th_e_) {                                                             \
            print_error("%s:%d: ASSERT(%s == %s) failed: %d (%s) vs %d (%s)\n", __FILE__, \
                        __LINE__, #rv, #expected, th_r_, th_strerror_(th_r_), th_e_,      \
                        th_strerror_(th_e_));                                             \
            _fail(__FILE__, __LINE__);                                                    \
        }                                                                                 \
    } while (0)
/* A harness-detected violation: prints where in the harness and what, then fails. */
#define TH_FAIL(...)                                \
    do {                                            \
        print_error("%s:%d: ", __FILE__, __LINE__); \
        print_error(__VA_ARGS__);                   \
        print_error("\n");                          \
        _fail(__FILE__, __LINE__);                  \
    } while (0)

static inline const char *th_strerror_(int rv)
{
    if (rv == 0) {
        return "ok";
    }
    const char *s = raft_strerror(rv);
    return s != NULL ? s : "(null)";
}

/* ---- types --------------------------------------------------------------------------- */

/* One node's durable storage: what survives a crash. Owns every byte it points to. */
struct th_store {
    struct raft_hard_state hard_state;
    bool has_snapshot;
    struct raft_snapshot snapshot;
    struct raft_entry *entries; /* contiguous */
    uint64_t n_entries;
    uint64_t cap_entries;
};

struct th_read {
    uint64_t read_id;
    uint64_t index;
    int status;
};

struct th_node {
    uint32_t id;
    struct raft *r; /* NULL while crashed or never started */
    struct th_store store;
    uint64_t applied;               /* host state machine: last applied index */
    uint64_t n_snapshots_installed; /* updates with snapshot != NULL */
    uint8_t *installed_bytes;       /* copy of the last installed snapshot image */
    uint64_t installed_n_bytes;
    uint64_t installed_index;
    uint64_t n_truncates;
    uint64_t min_truncate_from; /* smallest truncate_from seen; 0 = none */
    struct th_read *reads;
    uint32_t n_reads;
    uint32_t cap_reads;

    /* Slow disk: with defer_persist the writes of each update land in store at once
     * but count as in progress until th_flush(); a crash before that rolls store back
     * to durable (losing the whole unflushed suffix, which raft.h allows). */
    bool defer_persist;
    bool owed; /* raft_persisted() and pending[] wait for th_flush() */
    bool has_durable;
    struct th_store durable;
    struct raft_msg *pending; /* msgs_after_persist held until th_flush() */
    size_t n_pending, cap_pending;
};

enum th_verdict { TH_DELIVER = 1, TH_DROP, TH_HOLD };
struct th_net;
/* May rewrite *m (see th_msg_trim_entries). Called once per message at delivery. */
typedef enum th_verdict (*th_filter_fn)(struct th_net *net, struct raft_msg *m, void *arg);

struct th_applied_slot {
    uint64_t term; /* 0 = nobody applied this index yet */
    uint64_t digest;
};

struct th_net {
    uint32_t n_nodes;
    struct th_node nodes[TH_NODES_MAX + 1]; /* [0] unused */
    uint64_t seed;

    /* options for nodes started from now on */
    bool prevote;
    bool check_quorum;
    bool lease_read;
    bool shared_seed;              /* every node gets random_seed = seed (no per-node mix) */
    uint32_t snapshot_chunk_bytes; /* 0 = core default */
    uint32_t trailing_entries;     /* UINT32_MAX = core default */

    /* network */
    bool cut[TH_NODES_MAX + 1][TH_NODES_MAX + 1]; /* cut[from][to]: drop */
    th_filter_fn filter;
    void *filter_arg;
    struct raft_msg *queue;
    size_t q_head, q_len, q_cap;
    struct raft_msg *held;
    size_t n_held, cap_held;

    /* statistics since th_stats_reset */
    uint64_t sent[RAFT_MSG_TYPE_MAX + 1];
    uint64_t sent_by[TH_NODES_MAX + 1][RAFT_MSG_TYPE_MAX + 1];
    uint64_t append_rejects_by[TH_NODES_MAX + 1];
    uint64_t votes_granted_by[TH_NODES_MAX + 1]; /* VOTE_RESP only, not PreVote */
    uint64_t votes_refused_by[TH_NODES_MAX + 1];
    uint64_t delivered[RAFT_MSG_TYPE_MAX + 1];
    uint64_t dropped;
    uint32_t max_snapshot_chunk;

    /* invariants */
    struct {
        uint64_t term;
        uint32_t id;
    } leaders[TH_LEADERS_MAX];
    uint32_t n_leaders;
    struct th_applied_slot *applied;
    uint64_t cap_applied;

    bool trace;
};

/* The network freed by th_teardown when a test fails half way. */
static struct th_net *th_current;

/* ---- store --------------------------------------------------------------------------- */

static inline void *th_xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL) {
        TH_FAIL("out of memory (%zu bytes)", n);
    }
    return p;
}

static inline void th_entry_dup(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->bytes = th_xmalloc(src->n_bytes);
    if (src->n_bytes > 0) {
        memcpy(dst->bytes, src->bytes, src->n_bytes);
    }
}

static inline bool th_entry_same(const struct raft_entry *a, const struct raft_entry *b)
{
    return a->term == b->term && a->index == b->index && a->type == b->type &&
           a->n_bytes == b->n_bytes &&
           (a->n_bytes == 0 || memcmp(a->bytes, b->bytes, a->n_bytes) == 0);
}

static inline uint64_t th_entry_digest(const struct raft_entry *e)
{
    uint64_t h = hash_fnv1a64(HASH_FNV_INIT, &e->type, 1);
    return hash_fnv1a64(h, e->bytes, e->n_bytes);
}

static inline void th_store_free(struct th_store *s)
{
    for (uint64_t i = 0; i < s->n_entries; i++) {
        free(s->entries[i].bytes);
    }
    free(s->entries);
    if (s->has_snapshot) {
        free(s->snapshot.bytes);
    }
    memset(s, 0, sizeof(*s));
}

static inline void th_store_last(const struct th_store *s, uint64_t *index, uint64_t *term)
{
    if (s->n_entries > 0) {
        *index = s->entries[s->n_entries - 1].index;
        *term = s->entries[s->n_entries - 1].term;
    } else if (s->has_snapshot) {
        *index = s->snapshot.index;
        *term = s->snapshot.term;
    } else {
        *index = 0;
        *term = 0;
    }
}

static inline const struct raft_entry *th_store_entry(const struct th_store *s, uint64_t index)
{
    if (s->n_entries == 0 || index < s->entries[0].index) {
        return NULL;
    }
    uint64_t off = index - s->entries[0].index;
    return off < s->n_entries ? &s->entries[off] : NULL;
}

static inline void th_store_truncate(struct th_store *s, uint64_t from)
{
    while (s->n_entries > 0 && s->entries[s->n_entries - 1].index >= from) {
        s->n_entries--;
        free(s->entries[s->n_entries].bytes);
    }
}

static inline void th_store_drop_prefix(struct th_store *s, uint64_t upto)
{
    uint64_t k = 0;
    while (k < s->n_entries && s->entries[k].index <= upto) {
        free(s->entries[k].bytes);
        k++;
    }
    memmove(s->entries, s->entries + k, (s->n_entries - k) * sizeof(s->entries[0]));
    s->n_entries -= k;
}

static inline void th_store_append(struct th_store *s, uint32_t id, const struct raft_entry *e)
{
    uint64_t last_index, last_term;
    th_store_last(s, &last_index, &last_term);
    if (e->index != last_index + 1) {
        TH_FAIL("node %u: update appends index %llu but the stored log ends at %llu "
                "(entries must follow the log after truncate_from)",
                id, (unsigned long long)e->index, (unsigned long long)last_index);
    }
    if (e->term < last_term) {
        TH_FAIL("node %u: appended entry %llu has term %llu < previous term %llu", id,
                (unsigned long long)e->index, (unsigned long long)e->term,
                (unsigned long long)last_term);
    }
    if (s->n_entries == s->cap_entries) {
        s->cap_entries = s->cap_entries ? 2 * s->cap_entries : 64;
        s->entries = realloc(s->entries, s->cap_entries * sizeof(s->entries[0]));
        if (s->entries == NULL) {
            TH_FAIL("out of memory");
        }
    }
    th_entry_dup(&s->entries[s->n_entries++], e);
}

static inline void th_store_set_snapshot(struct th_store *s, const struct raft_snapshot *snap)
{
    /* Keep stored entries after the snapshot only if they extend it (Log Matching:
     * same index and term means the same prefix); otherwise they are stale. */
    const struct raft_entry *at = th_store_entry(s, snap->index);
    if (at != NULL && at->term == snap->term) {
        th_store_drop_prefix(s, snap->index);
    } else {
        th_store_truncate(s, 0);
    }
    if (s->has_snapshot) {
        free(s->snapshot.bytes);
    }
    s->snapshot = *snap;
    s->snapshot.bytes = th_xmalloc(snap->n_bytes);
    if (snap->n_bytes > 0) {
        memcpy(s->snapshot.bytes, snap->bytes, snap->n_bytes);
    }
    s->has_snapshot = true;
}

static inline void th_store_copy(struct th_store *dst, const struct th_store *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->hard_state = src->hard_state;
    if (src->has_snapshot) {
        th_store_set_snapshot(dst, &src->snapshot);
    }
    dst->cap_entries = src->n_entries;
    dst->entries = th_xmalloc(src->n_entries * sizeof(dst->entries[0]));
    for (uint64_t i = 0; i < src->n_entries; i++) {
        th_entry_dup(&dst->entries[i], &src->entries[i]);
    }
    dst->n_entries = src->n_entries;
}

/* ---- messages ------------------------------------------------------------------------ */

static inline const char *th_type_name(int type)
{
    const char *s = raft_msg_type_name(type);
    return s != NULL ? s : "?";
}

static inline void th_msg_print(const char *what, const struct raft_msg *m)
{
    fprintf(stderr, "  %-8s %-16s %u->%u t=%llu", what, th_type_name(m->type), m->from, m->to,
            (unsigned long long)m->term);
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        fprintf(stderr, " last=%llu/%llu transfer=%d", (unsigned long long)m->vote.last_log_index,
                (unsigned long long)m->vote.last_log_term, m->vote.transfer);
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        fprintf(stderr, " granted=%d", m->vote_resp.granted);
        break;
    case RAFT_MSG_APPEND:
        fprintf(stderr, " prev=%llu/%llu commit=%llu n=%u",
                (unsigned long long)m->append.prev_index, (unsigned long long)m->append.prev_term,
                (unsigned long long)m->append.commit, m->append.n_entries);
        for (uint32_t i = 0; i < m->append.n_entries && m->append.entries != NULL; i++) {
            fprintf(stderr, " [%llu:t%llu]", (unsigned long long)m->append.entries[i].index,
                    (unsigned long long)m->append.entries[i].term);
        }
        break;
    case RAFT_MSG_APPEND_RESP:
        fprintf(stderr, " reject=%d index=%llu hint=%llu/t%llu", m->append_resp.reject,
                (unsigned long long)m->append_resp.index,
                (unsigned long long)m->append_resp.hint_index,
                (unsigned long long)m->append_resp.hint_term);
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        fprintf(stderr, " commit=%llu round=%llu", (unsigned long long)m->heartbeat.commit,
                (unsigned long long)m->heartbeat.round);
        break;
    case RAFT_MSG_SNAPSHOT:
        fprintf(stderr, " snap=%llu/%llu off=%llu n=%u total=%llu",
                (unsigned long long)m->snapshot.index, (unsigned long long)m->snapshot.term,
                (unsigned long long)m->snapshot.offset, m->snapshot.n_bytes,
                (unsigned long long)m->snapshot.n_total);
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        fprintf(stderr, " snap=%llu off=%llu done=%d", (unsigned long long)m->snapshot_resp.index,
                (unsigned long long)m->snapshot_resp.offset, m->snapshot_resp.done);
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        fprintf(stderr, " id=%llu index=%llu status=%d", (unsigned long long)m->read.read_id,
                (unsigned long long)m->read.index, m->read.status);
        break;
    default:
        break;
    }
    fprintf(stderr, "\n");
}

/* Replaces *m by a copy that carries only the APPEND entries with index <= max_index.
 * Used to stage "the leader has not sent that entry yet" (Figure 8 (c)). */
static inline void th_msg_trim_entries(struct raft_msg *m, uint64_t max_index)
{
    if (m->type != RAFT_MSG_APPEND) {
        return;
    }
    uint32_t keep = 0;
    while (keep < m->append.n_entries && m->append.entries[keep].index <= max_index) {
        keep++;
    }
    if (keep == m->append.n_entries) {
        return;
    }
    struct raft_msg view = *m;
    view.append.n_entries = keep;
    struct raft_msg copy;
    if (raft_msg_copy(&copy, &view) != 0) {
        TH_FAIL("raft_msg_copy failed");
    }
    raft_msg_free_copy(m);
    *m = copy;
}

static inline void th_queue_push(struct raft_msg **q, size_t *len, size_t *cap,
                                 const struct raft_msg *m)
{
    if (*len == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *q = realloc(*q, *cap * sizeof(**q));
        if (*q == NULL) {
            TH_FAIL("out of memory");
        }
    }
    (*q)[(*len)++] = *m;
}

static inline void th_send(struct th_net *net, uint32_t from, const struct raft_msg *m)
{
    if (m->from != from) {
        TH_FAIL("node %u sent a %s with from=%u", from, th_type_name(m->type), m->from);
    }
    if (m->to == 0 || m->to > TH_NODES_MAX || m->to == from) {
        TH_FAIL("node %u sent a %s to bad id %u", from, th_type_name(m->type), m->to);
    }
    if (m->type == 0 || m->type > RAFT_MSG_TYPE_MAX) {
        TH_FAIL("node %u sent a message of unknown type %u", from, m->type);
    }
    net->sent[m->type]++;
    net->sent_by[from][m->type]++;
    if (m->type == RAFT_MSG_APPEND_RESP && m->append_resp.reject) {
        net->append_rejects_by[from]++;
    }
    if (m->type == RAFT_MSG_VOTE_RESP) {
        if (m->vote_resp.granted) {
            net->votes_granted_by[from]++;
        } else {
            net->votes_refused_by[from]++;
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.n_bytes > net->max_snapshot_chunk) {
        net->max_snapshot_chunk = m->snapshot.n_bytes;
    }
    struct raft_msg copy;
    if (raft_msg_copy(&copy, m) != 0) {
        TH_FAIL("raft_msg_copy failed");
    }
    th_queue_push(&net->queue, &net->q_len, &net->q_cap, &copy);
}

static inline void th_stats_reset(struct th_net *net)
{
    memset(net->sent, 0, sizeof(net->sent));
    memset(net->sent_by, 0, sizeof(net->sent_by));
    memset(net->append_rejects_by, 0, sizeof(net->append_rejects_by));
    memset(net->votes_granted_by, 0, sizeof(net->votes_granted_by));
    memset(net->votes_refused_by, 0, sizeof(net->votes_refused_by));
    memset(net->delivered, 0, sizeof(net->delivered));
    net->dropped = 0;
    net->max_snapshot_chunk = 0;
}

/* ---- update (drain) ------------------------------------------------------------------ */

static inline struct th_node *th_node(struct th_net *net, uint32_t id)
{
    if (id == 0 || id > net->n_nodes) {
        TH_FAIL("no node %u (network has %u)", id, net->n_nodes);
    }
    return &net->nodes[id];
}

static inline struct raft *th_raft(struct th_net *net, uint32_t id)
{
    struct th_node *n = th_node(net, id);
    if (n->r == NULL) {
        TH_FAIL("node %u is down", id);
    }
    return n->r;
}

static inline void th_check_applied(struct th_net *net, struct th_node *n,
                                    const struct raft_entry *e)
{
    if (e->index != n->applied + 1) {
        TH_FAIL("node %u: committed[] hands out index %llu after applied %llu", n->id,
                (unsigned long long)e->index, (unsigned long long)n->applied);
    }
    const struct raft_entry *stored =
        th_store_entry(n->has_durable ? &n->durable : &n->store, e->index);
    if (stored == NULL || !th_entry_same(stored, e)) {
        TH_FAIL("node %u: committed entry %llu (term %llu) is not the durable one", n->id,
                (unsigned long long)e->index, (unsigned long long)e->term);
    }
    n->applied = e->index;
    if (e->index >= net->cap_applied) {
        uint64_t cap = net->cap_applied ? net->cap_applied : 1024;
        while (cap <= e->index) {
            cap *= 2;
        }
        net->applied = realloc(net->applied, cap * sizeof(net->applied[0]));
        if (net->applied == NULL) {
            TH_FAIL("out of memory");
        }
        memset(net->applied + net->cap_applied, 0,
               (cap - net->cap_applied) * sizeof(net->applied[0]));
        net->cap_applied = cap;
    }
    struct th_applied_slot *slot = &net->applied[e->index];
    uint64_t digest = th_entry_digest(e);
    if (slot->term == 0) {
        slot->term = e->term;
        slot->digest = digest;
    } else if (slot->term != e->term || slot->digest != digest) {
        TH_FAIL("State Machine Safety (§5.4.3) violated: node %u applied index %llu term %llu, "
                "another node applied term %llu there",
                n->id, (unsigned long long)e->index, (unsigned long long)e->term,
                (unsigned long long)slot->term);
    }
}

static inline void th_check_leader(struct th_net *net, struct th_node *n)
{
    if (raft_role(n->r) != RAFT_LEADER) {
        return;
    }
    uint64_t term = raft_term(n->r);
    for (uint32_t i = 0; i < net->n_leaders; i++) {
        if (net->leaders[i].term == term) {
            if (net->leaders[i].id != n->id) {
                TH_FAIL("Election Safety (§5.2) violated: nodes %u and %u lead term %llu",
                        net->leaders[i].id, n->id, (unsigned long long)term);
            }
            return;
        }
    }
    if (net->n_leaders == TH_LEADERS_MAX) {
        TH_FAIL("more than %d leader terms", TH_LEADERS_MAX);
    }
    net->leaders[net->n_leaders].term = term;
    net->leaders[net->n_leaders].id = n->id;
    net->n_leaders++;
}

static inline void th_check_hard_state(struct th_node *n, const struct raft_hard_state *hs)
{
    const struct raft_hard_state *old = &n->store.hard_state;
    if (hs->term < old->term) {
        TH_FAIL("node %u: stored term goes back from %llu to %llu", n->id,
                (unsigned long long)old->term, (unsigned long long)hs->term);
    }
    if (hs->term == old->term && old->vote != 0 && hs->vote != old->vote) {
        TH_FAIL("node %u: vote changes from %u to %u within term %llu (§5.1)", n->id, old->vote,
                hs->vote, (unsigned long long)hs->term);
    }
}

/* A granted vote is a promise (§5.1): the voter's durable hard state must already
 * say term m->term, vote m->to when the grant leaves. */
static inline void th_check_vote_durable(const struct th_node *n,
                                         const struct raft_hard_state *durable,
                                         const struct raft_msg *m, const char *where)
{
    if (m->type == RAFT_MSG_VOTE_RESP && m->vote_resp.granted &&
        (durable->term != m->term || durable->vote != m->to)) {
        TH_FAIL("node %u: vote for %u in term %llu sent (%s) while durable state is "
                "term %llu vote %u",
                n->id, m->to, (unsigned long long)m->term, where, (unsigned long long)durable->term,
                durable->vote);
    }
}

/* Acks and granted votes in msgs_now would be promises about state not yet durable. */
static inline void th_check_msgs_now(const struct th_node *n, const struct raft_update *u,
                                     uint64_t durable_last)
{
    const struct raft_hard_state *durable =
        n->has_durable ? &n->durable.hard_state : &n->store.hard_state;
    for (uint32_t i = 0; i < u->n_msgs_now; i++) {
        const struct raft_msg *m = &u->msgs_now[i];
        th_check_vote_durable(n, durable, m, "msgs_now");
        if (m->type == RAFT_MSG_APPEND_RESP && !m->append_resp.reject &&
            (m->append_resp.index > durable_last || u->truncate_from != 0)) {
            TH_FAIL("node %u: append ack for index %llu sent in msgs_now, durable log ends at "
                    "%llu",
                    n->id, (unsigned long long)m->append_resp.index,
                    (unsigned long long)durable_last);
        }
    }
}

/* Plays the host for one node until the core has nothing more to say. */
static inline void th_drain(struct th_net *net, uint32_t id)
{
    struct th_node *n = th_node(net, id);
    for (int budget = 0; budget < TH_DRAIN_BUDGET; budget++) {
        struct raft_update u;
        memset(&u, 0, sizeof(u));
        raft_update_take(n->r, &u);
        uint64_t durable_last, durable_term;
        th_store_last(n->has_durable ? &n->durable : &n->store, &durable_last, &durable_term);
        th_check_msgs_now(n, &u, durable_last);

        /* 1. persist, in order */
        bool persist =
            u.snapshot != NULL || u.truncate_from != 0 || u.n_entries > 0 || u.hard_state_changed;
        bool deferred = n->defer_persist && (persist || n->owed);
        if (deferred && !n->has_durable) {
            th_store_copy(&n->durable, &n->store);
            n->has_durable = true;
        }
        if (u.snapshot != NULL) {
            th_store_set_snapshot(&n->store, u.snapshot);
            n->n_snapshots_installed++;
            free(n->installed_bytes);
            n->installed_bytes = th_xmalloc(u.snapshot->n_bytes);
            if (u.snapshot->n_bytes > 0) {
                memcpy(n->installed_bytes, u.snapshot->bytes, u.snapshot->n_bytes);
            }
            n->installed_n_bytes = u.snapshot->n_bytes;
            n->installed_index = u.snapshot->index;
        }
        if (u.truncate_from != 0) {
            th_store_truncate(&n->store, u.truncate_from);
            n->n_truncates++;
            if (n->min_truncate_from == 0 || u.truncate_from < n->min_truncate_from) {
                n->min_truncate_from = u.truncate_from;
            }
        }
        if (u.n_entries > 0 && u.entries == NULL) {
            TH_FAIL("node %u: update has %u entries but entries == NULL", id, u.n_entries);
        }
        for (uint32_t i = 0; i < u.n_entries; i++) {
            th_store_append(&n->store, id, &u.entries[i]);
        }
        if (u.hard_state_changed) {
            th_check_hard_state(n, &u.hard_state);
            n->store.hard_state = u.hard_state;
        }

        /* 2. and 3. messages: copied now; delivery happens after raft_persisted below. */
        for (uint32_t i = 0; i < u.n_msgs_now; i++) {
            th_send(net, id, &u.msgs_now[i]);
        }
        for (uint32_t i = 0; i < u.n_msgs_after_persist; i++) {
            th_check_vote_durable(n, &n->store.hard_state, &u.msgs_after_persist[i],
                                  "msgs_after_persist");
            if (deferred) {
                struct raft_msg copy;
                if (raft_msg_copy(&copy, &u.msgs_after_persist[i]) != 0) {
                    TH_FAIL("raft_msg_copy failed");
                }
                th_queue_push(&n->pending, &n->n_pending, &n->cap_pending, &copy);
            } else {
                th_send(net, id, &u.msgs_after_persist[i]);
            }
        }

        /* 4. apply */
        if (u.snapshot != NULL) {
            n->applied = u.snapshot->index;
        }
        for (uint32_t i = 0; i < u.n_committed; i++) {
            th_check_applied(net, n, &u.committed[i]);
        }

        /* 5. reads */
        for (uint32_t i = 0; i < u.n_reads; i++) {
            if (n->n_reads == n->cap_reads) {
                n->cap_reads = n->cap_reads ? 2 * n->cap_reads : 64;
                n->reads = realloc(n->reads, n->cap_reads * sizeof(n->reads[0]));
                if (n->reads == NULL) {
                    TH_FAIL("out of memory");
                }
            }
            n->reads[n->n_reads].read_id = u.reads[i].read_id;
            n->reads[n->n_reads].index = u.reads[i].index;
            n->reads[n->n_reads].status = u.reads[i].status;
            n->n_reads++;
        }

        /* The update dies here. */
        if (deferred) {
            n->owed = true;
        } else if (persist) {
            uint64_t last_index, last_term;
            th_store_last(&n->store, &last_index, &last_term);
            raft_persisted(n->r, last_index, last_term);
        }
        th_check_leader(net, n);
        if (!raft_update_pending(n->r)) {
            return;
        }
    }
    TH_FAIL("node %u: update still pending after %d takes", id, TH_DRAIN_BUDGET);
}

/* ---- network ------------------------------------------------------------------------- */

static inline bool th_up(const struct th_net *net, uint32_t id)
{
    return id >= 1 && id <= net->n_nodes && net->nodes[id].r != NULL;
}

/* Delivers the oldest queued message. Returns false when the queue is empty. */
static inline bool th_deliver_one(struct th_net *net)
{
    if (net->q_head == net->q_len) {
        net->q_head = net->q_len = 0;
        return false;
    }
    struct raft_msg m = net->queue[net->q_head++];
    enum th_verdict v = TH_DELIVER;
    if (!th_up(net, m.to) || net->cut[m.from][m.to]) {
        v = TH_DROP;
    } else if (net->filter != NULL) {
        v = net->filter(net, &m, net->filter_arg);
    }
    if (v == TH_HOLD) {
        if (net->trace) {
            th_msg_print("hold", &m);
        }
        th_queue_push(&net->held, &net->n_held, &net->cap_held, &m);
        return true;
    }
    if (v == TH_DROP) {
        if (net->trace) {
            th_msg_print("drop", &m);
        }
        net->dropped++;
        raft_msg_free_copy(&m);
        return true;
    }
    if (net->trace) {
        th_msg_print("deliver", &m);
    }
    const uint32_t to = m.to;
    net->delivered[m.type]++;
    int rv = raft_step(net->nodes[to].r, &m);
    if (rv != 0) {
        th_msg_print("rejected", &m);
        raft_msg_free_copy(&m);
        TH_FAIL("node %u: raft_step rejected a message the core produced: %d (%s)", to, rv,
                th_strerror_(rv));
    }
    raft_msg_free_copy(&m);
    th_drain(net, to);
    return true;
}

static inline void th_deliver_all(struct th_net *net)
{
    for (uint64_t i = 0; i < TH_DELIVER_BUDGET; i++) {
        if (!th_deliver_one(net)) {
            return;
        }
    }
    TH_FAIL("network still busy after %d messages (livelock?)", TH_DELIVER_BUDGET);
}

/* Puts held messages back at the end of the queue, in the order they were held. */
static inline void th_release_held(struct th_net *net)
{
    for (size_t i = 0; i < net->n_held; i++) {
        th_queue_push(&net->queue, &net->q_len, &net->q_cap, &net->held[i]);
    }
    net->n_held = 0;
}

static inline void th_drop_held(struct th_net *net)
{
    for (size_t i = 0; i < net->n_held; i++) {
        raft_msg_free_copy(&net->held[i]);
    }
    net->n_held = 0;
}

static inline void th_set_filter(struct th_net *net, th_filter_fn fn, void *arg)
{
    net->filter = fn;
    net->filter_arg = arg;
}

static inline void th_cut(struct th_net *net, uint32_t a, uint32_t b)
{
    net->cut[a][b] = true;
    net->cut[b][a] = true;
}

static inline void th_isolate(struct th_net *net, uint32_t id)
{
    for (uint32_t j = 1; j <= TH_NODES_MAX; j++) {
        if (j != id) {
            th_cut(net, id, j);
        }
    }
}

static inline void th_heal(struct th_net *net)
{
    memset(net->cut, 0, sizeof(net->cut));
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static inline struct th_net *th_net_new(uint32_t n_nodes, uint64_t seed)
{
    if (n_nodes == 0 || n_nodes > TH_NODES_MAX) {
        TH_FAIL("bad node count %u", n_nodes);
    }
    struct th_net *net = calloc(1, sizeof(*net));
    if (net == NULL) {
        TH_FAIL("out of memory");
    }
    net->n_nodes = n_nodes;
    net->seed = seed;
    net->trailing_entries = UINT32_MAX;
    for (uint32_t i = 1; i <= n_nodes; i++) {
        net->nodes[i].id = i;
    }
    const char *t = getenv("TH_TRACE");
    net->trace = t != NULL && t[0] != '\0' && t[0] != '0';
    th_current = net;
    return net;
}

static inline void th_node_options(const struct th_net *net, uint32_t id, struct raft_options *o)
{
    /* Distinct per node and per run: one net seed reproduces the whole run. */
    raft_options_default(o, id, net->shared_seed ? net->seed : net->seed * 1000003u + id);
    o->election_ticks = TH_ELECTION_TICKS;
    o->heartbeat_ticks = TH_HEARTBEAT_TICKS;
    o->prevote = net->prevote;
    o->check_quorum = net->check_quorum;
    o->lease_read = net->lease_read;
    if (net->snapshot_chunk_bytes != 0) {
        o->snapshot_chunk_bytes = net->snapshot_chunk_bytes;
    }
    if (net->trailing_entries != UINT32_MAX) {
        o->trailing_entries = net->trailing_entries;
    }
}

/* raft_new from the node's store (a start or a restart after th_crash). */
static inline void th_restart(struct th_net *net, uint32_t id)
{
    struct th_node *n = th_node(net, id);
    if (n->r != NULL) {
        TH_FAIL("node %u is already running", id);
    }
    struct raft_options o;
    th_node_options(net, id, &o);
    struct raft_recovered rec;
    memset(&rec, 0, sizeof(rec));
    rec.hard_state = n->store.hard_state;
    rec.snapshot = n->store.has_snapshot ? &n->store.snapshot : NULL;
    rec.entries = n->store.entries;
    rec.n_entries = n->store.n_entries;
    int rv = raft_new(&o, &rec, &n->r);
    ASSERT_RC(rv, 0);
    if (n->r == NULL) {
        TH_FAIL("raft_new returned 0 but no node");
    }
    /* The state machine is volatile: it restarts from the snapshot, if any. */
    n->applied = n->store.has_snapshot ? n->store.snapshot.index : 0;
    th_drain(net, id);
}

/* Creates node id from chosen recovered state. Everything is copied. */
static inline void th_start(struct th_net *net, uint32_t id, const struct raft_hard_state *hs,
                            const struct raft_snapshot *snap, const struct raft_entry *entries,
                            uint64_t n_entries)
{
    struct th_node *n = th_node(net, id);
    th_store_free(&n->store);
    if (hs != NULL) {
        n->store.hard_state = *hs;
    }
    if (snap != NULL) {
        th_store_set_snapshot(&n->store, snap);
    }
    for (uint64_t i = 0; i < n_entries; i++) {
        if (snap != NULL && entries[i].index <= snap->index) {
            continue;
        }
        th_store_append(&n->store, id, &entries[i]);
    }
    th_restart(net, id);
}

static inline void th_drop_pending(struct th_node *n)
{
    for (size_t i = 0; i < n->n_pending; i++) {
        raft_msg_free_copy(&n->pending[i]);
    }
    n->n_pending = 0;
}

/* The slow disk of id finishes: raft_persisted(), then the held acks and votes. */
static inline void th_flush(struct th_net *net, uint32_t id)
{
    struct th_node *n = th_node(net, id);
    if (!n->owed) {
        return;
    }
    n->owed = false;
    if (n->has_durable) {
        th_store_free(&n->durable);
        n->has_durable = false;
    }
    uint64_t last_index, last_term;
    th_store_last(&n->store, &last_index, &last_term);
    raft_persisted(th_raft(net, id), last_index, last_term);
    for (size_t i = 0; i < n->n_pending; i++) {
        th_send(net, id, &n->pending[i]);
    }
    th_drop_pending(n);
    th_drain(net, id);
}

/* Drops in-flight messages from and to id and frees the core. The durable part of
 * the store survives; unflushed writes of a slow disk are lost. */
static inline void th_crash(struct th_net *net, uint32_t id)
{
    struct th_node *n = th_node(net, id);
    th_drop_pending(n);
    n->owed = false;
    if (n->has_durable) {
        th_store_free(&n->store);
        n->store = n->durable;
        memset(&n->durable, 0, sizeof(n->durable));
        n->has_durable = false;
    }
    size_t k = net->q_head;
    for (size_t i = net->q_head; i < net->q_len; i++) {
        struct raft_msg *m = &net->queue[i];
        if (m->from == id || m->to == id) {
            raft_msg_free_copy(m);
        } else {
            net->queue[k++] = *m;
        }
    }
    net->q_len = k;
    if (n->r != NULL) {
        raft_free(n->r);
        n->r = NULL;
    }
}

static inline void th_net_free(struct th_net *net)
{
    if (net == NULL) {
        return;
    }
    for (size_t i = net->q_head; i < net->q_len; i++) {
        raft_msg_free_copy(&net->queue[i]);
    }
    free(net->queue);
    th_drop_held(net);
    free(net->held);
    for (uint32_t i = 1; i <= net->n_nodes; i++) {
        struct th_node *n = &net->nodes[i];
        if (n->r != NULL) {
            raft_free(n->r);
        }
        th_store_free(&n->store);
        th_store_free(&n->durable);
        th_drop_pending(n);
        free(n->pending);
        free(n->installed_bytes);
        free(n->reads);
    }
    free(net->applied);
    if (th_current == net) {
        th_current = NULL;
    }
    free(net);
}

/* cmocka teardown: frees whatever a failed test left behind. */
static inline int th_teardown(void **state)
{
    th_net_free(th_current);
    th_current = NULL;
    return 0;
}

/* Voters 1..n_voters, then learners n_voters+1..n_voters+n_learners. */
static inline void th_config_make(struct raft_config *c, uint32_t n_voters, uint32_t n_learners)
{
    memset(c, 0, sizeof(*c));
    for (uint32_t i = 0; i < n_voters + n_learners; i++) {
        c->servers[i].id = i + 1;
        c->servers[i].role = i < n_voters ? RAFT_VOTER : RAFT_LEARNER;
    }
    c->n_servers = n_voters + n_learners;
}

/* A founding member: the shared bootstrap CONFIG entry at index 1, term 1. */
static inline void th_boot_node(struct th_net *net, uint32_t id, const struct raft_config *c)
{
    uint8_t buf[RAFT_CONFIG_BYTES_MAX];
    struct raft_entry e;
    ASSERT_RC(raft_bootstrap_entry(c, buf, sizeof(buf), &e), 0);
    ASSERT_EQ(e.index, 1);
    ASSERT_EQ(e.term, 1);
    ASSERT_EQ(e.type, RAFT_ENTRY_CONFIG);
    struct raft_hard_state hs = {.term = 1, .vote = 0, .commit = 0};
    th_start(net, id, &hs, NULL, &e, 1);
}

/* Boots voters 1..n_voters of net; nodes above that stay down until the test starts them. */
static inline void th_boot(struct th_net *net, uint32_t n_voters)
{
    struct raft_config c;
    th_config_make(&c, n_voters, 0);
    for (uint32_t id = 1; id <= n_voters; id++) {
        th_boot_node(net, id, &c);
    }
}

/* ---- driving ------------------------------------------------------------------------- */

static inline void th_tick(struct th_net *net, uint32_t id, uint32_t n_ticks)
{
    for (uint32_t i = 0; i < n_ticks; i++) {
        raft_tick(th_raft(net, id));
        th_drain(net, id);
    }
}

/* One lockstep round: every running node in mask (bit id) ticks once, then the
 * network runs until quiet. mask 0 means every running node. */
static inline void th_round(struct th_net *net, uint32_t mask)
{
    for (uint32_t id = 1; id <= net->n_nodes; id++) {
        if (th_up(net, id) && (mask == 0 || (mask & (1u << id)))) {
            raft_tick(net->nodes[id].r);
            th_drain(net, id);
        }
    }
    th_deliver_all(net);
}

static inline void th_rounds(struct th_net *net, uint32_t mask, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        th_round(net, mask);
    }
}

/* Ticks only id until it leaves the follower role (its election timeout fired).
 * Does not deliver anything. */
static inline void th_campaign(struct th_net *net, uint32_t id)
{
    struct raft *r = th_raft(net, id);
    for (uint32_t i = 0; i < 2 * TH_ELECTION_TICKS + 1; i++) {
        if (raft_role(r) != RAFT_FOLLOWER) {
            return;
        }
        th_tick(net, id, 1);
    }
    if (raft_role(r) == RAFT_FOLLOWER) {
        TH_FAIL("node %u did not campaign within %d ticks", id, 2 * TH_ELECTION_TICKS + 1);
    }
}

/* The running leader with the highest term, or 0. */
static inline uint32_t th_leader(struct th_net *net)
{
    uint32_t best = 0;
    uint64_t best_term = 0;
    for (uint32_t id = 1; id <= net->n_nodes; id++) {
        if (th_up(net, id) && raft_role(net->nodes[id].r) == RAFT_LEADER &&
            raft_term(net->nodes[id].r) >= best_term) {
            best = id;
            best_term = raft_term(net->nodes[id].r);
        }
    }
    return best;
}

/* Makes id leader on a fresh cluster (nobody else ticks) and lets it commit its
 * no-op. Returns the leader's term. */
static inline uint64_t th_elect(struct th_net *net, uint32_t id)
{
    th_campaign(net, id);
    th_deliver_all(net);
    struct raft *r = th_raft(net, id);
    ASSERT_EQ(raft_role(r), RAFT_LEADER);
    ASSERT_EQ(raft_leader(r), id);
    for (uint32_t i = 0; i < 3 && raft_commit(r) < raft_last_index(r); i++) {
        th_tick(net, id, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_commit(r), raft_last_index(r));
    ASSERT_EQ(raft_term_at(r, raft_commit(r)), raft_term(r));
    return raft_term(r);
}

/* The nodes th_settle waits for: running, reachable both ways from the leader, and
 * members of the leader's latest configuration. */
static inline bool th_settles(struct th_net *net, uint32_t leader, uint32_t id)
{
    return th_up(net, id) && !net->cut[leader][id] && !net->cut[id][leader] &&
           raft_config_role(raft_config(net->nodes[leader].r), id) != 0;
}

/* Ticks the leader and delivers until the commit index of the leader and of every
 * node it can reach reaches index. */
static inline void th_settle(struct th_net *net, uint32_t leader, uint64_t index,
                             uint32_t max_ticks)
{
    th_deliver_all(net);
    for (uint32_t t = 0;; t++) {
        bool done = raft_commit(th_raft(net, leader)) >= index;
        for (uint32_t id = 1; id <= net->n_nodes; id++) {
            if (th_settles(net, leader, id) && raft_commit(net->nodes[id].r) < index) {
                done = false;
            }
        }
        if (done) {
            return;
        }
        if (t == max_ticks) {
            break;
        }
        th_tick(net, leader, 1);
        th_deliver_all(net);
    }
    for (uint32_t id = 1; id <= net->n_nodes; id++) {
        if (th_up(net, id)) {
            print_error("  node %u: commit %llu last %llu role %s\n", id,
                        (unsigned long long)raft_commit(net->nodes[id].r),
                        (unsigned long long)raft_last_index(net->nodes[id].r),
                        raft_role_name(raft_role(net->nodes[id].r)));
        }
    }
    TH_FAIL("commit did not reach %llu within %u leader ticks", (unsigned long long)index,
            max_ticks);
}

static inline uint64_t th_propose(struct th_net *net, uint32_t id, const char *cmd)
{
    uint64_t index = 0;
    ASSERT_RC(raft_propose(th_raft(net, id), cmd, (uint32_t)strlen(cmd), &index), 0);
    ASSERT_NE(index, 0);
    th_drain(net, id);
    return index;
}

/* ---- queries ------------------------------------------------------------------------- */

/* Both nodes hold the same entries (term, type, bytes) over the range both still keep
 * in memory, and end at the same index. */
static inline void th_assert_same_log(struct th_net *net, uint32_t a, uint32_t b)
{
    struct raft *ra = th_raft(net, a), *rb = th_raft(net, b);
    ASSERT_EQ(raft_last_index(ra), raft_last_index(rb));
    ASSERT_EQ(raft_last_term(ra), raft_last_term(rb));
    uint64_t from =
        raft_first_index(ra) > raft_first_index(rb) ? raft_first_index(ra) : raft_first_index(rb);
    for (uint64_t i = from; i <= raft_last_index(ra); i++) {
        const struct raft_entry *ea = raft_entry_at(ra, i);
        const struct raft_entry *eb = raft_entry_at(rb, i);
        if (ea == NULL || eb == NULL) {
            TH_FAIL("index %llu missing on node %u or %u", (unsigned long long)i, a, b);
        }
        if (!th_entry_same(ea, eb)) {
            TH_FAIL("index %llu differs: node %u has term %llu, node %u has term %llu",
                    (unsigned long long)i, a, (unsigned long long)ea->term, b,
                    (unsigned long long)eb->term);
        }
    }
}

/* The durable store of id holds exactly what its core holds in memory. */
static inline void th_assert_store_matches(struct th_net *net, uint32_t id)
{
    struct th_node *n = th_node(net, id);
    struct raft *r = th_raft(net, id);
    uint64_t last_index, last_term;
    th_store_last(&n->store, &last_index, &last_term);
    ASSERT_EQ(last_index, raft_last_index(r));
    ASSERT_EQ(last_term, raft_last_term(r));
    for (uint64_t i = 0; i < n->store.n_entries; i++) {
        const struct raft_entry *s = &n->store.entries[i];
        const struct raft_entry *e = raft_entry_at(r, s->index);
        if (e != NULL && !th_entry_same(s, e)) {
            TH_FAIL("node %u: stored entry %llu (term %llu) differs from memory (term %llu)", id,
                    (unsigned long long)s->index, (unsigned long long)s->term,
                    (unsigned long long)e->term);
        }
    }
}

static inline const struct th_read *th_find_read(const struct th_node *n, uint64_t read_id)
{
    const struct th_read *found = NULL;
    for (uint32_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].read_id == read_id) {
            if (found != NULL) {
                TH_FAIL("node %u answered read %llu twice", n->id, (unsigned long long)read_id);
            }
            found = &n->reads[i];
        }
    }
    return found;
}

static inline bool th_progress_of(struct th_net *net, uint32_t leader, uint32_t id,
                                  struct raft_progress_info *out)
{
    struct raft_progress_info pr[RAFT_SERVERS_MAX];
    uint32_t n = raft_progress(th_raft(net, leader), pr, RAFT_SERVERS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        if (pr[i].id == id) {
            *out = pr[i];
            return true;
        }
    }
    return false;
}

#endif /* TH_RAFT_HARNESS_H */
