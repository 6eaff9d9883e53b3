/* snowflake.h -- 64-bit time-ordered IDs (Twitter Snowflake) that stay unique across
 * clock rollbacks and restarts.
 *
 * An ID is  0 | timestamp | worker | sequence  from the high bit down: one sign bit
 * (always 0, so IDs are positive in a signed BIGINT), timestamp_bits of milliseconds
 * since the layout's epoch, worker_bits of worker id, sequence_bits of per-millisecond
 * counter. The default layout is 41/10/12 with the epoch 2024-01-01T00:00:00Z: 69.7
 * years of timestamps (until 2093-09), 1024 workers, 4096 IDs per ms per worker.
 *
 * Pure: time is the now_ms argument (Unix ms from the env clock), nothing here reads a
 * clock or sleeps; a generator is a plain struct the caller embeds.
 *
 * Guarantee: two IDs issued under one worker id are never equal and increase in issue
 * order, across clock jumps in either direction and across restarts, PROVIDED the
 * caller follows the two rules below. Different worker ids never collide (the worker
 * field differs), so globally no two IDs are equal while worker ids are held by one
 * generator at a time (the cluster leases them).
 *
 * Rule 1 -- the floor. The cluster stores, per worker id, floor_ms: an upper bound on
 * the timestamp of every ID any holder of that worker id may have issued. A generator
 * starts from it (snowflake_config.floor_ms) and treats it as fully used, so its first
 * ID has a timestamp > floor_ms; a clock behind the floor at start-up is detected.
 *
 * Rule 2 -- the reservation. A floor that is merely "the highest timestamp issued,
 * persisted periodically" lags: a crash loses up to one period, and a restart with a
 * clock rolled back into that period reissues IDs (Leaf#216, UidGenerator#85). So the
 * floor is written AHEAD of use: the generator issues only timestamps <= reserved_ms,
 * a ceiling the caller has durably committed to the cluster. snowflake_reserve_begin()
 * says when to propose a new ceiling (now + reserve_ms, renewed when less than half of
 * the window is left, e.g. with the worker lease keepalive), snowflake_reserve_end()
 * records the commit. The cluster keeps max(old, new). Until the first reservation
 * commits, the generator refuses (SNOWFLAKE_ERESERVE).
 *
 * Clock behaviour on every call (now_ms against last_ms, the newest timestamp used):
 *   now_ms >  last_ms                 -> sequence 0 at now_ms
 *   now_ms <= last_ms, behind <= tolerance_ms, sequence left at last_ms
 *                                     -> the next sequence at last_ms (no wait needed)
 *   same, but the sequence is used up -> SNOWFLAKE_EWAIT, *wait_ms = last_ms + 1 - now_ms
 *   behind > tolerance_ms             -> SNOWFLAKE_EROLLBACK
 * where behind = last_ms - now_ms. On SNOWFLAKE_EROLLBACK the caller either takes a
 * fresh worker id (lease a new one, whose floor lies in the past, and build a new
 * generator) or refuses with that error: a policy the host configures. It must not
 * keep this generator issuing, because doing so would need waiting `behind` ms.
 *
 * Errors: negative SNOWFLAKE_E* in -2510..-2529, snowflake_strerror() names them.
 */
#ifndef CONCLAVE_SM_IDGEN_SNOWFLAKE_H
#define CONCLAVE_SM_IDGEN_SNOWFLAKE_H

#include <stdbool.h>
#include <stdint.h>

/* ---- layout and limits --------------------------------------------------- */

#define SNOWFLAKE_ID_BITS                63u                    /* 64 minus the sign bit */
#define SNOWFLAKE_EPOCH_MS_DEFAULT       INT64_C(1704067200000) /* 2024-01-01T00:00:00Z */
#define SNOWFLAKE_TIMESTAMP_BITS_DEFAULT 41u
#define SNOWFLAKE_WORKER_BITS_DEFAULT    10u
#define SNOWFLAKE_SEQUENCE_BITS_DEFAULT  12u
/* 2^35 ms is 1.09 years: a layout that runs out sooner is a configuration mistake. */
#define SNOWFLAKE_TIMESTAMP_BITS_MIN 35u /* SNOWFLAKE_ELAYOUT */
/* At least two IDs per ms, or every ID waits for the clock. */
#define SNOWFLAKE_SEQUENCE_BITS_MIN 1u /* SNOWFLAKE_ELAYOUT */
/* The default: a rollback of up to 5 ms is waited out. */
#define SNOWFLAKE_TOLERANCE_MS_DEFAULT 5
/* Waiting longer than this in a request path is an outage: take a fresh worker id. */
#define SNOWFLAKE_TOLERANCE_MS_MAX 1000 /* SNOWFLAKE_ETOLERANCE */
/* How far ahead a reservation reaches. Longer = fewer Raft writes, but a restarting
 * node that resumes its own worker id finds its floor up to this far in the future. */
#define SNOWFLAKE_RESERVE_MS_DEFAULT 3000
#define SNOWFLAKE_RESERVE_MS_MIN     10    /* SNOWFLAKE_EWINDOW */
#define SNOWFLAKE_RESERVE_MS_MAX     60000 /* SNOWFLAKE_EWINDOW */

_Static_assert(SNOWFLAKE_TIMESTAMP_BITS_DEFAULT + SNOWFLAKE_WORKER_BITS_DEFAULT +
                       SNOWFLAKE_SEQUENCE_BITS_DEFAULT ==
                   SNOWFLAKE_ID_BITS,
               "the default layout fills 63 bits");
_Static_assert(SNOWFLAKE_TOLERANCE_MS_MAX < SNOWFLAKE_RESERVE_MS_MAX,
               "tolerances are small against reservations");

enum {
    SNOWFLAKE_EINVAL = -2510,     /* invalid argument (negative floor, NULL) */
    SNOWFLAKE_ELAYOUT = -2511,    /* bits do not sum to 63, a field below its minimum, epoch < 0 */
    SNOWFLAKE_EWORKER = -2512,    /* worker id does not fit worker_bits */
    SNOWFLAKE_ETOLERANCE = -2513, /* tolerance_ms outside [0, SNOWFLAKE_TOLERANCE_MS_MAX] */
    SNOWFLAKE_EWINDOW = -2514,    /* reserve_ms outside [RESERVE_MS_MIN, RESERVE_MS_MAX] */
    SNOWFLAKE_EWAIT = -2515,      /* retry after *wait_ms (sequence used up, or small rollback) */
    SNOWFLAKE_EROLLBACK = -2516,  /* clock behind last_ms by more than tolerance_ms */
    SNOWFLAKE_ERESERVE = -2517,   /* now is past the committed reservation: reserve first */
    SNOWFLAKE_ECLOCK = -2518,     /* now_ms is before the layout's epoch */
    SNOWFLAKE_EEXPIRED = -2519,   /* the timestamp no longer fits timestamp_bits */
    SNOWFLAKE_EID = -2520,        /* decode: sign bit set, or a part outside the layout */
};
const char *snowflake_strerror(int rv);

struct snowflake_layout {
    int64_t epoch_ms; /* Unix ms of timestamp 0, >= 0 */
    uint8_t timestamp_bits;
    uint8_t worker_bits; /* 0 allowed: a single worker */
    uint8_t sequence_bits;
};

/* 41/10/12 from 2024-01-01. */
void snowflake_layout_default(struct snowflake_layout *out);
/* 0 or SNOWFLAKE_ELAYOUT. */
int snowflake_layout_check(const struct snowflake_layout *l);
/* Largest worker id the layout holds: 2^worker_bits - 1. l must be valid. */
uint64_t snowflake_worker_max(const struct snowflake_layout *l);

/* ---- generator ----------------------------------------------------------- */

struct snowflake_config {
    struct snowflake_layout layout;
    uint64_t worker_id;
    int64_t floor_ms;     /* from the cluster (rule 1); 0 = worker id never used */
    int64_t tolerance_ms; /* SNOWFLAKE_TOLERANCE_MS_DEFAULT */
    int64_t reserve_ms;   /* SNOWFLAKE_RESERVE_MS_DEFAULT */
};

/* Default layout, worker 0, floor 0, default tolerance and window. */
void snowflake_config_default(struct snowflake_config *out);

/* Caller-owned; fields are read-only outside snowflake.c. */
struct snowflake {
    struct snowflake_layout layout;
    uint64_t worker_id;
    int64_t tolerance_ms;
    int64_t reserve_ms;
    int64_t last_ms;     /* newest Unix ms used (starts at the floor) */
    uint64_t next_seq;   /* next sequence at last_ms; == 2^sequence_bits when used up */
    int64_t reserved_ms; /* committed ceiling: no timestamp above it is issued */
    int64_t proposed_ms; /* ceiling proposed and not yet ended; 0 = none */
    uint64_t n_issued;
    uint64_t n_waits;
    uint64_t n_rollbacks;
};

/* Validates c and sets g up. Returns 0, SNOWFLAKE_ELAYOUT, SNOWFLAKE_EWORKER,
 * SNOWFLAKE_ETOLERANCE, SNOWFLAKE_EWINDOW or SNOWFLAKE_EINVAL. The new generator has
 * reserved_ms = floor_ms, so it issues nothing before a reservation commits. */
int snowflake_init(struct snowflake *g, const struct snowflake_config *c);

/* Issues one ID into *id. Returns 0, SNOWFLAKE_EWAIT (*wait_ms > 0 set), SNOWFLAKE_EROLLBACK,
 * SNOWFLAKE_ERESERVE, SNOWFLAKE_ECLOCK or SNOWFLAKE_EEXPIRED; on error *id is
 * untouched and g is unchanged except for its counters. wait_ms may be NULL; it is
 * set to 0 on every return other than SNOWFLAKE_EWAIT. */
int snowflake_next(struct snowflake *g, int64_t now_ms, uint64_t *id, int64_t *wait_ms);

/* Issues up to cap IDs (cap >= 1), all in one millisecond, into ids[]. Returns 0 with
 * 1 <= *n <= cap, or snowflake_next's error for the first ID with *n = 0. Fewer than
 * cap means the millisecond's sequence ran out: call again (maybe after waiting). */
int snowflake_next_batch(struct snowflake *g, int64_t now_ms, uint64_t *ids, uint32_t cap,
                         uint32_t *n, int64_t *wait_ms);

/* Rule 2. When no proposal is pending and less than half a window is reserved beyond
 * max(now_ms, last_ms), sets *ceiling_ms = max(now_ms, last_ms) + reserve_ms, marks it
 * pending and returns true: the caller commits "floor[worker] = max(floor, ceiling)"
 * through Raft, then calls snowflake_reserve_end(). Otherwise returns false. */
bool snowflake_reserve_begin(struct snowflake *g, int64_t now_ms, int64_t *ceiling_ms);
/* Ends the pending proposal. committed: the cluster's floor is now >= ceiling_ms, so
 * reserved_ms rises to it (never falls). Not committed: nothing changes and the next
 * reserve_begin proposes again. */
void snowflake_reserve_end(struct snowflake *g, int64_t ceiling_ms, bool committed);

/* ---- decoding ------------------------------------------------------------ */

struct snowflake_parts {
    int64_t unix_ms; /* epoch_ms + timestamp */
    uint64_t worker_id;
    uint64_t sequence;
};

/* Splits id by layout l (which must be valid). SNOWFLAKE_EID when the sign bit is set. */
int snowflake_decode(const struct snowflake_layout *l, uint64_t id, struct snowflake_parts *out);
/* The inverse: SNOWFLAKE_EID when a part does not fit its field (or unix_ms < epoch). */
int snowflake_compose(const struct snowflake_layout *l, const struct snowflake_parts *p,
                      uint64_t *id);

#endif /* CONCLAVE_SM_IDGEN_SNOWFLAKE_H */
