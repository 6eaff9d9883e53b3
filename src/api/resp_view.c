/* resp_view.c -- what the RESP command engine stands on: node and KV errors as replies,
 * views over the local store, and chains of in-flight read-modify-write results.
 *
 * Errors. Every node, raft and state machine error a command can meet has its reply
 * text here; a write that reached a follower gets -READONLY naming the leader (RESP does
 * not forward).
 *
 * Views (struct xview, resp_internal.h): a store view reads the local store; an overlay
 * view copies every key it touches into an xkey and writes only the copy, so that
 * resp_write.c can turn the run into one txn. A view's error is sticky: once it failed,
 * the run's replies are void and the caller answers for the whole run.
 *
 * Chains: read-modify-writes proposed by this server on one key pipeline through the
 * log instead of conflicting: the expected result of an in-flight txn is remembered
 * (struct chain) and the next RMW on that key computes from it and compares the value
 * (the outcome of INCR, APPEND, ... depends only on the value, so a value compare is
 * exact). A failed link invalidates the chain; the compares keep every case correct,
 * the chain only makes 50 clients INCRing one counter cost one fsync per batch.
 * Invariant: an entry is in the table (linked) or held by an op in flight (refs > 0),
 * and is freed as soon as it is neither.
 *
 * Sections: errors | chains | views.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "api/resp_internal.h"
#include "base/assert.h"
#include "base/hash.h"

/* ==== errors ================================================================================== */

void resp_reply_errorf(struct resp_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_out_verrorf(o, fmt, ap);
    va_end(ap);
}

/* A write reached a node that is not the leader. RESP does not forward: the client
 * (or its Sentinel-style retry logic, which knows READONLY) must talk to the leader. */
void resp_reply_not_leader(struct resp_server *s, struct resp_out *o)
{
    const uint32_t leader = raft_leader(node_raft(s->node));
    const struct node_member *m = leader != 0 ? node_member(s->node, leader) : NULL;
    if (m == NULL) {
        resp_out_error(o, "-TRYAGAIN no leader is known right now (an election is running); "
                          "retry");
        return;
    }
    resp_reply_errorf(o,
                      "-READONLY You can't write against a read only replica. Conclave node %s "
                      "follows leader %s (HTTP %s); send writes to the leader's RESP port",
                      node_self(s->node)->name, m->name,
                      m->http_addr[0] ? m->http_addr : "unknown");
}

/* A node or raft error from node_propose / node_read or a callback. */
void resp_reply_node_error(struct resp_server *s, struct resp_out *o, int rv)
{
    switch (rv) {
    case NODE_ENOTLEADER:
    case RAFT_ENOTLEADER:
        resp_reply_not_leader(s, o);
        return;
    case RAFT_ESTEPPEDDOWN:
        resp_out_error(o, "-TRYAGAIN leadership changed during the read; retry");
        return;
    case NODE_ELOST:
        resp_out_error(o, "-TRYAGAIN leadership changed before the write committed; it was "
                          "not applied, retry");
        return;
    case NODE_EUNKNOWN:
        resp_out_error(o, "outcome unknown: a snapshot replaced the log before the write was "
                          "seen applied; it may or may not have taken effect");
        return;
    case NODE_EFULL:
    case RAFT_EFULL:
    case RAFT_EBUSY:
        resp_out_error(o, "-TRYAGAIN the node has too many pending requests; retry");
        return;
    case NODE_ESTOPPED:
        resp_out_error(o, "the node is shutting down");
        return;
    case RAFT_ETOOBIG:
        resp_reply_errorf(o, "command does not fit one Raft entry (%u bytes)",
                          (unsigned)KV_CMD_BYTES_MAX);
        return;
    default:
        resp_reply_errorf(o, "%s", node_strerror(rv));
        return;
    }
}

/* A state machine or codec error (KV_E*, or another machine's via sm_strerror). */
void resp_reply_kv_error(struct resp_out *o, int err)
{
    switch (err) {
    case KV_EKEYEMPTY:
        resp_out_error(o, "empty keys are not supported (Conclave keys are 1 to 4096 bytes)");
        return;
    case KV_EKEYTOOBIG:
        resp_reply_errorf(o, "key is too long (the limit is %u bytes)", (unsigned)KV_KEY_BYTES_MAX);
        return;
    case KV_EVALUETOOBIG:
        resp_out_error(o, ERR_TOO_BIG);
        return;
    case KV_ECMDTOOBIG:
        resp_reply_errorf(o, "command does not fit one Raft entry (%u bytes)",
                          (unsigned)KV_CMD_BYTES_MAX);
        return;
    case KV_ETXNOPS:
        resp_reply_errorf(o, "too many writes for one transaction (the limit is %u keys)",
                          (unsigned)KV_TXN_OPS_MAX);
        return;
    case KV_ETXNCMPS:
        resp_reply_errorf(o, "too many keys read for one transaction (the limit is %u)",
                          (unsigned)KV_TXN_CMP_MAX);
        return;
    case KV_ENOMEM:
        resp_out_error(o, "out of memory");
        return;
    case SM_EGRANTS:
        resp_reply_errorf(o, "too many keys given a TTL by one transaction (the limit is %u)",
                          (unsigned)SM_KVTTL_GRANTS_MAX);
        return;
    case LEASE_EFULL:
        resp_reply_errorf(o, "too many keys with a TTL (the limit is %u leases)",
                          (unsigned)LEASE_COUNT_MAX);
        return;
    default:
        resp_reply_errorf(o, "%s", sm_strerror(err));
        return;
    }
}

/* ==== chains ================================================================================== */

static uint64_t chain_hash(const uint8_t *key, uint32_t len)
{
    return hash_fnv1a64(HASH_FNV_INIT, key, len);
}

struct chain *resp_chain_find(struct resp_server *s, const uint8_t *key, uint32_t len)
{
    const uint64_t h = chain_hash(key, len);
    for (struct chain *e = s->chains[h % RESP_CHAIN_BUCKETS]; e != NULL; e = e->hnext) {
        if (e->hash == h && resp_bytes_eq(e->key, e->key_len, key, len)) {
            return e;
        }
    }
    return NULL;
}

void resp_chain_free(struct chain *e)
{
    CC_ASSERT(e->waiters == NULL);
    free(e->key);
    free(e->val);
    free(e);
}

/* Wakes every op parked on e: each runs its attempt again from the check handle. */
static void chain_wake(struct chain *e)
{
    while (e->waiters != NULL) { /* each round unlinks one */
        struct rop *op = e->waiters;
        e->waiters = op->park_next;
        op->park_next = NULL;
        op->parked_on = NULL;
        op->retry = true;
        resp_conn_pend(op->c);
    }
}

/* Takes op off the waiters of the entry it is parked on (its connection closes). */
void resp_chain_unpark(struct rop *op)
{
    struct chain *e = op->parked_on;
    if (e == NULL) {
        return;
    }
    struct rop **pp = &e->waiters;
    while (*pp != op) { /* op is on this list: the loop ends on it */
        CC_ASSERT(*pp != NULL);
        pp = &(*pp)->park_next;
    }
    *pp = op->park_next;
    op->park_next = NULL;
    op->parked_on = NULL;
}

/* Takes e out of the table: new readers go to the store. Freed once no op holds it. */
static void chain_unlink(struct resp_server *s, struct chain *e)
{
    CC_ASSERT(e->linked);
    chain_wake(e);
    struct chain **pp = &s->chains[e->hash % RESP_CHAIN_BUCKETS];
    while (*pp != e) { /* e is in this bucket: the loop ends on it */
        CC_ASSERT(*pp != NULL);
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    e->hnext = NULL;
    e->linked = false;
    if (e->refs == 0) {
        resp_chain_free(e);
    }
}

void resp_chain_invalidate(struct resp_server *s, const uint8_t *key, uint32_t len)
{
    struct chain *e = resp_chain_find(s, key, len);
    if (e != NULL) {
        chain_unlink(s, e);
    }
}

/* Records the state op's txn will leave key in, for the next RMW on it. */
int resp_chain_hold(struct resp_server *s, struct holds *h, const struct xkey *xk)
{
    struct chain *e = resp_chain_find(s, xk->key, xk->key_len);
    const bool opaque = xk->cur_exists && xk->cur_len > RESP_CHAIN_VALUE_BYTES_MAX;
    uint8_t *val = xk->cur_exists && !opaque ? resp_dup_bytes(xk->cur, xk->cur_len) : NULL;
    if (xk->cur_exists && !opaque && val == NULL) {
        return RESP_SERVER_ENOMEM;
    }
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        uint8_t *key = resp_dup_bytes(xk->key, xk->key_len);
        if (e == NULL || key == NULL) {
            free(e);
            free(key);
            free(val);
            return RESP_SERVER_ENOMEM;
        }
        e->key = key;
        e->key_len = xk->key_len;
        e->hash = chain_hash(key, xk->key_len);
        e->hnext = s->chains[e->hash % RESP_CHAIN_BUCKETS];
        s->chains[e->hash % RESP_CHAIN_BUCKETS] = e;
        e->linked = true;
    }
    free(e->val);
    e->val = val;
    e->val_len = xk->cur_exists && !opaque ? xk->cur_len : 0;
    e->opaque = opaque;
    e->exists = xk->cur_exists;
    e->lease = xk->cur_lease;
    e->refs++;
    h->held[h->n_held++] = e;
    return 0;
}

/* The txn of op applied (ok) or not: drop its links; a failed link poisons the chain. */
void resp_chain_release(struct resp_server *s, struct holds *h, bool ok)
{
    for (uint32_t i = 0; i < h->n_held; i++) {
        struct chain *e = h->held[i];
        CC_ASSERT(e->refs > 0);
        e->refs--;
        if (e->linked && (!ok || e->refs == 0)) {
            chain_unlink(s, e); /* frees it when refs reached 0 */
        } else if (!e->linked && e->refs == 0) {
            resp_chain_free(e);
        }
    }
    free(h->held);
    h->held = NULL;
    h->n_held = 0;
}

/* ==== views =================================================================================== */

void resp_xv_init(struct xview *v, struct resp_server *s, bool overlay, bool use_chain)
{
    memset(v, 0, sizeof(*v));
    v->s = s;
    v->kv = node_kv(s->node);
    v->overlay = overlay;
    v->use_chain = use_chain;
}

void resp_xv_free(struct xview *v)
{
    if (v->tmp_live) {
        kv_range_resp_free(&v->tmp);
    }
    for (uint32_t i = 0; i < v->n; i++) {
        struct xkey *k = &v->k[i];
        if (k->cur != k->base) {
            free(k->cur);
        }
        free(k->base);
        free(k->key);
    }
    free(v->k);
    memset(v, 0, sizeof(*v));
}

int resp_xv_fail(struct xview *v, int err)
{
    if (v->err == 0) {
        v->err = err;
    }
    return v->err;
}

/* Reads one key from the local store into kvs (a kv_range answer) or reports missing. */
int resp_store_get(const struct kv *kv, const uint8_t *key, uint32_t len,
                   struct kv_range_resp *resp, bool *exists)
{
    *exists = false;
    memset(resp, 0, sizeof(*resp));
    if (resp_key_impossible(key, len)) {
        return 0;
    }
    const struct kv_range_req r = {.key = key, .key_len = len};
    const int rv = kv_range(kv, &r, resp);
    if (rv != 0) {
        return rv == KV_ENOMEM ? RESP_SERVER_ENOMEM : rv;
    }
    *exists = resp->n_kvs > 0;
    return 0;
}

struct xkey *resp_xv_find(struct xview *v, const uint8_t *key, uint32_t len)
{
    for (uint32_t i = 0; i < v->n; i++) {
        if (resp_bytes_eq(v->k[i].key, v->k[i].key_len, key, len)) {
            return &v->k[i];
        }
    }
    return NULL;
}

static struct xkey *xv_slot(struct xview *v, const uint8_t *key, uint32_t len)
{
    struct xkey *k = resp_xv_find(v, key, len);
    if (k != NULL) {
        return k;
    }
    if (v->n >= RESP_TXN_KEYS_MAX) {
        resp_xv_fail(v, RESP__EKEYS);
        return NULL;
    }
    if (v->n == v->cap) {
        const uint32_t ncap = v->cap > 0 ? v->cap * 2 : 8;
        struct xkey *nk = realloc(v->k, (size_t)ncap * sizeof(*nk));
        if (nk == NULL) {
            resp_xv_fail(v, RESP_SERVER_ENOMEM);
            return NULL;
        }
        v->k = nk;
        v->cap = ncap;
    }
    uint8_t *kc = resp_dup_bytes(key, len);
    if (kc == NULL) {
        resp_xv_fail(v, RESP_SERVER_ENOMEM);
        return NULL;
    }
    k = &v->k[v->n++];
    memset(k, 0, sizeof(*k));
    k->key = kc;
    k->key_len = len;
    return k;
}

/* Fills k's original state from the chain (an in-flight txn's result) or the store. */
static int xv_load(struct xview *v, struct xkey *k)
{
    struct chain *e = v->use_chain ? resp_chain_find(v->s, k->key, k->key_len) : NULL;
    if (e != NULL && e->opaque) {
        v->wait_on = e;
        return resp_xv_fail(v, RESP__EWAIT);
    }
    if (e != NULL) {
        k->from_chain = true;
        k->base_exists = e->exists;
        k->base_lease = e->lease;
        if (e->exists) {
            k->base = resp_dup_bytes(e->val, e->val_len);
            if (k->base == NULL) {
                return resp_xv_fail(v, RESP_SERVER_ENOMEM);
            }
            k->base_len = e->val_len;
        }
    } else {
        struct kv_range_resp r;
        bool exists = false;
        const int rv = resp_store_get(v->kv, k->key, k->key_len, &r, &exists);
        if (rv != 0) {
            return resp_xv_fail(v, rv == RESP_SERVER_ENOMEM ? rv : RESP_SERVER_ENOMEM);
        }
        if (exists) {
            k->base = resp_dup_bytes(r.kvs[0].value, r.kvs[0].value_len);
            k->base_len = r.kvs[0].value_len;
            k->base_mod = r.kvs[0].mod_revision;
            k->base_lease = r.kvs[0].lease;
            k->base_exists = true;
        }
        kv_range_resp_free(&r);
        if (exists && k->base == NULL) {
            return resp_xv_fail(v, RESP_SERVER_ENOMEM);
        }
    }
    k->loaded = true;
    k->cur_exists = k->base_exists;
    k->cur = k->base;
    k->cur_len = k->base_len;
    k->cur_lease = k->base_lease;
    return 0;
}

int resp_xv_get(struct xview *v, const void *key_p, size_t len, struct xval *out)
{
    const uint8_t *key = key_p;
    memset(out, 0, sizeof(*out));
    if (v->err != 0) {
        return v->err;
    }
    if (resp_key_impossible(key, len)) {
        return 0; /* such a key cannot exist; a write of it fails on its own */
    }
    if (!v->overlay) {
        if (v->tmp_live) {
            kv_range_resp_free(&v->tmp);
            v->tmp_live = false;
        }
        bool exists = false;
        const int rv = resp_store_get(v->kv, key, (uint32_t)len, &v->tmp, &exists);
        if (rv != 0) {
            return resp_xv_fail(v, RESP_SERVER_ENOMEM);
        }
        v->tmp_live = true;
        if (exists) {
            const struct kv_kv *kv = &v->tmp.kvs[0];
            *out = (struct xval){.exists = true,
                                 .ptr = kv->value,
                                 .len = kv->value_len,
                                 .lease = kv->lease,
                                 .mod = kv->mod_revision};
        }
        return 0;
    }
    struct xkey *k = xv_slot(v, key, (uint32_t)len);
    if (k == NULL) {
        return v->err;
    }
    if (!k->loaded && !k->dirty) {
        if (xv_load(v, k) != 0) {
            return v->err;
        }
        k->read = true;
    }
    if (k->cur_exists) {
        *out =
            (struct xval){.exists = true, .ptr = k->cur, .len = k->cur_len, .lease = k->cur_lease};
    }
    return 0;
}

/* Writes (exists) or deletes key in the overlay. The caller checked the key and value
 * limits first; only running out of keys or memory fails here (and voids the run). */
int resp_xv_set(struct xview *v, const void *key_p, size_t len, bool exists, const void *val,
                size_t val_len, int64_t lease)
{
    CC_ASSERT(v->overlay);
    CC_ASSERT(!resp_key_impossible(key_p, len));
    CC_ASSERT(val_len <= KV_VALUE_BYTES_MAX);
    if (v->err != 0) {
        return v->err;
    }
    struct xkey *k = xv_slot(v, key_p, (uint32_t)len);
    if (k == NULL) {
        return v->err;
    }
    uint8_t *nv = NULL;
    if (exists) {
        nv = resp_dup_bytes(val, val_len);
        if (nv == NULL) {
            return resp_xv_fail(v, RESP_SERVER_ENOMEM);
        }
    }
    if (k->cur != k->base) {
        free(k->cur);
    }
    k->cur = nv;
    k->cur_len = exists ? (uint32_t)val_len : 0;
    k->cur_exists = exists;
    k->cur_lease = exists ? lease : 0;
    k->dirty = true;
    return 0;
}
