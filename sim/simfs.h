/* simfs.h -- an in-memory filesystem behind the env table (base/env.h), with the faults
 * a real disk shows: lost unsynced writes, torn writes, failing fsync, a full disk and
 * flipped bits.
 *
 * Model. Every file (inode) has a durable image and a current image plus the list of
 * writes, truncations and allocations made since its last sync. Directory operations
 * (create, rename, unlink, mkdir) change the current namespace at once and become durable
 * only when the parent directory is synced (sync_dir). Reads see the current state.
 *
 * simfs_crash() is a power cut: for each surviving file it keeps a random prefix of the
 * unsynced operations, and the last kept write may be torn (only a prefix of its bytes
 * lands); it keeps a random prefix of the unsynced directory operations; everything else
 * is gone, every open handle goes stale (its calls fail with -EIO) and the current state
 * becomes the durable one.
 *
 * A failed sync (injected) is fsyncgate: a random prefix of the file's unsynced writes
 * reaches the disk, the rest stay only in the "page cache" (the current image) and are
 * forgotten by the next crash, and a later sync reports success without writing them.
 *
 * Space: the bytes in use are the sizes of all live files; a write or allocation that
 * would go past capacity fails with -ENOSPC, after writing the prefix that fits (as a
 * short pwrite does). Allocated bytes count at once, so writes inside them never fail.
 *
 * Determinism: all randomness comes from the PRNG seeded in simfs_new(); directory
 * listings are sorted; there is no wall clock (mono_ms starts at SIMFS_START_MS and moves
 * only with simfs_advance_ms). A mutex makes each call atomic, so a storage thread may
 * use the env while the test thread waits; the interleaving is then the threads' own.
 *
 * simfs is a test double: it aborts (CC_ASSERT) on allocation failure instead of
 * threading ENOMEM through its fault paths.
 */
#ifndef CC_SIM_SIMFS_H
#define CC_SIM_SIMFS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/env.h"

/* ---- limits ----------------------------------------------------------------------- */

#define SIMFS_FILES_MAX 4096 /* live inodes; bounds the linear lookups */
/* Unsynced ops per file before "writeback" makes the oldest half durable, as a kernel
 * flusher would. */
#define SIMFS_OPS_MAX      65536
#define SIMFS_DIROPS_MAX   4096                    /* unsynced directory ops before writeback */
#define SIMFS_START_MS     1000                    /* mono_ms at creation */
#define SIMFS_WALL_BASE_MS UINT64_C(1700000000000) /* wall_ms = base + mono_ms */

/* ---- types ------------------------------------------------------------------------ */

struct simfs;

/* Fault knobs. simfs_new() starts with torn_write_per_million = 500000 and nothing else;
 * all zero means a crash loses unsynced ops but never tears one. */
struct simfs_faults {
    uint32_t sync_eio_per_million;   /* each sync() and sync_dir() fails with -EIO */
    uint32_t torn_write_per_million; /* at a crash, the last kept write of a file is torn */
    uint64_t capacity_bytes;         /* -ENOSPC beyond this many bytes in use; 0 = unlimited */
};

struct simfs_stats {
    uint64_t n_syncs;         /* successful file syncs */
    uint64_t n_sync_dirs;     /* successful directory syncs */
    uint64_t n_sync_failures; /* injected sync errors */
    uint64_t n_writes;
    uint64_t n_bytes_written;
    uint64_t n_crashes;
};

/* ---- lifecycle -------------------------------------------------------------------- */

/* A new empty filesystem ("/" and "." exist). Returns 0 or -ENOMEM. Free with simfs_free. */
int simfs_new(uint64_t seed, struct simfs **out);
void simfs_free(struct simfs *fs);

/* The env table for fs; valid until simfs_free(). */
struct env *simfs_env(struct simfs *fs);

/* A deep copy of fs (durable and current state, unsynced ops) with its own PRNG seeded
 * from seed. Open handles are not copied. */
int simfs_clone(struct simfs *fs, uint64_t seed, struct simfs **out);

/* ---- faults ----------------------------------------------------------------------- */

void simfs_set_faults(struct simfs *fs, const struct simfs_faults *faults);
/* The next n sync()/sync_dir() calls fail with -EIO (after any probabilistic ones). */
void simfs_fail_next_syncs(struct simfs *fs, uint32_t n);
/* Power cut, as described above. */
void simfs_crash(struct simfs *fs);

/* Disk corruption: these change the file's durable and current images alike, as if the
 * medium itself changed. They return 0, -ENOENT, or -EINVAL for an offset past the end. */
int simfs_flip_bit(struct simfs *fs, const char *path, uint64_t offset, unsigned bit);
int simfs_zero_range(struct simfs *fs, const char *path, uint64_t offset, uint64_t n);
/* Cuts or zero-extends the file; its unsynced operations are forgotten. */
int simfs_set_size(struct simfs *fs, const char *path, uint64_t size);

/* ---- inspection ------------------------------------------------------------------- */

bool simfs_exists(struct simfs *fs, const char *path);
/* Current size of a file, or -ENOENT. */
int simfs_file_size(struct simfs *fs, const char *path, uint64_t *size_out);
/* Bytes of all live files (what capacity_bytes is compared with). */
uint64_t simfs_used_bytes(struct simfs *fs);
void simfs_get_stats(struct simfs *fs, struct simfs_stats *out);
void simfs_advance_ms(struct simfs *fs, uint64_t ms);

#endif /* CC_SIM_SIMFS_H */
