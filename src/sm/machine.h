/* machine.h -- the composite replicated state machine a node applies the Raft log to.
 *
 * Every committed command entry starts with a tag byte naming the machine it belongs to;
 * machine_apply() dispatches on it. The KV tag equals KVCMD_FORMAT_VERSION (1), so a KV
 * command is exactly kvcmd.h's encoding, with no extra envelope:
 *
 *   0x01  kv        sm/kv.h, sm/kvcmd.h
 *   0x10  members   sm/members.h (the member address directory)
 *   0x11  lease     sm/lease.h (TTL leases; expiry is decided by the leader)
 *   0x12  lock      sm/lock.h (mutexes, rw locks, semaphores, elections; fenced)
 *   0x13  idseg     sm/idgen/idseg.h (Leaf-style ID segments)
 *   0x14  kvttl     a kv command whose chosen puts get key-private leases (Redis TTLs)
 *
 * A command with an unknown tag is an apply error (SM_EUNKNOWNTAG), the same on every
 * replica: nothing changes. Pure and deterministic like its parts.
 *
 * How the parts meet:
 *   - a KV put naming a lease (directly or in a txn branch) needs that lease to exist,
 *     else LEASE_ENOTFOUND and nothing changes (etcd's rule);
 *   - a lease's death (REVOKE, or EXPIRE proposed by the leader) deletes its keys in one
 *     new KV revision (res->kv holds those delete events, for watchers) and ends its lock
 *     holds and waits, granting the next waiters (res->lock, type LOCK_CMD_LEASE_DEATH);
 *   - lock commands consult and update the lease table themselves (lock_apply);
 *   - key-private leases (Redis key expiry, api/resp_engine.c and resp_write.c). A KVTTL
 *     command carries one or more grants and an inner kv command (PUT or TXN, kvcmd.h bytes):
 *
 *       kvttl = u8 0x14, u8 SM_KVTTL_FORMAT_VERSION, u8 n_grants (1..SM_KVTTL_GRANTS_MAX),
 *               n_grants x (i64 ttl_ms, u16 op_index), then the kv command to the end
 *
 *     op_index names a put of the inner command (PUT: 0; TXN: success ops first, then
 *     failure ops), strictly ascending, each a put with lease 0 and no ignore_lease. At
 *     apply the machine takes ids next_id, next_id + 1, ... (what GRANT(0) would take:
 *     allocated at apply time, so every replica agrees), runs the kv command with those
 *     ids in the named puts, and grants only the leases whose put ran (the txn branch
 *     that ran); if the kv command fails nothing changes. A lease granted so is marked
 *     private by a LEASE_ITEM_KEY item naming its key; leases granted by GRANT carry no
 *     key items, so the rule below never touches them;
 *   - no leaks: after every kv or kvttl apply, each changed key whose previous version
 *     carried a private lease that no key carries any more (overwritten without
 *     KEEPTTL, deleted, renamed away, PERSISTed, given a new TTL) has that lease revoked
 *     in the same apply (unless a lock still holds it; it then expires as usual).
 *     Renames move the key item to the new key. Grants and these revocations are listed
 *     in res->lease_changes for the leader's lease timer (node.c);
 *
 * Snapshot image: "CSM1", u32 n_sections, then per section u8 tag, u64 length, bytes.
 * The kv section is required; the others may be absent (empty). Decode is strict:
 * unknown tags, repeated tags and trailing bytes are SM_ECORRUPT.
 *
 * Ownership: machine_new/machine_snapshot_decode allocate; machine_free releases. A
 * result owns its kv part (machine_result_free).
 */
#ifndef CONCLAVE_SM_MACHINE_H
#define CONCLAVE_SM_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm/idgen/idseg.h"
#include "sm/kv.h"
#include "sm/lease.h"
#include "sm/lock.h"
#include "sm/members.h"

enum sm_tag {
    SM_TAG_KV = 0x01,
    SM_TAG_MEMBERS = 0x10,
    SM_TAG_LEASE = 0x11,
    SM_TAG_LOCK = 0x12,
    SM_TAG_IDSEG = 0x13,
    SM_TAG_KVTTL = 0x14,
};

#define SM_KVTTL_FORMAT_VERSION 1u
/* Grants per KVTTL command (keys given a TTL by one MULTI/EXEC): the header must fit
 * the envelope kv.h leaves around a kv command. */
#define SM_KVTTL_GRANTS_MAX  64u /* SM_EGRANTS */
#define SM_KVTTL_HEADER_BYTES 3u  /* tag, version, n_grants */
#define SM_KVTTL_GRANT_BYTES  10u /* ttl_ms, op_index */
_Static_assert(SM_KVTTL_GRANTS_MAX <= UINT8_MAX, "n_grants is a u8");
_Static_assert(2 * KV_TXN_OPS_MAX <= UINT16_MAX, "op indexes are u16");
_Static_assert(SM_KVTTL_HEADER_BYTES + SM_KVTTL_GRANTS_MAX * SM_KVTTL_GRANT_BYTES <=
                   KV_CMD_ENVELOPE_BYTES,
               "a KVTTL header fits the envelope left around a kv command");

enum {
    SM_EUNKNOWNTAG = -2190, /* the command's first byte names no machine */
    SM_ECORRUPT = -2191,    /* snapshot image does not decode */
    SM_ENOMEM = -2192,
    SM_EMALFORMED = -2193, /* a KVTTL command does not decode, or names no fitting put */
    SM_EFORMAT = -2194,    /* KVTTL format version not supported */
    SM_EGRANTS = -2195,    /* n_grants is 0 or above SM_KVTTL_GRANTS_MAX */
};
const char *sm_strerror(int rv); /* also names the parts' codes (KV_E*, LEASE_E*, ...) */

/* One grant of a KVTTL command. */
struct sm_kvttl_grant {
    int64_t ttl_ms;    /* LEASE_TTL_MS_MIN..LEASE_TTL_MS_MAX */
    uint16_t op_index; /* the put that gets the lease */
};

/* A decoded KVTTL command; kv_cmd borrows the decoded buffer. */
struct sm_kvttl {
    uint32_t n_grants;
    struct sm_kvttl_grant grants[SM_KVTTL_GRANTS_MAX];
    const uint8_t *kv_cmd;
    size_t kv_len;
};

/* Encodes grants + a kv command (kvcmd_encode_* bytes) into *buf (malloc'd; the caller
 * frees it). Checks what decode checks statically: SM_EGRANTS, LEASE_ETTLSHORT,
 * LEASE_ETTLLONG, SM_EMALFORMED (op indexes not ascending, empty kv command) or
 * SM_ENOMEM. Whether the op indexes name fitting puts is checked at apply. */
int sm_kvttl_encode(const struct sm_kvttl_grant *grants, uint32_t n_grants, const uint8_t *kv_cmd,
                    size_t kv_len, uint8_t **buf, size_t *n);
/* Decodes the envelope (static checks as above, plus SM_EFORMAT); the inner kv command
 * is decoded at apply. Never allocates. */
int sm_kvttl_decode(const uint8_t *buf, size_t n, struct sm_kvttl *out);

/* A lease a kv or kvttl apply granted or revoked besides res->lease (node.c keeps the
 * leader's deadlines with them). */
struct sm_lease_change {
    int64_t id;
    int64_t ttl_ms;   /* granted: the TTL */
    bool granted;     /* else revoked */
};

struct sm_result {
    uint8_t tag;  /* enum sm_tag of the command, 0 when it was empty */
    int err;      /* 0, or why nothing changed (KV_E*, MEMBERS_E*, LEASE_E*, ...) */
    uint64_t index; /* the Raft index it was applied at */
    struct kv_result kv;       /* SM_TAG_KV; SM_TAG_LEASE death: the keys deleted */
    struct lease_result lease; /* SM_TAG_LEASE */
    struct lock_result lock;   /* SM_TAG_LOCK; SM_TAG_LEASE death: holds ended, grants */
    struct idseg_result idseg; /* SM_TAG_IDSEG */
    /* SM_TAG_KV and SM_TAG_KVTTL (res->kv holds the kv result): private leases granted
     * (in grant order) and revoked. Owned; sm_result_free frees it. */
    struct sm_lease_change *lease_changes;
    uint32_t n_lease_changes;
};
void sm_result_free(struct sm_result *res);

struct machine;
int machine_new(struct machine **out);
void machine_free(struct machine *m);

/* Applies the committed command at Raft index `index` (>= 1). Always fills res (free it
 * with sm_result_free). */
void machine_apply(struct machine *m, const uint8_t *cmd, size_t n, uint64_t index,
                   struct sm_result *res);

struct kv *machine_kv(struct machine *m);
const struct members *machine_members(const struct machine *m);
const struct lease_table *machine_leases(const struct machine *m);
const struct lock_table *machine_locks(const struct machine *m);
const struct idseg *machine_idseg(const struct machine *m);

int machine_snapshot_encode(const struct machine *m, uint8_t **buf, size_t *n);
int machine_snapshot_decode(const uint8_t *buf, size_t n, struct machine **out);
uint64_t machine_digest(const struct machine *m);

#endif /* CONCLAVE_SM_MACHINE_H */
