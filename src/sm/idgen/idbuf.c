/* idbuf.c -- node-local double buffer for segment IDs (policy in idbuf.h).
 *
 * Invariants:
 *   - cur and spare are ranges with start <= next <= end; a segment is empty when
 *     next == end. IDs are served from cur only, in increasing order.
 *   - spare is non-empty only if cur was non-empty when it arrived; a fetch is asked
 *     for only while spare is empty and no fetch is in flight, so a completed fetch
 *     always has a free slot (asserted).
 *   - the rate ring holds IDs served per IDBUF_RATE_BUCKET_MS bucket; bucket[head]
 *     is the one containing the latest now_ms seen. Rolling it forward is bounded by
 *     IDBUF_RATE_BUCKETS steps; a longer gap resets the ring in one step.
 *
 * Sections: config | rate | serving | fetching | errors.
 */
#include "sm/idgen/idbuf.h"

#include <math.h>
#include <string.h>

#include "base/assert.h"

/* ==== config ============================================================= */

void idbuf_config_default(struct idbuf_config *out)
{
    out->step_initial = IDBUF_STEP_INITIAL_DEFAULT;
    out->step_min = IDBUF_STEP_MIN_DEFAULT;
    out->step_max = IDBUF_STEP_MAX_DEFAULT;
    out->segment_ms = IDBUF_SEGMENT_MS_DEFAULT;
    out->fetch_pct = IDBUF_FETCH_PCT_DEFAULT;
    out->retry_ms = IDBUF_RETRY_MS_DEFAULT;
}

static bool config_ok(const struct idbuf_config *c)
{
    return c->step_min >= 1 && c->step_min <= c->step_max && c->step_max <= IDSEG_COUNT_MAX &&
           c->step_initial >= c->step_min && c->step_initial <= c->step_max && c->segment_ms >= 1 &&
           c->segment_ms <= IDBUF_SEGMENT_MS_MAX && c->fetch_pct >= 1 &&
           c->fetch_pct <= IDBUF_FETCH_PCT_MAX && c->retry_ms >= 0;
}

int idbuf_init(struct idbuf *b, const struct idbuf_config *c, int64_t now_ms)
{
    CC_ASSERT(b != NULL);
    if (c == NULL || !config_ok(c)) {
        return IDBUF_ECONFIG;
    }
    memset(b, 0, sizeof *b);
    b->cfg = *c;
    b->bucket_start_ms = now_ms;
    b->init_ms = now_ms;
    b->peak_decay = exp2(-(double)IDBUF_RATE_BUCKET_MS / (double)c->segment_ms);
    b->retry_at_ms = now_ms;
    return 0;
}

/* ==== rate =============================================================== */

static uint64_t ring_sum(const struct idbuf *b)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < IDBUF_RATE_BUCKETS; i++) {
        sum += b->bucket[i];
    }
    return sum;
}

/* Moves bucket[head] forward to the bucket that holds now_ms, folding each completed
 * window into the decaying peak. */
static void rate_roll(struct idbuf *b, int64_t now_ms)
{
    if (now_ms < b->bucket_start_ms) {
        return; /* a monotonic clock does not go back; tolerate it by not rolling */
    }
    int64_t gap = (now_ms - b->bucket_start_ms) / IDBUF_RATE_BUCKET_MS;
    if (gap == 0) {
        return;
    }
    const double window_ms = (double)IDBUF_RATE_BUCKETS * IDBUF_RATE_BUCKET_MS;
    if (gap > (int64_t)IDBUF_RATE_BUCKETS) {
        /* idle longer than the window: fold once, decay for the rest, clear */
        double r = (double)ring_sum(b) / window_ms;
        if (r > b->peak_per_ms) {
            b->peak_per_ms = r;
        }
        b->peak_per_ms *= pow(b->peak_decay, (double)gap);
        memset(b->bucket, 0, sizeof b->bucket);
        b->bucket_start_ms += gap * IDBUF_RATE_BUCKET_MS;
        return;
    }
    for (int64_t k = 0; k < gap; k++) {
        double r = (double)ring_sum(b) / window_ms;
        b->peak_per_ms *= b->peak_decay;
        if (r > b->peak_per_ms) {
            b->peak_per_ms = r;
        }
        b->head = (b->head + 1) % IDBUF_RATE_BUCKETS;
        b->bucket[b->head] = 0;
        b->bucket_start_ms += IDBUF_RATE_BUCKET_MS;
    }
}

/* IDs asked for per ms over the last second (the head bucket counts as far as it has
 * run; a buffer younger than a second counts its age). */
static double rate_short(const struct idbuf *b, int64_t now_ms)
{
    int64_t in_head = now_ms - b->bucket_start_ms + 1;
    if (in_head < 1) {
        in_head = 1;
    }
    if (in_head > IDBUF_RATE_BUCKET_MS) {
        return 0.0; /* not rolled: nothing was served since */
    }
    double window_ms = (double)(IDBUF_RATE_BUCKETS - 1) * IDBUF_RATE_BUCKET_MS + (double)in_head;
    double alive_ms = (double)(now_ms - b->init_ms + 1); /* a young buffer has less history */
    if (alive_ms >= 1.0 && alive_ms < window_ms) {
        window_ms = alive_ms;
    }
    return (double)ring_sum(b) / window_ms;
}

double idbuf_rate_per_ms(const struct idbuf *b, int64_t now_ms)
{
    double r = rate_short(b, now_ms);
    return r > b->peak_per_ms ? r : b->peak_per_ms;
}

static int64_t step_for(const struct idbuf *b, int64_t now_ms)
{
    double rate = idbuf_rate_per_ms(b, now_ms);
    double want = rate > 0.0 ? ceil(rate * (double)b->cfg.segment_ms) : (double)b->cfg.step_initial;
    if (want < (double)b->cfg.step_min) {
        return b->cfg.step_min;
    }
    if (want > (double)b->cfg.step_max) {
        return b->cfg.step_max;
    }
    return (int64_t)want;
}

/* ==== serving ============================================================ */

static bool seg_empty(const struct idbuf_seg *s)
{
    return s->next >= s->end;
}

static int64_t seg_left(const struct idbuf_seg *s)
{
    return s->end - s->next;
}

int64_t idbuf_remaining(const struct idbuf *b)
{
    return seg_left(&b->cur) + seg_left(&b->spare);
}

/* Makes cur non-empty if any ID is held; false when both are empty. */
static bool ensure_cur(struct idbuf *b)
{
    if (!seg_empty(&b->cur)) {
        return true;
    }
    if (seg_empty(&b->spare)) {
        if (b->ever_filled) {
            b->n_empty_dry++;
        } else {
            b->n_empty_cold++;
        }
        return false;
    }
    b->cur = b->spare;
    memset(&b->spare, 0, sizeof b->spare);
    return true;
}

int idbuf_next(struct idbuf *b, int64_t now_ms, int64_t *id)
{
    int64_t n;
    return idbuf_take(b, now_ms, 1, id, &n);
}

int idbuf_take(struct idbuf *b, int64_t now_ms, int64_t max, int64_t *start, int64_t *n)
{
    CC_ASSERT(b != NULL);
    CC_ASSERT(start != NULL);
    CC_ASSERT(n != NULL);
    CC_ASSERT(max >= 1);
    rate_roll(b, now_ms);
    *n = 0;
    if (!ensure_cur(b)) {
        /* Refused requests are demand too: the step must be sized for them. */
        b->bucket[b->head] += (uint64_t)max;
        return IDBUF_EEMPTY;
    }
    int64_t k = seg_left(&b->cur) < max ? seg_left(&b->cur) : max;
    CC_ASSERT(k >= 1);
    *start = b->cur.next;
    *n = k;
    b->cur.next += k;
    b->bucket[b->head] += (uint64_t)k;
    b->n_served += (uint64_t)k;
    return 0;
}

/* ==== fetching =========================================================== */

bool idbuf_fetch_due(struct idbuf *b, int64_t now_ms, int64_t *count)
{
    CC_ASSERT(b != NULL);
    CC_ASSERT(count != NULL);
    rate_roll(b, now_ms);
    if (b->fetching || now_ms < b->retry_at_ms || !seg_empty(&b->spare)) {
        return false;
    }
    bool due = seg_empty(&b->cur);
    if (!due) {
        int64_t size = b->cur.end - b->cur.start;
        int64_t used = b->cur.next - b->cur.start;
        /* used * 100 >= pct * size, without overflow: size <= IDSEG_COUNT_MAX */
        due = used * 100 >= (int64_t)b->cfg.fetch_pct * size;
    }
    if (!due) {
        double rate = idbuf_rate_per_ms(b, now_ms);
        double left_ms = rate > 0.0 ? (double)seg_left(&b->cur) / rate : INFINITY;
        due = left_ms < 2.0 * b->latency_ms;
    }
    if (!due) {
        return false;
    }
    *count = step_for(b, now_ms);
    b->fetching = true;
    b->fetch_started_ms = now_ms;
    b->fetch_count = *count;
    b->last_step = *count;
    return true;
}

static void note_latency(struct idbuf *b, int64_t now_ms)
{
    double sample = (double)(now_ms - b->fetch_started_ms);
    if (sample < 0.0) {
        sample = 0.0;
    }
    b->latency_ms *= 0.875; /* a decaying max: reacts at once to a slow fetch */
    if (sample > b->latency_ms) {
        b->latency_ms = sample;
    }
}

int idbuf_fetch_done(struct idbuf *b, int64_t now_ms, int64_t start, int64_t end)
{
    CC_ASSERT(b != NULL);
    if (!b->fetching) {
        return IDBUF_ESTATE;
    }
    b->fetching = false;
    note_latency(b, now_ms);
    if (start < IDSEG_INITIAL_MIN || end <= start) {
        b->retry_at_ms = now_ms + b->cfg.retry_ms;
        return IDBUF_ERANGE;
    }
    struct idbuf_seg seg = {start, start, end};
    /* A fetch is asked for only while spare is empty, and only a completed fetch fills
     * it: the slot is free. */
    CC_ASSERT(seg_empty(&b->spare));
    if (seg_empty(&b->cur)) {
        b->cur = seg;
    } else {
        b->spare = seg;
    }
    b->ever_filled = true;
    b->n_fetches++;
    return 0;
}

int idbuf_fetch_failed(struct idbuf *b, int64_t now_ms)
{
    CC_ASSERT(b != NULL);
    if (!b->fetching) {
        return IDBUF_ESTATE;
    }
    b->fetching = false;
    note_latency(b, now_ms);
    b->retry_at_ms = now_ms + b->cfg.retry_ms;
    return 0;
}

/* ==== errors ============================================================= */

const char *idbuf_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case IDBUF_EEMPTY:
        return "both segments are empty: a fetch is pending";
    case IDBUF_ECONFIG:
        return "idbuf config value outside its bounds";
    case IDBUF_ERANGE:
        return "fetched range is empty or not positive";
    case IDBUF_ESTATE:
        return "no fetch in flight";
    default:
        return "unknown idbuf error";
    }
}
