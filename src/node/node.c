/* node.c -- one Conclave server: the loop that drives the Raft core (see node.h).
 *
 * Everything here runs on the libuv loop thread except the storage worker, which
 * only talks to us through storage_poll() and a uv_async wakeup.
 *
 * The drive cycle: every input (tick, peer message, proposal, read, storage
 * completion) calls into the core and then schedule_flush(). One idle callback per
 * loop iteration drains raft_update_take() -- so a burst of proposals arriving in
 * one iteration becomes one storage batch and one AppendEntries per follower
 * (group commit, DESIGN "one event loop thread plus a storage thread").
 *
 * Invariants:
 *   - msgs_after_persist of an update leave only after the storage worker reported
 *     durable the batch submitted for that update, or for a later one (FIFO).
 *   - a proposal's callback fires exactly once: applied (index and term match),
 *     lost (another entry took its index), or cancelled / stopped.
 *
 * Sections: types | helpers | startup | flush | storage completions | inputs |
 * snapshots | public API.
 */
#include "node/node.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/grow.h"
#include "base/env.h"
#include "node/lease_timer.h"
#include "node/transport.h"
#include "sm/machine.h"
#include "storage/snap.h"
#include "storage/storage_thread.h"
#include "storage/wal.h"

/* ==== types ============================================================== */

#define NODE_COMPLETIONS_BATCH 64 /* storage completions taken per poll */
/* A follower's inline WAL write (storage_write_inline) that takes longer than this means
 * a slow disk: the loop would stop answering heartbeats for that long, so the writes go
 * through the storage worker again for NODE_INLINE_BACKOFF_MS. */
#define NODE_INLINE_SLOW_MS    20
#define NODE_INLINE_BACKOFF_MS 10000

struct pending_prop {
    uint64_t index, term;
    node_apply_cb cb;
    void *arg;
};

/* A keepalive waiting for its ReadIndex round; in a list so node_cancel can reach it. */
struct pending_keepalive {
    struct node *node;
    int64_t lease;
    node_keepalive_cb cb; /* NULL once cancelled */
    void *arg;
    struct pending_keepalive *prev, *next;
};

struct pending_read {
    uint64_t read_id; /* 0 once the core answered and we wait for apply */
    uint64_t index;
    node_read_cb cb;
    void *arg;
};

/* A proposal waiting for company (node_propose_lazy); status != 0 once it failed, and
 * its callback is due from lazy_timer. */
struct lazy_prop {
    uint8_t *cmd;
    uint32_t len;
    int status;
    node_apply_cb cb;
    void *arg;
};

/* Messages that wait until storage batch seq is durable. */
struct held_msgs {
    uint64_t seq;
    struct raft_msg *msgs;
    uint32_t n;
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    struct env *env;
    struct raft *raft;
    struct machine *sm;
    struct wal *wal;
    struct storage *st;
    struct transport tr;
    bool tr_open;

    uv_timer_t tick;
    uv_idle_t flush_idle;
    uv_async_t storage_wake;
    uv_timer_t lazy_timer; /* proposes the lazy entries NODE_LAZY_MS after the first */
    bool flush_scheduled;
    bool stopping;
    int n_handles_open;

    uint64_t last_seq_submitted;
    struct raft_hard_state hs_submitted; /* term and vote last handed to storage */
    struct raft_read_ready *reads_copy;  /* flush(): u.reads, copied before applying */
    uint32_t cap_reads_copy;
    uint64_t last_seq_durable;
    uint64_t inline_off_until_ms; /* uv_now() before which followers use the worker */
    uint64_t last_tick_ms;        /* uv_now() at the last tick: stall detection */
    struct held_msgs *held;
    uint32_t n_held, cap_held;

    struct pending_prop *props;
    uint32_t n_props, cap_props;
    struct lazy_prop *lazy; /* in arrival order; they precede any later proposal */
    uint32_t n_lazy, cap_lazy;
    struct pending_read *reads;
    uint32_t n_reads, cap_reads;
    uint64_t next_read_id;

    /* Who is where: the --member flags, completed by the replicated directory (flags
     * win, so an operator can route one node's traffic differently, e.g. via a proxy). */
    struct node_member members[NODE_MEMBERS_MAX];
    uint32_t n_members;
    uint32_t dialed[NODE_MEMBERS_MAX]; /* peer ids handed to the transport */
    uint32_t n_dialed;
    struct raft_config dialed_for; /* configuration the dialed set was computed for */
    uint64_t members_gen;          /* bumped whenever members[] changes */

    /* observers of applied commands (watch hub, lock waiters): node_observe */
    struct node_observer observers[NODE_OBSERVERS_MAX];
    uint32_t n_observers;

    /* leases: deadlines kept by the leader only (node/lease_timer.h) */
    struct lease_timer *lease_timer;
    bool leading; /* raft_role() was LEADER at the last flush */
    uint64_t leading_term; /* ... in this term */
    struct pending_keepalive *keepalives; /* list head */

    uint64_t snap_index; /* of the newest state machine snapshot on disk */
    bool snap_saving;    /* a snap_job is writing one */
    pid_t snap_child;    /* its child process, if one encodes (killed by node_stop) */
    uint64_t full_transfer_ms; /* last leadership hand-off because the disk was full */
    uint32_t last_leader;
    struct node_stats stats;
};

/* ==== helpers ============================================================ */

const char *node_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case NODE_ENOTLEADER:
        return "this node is not the leader";
    case NODE_EFULL:
        return "too many pending requests (NODE_PENDING_MAX)";
    case NODE_ESTOPPED:
        return "the node is shutting down";
    case NODE_ELOST:
        return "leadership changed before the command committed; it was not applied";
    case NODE_EINVAL:
        return "invalid node configuration";
    case NODE_ESTORAGE:
        return "the data directory could not be opened or recovered";
    case NODE_ENOSPACE:
        return "this node's disk is full (ENOSPC): writes are refused until space is freed";
    default:
        return raft_strerror(rv);
    }
}

static void node_log(struct node *n, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n->cfg.log_cb)
        n->cfg.log_cb(n->cfg.log_arg, line);
    else
        fprintf(stderr, "conclave[%u]: %s\n", n->cfg.id, line);
}


void node_config_default(struct node_config *c)
{
    memset(c, 0, sizeof(*c));
    c->id = 1;
    snprintf(c->data_dir, sizeof(c->data_dir), "conclave-data");
    c->cluster_id = 0x636f6e636c617665ull; /* "conclave" */
    c->tick_ms = 100;
    c->election_ticks = 10;
    c->snapshot_every = 100000; /* etcd's snapshot-count; each one encodes the whole store */
    c->wal_inline_when_following = true;
    c->snapshot_in_child = true;
    c->compact_retain_revisions = 100000;
}

const struct node_config *node_get_config(const struct node *n)
{
    return &n->cfg;
}

const struct node_member *node_member(const struct node *n, uint32_t id)
{
    for (uint32_t i = 0; i < n->n_members; i++)
        if (n->members[i].id == id)
            return &n->members[i];
    return NULL;
}

const struct node_member *node_member_by_name(const struct node *n, const char *name)
{
    for (uint32_t i = 0; i < n->n_members; i++)
        if (strcmp(n->members[i].name, name) == 0)
            return &n->members[i];
    return NULL;
}

uint64_t node_members_gen(const struct node *n)
{
    return n->members_gen;
}

const struct members *node_directory(const struct node *n)
{
    return machine_members(n->sm);
}

const struct node_member *node_self(const struct node *n)
{
    return node_member(n, n->cfg.id);
}
const struct machine *node_machine(const struct node *n)
{
    return n->sm;
}

struct kv *node_kv(struct node *n)
{
    return machine_kv(n->sm);
}
struct raft *node_raft(struct node *n)
{
    return n->raft;
}
void node_get_stats(const struct node *n, struct node_stats *out)
{
    *out = n->stats;
}

void node_storage_stats(const struct node *n, struct storage_stats *out)
{
    storage_get_stats(n->st, out);
}

int node_peer_stats(const struct node *n, uint32_t id, struct transport_peer_stats *out)
{
    return transport_peer_stats(&n->tr, id, out);
}

static void schedule_flush(struct node *n);
static void refresh_members(struct node *n);
static void take_completions(struct node *n);

/* ==== flush: execute one raft_update ===================================== */

static void send_msgs(struct node *n, const struct raft_msg *msgs, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        transport_send(&n->tr, &msgs[i]); /* a dropped message is retried by Raft */
}

static void hold_msgs(struct node *n, const struct raft_msg *msgs, uint32_t count)
{
    if (!cc_grow((void **)&n->held, &n->cap_held, n->n_held + 1, sizeof(*n->held)))
        return; /* dropping is safe: votes and acks are re-sent on demand */
    struct held_msgs *h = &n->held[n->n_held];
    h->seq = n->last_seq_submitted;
    h->n = 0;
    h->msgs = calloc(count, sizeof(*h->msgs));
    if (!h->msgs)
        return;
    for (uint32_t i = 0; i < count; i++)
        if (raft_msg_copy(&h->msgs[h->n], &msgs[i]) == 0)
            h->n++;
    n->n_held++;
}

static void release_held(struct node *n)
{
    uint32_t k = 0;
    while (k < n->n_held && n->held[k].seq <= n->last_seq_durable) {
        struct held_msgs *h = &n->held[k];
        send_msgs(n, h->msgs, h->n);
        for (uint32_t i = 0; i < h->n; i++)
            raft_msg_free_copy(&h->msgs[i]);
        free(h->msgs);
        k++;
    }
    if (k == 0)
        return;
    memmove(n->held, n->held + k, (n->n_held - k) * sizeof(*n->held));
    n->n_held -= k;
}

/* Completes every proposal at or below index: applied when (index, term) match, else
 * lost -- or, for snapshot installs (unknown), outcome unknown. Each one is removed
 * before its callback runs, because callbacks may call node_cancel() and so change the
 * array; the scan restarts after every callback. */
static void finish_props(struct node *n, uint64_t index, uint64_t term,
                         const struct sm_result *res, bool unknown)
{
    for (;;) {
        uint32_t i = 0;
        while (i < n->n_props && n->props[i].index > index)
            i++;
        if (i == n->n_props)
            return;
        struct pending_prop p = n->props[i];
        memmove(&n->props[i], &n->props[i + 1], (n->n_props - i - 1) * sizeof(*n->props));
        n->n_props--;
        if (!p.cb)
            continue; /* fire-and-forget (node_propose with cb NULL) */
        if (unknown)
            p.cb(p.arg, NODE_EUNKNOWN, NULL);
        else if (p.index == index && p.term == term)
            p.cb(p.arg, res && res->err ? res->err : 0, res);
        else
            p.cb(p.arg, NODE_ELOST, NULL);
    }
}

/* Answers reads whose index is applied; same removal rule as finish_props. */
static void finish_reads_applied(struct node *n)
{
    uint64_t applied = raft_applied(n->raft);
    for (;;) {
        uint32_t i = 0;
        while (i < n->n_reads && !(n->reads[i].read_id == 0 && n->reads[i].index <= applied))
            i++;
        if (i == n->n_reads)
            return;
        struct pending_read r = n->reads[i];
        memmove(&n->reads[i], &n->reads[i + 1], (n->n_reads - i - 1) * sizeof(*n->reads));
        n->n_reads--;
        r.cb(r.arg, 0);
    }
}

static void apply_entry(struct node *n, const struct raft_entry *e)
{
    n->stats.applied_entries++;
    if (e->type != RAFT_ENTRY_COMMAND) {
        /* a configuration change (node_change) or the leader's no-op */
        finish_props(n, e->index, e->term, NULL, false);
        return;
    }
    struct sm_result res;
    machine_apply(n->sm, e->bytes, e->n_bytes, e->index, &res);
    if (res.tag == SM_TAG_MEMBERS && res.err == 0)
        refresh_members(n);
    if (res.tag == SM_TAG_LEASE && res.err == 0) {
        if (res.lease.type == LEASE_CMD_GRANT)
            lease_timer_on_grant(n->lease_timer, res.lease.id, res.lease.ttl_ms, e->index,
                                 uv_now(n->loop));
        else
            lease_timer_on_revoke(n->lease_timer, res.lease.id);
    }
    for (uint32_t i = 0; i < res.n_lease_changes; i++) { /* key-private leases (machine.h) */
        const struct sm_lease_change *lc = &res.lease_changes[i];
        if (lc->granted)
            lease_timer_on_grant(n->lease_timer, lc->id, lc->ttl_ms, e->index, uv_now(n->loop));
        else
            lease_timer_on_revoke(n->lease_timer, lc->id);
    }
    /* Observers first: they wake waiters (a lock's next holder, watchers), and the
     * proposer's own answer can wait a write longer. In a lock handoff the next holder's
     * release is what the following commit waits for; answered second, it would reach us
     * after the old holder's re-acquire and queue behind that entry's fsync. */
    for (uint32_t i = 0; i < n->n_observers; i++)
        if (n->observers[i].applied_cb)
            n->observers[i].applied_cb(n->observers[i].arg, &res);
    finish_props(n, e->index, e->term, &res, false);
    sm_result_free(&res);
}

static void answer_reads(struct node *n, const struct raft_read_ready *rr, uint32_t count)
{
    for (uint32_t k = 0; k < count; k++) {
        for (uint32_t i = 0; i < n->n_reads; i++) {
            struct pending_read *r = &n->reads[i];
            if (r->read_id != rr[k].read_id)
                continue;
            if (rr[k].status != 0) {
                node_read_cb cb = r->cb;
                void *arg = r->arg;
                n->reads[i] = n->reads[--n->n_reads];
                cb(arg, rr[k].status);
            } else {
                r->read_id = 0;
                r->index = rr[k].index;
            }
            break;
        }
    }
}

static void install_snapshot(struct node *n, const struct raft_snapshot *s)
{
    char msg[256];
    int rv = snap_save(n->env, n->cfg.data_dir, s, msg, sizeof(msg));
    if (rv != 0) {
        node_log(n, "fatal: saving the installed snapshot failed: %s", msg);
        exit(70);
    }
    struct machine *fresh = NULL;
    rv = machine_snapshot_decode(s->bytes, s->n_bytes, &fresh);
    if (rv != 0) {
        node_log(n, "fatal: the leader's snapshot at index %llu does not decode: %s",
                 (unsigned long long)s->index, sm_strerror(rv));
        exit(70);
    }
    machine_free(n->sm);
    n->sm = fresh;
    refresh_members(n);
    if (lease_timer_active(n->lease_timer)) /* restart countdowns from the new table */
        lease_timer_on_become_leader(n->lease_timer, machine_leases(n->sm), uv_now(n->loop),
                                     (uint64_t)n->cfg.election_ticks * n->cfg.tick_ms);
    for (uint32_t i = 0; i < n->n_observers; i++)
        if (n->observers[i].reset_cb)
            n->observers[i].reset_cb(n->observers[i].arg, s->index);
    n->snap_index = s->index;
    n->stats.snapshots_installed++;
    finish_props(n, s->index, 0, NULL, true); /* their outcome is not knowable here */
}

static void maybe_take_snapshot(struct node *n);
static void maybe_free(struct node *n);

/* ==== members: flags + directory, and the peers we dial ==================== */

static bool id_in(const uint32_t *ids, uint32_t count, uint32_t id)
{
    for (uint32_t i = 0; i < count; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static bool same_config(const struct raft_config *a, const struct raft_config *b)
{
    if (a->n_servers != b->n_servers)
        return false;
    for (uint32_t i = 0; i < a->n_servers; i++)
        if (a->servers[i].id != b->servers[i].id || a->servers[i].role != b->servers[i].role)
            return false;
    return true;
}

/* Dials every member of the configuration and every flag member (a joining node must
 * reach the existing ones before it is in any configuration), and hangs up on the rest. */
static void sync_peers(struct node *n)
{
    const struct raft_config *rc = raft_config(n->raft);
    n->dialed_for = *rc;
    uint32_t want[NODE_MEMBERS_MAX];
    uint32_t n_want = 0;
    for (uint32_t i = 0; i < rc->n_servers && n_want < NODE_MEMBERS_MAX; i++)
        want[n_want++] = rc->servers[i].id;
    for (uint32_t i = 0; i < n->cfg.n_members && n_want < NODE_MEMBERS_MAX; i++)
        if (!id_in(want, n_want, n->cfg.members[i].id))
            want[n_want++] = n->cfg.members[i].id;
    for (uint32_t i = 0; i < n->n_dialed; i++)
        if (!id_in(want, n_want, n->dialed[i]))
            transport_set_peer(&n->tr, n->dialed[i], NULL);
    n->n_dialed = 0;
    for (uint32_t i = 0; i < n_want; i++) {
        const struct node_member *m = node_member(n, want[i]);
        if (want[i] == n->cfg.id || !m || !m->peer_addr[0])
            continue; /* an address we do not know yet: the directory will tell */
        if (transport_set_peer(&n->tr, m->id, m->peer_addr) == 0)
            n->dialed[n->n_dialed++] = m->id;
        else
            node_log(n, "cannot dial member %u at %s: %s", m->id, m->peer_addr,
                     transport_errmsg(&n->tr));
    }
}

static void refresh_members(struct node *n)
{
    n->n_members = 0;
    for (uint32_t i = 0; i < n->cfg.n_members; i++)
        n->members[n->n_members++] = n->cfg.members[i];
    const struct members *dir = machine_members(n->sm);
    for (uint32_t i = 0; i < dir->n; i++) {
        const struct members_entry *e = &dir->e[i];
        struct node_member *m = NULL;
        for (uint32_t k = 0; k < n->n_members; k++)
            if (n->members[k].id == e->id)
                m = &n->members[k];
        if (!m) {
            if (n->n_members == NODE_MEMBERS_MAX)
                break;
            m = &n->members[n->n_members++];
            *m = (struct node_member){.id = e->id};
            snprintf(m->name, sizeof(m->name), "%s", e->name);
            snprintf(m->peer_addr, sizeof(m->peer_addr), "%s", e->peer_addr);
        }
        if (!m->http_addr[0])
            snprintf(m->http_addr, sizeof(m->http_addr), "%s", e->http_addr);
    }
    n->members_gen++;
    if (n->tr_open)
        sync_peers(n);
}

static void flush(struct node *n)
{
    for (int round = 0; round < 16 && raft_update_pending(n->raft); round++) {
        struct raft_update u;
        raft_update_take(n->raft, &u);
        if (u.snapshot)
            install_snapshot(n, u.snapshot);
        /* A change of the commit index alone is not made durable (Raft keeps it
         * volatile; recovery takes max(snapshot, recorded commit) and relearns the rest
         * from the leader): syncing it cost a second fdatasync per write. */
        bool commit_only = u.hard_state_changed && !u.snapshot && !u.truncate_from &&
                           u.n_entries == 0 && u.hard_state.term == n->hs_submitted.term &&
                           u.hard_state.vote == n->hs_submitted.vote;
        if (u.hard_state_changed && !commit_only)
            n->hs_submitted = u.hard_state;
        struct wal_batch b = {
            .snapshot_index = u.snapshot ? u.snapshot->index : 0,
            .snapshot_term = u.snapshot ? u.snapshot->term : 0,
            .truncate_from = u.truncate_from,
            .entries = u.entries,
            .n_entries = u.n_entries,
            .has_hard_state = u.hard_state_changed && !commit_only,
            .hard_state = u.hard_state,
        };
        /* Messages that need nothing durable leave before the write is handed over: the
         * leader's AppendEntries start the followers' syncs, the longer path to a commit,
         * and waking the storage worker first can put it on this CPU ahead of them. */
        send_msgs(n, u.msgs_now, u.n_msgs_now);
        bool wrote_inline = false;
        if (b.snapshot_index || b.truncate_from || b.n_entries || b.has_hard_state) {
            uint64_t seq = 0;
            /* Not leading, nothing waits on this loop but the ack, which waits for
             * exactly this write: do it here when the worker is idle, saving the
             * hand-off to the storage thread and back (etcd's followers do the same). */
            int rv = STORAGE_EBUSY;
            if (raft_role(n->raft) != RAFT_LEADER && n->cfg.wal_inline_when_following &&
                uv_now(n->loop) >= n->inline_off_until_ms) {
                uint64_t t0 = uv_hrtime();
                rv = storage_write_inline(n->st, &b, &seq);
                uint64_t took_ms = (uv_hrtime() - t0) / 1000000;
                if (rv == 0 && took_ms > NODE_INLINE_SLOW_MS) {
                    uv_update_time(n->loop);
                    n->inline_off_until_ms = uv_now(n->loop) + NODE_INLINE_BACKOFF_MS;
                    n->stats.inline_backoffs++;
                }
            }
            wrote_inline = rv == 0;
            if (rv == STORAGE_EBUSY)
                rv = storage_submit(n->st, &b, &seq);
            if (rv != 0) {
                /* Backpressure or a stopped worker: we cannot honour the durability
                 * order any more, so stop rather than risk acknowledging lost data. */
                node_log(n, "fatal: storage submit failed: %s", storage_strerror(rv));
                exit(70);
            }
            n->last_seq_submitted = seq;
            n->stats.storage_batches++;
        }
        if (u.n_msgs_after_persist > 0) {
            if (n->last_seq_submitted > n->last_seq_durable)
                hold_msgs(n, u.msgs_after_persist, u.n_msgs_after_persist);
            else
                send_msgs(n, u.msgs_after_persist, u.n_msgs_after_persist);
        }
        /* Callbacks run while we apply, and may propose or read: that can grow the
         * core's log and read queue, so u's pointers into them would dangle. Reads are
         * copied first; entries are looked up by index each time. */
        uint32_t n_reads = 0;
        if (u.n_reads > 0 && cc_grow((void **)&n->reads_copy, &n->cap_reads_copy, u.n_reads,
                                     sizeof(*n->reads_copy))) {
            memcpy(n->reads_copy, u.reads, u.n_reads * sizeof(*n->reads_copy));
            n_reads = u.n_reads; /* (no memory: those reads time out and are retried) */
        }
        const struct raft_read_ready *reads = n->reads_copy;
        uint64_t first = u.n_committed ? u.committed[0].index : 0;
        /* u is used up: the core may take inputs again. The held acks leave now, before
         * applying. */
        if (wrote_inline)
            take_completions(n);
        for (uint32_t i = 0; i < u.n_committed; i++) {
            const struct raft_entry *e = raft_entry_at(n->raft, first + i);
            CC_ASSERT(e != NULL); /* committed entries stay in memory until a snapshot */
            apply_entry(n, e);
        }
        answer_reads(n, reads, n_reads);
        finish_reads_applied(n);
    }
    if (!same_config(raft_config(n->raft), &n->dialed_for))
        sync_peers(n);
    /* Compare the term too: stepping down and winning again within one flush is a new
     * leadership whose deadlines must be extended again. */
    bool leading = raft_role(n->raft) == RAFT_LEADER;
    if (leading != n->leading || (leading && raft_term(n->raft) != n->leading_term)) {
        n->leading = leading;
        n->leading_term = raft_term(n->raft);
        if (leading) /* etcd#9395: never expire earlier than the old leader promised */
            lease_timer_on_become_leader(n->lease_timer, machine_leases(n->sm), uv_now(n->loop),
                                         (uint64_t)n->cfg.election_ticks * n->cfg.tick_ms);
        else
            lease_timer_on_step_down(n->lease_timer);
    }
    uint32_t leader = raft_leader(n->raft);
    if (leader != n->last_leader) {
        n->last_leader = leader;
        n->stats.leader_changes++;
        node_log(n, "leader is now %u (term %llu)", leader, (unsigned long long)raft_term(n->raft));
    }
    maybe_take_snapshot(n);
    if (raft_update_pending(n->raft))
        schedule_flush(n);
}

static void on_flush_idle(uv_idle_t *h)
{
    struct node *n = h->data;
    uv_idle_stop(h);
    n->flush_scheduled = false;
    if (!n->stopping)
        flush(n);
}

static void schedule_flush(struct node *n)
{
    if (n->flush_scheduled || n->stopping)
        return;
    n->flush_scheduled = true;
    uv_idle_start(&n->flush_idle, on_flush_idle);
}

/* ==== storage completions ================================================= */

/* Feeds durable batches to the core and releases the messages that waited for them. */
static void take_completions(struct node *n)
{
    struct storage_completion c[NODE_COMPLETIONS_BATCH];
    uint32_t got;
    while ((got = storage_poll(n->st, c, NODE_COMPLETIONS_BATCH)) > 0) {
        for (uint32_t i = 0; i < got; i++) {
            if (c[i].status != 0) {
                /* fsyncgate: never retry; ENOSPC: the worker refuses later batches, so
                 * the only safe continuation is a restart from what is on disk. */
                node_log(n, "fatal: storage batch %llu failed: %s%s", (unsigned long long)c[i].seq,
                         storage_strerror(c[i].status), c[i].fatal ? " (fsync failure)" : "");
                exit(c[i].status == WAL_ENOSPC ? 75 : 70);
            }
            n->last_seq_durable = c[i].seq;
            raft_persisted(n->raft, c[i].durable_index, c[i].durable_term);
        }
    }
    release_held(n);
    schedule_flush(n);
}

static void on_storage_wake(uv_async_t *h)
{
    take_completions(h->data);
}

static void storage_wakeup_cb(void *arg)
{
    uv_async_send(arg); /* the only thing the worker thread may do to the loop */
}

/* ==== inputs ============================================================== */

/* Whether the voters we heard from within an election timeout form a quorum. A leader
 * without one expires nothing (lease_timer.h claim 6). */
static bool quorum_active(struct node *n)
{
    struct raft_progress_info pi[RAFT_SERVERS_MAX];
    uint32_t count = raft_progress(n->raft, pi, RAFT_SERVERS_MAX);
    uint32_t voters = raft_config_n_voters(raft_config(n->raft)), active = 1; /* ourselves */
    for (uint32_t i = 0; i < count; i++)
        if (pi[i].role == RAFT_VOTER && pi[i].id != n->cfg.id && pi[i].recent_active)
            active++;
    return active > voters / 2;
}

/* EXPIRE proposals per tick: bounds one tick's work (a few ms) while letting expiry keep
 * up with keys given a TTL: 1024 per 100 ms tick is ~10k expiries/s. At 64 a sustained
 * 12k/s of `SET k v NX PX 3000` left keys alive long past their TTL. */
#define NODE_EXPIRE_BUDGET 1024

static void propose_expiries(struct node *n)
{
    if (!n->leading || !lease_timer_active(n->lease_timer))
        return;
    uint64_t now = uv_now(n->loop);
    if (lease_timer_next_due_ms(n->lease_timer) > now || !quorum_active(n))
        return;
    struct lease_timer_expiry ex[NODE_EXPIRE_BUDGET];
    uint32_t count = lease_timer_next_expired(n->lease_timer, now, ex, NODE_EXPIRE_BUDGET);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t cmd[LEASE_CMD_BYTES_MAX];
        size_t len = 0;
        if (lease_encode_expire(ex[i].id, ex[i].granted_index, cmd, sizeof(cmd), &len) == 0)
            node_propose(n, cmd, len, NULL, NULL); /* not applied: offered again later */
    }
}

/* A leader whose disk is full cannot make progress (it cannot store entries), so it
 * hands leadership to the most up-to-date active voter, once per election timeout. */
static void shed_leadership_if_full(struct node *n)
{
    if (!n->leading || !node_storage_full(n) || raft_transfer_target(n->raft) != 0)
        return;
    uint64_t now = uv_now(n->loop);
    if (now < n->full_transfer_ms + (uint64_t)n->cfg.election_ticks * n->cfg.tick_ms)
        return;
    n->full_transfer_ms = now;
    struct raft_progress_info pi[RAFT_SERVERS_MAX];
    uint32_t count = raft_progress(n->raft, pi, RAFT_SERVERS_MAX);
    uint32_t best = 0;
    uint64_t best_match = 0;
    for (uint32_t i = 0; i < count; i++)
        if (pi[i].role == RAFT_VOTER && pi[i].id != n->cfg.id && pi[i].recent_active &&
            pi[i].match >= best_match) {
            best = pi[i].id;
            best_match = pi[i].match;
        }
    if (best != 0 && raft_transfer(n->raft, best) == 0)
        node_log(n, "cannot store entries (disk full): handing leadership to %u", best);
}

static void on_tick(uv_timer_t *h)
{
    struct node *n = h->data;
    /* A loop that stalls misses heartbeats (leader) or ticks late: say so, with the gap,
     * because the election it can cause is otherwise a mystery (etcd's "failed to send
     * out heartbeat on time"). */
    uint64_t now = uv_now(n->loop);
    uint64_t gap = n->last_tick_ms ? now - n->last_tick_ms : 0;
    n->last_tick_ms = now;
    if (gap >= (uint64_t)NODE_STALL_TICKS * n->cfg.tick_ms) {
        n->stats.loop_stalls++;
        node_log(n, "warning: event loop stalled: %llu ms between ticks of %u ms (election "
                    "timeout %u ms)",
                 (unsigned long long)gap, n->cfg.tick_ms, n->cfg.election_ticks * n->cfg.tick_ms);
    }
    raft_tick(n->raft);
    propose_expiries(n);
    shed_leadership_if_full(n);
    schedule_flush(n);
}

static void on_peer_msg(void *data, const struct raft_msg *m)
{
    struct node *n = data;
    if (n->stopping)
        return;
    /* Disk full: entries we cannot store are not taken (no ack; the leader retries). */
    if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT) && node_storage_full(n))
        return;
    raft_step(n->raft, m); /* malformed messages are rejected by the core */
    schedule_flush(n);
}

/* ==== snapshots ============================================================ */

/* Snapshots. The state machine is not thread-safe, and encoding a big one takes long
 * (31 MB took 0.4-0.5 s here: the loop stalled, heartbeats stopped and followers started
 * elections). So a fork()ed child encodes its copy-on-write image and writes the file
 * (snap_save: temp, fsync, rename, fsync dir), as Redis's BGSAVE does; a libuv worker
 * waits for it and reads the file back, and only then does the core get the image (it
 * serves InstallSnapshot from memory) and the WAL get compacted. Until then the older
 * snapshot plus the full WAL stay the recovery point. If fork() fails (or
 * snapshot_in_child is off) the loop encodes and the worker only writes. One save at a
 * time; the job owns its image. */
struct snap_job {
    uv_work_t work;
    struct node *node;
    struct raft_snapshot snap; /* bytes owned by the job (NULL while a child makes them) */
    pid_t child;               /* > 0: a child encodes and saves the file */
    int msg_fd;                /* read end of the child's error-message pipe */
    uint64_t started_ns;
    uint64_t fork_ns; /* how long fork() held the loop: page tables are copied */
    int rv;
    char msg[256];
};

/* The child: encode, save, exit. Only this thread exists here; nothing of the parent's
 * (sockets, WAL, loop) is touched, and _exit() skips atexit handlers and leak checks. */
static void snap_child_main(struct node *n, const struct raft_snapshot *meta, int msg_fd)
{
    char msg[256] = "";
    int code = 1;
    struct raft_snapshot s = *meta;
    size_t len = 0;
    if (machine_snapshot_encode(n->sm, &s.bytes, &len) != 0) {
        snprintf(msg, sizeof(msg), "encoding the state machine failed (out of memory?)");
    } else {
        s.n_bytes = len;
        int rv = snap_save(n->env, n->cfg.data_dir, &s, msg, sizeof(msg));
        code = rv == 0 ? 0 : rv == SNAP_ESYNC ? 3 : 1;
    }
    if (code != 0) {
        ssize_t wrote = write(msg_fd, msg, strlen(msg));
        (void)wrote; /* if the message is lost, the exit code still tells */
    }
    _exit(code);
}

static void snap_job_run(uv_work_t *w)
{
    struct snap_job *j = w->data;
    struct node *n = j->node;
    if (j->child <= 0) {
        j->rv = snap_save(n->env, n->cfg.data_dir, &j->snap, j->msg, sizeof(j->msg));
        return;
    }
    int status = 0;
    while (waitpid(j->child, &status, 0) < 0 && errno == EINTR)
        ;
    ssize_t got = read(j->msg_fd, j->msg, sizeof(j->msg) - 1);
    j->msg[got > 0 ? got : 0] = '\0';
    close(j->msg_fd);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        j->rv = WIFEXITED(status) && WEXITSTATUS(status) == 3 ? SNAP_ESYNC : SNAP_EIO;
        if (!j->msg[0])
            snprintf(j->msg, sizeof(j->msg), "the snapshot child %s %d",
                     WIFEXITED(status) ? "exited with" : "was killed by signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return;
    }
    /* Read back what the child wrote: checked like any snapshot, and the core's copy. */
    struct snap_info infos[NODE_SNAPSHOT_KEEP + 1];
    uint32_t n_infos = 0;
    j->rv = snap_list(n->env, n->cfg.data_dir, infos, NODE_SNAPSHOT_KEEP + 1, &n_infos);
    const char *name = NULL;
    for (uint32_t i = 0; j->rv == 0 && i < n_infos; i++)
        if (infos[i].index == j->snap.index)
            name = infos[i].name;
    if (j->rv == 0 && !name) {
        j->rv = SNAP_ENOENT;
        snprintf(j->msg, sizeof(j->msg), "the child's snapshot file is missing");
    }
    if (j->rv == 0) {
        struct raft_snapshot loaded;
        j->rv = snap_load(n->env, n->cfg.data_dir, name, &loaded, j->msg, sizeof(j->msg));
        if (j->rv == 0) {
            j->snap.bytes = loaded.bytes;
            j->snap.n_bytes = loaded.n_bytes;
        }
    }
}

static void snap_job_done(uv_work_t *w, int status)
{
    struct snap_job *j = w->data;
    struct node *n = j->node;
    n->snap_saving = false;
    n->snap_child = 0;
    if (status != 0 || j->rv != 0) {
        node_log(n, "snapshot at %llu not saved: %s", (unsigned long long)j->snap.index,
                 status != 0 ? uv_strerror(status) : j->msg);
        if (j->rv == SNAP_ESYNC) {
            node_log(n, "fatal: fsync of a snapshot failed (never retried: fsyncgate)");
            exit(70);
        }
    } else if (!n->stopping) {
        /* a child's image goes to the core now (an encode on the loop gave it at once) */
        if (j->child > 0 &&
            raft_snapshot_adopt(n->raft, j->snap.index, j->snap.bytes, j->snap.n_bytes) == 0)
            j->snap.bytes = NULL;
        if (j->child > 0)
            node_log(n, "snapshot at %llu: %llu bytes in %llu ms by a child process (fork "
                        "held the loop %llu us)",
                     (unsigned long long)j->snap.index, (unsigned long long)j->snap.n_bytes,
                     (unsigned long long)((uv_hrtime() - j->started_ns) / 1000000),
                     (unsigned long long)(j->fork_ns / 1000));
        else
            node_log(n, "snapshot at %llu: %llu bytes encoded on the loop",
                     (unsigned long long)j->snap.index, (unsigned long long)j->snap.n_bytes);
        if (j->snap.index > n->snap_index)
            n->snap_index = j->snap.index;
        n->stats.snapshots_taken++;
        snap_prune(n->env, n->cfg.data_dir, NODE_SNAPSHOT_KEEP, NULL);
        struct snap_info infos[NODE_SNAPSHOT_KEEP];
        uint32_t n_infos = 0;
        if (snap_list(n->env, n->cfg.data_dir, infos, NODE_SNAPSHOT_KEEP, &n_infos) == 0 &&
            n_infos > 0)
            storage_compact(n->st, infos[n_infos - 1].index, NULL); /* the oldest kept */
    }
    free(j->snap.bytes);
    free(j);
    n->n_handles_open--; /* the job held the node open (node_free waits for it) */
    maybe_free(n);
}

/* In the child: closes every inherited descriptor but stdio and keep. A socket the parent
 * closes while the child runs (a client it disconnects, a peer link it redials, the
 * listener at shutdown) would otherwise stay open, and its far end see no FIN, until the
 * child exits. */
static void close_inherited_fds(int keep)
{
    /* /proc/self/fd names exactly the open ones (a loop to _SC_OPEN_MAX can be a million
     * close calls); the names are read first, as closing while listing would skip some. */
    int open_fds[4096];
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        int dir_fd = dirfd(d);
        struct dirent *e;
        while (n < (int)(sizeof(open_fds) / sizeof(open_fds[0])) && (e = readdir(d)) != NULL) {
            int fd = atoi(e->d_name);
            if (fd > 2 && fd != keep && fd != dir_fd)
                open_fds[n++] = fd;
        }
        closedir(d);
        for (int i = 0; i < n; i++)
            close(open_fds[i]);
        if (n < (int)(sizeof(open_fds) / sizeof(open_fds[0])))
            return;
    }
    long max = sysconf(_SC_OPEN_MAX); /* no /proc, or very many: close them all */
    if (max < 0 || max > 1048576)
        max = 1048576;
    for (int fd = 3; fd < (int)max; fd++)
        if (fd != keep)
            close(fd);
}

/* Starts a child that encodes and saves the snapshot at applied; false when fork (or the
 * pipe) failed and the caller should encode on the loop. */
static bool start_snapshot_child(struct node *n, struct snap_job *j, uint64_t applied)
{
    if (raft_snapshot_meta(n->raft, applied, &j->snap) != 0)
        return false;
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    uint64_t t0 = uv_hrtime();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Die with the parent: an orphan would keep the ports, the data directory's lock
         * and its disk bandwidth after a kill -9, into the restarted server's life. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(4);
        close_inherited_fds(fds[1]);
        snap_child_main(n, &j->snap, fds[1]); /* never returns */
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        node_log(n, "warning: fork for the snapshot failed (%s): encoding on the loop",
                 strerror(errno));
        return false;
    }
    j->fork_ns = uv_hrtime() - t0;
    j->child = pid;
    j->msg_fd = fds[0];
    n->snap_child = pid;
    return true;
}

static void maybe_take_snapshot(struct node *n)
{
    uint64_t applied = raft_applied(n->raft);
    if (n->cfg.snapshot_every == 0 || n->snap_saving ||
        applied < n->snap_index + n->cfg.snapshot_every)
        return;
    struct snap_job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->node = n;
    j->work.data = j;
    j->started_ns = uv_hrtime();
    if (!n->cfg.snapshot_in_child || !start_snapshot_child(n, j, applied)) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (machine_snapshot_encode(n->sm, &buf, &len) != 0) {
            free(j);
            return;
        }
        if (raft_snapshot_taken(n->raft, applied, buf, len) != 0) {
            free(buf);
            free(j);
            return;
        }
        j->snap = *raft_snapshot(n->raft);
        j->snap.bytes = buf; /* our copy: the core keeps its own */
        j->child = 0;
    }
    n->snap_saving = true;
    n->n_handles_open++;
    if (uv_queue_work(n->loop, &j->work, snap_job_run, snap_job_done) != 0) {
        n->snap_saving = false;
        n->n_handles_open--;
        if (j->child > 0) {
            kill(j->child, SIGKILL);
            waitpid(j->child, NULL, 0);
            close(j->msg_fd);
            n->snap_child = 0;
        }
        free(j->snap.bytes);
        free(j);
    }
}

/* ==== startup ============================================================== */

static int bootstrap_wal(struct node *n, struct wal *w)
{
    struct raft_config c = {0};
    for (uint32_t i = 0; i < n->cfg.n_members; i++)
        c.servers[c.n_servers++] = (struct raft_server){n->cfg.members[i].id, RAFT_VOTER};
    uint8_t buf[RAFT_CONFIG_BYTES_MAX];
    struct raft_entry e;
    int rv = raft_bootstrap_entry(&c, buf, sizeof(buf), &e);
    if (rv != 0)
        return rv;
    struct wal_batch b = {
        .entries = &e, .n_entries = 1, .has_hard_state = true, .hard_state = {.term = 1}};
    rv = wal_write(w, &b);
    if (rv == 0)
        rv = wal_sync(w, NULL, NULL);
    return rv;
}

static void on_handle_closed(uv_handle_t *h);
static void on_transport_closed(struct transport *t);

static bool node_member_in(const struct node_config *c, uint32_t id)
{
    for (uint32_t i = 0; i < c->n_members; i++)
        if (c->members[i].id == id)
            return true;
    return false;
}

int node_start(uv_loop_t *loop, const struct node_config *c, struct node **out, char *msg,
               size_t msg_cap)
{
    int rv = NODE_EINVAL;
    if (c->id == 0 || c->n_members == 0 || !node_member_in(c, c->id) || c->tick_ms == 0) {
        snprintf(msg, msg_cap, "node id %u must be one of the %u members", c->id, c->n_members);
        return NODE_EINVAL;
    }
    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        return NODE_EFULL;
    n->loop = loop;
    n->cfg = *c;
    n->env = env_posix();
    n->env->mkdir(n->env, c->data_dir);

    /* 1. the newest valid snapshot, if any */
    struct raft_snapshot snap = {0};
    struct snap_info info;
    char why[512] = "";
    bool have_snap = false;
    rv = snap_load_latest(n->env, c->data_dir, &snap, &info, why, sizeof(why));
    if (rv == 0) {
        have_snap = true;
        rv = machine_snapshot_decode(snap.bytes, snap.n_bytes, &n->sm);
        if (rv != 0) {
            snprintf(msg, msg_cap, "snapshot %s does not decode: %s", info.name, sm_strerror(rv));
            goto err_after_snap;
        }
        n->snap_index = snap.index;
    } else if (rv != SNAP_ENOENT) {
        snprintf(msg, msg_cap, "loading snapshots from %s: %s", c->data_dir, why);
        goto err_after_snap;
    } else if ((rv = machine_new(&n->sm)) != 0) {
        snprintf(msg, msg_cap, "out of memory");
        goto err_after_snap;
    }

    /* 2. the WAL; a brand-new founding member writes the bootstrap entry */
    struct wal_options wo;
    wal_options_default(&wo);
    wo.create = true;
    struct wal_recovered rec;
    rv = wal_open(n->env, c->data_dir, &wo, &n->wal, &rec, why, sizeof(why));
    if (rv != 0) {
        snprintf(msg, msg_cap, "opening the WAL in %s: %s", c->data_dir, why);
        goto err_after_kv;
    }
    if (!rec.has_hard_state && rec.n_entries == 0 && !have_snap && !c->join) {
        wal_recovered_free(&rec);
        rv = bootstrap_wal(n, n->wal);
        if (rv != 0) {
            snprintf(msg, msg_cap, "bootstrapping %s: %s", c->data_dir, wal_strerror(rv));
            goto err_after_wal;
        }
        wal_close(n->wal);
        rv = wal_open(n->env, c->data_dir, &wo, &n->wal, &rec, why, sizeof(why));
        if (rv != 0) {
            snprintf(msg, msg_cap, "reopening the WAL in %s: %s", c->data_dir, why);
            goto err_after_kv;
        }
    }

    /* 3. the Raft core */
    struct raft_options ro;
    raft_options_default(&ro, c->id, c->cluster_id ^ ((uint64_t)c->id << 32) ^ rec.last_index);
    ro.election_ticks = c->election_ticks;
    struct raft_recovered rr = {.hard_state = rec.hard_state,
                                .snapshot = have_snap ? &snap : NULL,
                                .entries = rec.entries,
                                .n_entries = rec.n_entries};
    n->hs_submitted = rec.hard_state; /* what is on disk already */
    rv = raft_new(&ro, &rr, &n->raft);
    wal_recovered_free(&rec);
    if (rv != 0) {
        snprintf(msg, msg_cap, "the recovered log is inconsistent: %s", raft_strerror(rv));
        goto err_after_wal;
    }

    rv = lease_timer_new(&n->lease_timer);
    if (rv != 0) {
        snprintf(msg, msg_cap, "out of memory");
        goto err_after_raft;
    }

    /* 4. storage worker, transport, timers */
    uv_async_init(loop, &n->storage_wake, on_storage_wake);
    n->storage_wake.data = n;
    n->n_handles_open++;
    struct storage_options so = {.wakeup_arg = &n->storage_wake, .wakeup_cb = storage_wakeup_cb,
                                 .retry_enospc = true};
    rv = storage_start(n->wal, &so, &n->st);
    if (rv != 0) {
        snprintf(msg, msg_cap, "starting the storage thread: %s", storage_strerror(rv));
        goto err_after_raft;
    }
    const struct node_member *self = NULL;
    for (uint32_t i = 0; i < c->n_members; i++)
        if (c->members[i].id == c->id)
            self = &c->members[i];
    CC_ASSERT(self != NULL); /* checked above: c->id is one of c->members */
    rv = transport_init(&n->tr, loop, c->id, c->cluster_id, self->peer_addr, on_peer_msg, n);
    n->tr_open = true;
    if (rv != 0) {
        snprintf(msg, msg_cap, "listening for peers on %s: %s", self->peer_addr,
                 transport_errmsg(&n->tr));
        goto err_after_storage;
    }
    if (c->log_cb)
        transport_set_log(&n->tr, c->log_cb, c->log_arg);
    refresh_members(n); /* the flags, plus a snapshot's directory; dials the peers */
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    n->n_handles_open++;
    uv_timer_start(&n->tick, on_tick, c->tick_ms, c->tick_ms);
    uv_idle_init(loop, &n->flush_idle);
    n->flush_idle.data = n;
    n->n_handles_open++;
    uv_timer_init(loop, &n->lazy_timer);
    n->lazy_timer.data = n;
    n->n_handles_open++;
    if (have_snap)
        snap_free(&snap);
    schedule_flush(n); /* apply what the WAL says is committed */
    *out = n;
    return 0;

err_after_storage:
    storage_stop(n->st);
    n->st = NULL;
err_after_raft:
    lease_timer_free(n->lease_timer);
    n->lease_timer = NULL;
    raft_free(n->raft);
    n->raft = NULL;
err_after_wal:
    if (n->st == NULL && n->wal)
        wal_close(n->wal);
    n->wal = NULL;
err_after_kv:
    machine_free(n->sm);
    n->sm = NULL;
err_after_snap:
    if (have_snap)
        snap_free(&snap);
    /* handles already initialised close asynchronously and free n when done */
    if (n->n_handles_open > 0 || n->tr_open) {
        n->stopping = true;
        if (n->tr_open)
            transport_close(&n->tr, on_transport_closed);
        if (n->n_handles_open > 0)
            uv_close((uv_handle_t *)&n->storage_wake, on_handle_closed);
    } else {
        free(n);
    }
    return rv ? rv : NODE_ESTORAGE;
}

/* ==== public API ============================================================= */

bool node_storage_full(const struct node *n)
{
    return n->st && storage_full(n->st);
}

static int propose_now(struct node *n, const uint8_t *cmd, size_t len, node_apply_cb cb,
                       void *arg)
{
    if (n->stopping)
        return NODE_ESTOPPED;
    if (node_storage_full(n))
        return NODE_ENOSPACE;
    if (n->n_props >= NODE_PENDING_MAX)
        return NODE_EFULL;
    if (len > RAFT_ENTRY_BYTES_MAX)
        return RAFT_ETOOBIG;
    uint64_t index = 0;
    int rv = raft_propose(n->raft, cmd, (uint32_t)len, &index);
    if (rv == RAFT_ENOTLEADER)
        return NODE_ENOTLEADER;
    if (rv != 0)
        return rv;
    if (!cc_grow((void **)&n->props, &n->cap_props, n->n_props + 1, sizeof(*n->props)))
        return NODE_EFULL; /* the entry is proposed; it will apply without a callback */
    n->props[n->n_props++] =
        (struct pending_prop){.index = index, .term = raft_term(n->raft), .cb = cb, .arg = arg};
    n->stats.proposals++;
    schedule_flush(n);
    return 0;
}

static void on_lazy_timer(uv_timer_t *t);

/* Proposes the waiting lazy entries, in order. One that fails keeps its place with its
 * status, and its callback runs from the timer, never inside the caller's propose. */
static void propose_lazy(struct node *n, bool alone)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n->n_lazy; i++) {
        struct lazy_prop *l = &n->lazy[i];
        if (l->status == 0) {
            l->status = propose_now(n, l->cmd, l->len, l->cb, l->arg);
            if (l->status == 0) {
                free(l->cmd);
                n->stats.lazy_proposals++;
                n->stats.lazy_alone += alone;
                continue;
            }
        }
        n->lazy[kept++] = *l;
    }
    n->n_lazy = kept;
    if (kept > 0)
        uv_timer_start(&n->lazy_timer, on_lazy_timer, 0, 0);
    else
        uv_timer_stop(&n->lazy_timer);
}

static void on_lazy_timer(uv_timer_t *t)
{
    struct node *n = t->data;
    propose_lazy(n, true);
    /* One at a time: a callback may node_cancel() or propose lazily again. */
    for (;;) {
        uint32_t i = 0;
        while (i < n->n_lazy && n->lazy[i].status == 0)
            i++;
        if (i == n->n_lazy)
            break;
        struct lazy_prop l = n->lazy[i];
        memmove(&n->lazy[i], &n->lazy[i + 1], (n->n_lazy - i - 1) * sizeof(*n->lazy));
        n->n_lazy--;
        free(l.cmd);
        if (l.cb)
            l.cb(l.arg, l.status, NULL);
    }
    if (n->n_lazy == 0)
        uv_timer_stop(&n->lazy_timer);
}

int node_propose(struct node *n, const uint8_t *cmd, size_t len, node_apply_cb cb, void *arg)
{
    if (n->n_lazy > 0)
        propose_lazy(n, false); /* they arrived first, so they go first */
    return propose_now(n, cmd, len, cb, arg);
}

bool node_drop_lazy(struct node *n, void *arg)
{
    bool dropped = false;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < n->n_lazy; i++) {
        if (n->lazy[i].arg == arg && n->lazy[i].status == 0) {
            free(n->lazy[i].cmd);
            dropped = true;
        } else {
            n->lazy[keep++] = n->lazy[i];
        }
    }
    n->n_lazy = keep;
    return dropped;
}

int node_propose_lazy(struct node *n, const uint8_t *cmd, size_t len, node_apply_cb cb,
                      void *arg)
{
    if (n->stopping)
        return NODE_ESTOPPED;
    if (raft_role(n->raft) != RAFT_LEADER)
        return NODE_ENOTLEADER;
    if (len > RAFT_ENTRY_BYTES_MAX)
        return RAFT_ETOOBIG;
    if (n->n_lazy >= NODE_LAZY_MAX)
        return node_propose(n, cmd, len, cb, arg);
    if (!cc_grow((void **)&n->lazy, &n->cap_lazy, n->n_lazy + 1, sizeof(*n->lazy)))
        return node_propose(n, cmd, len, cb, arg);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return node_propose(n, cmd, len, cb, arg);
    memcpy(copy, cmd, len);
    n->lazy[n->n_lazy++] =
        (struct lazy_prop){.cmd = copy, .len = (uint32_t)len, .cb = cb, .arg = arg};
    if (n->n_lazy == 1)
        uv_timer_start(&n->lazy_timer, on_lazy_timer, NODE_LAZY_MS, 0);
    return 0;
}

int node_read(struct node *n, bool linearizable, node_read_cb cb, void *arg)
{
    if (n->stopping)
        return NODE_ESTOPPED;
    if (!linearizable || n->cfg.test_stale_reads) {
        cb(arg, 0);
        return 0;
    }
    if (n->n_reads >= NODE_PENDING_MAX)
        return NODE_EFULL;
    if (!cc_grow((void **)&n->reads, &n->cap_reads, n->n_reads + 1, sizeof(*n->reads)))
        return NODE_EFULL;
    uint64_t id = ++n->next_read_id;
    int rv = raft_read_index(n->raft, id);
    if (rv != 0)
        return rv;
    n->reads[n->n_reads++] = (struct pending_read){.read_id = id, .cb = cb, .arg = arg};
    n->stats.reads++;
    schedule_flush(n);
    return 0;
}

int node_change(struct node *n, enum raft_change_op op, uint32_t id, node_apply_cb cb, void *arg)
{
    if (n->n_lazy > 0)
        propose_lazy(n, false);
    if (n->stopping)
        return NODE_ESTOPPED;
    if (node_storage_full(n))
        return NODE_ENOSPACE;
    if (n->n_props >= NODE_PENDING_MAX)
        return NODE_EFULL;
    if (!cc_grow((void **)&n->props, &n->cap_props, n->n_props + 1, sizeof(*n->props)))
        return NODE_EFULL;
    uint64_t index = 0;
    int rv = raft_change(n->raft, op, id, &index);
    if (rv == RAFT_ENOTLEADER)
        return NODE_ENOTLEADER;
    if (rv != 0)
        return rv;
    n->props[n->n_props++] =
        (struct pending_prop){.index = index, .term = raft_term(n->raft), .cb = cb, .arg = arg};
    schedule_flush(n);
    return 0;
}

static void keepalive_unlink(struct node *n, struct pending_keepalive *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        n->keepalives = k->next;
    if (k->next)
        k->next->prev = k->prev;
}

/* The ReadIndex round proved we still lead and we applied up to it (lease_timer.h
 * claims 1-2): only now may the deadline move. */
static void on_keepalive_read(void *arg, int status)
{
    struct pending_keepalive *k = arg;
    struct node *n = k->node;
    keepalive_unlink(n, k);
    node_keepalive_cb cb = k->cb;
    void *cb_arg = k->arg;
    int64_t lease = k->lease;
    free(k);
    if (!cb)
        return; /* cancelled */
    if (status != 0) {
        cb(cb_arg, status, 0);
        return;
    }
    uint64_t deadline = 0;
    int64_t ttl = 0;
    int rv = lease_timer_keepalive(n->lease_timer, lease, uv_now(n->loop), &deadline, &ttl);
    if (rv == LEASE_TIMER_ENOTLEADER)
        rv = NODE_ENOTLEADER;
    cb(cb_arg, rv, ttl);
}

int node_lease_keepalive(struct node *n, int64_t lease, node_keepalive_cb cb, void *arg)
{
    if (n->stopping)
        return NODE_ESTOPPED;
    if (!n->leading)
        return NODE_ENOTLEADER;
    struct pending_keepalive *k = calloc(1, sizeof(*k));
    if (!k)
        return NODE_EFULL;
    *k = (struct pending_keepalive){.node = n, .lease = lease, .cb = cb, .arg = arg,
                                    .next = n->keepalives};
    if (n->keepalives)
        n->keepalives->prev = k;
    n->keepalives = k;
    int rv = node_read(n, true, on_keepalive_read, k);
    if (rv != 0) {
        keepalive_unlink(n, k);
        free(k);
    }
    return rv;
}

int node_lease_remaining(const struct node *n, int64_t lease, uint64_t *remaining_ms)
{
    if (!n->leading)
        return NODE_ENOTLEADER;
    return lease_timer_remaining_ms(n->lease_timer, lease, uv_now(n->loop), remaining_ms);
}

int node_observe(struct node *n, const struct node_observer *o)
{
    if (n->n_observers == NODE_OBSERVERS_MAX)
        return NODE_EFULL;
    n->observers[n->n_observers++] = *o;
    return 0;
}

void node_unobserve(struct node *n, void *arg)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < n->n_observers; i++)
        if (n->observers[i].arg != arg)
            n->observers[keep++] = n->observers[i];
    n->n_observers = keep;
}

void node_cancel(struct node *n, void *arg)
{
    for (struct pending_keepalive *k = n->keepalives; k; k = k->next)
        if (k->arg == arg)
            k->cb = NULL;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < n->n_props; i++)
        if (n->props[i].arg != arg)
            n->props[keep++] = n->props[i];
    n->n_props = keep;
    keep = 0;
    for (uint32_t i = 0; i < n->n_lazy; i++) {
        if (n->lazy[i].arg == arg)
            free(n->lazy[i].cmd); /* never proposed: as if it had not been asked for */
        else
            n->lazy[keep++] = n->lazy[i];
    }
    n->n_lazy = keep;
    keep = 0;
    for (uint32_t i = 0; i < n->n_reads; i++)
        if (n->reads[i].arg != arg)
            n->reads[keep++] = n->reads[i];
    n->n_reads = keep;
}

static void node_free(struct node *n)
{
    for (uint32_t i = 0; i < n->n_held; i++) {
        for (uint32_t k = 0; k < n->held[i].n; k++)
            raft_msg_free_copy(&n->held[i].msgs[k]);
        free(n->held[i].msgs);
    }
    free(n->held);
    free(n->props);
    for (uint32_t i = 0; i < n->n_lazy; i++)
        free(n->lazy[i].cmd);
    free(n->lazy);
    free(n->reads);
    free(n->reads_copy);
    lease_timer_free(n->lease_timer);
    if (n->st)
        storage_stop(n->st);
    if (n->wal)
        wal_close(n->wal);
    raft_free(n->raft);
    machine_free(n->sm);
    free(n);
}

static void maybe_free(struct node *n)
{
    if (n->n_handles_open == 0 && !n->tr_open)
        node_free(n);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct node *n = h->data;
    n->n_handles_open--;
    maybe_free(n);
}

static void on_transport_closed(struct transport *t)
{
    struct node *n = (struct node *)((char *)t - offsetof(struct node, tr));
    n->tr_open = false;
    maybe_free(n);
}

void node_stop(struct node *n)
{
    if (n->stopping)
        return;
    n->stopping = true;
    /* Pop before calling: callbacks may node_cancel() and change the arrays. */
    while (n->n_props > 0) {
        struct pending_prop p = n->props[--n->n_props];
        if (p.cb)
            p.cb(p.arg, NODE_ESTOPPED, NULL);
    }
    while (n->n_lazy > 0) {
        struct lazy_prop l = n->lazy[--n->n_lazy];
        free(l.cmd);
        if (l.cb)
            l.cb(l.arg, NODE_ESTOPPED, NULL);
    }
    while (n->n_reads > 0) {
        struct pending_read r = n->reads[--n->n_reads];
        r.cb(r.arg, NODE_ESTOPPED);
    }
    if (n->snap_child > 0) /* its temp file is removed by the next snap_prune */
        kill(n->snap_child, SIGKILL);
    uv_close((uv_handle_t *)&n->tick, on_handle_closed);
    uv_close((uv_handle_t *)&n->lazy_timer, on_handle_closed);
    uv_close((uv_handle_t *)&n->flush_idle, on_handle_closed);
    uv_close((uv_handle_t *)&n->storage_wake, on_handle_closed);
    transport_close(&n->tr, on_transport_closed);
}
