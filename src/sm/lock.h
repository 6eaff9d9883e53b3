/* lock.h -- the replicated lock table: mutexes, read-write locks, counting semaphores
 * and elections, all fenced, all fair, all bound to leases.
 *
 * A pure, deterministic state machine fed committed commands in log order (lock_apply)
 * and lease deaths (lock_lease_died); it never reads a clock. docs/locks.md is the
 * user-level description; this is the contract.
 *
 * Model. A lock is named by 1..LOCK_NAME_BYTES_MAX bytes and has a kind, fixed while it
 * exists:
 *   MUTEX      one holder, mode EXCLUSIVE;
 *   RW         any number of READ holders or one WRITE holder;
 *   SEMAPHORE  up to `limit` holders (1..LOCK_HOLDERS_MAX), mode EXCLUSIVE;
 *   ELECTION   one holder (the leader) carrying a value, mode EXCLUSIVE (etcd's
 *              concurrency API: campaign = ACQUIRE with wait, proclaim = PROCLAIM,
 *              resign = RELEASE, leader = lock_get, observe = the events below).
 * A lock exists while it has a holder or a waiter; the first ACQUIRE creates it with the
 * kind and limit it names, and later ones must name the same (LOCK_EKIND). An idle lock
 * is deleted; only the token counter remembers it.
 *
 * Every hold and every wait belongs to a lease (lease id >= 1, existing in the lease
 * table: LOCK_ENOLEASE otherwise) and to an owner (1..LOCK_OWNER_BYTES_MAX bytes, the
 * client's identity). (owner, lease) is the identity of a party on one lock: it holds at
 * most once (a reentrant hold counts) or waits at most once, never both. The lock table
 * attaches the lock's name to the lease (LEASE_ITEM_LOCK) while the lease has a hold or
 * a wait there, so a dying lease hands the name back and lock_lease_died() ends them.
 *
 * Guarantees:
 *   - Mutual exclusion per kind, as above, in every state the table can reach.
 *   - FIFO fairness: an ACQUIRE is granted at once only when nobody waits and the mode
 *     is compatible with the holders; otherwise it queues (wait) or is BUSY (no wait).
 *     A release, cancel or lease death grants from the queue head only, as many as can
 *     now hold: one writer or exclusive waiter, or the run of consecutive readers at the
 *     head (RW), or as many as the semaphore has free slots. The head of a non-empty
 *     queue can therefore never hold now (checked on snapshot load).
 *   - Fencing: every new hold gets a token from ONE counter for the whole table, which
 *     only ever increases (also across snapshots). Tokens are therefore strictly
 *     increasing per lock name even after an idle lock was deleted and re-created, and a
 *     protected resource that remembers the highest token it has seen per name rejects
 *     every older holder (docs/locks.md: the fencing-token contract).
 *   - Owner-checked release (the notes' compare-and-delete): RELEASE and PROCLAIM must
 *     name the hold's token AND its owner.
 *   - Reentrancy: ACQUIRE by a current holder (same owner and lease) returns the same
 *     token and increments hold_count (ELECTION: hold_count stays 1, campaigning again
 *     is idempotent). RELEASE decrements it and frees the hold at 0 (or at once with
 *     LOCK_RELEASE_ALL). A READ holder asking for WRITE is LOCK_EUPGRADE (two such
 *     holders would wait for each other forever); a WRITE holder may re-acquire READ.
 *
 * Commands (one Raft entry each; little-endian; str = u16 length + bytes; strict
 * decoding as in sm/kvcmd.c: unknown flag bits, enums, empty or long strings, zero ids
 * and trailing bytes are errors, so one meaning has one encoding):
 *
 *   command  = u8 LOCK_CMD_TAG (0x12), u8 LOCK_FORMAT_VERSION, u8 type, body
 *   ACQUIRE  = u8 kind, u8 mode, u8 flags (1 wait), u32 limit, i64 lease,
 *              u64 request_id, str name, str owner, str value
 *   RELEASE  = u8 flags (1 all), u64 token, str name, str owner
 *   CANCEL   = u64 request_id, str name, str owner
 *   PROCLAIM = u64 token, str name, str owner, str value
 *
 * limit is 1..LOCK_HOLDERS_MAX for a SEMAPHORE and 0 otherwise; value is non-empty only
 * for ELECTION (ACQUIRE: the value the candidate proclaims when elected). request_id
 * (>= 1, chosen by the node) names a waiting request: (owner, request_id) is unique in a
 * queue, an ACQUIRE repeating a queued (owner, lease, request_id) reports its place
 * again (retries are idempotent), and CANCEL removes it (the client's wait_ms ran out).
 *
 * Results. Every apply fills a struct lock_result: the command's own outcome, plus an
 * ordered list of events telling the node whom to wake and what watchers see:
 *   GRANTED    a new hold (the acquirer itself, or a waiter woken by this entry),
 *   RELEASED   a hold ended by RELEASE,
 *   LOST       a hold ended because its lease died (the lock-lost notification),
 *   DROPPED    a wait ended because its lease died,
 *   CANCELLED  a wait ended by CANCEL,
 *   PROCLAIMED an election leader's value changed.
 *
 * Errors are negative LOCK_E* codes in -2300..-2399; lock_apply() may also return the
 * lease table's LEASE_EITEMSFULL (the lease has no room for another lock name).
 * lock_strerror() names both.
 *
 * Ownership: command buffers are the caller's. Results own copies of everything they
 * show (lock_result_free). lock_get() views point into the table and are valid until the
 * next mutating call. Not thread-safe. Allocation failure while applying aborts, as in
 * sm/kv.c and sm/lease.c.
 */
#ifndef CONCLAVE_SM_LOCK_H
#define CONCLAVE_SM_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm/lease.h"

/* ---- format ------------------------------------------------------------- */

#define LOCK_CMD_TAG        0x12u /* byte 0: the composite machine dispatches on it */
#define LOCK_FORMAT_VERSION 1u    /* byte 1; others are LOCK_EFORMAT */

enum lock_cmd_type {
    LOCK_CMD_ACQUIRE = 1,
    LOCK_CMD_RELEASE = 2,
    LOCK_CMD_CANCEL = 3,
    LOCK_CMD_PROCLAIM = 4,
    LOCK_CMD_LEASE_DEATH = 5, /* result type of lock_lease_died(); never a command */
};

enum lock_kind {
    LOCK_KIND_MUTEX = 1,
    LOCK_KIND_RW = 2,
    LOCK_KIND_SEMAPHORE = 3,
    LOCK_KIND_ELECTION = 4,
};

enum lock_mode {
    LOCK_MODE_READ = 1,      /* RW only */
    LOCK_MODE_WRITE = 2,     /* RW only */
    LOCK_MODE_EXCLUSIVE = 3, /* MUTEX, SEMAPHORE (one slot), ELECTION */
};

#define LOCK_ACQUIRE_WAIT 0x01u /* ACQUIRE flag: queue instead of BUSY */
#define LOCK_RELEASE_ALL  0x01u /* RELEASE flag: drop the hold whatever its count */

/* ---- limits (each has its own error) ------------------------------------ */

/* Names are lock identities in URLs (/v1/lock/{name}) and lease items. */
#define LOCK_NAME_BYTES_MAX 256u /* LOCK_ENAMETOOBIG (empty: LOCK_ENAMEEMPTY) */
/* Owners identify a client session; a UUID plus a host name fits comfortably. */
#define LOCK_OWNER_BYTES_MAX 128u /* LOCK_EOWNERTOOBIG (empty: LOCK_EOWNEREMPTY) */
/* An election value names the leader (an address, a small JSON object). */
#define LOCK_VALUE_BYTES_MAX 1024u /* LOCK_EVALUETOOBIG */
/* Locks that exist at once. Bounds the table and its snapshot. */
#define LOCK_COUNT_MAX 100000u /* LOCK_EFULL */
/* Waiters per lock: bounds the wake-up fan-out of one release (STYLE rule 9). */
#define LOCK_WAITERS_MAX 1024u /* LOCK_EQUEUEFULL */
/* Holders per lock: a semaphore's largest limit, and the most readers an RW lock admits
 * at once (more readers queue, they are not refused). Bounds one lease death's work. */
#define LOCK_HOLDERS_MAX 1024u /* LOCK_ELIMIT (a semaphore limit above it) */
/* Reentrant depth of one hold: a runaway recursion should fail, not wrap. */
#define LOCK_HOLD_COUNT_MAX 1000000u /* LOCK_EHOLDCOUNT */
/* The largest command: header, fixed fields and the three strings. */
#define LOCK_CMD_FIXED_BYTES 32u
#define LOCK_CMD_BYTES_MAX \
    (LOCK_CMD_FIXED_BYTES + LOCK_NAME_BYTES_MAX + LOCK_OWNER_BYTES_MAX + LOCK_VALUE_BYTES_MAX)

_Static_assert(LOCK_NAME_BYTES_MAX <= LEASE_ITEM_BYTES_MAX, "a lock name is a lease item");
_Static_assert(LOCK_NAME_BYTES_MAX <= UINT16_MAX && LOCK_OWNER_BYTES_MAX <= UINT16_MAX &&
                   LOCK_VALUE_BYTES_MAX <= UINT16_MAX,
               "string lengths are encoded as u16");
_Static_assert(LOCK_CMD_BYTES_MAX + KV_CMD_ENVELOPE_BYTES <= KV_CMD_BYTES_MAX,
               "a lock command fits a Raft entry with room to spare");

/* ---- errors ------------------------------------------------------------- */

enum {
    LOCK_EINVAL = -2301,       /* invalid argument (zero id, bad enum, misuse) */
    LOCK_ENOMEM = -2302,       /* allocation failed (snapshots and lock_get only) */
    LOCK_EMALFORMED = -2303,   /* command bytes do not decode */
    LOCK_EFORMAT = -2304,      /* command or snapshot format version not supported */
    LOCK_ENAMEEMPTY = -2305,   /* empty lock name */
    LOCK_ENAMETOOBIG = -2306,  /* name longer than LOCK_NAME_BYTES_MAX */
    LOCK_EOWNEREMPTY = -2307,  /* empty owner */
    LOCK_EOWNERTOOBIG = -2308, /* owner longer than LOCK_OWNER_BYTES_MAX */
    LOCK_EVALUETOOBIG = -2309, /* value longer than LOCK_VALUE_BYTES_MAX */
    LOCK_EVALUE = -2310,       /* a value given for a lock kind that has none */
    LOCK_EMODE = -2311,        /* mode not allowed for the lock kind */
    LOCK_ELIMIT = -2312,       /* semaphore limit 0 or > LOCK_HOLDERS_MAX, or one for a
                                  kind without a limit */
    LOCK_EKIND = -2313,        /* the lock exists with another kind or limit */
    LOCK_ENOLEASE = -2314,     /* the lease does not exist */
    LOCK_EFULL = -2315,        /* LOCK_COUNT_MAX locks exist */
    LOCK_EQUEUEFULL = -2316,   /* LOCK_WAITERS_MAX waiters on this lock */
    LOCK_EHOLDCOUNT = -2317,   /* reentrant depth would pass LOCK_HOLD_COUNT_MAX */
    LOCK_EUPGRADE = -2318,     /* READ holder asked for WRITE (would deadlock) */
    LOCK_EWAITING = -2319,     /* this party already waits here with another request */
    LOCK_ENOTFOUND = -2320,    /* no such lock */
    LOCK_ENOTHOLDER = -2321,   /* no hold with that token and owner */
    LOCK_ENOTWAITING = -2322,  /* no wait with that owner and request id */
    LOCK_ECORRUPT = -2323,     /* snapshot fails its checksum or consistency checks */
};
/* Names LOCK_E* codes, and LEASE_E* codes through lease_strerror(). */
const char *lock_strerror(int rv);

/* ---- commands ----------------------------------------------------------- */

/* A decoded command. Strings point into the decoded buffer (borrowed). */
struct lock_cmd {
    uint8_t type;  /* enum lock_cmd_type (not LEASE_DEATH) */
    uint8_t kind;  /* ACQUIRE: enum lock_kind */
    uint8_t mode;  /* ACQUIRE: enum lock_mode */
    uint8_t flags; /* ACQUIRE: LOCK_ACQUIRE_WAIT; RELEASE: LOCK_RELEASE_ALL */
    uint32_t limit;
    int64_t lease;
    uint64_t request_id; /* ACQUIRE, CANCEL */
    uint64_t token;      /* RELEASE, PROCLAIM */
    const uint8_t *name;
    const uint8_t *owner;
    const uint8_t *value;
    uint16_t name_len;
    uint16_t owner_len;
    uint16_t value_len;
};

/* Validates cmd (the same static checks the decoder runs) and writes it to buf, which
 * must hold cap >= LOCK_CMD_BYTES_MAX bytes (else LOCK_EINVAL). What it produces always
 * decodes; decode(encode(c)) == c and encode(decode(b)) == b. */
int lock_encode(const struct lock_cmd *cmd, uint8_t *buf, size_t cap, size_t *n);
/* Decodes and statically checks one command. 0, LOCK_EMALFORMED, LOCK_EFORMAT or the
 * broken rule's error. Never allocates; out is zeroed on error. */
int lock_decode(const uint8_t *buf, size_t n, struct lock_cmd *out);
/* The static checks alone. */
int lock_cmd_check(const struct lock_cmd *cmd);

/* ---- results ------------------------------------------------------------ */

enum lock_status {
    LOCK_GRANTED = 1, /* ACQUIRE: the caller holds the lock (token, hold_count) */
    LOCK_QUEUED = 2,  /* ACQUIRE: the caller waits (position, 0 = next in line) */
    LOCK_BUSY = 3,    /* ACQUIRE without wait: not grantable now */
};

enum lock_event_type {
    LOCK_EV_GRANTED = 1,
    LOCK_EV_RELEASED = 2,
    LOCK_EV_LOST = 3,
    LOCK_EV_DROPPED = 4,
    LOCK_EV_CANCELLED = 5,
    LOCK_EV_PROCLAIMED = 6,
};

/* One change. Strings are owned by the result. */
struct lock_event {
    uint8_t type; /* enum lock_event_type */
    uint8_t kind; /* of the lock */
    uint8_t mode;
    uint16_t name_len;
    uint16_t owner_len;
    uint16_t value_len; /* GRANTED and PROCLAIMED on an ELECTION: the leader's value */
    int64_t lease;
    uint64_t request_id; /* GRANTED, DROPPED, CANCELLED: the request */
    uint64_t token;      /* GRANTED, RELEASED, LOST, PROCLAIMED: the hold */
    const uint8_t *name;
    const uint8_t *owner;
    const uint8_t *value;
};

struct lock_result_block; /* internal: the memory behind the string views */

struct lock_result {
    int err;                   /* 0 or an error: when nonzero the table did not change */
    uint8_t type;              /* enum lock_cmd_type; 0 when the bytes were malformed */
    uint8_t status;            /* ACQUIRE: enum lock_status */
    bool reentrant;            /* ACQUIRE granted to a current holder (same token) */
    uint64_t token;            /* ACQUIRE granted, RELEASE, PROCLAIM: the hold's token */
    uint32_t hold_count;       /* ACQUIRE granted: the count now; RELEASE: the count left */
    uint32_t position;         /* ACQUIRE queued: waiters ahead of the caller */
    struct lock_event *events; /* in order; GRANTED events of one entry ascend by token */
    uint32_t n_events;
    uint32_t cap_events;
    struct lock_result_block *mem;
};

/* Releases what res owns and zeroes it. Safe on a zeroed result and twice. */
void lock_result_free(struct lock_result *res);

/* ---- the table ---------------------------------------------------------- */

struct lock_table;

/* An empty table whose first token is 1. 0 or LOCK_ENOMEM. Free with lock_free(). */
int lock_new(struct lock_table **out);
void lock_free(struct lock_table *t);

/* Applies one committed command (tag byte included) at Raft index `index` (>= 1,
 * recorded as a hold's granted_index or a wait's queued_index). The lease table is
 * consulted (the lease must exist) and updated (lock names attached and detached); it
 * must be the one whose lease deaths this table is told about. Always fills res (free
 * with lock_result_free) and returns res->err; on error neither table changed. */
int lock_apply(struct lock_table *t, struct lease_table *leases, const uint8_t *cmd, size_t n,
               uint64_t index, struct lock_result *res);

/* A lease died (its REVOKE or EXPIRE applied at `index`; lease_apply already removed it
 * and returned its items). Ends every hold (LOST) and wait (DROPPED) of that lease on
 * each LEASE_ITEM_LOCK item's lock, then grants each lock's queue head as a release
 * would, in item order. Other items are ignored, as are names with no lock. The lease
 * table is only used to assert the contract that `lease` is gone (it may be NULL); the
 * waiters now granted keep their own leases' attachments. Fills res (type
 * LOCK_CMD_LEASE_DEATH) and returns 0. */
int lock_lease_died(struct lock_table *t, struct lease_table *leases, int64_t lease,
                    const struct lease_item *items, uint32_t n_items, uint64_t index,
                    struct lock_result *res);

/* ---- queries ------------------------------------------------------------ */

/* One holder or waiter, as lock_get shows it. Views into the table. */
struct lock_party {
    const uint8_t *owner;
    const uint8_t *value; /* ELECTION */
    uint16_t owner_len;
    uint16_t value_len;
    uint8_t mode;
    int64_t lease;
    uint64_t request_id; /* the request that queued (and, for a holder, got) it */
    uint64_t token;      /* holders; 0 for waiters */
    uint32_t hold_count; /* holders; 0 for waiters */
    uint64_t index;      /* holders: granted_index; waiters: queued_index */
};

struct lock_info {
    uint8_t kind;
    uint32_t limit;     /* SEMAPHORE; 1 for MUTEX and ELECTION; 0 for RW */
    uint32_t n_holders; /* in grant (token) order */
    uint32_t n_waiters; /* in queue order */
    const void *lock;   /* internal */
};

/* 0 or LOCK_ENOTFOUND (no such lock: nobody holds or waits). */
int lock_get(const struct lock_table *t, const uint8_t *name, uint16_t name_len,
             struct lock_info *out);
void lock_info_holder(const struct lock_info *info, uint32_t i, struct lock_party *out);
void lock_info_waiter(const struct lock_info *info, uint32_t i, struct lock_party *out);
uint32_t lock_count(const struct lock_table *t);
uint64_t lock_next_token(const struct lock_table *t); /* what the next grant gets */

/* Checks every invariant of the table (those in lock.c's opening comment): 0 or
 * LOCK_ECORRUPT. O(size log size). The snapshot decoder runs it; tests and fuzzers do
 * too. */
int lock_check(const struct lock_table *t);
/* Cross-checks the two tables after both were restored from snapshots: every hold and
 * wait's lease exists and carries the lock's name, and every LEASE_ITEM_LOCK item names
 * a lock where that lease holds or waits. 0 or LOCK_ECORRUPT. */
int lock_check_leases(const struct lock_table *t, const struct lease_table *leases);

/* ---- canonical image ---------------------------------------------------- */

/* 64-bit FNV-1a over the canonical image: equal tables, equal digests. */
uint64_t lock_digest(const struct lock_table *t);
/* Image: "CLCK", u32 format version, u64 next_token, u32 n_locks, then per lock in name
 * order: str name, u8 kind, u32 limit, u32 n_holders, u32 n_waiters, the holders in
 * token order and the waiters in queue order (each: str owner, str value, u8 mode,
 * i64 lease, u64 request_id, u64 token, u32 hold_count, u64 index), then CRC-32C.
 * Canonical: equal tables give equal bytes. *buf is malloc'd; the caller frees it. */
int lock_snapshot_encode(const struct lock_table *t, uint8_t **buf, size_t *n);
/* Builds a table from an image, trusting nothing (counts against bytes left, every
 * limit, then lock_check). LOCK_ECORRUPT, LOCK_EFORMAT or LOCK_ENOMEM; never crashes
 * on bad input. buf is borrowed; *out is freed with lock_free(). */
int lock_snapshot_decode(const uint8_t *buf, size_t n, struct lock_table **out);

#endif /* CONCLAVE_SM_LOCK_H */
