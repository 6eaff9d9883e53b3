/* test_kv.c -- unit tests for sm/kv, the MVCC key-value state machine.
 *
 * Scenario tests pin the etcd-compatible semantics (revisions, versions, ranges,
 * history, compaction, txns, leases, limits). Robustness tests feed corrupt snapshots
 * and malformed commands and check the store neither crashes nor changes. The random
 * tests drive several stores and a simple reference model (an array of keys with full
 * histories) with the same commands and require identical results, digests and
 * snapshots, including for a store restored from a snapshot halfway through.
 *
 * The hash index (exact lookups beside the ordered tree) is checked by kv_check after
 * every random step, by random runs whose stores use colliding test hashes (so most
 * keys overflow to the tree) yet must agree byte for byte with the model and with a
 * normally hashed store, and by forced-collision and growth/shrink scenarios.
 *
 * Sections: helpers | scenarios | leases | limits | snapshots | robustness | history |
 * reference model | random runs | hash index | performance.
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
#include <time.h>

#include "base/crc32c.h"
#include "base/prng.h"
#include "sm/kv.h"
#include "sm/kvcmd.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

/* ==== helpers ============================================================ */

static struct kv *kv_make(void)
{
    struct kv *kv;
    assert_int_equal(kv_new(&kv), 0);
    return kv;
}

/* Applies an encoded command (asserting the encoder succeeded) and frees the bytes. */
static int apply_enc(struct kv *kv, int enc_rv, uint8_t *buf, size_t n, struct kv_result *res)
{
    assert_int_equal(enc_rv, 0);
    struct kv_result local;
    struct kv_result *r = res != NULL ? res : &local;
    int rv = kv_apply(kv, buf, n, r);
    assert_int_equal(rv, r->err);
    assert_int_equal(r->revision, kv_revision(kv));
    free(buf);
    if (res == NULL) {
        kv_result_free(&local);
    }
    return rv;
}

static int put_req(struct kv *kv, const struct kv_put_req *req, struct kv_result *res)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_put(req, &buf, &n);
    return apply_enc(kv, rv, buf, n, res);
}

static int put(struct kv *kv, const char *key, const char *value, int64_t lease)
{
    struct kv_put_req req = {
        .key = B(key), .key_len = L(key), .value = B(value), .value_len = L(value), .lease = lease};
    return put_req(kv, &req, NULL);
}

static int del_req(struct kv *kv, const struct kv_delete_req *req, struct kv_result *res)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_delete(req, &buf, &n);
    return apply_enc(kv, rv, buf, n, res);
}

static int del(struct kv *kv, const char *key)
{
    struct kv_delete_req req = {.key = B(key), .key_len = L(key)};
    return del_req(kv, &req, NULL);
}

static int txn(struct kv *kv, const struct kv_txn_req *req, struct kv_result *res)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_txn(req, &buf, &n);
    return apply_enc(kv, rv, buf, n, res);
}

static int compact(struct kv *kv, int64_t rev)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_compact(rev, &buf, &n);
    return apply_enc(kv, rv, buf, n, NULL);
}

/* Reads one key at rev (0 = current) through kv_range. Returns the error; *found and
 * *out (copied into val, up to val_cap bytes) describe the key. */
static int get_at(const struct kv *kv, const char *key, int64_t rev, bool *found, struct kv_kv *out,
                  char *val, size_t val_cap)
{
    struct kv_range_req req = {.key = B(key), .key_len = L(key), .revision = rev};
    struct kv_range_resp resp;
    int rv = kv_range(kv, &req, &resp);
    *found = false;
    memset(out, 0, sizeof *out);
    if (rv != 0) {
        assert_null(resp.kvs);
        return rv;
    }
    assert_true(resp.n_kvs <= 1);
    assert_int_equal(resp.count, resp.n_kvs);
    assert_false(resp.more);
    if (resp.n_kvs == 1) {
        *found = true;
        *out = resp.kvs[0];
        assert_true(out->value_len < val_cap);
        if (out->value_len > 0) {
            memcpy(val, out->value, out->value_len);
        }
        val[out->value_len] = 0;
        out->key = NULL;
        out->value = NULL;
    }
    kv_range_resp_free(&resp);
    return 0;
}

/* Asserts key has value at rev with the given metadata. */
static void assert_get(const struct kv *kv, const char *key, int64_t rev, const char *value,
                       int64_t create, int64_t mod, int64_t version, int64_t lease)
{
    bool found;
    struct kv_kv got;
    char val[256];
    assert_int_equal(get_at(kv, key, rev, &found, &got, val, sizeof val), 0);
    assert_true(found);
    assert_string_equal(val, value);
    assert_int_equal(got.create_revision, create);
    assert_int_equal(got.mod_revision, mod);
    assert_int_equal(got.version, version);
    assert_int_equal(got.lease, lease);
}

static void assert_missing(const struct kv *kv, const char *key, int64_t rev)
{
    bool found;
    struct kv_kv got;
    char val[256];
    assert_int_equal(get_at(kv, key, rev, &found, &got, val, sizeof val), 0);
    assert_false(found);
}

static int get_err(const struct kv *kv, const char *key, int64_t rev)
{
    bool found;
    struct kv_kv got;
    char val[256];
    return get_at(kv, key, rev, &found, &got, val, sizeof val);
}

static void assert_kv_is(const struct kv_kv *kv, const char *key, const char *value)
{
    assert_int_equal(kv->key_len, L(key));
    assert_memory_equal(kv->key, key, kv->key_len);
    if (value != NULL) {
        assert_int_equal(kv->value_len, L(value));
        if (kv->value_len > 0) {
            assert_memory_equal(kv->value, value, kv->value_len);
        }
    }
}

static struct kv *snapshot_copy(const struct kv *kv)
{
    uint8_t *buf;
    size_t n;
    struct kv *copy;
    assert_int_equal(kv_snapshot_encode(kv, &buf, &n), 0);
    assert_int_equal(kv_snapshot_decode(buf, n, &copy), 0);
    free(buf);
    return copy;
}

static void assert_same_state(const struct kv *a, const struct kv *b)
{
    assert_int_equal(kv_digest(a), kv_digest(b));
    assert_int_equal(kv_revision(a), kv_revision(b));
    assert_int_equal(kv_compacted_revision(a), kv_compacted_revision(b));
    uint8_t *sa, *sb;
    size_t na, nb;
    assert_int_equal(kv_snapshot_encode(a, &sa, &na), 0);
    assert_int_equal(kv_snapshot_encode(b, &sb, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(sa, sb, na);
    free(sa);
    free(sb);
    struct kv_stats x, y;
    kv_stats(a, &x);
    kv_stats(b, &y);
    assert_int_equal(x.n_keys_live, y.n_keys_live);
    assert_int_equal(x.n_leases, y.n_leases);
}

/* kv_check must pass: internal invariants, the hash index included. */
static void assert_kv_ok(const struct kv *kv)
{
    char msg[256];
    int rv = kv_check(kv, msg, sizeof msg);
    if (rv != 0) {
        fail_msg("kv_check: %s: %s", kv_strerror(rv), msg);
    }
}

/* Test hashes (kv_test_set_hash). Every key in one probe sequence: only the first
 * KV_HASH_PROBE_MAX fit, the rest overflow to the tree. */
static uint32_t hash_const(const uint8_t *key, uint32_t key_len)
{
    return 0x5eedu;
}

/* Four home slots picked by the last byte: long Robin Hood runs that swap and overflow. */
static uint32_t hash_2bits(const uint8_t *key, uint32_t key_len)
{
    return key[key_len - 1] & 3u;
}

/* Valid but different: makes a stale index for the negative control. */
static uint32_t hash_by_len(const uint8_t *key, uint32_t key_len)
{
    return key_len * 2654435761u;
}

/* ==== scenarios ========================================================== */

static void test_empty_store(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(kv_revision(kv), 1);
    assert_int_equal(kv_compacted_revision(kv), 0);
    assert_missing(kv, "a", 0);
    assert_missing(kv, "a", 1);
    assert_int_equal(get_err(kv, "a", 2), KV_EFUTUREREV);
    struct kv *copy = snapshot_copy(kv);
    assert_same_state(kv, copy);
    kv_free(copy);
    kv_free(kv);
    kv_free(NULL);
}

static void test_put_get_metadata(void **state)
{
    struct kv *kv = kv_make();
    struct kv_result res;
    struct kv_put_req req = {
        .key = B("a"), .key_len = 1, .value = B("1"), .value_len = 1, .prev_kv = true};
    assert_int_equal(put_req(kv, &req, &res), 0);
    assert_int_equal(res.revision, 2);
    assert_int_equal(res.type, KV_CMD_PUT);
    assert_true(res.succeeded);
    assert_int_equal(res.n_responses, 1);
    assert_int_equal(res.responses[0].type, KV_OP_PUT);
    assert_false(res.responses[0].put.has_prev); /* nothing before */
    assert_int_equal(res.n_events, 1);
    assert_int_equal(res.events[0].type, KV_EVENT_PUT);
    assert_kv_is(&res.events[0].kv, "a", "1");
    assert_int_equal(res.events[0].kv.create_revision, 2);
    assert_int_equal(res.events[0].kv.mod_revision, 2);
    assert_int_equal(res.events[0].kv.version, 1);
    assert_false(res.events[0].has_prev);
    kv_result_free(&res);
    assert_get(kv, "a", 0, "1", 2, 2, 1, 0);

    assert_int_equal(put(kv, "b", "x", 0), 0);
    assert_int_equal(kv_revision(kv), 3);

    /* overwrite: same create, new mod, version 2, prev returned */
    req.value = B("22");
    req.value_len = 2;
    req.lease = 9;
    assert_int_equal(put_req(kv, &req, &res), 0);
    assert_int_equal(res.revision, 4);
    assert_true(res.responses[0].put.has_prev);
    assert_kv_is(&res.responses[0].put.prev_kv, "a", "1");
    assert_int_equal(res.responses[0].put.prev_kv.mod_revision, 2);
    assert_true(res.events[0].has_prev);
    assert_kv_is(&res.events[0].prev_kv, "a", "1");
    kv_result_free(&res);
    assert_get(kv, "a", 0, "22", 2, 4, 2, 9);
    assert_get(kv, "b", 0, "x", 3, 3, 1, 0);

    /* an empty value is a value */
    assert_int_equal(put(kv, "e", "", 0), 0);
    assert_get(kv, "e", 0, "", 5, 5, 1, 0);

    struct kv_stats st;
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_live, 3);
    assert_int_equal(st.n_versions, 4);
    assert_int_equal(st.n_leases, 1);
    kv_free(kv);
}

static void test_delete_and_recreate(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "k", "v1", 0), 0); /* r2 */
    assert_int_equal(put(kv, "k", "v2", 0), 0); /* r3 */
    struct kv_result res;
    struct kv_delete_req dreq = {.key = B("k"), .key_len = 1, .prev_kv = true};
    assert_int_equal(del_req(kv, &dreq, &res), 0); /* r4 */
    assert_int_equal(res.revision, 4);
    assert_int_equal(res.responses[0].del.n_deleted, 1);
    assert_int_equal(res.responses[0].del.n_prev_kvs, 1);
    assert_kv_is(&res.responses[0].del.prev_kvs[0], "k", "v2");
    assert_int_equal(res.n_events, 1);
    assert_int_equal(res.events[0].type, KV_EVENT_DELETE);
    assert_kv_is(&res.events[0].kv, "k", "");
    assert_int_equal(res.events[0].kv.mod_revision, 4);
    assert_int_equal(res.events[0].kv.version, 0);
    assert_true(res.events[0].has_prev);
    assert_int_equal(res.events[0].prev_kv.version, 2);
    kv_result_free(&res);
    assert_missing(kv, "k", 0);

    /* deleting nothing changes nothing, not even the revision */
    assert_int_equal(del_req(kv, &dreq, &res), 0);
    assert_int_equal(res.revision, 4);
    assert_int_equal(res.responses[0].del.n_deleted, 0);
    assert_int_equal(res.n_events, 0);
    kv_result_free(&res);
    assert_int_equal(del(kv, "never"), 0);
    assert_int_equal(kv_revision(kv), 4);

    /* recreate: version restarts, create_revision moves */
    assert_int_equal(put(kv, "k", "v3", 0), 0);
    assert_get(kv, "k", 0, "v3", 5, 5, 1, 0);
    assert_int_equal(put(kv, "k", "v4", 0), 0);
    assert_get(kv, "k", 0, "v4", 5, 6, 2, 0);
    kv_free(kv);
}

static void test_range_prefix_limit_more(void **state)
{
    struct kv *kv = kv_make();
    char key[16];
    for (int i = 9; i >= 1; i--) {
        snprintf(key, sizeof key, "a/%d", i);
        assert_int_equal(put(kv, key, key, 0), 0);
    }
    assert_int_equal(put(kv, "a", "A", 0), 0);
    assert_int_equal(put(kv, "b/1", "B", 0), 0);
    assert_int_equal(put(kv, "a/", "slash", 0), 0);

    struct kv_range_resp resp;
    struct kv_range_req req = {.key = B("a/"), .key_len = 2, .prefix = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 10);
    assert_int_equal(resp.n_kvs, 10);
    assert_false(resp.more);
    assert_kv_is(&resp.kvs[0], "a/", "slash"); /* shorter first */
    for (int i = 1; i <= 9; i++) {
        snprintf(key, sizeof key, "a/%d", i);
        assert_kv_is(&resp.kvs[i], key, key);
    }
    kv_range_resp_free(&resp);

    req.limit = 3;
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 10);
    assert_int_equal(resp.n_kvs, 3);
    assert_true(resp.more);
    assert_kv_is(&resp.kvs[2], "a/2", "a/2");
    kv_range_resp_free(&resp);

    req.limit = 10; /* exactly all: no more */
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_false(resp.more);
    kv_range_resp_free(&resp);

    /* [a/3, a/6) */
    req = (struct kv_range_req){
        .key = B("a/3"), .key_len = 3, .range_end = B("a/6"), .range_end_len = 3};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.n_kvs, 3);
    assert_kv_is(&resp.kvs[0], "a/3", NULL);
    assert_kv_is(&resp.kvs[2], "a/5", NULL);
    kv_range_resp_free(&resp);

    /* from a/8 to the end, keys only */
    req = (struct kv_range_req){
        .key = B("a/8"), .key_len = 3, .range_end = B("\0"), .range_end_len = 1, .keys_only = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.n_kvs, 3);
    assert_kv_is(&resp.kvs[2], "b/1", NULL);
    assert_int_equal(resp.kvs[2].value_len, 0);
    assert_null(resp.kvs[2].value);
    assert_int_equal(resp.kvs[2].version, 1);
    kv_range_resp_free(&resp);

    /* count only; an inverted range is empty; everything */
    req = (struct kv_range_req){.prefix = true, .count_only = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 12);
    assert_int_equal(resp.n_kvs, 0);
    assert_false(resp.more);
    kv_range_resp_free(&resp);
    req =
        (struct kv_range_req){.key = B("b"), .key_len = 1, .range_end = B("a"), .range_end_len = 1};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 0);
    kv_range_resp_free(&resp);
    req = (struct kv_range_req){
        .key = B("\0"), .key_len = 1, .range_end = B("\0"), .range_end_len = 1};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 12);
    assert_kv_is(&resp.kvs[0], "a", "A");
    kv_range_resp_free(&resp);

    /* skip_count: the same keys and `more`, without walking the rest for `count` */
    req = (struct kv_range_req){.key = B("a/"), .key_len = 2, .prefix = true, .limit = 3,
                                .skip_count = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.n_kvs, 3);
    assert_true(resp.more);
    assert_int_equal(resp.count, 4); /* the three returned and the one that proves more */
    assert_kv_is(&resp.kvs[2], "a/2", "a/2");
    kv_range_resp_free(&resp);
    req.limit = 10; /* exactly all: no more, and the count is then exact */
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_false(resp.more);
    assert_int_equal(resp.count, 10);
    kv_range_resp_free(&resp);
    req = (struct kv_range_req){.prefix = true, .count_only = true, .skip_count = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 12); /* count_only ignores it */
    kv_range_resp_free(&resp);

    /* bad requests */
    req = (struct kv_range_req){.key = B("a"), .key_len = 1, .limit = -1};
    assert_int_equal(kv_range(kv, &req, &resp), KV_EINVAL);
    req = (struct kv_range_req){.key_len = 0};
    assert_int_equal(kv_range(kv, &req, &resp), KV_EKEYEMPTY);
    kv_free(kv);
}

static void test_range_limit_is_clamped(void **state)
{
    struct kv *kv = kv_make();
    char key[16];
    for (uint32_t i = 0; i < KV_RANGE_LIMIT_MAX + 5; i++) {
        snprintf(key, sizeof key, "k%06u", i);
        assert_int_equal(put(kv, key, "", 0), 0);
    }
    struct kv_range_resp resp;
    struct kv_range_req req = {.key = B("k"), .key_len = 1, .prefix = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, KV_RANGE_LIMIT_MAX + 5);
    assert_int_equal(resp.n_kvs, KV_RANGE_LIMIT_MAX);
    assert_true(resp.more);
    kv_range_resp_free(&resp);
    req.limit = (int64_t)KV_RANGE_LIMIT_MAX * 2;
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.n_kvs, KV_RANGE_LIMIT_MAX);
    assert_true(resp.more);
    kv_range_resp_free(&resp);
    kv_free(kv);
}

/* KV_RESULT_BYTES_MAX: a range stops before the key that would overflow the result's
 * byte budget (returning a prefix of the range, at least one key), and the ranges of
 * one txn share the budget. */
static void test_range_result_bytes_budget(void **state)
{
    struct kv *kv = kv_make();
    uint8_t *value = malloc(KV_VALUE_BYTES_MAX);
    memset(value, 'v', KV_VALUE_BYTES_MAX);
    const uint32_t per_kv = KV_VALUE_BYTES_MAX + 6; /* "big/NN" */
    const uint32_t fit = KV_RESULT_BYTES_MAX / per_kv;
    char key[16];
    for (uint32_t i = 0; i <= fit; i++) {
        snprintf(key, sizeof key, "big/%02u", i);
        struct kv_put_req req = {
            .key = B(key), .key_len = L(key), .value = value, .value_len = KV_VALUE_BYTES_MAX};
        assert_int_equal(put_req(kv, &req, NULL), 0);
    }
    assert_int_equal(put(kv, "big/zz", "small", 0), 0); /* after the big ones */

    struct kv_range_resp resp;
    struct kv_range_req req = {.key = B("big/"), .key_len = 4, .prefix = true};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, fit + 2);
    assert_int_equal(resp.n_kvs, fit);
    assert_true(resp.more);
    snprintf(key, sizeof key, "big/%02u", fit - 1);
    assert_kv_is(&resp.kvs[fit - 1], key, NULL); /* a prefix: big/zz is not skipped to */
    kv_range_resp_free(&resp);
    req.keys_only = true;
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.n_kvs, fit + 2);
    assert_false(resp.more);
    kv_range_resp_free(&resp);

    /* two ranges in one txn share the budget; the second still gets one key */
    struct kv_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].type = KV_OP_RANGE;
    ops[0].range = (struct kv_range_req){.key = B("big/"), .key_len = 4, .prefix = true};
    ops[1] = ops[0];
    struct kv_txn_req t = {.success = ops, .n_success = 2};
    struct kv_result res;
    assert_int_equal(txn(kv, &t, &res), 0);
    assert_int_equal(res.responses[0].range.n_kvs, fit);
    assert_int_equal(res.responses[1].range.n_kvs, 1);
    assert_true(res.responses[1].range.more);
    kv_result_free(&res);
    free(value);
    kv_free(kv);
}

static void test_historical_reads(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "a", "1", 0), 0); /* r2 */
    assert_int_equal(put(kv, "a", "2", 0), 0); /* r3 */
    assert_int_equal(del(kv, "a"), 0);         /* r4 */
    assert_int_equal(put(kv, "a", "3", 0), 0); /* r5 */
    assert_int_equal(put(kv, "b", "x", 0), 0); /* r6 */
    assert_missing(kv, "a", 1);
    assert_get(kv, "a", 2, "1", 2, 2, 1, 0);
    assert_get(kv, "a", 3, "2", 2, 3, 2, 0);
    assert_missing(kv, "a", 4);
    assert_get(kv, "a", 5, "3", 5, 5, 1, 0);
    assert_get(kv, "a", 6, "3", 5, 5, 1, 0);
    assert_missing(kv, "b", 5);
    assert_int_equal(get_err(kv, "a", 7), KV_EFUTUREREV);
    assert_get(kv, "a", -3, "3", 5, 5, 1, 0); /* <= 0: current */

    /* a historical range sees the keys of its time */
    struct kv_range_resp resp;
    struct kv_range_req req = {.prefix = true, .revision = 3};
    assert_int_equal(kv_range(kv, &req, &resp), 0);
    assert_int_equal(resp.count, 1);
    assert_kv_is(&resp.kvs[0], "a", "2");
    kv_range_resp_free(&resp);
    kv_free(kv);
}

struct collected {
    int n;
    int64_t rev[64];
    uint8_t type[64];
    char key[64][8];
    char value[64][8];
    bool has_prev[64];
    char prev_value[64][8];
    int stop_at; /* return 1 on this event index (-1: never) */
};

static int collect_cb(void *arg, const struct kv_event *ev)
{
    struct collected *c = arg;
    assert_true(c->n < 64);
    if (c->n == c->stop_at) {
        return 1;
    }
    c->rev[c->n] = ev->kv.mod_revision;
    c->type[c->n] = ev->type;
    snprintf(c->key[c->n], 8, "%.*s", (int)ev->kv.key_len, (const char *)ev->kv.key);
    snprintf(c->value[c->n], 8, "%.*s", (int)ev->kv.value_len, (const char *)ev->kv.value);
    c->has_prev[c->n] = ev->has_prev;
    snprintf(c->prev_value[c->n], 8, "%.*s", (int)ev->prev_kv.value_len,
             (const char *)ev->prev_kv.value);
    c->n++;
    return 0;
}

static void test_compaction(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "a", "1", 0), 0);    /* r2 */
    assert_int_equal(put(kv, "a", "2", 0), 0);    /* r3 */
    assert_int_equal(put(kv, "gone", "g", 0), 0); /* r4 */
    assert_int_equal(del(kv, "gone"), 0);         /* r5 */
    assert_int_equal(put(kv, "a", "3", 0), 0);    /* r6 */

    assert_int_equal(compact(kv, 7), KV_EFUTUREREV);
    assert_int_equal(compact(kv, 5), 0);
    assert_int_equal(kv_revision(kv), 6); /* compaction is not a change */
    assert_int_equal(kv_compacted_revision(kv), 5);
    assert_int_equal(compact(kv, 5), KV_ECOMPACTED);
    assert_int_equal(compact(kv, 4), KV_ECOMPACTED);

    assert_int_equal(get_err(kv, "a", 4), KV_ECOMPACTED);
    assert_int_equal(get_err(kv, "a", 2), KV_ECOMPACTED);
    assert_get(kv, "a", 5, "2", 2, 3, 2, 0); /* at the compacted revision: still readable */
    assert_get(kv, "a", 6, "3", 2, 6, 3, 0);
    assert_missing(kv, "gone", 5);

    /* history: only after the compacted revision */
    struct collected c = {.stop_at = -1};
    int64_t next;
    assert_int_equal(kv_history_since(kv, B("a"), 1, NULL, 0, 5, 100, &next, collect_cb, &c),
                     KV_ECOMPACTED);
    assert_int_equal(kv_history_since(kv, B("a"), 1, NULL, 0, 1, 100, &next, collect_cb, &c),
                     KV_ECOMPACTED);
    assert_int_equal(kv_history_since(kv, B("a"), 1, NULL, 0, 6, 100, &next, collect_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.rev[0], 6);
    assert_true(c.has_prev[0]); /* the version at the compacted revision is kept */
    assert_string_equal(c.prev_value[0], "2");
    assert_int_equal(next, 7);

    /* physically: the deleted key and a's old versions are gone */
    struct kv_stats st;
    kv_stats(kv, &st);
    assert_int_equal(st.n_trim_pending, 0);
    assert_int_equal(st.n_keys_indexed, 1);
    assert_int_equal(st.n_versions, 2);

    struct kv *copy = snapshot_copy(kv);
    assert_same_state(kv, copy);
    kv_free(copy);

    /* compact to the current revision: only the newest version remains */
    assert_int_equal(compact(kv, 6), 0);
    kv_stats(kv, &st);
    assert_int_equal(st.n_versions, 1);
    assert_get(kv, "a", 6, "3", 2, 6, 3, 0);
    assert_int_equal(put(kv, "a", "4", 0), 0);
    assert_get(kv, "a", 0, "4", 2, 7, 4, 0);
    kv_free(kv);
}

static void test_deferred_compaction_is_invisible(void **state)
{
    struct kv *kv = kv_make();
    struct kv *eager = kv_make();
    char key[16];
    const uint32_t n_keys = 3 * KV_COMPACT_STEP_MAX;
    for (int round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < n_keys; i++) {
            snprintf(key, sizeof key, "k%06u", i);
            assert_int_equal(put(kv, key, round == 0 ? "old" : "new", 0), 0);
            assert_int_equal(put(eager, key, round == 0 ? "old" : "new", 0), 0);
        }
    }
    int64_t rev = kv_revision(kv); /* 1 + 2 * n_keys */
    struct kv_delete_req d = {.key = B("k"), .key_len = 1, .prefix = true};
    assert_int_equal(del_req(kv, &d, NULL), 0);
    assert_int_equal(del_req(eager, &d, NULL), 0);

    /* compact below the delete: every put is at or below it, half become garbage */
    assert_int_equal(compact(kv, rev), 0);
    assert_int_equal(compact(eager, rev), 0);
    kv_compact_step(eager, UINT32_MAX);
    struct kv_stats st, st_eager;
    kv_stats(kv, &st);
    kv_stats(eager, &st_eager);
    assert_true(st.n_trim_pending > 0); /* one apply did one bounded step only */
    assert_int_equal(st_eager.n_trim_pending, 0);
    assert_true(st.n_versions > st_eager.n_versions);
    assert_same_state(kv, eager);
    assert_get(kv, "k000001", rev, "new", 3, 2 + n_keys + 1, 2, 0);
    assert_get(kv, "k009999", rev, "new", 2 + 9999, 2 + n_keys + 9999, 2, 0);
    assert_int_equal(get_err(kv, "k000001", rev - 1), KV_ECOMPACTED);
    assert_missing(kv, "k000001", 0);

    /* later applies drain the backlog */
    int applies = 0;
    while (kv_compact_step(kv, 0) > 0) {
        assert_int_equal(put(kv, "x", "y", 0), 0);
        assert_int_equal(put(eager, "x", "y", 0), 0);
        applies++;
    }
    assert_true(applies >= 1);
    kv_stats(kv, &st);
    kv_stats(eager, &st_eager);
    assert_int_equal(st.n_versions, st_eager.n_versions);
    assert_int_equal(st.n_keys_indexed, st_eager.n_keys_indexed);
    assert_same_state(kv, eager);

    /* compacting past the delete frees the deleted keys entirely */
    assert_int_equal(compact(kv, kv_revision(kv)), 0);
    while (kv_compact_step(kv, 0) > 0) {
        assert_int_equal(get_err(kv, "x", 0), 0);
        struct kv_range_req rr = {.key = B("x"), .key_len = 1};
        uint8_t *buf;
        size_t n;
        assert_int_equal(kvcmd_encode_range(&rr, &buf, &n), 0);
        assert_int_equal(apply_enc(kv, 0, buf, n, NULL), 0); /* a read-only apply steps too */
    }
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_indexed, 1);
    assert_int_equal(st.n_versions, 1);
    assert_int_equal(st.n_keys_live, 1);
    kv_free(kv);
    kv_free(eager);
}

/* ---- transactions -------------------------------------------------------- */

static bool cmp_holds(struct kv *kv, uint8_t target, uint8_t op, const char *key, int64_t number,
                      const char *value)
{
    struct kv_compare c = {
        .target = target, .op = op, .key = B(key), .key_len = L(key), .number = number};
    if (value != NULL) {
        c.value = B(value);
        c.value_len = L(value);
    }
    struct kv_txn_req t = {.compares = &c, .n_compares = 1};
    struct kv_result res;
    int64_t rev = kv_revision(kv);
    assert_int_equal(txn(kv, &t, &res), 0);
    assert_int_equal(res.revision, rev); /* no ops: no change */
    bool held = res.succeeded;
    kv_result_free(&res);
    return held;
}

static void test_txn_compare_each_target(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "k", "m", 7), 0);     /* r2 */
    assert_int_equal(put(kv, "other", "o", 0), 0); /* r3 */
    assert_int_equal(put(kv, "k", "m", 7), 0);     /* r4: version 2, create 2, mod 4 */
    const struct {
        uint8_t target;
        int64_t actual;
    } nums[] = {{KV_CMP_VERSION, 2}, {KV_CMP_CREATE, 2}, {KV_CMP_MOD, 4}, {KV_CMP_LEASE, 7}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        for (int64_t d = -1; d <= 1; d++) {
            int64_t x = nums[i].actual + d; /* operand below, equal, above */
            assert_int_equal(cmp_holds(kv, nums[i].target, KV_CMP_EQUAL, "k", x, NULL), d == 0);
            assert_int_equal(cmp_holds(kv, nums[i].target, KV_CMP_NOT_EQUAL, "k", x, NULL), d != 0);
            assert_int_equal(cmp_holds(kv, nums[i].target, KV_CMP_LESS, "k", x, NULL), d > 0);
            assert_int_equal(cmp_holds(kv, nums[i].target, KV_CMP_GREATER, "k", x, NULL), d < 0);
        }
    }
    /* values compare as bytes: "l" < "m" < "ma" < "n" */
    assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_EQUAL, "k", 0, "m"));
    assert_false(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_EQUAL, "k", 0, "ma"));
    assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_NOT_EQUAL, "k", 0, "ma"));
    assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_LESS, "k", 0, "ma"));
    assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_LESS, "k", 0, "n"));
    assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_GREATER, "k", 0, "l"));
    assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_GREATER, "k", 0, ""));
    assert_false(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_GREATER, "k", 0, "m"));

    /* a missing key: version/create/mod/lease are 0, and any value compare fails */
    del(kv, "other");
    const char *missing[] = {"nope", "other"};
    for (int m = 0; m < 2; m++) {
        const char *key = missing[m];
        for (int t = KV_CMP_VERSION; t <= KV_CMP_LEASE; t++) {
            if (t == KV_CMP_VALUE) {
                continue;
            }
            assert_true(cmp_holds(kv, (uint8_t)t, KV_CMP_EQUAL, key, 0, NULL));
            assert_true(cmp_holds(kv, (uint8_t)t, KV_CMP_LESS, key, 1, NULL));
            assert_false(cmp_holds(kv, (uint8_t)t, KV_CMP_GREATER, key, 0, NULL));
        }
        for (int op = KV_CMP_EQUAL; op <= KV_CMP_GREATER; op++) {
            assert_false(cmp_holds(kv, KV_CMP_VALUE, (uint8_t)op, key, 0, ""));
            assert_false(cmp_holds(kv, KV_CMP_VALUE, (uint8_t)op, key, 0, "z"));
        }
    }
    kv_free(kv);
}

static void test_txn_ops(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "x", "1", 0), 0);   /* r2 */
    assert_int_equal(put(kv, "del", "d", 0), 0); /* r3 */

    struct kv_compare cmp = {.target = KV_CMP_VALUE,
                             .op = KV_CMP_EQUAL,
                             .key = B("x"),
                             .key_len = 1,
                             .value = B("1"),
                             .value_len = 1};
    struct kv_op ok_ops[4], fail_ops[1];
    memset(ok_ops, 0, sizeof ok_ops);
    memset(fail_ops, 0, sizeof fail_ops);
    ok_ops[0].type = KV_OP_PUT;
    ok_ops[0].put = (struct kv_put_req){
        .key = B("x"), .key_len = 1, .value = B("2"), .value_len = 1, .prev_kv = true};
    ok_ops[1].type = KV_OP_PUT;
    ok_ops[1].put =
        (struct kv_put_req){.key = B("y"), .key_len = 1, .value = B("Y"), .value_len = 1};
    ok_ops[2].type = KV_OP_RANGE; /* sees the writes above */
    ok_ops[2].range =
        (struct kv_range_req){.key = B("x"), .key_len = 1, .range_end = B("z"), .range_end_len = 1};
    ok_ops[3].type = KV_OP_DELETE;
    ok_ops[3].del = (struct kv_delete_req){.key = B("del"), .key_len = 3, .prev_kv = true};
    fail_ops[0].type = KV_OP_PUT;
    fail_ops[0].put =
        (struct kv_put_req){.key = B("failed"), .key_len = 6, .value = B("f"), .value_len = 1};
    struct kv_txn_req t = {.compares = &cmp,
                           .n_compares = 1,
                           .success = ok_ops,
                           .n_success = 4,
                           .failure = fail_ops,
                           .n_failure = 1};
    struct kv_result res;
    assert_int_equal(txn(kv, &t, &res), 0);
    assert_true(res.succeeded);
    assert_int_equal(res.type, KV_CMD_TXN);
    assert_int_equal(res.revision, 4); /* one revision for the whole txn */
    assert_int_equal(res.n_responses, 4);
    assert_true(res.responses[0].put.has_prev);
    assert_kv_is(&res.responses[0].put.prev_kv, "x", "1");
    assert_int_equal(res.responses[2].range.count, 2);
    assert_kv_is(&res.responses[2].range.kvs[0], "x", "2");
    assert_kv_is(&res.responses[2].range.kvs[1], "y", "Y");
    assert_int_equal(res.responses[2].range.kvs[1].mod_revision, 4);
    assert_int_equal(res.responses[3].del.n_deleted, 1);
    assert_int_equal(res.n_events, 3);
    assert_int_equal(res.events[0].type, KV_EVENT_PUT);
    assert_kv_is(&res.events[0].kv, "x", "2");
    assert_kv_is(&res.events[1].kv, "y", "Y");
    assert_int_equal(res.events[2].type, KV_EVENT_DELETE);
    assert_kv_is(&res.events[2].kv, "del", NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res.events[i].kv.mod_revision, 4);
    }
    kv_result_free(&res);
    assert_get(kv, "x", 0, "2", 2, 4, 2, 0);
    assert_missing(kv, "del", 0);

    /* now the compare fails: the failure branch runs */
    assert_int_equal(txn(kv, &t, &res), 0);
    assert_false(res.succeeded);
    assert_int_equal(res.n_responses, 1);
    assert_int_equal(res.revision, 5);
    kv_result_free(&res);
    assert_get(kv, "failed", 0, "f", 5, 5, 1, 0);
    assert_get(kv, "x", 0, "2", 2, 4, 2, 0);

    /* a read-only txn keeps the revision */
    t = (struct kv_txn_req){.success = ok_ops + 2, .n_success = 1};
    assert_int_equal(txn(kv, &t, &res), 0);
    assert_int_equal(res.revision, 5);
    assert_int_equal(res.n_events, 0);
    kv_result_free(&res);

    /* prechecks make a txn all or nothing: a put, then a range at a future revision */
    uint64_t before = kv_digest(kv);
    struct kv_op bad[2];
    memset(bad, 0, sizeof bad);
    bad[0] = ok_ops[1];
    bad[1].type = KV_OP_RANGE;
    bad[1].range = (struct kv_range_req){.key = B("x"), .key_len = 1, .revision = 99};
    t = (struct kv_txn_req){.success = bad, .n_success = 2};
    assert_int_equal(txn(kv, &t, &res), KV_EFUTUREREV);
    assert_int_equal(res.err, KV_EFUTUREREV);
    assert_int_equal(res.n_responses, 0);
    assert_int_equal(res.n_events, 0);
    assert_int_equal(res.revision, 5);
    kv_result_free(&res);
    assert_int_equal(kv_digest(kv), before);
    /* ignore_value on a missing key */
    bad[1].type = KV_OP_PUT;
    bad[1].put = (struct kv_put_req){.key = B("missing"), .key_len = 7, .ignore_value = true};
    assert_int_equal(txn(kv, &t, &res), KV_EKEYNOTFOUND);
    kv_result_free(&res);
    assert_int_equal(kv_digest(kv), before);
    /* a range at a compacted revision */
    assert_int_equal(compact(kv, 4), 0);
    before = kv_digest(kv);
    bad[1].type = KV_OP_RANGE;
    bad[1].range = (struct kv_range_req){.key = B("x"), .key_len = 1, .revision = 3};
    assert_int_equal(txn(kv, &t, &res), KV_ECOMPACTED);
    kv_result_free(&res);
    assert_int_equal(kv_digest(kv), before);
    kv_free(kv);
}

static void test_put_ignore_value_and_lease(void **state)
{
    struct kv *kv = kv_make();
    struct kv_put_req req = {.key = B("k"), .key_len = 1, .ignore_value = true};
    assert_int_equal(put_req(kv, &req, NULL), KV_EKEYNOTFOUND);
    assert_int_equal(kv_revision(kv), 1);
    assert_int_equal(put(kv, "k", "val", 5), 0);
    req.lease = 6;
    assert_int_equal(put_req(kv, &req, NULL), 0); /* new lease, same value */
    assert_get(kv, "k", 0, "val", 2, 3, 2, 6);
    assert_int_equal(kv_lease_key_count(kv, 5), 0);
    assert_int_equal(kv_lease_key_count(kv, 6), 1);
    req = (struct kv_put_req){
        .key = B("k"), .key_len = 1, .value = B("new"), .value_len = 3, .ignore_lease = true};
    assert_int_equal(put_req(kv, &req, NULL), 0); /* new value, same lease */
    assert_get(kv, "k", 0, "new", 2, 4, 3, 6);
    del(kv, "k");
    req = (struct kv_put_req){.key = B("k"), .key_len = 1, .ignore_lease = true};
    assert_int_equal(put_req(kv, &req, NULL), KV_EKEYNOTFOUND);
    kv_free(kv);
}

static void test_delete_range_by_prefix(void **state)
{
    struct kv *kv = kv_make();
    const char *keys[] = {"app/a", "app/b", "app/c/d", "apple", "ap", "b"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(put(kv, keys[i], keys[i], 0), 0);
    }
    struct kv_result res;
    struct kv_delete_req d = {.key = B("app/"), .key_len = 4, .prefix = true, .prev_kv = true};
    assert_int_equal(del_req(kv, &d, &res), 0);
    assert_int_equal(res.revision, 8);
    assert_int_equal(res.responses[0].del.n_deleted, 3);
    assert_int_equal(res.responses[0].del.n_prev_kvs, 3);
    assert_kv_is(&res.responses[0].del.prev_kvs[0], "app/a", "app/a");
    assert_kv_is(&res.responses[0].del.prev_kvs[2], "app/c/d", "app/c/d");
    assert_int_equal(res.n_events, 3);
    assert_kv_is(&res.events[1].kv, "app/b", NULL);
    kv_result_free(&res);
    assert_missing(kv, "app/b", 0);
    assert_get(kv, "apple", 0, "apple", 5, 5, 1, 0);

    /* [ap, apple) takes "ap" only */
    d = (struct kv_delete_req){
        .key = B("ap"), .key_len = 2, .range_end = B("apple"), .range_end_len = 5};
    assert_int_equal(del_req(kv, &d, &res), 0);
    assert_int_equal(res.responses[0].del.n_deleted, 1);
    assert_int_equal(res.responses[0].del.n_prev_kvs, 0); /* not asked for */
    kv_result_free(&res);
    assert_get(kv, "apple", 0, "apple", 5, 5, 1, 0);

    /* everything */
    d = (struct kv_delete_req){.prefix = true};
    assert_int_equal(del_req(kv, &d, &res), 0);
    assert_int_equal(res.responses[0].del.n_deleted, 2);
    kv_result_free(&res);
    struct kv_stats st;
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_live, 0);
    kv_free(kv);
}

/* ==== leases ============================================================== */

static void test_delete_by_lease(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "z", "1", 5), 0);
    assert_int_equal(put(kv, "a", "2", 5), 0);
    assert_int_equal(put(kv, "m", "3", 5), 0);
    assert_int_equal(put(kv, "other", "4", 6), 0);
    assert_int_equal(put(kv, "moved", "5", 5), 0);
    assert_int_equal(put(kv, "moved", "5", 0), 0); /* detached from lease 5 */
    assert_int_equal(put(kv, "gone", "6", 5), 0);
    assert_int_equal(del(kv, "gone"), 0);
    assert_int_equal(kv_lease_key_count(kv, 5), 3);
    assert_int_equal(kv_lease_key_count(kv, 6), 1);
    int64_t rev = kv_revision(kv);

    struct kv_result res;
    assert_int_equal(kv_delete_by_lease(kv, 5, true, &res), 0);
    assert_int_equal(res.revision, rev + 1);
    assert_int_equal(res.type, KV_CMD_DELETE_RANGE);
    assert_int_equal(res.responses[0].del.n_deleted, 3);
    assert_int_equal(res.n_events, 3);
    /* key order, one revision */
    assert_kv_is(&res.events[0].kv, "a", NULL);
    assert_kv_is(&res.events[1].kv, "m", NULL);
    assert_kv_is(&res.events[2].kv, "z", NULL);
    assert_kv_is(&res.events[2].prev_kv, "z", "1");
    assert_int_equal(res.events[2].prev_kv.lease, 5);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res.events[i].type, KV_EVENT_DELETE);
        assert_int_equal(res.events[i].kv.mod_revision, rev + 1);
    }
    kv_result_free(&res);
    assert_int_equal(kv_lease_key_count(kv, 5), 0);
    assert_missing(kv, "a", 0);
    assert_get(kv, "moved", 0, "5", rev - 3, rev - 2, 2, 0);
    assert_get(kv, "other", 0, "4", 5, 5, 1, 6);

    /* nothing left: no revision */
    assert_int_equal(kv_delete_by_lease(kv, 5, false, &res), 0);
    assert_int_equal(res.revision, rev + 1);
    assert_int_equal(res.responses[0].del.n_deleted, 0);
    kv_result_free(&res);
    assert_int_equal(kv_delete_by_lease(kv, 0, false, &res), KV_EINVAL);
    kv_result_free(&res);
    assert_int_equal(kv_delete_by_lease(kv, -4, false, &res), KV_EINVAL);
    kv_result_free(&res);

    /* leases survive a snapshot */
    struct kv *copy = snapshot_copy(kv);
    assert_int_equal(kv_lease_key_count(copy, 6), 1);
    assert_int_equal(kv_delete_by_lease(copy, 6, false, &res), 0);
    assert_int_equal(res.responses[0].del.n_deleted, 1);
    kv_result_free(&res);
    kv_free(copy);
    kv_free(kv);
}

/* ==== limits ============================================================== */

/* A PUT built by hand, so limits the encoder refuses still reach kv_apply. */
static size_t raw_put(uint8_t *out, uint32_t key_len, uint32_t value_len)
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
    memset(out + o, 'k', key_len);
    o += key_len;
    for (int i = 0; i < 4; i++) {
        out[o++] = (uint8_t)(value_len >> (8 * i));
    }
    memset(out + o, 'v', value_len);
    return o + value_len;
}

static void test_limits_are_named_errors(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "seed", "s", 0), 0);
    uint64_t before = kv_digest(kv);
    uint8_t *raw = malloc((size_t)KV_CMD_BYTES_MAX + 16);
    struct kv_result res;

    size_t n = raw_put(raw, KV_KEY_BYTES_MAX + 1, 1);
    assert_int_equal(kv_apply(kv, raw, n, &res), KV_EKEYTOOBIG);
    assert_int_equal(res.err, KV_EKEYTOOBIG);
    assert_int_equal(res.type, KV_CMD_PUT);
    assert_int_equal(res.revision, 2);
    kv_result_free(&res);
    n = raw_put(raw, 1, KV_VALUE_BYTES_MAX + 1);
    assert_int_equal(kv_apply(kv, raw, n, &res), KV_EVALUETOOBIG);
    kv_result_free(&res);
    n = raw_put(raw, 0, 1);
    assert_int_equal(kv_apply(kv, raw, n, &res), KV_EKEYEMPTY);
    kv_result_free(&res);
    assert_int_equal(kv_apply(kv, raw, (size_t)KV_CMD_BYTES_MAX + 1, &res), KV_ECMDTOOBIG);
    kv_result_free(&res);
    assert_int_equal(kv_digest(kv), before);

    /* the largest key and value are accepted */
    n = raw_put(raw, KV_KEY_BYTES_MAX, KV_VALUE_BYTES_MAX);
    assert_int_equal(kv_apply(kv, raw, n, &res), 0);
    assert_int_equal(res.events[0].kv.value_len, KV_VALUE_BYTES_MAX);
    kv_result_free(&res);

    /* too many txn ops, hand-built: RANGE ops on key "r" */
    size_t o = 0;
    raw[o++] = KVCMD_FORMAT_VERSION;
    raw[o++] = KV_CMD_TXN;
    const uint8_t txn_hdr[] = {0, 0, (uint8_t)(KV_TXN_OPS_MAX + 1), 0, 0, 0};
    memcpy(raw + o, txn_hdr, sizeof txn_hdr);
    o += sizeof txn_hdr;
    uint8_t range_op[64];
    size_t op_len = 0;
    range_op[op_len++] = KV_OP_RANGE;
    range_op[op_len++] = 0;           /* flags */
    memset(range_op + op_len, 0, 16); /* limit, revision */
    op_len += 16;
    const uint8_t key_r[] = {1, 0, 0, 0, 'r', 0, 0, 0, 0}; /* key "r", no range_end */
    memcpy(range_op + op_len, key_r, sizeof key_r);
    op_len += sizeof key_r;
    for (uint32_t i = 0; i < KV_TXN_OPS_MAX + 1; i++) {
        memcpy(raw + o, range_op, op_len);
        o += op_len;
    }
    before = kv_digest(kv);
    assert_int_equal(kv_apply(kv, raw, o, &res), KV_ETXNOPS);
    assert_int_equal(res.type, KV_CMD_TXN);
    kv_result_free(&res);
    raw[4] = (uint8_t)KV_TXN_OPS_MAX;
    assert_int_equal(kv_apply(kv, raw, o, &res), KV_EMALFORMED); /* one op left over */
    kv_result_free(&res);
    o -= op_len;
    assert_int_equal(kv_apply(kv, raw, o, &res), 0);
    assert_int_equal(res.n_responses, KV_TXN_OPS_MAX);
    kv_result_free(&res);

    /* duplicate keys in a txn, hand-built: put a twice */
    o = 0;
    raw[o++] = KVCMD_FORMAT_VERSION;
    raw[o++] = KV_CMD_TXN;
    const uint8_t hdr[] = {0, 0, 2, 0, 0, 0};
    memcpy(raw + o, hdr, sizeof hdr);
    o += sizeof hdr;
    for (int i = 0; i < 2; i++) {
        const uint8_t op[] = {KV_OP_PUT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'a', 0, 0, 0, 0};
        memcpy(raw + o, op, sizeof op);
        o += sizeof op;
    }
    assert_int_equal(kv_apply(kv, raw, o, &res), KV_ETXNDUPKEY);
    kv_result_free(&res);
    assert_int_equal(kv_digest(kv), before);
    free(raw);
    kv_free(kv);
}

/* ==== snapshots =========================================================== */

/* A store with history, leases, deletes and a compaction. */
static struct kv *build_sample_store(void)
{
    struct kv *kv = kv_make();
    char key[16], val[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "key%02d", i % 7);
        snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(put(kv, key, val, i % 3), 0);
        if (i % 5 == 4) {
            assert_int_equal(del(kv, key), 0);
        }
    }
    assert_int_equal(compact(kv, kv_revision(kv) - 6), 0);
    struct kv_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].type = KV_OP_PUT;
    ops[0].put = (struct kv_put_req){
        .key = B("t1"), .key_len = 2, .value = B("x"), .value_len = 1, .lease = 4};
    ops[1].type = KV_OP_DELETE;
    ops[1].del = (struct kv_delete_req){.key = B("key01"), .key_len = 5};
    struct kv_txn_req t = {.success = ops, .n_success = 2};
    assert_int_equal(txn(kv, &t, NULL), 0);
    assert_int_equal(put(kv, "\xff\x00", "bin", 0), 0);
    return kv;
}

static void test_snapshot_round_trip(void **state)
{
    struct kv *kv = build_sample_store();
    struct kv *copy = snapshot_copy(kv);
    assert_same_state(kv, copy);
    assert_int_equal(kv_lease_key_count(copy, 4), kv_lease_key_count(kv, 4));
    assert_int_equal(kv_lease_key_count(copy, 1), kv_lease_key_count(kv, 1));

    /* every readable revision reads the same */
    for (int64_t rev = kv_compacted_revision(kv); rev <= kv_revision(kv); rev++) {
        struct kv_range_req req = {.prefix = true, .revision = rev};
        struct kv_range_resp a, b;
        assert_int_equal(kv_range(kv, &req, &a), 0);
        assert_int_equal(kv_range(copy, &req, &b), 0);
        assert_int_equal(a.count, b.count);
        for (uint32_t i = 0; i < a.n_kvs; i++) {
            assert_int_equal(a.kvs[i].key_len, b.kvs[i].key_len);
            assert_memory_equal(a.kvs[i].key, b.kvs[i].key, a.kvs[i].key_len);
            assert_int_equal(a.kvs[i].mod_revision, b.kvs[i].mod_revision);
            assert_int_equal(a.kvs[i].version, b.kvs[i].version);
        }
        kv_range_resp_free(&a);
        kv_range_resp_free(&b);
    }
    /* both continue identically */
    assert_int_equal(put(kv, "key03", "after", 2), 0);
    assert_int_equal(put(copy, "key03", "after", 2), 0);
    assert_int_equal(compact(kv, kv_revision(kv)), 0);
    assert_int_equal(compact(copy, kv_revision(copy)), 0);
    assert_same_state(kv, copy);
    kv_free(copy);
    kv_free(kv);
}

static void test_snapshot_corruption_detected(void **state)
{
    struct kv *kv = build_sample_store();
    uint64_t digest = kv_digest(kv);
    uint8_t *buf;
    size_t n;
    assert_int_equal(kv_snapshot_encode(kv, &buf, &n), 0);
    struct kv *out;

    /* every byte flipped (all bits, then the low bit) */
    for (size_t i = 0; i < n; i++) {
        const uint8_t masks[] = {0xff, 0x01};
        for (int m = 0; m < 2; m++) {
            buf[i] ^= masks[m];
            int rv = kv_snapshot_decode(buf, n, &out);
            assert_int_equal(rv, KV_ECORRUPT);
            assert_null(out);
            buf[i] ^= masks[m];
        }
    }
    /* every truncation, and an extra byte */
    for (size_t cut = 0; cut < n; cut++) {
        assert_int_equal(kv_snapshot_decode(buf, cut, &out), KV_ECORRUPT);
    }
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0;
    assert_int_equal(kv_snapshot_decode(longer, n + 1, &out), KV_ECORRUPT);
    free(longer);
    assert_int_equal(kv_snapshot_decode(NULL, 0, &out), KV_ECORRUPT);

    /* unchanged bytes still decode to the same store */
    assert_int_equal(kv_snapshot_decode(buf, n, &out), 0);
    assert_int_equal(kv_digest(out), digest);
    kv_free(out);
    free(buf);
    kv_free(kv);
}

/* Fixes the CRC after a change, so the consistency checks behind it get exercised. */
static void refresh_crc(uint8_t *buf, size_t n)
{
    uint32_t crc = crc32c(0, buf, n - 4);
    for (int i = 0; i < 4; i++) {
        buf[n - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
}

static void test_snapshot_semantic_checks(void **state)
{
    struct kv *kv = build_sample_store();
    uint8_t *buf;
    size_t n;
    assert_int_equal(kv_snapshot_encode(kv, &buf, &n), 0);
    struct kv *out;
    int n_accepted = 0, n_rejected = 0;
    /* with a valid CRC every flip is either rejected or yields a consistent store */
    for (size_t i = 0; i < n - 4; i++) {
        const uint8_t masks[] = {0xff, 0x01, 0x80};
        for (int m = 0; m < 3; m++) {
            buf[i] ^= masks[m];
            refresh_crc(buf, n);
            int rv = kv_snapshot_decode(buf, n, &out);
            if (rv == 0) {
                n_accepted++;
                /* a consistent store: it re-encodes to these very bytes and works */
                uint8_t *again;
                size_t n_again;
                assert_int_equal(kv_snapshot_encode(out, &again, &n_again), 0);
                assert_int_equal(n_again, n);
                assert_memory_equal(again, buf, n);
                free(again);
                struct kv_range_req req = {.prefix = true};
                struct kv_range_resp resp;
                assert_int_equal(kv_range(out, &req, &resp), 0);
                kv_range_resp_free(&resp);
                assert_int_equal(put(out, "key03", "z", 1), 0);
                assert_int_equal(compact(out, kv_revision(out)), 0);
                kv_free(out);
            } else {
                n_rejected++;
                assert_true(rv == KV_ECORRUPT || rv == KV_EFORMAT);
                assert_null(out);
            }
            buf[i] ^= masks[m];
        }
    }
    refresh_crc(buf, n);
    assert_true(n_accepted > 0); /* e.g. value bytes */
    assert_true(n_rejected > 0);
    /* a bumped revision (with no change behind it) is caught */
    uint8_t *copy = malloc(n);
    memcpy(copy, buf, n);
    copy[8]++;
    refresh_crc(copy, n);
    assert_int_equal(kv_snapshot_decode(copy, n, &out), KV_ECORRUPT);
    /* an unknown format version */
    memcpy(copy, buf, n);
    copy[4] = 2;
    refresh_crc(copy, n);
    assert_int_equal(kv_snapshot_decode(copy, n, &out), KV_EFORMAT);
    free(copy);
    free(buf);
    kv_free(kv);
}

/* ==== robustness ========================================================== */

static void test_malformed_commands_change_nothing(void **state)
{
    struct kv *kv = build_sample_store();
    uint64_t digest = kv_digest(kv);
    int64_t rev = kv_revision(kv);
    struct kv_result res;

    /* every prefix of valid commands of each type */
    uint8_t *cmds[5];
    size_t lens[5];
    struct kv_put_req p = {.key = B("new"), .key_len = 3, .value = B("v"), .value_len = 1};
    struct kv_delete_req d = {.key = B("key"), .key_len = 3, .prefix = true};
    struct kv_range_req r = {.key = B("a"), .key_len = 1};
    struct kv_op op = {.type = KV_OP_PUT, .put = p};
    struct kv_compare c = {
        .target = KV_CMP_VERSION, .op = KV_CMP_EQUAL, .key = B("a"), .key_len = 1};
    struct kv_txn_req t = {.compares = &c,
                           .n_compares = 1,
                           .success = &op,
                           .n_success = 1,
                           .failure = &op,
                           .n_failure = 1};
    assert_int_equal(kvcmd_encode_put(&p, &cmds[0], &lens[0]), 0);
    assert_int_equal(kvcmd_encode_delete(&d, &cmds[1], &lens[1]), 0);
    assert_int_equal(kvcmd_encode_range(&r, &cmds[2], &lens[2]), 0);
    assert_int_equal(kvcmd_encode_txn(&t, &cmds[3], &lens[3]), 0);
    assert_int_equal(kvcmd_encode_compact(rev, &cmds[4], &lens[4]), 0);
    for (int i = 0; i < 5; i++) {
        for (size_t cut = 0; cut < lens[i]; cut++) {
            assert_int_equal(kv_apply(kv, cut > 0 ? cmds[i] : NULL, cut, &res), KV_EMALFORMED);
            assert_int_equal(res.revision, rev);
            assert_int_equal(res.n_events, 0);
            kv_result_free(&res);
        }
    }
    assert_int_equal(kv_digest(kv), digest);

    /* random bytes, mostly with a valid header */
    struct prng pr;
    prng_seed(&pr, 99);
    uint8_t buf[96];
    for (int iter = 0; iter < 50000; iter++) {
        size_t n = (size_t)prng_below(&pr, sizeof buf);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)prng_next(&pr);
        }
        if (n >= 2 && prng_chance(&pr, 800000)) {
            buf[0] = KVCMD_FORMAT_VERSION;
            buf[1] = (uint8_t)(1 + prng_below(&pr, 5));
        }
        int rv = kv_apply(kv, buf, n, &res);
        kv_result_free(&res);
        if (rv != 0) {
            assert_int_equal(kv_digest(kv), digest);
        } else {
            digest = kv_digest(kv); /* valid by chance: a real change */
        }
    }
    /* single-bit flips of the valid commands */
    for (int i = 0; i < 5; i++) {
        for (size_t b = 0; b < lens[i] * 8; b++) {
            cmds[i][b / 8] ^= (uint8_t)(1u << (b % 8));
            int rv = kv_apply(kv, cmds[i], lens[i], &res);
            kv_result_free(&res);
            if (rv != 0) {
                assert_int_equal(kv_digest(kv), digest);
            } else {
                digest = kv_digest(kv);
            }
            cmds[i][b / 8] ^= (uint8_t)(1u << (b % 8));
        }
        free(cmds[i]);
    }
    kv_free(kv);
}

/* ==== history ============================================================= */

static void test_history_since(void **state)
{
    struct kv *kv = kv_make();
    assert_int_equal(put(kv, "a", "1", 0), 0); /* r2 */
    assert_int_equal(put(kv, "b", "1", 0), 0); /* r3 */
    assert_int_equal(put(kv, "a", "2", 0), 0); /* r4 */
    struct kv_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].type = KV_OP_PUT;
    ops[0].put = (struct kv_put_req){.key = B("c"), .key_len = 1, .value = B("3"), .value_len = 1};
    ops[1].type = KV_OP_DELETE;
    ops[1].del = (struct kv_delete_req){.key = B("a"), .key_len = 1};
    struct kv_txn_req t = {.success = ops, .n_success = 2};
    assert_int_equal(txn(kv, &t, NULL), 0);    /* r5: put c, delete a */
    assert_int_equal(put(kv, "a", "4", 0), 0); /* r6 */

    /* everything from the start, for every key */
    struct collected c = {.stop_at = -1};
    int64_t next;
    assert_int_equal(kv_history_since(kv, B("\0"), 1, B("\0"), 1, 1, 100, &next, collect_cb, &c),
                     0);
    assert_int_equal(c.n, 6);
    const int64_t revs[] = {2, 3, 4, 5, 5, 6};
    const char *keys[] = {"a", "b", "a", "c", "a", "a"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c.rev[i], revs[i]);
        assert_string_equal(c.key[i], keys[i]);
    }
    assert_int_equal(c.type[4], KV_EVENT_DELETE);
    assert_true(c.has_prev[4]);
    assert_string_equal(c.prev_value[4], "2");
    assert_false(c.has_prev[5]); /* the previous version was the delete */
    assert_true(c.has_prev[2]);
    assert_string_equal(c.prev_value[2], "1");
    assert_int_equal(next, 7);

    /* one key */
    c = (struct collected){.stop_at = -1};
    assert_int_equal(kv_history_since(kv, B("a"), 1, NULL, 0, 3, 100, &next, collect_cb, &c), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.rev[0], 4);

    /* budget 1 stops after each revision, never inside one */
    int64_t from = 1;
    int calls = 0;
    c = (struct collected){.stop_at = -1};
    while (from <= kv_revision(kv)) {
        int before = c.n;
        assert_int_equal(
            kv_history_since(kv, B("\0"), 1, B("\0"), 1, from, 1, &next, collect_cb, &c), 0);
        assert_true(next > from);
        if (c.n > before) {
            assert_int_equal(c.rev[c.n - 1], next - 1);
        }
        from = next;
        calls++;
    }
    assert_int_equal(c.n, 6);
    assert_int_equal(calls, 5); /* revisions 2..6; r5 in one call with its 2 events */

    /* the callback can stop the replay */
    c = (struct collected){.stop_at = 2};
    assert_int_equal(kv_history_since(kv, B("\0"), 1, B("\0"), 1, 1, 100, &next, collect_cb, &c),
                     1);
    assert_int_equal(next, 4);

    /* from the future: nothing yet */
    c = (struct collected){.stop_at = -1};
    assert_int_equal(kv_history_since(kv, B("a"), 1, NULL, 0, 10, 100, &next, collect_cb, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(next, 10);
    assert_int_equal(kv_history_since(kv, B("a"), 1, NULL, 0, 0, 100, &next, collect_cb, &c),
                     KV_EINVAL);
    assert_int_equal(kv_history_since(kv, NULL, 0, NULL, 0, 1, 100, &next, collect_cb, &c),
                     KV_EKEYEMPTY);
    kv_free(kv);
}

/* ==== reference model ===================================================== */

/* Keys come from a small universe so random ops collide often. The model keeps every
 * version forever and answers with plain loops; it shares no code with the store. */
#define M_KEYS    40
#define M_VAL_MAX 8
#define M_KEY_MAX 4

struct mver {
    int64_t mod, create, ver, lease;
    uint32_t sub;
    uint8_t val[M_VAL_MAX];
    uint32_t vlen;
};

struct mkey {
    uint8_t k[M_KEY_MAX];
    uint32_t klen;
    struct mver *v;
    uint32_t n, cap;
};

struct model {
    struct mkey keys[M_KEYS]; /* sorted by ref_cmp */
    int64_t rev, compacted;
    int64_t write_rev;
    uint32_t write_sub;
};

static int ref_cmp(const uint8_t *a, uint32_t an, const uint8_t *b, uint32_t bn)
{
    for (uint32_t i = 0; i < an && i < bn; i++) {
        if (a[i] != b[i]) {
            return a[i] < b[i] ? -1 : 1;
        }
    }
    return an == bn ? 0 : (an < bn ? -1 : 1);
}

struct tspan {
    int kind; /* 0 key, 1 [key,end), 2 from key, 3 prefix */
    uint8_t key[M_KEY_MAX];
    uint32_t klen;
    uint8_t end[M_KEY_MAX];
    uint32_t elen;
};

static bool ref_in_span(const struct tspan *s, const uint8_t *k, uint32_t kl)
{
    switch (s->kind) {
    case 0:
        return ref_cmp(k, kl, s->key, s->klen) == 0;
    case 1:
        return ref_cmp(k, kl, s->key, s->klen) >= 0 && ref_cmp(k, kl, s->end, s->elen) < 0;
    case 2:
        return ref_cmp(k, kl, s->key, s->klen) >= 0;
    default:
        return kl >= s->klen && (s->klen == 0 || memcmp(k, s->key, s->klen) == 0);
    }
}

/* The span as request fields. */
static void span_fields(const struct tspan *s, const uint8_t **key, uint32_t *klen,
                        const uint8_t **end, uint32_t *elen, bool *prefix)
{
    *key = s->key;
    *klen = s->klen;
    *end = NULL;
    *elen = 0;
    *prefix = s->kind == 3;
    if (s->kind == 1) {
        *end = s->end;
        *elen = s->elen;
    } else if (s->kind == 2) {
        *end = B("\0");
        *elen = 1;
    }
}

static const uint8_t ALPHABET[] = {0x00, 'a', 'b', 0xff};

static void rand_bytes(struct prng *p, uint8_t *out, uint32_t *len, uint32_t min, uint32_t max)
{
    *len = min + (uint32_t)prng_below(p, max - min + 1);
    for (uint32_t i = 0; i < *len; i++) {
        out[i] = ALPHABET[prng_below(p, sizeof ALPHABET)];
    }
}

static void model_init(struct model *m, struct prng *p)
{
    memset(m, 0, sizeof *m);
    m->rev = 1;
    int n = 0;
    while (n < M_KEYS) {
        struct mkey k = {0};
        rand_bytes(p, k.k, &k.klen, 1, M_KEY_MAX);
        bool dup = false;
        for (int i = 0; i < n; i++) {
            dup |= ref_cmp(m->keys[i].k, m->keys[i].klen, k.k, k.klen) == 0;
        }
        if (dup) {
            continue;
        }
        /* insertion sort */
        int j = n++;
        while (j > 0 && ref_cmp(m->keys[j - 1].k, m->keys[j - 1].klen, k.k, k.klen) > 0) {
            m->keys[j] = m->keys[j - 1];
            j--;
        }
        m->keys[j] = k;
    }
}

static void model_free(struct model *m)
{
    for (int i = 0; i < M_KEYS; i++) {
        free(m->keys[i].v);
    }
}

static struct mver *m_latest_live(struct mkey *k)
{
    if (k->n == 0 || k->v[k->n - 1].ver == 0) {
        return NULL;
    }
    return &k->v[k->n - 1];
}

static const struct mver *m_visible(const struct mkey *k, int64_t rev)
{
    const struct mver *best = NULL;
    for (uint32_t i = 0; i < k->n; i++) {
        if (k->v[i].mod <= rev) {
            best = &k->v[i];
        }
    }
    return (best != NULL && best->ver != 0) ? best : NULL;
}

static void m_append(struct model *m, struct mkey *k, const struct mver *v)
{
    if (k->n == k->cap) {
        k->cap = k->cap == 0 ? 4 : k->cap * 2;
        k->v = realloc(k->v, k->cap * sizeof *k->v);
        assert_non_null(k->v);
    }
    k->v[k->n++] = *v;
}

static int m_find(const struct model *m, const uint8_t *key, uint32_t klen)
{
    for (int i = 0; i < M_KEYS; i++) {
        if (ref_cmp(m->keys[i].k, m->keys[i].klen, key, klen) == 0) {
            return i;
        }
    }
    return -1;
}

/* An expected event. */
struct mev {
    uint8_t type;
    int key;
    struct mver v;
    bool has_prev;
    struct mver prev;
};

struct mevents {
    struct mev ev[M_KEYS * 8 + 16];
    int n;
};

static void assert_kv_matches(const struct kv_kv *kv, const struct mkey *k, const struct mver *v,
                              bool with_value)
{
    assert_int_equal(ref_cmp(kv->key, kv->key_len, k->k, k->klen), 0);
    assert_int_equal(kv->mod_revision, v->mod);
    assert_int_equal(kv->create_revision, v->create);
    assert_int_equal(kv->version, v->ver);
    assert_int_equal(kv->lease, v->lease);
    if (with_value) {
        assert_int_equal(ref_cmp(kv->value, kv->value_len, v->val, v->vlen), 0);
    } else {
        assert_int_equal(kv->value_len, 0);
    }
}

static void m_put(struct model *m, int ki, const struct kv_put_req *req, struct mevents *evs)
{
    struct mkey *k = &m->keys[ki];
    struct mver *prev = m_latest_live(k);
    struct mver v = {.mod = m->write_rev, .sub = m->write_sub++};
    v.create = prev != NULL ? prev->create : m->write_rev;
    v.ver = prev != NULL ? prev->ver + 1 : 1;
    v.lease = req->ignore_lease ? prev->lease : req->lease;
    if (req->ignore_value) {
        memcpy(v.val, prev->val, prev->vlen);
        v.vlen = prev->vlen;
    } else {
        memcpy(v.val, req->value, req->value_len);
        v.vlen = req->value_len;
    }
    struct mev *e = &evs->ev[evs->n++];
    *e = (struct mev){.type = KV_EVENT_PUT, .key = ki, .v = v};
    if (prev != NULL && req->prev_kv) {
        e->has_prev = true;
        e->prev = *prev;
    }
    m_append(m, k, &v);
}

static void m_delete_key(struct model *m, int ki, bool want_prev, struct mevents *evs)
{
    struct mkey *k = &m->keys[ki];
    struct mver *prev = m_latest_live(k);
    struct mver v = {.mod = m->write_rev, .sub = m->write_sub++};
    struct mev *e = &evs->ev[evs->n++];
    *e = (struct mev){.type = KV_EVENT_DELETE, .key = ki, .v = v};
    if (want_prev) {
        e->has_prev = true;
        e->prev = *prev;
    }
    m_append(m, k, &v);
}

/* ==== random runs ========================================================= */

/* One random request, with the model's expectations, applied to several stores. */
struct run {
    struct prng p;
    struct model m;
    struct kv *stores[3];
    kv_test_hash_fn hash[3]; /* test hash of each store, NULL = the seeded one */
    int n_stores;
    bool use_model;
    uint64_t n_checks;
};

static void rand_span(struct run *r, struct tspan *s, bool allow_prefix)
{
    memset(s, 0, sizeof *s);
    s->kind = (int)prng_below(&r->p, allow_prefix ? 4 : 3);
    if (s->kind == 0 && prng_chance(&r->p, 800000)) {
        const struct mkey *k = &r->m.keys[prng_below(&r->p, M_KEYS)];
        memcpy(s->key, k->k, k->klen);
        s->klen = k->klen;
    } else {
        rand_bytes(&r->p, s->key, &s->klen, s->kind == 3 ? 0 : 1, s->kind == 3 ? 2 : M_KEY_MAX);
    }
    if (s->kind == 1) {
        do {
            rand_bytes(&r->p, s->end, &s->elen, 1, M_KEY_MAX);
        } while (s->elen == 1 && s->end[0] == 0); /* "\0" means kind 2 */
    }
}

static void rand_put(struct run *r, struct kv_put_req *req, uint8_t *val)
{
    const struct mkey *k = &r->m.keys[prng_below(&r->p, M_KEYS)];
    uint32_t vlen;
    rand_bytes(&r->p, val, &vlen, 0, M_VAL_MAX);
    /* One draw per statement: the order of evaluation inside an initializer is
     * unspecified, and a seed must give the same ops with every compiler. */
    int64_t lease = (int64_t)prng_below(&r->p, 4);
    bool prev_kv = prng_chance(&r->p, 500000);
    *req = (struct kv_put_req){.key = k->k,
                               .key_len = k->klen,
                               .value = val,
                               .value_len = vlen,
                               .lease = lease,
                               .prev_kv = prev_kv};
    if (prng_chance(&r->p, 100000)) {
        req->ignore_value = true;
        req->value_len = 0;
    }
    if (prng_chance(&r->p, 100000)) {
        req->ignore_lease = true;
        req->lease = 0;
    }
}

static void rand_range(struct run *r, struct kv_range_req *req, struct tspan *s)
{
    rand_span(r, s, true);
    bool prefix;
    span_fields(s, &req->key, &req->key_len, &req->range_end, &req->range_end_len, &prefix);
    req->prefix = prefix;
    req->limit = (int64_t)prng_below(&r->p, 6);
    req->revision = 0;
    if (prng_chance(&r->p, 400000)) {
        int64_t lo = r->m.compacted - 2, hi = r->m.rev + 2;
        req->revision = lo + (int64_t)prng_below(&r->p, (uint64_t)(hi - lo + 1));
    }
    req->keys_only = prng_chance(&r->p, 200000);
    req->count_only = prng_chance(&r->p, 100000);
}

/* The model's answer to a range; read_rev INT64_MAX = newest. */
static void m_check_range(const struct model *m, const struct kv_range_req *req,
                          const struct tspan *s, int64_t read_rev, const struct kv_range_resp *resp)
{
    int64_t limit = req->limit == 0 ? KV_RANGE_LIMIT_MAX : req->limit;
    int64_t count = 0;
    uint32_t taken = 0;
    for (int i = 0; i < M_KEYS; i++) {
        const struct mkey *k = &m->keys[i];
        const struct mver *v = m_visible(k, read_rev);
        if (v == NULL || !ref_in_span(s, k->k, k->klen)) {
            continue;
        }
        count++;
        if (!req->count_only && count <= limit) {
            assert_true(taken < resp->n_kvs);
            assert_kv_matches(&resp->kvs[taken], k, v, !req->keys_only);
            taken++;
        }
    }
    assert_int_equal(resp->count, count);
    assert_int_equal(resp->n_kvs, taken);
    assert_int_equal(resp->more, !req->count_only && taken < count);
}

static int m_check_read_rev(const struct model *m, int64_t rev)
{
    if (rev <= 0) {
        return 0;
    }
    if (rev > m->rev) {
        return KV_EFUTUREREV;
    }
    return rev < m->compacted ? KV_ECOMPACTED : 0;
}

static void check_events(const struct model *m, const struct mevents *evs,
                         const struct kv_result *res)
{
    assert_int_equal(res->n_events, evs->n);
    for (int i = 0; i < evs->n; i++) {
        const struct mev *e = &evs->ev[i];
        const struct kv_event *got = &res->events[i];
        const struct mkey *k = &m->keys[e->key];
        assert_int_equal(got->type, e->type);
        if (e->type == KV_EVENT_PUT) {
            assert_kv_matches(&got->kv, k, &e->v, true);
        } else {
            assert_int_equal(ref_cmp(got->kv.key, got->kv.key_len, k->k, k->klen), 0);
            assert_int_equal(got->kv.mod_revision, e->v.mod);
            assert_int_equal(got->kv.version, 0);
        }
        assert_int_equal(got->has_prev, e->has_prev);
        if (e->has_prev) {
            assert_kv_matches(&got->prev_kv, k, &e->prev, true);
        }
    }
}

/* Applies bytes to every store: all must return byte-identical results. Returns the
 * first store's result in *res (caller frees). */
static int apply_all(struct run *r, const uint8_t *buf, size_t n, struct kv_result *res)
{
    uint8_t *first = NULL;
    size_t first_n = 0;
    int rv0 = 0;
    memset(res, 0, sizeof *res);
    for (int s = 0; s < r->n_stores; s++) {
        struct kv_result local;
        struct kv_result *out = s == 0 ? res : &local;
        int rv = kv_apply(r->stores[s], buf, n, out);
        uint8_t *enc;
        size_t enc_n;
        assert_int_equal(kvcmd_encode_result(out, KVCMD_RESULT_EVENTS, &enc, &enc_n), 0);
        if (s == 0) {
            first = enc;
            first_n = enc_n;
            rv0 = rv;
        } else {
            assert_int_equal(rv, rv0);
            assert_int_equal(enc_n, first_n);
            assert_memory_equal(enc, first, enc_n);
            free(enc);
            kv_result_free(&local);
        }
    }
    free(first);
    return rv0;
}

/* Model-side dup check (etcd checkIntervals), independent of kvcmd.c. */
static bool m_branch_has_dup(const struct kv_op *ops, const struct tspan *spans, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ops[i].type != KV_OP_PUT) {
            continue;
        }
        for (uint32_t j = 0; j < n; j++) {
            if (j == i) {
                continue;
            }
            if (ops[j].type == KV_OP_PUT && ref_cmp(ops[i].put.key, ops[i].put.key_len,
                                                    ops[j].put.key, ops[j].put.key_len) == 0) {
                return true;
            }
            if (ops[j].type == KV_OP_DELETE &&
                ref_in_span(&spans[j], ops[i].put.key, ops[i].put.key_len)) {
                return true;
            }
        }
    }
    return false;
}

static bool m_compare(struct model *m, const struct kv_compare *c)
{
    int ki = m_find(m, c->key, c->key_len);
    const struct mver *v = ki >= 0 ? m_latest_live(&m->keys[ki]) : NULL;
    int d;
    if (c->target == KV_CMP_VALUE) {
        if (v == NULL) {
            return false;
        }
        d = ref_cmp(v->val, v->vlen, c->value, c->value_len);
    } else {
        int64_t x = 0;
        if (v != NULL) {
            x = c->target == KV_CMP_VERSION  ? v->ver
                : c->target == KV_CMP_CREATE ? v->create
                : c->target == KV_CMP_MOD    ? v->mod
                                             : v->lease;
        }
        d = x < c->number ? -1 : (x > c->number ? 1 : 0);
    }
    switch (c->op) {
    case KV_CMP_EQUAL:
        return d == 0;
    case KV_CMP_NOT_EQUAL:
        return d != 0;
    case KV_CMP_LESS:
        return d < 0;
    default:
        return d > 0;
    }
}

static void step_put(struct run *r)
{
    uint8_t val[M_VAL_MAX];
    struct kv_put_req req;
    rand_put(r, &req, val);
    uint8_t *buf;
    size_t n;
    assert_int_equal(kvcmd_encode_put(&req, &buf, &n), 0);
    struct kv_result res;
    int rv = apply_all(r, buf, n, &res);
    free(buf);
    if (r->use_model) {
        struct model *m = &r->m;
        int ki = m_find(m, req.key, req.key_len);
        bool live = m_latest_live(&m->keys[ki]) != NULL;
        if ((req.ignore_value || req.ignore_lease) && !live) {
            assert_int_equal(rv, KV_EKEYNOTFOUND);
        } else {
            assert_int_equal(rv, 0);
            static struct mevents evs;
            evs.n = 0;
            m->write_rev = m->rev + 1;
            m->write_sub = 0;
            struct mver *prev = m_latest_live(&m->keys[ki]);
            struct mver prev_copy = prev != NULL ? *prev : (struct mver){0};
            m_put(m, ki, &req, &evs);
            m->rev++;
            assert_int_equal(res.responses[0].put.has_prev, prev != NULL && req.prev_kv);
            if (res.responses[0].put.has_prev) {
                assert_kv_matches(&res.responses[0].put.prev_kv, &m->keys[ki], &prev_copy, true);
            }
            check_events(m, &evs, &res);
        }
        assert_int_equal(res.revision, m->rev);
    }
    kv_result_free(&res);
}

static void step_delete(struct run *r)
{
    struct tspan s;
    rand_span(r, &s, true);
    struct kv_delete_req req;
    span_fields(&s, &req.key, &req.key_len, &req.range_end, &req.range_end_len, &req.prefix);
    req.prev_kv = prng_chance(&r->p, 500000);
    uint8_t *buf;
    size_t n;
    assert_int_equal(kvcmd_encode_delete(&req, &buf, &n), 0);
    struct kv_result res;
    assert_int_equal(apply_all(r, buf, n, &res), 0);
    free(buf);
    if (r->use_model) {
        struct model *m = &r->m;
        static struct mevents evs;
        evs.n = 0;
        m->write_rev = m->rev + 1;
        m->write_sub = 0;
        int64_t deleted = 0;
        for (int i = 0; i < M_KEYS; i++) {
            struct mkey *k = &m->keys[i];
            if (m_latest_live(k) != NULL && ref_in_span(&s, k->k, k->klen)) {
                assert_true(!req.prev_kv || (uint32_t)deleted < res.responses[0].del.n_prev_kvs);
                if (req.prev_kv) {
                    assert_kv_matches(&res.responses[0].del.prev_kvs[deleted], k, m_latest_live(k),
                                      true);
                }
                m_delete_key(m, i, req.prev_kv, &evs);
                deleted++;
            }
        }
        if (deleted > 0) {
            m->rev++;
        }
        assert_int_equal(res.responses[0].del.n_deleted, deleted);
        assert_int_equal(res.responses[0].del.n_prev_kvs, req.prev_kv ? deleted : 0);
        check_events(m, &evs, &res);
        assert_int_equal(res.revision, m->rev);
    }
    kv_result_free(&res);
}

static void step_range(struct run *r)
{
    struct tspan s;
    struct kv_range_req req = {0};
    rand_range(r, &req, &s);
    /* half through the log (RANGE command), half through kv_range */
    if (prng_chance(&r->p, 500000)) {
        uint8_t *buf;
        size_t n;
        assert_int_equal(kvcmd_encode_range(&req, &buf, &n), 0);
        struct kv_result res;
        int rv = apply_all(r, buf, n, &res);
        free(buf);
        if (r->use_model) {
            assert_int_equal(rv, m_check_read_rev(&r->m, req.revision));
            if (rv == 0) {
                m_check_range(&r->m, &req, &s, req.revision > 0 ? req.revision : INT64_MAX,
                              &res.responses[0].range);
            }
        }
        kv_result_free(&res);
        return;
    }
    for (int st = 0; st < r->n_stores; st++) {
        struct kv_range_resp resp;
        int rv = kv_range(r->stores[st], &req, &resp);
        if (r->use_model) {
            assert_int_equal(rv, m_check_read_rev(&r->m, req.revision));
            if (rv == 0) {
                m_check_range(&r->m, &req, &s, req.revision > 0 ? req.revision : INT64_MAX, &resp);
            }
        }
        kv_range_resp_free(&resp);
    }
}

static void step_txn(struct run *r)
{
    struct kv_compare cmps[4];
    struct kv_op ops[8];
    struct tspan spans[8];
    uint8_t vals[12][M_VAL_MAX];
    memset(ops, 0, sizeof ops);
    uint32_t n_cmp = (uint32_t)prng_below(&r->p, 4);
    uint32_t n_succ = (uint32_t)prng_below(&r->p, 5);
    uint32_t n_fail = (uint32_t)prng_below(&r->p, 4);
    for (uint32_t i = 0; i < n_cmp; i++) {
        const struct mkey *k = &r->m.keys[prng_below(&r->p, M_KEYS)];
        uint8_t target = (uint8_t)(1 + prng_below(&r->p, 5)); /* one draw per statement */
        uint8_t op = (uint8_t)(1 + prng_below(&r->p, 4));
        int64_t number = (int64_t)prng_below(&r->p, 4);
        cmps[i] = (struct kv_compare){
            .target = target, .op = op, .key = k->k, .key_len = k->klen, .number = number};
        if (cmps[i].target == KV_CMP_VALUE) {
            rand_bytes(&r->p, vals[8 + i], &cmps[i].value_len, 0, 2);
            cmps[i].value = vals[8 + i];
        } else if (cmps[i].target == KV_CMP_MOD || cmps[i].target == KV_CMP_CREATE) {
            cmps[i].number = (int64_t)prng_below(&r->p, (uint64_t)r->m.rev + 2);
        }
    }
    for (uint32_t i = 0; i < n_succ + n_fail; i++) {
        int kind = (int)prng_below(&r->p, 3);
        if (kind == 0) {
            ops[i].type = KV_OP_PUT;
            rand_put(r, &ops[i].put, vals[i]);
        } else if (kind == 1) {
            ops[i].type = KV_OP_DELETE;
            rand_span(r, &spans[i], true);
            span_fields(&spans[i], &ops[i].del.key, &ops[i].del.key_len, &ops[i].del.range_end,
                        &ops[i].del.range_end_len, &ops[i].del.prefix);
            ops[i].del.prev_kv = prng_chance(&r->p, 500000);
        } else {
            ops[i].type = KV_OP_RANGE;
            rand_range(r, &ops[i].range, &spans[i]);
        }
    }
    struct kv_txn_req t = {.compares = cmps,
                           .n_compares = n_cmp,
                           .success = ops,
                           .n_success = n_succ,
                           .failure = ops + n_succ,
                           .n_failure = n_fail};
    bool dup = m_branch_has_dup(ops, spans, n_succ) ||
               m_branch_has_dup(ops + n_succ, spans + n_succ, n_fail);
    uint8_t *buf;
    size_t n;
    int enc = kvcmd_encode_txn(&t, &buf, &n);
    if (dup) {
        assert_int_equal(enc, KV_ETXNDUPKEY);
        return;
    }
    assert_int_equal(enc, 0);
    struct kv_result res;
    int rv = apply_all(r, buf, n, &res);
    free(buf);
    if (!r->use_model) {
        kv_result_free(&res);
        return;
    }
    struct model *m = &r->m;
    bool ok = true;
    for (uint32_t i = 0; i < n_cmp && ok; i++) {
        ok = m_compare(m, &cmps[i]);
    }
    const struct kv_op *br = ok ? ops : ops + n_succ;
    const struct tspan *bs = ok ? spans : spans + n_succ;
    uint32_t nb = ok ? n_succ : n_fail;
    int want = 0;
    for (uint32_t i = 0; i < nb && want == 0; i++) {
        if (br[i].type == KV_OP_PUT && (br[i].put.ignore_value || br[i].put.ignore_lease)) {
            int ki = m_find(m, br[i].put.key, br[i].put.key_len);
            if (m_latest_live(&m->keys[ki]) == NULL) {
                want = KV_EKEYNOTFOUND;
            }
        } else if (br[i].type == KV_OP_RANGE) {
            want = m_check_read_rev(m, br[i].range.revision);
        }
    }
    assert_int_equal(rv, want);
    if (rv != 0) {
        assert_int_equal(res.revision, m->rev);
        kv_result_free(&res);
        return;
    }
    assert_int_equal(res.succeeded, ok);
    assert_int_equal(res.n_responses, nb);
    static struct mevents evs;
    evs.n = 0;
    m->write_rev = m->rev + 1;
    m->write_sub = 0;
    for (uint32_t i = 0; i < nb; i++) {
        const struct kv_response *resp = &res.responses[i];
        assert_int_equal(resp->type, br[i].type);
        if (br[i].type == KV_OP_PUT) {
            int ki = m_find(m, br[i].put.key, br[i].put.key_len);
            struct mver *prev = m_latest_live(&m->keys[ki]);
            assert_int_equal(resp->put.has_prev, prev != NULL && br[i].put.prev_kv);
            if (resp->put.has_prev) {
                assert_kv_matches(&resp->put.prev_kv, &m->keys[ki], prev, true);
            }
            m_put(m, ki, &br[i].put, &evs);
        } else if (br[i].type == KV_OP_DELETE) {
            int64_t deleted = 0;
            for (int k = 0; k < M_KEYS; k++) {
                if (m_latest_live(&m->keys[k]) != NULL &&
                    ref_in_span(&bs[i], m->keys[k].k, m->keys[k].klen)) {
                    if (br[i].del.prev_kv) {
                        assert_kv_matches(&resp->del.prev_kvs[deleted], &m->keys[k],
                                          m_latest_live(&m->keys[k]), true);
                    }
                    m_delete_key(m, k, br[i].del.prev_kv, &evs);
                    deleted++;
                }
            }
            assert_int_equal(resp->del.n_deleted, deleted);
        } else {
            /* reads see the txn's own earlier writes */
            int64_t rr = br[i].range.revision > 0 ? br[i].range.revision : INT64_MAX;
            m_check_range(m, &br[i].range, &bs[i], rr, &resp->range);
        }
    }
    if (evs.n > 0) {
        m->rev++;
    }
    check_events(m, &evs, &res);
    assert_int_equal(res.revision, m->rev);
    kv_result_free(&res);
}

static void step_compact(struct run *r)
{
    /* usually far behind the head, to keep history to check; sometimes anywhere,
     * including the errors on either side */
    int64_t lo = r->m.compacted > 1 ? r->m.compacted - 1 : 1;
    int64_t rev = lo + (int64_t)prng_below(&r->p, (uint64_t)(r->m.rev + 2 - lo));
    if (prng_chance(&r->p, 700000)) {
        rev = r->m.rev - 60 - (int64_t)prng_below(&r->p, 40);
        if (rev < 1) {
            rev = 1;
        }
    }
    uint8_t *buf;
    size_t n;
    assert_int_equal(kvcmd_encode_compact(rev, &buf, &n), 0);
    struct kv_result res;
    int rv = apply_all(r, buf, n, &res);
    free(buf);
    kv_result_free(&res);
    if (r->use_model) {
        int want = rev <= r->m.compacted ? KV_ECOMPACTED : (rev > r->m.rev ? KV_EFUTUREREV : 0);
        assert_int_equal(rv, want);
        if (rv == 0) {
            r->m.compacted = rev;
        }
    }
}

static void step_lease_revoke(struct run *r)
{
    int64_t lease = 1 + (int64_t)prng_below(&r->p, 3);
    bool want_prev = prng_chance(&r->p, 500000);
    struct kv_result res[3];
    for (int s = 0; s < r->n_stores; s++) {
        assert_int_equal(kv_delete_by_lease(r->stores[s], lease, want_prev, &res[s]), 0);
        if (s > 0) {
            assert_int_equal(res[s].revision, res[0].revision);
            assert_int_equal(res[s].n_events, res[0].n_events);
        }
    }
    if (r->use_model) {
        struct model *m = &r->m;
        static struct mevents evs;
        evs.n = 0;
        m->write_rev = m->rev + 1;
        m->write_sub = 0;
        for (int i = 0; i < M_KEYS; i++) {
            struct mver *v = m_latest_live(&m->keys[i]);
            if (v != NULL && v->lease == lease) {
                m_delete_key(m, i, want_prev, &evs);
            }
        }
        if (evs.n > 0) {
            m->rev++;
        }
        check_events(m, &evs, &res[0]);
        assert_int_equal(res[0].revision, m->rev);
        assert_int_equal(kv_lease_key_count(r->stores[0], lease), 0);
    }
    for (int s = 0; s < r->n_stores; s++) {
        kv_result_free(&res[s]);
    }
}

struct hist_acc {
    const struct model *m;
    int64_t from;
    const struct tspan *span;
    struct mev *want;
    int n_want;
    int pos;
    int64_t last_rev;
};

static int hist_cb(void *arg, const struct kv_event *ev)
{
    struct hist_acc *h = arg;
    assert_true(h->pos < h->n_want);
    const struct mev *e = &h->want[h->pos++];
    const struct mkey *k = &h->m->keys[e->key];
    assert_int_equal(ev->type, e->type);
    assert_int_equal(ref_cmp(ev->kv.key, ev->kv.key_len, k->k, k->klen), 0);
    assert_int_equal(ev->kv.mod_revision, e->v.mod);
    if (e->type == KV_EVENT_PUT) {
        assert_kv_matches(&ev->kv, k, &e->v, true);
    }
    assert_int_equal(ev->has_prev, e->has_prev);
    if (e->has_prev) {
        assert_kv_matches(&ev->prev_kv, k, &e->prev, true);
    }
    assert_true(ev->kv.mod_revision >= h->last_rev);
    h->last_rev = ev->kv.mod_revision;
    return 0;
}

static int mev_cmp(const void *a, const void *b)
{
    const struct mev *x = a, *y = b;
    if (x->v.mod != y->v.mod) {
        return x->v.mod < y->v.mod ? -1 : 1;
    }
    return x->v.sub < y->v.sub ? -1 : (x->v.sub > y->v.sub ? 1 : 0);
}

static void step_history(struct run *r)
{
    struct model *m = &r->m;
    struct tspan s;
    rand_span(r, &s, false);
    int64_t lo = m->compacted - 1 > 0 ? m->compacted - 1 : 1;
    int64_t from = lo + (int64_t)prng_below(&r->p, (uint64_t)(m->rev + 2 - lo));
    const uint8_t *key, *end;
    uint32_t klen, elen;
    bool prefix;
    span_fields(&s, &key, &klen, &end, &elen, &prefix);

    /* the model's answer: every change since from, with the version just before it */
    int cap = 0;
    for (int i = 0; i < M_KEYS; i++) {
        cap += (int)m->keys[i].n;
    }
    struct mev *want = malloc(sizeof *want * (size_t)(cap + 1));
    int n_want = 0;
    for (int i = 0; i < M_KEYS; i++) {
        const struct mkey *k = &m->keys[i];
        if (!ref_in_span(&s, k->k, k->klen)) {
            continue;
        }
        for (uint32_t j = 0; j < k->n; j++) {
            if (k->v[j].mod < from) {
                continue;
            }
            struct mev *e = &want[n_want++];
            *e = (struct mev){
                .type = k->v[j].ver == 0 ? KV_EVENT_DELETE : KV_EVENT_PUT, .key = i, .v = k->v[j]};
            if (j > 0 && k->v[j - 1].ver != 0) {
                e->has_prev = true;
                e->prev = k->v[j - 1];
            }
        }
    }
    qsort(want, (size_t)n_want, sizeof *want, mev_cmp);

    struct hist_acc h = {.m = m, .from = from, .span = &s, .want = want, .n_want = n_want};
    uint32_t budget = 1 + (uint32_t)prng_below(&r->p, 20);
    int64_t next = from;
    int rounds = 0;
    for (;;) {
        int64_t got_next;
        int rv = kv_history_since(r->stores[0], key, klen, end, elen, next, budget, &got_next,
                                  hist_cb, &h);
        if (next <= m->compacted) {
            assert_int_equal(rv, KV_ECOMPACTED);
            free(want);
            return;
        }
        assert_int_equal(rv, 0);
        assert_true(got_next >= next);
        if (got_next == next) {
            assert_true(next > m->rev);
            break;
        }
        next = got_next;
        assert_true(++rounds < 100000);
        if (next > m->rev) {
            break;
        }
    }
    assert_int_equal(h.pos, n_want);
    free(want);
}

static void run_init(struct run *r, uint64_t seed, int n_stores, bool use_model)
{
    memset(r, 0, sizeof *r);
    prng_seed(&r->p, seed);
    model_init(&r->m, &r->p);
    r->n_stores = n_stores;
    r->use_model = use_model;
    for (int s = 0; s < n_stores; s++) {
        r->stores[s] = kv_make();
    }
}

static void run_free(struct run *r)
{
    for (int s = 0; s < r->n_stores; s++) {
        kv_free(r->stores[s]);
    }
    model_free(&r->m);
}

static void run_steps(struct run *r, int n_ops)
{
    for (int i = 0; i < n_ops; i++) {
        uint64_t x = prng_below(&r->p, 100);
        if (x >= 92) {
            /* history checks need the model; without one, put instead */
            if (r->use_model) {
                step_history(r);
            } else {
                step_put(r);
            }
        } else if (x < 35) {
            step_put(r);
        } else if (x < 45) {
            step_delete(r);
        } else if (x < 65) {
            step_range(r);
        } else if (x < 85) {
            step_txn(r);
        } else if (x < 88) {
            step_compact(r);
        } else {
            step_lease_revoke(r);
        }
        for (int s = 0; s < r->n_stores; s++) {
            assert_kv_ok(r->stores[s]);
        }
    }
}

static void test_model_random(void **state)
{
    struct run r;
    run_init(&r, 20240601, 2, true);
    const int n_ops = 20000;
    for (int done = 0; done < n_ops; done += 1000) {
        run_steps(&r, 1000);
        assert_same_state(r.stores[0], r.stores[1]);
        assert_int_equal(kv_revision(r.stores[0]), r.m.rev);
        if (done == n_ops / 2) {
            /* replace store 1 by a copy restored from store 0's snapshot */
            struct kv *copy = snapshot_copy(r.stores[0]);
            assert_kv_ok(copy);
            kv_free(r.stores[1]);
            r.stores[1] = copy;
        }
    }
    /* the live count matches the model */
    struct kv_stats st;
    kv_stats(r.stores[0], &st);
    uint64_t live = 0;
    for (int i = 0; i < M_KEYS; i++) {
        live += m_latest_live(&r.m.keys[i]) != NULL;
    }
    assert_int_equal(st.n_keys_live, live);
    print_message("model: %d ops, revision %lld, compacted %lld, %llu live keys\n", n_ops,
                  (long long)r.m.rev, (long long)r.m.compacted, (unsigned long long)live);
    run_free(&r);
}

static void test_determinism(void **state)
{
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct run r;
        run_init(&r, seed, 2, false);
        run_steps(&r, 3000);
        /* store 1 trims eagerly, store 0 lazily: physical state differs, state does not */
        kv_compact_step(r.stores[1], UINT32_MAX);
        assert_same_state(r.stores[0], r.stores[1]);
        run_free(&r);
    }
    /* and the same seed twice, separately */
    uint64_t digest[2];
    for (int t = 0; t < 2; t++) {
        struct run r;
        run_init(&r, 77, 1, false);
        run_steps(&r, 3000);
        digest[t] = kv_digest(r.stores[0]);
        run_free(&r);
    }
    assert_int_equal(digest[0], digest[1]);
}

/* ==== hash index =========================================================== */

/* Three stores driven alike: the seeded hash, a constant one (nearly tree-only: at most
 * KV_HASH_PROBE_MAX keys indexed) and a four-slot one. Results must be byte-identical
 * and match the model; kv_check runs after every step (run_steps). Every round one
 * store is replaced by its snapshot-restored copy, whose index is rebuilt. */
static void test_model_random_hash_collisions(void **state)
{
    struct run r;
    run_init(&r, 20240917, 3, true);
    r.hash[1] = hash_const;
    r.hash[2] = hash_2bits;
    for (int s = 1; s < 3; s++) {
        kv_test_set_hash(r.stores[s], r.hash[s], true);
        assert_kv_ok(r.stores[s]);
    }
    uint64_t max_unhashed[3] = {0};
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < 50; i++) {
            run_steps(&r, 10);
            for (int s = 0; s < 3; s++) {
                struct kv_stats st;
                kv_stats(r.stores[s], &st);
                max_unhashed[s] =
                    st.n_keys_unhashed > max_unhashed[s] ? st.n_keys_unhashed : max_unhashed[s];
            }
        }
        assert_same_state(r.stores[0], r.stores[1]);
        assert_same_state(r.stores[0], r.stores[2]);
        assert_int_equal(kv_revision(r.stores[0]), r.m.rev);
        int s = round % 3;
        struct kv *copy = snapshot_copy(r.stores[s]);
        assert_kv_ok(copy);
        kv_test_set_hash(copy, r.hash[s], true);
        assert_kv_ok(copy);
        assert_same_state(copy, r.stores[s]);
        kv_free(r.stores[s]);
        r.stores[s] = copy;
    }
    /* the overflow path ran, and honest hashing never needed it */
    assert_int_equal(max_unhashed[0], 0);
    assert_true(max_unhashed[1] > 0);
    print_message("hash collisions: max unhashed keys %llu (const), %llu (4 slots)\n",
                  (unsigned long long)max_unhashed[1], (unsigned long long)max_unhashed[2]);
    run_free(&r);
}

static void key_name(char *out, size_t cap, const char *prefix, unsigned i)
{
    snprintf(out, cap, "%s%05u", prefix, i);
}

/* Every key collides: the first KV_HASH_PROBE_MAX are indexed, the rest are found
 * through the tree. Gets, misses, compares, overwrites, deletes and the compaction that
 * frees keys must all stay right, for indexed and overflowed keys alike. */
static void test_hash_forced_collisions(void **state)
{
    enum { N = 200 };
    struct kv *kv = kv_make();
    kv_test_set_hash(kv, hash_const, true);
    char key[32], val[32];
    for (unsigned i = 0; i < N; i++) {
        key_name(key, sizeof key, "c/", i);
        key_name(val, sizeof val, "v", i);
        assert_int_equal(put(kv, key, val, 0), 0);
        assert_kv_ok(kv);
    }
    struct kv_stats st;
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_indexed, N);
    assert_int_equal(st.n_keys_unhashed, N - KV_HASH_PROBE_MAX);
    for (unsigned i = 0; i < N; i++) {
        key_name(key, sizeof key, "c/", i);
        key_name(val, sizeof val, "v", i);
        assert_get(kv, key, 0, val, 2 + i, 2 + i, 1, 0);
        assert_true(cmp_holds(kv, KV_CMP_VERSION, KV_CMP_EQUAL, key, 1, NULL));
        assert_true(cmp_holds(kv, KV_CMP_VALUE, KV_CMP_EQUAL, key, 0, val));
    }
    assert_missing(kv, "c/99999", 0);
    assert_missing(kv, "zz", 0);
    assert_false(cmp_holds(kv, KV_CMP_VERSION, KV_CMP_GREATER, "c/99999", 0, NULL));

    /* overwrite a late (overflowed) and an early (indexed) key: no duplicate records */
    assert_int_equal(put(kv, "c/00150", "again", 0), 0);
    assert_int_equal(put(kv, "c/00003", "again", 0), 0);
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_indexed, N);
    assert_get(kv, "c/00150", 0, "again", 152, N + 2, 2, 0);
    assert_get(kv, "c/00003", 0, "again", 5, N + 3, 2, 0);

    /* delete every odd key one by one, then compact so their records are freed */
    for (unsigned i = 1; i < N; i += 2) {
        key_name(key, sizeof key, "c/", i);
        assert_int_equal(del(kv, key), 0);
        assert_missing(kv, key, 0);
    }
    assert_int_equal(compact(kv, kv_revision(kv)), 0);
    assert_int_equal(kv_compact_step(kv, UINT32_MAX), 0);
    assert_kv_ok(kv);
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_indexed, N / 2);
    assert_true(st.n_keys_unhashed > 0);
    for (unsigned i = 0; i < N; i++) {
        key_name(key, sizeof key, "c/", i);
        if (i % 2 == 1) {
            assert_missing(kv, key, 0);
        } else if (i != 150) {
            key_name(val, sizeof val, "v", i);
            assert_get(kv, key, 0, val, 2 + i, i == 0 ? 2 : (i == 2 ? 4 : 2 + i), 1, 0);
        }
    }

    /* back to the seeded hash: one rebuild indexes every key */
    kv_test_set_hash(kv, NULL, true);
    assert_kv_ok(kv);
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_unhashed, 0);
    assert_get(kv, "c/00150", 0, "again", 152, N + 2, 2, 0);

    /* negative control: an index whose stored hashes no longer match is caught */
    kv_test_set_hash(kv, hash_by_len, false);
    char msg[128];
    assert_int_equal(kv_check(kv, msg, sizeof msg), KV_ECORRUPT);
    assert_non_null(strstr(msg, "stale"));
    kv_test_set_hash(kv, hash_by_len, true);
    assert_kv_ok(kv);
    assert_get(kv, "c/00150", 0, "again", 152, N + 2, 2, 0);
    kv_free(kv);
}

/* The table doubles from KV_HASH_SLOTS_MIN through many sizes as keys arrive, keeps
 * its load at most 1/2, survives a snapshot round trip sized in one go, and halves
 * back as compaction frees keys. */
static void test_hash_growth_and_shrink(void **state)
{
    enum { N = 40000 };
    struct kv *kv = kv_make();
    char key[32];
    struct kv_stats st;
    uint64_t slots = 0;
    int n_grows = 0;
    for (unsigned i = 0; i < N; i++) {
        key_name(key, sizeof key, "g/", (unsigned)(((uint64_t)i * 2654435761u) % N));
        assert_int_equal(put(kv, key, "x", 0), 0);
        kv_stats(kv, &st);
        assert_true(st.hash_slots >= 2 * st.n_keys_indexed);
        if (st.hash_slots != slots) {
            assert_true(st.hash_slots > slots);
            slots = st.hash_slots;
            n_grows++;
            assert_kv_ok(kv);
        }
    }
    assert_kv_ok(kv);
    assert_true(n_grows >= 11); /* 64 .. 131072 slots */
    assert_int_equal(st.n_keys_unhashed, 0);
    for (unsigned i = 0; i < N; i++) {
        key_name(key, sizeof key, "g/", i);
        assert_int_equal(get_err(kv, key, 0), 0);
        assert_true(cmp_holds(kv, KV_CMP_VERSION, KV_CMP_EQUAL, key, 1, NULL));
    }
    assert_missing(kv, "g/99999", 0);

    struct kv *copy = snapshot_copy(kv);
    assert_kv_ok(copy);
    struct kv_stats cst;
    kv_stats(copy, &cst);
    assert_int_equal(cst.n_keys_unhashed, 0);
    assert_true(cst.hash_slots >= 2 * cst.n_keys_indexed && cst.hash_slots <= 4 * N);
    assert_same_state(kv, copy);
    kv_free(copy);

    struct kv_delete_req d = {.key = B("g/"), .key_len = 2, .prefix = true};
    assert_int_equal(del_req(kv, &d, NULL), 0);
    assert_int_equal(compact(kv, kv_revision(kv)), 0);
    kv_compact_step(kv, N / 2);
    assert_kv_ok(kv);
    kv_compact_step(kv, UINT32_MAX);
    assert_kv_ok(kv);
    kv_stats(kv, &st);
    assert_int_equal(st.n_keys_indexed, 0);
    assert_int_equal(st.hash_slots, KV_HASH_SLOTS_MIN);
    assert_missing(kv, "g/00001", 0);
    kv_free(kv);
}

/* Two stores with different seeds (and so different layouts) stay identical. */
static void test_hash_seed_is_local(void **state)
{
    struct run r;
    run_init(&r, 99, 2, false);
    kv_set_hash_seed(r.stores[0], 1);
    kv_set_hash_seed(r.stores[1], 2);
    run_steps(&r, 2000);
    assert_same_state(r.stores[0], r.stores[1]);
    kv_set_hash_seed(r.stores[1], 3); /* re-keying a live store changes nothing visible */
    assert_kv_ok(r.stores[1]);
    run_steps(&r, 500);
    assert_same_state(r.stores[0], r.stores[1]);
    run_free(&r);
}

/* ==== performance ========================================================== */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_perf_100k(void **state)
{
    enum { N = 100000 };
    struct kv *kv = kv_make();
    char key[32], val[32];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        /* scattered order, so the tree sees random inserts */
        unsigned k = (unsigned)(((uint64_t)i * 2654435761u) % N);
        snprintf(key, sizeof key, "/registry/svc/%08u", k);
        snprintf(val, sizeof val, "value-%d", i);
        struct kv_put_req req = {
            .key = B(key), .key_len = L(key), .value = B(val), .value_len = L(val)};
        uint8_t *buf;
        size_t n;
        assert_int_equal(kvcmd_encode_put(&req, &buf, &n), 0);
        struct kv_result res;
        assert_int_equal(kv_apply(kv, buf, n, &res), 0);
        kv_result_free(&res);
        free(buf);
    }
    double t1 = now_s();
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "/registry/svc/%08d", i);
        struct kv_range_req req = {.key = B(key), .key_len = L(key)};
        struct kv_range_resp resp;
        assert_int_equal(kv_range(kv, &req, &resp), 0);
        assert_int_equal(resp.n_kvs, 1);
        kv_range_resp_free(&resp);
    }
    double t2 = now_s();
    assert_int_equal(kv_revision(kv), N + 1);
    print_message("perf: %d puts %.3f s, %d gets %.3f s (this build's flags)\n", N, t1 - t0, N,
                  t2 - t1);
    kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_store),
        cmocka_unit_test(test_put_get_metadata),
        cmocka_unit_test(test_delete_and_recreate),
        cmocka_unit_test(test_range_prefix_limit_more),
        cmocka_unit_test(test_range_limit_is_clamped),
        cmocka_unit_test(test_range_result_bytes_budget),
        cmocka_unit_test(test_historical_reads),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_deferred_compaction_is_invisible),
        cmocka_unit_test(test_txn_compare_each_target),
        cmocka_unit_test(test_txn_ops),
        cmocka_unit_test(test_put_ignore_value_and_lease),
        cmocka_unit_test(test_delete_range_by_prefix),
        cmocka_unit_test(test_delete_by_lease),
        cmocka_unit_test(test_limits_are_named_errors),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_corruption_detected),
        cmocka_unit_test(test_snapshot_semantic_checks),
        cmocka_unit_test(test_malformed_commands_change_nothing),
        cmocka_unit_test(test_history_since),
        cmocka_unit_test(test_model_random),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_model_random_hash_collisions),
        cmocka_unit_test(test_hash_forced_collisions),
        cmocka_unit_test(test_hash_growth_and_shrink),
        cmocka_unit_test(test_hash_seed_is_local),
        cmocka_unit_test(test_perf_100k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
