/* histogram.h -- a fixed-bucket latency histogram in microseconds, for /metrics.
 *
 * Buckets are the upper bounds in hist_bounds_us (Prometheus "le"), roughly 1-2.5-5 per
 * decade from 50 us to 10 s, plus +Inf. Observing is O(buckets) with no allocation, so
 * it can sit on hot paths. Not thread-safe: the owner serialises (the storage thread
 * copies its histogram out under its mutex). Header-only.
 */
#ifndef CC_BASE_HISTOGRAM_H
#define CC_BASE_HISTOGRAM_H

#include <stdint.h>

#define HIST_BUCKETS 18 /* finite bounds; counts[HIST_BUCKETS] is +Inf */

static const uint64_t hist_bounds_us[HIST_BUCKETS] = {
    50,    100,    250,    500,    1000,    2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000};

struct hist {
    uint64_t counts[HIST_BUCKETS + 1]; /* per bucket (not cumulative) */
    uint64_t n;
    uint64_t sum_us;
};

static inline void hist_observe(struct hist *h, uint64_t us)
{
    unsigned i = 0;
    while (i < HIST_BUCKETS && us > hist_bounds_us[i])
        i++;
    h->counts[i]++;
    h->n++;
    h->sum_us += us;
}

#endif /* CC_BASE_HISTOGRAM_H */
