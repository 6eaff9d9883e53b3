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
 *   - lock commands consult and update the lease table themselves (lock_apply).
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
};

enum {
    SM_EUNKNOWNTAG = -2190, /* the command's first byte names no machine */
    SM_ECORRUPT = -2191,    /* snapshot image does not decode */
    SM_ENOMEM = -2192,
};
const char *sm_strerror(int rv); /* also names the parts' codes (KV_E*, LEASE_E*, ...) */

struct sm_result {
    uint8_t tag;  /* enum sm_tag of the command, 0 when it was empty */
    int err;      /* 0, or why nothing changed (KV_E*, MEMBERS_E*, LEASE_E*, ...) */
    uint64_t index; /* the Raft index it was applied at */
    struct kv_result kv;       /* SM_TAG_KV; SM_TAG_LEASE death: the keys deleted */
    struct lease_result lease; /* SM_TAG_LEASE */
    struct lock_result lock;   /* SM_TAG_LOCK; SM_TAG_LEASE death: holds ended, grants */
    struct idseg_result idseg; /* SM_TAG_IDSEG */
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
