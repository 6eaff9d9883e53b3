/* test_lock.c -- unit tests for sm/lock, the replicated lock table.
 *
 * Codec: round trips of every command (canonical bytes), strict rejection of every
 * malformed shape with its own error, truncation at every offset, random bytes.
 * Semantics: mutual exclusion and BUSY, owner-and-token release (compare-and-delete),
 * FIFO wake-ups, reentrancy, read-write rules (shared readers, writer fairness, runs of
 * readers woken together, no upgrade), semaphore limits, elections (campaign, proclaim,
 * resign, leader), idempotent retries and cancel, lease death releasing holds and waking
 * the next waiter, token monotonicity (also across idle deletion and snapshots), every
 * limit's own error, and errors that change nothing. Snapshots: round trips preserving
 * queue order, tokens, counts and values; every byte flip; hand-built images breaking
 * one invariant each with a valid CRC (negative controls for lock_check).
 * Random model: seeded runs of thousands of commands checked step by step against a
 * simple reference model (exact results and events), plus the safety invariants on the
 * table itself, with snapshot round trips midway.
 *
 * Sections: helpers | codec | mutex | rw | semaphore | election | queue and lease death |
 * tokens | limits | snapshots | random model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/le.h"
#include "base/prng.h"
#include "sm/lease.h"
#include "sm/lock.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint16_t)strlen(s))

/* ==== helpers ============================================================ */

struct env {
    struct lease_table *leases;
    struct lock_table *locks;
    uint64_t index;
    struct lock_result res; /* the last result; freed by the next call */
};

static struct env *env_new(void)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(lease_new(&e->leases), 0);
    assert_int_equal(lock_new(&e->locks), 0);
    e->index = 1;
    return e;
}

static void env_check(struct env *e)
{
    assert_int_equal(lock_check(e->locks), 0);
    assert_int_equal(lock_check_leases(e->locks, e->leases), 0);
}

static void env_free(struct env *e)
{
    env_check(e);
    lock_result_free(&e->res);
    lock_free(e->locks);
    lease_free(e->leases);
    free(e);
}

static int64_t grant(struct env *e)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_grant(0, 10000, buf, sizeof buf, &n), 0);
    struct lease_result res;
    assert_int_equal(lease_apply(e->leases, buf, n, e->index++, &res), 0);
    int64_t id = res.id;
    lease_result_free(&res);
    return id;
}

/* Revokes a lease the way the composite machine will: lease first, then the locks. */
static void revoke(struct env *e, int64_t id)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_revoke(id, buf, sizeof buf, &n), 0);
    struct lease_result lres;
    assert_int_equal(lease_apply(e->leases, buf, n, e->index, &lres), 0);
    lock_result_free(&e->res);
    assert_int_equal(
        lock_lease_died(e->locks, e->leases, id, lres.items, lres.n_items, e->index++, &e->res), 0);
    lease_result_free(&lres);
}

static int apply(struct env *e, const struct lock_cmd *c)
{
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n;
    int rv = lock_encode(c, buf, sizeof buf, &n);
    if (rv != 0) {
        return rv;
    }
    lock_result_free(&e->res);
    rv = lock_apply(e->locks, e->leases, buf, n, e->index++, &e->res);
    assert_int_equal(rv, e->res.err);
    return rv;
}

static int acq(struct env *e, const char *name, uint8_t kind, uint8_t mode, uint32_t limit,
               const char *owner, int64_t lease, bool wait, uint64_t req)
{
    struct lock_cmd c = {.type = LOCK_CMD_ACQUIRE,
                         .kind = kind,
                         .mode = mode,
                         .flags = wait ? LOCK_ACQUIRE_WAIT : 0,
                         .limit = limit,
                         .lease = lease,
                         .request_id = req,
                         .name = B(name),
                         .name_len = L(name),
                         .owner = B(owner),
                         .owner_len = L(owner)};
    return apply(e, &c);
}

static int mutex(struct env *e, const char *name, const char *owner, int64_t lease, bool wait,
                 uint64_t req)
{
    return acq(e, name, LOCK_KIND_MUTEX, LOCK_MODE_EXCLUSIVE, 0, owner, lease, wait, req);
}

static int campaign(struct env *e, const char *name, const char *owner, int64_t lease,
                    const char *value, uint64_t req)
{
    struct lock_cmd c = {.type = LOCK_CMD_ACQUIRE,
                         .kind = LOCK_KIND_ELECTION,
                         .mode = LOCK_MODE_EXCLUSIVE,
                         .flags = LOCK_ACQUIRE_WAIT,
                         .lease = lease,
                         .request_id = req,
                         .name = B(name),
                         .name_len = L(name),
                         .owner = B(owner),
                         .owner_len = L(owner),
                         .value = B(value),
                         .value_len = L(value)};
    return apply(e, &c);
}

static int rel(struct env *e, const char *name, const char *owner, uint64_t token, bool all)
{
    struct lock_cmd c = {.type = LOCK_CMD_RELEASE,
                         .flags = all ? LOCK_RELEASE_ALL : 0,
                         .token = token,
                         .name = B(name),
                         .name_len = L(name),
                         .owner = B(owner),
                         .owner_len = L(owner)};
    return apply(e, &c);
}

static int cancel(struct env *e, const char *name, const char *owner, uint64_t req)
{
    struct lock_cmd c = {.type = LOCK_CMD_CANCEL,
                         .request_id = req,
                         .name = B(name),
                         .name_len = L(name),
                         .owner = B(owner),
                         .owner_len = L(owner)};
    return apply(e, &c);
}

static int proclaim(struct env *e, const char *name, const char *owner, uint64_t token,
                    const char *value)
{
    struct lock_cmd c = {.type = LOCK_CMD_PROCLAIM,
                         .token = token,
                         .name = B(name),
                         .name_len = L(name),
                         .owner = B(owner),
                         .owner_len = L(owner),
                         .value = B(value),
                         .value_len = L(value)};
    return apply(e, &c);
}

static void assert_str(const uint8_t *b, uint16_t len, const char *s)
{
    assert_int_equal(len, L(s));
    if (len > 0) {
        assert_memory_equal(b, s, len);
    }
}

/* The i-th event of the last result. */
static const struct lock_event *ev(struct env *e, uint32_t i)
{
    assert_true(i < e->res.n_events);
    return &e->res.events[i];
}

static void assert_event(struct env *e, uint32_t i, uint8_t type, const char *owner)
{
    const struct lock_event *x = ev(e, i);
    assert_int_equal(x->type, type);
    assert_str(x->owner, x->owner_len, owner);
}

static uint32_t n_holders(struct env *e, const char *name)
{
    struct lock_info info;
    if (lock_get(e->locks, B(name), L(name), &info) != 0) {
        return 0;
    }
    return info.n_holders;
}

static uint32_t n_waiters(struct env *e, const char *name)
{
    struct lock_info info;
    if (lock_get(e->locks, B(name), L(name), &info) != 0) {
        return 0;
    }
    return info.n_waiters;
}

/* ==== codec ============================================================== */

static void check_round_trip(const struct lock_cmd *c)
{
    uint8_t buf[LOCK_CMD_BYTES_MAX + 1], buf2[LOCK_CMD_BYTES_MAX];
    size_t n, n2;
    assert_int_equal(lock_encode(c, buf, LOCK_CMD_BYTES_MAX, &n), 0);
    assert_int_equal(buf[0], LOCK_CMD_TAG);
    assert_int_equal(buf[1], LOCK_FORMAT_VERSION);
    struct lock_cmd d;
    assert_int_equal(lock_decode(buf, n, &d), 0);
    assert_int_equal(d.type, c->type);
    assert_int_equal(d.kind, c->kind);
    assert_int_equal(d.mode, c->mode);
    assert_int_equal(d.flags, c->flags);
    assert_int_equal(d.limit, c->limit);
    assert_int_equal(d.lease, c->lease);
    assert_int_equal(d.request_id, c->request_id);
    assert_int_equal(d.token, c->token);
    assert_str(d.name, d.name_len, (const char *)c->name);
    assert_str(d.owner, d.owner_len, (const char *)c->owner);
    assert_int_equal(d.value_len, c->value_len);
    assert_int_equal(lock_encode(&d, buf2, sizeof buf2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n);
    for (size_t cut = 0; cut < n; cut++) {
        int rv = lock_decode(buf, cut, &d);
        assert_int_equal(rv, LOCK_EMALFORMED);
        assert_int_equal(d.type, 0);
    }
    buf[n] = 0;
    assert_int_equal(lock_decode(buf, n + 1, &d), LOCK_EMALFORMED);
}

static void test_codec_round_trips(void **state)
{
    struct lock_cmd base = {.name = B("jobs"), .name_len = 4, .owner = B("w-1"), .owner_len = 3};
    struct lock_cmd c = base;
    c.type = LOCK_CMD_ACQUIRE;
    c.kind = LOCK_KIND_MUTEX;
    c.mode = LOCK_MODE_EXCLUSIVE;
    c.lease = 5;
    c.request_id = 9;
    check_round_trip(&c);
    c.flags = LOCK_ACQUIRE_WAIT;
    c.kind = LOCK_KIND_SEMAPHORE;
    c.limit = LOCK_HOLDERS_MAX;
    c.lease = INT64_MAX;
    c.request_id = UINT64_MAX;
    check_round_trip(&c);
    c.kind = LOCK_KIND_RW;
    c.mode = LOCK_MODE_READ;
    c.limit = 0;
    check_round_trip(&c);
    c.kind = LOCK_KIND_ELECTION;
    c.mode = LOCK_MODE_EXCLUSIVE;
    c.value = B("10.0.0.1:80");
    c.value_len = 11;
    check_round_trip(&c);

    c = base;
    c.type = LOCK_CMD_RELEASE;
    c.token = 77;
    check_round_trip(&c);
    c.flags = LOCK_RELEASE_ALL;
    check_round_trip(&c);
    c = base;
    c.type = LOCK_CMD_CANCEL;
    c.request_id = 3;
    check_round_trip(&c);
    c = base;
    c.type = LOCK_CMD_PROCLAIM;
    c.token = 1;
    check_round_trip(&c); /* an empty value is a value */
    c.value = B("v");
    c.value_len = 1;
    check_round_trip(&c);
}

static void test_codec_rejects_each_rule(void **state)
{
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n;
    static uint8_t big[LOCK_VALUE_BYTES_MAX + 1];
    const struct lock_cmd ok = {.type = LOCK_CMD_ACQUIRE,
                                .kind = LOCK_KIND_MUTEX,
                                .mode = LOCK_MODE_EXCLUSIVE,
                                .lease = 1,
                                .request_id = 1,
                                .name = B("n"),
                                .name_len = 1,
                                .owner = B("o"),
                                .owner_len = 1};
    struct {
        struct lock_cmd c;
        int rv;
    } cases[16];
    int k = 0;
#define CASE(field, val, err)     \
    do {                          \
        cases[k].c = ok;          \
        cases[k].c.field = (val); \
        cases[k].rv = (err);      \
        k++;                      \
    } while (0)
    CASE(name_len, 0, LOCK_ENAMEEMPTY);
    CASE(name_len, LOCK_NAME_BYTES_MAX + 1, LOCK_ENAMETOOBIG);
    CASE(owner_len, 0, LOCK_EOWNEREMPTY);
    CASE(owner_len, LOCK_OWNER_BYTES_MAX + 1, LOCK_EOWNERTOOBIG);
    CASE(kind, 5, LOCK_EINVAL);
    CASE(mode, LOCK_MODE_READ, LOCK_EMODE); /* read on a mutex */
    CASE(flags, 0x02, LOCK_EINVAL);
    CASE(limit, 1, LOCK_ELIMIT); /* a limit on a mutex */
    CASE(lease, 0, LOCK_EINVAL);
    CASE(request_id, 0, LOCK_EINVAL);
    CASE(token, 3, LOCK_EINVAL); /* a field ACQUIRE does not carry */
    CASE(value_len, 1, LOCK_EVALUE);
    CASE(type, 5, LOCK_EINVAL); /* LEASE_DEATH is not a command */
#undef CASE
    for (int i = 0; i < k; i++) {
        if (cases[i].c.name_len > 1) {
            cases[i].c.name = big;
        }
        if (cases[i].c.owner_len > 1) {
            cases[i].c.owner = big;
        }
        if (cases[i].c.value_len > 0) {
            cases[i].c.value = B("v");
        }
        assert_int_equal(lock_encode(&cases[i].c, buf, sizeof buf, &n), cases[i].rv);
    }
    struct lock_cmd c = ok;
    c.kind = LOCK_KIND_SEMAPHORE;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_ELIMIT); /* limit 0 */
    c.limit = LOCK_HOLDERS_MAX + 1;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_ELIMIT);
    c = ok;
    c.kind = LOCK_KIND_RW;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EMODE); /* exclusive on rw */
    c = ok;
    c.kind = LOCK_KIND_ELECTION;
    c.value = big;
    c.value_len = LOCK_VALUE_BYTES_MAX + 1;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EVALUETOOBIG);
    c.value_len = LOCK_VALUE_BYTES_MAX;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), 0);
    assert_int_equal(lock_encode(&ok, buf, LOCK_CMD_BYTES_MAX - 1, &n), LOCK_EINVAL);
    c = ok;
    c.type = LOCK_CMD_RELEASE;
    c.kind = 0;
    c.mode = 0;
    c.lease = 0;
    c.request_id = 0;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EINVAL); /* token 0 */
    c.token = 1;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), 0);
    c.flags = 2;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EINVAL);
    c.flags = 0;
    c.lease = 4;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EINVAL);
    c.lease = 0;
    c.type = LOCK_CMD_CANCEL;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EINVAL); /* token on cancel */
    c.token = 0;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), LOCK_EINVAL); /* request id 0 */
    c.request_id = 2;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), 0);

    /* Hand-built bytes: the decoder runs the same checks. */
    assert_int_equal(lock_encode(&ok, buf, sizeof buf, &n), 0);
    struct lock_cmd d;
    buf[3] = 9; /* kind */
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EINVAL);
    buf[3] = LOCK_KIND_MUTEX;
    buf[4] = LOCK_MODE_WRITE;
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EMODE);
    buf[4] = LOCK_MODE_EXCLUSIVE;
    buf[5] = 0x80; /* unknown flag */
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EINVAL);
    buf[5] = 0;
    buf[0] = LEASE_CMD_TAG;
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EMALFORMED);
    buf[0] = LOCK_CMD_TAG;
    buf[1] = 7;
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EFORMAT);
    buf[1] = LOCK_FORMAT_VERSION;
    buf[2] = 0;
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EMALFORMED);
    buf[2] = LOCK_CMD_ACQUIRE;
    assert_int_equal(lock_decode(buf, n, &d), 0);
    /* A string length pointing past the end. */
    buf[3 + 3 + 4 + 8 + 8] = 0xff;
    assert_int_equal(lock_decode(buf, n, &d), LOCK_EMALFORMED);
    assert_int_equal(lock_decode(NULL, 0, &d), LOCK_EMALFORMED);
}

static void test_codec_random_bytes(void **state)
{
    struct prng p;
    prng_seed(&p, 11);
    uint8_t buf[64];
    unsigned accepted = 0;
    for (int i = 0; i < 300000; i++) {
        size_t n = (size_t)prng_below(&p, sizeof buf + 1);
        for (size_t k = 0; k < n; k++) {
            buf[k] = (uint8_t)prng_below(&p, 6); /* small bytes: valid enums and lengths */
        }
        if (n >= 3) {
            buf[0] = LOCK_CMD_TAG;
            buf[1] = LOCK_FORMAT_VERSION;
        }
        struct lock_cmd d;
        int rv = lock_decode(buf, n, &d);
        if (rv == 0) {
            accepted++;
            uint8_t out[LOCK_CMD_BYTES_MAX];
            size_t m;
            assert_int_equal(lock_encode(&d, out, sizeof out, &m), 0);
            assert_int_equal(m, n);
            assert_memory_equal(out, buf, n);
        } else {
            assert_true(rv <= -2301 && rv >= -2323);
        }
    }
    assert_true(accepted > 0);
}

/* ==== mutex ============================================================== */

static void test_mutex_exclusion_and_owner_checked_release(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e), lb = grant(e);
    assert_int_equal(mutex(e, "m", "a", la, false, 1), 0);
    assert_int_equal(e->res.status, LOCK_GRANTED);
    assert_false(e->res.reentrant);
    uint64_t ta = e->res.token;
    assert_int_equal(e->res.hold_count, 1);
    assert_int_equal(e->res.n_events, 1);
    assert_event(e, 0, LOCK_EV_GRANTED, "a");
    assert_int_equal(ev(e, 0)->token, ta);
    assert_int_equal(ev(e, 0)->request_id, 1);
    assert_str(ev(e, 0)->name, ev(e, 0)->name_len, "m");

    uint64_t d = lock_digest(e->locks);
    assert_int_equal(mutex(e, "m", "b", lb, false, 2), 0);
    assert_int_equal(e->res.status, LOCK_BUSY);
    assert_int_equal(e->res.n_events, 0);
    assert_int_equal(lock_digest(e->locks), d); /* BUSY changes nothing */
    /* The same owner name with another lease is another party. */
    assert_int_equal(mutex(e, "m", "a", lb, false, 3), 0);
    assert_int_equal(e->res.status, LOCK_BUSY);

    /* Compare-and-delete: token and owner must both match. */
    assert_int_equal(rel(e, "m", "b", ta, false), LOCK_ENOTHOLDER);
    assert_int_equal(rel(e, "m", "a", ta + 1, false), LOCK_ENOTHOLDER);
    assert_int_equal(rel(e, "nope", "a", ta, false), LOCK_ENOTFOUND);
    assert_int_equal(lock_digest(e->locks), d);
    assert_int_equal(rel(e, "m", "a", ta, false), 0);
    assert_int_equal(e->res.hold_count, 0);
    assert_int_equal(e->res.token, ta);
    assert_event(e, 0, LOCK_EV_RELEASED, "a");
    assert_int_equal(lock_count(e->locks), 0); /* idle: deleted */
    assert_false(lease_item_attached(e->leases, la, LEASE_ITEM_LOCK, B("m"), 1));

    assert_int_equal(mutex(e, "m", "b", lb, false, 4), 0);
    assert_int_equal(e->res.status, LOCK_GRANTED);
    assert_true(e->res.token > ta);
    assert_true(lease_item_attached(e->leases, lb, LEASE_ITEM_LOCK, B("m"), 1));
    env_free(e);
}

static void test_fifo_queue(void **state)
{
    struct env *e = env_new();
    int64_t ls[6];
    char owner[6][16];
    for (int i = 0; i < 6; i++) {
        ls[i] = grant(e);
        snprintf(owner[i], sizeof owner[i], "o%d", i);
    }
    assert_int_equal(mutex(e, "q", owner[0], ls[0], true, 100), 0);
    uint64_t token = e->res.token;
    for (int i = 1; i < 6; i++) {
        assert_int_equal(mutex(e, "q", owner[i], ls[i], true, 100 + (uint64_t)i), 0);
        assert_int_equal(e->res.status, LOCK_QUEUED);
        assert_int_equal(e->res.position, i - 1);
    }
    /* A newcomer without wait is BUSY even though... the lock is held anyway. */
    assert_int_equal(n_waiters(e, "q"), 5);
    /* Each release wakes exactly the next waiter, in arrival order. */
    for (int i = 1; i < 6; i++) {
        assert_int_equal(rel(e, "q", owner[i - 1], token, false), 0);
        assert_int_equal(e->res.n_events, 2);
        assert_event(e, 0, LOCK_EV_RELEASED, owner[i - 1]);
        assert_event(e, 1, LOCK_EV_GRANTED, owner[i]);
        assert_int_equal(ev(e, 1)->request_id, 100 + (uint64_t)i);
        assert_true(ev(e, 1)->token > token);
        token = ev(e, 1)->token;
        assert_int_equal(n_holders(e, "q"), 1);
        assert_int_equal(n_waiters(e, "q"), 5 - (uint32_t)i);
    }
    struct lock_info info;
    assert_int_equal(lock_get(e->locks, B("q"), 1, &info), 0);
    struct lock_party h;
    lock_info_holder(&info, 0, &h);
    assert_str(h.owner, h.owner_len, owner[5]);
    assert_int_equal(h.token, token);
    assert_int_equal(h.request_id, 105);
    env_free(e);
}

static void test_newcomer_does_not_jump_the_queue(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e), lb = grant(e), lc = grant(e);
    assert_int_equal(acq(e, "s", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 1, "a", la, true, 1), 0);
    uint64_t ta = e->res.token;
    assert_int_equal(acq(e, "s", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 1, "b", lb, true, 2), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED);
    /* Release wakes b at once, so c (arriving after) waits behind nobody but b. */
    assert_int_equal(rel(e, "s", "a", ta, false), 0);
    assert_event(e, 1, LOCK_EV_GRANTED, "b");
    assert_int_equal(acq(e, "s", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 1, "c", lc, false, 3),
                     0);
    assert_int_equal(e->res.status, LOCK_BUSY);
    env_free(e);
}

static void test_reentrancy(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e), lb = grant(e);
    assert_int_equal(mutex(e, "r", "a", la, false, 1), 0);
    uint64_t t = e->res.token;
    assert_int_equal(mutex(e, "r", "b", lb, true, 2), 0); /* a waiter behind */
    for (uint32_t i = 2; i <= 4; i++) {
        assert_int_equal(mutex(e, "r", "a", la, false, 10 + i), 0); /* queue is not empty */
        assert_int_equal(e->res.status, LOCK_GRANTED);
        assert_true(e->res.reentrant);
        assert_int_equal(e->res.token, t);
        assert_int_equal(e->res.hold_count, i);
        assert_int_equal(e->res.n_events, 0);
    }
    for (uint32_t left = 3; left >= 1; left--) {
        assert_int_equal(rel(e, "r", "a", t, false), 0);
        assert_int_equal(e->res.hold_count, left);
        assert_int_equal(e->res.n_events, 0);
        assert_int_equal(n_holders(e, "r"), 1);
    }
    assert_int_equal(rel(e, "r", "a", t, false), 0);
    assert_int_equal(e->res.hold_count, 0);
    assert_event(e, 1, LOCK_EV_GRANTED, "b");
    uint64_t tb = ev(e, 1)->token;
    /* RELEASE_ALL drops a deep hold at once. */
    assert_int_equal(mutex(e, "r", "b", lb, false, 20), 0);
    assert_int_equal(mutex(e, "r", "b", lb, false, 21), 0);
    assert_int_equal(e->res.hold_count, 3);
    assert_int_equal(rel(e, "r", "b", tb, true), 0);
    assert_int_equal(e->res.hold_count, 0);
    assert_int_equal(lock_count(e->locks), 0);
    env_free(e);
}

static void test_hold_count_limit(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e);
    assert_int_equal(mutex(e, "deep", "a", la, false, 1), 0);
    /* Apply the same encoded ACQUIRE directly: fast enough for a million. */
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n;
    struct lock_cmd c = {.type = LOCK_CMD_ACQUIRE,
                         .kind = LOCK_KIND_MUTEX,
                         .mode = LOCK_MODE_EXCLUSIVE,
                         .lease = la,
                         .request_id = 2,
                         .name = B("deep"),
                         .name_len = 4,
                         .owner = B("a"),
                         .owner_len = 1};
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), 0);
    struct lock_result res;
    for (uint32_t i = 2; i <= LOCK_HOLD_COUNT_MAX; i++) {
        assert_int_equal(lock_apply(e->locks, e->leases, buf, n, e->index++, &res), 0);
        lock_result_free(&res);
    }
    assert_int_equal(lock_apply(e->locks, e->leases, buf, n, e->index++, &res), LOCK_EHOLDCOUNT);
    lock_result_free(&res);
    struct lock_info info;
    struct lock_party h;
    assert_int_equal(lock_get(e->locks, B("deep"), 4, &info), 0);
    lock_info_holder(&info, 0, &h);
    assert_int_equal(h.hold_count, LOCK_HOLD_COUNT_MAX);
    env_free(e);
}

/* ==== rw ================================================================= */

static int rw(struct env *e, const char *owner, int64_t lease, uint8_t mode, bool wait,
              uint64_t req)
{
    return acq(e, "rw", LOCK_KIND_RW, mode, 0, owner, lease, wait, req);
}

static void test_rw_semantics(void **state)
{
    struct env *e = env_new();
    int64_t l1 = grant(e), l2 = grant(e), l3 = grant(e), l4 = grant(e), l5 = grant(e);
    /* Readers share. */
    assert_int_equal(rw(e, "r1", l1, LOCK_MODE_READ, true, 1), 0);
    uint64_t t1 = e->res.token;
    assert_int_equal(rw(e, "r2", l2, LOCK_MODE_READ, true, 2), 0);
    assert_int_equal(e->res.status, LOCK_GRANTED);
    uint64_t t2 = e->res.token;
    assert_int_equal(n_holders(e, "rw"), 2);
    /* A writer waits for both. */
    assert_int_equal(rw(e, "w3", l3, LOCK_MODE_WRITE, true, 3), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED);
    /* A reader arriving after the writer waits too (no writer starvation). */
    assert_int_equal(rw(e, "r4", l4, LOCK_MODE_READ, false, 4), 0);
    assert_int_equal(e->res.status, LOCK_BUSY);
    assert_int_equal(rw(e, "r4", l4, LOCK_MODE_READ, true, 4), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED);
    assert_int_equal(e->res.position, 1);
    assert_int_equal(rw(e, "r5", l5, LOCK_MODE_READ, true, 5), 0);
    /* But a current reader re-entering is granted at once. */
    assert_int_equal(rw(e, "r1", l1, LOCK_MODE_READ, true, 6), 0);
    assert_true(e->res.reentrant);
    assert_int_equal(e->res.hold_count, 2);
    /* And a reader may not upgrade: it would wait for itself. */
    assert_int_equal(rw(e, "r2", l2, LOCK_MODE_WRITE, true, 7), LOCK_EUPGRADE);

    assert_int_equal(rel(e, "rw", "r1", t1, true), 0);
    assert_int_equal(e->res.n_events, 1); /* r2 still reads: the writer waits */
    assert_int_equal(rel(e, "rw", "r2", t2, false), 0);
    assert_int_equal(e->res.n_events, 2);
    assert_event(e, 1, LOCK_EV_GRANTED, "w3");
    assert_int_equal(ev(e, 1)->mode, LOCK_MODE_WRITE);
    uint64_t t3 = ev(e, 1)->token;
    /* The writer may take the read lock too (it holds the stronger one). */
    assert_int_equal(rw(e, "w3", l3, LOCK_MODE_READ, false, 8), 0);
    assert_true(e->res.reentrant);
    assert_int_equal(rel(e, "rw", "w3", t3, true), 0);
    /* Both readers at the head are woken together. */
    assert_int_equal(e->res.n_events, 3);
    assert_event(e, 1, LOCK_EV_GRANTED, "r4");
    assert_event(e, 2, LOCK_EV_GRANTED, "r5");
    assert_true(ev(e, 2)->token > ev(e, 1)->token);
    assert_int_equal(n_holders(e, "rw"), 2);
    assert_int_equal(n_waiters(e, "rw"), 0);
    env_free(e);
}

static void test_rw_wakes_only_the_run_of_readers(void **state)
{
    struct env *e = env_new();
    int64_t l[6];
    for (int i = 0; i < 6; i++) {
        l[i] = grant(e);
    }
    assert_int_equal(rw(e, "w0", l[0], LOCK_MODE_WRITE, true, 1), 0);
    uint64_t t0 = e->res.token;
    assert_int_equal(rw(e, "r1", l[1], LOCK_MODE_READ, true, 2), 0);
    assert_int_equal(rw(e, "r2", l[2], LOCK_MODE_READ, true, 3), 0);
    assert_int_equal(rw(e, "w3", l[3], LOCK_MODE_WRITE, true, 4), 0);
    assert_int_equal(rw(e, "r4", l[4], LOCK_MODE_READ, true, 5), 0);
    assert_int_equal(rel(e, "rw", "w0", t0, false), 0);
    /* r1, r2 run; w3 and the reader behind it stay queued. */
    assert_int_equal(e->res.n_events, 3);
    assert_event(e, 1, LOCK_EV_GRANTED, "r1");
    assert_event(e, 2, LOCK_EV_GRANTED, "r2");
    assert_int_equal(n_waiters(e, "rw"), 2);
    /* Cancelling the writer at the head lets the reader behind it join the readers. */
    assert_int_equal(cancel(e, "rw", "w3", 4), 0);
    assert_int_equal(e->res.n_events, 2);
    assert_event(e, 0, LOCK_EV_CANCELLED, "w3");
    assert_event(e, 1, LOCK_EV_GRANTED, "r4");
    assert_int_equal(n_holders(e, "rw"), 3);
    assert_false(lease_item_attached(e->leases, l[3], LEASE_ITEM_LOCK, B("rw"), 2));
    env_free(e);
}

static void test_rw_readers_beyond_holder_limit_queue(void **state)
{
    struct env *e = env_new();
    int64_t lease = grant(e);
    char owner[16];
    for (uint32_t i = 0; i < LOCK_HOLDERS_MAX; i++) {
        snprintf(owner, sizeof owner, "r%u", i);
        assert_int_equal(rw(e, owner, lease, LOCK_MODE_READ, true, i + 1), 0);
        assert_int_equal(e->res.status, LOCK_GRANTED);
    }
    assert_int_equal(rw(e, "extra", lease, LOCK_MODE_READ, true, 99999), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED); /* queued, not refused */
    assert_int_equal(rel(e, "rw", "r0", 1 + 0, false), 0);
    assert_event(e, 1, LOCK_EV_GRANTED, "extra");
    env_free(e);
}

/* ==== semaphore ========================================================== */

static void test_semaphore_limit(void **state)
{
    struct env *e = env_new();
    int64_t l[5];
    uint64_t t[5];
    char owner[5][16];
    for (int i = 0; i < 5; i++) {
        l[i] = grant(e);
        snprintf(owner[i], sizeof owner[i], "s%d", i);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(
            acq(e, "sem", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 3, owner[i], l[i], true, 1), 0);
        assert_int_equal(e->res.status, i < 3 ? LOCK_GRANTED : LOCK_QUEUED);
        t[i] = e->res.token;
    }
    assert_int_equal(n_holders(e, "sem"), 3);
    struct lock_info info;
    assert_int_equal(lock_get(e->locks, B("sem"), 3, &info), 0);
    assert_int_equal(info.kind, LOCK_KIND_SEMAPHORE);
    assert_int_equal(info.limit, 3);
    /* Another limit or kind for the same name is refused. */
    assert_int_equal(acq(e, "sem", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 4, "x", l[0], true, 9),
                     LOCK_EKIND);
    assert_int_equal(mutex(e, "sem", "x", l[0], true, 9), LOCK_EKIND);
    /* A slot freed wakes exactly one waiter. */
    assert_int_equal(rel(e, "sem", owner[1], t[1], false), 0);
    assert_int_equal(e->res.n_events, 2);
    assert_event(e, 1, LOCK_EV_GRANTED, owner[3]);
    assert_int_equal(n_holders(e, "sem"), 3);
    /* Two slots freed by one lease death wake the last waiter only (one left). */
    revoke(e, l[0]);
    assert_int_equal(e->res.type, LOCK_CMD_LEASE_DEATH);
    assert_int_equal(e->res.n_events, 2);
    assert_event(e, 0, LOCK_EV_LOST, owner[0]);
    assert_int_equal(ev(e, 0)->token, t[0]);
    assert_event(e, 1, LOCK_EV_GRANTED, owner[4]);
    assert_int_equal(n_holders(e, "sem"), 3);
    assert_int_equal(n_waiters(e, "sem"), 0);
    env_free(e);
}

/* ==== election =========================================================== */

static void test_election(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e), lb = grant(e), lc = grant(e);
    assert_int_equal(campaign(e, "svc", "a", la, "10.0.0.1", 1), 0);
    assert_int_equal(e->res.status, LOCK_GRANTED);
    uint64_t ta = e->res.token;
    assert_str(ev(e, 0)->value, ev(e, 0)->value_len, "10.0.0.1");
    assert_int_equal(campaign(e, "svc", "b", lb, "10.0.0.2", 2), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED);
    assert_int_equal(campaign(e, "svc", "c", lc, "10.0.0.3", 3), 0);
    /* Campaigning again as leader is idempotent: same token, count stays 1. */
    assert_int_equal(campaign(e, "svc", "a", la, "ignored", 4), 0);
    assert_true(e->res.reentrant);
    assert_int_equal(e->res.token, ta);
    assert_int_equal(e->res.hold_count, 1);

    /* leader = query. */
    struct lock_info info;
    struct lock_party h, w;
    assert_int_equal(lock_get(e->locks, B("svc"), 3, &info), 0);
    assert_int_equal(info.kind, LOCK_KIND_ELECTION);
    lock_info_holder(&info, 0, &h);
    assert_str(h.value, h.value_len, "10.0.0.1");
    lock_info_waiter(&info, 1, &w);
    assert_str(w.owner, w.owner_len, "c");
    assert_str(w.value, w.value_len, "10.0.0.3");
    assert_int_equal(w.token, 0);

    /* proclaim: only the leader, only on an election. */
    assert_int_equal(proclaim(e, "svc", "b", ta, "evil"), LOCK_ENOTHOLDER);
    assert_int_equal(proclaim(e, "svc", "a", ta + 100, "evil"), LOCK_ENOTHOLDER);
    assert_int_equal(proclaim(e, "nope", "a", ta, "x"), LOCK_ENOTFOUND);
    assert_int_equal(proclaim(e, "svc", "a", ta, "10.0.0.9"), 0);
    assert_event(e, 0, LOCK_EV_PROCLAIMED, "a");
    assert_str(ev(e, 0)->value, ev(e, 0)->value_len, "10.0.0.9");
    assert_int_equal(lock_get(e->locks, B("svc"), 3, &info), 0);
    lock_info_holder(&info, 0, &h);
    assert_str(h.value, h.value_len, "10.0.0.9");
    assert_int_equal(proclaim(e, "svc", "a", ta, ""), 0); /* empty is a value too */
    assert_int_equal(mutex(e, "plain", "a", la, false, 5), 0);
    assert_int_equal(proclaim(e, "plain", "a", e->res.token, "x"), LOCK_EKIND);

    /* resign = release: the next candidate leads with its own value. */
    assert_int_equal(rel(e, "svc", "a", ta, false), 0);
    assert_event(e, 1, LOCK_EV_GRANTED, "b");
    assert_str(ev(e, 1)->value, ev(e, 1)->value_len, "10.0.0.2");
    /* A leader's lease dying hands leadership on (observe sees LOST then GRANTED). */
    revoke(e, lb);
    assert_event(e, 0, LOCK_EV_LOST, "b");
    assert_event(e, 1, LOCK_EV_GRANTED, "c");
    env_free(e);
}

/* ==== queue and lease death ============================================== */

static void test_lease_death_releases_and_wakes(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e), lb = grant(e), lc = grant(e);
    assert_int_equal(mutex(e, "x", "a", la, true, 1), 0);
    uint64_t ta = e->res.token;
    assert_int_equal(mutex(e, "y", "a", la, true, 2), 0);
    assert_int_equal(mutex(e, "x", "b", lb, true, 3), 0);
    assert_int_equal(mutex(e, "y", "c", lc, true, 4), 0);
    assert_int_equal(mutex(e, "x", "c", lc, true, 5), 0);
    struct lease_info info;
    assert_int_equal(lease_get(e->leases, lc, &info), 0);
    assert_int_equal(info.n_locks, 2);
    env_check(e);

    /* c's lease dies while c only waits: both waits are dropped, nothing is granted. */
    revoke(e, lc);
    assert_int_equal(e->res.n_events, 2);
    assert_event(e, 0, LOCK_EV_DROPPED, "c"); /* on x (item order: x before y) */
    assert_str(ev(e, 0)->name, ev(e, 0)->name_len, "x");
    assert_int_equal(ev(e, 0)->request_id, 5);
    assert_event(e, 1, LOCK_EV_DROPPED, "c");
    assert_str(ev(e, 1)->name, ev(e, 1)->name_len, "y");
    assert_int_equal(n_waiters(e, "x"), 1);
    env_check(e);

    /* a's lease dies holding both: x goes to b, y becomes idle and is deleted. */
    revoke(e, la);
    assert_int_equal(e->res.n_events, 3);
    assert_event(e, 0, LOCK_EV_LOST, "a");
    assert_int_equal(ev(e, 0)->token, ta);
    assert_event(e, 1, LOCK_EV_GRANTED, "b");
    assert_int_equal(ev(e, 1)->request_id, 3);
    assert_true(ev(e, 1)->token > ta);
    assert_event(e, 2, LOCK_EV_LOST, "a");
    assert_str(ev(e, 2)->name, ev(e, 2)->name_len, "y");
    assert_int_equal(lock_count(e->locks), 1);
    /* The new holder's lease still carries the name; the dead ones are gone. */
    assert_true(lease_item_attached(e->leases, lb, LEASE_ITEM_LOCK, B("x"), 1));
    env_check(e);
    /* Death of a lease with nothing on locks is a no-op. */
    int64_t ld = grant(e);
    revoke(e, ld);
    assert_int_equal(e->res.n_events, 0);
    env_free(e);
}

static void test_retry_cancel_and_duplicates(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e), lb = grant(e);
    assert_int_equal(mutex(e, "m", "a", la, true, 1), 0);
    assert_int_equal(mutex(e, "m", "b", lb, true, 7), 0);
    assert_int_equal(e->res.position, 0);
    uint64_t d = lock_digest(e->locks);
    /* The same request again (a retried proposal): the same place, no second wait. */
    assert_int_equal(mutex(e, "m", "b", lb, true, 7), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED);
    assert_int_equal(e->res.position, 0);
    assert_int_equal(lock_digest(e->locks), d);
    /* Another request by the same party, or the same request id on another lease. */
    assert_int_equal(mutex(e, "m", "b", lb, true, 8), LOCK_EWAITING);
    int64_t lb2 = grant(e);
    d = lock_digest(e->locks);
    assert_int_equal(mutex(e, "m", "b", lb2, true, 7), LOCK_EWAITING);
    assert_int_equal(lock_digest(e->locks), d);
    /* Cancel: only that request. */
    assert_int_equal(cancel(e, "m", "b", 8), LOCK_ENOTWAITING);
    assert_int_equal(cancel(e, "m", "a", 7), LOCK_ENOTWAITING);
    assert_int_equal(cancel(e, "zz", "b", 7), LOCK_ENOTFOUND);
    assert_int_equal(cancel(e, "m", "b", 7), 0);
    assert_event(e, 0, LOCK_EV_CANCELLED, "b");
    assert_int_equal(n_waiters(e, "m"), 0);
    assert_false(lease_item_attached(e->leases, lb, LEASE_ITEM_LOCK, B("m"), 1));
    /* Cancel after the grant raced it: the waiter is a holder now. */
    assert_int_equal(mutex(e, "m", "b", lb, true, 9), 0);
    assert_int_equal(rel(e, "m", "a", 1, false), 0);
    assert_event(e, 1, LOCK_EV_GRANTED, "b");
    assert_int_equal(cancel(e, "m", "b", 9), LOCK_ENOTWAITING);
    env_free(e);
}

static void test_lease_checks(void **state)
{
    struct env *e = env_new();
    assert_int_equal(mutex(e, "m", "a", 12345, true, 1), LOCK_ENOLEASE);
    assert_int_equal(lock_count(e->locks), 0);
    int64_t la = grant(e);
    /* A lease full of other items cannot take another lock name. */
    char key[16];
    for (uint32_t i = 0; i < LEASE_ITEMS_MAX; i++) {
        snprintf(key, sizeof key, "k%u", i);
        assert_int_equal(lease_attach(e->leases, la, LEASE_ITEM_KEY, B(key), L(key)), 0);
    }
    uint64_t d = lock_digest(e->locks);
    assert_int_equal(mutex(e, "m", "a", la, true, 1), LEASE_EITEMSFULL);
    assert_string_equal(lock_strerror(LEASE_EITEMSFULL), lease_strerror(LEASE_EITEMSFULL));
    assert_int_equal(lock_digest(e->locks), d);
    assert_int_equal(lock_count(e->locks), 0);
    env_free(e);
}

/* ==== tokens ============================================================= */

static void test_tokens_monotonic_across_deletion_and_snapshot(void **state)
{
    struct env *e = env_new();
    int64_t la = grant(e);
    uint64_t last = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(mutex(e, "t", "a", la, false, 1), 0);
        assert_true(e->res.token > last);
        last = e->res.token;
        assert_int_equal(rel(e, "t", "a", last, false), 0);
        assert_int_equal(lock_count(e->locks), 0); /* deleted when idle */
        /* Another name's grant also draws from the one counter. */
        assert_int_equal(mutex(e, "other", "a", la, false, 2), 0);
        assert_true(e->res.token > last);
        last = e->res.token;
        assert_int_equal(rel(e, "other", "a", last, false), 0);
    }
    assert_int_equal(lock_next_token(e->locks), last + 1);
    uint8_t *buf;
    size_t n;
    assert_int_equal(lock_snapshot_encode(e->locks, &buf, &n), 0);
    struct lock_table *u;
    assert_int_equal(lock_snapshot_decode(buf, n, &u), 0);
    free(buf);
    lock_free(e->locks);
    e->locks = u;
    assert_int_equal(mutex(e, "t", "a", la, false, 1), 0);
    assert_int_equal(e->res.token, last + 1); /* the counter survived an empty table */
    env_free(e);
}

/* ==== limits ============================================================= */

static void test_limit_waiters(void **state)
{
    struct env *e = env_new();
    int64_t lease = grant(e);
    char owner[16];
    assert_int_equal(mutex(e, "busy", "holder", lease, true, 1), 0);
    for (uint32_t i = 0; i < LOCK_WAITERS_MAX; i++) {
        snprintf(owner, sizeof owner, "w%u", i);
        assert_int_equal(mutex(e, "busy", owner, lease, true, 2 + i), 0);
        assert_int_equal(e->res.status, LOCK_QUEUED);
    }
    assert_int_equal(mutex(e, "busy", "late", lease, true, 99999), LOCK_EQUEUEFULL);
    assert_int_equal(mutex(e, "busy", "late", lease, false, 99999), 0); /* BUSY is no error */
    assert_int_equal(e->res.status, LOCK_BUSY);
    /* One lease death ends the whole queue and the hold in one bounded apply. */
    revoke(e, lease);
    assert_int_equal(e->res.n_events, 1 + LOCK_WAITERS_MAX);
    assert_int_equal(lock_count(e->locks), 0);
    env_free(e);
}

static void test_limit_lock_count(void **state)
{
    struct env *e = env_new();
    int64_t lease = 0;
    char name[16];
    for (uint32_t i = 0; i < LOCK_COUNT_MAX; i++) {
        if (i % LEASE_ITEMS_MAX == 0) {
            lease = grant(e);
        }
        snprintf(name, sizeof name, "L%06u", i);
        assert_int_equal(mutex(e, name, "o", lease, false, 1), 0);
    }
    assert_int_equal(lock_count(e->locks), LOCK_COUNT_MAX);
    int64_t fresh = grant(e);
    assert_int_equal(mutex(e, "one-more", "o", fresh, false, 1), LOCK_EFULL);
    /* Existing locks still work (reentrancy, queueing). */
    assert_int_equal(mutex(e, "L000000", "p", fresh, true, 2), 0);
    assert_int_equal(e->res.status, LOCK_QUEUED);
    env_free(e);
}

static void test_strerror_names_every_code(void **state)
{
    for (int rv = -2323; rv <= -2301; rv++) {
        assert_string_not_equal(lock_strerror(rv), "unknown lock error");
        for (int other = rv + 1; other <= -2301; other++) {
            assert_string_not_equal(lock_strerror(rv), lock_strerror(other));
        }
    }
    assert_string_equal(lock_strerror(-2399), "unknown lock error");
}

/* ==== snapshots ========================================================== */

/* A table with every kind, queues, reentrant counts, values. */
static struct env *sample_env(void)
{
    struct env *e = env_new();
    int64_t l[6];
    for (int i = 0; i < 6; i++) {
        l[i] = grant(e);
    }
    assert_int_equal(mutex(e, "m", "a", l[0], true, 1), 0);
    assert_int_equal(mutex(e, "m", "a", l[0], true, 2), 0); /* count 2 */
    assert_int_equal(mutex(e, "m", "b", l[1], true, 3), 0);
    assert_int_equal(mutex(e, "m", "c", l[2], true, 4), 0);
    assert_int_equal(rw(e, "r", l[3], LOCK_MODE_READ, true, 5), 0);
    assert_int_equal(rw(e, "w", l[4], LOCK_MODE_WRITE, true, 6), 0);
    assert_int_equal(rw(e, "r2", l[5], LOCK_MODE_READ, true, 7), 0);
    assert_int_equal(acq(e, "s", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 2, "a", l[0], true, 8),
                     0);
    assert_int_equal(acq(e, "s", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 2, "b", l[1], true, 9),
                     0);
    assert_int_equal(acq(e, "s", LOCK_KIND_SEMAPHORE, LOCK_MODE_EXCLUSIVE, 2, "c", l[2], true, 10),
                     0);
    assert_int_equal(campaign(e, "e", "a", l[0], "va", 11), 0);
    assert_int_equal(campaign(e, "e", "b", l[1], "vb", 12), 0);
    env_check(e);
    return e;
}

static struct lock_table *lock_round_trip(const struct lock_table *t)
{
    uint8_t *buf, *buf2;
    size_t n, n2;
    assert_int_equal(lock_snapshot_encode(t, &buf, &n), 0);
    struct lock_table *u;
    assert_int_equal(lock_snapshot_decode(buf, n, &u), 0);
    assert_int_equal(lock_digest(u), lock_digest(t));
    assert_int_equal(lock_snapshot_encode(u, &buf2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n);
    free(buf);
    free(buf2);
    return u;
}

static void assert_same_lock(const struct lock_table *a, const struct lock_table *b,
                             const char *name)
{
    struct lock_info x, y;
    assert_int_equal(lock_get(a, B(name), L(name), &x), 0);
    assert_int_equal(lock_get(b, B(name), L(name), &y), 0);
    assert_int_equal(x.kind, y.kind);
    assert_int_equal(x.limit, y.limit);
    assert_int_equal(x.n_holders, y.n_holders);
    assert_int_equal(x.n_waiters, y.n_waiters);
    for (uint32_t i = 0; i < x.n_holders + x.n_waiters; i++) {
        struct lock_party p, q;
        if (i < x.n_holders) {
            lock_info_holder(&x, i, &p);
            lock_info_holder(&y, i, &q);
        } else {
            lock_info_waiter(&x, i - x.n_holders, &p);
            lock_info_waiter(&y, i - x.n_holders, &q);
        }
        assert_int_equal(p.owner_len, q.owner_len);
        assert_memory_equal(p.owner, q.owner, p.owner_len);
        assert_int_equal(p.value_len, q.value_len);
        if (p.value_len > 0) {
            assert_memory_equal(p.value, q.value, p.value_len);
        }
        assert_int_equal(p.mode, q.mode);
        assert_int_equal(p.lease, q.lease);
        assert_int_equal(p.request_id, q.request_id);
        assert_int_equal(p.token, q.token);
        assert_int_equal(p.hold_count, q.hold_count);
        assert_int_equal(p.index, q.index);
    }
}

static void test_snapshot_round_trip_preserves_everything(void **state)
{
    struct env *e = sample_env();
    struct lock_table *u = lock_round_trip(e->locks);
    const char *names[] = {"m", "rw", "s", "e"};
    for (int i = 0; i < 4; i++) {
        assert_same_lock(e->locks, u, names[i]);
    }
    assert_int_equal(lock_next_token(u), lock_next_token(e->locks));
    assert_int_equal(lock_check_leases(u, e->leases), 0);
    /* Both continue identically: release m's holder and compare the wake-ups. */
    struct lock_info info;
    struct lock_party h;
    assert_int_equal(lock_get(u, B("m"), 1, &info), 0);
    lock_info_holder(&info, 0, &h);
    struct lock_cmd c = {.type = LOCK_CMD_RELEASE,
                         .flags = LOCK_RELEASE_ALL,
                         .token = h.token,
                         .name = B("m"),
                         .name_len = 1,
                         .owner = B("a"),
                         .owner_len = 1};
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lock_encode(&c, buf, sizeof buf, &n), 0);
    struct lease_table *leases2 = NULL;
    uint8_t *lbuf;
    size_t ln;
    assert_int_equal(lease_snapshot_encode(e->leases, &lbuf, &ln), 0);
    assert_int_equal(lease_snapshot_decode(lbuf, ln, &leases2), 0);
    free(lbuf);
    struct lock_result r1, r2;
    assert_int_equal(lock_apply(e->locks, e->leases, buf, n, 1000, &r1), 0);
    assert_int_equal(lock_apply(u, leases2, buf, n, 1000, &r2), 0);
    assert_int_equal(r1.n_events, 2);
    assert_int_equal(r2.n_events, 2);
    assert_int_equal(r1.events[1].token, r2.events[1].token);
    assert_str(r2.events[1].owner, r2.events[1].owner_len, "b"); /* queue order kept */
    assert_int_equal(lock_digest(u), lock_digest(e->locks));
    assert_int_equal(lease_digest(leases2), lease_digest(e->leases));
    lock_result_free(&r1);
    lock_result_free(&r2);
    /* A release that already happened is refused on the copy too. */
    assert_int_equal(lock_apply(u, leases2, buf, n, 1001, &r2), LOCK_ENOTHOLDER);
    lock_result_free(&r2);
    /* The digest can fail: one more change on one side shows. */
    assert_int_equal(mutex(e, "new", "z", 1, false, 1), 0);
    assert_int_not_equal(lock_digest(u), lock_digest(e->locks));
    lease_free(leases2);
    lock_free(u);
    env_free(e);
}

static void test_snapshot_every_byte_flip_rejected(void **state)
{
    struct env *e = sample_env();
    uint8_t *buf;
    size_t n;
    assert_int_equal(lock_snapshot_encode(e->locks, &buf, &n), 0);
    struct lock_table *u;
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0x10;
        assert_int_equal(lock_snapshot_decode(buf, n, &u), LOCK_ECORRUPT);
        assert_null(u);
        buf[i] ^= 0x10;
    }
    for (size_t cut = 0; cut < n; cut++) {
        assert_int_equal(lock_snapshot_decode(buf, cut, &u), LOCK_ECORRUPT);
    }
    assert_int_equal(lock_snapshot_decode(buf, n, &u), 0);
    lock_free(u);
    free(buf);
    env_free(e);
}

/* Hand-built images, one broken invariant each, with a valid CRC. */
struct img {
    uint8_t b[4096];
    size_t n;
};

static void img_le(struct img *m, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        m->b[m->n++] = (uint8_t)(v >> (8 * i));
    }
}

static void img_str(struct img *m, const char *s)
{
    img_le(m, L(s), 2);
    memcpy(m->b + m->n, s, L(s));
    m->n += L(s);
}

static void img_header(struct img *m, uint64_t next_token, uint32_t n_locks)
{
    m->n = 0;
    memcpy(m->b, "CLCK", 4);
    m->n = 4;
    img_le(m, 1, 4);
    img_le(m, next_token, 8);
    img_le(m, n_locks, 4);
}

static void img_lock(struct img *m, const char *name, uint8_t kind, uint32_t limit,
                     uint32_t n_holds, uint32_t n_waits)
{
    img_str(m, name);
    img_le(m, kind, 1);
    img_le(m, limit, 4);
    img_le(m, n_holds, 4);
    img_le(m, n_waits, 4);
}

static void img_party(struct img *m, const char *owner, const char *value, uint8_t mode,
                      int64_t lease, uint64_t req, uint64_t token, uint32_t count, uint64_t index)
{
    img_str(m, owner);
    img_str(m, value);
    img_le(m, mode, 1);
    img_le(m, (uint64_t)lease, 8);
    img_le(m, req, 8);
    img_le(m, token, 8);
    img_le(m, count, 4);
    img_le(m, index, 8);
}

static int img_decode(struct img *m)
{
    le_put_u32(m->b + m->n, crc32c(0, m->b, m->n));
    struct lock_table *t;
    int rv = lock_snapshot_decode(m->b, m->n + 4, &t);
    if (rv == 0) {
        lock_free(t);
    } else {
        assert_null(t);
    }
    return rv;
}

#define EX LOCK_MODE_EXCLUSIVE

static void test_snapshot_semantic_checks(void **state)
{
    struct img m;
    /* Control: a held mutex with one waiter decodes. */
    img_header(&m, 10, 1);
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 1);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", EX, 2, 2, 0, 0, 4);
    assert_int_equal(img_decode(&m), 0);

    img_header(&m, 10, 1); /* two mutex holders */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 2, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", EX, 2, 2, 6, 1, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* a writer with a reader */
    img_lock(&m, "rw", LOCK_KIND_RW, 0, 2, 0);
    img_party(&m, "a", "", LOCK_MODE_READ, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", LOCK_MODE_WRITE, 2, 2, 6, 1, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* semaphore over its limit */
    img_lock(&m, "s", LOCK_KIND_SEMAPHORE, 1, 2, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", EX, 2, 2, 6, 1, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* a waiter that could hold (unfair queue) */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 0, 1);
    img_party(&m, "b", "", EX, 2, 2, 0, 0, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* an empty lock */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 0, 0);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 5, 1); /* token not below next_token */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 2); /* one token held on two locks */
    img_lock(&m, "a", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_lock(&m, "b", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 2); /* names out of order */
    img_lock(&m, "b", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_lock(&m, "a", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 6, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* the same party holds and waits */
    img_lock(&m, "s", LOCK_KIND_SEMAPHORE, 1, 1, 1);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "a", "", EX, 1, 2, 0, 0, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* duplicate (owner, request) among waiters */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 2);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", EX, 2, 7, 0, 0, 4);
    img_party(&m, "b", "", EX, 3, 7, 0, 0, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* a value on a mutex */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "v", EX, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* hold count 0 */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 0, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* an election leader held twice */
    img_lock(&m, "e", LOCK_KIND_ELECTION, 1, 1, 0);
    img_party(&m, "a", "v", EX, 1, 1, 5, 2, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* a waiter with a token */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 1);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", EX, 2, 2, 6, 0, 4);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* read mode on a mutex */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", LOCK_MODE_READ, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* mutex with a limit other than 1 */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 2, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* queue not in arrival order */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 2);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    img_party(&m, "b", "", EX, 2, 2, 0, 0, 9);
    img_party(&m, "c", "", EX, 3, 3, 0, 0, 8);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* lease 0 */
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, 0);
    img_party(&m, "a", "", EX, 0, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1); /* unknown kind */
    img_lock(&m, "m", 9, 1, 1, 0);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 0xffffffffu); /* hostile counts */
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 1);
    img_lock(&m, "m", LOCK_KIND_MUTEX, 1, 1, LOCK_WAITERS_MAX);
    img_party(&m, "a", "", EX, 1, 1, 5, 1, 3);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 10, 0); /* trailing byte */
    img_le(&m, 0, 1);
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 0, 0); /* next_token 0 */
    assert_int_equal(img_decode(&m), LOCK_ECORRUPT);
    img_header(&m, 1, 0);
    m.b[4] = 2; /* format version */
    assert_int_equal(img_decode(&m), LOCK_EFORMAT);
}

static void test_check_leases_detects_mismatch(void **state)
{
    struct env *e = sample_env();
    assert_int_equal(lock_check_leases(e->locks, e->leases), 0);
    /* A lock name missing from its holder's lease. */
    assert_int_equal(lease_detach(e->leases, 1, LEASE_ITEM_LOCK, B("m"), 1), 0);
    assert_int_equal(lock_check_leases(e->locks, e->leases), LOCK_ECORRUPT);
    assert_int_equal(lease_attach(e->leases, 1, LEASE_ITEM_LOCK, B("m"), 1), 0);
    assert_int_equal(lock_check_leases(e->locks, e->leases), 0);
    /* A lease naming a lock where it neither holds nor waits. */
    assert_int_equal(lease_attach(e->leases, 6, LEASE_ITEM_LOCK, B("m"), 1), 0);
    assert_int_equal(lock_check_leases(e->locks, e->leases), LOCK_ECORRUPT);
    assert_int_equal(lease_detach(e->leases, 6, LEASE_ITEM_LOCK, B("m"), 1), 0);
    env_free(e);
}

/* ==== random model ======================================================= */

/* The reference model: plain arrays and linear scans, written from lock.h's rules. */
#define M_NAMES   4
#define M_OWNERS  4
#define M_LEASES  6
#define M_PARTIES 64

static const char *const m_name[M_NAMES] = {"e", "m", "rw", "s"}; /* byte order */
static const uint8_t m_kind[M_NAMES] = {LOCK_KIND_ELECTION, LOCK_KIND_MUTEX, LOCK_KIND_RW,
                                        LOCK_KIND_SEMAPHORE};
static const char *const m_owner[M_OWNERS] = {"a", "b", "c", "d"};
#define M_SEM_LIMIT 3

struct mparty {
    int owner;
    int64_t lease;
    uint64_t req;
    uint64_t token;
    uint32_t count;
    uint8_t mode;
    char value[4];
};

struct mlock {
    struct mparty h[M_PARTIES];
    int nh;
    struct mparty w[M_PARTIES];
    int nw;
};

struct mevent {
    uint8_t type;
    int name;
    int owner;
    uint64_t token;
    uint64_t req;
};

struct model {
    struct mlock l[M_NAMES];
    uint64_t next_token;
    struct mevent ev[M_PARTIES * M_NAMES + 8];
    int nev;
};

static bool m_can_hold(const struct model *m, int n, uint8_t mode)
{
    const struct mlock *l = &m->l[n];
    switch (m_kind[n]) {
    case LOCK_KIND_SEMAPHORE:
        return l->nh < M_SEM_LIMIT;
    case LOCK_KIND_RW:
        if (mode == LOCK_MODE_WRITE) {
            return l->nh == 0;
        }
        for (int i = 0; i < l->nh; i++) {
            if (l->h[i].mode == LOCK_MODE_WRITE) {
                return false;
            }
        }
        return true;
    default:
        return l->nh == 0;
    }
}

static void m_event(struct model *m, uint8_t type, int n, const struct mparty *p)
{
    m->ev[m->nev++] = (struct mevent){type, n, p->owner, p->token, p->req};
}

static void m_wake(struct model *m, int n)
{
    struct mlock *l = &m->l[n];
    while (l->nw > 0 && m_can_hold(m, n, l->w[0].mode)) {
        struct mparty p = l->w[0];
        memmove(&l->w[0], &l->w[1], (size_t)(l->nw - 1) * sizeof p);
        l->nw--;
        p.token = m->next_token++;
        p.count = 1;
        l->h[l->nh++] = p;
        m_event(m, LOCK_EV_GRANTED, n, &p);
    }
}

struct mres {
    int rv;
    uint8_t status;
    uint64_t token;
    uint32_t count;
    uint32_t position;
};

static struct mres m_acquire(struct model *m, const bool *lease_live, int n, int owner,
                             int64_t lease, uint8_t mode, bool wait, uint64_t req,
                             const char *value)
{
    struct mres r = {0};
    struct mlock *l = &m->l[n];
    if (!lease_live[lease]) {
        r.rv = LOCK_ENOLEASE;
        return r;
    }
    for (int i = 0; i < l->nh; i++) {
        struct mparty *h = &l->h[i];
        if (h->owner == owner && h->lease == lease) {
            if (m_kind[n] == LOCK_KIND_RW && h->mode == LOCK_MODE_READ && mode == LOCK_MODE_WRITE) {
                r.rv = LOCK_EUPGRADE;
                return r;
            }
            if (m_kind[n] != LOCK_KIND_ELECTION) {
                h->count++;
            }
            r.status = LOCK_GRANTED;
            r.token = h->token;
            r.count = h->count;
            return r;
        }
    }
    for (int i = 0; i < l->nw; i++) {
        if (l->w[i].owner == owner && l->w[i].lease == lease && l->w[i].req == req) {
            r.status = LOCK_QUEUED;
            r.position = (uint32_t)i;
            return r;
        }
        if (l->w[i].owner == owner && (l->w[i].lease == lease || l->w[i].req == req)) {
            r.rv = LOCK_EWAITING;
            return r;
        }
    }
    struct mparty p = {.owner = owner, .lease = lease, .req = req, .mode = mode};
    snprintf(p.value, sizeof p.value, "%s", value);
    if (l->nw == 0 && m_can_hold(m, n, mode)) {
        p.token = m->next_token++;
        p.count = 1;
        l->h[l->nh++] = p;
        m_event(m, LOCK_EV_GRANTED, n, &p);
        r.status = LOCK_GRANTED;
        r.token = p.token;
        r.count = 1;
    } else if (!wait) {
        r.status = LOCK_BUSY;
    } else {
        l->w[l->nw++] = p;
        r.status = LOCK_QUEUED;
        r.position = (uint32_t)(l->nw - 1);
    }
    return r;
}

static struct mres m_release(struct model *m, int n, int owner, uint64_t token, bool all)
{
    struct mres r = {0};
    struct mlock *l = &m->l[n];
    if (l->nh + l->nw == 0) {
        r.rv = LOCK_ENOTFOUND;
        return r;
    }
    for (int i = 0; i < l->nh; i++) {
        if (l->h[i].token == token && l->h[i].owner == owner) {
            r.token = token;
            if (!all && l->h[i].count > 1) {
                r.count = --l->h[i].count;
                return r;
            }
            struct mparty p = l->h[i];
            memmove(&l->h[i], &l->h[i + 1], (size_t)(l->nh - i - 1) * sizeof p);
            l->nh--;
            m_event(m, LOCK_EV_RELEASED, n, &p);
            m_wake(m, n);
            return r;
        }
    }
    r.rv = LOCK_ENOTHOLDER;
    return r;
}

static struct mres m_cancel(struct model *m, int n, int owner, uint64_t req)
{
    struct mres r = {0};
    struct mlock *l = &m->l[n];
    if (l->nh + l->nw == 0) {
        r.rv = LOCK_ENOTFOUND;
        return r;
    }
    for (int i = 0; i < l->nw; i++) {
        if (l->w[i].owner == owner && l->w[i].req == req) {
            struct mparty p = l->w[i];
            memmove(&l->w[i], &l->w[i + 1], (size_t)(l->nw - i - 1) * sizeof p);
            l->nw--;
            m_event(m, LOCK_EV_CANCELLED, n, &p);
            m_wake(m, n);
            return r;
        }
    }
    r.rv = LOCK_ENOTWAITING;
    return r;
}

static void m_lease_died(struct model *m, int64_t lease)
{
    for (int n = 0; n < M_NAMES; n++) {
        struct mlock *l = &m->l[n];
        bool touched = false;
        for (int i = 0; i < l->nh;) {
            if (l->h[i].lease == lease) {
                m_event(m, LOCK_EV_LOST, n, &l->h[i]);
                memmove(&l->h[i], &l->h[i + 1], (size_t)(l->nh - i - 1) * sizeof l->h[0]);
                l->nh--;
                touched = true;
            } else {
                i++;
            }
        }
        for (int i = 0; i < l->nw;) {
            if (l->w[i].lease == lease) {
                m_event(m, LOCK_EV_DROPPED, n, &l->w[i]);
                memmove(&l->w[i], &l->w[i + 1], (size_t)(l->nw - i - 1) * sizeof l->w[0]);
                l->nw--;
                touched = true;
            } else {
                i++;
            }
        }
        if (touched) {
            m_wake(m, n);
        }
    }
}

/* The table's own safety invariants, independent of the model. */
static void check_safety(const struct lock_table *t, uint64_t *last_token,
                         const struct lock_result *res)
{
    for (int n = 0; n < M_NAMES; n++) {
        struct lock_info info;
        if (lock_get(t, B(m_name[n]), L(m_name[n]), &info) != 0) {
            continue;
        }
        uint32_t writers = 0, exclusive = 0;
        for (uint32_t i = 0; i < info.n_holders; i++) {
            struct lock_party h;
            lock_info_holder(&info, i, &h);
            writers += h.mode == LOCK_MODE_WRITE;
            exclusive += h.mode == LOCK_MODE_EXCLUSIVE;
        }
        switch (info.kind) {
        case LOCK_KIND_MUTEX:
        case LOCK_KIND_ELECTION:
            assert_true(info.n_holders <= 1); /* at most one exclusive holder */
            assert_int_equal(exclusive, info.n_holders);
            break;
        case LOCK_KIND_RW:
            assert_true(writers == 0 || info.n_holders == 1); /* readers never with a writer */
            break;
        case LOCK_KIND_SEMAPHORE:
            assert_true(info.n_holders <= info.limit); /* <= limit holders */
            assert_int_equal(exclusive, info.n_holders);
            break;
        }
    }
    for (uint32_t i = 0; i < res->n_events; i++) {
        if (res->events[i].type == LOCK_EV_GRANTED) {
            assert_true(res->events[i].token > *last_token); /* tokens strictly increase */
            *last_token = res->events[i].token;
        }
    }
}

static void compare_events(const struct model *m, const struct lock_result *res)
{
    assert_int_equal(res->n_events, m->nev);
    for (int i = 0; i < m->nev; i++) {
        const struct lock_event *x = &res->events[i];
        const struct mevent *y = &m->ev[i];
        assert_int_equal(x->type, y->type);
        assert_str(x->name, x->name_len, m_name[y->name]);
        assert_str(x->owner, x->owner_len, m_owner[y->owner]);
        assert_int_equal(x->token, y->token);
        assert_int_equal(x->request_id, y->req);
    }
}

static void compare_state(const struct model *m, const struct lock_table *t)
{
    uint32_t locks = 0;
    for (int n = 0; n < M_NAMES; n++) {
        const struct mlock *l = &m->l[n];
        struct lock_info info;
        int rv = lock_get(t, B(m_name[n]), L(m_name[n]), &info);
        if (l->nh + l->nw == 0) {
            assert_int_equal(rv, LOCK_ENOTFOUND);
            continue;
        }
        locks++;
        assert_int_equal(rv, 0);
        assert_int_equal(info.n_holders, l->nh);
        assert_int_equal(info.n_waiters, l->nw);
        for (int i = 0; i < l->nh + l->nw; i++) {
            struct lock_party p;
            const struct mparty *q = i < l->nh ? &l->h[i] : &l->w[i - l->nh];
            if (i < l->nh) {
                lock_info_holder(&info, (uint32_t)i, &p);
            } else {
                lock_info_waiter(&info, (uint32_t)(i - l->nh), &p);
            }
            assert_str(p.owner, p.owner_len, m_owner[q->owner]);
            assert_int_equal(p.lease, q->lease);
            assert_int_equal(p.request_id, q->req);
            assert_int_equal(p.token, q->token);
            assert_int_equal(p.hold_count, q->count);
            assert_int_equal(p.mode, q->mode);
            assert_str(p.value, p.value_len, q->value);
        }
    }
    assert_int_equal(lock_count(t), locks);
    assert_int_equal(lock_next_token(t), m->next_token);
}

static void run_model(uint64_t seed, int steps, unsigned *n_grants)
{
    struct prng p;
    prng_seed(&p, seed);
    struct env *e = env_new();
    struct model *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->next_token = 1;
    static bool live[8192];
    memset(live, 0, sizeof live);
    int64_t pool[M_LEASES];
    for (int i = 0; i < M_LEASES; i++) {
        pool[i] = grant(e);
        live[pool[i]] = true;
    }
    uint64_t last_token = 0, req = 0;
    for (int step = 0; step < steps; step++) {
        int n = (int)prng_below(&p, M_NAMES);
        int owner = (int)prng_below(&p, M_OWNERS);
        int64_t lease = pool[prng_below(&p, M_LEASES)];
        unsigned op = (unsigned)prng_below(&p, 100);
        struct mres want = {0};
        m->nev = 0;
        int rv;
        if (op < 45) { /* acquire */
            uint8_t mode = m_kind[n] == LOCK_KIND_RW
                               ? (prng_chance(&p, 600000) ? LOCK_MODE_READ : LOCK_MODE_WRITE)
                               : LOCK_MODE_EXCLUSIVE;
            bool wait = prng_chance(&p, 700000);
            /* Mostly fresh request ids; sometimes a retry of a recent one. */
            uint64_t r = (req > 0 && prng_chance(&p, 150000))
                             ? req - prng_below(&p, req < 4 ? req : 4)
                             : ++req;
            char value[4] = "";
            if (m_kind[n] == LOCK_KIND_ELECTION) {
                snprintf(value, sizeof value, "v%u", (unsigned)prng_below(&p, 10));
            }
            struct lock_cmd c = {.type = LOCK_CMD_ACQUIRE,
                                 .kind = m_kind[n],
                                 .mode = mode,
                                 .flags = wait ? LOCK_ACQUIRE_WAIT : 0,
                                 .limit = m_kind[n] == LOCK_KIND_SEMAPHORE ? M_SEM_LIMIT : 0,
                                 .lease = lease,
                                 .request_id = r,
                                 .name = B(m_name[n]),
                                 .name_len = L(m_name[n]),
                                 .owner = B(m_owner[owner]),
                                 .owner_len = 1,
                                 .value = B(value),
                                 .value_len = L(value)};
            rv = apply(e, &c);
            want = m_acquire(m, live, n, owner, lease, mode, wait, r, value);
            if (rv == 0) {
                assert_int_equal(e->res.status, want.status);
                assert_int_equal(e->res.position, want.position);
                assert_int_equal(e->res.token, want.token);
                assert_int_equal(e->res.hold_count, want.count);
            }
        } else if (op < 55 && m_kind[n] != LOCK_KIND_ELECTION && m->l[n].nh + m->l[n].nw > 0) {
            /* The wrong kind for an existing lock. */
            uint8_t kind = m_kind[n] == LOCK_KIND_MUTEX ? LOCK_KIND_SEMAPHORE : LOCK_KIND_MUTEX;
            rv = acq(e, m_name[n], kind, LOCK_MODE_EXCLUSIVE, kind == LOCK_KIND_SEMAPHORE ? 2 : 0,
                     m_owner[owner], lease, true, ++req);
            want.rv = LOCK_EKIND;
        } else if (op < 80) { /* release a real hold (sometimes with a wrong owner/token) */
            struct mlock *l = &m->l[n];
            uint64_t token = l->nh > 0 ? l->h[prng_below(&p, (uint64_t)l->nh)].token : 1;
            int who = owner;
            if (l->nh > 0 && prng_chance(&p, 800000)) {
                for (int i = 0; i < l->nh; i++) {
                    if (l->h[i].token == token) {
                        who = l->h[i].owner;
                    }
                }
            }
            if (prng_chance(&p, 50000)) {
                token += 1000;
            }
            bool all = prng_chance(&p, 300000);
            rv = rel(e, m_name[n], m_owner[who], token, all);
            want = m_release(m, n, who, token, all);
            if (rv == 0) {
                assert_int_equal(e->res.hold_count, want.count);
                assert_int_equal(e->res.token, want.token);
            }
        } else if (op < 88) { /* cancel a waiter (or a bogus one) */
            struct mlock *l = &m->l[n];
            int who = owner;
            uint64_t r = req + 1;
            if (l->nw > 0 && prng_chance(&p, 800000)) {
                const struct mparty *w = &l->w[prng_below(&p, (uint64_t)l->nw)];
                who = w->owner;
                r = w->req;
            }
            rv = cancel(e, m_name[n], m_owner[who], r);
            want = m_cancel(m, n, who, r);
        } else if (op < 92) { /* proclaim on the election */
            struct mlock *l = &m->l[0];
            uint64_t token = l->nh > 0 ? l->h[0].token : 1;
            int who = l->nh > 0 && prng_chance(&p, 800000) ? l->h[0].owner : owner;
            char value[4];
            snprintf(value, sizeof value, "p%u", (unsigned)prng_below(&p, 10));
            rv = proclaim(e, "e", m_owner[who], token, value);
            if (l->nh + l->nw == 0) {
                want.rv = LOCK_ENOTFOUND;
            } else if (l->nh == 0 || l->h[0].owner != who) {
                want.rv = LOCK_ENOTHOLDER;
            } else {
                snprintf(l->h[0].value, sizeof l->h[0].value, "%s", value);
                m_event(m, LOCK_EV_PROCLAIMED, 0, &l->h[0]);
            }
        } else { /* a lease dies; a fresh one takes its slot in the pool */
            int slot = (int)prng_below(&p, M_LEASES);
            int64_t dead = pool[slot];
            revoke(e, dead);
            live[dead] = false;
            m_lease_died(m, dead);
            rv = 0;
            int64_t fresh = grant(e);
            assert_true(fresh < 8192);
            pool[slot] = fresh;
            live[fresh] = true;
        }
        assert_int_equal(rv, want.rv);
        if (rv == 0) {
            compare_events(m, &e->res);
        } else {
            assert_int_equal(e->res.n_events, 0);
        }
        check_safety(e->locks, &last_token, &e->res);
        compare_state(m, e->locks);
        for (uint32_t i = 0; i < e->res.n_events; i++) {
            *n_grants += e->res.events[i].type == LOCK_EV_GRANTED;
        }
        if (step % 64 == 0) {
            env_check(e);
        }
        if (step % 500 == 499) { /* restore both tables from snapshots and carry on */
            struct lock_table *u = lock_round_trip(e->locks);
            uint8_t *buf;
            size_t n_buf;
            struct lease_table *v;
            assert_int_equal(lease_snapshot_encode(e->leases, &buf, &n_buf), 0);
            assert_int_equal(lease_snapshot_decode(buf, n_buf, &v), 0);
            free(buf);
            assert_int_equal(lock_check_leases(u, v), 0);
            lock_free(e->locks);
            lease_free(e->leases);
            e->locks = u;
            e->leases = v;
        }
    }
    free(m);
    env_free(e);
}

static void test_model_random(void **state)
{
    unsigned grants = 0;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        run_model(seed, 5000, &grants);
    }
    assert_true(grants > 1000); /* the run exercised grants, not only errors */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trips),
        cmocka_unit_test(test_codec_rejects_each_rule),
        cmocka_unit_test(test_codec_random_bytes),
        cmocka_unit_test(test_mutex_exclusion_and_owner_checked_release),
        cmocka_unit_test(test_fifo_queue),
        cmocka_unit_test(test_newcomer_does_not_jump_the_queue),
        cmocka_unit_test(test_reentrancy),
        cmocka_unit_test(test_hold_count_limit),
        cmocka_unit_test(test_rw_semantics),
        cmocka_unit_test(test_rw_wakes_only_the_run_of_readers),
        cmocka_unit_test(test_rw_readers_beyond_holder_limit_queue),
        cmocka_unit_test(test_semaphore_limit),
        cmocka_unit_test(test_election),
        cmocka_unit_test(test_lease_death_releases_and_wakes),
        cmocka_unit_test(test_retry_cancel_and_duplicates),
        cmocka_unit_test(test_lease_checks),
        cmocka_unit_test(test_tokens_monotonic_across_deletion_and_snapshot),
        cmocka_unit_test(test_limit_waiters),
        cmocka_unit_test(test_limit_lock_count),
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_snapshot_round_trip_preserves_everything),
        cmocka_unit_test(test_snapshot_every_byte_flip_rejected),
        cmocka_unit_test(test_snapshot_semantic_checks),
        cmocka_unit_test(test_check_leases_detects_mismatch),
        cmocka_unit_test(test_model_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
