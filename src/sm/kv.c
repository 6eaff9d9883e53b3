/* kv.c -- MVCC key-value state machine. Pure: no IO, no clock, and randomness only for
 * the seed of a local lookup index that nothing observable depends on (kv_new).
 *
 * Layout in memory:
 *   - kv->keys: AVL index (kv_avl.c) of struct kv_key ordered by key bytes. Each key
 *     holds its history: versions[] in ascending mod_revision, at most one per revision
 *     (the txn duplicate-key rule guarantees it), a delete being a tombstone version
 *     (version == 0). An indexed key always has at least one version.
 *   - kv->log: one entry (key, revision, sub-revision) per stored change with revision
 *     above the trim frontier, in (revision, sub) order. It serves kv_history_since
 *     (watches) without scanning keys, and it drives compaction.
 *   - kv->leases: AVL of struct kv_lease_set by lease id; each holds an intrusive list
 *     of the keys whose current version is attached to that lease.
 *   - kv->slots: a hash index over the same struct kv_key records, for exact lookups
 *     (put, single-key get/delete, compare): one or two cache misses where the tree
 *     walk costs ~17 at 100k keys. Open addressing, linear probing in Robin Hood order
 *     (a key never sits further from its home slot than the key before it, which keeps
 *     the longest probe near 10 at a million keys and lets a miss stop early),
 *     power-of-two size, load at most 1/2, backward-shift deletion (no tombstones).
 *     The index is local and optional: its seed comes from the host's randomness at
 *     kv_new, never from replicated state, and nothing observable depends on it. A
 *     key whose probe would reach KV_HASH_PROBE_MAX (chosen keys flooding one region)
 *     is left out and counted in n_unhashed; a hash miss falls back to the tree
 *     whenever n_unhashed > 0, so correctness never depends on the hash, only speed.
 *
 * Invariants (checked by the snapshot decoder on input, and by kv_check):
 *   - revision >= 1, 0 <= compacted <= revision; every revision in
 *     (max(compacted, 1), revision] has at least one change stored.
 *   - reads at r >= compacted see, per key, the newest version with mod_revision <= r.
 *   - a key is attached to lease L iff its newest version is live with lease L.
 *   - n_live = keys whose newest version is live.
 *   - every key of kv->keys is in kv->slots exactly once, within KV_HASH_PROBE_MAX of
 *     its home, or counted in n_unhashed; the slots hold nothing else.
 *
 * Compaction is logical at once and physical later. COMPACT(r) sets compacted = r, so
 * reads below r fail from then on. Versions that r made unreadable (superseded at or
 * below r, or a tombstone at or below r) are freed by walking the log front, at most
 * KV_COMPACT_STEP_MAX entries per kv_apply (bounded work, STYLE rule 10). Reads never
 * look at versions below the newest one <= compacted, so the backlog is invisible;
 * digests and snapshots encode only readable versions ("canonical"), so replicas with
 * different backlogs still compare equal byte for byte.
 *
 * Applying: a command is decoded and statically checked (kvcmd.c), then checked
 * against the store (revisions, key existence), and only then mutated. Mutation
 * cannot fail except by running out of memory, which aborts: a replica that applied
 * half an entry would diverge silently, a crashed one replays its log.
 *
 * Sections: types | memory | arena | hash index | index | versions and log | leases |
 * compaction | reads | apply | history | canonical image (digest, snapshot) | lifecycle
 * and queries.
 */
#include "sm/kv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/env.h"
#include "base/hash.h"
#include "base/le.h"
#include "sm/kv_avl.h"
#include "sm/kvcmd.h"

/* ==== types ============================================================== */

struct kv_version {
    int64_t mod_rev;
    int64_t create_rev; /* 0 for a tombstone */
    int64_t version;    /* puts since creation; 0 marks a tombstone */
    int64_t lease;      /* 0 for none and for tombstones */
    uint8_t *value;     /* malloc'd, NULL when value_len == 0; owned by the version */
    uint32_t value_len;
    uint32_t sub; /* order among the changes of mod_rev */
};

/* Field order matters: a descent touches node, key_len and key only, so they come last
 * and contiguous (the key is a flexible array) to share cache lines; the cold fields
 * lead. */
struct kv_key {
    struct kv_version one;       /* inline storage: most keys have one version */
    struct kv_version *versions; /* == &one while cap_versions == 1 */
    uint32_t n_versions;         /* >= 1 while indexed */
    uint32_t cap_versions;
    struct kv_key *lease_prev; /* list of kv_lease_set(lease)->head */
    struct kv_key *lease_next;
    int64_t lease;           /* the lease this key is attached to now, 0 = none */
    struct kv_avl_node node; /* in kv->keys */
    uint32_t key_len;
    uint32_t hash; /* key_hash(): fills what was padding, sizeof is unchanged */
    uint8_t key[];
};

struct kv_lease_set {
    struct kv_avl_node node; /* in kv->leases */
    int64_t lease;
    struct kv_key *head;
    uint64_t n_keys;
};

struct kv_log_entry {
    struct kv_key *key;
    int64_t rev;
    uint32_t sub;
};

struct kv {
    struct kv_avl keys;
    struct kv_avl leases;
    int64_t revision;
    int64_t compacted;
    struct kv_log_entry *log; /* live entries are log[log_head .. log_end) */
    size_t log_head;
    size_t log_end;
    size_t log_cap;
    uint64_t n_live;
    uint64_t n_versions;
    /* hash index over kv->keys (local, never replicated: see the essay) */
    struct kv_key **slots; /* hash_cap entries, NULL = empty */
    size_t hash_cap;       /* 0 or a power of two */
    size_t n_hashed;       /* keys in slots */
    size_t n_unhashed;     /* keys in kv->keys left out of slots */
    uint64_t hash_seed[2];
    kv_test_hash_fn test_hash; /* TEST ONLY: replaces key_hash when set */
    /* the write in progress */
    int64_t write_rev;  /* revision the changes take: revision + 1 */
    uint32_t write_sub; /* next sub-revision */
    uint32_t events_cap;
    struct kvcmd cmd; /* kv_apply's decode target (large: kept off the stack) */
};

#define IS_TOMB(v) ((v)->version == 0)
#define KEY_OF(n)  KV_AVL_ENTRY(n, struct kv_key, node)
#define LSET_OF(n) KV_AVL_ENTRY(n, struct kv_lease_set, node)

#define KV_LOG_SHIFT_MIN 4096 /* dead log prefix that makes a shift worth its memmove */

/* Snapshot image. */
#define SNAP_MAGIC          "CKVS"
#define SNAP_FORMAT_VERSION 1u
#define SNAP_HEADER_BYTES   (4u + 4u + 8u + 8u)
#define SNAP_VERSION_BYTES  40u /* i64 mod, u32 sub, i64 create, i64 version, i64 lease, u32 len */
#define SNAP_TRAILER_BYTES  (4u + 8u + 4u) /* end marker, key count, CRC-32C */

/* ==== memory ============================================================= */

/* Allocation on the apply path: failure is fatal (see the essay above). */
static void *must(void *p)
{
    if (p == NULL) {
        fputs("kv: out of memory while applying a committed command; "
              "restart to replay the log\n",
              stderr);
        abort();
    }
    return p;
}

static uint8_t *dup_bytes(const uint8_t *b, uint32_t len)
{
    if (len == 0) {
        return NULL;
    }
    uint8_t *p = must(malloc(len));
    memcpy(p, b, len);
    return p;
}

/* ==== arena ============================================================== */

struct kv_arena_block {
    struct kv_arena_block *next;
    size_t used;
    size_t cap;
    max_align_t data[];
};

#define KV_ARENA_BLOCK_MIN 1024u /* first block; later ones double */

void *kv_arena_alloc(struct kv_arena *a, size_t n)
{
    size_t need = (n + 7u) & ~(size_t)7u;
    struct kv_arena_block *b = a->head;
    if (b == NULL || b->cap - b->used < need) {
        size_t cap = b == NULL ? KV_ARENA_BLOCK_MIN : b->cap * 2;
        if (cap < need) {
            cap = need;
        }
        struct kv_arena_block *nb = malloc(sizeof *nb + cap);
        if (nb == NULL) {
            return NULL;
        }
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        a->head = nb;
        b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += need;
    return p;
}

static void arena_free(struct kv_arena *a)
{
    struct kv_arena_block *b = a->head;
    while (b != NULL) {
        struct kv_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

static void *arena_must(struct kv_arena *a, size_t n)
{
    return must(kv_arena_alloc(a, n));
}

/* Grows an array living in the arena to hold one more element and returns the new
 * (zeroed) slot. The abandoned copy stays in the arena: at most the final size. */
static void *arena_push(struct kv_arena *a, void **arr, uint32_t *n, uint32_t *cap, size_t elem)
{
    CC_ASSERT(*n < UINT32_MAX);
    if (*n == *cap) {
        uint32_t ncap = *cap < 8 ? 8 : (*cap > UINT32_MAX / 2 ? UINT32_MAX : *cap * 2);
        void *na = arena_must(a, (size_t)ncap * elem);
        if (*n > 0) {
            memcpy(na, *arr, (size_t)*n * elem);
        }
        *arr = na;
        *cap = ncap;
    }
    void *slot = (char *)*arr + (size_t)*n * elem;
    memset(slot, 0, elem);
    (*n)++;
    return slot;
}

void kv_result_free(struct kv_result *res)
{
    arena_free(&res->arena);
    memset(res, 0, sizeof *res);
}

void kv_range_resp_free(struct kv_range_resp *resp)
{
    free(resp->mem);
    memset(resp, 0, sizeof *resp);
}

/* ==== hash index ========================================================= */

#define KV_HASH_PREFETCH_AHEAD 8 /* slots: enough misses in flight to hide latency */
#if defined(__GNUC__) || defined(__clang__)
#define KV_PREFETCH(p) __builtin_prefetch(p)
#else
#define KV_PREFETCH(p) ((void)(p))
#endif

/* FNV-1a 64 (base/hash.h) from a seeded basis, then MurmurHash3's fmix64 finalizer:
 * FNV-1a's low bits depend on few input bits (bit 0 is the parity of the bytes' low
 * bits) and the table is indexed by the low bits. Folded to 32 bits. */
static uint32_t key_hash(const struct kv *kv, const uint8_t *key, uint32_t key_len)
{
    if (kv->test_hash != NULL) {
        return kv->test_hash(key, key_len);
    }
    uint64_t h = hash_fnv1a64(HASH_FNV_INIT ^ kv->hash_seed[0], key, key_len) ^ kv->hash_seed[1];
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return (uint32_t)(h ^ (h >> 32));
}

/* How far the key in slot pos sits from its home slot. */
static size_t hash_dist(const struct kv *kv, const struct kv_key *k, size_t pos)
{
    size_t mask = kv->hash_cap - 1;
    return (pos - (k->hash & mask)) & mask;
}

/* Exact lookup in the table only. NULL when absent from it (the key may still be in
 * the tree when n_unhashed > 0). */
static struct kv_key *hash_find(const struct kv *kv, uint32_t hash, const uint8_t *key,
                                uint32_t key_len)
{
    if (kv->hash_cap == 0) {
        return NULL;
    }
    size_t mask = kv->hash_cap - 1;
    size_t pos = hash & mask;
    for (size_t d = 0; d < KV_HASH_PROBE_MAX; d++, pos = (pos + 1) & mask) {
        struct kv_key *k = kv->slots[pos];
        if (k == NULL) {
            return NULL;
        }
        if (k->hash == hash && k->key_len == key_len && memcmp(k->key, key, key_len) == 0) {
            return k;
        }
        if (hash_dist(kv, k, pos) < d) {
            return NULL; /* Robin Hood order: the key would have taken this slot */
        }
    }
    return NULL;
}

/* The slot holding k, or SIZE_MAX when k is not in the table. */
static size_t hash_slot_of(const struct kv *kv, const struct kv_key *k)
{
    if (kv->hash_cap == 0) {
        return SIZE_MAX;
    }
    size_t mask = kv->hash_cap - 1;
    size_t pos = k->hash & mask;
    for (size_t d = 0; d < KV_HASH_PROBE_MAX; d++, pos = (pos + 1) & mask) {
        const struct kv_key *cur = kv->slots[pos];
        if (cur == k) {
            return pos;
        }
        if (cur == NULL || hash_dist(kv, cur, pos) < d) {
            return SIZE_MAX;
        }
    }
    return SIZE_MAX;
}

/* Puts k (hash set, not yet in the table) into the table as it is. Robin Hood: the
 * carried key takes the slot of a resident that sits closer to its own home, and the
 * resident is carried on. Whichever key is carried when its probe would reach
 * KV_HASH_PROBE_MAX stays out (counted unhashed); the table stays valid either way. */
static void hash_place(struct kv *kv, struct kv_key *k)
{
    if (kv->hash_cap == 0) {
        kv->n_unhashed++;
        return;
    }
    size_t mask = kv->hash_cap - 1;
    size_t pos = k->hash & mask;
    size_t d = 0;
    struct kv_key *carry = k;
    kv->n_hashed++;
    /* Every step moves pos on by one, so a table with an empty slot ends this within
     * hash_cap steps; the bound only matters for a full one (growth failed). */
    for (size_t step = 0; step < kv->hash_cap; step++, d++, pos = (pos + 1) & mask) {
        if (d == KV_HASH_PROBE_MAX) {
            break;
        }
        struct kv_key *cur = kv->slots[pos];
        if (cur == NULL) {
            kv->slots[pos] = carry;
            return;
        }
        size_t cur_d = hash_dist(kv, cur, pos);
        if (cur_d < d) {
            kv->slots[pos] = carry;
            carry = cur;
            d = cur_d;
        }
    }
    kv->n_hashed--;
    kv->n_unhashed++;
}

/* Moves the table to cap slots. From the old table it costs O(old size) and keeps
 * unhashed keys out; from the tree it costs O(keys) and gives every key a new chance
 * (used when that is within a constant of the table size, so flooding cannot make
 * resizes expensive, and for rebuilds). The index is an accelerator: when the new table
 * cannot be allocated the old one stays, still correct. */
static bool hash_resize(struct kv *kv, size_t cap, bool from_tree)
{
    CC_ASSERT(cap >= KV_HASH_SLOTS_MIN);
    CC_ASSERT((cap & (cap - 1)) == 0);
    CC_ASSERT(cap <= KV_HASH_SLOTS_MAX);
    struct kv_key **slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        return false;
    }
    struct kv_key **old = kv->slots;
    size_t old_cap = kv->hash_cap;
    kv->slots = slots;
    kv->hash_cap = cap;
    kv->n_hashed = 0;
    if (from_tree) {
        kv->n_unhashed = 0;
        for (struct kv_avl_node *n = kv_avl_first(&kv->keys); n != NULL; n = kv_avl_next(n)) {
            hash_place(kv, KEY_OF(n));
        }
    } else {
        for (size_t i = 0; i < old_cap; i++) {
            /* Each key's hash is a cache miss: ask for a few ahead (a resize of a large
             * table is one pause inside one apply, see hash_add). */
            size_t ahead = i + KV_HASH_PREFETCH_AHEAD;
            if (ahead < old_cap && old[ahead] != NULL) {
                KV_PREFETCH(&old[ahead]->hash);
            }
            if (old[i] != NULL) {
                hash_place(kv, old[i]);
            }
        }
    }
    free(old);
    return true;
}

/* Indexes a new key k (hash set) that is about to be linked into the tree. */
static void hash_add(struct kv *kv, struct kv_key *k)
{
    if ((kv->n_hashed + 1) * 2 > kv->hash_cap && kv->hash_cap < KV_HASH_SLOTS_MAX) {
        size_t cap = kv->hash_cap == 0 ? KV_HASH_SLOTS_MIN : kv->hash_cap * 2;
        (void)hash_resize(kv, cap, kv->n_unhashed > 0 && kv->keys.n_nodes <= cap);
    }
    hash_place(kv, k);
}

/* Drops k, already unlinked from the tree, from the index: backward-shift deletion
 * pulls the rest of its run one slot nearer home, so no tombstones are needed. */
static void hash_remove(struct kv *kv, struct kv_key *k)
{
    size_t pos = hash_slot_of(kv, k);
    if (pos == SIZE_MAX) {
        CC_ASSERT(kv->n_unhashed > 0);
        kv->n_unhashed--;
        return;
    }
    size_t mask = kv->hash_cap - 1;
    for (size_t step = 0; step < kv->hash_cap; step++) {
        size_t next = (pos + 1) & mask;
        struct kv_key *nk = kv->slots[next];
        if (nk == NULL || hash_dist(kv, nk, next) == 0) {
            break;
        }
        kv->slots[pos] = nk;
        pos = next;
    }
    kv->slots[pos] = NULL;
    CC_ASSERT(kv->n_hashed > 0);
    kv->n_hashed--;
    /* Shrink at load 1/8 to 1/4 (growth is at 1/2: no thrashing). */
    if (kv->hash_cap > KV_HASH_SLOTS_MIN && kv->n_hashed * 8 < kv->hash_cap) {
        size_t cap = kv->hash_cap / 2;
        (void)hash_resize(kv, cap, kv->n_unhashed > 0 && kv->keys.n_nodes <= cap);
    }
}

/* Recomputes every key's hash (after the function or seed changed) and rebuilds the
 * table at a size fit for the key count. O(n). */
static void hash_rehash_all(struct kv *kv)
{
    for (struct kv_avl_node *n = kv_avl_first(&kv->keys); n != NULL; n = kv_avl_next(n)) {
        struct kv_key *k = KEY_OF(n);
        k->hash = key_hash(kv, k->key, k->key_len);
    }
    size_t cap = KV_HASH_SLOTS_MIN;
    while (cap < KV_HASH_SLOTS_MAX && cap / 2 < kv->keys.n_nodes) {
        cap *= 2;
    }
    if (!hash_resize(kv, cap, true)) {
        /* The old table holds stale hashes. Empty it: every key is then unhashed and
         * lookups use the tree. */
        if (kv->hash_cap > 0) {
            memset(kv->slots, 0, kv->hash_cap * sizeof *kv->slots);
        }
        kv->n_hashed = 0;
        kv->n_unhashed = kv->keys.n_nodes;
    }
}

void kv_set_hash_seed(struct kv *kv, uint64_t seed)
{
    kv->hash_seed[0] = seed;
    kv->hash_seed[1] = seed * UINT64_C(0x9e3779b97f4a7c15) + UINT64_C(0x632be59bd9b4e019);
    hash_rehash_all(kv);
}

void kv_test_set_hash(struct kv *kv, kv_test_hash_fn fn, bool rebuild)
{
    kv->test_hash = fn;
    if (rebuild) {
        hash_rehash_all(kv);
    }
}

/* ==== index ============================================================== */

static int key_cmp(const struct kv_key *k, const uint8_t *b, uint32_t b_len)
{
    return kvcmd_key_cmp(k->key, k->key_len, b, b_len);
}

/* Exact lookup in the tree. When absent and link_out is given, *parent_out and
 * *link_out name the slot where the key would be linked. */
static struct kv_key *tree_find(const struct kv *kv, const uint8_t *key, uint32_t key_len,
                                struct kv_avl_node **parent_out, struct kv_avl_node ***link_out)
{
    struct kv_avl_node *parent = NULL;
    struct kv_avl_node *const *link = &kv->keys.root;
    while (*link != NULL) {
        int c = key_cmp(KEY_OF(*link), key, key_len);
        if (c == 0) {
            return KEY_OF(*link);
        }
        parent = *link;
        link = c > 0 ? &parent->left : &parent->right;
    }
    if (link_out != NULL) {
        *parent_out = parent;
        *link_out = (struct kv_avl_node **)link;
    }
    return NULL;
}

/* Exact lookup: the hash index, then the tree only if some key is not in the index. */
static struct kv_key *find_key(const struct kv *kv, const uint8_t *key, uint32_t key_len)
{
    struct kv_key *k = hash_find(kv, key_hash(kv, key, key_len), key, key_len);
    if (k != NULL || kv->n_unhashed == 0) {
        return k;
    }
    return tree_find(kv, key, key_len, NULL, NULL);
}

/* First key >= (key, key_len), or NULL. */
static struct kv_key *seek_key(const struct kv *kv, const uint8_t *key, uint32_t key_len)
{
    struct kv_avl_node *n = kv->keys.root;
    struct kv_avl_node *best = NULL;
    while (n != NULL) {
        if (key_cmp(KEY_OF(n), key, key_len) >= 0) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    return best != NULL ? KEY_OF(best) : NULL;
}

/* First key of a span (then step with next_in_span). */
static struct kv_key *first_in_span(const struct kv *kv, const struct kvcmd_span *s)
{
    struct kv_key *k;
    if (s->kind == KVCMD_SPAN_KEY) {
        return find_key(kv, s->key, s->key_len);
    }
    k = seek_key(kv, s->key, s->key_len);
    return (k != NULL && !kvcmd_span_past(s, k->key, k->key_len)) ? k : NULL;
}

static struct kv_key *next_in_span(const struct kvcmd_span *s, const struct kv_key *k)
{
    if (s->kind == KVCMD_SPAN_KEY) {
        return NULL;
    }
    struct kv_avl_node *n = kv_avl_next(&k->node);
    if (n == NULL || kvcmd_span_past(s, KEY_OF(n)->key, KEY_OF(n)->key_len)) {
        return NULL;
    }
    return KEY_OF(n);
}

static struct kv_key *new_key(const uint8_t *key, uint32_t key_len, uint32_t hash)
{
    struct kv_key *k = must(malloc(sizeof *k + key_len));
    memset(k, 0, sizeof *k);
    k->versions = &k->one;
    k->cap_versions = 1;
    k->key_len = key_len;
    k->hash = hash;
    memcpy(k->key, key, key_len);
    return k;
}

static void free_key(struct kv_key *k)
{
    for (uint32_t i = 0; i < k->n_versions; i++) {
        free(k->versions[i].value);
    }
    if (k->versions != &k->one) {
        free(k->versions);
    }
    free(k);
}

/* ==== versions and log =================================================== */

static const struct kv_version *latest(const struct kv_key *k)
{
    CC_ASSERT(k->n_versions > 0);
    return &k->versions[k->n_versions - 1];
}

static const struct kv_version *latest_live(const struct kv_key *k)
{
    const struct kv_version *v = latest(k);
    return IS_TOMB(v) ? NULL : v;
}

/* Index of the newest version with mod_rev <= rev, or -1. Binary search: a hot key
 * may hold many versions between compactions. */
static int64_t version_at(const struct kv_key *k, int64_t rev)
{
    uint32_t lo = 0, hi = k->n_versions; /* answer is lo - 1 */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->versions[mid].mod_rev <= rev) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return (int64_t)lo - 1;
}

/* The version a read at rev sees (INT64_MAX: the newest, own txn writes included). */
static const struct kv_version *visible(const struct kv_key *k, int64_t rev)
{
    int64_t i = version_at(k, rev);
    if (i < 0 || IS_TOMB(&k->versions[i])) {
        return NULL;
    }
    return &k->versions[i];
}

static void log_append(struct kv *kv, struct kv_key *k, int64_t rev, uint32_t sub)
{
    if (kv->log_end == kv->log_cap) {
        if (kv->log_head >= KV_LOG_SHIFT_MIN && kv->log_head >= kv->log_end / 2) {
            memmove(kv->log, kv->log + kv->log_head,
                    (kv->log_end - kv->log_head) * sizeof *kv->log);
            kv->log_end -= kv->log_head;
            kv->log_head = 0;
        } else {
            size_t ncap = kv->log_cap < 1024 ? 1024 : kv->log_cap * 2;
            kv->log = must(realloc(kv->log, ncap * sizeof *kv->log));
            kv->log_cap = ncap;
        }
    }
    kv->log[kv->log_end++] = (struct kv_log_entry){k, rev, sub};
}

/* Appends v (whose value k now owns) to k's history and records it in the log. */
static void append_version(struct kv *kv, struct kv_key *k, const struct kv_version *v)
{
    CC_ASSERT(k->n_versions == 0 || latest(k)->mod_rev < v->mod_rev);
    if (k->n_versions == k->cap_versions) {
        CC_ASSERT(k->cap_versions < UINT32_MAX / 2);
        uint32_t ncap = k->cap_versions < 4 ? 4 : k->cap_versions * 2;
        if (k->versions == &k->one) {
            struct kv_version *nv = must(malloc(ncap * sizeof *nv));
            nv[0] = k->one;
            k->versions = nv;
        } else {
            k->versions = must(realloc(k->versions, ncap * sizeof *k->versions));
        }
        k->cap_versions = ncap;
    }
    k->versions[k->n_versions++] = *v;
    kv->n_versions++;
    log_append(kv, k, v->mod_rev, v->sub);
}

/* ==== leases ============================================================= */

static struct kv_lease_set *find_lease(const struct kv *kv, int64_t lease,
                                       struct kv_avl_node **parent_out,
                                       struct kv_avl_node ***link_out)
{
    struct kv_avl_node *parent = NULL;
    struct kv_avl_node *const *link = &kv->leases.root;
    while (*link != NULL) {
        struct kv_lease_set *s = LSET_OF(*link);
        if (s->lease == lease) {
            return s;
        }
        parent = *link;
        link = lease < s->lease ? &parent->left : &parent->right;
    }
    if (link_out != NULL) {
        *parent_out = parent;
        *link_out = (struct kv_avl_node **)link;
    }
    return NULL;
}

static void lease_attach(struct kv *kv, struct kv_key *k, int64_t lease)
{
    CC_ASSERT(k->lease == 0);
    CC_ASSERT(lease > 0);
    struct kv_avl_node *parent, **link;
    struct kv_lease_set *s = find_lease(kv, lease, &parent, &link);
    if (s == NULL) {
        s = must(calloc(1, sizeof *s));
        s->lease = lease;
        kv_avl_link(&kv->leases, parent, link, &s->node);
    }
    k->lease = lease;
    k->lease_prev = NULL;
    k->lease_next = s->head;
    if (s->head != NULL) {
        s->head->lease_prev = k;
    }
    s->head = k;
    s->n_keys++;
}

static void lease_detach(struct kv *kv, struct kv_key *k)
{
    if (k->lease == 0) {
        return;
    }
    struct kv_lease_set *s = find_lease(kv, k->lease, NULL, NULL);
    CC_ASSERT(s != NULL);
    if (k->lease_prev != NULL) {
        k->lease_prev->lease_next = k->lease_next;
    } else {
        CC_ASSERT(s->head == k);
        s->head = k->lease_next;
    }
    if (k->lease_next != NULL) {
        k->lease_next->lease_prev = k->lease_prev;
    }
    k->lease = 0;
    k->lease_prev = NULL;
    k->lease_next = NULL;
    if (--s->n_keys == 0) {
        CC_ASSERT(s->head == NULL);
        kv_avl_remove(&kv->leases, &s->node);
        free(s);
    }
}

/* Keeps k's attachment equal to its newest version's lease. */
static void lease_sync(struct kv *kv, struct kv_key *k)
{
    const struct kv_version *v = latest_live(k);
    int64_t want = v != NULL ? v->lease : 0;
    if (k->lease == want) {
        return;
    }
    lease_detach(kv, k);
    if (want != 0) {
        lease_attach(kv, k, want);
    }
}

uint64_t kv_lease_key_count(const struct kv *kv, int64_t lease)
{
    const struct kv_lease_set *s = find_lease(kv, lease, NULL, NULL);
    return s != NULL ? s->n_keys : 0;
}

/* ==== compaction ========================================================= */

/* Frees what the log entry at the front made unreadable, if it is the newest change of
 * its key at or below the compacted revision (older entries of the key come first in
 * the log, so they were handled already; newer ones <= compacted will do the work). */
static void trim_front(struct kv *kv)
{
    struct kv_log_entry *e = &kv->log[kv->log_head];
    struct kv_key *k = e->key;
    CC_ASSERT(e->rev <= kv->compacted);
    kv->log_head++;

    int64_t i = version_at(k, e->rev);
    CC_ASSERT(i >= 0);
    CC_ASSERT(k->versions[i].mod_rev == e->rev);
    if ((uint32_t)i + 1 < k->n_versions && k->versions[i + 1].mod_rev <= kv->compacted) {
        return;
    }
    uint32_t drop = (uint32_t)i + (IS_TOMB(&k->versions[i]) ? 1u : 0u);
    if (drop == 0) {
        return;
    }
    for (uint32_t j = 0; j < drop; j++) {
        free(k->versions[j].value);
    }
    memmove(k->versions, k->versions + drop, (k->n_versions - drop) * sizeof *k->versions);
    k->n_versions -= drop;
    kv->n_versions -= drop;
    if (k->n_versions == 0) {
        CC_ASSERT(k->lease == 0); /* its newest version was a tombstone */
        kv_avl_remove(&kv->keys, &k->node);
        hash_remove(kv, k); /* after the unlink: a rebuild from the tree must not see k */
        free_key(k);
        return;
    }
    if (k->n_versions == 1 && k->versions != &k->one) {
        k->one = k->versions[0];
        free(k->versions);
        k->versions = &k->one;
        k->cap_versions = 1;
    }
}

/* Log entries at or below the compacted revision: a prefix, found by binary search. */
static uint64_t trim_pending(const struct kv *kv)
{
    size_t lo = kv->log_head, hi = kv->log_end;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv->log[mid].rev <= kv->compacted) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo - kv->log_head;
}

uint64_t kv_compact_step(struct kv *kv, uint32_t budget)
{
    for (uint32_t done = 0;
         done < budget && kv->log_head < kv->log_end && kv->log[kv->log_head].rev <= kv->compacted;
         done++) {
        trim_front(kv);
    }
    return trim_pending(kv);
}

/* ==== reads ============================================================== */

static int check_read_rev(const struct kv *kv, int64_t rev)
{
    if (rev <= 0) {
        return 0;
    }
    if (rev > kv->revision) {
        return KV_EFUTUREREV;
    }
    if (rev < kv->compacted) {
        return KV_ECOMPACTED;
    }
    return 0;
}

/* A view of version v of key k pointing into the store (values omitted unless
 * with_value). */
static void kv_view(const struct kv_key *k, const struct kv_version *v, bool with_value,
                    struct kv_kv *out)
{
    out->key = k->key;
    out->key_len = k->key_len;
    out->value = with_value ? v->value : NULL;
    out->value_len = with_value ? v->value_len : 0;
    out->create_revision = v->create_rev;
    out->mod_revision = v->mod_rev;
    out->version = v->version;
    out->lease = v->lease;
}

/* Copies a view's bytes into memory at *cursor (advancing it). */
static void kv_copy_bytes(struct kv_kv *kv, uint8_t **cursor)
{
    uint8_t *p = *cursor;
    if (kv->key_len > 0) {
        memcpy(p, kv->key, kv->key_len);
        kv->key = p;
        p += kv->key_len;
    }
    if (kv->value_len > 0) {
        memcpy(p, kv->value, kv->value_len);
        kv->value = p;
        p += kv->value_len;
    } else {
        kv->value = NULL;
    }
    *cursor = p;
}

/* An arena-owned copy of version v of key k. */
static void kv_copy(struct kv_arena *a, const struct kv_key *k, const struct kv_version *v,
                    struct kv_kv *out)
{
    kv_view(k, v, true, out);
    uint8_t *p = arena_must(a, (size_t)k->key_len + v->value_len);
    kv_copy_bytes(out, &p);
}

/* The core of every range. read_rev is a checked revision or INT64_MAX for "newest".
 * *bytes_left is the result's KV_RESULT_BYTES_MAX budget. With a the response lives in
 * that arena (and allocation failure is fatal: the apply path); without it, in one
 * malloc'd block at resp->mem (the read path, which may return KV_ENOMEM). Two passes:
 * count and size, then copy, so memory is exact and never grows. */
static int range_fill(const struct kv *kv, const struct kv_range_req *req, int64_t read_rev,
                      size_t *bytes_left, struct kv_arena *a, struct kv_range_resp *resp)
{
    struct kvcmd_span s;
    kvcmd_span_make(req->key, req->key_len, req->range_end, req->range_end_len, req->prefix, &s);
    uint64_t limit = (req->limit == 0 || (uint64_t)req->limit > KV_RANGE_LIMIT_MAX)
                         ? KV_RANGE_LIMIT_MAX
                         : (uint64_t)req->limit;
    memset(resp, 0, sizeof *resp);

    int64_t count = 0;
    uint32_t n_take = 0;
    size_t take_bytes = 0;
    bool taking = !req->count_only;
    for (struct kv_key *k = first_in_span(kv, &s); k != NULL; k = next_in_span(&s, k)) {
        const struct kv_version *v = visible(k, read_rev);
        if (v == NULL) {
            continue;
        }
        count++;
        if (taking) {
            size_t sz = (size_t)k->key_len + (req->keys_only ? 0 : v->value_len);
            if (n_take < limit && (n_take == 0 || take_bytes + sz <= *bytes_left)) {
                n_take++;
                take_bytes += sz;
            } else {
                taking = false; /* what is returned must be a prefix of the range */
                if (req->skip_count && !req->count_only)
                    break; /* one key past the answer proves `more` */
            }
        }
    }
    resp->count = count;
    resp->more = !req->count_only && (int64_t)n_take < count;
    *bytes_left = take_bytes >= *bytes_left ? 0 : *bytes_left - take_bytes;
    if (n_take == 0) {
        return 0;
    }

    size_t size = (size_t)n_take * sizeof(struct kv_kv) + take_bytes;
    void *mem = a != NULL ? arena_must(a, size) : malloc(size);
    if (mem == NULL) {
        return KV_ENOMEM;
    }
    if (a == NULL) {
        resp->mem = mem;
    }
    resp->kvs = mem;
    uint8_t *cursor = (uint8_t *)mem + (size_t)n_take * sizeof(struct kv_kv);
    for (struct kv_key *k = first_in_span(kv, &s); k != NULL && resp->n_kvs < n_take;
         k = next_in_span(&s, k)) {
        const struct kv_version *v = visible(k, read_rev);
        if (v == NULL) {
            continue;
        }
        struct kv_kv *out = &resp->kvs[resp->n_kvs++];
        kv_view(k, v, !req->keys_only, out);
        kv_copy_bytes(out, &cursor);
    }
    CC_ASSERT(resp->n_kvs == n_take);
    return 0;
}

int kv_range(const struct kv *kv, const struct kv_range_req *req, struct kv_range_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    int rv = kvcmd_check_range(req);
    if (rv == 0) {
        rv = check_read_rev(kv, req->revision);
    }
    if (rv != 0) {
        return rv;
    }
    size_t budget = KV_RESULT_BYTES_MAX;
    return range_fill(kv, req, req->revision > 0 ? req->revision : INT64_MAX, &budget, NULL, resp);
}

static bool compare_holds(const struct kv *kv, const struct kv_compare *c)
{
    const struct kv_key *k = find_key(kv, c->key, c->key_len);
    const struct kv_version *v = k != NULL ? latest_live(k) : NULL;
    int diff;
    if (c->target == KV_CMP_VALUE) {
        if (v == NULL) {
            return false; /* etcd: a missing key has no value to compare */
        }
        diff = kvcmd_key_cmp(v->value, v->value_len, c->value, c->value_len);
    } else {
        int64_t x = 0;
        if (v != NULL) {
            switch (c->target) {
            case KV_CMP_VERSION:
                x = v->version;
                break;
            case KV_CMP_CREATE:
                x = v->create_rev;
                break;
            case KV_CMP_MOD:
                x = v->mod_rev;
                break;
            case KV_CMP_LEASE:
                x = v->lease;
                break;
            default:
                CC_UNREACHABLE();
            }
        }
        diff = (x > c->number) - (x < c->number);
    }
    switch (c->op) {
    case KV_CMP_EQUAL:
        return diff == 0;
    case KV_CMP_NOT_EQUAL:
        return diff != 0;
    case KV_CMP_LESS:
        return diff < 0;
    case KV_CMP_GREATER:
        return diff > 0;
    default:
        CC_UNREACHABLE();
    }
}

/* ==== apply ============================================================== */

static void write_begin(struct kv *kv)
{
    CC_ASSERT(kv->revision < INT64_MAX);
    kv->write_rev = kv->revision + 1;
    kv->write_sub = 0;
    kv->events_cap = 0;
}

/* A command that changed nothing keeps the revision (etcd). */
static void write_end(struct kv *kv, struct kv_result *res)
{
    if (res->n_events > 0) {
        kv->revision = kv->write_rev;
    }
    res->revision = kv->revision;
}

static struct kv_event *push_event(struct kv *kv, struct kv_result *res)
{
    void *arr = res->events;
    struct kv_event *ev =
        arena_push(&res->arena, &arr, &res->n_events, &kv->events_cap, sizeof *ev);
    res->events = arr;
    return ev;
}

/* The checks a write needs against the store before anything changes. */
static int precheck_put(const struct kv *kv, const struct kv_put_req *req)
{
    if (!req->ignore_value && !req->ignore_lease) {
        return 0;
    }
    const struct kv_key *k = find_key(kv, req->key, req->key_len);
    return (k != NULL && latest_live(k) != NULL) ? 0 : KV_EKEYNOTFOUND;
}

static int precheck_op(const struct kv *kv, const struct kv_op *op)
{
    switch (op->type) {
    case KV_OP_PUT:
        return precheck_put(kv, &op->put);
    case KV_OP_DELETE:
        return 0;
    case KV_OP_RANGE:
        return check_read_rev(kv, op->range.revision);
    default:
        CC_UNREACHABLE();
    }
}

static void apply_put(struct kv *kv, const struct kv_put_req *req, struct kv_result *res,
                      struct kv_put_resp *resp)
{
    /* A new key needs the tree's link slot, so only a hash hit skips the descent. */
    struct kv_avl_node *parent = NULL, **link = NULL;
    uint32_t hash = key_hash(kv, req->key, req->key_len);
    struct kv_key *k = hash_find(kv, hash, req->key, req->key_len);
    if (k == NULL) {
        k = tree_find(kv, req->key, req->key_len, &parent, &link);
        CC_ASSERT(k == NULL || kv->n_unhashed > 0);
    }
    const struct kv_version *prev = k != NULL ? latest_live(k) : NULL;
    CC_ASSERT(prev != NULL || (!req->ignore_value && !req->ignore_lease)); /* prechecked */

    struct kv_version v = {
        .mod_rev = kv->write_rev,
        .sub = kv->write_sub++,
        .create_rev = prev != NULL ? prev->create_rev : kv->write_rev,
        .version = prev != NULL ? prev->version + 1 : 1,
        .lease = req->ignore_lease ? prev->lease : req->lease,
    };
    if (req->ignore_value) {
        v.value = dup_bytes(prev->value, prev->value_len);
        v.value_len = prev->value_len;
    } else {
        v.value = dup_bytes(req->value, req->value_len);
        v.value_len = req->value_len;
    }

    struct kv_event *ev = push_event(kv, res);
    ev->type = KV_EVENT_PUT;
    ev->prev_lease = prev != NULL ? prev->lease : 0;
    if (prev != NULL && req->prev_kv) {
        /* Copy before append_version: growing the history moves prev. */
        kv_copy(&res->arena, k, prev, &resp->prev_kv);
        resp->has_prev = true;
        ev->has_prev = true;
        ev->prev_kv = resp->prev_kv;
    }
    if (k == NULL) {
        k = new_key(req->key, req->key_len, hash);
        hash_add(kv, k); /* before the link: a rebuild from the tree must not see k */
        kv_avl_link(&kv->keys, parent, link, &k->node);
    }
    if (prev == NULL) {
        kv->n_live++;
    }
    append_version(kv, k, &v);
    lease_sync(kv, k);
    kv_copy(&res->arena, k, latest(k), &ev->kv);
}

/* Writes a tombstone for live key k. */
static void delete_key(struct kv *kv, struct kv_key *k, bool want_prev, struct kv_result *res,
                       struct kv_delete_resp *resp, uint32_t *prev_cap)
{
    const struct kv_version *prev = latest_live(k);
    CC_ASSERT(prev != NULL);
    struct kv_event *ev = push_event(kv, res);
    ev->type = KV_EVENT_DELETE;
    ev->prev_lease = prev->lease;
    if (want_prev) {
        void *arr = resp->prev_kvs;
        struct kv_kv *slot =
            arena_push(&res->arena, &arr, &resp->n_prev_kvs, prev_cap, sizeof *slot);
        resp->prev_kvs = arr;
        kv_copy(&res->arena, k, prev, slot);
        ev->has_prev = true;
        ev->prev_kv = *slot;
    }
    struct kv_version v = {.mod_rev = kv->write_rev, .sub = kv->write_sub++};
    append_version(kv, k, &v);
    lease_sync(kv, k);
    kv->n_live--;
    resp->n_deleted++;
    ev->kv.key = arena_must(&res->arena, k->key_len);
    memcpy((uint8_t *)ev->kv.key, k->key, k->key_len);
    ev->kv.key_len = k->key_len;
    ev->kv.mod_revision = kv->write_rev;
}

static void apply_delete(struct kv *kv, const struct kv_delete_req *req, struct kv_result *res,
                         struct kv_delete_resp *resp)
{
    struct kvcmd_span s;
    kvcmd_span_make(req->key, req->key_len, req->range_end, req->range_end_len, req->prefix, &s);
    uint32_t prev_cap = 0;
    /* Appending versions never changes the index's shape, so stepping stays valid. */
    for (struct kv_key *k = first_in_span(kv, &s); k != NULL; k = next_in_span(&s, k)) {
        if (latest_live(k) != NULL) {
            delete_key(kv, k, req->prev_kv, res, resp, &prev_cap);
        }
    }
}

/* Runs one op of a branch whose prechecks passed. */
static void apply_op(struct kv *kv, const struct kv_op *op, struct kv_result *res,
                     struct kv_response *resp, size_t *bytes_left)
{
    resp->type = op->type;
    switch (op->type) {
    case KV_OP_PUT:
        apply_put(kv, &op->put, res, &resp->put);
        break;
    case KV_OP_DELETE:
        apply_delete(kv, &op->del, res, &resp->del);
        break;
    case KV_OP_RANGE: {
        int64_t rev = op->range.revision > 0 ? op->range.revision : INT64_MAX;
        int rv = range_fill(kv, &op->range, rev, bytes_left, &res->arena, &resp->range);
        CC_ASSERT(rv == 0); /* arena allocation cannot fail softly */
        break;
    }
    default:
        CC_UNREACHABLE();
    }
}

static int apply_ops(struct kv *kv, const struct kv_op *ops, uint32_t n_ops, struct kv_result *res)
{
    for (uint32_t i = 0; i < n_ops; i++) {
        int rv = precheck_op(kv, &ops[i]);
        if (rv != 0) {
            return rv;
        }
    }
    size_t bytes_left = KV_RESULT_BYTES_MAX;
    write_begin(kv);
    if (n_ops > 0) {
        res->responses = arena_must(&res->arena, n_ops * sizeof *res->responses);
        memset(res->responses, 0, n_ops * sizeof *res->responses);
    }
    res->n_responses = n_ops;
    for (uint32_t i = 0; i < n_ops; i++) {
        apply_op(kv, &ops[i], res, &res->responses[i], &bytes_left);
    }
    write_end(kv, res);
    return 0;
}

static int apply_txn(struct kv *kv, const struct kv_txn_req *txn, struct kv_result *res)
{
    bool ok = true;
    for (uint32_t i = 0; i < txn->n_compares && ok; i++) {
        ok = compare_holds(kv, &txn->compares[i]);
    }
    int rv = ok ? apply_ops(kv, txn->success, txn->n_success, res)
                : apply_ops(kv, txn->failure, txn->n_failure, res);
    res->succeeded = ok;
    return rv;
}

static int apply_compact(struct kv *kv, int64_t rev)
{
    if (rev <= kv->compacted) {
        return KV_ECOMPACTED;
    }
    if (rev > kv->revision) {
        return KV_EFUTUREREV;
    }
    kv->compacted = rev;
    return 0;
}

static int apply_cmd(struct kv *kv, const struct kvcmd *cmd, struct kv_result *res)
{
    struct kv_op op;
    switch (cmd->type) {
    case KV_CMD_PUT:
        op = (struct kv_op){.type = KV_OP_PUT, .put = cmd->put};
        return apply_ops(kv, &op, 1, res);
    case KV_CMD_DELETE_RANGE:
        op = (struct kv_op){.type = KV_OP_DELETE, .del = cmd->del};
        return apply_ops(kv, &op, 1, res);
    case KV_CMD_RANGE:
        op = (struct kv_op){.type = KV_OP_RANGE, .range = cmd->range};
        return apply_ops(kv, &op, 1, res);
    case KV_CMD_TXN:
        return apply_txn(kv, &cmd->txn, res);
    case KV_CMD_COMPACT:
        return apply_compact(kv, cmd->compact_revision);
    default:
        CC_UNREACHABLE();
    }
}

int kv_apply(struct kv *kv, const uint8_t *cmd, size_t n, struct kv_result *res)
{
    memset(res, 0, sizeof *res);
    int rv = kvcmd_decode(cmd, n, &kv->cmd);
    if (rv != KV_EMALFORMED && rv != KV_EFORMAT && rv != KV_ECMDTOOBIG) {
        res->type = kv->cmd.type; /* well-formed, though maybe over a limit */
    }
    if (rv == 0) {
        res->succeeded = true;
        rv = apply_cmd(kv, &kv->cmd, res);
    }
    if (rv != 0) {
        /* Prechecks run before the first change, so nothing was written. */
        uint8_t type = res->type;
        kv_result_free(res);
        res->type = type;
        res->err = rv;
    }
    res->revision = kv->revision;
    kv_compact_step(kv, KV_COMPACT_STEP_MAX);
    return rv;
}

/* One entry of the sort in kv_delete_by_lease (a struct, so sizeof names a record). */
struct key_ref {
    struct kv_key *k;
};

static int key_ref_cmp(const void *a, const void *b)
{
    const struct kv_key *ka = ((const struct key_ref *)a)->k;
    const struct kv_key *kb = ((const struct key_ref *)b)->k;
    return kvcmd_key_cmp(ka->key, ka->key_len, kb->key, kb->key_len);
}

int kv_delete_by_lease(struct kv *kv, int64_t lease, bool prev_kv, struct kv_result *res)
{
    memset(res, 0, sizeof *res);
    res->type = KV_CMD_DELETE_RANGE;
    res->revision = kv->revision;
    if (lease <= 0) {
        res->err = KV_EINVAL;
        res->type = 0;
        return res->err;
    }
    res->succeeded = true;
    write_begin(kv);
    res->responses = arena_must(&res->arena, sizeof *res->responses);
    memset(res->responses, 0, sizeof *res->responses);
    res->responses[0].type = KV_OP_DELETE;
    res->n_responses = 1;

    struct kv_lease_set *s = find_lease(kv, lease, NULL, NULL);
    if (s != NULL) {
        /* Key order, not list order: the list's order depends on history (a replica
         * restored from a snapshot rebuilds it differently), the events must not. */
        CC_ASSERT(s->n_keys <= SIZE_MAX / sizeof(struct key_ref));
        size_t n = (size_t)s->n_keys;
        struct key_ref *keys = must(calloc(n, sizeof *keys));
        size_t i = 0;
        for (struct kv_key *k = s->head; k != NULL; k = k->lease_next) {
            keys[i++].k = k;
        }
        CC_ASSERT(i == n);
        qsort(keys, n, sizeof *keys, key_ref_cmp);
        uint32_t prev_cap = 0;
        for (i = 0; i < n; i++) { /* the set is freed with its last key */
            delete_key(kv, keys[i].k, prev_kv, res, &res->responses[0].del, &prev_cap);
        }
        free(keys);
    }
    write_end(kv, res);
    kv_compact_step(kv, KV_COMPACT_STEP_MAX);
    return 0;
}

/* ==== history ============================================================ */

int kv_history_since(const struct kv *kv, const uint8_t *key, uint32_t key_len,
                     const uint8_t *range_end, uint32_t range_end_len, int64_t from_revision,
                     uint32_t budget, int64_t *next_revision, kv_event_cb event_cb, void *arg)
{
    struct kv_delete_req span_req = {key, key_len, range_end, range_end_len, false, false};
    int rv = kvcmd_check_delete(&span_req);
    if (rv != 0) {
        return rv;
    }
    if (from_revision < 1 || budget == 0) {
        return KV_EINVAL;
    }
    if (from_revision <= kv->compacted) {
        return KV_ECOMPACTED;
    }
    struct kvcmd_span s;
    kvcmd_span_make(key, key_len, range_end, range_end_len, false, &s);

    size_t lo = kv->log_head, hi = kv->log_end;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv->log[mid].rev < from_revision) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    uint32_t examined = 0;
    int64_t last_rev = 0;
    size_t i;
    for (i = lo; i < kv->log_end; i++) {
        const struct kv_log_entry *e = &kv->log[i];
        if (examined >= budget && e->rev != last_rev) {
            break;
        }
        examined += examined < UINT32_MAX ? 1 : 0;
        last_rev = e->rev;
        const struct kv_key *k = e->key;
        if (!kvcmd_span_contains(&s, k->key, k->key_len)) {
            continue;
        }
        int64_t j = version_at(k, e->rev);
        CC_ASSERT(j >= 0);
        const struct kv_version *v = &k->versions[j];
        CC_ASSERT(v->mod_rev == e->rev);
        struct kv_event ev;
        memset(&ev, 0, sizeof ev);
        if (IS_TOMB(v)) {
            ev.type = KV_EVENT_DELETE;
            ev.kv.key = k->key;
            ev.kv.key_len = k->key_len;
            ev.kv.mod_revision = v->mod_rev;
        } else {
            ev.type = KV_EVENT_PUT;
            kv_view(k, v, true, &ev.kv);
        }
        /* The version just before is readable whenever v is (see the essay). */
        if (j > 0 && !IS_TOMB(&k->versions[j - 1])) {
            ev.has_prev = true;
            kv_view(k, &k->versions[j - 1], true, &ev.prev_kv);
        }
        rv = event_cb(arg, &ev);
        if (rv != 0) {
            *next_revision = e->rev;
            return rv;
        }
    }
    *next_revision = i < kv->log_end
                         ? kv->log[i].rev
                         : (from_revision > kv->revision ? from_revision : kv->revision + 1);
    return 0;
}

/* ==== canonical image (digest, snapshot) ================================= */

/* Where the canonical stream goes: counted, written, or hashed. */
struct sink {
    uint8_t *p; /* write here when set */
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

/* Index of k's first readable version (the newest at or below compacted, unless it
 * is a tombstone, and all after it). == n_versions when nothing is readable. */
static uint32_t first_readable(const struct kv *kv, const struct kv_key *k)
{
    int64_t i = version_at(k, kv->compacted);
    if (i < 0) {
        return 0;
    }
    return (uint32_t)i + (IS_TOMB(&k->versions[i]) ? 1u : 0u);
}

/* Everything but the CRC: header, keys with readable versions, trailer. */
static void canonical_stream(const struct kv *kv, struct sink *s)
{
    sink_bytes(s, SNAP_MAGIC, 4);
    sink_le(s, SNAP_FORMAT_VERSION, 4);
    sink_le(s, (uint64_t)kv->revision, 8);
    sink_le(s, (uint64_t)kv->compacted, 8);
    uint64_t n_keys = 0;
    for (struct kv_avl_node *n = kv_avl_first(&kv->keys); n != NULL; n = kv_avl_next(n)) {
        const struct kv_key *k = KEY_OF(n);
        uint32_t first = first_readable(kv, k);
        if (first == k->n_versions) {
            continue;
        }
        n_keys++;
        sink_le(s, k->key_len, 4);
        sink_bytes(s, k->key, k->key_len);
        sink_le(s, k->n_versions - first, 4);
        for (uint32_t i = first; i < k->n_versions; i++) {
            const struct kv_version *v = &k->versions[i];
            sink_le(s, (uint64_t)v->mod_rev, 8);
            sink_le(s, v->sub, 4);
            sink_le(s, (uint64_t)v->create_rev, 8);
            sink_le(s, (uint64_t)v->version, 8);
            sink_le(s, (uint64_t)v->lease, 8);
            sink_le(s, v->value_len, 4);
            sink_bytes(s, v->value, v->value_len);
        }
    }
    sink_le(s, 0, 4); /* end of keys: a real key is never empty */
    sink_le(s, n_keys, 8);
}

uint64_t kv_digest(const struct kv *kv)
{
    struct sink s = {.hash = true, .h = HASH_FNV_INIT};
    canonical_stream(kv, &s);
    return s.h;
}

int kv_snapshot_encode(const struct kv *kv, uint8_t **buf, size_t *n)
{
    struct sink s = {0};
    canonical_stream(kv, &s);
    size_t size = s.n + 4;
    uint8_t *p = malloc(size);
    if (p == NULL) {
        return KV_ENOMEM;
    }
    s = (struct sink){.p = p};
    canonical_stream(kv, &s);
    CC_ASSERT(s.n + 4 == size);
    uint32_t crc = crc32c(0, p, s.n);
    for (unsigned i = 0; i < 4; i++) {
        p[s.n + i] = (uint8_t)(crc >> (8 * i));
    }
    *buf = p;
    *n = size;
    return 0;
}

static bool snap_i64(struct le_reader *r, int64_t *v)
{
    uint64_t x;
    if (!le_read(r, 8, &x)) {
        return false;
    }
    *v = (int64_t)x;
    return true;
}

static bool snap_u32(struct le_reader *r, uint32_t *v)
{
    uint64_t x;
    if (!le_read(r, 4, &x)) {
        return false;
    }
    *v = (uint32_t)x;
    return true;
}

/* Checks v against the version before it (NULL for a key's first readable one). The
 * rules are the ones apply_put and delete_key follow. */
static bool snap_version_ok(const struct kv *kv, const struct kv_version *prev,
                            const struct kv_version *v)
{
    if (v->mod_rev < 1 || v->mod_rev > kv->revision || v->value_len > KV_VALUE_BYTES_MAX) {
        return false;
    }
    if (IS_TOMB(v)) {
        /* A delete always follows a live version, which is then readable too. */
        return prev != NULL && !IS_TOMB(prev) && v->mod_rev > prev->mod_rev && v->create_rev == 0 &&
               v->lease == 0 && v->value_len == 0 && v->mod_rev > kv->compacted;
    }
    if (v->version < 1 || v->create_rev < 1 || v->create_rev > v->mod_rev || v->lease < 0) {
        return false;
    }
    if (prev == NULL) {
        /* Readable at the compacted revision: its predecessors were compacted away.
         * Above it: nothing before was readable, so this put created the key. */
        return v->mod_rev <= kv->compacted || (v->version == 1 && v->create_rev == v->mod_rev);
    }
    if (v->mod_rev <= prev->mod_rev || v->mod_rev <= kv->compacted) {
        return false; /* only a key's first readable version may be <= compacted */
    }
    if (IS_TOMB(prev)) {
        return v->version == 1 && v->create_rev == v->mod_rev;
    }
    return v->version == prev->version + 1 && v->create_rev == prev->create_rev &&
           prev->version < INT64_MAX;
}

/* Reads one key and its versions; links it after the current last key. */
static int snap_read_key(struct kv *kv, struct le_reader *r, uint32_t key_len)
{
    uint32_t n_versions;
    if (key_len > KV_KEY_BYTES_MAX || r->n - r->off < key_len) {
        return KV_ECORRUPT;
    }
    const uint8_t *key = r->p + r->off;
    r->off += key_len;
    struct kv_avl_node *last = kv_avl_last(&kv->keys);
    if (last != NULL && key_cmp(KEY_OF(last), key, key_len) >= 0) {
        return KV_ECORRUPT; /* keys must be strictly ascending */
    }
    if (!snap_u32(r, &n_versions) || n_versions == 0 ||
        n_versions > (r->n - r->off) / SNAP_VERSION_BYTES) {
        return KV_ECORRUPT;
    }
    struct kv_key *k = malloc(sizeof *k + key_len);
    struct kv_version *vs = n_versions > 1 ? malloc(n_versions * sizeof *vs) : NULL;
    if (k == NULL || (n_versions > 1 && vs == NULL)) {
        free(k);
        free(vs);
        return KV_ENOMEM;
    }
    memset(k, 0, sizeof *k);
    k->key_len = key_len;
    memcpy(k->key, key, key_len);
    k->versions = vs != NULL ? vs : &k->one;
    k->cap_versions = n_versions;
    /* Linked first so kv_free reclaims it on any later error. */
    kv_avl_link(&kv->keys, last, last != NULL ? &last->right : &kv->keys.root, &k->node);

    for (uint32_t i = 0; i < n_versions; i++) {
        struct kv_version v = {0};
        uint32_t sub, len;
        if (!snap_i64(r, &v.mod_rev) || !snap_u32(r, &sub) || !snap_i64(r, &v.create_rev) ||
            !snap_i64(r, &v.version) || !snap_i64(r, &v.lease) || !snap_u32(r, &len) ||
            r->n - r->off < len) {
            return KV_ECORRUPT;
        }
        v.sub = sub;
        v.value_len = len;
        if (!snap_version_ok(kv, i > 0 ? &k->versions[i - 1] : NULL, &v)) {
            return KV_ECORRUPT;
        }
        if (len > 0) {
            v.value = malloc(len);
            if (v.value == NULL) {
                return KV_ENOMEM;
            }
            memcpy(v.value, r->p + r->off, len);
            r->off += len;
        }
        k->versions[k->n_versions++] = v;
        kv->n_versions++;
        if (v.mod_rev > kv->compacted) {
            if (kv->log_end == kv->log_cap) {
                size_t ncap = kv->log_cap < 1024 ? 1024 : kv->log_cap * 2;
                struct kv_log_entry *nl = realloc(kv->log, ncap * sizeof *nl);
                if (nl == NULL) {
                    return KV_ENOMEM;
                }
                kv->log = nl;
                kv->log_cap = ncap;
            }
            kv->log[kv->log_end++] = (struct kv_log_entry){k, v.mod_rev, v.sub};
        }
    }
    return 0;
}

static int log_entry_cmp(const void *a, const void *b)
{
    const struct kv_log_entry *x = a, *y = b;
    if (x->rev != y->rev) {
        return x->rev < y->rev ? -1 : 1;
    }
    return (x->sub > y->sub) - (x->sub < y->sub);
}

/* After all keys are read: order the log and prove it is the history of a real run,
 * then attach leases. */
static int snap_finish(struct kv *kv)
{
    if (kv->log_end > 0) {
        qsort(kv->log, kv->log_end, sizeof *kv->log, log_entry_cmp);
    }
    /* Every revision above the compacted one (and above 1, which never has changes)
     * holds changes with sub-revisions 0, 1, 2, ... */
    int64_t expect_rev = (kv->compacted > 1 ? kv->compacted : 1) + 1;
    uint32_t expect_sub = 0;
    for (size_t i = 0; i < kv->log_end; i++) {
        const struct kv_log_entry *e = &kv->log[i];
        if (e->rev == expect_rev && e->sub == expect_sub) {
            expect_sub++;
        } else if (e->rev == expect_rev + 1 && e->sub == 0 && expect_sub > 0) {
            expect_rev++;
            expect_sub = 1;
        } else {
            return KV_ECORRUPT;
        }
    }
    bool complete = kv->log_end == 0 ? expect_rev > kv->revision
                                     : (expect_rev == kv->revision && expect_sub > 0);
    if (!complete) {
        return KV_ECORRUPT;
    }
    for (struct kv_avl_node *n = kv_avl_first(&kv->keys); n != NULL; n = kv_avl_next(n)) {
        struct kv_key *k = KEY_OF(n);
        const struct kv_version *v = latest_live(k);
        if (v != NULL) {
            kv->n_live++;
            if (v->lease != 0) {
                lease_attach(kv, k, v->lease); /* may abort on OOM, like apply */
            }
        }
    }
    hash_rehash_all(kv); /* keys were linked without hashes; one sized build */
    return 0;
}

int kv_snapshot_decode(const uint8_t *buf, size_t n, struct kv **out)
{
    *out = NULL;
    if (buf == NULL || n < SNAP_HEADER_BYTES + SNAP_TRAILER_BYTES) {
        return KV_ECORRUPT;
    }
    uint32_t stored = (uint32_t)buf[n - 4] | (uint32_t)buf[n - 3] << 8 |
                      (uint32_t)buf[n - 2] << 16 | (uint32_t)buf[n - 1] << 24;
    if (crc32c(0, buf, n - 4) != stored || memcmp(buf, SNAP_MAGIC, 4) != 0) {
        return KV_ECORRUPT;
    }
    struct le_reader r = {buf, n - 4, 4};
    uint32_t format;
    struct kv *kv;
    int64_t revision, compacted;
    if (!snap_u32(&r, &format)) {
        return KV_ECORRUPT;
    }
    if (format != SNAP_FORMAT_VERSION) {
        return KV_EFORMAT;
    }
    if (!snap_i64(&r, &revision) || !snap_i64(&r, &compacted) || revision < 1 || compacted < 0 ||
        compacted > revision) {
        return KV_ECORRUPT;
    }
    int rv = kv_new(&kv);
    if (rv != 0) {
        return rv;
    }
    kv->revision = revision;
    kv->compacted = compacted;
    uint64_t n_keys = 0, n_keys_stored;
    for (;;) {
        uint32_t key_len;
        if (!snap_u32(&r, &key_len)) {
            rv = KV_ECORRUPT;
            goto err_after_kv;
        }
        if (key_len == 0) {
            break;
        }
        rv = snap_read_key(kv, &r, key_len);
        if (rv != 0) {
            goto err_after_kv;
        }
        n_keys++;
    }
    if (!le_read(&r, 8, &n_keys_stored) || n_keys_stored != n_keys || r.off != r.n) {
        rv = KV_ECORRUPT;
        goto err_after_kv;
    }
    rv = snap_finish(kv);
    if (rv != 0) {
        goto err_after_kv;
    }
    *out = kv;
    return 0;

err_after_kv:
    kv_free(kv);
    CC_ASSERT(rv != 0);
    return rv;
}

/* ==== lifecycle and queries ============================================== */

int kv_new(struct kv **out)
{
    struct kv *kv = calloc(1, sizeof *kv);
    if (kv == NULL) {
        *out = NULL;
        return KV_ENOMEM;
    }
    kv->revision = 1; /* etcd: an empty store is at revision 1 */
    /* The one draw of randomness in this file: the hash index's seed, which nothing
     * observable depends on (see the essay; kv_set_hash_seed pins it). Without it
     * the store still works, with a seed from ASLR'd addresses. */
    struct env *env = env_posix();
    if (env->random_bytes(env, kv->hash_seed, sizeof kv->hash_seed) != 0) {
        kv->hash_seed[0] = (uint64_t)(uintptr_t)kv ^ UINT64_C(0x9e3779b97f4a7c15);
        kv->hash_seed[1] = (uint64_t)(uintptr_t)&kv_new;
    }
    *out = kv;
    return 0;
}

static void free_key_node(struct kv_avl_node *n, void *arg)
{
    free_key(KEY_OF(n));
}

static void free_lease_node(struct kv_avl_node *n, void *arg)
{
    free(LSET_OF(n));
}

void kv_free(struct kv *kv)
{
    if (kv == NULL) {
        return;
    }
    kv_avl_clear(&kv->keys, free_key_node, NULL);
    kv_avl_clear(&kv->leases, free_lease_node, NULL);
    free(kv->slots);
    free(kv->log);
    free(kv);
}

int64_t kv_revision(const struct kv *kv)
{
    return kv->revision;
}

int64_t kv_compacted_revision(const struct kv *kv)
{
    return kv->compacted;
}

void kv_stats(const struct kv *kv, struct kv_stats *out)
{
    memset(out, 0, sizeof *out);
    out->n_keys_live = kv->n_live;
    out->n_keys_indexed = kv->keys.n_nodes;
    out->n_versions = kv->n_versions;
    out->n_leases = kv->leases.n_nodes;
    out->n_trim_pending = trim_pending(kv);
    out->n_keys_unhashed = kv->n_unhashed;
    out->hash_slots = kv->hash_cap;
}

/* kv_check's failure exit: formats the finding into msg. */
static int check_fail(char *msg, size_t msg_cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int check_fail(char *msg, size_t msg_cap, const char *fmt, ...)
{
    if (msg_cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_cap, fmt, ap);
        va_end(ap);
    }
    return KV_ECORRUPT;
}

/* The hash table on its own: size, occupancy, and Robin Hood probe order (a key sits
 * within KV_HASH_PROBE_MAX of its home, at most one slot further from it than the key
 * before it, and at its home right after an empty slot), every key being in the tree. */
static int check_hash_table(const struct kv *kv, char *msg, size_t msg_cap)
{
    if (kv->hash_cap == 0) {
        return kv->n_hashed == 0 && kv->slots == NULL
                   ? 0
                   : check_fail(msg, msg_cap, "no table but %zu hashed keys", kv->n_hashed);
    }
    if ((kv->hash_cap & (kv->hash_cap - 1)) != 0 || kv->hash_cap < KV_HASH_SLOTS_MIN ||
        kv->hash_cap > KV_HASH_SLOTS_MAX) {
        return check_fail(msg, msg_cap, "table size %zu", kv->hash_cap);
    }
    size_t used = 0;
    for (size_t i = 0; i < kv->hash_cap; i++) {
        const struct kv_key *k = kv->slots[i];
        if (k == NULL) {
            continue;
        }
        used++;
        size_t prev_i = (i + kv->hash_cap - 1) & (kv->hash_cap - 1);
        const struct kv_key *prev = kv->slots[prev_i];
        size_t d = hash_dist(kv, k, i);
        size_t max_d = prev == NULL ? 0 : hash_dist(kv, prev, prev_i) + 1;
        if (d >= KV_HASH_PROBE_MAX || d > max_d) {
            return check_fail(msg, msg_cap, "slot %zu: distance %zu from home (at most %zu)", i, d,
                              max_d < KV_HASH_PROBE_MAX ? max_d : KV_HASH_PROBE_MAX - 1);
        }
        if (tree_find(kv, k->key, k->key_len, NULL, NULL) != k) {
            return check_fail(msg, msg_cap, "slot %zu: key not in the tree", i);
        }
    }
    if (used != kv->n_hashed) {
        return check_fail(msg, msg_cap, "%zu slots used, n_hashed %zu", used, kv->n_hashed);
    }
    return 0;
}

int kv_check(const struct kv *kv, char *msg, size_t msg_cap)
{
    if (msg_cap > 0) {
        msg[0] = 0;
    }
    if (kv->revision < 1 || kv->compacted < 0 || kv->compacted > kv->revision) {
        return check_fail(msg, msg_cap, "revision %lld, compacted %lld", (long long)kv->revision,
                          (long long)kv->compacted);
    }
    int rv = check_hash_table(kv, msg, msg_cap);
    if (rv != 0) {
        return rv;
    }
    uint64_t n_keys = 0, n_live = 0, n_versions = 0, n_found = 0, n_leased = 0;
    const struct kv_key *prev = NULL;
    for (struct kv_avl_node *n = kv_avl_first(&kv->keys); n != NULL; n = kv_avl_next(n)) {
        const struct kv_key *k = KEY_OF(n);
        if (++n_keys > kv->keys.n_nodes) {
            return check_fail(msg, msg_cap, "tree holds more than its %zu nodes", kv->keys.n_nodes);
        }
        if (prev != NULL && key_cmp(prev, k->key, k->key_len) >= 0) {
            return check_fail(msg, msg_cap, "key %llu out of order", (unsigned long long)n_keys);
        }
        prev = k;
        if (k->n_versions == 0 || k->n_versions > k->cap_versions ||
            (k->cap_versions == 1) != (k->versions == &k->one)) {
            return check_fail(msg, msg_cap, "key %llu: %u versions, capacity %u",
                              (unsigned long long)n_keys, k->n_versions, k->cap_versions);
        }
        for (uint32_t i = 1; i < k->n_versions; i++) {
            if (k->versions[i - 1].mod_rev >= k->versions[i].mod_rev) {
                return check_fail(msg, msg_cap, "key %llu: versions out of order",
                                  (unsigned long long)n_keys);
            }
        }
        n_versions += k->n_versions;
        const struct kv_version *live = latest_live(k);
        n_live += live != NULL;
        if (k->lease != (live != NULL ? live->lease : 0)) {
            return check_fail(msg, msg_cap, "key %llu: attached to lease %lld, not %lld",
                              (unsigned long long)n_keys, (long long)k->lease,
                              (long long)(live != NULL ? live->lease : 0));
        }
        n_leased += k->lease != 0;
        if (k->hash != key_hash(kv, k->key, k->key_len)) {
            return check_fail(msg, msg_cap, "key %llu: stored hash is stale",
                              (unsigned long long)n_keys);
        }
        const struct kv_key *via = hash_find(kv, k->hash, k->key, k->key_len);
        if (via != NULL && via != k) {
            return check_fail(msg, msg_cap, "key %llu: hash finds another record",
                              (unsigned long long)n_keys);
        }
        n_found += via != NULL;
    }
    if (n_keys != kv->keys.n_nodes || n_live != kv->n_live || n_versions != kv->n_versions) {
        return check_fail(msg, msg_cap,
                          "counts: %llu keys (%zu), %llu live (%llu), %llu versions (%llu)",
                          (unsigned long long)n_keys, kv->keys.n_nodes, (unsigned long long)n_live,
                          (unsigned long long)kv->n_live, (unsigned long long)n_versions,
                          (unsigned long long)kv->n_versions);
    }
    if (n_found != kv->n_hashed || n_keys - n_found != kv->n_unhashed) {
        return check_fail(
            msg, msg_cap, "hash index: %llu of %llu keys found, n_hashed %zu, n_unhashed %zu",
            (unsigned long long)n_found, (unsigned long long)n_keys, kv->n_hashed, kv->n_unhashed);
    }
    uint64_t n_in_sets = 0;
    for (struct kv_avl_node *n = kv_avl_first(&kv->leases); n != NULL; n = kv_avl_next(n)) {
        n_in_sets += LSET_OF(n)->n_keys;
    }
    if (n_in_sets != n_leased) {
        return check_fail(msg, msg_cap, "lease sets hold %llu keys, %llu are attached",
                          (unsigned long long)n_in_sets, (unsigned long long)n_leased);
    }
    return 0;
}

bool kv_prefix_end(const uint8_t *prefix, uint32_t prefix_len, uint8_t *out, uint32_t *out_len)
{
    for (uint32_t i = prefix_len; i > 0; i--) {
        if (prefix[i - 1] != 0xff) {
            memcpy(out, prefix, i);
            out[i - 1]++;
            *out_len = i;
            return true;
        }
    }
    *out_len = 0;
    return false;
}

const char *kv_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case KV_EINVAL:
        return "invalid argument";
    case KV_ENOMEM:
        return "out of memory";
    case KV_EMALFORMED:
        return "malformed command or result bytes";
    case KV_ECMDTOOBIG:
        return "command exceeds KV_CMD_BYTES_MAX";
    case KV_EKEYEMPTY:
        return "key is empty";
    case KV_EKEYTOOBIG:
        return "key exceeds KV_KEY_BYTES_MAX";
    case KV_EVALUETOOBIG:
        return "value exceeds KV_VALUE_BYTES_MAX";
    case KV_ETXNOPS:
        return "txn branch exceeds KV_TXN_OPS_MAX ops";
    case KV_ETXNCMPS:
        return "txn exceeds KV_TXN_CMP_MAX compares";
    case KV_ETXNDUPKEY:
        return "txn branch writes the same key twice";
    case KV_EKEYNOTFOUND:
        return "key not found (ignore_value / ignore_lease)";
    case KV_ECOMPACTED:
        return "revision has been compacted";
    case KV_EFUTUREREV:
        return "revision is in the future";
    case KV_ECORRUPT:
        return "snapshot is corrupt";
    case KV_EFORMAT:
        return "unsupported format version";
    default:
        return "unknown kv error";
    }
}
