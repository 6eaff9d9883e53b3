/* idbuf.h -- the node-local double buffer that serves segment-mode IDs (Leaf's
 * SegmentBuffer), with a step that follows the load.
 *
 * A buffer holds two segments: `cur`, which IDs are served from, and `next`, a spare.
 * Once cur is fetch_pct percent used (or, whichever comes first, once what is left in
 * cur would last less than two fetch latencies at the measured rate) and no spare is
 * held, idbuf_fetch_due() asks the caller to fetch a new segment: an ALLOC through
 * Raft (idseg.h). When cur runs out, next takes its place without waiting.
 *
 * Why fetch at 20% used (Leaf fetches at 10%)? The trigger only decides how much slack
 * a fetch has: it starts with (1 - X) of a segment left. A segment is sized to last
 * segment_ms (15 s) at the measured rate, so at X = 20% a burst of 10x that rate still
 * leaves 0.8 * 15 s / 10 = 1.2 s for the fetch: more than a Raft commit, and more than a
 * leader election (~1 s). Fetching later wastes less on a restart but eats that slack;
 * fetching earlier (10%) holds a spare longer and buys nothing once the step adapts.
 *
 * The step. Leaf's dynamic step doubles or halves once per fetch depending on whether
 * the last segment lasted less than 15 or more than 30 minutes, so a sudden 10x burst
 * empties both segments before the step catches up ("both two segments are not ready",
 * Leaf#143). Here the step is computed from the measured rate at every fetch:
 *     step = clamp(rate * segment_ms, step_min, step_max)
 * where rate = max(the rate over the last second, a peak that decays with a half-life
 * of segment_ms). One fetch into a burst the step is already sized for the burst, and
 * the decaying peak keeps it there between bursts.
 *
 * Restarts: a buffer lives only in memory. The cluster advanced max_id when it
 * allocated the ranges, so a restarted node fetches fresh ranges and the unused rest
 * of its old ones is abandoned: a gap, never a reissued ID. Gaps are at most two
 * segments per node restart.
 *
 * Pure: now_ms is an argument (monotonic ms from the env clock); no IO, no locks. One
 * buffer per (node, tag), used by one thread. Errors: IDBUF_E* in -2550..-2554.
 */
#ifndef CONCLAVE_SM_IDGEN_IDBUF_H
#define CONCLAVE_SM_IDGEN_IDBUF_H

#include <stdbool.h>
#include <stdint.h>

#include "sm/idgen/idseg.h"

#define IDBUF_FETCH_PCT_DEFAULT    20u
#define IDBUF_FETCH_PCT_MAX        90u /* IDBUF_ECONFIG: later leaves no slack */
#define IDBUF_SEGMENT_MS_DEFAULT   15000
#define IDBUF_SEGMENT_MS_MAX       600000 /* IDBUF_ECONFIG */
#define IDBUF_STEP_MIN_DEFAULT     100
#define IDBUF_STEP_MAX_DEFAULT     10000000 /* 15 s at ~670k IDs/s per tag per node */
#define IDBUF_STEP_INITIAL_DEFAULT 1000
#define IDBUF_RETRY_MS_DEFAULT     100 /* after a failed fetch */
#define IDBUF_RATE_BUCKETS         8u
#define IDBUF_RATE_BUCKET_MS       125 /* 8 x 125 ms: the rate over the last second */

_Static_assert(IDBUF_STEP_MAX_DEFAULT <= IDSEG_COUNT_MAX, "a step is one ALLOC");

enum {
    IDBUF_EEMPTY = -2550,  /* both segments are empty: wait for the fetch */
    IDBUF_ECONFIG = -2551, /* a config value outside its bounds */
    IDBUF_ERANGE = -2552,  /* fetch_done with an empty, reversed or non-positive range */
    IDBUF_ESTATE = -2553,  /* fetch_done/failed with no fetch in flight (stale reply) */
};
const char *idbuf_strerror(int rv);

struct idbuf_config {
    int64_t step_initial; /* first fetch, before any rate is known (the tag's step) */
    int64_t step_min;     /* >= 1 */
    int64_t step_max;     /* <= IDSEG_COUNT_MAX */
    int64_t segment_ms;   /* target lifetime of a segment, 1..IDBUF_SEGMENT_MS_MAX */
    uint32_t fetch_pct;   /* 1..IDBUF_FETCH_PCT_MAX */
    int64_t retry_ms;     /* >= 0 */
};

void idbuf_config_default(struct idbuf_config *out);

struct idbuf_seg {
    int64_t start; /* first ID of the range */
    int64_t next;  /* next ID to serve */
    int64_t end;   /* one past the last */
};

/* Caller-owned; fields are read-only outside idbuf.c. */
struct idbuf {
    struct idbuf_config cfg;
    struct idbuf_seg cur;
    struct idbuf_seg spare;
    bool fetching;
    bool ever_filled;
    int64_t fetch_started_ms;
    int64_t retry_at_ms;
    int64_t fetch_count; /* what the fetch in flight asked for */
    /* rate */
    int64_t init_ms;
    int64_t bucket_start_ms; /* start of bucket[head] */
    uint32_t head;
    uint64_t bucket[IDBUF_RATE_BUCKETS]; /* IDs asked for (served or refused) */
    double peak_per_ms;
    double peak_decay; /* per bucket: 2^(-bucket / segment_ms) */
    double latency_ms; /* decaying max of fetch latencies */
    /* counters */
    uint64_t n_served;
    uint64_t n_empty_cold; /* requests before the first segment arrived */
    uint64_t n_empty_dry;  /* requests that found both segments empty afterwards */
    uint64_t n_fetches;
    int64_t last_step;
};

/* 0 or IDBUF_ECONFIG. An initialised buffer is empty: its first fetch is due at once. */
int idbuf_init(struct idbuf *b, const struct idbuf_config *c, int64_t now_ms);

/* Serves one ID. 0, or IDBUF_EEMPTY when both segments are empty (counted). */
int idbuf_next(struct idbuf *b, int64_t now_ms, int64_t *id);
/* Serves up to max (>= 1) consecutive IDs from the current segment: [*start, *start +
 * *n). 0 with *n >= 1, or IDBUF_EEMPTY. For batch requests. */
int idbuf_take(struct idbuf *b, int64_t now_ms, int64_t max, int64_t *start, int64_t *n);

/* True when the caller should start a fetch now, for *count IDs (ALLOC(tag, *count));
 * the buffer then counts the fetch as in flight until fetch_done or fetch_failed.
 * Call it after serving, and on a timer while a burst of refusals lasts. */
bool idbuf_fetch_due(struct idbuf *b, int64_t now_ms, int64_t *count);
/* The fetch committed: [start, end) joins the buffer. IDBUF_ESTATE if none was in
 * flight, IDBUF_ERANGE if the range is empty or not positive (the fetch is then over). */
int idbuf_fetch_done(struct idbuf *b, int64_t now_ms, int64_t start, int64_t end);
/* The fetch failed (not leader, timeout): retry after retry_ms. 0 or IDBUF_ESTATE. */
int idbuf_fetch_failed(struct idbuf *b, int64_t now_ms);

/* IDs left in both segments. */
int64_t idbuf_remaining(const struct idbuf *b);
/* The measured demand, IDs asked for per ms, served or refused (what the step is
 * computed from). */
double idbuf_rate_per_ms(const struct idbuf *b, int64_t now_ms);

#endif /* CONCLAVE_SM_IDGEN_IDBUF_H */
