/* kvsm.h -- the simulator's toy key-value state machine.
 *
 * Keys are 0..KVSM_KEYS-1 (a deliberately tiny key space, so client histories
 * collide); values are int64 and KVSM_ABSENT (INT64_MIN, equal to lincheck's
 * LIN_ABSENT) means "no such key". Commands:
 *   PUT(key, value)            sets the key; result 0
 *   CAS(key, expected, new)    swaps when the current value equals expected
 *                              (KVSM_ABSENT: "create if absent"); result 1 or 0
 * Every applied log index (commands and non-command entries alike) folds into
 * a rolling FNV-1a digest, so two replicas that applied the same sequence have
 * equal digests and any divergence shows at the first differing index.
 *
 * The snapshot image holds the whole state (map, per-key versions, a ring of
 * recent mutations, applied index, digest) plus a checksum; it is a few hundred
 * bytes so that InstallSnapshot spans several small chunks.
 *
 * Errors are negative codes in the kvsm range (kvsm_strerror()). Pure: no IO.
 */
#ifndef CONCLAVE_SIM_KVSM_H
#define CONCLAVE_SIM_KVSM_H

#include <stddef.h>
#include <stdint.h>

#define KVSM_KEYS          5         /* small on purpose: ops on one key overlap a lot */
#define KVSM_ABSENT        INT64_MIN /* the "no such key" value, same as LIN_ABSENT */
#define KVSM_RECENT_MAX    16        /* mutations remembered in the snapshot ring */
#define KVSM_CMD_BYTES_MAX 18        /* kind + key + two int64 */
#define KVSM_SNAPSHOT_BYTES \
    (4 + 8 + 8 + 8 + KVSM_KEYS * 16 + KVSM_RECENT_MAX * 20 + 8) /* see kvsm.c layout */

enum {
    KVSM_EINVAL = -1301,  /* malformed command or argument */
    KVSM_EORDER = -1302,  /* index is not applied_index + 1 */
    KVSM_ECORRUPT = -1303 /* snapshot image fails its format or checksum */
};
const char *kvsm_strerror(int rv);

enum kvsm_kind { KVSM_PUT = 1, KVSM_CAS = 2 };

struct kvsm_cmd {
    uint8_t kind; /* enum kvsm_kind */
    uint32_t key;
    int64_t arg;  /* PUT: value; CAS: expected */
    int64_t arg2; /* CAS: new value */
};

struct kvsm_mutation {
    uint64_t index;
    uint32_t key;
    int64_t value;
};

struct kvsm {
    int64_t values[KVSM_KEYS];
    uint64_t versions[KVSM_KEYS]; /* mutations per key */
    uint64_t applied_index;
    uint64_t digest;
    uint64_t n_mutations;
    struct kvsm_mutation recent[KVSM_RECENT_MAX]; /* ring, slot n_mutations % MAX */
};

/* Empty map at applied index 0. */
void kvsm_init(struct kvsm *kv);

int kvsm_cmd_encode(const struct kvsm_cmd *c, uint8_t *buf, size_t cap, size_t *n_out);
int kvsm_cmd_decode(struct kvsm_cmd *c, const uint8_t *buf, size_t n);

/* Applies the command at index (must be applied_index + 1). *result gets the
 * CAS outcome (1/0), 0 for PUT. On error the state is unchanged. */
int kvsm_apply(struct kvsm *kv, uint64_t index, const uint8_t *cmd, size_t n, int64_t *result);
/* Advances over a non-command entry (no-op, configuration) at index. */
int kvsm_skip(struct kvsm *kv, uint64_t index);

int64_t kvsm_get(const struct kvsm *kv, uint32_t key);

/* cap must be >= KVSM_SNAPSHOT_BYTES. */
int kvsm_snapshot_encode(const struct kvsm *kv, uint8_t *buf, size_t cap, size_t *n_out);
/* Replaces *kv only when the image is valid. */
int kvsm_snapshot_decode(struct kvsm *kv, const uint8_t *buf, size_t n);

#endif /* CONCLAVE_SIM_KVSM_H */
