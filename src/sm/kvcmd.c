/* kvcmd.c -- binary codec for KV commands and results (format in kvcmd.h).
 *
 * Invariants:
 *   - Every encoder validates before it writes, so anything it produces decodes; the
 *     decoder re-runs the same checks because bytes in the log may come from anywhere
 *     (an old client, a bug, a fuzzer), and a replica must reject them identically.
 *   - Encoding is two passes over one writer: the first counts, the second writes into
 *     an exactly sized buffer. Both passes run the same code, so they cannot disagree
 *     (asserted).
 *   - Decoding never reads past n, never allocates for commands, and for results
 *     allocates only after checking that the claimed counts fit the bytes left.
 *   - Nothing here recurses: a TXN holds PUT/DELETE/RANGE ops only, never another TXN.
 *
 * Sections: byte writer | byte reader | spans | checks | command encode |
 * command decode | result encode | result decode.
 */
#include "sm/kvcmd.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "raft/raft.h"

_Static_assert(KV_CMD_BYTES_MAX + KV_CMD_ENVELOPE_BYTES <= RAFT_ENTRY_BYTES_MAX,
               "a command plus the host envelope must fit one Raft entry");
_Static_assert(KVCMD_PUT_HEADER_BYTES <= KV_PUT_OVERHEAD_BYTES,
               "KV_VALUE_BYTES_MAX leaves room for the PUT header");

/* Flag bits; a decoder rejects any other bit. */
#define PUT_F_PREV_KV      0x01u
#define PUT_F_IGNORE_VALUE 0x02u
#define PUT_F_IGNORE_LEASE 0x04u
#define DEL_F_PREFIX       0x01u
#define DEL_F_PREV_KV      0x02u
#define RNG_F_PREFIX       0x01u
#define RNG_F_KEYS_ONLY    0x02u
#define RNG_F_COUNT_ONLY   0x04u
#define RES_F_SUCCEEDED    0x01u
#define RES_F_EVENTS       0x02u

/* Smallest encodings, used to bound counts claimed by a result before allocating. */
#define KV_KV_WIRE_MIN       40u /* two empty byte strings + four i64 */
#define KV_RESPONSE_WIRE_MIN 2u  /* type + PUT has_prev = 0 */
#define KV_EVENT_WIRE_MIN    (2u + KV_KV_WIRE_MIN)

/* ==== byte writer ======================================================== */

struct wr {
    uint8_t *p; /* NULL: only count */
    size_t n;
};

static void put_u8(struct wr *w, uint8_t v)
{
    if (w->p != NULL) {
        w->p[w->n] = v;
    }
    w->n += 1;
}

static void put_le(struct wr *w, uint64_t v, unsigned n_bytes)
{
    if (w->p != NULL) {
        for (unsigned i = 0; i < n_bytes; i++) {
            w->p[w->n + i] = (uint8_t)(v >> (8 * i));
        }
    }
    w->n += n_bytes;
}

static void put_u16(struct wr *w, uint16_t v)
{
    put_le(w, v, 2);
}

static void put_u32(struct wr *w, uint32_t v)
{
    put_le(w, v, 4);
}

static void put_i64(struct wr *w, int64_t v)
{
    put_le(w, (uint64_t)v, 8);
}

static void put_bytes(struct wr *w, const uint8_t *b, uint32_t len)
{
    put_u32(w, len);
    if (w->p != NULL && len > 0) {
        memcpy(w->p + w->n, b, len);
    }
    w->n += len;
}

/* ==== byte reader ======================================================== */

struct rd {
    const uint8_t *p;
    size_t n;
    size_t off;
    bool oom; /* result decode: an allocation failed (not the input's fault) */
};

static size_t rd_left(const struct rd *r)
{
    return r->n - r->off;
}

static bool get_le(struct rd *r, unsigned n_bytes, uint64_t *v)
{
    if (rd_left(r) < n_bytes) {
        return false;
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < n_bytes; i++) {
        x |= (uint64_t)r->p[r->off + i] << (8 * i);
    }
    r->off += n_bytes;
    *v = x;
    return true;
}

static bool get_u8(struct rd *r, uint8_t *v)
{
    uint64_t x;
    if (!get_le(r, 1, &x)) {
        return false;
    }
    *v = (uint8_t)x;
    return true;
}

static bool get_u16(struct rd *r, uint16_t *v)
{
    uint64_t x;
    if (!get_le(r, 2, &x)) {
        return false;
    }
    *v = (uint16_t)x;
    return true;
}

static bool get_u32(struct rd *r, uint32_t *v)
{
    uint64_t x;
    if (!get_le(r, 4, &x)) {
        return false;
    }
    *v = (uint32_t)x;
    return true;
}

static bool get_i64(struct rd *r, int64_t *v)
{
    uint64_t x;
    if (!get_le(r, 8, &x)) {
        return false;
    }
    *v = (int64_t)x;
    return true;
}

/* Points *b into the buffer (NULL for an empty string). */
static bool get_bytes(struct rd *r, const uint8_t **b, uint32_t *len)
{
    uint32_t l;
    if (!get_u32(r, &l) || rd_left(r) < l) {
        return false;
    }
    *b = l > 0 ? r->p + r->off : NULL;
    *len = l;
    r->off += l;
    return true;
}

/* Flags byte that may only use the bits in mask. */
static bool get_flags(struct rd *r, uint8_t mask, uint8_t *v)
{
    return get_u8(r, v) && (*v & ~mask) == 0;
}

/* A strict boolean: 0 or 1. */
static bool get_bool(struct rd *r, bool *v)
{
    uint8_t b;
    if (!get_u8(r, &b) || b > 1) {
        return false;
    }
    *v = b == 1;
    return true;
}

/* ==== spans ============================================================== */

int kvcmd_key_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    uint32_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return (a_len > b_len) - (a_len < b_len);
}

void kvcmd_span_make(const uint8_t *key, uint32_t key_len, const uint8_t *range_end,
                     uint32_t range_end_len, bool prefix, struct kvcmd_span *out)
{
    out->key = key;
    out->key_len = key_len;
    out->end = NULL;
    out->end_len = 0;
    if (prefix) {
        out->kind = KVCMD_SPAN_PREFIX;
    } else if (range_end_len == 0) {
        out->kind = KVCMD_SPAN_KEY;
    } else if (range_end_len == 1 && range_end[0] == 0) {
        out->kind = KVCMD_SPAN_FROM; /* etcd: range_end "\0" means "to the end" */
    } else {
        out->kind = KVCMD_SPAN_RANGE;
        out->end = range_end;
        out->end_len = range_end_len;
    }
}

bool kvcmd_span_past(const struct kvcmd_span *s, const uint8_t *k, uint32_t k_len)
{
    switch (s->kind) {
    case KVCMD_SPAN_KEY:
        return kvcmd_key_cmp(k, k_len, s->key, s->key_len) > 0;
    case KVCMD_SPAN_RANGE:
        return kvcmd_key_cmp(k, k_len, s->end, s->end_len) >= 0;
    case KVCMD_SPAN_FROM:
        return false;
    case KVCMD_SPAN_PREFIX:
        return k_len < s->key_len || (s->key_len > 0 && memcmp(k, s->key, s->key_len) != 0);
    default:
        CC_UNREACHABLE();
    }
}

bool kvcmd_span_contains(const struct kvcmd_span *s, const uint8_t *k, uint32_t k_len)
{
    return kvcmd_key_cmp(k, k_len, s->key, s->key_len) >= 0 && !kvcmd_span_past(s, k, k_len);
}

/* ==== checks ============================================================= */

static int check_bytes_ptr(const uint8_t *b, uint32_t len)
{
    return (len > 0 && b == NULL) ? KV_EINVAL : 0;
}

static int check_key(const uint8_t *key, uint32_t key_len)
{
    if (key_len == 0) {
        return KV_EKEYEMPTY;
    }
    if (key_len > KV_KEY_BYTES_MAX) {
        return KV_EKEYTOOBIG;
    }
    return check_bytes_ptr(key, key_len);
}

static int check_span(const uint8_t *key, uint32_t key_len, const uint8_t *range_end,
                      uint32_t range_end_len, bool prefix)
{
    if (prefix && range_end_len > 0) {
        return KV_EINVAL; /* a prefix defines the end itself */
    }
    if (!prefix && key_len == 0) {
        return KV_EKEYEMPTY;
    }
    if (key_len > KV_KEY_BYTES_MAX || range_end_len > KV_KEY_BYTES_MAX) {
        return KV_EKEYTOOBIG;
    }
    int rv = check_bytes_ptr(key, key_len);
    return rv != 0 ? rv : check_bytes_ptr(range_end, range_end_len);
}

int kvcmd_check_put(const struct kv_put_req *req)
{
    int rv = check_key(req->key, req->key_len);
    if (rv != 0) {
        return rv;
    }
    if (req->value_len > KV_VALUE_BYTES_MAX) {
        return KV_EVALUETOOBIG;
    }
    if (check_bytes_ptr(req->value, req->value_len) != 0 || req->lease < 0) {
        return KV_EINVAL;
    }
    /* etcd: "value is provided" / "lease is provided" together with ignore_*. */
    if ((req->ignore_value && req->value_len > 0) || (req->ignore_lease && req->lease != 0)) {
        return KV_EINVAL;
    }
    return 0;
}

int kvcmd_check_delete(const struct kv_delete_req *req)
{
    return check_span(req->key, req->key_len, req->range_end, req->range_end_len, req->prefix);
}

int kvcmd_check_range(const struct kv_range_req *req)
{
    int rv = check_span(req->key, req->key_len, req->range_end, req->range_end_len, req->prefix);
    if (rv != 0) {
        return rv;
    }
    return req->limit < 0 ? KV_EINVAL : 0;
}

static int check_compare(const struct kv_compare *c)
{
    if (c->target < KV_CMP_VERSION || c->target > KV_CMP_LEASE || c->op < KV_CMP_EQUAL ||
        c->op > KV_CMP_GREATER) {
        return KV_EINVAL;
    }
    int rv = check_key(c->key, c->key_len);
    if (rv != 0) {
        return rv;
    }
    if (c->target == KV_CMP_VALUE) {
        if (c->value_len > KV_VALUE_BYTES_MAX) {
            return KV_EVALUETOOBIG;
        }
        return check_bytes_ptr(c->value, c->value_len);
    }
    return 0;
}

static int check_op(const struct kv_op *op)
{
    switch (op->type) {
    case KV_OP_PUT:
        return kvcmd_check_put(&op->put);
    case KV_OP_DELETE:
        return kvcmd_check_delete(&op->del);
    case KV_OP_RANGE:
        return kvcmd_check_range(&op->range);
    default:
        return KV_EINVAL;
    }
}

static int put_key_cmp(const struct kv_op *ops, uint16_t a, uint16_t b)
{
    return kvcmd_key_cmp(ops[a].put.key, ops[a].put.key_len, ops[b].put.key, ops[b].put.key_len);
}

/* Sorts idx[0, n) (indexes of PUT ops) by key: a merge sort, stable, O(n log n). */
static void sort_puts(const struct kv_op *ops, uint16_t *idx, uint16_t *tmp, uint32_t n)
{
    for (uint32_t width = 1; width < n; width *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = put_key_cmp(ops, idx[j], idx[i]) < 0 ? idx[j++] : idx[i++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof(*idx));
    }
}

/* etcd's checkIntervals: within one branch no key may be put twice, nor put and
 * deleted. Overlapping deletes are fine. This also gives the store the invariant that a
 * key changes at most once per revision. The puts are sorted by key (equal neighbours
 * are a twice-put key), and each delete's span, contiguous in key order, holds a put
 * key iff the first put at or after the span's start lies in it: O(ops log ops)
 * compares, where the pairwise check cost O(ops^2) on every shared RESP write batch. */
static int check_branch_dups(const struct kv_op *ops, uint32_t n_ops)
{
    CC_ASSERT(n_ops <= KV_TXN_OPS_MAX);
    uint16_t idx[KV_TXN_OPS_MAX], tmp[KV_TXN_OPS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < n_ops; i++)
        if (ops[i].type == KV_OP_PUT)
            idx[n++] = (uint16_t)i;
    if (n == 0)
        return 0;
    sort_puts(ops, idx, tmp, n);
    for (uint32_t i = 1; i < n; i++)
        if (put_key_cmp(ops, idx[i - 1], idx[i]) == 0)
            return KV_ETXNDUPKEY;
    for (uint32_t i = 0; i < n_ops; i++) {
        if (ops[i].type != KV_OP_DELETE)
            continue;
        const struct kv_delete_req *d = &ops[i].del;
        struct kvcmd_span s;
        kvcmd_span_make(d->key, d->key_len, d->range_end, d->range_end_len, d->prefix, &s);
        uint32_t lo = 0, hi = n; /* the first sorted put with key >= s.key */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            const struct kv_put_req *p = &ops[idx[mid]].put;
            if (kvcmd_key_cmp(p->key, p->key_len, s.key, s.key_len) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n && !kvcmd_span_past(&s, ops[idx[lo]].put.key, ops[idx[lo]].put.key_len))
            return KV_ETXNDUPKEY;
    }
    return 0;
}

static int check_branch(const struct kv_op *ops, uint32_t n_ops)
{
    if (n_ops > KV_TXN_OPS_MAX) {
        return KV_ETXNOPS;
    }
    if (n_ops > 0 && ops == NULL) {
        return KV_EINVAL;
    }
    for (uint32_t i = 0; i < n_ops; i++) {
        int rv = check_op(&ops[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return check_branch_dups(ops, n_ops);
}

int kvcmd_check_txn(const struct kv_txn_req *req)
{
    if (req->n_compares > KV_TXN_CMP_MAX) {
        return KV_ETXNCMPS;
    }
    if (req->n_success > KV_TXN_OPS_MAX || req->n_failure > KV_TXN_OPS_MAX) {
        return KV_ETXNOPS;
    }
    if (req->n_compares > 0 && req->compares == NULL) {
        return KV_EINVAL;
    }
    for (uint32_t i = 0; i < req->n_compares; i++) {
        int rv = check_compare(&req->compares[i]);
        if (rv != 0) {
            return rv;
        }
    }
    int rv = check_branch(req->success, req->n_success);
    return rv != 0 ? rv : check_branch(req->failure, req->n_failure);
}

int kvcmd_check_compact(int64_t revision)
{
    return revision < 1 ? KV_EINVAL : 0;
}

/* ==== command encode ===================================================== */

static void w_put(struct wr *w, const struct kv_put_req *req)
{
    uint8_t flags = (uint8_t)((req->prev_kv ? PUT_F_PREV_KV : 0) |
                              (req->ignore_value ? PUT_F_IGNORE_VALUE : 0) |
                              (req->ignore_lease ? PUT_F_IGNORE_LEASE : 0));
    put_u8(w, flags);
    put_i64(w, req->lease);
    put_bytes(w, req->key, req->key_len);
    put_bytes(w, req->value, req->value_len);
}

static void w_delete(struct wr *w, const struct kv_delete_req *req)
{
    put_u8(w, (uint8_t)((req->prefix ? DEL_F_PREFIX : 0) | (req->prev_kv ? DEL_F_PREV_KV : 0)));
    put_bytes(w, req->key, req->key_len);
    put_bytes(w, req->range_end, req->range_end_len);
}

static void w_range(struct wr *w, const struct kv_range_req *req)
{
    put_u8(w, (uint8_t)((req->prefix ? RNG_F_PREFIX : 0) | (req->keys_only ? RNG_F_KEYS_ONLY : 0) |
                        (req->count_only ? RNG_F_COUNT_ONLY : 0)));
    put_i64(w, req->limit);
    put_i64(w, req->revision);
    put_bytes(w, req->key, req->key_len);
    put_bytes(w, req->range_end, req->range_end_len);
}

static void w_op(struct wr *w, const struct kv_op *op)
{
    put_u8(w, op->type);
    switch (op->type) {
    case KV_OP_PUT:
        w_put(w, &op->put);
        break;
    case KV_OP_DELETE:
        w_delete(w, &op->del);
        break;
    case KV_OP_RANGE:
        w_range(w, &op->range);
        break;
    default:
        CC_UNREACHABLE(); /* checked before encoding */
    }
}

static void w_txn(struct wr *w, const struct kv_txn_req *req)
{
    put_u16(w, (uint16_t)req->n_compares);
    put_u16(w, (uint16_t)req->n_success);
    put_u16(w, (uint16_t)req->n_failure);
    for (uint32_t i = 0; i < req->n_compares; i++) {
        const struct kv_compare *c = &req->compares[i];
        put_u8(w, c->target);
        put_u8(w, c->op);
        put_bytes(w, c->key, c->key_len);
        if (c->target == KV_CMP_VALUE) {
            put_bytes(w, c->value, c->value_len);
        } else {
            put_i64(w, c->number);
        }
    }
    for (uint32_t i = 0; i < req->n_success; i++) {
        w_op(w, &req->success[i]);
    }
    for (uint32_t i = 0; i < req->n_failure; i++) {
        w_op(w, &req->failure[i]);
    }
}

/* Writes the command header and body; req points at the request the type names (for
 * COMPACT, at the int64_t revision). Runs once to count and once for real. */
static void w_cmd(struct wr *w, uint8_t type, const void *req)
{
    put_u8(w, KVCMD_FORMAT_VERSION);
    put_u8(w, type);
    switch (type) {
    case KV_CMD_PUT:
        w_put(w, req);
        break;
    case KV_CMD_DELETE_RANGE:
        w_delete(w, req);
        break;
    case KV_CMD_RANGE:
        w_range(w, req);
        break;
    case KV_CMD_TXN:
        w_txn(w, req);
        break;
    case KV_CMD_COMPACT:
        put_i64(w, *(const int64_t *)req);
        break;
    default:
        CC_UNREACHABLE();
    }
}

static int encode_cmd(uint8_t type, const void *req, uint8_t **buf, size_t *n)
{
    struct wr w = {NULL, 0};
    w_cmd(&w, type, req);
    size_t size = w.n;
    if (size > KV_CMD_BYTES_MAX) {
        return KV_ECMDTOOBIG;
    }
    uint8_t *p = malloc(size);
    if (p == NULL) {
        return KV_ENOMEM;
    }
    w = (struct wr){p, 0};
    w_cmd(&w, type, req);
    CC_ASSERT(w.n == size);
    *buf = p;
    *n = size;
    return 0;
}

int kvcmd_encode_put(const struct kv_put_req *req, uint8_t **buf, size_t *n)
{
    int rv = kvcmd_check_put(req);
    return rv != 0 ? rv : encode_cmd(KV_CMD_PUT, req, buf, n);
}

int kvcmd_encode_delete(const struct kv_delete_req *req, uint8_t **buf, size_t *n)
{
    int rv = kvcmd_check_delete(req);
    return rv != 0 ? rv : encode_cmd(KV_CMD_DELETE_RANGE, req, buf, n);
}

int kvcmd_encode_range(const struct kv_range_req *req, uint8_t **buf, size_t *n)
{
    int rv = kvcmd_check_range(req);
    return rv != 0 ? rv : encode_cmd(KV_CMD_RANGE, req, buf, n);
}

int kvcmd_encode_txn(const struct kv_txn_req *req, uint8_t **buf, size_t *n)
{
    int rv = kvcmd_check_txn(req);
    return rv != 0 ? rv : encode_cmd(KV_CMD_TXN, req, buf, n);
}

int kvcmd_encode_compact(int64_t revision, uint8_t **buf, size_t *n)
{
    int rv = kvcmd_check_compact(revision);
    return rv != 0 ? rv : encode_cmd(KV_CMD_COMPACT, &revision, buf, n);
}

/* ==== command decode ===================================================== */

static bool r_put(struct rd *r, struct kv_put_req *req)
{
    uint8_t f;
    if (!get_flags(r, PUT_F_PREV_KV | PUT_F_IGNORE_VALUE | PUT_F_IGNORE_LEASE, &f) ||
        !get_i64(r, &req->lease) || !get_bytes(r, &req->key, &req->key_len) ||
        !get_bytes(r, &req->value, &req->value_len)) {
        return false;
    }
    req->prev_kv = (f & PUT_F_PREV_KV) != 0;
    req->ignore_value = (f & PUT_F_IGNORE_VALUE) != 0;
    req->ignore_lease = (f & PUT_F_IGNORE_LEASE) != 0;
    return true;
}

static bool r_delete(struct rd *r, struct kv_delete_req *req)
{
    uint8_t f;
    if (!get_flags(r, DEL_F_PREFIX | DEL_F_PREV_KV, &f) ||
        !get_bytes(r, &req->key, &req->key_len) ||
        !get_bytes(r, &req->range_end, &req->range_end_len)) {
        return false;
    }
    req->prefix = (f & DEL_F_PREFIX) != 0;
    req->prev_kv = (f & DEL_F_PREV_KV) != 0;
    return true;
}

static bool r_range(struct rd *r, struct kv_range_req *req)
{
    uint8_t f;
    if (!get_flags(r, RNG_F_PREFIX | RNG_F_KEYS_ONLY | RNG_F_COUNT_ONLY, &f) ||
        !get_i64(r, &req->limit) || !get_i64(r, &req->revision) ||
        !get_bytes(r, &req->key, &req->key_len) ||
        !get_bytes(r, &req->range_end, &req->range_end_len)) {
        return false;
    }
    req->prefix = (f & RNG_F_PREFIX) != 0;
    req->keys_only = (f & RNG_F_KEYS_ONLY) != 0;
    req->count_only = (f & RNG_F_COUNT_ONLY) != 0;
    req->skip_count = false; /* a local read option: never in the log */
    return true;
}

static bool r_op(struct rd *r, struct kv_op *op)
{
    memset(op, 0, sizeof *op);
    if (!get_u8(r, &op->type)) {
        return false;
    }
    switch (op->type) {
    case KV_OP_PUT:
        return r_put(r, &op->put);
    case KV_OP_DELETE:
        return r_delete(r, &op->del);
    case KV_OP_RANGE:
        return r_range(r, &op->range);
    default:
        return false;
    }
}

static bool r_compare(struct rd *r, struct kv_compare *c)
{
    memset(c, 0, sizeof *c);
    if (!get_u8(r, &c->target) || !get_u8(r, &c->op) || !get_bytes(r, &c->key, &c->key_len)) {
        return false;
    }
    if (c->target < KV_CMP_VERSION || c->target > KV_CMP_LEASE || c->op < KV_CMP_EQUAL ||
        c->op > KV_CMP_GREATER) {
        return false;
    }
    if (c->target == KV_CMP_VALUE) {
        return get_bytes(r, &c->value, &c->value_len);
    }
    return get_i64(r, &c->number);
}

/* Parses a TXN body. Counts beyond the limits are parsed into a scratch slot and
 * reported after the whole command proved well-formed, so a well-formed command that
 * is merely too big gets its limit's error, not KV_EMALFORMED. */
static bool r_txn(struct rd *r, struct kvcmd *cmd, uint16_t *n_cmp, uint16_t *n_succ,
                  uint16_t *n_fail)
{
    struct kv_compare cmp_scratch;
    struct kv_op op_scratch;
    if (!get_u16(r, n_cmp) || !get_u16(r, n_succ) || !get_u16(r, n_fail)) {
        return false;
    }
    for (uint32_t i = 0; i < *n_cmp; i++) {
        if (!r_compare(r, i < KV_TXN_CMP_MAX ? &cmd->cmp_buf[i] : &cmp_scratch)) {
            return false;
        }
    }
    /* success ops fill op_buf from the front, failure ops from the middle */
    for (uint32_t i = 0; i < *n_succ; i++) {
        if (!r_op(r, i < KV_TXN_OPS_MAX ? &cmd->op_buf[i] : &op_scratch)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < *n_fail; i++) {
        if (!r_op(r, i < KV_TXN_OPS_MAX ? &cmd->op_buf[KV_TXN_OPS_MAX + i] : &op_scratch)) {
            return false;
        }
    }
    cmd->txn.compares = cmd->cmp_buf;
    cmd->txn.n_compares = *n_cmp;
    cmd->txn.success = cmd->op_buf;
    cmd->txn.n_success = *n_succ;
    cmd->txn.failure = cmd->op_buf + KV_TXN_OPS_MAX;
    cmd->txn.n_failure = *n_fail;
    return true;
}

int kvcmd_decode(const uint8_t *buf, size_t n, struct kvcmd *out)
{
    if (n > KV_CMD_BYTES_MAX) {
        return KV_ECMDTOOBIG;
    }
    struct rd r = {buf, buf != NULL ? n : 0, 0, false};
    uint8_t version, type;
    if (!get_u8(&r, &version) || !get_u8(&r, &type)) {
        return KV_EMALFORMED;
    }
    if (version != KVCMD_FORMAT_VERSION) {
        return KV_EFORMAT;
    }
    out->type = type;
    uint16_t n_cmp = 0, n_succ = 0, n_fail = 0;
    bool ok;
    /* First the shape: every byte accounted for. */
    switch (type) {
    case KV_CMD_PUT:
        memset(&out->put, 0, sizeof out->put);
        ok = r_put(&r, &out->put);
        break;
    case KV_CMD_DELETE_RANGE:
        memset(&out->del, 0, sizeof out->del);
        ok = r_delete(&r, &out->del);
        break;
    case KV_CMD_RANGE:
        memset(&out->range, 0, sizeof out->range);
        ok = r_range(&r, &out->range);
        break;
    case KV_CMD_TXN:
        memset(&out->txn, 0, sizeof out->txn);
        ok = r_txn(&r, out, &n_cmp, &n_succ, &n_fail);
        break;
    case KV_CMD_COMPACT:
        ok = get_i64(&r, &out->compact_revision);
        break;
    default:
        ok = false;
        break;
    }
    if (!ok || rd_left(&r) != 0) {
        return KV_EMALFORMED;
    }
    /* Then the meaning: the same checks the encoders ran. */
    switch (type) {
    case KV_CMD_PUT:
        return kvcmd_check_put(&out->put);
    case KV_CMD_DELETE_RANGE:
        return kvcmd_check_delete(&out->del);
    case KV_CMD_RANGE:
        return kvcmd_check_range(&out->range);
    case KV_CMD_TXN:
        return kvcmd_check_txn(&out->txn); /* counts first: arrays are capped */
    case KV_CMD_COMPACT:
        return kvcmd_check_compact(out->compact_revision);
    default:
        CC_UNREACHABLE();
    }
}

/* ==== result encode ====================================================== */

static void w_kv(struct wr *w, const struct kv_kv *kv)
{
    put_bytes(w, kv->key, kv->key_len);
    put_bytes(w, kv->value, kv->value_len);
    put_i64(w, kv->create_revision);
    put_i64(w, kv->mod_revision);
    put_i64(w, kv->version);
    put_i64(w, kv->lease);
}

static void w_response(struct wr *w, const struct kv_response *resp)
{
    put_u8(w, resp->type);
    switch (resp->type) {
    case KV_OP_PUT:
        put_u8(w, resp->put.has_prev ? 1 : 0);
        if (resp->put.has_prev) {
            w_kv(w, &resp->put.prev_kv);
        }
        break;
    case KV_OP_DELETE:
        put_i64(w, resp->del.n_deleted);
        put_u32(w, resp->del.n_prev_kvs);
        for (uint32_t i = 0; i < resp->del.n_prev_kvs; i++) {
            w_kv(w, &resp->del.prev_kvs[i]);
        }
        break;
    case KV_OP_RANGE:
        put_i64(w, resp->range.count);
        put_u8(w, resp->range.more ? 1 : 0);
        put_u32(w, resp->range.n_kvs);
        for (uint32_t i = 0; i < resp->range.n_kvs; i++) {
            w_kv(w, &resp->range.kvs[i]);
        }
        break;
    default:
        CC_UNREACHABLE();
    }
}

static void w_result(struct wr *w, const struct kv_result *res, unsigned flags)
{
    bool events = (flags & KVCMD_RESULT_EVENTS) != 0;
    put_u8(w, KVCMD_RESULT_VERSION);
    put_u8(w, res->type);
    put_u32(w, (uint32_t)res->err);
    put_i64(w, res->revision);
    put_u8(w, (uint8_t)((res->succeeded ? RES_F_SUCCEEDED : 0) | (events ? RES_F_EVENTS : 0)));
    put_u32(w, res->n_responses);
    for (uint32_t i = 0; i < res->n_responses; i++) {
        w_response(w, &res->responses[i]);
    }
    if (events) {
        put_u32(w, res->n_events);
        for (uint32_t i = 0; i < res->n_events; i++) {
            const struct kv_event *ev = &res->events[i];
            put_u8(w, ev->type);
            w_kv(w, &ev->kv);
            put_u8(w, ev->has_prev ? 1 : 0);
            if (ev->has_prev) {
                w_kv(w, &ev->prev_kv);
            }
        }
    }
}

int kvcmd_encode_result(const struct kv_result *res, unsigned flags, uint8_t **buf, size_t *n)
{
    if ((flags & ~KVCMD_RESULT_EVENTS) != 0) {
        return KV_EINVAL;
    }
    for (uint32_t i = 0; i < res->n_responses; i++) {
        uint8_t t = res->responses[i].type;
        if (t != KV_OP_PUT && t != KV_OP_DELETE && t != KV_OP_RANGE) {
            return KV_EINVAL;
        }
    }
    struct wr w = {NULL, 0};
    w_result(&w, res, flags);
    size_t size = w.n;
    uint8_t *p = malloc(size);
    if (p == NULL) {
        return KV_ENOMEM;
    }
    w = (struct wr){p, 0};
    w_result(&w, res, flags);
    CC_ASSERT(w.n == size);
    *buf = p;
    *n = size;
    return 0;
}

/* ==== result decode ====================================================== */

static bool r_kv(struct rd *r, struct kv_kv *kv)
{
    return get_bytes(r, &kv->key, &kv->key_len) && get_bytes(r, &kv->value, &kv->value_len) &&
           get_i64(r, &kv->create_revision) && get_i64(r, &kv->mod_revision) &&
           get_i64(r, &kv->version) && get_i64(r, &kv->lease);
}

/* Reads a u32 count of elements that each take at least min_wire bytes, refusing any
 * count the remaining bytes cannot hold, then allocates the array. */
static bool r_array(struct rd *r, struct kv_arena *a, size_t elem_size, size_t min_wire,
                    uint32_t *count, void **arr)
{
    if (!get_u32(r, count) || *count > rd_left(r) / min_wire) {
        return false;
    }
    *arr = NULL;
    if (*count == 0) {
        return true;
    }
    *arr = kv_arena_alloc(a, (size_t)*count * elem_size);
    r->oom = *arr == NULL;
    return *arr != NULL;
}

static bool r_response(struct rd *r, struct kv_arena *a, struct kv_response *resp)
{
    void *arr;
    memset(resp, 0, sizeof *resp);
    if (!get_u8(r, &resp->type)) {
        return false;
    }
    switch (resp->type) {
    case KV_OP_PUT:
        if (!get_bool(r, &resp->put.has_prev)) {
            return false;
        }
        return !resp->put.has_prev || r_kv(r, &resp->put.prev_kv);
    case KV_OP_DELETE:
        if (!get_i64(r, &resp->del.n_deleted) ||
            !r_array(r, a, sizeof(struct kv_kv), KV_KV_WIRE_MIN, &resp->del.n_prev_kvs, &arr)) {
            return false;
        }
        resp->del.prev_kvs = arr;
        for (uint32_t i = 0; i < resp->del.n_prev_kvs; i++) {
            if (!r_kv(r, &resp->del.prev_kvs[i])) {
                return false;
            }
        }
        return true;
    case KV_OP_RANGE:
        if (!get_i64(r, &resp->range.count) || !get_bool(r, &resp->range.more) ||
            !r_array(r, a, sizeof(struct kv_kv), KV_KV_WIRE_MIN, &resp->range.n_kvs, &arr)) {
            return false;
        }
        resp->range.kvs = arr;
        for (uint32_t i = 0; i < resp->range.n_kvs; i++) {
            if (!r_kv(r, &resp->range.kvs[i])) {
                return false;
            }
        }
        return true;
    default:
        return false;
    }
}

static bool r_event(struct rd *r, struct kv_event *ev)
{
    memset(ev, 0, sizeof *ev);
    if (!get_u8(r, &ev->type) || (ev->type != KV_EVENT_PUT && ev->type != KV_EVENT_DELETE) ||
        !r_kv(r, &ev->kv) || !get_bool(r, &ev->has_prev)) {
        return false;
    }
    return !ev->has_prev || r_kv(r, &ev->prev_kv);
}

static bool r_result(struct rd *r, struct kv_result *out)
{
    uint32_t err;
    uint8_t flags;
    void *arr;
    if (!get_u8(r, &out->type) || !get_u32(r, &err) || !get_i64(r, &out->revision) ||
        !get_flags(r, RES_F_SUCCEEDED | RES_F_EVENTS, &flags)) {
        return false;
    }
    out->err = (int)(int32_t)err;
    out->succeeded = (flags & RES_F_SUCCEEDED) != 0;
    if (out->err > 0) {
        return false;
    }
    if (!r_array(r, &out->arena, sizeof(struct kv_response), KV_RESPONSE_WIRE_MIN,
                 &out->n_responses, &arr)) {
        return false;
    }
    out->responses = arr;
    for (uint32_t i = 0; i < out->n_responses; i++) {
        if (!r_response(r, &out->arena, &out->responses[i])) {
            return false;
        }
    }
    if ((flags & RES_F_EVENTS) != 0) {
        if (!r_array(r, &out->arena, sizeof(struct kv_event), KV_EVENT_WIRE_MIN, &out->n_events,
                     &arr)) {
            return false;
        }
        out->events = arr;
        for (uint32_t i = 0; i < out->n_events; i++) {
            if (!r_event(r, &out->events[i])) {
                return false;
            }
        }
    }
    return rd_left(r) == 0;
}

int kvcmd_decode_result(const uint8_t *buf, size_t n, struct kv_result *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || n < 1) {
        return KV_EMALFORMED;
    }
    if (buf[0] != KVCMD_RESULT_VERSION) {
        return KV_EFORMAT;
    }
    /* One copy of the input holds every byte string; the views point into it. */
    uint8_t *copy = kv_arena_alloc(&out->arena, n);
    if (copy == NULL) {
        return KV_ENOMEM;
    }
    memcpy(copy, buf, n);
    struct rd r = {copy, n, 1, false};
    if (!r_result(&r, out)) {
        kv_result_free(out);
        return r.oom ? KV_ENOMEM : KV_EMALFORMED;
    }
    return 0;
}
