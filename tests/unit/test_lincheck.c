/* test_lincheck.c -- unit tests for sim/lincheck.c, the linearizability checker.
 *
 * Each test builds a small client history by hand (or from a seeded local
 * xorshift generator) and checks the verdict, and for violations the key and
 * the window. Every "OK" test is paired with a near-identical history that
 * must be a VIOLATION, so a checker that always says OK (or always says
 * VIOLATION) fails. Generated histories come from a real register (so they
 * are linearizable) and are then corrupted; tiny random histories are checked
 * against a brute-force reference, and every window it reports is re-checked
 * as the proof it claims to be. Sections: helpers | hand-written histories |
 * limits and errors | generated histories | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lincheck.h"

/* ---- helpers ------------------------------------------------------------ */

#define A           LIN_ABSENT
#define NOW_UNKNOWN 0 /* return_us placeholder for unknown ops */

static struct lin_op op_put(uint32_t client, uint32_t key, int64_t v, uint64_t call_us,
                            uint64_t return_us)
{
    return (struct lin_op){.client = client,
                           .key = key,
                           .kind = LIN_PUT,
                           .arg = v,
                           .call_us = call_us,
                           .return_us = return_us,
                           .outcome = LIN_OK};
}

static struct lin_op op_get(uint32_t client, uint32_t key, int64_t ret, uint64_t call_us,
                            uint64_t return_us)
{
    return (struct lin_op){.client = client,
                           .key = key,
                           .kind = LIN_GET,
                           .ret = ret,
                           .call_us = call_us,
                           .return_us = return_us,
                           .outcome = LIN_OK};
}

static struct lin_op op_cas(uint32_t client, uint32_t key, int64_t expected, int64_t desired,
                            int64_t ret, uint64_t call_us, uint64_t return_us)
{
    return (struct lin_op){.client = client,
                           .key = key,
                           .kind = LIN_CAS,
                           .arg = expected,
                           .arg2 = desired,
                           .ret = ret,
                           .call_us = call_us,
                           .return_us = return_us,
                           .outcome = LIN_OK};
}

static struct lin_op with_outcome(struct lin_op op, enum lin_outcome outcome)
{
    op.outcome = outcome;
    return op;
}

#define N(arr) (sizeof(arr) / sizeof((arr)[0]))

/* Runs the checker, asserts it ran, and returns the verdict. */
static enum lin_verdict check(const struct lin_op *ops, size_t n, uint64_t budget,
                              struct lin_result *res)
{
    int rv = lin_check(ops, n, budget, res);
    assert_int_equal(rv, 0);
    if (res->verdict == LIN_VERDICT_VIOLATION && getenv("LIN_VERBOSE"))
        lin_print_result(res, ops, stderr);
    return res->verdict;
}

static bool window_has(const struct lin_result *res, size_t idx)
{
    for (size_t i = 0; i < res->n_window; i++)
        if (res->window[i] == idx)
            return true;
    return false;
}

/* Every violation window must be non-empty, capped, and contain failed_op. */
static void assert_window_sane(const struct lin_result *res)
{
    assert_int_equal(res->verdict, LIN_VERDICT_VIOLATION);
    assert_true(res->n_window >= 1);
    assert_true(res->n_window <= LIN_WINDOW_MAX);
    assert_true(window_has(res, res->failed_op));
    assert_int_not_equal(res->window_kind, LIN_WINDOW_NONE);
}

/* ---- hand-written histories --------------------------------------------- */

static void test_empty_ok(void **state)
{
    (void)state;
    struct lin_result res;
    assert_int_equal(check(NULL, 0, 0, &res), LIN_VERDICT_OK);
    assert_int_equal(res.n_ops_checked, 0);
    assert_int_equal(res.n_window, 0);
}

static void test_sequential_put_get(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ok[] = {op_put(1, 1, 10, 0, 10), op_get(1, 1, 10, 20, 30),
                          op_put(2, 1, 11, 40, 50), op_get(2, 1, 11, 60, 70)};
    assert_int_equal(check(ok, N(ok), 1000, &res), LIN_VERDICT_OK);
    assert_int_equal(res.n_ops_checked, 4);

    struct lin_op bad[] = {op_put(1, 1, 10, 0, 10), op_get(1, 1, 11, 20, 30)};
    assert_int_equal(check(bad, N(bad), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_window_sane(&res);
}

static void test_get_absent(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ok[] = {op_get(1, 7, A, 0, 10), op_put(1, 7, 3, 20, 30), op_put(1, 7, A, 40, 50),
                          op_get(1, 7, A, 60, 70)};
    assert_int_equal(check(ok, N(ok), 1000, &res), LIN_VERDICT_OK);

    /* A value nobody wrote: the read against the one write before it. */
    struct lin_op bad[] = {op_put(1, 7, 3, 0, 10), op_get(1, 7, 3, 20, 30), op_get(2, 7, 5, 25, 40),
                           op_put(1, 7, 4, 50, 60)};
    assert_int_equal(check(bad, N(bad), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_window_sane(&res);
    assert_int_equal(res.n_window, 2);
    assert_int_equal(res.window[0], 0);
    assert_int_equal(res.window[1], 2);
    assert_int_equal(res.window_kind, LIN_WINDOW_LAST_WRITE);

    /* Nothing written at all: the read alone (ABSENT is the only start). */
    assert_int_equal(check(&bad[2], 1, 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.n_window, 1);
    assert_int_equal(res.window_kind, LIN_WINDOW_LAST_WRITE);
}

static void test_stale_read(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[] = {op_put(1, 1, 1, 0, 10), op_put(1, 1, 2, 20, 30),
                           op_get(2, 1, 1, 40, 50)};
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.key, 1);
    assert_int_equal(res.failed_op, 2);
    assert_window_sane(&res);
    /* put(2) is the only write that can be last before the get. */
    assert_int_equal(res.n_window, 2);
    assert_int_equal(res.window[0], 1);
    assert_int_equal(res.window[1], 2);
    assert_int_equal(res.window_kind, LIN_WINDOW_LAST_WRITE);
}

/* Client A writes x=2 through the new leader; after A's write is acknowledged,
 * client B reads x=1 from the deposed leader that still serves reads. */
static void test_partition_stale_read(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[] = {
        op_put(1, 42, 1, 0, 100),     /* before the partition, via old leader */
        op_get(2, 42, 1, 150, 180),   /* B sees it */
        op_put(1, 42, 2, 1000, 1500), /* A via the new leader, acknowledged */
        op_get(3, 9, A, 1200, 1300),  /* unrelated key */
        op_get(2, 42, 1, 1600, 1650), /* B via the old leader: stale */
    };
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.key, 42);
    assert_int_equal(res.failed_op, 4);
    assert_window_sane(&res);
    assert_true(window_has(&res, 2));
    assert_false(window_has(&res, 3)); /* other keys never enter a window */

    /* The same read overlapping the new write is fine. */
    ops[4].call_us = 1400;
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_OK);
}

static void test_concurrent_ops(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[] = {op_put(1, 1, 1, 0, 100), op_get(2, 1, 1, 10, 20)};
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_OK);
    ops[1].ret = A;
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_OK);
    ops[1].ret = 7;
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_window_sane(&res);
    assert_true(window_has(&res, 1));

    /* Equal timestamps are concurrent: get->1 called at put's return instant. */
    struct lin_op touch[] = {op_get(2, 1, 1, 0, 10), op_put(1, 1, 1, 10, 20)};
    assert_int_equal(check(touch, N(touch), 1000, &res), LIN_VERDICT_OK);
    touch[1].call_us = 11;
    assert_int_equal(check(touch, N(touch), 1000, &res), LIN_VERDICT_VIOLATION);
}

static void test_unknown_put_may_appear(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op seen[] = {with_outcome(op_put(1, 1, 5, 0, NOW_UNKNOWN), LIN_UNKNOWN),
                            op_get(2, 1, 5, 1000, 1010)};
    assert_int_equal(check(seen, N(seen), 1000, &res), LIN_VERDICT_OK);

    struct lin_op unseen[] = {with_outcome(op_put(1, 1, 5, 0, NOW_UNKNOWN), LIN_UNKNOWN),
                              op_get(2, 1, A, 1000, 1010)};
    assert_int_equal(check(unseen, N(unseen), 1000, &res), LIN_VERDICT_OK);

    /* Once a read saw it, it has taken effect and stays. */
    struct lin_op flip[] = {with_outcome(op_put(1, 1, 5, 0, NOW_UNKNOWN), LIN_UNKNOWN),
                            op_get(2, 1, 5, 1000, 1010), op_get(2, 1, A, 1020, 1030)};
    assert_int_equal(check(flip, N(flip), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_window_sane(&res);
    assert_int_equal(res.failed_op, 2);

    /* Absent then 5 is fine: the put may land between the reads. */
    flip[1].ret = A;
    flip[2].ret = 5;
    assert_int_equal(check(flip, N(flip), 1000, &res), LIN_VERDICT_OK);

    /* An unknown put cannot take effect before it was called. */
    struct lin_op early[] = {op_get(2, 1, 5, 0, 10),
                             with_outcome(op_put(1, 1, 5, 20, NOW_UNKNOWN), LIN_UNKNOWN)};
    assert_int_equal(check(early, N(early), 1000, &res), LIN_VERDICT_VIOLATION);
}

static void test_unknown_put_applied_once(void **state)
{
    (void)state;
    struct lin_result res;
    /* put(2) never returned, so it may take effect at any time after its call,
     * even after put(3) completed: reading 2 at the end is linearizable. */
    struct lin_op late[] = {op_put(1, 1, 1, 0, 10),
                            with_outcome(op_put(2, 1, 2, 20, NOW_UNKNOWN), LIN_UNKNOWN),
                            op_put(1, 1, 3, 30, 40), op_get(3, 1, 2, 50, 60)};
    assert_int_equal(check(late, N(late), 1000, &res), LIN_VERDICT_OK);

    /* But if a read already saw 2 before put(3), put(2) was applied then and
     * cannot be applied a second time after put(3). */
    struct lin_op twice[] = {
        op_put(1, 1, 1, 0, 10), with_outcome(op_put(2, 1, 2, 20, NOW_UNKNOWN), LIN_UNKNOWN),
        op_get(3, 1, 2, 30, 40), op_put(1, 1, 3, 50, 60), op_get(3, 1, 2, 70, 80)};
    assert_int_equal(check(twice, N(twice), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_window_sane(&res);
    assert_int_equal(res.failed_op, 4);
    assert_true(window_has(&res, 3));
}

static void test_cas_semantics(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op two_creates[] = {op_cas(1, 1, A, 1, 1, 0, 10), op_cas(2, 1, A, 2, 1, 20, 30)};
    assert_int_equal(check(two_creates, N(two_creates), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_window_sane(&res);
    assert_int_equal(res.failed_op, 1);
    two_creates[1].ret = 0; /* the second create lost: fine */
    assert_int_equal(check(two_creates, N(two_creates), 1000, &res), LIN_VERDICT_OK);

    struct lin_op seq[] = {op_put(1, 1, 1, 0, 10), op_cas(2, 1, 5, 7, 0, 20, 30),
                           op_cas(2, 1, 1, 8, 1, 40, 50), op_get(1, 1, 8, 60, 70)};
    assert_int_equal(check(seq, N(seq), 1000, &res), LIN_VERDICT_OK);
    /* A failed CAS is a read: "value != 1" contradicts the put before it. */
    seq[1].arg = 1;
    assert_int_equal(check(seq, N(seq), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.failed_op, 1);
    assert_window_sane(&res);

    /* An unknown CAS may swap (get sees 9) or not (get sees 1), not both. */
    struct lin_op maybe[] = {op_put(1, 1, 1, 0, 10),
                             with_outcome(op_cas(2, 1, 1, 9, 0, 20, NOW_UNKNOWN), LIN_UNKNOWN),
                             op_get(1, 1, 9, 30, 40), op_get(1, 1, 1, 50, 60)};
    assert_int_equal(check(maybe, 3, 1000, &res), LIN_VERDICT_OK);
    assert_int_equal(check(maybe, 4, 1000, &res), LIN_VERDICT_VIOLATION);
}

static void test_multi_key_independence(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[] = {
        op_put(1, 1, 10, 0, 10),  op_put(2, 2, 20, 5, 15),  op_get(1, 1, 10, 20, 30),
        op_get(2, 2, 21, 25, 35), op_put(1, 1, 11, 40, 50), op_get(1, 1, 11, 60, 70),
    };
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.key, 2);
    assert_int_equal(res.failed_op, 3);
    assert_window_sane(&res);
    for (size_t i = 0; i < res.n_window; i++)
        assert_int_equal(ops[res.window[i]].key, 2);
    /* Key 1 reading key 2's value is wrong only if keys were conflated. */
    ops[3].ret = 20;
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_OK);
    assert_int_equal(res.n_ops_checked, 6);
}

static void test_fail_ops_ignored(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[] = {
        op_put(1, 1, 1, 0, 10),
        with_outcome(op_put(2, 1, 9, 20, 30), LIN_FAIL),
        with_outcome(op_get(2, 1, 77, 20, 30), LIN_FAIL),
        with_outcome(op_get(2, 1, 0, 20, NOW_UNKNOWN), LIN_UNKNOWN),
        op_get(3, 1, 1, 40, 50),
    };
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_OK);
    assert_int_equal(res.n_ops_checked, 2);
    /* Had the put succeeded, the read of 1 would be stale. */
    ops[1].outcome = LIN_OK;
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_VIOLATION);
}

static void test_print_result(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[] = {with_outcome(op_put(1, 1, 5, 0, NOW_UNKNOWN), LIN_UNKNOWN),
                           op_get(2, 1, 5, 1000, 1010), op_put(3, 2, 7, 1000, 1010),
                           op_get(2, 1, A, 1020, 1030)};
    assert_int_equal(check(ops, N(ops), 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.window_kind, LIN_WINDOW_CUT);
    assert_int_equal(res.n_window, 3);
    static char buf[4096];
    FILE *f = tmpfile(); /* C17 has no open_memstream */
    assert_non_null(f);
    lin_print_result(&res, ops, f);
    rewind(f);
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    if (getenv("LIN_VERBOSE"))
        fputs(buf, stderr);
    assert_non_null(strstr(buf, "VIOLATION on key 1"));
    assert_non_null(strstr(buf, "unknown")); /* the carried unknown put */
    assert_non_null(strstr(buf, "absent"));
    assert_non_null(strstr(buf, "*     3"));
}

/* ---- limits and errors -------------------------------------------------- */

static void test_invalid_input(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op backwards[] = {op_put(1, 1, 1, 10, 5)};
    assert_int_equal(lin_check(backwards, 1, 0, &res), -EINVAL);
    struct lin_op cas2[] = {op_cas(1, 1, 1, 2, 2, 0, 5)};
    assert_int_equal(lin_check(cas2, 1, 0, &res), -EINVAL);
    assert_int_equal(lin_check(cas2, 1, 0, NULL), -EINVAL);
    assert_int_equal(lin_check(NULL, 1, 0, &res), -EINVAL);
    assert_non_null(lin_strerror(-EINVAL));

    size_t n = LIN_OPS_PER_KEY_MAX + 1;
    struct lin_op *many = calloc(n, sizeof(*many));
    assert_non_null(many);
    for (size_t i = 0; i < n; i++)
        many[i] = op_put(1, 3, (int64_t)i, 10 * i, 10 * i + 5);
    assert_int_equal(lin_check(many, n, 0, &res), -E2BIG);
    assert_int_equal(res.key, 3);
    assert_int_equal(check(many, n - 1, 0, &res), LIN_VERDICT_OK);
    free(many);
}

/* 40 puts that never returned, concurrent reads of each value, then a read
 * of a value nobody wrote: refuting it means trying every subset and order of
 * the puts and reads. */
static void test_budget(void **state)
{
    (void)state;
    struct lin_result res;
    struct lin_op ops[82];
    size_t n = 0;
    for (int i = 0; i < 40; i++) {
        ops[n++] = with_outcome(op_put((uint32_t)i, 5, i + 1, 0, NOW_UNKNOWN), LIN_UNKNOWN);
        ops[n++] = op_get(50 + (uint32_t)i, 5, i + 1, 10, 1000);
    }
    ops[n++] = op_get(99, 5, 99, 2000, 2010);
    assert_int_equal(check(ops, n, 1000, &res), LIN_VERDICT_BUDGET);
    assert_int_equal(res.key, 5);
    assert_true(res.n_states_explored <= 1000);

    /* A definite violation on another key outranks running out of budget. */
    ops[n++] = op_get(52, 6, 1, 0, 10);
    assert_int_equal(check(ops, n, 1000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.key, 6);
}

/* ---- generated histories -------------------------------------------------- */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
    return xorshift64(s) % n;
}

/* Applies op to a real register at its linearization point and fills ret. */
static void apply_real(struct lin_op *op, int64_t *reg)
{
    switch (op->kind) {
    case LIN_PUT:
        *reg = op->arg;
        break;
    case LIN_GET:
        op->ret = *reg;
        break;
    case LIN_CAS:
        op->ret = *reg == op->arg;
        if (op->ret)
            *reg = op->arg2;
        break;
    }
}

static int64_t rnd_value(uint64_t *s)
{
    return rnd(s, 6) == 0 ? A : (int64_t)rnd(s, 5);
}

static struct lin_op rnd_op(uint64_t *s, uint32_t n_keys)
{
    struct lin_op op = {.client = (uint32_t)rnd(s, 5),
                        .key = (uint32_t)rnd(s, n_keys),
                        .kind = (enum lin_kind)rnd(s, 3),
                        .outcome = LIN_OK};
    op.arg = rnd_value(s);
    op.arg2 = op.kind == LIN_CAS ? (int64_t)rnd(s, 5) : 0;
    if (op.kind == LIN_GET)
        op.arg = 0;
    return op;
}

/* Sequential history from a real register (op i takes effect at 100*i + 50),
 * optionally widened so neighbours overlap; some writes become unknown and
 * some failed ops are mixed in. Returns the number of ops written. */
static size_t gen_history(uint64_t *s, struct lin_op *ops, size_t n, uint32_t n_keys,
                          uint64_t spread_us)
{
    int64_t reg[8];
    size_t m = 0;
    for (uint32_t k = 0; k < n_keys; k++)
        reg[k] = A;
    for (size_t i = 0; i < n; i++) {
        uint64_t at = 100 * (uint64_t)i + 50 + 400;
        struct lin_op op = rnd_op(s, n_keys);
        apply_real(&op, &reg[op.key]);
        op.call_us = at - 1 - rnd(s, spread_us + 1);
        op.return_us = at + 1 + rnd(s, spread_us + 1);
        if (op.kind != LIN_GET && rnd(s, 10) == 0)
            op.outcome = LIN_UNKNOWN;
        ops[m++] = op;
        if (rnd(s, 20) == 0) { /* a failed op with arbitrary claims */
            struct lin_op f = rnd_op(s, n_keys);
            f.ret = 1000;
            f.call_us = op.call_us;
            f.return_us = op.return_us;
            f.outcome = LIN_FAIL;
            ops[m++] = f;
        }
    }
    for (size_t i = m; i > 1; i--) { /* lin_check takes ops in any order */
        size_t j = rnd(s, i);
        struct lin_op t = ops[i - 1];
        ops[i - 1] = ops[j];
        ops[j] = t;
    }
    return m;
}

static void test_randomized(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed1234abcdull;
    enum { ROUNDS = 300, OPS_MAX = 60 };
    struct lin_op ops[2 * OPS_MAX];
    struct lin_result res;
    size_t n_corrupted = 0;
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t s = seed + (uint64_t)round;
        size_t n_gen = 10 + rnd(&s, OPS_MAX - 10);
        uint32_t n_keys = 1 + (uint32_t)rnd(&s, 3);
        uint64_t s2 = s;
        size_t n = gen_history(&s, ops, n_gen, n_keys, 0);
        if (check(ops, n, 100000, &res) != LIN_VERDICT_OK)
            fail_msg("FAIL seed=%#llx round=%d check=sequential", (unsigned long long)seed, round);
        s = s2; /* same ops, intervals now overlap up to 3 neighbours */
        n = gen_history(&s, ops, n_gen, n_keys, 300);
        if (check(ops, n, 100000, &res) != LIN_VERDICT_OK)
            fail_msg("FAIL seed=%#llx round=%d check=concurrent", (unsigned long long)seed, round);
        size_t victim = n;
        for (size_t i = 0; i < n; i++)
            if (ops[i].kind == LIN_GET && ops[i].outcome == LIN_OK)
                victim = i;
        if (victim == n)
            continue;
        ops[victim].ret = 1000; /* never written */
        n_corrupted++;
        if (check(ops, n, 100000, &res) != LIN_VERDICT_VIOLATION)
            fail_msg("FAIL seed=%#llx round=%d check=corrupted", (unsigned long long)seed, round);
        assert_int_equal(res.key, ops[victim].key);
        assert_int_equal(res.failed_op, victim);
        assert_window_sane(&res);
    }
    assert_true(n_corrupted > ROUNDS / 2);
}

/* Reference checker for tiny single-key histories: breadth-first search over
 * (set of applied ops, value), no event list, no memo tricks. An op may go
 * next once every completed op that returned before its call is applied. */
enum { REF_OPS_MAX = 10, REF_VALUES_MAX = 3 * REF_OPS_MAX + 2 };

static bool ref_writes(const struct lin_op *op)
{
    return op->kind == LIN_PUT ||
           (op->kind == LIN_CAS && (op->outcome == LIN_UNKNOWN || op->ret == 1));
}

static int64_t ref_written(const struct lin_op *op)
{
    return op->kind == LIN_PUT ? op->arg : op->arg2;
}

/* An unknown write nothing on the key can observe (see lin_drop_unobserved). */
static bool ref_unobserved(const struct lin_op *ops, const size_t *idx, size_t n,
                           const struct lin_op *w)
{
    if (w->outcome != LIN_UNKNOWN || !ref_writes(w))
        return false;
    for (size_t j = 0; j < n; j++) {
        const struct lin_op *op = &ops[idx[j]];
        if (op->kind == LIN_GET && op->ret == ref_written(w))
            return false;
        if (op->kind == LIN_CAS &&
            (op->arg == ref_written(w) || (op->outcome == LIN_OK && op->ret == 0)))
            return false;
    }
    return true;
}

static bool ref_checked(const struct lin_op *op)
{
    return op->outcome == LIN_OK || (op->outcome == LIN_UNKNOWN && op->kind != LIN_GET);
}

static bool ref_linearizable(const struct lin_op *ops, const size_t *idx, size_t n, int64_t start)
{
    static bool seen[1u << REF_OPS_MAX][REF_VALUES_MAX];
    static struct {
        uint32_t mask;
        uint32_t vi;
    } queue[(1u << REF_OPS_MAX) * REF_VALUES_MAX];
    int64_t values[REF_VALUES_MAX] = {0};
    size_t n_values = 0, head = 0, tail = 0;
    uint32_t must = 0;
    assert_true(n <= REF_OPS_MAX);
    values[n_values++] = start;
    for (size_t j = 0; j < n; j++) {
        const struct lin_op *op = &ops[idx[j]];
        int64_t v[2] = {op->kind == LIN_GET ? op->ret : op->arg, op->arg2};
        for (int t = 0; t < 1 + (op->kind == LIN_CAS); t++) {
            size_t k = 0;
            while (k < n_values && values[k] != v[t])
                k++;
            if (k == n_values)
                values[n_values++] = v[t];
        }
        if (op->outcome == LIN_OK)
            must |= 1u << j;
    }
    memset(seen, 0, sizeof(seen));
    seen[0][0] = true;
    queue[tail].mask = 0, queue[tail++].vi = 0;
    while (head < tail) {
        uint32_t mask = queue[head].mask, vi = queue[head++].vi;
        if ((mask & must) == must)
            return true;
        for (size_t x = 0; x < n; x++) {
            const struct lin_op *op = &ops[idx[x]];
            bool ready = !(mask & (1u << x));
            for (size_t y = 0; y < n && ready; y++)
                if (y != x && !(mask & (1u << y)) && ops[idx[y]].outcome == LIN_OK &&
                    ops[idx[y]].return_us < op->call_us)
                    ready = false;
            if (!ready)
                continue;
            int64_t cur = values[vi], next = cur;
            bool ok = true;
            if (op->kind == LIN_PUT)
                next = op->arg;
            else if (op->kind == LIN_GET)
                ok = cur == op->ret;
            else if (op->outcome == LIN_UNKNOWN || op->ret == 1)
                ok = cur == op->arg, next = op->arg2;
            else
                ok = cur != op->arg;
            if (!ok)
                continue;
            uint32_t nvi = 0;
            while (nvi + 1 < n_values && values[nvi] != next)
                nvi++;
            uint32_t nmask = mask | (1u << x);
            if (!seen[nmask][nvi]) {
                seen[nmask][nvi] = true;
                queue[tail].mask = nmask, queue[tail++].vi = nvi;
            }
        }
    }
    return false;
}

/* Random tiny histories (mostly not linearizable) checked against the
 * reference; every violation window is re-checked as the witness it claims
 * to be. */
static void test_differential(void **state)
{
    (void)state;
    enum { ROUNDS = 20000 };
    static const int64_t vals[] = {A, 0, 1, 2};
    uint64_t s = 0xd1ffull;
    size_t n_kind[LIN_WINDOW_TRUNCATED + 1] = {0}, n_bad = 0;
    for (int round = 0; round < ROUNDS; round++) {
        struct lin_op ops[REF_OPS_MAX];
        size_t idx[REF_OPS_MAX], n = 1 + rnd(&s, REF_OPS_MAX), n_idx = 0;
        for (size_t i = 0; i < n; i++) {
            struct lin_op *op = &ops[i];
            *op =
                (struct lin_op){.client = (uint32_t)i, .key = 1, .kind = (enum lin_kind)rnd(&s, 3)};
            op->arg = vals[rnd(&s, 4)];
            op->arg2 = vals[1 + rnd(&s, 3)];
            op->ret = op->kind == LIN_CAS ? (int64_t)rnd(&s, 2) : vals[rnd(&s, 4)];
            op->call_us = rnd(&s, 40);
            op->return_us = op->call_us + rnd(&s, 20);
            uint64_t o = rnd(&s, 20);
            op->outcome = o < 14 ? LIN_OK : o < 17 ? LIN_UNKNOWN : LIN_FAIL;
            if (ref_checked(op))
                idx[n_idx++] = i;
        }
        struct lin_result res;
        bool expect = ref_linearizable(ops, idx, n_idx, A);
        enum lin_verdict v = check(ops, n, 100000, &res);
        if (v != (expect ? LIN_VERDICT_OK : LIN_VERDICT_VIOLATION))
            fail_msg("FAIL seed=0xd1ff round=%d check=differential ref=%d got=%s", round, expect,
                     lin_verdict_name(v));
        if (v != LIN_VERDICT_VIOLATION)
            continue;
        n_bad++;
        assert_window_sane(&res);
        n_kind[res.window_kind]++;
        if (res.window_kind == LIN_WINDOW_TRUNCATED)
            continue;
        uint64_t t_fail = ops[res.failed_op].return_us, t_next = UINT64_MAX;
        uint64_t f_call = ops[res.failed_op].call_us, last_forced_call = 0;
        uint64_t first_call = UINT64_MAX;
        bool any_forced = false, left_out_write = false;
        for (size_t j = 0; j < n_idx; j++) {
            const struct lin_op *op = &ops[idx[j]];
            if (op->call_us > t_fail && op->call_us < t_next &&
                !ref_unobserved(ops, idx, n_idx, op))
                t_next = op->call_us;
            if (window_has(&res, idx[j]) && op->outcome == LIN_OK && op->call_us < first_call)
                first_call = op->call_us;
            if (ref_writes(op) && op->outcome == LIN_OK && op->return_us < f_call &&
                idx[j] != res.failed_op) {
                any_forced = true;
                if (op->call_us > last_forced_call)
                    last_forced_call = op->call_us;
            }
        }
        if (res.window_kind == LIN_WINDOW_LAST_WRITE) {
            /* Exactly F and the writes of P that can be last before F;
             * F alone fits none of their values. */
            size_t f_only[1] = {res.failed_op};
            if (!any_forced && ref_linearizable(ops, f_only, 1, A))
                fail_msg("FAIL round=%d check=last-write absent", round);
            for (size_t j = 0; j < n_idx; j++) {
                const struct lin_op *op = &ops[idx[j]];
                bool cand = idx[j] != res.failed_op && ref_writes(op) && op->call_us <= t_fail &&
                            (op->outcome == LIN_UNKNOWN || op->return_us >= last_forced_call);
                /* candidates may be missing only if nothing could observe them */
                if (idx[j] != res.failed_op && window_has(&res, idx[j]))
                    assert_true(cand);
                if (cand && !window_has(&res, idx[j]))
                    assert_true(ref_unobserved(ops, idx, n_idx, op));
                if (cand && ref_linearizable(ops, f_only, 1, ref_written(op)))
                    fail_msg("FAIL round=%d check=last-write value", round);
            }
            continue;
        }
        /* CUT: ops left out cannot rescue the window ... */
        for (size_t j = 0; j < n_idx; j++) {
            const struct lin_op *op = &ops[idx[j]];
            bool read = op->outcome == LIN_OK &&
                        (op->kind == LIN_GET || (op->kind == LIN_CAS && op->ret == 0));
            if (window_has(&res, idx[j])) {
                assert_false(read && op->return_us >= t_next);
                assert_false(op->outcome == LIN_OK && op->kind == LIN_CAS && op->ret == 1 &&
                             op->return_us >= t_next);
            } else if (op->call_us <= t_fail && !read &&
                       !(op->outcome == LIN_UNKNOWN && ref_unobserved(ops, idx, n_idx, op))) {
                assert_int_equal(op->outcome, LIN_OK);
                assert_true(op->return_us < first_call);
                left_out_write = left_out_write || ref_writes(op);
            }
        }
        /* ... and it fails from any start value (ABSENT if none written). */
        static const int64_t any[] = {A, 0, 1, 2, 1000};
        for (size_t k = 0; k < (left_out_write ? N(any) : 1); k++)
            if (ref_linearizable(ops, res.window, res.n_window, any[k]))
                fail_msg("FAIL round=%d check=cut start=%lld", round, (long long)any[k]);
    }
    print_message("lincheck differential: %zu violations; windows: last-write=%zu "
                  "cut=%zu truncated=%zu\n",
                  n_bad, n_kind[LIN_WINDOW_LAST_WRITE], n_kind[LIN_WINDOW_CUT],
                  n_kind[LIN_WINDOW_TRUNCATED]);
    assert_true(n_bad > ROUNDS / 10);
    assert_true(n_bad < ROUNDS);
    assert_true(n_kind[LIN_WINDOW_CUT] > 0);
    assert_true(n_kind[LIN_WINDOW_TRUNCATED] < n_bad / 10);
}

struct timed_op {
    struct lin_op op;
    uint64_t at_us; /* linearization point */
};

static int timed_cmp(const void *a, const void *b)
{
    const struct timed_op *x = a, *y = b;
    return (x->at_us > y->at_us) - (x->at_us < y->at_us);
}

/* 2000 ops, 5 keys, 5 clients each issuing back to back with random latency. */
static void test_performance(void **state)
{
    (void)state;
    enum { CLIENTS = 5, PER_CLIENT = 400, N_OPS = CLIENTS * PER_CLIENT };
    static struct timed_op timed[N_OPS];
    static struct lin_op ops[N_OPS];
    uint64_t s = 0xc0ffee;
    size_t n = 0;
    for (uint32_t c = 0; c < CLIENTS; c++) {
        uint64_t t = rnd(&s, 10);
        for (int i = 0; i < PER_CLIENT; i++) {
            struct timed_op *x = &timed[n++];
            x->op = rnd_op(&s, 5);
            x->op.client = c;
            x->op.call_us = t;
            x->at_us = t + 1 + rnd(&s, 50);
            x->op.return_us = x->at_us + 1 + rnd(&s, 50);
            t = x->op.return_us + rnd(&s, 10);
        }
    }
    qsort(timed, n, sizeof(*timed), timed_cmp);
    int64_t reg[5] = {A, A, A, A, A};
    for (size_t i = 0; i < n; i++) {
        apply_real(&timed[i].op, &reg[timed[i].op.key]);
        ops[i] = timed[i].op;
    }
    struct lin_result res;
    clock_t t0 = clock();
    assert_int_equal(check(ops, n, 1000000, &res), LIN_VERDICT_OK);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    print_message("lincheck perf: %zu ops, %llu states, %.3f s\n", n,
                  (unsigned long long)res.n_states_explored, secs);
    assert_int_equal(res.n_ops_checked, N_OPS);
    assert_true(secs < 10.0);

    size_t victim = N_OPS / 2; /* corrupt a read in the middle */
    while (ops[victim].kind != LIN_GET)
        victim++;
    ops[victim].ret = 1000;
    assert_int_equal(check(ops, n, 1000000, &res), LIN_VERDICT_VIOLATION);
    assert_int_equal(res.failed_op, victim);
    assert_window_sane(&res);
}

/* ---- main --------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_ok),
        cmocka_unit_test(test_sequential_put_get),
        cmocka_unit_test(test_get_absent),
        cmocka_unit_test(test_stale_read),
        cmocka_unit_test(test_partition_stale_read),
        cmocka_unit_test(test_concurrent_ops),
        cmocka_unit_test(test_unknown_put_may_appear),
        cmocka_unit_test(test_unknown_put_applied_once),
        cmocka_unit_test(test_cas_semantics),
        cmocka_unit_test(test_multi_key_independence),
        cmocka_unit_test(test_fail_ops_ignored),
        cmocka_unit_test(test_print_result),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_randomized),
        cmocka_unit_test(test_differential),
        cmocka_unit_test(test_performance),
    };
    return cmocka_run_group_tests_name("lincheck", tests, NULL, NULL);
}
