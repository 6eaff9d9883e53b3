/* wal_bench.c -- Conclave's write-ahead log against the bare fdatasync rate of the same
 * disk (issue #3, "Benchmark"; docs/bench.md explains how to read the output).
 *
 *   wal_bench [--dir D] [--seconds-per-run S] [--reps R] [--max-mib-per-run M]
 *             [--json FILE] [--only NAME] [--strict]
 *
 * Paths (each run in a fresh WAL directory, opened with the node's default options, so
 * the first 64 MiB segment is preallocated before the clock starts; one untimed warm-up
 * batch follows):
 *   wal      one wal_write() of N entries + one wal_sync(), again and again, on this
 *            thread: the WAL's own cost.
 *   storage  one storage_submit() of N entries, then wait for its completion: the path
 *            the node takes (storage/storage_thread.h), hand-off and copy included.
 *   pipe     single-entry storage_submit()s with WB_PIPE_WINDOW in flight: what group
 *            commit makes of many concurrent one-entry proposals.
 * Entry sizes 100 B, 1 KiB, 64 KiB; N = 1, 16, 256.
 *
 * Floors (bench/bench_util.h), on files in the same directory as the WAL:
 *   append     write 4 KiB + fdatasync, the file growing: the "bare fdatasync
 *              rate". Every run ALTERNATES slices of it (half as long) with slices of
 *              the config, WB_SLICES_PER_RUN times, and its ratios are taken against
 *              the floor measured in its own run: the machine is shared, and its disk
 *              gets 2-5x slower for seconds at a time, so only a finely interleaved
 *              floor is a fair comparison.
 *   overwrite  pwrite 4 KiB over blocks written and synced before: the device's flush
 *              without any file system metadata. Once per repetition, for context only.
 *
 * A run ends after --seconds-per-run of config time or --max-mib-per-run MiB of entry
 * payload (64 KiB x 256 is 16 MiB per batch), whichever comes first. Every config runs
 * --reps times; repetitions are interleaved (rep 1 of every config, then rep 2 in
 * reverse order, ...), and the table shows medians over repetitions.
 *
 * Each run checks itself: every wal_sync() and completion must report the last written
 * index durable, and in the first repetition the WAL is reopened afterwards and must
 * recover exactly the entries written. Then its directory is removed; the temp dir under --dir goes
 * at the end (also after SIGINT/SIGTERM).
 *
 * Output: a table on stdout, the issue's two targets as PASS/MISS lines, and a JSON file
 * (default build/bench/wal.json) with every repetition. Exit status 0, 1 on an error,
 * 2 on bad usage, 3 with --strict when a target is missed, 130 when interrupted.
 *
 * Sections: limits and options | temp directories | runs | statistics | report | main.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <dirent.h>

#include "base/assert.h"
#include "bench_util.h"
#include "storage/storage_thread.h"
#include "storage/wal.h"

/* ---- limits and options ----------------------------------------------------------- */

#define WB_REPS_MAX          50          /* bounds the per-config result arrays */
#define WB_SECONDS_MAX       60.0        /* per run */
#define WB_MIB_MAX           4096        /* payload per run */
#define WB_SAMPLES_MAX       (1u << 20)  /* latency samples per run: a run ends when full */
#define WB_BATCH_MAX         256         /* entries per batch */
#define WB_ENTRY_BYTES_MAX   (64u << 10) /* largest entry measured */
#define WB_BATCH_PAYLOAD_MAX ((uint64_t)WB_BATCH_MAX * WB_ENTRY_BYTES_MAX) /* 16 MiB buffer */
#define WB_PIPE_WINDOW       256    /* single-entry submits in flight in "pipe" */
#define WB_SLICES_PER_RUN    6      /* floor/config alternations within one run */
#define WB_PIPE_RING         512    /* submit times of in-flight entries; >= window */
#define WB_DIR_ENTRIES_MAX   100000 /* bounds the clean-up listing of one directory */
#define WB_PATH_BYTES        ENV_PATH_MAX
#define WB_TARGET_RATE       0.80 /* (a): 256 x 100 B >= 80% of floor rate x 256 */
#define WB_TARGET_LATENCY    1.20 /* (b): 1-entry p50 <= 1.2 x floor p50 */

_Static_assert(WB_ENTRY_BYTES_MAX <= RAFT_ENTRY_BYTES_MAX, "the WAL takes the largest entry");
_Static_assert(WB_BATCH_PAYLOAD_MAX <= STORAGE_INFLIGHT_BYTES_MAX,
               "one storage batch fits the in-flight bound");
_Static_assert(WB_PIPE_WINDOW <= STORAGE_INFLIGHT_MAX, "the pipe window fits the queue");
_Static_assert(WB_PIPE_RING >= WB_PIPE_WINDOW, "every in-flight submit has a ring slot");

enum wb_path { WB_WAL = 1, WB_STORAGE = 2, WB_PIPE = 3 };

struct wb_config {
    enum wb_path path;
    uint32_t entry_bytes;
    uint32_t batch; /* entries per wal_write / submit; for WB_PIPE the window */
};

static const struct wb_config wb_configs[] = {
    {WB_WAL, 100, 1},
    {WB_WAL, 100, 16},
    {WB_WAL, 100, 256},
    {WB_WAL, 1024, 1},
    {WB_WAL, 1024, 16},
    {WB_WAL, 1024, 256},
    {WB_WAL, 65536, 1},
    {WB_WAL, 65536, 16},
    {WB_WAL, 65536, 256},
    {WB_STORAGE, 100, 1},
    {WB_STORAGE, 100, 16},
    {WB_STORAGE, 100, 256},
    {WB_STORAGE, 1024, 1},
    {WB_STORAGE, 1024, 16},
    {WB_STORAGE, 1024, 256},
    {WB_STORAGE, 65536, 1},
    {WB_STORAGE, 65536, 16},
    {WB_STORAGE, 65536, 256},
    {WB_PIPE, 100, WB_PIPE_WINDOW},
};
#define WB_N_CONFIGS (sizeof(wb_configs) / sizeof(wb_configs[0]))

struct wb_options {
    const char *dir;
    const char *json_path;
    const char *only; /* NULL, or the one config to run (for perf), e.g. "wal-100-256" */
    double seconds;   /* config time per run; its interleaved floor takes half that */
    uint32_t reps;
    uint64_t max_bytes; /* entry payload per run */
    bool strict;
};

static const char *wb_path_name(enum wb_path p)
{
    switch (p) {
    case WB_WAL:
        return "wal";
    case WB_STORAGE:
        return "storage";
    case WB_PIPE:
        return "pipe";
    }
    return "?";
}

/* "wal-100-256": path, entry bytes, entries per batch (pipe: the window). */
static void wb_config_name(const struct wb_config *cf, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s-%" PRIu32 "-%" PRIu32, wb_path_name(cf->path), cf->entry_bytes,
             cf->batch);
}

static bool wb_config_selected(const struct wb_options *o, const struct wb_config *cf)
{
    char name[48];
    wb_config_name(cf, name, sizeof(name));
    return o->only == NULL || strcmp(o->only, name) == 0;
}

static volatile sig_atomic_t wb_stop; /* SIGINT/SIGTERM: finish the current batch, clean up */

static void wb_on_signal(int sig)
{
    (void)sig;
    wb_stop = 1;
}

static void wb_usage(FILE *f)
{
    fprintf(f, "usage: wal_bench [--dir D] [--seconds-per-run S] [--reps R]\n"
               "                 [--max-mib-per-run M] [--json FILE] [--only NAME] [--strict]\n"
               "  --dir D              parent of the temp dir for WAL data "
               "(default build/bench/wal-tmp)\n"
               "  --seconds-per-run S  config time of one run, 0 < S <= 60 (default 0.5); the\n"
               "                       append floor interleaved with it takes S/2 more\n"
               "  --reps R             repetitions of every config, 1..50 (default 3)\n"
               "  --max-mib-per-run M  entry payload after which a run ends (default 64)\n"
               "  --json FILE          results (default build/bench/wal.json)\n"
               "  --only NAME          run one config, e.g. wal-100-256 or storage-65536-1 or\n"
               "                       pipe-100-256 (for profiling; targets of others SKIP)\n"
               "  --strict             exit 3 when a target is missed\n");
}

static int wb_parse_args(int argc, char **argv, struct wb_options *o)
{
    *o = (struct wb_options){.dir = "build/bench/wal-tmp",
                             .json_path = "build/bench/wal.json",
                             .seconds = 0.5,
                             .reps = 3,
                             .max_bytes = UINT64_C(64) << 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--strict") == 0) {
            o->strict = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            wb_usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            fprintf(stderr, "wal_bench: %s needs a value\n", a);
            return -1;
        }
        i++;
        errno = 0;
        if (strcmp(a, "--dir") == 0) {
            o->dir = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json_path = v;
        } else if (strcmp(a, "--only") == 0) {
            o->only = v;
        } else if (strcmp(a, "--seconds-per-run") == 0) {
            o->seconds = strtod(v, &end);
            if (errno != 0 || *end != '\0' || !(o->seconds > 0) || o->seconds > WB_SECONDS_MAX) {
                fprintf(stderr, "wal_bench: --seconds-per-run must be in (0, %g]\n",
                        WB_SECONDS_MAX);
                return -1;
            }
        } else if (strcmp(a, "--reps") == 0) {
            const unsigned long r = strtoul(v, &end, 10);
            if (errno != 0 || *end != '\0' || r < 1 || r > WB_REPS_MAX) {
                fprintf(stderr, "wal_bench: --reps must be in [1, %d]\n", WB_REPS_MAX);
                return -1;
            }
            o->reps = (uint32_t)r;
        } else if (strcmp(a, "--max-mib-per-run") == 0) {
            const unsigned long m = strtoul(v, &end, 10);
            if (errno != 0 || *end != '\0' || m < 1 || m > WB_MIB_MAX) {
                fprintf(stderr, "wal_bench: --max-mib-per-run must be in [1, %d]\n", WB_MIB_MAX);
                return -1;
            }
            o->max_bytes = (uint64_t)m << 20;
        } else {
            fprintf(stderr, "wal_bench: unknown option %s\n", a);
            return -1;
        }
    }
    return 0;
}

/* ---- temp directories ------------------------------------------------------------- */

/* mkdir -p: creates path and its missing parents. Returns 0 or -1 (message printed). */
static int wb_mkdirs(const char *path)
{
    char buf[WB_PATH_BYTES];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        fprintf(stderr, "wal_bench: path too long: %s\n", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        const bool at_end = *p == '\0';
        if (*p != '/' && !at_end) {
            continue;
        }
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "wal_bench: mkdir %s: %s\n", buf, strerror(errno));
            return -1;
        }
        if (at_end) {
            return 0;
        }
        *p = '/';
    }
}

/* Removes dir and the plain files in it (the benchmark creates nothing deeper). Errors
 * are reported, not fatal: the numbers are already measured. */
static void wb_rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno != ENOENT) {
            fprintf(stderr, "wal_bench: opendir %s: %s\n", dir, strerror(errno));
        }
        return;
    }
    char path[WB_PATH_BYTES];
    struct dirent *e;
    for (uint32_t n = 0; n < WB_DIR_ENTRIES_MAX && (e = readdir(d)) != NULL; n++) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if (env_path_join(path, sizeof(path), dir, e->d_name) != 0 || unlink(path) != 0) {
            fprintf(stderr, "wal_bench: cannot remove %s/%s: %s\n", dir, e->d_name,
                    strerror(errno));
        }
    }
    closedir(d);
    if (rmdir(dir) != 0) {
        fprintf(stderr, "wal_bench: rmdir %s: %s\n", dir, strerror(errno));
    }
}

/* ---- runs ------------------------------------------------------------------------- */

/* What one run of a config measured. */
struct wb_run {
    double seconds;     /* time spent in the config's slices (floor slices excluded) */
    uint64_t n_batches; /* wal_write+wal_sync pairs, or completed submits */
    uint64_t n_entries;
    uint64_t n_syncs; /* sealing fdatasyncs (wal_stats.n_syncs delta) */
    uint64_t n_payload_bytes;
    uint64_t n_record_bytes; /* WAL record bytes written, seals excluded */
    uint64_t n_segments_created;
    uint64_t max_group; /* storage/pipe: most submits one sync covered */
    double p50_us;      /* per batch (pipe: per entry, submit to completion) */
    double p99_us;
    double write_us;          /* wal path: time in wal_write (encode + pwrite), summed */
    double sync_us;           /* wal path: time in wal_sync (seal + fdatasync), summed */
    struct bench_floor floor; /* the append-floor slices interleaved with this run */
};

/* Buffers shared by every run: entry payload and latency samples. */
struct wb_ctx {
    const struct wb_options *o;
    char tmp_dir[WB_PATH_BYTES];
    uint8_t *payload;           /* WB_BATCH_MAX * WB_ENTRY_BYTES_MAX bytes */
    struct raft_entry *entries; /* WB_BATCH_MAX */
    double *sample_us;          /* WB_SAMPLES_MAX, the config's */
    double *floor_us;           /* WB_SAMPLES_MAX, the floor's */
    uint32_t n_runs_started;    /* names the per-run WAL directories */
    bool verify;                /* reopen and check each WAL after its run */
};

/* The state of one run between its slices. */
struct wb_runner {
    const struct wb_config *cf;
    struct wal *wal;
    struct storage *st;  /* storage and pipe paths */
    uint64_t next_index; /* of the next entry to write */
    uint64_t n_samples;  /* in ctx.sample_us */
    struct bench_floor_file floor;
    uint64_t n_floor; /* samples in ctx.floor_us */
    double floor_seconds;
};

/* Points entries[0..n) at consecutive payload slices, indexes from first_index on. */
static void wb_fill_batch(struct wb_ctx *c, uint32_t entry_bytes, uint32_t n, uint64_t first_index)
{
    CC_ASSERT(n <= WB_BATCH_MAX);
    CC_ASSERT(entry_bytes <= WB_ENTRY_BYTES_MAX);
    for (uint32_t i = 0; i < n; i++) {
        c->entries[i] = (struct raft_entry){.term = 1,
                                            .index = first_index + i,
                                            .type = RAFT_ENTRY_COMMAND,
                                            .n_bytes = entry_bytes,
                                            .bytes = c->payload + (size_t)i * entry_bytes};
    }
}

/* The run has what it needs: its time, its payload budget, or a full sample array. */
static bool wb_run_done(const struct wb_ctx *c, const struct wb_runner *rn, const struct wb_run *r)
{
    return wb_stop || r->seconds >= c->o->seconds || r->n_payload_bytes >= c->o->max_bytes ||
           rn->n_samples >= WB_SAMPLES_MAX;
}

static int wb_fail(const char *what, int rv)
{
    fprintf(stderr, "wal_bench: %s: %s\n", what, storage_strerror(rv)); /* names WAL codes too */
    return -1;
}

/* One batch of the "wal" path: write + sync on this thread. */
static int wb_batch_wal(struct wb_ctx *c, struct wb_runner *rn, struct wb_run *r)
{
    const struct wb_config *cf = rn->cf;
    const uint64_t last = rn->next_index + cf->batch - 1;
    wb_fill_batch(c, cf->entry_bytes, cf->batch, rn->next_index);
    const struct wal_batch b = {.entries = c->entries, .n_entries = cf->batch};
    const double t0 = bench_now_us();
    int rv = wal_write(rn->wal, &b);
    const double t1 = bench_now_us();
    uint64_t durable = 0;
    if (rv == 0) {
        rv = wal_sync(rn->wal, &durable, NULL);
    }
    const double t2 = bench_now_us();
    c->sample_us[rn->n_samples++] = t2 - t0;
    r->write_us += t1 - t0;
    r->sync_us += t2 - t1;
    if (rv != 0) {
        return wb_fail("wal_write/wal_sync", rv);
    }
    if (durable != last) {
        fprintf(stderr, "wal_bench: wal_sync reported %" PRIu64 " durable, wrote %" PRIu64 "\n",
                durable, last);
        return -1;
    }
    rn->next_index = last + 1;
    r->n_batches++;
    r->n_entries += cf->batch;
    r->n_payload_bytes += (uint64_t)cf->batch * cf->entry_bytes;
    return 0;
}

/* Waits for one completion and checks it. */
static int wb_wait_one(struct storage *s, struct storage_completion *done)
{
    storage_wait(s);
    if (storage_poll(s, done, 1) != 1) {
        fprintf(stderr, "wal_bench: storage_wait returned with nothing to poll\n");
        return -1;
    }
    if (done->status != 0) {
        return wb_fail("storage batch", done->status);
    }
    return 0;
}

/* One batch of the "storage" path: submit it, wait for its completion. */
static int wb_batch_storage(struct wb_ctx *c, struct wb_runner *rn, struct wb_run *r)
{
    const struct wb_config *cf = rn->cf;
    const uint64_t last = rn->next_index + cf->batch - 1;
    wb_fill_batch(c, cf->entry_bytes, cf->batch, rn->next_index);
    const struct wal_batch b = {.entries = c->entries, .n_entries = cf->batch};
    const double t0 = bench_now_us();
    const int rv = storage_submit(rn->st, &b, NULL);
    if (rv != 0) {
        return wb_fail("storage_submit", rv);
    }
    struct storage_completion done;
    if (wb_wait_one(rn->st, &done) != 0) {
        return -1;
    }
    c->sample_us[rn->n_samples++] = bench_now_us() - t0;
    if (done.durable_index != last) {
        fprintf(stderr, "wal_bench: completion says %" PRIu64 " durable, wrote %" PRIu64 "\n",
                done.durable_index, last);
        return -1;
    }
    rn->next_index = last + 1;
    r->n_batches++;
    r->n_entries += cf->batch;
    r->n_payload_bytes += (uint64_t)cf->batch * cf->entry_bytes;
    return 0;
}

/* A slice of the "pipe" path: keep cf->batch single-entry submits in flight until
 * end_us, then drain them all. Latency is per entry, from its submit to its completion. */
static int wb_slice_pipe(struct wb_ctx *c, struct wb_runner *rn, struct wb_run *r, double end_us)
{
    const struct wb_config *cf = rn->cf;
    CC_ASSERT(cf->batch <= WB_PIPE_WINDOW);
    double submit_us[WB_PIPE_RING];
    struct storage_completion done[WB_PIPE_WINDOW];
    const uint64_t first = rn->next_index;
    uint64_t n_submitted = 0;
    uint64_t n_done = 0;
    bool submitting = true;
    /* Every pass completes at least one submit, so this bounds the loop. */
    for (uint64_t pass = 0; pass <= WB_SAMPLES_MAX; pass++) {
        if (bench_now_us() >= end_us || wb_run_done(c, rn, r)) {
            submitting = false;
        }
        while (submitting && n_submitted - n_done < cf->batch &&
               rn->n_samples + n_submitted < WB_SAMPLES_MAX) {
            wb_fill_batch(c, cf->entry_bytes, 1, first + n_submitted);
            const struct wal_batch b = {.entries = c->entries, .n_entries = 1};
            submit_us[n_submitted % WB_PIPE_RING] = bench_now_us();
            const int rv = storage_submit(rn->st, &b, NULL);
            if (rv != 0) {
                return wb_fail("storage_submit", rv);
            }
            n_submitted++;
            r->n_payload_bytes += cf->entry_bytes;
        }
        if (n_done == n_submitted) {
            break;
        }
        storage_wait(rn->st);
        const uint32_t k = storage_poll(rn->st, done, WB_PIPE_WINDOW);
        const double now = bench_now_us();
        for (uint32_t i = 0; i < k; i++, n_done++) {
            if (done[i].status != 0) {
                return wb_fail("storage batch", done[i].status);
            }
            if (done[i].durable_index < first + n_done) {
                fprintf(stderr, "wal_bench: entry %" PRIu64 " completed, not durable\n",
                        first + n_done);
                return -1;
            }
            c->sample_us[rn->n_samples++] = now - submit_us[n_done % WB_PIPE_RING];
        }
    }
    CC_ASSERT(n_done == n_submitted);
    rn->next_index = first + n_done;
    r->n_batches += n_done;
    r->n_entries += n_done;
    return 0;
}

/* One slice of the config: batches until end_us (at least one, unless the run is done). */
static int wb_slice(struct wb_ctx *c, struct wb_runner *rn, struct wb_run *r, double end_us)
{
    const double t0 = bench_now_us();
    int rv = 0;
    if (rn->cf->path == WB_PIPE) {
        rv = wb_slice_pipe(c, rn, r, end_us);
    } else {
        do {
            rv = rn->cf->path == WB_WAL ? wb_batch_wal(c, rn, r) : wb_batch_storage(c, rn, r);
        } while (rv == 0 && bench_now_us() < end_us && !wb_run_done(c, rn, r));
    }
    r->seconds += (bench_now_us() - t0) / 1e6;
    return rv;
}

/* One slice of the append floor: write + fdatasync until end_us (at least one). */
static int wb_slice_floor(struct wb_ctx *c, struct wb_runner *rn, double end_us)
{
    const double t0 = bench_now_us();
    int rv = 0;
    do {
        rv = bench_floor_op(&rn->floor, &c->floor_us[rn->n_floor]);
        rn->n_floor += rv == 0;
    } while (rv == 0 && bench_now_us() < end_us && rn->n_floor < WB_SAMPLES_MAX && !wb_stop);
    rn->floor_seconds += (bench_now_us() - t0) / 1e6;
    if (rv != 0) {
        fprintf(stderr, "wal_bench: write+fdatasync (floor): %s\n", strerror(-rv));
        return -1;
    }
    return 0;
}

/* Reopens the WAL in dir and checks it recovers exactly entries 1..last_index. */
static int wb_verify(const char *dir, uint64_t last_index)
{
    struct wal_options wo;
    wal_options_default(&wo);
    struct wal *w = NULL;
    struct wal_recovered rec;
    char msg[WAL_MSG_BYTES];
    const int rv = wal_open(env_posix(), dir, &wo, &w, &rec, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "wal_bench: reopening %s: %s (%s)\n", dir, wal_strerror(rv), msg);
        return -1;
    }
    const bool ok = rec.last_index == last_index && rec.n_entries == last_index &&
                    rec.first_index == 1 && rec.torn_bytes_dropped == 0;
    if (!ok) {
        fprintf(stderr,
                "wal_bench: %s recovered entries %" PRIu64 "..%" PRIu64 " (%" PRIu64
                " torn bytes), expected 1..%" PRIu64 "\n",
                dir, rec.first_index, rec.last_index, rec.torn_bytes_dropped, last_index);
    }
    wal_recovered_free(&rec);
    wal_close(w);
    return ok ? 0 : -1;
}

/* The timed part of a run: alternate floor slices (half as long) and config slices until
 * the run is done. The floor file sits next to the WAL directory. */
static int wb_run_slices(struct wb_ctx *c, struct wb_runner *rn, struct wb_run *r,
                         const char *floor_path)
{
    int rv = bench_floor_open(&rn->floor, floor_path, BENCH_FLOOR_APPEND);
    if (rv != 0) {
        fprintf(stderr, "wal_bench: open %s: %s\n", floor_path, strerror(-rv));
        bench_floor_close(&rn->floor, floor_path);
        return -1;
    }
    const double slice_us = c->o->seconds * 1e6 / WB_SLICES_PER_RUN;
    /* Each pass adds at least one batch or a slice of time, so this bounds the loop. */
    for (uint64_t pass = 0; pass <= WB_SAMPLES_MAX && rv == 0 && !wb_run_done(c, rn, r); pass++) {
        rv = wb_slice_floor(c, rn, bench_now_us() + slice_us / 2);
        if (rv == 0) {
            rv = wb_slice(c, rn, r, bench_now_us() + slice_us);
        }
    }
    bench_floor_close(&rn->floor, floor_path);
    bench_floor_stats(c->floor_us, rn->n_floor, rn->floor_seconds, &r->floor);
    return rv;
}

/* One measured run of cf in a fresh WAL directory. */
static int wb_run_config(struct wb_ctx *c, const struct wb_config *cf, struct wb_run *r)
{
    memset(r, 0, sizeof(*r));
    char floor_path[WB_PATH_BYTES];
    char path[WB_PATH_BYTES];
    char name[32];
    snprintf(name, sizeof(name), "wal-%" PRIu32, ++c->n_runs_started);
    if (env_path_join(floor_path, sizeof(floor_path), c->tmp_dir, "floor.tmp") != 0 ||
        env_path_join(path, sizeof(path), c->tmp_dir, name) != 0) {
        fprintf(stderr, "wal_bench: path too long under %s\n", c->tmp_dir);
        return -1;
    }
    struct wal_options wo;
    wal_options_default(&wo); /* what the node uses: 64 MiB preallocated segments */
    wo.create = true;
    struct wb_runner rn = {.cf = cf};
    struct wal_recovered rec;
    char msg[WAL_MSG_BYTES];
    int rv = wal_open(env_posix(), path, &wo, &rn.wal, &rec, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "wal_bench: wal_open %s: %s (%s)\n", path, wal_strerror(rv), msg);
        wb_rm_dir(path);
        return -1;
    }
    wal_recovered_free(&rec);

    /* Untimed warm-up: one batch of this shape, synced (buffers grow, pages fault in). */
    const uint32_t n_warm = cf->path == WB_PIPE ? 1 : cf->batch;
    wb_fill_batch(c, cf->entry_bytes, n_warm, 1);
    const struct wal_batch warm = {.entries = c->entries, .n_entries = n_warm};
    rv = wal_write(rn.wal, &warm);
    if (rv == 0) {
        rv = wal_sync(rn.wal, NULL, NULL);
    }
    struct wal_stats before;
    wal_get_stats(rn.wal, &before);
    rn.next_index = wal_last_index(rn.wal) + 1;
    if (rv != 0) {
        rv = wb_fail("warm-up batch", rv);
    } else if (cf->path == WB_WAL) {
        rv = wb_run_slices(c, &rn, r, floor_path);
    } else {
        rv = storage_start(rn.wal, NULL, &rn.st);
        if (rv != 0) {
            rv = wb_fail("storage_start", rv);
        } else {
            rv = wb_run_slices(c, &rn, r, floor_path);
            struct storage_stats ss;
            storage_get_stats(rn.st, &ss);
            r->max_group = ss.max_group;
            storage_stop(rn.st); /* the WAL is ours again */
        }
    }
    if (rv == 0) {
        struct wal_stats after;
        wal_get_stats(rn.wal, &after);
        r->n_syncs = after.n_syncs - before.n_syncs;
        r->n_record_bytes = after.n_bytes - before.n_bytes;
        r->n_segments_created = after.n_segments_created - before.n_segments_created;
        bench_sort(c->sample_us, (size_t)rn.n_samples);
        r->p50_us = bench_quantile(c->sample_us, (size_t)rn.n_samples, 0.5);
        r->p99_us = bench_quantile(c->sample_us, (size_t)rn.n_samples, 0.99);
    }
    const uint64_t last_index = wal_last_index(rn.wal);
    wal_close(rn.wal);
    if (rv == 0 && c->verify && !wb_stop) {
        rv = wb_verify(path, last_index);
    }
    wb_rm_dir(path);
    return rv;
}

/* ---- statistics ------------------------------------------------------------------- */

/* Medians over the repetitions of one config. Ratios are taken per repetition against
 * its own floor run, then their median is reported. */
struct wb_summary {
    double entries_per_s;
    double mb_per_s;     /* entry payload, 10^6 bytes */
    double groups_per_s; /* batches/s; pipe: sealing syncs/s */
    double p50_us;
    double p99_us;
    double rate_vs_floor; /* groups/s / floor syncs/s */
    double p50_vs_floor;  /* p50 / floor p50 */
};

static double wb_groups(const struct wb_config *cf, const struct wb_run *r)
{
    return cf->path == WB_PIPE ? (double)r->n_syncs : (double)r->n_batches;
}

static void wb_summarize(const struct wb_config *cf, const struct wb_run *runs, uint32_t n,
                         struct wb_summary *out)
{
    double v[7][WB_REPS_MAX];
    for (uint32_t i = 0; i < n; i++) {
        const struct wb_run *r = &runs[i];
        const double s = r->seconds > 0 ? r->seconds : 1e-9;
        v[0][i] = (double)r->n_entries / s;
        v[1][i] = (double)r->n_payload_bytes / s / 1e6;
        v[2][i] = wb_groups(cf, r) / s;
        v[3][i] = r->p50_us;
        v[4][i] = r->p99_us;
        v[5][i] = r->floor.syncs_per_s > 0 ? v[2][i] / r->floor.syncs_per_s : 0;
        v[6][i] = r->floor.p50_us > 0 ? r->p50_us / r->floor.p50_us : 0;
    }
    out->entries_per_s = bench_median(v[0], n);
    out->mb_per_s = bench_median(v[1], n);
    out->groups_per_s = bench_median(v[2], n);
    out->p50_us = bench_median(v[3], n);
    out->p99_us = bench_median(v[4], n);
    out->rate_vs_floor = bench_median(v[5], n);
    out->p50_vs_floor = bench_median(v[6], n);
}

/* ---- report ----------------------------------------------------------------------- */

struct wb_target {
    const char *name;
    const char *what;
    enum wb_path path;
    uint32_t entry_bytes;
    uint32_t batch;
    bool is_latency; /* checks p50_vs_floor <= limit, else rate_vs_floor >= limit */
    double limit;
};

static const struct wb_target wb_targets[] = {
    {"a", "256 x 100 B batches >= 80% of floor rate x 256", WB_WAL, 100, 256, false,
     WB_TARGET_RATE},
    {"a", "256 x 100 B batches >= 80% of floor rate x 256", WB_STORAGE, 100, 256, false,
     WB_TARGET_RATE},
    {"b", "1 x 100 B append+sync p50 <= 1.2 x floor p50", WB_WAL, 100, 1, true, WB_TARGET_LATENCY},
    {"b", "1 x 100 B append+sync p50 <= 1.2 x floor p50", WB_STORAGE, 100, 1, true,
     WB_TARGET_LATENCY},
};
#define WB_N_TARGETS (sizeof(wb_targets) / sizeof(wb_targets[0]))

static int wb_config_index(enum wb_path path, uint32_t entry_bytes, uint32_t batch)
{
    for (size_t i = 0; i < WB_N_CONFIGS; i++) {
        if (wb_configs[i].path == path && wb_configs[i].entry_bytes == entry_bytes &&
            wb_configs[i].batch == batch) {
            return (int)i;
        }
    }
    return -1;
}

static const char *wb_size_name(uint32_t bytes)
{
    return bytes == 100 ? "100 B" : bytes == 1024 ? "1 KiB" : bytes == 65536 ? "64 KiB" : "?";
}

static json_t *wb_run_json(const struct wb_run *r)
{
    const double n = r->n_batches > 0 ? (double)r->n_batches : 1;
    return json_pack("{s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:{s:I, s:f, "
                     "s:f, s:f, s:f}}",
                     "seconds", r->seconds, "batches", (json_int_t)r->n_batches, "entries",
                     (json_int_t)r->n_entries, "syncs", (json_int_t)r->n_syncs, "payload_bytes",
                     (json_int_t)r->n_payload_bytes, "record_bytes", (json_int_t)r->n_record_bytes,
                     "segments_created", (json_int_t)r->n_segments_created, "max_group",
                     (json_int_t)r->max_group, "p50_us", r->p50_us, "p99_us", r->p99_us,
                     "write_us_mean", r->write_us / n, "sync_us_mean", r->sync_us / n, "floor",
                     "syncs", (json_int_t)r->floor.n_syncs, "seconds", r->floor.seconds,
                     "syncs_per_s", r->floor.syncs_per_s, "p50_us", r->floor.p50_us, "p99_us",
                     r->floor.p99_us);
}

/* Everything measured: every run of every selected config, and the overwrite floor run
 * at the start of each repetition (context for docs/bench.md; no target uses it). */
struct wb_results {
    struct wb_run runs[WB_N_CONFIGS][WB_REPS_MAX];
    struct bench_floor overwrite[WB_REPS_MAX];
};

static int wb_report(const struct wb_options *o, const char *tmp_dir, struct wb_results *res,
                     double wall_s)
{
    struct wb_summary sum[WB_N_CONFIGS];
    double floor_rate[WB_N_CONFIGS * WB_REPS_MAX];
    double floor_p50[WB_N_CONFIGS * WB_REPS_MAX];
    double floor_p99[WB_N_CONFIGS * WB_REPS_MAX];
    size_t n_floor = 0;
    for (size_t i = 0; i < WB_N_CONFIGS; i++) {
        if (!wb_config_selected(o, &wb_configs[i])) {
            continue;
        }
        wb_summarize(&wb_configs[i], res->runs[i], o->reps, &sum[i]);
        for (uint32_t k = 0; k < o->reps; k++) {
            floor_rate[n_floor] = res->runs[i][k].floor.syncs_per_s;
            floor_p50[n_floor] = res->runs[i][k].floor.p50_us;
            floor_p99[n_floor] = res->runs[i][k].floor.p99_us;
            n_floor++;
        }
    }
    const double f_rate = bench_median(floor_rate, n_floor);
    const double f_p50 = bench_median(floor_p50, n_floor);
    const double f_p99 = bench_median(floor_p99, n_floor);
    double ow[3][WB_REPS_MAX];
    for (uint32_t k = 0; k < o->reps; k++) {
        ow[0][k] = res->overwrite[k].syncs_per_s;
        ow[1][k] = res->overwrite[k].p50_us;
        ow[2][k] = res->overwrite[k].p99_us;
    }
    const double ow_rate = bench_median(ow[0], o->reps);
    const double ow_p50 = bench_median(ow[1], o->reps);
    const double ow_p99 = bench_median(ow[2], o->reps);

    printf(
        "\nfloor (append):    write 4 KiB + fdatasync, file grows:  %6.0f syncs/s, p50 %4.0f us, "
        "p99 %5.0f us (median of %zu runs)\n",
        f_rate, f_p50, f_p99, n_floor);
    printf("floor (overwrite): pwrite 4 KiB over synced blocks:     %6.0f syncs/s, p50 %4.0f us, "
           "p99 %5.0f us (median of %" PRIu32 " runs)\n",
           ow_rate, ow_p50, ow_p99, o->reps);
    printf("in %s\n\n", tmp_dir);
    printf("%-8s %7s %6s %11s %9s %10s %9s %9s %8s %8s\n", "path", "entry", "batch", "entries/s",
           "MB/s", "batches/s", "p50 us", "p99 us", "rate/fl", "p50/fl");
    for (size_t i = 0; i < WB_N_CONFIGS; i++) {
        const struct wb_config *cf = &wb_configs[i];
        if (!wb_config_selected(o, cf)) {
            continue;
        }
        const struct wb_summary *s = &sum[i];
        char batch[16];
        snprintf(batch, sizeof(batch), cf->path == WB_PIPE ? "w%u" : "%u", cf->batch);
        printf("%-8s %7s %6s %11.0f %9.2f %10.0f %9.0f %9.0f %8.2f %8.2f\n", wb_path_name(cf->path),
               wb_size_name(cf->entry_bytes), batch, s->entries_per_s, s->mb_per_s, s->groups_per_s,
               s->p50_us, s->p99_us, s->rate_vs_floor, s->p50_vs_floor);
    }
    printf("\nwal = wal_write(N entries) + wal_sync() on the caller's thread; storage = one "
           "storage_submit(N) and\nwait (the node's path); pipe = 1-entry submits, %u in "
           "flight (batches/s = syncs/s, latency per entry).\nrate/fl = batches/s / floor "
           "syncs/s; p50/fl = p50 / floor p50: medians of per-rep ratios against the\n"
           "append floor measured in slices interleaved with each run. MB = 10^6 bytes of "
           "entry payload.\n\n",
           WB_PIPE_WINDOW);

    bool all_pass = true;
    json_t *targets = json_array();
    for (size_t t = 0; t < WB_N_TARGETS; t++) {
        const struct wb_target *tg = &wb_targets[t];
        const int i = wb_config_index(tg->path, tg->entry_bytes, tg->batch);
        CC_ASSERT(i >= 0);
        if (!wb_config_selected(o, &wb_configs[i])) {
            printf("target (%s) %-48s %-7s SKIP (not run)\n", tg->name, tg->what,
                   wb_path_name(tg->path));
            continue;
        }
        const double value = tg->is_latency ? sum[i].p50_vs_floor : sum[i].rate_vs_floor;
        const bool pass = tg->is_latency ? value <= tg->limit : value >= tg->limit;
        all_pass = all_pass && pass;
        printf("target (%s) %-48s %-7s %.2f %s %.2f  %s\n", tg->name, tg->what,
               wb_path_name(tg->path), value, tg->is_latency ? "<=" : ">=", tg->limit,
               pass ? "PASS" : "MISS");
        json_array_append_new(targets, json_pack("{s:s, s:s, s:s, s:f, s:f, s:b}", "name", tg->name,
                                                 "what", tg->what, "path", wb_path_name(tg->path),
                                                 "value", value, "limit", tg->limit, "pass", pass));
    }

    json_t *rows = json_array();
    for (size_t i = 0; i < WB_N_CONFIGS; i++) {
        const struct wb_config *cf = &wb_configs[i];
        if (!wb_config_selected(o, cf)) {
            continue;
        }
        char name[48];
        wb_config_name(cf, name, sizeof(name));
        json_t *reps = json_array();
        for (uint32_t k = 0; k < o->reps; k++) {
            json_array_append_new(reps, wb_run_json(&res->runs[i][k]));
        }
        json_array_append_new(
            rows,
            json_pack("{s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o}", "name", name,
                      "path", wb_path_name(cf->path), "entry_bytes", (int)cf->entry_bytes, "batch",
                      (int)cf->batch, "entries_per_s", sum[i].entries_per_s, "mb_per_s",
                      sum[i].mb_per_s, "batches_per_s", sum[i].groups_per_s, "p50_us",
                      sum[i].p50_us, "p99_us", sum[i].p99_us, "rate_vs_floor", sum[i].rate_vs_floor,
                      "p50_vs_floor", sum[i].p50_vs_floor, "reps", reps));
    }
    struct utsname u;
    const bool have_uname = uname(&u) == 0;
    char date[32] = "?";
    const time_t now = time(NULL); /* for humans reading the file; not core code */
    struct tm tm;
    if (gmtime_r(&now, &tm) != NULL) {
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:{s:s, s:f, s:i, s:I}, s:f, s:{s:f, s:f, s:f, s:i}, "
                  "s:{s:f, s:f, s:f, s:i}, s:o, s:o}",
                  "bench", "wal", "date", date, "kernel", have_uname ? u.release : "?", "options",
                  "dir", o->dir, "seconds_per_run", o->seconds, "reps", (int)o->reps,
                  "max_bytes_per_run", (json_int_t)o->max_bytes, "wall_seconds", wall_s,
                  "floor_append", "syncs_per_s", f_rate, "p50_us", f_p50, "p99_us", f_p99, "runs",
                  (int)n_floor, "floor_overwrite", "syncs_per_s", ow_rate, "p50_us", ow_p50,
                  "p99_us", ow_p99, "runs", (int)o->reps, "targets", targets, "rows", rows);
    int rv = 0;
    if (root == NULL) {
        fprintf(stderr, "wal_bench: cannot build the JSON result\n");
        rv = 1;
    } else if (json_dump_file(root, o->json_path, JSON_INDENT(1) | JSON_SORT_KEYS) != 0) {
        fprintf(stderr, "wal_bench: cannot write %s\n", o->json_path);
        rv = 1;
    } else {
        printf("\nresults: %s (%.0f s)\n", o->json_path, wall_s);
    }
    json_decref(root);
    if (rv == 0 && !all_pass && o->strict) {
        rv = 3;
    }
    return rv;
}

/* ---- main ------------------------------------------------------------------------- */

/* All repetitions, interleaved: each starts with an overwrite-floor run, then runs every
 * selected config (each preceded by its append-floor run); odd repetitions go backwards,
 * so no config always sits at the same point of a repetition. */
static int wb_run_all(struct wb_ctx *c, struct wb_results *res)
{
    const struct wb_options *o = c->o;
    const double t_start = bench_now_us();
    char path[WB_PATH_BYTES];
    if (env_path_join(path, sizeof(path), c->tmp_dir, "floor-ow.tmp") != 0) {
        fprintf(stderr, "wal_bench: path too long under %s\n", c->tmp_dir);
        return -1;
    }
    for (uint32_t k = 0; k < o->reps && !wb_stop; k++) {
        const int rv = bench_fdatasync_floor(path, BENCH_FLOOR_OVERWRITE, WB_SAMPLES_MAX,
                                             o->seconds / 2, c->sample_us, &res->overwrite[k]);
        if (rv != 0) {
            fprintf(stderr, "wal_bench: pwrite+fdatasync on %s: %s\n", path, strerror(-rv));
            return -1;
        }
        c->verify = k == 0; /* recovery reads whole segments: once per config is enough */
        for (size_t j = 0; j < WB_N_CONFIGS && !wb_stop; j++) {
            const size_t i = k % 2 == 0 ? j : WB_N_CONFIGS - 1 - j;
            if (!wb_config_selected(o, &wb_configs[i])) {
                continue;
            }
            if (wb_run_config(c, &wb_configs[i], &res->runs[i][k]) != 0) {
                char name[48];
                wb_config_name(&wb_configs[i], name, sizeof(name));
                fprintf(stderr, "wal_bench: run %s failed\n", name);
                return -1;
            }
        }
        if (wb_stop) {
            break;
        }
        printf("  rep %" PRIu32 "/%" PRIu32 " done (%.0f s)\n", k + 1, o->reps,
               (bench_now_us() - t_start) / 1e6);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct wb_options o;
    if (wb_parse_args(argc, argv, &o) != 0) {
        wb_usage(stderr);
        return 2;
    }
    size_t n_selected = 0;
    for (size_t i = 0; i < WB_N_CONFIGS; i++) {
        n_selected += wb_config_selected(&o, &wb_configs[i]);
    }
    if (n_selected == 0) {
        fprintf(stderr, "wal_bench: --only %s names no config (e.g. wal-100-256)\n", o.only);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = wb_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct wb_ctx c = {.o = &o};
    static struct wb_results res;
    int status = 1;
    c.payload = malloc((size_t)WB_BATCH_PAYLOAD_MAX);
    c.entries = calloc(WB_BATCH_MAX, sizeof(c.entries[0]));
    c.sample_us = calloc(WB_SAMPLES_MAX, sizeof(c.sample_us[0]));
    c.floor_us = calloc(WB_SAMPLES_MAX, sizeof(c.floor_us[0]));
    if (c.payload == NULL || c.entries == NULL || c.sample_us == NULL || c.floor_us == NULL) {
        fprintf(stderr, "wal_bench: out of memory\n");
        goto out;
    }
    /* Incompressible, deterministic payload (xorshift64). */
    uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
    for (size_t i = 0; i < (size_t)WB_BATCH_PAYLOAD_MAX; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.payload[i] = (uint8_t)x;
    }
    char json_dir[WB_PATH_BYTES];
    if (wb_mkdirs(o.dir) != 0 || env_path_parent(json_dir, sizeof(json_dir), o.json_path) != 0 ||
        wb_mkdirs(json_dir) != 0) {
        goto out;
    }
    if (snprintf(c.tmp_dir, sizeof(c.tmp_dir), "%s/run-XXXXXX", o.dir) >= (int)sizeof(c.tmp_dir) ||
        mkdtemp(c.tmp_dir) == NULL) {
        fprintf(stderr, "wal_bench: cannot create a temp dir under %s: %s\n", o.dir,
                strerror(errno));
        goto out;
    }
    printf("wal_bench: %zu configs x %" PRIu32 " reps, %.2f s per run (+%.2f s floor), at most "
           "%" PRIu64 " MiB per run, in %s\n",
           n_selected, o.reps, o.seconds, o.seconds / 2, o.max_bytes >> 20, c.tmp_dir);
    fflush(stdout);
    const double t_start = bench_now_us();
    if (wb_run_all(&c, &res) != 0) {
        goto out_after_tmp;
    }
    if (wb_stop) {
        fprintf(stderr, "wal_bench: interrupted\n");
        status = 130;
        goto out_after_tmp;
    }
    status = wb_report(&o, c.tmp_dir, &res, (bench_now_us() - t_start) / 1e6);

out_after_tmp:
    wb_rm_dir(c.tmp_dir);
out:
    free(c.floor_us);
    free(c.sample_us);
    free(c.entries);
    free(c.payload);
    return status;
}
