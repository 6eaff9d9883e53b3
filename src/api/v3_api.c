/* v3_api.c -- etcd 3.4 JSON-gateway compatibility: POST /v3/kv/put, /v3/kv/range and
 * /v3/kv/deleterange with the same request and response JSON as etcd's grpc-gateway, so
 * one client (and one benchmark) can drive etcd and Conclave alike.
 *
 * etcd's gateway conventions, followed exactly: keys and values are base64; int64 fields
 * are JSON strings ("revision": "42"); fields with a zero value are omitted; every answer
 * carries a "header" {cluster_id, member_id, revision, raft_term}. range_end "\0" (base64
 * "AA==") means every key >= key, as in kv.h. Errors are etcd-style
 * {"error": "...", "code": N, "message": "..."} with gRPC codes (3 invalid argument,
 * 11 out of range for a compacted revision, 14 unavailable).
 *
 * Writes are proposed on the leader (followers forward the request), reads use ReadIndex
 * unless "serializable": true. Sections: codec | answers | put | deleterange | range.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "sm/kvcmd.h"

/* ==== codec ================================================================= */

/* Decodes standard base64 (with padding) into a malloc'd buffer; false when malformed. */
static bool b64_decode(const char *s, size_t len, uint8_t **out, uint32_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len == 0)
        return true;
    if (len % 4 != 0 || len > 4 * ((size_t)KV_VALUE_BYTES_MAX / 3 + 2))
        return false;
    uint8_t *buf = malloc(len / 4 * 3 + 1);
    if (!buf)
        return false;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
    if (n < 0) {
        free(buf);
        return false;
    }
    /* EVP_DecodeBlock counts padding bytes as data: drop one per '=' */
    n -= (s[len - 1] == '=') + (s[len - 2] == '=');
    *out = buf;
    *out_len = (uint32_t)n;
    return true;
}

/* Answers are written straight into one buffer rather than built as a jansson tree and
 * dumped: under 50 connections of ranges the tree, its mallocs and printf("%lld") were
 * 40% of the leader's CPU. Only fixed field names and base64 go in, so nothing needs
 * escaping. A failed allocation sets oom and the answer becomes a 500. */
struct v3_out {
    char *p;
    size_t n, cap;
    bool oom;
    bool first; /* no field yet in the innermost object */
};

static bool out_room(struct v3_out *o, size_t more)
{
    if (o->oom)
        return false;
    if (o->n + more <= o->cap)
        return true;
    size_t cap = o->cap ? o->cap : 512;
    while (cap < o->n + more)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (!p) {
        o->oom = true;
        return false;
    }
    o->p = p;
    o->cap = cap;
    return true;
}

static void out_put(struct v3_out *o, const char *s, size_t n)
{
    if (out_room(o, n)) {
        memcpy(o->p + o->n, s, n);
        o->n += n;
    }
}

static void out_lit(struct v3_out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

/* "name": with the comma the object needs before it. */
static void out_name(struct v3_out *o, const char *name)
{
    if (!o->first)
        out_put(o, ",", 1);
    o->first = false;
    out_put(o, "\"", 1);
    out_lit(o, name);
    out_put(o, "\":", 2);
}

/* An object or array: a named field, an array element (comma after the first) or the
 * answer itself. */
static void out_open(struct v3_out *o, const char *name, char bracket)
{
    if (name)
        out_name(o, name);
    else if (!o->first && o->n > 0)
        out_put(o, ",", 1);
    out_put(o, &bracket, 1);
    o->first = true;
}

static void out_close(struct v3_out *o, char bracket)
{
    out_put(o, &bracket, 1);
    o->first = false;
}

/* An int64 as the gateway writes it: a JSON string; zero values are omitted. */
static void out_i64(struct v3_out *o, const char *name, int64_t v)
{
    if (v == 0)
        return;
    char buf[24];
    size_t k = sizeof(buf);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        buf[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[--k] = '-';
    out_name(o, name);
    out_put(o, "\"", 1);
    out_put(o, buf + k, sizeof(buf) - k);
    out_put(o, "\"", 1);
}

static void out_b64(struct v3_out *o, const char *name, const uint8_t *p, size_t n)
{
    out_name(o, name);
    size_t need = 4 * ((n + 2) / 3) + 3; /* quotes and EVP_EncodeBlock's NUL */
    if (n > (size_t)INT32_MAX / 2 || !out_room(o, need)) {
        o->oom = true;
        return;
    }
    o->p[o->n++] = '"';
    o->n += (size_t)EVP_EncodeBlock((unsigned char *)o->p + o->n, p ? p : (const uint8_t *)"",
                                    (int)n);
    o->p[o->n++] = '"';
}

static void out_kv(struct v3_out *o, const char *name, const struct kv_kv *kv, bool with_value)
{
    out_open(o, name, '{');
    out_b64(o, "key", kv->key, kv->key_len);
    out_i64(o, "create_revision", kv->create_revision);
    out_i64(o, "mod_revision", kv->mod_revision);
    out_i64(o, "version", kv->version);
    if (with_value && kv->value_len)
        out_b64(o, "value", kv->value, kv->value_len);
    out_i64(o, "lease", kv->lease);
    out_close(o, '}');
}

/* Opens the answer and writes its header {cluster_id, member_id, revision, raft_term}. */
static void out_begin(struct v3_out *o, struct api *a, int64_t revision)
{
    struct raft *r = node_raft(a->node);
    out_open(o, NULL, '{');
    out_open(o, "header", '{');
    out_i64(o, "cluster_id", (int64_t)(node_get_config(a->node)->cluster_id & INT64_MAX));
    out_i64(o, "member_id", raft_id(r));
    out_i64(o, "revision", revision);
    out_i64(o, "raft_term", (int64_t)raft_term(r));
    out_close(o, '}');
}

/* Closes the answer, sends it (200) and frees the buffer. */
static void out_send(struct v3_out *o, struct http_req *req)
{
    out_close(o, '}');
    out_put(o, "\n", 1);
    if (o->oom)
        http_respond_error(req, 500, "no_memory", "out of memory writing the answer");
    else
        http_respond(req, 200, "application/json", o->p, o->n);
    free(o->p);
}

static void v3_error(struct http_req *req, int status, int grpc_code, const char *msg)
{
    json_t *j = json_pack("{s:s, s:i, s:s}", "error", msg, "code", grpc_code, "message", msg);
    http_respond_json(req, status, j);
}

/* A field that must be base64 if present. */
static bool get_b64(struct http_req *req, json_t *j, const char *name, uint8_t **out,
                    uint32_t *len)
{
    json_t *v = json_object_get(j, name);
    *out = NULL;
    *len = 0;
    if (!v)
        return true;
    if (json_is_string(v) &&
        b64_decode(json_string_value(v), json_string_length(v), out, len))
        return true;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s must be base64 (at most %u decoded bytes)", name,
             (unsigned)KV_VALUE_BYTES_MAX);
    v3_error(req, 400, 3, msg);
    return false;
}

/* int64 fields come as strings or numbers. */
static bool get_int(struct http_req *req, json_t *j, const char *name, int64_t *out)
{
    json_t *v = json_object_get(j, name);
    *out = 0;
    if (!v)
        return true;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        char *end = NULL;
        long long x = strtoll(json_string_value(v), &end, 10);
        if (*json_string_value(v) && !*end && x >= 0) {
            *out = x;
            return true;
        }
    }
    char msg[96];
    snprintf(msg, sizeof(msg), "%s must be a non-negative integer", name);
    v3_error(req, 400, 3, msg);
    return false;
}

static json_t *v3_body(struct http_req *req)
{
    json_error_t jerr;
    json_t *j = req->body_len ? json_loadb((const char *)req->body, req->body_len, 0, &jerr)
                              : json_object();
    if (!j || !json_is_object(j)) {
        v3_error(req, 400, 3, "body must be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool leader_or_forward(struct api *a, struct http_req *req)
{
    if (raft_role(node_raft(a->node)) == RAFT_LEADER)
        return true;
    api_respond_node_error(a, req, NODE_ENOTLEADER);
    return false;
}

/* ==== answers =============================================================== */

static void on_v3_applied(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status == NODE_EUNKNOWN || status == NODE_ELOST || !res || (status && !res->err)) {
        v3_error(o->req, 503, 14, node_strerror(status ? status : NODE_ELOST));
    } else if (res->err) {
        v3_error(o->req, 400, 3, sm_strerror(res->err));
    } else {
        const struct kv_result *kr = &res->kv;
        struct v3_out w = {0};
        out_begin(&w, o->api, kr->revision);
        if (kr->n_responses > 0 && o->kind == OP_PUT && kr->responses[0].put.has_prev)
            out_kv(&w, "prev_kv", &kr->responses[0].put.prev_kv, true);
        if (kr->n_responses > 0 && o->kind == OP_DELETE) {
            const struct kv_delete_resp *d = &kr->responses[0].del;
            out_i64(&w, "deleted", d->n_deleted);
            if (d->n_prev_kvs) {
                out_open(&w, "prev_kvs", '[');
                for (uint32_t i = 0; i < d->n_prev_kvs; i++)
                    out_kv(&w, NULL, &d->prev_kvs[i], true);
                out_close(&w, ']');
            }
        }
        out_send(&w, o->req);
    }
    api_op_done(o);
}

static void propose_v3(struct api *a, struct http_req *req, enum op_kind kind, uint8_t *cmd,
                       size_t n)
{
    struct op *o = api_op_new(a, req, kind);
    if (!o) {
        free(cmd);
        v3_error(req, 503, 14, "out of memory");
        return;
    }
    int rv = node_propose(a->node, cmd, n, on_v3_applied, o);
    free(cmd);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

/* ==== put =================================================================== */

static void v3_put(struct api *a, struct http_req *req)
{
    if (!leader_or_forward(a, req))
        return;
    json_t *j = v3_body(req);
    if (!j)
        return;
    uint8_t *key = NULL, *value = NULL;
    uint32_t key_len = 0, value_len = 0;
    int64_t lease = 0;
    if (!get_b64(req, j, "key", &key, &key_len) || !get_b64(req, j, "value", &value, &value_len) ||
        !get_int(req, j, "lease", &lease))
        goto out;
    if (key_len == 0) {
        v3_error(req, 400, 3, "etcdserver: key is not provided");
        goto out;
    }
    struct kv_put_req p = {.key = key, .key_len = key_len, .value = value,
                           .value_len = value_len, .lease = lease,
                           .prev_kv = json_is_true(json_object_get(j, "prev_kv")),
                           .ignore_value = json_is_true(json_object_get(j, "ignore_value")),
                           .ignore_lease = json_is_true(json_object_get(j, "ignore_lease"))};
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_put(&p, &cmd, &n);
    if (rv != 0)
        v3_error(req, 400, 3, kv_strerror(rv));
    else
        propose_v3(a, req, OP_PUT, cmd, n);
out:
    free(key);
    free(value);
    json_decref(j);
}

/* ==== deleterange ============================================================ */

static void v3_deleterange(struct api *a, struct http_req *req)
{
    if (!leader_or_forward(a, req))
        return;
    json_t *j = v3_body(req);
    if (!j)
        return;
    uint8_t *key = NULL, *end = NULL;
    uint32_t key_len = 0, end_len = 0;
    if (!get_b64(req, j, "key", &key, &key_len) || !get_b64(req, j, "range_end", &end, &end_len))
        goto out;
    if (key_len == 0) {
        v3_error(req, 400, 3, "etcdserver: key is not provided");
        goto out;
    }
    struct kv_delete_req d = {.key = key, .key_len = key_len, .range_end = end,
                              .range_end_len = end_len,
                              .prev_kv = json_is_true(json_object_get(j, "prev_kv"))};
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_delete(&d, &cmd, &n);
    if (rv != 0)
        v3_error(req, 400, 3, kv_strerror(rv));
    else
        propose_v3(a, req, OP_DELETE, cmd, n);
out:
    free(key);
    free(end);
    json_decref(j);
}

/* ==== range ================================================================= */

static void on_range_ready(void *arg, int status)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status != 0) {
        v3_error(o->req, 503, 14, node_strerror(status));
        api_op_done(o);
        return;
    }
    /* key/key_len hold the key; aux holds range_end (aux_len in value_len). */
    struct kv_range_req r = {.key = o->key, .key_len = o->key_len, .range_end = o->aux,
                             .range_end_len = o->value_len, .limit = (int64_t)o->limit,
                             .revision = o->revision, .keys_only = o->keys_only,
                             .count_only = o->count_only};
    struct kv_range_resp resp;
    struct kv *kv = node_kv(o->api->node);
    int rv = kv_range(kv, &r, &resp);
    if (rv == KV_ECOMPACTED) {
        v3_error(o->req, 400, 11, "etcdserver: mvcc: required revision has been compacted");
    } else if (rv == KV_EFUTUREREV) {
        v3_error(o->req, 400, 11, "etcdserver: mvcc: required revision is a future revision");
    } else if (rv != 0) {
        v3_error(o->req, 400, 3, kv_strerror(rv));
    } else {
        struct v3_out w = {0};
        out_begin(&w, o->api, kv_revision(kv));
        if (!o->count_only && resp.n_kvs) {
            out_open(&w, "kvs", '[');
            for (uint32_t i = 0; i < resp.n_kvs; i++)
                out_kv(&w, NULL, &resp.kvs[i], !o->keys_only);
            out_close(&w, ']');
        }
        if (resp.more) {
            out_name(&w, "more");
            out_lit(&w, "true");
        }
        out_i64(&w, "count", resp.count);
        out_send(&w, o->req);
        kv_range_resp_free(&resp);
    }
    api_op_done(o);
}

static void v3_range(struct api *a, struct http_req *req)
{
    json_t *j = v3_body(req);
    if (!j)
        return;
    uint8_t *key = NULL, *end = NULL;
    uint32_t key_len = 0, end_len = 0;
    int64_t limit = 0, revision = 0;
    struct op *o = NULL;
    if (!get_b64(req, j, "key", &key, &key_len) || !get_b64(req, j, "range_end", &end, &end_len) ||
        !get_int(req, j, "limit", &limit) || !get_int(req, j, "revision", &revision))
        goto out;
    if (key_len == 0) {
        v3_error(req, 400, 3, "etcdserver: key is not provided");
        goto out;
    }
    if (end_len > UINT16_MAX) {
        v3_error(req, 400, 3, "range_end is too long");
        goto out;
    }
    o = api_op_new(a, req, OP_GET);
    if (!o) {
        v3_error(req, 503, 14, "out of memory");
        goto out;
    }
    o->key = key;
    o->key_len = key_len;
    o->aux = end;
    o->value_len = (uint16_t)end_len;
    key = end = NULL; /* the op owns them now */
    o->limit = (uint64_t)limit;
    o->revision = revision;
    o->keys_only = json_is_true(json_object_get(j, "keys_only"));
    o->count_only = json_is_true(json_object_get(j, "count_only"));
    bool linearizable = !json_is_true(json_object_get(j, "serializable"));
    int rv = node_read(a->node, linearizable, on_range_ready, o);
    if (rv != 0) {
        v3_error(req, 503, 14, node_strerror(rv));
        api_op_done(o);
    }
out:
    free(key);
    free(end);
    json_decref(j);
}

void v3_api_route(struct api *a, struct http_req *req)
{
    if (req->method != HTTP_POST) {
        v3_error(req, 405, 12, "the v3 gateway paths take POST");
        return;
    }
    const char *p = req->path;
    size_t n = req->path_len;
    if (n == strlen("/v3/kv/range") && memcmp(p, "/v3/kv/range", n) == 0) {
        v3_range(a, req);
    } else if (n == strlen("/v3/kv/put") && memcmp(p, "/v3/kv/put", n) == 0) {
        v3_put(a, req);
    } else if (n == strlen("/v3/kv/deleterange") && memcmp(p, "/v3/kv/deleterange", n) == 0) {
        v3_deleterange(a, req);
    } else {
        v3_error(req, 404, 12, "only /v3/kv/put, /v3/kv/range and /v3/kv/deleterange are served");
    }
}
