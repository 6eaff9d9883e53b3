/* lease_timer.c -- the leader's lease deadlines (contract and safety argument in
 * lease_timer.h). Pure: time is an argument; no IO, no clock.
 *
 * Layout: one struct entry per tracked lease, indexed twice:
 *   - t->by_id: AVL (sm/kv_avl.h) by lease id, for keepalive, revoke and lookup;
 *   - t->heap: a binary min-heap of entry pointers by (due, id), where due is the
 *     deadline, or offered_ms + LEASE_TIMER_RETRY_MS once the entry was offered for
 *     expiry. Each entry knows its heap slot, so any entry can be re-keyed or removed in
 *     O(log n).
 *
 * Invariants: active == false implies empty; heap[i]->heap_i == i; the heap property on
 * (due, id); a deadline only ever grows (keepalive and become_leader take maxima).
 *
 * Sections: types | heap | index | lifecycle | events | keepalive and queries | errors.
 */
#include "node/lease_timer.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/grow.h"
#include "sm/kv_avl.h"

/* ==== types ============================================================== */

struct entry {
    struct kv_avl_node node; /* in t->by_id */
    int64_t id;
    int64_t ttl_ms;
    uint64_t granted_index;
    uint64_t deadline_ms;
    uint64_t offered_ms; /* when last offered by next_expired; valid if offered */
    bool offered;
    uint32_t heap_i;
};

struct lease_timer {
    bool active;
    struct kv_avl by_id;
    struct entry **heap;
    uint32_t n_heap;
    uint32_t cap_heap;
};

#define ENTRY_OF(n) KV_AVL_ENTRY(n, struct entry, node)

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t due(const struct entry *e)
{
    return e->offered ? sat_add(e->offered_ms, LEASE_TIMER_RETRY_MS) : e->deadline_ms;
}

/* ==== heap =============================================================== */

static bool before(const struct entry *a, const struct entry *b)
{
    uint64_t da = due(a), db = due(b);
    return da != db ? da < db : a->id < b->id;
}

static void heap_set(struct lease_timer *t, uint32_t i, struct entry *e)
{
    t->heap[i] = e;
    e->heap_i = i;
}

static void sift_up(struct lease_timer *t, uint32_t i)
{
    struct entry *e = t->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(e, t->heap[parent])) {
            break;
        }
        heap_set(t, i, t->heap[parent]);
        i = parent;
    }
    heap_set(t, i, e);
}

static void sift_down(struct lease_timer *t, uint32_t i)
{
    struct entry *e = t->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        const struct entry *best = e;
        if (l < t->n_heap && before(t->heap[l], best)) {
            m = l;
            best = t->heap[l];
        }
        if (r < t->n_heap && before(t->heap[r], best)) {
            m = r;
        }
        if (m == i) {
            break;
        }
        heap_set(t, i, t->heap[m]);
        i = m;
    }
    heap_set(t, i, e);
}

/* Restores the heap after e's key changed either way. */
static void heap_fix(struct lease_timer *t, struct entry *e)
{
    sift_up(t, e->heap_i);
    sift_down(t, e->heap_i);
}

static bool heap_push(struct lease_timer *t, struct entry *e)
{
    if (!cc_grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof(struct entry *))) {
        return false;
    }
    heap_set(t, t->n_heap++, e);
    sift_up(t, e->heap_i);
    return true;
}

static void heap_remove(struct lease_timer *t, struct entry *e)
{
    uint32_t i = e->heap_i;
    CC_ASSERT(i < t->n_heap && t->heap[i] == e);
    struct entry *last = t->heap[--t->n_heap];
    if (last != e) {
        heap_set(t, i, last);
        heap_fix(t, last);
    }
}

/* ==== index ============================================================== */

static struct entry *find(const struct lease_timer *t, int64_t id, struct kv_avl_node **parent_out,
                          struct kv_avl_node ***link_out)
{
    struct kv_avl_node *parent = NULL;
    struct kv_avl_node *const *link = &t->by_id.root;
    while (*link != NULL) {
        struct entry *e = ENTRY_OF(*link);
        if (e->id == id) {
            return e;
        }
        parent = *link;
        link = id < e->id ? &parent->left : &parent->right;
    }
    if (parent_out != NULL) {
        *parent_out = parent;
        *link_out = (struct kv_avl_node **)link;
    }
    return NULL;
}

/* Tracks id with at least `deadline`. An entry already tracked keeps the later
 * deadline, except that one whose deadline has passed stays expired: its EXPIRE may be
 * in the log already, and reviving it would let a keepalive succeed just before that
 * EXPIRE commits. */
static int track(struct lease_timer *t, int64_t id, int64_t ttl_ms, uint64_t granted_index,
                 uint64_t now_ms, uint64_t deadline)
{
    struct kv_avl_node *parent, **link;
    struct entry *e = find(t, id, &parent, &link);
    if (e != NULL) {
        if (e->deadline_ms > now_ms && deadline > e->deadline_ms) {
            CC_ASSERT(!e->offered);
            e->deadline_ms = deadline;
            sift_down(t, e->heap_i);
        }
        return 0;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        return LEASE_TIMER_ENOMEM;
    }
    e->id = id;
    e->ttl_ms = ttl_ms;
    e->granted_index = granted_index;
    e->deadline_ms = deadline;
    if (!heap_push(t, e)) {
        free(e);
        return LEASE_TIMER_ENOMEM;
    }
    kv_avl_link(&t->by_id, parent, link, &e->node);
    return 0;
}

static void untrack(struct lease_timer *t, struct entry *e)
{
    heap_remove(t, e);
    kv_avl_remove(&t->by_id, &e->node);
    free(e);
}

/* ==== lifecycle ========================================================== */

int lease_timer_new(struct lease_timer **out)
{
    *out = calloc(1, sizeof **out);
    return *out == NULL ? LEASE_TIMER_ENOMEM : 0;
}

static void free_entry_node(struct kv_avl_node *n, void *arg)
{
    free(ENTRY_OF(n));
}

void lease_timer_on_step_down(struct lease_timer *t)
{
    kv_avl_clear(&t->by_id, free_entry_node, NULL);
    t->n_heap = 0;
    t->active = false;
}

void lease_timer_free(struct lease_timer *t)
{
    if (t == NULL) {
        return;
    }
    lease_timer_on_step_down(t);
    free(t->heap);
    free(t);
}

bool lease_timer_active(const struct lease_timer *t)
{
    return t->active;
}

/* ==== events ============================================================= */

int lease_timer_on_become_leader(struct lease_timer *t, const struct lease_table *leases,
                                 uint64_t now_ms, uint64_t extend_ms)
{
    if (extend_ms > LEASE_TIMER_EXTEND_MS_MAX) {
        return LEASE_TIMER_EINVAL;
    }
    /* Drop entries the table no longer has (bounded by the entries). */
    for (struct kv_avl_node *n = kv_avl_first(&t->by_id); n != NULL;) {
        struct entry *e = ENTRY_OF(n);
        n = kv_avl_next(n);
        if (!lease_exists(leases, e->id)) {
            untrack(t, e);
        }
    }
    /* Then every lease, paged through the table (bounded by LEASE_COUNT_MAX). */
    int64_t ids[256], after = 0;
    for (;;) {
        uint32_t k = lease_list(leases, after, ids, 256);
        for (uint32_t i = 0; i < k; i++) {
            struct lease_info info;
            int rv = lease_get(leases, ids[i], &info);
            CC_ASSERT(rv == 0);
            uint64_t deadline = sat_add(sat_add(now_ms, (uint64_t)info.ttl_ms), extend_ms);
            rv = track(t, info.id, info.ttl_ms, info.granted_index, now_ms, deadline);
            if (rv != 0) {
                lease_timer_on_step_down(t);
                return rv;
            }
        }
        if (k < 256) {
            break;
        }
        after = ids[k - 1];
    }
    t->active = true;
    return 0;
}

int lease_timer_on_grant(struct lease_timer *t, int64_t id, int64_t ttl_ms, uint64_t granted_index,
                         uint64_t now_ms)
{
    if (id < 1 || ttl_ms < LEASE_TTL_MS_MIN || ttl_ms > LEASE_TTL_MS_MAX) {
        return LEASE_TIMER_EINVAL;
    }
    if (!t->active) {
        return 0;
    }
    return track(t, id, ttl_ms, granted_index, now_ms, sat_add(now_ms, (uint64_t)ttl_ms));
}

void lease_timer_on_revoke(struct lease_timer *t, int64_t id)
{
    struct entry *e = find(t, id, NULL, NULL);
    if (e != NULL) {
        untrack(t, e);
    }
}

/* ==== keepalive and queries ============================================== */

int lease_timer_keepalive(struct lease_timer *t, int64_t id, uint64_t now_ms, uint64_t *deadline_ms,
                          int64_t *ttl_ms)
{
    if (!t->active) {
        return LEASE_TIMER_ENOTLEADER;
    }
    struct entry *e = find(t, id, NULL, NULL);
    if (e == NULL) {
        return LEASE_TIMER_ENOTFOUND;
    }
    if (now_ms >= e->deadline_ms) {
        return LEASE_TIMER_EEXPIRED; /* expiry is final, even before EXPIRE commits */
    }
    uint64_t d = sat_add(now_ms, (uint64_t)e->ttl_ms);
    if (d > e->deadline_ms) {
        e->deadline_ms = d;
        CC_ASSERT(!e->offered); /* offered implies the deadline passed */
        sift_down(t, e->heap_i);
    }
    *deadline_ms = e->deadline_ms;
    *ttl_ms = e->ttl_ms;
    return 0;
}

int lease_timer_remaining_ms(const struct lease_timer *t, int64_t id, uint64_t now_ms,
                             uint64_t *remaining_ms)
{
    *remaining_ms = 0;
    if (!t->active) {
        return LEASE_TIMER_ENOTLEADER;
    }
    const struct entry *e = find(t, id, NULL, NULL);
    if (e == NULL) {
        return LEASE_TIMER_ENOTFOUND;
    }
    *remaining_ms = e->deadline_ms > now_ms ? e->deadline_ms - now_ms : 0;
    return 0;
}

uint32_t lease_timer_next_expired(struct lease_timer *t, uint64_t now_ms,
                                  struct lease_timer_expiry *out, uint32_t budget)
{
    uint32_t k = 0;
    /* Each offer moves the entry's due to now + RETRY > now, so the loop ends within
     * budget iterations and never offers one lease twice per call. */
    while (t->active && k < budget && t->n_heap > 0 && due(t->heap[0]) <= now_ms) {
        struct entry *e = t->heap[0];
        CC_ASSERT(e->deadline_ms <= now_ms);
        out[k++] = (struct lease_timer_expiry){e->id, e->granted_index};
        e->offered = true;
        e->offered_ms = now_ms;
        sift_down(t, 0);
    }
    return k;
}

uint64_t lease_timer_next_due_ms(const struct lease_timer *t)
{
    return (t->active && t->n_heap > 0) ? due(t->heap[0]) : UINT64_MAX;
}

uint32_t lease_timer_count(const struct lease_timer *t)
{
    return t->n_heap;
}

/* ==== errors ============================================================= */

const char *lease_timer_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case LEASE_TIMER_ENOTFOUND:
        return "lease not found";
    case LEASE_TIMER_EEXPIRED:
        return "lease expired";
    case LEASE_TIMER_ENOTLEADER:
        return "not the leader: lease deadlines live on the leader";
    case LEASE_TIMER_ENOMEM:
        return "out of memory";
    case LEASE_TIMER_EINVAL:
        return "invalid argument";
    default:
        return "unknown lease timer error";
    }
}
