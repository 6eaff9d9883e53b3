/* bench_util.h -- small helpers shared by the C benchmarks in bench/: a monotonic clock,
 * order statistics over latency samples, and the bare "write 4 KiB + fdatasync" floor
 * (the fastest any durable append on that file system can be acknowledged), in two
 * flavours: appending (the file grows, so every fdatasync also commits the new size to
 * the file system journal) and overwriting blocks written and synced before (the
 * fdatasync has only data to flush: the device's own floor).
 *
 * Header-only (static inline) because every benchmark is one .c file linked on its own;
 * nothing here goes into libconclave.a. Benchmarks are not core code: they call the
 * clock and the disk directly, never through the env table, because they measure the
 * machine underneath it.
 *
 * Ownership: every buffer is the caller's. The floor functions create the one file they
 * are given; bench_floor_close() (called by bench_fdatasync_floor() in every case)
 * removes it.
 *
 * Sections: clock | order statistics | fdatasync floor | latency histogram.
 *
 * The latency histogram (struct bench_hist) is for drivers that take too many samples to
 * keep (an open-loop driver at 50k requests/s): HDR-style log-linear buckets over
 * nanoseconds, exact below 2^BENCH_HIST_SUB_BITS ns, within 1/2^BENCH_HIST_SUB_BITS
 * (0.8%) above; quantiles answer a bucket's upper edge (never below the true value, as
 * HdrHistogram's highestEquivalentValue), capped at the exact maximum. It is a plain
 * struct of counters: zero it to start, one per thread, merge with bench_hist_add().
 */
#ifndef CC_BENCH_BENCH_UTIL_H
#define CC_BENCH_BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- limits ----------------------------------------------------------------------- */

#define BENCH_FLOOR_BLOCK_BYTES     4096 /* one page: the smallest write a sync covers */
#define BENCH_FLOOR_OVERWRITE_BYTES (UINT64_C(8) << 20) /* pre-written area, cycled through */

_Static_assert(BENCH_FLOOR_OVERWRITE_BYTES % BENCH_FLOOR_BLOCK_BYTES == 0, "whole blocks");

/* ---- clock ------------------------------------------------------------------------ */

static inline double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---- order statistics ------------------------------------------------------------- */

static inline int bench_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a;
    const double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) in place. */
static inline void bench_sort(double *v, size_t n)
{
    if (n > 1) {
        qsort(v, n, sizeof(v[0]), bench_cmp_double);
    }
}

/* The q-quantile (0 <= q <= 1, nearest rank) of SORTED v[0..n); 0 when n == 0. */
static inline double bench_quantile(const double *v, size_t n, double q)
{
    if (n == 0) {
        return 0;
    }
    size_t k = (size_t)((double)n * q);
    return v[k < n ? k : n - 1];
}

/* Median of v[0..n) (sorts v): bench_quantile(0.5), the upper middle for even n. */
static inline double bench_median(double *v, size_t n)
{
    bench_sort(v, n);
    return bench_quantile(v, n, 0.5);
}

/* ---- fdatasync floor -------------------------------------------------------------- */

enum bench_floor_mode {
    BENCH_FLOOR_APPEND = 1,    /* write() at the end: the file grows by a block each time */
    BENCH_FLOOR_OVERWRITE = 2, /* pwrite() over blocks already written and synced */
};

struct bench_floor {
    uint64_t n_syncs; /* write + fdatasync pairs done (= samples stored) */
    double seconds;   /* wall time of all of them */
    double p50_us;    /* per pair */
    double p99_us;
    double syncs_per_s; /* n_syncs / seconds */
};

/* A file to measure the floor on: open it, time bench_floor_op()s (interleaved with
 * other work if you like), close it. */
struct bench_floor_file {
    int fd;
    enum bench_floor_mode mode;
    uint64_t n_ops;
};

/* Creates (truncating) the file at path. BENCH_FLOOR_OVERWRITE first writes and syncs
 * BENCH_FLOOR_OVERWRITE_BYTES (untimed). Returns 0 or a negative errno value; on failure
 * nothing is left open (the file may exist: bench_floor_close removes it). */
static inline int bench_floor_open(struct bench_floor_file *f, const char *path,
                                   enum bench_floor_mode mode)
{
    f->mode = mode;
    f->n_ops = 0;
    f->fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        return -errno;
    }
    if (mode == BENCH_FLOOR_OVERWRITE) {
        char block[BENCH_FLOOR_BLOCK_BYTES];
        memset(block, 'z', sizeof(block));
        for (uint64_t off = 0; off < BENCH_FLOOR_OVERWRITE_BYTES; off += BENCH_FLOOR_BLOCK_BYTES) {
            errno = 0;
            if (pwrite(f->fd, block, sizeof(block), (off_t)off) != (ssize_t)sizeof(block)) {
                const int rv = errno != 0 ? -errno : -EIO;
                close(f->fd);
                f->fd = -1;
                return rv;
            }
        }
        if (fdatasync(f->fd) != 0) {
            const int rv = -errno;
            close(f->fd);
            f->fd = -1;
            return rv;
        }
    }
    return 0;
}

/* One timed write of BENCH_FLOOR_BLOCK_BYTES + fdatasync: appended (the file grows, so
 * the fdatasync also commits the new size, as it must for a log appending to its file),
 * or over the next pre-written block (data only). Sets *us. Returns 0 or -errno. */
static inline int bench_floor_op(struct bench_floor_file *f, double *us)
{
    char block[BENCH_FLOOR_BLOCK_BYTES];
    memset(block, 'w', sizeof(block));
    const uint64_t n_blocks = BENCH_FLOOR_OVERWRITE_BYTES / BENCH_FLOOR_BLOCK_BYTES;
    const double t0 = bench_now_us();
    errno = 0;
    const ssize_t w = f->mode == BENCH_FLOOR_APPEND
                          ? write(f->fd, block, sizeof(block))
                          : pwrite(f->fd, block, sizeof(block),
                                   (off_t)((f->n_ops % n_blocks) * BENCH_FLOOR_BLOCK_BYTES));
    if (w != (ssize_t)sizeof(block)) {
        return errno != 0 ? -errno : -EIO;
    }
    if (fdatasync(f->fd) != 0) {
        return -errno;
    }
    *us = bench_now_us() - t0;
    f->n_ops++;
    return 0;
}

/* Closes f (if open) and removes path. */
static inline void bench_floor_close(struct bench_floor_file *f, const char *path)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    unlink(path);
}

/* Fills *out from n samples (sorted here) taken over `seconds` of floor work. */
static inline void bench_floor_stats(double *sample_us, uint64_t n, double seconds,
                                     struct bench_floor *out)
{
    bench_sort(sample_us, (size_t)n);
    out->n_syncs = n;
    out->seconds = seconds;
    out->p50_us = bench_quantile(sample_us, (size_t)n, 0.5);
    out->p99_us = bench_quantile(sample_us, (size_t)n, 0.99);
    out->syncs_per_s = seconds > 0 ? (double)n / seconds : 0;
}

/* The floor in one go: bench_floor_op() until max_n ops were done or max_seconds have
 * passed (at least one). sample_us must hold max_n doubles; it is left sorted. The file
 * is removed in every case. Returns 0, or a negative errno value. */
static inline int bench_fdatasync_floor(const char *path, enum bench_floor_mode mode,
                                        uint64_t max_n, double max_seconds, double *sample_us,
                                        struct bench_floor *out)
{
    memset(out, 0, sizeof(*out));
    struct bench_floor_file f;
    int rv = bench_floor_open(&f, path, mode);
    const double start = bench_now_us();
    uint64_t n = 0;
    while (rv == 0 && n < max_n && (n == 0 || bench_now_us() - start < max_seconds * 1e6)) {
        rv = bench_floor_op(&f, &sample_us[n]);
        n += rv == 0;
    }
    const double seconds = (bench_now_us() - start) / 1e6;
    bench_floor_close(&f, path);
    if (rv == 0) {
        bench_floor_stats(sample_us, n, seconds, out);
    }
    return rv;
}

/* ---- latency histogram ------------------------------------------------------------ */

#define BENCH_HIST_SUB_BITS 7  /* 128 buckets per power of two: 0.8% resolution */
#define BENCH_HIST_TOP_BITS 40 /* values up to 2^40 ns (18 minutes); above: clamped */
#define BENCH_HIST_BUCKETS \
    ((1u << BENCH_HIST_SUB_BITS) * (1u + BENCH_HIST_TOP_BITS - BENCH_HIST_SUB_BITS))

_Static_assert(BENCH_HIST_SUB_BITS < BENCH_HIST_TOP_BITS && BENCH_HIST_TOP_BITS < 63,
               "the top range must hold the sub-bucket range and fit in 64 bits");

struct bench_hist {
    uint64_t count;   /* values recorded */
    uint64_t max_ns;  /* the exact largest value */
    uint64_t clamped; /* values at or above 2^BENCH_HIST_TOP_BITS ns (in the last bucket) */
    uint64_t bucket[BENCH_HIST_BUCKETS];
};

/* Bucket of v ns: v itself below 2^SUB_BITS; above, [2^m, 2^(m+1)) is cut into
 * 2^SUB_BITS equal buckets. */
static inline uint32_t bench_hist_index(uint64_t v)
{
    const uint32_t sub = 1u << BENCH_HIST_SUB_BITS;
    if (v < sub) {
        return (uint32_t)v;
    }
    if (v >> BENCH_HIST_TOP_BITS != 0) {
        return BENCH_HIST_BUCKETS - 1;
    }
    const uint32_t m = 63u - (uint32_t)__builtin_clzll(v); /* SUB_BITS <= m < TOP_BITS */
    const uint32_t shift = m - BENCH_HIST_SUB_BITS;
    return sub + shift * sub + (uint32_t)((v >> shift) - sub);
}

/* The largest value that falls into bucket i. */
static inline uint64_t bench_hist_upper(uint32_t i)
{
    const uint32_t sub = 1u << BENCH_HIST_SUB_BITS;
    if (i < sub) {
        return i;
    }
    const uint32_t shift = (i - sub) / sub;
    const uint64_t lead = (uint64_t)sub + (i - sub) % sub;
    return ((lead + 1) << shift) - 1;
}

static inline void bench_hist_record(struct bench_hist *h, uint64_t v_ns)
{
    h->bucket[bench_hist_index(v_ns)]++;
    h->count++;
    h->clamped += (v_ns >> BENCH_HIST_TOP_BITS) != 0;
    if (v_ns > h->max_ns) {
        h->max_ns = v_ns;
    }
}

/* into += from */
static inline void bench_hist_add(struct bench_hist *into, const struct bench_hist *from)
{
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        into->bucket[i] += from->bucket[i];
    }
    into->count += from->count;
    into->clamped += from->clamped;
    if (from->max_ns > into->max_ns) {
        into->max_ns = from->max_ns;
    }
}

/* The q-quantile (0 <= q <= 1) in ns: the upper edge of the bucket holding the value of
 * rank ceil(q * count) (at least 1), capped at max_ns; 0 when empty. */
static inline uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
    if (h->count == 0) {
        return 0;
    }
    double want_d = q * (double)h->count;
    uint64_t want = (uint64_t)want_d;
    want += (double)want < want_d;
    want = want < 1 ? 1 : (want > h->count ? h->count : want);
    uint64_t seen = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= want) {
            const uint64_t up = bench_hist_upper(i);
            return up < h->max_ns ? up : h->max_ns;
        }
    }
    return h->max_ns;
}

#endif /* CC_BENCH_BENCH_UTIL_H */
