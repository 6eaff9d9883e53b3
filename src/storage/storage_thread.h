/* storage_thread.h -- group commit: a worker thread owns the WAL, writes every batch the
 * event loop submitted since it last looked, and makes them all durable with ONE
 * fdatasync, so the loop never blocks on the disk and a burst of proposals shares a sync
 * (DESIGN.md: "one event loop thread plus a storage thread for fsync").
 *
 * Use from the event loop (one thread):
 *   storage_start(wal, opts)       hand the opened WAL to the worker
 *   storage_submit(batch) -> seq    copy raft_update's persist part (snapshot marker,
 *                                   truncation, entries, hard state) into the queue
 *   storage_poll(out, cap)          collect completions, in submission order: each says
 *                                   which index and term are now durable; call
 *                                   raft_persisted() with them, then send the messages
 *                                   that waited for durability
 *   storage_stop()                 finish queued work, join; the WAL is the caller's again
 * The worker calls opts.wakeup_cb (if set) after queueing completions; it runs on the
 * worker thread, so it must only poke the loop (libuv: uv_async_send), never poll.
 * A drain of the queue is one write (wal_write_group, sealed) and one fdatasync. While
 * the queue is empty the worker zero-fills the WAL's next segment in bounded steps
 * (wal_prepare), so the disk work of a new segment stays off the sync path.
 *
 * Failures, in completion.status:
 *   - WAL_ESYNC / WAL_EIO / WAL_EFAILED with fatal = true: exit the process and recover
 *     from disk (fsyncgate: never retry a failed fsync).
 *   - WAL_ENOSPC without opts.retry_enospc (or another non-fatal error): the batch is not
 *     durable. Every later
 *     batch completes with STORAGE_ESTOPPED: Raft's "a crash may lose a suffix, never a
 *     middle part" must hold for the live process too. Fail the affected client
 *     requests, and when space is back restart the node's Raft core from disk
 *     (storage_stop, wal_close, wal_open): the WAL recovers to its exact last good record.
 *
 * Memory: submit copies everything, so raft_update's pointers may die on return.
 * Limits: STORAGE_INFLIGHT_MAX batches and STORAGE_INFLIGHT_BYTES_MAX entry bytes may be
 * submitted and not yet polled; beyond that submit returns STORAGE_EFULL (backpressure).
 */
#ifndef CC_STORAGE_STORAGE_THREAD_H
#define CC_STORAGE_STORAGE_THREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "base/histogram.h"
#include "storage/wal.h"

/* ---- limits ----------------------------------------------------------------------- */

/* Batches submitted and not yet polled: bounds memory and the completion ring. */
#define STORAGE_INFLIGHT_MAX       4096
#define STORAGE_INFLIGHT_BYTES_MAX (UINT64_C(256) << 20) /* entry bytes copied, queued */

_Static_assert(STORAGE_INFLIGHT_MAX >= RAFT_INFLIGHT_MAX,
               "a leader's full pipeline must fit without backpressure");

/* ---- errors (negative, in the storage range) -------------------------------------- */

enum {
    STORAGE_EFULL = -1401,    /* an in-flight limit was hit; poll, then submit again */
    STORAGE_ENOMEM = -1402,   /* allocation failed */
    STORAGE_ESTOPPED = -1403, /* an earlier batch failed; this one was not written */
    STORAGE_ETHREAD = -1404,  /* the worker thread could not be started */
    STORAGE_EBUSY = -1405,    /* storage_write_inline: the worker has work; submit instead */
};
const char *storage_strerror(int rv);

/* ---- types ------------------------------------------------------------------------ */

struct storage;

struct storage_options {
    void *wakeup_arg;
    void (*wakeup_cb)(void *arg); /* on the worker thread; NULL = the loop polls */
    /* Disk full: instead of failing the batch (and every later one), keep it and every
     * later item queued in order and retry every STORAGE_FULL_RETRY_MS until it fits.
     * The WAL cut the failed write back (WAL_ENOSPC leaves nothing behind), so nothing
     * is lost or reordered; storage_full() tells the host to refuse new writes. */
    bool retry_enospc;
};

#define STORAGE_FULL_RETRY_MS 500 /* between attempts while the disk is full */

struct storage_completion {
    uint64_t seq;           /* from storage_submit / storage_compact */
    int status;             /* 0, a WAL_E* code, or STORAGE_ESTOPPED */
    bool fatal;             /* exit the process */
    uint64_t durable_index; /* the WAL's durable last index and term after this batch */
    uint64_t durable_term;
};

struct storage_stats {
    uint64_t n_batches; /* completed */
    uint64_t n_syncs;   /* fdatasyncs that sealed batches */
    uint64_t n_groups;  /* drains of the queue that wrote something */
    uint64_t max_group; /* most batches in one drain */
    uint64_t n_prepare_steps;    /* idle-time wal_prepare steps that left more to do */
    uint64_t n_prepare_failures; /* wal_prepare errors (not fatal: the spare was dropped) */
    uint64_t n_spare_bytes;      /* the WAL's wal_stats.n_spare_bytes after the last step */
    struct hist sync_us; /* wal_sync (fdatasync) latency */
};

/* ---- API -------------------------------------------------------------------------- */

/* Starts the worker. It owns wal until storage_stop() returns. */
int storage_start(struct wal *wal, const struct storage_options *o, struct storage **out);

/* Queues a copy of b. *seq_out (may be NULL) names its completion. */
int storage_submit(struct storage *s, const struct wal_batch *b, uint64_t *seq_out);

/* Writes and syncs b on the CALLING thread, if the worker is parked with nothing queued
 * (else STORAGE_EBUSY, and nothing happened: use storage_submit). Same durability, order
 * and completion as storage_submit -- the completion is in the ring when this returns,
 * for the next storage_poll -- but no hand-off to the worker and back, which costs
 * about 40 us each way on a VM; b is not copied. The caller blocks for one write and one
 * fdatasync. For a follower, whose ack waits for exactly that (node.c). */
int storage_write_inline(struct storage *s, const struct wal_batch *b, uint64_t *seq_out);

/* Queues wal_compact(snapshot_index) after everything submitted before it. */
int storage_compact(struct storage *s, uint64_t snapshot_index, uint64_t *seq_out);

/* Moves up to cap completions to out; returns how many. Never blocks. */
uint32_t storage_poll(struct storage *s, struct storage_completion *out, uint32_t cap);

/* Blocks until a completion is ready to poll (for tests and simple hosts). */
void storage_wait(struct storage *s);

void storage_get_stats(struct storage *s, struct storage_stats *out);

/* With retry_enospc: whether a batch is waiting for disk space right now. */
bool storage_full(struct storage *s);

/* Processes what is queued, stops the worker and frees s; unpolled completions are
 * dropped. The WAL stays open. */
void storage_stop(struct storage *s);

#endif /* CC_STORAGE_STORAGE_THREAD_H */
