/* resp_server.c -- the RESP listener: connections, pipelining, backpressure, and the
 * Redis commands of issue #6 mapped onto the node's Raft-replicated KV store.
 *
 * Connections. One struct rconn per client embeds its uv_tcp_t, a resp_parser (bytes
 * are read straight into it) and a resp_out (the client output buffer, capped at
 * RESP_CONN_OUT_BYTES_MAX: a client past it is disconnected). Every parsed command
 * becomes a struct rop appended to the connection's FIFO; replies leave strictly in
 * FIFO order even when a later command finishes first (its reply waits, copied, in the
 * op). Backpressure: the connection stops parsing and reading while RESP_CONN_OPS_MAX
 * commands are unanswered or more than RESP_CONN_OUT_HWM_BYTES of replies are queued,
 * so memory per client is bounded by those two plus one socket read.
 *
 * Execution order. Ops start in FIFO order; an op may start while earlier ones still
 * run only if all of them are of the same concurrent class: reads (READ) with reads,
 * blind single-entry writes (WRITE) with writes. Writes proposed back to back commit in
 * log order; reads started together see at least everything before them. Everything
 * else (read-modify-write, MULTI/EXEC, connection state: BARRIER) waits for the FIFO to
 * drain and holds back what follows. FREE ops (PING, INFO, errors) never wait on data.
 * So a pipeline behaves exactly as if its commands ran one by one, and still batches.
 *
 * Commands, three ways (docs/resp.md has the user's view):
 *   - reads: after node_read() (a batched ReadIndex round, or at once after READONLY),
 *     the command engine runs against the local store;
 *   - blind or conditional single-key writes (SET [NX|XX|IFEQ|IFNE] [GET], SETNX, GETSET,
 *     GETDEL, MSET, MSETNX, DEL, DELEX): one kv command or txn whose conditions the
 *     state machine evaluates at apply time, so they never conflict and never retry;
 *   - read-modify-write (INCR*, APPEND, SETRANGE, RENAME) and EXEC: the engine runs the
 *     command(s) against an overlay of the store, then proposes ONE txn whose compares
 *     pin every value it read (mod_revision, or the value itself, see "chains") and whose
 *     success branch holds every write; a failed compare means a conflict: rerun, at
 *     most RESP_RMW_ATTEMPTS_MAX times. An outcome that writes nothing (INCR of "abc")
 *     is confirmed by a linearizable read and a rerun instead.
 * Chains: read-modify-writes proposed by this server on one key pipeline through the
 * log instead of conflicting: the expected result of an in-flight txn is remembered
 * (struct chain) and the next RMW on that key computes from it and compares the value
 * (the outcome of INCR, APPEND, ... depends only on the value, so a value compare is
 * exact). A failed link invalidates the chain; the compares keep every case correct,
 * the chain only makes 50 clients INCRing one counter cost one fsync per batch.
 *
 * Sharing (group commit above Raft): what all clients start in one loop iteration is
 * handed to the node together, at the end of the iteration (the check handle):
 * linearizable reads share one ReadIndex round (struct rbatch), unconditional writes
 * share one txn without compares (struct wbatch), single-key read-modify-writes run one
 * after another against one overlay and share one txn (struct xbatch). Anything that
 * proposes on its own proposes the open write batch first, so log order stays arrival
 * order for every connection.
 *
 * Nothing here blocks, and no node callback runs client code re-entrantly: node
 * callbacks only record results; starting further ops, retries and socket writes happen
 * from the server's uv_check handle (a uv_idle keeps the loop from sleeping while
 * connections are pending there).
 *
 * Sections: limits and types | small helpers | errors | views and chains | the command
 * engine | direct writes | read-modify-write and EXEC | connection commands | ops |
 * connections | server.
 */
#include "api/resp_server.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/resp_cmdtab.h"
#include "api/resp_id.h"
#include "api/resp_proto.h"
#include "base/assert.h"
#include "base/grow.h"
#include "base/env.h"
#include "base/hash.h"
#include "sm/kvcmd.h"

/* ==== limits and types ================================================================ */

/* Redis maxclients' default; one more gets "-ERR max number of clients reached". */
#define RESP_SERVER_CLIENTS_MAX 10000u
/* Commands of one connection parsed but not yet answered: past it the connection stops
 * reading (pipelining backpressure). A redis-benchmark -P 16 run needs 16. */
#define RESP_CONN_OPS_MAX 1024u
/* Reply bytes of one connection (queued, being written, or waiting behind an earlier
 * command) above which it stops reading until the client drains them. */
#define RESP_CONN_OUT_HWM_BYTES (1u << 20)
/* The client output buffer limit: a connection whose replies would exceed it is
 * disconnected (Redis's client-output-buffer-limit). */
#define RESP_CONN_OUT_BYTES_MAX ((size_t)RESP_OUT_BYTES_DEFAULT)
/* A ReadIndex round or a proposal unanswered by then gets an error (api.c's values). */
#define RESP_READ_TIMEOUT_MS  5000u
#define RESP_WRITE_TIMEOUT_MS 10000u
#define RESP_TICK_MS          250u /* timeout scan period */
/* Attempts of one read-modify-write or EXEC before it gives up with -TRYAGAIN. */
#define RESP_RMW_ATTEMPTS_MAX 16u
/* Values up to this size are remembered for chained read-modify-writes (and compared by
 * value); bigger ones are compared by mod_revision so a txn stays one value big. */
#define RESP_CHAIN_VALUE_BYTES_MAX 1024u
#define RESP_CHAIN_BUCKETS         1024u /* hash buckets of the chain table */
/* Keys one engine run may touch: a txn has at most KV_TXN_CMP_MAX compares and
 * KV_TXN_OPS_MAX writes, so more could never commit. */
#define RESP_TXN_KEYS_MAX (KV_TXN_CMP_MAX + KV_TXN_OPS_MAX)
/* WATCHed keys per connection: they take compares from the EXEC's txn. */
#define RESP_WATCH_KEYS_MAX 32u
/* Commands and argument bytes queued by one MULTI. */
#define RESP_MULTI_QUEUED_MAX 1024u
#define RESP_MULTI_BYTES_MAX  (8u << 20)
/* KEYS examines at most this many keys (the pattern's literal prefix narrows the range
 * first); past it the command fails and SCAN is the way. */
#define RESP_KEYS_MAX KV_RANGE_LIMIT_MAX
/* SCAN's COUNT is clamped to this (keys examined per call). */
#define RESP_SCAN_COUNT_MAX     KV_RANGE_LIMIT_MAX
#define RESP_SCAN_COUNT_DEFAULT 10u
/* SCAN cursors remembered by a server (each maps a number to the key to resume after);
 * the oldest is forgotten first, and a forgotten cursor is "invalid cursor". */
#define RESP_SCAN_CURSORS_MAX 1024u
/* MATCH / KEYS patterns: glob matching is O(pattern * key) per key. */
#define RESP_PATTERN_BYTES_MAX 256u
/* CLIENT SETNAME / HELLO SETNAME. */
#define RESP_CLIENT_NAME_BYTES_MAX 128u
/* Redis's MAX_LONG_DOUBLE_CHARS: the longest float text INCRBYFLOAT accepts. */
#define RESP_FLOAT_CHARS_MAX (5u * 1024u)
/* The Redis version we claim (HELLO, INFO): the command table is Redis 7's. */
#define RESP_REDIS_VERSION "7.2.0"

_Static_assert(RESP_CONN_OUT_HWM_BYTES < RESP_CONN_OUT_BYTES_MAX / 4,
               "backpressure starts long before a client is cut off");
_Static_assert(RESP_WATCH_KEYS_MAX < KV_TXN_CMP_MAX, "WATCH leaves compares for the reads");
_Static_assert(RESP_KEYS_MAX <= KV_RANGE_LIMIT_MAX, "one kv_range answers KEYS");
_Static_assert(RESP_SCAN_COUNT_MAX + 1 <= KV_RANGE_LIMIT_MAX + 1, "one kv_range per SCAN");
_Static_assert(RESP_CHAIN_VALUE_BYTES_MAX <= KV_VALUE_BYTES_MAX, "a chained value is a value");
_Static_assert(RESP_MULTI_QUEUED_MAX <= RESP_CONN_OPS_MAX, "an EXEC reply fits the op bound");

/* Concurrency classes (see the essay). */
enum rcls { CLS_FREE, CLS_READ, CLS_WRITE, CLS_BARRIER };
enum rstate { OP_QUEUED, OP_RUNNING, OP_DONE };
/* The node callback an op waits for. */
enum rwait { W_NONE, W_READ, W_PROPOSE, W_ID /* resp_id.c: ID.NEXT, ID.SNOWFLAKE */ };
/* What the op is, for its callbacks. */
enum rkind {
    K_SYNC,   /* completes in op_start */
    K_READ,   /* engine read after node_read */
    K_WATCH,  /* WATCH: records mod_revisions after node_read */
    K_DIRECT, /* one proposal, reply from its result */
    K_RMW,    /* engine over an overlay, one txn, retries */
    K_EXEC,   /* EXEC: like K_RMW over the queued commands, or a read */
};

/* How a direct write's result becomes its reply. */
enum rdw {
    DW_OK,        /* +OK */
    DW_PREV,      /* put with prev_kv: the old value or nil (GETSET) */
    DW_DEL_PREV,  /* delete with prev_kv: the deleted value or nil (GETDEL) */
    DW_DEL_COUNT, /* keys deleted, summed over the responses (DEL, UNLINK, DELEX) */
    DW_TXN_BOOL,  /* :1 when the compares held (SETNX, MSETNX, DELEX IFEQ/IFNE) */
    DW_SET_COND,  /* SET with a condition: OK/nil, or with GET the old value */
};

/* One argument list owned by an op or a MULTI queue: argv[i].ptr point into the same
 * block, each followed by a NUL (names print as C strings in errors). */
struct rargs {
    uint32_t argc;
    const struct resp_arg *argv;
    void *mem; /* the block; NULL while argv are parser views */
};

/* A command queued by MULTI. */
struct mq_cmd {
    const struct resp_cmd_spec *spec;
    struct rargs a;
};

/* A WATCHed key and the mod_revision it had when watched (0: missing). */
struct rwatch {
    uint8_t *key;
    uint32_t key_len;
    int64_t mod;
};

struct chain;
struct rconn;
struct resp_server;
struct xbatch;

/* Chain links a proposed txn holds (one per key it writes), released when it applies. */
struct holds {
    struct chain **held;
    uint32_t n_held;
};

struct rop {
    struct rop *next; /* FIFO */
    struct rconn *c;
    const struct resp_cmd_spec *spec; /* NULL when the name or arity was wrong */
    struct rargs a;
    uint8_t cls, state, wait, kind;
    uint8_t dw;      /* enum rdw for K_DIRECT */
    bool dw_get;     /* DW_SET_COND: reply with the old value */
    bool dw_invert;  /* DW_SET_COND: the write ran in the failure branch (IFNE) */
    bool confirm;    /* K_RMW/K_EXEC: this attempt follows a linearizable read */
    bool retry;      /* K_RMW/K_EXEC: run another attempt from the check handle */
    bool exec_write; /* K_EXEC: some queued command writes */
    uint32_t attempts;
    uint64_t started_ms;
    /* The reply: bytes waiting for earlier replies, or prepared before a proposal. */
    uint8_t *reply;
    size_t reply_len;
    /* K_EXEC: the queued commands and the watched keys, moved from the connection. */
    struct mq_cmd *mq;
    uint32_t n_mq;
    struct rwatch *watch;
    uint32_t n_watch;
    /* K_RMW/K_EXEC: chain links this attempt holds (one per written key). */
    struct holds h;
    /* K_RMW: the shared read-modify-write txn it is part of (struct xbatch); solo after a
     * conflict, so one hot key cannot make unrelated commands fail again and again. */
    struct xbatch *xb;
    struct rop *xb_prev, *xb_next;
    bool solo;
    /* K_RMW/K_EXEC: waiting for an in-flight write of a big value to land. */
    struct chain *parked_on;
    struct rop *park_next;
    /* K_READ: the shared ReadIndex round it waits in (struct rbatch). */
    struct rbatch *rb;
    struct rop *rb_prev, *rb_next;
    /* K_DIRECT: the shared write txn it is part of (struct wbatch), and its slice of the
     * txn's ops (and so of its responses). */
    struct wbatch *wb;
    struct rop *wb_prev, *wb_next;
    uint32_t wb_off, wb_n;
};

/* Unconditional writes (plain SET, GETSET, GETDEL, MSET, DEL, ...) started in one loop
 * iteration, from every client, share one Raft entry: a txn without compares whose ops
 * are theirs in arrival order (group commit at the entry level). A batch never writes a
 * key twice (a KV txn may not) and stays under RESP_WBATCH_BYTES_MAX. */
struct wbatch {
    struct rop *ops, *tail; /* doubly linked through wb_prev / wb_next */
    uint32_t n;             /* ops waiting */
    uint32_t n_kv;
    size_t bytes;
    bool delivering;
    struct kv_op kv[KV_TXN_OPS_MAX]; /* views into the ops' owned arguments */
};

/* Reads started in one loop iteration share one node_read (one ReadIndex round): it is
 * asked for after all of them arrived, so it is late enough for each. */
struct rbatch {
    struct rop *ops; /* doubly linked through rb_prev / rb_next */
    uint32_t n;
    bool delivering; /* on_rb_ready is walking it: it frees it at the end */
};

struct rconn {
    uv_tcp_t tcp; /* .data = this */
    uv_write_t wreq;
    struct resp_server *s;
    struct rconn *prev, *next; /* all connections */
    struct rconn *dnext;       /* the server's pending list */
    uint64_t id;
    struct resp_parser p;
    struct resp_out out;
    struct rop *head, *tail; /* FIFO of unanswered commands */
    struct rop *next_start;  /* first op not started yet (NULL: all started) */
    uint32_t n_ops, n_running;
    uint8_t running_cls;
    size_t deferred_bytes; /* reply bytes waiting in ops */
    size_t out_mark;       /* where op_out's current reply starts in out (error counting) */
    uint8_t *wbuf;         /* the write in flight (from resp_out_take) */
    size_t wlen;
    bool in_pending, reading, writing, closing, draining, stalled, refused;
    bool readonly; /* serializable reads */
    bool multi, multi_dirty;
    struct mq_cmd *mq;
    uint32_t n_mq, cap_mq;
    size_t mq_bytes;
    struct rwatch *watch;
    uint32_t n_watch;
    char name[RESP_CLIENT_NAME_BYTES_MAX + 1];
    char addr[80], laddr[80]; /* host (at most 63 bytes) ":" port */
    uint64_t created_ms, last_ms;
    const char *last_cmd;
};

/* A remembered expected state of one key after an in-flight txn (see the essay). A
 * value bigger than RESP_CHAIN_VALUE_BYTES_MAX is not kept (opaque): the next
 * read-modify-write of the key waits for the txn to land instead (struct rop.parked_on),
 * which serializes them on the server rather than letting them conflict in the log. */
struct chain {
    struct chain *hnext;
    uint64_t hash;
    uint8_t *key;
    uint32_t key_len;
    bool exists;
    bool linked; /* in the table (else kept alive by refs only) */
    bool opaque; /* the value is not kept: readers wait */
    uint8_t *val;
    uint32_t val_len;
    int64_t lease;
    uint32_t refs;       /* ops in flight that wrote it */
    struct rop *waiters; /* ops parked on it (opaque only), via park_next */
};

struct scan_cursor {
    uint64_t id; /* 0: free */
    uint8_t *key;
    uint32_t key_len;
};

struct resp_server {
    uv_loop_t *loop;
    struct node *node;
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_check_t check;
    uv_idle_t idle;
    uint32_t n_handles; /* server handles not yet closed */
    uint32_t n_alive;   /* connections not yet freed */
    bool stopping, idle_on;
    void (*done_cb)(void *arg);
    void *done_arg;
    struct rconn *conns;
    uint32_t n_conns; /* counted against RESP_SERVER_CLIENTS_MAX */
    struct rconn *pending;
    struct rbatch *rb_open; /* reads waiting for the next ReadIndex round */
    struct wbatch *wb_open; /* writes waiting to be proposed together */
    struct xbatch *xb_open; /* read-modify-writes waiting to be proposed together */
    uint64_t next_client_id;
    uint64_t started_ms;
    int port;
    struct resp_out scratch; /* replies that must wait, and prepared ones */
    struct dbuild *db;       /* direct_build's work area */
    struct chain *chains[RESP_CHAIN_BUCKETS];
    struct scan_cursor cursors[RESP_SCAN_CURSORS_MAX];
    uint32_t cursor_next;
    uint64_t cursor_epoch, cursor_seq;
    struct resp_server_stats st;
};

static void conn_pend(struct rconn *c);
static void conn_close(struct rconn *c);
static void op_finish(struct rop *op, struct resp_out *o);
static struct resp_out *op_out(struct rop *op);
static void rmw_attempt(struct rop *op);
static void op_finish_error(struct rop *op, const char *msg);
static int op_own_args(struct rop *op);

/* ==== small helpers ===================================================================== */

static bool arg_is(const struct resp_arg *a, const char *word)
{
    const size_t n = strlen(word);
    return a->len == n && strncasecmp(a->ptr, word, n) == 0;
}

static bool bytes_eq(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n > 0 ? n : 1);
    if (d != NULL && n > 0) {
        memcpy(d, p, n);
    }
    return d;
}

static uint64_t now_ms(const struct resp_server *s)
{
    return uv_now(s->loop);
}

static bool is_leader(const struct resp_server *s)
{
    return raft_role(node_raft(s->node)) == RAFT_LEADER;
}

/* A copy of argv into one block (see struct rargs). 0 or RESP_SERVER_ENOMEM. */
static int rargs_copy(struct rargs *dst, uint32_t argc, const struct resp_arg *argv)
{
    size_t bytes = (size_t)argc * sizeof(struct resp_arg);
    for (uint32_t i = 0; i < argc; i++) {
        bytes += argv[i].len + 1;
    }
    uint8_t *mem = malloc(bytes > 0 ? bytes : 1);
    if (mem == NULL) {
        return RESP_SERVER_ENOMEM;
    }
    struct resp_arg *nv = (struct resp_arg *)(void *)mem;
    char *at = (char *)(mem + (size_t)argc * sizeof(struct resp_arg));
    for (uint32_t i = 0; i < argc; i++) {
        if (argv[i].len > 0) {
            memcpy(at, argv[i].ptr, argv[i].len);
        }
        at[argv[i].len] = '\0';
        nv[i].ptr = at;
        nv[i].len = argv[i].len;
        at += argv[i].len + 1;
    }
    dst->argc = argc;
    dst->argv = nv;
    dst->mem = mem;
    return 0;
}

static size_t rargs_bytes(uint32_t argc, const struct resp_arg *argv)
{
    size_t n = 0;
    for (uint32_t i = 0; i < argc; i++) {
        n += argv[i].len + sizeof(struct resp_arg) + 1;
    }
    return n;
}

static void rargs_free(struct rargs *a)
{
    free(a->mem);
    memset(a, 0, sizeof(*a));
}

/* A growable text buffer for INFO and CLIENT INFO. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->oom) {
        return;
    }
    for (int round = 0; round < 2; round++) {
        va_list ap;
        va_start(ap, fmt);
        const size_t room = b->cap - b->len;
        const int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        CC_ASSERT(n >= 0);
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap > 0 ? b->cap * 2 : 1024;
        while (ncap < b->len + (size_t)n + 1) {
            ncap *= 2;
        }
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

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

/* ==== errors ============================================================================ */

const char *resp_server_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case RESP_SERVER_EADDR:
        return "bad listen address";
    case RESP_SERVER_ELISTEN:
        return "cannot listen";
    case RESP_SERVER_ENOMEM:
        return "out of memory";
    default:
        return "unknown resp_server error";
    }
}

/* Redis's texts for argument errors, and Conclave's for what Redis has no word for. */
#define ERR_SYNTAX      "syntax error"
#define ERR_NOT_INT     "value is not an integer or out of range"
#define ERR_NOT_FLOAT   "value is not a valid float"
#define ERR_OVERFLOW    "increment or decrement would overflow"
#define ERR_NAN         "increment would produce NaN or Infinity"
#define ERR_TOO_BIG     "string exceeds maximum allowed size (proto-max-bulk-len)"
#define ERR_NO_SUCH_KEY "no such key"
/* A TTL past what a lease may have (sm/lease.h LEASE_TTL_MS_MAX); Redis has no limit. */
#define ERR_TTL_LONG "invalid expire time in '%s' command (Conclave keys expire within %lld days)"

static void reply_errorf(struct resp_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply_errorf(struct resp_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_out_verrorf(o, fmt, ap);
    va_end(ap);
}

/* A write reached a node that is not the leader. RESP does not forward: the client
 * (or its Sentinel-style retry logic, which knows READONLY) must talk to the leader. */
static void reply_not_leader(struct resp_server *s, struct resp_out *o)
{
    const uint32_t leader = raft_leader(node_raft(s->node));
    const struct node_member *m = leader != 0 ? node_member(s->node, leader) : NULL;
    if (m == NULL) {
        resp_out_error(o, "-TRYAGAIN no leader is known right now (an election is running); "
                          "retry");
        return;
    }
    reply_errorf(o,
                 "-READONLY You can't write against a read only replica. Conclave node %s "
                 "follows leader %s (HTTP %s); send writes to the leader's RESP port",
                 node_self(s->node)->name, m->name, m->http_addr[0] ? m->http_addr : "unknown");
}

/* A node or raft error from node_propose / node_read or a callback. */
static void reply_node_error(struct resp_server *s, struct resp_out *o, int rv)
{
    switch (rv) {
    case NODE_ENOTLEADER:
    case RAFT_ENOTLEADER:
        reply_not_leader(s, o);
        return;
    case RAFT_ESTEPPEDDOWN:
        resp_out_error(o, "-TRYAGAIN leadership changed during the read; retry");
        return;
    case NODE_ELOST:
        resp_out_error(o, "-TRYAGAIN leadership changed before the write committed; it was "
                          "not applied, retry");
        return;
    case NODE_EUNKNOWN:
        resp_out_error(o, "outcome unknown: a snapshot replaced the log before the write was "
                          "seen applied; it may or may not have taken effect");
        return;
    case NODE_EFULL:
    case RAFT_EFULL:
    case RAFT_EBUSY:
        resp_out_error(o, "-TRYAGAIN the node has too many pending requests; retry");
        return;
    case NODE_ESTOPPED:
        resp_out_error(o, "the node is shutting down");
        return;
    case RAFT_ETOOBIG:
        reply_errorf(o, "command does not fit one Raft entry (%u bytes)",
                     (unsigned)KV_CMD_BYTES_MAX);
        return;
    default:
        reply_errorf(o, "%s", node_strerror(rv));
        return;
    }
}

/* A state machine or codec error (KV_E*, or another machine's via sm_strerror). */
static void reply_kv_error(struct resp_out *o, int err)
{
    switch (err) {
    case KV_EKEYEMPTY:
        resp_out_error(o, "empty keys are not supported (Conclave keys are 1 to 4096 bytes)");
        return;
    case KV_EKEYTOOBIG:
        reply_errorf(o, "key is too long (the limit is %u bytes)", (unsigned)KV_KEY_BYTES_MAX);
        return;
    case KV_EVALUETOOBIG:
        resp_out_error(o, ERR_TOO_BIG);
        return;
    case KV_ECMDTOOBIG:
        reply_errorf(o, "command does not fit one Raft entry (%u bytes)",
                     (unsigned)KV_CMD_BYTES_MAX);
        return;
    case KV_ETXNOPS:
        reply_errorf(o, "too many writes for one transaction (the limit is %u keys)",
                     (unsigned)KV_TXN_OPS_MAX);
        return;
    case KV_ETXNCMPS:
        reply_errorf(o, "too many keys read for one transaction (the limit is %u)",
                     (unsigned)KV_TXN_CMP_MAX);
        return;
    case KV_ENOMEM:
        resp_out_error(o, "out of memory");
        return;
    case SM_EGRANTS:
        reply_errorf(o, "too many keys given a TTL by one transaction (the limit is %u)",
                     (unsigned)SM_KVTTL_GRANTS_MAX);
        return;
    case LEASE_EFULL:
        reply_errorf(o, "too many keys with a TTL (the limit is %u leases)",
                     (unsigned)LEASE_COUNT_MAX);
        return;
    default:
        reply_errorf(o, "%s", sm_strerror(err));
        return;
    }
}

/* 0 when key can be written, else the KV error for it. */
static int key_check(const struct resp_arg *k)
{
    if (k->len == 0) {
        return KV_EKEYEMPTY;
    }
    return k->len > KV_KEY_BYTES_MAX ? KV_EKEYTOOBIG : 0;
}

/* A key no store can hold: reads see it missing, writes fail with key_check's error. */
static bool key_impossible(const void *key, size_t len)
{
    (void)key;
    return len == 0 || len > KV_KEY_BYTES_MAX;
}

/* ==== views and chains ====================================================================
 * A view is what the command engine reads and writes through:
 *   - store mode: reads go straight to the local store (after node_read made that safe);
 *     writes are a programmer error (only commands without the write flag run here);
 *   - overlay mode: every key touched is copied into an xkey the first time; writes only
 *     change the copy. At the end the xkeys become one txn: a compare for every key whose
 *     original state was observed (xkey.read), an op for every key written (xkey.dirty).
 * Values returned by xv_get stay valid until the next xv_* call on the same key (store
 * mode: on any key) or xv_free. */

enum {
    RESP__EKEYS = -1949, /* internal: a run touched more than RESP_TXN_KEYS_MAX keys */
    RESP__EWAIT = -1948, /* internal: a key's big value is in flight: park (xview.wait_on) */
};

struct xval {
    bool exists;
    const uint8_t *ptr;
    uint32_t len;
    int64_t lease; /* 0: no TTL; < 0: -ttl_ms of a lease this txn grants ("expiry") */
    int64_t mod; /* store mode only */
};

struct xkey {
    uint8_t *key;
    uint32_t key_len;
    bool loaded, read, dirty, from_chain;
    bool base_exists, cur_exists;
    uint8_t *base, *cur; /* cur may equal base */
    uint32_t base_len, cur_len;
    int64_t base_mod, base_lease, cur_lease;
};

struct xview {
    struct resp_server *s;
    const struct kv *kv;
    bool overlay, use_chain;
    int err; /* sticky: RESP__EKEYS, RESP__EWAIT or RESP_SERVER_ENOMEM; replies are void */
    struct chain *wait_on; /* RESP__EWAIT: the entry to park on */
    struct xkey *k;
    uint32_t n, cap;
    struct kv_range_resp tmp;
    bool tmp_live;
};

static uint64_t chain_hash(const uint8_t *key, uint32_t len)
{
    return hash_fnv1a64(HASH_FNV_INIT, key, len);
}

static struct chain *chain_find(struct resp_server *s, const uint8_t *key, uint32_t len)
{
    const uint64_t h = chain_hash(key, len);
    for (struct chain *e = s->chains[h % RESP_CHAIN_BUCKETS]; e != NULL; e = e->hnext) {
        if (e->hash == h && bytes_eq(e->key, e->key_len, key, len)) {
            return e;
        }
    }
    return NULL;
}

static void chain_free(struct chain *e)
{
    CC_ASSERT(e->waiters == NULL);
    free(e->key);
    free(e->val);
    free(e);
}

/* Wakes every op parked on e: each runs its attempt again from the check handle. */
static void chain_wake(struct chain *e)
{
    while (e->waiters != NULL) { /* each round unlinks one */
        struct rop *op = e->waiters;
        e->waiters = op->park_next;
        op->park_next = NULL;
        op->parked_on = NULL;
        op->retry = true;
        conn_pend(op->c);
    }
}

/* Takes op off the waiters of the entry it is parked on (its connection closes). */
static void chain_unpark(struct rop *op)
{
    struct chain *e = op->parked_on;
    if (e == NULL) {
        return;
    }
    struct rop **pp = &e->waiters;
    while (*pp != op) { /* op is on this list: the loop ends on it */
        CC_ASSERT(*pp != NULL);
        pp = &(*pp)->park_next;
    }
    *pp = op->park_next;
    op->park_next = NULL;
    op->parked_on = NULL;
}

/* Takes e out of the table: new readers go to the store. Freed once no op holds it. */
static void chain_unlink(struct resp_server *s, struct chain *e)
{
    CC_ASSERT(e->linked);
    chain_wake(e);
    struct chain **pp = &s->chains[e->hash % RESP_CHAIN_BUCKETS];
    while (*pp != e) { /* e is in this bucket: the loop ends on it */
        CC_ASSERT(*pp != NULL);
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    e->hnext = NULL;
    e->linked = false;
    if (e->refs == 0) {
        chain_free(e);
    }
}

static void chain_invalidate(struct resp_server *s, const uint8_t *key, uint32_t len)
{
    struct chain *e = chain_find(s, key, len);
    if (e != NULL) {
        chain_unlink(s, e);
    }
}

/* Records the state op's txn will leave key in, for the next RMW on it. */
static int chain_hold(struct resp_server *s, struct holds *h, const struct xkey *xk)
{
    struct chain *e = chain_find(s, xk->key, xk->key_len);
    const bool opaque = xk->cur_exists && xk->cur_len > RESP_CHAIN_VALUE_BYTES_MAX;
    uint8_t *val = xk->cur_exists && !opaque ? dup_bytes(xk->cur, xk->cur_len) : NULL;
    if (xk->cur_exists && !opaque && val == NULL) {
        return RESP_SERVER_ENOMEM;
    }
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        uint8_t *key = dup_bytes(xk->key, xk->key_len);
        if (e == NULL || key == NULL) {
            free(e);
            free(key);
            free(val);
            return RESP_SERVER_ENOMEM;
        }
        e->key = key;
        e->key_len = xk->key_len;
        e->hash = chain_hash(key, xk->key_len);
        e->hnext = s->chains[e->hash % RESP_CHAIN_BUCKETS];
        s->chains[e->hash % RESP_CHAIN_BUCKETS] = e;
        e->linked = true;
    }
    free(e->val);
    e->val = val;
    e->val_len = xk->cur_exists && !opaque ? xk->cur_len : 0;
    e->opaque = opaque;
    e->exists = xk->cur_exists;
    e->lease = xk->cur_lease;
    e->refs++;
    h->held[h->n_held++] = e;
    return 0;
}

/* The txn of op applied (ok) or not: drop its links; a failed link poisons the chain. */
static void chain_release(struct resp_server *s, struct holds *h, bool ok)
{
    for (uint32_t i = 0; i < h->n_held; i++) {
        struct chain *e = h->held[i];
        CC_ASSERT(e->refs > 0);
        e->refs--;
        if (e->linked && (!ok || e->refs == 0)) {
            chain_unlink(s, e); /* frees it when refs reached 0 */
        } else if (!e->linked && e->refs == 0) {
            chain_free(e);
        }
    }
    free(h->held);
    h->held = NULL;
    h->n_held = 0;
}

static void xv_init(struct xview *v, struct resp_server *s, bool overlay, bool use_chain)
{
    memset(v, 0, sizeof(*v));
    v->s = s;
    v->kv = node_kv(s->node);
    v->overlay = overlay;
    v->use_chain = use_chain;
}

static void xv_free(struct xview *v)
{
    if (v->tmp_live) {
        kv_range_resp_free(&v->tmp);
    }
    for (uint32_t i = 0; i < v->n; i++) {
        struct xkey *k = &v->k[i];
        if (k->cur != k->base) {
            free(k->cur);
        }
        free(k->base);
        free(k->key);
    }
    free(v->k);
    memset(v, 0, sizeof(*v));
}

static int xv_fail(struct xview *v, int err)
{
    if (v->err == 0) {
        v->err = err;
    }
    return v->err;
}

/* Reads one key from the local store into kvs (a kv_range answer) or reports missing. */
static int store_get(const struct kv *kv, const uint8_t *key, uint32_t len,
                     struct kv_range_resp *resp, bool *exists)
{
    *exists = false;
    memset(resp, 0, sizeof(*resp));
    if (key_impossible(key, len)) {
        return 0;
    }
    const struct kv_range_req r = {.key = key, .key_len = len};
    const int rv = kv_range(kv, &r, resp);
    if (rv != 0) {
        return rv == KV_ENOMEM ? RESP_SERVER_ENOMEM : rv;
    }
    *exists = resp->n_kvs > 0;
    return 0;
}

static struct xkey *xv_find(struct xview *v, const uint8_t *key, uint32_t len)
{
    for (uint32_t i = 0; i < v->n; i++) {
        if (bytes_eq(v->k[i].key, v->k[i].key_len, key, len)) {
            return &v->k[i];
        }
    }
    return NULL;
}

static struct xkey *xv_slot(struct xview *v, const uint8_t *key, uint32_t len)
{
    struct xkey *k = xv_find(v, key, len);
    if (k != NULL) {
        return k;
    }
    if (v->n >= RESP_TXN_KEYS_MAX) {
        xv_fail(v, RESP__EKEYS);
        return NULL;
    }
    if (v->n == v->cap) {
        const uint32_t ncap = v->cap > 0 ? v->cap * 2 : 8;
        struct xkey *nk = realloc(v->k, (size_t)ncap * sizeof(*nk));
        if (nk == NULL) {
            xv_fail(v, RESP_SERVER_ENOMEM);
            return NULL;
        }
        v->k = nk;
        v->cap = ncap;
    }
    uint8_t *kc = dup_bytes(key, len);
    if (kc == NULL) {
        xv_fail(v, RESP_SERVER_ENOMEM);
        return NULL;
    }
    k = &v->k[v->n++];
    memset(k, 0, sizeof(*k));
    k->key = kc;
    k->key_len = len;
    return k;
}

/* Fills k's original state from the chain (an in-flight txn's result) or the store. */
static int xv_load(struct xview *v, struct xkey *k)
{
    struct chain *e = v->use_chain ? chain_find(v->s, k->key, k->key_len) : NULL;
    if (e != NULL && e->opaque) {
        v->wait_on = e;
        return xv_fail(v, RESP__EWAIT);
    }
    if (e != NULL) {
        k->from_chain = true;
        k->base_exists = e->exists;
        k->base_lease = e->lease;
        if (e->exists) {
            k->base = dup_bytes(e->val, e->val_len);
            if (k->base == NULL) {
                return xv_fail(v, RESP_SERVER_ENOMEM);
            }
            k->base_len = e->val_len;
        }
    } else {
        struct kv_range_resp r;
        bool exists = false;
        const int rv = store_get(v->kv, k->key, k->key_len, &r, &exists);
        if (rv != 0) {
            return xv_fail(v, rv == RESP_SERVER_ENOMEM ? rv : RESP_SERVER_ENOMEM);
        }
        if (exists) {
            k->base = dup_bytes(r.kvs[0].value, r.kvs[0].value_len);
            k->base_len = r.kvs[0].value_len;
            k->base_mod = r.kvs[0].mod_revision;
            k->base_lease = r.kvs[0].lease;
            k->base_exists = true;
        }
        kv_range_resp_free(&r);
        if (exists && k->base == NULL) {
            return xv_fail(v, RESP_SERVER_ENOMEM);
        }
    }
    k->loaded = true;
    k->cur_exists = k->base_exists;
    k->cur = k->base;
    k->cur_len = k->base_len;
    k->cur_lease = k->base_lease;
    return 0;
}

static int xv_get(struct xview *v, const void *key_p, size_t len, struct xval *out)
{
    const uint8_t *key = key_p;
    memset(out, 0, sizeof(*out));
    if (v->err != 0) {
        return v->err;
    }
    if (key_impossible(key, len)) {
        return 0; /* such a key cannot exist; a write of it fails on its own */
    }
    if (!v->overlay) {
        if (v->tmp_live) {
            kv_range_resp_free(&v->tmp);
            v->tmp_live = false;
        }
        bool exists = false;
        const int rv = store_get(v->kv, key, (uint32_t)len, &v->tmp, &exists);
        if (rv != 0) {
            return xv_fail(v, RESP_SERVER_ENOMEM);
        }
        v->tmp_live = true;
        if (exists) {
            const struct kv_kv *kv = &v->tmp.kvs[0];
            *out = (struct xval){.exists = true,
                                 .ptr = kv->value,
                                 .len = kv->value_len,
                                 .lease = kv->lease,
                                 .mod = kv->mod_revision};
        }
        return 0;
    }
    struct xkey *k = xv_slot(v, key, (uint32_t)len);
    if (k == NULL) {
        return v->err;
    }
    if (!k->loaded && !k->dirty) {
        if (xv_load(v, k) != 0) {
            return v->err;
        }
        k->read = true;
    }
    if (k->cur_exists) {
        *out =
            (struct xval){.exists = true, .ptr = k->cur, .len = k->cur_len, .lease = k->cur_lease};
    }
    return 0;
}

/* Writes (exists) or deletes key in the overlay. The caller checked the key and value
 * limits first; only running out of keys or memory fails here (and voids the run). */
static int xv_set(struct xview *v, const void *key_p, size_t len, bool exists, const void *val,
                  size_t val_len, int64_t lease)
{
    CC_ASSERT(v->overlay);
    CC_ASSERT(!key_impossible(key_p, len));
    CC_ASSERT(val_len <= KV_VALUE_BYTES_MAX);
    if (v->err != 0) {
        return v->err;
    }
    struct xkey *k = xv_slot(v, key_p, (uint32_t)len);
    if (k == NULL) {
        return v->err;
    }
    uint8_t *nv = NULL;
    if (exists) {
        nv = dup_bytes(val, val_len);
        if (nv == NULL) {
            return xv_fail(v, RESP_SERVER_ENOMEM);
        }
    }
    if (k->cur != k->base) {
        free(k->cur);
    }
    k->cur = nv;
    k->cur_len = exists ? (uint32_t)val_len : 0;
    k->cur_exists = exists;
    k->cur_lease = exists ? lease : 0;
    k->dirty = true;
    return 0;
}

/* ==== the command engine ===================================================================
 * One function per command, each writing exactly one reply to x->o and reading and
 * writing keys only through x->v. The same code serves a standalone read (store view),
 * a read-modify-write (overlay view) and every command inside EXEC (either). */

struct xrun {
    struct resp_server *s;
    struct rconn *c;
    struct xview *v;
    struct resp_out *o;
    const struct resp_cmd_spec *spec;
};

static void write_info(struct xrun *x, uint32_t argc, const struct resp_arg *argv);
static void write_client_info(struct xrun *x);
static void write_help(struct resp_out *o, const char *const *lines, size_t n);

/* The run's view failed (too many keys, no memory): the reply is replaced as a whole
 * later; this one keeps the framing sane meanwhile. */
static void x_view_failed(struct xrun *x)
{
    resp_out_error(x->o, "transaction aborted");
}

#define XGET(x, kp, kl, val)                          \
    do {                                              \
        if (xv_get((x)->v, (kp), (kl), (val)) != 0) { \
            x_view_failed(x);                         \
            return;                                   \
        }                                             \
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
    const int rv = key_check(k);
    if (rv != 0) {
        reply_kv_error(x->o, rv);
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
        reply_errorf(x->o,
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

enum { SC_NONE, SC_NX, SC_XX, SC_IFEQ, SC_IFNE };
enum { SE_NONE, SE_EX, SE_PX, SE_EXAT, SE_PXAT, SE_KEEPTTL, SE_PERSIST };

struct setopt {
    uint8_t cond, exp;
    bool get;
    const struct resp_arg *cmp; /* IFEQ / IFNE value */
    int64_t exp_val;
};

/* Redis's parseExtendedStringArgumentsOrReply (+ Redis 8.4's IFEQ/IFNE), for SET
 * (getex false) and GETEX (getex true). False after writing the error. */
static bool set_parse(struct resp_out *o, const char *cmd, uint32_t argc,
                      const struct resp_arg *argv, uint32_t from, bool getex, struct setopt *so)
{
    memset(so, 0, sizeof(*so));
    const struct resp_arg *exp_arg = NULL;
    for (uint32_t j = from; j < argc; j++) {
        const struct resp_arg *a = &argv[j];
        const struct resp_arg *next = j + 1 < argc ? &argv[j + 1] : NULL;
        uint8_t exp = SE_NONE, cond = SC_NONE;
        if (!getex && arg_is(a, "NX")) {
            cond = SC_NX;
        } else if (!getex && arg_is(a, "XX")) {
            cond = SC_XX;
        } else if (!getex && next != NULL && arg_is(a, "IFEQ")) {
            cond = SC_IFEQ;
        } else if (!getex && next != NULL && arg_is(a, "IFNE")) {
            cond = SC_IFNE;
        } else if (!getex && arg_is(a, "GET")) {
            so->get = true;
            continue;
        } else if (!getex && arg_is(a, "KEEPTTL")) {
            exp = SE_KEEPTTL;
        } else if (getex && arg_is(a, "PERSIST")) {
            exp = SE_PERSIST;
        } else if (next != NULL && arg_is(a, "EX")) {
            exp = SE_EX;
        } else if (next != NULL && arg_is(a, "PX")) {
            exp = SE_PX;
        } else if (next != NULL && arg_is(a, "EXAT")) {
            exp = SE_EXAT;
        } else if (next != NULL && arg_is(a, "PXAT")) {
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
            reply_errorf(o, "invalid expire time in '%s' command", cmd);
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

/* The TTL in ms an EX/PX/EXAT/PXAT option asks for (<= 0: already past). set_parse
 * checked that seconds fit milliseconds. */
static int64_t exp_ttl_ms(uint8_t exp, int64_t val)
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
static bool ttl_ok(struct resp_out *o, const char *cmd, int64_t ttl_ms, int64_t *lease_ttl)
{
    CC_ASSERT(ttl_ms > 0);
    if (ttl_ms > LEASE_TTL_MS_MAX) {
        reply_errorf(o, ERR_TTL_LONG, cmd, (long long)(LEASE_TTL_MS_MAX / (24LL * 3600 * 1000)));
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
    xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, 0);
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
        if (arg_is(&argv[j], "NX")) {
            nx = true;
        } else if (arg_is(&argv[j], "XX")) {
            xx = true;
        } else if (arg_is(&argv[j], "GT")) {
            gt = true;
        } else if (arg_is(&argv[j], "LT")) {
            lt = true;
        } else {
            reply_errorf(x->o, "Unsupported option %.*s",
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
        reply_errorf(x->o, "invalid expire time in '%s' command", x->spec->name);
        return;
    }
    const int64_t ms = seconds ? n * 1000 : n;
    const bool absolute = id == RESP_CMD_EXPIREAT || id == RESP_CMD_PEXPIREAT;
    const int64_t ttl = absolute ? ttl_until(ms) : ms;
    if (ttl > LEASE_TTL_MS_MAX) {
        reply_errorf(x->o, ERR_TTL_LONG, x->spec->name,
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
        xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
        return;
    }
    int64_t lease_ttl = 0;
    (void)ttl_ok(x->o, x->spec->name, ttl, &lease_ttl); /* in range: checked above */
    xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, -lease_ttl);
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
        reply_errorf(x->o, "invalid expire time in '%s' command", x->spec->name);
        return;
    }
    int64_t lease_ttl = 0;
    if (!x_key_ok(x, &argv[1]) || !x_value_ok(x, argv[3].len) ||
        !ttl_ok(x->o, x->spec->name, seconds ? n * 1000 : n, &lease_ttl)) {
        return;
    }
    resp_out_ok(x->o);
    xv_set(x->v, argv[1].ptr, argv[1].len, true, argv[3].ptr, argv[3].len, -lease_ttl);
}

/* GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]. */
static void x_getex(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    struct setopt so;
    if (!set_parse(x->o, "getex", argc, argv, 2, true, &so)) {
        return;
    }
    int64_t ttl = 0, lease_ttl = 0;
    if (so.exp != SE_NONE && so.exp != SE_PERSIST) {
        ttl = exp_ttl_ms(so.exp, so.exp_val);
        if (ttl > 0 && !ttl_ok(x->o, "getex", ttl, &lease_ttl)) {
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
        xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, 0);
    } else if (so.exp != SE_NONE && so.exp != SE_PERSIST && ttl <= 0) {
        xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0); /* a time in the past */
    } else if (so.exp != SE_NONE && so.exp != SE_PERSIST) {
        xv_set(x->v, argv[1].ptr, argv[1].len, true, v.ptr, v.len, -lease_ttl);
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
        const bool found = xv_get(x->v, argv[i].ptr, argv[i].len, &v) == 0 && v.exists;
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
        const int64_t ttl = exp_ttl_ms(so->exp, so->exp_val);
        int64_t lease_ttl = 0;
        if (ttl > 0 && !ttl_ok(x->o, x->spec->name, ttl, &lease_ttl)) {
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
        eq = cur.exists && bytes_eq(cur.ptr, cur.len, so->cmp->ptr, so->cmp->len);
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
        xv_set(x->v, key->ptr, key->len, !past, val->ptr, val->len, lease);
    }
}

static void x_set(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    struct setopt so;
    if (set_parse(x->o, "set", argc, argv, 3, false, &so)) {
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
    xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
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
        xv_set(x->v, argv[i].ptr, argv[i].len, true, argv[i + 1].ptr, argv[i + 1].len, 0);
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
            xv_set(x->v, argv[i].ptr, argv[i].len, true, argv[i + 1].ptr, argv[i + 1].len, 0);
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
        xv_fail(x->v, RESP_SERVER_ENOMEM);
        x_view_failed(x);
        return;
    }
    if (old > 0) {
        memcpy(nv, v.ptr, old);
    }
    if (argv[2].len > 0) {
        memcpy(nv + old, argv[2].ptr, argv[2].len);
    }
    xv_set(x->v, argv[1].ptr, argv[1].len, true, nv, old + argv[2].len, v.exists ? v.lease : 0);
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
        xv_fail(x->v, RESP_SERVER_ENOMEM);
        x_view_failed(x);
        return;
    }
    if (old > 0) {
        memcpy(nv, v.ptr, old);
    }
    memcpy(nv + off, argv[3].ptr, vlen);
    xv_set(x->v, argv[1].ptr, argv[1].len, true, nv, nlen, v.exists ? v.lease : 0);
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
    xv_set(x->v, argv[1].ptr, argv[1].len, true, t, (size_t)n, v.exists ? v.lease : 0);
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
    xv_set(x->v, argv[1].ptr, argv[1].len, true, t, n, v.exists ? v.lease : 0);
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
            xv_set(x->v, argv[i].ptr, argv[i].len, false, NULL, 0, 0);
            n++;
        }
    }
    resp_out_int(x->o, n);
}

/* DELEX key [IFEQ value | IFNE value]: Redis 8.4's compare-and-delete. */
static bool delex_parse(struct resp_out *o, uint32_t argc, const struct resp_arg *argv,
                        uint8_t *cond)
{
    *cond = SC_NONE;
    if (argc == 2) {
        return true;
    }
    if (argc == 4 && arg_is(&argv[2], "IFEQ")) {
        *cond = SC_IFEQ;
        return true;
    }
    if (argc == 4 && arg_is(&argv[2], "IFNE")) {
        *cond = SC_IFNE;
        return true;
    }
    resp_out_error(o, ERR_SYNTAX);
    return false;
}

static void x_delex(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    uint8_t cond = SC_NONE;
    if (!delex_parse(x->o, argc, argv, &cond)) {
        return;
    }
    struct xval v;
    XGET(x, argv[1].ptr, argv[1].len, &v);
    bool del = v.exists;
    if (v.exists && cond != SC_NONE) {
        const bool eq = bytes_eq(v.ptr, v.len, argv[3].ptr, argv[3].len);
        del = cond == SC_IFEQ ? eq : !eq;
    }
    if (del) {
        xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
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
    if (bytes_eq(argv[1].ptr, argv[1].len, argv[2].ptr, argv[2].len)) {
        resp_out_ok(x->o);
        return;
    }
    if (!x_key_ok(x, &argv[2])) {
        return;
    }
    /* v.ptr is the source's buffer: writing the target does not touch it */
    xv_set(x->v, argv[2].ptr, argv[2].len, true, v.ptr, v.len, v.lease);
    xv_set(x->v, argv[1].ptr, argv[1].len, false, NULL, 0, 0);
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
        reply_errorf(x->o, "pattern is too long (the limit is %u bytes)",
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
        reply_kv_error(x->o, rv);
        return;
    }
    if (resp.more) {
        reply_errorf(x->o,
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
    uint8_t *k = dup_bytes(key, len);
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
        if (arg_is(&argv[j], "MATCH")) {
            pat = &argv[j + 1];
        } else if (arg_is(&argv[j], "COUNT")) {
            if (!x_int_arg(x, &argv[j + 1], &count)) {
                return;
            }
            if (count < 1) {
                resp_out_error(x->o, ERR_SYNTAX);
                return;
            }
        } else if (arg_is(&argv[j], "TYPE")) {
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
                                       .keys_only = true};
        const int rv = kv_range(x->v->kv, &r, &resp);
        if (rv != 0) {
            reply_kv_error(x->o, rv);
            return;
        }
        live = true;
    }
    uint32_t from = 0;
    if (skip_first && resp.n_kvs > 0 &&
        bytes_eq(resp.kvs[0].key, resp.kvs[0].key_len, start, start_len)) {
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
            xv_fail(x->v, RESP_SERVER_ENOMEM);
            x_view_failed(x);
            kv_range_resp_free(&resp);
            return;
        }
    }
    resp_out_array(x->o, 2);
    resp_out_bulk_i64(x->o, (int64_t)next);
    const struct resp_out_defer d = resp_out_defer(x->o);
    uint64_t n = 0;
    const bool type_ok = type == NULL || arg_is(type, "string");
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

static void x_dispatch(struct xrun *x, const struct resp_cmd_spec *spec, uint32_t argc,
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
        write_info(x, argc, argv);
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
        write_client_info(x);
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

/* Whether x_dispatch runs this command (inside EXEC too); the rest change connection
 * state and are refused inside MULTI. */
static bool engine_runs(enum resp_cmd_id id)
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

/* ---- INFO and CLIENT INFO ---------------------------------------------------------------- */

static bool info_wants(uint32_t argc, const struct resp_arg *argv, const char *section,
                       bool is_default)
{
    if (argc <= 1) {
        return is_default;
    }
    for (uint32_t i = 1; i < argc; i++) {
        if (arg_is(&argv[i], section) || arg_is(&argv[i], "all") ||
            arg_is(&argv[i], "everything") || (is_default && arg_is(&argv[i], "default"))) {
            return true;
        }
    }
    return false;
}

static void write_info(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
{
    struct resp_server *s = x->s;
    struct raft *r = node_raft(s->node);
    struct sbuf b = {0};
    bool first = true;
#define SECTION(name, title)                                     \
    if (info_wants(argc, argv, name, true)) {                    \
        sb_printf(&b, "%s# " title "\r\n", first ? "" : "\r\n"); \
        first = false;
#define END_SECTION }
    SECTION("server", "Server")
    sb_printf(&b,
              "redis_version:%s\r\nredis_mode:standalone\r\nserver_name:conclave\r\n"
              "arch_bits:%d\r\nmultiplexing_api:libuv\r\nprocess_id:%ld\r\n"
              "run_id:%016llx%016llx%08llx\r\ntcp_port:%d\r\nuptime_in_seconds:%llu\r\n"
              "conclave_node_id:%u\r\nconclave_node_name:%s\r\n",
              RESP_REDIS_VERSION, (int)(sizeof(void *) * 8), (long)getpid(),
              (unsigned long long)s->cursor_epoch, (unsigned long long)s->started_ms,
              (unsigned long long)raft_id(r), s->port,
              (unsigned long long)((now_ms(s) - s->started_ms) / 1000), raft_id(r),
              node_self(s->node)->name);
    END_SECTION
    SECTION("clients", "Clients")
    sb_printf(&b, "connected_clients:%u\r\nmaxclients:%u\r\nblocked_clients:0\r\n", s->n_conns,
              (unsigned)RESP_SERVER_CLIENTS_MAX);
    END_SECTION
    SECTION("replication", "Replication")
    const uint32_t leader = raft_leader(r);
    const struct node_member *lm = leader != 0 ? node_member(s->node, leader) : NULL;
    sb_printf(&b,
              "role:%s\r\nconclave_raft_role:%s\r\nconclave_raft_term:%llu\r\n"
              "conclave_leader_id:%u\r\nconclave_leader_name:%s\r\nconclave_leader_http:%s\r\n"
              "conclave_commit_index:%llu\r\nconclave_applied_index:%llu\r\n",
              raft_role(r) == RAFT_LEADER ? "master" : "slave", raft_role_name(raft_role(r)),
              (unsigned long long)raft_term(r), leader, lm != NULL ? lm->name : "",
              lm != NULL ? lm->http_addr : "", (unsigned long long)raft_commit(r),
              (unsigned long long)raft_applied(r));
    END_SECTION
    SECTION("stats", "Stats")
    sb_printf(&b,
              "total_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
              "rejected_connections:%llu\r\ntotal_error_replies:%llu\r\n"
              "conclave_protocol_errors:%llu\r\nconclave_output_overflows:%llu\r\n"
              "conclave_rmw_retries:%llu\r\nconclave_proposals:%llu\r\nconclave_reads:%llu\r\n",
              (unsigned long long)s->st.connections_total, (unsigned long long)s->st.commands_total,
              (unsigned long long)s->st.connections_rejected,
              (unsigned long long)s->st.errors_total, (unsigned long long)s->st.protocol_errors,
              (unsigned long long)s->st.output_overflows, (unsigned long long)s->st.rmw_retries,
              (unsigned long long)s->st.proposals, (unsigned long long)s->st.reads);
    END_SECTION
    SECTION("keyspace", "Keyspace")
    struct kv_stats ks;
    kv_stats(node_kv(s->node), &ks);
    if (ks.n_keys_live > 0) {
        sb_printf(&b, "db0:keys=%llu,expires=%llu,avg_ttl=0\r\n",
                  (unsigned long long)ks.n_keys_live, (unsigned long long)ks.n_leases);
    }
    END_SECTION
#undef SECTION
#undef END_SECTION
    if (b.oom) {
        resp_out_error(x->o, "out of memory");
    } else {
        resp_out_verbatim(x->o, "txt", b.p != NULL ? b.p : "", b.len);
    }
    free(b.p);
}

static void write_client_info(struct xrun *x)
{
    struct rconn *c = x->c;
    const uint64_t now = now_ms(x->s);
    struct sbuf b = {0};
    size_t qlen = 0;
    resp_out_data(&c->out, &qlen);
    sb_printf(&b,
              "id=%llu addr=%s laddr=%s fd=-1 name=%s age=%llu idle=%llu flags=%s db=0 sub=0 "
              "psub=0 ssub=0 multi=%d qbuf=%zu qbuf-free=0 argv-mem=0 multi-mem=%zu "
              "rbs=%zu rbp=0 obl=0 oll=%u omem=%zu tot-mem=%zu events=r cmd=%s user=default "
              "redir=-1 resp=%d lib-name= lib-ver=\n",
              (unsigned long long)c->id, c->addr, c->laddr, c->name,
              (unsigned long long)((now - c->created_ms) / 1000),
              (unsigned long long)((now - c->last_ms) / 1000),
              c->multi ? "x" : (c->readonly ? "r" : "N"), c->multi ? (int)c->n_mq : -1,
              resp_parser_buffered(&c->p), c->mq_bytes, resp_parser_mem_bytes(&c->p), c->n_ops,
              qlen + c->wlen + c->deferred_bytes,
              resp_parser_mem_bytes(&c->p) + qlen + c->wlen + c->deferred_bytes,
              c->last_cmd != NULL ? c->last_cmd : "NULL", resp_out_proto(&c->out));
    if (b.oom) {
        resp_out_error(x->o, "out of memory");
    } else {
        resp_out_verbatim(x->o, "txt", b.p, b.len);
    }
    free(b.p);
}

/* ==== direct writes =========================================================================
 * Commands whose every condition the state machine can evaluate at apply time become one
 * kv command: no read first, nothing to retry, and concurrent ones never conflict. */

/* Builds the command for op into *cmd. Returns true, or false after writing the reply
 * (bad arguments: the op is then answered). */
struct dbuild {
    struct kv_compare cmps[KV_TXN_CMP_MAX];
    struct kv_op succ[KV_TXN_OPS_MAX];
    struct kv_op fail[KV_TXN_OPS_MAX];
    uint32_t n_cmps, n_succ, n_fail;
    bool txn;
    int64_t ttl_ms;  /* > 0: SET EX/PX, SETEX: the set put gets a private lease (KVTTL) */
    uint16_t ttl_op; /* that put's index (success ops, then failure ops) */
};

static void db_put(struct kv_op *op, const struct resp_arg *k, const struct resp_arg *v, bool prev)
{
    *op = (struct kv_op){.type = KV_OP_PUT};
    op->put = (struct kv_put_req){.key = (const uint8_t *)k->ptr,
                                  .key_len = (uint32_t)k->len,
                                  .value = (const uint8_t *)v->ptr,
                                  .value_len = (uint32_t)v->len,
                                  .prev_kv = prev};
}

static void db_del(struct kv_op *op, const struct resp_arg *k, bool prev)
{
    *op = (struct kv_op){.type = KV_OP_DELETE};
    op->del = (struct kv_delete_req){
        .key = (const uint8_t *)k->ptr, .key_len = (uint32_t)k->len, .prev_kv = prev};
}

static void db_range(struct kv_op *op, const struct resp_arg *k)
{
    *op = (struct kv_op){.type = KV_OP_RANGE};
    op->range = (struct kv_range_req){.key = (const uint8_t *)k->ptr, .key_len = (uint32_t)k->len};
}

static void db_cmp(struct kv_compare *c, const struct resp_arg *k, uint8_t target, uint8_t op,
                   int64_t number, const struct resp_arg *v)
{
    *c = (struct kv_compare){.key = (const uint8_t *)k->ptr,
                             .key_len = (uint32_t)k->len,
                             .target = target,
                             .op = op,
                             .number = number};
    if (v != NULL) {
        c->value = (const uint8_t *)v->ptr;
        c->value_len = (uint32_t)v->len;
    }
}

/* The distinct keys among argv[from], argv[from + step], ... keeping the last occurrence
 * (MSET k 1 k 2 sets 2, as in Redis). Fills idx[] with argument indexes in order. */
static uint32_t distinct_keys(uint32_t argc, const struct resp_arg *argv, uint32_t from,
                              uint32_t step, uint32_t *idx, uint32_t cap)
{
    uint32_t n = 0;
    for (uint32_t i = from; i < argc && n <= cap; i += step) {
        bool later = false;
        for (uint32_t j = i + step; j < argc && !later; j += step) {
            later = bytes_eq(argv[i].ptr, argv[i].len, argv[j].ptr, argv[j].len);
        }
        if (!later) {
            if (n < cap) {
                idx[n] = i;
            }
            n++;
        }
    }
    return n;
}

/* How many keys one command may name before we refuse without looking (bounds the
 * quadratic duplicate check). */
#define RESP_DIRECT_ARGS_MAX (8u * KV_TXN_OPS_MAX)
/* Estimated encoded bytes of one shared write txn: half a Raft entry, so an estimate
 * off by a few percent can never make the batch fail KV_ECMDTOOBIG. */
#define RESP_WBATCH_BYTES_MAX (KV_CMD_BYTES_MAX / 2)
#define RESP_WBATCH_OP_BYTES  48u /* per-op framing in the estimate (the real one is 22) */

static bool direct_build(struct rop *op, struct resp_out *o, struct dbuild *b)
{
    const uint32_t argc = op->a.argc;
    const struct resp_arg *argv = op->a.argv;
    b->n_cmps = b->n_succ = b->n_fail = 0;
    b->txn = false;
    b->ttl_ms = 0;
    b->ttl_op = 0;
    op->dw = DW_OK;
    int krv = 0;
    switch (op->spec->id) {
    case RESP_CMD_SET:
    case RESP_CMD_SETNX:
    case RESP_CMD_GETSET: {
        struct setopt so = {0};
        if (op->spec->id == RESP_CMD_SET && !set_parse(o, "set", argc, argv, 3, false, &so)) {
            return false;
        }
        so.get = so.get || op->spec->id == RESP_CMD_GETSET;
        if (op->spec->id == RESP_CMD_SETNX) {
            so.cond = SC_NX;
        }
        if ((krv = key_check(&argv[1])) != 0) {
            break;
        }
        if (argv[2].len > KV_VALUE_BYTES_MAX) {
            krv = KV_EVALUETOOBIG;
            break;
        }
        if (so.exp != SE_NONE) { /* op_class sends only EX and PX here */
            CC_ASSERT(so.exp == SE_EX || so.exp == SE_PX);
            if (!ttl_ok(o, "set", exp_ttl_ms(so.exp, so.exp_val), &b->ttl_ms)) {
                return false;
            }
        }
        if (so.cond == SC_NONE) {
            db_put(&b->succ[b->n_succ++], &argv[1], &argv[2], so.get);
            op->dw = so.get ? DW_PREV : DW_OK;
            break;
        }
        b->txn = true;
        op->dw = op->spec->id == RESP_CMD_SETNX ? DW_TXN_BOOL : DW_SET_COND;
        op->dw_get = so.get;
        struct kv_op *set_branch = b->succ, *other = b->fail;
        uint32_t *n_set = &b->n_succ, *n_other = &b->n_fail;
        switch (so.cond) {
        case SC_NX:
            db_cmp(&b->cmps[b->n_cmps++], &argv[1], KV_CMP_VERSION, KV_CMP_EQUAL, 0, NULL);
            break;
        case SC_XX:
            db_cmp(&b->cmps[b->n_cmps++], &argv[1], KV_CMP_VERSION, KV_CMP_GREATER, 0, NULL);
            break;
        case SC_IFEQ:
            db_cmp(&b->cmps[b->n_cmps++], &argv[1], KV_CMP_VALUE, KV_CMP_EQUAL, 0, so.cmp);
            break;
        case SC_IFNE: /* equal: leave it; not equal or missing: set (the failure branch) */
            db_cmp(&b->cmps[b->n_cmps++], &argv[1], KV_CMP_VALUE, KV_CMP_EQUAL, 0, so.cmp);
            set_branch = b->fail;
            other = b->succ;
            n_set = &b->n_fail;
            n_other = &b->n_succ;
            op->dw_invert = true;
            break;
        default:
            CC_UNREACHABLE();
        }
        db_put(&set_branch[(*n_set)++], &argv[1], &argv[2], so.get);
        if (so.get) {
            db_range(&other[(*n_other)++], &argv[1]);
        }
        b->ttl_op = (uint16_t)(op->dw_invert ? b->n_succ : 0); /* first op of its branch */
        break;
    }
    case RESP_CMD_SETEX:
    case RESP_CMD_PSETEX: {
        int64_t n = 0;
        const bool seconds = op->spec->id == RESP_CMD_SETEX;
        if (!resp_parse_i64(argv[2].ptr, argv[2].len, &n)) {
            resp_out_error(o, ERR_NOT_INT);
            return false;
        }
        if (n <= 0 || (seconds && n > INT64_MAX / 1000)) {
            reply_errorf(o, "invalid expire time in '%s' command", op->spec->name);
            return false;
        }
        if ((krv = key_check(&argv[1])) != 0) {
            break;
        }
        if (argv[3].len > KV_VALUE_BYTES_MAX) {
            krv = KV_EVALUETOOBIG;
            break;
        }
        if (!ttl_ok(o, op->spec->name, seconds ? n * 1000 : n, &b->ttl_ms)) {
            return false;
        }
        db_put(&b->succ[b->n_succ++], &argv[1], &argv[3], false);
        op->dw = DW_OK;
        break;
    }
    case RESP_CMD_GETDEL:
        if (key_impossible(argv[1].ptr, argv[1].len)) {
            resp_out_null(o);
            return false;
        }
        db_del(&b->succ[b->n_succ++], &argv[1], true);
        op->dw = DW_DEL_PREV;
        break;
    case RESP_CMD_MSET:
    case RESP_CMD_MSETNX: {
        if (argc % 2 == 0) {
            resp_cmdtab_err_arity(o, op->spec);
            return false;
        }
        for (uint32_t i = 1; i < argc && krv == 0; i += 2) {
            krv = key_check(&argv[i]);
            if (krv == 0 && argv[i + 1].len > KV_VALUE_BYTES_MAX) {
                krv = KV_EVALUETOOBIG;
            }
        }
        if (krv != 0) {
            break;
        }
        const bool nx = op->spec->id == RESP_CMD_MSETNX;
        const uint32_t cap = nx ? KV_TXN_CMP_MAX : KV_TXN_OPS_MAX;
        uint32_t idx[KV_TXN_OPS_MAX];
        const uint32_t n = (argc - 1) / 2 > RESP_DIRECT_ARGS_MAX
                               ? cap + 1
                               : distinct_keys(argc, argv, 1, 2, idx, cap);
        if (n > cap) {
            reply_errorf(o, "%s of more than %u distinct keys does not fit one Raft transaction",
                         op->spec->name, (unsigned)cap);
            return false;
        }
        b->txn = n > 1 || nx;
        for (uint32_t i = 0; i < n; i++) {
            db_put(&b->succ[b->n_succ++], &argv[idx[i]], &argv[idx[i] + 1], false);
            if (nx) {
                db_cmp(&b->cmps[b->n_cmps++], &argv[idx[i]], KV_CMP_VERSION, KV_CMP_EQUAL, 0, NULL);
            }
        }
        op->dw = nx ? DW_TXN_BOOL : DW_OK;
        break;
    }
    case RESP_CMD_DEL:
    case RESP_CMD_UNLINK: {
        uint32_t idx[KV_TXN_OPS_MAX];
        const uint32_t n = argc - 1 > RESP_DIRECT_ARGS_MAX
                               ? KV_TXN_OPS_MAX + 1
                               : distinct_keys(argc, argv, 1, 1, idx, KV_TXN_OPS_MAX);
        if (n > KV_TXN_OPS_MAX) {
            reply_errorf(o, "%s of more than %u distinct keys does not fit one Raft transaction",
                         op->spec->name, (unsigned)KV_TXN_OPS_MAX);
            return false;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (!key_impossible(argv[idx[i]].ptr, argv[idx[i]].len)) {
                db_del(&b->succ[b->n_succ++], &argv[idx[i]], false);
            }
        }
        if (b->n_succ == 0) {
            resp_out_int(o, 0);
            return false;
        }
        b->txn = b->n_succ > 1;
        op->dw = DW_DEL_COUNT;
        break;
    }
    case RESP_CMD_DELEX: {
        uint8_t cond = SC_NONE;
        if (!delex_parse(o, argc, argv, &cond)) {
            return false;
        }
        if (key_impossible(argv[1].ptr, argv[1].len)) {
            resp_out_int(o, 0);
            return false;
        }
        db_del(&b->succ[b->n_succ++], &argv[1], false);
        op->dw = DW_DEL_COUNT;
        if (cond != SC_NONE) {
            b->txn = true;
            db_cmp(&b->cmps[b->n_cmps++], &argv[1], KV_CMP_VALUE,
                   cond == SC_IFEQ ? KV_CMP_EQUAL : KV_CMP_NOT_EQUAL, 0, &argv[3]);
            op->dw = DW_TXN_BOOL;
        }
        break;
    }
    default:
        CC_UNREACHABLE();
    }
    if (krv != 0) {
        reply_kv_error(o, krv);
        return false;
    }
    return true;
}

static void on_applied(void *arg, int status, const struct sm_result *res);
static void direct_reply(struct rop *op, int status, const struct sm_result *res, uint32_t off,
                         uint32_t n);

/* ---- shared write txns ---------------------------------------------------------------- */

static bool wb_has_key(const struct wbatch *w, const uint8_t *key, uint32_t len)
{
    for (uint32_t i = 0; i < w->n_kv; i++) {
        const struct kv_op *x = &w->kv[i];
        const uint8_t *k = x->type == KV_OP_PUT ? x->put.key : x->del.key;
        const uint32_t kl = x->type == KV_OP_PUT ? x->put.key_len : x->del.key_len;
        if (bytes_eq(k, kl, key, len)) {
            return true;
        }
    }
    return false;
}

static void wb_unlink(struct rop *op)
{
    struct wbatch *w = op->wb;
    CC_ASSERT(w != NULL);
    CC_ASSERT(w->n > 0);
    if (op->wb_prev != NULL) {
        op->wb_prev->wb_next = op->wb_next;
    } else {
        w->ops = op->wb_next;
    }
    if (op->wb_next != NULL) {
        op->wb_next->wb_prev = op->wb_prev;
    } else {
        w->tail = op->wb_prev;
    }
    op->wb = NULL;
    op->wb_prev = op->wb_next = NULL;
    w->n--;
}

static void on_wb_applied(void *arg, int status, const struct sm_result *res)
{
    struct wbatch *w = arg;
    w->delivering = true;    /* an answer may close a connection: its other ops leave w */
    while (w->ops != NULL) { /* each round answers (and unlinks) one, in txn order */
        struct rop *op = w->ops;
        wb_unlink(op);
        CC_ASSERT(op->wait == W_PROPOSE);
        op->wait = W_NONE;
        direct_reply(op, status, res, op->wb_off, op->wb_n);
    }
    free(w);
}

/* Proposes the open shared write txn (the check handle does at the end of every loop
 * iteration, and so does anything that proposes on its own, to keep log order = arrival
 * order). */
static void wb_issue(struct resp_server *s)
{
    struct wbatch *w = s->wb_open;
    if (w == NULL) {
        return;
    }
    s->wb_open = NULL;
    if (w->n == 0 || s->stopping) { /* every op left (or is leaving): nothing to write */
        while (w->ops != NULL) {
            wb_unlink(w->ops);
        }
        free(w);
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv;
    if (w->n_kv == 1 && w->kv[0].type == KV_OP_PUT) {
        rv = kvcmd_encode_put(&w->kv[0].put, &cmd, &n);
    } else if (w->n_kv == 1) {
        rv = kvcmd_encode_delete(&w->kv[0].del, &cmd, &n);
    } else {
        const struct kv_txn_req t = {.success = w->kv, .n_success = w->n_kv};
        rv = kvcmd_encode_txn(&t, &cmd, &n);
    }
    if (rv == 0) {
        rv = node_propose(s->node, cmd, n, on_wb_applied, w);
        free(cmd);
        if (rv == 0) {
            s->st.proposals++;
            return;
        }
    }
    /* nothing was proposed: every op gets the error (a kv error as if applied) */
    struct sm_result fake = {.tag = SM_TAG_KV, .err = rv};
    on_wb_applied(w, rv, rv <= -2000 && rv >= -2099 ? &fake : NULL);
}

/* Adds op's ops (views into its owned arguments) to the open shared txn. False when no
 * memory: the caller proposes op alone. */
static bool wb_add(struct resp_server *s, struct rop *op, const struct kv_op *kv, uint32_t n,
                   size_t est)
{
    CC_ASSERT(n >= 1 && n <= KV_TXN_OPS_MAX);
    CC_ASSERT(op->a.mem != NULL);
    struct wbatch *w = s->wb_open;
    bool fits =
        w != NULL && w->n_kv + n <= KV_TXN_OPS_MAX && w->bytes + est <= RESP_WBATCH_BYTES_MAX;
    for (uint32_t i = 0; i < n && fits; i++) {
        const struct kv_op *x = &kv[i];
        fits = x->type == KV_OP_PUT ? !wb_has_key(w, x->put.key, x->put.key_len)
                                    : !wb_has_key(w, x->del.key, x->del.key_len);
    }
    if (w != NULL && !fits) {
        wb_issue(s);
        w = NULL;
    }
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            return false;
        }
        s->wb_open = w;
    }
    memcpy(&w->kv[w->n_kv], kv, (size_t)n * sizeof(*kv));
    op->wb_off = w->n_kv;
    op->wb_n = n;
    w->n_kv += n;
    w->bytes += est;
    op->wb = w;
    op->wb_next = NULL;
    op->wb_prev = w->tail;
    if (w->tail != NULL) {
        w->tail->wb_next = op;
    } else {
        w->ops = op;
    }
    w->tail = op;
    w->n++;
    op->kind = K_DIRECT;
    op->wait = W_PROPOSE;
    op->started_ms = now_ms(s);
    conn_pend(op->c); /* the check handle proposes the batch */
    return true;
}

static void direct_start(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (!is_leader(s)) {
        struct resp_out *o = op_out(op);
        reply_not_leader(s, o);
        op_finish(op, o);
        return;
    }
    if (op_own_args(op) != 0) { /* the ops below may be proposed after this call */
        op_finish_error(op, "out of memory");
        return;
    }
    struct dbuild *b = s->db; /* one per server: built and encoded before any yield */
    struct resp_out *eo = op_out(op);
    if (!direct_build(op, eo, b)) {
        op_finish(op, eo);
        return;
    }
    /* the keys change under any chain that expected otherwise */
    for (uint32_t i = 0; i < b->n_succ; i++) {
        const struct kv_op *x = &b->succ[i];
        if (x->type == KV_OP_PUT) {
            chain_invalidate(s, x->put.key, x->put.key_len);
        } else if (x->type == KV_OP_DELETE) {
            chain_invalidate(s, x->del.key, x->del.key_len);
        }
    }
    for (uint32_t i = 0; i < b->n_fail; i++) {
        if (b->fail[i].type == KV_OP_PUT) {
            chain_invalidate(s, b->fail[i].put.key, b->fail[i].put.key_len);
        }
    }
    if (eo == &s->scratch) {
        resp_out_clear(eo); /* unused: the reply is written when the entry applies */
    }
    if (b->n_cmps == 0 && b->n_fail == 0 && b->ttl_ms == 0) { /* unconditional: share a txn */
        size_t est = 0;
        for (uint32_t i = 0; i < b->n_succ; i++) {
            const struct kv_op *x = &b->succ[i];
            est += RESP_WBATCH_OP_BYTES + (x->type == KV_OP_PUT
                                               ? (size_t)x->put.key_len + x->put.value_len
                                               : (size_t)x->del.key_len);
        }
        if (est <= RESP_WBATCH_BYTES_MAX && wb_add(s, op, b->succ, b->n_succ, est)) {
            return;
        }
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv;
    if (b->txn) {
        const struct kv_txn_req t = {.compares = b->cmps,
                                     .n_compares = b->n_cmps,
                                     .success = b->succ,
                                     .n_success = b->n_succ,
                                     .failure = b->fail,
                                     .n_failure = b->n_fail};
        rv = kvcmd_encode_txn(&t, &cmd, &n);
    } else if (b->succ[0].type == KV_OP_PUT) {
        rv = kvcmd_encode_put(&b->succ[0].put, &cmd, &n);
    } else {
        rv = kvcmd_encode_delete(&b->succ[0].del, &cmd, &n);
    }
    if (rv == 0 && b->ttl_ms > 0) { /* condition, grant and put: one entry (KVTTL) */
        const struct sm_kvttl_grant g = {.ttl_ms = b->ttl_ms, .op_index = b->ttl_op};
        uint8_t *inner = cmd;
        rv = sm_kvttl_encode(&g, 1, inner, n, &cmd, &n);
        free(inner);
    }
    if (rv != 0) {
        struct resp_out *o = op_out(op);
        reply_kv_error(o, rv);
        op_finish(op, o);
        return;
    }
    wb_issue(s); /* what arrived before this command goes into the log before it */
    op->kind = K_DIRECT;
    op->wait = W_PROPOSE;
    op->started_ms = now_ms(s);
    rv = node_propose(s->node, cmd, n, on_applied, op);
    free(cmd);
    if (rv != 0) {
        op->wait = W_NONE;
        struct resp_out *o = op_out(op);
        reply_node_error(s, o, rv);
        op_finish(op, o);
        return;
    }
    s->st.proposals++;
}

/* op's reply from a result: its own (off 0, every response) or its slice of a shared
 * txn's responses. */
static void direct_reply(struct rop *op, int status, const struct sm_result *res, uint32_t off,
                         uint32_t n)
{
    struct resp_out *o = op_out(op);
    struct resp_server *s = op->c->s;
    if (res != NULL && res->err != 0) {
        reply_kv_error(o, res->err);
        op_finish(op, o);
        return;
    }
    if (status != 0 || res == NULL) {
        reply_node_error(s, o, status != 0 ? status : NODE_EUNKNOWN);
        op_finish(op, o);
        return;
    }
    const struct kv_result *r = &res->kv;
    CC_ASSERT(off + n <= r->n_responses || (n == 0 && off == 0));
    const struct kv_response *rs = r->responses + off;
    switch (op->dw) {
    case DW_OK:
        resp_out_ok(o);
        break;
    case DW_PREV:
        if (n > 0 && rs[0].put.has_prev) {
            resp_out_bulk(o, rs[0].put.prev_kv.value, rs[0].put.prev_kv.value_len);
        } else {
            resp_out_null(o);
        }
        break;
    case DW_DEL_PREV:
        if (n > 0 && rs[0].del.n_prev_kvs > 0) {
            resp_out_bulk(o, rs[0].del.prev_kvs[0].value, rs[0].del.prev_kvs[0].value_len);
        } else {
            resp_out_null(o);
        }
        break;
    case DW_DEL_COUNT: {
        int64_t del = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (rs[i].type == KV_OP_DELETE) {
                del += rs[i].del.n_deleted;
            }
        }
        resp_out_int(o, del);
        break;
    }
    case DW_TXN_BOOL:
        resp_out_int(o, r->succeeded ? 1 : 0);
        break;
    case DW_SET_COND: {
        const bool set = r->succeeded != op->dw_invert;
        if (!op->dw_get) {
            if (set) {
                resp_out_ok(o);
            } else {
                resp_out_null(o);
            }
            break;
        }
        const struct kv_kv *old = NULL;
        for (uint32_t i = 0; i < n && old == NULL; i++) {
            const struct kv_response *x = &rs[i];
            if (x->type == KV_OP_PUT && x->put.has_prev) {
                old = &x->put.prev_kv;
            } else if (x->type == KV_OP_RANGE && x->range.n_kvs > 0) {
                old = &x->range.kvs[0];
            }
        }
        if (old != NULL) {
            resp_out_bulk(o, old->value, old->value_len);
        } else {
            resp_out_null(o);
        }
        break;
    }
    default:
        CC_UNREACHABLE();
    }
    op_finish(op, o);
}

static void direct_done(struct rop *op, int status, const struct sm_result *res)
{
    direct_reply(op, status, res, 0, res != NULL && res->err == 0 ? res->kv.n_responses : 0);
}

/* ==== read-modify-write and EXEC ===========================================================
 * rmw_attempt runs the command (or EXEC's queue) against an overlay of the local store,
 * prepares the reply, and proposes one txn: compares = WATCHed mod_revisions + what was
 * read (mod_revision, or for a chained key its expected value), success = every write,
 * failure = a read of each WATCHed key (to tell a WATCH abort from a conflict). Only the
 * leader runs it: its local store is at most a few entries behind, and a stale read only
 * costs a failed compare and another attempt. */

/* Whether any WATCHed key changed since it was watched (reads the local store). */
static bool watch_changed(struct resp_server *s, const struct rwatch *w, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct kv_range_resp r;
        bool exists = false;
        if (store_get(node_kv(s->node), w[i].key, w[i].key_len, &r, &exists) != 0) {
            return true; /* cannot tell: abort, as a conflict would */
        }
        const int64_t mod = exists ? r.kvs[0].mod_revision : 0;
        kv_range_resp_free(&r);
        if (mod != w[i].mod) {
            return true;
        }
    }
    return false;
}

/* Forgets a prepared reply (an error or nil replaces it). */
static void op_drop_reply(struct rop *op)
{
    CC_ASSERT(op->state != OP_DONE); /* a finished op's reply counts in deferred_bytes */
    free(op->reply);
    op->reply = NULL;
    op->reply_len = 0;
}

/* Finishes op with the bytes prepared in op->reply. */
static void op_finish_prepared(struct rop *op)
{
    uint8_t *bytes = op->reply;
    const size_t len = op->reply_len;
    op->reply = NULL;
    op->reply_len = 0;
    struct resp_out *o = op_out(op);
    resp_out_raw(o, bytes, len);
    free(bytes);
    op_finish(op, o);
}

static void op_finish_error(struct rop *op, const char *msg)
{
    op_drop_reply(op);
    struct resp_out *o = op_out(op);
    resp_out_error(o, msg);
    op_finish(op, o);
}

static void on_read_ready(void *arg, int status);

static void rmw_fail_view(struct rop *op, int err)
{
    if (err == RESP__EKEYS) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "%s touches too many keys (one transaction reads at most %u and writes at "
                 "most %u)",
                 op->spec->name, (unsigned)KV_TXN_CMP_MAX, (unsigned)KV_TXN_OPS_MAX);
        op_finish_error(op, msg);
    } else {
        op_finish_error(op, "out of memory");
    }
}

/* The txn for view v and the WATCHed keys: a compare for every key read (its
 * mod_revision, or for a chained key the value it is expected to have), a write for
 * every key written, and on failure a read of each WATCHed key. 0, RESP__EKEYS, a KV
 * error, or RESP_SERVER_ENOMEM; *cmd is malloc'd. */
static int xtxn_build(const struct xview *v, const struct rwatch *watch, uint32_t n_watch,
                      uint8_t **cmd, size_t *n)
{
    uint32_t n_read = 0, n_dirty = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        n_read += v->k[i].read;
        n_dirty += v->k[i].dirty;
    }
    if (n_watch + n_read > KV_TXN_CMP_MAX || n_dirty > KV_TXN_OPS_MAX) {
        return RESP__EKEYS;
    }
    struct kv_compare cmps[KV_TXN_CMP_MAX];
    struct kv_op *ops = calloc((size_t)n_dirty + n_watch + 1, sizeof(*ops));
    if (ops == NULL) {
        return RESP_SERVER_ENOMEM;
    }
    uint32_t nc = 0, ns = 0, ng = 0;
    struct sm_kvttl_grant grants[SM_KVTTL_GRANTS_MAX];
    for (uint32_t i = 0; i < n_watch; i++) {
        const struct rwatch *w = &watch[i];
        cmps[nc++] = (struct kv_compare){.key = w->key,
                                         .key_len = w->key_len,
                                         .target = KV_CMP_MOD,
                                         .op = KV_CMP_EQUAL,
                                         .number = w->mod};
        ops[n_dirty + i] = (struct kv_op){.type = KV_OP_RANGE};
        ops[n_dirty + i].range =
            (struct kv_range_req){.key = w->key, .key_len = w->key_len, .keys_only = true};
    }
    for (uint32_t i = 0; i < v->n; i++) {
        const struct xkey *k = &v->k[i];
        if (k->read) {
            struct kv_compare *cm = &cmps[nc++];
            *cm = (struct kv_compare){.key = k->key,
                                      .key_len = k->key_len,
                                      .target = KV_CMP_MOD,
                                      .op = KV_CMP_EQUAL,
                                      .number = k->base_mod};
            if (k->from_chain && k->base_exists) { /* an in-flight result: compare the value */
                cm->target = KV_CMP_VALUE;
                cm->value = k->base;
                cm->value_len = k->base_len;
            } else if (k->from_chain) {
                cm->number = 0; /* expected missing */
            }
        }
        if (k->dirty) {
            struct kv_op *x2 = &ops[ns++];
            if (k->cur_exists) {
                *x2 = (struct kv_op){.type = KV_OP_PUT};
                x2->put = (struct kv_put_req){.key = k->key,
                                              .key_len = k->key_len,
                                              .value = k->cur,
                                              .value_len = k->cur_len,
                                              .lease = k->cur_lease > 0 ? k->cur_lease : 0};
                if (k->cur_lease < 0 && ng == SM_KVTTL_GRANTS_MAX) {
                    free(ops);
                    return SM_EGRANTS;
                }
                if (k->cur_lease < 0) { /* a pending TTL: granted when the txn applies */
                    grants[ng++] = (struct sm_kvttl_grant){.ttl_ms = -k->cur_lease,
                                                           .op_index = (uint16_t)(ns - 1)};
                }
            } else {
                *x2 = (struct kv_op){.type = KV_OP_DELETE};
                x2->del = (struct kv_delete_req){.key = k->key, .key_len = k->key_len};
            }
        }
    }
    CC_ASSERT(nc == n_watch + n_read);
    CC_ASSERT(ns == n_dirty);
    const struct kv_txn_req t = {.compares = cmps,
                                 .n_compares = nc,
                                 .success = ops,
                                 .n_success = ns,
                                 .failure = ops + n_dirty,
                                 .n_failure = n_watch};
    int rv = kvcmd_encode_txn(&t, cmd, n);
    free(ops);
    if (rv == 0 && ng > 0) { /* KVTTL: the grants and the txn are one entry */
        uint8_t *inner = *cmd;
        rv = sm_kvttl_encode(grants, ng, inner, *n, cmd, n);
        free(inner);
        rv = rv == SM_ENOMEM ? RESP_SERVER_ENOMEM : rv;
    }
    return rv;
}

/* Remembers what the txn of view v will leave in each key it writes (see "chains"). */
static void xtxn_hold(struct resp_server *s, struct holds *h, const struct xview *v)
{
    CC_ASSERT(h->n_held == 0);
    h->held = calloc(v->n > 0 ? v->n : 1, sizeof(struct chain *));
    for (uint32_t i = 0; i < v->n; i++) {
        const struct xkey *k = &v->k[i];
        if (k->dirty && k->cur_lease < 0) {
            chain_invalidate(s, k->key, k->key_len); /* its lease id is known only at apply */
        } else if (k->dirty && (h->held == NULL || chain_hold(s, h, k) != 0)) {
            chain_invalidate(s, k->key, k->key_len); /* no memory: no chain, still correct */
        }
    }
}

static uint32_t xv_dirty(const struct xview *v)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        n += v->k[i].dirty;
    }
    return n;
}

/* Keeps what scratch holds as op's prepared reply. False (op answered) without memory
 * or when it overflowed. */
static bool op_prepare_reply(struct rop *op, struct resp_out *so)
{
    if (resp_out_status(so) != 0) {
        op_finish_error(op, "reply exceeds the client output buffer limit");
        return false;
    }
    size_t len = 0;
    const uint8_t *bytes = resp_out_data(so, &len);
    op_drop_reply(op);
    op->reply = dup_bytes(bytes, len);
    if (op->reply == NULL) {
        op_finish_error(op, "out of memory");
        return false;
    }
    op->reply_len = len;
    return true;
}

/* A read-modify-write lost to a concurrent write: run again (alone), a bounded number of
 * times. */
static void rmw_conflict(struct rop *op)
{
    struct resp_server *s = op->c->s;
    s->st.rmw_retries++;
    op->attempts++;
    if (op->attempts >= RESP_RMW_ATTEMPTS_MAX) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "-TRYAGAIN %s lost %u times in a row to concurrent writes of the same keys; "
                 "retry",
                 op->spec->name, (unsigned)op->attempts);
        op_finish_error(op, msg);
        return;
    }
    op_drop_reply(op);
    op->confirm = false;
    op->solo = true;
    op->retry = true; /* run again from the check handle, not inside the node's apply */
    conn_pend(op->c);
}

/* ---- shared read-modify-write txns -----------------------------------------------------
 * Read-modify-writes started in one loop iteration, from every client, run one after
 * the other against ONE overlay and become one txn: what a later one read includes what
 * an earlier one wrote, exactly as if they had run one by one at the txn's point in the
 * log. A conflict fails them all; each then runs again alone. */

#define RESP_XBATCH_KEYS_MAX 48u /* keys of one shared txn: inside KV_TXN_CMP_MAX */
_Static_assert(RESP_XBATCH_KEYS_MAX + 2 <= KV_TXN_CMP_MAX, "a shared txn fits its compares");

struct xbatch {
    struct resp_server *s;
    struct xview v; /* freed once proposed */
    struct holds h;
    struct rop *ops, *tail; /* doubly linked through xb_prev / xb_next */
    uint32_t n;
    bool delivering;
};

static void xb_unlink(struct rop *op)
{
    struct xbatch *xb = op->xb;
    CC_ASSERT(xb != NULL);
    CC_ASSERT(xb->n > 0);
    if (op->xb_prev != NULL) {
        op->xb_prev->xb_next = op->xb_next;
    } else {
        xb->ops = op->xb_next;
    }
    if (op->xb_next != NULL) {
        op->xb_next->xb_prev = op->xb_prev;
    } else {
        xb->tail = op->xb_prev;
    }
    op->xb = NULL;
    op->xb_prev = op->xb_next = NULL;
    xb->n--;
}

static void on_xb_applied(void *arg, int status, const struct sm_result *res)
{
    struct xbatch *xb = arg;
    struct resp_server *s = xb->s;
    const bool applied = status == 0 && res != NULL && res->err == 0;
    const bool ok = applied && res->kv.succeeded;
    chain_release(s, &xb->h, ok);
    xb->delivering = true;
    while (xb->ops != NULL) { /* each round answers (and unlinks) one, in txn order */
        struct rop *op = xb->ops;
        xb_unlink(op);
        CC_ASSERT(op->wait == W_PROPOSE);
        op->wait = W_NONE;
        if (ok) {
            op_finish_prepared(op);
        } else if (applied) {
            rmw_conflict(op);
        } else {
            op_drop_reply(op);
            struct resp_out *o = op_out(op);
            if (res != NULL && res->err != 0) {
                reply_kv_error(o, res->err);
            } else {
                reply_node_error(s, o, status != 0 ? status : NODE_EUNKNOWN);
            }
            op_finish(op, o);
        }
    }
    free(xb);
}

/* Proposes the open shared read-modify-write txn (from the check handle). */
static void xb_issue(struct resp_server *s)
{
    struct xbatch *xb = s->xb_open;
    if (xb == NULL) {
        return;
    }
    s->xb_open = NULL;
    if (xb->n == 0 || s->stopping || xb->v.err != 0 || xv_dirty(&xb->v) == 0) {
        /* nothing to propose together: what is left runs alone (an outcome that writes
         * nothing is confirmed by a read there) */
        while (xb->ops != NULL) {
            struct rop *op = xb->ops;
            xb_unlink(op);
            op->wait = W_NONE;
            op_drop_reply(op);
            op->solo = true;
            op->retry = !s->stopping;
            conn_pend(op->c);
        }
        xv_free(&xb->v);
        free(xb);
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = xtxn_build(&xb->v, NULL, 0, &cmd, &n);
    if (rv == 0) {
        xtxn_hold(s, &xb->h, &xb->v);
        xv_free(&xb->v);
        rv = node_propose(s->node, cmd, n, on_xb_applied, xb);
        free(cmd);
        if (rv == 0) {
            s->st.proposals++;
            return;
        }
    } else {
        xv_free(&xb->v);
    }
    struct sm_result fake = {.tag = SM_TAG_KV, .err = rv};
    on_xb_applied(xb, rv, rv <= -2000 && rv >= -2099 ? &fake : NULL);
}

/* Runs op (a single-key read-modify-write) in the open shared txn. */
static void rmw_batched(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    const struct resp_arg *k = &op->a.argv[1]; /* every RMW command reads its first key */
    struct xbatch *xb = s->xb_open;
    if (xb != NULL && (xb->v.n + 2 > RESP_XBATCH_KEYS_MAX || xb->v.err != 0)) {
        xb_issue(s);
        xb = NULL;
    }
    if (xb == NULL || xv_find(&xb->v, (const uint8_t *)k->ptr, (uint32_t)k->len) == NULL) {
        struct chain *e = key_impossible(k->ptr, k->len)
                              ? NULL
                              : chain_find(s, (const uint8_t *)k->ptr, (uint32_t)k->len);
        if (e != NULL && e->opaque) { /* a big value in flight: wait for it to land */
            op->parked_on = e;
            op->park_next = e->waiters;
            e->waiters = op;
            return;
        }
    }
    if (xb == NULL) {
        xb = calloc(1, sizeof(*xb));
        if (xb == NULL) {
            op->solo = true;
            rmw_attempt(op);
            return;
        }
        xb->s = s;
        xv_init(&xb->v, s, true, true);
        s->xb_open = xb;
    }
    struct resp_out *so = &s->scratch;
    resp_out_clear(so);
    resp_out_set_proto(so, resp_out_proto(&c->out));
    struct xrun x = {.s = s, .c = c, .v = &xb->v, .o = so};
    x_dispatch(&x, op->spec, op->a.argc, op->a.argv);
    if (!op_prepare_reply(op, so)) {
        xv_fail(&xb->v, RESP_SERVER_ENOMEM); /* its writes may be in the view: run apart */
        return;
    }
    op->xb = xb;
    op->xb_next = NULL;
    op->xb_prev = xb->tail;
    if (xb->tail != NULL) {
        xb->tail->xb_next = op;
    } else {
        xb->ops = op;
    }
    xb->tail = op;
    xb->n++;
    op->wait = W_PROPOSE;
    op->started_ms = now_ms(s);
    conn_pend(c); /* the check handle proposes the batch */
}

static void rmw_attempt(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    CC_ASSERT(op->kind == K_RMW || op->kind == K_EXEC);
    CC_ASSERT(op->wait == W_NONE);
    CC_ASSERT(op->h.n_held == 0);
    op->retry = false;
    if (!is_leader(s)) {
        struct resp_out *o = op_out(op);
        reply_not_leader(s, o);
        op_finish(op, o);
        return;
    }
    if (op->kind == K_RMW && !op->confirm && !op->solo) {
        rmw_batched(op);
        return;
    }
    if (op->kind == K_EXEC && op->confirm && watch_changed(s, op->watch, op->n_watch)) {
        struct resp_out *o = op_out(op);
        resp_out_null_array(o);
        op_finish(op, o);
        return;
    }
    struct xview v;
    xv_init(&v, s, true, !op->confirm);
    struct resp_out *so = &s->scratch;
    resp_out_clear(so);
    resp_out_set_proto(so, resp_out_proto(&c->out));
    struct xrun x = {.s = s, .c = c, .v = &v, .o = so};
    if (op->kind == K_EXEC) {
        resp_out_array(so, op->n_mq);
        for (uint32_t i = 0; i < op->n_mq; i++) {
            x_dispatch(&x, op->mq[i].spec, op->mq[i].a.argc, op->mq[i].a.argv);
        }
    } else {
        x_dispatch(&x, op->spec, op->a.argc, op->a.argv);
    }
    if (v.err == RESP__EWAIT) { /* park until that write lands, then run again */
        op->parked_on = v.wait_on;
        op->park_next = v.wait_on->waiters;
        v.wait_on->waiters = op;
        xv_free(&v);
        return;
    }
    if (v.err != 0) {
        const int err = v.err;
        xv_free(&v);
        rmw_fail_view(op, err);
        return;
    }
    if (!op_prepare_reply(op, so)) {
        xv_free(&v);
        return;
    }
    uint32_t n_read = 0;
    for (uint32_t i = 0; i < v.n; i++) {
        n_read += v.k[i].read;
    }
    if (xv_dirty(&v) == 0) {
        /* Nothing to write: the reply stands if what it read was confirmed current. */
        xv_free(&v);
        if (op->confirm || (n_read == 0 && op->n_watch == 0)) {
            op_finish_prepared(op);
            return;
        }
        op->confirm = true;
        op->wait = W_READ;
        op->started_ms = now_ms(s);
        s->st.reads++;
        const int rv = node_read(s->node, true, on_read_ready, op);
        if (rv != 0) {
            op->wait = W_NONE;
            op_drop_reply(op);
            struct resp_out *o = op_out(op);
            reply_node_error(s, o, rv);
            op_finish(op, o);
        }
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = xtxn_build(&v, op->watch, op->n_watch, &cmd, &n);
    if (rv == RESP__EKEYS || rv == RESP_SERVER_ENOMEM) {
        xv_free(&v);
        rmw_fail_view(op, rv);
        return;
    }
    if (rv != 0) {
        xv_free(&v);
        op_drop_reply(op);
        struct resp_out *o = op_out(op);
        reply_kv_error(o, rv);
        op_finish(op, o);
        return;
    }
    xtxn_hold(s, &op->h, &v);
    xv_free(&v);
    op->wait = W_PROPOSE;
    op->started_ms = now_ms(s);
    rv = node_propose(s->node, cmd, n, on_applied, op);
    free(cmd);
    if (rv != 0) {
        op->wait = W_NONE;
        chain_release(s, &op->h, false);
        op_drop_reply(op);
        struct resp_out *o = op_out(op);
        reply_node_error(s, o, rv);
        op_finish(op, o);
        return;
    }
    s->st.proposals++;
}

static void rmw_done(struct rop *op, int status, const struct sm_result *res)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    const bool applied = status == 0 && res != NULL && res->err == 0;
    if (applied && res->kv.succeeded) {
        chain_release(s, &op->h, true);
        op_finish_prepared(op);
        return;
    }
    chain_release(s, &op->h, false);
    if (!applied) {
        op_drop_reply(op);
        struct resp_out *o = op_out(op);
        if (res != NULL && res->err != 0) {
            reply_kv_error(o, res->err);
        } else {
            reply_node_error(s, o, status != 0 ? status : NODE_EUNKNOWN);
        }
        op_finish(op, o);
        return;
    }
    /* The compares failed: a WATCHed key changed (EXEC answers nil), or something read
     * changed under us (run again). */
    const struct kv_result *r = &res->kv;
    for (uint32_t i = 0; i < op->n_watch && i < r->n_responses; i++) {
        const struct kv_range_resp *rr = &r->responses[i].range;
        const int64_t mod = rr->n_kvs > 0 ? rr->kvs[0].mod_revision : 0;
        if (mod != op->watch[i].mod) {
            op_drop_reply(op);
            struct resp_out *o = op_out(op);
            resp_out_null_array(o);
            op_finish(op, o);
            return;
        }
    }
    rmw_conflict(op);
}

/* An EXEC whose queue writes nothing: after the read, check WATCH and run it all against
 * the store. */
static void exec_read_run(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    struct resp_out *o = op_out(op);
    if (watch_changed(s, op->watch, op->n_watch)) {
        resp_out_null_array(o);
        op_finish(op, o);
        return;
    }
    struct xview v;
    xv_init(&v, s, false, false);
    struct xrun x = {.s = s, .c = c, .v = &v, .o = o};
    resp_out_array(o, op->n_mq);
    for (uint32_t i = 0; i < op->n_mq; i++) {
        x_dispatch(&x, op->mq[i].spec, op->mq[i].a.argc, op->mq[i].a.argv);
    }
    xv_free(&v);
    op_finish(op, o);
}

/* ==== connection commands ===================================================================
 * They change the connection's state, so they are BARRIER ops (nothing before them is
 * still running) and finish at once, except WATCH (one read) and EXEC. */

/* Redis's validateClientName: printable ASCII without spaces. */
static bool client_name_ok(struct resp_out *o, const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] < '!' || a->ptr[i] > '~') {
            resp_out_error(o, "Client names cannot contain spaces, newlines or special "
                              "characters.");
            return false;
        }
    }
    if (a->len > RESP_CLIENT_NAME_BYTES_MAX) {
        reply_errorf(o, "client name is too long (the limit is %u bytes)",
                     (unsigned)RESP_CLIENT_NAME_BYTES_MAX);
        return false;
    }
    return true;
}

static void set_client_name(struct rconn *c, const struct resp_arg *a)
{
    CC_ASSERT(a->len <= RESP_CLIENT_NAME_BYTES_MAX);
    memcpy(c->name, a->ptr, a->len);
    c->name[a->len] = '\0';
}

/* No users or passwords exist yet: the "default" user takes any password (Redis with no
 * requirepass), any other user is refused. */
static bool auth_ok(const struct resp_arg *user)
{
    return arg_is(user, "default");
}

static void cmd_hello(struct rop *op)
{
    struct rconn *c = op->c;
    const uint32_t argc = op->a.argc;
    const struct resp_arg *argv = op->a.argv;
    struct resp_out *o;
    int64_t ver = resp_out_proto(&c->out);
    if (argc >= 2) {
        if (!resp_parse_i64(argv[1].ptr, argv[1].len, &ver)) {
            o = op_out(op);
            resp_out_error(o, "Protocol version is not an integer or out of range");
            op_finish(op, o);
            return;
        }
        if (ver < 2 || ver > 3) {
            o = op_out(op);
            resp_out_error(o, "-NOPROTO unsupported protocol version");
            op_finish(op, o);
            return;
        }
    }
    const struct resp_arg *name = NULL;
    for (uint32_t j = 2; j < argc; j++) {
        const bool more1 = j + 1 < argc, more2 = j + 2 < argc;
        if (arg_is(&argv[j], "AUTH") && more2) {
            if (!auth_ok(&argv[j + 1])) {
                o = op_out(op);
                resp_out_error(o, "-WRONGPASS invalid username-password pair or user is "
                                  "disabled.");
                op_finish(op, o);
                return;
            }
            j += 2;
        } else if (arg_is(&argv[j], "SETNAME") && more1) {
            name = &argv[j + 1];
            j++;
        } else {
            o = op_out(op);
            reply_errorf(o, "Syntax error in HELLO option '%.*s'",
                         (int)(argv[j].len > 64 ? 64 : argv[j].len), argv[j].ptr);
            op_finish(op, o);
            return;
        }
    }
    if (name != NULL) {
        o = op_out(op);
        if (!client_name_ok(o, name)) {
            op_finish(op, o);
            return;
        }
        set_client_name(c, name);
    }
    resp_out_set_proto(&c->out, (int)ver); /* the reply already speaks the new version */
    o = op_out(op);
    resp_out_map(o, 7);
    resp_out_bulk_cstr(o, "server");
    resp_out_bulk_cstr(o, "redis");
    resp_out_bulk_cstr(o, "version");
    resp_out_bulk_cstr(o, RESP_REDIS_VERSION);
    resp_out_bulk_cstr(o, "proto");
    resp_out_int(o, ver);
    resp_out_bulk_cstr(o, "id");
    resp_out_int(o, (int64_t)c->id);
    resp_out_bulk_cstr(o, "mode");
    resp_out_bulk_cstr(o, "standalone");
    resp_out_bulk_cstr(o, "role");
    resp_out_bulk_cstr(o, is_leader(c->s) ? "master" : "replica");
    resp_out_bulk_cstr(o, "modules");
    resp_out_array(o, 0);
    op_finish(op, o);
}

static void cmd_auth(struct rop *op)
{
    struct resp_out *o = op_out(op);
    if (op->a.argc == 2) {
        resp_out_error(o, "AUTH <password> called without any password configured for the "
                          "default user. Are you sure your configuration is correct?");
    } else if (op->a.argc == 3 && auth_ok(&op->a.argv[1])) {
        resp_out_ok(o);
    } else if (op->a.argc == 3) {
        resp_out_error(o, "-WRONGPASS invalid username-password pair or user is disabled.");
    } else {
        resp_out_error(o, ERR_SYNTAX);
    }
    op_finish(op, o);
}

static void mq_free(struct mq_cmd *mq, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        rargs_free(&mq[i].a);
    }
    free(mq);
}

static void watch_free(struct rwatch *w, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(w[i].key);
    }
    free(w);
}

static bool cc_grow_mq(struct rconn *c)
{
    return cc_grow((void **)&c->mq, &c->cap_mq, c->n_mq + 1, sizeof(*c->mq));
}

static void conn_unwatch(struct rconn *c)
{
    watch_free(c->watch, c->n_watch);
    c->watch = NULL;
    c->n_watch = 0;
}

static void conn_discard(struct rconn *c)
{
    mq_free(c->mq, c->n_mq);
    c->mq = NULL;
    c->n_mq = c->cap_mq = 0;
    c->mq_bytes = 0;
    c->multi = false;
    c->multi_dirty = false;
}

/* A command arriving between MULTI and EXEC: checked, copied, answered +QUEUED. */
static void multi_queue(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_out *o = op_out(op);
    if (!engine_runs(op->spec->id)) {
        resp_out_error(o, "Command not allowed inside a transaction");
        c->multi_dirty = true;
    } else if (c->n_mq >= RESP_MULTI_QUEUED_MAX ||
               c->mq_bytes + rargs_bytes(op->a.argc, op->a.argv) > RESP_MULTI_BYTES_MAX) {
        reply_errorf(o, "too many commands queued in MULTI (the limit is %u commands, %u bytes)",
                     (unsigned)RESP_MULTI_QUEUED_MAX, (unsigned)RESP_MULTI_BYTES_MAX);
        c->multi_dirty = true;
    } else if (!cc_grow_mq(c) || rargs_copy(&c->mq[c->n_mq].a, op->a.argc, op->a.argv) != 0) {
        resp_out_error(o, "out of memory");
        c->multi_dirty = true;
    } else {
        c->mq[c->n_mq].spec = op->spec;
        c->mq_bytes += rargs_bytes(op->a.argc, op->a.argv);
        c->n_mq++;
        resp_out_simple(o, "QUEUED");
    }
    op_finish(op, o);
}

static void cmd_watch(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (c->n_watch + (op->a.argc - 1) > RESP_WATCH_KEYS_MAX) {
        struct resp_out *o = op_out(op);
        reply_errorf(o, "too many WATCHed keys (the limit is %u per connection)",
                     (unsigned)RESP_WATCH_KEYS_MAX);
        op_finish(op, o);
        return;
    }
    if (op_own_args(op) != 0) {
        op_finish_error(op, "out of memory");
        return;
    }
    op->kind = K_WATCH;
    op->wait = W_READ;
    op->started_ms = now_ms(s);
    s->st.reads += !c->readonly;
    const int rv = node_read(s->node, !c->readonly, on_read_ready, op);
    if (rv != 0) {
        op->wait = W_NONE;
        struct resp_out *o = op_out(op);
        reply_node_error(s, o, rv);
        op_finish(op, o);
    }
}

static void watch_record(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_out *o = op_out(op);
    if (c->watch == NULL) {
        c->watch = calloc(RESP_WATCH_KEYS_MAX, sizeof(*c->watch));
    }
    for (uint32_t i = 1; i < op->a.argc && c->watch != NULL; i++) {
        const struct resp_arg *k = &op->a.argv[i];
        bool dup = false;
        for (uint32_t j = 0; j < c->n_watch && !dup; j++) {
            dup = bytes_eq(c->watch[j].key, c->watch[j].key_len, k->ptr, k->len);
        }
        if (dup || key_impossible(k->ptr, k->len)) {
            continue; /* the first WATCH of a key pins it; an impossible key never changes */
        }
        struct kv_range_resp r;
        bool exists = false;
        uint8_t *kc = dup_bytes(k->ptr, k->len);
        if (kc == NULL || store_get(node_kv(c->s->node), (const uint8_t *)k->ptr, (uint32_t)k->len,
                                    &r, &exists) != 0) {
            free(kc);
            resp_out_error(o, "out of memory");
            op_finish(op, o);
            return;
        }
        CC_ASSERT(c->n_watch < RESP_WATCH_KEYS_MAX);
        c->watch[c->n_watch++] = (struct rwatch){
            .key = kc, .key_len = (uint32_t)k->len, .mod = exists ? r.kvs[0].mod_revision : 0};
        kv_range_resp_free(&r);
    }
    if (c->watch == NULL) {
        resp_out_error(o, "out of memory");
    } else {
        resp_out_ok(o);
    }
    op_finish(op, o);
}

static void cmd_exec(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    struct resp_out *o;
    if (!c->multi) {
        o = op_out(op);
        resp_out_error(o, "EXEC without MULTI");
        op_finish(op, o);
        return;
    }
    const bool dirty = c->multi_dirty;
    op->mq = c->mq;
    op->n_mq = c->n_mq;
    c->mq = NULL;
    c->n_mq = 0;
    op->watch = c->watch;
    op->n_watch = c->n_watch;
    c->watch = NULL;
    c->n_watch = 0;
    conn_discard(c);
    if (dirty) {
        o = op_out(op);
        resp_out_error(o, "-EXECABORT Transaction discarded because of previous errors.");
        op_finish(op, o);
        return;
    }
    op->kind = K_EXEC;
    for (uint32_t i = 0; i < op->n_mq; i++) {
        op->exec_write = op->exec_write || (op->mq[i].spec->flags & RESP_CMDF_WRITE) != 0;
    }
    if (op->exec_write) {
        rmw_attempt(op);
        return;
    }
    if (c->readonly) {
        exec_read_run(op);
        return;
    }
    op->wait = W_READ;
    op->started_ms = now_ms(s);
    s->st.reads++;
    const int rv = node_read(s->node, true, on_read_ready, op);
    if (rv != 0) {
        op->wait = W_NONE;
        o = op_out(op);
        reply_node_error(s, o, rv);
        op_finish(op, o);
    }
}

/* ==== ops ====================================================================================
 * An op lives from the moment its command is parsed until its reply moved into the
 * connection's output buffer. Exactly one of these answers it: op_start (at once), a
 * node callback, the timeout scan, or nothing because the connection closed (then
 * conn_close cancelled its node callback and conn_closed frees it). */

/* SET with KEEPTTL, EXAT or PXAT reads the key or the clock before it writes: it runs in
 * the engine (read-modify-write); every other SET is a direct write. */
static bool set_needs_engine(uint32_t argc, const struct resp_arg *argv)
{
    for (uint32_t j = 3; j < argc; j++) {
        if (arg_is(&argv[j], "KEEPTTL") || arg_is(&argv[j], "EXAT") || arg_is(&argv[j], "PXAT")) {
            return true;
        }
    }
    return false;
}

static uint8_t op_class(const struct resp_cmd_spec *spec, uint32_t argc,
                        const struct resp_arg *argv)
{
    if (spec == NULL) {
        return CLS_FREE; /* an unknown command or a wrong arity: an error at once */
    }
    switch (spec->id) {
    case RESP_CMD_SET:
        return set_needs_engine(argc, argv) ? CLS_BARRIER : CLS_WRITE;
    case RESP_CMD_GETEX:
        return argc > 2 ? CLS_BARRIER : CLS_READ; /* with an option it writes */
    case RESP_CMD_SETEX:
    case RESP_CMD_PSETEX:
        return CLS_WRITE;
    case RESP_CMD_PERSIST:
    case RESP_CMD_EXPIRE:
    case RESP_CMD_PEXPIRE:
    case RESP_CMD_EXPIREAT:
    case RESP_CMD_PEXPIREAT:
        return CLS_BARRIER;
    case RESP_CMD_PING:
    case RESP_CMD_ECHO:
    case RESP_CMD_SELECT:
    case RESP_CMD_INFO:
    case RESP_CMD_COMMAND:
    case RESP_CMD_COMMAND_COUNT:
    case RESP_CMD_COMMAND_DOCS:
    case RESP_CMD_COMMAND_HELP:
    case RESP_CMD_COMMAND_INFO:
    case RESP_CMD_CLIENT_ID:
    case RESP_CMD_CLIENT_GETNAME:
    case RESP_CMD_CLIENT_INFO:
    case RESP_CMD_CLIENT_HELP:
    case RESP_CMD_ID_NEXT: /* ids wait in the ID service's own FIFOs, not on data */
    case RESP_CMD_ID_SNOWFLAKE:
        return CLS_FREE;
    case RESP_CMD_GET:
    case RESP_CMD_MGET:
    case RESP_CMD_STRLEN:
    case RESP_CMD_GETRANGE:
    case RESP_CMD_EXISTS:
    case RESP_CMD_TYPE:
    case RESP_CMD_TTL:
    case RESP_CMD_PTTL:
    case RESP_CMD_EXPIRETIME:
    case RESP_CMD_PEXPIRETIME:
    case RESP_CMD_DBSIZE:
    case RESP_CMD_KEYS:
    case RESP_CMD_SCAN:
        return CLS_READ;
    case RESP_CMD_SETNX:
    case RESP_CMD_GETSET:
    case RESP_CMD_GETDEL:
    case RESP_CMD_MSET:
    case RESP_CMD_MSETNX:
    case RESP_CMD_DEL:
    case RESP_CMD_UNLINK:
    case RESP_CMD_DELEX:
        return CLS_WRITE;
    default: /* read-modify-write, MULTI/EXEC, connection state */
        return CLS_BARRIER;
    }
}

static int op_own_args(struct rop *op)
{
    if (op->a.mem != NULL) {
        return 0;
    }
    return rargs_copy(&op->a, op->a.argc, op->a.argv);
}

static void op_free(struct rop *op)
{
    CC_ASSERT(op->wait == W_NONE);
    CC_ASSERT(op->h.n_held == 0);
    CC_ASSERT(op->parked_on == NULL);
    CC_ASSERT(op->xb == NULL);
    CC_ASSERT(op->rb == NULL);
    CC_ASSERT(op->wb == NULL);
    rargs_free(&op->a);
    free(op->reply);
    mq_free(op->mq, op->n_mq);
    watch_free(op->watch, op->n_watch);
    free(op);
}

/* Where op writes its reply: straight into the output buffer when every earlier reply
 * is out, else into the server's scratch encoder (op_finish copies it into the op). */
static struct resp_out *op_out(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (op == c->head && !c->closing) {
        resp_out_data(&c->out, &c->out_mark);
        return &c->out;
    }
    resp_out_clear(&s->scratch);
    resp_out_set_proto(&s->scratch, resp_out_proto(&c->out));
    return &s->scratch;
}

static void conn_overflow(struct rconn *c)
{
    c->s->st.output_overflows++;
    conn_close(c);
}

/* Moves finished replies at the head of the FIFO into the output buffer. */
static void conn_pop_done(struct rconn *c)
{
    while (c->head != NULL && c->head->state == OP_DONE && !c->closing) {
        struct rop *op = c->head;
        if (op->reply_len > 0) {
            resp_out_raw(&c->out, op->reply, op->reply_len);
            CC_ASSERT(c->deferred_bytes >= op->reply_len);
            c->deferred_bytes -= op->reply_len;
            if (resp_out_status(&c->out) != 0) {
                conn_overflow(c);
                return;
            }
        }
        c->head = op->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        c->n_ops--;
        op_free(op);
    }
}

/* op's reply is complete in o (from op_out). */
static void op_finish(struct rop *op, struct resp_out *o)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    CC_ASSERT(op->state != OP_DONE);
    CC_ASSERT(op->wait == W_NONE);
    if (op->state == OP_RUNNING) {
        CC_ASSERT(c->n_running > 0);
        c->n_running--;
    }
    op->state = OP_DONE;
    s->st.commands_total++;
    if (o == &s->scratch) {
        size_t len = 0;
        const uint8_t *bytes = resp_out_data(o, &len);
        s->st.errors_total += len > 0 && bytes[0] == '-';
        if (resp_out_status(o) != 0) {
            conn_overflow(c);
        } else if (!c->closing && len > 0) {
            CC_ASSERT(op->reply == NULL);
            op->reply = dup_bytes(bytes, len);
            if (op->reply == NULL) {
                conn_close(c);
            } else {
                op->reply_len = len;
                c->deferred_bytes += len;
                if (c->deferred_bytes > RESP_CONN_OUT_BYTES_MAX) {
                    conn_overflow(c);
                }
            }
        }
        resp_out_clear(o);
    } else {
        CC_ASSERT(o == &c->out);
        size_t len = 0;
        const uint8_t *bytes = resp_out_data(o, &len);
        s->st.errors_total += len > c->out_mark && bytes[c->out_mark] == '-';
        if (resp_out_status(o) != 0) {
            conn_overflow(c);
        }
    }
    conn_pop_done(c);
    conn_pend(c);
}

static bool op_can_start(const struct rconn *c, const struct rop *op)
{
    if (c->n_running == 0 || op->cls == CLS_FREE) {
        return true;
    }
    return (op->cls == CLS_READ || op->cls == CLS_WRITE) && op->cls == c->running_cls;
}

static const char *read_error_text(int status)
{
    return status == RAFT_ENOTLEADER || status == RAFT_ESTEPPEDDOWN
               ? "-TRYAGAIN no leader could confirm the read; retry"
               : NULL;
}

static void reply_read_error(struct resp_server *s, struct resp_out *o, int status)
{
    const char *t = read_error_text(status);
    if (t != NULL) {
        resp_out_error(o, t);
    } else {
        reply_node_error(s, o, status);
    }
}

/* A read command against the store, now. */
static void read_run(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_out *o = op_out(op);
    struct xview v;
    xv_init(&v, c->s, false, false);
    struct xrun x = {.s = c->s, .c = c, .v = &v, .o = o};
    x_dispatch(&x, op->spec, op->a.argc, op->a.argv);
    xv_free(&v);
    op_finish(op, o);
}

static void read_start(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (c->readonly) {
        read_run(op);
        return;
    }
    if (op_own_args(op) != 0) {
        op_finish_error(op, "out of memory");
        return;
    }
    if (s->rb_open == NULL && (s->rb_open = calloc(1, sizeof(*s->rb_open))) == NULL) {
        op_finish_error(op, "out of memory");
        return;
    }
    struct rbatch *b = s->rb_open;
    op->kind = K_READ;
    op->wait = W_READ;
    op->started_ms = now_ms(s);
    op->rb = b;
    op->rb_prev = NULL;
    op->rb_next = b->ops;
    if (b->ops != NULL) {
        b->ops->rb_prev = op;
    }
    b->ops = op;
    b->n++;
    conn_pend(c); /* the check handle asks for the round */
}

static void rb_unlink(struct rop *op)
{
    struct rbatch *b = op->rb;
    CC_ASSERT(b != NULL);
    CC_ASSERT(b->n > 0);
    if (op->rb_prev != NULL) {
        op->rb_prev->rb_next = op->rb_next;
    } else {
        b->ops = op->rb_next;
    }
    if (op->rb_next != NULL) {
        op->rb_next->rb_prev = op->rb_prev;
    }
    op->rb = NULL;
    op->rb_prev = op->rb_next = NULL;
    b->n--;
}

static void on_rb_ready(void *arg, int status)
{
    struct rbatch *b = arg;
    b->delivering = true;    /* an answer may close a connection: its other ops leave b */
    while (b->ops != NULL) { /* each round answers (and unlinks) one */
        struct rop *op = b->ops;
        rb_unlink(op);
        CC_ASSERT(op->wait == W_READ);
        op->wait = W_NONE;
        if (status != 0) {
            struct resp_out *o = op_out(op);
            reply_read_error(op->c->s, o, status);
            op_finish(op, o);
        } else {
            read_run(op);
        }
    }
    free(b);
}

/* Asks for one ReadIndex round for every read collected since the last one. */
static void rb_issue(struct resp_server *s)
{
    struct rbatch *b = s->rb_open;
    if (b == NULL) {
        return;
    }
    s->rb_open = NULL;
    if (b->n == 0) {
        free(b);
        return;
    }
    s->st.reads++;
    const int rv = node_read(s->node, true, on_rb_ready, b);
    if (rv != 0) { /* else b may be gone already: a stale-read test node answers inline */
        on_rb_ready(b, rv);
    }
}

/* Forgets op's pending read: its callback will not come (conn closed, or timed out). */
static void op_cancel_wait(struct resp_server *s, struct rop *op)
{
    if (op->wait == W_NONE) {
        return;
    }
    if (op->wb != NULL && op->wb == s->wb_open) {
        /* its ops are views into its arguments: propose now, while they are valid (the
         * write may still happen, as for any write whose client went away) */
        wb_issue(s);
        if (op->wait == W_NONE) {
            return; /* the proposal failed and answered it */
        }
    }
    if (op->xb != NULL) {
        /* its writes stay in the shared txn: later ones in it computed from them */
        struct xbatch *xb = op->xb;
        xb_unlink(op);
        if (xb->n == 0 && !xb->delivering && xb != s->xb_open) { /* nobody waits for it */
            node_cancel(s->node, xb);
            chain_release(s, &xb->h, false);
            free(xb);
        }
    } else if (op->wb != NULL) {
        struct wbatch *w = op->wb;
        wb_unlink(op);
        if (w->n == 0 && !w->delivering && w != s->wb_open) { /* nobody waits for it */
            node_cancel(s->node, w);
            free(w);
        }
    } else if (op->rb != NULL) {
        struct rbatch *b = op->rb;
        rb_unlink(op);
        if (b->n == 0 && b != s->rb_open && !b->delivering) { /* nobody waits for it */
            node_cancel(s->node, b);
            free(b);
        }
    } else if (op->wait == W_ID) {
        resp_id_cancel(s->node, op);
    } else {
        node_cancel(s->node, op);
    }
    op->wait = W_NONE;
}

static void on_read_ready(void *arg, int status)
{
    struct rop *op = arg;
    struct rconn *c = op->c;
    CC_ASSERT(op->wait == W_READ);
    op->wait = W_NONE;
    if (status != 0) {
        chain_release(c->s, &op->h, false);
        op_drop_reply(op);
        struct resp_out *o = op_out(op);
        reply_read_error(c->s, o, status);
        op_finish(op, o);
        return;
    }
    switch (op->kind) {
    case K_READ:
        read_run(op);
        return;
    case K_WATCH:
        watch_record(op);
        return;
    case K_EXEC:
        if (!op->exec_write) {
            exec_read_run(op);
            return;
        }
        op->retry = true; /* the confirming read of a txn that wrote nothing */
        conn_pend(c);
        return;
    case K_RMW:
        op->retry = true;
        conn_pend(c);
        return;
    default:
        CC_UNREACHABLE();
    }
}

static void on_applied(void *arg, int status, const struct sm_result *res)
{
    struct rop *op = arg;
    CC_ASSERT(op->wait == W_PROPOSE);
    op->wait = W_NONE;
    if (op->kind == K_DIRECT) {
        direct_done(op, status, res);
    } else {
        rmw_done(op, status, res);
    }
}

/* ID.NEXT / ID.SNOWFLAKE (resp_id.h): the answer may come inline or from the ID service. */
static void on_id_done(void *arg, int rv, const int64_t *ids, uint32_t n, const char *msg)
{
    struct rop *op = arg;
    CC_ASSERT(op->wait == W_ID);
    op->wait = W_NONE;
    struct resp_out *o = op_out(op);
    resp_id_reply(o, rv, ids, n, msg);
    op_finish(op, o);
}

static void id_start(struct rop *op)
{
    struct rconn *c = op->c;
    c->multi_dirty = c->multi_dirty || c->multi; /* refused in MULTI: EXEC aborts */
    op->wait = W_ID;
    op->started_ms = now_ms(c->s);
    resp_id_start(c->s->node, op->spec->id, c->multi, op->a.argc, op->a.argv, on_id_done, op);
}

static void op_start(struct rop *op)
{
    struct rconn *c = op->c;
    CC_ASSERT(op->state == OP_QUEUED);
    CC_ASSERT(c->next_start == op);
    c->next_start = op->next;
    op->state = OP_RUNNING;
    c->n_running++;
    if (op->cls != CLS_FREE) {
        c->running_cls = op->cls;
    }
    c->last_ms = now_ms(c->s);
    if (op->spec == NULL) {
        struct resp_out *o = op_out(op);
        if (op->a.argc == 0) { /* the protocol error op: answer, then close */
            reply_errorf(o, "%s", resp_parser_errmsg(&c->p));
        } else {
            const struct resp_cmd_spec *spec = NULL;
            resp_cmdtab_resolve(o, op->a.argc, op->a.argv, &spec);
            c->multi_dirty = c->multi_dirty || c->multi;
        }
        op_finish(op, o);
        return;
    }
    const enum resp_cmd_id id = op->spec->id;
    c->last_cmd = op->spec->name;
    if (id == RESP_CMD_ID_NEXT || id == RESP_CMD_ID_SNOWFLAKE) {
        id_start(op);
        return;
    }
    if (c->multi && id != RESP_CMD_EXEC && id != RESP_CMD_DISCARD && id != RESP_CMD_MULTI &&
        id != RESP_CMD_WATCH && id != RESP_CMD_QUIT) {
        multi_queue(op);
        return;
    }
    struct resp_out *o;
    switch (id) {
    case RESP_CMD_HELLO:
        cmd_hello(op);
        return;
    case RESP_CMD_AUTH:
        cmd_auth(op);
        return;
    case RESP_CMD_CLIENT_SETNAME:
        o = op_out(op);
        if (client_name_ok(o, &op->a.argv[2])) {
            set_client_name(c, &op->a.argv[2]);
            resp_out_ok(o);
        }
        op_finish(op, o);
        return;
    case RESP_CMD_READONLY:
    case RESP_CMD_READWRITE:
        c->readonly = id == RESP_CMD_READONLY;
        o = op_out(op);
        resp_out_ok(o);
        op_finish(op, o);
        return;
    case RESP_CMD_QUIT:
        o = op_out(op);
        resp_out_ok(o);
        op_finish(op, o);
        return;
    case RESP_CMD_MULTI:
        o = op_out(op);
        if (c->multi) {
            resp_out_error(o, "MULTI calls can not be nested");
        } else {
            c->multi = true;
            resp_out_ok(o);
        }
        op_finish(op, o);
        return;
    case RESP_CMD_DISCARD:
        o = op_out(op);
        if (!c->multi) {
            resp_out_error(o, "DISCARD without MULTI");
        } else {
            conn_discard(c);
            conn_unwatch(c);
            resp_out_ok(o);
        }
        op_finish(op, o);
        return;
    case RESP_CMD_UNWATCH:
        conn_unwatch(c);
        o = op_out(op);
        resp_out_ok(o);
        op_finish(op, o);
        return;
    case RESP_CMD_WATCH:
        if (c->multi) {
            o = op_out(op);
            resp_out_error(o, "WATCH inside MULTI is not allowed");
            op_finish(op, o);
            return;
        }
        cmd_watch(op);
        return;
    case RESP_CMD_EXEC:
        cmd_exec(op);
        return;
    default:
        break;
    }
    switch (op->cls) {
    case CLS_FREE:
        read_run(op); /* commands that read no keys: the store view is never touched */
        return;
    case CLS_READ:
        read_start(op);
        return;
    case CLS_WRITE:
        direct_start(op);
        return;
    default:
        if (op_own_args(op) != 0) {
            op_finish_error(op, "out of memory");
            return;
        }
        op->kind = K_RMW;
        rmw_attempt(op);
        return;
    }
}

/* A new op for a parsed command (argv are parser views until op_own_args). */
static struct rop *op_new(struct rconn *c, uint32_t argc, const struct resp_arg *argv)
{
    struct rop *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return NULL;
    }
    op->c = c;
    op->a.argc = argc;
    op->a.argv = argv;
    if (argc > 0) {
        const struct resp_cmd_spec *spec = NULL;
        if (resp_cmdtab_resolve(NULL, argc, argv, &spec) == 0) {
            op->spec = spec;
        }
    }
    op->cls = op_class(op->spec, argc, argv);
    if (c->tail != NULL) {
        c->tail->next = op;
    } else {
        c->head = op;
    }
    c->tail = op;
    c->n_ops++;
    if (c->next_start == NULL) {
        c->next_start = op;
    }
    return op;
}

/* Ops whose node callback is overdue get an error (and their callback is forgotten). */
static void conn_expire_ops(struct rconn *c, uint64_t now)
{
    struct resp_server *s = c->s;
    for (uint32_t round = 0; round <= RESP_CONN_OPS_MAX && !c->closing; round++) {
        struct rop *op = c->head;
        while (op != NULL) {
            const uint64_t limit =
                op->wait == W_READ ? RESP_READ_TIMEOUT_MS : RESP_WRITE_TIMEOUT_MS;
            if (op->wait != W_NONE && now - op->started_ms >= limit) {
                break;
            }
            op = op->next;
        }
        if (op == NULL) {
            return;
        }
        const bool was_read = op->wait == W_READ;
        op_cancel_wait(s, op);
        chain_release(s, &op->h, false);
        char msg[160];
        if (was_read) {
            snprintf(msg, sizeof(msg), "-TRYAGAIN no quorum confirmed the read within %u ms; retry",
                     (unsigned)RESP_READ_TIMEOUT_MS);
        } else {
            snprintf(msg, sizeof(msg),
                     "timeout: the write was not applied within %u ms; it may or may not "
                     "take effect",
                     (unsigned)RESP_WRITE_TIMEOUT_MS);
        }
        op_finish_error(op, msg); /* may free op and others: rescan from the head */
    }
}

/* ==== connections ============================================================================ */

static size_t conn_out_bytes(const struct rconn *c)
{
    size_t queued = 0;
    resp_out_data(&c->out, &queued);
    return queued + c->wlen + c->deferred_bytes;
}

static bool conn_can_parse(const struct rconn *c)
{
    return !c->closing && !c->draining && c->n_ops < RESP_CONN_OPS_MAX &&
           conn_out_bytes(c) < RESP_CONN_OUT_HWM_BYTES;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Reads while the client may send more: not while commands wait in the parser behind a
 * limit (backpressure), not while draining or closing. */
static void conn_update_reading(struct rconn *c)
{
    const bool want = conn_can_parse(c) && !c->stalled && c->next_start == NULL;
    if (want && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
        if (!c->reading) {
            conn_close(c);
        }
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* The parser hit a protocol error: answer what came before, then the error, then close
 * (Redis does the same). */
static void conn_protocol_error(struct rconn *c)
{
    c->s->st.protocol_errors++;
    c->draining = true;
    struct rop *op = op_new(c, 0, NULL);
    if (op == NULL) {
        conn_close(c);
    }
}

/* Starts what may start, then parses and starts new commands while the limits allow. */
static void conn_run(struct rconn *c)
{
    if (c->closing) {
        return;
    }
    if (c->head != NULL && c->head->retry) {
        rmw_attempt(c->head);
    }
    /* Each round starts an op or parses a command: bounded work per call. What is left
     * (a read of many tiny commands) continues from the check handle. */
    uint32_t round = 0;
    for (; round < 4 * RESP_CONN_OPS_MAX && !c->closing; round++) {
        if (c->next_start != NULL) {
            if (!op_can_start(c, c->next_start)) {
                break;
            }
            op_start(c->next_start);
            continue;
        }
        if (!conn_can_parse(c)) {
            c->stalled = true;
            break;
        }
        struct resp_cmd cmd;
        const int rv = resp_parser_next(&c->p, &cmd);
        if (rv == RESP_EAGAIN) {
            c->stalled = false;
            break;
        }
        if (rv != 0) {
            conn_protocol_error(c);
            continue; /* the error op starts next round */
        }
        struct rop *op = op_new(c, cmd.argc, cmd.argv);
        if (op == NULL) {
            conn_close(c);
            return;
        }
        if (op->spec != NULL && op->spec->id == RESP_CMD_QUIT) {
            c->draining = true; /* nothing after QUIT is read */
        }
        if (c->next_start == op && op_can_start(c, op)) {
            op_start(op); /* argv views are valid until the next resp_parser_* call */
        } else if (op_own_args(op) != 0) {
            conn_close(c);
            return;
        }
    }
    if (c->next_start != NULL) {
        c->stalled = true;
    }
    if (round == 4 * RESP_CONN_OPS_MAX) {
        c->stalled = true;
        conn_pend(c);
    }
    if (!c->closing) {
        conn_update_reading(c);
    }
}

static void conn_maybe_drained(struct rconn *c)
{
    size_t queued = 0;
    resp_out_data(&c->out, &queued);
    if (c->draining && !c->closing && c->n_ops == 0 && !c->writing && queued == 0) {
        conn_close(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct rconn *c = req->data;
    resp_out_sent(&c->out, c->wlen);
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = 0;
    c->writing = false;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_pend(c);
}

static void conn_flush(struct rconn *c)
{
    if (c->closing || c->writing) {
        return;
    }
    if (resp_out_status(&c->out) != 0) {
        conn_overflow(c);
        return;
    }
    size_t len = 0;
    const uint8_t *data = resp_out_data(&c->out, &len);
    if (len == 0) {
        conn_maybe_drained(c);
        return;
    }
    const bool was_full = !conn_can_parse(c);
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    const int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w >= 0 && (size_t)w == len) {
        resp_out_clear(&c->out);
        conn_maybe_drained(c);
        if (was_full || c->stalled) {
            conn_pend(c); /* room again: parse what waits */
        }
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    const size_t done = w > 0 ? (size_t)w : 0;
    uint8_t *bytes = NULL;
    const size_t n = resp_out_take(&c->out, &bytes);
    CC_ASSERT(n == len);
    resp_out_sent(&c->out, done);
    c->wbuf = bytes;
    c->wlen = n - done;
    c->writing = true;
    c->wreq.data = c;
    b = uv_buf_init((char *)bytes + done, (unsigned)(n - done));
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->writing = false;
        resp_out_sent(&c->out, c->wlen);
        free(bytes);
        c->wbuf = NULL;
        c->wlen = 0;
        conn_close(c);
    }
}

static void server_maybe_done(struct resp_server *s);

static void conn_closed(uv_handle_t *h)
{
    struct rconn *c = h->data;
    struct resp_server *s = c->s;
    if (c->in_pending) { /* not reached in practice: the check handle ran first */
        struct rconn **pp = &s->pending;
        while (*pp != NULL && *pp != c) {
            pp = &(*pp)->dnext;
        }
        if (*pp == c) {
            *pp = c->dnext;
        }
    }
    while (c->head != NULL) {
        struct rop *op = c->head;
        c->head = op->next;
        op_free(op);
    }
    mq_free(c->mq, c->n_mq);
    watch_free(c->watch, c->n_watch);
    resp_parser_free(&c->p);
    resp_out_free(&c->out);
    free(c->wbuf);
    free(c);
    s->n_alive--;
    server_maybe_done(s);
}

/* Ends a connection now: forgets every pending node callback, then closes the socket
 * (memory goes in conn_closed). Safe to call twice and from inside any callback. */
static void conn_close(struct rconn *c)
{
    if (c->closing) {
        return;
    }
    struct resp_server *s = c->s;
    c->closing = true;
    for (struct rop *op = c->head; op != NULL; op = op->next) {
        op_cancel_wait(s, op);
        chain_release(s, &op->h, false);
        chain_unpark(op);
        op->retry = false;
    }
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    if (!c->refused) {
        s->n_conns--;
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rconn *c = h->data;
    void *p = NULL;
    size_t n = 0;
    if (resp_parser_reserve(&c->p, suggested > 0 ? suggested : 65536, &p, &n) != 0) {
        *buf = uv_buf_init(NULL, 0); /* on_read gets UV_ENOBUFS */
        return;
    }
    if (n > UINT32_MAX) {
        n = UINT32_MAX;
    }
    *buf = uv_buf_init(p, (unsigned)n);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct rconn *c = st->data;
    (void)buf;
    if (c->closing) {
        return;
    }
    if (nread == UV_ENOBUFS) { /* the parser refused to hold more: a protocol error */
        if (c->reading) {
            uv_read_stop(st);
            c->reading = false;
        }
        conn_protocol_error(c);
        conn_run(c);
        conn_pend(c);
        return;
    }
    if (nread < 0) { /* EOF or an error: the client is gone (Redis closes at once too) */
        conn_close(c);
        return;
    }
    if (nread == 0) {
        return;
    }
    resp_parser_commit(&c->p, (size_t)nread);
    c->stalled = true; /* bytes to parse */
    conn_run(c);
    conn_pend(c);
}

/* ==== server ================================================================================= */

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking while connections are pending */
}

/* Queues c for the check handle: run it (start ops, parse, retry) and flush it. */
static void conn_pend(struct rconn *c)
{
    struct resp_server *s = c->s;
    if (c->closing || c->in_pending) {
        return;
    }
    c->in_pending = true;
    c->dnext = s->pending;
    s->pending = c;
    if (!s->idle_on && !s->stopping) {
        uv_idle_start(&s->idle, on_idle) == 0 ? (void)(s->idle_on = true) : (void)0;
    }
}

/* After every poll: runs and flushes pending connections, a few rounds so that replies
 * produced by flushing (room again, more parsed) leave in the same loop iteration. */
static void on_check(uv_check_t *h)
{
    struct resp_server *s = h->data;
    for (int round = 0; round < 4 && s->pending != NULL; round++) {
        struct rconn *list = s->pending;
        s->pending = NULL;
        while (list != NULL) {
            struct rconn *c = list;
            list = c->dnext;
            c->dnext = NULL;
            c->in_pending = false;
            if (c->closing) {
                continue;
            }
            conn_run(c);
            conn_flush(c);
        }
    }
    wb_issue(s);
    xb_issue(s);
    rb_issue(s);
    if (s->pending == NULL && s->idle_on) {
        uv_idle_stop(&s->idle);
        s->idle_on = false;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct resp_server *s = t->data;
    const uint64_t now = now_ms(s);
    for (struct rconn *c = s->conns; c != NULL;) {
        struct rconn *next = c->next; /* c may close (leaves the list) */
        if (c->n_running > 0) {
            conn_expire_ops(c, now);
        }
        c = next;
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct resp_server *s = listener->data;
    if (status < 0 || s->stopping) {
        return;
    }
    struct rconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return; /* libuv keeps the socket queued until the next accept */
    }
    c->s = s;
    c->tcp.data = c;
    resp_parser_init(&c->p, NULL);
    resp_out_init(&c->out, RESP_CONN_OUT_BYTES_MAX);
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        resp_parser_free(&c->p);
        resp_out_free(&c->out);
        free(c);
        return;
    }
    s->n_alive++;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    c->id = ++s->next_client_id;
    c->created_ms = c->last_ms = now_ms(s);
    if (s->n_conns >= RESP_SERVER_CLIENTS_MAX) {
        c->refused = true;
        s->st.connections_rejected++;
    } else {
        s->n_conns++;
        s->st.connections_total++;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[64] = "?";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        const int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        uv_ip_name((struct sockaddr *)&ss, host, sizeof(host));
        snprintf(c->addr, sizeof(c->addr), "%s:%d", host, port);
    }
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        const int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        uv_ip_name((struct sockaddr *)&ss, host, sizeof(host));
        snprintf(c->laddr, sizeof(c->laddr), "%s:%d", host, port);
    }
    if (c->refused) { /* Redis's answer at maxclients, then close */
        resp_out_error(&c->out, "max number of clients reached");
        c->draining = true;
        conn_pend(c);
        return;
    }
    conn_update_reading(c);
}

static void server_free(struct resp_server *s)
{
    for (uint32_t b = 0; b < RESP_CHAIN_BUCKETS; b++) {
        while (s->chains[b] != NULL) { /* no op holds a link any more: all freed */
            struct chain *e = s->chains[b];
            s->chains[b] = e->hnext;
            CC_ASSERT(e->refs == 0);
            chain_free(e);
        }
    }
    for (uint32_t i = 0; i < RESP_SCAN_CURSORS_MAX; i++) {
        free(s->cursors[i].key);
    }
    CC_ASSERT(s->rb_open == NULL || s->rb_open->n == 0);
    free(s->rb_open);
    CC_ASSERT(s->wb_open == NULL);
    if (s->xb_open != NULL) { /* every op left it when its connection closed */
        CC_ASSERT(s->xb_open->n == 0);
        xv_free(&s->xb_open->v);
        free(s->xb_open);
    }
    resp_out_free(&s->scratch);
    free(s->db);
    free(s);
}

static void server_maybe_done(struct resp_server *s)
{
    if (!s->stopping || s->n_handles > 0 || s->n_alive > 0) {
        return;
    }
    void (*done_cb)(void *) = s->done_cb;
    void *arg = s->done_arg;
    server_free(s);
    if (done_cb != NULL) {
        done_cb(arg);
    }
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct resp_server *s = h->data;
    CC_ASSERT(s->n_handles > 0);
    s->n_handles--;
    server_maybe_done(s);
}

/* host:port with the port in 0..65535; "[v6]:port" for IPv6. */
static bool split_addr(const char *hp, char *host, size_t host_cap, char *port, size_t port_cap)
{
    const char *colon = strrchr(hp, ':');
    if (colon == NULL || colon == hp) {
        return false;
    }
    const char *h = hp;
    size_t hl = (size_t)(colon - hp);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']') {
            return false;
        }
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl) != NULL) {
        return false;
    }
    const char *p = colon + 1;
    const size_t pl = strlen(p);
    if (hl == 0 || hl >= host_cap || pl == 0 || pl > 5 || pl >= port_cap) {
        return false;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v > 65535) {
        return false;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return true;
}

int resp_server_start(uv_loop_t *loop, struct node *node, const char *host_port,
                      struct resp_server **out, char *errmsg, size_t errmsg_cap)
{
    CC_ASSERT(loop != NULL);
    CC_ASSERT(node != NULL);
    CC_ASSERT(out != NULL);
    *out = NULL;
    char host[256], port[8];
    struct addrinfo *ai = NULL;
    int rv;
    if (host_port == NULL || !split_addr(host_port, host, sizeof(host), port, sizeof(port))) {
        snprintf(errmsg, errmsg_cap, "bad listen address '%.64s' (want host:port)",
                 host_port != NULL ? host_port : "(null)");
        rv = RESP_SERVER_EADDR;
        goto err;
    }
    const struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                   .ai_socktype = SOCK_STREAM,
                                   .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    const int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        snprintf(errmsg, errmsg_cap, "cannot resolve listen host '%s': %s", host,
                 gai_strerror(gai));
        rv = RESP_SERVER_EADDR;
        goto err;
    }
    struct resp_server *s = calloc(1, sizeof(*s));
    struct dbuild *db = malloc(sizeof(*db));
    if (s == NULL || db == NULL) {
        free(s);
        free(db);
        snprintf(errmsg, errmsg_cap, "out of memory");
        rv = RESP_SERVER_ENOMEM;
        goto err_after_ai;
    }
    s->db = db;
    s->loop = loop;
    s->node = node;
    s->started_ms = uv_now(loop);
    /* 20 bits of wall-clock-free entropy for SCAN cursors: the monotonic clock in ms */
    s->cursor_epoch = (uv_hrtime() / 1000000u) & 0xfffffu;
    resp_out_init(&s->scratch, RESP_CONN_OUT_BYTES_MAX);
    uv_tcp_init(loop, &s->listener);
    uv_timer_init(loop, &s->tick);
    uv_check_init(loop, &s->check);
    uv_idle_init(loop, &s->idle);
    s->listener.data = s->tick.data = s->check.data = s->idle.data = s;
    s->n_handles = 4;
    rv = uv_tcp_bind(&s->listener, ai->ai_addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    }
    if (rv != 0) {
        snprintf(errmsg, errmsg_cap, "cannot listen on %s: %s", host_port, uv_strerror(rv));
        rv = RESP_SERVER_ELISTEN;
        goto err_after_handles;
    }
    s->port = resp_server_bound_port(s);
    uv_check_start(&s->check, on_check);
    uv_timer_start(&s->tick, on_tick, RESP_TICK_MS, RESP_TICK_MS);
    uv_unref((uv_handle_t *)&s->check);
    freeaddrinfo(ai);
    *out = s;
    return 0;

err_after_handles:
    s->stopping = true; /* freed by the close callbacks */
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->tick, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->check, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_server_handle_closed);
err_after_ai:
    freeaddrinfo(ai);
err:
    CC_ASSERT(rv != 0);
    return rv;
}

void resp_server_stop(struct resp_server *s, void (*done_cb)(void *arg), void *arg)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(!s->stopping);
    s->stopping = true;
    s->done_cb = done_cb;
    s->done_arg = arg;
    while (s->conns != NULL) { /* each call unlinks one; none can be added */
        conn_close(s->conns);
    }
    s->pending = NULL; /* closing connections are skipped; conn_closed unlinks the rest */
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->tick, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->check, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_server_handle_closed);
}

int resp_server_bound_port(const struct resp_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

void resp_server_get_stats(const struct resp_server *s, struct resp_server_stats *out)
{
    *out = s->st;
    out->clients_connected = s->n_conns;
}
