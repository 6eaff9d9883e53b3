/* test_idgen_idseg.c -- unit tests for sm/idgen/idseg, the segment state machine.
 *
 * Scenarios pin the CREATE/UPDATE/ALLOC semantics and every limit's own error. Codec
 * tests check the envelope (machine tag 0x13, version), strictness (truncation,
 * trailing bytes, unknown bits) and that random or flipped bytes never crash and,
 * when they decode, re-encode to the same bytes. Snapshot tests round-trip, reject
 * every corrupted byte and well-checksummed nonsense. The random run drives two
 * replicas (one restored from a snapshot halfway) with the same commands and checks
 * equal digests and that every allocated range is disjoint from every other.
 *
 * Sections: helpers | scenarios | limits | codec | results | snapshots | replicas.
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
#include "sm/idgen/idseg.h"

#define S(s) (s), strlen(s)

/* ==== helpers ============================================================ */

static int create(struct idseg *s, const char *tag, int64_t initial, int64_t step, int64_t t)
{
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    int rv = idseg_encode_create(S(tag), initial, step, t, buf, sizeof buf, &n);
    if (rv != 0) {
        return rv;
    }
    struct idseg_result res;
    return idseg_apply(s, buf, n, &res);
}

static int alloc(struct idseg *s, const char *tag, int64_t count, int64_t t, int64_t *start,
                 int64_t *end)
{
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    int rv = idseg_encode_alloc(S(tag), count, t, buf, sizeof buf, &n);
    if (rv != 0) {
        return rv;
    }
    struct idseg_result res;
    rv = idseg_apply(s, buf, n, &res);
    assert_int_equal(rv, res.err);
    if (rv == 0) {
        assert_int_equal(res.type, IDSEG_CMD_ALLOC);
        assert_int_equal(res.max_id, res.end);
        *start = res.start;
        *end = res.end;
    }
    return rv;
}

static int update(struct idseg *s, const char *tag, bool set_step, int64_t step, bool set_max,
                  int64_t max_id, int64_t t)
{
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    int rv = idseg_encode_update(S(tag), set_step, step, set_max, max_id, t, buf, sizeof buf, &n);
    if (rv != 0) {
        return rv;
    }
    struct idseg_result res;
    return idseg_apply(s, buf, n, &res);
}

static struct idseg *make(void)
{
    struct idseg *s;
    assert_int_equal(idseg_new(&s), 0);
    return s;
}

/* ==== scenarios ========================================================== */

static void test_create_alloc_update(void **state)
{
    struct idseg *s = make();
    int64_t a, b;
    assert_int_equal(create(s, "order", 1, 1000, 100), 0);
    assert_int_equal(create(s, "order", 5, 10, 101), IDSEG_EEXISTS);
    assert_int_equal(alloc(s, "order", 0, 102, &a, &b), 0); /* the tag's step */
    assert_int_equal(a, 1);
    assert_int_equal(b, 1001);
    assert_int_equal(alloc(s, "order", 5, 103, &a, &b), 0);
    assert_int_equal(a, 1001);
    assert_int_equal(b, 1006);
    assert_int_equal(update(s, "order", true, 50, false, 0, 104), 0);
    assert_int_equal(alloc(s, "order", 0, 105, &a, &b), 0);
    assert_int_equal(a, 1006);
    assert_int_equal(b, 1056);
    assert_int_equal(update(s, "order", false, 0, true, 5000, 106), 0);
    assert_int_equal(alloc(s, "order", 1, 107, &a, &b), 0);
    assert_int_equal(a, 5000);
    assert_int_equal(b, 5001);
    assert_int_equal(update(s, "order", false, 0, true, 4999, 108), IDSEG_EBACKWARD);
    assert_int_equal(update(s, "order", false, 0, true, 5001, 108), 0); /* equal: a no-op */
    assert_int_equal(alloc(s, "nope", 1, 109, &a, &b), IDSEG_ENOTFOUND);
    assert_int_equal(update(s, "nope", true, 5, false, 0, 109), IDSEG_ENOTFOUND);

    struct idseg_tag_info info;
    assert_int_equal(idseg_get(s, S("order"), &info), 0);
    assert_string_equal(info.tag, "order");
    assert_int_equal(info.max_id, 5001);
    assert_int_equal(info.step, 50);
    assert_int_equal(info.created_ms, 100);
    assert_int_equal(info.updated_ms, 108);
    assert_int_equal(info.n_allocs, 4);
    assert_int_equal(idseg_get(s, S("nope"), &info), IDSEG_ENOTFOUND);

    /* ordering and paging */
    assert_int_equal(create(s, "b", 1, 1, 0), 0);
    assert_int_equal(create(s, "a", 1, 1, 0), 0);
    assert_int_equal(create(s, "ab", 1, 1, 0), 0);
    assert_int_equal(idseg_count(s), 4);
    const char *want[] = {"a", "ab", "b", "order"};
    for (uint32_t i = 0; i < 4; i++) {
        idseg_at(s, i, &info);
        assert_string_equal(info.tag, want[i]);
    }
    assert_int_equal(idseg_lower_bound(s, S("aa")), 1);
    assert_int_equal(idseg_lower_bound(s, S("ab")), 1);
    assert_int_equal(idseg_lower_bound(s, S("z")), 4);
    idseg_free(s);
}

/* ==== limits ============================================================= */

static void test_limits_have_their_own_errors(void **state)
{
    struct idseg *s = make();
    char big[IDSEG_TAG_BYTES_MAX + 2];
    memset(big, 'x', sizeof big);
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    assert_int_equal(idseg_encode_create("", 0, 1, 1, 0, buf, sizeof buf, &n), IDSEG_ETAGEMPTY);
    assert_int_equal(
        idseg_encode_create(big, IDSEG_TAG_BYTES_MAX + 1, 1, 1, 0, buf, sizeof buf, &n),
        IDSEG_ETAGTOOBIG);
    assert_int_equal(idseg_encode_create(big, IDSEG_TAG_BYTES_MAX, 1, 1, 0, buf, sizeof buf, &n),
                     0);
    assert_int_equal(n, 3 + 8 + 1 + IDSEG_TAG_BYTES_MAX + 16);
    assert_int_equal(create(s, "a/b", 1, 1, 0), IDSEG_ETAGCHAR);
    assert_int_equal(create(s, "a b", 1, 1, 0), IDSEG_ETAGCHAR);
    assert_int_equal(create(s, "ok.tag_1:x-y", 1, 1, 0), 0);
    assert_int_equal(create(s, "t", 1, 0, 0), IDSEG_ESTEP);
    assert_int_equal(create(s, "t", 1, IDSEG_STEP_MAX + 1, 0), IDSEG_ESTEP);
    assert_int_equal(create(s, "t", 0, 1, 0), IDSEG_EINITIAL);
    assert_int_equal(create(s, "t", 1, 1, -1), IDSEG_EINVAL);
    assert_int_equal(create(s, "t", 1, IDSEG_STEP_MAX, 0), 0);
    int64_t a, b;
    assert_int_equal(alloc(s, "t", -1, 0, &a, &b), IDSEG_ECOUNT);
    assert_int_equal(alloc(s, "t", IDSEG_COUNT_MAX + 1, 0, &a, &b), IDSEG_ECOUNT);
    assert_int_equal(alloc(s, "t", IDSEG_COUNT_MAX, 0, &a, &b), 0);
    assert_int_equal(update(s, "t", false, 0, false, 0, 0), IDSEG_EINVAL);
    assert_int_equal(update(s, "t", true, 0, false, 0, 0), IDSEG_ESTEP);
    assert_int_equal(update(s, "t", false, 0, true, 0, 0), IDSEG_EINITIAL);
    assert_int_equal(idseg_encode_alloc("t", 1, 1, 0, buf, 5, &n), IDSEG_EINVAL); /* small cap */

    /* the end of the id space */
    assert_int_equal(create(s, "end", INT64_MAX - 10, 5, 0), 0);
    assert_int_equal(alloc(s, "end", 10, 0, &a, &b), 0);
    assert_int_equal(b, INT64_MAX);
    assert_int_equal(alloc(s, "end", 1, 0, &a, &b), IDSEG_EEXHAUSTED);
    struct idseg_tag_info info;
    assert_int_equal(idseg_get(s, S("end"), &info), 0);
    assert_int_equal(info.max_id, INT64_MAX); /* unchanged by the failure */
    idseg_free(s);

    /* the number of tags */
    s = make();
    for (uint32_t i = 0; i < IDSEG_TAGS_MAX; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "t%06u", i);
        assert_int_equal(create(s, tag, 1, 1, 0), 0);
    }
    assert_int_equal(create(s, "one-more", 1, 1, 0), IDSEG_ETOOMANY);
    assert_int_equal(create(s, "t000007", 1, 1, 0), IDSEG_EEXISTS);
    assert_int_equal(idseg_count(s), IDSEG_TAGS_MAX);
    assert_string_equal(idseg_strerror(IDSEG_ETOOMANY), "IDSEG_TAGS_MAX tags exist");
    idseg_free(s);
}

/* ==== codec ============================================================== */

static void test_envelope_and_strictness(void **state)
{
    uint8_t buf[IDSEG_CMD_BYTES_MAX + 8];
    size_t n;
    struct idseg_cmd c;
    assert_int_equal(idseg_encode_update(S("tag"), true, 7, true, 99, 1234, buf, sizeof buf, &n),
                     0);
    assert_int_equal(buf[0], 0x13);
    assert_int_equal(buf[1], IDSEG_FORMAT_VERSION);
    assert_int_equal(buf[2], IDSEG_CMD_UPDATE);
    assert_int_equal(idseg_cmd_decode(buf, n, &c), 0);
    assert_int_equal(c.type, IDSEG_CMD_UPDATE);
    assert_int_equal(c.time_ms, 1234);
    assert_true(c.set_step && c.set_max_id);
    assert_int_equal(c.step, 7);
    assert_int_equal(c.max_id, 99);
    assert_memory_equal(c.tag, "tag", 3);

    /* every truncation */
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(idseg_cmd_decode(buf, k, &c), IDSEG_EMALFORMED);
    }
    /* a trailing byte */
    buf[n] = 0;
    assert_int_equal(idseg_cmd_decode(buf, n + 1, &c), IDSEG_EMALFORMED);
    /* other machines' commands */
    uint8_t save = buf[0];
    const uint8_t others[] = {0x01, 0x10, 0x11, 0x12, 0x14, 0x00};
    for (size_t i = 0; i < sizeof others; i++) {
        buf[0] = others[i];
        assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_EMACHINE);
    }
    buf[0] = save;
    buf[1] = 2;
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_EFORMAT);
    buf[1] = IDSEG_FORMAT_VERSION;
    buf[2] = 4; /* unknown type */
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_EMALFORMED);
    buf[2] = IDSEG_CMD_UPDATE;
    size_t flags_at = 3 + 8 + 1 + 3;
    assert_int_equal(buf[flags_at], 3);
    buf[flags_at] = 7; /* an unknown flag bit */
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_EMALFORMED);
    buf[flags_at] = 1; /* claims fewer fields than present: trailing bytes */
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_EMALFORMED);
    buf[flags_at] = 0; /* no field at all */
    assert_int_equal(idseg_cmd_decode(buf, n - 16, &c), IDSEG_EINVAL);

    /* a well-formed command that breaks a limit gets the limit's error */
    assert_int_equal(idseg_encode_alloc(S("tag"), 1, 0, buf, sizeof buf, &n), 0);
    le_put_u64(buf + n - 8, (uint64_t)IDSEG_COUNT_MAX + 1);
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_ECOUNT);
    le_put_u64(buf + n - 8, 1);
    buf[3 + 8 + 1] = '/';
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_ETAGCHAR);
    buf[3 + 8] = 0; /* tag length 0, the tag's bytes now trail... */
    assert_int_equal(idseg_cmd_decode(buf, n, &c), IDSEG_EMALFORMED);
    assert_int_equal(idseg_cmd_decode(NULL, 0, &c), IDSEG_EMALFORMED);

    /* apply reports decode errors as results and changes nothing */
    struct idseg *s = make();
    struct idseg_result res;
    uint64_t d0 = idseg_digest(s);
    uint8_t kv_cmd[] = {0x01, 1, 1, 0};
    assert_int_equal(idseg_apply(s, kv_cmd, sizeof kv_cmd, &res), IDSEG_EMACHINE);
    assert_int_equal(res.err, IDSEG_EMACHINE);
    assert_int_equal(res.type, 0);
    assert_int_equal(idseg_digest(s), d0);
    idseg_free(s);
}

/* Random and bit-flipped inputs: no crash, and anything that decodes is canonical. */
static void test_decode_random_and_flipped(void **state)
{
    struct prng r;
    prng_seed(&r, 77);
    uint8_t buf[IDSEG_CMD_BYTES_MAX + 4], again[IDSEG_CMD_BYTES_MAX];
    size_t n, m;
    struct idseg_cmd c;
    uint32_t n_ok = 0;
    for (int iter = 0; iter < 200000; iter++) {
        if (iter % 2 == 0) {
            n = 3 + prng_below(&r, sizeof buf - 3);
            for (size_t i = 0; i < n; i++) {
                buf[i] = (uint8_t)prng_next(&r);
            }
            buf[0] = 0x13;
            buf[1] = 1;
        } else {
            int kind = (int)prng_below(&r, 3);
            int rv = kind == 0 ? idseg_encode_create(S("abc"), 5, 9, 1, buf, sizeof buf, &n)
                     : kind == 1
                         ? idseg_encode_update(S("abc"), true, 3, false, 0, 1, buf, sizeof buf, &n)
                         : idseg_encode_alloc(S("abc"), 4, 1, buf, sizeof buf, &n);
            assert_int_equal(rv, 0);
            size_t at = prng_below(&r, n);
            buf[at] ^= (uint8_t)(1u << prng_below(&r, 8));
        }
        if (idseg_cmd_decode(buf, n, &c) == 0) {
            n_ok++;
            assert_int_equal(idseg_cmd_encode(&c, again, sizeof again, &m), 0);
            assert_int_equal(m, n);
            assert_memory_equal(again, buf, n);
        }
    }
    assert_true(n_ok > 1000); /* flips in values still decode */
}

/* ==== results ============================================================ */

static void test_result_codec(void **state)
{
    struct idseg_result a = {.err = 0,
                             .type = IDSEG_CMD_ALLOC,
                             .start = 10,
                             .end = 20,
                             .max_id = 20,
                             .step = 10},
                        b;
    uint8_t buf[IDSEG_RESULT_BYTES];
    idseg_encode_result(&a, buf);
    assert_int_equal(idseg_decode_result(buf, sizeof buf, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    a = (struct idseg_result){.err = IDSEG_ENOTFOUND, .type = IDSEG_CMD_ALLOC};
    idseg_encode_result(&a, buf);
    assert_int_equal(idseg_decode_result(buf, sizeof buf, &b), 0);
    assert_int_equal(b.err, IDSEG_ENOTFOUND);
    assert_int_equal(idseg_decode_result(buf, sizeof buf - 1, &b), IDSEG_EMALFORMED);
    buf[0] = 9;
    assert_int_equal(idseg_decode_result(buf, sizeof buf, &b), IDSEG_EFORMAT);
    buf[0] = 1;
    le_put_u32(buf + 2, 5); /* positive error */
    assert_int_equal(idseg_decode_result(buf, sizeof buf, &b), IDSEG_ECORRUPT);
}

/* ==== snapshots ========================================================== */

static void test_snapshot_round_trip_and_corruption(void **state)
{
    struct idseg *s = make(), *t;
    uint8_t *img, *img2;
    size_t n, n2;
    /* empty */
    assert_int_equal(idseg_snapshot_encode(s, &img, &n), 0);
    assert_int_equal(idseg_snapshot_decode(img, n, &t), 0);
    assert_int_equal(idseg_count(t), 0);
    assert_int_equal(idseg_digest(t), idseg_digest(s));
    idseg_free(t);
    free(img);

    int64_t a, b;
    assert_int_equal(create(s, "zeta", 100, 10, 1), 0);
    assert_int_equal(create(s, "alpha", 1, 1000, 2), 0);
    assert_int_equal(create(s, "mid", 7, 3, 3), 0);
    assert_int_equal(alloc(s, "alpha", 0, 4, &a, &b), 0);
    assert_int_equal(idseg_snapshot_encode(s, &img, &n), 0);
    assert_int_equal(idseg_snapshot_decode(img, n, &t), 0);
    assert_int_equal(idseg_digest(t), idseg_digest(s));
    assert_int_equal(idseg_snapshot_encode(t, &img2, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(img, img2, n); /* canonical */
    free(img2);
    /* the restored store goes on where the original stopped */
    assert_int_equal(alloc(t, "alpha", 0, 5, &a, &b), 0);
    assert_int_equal(a, 1001);
    idseg_free(t);

    /* every single corrupted byte and every truncation is refused */
    for (size_t i = 0; i < n; i++) {
        img[i] ^= 0x20;
        assert_int_equal(idseg_snapshot_decode(img, n, &t), IDSEG_ECORRUPT);
        assert_null(t);
        img[i] ^= 0x20;
    }
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(idseg_snapshot_decode(img, k, &t), IDSEG_ECORRUPT);
    }
    free(img);
    idseg_free(s);
}

/* Images with a valid checksum whose content breaks an invariant. */
static void test_snapshot_checks_content(void **state)
{
    struct idseg *t;
    uint8_t img[256];
    struct {
        const char *what;
        const char *tag1, *tag2;
        int64_t max_id, step;
        uint32_t n_tags;
        uint8_t version;
        int want;
    } cases[] = {
        {"valid", "a", "b", 1, 1, 2, 1, 0},
        {"unordered", "b", "a", 1, 1, 2, 1, IDSEG_ECORRUPT},
        {"duplicate", "a", "a", 1, 1, 2, 1, IDSEG_ECORRUPT},
        {"bad tag", "a", "b/", 1, 1, 2, 1, IDSEG_ECORRUPT},
        {"max_id 0", "a", "b", 0, 1, 2, 1, IDSEG_ECORRUPT},
        {"step 0", "a", "b", 1, 0, 2, 1, IDSEG_ECORRUPT},
        {"count too big", "a", "b", 1, 1, 3, 1, IDSEG_ECORRUPT},
        {"count too small", "a", "b", 1, 1, 1, 1, IDSEG_ECORRUPT},
        {"version", "a", "b", 1, 1, 2, 2, IDSEG_EFORMAT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = 0;
        memcpy(img, "CIDS", 4);
        img[4] = cases[c].version;
        le_put_u32(img + 5, cases[c].n_tags);
        n = 9;
        const char *tags[2] = {cases[c].tag1, cases[c].tag2};
        for (int k = 0; k < 2; k++) {
            img[n++] = (uint8_t)strlen(tags[k]);
            memcpy(img + n, tags[k], strlen(tags[k]));
            n += strlen(tags[k]);
            le_put_u64(img + n, (uint64_t)cases[c].max_id);
            le_put_u64(img + n + 8, (uint64_t)cases[c].step);
            le_put_u64(img + n + 16, 1);
            le_put_u64(img + n + 24, 2);
            le_put_u64(img + n + 32, 3);
            n += 40;
        }
        le_put_u32(img + n, crc32c(0, img, n));
        n += 4;
        int rv = idseg_snapshot_decode(img, n, &t);
        if (rv != cases[c].want) {
            fail_msg("%s: got %d, want %d", cases[c].what, rv, cases[c].want);
        }
        if (rv == 0) {
            struct idseg_tag_info info;
            assert_int_equal(idseg_get(t, S("b"), &info), 0);
            assert_int_equal(info.n_allocs, 3);
            idseg_free(t);
        }
    }
}

/* ==== replicas =========================================================== */

#define RUN_TAGS 5

struct range {
    int64_t start, end;
};

static int cmp_range(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Two replicas fed the same random commands (valid and invalid) agree on every result
 * and digest; a third restored from a snapshot halfway catches up and agrees too.
 * Every range ever allocated for a tag is disjoint from every other. */
static void test_replicas_agree_and_ranges_disjoint(void **state)
{
    static const char *tags[RUN_TAGS] = {"a", "order", "user", "pay:2024", "missing"};
    struct prng r;
    prng_seed(&r, 2024);
    struct idseg *x = make(), *y = make(), *z = NULL;
    enum { N_CMDS = 20000 };
    struct range *ranges[RUN_TAGS];
    uint32_t n_ranges[RUN_TAGS] = {0};
    for (int k = 0; k < RUN_TAGS; k++) {
        ranges[k] = malloc(sizeof(struct range) * N_CMDS);
        assert_non_null(ranges[k]);
    }
    uint8_t buf[IDSEG_CMD_BYTES_MAX];
    size_t n;
    uint32_t n_err = 0;
    for (int i = 0; i < N_CMDS; i++) {
        int k = (int)prng_below(&r, RUN_TAGS);
        const char *tag = tags[k];
        int64_t t = i;
        uint64_t kind = prng_below(&r, 100);
        int rv;
        if (kind < 3 && k != 4) {
            rv = idseg_encode_create(S(tag), 1 + (int64_t)prng_below(&r, 1000),
                                     1 + (int64_t)prng_below(&r, 5000), t, buf, sizeof buf, &n);
        } else if (kind < 8) {
            rv = idseg_encode_update(S(tag), prng_chance(&r, 500000),
                                     1 + (int64_t)prng_below(&r, 900), true,
                                     (int64_t)prng_below(&r, 4000000), t, buf, sizeof buf, &n);
            if (rv == IDSEG_EINITIAL) {
                rv = idseg_encode_update(S(tag), true, 10, false, 0, t, buf, sizeof buf, &n);
            }
        } else {
            rv = idseg_encode_alloc(S(tag), (int64_t)prng_below(&r, 3000), t, buf, sizeof buf, &n);
        }
        assert_int_equal(rv, 0);
        struct idseg_result rx, ry, rz;
        int ex = idseg_apply(x, buf, n, &rx);
        int ey = idseg_apply(y, buf, n, &ry);
        assert_int_equal(ex, ey);
        assert_memory_equal(&rx, &ry, sizeof rx);
        if (z != NULL) {
            assert_int_equal(idseg_apply(z, buf, n, &rz), ex);
            assert_memory_equal(&rx, &rz, sizeof rx);
        }
        if (ex != 0) {
            n_err++;
        } else if (rx.type == IDSEG_CMD_ALLOC) {
            assert_true(rx.start < rx.end);
            ranges[k][n_ranges[k]++] = (struct range){rx.start, rx.end};
        }
        if (i == N_CMDS / 2) {
            uint8_t *img;
            size_t img_n;
            assert_int_equal(idseg_snapshot_encode(x, &img, &img_n), 0);
            assert_int_equal(idseg_snapshot_decode(img, img_n, &z), 0);
            free(img);
        }
        if (i % 1000 == 0) {
            assert_int_equal(idseg_digest(x), idseg_digest(y));
        }
    }
    assert_int_equal(idseg_digest(x), idseg_digest(y));
    assert_int_equal(idseg_digest(x), idseg_digest(z));
    assert_true(n_err > 100); /* missing tags, EBACKWARD, EEXISTS */
    uint32_t total = 0;
    for (int k = 0; k < RUN_TAGS; k++) {
        qsort(ranges[k], n_ranges[k], sizeof(struct range), cmp_range);
        for (uint32_t i = 1; i < n_ranges[k]; i++) {
            if (ranges[k][i].start < ranges[k][i - 1].end) {
                fail_msg("tag %s: [%lld,%lld) overlaps [%lld,%lld)", tags[k],
                         (long long)ranges[k][i].start, (long long)ranges[k][i].end,
                         (long long)ranges[k][i - 1].start, (long long)ranges[k][i - 1].end);
            }
        }
        total += n_ranges[k];
        free(ranges[k]);
    }
    assert_int_equal(n_ranges[4], 0);
    assert_true(total > 10000);
    idseg_free(x);
    idseg_free(y);
    idseg_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_alloc_update),
        cmocka_unit_test(test_limits_have_their_own_errors),
        cmocka_unit_test(test_envelope_and_strictness),
        cmocka_unit_test(test_decode_random_and_flipped),
        cmocka_unit_test(test_result_codec),
        cmocka_unit_test(test_snapshot_round_trip_and_corruption),
        cmocka_unit_test(test_snapshot_checks_content),
        cmocka_unit_test(test_replicas_agree_and_ranges_disjoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
