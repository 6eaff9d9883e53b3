/* lock.c -- the replicated lock table (model, commands and guarantees in lock.h). Pure:
 * no IO, no clock, no randomness.
 *
 * Layout in memory:
 *   - t->locks: AVL (sm/kv_avl.h) of struct lock ordered by name (memcmp, shorter first).
 *   - each lock: holds[] in token order (appending a fresh token keeps it sorted) and
 *     waits[] in queue order, head first. Holders and waiters share struct party; a
 *     waiter is promoted by moving its record (strings included) into holds[].
 *   - t->next_token: the one fencing-token counter; every new hold takes it and bumps it.
 *
 * Invariants (lock_check() verifies all of them; the snapshot decoder runs it):
 *   - every lock has a holder or a waiter; at most LOCK_COUNT_MAX locks;
 *   - kind is valid; limit is 1 for MUTEX and ELECTION, 0 for RW, 1..LOCK_HOLDERS_MAX for
 *     SEMAPHORE; every party's mode is allowed for the kind; values only on ELECTION;
 *   - exclusion: MUTEX/ELECTION <= 1 holder, SEMAPHORE <= limit, RW either readers only
 *     (<= LOCK_HOLDERS_MAX) or exactly one writer; <= LOCK_WAITERS_MAX waiters;
 *   - holders: 1 <= token < next_token, strictly ascending, unique over the whole table;
 *     1 <= hold_count <= LOCK_HOLD_COUNT_MAX (ELECTION: 1); granted_index ascends weakly;
 *   - waiters: token 0, hold_count 0, queued_index ascends weakly (FIFO by arrival);
 *   - fairness: the head waiter cannot hold now (else it would have been granted);
 *   - (owner, lease) is unique among the holders and waiters of a lock, and
 *     (owner, request_id) among its waiters;
 *   - with the lease table (lock_check_leases): a lease has LEASE_ITEM_LOCK(name) iff it
 *     holds or waits on that lock.
 *
 * Applying: decode and check the command, then check it against the tables, and only
 * then mutate; mutation cannot fail except by running out of memory, which aborts.
 * All loops are bounded by LOCK_HOLDERS_MAX + LOCK_WAITERS_MAX per lock.
 *
 * Sections: types | result memory | byte writer and reader | commands | lock lookup |
 * parties | grants | apply | lease death | queries | invariants | canonical image
 * (digest, snapshot) | lifecycle | errors.
 */
#include "sm/lock.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/grow.h"
#include "base/hash.h"
#include "base/le.h"
#include "sm/kv_avl.h"

/* ==== types ============================================================== */

struct party {
    uint8_t *bytes; /* owner then value; malloc'd, owned by the record */
    uint16_t owner_len;
    uint16_t value_len;
    uint8_t mode;
    int64_t lease;
    uint64_t request_id;
    uint64_t token;      /* holders only */
    uint32_t hold_count; /* holders only */
    uint64_t index;      /* granted_index (holders) or queued_index (waiters) */
};

struct lock {
    struct kv_avl_node node; /* in t->locks */
    uint8_t kind;
    uint32_t limit;
    struct party *holds;
    uint32_t n_holds;
    uint32_t cap_holds;
    struct party *waits;
    uint32_t n_waits;
    uint32_t cap_waits;
    uint16_t name_len;
    uint8_t name[];
};

struct lock_table {
    struct kv_avl locks;
    uint64_t next_token; /* >= 1; above every token ever handed out */
};

#define LOCK_OF(n) KV_AVL_ENTRY(n, struct lock, node)

#define SNAP_MAGIC          "CLCK"
#define SNAP_FORMAT_VERSION 1u
#define SNAP_HEADER_BYTES   20u /* magic, version, next_token, n_locks */
#define SNAP_LOCK_MIN_BYTES 16u /* name (>= 3), kind, limit, two counts */
#define SNAP_PARTY_BYTES    41u /* the fixed part of a party; its owner adds >= 1 */

static const uint8_t *party_owner(const struct party *p)
{
    return p->bytes;
}

static const uint8_t *party_value(const struct party *p)
{
    return p->value_len > 0 ? p->bytes + p->owner_len : NULL;
}

/* ==== result memory ====================================================== */

struct lock_result_block {
    struct lock_result_block *next;
    size_t used;
    size_t cap;
    uint8_t data[];
};

#define RESULT_BLOCK_BYTES 4096u

/* n bytes owned by res; aborts on allocation failure (apply path). */
static uint8_t *res_alloc(struct lock_result *res, size_t n)
{
    struct lock_result_block *b = res->mem;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > RESULT_BLOCK_BYTES ? n : RESULT_BLOCK_BYTES;
        b = malloc(sizeof *b + cap);
        CC_ASSERT(b != NULL);
        b->next = res->mem;
        b->used = 0;
        b->cap = cap;
        res->mem = b;
    }
    uint8_t *p = b->data + b->used;
    b->used += n;
    return p;
}

static const uint8_t *res_copy(struct lock_result *res, const uint8_t *src, uint16_t len)
{
    if (len == 0) {
        return NULL;
    }
    uint8_t *p = res_alloc(res, len);
    memcpy(p, src, len);
    return p;
}

static void emit(struct lock_result *res, uint8_t type, const struct lock *l, const struct party *p)
{
    bool ok =
        cc_grow((void **)&res->events, &res->cap_events, res->n_events + 1, sizeof *res->events);
    CC_ASSERT(ok);
    struct lock_event *ev = &res->events[res->n_events++];
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->kind = l->kind;
    ev->mode = p->mode;
    ev->lease = p->lease;
    ev->request_id = p->request_id;
    ev->token = p->token;
    ev->name = res_copy(res, l->name, l->name_len);
    ev->name_len = l->name_len;
    ev->owner = res_copy(res, party_owner(p), p->owner_len);
    ev->owner_len = p->owner_len;
    ev->value = res_copy(res, party_value(p), p->value_len);
    ev->value_len = p->value_len;
}

void lock_result_free(struct lock_result *res)
{
    if (res == NULL) {
        return;
    }
    struct lock_result_block *b = res->mem;
    while (b != NULL) {
        struct lock_result_block *next = b->next;
        free(b);
        b = next;
    }
    free(res->events);
    memset(res, 0, sizeof *res);
}

/* ==== byte writer and reader ============================================= */

struct wr {
    uint8_t *p;
    size_t n;
};

static void put_le(struct wr *w, uint64_t v, unsigned n_bytes)
{
    for (unsigned i = 0; i < n_bytes; i++) {
        w->p[w->n + i] = (uint8_t)(v >> (8 * i));
    }
    w->n += n_bytes;
}

static void put_str(struct wr *w, const uint8_t *b, uint16_t len)
{
    put_le(w, len, 2);
    if (len > 0) {
        memcpy(w->p + w->n, b, len);
    }
    w->n += len;
}

static bool get_u8(struct le_reader *r, uint8_t *v)
{
    uint64_t x;
    if (!le_read(r, 1, &x)) {
        return false;
    }
    *v = (uint8_t)x;
    return true;
}

static bool get_u32(struct le_reader *r, uint32_t *v)
{
    uint64_t x;
    if (!le_read(r, 4, &x)) {
        return false;
    }
    *v = (uint32_t)x;
    return true;
}

static bool get_u64(struct le_reader *r, uint64_t *v)
{
    return le_read(r, 8, v);
}

static bool get_i64(struct le_reader *r, int64_t *v)
{
    uint64_t x;
    if (!le_read(r, 8, &x)) {
        return false;
    }
    *v = (int64_t)x;
    return true;
}

/* Points *b into the buffer (NULL when empty). */
static bool get_str(struct le_reader *r, const uint8_t **b, uint16_t *len)
{
    uint64_t l;
    if (!le_read(r, 2, &l) || r->n - r->off < l) {
        return false;
    }
    *b = l > 0 ? r->p + r->off : NULL;
    *len = (uint16_t)l;
    r->off += l;
    return true;
}

/* ==== commands =========================================================== */

static int check_name(const uint8_t *name, uint32_t len)
{
    if (len == 0) {
        return LOCK_ENAMEEMPTY;
    }
    if (len > LOCK_NAME_BYTES_MAX) {
        return LOCK_ENAMETOOBIG;
    }
    return name == NULL ? LOCK_EINVAL : 0;
}

static int check_owner(const uint8_t *owner, uint32_t len)
{
    if (len == 0) {
        return LOCK_EOWNEREMPTY;
    }
    if (len > LOCK_OWNER_BYTES_MAX) {
        return LOCK_EOWNERTOOBIG;
    }
    return owner == NULL ? LOCK_EINVAL : 0;
}

static int check_value(const uint8_t *value, uint32_t len)
{
    if (len > LOCK_VALUE_BYTES_MAX) {
        return LOCK_EVALUETOOBIG;
    }
    return (len > 0 && value == NULL) ? LOCK_EINVAL : 0;
}

static bool kind_valid(uint8_t kind)
{
    return kind >= LOCK_KIND_MUTEX && kind <= LOCK_KIND_ELECTION;
}

static bool mode_valid(uint8_t kind, uint8_t mode)
{
    if (kind == LOCK_KIND_RW) {
        return mode == LOCK_MODE_READ || mode == LOCK_MODE_WRITE;
    }
    return mode == LOCK_MODE_EXCLUSIVE;
}

/* The limit a lock of this kind stores (SEMAPHORE: the one asked for). */
static uint32_t kind_limit(uint8_t kind, uint32_t limit)
{
    switch (kind) {
    case LOCK_KIND_SEMAPHORE:
        return limit;
    case LOCK_KIND_RW:
        return 0;
    default:
        return 1;
    }
}

static int check_acquire(const struct lock_cmd *c)
{
    if (!kind_valid(c->kind) || (c->flags & ~LOCK_ACQUIRE_WAIT) != 0 || c->lease < 1 ||
        c->request_id == 0 || c->token != 0) {
        return LOCK_EINVAL;
    }
    if (!mode_valid(c->kind, c->mode)) {
        return LOCK_EMODE;
    }
    if (c->kind == LOCK_KIND_SEMAPHORE ? (c->limit < 1 || c->limit > LOCK_HOLDERS_MAX)
                                       : c->limit != 0) {
        return LOCK_ELIMIT;
    }
    int rv = check_value(c->value, c->value_len);
    if (rv != 0) {
        return rv;
    }
    return (c->value_len > 0 && c->kind != LOCK_KIND_ELECTION) ? LOCK_EVALUE : 0;
}

int lock_cmd_check(const struct lock_cmd *c)
{
    int rv = check_name(c->name, c->name_len);
    if (rv == 0) {
        rv = check_owner(c->owner, c->owner_len);
    }
    if (rv != 0) {
        return rv;
    }
    /* Fields a type does not carry must be zero: one meaning, one encoding. */
    switch (c->type) {
    case LOCK_CMD_ACQUIRE:
        return check_acquire(c);
    case LOCK_CMD_RELEASE:
        if ((c->flags & ~LOCK_RELEASE_ALL) != 0 || c->token == 0 || c->kind != 0 || c->mode != 0 ||
            c->limit != 0 || c->lease != 0 || c->request_id != 0 || c->value_len != 0) {
            return LOCK_EINVAL;
        }
        return 0;
    case LOCK_CMD_CANCEL:
        if (c->request_id == 0 || c->token != 0 || c->flags != 0 || c->kind != 0 || c->mode != 0 ||
            c->limit != 0 || c->lease != 0 || c->value_len != 0) {
            return LOCK_EINVAL;
        }
        return 0;
    case LOCK_CMD_PROCLAIM:
        if (c->token == 0 || c->request_id != 0 || c->flags != 0 || c->kind != 0 || c->mode != 0 ||
            c->limit != 0 || c->lease != 0) {
            return LOCK_EINVAL;
        }
        return check_value(c->value, c->value_len);
    default:
        return LOCK_EINVAL;
    }
}

int lock_encode(const struct lock_cmd *c, uint8_t *buf, size_t cap, size_t *n)
{
    if (buf == NULL || cap < LOCK_CMD_BYTES_MAX) {
        return LOCK_EINVAL;
    }
    int rv = lock_cmd_check(c);
    if (rv != 0) {
        return rv;
    }
    struct wr w = {buf, 0};
    put_le(&w, LOCK_CMD_TAG, 1);
    put_le(&w, LOCK_FORMAT_VERSION, 1);
    put_le(&w, c->type, 1);
    switch (c->type) {
    case LOCK_CMD_ACQUIRE:
        put_le(&w, c->kind, 1);
        put_le(&w, c->mode, 1);
        put_le(&w, c->flags, 1);
        put_le(&w, c->limit, 4);
        put_le(&w, (uint64_t)c->lease, 8);
        put_le(&w, c->request_id, 8);
        put_str(&w, c->name, c->name_len);
        put_str(&w, c->owner, c->owner_len);
        put_str(&w, c->value, c->value_len);
        break;
    case LOCK_CMD_RELEASE:
        put_le(&w, c->flags, 1);
        put_le(&w, c->token, 8);
        put_str(&w, c->name, c->name_len);
        put_str(&w, c->owner, c->owner_len);
        break;
    case LOCK_CMD_CANCEL:
        put_le(&w, c->request_id, 8);
        put_str(&w, c->name, c->name_len);
        put_str(&w, c->owner, c->owner_len);
        break;
    case LOCK_CMD_PROCLAIM:
        put_le(&w, c->token, 8);
        put_str(&w, c->name, c->name_len);
        put_str(&w, c->owner, c->owner_len);
        put_str(&w, c->value, c->value_len);
        break;
    default:
        CC_UNREACHABLE();
    }
    CC_ASSERT(w.n <= LOCK_CMD_BYTES_MAX);
    *n = w.n;
    return 0;
}

int lock_decode(const uint8_t *buf, size_t n, struct lock_cmd *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || n < 3 || buf[0] != LOCK_CMD_TAG || n > LOCK_CMD_BYTES_MAX) {
        return LOCK_EMALFORMED;
    }
    if (buf[1] != LOCK_FORMAT_VERSION) {
        return LOCK_EFORMAT;
    }
    struct le_reader r = {buf, n, 3};
    struct lock_cmd c = {.type = buf[2]};
    bool ok;
    switch (c.type) {
    case LOCK_CMD_ACQUIRE:
        ok = get_u8(&r, &c.kind) && get_u8(&r, &c.mode) && get_u8(&r, &c.flags) &&
             get_u32(&r, &c.limit) && get_i64(&r, &c.lease) && get_u64(&r, &c.request_id) &&
             get_str(&r, &c.name, &c.name_len) && get_str(&r, &c.owner, &c.owner_len) &&
             get_str(&r, &c.value, &c.value_len);
        break;
    case LOCK_CMD_RELEASE:
        ok = get_u8(&r, &c.flags) && get_u64(&r, &c.token) && get_str(&r, &c.name, &c.name_len) &&
             get_str(&r, &c.owner, &c.owner_len);
        break;
    case LOCK_CMD_CANCEL:
        ok = get_u64(&r, &c.request_id) && get_str(&r, &c.name, &c.name_len) &&
             get_str(&r, &c.owner, &c.owner_len);
        break;
    case LOCK_CMD_PROCLAIM:
        ok = get_u64(&r, &c.token) && get_str(&r, &c.name, &c.name_len) &&
             get_str(&r, &c.owner, &c.owner_len) && get_str(&r, &c.value, &c.value_len);
        break;
    default:
        ok = false;
        break;
    }
    if (!ok || r.off != r.n) {
        return LOCK_EMALFORMED;
    }
    int rv = lock_cmd_check(&c);
    if (rv == 0) {
        *out = c;
    }
    return rv;
}

/* ==== lock lookup ======================================================== */

static int name_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    uint32_t m = a_len < b_len ? a_len : b_len;
    int c = m > 0 ? memcmp(a, b, m) : 0;
    if (c != 0) {
        return c;
    }
    return (a_len > b_len) - (a_len < b_len);
}

static struct lock *find_lock(const struct lock_table *t, const uint8_t *name, uint32_t len,
                              struct kv_avl_node **parent_out, struct kv_avl_node ***link_out)
{
    struct kv_avl_node *parent = NULL;
    struct kv_avl_node *const *link = &t->locks.root;
    while (*link != NULL) {
        struct lock *l = LOCK_OF(*link);
        int c = name_cmp(name, len, l->name, l->name_len);
        if (c == 0) {
            return l;
        }
        parent = *link;
        link = c < 0 ? &parent->left : &parent->right;
    }
    if (parent_out != NULL) {
        *parent_out = parent;
        *link_out = (struct kv_avl_node **)link;
    }
    return NULL;
}

static void free_lock(struct lock *l)
{
    for (uint32_t i = 0; i < l->n_holds; i++) {
        free(l->holds[i].bytes);
    }
    for (uint32_t i = 0; i < l->n_waits; i++) {
        free(l->waits[i].bytes);
    }
    free(l->holds);
    free(l->waits);
    free(l);
}

static struct lock *lock_create(struct lock_table *t, const struct lock_cmd *c,
                                struct kv_avl_node *parent, struct kv_avl_node **link)
{
    struct lock *l = calloc(1, sizeof *l + c->name_len);
    CC_ASSERT(l != NULL); /* apply path: see lock.h on allocation failure */
    l->kind = c->kind;
    l->limit = kind_limit(c->kind, c->limit);
    l->name_len = c->name_len;
    memcpy(l->name, c->name, c->name_len);
    kv_avl_link(&t->locks, parent, link, &l->node);
    return l;
}

/* Deletes a lock nobody holds or waits on. */
static void maybe_delete(struct lock_table *t, struct lock *l)
{
    if (l->n_holds == 0 && l->n_waits == 0) {
        kv_avl_remove(&t->locks, &l->node);
        free_lock(l);
    }
}

/* ==== parties ============================================================ */

static bool party_is(const struct party *p, const uint8_t *owner, uint16_t owner_len)
{
    return p->owner_len == owner_len && memcmp(p->bytes, owner, owner_len) == 0;
}

static int64_t find_party(const struct party *ps, uint32_t n, const uint8_t *owner,
                          uint16_t owner_len, int64_t lease)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ps[i].lease == lease && party_is(&ps[i], owner, owner_len)) {
            return i;
        }
    }
    return -1;
}

static int64_t find_request(const struct party *ps, uint32_t n, const uint8_t *owner,
                            uint16_t owner_len, uint64_t request_id)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ps[i].request_id == request_id && party_is(&ps[i], owner, owner_len)) {
            return i;
        }
    }
    return -1;
}

static int64_t find_token(const struct party *ps, uint32_t n, uint64_t token)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ps[i].token == token) {
            return i;
        }
    }
    return -1;
}

static struct party party_make(const struct lock_cmd *c, uint64_t index)
{
    struct party p = {
        .owner_len = c->owner_len,
        .value_len = c->value_len,
        .mode = c->mode,
        .lease = c->lease,
        .request_id = c->request_id,
        .index = index,
    };
    p.bytes = malloc((size_t)c->owner_len + c->value_len);
    CC_ASSERT(p.bytes != NULL); /* apply path */
    memcpy(p.bytes, c->owner, c->owner_len);
    if (c->value_len > 0) {
        memcpy(p.bytes + c->owner_len, c->value, c->value_len);
    }
    return p;
}

static void party_append(struct party **ps, uint32_t *n, uint32_t *cap, const struct party *p)
{
    bool ok = cc_grow((void **)ps, cap, *n + 1, sizeof **ps);
    CC_ASSERT(ok); /* apply path */
    (*ps)[(*n)++] = *p;
}

/* Removes ps[i], keeping the order; the caller has taken or freed its bytes. */
static void party_remove(struct party *ps, uint32_t *n, uint32_t i)
{
    CC_ASSERT(i < *n);
    if (i + 1 < *n) {
        memmove(&ps[i], &ps[i + 1], (size_t)(*n - i - 1) * sizeof *ps);
    }
    (*n)--;
}

/* Whether any holder or waiter of l uses lease. */
static bool lease_used(const struct lock *l, int64_t lease)
{
    for (uint32_t i = 0; i < l->n_holds; i++) {
        if (l->holds[i].lease == lease) {
            return true;
        }
    }
    for (uint32_t i = 0; i < l->n_waits; i++) {
        if (l->waits[i].lease == lease) {
            return true;
        }
    }
    return false;
}

/* After a party of `lease` left l: detach the name when it was that lease's last one. */
static void maybe_detach(struct lease_table *leases, const struct lock *l, int64_t lease)
{
    if (!lease_used(l, lease)) {
        /* The lease is alive (a dead one's parties are gone), so this succeeds. */
        int rv = lease_detach(leases, lease, LEASE_ITEM_LOCK, l->name, l->name_len);
        CC_ASSERT(rv == 0);
    }
}

/* ==== grants ============================================================= */

/* Whether a party asking for mode could hold l now, given its current holders only. */
static bool can_hold(const struct lock *l, uint8_t mode)
{
    switch (l->kind) {
    case LOCK_KIND_MUTEX:
    case LOCK_KIND_ELECTION:
        return l->n_holds == 0;
    case LOCK_KIND_SEMAPHORE:
        return l->n_holds < l->limit;
    case LOCK_KIND_RW:
        if (mode == LOCK_MODE_WRITE) {
            return l->n_holds == 0;
        }
        /* Holders are readers only, or one writer. */
        return l->n_holds < LOCK_HOLDERS_MAX &&
               (l->n_holds == 0 || l->holds[0].mode != LOCK_MODE_WRITE);
    default:
        CC_UNREACHABLE();
    }
}

static uint64_t take_token(struct lock_table *t)
{
    CC_ASSERT(t->next_token < UINT64_MAX); /* 2^64 grants: never in practice */
    return t->next_token++;
}

/* FIFO wake-up: grants the queue head while it can hold, so a release wakes only the
 * next waiter(s) that can now hold (a run of readers, or free semaphore slots). Bounded
 * by the queue length. */
static void grant_queue(struct lock_table *t, struct lock *l, uint64_t index,
                        struct lock_result *res)
{
    uint32_t budget = l->n_waits;
    while (budget-- > 0 && l->n_waits > 0 && can_hold(l, l->waits[0].mode)) {
        struct party p = l->waits[0];
        party_remove(l->waits, &l->n_waits, 0);
        p.token = take_token(t);
        p.hold_count = 1;
        p.index = index;
        party_append(&l->holds, &l->n_holds, &l->cap_holds, &p);
        emit(res, LOCK_EV_GRANTED, l, &p);
    }
}

/* ==== apply ============================================================== */

/* ACQUIRE by a current holder: the same token, one more count. */
static int acquire_again(struct lock *l, struct party *h, const struct lock_cmd *c,
                         struct lock_result *res)
{
    if (l->kind == LOCK_KIND_RW && h->mode == LOCK_MODE_READ && c->mode == LOCK_MODE_WRITE) {
        return LOCK_EUPGRADE;
    }
    if (l->kind != LOCK_KIND_ELECTION) {
        if (h->hold_count >= LOCK_HOLD_COUNT_MAX) {
            return LOCK_EHOLDCOUNT;
        }
        h->hold_count++;
    }
    res->status = LOCK_GRANTED;
    res->reentrant = true;
    res->token = h->token;
    res->hold_count = h->hold_count;
    return 0;
}

static int apply_acquire(struct lock_table *t, struct lease_table *leases, const struct lock_cmd *c,
                         uint64_t index, struct lock_result *res)
{
    struct kv_avl_node *parent = NULL, **link = NULL;
    struct lock *l = find_lock(t, c->name, c->name_len, &parent, &link);
    if (!lease_exists(leases, c->lease)) {
        return LOCK_ENOLEASE;
    }
    bool grantable = true;
    if (l != NULL) {
        if (l->kind != c->kind || l->limit != kind_limit(c->kind, c->limit)) {
            return LOCK_EKIND;
        }
        int64_t h = find_party(l->holds, l->n_holds, c->owner, c->owner_len, c->lease);
        if (h >= 0) {
            return acquire_again(l, &l->holds[h], c, res);
        }
        int64_t w = find_party(l->waits, l->n_waits, c->owner, c->owner_len, c->lease);
        if (w >= 0 && l->waits[w].request_id == c->request_id) {
            res->status = LOCK_QUEUED; /* a retry of the request that queued */
            res->position = (uint32_t)w;
            return 0;
        }
        if (w >= 0 ||
            find_request(l->waits, l->n_waits, c->owner, c->owner_len, c->request_id) >= 0) {
            return LOCK_EWAITING;
        }
        grantable = l->n_waits == 0 && can_hold(l, c->mode);
    } else if (t->locks.n_nodes >= LOCK_COUNT_MAX) {
        return LOCK_EFULL;
    }
    if (!grantable) {
        if ((c->flags & LOCK_ACQUIRE_WAIT) == 0) {
            res->status = LOCK_BUSY;
            return 0;
        }
        if (l->n_waits >= LOCK_WAITERS_MAX) {
            return LOCK_EQUEUEFULL;
        }
    }
    int rv = lease_item_check(leases, c->lease, LEASE_ITEM_LOCK, c->name, c->name_len);
    if (rv != 0) {
        return rv; /* LEASE_EITEMSFULL */
    }
    /* Checked: from here on nothing fails. */
    if (l == NULL) {
        l = lock_create(t, c, parent, link);
    }
    rv = lease_attach(leases, c->lease, LEASE_ITEM_LOCK, c->name, c->name_len);
    CC_ASSERT(rv == 0);
    struct party p = party_make(c, index);
    if (grantable) {
        p.token = take_token(t);
        p.hold_count = 1;
        party_append(&l->holds, &l->n_holds, &l->cap_holds, &p);
        emit(res, LOCK_EV_GRANTED, l, &p);
        res->status = LOCK_GRANTED;
        res->token = p.token;
        res->hold_count = 1;
    } else {
        party_append(&l->waits, &l->n_waits, &l->cap_waits, &p);
        res->status = LOCK_QUEUED;
        res->position = l->n_waits - 1;
    }
    return 0;
}

static int apply_release(struct lock_table *t, struct lease_table *leases, const struct lock_cmd *c,
                         uint64_t index, struct lock_result *res)
{
    struct lock *l = find_lock(t, c->name, c->name_len, NULL, NULL);
    if (l == NULL) {
        return LOCK_ENOTFOUND;
    }
    int64_t i = find_token(l->holds, l->n_holds, c->token);
    if (i < 0 || !party_is(&l->holds[i], c->owner, c->owner_len)) {
        return LOCK_ENOTHOLDER; /* compare-and-delete: token AND owner */
    }
    struct party *h = &l->holds[i];
    res->token = h->token;
    if ((c->flags & LOCK_RELEASE_ALL) == 0 && h->hold_count > 1) {
        h->hold_count--;
        res->hold_count = h->hold_count;
        return 0;
    }
    struct party gone = *h;
    party_remove(l->holds, &l->n_holds, (uint32_t)i);
    emit(res, LOCK_EV_RELEASED, l, &gone);
    free(gone.bytes);
    maybe_detach(leases, l, gone.lease);
    grant_queue(t, l, index, res);
    maybe_delete(t, l);
    return 0;
}

static int apply_cancel(struct lock_table *t, struct lease_table *leases, const struct lock_cmd *c,
                        uint64_t index, struct lock_result *res)
{
    struct lock *l = find_lock(t, c->name, c->name_len, NULL, NULL);
    if (l == NULL) {
        return LOCK_ENOTFOUND;
    }
    int64_t i = find_request(l->waits, l->n_waits, c->owner, c->owner_len, c->request_id);
    if (i < 0) {
        return LOCK_ENOTWAITING;
    }
    struct party gone = l->waits[i];
    party_remove(l->waits, &l->n_waits, (uint32_t)i);
    emit(res, LOCK_EV_CANCELLED, l, &gone);
    free(gone.bytes);
    maybe_detach(leases, l, gone.lease);
    /* A reader behind a cancelled writer may now join the readers that hold. */
    grant_queue(t, l, index, res);
    maybe_delete(t, l);
    return 0;
}

static int apply_proclaim(struct lock_table *t, const struct lock_cmd *c, struct lock_result *res)
{
    struct lock *l = find_lock(t, c->name, c->name_len, NULL, NULL);
    if (l == NULL) {
        return LOCK_ENOTFOUND;
    }
    if (l->kind != LOCK_KIND_ELECTION) {
        return LOCK_EKIND;
    }
    int64_t i = find_token(l->holds, l->n_holds, c->token);
    if (i < 0 || !party_is(&l->holds[i], c->owner, c->owner_len)) {
        return LOCK_ENOTHOLDER;
    }
    struct party *h = &l->holds[i];
    uint8_t *bytes = malloc((size_t)h->owner_len + c->value_len);
    CC_ASSERT(bytes != NULL); /* apply path */
    memcpy(bytes, h->bytes, h->owner_len);
    if (c->value_len > 0) {
        memcpy(bytes + h->owner_len, c->value, c->value_len);
    }
    free(h->bytes);
    h->bytes = bytes;
    h->value_len = c->value_len;
    res->token = h->token;
    res->hold_count = h->hold_count;
    emit(res, LOCK_EV_PROCLAIMED, l, h);
    return 0;
}

int lock_apply(struct lock_table *t, struct lease_table *leases, const uint8_t *cmd, size_t n,
               uint64_t index, struct lock_result *res)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(leases != NULL);
    CC_ASSERT(index >= 1);
    memset(res, 0, sizeof *res);
    struct lock_cmd c;
    int rv = lock_decode(cmd, n, &c);
    if (rv == 0) {
        res->type = c.type;
        switch (c.type) {
        case LOCK_CMD_ACQUIRE:
            rv = apply_acquire(t, leases, &c, index, res);
            break;
        case LOCK_CMD_RELEASE:
            rv = apply_release(t, leases, &c, index, res);
            break;
        case LOCK_CMD_CANCEL:
            rv = apply_cancel(t, leases, &c, index, res);
            break;
        case LOCK_CMD_PROCLAIM:
            rv = apply_proclaim(t, &c, res);
            break;
        default:
            CC_UNREACHABLE();
        }
    }
    if (rv != 0) {
        uint8_t type = res->type;
        CC_ASSERT(res->n_events == 0); /* checks come before any change */
        lock_result_free(res);
        res->type = type;
        res->err = rv;
    }
    return rv;
}

/* ==== lease death ======================================================== */

/* Ends every hold and wait of `lease` on l (LOST, then DROPPED), then wakes the queue. */
static void lock_end_lease(struct lock_table *t, struct lock *l, int64_t lease, uint64_t index,
                           struct lock_result *res)
{
    for (uint32_t i = 0; i < l->n_holds;) {
        if (l->holds[i].lease != lease) {
            i++;
            continue;
        }
        struct party gone = l->holds[i];
        party_remove(l->holds, &l->n_holds, i);
        emit(res, LOCK_EV_LOST, l, &gone);
        free(gone.bytes);
    }
    for (uint32_t i = 0; i < l->n_waits;) {
        if (l->waits[i].lease != lease) {
            i++;
            continue;
        }
        struct party gone = l->waits[i];
        party_remove(l->waits, &l->n_waits, i);
        emit(res, LOCK_EV_DROPPED, l, &gone);
        free(gone.bytes);
    }
    grant_queue(t, l, index, res);
}

int lock_lease_died(struct lock_table *t, struct lease_table *leases, int64_t lease,
                    const struct lease_item *items, uint32_t n_items, uint64_t index,
                    struct lock_result *res)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(index >= 1);
    CC_ASSERT(n_items == 0 || items != NULL);
    /* Contract: called after lease_apply removed the lease. */
    CC_ASSERT(leases == NULL || !lease_exists(leases, lease));
    memset(res, 0, sizeof *res);
    res->type = LOCK_CMD_LEASE_DEATH;
    for (uint32_t i = 0; i < n_items; i++) {
        const struct lease_item *it = &items[i];
        if (it->kind != LEASE_ITEM_LOCK || check_name(it->bytes, it->len) != 0) {
            continue;
        }
        struct lock *l = find_lock(t, it->bytes, it->len, NULL, NULL);
        if (l == NULL) {
            continue;
        }
        lock_end_lease(t, l, lease, index, res);
        maybe_delete(t, l);
    }
    return 0;
}

/* ==== queries ============================================================ */

int lock_get(const struct lock_table *t, const uint8_t *name, uint16_t name_len,
             struct lock_info *out)
{
    memset(out, 0, sizeof *out);
    if (check_name(name, name_len) != 0) {
        return LOCK_ENOTFOUND;
    }
    const struct lock *l = find_lock(t, name, name_len, NULL, NULL);
    if (l == NULL) {
        return LOCK_ENOTFOUND;
    }
    out->kind = l->kind;
    out->limit = l->limit;
    out->n_holders = l->n_holds;
    out->n_waiters = l->n_waits;
    out->lock = l;
    return 0;
}

static void party_view(const struct party *p, struct lock_party *out)
{
    out->owner = party_owner(p);
    out->owner_len = p->owner_len;
    out->value = party_value(p);
    out->value_len = p->value_len;
    out->mode = p->mode;
    out->lease = p->lease;
    out->request_id = p->request_id;
    out->token = p->token;
    out->hold_count = p->hold_count;
    out->index = p->index;
}

void lock_info_holder(const struct lock_info *info, uint32_t i, struct lock_party *out)
{
    const struct lock *l = info->lock;
    CC_ASSERT(l != NULL);
    CC_ASSERT(i < l->n_holds);
    party_view(&l->holds[i], out);
}

void lock_info_waiter(const struct lock_info *info, uint32_t i, struct lock_party *out)
{
    const struct lock *l = info->lock;
    CC_ASSERT(l != NULL);
    CC_ASSERT(i < l->n_waits);
    party_view(&l->waits[i], out);
}

uint32_t lock_count(const struct lock_table *t)
{
    return (uint32_t)t->locks.n_nodes;
}

uint64_t lock_next_token(const struct lock_table *t)
{
    return t->next_token;
}

/* ==== invariants ========================================================= */

static bool party_ok(const struct lock *l, const struct party *p, bool holder)
{
    if (check_owner(p->bytes, p->owner_len) != 0 || p->value_len > LOCK_VALUE_BYTES_MAX ||
        (p->value_len > 0 && l->kind != LOCK_KIND_ELECTION) || !mode_valid(l->kind, p->mode) ||
        p->lease < 1 || p->request_id == 0 || p->index == 0) {
        return false;
    }
    if (!holder) {
        return p->token == 0 && p->hold_count == 0;
    }
    uint32_t max_count = l->kind == LOCK_KIND_ELECTION ? 1 : LOCK_HOLD_COUNT_MAX;
    return p->token >= 1 && p->hold_count >= 1 && p->hold_count <= max_count;
}

/* Sort keys for the uniqueness checks. */
struct pkey {
    const struct party *p;
    uint64_t num; /* lease or request id */
};

static int pkey_cmp(const void *a, const void *b)
{
    const struct pkey *x = a, *y = b;
    int c = name_cmp(x->p->bytes, x->p->owner_len, y->p->bytes, y->p->owner_len);
    if (c != 0) {
        return c;
    }
    return (x->num > y->num) - (x->num < y->num);
}

/* Whether every (owner, num) in keys[0..n) is distinct. Sorts keys. */
static bool pkeys_unique(struct pkey *keys, uint32_t n)
{
    if (n > 1) {
        qsort(keys, n, sizeof *keys, pkey_cmp);
    }
    for (uint32_t i = 1; i < n; i++) {
        if (pkey_cmp(&keys[i - 1], &keys[i]) == 0) {
            return false;
        }
    }
    return true;
}

static bool exclusion_ok(const struct lock *l)
{
    switch (l->kind) {
    case LOCK_KIND_MUTEX:
    case LOCK_KIND_ELECTION:
        return l->limit == 1 && l->n_holds <= 1;
    case LOCK_KIND_SEMAPHORE:
        return l->limit >= 1 && l->limit <= LOCK_HOLDERS_MAX && l->n_holds <= l->limit;
    case LOCK_KIND_RW:
        for (uint32_t i = 0; i < l->n_holds; i++) {
            if (l->holds[i].mode == LOCK_MODE_WRITE && l->n_holds != 1) {
                return false;
            }
        }
        return l->limit == 0 && l->n_holds <= LOCK_HOLDERS_MAX;
    default:
        return false;
    }
}

/* keys needs room for n_holds + n_waits entries. */
static bool lock_ok(const struct lock_table *t, const struct lock *l, struct pkey *keys)
{
    if (check_name(l->name, l->name_len) != 0 || !kind_valid(l->kind) ||
        l->n_holds + l->n_waits == 0 || l->n_holds > LOCK_HOLDERS_MAX ||
        l->n_waits > LOCK_WAITERS_MAX || !exclusion_ok(l)) {
        return false;
    }
    for (uint32_t i = 0; i < l->n_holds; i++) {
        const struct party *p = &l->holds[i];
        if (!party_ok(l, p, true) || p->token >= t->next_token ||
            (i > 0 && (p->token <= l->holds[i - 1].token || p->index < l->holds[i - 1].index))) {
            return false;
        }
    }
    for (uint32_t i = 0; i < l->n_waits; i++) {
        const struct party *p = &l->waits[i];
        if (!party_ok(l, p, false) || (i > 0 && p->index < l->waits[i - 1].index)) {
            return false;
        }
    }
    if (l->n_waits > 0 && can_hold(l, l->waits[0].mode)) {
        return false; /* fairness: a grantable head would have been granted */
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->n_holds; i++) {
        keys[n++] = (struct pkey){&l->holds[i], (uint64_t)l->holds[i].lease};
    }
    for (uint32_t i = 0; i < l->n_waits; i++) {
        keys[n++] = (struct pkey){&l->waits[i], (uint64_t)l->waits[i].lease};
    }
    if (!pkeys_unique(keys, n)) {
        return false;
    }
    for (uint32_t i = 0; i < l->n_waits; i++) {
        keys[i] = (struct pkey){&l->waits[i], l->waits[i].request_id};
    }
    return pkeys_unique(keys, l->n_waits);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int lock_check(const struct lock_table *t)
{
    if (t->next_token < 1 || t->locks.n_nodes > LOCK_COUNT_MAX) {
        return LOCK_ECORRUPT;
    }
    struct pkey *keys = malloc((LOCK_HOLDERS_MAX + LOCK_WAITERS_MAX) * sizeof *keys);
    if (keys == NULL) {
        return LOCK_ENOMEM;
    }
    int rv = 0;
    size_t n_tokens = 0;
    const struct lock *prev = NULL;
    for (struct kv_avl_node *n = kv_avl_first(&t->locks); n != NULL; n = kv_avl_next(n)) {
        const struct lock *l = LOCK_OF(n);
        if (!lock_ok(t, l, keys) ||
            (prev != NULL && name_cmp(prev->name, prev->name_len, l->name, l->name_len) >= 0)) {
            rv = LOCK_ECORRUPT;
            goto out_keys;
        }
        n_tokens += l->n_holds;
        prev = l;
    }
    /* Tokens come from one counter: no two holds anywhere share one. */
    uint64_t *tokens = malloc((n_tokens + 1) * sizeof *tokens); /* never size 0 */
    if (tokens == NULL) {
        rv = LOCK_ENOMEM;
        goto out_keys;
    }
    size_t k = 0;
    for (struct kv_avl_node *n = kv_avl_first(&t->locks); n != NULL; n = kv_avl_next(n)) {
        const struct lock *l = LOCK_OF(n);
        for (uint32_t i = 0; i < l->n_holds && k < n_tokens; i++) {
            tokens[k++] = l->holds[i].token;
        }
    }
    CC_ASSERT(k == n_tokens);
    if (n_tokens > 1) {
        qsort(tokens, n_tokens, sizeof *tokens, u64_cmp);
    }
    for (size_t i = 1; i < n_tokens; i++) {
        if (tokens[i - 1] == tokens[i]) {
            rv = LOCK_ECORRUPT;
            break;
        }
    }
    free(tokens);
out_keys:
    free(keys);
    return rv;
}

struct lease_scan {
    const struct lock_table *t;
    int64_t lease;
    bool bad;
};

static int scan_lease_item(void *arg, const struct lease_item *it)
{
    struct lease_scan *s = arg;
    if (it->kind != LEASE_ITEM_LOCK) {
        return 0;
    }
    const struct lock *l =
        it->len <= LOCK_NAME_BYTES_MAX ? find_lock(s->t, it->bytes, it->len, NULL, NULL) : NULL;
    if (l == NULL || !lease_used(l, s->lease)) {
        s->bad = true;
        return 1;
    }
    return 0;
}

int lock_check_leases(const struct lock_table *t, const struct lease_table *leases)
{
    for (struct kv_avl_node *n = kv_avl_first(&t->locks); n != NULL; n = kv_avl_next(n)) {
        const struct lock *l = LOCK_OF(n);
        for (uint32_t i = 0; i < l->n_holds + l->n_waits; i++) {
            const struct party *p = i < l->n_holds ? &l->holds[i] : &l->waits[i - l->n_holds];
            if (!lease_item_attached(leases, p->lease, LEASE_ITEM_LOCK, l->name, l->name_len)) {
                return LOCK_ECORRUPT;
            }
        }
    }
    int64_t ids[256], after = 0;
    for (;;) {
        uint32_t k = lease_list(leases, after, ids, 256);
        for (uint32_t i = 0; i < k; i++) {
            struct lease_scan s = {t, ids[i], false};
            (void)lease_items(leases, ids[i], 0, LEASE_ITEMS_MAX, scan_lease_item, &s);
            if (s.bad) {
                return LOCK_ECORRUPT;
            }
        }
        if (k < 256) {
            return 0;
        }
        after = ids[k - 1];
    }
}

/* ==== canonical image (digest, snapshot) ================================= */

struct sink {
    uint8_t *p;
    size_t n;
    bool hash;
    uint64_t h;
};

static void sink_bytes(struct sink *s, const void *b, size_t len)
{
    if (s->hash) {
        s->h = hash_fnv1a64(s->h, b, len);
    } else if (s->p != NULL && len > 0) {
        memcpy(s->p + s->n, b, len);
    }
    s->n += len;
}

static void sink_le(struct sink *s, uint64_t v, unsigned n_bytes)
{
    uint8_t b[8];
    for (unsigned i = 0; i < n_bytes; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    sink_bytes(s, b, n_bytes);
}

static void sink_party(struct sink *s, const struct party *p)
{
    sink_le(s, p->owner_len, 2);
    sink_bytes(s, p->bytes, p->owner_len);
    sink_le(s, p->value_len, 2);
    sink_bytes(s, p->bytes + p->owner_len, p->value_len);
    sink_le(s, p->mode, 1);
    sink_le(s, (uint64_t)p->lease, 8);
    sink_le(s, p->request_id, 8);
    sink_le(s, p->token, 8);
    sink_le(s, p->hold_count, 4);
    sink_le(s, p->index, 8);
}

static void canonical_stream(const struct lock_table *t, struct sink *s)
{
    sink_bytes(s, SNAP_MAGIC, 4);
    sink_le(s, SNAP_FORMAT_VERSION, 4);
    sink_le(s, t->next_token, 8);
    sink_le(s, t->locks.n_nodes, 4);
    for (struct kv_avl_node *n = kv_avl_first(&t->locks); n != NULL; n = kv_avl_next(n)) {
        const struct lock *l = LOCK_OF(n);
        sink_le(s, l->name_len, 2);
        sink_bytes(s, l->name, l->name_len);
        sink_le(s, l->kind, 1);
        sink_le(s, l->limit, 4);
        sink_le(s, l->n_holds, 4);
        sink_le(s, l->n_waits, 4);
        for (uint32_t i = 0; i < l->n_holds; i++) {
            sink_party(s, &l->holds[i]);
        }
        for (uint32_t i = 0; i < l->n_waits; i++) {
            sink_party(s, &l->waits[i]);
        }
    }
}

uint64_t lock_digest(const struct lock_table *t)
{
    struct sink s = {.hash = true, .h = HASH_FNV_INIT};
    canonical_stream(t, &s);
    return s.h;
}

int lock_snapshot_encode(const struct lock_table *t, uint8_t **buf, size_t *n)
{
    struct sink s = {0};
    canonical_stream(t, &s);
    size_t size = s.n + 4;
    uint8_t *p = malloc(size);
    if (p == NULL) {
        return LOCK_ENOMEM;
    }
    s = (struct sink){.p = p};
    canonical_stream(t, &s);
    CC_ASSERT(s.n + 4 == size);
    le_put_u32(p + s.n, crc32c(0, p, s.n));
    *buf = p;
    *n = size;
    return 0;
}

/* Reads one party into *p (p->bytes malloc'd on success). Shape only: lock_ok judges. */
static int snap_read_party(struct le_reader *r, struct party *p)
{
    const uint8_t *owner, *value;
    memset(p, 0, sizeof *p);
    if (!get_str(r, &owner, &p->owner_len) || !get_str(r, &value, &p->value_len) ||
        !get_u8(r, &p->mode) || !get_i64(r, &p->lease) || !get_u64(r, &p->request_id) ||
        !get_u64(r, &p->token) || !get_u32(r, &p->hold_count) || !get_u64(r, &p->index) ||
        p->owner_len == 0 || p->owner_len > LOCK_OWNER_BYTES_MAX ||
        p->value_len > LOCK_VALUE_BYTES_MAX) {
        return LOCK_ECORRUPT;
    }
    p->bytes = malloc((size_t)p->owner_len + p->value_len);
    if (p->bytes == NULL) {
        return LOCK_ENOMEM;
    }
    CC_ASSERT(owner != NULL); /* get_str: non-empty strings point into the buffer */
    memcpy(p->bytes, owner, p->owner_len);
    if (p->value_len > 0) {
        CC_ASSERT(value != NULL);
        memcpy(p->bytes + p->owner_len, value, p->value_len);
    }
    return 0;
}

static int snap_read_parties(struct le_reader *r, struct party **ps, uint32_t *n, uint32_t *cap,
                             uint32_t count)
{
    if (count == 0) {
        return 0;
    }
    if (count > (r->n - r->off) / (SNAP_PARTY_BYTES + 1)) {
        return LOCK_ECORRUPT; /* more parties claimed than bytes could hold */
    }
    *ps = malloc((size_t)count * sizeof **ps);
    if (*ps == NULL) {
        return LOCK_ENOMEM;
    }
    *cap = count;
    for (uint32_t i = 0; i < count; i++) {
        int rv = snap_read_party(r, &(*ps)[*n]);
        if (rv != 0) {
            return rv;
        }
        (*n)++;
    }
    return 0;
}

static int snap_read_lock(struct lock_table *t, struct le_reader *r)
{
    const uint8_t *name;
    uint16_t name_len;
    uint8_t kind;
    uint32_t limit, n_holds, n_waits;
    if (!get_str(r, &name, &name_len) || check_name(name, name_len) != 0 || !get_u8(r, &kind) ||
        !get_u32(r, &limit) || !get_u32(r, &n_holds) || !get_u32(r, &n_waits) ||
        n_holds > LOCK_HOLDERS_MAX || n_waits > LOCK_WAITERS_MAX) {
        return LOCK_ECORRUPT;
    }
    struct kv_avl_node *last = kv_avl_last(&t->locks);
    if (last != NULL &&
        name_cmp(LOCK_OF(last)->name, LOCK_OF(last)->name_len, name, name_len) >= 0) {
        return LOCK_ECORRUPT; /* names must strictly ascend */
    }
    struct lock *l = calloc(1, sizeof *l + name_len);
    if (l == NULL) {
        return LOCK_ENOMEM;
    }
    l->kind = kind;
    l->limit = limit;
    l->name_len = name_len;
    memcpy(l->name, name, name_len);
    /* Linked first so lock_free reclaims it on any later error. */
    kv_avl_link(&t->locks, last, last != NULL ? &last->right : &t->locks.root, &l->node);
    int rv = snap_read_parties(r, &l->holds, &l->n_holds, &l->cap_holds, n_holds);
    if (rv == 0) {
        rv = snap_read_parties(r, &l->waits, &l->n_waits, &l->cap_waits, n_waits);
    }
    return rv;
}

int lock_snapshot_decode(const uint8_t *buf, size_t n, struct lock_table **out)
{
    *out = NULL;
    if (buf == NULL || n < SNAP_HEADER_BYTES + 4) {
        return LOCK_ECORRUPT;
    }
    if (crc32c(0, buf, n - 4) != le_get_u32(buf + n - 4) || memcmp(buf, SNAP_MAGIC, 4) != 0) {
        return LOCK_ECORRUPT;
    }
    struct le_reader r = {buf, n - 4, 4};
    uint32_t format, n_locks;
    uint64_t next_token;
    if (!get_u32(&r, &format)) {
        return LOCK_ECORRUPT;
    }
    if (format != SNAP_FORMAT_VERSION) {
        return LOCK_EFORMAT;
    }
    if (!get_u64(&r, &next_token) || !get_u32(&r, &n_locks) || next_token < 1 ||
        n_locks > LOCK_COUNT_MAX || n_locks > (r.n - r.off) / SNAP_LOCK_MIN_BYTES) {
        return LOCK_ECORRUPT;
    }
    struct lock_table *t;
    int rv = lock_new(&t);
    if (rv != 0) {
        return rv;
    }
    t->next_token = next_token;
    for (uint32_t i = 0; i < n_locks && rv == 0; i++) {
        rv = snap_read_lock(t, &r);
    }
    if (rv == 0 && r.off != r.n) {
        rv = LOCK_ECORRUPT;
    }
    if (rv == 0) {
        rv = lock_check(t);
    }
    if (rv != 0) {
        goto err_after_table;
    }
    *out = t;
    return 0;

err_after_table:
    lock_free(t);
    CC_ASSERT(rv != 0);
    return rv;
}

/* ==== lifecycle ========================================================== */

int lock_new(struct lock_table **out)
{
    struct lock_table *t = calloc(1, sizeof *t);
    *out = t;
    if (t == NULL) {
        return LOCK_ENOMEM;
    }
    t->next_token = 1;
    return 0;
}

static void free_lock_node(struct kv_avl_node *n, void *arg)
{
    free_lock(LOCK_OF(n));
}

void lock_free(struct lock_table *t)
{
    if (t == NULL) {
        return;
    }
    kv_avl_clear(&t->locks, free_lock_node, NULL);
    free(t);
}

/* ==== errors ============================================================= */

const char *lock_strerror(int rv)
{
    if (rv <= -2200 && rv > -2300) {
        return lease_strerror(rv);
    }
    switch (rv) {
    case 0:
        return "ok";
    case LOCK_EINVAL:
        return "invalid argument";
    case LOCK_ENOMEM:
        return "out of memory";
    case LOCK_EMALFORMED:
        return "malformed lock command";
    case LOCK_EFORMAT:
        return "unsupported lock format version";
    case LOCK_ENAMEEMPTY:
        return "lock name is empty";
    case LOCK_ENAMETOOBIG:
        return "lock name longer than LOCK_NAME_BYTES_MAX";
    case LOCK_EOWNEREMPTY:
        return "owner is empty";
    case LOCK_EOWNERTOOBIG:
        return "owner longer than LOCK_OWNER_BYTES_MAX";
    case LOCK_EVALUETOOBIG:
        return "value longer than LOCK_VALUE_BYTES_MAX";
    case LOCK_EVALUE:
        return "only an election carries a value";
    case LOCK_EMODE:
        return "mode not allowed for this lock kind";
    case LOCK_ELIMIT:
        return "bad semaphore limit (1..LOCK_HOLDERS_MAX, 0 for other kinds)";
    case LOCK_EKIND:
        return "the lock exists with another kind or limit";
    case LOCK_ENOLEASE:
        return "lease not found";
    case LOCK_EFULL:
        return "too many locks (LOCK_COUNT_MAX)";
    case LOCK_EQUEUEFULL:
        return "too many waiters on this lock (LOCK_WAITERS_MAX)";
    case LOCK_EHOLDCOUNT:
        return "reentrant depth above LOCK_HOLD_COUNT_MAX";
    case LOCK_EUPGRADE:
        return "a read holder cannot acquire the write lock";
    case LOCK_EWAITING:
        return "already waiting on this lock with another request";
    case LOCK_ENOTFOUND:
        return "no such lock";
    case LOCK_ENOTHOLDER:
        return "not the holder (owner and token must match)";
    case LOCK_ENOTWAITING:
        return "no such waiting request";
    case LOCK_ECORRUPT:
        return "lock snapshot is corrupt";
    default:
        return "unknown lock error";
    }
}
