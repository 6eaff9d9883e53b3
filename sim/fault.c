/* fault.c -- fault injection and operator actions for the simulator.
 *
 * During the fault phase a WEV_FAULT event fires every fault_gap (per-seed
 * intensity: calm, moderate, brutal) and injects one fault drawn by weight:
 *   crash a random node / the leader    kill -9: unsynced writes partly lost,
 *                                       restart after 1-30 ms or 30-500 ms
 *   pause a random node / the leader    no ticks, messages held; resumes after
 *                                       20-400 ms (often > an election timeout)
 *   symmetric partition                 random split into two groups
 *   one-way link cuts                   1-3 directed links
 *   isolate the leader                  both ways, inbound only or outbound only
 *   flapping link                       a pair of links toggles every 1-10 ms
 *   slow disk                           fsyncs take 5-30 ms for a while
 * Link faults are counted per directed link (w->cut), so overlapping faults
 * heal independently. Besides these, targeted faults hit the moments where a
 * bug shows (rates per seed intensity, see world_knobs()):
 *   fault_on_write()    crash inside the fsync window of a write that grants a
 *                       vote or carries entries or an ack: losing unsynced state
 *                       hurts most there (Raft Figure 2); such a node may be
 *                       back within 3 ms, while messages to it are in flight
 *   fault_on_ack()      crash or isolate a leader right after it acknowledged a
 *                       write, before followers learn the new commit index
 *   fault_on_elected()  crash a new leader before its no-op is durable, or
 *                       isolate it before the no-op is replicated
 *
 * Operators act every 50-250 ms on the leader: leader transfer to a random
 * voter (a quick election whose winner may not know the latest commit index
 * yet), and single-server membership changes (remove a voter while more
 * than 3 remain, add it back as a learner, promote it). Refusals (EBUSY,
 * ENOTREADY, ECATCHUP, ...) just mean "later".
 *
 * Nodes crashed or paused at once by random faults stay <= k.max_down
 * (a minority, or a bare majority on some brutal seeds).
 *
 * Sections: helpers | link faults | node faults | operators | events | heal.
 */
#include <inttypes.h>
#include <string.h>

#include "base/assert.h"
#include "mem.h"
#include "world.h"

#define FAULT_OPERATOR_MIN_US  50000 /* operator actions every 50-250 ms */
#define FAULT_OPERATOR_SPAN_US 200001
#define FAULT_VOTERS_MIN       3 /* membership changes never go below 3 voters */

enum fault_kind {
    FAULT_CRASH,
    FAULT_CRASH_LEADER,
    FAULT_PAUSE,
    FAULT_PAUSE_LEADER,
    FAULT_PARTITION,
    FAULT_ONEWAY,
    FAULT_ISOLATE_LEADER,
    FAULT_FLAP,
    FAULT_SLOW_DISK,
    FAULT_KINDS
};

static const uint32_t fault_weights[FAULT_KINDS] = {
    [FAULT_CRASH] = 12,          [FAULT_CRASH_LEADER] = 14, [FAULT_PAUSE] = 6,
    [FAULT_PAUSE_LEADER] = 10,   [FAULT_PARTITION] = 12,    [FAULT_ONEWAY] = 8,
    [FAULT_ISOLATE_LEADER] = 14, [FAULT_FLAP] = 8,          [FAULT_SLOW_DISK] = 6,
};

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t fault_between(struct world *w, uint64_t lo_us, uint64_t hi_us)
{
    CC_ASSERT(hi_us >= lo_us);
    return lo_us + prng_below(&w->rng_fault, hi_us - lo_us + 1);
}

/* Until the next operator action (lock seeds set their own, slower cadence). */
static uint64_t fault_operator_gap_us(struct world *w)
{
    if (w->k.operator_gap_max_us == 0)
        return FAULT_OPERATOR_MIN_US + prng_below(&w->rng_fault, FAULT_OPERATOR_SPAN_US);
    return fault_between(w, w->k.operator_gap_min_us, w->k.operator_gap_max_us);
}

static uint64_t fault_link_bit(uint32_t from, uint32_t to)
{
    return UINT64_C(1) << ((from - 1) * WORLD_NODES_MAX + (to - 1));
}

uint64_t fault_fsync_us(struct world *w, const struct world_node *n)
{
    if (n->disk_slow)
        return fault_between(w, 5000, 30000);
    if (n->disk_sluggish)
        return fault_between(w, 2000, 15000);
    if (prng_chance(&w->rng_fault, w->k.fsync_slow_ppm))
        return fault_between(w, 3000, 20000);
    return fault_between(w, 200, 3000);
}

static struct world_node *fault_random_up(struct world *w)
{
    uint32_t ids[WORLD_NODES_MAX], n = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        if (w->nodes[id].up && !w->nodes[id].paused)
            ids[n++] = id;
    return n ? &w->nodes[ids[prng_below(&w->rng_fault, n)]] : NULL;
}

/* ---- link faults ----------------------------------------------------------------- */

static void fault_apply(struct world *w, struct world_fault *f, bool on)
{
    if (f->applied == on)
        return;
    for (uint32_t from = 1; from <= w->n_nodes; from++)
        for (uint32_t to = 1; to <= w->n_nodes; to++)
            if (f->mask & fault_link_bit(from, to)) {
                CC_ASSERT(on || w->cut[from][to] > 0);
                w->cut[from][to] = (uint8_t)(w->cut[from][to] + (on ? 1 : -1));
            }
    f->applied = on;
}

/* Cuts the links in mask now; they heal after duration_us. */
static void fault_cut(struct world *w, uint64_t mask, uint64_t duration_us, const char *what)
{
    mem_grow((void **)&w->faults, &w->cap_faults, w->n_faults + 1, sizeof(*w->faults));
    size_t i = w->n_faults++;
    w->faults[i] = (struct world_fault){.mask = mask, .active = true};
    fault_apply(w, &w->faults[i], true);
    world_trace(w, 0, "fault %zu: %s for %" PRIu64 " ms (links %016" PRIx64 ")", i, what,
                duration_us / 1000, mask);
    world_push(w, w->now_us + duration_us, WEV_FAULT_END, 0, i, NULL);
}

static void fault_partition(struct world *w)
{
    uint32_t order[WORLD_NODES_MAX] = {0};
    CC_ASSERT(w->n_nodes >= 2 && w->n_nodes <= WORLD_NODES_MAX);
    for (uint32_t i = 0; i < w->n_nodes; i++)
        order[i] = i + 1;
    for (uint32_t i = w->n_nodes - 1; i > 0; i--) { /* Fisher-Yates */
        uint32_t j = (uint32_t)prng_below(&w->rng_fault, i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    uint32_t split = 1 + (uint32_t)prng_below(&w->rng_fault, w->n_nodes - 1);
    uint64_t mask = 0;
    for (uint32_t i = 0; i < split; i++)
        for (uint32_t j = split; j < w->n_nodes; j++)
            mask |= fault_link_bit(order[i], order[j]) | fault_link_bit(order[j], order[i]);
    fault_cut(w, mask, fault_between(w, 50000, 1500000), "partition");
}

static void fault_oneway(struct world *w)
{
    uint64_t mask = 0;
    uint32_t n = 1 + (uint32_t)prng_below(&w->rng_fault, 3);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t from = 1 + (uint32_t)prng_below(&w->rng_fault, w->n_nodes);
        uint32_t to = 1 + (uint32_t)prng_below(&w->rng_fault, w->n_nodes - 1);
        if (to >= from)
            to++;
        mask |= fault_link_bit(from, to);
    }
    fault_cut(w, mask, fault_between(w, 50000, 800000), "one-way cuts");
}

static void fault_isolate_leader(struct world *w)
{
    struct world_node *l = world_leader(w);
    if (l == NULL)
        return;
    uint32_t mode = (uint32_t)prng_below(&w->rng_fault, 5); /* 0-2 both, 3 in, 4 out */
    uint64_t mask = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        if (id == l->id)
            continue;
        if (mode != 4)
            mask |= fault_link_bit(id, l->id);
        if (mode != 3)
            mask |= fault_link_bit(l->id, id);
    }
    static const char *const names[] = {"isolate leader", "isolate leader", "isolate leader",
                                        "cut leader inbound", "cut leader outbound"};
    fault_cut(w, mask, fault_between(w, 100000, 1000000), names[mode]);
}

void fault_isolate(struct world *w, uint32_t id, uint64_t duration_us, const char *what)
{
    uint64_t mask = 0;
    CC_ASSERT(id >= 1 && id <= w->n_nodes);
    for (uint32_t peer = 1; peer <= w->n_nodes; peer++)
        if (peer != id)
            mask |= fault_link_bit(peer, id) | fault_link_bit(id, peer);
    fault_cut(w, mask, duration_us, what);
}

static void fault_flap(struct world *w)
{
    uint32_t a = 1 + (uint32_t)prng_below(&w->rng_fault, w->n_nodes);
    uint32_t b = 1 + (uint32_t)prng_below(&w->rng_fault, w->n_nodes - 1);
    if (b >= a)
        b++;
    mem_grow((void **)&w->faults, &w->cap_faults, w->n_faults + 1, sizeof(*w->faults));
    size_t i = w->n_faults++;
    w->faults[i] = (struct world_fault){
        .mask = fault_link_bit(a, b) | fault_link_bit(b, a),
        .active = true,
        .flips_left = 10 + (uint32_t)prng_below(&w->rng_fault, 91),
        .flip_us = fault_between(w, 1000, 10000),
    };
    world_trace(w, 0, "fault %zu: link n%u<->n%u flaps every %" PRIu64 " us", i, a, b,
                w->faults[i].flip_us);
    world_push(w, w->now_us, WEV_FLAP, 0, i, NULL);
}

/* ---- node faults -------------------------------------------------------------------- */

/* quick: may restart within 3 ms, while messages sent to it are still in
 * flight (a vote request from a rival candidate, say). */
static void fault_crash(struct world *w, struct world_node *n, const char *why, bool quick)
{
    host_crash(w, n, why);
    uint64_t down = quick && prng_chance(&w->rng_fault, 400000) ? fault_between(w, 100, 3000)
                    : prng_chance(&w->rng_fault, 500000)        ? fault_between(w, 1000, 30000)
                                                                : fault_between(w, 30000, 500000);
    world_push(w, w->now_us + down, WEV_RESTART, n->id, n->epoch, NULL);
}

static void fault_pause(struct world *w, struct world_node *n)
{
    host_pause(w, n);
    world_push(w, w->now_us + fault_between(w, 20000, 400000), WEV_RESUME, n->id, n->pause_gen,
               NULL);
}

void fault_on_write(struct world *w, struct world_node *n, uint64_t sync_us, enum world_write what)
{
    uint32_t ppm = what == WRITE_VOTE ? w->k.vote_crash_ppm : w->k.target_crash_ppm;
    if (w->phase != WORLD_FAULTS || ppm == 0 || sync_us <= w->now_us)
        return;
    if (!prng_chance(&w->rng_fault, ppm))
        return;
    uint64_t at = w->now_us + prng_below(&w->rng_fault, sync_us - w->now_us);
    world_push(w, at, WEV_CRASH, n->id, n->epoch, NULL);
}

void fault_on_ack(struct world *w, struct world_node *n)
{
    if (w->phase != WORLD_FAULTS || !prng_chance(&w->rng_fault, w->k.ack_fault_ppm))
        return;
    if (prng_chance(&w->rng_fault, 300000)) { /* not now: n is mid-update */
        world_push(w, w->now_us, WEV_CRASH, n->id, n->epoch, NULL);
        return;
    }
    uint64_t mask = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        if (id != n->id)
            mask |= fault_link_bit(id, n->id) | fault_link_bit(n->id, id);
    fault_cut(w, mask, fault_between(w, 100000, 1000000), "isolate leader after an ack");
}

void fault_on_elected(struct world *w, struct world_node *n)
{
    if (w->phase != WORLD_FAULTS)
        return;
    if (prng_chance(&w->rng_fault, w->k.elected_cut_ppm)) {
        uint64_t mask = 0;
        for (uint32_t id = 1; id <= w->n_nodes; id++)
            if (id != n->id)
                mask |= fault_link_bit(id, n->id) | fault_link_bit(n->id, id);
        fault_cut(w, mask, fault_between(w, 50000, 500000), "isolate the new leader");
        return;
    }
    if (!prng_chance(&w->rng_fault, w->k.elected_crash_ppm))
        return;
    uint64_t window = n->sync_done_us > w->now_us ? n->sync_done_us - w->now_us : 1;
    world_push(w, w->now_us + prng_below(&w->rng_fault, window), WEV_CRASH, n->id, n->epoch, NULL);
}

static void fault_inject(struct world *w)
{
    uint32_t total = 0;
    for (int k = 0; k < FAULT_KINDS; k++)
        total += fault_weights[k];
    uint32_t roll = (uint32_t)prng_below(&w->rng_fault, total);
    int kind = 0;
    while (roll >= fault_weights[kind])
        roll -= fault_weights[kind++];
    bool can_down = world_n_unavailable(w) < w->k.max_down;
    struct world_node *n = NULL;
    switch (kind) {
    case FAULT_CRASH:
    case FAULT_PAUSE:
        n = can_down ? fault_random_up(w) : NULL;
        break;
    case FAULT_CRASH_LEADER:
    case FAULT_PAUSE_LEADER:
        n = can_down ? world_leader(w) : NULL;
        break;
    case FAULT_PARTITION:
        fault_partition(w);
        return;
    case FAULT_ONEWAY:
        fault_oneway(w);
        return;
    case FAULT_ISOLATE_LEADER:
        fault_isolate_leader(w);
        return;
    case FAULT_FLAP:
        fault_flap(w);
        return;
    case FAULT_SLOW_DISK:
        n = fault_random_up(w);
        if (n != NULL && !n->disk_slow) {
            n->disk_slow = true;
            world_trace(w, n->id, "slow disk");
            world_push(w, w->now_us + fault_between(w, 100000, 500000), WEV_DISK_FAST, n->id, 0,
                       NULL);
        }
        return;
    default:
        CC_UNREACHABLE();
    }
    if (n == NULL)
        return;
    if (kind == FAULT_CRASH || kind == FAULT_CRASH_LEADER)
        fault_crash(w, n, kind == FAULT_CRASH ? "random" : "leader", false);
    else
        fault_pause(w, n);
}

/* ---- operators ---------------------------------------------------------------------- */

static void fault_change(struct world *w, struct world_node *l, enum raft_change_op op, uint32_t id,
                         bool quiet)
{
    static const char *const names[] = {"", "add voter", "add learner", "promote", "remove"};
    uint64_t index = 0;
    int rv = raft_change(l->raft, op, id, &index);
    if (rv == 0 || !quiet)
        world_trace(w, l->id, "operator: %s n%u: %s", names[op], id,
                    rv == 0 ? "proposed" : raft_strerror(rv));
    host_drain(w, l);
}

static void fault_operator(struct world *w)
{
    struct world_node *l = world_leader(w);
    if (l == NULL)
        return;
    const struct raft_config *c = raft_config(l->raft);
    uint32_t roll = (uint32_t)prng_below(&w->rng_fault, 100);
    if (roll < 50 || w->n_nodes <= FAULT_VOTERS_MIN) {
        uint32_t voters[WORLD_NODES_MAX], n = 0;
        for (uint32_t id = 1; id <= w->n_nodes; id++)
            if (id != l->id && raft_config_role(c, id) == RAFT_VOTER)
                voters[n++] = id;
        if (n == 0)
            return;
        uint32_t target = voters[prng_below(&w->rng_fault, n)];
        int rv = raft_transfer(l->raft, target);
        world_trace(w, l->id, "operator: transfer to n%u: %s", target,
                    rv == 0 ? "started" : raft_strerror(rv));
        host_drain(w, l);
        return;
    }
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        int role = raft_config_role(c, id);
        if (w->nodes[id].dead)
            continue; /* a refused disk: never rejoins (host_restart) */
        if (role == 0) {
            fault_change(w, l, RAFT_ADD_LEARNER, id, false);
            return;
        }
        if (role == RAFT_LEARNER) {
            fault_change(w, l, RAFT_PROMOTE, id, false);
            return;
        }
    }
    if (roll >= 85 || raft_config_n_voters(c) <= FAULT_VOTERS_MIN)
        return;
    uint32_t voters[WORLD_NODES_MAX], n = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        if (id != l->id && raft_config_role(c, id) == RAFT_VOTER)
            voters[n++] = id;
    if (n > 0)
        fault_change(w, l, RAFT_REMOVE, voters[prng_below(&w->rng_fault, n)], false);
}

/* ---- events ---------------------------------------------------------------------------- */

void fault_start(struct world *w)
{
    world_push(w, w->now_us + fault_between(w, w->k.fault_gap_min_us, w->k.fault_gap_max_us),
               WEV_FAULT, 0, 0, NULL);
    world_push(w, w->now_us + fault_operator_gap_us(w), WEV_OPERATOR, 0, 0, NULL);
}

void fault_event(struct world *w, const struct evq_event *ev)
{
    struct world_node *n = ev->node ? &w->nodes[ev->node] : NULL;
    struct world_fault *f = NULL;
    switch (ev->kind) {
    case WEV_FAULT:
        if (w->phase != WORLD_FAULTS)
            break;
        fault_inject(w);
        world_push(w, w->now_us + fault_between(w, w->k.fault_gap_min_us, w->k.fault_gap_max_us),
                   WEV_FAULT, 0, 0, NULL);
        break;
    case WEV_OPERATOR:
        if (w->phase != WORLD_FAULTS)
            break;
        fault_operator(w);
        world_push(w, w->now_us + fault_operator_gap_us(w), WEV_OPERATOR, 0, 0, NULL);
        break;
    case WEV_CRASH:
        CC_ASSERT(n != NULL);
        if (w->phase == WORLD_FAULTS && n->up && n->epoch == ev->a &&
            world_n_unavailable(w) < w->k.max_down)
            fault_crash(w, n, "targeted", true);
        break;
    case WEV_RESTART:
        CC_ASSERT(n != NULL);
        if (!n->up && n->epoch == ev->a)
            host_restart(w, n);
        break;
    case WEV_RESUME:
        CC_ASSERT(n != NULL);
        if (n->up && n->paused && n->pause_gen == ev->a)
            host_resume(w, n);
        break;
    case WEV_DISK_FAST:
        CC_ASSERT(n != NULL);
        n->disk_slow = false;
        break;
    case WEV_FAULT_END:
        f = &w->faults[ev->a];
        if (f->active) {
            fault_apply(w, f, false);
            f->active = false;
            world_trace(w, 0, "fault %" PRIu64 " healed", ev->a);
        }
        break;
    case WEV_FLAP:
        f = &w->faults[ev->a];
        if (!f->active)
            break;
        if (f->flips_left == 0) {
            fault_apply(w, f, false);
            f->active = false;
            break;
        }
        f->flips_left--;
        fault_apply(w, f, !f->applied);
        world_push(w, w->now_us + f->flip_us, WEV_FLAP, 0, ev->a, NULL);
        break;
    default:
        CC_UNREACHABLE();
    }
}

/* ---- heal ------------------------------------------------------------------------------- */

void fault_heal(struct world *w)
{
    for (size_t i = 0; i < w->n_faults; i++) {
        fault_apply(w, &w->faults[i], false);
        w->faults[i].active = false;
    }
    for (uint32_t a = 1; a <= w->n_nodes; a++)
        for (uint32_t b = 1; b <= w->n_nodes; b++)
            CC_ASSERT(w->cut[a][b] == 0);
    w->k.loss_ppm = 0;
    w->k.dup_ppm = 0;
    for (uint32_t id = 1; id <= w->n_nodes && !w->failed; id++) {
        struct world_node *n = &w->nodes[id];
        n->disk_slow = false;
        if (!n->up && !n->dead)
            host_restart(w, n);
        else if (n->paused)
            host_resume(w, n);
    }
}

/* Re-adds removed servers (as learners, then voters), one change at a time. */
void fault_heal_membership(struct world *w)
{
    struct world_node *l = world_leader(w);
    if (l == NULL)
        return;
    const struct raft_config *c = raft_config(l->raft);
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        int role = raft_config_role(c, id);
        if (w->nodes[id].dead)
            continue; /* a refused disk: never rejoins (host_restart) */
        if (role == 0) {
            fault_change(w, l, RAFT_ADD_LEARNER, id, true);
            return;
        }
        if (role == RAFT_LEARNER) {
            fault_change(w, l, RAFT_PROMOTE, id, true);
            return;
        }
    }
}
