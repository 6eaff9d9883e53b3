/* lincheck.h -- linearizability checker for key-value register histories.
 *
 * The simulator and the chaos tests record what clients saw (call time, return
 * time, result) and hand the history to lin_check(), which decides whether
 * some sequential order of the operations, consistent with real time, explains
 * every result (Herlihy & Wing 1990). See sim/lincheck.c for the algorithm.
 *
 * Model: a map uint32 key -> int64 value. LIN_ABSENT means "no such key"; every
 * key starts absent. PUT(k, v) sets (PUT of LIN_ABSENT is a delete). GET(k)
 * returns the value. CAS(k, expected, new) swaps and returns 1 when the current
 * value equals expected (expected == LIN_ABSENT means "create if absent"),
 * else returns 0 and changes nothing.
 *
 * Ownership: lin_check() only reads ops[] and writes *out; it keeps no pointers.
 * Errors are negative errno values (see lin_strerror()).
 */
#ifndef CONCLAVE_SIM_LINCHECK_H
#define CONCLAVE_SIM_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LIN_ABSENT INT64_MIN

/* Largest number of checked ops on one key. Configurations are bitsets of
 * this many bits, and the search is exponential in the number of concurrent
 * ops anyway: split longer histories into more keys or shorter runs.
 * Exceeding it gives -E2BIG. */
#define LIN_OPS_PER_KEY_MAX 4096

/* Most ops reported in a violation window: it is meant to be read by a human. */
#define LIN_WINDOW_MAX 32

/* Budget used when lin_check() is passed max_states_per_key == 0. */
#define LIN_STATES_PER_KEY_DEFAULT 1000000u

enum lin_kind { LIN_PUT, LIN_GET, LIN_CAS };

enum lin_outcome {
    /* completed; ret is valid */
    LIN_OK,
    /* definitely did not take effect (dropped by the checker) */
    LIN_FAIL,
    /* timed out / crashed: may have taken effect at any time after call_us,
     * ret unknown */
    LIN_UNKNOWN
};

/* Field order is the documented API, so the 8 bytes of padding stay. */
struct lin_op { /* NOLINT(clang-analyzer-optin.performance.Padding) */
    /* who issued it (informational) */
    uint32_t client;
    uint32_t key;
    enum lin_kind kind;
    /* PUT: value; CAS: expected */
    int64_t arg;
    /* CAS: new value */
    int64_t arg2;
    /* GET: value read; CAS: 1 swapped / 0 not */
    int64_t ret;
    /* invocation time */
    uint64_t call_us;
    /* response time; ignored when outcome == LIN_UNKNOWN (treated as
     * +infinity), so UINT64_MAX is not a valid response time */
    uint64_t return_us;
    enum lin_outcome outcome;
};

enum lin_verdict { LIN_VERDICT_OK, LIN_VERDICT_VIOLATION, LIN_VERDICT_BUDGET };

/* What the window in a VIOLATION result shows (details in lincheck.c).
 * LAST_WRITE and CUT windows are proofs on their own. */
enum lin_window_kind {
    LIN_WINDOW_NONE,       /* no window (verdict is not VIOLATION) */
    LIN_WINDOW_LAST_WRITE, /* the failed op and every write that could be the
                              last one before it; its result fits none */
    LIN_WINDOW_CUT,        /* every other op called before the window is a
                              read or returned before the window's completed
                              ops were called; the window is not linearizable
                              from any value (from ABSENT if nothing was
                              written before it) */
    LIN_WINDOW_TRUNCATED   /* best effort: the ops nearest the failure */
};

struct lin_result {
    enum lin_verdict verdict;
    uint32_t key; /* key that failed (violation or budget) */
    size_t n_ops_checked;
    uint64_t n_states_explored;
    /* small window showing the violation: indexes into the caller's ops[]
     * array, in call order; always contains failed_op */
    size_t window[LIN_WINDOW_MAX];
    size_t n_window;
    /* additions to the brief's API */
    enum lin_window_kind window_kind;
    size_t failed_op; /* index into ops[]: the op the search could never linearize */
};

/* Checks ops[0..n_ops) (any order). Returns 0 and fills *out, or a
 * negative errno: -EINVAL (NULL pointers, bad kind or outcome, a completed op
 * with return_us < call_us or return_us == UINT64_MAX, CAS ret not 0/1),
 * -E2BIG (a key has more than LIN_OPS_PER_KEY_MAX checked ops; out->key
 * names it), -ENOMEM. max_states_per_key bounds the search steps per key
 * (0 = LIN_STATES_PER_KEY_DEFAULT); a step is one look at one pending op in
 * one configuration. Running out gives LIN_VERDICT_BUDGET, never OK. Keys
 * are checked in ascending order; the first VIOLATION stops the check and
 * wins over BUDGET on another key. */
int lin_check(const struct lin_op *ops, size_t n_ops, uint64_t max_states_per_key,
              struct lin_result *out);

/* Prints the verdict and, for a violation, the window as a table. */
void lin_print_result(const struct lin_result *res, const struct lin_op *ops, FILE *f);

const char *lin_strerror(int rv);
const char *lin_verdict_name(enum lin_verdict v);

#endif /* CONCLAVE_SIM_LINCHECK_H */
