/* lock_api.c -- leases, distributed locks and leader election over HTTP (docs/locks.md).
 *
 *   POST   /v1/lease                     {"ttl_ms", "id"?}          grant
 *   GET    /v1/lease                                                list ids
 *   GET    /v1/lease/{id}                                           ttl, remaining (leader)
 *   POST   /v1/lease/{id}/keepalive                                 renew (ReadIndex-confirmed)
 *   DELETE /v1/lease/{id}                                           revoke: keys and locks go
 *   POST   /v1/lock/{name}      {"owner","lease"?|"ttl_ms"?,"wait_ms","kind","mode","limit"}
 *   DELETE /v1/lock/{name}      {"owner","token"}                   owner-checked release
 *   GET    /v1/lock/{name}                                          holders, tokens, queue
 *   POST   /v1/election/{name}/campaign  {"owner","value","lease"?|"ttl_ms"?,"wait_ms"}
 *   POST   /v1/election/{name}/proclaim  {"owner","token","value"}
 *   POST   /v1/election/{name}/resign    {"owner","token"}
 *   GET    /v1/election/{name}                                      the leader and its value
 *   GET    /v1/election/{name}/observe                   SSE: every leader change (elect_observe.c)
 *
 * Every write is a command through Raft on the leader (followers forward the request).
 * An acquire that must wait is queued in the replicated FIFO (sm/lock.h); the request
 * stays open here until a GRANTED event for its request id is applied (node observer),
 * its lease dies (DROPPED: 410), or wait_ms passes: then a CANCEL is proposed and the
 * answer is 409. A grant that races the cancel is released again (abandoned grants), so a
 * client that was told "not acquired" never holds the lock.
 *
 * Without "lease", an acquire first grants a lease of ttl_ms (default
 * API_LOCK_TTL_MS_DEFAULT) for this hold; the answer names it, and the holder keeps it
 * alive with POST /v1/lease/{id}/keepalive (the C client's watchdog does this every
 * ttl/3). While such an acquire waits, the server renews that lease itself (the open
 * request shows the client is alive). On a failed acquire it is revoked at once.
 *
 * Sections: helpers | leases | lock results and waiters | locks | elections | routing.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "node/lease_timer.h"
#include "sm/lease.h"
#include "sm/lock.h"

#define API_LOCK_TTL_MS_DEFAULT 10000 /* a lease made for an acquire without one */
/* A waiting acquire gives up after at most this long: below the forwarding timeout
 * (forward.c), so a follower relaying the request gets the real answer. */
#define API_LOCK_WAIT_MS_MAX 10000
#define API_ABANDONED_MAX 1024 /* timed-out waits remembered until their grant or cancel */
/* A record whose outcome never came (the ACQUIRE failed, say) is dropped after this: its
 * CANCEL has long applied by then, so no grant can follow. */
#define API_ABANDONED_TTL_MS 60000

struct abandoned_grant {
    uint64_t request_id;
    uint64_t at_ms;
    int64_t lease;
    bool implicit_lease;
    uint16_t name_len, owner_len;
    uint8_t name[LOCK_NAME_BYTES_MAX];
    uint8_t owner[LOCK_OWNER_BYTES_MAX];
};

/* ==== helpers =============================================================== */

static bool leader_or_forward(struct api *a, struct http_req *req)
{
    if (raft_role(node_raft(a->node)) == RAFT_LEADER)
        return true;
    api_respond_node_error(a, req, NODE_ENOTLEADER);
    return false;
}

static int sm_err_status(int err)
{
    switch (err) {
    case LEASE_ENOTFOUND:
    case LOCK_ENOLEASE:
    case LOCK_ENOTFOUND:
        return 404;
    case LOCK_ENOTHOLDER:
    case LOCK_ENOTWAITING:
    case LOCK_EKIND:
    case LOCK_EUPGRADE:
    case LOCK_EWAITING:
    case LEASE_EEXISTS:
        return 409;
    case LOCK_EFULL:
    case LOCK_EQUEUEFULL:
    case LEASE_EFULL:
    case LEASE_EITEMSFULL:
    case LOCK_EHOLDCOUNT:
        return 429;
    default:
        return 400;
    }
}

static void respond_sm_error(struct http_req *req, int err)
{
    const char *code = err == LEASE_ENOTFOUND || err == LOCK_ENOLEASE ? "lease_not_found"
                       : err == LOCK_ENOTHOLDER                       ? "not_holder"
                       : err == LOCK_ENOTFOUND                        ? "lock_not_found"
                                                                      : "bad_request";
    http_respond_error(req, sm_err_status(err), code, "%s", sm_strerror(err));
}

/* Answers a status from a node callback that is not a state machine result. */
static bool respond_if_node_failure(struct op *o, int status, const struct sm_result *res)
{
    if (status == NODE_EUNKNOWN) {
        http_respond_error(o->req, 504, "outcome_unknown", "%s", node_strerror(status));
    } else if (status == NODE_ELOST) {
        http_respond_error(o->req, 503, "leader_changed",
                           "leadership changed before the command committed; retry");
    } else if (!res || (status != 0 && res->err == 0)) {
        http_respond_error(o->req, 503, "unavailable", "%s", node_strerror(status));
    } else if (res->err != 0) {
        respond_sm_error(o->req, res->err);
    } else {
        return false;
    }
    return true;
}

static json_t *body_json(struct http_req *req)
{
    if (req->body_len == 0)
        return json_object();
    json_error_t jerr;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        http_respond_error(req, 400, "bad_json", "body must be a JSON object%s%s",
                           j ? "" : ": ", j ? "" : jerr.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* An optional non-negative integer member; false (and 400 sent) if present but bad. */
static bool json_i64(struct http_req *req, json_t *j, const char *key, int64_t min, int64_t max,
                     int64_t *out)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        http_respond_error(req, 400, "bad_request", "%s must be an integer in [%lld, %lld]", key,
                           (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static void propose_quietly(struct api *a, const uint8_t *cmd, size_t n)
{
    node_propose(a->node, cmd, n, NULL, NULL); /* best effort: nobody waits for it */
}

static void revoke_quietly(struct api *a, int64_t lease)
{
    uint8_t cmd[LEASE_CMD_BYTES_MAX];
    size_t n = 0;
    if (lease > 0 && lease_encode_revoke(lease, cmd, sizeof(cmd), &n) == 0)
        propose_quietly(a, cmd, n);
}

static bool parse_id(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v > 0;
}

/* ==== leases ================================================================ */

static void on_lease_granted(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (!respond_if_node_failure(o, status, res)) {
        json_t *j = json_object();
        json_object_set_new(j, "id", json_integer(res->lease.id));
        json_object_set_new(j, "ttl_ms", json_integer(res->lease.ttl_ms));
        http_respond_json(o->req, 200, j);
    }
    api_op_done(o);
}

static void lease_grant(struct api *a, struct http_req *req)
{
    if (!leader_or_forward(a, req))
        return;
    json_t *j = body_json(req);
    if (!j)
        return;
    int64_t ttl = -1, id = 0;
    bool ok = json_i64(req, j, "ttl_ms", 0, INT64_MAX, &ttl) &&
              json_i64(req, j, "id", 1, INT64_MAX, &id);
    json_decref(j);
    if (!ok)
        return;
    if (ttl < 0) {
        http_respond_error(req, 400, "bad_request", "ttl_ms is required (%d..%lld)",
                           LEASE_TTL_MS_MIN, (long long)LEASE_TTL_MS_MAX);
        return;
    }
    uint8_t cmd[LEASE_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = lease_encode_grant(id, ttl, cmd, sizeof(cmd), &n);
    if (rv != 0) {
        respond_sm_error(req, rv);
        return;
    }
    struct op *o = api_op_new(a, req, OP_LEASE);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    rv = node_propose(a->node, cmd, n, on_lease_granted, o);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

static void on_keepalive(void *arg, int status, int64_t ttl_ms)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status == 0) {
        json_t *j = json_object();
        json_object_set_new(j, "id", json_integer(o->lease));
        json_object_set_new(j, "ttl_ms", json_integer(ttl_ms));
        http_respond_json(o->req, 200, j);
    } else if (status == LEASE_TIMER_ENOTFOUND) {
        http_respond_error(o->req, 404, "lease_not_found", "no lease %lld (revoked, expired or "
                           "never granted)", (long long)o->lease);
    } else if (status == LEASE_TIMER_EEXPIRED) {
        http_respond_error(o->req, 410, "lease_expired",
                           "lease %lld expired; its keys and locks are gone or going",
                           (long long)o->lease);
    } else {
        http_respond_error(o->req, 503, "unavailable", "keepalive not confirmed: %s",
                           node_strerror(status));
    }
    api_op_done(o);
}

static void lease_keepalive(struct api *a, struct http_req *req, int64_t id)
{
    if (!leader_or_forward(a, req))
        return;
    struct op *o = api_op_new(a, req, OP_LEASE);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    o->lease = id;
    int rv = node_lease_keepalive(a->node, id, on_keepalive, o);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

static void on_lease_revoked(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (!respond_if_node_failure(o, status, res)) {
        json_t *j = json_object();
        json_object_set_new(j, "id", json_integer(res->lease.id));
        json_object_set_new(j, "deleted_keys", json_integer(res->kv.n_events));
        json_object_set_new(j, "released_locks", json_integer(res->lease.n_locks));
        json_object_set_new(j, "revision", json_integer(res->kv.revision));
        http_respond_json(o->req, 200, j);
    }
    api_op_done(o);
}

static void lease_revoke(struct api *a, struct http_req *req, int64_t id)
{
    if (!leader_or_forward(a, req))
        return;
    uint8_t cmd[LEASE_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = lease_encode_revoke(id, cmd, sizeof(cmd), &n);
    if (rv != 0) {
        respond_sm_error(req, rv);
        return;
    }
    struct op *o = api_op_new(a, req, OP_LEASE);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    rv = node_propose(a->node, cmd, n, on_lease_revoked, o);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

/* GET /v1/lease/{id}: the deadline lives on the leader only, so this is served there. */
static void lease_show(struct api *a, struct http_req *req, int64_t id)
{
    if (!leader_or_forward(a, req))
        return;
    struct lease_info info;
    if (lease_get(machine_leases(node_machine(a->node)), id, &info) != 0) {
        http_respond_error(req, 404, "lease_not_found", "no lease %lld", (long long)id);
        return;
    }
    uint64_t remaining = 0;
    int rv = node_lease_remaining(a->node, id, &remaining);
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer(id));
    json_object_set_new(j, "ttl_ms", json_integer(info.ttl_ms));
    json_object_set_new(j, "remaining_ms", rv == 0 ? json_integer((json_int_t)remaining)
                                                   : json_null());
    json_object_set_new(j, "keys", json_integer((json_int_t)kv_lease_key_count(node_kv(a->node),
                                                                               id)));
    json_object_set_new(j, "granted_index", json_integer((json_int_t)info.granted_index));
    http_respond_json(req, 200, j);
}

static void lease_index(struct api *a, struct http_req *req)
{
    const struct lease_table *t = machine_leases(node_machine(a->node));
    int64_t ids[256];
    uint64_t after = 0;
    if (http_query_u64(req, "after", &after) == HTTP_EBADVALUE || after > INT64_MAX) {
        http_respond_error(req, 400, "bad_query", "after must be a lease id");
        return;
    }
    uint32_t n = lease_list(t, (int64_t)after, ids, 256);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(ids[i]));
    json_t *j = json_object();
    json_object_set_new(j, "leases", arr);
    json_object_set_new(j, "count", json_integer(lease_count(t)));
    json_object_set_new(j, "more", json_boolean(n == 256));
    http_respond_json(req, 200, j);
}

/* ==== lock results and waiters ================================================ */

static json_t *json_bytes(const uint8_t *p, size_t n)
{
    return json_stringn((const char *)p, n);
}

static void respond_granted(struct op *o, uint64_t token, uint32_t hold_count, bool reentrant)
{
    json_t *j = json_object();
    json_object_set_new(j, "name", json_bytes(o->key, o->key_len));
    json_object_set_new(j, "owner", json_bytes(o->aux, o->owner_len));
    json_object_set_new(j, "token", json_integer((json_int_t)token));
    json_object_set_new(j, "hold_count", json_integer(hold_count));
    json_object_set_new(j, "reentrant", json_boolean(reentrant));
    json_object_set_new(j, "lease", json_integer(o->lease));
    if (o->lease_implicit)
        json_object_set_new(j, "ttl_ms", json_integer(o->ttl_ms));
    http_respond_json(o->req, 200, j);
}

static void unlink_waiter(struct op *o)
{
    struct api *a = o->api;
    if (o->wait_prev)
        o->wait_prev->wait_next = o->wait_next;
    else
        a->lock_waiters = o->wait_next;
    if (o->wait_next)
        o->wait_next->wait_prev = o->wait_prev;
    o->waiting = false;
}

static void remember_abandoned(struct op *o);
static void propose_quietly(struct api *a, const uint8_t *cmd, size_t n);
static void revoke_quietly(struct api *a, int64_t lease);

/* A queued acquire whose client will not be told of a grant (timeout, client gone,
 * shutdown): leave the queue, and give back a grant that races the cancel. Also for an
 * acquire whose result is not back yet: the CANCEL goes into the log after it (a lazy
 * ACQUIRE is proposed first, node_propose_lazy), so it finds the waiter, or finds it
 * granted, and then the remembered grant is given back. */
static void abandon_wait(struct op *o)
{
    struct api *a = o->api;
    if (o->waiting)
        unlink_waiter(o);
    o->acquiring = false;
    remember_abandoned(o);
    struct lock_cmd c = {.type = LOCK_CMD_CANCEL, .request_id = o->request_id, .name = o->key,
                         .name_len = (uint16_t)o->key_len, .owner = o->aux,
                         .owner_len = o->owner_len};
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n = 0;
    if (lock_encode(&c, buf, sizeof(buf), &n) == 0)
        propose_quietly(a, buf, n);
    if (o->lease_implicit)
        revoke_quietly(a, o->lease);
}

void lock_api_forget(struct op *o)
{
    if (!o->waiting && o->acquiring && node_drop_lazy(o->api->node, o)) {
        o->acquiring = false; /* never proposed: nothing to take back */
        if (o->lease_implicit)
            revoke_quietly(o->api, o->lease);
        return;
    }
    if (o->waiting || o->acquiring)
        abandon_wait(o);
}

static void remember_abandoned(struct op *o)
{
    struct api *a = o->api;
    if (a->n_abandoned == API_ABANDONED_MAX)
        return; /* the lease (ours, or the client's which it stopped renewing) ends it */
    struct abandoned_grant *g = &a->abandoned[a->n_abandoned++];
    g->request_id = o->request_id;
    g->at_ms = uv_now(a->loop);
    g->lease = o->lease;
    g->implicit_lease = o->lease_implicit;
    g->name_len = (uint16_t)o->key_len;
    memcpy(g->name, o->key, o->key_len);
    g->owner_len = o->owner_len;
    memcpy(g->owner, o->aux, o->owner_len);
}

/* A grant for a request whose client was already told "not acquired": give it back. */
static void release_abandoned(struct api *a, const struct lock_event *e)
{
    for (uint32_t i = 0; i < a->n_abandoned; i++) {
        struct abandoned_grant *g = &a->abandoned[i];
        if (g->request_id != e->request_id)
            continue;
        if (e->type == LOCK_EV_GRANTED) {
            if (g->implicit_lease) {
                revoke_quietly(a, g->lease);
            } else {
                struct lock_cmd c = {.type = LOCK_CMD_RELEASE, .flags = LOCK_RELEASE_ALL,
                                     .token = e->token, .name = g->name,
                                     .name_len = g->name_len, .owner = g->owner,
                                     .owner_len = g->owner_len};
                uint8_t buf[LOCK_CMD_BYTES_MAX];
                size_t n = 0;
                if (lock_encode(&c, buf, sizeof(buf), &n) == 0)
                    propose_quietly(a, buf, n);
            }
        }
        a->abandoned[i] = a->abandoned[--a->n_abandoned];
        return;
    }
}

static struct op *find_waiter(struct api *a, uint64_t request_id)
{
    for (struct op *o = a->lock_waiters; o; o = o->wait_next)
        if (o->request_id == request_id)
            return o;
    return NULL;
}

/* Node observer: wakes queued acquires on GRANTED, fails them on DROPPED. */
static void on_applied_lock_events(void *arg, const struct sm_result *res)
{
    struct api *a = arg;
    if (res->tag != SM_TAG_LOCK && res->tag != SM_TAG_LEASE)
        return;
    elect_observe_applied(a, res);
    for (uint32_t i = 0; i < res->lock.n_events; i++) {
        const struct lock_event *e = &res->lock.events[i];
        if (e->type != LOCK_EV_GRANTED && e->type != LOCK_EV_DROPPED &&
            e->type != LOCK_EV_CANCELLED)
            continue;
        struct op *o = find_waiter(a, e->request_id);
        if (!o) {
            release_abandoned(a, e);
            continue;
        }
        if (e->type == LOCK_EV_CANCELLED)
            continue; /* ours: the timeout already answered */
        unlink_waiter(o);
        if (o->finished)
            continue;
        if (e->type == LOCK_EV_GRANTED)
            respond_granted(o, e->token, 1, false);
        else
            http_respond_error(o->req, 410, "lease_gone",
                               "lease %lld ended while waiting; not acquired",
                               (long long)o->lease);
        api_op_done(o);
    }
}

static void on_wait_timeout(uv_timer_t *t)
{
    struct op *o = t->data;
    if (o->finished)
        return;
    if (o->waiting) {
        abandon_wait(o);
        http_respond_error(o->req, 409, "lock_timeout",
                           "'%.*s' not acquired within wait_ms; the wait was cancelled",
                           (int)o->key_len, (const char *)o->key);
    } else {
        http_respond_error(o->req, 504, "write_timeout",
                           "not applied within %d ms; the acquire may or may not take effect",
                           API_WRITE_TIMEOUT_MS);
    }
    api_op_done(o);
}

/* ==== locks ================================================================= */

static void on_acquire_applied(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    o->acquiring = false;
    if (o->finished)
        return;
    if (respond_if_node_failure(o, status, res)) {
        if (o->lease_implicit)
            revoke_quietly(o->api, o->lease);
        api_op_done(o);
        return;
    }
    const struct lock_result *r = &res->lock;
    if (r->status == LOCK_GRANTED) {
        respond_granted(o, r->token, r->hold_count, r->reentrant);
    } else if (r->status == LOCK_BUSY) {
        if (o->lease_implicit)
            revoke_quietly(o->api, o->lease);
        http_respond_error(o->req, 409, "lock_busy",
                           "'%.*s' is held; not acquired (give wait_ms to queue)",
                           (int)o->key_len, (const char *)o->key);
    } else {
        /* queued: the FIFO in the state machine decides; wait for our GRANTED */
        struct api *a = o->api;
        o->waiting = true;
        o->wait_prev = NULL;
        o->wait_next = a->lock_waiters;
        if (a->lock_waiters)
            a->lock_waiters->wait_prev = o;
        a->lock_waiters = o;
        uint64_t now = uv_now(a->loop);
        uv_timer_stop(&o->timer);
        uv_timer_start(&o->timer, on_wait_timeout,
                       o->deadline_ms > now ? o->deadline_ms - now : 1, 0);
        return;
    }
    api_op_done(o);
}

/* True when this waiting acquire will certainly queue: someone else holds the lock or
 * others wait already (a newcomer is never granted past a waiter). Then nobody needs its
 * entry soon, and it can share the fdatasync of the next proposal, typically the holder's
 * release, instead of taking one just ahead of it (node_propose_lazy). A wrong guess (the
 * state moves before the entry applies) only delays a grant by NODE_LAZY_MS. */
static bool will_queue(const struct op *o)
{
    if (!(o->lock_flags & LOCK_ACQUIRE_WAIT))
        return false;
    struct lock_info info;
    if (lock_get(machine_locks(node_machine(o->api->node)), o->key, (uint16_t)o->key_len,
                 &info) != 0)
        return false;
    for (uint32_t i = 0; i < info.n_holders; i++) {
        struct lock_party p;
        lock_info_holder(&info, i, &p);
        if (p.owner_len == o->owner_len && memcmp(p.owner, o->aux, o->owner_len) == 0)
            return false; /* reentrant, or an upgrade attempt: answered at once */
    }
    if (info.n_waiters > 0)
        return true;
    return info.kind != LOCK_KIND_RW && info.n_holders >= info.limit;
}

static void propose_acquire(struct op *o)
{
    struct lock_cmd c = {.type = LOCK_CMD_ACQUIRE, .kind = o->lock_kind, .mode = o->lock_mode,
                         .flags = o->lock_flags, .limit = o->lock_limit, .lease = o->lease,
                         .request_id = o->request_id, .name = o->key,
                         .name_len = (uint16_t)o->key_len, .owner = o->aux,
                         .owner_len = o->owner_len,
                         .value = o->value_len ? o->aux + o->owner_len : NULL,
                         .value_len = o->value_len};
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = lock_encode(&c, buf, sizeof(buf), &n);
    if (rv == 0 && will_queue(o))
        rv = node_propose_lazy(o->api->node, buf, n, on_acquire_applied, o);
    else if (rv == 0)
        rv = node_propose(o->api->node, buf, n, on_acquire_applied, o);
    o->acquiring = rv == 0;
    if (rv != 0) {
        if (rv <= -2300 && rv > -2400)
            respond_sm_error(o->req, rv);
        else
            api_respond_node_error(o->api, o->req, rv);
        if (o->lease_implicit)
            revoke_quietly(o->api, o->lease);
        api_op_done(o);
    }
}

static void on_acquire_lease_granted(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (respond_if_node_failure(o, status, res)) {
        api_op_done(o);
        return;
    }
    o->lease = res->lease.id;
    o->lease_implicit = true;
    o->renewed_ms = uv_now(o->api->loop);
    propose_acquire(o);
}

/* Parses an acquire or campaign body into a new op; NULL when it answered an error. */
static struct op *parse_acquire(struct api *a, struct http_req *req, const char *name,
                                size_t name_len, uint8_t kind)
{
    json_t *j = body_json(req);
    if (!j)
        return NULL;
    json_t *owner = json_object_get(j, "owner");
    json_t *value = json_object_get(j, "value");
    int64_t lease = 0, ttl = API_LOCK_TTL_MS_DEFAULT, wait = 0, limit = 1;
    const char *kind_s = json_string_value(json_object_get(j, "kind"));
    const char *mode_s = json_string_value(json_object_get(j, "mode"));
    struct op *o = NULL;
    if (!json_i64(req, j, "lease", 1, INT64_MAX, &lease) ||
        !json_i64(req, j, "ttl_ms", LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX, &ttl) ||
        !json_i64(req, j, "wait_ms", 0, API_LOCK_WAIT_MS_MAX, &wait) ||
        !json_i64(req, j, "limit", 1, LOCK_HOLDERS_MAX, &limit))
        goto out;
    if (!json_is_string(owner) || json_string_length(owner) == 0 ||
        json_string_length(owner) > LOCK_OWNER_BYTES_MAX) {
        http_respond_error(req, 400, "bad_owner", "owner must be a string of 1-%u bytes",
                           LOCK_OWNER_BYTES_MAX);
        goto out;
    }
    if (value && (!json_is_string(value) || json_string_length(value) > LOCK_VALUE_BYTES_MAX)) {
        http_respond_error(req, 400, "bad_value", "value must be a string of at most %u bytes",
                           LOCK_VALUE_BYTES_MAX);
        goto out;
    }
    uint8_t mode = LOCK_MODE_EXCLUSIVE;
    if (kind == LOCK_KIND_MUTEX && kind_s) {
        if (strcmp(kind_s, "rw") == 0)
            kind = LOCK_KIND_RW;
        else if (strcmp(kind_s, "semaphore") == 0)
            kind = LOCK_KIND_SEMAPHORE;
        else if (strcmp(kind_s, "mutex") != 0) {
            http_respond_error(req, 400, "bad_kind", "kind must be mutex, rw or semaphore");
            goto out;
        }
    }
    if (kind == LOCK_KIND_RW) {
        mode = mode_s && strcmp(mode_s, "read") == 0 ? LOCK_MODE_READ : LOCK_MODE_WRITE;
        if (mode_s && strcmp(mode_s, "read") != 0 && strcmp(mode_s, "write") != 0) {
            http_respond_error(req, 400, "bad_mode", "mode must be read or write");
            goto out;
        }
    }
    o = api_op_new(a, req, OP_LOCK);
    size_t owner_len = json_string_length(owner), value_len = value ? json_string_length(value) : 0;
    if (o) {
        o->key = malloc(name_len);
        o->aux = malloc(owner_len + value_len + 1);
    }
    if (!o || !o->key || !o->aux) {
        if (o)
            api_op_done(o);
        o = NULL;
        http_respond_error(req, 503, "no_memory", "out of memory");
        goto out;
    }
    memcpy(o->key, name, name_len);
    o->key_len = (uint32_t)name_len;
    memcpy(o->aux, json_string_value(owner), owner_len);
    if (value_len)
        memcpy(o->aux + owner_len, json_string_value(value), value_len);
    o->owner_len = (uint16_t)owner_len;
    o->value_len = (uint16_t)value_len;
    o->lock_kind = kind;
    o->lock_mode = mode;
    o->lock_limit = kind == LOCK_KIND_SEMAPHORE ? (uint32_t)limit : 0;
    o->lock_flags = wait > 0 ? LOCK_ACQUIRE_WAIT : 0;
    o->lease = lease;
    o->ttl_ms = ttl;
    o->deadline_ms = uv_now(a->loop) + (uint64_t)wait;
    o->request_id = ((uint64_t)raft_id(node_raft(a->node)) << 48) | (++a->next_request_id & 0xffffffffffffull);
out:
    json_decref(j);
    return o;
}

static void start_acquire(struct op *o)
{
    if (o->lease != 0) {
        propose_acquire(o);
        return;
    }
    uint8_t cmd[LEASE_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = lease_encode_grant(0, o->ttl_ms, cmd, sizeof(cmd), &n);
    if (rv == 0)
        rv = node_propose(o->api->node, cmd, n, on_acquire_lease_granted, o);
    if (rv != 0) {
        api_respond_node_error(o->api, o->req, rv);
        api_op_done(o);
    }
}

static void lock_acquire(struct api *a, struct http_req *req, const char *name, size_t len,
                         uint8_t kind)
{
    if (!leader_or_forward(a, req))
        return;
    struct op *o = parse_acquire(a, req, name, len, kind);
    if (o)
        start_acquire(o);
}

static void on_release_applied(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (!respond_if_node_failure(o, status, res)) {
        json_t *j = json_object();
        json_object_set_new(j, "token", json_integer((json_int_t)res->lock.token));
        if (res->lock.type == LOCK_CMD_RELEASE) {
            json_object_set_new(j, "hold_count", json_integer(res->lock.hold_count));
            json_object_set_new(j, "released", json_boolean(res->lock.hold_count == 0));
        } else {
            json_object_set_new(j, "proclaimed", json_true());
        }
        http_respond_json(o->req, 200, j);
    }
    api_op_done(o);
}

/* RELEASE (resign) or PROCLAIM: {"owner","token"[,"value"]} */
static void lock_owner_cmd(struct api *a, struct http_req *req, const char *name, size_t len,
                           uint8_t type)
{
    if (!leader_or_forward(a, req))
        return;
    json_t *j = body_json(req);
    if (!j)
        return;
    int64_t token = 0;
    json_t *owner = json_object_get(j, "owner");
    json_t *value = json_object_get(j, "value");
    if (!json_i64(req, j, "token", 1, INT64_MAX, &token)) {
        json_decref(j);
        return;
    }
    if (!json_is_string(owner) || token == 0 || (type == LOCK_CMD_PROCLAIM && !json_is_string(value))) {
        http_respond_error(req, 400, "bad_request", "need owner (string) and token (integer)%s",
                           type == LOCK_CMD_PROCLAIM ? " and value (string)" : "");
        json_decref(j);
        return;
    }
    struct lock_cmd c = {.type = type, .token = (uint64_t)token, .name = (const uint8_t *)name,
                         .name_len = (uint16_t)(len > UINT16_MAX ? UINT16_MAX : len),
                         .owner = (const uint8_t *)json_string_value(owner),
                         .owner_len = (uint16_t)(json_string_length(owner) > UINT16_MAX
                                                     ? UINT16_MAX
                                                     : json_string_length(owner)),
                         .flags = type == LOCK_CMD_RELEASE && json_is_true(json_object_get(j, "all"))
                                      ? LOCK_RELEASE_ALL
                                      : 0};
    if (type == LOCK_CMD_PROCLAIM) {
        c.value = (const uint8_t *)json_string_value(value);
        c.value_len = (uint16_t)(json_string_length(value) > UINT16_MAX ? UINT16_MAX
                                                                          : json_string_length(value));
    }
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = lock_encode(&c, buf, sizeof(buf), &n);
    json_decref(j);
    if (rv != 0) {
        respond_sm_error(req, rv);
        return;
    }
    struct op *o = api_op_new(a, req, OP_LOCK);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    rv = node_propose(a->node, buf, n, on_release_applied, o);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

static json_t *json_party(const struct lock_party *p, bool holder)
{
    json_t *j = json_object();
    json_object_set_new(j, "owner", json_bytes(p->owner, p->owner_len));
    json_object_set_new(j, "lease", json_integer(p->lease));
    json_object_set_new(j, "mode", json_string(p->mode == LOCK_MODE_READ    ? "read"
                                               : p->mode == LOCK_MODE_WRITE ? "write"
                                                                            : "exclusive"));
    if (holder) {
        json_object_set_new(j, "token", json_integer((json_int_t)p->token));
        json_object_set_new(j, "hold_count", json_integer(p->hold_count));
    }
    if (p->value)
        json_object_set_new(j, "value", json_bytes(p->value, p->value_len));
    return j;
}

static void on_lock_read(void *arg, int status)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status != 0) {
        http_respond_error(o->req, 503, "read_failed", "%s", node_strerror(status));
        api_op_done(o);
        return;
    }
    struct lock_info info;
    int rv = lock_get(machine_locks(node_machine(o->api->node)), o->key, (uint16_t)o->key_len,
                      &info);
    if (rv != 0) {
        http_respond_error(o->req, 404, "lock_not_found", "nobody holds or waits for '%.*s'",
                           (int)o->key_len, (const char *)o->key);
        api_op_done(o);
        return;
    }
    static const char *const kinds[] = {"?", "mutex", "rw", "semaphore", "election"};
    json_t *j = json_object();
    json_object_set_new(j, "name", json_bytes(o->key, o->key_len));
    json_object_set_new(j, "kind", json_string(kinds[info.kind <= 4 ? info.kind : 0]));
    json_object_set_new(j, "limit", json_integer(info.limit));
    json_t *holders = json_array(), *waiters = json_array();
    for (uint32_t i = 0; i < info.n_holders; i++) {
        struct lock_party p;
        lock_info_holder(&info, i, &p);
        json_array_append_new(holders, json_party(&p, true));
    }
    for (uint32_t i = 0; i < info.n_waiters; i++) {
        struct lock_party p;
        lock_info_waiter(&info, i, &p);
        json_array_append_new(waiters, json_party(&p, false));
    }
    if (info.kind == LOCK_KIND_ELECTION) {
        json_t *leader = json_array_size(holders) ? json_incref(json_array_get(holders, 0))
                                                  : json_null();
        json_object_set_new(j, "leader", leader);
    }
    json_object_set_new(j, "holders", holders);
    json_object_set_new(j, "queue", waiters);
    json_object_set_new(j, "revision", json_integer(kv_revision(node_kv(o->api->node))));
    http_respond_json(o->req, 200, j);
    api_op_done(o);
}

static void lock_show(struct api *a, struct http_req *req, const char *name, size_t len)
{
    struct op *o = api_op_new(a, req, OP_GET);
    if (!o || !(o->key = malloc(len))) {
        if (o)
            api_op_done(o);
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    memcpy(o->key, name, len);
    o->key_len = (uint32_t)len;
    int rv = node_read(a->node, true, on_lock_read, o);
    if (rv != 0) {
        http_respond_error(req, 503, "unavailable", "%s", node_strerror(rv));
        api_op_done(o);
    }
}

/* A queued acquire whose lease we made is kept alive while its client waits: the open
 * request shows the client is there. Renewed every ttl/3, like the client watchdog. */
static void on_wait_keepalive(void *arg, int status, int64_t ttl_ms)
{
    (void)arg;
    (void)status; /* a failed renewal: the lease expires, the wait ends with 410 */
    (void)ttl_ms;
}

void lock_api_tick(struct api *a)
{
    elect_observe_tick(a);
    uint64_t now = uv_now(a->loop);
    for (uint32_t i = 0; i < a->n_abandoned;) {
        if (now - a->abandoned[i].at_ms >= API_ABANDONED_TTL_MS)
            a->abandoned[i] = a->abandoned[--a->n_abandoned];
        else
            i++;
    }
    for (struct op *o = a->lock_waiters; o; o = o->wait_next) {
        if (!o->lease_implicit || o->finished || now < o->renewed_ms + (uint64_t)o->ttl_ms / 3)
            continue;
        if (node_lease_keepalive(a->node, o->lease, on_wait_keepalive, o) == 0)
            o->renewed_ms = now;
    }
}

/* ==== routing ================================================================ */

/* Node observer: a snapshot replaced the state machine. */
static void on_reset_lock_state(void *arg, uint64_t index)
{
    (void)index;
    elect_observe_reset(arg);
}

int lock_api_init(struct api *a)
{
    a->abandoned = calloc(API_ABANDONED_MAX, sizeof(*a->abandoned));
    if (!a->abandoned)
        return -1;
    struct node_observer ob = {.applied_cb = on_applied_lock_events,
                               .reset_cb = on_reset_lock_state, .arg = a};
    return node_observe(a->node, &ob);
}

void lock_api_fini(struct api *a)
{
    elect_observe_fini(a);
    node_unobserve(a->node, a);
    free(a->abandoned);
    a->abandoned = NULL;
}

static bool take_prefix(const char **p, size_t *len, const char *prefix)
{
    size_t k = strlen(prefix);
    if (*len < k || memcmp(*p, prefix, k) != 0)
        return false;
    *p += k;
    *len -= k;
    return true;
}

/* Splits "name" or "name/verb" (the name may not contain '/': use it for nesting in kv
 * keys, not in lock names). */
static void split_verb(const char *p, size_t len, size_t *name_len, const char **verb,
                       size_t *verb_len)
{
    const char *slash = memchr(p, '/', len);
    *name_len = slash ? (size_t)(slash - p) : len;
    *verb = slash ? slash + 1 : "";
    *verb_len = slash ? len - *name_len - 1 : 0;
}

static bool verb_is(const char *verb, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(verb, want, len) == 0;
}

void lock_api_route(struct api *a, struct http_req *req)
{
    const char *p = req->path;
    size_t len = req->path_len;
    int m = req->method;
    size_t name_len, verb_len;
    const char *verb;
    if (take_prefix(&p, &len, "/v1/lease")) {
        if (len == 0 && m == HTTP_POST)
            return lease_grant(a, req);
        if (len == 0 && m == HTTP_GET)
            return lease_index(a, req);
        int64_t id = 0;
        if (take_prefix(&p, &len, "/")) {
            split_verb(p, len, &name_len, &verb, &verb_len);
            if (parse_id(p, name_len, &id)) {
                if (verb_len == 0 && m == HTTP_GET)
                    return lease_show(a, req, id);
                if (verb_len == 0 && m == HTTP_DELETE)
                    return lease_revoke(a, req, id);
                if (verb_is(verb, verb_len, "keepalive") && m == HTTP_POST)
                    return lease_keepalive(a, req, id);
            }
        }
        return http_respond_error(req, 404, "not_found",
                                  "lease paths: POST /v1/lease, GET /v1/lease, GET|DELETE "
                                  "/v1/lease/{id}, POST /v1/lease/{id}/keepalive");
    }
    if (take_prefix(&p, &len, "/v1/lock/") && len > 0 && len <= LOCK_NAME_BYTES_MAX &&
        !memchr(p, '/', len)) {
        if (m == HTTP_POST)
            return lock_acquire(a, req, p, len, LOCK_KIND_MUTEX);
        if (m == HTTP_DELETE)
            return lock_owner_cmd(a, req, p, len, LOCK_CMD_RELEASE);
        if (m == HTTP_GET)
            return lock_show(a, req, p, len);
    }
    p = req->path;
    len = req->path_len;
    if (take_prefix(&p, &len, "/v1/election/")) {
        split_verb(p, len, &name_len, &verb, &verb_len);
        if (name_len > 0 && name_len <= LOCK_NAME_BYTES_MAX) {
            if (verb_len == 0 && m == HTTP_GET)
                return lock_show(a, req, p, name_len);
            if (verb_is(verb, verb_len, "campaign") && m == HTTP_POST)
                return lock_acquire(a, req, p, name_len, LOCK_KIND_ELECTION);
            if (verb_is(verb, verb_len, "proclaim") && m == HTTP_POST)
                return lock_owner_cmd(a, req, p, name_len, LOCK_CMD_PROCLAIM);
            if (verb_is(verb, verb_len, "resign") && m == HTTP_POST)
                return lock_owner_cmd(a, req, p, name_len, LOCK_CMD_RELEASE);
            if (verb_is(verb, verb_len, "observe") && m == HTTP_GET)
                return elect_observe_start(a, req, p, name_len);
        }
    }
    http_respond_error(req, 404, "not_found",
                       "lock paths: POST|DELETE|GET /v1/lock/{name}; election paths: "
                       "POST /v1/election/{name}/campaign|proclaim|resign, GET "
                       "/v1/election/{name}[/observe] (names: 1-%u bytes, no '/')",
                       LOCK_NAME_BYTES_MAX);
}
