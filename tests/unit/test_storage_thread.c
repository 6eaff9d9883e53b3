/* test_storage_thread.c -- unit tests for storage/storage_thread (group commit).
 *
 * The headline test submits many small batches from one thread while each fdatasync
 * takes a couple of milliseconds (simfs behind an env whose sync sleeps), and checks
 * that far fewer syncs than batches ran, that completions come back in order with
 * monotonic durable indexes, and that everything is on disk afterwards. Others cover
 * the wakeup callback, backpressure, a failed fsync (fatal), a full disk (the batches
 * after it are refused), compaction through the thread, one write per drain, the spare
 * segment zero-filled while the worker is idle, a smoke run on env_posix, and
 * storage_write_inline (the follower's write on the loop thread): it interleaves with
 * queued batches in submission order, wakes the worker to prepare the spare, and hands
 * a batch that hit a full disk to the worker's retry.
 *
 * Sections: helpers | group commit | wakeup and backpressure | failures | posix | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/env.h"
#include "simfs.h"
#include "storage/storage_thread.h"
#include "storage/wal.h"
#include "storage_harness.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define DIR       "/data"
#define N_BATCHES 1000

/* An env that forwards to simfs but makes every fdatasync take SYNC_US. */
#define SYNC_US 2000

static struct env g_slow;
static int (*g_inner_sync)(struct env *, struct env_file *);
static atomic_uint g_n_syncs;

static int slow_sync(struct env *env, struct env_file *f)
{
    const struct timespec ts = {0, SYNC_US * 1000L};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&g_n_syncs, 1);
    return g_inner_sync(env, f);
}

static struct env *slow_env(struct simfs *fs)
{
    g_slow = *simfs_env(fs);
    g_inner_sync = g_slow.sync;
    g_slow.sync = slow_sync;
    atomic_store(&g_n_syncs, 0);
    return &g_slow;
}

static struct wal *open_wal(struct env *env, const char *dir, struct wal_recovered *rec)
{
    struct wal_options o;
    wal_options_default(&o);
    o.segment_bytes = 64 * 1024;
    struct wal *w = NULL;
    char msg[WAL_MSG_BYTES];
    const int rv = wal_open(env, dir, &o, &w, rec, msg, sizeof(msg));
    if (rv != 0) {
        fail_msg("wal_open: %s: %s", wal_strerror(rv), msg);
    }
    return w;
}

/* A fresh WAL on simfs(seed) whose disk has no room for another segment. */
static struct wal *open_full_disk(uint64_t seed, struct simfs **fs, struct simfs_faults *faults)
{
    SH_ASSERT_OK(simfs_new(seed, fs));
    struct wal_recovered rec;
    struct wal *w = open_wal(simfs_env(*fs), DIR, &rec);
    wal_recovered_free(&rec);
    memset(faults, 0, sizeof(*faults));
    faults->capacity_bytes = simfs_used_bytes(*fs) + 100;
    simfs_set_faults(*fs, faults);
    return w;
}

/* Submits one entry (index i, term 1) plus a hard state, retrying on backpressure. */
static uint64_t submit_one(struct storage *s, uint64_t i, struct storage_completion *done,
                           uint32_t *n_done)
{
    uint8_t buf[SH_ENTRY_BYTES_MAX];
    struct raft_entry e;
    sh_entry(&e, i, 1, buf);
    const struct wal_batch b = {.entries = &e,
                                .n_entries = 1,
                                .has_hard_state = true,
                                .hard_state = {1, 1, i > 1 ? i - 1 : 0}};
    uint64_t seq = 0;
    for (;;) {
        const int rv = storage_submit(s, &b, &seq);
        if (rv == 0) {
            return seq;
        }
        assert_int_equal(rv, STORAGE_EFULL);
        storage_wait(s);
        *n_done += storage_poll(s, done + *n_done, N_BATCHES - *n_done);
    }
}

static void collect(struct storage *s, struct storage_completion *done, uint32_t *n_done,
                    uint32_t want)
{
    while (*n_done < want) {
        storage_wait(s);
        *n_done += storage_poll(s, done + *n_done, want - *n_done);
    }
}

/* ---- group commit ----------------------------------------------------------------- */

static void test_group_commit(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(1, &fs));
    struct env *env = slow_env(fs);
    struct wal_recovered rec;
    struct wal *w = open_wal(env, DIR, &rec);
    wal_recovered_free(&rec);
    const unsigned syncs_before = atomic_load(&g_n_syncs);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static struct storage_completion done[N_BATCHES];
    uint32_t n_done = 0;
    for (uint64_t i = 1; i <= N_BATCHES; i++) {
        const uint64_t seq = submit_one(s, i, done, &n_done);
        assert_int_equal(seq, i);
        if (i % 20 == 0) { /* the loop has other work too: let groups form mid-stream */
            const struct timespec pause = {0, 500 * 1000L};
            nanosleep(&pause, NULL);
        }
    }
    collect(s, done, &n_done, N_BATCHES);
    uint64_t prev = 0;
    for (uint32_t k = 0; k < N_BATCHES; k++) {
        assert_int_equal(done[k].seq, k + 1);
        assert_int_equal(done[k].status, 0);
        assert_false(done[k].fatal);
        assert_true(done[k].durable_index >= k + 1); /* its own entry is durable */
        assert_true(done[k].durable_index >= prev);
        assert_int_equal(done[k].durable_term, 1);
        prev = done[k].durable_index;
    }
    assert_int_equal(prev, N_BATCHES);
    struct storage_stats st;
    storage_get_stats(s, &st);
    storage_stop(s);
    const unsigned syncs = atomic_load(&g_n_syncs) - syncs_before;
    print_message("      %u batches, %llu group syncs (%u fdatasyncs incl. segment rolls), "
                  "largest group %llu\n",
                  N_BATCHES, (unsigned long long)st.n_syncs, syncs,
                  (unsigned long long)st.max_group);
    assert_int_equal(st.n_batches, N_BATCHES);
    assert_true(st.n_syncs * 10 <= N_BATCHES); /* far fewer syncs than batches */
    assert_true(syncs * 5 <= N_BATCHES);
    assert_true(st.max_group >= 20);
    wal_close(w);
    /* everything acknowledged is on disk, even after a power cut */
    simfs_crash(fs);
    w = open_wal(simfs_env(fs), DIR, &rec);
    assert_int_equal(rec.last_index, N_BATCHES);
    for (uint64_t k = 0; k < rec.n_entries; k++) {
        assert_true(sh_entry_ok(&rec.entries[k], k + 1, 1));
    }
    assert_int_equal(rec.hard_state.commit, N_BATCHES - 1);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- wakeup and backpressure ------------------------------------------------------ */

static atomic_uint g_wakeups;

static void on_wakeup(void *arg) /* runs on the worker: no cmocka asserts here */
{
    atomic_fetch_add((atomic_uint *)arg, 1);
}

static void test_wakeup_and_backpressure(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(2, &fs));
    struct env *env = slow_env(fs);
    struct wal_recovered rec;
    struct wal *w = open_wal(env, DIR, &rec);
    wal_recovered_free(&rec);
    atomic_store(&g_wakeups, 0);
    const struct storage_options o = {.wakeup_arg = &g_wakeups, .wakeup_cb = on_wakeup};
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, &o, &s));
    /* never poll: the in-flight bound must push back */
    uint32_t n_ok = 0;
    int rv = 0;
    for (uint64_t i = 1; i <= STORAGE_INFLIGHT_MAX + 10 && rv == 0; i++) {
        uint8_t buf[SH_ENTRY_BYTES_MAX];
        struct raft_entry e;
        sh_entry(&e, i, 1, buf);
        const struct wal_batch b = {.entries = &e, .n_entries = 1};
        rv = storage_submit(s, &b, NULL);
        n_ok += rv == 0;
    }
    assert_int_equal(rv, STORAGE_EFULL);
    assert_int_equal(n_ok, STORAGE_INFLIGHT_MAX);
    static struct storage_completion done[STORAGE_INFLIGHT_MAX];
    uint32_t n_done = 0;
    while (n_done < n_ok) {
        storage_wait(s);
        n_done += storage_poll(s, done + n_done, STORAGE_INFLIGHT_MAX - n_done);
    }
    assert_true(atomic_load(&g_wakeups) > 0);
    assert_int_equal(done[n_ok - 1].durable_index, n_ok);
    /* room again */
    uint8_t buf[SH_ENTRY_BYTES_MAX];
    struct raft_entry e;
    sh_entry(&e, n_ok + 1, 1, buf);
    const struct wal_batch b = {.entries = &e, .n_entries = 1};
    SH_ASSERT_OK(storage_submit(s, &b, NULL));
    storage_stop(s); /* finishes the queued batch */
    assert_int_equal(wal_durable_index(w), n_ok + 1);
    wal_close(w);
    simfs_free(fs);
}

/* ---- failures --------------------------------------------------------------------- */

static void test_fsync_failure_is_fatal(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(3, &fs));
    struct wal_recovered rec;
    struct wal *w = open_wal(simfs_env(fs), DIR, &rec);
    wal_recovered_free(&rec);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    struct storage_completion done[8];
    uint32_t n_done = 0;
    submit_one(s, 1, done, &n_done);
    collect(s, done, &n_done, 1);
    assert_int_equal(done[0].status, 0);
    simfs_fail_next_syncs(fs, 1);
    submit_one(s, 2, done, &n_done);
    collect(s, done, &n_done, 2);
    assert_int_equal(done[1].status, WAL_ESYNC);
    assert_true(done[1].fatal);
    assert_int_equal(done[1].durable_index, 1); /* only what the good sync covered */
    submit_one(s, 3, done, &n_done);
    collect(s, done, &n_done, 3);
    assert_int_equal(done[2].status, WAL_EFAILED);
    assert_true(done[2].fatal);
    storage_stop(s);
    wal_close(w);
    simfs_free(fs);
}

static void test_enospc_stops_later_batches(void **state)
{
    struct simfs *fs;
    struct simfs_faults faults;
    struct wal *w = open_full_disk(4, &fs, &faults);
    struct wal_recovered rec;
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static uint8_t big[70000]; /* past the preallocated 64 KiB segment */
    const struct raft_entry e = {
        .term = 1, .index = 1, .type = 1, .n_bytes = sizeof(big), .bytes = big};
    const struct wal_batch b = {.entries = &e, .n_entries = 1};
    SH_ASSERT_OK(storage_submit(s, &b, NULL));
    struct storage_completion done[4];
    uint32_t n_done = 0;
    collect(s, done, &n_done, 1);
    assert_int_equal(done[0].status, WAL_ENOSPC);
    assert_false(done[0].fatal);
    submit_one(s, 1, done, &n_done);
    collect(s, done, &n_done, 2);
    assert_int_equal(done[1].status, STORAGE_ESTOPPED);
    assert_false(done[1].fatal);
    assert_int_equal(done[1].durable_index, 0);
    storage_stop(s);
    wal_close(w);
    /* the node restarts its core from disk: a clean, empty log */
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    w = open_wal(simfs_env(fs), DIR, &rec);
    assert_int_equal(rec.n_entries, 0);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* With retry_enospc the failed batch and everything after it wait, in order, and all
 * become durable once there is room: nothing lost, nothing reordered. */
static void test_enospc_retry_keeps_order(void **state)
{
    struct simfs *fs;
    struct simfs_faults faults;
    struct wal *w = open_full_disk(5, &fs, &faults);
    struct wal_recovered rec;
    struct storage *s;
    const struct storage_options o = {.retry_enospc = true};
    SH_ASSERT_OK(storage_start(w, &o, &s));
    static uint8_t big[70000]; /* past the preallocated 64 KiB segment */
    const struct raft_entry e = {
        .term = 1, .index = 1, .type = 1, .n_bytes = sizeof(big), .bytes = big};
    const struct wal_batch b = {.entries = &e, .n_entries = 1};
    SH_ASSERT_OK(storage_submit(s, &b, NULL));
    struct storage_completion done[4];
    uint32_t n_done = 0;
    submit_one(s, 2, done, &n_done);
    for (int i = 0; i < 200 && !storage_full(s); i++)
        sleep_us(1000);
    assert_true(storage_full(s));
    sleep_us(20000);
    assert_int_equal(storage_poll(s, done, 4), 0); /* nothing completes while full */
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    collect(s, done, &n_done, 2);
    assert_int_equal(done[0].status, 0);
    assert_int_equal(done[1].status, 0);
    assert_int_equal(done[1].durable_index, 2);
    assert_false(storage_full(s));
    storage_stop(s);
    wal_close(w);
    w = open_wal(simfs_env(fs), DIR, &rec);
    assert_int_equal(rec.n_entries, 2);
    assert_int_equal(rec.entries[0].n_bytes, sizeof(big));
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

static void test_compact_through_thread(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(5, &fs));
    struct wal_recovered rec;
    struct wal_options o;
    wal_options_default(&o);
    o.segment_bytes = 1024;
    struct wal *w;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    wal_recovered_free(&rec);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static struct storage_completion done[N_BATCHES];
    uint32_t n_done = 0;
    for (uint64_t i = 1; i <= 200; i++) {
        submit_one(s, i, done, &n_done);
    }
    uint64_t seq;
    SH_ASSERT_OK(storage_compact(s, 150, &seq));
    collect(s, done, &n_done, 201);
    assert_int_equal(done[200].seq, seq);
    assert_int_equal(done[200].status, 0);
    storage_stop(s);
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_true(st.n_segments_deleted > 0);
    wal_close(w);
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    assert_true(rec.first_index > 1 && rec.first_index <= 151);
    assert_int_equal(rec.last_index, 200);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- one write per drain, spares while idle --------------------------------------- */

static void test_one_write_per_drain(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(6, &fs));
    struct env *env = slow_env(fs); /* 2 ms syncs: groups form */
    struct wal_recovered rec;
    struct wal *w = open_wal(env, DIR, &rec); /* 64 KiB segments: no roll below */
    wal_recovered_free(&rec);
    struct wal_stats before;
    wal_get_stats(w, &before);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static struct storage_completion done[N_BATCHES];
    uint32_t n_done = 0;
    const uint32_t n = 400;
    for (uint64_t i = 1; i <= n; i++) {
        submit_one(s, i, done, &n_done);
        if (i % 50 == 0) { /* let several drains happen */
            const struct timespec pause = {0, 3000 * 1000L};
            nanosleep(&pause, NULL);
        }
    }
    collect(s, done, &n_done, n);
    struct storage_stats st;
    storage_get_stats(s, &st);
    storage_stop(s);
    struct wal_stats after;
    wal_get_stats(w, &after);
    assert_int_equal(after.n_segments_created, before.n_segments_created);
    print_message("      %u batches: %llu drains, %llu writes, %llu syncs\n", n,
                  (unsigned long long)st.n_groups,
                  (unsigned long long)(after.n_writes - before.n_writes),
                  (unsigned long long)(after.n_syncs - before.n_syncs));
    assert_true(st.max_group > 1);
    assert_true(st.n_groups > 1);
    assert_int_equal(after.n_writes - before.n_writes, st.n_groups); /* ONE write each */
    assert_int_equal(after.n_syncs - before.n_syncs, st.n_groups);
    wal_close(w);
    simfs_crash(fs);
    w = open_wal(simfs_env(fs), DIR, &rec);
    assert_int_equal(rec.last_index, n);
    assert_int_equal(rec.torn_bytes_dropped, 0);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* Past half a segment, the idle worker zero-fills the spare in steps; the next roll
 * uses it; everything recovers. */
static void test_spare_while_idle(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(7, &fs));
    struct wal_recovered rec;
    struct wal_options o;
    wal_options_default(&o);
    o.segment_bytes = 4 * WAL_PREPARE_STEP_BYTES; /* a few steps per spare */
    struct wal *w;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    wal_recovered_free(&rec);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    /* big entries: 64 KiB each, so half a segment is 32 batches */
    static uint8_t big[64 << 10];
    memset(big, 0x77, sizeof(big));
    static struct storage_completion done[N_BATCHES];
    uint32_t n_done = 0;
    uint64_t index = 0;
    const uint64_t half = o.segment_bytes / 2 / sizeof(big) + 1;
    for (uint64_t k = 0; k < half; k++) {
        struct raft_entry e = {.term = 1, .index = ++index, .type = RAFT_ENTRY_COMMAND,
                               .n_bytes = sizeof(big), .bytes = big};
        const struct wal_batch b = {.entries = &e, .n_entries = 1};
        SH_ASSERT_OK(storage_submit(s, &b, NULL));
        collect(s, done, &n_done, n_done + 1);
    }
    /* idle now: the spare fills up (bounded wait) */
    struct storage_stats st;
    for (int k = 0; k < 5000; k++) {
        storage_get_stats(s, &st);
        if (st.n_spare_bytes >= 2 * o.segment_bytes) {
            break;
        }
        const struct timespec ms = {0, 1000 * 1000L};
        nanosleep(&ms, NULL);
    }
    assert_int_equal(st.n_spare_bytes, 2 * o.segment_bytes); /* first segment + spare */
    assert_true(st.n_prepare_steps >= 3);
    assert_int_equal(st.n_prepare_failures, 0);
    /* write through the roll */
    for (uint64_t k = 0; k < half + 4; k++) {
        struct raft_entry e = {.term = 1, .index = ++index, .type = RAFT_ENTRY_COMMAND,
                               .n_bytes = sizeof(big), .bytes = big};
        const struct wal_batch b = {.entries = &e, .n_entries = 1};
        SH_ASSERT_OK(storage_submit(s, &b, NULL));
        collect(s, done, &n_done, n_done + 1);
        assert_int_equal(done[n_done - 1].status, 0);
        assert_int_equal(done[n_done - 1].durable_index, index);
    }
    storage_stop(s);
    struct wal_stats ws;
    wal_get_stats(w, &ws);
    assert_int_equal(ws.n_segments_created, 2);
    assert_int_equal(ws.n_segments_zeroed, 2);
    wal_close(w);
    simfs_crash(fs);
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    assert_int_equal(rec.last_index, index);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- inline writes ---------------------------------------------------------------- */

/* storage_write_inline of one entry (index i, term 1), waiting (bounded) for the worker
 * to park; returns its seq. */
static uint64_t inline_one(struct storage *s, uint64_t i, const uint8_t *bytes, uint32_t n)
{
    const struct raft_entry e = {
        .term = 1, .index = i, .type = RAFT_ENTRY_COMMAND, .n_bytes = n, .bytes = (uint8_t *)bytes};
    const struct wal_batch b = {.entries = &e, .n_entries = 1};
    uint64_t seq = 0;
    for (int k = 0; k < 5000; k++) {
        const int rv = storage_write_inline(s, &b, &seq);
        if (rv == 0)
            return seq;
        assert_int_equal(rv, STORAGE_EBUSY);
        sleep_us(1000);
    }
    fail_msg("the worker never parked");
    return 0;
}

static void test_inline_keeps_submission_order(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(11, &fs));
    struct wal_recovered rec;
    struct wal *w = open_wal(slow_env(fs), DIR, &rec);
    wal_recovered_free(&rec);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static struct storage_completion done[N_BATCHES];
    uint32_t n_done = 0, n_busy = 0, n_inline = 0;
    uint64_t index = 0;
    const uint8_t payload[8] = "inline!";
    /* inline while idle: the completion is in the ring on return, durable */
    uint64_t seq = inline_one(s, ++index, payload, sizeof(payload));
    assert_int_equal(storage_poll(s, done, 1), 1);
    assert_int_equal(done[0].seq, seq);
    assert_int_equal(done[0].status, 0);
    assert_int_equal(done[0].durable_index, index);
    n_done = 1;
    /* a queued batch (each sync takes SYNC_US) then an inline attempt right behind it:
     * refused while the worker has it, and whenever accepted, still in order */
    for (int k = 0; k < 50; k++) {
        submit_one(s, ++index, done, &n_done);
        uint8_t buf[SH_ENTRY_BYTES_MAX];
        struct raft_entry e;
        sh_entry(&e, index + 1, 1, buf);
        const struct wal_batch b = {.entries = &e, .n_entries = 1};
        const int rv = storage_write_inline(s, &b, NULL);
        if (rv == 0) {
            index++;
            n_inline++;
        } else {
            assert_int_equal(rv, STORAGE_EBUSY);
            n_busy++;
        }
        collect(s, done, &n_done, n_done + 1 + (rv == 0));
        /* and once the worker parked again, inline behind the queued one */
        inline_one(s, ++index, payload, sizeof(payload));
        n_inline++;
        collect(s, done, &n_done, n_done + 1);
    }
    assert_true(n_busy > 0); /* a 2 ms sync is far longer than submit-to-inline */
    for (uint32_t i = 0; i < n_done; i++) {
        assert_int_equal(done[i].status, 0);
        if (i > 0) {
            assert_true(done[i].seq == done[i - 1].seq + 1);
            assert_true(done[i].durable_index >= done[i - 1].durable_index);
        }
    }
    assert_int_equal(done[n_done - 1].durable_index, index);
    struct storage_stats st;
    storage_get_stats(s, &st);
    assert_int_equal(st.n_batches, n_done);
    storage_stop(s);
    wal_close(w);
    simfs_crash(fs);
    w = open_wal(simfs_env(fs), DIR, &rec);
    assert_int_equal(rec.last_index, index);
    assert_int_equal(rec.n_entries, index);
    assert_memory_equal(rec.entries[0].bytes, payload, sizeof(payload));
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
    print_message("inline: %u accepted, %u refused while the worker was busy\n", n_inline,
                  n_busy);
}

/* Only inline writes: the worker must still be woken to zero-fill the spare once the
 * segment is half full, and the roll must use it. */
static void test_inline_wakes_worker_for_spare(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(13, &fs));
    struct wal_recovered rec;
    struct wal_options o;
    wal_options_default(&o);
    o.segment_bytes = 4 * WAL_PREPARE_STEP_BYTES;
    struct wal *w;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    wal_recovered_free(&rec);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static uint8_t big[64 << 10];
    memset(big, 0x55, sizeof(big));
    static struct storage_completion done[N_BATCHES];
    uint64_t index = 0;
    const uint64_t half = o.segment_bytes / 2 / sizeof(big) + 1;
    for (uint64_t k = 0; k < half; k++) {
        inline_one(s, ++index, big, sizeof(big));
        assert_int_equal(storage_poll(s, done, 1), 1);
    }
    struct storage_stats st;
    for (int k = 0; k < 5000; k++) {
        storage_get_stats(s, &st);
        if (st.n_spare_bytes >= 2 * o.segment_bytes)
            break;
        sleep_us(1000);
    }
    assert_int_equal(st.n_spare_bytes, 2 * o.segment_bytes);
    for (uint64_t k = 0; k < half + 4; k++) {
        inline_one(s, ++index, big, sizeof(big));
        assert_int_equal(storage_poll(s, done, 1), 1);
        assert_int_equal(done[0].status, 0);
        assert_int_equal(done[0].durable_index, index);
    }
    storage_stop(s);
    struct wal_stats ws;
    wal_get_stats(w, &ws);
    assert_int_equal(ws.n_segments_created, 2);
    assert_int_equal(ws.n_segments_zeroed, 2);
    wal_close(w);
    simfs_crash(fs);
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    assert_int_equal(rec.last_index, index);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* An inline write that finds the disk full becomes the worker's retried batch: nothing
 * completes while full, later batches queue behind it, and all land in order. */
static void test_inline_enospc_goes_to_worker(void **state)
{
    struct simfs *fs;
    struct simfs_faults faults;
    struct wal *w = open_full_disk(17, &fs, &faults);
    struct wal_recovered rec;
    struct storage *s;
    const struct storage_options o = {.retry_enospc = true};
    SH_ASSERT_OK(storage_start(w, &o, &s));
    static uint8_t big[70000]; /* past the preallocated 64 KiB segment */
    memset(big, 0x33, sizeof(big));
    inline_one(s, 1, big, sizeof(big));
    assert_true(storage_full(s));
    struct storage_completion done[4];
    assert_int_equal(storage_poll(s, done, 4), 0);
    uint8_t buf[SH_ENTRY_BYTES_MAX];
    struct raft_entry e;
    sh_entry(&e, 2, 1, buf);
    const struct wal_batch b = {.entries = &e, .n_entries = 1};
    assert_int_equal(storage_write_inline(s, &b, NULL), STORAGE_EBUSY); /* full: queue */
    uint32_t n_done = 0;
    submit_one(s, 2, done, &n_done);
    sleep_us(20000);
    assert_int_equal(storage_poll(s, done, 4), 0);
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    collect(s, done, &n_done, 2);
    assert_int_equal(done[0].status, 0);
    assert_true(done[0].durable_index >= 1);
    assert_int_equal(done[1].status, 0);
    assert_int_equal(done[1].seq, done[0].seq + 1);
    assert_int_equal(done[1].durable_index, 2);
    storage_stop(s);
    wal_close(w);
    w = open_wal(simfs_env(fs), DIR, &rec);
    assert_int_equal(rec.n_entries, 2);
    assert_int_equal(rec.entries[0].n_bytes, sizeof(big));
    assert_int_equal(rec.entries[0].bytes[0], 0x33);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- posix ------------------------------------------------------------------------ */

static void test_posix_group_commit(void **state)
{
    char tmpl[] = "/tmp/conclave-test-storage-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    struct wal_recovered rec;
    struct wal *w = open_wal(env_posix(), dir, &rec);
    wal_recovered_free(&rec);
    struct storage *s;
    SH_ASSERT_OK(storage_start(w, NULL, &s));
    static struct storage_completion done[N_BATCHES];
    uint32_t n_done = 0;
    const uint32_t n = 300;
    for (uint64_t i = 1; i <= n; i++) {
        submit_one(s, i, done, &n_done);
    }
    collect(s, done, &n_done, n);
    assert_int_equal(done[n - 1].durable_index, n);
    struct storage_stats st;
    storage_get_stats(s, &st);
    storage_stop(s);
    print_message("      posix: %u batches, %llu syncs\n", n, (unsigned long long)st.n_syncs);
    assert_true(st.n_syncs <= n);
    wal_close(w);
    w = open_wal(env_posix(), dir, &rec);
    assert_int_equal(rec.last_index, n);
    wal_recovered_free(&rec);
    wal_close(w);
    char path[ENV_PATH_MAX];
    SH_ASSERT_OK(env_path_join(path, sizeof(path), dir, "wal-0000000000000001.log"));
    assert_int_equal(env_posix()->unlink(env_posix(), path), 0);
    SH_ASSERT_OK(env_path_join(path, sizeof(path), dir, WAL_SPARE_NAME));
    (void)env_posix()->unlink(env_posix(), path); /* if the idle worker began one */
    assert_int_equal(rmdir(dir), 0);
}

/* ---- main ------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_wakeup_and_backpressure),
        cmocka_unit_test(test_fsync_failure_is_fatal),
        cmocka_unit_test(test_enospc_stops_later_batches),
        cmocka_unit_test(test_enospc_retry_keeps_order),
        cmocka_unit_test(test_compact_through_thread),
        cmocka_unit_test(test_one_write_per_drain),
        cmocka_unit_test(test_spare_while_idle),
        cmocka_unit_test(test_inline_keeps_submission_order),
        cmocka_unit_test(test_inline_wakes_worker_for_spare),
        cmocka_unit_test(test_inline_enospc_goes_to_worker),
        cmocka_unit_test(test_posix_group_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
