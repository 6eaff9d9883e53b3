/* lockclient.c -- lock clients and the protected resource of the lock world (see
 * lockworld.h; the node side is lockhost.c, the verdicts lockcheck.c).
 *
 * A client is a process with its own clock (rate 1 +- LOCKW_CLIENT_SKEW_PPM, any offset)
 * and an owner id "c<slot>.<incarnation>". It loops:
 *   1. GRANT a lease (ttl 500..1500 ms). Its belief in the lease starts from the send
 *      time of that request: it may trust the lease until send + ttl - margin on its own
 *      clock, margin = ttl / LOCKW_MARGIN_DIV (the drift bound, see lockworld.h).
 *   2. Renew every ttl/3 (its own clock) with KEEPALIVE, which a leader answers only after
 *      a ReadIndex round; each success moves the belief to (its send time) + ttl - margin.
 *      "Not found" or "expired" ends the session: the lease is dead.
 *   3. ACQUIRE a mutex L0 or L1 with wait and a fresh request id. GRANTED: it holds the
 *      lock with a fencing token. QUEUED: it waits; the node that queued it notifies it
 *      of the grant (a re-ask after LOCKW_REWAIT_US, or when that node crashes, asks with
 *      the same request id, which the lock machine treats as a retry).
 *   4. While it believes (holding, and its clock before the belief end), it writes to the
 *      lock's resource with its token, 1..LOCKW_WRITES_MAX times, then RELEASEs (owner
 *      and token, all holds) -- it stops believing when it sends the release. Sometimes
 *      it then revokes the lease and starts over. If the belief ends while it holds (its
 *      renewals failed), it gives up like the watchdog's lost_cb: REVOKE, new session.
 * Half the clients send every request to the last leader they heard of (else a random up
 * node), the other half spread them over random up nodes; a follower answers "not
 * leader" with a hint, which the next request follows. A lock op with no answer in
 * 500 ms is unknown: an ACQUIRE is retried with the same request id (idempotent), an
 * unknown RELEASE abandons the lease (a late RELEASE could otherwise free a later
 * reentrant hold of the same party).
 *
 * Faults: clients crash (their belief ends; they come back as a new incarnation) and
 * pause (timers and answers held; the clock runs on). Two targeted pauses: between the
 * belief check and the send of a write, so a stale write reaches the resource late (the
 * fencing token must stop it); and right after a renewal succeeded, for ttl/2..2 ttl, so
 * the client lives on that one renewal while the lease may change hands (the server must
 * not expire it before the client's belief ends) -- much more often when the node that
 * renewed no longer leads by the time the answer arrives, the moment a new leader's
 * deadlines decide everything, and when a new leader takes over while a holder's latest
 * renewal is less than an election timeout old. A leader that renewed a lease sometimes
 * hands leadership over right after (raft_transfer). The lock world also stalls the leader for
 * 0.5-2 s, so that renewals queue up at a leader that is deposed before it resumes, and cuts the
 * leader off from its peers (not from clients) for 1-3 s, longer than any ttl. Writes
 * travel with network delays (some 50-300 ms).
 *
 * The resource keeps the newest accepted token per lock and rejects older ones.
 *
 * Sections: helpers | setup | messages | session | holding | answers | faults | events |
 * report.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "lockworld.h"
#include "mem.h"
#include "sm/lock.h"
#include "node/lease_timer.h"

#define LOCKCL_HOP_MIN_US      50 /* client <-> node, as client.c */
#define LOCKCL_HOP_SPAN_US     251
#define LOCKCL_REDIRECT_US     300 /* retry at the hinted leader */
#define LOCKCL_BACKOFF_MIN_US  2000
#define LOCKCL_BACKOFF_SPAN_US 10001
#define LOCKCL_RESTART_MIN_US  10000 /* a crashed client is back after 10-800 ms */
#define LOCKCL_RESTART_SPAN_US 790001
#define LOCKCL_PAUSE_MIN_US    20000 /* a pause lasts 20 ms-1.5 s: often past the ttl */
#define LOCKCL_PAUSE_SPAN_US   1480001
#define LOCKCL_STALL_MIN_US    500000 /* a leader stall: 0.5-2 s */
#define LOCKCL_STALL_SPAN_US   1500001
#define LOCKCL_ISOLATE_MIN_US  1000000 /* a leader cut off from its peers: 1-3 s */
#define LOCKCL_ISOLATE_SPAN_US 2000001
#define LOCKCL_KA_REDIRECTS    3      /* "not leader" bounces per renewal round */
#define LOCKCL_REVOKE_PPM      250000 /* after a release: give the lease up */

/* ---- helpers ------------------------------------------------------------------------ */

static struct lockworld *lockcl_lk(struct world *w)
{
    return w->lk;
}

static uint64_t lockcl_local_us(const struct world *w, const struct lockcl *c)
{
    return c->clock_off_us + w->now_us * c->rate_ppm / 1000000u;
}

/* Real time until c's clock has advanced by local_us. */
static uint64_t lockcl_real_us(const struct lockcl *c, uint64_t local_us)
{
    return (local_us * 1000000u + c->rate_ppm - 1) / c->rate_ppm;
}

/* How long c trusts its lease after a send, on its own clock. */
static uint64_t lockcl_belief_us(const struct lockcl *c)
{
    return (uint64_t)(c->ttl_ms - c->ttl_ms / LOCKW_MARGIN_DIV) * 1000u;
}

static bool lockcl_believes(const struct world *w, const struct lockcl *c)
{
    return c->holding && lockcl_local_us(w, c) < c->belief_end_local_us;
}

static uint64_t lockcl_hop_us(struct world *w)
{
    struct lockworld *lk = lockcl_lk(w);
    if (!prng_chance(&lk->rng, lk->k.tail_ppm))
        return LOCKCL_HOP_MIN_US + prng_below(&lk->rng, LOCKCL_HOP_SPAN_US);
    if (prng_chance(&lk->rng, 200000))
        return 50000 + prng_below(&lk->rng, 250001);
    return 2000 + prng_below(&lk->rng, 48001);
}

static uint64_t lockcl_backoff_us(struct world *w)
{
    return LOCKCL_BACKOFF_MIN_US + prng_below(&lockcl_lk(w)->rng, LOCKCL_BACKOFF_SPAN_US);
}

static void lockcl_fail_checks(struct world *w)
{
    world_fail(w, w->lk->chk.name, "%s", w->lk->chk.detail);
}

bool lockcl_owner_parse(const uint8_t *owner, uint16_t len, uint32_t *client, uint32_t *inc)
{
    uint64_t v[2] = {0, 0};
    uint32_t part = 0, digits = 0;
    if (len < 4 || owner[0] != 'c')
        return false;
    for (uint16_t i = 1; i < len; i++) {
        if (owner[i] == '.' && part == 0 && digits > 0) {
            part = 1;
            digits = 0;
        } else if (owner[i] >= '0' && owner[i] <= '9' && digits < 9) {
            v[part] = v[part] * 10 + (uint64_t)(owner[i] - '0');
            digits++;
        } else {
            return false;
        }
    }
    if (part != 1 || digits == 0 || v[0] < 1 || v[0] > LOCKW_CLIENTS_MAX)
        return false;
    *client = (uint32_t)v[0];
    *inc = (uint32_t)v[1];
    return true;
}

/* ---- setup -------------------------------------------------------------------------- */

void lockcl_setup(struct world *w)
{
    struct prng p;
    prng_seed(&p, world_mix(w->cfg->seed ^ UINT64_C(0x6c6f636b73)));
    bool picked = prng_below(&p, 3) == 0; /* drawn always: a mixed lock seed is the
                                             --locks on run of that seed */
    bool on = w->cfg->locks == SIM_LOCKS_ON || (w->cfg->locks == SIM_LOCKS_MIXED && picked);
    w->res->locks = on;
    if (!on)
        return;
    struct lockworld *lk = mem_calloc(1, sizeof(*lk));
    w->lk = lk;
    lk->rng = p;
    lockchk_init(&lk->chk, LOCKW_DRIFT_PPM);
    struct lockw_knobs *k = &lk->k;
    k->n_clients = 2 + (uint32_t)prng_below(&p, LOCKW_CLIENTS_MAX - 1);
    k->n_names = prng_chance(&p, 300000) ? 2 : 1;
    k->tail_ppm = (uint32_t)prng_below(&p, 50001);
    uint32_t intensity = (uint32_t)prng_below(&p, 4); /* 0 calm, 1-2 moderate, 3 brutal */
    if (intensity > 0) {
        k->fault_gap_min_us = intensity == 3 ? 50000 : 150000;
        k->fault_gap_max_us = intensity == 3 ? 500000 : 1500000;
    }
    k->gap_pause_ppm = prng_chance(&p, 500000) ? 0 : (uint32_t)prng_below(&p, 150001);
    k->renew_pause_ppm = prng_chance(&p, 500000) ? 0 : 20000 + (uint32_t)prng_below(&p, 180001);
    k->moved_pause_ppm = prng_chance(&p, 250000) ? 0 : 300000 + (uint32_t)prng_below(&p, 600001);
    k->elected_pause_ppm = prng_chance(&p, 250000) ? 0 : 300000 + (uint32_t)prng_below(&p, 600001);
    k->handover_ppm = prng_chance(&p, 500000) ? 0 : 10000 + (uint32_t)prng_below(&p, 90001);
    k->think_max_us = 1000 + prng_below(&p, 100001);
    /* One lock seed in three runs raft without CheckQuorum, which otherwise steps a
     * leader down on the very tick it loses its quorum. Then a deposed leader keeps
     * leading for as long as it is cut off, and node.c's own rules (renew only after a
     * ReadIndex round, expire only with a quorum) are all that stand between it and an
     * early expiry or a late renewal: the rules must hold without raft's help. */
    k->no_check_quorum = prng_chance(&p, 333333);
    /* The world's pace. A new leader restarts every countdown from the full ttl plus an
     * election timeout (etcd#9395), so while leadership moves more often than about once
     * a ttl no lease ever expires, no lock changes hands by expiry and the checks above
     * have nothing to look at. Lock seeds therefore run the operators (a leader transfer
     * every 50-250 ms elsewhere) every 1-4 s and the brutal fault pace at the moderate one;
     * the lock world's own faults and the targeted ones still change leaders at the
     * moments that matter. */
    w->k.operator_gap_min_us = 1000000;
    w->k.operator_gap_max_us = 4000000;
    if (w->k.fault_gap_min_us < 80000) {
        w->k.fault_gap_min_us = 80000;
        w->k.fault_gap_max_us = 500000;
    }
    for (uint32_t i = 1; i <= k->n_clients; i++) {
        struct lockcl *c = &lk->clients[i];
        c->id = i;
        c->ttl_ms =
            LOCKW_TTL_MS_MIN + (int64_t)prng_below(&p, LOCKW_TTL_MS_MAX - LOCKW_TTL_MS_MIN + 1);
        c->rate_ppm =
            1000000u - LOCKW_CLIENT_SKEW_PPM + prng_below(&p, 2 * LOCKW_CLIENT_SKEW_PPM + 1);
        c->clock_off_us = prng_below(&p, UINT64_C(1) << 40);
        c->spread = prng_chance(&p, 500000);
    }
    world_trace(w, 0,
                "locks: %u clients, %u names, client faults every %" PRIu64 "-%" PRIu64
                " ms, pauses %u ppm per write, %u/%u ppm per renewal, hop tail %u ppm%s",
                k->n_clients, k->n_names, k->fault_gap_min_us / 1000, k->fault_gap_max_us / 1000,
                k->gap_pause_ppm, k->renew_pause_ppm, k->moved_pause_ppm, k->tail_ppm,
                k->no_check_quorum ? ", raft without CheckQuorum" : "");
}

static void lockcl_schedule(struct world *w, struct lockcl *c, uint64_t delay_us)
{
    c->step_gen++;
    world_push(w, w->now_us + delay_us, WEV_LOCK_STEP, 0, (c->step_gen << 8) | c->id, NULL);
}

static void lockcl_ka_schedule(struct world *w, struct lockcl *c)
{
    c->ka_gen++;
    uint64_t period = lockcl_real_us(c, (uint64_t)c->ttl_ms * 1000u / 3);
    world_push(w, w->now_us + period, WEV_LOCK_KA, 0, (c->ka_gen << 8) | c->id, NULL);
}

static void lockcl_boot(struct world *w, struct lockcl *c)
{
    c->up = true;
    c->paused = false;
    c->state = LOCKCL_IDLE;
    c->leader_hint = 0;
    int k = snprintf(c->owner, sizeof(c->owner), "c%u.%u", c->id, c->inc);
    CC_ASSERT(k > 0 && (size_t)k < sizeof(c->owner));
    c->owner_len = (uint16_t)k;
    lockcl_schedule(w, c, prng_below(&lockcl_lk(w)->rng, 50001));
}

static void lockcl_fault_schedule(struct world *w)
{
    struct lockw_knobs *k = &lockcl_lk(w)->k;
    if (k->fault_gap_max_us == 0)
        return;
    uint64_t gap = k->fault_gap_min_us +
                   prng_below(&lockcl_lk(w)->rng, k->fault_gap_max_us - k->fault_gap_min_us + 1);
    world_push(w, w->now_us + gap, WEV_LOCK_FAULT, 0, 0, NULL);
}

void lockcl_start(struct world *w)
{
    struct lockworld *lk = lockcl_lk(w);
    for (uint32_t i = 1; i <= lk->k.n_clients; i++)
        lockcl_boot(w, &lk->clients[i]);
    lockcl_fault_schedule(w);
}

/* ---- messages ------------------------------------------------------------------------- */

static size_t lockcl_new_msg(struct world *w, const struct lockcl *c, uint8_t kind)
{
    struct lockworld *lk = lockcl_lk(w);
    mem_grow((void **)&lk->msgs, &lk->cap_msgs, lk->n_msgs + 1, sizeof(*lk->msgs));
    size_t m = lk->n_msgs++;
    lk->msgs[m] = (struct lockw_msg){.kind = kind,
                                     .state = LOCKW_SENT,
                                     .client = c->id,
                                     .inc = c->inc,
                                     .session = c->session,
                                     .lease = c->lease,
                                     .ttl_ms = c->ttl_ms,
                                     .lock = c->lock,
                                     .rid = c->rid,
                                     .token = c->token,
                                     .sent_us = w->now_us,
                                     .sent_local_us = lockcl_local_us(w, c)};
    return m;
}

static uint32_t lockcl_pick_node(struct world *w, struct lockcl *c)
{
    uint32_t h = c->leader_hint;
    bool follow = !c->spread || c->use_hint;
    c->use_hint = false;
    if (follow && h >= 1 && h <= w->n_nodes && w->nodes[h].up)
        return h;
    uint32_t up[WORLD_NODES_MAX], n = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        if (w->nodes[id].up)
            up[n++] = id;
    return n ? up[prng_below(&lockcl_lk(w)->rng, n)] : 0;
}

/* Sends message m to a node; false when no node is up (nothing sent). */
static bool lockcl_send(struct world *w, struct lockcl *c, size_t m)
{
    uint32_t node = lockcl_pick_node(w, c);
    if (node == 0)
        return false;
    w->lk->msgs[m].node = node;
    world_push(w, w->now_us + lockcl_hop_us(w), WEV_LOCK_REQ, node, m, NULL);
    return true;
}

static const char *const lockcl_kind_names[] = {"",        "grant",  "keepalive", "acquire",
                                                "release", "revoke", "notify"};

/* A lock op (one at a time); its answer or its timeout comes back as an event. */
static void lockcl_op(struct world *w, struct lockcl *c, uint8_t kind)
{
    size_t m = lockcl_new_msg(w, c, kind);
    if (!lockcl_send(w, c, m)) {
        lockcl_schedule(w, c, lockcl_backoff_us(w)); /* no node up: try later */
        return;
    }
    c->op_busy = true;
    c->op_msg = m;
    world_push(w, w->now_us + LOCKW_OP_TIMEOUT_US, WEV_LOCK_TIMEOUT, 0, m, NULL);
}

static void lockcl_ka_send(struct world *w, struct lockcl *c)
{
    size_t m = lockcl_new_msg(w, c, LOCKW_KEEPALIVE);
    if (!lockcl_send(w, c, m))
        return;
    c->ka_busy = true;
    c->ka_msg = m;
    uint64_t limit = lockcl_real_us(c, (uint64_t)c->ttl_ms * 1000u / 3);
    if (limit > LOCKW_OP_TIMEOUT_US)
        limit = LOCKW_OP_TIMEOUT_US;
    world_push(w, w->now_us + limit, WEV_LOCK_TIMEOUT, 0, m, NULL);
}

/* ---- session ---------------------------------------------------------------------------- */

/* The lease is gone (dead, or given up): nothing of this session is believed any more. */
static void lockcl_end_session(struct world *w, struct lockcl *c, const char *why)
{
    world_trace(w, 0, "c%u.%u ends lease %" PRId64 "%s: %s", c->id, c->inc, c->lease,
                c->holding ? " while holding" : "", why);
    lockchk_session_end(&w->lk->chk, c->id);
    c->holding = false;
    c->lease = 0;
    c->belief_end_local_us = 0;
    c->session++;
    c->state = LOCKCL_IDLE;
    c->op_busy = false;
    c->ka_busy = false;
    c->ka_gen++; /* stops the renewals */
    c->watch_node = 0;
    lockcl_schedule(w, c, lockcl_backoff_us(w));
}

/* The watchdog's lost_cb, or a lease given up after a release: revoke it and start over.
 * The REVOKE is fire and forget; if it is lost the lease simply expires. */
static void lockcl_abandon(struct world *w, struct lockcl *c, const char *why)
{
    if (c->lease != 0) {
        size_t m = lockcl_new_msg(w, c, LOCKW_REVOKE);
        lockcl_send(w, c, m);
    }
    lockcl_end_session(w, c, why);
}

/* ---- holding ------------------------------------------------------------------------------ */

static void lockcl_hold(struct world *w, struct lockcl *c, uint64_t token, const char *how)
{
    c->holding = true;
    c->token = token;
    c->grant_rx_us = w->now_us;
    c->writes_left = 1 + (uint32_t)prng_below(&lockcl_lk(w)->rng, LOCKW_WRITES_MAX);
    c->state = LOCKCL_HOLDING;
    c->op_busy = false;
    c->watch_node = 0;
    world_trace(w, 0, "c%u.%u holds L%u token %" PRIu64 " (%s)", c->id, c->inc, c->lock, token,
                how);
    if (lockchk_hold(&w->lk->chk, c->id, c->inc, c->lock, token, w->now_us) != 0) {
        lockcl_fail_checks(w);
        return;
    }
    lockcl_schedule(w, c, prng_below(&lockcl_lk(w)->rng, lockcl_lk(w)->k.think_max_us + 1));
}

static void lockcl_write_send(struct world *w, size_t i)
{
    struct lockworld *lk = lockcl_lk(w);
    uint64_t delay = lockcl_hop_us(w);
    if (prng_chance(&lk->rng, lk->k.tail_ppm))
        delay += 50000 + prng_below(&lk->rng, 250001); /* a stuck connection */
    world_push(w, w->now_us + delay, WEV_LOCK_WRITE, 0, i, NULL);
}

static void lockcl_pause(struct world *w, struct lockcl *c, uint64_t duration_us, const char *why)
{
    c->paused = true;
    c->pause_gen++;
    w->lk->n_client_pauses++;
    world_trace(w, 0, "c%u.%u pauses for %" PRIu64 " ms (%s)", c->id, c->inc, duration_us / 1000,
                why);
    world_push(w, w->now_us + duration_us, WEV_LOCK_RESUME, 0, (c->pause_gen << 8) | c->id, NULL);
}

/* One step while holding: write while the belief lasts, release after the last write. */
static void lockcl_hold_step(struct world *w, struct lockcl *c)
{
    struct lockworld *lk = lockcl_lk(w);
    if (!lockcl_believes(w, c)) {
        lockcl_abandon(w, c, "belief ran out (lost_cb)");
        return;
    }
    if (c->writes_left == 0) {
        lockchk_unhold(&lk->chk, c->id); /* no belief from the moment it sends */
        c->holding = false;
        c->state = LOCKCL_RELEASING;
        lockcl_op(w, c, LOCKW_RELEASE);
        return;
    }
    c->writes_left--;
    mem_grow((void **)&lk->writes, &lk->cap_writes, lk->n_writes + 1, sizeof(*lk->writes));
    size_t i = lk->n_writes++;
    lk->writes[i] = (struct lockw_write){.client = c->id,
                                         .inc = c->inc,
                                         .lock = c->lock,
                                         .token = c->token,
                                         .decided_us = w->now_us,
                                         .rx_us = c->grant_rx_us};
    lockcl_schedule(w, c, 1 + prng_below(&lk->rng, lk->k.think_max_us));
    if (prng_chance(&lk->rng, lk->k.gap_pause_ppm)) {
        c->has_pending_write = true; /* checked, then stopped before the send */
        c->pending_write = i;
        lockcl_pause(w, c, LOCKCL_PAUSE_MIN_US + prng_below(&lk->rng, LOCKCL_PAUSE_SPAN_US),
                     "between check and write");
        return;
    }
    lockcl_write_send(w, i);
}

static void lockcl_step(struct world *w, struct lockcl *c)
{
    struct lockworld *lk = lockcl_lk(w);
    if (w->phase != WORLD_FAULTS || c->op_busy)
        return; /* load stops at heal: leases then expire and queues drain */
    switch (c->state) {
    case LOCKCL_IDLE:
    case LOCKCL_GRANTING:
        c->state = LOCKCL_GRANTING;
        lockcl_op(w, c, LOCKW_GRANT);
        break;
    case LOCKCL_READY:
        c->rid++;
        c->lock = (uint32_t)prng_below(&lk->rng, lk->k.n_names);
        c->state = LOCKCL_ACQUIRING;
        lockcl_op(w, c, LOCKW_ACQUIRE);
        break;
    case LOCKCL_ACQUIRING:
    case LOCKCL_WAITING: /* ask again with the same request id */
        c->state = LOCKCL_ACQUIRING;
        lockcl_op(w, c, LOCKW_ACQUIRE);
        break;
    case LOCKCL_HOLDING:
        lockcl_hold_step(w, c);
        break;
    case LOCKCL_RELEASING:
        lockcl_op(w, c, LOCKW_RELEASE);
        break;
    default:
        CC_UNREACHABLE();
    }
}

/* ---- answers ------------------------------------------------------------------------------ */

static void lockcl_redirect(struct world *w, struct lockcl *c, const struct lockw_msg *msg)
{
    c->leader_hint = msg->hint;
    c->use_hint = true;
    lockcl_schedule(w, c, msg->hint != 0 ? LOCKCL_REDIRECT_US : lockcl_backoff_us(w));
}

/* The outcome of c's current op m; err is the answer's, or LOCKW_EUNKNOWN on timeout. */
static void lockcl_outcome(struct world *w, struct lockcl *c, size_t m, int err)
{
    struct lockworld *lk = lockcl_lk(w);
    const struct lockw_msg msg = lk->msgs[m];
    if (err == LOCKW_ENOTLEADER) {
        lockcl_redirect(w, c, &msg);
        return;
    }
    if (err == 0 && msg.node != 0)
        c->leader_hint = msg.node;
    switch (msg.kind) {
    case LOCKW_GRANT:
        if (err != 0) {
            c->state = LOCKCL_IDLE;
            lockcl_schedule(w, c, lockcl_backoff_us(w));
            break;
        }
        c->lease = msg.r_lease;
        lockchk_lease(&lk->chk, c->id, c->lease);
        c->belief_end_local_us = msg.sent_local_us + lockcl_belief_us(c);
        c->renewed_sent_us = msg.sent_us;
        lockchk_renewed(&lk->chk, c->id, msg.sent_us, lockcl_belief_us(c));
        c->state = LOCKCL_READY;
        world_trace(w, msg.node, "c%u.%u has lease %" PRId64 " (ttl %" PRId64 " ms)", c->id, c->inc,
                    c->lease, c->ttl_ms);
        lockcl_ka_schedule(w, c);
        lockcl_schedule(w, c, prng_below(&lk->rng, lk->k.think_max_us + 1));
        break;
    case LOCKW_ACQUIRE:
        if (err == 0 && msg.r_status == LOCK_GRANTED) {
            lockcl_hold(w, c, msg.r_token, "granted at once");
        } else if (err == 0 && msg.r_status == LOCK_QUEUED) {
            c->state = LOCKCL_WAITING;
            c->watch_node = msg.node;
            lockcl_schedule(w, c, LOCKW_REWAIT_US);
        } else if (err == LOCKW_ELOST || err == LOCKW_EUNKNOWN) {
            c->state = LOCKCL_ACQUIRING; /* the same request id again: idempotent */
            lockcl_schedule(w, c, lockcl_backoff_us(w));
        } else {
            lockcl_end_session(
                w, c, err == LOCK_ENOLEASE ? "acquire: no such lease" : lockw_strerror(err));
        }
        break;
    case LOCKW_RELEASE:
        if (err == LOCKW_ELOST) { /* never committed: safe to send again */
            lockcl_schedule(w, c, lockcl_backoff_us(w));
        } else if (err == LOCKW_EUNKNOWN) {
            lockcl_abandon(w, c, "release outcome unknown");
        } else if (prng_chance(&lk->rng, LOCKCL_REVOKE_PPM)) {
            lockcl_abandon(w, c, "done with the lease");
        } else {
            c->state = LOCKCL_READY; /* released, or the hold was gone already */
            lockcl_schedule(w, c, prng_below(&lk->rng, lk->k.think_max_us + 1));
        }
        break;
    default:
        CC_UNREACHABLE();
    }
}

static void lockcl_ka_answer(struct world *w, struct lockcl *c, size_t m)
{
    struct lockworld *lk = lockcl_lk(w);
    const struct lockw_msg msg = lk->msgs[m];
    if (c->ka_busy && c->ka_msg == m)
        c->ka_busy = false;
    world_vtrace(w, msg.node, "c%u.%u renewal of lease %" PRId64 " sent %" PRIu64 " ms ago: %s",
                 c->id, c->inc, msg.lease, (w->now_us - msg.sent_us) / 1000,
                 lockw_strerror(msg.err));
    if (msg.err == 0) {
        lk->n_keepalives_ok++;
        c->leader_hint = msg.node;
        uint64_t end = msg.sent_local_us + lockcl_belief_us(c);
        if (end > c->belief_end_local_us)
            c->belief_end_local_us = end;
        lockchk_renewed(&lk->chk, c->id, msg.sent_us, lockcl_belief_us(c));
        if (msg.sent_us > c->renewed_sent_us)
            c->renewed_sent_us = msg.sent_us;
        const struct world_node *l = world_leader(w);
        bool moved = l == NULL || l->id != msg.node;
        if (prng_chance(&lk->rng, moved ? lk->k.moved_pause_ppm : lk->k.renew_pause_ppm)) {
            uint64_t ttl_us = (uint64_t)c->ttl_ms * 1000u;
            lockcl_pause(w, c, lockcl_real_us(c, ttl_us / 2 + prng_below(&lk->rng, 3 * ttl_us / 2)),
                         moved ? "just after a renewal by a node that no longer leads"
                               : "just after a renewal");
        }
    } else if (msg.err == LOCKW_ENOTLEADER) {
        c->leader_hint = msg.hint;
        if (!c->ka_busy && msg.hint != 0 && msg.hint != msg.node && w->phase == WORLD_FAULTS &&
            c->ka_redirects < LOCKCL_KA_REDIRECTS) {
            c->ka_redirects++;
            c->use_hint = true;
            lockcl_ka_send(w, c);
        }
    } else if (msg.err == LEASE_TIMER_ENOTFOUND || msg.err == LEASE_TIMER_EEXPIRED) {
        lk->n_keepalives_failed++;
        lockcl_end_session(w, c, lockw_strerror(msg.err));
    }
}

static void lockcl_notified(struct world *w, struct lockcl *c, size_t m)
{
    const struct lockw_msg msg = w->lk->msgs[m];
    if ((c->state != LOCKCL_WAITING && c->state != LOCKCL_ACQUIRING) || c->rid != msg.rid ||
        c->lease != msg.lease || c->lock != msg.lock)
        return;
    lockcl_hold(w, c, msg.token, "woken");
}

void lockcl_answer(struct world *w, size_t m)
{
    world_push(w, w->now_us + lockcl_hop_us(w), WEV_LOCK_REPLY, 0, m, NULL);
}

void lockcl_granted(struct world *w, struct world_node *n, uint32_t lock, const uint8_t *owner,
                    uint16_t owner_len, int64_t lease, uint64_t rid, uint64_t token)
{
    uint32_t id = 0, inc = 0;
    if (!lockcl_owner_parse(owner, owner_len, &id, &inc) || id > w->lk->k.n_clients)
        return;
    struct lockcl *c = &w->lk->clients[id];
    if (!c->up || c->inc != inc || c->lease != lease || c->rid != rid || c->lock != lock ||
        c->watch_node != n->id || (c->state != LOCKCL_WAITING && c->state != LOCKCL_ACQUIRING))
        return;
    size_t m = lockcl_new_msg(w, c, LOCKW_NOTIFY);
    w->lk->msgs[m].token = token;
    w->lk->msgs[m].node = n->id;
    w->lk->msgs[m].state = LOCKW_ANSWERED;
    lockcl_answer(w, m);
}

void lockcl_node_crashed(struct world *w, struct world_node *n)
{
    struct lockworld *lk = lockcl_lk(w);
    for (uint32_t i = 1; i <= lk->k.n_clients; i++) {
        struct lockcl *c = &lk->clients[i];
        if (c->up && c->state == LOCKCL_WAITING && c->watch_node == n->id) {
            c->state = LOCKCL_ACQUIRING; /* the connection broke: ask elsewhere */
            c->watch_node = 0;
            lockcl_schedule(w, c, lockcl_hop_us(w));
        }
    }
}

/* A new leader's deadlines decide whether a client that renewed just before the change
 * may rely on that renewal: make a holder do exactly that now and then. */
void lockcl_on_elected(struct world *w, struct world_node *n)
{
    struct lockworld *lk = lockcl_lk(w);
    uint64_t recent_us = (uint64_t)WORLD_ELECTION_TICKS * SIM_TICK_US;
    if (w->phase != WORLD_FAULTS)
        return;
    for (uint32_t i = 1; i <= lk->k.n_clients; i++) {
        struct lockcl *c = &lk->clients[i];
        if (!c->up || c->paused || !c->holding || c->renewed_sent_us + recent_us < w->now_us ||
            !prng_chance(&lk->rng, lk->k.elected_pause_ppm))
            continue;
        uint64_t ttl_us = (uint64_t)c->ttl_ms * 1000u;
        lockcl_pause(w, c, lockcl_real_us(c, ttl_us / 2 + prng_below(&lk->rng, 3 * ttl_us / 2)),
                     "renewed just before a leader change");
    }
}

void lockcl_on_renewed(struct world *w, struct world_node *n)
{
    struct lockworld *lk = lockcl_lk(w);
    if (w->phase == WORLD_FAULTS && prng_chance(&lk->rng, lk->k.handover_ppm))
        world_push(w, w->now_us + prng_below(&lk->rng, 2001), WEV_LOCK_HANDOVER, n->id,
                   raft_term(n->raft), NULL);
}

/* WEV_LOCK_HANDOVER: the leader that just renewed a lease transfers leadership, so the
 * next leader is elected right after a renewal that its deadlines must honour. */
static void lockcl_handover(struct world *w, uint32_t id, uint64_t term)
{
    struct world_node *n = &w->nodes[id];
    if (!n->up || n->paused || raft_role(n->raft) != RAFT_LEADER || raft_term(n->raft) != term)
        return;
    const struct raft_config *c = raft_config(n->raft);
    uint32_t voters[WORLD_NODES_MAX], k = 0;
    for (uint32_t v = 1; v <= w->n_nodes; v++)
        if (v != id && raft_config_role(c, v) == RAFT_VOTER)
            voters[k++] = v;
    if (k == 0)
        return;
    uint32_t target = voters[prng_below(&lockcl_lk(w)->rng, k)];
    int rv = raft_transfer(n->raft, target);
    world_trace(w, id, "lock world: hand over to n%u after a renewal: %s", target,
                rv == 0 ? "started" : raft_strerror(rv));
    host_drain(w, n);
}

/* ---- faults ------------------------------------------------------------------------------ */

static void lockcl_crash(struct world *w, struct lockcl *c)
{
    struct lockworld *lk = lockcl_lk(w);
    world_trace(w, 0, "c%u.%u crashes%s", c->id, c->inc, c->holding ? " holding its lock" : "");
    lockchk_session_end(&lk->chk, c->id);
    lk->n_client_crashes++;
    c->up = false;
    c->paused = false;
    c->state = LOCKCL_DOWN;
    c->holding = false;
    c->lease = 0;
    c->belief_end_local_us = 0;
    c->inc++;
    c->session++;
    c->step_gen++;
    c->ka_gen++;
    c->pause_gen++;
    c->op_busy = c->ka_busy = false;
    c->has_pending_write = false;
    c->n_held = 0;
    c->watch_node = 0;
    uint64_t down = LOCKCL_RESTART_MIN_US + prng_below(&lk->rng, LOCKCL_RESTART_SPAN_US);
    world_push(w, w->now_us + down, WEV_LOCK_RESTART, 0, ((uint64_t)c->inc << 8) | c->id, NULL);
}

/* The leader stalls (a long GC or disk stall, SIGSTOP) for longer than node.c's
 * pauses: renewals queue up at it, and on resume it may answer them before it reads
 * what its peers said meanwhile (host_resume), as a deposed leader that does not know
 * it yet. Within the world's limit on nodes down at once. */
static void lockcl_stall_leader(struct world *w)
{
    struct lockworld *lk = lockcl_lk(w);
    struct world_node *l = world_leader(w);
    if (l == NULL || world_n_unavailable(w) >= w->k.max_down)
        return;
    uint64_t d = LOCKCL_STALL_MIN_US + prng_below(&lk->rng, LOCKCL_STALL_SPAN_US);
    world_trace(w, l->id, "lock world: the leader stalls for %" PRIu64 " ms", d / 1000);
    host_pause(w, l);
    world_push(w, w->now_us + d, WEV_RESUME, l->id, l->pause_gen, NULL);
}

static void lockcl_fault(struct world *w)
{
    struct lockworld *lk = lockcl_lk(w);
    if (w->phase != WORLD_FAULTS)
        return;
    struct lockcl *c = &lk->clients[1 + prng_below(&lk->rng, lk->k.n_clients)];
    uint32_t roll = (uint32_t)prng_below(&lk->rng, 100);
    struct world_node *l = world_leader(w);
    if (roll < 25) {
        lockcl_stall_leader(w);
    } else if (roll < 45) {
        /* longer than any ttl: clients that keep renewing at the old leader must find
         * out before the new one expires their leases */
        if (l != NULL)
            fault_isolate(w, l->id,
                          LOCKCL_ISOLATE_MIN_US + prng_below(&lk->rng, LOCKCL_ISOLATE_SPAN_US),
                          "lock world: isolate the leader from its peers");
    } else if (c->up && !c->paused && roll < 75)
        lockcl_crash(w, c);
    else if (c->up && !c->paused)
        lockcl_pause(w, c, LOCKCL_PAUSE_MIN_US + prng_below(&lk->rng, LOCKCL_PAUSE_SPAN_US),
                     "fault");
    lockcl_fault_schedule(w);
}

/* ---- events ------------------------------------------------------------------------------- */

static void lockcl_write_arrives(struct world *w, size_t i)
{
    struct lockworld *lk = lockcl_lk(w);
    const struct lockw_write wr = lk->writes[i];
    struct lockw_resource *r = &lk->res[wr.lock];
    bool accepted = wr.token >= r->max_token; /* the fencing rule (docs/locks.md) */
    if (accepted)
        r->max_token = wr.token;
    world_trace(w, 0, "L%u resource %s c%u.%u token %" PRIu64 " (decided %" PRIu64 " us ago)",
                wr.lock, accepted ? "accepts" : "fences", wr.client, wr.inc, wr.token,
                w->now_us - wr.decided_us);
    if (lockchk_write(&lk->chk, wr.lock, wr.token, wr.client, wr.inc, wr.decided_us, wr.rx_us,
                      accepted) != 0)
        lockcl_fail_checks(w);
}

static void lockcl_resume(struct world *w, struct lockcl *c)
{
    c->paused = false;
    world_trace(w, 0, "c%u.%u resumes (%zu held events)", c->id, c->inc, c->n_held);
    if (c->has_pending_write) {
        c->has_pending_write = false;
        lockcl_write_send(w, c->pending_write); /* no second look at its belief */
    }
    struct evq_event *held = c->held;
    size_t n_held = c->n_held;
    c->held = NULL;
    c->n_held = c->cap_held = 0;
    for (size_t i = 0; i < n_held && !w->failed; i++) {
        if (!c->up || c->paused) { /* paused again while catching up: hold the rest */
            mem_grow((void **)&c->held, &c->cap_held, c->n_held + 1, sizeof(*c->held));
            c->held[c->n_held++] = held[i];
            continue;
        }
        lockcl_event(w, &held[i]);
    }
    free(held);
}

static struct lockcl *lockcl_addressee(struct world *w, const struct evq_event *ev)
{
    struct lockworld *lk = lockcl_lk(w);
    uint32_t id;
    if (ev->kind == WEV_LOCK_REPLY || ev->kind == WEV_LOCK_TIMEOUT)
        id = lk->msgs[ev->a].client;
    else
        id = (uint32_t)(ev->a & 0xff);
    CC_ASSERT(id >= 1 && id <= lk->k.n_clients);
    return &lk->clients[id];
}

void lockcl_event(struct world *w, const struct evq_event *ev)
{
    struct lockworld *lk = lockcl_lk(w);
    if (ev->kind == WEV_LOCK_WRITE) {
        lockcl_write_arrives(w, (size_t)ev->a);
        return;
    }
    if (ev->kind == WEV_LOCK_FAULT) {
        lockcl_fault(w);
        return;
    }
    if (ev->kind == WEV_LOCK_HANDOVER) {
        lockcl_handover(w, ev->node, ev->a);
        return;
    }
    struct lockcl *c = lockcl_addressee(w, ev);
    uint64_t gen = ev->a >> 8;
    switch (ev->kind) {
    case WEV_LOCK_RESTART:
        if (!c->up && gen == c->inc) {
            world_trace(w, 0, "c%u.%u restarts", c->id, c->inc);
            lockcl_boot(w, c);
        }
        return;
    case WEV_LOCK_RESUME:
        if (c->up && c->paused && gen == c->pause_gen)
            lockcl_resume(w, c);
        return;
    default:
        break;
    }
    if (!c->up)
        return;
    if (c->paused) {
        mem_grow((void **)&c->held, &c->cap_held, c->n_held + 1, sizeof(*c->held));
        c->held[c->n_held++] = *ev;
        return;
    }
    const struct lockw_msg *msg =
        ev->kind == WEV_LOCK_REPLY || ev->kind == WEV_LOCK_TIMEOUT ? &lk->msgs[ev->a] : NULL;
    if (msg != NULL && (msg->inc != c->inc || msg->session != c->session))
        return; /* for an earlier life or lease */
    switch (ev->kind) {
    case WEV_LOCK_STEP:
        if (gen == c->step_gen)
            lockcl_step(w, c);
        break;
    case WEV_LOCK_KA:
        if (gen == c->ka_gen && w->phase == WORLD_FAULTS && c->lease != 0) {
            c->ka_redirects = 0;
            if (!c->ka_busy)
                lockcl_ka_send(w, c);
            lockcl_ka_schedule(w, c);
        }
        break;
    case WEV_LOCK_REPLY:
        if (msg->kind == LOCKW_KEEPALIVE)
            lockcl_ka_answer(w, c, (size_t)ev->a);
        else if (msg->kind == LOCKW_NOTIFY)
            lockcl_notified(w, c, (size_t)ev->a);
        else if (c->op_busy && c->op_msg == ev->a) {
            c->op_busy = false;
            lockcl_outcome(w, c, (size_t)ev->a, msg->err);
        }
        break;
    case WEV_LOCK_TIMEOUT:
        if (msg->kind == LOCKW_KEEPALIVE) {
            if (c->ka_busy && c->ka_msg == ev->a)
                c->ka_busy = false;
        } else if (c->op_busy && c->op_msg == ev->a) {
            c->op_busy = false;
            world_trace(w, 0, "c%u.%u %s timed out", c->id, c->inc, lockcl_kind_names[msg->kind]);
            lockcl_outcome(w, c, (size_t)ev->a, LOCKW_EUNKNOWN);
        }
        break;
    default:
        CC_UNREACHABLE();
    }
}

/* ---- report ------------------------------------------------------------------------------- */

void lockcl_report(struct world *w)
{
    struct lockworld *lk = lockcl_lk(w);
    struct sim_result *res = w->res;
    res->n_lock_grants = (uint32_t)lk->chk.n_grants;
    res->n_lock_writes_ok = (uint32_t)lk->chk.n_writes_ok;
    res->n_lock_writes_fenced = (uint32_t)lk->chk.n_writes_fenced;
    res->n_lease_expiries = lk->n_expiries;
    res->n_keepalives_ok = lk->n_keepalives_ok;
    res->n_keepalives_failed = lk->n_keepalives_failed;
}

void lockcl_free(struct world *w)
{
    struct lockworld *lk = w->lk;
    if (lk == NULL)
        return;
    for (uint32_t i = 1; i <= lk->k.n_clients; i++)
        free(lk->clients[i].held);
    free(lk->msgs);
    free(lk->writes);
    lockchk_free(&lk->chk);
    free(lk);
    w->lk = NULL;
}
