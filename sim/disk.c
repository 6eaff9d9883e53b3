/* disk.c -- per-node stable storage model with unsynced writes and torn crashes.
 *
 * Model (see disk.h): current = durable + ops[0..n_ops) applied in order.
 * Every write is validated against current, applied to current at once and
 * queued as an op; disk_sync() replays queued ops onto durable; disk_crash()
 * replays a random prefix (tearing the last append, maybe) and discards the
 * rest. Because both images are built by the same image_apply(), a crash can
 * only ever leave a state some prefix of the write stream produces -- never a
 * "middle part" -- which is exactly the guarantee raft.h asks of storage.
 *
 * Image invariants: entries are contiguous; when a snapshot is present every
 * entry has index > snapshot.index and the first one is snapshot.index + 1
 * (a snapshot that does not continue the log drops the whole entry list).
 *
 * Sections: images | ops | writes | sync and crash | queries.
 */
#include "disk.h"

#include <string.h>

#include "base/assert.h"
#include "mem.h"

enum disk_op_kind { DISK_OP_SNAPSHOT = 1, DISK_OP_TRUNCATE, DISK_OP_APPEND, DISK_OP_HARD_STATE };

struct disk_op {
    uint8_t kind; /* enum disk_op_kind */
    uint64_t truncate_from;
    struct raft_hard_state hard_state;
    struct raft_snapshot snapshot; /* bytes owned */
    struct raft_entry *entries;    /* bytes owned */
    uint32_t n_entries;
};

const char *disk_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case DISK_EGAP:
        return "append leaves a gap after the stored log";
    case DISK_EOVERLAP:
        return "append overlaps stored entries without a truncate";
    case DISK_EINVAL:
        return "malformed write";
    default:
        return "unknown disk error";
    }
}

/* ---- images -------------------------------------------------------------- */

static void image_free_entries(struct disk_image *img, uint64_t from_k)
{
    for (uint64_t k = from_k; k < img->n_entries; k++)
        free(img->entries[k].bytes);
    img->n_entries = from_k;
}

static void image_free(struct disk_image *img)
{
    image_free_entries(img, 0);
    free(img->entries);
    free(img->snapshot.bytes);
    memset(img, 0, sizeof(*img));
}

static void image_push(struct disk_image *img, const struct raft_entry *e, bool steal)
{
    mem_grow((void **)&img->entries, &img->cap_entries, img->n_entries + 1, sizeof(*img->entries));
    struct raft_entry *d = &img->entries[img->n_entries++];
    *d = *e;
    if (!steal)
        d->bytes = mem_dup(e->bytes, e->n_bytes);
}

static void image_copy(struct disk_image *dst, const struct disk_image *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->hard_state = src->hard_state;
    dst->has_snapshot = src->has_snapshot;
    dst->snapshot = src->snapshot;
    dst->snapshot.bytes = mem_dup(src->snapshot.bytes, src->snapshot.n_bytes);
    for (uint64_t k = 0; k < src->n_entries; k++)
        image_push(dst, &src->entries[k], false);
}

/* Drops entries with index <= upto from the front. */
static void image_drop_front(struct disk_image *img, uint64_t upto)
{
    uint64_t drop = 0;
    while (drop < img->n_entries && img->entries[drop].index <= upto)
        free(img->entries[drop++].bytes);
    memmove(img->entries, img->entries + drop, (img->n_entries - drop) * sizeof(*img->entries));
    img->n_entries -= drop;
}

static void image_truncate(struct disk_image *img, uint64_t from)
{
    uint64_t k = 0;
    while (k < img->n_entries && img->entries[k].index < from)
        k++;
    image_free_entries(img, k);
}

static void image_set_snapshot(struct disk_image *img, struct raft_snapshot *s, bool steal)
{
    uint64_t t = disk_image_term_at(img, s->index);
    bool continues = img->n_entries > 0 && img->entries[0].index <= s->index + 1 &&
                     (t == s->term || img->entries[0].index == s->index + 1);
    if (t != 0 && t != s->term)
        continues = false;
    free(img->snapshot.bytes);
    img->has_snapshot = true;
    img->snapshot = *s;
    if (steal)
        s->bytes = NULL;
    else
        img->snapshot.bytes = mem_dup(s->bytes, s->n_bytes);
    if (continues)
        image_drop_front(img, s->index);
    else
        image_free_entries(img, 0);
}

/* ---- ops ----------------------------------------------------------------- */

static void op_free(struct disk_op *op)
{
    free(op->snapshot.bytes);
    for (uint32_t k = 0; k < op->n_entries; k++)
        free(op->entries[k].bytes);
    free(op->entries);
    memset(op, 0, sizeof(*op));
}

/* Applies op to img. With steal, byte buffers move from op into img. */
static void image_apply(struct disk_image *img, struct disk_op *op, bool steal)
{
    switch (op->kind) {
    case DISK_OP_SNAPSHOT:
        image_set_snapshot(img, &op->snapshot, steal);
        break;
    case DISK_OP_TRUNCATE:
        image_truncate(img, op->truncate_from);
        break;
    case DISK_OP_APPEND:
        for (uint32_t k = 0; k < op->n_entries; k++) {
            image_push(img, &op->entries[k], steal);
            if (steal)
                op->entries[k].bytes = NULL;
        }
        break;
    case DISK_OP_HARD_STATE:
        img->hard_state = op->hard_state;
        break;
    default:
        CC_UNREACHABLE();
    }
}

static void disk_queue(struct disk *d, struct disk_op *op)
{
    image_apply(&d->current, op, false);
    mem_grow((void **)&d->ops, &d->cap_ops, d->n_ops + 1, sizeof(*d->ops));
    d->ops[d->n_ops++] = *op;
}

/* ---- writes -------------------------------------------------------------- */

void disk_init(struct disk *d, const struct raft_hard_state *hs, const struct raft_entry *first)
{
    memset(d, 0, sizeof(*d));
    d->durable.hard_state = *hs;
    image_push(&d->durable, first, false);
    image_copy(&d->current, &d->durable);
}

void disk_free(struct disk *d)
{
    for (uint64_t i = 0; i < d->n_ops; i++)
        op_free(&d->ops[i]);
    free(d->ops);
    image_free(&d->current);
    image_free(&d->durable);
    memset(d, 0, sizeof(*d));
}

int disk_write_snapshot(struct disk *d, const struct raft_snapshot *s)
{
    if (s->index == 0 || (s->n_bytes > 0 && s->bytes == NULL))
        return DISK_EINVAL;
    if (d->current.has_snapshot && s->index < d->current.snapshot.index)
        return DISK_EINVAL; /* older than what we hold */
    struct disk_op op = {.kind = DISK_OP_SNAPSHOT, .snapshot = *s};
    op.snapshot.bytes = mem_dup(s->bytes, s->n_bytes);
    disk_queue(d, &op);
    return 0;
}

int disk_write_truncate(struct disk *d, uint64_t from)
{
    if (from == 0)
        return DISK_EINVAL;
    struct disk_op op = {.kind = DISK_OP_TRUNCATE, .truncate_from = from};
    disk_queue(d, &op);
    return 0;
}

int disk_write_append(struct disk *d, const struct raft_entry *entries, uint32_t n)
{
    if (n == 0)
        return 0;
    uint64_t last = disk_image_last_index(&d->current);
    if (entries[0].index > last + 1)
        return DISK_EGAP;
    if (entries[0].index <= last)
        return DISK_EOVERLAP;
    for (uint32_t k = 0; k < n; k++)
        if (entries[k].index != entries[0].index + k ||
            (entries[k].n_bytes > 0 && entries[k].bytes == NULL))
            return DISK_EINVAL;
    struct disk_op op = {.kind = DISK_OP_APPEND, .n_entries = n};
    op.entries = mem_calloc(n, sizeof(*op.entries));
    for (uint32_t k = 0; k < n; k++) {
        op.entries[k] = entries[k];
        op.entries[k].bytes = mem_dup(entries[k].bytes, entries[k].n_bytes);
    }
    disk_queue(d, &op);
    return 0;
}

int disk_write_hard_state(struct disk *d, const struct raft_hard_state *hs)
{
    struct disk_op op = {.kind = DISK_OP_HARD_STATE, .hard_state = *hs};
    disk_queue(d, &op);
    return 0;
}

/* ---- sync and crash ------------------------------------------------------ */

uint64_t disk_seq(const struct disk *d)
{
    return d->seq_synced + d->n_ops;
}

void disk_sync(struct disk *d, uint64_t seq)
{
    CC_ASSERT(seq <= disk_seq(d));
    uint64_t k = 0;
    while (d->seq_synced + k < seq) {
        image_apply(&d->durable, &d->ops[k], true);
        op_free(&d->ops[k]);
        k++;
    }
    if (k > 0) /* ops may be NULL after disk_reset() */
        memmove(d->ops, d->ops + k, (d->n_ops - k) * sizeof(*d->ops));
    d->n_ops -= k;
    d->seq_synced += k;
}

void disk_crash(struct disk *d, struct prng *rng, struct disk_crash_info *info)
{
    memset(info, 0, sizeof(*info));
    info->n_unsynced = d->n_ops;
    uint64_t keep = prng_below(rng, d->n_ops + 1);
    info->n_kept = keep;
    if (keep > 0 && d->ops[keep - 1].kind == DISK_OP_APPEND && prng_chance(rng, 500000)) {
        struct disk_op *op = &d->ops[keep - 1];
        uint32_t n = (uint32_t)prng_below(rng, op->n_entries); /* strictly fewer */
        info->torn = true;
        info->torn_kept = n;
        info->torn_total = op->n_entries;
        for (uint32_t k = n; k < op->n_entries; k++) {
            free(op->entries[k].bytes);
            op->entries[k].bytes = NULL;
        }
        op->n_entries = n;
    }
    for (uint64_t k = 0; k < keep; k++)
        image_apply(&d->durable, &d->ops[k], true);
    for (uint64_t k = 0; k < d->n_ops; k++)
        op_free(&d->ops[k]);
    d->seq_synced += d->n_ops;
    d->n_ops = 0;
    struct disk_image fresh;
    image_copy(&fresh, &d->durable);
    image_free(&d->current);
    d->current = fresh;
}

void disk_recovered(const struct disk *d, struct raft_recovered *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->hard_state = d->durable.hard_state;
    rec->snapshot = d->durable.has_snapshot ? &d->durable.snapshot : NULL;
    rec->entries = d->durable.entries;
    rec->n_entries = d->durable.n_entries;
}

void disk_reset(struct disk *d, const struct raft_recovered *rec)
{
    disk_free(d);
    d->durable.hard_state = rec->hard_state;
    uint64_t k = 0;
    if (rec->snapshot != NULL) {
        d->durable.has_snapshot = true;
        d->durable.snapshot = *rec->snapshot;
        d->durable.snapshot.bytes = mem_dup(rec->snapshot->bytes, rec->snapshot->n_bytes);
        while (k < rec->n_entries && rec->entries[k].index <= rec->snapshot->index)
            k++;
        if (k < rec->n_entries && rec->entries[k].index != rec->snapshot->index + 1)
            k = rec->n_entries;
    }
    for (; k < rec->n_entries; k++)
        image_push(&d->durable, &rec->entries[k], false);
    image_copy(&d->current, &d->durable);
}

/* ---- queries ------------------------------------------------------------- */

uint64_t disk_image_snapshot_index(const struct disk_image *img)
{
    return img->has_snapshot ? img->snapshot.index : 0;
}

uint64_t disk_image_last_index(const struct disk_image *img)
{
    if (img->n_entries > 0)
        return img->entries[img->n_entries - 1].index;
    return disk_image_snapshot_index(img);
}

uint64_t disk_image_last_term(const struct disk_image *img)
{
    return disk_image_term_at(img, disk_image_last_index(img));
}

uint64_t disk_image_term_at(const struct disk_image *img, uint64_t index)
{
    if (index == 0)
        return 0;
    if (img->n_entries > 0) {
        uint64_t first = img->entries[0].index;
        if (index >= first && index < first + img->n_entries)
            return img->entries[index - first].term;
    }
    if (img->has_snapshot && img->snapshot.index == index)
        return img->snapshot.term;
    return 0;
}
