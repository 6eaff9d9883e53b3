/* test_resp_proto.c -- unit tests for api/resp_proto: the RESP request parser and the
 * reply encoder.
 *
 * Parser: a pipelined buffer of every request form gives the same commands whether it
 * is fed at once, a byte at a time, or split at every pair of points; inline quoting
 * follows Redis's sdssplitargs; every limit and every malformed input gives its own
 * code and Redis's exact text, at every split, and is terminal; announced lengths
 * allocate nothing; memory shrinks when idle; random commands round-trip; random
 * garbage never crashes or hangs. Encoder: byte-exact RESP2 and RESP3 for every
 * writer, deferred headers, the output cap and its accounting.
 *
 * Sections: helpers | parser: forms and splits | parser: inline | parser: errors and
 * limits | parser: memory | parser: random | integers | encoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/resp_proto.h"
#include "base/prng.h"

/* ==== helpers ============================================================ */

/* A transcript: every command as "<argc>:" then "<len>=<bytes>;" per argument, then
 * "|" -- and at the end "#<final code>". Two parses agree iff their transcripts do. */
struct tr {
    char *s;
    size_t len, cap;
};

static void tr_put(struct tr *t, const void *p, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t ncap = t->cap ? t->cap : 256;
        while (ncap < t->len + n + 1) {
            ncap *= 2;
        }
        t->s = realloc(t->s, ncap);
        assert_non_null(t->s);
        t->cap = ncap;
    }
    memcpy(t->s + t->len, p, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void tr_fmt(struct tr *t, const char *fmt, ...)
{
    char b[64];
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    tr_put(t, b, (size_t)n);
}

static void tr_cmd(struct tr *t, const struct resp_cmd *c)
{
    tr_fmt(t, "%u:", c->argc);
    for (uint32_t i = 0; i < c->argc; i++) {
        tr_fmt(t, "%zu=", c->argv[i].len);
        tr_put(t, c->argv[i].ptr, c->argv[i].len);
        tr_put(t, ";", 1);
    }
    tr_put(t, "|", 1);
}

/* Pulls every ready command into t; returns the code that stopped it. */
static int drain(struct resp_parser *p, struct tr *t)
{
    struct resp_cmd c;
    int rv;
    for (int guard = 0; guard < 1000000; guard++) {
        rv = resp_parser_next(p, &c);
        if (rv != 0) {
            return rv;
        }
        assert_true(c.argc >= 1);
        tr_cmd(t, &c);
    }
    fail_msg("drain did not stop");
    return 0;
}

/* Feeds buf in pieces ending at cuts[0..n_cuts) (ascending) and then the rest, draining
 * after each piece. Returns the transcript (caller frees .s). */
static struct tr parse_split(const struct resp_limits *lim, const void *buf, size_t n,
                             const size_t *cuts, size_t n_cuts)
{
    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, lim), 0);
    struct tr t = {0};
    tr_put(&t, "", 0);
    size_t from = 0;
    int rv = RESP_EAGAIN;
    for (size_t i = 0; i <= n_cuts; i++) {
        const size_t to = i < n_cuts ? cuts[i] : n;
        const int frv = resp_parser_feed(&p, (const char *)buf + from, to - from);
        if (frv != 0) {
            rv = frv;
            break;
        }
        from = to;
        rv = drain(&p, &t);
        if (rv != RESP_EAGAIN) {
            break;
        }
    }
    tr_fmt(&t, "#%d", rv);
    resp_parser_free(&p);
    return t;
}

static struct tr parse_once(const struct resp_limits *lim, const void *buf, size_t n)
{
    return parse_split(lim, buf, n, NULL, 0);
}

/* Parses s and expects exactly the given transcript (commands and final code). */
static void expect_parse(const char *s, size_t n, const char *want)
{
    struct tr t = parse_once(NULL, s, n);
    if (strcmp(t.s, want) != 0) {
        fail_msg("parse of %zu bytes:\n got  %s\n want %s", n, t.s, want);
    }
    free(t.s);
}

/* Parses s with lim and expects the terminal error code and Redis's text. */
static void expect_error(const struct resp_limits *lim, const char *s, size_t n, int code,
                         const char *msg)
{
    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, lim), 0);
    struct tr t = {0};
    int rv = resp_parser_feed(&p, s, n);
    if (rv == 0) {
        rv = drain(&p, &t);
    }
    if (rv != code) {
        fail_msg("input %.40s...: got %d (%s), want %d (%s)", s, rv, resp_strerror(rv), code,
                 resp_strerror(code));
    }
    assert_string_equal(resp_parser_errmsg(&p), msg);
    /* terminal: every later call says the same */
    struct resp_cmd c;
    assert_int_equal(resp_parser_next(&p, &c), code);
    assert_int_equal(resp_parser_feed(&p, "PING\r\n", 6), code);
    void *b;
    size_t room;
    assert_int_equal(resp_parser_reserve(&p, 10, &b, &room), code);
    assert_int_equal(resp_parser_next(&p, &c), code);
    free(t.s);
    resp_parser_free(&p);
}

#define S(lit) (lit), (sizeof(lit) - 1)

static void small_limits(struct resp_limits *lim)
{
    resp_limits_default(lim);
    lim->inline_bytes_max = 16;
    lim->arg_bytes_max = 100;
    lim->multibulk_max = 4;
    lim->query_bytes_max = lim->arg_bytes_max + 2 * lim->inline_bytes_max;
}

/* ==== parser: forms and splits ============================================ */

/* Every request form in one pipelined buffer: multibulk, binary bulk data holding CR,
 * LF and NUL, empty bulks, empty requests (*0, *-1, blank lines), inline with quotes,
 * LF-only and CRLF inline endings. */
static const char pipeline[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
                               "*0\r\n"
                               "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                               "*-1\r\n"
                               "PING\r\n"
                               "\r\n"
                               "\n"
                               "set \"a b\" 'c d' \"\\x41\\n\"\n"
                               "*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\0c\r\n"
                               "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n"
                               "   ECHO    spaced\t\ttabs  \r\n"
                               "*1\r\n$4\r\nPING\r\n";

static const char pipeline_want[] = "3:3=SET;1=k;5=hello;|"
                                    "2:3=GET;1=k;|"
                                    "1:4=PING;|"
                                    "4:3=set;3=a b;3=c d;2=A\n;|"
                                    "2:4=ECHO;6=a\r\nb\0c;|"
                                    "3:3=SET;0=;0=;|"
                                    "3:4=ECHO;6=spaced;4=tabs;|"
                                    "1:4=PING;|"
                                    "#-1951";

static void test_pipeline_forms(void **state)
{
    (void)state;
    struct tr t = parse_once(NULL, pipeline, sizeof(pipeline) - 1);
    assert_int_equal(t.len, sizeof(pipeline_want) - 1);
    assert_memory_equal(t.s, pipeline_want, t.len);
    free(t.s);
}

static void test_pipeline_every_split(void **state)
{
    (void)state;
    const size_t n = sizeof(pipeline) - 1;
    struct tr ref = parse_once(NULL, pipeline, n);
    /* one cut anywhere, and every pair of cuts */
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            const size_t cuts[2] = {i, j};
            struct tr t = parse_split(NULL, pipeline, n, cuts, 2);
            if (t.len != ref.len || memcmp(t.s, ref.s, t.len) != 0) {
                fail_msg("cuts %zu,%zu differ", i, j);
            }
            free(t.s);
        }
    }
    /* a byte at a time */
    size_t *cuts = malloc(n * sizeof(*cuts));
    for (size_t i = 0; i < n; i++) {
        cuts[i] = i;
    }
    struct tr t = parse_split(NULL, pipeline, n, cuts, n);
    assert_int_equal(t.len, ref.len);
    assert_memory_equal(t.s, ref.s, t.len);
    free(t.s);
    free(cuts);
    free(ref.s);
}

/* Negative control: the transcript comparison notices a changed byte. */
static void test_transcript_detects_change(void **state)
{
    (void)state;
    char copy[sizeof(pipeline)];
    memcpy(copy, pipeline, sizeof(pipeline));
    copy[9] = 'X'; /* the first command's name: "SET" -> "SXT" */
    struct tr a = parse_once(NULL, pipeline, sizeof(pipeline) - 1);
    struct tr b = parse_once(NULL, copy, sizeof(copy) - 1);
    assert_true(a.len != b.len || memcmp(a.s, b.s, a.len) != 0);
    free(a.s);
    free(b.s);
}

/* The commands of one feed stay readable together until the next feed, and views of
 * the last command are exactly the bytes sent. */
static void test_views_and_reserve(void **state)
{
    (void)state;
    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, NULL), 0);
    const char *msg = "*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
    size_t left = strlen(msg);
    const char *src = msg;
    /* libuv style: reserve, copy at most 5 bytes, commit */
    while (left > 0) {
        void *b;
        size_t room;
        assert_int_equal(resp_parser_reserve(&p, 5, &b, &room), 0);
        assert_true(room >= 1);
        const size_t k = left < 5 ? left : 5;
        memcpy(b, src, k);
        resp_parser_commit(&p, k);
        src += k;
        left -= k;
    }
    struct resp_cmd c;
    assert_int_equal(resp_parser_next(&p, &c), 0);
    assert_int_equal(c.argc, 2);
    assert_false(c.is_inline);
    assert_int_equal(c.argv[1].len, 11);
    assert_memory_equal(c.argv[1].ptr, "hello world", 11);
    assert_int_equal(resp_parser_next(&p, &c), RESP_EAGAIN);
    assert_int_equal(resp_parser_buffered(&p), 0);
    assert_int_equal(resp_parser_feed(&p, S("ping\r\n")), 0);
    assert_int_equal(resp_parser_next(&p, &c), 0);
    assert_true(c.is_inline);
    assert_int_equal(c.argc, 1);
    assert_memory_equal(c.argv[0].ptr, "ping", 4);
    resp_parser_free(&p);
}

/* ==== parser: inline ====================================================== */

static void test_inline_quoting(void **state)
{
    (void)state;
    expect_parse(S("SET k \"hello world\"\r\n"), "3:3=SET;1=k;11=hello world;|#-1951");
    expect_parse(S("SET k \"a\\x41\\x7a\\n\\r\\t\\b\\a\"\n"),
                 "3:3=SET;1=k;8=aAz\n\r\t\b\a;|#-1951");
    expect_parse(S("SET 'it\\'s' v\n"), "3:3=SET;4=it's;1=v;|#-1951");
    expect_parse(S("SET k 'no \\n escapes'\n"), "3:3=SET;1=k;13=no \\n escapes;|#-1951");
    expect_parse(S("ab\"cd\" x\n"), "2:4=abcd;1=x;|#-1951");             /* a quote mid-word */
    expect_parse(S("GET \"\"\n"), "1:3=GET;|#-1951");                    /* empty words dropped */
    expect_parse(S("\"\" ''\n"), "#-1951");                              /* ...all of them */
    expect_parse(S("E \"\\xzz\" \"\\q\"\n"), "3:1=E;3=xzz;1=q;|#-1951"); /* not hex: plain escape */
    expect_parse(S("E \"a\\\"b\"\n"), "2:1=E;3=a\"b;|#-1951");
    expect_parse(S("E \"x\"\t'y'\n"), "3:1=E;1=x;1=y;|#-1951"); /* tab after a quote */
    expect_parse(S("GET a\0b c\r\n"), "2:3=GET;1=a;|#-1951");   /* NUL ends the line */
    expect_parse(S("a\rb\n"), "2:1=a;1=b;|#-1951");             /* inner CR splits */
    expect_parse(S("PING\n"), "1:4=PING;|#-1951");
    expect_parse(S("PING"), "#-1951"); /* no newline yet */
}

static void test_inline_unbalanced(void **state)
{
    (void)state;
    const char *msg = "Protocol error: unbalanced quotes in request";
    expect_error(NULL, S("SET k \"unterminated\r\n"), RESP_EQUOTES, msg);
    expect_error(NULL, S("SET k 'unterminated\n"), RESP_EQUOTES, msg);
    expect_error(NULL, S("SET k \"a\"b\n"), RESP_EQUOTES, msg);
    expect_error(NULL, S("SET k 'a'b\n"), RESP_EQUOTES, msg);
    expect_error(NULL, S("SET k \"abc\\\n"), RESP_EQUOTES, msg);
    /* the command before the bad line still comes out */
    expect_parse(S("PING\n\"x\n"), "1:4=PING;|#-1964");
}

/* ==== parser: errors and limits =========================================== */

static void test_multibulk_errors(void **state)
{
    (void)state;
    const char *mb = "Protocol error: invalid multibulk length";
    const char *bl = "Protocol error: invalid bulk length";
    expect_error(NULL, S("*abc\r\n"), RESP_EMBULKLEN, mb);
    expect_error(NULL, S("*01\r\n"), RESP_EMBULKLEN, mb);
    expect_error(NULL, S("*+1\r\n"), RESP_EMBULKLEN, mb);
    expect_error(NULL, S("*\r\n"), RESP_EMBULKLEN, mb);
    expect_error(NULL, S("*1\rX"), RESP_EMBULKLEN, mb);
    expect_error(NULL, S("*1048577\r\n"), RESP_EMBULKTOOMANY, mb);
    expect_error(NULL, S("*1\r\n:5\r\n"), RESP_EDOLLAR, "Protocol error: expected '$', got ':'");
    expect_error(NULL, S("*1\r\n\r\n"), RESP_EDOLLAR, "Protocol error: expected '$', got ' '");
    expect_error(NULL, S("*2\r\n$3\r\nGET\r\nx\r\n"), RESP_EDOLLAR,
                 "Protocol error: expected '$', got 'x'");
    expect_error(NULL, S("*1\r\n$-1\r\n"), RESP_EBULKLEN, bl);
    expect_error(NULL, S("*1\r\n$abc\r\n"), RESP_EBULKLEN, bl);
    expect_error(NULL, S("*1\r\n$3\rX"), RESP_EBULKLEN, bl);
    expect_error(NULL, S("*1\r\n$99999999999999999999\r\n"), RESP_EBULKLEN, bl);
    expect_error(NULL, S("*1\r\n$536870913\r\n"), RESP_EBULKTOOBIG, bl);
    expect_error(NULL, S("*1\r\n$3\r\nabcXY"), RESP_EBULKEND,
                 "Protocol error: bulk data not followed by CRLF");
    char want[RESP_ERRMSG_BYTES];
    snprintf(want, sizeof(want),
             "Protocol error: invalid bulk length (2000000 bytes is over the %llu-byte "
             "argument limit)",
             (unsigned long long)RESP_ARG_BYTES_DEFAULT);
    expect_error(NULL, S("*1\r\n$2000000\r\n"), RESP_EARGTOOBIG, want);
    /* the largest default argument is fine (header only: the data is not needed) */
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "*1\r\n$%llu\r\n", (unsigned long long)RESP_ARG_BYTES_DEFAULT);
    expect_parse(hdr, strlen(hdr), "#-1951");
}

/* A header or inline line longer than the limit fails with its own text, whatever the
 * split; one exactly at the limit passes. */
static void test_line_limits(void **state)
{
    (void)state;
    const size_t big = RESP_INLINE_BYTES_MAX + 10;
    char *s = malloc(big + 16);
    memset(s, 'a', big);
    expect_error(NULL, s, big, RESP_EINLINETOOBIG, "Protocol error: too big inline request");
    s[0] = '*';
    memset(s + 1, '1', big - 1);
    expect_error(NULL, s, big, RESP_EMBULKHDR, "Protocol error: too big mbulk count string");
    memcpy(s, "*1\r\n$", 5);
    expect_error(NULL, s, big, RESP_EBULKHDR, "Protocol error: too big bulk count string");
    /* at the limit: RESP_INLINE_BYTES_MAX bytes before the \n */
    memset(s, 'a', RESP_INLINE_BYTES_MAX);
    s[RESP_INLINE_BYTES_MAX] = '\n';
    struct tr t = parse_once(NULL, s, RESP_INLINE_BYTES_MAX + 1);
    char want[64];
    snprintf(want, sizeof(want), "1:%u=", RESP_INLINE_BYTES_MAX);
    assert_memory_equal(t.s, want, strlen(want));
    assert_string_equal(t.s + t.len - 6, "#-1951");
    free(t.s);
    /* one more byte fails, fed whole or a byte short of the newline */
    memset(s, 'a', RESP_INLINE_BYTES_MAX + 1);
    s[RESP_INLINE_BYTES_MAX + 1] = '\n';
    expect_error(NULL, s, RESP_INLINE_BYTES_MAX + 2, RESP_EINLINETOOBIG,
                 "Protocol error: too big inline request");
    const size_t cut = RESP_INLINE_BYTES_MAX + 1;
    t = parse_split(NULL, s, RESP_INLINE_BYTES_MAX + 2, &cut, 1);
    assert_string_equal(t.s, "#-1963");
    free(t.s);
    free(s);
}

/* Configured (lowered) limits, each at its boundary. */
static void test_configured_limits(void **state)
{
    (void)state;
    struct resp_limits lim;
    small_limits(&lim);
    /* multibulk_max = 4 */
    struct tr t = parse_once(&lim, S("*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n"));
    assert_string_equal(t.s, "4:1=a;1=b;1=c;1=d;|#-1951");
    free(t.s);
    expect_error(&lim, S("*5\r\n"), RESP_EMBULKTOOMANY, "Protocol error: invalid multibulk length");
    /* arg_bytes_max = 100 */
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "*1\r\n$100\r\n%0100d\r\n", 0);
    t = parse_once(&lim, buf, (size_t)n);
    assert_int_equal(strncmp(t.s, "1:100=", 6), 0);
    free(t.s);
    expect_error(&lim, S("*1\r\n$101\r\n"), RESP_EARGTOOBIG,
                 "Protocol error: invalid bulk length (101 bytes is over the 100-byte argument "
                 "limit)");
    /* inline_bytes_max = 16: 16 bytes + \r\n passes (the \r counts), 17 fail */
    t = parse_once(&lim, S("PING 0123456789\r\n"));
    assert_string_equal(t.s, "2:4=PING;10=0123456789;|#-1951");
    free(t.s);
    expect_error(&lim, S("PING 01234567890\r\n"), RESP_EINLINETOOBIG,
                 "Protocol error: too big inline request");
    expect_error(&lim, S("*1\r\n$12345678901234567\r\n"), RESP_EBULKHDR,
                 "Protocol error: too big bulk count string");
}

static void test_unauthenticated_limits(void **state)
{
    (void)state;
    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, NULL), 0);
    resp_parser_set_authenticated(&p, false);
    assert_int_equal(resp_parser_feed(&p, S("*2\r\n$4\r\nAUTH\r\n$16384\r\n")), 0);
    struct resp_cmd c;
    assert_int_equal(resp_parser_next(&p, &c), RESP_EAGAIN); /* 16384 is allowed */
    resp_parser_free(&p);

    assert_int_equal(resp_parser_init(&p, NULL), 0);
    resp_parser_set_authenticated(&p, false);
    assert_int_equal(resp_parser_feed(&p, S("*10\r\n")), 0);
    assert_int_equal(resp_parser_next(&p, &c), RESP_EAGAIN);
    resp_parser_free(&p);

    assert_int_equal(resp_parser_init(&p, NULL), 0);
    resp_parser_set_authenticated(&p, false);
    assert_int_equal(resp_parser_feed(&p, S("*11\r\n")), 0);
    assert_int_equal(resp_parser_next(&p, &c), RESP_EUNAUTHMBULK);
    assert_string_equal(resp_parser_errmsg(&p), "Protocol error: unauthenticated multibulk length");
    resp_parser_free(&p);

    assert_int_equal(resp_parser_init(&p, NULL), 0);
    resp_parser_set_authenticated(&p, false);
    assert_int_equal(resp_parser_feed(&p, S("*1\r\n$16385\r\n")), 0);
    assert_int_equal(resp_parser_next(&p, &c), RESP_EUNAUTHBULK);
    assert_string_equal(resp_parser_errmsg(&p), "Protocol error: unauthenticated bulk length");
    resp_parser_free(&p);

    /* after AUTH the ordinary limits apply again */
    assert_int_equal(resp_parser_init(&p, NULL), 0);
    resp_parser_set_authenticated(&p, false);
    resp_parser_set_authenticated(&p, true);
    assert_int_equal(resp_parser_feed(&p, S("*11\r\n")), 0);
    assert_int_equal(resp_parser_next(&p, &c), RESP_EAGAIN);
    resp_parser_free(&p);
}

/* Every error input gives the same code and transcript at every split point. */
static void test_errors_every_split(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "PING\r\n*abc\r\n",           "*1\r\n$3\r\nGET\r\n*1\r\n:5\r\n",
        "*2\r\n$3\r\nGET\r\n$-1\r\n", "*1\r\n$3\r\nabcXY",
        "SET \"x\r\nPING\r\n",        "*1\r\n$536870913\r\n",
    };
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
        const size_t n = strlen(inputs[k]);
        struct tr ref = parse_once(NULL, inputs[k], n);
        assert_null(strstr(ref.s, "#-1951")); /* it is an error, not incomplete */
        for (size_t i = 0; i <= n; i++) {
            struct tr t = parse_split(NULL, inputs[k], n, &i, 1);
            assert_string_equal(t.s, ref.s);
            free(t.s);
        }
        free(ref.s);
    }
}

static void test_limits_validation(void **state)
{
    (void)state;
    struct resp_parser p;
    struct resp_limits lim;
    resp_limits_default(&lim);
    assert_int_equal(resp_parser_init(&p, &lim), 0);
    resp_parser_free(&p);
    small_limits(&lim);
    assert_int_equal(resp_parser_init(&p, &lim), 0);
    resp_parser_free(&p);

    small_limits(&lim);
    lim.inline_bytes_max = 15;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    small_limits(&lim);
    lim.multibulk_max = 0;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    small_limits(&lim);
    lim.multibulk_max = RESP_MULTIBULK_MAX + 1;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    small_limits(&lim);
    lim.arg_bytes_max = lim.inline_bytes_max - 1;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    resp_limits_default(&lim);
    lim.arg_bytes_max = RESP_BULK_BYTES_MAX + 1;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    small_limits(&lim);
    lim.query_bytes_max--;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    resp_limits_default(&lim);
    lim.query_bytes_max = RESP_QUERY_BYTES_MAX + 1;
    assert_int_equal(resp_parser_init(&p, &lim), RESP_EINVAL);
    assert_string_equal(resp_strerror(RESP_EINVAL), "invalid argument");
    assert_string_equal(resp_strerror(12345), "unknown RESP error");
}

/* The query buffer limit: exceeded by feeding without draining, not by a long stream of
 * small commands that is drained as it goes. */
static void test_query_limit(void **state)
{
    (void)state;
    struct resp_limits lim;
    small_limits(&lim); /* query_bytes_max = 132 */
    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, &lim), 0);
    struct tr t = {0};
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(resp_parser_feed(&p, S("*1\r\n$4\r\nPING\r\nPING\r\n")), 0);
        assert_int_equal(drain(&p, &t), RESP_EAGAIN);
    }
    assert_int_equal(t.len, 1000 * 2 * strlen("1:4=PING;|"));
    for (int i = 0; i < 6; i++) { /* 6 x 20 + 12 = 132: exactly the limit */
        assert_int_equal(resp_parser_feed(&p, S("*1\r\n$4\r\nPING\r\nPING\r\n")), 0);
    }
    assert_int_equal(resp_parser_feed(&p, S("PING\r\nPING\r\n")), 0);
    assert_int_equal(resp_parser_buffered(&p), 132);
    assert_int_equal(resp_parser_feed(&p, "P", 1), RESP_EQUERYBUF);
    assert_string_equal(resp_parser_errmsg(&p),
                        "Protocol error: too big query buffer (over 132 bytes)");
    struct resp_cmd c;
    assert_int_equal(resp_parser_next(&p, &c), RESP_EQUERYBUF);
    free(t.s);
    resp_parser_free(&p);
}

/* ==== parser: memory ====================================================== */

/* Announced lengths and counts allocate nothing: only arrived bytes do. */
static void test_no_upfront_allocation(void **state)
{
    (void)state;
    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.arg_bytes_max = RESP_BULK_BYTES_MAX;
    lim.query_bytes_max = RESP_QUERY_BYTES_MAX;
    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, &lim), 0);
    assert_int_equal(resp_parser_mem_bytes(&p), 0);
    assert_int_equal(resp_parser_feed(&p, S("*1\r\n$536870912\r\n")), 0);
    char chunk[1000];
    memset(chunk, 'x', sizeof(chunk));
    assert_int_equal(resp_parser_feed(&p, chunk, sizeof(chunk)), 0);
    struct resp_cmd c;
    assert_int_equal(resp_parser_next(&p, &c), RESP_EAGAIN);
    assert_true(resp_parser_mem_bytes(&p) < 64 * 1024);
    resp_parser_free(&p);

    /* a million arguments announced, one sent */
    assert_int_equal(resp_parser_init(&p, NULL), 0);
    assert_int_equal(resp_parser_feed(&p, S("*1048576\r\n$1\r\na\r\n")), 0);
    assert_int_equal(resp_parser_next(&p, &c), RESP_EAGAIN);
    assert_true(resp_parser_mem_bytes(&p) < 64 * 1024);
    resp_parser_free(&p);
}

/* A 1 MiB argument arriving in 16 KiB reads: the buffer grows with it and shrinks back
 * once the command is consumed. */
static void test_large_argument_grow_shrink(void **state)
{
    (void)state;
    const size_t vlen = (size_t)RESP_ARG_BYTES_DEFAULT;
    char hdr[64];
    const int hl = snprintf(hdr, sizeof(hdr), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%zu\r\n", vlen);
    const size_t total = (size_t)hl + vlen + 2;
    char *msg = malloc(total);
    memcpy(msg, hdr, (size_t)hl);
    for (size_t i = 0; i < vlen; i++) {
        msg[hl + i] = (char)('a' + i % 26);
    }
    memcpy(msg + hl + vlen, "\r\n", 2);

    struct resp_parser p;
    assert_int_equal(resp_parser_init(&p, NULL), 0);
    struct resp_cmd c;
    size_t off = 0;
    int got = 0;
    while (off < total) {
        void *b;
        size_t room;
        assert_int_equal(resp_parser_reserve(&p, 16 * 1024, &b, &room), 0);
        const size_t k = total - off < room ? total - off : room;
        memcpy(b, msg + off, k);
        resp_parser_commit(&p, k);
        off += k;
        const int rv = resp_parser_next(&p, &c);
        if (rv == 0) {
            got++;
            assert_int_equal(c.argc, 3);
            assert_int_equal(c.argv[2].len, vlen);
            assert_memory_equal(c.argv[2].ptr, msg + hl, vlen);
        } else {
            assert_int_equal(rv, RESP_EAGAIN);
        }
    }
    assert_int_equal(got, 1);
    assert_true(resp_parser_mem_bytes(&p) >= vlen);
    assert_true(resp_parser_mem_bytes(&p) <= 4 * vlen);
    void *b;
    size_t room;
    assert_int_equal(resp_parser_reserve(&p, 16 * 1024, &b, &room), 0);
    assert_true(resp_parser_mem_bytes(&p) <= RESP_BUF_KEEP_BYTES + 1024);
    resp_parser_free(&p);
    free(msg);
}

/* ==== parser: random ====================================================== */

/* Random commands (binary arguments as multibulk, plain words as inline) fed in random
 * pieces come out exactly as generated. */
static void test_random_roundtrip(void **state)
{
    (void)state;
    struct prng rng;
    prng_seed(&rng, 20240611);
    for (int round = 0; round < 200; round++) {
        struct tr in = {0}, want = {0};
        tr_put(&in, "", 0);
        tr_put(&want, "", 0);
        const int n_cmds = 1 + (int)prng_below(&rng, 20);
        for (int k = 0; k < n_cmds; k++) {
            const uint32_t argc = 1 + (uint32_t)prng_below(&rng, 6);
            const bool inl = prng_chance(&rng, 300000);
            char arg[300];
            tr_fmt(&want, "%u:", argc);
            if (!inl) {
                tr_fmt(&in, "*%u\r\n", argc);
            }
            for (uint32_t a = 0; a < argc; a++) {
                const size_t len = inl ? 1 + prng_below(&rng, 20) : prng_below(&rng, 300);
                for (size_t i = 0; i < len; i++) {
                    arg[i] = inl ? (char)('a' + prng_below(&rng, 26)) : (char)prng_below(&rng, 256);
                }
                if (inl) {
                    tr_put(&in, a == 0 ? "" : " ", a == 0 ? 0 : 1);
                    tr_put(&in, arg, len);
                } else {
                    tr_fmt(&in, "$%zu\r\n", len);
                    tr_put(&in, arg, len);
                    tr_put(&in, "\r\n", 2);
                }
                tr_fmt(&want, "%zu=", len);
                tr_put(&want, arg, len);
                tr_put(&want, ";", 1);
            }
            if (inl) {
                if (prng_chance(&rng, 500000)) {
                    tr_put(&in, "\r\n", 2);
                } else {
                    tr_put(&in, "\n", 1);
                }
            }
            tr_put(&want, "|", 1);
        }
        tr_fmt(&want, "#%d", RESP_EAGAIN);
        size_t cuts[8];
        const size_t n_cuts = prng_below(&rng, 8);
        for (size_t i = 0; i < n_cuts; i++) {
            cuts[i] = prng_below(&rng, in.len + 1);
        }
        for (size_t i = 1; i < n_cuts; i++) { /* insertion sort */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                const size_t x = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = x;
            }
        }
        struct tr got = parse_split(NULL, in.s, in.len, cuts, n_cuts);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.s, want.s, want.len);
        free(got.s);
        free(in.s);
        free(want.s);
    }
}

/* Garbage in random pieces never crashes, never loops, and always ends in "need more"
 * or a terminal error; bytes biased towards RESP's own characters. */
static void test_random_garbage(void **state)
{
    (void)state;
    static const char alphabet[] = "*$\r\n0123456789-+\"' \\x:aZ\0";
    struct prng rng;
    prng_seed(&rng, 7);
    struct resp_limits lim;
    small_limits(&lim);
    lim.query_bytes_max = 4096;
    char buf[2048];
    for (int round = 0; round < 3000; round++) {
        const size_t n = prng_below(&rng, sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            buf[i] = prng_chance(&rng, 800000) ? alphabet[prng_below(&rng, sizeof(alphabet) - 1)]
                                               : (char)prng_below(&rng, 256);
        }
        size_t cut = prng_below(&rng, n + 1);
        struct tr a = parse_split(round % 2 ? &lim : NULL, buf, n, &cut, 1);
        struct tr b = parse_once(round % 2 ? &lim : NULL, buf, n);
        assert_string_equal(a.s, b.s); /* split-invariant even on garbage */
        free(a.s);
        free(b.s);
    }
}

/* ==== integers ============================================================ */

static void test_parse_i64(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
        int64_t v;
    } cases[] = {
        {"0", true, 0},
        {"1", true, 1},
        {"-1", true, -1},
        {"123456", true, 123456},
        {"9223372036854775807", true, INT64_MAX},
        {"-9223372036854775808", true, INT64_MIN},
        {"9223372036854775808", false, 0},
        {"-9223372036854775809", false, 0},
        {"18446744073709551616", false, 0},
        {"99999999999999999999", false, 0},
        {"", false, 0},
        {"-", false, 0},
        {"-0", false, 0},
        {"00", false, 0},
        {"01", false, 0},
        {"+1", false, 0},
        {" 1", false, 0},
        {"1 ", false, 0},
        {"1a", false, 0},
        {"000000000000000000001", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = 42;
        const bool ok = resp_parse_i64(cases[i].s, strlen(cases[i].s), &v);
        if (ok != cases[i].ok || (ok && v != cases[i].v)) {
            fail_msg("resp_parse_i64(\"%s\") = %d, %lld", cases[i].s, ok, (long long)v);
        }
    }
}

/* ==== encoder ============================================================= */

static void expect_out(struct resp_out *o, const char *want, size_t n)
{
    size_t len;
    const uint8_t *d = resp_out_data(o, &len);
    if (len != n || memcmp(d, want, n) != 0) {
        fail_msg("encoder wrote %zu bytes \"%.*s\", want %zu \"%.*s\"", len, (int)len,
                 (const char *)d, n, (int)n, want);
    }
    resp_out_clear(o);
}

#define EXPECT_OUT(o, lit) expect_out((o), (lit), sizeof(lit) - 1)

static void test_encoder_resp2(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    assert_int_equal(resp_out_proto(&o), 2);
    assert_int_equal(resp_out_ok(&o), 0);
    EXPECT_OUT(&o, "+OK\r\n");
    resp_out_simple(&o, "PONG");
    EXPECT_OUT(&o, "+PONG\r\n");
    resp_out_simple(&o, "a\r\nb");
    EXPECT_OUT(&o, "+a  b\r\n");
    resp_out_int(&o, 0);
    resp_out_int(&o, -42);
    resp_out_int(&o, INT64_MAX);
    resp_out_int(&o, INT64_MIN);
    EXPECT_OUT(&o, ":0\r\n:-42\r\n:9223372036854775807\r\n:-9223372036854775808\r\n");
    resp_out_bulk(&o, "a\r\n\0b", 5);
    resp_out_bulk(&o, "", 0);
    resp_out_bulk_cstr(&o, "hi");
    resp_out_bulk_i64(&o, -7);
    EXPECT_OUT(&o, "$5\r\na\r\n\0b\r\n$0\r\n\r\n$2\r\nhi\r\n$2\r\n-7\r\n");
    resp_out_null(&o);
    resp_out_null_array(&o);
    EXPECT_OUT(&o, "$-1\r\n*-1\r\n");
    resp_out_array(&o, 3);
    resp_out_map(&o, 2);
    resp_out_set(&o, 5);
    resp_out_push(&o, 1);
    EXPECT_OUT(&o, "*3\r\n*4\r\n*5\r\n*1\r\n");
    resp_out_bool(&o, true);
    resp_out_bool(&o, false);
    EXPECT_OUT(&o, ":1\r\n:0\r\n");
    resp_out_double(&o, 3.14);
    resp_out_double(&o, 1.0);
    EXPECT_OUT(&o, "$4\r\n3.14\r\n$1\r\n1\r\n");
    resp_out_verbatim(&o, "txt", "some text", 9);
    EXPECT_OUT(&o, "$9\r\nsome text\r\n");
    resp_out_raw(&o, "+RAW\r\n", 6);
    EXPECT_OUT(&o, "+RAW\r\n");
    resp_out_free(&o);
}

static void test_encoder_resp3(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    resp_out_set_proto(&o, 3);
    assert_int_equal(resp_out_proto(&o), 3);
    resp_out_null(&o);
    resp_out_null_array(&o);
    EXPECT_OUT(&o, "_\r\n_\r\n");
    resp_out_array(&o, 3);
    resp_out_map(&o, 2);
    resp_out_set(&o, 5);
    resp_out_push(&o, 1);
    EXPECT_OUT(&o, "*3\r\n%2\r\n~5\r\n>1\r\n");
    resp_out_bool(&o, true);
    resp_out_bool(&o, false);
    EXPECT_OUT(&o, "#t\r\n#f\r\n");
    resp_out_verbatim(&o, "txt", "some text", 9);
    EXPECT_OUT(&o, "=13\r\ntxt:some text\r\n");
    resp_out_double(&o, 3.14);
    resp_out_double(&o, 1.0);
    resp_out_double(&o, -2.5);
    resp_out_double(&o, 0.1 + 0.2);
    resp_out_double(&o, 1e300);
    resp_out_double(&o, 0.0);
    resp_out_double(&o, -0.0);
    resp_out_double(&o, INFINITY);
    resp_out_double(&o, -INFINITY);
    resp_out_double(&o, NAN);
    resp_out_double(&o, 1e18);
    EXPECT_OUT(&o, ",3.14\r\n,1\r\n,-2.5\r\n,0.30000000000000004\r\n,1e+300\r\n,0\r\n,-0\r\n"
                   ",inf\r\n,-inf\r\n,nan\r\n,1000000000000000000\r\n");
    /* shared forms are the same in both */
    resp_out_int(&o, 5);
    resp_out_bulk(&o, "x", 1);
    resp_out_ok(&o);
    resp_out_error(&o, "boom");
    EXPECT_OUT(&o, ":5\r\n$1\r\nx\r\n+OK\r\n-ERR boom\r\n");
    resp_out_free(&o);
}

/* Every double's text reads back as the same double. */
static void test_encoder_double_roundtrip(void **state)
{
    (void)state;
    struct prng rng;
    prng_seed(&rng, 99);
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    resp_out_set_proto(&o, 3);
    for (int i = 0; i < 10000; i++) {
        double d;
        const uint64_t bits = prng_next(&rng);
        memcpy(&d, &bits, sizeof(d));
        if (isnan(d) || isinf(d)) {
            continue;
        }
        resp_out_double(&o, d);
        size_t len;
        const uint8_t *p = resp_out_data(&o, &len);
        char t[64];
        assert_true(len > 3 && len - 3 < sizeof(t));
        memcpy(t, p + 1, len - 3);
        t[len - 3] = '\0';
        const double back = strtod(t, NULL);
        assert_memory_equal(&back, &d, sizeof(d));
        resp_out_clear(&o);
    }
    resp_out_free(&o);
}

static void test_encoder_errors(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    resp_out_error(&o, "unknown command");
    EXPECT_OUT(&o, "-ERR unknown command\r\n");
    resp_out_error(&o, "-WRONGTYPE Operation against a key holding the wrong kind of value");
    EXPECT_OUT(&o, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    resp_out_errorf(&o, "wrong number of arguments for '%s' command", "get");
    EXPECT_OUT(&o, "-ERR wrong number of arguments for 'get' command\r\n");
    resp_out_errorf(&o, "-%s %d", "NOAUTH", 7);
    EXPECT_OUT(&o, "-NOAUTH 7\r\n");
    resp_out_error(&o, "line\r\nbreak\n");
    EXPECT_OUT(&o, "-ERR line  break \r\n");
    resp_out_error(&o, "");
    EXPECT_OUT(&o, "-ERR \r\n");
    resp_out_error(&o, "-");
    EXPECT_OUT(&o, "-\r\n");
    resp_out_free(&o);
}

static void test_encoder_deferred(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    resp_out_int(&o, 1);
    struct resp_out_defer d = resp_out_defer(&o);
    for (int i = 0; i < 12; i++) {
        resp_out_bulk_i64(&o, i);
    }
    assert_int_equal(resp_out_defer_array(&o, d, 12), 0);
    EXPECT_OUT(&o, ":1\r\n*12\r\n$1\r\n0\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n"
                   "$1\r\n6\r\n$1\r\n7\r\n$1\r\n8\r\n$1\r\n9\r\n$2\r\n10\r\n$2\r\n11\r\n");
    /* nested: the outer header goes in front of the inner one */
    struct resp_out_defer outer = resp_out_defer(&o);
    struct resp_out_defer inner = resp_out_defer(&o);
    resp_out_bulk_cstr(&o, "k");
    resp_out_int(&o, 2);
    resp_out_defer_map(&o, inner, 1);
    resp_out_defer_set(&o, outer, 1);
    EXPECT_OUT(&o, "*1\r\n*2\r\n$1\r\nk\r\n:2\r\n");
    resp_out_set_proto(&o, 3);
    d = resp_out_defer(&o);
    resp_out_defer_map(&o, d, 0);
    d = resp_out_defer(&o);
    resp_out_defer_set(&o, d, 0);
    EXPECT_OUT(&o, "%0\r\n~0\r\n");
    resp_out_free(&o);
}

/* The hard cap counts queued and in-flight bytes; a write past it fails, and keeps
 * failing, until the caller clears. */
static void test_encoder_cap(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, 20);
    assert_int_equal(resp_out_bulk(&o, "0123456789", 10), 0); /* 17 bytes */
    assert_int_equal(resp_out_ok(&o), RESP_EOUTFULL);         /* 22 > 20 */
    assert_int_equal(resp_out_status(&o), RESP_EOUTFULL);
    assert_int_equal(resp_out_int(&o, 1), RESP_EOUTFULL); /* sticky, even though it fits */
    size_t len;
    resp_out_data(&o, &len);
    assert_int_equal(len, 17);
    resp_out_clear(&o);
    assert_int_equal(resp_out_status(&o), 0);

    /* exactly at the cap is fine */
    assert_int_equal(resp_out_bulk(&o, "0123456789ab", 12), 0); /* 19 */
    assert_int_equal(resp_out_raw(&o, "x", 1), 0);              /* 20 */
    assert_int_equal(resp_out_raw(&o, "x", 1), RESP_EOUTFULL);
    resp_out_clear(&o);

    /* taken bytes count until reported sent */
    assert_int_equal(resp_out_bulk(&o, "0123456789", 10), 0);
    uint8_t *bytes;
    assert_int_equal(resp_out_take(&o, &bytes), 17);
    assert_memory_equal(bytes, "$10\r\n0123456789\r\n", 17);
    free(bytes);
    assert_int_equal(resp_out_take(&o, &bytes), 0);
    assert_null(bytes);
    assert_int_equal(resp_out_ok(&o), RESP_EOUTFULL);
    resp_out_clear(&o);
    resp_out_sent(&o, 10);
    assert_int_equal(resp_out_ok(&o), 0); /* 7 + 5 */
    resp_out_sent(&o, 7);
    assert_int_equal(resp_out_bulk(&o, "0123456789", 10), RESP_EOUTFULL); /* 5 + 17 > 20 */
    resp_out_free(&o);

    /* a deferred header past the cap fails too */
    resp_out_init(&o, 8);
    struct resp_out_defer d = resp_out_defer(&o);
    assert_int_equal(resp_out_int(&o, 12345), 0); /* 8 bytes */
    assert_int_equal(resp_out_defer_array(&o, d, 1), RESP_EOUTFULL);
    resp_out_free(&o);

    /* a large reply grows the buffer past its first chunk */
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    char *big = malloc(1 << 20);
    memset(big, 'v', 1 << 20);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(resp_out_bulk(&o, big, 1 << 20), 0);
    }
    resp_out_data(&o, &len);
    assert_int_equal(len, 3 * ((1 << 20) + 12));
    free(big);
    resp_out_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_forms),
        cmocka_unit_test(test_pipeline_every_split),
        cmocka_unit_test(test_transcript_detects_change),
        cmocka_unit_test(test_views_and_reserve),
        cmocka_unit_test(test_inline_quoting),
        cmocka_unit_test(test_inline_unbalanced),
        cmocka_unit_test(test_multibulk_errors),
        cmocka_unit_test(test_line_limits),
        cmocka_unit_test(test_configured_limits),
        cmocka_unit_test(test_unauthenticated_limits),
        cmocka_unit_test(test_errors_every_split),
        cmocka_unit_test(test_limits_validation),
        cmocka_unit_test(test_query_limit),
        cmocka_unit_test(test_no_upfront_allocation),
        cmocka_unit_test(test_large_argument_grow_shrink),
        cmocka_unit_test(test_random_roundtrip),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_encoder_resp2),
        cmocka_unit_test(test_encoder_resp3),
        cmocka_unit_test(test_encoder_double_roundtrip),
        cmocka_unit_test(test_encoder_errors),
        cmocka_unit_test(test_encoder_deferred),
        cmocka_unit_test(test_encoder_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
