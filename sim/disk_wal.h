/* disk_wal.h -- the simulator's "real" storage backend: one node's WAL and snapshots,
 * written by the production code (storage/wal.h, storage/snap.h) over an in-memory,
 * fault-injecting filesystem (simfs.h), one per node, data directory "/n<id>".
 *
 * The host keeps its logical disk model (disk.h) beside it as a shadow: the checks and
 * the storage-mirror comparison read the shadow, while crashes and restarts go through
 * simfs_crash() and the same recovery node.c runs (snap_load_latest + wal_open). After a
 * restart the shadow is rebuilt from what the real code recovered (disk_reset()).
 *
 * Errors: every call returns 0 or the storage code's own error (WAL_* / SNAP_*); the
 * host turns fatal ones (fsync failure, ENOSPC on the WAL, IO errors) into a crash and a
 * restart from disk, like node.c's exit(70/75).
 *
 * Ownership: struct dwal is embedded in its world_node; dwal_free() releases it.
 */
#ifndef CONCLAVE_SIM_DISK_WAL_H
#define CONCLAVE_SIM_DISK_WAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/prng.h"
#include "raft/raft.h"
#include "storage/wal.h"

#define DWAL_SEGMENT_BYTES 8192 /* small, so segments roll and compaction runs often */
#define DWAL_SNAP_KEEP     2    /* as node.c: the newest and one to fall back to */
#define DWAL_DIR_BYTES     16

struct simfs;

struct dwal {
    struct simfs *fs;
    struct wal *wal; /* NULL while the node is down */
    char dir[DWAL_DIR_BYTES];
};

/* What recovery found, owned until dwal_recovered_free(). */
struct dwal_recovered {
    struct wal_recovered wal;
    struct raft_snapshot snap;
    bool has_snap;
    struct raft_recovered raft; /* points into wal and snap */
};

/* A fresh filesystem holding a WAL bootstrapped with hs and first, synced. */
int dwal_init(struct dwal *d, uint32_t id, uint64_t seed, const struct raft_hard_state *hs,
              const struct raft_entry *first, char *msg, size_t msg_cap);
void dwal_free(struct dwal *d);

/* Persist part of an update (node.c flush(): an installed snapshot is saved first). */
int dwal_write(struct dwal *d, const struct raft_update *u, char *msg, size_t msg_cap);
int dwal_sync(struct dwal *d);
/* A snapshot the host took: snap_save, snap_prune, compact to the oldest kept. */
int dwal_snapshot_taken(struct dwal *d, const struct raft_snapshot *s, char *msg, size_t msg_cap);

/* Power cut: the handle is dropped, simfs loses unsynced writes and may tear one. */
void dwal_crash(struct dwal *d);
/* Flips one random bit of the oldest WAL segment when there are at least two (every
 * segment but the last was synced whole). Returns true if a bit was flipped. */
bool dwal_flip_old_bit(struct dwal *d, struct prng *rng, char *what, size_t what_cap);
/* node.c's recovery: newest valid snapshot, then wal_open. */
int dwal_recover(struct dwal *d, struct dwal_recovered *out, char *msg, size_t msg_cap);
void dwal_recovered_free(struct dwal_recovered *r);

void dwal_fail_next_sync(struct dwal *d);
/* Capacity = bytes in use + extra_bytes (0 clears the limit). */
void dwal_limit_space(struct dwal *d, uint64_t extra_bytes, bool clear);

#endif /* CONCLAVE_SIM_DISK_WAL_H */
