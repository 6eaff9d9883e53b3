/* raft.c -- the pure Raft consensus core (see raft.h for the host contract).
 *
 * Invariants kept by this file (checked with CC_ASSERT, on in release):
 *   - first_index <= snap.index + 1 and last_index = first_index + n_ents - 1;
 *     when the log is empty last_index == snap.index.
 *   - applied <= commit <= last_index; entries <= commit are never truncated.
 *   - a leader never removes or rewrites an entry of its own log.
 *   - messages are queued with index ranges, not pointers; raft_update_take()
 *     resolves them against the log and drops any whose range has changed, so
 *     a truncation inside one batch can never send a stale entry.
 *
 * Deliberate bugs for the simulator's mutant runs sit behind RAFT_MUTANT_*
 * (see the Makefile's MUTANTS list); a normal build compiles none of them.
 *
 * Sections: types | small helpers | config codec | message copy | log |
 * outbox | roles | election | replication | snapshots | reads |
 * membership and transfer | public inputs | update | queries.
 */
#include "raft/raft.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/grow.h"
#include "base/le.h"
#include "base/prng.h"

/* ==== types ============================================================== */

#define RAFT_ROUNDS_RING 64  /* heartbeat rounds whose send tick we remember (lease) */
#define RAFT_SNAPSHOT_BYTES_MAX (1ull << 32) /* bounds a follower's receive buffer */
#define RAFT_TERM_MAX (UINT64_MAX / 2)  /* terms and indexes above this are forged: */
#define RAFT_INDEX_MAX (UINT64_MAX / 2) /* they could wrap on increment */
#define RAFT_HB_STALL_MAX 3  /* heartbeat acks without progress before re-probing */
#define RAFT_PROMOTE_LAG_MAX RAFT_APPEND_ENTRIES_MAX /* learner lag allowed at promotion */

struct progress {
    uint32_t id;     /* 0 = slot unused */
    uint8_t state;   /* enum raft_progress_state */
    uint64_t match;
    uint64_t next;
    bool probe_sent;        /* PROBE: one append outstanding, wait for its answer */
    uint64_t heard_tick;    /* r->now when it last answered us (CheckQuorum) */
    uint64_t round_acked;   /* highest heartbeat round acknowledged this term */
    uint64_t bcast_acked;   /* newest broadcast round (to every peer) it acknowledged */
    uint32_t bcast_rank;    /* 1 = first to acknowledge bcast_acked, 2 = second... */
    uint32_t hb_stalls;     /* REPLICATE: heartbeat acks while match stood still */
    uint64_t hb_match;      /* match at the previous heartbeat ack */
    uint64_t inflight[RAFT_INFLIGHT_MAX]; /* last index of each unacked append */
    uint32_t inflight_head, n_inflight;
    uint64_t snap_index;    /* SNAPSHOTTING: which snapshot and how far */
    uint64_t snap_offset;
    uint64_t snap_sent_tick;
};

struct read_req {
    uint64_t read_id;
    uint32_t from;      /* 0 = this node's host, else the follower that forwarded it */
    uint64_t index;     /* 0 until the leader has committed in its term */
    uint64_t round;     /* heartbeat round that must be acknowledged */
};

struct outmsg {
    struct raft_msg m;       /* entries/bytes pointers are left NULL until take */
    uint64_t ent_last_term;  /* APPEND: term of the last entry, to detect rewrites */
};

struct outbox {
    struct outmsg *q;
    uint32_t n, cap;
    struct raft_msg *pub; /* resolved at take */
    uint32_t n_pub, cap_pub;
};

struct snap_recv {
    uint64_t index, term;
    struct raft_config config;
    uint64_t n_total, received, cap;
    uint8_t *buf;
};

struct raft {
    struct raft_options o;
    struct prng prng;
    uint64_t now;             /* ticks since start */

    /* persistent state */
    uint64_t term;
    uint32_t vote;
    struct raft_hard_state hs_emitted;

    /* log */
    struct raft_entry *ents;
    uint64_t n_ents, cap_ents;
    uint64_t first_index;
    bool has_snap;
    struct raft_snapshot snap;
    uint64_t commit, applied, persisted;
    uint64_t unstable_from;   /* first index not yet handed to the host */
    uint64_t pending_truncate;
    bool snap_install_pending;

    /* configuration (latest appended) */
    struct raft_config config;
    uint64_t config_index;

    /* volatile role state */
    int role;
    uint32_t leader;
    uint32_t election_elapsed;
    uint32_t election_timeout; /* randomized in [T, 2T) */
    uint32_t heartbeat_elapsed;
    uint32_t granted[RAFT_SERVERS_MAX], n_granted;
    uint32_t rejected[RAFT_SERVERS_MAX], n_rejected;

    /* leader state */
    struct progress prs[RAFT_SERVERS_MAX];
    uint64_t term_start_index; /* index of this leader's no-op */
    bool bcast_pending;        /* new entries to replicate at take */
    bool commit_bcast_pending; /* new commit index to announce at take */
    uint32_t transfer_target;
    uint32_t transfer_elapsed;
    uint64_t round;            /* heartbeat rounds started this term */
    uint64_t round_flushed;    /* newest round whose heartbeats left in an update */
    uint64_t bcast_round;      /* newest round sent to every peer (periodic heartbeat) */
    uint32_t bcast_acks;       /* acknowledgements of bcast_round so far (ranks them) */
    uint64_t round_tick[RAFT_ROUNDS_RING];
    struct read_req *reads;
    uint32_t n_reads, cap_reads;

    struct snap_recv recv;

    /* outputs */
    struct outbox now_box, after_box;
    struct raft_read_ready *ready;
    uint32_t n_ready, cap_ready;
};

/* ==== small helpers ======================================================= */

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }


const char *raft_strerror(int rv)
{
    switch (rv) {
    case 0: return "ok";
    case RAFT_ENOTLEADER: return "not the leader";
    case RAFT_EBUSY: return "leader transfer or membership change in progress";
    case RAFT_EFULL: return "queue limit reached";
    case RAFT_ETOOBIG: return "entry exceeds RAFT_ENTRY_BYTES_MAX";
    case RAFT_EINVAL: return "invalid argument or malformed message";
    case RAFT_ENOMEM: return "out of memory";
    case RAFT_ECONFIG: return "membership change not valid for the current configuration";
    case RAFT_ENOTREADY: return "leader has not committed an entry in its term yet";
    case RAFT_ECATCHUP: return "learner is too far behind to be promoted";
    case RAFT_ESTEPPEDDOWN: return "leadership lost before the read was confirmed";
    default: return "unknown raft error";
    }
}

const char *raft_msg_type_name(int type)
{
    static const char *names[] = {
        "?", "PREVOTE", "PREVOTE_RESP", "VOTE", "VOTE_RESP", "APPEND", "APPEND_RESP",
        "HEARTBEAT", "HEARTBEAT_RESP", "SNAPSHOT", "SNAPSHOT_RESP", "TIMEOUT_NOW",
        "READ_INDEX", "READ_INDEX_RESP",
    };
    if (type < 1 || type > RAFT_MSG_TYPE_MAX)
        return "?";
    return names[type];
}

const char *raft_role_name(int role)
{
    switch (role) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRECANDIDATE: return "precandidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    default: return "?";
    }
}

/* ==== config codec ======================================================= */
/* Layout: u32 n_servers, then per server u32 id + u8 role, little endian. */


int raft_config_role(const struct raft_config *c, uint32_t id)
{
    for (uint32_t i = 0; i < c->n_servers; i++)
        if (c->servers[i].id == id)
            return c->servers[i].role;
    return 0;
}

uint32_t raft_config_n_voters(const struct raft_config *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_servers; i++)
        n += c->servers[i].role == RAFT_VOTER;
    return n;
}

static bool config_valid(const struct raft_config *c)
{
    if (c->n_servers > RAFT_SERVERS_MAX)
        return false;
    for (uint32_t i = 0; i < c->n_servers; i++) {
        if (c->servers[i].id == 0)
            return false;
        if (c->servers[i].role != RAFT_VOTER && c->servers[i].role != RAFT_LEARNER)
            return false;
        for (uint32_t j = 0; j < i; j++)
            if (c->servers[j].id == c->servers[i].id)
                return false;
    }
    return true;
}

int raft_config_encode(const struct raft_config *c, uint8_t *buf, size_t cap, size_t *n_out)
{
    if (!config_valid(c))
        return RAFT_EINVAL;
    size_t n = 4 + (size_t)c->n_servers * 5;
    if (n > cap)
        return RAFT_EINVAL;
    le_put_u32(buf, c->n_servers);
    for (uint32_t i = 0; i < c->n_servers; i++) {
        le_put_u32(buf + 4 + (size_t)i * 5, c->servers[i].id);
        buf[4 + (size_t)i * 5 + 4] = c->servers[i].role;
    }
    *n_out = n;
    return 0;
}

int raft_config_decode(struct raft_config *c, const uint8_t *buf, size_t n)
{
    if (n < 4)
        return RAFT_EINVAL;
    uint32_t k = le_get_u32(buf);
    if (k > RAFT_SERVERS_MAX || n != 4 + (size_t)k * 5)
        return RAFT_EINVAL;
    c->n_servers = k;
    for (uint32_t i = 0; i < k; i++) {
        c->servers[i].id = le_get_u32(buf + 4 + (size_t)i * 5);
        c->servers[i].role = buf[4 + (size_t)i * 5 + 4];
    }
    return config_valid(c) ? 0 : RAFT_EINVAL;
}

int raft_bootstrap_entry(const struct raft_config *c, uint8_t *buf, size_t cap,
                         struct raft_entry *out)
{
    size_t n = 0;
    int rv = raft_config_encode(c, buf, cap, &n);
    if (rv != 0)
        return rv;
    if (raft_config_n_voters(c) == 0)
        return RAFT_EINVAL;
    out->term = 1;
    out->index = 1;
    out->type = RAFT_ENTRY_CONFIG;
    out->n_bytes = (uint32_t)n;
    out->bytes = buf;
    return 0;
}

/* ==== message copy ======================================================= */

int raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    if ((src->type == RAFT_MSG_APPEND && src->append.n_entries > 0 && !src->append.entries) ||
        (src->type == RAFT_MSG_SNAPSHOT && src->snapshot.n_bytes > 0 && !src->snapshot.bytes)) {
        if (src->type == RAFT_MSG_APPEND) {
            dst->append.entries = NULL;
            dst->append.n_entries = 0;
        } else {
            dst->snapshot.bytes = NULL;
            dst->snapshot.n_bytes = 0;
        }
        return RAFT_EINVAL;
    }
    if (src->type == RAFT_MSG_APPEND) {
        dst->append.entries = NULL;
        uint32_t n = src->append.n_entries;
        if (n == 0)
            return 0;
        struct raft_entry *es = calloc(n, sizeof(*es));
        if (!es)
            return RAFT_ENOMEM;
        for (uint32_t i = 0; i < n; i++) {
            es[i] = src->append.entries[i];
            es[i].bytes = NULL;
            if (es[i].n_bytes == 0)
                continue;
            es[i].bytes = malloc(es[i].n_bytes);
            if (!es[i].bytes) {
                dst->append.entries = es;
                dst->append.n_entries = i;
                raft_msg_free_copy(dst);
                return RAFT_ENOMEM;
            }
            memcpy(es[i].bytes, src->append.entries[i].bytes, es[i].n_bytes);
        }
        dst->append.entries = es;
    } else if (src->type == RAFT_MSG_SNAPSHOT) {
        dst->snapshot.bytes = NULL;
        if (src->snapshot.n_bytes == 0)
            return 0;
        dst->snapshot.bytes = malloc(src->snapshot.n_bytes);
        if (!dst->snapshot.bytes)
            return RAFT_ENOMEM;
        memcpy(dst->snapshot.bytes, src->snapshot.bytes, src->snapshot.n_bytes);
    }
    return 0;
}

void raft_msg_free_copy(struct raft_msg *m)
{
    if (m->type == RAFT_MSG_APPEND && m->append.entries) {
        for (uint32_t i = 0; i < m->append.n_entries; i++)
            free(m->append.entries[i].bytes);
        free(m->append.entries);
        m->append.entries = NULL;
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        free(m->snapshot.bytes);
        m->snapshot.bytes = NULL;
    }
}

/* ==== log ================================================================= */

static uint64_t last_index(const struct raft *r) { return r->first_index + r->n_ents - 1; }

static uint64_t term_at(const struct raft *r, uint64_t index)
{
    if (index == 0)
        return 0;
    if (index >= r->first_index && index <= last_index(r))
        return r->ents[index - r->first_index].term;
    if (r->has_snap && index == r->snap.index)
        return r->snap.term;
    return 0;
}

static uint64_t last_term(const struct raft *r) { return term_at(r, last_index(r)); }

static struct raft_entry *entry_at(struct raft *r, uint64_t index)
{
    if (index < r->first_index || index > last_index(r))
        return NULL;
    return &r->ents[index - r->first_index];
}

static int log_reserve(struct raft *r, uint64_t extra)
{
    if (r->n_ents + extra <= r->cap_ents)
        return 0;
    uint64_t ncap = r->cap_ents ? r->cap_ents * 2 : 64;
    while (ncap < r->n_ents + extra)
        ncap *= 2;
    struct raft_entry *ne = realloc(r->ents, ncap * sizeof(*ne));
    if (!ne)
        return RAFT_ENOMEM;
    r->ents = ne;
    r->cap_ents = ncap;
    return 0;
}

/* The configuration in force after the log up to index: the latest CONFIG
 * entry at or below it, else the snapshot's. Bounded by the in-memory log. */
static void config_at(const struct raft *r, uint64_t index, struct raft_config *c,
                      uint64_t *c_index)
{
    uint64_t i = min_u64(index, last_index(r));
    for (; i >= r->first_index && i > 0; i--) {
        const struct raft_entry *e = &r->ents[i - r->first_index];
        if (e->type == RAFT_ENTRY_CONFIG && raft_config_decode(c, e->bytes, e->n_bytes) == 0) {
            *c_index = i;
            return;
        }
    }
    if (r->has_snap) {
        *c = r->snap.config;
        *c_index = r->snap.index;
    } else {
        memset(c, 0, sizeof(*c));
        *c_index = 0;
    }
}

static void progress_sync(struct raft *r);

static void config_changed(struct raft *r)
{
    if (r->role == RAFT_LEADER)
        progress_sync(r);
}

/* Appends a copy of e (index must be last+1). A CONFIG entry takes effect at
 * once (thesis §4.1: servers use the latest configuration in their log). */
static int log_append(struct raft *r, const struct raft_entry *e)
{
    CC_ASSERT(e->index == last_index(r) + 1);
    CC_ASSERT(e->term >= last_term(r));
    int rv = log_reserve(r, 1);
    if (rv != 0)
        return rv;
    struct raft_entry *d = &r->ents[r->n_ents];
    *d = *e;
    d->bytes = NULL;
    if (e->n_bytes > 0) {
        d->bytes = malloc(e->n_bytes);
        if (!d->bytes)
            return RAFT_ENOMEM;
        memcpy(d->bytes, e->bytes, e->n_bytes);
    }
    r->n_ents++;
    if (e->type == RAFT_ENTRY_CONFIG) {
        struct raft_config c;
        if (raft_config_decode(&c, e->bytes, e->n_bytes) == 0) {
            r->config = c;
            r->config_index = e->index;
            config_changed(r);
        }
    }
    return 0;
}

/* Deletes entries >= from. Raft §5.3: only uncommitted entries conflict. */
static void log_truncate(struct raft *r, uint64_t from)
{
    CC_ASSERT(from > r->commit);
    CC_ASSERT(from >= r->first_index);
    CC_ASSERT(r->role != RAFT_LEADER);
    for (uint64_t i = from; i <= last_index(r); i++)
        free(r->ents[i - r->first_index].bytes);
    r->n_ents = from - r->first_index;
    if (from < r->unstable_from) {
        r->pending_truncate = r->pending_truncate ? min_u64(r->pending_truncate, from) : from;
        r->unstable_from = from;
    }
    r->persisted = min_u64(r->persisted, from - 1);
    if (r->config_index >= from) {
        config_at(r, last_index(r), &r->config, &r->config_index);
        config_changed(r);
    }
}

/* Drops in-memory entries below keep_from (they are covered by the snapshot). */
static void log_compact(struct raft *r, uint64_t keep_from)
{
    if (keep_from <= r->first_index)
        return;
    CC_ASSERT(keep_from <= r->snap.index + 1);
    uint64_t drop = min_u64(keep_from - r->first_index, r->n_ents);
    for (uint64_t i = 0; i < drop; i++)
        free(r->ents[i].bytes);
    memmove(r->ents, r->ents + drop, (r->n_ents - drop) * sizeof(*r->ents));
    r->n_ents -= drop;
    r->first_index = keep_from;
    r->unstable_from = max_u64(r->unstable_from, keep_from);
}

static void log_free_all(struct raft *r)
{
    for (uint64_t i = 0; i < r->n_ents; i++)
        free(r->ents[i].bytes);
    r->n_ents = 0;
}

/* ==== outbox ============================================================== */

static struct raft_msg *outbox_push(struct outbox *b, uint8_t type, uint32_t to, uint64_t term,
                                    uint32_t from)
{
    if (!cc_grow((void **)&b->q, &b->cap, b->n + 1, sizeof(*b->q)))
        return NULL; /* a dropped message is always safe; the protocol retries */
    struct outmsg *om = &b->q[b->n++];
    memset(om, 0, sizeof(*om));
    om->m.type = type;
    om->m.to = to;
    om->m.from = from;
    om->m.term = term;
    return &om->m;
}

static struct raft_msg *send_now(struct raft *r, uint8_t type, uint32_t to)
{
    return outbox_push(&r->now_box, type, to, r->term, r->o.id);
}

static struct raft_msg *send_after(struct raft *r, uint8_t type, uint32_t to)
{
    return outbox_push(&r->after_box, type, to, r->term, r->o.id);
}

/* Fills b->pub from b->q, binding entry and chunk pointers to current memory. */
static void outbox_resolve(struct raft *r, struct outbox *b)
{
    b->n_pub = 0;
    if (!cc_grow((void **)&b->pub, &b->cap_pub, b->n, sizeof(*b->pub))) {
        b->n = 0;
        return;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        struct outmsg *om = &b->q[i];
        struct raft_msg m = om->m;
        if (m.type == RAFT_MSG_APPEND && m.append.n_entries > 0) {
            uint64_t lo = m.append.prev_index + 1;
            uint64_t hi = m.append.prev_index + m.append.n_entries;
            if (lo < r->first_index || hi > last_index(r) || term_at(r, hi) != om->ent_last_term)
                continue; /* the log moved under this message; drop it */
            m.append.entries = entry_at(r, lo);
        } else if (m.type == RAFT_MSG_SNAPSHOT) {
            if (!r->has_snap || r->snap.index != m.snapshot.index ||
                m.snapshot.offset + m.snapshot.n_bytes > r->snap.n_bytes)
                continue;
            m.snapshot.bytes = r->snap.bytes + m.snapshot.offset;
        }
        b->pub[b->n_pub++] = m;
    }
    b->n = 0;
}

static void read_ready(struct raft *r, uint64_t read_id, uint64_t index, int status)
{
    if (!cc_grow((void **)&r->ready, &r->cap_ready, r->n_ready + 1, sizeof(*r->ready)))
        return; /* the host times the read out */
    r->ready[r->n_ready++] = (struct raft_read_ready){read_id, index, status};
}

/* ==== roles ============================================================== */

static bool is_voter(const struct raft *r, uint32_t id)
{
    return raft_config_role(&r->config, id) == RAFT_VOTER;
}

static uint32_t quorum(const struct raft *r) { return raft_config_n_voters(&r->config) / 2 + 1; }

static void reset_election_timer(struct raft *r)
{
    r->election_elapsed = 0;
    r->election_timeout =
        r->o.election_ticks + (uint32_t)prng_below(&r->prng, r->o.election_ticks);
}

static void fail_pending_reads(struct raft *r, int status)
{
    for (uint32_t i = 0; i < r->n_reads; i++) {
        struct read_req *q = &r->reads[i];
        if (q->from == 0) {
            read_ready(r, q->read_id, 0, status);
        } else {
            struct raft_msg *m = send_now(r, RAFT_MSG_READ_INDEX_RESP, q->from);
            if (m) {
                m->read.read_id = q->read_id;
                m->read.status = status;
            }
        }
    }
    r->n_reads = 0;
}

static void become_follower(struct raft *r, uint64_t term, uint32_t leader)
{
    if (r->role == RAFT_LEADER)
        fail_pending_reads(r, RAFT_ESTEPPEDDOWN);
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transfer_target = 0;
    r->n_granted = r->n_rejected = 0;
    reset_election_timer(r);
}

static struct progress *progress_find(struct raft *r, uint32_t id)
{
    for (uint32_t i = 0; i < RAFT_SERVERS_MAX; i++)
        if (r->prs[i].id == id && id != 0)
            return &r->prs[i];
    return NULL;
}

static void progress_reset(struct raft *r, struct progress *p, uint32_t id)
{
    memset(p, 0, sizeof(*p));
    p->id = id;
    p->state = RAFT_PROBE;
    p->next = last_index(r) + 1;
    p->heard_tick = r->now; /* a new leader gives everyone one CheckQuorum period */
}

/* Makes prs[] hold exactly the servers of the current config, minus self. */
static void progress_sync(struct raft *r)
{
    for (uint32_t i = 0; i < RAFT_SERVERS_MAX; i++) {
        uint32_t id = r->prs[i].id;
        if (id != 0 && raft_config_role(&r->config, id) == 0)
            r->prs[i].id = 0;
    }
    for (uint32_t i = 0; i < r->config.n_servers; i++) {
        uint32_t id = r->config.servers[i].id;
        if (id == r->o.id || progress_find(r, id))
            continue;
        for (uint32_t j = 0; j < RAFT_SERVERS_MAX; j++) {
            if (r->prs[j].id == 0) {
                progress_reset(r, &r->prs[j], id);
                break;
            }
        }
    }
}

static void send_append(struct raft *r, struct progress *p, bool allow_empty);
static void bcast_heartbeat(struct raft *r);

static void become_leader(struct raft *r)
{
    CC_ASSERT(r->role == RAFT_CANDIDATE);
    r->role = RAFT_LEADER;
    r->leader = r->o.id;
    r->transfer_target = 0;
    r->heartbeat_elapsed = 0;
    r->election_elapsed = 0;
    r->round = 0;
    r->round_flushed = 0;
    r->bcast_round = 0;
    r->bcast_acks = 0;
    r->n_reads = 0;
    memset(r->prs, 0, sizeof(r->prs));
    progress_sync(r);
    /* Raft §5.4.2 and §8: a leader commits an entry of its own term before it
     * trusts its commit index (and before serving reads). */
    r->term_start_index = last_index(r) + 1;
    struct raft_entry noop = {.term = r->term, .index = r->term_start_index,
                              .type = RAFT_ENTRY_NOOP};
    if (log_append(r, &noop) != 0) {
        become_follower(r, r->term, 0); /* out of memory: give up leadership */
        return;
    }
    r->bcast_pending = true;
}

/* ==== election ============================================================ */

static bool log_up_to_date(const struct raft *r, uint64_t l_index, uint64_t l_term)
{
    /* Raft §5.4.1: compare last terms, then lengths. */
#ifdef RAFT_MUTANT_VOTE_NO_UPTODATE
    (void)r; (void)l_index; (void)l_term;
    return true;
#else
    return l_term > last_term(r) || (l_term == last_term(r) && l_index >= last_index(r));
#endif
}

static bool record_vote(uint32_t *ids, uint32_t *n, uint32_t id)
{
    for (uint32_t i = 0; i < *n; i++)
        if (ids[i] == id)
            return false;
    if (*n < RAFT_SERVERS_MAX)
        ids[(*n)++] = id;
    return true;
}

static uint32_t count_voters(const struct raft *r, const uint32_t *ids, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        k += is_voter(r, ids[i]);
    return k;
}

static void campaign(struct raft *r, bool pre, bool transfer)
{
    CC_ASSERT(r->role != RAFT_LEADER);
    r->n_granted = r->n_rejected = 0;
    r->leader = 0;
    reset_election_timer(r);
    uint64_t vote_term;
    if (pre) {
        r->role = RAFT_PRECANDIDATE;
        vote_term = r->term + 1; /* thesis §9.6: ask without disturbing anyone */
    } else {
        r->role = RAFT_CANDIDATE;
        r->term++;
        r->vote = r->o.id;
        vote_term = r->term;
    }
    record_vote(r->granted, &r->n_granted, r->o.id);
    if (count_voters(r, r->granted, r->n_granted) >= quorum(r)) {
        if (pre)
            campaign(r, false, transfer);
        else
            become_leader(r);
        return;
    }
    for (uint32_t i = 0; i < r->config.n_servers; i++) {
        const struct raft_server *s = &r->config.servers[i];
        if (s->id == r->o.id || s->role != RAFT_VOTER)
            continue;
        /* A real vote request depends on our durable term and self-vote. */
        struct raft_msg *m = pre ? send_now(r, RAFT_MSG_PREVOTE, s->id)
                                 : send_after(r, RAFT_MSG_VOTE, s->id);
        if (!m)
            continue;
        m->term = vote_term;
        m->vote.last_log_index = last_index(r);
        m->vote.last_log_term = last_term(r);
        m->vote.transfer = transfer;
    }
}

static void handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
                    (pre && m->term > r->term);
    bool grant = can_vote && log_up_to_date(r, m->vote.last_log_index, m->vote.last_log_term);
    uint8_t type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    struct raft_msg *resp;
    if (pre) {
        resp = send_now(r, type, m->from);
    } else {
#ifdef RAFT_MUTANT_VOTE_BEFORE_PERSIST
        resp = send_now(r, type, m->from);
#else
        resp = send_after(r, type, m->from); /* Figure 2: persist votedFor first */
#endif
    }
    if (grant && !pre) {
        r->vote = m->from;
        reset_election_timer(r);
    }
    if (!resp)
        return;
    resp->vote_resp.granted = grant;
    /* A granted pre-vote answers in the candidate's future term; a refusal
     * carries ours so a stale candidate learns it. */
    resp->term = (grant && pre) ? m->term : r->term;
}

static void handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
    if (r->role != (pre ? RAFT_PRECANDIDATE : RAFT_CANDIDATE))
        return;
    if (m->term != (pre ? r->term + 1 : r->term) && m->vote_resp.granted)
        return;
    if (m->vote_resp.granted)
        record_vote(r->granted, &r->n_granted, m->from);
    else
        record_vote(r->rejected, &r->n_rejected, m->from);
    if (count_voters(r, r->granted, r->n_granted) >= quorum(r)) {
        if (pre)
            campaign(r, false, false);
        else
            become_leader(r);
    } else if (count_voters(r, r->rejected, r->n_rejected) >= quorum(r)) {
        become_follower(r, r->term, 0);
    }
}

/* ==== replication ======================================================= */


static void on_commit_advanced(struct raft *r);

static void maybe_commit(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    uint64_t matches[RAFT_SERVERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->config.n_servers; i++) {
        const struct raft_server *s = &r->config.servers[i];
        if (s->role != RAFT_VOTER)
            continue;
        if (s->id == r->o.id) {
            matches[n++] = r->persisted; /* the leader counts only its durable log */
        } else {
            const struct progress *p = progress_find(r, s->id);
            matches[n++] = p ? p->match : 0;
        }
    }
    if (n == 0)
        return;
    /* sort descending; n <= RAFT_SERVERS_MAX so insertion sort is fine */
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && matches[j] > matches[j - 1]; j--) {
            uint64_t t = matches[j];
            matches[j] = matches[j - 1];
            matches[j - 1] = t;
        }
    uint64_t candidate = matches[n / 2 + 1 - 1];
    if (candidate <= r->commit)
        return;
#ifndef RAFT_MUTANT_COMMIT_PREV_TERM
    /* Raft §5.4.2: never commit a previous-term entry by counting replicas. */
    if (term_at(r, candidate) != r->term)
        return;
#endif
    r->commit = candidate;
    on_commit_advanced(r);
}

static void inflight_free_to(struct progress *p, uint64_t index)
{
    while (p->n_inflight > 0 && p->inflight[p->inflight_head] <= index) {
        p->inflight_head = (p->inflight_head + 1) % RAFT_INFLIGHT_MAX;
        p->n_inflight--;
    }
}

static void send_snapshot_chunk(struct raft *r, struct progress *p);

static void become_probe(struct progress *p, uint64_t next)
{
    p->state = RAFT_PROBE;
    p->next = next;
    p->probe_sent = false;
    p->n_inflight = 0;
    p->inflight_head = 0;
    p->hb_stalls = 0;
}

static void send_append(struct raft *r, struct progress *p, bool allow_empty)
{
    if (p->state == RAFT_SNAPSHOTTING)
        return;
    uint64_t prev = p->next - 1;
    uint64_t prev_term = term_at(r, prev);
    if (p->next < r->first_index || (prev > 0 && prev_term == 0)) {
        /* the entries this follower needs were compacted into the snapshot */
        CC_ASSERT(r->has_snap);
        p->state = RAFT_SNAPSHOTTING;
        p->snap_index = r->snap.index;
        p->snap_offset = 0;
        p->n_inflight = 0;
        send_snapshot_chunk(r, p);
        return;
    }
    if (p->state == RAFT_PROBE && p->probe_sent)
        return;
    if (p->state == RAFT_REPLICATE && p->n_inflight >= RAFT_INFLIGHT_MAX)
        return;
    uint64_t n = min_u64(last_index(r) - prev, RAFT_APPEND_ENTRIES_MAX);
    uint64_t n_bytes = 0;
    for (uint64_t k = 0; k < n; k++) {
        n_bytes += entry_at(r, prev + 1 + k)->n_bytes;
        if (k > 0 && n_bytes > RAFT_APPEND_BYTES_MAX) {
            n = k; /* always at least one entry, however large */
            break;
        }
    }
    if (n == 0 && !allow_empty)
        return;
    struct raft_msg *m = outbox_push(&r->now_box, RAFT_MSG_APPEND, p->id, r->term, r->o.id);
    if (!m)
        return;
    m->append.prev_index = prev;
    m->append.prev_term = prev_term;
    m->append.commit = r->commit;
    m->append.n_entries = (uint32_t)n;
    ((struct outmsg *)m)->ent_last_term = term_at(r, prev + n);
    if (p->state == RAFT_PROBE) {
        p->probe_sent = true;
    } else if (n > 0) {
        p->next = prev + n + 1;
        uint32_t slot = (p->inflight_head + p->n_inflight) % RAFT_INFLIGHT_MAX;
        p->inflight[slot] = prev + n;
        p->n_inflight++;
    }
}

static void send_append_all(struct raft *r, bool allow_empty)
{
    for (uint32_t i = 0; i < RAFT_SERVERS_MAX; i++) {
        struct progress *p = &r->prs[i];
        if (p->id == 0)
            continue;
        /* In REPLICATE, fill the window; otherwise one message. */
        send_append(r, p, allow_empty);
        while (p->state == RAFT_REPLICATE && p->next <= last_index(r) &&
               p->n_inflight < RAFT_INFLIGHT_MAX) {
            uint64_t before = p->next;
            send_append(r, p, false);
            if (p->next == before)
                break;
        }
    }
}

/* First index of the run of term t that contains index i (terms never
 * decrease along the log, so binary search applies). */
static uint64_t first_index_of_term(const struct raft *r, uint64_t i, uint64_t t)
{
    uint64_t lo = r->first_index, hi = i;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (term_at(r, mid) < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Last index <= i whose term is t, or 0 when the log has no entry of term t. */
static uint64_t last_index_of_term(const struct raft *r, uint64_t i, uint64_t t)
{
    uint64_t lo = r->first_index, hi = min_u64(i, last_index(r));
    if (hi < lo)
        return 0;
    while (lo < hi) { /* largest index in [lo, hi] with term <= t */
        uint64_t mid = hi - (hi - lo) / 2;
        if (term_at(r, mid) <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return term_at(r, lo) == t ? lo : 0;
}

static void handle_append(struct raft *r, const struct raft_msg *m)
{
    const struct raft_msg_append *a = &m->append;
    struct raft_msg *resp;
#ifdef RAFT_MUTANT_APPEND_ACK_BEFORE_PERSIST
    resp = send_now(r, RAFT_MSG_APPEND_RESP, m->from);
#else
    resp = send_after(r, RAFT_MSG_APPEND_RESP, m->from); /* acks promise durability */
#endif
    if (a->prev_index < r->commit) {
        /* Our committed prefix already matches the leader's (§5.4). */
        if (resp)
            resp->append_resp.index = r->commit;
        return;
    }
    if (a->prev_index > last_index(r)) {
        if (resp) {
            resp->append_resp.reject = true;
            resp->append_resp.index = a->prev_index;
            resp->append_resp.hint_index = last_index(r) + 1;
        }
        return;
    }
    uint64_t t = term_at(r, a->prev_index);
    if (t != a->prev_term) {
        /* §5.3 optimization: skip the whole conflicting term in one round. */
        if (resp) {
            resp->append_resp.reject = true;
            resp->append_resp.index = a->prev_index;
            resp->append_resp.hint_term = t;
            resp->append_resp.hint_index =
                max_u64(first_index_of_term(r, a->prev_index, t), r->commit + 1);
        }
        return;
    }
    for (uint32_t k = 0; k < a->n_entries; k++) {
        const struct raft_entry *e = &a->entries[k];
        if (e->index <= last_index(r)) {
            if (term_at(r, e->index) == e->term)
                continue;
            log_truncate(r, e->index);
        }
        if (log_append(r, e) != 0)
            break; /* out of memory: ack what we have; the leader resends */
    }
    uint64_t last_new = min_u64(a->prev_index + a->n_entries, last_index(r));
    uint64_t new_commit = min_u64(a->commit, last_new);
    if (new_commit > r->commit)
        r->commit = new_commit;
    if (resp)
        resp->append_resp.index = last_new;
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *p = progress_find(r, m->from);
    if (!p)
        return;
    const struct raft_msg_append_resp *a = &m->append_resp;
    if (a->index > last_index(r))
        return; /* we never sent that index this term: a forged or corrupt answer */
    p->heard_tick = r->now;
    if (!a->reject) {
        bool advanced = false;
        if (a->index > p->match) {
            p->match = min_u64(a->index, last_index(r));
            advanced = true;
        }
        if (p->next < p->match + 1)
            p->next = p->match + 1;
        inflight_free_to(p, a->index);
        if (p->state == RAFT_PROBE) {
            p->state = RAFT_REPLICATE;
            p->next = p->match + 1;
            p->probe_sent = false;
            p->n_inflight = 0;
            p->inflight_head = 0;
        }
        if (advanced) {
            maybe_commit(r);
            if (r->role != RAFT_LEADER)
                return;
            if (r->transfer_target == m->from && p->match == last_index(r))
                send_now(r, RAFT_MSG_TIMEOUT_NOW, m->from);
        }
        r->bcast_pending = true;
        return;
    }
    /* rejected */
    if (a->index <= p->match || p->state == RAFT_SNAPSHOTTING)
        return; /* stale */
    if (p->state == RAFT_PROBE && a->index != p->next - 1)
        return; /* answer to an older probe */
    uint64_t next = a->hint_index;
    if (a->hint_term > 0) {
        uint64_t k = last_index_of_term(r, a->index, a->hint_term);
        if (k > 0)
            next = k + 1;
    }
    next = max_u64(next, p->match + 1);
    next = min_u64(next, a->index);
    next = max_u64(next, 1);
    become_probe(p, next);
    send_append(r, p, true);
}

static void send_heartbeat(struct raft *r, const struct progress *p)
{
    struct raft_msg *m = send_now(r, RAFT_MSG_HEARTBEAT, p->id);
    if (!m)
        return;
    /* Only announce a commit the follower's log is known to contain. */
    m->heartbeat.commit = min_u64(r->commit, p->match);
    m->heartbeat.round = r->round;
}

/* A new heartbeat round; its send tick is remembered for lease reads. */
static void start_round(struct raft *r)
{
    r->round++;
    r->round_tick[r->round % RAFT_ROUNDS_RING] = r->now;
}

static void bcast_heartbeat(struct raft *r)
{
    start_round(r);
    r->bcast_round = r->round;
    r->bcast_acks = 0;
    for (uint32_t i = 0; i < RAFT_SERVERS_MAX; i++) {
        if (r->prs[i].id != 0)
            send_heartbeat(r, &r->prs[i]);
    }
}

/* A round started for reads needs a quorum's acknowledgements, not everyone's, so it
 * goes only to the voters that answered the last broadcast round first (halving
 * follower work per read on 3 nodes). A voter that has not answered the last broadcast
 * is never chosen: then the round goes to everyone. The periodic heartbeat reaches
 * every peer, re-ranks them, and serves a round whose chosen voter went quiet. */
static void read_round(struct raft *r)
{
    uint32_t need = quorum(r) - (is_voter(r, r->o.id) ? 1u : 0u);
    struct progress *pick[RAFT_SERVERS_MAX];
    uint32_t n = 0;
    for (uint32_t rank = 1; rank <= r->bcast_acks && n < need; rank++) {
        for (uint32_t i = 0; i < RAFT_SERVERS_MAX; i++) {
            struct progress *p = &r->prs[i];
            if (p->id != 0 && p->id != r->o.id && is_voter(r, p->id) &&
                p->bcast_acked == r->bcast_round && p->bcast_rank == rank) {
                pick[n++] = p;
                break;
            }
        }
    }
    if (r->bcast_round == 0 || n < need) {
        bcast_heartbeat(r);
        return;
    }
    start_round(r);
    for (uint32_t i = 0; i < n; i++)
        send_heartbeat(r, pick[i]);
}

static void process_reads(struct raft *r);

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    uint64_t c = min_u64(m->heartbeat.commit, last_index(r));
    if (c > r->commit)
        r->commit = c;
    struct raft_msg *resp = send_now(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp)
        resp->heartbeat.round = m->heartbeat.round;
}

static void handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *p = progress_find(r, m->from);
    if (!p)
        return;
    p->heard_tick = r->now;
    if (m->heartbeat.round > p->round_acked && m->heartbeat.round <= r->round)
        p->round_acked = m->heartbeat.round;
    if (m->heartbeat.round == r->bcast_round && p->bcast_acked != r->bcast_round) {
        p->bcast_acked = r->bcast_round;
        p->bcast_rank = ++r->bcast_acks;
    }
    if (p->state == RAFT_SNAPSHOTTING) {
        if (r->now - p->snap_sent_tick >= 2 * (uint64_t)r->o.heartbeat_ticks)
            send_snapshot_chunk(r, p); /* the chunk or its ack was lost */
    } else if (p->match < last_index(r)) {
        if (p->state == RAFT_PROBE) {
            p->probe_sent = false; /* the probe may have been lost: try again */
        } else if (p->match == p->hb_match && ++p->hb_stalls >= RAFT_HB_STALL_MAX) {
            become_probe(p, p->match + 1); /* the pipeline's tail was lost */
        }
        send_append(r, p, false);
    }
    if (p->match != p->hb_match) {
        p->hb_match = p->match;
        p->hb_stalls = 0;
    }
    process_reads(r);
}

/* ==== snapshots =========================================================== */

static void send_snapshot_chunk(struct raft *r, struct progress *p)
{
    if (!r->has_snap)
        return;
    if (p->snap_index != r->snap.index) {
        p->snap_index = r->snap.index;
        p->snap_offset = 0;
    }
    uint64_t left = r->snap.n_bytes - min_u64(p->snap_offset, r->snap.n_bytes);
    struct raft_msg *m = send_now(r, RAFT_MSG_SNAPSHOT, p->id);
    if (!m)
        return;
    m->snapshot.index = r->snap.index;
    m->snapshot.term = r->snap.term;
    m->snapshot.config = r->snap.config;
    m->snapshot.n_total = r->snap.n_bytes;
    m->snapshot.offset = p->snap_offset;
    m->snapshot.n_bytes = (uint32_t)min_u64(left, r->o.snapshot_chunk_bytes);
    p->snap_sent_tick = r->now;
}

static void reply_snapshot(struct raft *r, const struct raft_msg *m, uint64_t offset, bool done)
{
    struct raft_msg *resp = done ? send_after(r, RAFT_MSG_SNAPSHOT_RESP, m->from)
                                 : send_now(r, RAFT_MSG_SNAPSHOT_RESP, m->from);
    if (!resp)
        return;
    resp->snapshot_resp.index = m->snapshot.index;
    resp->snapshot_resp.offset = offset;
    resp->snapshot_resp.done = done;
}

static void recv_reset(struct raft *r)
{
    free(r->recv.buf);
    memset(&r->recv, 0, sizeof(r->recv));
}

/* Replace our whole state with the received snapshot (§7). */
static void install_snapshot(struct raft *r)
{
    struct snap_recv *s = &r->recv;
    log_free_all(r);
    free(r->snap.bytes);
    r->has_snap = true;
    r->snap.index = s->index;
    r->snap.term = s->term;
    r->snap.config = s->config;
    r->snap.n_bytes = s->n_total;
    r->snap.bytes = s->buf;
    s->buf = NULL;
    recv_reset(r);
    r->first_index = r->snap.index + 1;
    r->commit = r->snap.index;
    r->applied = r->snap.index;
    r->persisted = 0; /* until the host reports the snapshot durable */
    r->pending_truncate =
        r->pending_truncate ? min_u64(r->pending_truncate, r->snap.index + 1) : r->snap.index + 1;
    r->unstable_from = r->snap.index + 1;
    r->snap_install_pending = true;
    r->config = r->snap.config;
    r->config_index = r->snap.index;
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    const struct raft_msg_snapshot *s = &m->snapshot;
    if (s->index <= r->commit) {
        reply_snapshot(r, m, s->n_total, true); /* we already have all of it */
        return;
    }
    if (term_at(r, s->index) == s->term) {
        /* Our log already contains the snapshot's last entry, so by Log
         * Matching everything before it too: just learn it is committed. */
        r->commit = s->index;
        reply_snapshot(r, m, s->n_total, true);
        return;
    }
    struct snap_recv *rc = &r->recv;
    if (rc->buf == NULL || rc->index != s->index || rc->term != s->term) {
        if (s->offset != 0) {
            reply_snapshot(r, m, 0, false);
            return;
        }
        recv_reset(r);
        /* Grown as chunks arrive: a forged n_total must not allocate by itself. */
        rc->cap = min_u64(s->n_total, r->o.snapshot_chunk_bytes) + 1;
        rc->buf = malloc(rc->cap);
        if (!rc->buf)
            return;
        rc->index = s->index;
        rc->term = s->term;
        rc->config = s->config;
        rc->n_total = s->n_total;
    }
    if (s->offset != rc->received || s->n_total != rc->n_total) {
        reply_snapshot(r, m, rc->received, false);
        return;
    }
    if (rc->received + s->n_bytes > rc->cap) {
        uint64_t cap = rc->cap;
        while (cap < rc->received + s->n_bytes)
            cap = min_u64(cap * 2, rc->n_total + 1);
        uint8_t *nb = realloc(rc->buf, cap);
        if (!nb)
            return; /* the leader resends this chunk */
        rc->buf = nb;
        rc->cap = cap;
    }
    if (s->n_bytes > 0)
        memcpy(rc->buf + rc->received, s->bytes, s->n_bytes);
    rc->received += s->n_bytes;
    if (rc->received < rc->n_total) {
        reply_snapshot(r, m, rc->received, false);
        return;
    }
    install_snapshot(r);
    reply_snapshot(r, m, s->n_total, true);
}

static void handle_snapshot_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *p = progress_find(r, m->from);
    if (!p)
        return;
    p->heard_tick = r->now;
    const struct raft_msg_snapshot_resp *s = &m->snapshot_resp;
    if (p->state != RAFT_SNAPSHOTTING || s->index != p->snap_index)
        return;
    if (s->done) {
        p->match = max_u64(p->match, s->index);
        become_probe(p, p->match + 1);
        maybe_commit(r);
        if (r->role == RAFT_LEADER)
            send_append(r, p, false);
        return;
    }
    p->snap_offset = s->offset;
    send_snapshot_chunk(r, p);
}

/* ==== reads =============================================================== */

static bool committed_in_term(const struct raft *r)
{
#ifdef RAFT_MUTANT_READINDEX_EARLY
    return true;
#else
    return r->commit >= r->term_start_index;
#endif
}

/* The newest heartbeat round a quorum of voters has acknowledged. */
static uint64_t quorum_round(const struct raft *r)
{
    uint64_t rounds[RAFT_SERVERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->config.n_servers; i++) {
        const struct raft_server *s = &r->config.servers[i];
        if (s->role != RAFT_VOTER)
            continue;
        if (s->id == r->o.id) {
            rounds[n++] = r->round;
        } else {
            const struct progress *p = progress_find((struct raft *)r, s->id);
            rounds[n++] = p ? p->round_acked : 0;
        }
    }
    if (n == 0)
        return 0;
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && rounds[j] > rounds[j - 1]; j--) {
            uint64_t t = rounds[j];
            rounds[j] = rounds[j - 1];
            rounds[j - 1] = t;
        }
    return rounds[n / 2 + 1 - 1];
}

static bool lease_valid(const struct raft *r)
{
    if (!r->o.lease_read || r->transfer_target != 0 || !committed_in_term(r))
        return false;
    uint64_t q = quorum_round(r);
    if (q == 0 || r->round - q >= RAFT_ROUNDS_RING)
        return false;
    uint64_t sent = r->round_tick[q % RAFT_ROUNDS_RING];
    uint64_t lease = r->o.election_ticks - r->o.lease_drift_ticks;
    return r->now < sent + lease;
}

static void answer_read(struct raft *r, const struct read_req *q, uint64_t index, int status)
{
    if (q->from == 0) {
        read_ready(r, q->read_id, index, status);
        return;
    }
    struct raft_msg *m = send_now(r, RAFT_MSG_READ_INDEX_RESP, q->from);
    if (m) {
        m->read.read_id = q->read_id;
        m->read.index = index;
        m->read.status = status;
    }
}

/* Answers every read whose round a quorum acknowledged; starts the next round
 * when reads wait for one and none is in flight (batching, thesis §6.4). */
static void process_reads(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->n_reads == 0)
        return;
    uint64_t q = quorum_round(r);
    bool want_round = false;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < r->n_reads; i++) {
        struct read_req *rq = &r->reads[i];
        if (rq->index == 0 && committed_in_term(r)) {
            rq->index = max_u64(r->commit, 1);
            /* A round whose heartbeats have not left yet still proves
             * leadership after this read arrived, so the read may join it. */
            rq->round = r->round > r->round_flushed ? r->round : r->round + 1;
        }
        if (rq->index != 0 && rq->round <= q) {
            answer_read(r, rq, rq->index, 0);
            continue;
        }
        if (rq->index != 0 && rq->round > r->round)
            want_round = true;
        r->reads[keep++] = *rq;
    }
    r->n_reads = keep;
    if (want_round && q >= r->round) {
        read_round(r);
        if (quorum_round(r) >= r->round) /* a cluster of one */
            process_reads(r);
    }
}

static int leader_read(struct raft *r, uint64_t read_id, uint32_t from)
{
    if (committed_in_term(r) && lease_valid(r)) {
        struct read_req q = {.read_id = read_id, .from = from};
        answer_read(r, &q, max_u64(r->commit, 1), 0);
        return 0;
    }
    if (r->n_reads >= RAFT_READS_MAX)
        return RAFT_EFULL;
    if (!cc_grow((void **)&r->reads, &r->cap_reads, r->n_reads + 1, sizeof(*r->reads)))
        return RAFT_ENOMEM;
    struct read_req *q = &r->reads[r->n_reads++];
    memset(q, 0, sizeof(*q));
    q->read_id = read_id;
    q->from = from;
    process_reads(r);
    return 0;
}

/* ==== membership and transfer ============================================ */

static void on_commit_advanced(struct raft *r)
{
    r->commit_bcast_pending = true;
    process_reads(r);
    /* Thesis §4.2.2: a leader removed by a committed config steps down. */
    if (r->role == RAFT_LEADER && r->config_index <= r->commit && !is_voter(r, r->o.id))
        become_follower(r, r->term, 0);
}

/* ==== public inputs ====================================================== */

void raft_options_default(struct raft_options *o, uint32_t id, uint64_t random_seed)
{
    memset(o, 0, sizeof(*o));
    o->id = id;
    o->election_ticks = 10;
    o->heartbeat_ticks = 1;
    o->prevote = true;
    o->check_quorum = true;
    o->lease_read = false;
    o->lease_drift_ticks = 2;
    o->snapshot_chunk_bytes = 64 * 1024;
    o->trailing_entries = 64;
    o->random_seed = random_seed;
}

/* Do the recovered entries after the snapshot continue it? Yes when the entry at the
 * snapshot's index has its term, or when the entries start right after it with terms
 * no older than it (the WAL dropped the covered prefix); trivially when none follow. */
static bool recovered_log_continues(const struct raft_recovered *rec,
                                    const struct raft_snapshot *snap)
{
    const struct raft_entry *after = NULL;
    for (uint64_t i = 0; i < rec->n_entries; i++) {
        const struct raft_entry *e = &rec->entries[i];
        if (e->index == snap->index)
            return e->term == snap->term;
        if (e->index > snap->index && !after)
            after = e;
    }
    return !after || (after->index == snap->index + 1 && after->term >= snap->term);
}

static bool recovered_log_reaches(const struct raft_recovered *rec, uint64_t index)
{
    return rec->n_entries > 0 && rec->entries[rec->n_entries - 1].index >= index;
}

int raft_new(const struct raft_options *o, const struct raft_recovered *rec, struct raft **out)
{
    if (o->id == 0 || o->election_ticks < 2 || o->heartbeat_ticks == 0 ||
        o->heartbeat_ticks >= o->election_ticks || o->snapshot_chunk_bytes == 0 ||
        o->lease_drift_ticks >= o->election_ticks)
        return RAFT_EINVAL;
    const struct raft_snapshot *snap = rec ? rec->snapshot : NULL;
    uint64_t base = snap ? snap->index : 0;
    if (rec) { /* recovered entries must be contiguous and reach the snapshot */
        for (uint64_t i = 0; i < rec->n_entries; i++) {
            const struct raft_entry *e = &rec->entries[i];
            if (e->index != rec->entries[0].index + i || (i > 0 && e->term < e[-1].term) ||
                (e->n_bytes > 0 && !e->bytes))
                return RAFT_EINVAL;
        }
        if (!snap && rec->n_entries > 0 && rec->entries[0].index != 1)
            return RAFT_EINVAL;
        if (snap && !config_valid(&snap->config))
            return RAFT_EINVAL;
    }
    struct raft *r = calloc(1, sizeof(*r));
    if (!r)
        return RAFT_ENOMEM;
    r->o = *o;
    prng_seed(&r->prng, o->random_seed);
    r->first_index = base + 1;
    if (snap) {
        r->has_snap = true;
        r->snap = *snap;
        r->snap.bytes = malloc(snap->n_bytes ? snap->n_bytes : 1);
        if (!r->snap.bytes)
            goto err_after_alloc;
        if (snap->n_bytes > 0)
            memcpy(r->snap.bytes, snap->bytes, snap->n_bytes);
        r->config = snap->config;
        r->config_index = snap->index;
    }
    r->role = RAFT_FOLLOWER; /* log_append consults it */
    bool keep_log = !snap || recovered_log_continues(rec, snap);
    for (uint64_t i = 0; keep_log && rec && i < rec->n_entries; i++) {
        const struct raft_entry *e = &rec->entries[i];
        if (e->index <= base)
            continue;
        if (log_append(r, e) != 0)
            goto err_after_log;
    }
    if (snap && (!keep_log || !recovered_log_reaches(rec, base))) {
        /* The snapshot file is durable but the WAL's record of it (marker, truncation)
         * was lost in a crash: the log either stops short of the snapshot or carries
         * entries of another branch after it. Those entries cannot be committed (the
         * snapshot's leader had a different term there, §5.4), so drop them and have
         * the host persist the snapshot marker and the truncation again. */
        r->snap_install_pending = true;
        r->pending_truncate = base + 1;
    }
    r->term = rec ? rec->hard_state.term : 0;
    r->vote = rec ? rec->hard_state.vote : 0;
    if (last_term(r) > r->term) {
        /* The entries' write survived but the hard state's did not; no vote
         * in that term can have been sent (votes wait for durability). */
        r->term = last_term(r);
        r->vote = 0;
    }
    uint64_t hint = rec ? rec->hard_state.commit : 0;
    r->commit = max_u64(base, min_u64(hint, last_index(r)));
    r->applied = base;
    r->persisted = last_index(r); /* all of it came from stable storage */
    r->unstable_from = last_index(r) + 1;
    r->hs_emitted = (struct raft_hard_state){r->term, r->vote, r->commit};
    become_follower(r, r->term, 0);
    *out = r;
    return 0;

err_after_log:
    log_free_all(r);
    free(r->ents);
    free(r->snap.bytes);
err_after_alloc:
    free(r);
    return RAFT_EINVAL;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    log_free_all(r);
    free(r->ents);
    free(r->snap.bytes);
    recv_reset(r);
    free(r->now_box.q);
    free(r->now_box.pub);
    free(r->after_box.q);
    free(r->after_box.pub);
    free(r->ready);
    free(r->reads);
    free(r);
}

/* Did a quorum of voters (counting this leader) answer within the last
 * election timeout? Checked every tick, so the step-down is not late. */
static bool quorum_heard(const struct raft *r)
{
    uint32_t active = is_voter(r, r->o.id);
    for (uint32_t i = 0; i < RAFT_SERVERS_MAX; i++) {
        const struct progress *p = &r->prs[i];
        if (p->id != 0 && is_voter(r, p->id) && r->now - p->heard_tick < r->o.election_ticks)
            active++;
    }
    return active >= quorum(r);
}

void raft_tick(struct raft *r)
{
    r->now++;
    if (r->role == RAFT_LEADER) {
        r->election_elapsed++;
        if (r->transfer_target != 0 && ++r->transfer_elapsed >= r->o.election_ticks)
            r->transfer_target = 0; /* thesis §3.10: abort a transfer that stalls */
        if (r->election_elapsed >= r->o.election_ticks)
            r->election_elapsed = 0;
        if (r->o.check_quorum && !quorum_heard(r)) {
            /* thesis §6.2: a leader that cannot reach a quorum steps down */
            become_follower(r, r->term, 0);
            return;
        }
        if (++r->heartbeat_elapsed >= r->o.heartbeat_ticks) {
            r->heartbeat_elapsed = 0;
            bcast_heartbeat(r);
        }
        return;
    }
    r->election_elapsed++;
    /* A sole voter has nobody to wait for: elect itself on the first tick. */
    bool sole_voter = is_voter(r, r->o.id) && raft_config_n_voters(&r->config) == 1;
    if (r->election_elapsed >= r->election_timeout || sole_voter) {
        if (is_voter(r, r->o.id))
            campaign(r, r->o.prevote, false);
        else
            reset_election_timer(r);
    }
}

/* True while this server promises not to help elect a new leader: it heard
 * from the current one less than an election timeout ago. With lease reads a
 * freshly started server also waits one timeout, because its memory of the
 * last heartbeat died with the previous process and a leader's lease may
 * still count on it. */
static bool in_leader_lease(const struct raft *r)
{
    if (!r->o.check_quorum)
        return false;
    if (r->leader != 0 && r->election_elapsed < r->o.election_ticks)
        return true;
    return r->o.lease_read && r->now < r->o.election_ticks;
}

static bool msg_valid(const struct raft *r, const struct raft_msg *m)
{
    if (m->type < 1 || m->type > RAFT_MSG_TYPE_MAX)
        return false;
    if (m->from == 0 || m->from == r->o.id || m->to != r->o.id || m->term > RAFT_TERM_MAX)
        return false;
    if (m->type == RAFT_MSG_APPEND) {
        const struct raft_msg_append *a = &m->append;
        if (a->n_entries > RAFT_APPEND_ENTRIES_MAX || (a->n_entries > 0 && !a->entries))
            return false;
        if (a->prev_index > RAFT_INDEX_MAX || a->commit > RAFT_INDEX_MAX)
            return false;
        if (a->prev_term > m->term)
            return false;
        uint64_t prev_term = a->prev_term;
        for (uint32_t i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            if (e->index != a->prev_index + 1 + i || e->term < prev_term || e->term > m->term)
                return false;
            if (e->type < RAFT_ENTRY_COMMAND || e->type > RAFT_ENTRY_CONFIG)
                return false;
            if (e->n_bytes > RAFT_ENTRY_BYTES_MAX || (e->n_bytes > 0 && !e->bytes))
                return false;
            if (e->type == RAFT_ENTRY_CONFIG) {
                struct raft_config c;
                if (raft_config_decode(&c, e->bytes, e->n_bytes) != 0)
                    return false;
            }
            prev_term = e->term;
        }
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        const struct raft_msg_snapshot *s = &m->snapshot;
        if (s->n_total > RAFT_SNAPSHOT_BYTES_MAX || s->offset > s->n_total ||
            s->n_bytes > s->n_total - s->offset || (s->n_bytes > 0 && !s->bytes) ||
            s->index == 0 || s->index > RAFT_INDEX_MAX || s->term == 0 || s->term > m->term ||
            !config_valid(&s->config))
            return false;
    }
    return true;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    if (!msg_valid(r, m))
        return RAFT_EINVAL;
    bool is_vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                       m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW;

    if (m->term > r->term) {
        if (is_vote_req && !m->vote.transfer && in_leader_lease(r))
            return 0; /* thesis §4.2.3: we hear from a leader; ignore disruptors */
        bool keep_term = m->type == RAFT_MSG_PREVOTE ||
                         (m->type == RAFT_MSG_PREVOTE_RESP && m->vote_resp.granted);
        if (!keep_term)
            become_follower(r, m->term, from_leader ? m->from : 0);
    } else if (m->term < r->term) {
#ifdef RAFT_MUTANT_ACCEPT_STALE_TERM
        if (m->type == RAFT_MSG_APPEND) {
            handle_append(r, m);
            return 0;
        }
#endif
        if (from_leader && (r->o.check_quorum || r->o.prevote)) {
            /* Tell the stale leader our term so it steps down. */
            send_now(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_msg *resp = send_now(r, RAFT_MSG_PREVOTE_RESP, m->from);
            if (resp)
                resp->vote_resp.granted = false;
        }
        return 0;
    }

    if (from_leader) {
        if (r->role == RAFT_LEADER)
            return RAFT_EINVAL; /* two leaders in one term: impossible, drop it */
        if (r->role != RAFT_FOLLOWER)
            become_follower(r, r->term, m->from);
        r->leader = m->from;
        r->election_elapsed = 0;
    }

    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE: handle_vote(r, m); break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP: handle_vote_resp(r, m); break;
    case RAFT_MSG_APPEND: handle_append(r, m); break;
    case RAFT_MSG_APPEND_RESP:
        if (r->role == RAFT_LEADER)
            handle_append_resp(r, m);
        break;
    case RAFT_MSG_HEARTBEAT: handle_heartbeat(r, m); break;
    case RAFT_MSG_HEARTBEAT_RESP:
        if (r->role == RAFT_LEADER)
            handle_heartbeat_resp(r, m);
        break;
    case RAFT_MSG_SNAPSHOT: handle_snapshot(r, m); break;
    case RAFT_MSG_SNAPSHOT_RESP:
        if (r->role == RAFT_LEADER)
            handle_snapshot_resp(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        if (is_voter(r, r->o.id))
            campaign(r, false, true); /* thesis §3.10: skip PreVote, bypass stickiness */
        break;
    case RAFT_MSG_READ_INDEX:
        if (r->role == RAFT_LEADER) {
            int rv = leader_read(r, m->read.read_id, m->from);
            if (rv != 0) {
                struct read_req q = {.read_id = m->read.read_id, .from = m->from};
                answer_read(r, &q, 0, rv);
            }
        } else {
            struct read_req q = {.read_id = m->read.read_id, .from = m->from};
            answer_read(r, &q, 0, RAFT_ENOTLEADER);
        }
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        read_ready(r, m->read.read_id, m->read.index, m->read.status);
        break;
    default: CC_UNREACHABLE();
    }
    return 0;
}

int raft_propose(struct raft *r, const void *bytes, uint32_t n_bytes, uint64_t *index_out)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->transfer_target != 0)
        return RAFT_EBUSY;
    if (n_bytes > RAFT_ENTRY_BYTES_MAX)
        return RAFT_ETOOBIG;
    if (n_bytes > 0 && !bytes)
        return RAFT_EINVAL;
    if (last_index(r) - r->commit >= RAFT_UNCOMMITTED_MAX)
        return RAFT_EFULL;
    struct raft_entry e = {.term = r->term, .index = last_index(r) + 1,
                           .type = RAFT_ENTRY_COMMAND, .n_bytes = n_bytes,
                           .bytes = (uint8_t *)bytes};
    int rv = log_append(r, &e);
    if (rv != 0)
        return rv;
    r->bcast_pending = true;
    if (index_out)
        *index_out = e.index;
    return 0;
}

int raft_read_index(struct raft *r, uint64_t read_id)
{
    if (r->role == RAFT_LEADER)
        return leader_read(r, read_id, 0);
    if (r->role != RAFT_FOLLOWER || r->leader == 0) {
        read_ready(r, read_id, 0, RAFT_ENOTLEADER);
        return 0;
    }
    struct raft_msg *m = send_now(r, RAFT_MSG_READ_INDEX, r->leader);
    if (!m)
        return RAFT_ENOMEM;
    m->read.read_id = read_id;
    return 0;
}

void raft_persisted(struct raft *r, uint64_t index, uint64_t term)
{
    if (index <= r->persisted || index > last_index(r) || term_at(r, index) != term)
        return; /* an older write, or one whose entries were since replaced */
    r->persisted = index;
    maybe_commit(r);
}

static bool snapshot_index_ok(const struct raft *r, uint64_t index)
{
    return index <= r->applied && index >= r->first_index &&
           !(r->has_snap && index <= r->snap.index);
}

int raft_snapshot_meta(const struct raft *r, uint64_t index, struct raft_snapshot *out)
{
    if (!snapshot_index_ok(r, index))
        return RAFT_EINVAL;
    uint64_t c_index;
    *out = (struct raft_snapshot){.index = index, .term = term_at(r, index)};
    config_at(r, index, &out->config, &c_index);
    return 0;
}

int raft_snapshot_adopt(struct raft *r, uint64_t index, uint8_t *bytes, uint64_t n_bytes)
{
    if (!snapshot_index_ok(r, index) || !bytes)
        return RAFT_EINVAL;
    struct raft_config c;
    uint64_t c_index;
    config_at(r, index, &c, &c_index);
    free(r->snap.bytes);
    r->has_snap = true;
    r->snap.index = index;
    r->snap.term = term_at(r, index);
    r->snap.config = c;
    r->snap.n_bytes = n_bytes;
    r->snap.bytes = bytes;
    uint64_t keep_from = index + 1 > r->o.trailing_entries ? index + 1 - r->o.trailing_entries : 1;
    log_compact(r, max_u64(keep_from, r->first_index));
    return 0;
}

int raft_snapshot_taken(struct raft *r, uint64_t index, const void *bytes, uint64_t n_bytes)
{
    if (!snapshot_index_ok(r, index))
        return RAFT_EINVAL;
    if (n_bytes > 0 && !bytes)
        return RAFT_EINVAL;
    uint8_t *copy = malloc(n_bytes ? n_bytes : 1);
    if (!copy)
        return RAFT_ENOMEM;
    if (n_bytes > 0)
        memcpy(copy, bytes, n_bytes);
    int rv = raft_snapshot_adopt(r, index, copy, n_bytes);
    CC_ASSERT(rv == 0); /* checked above */
    return rv;
}

int raft_change(struct raft *r, enum raft_change_op op, uint32_t id, uint64_t *index_out)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->transfer_target != 0)
        return RAFT_EBUSY;
    if (r->commit < r->term_start_index)
        return RAFT_ENOTREADY;
    if (r->config_index > r->commit)
        return RAFT_EBUSY; /* one change at a time */
    if (id == 0)
        return RAFT_EINVAL;
    struct raft_config c = r->config;
    int role = raft_config_role(&c, id);
    switch (op) {
    case RAFT_ADD_VOTER:
    case RAFT_ADD_LEARNER:
        if (role != 0 || c.n_servers >= RAFT_SERVERS_MAX)
            return RAFT_ECONFIG;
        c.servers[c.n_servers++] =
            (struct raft_server){id, op == RAFT_ADD_VOTER ? RAFT_VOTER : RAFT_LEARNER};
        break;
    case RAFT_PROMOTE: {
        if (role != RAFT_LEARNER)
            return RAFT_ECONFIG;
        const struct progress *p = progress_find(r, id);
        /* A learner that never acknowledged anything (not started yet, wrong address)
         * has match 0: promoting it would add a dead voter and could cost the quorum. */
        if (!p || p->match == 0 || p->match + RAFT_PROMOTE_LAG_MAX < last_index(r))
            return RAFT_ECATCHUP;
        for (uint32_t i = 0; i < c.n_servers; i++)
            if (c.servers[i].id == id)
                c.servers[i].role = RAFT_VOTER;
        break;
    }
    case RAFT_REMOVE: {
        if (role == 0)
            return RAFT_ECONFIG;
        if (role == RAFT_VOTER && raft_config_n_voters(&c) == 1)
            return RAFT_ECONFIG;
        uint32_t k = 0;
        for (uint32_t i = 0; i < c.n_servers; i++)
            if (c.servers[i].id != id)
                c.servers[k++] = c.servers[i];
        c.n_servers = k;
        break;
    }
    default: return RAFT_EINVAL;
    }
    uint8_t buf[RAFT_CONFIG_BYTES_MAX];
    size_t n = 0;
    int rv = raft_config_encode(&c, buf, sizeof(buf), &n);
    if (rv != 0)
        return rv;
    struct raft_entry e = {.term = r->term, .index = last_index(r) + 1,
                           .type = RAFT_ENTRY_CONFIG, .n_bytes = (uint32_t)n, .bytes = buf};
    rv = log_append(r, &e);
    if (rv != 0)
        return rv;
    r->bcast_pending = true;
    if (index_out)
        *index_out = e.index;
    maybe_commit(r); /* removing a lagging voter can shrink the quorum */
    return 0;
}

int raft_transfer(struct raft *r, uint32_t target)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (target == r->o.id || !is_voter(r, target))
        return RAFT_ECONFIG;
    if (r->transfer_target != 0)
        return RAFT_EBUSY;
    struct progress *p = progress_find(r, target);
    if (!p)
        return RAFT_ECONFIG;
    r->transfer_target = target;
    r->transfer_elapsed = 0;
    if (p->match == last_index(r))
        send_now(r, RAFT_MSG_TIMEOUT_NOW, target);
    else
        send_append(r, p, false);
    return 0;
}

/* ==== update ============================================================= */

bool raft_update_pending(const struct raft *r)
{
    return r->now_box.n || r->after_box.n || r->n_ready || r->snap_install_pending ||
           r->pending_truncate || r->unstable_from <= last_index(r) || r->bcast_pending ||
           r->commit_bcast_pending || r->term != r->hs_emitted.term ||
           r->vote != r->hs_emitted.vote || r->commit != r->hs_emitted.commit ||
           min_u64(r->commit, r->persisted) > r->applied;
}

void raft_update_take(struct raft *r, struct raft_update *u)
{
    memset(u, 0, sizeof(*u));
    if (r->role == RAFT_LEADER && (r->bcast_pending || r->commit_bcast_pending))
        send_append_all(r, r->commit_bcast_pending);
    r->bcast_pending = r->commit_bcast_pending = false;

    if (r->snap_install_pending) {
        u->snapshot = &r->snap;
        r->snap_install_pending = false;
    }
    u->truncate_from = r->pending_truncate;
    r->pending_truncate = 0;
    if (r->unstable_from <= last_index(r)) {
        CC_ASSERT(r->unstable_from >= r->first_index);
        u->entries = entry_at(r, r->unstable_from);
        u->n_entries = (uint32_t)(last_index(r) - r->unstable_from + 1);
        r->unstable_from = last_index(r) + 1;
    }
    struct raft_hard_state hs = {r->term, r->vote, r->commit};
    if (hs.term != r->hs_emitted.term || hs.vote != r->hs_emitted.vote ||
        hs.commit != r->hs_emitted.commit) {
        u->hard_state_changed = true;
        u->hard_state = hs;
        r->hs_emitted = hs;
    }

    outbox_resolve(r, &r->now_box);
    outbox_resolve(r, &r->after_box);
    r->round_flushed = r->round;
    u->msgs_now = r->now_box.pub;
    u->n_msgs_now = r->now_box.n_pub;
    u->msgs_after_persist = r->after_box.pub;
    u->n_msgs_after_persist = r->after_box.n_pub;

    /* Apply only what is both committed and durable here. */
    uint64_t hi = min_u64(r->commit, r->persisted);
    if (hi > r->applied) {
        CC_ASSERT(r->applied + 1 >= r->first_index);
        u->committed = entry_at(r, r->applied + 1);
        u->n_committed = (uint32_t)(hi - r->applied);
        r->applied = hi;
    }
    u->reads = r->ready;
    u->n_reads = r->n_ready;
    r->n_ready = 0;
}

/* ==== queries ============================================================= */

uint32_t raft_id(const struct raft *r) { return r->o.id; }
int raft_role(const struct raft *r) { return r->role; }
uint64_t raft_term(const struct raft *r) { return r->term; }
uint32_t raft_vote(const struct raft *r) { return r->vote; }
uint32_t raft_leader(const struct raft *r) { return r->leader; }
uint64_t raft_commit(const struct raft *r) { return r->commit; }
uint64_t raft_applied(const struct raft *r) { return r->applied; }
uint64_t raft_first_index(const struct raft *r) { return r->first_index; }
uint64_t raft_last_index(const struct raft *r) { return last_index(r); }
uint64_t raft_last_term(const struct raft *r) { return last_term(r); }
uint64_t raft_persisted_index(const struct raft *r) { return r->persisted; }
uint64_t raft_term_at(const struct raft *r, uint64_t index) { return term_at(r, index); }
const struct raft_config *raft_config(const struct raft *r) { return &r->config; }
uint32_t raft_transfer_target(const struct raft *r) { return r->transfer_target; }

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
    return entry_at((struct raft *)r, index);
}

const struct raft_snapshot *raft_snapshot(const struct raft *r)
{
    return r->has_snap ? &r->snap : NULL;
}

uint32_t raft_progress(const struct raft *r, struct raft_progress_info *out, uint32_t cap)
{
    uint32_t n = 0;
    if (r->role != RAFT_LEADER)
        return 0;
    for (uint32_t i = 0; i < RAFT_SERVERS_MAX && n < cap; i++) {
        const struct progress *p = &r->prs[i];
        if (p->id == 0)
            continue;
        out[n++] = (struct raft_progress_info){
            .id = p->id, .role = (uint8_t)raft_config_role(&r->config, p->id),
            .state = p->state, .match = p->match, .next = p->next,
            .recent_active = r->now - p->heard_tick < r->o.election_ticks};
    }
    return n;
}
