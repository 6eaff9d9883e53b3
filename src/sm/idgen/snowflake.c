/* snowflake.c -- Snowflake IDs with a floor and a reservation (rules in snowflake.h).
 *
 * Invariants of a generator g (asserted where they matter):
 *   - every ID issued so far has a timestamp <= g->last_ms, and those at last_ms used
 *     sequences < g->next_seq; so an ID at (t > last_ms, any seq) or at (last_ms,
 *     seq >= next_seq) is new, and the IDs come out increasing.
 *   - g->last_ms <= g->reserved_ms once anything was issued: a timestamp is used only
 *     under a committed ceiling, and the cluster's floor is >= the ceiling, so a later
 *     generator for this worker starts above every timestamp this one used.
 *
 * Sections: layout | generator | reservation | decoding | errors.
 */
#include "sm/idgen/snowflake.h"

#include <stddef.h>

#include "base/assert.h"

/* ==== layout ============================================================= */

void snowflake_layout_default(struct snowflake_layout *out)
{
    out->epoch_ms = SNOWFLAKE_EPOCH_MS_DEFAULT;
    out->timestamp_bits = SNOWFLAKE_TIMESTAMP_BITS_DEFAULT;
    out->worker_bits = SNOWFLAKE_WORKER_BITS_DEFAULT;
    out->sequence_bits = SNOWFLAKE_SEQUENCE_BITS_DEFAULT;
}

int snowflake_layout_check(const struct snowflake_layout *l)
{
    if (l == NULL) {
        return SNOWFLAKE_EINVAL;
    }
    unsigned sum = (unsigned)l->timestamp_bits + l->worker_bits + l->sequence_bits;
    if (sum != SNOWFLAKE_ID_BITS || l->timestamp_bits < SNOWFLAKE_TIMESTAMP_BITS_MIN ||
        l->sequence_bits < SNOWFLAKE_SEQUENCE_BITS_MIN || l->epoch_ms < 0) {
        return SNOWFLAKE_ELAYOUT;
    }
    return 0;
}

uint64_t snowflake_worker_max(const struct snowflake_layout *l)
{
    CC_ASSERT(l->worker_bits < 64);
    return (UINT64_C(1) << l->worker_bits) - 1;
}

static uint64_t seq_limit(const struct snowflake_layout *l)
{
    return UINT64_C(1) << l->sequence_bits;
}

static uint64_t ts_limit(const struct snowflake_layout *l)
{
    return UINT64_C(1) << l->timestamp_bits;
}

/* ==== generator ========================================================== */

void snowflake_config_default(struct snowflake_config *out)
{
    snowflake_layout_default(&out->layout);
    out->worker_id = 0;
    out->floor_ms = 0;
    out->tolerance_ms = SNOWFLAKE_TOLERANCE_MS_DEFAULT;
    out->reserve_ms = SNOWFLAKE_RESERVE_MS_DEFAULT;
}

int snowflake_init(struct snowflake *g, const struct snowflake_config *c)
{
    if (g == NULL || c == NULL) {
        return SNOWFLAKE_EINVAL;
    }
    int rv = snowflake_layout_check(&c->layout);
    if (rv != 0) {
        return rv;
    }
    if (c->worker_id > snowflake_worker_max(&c->layout)) {
        return SNOWFLAKE_EWORKER;
    }
    if (c->tolerance_ms < 0 || c->tolerance_ms > SNOWFLAKE_TOLERANCE_MS_MAX) {
        return SNOWFLAKE_ETOLERANCE;
    }
    if (c->reserve_ms < SNOWFLAKE_RESERVE_MS_MIN || c->reserve_ms > SNOWFLAKE_RESERVE_MS_MAX) {
        return SNOWFLAKE_EWINDOW;
    }
    if (c->floor_ms < 0 || c->floor_ms > INT64_MAX - SNOWFLAKE_RESERVE_MS_MAX) {
        return SNOWFLAKE_EINVAL;
    }
    *g = (struct snowflake){
        .layout = c->layout,
        .worker_id = c->worker_id,
        .tolerance_ms = c->tolerance_ms,
        .reserve_ms = c->reserve_ms,
        .last_ms = c->floor_ms,
        .next_seq = seq_limit(&c->layout), /* the floor counts as fully used */
        .reserved_ms = c->floor_ms,
    };
    return 0;
}

static void set_wait(int64_t *wait_ms, int64_t v)
{
    if (wait_ms != NULL) {
        *wait_ms = v;
    }
}

int snowflake_next(struct snowflake *g, int64_t now_ms, uint64_t *id, int64_t *wait_ms)
{
    CC_ASSERT(g != NULL);
    CC_ASSERT(id != NULL);
    const struct snowflake_layout *l = &g->layout;
    set_wait(wait_ms, 0);
    if (now_ms < l->epoch_ms) {
        return SNOWFLAKE_ECLOCK;
    }
    int64_t t_ms;
    uint64_t seq;
    if (now_ms > g->last_ms) {
        t_ms = now_ms;
        seq = 0;
    } else {
        int64_t behind = g->last_ms - now_ms;
        if (behind > g->tolerance_ms) {
            g->n_rollbacks++;
            return SNOWFLAKE_EROLLBACK;
        }
        if (g->next_seq >= seq_limit(l)) {
            g->n_waits++;
            set_wait(wait_ms, behind + 1);
            return SNOWFLAKE_EWAIT;
        }
        t_ms = g->last_ms;
        seq = g->next_seq;
    }
    if (t_ms > g->reserved_ms) {
        return SNOWFLAKE_ERESERVE;
    }
    uint64_t ts = (uint64_t)(t_ms - l->epoch_ms);
    if (ts >= ts_limit(l)) {
        return SNOWFLAKE_EEXPIRED;
    }
    CC_ASSERT(t_ms > g->last_ms || (t_ms == g->last_ms && seq >= g->next_seq));
    CC_ASSERT(seq < seq_limit(l));
    unsigned shift_worker = l->sequence_bits;
    unsigned shift_ts = (unsigned)l->sequence_bits + l->worker_bits;
    *id = ts << shift_ts | g->worker_id << shift_worker | seq;
    g->last_ms = t_ms;
    g->next_seq = seq + 1;
    g->n_issued++;
    return 0;
}

int snowflake_next_batch(struct snowflake *g, int64_t now_ms, uint64_t *ids, uint32_t cap,
                         uint32_t *n, int64_t *wait_ms)
{
    CC_ASSERT(ids != NULL);
    CC_ASSERT(n != NULL);
    CC_ASSERT(cap >= 1);
    *n = 0;
    int rv = snowflake_next(g, now_ms, &ids[0], wait_ms);
    if (rv != 0) {
        return rv;
    }
    uint32_t k = 1;
    /* The rest share ids[0]'s millisecond; stop when its sequence runs out. */
    while (k < cap && g->next_seq < seq_limit(&g->layout)) {
        rv = snowflake_next(g, now_ms, &ids[k], NULL);
        CC_ASSERT(rv == 0); /* same ms, sequence left, already reserved */
        k++;
    }
    *n = k;
    set_wait(wait_ms, 0);
    return 0;
}

/* ==== reservation ======================================================== */

bool snowflake_reserve_begin(struct snowflake *g, int64_t now_ms, int64_t *ceiling_ms)
{
    CC_ASSERT(g != NULL);
    CC_ASSERT(ceiling_ms != NULL);
    if (g->proposed_ms != 0) {
        return false;
    }
    int64_t base = now_ms > g->last_ms ? now_ms : g->last_ms;
    if (base > INT64_MAX - g->reserve_ms) {
        return false; /* a clock this far out is refused by snowflake_next anyway */
    }
    if (g->reserved_ms - base >= g->reserve_ms / 2) {
        return false;
    }
    *ceiling_ms = base + g->reserve_ms;
    g->proposed_ms = *ceiling_ms;
    return true;
}

void snowflake_reserve_end(struct snowflake *g, int64_t ceiling_ms, bool committed)
{
    CC_ASSERT(g != NULL);
    g->proposed_ms = 0;
    if (committed && ceiling_ms > g->reserved_ms) {
        g->reserved_ms = ceiling_ms;
    }
}

/* ==== decoding =========================================================== */

int snowflake_decode(const struct snowflake_layout *l, uint64_t id, struct snowflake_parts *out)
{
    CC_ASSERT(snowflake_layout_check(l) == 0);
    CC_ASSERT(out != NULL);
    if ((id >> SNOWFLAKE_ID_BITS) != 0) {
        return SNOWFLAKE_EID;
    }
    unsigned shift_ts = (unsigned)l->sequence_bits + l->worker_bits;
    uint64_t ts = id >> shift_ts;
    /* epoch_ms + ts cannot overflow: epoch_ms >= 0 is an int64 and ts < 2^61. */
    if (ts > (uint64_t)(INT64_MAX - l->epoch_ms)) {
        return SNOWFLAKE_EID;
    }
    out->unix_ms = l->epoch_ms + (int64_t)ts;
    out->worker_id = (id >> l->sequence_bits) & snowflake_worker_max(l);
    out->sequence = id & (seq_limit(l) - 1);
    return 0;
}

int snowflake_compose(const struct snowflake_layout *l, const struct snowflake_parts *p,
                      uint64_t *id)
{
    CC_ASSERT(snowflake_layout_check(l) == 0);
    CC_ASSERT(p != NULL);
    CC_ASSERT(id != NULL);
    if (p->unix_ms < l->epoch_ms || (uint64_t)(p->unix_ms - l->epoch_ms) >= ts_limit(l) ||
        p->worker_id > snowflake_worker_max(l) || p->sequence >= seq_limit(l)) {
        return SNOWFLAKE_EID;
    }
    unsigned shift_ts = (unsigned)l->sequence_bits + l->worker_bits;
    *id = (uint64_t)(p->unix_ms - l->epoch_ms) << shift_ts | p->worker_id << l->sequence_bits |
          p->sequence;
    return 0;
}

/* ==== errors ============================================================= */

const char *snowflake_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case SNOWFLAKE_EINVAL:
        return "invalid argument";
    case SNOWFLAKE_ELAYOUT:
        return "invalid layout (bits must sum to 63, timestamp >= 35 bits, sequence >= 1 bit, "
               "epoch >= 0)";
    case SNOWFLAKE_EWORKER:
        return "worker id does not fit the layout's worker bits";
    case SNOWFLAKE_ETOLERANCE:
        return "tolerance_ms outside [0, SNOWFLAKE_TOLERANCE_MS_MAX]";
    case SNOWFLAKE_EWINDOW:
        return "reserve_ms outside [SNOWFLAKE_RESERVE_MS_MIN, SNOWFLAKE_RESERVE_MS_MAX]";
    case SNOWFLAKE_EWAIT:
        return "retry after the returned wait (sequence used up or small clock rollback)";
    case SNOWFLAKE_EROLLBACK:
        return "clock moved back beyond the tolerance: take a fresh worker id or refuse";
    case SNOWFLAKE_ERESERVE:
        return "no committed reservation covers the current time";
    case SNOWFLAKE_ECLOCK:
        return "clock is before the layout's epoch";
    case SNOWFLAKE_EEXPIRED:
        return "timestamp no longer fits the layout's timestamp bits";
    case SNOWFLAKE_EID:
        return "id or id part does not fit the layout";
    default:
        return "unknown snowflake error";
    }
}
