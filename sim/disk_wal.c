/* disk_wal.c -- the simulator's real storage backend (see disk_wal.h): production WAL
 * and snapshot code over one simfs per node.
 *
 * Invariants: the WAL handle exists exactly while the node is up; every write goes
 * through wal_write() in raft_update's persist order; a state machine snapshot is
 * durable (snap_save) before the WAL is compacted, and compaction only reaches the
 * OLDEST snapshot kept (docs/storage.md "Compaction").
 *
 * Sections: lifecycle | writes | crash and recovery | faults.
 */
#include "disk_wal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "simfs.h"
#include "storage/snap.h"

/* ---- lifecycle ----------------------------------------------------------------- */

static void dwal_options(struct wal_options *o)
{
    wal_options_default(o);
    o->segment_bytes = DWAL_SEGMENT_BYTES;
    o->create = true;
}

int dwal_init(struct dwal *d, uint32_t id, uint64_t seed, const struct raft_hard_state *hs,
              const struct raft_entry *first, char *msg, size_t msg_cap)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/n%u", id);
    CC_ASSERT(simfs_new(seed, &d->fs) == 0);
    struct env *env = simfs_env(d->fs);
    CC_ASSERT(env->mkdir(env, d->dir) == 0);
    CC_ASSERT(env->sync_dir(env, "/") == 0); /* the machine was set up before the run */
    struct wal_options o;
    struct wal_recovered rec;
    dwal_options(&o);
    int rv = wal_open(env, d->dir, &o, &d->wal, &rec, msg, msg_cap);
    if (rv != 0)
        return rv;
    wal_recovered_free(&rec);
    struct wal_batch b = {
        .entries = first, .n_entries = 1, .has_hard_state = true, .hard_state = *hs};
    rv = wal_write(d->wal, &b);
    if (rv == 0)
        rv = wal_sync(d->wal, NULL, NULL);
    wal_close(d->wal); /* host_restart() recovers it like any restart */
    d->wal = NULL;
    return rv;
}

void dwal_free(struct dwal *d)
{
    if (d->wal != NULL)
        wal_close(d->wal);
    if (d->fs != NULL)
        simfs_free(d->fs);
    memset(d, 0, sizeof(*d));
}

/* ---- writes ---------------------------------------------------------------------- */

int dwal_write(struct dwal *d, const struct raft_update *u, char *msg, size_t msg_cap)
{
    CC_ASSERT(d->wal != NULL);
    if (u->snapshot != NULL) {
        int rv = snap_save(simfs_env(d->fs), d->dir, u->snapshot, msg, msg_cap);
        if (rv != 0)
            return rv; /* node.c: fatal, whatever the reason */
    }
    struct wal_batch b = {
        .snapshot_index = u->snapshot ? u->snapshot->index : 0,
        .snapshot_term = u->snapshot ? u->snapshot->term : 0,
        .truncate_from = u->truncate_from,
        .entries = u->entries,
        .n_entries = u->n_entries,
        .has_hard_state = u->hard_state_changed,
        .hard_state = u->hard_state,
    };
    /* An installed snapshot that the stored log does not continue (a different term at
     * its index) must take the entries after it too, as the model does; the WAL's
     * SNAPSHOT record only drops the prefix, so the host truncates explicitly. Without
     * this, recovery returns entries of a lower term after the snapshot (see the report:
     * node.c has the same gap). */
    if (u->snapshot != NULL && wal_last_index(d->wal) > u->snapshot->index &&
        wal_term_at(d->wal, u->snapshot->index) != u->snapshot->term &&
        (b.truncate_from == 0 || b.truncate_from > u->snapshot->index + 1))
        b.truncate_from = u->snapshot->index + 1;
    if (!b.snapshot_index && !b.truncate_from && !b.n_entries && !b.has_hard_state)
        return 0;
    int rv = wal_write(d->wal, &b);
    if (rv != 0)
        snprintf(msg, msg_cap, "wal_write: %s", wal_strerror(rv));
    return rv;
}

int dwal_sync(struct dwal *d)
{
    CC_ASSERT(d->wal != NULL);
    return wal_sync(d->wal, NULL, NULL);
}

int dwal_snapshot_taken(struct dwal *d, const struct raft_snapshot *s, char *msg, size_t msg_cap)
{
    CC_ASSERT(d->wal != NULL);
    struct env *env = simfs_env(d->fs);
    int rv = snap_save(env, d->dir, s, msg, msg_cap);
    if (rv != 0)
        return rv;
    /* Pruning is housekeeping (node.c ignores its result); compaction needs the
     * list to find the oldest snapshot kept. */
    snap_prune(env, d->dir, DWAL_SNAP_KEEP, NULL);
    struct snap_info infos[DWAL_SNAP_KEEP];
    uint32_t n_infos = 0;
    if (snap_list(env, d->dir, infos, DWAL_SNAP_KEEP, &n_infos) == 0 && n_infos > 0) {
        rv = wal_compact(d->wal, infos[n_infos - 1].index, NULL);
        if (rv != 0)
            snprintf(msg, msg_cap, "wal_compact: %s", wal_strerror(rv));
    }
    return rv;
}

/* ---- crash and recovery -------------------------------------------------------- */

void dwal_crash(struct dwal *d)
{
    simfs_fail_next_syncs(d->fs, 0); /* an injected failure dies with the process */
    simfs_crash(d->fs);
    if (d->wal != NULL)
        wal_close(d->wal); /* its handles are stale now: nothing more reaches the disk */
    d->wal = NULL;
}

int dwal_recover(struct dwal *d, struct dwal_recovered *out, char *msg, size_t msg_cap)
{
    CC_ASSERT(d->wal == NULL);
    memset(out, 0, sizeof(*out));
    struct env *env = simfs_env(d->fs);
    struct snap_info info;
    int rv = snap_load_latest(env, d->dir, &out->snap, &info, msg, msg_cap);
    if (rv == 0)
        out->has_snap = true;
    else if (rv != SNAP_ENOENT)
        return rv;
    struct wal_options o;
    dwal_options(&o);
    o.create = false;
    rv = wal_open(env, d->dir, &o, &d->wal, &out->wal, msg, msg_cap);
    if (rv != 0) {
        d->wal = NULL;
        if (out->has_snap)
            snap_free(&out->snap);
        out->has_snap = false;
        return rv;
    }
    out->raft.hard_state = out->wal.hard_state;
    out->raft.snapshot = out->has_snap ? &out->snap : NULL;
    out->raft.entries = out->wal.entries;
    out->raft.n_entries = out->wal.n_entries;
    return 0;
}

void dwal_recovered_free(struct dwal_recovered *r)
{
    wal_recovered_free(&r->wal);
    if (r->has_snap)
        snap_free(&r->snap);
    memset(r, 0, sizeof(*r));
}

/* ---- faults ---------------------------------------------------------------------- */

struct dwal_oldest {
    uint64_t seq;
    uint32_t n;
    char name[WAL_NAME_BYTES];
};

static int dwal_oldest_cb(void *arg, const char *name)
{
    struct dwal_oldest *o = arg;
    uint64_t seq = 0;
    if (!wal_parse_segment_name(name, &seq))
        return 0;
    if (o->n++ == 0 || seq < o->seq) {
        o->seq = seq;
        snprintf(o->name, sizeof(o->name), "%s", name);
    }
    return 0;
}

bool dwal_flip_old_bit(struct dwal *d, struct prng *rng, char *what, size_t what_cap)
{
    struct env *env = simfs_env(d->fs);
    struct dwal_oldest o = {0};
    if (env->list_dir(env, d->dir, &o, dwal_oldest_cb) != 0 || o.n < 2)
        return false;
    char path[64];
    uint64_t size = 0;
    if (env_path_join(path, sizeof(path), d->dir, o.name) != 0 ||
        simfs_file_size(d->fs, path, &size) != 0 || size == 0)
        return false;
    uint64_t off = prng_below(rng, size);
    unsigned bit = (unsigned)prng_below(rng, 8);
    if (simfs_flip_bit(d->fs, path, off, bit) != 0)
        return false;
    snprintf(what, what_cap, "%s byte %llu bit %u", path, (unsigned long long)off, bit);
    return true;
}

void dwal_fail_next_sync(struct dwal *d)
{
    simfs_fail_next_syncs(d->fs, 1);
}

void dwal_limit_space(struct dwal *d, uint64_t extra_bytes, bool clear)
{
    struct simfs_faults f = {.torn_write_per_million = 500000};
    if (!clear)
        f.capacity_bytes = simfs_used_bytes(d->fs) + extra_bytes;
    simfs_set_faults(d->fs, &f);
}
