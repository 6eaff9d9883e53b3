/* lockhost.c -- the node side of the lock world (see lockworld.h): the simulator's copy of
 * how src/node/node.c drives leases and locks.
 *
 * Each up node of a lock seed has a composite machine (sm/machine.h) fed every lease and
 * lock command it applies (the toy KV skips those indexes) and a lease timer
 * (node/lease_timer.h), driven exactly as node.c drives its own:
 *   apply_entry()       GRANT -> lease_timer_on_grant(now); REVOKE/EXPIRE ->
 *                       lease_timer_on_revoke; GRANTED events wake waiting clients;
 *   flush()             at the end of every drain, a node that now leads activates the
 *                       timer with extend = election timeout (election_ticks * tick ms),
 *                       one that no longer leads empties it. The sim also treats a new
 *                       term as a new leadership (node.c compares a bool only; a node
 *                       cannot win a new term within one of its flushes);
 *   on_tick()           propose_expiries(): while leading with an active quorum (the
 *                       voters raft heard from within an election timeout form a
 *                       majority), propose EXPIRE(id, granted_index) for due leases;
 *   node_lease_keepalive() only a leader takes it; it runs a ReadIndex round, waits until
 *                       the machine applied the read index, then lease_timer_keepalive
 *                       with now taken at that moment (on_keepalive_read);
 *   install_snapshot()  a restored machine re-activates an active timer.
 * "now" is the node's own monotonic clock in ms: its ticks are 10 ms of its time, so its
 * clock runs at SIM_TICK_US / tick_us of real time.
 *
 * Mutants (each a compile-time macro, make sim-mutants) break one rule each:
 *   SIM_MUTANT_KEEPALIVE_NO_READINDEX  renew at once, without confirming leadership;
 *   SIM_MUTANT_NO_LEASE_EXTEND         a new leader counts every lease from an election
 *                                      timeout ago, without the extension (deadline
 *                                      now + ttl - election timeout);
 *   SIM_MUTANT_EXPIRE_NO_QUORUM        propose EXPIRE without asking for a quorum.
 *
 * Client requests: proposals (GRANT, ACQUIRE, RELEASE, REVOKE) go to raft_propose on a
 * leader (a follower answers "not leader" with its hint) and are answered when this node
 * applies (index, term), or "lost" when another entry took the index.
 *
 * Sections: helpers | lifecycle | snapshots | apply | leadership and expiry | requests |
 * errors.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "base/hash.h"
#include "lockworld.h"
#include "mem.h"
#include "node/lease_timer.h"
#include "sm/machine.h"

/* ---- helpers ----------------------------------------------------------------------- */

static struct lockhost *lockhost_of(struct world *w, const struct world_node *n)
{
    return &w->lk->hosts[n->id];
}

/* node.c uv_now(): this node's monotonic clock, in ms. */
static uint64_t lockhost_now_ms(const struct world *w, const struct world_node *n)
{
    return w->now_us * SIM_TICK_US / n->tick_us / 1000u;
}

/* node.c: (uint64_t)cfg.election_ticks * cfg.tick_ms. */
static uint64_t lockhost_extend_ms(void)
{
    return (uint64_t)WORLD_ELECTION_TICKS * (SIM_TICK_US / 1000u);
}

bool lockhost_is_cmd(const struct raft_entry *e)
{
    return e->type == RAFT_ENTRY_COMMAND && e->n_bytes > 0 &&
           (e->bytes[0] == LEASE_CMD_TAG || e->bytes[0] == LOCK_CMD_TAG);
}

static uint64_t lockhost_tables_digest(const struct machine *sm)
{
    uint64_t parts[2] = {lease_digest(machine_leases(sm)), lock_digest(machine_locks(sm))};
    uint8_t buf[16];
    for (int i = 0; i < 16; i++)
        buf[i] = (uint8_t)(parts[i / 8] >> (8 * (i % 8)));
    return hash_fnv1a64(HASH_FNV_INIT, buf, sizeof(buf));
}

static void lockhost_pend(struct lockhost *h, size_t m)
{
    mem_grow((void **)&h->pending, &h->cap_pending, h->n_pending + 1, sizeof(*h->pending));
    h->pending[h->n_pending++] = m;
}

static void lockhost_unpend(struct lockhost *h, size_t m)
{
    for (size_t i = 0; i < h->n_pending; i++)
        if (h->pending[i] == m) {
            memmove(&h->pending[i], &h->pending[i + 1], (h->n_pending - i - 1) * sizeof(size_t));
            h->n_pending--;
            return;
        }
}

/* Node n answers message m with err (fields already filled); the answer travels back. */
static void lockhost_answer(struct world *w, struct world_node *n, size_t m, int err)
{
    struct lockw_msg *msg = &w->lk->msgs[m];
    msg->err = err;
    msg->state = LOCKW_ANSWERED;
    if (err == LOCKW_ENOTLEADER && n->raft != NULL)
        msg->hint = raft_leader(n->raft);
    lockhost_unpend(lockhost_of(w, n), m);
    lockcl_answer(w, m);
}

static void lockhost_fail_checks(struct world *w)
{
    world_fail(w, w->lk->chk.name, "%s", w->lk->chk.detail);
}

/* node.c quorum_active(): the voters heard from within an election timeout, counting
 * ourselves, form a majority. */
static bool lockhost_quorum_active(const struct world_node *n)
{
    struct raft_progress_info pi[RAFT_SERVERS_MAX];
    uint32_t count = raft_progress(n->raft, pi, RAFT_SERVERS_MAX);
    uint32_t voters = raft_config_n_voters(raft_config(n->raft)), active = 1;
    for (uint32_t i = 0; i < count; i++)
        if (pi[i].role == RAFT_VOTER && pi[i].id != n->id && pi[i].recent_active)
            active++;
    return active > voters / 2;
}

/* "L<k>" -> k, or -1. */
static int lockhost_lock_index(const struct world *w, const uint8_t *name, uint16_t len)
{
    if (len != 2 || name[0] != 'L' || name[1] < '0' || name[1] >= '0' + (int)w->lk->k.n_names)
        return -1;
    return name[1] - '0';
}

/* ---- lifecycle --------------------------------------------------------------------- */

static void lockhost_release(struct lockhost *h)
{
    machine_free(h->sm);
    h->sm = NULL;
    lease_timer_free(h->timer);
    h->timer = NULL;
    h->leading = false;
    h->n_pending = 0;
}

/* Records n's digest after index and fails the run on a mismatch. */
static bool lockhost_digest_at(struct world *w, struct world_node *n, uint64_t index, bool *first)
{
    if (lockchk_digest(&w->lk->chk, n->id, index, lockhost_of(w, n)->digest, first) != 0) {
        lockhost_fail_checks(w);
        return false;
    }
    return true;
}

int lockhost_boot(struct world *w, struct world_node *n, const uint8_t *img, size_t len,
                  uint64_t index)
{
    struct lockhost *h = lockhost_of(w, n);
    lockhost_release(h);
    int rv = img != NULL ? machine_snapshot_decode(img, len, &h->sm) : machine_new(&h->sm);
    if (rv != 0) {
        h->sm = NULL;
        world_fail(w, "recovery", "n%u cannot load the lock tables of snapshot %" PRIu64 ": %s",
                   n->id, index, sm_strerror(rv));
        return -1;
    }
    CC_ASSERT(lease_timer_new(&h->timer) == 0);
    h->digest = lockhost_tables_digest(h->sm);
    lockchk_replica_reset(&w->lk->chk, n->id, lock_next_token(machine_locks(h->sm)));
    bool first = false;
    if (img != NULL && !lockhost_digest_at(w, n, index, &first))
        return -1;
    return 0;
}

void lockhost_crash(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    for (size_t i = 0; i < h->n_pending; i++)
        w->lk->msgs[h->pending[i]].state = LOCKW_GONE; /* the client times out */
    lockhost_release(h);
    lockcl_node_crashed(w, n);
}

void lockhost_free(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    lockhost_release(h);
    free(h->pending);
    h->pending = NULL;
    h->cap_pending = 0;
}

uint64_t lockhost_digest(const struct world *w, const struct world_node *n)
{
    return w->lk->hosts[n->id].digest;
}

/* ---- snapshots --------------------------------------------------------------------- */

void lockhost_snapshot(struct world *w, struct world_node *n, uint8_t **img, size_t *len)
{
    int rv = machine_snapshot_encode(lockhost_of(w, n)->sm, img, len);
    CC_ASSERT(rv == 0); /* only ENOMEM can fail, and the simulator aborts on that (mem.h) */
}

/* Activates the timer as node.c does on becoming leader (and on restoring a snapshot
 * while active): every lease gets now + ttl + extend. */
static void lockhost_activate(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    uint64_t now = lockhost_now_ms(w, n), extend = lockhost_extend_ms();
#if defined(SIM_MUTANT_NO_LEASE_EXTEND)
    /* mutant: deadlines now + ttl - election timeout, as if counting from the last
     * time the old leader could have renewed */
    lease_timer_on_become_leader(h->timer, machine_leases(h->sm), now > extend ? now - extend : 0,
                                 0);
#else
    lease_timer_on_become_leader(h->timer, machine_leases(h->sm), now, extend);
#endif
}

/* Direct check: no deadline the timer now holds for a client's lease may come before
 * that client's belief could end. The node's clock is read in whole ms, so one ms of
 * slack. */
static void lockhost_check_deadlines(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    struct lockchk *chk = &w->lk->chk;
    uint64_t now = lockhost_now_ms(w, n), remaining = 0;
    if (!w->checks.direct)
        return;
    for (uint32_t i = 1; i <= w->lk->k.n_clients; i++) {
        int64_t lease = chk->clients[i].lease;
        if (lease == 0 || lease_timer_remaining_ms(h->timer, lease, now, &remaining) != 0)
            continue;
        uint64_t remaining_us = remaining > 0 ? (remaining - 1) * 1000u : 0;
        if (lockchk_deadline(chk, n->id, i, w->now_us, remaining_us) != 0) {
            lockhost_fail_checks(w);
            return;
        }
    }
}

int lockhost_restore(struct world *w, struct world_node *n, const uint8_t *img, size_t len,
                     uint64_t index)
{
    struct lockhost *h = lockhost_of(w, n);
    struct machine *fresh = NULL;
    int rv = machine_snapshot_decode(img, len, &fresh);
    if (rv != 0) {
        world_fail(w, "snapshot", "n%u cannot restore the lock tables of snapshot %" PRIu64 ": %s",
                   n->id, index, sm_strerror(rv));
        return -1;
    }
    machine_free(h->sm);
    h->sm = fresh;
    h->digest = lockhost_tables_digest(h->sm);
    if (lease_timer_active(h->timer)) { /* node.c install_snapshot() */
        lockhost_activate(w, n);
        lockhost_check_deadlines(w, n);
    }
    for (size_t i = 0; i < h->n_pending;) {
        struct lockw_msg *msg = &w->lk->msgs[h->pending[i]];
        if (msg->state == LOCKW_PROPOSED && msg->index <= index)
            lockhost_answer(w, n, h->pending[i], LOCKW_EUNKNOWN); /* node.c finish_props */
        else
            i++;
    }
    lockchk_replica_reset(&w->lk->chk, n->id, lock_next_token(machine_locks(h->sm)));
    bool first = false;
    return lockhost_digest_at(w, n, index, &first) ? 0 : -1;
}

/* ---- apply --------------------------------------------------------------------------- */

/* GRANTED events: the checks, then whoever waits on this node hears. */
static void lockhost_grants(struct world *w, struct world_node *n, uint64_t index,
                            const struct lock_result *lr)
{
    struct lockchk *chk = &w->lk->chk;
    for (uint32_t i = 0; i < lr->n_events && !w->failed; i++) {
        const struct lock_event *ev = &lr->events[i];
        if (ev->type != LOCK_EV_GRANTED)
            continue;
        int lock = lockhost_lock_index(w, ev->name, ev->name_len);
        uint32_t client = 0, inc = 0;
        if (lock < 0 || !lockcl_owner_parse(ev->owner, ev->owner_len, &client, &inc)) {
            world_fail(w, "lock-world", "n%u granted a lock nobody asked for at %" PRIu64, n->id,
                       index);
            return;
        }
        uint64_t before = chk->n_grants;
        if (lockchk_grant(chk, n->id, index, (uint32_t)lock, ev->token, client, inc, w->now_us) !=
            0) {
            lockhost_fail_checks(w);
            return;
        }
        if (chk->n_grants != before)
            world_trace(w, n->id,
                        "L%d token %" PRIu64 " granted to c%u.%u (lease %" PRId64 ") at %" PRIu64,
                        lock, ev->token, client, inc, ev->lease, index);
        lockcl_granted(w, n, (uint32_t)lock, ev->owner, ev->owner_len, ev->lease, ev->request_id,
                       ev->token);
    }
}

/* Answers the proposals this node made at index (node.c finish_props). */
static void lockhost_finish(struct world *w, struct world_node *n, const struct raft_entry *e,
                            const struct sm_result *res)
{
    struct lockhost *h = lockhost_of(w, n);
    for (size_t i = 0; i < h->n_pending && !w->failed;) {
        size_t m = h->pending[i];
        struct lockw_msg *msg = &w->lk->msgs[m];
        if (msg->state != LOCKW_PROPOSED || msg->index != e->index) {
            i++;
            continue;
        }
        if (msg->term != e->term || res == NULL) {
            lockhost_answer(w, n, m, LOCKW_ELOST);
            continue;
        }
        msg->r_lease = res->lease.id;
        msg->r_status = res->lock.status;
        msg->r_token = res->lock.token;
        lockhost_answer(w, n, m, res->err);
    }
}

void lockhost_applied(struct world *w, struct world_node *n, const struct raft_entry *e)
{
    struct lockhost *h = lockhost_of(w, n);
    struct sm_result res;
    memset(&res, 0, sizeof(res));
    bool cmd = lockhost_is_cmd(e);
    if (cmd) {
        machine_apply(h->sm, e->bytes, e->n_bytes, e->index, &res);
        if (res.tag == SM_TAG_LEASE && res.err == 0) { /* node.c apply_entry() */
            if (res.lease.type == LEASE_CMD_GRANT)
                lease_timer_on_grant(h->timer, res.lease.id, res.lease.ttl_ms, e->index,
                                     lockhost_now_ms(w, n));
            else
                lease_timer_on_revoke(h->timer, res.lease.id);
        }
        h->digest = lockhost_tables_digest(h->sm);
        lockhost_grants(w, n, e->index, &res.lock);
    }
    bool first = false;
    if (!w->failed && lockhost_digest_at(w, n, e->index, &first) && first && cmd &&
        res.tag == SM_TAG_LEASE && res.err == 0 && res.lease.type != LEASE_CMD_GRANT) {
        if (res.lease.expired)
            w->lk->n_expiries++;
        world_trace(w, n->id, "lease %" PRId64 " %s at %" PRIu64 " (%u locks)", res.lease.id,
                    res.lease.expired ? "expired" : "revoked", e->index, res.lease.n_locks);
    }
    if (!w->failed)
        lockhost_finish(w, n, e, cmd ? &res : NULL);
    sm_result_free(&res);
}

/* ---- leadership and expiry ------------------------------------------------------------ */

void lockhost_after_drain(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    bool leading = raft_role(n->raft) == RAFT_LEADER;
    uint64_t term = raft_term(n->raft);
    if (h->leading && (!leading || term != h->lead_term)) {
        lease_timer_on_step_down(h->timer);
        h->leading = false;
    }
    if (leading && !h->leading) { /* etcd#9395: never expire earlier than promised */
        h->leading = true;
        h->lead_term = term;
        lockchk_elected(&w->lk->chk, term, w->now_us);
        lockcl_on_elected(w, n);
        lockhost_activate(w, n);
        world_vtrace(w, n->id, "lease timer active: %u leases", lease_timer_count(h->timer));
        lockhost_check_deadlines(w, n);
    }
}

void lockhost_tick(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    if (!h->leading || !lease_timer_active(h->timer))
        return;
    uint64_t now = lockhost_now_ms(w, n);
    if (lease_timer_next_due_ms(h->timer) > now)
        return;
#if !defined(SIM_MUTANT_EXPIRE_NO_QUORUM)
    if (!lockhost_quorum_active(n))
        return; /* lease_timer.h claim 6 */
#endif
    struct lease_timer_expiry ex[LOCKW_EXPIRE_BUDGET];
    uint32_t count = lease_timer_next_expired(h->timer, now, ex, LOCKW_EXPIRE_BUDGET);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t cmd[LEASE_CMD_BYTES_MAX];
        size_t len = 0;
        uint64_t index = 0;
        CC_ASSERT(lease_encode_expire(ex[i].id, ex[i].granted_index, cmd, sizeof(cmd), &len) == 0);
        int rv = raft_propose(n->raft, cmd, (uint32_t)len, &index); /* not applied: again later */
        world_trace(w, n->id, "EXPIRE lease %" PRId64 " proposed%s%s", ex[i].id,
                    rv == 0 ? "" : ", refused: ", rv == 0 ? "" : raft_strerror(rv));
    }
}

void lockhost_appended(struct world *w, struct world_node *n, const struct raft_entry *e,
                       uint32_t count)
{
    if (!w->checks.direct)
        return;
    for (uint32_t i = 0; i < count; i++) {
        struct lease_cmd c;
        if (e[i].type != RAFT_ENTRY_COMMAND || e[i].n_bytes == 0 ||
            e[i].bytes[0] != LEASE_CMD_TAG || lease_decode(e[i].bytes, e[i].n_bytes, &c) != 0 ||
            c.type != LEASE_CMD_EXPIRE)
            continue;
        if (lockchk_expire_proposed(&w->lk->chk, n->id, raft_term(n->raft),
                                    lockhost_quorum_active(n)) != 0) {
            lockhost_fail_checks(w);
            return;
        }
    }
}

/* ---- requests ------------------------------------------------------------------------------ */

/* on_keepalive_read(): the round is done and applied; only now may the deadline move. */
static void lockhost_renew(struct world *w, struct world_node *n, size_t m)
{
    struct lockhost *h = lockhost_of(w, n);
    struct lockw_msg *msg = &w->lk->msgs[m];
    uint64_t deadline = 0;
    int64_t ttl = 0;
    int rv = lease_timer_keepalive(h->timer, msg->lease, lockhost_now_ms(w, n), &deadline, &ttl);
    if (rv == 0 && w->checks.direct &&
        lockchk_renew_ok(&w->lk->chk, n->id, msg->term, msg->taken_us) != 0) {
        lockhost_fail_checks(w);
        return;
    }
    if (rv == 0)
        lockcl_on_renewed(w, n);
    lockhost_answer(w, n, m, rv == LEASE_TIMER_ENOTLEADER ? LOCKW_ENOTLEADER : rv);
}

/* node_lease_keepalive(). */
static void lockhost_keepalive(struct world *w, struct world_node *n, size_t m)
{
    struct lockhost *h = lockhost_of(w, n);
    struct lockw_msg *msg = &w->lk->msgs[m];
    if (!h->leading) {
        lockhost_answer(w, n, m, LOCKW_ENOTLEADER);
        return;
    }
    msg->term = raft_term(n->raft);
    msg->taken_us = w->now_us;
#if defined(SIM_MUTANT_KEEPALIVE_NO_READINDEX)
    /* mutant: renew at once; a deposed leader that has not noticed still renews */
    lockhost_renew(w, n, m);
#else
    int rv = raft_read_index(n->raft, LOCKW_READ_BIT | (uint64_t)m);
    if (rv != 0) {
        lockhost_answer(w, n, m, LOCKW_ENOTLEADER);
    } else {
        msg->state = LOCKW_READING;
        lockhost_pend(h, m);
    }
    host_drain(w, n);
#endif
}

void lockhost_read_ready(struct world *w, struct world_node *n, const struct raft_read_ready *rr)
{
    if ((rr->read_id & LOCKW_READ_BIT) == 0)
        return;
    size_t m = (size_t)(rr->read_id & ~LOCKW_READ_BIT);
    if (m >= w->lk->n_msgs)
        return;
    struct lockw_msg *msg = &w->lk->msgs[m];
    if (msg->state != LOCKW_READING || msg->node != n->id)
        return; /* stale */
    if (rr->status != 0) {
        lockhost_answer(w, n, m, LOCKW_ENOTLEADER);
        return;
    }
    msg->read_index = rr->index;
    msg->state = LOCKW_READ_WAIT;
}

void lockhost_serve(struct world *w, struct world_node *n)
{
    struct lockhost *h = lockhost_of(w, n);
    for (size_t i = 0; i < h->n_pending && !w->failed;) {
        size_t m = h->pending[i];
        const struct lockw_msg *msg = &w->lk->msgs[m];
        if (msg->state == LOCKW_READ_WAIT && n->kv.applied_index >= msg->read_index)
            lockhost_renew(w, n, m); /* removes it from pending */
        else
            i++;
    }
}

static void lockhost_owner(const struct lockw_msg *msg, char *buf, size_t cap, uint16_t *len)
{
    int k = snprintf(buf, cap, "c%u.%u", msg->client, msg->inc);
    CC_ASSERT(k > 0 && (size_t)k < cap);
    *len = (uint16_t)k;
}

/* The command bytes of a proposal message. */
static void lockhost_encode(const struct lockw_msg *msg, uint8_t *buf, size_t cap, size_t *len)
{
    char owner[24], name[4];
    uint16_t owner_len = 0;
    int rv = 0;
    lockhost_owner(msg, owner, sizeof(owner), &owner_len);
    snprintf(name, sizeof(name), "L%u", msg->lock);
    struct lock_cmd c = {.name = (const uint8_t *)name,
                         .name_len = 2,
                         .owner = (const uint8_t *)owner,
                         .owner_len = owner_len};
    switch (msg->kind) {
    case LOCKW_GRANT:
        rv = lease_encode_grant(0, msg->ttl_ms, buf, cap, len);
        break;
    case LOCKW_REVOKE:
        rv = lease_encode_revoke(msg->lease, buf, cap, len);
        break;
    case LOCKW_ACQUIRE:
        c.type = LOCK_CMD_ACQUIRE;
        c.kind = LOCK_KIND_MUTEX;
        c.mode = LOCK_MODE_EXCLUSIVE;
        c.flags = LOCK_ACQUIRE_WAIT;
        c.lease = msg->lease;
        c.request_id = msg->rid;
        rv = lock_encode(&c, buf, cap, len);
        break;
    case LOCKW_RELEASE:
        c.type = LOCK_CMD_RELEASE;
        c.flags = LOCK_RELEASE_ALL;
        c.token = msg->token;
        rv = lock_encode(&c, buf, cap, len);
        break;
    default:
        CC_UNREACHABLE();
    }
    CC_ASSERT(rv == 0);
}

void lockhost_request(struct world *w, struct world_node *n, size_t m)
{
    struct lockw_msg *msg = &w->lk->msgs[m];
    if (msg->state != LOCKW_SENT)
        return;
    msg->node = n->id;
    if (msg->kind == LOCKW_KEEPALIVE) {
        lockhost_keepalive(w, n, m);
        return;
    }
    if (raft_role(n->raft) != RAFT_LEADER) {
        lockhost_answer(w, n, m, LOCKW_ENOTLEADER);
        return;
    }
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t len = 0;
    uint64_t index = 0;
    lockhost_encode(msg, buf, sizeof(buf), &len);
    int rv = raft_propose(n->raft, buf, (uint32_t)len, &index);
    if (rv != 0) {
        lockhost_answer(w, n, m, rv == RAFT_ENOTLEADER ? LOCKW_ENOTLEADER : LOCKW_ELOST);
    } else {
        msg->state = LOCKW_PROPOSED;
        msg->index = index;
        msg->term = raft_term(n->raft);
        lockhost_pend(lockhost_of(w, n), m);
    }
    host_drain(w, n);
}

/* ---- errors ---------------------------------------------------------------------------------- */

const char *lockw_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case LOCKW_ENOTLEADER:
        return "not the leader";
    case LOCKW_ELOST:
        return "proposal lost (another entry took its index)";
    case LOCKW_EUNKNOWN:
        return "outcome unknown (a snapshot covered the proposal)";
    default:
        break;
    }
    if (rv <= -2281 && rv >= -2299)
        return lease_timer_strerror(rv);
    return sm_strerror(rv);
}
