/* lease.c -- the replicated lease table (format and rules in lease.h). Pure: no IO, no
 * clock, no randomness.
 *
 * Layout in memory:
 *   - t->leases: AVL (sm/kv_avl.h) of struct lease ordered by id.
 *   - each lease: AVL of struct item ordered by (kind, bytes), so keys come before lock
 *     names and each kind is in kv's key order. n_keys/n_locks count the two kinds.
 *
 * Invariants (checked by the snapshot decoder on input, and by the tests):
 *   - 1 <= id <= INT64_MAX for every lease, and next_id > every id ever granted;
 *   - LEASE_TTL_MS_MIN <= ttl_ms <= LEASE_TTL_MS_MAX, granted_index >= 1;
 *   - items are unique, 1..LEASE_ITEM_BYTES_MAX bytes, at most LEASE_ITEMS_MAX per lease;
 *   - at most LEASE_COUNT_MAX leases.
 *
 * Applying: decode and check the command (nothing changes on error), then mutate.
 * Mutation cannot fail except by running out of memory, which aborts (see lease.h).
 *
 * Sections: types | byte writer and reader | commands | items | apply | queries |
 * canonical image (digest, snapshot) | lifecycle | errors.
 */
#include "sm/lease.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/hash.h"
#include "base/le.h"
#include "sm/kv_avl.h"

/* ==== types ============================================================== */

struct item {
    struct kv_avl_node node; /* in lease->items */
    uint32_t len;
    uint8_t kind;
    uint8_t bytes[];
};

struct lease {
    struct kv_avl_node node; /* in t->leases */
    int64_t id;
    int64_t ttl_ms;
    uint64_t granted_index;
    struct kv_avl items;
    uint32_t n_keys;
    uint32_t n_locks;
};

struct lease_table {
    struct kv_avl leases;
    uint64_t next_id; /* 1..INT64_MAX + 1; above every id ever granted */
};

#define LEASE_OF(n) KV_AVL_ENTRY(n, struct lease, node)
#define ITEM_OF(n)  KV_AVL_ENTRY(n, struct item, node)

#define SNAP_MAGIC          "CLSE"
#define SNAP_FORMAT_VERSION 1u
#define SNAP_HEADER_BYTES   20u /* magic, version, next_id, n_leases */
#define SNAP_LEASE_BYTES    28u /* id, ttl, granted_index, n_items */
#define SNAP_ITEM_MIN_BYTES 6u  /* kind, len, one byte */

_Static_assert(LEASE_COUNT_MAX <= UINT32_MAX / SNAP_LEASE_BYTES, "snapshot counts are u32");

/* ==== byte writer and reader ============================================= */

static size_t put_le(uint8_t *p, size_t off, uint64_t v, unsigned n_bytes)
{
    for (unsigned i = 0; i < n_bytes; i++) {
        p[off + i] = (uint8_t)(v >> (8 * i));
    }
    return off + n_bytes;
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

static bool get_u32(struct le_reader *r, uint32_t *v)
{
    uint64_t x;
    if (!le_read(r, 4, &x)) {
        return false;
    }
    *v = (uint32_t)x;
    return true;
}

/* ==== commands =========================================================== */

static int check_ttl(int64_t ttl_ms)
{
    if (ttl_ms < LEASE_TTL_MS_MIN) {
        return LEASE_ETTLSHORT;
    }
    return ttl_ms > LEASE_TTL_MS_MAX ? LEASE_ETTLLONG : 0;
}

static int check_cmd(const struct lease_cmd *c)
{
    switch (c->type) {
    case LEASE_CMD_GRANT:
        return c->id < 0 ? LEASE_EINVAL : check_ttl(c->ttl_ms);
    case LEASE_CMD_REVOKE:
        return c->id < 1 ? LEASE_EINVAL : 0;
    case LEASE_CMD_EXPIRE:
        return (c->id < 1 || c->granted_index < 1) ? LEASE_EINVAL : 0;
    default:
        return LEASE_EINVAL;
    }
}

int lease_encode(const struct lease_cmd *cmd, uint8_t *buf, size_t cap, size_t *n)
{
    if (buf == NULL || cap < LEASE_CMD_BYTES_MAX) {
        return LEASE_EINVAL;
    }
    int rv = check_cmd(cmd);
    if (rv != 0) {
        return rv;
    }
    size_t off = 0;
    buf[off++] = LEASE_CMD_TAG;
    buf[off++] = LEASE_FORMAT_VERSION;
    buf[off++] = cmd->type;
    off = put_le(buf, off, (uint64_t)cmd->id, 8);
    if (cmd->type == LEASE_CMD_GRANT) {
        off = put_le(buf, off, (uint64_t)cmd->ttl_ms, 8);
    } else if (cmd->type == LEASE_CMD_EXPIRE) {
        off = put_le(buf, off, cmd->granted_index, 8);
    }
    CC_ASSERT(off <= LEASE_CMD_BYTES_MAX);
    *n = off;
    return 0;
}

int lease_encode_grant(int64_t id, int64_t ttl_ms, uint8_t *buf, size_t cap, size_t *n)
{
    struct lease_cmd c = {.type = LEASE_CMD_GRANT, .id = id, .ttl_ms = ttl_ms};
    return lease_encode(&c, buf, cap, n);
}

int lease_encode_revoke(int64_t id, uint8_t *buf, size_t cap, size_t *n)
{
    struct lease_cmd c = {.type = LEASE_CMD_REVOKE, .id = id};
    return lease_encode(&c, buf, cap, n);
}

int lease_encode_expire(int64_t id, uint64_t granted_index, uint8_t *buf, size_t cap, size_t *n)
{
    struct lease_cmd c = {.type = LEASE_CMD_EXPIRE, .id = id, .granted_index = granted_index};
    return lease_encode(&c, buf, cap, n);
}

int lease_decode(const uint8_t *buf, size_t n, struct lease_cmd *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || n < 3 || buf[0] != LEASE_CMD_TAG) {
        return LEASE_EMALFORMED;
    }
    if (buf[1] != LEASE_FORMAT_VERSION) {
        return LEASE_EFORMAT;
    }
    struct le_reader r = {buf, n, 3};
    uint64_t x;
    bool ok = get_i64(&r, &out->id);
    switch (buf[2]) {
    case LEASE_CMD_GRANT:
        ok = ok && get_i64(&r, &out->ttl_ms);
        break;
    case LEASE_CMD_REVOKE:
        break;
    case LEASE_CMD_EXPIRE:
        ok = ok && le_read(&r, 8, &x);
        out->granted_index = ok ? x : 0;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok || r.off != r.n) {
        memset(out, 0, sizeof *out);
        return LEASE_EMALFORMED;
    }
    out->type = buf[2];
    int rv = check_cmd(out);
    if (rv != 0) {
        memset(out, 0, sizeof *out);
    }
    return rv;
}

/* ==== items ============================================================== */

/* (kind, bytes) order; bytes by memcmp, shorter first on a tie (kv's key order). */
static int item_cmp(uint8_t a_kind, const uint8_t *a, uint32_t a_len, uint8_t b_kind,
                    const uint8_t *b, uint32_t b_len)
{
    if (a_kind != b_kind) {
        return a_kind < b_kind ? -1 : 1;
    }
    uint32_t m = a_len < b_len ? a_len : b_len;
    int c = m > 0 ? memcmp(a, b, m) : 0;
    if (c != 0) {
        return c;
    }
    return (a_len > b_len) - (a_len < b_len);
}

static struct lease *find_lease(const struct lease_table *t, int64_t id,
                                struct kv_avl_node **parent_out, struct kv_avl_node ***link_out)
{
    struct kv_avl_node *parent = NULL;
    struct kv_avl_node *const *link = &t->leases.root;
    while (*link != NULL) {
        struct lease *l = LEASE_OF(*link);
        if (l->id == id) {
            return l;
        }
        parent = *link;
        link = id < l->id ? &parent->left : &parent->right;
    }
    if (parent_out != NULL) {
        *parent_out = parent;
        *link_out = (struct kv_avl_node **)link;
    }
    return NULL;
}

static struct item *find_item(const struct lease *l, uint8_t kind, const uint8_t *bytes,
                              uint32_t len, struct kv_avl_node **parent_out,
                              struct kv_avl_node ***link_out)
{
    struct kv_avl_node *parent = NULL;
    struct kv_avl_node *const *link = &l->items.root;
    while (*link != NULL) {
        struct item *it = ITEM_OF(*link);
        int c = item_cmp(kind, bytes, len, it->kind, it->bytes, it->len);
        if (c == 0) {
            return it;
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

static int check_item(uint8_t kind, const uint8_t *bytes, uint32_t len)
{
    if (kind != LEASE_ITEM_KEY && kind != LEASE_ITEM_LOCK) {
        return LEASE_EINVAL;
    }
    if (len == 0 || len > LEASE_ITEM_BYTES_MAX) {
        return LEASE_EITEMTOOBIG;
    }
    return bytes == NULL ? LEASE_EINVAL : 0;
}

static void count_item(struct lease *l, uint8_t kind, int delta)
{
    uint32_t *c = kind == LEASE_ITEM_KEY ? &l->n_keys : &l->n_locks;
    CC_ASSERT(delta > 0 || *c > 0);
    *c = (uint32_t)((int64_t)*c + delta);
}

int lease_item_check(const struct lease_table *t, int64_t id, uint8_t kind, const uint8_t *bytes,
                     uint32_t len)
{
    int rv = check_item(kind, bytes, len);
    if (rv != 0) {
        return rv;
    }
    const struct lease *l = find_lease(t, id, NULL, NULL);
    if (l == NULL) {
        return LEASE_ENOTFOUND;
    }
    if (find_item(l, kind, bytes, len, NULL, NULL) != NULL) {
        return 0;
    }
    return l->items.n_nodes >= LEASE_ITEMS_MAX ? LEASE_EITEMSFULL : 0;
}

int lease_attach(struct lease_table *t, int64_t id, uint8_t kind, const uint8_t *bytes,
                 uint32_t len)
{
    int rv = lease_item_check(t, id, kind, bytes, len);
    if (rv != 0) {
        return rv;
    }
    struct lease *l = find_lease(t, id, NULL, NULL);
    struct kv_avl_node *parent, **link;
    if (find_item(l, kind, bytes, len, &parent, &link) != NULL) {
        return 0;
    }
    struct item *it = malloc(sizeof *it + len);
    CC_ASSERT(it != NULL); /* apply path: see lease.h on allocation failure */
    it->kind = kind;
    it->len = len;
    memcpy(it->bytes, bytes, len);
    kv_avl_link(&l->items, parent, link, &it->node);
    count_item(l, kind, +1);
    return 0;
}

int lease_detach(struct lease_table *t, int64_t id, uint8_t kind, const uint8_t *bytes,
                 uint32_t len)
{
    struct lease *l = find_lease(t, id, NULL, NULL);
    if (l == NULL) {
        return LEASE_ENOTFOUND;
    }
    if (check_item(kind, bytes, len) != 0) {
        return 0; /* such an item cannot be attached */
    }
    struct item *it = find_item(l, kind, bytes, len, NULL, NULL);
    if (it != NULL) {
        kv_avl_remove(&l->items, &it->node);
        count_item(l, kind, -1);
        free(it);
    }
    return 0;
}

bool lease_item_attached(const struct lease_table *t, int64_t id, uint8_t kind,
                         const uint8_t *bytes, uint32_t len)
{
    const struct lease *l = find_lease(t, id, NULL, NULL);
    return l != NULL && check_item(kind, bytes, len) == 0 &&
           find_item(l, kind, bytes, len, NULL, NULL) != NULL;
}

static void free_item_node(struct kv_avl_node *n, void *arg)
{
    free(ITEM_OF(n));
}

static void free_lease(struct lease *l)
{
    kv_avl_clear(&l->items, free_item_node, NULL);
    free(l);
}

/* ==== apply ============================================================== */

/* Moves a dying lease's items into res as one block (items array, then bytes). */
static void take_items(const struct lease *l, struct lease_result *res)
{
    uint32_t n_items = (uint32_t)l->items.n_nodes;
    if (n_items == 0) {
        return;
    }
    size_t bytes = 0;
    for (struct kv_avl_node *n = kv_avl_first(&l->items); n != NULL; n = kv_avl_next(n)) {
        bytes += ITEM_OF(n)->len;
    }
    size_t head = (size_t)n_items * sizeof(struct lease_item);
    uint8_t *mem = malloc(head + bytes);
    CC_ASSERT(mem != NULL); /* apply path: see lease.h on allocation failure */
    struct lease_item *items = (struct lease_item *)(void *)mem;
    uint8_t *p = mem + head;
    uint32_t i = 0;
    for (struct kv_avl_node *n = kv_avl_first(&l->items); n != NULL; n = kv_avl_next(n)) {
        const struct item *it = ITEM_OF(n);
        memcpy(p, it->bytes, it->len);
        items[i++] = (struct lease_item){.bytes = p, .len = it->len, .kind = it->kind};
        p += it->len;
    }
    CC_ASSERT(i == n_items);
    res->mem = mem;
    res->items = items;
    res->n_items = n_items;
    res->n_keys = l->n_keys;
    res->n_locks = l->n_locks;
    CC_ASSERT(res->n_keys + res->n_locks == n_items);
}

static int apply_grant(struct lease_table *t, const struct lease_cmd *c, uint64_t index,
                       struct lease_result *res)
{
    int64_t id = c->id;
    if (id == 0) {
        if (t->next_id > (uint64_t)INT64_MAX) {
            return LEASE_EIDSPACE;
        }
        id = (int64_t)t->next_id;
    }
    struct kv_avl_node *parent, **link;
    if (find_lease(t, id, &parent, &link) != NULL) {
        return LEASE_EEXISTS; /* never for an allocated id: next_id is above them all */
    }
    if (t->leases.n_nodes >= LEASE_COUNT_MAX) {
        return LEASE_EFULL;
    }
    struct lease *l = calloc(1, sizeof *l);
    CC_ASSERT(l != NULL); /* apply path: see lease.h on allocation failure */
    l->id = id;
    l->ttl_ms = c->ttl_ms;
    l->granted_index = index;
    kv_avl_link(&t->leases, parent, link, &l->node);
    if ((uint64_t)id >= t->next_id) {
        t->next_id = (uint64_t)id + 1; /* at most INT64_MAX + 1: fits */
    }
    res->id = id;
    res->ttl_ms = l->ttl_ms;
    res->granted_index = index;
    return 0;
}

static int apply_end(struct lease_table *t, const struct lease_cmd *c, struct lease_result *res)
{
    struct lease *l = find_lease(t, c->id, NULL, NULL);
    if (l == NULL) {
        return LEASE_ENOTFOUND;
    }
    if (c->type == LEASE_CMD_EXPIRE && c->granted_index != l->granted_index) {
        return LEASE_ESTALE;
    }
    res->id = l->id;
    res->ttl_ms = l->ttl_ms;
    res->granted_index = l->granted_index;
    res->expired = c->type == LEASE_CMD_EXPIRE;
    take_items(l, res);
    kv_avl_remove(&t->leases, &l->node);
    free_lease(l);
    return 0;
}

int lease_apply(struct lease_table *t, const uint8_t *cmd, size_t n, uint64_t index,
                struct lease_result *res)
{
    CC_ASSERT(t != NULL);
    CC_ASSERT(index >= 1);
    memset(res, 0, sizeof *res);
    struct lease_cmd c;
    int rv = lease_decode(cmd, n, &c);
    if (rv == 0) {
        res->type = c.type;
        rv = c.type == LEASE_CMD_GRANT ? apply_grant(t, &c, index, res) : apply_end(t, &c, res);
    }
    if (rv != 0) {
        uint8_t type = res->type;
        lease_result_free(res);
        res->type = type;
        res->err = rv;
    }
    return rv;
}

void lease_result_free(struct lease_result *res)
{
    if (res == NULL) {
        return;
    }
    free(res->mem);
    memset(res, 0, sizeof *res);
}

/* ==== queries ============================================================ */

bool lease_exists(const struct lease_table *t, int64_t id)
{
    return find_lease(t, id, NULL, NULL) != NULL;
}

int lease_get(const struct lease_table *t, int64_t id, struct lease_info *out)
{
    const struct lease *l = find_lease(t, id, NULL, NULL);
    memset(out, 0, sizeof *out);
    if (l == NULL) {
        return LEASE_ENOTFOUND;
    }
    out->id = l->id;
    out->ttl_ms = l->ttl_ms;
    out->granted_index = l->granted_index;
    out->n_keys = l->n_keys;
    out->n_locks = l->n_locks;
    return 0;
}

int lease_room(const struct lease_table *t, int64_t id, uint32_t *free_slots)
{
    const struct lease *l = find_lease(t, id, NULL, NULL);
    if (l == NULL) {
        *free_slots = 0;
        return LEASE_ENOTFOUND;
    }
    CC_ASSERT(l->items.n_nodes <= LEASE_ITEMS_MAX);
    *free_slots = LEASE_ITEMS_MAX - (uint32_t)l->items.n_nodes;
    return 0;
}

uint32_t lease_list(const struct lease_table *t, int64_t after_id, int64_t *ids, uint32_t max)
{
    /* Descend to the first id > after_id, then step in order: O(log n + max). */
    struct kv_avl_node *n = t->leases.root, *best = NULL;
    while (n != NULL) {
        if (LEASE_OF(n)->id > after_id) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    uint32_t k = 0;
    for (n = best; n != NULL && k < max; n = kv_avl_next(n)) {
        ids[k++] = LEASE_OF(n)->id;
    }
    return k;
}

int lease_items(const struct lease_table *t, int64_t id, uint32_t skip, uint32_t budget,
                lease_item_cb item_cb, void *arg)
{
    const struct lease *l = find_lease(t, id, NULL, NULL);
    if (l == NULL) {
        return LEASE_ENOTFOUND;
    }
    uint32_t i = 0, done = 0;
    for (struct kv_avl_node *n = kv_avl_first(&l->items); n != NULL && done < budget;
         n = kv_avl_next(n), i++) {
        if (i < skip) {
            continue;
        }
        const struct item *it = ITEM_OF(n);
        struct lease_item v = {.bytes = it->bytes, .len = it->len, .kind = it->kind};
        int rv = item_cb(arg, &v);
        if (rv != 0) {
            return rv;
        }
        done++;
    }
    return 0;
}

uint32_t lease_count(const struct lease_table *t)
{
    return (uint32_t)t->leases.n_nodes;
}

int64_t lease_next_id(const struct lease_table *t)
{
    return t->next_id > (uint64_t)INT64_MAX ? 0 : (int64_t)t->next_id;
}

/* ==== canonical image (digest, snapshot) ================================= */

/* Where the canonical stream goes: counted, written, or hashed (as in sm/kv.c). */
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
    put_le(b, 0, v, n_bytes);
    sink_bytes(s, b, n_bytes);
}

static void canonical_stream(const struct lease_table *t, struct sink *s)
{
    sink_bytes(s, SNAP_MAGIC, 4);
    sink_le(s, SNAP_FORMAT_VERSION, 4);
    sink_le(s, t->next_id, 8);
    sink_le(s, t->leases.n_nodes, 4);
    for (struct kv_avl_node *n = kv_avl_first(&t->leases); n != NULL; n = kv_avl_next(n)) {
        const struct lease *l = LEASE_OF(n);
        sink_le(s, (uint64_t)l->id, 8);
        sink_le(s, (uint64_t)l->ttl_ms, 8);
        sink_le(s, l->granted_index, 8);
        sink_le(s, l->items.n_nodes, 4);
        for (struct kv_avl_node *m = kv_avl_first(&l->items); m != NULL; m = kv_avl_next(m)) {
            const struct item *it = ITEM_OF(m);
            sink_le(s, it->kind, 1);
            sink_le(s, it->len, 4);
            sink_bytes(s, it->bytes, it->len);
        }
    }
}

uint64_t lease_digest(const struct lease_table *t)
{
    struct sink s = {.hash = true, .h = HASH_FNV_INIT};
    canonical_stream(t, &s);
    return s.h;
}

int lease_snapshot_encode(const struct lease_table *t, uint8_t **buf, size_t *n)
{
    struct sink s = {0};
    canonical_stream(t, &s);
    size_t size = s.n + 4;
    uint8_t *p = malloc(size);
    if (p == NULL) {
        return LEASE_ENOMEM;
    }
    s = (struct sink){.p = p};
    canonical_stream(t, &s);
    CC_ASSERT(s.n + 4 == size);
    le_put_u32(p + s.n, crc32c(0, p, s.n));
    *buf = p;
    *n = size;
    return 0;
}

/* Reads one lease's items, appending each after the last (they must ascend). */
static int snap_read_items(struct lease *l, struct le_reader *r, uint32_t n_items)
{
    for (uint32_t i = 0; i < n_items; i++) {
        uint64_t kind;
        uint32_t len;
        if (!le_read(r, 1, &kind) || !get_u32(r, &len) || r->n - r->off < len ||
            check_item((uint8_t)kind, r->p + r->off, len) != 0) {
            return LEASE_ECORRUPT;
        }
        const uint8_t *bytes = r->p + r->off;
        r->off += len;
        struct kv_avl_node *last = kv_avl_last(&l->items);
        if (last != NULL) {
            const struct item *p = ITEM_OF(last);
            if (item_cmp(p->kind, p->bytes, p->len, (uint8_t)kind, bytes, len) >= 0) {
                return LEASE_ECORRUPT; /* items must strictly ascend */
            }
        }
        struct item *it = malloc(sizeof *it + len);
        if (it == NULL) {
            return LEASE_ENOMEM;
        }
        it->kind = (uint8_t)kind;
        it->len = len;
        memcpy(it->bytes, bytes, len);
        kv_avl_link(&l->items, last, last != NULL ? &last->right : &l->items.root, &it->node);
        count_item(l, it->kind, +1);
    }
    return 0;
}

static int snap_read_leases(struct lease_table *t, struct le_reader *r, uint32_t n_leases)
{
    for (uint32_t i = 0; i < n_leases; i++) {
        int64_t id, ttl_ms;
        uint64_t granted_index;
        uint32_t n_items;
        if (!get_i64(r, &id) || !get_i64(r, &ttl_ms) || !le_read(r, 8, &granted_index) ||
            !get_u32(r, &n_items)) {
            return LEASE_ECORRUPT;
        }
        struct kv_avl_node *last = kv_avl_last(&t->leases);
        if (id < 1 || (last != NULL && LEASE_OF(last)->id >= id) || (uint64_t)id >= t->next_id ||
            check_ttl(ttl_ms) != 0 || granted_index < 1 || n_items > LEASE_ITEMS_MAX ||
            n_items > (r->n - r->off) / SNAP_ITEM_MIN_BYTES) {
            return LEASE_ECORRUPT;
        }
        struct lease *l = calloc(1, sizeof *l);
        if (l == NULL) {
            return LEASE_ENOMEM;
        }
        l->id = id;
        l->ttl_ms = ttl_ms;
        l->granted_index = granted_index;
        /* Linked first so lease_free reclaims it on any later error. */
        kv_avl_link(&t->leases, last, last != NULL ? &last->right : &t->leases.root, &l->node);
        int rv = snap_read_items(l, r, n_items);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int lease_snapshot_decode(const uint8_t *buf, size_t n, struct lease_table **out)
{
    *out = NULL;
    if (buf == NULL || n < SNAP_HEADER_BYTES + 4) {
        return LEASE_ECORRUPT;
    }
    if (crc32c(0, buf, n - 4) != le_get_u32(buf + n - 4) || memcmp(buf, SNAP_MAGIC, 4) != 0) {
        return LEASE_ECORRUPT;
    }
    struct le_reader r = {buf, n - 4, 4};
    uint32_t format, n_leases;
    uint64_t next_id;
    if (!get_u32(&r, &format)) {
        return LEASE_ECORRUPT;
    }
    if (format != SNAP_FORMAT_VERSION) {
        return LEASE_EFORMAT;
    }
    if (!le_read(&r, 8, &next_id) || !get_u32(&r, &n_leases) || next_id < 1 ||
        next_id > (uint64_t)INT64_MAX + 1 || n_leases > LEASE_COUNT_MAX ||
        n_leases > (r.n - r.off) / SNAP_LEASE_BYTES) {
        return LEASE_ECORRUPT;
    }
    struct lease_table *t;
    int rv = lease_new(&t);
    if (rv != 0) {
        return rv;
    }
    t->next_id = next_id;
    rv = snap_read_leases(t, &r, n_leases);
    if (rv == 0 && r.off != r.n) {
        rv = LEASE_ECORRUPT;
    }
    if (rv != 0) {
        goto err_after_table;
    }
    *out = t;
    return 0;

err_after_table:
    lease_free(t);
    CC_ASSERT(rv != 0);
    return rv;
}

/* ==== lifecycle ========================================================== */

int lease_new(struct lease_table **out)
{
    struct lease_table *t = calloc(1, sizeof *t);
    *out = t;
    if (t == NULL) {
        return LEASE_ENOMEM;
    }
    t->next_id = 1;
    return 0;
}

static void free_lease_node(struct kv_avl_node *n, void *arg)
{
    free_lease(LEASE_OF(n));
}

void lease_free(struct lease_table *t)
{
    if (t == NULL) {
        return;
    }
    kv_avl_clear(&t->leases, free_lease_node, NULL);
    free(t);
}

/* ==== errors ============================================================= */

const char *lease_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case LEASE_EINVAL:
        return "invalid argument";
    case LEASE_ENOMEM:
        return "out of memory";
    case LEASE_EMALFORMED:
        return "malformed lease command";
    case LEASE_EFORMAT:
        return "unsupported lease format version";
    case LEASE_ENOTFOUND:
        return "lease not found";
    case LEASE_EEXISTS:
        return "lease id already in use";
    case LEASE_ETTLSHORT:
        return "ttl below LEASE_TTL_MS_MIN";
    case LEASE_ETTLLONG:
        return "ttl above LEASE_TTL_MS_MAX";
    case LEASE_EFULL:
        return "too many leases (LEASE_COUNT_MAX)";
    case LEASE_EITEMSFULL:
        return "too many items attached to the lease (LEASE_ITEMS_MAX)";
    case LEASE_EITEMTOOBIG:
        return "item empty or longer than LEASE_ITEM_BYTES_MAX";
    case LEASE_ESTALE:
        return "expiry for an earlier grant of this lease id";
    case LEASE_EIDSPACE:
        return "lease ids exhausted";
    case LEASE_ECORRUPT:
        return "lease snapshot is corrupt";
    default:
        return "unknown lease error";
    }
}
