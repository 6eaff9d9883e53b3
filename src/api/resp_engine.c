/* resp_engine.c -- the command engine: one x_* function per Redis command, each writing
 * exactly one reply to x->o and reading and writing keys only through x->v (a view,
 * resp_view.c). The same code serves a standalone read (store view), a read-modify-write
 * (overlay view) and every command inside EXEC (either); resp_x_dispatch picks the
 * function. Commands that change connection state (HELLO, MULTI, WATCH, ...) never get
 * here; resp_engine_runs says which do.
 *
 * Invariants: every command writes exactly one reply, even when its view failed (the
 * caller then replaces the run's replies as a whole); a command reads the node only
 * through the view, the KV store's stats and range reads, and the lease timers; the one
 * clock it reads is the wall clock, for EXAT, PXAT and EXPIRETIME (unix_now_ms).
 *
 * Also here, because direct writes (resp_write.c) parse the same options: the SET/GETEX
 * option parser and the TTL helpers (resp_set_parse, resp_exp_ttl_ms, resp_ttl_ok) and
 * DELEX's (resp_delex_parse).
 *
 * Sections: small helpers (glob, floats) | the command engine | expiry | strings | keys |
 * connection and server commands that touch no keys.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/resp_internal.h"
#include "base/assert.h"
#include "base/env.h"

/* ==== small helpers =========================================================================== */

/* Redis's glob (stringmatchlen, case-sensitive): * ? [abc] [^a-z] and \x. Iterative:
 * the last '*' is the only backtrack point, so the work is O(pattern * string). */
static bool glob_one(const uint8_t *p, size_t pn, uint8_t ch, size_t *adv)
{
    CC_ASSERT(pn > 0);
    if (p[0] == '?') {
        *adv = 1;
        return true;
    }
    if (p[0] == '\\' && pn >= 2) {
        *adv = 2;
        return p[1] == ch;
    }
    if (p[0] != '[') {
        *adv = 1;
        return p[0] == ch;
    }
    size_t i = 1;
    bool neg = false, match = false;
    if (i < pn && p[i] == '^') {
        neg = true;
        i++;
    }
    for (;;) { /* every round consumes >= 1 pattern byte or stops */
        if (i >= pn) {
            break; /* an unterminated class ends with the pattern, as in Redis */
        }
        if (p[i] == '\\' && i + 1 < pn) {
            match = match || p[i + 1] == ch;
            i += 2;
        } else if (p[i] == ']') {
            i++;
            break;
        } else if (i + 2 < pn && p[i + 1] == '-') {
            uint8_t lo = p[i], hi = p[i + 2];
            if (lo > hi) {
                const uint8_t t = lo;
                lo = hi;
                hi = t;
            }
            match = match || (ch >= lo && ch <= hi);
            i += 3;
        } else {
            match = match || p[i] == ch;
            i++;
        }
    }
    *adv = i;
    return neg ? !match : match;
}

static bool glob_match(const uint8_t *p, size_t pn, const uint8_t *s, size_t sn)
{
    size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
    while (si < sn) { /* each round advances si, or pi, or the star point */
        if (pi < pn && p[pi] == '*') {
            while (pi < pn && p[pi] == '*') {
                pi++;
            }
            if (pi == pn) {
                return true;
            }
            star_p = pi;
            star_s = si;
            continue;
        }
        size_t adv = 0;
        if (pi < pn && glob_one(p + pi, pn - pi, s[si], &adv)) {
            pi += adv;
            si++;
            continue;
        }
        if (star_p == SIZE_MAX) {
            return false;
        }
        pi = star_p;
        si = ++star_s;
    }
    while (pi < pn && p[pi] == '*') {
        pi++;
    }
    return pi == pn;
}

/* The pattern's literal prefix: bytes before the first special character. */
static size_t glob_prefix_len(const uint8_t *p, size_t pn)
{
    size_t i = 0;
    while (i < pn && p[i] != '*' && p[i] != '?' && p[i] != '[' && p[i] != '\\') {
        i++;
    }
    return i;
}

/* Redis's string2ld: a float text INCRBYFLOAT accepts (no spaces, no nan). */
static bool parse_ld(const void *s, size_t len, long double *out)
{
    char buf[RESP_FLOAT_CHARS_MAX];
    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL || isspace((unsigned char)buf[0])) {
        return false;
    }
    errno = 0;
    char *end = NULL;
    const long double v = strtold(buf, &end);
    if (end == NULL || *end != '\0' || isnan(v) ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0))) {
        return false;
    }
    *out = v;
    return true;
}

/* Redis's ld2string in LD_STR_HUMAN mode: "%.17Lf" without trailing zeros. Returns the
 * length, or 0 when it does not fit. */
static size_t fmt_ld(char *buf, size_t cap, long double v)
{
    int n = snprintf(buf, cap, "%.17Lf", v);
    if (n <= 0 || (size_t)n >= cap) {
        return 0;
    }
    size_t l = (size_t)n;
    if (memchr(buf, '.', l) != NULL) {
        while (l > 0 && buf[l - 1] == '0') {
            l--;
        }
        if (l > 0 && buf[l - 1] == '.') {
            l--;
        }
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    buf[l] = '\0';
    return l;
}

/* ==== the command engine ===================================================================
 * One function per command, each writing exactly one reply to x->o and reading and
 * writing keys only through x->v. The same code serves a standalone read (store view),
 * a read-modify-write (overlay view) and every command inside EXEC (either). */

static void write_help(struct resp_out *o, const char *const *lines, size_t n);

/* The run's view failed (too many keys, no memory): the reply is replaced as a whole
 * later; this one keeps the framing sane meanwhile. */
static void x_view_failed(struct xrun *x)
{
    resp_out_error(x->o, "transaction aborted");
}

#define XGET(x, kp, kl, val)                               \
    do {                                                   \
        if (resp_xv_get((x)->v, (kp), (kl), (val)) != 0) { \
            x_view_failed(x);                              \
            return;                                        \
        }                                                  \
    } while (0)

static bool x_int_arg(struct xrun *x, const struct resp_arg *a, int64_t *v)
{
    if (!resp_parse_i64(a->ptr, a->len, v)) {
        resp_out_error(x->o, ERR_NOT_INT);
        return false;
    }
    return true;
}

static bool x_key_ok(struct xrun *x, const struct resp_arg *k)
{
    const int rv = resp_key_check(k);
    if (rv != 0) {
        resp_reply_kv_error(x->o, rv);
        return false;
    }
    return true;
}

static bool x_value_ok(struct xrun *x, size_t len)
{
    if (len > KV_VALUE_BYTES_MAX) {
        resp_out_error(x->o, ERR_TOO_BIG);
        return false;
    }
    return true;
}

/* Keyspace-wide commands cannot be pinned by per-key compares: allowed in store views
 * (standalone, or an EXEC that writes nothing) only. */
static bool x_whole_keyspace_ok(struct xrun *x)
{
    if (x->v->overlay) {
        resp_reply_errorf(x->o,
                          "%s inside a MULTI that also writes is not supported (a Conclave "
                          "transaction checks single keys only)",
                          x->spec->name);
        return false;
    }
    return true;
}

/* ---- expiry --------------------------------------------------------------------------------
 * A key with a TTL carries a key-private lease (sm/machine.h, the KVTTL command): the
 * leader's lease timer decides expiry and commits it through the log; no clock here or
 * on a follower deletes anything. A lease id is allocated when its entry applies, so
 * inside the engine a TTL still to be granted is a negative lease, -ttl_ms ("grant a
 * lease of ttl_ms with this write"). Writes that keep a key's TTL (APPEND, INCR*,
 * SETRANGE, RENAME, SET KEEPTTL) pass the lease on, pending or not, and xtxn_build turns
 * pending ones into the txn's grants; writes that drop it (SET, MSET, GETSET, PERSIST)
 * pass 0, and the machine revokes the orphaned lease in the same apply. TTL and PTTL
 * ask the leader's timer what is left (node_lease_remaining); a follower keeps no
 * deadlines and answers the lease's full TTL, an upper bound. TTLs below
 * LEASE_TTL_MS_MIN are rounded up (a key lives at least its TTL); longer than
 * LEASE_TTL_MS_MAX are refused with ERR_TTL_LONG. */

/* Redis's parseExtendedStringArgumentsOrReply (+ Redis 8.4's IFEQ/IFNE), for SET
 * (getex false) and GETEX (getex true). False after writing the error. */
bool resp_set_parse(struct resp_out *o, const char *cmd, uint32_t argc, const struct resp_arg *argv,
                    uint32_t from, bool getex, struct setopt *so)
{
    memset(so, 0, sizeof(*so));
    const struct resp_arg *exp_arg = NULL;
    for (uint32_t j = from; j < argc; j++) {
        const struct resp_arg *a = &argv[j];
        const struct resp_arg *next = j + 1 < argc ? &argv[j + 1] : NULL;
        uint8_t exp = SE_NONE, cond = SC_NONE;
        if (!getex && resp_arg_is(a, "NX")) {
            cond = SC_NX;
        } else if (!getex && resp_arg_is(a, "XX")) {
            cond = SC_XX;
        } else if (!getex && next != NULL && resp_arg_is(a, "IFEQ")) {
            cond = SC_IFEQ;
        } else if (!getex && next != NULL && resp_arg_is(a, "IFNE")) {
            cond = SC_IFNE;
        } else if (!getex && resp_arg_is(a, "GET")) {
            so->get = true;
            continue;
        } else if (!getex && resp_arg_is(a, "KEEPTTL")) {
            exp = SE_KEEPTTL;
        } else if (getex && resp_arg_is(a, "PERSIST")) {
            exp = SE_PERSIST;
        } else if (next != NULL && resp_arg_is(a, "EX")) {
            exp = SE_EX;
        } else if (next != NULL && resp_arg_is(a, "PX")) {
            exp = SE_PX;
        } else if (next != NULL && resp_arg_is(a, "EXAT")) {
            exp = SE_EXAT;
        } else if (next != NULL && resp_arg_is(a, "PXAT")) {
            exp = SE_PXAT;
        } else {
            resp_out_error(o, ERR_SYNTAX);
            return false;
        }
        if (cond != SC_NONE) {
            const bool valued = cond == SC_IFEQ || cond == SC_IFNE;
            if (so->cond != SC_NONE && (so->cond != cond || valued)) {
                resp_out_error(o, ERR_SYNTAX);
                return false;
            }
            so->cond = cond;
            if (valued) {
                so->cmp = next;
                j++;
            }
            continue;
        }
        if (so->exp != SE_NONE && so->exp != exp) {
            resp_out_error(o, ERR_SYNTAX);
            return false;
        }
        so->exp = exp;
        if (exp != SE_KEEPTTL && exp != SE_PERSIST) {
            exp_arg = next;
            j++;
        }
    }
    if (exp_arg != NULL) {
        if (!resp_parse_i64(exp_arg->ptr, exp_arg->len, &so->exp_val)) {
            resp_out_error(o, ERR_NOT_INT);
            return false;
        }
        const bool seconds = so->exp == SE_EX || so->exp == SE_EXAT;
        if (so->exp_val <= 0 || (seconds && so->exp_val > INT64_MAX / 1000)) {
            resp_reply_errorf(o, "invalid expire time in '%s' command", cmd);
            return false;
        }
    }
    return true;
}

static int64_t unix_now_ms(void)
{
    struct env *e = env_posix();
    return (int64_t)e->wall_ms(e);
}

/* A TTL from an absolute Unix time in ms: <= 0 when it already passed. */
static int64_t ttl_until(int64_t at_ms)
{
    const int64_t now = unix_now_ms();
    return at_ms <= now ? 0 : at_ms - now;
}

/* The TTL in ms an EX/PX/EXAT/PXAT option asks for (<= 0: already past). resp_set_parse
 * checked that seconds fit milliseconds. */
int64_t resp_exp_ttl_ms(uint8_t exp, int64_t val)
{
    switch (exp) {
    case SE_EX:
        return val * 1000;
    case SE_PX:
        return val;
    case SE_EXAT:
        return ttl_until(val * 1000);
    case SE_PXAT:
        return ttl_until(val);
    default:
        CC_UNREACHABLE();
    }
}

/* True when ttl_ms (> 0) can be a lease's TTL, with a short one rounded up into
 * *lease_ttl; else writes ERR_TTL_LONG. */
bool resp_ttl_ok(struct resp_out *o, const char *cmd, int64_t ttl_ms, int64_t *lease_ttl)
{
    CC_ASSERT(ttl_ms > 0);
    if (ttl_ms > LEASE_TTL_MS_MAX) {
        resp_reply_errorf(o, ERR_TTL_LONG, cmd,
                          (long long)(LEASE_TTL_MS_MAX / (24LL * 3600 * 1000)));
        return false;
    }
    *lease_ttl = ttl_ms < LEASE_TTL_MS_MIN ? LEASE_TTL_MS_MIN : ttl_ms;
    return true;
}

/* Milliseconds a key's lease (nonzero) has left: a pending one its full TTL, a live one
 * what the leader's timer says, and on a follower the lease's TTL (an upper bound). */
static int64_t lease_left_ms(const struct resp_server *s, int64_t lease)
{
    CC_ASSERT(lease != 0);
    if (lease < 0) {
        return -lease;
    }
    uint64_t rem = 0;
    if (node_lease_remaining(s->node, lease, &rem) == 0) {
        return (int64_t)rem;
    }
    struct lease_info info;
    if (lease_get(machine_leases(node_machine(s->node)), lease, &info) == 0) {
        return info.ttl_ms;
    }
    return 0; /* dying: its EXPIRE is in the log */
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME (Redis's ttlGenericCommand rounding). */
static void x_ttl(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (!v.exists) {
        resp_out_int(x->o, -2);
        return;
    }
    if (v.lease == 0) {
        resp_out_int(x->o, -1);
        return;
    }
    const int64_t left = lease_left_ms(x->s, v.lease);
    switch (x->spec->id) {
    case RESP_CMD_PTTL:
        resp_out_int(x->o, left);
        break;
    case RESP_CMD_TTL:
        resp_out_int(x->o, (left + 500) / 1000);
        break;
    case RESP_CMD_PEXPIRETIME: /* the absolute Unix time, in ms */
        resp_out_int(x->o, unix_now_ms() + left);
        break;
    default: /* EXPIRETIME: the absolute Unix time, in seconds */
        resp_out_int(x->o, (unix_now_ms() + left + 500) / 1000);
        break;
    }
}

static void x_persist(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (!v.exists || v.lease == 0) {
        resp_out_int(x->o, 0);
        return;
    }
    resp_out_int(x->o, 1);
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, 0);
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key n [NX|XX|GT|LT] (Redis 7's
 * expireGenericCommand: conditions first, then a time in the past deletes the key). */
static void x_expire(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    int64_t n = 0;
    if (!x_int_arg(x, &argv[2], &n)) {
        return;
    }
    bool nx = false, xx = false, gt = false, lt = false;
    for (uint32_t j = 3; j < argc; j++) {
        if (resp_arg_is(&argv[j], "NX")) {
            nx = true;
        } else if (resp_arg_is(&argv[j], "XX")) {
            xx = true;
        } else if (resp_arg_is(&argv[j], "GT")) {
            gt = true;
        } else if (resp_arg_is(&argv[j], "LT")) {
            lt = true;
        } else {
            resp_reply_errorf(x->o, "Unsupported option %.*s",
                              (int)(argv[j].len > 64 ? 64 : argv[j].len), argv[j].ptr);
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        resp_out_error(x->o, "NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        resp_out_error(x->o, "GT and LT options at the same time are not compatible");
        return;
    }
    const enum resp_cmd_id id = x->spec->id;
    const bool seconds = id == RESP_CMD_EXPIRE || id == RESP_CMD_EXPIREAT;
    if (seconds && (n > INT64_MAX / 1000 || n < INT64_MIN / 1000)) {
        resp_reply_errorf(x->o, "invalid expire time in '%s' command", x->spec->name);
        return;
    }
    const int64_t ms = seconds ? n * 1000 : n;
    const bool absolute = id == RESP_CMD_EXPIREAT || id == RESP_CMD_PEXPIREAT;
    const int64_t ttl = absolute ? ttl_until(ms) : ms;
    if (ttl > LEASE_TTL_MS_MAX) {
        resp_reply_errorf(x->o, ERR_TTL_LONG, x->spec->name,
                          (long long)(LEASE_TTL_MS_MAX / (24LL * 3600 * 1000)));
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (!v.exists) {
        resp_out_int(x->o, 0);
        return;
    }
    const int64_t cur = v.lease == 0 ? -1 : lease_left_ms(x->s, v.lease); /* -1: none */
    if ((nx && v.lease != 0) || (xx && v.lease == 0) || (gt && (v.lease == 0 || ttl <= cur)) ||
        (lt && v.lease != 0 && ttl >= cur)) {
        resp_out_int(x->o, 0);
        return;
    }
    resp_out_int(x->o, 1);
    if (ttl <= 0) {
        resp_xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
        return;
    }
    int64_t lease_ttl = 0;
    (void)resp_ttl_ok(x->o, x->spec->name, ttl, &lease_ttl); /* in range: checked above */
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, -lease_ttl);
}

/* SETEX key seconds value, PSETEX key milliseconds value. */
static void x_setex(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    int64_t n = 0;
    if (!x_int_arg(x, &argv[2], &n)) {
        return;
    }
    const bool seconds = x->spec->id == RESP_CMD_SETEX;
    if (n <= 0 || (seconds && n > INT64_MAX / 1000)) {
        resp_reply_errorf(x->o, "invalid expire time in '%s' command", x->spec->name);
        return;
    }
    int64_t lease_ttl = 0;
    if (!x_key_ok(x, &argv[1]) || !x_value_ok(x, argv[3].len) ||
        !resp_ttl_ok(x->o, x->spec->name, seconds ? n * 1000 : n, &lease_ttl)) {
        return;
    }
    resp_out_ok(x->o);
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, argv[3].ptr, argv[3].len, -lease_ttl);
}

/* GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]. */
static void x_getex(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    struct setopt so;
    if (!resp_set_parse(x->o, "getex", argc, argv, 2, true, &so)) {
        return;
    }
    int64_t ttl = 0, lease_ttl = 0;
    if (so.exp != SE_NONE && so.exp != SE_PERSIST) {
        ttl = resp_exp_ttl_ms(so.exp, so.exp_val);
        if (ttl > 0 && !resp_ttl_ok(x->o, "getex", ttl, &lease_ttl)) {
            return;
        }
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (!v.exists) {
        resp_out_null(x->o);
        return;
    }
    resp_out_bulk(x->o, v.ptr, v.len);
    if (so.exp == SE_PERSIST && v.lease != 0) {
        resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, 0);
    } else if (so.exp != SE_NONE && so.exp != SE_PERSIST && ttl <= 0) {
        resp_xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0); /* a time in the past */
    } else if (so.exp != SE_NONE && so.exp != SE_PERSIST) {
        resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, -lease_ttl);
    }
}

/* ---- strings ------------------------------------------------------------------------------ */

static void x_get(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (v.exists) {
        resp_out_bulk(x->o, v.ptr, v.len);
    } else {
        resp_out_null(x->o);
    }
}

static void x_mget(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    resp_out_array(x->o, argc - 1);
    for (uint32_t i = 1; i < argc; i++) {
        struct xval v;
        const bool found = resp_xv_get(x->v, argv[i].ptr, argv[i].len, &v) == 0 && v.exists;
        if (found) { /* a failed view voids the run: a nil keeps the count meanwhile */
            resp_out_bulk(x->o, v.ptr, v.len);
        } else {
            resp_out_null(x->o);
        }
    }
}

static void x_strlen(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    resp_out_int(x->o, v.exists ? (int64_t)v.len : 0);
}

static void x_getrange(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    int64_t start = 0, end = 0;
    if (!x_int_arg(x, &argv[2], &start) || !x_int_arg(x, &argv[3], &end)) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    const int64_t len = v.exists ? (int64_t)v.len : 0;
    /* Redis's getrangeCommand, step by step */
    if (start < 0 && end < 0 && start > end) {
        resp_out_bulk(x->o, "", 0);
        return;
    }
    if (start < 0) {
        start = len + start;
    }
    if (end < 0) {
        end = len + end;
    }
    if (start < 0) {
        start = 0;
    }
    if (end < 0) {
        end = 0;
    }
    if (end >= len) {
        end = len - 1;
    }
    if (len == 0 || start > end) {
        resp_out_bulk(x->o, "", 0);
        return;
    }
    resp_out_bulk(x->o, v.ptr + start, (size_t)(end - start + 1));
}

/* SET key value [NX|XX|IFEQ v|IFNE v] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL]; GETSET is
 * SET key value GET, SETNX is SET NX answering 1/0. */
static void x_set_common(struct xrun *x, const struct resp_arg *key, const struct resp_arg *val,
                         const struct setopt *so, bool int_reply)
{
    if (!x_key_ok(x, key) || !x_value_ok(x, val->len)) {
        return;
    }
    int64_t lease = 0; /* SET drops a TTL unless it sets one or keeps it */
    bool past = false; /* EXAT/PXAT in the past: Redis sets and deletes at once */
    if (so->exp != SE_NONE && so->exp != SE_KEEPTTL) {
        const int64_t ttl = resp_exp_ttl_ms(so->exp, so->exp_val);
        int64_t lease_ttl = 0;
        if (ttl > 0 && !resp_ttl_ok(x->o, x->spec->name, ttl, &lease_ttl)) {
            return;
        }
        past = ttl <= 0;
        lease = -lease_ttl;
    }
    struct xval cur = {0};
    if (so->cond != SC_NONE || so->get || so->exp == SE_KEEPTTL) {
        XGET(x, key->ptr, key->len, &cur);
    }
    if (so->exp == SE_KEEPTTL && cur.exists) {
        lease = cur.lease;
    }
    bool eq = false;
    if (so->cmp != NULL) {
        eq = cur.exists && resp_bytes_eq(cur.ptr, cur.len, so->cmp->ptr, so->cmp->len);
    }
    bool do_set = true;
    switch (so->cond) {
    case SC_NX:
        do_set = !cur.exists;
        break;
    case SC_XX:
        do_set = cur.exists;
        break;
    case SC_IFEQ:
        do_set = eq;
        break;
    case SC_IFNE:
        do_set = !eq; /* Redis 8.4: a missing key is "not equal" and gets created */
        break;
    default:
        break;
    }
    if (so->get) { /* the old value goes out before the overlay replaces it */
        if (cur.exists) {
            resp_out_bulk(x->o, cur.ptr, cur.len);
        } else {
            resp_out_null(x->o);
        }
    } else if (int_reply) {
        resp_out_int(x->o, do_set ? 1 : 0);
    } else if (do_set) {
        resp_out_ok(x->o);
    } else {
        resp_out_null(x->o);
    }
    if (do_set) {
        resp_xv_set(x->v, key->ptr, key->len, !past, val->ptr, val->len, lease);
    }
}

static void x_set(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    struct setopt so;
    if (resp_set_parse(x->o, "set", argc, argv, 3, false, &so)) {
        x_set_common(x, &argv[1], &argv[2], &so, false);
    }
}

static void x_setnx(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    const struct setopt so = {.cond = SC_NX};
    x_set_common(x, &argv[1], &argv[2], &so, true);
}

static void x_getset(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    const struct setopt so = {.get = true};
    x_set_common(x, &argv[1], &argv[2], &so, false);
}

static void x_getdel(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (!v.exists) {
        resp_out_null(x->o);
        return;
    }
    resp_out_bulk(x->o, v.ptr, v.len);
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
}

static bool x_pairs_ok(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    if (argc % 2 == 0) {
        resp_cmdtab_err_arity(x->o, x->spec);
        return false;
    }
    for (uint32_t i = 1; i < argc; i += 2) {
        if (!x_key_ok(x, &argv[i]) || !x_value_ok(x, argv[i + 1].len)) {
            return false;
        }
    }
    return true;
}

static void x_mset(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    if (!x_pairs_ok(x, argc, argv)) {
        return;
    }
    for (uint32_t i = 1; i < argc; i += 2) {
        resp_xv_set(x->v, argv[i].ptr, argv[i].len, true, argv[i + 1].ptr, argv[i + 1].len, 0);
    }
    resp_out_ok(x->o);
}

static void x_msetnx(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    if (!x_pairs_ok(x, argc, argv)) {
        return;
    }
    bool any = false;
    for (uint32_t i = 1; i < argc; i += 2) {
        struct xval v;
        XGET(x, argv[i].ptr, argv[i].len, &v);
        any = any || v.exists;
    }
    if (!any) {
        for (uint32_t i = 1; i < argc; i += 2) {
            resp_xv_set(x->v, argv[i].ptr, argv[i].len, true, argv[i + 1].ptr, argv[i + 1].len, 0);
        }
    }
    resp_out_int(x->o, any ? 0 : 1);
}

static void x_append(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    if (!x_key_ok(x, &argv[1])) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    const size_t old = v.exists ? v.len : 0;
    if (!x_value_ok(x, old + argv[2].len)) {
        return;
    }
    uint8_t *nv = malloc(old + argv[2].len + 1);
    if (nv == NULL) {
        resp_xv_fail(x->v, RESP_SERVER_ENOMEM);
        x_view_failed(x);
        return;
    }
    if (old > 0) {
        memcpy(nv, v.ptr, old);
    }
    if (argv[2].len > 0) {
        memcpy(nv + old, argv[2].ptr, argv[2].len);
    }
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, nv, old + argv[2].len,
                v.exists ? v.lease : 0);
    free(nv);
    resp_out_int(x->o, (int64_t)(old + argv[2].len));
}

static void x_setrange(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    int64_t off = 0;
    if (!x_int_arg(x, &argv[2], &off)) {
        return;
    }
    if (off < 0) {
        resp_out_error(x->o, "offset is out of range");
        return;
    }
    if (!x_key_ok(x, &argv[1])) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    const size_t vlen = argv[3].len;
    if (vlen == 0) { /* Redis: nothing to write, nothing created */
        resp_out_int(x->o, v.exists ? (int64_t)v.len : 0);
        return;
    }
    if ((uint64_t)off + vlen > KV_VALUE_BYTES_MAX) {
        resp_out_error(x->o, ERR_TOO_BIG);
        return;
    }
    const size_t old = v.exists ? v.len : 0;
    const size_t nlen = (size_t)off + vlen > old ? (size_t)off + vlen : old;
    uint8_t *nv = calloc(1, nlen + 1);
    if (nv == NULL) {
        resp_xv_fail(x->v, RESP_SERVER_ENOMEM);
        x_view_failed(x);
        return;
    }
    if (old > 0) {
        memcpy(nv, v.ptr, old);
    }
    memcpy(nv + off, argv[3].ptr, vlen);
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, nv, nlen, v.exists ? v.lease : 0);
    free(nv);
    resp_out_int(x->o, (int64_t)nlen);
}

/* INCR, DECR, INCRBY, DECRBY: Redis's incrDecrCommand. */
static void x_incr(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    int64_t by = 1;
    switch (x->spec->id) {
    case RESP_CMD_DECR:
        by = -1;
        break;
    case RESP_CMD_INCRBY:
        if (!x_int_arg(x, &argv[2], &by)) {
            return;
        }
        break;
    case RESP_CMD_DECRBY:
        if (!x_int_arg(x, &argv[2], &by)) {
            return;
        }
        if (by == INT64_MIN) {
            resp_out_error(x->o, "decrement would overflow");
            return;
        }
        by = -by;
        break;
    default:
        break;
    }
    (void)argc;
    if (!x_key_ok(x, &argv[1])) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    int64_t old = 0;
    if (v.exists && !resp_parse_i64((const char *)v.ptr, v.len, &old)) {
        resp_out_error(x->o, ERR_NOT_INT);
        return;
    }
    if ((by < 0 && old < 0 && by < INT64_MIN - old) ||
        (by > 0 && old > 0 && by > INT64_MAX - old)) {
        resp_out_error(x->o, ERR_OVERFLOW);
        return;
    }
    const int64_t nv = old + by;
    char t[24];
    const int n = snprintf(t, sizeof(t), "%lld", (long long)nv);
    CC_ASSERT(n > 0 && (size_t)n < sizeof(t));
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, t, (size_t)n, v.exists ? v.lease : 0);
    resp_out_int(x->o, nv);
}

static void x_incrbyfloat(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    long double by = 0, old = 0;
    if (!parse_ld(argv[2].ptr, argv[2].len, &by)) {
        resp_out_error(x->o, ERR_NOT_FLOAT);
        return;
    }
    if (!x_key_ok(x, &argv[1])) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (v.exists && !parse_ld(v.ptr, v.len, &old)) {
        resp_out_error(x->o, ERR_NOT_FLOAT);
        return;
    }
    const long double nv = old + by;
    if (isnan(nv) || isinf(nv)) {
        resp_out_error(x->o, ERR_NAN);
        return;
    }
    char t[RESP_FLOAT_CHARS_MAX];
    const size_t n = fmt_ld(t, sizeof(t), nv);
    if (n == 0) {
        resp_out_error(x->o, ERR_NAN);
        return;
    }
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, true, t, n, v.exists ? v.lease : 0);
    resp_out_bulk(x->o, t, n);
}

/* ---- keys --------------------------------------------------------------------------------- */

static void x_del(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    int64_t n = 0;
    for (uint32_t i = 1; i < argc; i++) {
        struct xval v;
        XGET(x, argv[i].ptr, argv[i].len, &v);
        if (v.exists) {
            resp_xv_set(x->v, argv[i].ptr, argv[i].len, false, NULL, 0, 0);
            n++;
        }
    }
    resp_out_int(x->o, n);
}

/* DELEX key [IFEQ value | IFNE value]: Redis 8.4's compare-and-delete. */
bool resp_delex_parse(struct resp_out *o, uint32_t argc, const struct resp_arg *argv, uint8_t *cond)
{
    *cond = SC_NONE;
    if (argc == 2) {
        return true;
    }
    if (argc == 4 && resp_arg_is(&argv[2], "IFEQ")) {
        *cond = SC_IFEQ;
        return true;
    }
    if (argc == 4 && resp_arg_is(&argv[2], "IFNE")) {
        *cond = SC_IFNE;
        return true;
    }
    resp_out_error(o, ERR_SYNTAX);
    return false;
}

static void x_delex(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    uint8_t cond = SC_NONE;
    if (!resp_delex_parse(x->o, argc, argv, &cond)) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    bool del = v.exists;
    if (v.exists && cond != SC_NONE) {
        const bool eq = resp_bytes_eq(v.ptr, v.len, argv[3].ptr, argv[3].len);
        del = cond == SC_IFEQ ? eq : !eq;
    }
    if (del) {
        resp_xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
    }
    resp_out_int(x->o, del ? 1 : 0);
}

static void x_exists(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    int64_t n = 0;
    for (uint32_t i = 1; i < argc; i++) {
        struct xval v;
        XGET(x, argv[i].ptr, argv[i].len, &v);
        n += v.exists;
    }
    resp_out_int(x->o, n);
}

static void x_type(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    resp_out_simple(x->o, v.exists ? "string" : "none");
}

static void x_rename(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    if (!v.exists) {
        resp_out_error(x->o, ERR_NO_SUCH_KEY);
        return;
    }
    if (resp_bytes_eq(argv[1].ptr, argv[1].len, argv[2].ptr, argv[2].len)) {
        resp_out_ok(x->o);
        return;
    }
    if (!x_key_ok(x, &argv[2])) {
        return;
    }
    /* v.ptr is the source's buffer: writing the target does not touch it */
    resp_xv_set(x->v, argv[2].ptr, argv[2].len, true, v.ptr, v.len, v.lease);
    resp_xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
    resp_out_ok(x->o);
}

static void x_dbsize(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    (void)argv;
    if (!x_whole_keyspace_ok(x)) {
        return;
    }
    struct kv_stats st;
    kv_stats(x->v->kv, &st);
    resp_out_int(x->o, (int64_t)st.n_keys_live);
}

static bool x_pattern_ok(struct xrun *x, const struct resp_arg *p)
{
    if (p->len > RESP_PATTERN_BYTES_MAX) {
        resp_reply_errorf(x->o, "pattern is too long (the limit is %u bytes)",
                          (unsigned)RESP_PATTERN_BYTES_MAX);
        return false;
    }
    return true;
}

static void x_keys(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    if (!x_whole_keyspace_ok(x) || !x_pattern_ok(x, &argv[1])) {
        return;
    }
    const uint8_t *pat = (const uint8_t *)argv[1].ptr;
    const size_t pl = glob_prefix_len(pat, argv[1].len);
    const struct kv_range_req r = {.key = pl > 0 ? pat : NULL,
                                   .key_len = (uint32_t)pl,
                                   .prefix = true,
                                   .limit = RESP_KEYS_MAX,
                                   .keys_only = true};
    struct kv_range_resp resp;
    const int rv = kv_range(x->v->kv, &r, &resp);
    if (rv != 0) {
        resp_reply_kv_error(x->o, rv);
        return;
    }
    if (resp.more) {
        resp_reply_errorf(x->o,
                          "KEYS would examine more than %u keys (%lld match the pattern's "
                          "prefix); use SCAN",
                          (unsigned)RESP_KEYS_MAX, (long long)resp.count);
        kv_range_resp_free(&resp);
        return;
    }
    const struct resp_out_defer d = resp_out_defer(x->o);
    uint64_t n = 0;
    for (uint32_t i = 0; i < resp.n_kvs; i++) {
        if (glob_match(pat, argv[1].len, resp.kvs[i].key, resp.kvs[i].key_len)) {
            resp_out_bulk(x->o, resp.kvs[i].key, resp.kvs[i].key_len);
            n++;
        }
    }
    resp_out_defer_array(x->o, d, n);
    kv_range_resp_free(&resp);
}

/* SCAN cursors: numbers (redis-cli and most clients parse them as unsigned 64-bit) that
 * map to the key to resume after, in a ring of RESP_SCAN_CURSORS_MAX per server. Ids
 * carry a per-start epoch in bits 32..51 so a restarted server does not take an old
 * cursor for one of its own, and stay below 2^53 for JavaScript clients. */
static uint64_t cursor_new(struct resp_server *s, const uint8_t *key, uint32_t len)
{
    uint8_t *k = resp_dup_bytes(key, len);
    if (k == NULL) {
        return 0;
    }
    struct scan_cursor *sc = &s->cursors[s->cursor_next];
    s->cursor_next = (s->cursor_next + 1) % RESP_SCAN_CURSORS_MAX;
    free(sc->key);
    s->cursor_seq = (s->cursor_seq + 1) & 0xffffffffu;
    if (s->cursor_seq == 0) {
        s->cursor_seq = 1;
    }
    sc->id = (s->cursor_epoch << 32) | s->cursor_seq;
    sc->key = k;
    sc->key_len = len;
    return sc->id;
}

static const struct scan_cursor *cursor_find(const struct resp_server *s, uint64_t id)
{
    for (uint32_t i = 0; i < RESP_SCAN_CURSORS_MAX; i++) {
        if (s->cursors[i].id == id && id != 0) {
            return &s->cursors[i];
        }
    }
    return NULL;
}

static bool parse_u64_cursor(const struct resp_arg *a, uint64_t *v)
{
    if (a->len == 0 || a->len > 20) {
        return false;
    }
    uint64_t u = 0;
    for (size_t i = 0; i < a->len; i++) {
        const char ch = a->ptr[i];
        if (ch < '0' || ch > '9') {
            return false;
        }
        const unsigned dg = (unsigned)(ch - '0');
        if (u > (UINT64_MAX - dg) / 10) {
            return false;
        }
        u = u * 10 + dg;
    }
    *v = u;
    return true;
}

static void x_scan(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    if (!x_whole_keyspace_ok(x)) {
        return;
    }
    uint64_t cursor = 0;
    if (!parse_u64_cursor(&argv[1], &cursor)) {
        resp_out_error(x->o, "invalid cursor");
        return;
    }
    const struct resp_arg *pat = NULL, *type = NULL;
    int64_t count = RESP_SCAN_COUNT_DEFAULT;
    for (uint32_t j = 2; j < argc; j += 2) {
        if (j + 1 >= argc) {
            resp_out_error(x->o, ERR_SYNTAX);
            return;
        }
        if (resp_arg_is(&argv[j], "MATCH")) {
            pat = &argv[j + 1];
        } else if (resp_arg_is(&argv[j], "COUNT")) {
            if (!x_int_arg(x, &argv[j + 1], &count)) {
                return;
            }
            if (count < 1) {
                resp_out_error(x->o, ERR_SYNTAX);
                return;
            }
        } else if (resp_arg_is(&argv[j], "TYPE")) {
            type = &argv[j + 1];
        } else {
            resp_out_error(x->o, ERR_SYNTAX);
            return;
        }
    }
    if (pat != NULL && !x_pattern_ok(x, pat)) {
        return;
    }
    if (count > (int64_t)RESP_SCAN_COUNT_MAX) {
        count = RESP_SCAN_COUNT_MAX;
    }
    const struct scan_cursor *sc = NULL;
    if (cursor != 0 && (sc = cursor_find(x->s, cursor)) == NULL) {
        resp_out_error(x->o, "invalid cursor (expired, or from another node: start again at 0)");
        return;
    }
    /* The range to walk: from the resume key (or the pattern's prefix) to the prefix's
     * end (or every key). */
    const uint8_t *pp = pat != NULL ? (const uint8_t *)pat->ptr : NULL;
    const uint32_t pl = pat != NULL ? (uint32_t)glob_prefix_len(pp, pat->len) : 0;
    static const uint8_t zero = 0;
    uint8_t end[RESP_PATTERN_BYTES_MAX];
    uint32_t end_len = 0;
    bool bounded = pl > 0 && kv_prefix_end(pp, pl, end, &end_len);
    const uint8_t *start = pl > 0 ? pp : &zero;
    uint32_t start_len = pl > 0 ? pl : 1;
    bool skip_first = false;
    if (sc != NULL && kvcmd_key_cmp(sc->key, sc->key_len, start, start_len) >= 0) {
        start = sc->key;
        start_len = sc->key_len;
        skip_first = true;
    }
    struct kv_range_resp resp = {0};
    bool live = false;
    if (!bounded || kvcmd_key_cmp(start, start_len, end, end_len) < 0) {
        const struct kv_range_req r = {.key = start,
                                       .key_len = start_len,
                                       .range_end = bounded ? end : &zero,
                                       .range_end_len = bounded ? end_len : 1,
                                       .limit = count + 1,
                                       .keys_only = true,
                                       .skip_count = true}; /* O(COUNT), not O(keyspace) */
        const int rv = kv_range(x->v->kv, &r, &resp);
        if (rv != 0) {
            resp_reply_kv_error(x->o, rv);
            return;
        }
        live = true;
    }
    uint32_t from = 0;
    if (skip_first && resp.n_kvs > 0 &&
        resp_bytes_eq(resp.kvs[0].key, resp.kvs[0].key_len, start, start_len)) {
        from = 1;
    }
    uint32_t upto = resp.n_kvs;
    if (upto - from > (uint32_t)count) {
        upto = from + (uint32_t)count;
    }
    const bool more = live && (resp.more || upto < resp.n_kvs);
    uint64_t next = 0;
    if (more && upto > from) {
        next = cursor_new(x->s, resp.kvs[upto - 1].key, resp.kvs[upto - 1].key_len);
        if (next == 0) {
            resp_xv_fail(x->v, RESP_SERVER_ENOMEM);
            x_view_failed(x);
            kv_range_resp_free(&resp);
            return;
        }
    }
    resp_out_array(x->o, 2);
    resp_out_bulk_i64(x->o, (int64_t)next);
    const struct resp_out_defer d = resp_out_defer(x->o);
    uint64_t n = 0;
    const bool type_ok = type == NULL || resp_arg_is(type, "string");
    for (uint32_t i = from; i < upto && type_ok; i++) {
        if (pat == NULL || glob_match(pp, pat->len, resp.kvs[i].key, resp.kvs[i].key_len)) {
            resp_out_bulk(x->o, resp.kvs[i].key, resp.kvs[i].key_len);
            n++;
        }
    }
    resp_out_defer_array(x->o, d, n);
    if (live) {
        kv_range_resp_free(&resp);
    }
}

/* ---- connection and server commands that touch no keys ------------------------------------ */

static void x_ping(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    if (argc > 2) {
        resp_cmdtab_err_arity(x->o, x->spec);
    } else if (argc == 2) {
        resp_out_bulk(x->o, argv[1].ptr, argv[1].len);
    } else {
        resp_out_simple(x->o, "PONG");
    }
}

static void x_select(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    (void)argc;
    int64_t db = 0;
    if (!x_int_arg(x, &argv[1], &db)) {
        return;
    }
    if (db != 0) {
        resp_out_error(x->o, "DB index is out of range");
        return;
    }
    resp_out_ok(x->o);
}

static const char *const command_help[] = {
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands Conclave's RESP front end knows.",
    "COUNT",
    "    Return the total number of commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "HELP",
    "    Print this help.",
};

static const char *const client_help[] = {
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
};

static void write_help(struct resp_out *o, const char *const *lines, size_t n)
{
    resp_out_array(o, n);
    for (size_t i = 0; i < n; i++) {
        resp_out_simple(o, lines[i]);
    }
}

void resp_x_dispatch(struct xrun *x, const struct resp_cmd_spec *spec, uint32_t argc,
                     const struct resp_arg *argv)
{
    x->spec = spec;
    switch (spec->id) {
    case RESP_CMD_PING:
        x_ping(x, argc, argv);
        return;
    case RESP_CMD_ECHO:
        resp_out_bulk(x->o, argv[1].ptr, argv[1].len);
        return;
    case RESP_CMD_SELECT:
        x_select(x, argc, argv);
        return;
    case RESP_CMD_INFO:
        resp_write_info(x, argc, argv);
        return;
    case RESP_CMD_COMMAND:
        resp_cmdtab_write_command(x->o);
        return;
    case RESP_CMD_COMMAND_COUNT:
        resp_cmdtab_write_count(x->o);
        return;
    case RESP_CMD_COMMAND_INFO:
        resp_cmdtab_write_info(x->o, argc - 2, argv + 2);
        return;
    case RESP_CMD_COMMAND_DOCS:
        resp_cmdtab_write_docs(x->o, argc - 2, argv + 2);
        return;
    case RESP_CMD_COMMAND_HELP:
        write_help(x->o, command_help, sizeof(command_help) / sizeof(command_help[0]));
        return;
    case RESP_CMD_CLIENT_ID:
        resp_out_int(x->o, (int64_t)x->c->id);
        return;
    case RESP_CMD_CLIENT_GETNAME:
        if (x->c->name[0] != '\0') {
            resp_out_bulk_cstr(x->o, x->c->name);
        } else {
            resp_out_null(x->o);
        }
        return;
    case RESP_CMD_CLIENT_INFO:
        resp_write_client_info(x);
        return;
    case RESP_CMD_CLIENT_HELP:
        write_help(x->o, client_help, sizeof(client_help) / sizeof(client_help[0]));
        return;
    case RESP_CMD_UNWATCH: /* inside EXEC: EXEC unwatches anyway */
        resp_out_ok(x->o);
        return;
    case RESP_CMD_GET:
        x_get(x, argc, argv);
        return;
    case RESP_CMD_MGET:
        x_mget(x, argc, argv);
        return;
    case RESP_CMD_STRLEN:
        x_strlen(x, argc, argv);
        return;
    case RESP_CMD_GETRANGE:
        x_getrange(x, argc, argv);
        return;
    case RESP_CMD_EXISTS:
        x_exists(x, argc, argv);
        return;
    case RESP_CMD_TYPE:
        x_type(x, argc, argv);
        return;
    case RESP_CMD_TTL:
    case RESP_CMD_PTTL:
    case RESP_CMD_EXPIRETIME:
    case RESP_CMD_PEXPIRETIME:
        x_ttl(x, argc, argv);
        return;
    case RESP_CMD_PERSIST:
        x_persist(x, argc, argv);
        return;
    case RESP_CMD_EXPIRE:
    case RESP_CMD_PEXPIRE:
    case RESP_CMD_EXPIREAT:
    case RESP_CMD_PEXPIREAT:
        x_expire(x, argc, argv);
        return;
    case RESP_CMD_SETEX:
    case RESP_CMD_PSETEX:
        x_setex(x, argc, argv);
        return;
    case RESP_CMD_GETEX:
        x_getex(x, argc, argv);
        return;
    case RESP_CMD_DBSIZE:
        x_dbsize(x, argc, argv);
        return;
    case RESP_CMD_KEYS:
        x_keys(x, argc, argv);
        return;
    case RESP_CMD_SCAN:
        x_scan(x, argc, argv);
        return;
    case RESP_CMD_SET:
        x_set(x, argc, argv);
        return;
    case RESP_CMD_SETNX:
        x_setnx(x, argc, argv);
        return;
    case RESP_CMD_GETSET:
        x_getset(x, argc, argv);
        return;
    case RESP_CMD_GETDEL:
        x_getdel(x, argc, argv);
        return;
    case RESP_CMD_MSET:
        x_mset(x, argc, argv);
        return;
    case RESP_CMD_MSETNX:
        x_msetnx(x, argc, argv);
        return;
    case RESP_CMD_APPEND:
        x_append(x, argc, argv);
        return;
    case RESP_CMD_SETRANGE:
        x_setrange(x, argc, argv);
        return;
    case RESP_CMD_INCR:
    case RESP_CMD_DECR:
    case RESP_CMD_INCRBY:
    case RESP_CMD_DECRBY:
        x_incr(x, argc, argv);
        return;
    case RESP_CMD_INCRBYFLOAT:
        x_incrbyfloat(x, argc, argv);
        return;
    case RESP_CMD_DEL:
    case RESP_CMD_UNLINK:
        x_del(x, argc, argv);
        return;
    case RESP_CMD_DELEX:
        x_delex(x, argc, argv);
        return;
    case RESP_CMD_RENAME:
        x_rename(x, argc, argv);
        return;
    default: /* connection state and MULTI control never reach the engine */
        CC_UNREACHABLE();
    }
}

/* Whether resp_x_dispatch runs this command (inside EXEC too); the rest change connection
 * state and are refused inside MULTI. */
bool resp_engine_runs(enum resp_cmd_id id)
{
    switch (id) {
    case RESP_CMD_AUTH:
    case RESP_CMD_CLIENT:
    case RESP_CMD_CLIENT_SETNAME:
    case RESP_CMD_HELLO:
    case RESP_CMD_QUIT:
    case RESP_CMD_READONLY:
    case RESP_CMD_READWRITE:
    case RESP_CMD_MULTI:
    case RESP_CMD_EXEC:
    case RESP_CMD_DISCARD:
    case RESP_CMD_WATCH:
        return false;
    default:
        return true;
    }
}
