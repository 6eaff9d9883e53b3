/* test_kvcmd.c -- unit tests for sm/kvcmd, the KV command and result codec.
 *
 * Round trips for every command type (decode(encode(x)) == x, and re-encoding gives
 * the same bytes: the format is canonical), every limit's own error from both the
 * encoders and hand-built bytes, the strictness rules (flags, enums, trailing bytes,
 * version), truncation at every offset, random and bit-flipped inputs, key spans, and
 * result round trips including hostile counts.
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

#include "base/prng.h"
#include "sm/kv.h"
#include "sm/kvcmd.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

#define RES_F_SUCCEEDED_FOR_TEST 1 /* the result flags byte: succeeded */

static struct kvcmd *cmd_new(void)
{
    struct kvcmd *c = malloc(sizeof *c);
    assert_non_null(c);
    return c;
}

static void assert_bytes_equal(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    assert_int_equal(a_len, b_len);
    if (a_len > 0) {
        assert_memory_equal(a, b, a_len);
    }
}

/* Re-encodes a decoded command with the public encoders. */
static int reencode(const struct kvcmd *c, uint8_t **buf, size_t *n)
{
    switch (c->type) {
    case KV_CMD_PUT:
        return kvcmd_encode_put(&c->put, buf, n);
    case KV_CMD_DELETE_RANGE:
        return kvcmd_encode_delete(&c->del, buf, n);
    case KV_CMD_RANGE:
        return kvcmd_encode_range(&c->range, buf, n);
    case KV_CMD_TXN:
        return kvcmd_encode_txn(&c->txn, buf, n);
    case KV_CMD_COMPACT:
        return kvcmd_encode_compact(c->compact_revision, buf, n);
    default:
        fail_msg("bad type %d", c->type);
    }
    return -1;
}

/* decode(buf) must succeed and re-encode to exactly buf. */
static void assert_canonical(const uint8_t *buf, size_t n, struct kvcmd *c)
{
    assert_int_equal(kvcmd_decode(buf, n, c), 0);
    uint8_t *again = NULL;
    size_t n_again = 0;
    assert_int_equal(reencode(c, &again, &n_again), 0);
    assert_int_equal(n_again, n);
    assert_memory_equal(again, buf, n);
    free(again);
}

/* ---- a sample of each command ------------------------------------------- */

static const struct kv_compare sample_cmps[] = {
    {.target = KV_CMP_VALUE,
     .op = KV_CMP_EQUAL,
     .key = B("k1"),
     .key_len = 2,
     .value = B("v"),
     .value_len = 1},
    {.target = KV_CMP_VERSION, .op = KV_CMP_GREATER, .key = B("k2"), .key_len = 2, .number = 3},
    {.target = KV_CMP_MOD, .op = KV_CMP_LESS, .key = B("k3"), .key_len = 2, .number = -7},
    {.target = KV_CMP_LEASE, .op = KV_CMP_NOT_EQUAL, .key = B("k4"), .key_len = 2, .number = 9},
    {.target = KV_CMP_CREATE, .op = KV_CMP_EQUAL, .key = B("k5"), .key_len = 2, .number = 0},
};

static struct kv_op sample_ops[4];

static void init_sample_ops(void)
{
    memset(sample_ops, 0, sizeof sample_ops);
    sample_ops[0].type = KV_OP_PUT;
    sample_ops[0].put = (struct kv_put_req){.key = B("a"),
                                            .key_len = 1,
                                            .value = B("xyz"),
                                            .value_len = 3,
                                            .lease = 5,
                                            .prev_kv = true};
    sample_ops[1].type = KV_OP_RANGE;
    sample_ops[1].range = (struct kv_range_req){
        .key = B("a"), .key_len = 1, .prefix = true, .limit = 10, .revision = 4, .keys_only = true};
    sample_ops[2].type = KV_OP_DELETE;
    sample_ops[2].del = (struct kv_delete_req){
        .key = B("b"), .key_len = 1, .range_end = B("c"), .range_end_len = 1, .prev_kv = true};
    sample_ops[3].type = KV_OP_PUT;
    sample_ops[3].put = (struct kv_put_req){
        .key = B("zz"), .key_len = 2, .ignore_value = true, .ignore_lease = true};
}

static struct kv_txn_req sample_txn(void)
{
    init_sample_ops();
    return (struct kv_txn_req){.compares = sample_cmps,
                               .n_compares = 5,
                               .success = sample_ops,
                               .n_success = 3,
                               .failure = sample_ops + 3,
                               .n_failure = 1};
}

/* Encodes sample number i (0..5) of the five command types. */
static void encode_sample(int i, uint8_t **buf, size_t *n)
{
    struct kv_put_req put = {.key = B("key"),
                             .key_len = 3,
                             .value = B("value"),
                             .value_len = 5,
                             .lease = 77,
                             .prev_kv = true};
    struct kv_delete_req del = {.key = B("p/"), .key_len = 2, .prefix = true, .prev_kv = true};
    struct kv_range_req rng = {.key = B("a"),
                               .key_len = 1,
                               .range_end = B("\0"),
                               .range_end_len = 1,
                               .limit = 3,
                               .revision = 12,
                               .count_only = true};
    struct kv_txn_req txn = sample_txn();
    int rv = -1;
    switch (i) {
    case 0:
        rv = kvcmd_encode_put(&put, buf, n);
        break;
    case 1:
        rv = kvcmd_encode_delete(&del, buf, n);
        break;
    case 2:
        rv = kvcmd_encode_range(&rng, buf, n);
        break;
    case 3:
        rv = kvcmd_encode_txn(&txn, buf, n);
        break;
    case 4:
        rv = kvcmd_encode_compact(42, buf, n);
        break;
    default:
        fail();
    }
    assert_int_equal(rv, 0);
}
#define N_SAMPLES 5

/* ---- round trips -------------------------------------------------------- */

static void test_put_round_trip(void **state)
{
    struct kv_put_req req = {.key = B("hello"),
                             .key_len = 5,
                             .value = B("world"),
                             .value_len = 5,
                             .lease = 123,
                             .prev_kv = true};
    uint8_t *buf;
    size_t n;
    assert_int_equal(kvcmd_encode_put(&req, &buf, &n), 0);
    assert_int_equal(n, KVCMD_PUT_HEADER_BYTES + 10);
    assert_int_equal(buf[0], KVCMD_FORMAT_VERSION);
    assert_int_equal(buf[1], KV_CMD_PUT);
    struct kvcmd *c = cmd_new();
    assert_canonical(buf, n, c);
    assert_int_equal(c->type, KV_CMD_PUT);
    assert_bytes_equal(c->put.key, c->put.key_len, B("hello"), 5);
    assert_bytes_equal(c->put.value, c->put.value_len, B("world"), 5);
    assert_int_equal(c->put.lease, 123);
    assert_true(c->put.prev_kv);
    assert_false(c->put.ignore_value);
    assert_false(c->put.ignore_lease);
    free(buf);

    /* empty value, ignore flags */
    req = (struct kv_put_req){
        .key = B("k"), .key_len = 1, .ignore_value = true, .ignore_lease = true};
    assert_int_equal(kvcmd_encode_put(&req, &buf, &n), 0);
    assert_canonical(buf, n, c);
    assert_int_equal(c->put.value_len, 0);
    assert_true(c->put.ignore_value);
    assert_true(c->put.ignore_lease);
    assert_false(c->put.prev_kv);
    free(buf);
    free(c);
}

static void test_delete_range_compact_round_trip(void **state)
{
    struct kvcmd *c = cmd_new();
    uint8_t *buf;
    size_t n;
    struct kv_delete_req del = {
        .key = B("a"), .key_len = 1, .range_end = B("b"), .range_end_len = 1, .prev_kv = true};
    assert_int_equal(kvcmd_encode_delete(&del, &buf, &n), 0);
    assert_canonical(buf, n, c);
    assert_int_equal(c->type, KV_CMD_DELETE_RANGE);
    assert_bytes_equal(c->del.range_end, c->del.range_end_len, B("b"), 1);
    assert_true(c->del.prev_kv);
    assert_false(c->del.prefix);
    free(buf);

    struct kv_range_req rng = {.key = B("p"),
                               .key_len = 1,
                               .prefix = true,
                               .limit = 9,
                               .revision = -1,
                               .keys_only = true,
                               .count_only = true};
    assert_int_equal(kvcmd_encode_range(&rng, &buf, &n), 0);
    assert_canonical(buf, n, c);
    assert_int_equal(c->type, KV_CMD_RANGE);
    assert_true(c->range.prefix);
    assert_true(c->range.keys_only);
    assert_true(c->range.count_only);
    assert_int_equal(c->range.limit, 9);
    assert_int_equal(c->range.revision, -1);
    free(buf);

    assert_int_equal(kvcmd_encode_compact(INT64_MAX, &buf, &n), 0);
    assert_canonical(buf, n, c);
    assert_int_equal(c->type, KV_CMD_COMPACT);
    assert_int_equal(c->compact_revision, INT64_MAX);
    free(buf);
    free(c);
}

static void test_txn_round_trip(void **state)
{
    struct kv_txn_req txn = sample_txn();
    uint8_t *buf;
    size_t n;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    struct kvcmd *c = cmd_new();
    assert_canonical(buf, n, c);
    assert_int_equal(c->type, KV_CMD_TXN);
    assert_int_equal(c->txn.n_compares, 5);
    assert_int_equal(c->txn.n_success, 3);
    assert_int_equal(c->txn.n_failure, 1);
    for (uint32_t i = 0; i < 5; i++) {
        const struct kv_compare *a = &c->txn.compares[i], *e = &sample_cmps[i];
        assert_int_equal(a->target, e->target);
        assert_int_equal(a->op, e->op);
        assert_bytes_equal(a->key, a->key_len, e->key, e->key_len);
        assert_int_equal(a->number, e->target == KV_CMP_VALUE ? 0 : e->number);
        assert_bytes_equal(a->value, a->value_len, e->value, e->value_len);
    }
    assert_int_equal(c->txn.success[0].type, KV_OP_PUT);
    assert_int_equal(c->txn.success[0].put.lease, 5);
    assert_int_equal(c->txn.success[1].type, KV_OP_RANGE);
    assert_int_equal(c->txn.success[1].range.revision, 4);
    assert_int_equal(c->txn.success[2].type, KV_OP_DELETE);
    assert_int_equal(c->txn.failure[0].type, KV_OP_PUT);
    assert_true(c->txn.failure[0].put.ignore_value);
    free(buf);

    /* the empty txn is legal */
    txn = (struct kv_txn_req){0};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    assert_int_equal(n, 8);
    assert_canonical(buf, n, c);
    free(buf);
    free(c);
}

/* ---- limits and checks -------------------------------------------------- */

static void test_limits_have_their_own_errors(void **state)
{
    uint8_t *big = calloc(1, KV_VALUE_BYTES_MAX + 1);
    uint8_t *buf = NULL;
    size_t n;
    struct kv_put_req put = {
        .key = big, .key_len = KV_KEY_BYTES_MAX + 1, .value = B("v"), .value_len = 1};
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), KV_EKEYTOOBIG);
    put.key_len = 0;
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), KV_EKEYEMPTY);
    put.key_len = KV_KEY_BYTES_MAX;
    put.value = big;
    put.value_len = KV_VALUE_BYTES_MAX + 1;
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), KV_EVALUETOOBIG);
    /* the largest legal put fits one command */
    put.value_len = KV_VALUE_BYTES_MAX;
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), 0);
    assert_true(n <= KV_CMD_BYTES_MAX);
    struct kvcmd *c = cmd_new();
    assert_int_equal(kvcmd_decode(buf, n, c), 0);
    free(buf);

    put = (struct kv_put_req){.key = B("k"), .key_len = 1, .lease = -1};
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), KV_EINVAL);
    put = (struct kv_put_req){
        .key = B("k"), .key_len = 1, .value = B("v"), .value_len = 1, .ignore_value = true};
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), KV_EINVAL);
    put = (struct kv_put_req){.key = B("k"), .key_len = 1, .lease = 3, .ignore_lease = true};
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), KV_EINVAL);

    struct kv_range_req rng = {.key = B("k"), .key_len = 1, .limit = -1};
    assert_int_equal(kvcmd_encode_range(&rng, &buf, &n), KV_EINVAL);
    rng = (struct kv_range_req){
        .key = B("k"), .key_len = 1, .prefix = true, .range_end = B("z"), .range_end_len = 1};
    assert_int_equal(kvcmd_encode_range(&rng, &buf, &n), KV_EINVAL);
    rng = (struct kv_range_req){.key_len = 0};
    assert_int_equal(kvcmd_encode_range(&rng, &buf, &n), KV_EKEYEMPTY);
    rng = (struct kv_range_req){
        .key = big, .key_len = 1, .range_end = big, .range_end_len = KV_KEY_BYTES_MAX + 1};
    assert_int_equal(kvcmd_encode_range(&rng, &buf, &n), KV_EKEYTOOBIG);
    /* an empty key with prefix means every key */
    rng = (struct kv_range_req){.prefix = true};
    assert_int_equal(kvcmd_encode_range(&rng, &buf, &n), 0);
    free(buf);

    struct kv_delete_req del = {.key_len = 0};
    assert_int_equal(kvcmd_encode_delete(&del, &buf, &n), KV_EKEYEMPTY);
    assert_int_equal(kvcmd_encode_compact(0, &buf, &n), KV_EINVAL);
    assert_int_equal(kvcmd_encode_compact(-5, &buf, &n), KV_EINVAL);

    /* txn counts */
    struct kv_op *ops = calloc(KV_TXN_OPS_MAX + 1, sizeof *ops);
    struct kv_compare *cmps = calloc(KV_TXN_CMP_MAX + 1, sizeof *cmps);
    char(*keys)[8] = calloc(KV_TXN_OPS_MAX + 1, sizeof *keys);
    for (uint32_t i = 0; i <= KV_TXN_OPS_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "k%u", i);
        ops[i].type = KV_OP_PUT;
        ops[i].put = (struct kv_put_req){.key = B(keys[i]), .key_len = L(keys[i])};
    }
    for (uint32_t i = 0; i <= KV_TXN_CMP_MAX; i++) {
        cmps[i] = (struct kv_compare){
            .target = KV_CMP_VERSION, .op = KV_CMP_EQUAL, .key = B("c"), .key_len = 1};
    }
    struct kv_txn_req txn = {.compares = cmps,
                             .n_compares = KV_TXN_CMP_MAX,
                             .success = ops,
                             .n_success = KV_TXN_OPS_MAX,
                             .failure = ops,
                             .n_failure = KV_TXN_OPS_MAX};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    assert_int_equal(kvcmd_decode(buf, n, c), 0);
    free(buf);
    txn.n_success = KV_TXN_OPS_MAX + 1;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNOPS);
    txn.n_success = 1;
    txn.n_failure = KV_TXN_OPS_MAX + 1;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNOPS);
    txn.n_failure = 1;
    txn.n_compares = KV_TXN_CMP_MAX + 1;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNCMPS);
    txn.n_compares = 1;
    cmps[0].target = 9;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_EINVAL);
    cmps[0].target = KV_CMP_VERSION;
    cmps[0].op = 0;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_EINVAL);
    cmps[0].op = KV_CMP_LESS;
    cmps[0].key_len = 0;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_EKEYEMPTY);
    cmps[0].key_len = 1;
    ops[0].put.key_len = 0;
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_EKEYEMPTY);
    ops[0].put.key_len = L(keys[0]);

    /* a txn too big for one command: many large values */
    for (uint32_t i = 0; i < 4; i++) {
        ops[i].put.value = big;
        ops[i].put.value_len = KV_VALUE_BYTES_MAX / 2;
    }
    txn = (struct kv_txn_req){.success = ops, .n_success = 4};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ECMDTOOBIG);

    free(keys);
    free(cmps);
    free(ops);
    free(big);
    free(c);
}

/* The sorted duplicate check against the plain pairwise rule, on random branches over a
 * small key alphabet (so clashes are common): puts, single-key, range, "from" and prefix
 * deletes, and ranges. */
static bool brute_has_dup(const struct kv_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ops[i].type != KV_OP_PUT)
            continue;
        const struct kv_put_req *p = &ops[i].put;
        for (uint32_t j = 0; j < n; j++) {
            if (j == i)
                continue;
            if (ops[j].type == KV_OP_PUT && kvcmd_key_cmp(p->key, p->key_len, ops[j].put.key,
                                                          ops[j].put.key_len) == 0)
                return true;
            if (ops[j].type == KV_OP_DELETE) {
                const struct kv_delete_req *d = &ops[j].del;
                struct kvcmd_span sp;
                kvcmd_span_make(d->key, d->key_len, d->range_end, d->range_end_len, d->prefix,
                                &sp);
                if (kvcmd_span_contains(&sp, p->key, p->key_len))
                    return true;
            }
        }
    }
    return false;
}

static void test_txn_duplicate_keys_match_pairwise_rule(void **state)
{
    (void)state;
    static const char *const keys[] = {"a", "ab", "abc", "b", "ba", "c", "cc", "d"};
    static const uint8_t from_end[1] = {0};
    struct prng rng;
    prng_seed(&rng, 42);
    struct kv_op ops[KV_TXN_OPS_MAX];
    uint32_t dups = 0, clean = 0;
    for (int round = 0; round < 4000; round++) {
        uint32_t n = 1 + (uint32_t)prng_below(&rng, round % 4 == 0 ? KV_TXN_OPS_MAX : 12);
        memset(ops, 0, sizeof ops);
        for (uint32_t i = 0; i < n; i++) {
            /* large branches get unique-ish keys from a number, small ones the alphabet */
            const char *k = keys[prng_below(&rng, 8)];
            uint32_t choice = (uint32_t)prng_below(&rng, 10);
            if (choice < 6) {
                ops[i].type = KV_OP_PUT;
                ops[i].put.key = (const uint8_t *)k;
                ops[i].put.key_len = (uint32_t)strlen(k);
            } else if (choice < 9) {
                ops[i].type = KV_OP_DELETE;
                ops[i].del.key = (const uint8_t *)k;
                ops[i].del.key_len = (uint32_t)strlen(k);
                uint32_t kind = (uint32_t)prng_below(&rng, 4);
                if (kind == 1) {
                    ops[i].del.prefix = true;
                } else if (kind == 2) {
                    ops[i].del.range_end = from_end;
                    ops[i].del.range_end_len = 1;
                } else if (kind == 3) {
                    const char *e = keys[prng_below(&rng, 8)];
                    if (strcmp(e, k) <= 0)
                        e = "zz";
                    ops[i].del.range_end = (const uint8_t *)e;
                    ops[i].del.range_end_len = (uint32_t)strlen(e);
                }
            } else {
                ops[i].type = KV_OP_RANGE;
                ops[i].range.key = (const uint8_t *)k;
                ops[i].range.key_len = (uint32_t)strlen(k);
            }
        }
        struct kv_txn_req txn = {.success = ops, .n_success = n};
        bool want = brute_has_dup(ops, n);
        assert_int_equal(kvcmd_check_txn(&txn), want ? KV_ETXNDUPKEY : 0);
        want ? dups++ : clean++;
    }
    assert_true(dups > 500 && clean > 500); /* both outcomes were exercised */
}

static void test_txn_duplicate_keys(void **state)
{
    struct kv_op ops[3];
    uint8_t *buf;
    size_t n;
    memset(ops, 0, sizeof ops);
    ops[0].type = KV_OP_PUT;
    ops[0].put = (struct kv_put_req){.key = B("a"), .key_len = 1};
    ops[1].type = KV_OP_PUT;
    ops[1].put = (struct kv_put_req){.key = B("a"), .key_len = 1};
    struct kv_txn_req txn = {.success = ops, .n_success = 2};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNDUPKEY);
    /* the same two ops in different branches are fine */
    txn = (struct kv_txn_req){.success = ops, .n_success = 1, .failure = ops + 1, .n_failure = 1};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    free(buf);

    /* a put inside a deleted range or prefix, in either order */
    ops[1].type = KV_OP_DELETE;
    ops[1].del = (struct kv_delete_req){
        .key = B("a"), .key_len = 1, .range_end = B("b"), .range_end_len = 1};
    txn = (struct kv_txn_req){.success = ops, .n_success = 2};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNDUPKEY);
    txn = (struct kv_txn_req){.success = ops + 1, .n_success = 1};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    free(buf);
    ops[2] = ops[0];
    txn = (struct kv_txn_req){.success = ops + 1, .n_success = 2};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNDUPKEY);
    ops[1].del = (struct kv_delete_req){.key_len = 0, .prefix = true}; /* everything */
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), KV_ETXNDUPKEY);
    /* outside the range: fine; overlapping deletes: fine; a range op: fine */
    ops[1].del = (struct kv_delete_req){
        .key = B("b"), .key_len = 1, .range_end = B("c"), .range_end_len = 1};
    ops[0] = ops[1];
    ops[0].del.key = B("a");
    ops[2].type = KV_OP_RANGE;
    ops[2].range = (struct kv_range_req){.key = B("b"), .key_len = 1};
    txn = (struct kv_txn_req){.success = ops, .n_success = 3};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    free(buf);
}

/* ---- strict decoding ---------------------------------------------------- */

static void test_decode_rejects_truncation_at_every_offset(void **state)
{
    struct kvcmd *c = cmd_new();
    for (int s = 0; s < N_SAMPLES; s++) {
        uint8_t *buf;
        size_t n;
        encode_sample(s, &buf, &n);
        assert_canonical(buf, n, c);
        for (size_t cut = 0; cut < n; cut++) {
            assert_int_equal(kvcmd_decode(cut == 0 ? NULL : buf, cut, c), KV_EMALFORMED);
        }
        /* one trailing byte */
        uint8_t *longer = malloc(n + 1);
        memcpy(longer, buf, n);
        longer[n] = 0;
        assert_int_equal(kvcmd_decode(longer, n + 1, c), KV_EMALFORMED);
        free(longer);
        free(buf);
    }
    free(c);
}

static void test_decode_is_strict(void **state)
{
    struct kvcmd *c = cmd_new();
    uint8_t *buf;
    size_t n;
    encode_sample(0, &buf, &n); /* PUT */
    buf[0] = 2;
    assert_int_equal(kvcmd_decode(buf, n, c), KV_EFORMAT);
    buf[0] = KVCMD_FORMAT_VERSION;
    buf[1] = 9;
    assert_int_equal(kvcmd_decode(buf, n, c), KV_EMALFORMED);
    buf[1] = 0;
    assert_int_equal(kvcmd_decode(buf, n, c), KV_EMALFORMED);
    buf[1] = KV_CMD_PUT;
    buf[2] |= 0x80; /* unknown flag bit */
    assert_int_equal(kvcmd_decode(buf, n, c), KV_EMALFORMED);
    buf[2] &= 0x7f;
    assert_int_equal(kvcmd_decode(buf, n, c), 0);
    /* a key length pointing past the end */
    buf[11] = 0xff;
    assert_int_equal(kvcmd_decode(buf, n, c), KV_EMALFORMED);
    free(buf);
    /* a length above the command limit is refused before reading */
    assert_int_equal(kvcmd_decode(B("x"), (size_t)KV_CMD_BYTES_MAX + 1, c), KV_ECMDTOOBIG);
    free(c);
}

/* Builds a PUT by hand, so limits the encoder refuses can still reach the decoder. */
static size_t raw_put(uint8_t *out, uint32_t key_len, uint8_t key_byte, uint32_t value_len)
{
    size_t o = 0;
    out[o++] = KVCMD_FORMAT_VERSION;
    out[o++] = KV_CMD_PUT;
    out[o++] = 0;
    memset(out + o, 0, 8);
    o += 8;
    for (int i = 0; i < 4; i++) {
        out[o++] = (uint8_t)(key_len >> (8 * i));
    }
    memset(out + o, key_byte, key_len);
    o += key_len;
    for (int i = 0; i < 4; i++) {
        out[o++] = (uint8_t)(value_len >> (8 * i));
    }
    memset(out + o, 'v', value_len);
    return o + value_len;
}

static void test_decode_reports_limits_of_well_formed_bytes(void **state)
{
    struct kvcmd *c = cmd_new();
    uint8_t *raw = malloc(KV_CMD_BYTES_MAX);
    size_t n = raw_put(raw, KV_KEY_BYTES_MAX + 1, 'k', 1);
    assert_int_equal(kvcmd_decode(raw, n, c), KV_EKEYTOOBIG);
    n = raw_put(raw, 0, 'k', 1);
    assert_int_equal(kvcmd_decode(raw, n, c), KV_EKEYEMPTY);
    n = raw_put(raw, 1, 'k', KV_VALUE_BYTES_MAX + 1);
    assert_int_equal(kvcmd_decode(raw, n, c), KV_EVALUETOOBIG);

    /* a txn with one compare too many, well formed */
    size_t o = 0;
    raw[o++] = KVCMD_FORMAT_VERSION;
    raw[o++] = KV_CMD_TXN;
    uint16_t n_cmp = KV_TXN_CMP_MAX + 1;
    raw[o++] = (uint8_t)n_cmp;
    raw[o++] = (uint8_t)(n_cmp >> 8);
    raw[o++] = 0;
    raw[o++] = 0;
    raw[o++] = 0;
    raw[o++] = 0;
    for (uint32_t i = 0; i < n_cmp; i++) {
        const uint8_t one[] = {
            KV_CMP_VERSION, KV_CMP_EQUAL, 1, 0, 0, 0, 'c', 0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(raw + o, one, sizeof one);
        o += sizeof one;
    }
    assert_int_equal(kvcmd_decode(raw, o, c), KV_ETXNCMPS);
    assert_int_equal(kvcmd_decode(raw, o - 1, c), KV_EMALFORMED);

    /* a txn with one op too many in the failure branch */
    o = 2;
    uint16_t n_ops = KV_TXN_OPS_MAX + 1;
    raw[o++] = 0;
    raw[o++] = 0;
    raw[o++] = 0;
    raw[o++] = 0;
    raw[o++] = (uint8_t)n_ops;
    raw[o++] = (uint8_t)(n_ops >> 8);
    for (uint32_t i = 0; i < n_ops; i++) {
        const uint8_t one[] = {KV_OP_DELETE, 0, 1, 0, 0, 0, 'd', 0, 0, 0, 0};
        memcpy(raw + o, one, sizeof one);
        o += sizeof one;
    }
    assert_int_equal(kvcmd_decode(raw, o, c), KV_ETXNOPS);
    free(raw);
    free(c);
}

static void test_decode_random_and_flipped_bytes(void **state)
{
    struct kvcmd *c = cmd_new();
    struct prng p;
    prng_seed(&p, 2024);
    uint8_t buf[256];
    int n_ok = 0;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = (size_t)prng_below(&p, sizeof buf);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)prng_next(&p);
        }
        if (n >= 2 && prng_chance(&p, 900000)) {
            buf[0] = KVCMD_FORMAT_VERSION; /* get past the version check */
            buf[1] = (uint8_t)(1 + prng_below(&p, 5));
        }
        if (kvcmd_decode(buf, n, c) == 0) {
            n_ok++;
            assert_canonical(buf, n, c);
        }
    }
    /* every single-bit flip of each sample: decodes to something canonical, or fails */
    for (int s = 0; s < N_SAMPLES; s++) {
        uint8_t *enc;
        size_t n;
        encode_sample(s, &enc, &n);
        for (size_t i = 0; i < n * 8; i++) {
            enc[i / 8] ^= (uint8_t)(1u << (i % 8));
            if (kvcmd_decode(enc, n, c) == 0) {
                n_ok++;
                assert_canonical(enc, n, c);
            }
            enc[i / 8] ^= (uint8_t)(1u << (i % 8));
        }
        free(enc);
    }
    assert_true(n_ok > 0); /* the loop did reach the success path */
    free(c);
}

/* ---- spans -------------------------------------------------------------- */

static bool contains(const char *key, uint32_t key_len, const char *end, uint32_t end_len,
                     bool prefix, const char *k, uint32_t k_len)
{
    struct kvcmd_span s;
    kvcmd_span_make(B(key), key_len, B(end), end_len, prefix, &s);
    return kvcmd_span_contains(&s, B(k), k_len);
}

static void test_spans_and_prefix_end(void **state)
{
    assert_true(kvcmd_key_cmp(B("a"), 1, B("ab"), 2) < 0);
    assert_true(kvcmd_key_cmp(B("b"), 1, B("ab"), 2) > 0);
    assert_true(kvcmd_key_cmp(B("ab"), 2, B("ab"), 2) == 0);
    assert_true(kvcmd_key_cmp(B("\xff"), 1, B("a"), 1) > 0); /* unsigned bytes */

    /* single key */
    assert_true(contains("a", 1, "", 0, false, "a", 1));
    assert_false(contains("a", 1, "", 0, false, "ab", 2));
    /* [a, c) */
    assert_true(contains("a", 1, "c", 1, false, "a", 1));
    assert_true(contains("a", 1, "c", 1, false, "bzz", 3));
    assert_false(contains("a", 1, "c", 1, false, "c", 1));
    assert_false(contains("b", 1, "c", 1, false, "a", 1));
    /* range_end "\0": everything from key */
    assert_true(contains("b", 1, "\0", 1, false, "\xff\xff", 2));
    assert_false(contains("b", 1, "\0", 1, false, "a", 1));
    /* prefix */
    assert_true(contains("ab", 2, "", 0, true, "ab", 2));
    assert_true(contains("ab", 2, "", 0, true, "abc", 3));
    assert_false(contains("ab", 2, "", 0, true, "a", 1));
    assert_false(contains("ab", 2, "", 0, true, "ac", 2));
    assert_true(contains("", 0, "", 0, true, "\0", 1));
    assert_true(contains("", 0, "", 0, true, "\xff", 1));

    uint8_t out[8];
    uint32_t out_len;
    assert_true(kv_prefix_end(B("ab"), 2, out, &out_len));
    assert_bytes_equal(out, out_len, B("ac"), 2);
    assert_true(kv_prefix_end(B("a\xff\xff"), 3, out, &out_len));
    assert_bytes_equal(out, out_len, B("b"), 1);
    assert_false(kv_prefix_end(B("\xff\xff"), 2, out, &out_len));
    assert_int_equal(out_len, 0);
}

/* ---- results ------------------------------------------------------------ */

/* A result with every shape: a txn over a store that has data. */
static void make_result(struct kv *kv, struct kv_result *res)
{
    uint8_t *buf;
    size_t n;
    struct kv_put_req put = {
        .key = B("a"), .key_len = 1, .value = B("1"), .value_len = 1, .lease = 3};
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), 0);
    assert_int_equal(kv_apply(kv, buf, n, res), 0);
    kv_result_free(res);
    free(buf);
    put.key = B("b");
    assert_int_equal(kvcmd_encode_put(&put, &buf, &n), 0);
    assert_int_equal(kv_apply(kv, buf, n, res), 0);
    kv_result_free(res);
    free(buf);

    struct kv_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].type = KV_OP_PUT;
    ops[0].put = (struct kv_put_req){
        .key = B("a"), .key_len = 1, .value = B("2"), .value_len = 1, .prev_kv = true};
    ops[1].type = KV_OP_DELETE;
    ops[1].del = (struct kv_delete_req){.key = B("b"), .key_len = 1, .prev_kv = true};
    ops[2].type = KV_OP_RANGE;
    ops[2].range = (struct kv_range_req){.prefix = true};
    struct kv_txn_req txn = {.success = ops, .n_success = 3};
    assert_int_equal(kvcmd_encode_txn(&txn, &buf, &n), 0);
    assert_int_equal(kv_apply(kv, buf, n, res), 0);
    free(buf);
    assert_int_equal(res->n_responses, 3);
    assert_int_equal(res->n_events, 2);
}

static void assert_kv_equal(const struct kv_kv *a, const struct kv_kv *b)
{
    assert_bytes_equal(a->key, a->key_len, b->key, b->key_len);
    assert_bytes_equal(a->value, a->value_len, b->value, b->value_len);
    assert_int_equal(a->create_revision, b->create_revision);
    assert_int_equal(a->mod_revision, b->mod_revision);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->lease, b->lease);
}

static void test_result_round_trip(void **state)
{
    struct kv *kv;
    assert_int_equal(kv_new(&kv), 0);
    struct kv_result res, back;
    make_result(kv, &res);
    uint8_t *buf, *again;
    size_t n, n_again;

    for (unsigned flags = 0; flags <= KVCMD_RESULT_EVENTS; flags++) {
        assert_int_equal(kvcmd_encode_result(&res, flags, &buf, &n), 0);
        assert_int_equal(kvcmd_decode_result(buf, n, &back), 0);
        assert_int_equal(back.err, res.err);
        assert_int_equal(back.type, res.type);
        assert_int_equal(back.revision, res.revision);
        assert_int_equal(back.succeeded, res.succeeded);
        assert_int_equal(back.n_responses, res.n_responses);
        assert_true(back.responses[0].put.has_prev);
        assert_kv_equal(&back.responses[0].put.prev_kv, &res.responses[0].put.prev_kv);
        assert_int_equal(back.responses[1].del.n_deleted, 1);
        assert_int_equal(back.responses[1].del.n_prev_kvs, 1);
        assert_kv_equal(&back.responses[1].del.prev_kvs[0], &res.responses[1].del.prev_kvs[0]);
        assert_int_equal(back.responses[2].range.count, res.responses[2].range.count);
        assert_int_equal(back.responses[2].range.n_kvs, 1);
        assert_kv_equal(&back.responses[2].range.kvs[0], &res.responses[2].range.kvs[0]);
        if (flags & KVCMD_RESULT_EVENTS) {
            assert_int_equal(back.n_events, 2);
            for (uint32_t i = 0; i < 2; i++) {
                assert_int_equal(back.events[i].type, res.events[i].type);
                assert_kv_equal(&back.events[i].kv, &res.events[i].kv);
                assert_int_equal(back.events[i].has_prev, res.events[i].has_prev);
                assert_kv_equal(&back.events[i].prev_kv, &res.events[i].prev_kv);
            }
        } else {
            assert_int_equal(back.n_events, 0);
        }
        /* canonical: re-encoding the decoded result gives the same bytes */
        assert_int_equal(kvcmd_encode_result(&back, flags, &again, &n_again), 0);
        assert_int_equal(n_again, n);
        assert_memory_equal(again, buf, n);
        free(again);
        kv_result_free(&back);
        kv_result_free(&back); /* twice is fine */

        /* truncation at every offset and a trailing byte */
        for (size_t cut = 0; cut < n; cut++) {
            int rv = kvcmd_decode_result(buf, cut, &back);
            assert_int_equal(rv, KV_EMALFORMED);
            assert_null(back.responses);
        }
        uint8_t *longer = malloc(n + 1);
        memcpy(longer, buf, n);
        longer[n] = 0;
        assert_int_equal(kvcmd_decode_result(longer, n + 1, &back), KV_EMALFORMED);
        free(longer);

        /* every single-bit flip: decodes or fails, never crashes */
        for (size_t i = 0; i < n * 8; i++) {
            buf[i / 8] ^= (uint8_t)(1u << (i % 8));
            if (kvcmd_decode_result(buf, n, &back) == 0) {
                kv_result_free(&back);
            }
            buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        }
        free(buf);
    }

    /* an error result */
    struct kv_result err = {.err = KV_ECOMPACTED, .type = KV_CMD_RANGE, .revision = 9};
    assert_int_equal(kvcmd_encode_result(&err, KVCMD_RESULT_EVENTS, &buf, &n), 0);
    assert_int_equal(kvcmd_decode_result(buf, n, &back), 0);
    assert_int_equal(back.err, KV_ECOMPACTED);
    assert_int_equal(back.revision, 9);
    assert_int_equal(back.type, KV_CMD_RANGE);
    assert_false(back.succeeded);
    kv_result_free(&back);
    buf[0] = 7;
    assert_int_equal(kvcmd_decode_result(buf, n, &back), KV_EFORMAT);
    free(buf);
    assert_int_equal(kvcmd_encode_result(&err, 4, &buf, &n), KV_EINVAL);

    kv_result_free(&res);
    kv_free(kv);
}

static void test_result_decode_refuses_hostile_counts(void **state)
{
    /* header then n_responses = 0xffffffff with nothing behind it */
    uint8_t buf[] = {
        KVCMD_RESULT_VERSION,     KV_CMD_TXN, 0,    0,    0,    0,         1, 0, 0, 0, 0, 0, 0, 0,
        RES_F_SUCCEEDED_FOR_TEST, 0xff,       0xff, 0xff, 0xff, KV_OP_PUT, 0};
    struct kv_result back;
    assert_int_equal(kvcmd_decode_result(buf, sizeof buf, &back), KV_EMALFORMED);
    /* the same with a sane count decodes */
    buf[15] = 1;
    buf[16] = buf[17] = buf[18] = 0;
    assert_int_equal(kvcmd_decode_result(buf, sizeof buf, &back), 0);
    assert_int_equal(back.n_responses, 1);
    assert_int_equal(back.revision, 1);
    assert_true(back.succeeded);
    kv_result_free(&back);
    /* a positive error code is not a KV error */
    buf[2] = 5;
    assert_int_equal(kvcmd_decode_result(buf, sizeof buf, &back), KV_EMALFORMED);
    assert_int_equal(kvcmd_decode_result(NULL, 0, &back), KV_EMALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_round_trip),
        cmocka_unit_test(test_delete_range_compact_round_trip),
        cmocka_unit_test(test_txn_round_trip),
        cmocka_unit_test(test_limits_have_their_own_errors),
        cmocka_unit_test(test_txn_duplicate_keys),
        cmocka_unit_test(test_txn_duplicate_keys_match_pairwise_rule),
        cmocka_unit_test(test_decode_rejects_truncation_at_every_offset),
        cmocka_unit_test(test_decode_is_strict),
        cmocka_unit_test(test_decode_reports_limits_of_well_formed_bytes),
        cmocka_unit_test(test_decode_random_and_flipped_bytes),
        cmocka_unit_test(test_spans_and_prefix_end),
        cmocka_unit_test(test_result_round_trip),
        cmocka_unit_test(test_result_decode_refuses_hostile_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
