/* lease.h -- the replicated lease table (think etcd's lessor, minus its clock).
 *
 * A lease is a promise with a TTL: keys and lock holds/waits attached to it live as long
 * as it does. This module is the part every replica agrees on: which leases exist, their
 * TTLs, the Raft index that granted them, and what is attached to each. It is a pure,
 * deterministic state machine fed committed commands in log order; it never reads a
 * clock. Time lives elsewhere:
 *
 *   - The leader alone tracks deadlines, in memory (src/node/lease_timer.h). When a
 *     deadline passes it proposes EXPIRE, and expiry becomes a fact only when that entry
 *     commits and every replica applies it.
 *   - KEEPALIVE is therefore NOT a log entry. A renewal only moves a deadline in the
 *     leader's memory; replicating it would put one Raft write (and an fsync on a quorum)
 *     behind every renewal of every lease, every ttl/3. etcd made the same choice:
 *     "only the leader records TTL for performance reasons" (etcd#9395), renewals go to
 *     the leader (lessor.Renew), and a new leader restarts every countdown from the full
 *     TTL plus an election timeout (etcd#4778), which is what lease_timer does. The cost
 *     of the choice is that a leader change can only lengthen a lease, never shorten it.
 *
 * Commands (one Raft entry each; little-endian, fixed width; strict decoding as in
 * sm/kvcmd.c: a wrong tag, unknown type, a value out of range or trailing bytes are
 * LEASE_EMALFORMED or the broken limit's own error, so one meaning has one encoding):
 *
 *   command = u8 LEASE_CMD_TAG (0x11), u8 LEASE_FORMAT_VERSION, u8 type, body
 *   GRANT   = i64 id (0 = allocate the next id), i64 ttl_ms
 *   REVOKE  = i64 id                               (a client asked)
 *   EXPIRE  = i64 id, u64 granted_index            (the leader's timer fired)
 *
 * EXPIRE names the index of the GRANT it expires, so a stale EXPIRE (proposed by an old
 * leader, committed after the lease was revoked and a lease with the same explicit id
 * granted again) is LEASE_ESTALE and changes nothing.
 *
 * Ids: GRANT with id 0 takes next_id, which is always above every id ever granted (an
 * explicit id >= next_id moves it past), so allocated ids are never reused: a client
 * still renewing a dead lease cannot renew somebody else's. Ids are 1..INT64_MAX.
 *
 * Attached items: a lease holds a set of items, each (kind, bytes): KEY (a kv key whose
 * current version carries this lease) or LOCK (a lock name on which this lease has at
 * least one hold or wait). The composite state machine attaches and detaches keys as kv
 * puts and deletes apply; sm/lock.c attaches and detaches lock names itself. REVOKE and
 * EXPIRE remove the lease and hand back every item, keys first then locks, each in byte
 * order, so the composite machine deletes the keys in the same revision and passes the
 * lock names to lock_lease_died().
 *
 * Errors are negative LEASE_E* codes in -2200..-2299 (the 2000s belong to sm/: kv has
 * -2000s, members -2100s, lease -2200s, lock -2300s, idseg -2400s); -2280..-2299 are
 * reserved for node/lease_timer.h. lease_strerror() names them.
 *
 * Ownership: command buffers are caller-owned (encoders write into them, the decoder
 * borrows them). Results own their memory (lease_result_free). Views returned by the
 * queries point into the table and are valid until the next mutating call. A table is
 * not thread-safe: one writer, const calls only while no write runs. Allocation failure
 * while applying a command aborts (a replica that half-applied an entry would diverge
 * silently; one that crashed replays its log), as in sm/kv.c.
 */
#ifndef CONCLAVE_SM_LEASE_H
#define CONCLAVE_SM_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm/kv.h"

/* ---- format ------------------------------------------------------------- */

#define LEASE_CMD_TAG        0x11u /* byte 0: the composite machine dispatches on it */
#define LEASE_FORMAT_VERSION 1u    /* byte 1; others are LEASE_EFORMAT */
#define LEASE_CMD_BYTES_MAX  32u   /* the largest command (GRANT/EXPIRE: 19 bytes) */

enum lease_cmd_type {
    LEASE_CMD_GRANT = 1,
    LEASE_CMD_REVOKE = 2,
    LEASE_CMD_EXPIRE = 3,
};

/* ---- limits (each has its own error) ------------------------------------ */

/* A renewal costs the client a round trip and the leader a ReadIndex round; below half
 * a second a loaded cluster cannot renew in time and expiry churn would fill the log.
 * (etcd derives its minimum from the election timeout; ours is a floor for both.) */
#define LEASE_TTL_MS_MIN 500 /* LEASE_ETTLSHORT */
/* 30 days. Longer promises are better made without a lease; the bound also keeps every
 * deadline sum (now + ttl + extend) far from overflow. */
#define LEASE_TTL_MS_MAX (30LL * 24 * 3600 * 1000) /* LEASE_ETTLLONG */
/* Live leases. Bounds the table, its snapshot, and the walk a new leader makes over
 * every lease (lease_timer_on_become_leader). */
#define LEASE_COUNT_MAX 100000u /* LEASE_EFULL */
/* Items attached to one lease. Bounds what one REVOKE/EXPIRE deletes in one revision
 * and hands to the lock machine in one apply. */
#define LEASE_ITEMS_MAX 4096u /* LEASE_EITEMSFULL */
/* An item is a kv key or a lock name; both fit a key. */
#define LEASE_ITEM_BYTES_MAX KV_KEY_BYTES_MAX /* LEASE_EITEMTOOBIG */

_Static_assert(LEASE_TTL_MS_MIN > 0 && LEASE_TTL_MS_MIN < LEASE_TTL_MS_MAX, "TTL range");
_Static_assert(LEASE_TTL_MS_MAX < (INT64_MAX >> 2), "deadline sums cannot overflow");
_Static_assert(LEASE_ITEMS_MAX <= UINT16_MAX, "item counts fit in results comfortably");

/* ---- errors ------------------------------------------------------------- */

enum {
    LEASE_EINVAL = -2201,      /* invalid argument (bad id, bad kind, misuse) */
    LEASE_ENOMEM = -2202,      /* allocation failed (codecs and snapshots only) */
    LEASE_EMALFORMED = -2203,  /* command bytes do not decode */
    LEASE_EFORMAT = -2204,     /* command or snapshot format version not supported */
    LEASE_ENOTFOUND = -2205,   /* no lease with that id */
    LEASE_EEXISTS = -2206,     /* GRANT with an explicit id that is in use */
    LEASE_ETTLSHORT = -2207,   /* ttl_ms < LEASE_TTL_MS_MIN */
    LEASE_ETTLLONG = -2208,    /* ttl_ms > LEASE_TTL_MS_MAX */
    LEASE_EFULL = -2209,       /* LEASE_COUNT_MAX leases exist */
    LEASE_EITEMSFULL = -2210,  /* the lease has LEASE_ITEMS_MAX items attached */
    LEASE_EITEMTOOBIG = -2211, /* item longer than LEASE_ITEM_BYTES_MAX (or empty) */
    LEASE_ESTALE = -2212,      /* EXPIRE for an earlier grant of this id */
    LEASE_EIDSPACE = -2213,    /* next_id passed INT64_MAX: no id left to allocate */
    LEASE_ECORRUPT = -2214,    /* snapshot fails its checksum or consistency checks */
};
const char *lease_strerror(int rv);

/* ---- commands ----------------------------------------------------------- */

struct lease_cmd {
    uint8_t type;           /* enum lease_cmd_type */
    int64_t id;             /* GRANT: >= 0 (0 = allocate); REVOKE/EXPIRE: >= 1 */
    int64_t ttl_ms;         /* GRANT */
    uint64_t granted_index; /* EXPIRE: >= 1 */
};

/* Encoders validate first and return the broken rule's error, so what they produce
 * always decodes. buf must hold cap >= LEASE_CMD_BYTES_MAX bytes (else LEASE_EINVAL). */
int lease_encode_grant(int64_t id, int64_t ttl_ms, uint8_t *buf, size_t cap, size_t *n);
int lease_encode_revoke(int64_t id, uint8_t *buf, size_t cap, size_t *n);
int lease_encode_expire(int64_t id, uint64_t granted_index, uint8_t *buf, size_t cap, size_t *n);
/* Decodes and statically checks one command. 0, LEASE_EMALFORMED, LEASE_EFORMAT or the
 * broken limit's error. Never allocates; out is fully written on success. */
int lease_decode(const uint8_t *buf, size_t n, struct lease_cmd *out);
/* Re-encodes a decoded command (dispatches on out->type). */
int lease_encode(const struct lease_cmd *cmd, uint8_t *buf, size_t cap, size_t *n);

/* ---- items -------------------------------------------------------------- */

enum lease_item_kind {
    LEASE_ITEM_KEY = 1,  /* a kv key */
    LEASE_ITEM_LOCK = 2, /* a lock name (sm/lock.h) */
};

/* A view of one item; bytes point into a table or a result. */
struct lease_item {
    const uint8_t *bytes;
    uint32_t len; /* 1..LEASE_ITEM_BYTES_MAX */
    uint8_t kind; /* enum lease_item_kind */
};

/* ---- results ------------------------------------------------------------ */

struct lease_result {
    int err;                /* 0 or LEASE_E*: when nonzero the table did not change */
    uint8_t type;           /* enum lease_cmd_type; 0 when the bytes were malformed */
    bool expired;           /* EXPIRE applied: report the death as expiry, not revoke */
    int64_t id;             /* the lease (GRANT: the id granted) */
    int64_t ttl_ms;         /* GRANT, REVOKE, EXPIRE: the lease's TTL */
    uint64_t granted_index; /* the index of the lease's GRANT */
    /* REVOKE/EXPIRE: what died with the lease, keys first then locks, each kind in
     * byte order (memcmp, shorter first on a tie: kv's key order). */
    struct lease_item *items;
    uint32_t n_items;
    uint32_t n_keys;  /* items[0 .. n_keys) are LEASE_ITEM_KEY */
    uint32_t n_locks; /* items[n_keys .. n_items) are LEASE_ITEM_LOCK */
    void *mem;        /* the one block holding items and their bytes */
};

/* Releases what res owns and zeroes it. Safe on a zeroed result and twice. */
void lease_result_free(struct lease_result *res);

/* ---- the table ---------------------------------------------------------- */

struct lease_table;

/* An empty table with next_id 1. 0 or LEASE_ENOMEM. Free with lease_free(). */
int lease_new(struct lease_table **out);
void lease_free(struct lease_table *t);

/* Applies one committed command (bytes from lease_encode_*, tag byte included) at Raft
 * index `index` (>= 1, recorded as a grant's granted_index). Always fills res (free it
 * with lease_result_free) and returns res->err; an error leaves the table unchanged and
 * is as deterministic as success. cmd is borrowed. */
int lease_apply(struct lease_table *t, const uint8_t *cmd, size_t n, uint64_t index,
                struct lease_result *res);

/* Attaches an item to lease id. Idempotent: an item already attached is 0 and changes
 * nothing. LEASE_ENOTFOUND, LEASE_EITEMSFULL, LEASE_EITEMTOOBIG or LEASE_EINVAL (bad
 * kind) leave the table unchanged; lease_item_check() predicts the outcome without
 * changing anything, so a caller can validate a whole command before mutating. */
int lease_attach(struct lease_table *t, int64_t id, uint8_t kind, const uint8_t *bytes,
                 uint32_t len);
int lease_item_check(const struct lease_table *t, int64_t id, uint8_t kind, const uint8_t *bytes,
                     uint32_t len);
/* Detaches an item. 0 (also when it was not attached) or LEASE_ENOTFOUND (no lease). */
int lease_detach(struct lease_table *t, int64_t id, uint8_t kind, const uint8_t *bytes,
                 uint32_t len);
/* Whether the item is attached to lease id. */
bool lease_item_attached(const struct lease_table *t, int64_t id, uint8_t kind,
                         const uint8_t *bytes, uint32_t len);

/* ---- queries ------------------------------------------------------------ */

struct lease_info {
    int64_t id;
    int64_t ttl_ms;
    uint64_t granted_index;
    uint32_t n_keys;
    uint32_t n_locks;
};

bool lease_exists(const struct lease_table *t, int64_t id);
/* 0 or LEASE_ENOTFOUND. */
int lease_get(const struct lease_table *t, int64_t id, struct lease_info *out);
/* Free item slots on lease id (LEASE_ITEMS_MAX - attached): a kv txn that attaches
 * several keys checks them all at once. 0 or LEASE_ENOTFOUND. */
int lease_room(const struct lease_table *t, int64_t id, uint32_t *free_slots);
/* Fills ids[] with up to max live lease ids greater than after_id, ascending; returns
 * how many (lease ls, paged). */
uint32_t lease_list(const struct lease_table *t, int64_t after_id, int64_t *ids, uint32_t max);
/* Calls item_cb for up to budget items of lease id in result order (keys, then locks),
 * starting after the first `skip`; a nonzero return stops and is returned. Views are
 * valid during the callback only. LEASE_ENOTFOUND when there is no such lease. */
typedef int (*lease_item_cb)(void *arg, const struct lease_item *item);
int lease_items(const struct lease_table *t, int64_t id, uint32_t skip, uint32_t budget,
                lease_item_cb item_cb, void *arg);
uint32_t lease_count(const struct lease_table *t);
int64_t lease_next_id(const struct lease_table *t); /* what GRANT(0) would allocate */

/* ---- canonical image ---------------------------------------------------- */

/* 64-bit FNV-1a over the canonical image (everything but the CRC): equal tables, equal
 * digests, on every replica and platform. O(size). */
uint64_t lease_digest(const struct lease_table *t);
/* Image: "CLSE", u32 format version, u64 next_id, u32 n_leases, then per lease in id
 * order: i64 id, i64 ttl_ms, u64 granted_index, u32 n_items, items in order (u8 kind,
 * u32 len, bytes), then CRC-32C of all preceding bytes. Canonical: equal tables give
 * equal bytes. *buf is malloc'd; the caller frees it. 0 or LEASE_ENOMEM. */
int lease_snapshot_encode(const struct lease_table *t, uint8_t **buf, size_t *n);
/* Builds a table from an image, trusting nothing: every count is checked against the
 * bytes left, every id, TTL and item against the limits, order and uniqueness, and
 * next_id above every id. LEASE_ECORRUPT, LEASE_EFORMAT or LEASE_ENOMEM; never crashes
 * on bad input. buf is borrowed; *out is freed with lease_free(). */
int lease_snapshot_decode(const uint8_t *buf, size_t n, struct lease_table **out);

#endif /* CONCLAVE_SM_LEASE_H */
