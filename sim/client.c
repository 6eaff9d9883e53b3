/* client.c -- simulated KV clients and the history they record.
 *
 * Each client runs one op at a time against a random up node: PUT of a value
 * unique to the run (client * 1e9 + counter), GET, or CAS whose expected value
 * is one recently observed for that key (or "absent"). Every op becomes one
 * struct lin_op in w->hist, with call/return in simulated microseconds, and
 * the whole history goes to lin_check() at the end of the run.
 *
 * Outcomes, and why each is sound:
 *   OK       a write when its proposing node applies (index, term) it got from
 *            raft_propose(); a read when the node that asked for the read
 *            index has applied past it (raft.h step 5).
 *   FAIL     only when the write certainly never reached a log: no leader
 *            known, raft_propose() refused it, the request or the forward hop
 *            was lost or hit a crashed node (the simulator sees the wire), or
 *            a different term was applied at its index (an entry never moves,
 *            and state machine safety is checked separately). Late requests
 *            for a finished op are dropped, never proposed.
 *   UNKNOWN  a proposed write whose node crashed or that timed out.
 * Reads that fail or time out are dropped from the history: they had no effect.
 *
 * Writes from a follower are forwarded to raft_leader() as a network hop (same
 * delays, loss and partitions as Raft traffic). Each key's history is capped
 * at WORLD_OPS_PER_KEY_MAX ops to keep the WGL search cheap.
 *
 * Sections: history | issuing | node callbacks | heal probe | finish.
 */
#include <inttypes.h>
#include <string.h>

#include "base/assert.h"
#include "mem.h"
#include "world.h"

#define CLIENT_VALUE_BASE      INT64_C(1000000000) /* value = client * base + counter */
#define CLIENT_HOP_MIN_US      50                  /* client -> node request latency */
#define CLIENT_HOP_SPAN_US     251
#define CLIENT_BACKOFF_MIN_US  2000 /* retry pause after a failed op */
#define CLIENT_BACKOFF_SPAN_US 10001

static const char *const client_kind_names[] = {"put", "get", "cas"};

/* ---- history ---------------------------------------------------------------- */

static size_t client_new_op(struct world *w, uint32_t client, enum lin_kind kind, uint32_t key,
                            int64_t arg, int64_t arg2)
{
    mem_grow((void **)&w->hist, &w->cap_ops, w->n_ops + 1, sizeof(*w->hist));
    mem_grow((void **)&w->hops, &w->cap_hops, w->n_ops + 1, sizeof(*w->hops));
    size_t i = w->n_ops++;
    w->hist[i] = (struct lin_op){.client = client,
                                 .key = key,
                                 .kind = kind,
                                 .arg = arg,
                                 .arg2 = arg2,
                                 .call_us = w->now_us,
                                 .outcome = LIN_UNKNOWN};
    w->hops[i] = (struct world_op){.state = OP_SENT};
    return i;
}

static void client_saw(struct world *w, uint32_t key, int64_t value)
{
    if (value == LIN_ABSENT)
        return;
    w->seen[key][w->n_seen[key] % WORLD_SEEN_MAX] = value;
    w->n_seen[key]++;
}

/* The next op follows a think time; after a failure, a backoff as well. */
static void client_schedule(struct world *w, struct world_client *c, bool ok)
{
    uint64_t think = prng_below(&w->rng_client, w->k.think_max_us + 1);
    if (!ok)
        think += CLIENT_BACKOFF_MIN_US + prng_below(&w->rng_client, CLIENT_BACKOFF_SPAN_US);
    world_push(w, w->now_us + think, WEV_CLIENT_NEXT, 0, c->id, NULL);
}

/* Finishes op i. dropped: a read with no observable effect, left out. */
static void client_resolve(struct world *w, size_t i, enum lin_outcome outcome, int64_t ret,
                           bool dropped, const char *why)
{
    struct lin_op *op = &w->hist[i];
    struct world_op *h = &w->hops[i];
    CC_ASSERT(h->state != OP_DONE);
    h->state = OP_DONE;
    h->dropped = dropped;
    op->outcome = outcome;
    op->ret = ret;
    op->return_us = w->now_us;
    static const char *const names[] = {"ok", "fail", "unknown"};
    if (op->kind == LIN_GET && outcome == LIN_OK)
        world_trace(w, h->node, "c%u op%zu get k%u -> %" PRId64, op->client, i, op->key, ret);
    else
        world_trace(w, h->node, "c%u op%zu %s k%u -> %s%s%s%s", op->client, i,
                    client_kind_names[op->kind], op->key, dropped ? "dropped" : names[outcome],
                    op->kind == LIN_CAS && outcome == LIN_OK ? (ret ? " swapped" : " no-swap") : "",
                    why[0] ? ": " : "", why);
    if (outcome == LIN_OK) {
        if (op->kind == LIN_GET)
            client_saw(w, op->key, ret);
        else if (op->kind == LIN_PUT)
            client_saw(w, op->key, op->arg);
        else if (ret == 1)
            client_saw(w, op->key, op->arg2);
    }
    if (outcome == LIN_FAIL || dropped)
        w->ops_per_key[op->key]--; /* lin_check skips it: it costs nothing there */
    struct world_client *c = &w->clients[op->client];
    CC_ASSERT(c->busy && c->op == i);
    c->busy = false;
    if (h->probe)
        w->probe_ok = outcome == LIN_OK;
    else
        client_schedule(w, c, outcome == LIN_OK);
}

/* The op is over without effect: FAIL for a write, dropped for a read. */
static void client_fail(struct world *w, size_t i, const char *why)
{
    bool read = w->hist[i].kind == LIN_GET;
    client_resolve(w, i, LIN_FAIL, 0, read, why);
}

/* ---- issuing ---------------------------------------------------------------- */

static uint32_t client_pick_node(struct world *w)
{
    uint32_t up[WORLD_NODES_MAX], n = 0;
    for (uint32_t id = 1; id <= w->n_nodes; id++)
        if (w->nodes[id].up)
            up[n++] = id;
    return n ? up[prng_below(&w->rng_client, n)] : 0;
}

static void client_send(struct world *w, struct world_client *c, size_t i, uint32_t node)
{
    c->busy = true;
    c->op = i;
    w->hops[i].node = node;
    const struct lin_op *op = &w->hist[i];
    world_trace(w, node, "c%u op%zu %s k%u %" PRId64 " %" PRId64, c->id, i,
                client_kind_names[op->kind], op->key, op->arg, op->arg2);
    if (node == 0) {
        client_fail(w, i, "no node is up");
        return;
    }
    uint64_t hop = CLIENT_HOP_MIN_US + prng_below(&w->rng_client, CLIENT_HOP_SPAN_US);
    world_push(w, w->now_us + hop, WEV_CLIENT_REQ, node, i, NULL);
    world_push(w, w->now_us + WORLD_OP_TIMEOUT_US, WEV_OP_TIMEOUT, 0, i, NULL);
}

static void client_next(struct world *w, struct world_client *c)
{
    struct prng *p = &w->rng_client;
    if (w->phase != WORLD_FAULTS)
        return; /* load stops at heal; the probe takes over */
    uint32_t roll = (uint32_t)prng_below(p, 100);
    enum lin_kind kind = roll < 40 ? LIN_PUT : roll < 75 ? LIN_GET : LIN_CAS;
    uint32_t key = (uint32_t)prng_below(p, KVSM_KEYS);
    if (kind != LIN_PUT && c->wrote && prng_chance(p, 500000))
        key = c->last_key; /* read (or CAS) what it wrote last: stale reads show */
    for (uint32_t tries = 0; w->ops_per_key[key] >= WORLD_OPS_PER_KEY_MAX; tries++) {
        if (tries == KVSM_KEYS)
            return; /* every key's history is full: this client retires */
        key = (key + 1) % KVSM_KEYS;
    }
    if (kind != LIN_GET) {
        c->wrote = true;
        c->last_key = key;
    }
    int64_t arg = 0, arg2 = 0;
    if (kind == LIN_PUT) {
        arg = (int64_t)c->id * CLIENT_VALUE_BASE + (int64_t)++c->counter;
    } else if (kind == LIN_CAS) {
        uint32_t n_seen = w->n_seen[key] < WORLD_SEEN_MAX ? w->n_seen[key] : WORLD_SEEN_MAX;
        arg = n_seen == 0 || prng_chance(p, 250000) ? LIN_ABSENT
                                                    : w->seen[key][prng_below(p, n_seen)];
        arg2 = (int64_t)c->id * CLIENT_VALUE_BASE + (int64_t)++c->counter;
    }
    w->ops_per_key[key]++;
    size_t i = client_new_op(w, c->id, kind, key, arg, arg2);
    client_send(w, c, i, client_pick_node(w));
}

static void client_propose(struct world *w, struct world_node *n, size_t i)
{
    const struct lin_op *op = &w->hist[i];
    struct kvsm_cmd cmd = {.kind = op->kind == LIN_PUT ? KVSM_PUT : KVSM_CAS,
                           .key = op->key,
                           .arg = op->arg,
                           .arg2 = op->arg2};
    uint8_t buf[KVSM_CMD_BYTES_MAX];
    size_t len = 0;
    uint64_t index = 0;
    CC_ASSERT(kvsm_cmd_encode(&cmd, buf, sizeof(buf), &len) == 0);
    int rv = raft_propose(n->raft, buf, (uint32_t)len, &index);
    if (rv != 0) {
        w->hops[i].node = n->id;
        client_fail(w, i, raft_strerror(rv));
        host_drain(w, n);
        return;
    }
    struct world_op *h = &w->hops[i];
    h->state = OP_PROPOSED;
    h->node = n->id;
    h->index = index;
    h->term = raft_term(n->raft);
    world_trace(w, n->id, "op%zu proposed at %" PRIu64 "/%" PRIu64, i, index, h->term);
    host_drain(w, n);
}

/* A request arrives at node n (up, not paused). */
static void client_request(struct world *w, struct world_node *n, size_t i)
{
    const struct lin_op *op = &w->hist[i];
    struct world_op *h = &w->hops[i];
    if (op->kind == LIN_GET) {
        h->state = OP_READING;
        h->node = n->id;
        int rv = raft_read_index(n->raft, (uint64_t)i + 1);
        if (rv != 0)
            client_fail(w, i, raft_strerror(rv));
        host_drain(w, n);
        return;
    }
    if (raft_role(n->raft) == RAFT_LEADER) {
        client_propose(w, n, i);
        return;
    }
    uint32_t leader = raft_leader(n->raft);
    if (leader == 0 || leader == n->id || leader > w->n_nodes) {
        client_fail(w, i, "no leader known");
        return;
    }
    if (!world_link_up(w, n->id, leader) || prng_chance(&w->rng_net, w->k.loss_ppm)) {
        client_fail(w, i, "forward lost");
        return;
    }
    h->state = OP_FORWARDED;
    h->node = leader;
    world_push(w, w->now_us + world_net_delay_us(w), WEV_FORWARD, leader, i, NULL);
}

void client_event(struct world *w, const struct evq_event *ev, struct world_node *n)
{
    size_t i = (size_t)ev->a;
    switch (ev->kind) {
    case WEV_CLIENT_NEXT:
        client_next(w, &w->clients[ev->a]);
        break;
    case WEV_OP_TIMEOUT:
        if (w->hops[i].state == OP_DONE)
            break;
        if (w->hist[i].kind == LIN_GET)
            client_resolve(w, i, LIN_UNKNOWN, 0, true, "timeout");
        else if (w->hops[i].state == OP_PROPOSED)
            client_resolve(w, i, LIN_UNKNOWN, 0, false, "timeout");
        else
            client_fail(w, i, "timeout before proposal"); /* late arrivals are ignored */
        break;
    case WEV_CLIENT_REQ:
        if (w->hops[i].state == OP_SENT)
            client_request(w, n, i);
        break;
    case WEV_FORWARD:
        if (w->hops[i].state != OP_FORWARDED)
            break;
        if (raft_role(n->raft) != RAFT_LEADER)
            client_fail(w, i, "forwarded to a non-leader");
        else
            client_propose(w, n, i);
        break;
    default:
        CC_UNREACHABLE();
    }
}

void client_lost(struct world *w, const struct evq_event *ev)
{
    size_t i = (size_t)ev->a;
    if ((ev->kind == WEV_CLIENT_REQ && w->hops[i].state == OP_SENT) ||
        (ev->kind == WEV_FORWARD && w->hops[i].state == OP_FORWARDED))
        client_fail(w, i, "node down");
}

/* ---- node callbacks ----------------------------------------------------------- */

void client_applied(struct world *w, struct world_node *n, const struct raft_entry *e,
                    int64_t result)
{
    for (uint32_t c = 0; c <= w->k.n_clients; c++) {
        if (!w->clients[c].busy)
            continue;
        size_t i = w->clients[c].op;
        struct world_op *h = &w->hops[i];
        if (h->state != OP_PROPOSED || h->node != n->id || h->index != e->index)
            continue;
        if (e->term == h->term) {
            if (checks_acked(&w->checks, h->index, h->term) != 0) {
                world_fail(w, w->checks.name, "%s", w->checks.detail);
                return;
            }
            client_resolve(w, i, LIN_OK, result, false, "");
            if (raft_role(n->raft) == RAFT_LEADER)
                fault_on_ack(w, n);
        } else {
            client_fail(w, i, "another entry committed at its index");
        }
    }
}

void client_read_ready(struct world *w, struct world_node *n, const struct raft_read_ready *rr)
{
    if (rr->read_id == 0 || rr->read_id > w->n_ops)
        return;
    size_t i = (size_t)rr->read_id - 1;
    struct world_op *h = &w->hops[i];
    if (h->state != OP_READING || h->node != n->id)
        return; /* a stale answer, e.g. for a read issued before a crash */
    if (rr->status != 0) {
        client_fail(w, i, raft_strerror(rr->status));
        return;
    }
    h->index = rr->index;
    h->state = OP_READ_WAIT;
}

void client_serve_reads(struct world *w, struct world_node *n)
{
    for (uint32_t c = 0; c <= w->k.n_clients; c++) {
        if (!w->clients[c].busy)
            continue;
        size_t i = w->clients[c].op;
        const struct world_op *h = &w->hops[i];
        if (h->state == OP_READ_WAIT && h->node == n->id && n->kv.applied_index >= h->index)
            client_resolve(w, i, LIN_OK, kvsm_get(&n->kv, w->hist[i].key), false, "");
    }
}

void client_crashed(struct world *w, struct world_node *n)
{
    for (uint32_t c = 0; c <= w->k.n_clients; c++) {
        if (!w->clients[c].busy)
            continue;
        size_t i = w->clients[c].op;
        const struct world_op *h = &w->hops[i];
        if (h->node != n->id)
            continue;
        if (h->state == OP_PROPOSED)
            client_resolve(w, i, LIN_UNKNOWN, 0, false, "node crashed");
        else if (h->state == OP_READING || h->state == OP_READ_WAIT)
            client_resolve(w, i, LIN_UNKNOWN, 0, true, "node crashed");
    }
}

void client_start(struct world *w)
{
    for (uint32_t c = 0; c <= w->k.n_clients; c++)
        w->clients[c] = (struct world_client){.id = c};
    for (uint32_t c = 1; c <= w->k.n_clients; c++)
        client_schedule(w, &w->clients[c], true);
}

/* ---- heal probe ------------------------------------------------------------------ */

bool client_probe(struct world *w)
{
    struct world_client *c = &w->clients[0];
    if (w->probe_ok)
        return true;
    if (c->busy)
        return false;
    struct world_node *l = world_leader(w);
    if (l == NULL)
        return false;
    int64_t value = (int64_t)++c->counter;
    size_t i = client_new_op(w, 0, LIN_PUT, (uint32_t)(c->counter % KVSM_KEYS), value, 0);
    w->hops[i].probe = true;
    client_send(w, c, i, l->id);
    return false;
}

/* ---- finish ------------------------------------------------------------------------ */

void client_finish(struct world *w)
{
    struct sim_result *res = w->res;
    /* ops[i] is op i of the trace (dropped and unanswered reads become FAIL
     * and UNKNOWN gets, which lin_check skips), so windows name trace ops. */
    struct lin_op *ops = mem_calloc(w->n_ops, sizeof(*ops));
    size_t n = w->n_ops;
    for (size_t i = 0; i < w->n_ops; i++) {
        const struct world_op *h = &w->hops[i];
        const struct lin_op *op = &w->hist[i];
        bool done = h->state == OP_DONE;
        if (done && op->outcome == LIN_OK)
            res->ops_ok++;
        else if (done && op->outcome == LIN_FAIL)
            res->ops_fail++; /* including reads that failed */
        else
            res->ops_unknown++; /* including reads that timed out */
        ops[i] = *op;
        if (h->dropped)
            ops[i].outcome = LIN_FAIL; /* reads without an answer had no effect */
        else if (!done)
            ops[i].outcome = LIN_UNKNOWN;
        if (done && op->outcome == LIN_OK && op->kind != LIN_GET &&
            checks_acked(&w->checks, h->index, h->term) != 0) {
            world_fail(w, w->checks.name, "%s", w->checks.detail);
            free(ops);
            return;
        }
    }
    struct lin_result lr;
    int rv = lin_check(ops, n, WORLD_LIN_STATES_MAX, &lr);
    if (rv != 0) {
        world_fail(w, "lincheck", "lin_check: %s", lin_strerror(rv));
    } else if (lr.verdict == LIN_VERDICT_VIOLATION) {
        const struct lin_op *f = &ops[lr.failed_op];
        world_fail(w, "linearizability",
                   "key %u: op%zu (client %u %s %" PRId64 " %" PRId64 " -> %" PRId64 ", %" PRIu64
                   "..%" PRIu64 " us) cannot be linearized "
                   "(%zu ops checked)",
                   lr.key, lr.failed_op, f->client, client_kind_names[f->kind], f->arg, f->arg2,
                   f->ret, f->call_us, f->return_us, lr.n_ops_checked);
        if (w->cfg->verbose)
            lin_print_result(&lr, ops, w->cfg->trace_out ? w->cfg->trace_out : stdout);
    } else if (lr.verdict == LIN_VERDICT_BUDGET) {
        res->lin_budget = true;
        world_trace(w, 0, "lincheck: budget exhausted on key %u", lr.key);
    } else {
        world_trace(w, 0, "lincheck: %zu ops linearizable (%" PRIu64 " states)", lr.n_ops_checked,
                    lr.n_states_explored);
    }
    free(ops);
}

void client_free(struct world *w)
{
    free(w->hist);
    free(w->hops);
}
