/* test_machine_kvttl.c -- unit tests for the composite machine's key-private leases (the
 * KVTTL command, tag 0x14, and the no-leak rule; sm/machine.h).
 *
 * Codec: round trip and canonical bytes, every static rule with its own error, truncation
 * at every offset, a wrong tag and version. Apply: SET NX PX as one command (condition,
 * grant and put together; a failed condition creates no lease and burns no id), grants
 * in the failure branch, several grants in one txn, bad inner commands that change
 * nothing (digest unchanged). No leaks: overwrite, delete, new TTL, PERSIST-like put and
 * rename, HTTP-granted leases never revoked by the rule, locks keep a lease alive, 1000
 * SET PX / SET / DEL cycles keep the table bounded. Expiry of a private lease deletes
 * its key. Snapshots keep the private mark (round trip, digest). Two machines fed the
 * same commands agree (digest).
 *
 * Sections: helpers | codec | apply | no leaks | snapshots.
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

#include "sm/kvcmd.h"
#include "sm/machine.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

/* ==== helpers ============================================================ */

static uint64_t g_index = 1;

static struct machine *mk(void)
{
    struct machine *m = NULL;
    assert_int_equal(machine_new(&m), 0);
    return m;
}

/* Applies cmd (freed here) and returns res->err; res may be NULL. */
static int apply(struct machine *m, uint8_t *cmd, size_t n, struct sm_result *res)
{
    struct sm_result local;
    struct sm_result *r = res != NULL ? res : &local;
    machine_apply(m, cmd, n, g_index++, r);
    free(cmd);
    int err = r->err;
    if (res == NULL)
        sm_result_free(&local);
    return err;
}

static struct kv_put_req put_of(const char *k, const char *v, int64_t lease)
{
    return (struct kv_put_req){
        .key = B(k), .key_len = L(k), .value = B(v), .value_len = L(v), .lease = lease};
}

static int kv_put(struct machine *m, const char *k, const char *v, int64_t lease)
{
    struct kv_put_req p = put_of(k, v, lease);
    uint8_t *cmd;
    size_t n;
    assert_int_equal(kvcmd_encode_put(&p, &cmd, &n), 0);
    return apply(m, cmd, n, NULL);
}

static int kv_del(struct machine *m, const char *k)
{
    struct kv_delete_req d = {.key = B(k), .key_len = L(k)};
    uint8_t *cmd;
    size_t n;
    assert_int_equal(kvcmd_encode_delete(&d, &cmd, &n), 0);
    return apply(m, cmd, n, NULL);
}

/* A KVTTL over an already encoded kv command (freed here). */
static int kvttl(struct machine *m, const struct sm_kvttl_grant *g, uint32_t ng, uint8_t *inner,
                 size_t inner_n, struct sm_result *res)
{
    uint8_t *cmd;
    size_t n;
    int rv = sm_kvttl_encode(g, ng, inner, inner_n, &cmd, &n);
    free(inner);
    assert_int_equal(rv, 0);
    return apply(m, cmd, n, res);
}

/* SET k v PX ttl: one PUT, one grant. */
static int set_px(struct machine *m, const char *k, const char *v, int64_t ttl,
                  struct sm_result *res)
{
    struct kv_put_req p = put_of(k, v, 0);
    uint8_t *inner;
    size_t n;
    assert_int_equal(kvcmd_encode_put(&p, &inner, &n), 0);
    const struct sm_kvttl_grant g = {.ttl_ms = ttl, .op_index = 0};
    return kvttl(m, &g, 1, inner, n, res);
}

/* SET k v NX PX ttl: txn(version(k) == 0) { put k v } */
static int set_nx_px(struct machine *m, const char *k, const char *v, int64_t ttl,
                     struct sm_result *res)
{
    const struct kv_compare c = {
        .key = B(k), .key_len = L(k), .target = KV_CMP_VERSION, .op = KV_CMP_EQUAL, .number = 0};
    struct kv_op op = {.type = KV_OP_PUT, .put = put_of(k, v, 0)};
    const struct kv_txn_req t = {.compares = &c, .n_compares = 1, .success = &op, .n_success = 1};
    uint8_t *inner;
    size_t n;
    assert_int_equal(kvcmd_encode_txn(&t, &inner, &n), 0);
    const struct sm_kvttl_grant g = {.ttl_ms = ttl, .op_index = 0};
    return kvttl(m, &g, 1, inner, n, res);
}

/* The lease key k carries (0: none), or -1 when k is missing. */
static int64_t lease_of(struct machine *m, const char *k)
{
    const struct kv_range_req r = {.key = B(k), .key_len = L(k)};
    struct kv_range_resp resp;
    assert_int_equal(kv_range(machine_kv(m), &r, &resp), 0);
    int64_t lease = resp.n_kvs > 0 ? resp.kvs[0].lease : -1;
    kv_range_resp_free(&resp);
    return lease;
}

static int64_t grant_public(struct machine *m, int64_t ttl)
{
    uint8_t *cmd = malloc(LEASE_CMD_BYTES_MAX);
    size_t n;
    assert_non_null(cmd);
    assert_int_equal(lease_encode_grant(0, ttl, cmd, LEASE_CMD_BYTES_MAX, &n), 0);
    struct sm_result res;
    assert_int_equal(apply(m, cmd, n, &res), 0);
    int64_t id = res.lease.id;
    assert_int_equal(res.n_lease_changes, 0);
    sm_result_free(&res);
    return id;
}

static bool is_private(struct machine *m, int64_t id)
{
    struct lease_info info;
    return lease_get(machine_leases(m), id, &info) == 0 && info.n_keys > 0;
}

/* ==== codec ============================================================== */

static void test_codec_round_trip(void **state)
{
    (void)state;
    const struct sm_kvttl_grant g[3] = {{500, 0}, {3000, 2}, {LEASE_TTL_MS_MAX, 255}};
    const uint8_t inner[] = {1, 2, 3, 4};
    uint8_t *buf;
    size_t n;
    assert_int_equal(sm_kvttl_encode(g, 3, inner, sizeof inner, &buf, &n), 0);
    assert_int_equal(n, SM_KVTTL_HEADER_BYTES + 3 * SM_KVTTL_GRANT_BYTES + sizeof inner);
    assert_int_equal(buf[0], SM_TAG_KVTTL);
    assert_int_equal(buf[1], SM_KVTTL_FORMAT_VERSION);
    struct sm_kvttl t;
    assert_int_equal(sm_kvttl_decode(buf, n, &t), 0);
    assert_int_equal(t.n_grants, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t.grants[i].ttl_ms, g[i].ttl_ms);
        assert_int_equal(t.grants[i].op_index, g[i].op_index);
    }
    assert_int_equal(t.kv_len, sizeof inner);
    assert_memory_equal(t.kv_cmd, inner, sizeof inner);
    /* canonical: re-encoding the decoded form gives the same bytes */
    uint8_t *again;
    size_t n2;
    assert_int_equal(sm_kvttl_encode(t.grants, t.n_grants, t.kv_cmd, t.kv_len, &again, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(again, buf, n);
    free(again);
    /* truncation anywhere inside the header is an error (never a crash) */
    for (size_t cut = 0; cut <= SM_KVTTL_HEADER_BYTES + 3 * SM_KVTTL_GRANT_BYTES; cut++)
        assert_int_not_equal(sm_kvttl_decode(buf, cut, &t), 0);
    buf[1] = 2;
    assert_int_equal(sm_kvttl_decode(buf, n, &t), SM_EFORMAT);
    buf[1] = SM_KVTTL_FORMAT_VERSION;
    buf[0] = SM_TAG_KV;
    assert_int_equal(sm_kvttl_decode(buf, n, &t), SM_EMALFORMED);
    free(buf);
}

static void test_codec_rules(void **state)
{
    (void)state;
    const uint8_t inner[] = {1};
    uint8_t *buf = NULL;
    size_t n;
    struct sm_kvttl_grant g[SM_KVTTL_GRANTS_MAX + 1];
    for (uint32_t i = 0; i <= SM_KVTTL_GRANTS_MAX; i++)
        g[i] = (struct sm_kvttl_grant){.ttl_ms = 1000, .op_index = (uint16_t)i};
    assert_int_equal(sm_kvttl_encode(g, 0, inner, 1, &buf, &n), SM_EGRANTS);
    assert_int_equal(sm_kvttl_encode(g, SM_KVTTL_GRANTS_MAX + 1, inner, 1, &buf, &n), SM_EGRANTS);
    assert_int_equal(sm_kvttl_encode(g, SM_KVTTL_GRANTS_MAX, inner, 1, &buf, &n), 0);
    free(buf);
    assert_int_equal(sm_kvttl_encode(g, 1, inner, 0, &buf, &n), SM_EMALFORMED);
    struct sm_kvttl_grant bad[2] = {{1000, 3}, {1000, 3}};
    assert_int_equal(sm_kvttl_encode(bad, 2, inner, 1, &buf, &n), SM_EMALFORMED);
    bad[1].op_index = 2; /* descending */
    assert_int_equal(sm_kvttl_encode(bad, 2, inner, 1, &buf, &n), SM_EMALFORMED);
    bad[0] = (struct sm_kvttl_grant){LEASE_TTL_MS_MIN - 1, 0};
    assert_int_equal(sm_kvttl_encode(bad, 1, inner, 1, &buf, &n), LEASE_ETTLSHORT);
    bad[0] = (struct sm_kvttl_grant){LEASE_TTL_MS_MAX + 1, 0};
    assert_int_equal(sm_kvttl_encode(bad, 1, inner, 1, &buf, &n), LEASE_ETTLLONG);
    /* the decoder applies the same rules to hand-made bytes: n_grants 0, and a short TTL */
    uint8_t raw[SM_KVTTL_HEADER_BYTES + SM_KVTTL_GRANT_BYTES + 1] = {SM_TAG_KVTTL,
                                                                      SM_KVTTL_FORMAT_VERSION, 0};
    struct sm_kvttl t;
    assert_int_equal(sm_kvttl_decode(raw, sizeof raw, &t), SM_EGRANTS);
    raw[2] = 1;
    raw[3] = 10; /* ttl 10 ms */
    assert_int_equal(sm_kvttl_decode(raw, sizeof raw, &t), LEASE_ETTLSHORT);
    raw[3] = 0xe8, raw[4] = 0x03; /* 1000 ms */
    assert_int_equal(sm_kvttl_decode(raw, sizeof raw, &t), 0);
    assert_int_equal(sm_kvttl_decode(raw, sizeof raw - 1, &t), SM_EMALFORMED); /* no kv cmd */
}

/* ==== apply ============================================================== */

static void test_set_nx_px_is_one_command(void **state)
{
    (void)state;
    struct machine *m = mk();
    const int64_t next = lease_next_id(machine_leases(m));
    struct sm_result res;
    assert_int_equal(set_nx_px(m, "lock", "owner-1", 3000, &res), 0);
    assert_int_equal(res.tag, SM_TAG_KVTTL);
    assert_true(res.kv.succeeded);
    assert_int_equal(res.n_lease_changes, 1);
    assert_true(res.lease_changes[0].granted);
    assert_int_equal(res.lease_changes[0].id, next);
    assert_int_equal(res.lease_changes[0].ttl_ms, 3000);
    assert_int_equal(res.kv.n_events, 1);
    assert_int_equal(res.kv.events[0].kv.lease, next);
    sm_result_free(&res);
    assert_int_equal(lease_of(m, "lock"), next);
    struct lease_info info;
    assert_int_equal(lease_get(machine_leases(m), next, &info), 0);
    assert_int_equal(info.ttl_ms, 3000);
    assert_true(is_private(m, next));
    /* the condition fails: no lease is created and no id is burnt */
    const uint64_t digest = machine_digest(m);
    assert_int_equal(set_nx_px(m, "lock", "owner-2", 3000, &res), 0);
    assert_false(res.kv.succeeded);
    assert_int_equal(res.n_lease_changes, 0);
    sm_result_free(&res);
    assert_int_equal(lease_count(machine_leases(m)), 1);
    assert_int_equal(lease_next_id(machine_leases(m)), next + 1);
    assert_int_equal(machine_digest(m), digest);
    machine_free(m);
}

static void test_failure_branch_and_many_grants(void **state)
{
    (void)state;
    struct machine *m = mk();
    assert_int_equal(kv_put(m, "a", "x", 0), 0);
    /* txn(value(a) == "y") { put a 1 } else { put a 2 ; put b 3 }, grants on ops 0, 1, 2 */
    const struct kv_compare c = {.key = B("a"),
                                 .key_len = 1,
                                 .target = KV_CMP_VALUE,
                                 .op = KV_CMP_EQUAL,
                                 .value = B("y"),
                                 .value_len = 1};
    struct kv_op succ = {.type = KV_OP_PUT, .put = put_of("a", "1", 0)};
    struct kv_op fail[2] = {{.type = KV_OP_PUT, .put = put_of("a", "2", 0)},
                            {.type = KV_OP_PUT, .put = put_of("b", "3", 0)}};
    const struct kv_txn_req t = {.compares = &c,
                                 .n_compares = 1,
                                 .success = &succ,
                                 .n_success = 1,
                                 .failure = fail,
                                 .n_failure = 2};
    uint8_t *inner;
    size_t n;
    assert_int_equal(kvcmd_encode_txn(&t, &inner, &n), 0);
    const struct sm_kvttl_grant g[3] = {{1000, 0}, {2000, 1}, {4000, 2}};
    const int64_t base = lease_next_id(machine_leases(m));
    struct sm_result res;
    assert_int_equal(kvttl(m, g, 3, inner, n, &res), 0);
    assert_false(res.kv.succeeded);
    assert_int_equal(res.n_lease_changes, 2); /* the failure branch's two puts */
    assert_int_equal(res.lease_changes[0].id, base + 1);
    assert_int_equal(res.lease_changes[0].ttl_ms, 2000);
    assert_int_equal(res.lease_changes[1].id, base + 2);
    assert_int_equal(res.lease_changes[1].ttl_ms, 4000);
    sm_result_free(&res);
    assert_int_equal(lease_of(m, "a"), base + 1);
    assert_int_equal(lease_of(m, "b"), base + 2);
    assert_false(lease_exists(machine_leases(m), base)); /* its put did not run */
    assert_int_equal(lease_count(machine_leases(m)), 2);
    assert_true(lease_next_id(machine_leases(m)) > base + 2);
    machine_free(m);
}

/* Bad KVTTL commands are errors that change nothing (negative controls). */
static void test_bad_input_changes_nothing(void **state)
{
    (void)state;
    struct machine *m = mk();
    assert_int_equal(kv_put(m, "k", "v", 0), 0);
    const uint64_t digest = machine_digest(m);
    uint8_t *inner;
    size_t n;
    /* op_index past the only op */
    struct kv_put_req p = put_of("k", "v2", 0);
    assert_int_equal(kvcmd_encode_put(&p, &inner, &n), 0);
    struct sm_kvttl_grant g = {1000, 1};
    assert_int_equal(kvttl(m, &g, 1, inner, n, NULL), SM_EMALFORMED);
    /* a put that names a lease already */
    const int64_t pub = grant_public(m, 5000);
    const uint64_t digest2 = machine_digest(m);
    p = put_of("k", "v2", pub);
    assert_int_equal(kvcmd_encode_put(&p, &inner, &n), 0);
    g.op_index = 0;
    assert_int_equal(kvttl(m, &g, 1, inner, n, NULL), SM_EMALFORMED);
    /* ignore_lease */
    p = put_of("k", "v2", 0);
    p.ignore_lease = true;
    assert_int_equal(kvcmd_encode_put(&p, &inner, &n), 0);
    assert_int_equal(kvttl(m, &g, 1, inner, n, NULL), SM_EMALFORMED);
    /* a delete is no put */
    struct kv_delete_req d = {.key = B("k"), .key_len = 1};
    assert_int_equal(kvcmd_encode_delete(&d, &inner, &n), 0);
    assert_int_equal(kvttl(m, &g, 1, inner, n, NULL), SM_EMALFORMED);
    /* a txn op that is a range */
    struct kv_op r = {.type = KV_OP_RANGE, .range = {.key = B("k"), .key_len = 1}};
    struct kv_txn_req t = {.success = &r, .n_success = 1};
    assert_int_equal(kvcmd_encode_txn(&t, &inner, &n), 0);
    assert_int_equal(kvttl(m, &g, 1, inner, n, NULL), SM_EMALFORMED);
    /* another put of the txn names a lease that does not exist (etcd's rule) */
    struct kv_op two[2] = {{.type = KV_OP_PUT, .put = put_of("k", "1", 0)},
                           {.type = KV_OP_PUT, .put = put_of("j", "2", 999999)}};
    t = (struct kv_txn_req){.success = two, .n_success = 2};
    assert_int_equal(kvcmd_encode_txn(&t, &inner, &n), 0);
    assert_int_equal(kvttl(m, &g, 1, inner, n, NULL), LEASE_ENOTFOUND);
    /* an inner command that does not decode */
    inner = malloc(3);
    assert_non_null(inner);
    memcpy(inner, "\x01\x01\x00", 3);
    assert_int_not_equal(kvttl(m, &g, 1, inner, 3, NULL), 0);
    assert_int_equal(machine_digest(m), digest2);
    assert_int_not_equal(digest, digest2); /* the public grant did change it */
    assert_int_equal(lease_count(machine_leases(m)), 1);
    /* a bare tag */
    uint8_t *tag = malloc(1);
    assert_non_null(tag);
    tag[0] = SM_TAG_KVTTL;
    assert_int_equal(apply(m, tag, 1, NULL), SM_EMALFORMED);
    assert_int_equal(machine_digest(m), digest2);
    machine_free(m);
}

/* ==== no leaks =========================================================== */

static void test_overwrite_delete_rename_revoke(void **state)
{
    (void)state;
    struct machine *m = mk();
    struct sm_result res;
    /* overwrite without a lease (SET without KEEPTTL, PERSIST): the lease goes */
    assert_int_equal(set_px(m, "k", "1", 2000, NULL), 0);
    int64_t l1 = lease_of(m, "k");
    assert_true(l1 > 0);
    assert_int_equal(kv_put(m, "k", "2", 0), 0);
    assert_false(lease_exists(machine_leases(m), l1));
    assert_int_equal(lease_of(m, "k"), 0);
    /* a new TTL: the old lease goes in the same apply, listed as revoked */
    assert_int_equal(set_px(m, "k", "3", 2000, NULL), 0);
    l1 = lease_of(m, "k");
    assert_int_equal(set_px(m, "k", "4", 9000, &res), 0);
    assert_int_equal(res.n_lease_changes, 2);
    assert_true(res.lease_changes[0].granted);
    assert_false(res.lease_changes[1].granted);
    assert_int_equal(res.lease_changes[1].id, l1);
    sm_result_free(&res);
    assert_false(lease_exists(machine_leases(m), l1));
    const int64_t l2 = lease_of(m, "k");
    assert_int_equal(lease_count(machine_leases(m)), 1);
    /* rename k -> r: delete k, put r carrying l2; the lease lives on, its item moves */
    struct kv_op ops[2] = {{.type = KV_OP_DELETE, .del = {.key = B("k"), .key_len = 1}},
                           {.type = KV_OP_PUT, .put = put_of("r", "4", l2)}};
    const struct kv_txn_req t = {.success = ops, .n_success = 2};
    uint8_t *cmd;
    size_t n;
    assert_int_equal(kvcmd_encode_txn(&t, &cmd, &n), 0);
    assert_int_equal(apply(m, cmd, n, NULL), 0);
    assert_true(lease_exists(machine_leases(m), l2));
    assert_true(lease_item_attached(machine_leases(m), l2, LEASE_ITEM_KEY, B("r"), 1));
    assert_false(lease_item_attached(machine_leases(m), l2, LEASE_ITEM_KEY, B("k"), 1));
    assert_int_equal(lease_of(m, "r"), l2);
    /* delete: the lease goes */
    assert_int_equal(kv_del(m, "r"), 0);
    assert_false(lease_exists(machine_leases(m), l2));
    assert_int_equal(lease_count(machine_leases(m)), 0);
    machine_free(m);
}

static void test_public_leases_never_revoked(void **state)
{
    (void)state;
    struct machine *m = mk();
    const int64_t pub = grant_public(m, 5000);
    assert_int_equal(kv_put(m, "a", "1", pub), 0);
    assert_int_equal(kv_put(m, "b", "1", pub), 0);
    assert_int_equal(kv_del(m, "a"), 0);
    assert_int_equal(kv_put(m, "b", "2", 0), 0); /* the last key leaves it */
    assert_true(lease_exists(machine_leases(m), pub));
    assert_false(is_private(m, pub));
    /* a private key overwritten onto a public lease: only the private one goes */
    assert_int_equal(set_px(m, "c", "1", 1000, NULL), 0);
    const int64_t priv = lease_of(m, "c");
    assert_int_equal(kv_put(m, "c", "2", pub), 0);
    assert_false(lease_exists(machine_leases(m), priv));
    assert_true(lease_exists(machine_leases(m), pub));
    machine_free(m);
}

static void test_expiry_deletes_key(void **state)
{
    (void)state;
    struct machine *m = mk();
    struct sm_result res;
    assert_int_equal(set_px(m, "k", "v", 1000, &res), 0);
    const uint64_t granted = res.index;
    sm_result_free(&res);
    const int64_t id = lease_of(m, "k");
    uint8_t *cmd = malloc(LEASE_CMD_BYTES_MAX);
    size_t n;
    assert_non_null(cmd);
    assert_int_equal(lease_encode_expire(id, granted, cmd, LEASE_CMD_BYTES_MAX, &n), 0);
    assert_int_equal(apply(m, cmd, n, &res), 0);
    assert_int_equal(res.kv.n_events, 1);
    assert_int_equal(res.kv.events[0].type, KV_EVENT_DELETE);
    sm_result_free(&res);
    assert_int_equal(lease_of(m, "k"), -1);
    assert_int_equal(lease_count(machine_leases(m)), 0);
    machine_free(m);
}

static void test_thousand_cycles_bounded(void **state)
{
    (void)state;
    struct machine *m = mk();
    struct machine *twin = mk();
    uint32_t most = 0;
    for (int i = 0; i < 1000; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 7);
        for (int j = 0; j < 2; j++) { /* the same commands on both: digests must agree */
            struct machine *x = j == 0 ? m : twin;
            const uint64_t idx = g_index;
            assert_int_equal(set_px(x, key, "v", 3000, NULL), 0);
            assert_int_equal(set_px(x, key, "w", 3000, NULL), 0); /* a new TTL */
            assert_int_equal(kv_put(x, key, "plain", 0), 0);     /* SET without KEEPTTL */
            assert_int_equal(set_nx_px(x, key, "n", 3000, NULL), 0); /* fails: exists */
            assert_int_equal(kv_del(x, key), 0);
            assert_int_equal(set_nx_px(x, key, "n", 3000, NULL), 0); /* succeeds */
            if (j == 0)
                g_index = idx; /* same indexes for the twin */
        }
        const uint32_t count = lease_count(machine_leases(m));
        most = count > most ? count : most;
        assert_int_equal(machine_digest(m), machine_digest(twin));
    }
    assert_true(most <= 7); /* one per live key, never more */
    assert_int_equal(lease_count(machine_leases(m)), 7);
    for (int i = 0; i < 7; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(kv_del(m, key), 0);
    }
    assert_int_equal(lease_count(machine_leases(m)), 0);
    machine_free(twin);
    machine_free(m);
}

/* ==== snapshots ========================================================== */

static void test_snapshot_keeps_private_mark(void **state)
{
    (void)state;
    struct machine *m = mk();
    const int64_t pub = grant_public(m, 5000);
    assert_int_equal(kv_put(m, "p", "1", pub), 0);
    assert_int_equal(set_px(m, "k", "v", 2000, NULL), 0);
    const int64_t priv = lease_of(m, "k");
    uint8_t *img;
    size_t n;
    assert_int_equal(machine_snapshot_encode(m, &img, &n), 0);
    struct machine *back = NULL;
    assert_int_equal(machine_snapshot_decode(img, n, &back), 0);
    assert_int_equal(machine_digest(back), machine_digest(m));
    assert_true(is_private(back, priv));
    assert_false(is_private(back, pub));
    /* the restored replica follows the same rule */
    assert_int_equal(kv_del(back, "k"), 0);
    assert_int_equal(kv_del(back, "p"), 0);
    assert_false(lease_exists(machine_leases(back), priv));
    assert_true(lease_exists(machine_leases(back), pub));
    /* a flipped byte is refused or decodes to a different state, never a crash */
    img[n / 2] ^= 0x40;
    struct machine *bad = NULL;
    if (machine_snapshot_decode(img, n, &bad) == 0) {
        assert_int_not_equal(machine_digest(bad), machine_digest(m));
        machine_free(bad);
    }
    free(img);
    machine_free(back);
    machine_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_rules),
        cmocka_unit_test(test_set_nx_px_is_one_command),
        cmocka_unit_test(test_failure_branch_and_many_grants),
        cmocka_unit_test(test_bad_input_changes_nothing),
        cmocka_unit_test(test_overwrite_delete_rename_revoke),
        cmocka_unit_test(test_public_leases_never_revoked),
        cmocka_unit_test(test_expiry_deletes_key),
        cmocka_unit_test(test_thousand_cycles_bounded),
        cmocka_unit_test(test_snapshot_keeps_private_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
