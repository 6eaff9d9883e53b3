/* kv.h -- the MVCC key-value state machine (think etcd's mvcc store).
 *
 * The store is a pure, deterministic state machine. A host feeds it the committed Raft
 * log in order (kv_apply), serves reads outside the log after ReadIndex (kv_range),
 * snapshots it (kv_snapshot_encode/decode) and compares replicas (kv_digest). It never
 * reads a clock, draws randomness or does IO, so the same command sequence gives
 * byte-identical results, snapshots and digests on every replica.
 *
 * Data model (etcd v3):
 *   - keys and values are byte strings, compared with memcmp, shorter first on a tie;
 *     keys are non-empty.
 *   - one global revision, 1 for an empty store. Every command that changes something
 *     takes the next revision; all changes of one transaction share it and are ordered
 *     inside it by sub-revision. A command that changes nothing keeps the revision.
 *   - every key carries create_revision, mod_revision, version (puts since it was
 *     created; a delete resets it) and a lease id (0 = none).
 *   - history: reads may ask for any revision >= the compacted revision. COMPACT(r)
 *     keeps, per key, the newest version at or below r (unless it is a delete) and
 *     everything after r.
 *
 * Errors are negative KV_E* codes (range -2000..-2099: the 2000s belong to sm/), 0 is success;
 * kv_strerror() names them. Ranges of keys follow etcd: range_end empty = the single key; range_end
 * "\0" = every key >= key; otherwise [key, range_end). With `prefix` set, range_end must
 * be empty and the range is every key starting with key (an empty key then means every
 * key).
 *
 * Ownership: request structs are borrowed for the duration of a call. Results and
 * responses own their memory and are released with kv_result_free() /
 * kv_range_resp_free(). Views handed to callbacks (kv_history_since) point into the
 * store and are valid only during the callback. A store is not thread-safe: one writer,
 * and const calls only while no write runs.
 */
#ifndef CONCLAVE_SM_KV_H
#define CONCLAVE_SM_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits (each has its own error) ------------------------------------ */

/* One command is one Raft entry. KV_CMD_ENVELOPE_BYTES are left for the host's own
 * framing around it (state-machine tag, client and request ids); kvcmd.c asserts that
 * the sum fits RAFT_ENTRY_BYTES_MAX. */
#define KV_CMD_ENVELOPE_BYTES 1024u
#define KV_CMD_BYTES_MAX      ((1u << 20) - KV_CMD_ENVELOPE_BYTES) /* KV_ECMDTOOBIG */
/* Bounds index memory per key and the cost of each compare. */
#define KV_KEY_BYTES_MAX 4096u /* KV_EKEYTOOBIG */
/* Fixed part of an encoded PUT command (version, type, flags, lease, two lengths),
 * rounded up; kvcmd.c asserts the real header fits. */
#define KV_PUT_OVERHEAD_BYTES 64u
/* The largest value whose PUT (with the largest key) still fits one command. */
#define KV_VALUE_BYTES_MAX (KV_CMD_BYTES_MAX - KV_KEY_BYTES_MAX - KV_PUT_OVERHEAD_BYTES)
/* Ops per transaction branch (etcd --max-txn-ops default): bounds one apply. */
#define KV_TXN_OPS_MAX 128u /* KV_ETXNOPS */
/* Compares per transaction. */
#define KV_TXN_CMP_MAX 64u /* KV_ETXNCMPS */
/* Keys returned by one range. Larger (or zero = unlimited) limits are clamped to this
 * and `more` is set: bounds the memory one read can pin. Not an error. */
#define KV_RANGE_LIMIT_MAX 10000u
/* Key and value bytes returned by all the ranges of one result; a range that reaches
 * it stops early with `more` set (at least one key is always returned). Not an error:
 * it bounds what one request can make the server copy. */
#define KV_RESULT_BYTES_MAX (64u << 20)
/* Log entries of deferred compaction that each kv_apply trims (bounded work per
 * call, after Redis dictRehash). Trimming is invisible to reads. */
#define KV_COMPACT_STEP_MAX 4096u

_Static_assert(KV_VALUE_BYTES_MAX + KV_KEY_BYTES_MAX + KV_PUT_OVERHEAD_BYTES <= KV_CMD_BYTES_MAX,
               "the largest PUT must fit one command");
_Static_assert(KV_RESULT_BYTES_MAX >= KV_KEY_BYTES_MAX + KV_VALUE_BYTES_MAX,
               "a range result must be able to hold the largest key-value");
_Static_assert(KV_TXN_OPS_MAX <= UINT16_MAX && KV_TXN_CMP_MAX <= UINT16_MAX,
               "counts are encoded as u16");

/* ---- errors ------------------------------------------------------------- */

enum {
    KV_EINVAL = -2001,       /* invalid argument (negative limit, bad enum, misuse) */
    KV_ENOMEM = -2002,       /* allocation failed (read paths and codecs only) */
    KV_EMALFORMED = -2003,   /* command or result bytes do not decode */
    KV_ECMDTOOBIG = -2004,   /* command longer than KV_CMD_BYTES_MAX */
    KV_EKEYEMPTY = -2005,    /* key is empty where one is required */
    KV_EKEYTOOBIG = -2006,   /* key or range_end longer than KV_KEY_BYTES_MAX */
    KV_EVALUETOOBIG = -2007, /* value longer than KV_VALUE_BYTES_MAX */
    KV_ETXNOPS = -2008,      /* a txn branch has more than KV_TXN_OPS_MAX ops */
    KV_ETXNCMPS = -2009,     /* a txn has more than KV_TXN_CMP_MAX compares */
    KV_ETXNDUPKEY = -2010,   /* a txn branch writes one key twice (etcd rule) */
    KV_EKEYNOTFOUND = -2011, /* ignore_value / ignore_lease on a key that does not exist */
    KV_ECOMPACTED = -2012,   /* revision is below the compacted revision */
    KV_EFUTUREREV = -2013,   /* revision is above the current revision */
    KV_ECORRUPT = -2014,     /* snapshot fails its checksum or its consistency checks */
    KV_EFORMAT = -2015,      /* snapshot or command format version not supported */
};
const char *kv_strerror(int rv);

/* ---- requests (borrowed by every call) ---------------------------------- */

struct kv_put_req {
    const uint8_t *key;
    uint32_t key_len; /* 1..KV_KEY_BYTES_MAX */
    const uint8_t *value;
    uint32_t value_len; /* 0..KV_VALUE_BYTES_MAX */
    int64_t lease;      /* >= 0; 0 = none */
    bool prev_kv;       /* return the previous key-value */
    bool ignore_value;  /* keep the current value (key must exist; value must be empty) */
    bool ignore_lease;  /* keep the current lease (key must exist; lease must be 0) */
};

struct kv_range_req {
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *range_end;
    uint32_t range_end_len;
    bool prefix;      /* every key starting with key; range_end must be empty */
    int64_t limit;    /* >= 0; 0 = no limit (then KV_RANGE_LIMIT_MAX applies) */
    int64_t revision; /* <= 0: the current revision */
    bool keys_only;   /* omit values */
    bool count_only;  /* return only the count */
    bool skip_count;  /* reads only: stop one key past what is returned, so the cost is
                         O(log n + limit); `count` is then a lower bound, `more` exact */
};

struct kv_delete_req {
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *range_end;
    uint32_t range_end_len;
    bool prefix;
    bool prev_kv; /* return the deleted key-values */
};

enum kv_cmp_target {
    KV_CMP_VERSION = 1,
    KV_CMP_CREATE = 2, /* create_revision */
    KV_CMP_MOD = 3,    /* mod_revision */
    KV_CMP_VALUE = 4,
    KV_CMP_LEASE = 5,
};
enum kv_cmp_op {
    KV_CMP_EQUAL = 1,
    KV_CMP_NOT_EQUAL = 2,
    KV_CMP_LESS = 3,
    KV_CMP_GREATER = 4,
};

/* "target(key) op operand". A missing key has version, create, mod and lease 0 and no
 * value: every VALUE compare on it is false (etcd). */
struct kv_compare {
    const uint8_t *key;
    const uint8_t *value; /* VALUE */
    int64_t number;       /* VERSION, CREATE, MOD, LEASE */
    uint32_t key_len;
    uint32_t value_len;
    uint8_t target; /* enum kv_cmp_target */
    uint8_t op;     /* enum kv_cmp_op */
};

enum kv_op_type { KV_OP_PUT = 1, KV_OP_DELETE = 2, KV_OP_RANGE = 3 };

struct kv_op {
    uint8_t type; /* enum kv_op_type */
    union {
        struct kv_put_req put;
        struct kv_delete_req del;
        struct kv_range_req range;
    };
};

/* If every compare holds, run success[] in order, else failure[]. Later ops see the
 * writes of earlier ones. A branch may not write one key twice (KV_ETXNDUPKEY). */
struct kv_txn_req {
    const struct kv_compare *compares;
    uint32_t n_compares;
    const struct kv_op *success;
    uint32_t n_success;
    const struct kv_op *failure;
    uint32_t n_failure;
};

/* ---- responses ---------------------------------------------------------- */

/* A key-value at one revision (etcd mvccpb.KeyValue). In a DELETE event only key and
 * mod_revision (the deleting revision) are set. */
struct kv_kv {
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};

struct kv_range_resp {
    struct kv_kv *kvs; /* ordered by key */
    uint32_t n_kvs;
    int64_t count; /* keys in the range at that revision, regardless of limit */
    bool more;     /* some keys in the range were not returned */
    void *mem;     /* kv_range() only: the one block holding everything above */
};

struct kv_put_resp {
    bool has_prev;
    struct kv_kv prev_kv; /* when has_prev (asked for and the key existed) */
};

struct kv_delete_resp {
    int64_t n_deleted;
    struct kv_kv *prev_kvs; /* when asked for; n_prev_kvs == n_deleted */
    uint32_t n_prev_kvs;
};

struct kv_response {
    uint8_t type; /* enum kv_op_type */
    union {
        struct kv_put_resp put;
        struct kv_delete_resp del;
        struct kv_range_resp range;
    };
};

enum kv_event_type { KV_EVENT_PUT = 1, KV_EVENT_DELETE = 2 };

/* One change, in (revision, sub-revision) order: what watchers consume. */
struct kv_event {
    uint8_t type; /* enum kv_event_type */
    struct kv_kv kv;
    bool has_prev;
    struct kv_kv prev_kv; /* apply results: when the op asked for prev_kv; history: always */
    int64_t prev_lease;   /* apply results: the lease the key carried just before (0: none
                             or a new key), asked for or not; history: 0 */
};

/* Bump allocator owning a result's memory. Internal; zero-initialised is empty. */
struct kv_arena {
    struct kv_arena_block *head;
};

enum kv_cmd_type {
    KV_CMD_PUT = 1,
    KV_CMD_DELETE_RANGE = 2,
    KV_CMD_RANGE = 3,
    KV_CMD_TXN = 4,
    KV_CMD_COMPACT = 5,
};

struct kv_result {
    int64_t revision;              /* store revision after the command */
    struct kv_response *responses; /* PUT/DELETE/RANGE: 1; TXN: one per op; COMPACT: 0 */
    struct kv_event *events;       /* every change the command made, in order */
    struct kv_arena arena;         /* owns everything reachable from the pointers above */
    int err;                       /* 0 or KV_E*: when nonzero the store did not change */
    uint32_t n_responses;
    uint32_t n_events;
    uint8_t type;   /* enum kv_cmd_type; 0 if the bytes were malformed */
    bool succeeded; /* TXN: the compares held (success branch ran); else true */
};

/* Returns n bytes (8-aligned) owned by a, or NULL when allocation fails. For the
 * codec and tests; the store fills results through it. */
void *kv_arena_alloc(struct kv_arena *a, size_t n);

/* Releases what res owns and zeroes it. Safe on a zeroed result and twice. */
void kv_result_free(struct kv_result *res);
/* Releases a response filled by kv_range() and zeroes it. */
void kv_range_resp_free(struct kv_range_resp *resp);

/* ---- the store ---------------------------------------------------------- */

struct kv;

/* An empty store at revision 1. Returns 0 or KV_ENOMEM. Free with kv_free(). */
int kv_new(struct kv **out);
void kv_free(struct kv *kv);

/* Applies one committed command (bytes from kvcmd_encode_*). Always fills res (free it
 * with kv_result_free) and returns res->err. A command that fails to decode or
 * validate yields an error result and leaves the store unchanged; that is as
 * deterministic as success, so every replica agrees. Either way the entry counts as
 * applied. Allocation failure while a command is half applied aborts the process: a
 * replica that skipped part of a committed entry would silently diverge, whereas a
 * restart replays the log. cmd is borrowed. */
int kv_apply(struct kv *kv, const uint8_t *cmd, size_t n, struct kv_result *res);

/* Serves a read outside the log (serializable, or linearizable after ReadIndex). On
 * success resp owns its memory (kv_range_resp_free); on error it is zeroed. Work is
 * O(log n + keys in range): `count` walks the whole range, as in etcd (O(log n + limit)
 * with skip_count). */
int kv_range(const struct kv *kv, const struct kv_range_req *req, struct kv_range_resp *resp);

/* Deletes every key attached to lease at one new revision (for LEASE_REVOKE), in key
 * order, filling res like a DELETE_RANGE command. No keys: no new revision. */
int kv_delete_by_lease(struct kv *kv, int64_t lease, bool prev_kv, struct kv_result *res);
/* Keys currently attached to lease. O(log n). */
uint64_t kv_lease_key_count(const struct kv *kv, int64_t lease);

/* Replays stored changes to keys in [key, range_end) (kv.h range rules; range_end may
 * be NULL/0 for one key) with revision >= from_revision, in (revision, sub-revision)
 * order, each with its previous key-value when one exists. Stops at a revision boundary
 * once `budget` changes were examined (a revision is never split, so one call may
 * examine up to budget + the size of one revision) and sets *next_revision to the
 * revision to resume from (revision + 1 when caught up). from_revision must be >
 * the compacted revision (else KV_ECOMPACTED) and >= 1. A nonzero return from event_cb
 * stops the replay and is returned; *next_revision then names the revision of the
 * event that stopped it. Event views are valid only during the callback. */
typedef int (*kv_event_cb)(void *arg, const struct kv_event *ev);
int kv_history_since(const struct kv *kv, const uint8_t *key, uint32_t key_len,
                     const uint8_t *range_end, uint32_t range_end_len, int64_t from_revision,
                     uint32_t budget, int64_t *next_revision, kv_event_cb event_cb, void *arg);

int64_t kv_revision(const struct kv *kv);
int64_t kv_compacted_revision(const struct kv *kv); /* 0 = never compacted */

/* 64-bit FNV-1a over everything a read can observe: the revision, the compacted
 * revision and every readable version of every key. Equal stores, equal digests;
 * physical details (deferred trimming, allocation) do not count. O(size of store). */
uint64_t kv_digest(const struct kv *kv);

/* Snapshot image: "CKVS", format version, revision, compacted revision, then each key
 * in order with its readable versions, then CRC-32C of all preceding bytes. Canonical:
 * equal stores give equal bytes. *buf is malloc'd; the caller frees it. */
int kv_snapshot_encode(const struct kv *kv, uint8_t **buf, size_t *n);
/* Builds a new store from an image. KV_ECORRUPT for any truncation, checksum mismatch
 * or inconsistency, KV_EFORMAT for an unknown format version; never crashes on bad
 * input. buf is borrowed; *out is freed with kv_free(). */
int kv_snapshot_decode(const uint8_t *buf, size_t n, struct kv **out);

struct kv_stats {
    uint64_t n_keys_live;     /* keys that exist at the current revision */
    uint64_t n_keys_indexed;  /* index nodes, including deleted keys kept for history */
    uint64_t n_versions;      /* stored versions, tombstones included */
    uint64_t n_trim_pending;  /* changes at or below the compacted revision not yet trimmed */
    uint64_t n_leases;        /* leases with at least one key */
    uint64_t n_keys_unhashed; /* index nodes left out of the hash index (see below) */
    uint64_t hash_slots;      /* hash index size: 8 bytes each */
};
void kv_stats(const struct kv *kv, struct kv_stats *out);

/* ---- hash index (local to one process; never replicated) ------------------ */

/* Exact-key lookups (put, single-key range and delete, compares) go through a hash
 * index beside the ordered tree. It is seeded from the process's randomness (env_posix)
 * at kv_new and kv_snapshot_decode, so its layout differs between replicas and runs;
 * results, digests and snapshots never depend on it. */

/* A key whose probe sequence would reach this many slots stays out of the index (it
 * is still in the tree). Bounds the cost of a lookup when chosen keys collide; with
 * random keys the longest probe at load 1/2 is about 10 at a million keys (Robin Hood
 * order), so honest keys essentially never hit it. Not an error. */
#define KV_HASH_PROBE_MAX 32u
/* Table size limits (slots; 8 bytes each). Past the maximum the table stops growing and
 * new keys that do not fit stay out, as above. Not an error. */
#define KV_HASH_SLOTS_MIN 64u
#define KV_HASH_SLOTS_MAX (UINT64_C(1) << 31)
_Static_assert(KV_HASH_PROBE_MAX <= KV_HASH_SLOTS_MIN, "a probe never wraps a small table");

/* Re-keys the index with seed and rebuilds it (O(n)). Hosts whose randomness comes from
 * their own env (the simulator) call it after kv_new / kv_snapshot_decode so that a
 * replay repeats even the memory layout. */
void kv_set_hash_seed(struct kv *kv, uint64_t seed);

/* TEST ONLY: replaces the key hash (NULL restores the seeded one), e.g. with a constant
 * to force every key into one probe sequence. With rebuild, every stored hash is
 * recomputed and the index rebuilt; without, the index is left stale on purpose so a
 * test can prove kv_check notices. */
typedef uint32_t (*kv_test_hash_fn)(const uint8_t *key, uint32_t key_len);
void kv_test_set_hash(struct kv *kv, kv_test_hash_fn fn, bool rebuild);

/* Verifies the store's internal invariants (kv.c's essay): key order and counts,
 * version order, lease attachment and the hash index (every key found through it or
 * counted as unhashed, nothing else in it, probe order). Returns 0 or KV_ECORRUPT with
 * a description in msg (always NUL-terminated when msg_cap > 0). O(n log n): for tests
 * and debugging, not for the apply path. */
int kv_check(const struct kv *kv, char *msg, size_t msg_cap);

/* Trims up to budget entries of deferred compaction now (a host may call it when
 * idle). Invisible to reads, digests and snapshots. Returns entries still pending. */
uint64_t kv_compact_step(struct kv *kv, uint32_t budget);

/* The smallest key greater than every key with the given prefix (etcd
 * GetPrefixRangeEnd): the prefix with its last non-0xff byte incremented and what
 * follows dropped. Writes up to prefix_len bytes to out and sets *out_len; when every
 * byte is 0xff there is no such key and it returns false (the range is unbounded). */
bool kv_prefix_end(const uint8_t *prefix, uint32_t prefix_len, uint8_t *out, uint32_t *out_len);

#endif /* CONCLAVE_SM_KV_H */
