/* test_watch.c -- unit tests for the pure parts of api/watch: the group index (exact
 * and prefix matching, checked against a brute force over random groups and keys), the
 * SSE bytes of events (exact output), the reference-counted buffers and their memory
 * account, the per-watcher queue, and the admission rule that cuts slow watchers.
 * The hub itself (node observer, streams) is covered by tests/integration/test_watch.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/watch.h"
#include "base/prng.h"

/* ---- index ------------------------------------------------------------------------- */

struct hits {
    struct watch_group *g[64];
    uint32_t n;
};

static void collect(void *arg, struct watch_group *g)
{
    struct hits *h = arg;
    assert_true(h->n < 64);
    h->g[h->n++] = g;
}

static struct watch_group *ref(struct watch_index *ix, uint8_t kind, const char *s)
{
    struct watch_group *g = NULL;
    assert_int_equal(watch_index_ref(ix, kind, (const uint8_t *)s, (uint32_t)strlen(s), &g), 0);
    assert_non_null(g);
    return g;
}

static struct hits match(struct watch_index *ix, const char *key)
{
    struct hits h = {.n = 0};
    watch_index_match(ix, (const uint8_t *)key, (uint32_t)strlen(key), collect, &h);
    return h;
}

static void test_index_exact_and_prefix(void **state)
{
    struct watch_index ix;
    assert_int_equal(watch_index_init(&ix), 0);
    struct watch_group *all = ref(&ix, WATCH_KIND_PREFIX, "");
    struct watch_group *a = ref(&ix, WATCH_KIND_PREFIX, "a");
    struct watch_group *ab = ref(&ix, WATCH_KIND_PREFIX, "ab");
    struct watch_group *k_ab = ref(&ix, WATCH_KIND_KEY, "ab");
    struct watch_group *k_abc = ref(&ix, WATCH_KIND_KEY, "abc");
    struct watch_group *b = ref(&ix, WATCH_KIND_PREFIX, "b");
    assert_int_equal(ix.n_groups, 6);
    assert_int_equal(ix.n_prefix_groups, 4);

    struct hits h = match(&ix, "abc"); /* prefixes shortest first, the exact key last */
    assert_int_equal(h.n, 4);
    assert_ptr_equal(h.g[0], all);
    assert_ptr_equal(h.g[1], a);
    assert_ptr_equal(h.g[2], ab);
    assert_ptr_equal(h.g[3], k_abc);
    h = match(&ix, "ab"); /* a prefix matches the key equal to it */
    assert_int_equal(h.n, 4);
    assert_ptr_equal(h.g[2], ab);
    assert_ptr_equal(h.g[3], k_ab);
    h = match(&ix, "ba");
    assert_int_equal(h.n, 2);
    assert_ptr_equal(h.g[1], b);
    h = match(&ix, "c");
    assert_int_equal(h.n, 1);
    assert_ptr_equal(h.g[0], all);

    /* a second reference shares the group; the last unref removes it */
    assert_ptr_equal(ref(&ix, WATCH_KIND_PREFIX, "a"), a);
    assert_int_equal(a->refs, 2);
    watch_index_unref(&ix, a);
    assert_int_equal(match(&ix, "abc").n, 4);
    watch_index_unref(&ix, a);
    assert_null(watch_index_find(&ix, WATCH_KIND_PREFIX, (const uint8_t *)"a", 1));
    assert_int_equal(match(&ix, "abc").n, 3);
    /* kinds do not mix: a KEY "ab" is not a PREFIX "ab" */
    watch_index_unref(&ix, ab);
    h = match(&ix, "abc");
    assert_int_equal(h.n, 2);
    assert_ptr_equal(h.g[1], k_abc);
    assert_int_equal(match(&ix, "ab").n, 2);

    watch_index_unref(&ix, all);
    watch_index_unref(&ix, k_ab);
    watch_index_unref(&ix, k_abc);
    watch_index_unref(&ix, b);
    assert_int_equal(ix.n_groups, 0);
    assert_int_equal(match(&ix, "abc").n, 0);
    watch_index_fini(&ix);
}

static void test_index_errors(void **state)
{
    struct watch_index ix;
    assert_int_equal(watch_index_init(&ix), 0);
    struct watch_group *g = NULL;
    assert_int_equal(watch_index_ref(&ix, WATCH_KIND_KEY, NULL, 0, &g), WATCH_EINVAL);
    assert_int_equal(watch_index_ref(&ix, WATCH_KIND_LEASE, (const uint8_t *)"1234", 4, &g),
                     WATCH_EINVAL);
    assert_int_equal(watch_index_ref(&ix, 9, (const uint8_t *)"x", 1, &g), WATCH_EINVAL);
    uint8_t *big = calloc(1, WATCH_KEY_BYTES_MAX + 1);
    assert_non_null(big);
    assert_int_equal(watch_index_ref(&ix, WATCH_KIND_PREFIX, big, WATCH_KEY_BYTES_MAX + 1, &g),
                     WATCH_EKEYTOOBIG);
    /* the longest prefix and key still work, and match each other */
    memset(big, 'x', WATCH_KEY_BYTES_MAX);
    struct watch_group *p = NULL, *k = NULL;
    assert_int_equal(watch_index_ref(&ix, WATCH_KIND_PREFIX, big, WATCH_KEY_BYTES_MAX, &p), 0);
    assert_int_equal(watch_index_ref(&ix, WATCH_KIND_KEY, big, WATCH_KEY_BYTES_MAX, &k), 0);
    struct hits h = {.n = 0};
    watch_index_match(&ix, big, WATCH_KEY_BYTES_MAX, collect, &h);
    assert_int_equal(h.n, 2);
    assert_ptr_equal(h.g[0], p);
    assert_ptr_equal(h.g[1], k);
    /* lease groups never match keys, even 8-byte ones equal to their id bytes */
    struct watch_group *l = NULL;
    assert_int_equal(watch_index_ref(&ix, WATCH_KIND_LEASE, (const uint8_t *)"12345678", 8, &l), 0);
    h.n = 0;
    watch_index_match(&ix, (const uint8_t *)"12345678", 8, collect, &h);
    assert_int_equal(h.n, 0);
    assert_ptr_equal(watch_index_find(&ix, WATCH_KIND_LEASE, (const uint8_t *)"12345678", 8), l);
    watch_index_unref(&ix, l);
    watch_index_unref(&ix, p);
    watch_index_unref(&ix, k);
    free(big);
    watch_index_fini(&ix);
}

static void assert_span(const struct watch_group *g, const char *rkey, uint32_t rkey_len,
                        const char *rend, uint32_t rend_len)
{
    assert_int_equal(g->rkey_len, rkey_len);
    assert_memory_equal(g->rkey, rkey, rkey_len);
    assert_int_equal(g->rend_len, rend_len);
    if (rend_len)
        assert_memory_equal(g->rend, rend, rend_len);
}

/* The spans handed to kv_history_since / kv_range. */
static void test_index_ranges(void **state)
{
    struct watch_index ix;
    assert_int_equal(watch_index_init(&ix), 0);
    struct watch_group *g[5];
    g[0] = ref(&ix, WATCH_KIND_KEY, "ab");
    assert_span(g[0], "ab", 2, NULL, 0);
    g[1] = ref(&ix, WATCH_KIND_PREFIX, "ab");
    assert_span(g[1], "ab", 2, "ac", 2);
    g[2] = ref(&ix, WATCH_KIND_PREFIX, "a\xff");
    assert_span(g[2], "a\xff", 2, "b", 1);
    g[3] = ref(&ix, WATCH_KIND_PREFIX, "\xff\xff");
    assert_span(g[3], "\xff\xff", 2, "\0", 1); /* no end: every key from the prefix on */
    g[4] = ref(&ix, WATCH_KIND_PREFIX, "");
    assert_span(g[4], "\0", 1, "\0", 1); /* everything */
    for (int i = 0; i < 5; i++)
        watch_index_unref(&ix, g[i]);
    watch_index_fini(&ix);
}

/* Random groups over a 3-letter alphabet (many shared prefixes), random keys; every
 * match must equal the brute force, through adds, removals and bucket growth. */
#define RND_GROUPS 300
static void test_index_random_vs_bruteforce(void **state)
{
    struct prng rng;
    prng_seed(&rng, 0x5eed);
    struct watch_index ix;
    assert_int_equal(watch_index_init(&ix), 0);
    struct {
        struct watch_group *g;
        uint8_t kind;
        char s[8];
        uint32_t len;
    } gs[RND_GROUPS];
    memset(gs, 0, sizeof(gs));
    uint32_t n = 0;
    for (int round = 0; round < 4000; round++) {
        uint64_t op = prng_below(&rng, 10);
        if (op < 3 && n < RND_GROUPS) {
            gs[n].kind = prng_below(&rng, 2) ? WATCH_KIND_PREFIX : WATCH_KIND_KEY;
            gs[n].len = (uint32_t)prng_below(&rng, 6) + (gs[n].kind == WATCH_KIND_KEY);
            for (uint32_t i = 0; i < gs[n].len; i++)
                gs[n].s[i] = (char)('a' + prng_below(&rng, 3));
            assert_int_equal(
                watch_index_ref(&ix, gs[n].kind, (uint8_t *)gs[n].s, gs[n].len, &gs[n].g), 0);
            n++;
        } else if (op < 5 && n > 0) {
            uint32_t k = (uint32_t)prng_below(&rng, n);
            watch_index_unref(&ix, gs[k].g);
            gs[k] = gs[--n];
        } else {
            char key[8];
            uint32_t klen = (uint32_t)prng_below(&rng, 7) + 1;
            for (uint32_t i = 0; i < klen; i++)
                key[i] = (char)('a' + prng_below(&rng, 3));
            struct hits h = {.n = 0};
            watch_index_match(&ix, (uint8_t *)key, klen, collect, &h);
            /* brute force: distinct groups among the holders that match */
            uint32_t expect = 0;
            for (uint32_t i = 0; i < n; i++) {
                bool m = gs[i].kind == WATCH_KIND_KEY
                             ? gs[i].len == klen && memcmp(gs[i].s, key, klen) == 0
                             : gs[i].len <= klen && memcmp(gs[i].s, key, gs[i].len) == 0;
                bool dup = false;
                for (uint32_t j = 0; j < i; j++)
                    dup |= gs[j].g == gs[i].g;
                if (!m || dup)
                    continue;
                expect++;
                bool found = false;
                for (uint32_t j = 0; j < h.n; j++)
                    found |= h.g[j] == gs[i].g;
                assert_true(found);
            }
            assert_int_equal(h.n, expect);
            for (uint32_t j = 0; j + 1 < h.n; j++) /* each group once, prefixes by length */
                assert_true(
                    h.g[j] && h.g[j + 1] && h.g[j] != h.g[j + 1] &&
                    (h.g[j + 1]->kind == WATCH_KIND_KEY || h.g[j]->key_len < h.g[j + 1]->key_len));
        }
    }
    while (n > 0)
        watch_index_unref(&ix, gs[--n].g);
    assert_int_equal(ix.n_groups, 0);
    assert_int_equal(ix.n_prefix_groups, 0);
    watch_index_fini(&ix);
}

/* ---- SSE bytes --------------------------------------------------------------------- */

static void assert_buf(const struct watch_buf *b, const char *want)
{
    if (b->n != strlen(want) || memcmp(b->bytes, want, b->n) != 0) {
        print_error("got  %.*s\nwant %s\n", (int)b->n, (const char *)b->bytes, want);
        fail();
    }
}

static struct kv_event put_ev(const char *k, const char *v, int64_t rev, int64_t create,
                              int64_t version, int64_t lease)
{
    struct kv_event e;
    memset(&e, 0, sizeof(e));
    e.type = KV_EVENT_PUT;
    e.kv.key = (const uint8_t *)k;
    e.kv.key_len = (uint32_t)strlen(k);
    e.kv.value = (const uint8_t *)v;
    e.kv.value_len = (uint32_t)strlen(v);
    e.kv.create_revision = create;
    e.kv.mod_revision = rev;
    e.kv.version = version;
    e.kv.lease = lease;
    return e;
}

static void test_sse_revision_exact(void **state)
{
    uint64_t acct = 0;
    struct watch_buf *b = watch_buf_new(16, &acct);
    assert_non_null(b);
    struct kv_event e1 = put_ev("a", "x\"y\n", 9, 3, 2, 7);
    struct kv_event e2;
    memset(&e2, 0, sizeof(e2));
    e2.type = KV_EVENT_DELETE;
    e2.kv.key = (const uint8_t *)"b";
    e2.kv.key_len = 1;
    e2.kv.mod_revision = 9;
    assert_true(watch_sse_rev_begin(&b, 9, e1.type));
    assert_true(watch_sse_rev_add(&b, &e1, true));
    assert_true(watch_sse_rev_add(&b, &e2, false));
    assert_true(watch_sse_rev_end(&b));
    assert_buf(b, "id: 9\nevent: put\ndata: {\"revision\":9,\"events\":["
                  "{\"type\":\"put\",\"kv\":{\"key\":\"a\",\"value\":\"x\\\"y\\n\","
                  "\"create_revision\":3,\"mod_revision\":9,\"version\":2,\"lease\":7}},"
                  "{\"type\":\"delete\",\"key\":\"b\",\"mod_revision\":9}]}\n\n");
    assert_true(acct >= b->n);
    watch_buf_unref(b);
    assert_int_equal(acct, 0);

    /* a revision that starts with a delete is named after it */
    b = watch_buf_new(0, NULL);
    assert_true(watch_sse_rev_begin(&b, 4, KV_EVENT_DELETE));
    assert_true(watch_sse_rev_add(&b, &e2, true));
    assert_true(watch_sse_rev_end(&b));
    assert_true(b->n > 20 && memcmp(b->bytes, "id: 4\nevent: delete\ndata: ", 26) == 0);
    watch_buf_unref(b);
}

/* Bytes that are not UTF-8, or hold NUL, travel as *_base64; the data line stays one
 * line whatever the value holds, and parses back. */
static void test_sse_binary_and_one_line(void **state)
{
    static const uint8_t key[] = {0xff, 0x00, 'k'};
    static const char val[] = "line1\nline2\r\n";
    struct kv_event e = put_ev("", val, 5, 5, 1, 0);
    e.kv.key = key;
    e.kv.key_len = sizeof(key);
    struct watch_buf *b = watch_buf_new(0, NULL);
    assert_true(watch_sse_rev_begin(&b, 5, e.type));
    assert_true(watch_sse_rev_add(&b, &e, true));
    assert_true(watch_sse_rev_end(&b));
    const char *data = strstr((const char *)b->bytes, "data: ");
    assert_non_null(data);
    data += 6;
    size_t len = b->n - (size_t)(data - (const char *)b->bytes);
    assert_int_equal(memcmp(data + len - 2, "\n\n", 2), 0);
    assert_null(memchr(data, '\n', len - 2)); /* one data line */
    assert_null(memchr(data, '\r', len - 2));
    json_error_t jerr;
    json_t *j = json_loadb(data, len - 2, 0, &jerr);
    assert_non_null(j);
    json_t *kv = json_object_get(json_array_get(json_object_get(j, "events"), 0), "kv");
    assert_string_equal(json_string_value(json_object_get(kv, "key_base64")), "/wBr");
    assert_null(json_object_get(kv, "key"));
    assert_string_equal(json_string_value(json_object_get(kv, "value")), val);
    json_decref(j);
    watch_buf_unref(b);
}

static void test_sse_json_and_kv(void **state)
{
    struct watch_buf *b = watch_buf_new(0, NULL);
    json_t *j = json_object();
    json_object_set_new(j, "revision", json_integer(7));
    assert_true(watch_sse_json(&b, 7, "progress", j));
    assert_buf(b, "id: 7\nevent: progress\ndata: {\"revision\":7}\n\n");
    watch_buf_unref(b);

    b = watch_buf_new(0, NULL);
    j = json_object();
    json_object_set_new(j, "lease", json_integer(3));
    assert_true(watch_sse_json(&b, -1, "lease", j)); /* no id: it does not move the resume point */
    assert_buf(b, "event: lease\ndata: {\"lease\":3}\n\n");
    assert_false(watch_sse_json(&b, 1, "x", NULL));
    watch_buf_unref(b);

    b = watch_buf_new(0, NULL);
    struct kv_event e = put_ev("k", "", 8, 2, 3, 0);
    e.kv.value = NULL; /* an empty value */
    assert_true(watch_sse_kv(&b, &e.kv));
    assert_buf(b, "{\"key\":\"k\",\"value\":\"\",\"create_revision\":2,\"mod_revision\":8,"
                  "\"version\":3,\"lease\":0}");
    watch_buf_unref(b);
}

static void test_buf_account_and_refs(void **state)
{
    uint64_t acct = 0;
    struct watch_buf *b = watch_buf_new(64, &acct);
    assert_int_equal(acct, 64);
    char big[1000];
    memset(big, 'z', sizeof(big));
    assert_true(watch_buf_append(&b, big, sizeof(big))); /* grows: the account follows */
    assert_int_equal(acct, b->cap);
    assert_true(b->cap >= 1000);
    watch_buf_ref(b);
    watch_buf_unref(b);
    assert_int_equal(acct, b->cap); /* still one holder */
    watch_buf_unref(b);
    assert_int_equal(acct, 0);
    watch_buf_unref(NULL);
}

/* ---- queue and admission ------------------------------------------------------------ */

static struct watch_buf *filled(uint64_t *acct, char c, size_t n)
{
    struct watch_buf *b = watch_buf_new(n, acct);
    char tmp[256];
    assert_true(n <= sizeof(tmp));
    memset(tmp, c, n);
    assert_true(watch_buf_append(&b, tmp, n));
    return b;
}

static void test_queue_order_pieces_and_refs(void **state)
{
    uint64_t acct = 0;
    struct watch_queue q;
    memset(&q, 0, sizeof(q));
    struct watch_buf *bufs[40];
    for (int i = 0; i < 40; i++) {
        bufs[i] = filled(&acct, (char)('A' + i % 26), 10 + (size_t)i);
        assert_true(watch_queue_push(&q, bufs[i]));
        assert_int_equal(bufs[i]->refs, 2);
    }
    struct watch_buf *empty = watch_buf_new(0, &acct);
    assert_true(watch_queue_push(&q, empty)); /* nothing to send: not queued */
    assert_int_equal(empty->refs, 1);
    watch_buf_unref(empty);
    size_t total = 0;
    for (int i = 0; i < 40; i++)
        total += 10 + (size_t)i;
    assert_int_equal(q.bytes, total);
    /* drain in 7-byte pieces: bytes come out in order, each buffer released once done;
     * halfway, 5 buffers are queued again (the array compacts), so 45 in all */
    int order[45];
    for (int i = 0; i < 45; i++)
        order[i] = i < 40 ? i : i - 40;
    int at = 0;
    size_t at_off = 0;
    bool pushed_again = false;
    const uint8_t *p;
    size_t n;
    for (int guard = 0; guard < 10000 && watch_queue_peek(&q, &p, &n); guard++) {
        assert_true(at < 45);
        size_t k = n < 7 ? n : 7;
        for (size_t i = 0; i < k; i++)
            assert_int_equal(p[i], 'A' + order[at] % 26);
        watch_queue_consume(&q, k);
        at_off += k;
        if (at_off == 10 + (size_t)order[at]) {
            at++;
            at_off = 0;
            if (at <= 40)
                assert_int_equal(bufs[at - 1]->refs, at - 1 < 5 && pushed_again ? 2 : 1);
        }
        if (at == 20 && !pushed_again) {
            pushed_again = true;
            for (int i = 0; i < 5; i++)
                assert_true(watch_queue_push(&q, bufs[i]));
        }
    }
    assert_int_equal(at, 45);
    assert_int_equal(q.bytes, 0);
    assert_int_equal(q.n, 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(bufs[i]->refs, 1);
    /* peek_at sees each queued buffer, the head from its offset, for gathered writes */
    assert_true(watch_queue_push(&q, bufs[2]));
    assert_true(watch_queue_push(&q, bufs[3]));
    watch_queue_consume(&q, 4);
    assert_true(watch_queue_peek_at(&q, 0, &p, &n));
    assert_int_equal(n, 12 - 4);
    assert_ptr_equal(p, bufs[2]->bytes + 4);
    assert_true(watch_queue_peek_at(&q, 1, &p, &n));
    assert_int_equal(n, 13);
    assert_ptr_equal(p, bufs[3]->bytes);
    assert_false(watch_queue_peek_at(&q, 2, &p, &n));
    watch_queue_clear(&q);
    assert_int_equal(bufs[2]->refs, 1);
    /* clear drops the references still queued */
    assert_true(watch_queue_push(&q, bufs[0]));
    assert_true(watch_queue_push(&q, bufs[1]));
    watch_queue_clear(&q);
    assert_int_equal(bufs[0]->refs, 1);
    assert_int_equal(q.bytes, 0);
    for (int i = 0; i < 40; i++)
        watch_buf_unref(bufs[i]);
    assert_int_equal(acct, 0);
}

static void test_admit(void **state)
{
    /* a watcher that keeps up (empty queue) is never cut, whatever the event's size */
    assert_int_equal(watch_admit(0, (size_t)WATCH_QUEUE_BYTES_MAX * 4u, UINT64_MAX), 0);
    assert_int_equal(watch_admit(1, WATCH_QUEUE_BYTES_MAX - 1, 0), 0);
    assert_int_equal(watch_admit(1, WATCH_QUEUE_BYTES_MAX, 0), WATCH_ESLOW);
    assert_int_equal(watch_admit(WATCH_QUEUE_BYTES_MAX, 1, 0), WATCH_ESLOW);
    assert_int_equal(watch_admit(100, 100, WATCH_BUF_BYTES_TOTAL_MAX), 0);
    assert_int_equal(watch_admit(100, 100, WATCH_BUF_BYTES_TOTAL_MAX + 1ull), WATCH_EMEMORY);
    assert_string_equal(watch_strerror(WATCH_ESLOW),
                        "the client reads too slowly: its queue is full");
    assert_string_equal(watch_strerror(-1), "unknown watch error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_exact_and_prefix),
        cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_index_ranges),
        cmocka_unit_test(test_index_random_vs_bruteforce),
        cmocka_unit_test(test_sse_revision_exact),
        cmocka_unit_test(test_sse_binary_and_one_line),
        cmocka_unit_test(test_sse_json_and_kv),
        cmocka_unit_test(test_buf_account_and_refs),
        cmocka_unit_test(test_queue_order_pieces_and_refs),
        cmocka_unit_test(test_admit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
