/* disk.h -- the simulator's model of one node's stable storage.
 *
 * A disk holds two images of the same shape (hard state, optional snapshot,
 * contiguous entry list):
 *   current  -- what the node has written, synced or not (what a read of the
 *               files would return while the process lives);
 *   durable  -- what survives a crash for certain.
 * Between them sits the ordered list of unsynced writes ("ops"): snapshot
 * install, truncate, append, set hard state. disk_sync(seq) makes every op
 * written before seq durable, in order. disk_crash() keeps a random prefix of
 * the unsynced ops (the page cache flushed some of them) and may tear the last
 * surviving append (only a prefix of its entries reaches the platter); the
 * rest is lost and current becomes a copy of durable.
 *
 * Writes are validated against the current image: an append that does not
 * continue the log exactly (gap or overlap) is refused with DISK_EGAP /
 * DISK_EOVERLAP, which the simulator reports as a broken host contract.
 *
 * Ownership: the disk copies everything it is given and owns all entry bytes.
 * disk_recovered() fills a struct raft_recovered pointing into the durable
 * image; it stays valid until the next disk_* call.
 */
#ifndef CONCLAVE_SIM_DISK_H
#define CONCLAVE_SIM_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/prng.h"
#include "raft/raft.h"

enum {
    DISK_EGAP = -1201,     /* append starts beyond the last stored entry + 1 */
    DISK_EOVERLAP = -1202, /* append starts at or before the last stored entry */
    DISK_EINVAL = -1203    /* malformed write (entries not contiguous, bad snapshot) */
};
const char *disk_strerror(int rv);

struct disk_image {
    struct raft_hard_state hard_state;
    bool has_snapshot;
    struct raft_snapshot snapshot; /* bytes owned */
    struct raft_entry *entries;    /* entries[k].index == entries[0].index + k; bytes owned */
    uint64_t n_entries;
    size_t cap_entries;
};

struct disk_op; /* one unsynced write, private to disk.c */

struct disk {
    struct disk_image current, durable;
    struct disk_op *ops; /* unsynced writes, oldest first */
    uint64_t n_ops;
    size_t cap_ops;
    uint64_t seq_synced; /* ops numbered below this are durable */
};

/* What a crash kept of the unsynced writes (for the trace). */
struct disk_crash_info {
    uint64_t n_unsynced, n_kept;
    bool torn;
    uint32_t torn_kept, torn_total; /* entries of the torn append that survived */
};

/* A fresh disk whose durable image is hs plus the single entry first. */
void disk_init(struct disk *d, const struct raft_hard_state *hs, const struct raft_entry *first);
void disk_free(struct disk *d);

int disk_write_snapshot(struct disk *d, const struct raft_snapshot *s);
int disk_write_truncate(struct disk *d, uint64_t from);
int disk_write_append(struct disk *d, const struct raft_entry *entries, uint32_t n);
int disk_write_hard_state(struct disk *d, const struct raft_hard_state *hs);

/* Sequence number the next write will get; disk_sync(d, disk_seq(d)) syncs all. */
uint64_t disk_seq(const struct disk *d);
/* Makes every op numbered below seq durable. */
void disk_sync(struct disk *d, uint64_t seq);
void disk_crash(struct disk *d, struct prng *rng, struct disk_crash_info *info);
void disk_recovered(const struct disk *d, struct raft_recovered *rec);
/* Forgets everything and makes rec (as another storage backend recovered it) both the
 * durable and the current image. Entries the snapshot covers are dropped; the rest
 * must continue it (else the whole list is dropped, as image_set_snapshot does). */
void disk_reset(struct disk *d, const struct raft_recovered *rec);

/* Image queries. last index/term count the snapshot when the log is empty. */
uint64_t disk_image_last_index(const struct disk_image *img);
uint64_t disk_image_last_term(const struct disk_image *img);
/* Term of the entry at index from the entries or the snapshot; 0 if unknown. */
uint64_t disk_image_term_at(const struct disk_image *img, uint64_t index);
uint64_t disk_image_snapshot_index(const struct disk_image *img);

#endif /* CONCLAVE_SIM_DISK_H */
