/* test_lease.c -- unit tests for sm/lease, the replicated lease table.
 *
 * Codec: round trips for every command (decode(encode(x)) == x and the bytes are
 * canonical), strict rejection (tag, version, type, trailing bytes, truncation at every
 * offset, every field's range with its own error) and random bytes. Table: id
 * allocation (never reused), grant/revoke/expire with what died, stale expiry, attach
 * and detach, every limit's own error, errors that change nothing. Snapshots: round
 * trips (bytes and digest), bit flips in every byte, and hand-built images that
 * break one rule each with a valid CRC (negative controls for the decoder's checks).
 * A seeded random run drives the table and a small reference model side by side.
 *
 * Sections: helpers | codec | table | limits | snapshots | random model.
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

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

/* ==== helpers ============================================================ */

static struct lease_table *table_make(void)
{
    struct lease_table *t;
    assert_int_equal(lease_new(&t), 0);
    return t;
}

static uint64_t g_index = 1; /* Raft index handed to apply; any increasing value */

static int apply_cmd(struct lease_table *t, const uint8_t *buf, size_t n, struct lease_result *res)
{
    struct lease_result local;
    struct lease_result *r = res != NULL ? res : &local;
    int rv = lease_apply(t, buf, n, g_index++, r);
    assert_int_equal(rv, r->err);
    if (res == NULL) {
        lease_result_free(&local);
    }
    return rv;
}

static int grant(struct lease_table *t, int64_t id, int64_t ttl_ms, int64_t *got)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_grant(id, ttl_ms, buf, sizeof buf, &n), 0);
    struct lease_result res;
    int rv = apply_cmd(t, buf, n, &res);
    if (got != NULL) {
        *got = res.id;
    }
    lease_result_free(&res);
    return rv;
}

static int revoke(struct lease_table *t, int64_t id, struct lease_result *res)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_revoke(id, buf, sizeof buf, &n), 0);
    return apply_cmd(t, buf, n, res);
}

static int expire(struct lease_table *t, int64_t id, uint64_t granted_index,
                  struct lease_result *res)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_expire(id, granted_index, buf, sizeof buf, &n), 0);
    return apply_cmd(t, buf, n, res);
}

static void attach_key(struct lease_table *t, int64_t id, const char *key)
{
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_KEY, B(key), L(key)), 0);
}

static void attach_lock(struct lease_table *t, int64_t id, const char *name)
{
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_LOCK, B(name), L(name)), 0);
}

static void assert_item(const struct lease_item *it, uint8_t kind, const char *s)
{
    assert_int_equal(it->kind, kind);
    assert_int_equal(it->len, L(s));
    assert_memory_equal(it->bytes, s, it->len);
}

/* Encodes a snapshot, decodes it, and checks bytes and digest survive. */
static struct lease_table *snapshot_round_trip(const struct lease_table *t)
{
    uint8_t *buf, *buf2;
    size_t n, n2;
    assert_int_equal(lease_snapshot_encode(t, &buf, &n), 0);
    struct lease_table *u;
    assert_int_equal(lease_snapshot_decode(buf, n, &u), 0);
    assert_int_equal(lease_digest(u), lease_digest(t));
    assert_int_equal(lease_snapshot_encode(u, &buf2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n);
    free(buf);
    free(buf2);
    return u;
}

/* ==== codec ============================================================== */

static void check_round_trip(const struct lease_cmd *c)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX], buf2[LEASE_CMD_BYTES_MAX];
    size_t n, n2;
    assert_int_equal(lease_encode(c, buf, sizeof buf, &n), 0);
    assert_int_equal(buf[0], LEASE_CMD_TAG);
    assert_int_equal(buf[1], LEASE_FORMAT_VERSION);
    assert_int_equal(buf[2], c->type);
    struct lease_cmd d;
    assert_int_equal(lease_decode(buf, n, &d), 0);
    assert_int_equal(d.type, c->type);
    assert_int_equal(d.id, c->id);
    assert_int_equal(d.ttl_ms, c->ttl_ms);
    assert_int_equal(d.granted_index, c->granted_index);
    assert_int_equal(lease_encode(&d, buf2, sizeof buf2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n);
    /* Every strict prefix and every extension is malformed. */
    for (size_t cut = 0; cut < n; cut++) {
        int rv = lease_decode(buf, cut, &d);
        assert_true(rv == LEASE_EMALFORMED);
        assert_int_equal(d.type, 0);
    }
    buf[n] = 0;
    assert_int_equal(lease_decode(buf, n + 1, &d), LEASE_EMALFORMED);
}

static void test_codec_round_trips(void **state)
{
    struct lease_cmd cmds[] = {
        {.type = LEASE_CMD_GRANT, .id = 0, .ttl_ms = LEASE_TTL_MS_MIN},
        {.type = LEASE_CMD_GRANT, .id = 77, .ttl_ms = LEASE_TTL_MS_MAX},
        {.type = LEASE_CMD_GRANT, .id = INT64_MAX, .ttl_ms = 10000},
        {.type = LEASE_CMD_REVOKE, .id = 1},
        {.type = LEASE_CMD_REVOKE, .id = INT64_MAX},
        {.type = LEASE_CMD_EXPIRE, .id = 5, .granted_index = 1},
        {.type = LEASE_CMD_EXPIRE, .id = 5, .granted_index = UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        check_round_trip(&cmds[i]);
    }
}

static void test_codec_strict(void **state)
{
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    struct lease_cmd d;
    /* Each field's range, from the encoder, with its own error. */
    assert_int_equal(lease_encode_grant(-1, 1000, buf, sizeof buf, &n), LEASE_EINVAL);
    assert_int_equal(lease_encode_grant(0, LEASE_TTL_MS_MIN - 1, buf, sizeof buf, &n),
                     LEASE_ETTLSHORT);
    assert_int_equal(lease_encode_grant(0, LEASE_TTL_MS_MAX + 1, buf, sizeof buf, &n),
                     LEASE_ETTLLONG);
    assert_int_equal(lease_encode_grant(0, -5, buf, sizeof buf, &n), LEASE_ETTLSHORT);
    assert_int_equal(lease_encode_revoke(0, buf, sizeof buf, &n), LEASE_EINVAL);
    assert_int_equal(lease_encode_revoke(-3, buf, sizeof buf, &n), LEASE_EINVAL);
    assert_int_equal(lease_encode_expire(1, 0, buf, sizeof buf, &n), LEASE_EINVAL);
    assert_int_equal(lease_encode_expire(0, 1, buf, sizeof buf, &n), LEASE_EINVAL);
    assert_int_equal(lease_encode_grant(0, 1000, buf, LEASE_CMD_BYTES_MAX - 1, &n), LEASE_EINVAL);
    struct lease_cmd bad = {.type = 9, .id = 1};
    assert_int_equal(lease_encode(&bad, buf, sizeof buf, &n), LEASE_EINVAL);

    /* The same ranges from hand-built bytes: the decoder re-checks. */
    assert_int_equal(lease_encode_grant(0, 1000, buf, sizeof buf, &n), 0);
    le_put_u64(buf + 11, (uint64_t)(LEASE_TTL_MS_MIN - 1));
    assert_int_equal(lease_decode(buf, n, &d), LEASE_ETTLSHORT);
    le_put_u64(buf + 11, (uint64_t)LEASE_TTL_MS_MAX + 1);
    assert_int_equal(lease_decode(buf, n, &d), LEASE_ETTLLONG);
    le_put_u64(buf + 11, 1000);
    le_put_u64(buf + 3, (uint64_t)-1);
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EINVAL);
    le_put_u64(buf + 3, 0);
    assert_int_equal(lease_decode(buf, n, &d), 0);
    buf[0] = 0x12; /* another state machine's tag */
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EMALFORMED);
    buf[0] = LEASE_CMD_TAG;
    buf[1] = 2;
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EFORMAT);
    buf[1] = LEASE_FORMAT_VERSION;
    buf[2] = 4;
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EMALFORMED);
    buf[2] = 0;
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EMALFORMED);
    /* A GRANT's bytes under the REVOKE type have 8 bytes too many. */
    buf[2] = LEASE_CMD_REVOKE;
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EMALFORMED);
    assert_int_equal(lease_decode(NULL, 0, &d), LEASE_EMALFORMED);

    assert_int_equal(lease_encode_expire(3, 9, buf, sizeof buf, &n), 0);
    le_put_u64(buf + 11, 0);
    assert_int_equal(lease_decode(buf, n, &d), LEASE_EINVAL);
}

static void test_codec_random_bytes(void **state)
{
    struct prng p;
    prng_seed(&p, 42);
    uint8_t buf[40];
    unsigned accepted = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = (size_t)prng_below(&p, sizeof buf + 1);
        for (size_t k = 0; k < n; k++) {
            buf[k] = (uint8_t)prng_next(&p);
        }
        if (n >= 3 && prng_chance(&p, 800000)) {
            buf[0] = LEASE_CMD_TAG; /* reach the body often */
            buf[1] = LEASE_FORMAT_VERSION;
            buf[2] = (uint8_t)(1 + prng_below(&p, 3));
        }
        struct lease_cmd d;
        int rv = lease_decode(buf, n, &d);
        if (rv == 0) {
            accepted++;
            uint8_t out[LEASE_CMD_BYTES_MAX];
            size_t m;
            assert_int_equal(lease_encode(&d, out, sizeof out, &m), 0);
            assert_int_equal(m, n); /* canonical: the same bytes */
            assert_memory_equal(out, buf, n);
        } else {
            assert_true(rv <= -2201 && rv >= -2214);
        }
    }
    assert_true(accepted > 100); /* the generator reaches valid commands */
}

/* ==== table ============================================================== */

static void test_grant_allocates_and_never_reuses(void **state)
{
    struct lease_table *t = table_make();
    int64_t a, b, c;
    assert_int_equal(lease_next_id(t), 1);
    assert_int_equal(grant(t, 0, 1000, &a), 0);
    assert_int_equal(grant(t, 0, 1000, &b), 0);
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(grant(t, 100, 2000, &c), 0);
    assert_int_equal(c, 100);
    assert_int_equal(lease_next_id(t), 101);     /* moved past the explicit id */
    assert_int_equal(grant(t, 50, 2000, &c), 0); /* below next_id, unused: allowed */
    assert_int_equal(lease_next_id(t), 101);
    assert_int_equal(grant(t, 100, 2000, NULL), LEASE_EEXISTS);
    assert_int_equal(revoke(t, 2, NULL), 0);
    assert_int_equal(grant(t, 0, 1000, &c), 0);
    assert_int_equal(c, 101); /* 2 is not handed out again */
    assert_int_equal(lease_count(t), 4);

    struct lease_info info;
    assert_int_equal(lease_get(t, 100, &info), 0);
    assert_int_equal(info.ttl_ms, 2000);
    assert_true(info.granted_index >= 1);
    assert_int_equal(lease_get(t, 2, &info), LEASE_ENOTFOUND);
    assert_false(lease_exists(t, 2));
    assert_true(lease_exists(t, 1));

    int64_t ids[8];
    assert_int_equal(lease_list(t, 0, ids, 8), 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 50);
    assert_int_equal(ids[2], 100);
    assert_int_equal(ids[3], 101);
    assert_int_equal(lease_list(t, 50, ids, 1), 1);
    assert_int_equal(ids[0], 100);
    assert_int_equal(lease_list(t, 101, ids, 8), 0);
    lease_free(t);
}

static void test_grant_records_index(void **state)
{
    struct lease_table *t = table_make();
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(lease_encode_grant(0, 5000, buf, sizeof buf, &n), 0);
    struct lease_result res;
    assert_int_equal(lease_apply(t, buf, n, 4242, &res), 0);
    assert_int_equal(res.type, LEASE_CMD_GRANT);
    assert_int_equal(res.granted_index, 4242);
    assert_int_equal(res.ttl_ms, 5000);
    assert_int_equal(res.n_items, 0);
    struct lease_info info;
    assert_int_equal(lease_get(t, res.id, &info), 0);
    assert_int_equal(info.granted_index, 4242);
    lease_result_free(&res);
    lease_result_free(&res); /* twice is safe */
    lease_free(t);
}

static void test_revoke_returns_what_died(void **state)
{
    struct lease_table *t = table_make();
    int64_t id, other;
    assert_int_equal(grant(t, 0, 3000, &id), 0);
    assert_int_equal(grant(t, 0, 3000, &other), 0);
    attach_lock(t, id, "jobs");
    attach_key(t, id, "b");
    attach_key(t, id, "a/1");
    attach_key(t, id, "a");
    attach_lock(t, id, "alpha");
    attach_key(t, id, "a"); /* idempotent */
    attach_key(t, other, "z");
    struct lease_info info;
    assert_int_equal(lease_get(t, id, &info), 0);
    assert_int_equal(info.n_keys, 3);
    assert_int_equal(info.n_locks, 2);
    assert_true(lease_item_attached(t, id, LEASE_ITEM_KEY, B("a/1"), 3));
    assert_false(lease_item_attached(t, id, LEASE_ITEM_LOCK, B("a/1"), 3));

    struct lease_result res;
    assert_int_equal(revoke(t, id, &res), 0);
    assert_false(res.expired);
    assert_int_equal(res.id, id);
    assert_int_equal(res.ttl_ms, 3000);
    assert_int_equal(res.n_items, 5);
    assert_int_equal(res.n_keys, 3);
    assert_int_equal(res.n_locks, 2);
    /* keys first in kv order, then lock names */
    assert_item(&res.items[0], LEASE_ITEM_KEY, "a");
    assert_item(&res.items[1], LEASE_ITEM_KEY, "a/1");
    assert_item(&res.items[2], LEASE_ITEM_KEY, "b");
    assert_item(&res.items[3], LEASE_ITEM_LOCK, "alpha");
    assert_item(&res.items[4], LEASE_ITEM_LOCK, "jobs");
    lease_result_free(&res);
    assert_false(lease_exists(t, id));
    assert_true(lease_item_attached(t, other, LEASE_ITEM_KEY, B("z"), 1));
    assert_int_equal(revoke(t, id, &res), LEASE_ENOTFOUND);
    assert_int_equal(res.type, LEASE_CMD_REVOKE);
    assert_int_equal(res.n_items, 0);
    lease_result_free(&res);
    lease_free(t);
}

static void test_expire_and_stale_expire(void **state)
{
    struct lease_table *t = table_make();
    uint8_t buf[LEASE_CMD_BYTES_MAX];
    size_t n;
    struct lease_result res;
    assert_int_equal(lease_encode_grant(7, 1000, buf, sizeof buf, &n), 0);
    assert_int_equal(lease_apply(t, buf, n, 10, &res), 0);
    lease_result_free(&res);
    attach_key(t, 7, "k");

    /* An EXPIRE naming another grant of id 7 changes nothing. */
    uint64_t before = lease_digest(t);
    assert_int_equal(expire(t, 7, 9, &res), LEASE_ESTALE);
    assert_int_equal(res.n_items, 0);
    lease_result_free(&res);
    assert_int_equal(lease_digest(t), before);

    assert_int_equal(expire(t, 7, 10, &res), 0);
    assert_true(res.expired);
    assert_int_equal(res.granted_index, 10);
    assert_int_equal(res.n_keys, 1);
    assert_item(&res.items[0], LEASE_ITEM_KEY, "k");
    lease_result_free(&res);

    /* Re-granted with the same explicit id: the old EXPIRE is stale now. */
    assert_int_equal(lease_encode_grant(7, 1000, buf, sizeof buf, &n), 0);
    assert_int_equal(lease_apply(t, buf, n, 20, &res), 0);
    lease_result_free(&res);
    assert_int_equal(expire(t, 7, 10, NULL), LEASE_ESTALE);
    assert_true(lease_exists(t, 7));
    assert_int_equal(expire(t, 8, 10, NULL), LEASE_ENOTFOUND);
    lease_free(t);
}

static void test_attach_detach(void **state)
{
    struct lease_table *t = table_make();
    int64_t id;
    assert_int_equal(grant(t, 0, 1000, &id), 0);
    assert_int_equal(lease_attach(t, 99, LEASE_ITEM_KEY, B("k"), 1), LEASE_ENOTFOUND);
    assert_int_equal(lease_attach(t, id, 3, B("k"), 1), LEASE_EINVAL);
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_KEY, B(""), 0), LEASE_EITEMTOOBIG);
    uint8_t *big = calloc(1, LEASE_ITEM_BYTES_MAX + 1);
    assert_non_null(big);
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_KEY, big, LEASE_ITEM_BYTES_MAX + 1),
                     LEASE_EITEMTOOBIG);
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_KEY, big, LEASE_ITEM_BYTES_MAX), 0);
    free(big);
    /* The same bytes under the two kinds are two items. */
    attach_key(t, id, "x");
    attach_lock(t, id, "x");
    struct lease_info info;
    assert_int_equal(lease_get(t, id, &info), 0);
    assert_int_equal(info.n_keys, 2);
    assert_int_equal(info.n_locks, 1);
    assert_int_equal(lease_detach(t, id, LEASE_ITEM_KEY, B("x"), 1), 0);
    assert_int_equal(lease_detach(t, id, LEASE_ITEM_KEY, B("x"), 1), 0); /* not attached: ok */
    assert_int_equal(lease_detach(t, 99, LEASE_ITEM_KEY, B("x"), 1), LEASE_ENOTFOUND);
    assert_true(lease_item_attached(t, id, LEASE_ITEM_LOCK, B("x"), 1));
    assert_false(lease_item_attached(t, id, LEASE_ITEM_KEY, B("x"), 1));
    assert_int_equal(lease_get(t, id, &info), 0);
    assert_int_equal(info.n_keys, 1);
    assert_int_equal(info.n_locks, 1);
    uint32_t room;
    assert_int_equal(lease_room(t, id, &room), 0);
    assert_int_equal(room, LEASE_ITEMS_MAX - 2);
    assert_int_equal(lease_room(t, 99, &room), LEASE_ENOTFOUND);
    lease_free(t);
}

struct collect {
    char seen[16][8];
    uint32_t n;
    uint32_t stop_at;
};

static int collect_cb(void *arg, const struct lease_item *it)
{
    struct collect *c = arg;
    assert_true(it->len < 8);
    memcpy(c->seen[c->n], it->bytes, it->len);
    c->seen[c->n][it->len] = 0;
    c->n++;
    return c->n == c->stop_at ? 7 : 0;
}

static void test_items_paging(void **state)
{
    struct lease_table *t = table_make();
    int64_t id;
    assert_int_equal(grant(t, 0, 1000, &id), 0);
    attach_lock(t, id, "L1");
    attach_key(t, id, "k2");
    attach_key(t, id, "k1");
    struct collect c = {.stop_at = 99};
    assert_int_equal(lease_items(t, id, 0, 10, collect_cb, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.seen[0], "k1");
    assert_string_equal(c.seen[1], "k2");
    assert_string_equal(c.seen[2], "L1");
    memset(&c, 0, sizeof c);
    c.stop_at = 99;
    assert_int_equal(lease_items(t, id, 1, 1, collect_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.seen[0], "k2");
    memset(&c, 0, sizeof c);
    c.stop_at = 2;
    assert_int_equal(lease_items(t, id, 0, 10, collect_cb, &c), 7); /* callback stops it */
    assert_int_equal(c.n, 2);
    assert_int_equal(lease_items(t, 99, 0, 10, collect_cb, &c), LEASE_ENOTFOUND);
    lease_free(t);
}

static void test_errors_change_nothing(void **state)
{
    struct lease_table *t = table_make();
    int64_t id;
    assert_int_equal(grant(t, 0, 1000, &id), 0);
    attach_key(t, id, "k");
    uint64_t d = lease_digest(t);
    uint8_t junk[] = {LEASE_CMD_TAG, LEASE_FORMAT_VERSION, LEASE_CMD_GRANT, 1, 2};
    struct lease_result res;
    assert_int_equal(lease_apply(t, junk, sizeof junk, 5, &res), LEASE_EMALFORMED);
    assert_int_equal(res.type, 0);
    lease_result_free(&res);
    assert_int_equal(grant(t, id, 1000, NULL), LEASE_EEXISTS);
    assert_int_equal(revoke(t, id + 1, NULL), LEASE_ENOTFOUND);
    assert_int_equal(expire(t, id, 999999, NULL), LEASE_ESTALE);
    assert_int_equal(lease_digest(t), d);
    lease_free(t);
}

/* ==== limits ============================================================= */

static void test_limit_lease_count(void **state)
{
    struct lease_table *t = table_make();
    for (uint32_t i = 0; i < LEASE_COUNT_MAX; i++) {
        assert_int_equal(grant(t, 0, 1000, NULL), 0);
    }
    assert_int_equal(lease_count(t), LEASE_COUNT_MAX);
    assert_int_equal(grant(t, 0, 1000, NULL), LEASE_EFULL);
    assert_int_equal(grant(t, 999999999, 1000, NULL), LEASE_EFULL);
    assert_int_equal(revoke(t, 1, NULL), 0);
    assert_int_equal(grant(t, 0, 1000, NULL), 0); /* room again */
    lease_free(t);
}

static void test_limit_items_per_lease(void **state)
{
    struct lease_table *t = table_make();
    int64_t id;
    assert_int_equal(grant(t, 0, 1000, &id), 0);
    char key[16];
    for (uint32_t i = 0; i < LEASE_ITEMS_MAX; i++) {
        snprintf(key, sizeof key, "k%05u", i);
        attach_key(t, id, key);
    }
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_KEY, B("one-more"), 8), LEASE_EITEMSFULL);
    assert_int_equal(lease_item_check(t, id, LEASE_ITEM_LOCK, B("l"), 1), LEASE_EITEMSFULL);
    /* Already attached: still fine, nothing to add. */
    assert_int_equal(lease_attach(t, id, LEASE_ITEM_KEY, B("k00007"), 6), 0);
    assert_int_equal(lease_item_check(t, id, LEASE_ITEM_KEY, B("k00007"), 6), 0);
    uint32_t room;
    assert_int_equal(lease_room(t, id, &room), 0);
    assert_int_equal(room, 0);
    struct lease_result res;
    assert_int_equal(revoke(t, id, &res), 0);
    assert_int_equal(res.n_items, LEASE_ITEMS_MAX);
    assert_item(&res.items[0], LEASE_ITEM_KEY, "k00000");
    assert_item(&res.items[LEASE_ITEMS_MAX - 1], LEASE_ITEM_KEY, "k04095");
    lease_result_free(&res);
    lease_free(t);
}

static void test_limit_id_space(void **state)
{
    struct lease_table *t = table_make();
    assert_int_equal(grant(t, INT64_MAX, 1000, NULL), 0);
    assert_int_equal(lease_next_id(t), 0); /* nothing left to allocate */
    assert_int_equal(grant(t, 0, 1000, NULL), LEASE_EIDSPACE);
    assert_int_equal(grant(t, 5, 1000, NULL), 0);   /* explicit ids still work */
    struct lease_table *u = snapshot_round_trip(t); /* next_id = INT64_MAX + 1 survives */
    assert_int_equal(grant(u, 0, 1000, NULL), LEASE_EIDSPACE);
    lease_free(u);
    lease_free(t);
}

static void test_strerror_names_every_code(void **state)
{
    for (int rv = -2214; rv <= -2201; rv++) {
        assert_string_not_equal(lease_strerror(rv), "unknown lease error");
        for (int other = rv + 1; other <= -2201; other++) {
            assert_string_not_equal(lease_strerror(rv), lease_strerror(other));
        }
    }
    assert_string_equal(lease_strerror(-2299), "unknown lease error");
}

/* ==== snapshots ========================================================== */

static struct lease_table *sample_table(void)
{
    struct lease_table *t = table_make();
    int64_t a, b;
    assert_int_equal(grant(t, 0, 1000, &a), 0);
    assert_int_equal(grant(t, 40, 60000, &b), 0);
    assert_int_equal(grant(t, 0, LEASE_TTL_MS_MAX, NULL), 0);
    attach_key(t, a, "svc/a");
    attach_key(t, a, "svc/b");
    attach_lock(t, a, "leader");
    attach_lock(t, b, "jobs");
    return t;
}

static void test_snapshot_round_trip(void **state)
{
    struct lease_table *t = sample_table();
    struct lease_table *u = snapshot_round_trip(t);
    struct lease_info x, y;
    int64_t ids[8];
    uint32_t k = lease_list(t, 0, ids, 8);
    assert_int_equal(k, 3);
    for (uint32_t i = 0; i < k; i++) {
        assert_int_equal(lease_get(t, ids[i], &x), 0);
        assert_int_equal(lease_get(u, ids[i], &y), 0);
        assert_memory_equal(&x, &y, sizeof x);
    }
    assert_int_equal(lease_next_id(u), lease_next_id(t));
    /* Both continue identically (the same command at the same index). */
    uint8_t cmd[LEASE_CMD_BYTES_MAX];
    size_t n;
    struct lease_result r1, r2;
    assert_int_equal(lease_encode_grant(0, 1000, cmd, sizeof cmd, &n), 0);
    assert_int_equal(lease_apply(t, cmd, n, 500, &r1), 0);
    assert_int_equal(lease_apply(u, cmd, n, 500, &r2), 0);
    assert_int_equal(r1.id, r2.id);
    lease_result_free(&r1);
    lease_result_free(&r2);
    assert_int_equal(lease_digest(t), lease_digest(u));
    /* A change is visible in the digest (the digest can fail). */
    attach_key(u, 40, "new");
    assert_int_not_equal(lease_digest(t), lease_digest(u));
    lease_free(u);
    lease_free(t);

    struct lease_table *empty = table_make();
    u = snapshot_round_trip(empty);
    assert_int_equal(lease_count(u), 0);
    lease_free(u);
    lease_free(empty);
}

static void test_snapshot_every_byte_flip_rejected(void **state)
{
    struct lease_table *t = sample_table();
    uint8_t *buf;
    size_t n;
    assert_int_equal(lease_snapshot_encode(t, &buf, &n), 0);
    struct lease_table *u;
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rv = lease_snapshot_decode(buf, n, &u);
            assert_int_equal(rv, LEASE_ECORRUPT);
            assert_null(u);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t cut = 0; cut < n; cut++) {
        assert_int_equal(lease_snapshot_decode(buf, cut, &u), LEASE_ECORRUPT);
    }
    assert_int_equal(lease_snapshot_decode(buf, n, &u), 0); /* the control decodes */
    lease_free(u);
    free(buf);
    lease_free(t);
}

/* A hand-built image: header, leases, CRC. Each test breaks one rule. */
struct img {
    uint8_t b[512];
    size_t n;
};

static void img_le(struct img *m, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        m->b[m->n++] = (uint8_t)(v >> (8 * i));
    }
}

static void img_header(struct img *m, uint32_t version, uint64_t next_id, uint32_t n_leases)
{
    m->n = 0;
    memcpy(m->b, "CLSE", 4);
    m->n = 4;
    img_le(m, version, 4);
    img_le(m, next_id, 8);
    img_le(m, n_leases, 4);
}

static void img_lease(struct img *m, int64_t id, int64_t ttl, uint64_t gi, uint32_t n_items)
{
    img_le(m, (uint64_t)id, 8);
    img_le(m, (uint64_t)ttl, 8);
    img_le(m, gi, 8);
    img_le(m, n_items, 4);
}

static void img_item(struct img *m, uint8_t kind, const char *s)
{
    img_le(m, kind, 1);
    img_le(m, L(s), 4);
    memcpy(m->b + m->n, s, L(s));
    m->n += L(s);
}

static int img_decode(struct img *m)
{
    le_put_u32(m->b + m->n, crc32c(0, m->b, m->n));
    struct lease_table *t;
    int rv = lease_snapshot_decode(m->b, m->n + 4, &t);
    if (rv == 0) {
        lease_free(t);
    } else {
        assert_null(t);
    }
    return rv;
}

static void test_snapshot_semantic_checks(void **state)
{
    struct img m;
    /* Control: a valid image decodes. */
    img_header(&m, 1, 10, 2);
    img_lease(&m, 3, 1000, 5, 2);
    img_item(&m, LEASE_ITEM_KEY, "a");
    img_item(&m, LEASE_ITEM_LOCK, "a");
    img_lease(&m, 9, 1000, 6, 0);
    assert_int_equal(img_decode(&m), 0);

    img_header(&m, 2, 10, 0);
    assert_int_equal(img_decode(&m), LEASE_EFORMAT);
    img_header(&m, 1, 0, 0); /* next_id 0 */
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, (uint64_t)INT64_MAX + 2, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* claims a lease, has none */
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 0xffffffffu); /* hostile count */
    img_lease(&m, 3, 1000, 5, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 9, 1); /* next_id not above the id */
    img_lease(&m, 9, 1000, 5, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 2); /* ids not ascending */
    img_lease(&m, 5, 1000, 5, 0);
    img_lease(&m, 5, 1000, 5, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* id 0 */
    img_lease(&m, 0, 1000, 5, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* ttl below the minimum */
    img_lease(&m, 1, LEASE_TTL_MS_MIN - 1, 5, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* ttl above the maximum */
    img_lease(&m, 1, LEASE_TTL_MS_MAX + 1, 5, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* granted_index 0 */
    img_lease(&m, 1, 1000, 0, 0);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* duplicate items */
    img_lease(&m, 1, 1000, 1, 2);
    img_item(&m, LEASE_ITEM_KEY, "a");
    img_item(&m, LEASE_ITEM_KEY, "a");
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* items out of order (lock before key) */
    img_lease(&m, 1, 1000, 1, 2);
    img_item(&m, LEASE_ITEM_LOCK, "a");
    img_item(&m, LEASE_ITEM_KEY, "b");
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* unknown item kind */
    img_lease(&m, 1, 1000, 1, 1);
    img_item(&m, 7, "a");
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* empty item */
    img_lease(&m, 1, 1000, 1, 1);
    img_item(&m, LEASE_ITEM_KEY, "");
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* more items than LEASE_ITEMS_MAX */
    img_lease(&m, 1, 1000, 1, LEASE_ITEMS_MAX + 1);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 1); /* trailing byte */
    img_lease(&m, 1, 1000, 1, 0);
    img_le(&m, 0, 1);
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
    img_header(&m, 1, 10, 0);
    memcpy(m.b, "CLSX", 4); /* wrong magic */
    assert_int_equal(img_decode(&m), LEASE_ECORRUPT);
}

/* ==== random model ======================================================= */

#define MODEL_IDS 64

struct model {
    bool live[MODEL_IDS];
    int64_t ttl[MODEL_IDS];
    uint64_t gi[MODEL_IDS];
    uint8_t items[MODEL_IDS]; /* bit i: key "k<i>" (i < 4), bit 4 + i: lock "l<i>" */
    int64_t next_id;
};

static void test_model_random(void **state)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        struct prng p;
        prng_seed(&p, seed);
        struct lease_table *t = table_make();
        struct model m = {.next_id = 1};
        for (int step = 0; step < 20000; step++) {
            unsigned op = (unsigned)prng_below(&p, 10);
            int64_t id = (int64_t)prng_below(&p, MODEL_IDS);
            uint64_t index = g_index;
            if (op < 3) { /* grant, explicit or allocated */
                bool alloc = prng_chance(&p, 500000);
                int64_t ttl = 500 + (int64_t)prng_below(&p, 10000);
                int64_t want = alloc ? m.next_id : id;
                int expect = (want < MODEL_IDS && want > 0 && m.live[want]) ? LEASE_EEXISTS : 0;
                if (want >= MODEL_IDS || (!alloc && id == 0)) {
                    continue; /* keep ids inside the model */
                }
                int64_t got;
                assert_int_equal(grant(t, alloc ? 0 : id, ttl, &got), expect);
                if (expect == 0) {
                    assert_int_equal(got, want);
                    m.live[want] = true;
                    m.ttl[want] = ttl;
                    m.gi[want] = index;
                    m.items[want] = 0;
                    if (want >= m.next_id) {
                        m.next_id = want + 1;
                    }
                }
            } else if (op < 6) { /* attach or detach one of 8 items */
                unsigned bit = (unsigned)prng_below(&p, 8);
                char s[4] = {bit < 4 ? 'k' : 'l', (char)('0' + bit % 4), 0};
                uint8_t kind = bit < 4 ? LEASE_ITEM_KEY : LEASE_ITEM_LOCK;
                int expect = m.live[id] ? 0 : LEASE_ENOTFOUND;
                if (op < 5) {
                    assert_int_equal(lease_attach(t, id, kind, B(s), 2), expect);
                    if (expect == 0) {
                        m.items[id] |= (uint8_t)(1u << bit);
                    }
                } else {
                    assert_int_equal(lease_detach(t, id, kind, B(s), 2), expect);
                    if (expect == 0) {
                        m.items[id] &= (uint8_t) ~(1u << bit);
                    }
                }
            } else if (op < 9) { /* revoke or expire (sometimes stale) */
                struct lease_result res;
                bool exp = op == 8;
                id = id == 0 ? 1 : id;
                uint64_t gi = m.live[id] ? m.gi[id] : 1;
                bool stale = exp && prng_chance(&p, 200000);
                int expect = !m.live[id] ? LEASE_ENOTFOUND : stale ? LEASE_ESTALE : 0;
                int rv = exp ? expire(t, id, stale ? gi + 1 : gi, &res) : revoke(t, id, &res);
                assert_int_equal(rv, expect);
                if (expect == 0) {
                    assert_int_equal(res.expired, exp);
                    assert_int_equal(res.ttl_ms, m.ttl[id]);
                    uint32_t want_n = 0;
                    for (unsigned bit = 0; bit < 8; bit++) {
                        if (m.items[id] & (1u << bit)) {
                            const struct lease_item *it = &res.items[want_n++];
                            assert_int_equal(it->kind, bit < 4 ? LEASE_ITEM_KEY : LEASE_ITEM_LOCK);
                            assert_int_equal(it->bytes[1], '0' + bit % 4);
                        }
                    }
                    assert_int_equal(res.n_items, want_n);
                    m.live[id] = false;
                }
                lease_result_free(&res);
            } else { /* snapshot and carry on with the copy */
                struct lease_table *u = snapshot_round_trip(t);
                lease_free(t);
                t = u;
            }
            uint32_t n_live = 0;
            for (int i = 0; i < MODEL_IDS; i++) {
                n_live += m.live[i];
            }
            assert_int_equal(lease_count(t), n_live);
            assert_int_equal(lease_next_id(t), m.next_id);
        }
        lease_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trips),
        cmocka_unit_test(test_codec_strict),
        cmocka_unit_test(test_codec_random_bytes),
        cmocka_unit_test(test_grant_allocates_and_never_reuses),
        cmocka_unit_test(test_grant_records_index),
        cmocka_unit_test(test_revoke_returns_what_died),
        cmocka_unit_test(test_expire_and_stale_expire),
        cmocka_unit_test(test_attach_detach),
        cmocka_unit_test(test_items_paging),
        cmocka_unit_test(test_errors_change_nothing),
        cmocka_unit_test(test_limit_lease_count),
        cmocka_unit_test(test_limit_items_per_lease),
        cmocka_unit_test(test_limit_id_space),
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_every_byte_flip_rejected),
        cmocka_unit_test(test_snapshot_semantic_checks),
        cmocka_unit_test(test_model_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
