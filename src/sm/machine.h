/* machine.h -- the composite replicated state machine a node applies the Raft log to.
 *
 * Every committed command entry starts with a tag byte naming the machine it belongs to;
 * machine_apply() dispatches on it. The KV tag equals KVCMD_FORMAT_VERSION (1), so a KV
 * command is exactly kvcmd.h's encoding, with no extra envelope:
 *
 *   0x01  kv        sm/kv.h, sm/kvcmd.h
 *   0x10  members   sm/members.h (the member address directory)
 *   0x11  lease     reserved (sm/lease)      0x12 lock   reserved (sm/lock)
 *   0x13  idseg     reserved (sm/idgen)
 *
 * A command with an unknown tag is an apply error (SM_EUNKNOWNTAG), the same on every
 * replica: nothing changes. Pure and deterministic like its parts.
 *
 * Snapshot image: "CSM1", u32 n_sections, then per section u8 tag, u64 length, bytes.
 * The kv section is required; members may be absent (an empty directory). Decode is
 * strict: unknown tags, repeated tags and trailing bytes are SM_ECORRUPT.
 *
 * Ownership: machine_new/machine_snapshot_decode allocate; machine_free releases. A
 * result owns its kv part (machine_result_free).
 */
#ifndef CONCLAVE_SM_MACHINE_H
#define CONCLAVE_SM_MACHINE_H

#include <stddef.h>
#include <stdint.h>

#include "sm/kv.h"
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
const char *sm_strerror(int rv); /* also names KV_E* and MEMBERS_E* codes */

struct sm_result {
    uint8_t tag; /* enum sm_tag of the command, 0 when it was empty */
    int err;     /* 0, or why nothing changed (KV_E*, MEMBERS_E*, SM_E*) */
    struct kv_result kv; /* tag SM_TAG_KV: the store's result (its err equals err) */
};
void sm_result_free(struct sm_result *res);

struct machine;
int machine_new(struct machine **out);
void machine_free(struct machine *m);

/* Applies one committed command. Always fills res (free it with sm_result_free). */
void machine_apply(struct machine *m, const uint8_t *cmd, size_t n, struct sm_result *res);

struct kv *machine_kv(struct machine *m);
const struct members *machine_members(const struct machine *m);

int machine_snapshot_encode(const struct machine *m, uint8_t **buf, size_t *n);
int machine_snapshot_decode(const uint8_t *buf, size_t n, struct machine **out);
uint64_t machine_digest(const struct machine *m);

#endif /* CONCLAVE_SM_MACHINE_H */
