/* watch.c -- the watch hub behind GET /v1/watch/{key} (watch.h has the contract,
 * docs/API.md "Watch" the user's view).
 *
 * Everything runs on the node's loop thread. The hub is a node observer: on_applied()
 * runs after every applied command, with the command's KV changes (one revision), and
 * on_reset() after a snapshot replaced the state. Watchers never scan anything per
 * event: the changes are matched against the group index, each touched group with live
 * watchers serializes the revision once into a shared buffer, and each live watcher
 * queues a reference to it. Queued live events are written after the loop iteration
 * that applied them (a uv_check handle), small ones gathered into one write, so the
 * commands of one storage batch reach each socket in one send.
 *
 * Invariants (per watcher):
 *   - next_rev: every change in the watcher's range with a revision below next_rev has
 *     been queued (or lies in a queued snapshot), none at or above it has. Events leave
 *     in revision order, each once: CATCHUP replays history from next_rev and hands over
 *     to LIVE only when next_rev passed the store's revision, both on the loop thread, so
 *     no applied command can fall between the two (no gap) or land in both (no dup).
 *   - A LIVE watcher is linked in its group's member list; nothing else is.
 *   - A watcher is never cut silently: the cut queues a final error event naming the
 *     revision of the first event it did not queue as resume_revision, and every event
 *     before it is still delivered first.
 *   - Memory: a queue takes a live event only while under WATCH_QUEUE_BYTES_MAX (and
 *     the hub under WATCH_BUF_BYTES_TOTAL_MAX); catch-up and snapshot steps start only
 *     below their own marks, so history is pulled at the client's reading speed.
 *   - Reentrancy: http_stream_end() may make http.c call on_client_gone() for another
 *     watcher. A released watcher is unlinked at once but freed only when the outermost
 *     hub entry point returns (hub_enter/hub_leave, the zombie list), and loops over
 *     member lists iterate a copy (h->scratch) and skip released watchers.
 *
 * Sections: errors | lists | index | SSE bytes | queue | hub types | watcher lifecycle |
 * output | catch-up | snapshot | fan-out (observer) | timers | requests | hub lifecycle.
 */
#include "api/watch.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json_bytes.h"
#include "base/assert.h"
#include "base/grow.h"
#include "base/hash.h"
#include "base/le.h"
#include "sm/lease.h"
#include "sm/machine.h"

#define WATCH__BUCKETS_MIN 64u                       /* index hash buckets to start with */
#define WATCH__GROUPS_MAX  (2u * WATCH_WATCHERS_MAX) /* a watcher holds at most 2 groups */
#define WATCH__STOP        1                         /* catch-up callback: the step is full */
/* Pieces one drain writes: the stream buffer fills after about this many. */
#define WATCH__DRAIN_PIECES_MAX (HTTP_STREAM_BUFFER_BYTES_MAX / WATCH_WRITE_PIECE_BYTES + 2u)
#define WATCH__BUF_INITIAL      512u /* first allocation of an event buffer */

#define WATCH__CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ==== errors ============================================================== */

const char *watch_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case WATCH_EINVAL:
        return "invalid argument";
    case WATCH_ENOMEM:
        return "out of memory";
    case WATCH_ETOOMANY:
        return "too many watches open on this node";
    case WATCH_EKEYTOOBIG:
        return "watched key is too long";
    case WATCH_ESLOW:
        return "the client reads too slowly: its queue is full";
    case WATCH_EMEMORY:
        return "the watch hub's memory limit was reached";
    case WATCH_ESNAPTOOBIG:
        return "the snapshot of the watched range is too large";
    case WATCH_ESNAPRETRY:
        return "the snapshot's revision kept being compacted";
    default:
        return "unknown watch error";
    }
}

/* ==== lists =============================================================== */

static void wl_init(struct watch_link *l)
{
    l->prev = l->next = l;
}

static bool wl_linked(const struct watch_link *l)
{
    return l->next != l;
}

static void wl_push(struct watch_link *head, struct watch_link *l)
{
    CC_ASSERT(!wl_linked(l));
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void wl_remove(struct watch_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    wl_init(l);
}

/* ==== index =============================================================== */

static uint64_t ix_seed(uint8_t kind)
{
    return hash_fnv1a64(HASH_FNV_INIT, &kind, 1);
}

static struct watch_group *ix_lookup(const struct watch_index *ix, uint8_t kind, uint64_t hash,
                                     const uint8_t *bytes, uint32_t len)
{
    for (struct watch_group *g = ix->buckets[hash & (ix->n_buckets - 1)]; g; g = g->hash_next)
        if (g->hash == hash && g->kind == kind && g->key_len == len &&
            (len == 0 || memcmp(g->key, bytes, len) == 0))
            return g;
    return NULL;
}

int watch_index_init(struct watch_index *ix)
{
    memset(ix, 0, sizeof(*ix));
    ix->buckets = calloc(WATCH__BUCKETS_MIN, sizeof(struct watch_group *));
    ix->prefix_len_count = calloc(WATCH_KEY_BYTES_MAX + 1, sizeof(*ix->prefix_len_count));
    if (!ix->buckets || !ix->prefix_len_count) {
        free(ix->buckets);
        free(ix->prefix_len_count);
        memset(ix, 0, sizeof(*ix));
        return WATCH_ENOMEM;
    }
    ix->n_buckets = WATCH__BUCKETS_MIN;
    return 0;
}

void watch_index_fini(struct watch_index *ix)
{
    CC_ASSERT(ix->n_groups == 0);
    free(ix->buckets);
    free(ix->prefix_len_count);
    memset(ix, 0, sizeof(*ix));
}

struct watch_group *watch_index_find(const struct watch_index *ix, uint8_t kind,
                                     const uint8_t *bytes, uint32_t len)
{
    return ix_lookup(ix, kind, hash_fnv1a64(ix_seed(kind), bytes, len), bytes, len);
}

/* Doubles the buckets; on allocation failure the chains just grow longer. */
static void ix_grow(struct watch_index *ix)
{
    uint32_t n = ix->n_buckets * 2;
    struct watch_group **b = calloc(n, sizeof(struct watch_group *));
    if (!b)
        return;
    for (uint32_t i = 0; i < ix->n_buckets; i++) {
        struct watch_group *next;
        for (struct watch_group *g = ix->buckets[i]; g; g = next) {
            next = g->hash_next;
            g->hash_next = b[g->hash & (n - 1)];
            b[g->hash & (n - 1)] = g;
        }
    }
    free(ix->buckets);
    ix->buckets = b;
    ix->n_buckets = n;
}

static uint8_t *ix_dup(const uint8_t *p, uint32_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

/* The group's history and range span (kv.h rules): the key itself; for a prefix
 * [prefix, prefix_end), or [prefix, +inf) ("\0" as end) when no end exists, and the
 * empty prefix as ["\0", +inf): every key, as keys are non-empty. */
static int ix_set_range(struct watch_group *g)
{
    static const uint8_t zero = 0;
    if (g->kind == WATCH_KIND_LEASE)
        return 0;
    if (g->kind == WATCH_KIND_KEY || g->key_len > 0) {
        g->rkey = ix_dup(g->key, g->key_len);
        g->rkey_len = g->key_len;
    } else {
        g->rkey = ix_dup(&zero, 1);
        g->rkey_len = 1;
    }
    if (!g->rkey)
        return WATCH_ENOMEM;
    if (g->kind == WATCH_KIND_KEY)
        return 0;
    g->rend = malloc(g->key_len ? g->key_len : 1);
    if (!g->rend)
        return WATCH_ENOMEM;
    if (g->key_len == 0 || !kv_prefix_end(g->key, g->key_len, g->rend, &g->rend_len)) {
        g->rend[0] = 0;
        g->rend_len = 1;
    }
    return 0;
}

static void ix_group_free(struct watch_group *g)
{
    free(g->rkey);
    free(g->rend);
    free(g->evs);
    free(g);
}

int watch_index_ref(struct watch_index *ix, uint8_t kind, const uint8_t *bytes, uint32_t len,
                    struct watch_group **out)
{
    CC_ASSERT(bytes != NULL || len == 0);
    if (kind < WATCH_KIND_KEY || kind > WATCH_KIND_LEASE || (kind == WATCH_KIND_KEY && len == 0) ||
        (kind == WATCH_KIND_LEASE && len != 8))
        return WATCH_EINVAL;
    if (len > WATCH_KEY_BYTES_MAX)
        return WATCH_EKEYTOOBIG;
    uint64_t hash = hash_fnv1a64(ix_seed(kind), bytes, len);
    struct watch_group *g = ix_lookup(ix, kind, hash, bytes, len);
    if (g) {
        g->refs++;
        *out = g;
        return 0;
    }
    g = calloc(1, sizeof(*g) + len);
    if (!g)
        return WATCH_ENOMEM;
    g->kind = kind;
    g->key_len = len;
    if (len)
        memcpy(g->key, bytes, len);
    if (ix_set_range(g) != 0) {
        ix_group_free(g);
        return WATCH_ENOMEM;
    }
    if (ix->n_groups >= ix->n_buckets)
        ix_grow(ix);
    g->hash = hash;
    g->refs = 1;
    wl_init(&g->members);
    g->hash_next = ix->buckets[hash & (ix->n_buckets - 1)];
    ix->buckets[hash & (ix->n_buckets - 1)] = g;
    ix->n_groups++;
    if (kind == WATCH_KIND_PREFIX) {
        ix->n_prefix_groups++;
        ix->prefix_len_count[len]++;
    }
    *out = g;
    return 0;
}

void watch_index_unref(struct watch_index *ix, struct watch_group *g)
{
    CC_ASSERT(g->refs > 0);
    if (--g->refs > 0)
        return;
    CC_ASSERT(!wl_linked(&g->members));
    CC_ASSERT(g->n_members == 0);
    struct watch_group **pp = &ix->buckets[g->hash & (ix->n_buckets - 1)];
    while (*pp != g) {
        CC_ASSERT(*pp != NULL); /* a live group is always in its chain */
        pp = &(*pp)->hash_next;
    }
    *pp = g->hash_next;
    ix->n_groups--;
    if (g->kind == WATCH_KIND_PREFIX) {
        CC_ASSERT(ix->prefix_len_count[g->key_len] > 0);
        ix->prefix_len_count[g->key_len]--;
        ix->n_prefix_groups--;
    }
    ix_group_free(g);
}

void watch_index_match(const struct watch_index *ix, const uint8_t *key, uint32_t key_len,
                       watch_match_cb match_cb, void *arg)
{
    if (ix->n_prefix_groups > 0) {
        uint32_t last = key_len < WATCH_KEY_BYTES_MAX ? key_len : WATCH_KEY_BYTES_MAX;
        uint64_t h = ix_seed(WATCH_KIND_PREFIX); /* the hash of key[0, len) as len grows */
        for (uint32_t len = 0;; len++) {
            if (ix->prefix_len_count[len] > 0) {
                struct watch_group *g = ix_lookup(ix, WATCH_KIND_PREFIX, h, key, len);
                if (g)
                    match_cb(arg, g);
            }
            if (len == last)
                break;
            h = hash_fnv1a64(h, key + len, 1);
        }
    }
    if (ix->n_groups > ix->n_prefix_groups && key_len > 0) {
        struct watch_group *g = watch_index_find(ix, WATCH_KIND_KEY, key, key_len);
        if (g)
            match_cb(arg, g);
    }
}

/* ==== SSE bytes =========================================================== */

struct watch_buf *watch_buf_new(size_t cap, uint64_t *acct)
{
    if (cap < 64)
        cap = 64;
    struct watch_buf *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->refs = 1;
    b->acct = acct;
    b->n = 0;
    b->cap = cap;
    if (acct)
        *acct += cap;
    return b;
}

bool watch_buf_append(struct watch_buf **bp, const void *p, size_t n)
{
    struct watch_buf *b = *bp;
    CC_ASSERT(b->refs == 1); /* a shared buffer is complete: nobody appends to it */
    if (n == 0)
        return true;
    if (n > b->cap - b->n) {
        size_t cap = b->cap;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 4)
                return false;
            cap *= 2;
        }
        struct watch_buf *nb = realloc(b, sizeof(*b) + cap);
        if (!nb)
            return false;
        if (nb->acct)
            *nb->acct += cap - nb->cap;
        nb->cap = cap;
        *bp = b = nb;
    }
    memcpy(b->bytes + b->n, p, n);
    b->n += n;
    return true;
}

void watch_buf_ref(struct watch_buf *b)
{
    CC_ASSERT(b->refs > 0);
    b->refs++;
}

void watch_buf_unref(struct watch_buf *b)
{
    if (!b)
        return;
    CC_ASSERT(b->refs > 0);
    if (--b->refs > 0)
        return;
    if (b->acct) {
        CC_ASSERT(*b->acct >= b->cap);
        *b->acct -= b->cap;
    }
    free(b);
}

static bool buf_printf(struct watch_buf **b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool buf_printf(struct watch_buf **b, const char *fmt, ...)
{
    char tmp[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    CC_ASSERT(n >= 0 && (size_t)n < sizeof(tmp)); /* callers print short, fixed shapes */
    return watch_buf_append(b, tmp, (size_t)n);
}

/* Appends the compact JSON of j and takes j. */
static bool buf_json(struct watch_buf **b, json_t *j)
{
    if (!j)
        return false;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!s)
        return false;
    bool ok = watch_buf_append(b, s, strlen(s)); /* jansson escapes NUL: no early end */
    free(s);
    return ok;
}

bool watch_sse_rev_begin(struct watch_buf **b, int64_t rev, uint8_t first_type)
{
    return buf_printf(b, "id: %" PRId64 "\nevent: %s\ndata: {\"revision\":%" PRId64 ",\"events\":[",
                      rev, first_type == KV_EVENT_DELETE ? "delete" : "put", rev);
}

bool watch_sse_rev_add(struct watch_buf **b, const struct kv_event *ev, bool first)
{
    if (!first && !watch_buf_append(b, ",", 1))
        return false;
    json_t *o = json_object();
    if (!o)
        return false;
    if (ev->type == KV_EVENT_DELETE) {
        json_object_set_new(o, "type", json_string("delete"));
        json_bytes_set(o, "key", ev->kv.key, ev->kv.key_len);
        json_object_set_new(o, "mod_revision", json_integer(ev->kv.mod_revision));
    } else {
        json_object_set_new(o, "type", json_string("put"));
        json_object_set_new(o, "kv", json_bytes_kv(&ev->kv, true));
    }
    return buf_json(b, o);
}

bool watch_sse_rev_end(struct watch_buf **b)
{
    return watch_buf_append(b, "]}\n\n", 4);
}

bool watch_sse_kv(struct watch_buf **b, const struct kv_kv *kv)
{
    return buf_json(b, json_bytes_kv(kv, true));
}

bool watch_sse_json(struct watch_buf **b, int64_t id, const char *event, json_t *data)
{
    if (!data)
        return false;
    bool ok = (id < 0 || buf_printf(b, "id: %" PRId64 "\n", id)) &&
              buf_printf(b, "event: %s\ndata: ", event);
    if (!ok) {
        json_decref(data);
        return false;
    }
    return buf_json(b, data) && watch_buf_append(b, "\n\n", 2);
}

/* ==== queue =============================================================== */

bool watch_queue_push(struct watch_queue *q, struct watch_buf *b)
{
    if (b->n == 0)
        return true;
    if (q->head + q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->bufs, q->bufs + q->head, q->n * sizeof(struct watch_buf *));
            q->head = 0;
        } else if (!cc_grow((void **)&q->bufs, &q->cap, q->n + 1, sizeof(struct watch_buf *))) {
            return false;
        }
    }
    watch_buf_ref(b);
    q->bufs[q->head + q->n++] = b;
    q->bytes += b->n;
    return true;
}

bool watch_queue_peek(const struct watch_queue *q, const uint8_t **p, size_t *n)
{
    if (q->n == 0)
        return false;
    const struct watch_buf *b = q->bufs[q->head];
    CC_ASSERT(q->off < b->n);
    *p = b->bytes + q->off;
    *n = b->n - q->off;
    return true;
}

bool watch_queue_peek_at(const struct watch_queue *q, uint32_t i, const uint8_t **p, size_t *n)
{
    if (i >= q->n)
        return false;
    const struct watch_buf *b = q->bufs[q->head + i];
    size_t off = i == 0 ? q->off : 0;
    CC_ASSERT(off < b->n);
    *p = b->bytes + off;
    *n = b->n - off;
    return true;
}

void watch_queue_consume(struct watch_queue *q, size_t n)
{
    CC_ASSERT(q->n > 0);
    struct watch_buf *b = q->bufs[q->head];
    CC_ASSERT(n <= b->n - q->off);
    CC_ASSERT(n <= q->bytes);
    q->off += n;
    q->bytes -= n;
    if (q->off < b->n)
        return;
    watch_buf_unref(b);
    q->head++;
    q->n--;
    q->off = 0;
    if (q->n == 0)
        q->head = 0;
}

void watch_queue_clear(struct watch_queue *q)
{
    for (uint32_t i = 0; i < q->n; i++)
        watch_buf_unref(q->bufs[q->head + i]);
    free(q->bufs);
    memset(q, 0, sizeof(*q));
}

int watch_admit(size_t queued, size_t n, uint64_t total)
{
    if (queued == 0)
        return 0;
    if (n > WATCH_QUEUE_BYTES_MAX || queued > WATCH_QUEUE_BYTES_MAX - n)
        return WATCH_ESLOW;
    if (total > WATCH_BUF_BYTES_TOTAL_MAX)
        return WATCH_EMEMORY;
    return 0;
}

/* ==== hub types ============================================================ */

enum watcher_state {
    W_READING = 1, /* waiting for the linearizable read that fixes the start */
    W_SNAPSHOT,    /* building the snapshot event */
    W_CATCHUP,     /* replaying history from next_rev */
    W_LIVE,        /* in its group's member list */
    W_CUT,         /* the final error is queued; ends when it is written */
    W_DONE,        /* released; freed by the reaper */
};

struct watcher {
    struct watch_hub *hub;
    struct http_req *req;
    struct watch_group *group;       /* key or prefix; NULL for a lease-only watch */
    struct watch_group *lease_group; /* NULL without ?lease= */
    struct watch_link live_link;     /* group->members while LIVE */
    struct watch_link lease_link;    /* lease_group->members once started */
    struct watch_link all_link;      /* hub->all until released */
    struct watch_link work_link;     /* hub->work while it needs steps */
    struct watch_link flush_link;    /* hub->flush: live events to write this iteration */
    struct watcher *zombie_next;
    struct watch_queue q;
    int64_t from_rev; /* as asked (0: now) */
    int64_t next_rev; /* see the essay */
    int64_t lease;
    /* SNAPSHOT: the event being built, its revision and the next key to read */
    struct watch_buf *snap;
    int64_t snap_rev;
    uint8_t *cursor;
    uint32_t cursor_len;
    uint32_t snap_keys;
    uint32_t snap_restarts;
    uint64_t deadline_ms; /* READING: read timeout; CUT: drain timeout (uv_now) */
    uint8_t state;        /* enum watcher_state */
    bool began;           /* the stream head was sent */
    bool lease_dead;      /* the lease event was queued */
};

struct watch_hub {
    uv_loop_t *loop;
    struct node *node;
    struct watch_index ix;
    struct watch_link all;  /* every watcher not yet released */
    struct watch_link work; /* watchers with steps to take, round robin */
    uint32_t n_work;
    uint32_t n_watchers;
    uint32_t busy;            /* nesting of hub entry points */
    struct watcher *zombies;  /* released, freed when busy drops to 0 */
    struct watcher **scratch; /* [WATCH_WATCHERS_MAX]: copies of member lists */
    bool scratch_busy;
    struct watch_group **touched; /* [WATCH__GROUPS_MAX]: groups of the current command */
    uint32_t n_touched;
    uv_timer_t tick;     /* work steps */
    uv_timer_t progress; /* bookmarks */
    uv_check_t flush;    /* after each loop iteration: writes the live events it queued */
    struct watch_link flush_list;
    uint8_t *gather; /* [WATCH_WRITE_PIECE_BYTES]: small queued events joined into one write */
    uint32_t n_open_handles;
    bool in_tick;
    bool freeing;
    int64_t rev_seen;   /* the store's revision after the last applied command */
    uint64_t buf_bytes; /* every watch_buf this hub made, while alive */
    struct watch_stats st;
};

/* ==== watcher lifecycle ===================================================== */

static void on_tick(uv_timer_t *t);
static void on_flush(uv_check_t *c);

static void hub_enter(struct watch_hub *h)
{
    h->busy++;
}

static void hub_leave(struct watch_hub *h)
{
    CC_ASSERT(h->busy > 0);
    if (--h->busy > 0)
        return;
    while (h->zombies) {
        struct watcher *w = h->zombies;
        h->zombies = w->zombie_next;
        CC_ASSERT(w->state == W_DONE);
        free(w);
    }
}

static void work_add(struct watcher *w)
{
    struct watch_hub *h = w->hub;
    if (w->state == W_DONE || wl_linked(&w->work_link))
        return;
    wl_push(&h->work, &w->work_link);
    h->n_work++;
    if (!h->in_tick && !h->freeing && !uv_is_active((uv_handle_t *)&h->tick))
        uv_timer_start(&h->tick, on_tick, 0, 0);
}

static void work_remove(struct watcher *w)
{
    if (!wl_linked(&w->work_link))
        return;
    wl_remove(&w->work_link);
    CC_ASSERT(w->hub->n_work > 0);
    w->hub->n_work--;
}

static void live_leave(struct watcher *w)
{
    if (!wl_linked(&w->live_link))
        return;
    wl_remove(&w->live_link);
    CC_ASSERT(w->group->n_members > 0);
    w->group->n_members--;
}

static void lease_leave(struct watcher *w)
{
    if (!wl_linked(&w->lease_link))
        return;
    wl_remove(&w->lease_link);
    CC_ASSERT(w->lease_group->n_members > 0);
    w->lease_group->n_members--;
}

static void go_live(struct watcher *w)
{
    w->state = W_LIVE;
    if (w->group) {
        wl_push(&w->group->members, &w->live_link);
        w->group->n_members++;
    }
}

/* Unlinks w from everything and drops what it holds; its memory waits for the reaper.
 * The caller has finished (or is about to finish) w->req, which w no longer touches. */
static void watcher_release(struct watcher *w)
{
    struct watch_hub *h = w->hub;
    CC_ASSERT(w->state != W_DONE);
    live_leave(w);
    lease_leave(w);
    work_remove(w);
    if (wl_linked(&w->flush_link))
        wl_remove(&w->flush_link);
    if (wl_linked(&w->all_link))
        wl_remove(&w->all_link);
    if (w->group)
        watch_index_unref(&h->ix, w->group);
    if (w->lease_group)
        watch_index_unref(&h->ix, w->lease_group);
    w->group = w->lease_group = NULL;
    watch_queue_clear(&w->q);
    watch_buf_unref(w->snap);
    w->snap = NULL;
    free(w->cursor);
    w->cursor = NULL;
    CC_ASSERT(h->n_watchers > 0);
    h->n_watchers--;
    w->state = W_DONE;
    w->zombie_next = h->zombies;
    h->zombies = w;
}

/* Ends w: the stream's end, or for a watch that never began, a bare finish. */
static void watcher_end(struct watcher *w)
{
    if (w->state == W_DONE)
        return;
    if (w->state == W_READING)
        node_cancel(w->hub->node, w);
    struct http_req *req = w->req;
    bool began = w->began;
    watcher_release(w);
    if (began)
        http_stream_end(req);
    else
        http_respond(req, 499, NULL, NULL, 0); /* only frees: the client is gone */
}

/* Answers a watch that has not begun with an error response and releases it. */
static void watcher_fail(struct watcher *w, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void watcher_fail(struct watcher *w, int status, const char *code, const char *fmt, ...)
{
    CC_ASSERT(!w->began);
    if (w->state == W_READING)
        node_cancel(w->hub->node, w);
    struct http_req *req = w->req;
    watcher_release(w);
    va_list ap;
    va_start(ap, fmt);
    http_respond_verror(req, status, code, fmt, ap);
    va_end(ap);
}

static void on_client_gone(struct http_req *req, void *arg)
{
    struct watcher *w = arg;
    struct watch_hub *h = w->hub;
    (void)req;
    hub_enter(h);
    watcher_end(w);
    hub_leave(h);
}

/* Copies a member list into h->scratch (see the essay); returns the count. */
static uint32_t scratch_fill(struct watch_hub *h, struct watch_link *head, size_t link_off)
{
    CC_ASSERT(!h->scratch_busy);
    uint32_t n = 0;
    for (struct watch_link *l = head->next; l != head; l = l->next) {
        CC_ASSERT(n < WATCH_WATCHERS_MAX);
        h->scratch[n++] = (struct watcher *)(void *)((char *)l - link_off);
    }
    h->scratch_busy = true;
    return n;
}

/* ==== output ================================================================= */

/* Writes queued bytes while the stream takes them; true if any left. A stream that
 * fails otherwise than by being full ends the watcher. */
static bool drain(struct watcher *w)
{
    uint8_t *gather = w->hub->gather;
    bool wrote = false;
    const uint8_t *p;
    size_t n;
    for (uint32_t i = 0; i < WATCH__DRAIN_PIECES_MAX && watch_queue_peek(&w->q, &p, &n); i++) {
        /* A piece of a big buffer as it is, or small buffers joined: one write (one
         * socket send) for everything a loop iteration queued. */
        size_t k = n < WATCH_WRITE_PIECE_BYTES ? n : WATCH_WRITE_PIECE_BYTES;
        uint32_t n_bufs = 1;
        const uint8_t *next;
        size_t next_n;
        if (k == n && watch_queue_peek_at(&w->q, 1, &next, &next_n) &&
            k + next_n <= WATCH_WRITE_PIECE_BYTES) {
            memcpy(gather, p, k);
            p = gather;
            for (; watch_queue_peek_at(&w->q, n_bufs, &next, &next_n) &&
                   k + next_n <= WATCH_WRITE_PIECE_BYTES;
                 n_bufs++) {
                memcpy(gather + k, next, next_n);
                k += next_n;
            }
        }
        int rv = http_stream_write(w->req, p, k);
        if (rv == HTTP_ESLOW)
            break;
        if (rv != 0) {
            watcher_end(w);
            return wrote;
        }
        for (uint32_t b = 0; b < n_bufs; b++) {
            bool queued = watch_queue_peek(&w->q, &next, &next_n);
            CC_ASSERT(queued);
            size_t take = next_n < k ? next_n : k;
            watch_queue_consume(&w->q, take);
            k -= take;
        }
        CC_ASSERT(k == 0);
        wrote = true;
    }
    return wrote;
}

/* After any change: a cut watcher whose error is out ends; one with work joins the
 * work list. */
static void settle(struct watcher *w)
{
    if (w->state == W_DONE)
        return;
    if (w->state == W_CUT && w->q.n == 0) {
        watcher_end(w);
        return;
    }
    if (w->q.n > 0 || w->state != W_LIVE)
        work_add(w);
}

/* Queues b outside the live limits (history, snapshot, bookmarks, notices): the hub
 * paces those itself. false on allocation failure. */
static bool push_exempt(struct watcher *w, struct watch_buf *b)
{
    return b && watch_queue_push(&w->q, b);
}

static const char *cut_code(int why)
{
    switch (why) {
    case WATCH_ESLOW:
        return "watch_slow";
    case WATCH_EMEMORY:
        return "watch_memory";
    case WATCH_ESNAPTOOBIG:
        return "snapshot_too_large";
    case WATCH_ESNAPRETRY:
        return "snapshot_compacted";
    case WATCH_ENOMEM:
        return "no_memory";
    default:
        return "watch_failed";
    }
}

/* Stops queueing events for w and queues the final error naming where to resume. */
static void cut(struct watcher *w, int64_t resume, int why, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cut(struct watcher *w, int64_t resume, int why, const char *fmt, ...)
{
    struct watch_hub *h = w->hub;
    CC_ASSERT(w->began);
    CC_ASSERT(w->state != W_CUT && w->state != W_DONE);
    live_leave(w);
    lease_leave(w);
    watch_buf_unref(w->snap);
    w->snap = NULL;
    w->state = W_CUT;
    w->deadline_ms = uv_now(h->loop) + WATCH_CUT_DRAIN_MS;
    h->st.cut++;
    char msg[HTTP_ERRMSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *err = json_object();
    json_t *j = json_object();
    if (err && j) {
        json_object_set_new(err, "code", json_string(cut_code(why)));
        json_object_set_new(err, "message", json_string(msg));
        json_object_set_new(j, "error", err);
        json_object_set_new(j, "resume_revision", json_integer(resume));
        err = NULL;
    }
    json_decref(err);
    struct watch_buf *b = watch_buf_new(WATCH__BUF_INITIAL, &h->buf_bytes);
    bool ok = b && watch_sse_json(&b, -1, "error", j) && push_exempt(w, b);
    if (!b)
        json_decref(j);
    watch_buf_unref(b);
    if (!ok) { /* no room even for the notice: end now; the last id is still valid */
        watcher_end(w);
        return;
    }
    drain(w);
    settle(w);
}

static void cut_slow(struct watcher *w, int64_t resume, int why)
{
    if (why == WATCH_ESLOW)
        cut(w, resume, why,
            "the client reads too slowly: more than %u bytes of events were waiting; "
            "reconnect with from_revision=%" PRId64,
            WATCH_QUEUE_BYTES_MAX, resume);
    else if (why == WATCH_EMEMORY)
        cut(w, resume, why,
            "the server holds too many unsent watch events (%u bytes); reconnect with "
            "from_revision=%" PRId64,
            WATCH_BUF_BYTES_TOTAL_MAX, resume);
    else
        cut(w, resume, why, "%s; reconnect with from_revision=%" PRId64, watch_strerror(why),
            resume);
}

/* A live event (revision rev, shared bytes b) for w, under the queue limits. */
static void live_enqueue(struct watcher *w, struct watch_buf *b, int64_t rev)
{
    CC_ASSERT(w->state == W_LIVE);
    if (rev < w->next_rev)
        return; /* a watch that starts in the future */
    int why = watch_admit(w->q.bytes, b->n, w->hub->buf_bytes);
    if (why == 0 && !watch_queue_push(&w->q, b))
        why = WATCH_ENOMEM;
    if (why != 0) {
        cut_slow(w, rev, why);
        return;
    }
    w->next_rev = rev + 1;
    w->hub->st.events++;
    if (w->q.bytes < WATCH_WRITE_PIECE_BYTES) { /* written after this loop iteration */
        if (!wl_linked(&w->flush_link)) {
            wl_push(&w->hub->flush_list, &w->flush_link);
            if (!uv_is_active((uv_handle_t *)&w->hub->flush))
                uv_check_start(&w->hub->flush, on_flush);
        }
        return;
    }
    drain(w);
    settle(w);
}

static struct watch_buf *progress_buf(struct watch_hub *h, int64_t rev)
{
    struct watch_buf *b = watch_buf_new(WATCH__BUF_INITIAL, &h->buf_bytes);
    json_t *j = json_object();
    if (j)
        json_object_set_new(j, "revision", json_integer(rev));
    if (!b || !watch_sse_json(&b, rev, "progress", j)) {
        if (!b)
            json_decref(j);
        watch_buf_unref(b);
        return NULL;
    }
    return b;
}

/* type: "revoked", "expired" or "not_found". */
static struct watch_buf *lease_buf(struct watch_hub *h, int64_t lease, const char *type,
                                   int64_t rev)
{
    struct watch_buf *b = watch_buf_new(WATCH__BUF_INITIAL, &h->buf_bytes);
    json_t *j = json_object();
    if (j) {
        json_object_set_new(j, "lease", json_integer(lease));
        json_object_set_new(j, "type", json_string(type));
        json_object_set_new(j, "revision", json_integer(rev));
    }
    if (!b || !watch_sse_json(&b, -1, "lease", j)) {
        if (!b)
            json_decref(j);
        watch_buf_unref(b);
        return NULL;
    }
    return b;
}

/* Queues a lease notice for w once. A failure to queue it cuts w: a lock holder must
 * never miss it silently. */
static void lease_notify(struct watcher *w, struct watch_buf *b)
{
    if (w->lease_dead || w->state == W_CUT || w->state == W_DONE || !w->began)
        return;
    w->lease_dead = true;
    if (!push_exempt(w, b)) {
        cut(w, w->next_rev, WATCH_ENOMEM, "out of memory for the lease notice; reconnect");
        return;
    }
    drain(w);
    settle(w);
}

/* ==== catch-up ============================================================= */

struct catchup {
    struct watch_buf *b;
    int64_t rev; /* of the open SSE event */
    bool open;   /* an event is being built */
    bool first;  /* no change added to it yet */
    bool oom;
    uint32_t n_revs; /* events completed */
};

static int catchup_event_cb(void *arg, const struct kv_event *ev)
{
    struct catchup *c = arg;
    int64_t rev = ev->kv.mod_revision;
    if (!c->open || rev != c->rev) {
        if (c->open) {
            c->open = false;
            if (!watch_sse_rev_end(&c->b))
                goto oom;
            c->n_revs++;
            if (c->b->n >= WATCH_CATCHUP_STEP_BYTES)
                return WATCH__STOP; /* kv_history_since resumes at rev next time */
        }
        if (!watch_sse_rev_begin(&c->b, rev, ev->type))
            goto oom;
        c->open = true;
        c->first = true;
        c->rev = rev;
    }
    if (!watch_sse_rev_add(&c->b, ev, c->first))
        goto oom;
    c->first = false;
    return 0;
oom:
    c->oom = true;
    return WATCH__STOP;
}

static void snapshot_begin(struct watcher *w)
{
    w->state = W_SNAPSHOT;
    watch_buf_unref(w->snap);
    w->snap = NULL;
}

/* One bounded replay step. Returns true if it made progress. */
static bool catchup_step(struct watcher *w)
{
    struct watch_hub *h = w->hub;
    struct kv *kv = node_kv(h->node);
    struct watch_group *g = w->group;
    if (!g || w->next_rev > kv_revision(kv)) {
        go_live(w);
        return true;
    }
    if (w->next_rev <= kv_compacted_revision(kv)) {
        snapshot_begin(w);
        return true;
    }
    if (w->q.bytes >= WATCH_CATCHUP_QUEUE_BYTES || h->buf_bytes >= WATCH_BUF_BYTES_TOTAL_MAX)
        return false; /* paced: the client has not read the last step yet */
    struct catchup c = {.b = watch_buf_new(WATCH__BUF_INITIAL, &h->buf_bytes)};
    if (!c.b) {
        cut_slow(w, w->next_rev, WATCH_ENOMEM);
        return true;
    }
    int64_t next = w->next_rev;
    int rv = kv_history_since(kv, g->rkey, g->rkey_len, g->rend_len ? g->rend : NULL, g->rend_len,
                              w->next_rev, WATCH_HISTORY_BUDGET, &next, catchup_event_cb, &c);
    if (!c.oom && c.open) {
        c.open = false;
        c.oom = !watch_sse_rev_end(&c.b);
        c.n_revs++;
    }
    if (c.oom || (rv != 0 && rv != WATCH__STOP) || !watch_queue_push(&w->q, c.b)) {
        watch_buf_unref(c.b);
        /* Complete events of this step are not queued: resume where the step began. */
        cut_slow(w, w->next_rev,
                 rv != 0 && rv != WATCH__STOP && rv != KV_ENOMEM ? rv : WATCH_ENOMEM);
        return true;
    }
    watch_buf_unref(c.b);
    CC_ASSERT(next >= w->next_rev);
    w->next_rev = next;
    h->st.events += c.n_revs;
    drain(w);
    if (w->state == W_CATCHUP && w->next_rev > kv_revision(kv))
        go_live(w);
    return true;
}

/* ==== snapshot ============================================================= */

static bool cursor_set(struct watcher *w, const uint8_t *k, uint32_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    if (!c)
        return false;
    if (n)
        memcpy(c, k, n);
    free(w->cursor);
    w->cursor = c;
    w->cursor_len = n;
    return true;
}

/* The smallest key after k: k + "\0", or for a longest key the next one of its length
 * (kv_prefix_end: no longer key has k as a prefix). false: k is the last key there is. */
static bool cursor_after(struct watcher *w, const struct kv_kv *k)
{
    uint8_t next[WATCH_KEY_BYTES_MAX + 1];
    uint32_t n = 0;
    if (k->key_len < WATCH_KEY_BYTES_MAX) {
        memcpy(next, k->key, k->key_len);
        next[k->key_len] = 0;
        n = k->key_len + 1;
    } else if (!kv_prefix_end(k->key, k->key_len, next, &n)) {
        return false;
    }
    return cursor_set(w, next, n);
}

/* Reads one page of the range at snap_rev into the snapshot event; the last page
 * queues it. Returns true if it made progress. */
static bool snapshot_step(struct watcher *w)
{
    struct watch_hub *h = w->hub;
    struct kv *kv = node_kv(h->node);
    struct watch_group *g = w->group;
    CC_ASSERT(g != NULL); /* a lease-only watch never needs history */
    if (!w->snap) {
        if (h->buf_bytes >= WATCH_BUF_BYTES_TOTAL_MAX)
            return false;
        w->snap_rev = kv_revision(kv);
        w->snap_keys = 0;
        w->snap = watch_buf_new(WATCH__BUF_INITIAL, &h->buf_bytes);
        if (!w->snap || !cursor_set(w, g->rkey, g->rkey_len) ||
            !buf_printf(&w->snap,
                        "id: %" PRId64 "\nevent: snapshot\ndata: {\"revision\":%" PRId64
                        ",\"kvs\":[",
                        w->snap_rev, w->snap_rev)) {
            cut_slow(w, w->next_rev, WATCH_ENOMEM);
            return true;
        }
    }
    struct kv_range_req rq = {.key = w->cursor,
                              .key_len = w->cursor_len,
                              .range_end = g->rend_len ? g->rend : NULL,
                              .range_end_len = g->rend_len,
                              .limit = WATCH_SNAPSHOT_PAGE_KEYS,
                              .revision = w->snap_rev};
    struct kv_range_resp resp;
    int rv = kv_range(kv, &rq, &resp);
    if (rv == KV_ECOMPACTED) { /* compacted past snap_rev meanwhile: start over */
        watch_buf_unref(w->snap);
        w->snap = NULL;
        if (++w->snap_restarts > WATCH_SNAPSHOT_RESTARTS_MAX)
            cut(w, w->next_rev, WATCH_ESNAPRETRY,
                "the snapshot's revision was compacted %u times while it was read; retry",
                WATCH_SNAPSHOT_RESTARTS_MAX);
        return true;
    }
    if (rv != 0) {
        cut_slow(w, w->next_rev, rv == KV_ENOMEM ? WATCH_ENOMEM : rv);
        return true;
    }
    bool ok = true;
    for (uint32_t i = 0; i < resp.n_kvs && ok; i++) {
        ok = (w->snap_keys == 0 || watch_buf_append(&w->snap, ",", 1)) &&
             watch_sse_kv(&w->snap, &resp.kvs[i]);
        w->snap_keys++;
    }
    bool more = ok && resp.more && resp.n_kvs > 0 && g->rend_len > 0;
    if (more && !cursor_after(w, &resp.kvs[resp.n_kvs - 1]))
        more = false;
    kv_range_resp_free(&resp);
    if (!ok) {
        cut_slow(w, w->next_rev, WATCH_ENOMEM);
        return true;
    }
    if (w->snap->n > WATCH_SNAPSHOT_BYTES_MAX) {
        int64_t r = w->snap_rev;
        cut(w, r + 1, WATCH_ESNAPTOOBIG,
            "the watched range's state at revision %" PRId64 " is over %u bytes: read it with "
            "GET /v1/kv/{key}?prefix=true&revision=%" PRId64 " (paged with limit), then watch "
            "from revision %" PRId64,
            r, WATCH_SNAPSHOT_BYTES_MAX, r, r + 1);
        return true;
    }
    if (more)
        return true;
    bool queued = watch_sse_rev_end(&w->snap) && push_exempt(w, w->snap);
    watch_buf_unref(w->snap);
    w->snap = NULL;
    if (!queued) {
        cut_slow(w, w->next_rev, WATCH_ENOMEM);
        return true;
    }
    w->next_rev = w->snap_rev + 1;
    w->state = W_CATCHUP;
    h->st.snapshots++;
    drain(w);
    return true;
}

/* ==== fan-out (observer) ===================================================== */

struct fan {
    struct watch_hub *h;
    uint32_t i;     /* the event being matched */
    bool oom_touch; /* the touched array overflowed (cannot happen: sized for all groups) */
};

static void fan_match(void *arg, struct watch_group *g)
{
    struct fan *f = arg;
    struct watch_hub *h = f->h;
    if (g->n_members == 0)
        return; /* nobody live: catch-up watchers read history themselves */
    if (!g->touched) {
        CC_ASSERT(h->n_touched < WATCH__GROUPS_MAX);
        h->touched[h->n_touched++] = g;
        g->touched = true;
        g->n_evs = 0;
    }
    if (g->n_evs == UINT32_MAX ||
        !cc_grow((void **)&g->evs, &g->cap_evs, g->n_evs + 1, sizeof(*g->evs))) {
        g->n_evs = UINT32_MAX; /* marks the group broken: its watchers are cut */
        return;
    }
    g->evs[g->n_evs++] = f->i;
}

/* Serializes this command's changes once per touched group and hands the bytes to
 * every live member. */
static void fan_out(struct watch_hub *h, const struct kv_result *kr)
{
    struct fan f = {.h = h};
    for (uint32_t i = 0; i < kr->n_events; i++) {
        /* kv.h: every change of one command takes the command's one revision */
        CC_ASSERT(kr->events[i].kv.mod_revision == kr->revision);
        f.i = i;
        watch_index_match(&h->ix, kr->events[i].kv.key, kr->events[i].kv.key_len, fan_match, &f);
    }
    int64_t rev = kr->revision;
    for (uint32_t t = 0; t < h->n_touched; t++) {
        struct watch_group *g = h->touched[t];
        g->touched = false;
        struct watch_buf *b = NULL;
        if (g->n_evs != UINT32_MAX) {
            b = watch_buf_new(WATCH__BUF_INITIAL, &h->buf_bytes);
            bool ok = b && watch_sse_rev_begin(&b, rev, kr->events[g->evs[0]].type);
            for (uint32_t k = 0; ok && k < g->n_evs; k++)
                ok = watch_sse_rev_add(&b, &kr->events[g->evs[k]], k == 0);
            if (!(ok && watch_sse_rev_end(&b))) {
                watch_buf_unref(b);
                b = NULL;
            }
        }
        g->n_evs = 0;
        h->st.fanouts++;
        uint32_t n = scratch_fill(h, &g->members, offsetof(struct watcher, live_link));
        for (uint32_t k = 0; k < n; k++) {
            struct watcher *w = h->scratch[k];
            if (w->state != W_LIVE)
                continue;
            if (b)
                live_enqueue(w, b, rev);
            else if (rev >= w->next_rev)
                cut_slow(w, rev, WATCH_ENOMEM);
        }
        h->scratch_busy = false;
        watch_buf_unref(b);
    }
    h->n_touched = 0;
}

static void lease_died(struct watch_hub *h, int64_t lease, const char *type, int64_t rev)
{
    uint8_t id[8];
    le_put_u64(id, (uint64_t)lease);
    struct watch_group *g = watch_index_find(&h->ix, WATCH_KIND_LEASE, id, sizeof(id));
    if (!g || g->n_members == 0)
        return;
    struct watch_buf *b = lease_buf(h, lease, type, rev);
    uint32_t n = scratch_fill(h, &g->members, offsetof(struct watcher, lease_link));
    for (uint32_t k = 0; k < n; k++)
        lease_notify(h->scratch[k], b);
    h->scratch_busy = false;
    watch_buf_unref(b);
}

static void on_applied(void *arg, const struct sm_result *res)
{
    struct watch_hub *h = arg;
    hub_enter(h);
    if (h->n_watchers > 0 && res->kv.n_events > 0)
        fan_out(h, &res->kv);
    h->rev_seen = kv_revision(node_kv(h->node));
    if (h->n_watchers > 0 && res->tag == SM_TAG_LEASE && res->err == 0 &&
        (res->lease.type == LEASE_CMD_REVOKE || res->lease.type == LEASE_CMD_EXPIRE)) {
        bool expired = res->lease.expired || res->lease.type == LEASE_CMD_EXPIRE;
        lease_died(h, res->lease.id, expired ? "expired" : "revoked", h->rev_seen);
    }
    hub_leave(h);
}

/* A snapshot replaced the state: live watchers have seen everything up to the old
 * revision and continue from there through history (or a snapshot event); snapshots
 * being built restart on the new state; a lease that died unseen is reported. */
static void on_reset(void *arg, uint64_t index)
{
    struct watch_hub *h = arg;
    (void)index;
    hub_enter(h);
    h->st.resets++;
    const struct lease_table *leases = machine_leases(node_machine(h->node));
    int64_t seen = h->rev_seen;
    h->rev_seen = kv_revision(node_kv(h->node));
    uint32_t n = scratch_fill(h, &h->all, offsetof(struct watcher, all_link));
    for (uint32_t k = 0; k < n; k++) {
        struct watcher *w = h->scratch[k];
        if (w->state == W_LIVE) {
            live_leave(w);
            w->state = W_CATCHUP;
            if (w->next_rev < seen + 1)
                w->next_rev = seen + 1;
        } else if (w->state == W_SNAPSHOT) {
            snapshot_begin(w);
        }
        settle(w);
    }
    h->scratch_busy = false;
    struct watch_buf *b = NULL;
    n = scratch_fill(h, &h->all, offsetof(struct watcher, all_link));
    for (uint32_t k = 0; k < n; k++) {
        struct watcher *w = h->scratch[k];
        if (w->lease == 0 || w->lease_dead || !w->began || lease_exists(leases, w->lease))
            continue;
        watch_buf_unref(b);
        b = lease_buf(h, w->lease, "not_found", h->rev_seen);
        lease_notify(w, b);
    }
    h->scratch_busy = false;
    watch_buf_unref(b);
    hub_leave(h);
}

/* ==== timers ================================================================ */

/* One step of w's state machine. Returns true if it made progress. */
static bool step(struct watcher *w, uint64_t now)
{
    switch (w->state) {
    case W_READING:
        if (now >= w->deadline_ms)
            watcher_fail(w, 503, "read_timeout",
                         "no quorum confirmed the watch's start within %u ms; retry",
                         WATCH_READ_TIMEOUT_MS);
        return false;
    case W_CUT: {
        bool wrote = drain(w);
        if (w->state == W_CUT && (w->q.n == 0 || now >= w->deadline_ms))
            watcher_end(w);
        return wrote;
    }
    case W_SNAPSHOT:
    case W_CATCHUP:
    case W_LIVE: {
        bool wrote = drain(w);
        if (w->state == W_SNAPSHOT)
            return snapshot_step(w) || wrote;
        if (w->state == W_CATCHUP)
            return catchup_step(w) || wrote;
        return wrote;
    }
    default:
        CC_UNREACHABLE();
    }
}

static void on_tick(uv_timer_t *t)
{
    struct watch_hub *h = t->data;
    hub_enter(h);
    h->in_tick = true;
    bool progressed = false;
    uint64_t now = uv_now(h->loop);
    uint32_t n = h->n_work < WATCH_TICK_WATCHERS_MAX ? h->n_work : WATCH_TICK_WATCHERS_MAX;
    for (uint32_t i = 0; i < n && h->n_work > 0; i++) {
        struct watcher *w = WATCH__CONTAINER_OF(h->work.next, struct watcher, work_link);
        work_remove(w);
        progressed |= step(w, now);
        settle(w); /* back at the tail if it still has work */
    }
    h->in_tick = false;
    if (h->n_work > 0 && !h->freeing)
        uv_timer_start(&h->tick, on_tick, progressed ? 0 : WATCH_TICK_MS, 0);
    hub_leave(h);
}

/* After a loop iteration: write what live watchers were given during it, so the
 * commands one storage batch applied reach each socket in one send. */
static void on_flush(uv_check_t *c)
{
    struct watch_hub *h = c->data;
    hub_enter(h);
    for (uint32_t i = 0; i < WATCH_WATCHERS_MAX && wl_linked(&h->flush_list); i++) {
        struct watcher *w = WATCH__CONTAINER_OF(h->flush_list.next, struct watcher, flush_link);
        wl_remove(&w->flush_link);
        drain(w);
        settle(w);
    }
    if (!wl_linked(&h->flush_list))
        uv_check_stop(&h->flush);
    hub_leave(h);
}

/* Bookmarks for every idle watcher: the revision up to which it has everything. */
static void on_progress(uv_timer_t *t)
{
    struct watch_hub *h = t->data;
    hub_enter(h);
    int64_t now_rev = kv_revision(node_kv(h->node));
    struct watch_buf *b = NULL;
    int64_t b_rev = -1;
    uint32_t n = scratch_fill(h, &h->all, offsetof(struct watcher, all_link));
    for (uint32_t k = 0; k < n; k++) {
        struct watcher *w = h->scratch[k];
        if ((w->state != W_LIVE && w->state != W_CATCHUP) || w->q.n > 0)
            continue;
        int64_t r = w->next_rev - 1;
        if (w->state == W_LIVE && now_rev > r)
            r = now_rev;
        if (r != b_rev) {
            watch_buf_unref(b);
            b = progress_buf(h, r);
            b_rev = r;
        }
        if (push_exempt(w, b)) {
            drain(w);
            settle(w);
        }
    }
    h->scratch_busy = false;
    watch_buf_unref(b);
    hub_leave(h);
}

/* ==== requests ================================================================= */

/* The stream begins: the start revision is fixed now (after the read, if any). */
static void watcher_start(struct watcher *w)
{
    struct watch_hub *h = w->hub;
    struct kv *kv = node_kv(h->node);
    bool lease_missing =
        w->lease != 0 && !lease_exists(machine_leases(node_machine(h->node)), w->lease);
    http_respond_header(w->req, "Cache-Control", "no-cache");
    http_respond_header(w->req, "X-Accel-Buffering", "no"); /* proxies: do not buffer */
    int rv = http_stream_begin(w->req, 200, "text/event-stream");
    if (rv != 0) {
        struct http_req *req = w->req;
        watcher_release(w);
        http_stream_end(req); /* frees a gone client's request, or answers 500 */
        return;
    }
    w->began = true;
    if (w->lease_group) {
        wl_push(&w->lease_group->members, &w->lease_link);
        w->lease_group->n_members++;
    }
    w->next_rev = w->from_rev > 0 ? w->from_rev : kv_revision(kv) + 1;
    if (w->group && w->next_rev <= kv_compacted_revision(kv)) {
        snapshot_begin(w);
    } else {
        w->state = W_CATCHUP;
        struct watch_buf *b = progress_buf(h, w->next_rev - 1);
        bool ok = push_exempt(w, b);
        watch_buf_unref(b);
        if (!ok) {
            cut_slow(w, w->next_rev, WATCH_ENOMEM);
            return;
        }
        if (!w->group || w->next_rev > kv_revision(kv))
            go_live(w);
    }
    if (lease_missing) {
        struct watch_buf *b = lease_buf(h, w->lease, "not_found", kv_revision(kv));
        lease_notify(w, b);
        watch_buf_unref(b);
    }
    if (w->state == W_DONE || w->state == W_CUT)
        return;
    drain(w);
    settle(w);
}

static void on_read(void *arg, int status)
{
    struct watcher *w = arg;
    struct watch_hub *h = w->hub;
    hub_enter(h);
    if (w->state == W_READING) {
        if (status == RAFT_ENOTLEADER || status == RAFT_ESTEPPEDDOWN)
            watcher_fail(w, 503, "no_leader",
                         "no leader could confirm the watch's start (%s); retry",
                         raft_strerror(status));
        else if (status != 0)
            watcher_fail(w, 503, "unavailable", "%s", node_strerror(status));
        else
            watcher_start(w);
    }
    hub_leave(h);
}

/* Decimal digits only, fitting int64_t. */
static bool parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (uint64_t)(INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = (int64_t)v;
    return true;
}

void watch_request(struct watch_hub *h, struct http_req *req)
{
    size_t plen = strlen(WATCH_PATH_PREFIX);
    CC_ASSERT(req->path_len >= plen && memcmp(req->path, WATCH_PATH_PREFIX, plen) == 0);
    const uint8_t *key = (const uint8_t *)req->path + plen;
    size_t key_len = req->path_len - plen;
    if (req->method != HTTP_GET) {
        http_respond_error(req, 405, "method_not_allowed", "use GET /v1/watch/{key}");
        return;
    }
    if (key_len > WATCH_KEY_BYTES_MAX) {
        http_respond_error(req, 414, "key_too_long", "key is %zu bytes; the limit is %u", key_len,
                           WATCH_KEY_BYTES_MAX);
        return;
    }
    bool prefix = false;
    uint64_t from = 0, lease = 0;
    if (http_query_bool(req, "prefix", &prefix) == HTTP_EBADVALUE ||
        http_query_u64(req, "from_revision", &from) == HTTP_EBADVALUE || from > INT64_MAX ||
        http_query_u64(req, "lease", &lease) == HTTP_EBADVALUE || lease > INT64_MAX) {
        http_respond_error(req, 400, "bad_query",
                           "prefix is a boolean; from_revision and lease are decimal numbers");
        return;
    }
    const char *last_id = http_req_header(req, "Last-Event-ID");
    if (last_id && *last_id) { /* an EventSource reconnecting: the id it saw last */
        int64_t id = 0;
        if (!parse_i64(last_id, &id) || id == INT64_MAX) {
            http_respond_error(req, 400, "bad_last_event_id",
                               "Last-Event-ID must be a revision (decimal), as sent in id:");
            return;
        }
        from = (uint64_t)id + 1;
    }
    if (!prefix && key_len == 0 && lease == 0) {
        http_respond_error(req, 400, "empty_key",
                           "a key is required (or ?prefix=true for every key, or ?lease=ID)");
        return;
    }
    if (h->n_watchers >= WATCH_WATCHERS_MAX) {
        http_respond_error(req, 503, "too_many_watchers",
                           "this node serves %u watches already (WATCH_WATCHERS_MAX); use "
                           "another node or retry later",
                           WATCH_WATCHERS_MAX);
        return;
    }
    struct watcher *w = calloc(1, sizeof(*w));
    if (!w) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    hub_enter(h);
    w->hub = h;
    w->req = req;
    w->state = W_READING;
    w->from_rev = (int64_t)from;
    w->lease = (int64_t)lease;
    wl_init(&w->live_link);
    wl_init(&w->lease_link);
    wl_init(&w->work_link);
    wl_init(&w->flush_link);
    wl_init(&w->all_link);
    wl_push(&h->all, &w->all_link);
    h->n_watchers++;
    h->st.started++;
    int rv = 0;
    if (key_len > 0 || prefix)
        rv = watch_index_ref(&h->ix, prefix ? WATCH_KIND_PREFIX : WATCH_KIND_KEY, key,
                             (uint32_t)key_len, &w->group);
    if (rv == 0 && lease != 0) {
        uint8_t id[8];
        le_put_u64(id, lease);
        rv = watch_index_ref(&h->ix, WATCH_KIND_LEASE, id, sizeof(id), &w->lease_group);
    }
    if (rv != 0) {
        watcher_fail(w, 503, "no_memory", "%s", watch_strerror(rv));
    } else if (http_req_on_close(req, on_client_gone, w) != 0) {
        watcher_end(w); /* already gone */
    } else if (from == 0 || lease != 0) {
        /* "Now" must include every write acknowledged before the watch was asked for,
         * and a lease's existence must be current: a linearizable read first. */
        w->deadline_ms = uv_now(h->loop) + WATCH_READ_TIMEOUT_MS;
        work_add(w); /* for the read timeout */
        rv = node_read(h->node, true, on_read, w);
        if (rv != 0 && w->state == W_READING)
            watcher_fail(w, 503, "unavailable", "%s", node_strerror(rv));
    } else {
        watcher_start(w); /* from a given revision: the local log is enough */
    }
    hub_leave(h);
}

/* ==== hub lifecycle ============================================================== */

static void on_handle_closed(uv_handle_t *handle)
{
    struct watch_hub *h = handle->data;
    CC_ASSERT(h->n_open_handles > 0);
    if (--h->n_open_handles > 0)
        return;
    watch_index_fini(&h->ix);
    free(h->scratch);
    free(h->touched);
    free(h->gather);
    free(h);
}

static void hub_close_handles(struct watch_hub *h)
{
    h->freeing = true;
    uv_timer_stop(&h->tick);
    uv_timer_stop(&h->progress);
    uv_check_stop(&h->flush);
    uv_close((uv_handle_t *)&h->tick, on_handle_closed);
    uv_close((uv_handle_t *)&h->progress, on_handle_closed);
    uv_close((uv_handle_t *)&h->flush, on_handle_closed);
}

int watch_hub_new(uv_loop_t *loop, struct node *node, struct watch_hub **out)
{
    *out = NULL;
    struct watch_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return WATCH_ENOMEM;
    h->scratch = malloc((size_t)WATCH_WATCHERS_MAX * sizeof(struct watcher *));
    h->touched = malloc((size_t)WATCH__GROUPS_MAX * sizeof(struct watch_group *));
    h->gather = malloc(WATCH_WRITE_PIECE_BYTES);
    if (!h->scratch || !h->touched || !h->gather || watch_index_init(&h->ix) != 0) {
        free(h->scratch);
        free(h->touched);
        free(h->gather);
        free(h);
        return WATCH_ENOMEM;
    }
    h->loop = loop;
    h->node = node;
    wl_init(&h->all);
    wl_init(&h->work);
    wl_init(&h->flush_list);
    uv_timer_init(loop, &h->tick);
    uv_timer_init(loop, &h->progress);
    uv_check_init(loop, &h->flush);
    h->tick.data = h;
    h->progress.data = h;
    h->flush.data = h;
    h->n_open_handles = 3;
    int rv = node_observe(node, &(struct node_observer){on_applied, on_reset, h});
    if (rv != 0) {
        hub_close_handles(h);
        return rv;
    }
    h->rev_seen = kv_revision(node_kv(node));
    uv_timer_start(&h->progress, on_progress, WATCH_PROGRESS_MS, WATCH_PROGRESS_MS);
    *out = h;
    return 0;
}

void watch_hub_free(struct watch_hub *h)
{
    if (!h)
        return;
    hub_enter(h);
    h->freeing = true;
    uint32_t n = scratch_fill(h, &h->all, offsetof(struct watcher, all_link));
    for (uint32_t k = 0; k < n; k++) {
        struct watcher *w = h->scratch[k];
        if (w->state != W_DONE)
            watcher_end(w);
    }
    h->scratch_busy = false;
    hub_leave(h);
    CC_ASSERT(h->n_watchers == 0);
    node_unobserve(h->node, h);
    hub_close_handles(h);
}

void watch_hub_stats(const struct watch_hub *h, struct watch_stats *out)
{
    *out = h->st;
    out->n_watchers = h->n_watchers;
    out->n_groups = h->ix.n_groups;
    out->buf_bytes = h->buf_bytes;
}
