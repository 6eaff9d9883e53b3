/* test_wal.c -- unit tests for storage/wal: the codec, round trips, truncation, hard
 * state, segment rolling, compaction, crashes, torn tails at every byte offset, every
 * flipped bit of every record, fsync errors and a full disk; zero-filled spare segments
 * (prepared, used, a power cut at every IO call while they are made and used, a stale
 * spare never read as log) and group writes (one write, sealed; partial failures).
 *
 * Everything runs on sim/simfs (in memory, seeded) except one smoke test on env_posix in
 * a mkdtemp directory under /tmp. The ground truth is a model of the log
 * (storage_harness.h); entries' bytes follow from (index, term), so a recovered entry is
 * checked byte for byte without storing it.
 *
 * The rule every fault test checks: recovery returns exactly a prefix of what was written
 * that holds every acknowledged (wal_sync'ed) entry, or refuses with WAL_ECORRUPT; never
 * a wrong log.
 *
 * Sections: helpers | codec | basics | segments and compaction | crashes | torn tails |
 * bit flips | disk errors | spare segments | group writes | posix smoke | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/env.h"
#include "base/prng.h"
#include "simfs.h"
#include "storage/wal.h"
#include "storage_harness.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define DIR            "/data"
#define SMALL_SEGMENTS 1024 /* bytes: rolls every ~20 entries */

static uint64_t g_segment_bytes = SMALL_SEGMENTS; /* a test may raise it; main resets */

static struct wal_options opts_small(void)
{
    struct wal_options o;
    wal_options_default(&o);
    o.segment_bytes = g_segment_bytes;
    return o;
}

static struct wal *open_ok(struct simfs *fs, struct wal_recovered *rec)
{
    const struct wal_options o = opts_small();
    struct wal *w = NULL;
    char msg[WAL_MSG_BYTES];
    const int rv = wal_open(simfs_env(fs), DIR, &o, &w, rec, msg, sizeof(msg));
    if (rv != 0) {
        fail_msg("wal_open: %s: %s", wal_strerror(rv), msg);
    }
    return w;
}

/* Reopens and checks the result equals the model exactly. */
static void reopen_same(struct simfs *fs, const struct sh_model *m)
{
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    SH_ASSERT_SAME(&rec, m);
    wal_recovered_free(&rec);
    wal_close(w);
}

static void set_hs(struct wal *w, struct sh_model *m, uint64_t term, uint32_t vote, uint64_t commit)
{
    const struct raft_hard_state hs = {term, vote, commit};
    SH_ASSERT_OK(wal_set_hard_state(w, &hs));
    m->hs = hs;
    m->has_hs = true;
}

/* Path and used bytes of the last segment. */
static void last_segment(struct simfs *fs, char *path, uint64_t *used)
{
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    assert_int_equal(rep.status, 0);
    assert_true(rep.n_segments > 0);
    SH_ASSERT_OK(env_path_join(path, ENV_PATH_MAX, DIR, rep.segments[rep.n_segments - 1].name));
    *used = rep.segments[rep.n_segments - 1].used_bytes;
    wal_report_free(&rep);
}

static struct wal_stats stats_of(const struct wal *w)
{
    struct wal_stats st;
    wal_get_stats(w, &st);
    return st;
}

/* Runs wal_prepare in steps of `step` bytes until it has nothing more to do. */
static void prepare_all(struct wal *w, uint64_t step)
{
    bool more = true;
    for (int k = 0; k < 1000 && more; k++) {
        SH_ASSERT_OK(wal_prepare(w, step, &more));
    }
    assert_false(more);
}

/* A synced log of n entries (terms rising every 7) with hard states, in small segments. */
static struct wal *build_log(struct simfs *fs, struct sh_model *m, uint64_t n)
{
    sh_model_init(m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    for (uint64_t i = 1; i <= n; i++) {
        SH_ASSERT_OK(sh_append(w, m, 1 + i / 7));
        prepare_all(w, 256); /* later segments come from zero-filled spares */
        if (i % 5 == 0) {
            set_hs(w, m, 1 + i / 7, (uint32_t)(i % 3), i - 2);
            SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        }
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    return w;
}

/* ---- codec ------------------------------------------------------------------------ */

static void test_codec_round_trip(void **state)
{
    uint8_t payload[5] = {1, 2, 3, 4, 5};
    struct wal_record recs[5];
    memset(recs, 0, sizeof(recs));
    recs[0].type = WAL_REC_ENTRY;
    recs[0].entry.term = 3;
    recs[0].entry.index = 9;
    recs[0].entry.type = RAFT_ENTRY_COMMAND;
    recs[0].entry.n_bytes = sizeof(payload);
    recs[0].entry.bytes = payload;
    recs[1].type = WAL_REC_HARD_STATE;
    recs[1].hard_state = (struct raft_hard_state){7, 2, 5};
    recs[2].type = WAL_REC_TRUNCATE;
    recs[2].truncate.from_index = 4;
    recs[3].type = WAL_REC_SNAPSHOT;
    recs[3].snapshot.index = 100;
    recs[3].snapshot.term = 6;
    recs[4].type = WAL_REC_SEAL;
    recs[4].seal.last_index = 12;
    recs[4].seal.last_term = 3;
    for (int i = 0; i < 5; i++) {
        uint8_t buf[128];
        size_t n = 0;
        SH_ASSERT_OK(wal_encode_record(&recs[i], buf, sizeof(buf), &n));
        assert_int_equal(n, wal_record_size(&recs[i]));
        struct wal_record out;
        size_t used = 0;
        SH_ASSERT_OK(wal_decode_record(buf, n, &out, &used));
        assert_int_equal(used, n);
        assert_int_equal(out.type, recs[i].type);
        uint8_t again[128];
        size_t n2 = 0;
        SH_ASSERT_OK(wal_encode_record(&out, again, sizeof(again), &n2));
        assert_int_equal(n2, n);
        assert_memory_equal(again, buf, n);
        /* every strict prefix is short, never accepted */
        for (size_t cut = 0; cut < n; cut++) {
            assert_int_equal(wal_decode_record(buf, cut, &out, &used), WAL_ESHORT);
        }
    }
    uint8_t zeros[64] = {0};
    struct wal_record out;
    size_t used;
    assert_int_equal(wal_decode_record(zeros, sizeof(zeros), &out, &used), WAL_ECORRUPT);
    /* a record with index 0 is refused by the encoder */
    recs[0].entry.index = 0;
    uint8_t buf[128];
    size_t n;
    assert_int_equal(wal_encode_record(&recs[0], buf, sizeof(buf), &n), WAL_EINVAL);

    struct wal_segment_header h = {WAL_FORMAT_VERSION, 5, 77, 3};
    uint8_t hb[WAL_HEADER_BYTES];
    wal_encode_segment_header(&h, hb);
    struct wal_segment_header h2;
    SH_ASSERT_OK(wal_decode_segment_header(hb, sizeof(hb), &h2));
    assert_int_equal(h2.seq, 5);
    assert_int_equal(h2.first_index, 77);
    assert_int_equal(h2.prev_term, 3);
    hb[20] ^= 1;
    assert_int_equal(wal_decode_segment_header(hb, sizeof(hb), &h2), WAL_ECORRUPT);

    uint64_t seq;
    assert_true(wal_parse_segment_name("wal-00000000000000ff.log", &seq));
    assert_int_equal(seq, 255);
    assert_false(wal_parse_segment_name("wal-00000000000000FF.log", &seq));
    assert_false(wal_parse_segment_name("wal-0000000000000000.log", &seq));
    assert_false(wal_parse_segment_name("wal-00000000000000ff.log.tmp", &seq));
}

/* ---- basics ----------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(1, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    assert_int_equal(rec.n_entries, 0);
    assert_false(rec.has_hard_state);
    wal_recovered_free(&rec);

    for (int b = 0; b < 10; b++) {
        struct raft_entry es[10];
        uint8_t bufs[10][SH_ENTRY_BYTES_MAX];
        for (int i = 0; i < 10; i++) {
            sh_entry(&es[i], sh_model_last(&m) + 1 + (uint64_t)i, 2, bufs[i]);
        }
        SH_ASSERT_OK(wal_append(w, es, 10));
        for (int i = 0; i < 10; i++) {
            sh_model_append(&m, 2);
        }
        set_hs(w, &m, 2, 1, (uint64_t)b * 10);
        uint64_t di = 0, dt = 0;
        SH_ASSERT_OK(wal_sync(w, &di, &dt));
        assert_int_equal(di, sh_model_last(&m));
        assert_int_equal(dt, 2);
    }
    assert_int_equal(wal_last_index(w), 100);
    assert_int_equal(wal_term_at(w, 50), 2);
    wal_close(w);
    reopen_same(fs, &m);
    reopen_same(fs, &m); /* recovery is idempotent */
    simfs_free(fs);
}

static void test_truncate_then_append(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(2, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 50);
    /* a follower's conflict: truncation and new entries in one batch, synced */
    uint8_t bufs[10][SH_ENTRY_BYTES_MAX];
    struct raft_entry es[10];
    for (int i = 0; i < 10; i++) {
        sh_entry(&es[i], 31 + (uint64_t)i, 9, bufs[i]);
    }
    const struct wal_batch b = {.truncate_from = 31, .entries = es, .n_entries = 10};
    SH_ASSERT_OK(wal_write(w, &b));
    sh_model_truncate(&m, 31);
    for (int i = 0; i < 10; i++) {
        sh_model_append(&m, 9);
    }
    assert_int_equal(wal_last_index(w), 40);
    assert_int_equal(wal_term_at(w, 30), 1 + 30 / 7);
    assert_int_equal(wal_term_at(w, 31), 9);
    uint64_t di, dt;
    SH_ASSERT_OK(wal_sync(w, &di, &dt));
    assert_int_equal(di, 40);
    assert_int_equal(dt, 9);
    /* a truncation past the end changes nothing; entries must follow the log */
    SH_ASSERT_OK(wal_truncate(w, 1000));
    es[0].index = 45;
    assert_int_equal(wal_append(w, es, 1), WAL_EINVAL);
    sh_entry(&es[0], 41, 8, bufs[0]); /* lower term than the last entry */
    assert_int_equal(wal_append(w, es, 1), WAL_EINVAL);
    /* truncate everything, start again */
    SH_ASSERT_OK(wal_truncate(w, 1));
    sh_model_truncate(&m, 1);
    SH_ASSERT_OK(sh_append(w, &m, 10));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    reopen_same(fs, &m);
    simfs_free(fs);
}

static void test_hard_state(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(3, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    for (uint64_t t = 1; t <= 30; t++) {
        set_hs(w, &m, t, (uint32_t)(t % 4), 0);
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    reopen_same(fs, &m);
    simfs_free(fs);
}

static void test_snapshot_marker(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(4, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 10);
    /* a snapshot from the leader, far ahead of our log */
    const struct wal_batch b = {.snapshot_index = 100, .snapshot_term = 5, .truncate_from = 101};
    SH_ASSERT_OK(wal_write(w, &b));
    assert_int_equal(wal_last_index(w), 100);
    assert_int_equal(wal_last_term(w), 5);
    m.first = 101;
    m.n = 0;
    SH_ASSERT_OK(sh_append(w, &m, 5));
    SH_ASSERT_OK(sh_append(w, &m, 6));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    struct wal_recovered rec;
    w = open_ok(fs, &rec);
    SH_ASSERT_SAME(&rec, &m);
    assert_int_equal(rec.first_index, 101);
    assert_int_equal(rec.prev_term, 5);
    assert_int_equal(rec.snapshot_index, 100);
    assert_int_equal(rec.snapshot_term, 5);
    assert_int_equal(rec.last_index, 102);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- segments and compaction ------------------------------------------------------ */

/* Found by the simulator: a follower's log ends a segment at B (term 1); the leader
 * sends a snapshot at B whose term is 2 (entry B was never committed here), so the
 * node records the snapshot, truncates after it and compacts the old segment. The
 * next segment's header still says "entry B has term 1": recovery must take the
 * snapshot's term for B, not refuse the log as corrupt (the seal says B/2). */
static void test_snapshot_at_segment_base_with_new_term(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(41, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    set_hs(w, &m, 1, 1, 0);
    uint64_t base = 0; /* last index of the first segment */
    for (int i = 0; i < 200 && base == 0; i++) {
        const uint32_t before = stats_of(w).n_segments;
        SH_ASSERT_OK(sh_append(w, &m, 1));
        SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        if (stats_of(w).n_segments > before && sh_model_last(&m) > 1) {
            base = sh_model_last(&m) - 1;
        }
    }
    assert_true(base > 0);
    SH_ASSERT_OK(sh_append(w, &m, 1)); /* one more in the new segment */
    SH_ASSERT_OK(wal_set_snapshot(w, base, 2));
    SH_ASSERT_OK(wal_truncate(w, base + 1));
    const struct raft_hard_state hs = {2, 3, base};
    SH_ASSERT_OK(wal_set_hard_state(w, &hs));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    uint32_t n_deleted = 0;
    SH_ASSERT_OK(wal_compact(w, base, &n_deleted));
    assert_true(n_deleted >= 1);
    wal_close(w);

    struct wal *w2 = NULL;
    const struct wal_options o = opts_small();
    char msg[WAL_MSG_BYTES];
    const int rv = wal_open(simfs_env(fs), DIR, &o, &w2, &rec, msg, sizeof(msg));
    if (rv != 0) {
        fail_msg("wal_open: %s: %s", wal_strerror(rv), msg);
    }
    assert_int_equal(rec.snapshot_index, base);
    assert_int_equal(rec.snapshot_term, 2);
    assert_int_equal(rec.n_entries, 0);
    assert_int_equal(rec.last_index, base);
    assert_int_equal(rec.last_term, 2);
    wal_recovered_free(&rec);
    wal_close(w2);
    simfs_free(fs);
}

static void test_roll_segments(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(5, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 300);
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_true(st.n_segments >= 10);
    wal_close(w);
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    assert_int_equal(rep.status, 0);
    assert_int_equal(rep.n_segments, st.n_segments);
    for (uint32_t k = 0; k < rep.n_segments; k++) {
        if (k + 1 < rep.n_segments) { /* earlier segments are cut to their records */
            assert_int_equal(rep.segments[k].file_bytes, rep.segments[k].used_bytes);
            assert_true(rep.segments[k].used_bytes <= SMALL_SEGMENTS);
        } else { /* the last one is preallocated */
            assert_int_equal(rep.segments[k].file_bytes, SMALL_SEGMENTS);
        }
    }
    wal_report_free(&rep);
    reopen_same(fs, &m);

    /* an entry bigger than a segment gets a segment of its own */
    struct wal_recovered rec;
    w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    uint8_t big[5000];
    memset(big, 0xab, sizeof(big));
    struct raft_entry e = {
        .term = 50, .index = 301, .type = 1, .n_bytes = sizeof(big), .bytes = big};
    SH_ASSERT_OK(wal_append(w, &e, 1));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    w = open_ok(fs, &rec);
    assert_int_equal(rec.last_index, 301);
    assert_int_equal(rec.entries[300].n_bytes, sizeof(big));
    assert_memory_equal(rec.entries[300].bytes, big, sizeof(big));
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

static void test_compaction(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(6, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    /* the hard state is written once, early: compaction must not lose it */
    set_hs(w, &m, 1, 3, 0);
    for (int i = 0; i < 300; i++) {
        SH_ASSERT_OK(sh_append(w, &m, 1));
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    struct wal_stats before;
    wal_get_stats(w, &before);
    uint32_t n_deleted = 0;
    SH_ASSERT_OK(wal_compact(w, 200, &n_deleted));
    assert_true(n_deleted > 3);
    struct wal_stats after;
    wal_get_stats(w, &after);
    assert_int_equal(after.n_segments, before.n_segments - n_deleted);
    assert_int_equal(wal_term_at(w, 250), 1);
    /* writing goes on after compaction */
    for (int i = 0; i < 20; i++) {
        SH_ASSERT_OK(sh_append(w, &m, 2));
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    w = open_ok(fs, &rec);
    assert_true(rec.first_index > 1);
    assert_true(rec.first_index <= 201); /* everything after the snapshot is kept */
    assert_int_equal(rec.last_index, 320);
    assert_true(rec.has_hard_state);
    assert_int_equal(rec.hard_state.vote, 3);
    for (uint64_t k = 0; k < rec.n_entries; k++) {
        const uint64_t index = rec.first_index + k;
        assert_true(sh_entry_ok(&rec.entries[k], index, m.terms[index - 1]));
    }
    wal_recovered_free(&rec);
    /* compacting everything keeps the last segment */
    SH_ASSERT_OK(wal_compact(w, 10000, NULL));
    wal_get_stats(w, &after);
    assert_int_equal(after.n_segments, 1);
    wal_close(w);
    w = open_ok(fs, &rec);
    assert_int_equal(rec.last_index, 320);
    assert_int_equal(rec.hard_state.vote, 3);
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- crashes ---------------------------------------------------------------------- */

/* One record the model replays, to check "a prefix of what was written". */
struct op {
    uint8_t kind; /* 1 append(term) 2 truncate(from) 3 hard state */
    uint64_t a;
    struct raft_hard_state hs;
};

static void model_apply(struct sh_model *m, const struct op *op)
{
    if (op->kind == 1) {
        sh_model_append(m, op->a);
    } else if (op->kind == 2) {
        sh_model_truncate(m, op->a);
    } else {
        m->hs = op->hs;
        m->has_hs = true;
    }
}

#define CRASH_OPS_MAX 512

/* Like sh_diff, for a log that may have been compacted up to `floor`: the recovered log
 * may start anywhere in (m->first, floor + 1] but must end where the model ends, and
 * every entry it has must be right. */
static const char *diff_floor(const struct wal_recovered *rec, const struct sh_model *m,
                              uint64_t floor)
{
    static char why[160];
    if (rec->last_index != sh_model_last(m)) {
        snprintf(why, sizeof(why), "last index %llu, model %llu",
                 (unsigned long long)rec->last_index, (unsigned long long)sh_model_last(m));
        return why;
    }
    if (rec->first_index < m->first ||
        (rec->first_index > m->first && rec->first_index > floor + 1)) {
        snprintf(why, sizeof(why), "first index %llu, model %llu, compacted to %llu",
                 (unsigned long long)rec->first_index, (unsigned long long)m->first,
                 (unsigned long long)floor);
        return why;
    }
    for (uint64_t k = 0; k < rec->n_entries; k++) {
        const uint64_t index = rec->first_index + k;
        if (!sh_entry_ok(&rec->entries[k], index, m->terms[index - m->first])) {
            snprintf(why, sizeof(why), "entry %llu differs", (unsigned long long)index);
            return why;
        }
    }
    if (rec->has_hard_state != m->has_hs ||
        (m->has_hs && (rec->hard_state.term != m->hs.term || rec->hard_state.vote != m->hs.vote ||
                       rec->hard_state.commit != m->hs.commit))) {
        return "hard state differs";
    }
    return NULL;
}

static void test_crash_keeps_synced(void **state)
{
    uint64_t n_deleted = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        struct simfs *fs;
        SH_ASSERT_OK(simfs_new(seed, &fs));
        struct prng p;
        prng_seed(&p, seed * 7919);
        struct sh_model acked; /* state at the last wal_sync */
        sh_model_init(&acked);
        struct sh_model cur;
        struct op ops[CRASH_OPS_MAX]; /* written since the last sync, record by record */
        uint32_t n_ops = 0;
        uint64_t term = 1;
        uint64_t floor = 0; /* compacted up to here */
        for (int round = 0; round < 6; round++) {
            struct wal_recovered rec;
            struct wal *w = open_ok(fs, &rec);
            /* what we recovered must be acked + a prefix of ops */
            struct sh_model probe = acked;
            bool match = diff_floor(&rec, &probe, floor) == NULL;
            for (uint32_t i = 0; i < n_ops && !match; i++) {
                model_apply(&probe, &ops[i]);
                match = diff_floor(&rec, &probe, floor) == NULL;
            }
            if (!match) {
                fail_msg("seed %llu round %d: recovered log is not acked + a prefix of the "
                         "writes (%s)",
                         (unsigned long long)seed, round, diff_floor(&rec, &acked, floor));
            }
            acked = probe;
            n_ops = 0;
            wal_recovered_free(&rec);
            cur = acked;
            const int steps = 5 + (int)prng_below(&p, 40);
            for (int s = 0; s < steps; s++) {
                const uint64_t r = prng_below(&p, 100);
                if (r < 55) {
                    const uint32_t n = 1 + (uint32_t)prng_below(&p, 4);
                    for (uint32_t i = 0; i < n; i++) {
                        SH_ASSERT_OK(sh_append(w, &cur, term));
                        ops[n_ops++] = (struct op){1, term, {0}};
                    }
                } else if (r < 65 && sh_model_last(&cur) > floor) {
                    /* Raft never truncates what a snapshot covers */
                    const uint64_t lo = floor + 1 > cur.first ? floor + 1 : cur.first;
                    const uint64_t from = lo + prng_below(&p, sh_model_last(&cur) - lo + 1);
                    SH_ASSERT_OK(wal_truncate(w, from));
                    sh_model_truncate(&cur, from);
                    ops[n_ops++] = (struct op){2, from, {0}};
                    term++;
                } else if (r < 70 && sh_model_last(&acked) > floor) {
                    /* a snapshot at or below the durable index lets compaction run */
                    floor += prng_below(&p, sh_model_last(&acked) - floor + 1);
                    SH_ASSERT_OK(wal_compact(w, floor, NULL));
                } else if (r < 80) {
                    const struct raft_hard_state hs = {term, (uint32_t)prng_below(&p, 5),
                                                       prng_below(&p, 100)};
                    SH_ASSERT_OK(wal_set_hard_state(w, &hs));
                    cur.hs = hs;
                    cur.has_hs = true;
                    ops[n_ops++] = (struct op){3, 0, hs};
                } else {
                    uint64_t di;
                    SH_ASSERT_OK(wal_sync(w, &di, NULL));
                    assert_int_equal(di, sh_model_last(&cur));
                    acked = cur;
                    n_ops = 0;
                }
                assert_true(n_ops + 8 < CRASH_OPS_MAX);
            }
            struct wal_stats st;
            wal_get_stats(w, &st);
            n_deleted += st.n_segments_deleted;
            wal_close(w); /* no sync: the crash decides what survives */
            simfs_crash(fs);
        }
        simfs_free(fs);
    }
    print_message("      compaction deleted %llu segments across the runs\n",
                  (unsigned long long)n_deleted);
    assert_true(n_deleted > 20);
}

/* ---- torn tails ------------------------------------------------------------------- */

/* Cuts (or zeroes) the last segment at every offset of an unsynced tail. */
static void torn_tail_every_offset(bool zero_instead_of_cut)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(7, &fs));
    struct sh_model m;
    g_segment_bytes = 2048;
    struct wal *w = build_log(fs, &m, 60);
    char path[ENV_PATH_MAX];
    uint64_t synced_end;
    last_segment(fs, path, &synced_end);
    while (synced_end + 600 > g_segment_bytes) { /* make room for the tail */
        SH_ASSERT_OK(sh_append(w, &m, m.terms[m.n - 1]));
        SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        last_segment(fs, path, &synced_end);
    }
    const struct sh_model acked = m;
    /* an unsynced tail in the same segment: entries, a hard state, a truncation */
    struct op ops[8];
    uint32_t n_ops = 0;
    for (int i = 0; i < 3; i++) {
        SH_ASSERT_OK(sh_append(w, &m, 9));
        ops[n_ops++] = (struct op){1, 9, {0}};
    }
    const struct raft_hard_state hs = {9, 2, 20};
    SH_ASSERT_OK(wal_set_hard_state(w, &hs));
    m.hs = hs;
    m.has_hs = true;
    ops[n_ops++] = (struct op){3, 0, hs};
    SH_ASSERT_OK(wal_truncate(w, 25));
    sh_model_truncate(&m, 25);
    ops[n_ops++] = (struct op){2, 25, {0}};
    SH_ASSERT_OK(sh_append(w, &m, 10));
    ops[n_ops++] = (struct op){1, 10, {0}};
    wal_close(w);
    char path2[ENV_PATH_MAX];
    uint64_t tail_end;
    last_segment(fs, path2, &tail_end);
    assert_string_equal(path, path2);
    assert_true(tail_end > synced_end + 100);

    uint32_t n_full = 0;
    for (uint64_t off = synced_end; off <= tail_end; off++) {
        struct simfs *c;
        SH_ASSERT_OK(simfs_clone(fs, off, &c));
        if (zero_instead_of_cut) {
            SH_ASSERT_OK(simfs_zero_range(c, path, off, g_segment_bytes));
        } else {
            SH_ASSERT_OK(simfs_set_size(c, path, off));
        }
        struct wal_recovered rec;
        w = open_ok(c, &rec); /* a torn tail is never corruption */
        struct sh_model probe = acked;
        bool match = sh_diff(&rec, &probe) == NULL;
        for (uint32_t i = 0; i < n_ops && !match; i++) {
            model_apply(&probe, &ops[i]);
            match = sh_diff(&rec, &probe) == NULL;
        }
        if (!match) {
            fail_msg("cut at offset %llu: recovered log is not acked + a prefix of the tail",
                     (unsigned long long)off);
        }
        n_full += off == tail_end;
        /* the log takes new writes and recovers them */
        SH_ASSERT_OK(sh_append(w, &probe, 11));
        SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        wal_recovered_free(&rec);
        wal_close(w);
        reopen_same(c, &probe);
        simfs_free(c);
    }
    assert_int_equal(n_full, 1);
    g_segment_bytes = SMALL_SEGMENTS;
    simfs_free(fs);
}

static void test_torn_tail_cut_every_offset(void **state)
{
    torn_tail_every_offset(false);
}

static void test_torn_tail_zeroed_every_offset(void **state)
{
    torn_tail_every_offset(true);
}

/* A segment whose creation was torn (the crash hit before its sync) is removed. */
static void test_torn_segment_creation(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(8, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 40);
    wal_close(w);
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    const uint32_t n = rep.n_segments;
    char last[ENV_PATH_MAX];
    /* a roll cuts and syncs the old segment before it creates the next one */
    SH_ASSERT_OK(env_path_join(last, sizeof(last), DIR, rep.segments[n - 1].name));
    SH_ASSERT_OK(simfs_set_size(fs, last, rep.segments[n - 1].used_bytes));
    char path[ENV_PATH_MAX];
    char name[WAL_NAME_BYTES];
    snprintf(name, sizeof(name), "wal-%016llx.log",
             (unsigned long long)rep.segments[n - 1].seq + 1);
    wal_report_free(&rep);
    SH_ASSERT_OK(env_path_join(path, sizeof(path), DIR, name));
    for (uint64_t size = 0; size < WAL_HEADER_BYTES + 10; size += 7) {
        struct simfs *c;
        SH_ASSERT_OK(simfs_clone(fs, size, &c));
        struct env *env = simfs_env(c);
        struct env_file *f;
        SH_ASSERT_OK(env->open(env, path, ENV_OPEN_CREATE, &f));
        uint8_t junk[WAL_HEADER_BYTES + 10];
        memset(junk, 0x5a, sizeof(junk));
        SH_ASSERT_OK(env->write_at(env, f, 0, junk, (size_t)size));
        SH_ASSERT_OK(env->close(env, f));
        struct wal_recovered rec;
        w = open_ok(c, &rec);
        SH_ASSERT_SAME(&rec, &m);
        assert_true(rec.torn_segment_removed);
        assert_false(simfs_exists(c, path));
        wal_recovered_free(&rec);
        wal_close(w);
        simfs_free(c);
    }
    simfs_free(fs);
}

/* ---- bit flips -------------------------------------------------------------------- */

static void test_flip_every_bit(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(9, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 45); /* three segments, all synced */
    assert_true(stats_of(w).n_segments_zeroed >= 3); /* made from spares */
    wal_close(w);
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    assert_true(rep.n_segments >= 3);
    uint64_t n_ok = 0, n_corrupt = 0;
    for (uint32_t k = 0; k < rep.n_segments; k++) {
        char path[ENV_PATH_MAX];
        SH_ASSERT_OK(env_path_join(path, sizeof(path), DIR, rep.segments[k].name));
        for (uint64_t off = 0; off < rep.segments[k].used_bytes; off++) {
            for (unsigned bit = 0; bit < 8; bit++) {
                struct simfs *c;
                SH_ASSERT_OK(simfs_clone(fs, off * 8 + bit, &c));
                SH_ASSERT_OK(simfs_flip_bit(c, path, off, bit));
                struct wal_recovered rec;
                struct wal *cw = NULL;
                const struct wal_options o = opts_small();
                const int rv = wal_open(simfs_env(c), DIR, &o, &cw, &rec, msg, sizeof(msg));
                if (rv == WAL_ECORRUPT) {
                    n_corrupt++;
                    if (strstr(msg, rep.segments[k].name) == NULL) {
                        fail_msg("flip %s+%llu.%u: message does not name the file: %s",
                                 rep.segments[k].name, (unsigned long long)off, bit, msg);
                    }
                } else if (rv == 0) {
                    /* everything was acknowledged, so only the whole log will do */
                    const char *why = sh_diff(&rec, &m);
                    if (why != NULL) {
                        fail_msg("flip %s+%llu.%u: WRONG LOG recovered: %s", rep.segments[k].name,
                                 (unsigned long long)off, bit, why);
                    }
                    n_ok++;
                    wal_recovered_free(&rec);
                    wal_close(cw);
                } else {
                    fail_msg("flip %s+%llu.%u: unexpected %s: %s", rep.segments[k].name,
                             (unsigned long long)off, bit, wal_strerror(rv), msg);
                }
                simfs_free(c);
            }
        }
    }
    /* flips in the final seal lose nothing; everything else is refused */
    assert_true(n_ok > 0);
    assert_true(n_corrupt > 10 * n_ok);
    print_message("      %llu flips: %llu recovered in full, %llu refused as corrupt\n",
                  (unsigned long long)(n_ok + n_corrupt), (unsigned long long)n_ok,
                  (unsigned long long)n_corrupt);
    wal_report_free(&rep);
    simfs_free(fs);
}

static void test_inspect_names_the_record(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(10, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 10);
    wal_close(w);
    char path[ENV_PATH_MAX];
    uint64_t used;
    last_segment(fs, path, &used);
    /* skip the segment's first two records to reach the third */
    struct env *env = simfs_env(fs);
    struct env_file *f;
    SH_ASSERT_OK(env->open(env, path, ENV_OPEN_READ, &f));
    uint8_t buf[SMALL_SEGMENTS];
    SH_ASSERT_OK(env_read_exact(env, f, 0, buf, (size_t)used));
    env->close(env, f);
    uint64_t off = WAL_HEADER_BYTES;
    for (int r = 0; r < 2; r++) {
        struct wal_record rec;
        size_t n;
        SH_ASSERT_OK(wal_decode_record(buf + off, (size_t)(used - off), &rec, &n));
        off += n;
    }
    SH_ASSERT_OK(simfs_flip_bit(fs, path, off + 12, 3)); /* inside record 3 */
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(env, DIR, &rep, msg, sizeof(msg)));
    assert_int_equal(rep.status, WAL_ECORRUPT);
    assert_true(rep.has_bad);
    assert_int_equal(rep.bad_offset, off);
    assert_int_equal(rep.bad_record, 3);
    assert_non_null(strstr(msg, rep.segments[rep.bad_segment].name));
    char want[64];
    snprintf(want, sizeof(want), "offset %llu (record 3", (unsigned long long)off);
    assert_non_null(strstr(msg, want));
    wal_report_free(&rep);
    struct wal_recovered rec;
    w = NULL;
    const struct wal_options o = opts_small();
    assert_int_equal(wal_open(env, DIR, &o, &w, &rec, msg, sizeof(msg)), WAL_ECORRUPT);
    assert_null(w);
    simfs_free(fs);
}

/* A missing segment in the middle is corruption, not a shorter log. */
static void test_missing_segment(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(11, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 80);
    wal_close(w);
    struct env *env = simfs_env(fs);
    char path[ENV_PATH_MAX];
    SH_ASSERT_OK(env_path_join(path, sizeof(path), DIR, "wal-0000000000000002.log"));
    SH_ASSERT_OK(env->unlink(env, path));
    struct wal_recovered rec;
    char msg[WAL_MSG_BYTES];
    const struct wal_options o = opts_small();
    assert_int_equal(wal_open(env, DIR, &o, &w, &rec, msg, sizeof(msg)), WAL_ECORRUPT);
    assert_non_null(strstr(msg, "not consecutive"));
    simfs_free(fs);
}

/* ---- disk errors ------------------------------------------------------------------ */

static void test_fsync_error_is_fatal(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(12, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 20);
    const uint64_t n_acked = m.n;
    SH_ASSERT_OK(sh_append(w, &m, 9));
    simfs_fail_next_syncs(fs, 1);
    assert_int_equal(wal_sync(w, NULL, NULL), WAL_ESYNC);
    /* never retried, never trusted again */
    assert_int_equal(wal_sync(w, NULL, NULL), WAL_EFAILED);
    assert_int_equal(sh_append(w, &m, 9), WAL_EFAILED);
    assert_int_equal(wal_compact(w, 5, NULL), WAL_EFAILED);
    wal_close(w);
    simfs_crash(fs);
    struct wal_recovered rec;
    w = open_ok(fs, &rec);
    assert_true(sh_is_prefix(&rec, &m, n_acked));
    wal_recovered_free(&rec);
    wal_close(w);
    /* a failure of the sync that creates a segment is fatal too */
    w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    simfs_fail_next_syncs(fs, 1);
    int rv = 0;
    for (int i = 0; i < 200 && rv == 0; i++) {
        rv = wal_append(
            w, &(struct raft_entry){.term = 20, .index = wal_last_index(w) + 1, .type = 1}, 1);
    }
    assert_int_equal(rv, WAL_ESYNC);
    wal_close(w);
    simfs_free(fs);
}

static void test_enospc(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(13, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 30);
    const struct sh_model acked = m;
    /* room for one more preallocated segment and 500 bytes beyond it */
    struct simfs_faults faults = {0};
    faults.capacity_bytes = simfs_used_bytes(fs) + SMALL_SEGMENTS + 500;
    simfs_set_faults(fs, &faults);
    uint8_t big[3000];
    memset(big, 7, sizeof(big));
    struct raft_entry e = {.term = 9, .index = 31, .type = 1, .n_bytes = sizeof(big), .bytes = big};
    /* too big for the rest of the segment: the roll fits, the write does not */
    int rv = wal_append(w, &e, 1);
    assert_int_equal(rv, WAL_ENOSPC); /* the roll fit, the write did not */
    assert_int_equal(wal_last_index(w), 30);
    /* nothing half-written: the log inspects clean, and syncs */
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    assert_int_equal(rep.status, 0);
    assert_false(rep.torn_tail);
    assert_int_equal(rep.segments[rep.n_segments - 1].file_bytes,
                     rep.segments[rep.n_segments - 1].used_bytes);
    wal_report_free(&rep);
    /* small writes still fit */
    SH_ASSERT_OK(sh_append(w, &m, 9));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    uint64_t n_acked = m.n;
    /* fill the disk completely with small entries */
    rv = 0;
    for (int i = 0; i < 1000 && rv == 0; i++) {
        rv = sh_append(w, &m, 9);
        if (rv == 0 && i % 4 == 0) {
            rv = wal_sync(w, NULL, NULL);
            n_acked = rv == 0 ? m.n : n_acked;
        }
    }
    assert_int_equal(rv, WAL_ENOSPC);
    wal_close(w);
    simfs_crash(fs);
    /* recovery finds the last good record (wal_open also needs room for a seal; make
     * some), never half a record */
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    struct wal_recovered rec;
    w = open_ok(fs, &rec);
    assert_true(sh_is_prefix(&rec, &m, n_acked));
    assert_true(rec.n_entries > acked.n);
    /* and goes on */
    uint8_t buf[SH_ENTRY_BYTES_MAX];
    sh_entry(&e, rec.last_index + 1, 9, buf);
    SH_ASSERT_OK(wal_append(w, &e, 1));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* ---- spare segments --------------------------------------------------------------- */

#define SPARE_PATH DIR "/" WAL_SPARE_NAME

/* Size of the file at path, and whether every byte of it is zero. */
static bool file_all_zero(struct simfs *fs, const char *path, uint64_t *size)
{
    struct env *env = simfs_env(fs);
    struct env_file *f;
    SH_ASSERT_OK(env->open(env, path, ENV_OPEN_READ, &f));
    SH_ASSERT_OK(env->size(env, f, size));
    static uint8_t buf[1 << 16];
    assert_true(*size <= sizeof(buf));
    SH_ASSERT_OK(env_read_exact(env, f, 0, buf, (size_t)*size));
    env->close(env, f);
    for (uint64_t k = 0; k < *size; k++) {
        if (buf[k] != 0) {
            return false;
        }
    }
    return true;
}

/* The first segment is zero-filled by wal_open; the spare is made only once the segment
 * is half full, in steps, and the next roll turns it into the segment. */
static void test_spare_prepared_and_used(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(21, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    assert_int_equal(stats_of(w).n_segments_zeroed, 1);
    assert_int_equal(stats_of(w).n_spare_bytes, SMALL_SEGMENTS);
    bool more = true;
    SH_ASSERT_OK(wal_prepare(w, 4096, &more)); /* nearly empty segment: nothing to do */
    assert_false(more);
    assert_false(simfs_exists(fs, SPARE_PATH));
    /* fill to half a segment: the first step creates the spare */
    for (int k = 0; k < 100 && !simfs_exists(fs, SPARE_PATH); k++) {
        SH_ASSERT_OK(sh_append(w, &m, 1));
        SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        SH_ASSERT_OK(wal_prepare(w, 100, &more));
    }
    assert_true(simfs_exists(fs, SPARE_PATH));
    assert_true(more);
    assert_int_equal(stats_of(w).n_segments_created, 1);
    uint64_t size = 0;
    assert_true(file_all_zero(fs, SPARE_PATH, &size));
    assert_int_equal(size, 100);
    prepare_all(w, 100);
    assert_true(file_all_zero(fs, SPARE_PATH, &size));
    assert_int_equal(size, SMALL_SEGMENTS);
    assert_int_equal(stats_of(w).n_spare_bytes, 2 * SMALL_SEGMENTS);
    SH_ASSERT_OK(wal_prepare(w, 100, &more)); /* ready: nothing more */
    assert_false(more);
    /* write until the roll: it takes the spare */
    for (int k = 0; k < 100 && stats_of(w).n_segments_created == 1; k++) {
        SH_ASSERT_OK(sh_append(w, &m, 2));
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    assert_int_equal(stats_of(w).n_segments_created, 2);
    assert_int_equal(stats_of(w).n_segments_zeroed, 2);
    assert_false(simfs_exists(fs, SPARE_PATH));
    char path[ENV_PATH_MAX];
    uint64_t used = 0;
    last_segment(fs, path, &used);
    SH_ASSERT_OK(simfs_file_size(fs, path, &size));
    assert_int_equal(size, SMALL_SEGMENTS); /* the spare's size: nothing to extend */
    /* without a ready spare the roll falls back to a preallocated segment */
    for (int k = 0; k < 100 && stats_of(w).n_segments_created == 2; k++) {
        SH_ASSERT_OK(sh_append(w, &m, 3));
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    assert_int_equal(stats_of(w).n_segments_created, 3);
    assert_int_equal(stats_of(w).n_segments_zeroed, 2);
    wal_close(w);
    reopen_same(fs, &m);
    simfs_free(fs);
}

/* Negative control: with zero_fill off nothing is zero-filled and no spare appears. */
static void test_zero_fill_off(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(22, &fs));
    struct wal_options o = opts_small();
    o.zero_fill = false;
    struct wal *w;
    struct wal_recovered rec;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg)));
    wal_recovered_free(&rec);
    struct sh_model m;
    sh_model_init(&m);
    for (int k = 0; k < 80; k++) {
        SH_ASSERT_OK(sh_append(w, &m, 1));
        SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        bool more = true;
        SH_ASSERT_OK(wal_prepare(w, 4096, &more));
        assert_false(more);
        assert_false(simfs_exists(fs, SPARE_PATH));
    }
    assert_true(stats_of(w).n_segments_created > 2);
    assert_int_equal(stats_of(w).n_segments_zeroed, 0);
    assert_int_equal(stats_of(w).n_spare_bytes, 0);
    wal_close(w);
    reopen_same(fs, &m);
    simfs_free(fs);
}

/* A spare left behind holds what looks like the next segment (valid header and records
 * of "an earlier life"). Renamed into place it would be read as log (the control); left
 * as a spare it is deleted by wal_open and never returned, and the segment made from the
 * next spare holds none of it. */
static void test_stale_spare_never_read(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(23, &fs));
    struct sh_model m;
    struct wal *w = build_log(fs, &m, 30);
    wal_close(w);
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    const uint64_t next_seq = rep.segments[rep.n_segments - 1].seq + 1;
    wal_report_free(&rep);
    char next_path[ENV_PATH_MAX];
    char name[WAL_NAME_BYTES];
    snprintf(name, sizeof(name), "wal-%016llx.log", (unsigned long long)next_seq);
    SH_ASSERT_OK(env_path_join(next_path, sizeof(next_path), DIR, name));

    /* The earlier life: a segment next_seq that continues this very log (header, hard
     * state, entries of term 50, seal), every record valid. */
    static uint8_t img[SMALL_SEGMENTS];
    memset(img, 0, sizeof(img));
    const struct wal_segment_header h = {.version = WAL_FORMAT_VERSION,
                                         .seq = next_seq,
                                         .first_index = sh_model_last(&m) + 1,
                                         .prev_term = sh_model_last_term(&m)};
    wal_encode_segment_header(&h, img);
    size_t off = WAL_HEADER_BYTES;
    struct sh_model other = m;
    struct wal_record r = {.type = WAL_REC_HARD_STATE};
    r.hard_state = (struct raft_hard_state){50, 2, sh_model_last(&m)};
    size_t n = 0;
    SH_ASSERT_OK(wal_encode_record(&r, img + off, sizeof(img) - off, &n));
    off += n;
    for (int k = 0; k < 5; k++) {
        uint8_t eb[SH_ENTRY_BYTES_MAX];
        struct raft_entry e;
        sh_entry(&e, sh_model_last(&other) + 1, 50, eb);
        r = (struct wal_record){.type = WAL_REC_ENTRY};
        r.entry.term = e.term;
        r.entry.index = e.index;
        r.entry.type = e.type;
        r.entry.n_bytes = e.n_bytes;
        r.entry.bytes = e.bytes;
        SH_ASSERT_OK(wal_encode_record(&r, img + off, sizeof(img) - off, &n));
        off += n;
        sh_model_append(&other, 50);
    }
    r = (struct wal_record){.type = WAL_REC_SEAL};
    r.seal.last_index = sh_model_last(&other);
    r.seal.last_term = 50;
    SH_ASSERT_OK(wal_encode_record(&r, img + off, sizeof(img) - off, &n));
    const uint64_t size = sizeof(img);
    struct env_file *f;
    struct wal_recovered rec;

    /* Its image becomes the spare of fs, durably. */
    struct env *env = simfs_env(fs);
    SH_ASSERT_OK(env->open(env, SPARE_PATH, ENV_OPEN_CREATE, &f));
    SH_ASSERT_OK(env->write_at(env, f, 0, img, (size_t)size));
    SH_ASSERT_OK(env->sync(env, f));
    env->close(env, f);
    SH_ASSERT_OK(env->sync_dir(env, DIR));

    /* control: renamed into place without zeroing, the stale records ARE read as log */
    struct simfs *ctl;
    SH_ASSERT_OK(simfs_clone(fs, 2, &ctl));
    struct env *ce = simfs_env(ctl);
    char last[ENV_PATH_MAX];
    uint64_t used = 0;
    last_segment(ctl, last, &used);
    SH_ASSERT_OK(simfs_set_size(ctl, last, used)); /* what a roll does first */
    SH_ASSERT_OK(ce->rename(ce, SPARE_PATH, next_path));
    w = open_ok(ctl, &rec);
    assert_int_equal(rec.n_entries, other.n); /* the stale entries, read as log */
    assert_int_equal(rec.hard_state.term, 50);
    assert_non_null(sh_diff(&rec, &m));
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(ctl);

    /* the real thing: the spare is removed, the log is exactly what was written */
    w = open_ok(fs, &rec);
    SH_ASSERT_SAME(&rec, &m);
    wal_recovered_free(&rec);
    assert_false(simfs_exists(fs, SPARE_PATH));
    /* a new spare, a roll into it, and the new segment holds only new records */
    for (int k = 0; k < 100 && !simfs_exists(fs, next_path); k++) {
        SH_ASSERT_OK(sh_append(w, &m, 60));
        SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        prepare_all(w, 128);
    }
    SH_ASSERT_OK(sh_append(w, &m, 60));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    assert_true(stats_of(w).n_segments_zeroed >= 1);
    wal_close(w);
    reopen_same(fs, &m);
    simfs_free(fs);
}

/* An env over simfs that cuts the power just before its crash_at-th IO call; every call
 * after that fails with -EIO, as the stale handles of a crashed simfs do. */
struct crash_env {
    struct env env; /* first: the callbacks get &env */
    struct env *inner;
    struct simfs *fs;
    uint64_t n_calls;
    uint64_t crash_at; /* 0 = never */
    bool crashed;
    bool in_spare; /* the spare existed when the power went */
};

static bool ce_down(struct env *e)
{
    struct crash_env *c = (struct crash_env *)e;
    if (!c->crashed && ++c->n_calls == c->crash_at) {
        c->in_spare = simfs_exists(c->fs, SPARE_PATH);
        simfs_crash(c->fs);
        c->crashed = true;
    }
    return c->crashed;
}

#define CE_INNER(e) (((struct crash_env *)(e))->inner)

static int ce_open(struct env *e, const char *p, int fl, struct env_file **out)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->open(CE_INNER(e), p, fl, out);
}
static int ce_close(struct env *e, struct env_file *f)
{
    return CE_INNER(e)->close(CE_INNER(e), f); /* always frees the handle */
}
static int ce_read_at(struct env *e, struct env_file *f, uint64_t off, void *buf, size_t n,
                      size_t *n_read)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->read_at(CE_INNER(e), f, off, buf, n, n_read);
}
static int ce_write_at(struct env *e, struct env_file *f, uint64_t off, const void *buf, size_t n)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->write_at(CE_INNER(e), f, off, buf, n);
}
static int ce_sync(struct env *e, struct env_file *f)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->sync(CE_INNER(e), f);
}
static int ce_truncate(struct env *e, struct env_file *f, uint64_t size)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->truncate(CE_INNER(e), f, size);
}
static int ce_allocate(struct env *e, struct env_file *f, uint64_t off, uint64_t n)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->allocate(CE_INNER(e), f, off, n);
}
static int ce_size(struct env *e, struct env_file *f, uint64_t *out)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->size(CE_INNER(e), f, out);
}
static int ce_rename(struct env *e, const char *from, const char *to)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->rename(CE_INNER(e), from, to);
}
static int ce_unlink(struct env *e, const char *path)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->unlink(CE_INNER(e), path);
}
static int ce_mkdir(struct env *e, const char *path)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->mkdir(CE_INNER(e), path);
}
static int ce_sync_dir(struct env *e, const char *path)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->sync_dir(CE_INNER(e), path);
}
static int ce_list_dir(struct env *e, const char *path, void *arg, env_list_cb cb)
{
    return ce_down(e) ? -EIO : CE_INNER(e)->list_dir(CE_INNER(e), path, arg, cb);
}

static void crash_env_init(struct crash_env *c, struct simfs *fs, uint64_t crash_at)
{
    memset(c, 0, sizeof(*c));
    c->inner = simfs_env(fs);
    c->fs = fs;
    c->crash_at = crash_at;
    c->env = *c->inner;
    c->env.impl = NULL;
    c->env.open = ce_open;
    c->env.close = ce_close;
    c->env.read_at = ce_read_at;
    c->env.write_at = ce_write_at;
    c->env.sync = ce_sync;
    c->env.truncate = ce_truncate;
    c->env.allocate = ce_allocate;
    c->env.size = ce_size;
    c->env.rename = ce_rename;
    c->env.unlink = ce_unlink;
    c->env.mkdir = ce_mkdir;
    c->env.sync_dir = ce_sync_dir;
    c->env.list_dir = ce_list_dir;
}

/* Writes, syncs and prepares spares (small steps) until the first failure; *n_acked is
 * the model's length at the last successful sync. */
static void spare_workload(struct env *env, struct sh_model *m, uint64_t *n_acked,
                           uint64_t *n_zeroed)
{
    sh_model_init(m);
    *n_acked = 0;
    *n_zeroed = 0;
    const struct wal_options o = opts_small();
    struct wal *w = NULL;
    struct wal_recovered rec;
    if (wal_open(env, DIR, &o, &w, &rec, NULL, 0) != 0) {
        return;
    }
    wal_recovered_free(&rec);
    for (uint64_t i = 1; i <= 70; i++) {
        if (sh_append(w, m, 1 + i / 9) != 0) {
            break;
        }
        if (i % 3 == 0) {
            if (wal_sync(w, NULL, NULL) != 0) {
                break;
            }
            *n_acked = m->n;
        }
        bool more = false;
        (void)wal_prepare(w, 160, &more); /* its errors are not the log's */
    }
    *n_zeroed = stats_of(w).n_segments_zeroed;
    wal_close(w);
}

/* A power cut just before each IO call of a run that makes spares and rolls into them:
 * recovery returns a prefix holding every acknowledged entry, the spare is gone, and the
 * WAL goes on. */
static void test_crash_at_every_call_with_spares(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(30, &fs));
    struct crash_env ce;
    crash_env_init(&ce, fs, 0);
    struct sh_model m;
    uint64_t n_acked = 0;
    uint64_t n_zeroed = 0;
    spare_workload(&ce.env, &m, &n_acked, &n_zeroed);
    const uint64_t n_calls = ce.n_calls;
    assert_int_equal(n_acked, m.n - m.n % 3);
    assert_true(n_zeroed >= 4); /* the first segment and rolls into spares */
    simfs_free(fs);
    uint64_t n_in_spare = 0;
    for (uint64_t at = 1; at <= n_calls; at++) {
        SH_ASSERT_OK(simfs_new(at, &fs));
        crash_env_init(&ce, fs, at);
        spare_workload(&ce.env, &m, &n_acked, &n_zeroed);
        assert_true(ce.crashed);
        n_in_spare += ce.in_spare;
        char msg[WAL_MSG_BYTES];
        const struct wal_options o = opts_small();
        struct wal *w = NULL;
        struct wal_recovered rec;
        const int rv = wal_open(simfs_env(fs), DIR, &o, &w, &rec, msg, sizeof(msg));
        if (rv != 0) {
            fail_msg("crash at call %llu: wal_open: %s: %s", (unsigned long long)at,
                     wal_strerror(rv), msg);
        }
        if (!sh_is_prefix(&rec, &m, n_acked)) {
            fail_msg("crash at call %llu: recovered %llu entries, wrote %llu, acked %llu",
                     (unsigned long long)at, (unsigned long long)rec.n_entries,
                     (unsigned long long)m.n, (unsigned long long)n_acked);
        }
        assert_false(simfs_exists(fs, SPARE_PATH));
        /* and it goes on, spares included */
        m.n = rec.n_entries;
        wal_recovered_free(&rec);
        for (int k = 0; k < 40; k++) {
            SH_ASSERT_OK(sh_append(w, &m, 20));
            SH_ASSERT_OK(wal_sync(w, NULL, NULL));
            prepare_all(w, 512);
        }
        wal_close(w);
        reopen_same(fs, &m);
        simfs_free(fs);
    }
    print_message("      %llu crash points, %llu of them with a spare on disk\n",
                  (unsigned long long)n_calls, (unsigned long long)n_in_spare);
    assert_true(n_in_spare > 10);
}

/* A failed step (disk full) drops the spare and is not the log's problem: the roll
 * falls back to a preallocated segment, and a later segment gets a spare again. */
static void test_spare_enospc(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(24, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    for (int k = 0; k < 14; k++) { /* past half a segment */
        SH_ASSERT_OK(sh_append(w, &m, 1));
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    struct simfs_faults faults = {.capacity_bytes = simfs_used_bytes(fs) + 300};
    simfs_set_faults(fs, &faults);
    bool more = true;
    assert_int_equal(wal_prepare(w, 4096, &more), WAL_ENOSPC);
    assert_false(more);
    assert_false(simfs_exists(fs, SPARE_PATH));
    assert_int_equal(stats_of(w).n_spare_failures, 1);
    SH_ASSERT_OK(wal_prepare(w, 4096, &more)); /* no new attempt before the next roll */
    assert_false(simfs_exists(fs, SPARE_PATH));
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    for (int k = 0; k < 100 && stats_of(w).n_segments_created == 1; k++) {
        SH_ASSERT_OK(sh_append(w, &m, 1));
        SH_ASSERT_OK(wal_prepare(w, 4096, &more)); /* still nothing: same segment */
        assert_false(simfs_exists(fs, SPARE_PATH));
    }
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    assert_int_equal(stats_of(w).n_segments_zeroed, 1); /* the first one only */
    for (int k = 0; k < 100 && !simfs_exists(fs, SPARE_PATH); k++) {
        SH_ASSERT_OK(sh_append(w, &m, 1));
        SH_ASSERT_OK(wal_prepare(w, 4096, &more));
    }
    assert_true(simfs_exists(fs, SPARE_PATH));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    reopen_same(fs, &m);
    simfs_free(fs);
}

/* ---- group writes ----------------------------------------------------------------- */

/* n one-entry batches from the model's end on, each with a hard state. */
struct group {
    struct wal_batch b[64];
    const struct wal_batch *p[64];
    struct raft_entry e[64];
    uint8_t bytes[64][SH_ENTRY_BYTES_MAX];
};

static void group_fill(struct group *g, const struct sh_model *m, uint32_t n, uint64_t term)
{
    assert_true(n <= 64);
    for (uint32_t k = 0; k < n; k++) {
        sh_entry(&g->e[k], sh_model_last(m) + 1 + k, term, g->bytes[k]);
        g->b[k] = (struct wal_batch){.entries = &g->e[k],
                                     .n_entries = 1,
                                     .has_hard_state = true,
                                     .hard_state = {term, 1, sh_model_last(m) + k}};
        g->p[k] = &g->b[k];
    }
}

static void group_commit_model(struct sh_model *m, const struct group *g, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        sh_model_append(m, g->e[k].term);
        m->hs = g->b[k].hard_state;
        m->has_hs = true;
    }
}

static void test_group_one_write_sealed(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(25, &fs));
    g_segment_bytes = 64 * 1024;
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    static struct group g;
    for (int round = 0; round < 5; round++) {
        group_fill(&g, &m, 40, 1 + (uint64_t)round);
        struct simfs_stats before;
        simfs_get_stats(fs, &before);
        const struct wal_stats ws = stats_of(w);
        uint32_t n_written = 99;
        SH_ASSERT_OK(wal_write_group(w, g.p, 40, true, &n_written));
        assert_int_equal(n_written, 40);
        group_commit_model(&m, &g, 40);
        uint64_t durable = 0;
        SH_ASSERT_OK(wal_sync(w, &durable, NULL));
        assert_int_equal(durable, sh_model_last(&m));
        struct simfs_stats after;
        simfs_get_stats(fs, &after);
        assert_int_equal(after.n_writes - before.n_writes, 1); /* records and seal at once */
        assert_int_equal(after.n_syncs - before.n_syncs, 1);
        assert_int_equal(stats_of(w).n_writes - ws.n_writes, 1);
    }
    /* unsealed: wal_sync adds the seal itself */
    group_fill(&g, &m, 3, 9);
    struct simfs_stats before;
    simfs_get_stats(fs, &before);
    uint32_t n_written = 0;
    SH_ASSERT_OK(wal_write_group(w, g.p, 3, false, &n_written));
    group_commit_model(&m, &g, 3);
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    struct simfs_stats after;
    simfs_get_stats(fs, &after);
    assert_int_equal(after.n_writes - before.n_writes, 2);
    wal_close(w);
    g_segment_bytes = SMALL_SEGMENTS;
    struct wal_options o = opts_small();
    o.segment_bytes = 64 * 1024;
    struct wal *w2;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_open(simfs_env(fs), DIR, &o, &w2, &rec, msg, sizeof(msg)));
    SH_ASSERT_SAME(&rec, &m);
    assert_int_equal(rec.torn_bytes_dropped, 0);
    wal_recovered_free(&rec);
    wal_close(w2);
    simfs_free(fs);
}

/* Groups that cross segment bounds keep every segment within its bound (as batch-by-
 * batch writing would), and a power cut after a sealed group loses nothing synced. */
static void test_group_rolls_and_crash(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(26, &fs));
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    static struct group g;
    uint64_t n_acked = 0;
    for (int round = 0; round < 12; round++) {
        const uint32_t n = 1 + (uint32_t)(round * 7) % 40;
        group_fill(&g, &m, n, 1 + (uint64_t)round);
        uint32_t n_written = 0;
        SH_ASSERT_OK(wal_write_group(w, g.p, n, true, &n_written));
        group_commit_model(&m, &g, n);
        if (round % 3 != 2) {
            SH_ASSERT_OK(wal_sync(w, NULL, NULL));
            n_acked = m.n;
        }
        prepare_all(w, 300);
    }
    wal_close(w);
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    assert_true(rep.n_segments > 5);
    for (uint32_t k = 0; k < rep.n_segments; k++) {
        assert_true(rep.segments[k].used_bytes <= SMALL_SEGMENTS);
    }
    wal_report_free(&rep);
    simfs_crash(fs);
    w = open_ok(fs, &rec);
    assert_true(sh_is_prefix(&rec, &m, n_acked));
    wal_recovered_free(&rec);
    wal_close(w);
    simfs_free(fs);
}

/* A bad batch or a full disk in the middle of a group: the batches before it are in the
 * log, it and those after are not, and nothing is half written. */
static void test_group_partial_failure(void **state)
{
    struct simfs *fs;
    SH_ASSERT_OK(simfs_new(27, &fs));
    g_segment_bytes = 64 * 1024;
    struct sh_model m;
    sh_model_init(&m);
    struct wal_recovered rec;
    struct wal *w = open_ok(fs, &rec);
    wal_recovered_free(&rec);
    static struct group g;
    group_fill(&g, &m, 10, 1);
    g.e[6].index += 5; /* batch 6 does not follow the log */
    uint32_t n_written = 0;
    assert_int_equal(wal_write_group(w, g.p, 10, true, &n_written), WAL_EINVAL);
    assert_int_equal(n_written, 6);
    group_commit_model(&m, &g, 6);
    assert_int_equal(wal_last_index(w), sh_model_last(&m));
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    /* disk full after a few more batches: take the segment's zero-filled room away
     * (everything in it is synced) so that the next writes need new space */
    group_fill(&g, &m, 10, 2);
    char path[ENV_PATH_MAX];
    uint64_t used = 0;
    last_segment(fs, path, &used);
    SH_ASSERT_OK(simfs_set_size(fs, path, used));
    struct simfs_faults faults = {.capacity_bytes = simfs_used_bytes(fs) + 3 * 60 + 30};
    simfs_set_faults(fs, &faults);
    const int rv = wal_write_group(w, g.p, 10, true, &n_written);
    assert_int_equal(rv, WAL_ENOSPC);
    assert_true(n_written >= 1 && n_written < 10);
    group_commit_model(&m, &g, n_written);
    assert_int_equal(wal_last_index(w), sh_model_last(&m));
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    wal_close(w);
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_inspect(simfs_env(fs), DIR, &rep, msg, sizeof(msg)));
    assert_int_equal(rep.status, 0);
    assert_false(rep.torn_tail); /* nothing half written */
    wal_report_free(&rep);
    w = open_ok(fs, &rec);
    SH_ASSERT_SAME(&rec, &m);
    assert_int_equal(rec.torn_bytes_dropped, 0);
    wal_recovered_free(&rec);
    wal_close(w);
    g_segment_bytes = SMALL_SEGMENTS;
    simfs_free(fs);
}

/* ---- posix smoke ------------------------------------------------------------------ */

static void rm_dir_files(const char *dir)
{
    struct env *env = env_posix();
    for (uint64_t seq = 1; seq < 64; seq++) {
        char name[WAL_NAME_BYTES];
        char path[ENV_PATH_MAX];
        snprintf(name, sizeof(name), "wal-%016llx.log", (unsigned long long)seq);
        if (env_path_join(path, sizeof(path), dir, name) == 0) {
            env->unlink(env, path);
        }
    }
    rmdir(dir);
}

static void test_posix_smoke(void **state)
{
    char tmpl[] = "/tmp/conclave-test-wal-XXXXXX";
    char *base = mkdtemp(tmpl);
    assert_non_null(base);
    char dir[ENV_PATH_MAX];
    SH_ASSERT_OK(env_path_join(dir, sizeof(dir), base, "d"));
    struct wal_options o;
    wal_options_default(&o);
    o.segment_bytes = 4096;
    struct wal *w;
    struct wal_recovered rec;
    char msg[WAL_MSG_BYTES];
    SH_ASSERT_OK(wal_open(env_posix(), dir, &o, &w, &rec, msg, sizeof(msg)));
    wal_recovered_free(&rec);
    struct sh_model m;
    sh_model_init(&m);
    for (int i = 0; i < 200; i++) {
        SH_ASSERT_OK(sh_append(w, &m, 1 + (uint64_t)i / 50));
        if (i % 20 == 0) {
            SH_ASSERT_OK(wal_sync(w, NULL, NULL));
        }
    }
    const struct raft_hard_state hs = {4, 1, 150};
    SH_ASSERT_OK(wal_set_hard_state(w, &hs));
    m.hs = hs;
    m.has_hs = true;
    SH_ASSERT_OK(wal_sync(w, NULL, NULL));
    SH_ASSERT_OK(wal_compact(w, 100, NULL));
    wal_close(w);
    SH_ASSERT_OK(wal_open(env_posix(), dir, &o, &w, &rec, msg, sizeof(msg)));
    assert_true(rec.first_index <= 101);
    assert_int_equal(rec.last_index, 200);
    assert_int_equal(rec.hard_state.commit, 150);
    for (uint64_t k = 0; k < rec.n_entries; k++) {
        const uint64_t index = rec.first_index + k;
        assert_true(sh_entry_ok(&rec.entries[k], index, m.terms[index - 1]));
    }
    wal_recovered_free(&rec);
    wal_close(w);
    rm_dir_files(dir);
    assert_int_equal(rmdir(base), 0);
}

/* ---- main ------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncate_then_append),
        cmocka_unit_test(test_hard_state),
        cmocka_unit_test(test_snapshot_marker),
        cmocka_unit_test(test_snapshot_at_segment_base_with_new_term),
        cmocka_unit_test(test_roll_segments),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_crash_keeps_synced),
        cmocka_unit_test(test_torn_tail_cut_every_offset),
        cmocka_unit_test(test_torn_tail_zeroed_every_offset),
        cmocka_unit_test(test_torn_segment_creation),
        cmocka_unit_test(test_flip_every_bit),
        cmocka_unit_test(test_inspect_names_the_record),
        cmocka_unit_test(test_missing_segment),
        cmocka_unit_test(test_fsync_error_is_fatal),
        cmocka_unit_test(test_enospc),
        cmocka_unit_test(test_spare_prepared_and_used),
        cmocka_unit_test(test_zero_fill_off),
        cmocka_unit_test(test_stale_spare_never_read),
        cmocka_unit_test(test_crash_at_every_call_with_spares),
        cmocka_unit_test(test_spare_enospc),
        cmocka_unit_test(test_group_one_write_sealed),
        cmocka_unit_test(test_group_rolls_and_crash),
        cmocka_unit_test(test_group_partial_failure),
        cmocka_unit_test(test_posix_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
