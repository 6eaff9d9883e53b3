/* host.c -- the node host: runs one Raft core exactly per the raft.h contract.
 *
 * After every input to a core (tick, message, proposal, read, persisted,
 * snapshot taken, membership change, transfer) host_drain() takes the update
 * and handles it in contract order:
 *   1. persist: snapshot, truncate, append, hard state -> the node's disk model
 *      (unsynced writes; checks see every stored entry and hard state);
 *   2. send msgs_now at once;
 *   3. queue a disk sync (FIFO per node, fault_fsync_us() latency) that, when it
 *      completes, makes the batch durable, calls raft_persisted() with the
 *      stored log's last entry as of the batch, then sends msgs_after_persist;
 *   4. restore a received snapshot, apply committed entries to the KV state
 *      machine (client.c learns of applied writes);
 *   5. hand reads to client.c, which serves them once applied >= read index.
 * Then the host may snapshot its state machine (an input too, so it loops),
 * checks that its stored log ends where the core's does, and runs checks_node().
 * Everything in an update is copied before the next call into the core.
 *
 * Lock seeds (lockworld.h): lease and lock commands go to the node's lock machine
 * (lockhost.c) while the toy KV skips their indexes; keepalive reads are routed by their
 * read id; a host snapshot image is the KV image followed by the lock machine's; each
 * drain ends with the node's leading transition and each tick may propose expiries.
 *
 * Node lifecycle: host_restart() boots a core from the durable image (and the
 * KV state from the durable snapshot); host_crash() frees the core, drops the
 * queued syncs and held events and lets the disk lose unsynced writes;
 * host_pause()/host_resume() stop and restart ticks, holding events between.
 *
 * Invariants: a node is either down (raft == NULL, events dropped) or up;
 * an up node is paused (events held, no ticks) or running; epoch bumps on every
 * crash so stale sync, crash and restart events are recognised and ignored.
 *
 * Sections: network | update handling | events | lifecycle.
 */
#include <inttypes.h>
#include <string.h>

#include "base/assert.h"
#include "storage/snap.h"
#include "lockworld.h"
#include "mem.h"
#include "world.h"

#define HOST_TRAILING_ENTRIES 5 /* small, so slow followers need snapshots */

/* ---- network ------------------------------------------------------------------ */

static void host_describe_msg(const struct raft_msg *m, char *buf, size_t cap)
{
    const char *name = raft_msg_type_name(m->type);
    switch (m->type) {
    case RAFT_MSG_APPEND:
        snprintf(buf, cap, "%s term=%" PRIu64 " prev=%" PRIu64 "/%" PRIu64 " n=%u commit=%" PRIu64,
                 name, m->term, m->append.prev_index, m->append.prev_term, m->append.n_entries,
                 m->append.commit);
        break;
    case RAFT_MSG_APPEND_RESP:
        snprintf(buf, cap, "%s term=%" PRIu64 " %s index=%" PRIu64, name, m->term,
                 m->append_resp.reject ? "reject" : "ok", m->append_resp.index);
        break;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE_RESP:
        snprintf(buf, cap, "%s term=%" PRIu64 " %s", name, m->term,
                 m->vote_resp.granted ? "granted" : "refused");
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(buf, cap, "%s term=%" PRIu64 " snap=%" PRIu64 " off=%" PRIu64 "/%" PRIu64, name,
                 m->term, m->snapshot.index, m->snapshot.offset, m->snapshot.n_total);
        break;
    default:
        snprintf(buf, cap, "%s term=%" PRIu64, name, m->term);
        break;
    }
}

/* Puts a copy of m on the wire from node n (raft.h steps 2 and 3). */
static void host_send(struct world *w, struct world_node *n, const struct raft_msg *m, bool at_sync)
{
    if (checks_send(&w->checks, n->id, m, &n->disk, at_sync) != 0) {
        world_fail_checks(w);
        return;
    }
    if (m->to < 1 || m->to > w->n_nodes || m->to == n->id || m->from != n->id) {
        world_fail(w, "host-contract", "n%u sent %s from n%u to n%u", n->id,
                   raft_msg_type_name(m->type), m->from, m->to);
        return;
    }
    if (w->cfg->verbose) {
        char what[160];
        host_describe_msg(m, what, sizeof(what));
        world_vtrace(w, n->id, "-> n%u %s", m->to, what);
    }
    if (!world_link_up(w, n->id, m->to) || prng_chance(&w->rng_net, w->k.loss_ppm))
        return;
    uint32_t copies = prng_chance(&w->rng_net, w->k.dup_ppm) ? 2 : 1;
    for (uint32_t i = 0; i < copies; i++) {
        struct raft_msg *c = mem_calloc(1, sizeof(*c));
        int rv = raft_msg_copy(c, m);
        if (rv != 0) {
            free(c);
            world_fail(w, "host-contract", "raft_msg_copy: %s", raft_strerror(rv));
            return;
        }
        world_push(w, w->now_us + world_net_delay_us(w), WEV_DELIVER, m->to, n->id, c);
    }
}

static void host_free_msg(struct raft_msg *m)
{
    raft_msg_free_copy(m);
    free(m);
}

/* ---- real storage ------------------------------------------------------------------ */

/* A fatal storage error (node.c exits 70, or 75 for ENOSPC): the node writes nothing
 * more and crashes at once, before the next event; msgs_now already handed out are
 * harmless (they promise nothing durable). */
static void host_storage_failed(struct world *w, struct world_node *n, int rv, const char *msg)
{
    if (n->storage_failed)
        return;
    n->storage_failed = true;
    bool nospc = rv == WAL_ENOSPC || rv == SNAP_ENOSPC;
    bool sync = rv == WAL_ESYNC || rv == SNAP_ESYNC;
    if (nospc)
        w->res->n_enospc++;
    if (sync)
        w->res->n_fsync_fatal++;
    world_trace(w, n->id, "storage failed (%s): %s", nospc ? "ENOSPC" : sync ? "fsync" : "io", msg);
    world_push(w, w->now_us, WEV_STORAGE_FATAL, n->id, n->epoch, NULL);
}

void host_storage_fatal(struct world *w, struct world_node *n)
{
    host_crash(w, n, "storage failure");
    uint64_t down = 1000 + prng_below(&w->rng_wal, 30000);
    world_push(w, w->now_us + down, WEV_RESTART, n->id, n->epoch, NULL);
}

/* Before a sync: maybe make this fsync fail or the disk fill up (fault phase only). */
static void host_storage_faults(struct world *w, struct world_node *n)
{
    if (w->phase != WORLD_FAULTS)
        return;
    if (prng_chance(&w->rng_wal, w->k.fsync_fail_ppm))
        dwal_fail_next_sync(&n->dw);
    if (prng_chance(&w->rng_wal, w->k.enospc_ppm))
        dwal_limit_space(&n->dw, prng_below(&w->rng_wal, 8192), false);
}

/* ---- update handling ----------------------------------------------------------- */

static void host_check(struct world *w, struct world_node *n)
{
    bool became = false;
    if (checks_node(&w->checks, n->id, n->raft, &became) != 0) {
        world_fail_checks(w);
        return;
    }
    int role = raft_role(n->raft);
    uint64_t term = raft_term(n->raft), commit = raft_commit(n->raft);
    if (role != n->seen_role || term != n->seen_term) {
        world_trace(w, n->id, "%s term=%" PRIu64 " last=%" PRIu64 "/%" PRIu64 " commit=%" PRIu64,
                    raft_role_name(role), term, raft_last_index(n->raft), raft_last_term(n->raft),
                    commit);
        n->seen_role = role;
        n->seen_term = term;
    }
    if (commit != n->seen_commit) {
        world_vtrace(w, n->id, "commit=%" PRIu64 " applied=%" PRIu64, commit, n->kv.applied_index);
        n->seen_commit = commit;
    }
    if (became)
        fault_on_elected(w, n);
    if (became && w->failover_pending && term > w->failover_term) {
        struct sim_result *res = w->res;
        uint64_t ticks = (w->now_us - w->failover_start_us + SIM_TICK_US / 2) / SIM_TICK_US;
        if (res->n_failover < SIM_FAILOVER_MAX)
            res->failover_ticks[res->n_failover++] = (uint32_t)ticks;
        w->failover_pending = false;
    }
}

static void host_apply(struct world *w, struct world_node *n, const struct raft_entry *e)
{
    int64_t result = 0;
    bool lock_cmd = w->lk != NULL && lockhost_is_cmd(e);
    int rv = e->type == RAFT_ENTRY_COMMAND && !lock_cmd
                 ? kvsm_apply(&n->kv, e->index, e->bytes, e->n_bytes, &result)
                 : kvsm_skip(&n->kv, e->index);
    if (rv != 0) {
        world_fail(w, "state-machine",
                   "n%u cannot apply %" PRIu64 "/%" PRIu64 " (applied %" PRIu64 "): %s", n->id,
                   e->index, e->term, n->kv.applied_index, kvsm_strerror(rv));
        return;
    }
    if (checks_apply(&w->checks, n->id, raft_term(n->raft), e, n->kv.digest) != 0) {
        world_fail_checks(w);
        return;
    }
    if (e->type == RAFT_ENTRY_COMMAND)
        client_applied(w, n, e, result);
    if (w->lk != NULL && !w->failed)
        lockhost_applied(w, n, e);
}

/* How much of a snapshot image is the toy KV's: all of it, except on lock seeds, where
 * the lock machine's image follows (host_maybe_snapshot). */
static size_t host_kv_part(const struct world *w, uint64_t n_bytes)
{
    return w->lk != NULL && n_bytes > KVSM_SNAPSHOT_BYTES ? KVSM_SNAPSHOT_BYTES : (size_t)n_bytes;
}

static void host_restore(struct world *w, struct world_node *n, const struct raft_snapshot *s)
{
    size_t kv_bytes = host_kv_part(w, s->n_bytes);
    int rv = kvsm_snapshot_decode(&n->kv, s->bytes, kv_bytes);
    if (rv != 0 || n->kv.applied_index != s->index) {
        world_fail(w, "snapshot", "n%u cannot restore snapshot %" PRIu64 "/%" PRIu64 ": %s", n->id,
                   s->index, s->term, rv ? kvsm_strerror(rv) : "applied index mismatch");
        return;
    }
    if (w->lk != NULL && lockhost_restore(w, n, (const uint8_t *)s->bytes + kv_bytes,
                                          (size_t)s->n_bytes - kv_bytes, s->index) != 0)
        return;
    n->snap_index = s->index;
    world_trace(w, n->id, "restored snapshot %" PRIu64 "/%" PRIu64, s->index, s->term);
    if (checks_snapshot(&w->checks, n->id, raft_term(n->raft), s->index, s->term, n->kv.digest) !=
        0)
        world_fail_checks(w);
}

/* raft.h step 3: a sync that makes everything written so far durable. */
static void host_queue_sync(struct world *w, struct world_node *n, const struct raft_msg *msgs,
                            uint32_t n_msgs, enum world_write what)
{
    mem_grow((void **)&n->jobs, &n->cap_jobs, n->n_jobs + 1, sizeof(*n->jobs));
    struct world_job *j = &n->jobs[n->n_jobs++];
    memset(j, 0, sizeof(*j));
    j->upto_seq = disk_seq(&n->disk);
    j->last_index = disk_image_last_index(&n->disk.current);
    j->last_term = disk_image_last_term(&n->disk.current);
    if (n_msgs > 0) {
        j->msgs = mem_calloc(n_msgs, sizeof(*j->msgs));
        for (uint32_t i = 0; i < n_msgs; i++) {
            int rv = raft_msg_copy(&j->msgs[j->n_msgs], &msgs[i]);
            if (rv != 0) {
                world_fail(w, "host-contract", "raft_msg_copy: %s", raft_strerror(rv));
                return;
            }
            j->n_msgs++;
        }
    }
    uint64_t done = w->now_us + fault_fsync_us(w, n);
    if (done < n->sync_done_us)
        done = n->sync_done_us; /* FIFO: a sync never overtakes an older one */
    n->sync_done_us = done;
    n->sync_seq = j->upto_seq;
    world_push(w, done, WEV_SYNC, n->id, n->epoch, NULL);
    if (what != WRITE_PLAIN)
        fault_on_write(w, n, done, what);
}

static enum world_write host_write_kind(const struct world_node *n, const struct raft_update *u)
{
    if (u->hard_state_changed && u->hard_state.vote != 0 && u->hard_state.vote != n->id)
        return WRITE_VOTE;
    if (u->n_entries > 0 || u->n_msgs_after_persist > 0 ||
        (u->hard_state_changed && u->hard_state.vote != 0))
        return WRITE_PROMISE;
    return WRITE_PLAIN;
}

/* Handles one update, raft.h steps 1-5. */
static void host_update(struct world *w, struct world_node *n, const struct raft_update *u)
{
    struct disk *d = &n->disk;
    int rv = 0;
    const char *what = "";
    if (u->snapshot != NULL) {
        what = "snapshot";
        rv = disk_write_snapshot(d, u->snapshot);
    }
    if (rv == 0 && u->truncate_from != 0) {
        what = "truncate";
        if (checks_truncate(&w->checks, n->id, u->truncate_from) == 0)
            rv = disk_write_truncate(d, u->truncate_from);
    }
    if (rv == 0 && u->n_entries > 0) {
        what = "append";
        uint64_t prev = disk_image_term_at(&d->current, u->entries[0].index - 1);
        if (checks_entries(&w->checks, n->id, prev, u->entries, u->n_entries) == 0)
            rv = disk_write_append(d, u->entries, u->n_entries);
        if (w->lk != NULL && raft_role(n->raft) == RAFT_LEADER && !w->checks.failed)
            lockhost_appended(w, n, u->entries, u->n_entries); /* a leader's own proposals */
        if (w->failed)
            return;
    }
    if (rv == 0 && u->hard_state_changed) {
        what = "hard state";
        if (checks_hard_state(&w->checks, n->id, &u->hard_state) == 0)
            rv = disk_write_hard_state(d, &u->hard_state);
    }
    if (w->checks.failed) {
        world_fail_checks(w);
        return;
    }
    if (rv != 0) {
        world_fail(w, "host-contract", "n%u %s write refused: %s", n->id, what, disk_strerror(rv));
        return;
    }
    if (n->real && !n->storage_failed) {
        char msg[256] = "";
        rv = dwal_write(&n->dw, u, msg, sizeof(msg));
        if (rv != 0)
            host_storage_failed(w, n, rv, msg);
    }
    for (uint32_t i = 0; i < u->n_msgs_now && !w->failed; i++)
        host_send(w, n, &u->msgs_now[i], false);
    if (!w->failed && (disk_seq(d) > n->sync_seq || u->n_msgs_after_persist > 0))
        host_queue_sync(w, n, u->msgs_after_persist, u->n_msgs_after_persist,
                        host_write_kind(n, u));
    if (!w->failed && u->snapshot != NULL)
        host_restore(w, n, u->snapshot);
    for (uint32_t i = 0; i < u->n_committed && !w->failed; i++)
        host_apply(w, n, &u->committed[i]);
    for (uint32_t i = 0; i < u->n_reads && !w->failed; i++) {
        if (w->lk != NULL && (u->reads[i].read_id & LOCKW_READ_BIT) != 0)
            lockhost_read_ready(w, n, &u->reads[i]);
        else
            client_read_ready(w, n, &u->reads[i]);
    }
    if (!w->failed)
        client_serve_reads(w, n);
    if (!w->failed && w->lk != NULL)
        lockhost_serve(w, n);
}

/* The host snapshots its state machine every snap_threshold applied entries
 * and stores the image like any other write. Returns true if it called into
 * the core (which then owes an update). */
static bool host_maybe_snapshot(struct world *w, struct world_node *n)
{
    uint8_t buf[KVSM_SNAPSHOT_BYTES];
    size_t len = 0;
    uint64_t index = n->kv.applied_index;
    if (index < n->snap_index + w->k.snap_threshold)
        return false;
    CC_ASSERT(kvsm_snapshot_encode(&n->kv, buf, sizeof(buf), &len) == 0);
    n->snap_index = index;
    uint8_t *image = buf, *joined = NULL;
    if (w->lk != NULL) { /* KV image, then the lock machine's */
        uint8_t *part = NULL;
        size_t n_part = 0;
        lockhost_snapshot(w, n, &part, &n_part);
        joined = mem_calloc(len + n_part, 1);
        memcpy(joined, buf, len);
        memcpy(joined + len, part, n_part);
        free(part);
        image = joined;
        len += n_part;
    }
    int rv = raft_snapshot_taken(n->raft, index, image, len);
    free(joined);
    if (rv != 0) {
        world_trace(w, n->id, "snapshot at %" PRIu64 " refused: %s", index, raft_strerror(rv));
        return true;
    }
    const struct raft_snapshot *s = raft_snapshot(n->raft);
    if (s == NULL || s->index != index) {
        world_fail(w, "host-contract", "n%u took a snapshot at %" PRIu64 " but the core holds %s",
                   n->id, index, s ? "another" : "none");
        return true;
    }
    rv = disk_write_snapshot(&n->disk, s);
    if (rv != 0) {
        world_fail(w, "host-contract", "n%u snapshot write refused: %s", n->id, disk_strerror(rv));
        return true;
    }
    world_vtrace(w, n->id, "snapshot at %" PRIu64 "/%" PRIu64, s->index, s->term);
    if (n->real && !n->storage_failed) {
        char msg[SNAP_MSG_BYTES] = "";
        rv = dwal_snapshot_taken(&n->dw, s, msg, sizeof(msg));
        if (rv == SNAP_ENOSPC) {
            w->res->n_enospc++; /* node.c: not saved, not fatal; the WAL keeps the log */
            world_trace(w, n->id, "snapshot at %" PRIu64 " not saved: ENOSPC", index);
        } else if (rv != 0) {
            host_storage_failed(w, n, rv, msg);
        }
    }
    host_queue_sync(w, n, NULL, 0, WRITE_PLAIN);
    return true;
}

/* The disk's view of the log must be the core's view of it. */
static void host_mirror_check(struct world *w, struct world_node *n)
{
    const struct disk_image *img = &n->disk.current;
    if (disk_image_last_index(img) != raft_last_index(n->raft) ||
        disk_image_last_term(img) != raft_last_term(n->raft))
        world_fail(w, "storage-mirror",
                   "n%u stored log ends at %" PRIu64 "/%" PRIu64 ", the core's at %" PRIu64
                   "/%" PRIu64,
                   n->id, disk_image_last_index(img), disk_image_last_term(img),
                   raft_last_index(n->raft), raft_last_term(n->raft));
    /* The WAL may end below or across an installed snapshot whose marker a crash lost
     * (the snapshot file is durable, the marker was not): compare once the core's log
     * has entries past its snapshot, which the WAL must then hold exactly. */
    else if (n->real && !n->storage_failed && n->dw.wal != NULL &&
             raft_first_index(n->raft) <= raft_last_index(n->raft) &&
             (wal_last_index(n->dw.wal) != raft_last_index(n->raft) ||
              wal_last_term(n->dw.wal) != raft_last_term(n->raft)))
        world_fail(w, "storage-mirror",
                   "n%u WAL ends at %" PRIu64 "/%" PRIu64 ", the core's log at %" PRIu64
                   "/%" PRIu64,
                   n->id, wal_last_index(n->dw.wal), wal_last_term(n->dw.wal),
                   raft_last_index(n->raft), raft_last_term(n->raft));
}

void host_drain(struct world *w, struct world_node *n)
{
    CC_ASSERT(n->up && n->raft != NULL);
    for (uint32_t round = 0;; round++) {
        if (round == WORLD_DRAIN_ROUNDS_MAX) {
            world_fail(w, "host-contract", "n%u still has updates after %u rounds", n->id, round);
            return;
        }
        struct raft_update u;
        raft_update_take(n->raft, &u);
        host_update(w, n, &u);
        if (w->failed)
            return;
        bool again = host_maybe_snapshot(w, n);
        if (w->failed)
            return;
        if (!again && !raft_update_pending(n->raft))
            break;
    }
    if (w->lk != NULL)
        lockhost_after_drain(w, n);
    host_mirror_check(w, n);
    if (!w->failed)
        host_check(w, n);
}

static void host_free_jobs(struct world_node *n)
{
    for (size_t i = 0; i < n->n_jobs; i++) {
        for (uint32_t k = 0; k < n->jobs[i].n_msgs; k++)
            raft_msg_free_copy(&n->jobs[i].msgs[k]);
        free(n->jobs[i].msgs);
    }
    n->n_jobs = 0;
}

static void host_sync_done(struct world *w, struct world_node *n)
{
    CC_ASSERT(n->n_jobs > 0);
    struct world_job j = n->jobs[0];
    memmove(n->jobs, n->jobs + 1, (n->n_jobs - 1) * sizeof(*n->jobs));
    n->n_jobs--;
    bool ok = !n->storage_failed;
    if (n->real && ok) {
        host_storage_faults(w, n);
        int rv = dwal_sync(&n->dw);
        if (rv != 0) {
            host_storage_failed(w, n, rv, wal_strerror(rv));
            ok = false;
        }
    }
    if (!ok) { /* nothing is durable: no persisted(), no acknowledgements */
        for (uint32_t i = 0; i < j.n_msgs; i++)
            raft_msg_free_copy(&j.msgs[i]);
        free(j.msgs);
        return;
    }
    disk_sync(&n->disk, j.upto_seq);
    raft_persisted(n->raft, j.last_index, j.last_term);
    host_drain(w, n);
    for (uint32_t i = 0; i < j.n_msgs; i++) {
        if (!w->failed)
            host_send(w, n, &j.msgs[i], true);
        raft_msg_free_copy(&j.msgs[i]);
    }
    free(j.msgs);
}

/* ---- events ------------------------------------------------------------------- */

static void host_schedule_tick(struct world *w, struct world_node *n, uint64_t delay_us)
{
    world_push(w, w->now_us + delay_us, WEV_TICK, n->id, n->tick_gen, NULL);
}

/* An event for an up, unpaused node. */
static void host_dispatch(struct world *w, struct world_node *n, const struct evq_event *ev)
{
    switch (ev->kind) {
    case WEV_TICK:
        raft_tick(n->raft);
        if (w->lk != NULL)
            lockhost_tick(w, n); /* node.c on_tick(): propose_expiries() */
        host_drain(w, n);
        host_schedule_tick(w, n, n->tick_us);
        break;
    case WEV_DELIVER: {
        struct raft_msg *m = ev->ptr;
        if (w->cfg->verbose) {
            char what[160];
            host_describe_msg(m, what, sizeof(what));
            world_vtrace(w, n->id, "<- n%u %s", m->from, what);
        }
        raft_step(n->raft, m); /* RAFT_EINVAL: dropped by the core, as documented */
        host_free_msg(m);
        host_drain(w, n);
        break;
    }
    case WEV_SYNC:
        host_sync_done(w, n);
        break;
    case WEV_CLIENT_REQ:
    case WEV_FORWARD:
        client_event(w, ev, n);
        break;
    case WEV_LOCK_REQ:
        lockhost_request(w, n, (size_t)ev->a);
        break;
    default:
        CC_UNREACHABLE();
    }
}

static void host_drop_event(struct world *w, const struct evq_event *ev)
{
    if (ev->kind == WEV_DELIVER)
        host_free_msg(ev->ptr);
    else if (ev->kind == WEV_CLIENT_REQ || ev->kind == WEV_FORWARD)
        client_lost(w, ev);
}

void host_event(struct world *w, const struct evq_event *ev)
{
    CC_ASSERT(ev->node >= 1 && ev->node <= w->n_nodes);
    struct world_node *n = &w->nodes[ev->node];
    if (!n->up || (ev->kind == WEV_DELIVER && !world_link_up(w, (uint32_t)ev->a, n->id))) {
        host_drop_event(w, ev);
        return;
    }
    if (ev->kind == WEV_TICK && (ev->a != n->tick_gen || n->paused))
        return;
    if (ev->kind == WEV_SYNC && ev->a != n->epoch)
        return;
    if (n->paused) {
        mem_grow((void **)&n->held, &n->cap_held, n->n_held + 1, sizeof(*n->held));
        n->held[n->n_held++] = *ev;
        return;
    }
    host_dispatch(w, n, ev);
}

/* ---- lifecycle ------------------------------------------------------------------ */

void host_restart(struct world *w, struct world_node *n)
{
    CC_ASSERT(!n->up);
    struct raft_options o;
    struct raft_recovered rec;
    raft_options_default(&o, n->id, world_mix(w->cfg->seed ^ ((uint64_t)n->id << 40) ^ n->epoch));
    o.election_ticks = WORLD_ELECTION_TICKS;
    o.heartbeat_ticks = 1;
    o.prevote = true;
    o.check_quorum = w->lk == NULL || !w->lk->k.no_check_quorum; /* see lockcl_setup */
    o.snapshot_chunk_bytes = w->k.chunk_bytes;
    o.trailing_entries = HOST_TRAILING_ENTRIES;
    struct dwal_recovered drec = {0};
    bool have_drec = false;
    if (n->dead)
        return;
    if (n->real) {
        char msg[SNAP_MSG_BYTES] = "";
        dwal_limit_space(&n->dw, 0, true); /* the operator freed space before restarting */
        int rv = dwal_recover(&n->dw, &drec, msg, sizeof(msg));
        if (rv == WAL_ECORRUPT || rv == SNAP_ECORRUPT) {
            /* Never start from a wrong log: the node stays down for good, like a
             * machine waiting for a disk replacement. */
            n->dead = true;
            w->res->n_corrupt_refusals++;
            world_trace(w, n->id, "recovery refused (%s), kept down: %s",
                        rv == WAL_ECORRUPT ? "WAL_ECORRUPT" : "SNAP_ECORRUPT", msg);
            if (!n->flipped) /* power cuts alone must never look like corruption */
                world_fail(w, "recovery", "n%u's disk was refused as corrupt after power cuts "
                           "alone (no bit flipped): %s", n->id, msg);
            return;
        }
        if (rv != 0) {
            world_fail(w, "recovery", "n%u cannot recover its data directory: %s (%s)", n->id,
                       rv <= -1300 ? snap_strerror(rv) : wal_strerror(rv), msg);
            return;
        }
        have_drec = true;
        if (n->epoch > 0) {
            w->res->n_wal_recoveries++;
            if (drec.wal.torn_bytes_dropped > 0)
                w->res->n_torn_tails++;
        }
        world_trace(w, n->id,
                    "wal_open: log %" PRIu64 "..%" PRIu64 ", %u segments, torn %" PRIu64
                    " bytes%s, snapshot %" PRIu64 ", hard state %" PRIu64 "/%u/%" PRIu64
                    " last term %" PRIu64,
                    drec.wal.first_index, drec.wal.last_index, drec.wal.n_segments,
                    drec.wal.torn_bytes_dropped, drec.wal.torn_segment_removed ? " (segment)" : "",
                    drec.has_snap ? drec.snap.index : 0, drec.wal.hard_state.term,
                    drec.wal.hard_state.vote, drec.wal.hard_state.commit, drec.wal.last_term);
        disk_reset(&n->disk, &drec.raft);
    }
    n->storage_failed = false;
    disk_recovered(&n->disk, &rec);
    if (have_drec)
        rec = drec.raft; /* the core starts from what the real code recovered */
    int rv = raft_new(&o, &rec, &n->raft);
    if (rv != 0) {
        n->raft = NULL;
        if (have_drec)
            dwal_recovered_free(&drec);
        world_fail(w, "recovery", "n%u raft_new from its durable image failed: %s", n->id,
                   raft_strerror(rv));
        return;
    }
    kvsm_init(&n->kv);
    n->snap_index = 0;
    size_t kv_bytes = rec.snapshot != NULL ? host_kv_part(w, rec.snapshot->n_bytes) : 0;
    if (rec.snapshot != NULL) {
        rv = kvsm_snapshot_decode(&n->kv, rec.snapshot->bytes, kv_bytes);
        if (rv != 0 || n->kv.applied_index != rec.snapshot->index) {
            world_fail(w, "recovery", "n%u durable snapshot %" PRIu64 " unusable: %s", n->id,
                       rec.snapshot->index, rv ? kvsm_strerror(rv) : "index mismatch");
            if (have_drec)
                dwal_recovered_free(&drec);
            return;
        }
        n->snap_index = rec.snapshot->index;
    }
    if (w->lk != NULL &&
        lockhost_boot(w, n, rec.snapshot ? (const uint8_t *)rec.snapshot->bytes + kv_bytes : NULL,
                      rec.snapshot ? (size_t)rec.snapshot->n_bytes - kv_bytes : 0,
                      rec.snapshot ? rec.snapshot->index : 0) != 0) {
        if (have_drec)
            dwal_recovered_free(&drec);
        return;
    }
    struct raft_hard_state hs = rec.hard_state;
    if (have_drec)
        dwal_recovered_free(&drec);
    n->up = true;
    n->paused = false;
    n->sync_seq = disk_seq(&n->disk);
    n->sync_done_us = w->now_us;
    n->seen_role = 0;
    n->seen_term = 0;
    n->seen_commit = 0;
    checks_node_restarted(&w->checks, n->id, &hs);
    world_trace(w, n->id,
                "start term=%" PRIu64 " vote=%u commit=%" PRIu64 " log=%" PRIu64 "..%" PRIu64
                " snapshot=%" PRIu64,
                hs.term, hs.vote, hs.commit,
                raft_first_index(n->raft), raft_last_index(n->raft), n->snap_index);
    host_schedule_tick(w, n, prng_below(&w->rng_fault, n->tick_us) + 1);
    host_drain(w, n);
}

void host_crash(struct world *w, struct world_node *n, const char *why)
{
    CC_ASSERT(n->up);
    struct disk_crash_info info;
    if (raft_role(n->raft) == RAFT_LEADER && !w->failover_pending) {
        w->failover_pending = true;
        w->failover_start_us = w->now_us;
        w->failover_term = raft_term(n->raft);
    }
    client_crashed(w, n);
    if (w->lk != NULL)
        lockhost_crash(w, n);
    raft_free(n->raft);
    n->raft = NULL;
    host_free_jobs(n);
    n->up = false;
    n->paused = false;
    n->epoch++;
    n->tick_gen++;
    for (size_t i = 0; i < n->n_held; i++)
        host_drop_event(w, &n->held[i]);
    n->n_held = 0;
    n->last_crash_us = w->now_us;
    checks_node_crashed(&w->checks, n->id);
    if (n->real) {
        /* simfs decides what survives; host_restart() rebuilds the shadow from it */
        char what[128] = "";
        dwal_crash(&n->dw);
        bool flip = w->phase == WORLD_FAULTS && prng_chance(&w->rng_wal, w->k.flip_ppm) &&
                    w->n_flipped == 0 && dwal_flip_old_bit(&n->dw, &w->rng_wal, what, sizeof(what));
        w->n_flipped += flip;
        n->flipped = n->flipped || flip;
        world_trace(w, n->id, "crash (%s): power cut on the real WAL%s%s", why,
                    flip ? ", bit flip at " : "", what);
        return;
    }
    disk_crash(&n->disk, &w->rng_disk, &info);
    world_trace(w, n->id, "crash (%s): %" PRIu64 " of %" PRIu64 " unsynced writes survive%s", why,
                info.n_kept, info.n_unsynced, info.torn ? ", last append torn" : "");
}

void host_pause(struct world *w, struct world_node *n)
{
    CC_ASSERT(n->up && !n->paused);
    n->paused = true;
    n->tick_gen++;
    n->pause_gen++;
    world_trace(w, n->id, "pause");
}

/* A resumed process may run its timers and read client sockets before it
 * reads what its peers sent meanwhile; half the time it does, which is how a
 * deposed leader acts on stale beliefs ("zombie leader"). */
static bool host_client_first(const struct evq_event *ev, bool pass)
{
    bool client =
        ev->kind == WEV_CLIENT_REQ || ev->kind == WEV_FORWARD || ev->kind == WEV_LOCK_REQ;
    return client == pass;
}

void host_resume(struct world *w, struct world_node *n)
{
    CC_ASSERT(n->up && n->paused);
    n->paused = false;
    bool zombie = prng_chance(&w->rng_fault, 500000);
    world_trace(w, n->id, "resume (%zu held events%s)", n->n_held,
                zombie ? ", timers and clients first" : "");
    struct evq_event *held = n->held;
    size_t n_held = n->n_held;
    n->held = NULL;
    n->n_held = n->cap_held = 0;
    if (zombie) {
        for (size_t i = 0; i < n_held && !w->failed; i++)
            if (host_client_first(&held[i], true))
                host_dispatch(w, n, &held[i]);
        if (!w->failed) {
            raft_tick(n->raft);
            if (w->lk != NULL)
                lockhost_tick(w, n);
            host_drain(w, n);
        }
    }
    for (size_t i = 0; i < n_held; i++) {
        if (zombie && host_client_first(&held[i], true))
            continue; /* handled in the first pass */
        if (w->failed || !n->up || n->paused)
            host_drop_event(w, &held[i]);
        else
            host_dispatch(w, n, &held[i]);
    }
    free(held);
    if (n->up && !n->paused)
        host_schedule_tick(w, n, prng_below(&w->rng_fault, n->tick_us) + 1);
}

void host_free_event(struct evq_event *ev, void *arg)
{
    (void)arg;
    if (ev->kind == WEV_DELIVER)
        host_free_msg(ev->ptr);
}

void host_free(struct world_node *n)
{
    raft_free(n->raft);
    n->raft = NULL;
    host_free_jobs(n);
    for (size_t i = 0; i < n->n_held; i++)
        host_free_event(&n->held[i], NULL);
    free(n->held);
    n->held = NULL;
    n->n_held = n->cap_held = 0;
    free(n->jobs);
    n->jobs = NULL;
    n->cap_jobs = 0;
    disk_free(&n->disk);
    if (n->real)
        dwal_free(&n->dw);
}
