/* api.c -- the HTTP+JSON API under /v1 (docs/API.md), on top of node.h.
 *
 * Every request is either
 *   - a write: encoded as a KV command, proposed through Raft on the leader (a follower
 *     forwards the request, see forward.c), answered when the command is applied; or
 *   - a read: answered from the local state machine once node_read() says it is safe
 *     (batched ReadIndex by default; ?consistency=serializable reads locally at once).
 * A pending request holds a struct op that is freed exactly once: when its callback
 * answered, or when the client went away (node_cancel, then the request is finished).
 * Writes time out after API_WRITE_TIMEOUT_MS with 504 "may or may not have applied".
 *
 * Keys and values are bytes. JSON shows them as strings when they are UTF-8 and as
 * key_base64 / value_base64 otherwise.
 *
 * Sections: ops | JSON helpers | KV | txn | cluster | health and metrics | routing.
 */
#include "api/api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/forward.h"
#include "api/id_api.h"
#include "api/json_bytes.h"
#include "api/watch.h"
#include "sm/kvcmd.h"

#define API_KEY_PREFIX "/v1/kv/"

/* ==== ops ================================================================== */

static void op_timer_closed(uv_handle_t *h)
{
    struct op *o = h->data;
    free(o->key);
    free(o->aux);
    free(o);
}

/* Answering is done by the caller before; this releases everything. */
void api_op_done(struct op *o)
{
    o->finished = true;
    lock_api_forget(o);
    node_cancel(o->api->node, o);
    uv_close((uv_handle_t *)&o->timer, op_timer_closed);
}

static void op_on_client_gone(struct http_req *req, void *arg)
{
    struct op *o = arg;
    if (o->finished)
        return;
    http_respond(req, 499, NULL, NULL, 0); /* finishes req; the client never sees it */
    api_op_done(o);
}

static void op_on_timeout(uv_timer_t *t)
{
    struct op *o = t->data;
    if (o->finished)
        return;
    if (o->kind == OP_GET)
        http_respond_error(o->req, 503, "read_timeout",
                           "no quorum confirmed leadership within %d ms; retry",
                           API_READ_TIMEOUT_MS);
    else
        http_respond_error(o->req, 504, "write_timeout",
                           "not applied within %d ms; the write may or may not take effect",
                           API_WRITE_TIMEOUT_MS);
    api_op_done(o);
}

struct op *api_op_new(struct api *a, struct http_req *req, enum op_kind kind)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->api = a;
    o->req = req;
    o->kind = kind;
    uv_timer_init(a->loop, &o->timer);
    o->timer.data = o;
    uv_timer_start(&o->timer, op_on_timeout,
                   kind == OP_GET ? API_READ_TIMEOUT_MS : API_WRITE_TIMEOUT_MS, 0);
    http_req_on_close(req, op_on_client_gone, o);
    return o;
}

/* ==== JSON helpers =========================================================== */

static json_t *json_range(const struct kv_range_resp *r, bool with_values)
{
    json_t *o = json_object();
    json_t *kvs = json_array();
    for (uint32_t i = 0; i < r->n_kvs; i++)
        json_array_append_new(kvs, json_bytes_kv(&r->kvs[i], with_values));
    json_object_set_new(o, "kvs", kvs);
    json_object_set_new(o, "count", json_integer(r->count));
    json_object_set_new(o, "more", json_boolean(r->more));
    return o;
}

static int kv_err_status(int err)
{
    switch (err) {
    case KV_ECOMPACTED: return 410;
    case KV_EFUTUREREV: return 400;
    default: return err <= -2001 && err >= -2099 ? 400 : 500;
    }
}

static void respond_kv_error(struct http_req *req, int err)
{
    if (err == LEASE_ENOTFOUND) {
        http_respond_error(req, 404, "lease_not_found", "%s", sm_strerror(err));
        return;
    }
    http_respond_error(req, kv_err_status(err), "kv_error", "%s", kv_strerror(err));
}

void api_respond_node_error(struct api *a, struct http_req *req, int rv)
{
    if (rv == NODE_ENOSPACE) {
        http_respond_error(req, 507, "insufficient_storage", "%s", node_strerror(rv));
        return;
    }
    if (rv == NODE_ENOTLEADER || rv == RAFT_ENOTLEADER) {
        uint32_t leader = raft_leader(node_raft(a->node));
        const struct node_member *m = leader ? node_member(a->node, leader) : NULL;
        if (http_req_header(req, FORWARD_HEADER) || !m) {
            http_respond_error(req, 503, "no_leader",
                               "no leader is known right now (an election is running); retry");
            return;
        }
        forward_request(a->loop, m->http_addr, req);
        return;
    }
    int status = rv == NODE_EFULL || rv == RAFT_EFULL || rv == RAFT_EBUSY ? 503
                 : rv == RAFT_ETOOBIG                                    ? 413
                                                                         : 500;
    http_respond_error(req, status, "unavailable", "%s", node_strerror(rv));
}

/* ==== KV ===================================================================== */

static void on_applied(void *arg, int status, const struct sm_result *sres)
{
    struct op *o = arg;
    const struct kv_result *res = sres ? &sres->kv : NULL;
    if (o->finished)
        return;
    if (status == NODE_EUNKNOWN) {
        http_respond_error(o->req, 504, "outcome_unknown", "%s", node_strerror(status));
    } else if (status == NODE_ELOST) {
        http_respond_error(o->req, 503, "leader_changed",
                           "leadership changed before the write committed; it was not applied, retry");
    } else if (!res || (status != 0 && res->err == 0)) {
        http_respond_error(o->req, 503, "unavailable", "%s", node_strerror(status));
    } else if (res->err) {
        respond_kv_error(o->req, res->err);
    } else {
        json_t *j = json_object();
        json_object_set_new(j, "revision", json_integer(res->revision));
        if (o->kind == OP_DELETE && res->n_responses > 0)
            json_object_set_new(j, "deleted", json_integer(res->responses[0].del.n_deleted));
        if (o->kind == OP_PUT && res->n_responses > 0 && res->responses[0].put.has_prev)
            json_object_set_new(j, "prev_kv",
                                json_bytes_kv(&res->responses[0].put.prev_kv, true));
        if (o->kind == OP_TXN) {
            json_object_set_new(j, "succeeded", json_boolean(res->succeeded));
            json_t *arr = json_array();
            for (uint32_t i = 0; i < res->n_responses; i++) {
                const struct kv_response *r = &res->responses[i];
                json_t *x = json_object();
                if (r->type == KV_OP_PUT) {
                    json_object_set_new(x, "put", json_object());
                } else if (r->type == KV_OP_DELETE) {
                    json_t *d = json_object();
                    json_object_set_new(d, "deleted", json_integer(r->del.n_deleted));
                    json_object_set_new(x, "delete", d);
                } else {
                    json_object_set_new(x, "get", json_range(&r->range, true));
                }
                json_array_append_new(arr, x);
            }
            json_object_set_new(j, "responses", arr);
        }
        http_respond_json(o->req, 200, j);
    }
    api_op_done(o);
}

static void propose(struct api *a, struct http_req *req, enum op_kind kind, uint8_t *cmd,
                    size_t n)
{
    if (raft_role(node_raft(a->node)) != RAFT_LEADER) {
        free(cmd);
        api_respond_node_error(a, req, NODE_ENOTLEADER); /* forwards to the leader */
        return;
    }
    struct op *o = api_op_new(a, req, kind);
    if (!o) {
        free(cmd);
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    int rv = node_propose(a->node, cmd, n, on_applied, o);
    free(cmd);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

static bool query_flag(struct http_req *req, const char *name)
{
    bool v = false;
    return http_query_bool(req, name, &v) == 0 && v;
}

static void kv_put(struct api *a, struct http_req *req, const uint8_t *key, uint32_t key_len)
{
    struct kv_put_req p = {.key = key, .key_len = key_len, .value = req->body,
                           .value_len = (uint32_t)req->body_len,
                           .prev_kv = query_flag(req, "prev_kv")};
    uint64_t lease = 0;
    if (http_query_u64(req, "lease", &lease) == HTTP_EBADVALUE) {
        http_respond_error(req, 400, "bad_lease", "lease must be a decimal lease id");
        return;
    }
    p.lease = (int64_t)lease;
    if (req->body_len > KV_VALUE_BYTES_MAX) {
        http_respond_error(req, 413, "value_too_large", "value is %zu bytes; the limit is %u",
                           req->body_len, (unsigned)KV_VALUE_BYTES_MAX);
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_put(&p, &cmd, &n);
    if (rv != 0) {
        respond_kv_error(req, rv);
        return;
    }
    propose(a, req, OP_PUT, cmd, n);
}

static void kv_delete(struct api *a, struct http_req *req, const uint8_t *key, uint32_t key_len)
{
    struct kv_delete_req d = {.key = key, .key_len = key_len,
                              .prefix = query_flag(req, "prefix")};
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_delete(&d, &cmd, &n);
    if (rv != 0) {
        respond_kv_error(req, rv);
        return;
    }
    propose(a, req, OP_DELETE, cmd, n);
}

static void on_read_ready(void *arg, int status)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status != 0) {
        if (status == RAFT_ENOTLEADER || status == RAFT_ESTEPPEDDOWN)
            http_respond_error(o->req, 503, "no_leader",
                               "no leader could confirm the read (%s); retry", raft_strerror(status));
        else
            http_respond_error(o->req, 503, "unavailable", "%s", node_strerror(status));
        api_op_done(o);
        return;
    }
    struct kv_range_req r = {.key = o->key, .key_len = o->key_len, .prefix = o->prefix,
                             .limit = (int64_t)o->limit, .revision = o->revision,
                             .keys_only = o->keys_only, .count_only = o->count_only};
    struct kv_range_resp resp;
    int rv = kv_range(node_kv(o->api->node), &r, &resp);
    if (rv != 0) {
        respond_kv_error(o->req, rv);
    } else if (!o->prefix && resp.n_kvs == 0) {
        http_respond_error(o->req, 404, "key_not_found", "key not found");
    } else if (!o->prefix && o->raw) {
        http_respond(o->req, 200, "application/octet-stream", resp.kvs[0].value,
                     resp.kvs[0].value_len);
    } else if (!o->prefix) {
        json_t *j = json_bytes_kv(&resp.kvs[0], true);
        json_object_set_new(j, "revision", json_integer(kv_revision(node_kv(o->api->node))));
        http_respond_json(o->req, 200, j);
    } else {
        json_t *j = json_range(&resp, !o->keys_only);
        json_object_set_new(j, "revision", json_integer(kv_revision(node_kv(o->api->node))));
        http_respond_json(o->req, 200, j);
    }
    if (rv == 0)
        kv_range_resp_free(&resp);
    api_op_done(o);
}

static void kv_get(struct api *a, struct http_req *req, const uint8_t *key, uint32_t key_len)
{
    char cons[32] = "";
    bool linearizable = true;
    if (http_query_get(req, "consistency", cons, sizeof(cons), NULL) == 0) {
        if (strcmp(cons, "serializable") == 0) {
            linearizable = false;
        } else if (strcmp(cons, "linearizable") != 0) {
            http_respond_error(req, 400, "bad_consistency",
                               "consistency must be linearizable or serializable, not '%s'", cons);
            return;
        }
    }
    struct op *o = api_op_new(a, req, OP_GET);
    if (!o || (key_len > 0 && !(o->key = malloc(key_len)))) {
        if (o)
            api_op_done(o);
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    if (key_len > 0)
        memcpy(o->key, key, key_len);
    o->key_len = key_len;
    o->prefix = query_flag(req, "prefix");
    o->raw = query_flag(req, "raw");
    o->keys_only = query_flag(req, "keys_only");
    o->count_only = query_flag(req, "count_only");
    uint64_t rev = 0;
    if (http_query_u64(req, "limit", &o->limit) == HTTP_EBADVALUE ||
        http_query_u64(req, "revision", &rev) == HTTP_EBADVALUE || rev > INT64_MAX) {
        http_respond_error(req, 400, "bad_query", "limit and revision must be decimal numbers");
        api_op_done(o);
        return;
    }
    o->revision = (int64_t)rev;
    if (!o->prefix && key_len == 0) {
        http_respond_error(req, 400, "empty_key", "a key is required (or ?prefix=true)");
        api_op_done(o);
        return;
    }
    int rv = node_read(a->node, linearizable, on_read_ready, o);
    if (rv != 0) {
        http_respond_error(req, 503, "unavailable", "%s", node_strerror(rv));
        api_op_done(o);
    }
}

static void kv_compact(struct api *a, struct http_req *req)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &jerr);
    json_t *rev = j ? json_object_get(j, "revision") : NULL;
    if (!rev || !json_is_integer(rev) || json_integer_value(rev) < 1) {
        http_respond_error(req, 400, "bad_request",
                           "body must be {\"revision\": N} with N >= 1%s%s",
                           j ? "" : "; JSON error: ", j ? "" : jerr.text);
        json_decref(j);
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_compact(json_integer_value(rev), &cmd, &n);
    json_decref(j);
    if (rv != 0) {
        respond_kv_error(req, rv);
        return;
    }
    propose(a, req, OP_COMPACT, cmd, n);
}

/* ==== txn ==================================================================== */


struct txn_parse {
    struct kv_compare cmps[KV_TXN_CMP_MAX];
    struct kv_op ops[2][KV_TXN_OPS_MAX];
    uint32_t n_cmps, n_ops[2];
    char err[200];
};

static bool txn_bytes(json_t *o, const char *name, const uint8_t **p, uint32_t *n)
{
    json_t *v = json_object_get(o, name);
    if (!v)
        return false;
    if (!json_is_string(v))
        return false;
    *p = (const uint8_t *)json_string_value(v);
    *n = (uint32_t)json_string_length(v);
    return true;
}

static bool txn_parse_ops(struct txn_parse *t, json_t *arr, int branch)
{
    if (!arr)
        return true;
    if (!json_is_array(arr) || json_array_size(arr) > KV_TXN_OPS_MAX) {
        snprintf(t->err, sizeof(t->err), "success/failure must be arrays of at most %u ops",
                 (unsigned)KV_TXN_OPS_MAX);
        return false;
    }
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        struct kv_op *op = &t->ops[branch][t->n_ops[branch]++];
        memset(op, 0, sizeof(*op));
        json_t *b;
        if ((b = json_object_get(x, "put"))) {
            op->type = KV_OP_PUT;
            if (!txn_bytes(b, "key", &op->put.key, &op->put.key_len))
                goto bad;
            if (!txn_bytes(b, "value", &op->put.value, &op->put.value_len))
                op->put.value_len = 0;
        } else if ((b = json_object_get(x, "delete"))) {
            op->type = KV_OP_DELETE;
            if (!txn_bytes(b, "key", &op->del.key, &op->del.key_len))
                goto bad;
            op->del.prefix = json_is_true(json_object_get(b, "prefix"));
        } else if ((b = json_object_get(x, "get"))) {
            op->type = KV_OP_RANGE;
            if (!txn_bytes(b, "key", &op->range.key, &op->range.key_len))
                goto bad;
            op->range.prefix = json_is_true(json_object_get(b, "prefix"));
            json_t *lim = json_object_get(b, "limit");
            op->range.limit = json_is_integer(lim) ? json_integer_value(lim) : 0;
        } else {
            goto bad;
        }
    }
    return true;
bad:
    snprintf(t->err, sizeof(t->err),
             "op %zu: expected {\"put\":{\"key\",\"value\"}}, {\"delete\":{\"key\"}} or "
             "{\"get\":{\"key\"}} with string keys", i);
    return false;
}

static bool txn_parse_cmps(struct txn_parse *t, json_t *arr)
{
    if (!arr)
        return true;
    if (!json_is_array(arr) || json_array_size(arr) > KV_TXN_CMP_MAX) {
        snprintf(t->err, sizeof(t->err), "compare must be an array of at most %u",
                 (unsigned)KV_TXN_CMP_MAX);
        return false;
    }
    static const char *targets[] = {"", "version", "create", "mod", "value", "lease"};
    static const char *ops[] = {"", "=", "!=", "<", ">"};
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        struct kv_compare *c = &t->cmps[t->n_cmps++];
        memset(c, 0, sizeof(*c));
        const char *target = json_string_value(json_object_get(x, "target"));
        const char *op = json_string_value(json_object_get(x, "op"));
        if (!txn_bytes(x, "key", &c->key, &c->key_len) || !target || !op)
            goto bad;
        for (uint8_t k = 1; k <= 5; k++)
            if (strcmp(target, targets[k]) == 0)
                c->target = k;
        for (uint8_t k = 1; k <= 4; k++)
            if (strcmp(op, ops[k]) == 0)
                c->op = k;
        if (!c->target || !c->op)
            goto bad;
        if (c->target == KV_CMP_VALUE) {
            if (!txn_bytes(x, "value", &c->value, &c->value_len))
                goto bad;
        } else {
            json_t *v = json_object_get(x, "value");
            if (!json_is_integer(v))
                goto bad;
            c->number = json_integer_value(v);
        }
    }
    return true;
bad:
    snprintf(t->err, sizeof(t->err),
             "compare %zu: need key, target (version|create|mod|value|lease), op (=|!=|<|>) and "
             "value (a string for target value, else an integer)", i);
    return false;
}

static void kv_txn(struct api *a, struct http_req *req)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        http_respond_error(req, 400, "bad_json", "txn body: %s (line %d, column %d)",
                           j ? "must be an object" : jerr.text, jerr.line, jerr.column);
        json_decref(j);
        return;
    }
    struct txn_parse *t = calloc(1, sizeof(*t));
    if (!t) {
        json_decref(j);
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    if (!txn_parse_cmps(t, json_object_get(j, "compare")) ||
        !txn_parse_ops(t, json_object_get(j, "success"), 0) ||
        !txn_parse_ops(t, json_object_get(j, "failure"), 1)) {
        http_respond_error(req, 400, "bad_txn", "%s", t->err);
        free(t);
        json_decref(j);
        return;
    }
    struct kv_txn_req tr = {.compares = t->cmps, .n_compares = t->n_cmps,
                            .success = t->ops[0], .n_success = t->n_ops[0],
                            .failure = t->ops[1], .n_failure = t->n_ops[1]};
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_txn(&tr, &cmd, &n);
    free(t);
    json_decref(j); /* the command holds copies of every string now */
    if (rv != 0) {
        respond_kv_error(req, rv);
        return;
    }
    propose(a, req, OP_TXN, cmd, n);
}

/* ==== cluster ================================================================= */

static json_t *json_member(struct api *a, uint32_t id, int role)
{
    json_t *m = json_object();
    const struct node_member *nm = node_member(a->node, id);
    json_object_set_new(m, "id", json_integer(id));
    json_object_set_new(m, "name", json_string(nm ? nm->name : ""));
    json_object_set_new(m, "peer_addr", json_string(nm ? nm->peer_addr : ""));
    json_object_set_new(m, "http_addr", json_string(nm ? nm->http_addr : ""));
    json_object_set_new(m, "role", json_string(role == RAFT_VOTER ? "voter" : "learner"));
    return m;
}

static void cluster_status(struct api *a, struct http_req *req)
{
    struct raft *r = node_raft(a->node);
    uint32_t leader = raft_leader(r);
    const struct node_member *lm = leader ? node_member(a->node, leader) : NULL;
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer(raft_id(r)));
    json_object_set_new(j, "name", json_string(node_self(a->node)->name));
    json_object_set_new(j, "role", json_string(raft_role_name(raft_role(r))));
    json_object_set_new(j, "leader_id", json_integer(leader));
    json_object_set_new(j, "leader", lm ? json_string(lm->name) : json_null());
    json_object_set_new(j, "term", json_integer((json_int_t)raft_term(r)));
    json_object_set_new(j, "commit_index", json_integer((json_int_t)raft_commit(r)));
    json_object_set_new(j, "applied_index", json_integer((json_int_t)raft_applied(r)));
    json_object_set_new(j, "last_index", json_integer((json_int_t)raft_last_index(r)));
    json_object_set_new(j, "revision", json_integer(kv_revision(node_kv(a->node))));
    http_respond_json(req, 200, j);
}

static void cluster_members(struct api *a, struct http_req *req)
{
    const struct raft_config *c = raft_config(node_raft(a->node));
    json_t *arr = json_array();
    for (uint32_t i = 0; i < c->n_servers; i++)
        json_array_append_new(arr, json_member(a, c->servers[i].id, c->servers[i].role));
    json_t *j = json_object();
    json_object_set_new(j, "members", arr);
    http_respond_json(req, 200, j);
}

static void cluster_transfer(struct api *a, struct http_req *req)
{
    struct raft *r = node_raft(a->node);
    if (raft_role(r) != RAFT_LEADER) {
        api_respond_node_error(a, req, NODE_ENOTLEADER);
        return;
    }
    json_error_t jerr;
    json_t *j = req->body_len ? json_loadb((const char *)req->body, req->body_len, 0, &jerr) : NULL;
    json_t *to = j ? json_object_get(j, "to") : NULL;
    uint32_t target = 0;
    if (json_is_integer(to)) {
        target = (uint32_t)json_integer_value(to);
    } else {
        /* no target: the most up-to-date voter */
        struct raft_progress_info pi[RAFT_SERVERS_MAX];
        uint32_t n = raft_progress(r, pi, RAFT_SERVERS_MAX);
        uint64_t best = 0;
        for (uint32_t i = 0; i < n; i++)
            if (pi[i].role == RAFT_VOTER && pi[i].match >= best) {
                best = pi[i].match;
                target = pi[i].id;
            }
    }
    json_decref(j);
    if (target == 0) {
        http_respond_error(req, 409, "no_target",
                           "no other voter to transfer leadership to (give {\"to\": ID})");
        return;
    }
    int rv = raft_transfer(r, target);
    if (rv != 0) {
        http_respond_error(req, rv == RAFT_EBUSY ? 409 : 400, "transfer_failed",
                           "cannot transfer leadership to %u: %s", target, raft_strerror(rv));
        return;
    }
    json_t *out = json_object();
    json_object_set_new(out, "transferring_to", json_integer(target));
    http_respond_json(req, 202, out);
}

/* ==== health and metrics ======================================================== */

static void readyz(struct api *a, struct http_req *req)
{
    uint32_t leader = raft_leader(node_raft(a->node));
    if (leader == 0)
        http_respond_error(req, 503, "no_leader", "no leader known; not ready");
    else
        http_respond(req, 200, "text/plain", "ok\n", 3);
}

/* ==== routing ===================================================================== */

static bool path_is(const struct http_req *req, const char *p)
{
    return req->path_len == strlen(p) && memcmp(req->path, p, req->path_len) == 0;
}

static bool path_has_prefix(const struct http_req *req, const char *p)
{
    return req->path_len > strlen(p) && memcmp(req->path, p, strlen(p)) == 0;
}

#define MEMBERS_PREFIX "/v1/cluster/members/"

/* /v1/cluster/members/{name} (DELETE) and /v1/cluster/members/{name}/promote (POST) */
static void route_member(struct api *a, struct http_req *req)
{
    const char *rest = req->path + strlen(MEMBERS_PREFIX);
    size_t rest_len = req->path_len - strlen(MEMBERS_PREFIX);
    const char *slash = memchr(rest, '/', rest_len);
    size_t name_len = slash ? (size_t)(slash - rest) : rest_len;
    char name[MEMBERS_NAME_BYTES];
    if (name_len == 0 || name_len >= sizeof(name)) {
        http_respond_error(req, 400, "bad_member_name", "member names are 1-%u characters",
                           MEMBERS_NAME_BYTES - 1);
        return;
    }
    memcpy(name, rest, name_len);
    name[name_len] = 0;
    size_t verb_len = slash ? rest_len - name_len : 0;
    bool promote = verb_len == 8 && memcmp(slash, "/promote", 8) == 0;
    bool publish = verb_len == 8 && memcmp(slash, "/publish", 8) == 0;
    if (!slash && req->method == HTTP_DELETE)
        members_api_remove(a, req, name);
    else if (promote && req->method == HTTP_POST)
        members_api_promote(a, req, name);
    else if (publish && req->method == HTTP_POST)
        members_api_publish(a, req, name);
    else
        http_respond_error(req, 404, "not_found",
                           "use DELETE /v1/cluster/members/{name} or "
                           "POST /v1/cluster/members/{name}/promote");
}

static void api_handle(struct http_req *req, void *arg)
{
    struct api *a = arg;
    a->n_requests++;
    size_t kp = strlen(API_KEY_PREFIX);
    if (req->path_len >= kp && memcmp(req->path, API_KEY_PREFIX, kp) == 0) {
        const uint8_t *key = (const uint8_t *)req->path + kp;
        size_t key_len = req->path_len - kp;
        if (key_len > KV_KEY_BYTES_MAX) {
            http_respond_error(req, 414, "key_too_long", "key is %zu bytes; the limit is %d",
                               key_len, KV_KEY_BYTES_MAX);
            return;
        }
        if (req->method == HTTP_GET || req->method == HTTP_HEAD)
            kv_get(a, req, key, (uint32_t)key_len);
        else if (req->method == HTTP_PUT && key_len > 0)
            kv_put(a, req, key, (uint32_t)key_len);
        else if (req->method == HTTP_DELETE && key_len > 0)
            kv_delete(a, req, key, (uint32_t)key_len);
        else
            http_respond_error(req, key_len ? 405 : 400, "bad_request",
                               "use GET, PUT or DELETE on /v1/kv/{key}");
        return;
    }
    if (path_has_prefix(req, "/v3/kv/")) {
        v3_api_route(a, req);
        return;
    }
    if (req->path_len >= strlen(WATCH_PATH_PREFIX) &&
        memcmp(req->path, WATCH_PATH_PREFIX, strlen(WATCH_PATH_PREFIX)) == 0) {
        watch_request(a->watch, req); /* watch.c: SSE streams, ?prefix, ?from_revision */
        return;
    }
    if (path_has_prefix(req, "/v1/lease") || path_is(req, "/v1/lease") ||
        path_has_prefix(req, "/v1/lock/") || path_has_prefix(req, "/v1/election/")) {
        lock_api_route(a, req);
        return;
    }
    if (path_is(req, "/v1/shorturl")) {
        id_api_shorturl(a->ids, req);
        return;
    }
    if (path_has_prefix(req, "/v1/id/") || path_has_prefix(req, "/s/")) {
        if (req->path[1] == 's')
            id_api_redirect(a->ids, req); /* id_api.c: short-url redirects */
        else
            id_api_route(a->ids, req); /* id_api.c: the ID service (docs/id.md) */
        return;
    }
    if (path_is(req, "/v1/txn") && req->method == HTTP_POST)
        kv_txn(a, req);
    else if (path_is(req, "/v1/compact") && req->method == HTTP_POST)
        kv_compact(a, req);
    else if (path_is(req, "/v1/cluster/status") && req->method == HTTP_GET)
        cluster_status(a, req);
    else if (path_is(req, "/v1/cluster/members") && req->method == HTTP_GET)
        cluster_members(a, req);
    else if (path_is(req, "/v1/cluster/members") && req->method == HTTP_POST)
        members_api_add(a, req);
    else if (path_has_prefix(req, MEMBERS_PREFIX))
        route_member(a, req);
    else if (path_is(req, "/v1/cluster/leader/transfer") && req->method == HTTP_POST)
        cluster_transfer(a, req);
    else if (path_is(req, "/metrics"))
        api_metrics(a, req);
    else if (path_is(req, "/healthz"))
        http_respond(req, 200, "text/plain", "ok\n", 3);
    else if (path_is(req, "/readyz"))
        readyz(a, req);
    else
        http_respond_error(req, 404, "not_found", "no such endpoint: %s %.*s; see docs/API.md",
                           http_method_name(req->method), (int)req->path_raw_len, req->path_raw);
}

static void on_auto_compacted(void *arg, int status, const struct sm_result *res)
{
    struct api *a = arg;
    (void)status;
    (void)res;
    a->compacting = false;
}

/* Automatic compaction (node_config.compact_retain_revisions): the leader compacts
 * everything older than the newest N revisions, once the history to drop is worth a
 * command (API_COMPACT_SLACK_REVISIONS), one compaction in flight at a time. */
static void auto_compact_tick(struct api *a)
{
    uint64_t retain = node_get_config(a->node)->compact_retain_revisions;
    if (retain == 0 || a->compacting || raft_role(node_raft(a->node)) != RAFT_LEADER)
        return;
    const struct kv *kv = node_kv(a->node);
    int64_t rev = kv_revision(kv);
    int64_t target = rev - (int64_t)retain;
    if (target < 1 || target - kv_compacted_revision(kv) < API_COMPACT_SLACK_REVISIONS)
        return;
    uint8_t *cmd = NULL;
    size_t n = 0;
    if (kvcmd_encode_compact(target, &cmd, &n) != 0)
        return;
    if (node_propose(a->node, cmd, n, on_auto_compacted, a) == 0) {
        a->compacting = true;
        a->n_auto_compactions++;
    }
    free(cmd);
}

/* Every API_TICK_MS: lock waits renew their leases; every API_PUBLISH_MS: the member
 * directory and automatic compaction. */
static void on_publish_timer(uv_timer_t *t)
{
    struct api *a = t->data;
    lock_api_tick(a);
    if (++a->n_ticks % (API_PUBLISH_MS / API_TICK_MS) != 0)
        return;
    members_api_publish_tick(a);
    auto_compact_tick(a);
}

int api_start(uv_loop_t *loop, struct node *node, const char *http_addr,
              struct http_server **srv_out, struct api **api_out, char *msg, size_t msg_cap)
{
    struct api *a = calloc(1, sizeof(*a));
    if (!a)
        return HTTP_ENOMEM;
    a->loop = loop;
    a->node = node;
    struct http_limits lim;
    http_limits_default(&lim);
    int rv = http_server_start(loop, http_addr, &lim, api_handle, a, srv_out, msg, msg_cap);
    if (rv != 0) {
        free(a);
        return rv;
    }
    http_server_set_access_log(*srv_out, api_metrics_observe, a);
    if (lock_api_init(a) != 0) {
        snprintf(msg, msg_cap, "out of memory for the lock API");
        return HTTP_ENOMEM; /* the server runs; serve.c exits */
    }
    rv = id_api_init(a, &a->ids, msg, msg_cap);
    if (rv != 0)
        return rv; /* the server runs; serve.c exits */
    rv = watch_hub_new(loop, node, &a->watch);
    if (rv != 0) {
        snprintf(msg, msg_cap, "cannot start the watch hub: %s",
                 rv == WATCH_ENOMEM ? watch_strerror(rv) : node_strerror(rv));
        return rv; /* the server runs; serve.c exits */
    }
    uv_timer_init(loop, &a->publish_timer);
    a->publish_timer.data = a;
    uv_timer_start(&a->publish_timer, on_publish_timer, API_TICK_MS, API_TICK_MS);
    *api_out = a;
    return 0;
}

void api_call_finished(struct api *a)
{
    a->n_calls--;
    if (a->closing && a->timer_closed && a->n_calls == 0)
        free(a);
}

static void on_api_closed(uv_handle_t *h)
{
    struct api *a = h->data;
    a->timer_closed = true;
    if (a->n_calls == 0)
        free(a);
}

void api_set_resp(struct api *a, struct resp_server *srv)
{
    a->resp = srv;
}

void api_free(struct api *a)
{
    a->closing = true;
    lock_api_fini(a);
    id_api_fini(a->ids); /* after the server stopped, before node_stop */
    a->ids = NULL;
    watch_hub_free(a->watch); /* every stream ended with the server; frees itself */
    a->watch = NULL;
    node_cancel(a->node, a); /* a directory update from the publish tick */
    uv_close((uv_handle_t *)&a->publish_timer, on_api_closed);
}
