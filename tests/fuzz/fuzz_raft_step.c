/* fuzz_raft_step.c -- a 3-node Raft cluster run by a fuzzer-written script, with
 * forged messages fed straight into raft_step().
 *
 * The file is the host of raft.h for nodes 1..3. Every call into a core is followed
 * by raft_update_take(), and the update is handled in contract order: persist into an
 * in-memory store, queue msgs_now, hold msgs_after_persist until raft_persisted() has
 * the store's last entry, apply committed[]. The network is one queue of deep copies
 * (raft_msg_copy), which the script delivers in order or out of it, drops and duplicates.
 *
 * Input: byte 0 holds the options (bit 0 prevote, 1 check_quorum, 2 lease_read,
 * 3 auto-persist, bits 4-5 election_ticks - 3). Each op after it is an opcode byte, an
 * argument byte and its operands (OP_*). A missing byte reads as 0.
 *
 * Checked on every input:
 *   - raft_step() returns 0 or RAFT_EINVAL, and never crashes, asserts, leaks or hangs.
 *     It accepts every message the cluster produced.
 *   - the update contract: appended entries follow the store's last entry, committed[]
 *     continues from the last applied index and is in the store, the stored term never
 *     decreases, and nothing is pending right after a take.
 *   - until a forged message is accepted: one leader per term (§5.2) and one term
 *     applied per index (§5.4.3).
 *
 * Forging boundary. The syntax of a forged message is arbitrary: its type (0 and > 13
 * too), its ids (0, self, absent, UINT32_MAX, any), its term, index fields near the
 * receiver's own values or at the edges of uint64, counts with NULL arrays, lengths
 * with NULL bytes, entry types, CONFIG payloads that do not decode, snapshot
 * offset/length/total triples, and configs with too many, zero or duplicate ids.
 *
 * Raft, however, trusts its members. A well-formed lie in a member's name is Byzantine.
 * For example, an AppendEntries "from node 2" in the term node 2 really leads makes
 * node 1 ack entries that node 2 never sent, and node 2 then trips
 * CC_ASSERT(r->has_snap) in send_append(). So forge_tame() draws the line:
 *   - VOTE, VOTE_RESP, APPEND, APPEND_RESP, HEARTBEAT, SNAPSHOT and SNAPSHOT_RESP claim
 *     something about the sender's log, vote or leadership. In the receiver's term or a
 *     later one they come from an outsider (7..9). With a stale term a member may send
 *     them, because the core must discard them.
 *   - The claim-free types (PREVOTE[_RESP], HEARTBEAT_RESP, TIMEOUT_NOW,
 *     READ_INDEX[_RESP]) may come from anyone.
 *   - Forged configs name only ids 0..6, so an outsider never becomes a member.
 * An outsider may still act as a leader in any term, even as a second leader of the
 * current one. The core must survive that.
 *
 * Core findings. While FZ_AVOID_KNOWN is 1 the forger steps around them. Build with
 * EXTRA_CFLAGS=-DFZ_AVOID_KNOWN=0 and the seeds corpus/fuzz_raft_step/known_<n>_* hit
 * them again.
 *   1. raft_step() accepts term UINT64_MAX. The next campaign's term++ wraps to 0.
 *   2. raft_msg_copy() of an empty snapshot chunk leaves bytes NULL, and
 *      handle_snapshot() passes it to memcpy(): UB on an honest message.
 *      raft_new() and raft_snapshot_taken() do the same with NULL, 0.
 *   3. raft_step() accepts a snapshot at index UINT64_MAX. first_index wraps to 0, and
 *      the update never drains.
 *   4. handle_snapshot() mallocs n_total (up to 4 GiB) on the first chunk.
 *
 * Sections: limits | input | store | network | update | forge | ops | entry point.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "raft/raft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ==== limits ============================================================== */

#define FZ_NODES             3
#define FZ_MEMBER_IDS        6    /* configs name ids 1..6: nodes 1..3 and phantoms 4..6 */
#define FZ_OPS_MAX           2000 /* script ops per input: bounds the time of one run */
#define FZ_QUEUE_MAX         1000 /* messages in flight; more are lost, as on a real network */
#define FZ_HELD_MAX          256  /* msgs_after_persist awaiting raft_persisted(), per node */
#define FZ_TICKS_PER_OP      8    /* ticks per node in one OP_TICK */
#define FZ_DELIVER_PER_OP    32   /* messages one OP_DELIVER hands out */
#define FZ_PAYLOAD_MAX       64   /* proposal, snapshot and forged payload bytes */
#define FZ_FORGE_ENTRIES_MAX 4    /* entries in a forged AppendEntries */
#define FZ_SYNC_ROUNDS       8    /* take/persist rounds per call in auto-persist mode */
#define FZ_TERMS_MAX         4096 /* terms whose leader is remembered (Election Safety) */
#define FZ_INDEX_MAX         8192 /* indexes whose applied term is remembered */

#ifndef FZ_AVOID_KNOWN
#define FZ_AVOID_KNOWN 1
#endif
#define FZ_TERM_SANE       (UINT64_MAX / 2) /* finding 1 */
#define FZ_INDEX_SANE      (UINT64_MAX / 2) /* finding 3 */
#define FZ_SNAP_TOTAL_SANE (1u << 20)       /* finding 4 */

_Static_assert(FZ_PAYLOAD_MAX >= RAFT_CONFIG_BYTES_MAX, "a forged CONFIG entry must fit");
_Static_assert(FZ_NODES <= FZ_MEMBER_IDS && FZ_MEMBER_IDS <= RAFT_SERVERS_MAX,
               "every member id fits one config");

/* ==== input =============================================================== */

struct in {
    const uint8_t *p;
    size_t n, pos;
};

static uint8_t in_u8(struct in *in)
{
    return in->pos < in->n ? in->p[in->pos++] : 0;
}

static uint64_t in_u64(struct in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)in_u8(in) << (8 * i);
    return v;
}

/* ==== store (one node's disk) ============================================= */

struct store {
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot snap; /* bytes owned, never NULL */
    struct raft_entry *ents;   /* contiguous indexes; bytes owned */
    uint64_t n_ents, cap_ents;
};

static uint64_t store_last_index(const struct store *s)
{
    return s->n_ents ? s->ents[s->n_ents - 1].index : (s->has_snap ? s->snap.index : 0);
}

static uint64_t store_last_term(const struct store *s)
{
    return s->n_ents ? s->ents[s->n_ents - 1].term : (s->has_snap ? s->snap.term : 0);
}

static uint64_t store_term_at(const struct store *s, uint64_t index)
{
    if (s->n_ents > 0 && index >= s->ents[0].index && index <= store_last_index(s))
        return s->ents[index - s->ents[0].index].term;
    return s->has_snap && s->snap.index == index ? s->snap.term : 0;
}

/* Deletes the stored entries with index >= from. */
static void store_truncate(struct store *s, uint64_t from)
{
    while (s->n_ents > 0 && s->ents[s->n_ents - 1].index >= from)
        free(s->ents[--s->n_ents].bytes);
}

static void store_append(struct store *s, const struct raft_entry *e)
{
    CC_ASSERT(e->index == store_last_index(s) + 1); /* the log stays contiguous */
    CC_ASSERT(e->term >= store_last_term(s));       /* and its terms never decrease */
    if (s->n_ents == s->cap_ents) {
        s->cap_ents = s->cap_ents ? 2 * s->cap_ents : 64;
        s->ents = realloc(s->ents, s->cap_ents * sizeof(*s->ents));
        CC_ASSERT(s->ents != NULL);
    }
    struct raft_entry *d = &s->ents[s->n_ents++];
    *d = *e;
    d->bytes = malloc(e->n_bytes + 1);
    CC_ASSERT(d->bytes != NULL);
    if (e->n_bytes > 0) /* a NOOP's bytes are NULL */
        memcpy(d->bytes, e->bytes, e->n_bytes);
}

/* Stores a snapshot and drops the entries it covers. */
static void store_set_snap(struct store *s, const struct raft_snapshot *snap)
{
    free(s->snap.bytes);
    s->has_snap = true;
    s->snap = *snap;
    s->snap.bytes = malloc(snap->n_bytes + 1); /* not NULL: see finding 2 */
    CC_ASSERT(s->snap.bytes != NULL);
    memcpy(s->snap.bytes, snap->bytes, snap->n_bytes);
    uint64_t drop = 0;
    while (drop < s->n_ents && s->ents[drop].index <= snap->index)
        free(s->ents[drop++].bytes);
    memmove(s->ents, s->ents + drop, (s->n_ents - drop) * sizeof(*s->ents));
    s->n_ents -= drop;
}

/* ==== network ============================================================= */

struct msgq {
    struct raft_msg m[FZ_QUEUE_MAX]; /* deep copies, freed with raft_msg_free_copy() */
    uint32_t n, cap;
};

/* Copies m in. Only nodes 1..3 exist, and a full queue loses the message. */
static void msgq_push(struct msgq *q, const struct raft_msg *m)
{
    if (m->to < 1 || m->to > FZ_NODES || q->n == q->cap)
        return;
    CC_ASSERT(raft_msg_copy(&q->m[q->n], m) == 0);
    q->n++;
}

/* Moves message i out of the queue. The caller frees it. */
static struct raft_msg msgq_take(struct msgq *q, uint32_t i)
{
    struct raft_msg m = q->m[i];
    memmove(q->m + i, q->m + i + 1, (q->n - i - 1) * sizeof(*q->m));
    q->n--;
    return m;
}

static void msgq_clear(struct msgq *q)
{
    for (uint32_t i = 0; i < q->n; i++)
        raft_msg_free_copy(&q->m[i]);
    q->n = 0;
}

/* ==== update ============================================================== */

struct node {
    uint32_t id;
    struct raft *r;
    struct store st;
    struct msgq held; /* msgs_after_persist, sent once the store is reported durable */
    uint64_t applied; /* last index our (imaginary) state machine applied */
};

struct fz {
    struct node nodes[FZ_NODES];
    struct msgq net;
    struct raft_options o; /* template; id and seed vary per node */
    bool auto_persist;     /* report every write durable at once */
    bool forged;           /* a forged message was accepted: cluster safety may break */
    uint32_t leader_of[FZ_TERMS_MAX];
    uint64_t applied_term[FZ_INDEX_MAX]; /* term first applied at an index, 0 = none */
    uint64_t next_read_id;
};

static void check_applied(struct fz *f, uint64_t index, uint64_t term)
{
    if (f->forged || index >= FZ_INDEX_MAX)
        return;
    if (f->applied_term[index] == 0)
        f->applied_term[index] = term;
    CC_ASSERT(f->applied_term[index] == term); /* §5.4.3 State Machine Safety */
}

static void handle_update(struct fz *f, struct node *n, const struct raft_update *u)
{
    if (u->snapshot) /* 1. persist, in order */
        store_set_snap(&n->st, u->snapshot);
    if (u->truncate_from != 0)
        store_truncate(&n->st, u->truncate_from);
    for (uint32_t i = 0; i < u->n_entries; i++)
        store_append(&n->st, &u->entries[i]);
    if (u->hard_state_changed) {
        CC_ASSERT(u->hard_state.term >= n->st.hs.term); /* §5.1: terms only grow */
        n->st.hs = u->hard_state;
    }
    for (uint32_t i = 0; i < u->n_msgs_now; i++) /* 2. and 3. */
        msgq_push(&f->net, &u->msgs_now[i]);
    for (uint32_t i = 0; i < u->n_msgs_after_persist; i++)
        msgq_push(&n->held, &u->msgs_after_persist[i]);
    if (u->snapshot) { /* 4. apply */
        n->applied = u->snapshot->index;
        check_applied(f, u->snapshot->index, u->snapshot->term);
    }
    for (uint32_t i = 0; i < u->n_committed; i++) {
        const struct raft_entry *e = &u->committed[i];
        CC_ASSERT(e->index == n->applied + 1);                 /* in order, no gaps */
        CC_ASSERT(store_term_at(&n->st, e->index) == e->term); /* durable here */
        n->applied = e->index;
        check_applied(f, e->index, e->term);
    }
    for (uint32_t i = 0; i < u->n_reads && !f->forged; i++) { /* 5. reads */
        int status = u->reads[i].status;
        CC_ASSERT(status == 0 || status == RAFT_ENOTLEADER || status == RAFT_ESTEPPEDDOWN ||
                  status == RAFT_EFULL);
        CC_ASSERT(status != 0 || u->reads[i].index >= 1);
    }
}

/* "The store is durable": report its last entry, then send the held messages. */
static void persist_and_release(struct fz *f, struct node *n)
{
    raft_persisted(n->r, store_last_index(&n->st), store_last_term(&n->st));
    for (uint32_t i = 0; i < n->held.n; i++)
        msgq_push(&f->net, &n->held.m[i]);
    msgq_clear(&n->held);
}

/* Takes and handles n's update. It must follow every call into n's core. */
static void node_sync(struct fz *f, struct node *n)
{
    for (uint32_t round = 0; round < FZ_SYNC_ROUNDS; round++) {
        struct raft_update u;
        raft_update_take(n->r, &u);
        bool wrote = u.snapshot || u.truncate_from || u.n_entries || u.hard_state_changed;
        handle_update(f, n, &u);
        CC_ASSERT(!raft_update_pending(n->r));
        uint64_t term = raft_term(n->r);
        if (raft_role(n->r) == RAFT_LEADER && term < FZ_TERMS_MAX && !f->forged) {
            if (f->leader_of[term] == 0)
                f->leader_of[term] = n->id;
            CC_ASSERT(f->leader_of[term] == n->id); /* §5.2 Election Safety */
        }
        if (!f->auto_persist || (!wrote && n->held.n == 0) || round + 1 == FZ_SYNC_ROUNDS)
            return;
        persist_and_release(f, n);
    }
}

/* Starts (or restarts) n from its store. */
static void node_start(struct fz *f, struct node *n)
{
    struct raft_options o = f->o;
    o.id = n->id;
    o.random_seed = f->o.random_seed * 31 + n->id;
    struct raft_recovered rec = {.hard_state = n->st.hs,
                                 .snapshot = n->st.has_snap ? &n->st.snap : NULL,
                                 .entries = n->st.ents,
                                 .n_entries = n->st.n_ents};
    CC_ASSERT(raft_new(&o, &rec, &n->r) == 0);
    n->applied = n->st.has_snap ? n->st.snap.index : 0;
    node_sync(f, n);
}

/* ==== forge =============================================================== */

/* A forged message and the buffers it points into. */
struct forge {
    struct raft_msg m;
    struct raft_entry ents[FZ_FORGE_ENTRIES_MAX];
    uint8_t bytes[FZ_FORGE_ENTRIES_MAX + 1][FZ_PAYLOAD_MAX];
};

/* A 64-bit field. Byte 0 (what a short input reads) gives base, the value an honest
 * peer would most likely send. The other codes move away from it or to the edges. */
static uint64_t forge_u64(struct in *in, uint64_t base)
{
    uint8_t b = in_u8(in);
    uint64_t k = b >> 3, down = base < k % 4 + 1 ? base : k % 4 + 1;
    uint64_t pick[7] = {base, base, base + 1 + k % 4, base - down, k, 0, UINT64_MAX - k};
    return (b & 7) == 7 ? in_u64(in) : pick[b & 7];
}

/* A node id: mostly another node of the cluster, else self, 0, absent or anything. */
static uint32_t forge_id(struct in *in, uint32_t self)
{
    uint8_t b = in_u8(in);
    uint32_t peer = 1 + (self + (b & 1)) % FZ_NODES; /* the two other nodes */
    uint32_t pick[8] = {peer, peer, peer, peer, self, 0, 4 + (b >> 3) % 6, UINT32_MAX};
    return (b & 15) == 15 ? (uint32_t)in_u64(in) : pick[b & 7];
}

/* Up to 2 servers beyond the limit. Ids are 0..FZ_MEMBER_IDS, roles 0..3. */
static void forge_config(struct in *in, struct raft_config *c)
{
    c->n_servers = in_u8(in) % (RAFT_SERVERS_MAX + 3);
    for (uint32_t i = 0; i < c->n_servers && i < RAFT_SERVERS_MAX; i++) {
        uint8_t b = in_u8(in);
        c->servers[i] = (struct raft_server){b % (FZ_MEMBER_IDS + 1), (uint8_t)(b >> 4) % 4};
    }
}

/* Fills buf and returns its length: raw input, or an encoded config if one is asked
 * for and encodes. */
static uint32_t forge_bytes(struct in *in, uint8_t *buf, bool config)
{
    struct raft_config c;
    size_t n = 0;
    if (config && (in_u8(in) & 1)) {
        forge_config(in, &c);
        if (raft_config_encode(&c, buf, FZ_PAYLOAD_MAX, &n) == 0)
            return (uint32_t)n;
    }
    n = in_u8(in) % (FZ_PAYLOAD_MAX + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = in_u8(in);
    return (uint32_t)n;
}

static void forge_append(struct in *in, struct forge *fg, const struct raft *r, uint8_t flags)
{
    struct raft_msg_append *a = &fg->m.append;
    a->prev_index = forge_u64(in, (flags & 4) ? raft_commit(r) : raft_last_index(r));
    a->prev_term = forge_u64(in, raft_term_at(r, a->prev_index));
    a->commit = forge_u64(in, raft_commit(r));
    a->n_entries = in_u8(in) % (FZ_FORGE_ENTRIES_MAX + 1);
    a->entries = (flags & 0xF8) == 0xF8 ? NULL : fg->ents;
    uint64_t term = a->prev_term;
    for (uint32_t i = 0; a->entries && i < a->n_entries; i++) {
        struct raft_entry *e = &fg->ents[i];
        uint8_t b = in_u8(in);
        e->index = (b & 1) ? forge_u64(in, a->prev_index + 1 + i) : a->prev_index + 1 + i;
        term = (b & 2) ? forge_u64(in, term) : term + ((b & 4) && term < fg->m.term);
        e->term = term;
        e->type = (b & 8) ? b >> 4 : 1 + (b >> 4) % 3;
        e->n_bytes = forge_bytes(in, fg->bytes[i], e->type == RAFT_ENTRY_CONFIG);
        e->bytes = e->n_bytes > 0 && (b & 0xF0) == 0xF0 ? NULL : fg->bytes[i];
    }
}

/* Builds an arbitrary message to node `to`, whose core is r. */
static void forge_msg(struct in *in, struct forge *fg, const struct raft *r, uint32_t to)
{
    struct raft_msg *m = &fg->m;
    uint8_t flags = in_u8(in), t = in_u8(in) % 16;
    m->type = t < RAFT_MSG_TYPE_MAX ? t + 1 : (t == RAFT_MSG_TYPE_MAX ? 0 : t); /* 3/16 bad */
    m->from = forge_id(in, to);
    m->to = (flags & 0x83) == 0x83 ? forge_id(in, to) : to;
    m->term = forge_u64(in, raft_term(r));
    uint64_t last = raft_last_index(r);
    const struct raft_snapshot *snap = raft_snapshot(r);
    struct raft_msg_snapshot *s = &m->snapshot;
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        m->vote.last_log_index = forge_u64(in, last);
        m->vote.last_log_term = forge_u64(in, raft_last_term(r));
        m->vote.transfer = flags & 4;
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        m->vote_resp.granted = flags & 4;
        break;
    case RAFT_MSG_APPEND:
        forge_append(in, fg, r, flags);
        break;
    case RAFT_MSG_APPEND_RESP:
        m->append_resp.reject = flags & 4;
        m->append_resp.index = forge_u64(in, last);
        m->append_resp.hint_index = forge_u64(in, last);
        m->append_resp.hint_term = forge_u64(in, raft_last_term(r));
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        m->heartbeat.commit = forge_u64(in, raft_commit(r));
        m->heartbeat.round = forge_u64(in, 1);
        break;
    case RAFT_MSG_SNAPSHOT:
        s->index = forge_u64(in, last);
        s->term = forge_u64(in, m->term);
        forge_config(in, &s->config);
        s->n_bytes = forge_bytes(in, fg->bytes[FZ_FORGE_ENTRIES_MAX], false);
        s->bytes =
            s->n_bytes > 0 && (flags & 0xF8) == 0xF8 ? NULL : fg->bytes[FZ_FORGE_ENTRIES_MAX];
        s->offset = (flags & 4) ? forge_u64(in, 0) : 0;
        s->n_total = s->offset + s->n_bytes;
        s->n_total = (flags & 8) ? forge_u64(in, s->n_total) : s->n_total;
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        m->snapshot_resp.index = forge_u64(in, snap ? snap->index : last);
        m->snapshot_resp.offset = forge_u64(in, 0);
        m->snapshot_resp.done = flags & 4;
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        m->read.read_id = in_u8(in);
        m->read.index = forge_u64(in, raft_commit(r));
        m->read.status = (int32_t)in_u64(in);
        break;
    default:
        break; /* TIMEOUT_NOW has no body; bad types get a bare header */
    }
}

/* Types whose acceptance takes the sender's word about its log, vote or leadership. */
#define FZ_MEMBER_CLAIMS                                                               \
    (1u << RAFT_MSG_VOTE | 1u << RAFT_MSG_VOTE_RESP | 1u << RAFT_MSG_APPEND |          \
     1u << RAFT_MSG_APPEND_RESP | 1u << RAFT_MSG_HEARTBEAT | 1u << RAFT_MSG_SNAPSHOT | \
     1u << RAFT_MSG_SNAPSHOT_RESP)

/* The forging boundary (see the top of the file). */
static void forge_tame(struct raft_msg *m, const struct raft *r)
{
    bool claim = m->type < 32 && (FZ_MEMBER_CLAIMS >> m->type & 1);
    if (claim && m->from >= 1 && m->from <= FZ_MEMBER_IDS && m->term >= raft_term(r))
        m->from = FZ_MEMBER_IDS + 1 + m->from % 3; /* an outsider says it */
#if FZ_AVOID_KNOWN
    m->term = m->term > FZ_TERM_SANE ? FZ_TERM_SANE : m->term;
    if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.index > FZ_INDEX_SANE)
        m->snapshot.index = FZ_INDEX_SANE;
    if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.n_total > FZ_SNAP_TOTAL_SANE)
        m->snapshot.n_total = FZ_SNAP_TOTAL_SANE;
#endif
}

/* ==== ops ================================================================= */

/* Each op is an opcode byte, an argument byte a, and its operands. */
enum {
    OP_TICK,       /* a: bits 0-1 node (3 = all), bits 4-6 ticks - 1 */
    OP_DELIVER,    /* a: the oldest a % 32 + 1 messages */
    OP_DELIVER_AT, /* a and one more byte: a queue position (reordering) */
    OP_DROP,       /* a queue position, as OP_DELIVER_AT */
    OP_DUP,        /* a queue position, as OP_DELIVER_AT */
    OP_PROPOSE,    /* a: node; payload */
    OP_READ,       /* a: node */
    OP_PERSIST,    /* a: node */
    OP_SNAPSHOT,   /* a: node; payload */
    OP_CHANGE,     /* a: node; byte: bits 0-2 op (0 and 5 invalid), bits 3-5 id - 1 */
    OP_TRANSFER,   /* a: bits 0-1 node, bits 2-4 target */
    OP_RESTART,    /* a: node */
    OP_FORGE,      /* a: node; a message. Four opcodes: the point of this target */
    OP_COUNT = OP_FORGE + 4,
};

static void deliver(struct fz *f, uint32_t i)
{
    struct raft_msg m = msgq_take(&f->net, i);
    struct node *n = &f->nodes[m.to - 1];
    struct raft_msg sent = m;
#if FZ_AVOID_KNOWN
    static uint8_t empty; /* finding 2 */
    if (sent.type == RAFT_MSG_SNAPSHOT && sent.snapshot.bytes == NULL)
        sent.snapshot.bytes = &empty;
#endif
    int rv = raft_step(n->r, &sent);
    CC_ASSERT(rv == 0 || f->forged); /* the cluster's own messages are well formed */
    raft_msg_free_copy(&m);
    node_sync(f, n);
}

static void run_op(struct fz *f, struct in *in)
{
    uint8_t op = in_u8(in) % OP_COUNT, a = in_u8(in);
    struct node *n = &f->nodes[a % FZ_NODES];
    uint8_t payload[FZ_PAYLOAD_MAX];
    uint64_t index = 0;
    int rv = 0;
    switch (op) {
    case OP_TICK:
        for (uint32_t t = 0; t <= (uint32_t)(a >> 4) % FZ_TICKS_PER_OP; t++) {
            for (uint32_t k = 0; k < FZ_NODES; k++) {
                if ((a & 3) == 3 || (a & 3) == k) {
                    raft_tick(f->nodes[k].r);
                    node_sync(f, &f->nodes[k]);
                }
            }
        }
        return;
    case OP_DELIVER:
        for (uint32_t k = 0; k <= a % FZ_DELIVER_PER_OP && f->net.n > 0; k++)
            deliver(f, 0);
        return;
    case OP_DELIVER_AT:
    case OP_DROP:
    case OP_DUP: {
        uint32_t pos = a | (uint32_t)in_u8(in) << 8;
        if (f->net.n == 0)
            return;
        pos %= f->net.n;
        if (op == OP_DELIVER_AT) {
            deliver(f, pos);
        } else if (op == OP_DUP) {
            msgq_push(&f->net, &f->net.m[pos]);
        } else {
            struct raft_msg m = msgq_take(&f->net, pos);
            raft_msg_free_copy(&m);
        }
        return;
    }
    case OP_PROPOSE:
        rv = raft_propose(n->r, payload, forge_bytes(in, payload, false), &index);
        CC_ASSERT(rv == 0 || rv == RAFT_ENOTLEADER || rv == RAFT_EBUSY || rv == RAFT_EFULL);
        break;
    case OP_READ:
        rv = raft_read_index(n->r, ++f->next_read_id);
        CC_ASSERT(rv == 0 || rv == RAFT_EFULL);
        break;
    case OP_PERSIST:
        persist_and_release(f, n);
        break;
    case OP_SNAPSHOT:
        rv = raft_snapshot_taken(n->r, n->applied, payload, forge_bytes(in, payload, false));
        CC_ASSERT(rv == 0 || rv == RAFT_EINVAL);
        if (rv == 0) /* the host keeps its own snapshot */
            store_set_snap(&n->st, raft_snapshot(n->r));
        break;
    case OP_CHANGE: {
        uint8_t b = in_u8(in);
        rv = raft_change(n->r, (enum raft_change_op)(b % 6), 1 + (b >> 3) % FZ_MEMBER_IDS, &index);
        CC_ASSERT(rv <= 0 && rv != RAFT_ENOMEM);
        break;
    }
    case OP_TRANSFER:
        rv = raft_transfer(n->r, (uint32_t)(a >> 2) % 8);
        CC_ASSERT(rv == 0 || rv == RAFT_ENOTLEADER || rv == RAFT_ECONFIG || rv == RAFT_EBUSY);
        break;
    case OP_RESTART: /* a crash: the process and its held messages are gone */
        raft_free(n->r);
        msgq_clear(&n->held);
        node_start(f, n);
        return;
    default: { /* OP_FORGE */
        struct forge fg;
        memset(&fg, 0, sizeof(fg));
        forge_msg(in, &fg, n->r, n->id);
        forge_tame(&fg.m, n->r);
        rv = raft_step(n->r, &fg.m);
        CC_ASSERT(rv == 0 || rv == RAFT_EINVAL);
        f->forged |= rv == 0;
        break;
    }
    }
    node_sync(f, n);
}

/* ==== entry point ========================================================= */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size, 0};
    struct fz *f = calloc(1, sizeof(*f));
    CC_ASSERT(f != NULL);
    uint8_t opt = in_u8(&in);
    raft_options_default(&f->o, 1, opt);
    f->o.prevote = opt & 1;
    f->o.check_quorum = opt & 2;
    f->o.lease_read = opt & 4;
    f->auto_persist = opt & 8;
    f->o.election_ticks = 3 + (opt >> 4) % 4;
    f->o.lease_drift_ticks = 1;
    f->o.snapshot_chunk_bytes = 8; /* several chunks per snapshot */
    f->o.trailing_entries = 2;     /* compaction soon forces InstallSnapshot */

    struct raft_config c = {.n_servers = FZ_NODES};
    for (uint32_t i = 0; i < FZ_NODES; i++)
        c.servers[i] = (struct raft_server){i + 1, RAFT_VOTER};
    uint8_t boot_buf[RAFT_CONFIG_BYTES_MAX];
    struct raft_entry boot;
    CC_ASSERT(raft_bootstrap_entry(&c, boot_buf, sizeof(boot_buf), &boot) == 0);

    f->net.cap = FZ_QUEUE_MAX;
    for (uint32_t i = 0; i < FZ_NODES; i++) {
        struct node *n = &f->nodes[i];
        n->id = i + 1;
        n->held.cap = FZ_HELD_MAX;
        store_append(&n->st, &boot);
        node_start(f, n);
    }
    for (uint32_t op = 0; op < FZ_OPS_MAX && in.pos < in.n; op++)
        run_op(f, &in);

    for (uint32_t i = 0; i < FZ_NODES; i++) {
        struct node *n = &f->nodes[i];
        raft_free(n->r);
        msgq_clear(&n->held);
        store_truncate(&n->st, 0);
        free(n->st.ents);
        free(n->st.snap.bytes);
    }
    msgq_clear(&f->net);
    free(f);
    return 0;
}
