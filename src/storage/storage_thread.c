/* storage_thread.c -- the group-commit worker (storage_thread.h has the contract).
 *
 * Invariants:
 *   - Only the worker touches the WAL between storage_start and storage_stop.
 *   - The worker takes the WHOLE queue each time it wakes, writes the batches in order
 *     with ONE write (wal_write_group, sealed), then calls wal_sync once for all of them:
 *     while one fdatasync runs, everything the loop submits piles up for the next one.
 *     That is the group commit; nothing waits for a timer.
 *   - Only while the queue is empty does the worker prepare the WAL's next segment
 *     (wal_prepare, one WAL_PREPARE_STEP_BYTES step at a time, checking the queue
 *     between steps), so zero-filling never sits between a batch and its sync; a batch
 *     that arrives during a step waits for that one step at most.
 *   - Completions are queued in submission order, and each is queued only after the
 *     sync covering its batch returned, so "durable_index" is never a promise ahead of
 *     the disk.
 *   - After the first failed batch nothing more is written (a later batch could depend
 *     on the failed one); after a fatal error nothing at all is.
 *   - n_inflight counts batches from submit until poll, and bounds the completion ring,
 *     so the worker never has to wait for room.
 *
 *   - storage_write_inline lends the WAL to the loop thread only while the worker is
 *     parked in its wait with nothing queued (worker_idle); while inline_busy the worker
 *     neither drains nor prepares, so exactly one thread touches the WAL at a time, and
 *     since the queue was empty the inline batch is still in submission order.
 *
 * Locking: one mutex guards the queue, the ring and the counters; the worker never holds
 * it while doing IO or calling wakeup_cb. The inline writer does not hold it during IO
 * either; the worker-only fields (fatal, failed, group) are its while inline_busy.
 *
 * Sections: types | errors | items | worker | API.
 */
#include "storage/storage_thread.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

/* ---- types ------------------------------------------------------------------------ */

enum storage_item_kind { STORAGE_ITEM_BATCH = 1, STORAGE_ITEM_COMPACT = 2 };

struct storage_item {
    struct storage_item *next;
    uint8_t kind;
    uint64_t seq;
    struct wal_batch b; /* entries point into entries[], bytes into arena */
    struct raft_entry *entries;
    uint8_t *arena;
    uint64_t n_bytes; /* counted against STORAGE_INFLIGHT_BYTES_MAX */
    uint64_t compact_to;
    struct storage_completion done;
    bool written;
    bool retry; /* disk full: back to the queue, in order, for the next attempt */
};

struct storage {
    struct wal *wal;
    struct storage_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    struct storage_item *head; /* queued, oldest first */
    struct storage_item *tail;
    struct storage_completion ring[STORAGE_INFLIGHT_MAX];
    uint32_t ring_head;
    uint32_t n_ring;
    uint32_t n_inflight;
    uint64_t inflight_bytes;
    uint64_t next_seq;
    bool stopping;
    int failed; /* worker only: first failure (non-fatal) */
    bool fatal; /* worker only */
    bool full;  /* under mu: a batch waits for disk space (retry_enospc) */
    bool worker_idle;   /* under mu: the worker waits on work_cv with nothing to do */
    bool inline_busy;   /* under mu: storage_write_inline owns the WAL */
    bool prepare_kick;  /* under mu: an inline write left wal_prepare work */
    struct storage_stats stats;
    const struct wal_batch *group[STORAGE_INFLIGHT_MAX]; /* worker only: one drain */
};

/* ---- errors ----------------------------------------------------------------------- */

const char *storage_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case STORAGE_EFULL:
        return "storage queue full";
    case STORAGE_ENOMEM:
        return "out of memory";
    case STORAGE_ESTOPPED:
        return "storage stopped after an earlier failed batch";
    case STORAGE_ETHREAD:
        return "cannot start the storage thread";
    case STORAGE_EBUSY:
        return "storage worker busy";
    default:
        return wal_strerror(rv);
    }
}

static bool storage__is_fatal(int rv)
{
    return rv == WAL_ESYNC || rv == WAL_EIO || rv == WAL_EFAILED;
}

/* ---- items ------------------------------------------------------------------------ */

static void storage__item_free(struct storage_item *it)
{
    free(it->entries);
    free(it->arena);
    free(it);
}

/* A deep copy of b: one array for the entries, one arena for their bytes. */
static int storage__item_new(const struct wal_batch *b, struct storage_item **out)
{
    struct storage_item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return STORAGE_ENOMEM;
    }
    it->kind = STORAGE_ITEM_BATCH;
    it->b = *b;
    it->b.entries = NULL;
    for (uint32_t i = 0; i < b->n_entries; i++) {
        it->n_bytes += b->entries[i].n_bytes;
    }
    if (b->n_entries > 0) {
        it->entries = malloc(b->n_entries * sizeof(it->entries[0]));
        it->arena = malloc(it->n_bytes > 0 ? (size_t)it->n_bytes : 1);
        if (it->entries == NULL || it->arena == NULL) {
            storage__item_free(it);
            return STORAGE_ENOMEM;
        }
        uint64_t off = 0;
        for (uint32_t i = 0; i < b->n_entries; i++) {
            it->entries[i] = b->entries[i];
            it->entries[i].bytes = NULL;
            if (b->entries[i].n_bytes > 0) {
                memcpy(it->arena + off, b->entries[i].bytes, b->entries[i].n_bytes);
                it->entries[i].bytes = it->arena + off;
                off += b->entries[i].n_bytes;
            }
        }
        it->b.entries = it->entries;
    }
    *out = it;
    return 0;
}

/* Appends it to the queue if the in-flight limits allow. */
static int storage__enqueue(struct storage *s, struct storage_item *it, uint64_t *seq_out)
{
    pthread_mutex_lock(&s->mu);
    CC_ASSERT(!s->stopping);
    if (s->n_inflight == STORAGE_INFLIGHT_MAX ||
        (it->n_bytes > 0 && s->inflight_bytes + it->n_bytes > STORAGE_INFLIGHT_BYTES_MAX)) {
        pthread_mutex_unlock(&s->mu);
        return STORAGE_EFULL;
    }
    it->seq = ++s->next_seq;
    s->n_inflight++;
    s->inflight_bytes += it->n_bytes;
    if (s->tail != NULL) {
        s->tail->next = it;
    } else {
        s->head = it;
    }
    s->tail = it;
    if (seq_out != NULL) {
        *seq_out = it->seq;
    }
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- worker ----------------------------------------------------------------------- */

/* Writes the group, syncs it once, runs compactions; fills every item's completion.
 * Counters go to *st, which the caller publishes under the lock. */
static void storage__process(struct storage *s, struct storage_item *list, struct storage_stats *st)
{
    struct wal *w = s->wal;
    /* One write for every batch of the drain (wal_write_group splits only what does not
     * fit WAL_BATCH_BYTES_MAX), closed by its seal. It stops at the first failed batch. */
    uint32_t n_batches = 0;
    for (struct storage_item *it = list; it != NULL; it = it->next) {
        if (it->kind == STORAGE_ITEM_BATCH) {
            CC_ASSERT(n_batches < STORAGE_INFLIGHT_MAX);
            s->group[n_batches++] = &it->b;
        }
    }
    const bool attempt = n_batches > 0 && !s->fatal && s->failed == 0;
    uint32_t n_ok = 0;
    const int write_rv = attempt ? wal_write_group(w, s->group, n_batches, true, &n_ok) : 0;
    CC_ASSERT(write_rv != 0 || n_ok == (attempt ? n_batches : 0));

    uint32_t n_written = 0;
    uint32_t j = 0;         /* batch number within the drain */
    bool deferring = false; /* an earlier item did not fit: everything after waits too */
    for (struct storage_item *it = list; it != NULL; it = it->next) {
        it->done.seq = it->seq;
        it->retry = false; /* a retried item gets a fresh attempt */
        if (deferring) {
            it->retry = true;
            continue;
        }
        if (it->kind != STORAGE_ITEM_BATCH) {
            continue;
        }
        if (attempt && j < n_ok) {
            it->written = true;
            n_written++;
        } else if (attempt && j == n_ok) {
            CC_ASSERT(write_rv != 0);
            if (write_rv == WAL_ENOSPC && s->o.retry_enospc) {
                it->retry = true;
                deferring = true;
            } else {
                it->done.status = write_rv;
                s->fatal = storage__is_fatal(write_rv);
                s->failed = write_rv;
            }
        } else if (s->fatal) {
            it->done.status = WAL_EFAILED;
        } else {
            CC_ASSERT(s->failed != 0);
            it->done.status = STORAGE_ESTOPPED;
        }
        j++;
    }
    int sync_rv = 0;
    if (n_written > 0 && !s->fatal) {
        struct env *env = wal_env(w);
        uint64_t t0 = env->mono_us ? env->mono_us(env) : 0;
        sync_rv = wal_sync(w, NULL, NULL);
        if (env->mono_us)
            hist_observe(&st->sync_us, env->mono_us(env) - t0);
        s->fatal = storage__is_fatal(sync_rv);
        s->failed = s->failed != 0 ? s->failed : sync_rv;
        st->n_syncs += sync_rv == 0;
        st->n_groups++;
        st->max_group = n_written > st->max_group ? n_written : st->max_group;
    } else if (n_written > 0) {
        sync_rv = WAL_EFAILED; /* a later write failed fatally: nothing may be synced */
    }
    for (struct storage_item *it = list; it != NULL; it = it->next) {
        if (it->retry) {
            continue;
        }
        if (it->kind == STORAGE_ITEM_COMPACT) {
            it->done.status = s->fatal ? WAL_EFAILED : wal_compact(w, it->compact_to, NULL);
            s->fatal = s->fatal || storage__is_fatal(it->done.status);
        } else if (it->written) {
            it->done.status = sync_rv;
        }
        it->done.fatal = storage__is_fatal(it->done.status);
        it->done.durable_index = wal_durable_index(w);
        it->done.durable_term = wal_durable_term(w);
    }
}

static void *storage__main(void *arg)
{
    struct storage *s = arg;
    bool try_prepare = true; /* wal_prepare may have work: ask it while idle */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        /* Each pass either waits or does one bounded preparation step; wal_prepare says
         * "no more" after at most segment_bytes / WAL_PREPARE_STEP_BYTES + 1 steps. */
        while ((s->head == NULL || s->inline_busy) && !s->stopping) {
            if (s->prepare_kick) {
                s->prepare_kick = false;
                try_prepare = true;
            }
            if (try_prepare && !s->fatal && !s->inline_busy) {
                pthread_mutex_unlock(&s->mu);
                bool more = false;
                const int rv = wal_prepare(s->wal, WAL_PREPARE_STEP_BYTES, &more);
                struct wal_stats ws;
                wal_get_stats(s->wal, &ws);
                pthread_mutex_lock(&s->mu);
                s->stats.n_spare_bytes = ws.n_spare_bytes;
                s->stats.n_prepare_steps += rv == 0 && more;
                s->stats.n_prepare_failures += rv != 0;
                try_prepare = more; /* a failure is not the log's: the next roll retries */
                continue;
            }
            s->worker_idle = true;
            pthread_cond_wait(&s->work_cv, &s->mu);
            s->worker_idle = false;
        }
        try_prepare = true;
        if (s->head == NULL) {
            break;
        }
        struct storage_item *list = s->head;
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->mu);

        struct storage_stats st;
        pthread_mutex_lock(&s->mu);
        st = s->stats;
        pthread_mutex_unlock(&s->mu);
        storage__process(s, list, &st);

        /* Items that did not fit are a suffix of list: they go back to the head of the
         * queue, ahead of anything submitted meanwhile. When stopping, they complete as
         * WAL_ENOSPC instead (not durable, not fatal). */
        struct storage_item *retry = NULL, **link = &list;
        while (*link && !(*link)->retry)
            link = &(*link)->next;
        retry = *link;
        *link = NULL;
        pthread_mutex_lock(&s->mu);
        if (retry && s->stopping) {
            *link = retry;
            for (struct storage_item *it = retry; it; it = it->next)
                it->done.status = WAL_ENOSPC;
            retry = NULL;
        }
        s->full = retry != NULL;
        if (retry) {
            struct storage_item *last = retry;
            while (last->next)
                last = last->next;
            last->next = s->head;
            if (s->head == NULL)
                s->tail = last;
            s->head = retry;
        }
        s->stats.n_syncs = st.n_syncs;
        s->stats.n_groups = st.n_groups;
        s->stats.max_group = st.max_group;
        s->stats.sync_us = st.sync_us;
        for (struct storage_item *it = list; it != NULL; it = it->next) {
            CC_ASSERT(s->n_ring < STORAGE_INFLIGHT_MAX);
            s->ring[(s->ring_head + s->n_ring) % STORAGE_INFLIGHT_MAX] = it->done;
            s->n_ring++;
            s->inflight_bytes -= it->n_bytes;
            s->stats.n_batches += it->kind == STORAGE_ITEM_BATCH;
        }
        pthread_cond_broadcast(&s->done_cv);
        pthread_mutex_unlock(&s->mu);
        if (s->o.wakeup_cb != NULL) {
            s->o.wakeup_cb(s->o.wakeup_arg);
        }
        while (list != NULL) {
            struct storage_item *next = list->next;
            storage__item_free(list);
            list = next;
        }
        pthread_mutex_lock(&s->mu);
        if (s->full && !s->stopping) {
            /* wait before the next attempt; new submissions queue behind the retried */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)STORAGE_FULL_RETRY_MS * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (!s->stopping &&
                   pthread_cond_timedwait(&s->work_cv, &s->mu, &until) != ETIMEDOUT) {
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- API -------------------------------------------------------------------------- */

int storage_start(struct wal *wal, const struct storage_options *o, struct storage **out)
{
    CC_ASSERT(wal != NULL);
    CC_ASSERT(out != NULL);
    struct storage *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return STORAGE_ENOMEM;
    }
    s->wal = wal;
    if (o != NULL) {
        s->o = *o;
    }
    int rv = STORAGE_ETHREAD;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        goto err_after_alloc;
    }
    if (pthread_cond_init(&s->work_cv, NULL) != 0) {
        goto err_after_mutex;
    }
    if (pthread_cond_init(&s->done_cv, NULL) != 0) {
        goto err_after_work_cv;
    }
    if (pthread_create(&s->thread, NULL, storage__main, s) != 0) {
        goto err_after_done_cv;
    }
    *out = s;
    return 0;

err_after_done_cv:
    pthread_cond_destroy(&s->done_cv);
err_after_work_cv:
    pthread_cond_destroy(&s->work_cv);
err_after_mutex:
    pthread_mutex_destroy(&s->mu);
err_after_alloc:
    free(s);
    return rv;
}

int storage_submit(struct storage *s, const struct wal_batch *b, uint64_t *seq_out)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(b != NULL);
    CC_ASSERT(b->entries != NULL || b->n_entries == 0);
    struct storage_item *it = NULL;
    int rv = storage__item_new(b, &it);
    if (rv != 0) {
        return rv;
    }
    rv = storage__enqueue(s, it, seq_out);
    if (rv != 0) {
        storage__item_free(it);
    }
    return rv;
}

int storage_compact(struct storage *s, uint64_t snapshot_index, uint64_t *seq_out)
{
    CC_ASSERT(s != NULL);
    struct storage_item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return STORAGE_ENOMEM;
    }
    it->kind = STORAGE_ITEM_COMPACT;
    it->compact_to = snapshot_index;
    const int rv = storage__enqueue(s, it, seq_out);
    if (rv != 0) {
        storage__item_free(it);
    }
    return rv;
}

int storage_write_inline(struct storage *s, const struct wal_batch *b, uint64_t *seq_out)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(b != NULL);
    CC_ASSERT(b->entries != NULL || b->n_entries == 0);
    pthread_mutex_lock(&s->mu);
    CC_ASSERT(!s->stopping && !s->inline_busy);
    if (!s->worker_idle || s->head != NULL || s->full || s->n_inflight == STORAGE_INFLIGHT_MAX) {
        pthread_mutex_unlock(&s->mu);
        return STORAGE_EBUSY;
    }
    s->inline_busy = true;
    struct storage_item it = {.kind = STORAGE_ITEM_BATCH, .b = *b, .seq = ++s->next_seq};
    s->n_inflight++;
    struct storage_stats st = s->stats;
    pthread_mutex_unlock(&s->mu);

    storage__process(s, &it, &st); /* no copy: b's memory outlives the call */
    const bool kick = wal_prepare_wanted(s->wal);
    /* Disk full (retry_enospc): the batch becomes the worker's, as if it had been queued;
     * b is still valid here, so it can be copied now. */
    struct storage_item *queued = NULL;
    int rv = 0;
    if (it.retry) {
        rv = storage__item_new(b, &queued);
        if (rv == 0)
            queued->seq = it.seq;
    }

    pthread_mutex_lock(&s->mu);
    s->inline_busy = false;
    s->stats.n_syncs = st.n_syncs;
    s->stats.n_groups = st.n_groups;
    s->stats.max_group = st.max_group;
    s->stats.sync_us = st.sync_us;
    if (queued) {
        s->inflight_bytes += queued->n_bytes;
        s->head = s->tail = queued; /* the queue was empty and only we submit */
        s->full = true;
    } else if (it.retry) {
        /* no memory to keep it: fail it like any write error (not durable, not fatal),
         * and so every later batch too, as the worker does after a failed one */
        s->failed = rv;
        it.done.status = rv;
        it.done.durable_index = wal_durable_index(s->wal);
        it.done.durable_term = wal_durable_term(s->wal);
    }
    if (!queued) {
        CC_ASSERT(s->n_ring < STORAGE_INFLIGHT_MAX);
        s->ring[(s->ring_head + s->n_ring) % STORAGE_INFLIGHT_MAX] = it.done;
        s->n_ring++;
        s->stats.n_batches++;
        pthread_cond_broadcast(&s->done_cv);
    }
    s->prepare_kick = s->prepare_kick || kick;
    if (s->head != NULL || kick)
        pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    if (seq_out != NULL)
        *seq_out = it.seq;
    return 0;
}

uint32_t storage_poll(struct storage *s, struct storage_completion *out, uint32_t cap)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(out != NULL || cap == 0);
    pthread_mutex_lock(&s->mu);
    uint32_t n = 0;
    while (n < cap && s->n_ring > 0) {
        out[n++] = s->ring[s->ring_head];
        s->ring_head = (s->ring_head + 1) % STORAGE_INFLIGHT_MAX;
        s->n_ring--;
        s->n_inflight--;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void storage_wait(struct storage *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->n_ring == 0) {
        pthread_cond_wait(&s->done_cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
}

bool storage_full(struct storage *s)
{
    pthread_mutex_lock(&s->mu);
    bool full = s->full;
    pthread_mutex_unlock(&s->mu);
    return full;
}

void storage_get_stats(struct storage *s, struct storage_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

void storage_stop(struct storage *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    const int rv = pthread_join(s->thread, NULL);
    CC_ASSERT(rv == 0);
    CC_ASSERT(s->head == NULL);
    pthread_cond_destroy(&s->done_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
