/* sim.c -- the simulated world: setup, event loop, phases, trace.
 *
 * One run (sim_run) is a pure function of its seed. The world holds N nodes,
 * each a Raft core (src/raft) run by host.c per the raft.h contract, a
 * network (directed links that fault.c can cut; delays, loss, duplication
 * drawn here), clients (client.c) and the checker (checks.c).
 *
 * Invariants:
 *   - every random draw comes from a prng stream seeded from cfg->seed; the
 *     event queue orders by (time, push sequence); nothing depends on pointer
 *     values or wall-clock time, so traces are byte-identical across runs;
 *   - an event addressed to a crashed node is dropped, one addressed to a
 *     paused node is held and replayed on resume (ticks simply stop);
 *   - checks (checks.c) run after every event that gave a node an input.
 *
 * Phases: faults (fault.c injects, client.c drives load) -> heal (everything
 * restarted and reconnected) -> liveness (a leader and a fresh committed
 * write within WORLD_LIVENESS_TICKS) -> convergence (all replicas equal
 * within WORLD_CONVERGE_TICKS) -> final checks (digests, acknowledged
 * writes, linearizability).
 *
 * Lock seeds (cfg->locks; lockworld.h) add lease and lock clients, the nodes' lock
 * machines and lease timers, and a protected resource, with their own checks.
 *
 * The trace: world_trace() lines (state changes, faults, client ops) are
 * hashed as text and printed with --verbose; world_vtrace() lines (messages,
 * commits) are only printed; every event's (time, kind, node, payload) is
 * folded into the same hash. So the hash does not depend on --verbose.
 *
 * Sections: trace and failure | network | cluster queries | heal phase |
 * setup and teardown | event loop.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "base/assert.h"
#include "base/hash.h"
#include "lockworld.h"
#include "mem.h"
#include "world.h"

uint64_t world_mix(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* ---- trace and failure ----------------------------------------------------- */

static FILE *world_out(const struct world *w)
{
    return w->cfg->trace_out ? w->cfg->trace_out : stdout;
}

static size_t world_stamp(const struct world *w, uint32_t node, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%6" PRIu64 ".%03" PRIu64 " n%u ", w->now_us / 1000,
                     w->now_us % 1000, node);
    return n > 0 ? (size_t)n : 0;
}

void world_trace(struct world *w, uint32_t node, const char *fmt, ...)
{
    char line[WORLD_TRACE_LINE_MAX];
    size_t n = world_stamp(w, node, line, sizeof(line));
    va_list ap;
    va_start(ap, fmt);
    /* The analyzer loses va_start when clang-tidy is given several files at once. */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    w->trace_hash = hash_fnv1a64(w->trace_hash, line, len);
    w->trace_hash = hash_fnv1a64(w->trace_hash, "\n", 1);
    if (w->cfg->verbose)
        fprintf(world_out(w), "%s\n", line);
}

void world_vtrace(struct world *w, uint32_t node, const char *fmt, ...)
{
    if (!w->cfg->verbose)
        return;
    char line[WORLD_TRACE_LINE_MAX];
    size_t n = world_stamp(w, node, line, sizeof(line));
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): see world_trace()
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    fprintf(world_out(w), "%s\n", line);
}

void world_fail(struct world *w, const char *check, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = true;
    w->res->failed = true;
    snprintf(w->res->check, sizeof(w->res->check), "%s", check);
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): see world_trace()
    vsnprintf(w->res->detail, sizeof(w->res->detail), fmt, ap);
    va_end(ap);
    world_trace(w, 0, "FAIL check=%s %s", w->res->check, w->res->detail);
}

void world_fail_checks(struct world *w)
{
    world_fail(w, w->checks.name, "%s", w->checks.detail);
}

/* ---- network ------------------------------------------------------------------ */

bool world_link_up(const struct world *w, uint32_t from, uint32_t to)
{
    return w->cut[from][to] == 0;
}

/* 0.1-2 ms; a per-seed share of messages takes 2-50 ms (reordering), and a
 * fifth of those 50-300 ms (a stuck queue: they arrive terms later). */
uint64_t world_net_delay_us(struct world *w)
{
    if (!prng_chance(&w->rng_net, w->k.tail_ppm))
        return 100 + prng_below(&w->rng_net, 1901);
    if (prng_chance(&w->rng_net, 200000))
        return 50000 + prng_below(&w->rng_net, 250001);
    return 2000 + prng_below(&w->rng_net, 48001);
}

/* ---- cluster queries -------------------------------------------------------------- */

struct world_node *world_leader(struct world *w)
{
    struct world_node *best = NULL;
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        struct world_node *n = &w->nodes[id];
        if (!n->up || n->paused || raft_role(n->raft) != RAFT_LEADER)
            continue;
        if (best == NULL || raft_term(n->raft) > raft_term(best->raft))
            best = n;
    }
    return best;
}

uint32_t world_n_unavailable(const struct world *w)
{
    uint32_t k = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        k += !w->nodes[id].up || w->nodes[id].paused;
    return k;
}

uint32_t world_n_dead(const struct world *w)
{
    uint32_t k = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        k += w->nodes[id].dead;
    return k;
}

/* ---- heal phase ------------------------------------------------------------------ */

static bool world_converged(struct world *w)
{
    struct world_node *l = world_leader(w);
    if (l == NULL)
        return false;
    const struct raft_config *c = raft_config(l->raft);
    uint64_t commit = raft_commit(l->raft);
    if (commit != raft_last_index(l->raft))
        return false;
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        const struct world_node *n = &w->nodes[id];
        if (n->dead)
            continue; /* its disk was refused as corrupt (host_restart) */
        if (raft_config_role(c, id) != RAFT_VOTER || !n->up || n->paused)
            return false;
        if (raft_applied(n->raft) != commit || n->kv.applied_index != commit)
            return false;
    }
    return true;
}

static void world_final_checks(struct world *w)
{
    const struct world_node *first = &w->nodes[1];
    for (uint32_t id = 1; id <= w->n_nodes && first->dead; id++)
        first = &w->nodes[id];
    uint64_t digest = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        const struct world_node *n = &w->nodes[id];
        if (n->dead || n == first)
            continue;
        if (n->kv.digest != first->kv.digest) {
            world_fail(w, "convergence",
                       "n%u and n%u applied up to %" PRIu64 " but their KV digests differ", id,
                       first->id, n->kv.applied_index);
            return;
        }
    }
    if (checks_digest_at(&w->checks, first->kv.applied_index, &digest) &&
        digest != first->kv.digest) {
        world_fail(w, "state-machine-safety",
                   "final KV digest at %" PRIu64
                   " differs from the one recorded when it was first applied",
                   first->kv.applied_index);
        return;
    }
    for (uint32_t id = 1; id <= w->n_nodes && w->lk != NULL; id++) {
        const struct world_node *n = &w->nodes[id];
        if (n->dead || n == first || lockhost_digest(w, n) == lockhost_digest(w, first))
            continue;
        world_fail(w, "lock-digest",
                   "n%u and n%u applied up to %" PRIu64 " but their lease+lock digests differ", id,
                   first->id, n->kv.applied_index);
        return;
    }
    world_trace(w, 0, "converged at index %" PRIu64 " digest %016" PRIx64, first->kv.applied_index,
                first->kv.digest);
    client_finish(w);
}

static void world_heal_step(struct world *w)
{
    uint64_t liveness_us = (uint64_t)WORLD_LIVENESS_TICKS * SIM_TICK_US;
    uint64_t converge_us = (uint64_t)WORLD_CONVERGE_TICKS * SIM_TICK_US;
    fault_heal_membership(w);
    if (w->failed)
        return;
    if (w->phase == WORLD_LIVENESS) {
        if (client_probe(w)) {
            w->phase = WORLD_CONVERGE;
            w->converge_us = w->now_us;
            world_trace(w, 0, "live: a fresh write committed %" PRIu64 " ms after heal",
                        (w->now_us - w->heal_us) / 1000);
        } else if (w->now_us - w->heal_us > liveness_us) {
            struct world_node *l = world_leader(w);
            world_fail(w, "liveness", "no committed write within %u ticks of heal (leader %s)",
                       WORLD_LIVENESS_TICKS, l ? "present" : "absent");
            return;
        }
    }
    if (w->phase == WORLD_CONVERGE) {
        if (world_converged(w)) {
            w->phase = WORLD_DONE;
            return;
        }
        if (w->now_us - w->converge_us > converge_us) {
            struct world_node *l = world_leader(w);
            world_fail(w, "convergence",
                       "replicas not equal within %u ticks of liveness "
                       "(leader n%u commit %" PRIu64 ")",
                       WORLD_CONVERGE_TICKS, l ? l->id : 0, l ? raft_commit(l->raft) : 0);
            return;
        }
    }
    world_push(w, w->now_us + WORLD_HEAL_STEP_US, WEV_HEAL_STEP, 0, 0, NULL);
}

/* ---- setup and teardown ---------------------------------------------------------- */

void world_push(struct world *w, uint64_t at_us, uint32_t kind, uint32_t node, uint64_t a,
                void *ptr)
{
    CC_ASSERT(at_us >= w->now_us);
    struct evq_event ev = {.time_us = at_us, .kind = kind, .node = node, .a = a, .ptr = ptr};
    evq_push(&w->q, &ev);
}

/* The storage backend and its fault rates. A stream of its own, so that model seeds
 * run exactly as they did before the real backend existed. Two real seeds in three
 * under --disk mixed; a quarter of the real seeds are calm (no storage faults). */
static void world_disk_knobs(struct world *w)
{
    struct world_knobs *k = &w->k;
    prng_seed(&w->rng_wal, world_mix(w->cfg->seed ^ UINT64_C(0x77616c)));
    bool real = w->cfg->disk == SIM_DISK_REAL ||
                (w->cfg->disk == SIM_DISK_MIXED && prng_below(&w->rng_wal, 3) != 0);
    w->res->disk_real = real;
    if (!real || prng_chance(&w->rng_wal, 250000))
        return;
    k->fsync_fail_ppm = prng_chance(&w->rng_wal, 500000) ? 0 : 200 + (uint32_t)prng_below(&w->rng_wal, 2001);
    k->enospc_ppm = prng_chance(&w->rng_wal, 500000) ? 0 : 200 + (uint32_t)prng_below(&w->rng_wal, 2001);
    k->flip_ppm = prng_chance(&w->rng_wal, 700000) ? 0 : 20000 + (uint32_t)prng_below(&w->rng_wal, 30001);
}

/* Per-seed knobs: 20% of seeds are calm, 30% moderate, 50% brutal. The
 * tables below are indexed by intensity (calm, moderate, brutal); rates are
 * parts per million per opportunity (see struct world_knobs). */
static void world_knobs(struct world *w, struct prng *p)
{
    struct world_knobs *k = &w->k;
    uint32_t roll = (uint32_t)prng_below(p, 10);
    k->intensity = roll < 2 ? 0 : roll < 5 ? 1 : 2;
    uint64_t ticks = w->cfg->fault_ticks ? w->cfg->fault_ticks : SIM_FAULT_TICKS_DEFAULT;
    k->fault_end_us = ticks * SIM_TICK_US;
    k->loss_ppm = prng_chance(p, 250000) ? 0 : (uint32_t)prng_below(p, 100001);
    k->dup_ppm = prng_chance(p, 300000) ? 0 : (uint32_t)prng_below(p, 50001);
    k->tail_ppm = 2000 + (uint32_t)prng_below(p, 40001);
    k->fsync_slow_ppm = (uint32_t)prng_below(p, 100001);
    static const uint64_t gap_min_ms[] = {300, 80, 25}, gap_max_ms[] = {1500, 500, 200};
    k->fault_gap_min_us = gap_min_ms[k->intensity] * 1000;
    k->fault_gap_max_us = gap_max_ms[k->intensity] * 1000;
    static const uint32_t target_ppm[] = {0, 2000, 8000}, vote_ppm[] = {0, 40000, 150000},
                          ack_ppm[] = {0, 10000, 30000}, elected_ppm[] = {0, 50000, 150000},
                          cut_ppm[] = {0, 30000, 80000};
    k->target_crash_ppm = target_ppm[k->intensity];
    k->vote_crash_ppm = vote_ppm[k->intensity];
    k->ack_fault_ppm = ack_ppm[k->intensity];
    k->elected_crash_ppm = elected_ppm[k->intensity];
    k->elected_cut_ppm = cut_ppm[k->intensity];
    uint32_t f = (w->n_nodes - 1) / 2;
    k->max_down = k->intensity == 2 && prng_chance(p, 500000) ? f + 1 : f;
    k->snap_threshold = 20 + prng_below(p, 41);
    k->chunk_bytes = 64 + (uint32_t)prng_below(p, 193);
    k->think_max_us = 1000 + prng_below(p, 15001);
    k->n_clients = 3 + (uint32_t)prng_below(p, WORLD_CLIENTS_MAX - 2);
}

static int world_setup(struct world *w, const struct sim_config *cfg, struct sim_result *res)
{
    struct prng setup;
    w->cfg = cfg;
    w->res = res;
    w->trace_hash = HASH_FNV_INIT;
    evq_init(&w->q);
    prng_seed(&setup, cfg->seed);
    prng_seed(&w->rng_net, world_mix(cfg->seed ^ UINT64_C(0x6e6574)));
    prng_seed(&w->rng_fault, world_mix(cfg->seed ^ UINT64_C(0x6661756c74)));
    prng_seed(&w->rng_client, world_mix(cfg->seed ^ UINT64_C(0x636c69656e74)));
    prng_seed(&w->rng_disk, world_mix(cfg->seed ^ UINT64_C(0x6469736b)));
    uint32_t n_nodes = cfg->n_nodes ? cfg->n_nodes : (prng_chance(&setup, 500000) ? 3 : 5);
    if (n_nodes < SIM_NODES_MIN || n_nodes > SIM_NODES_MAX ||
        cfg->fault_ticks > SIM_FAULT_TICKS_MAX) {
        world_fail(w, "config", "nodes must be %d..%d and ticks at most %u", SIM_NODES_MIN,
                   SIM_NODES_MAX, SIM_FAULT_TICKS_MAX);
        return -1;
    }
    w->n_nodes = n_nodes;
    res->n_nodes = n_nodes;
    world_knobs(w, &setup);
    world_disk_knobs(w);
    lockcl_setup(w); /* its own prng stream: seeds without locks run as before */
    checks_init(&w->checks, w->n_nodes, !cfg->no_direct_checks);
    world_trace(w, 0,
                "seed %" PRIu64 ": %u nodes, %u clients, intensity %u, loss %u ppm, "
                "dup %u ppm, snapshot every %" PRIu64 ", chunk %u bytes",
                cfg->seed, w->n_nodes, w->k.n_clients, w->k.intensity, w->k.loss_ppm, w->k.dup_ppm,
                w->k.snap_threshold, w->k.chunk_bytes);
    if (res->disk_real)
        world_trace(w, 0, "disk: real WAL, fsync errors %u ppm, ENOSPC %u ppm, bit flips %u ppm",
                    w->k.fsync_fail_ppm, w->k.enospc_ppm, w->k.flip_ppm);

    struct raft_config conf = {.n_servers = w->n_nodes};
    for (uint32_t i = 0; i < w->n_nodes; i++)
        conf.servers[i] = (struct raft_server){.id = i + 1, .role = RAFT_VOTER};
    uint8_t buf[RAFT_CONFIG_BYTES_MAX];
    struct raft_entry boot;
    CC_ASSERT(raft_bootstrap_entry(&conf, buf, sizeof(buf), &boot) == 0);
    struct raft_hard_state hs = {.term = 1};
    CC_ASSERT(checks_entries(&w->checks, 0, 0, &boot, 1) == 0);
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        struct world_node *n = &w->nodes[id];
        n->id = id;
        /* per-node clock skew in [-2%, +2%] of the 10 ms tick */
        n->tick_us = SIM_TICK_US - 200 + prng_below(&setup, 401);
        n->disk_sluggish = prng_chance(&setup, 100000); /* old hardware */
        disk_init(&n->disk, &hs, &boot);
        if (res->disk_real) {
            char msg[256] = "";
            n->real = true;
            int rv = dwal_init(&n->dw, id, world_mix(cfg->seed ^ UINT64_C(0x73696d6673) ^ id), &hs,
                               &boot, msg, sizeof(msg));
            if (rv != 0) {
                world_fail(w, "recovery", "n%u cannot bootstrap its WAL: %s %s", id,
                           wal_strerror(rv), msg);
                return -1;
            }
        }
    }
    for (uint32_t id = 1; id <= w->n_nodes && !w->failed; id++)
        host_restart(w, &w->nodes[id]);
    return w->failed ? -1 : 0;
}

static void world_teardown(struct world *w)
{
    evq_free(&w->q, host_free_event, NULL);
    for (uint32_t id = 1; id <= w->n_nodes; id++) {
        if (w->lk != NULL)
            lockhost_free(w, &w->nodes[id]);
        host_free(&w->nodes[id]);
    }
    client_free(w);
    lockcl_free(w);
    free(w->faults);
    checks_free(&w->checks);
}

/* ---- event loop --------------------------------------------------------------------- */

static void world_dispatch(struct world *w, const struct evq_event *ev)
{
    switch (ev->kind) {
    case WEV_TICK:
    case WEV_DELIVER:
    case WEV_SYNC:
    case WEV_CLIENT_REQ:
    case WEV_FORWARD:
    case WEV_LOCK_REQ:
        host_event(w, ev);
        break;
    case WEV_LOCK_STEP:
    case WEV_LOCK_KA:
    case WEV_LOCK_REPLY:
    case WEV_LOCK_TIMEOUT:
    case WEV_LOCK_WRITE:
    case WEV_LOCK_FAULT:
    case WEV_LOCK_RESUME:
    case WEV_LOCK_RESTART:
    case WEV_LOCK_HANDOVER:
        lockcl_event(w, ev);
        break;
    case WEV_CLIENT_NEXT:
    case WEV_OP_TIMEOUT:
        client_event(w, ev, NULL);
        break;
    case WEV_HEAL:
        w->phase = WORLD_LIVENESS;
        w->heal_us = w->now_us;
        world_trace(w, 0, "heal: restart, resume, reconnect, no loss");
        fault_heal(w);
        if (!w->failed)
            world_heal_step(w);
        break;
    case WEV_HEAL_STEP:
        world_heal_step(w);
        break;
    case WEV_STORAGE_FATAL: {
        struct world_node *n = &w->nodes[ev->node];
        if (n->up && n->epoch == ev->a)
            host_storage_fatal(w, n);
        break;
    }
    default:
        fault_event(w, ev);
        break;
    }
}

static void world_fold_event(struct world *w, const struct evq_event *ev)
{
    uint8_t rec[32];
    uint64_t words[4] = {ev->time_us, ev->kind, ev->node, ev->a};
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++)
            rec[i * 8 + b] = (uint8_t)(words[i] >> (8 * b));
    w->trace_hash = hash_fnv1a64(w->trace_hash, rec, sizeof(rec));
}

void sim_config_default(struct sim_config *cfg, uint64_t seed)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = seed;
    cfg->disk = SIM_DISK_MIXED;
}

int sim_run(const struct sim_config *cfg, struct sim_result *out)
{
    CC_ASSERT(cfg != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    out->seed = cfg->seed;
    struct world *w = mem_calloc(1, sizeof(*w));
    if (world_setup(w, cfg, out) == 0) {
        fault_start(w);
        client_start(w);
        if (w->lk != NULL)
            lockcl_start(w);
        world_push(w, w->k.fault_end_us, WEV_HEAL, 0, 0, NULL);
    }
    while (!w->failed && w->phase != WORLD_DONE) {
        struct evq_event ev;
        if (!evq_pop(&w->q, &ev)) {
            world_fail(w, "internal", "the event queue ran dry");
            break;
        }
        w->now_us = ev.time_us;
        if (++w->n_events > WORLD_EVENTS_MAX) {
            world_fail(w, "event-budget", "more than %u events (message storm?)", WORLD_EVENTS_MAX);
            host_free_event(&ev, NULL);
            break;
        }
        world_fold_event(w, &ev);
        world_dispatch(w, &ev);
    }
    if (!w->failed)
        world_final_checks(w);
    out->trace_hash = w->trace_hash;
    out->sim_us = w->now_us;
    out->n_events = w->n_events;
    out->n_elections = w->checks.n_elections;
    if (w->lk != NULL)
        lockcl_report(w);
    world_teardown(w);
    free(w);
    return out->failed ? 1 : 0;
}
