/* resp_internal.h -- what the RESP server's source files share: the limits, the types of
 * the server, its connections and their ops, views, chains and shared txns, the error
 * texts, and the functions one file calls in another. Not for use outside src/api/resp_*.c
 * (resp_server.h is the public face; resp_proto, resp_cmdtab and resp_id stand alone).
 *
 * The files (resp_server.c's essay is the overview; each file's opening says more):
 *   resp_view.c    node and KV errors as replies, views over the store, chains
 *   resp_engine.c  the command engine: one x_* function per command, over a view
 *   resp_write.c   direct writes, shared write txns, read-modify-write and EXEC txns
 *   resp_conn.c    one connection: connection commands, ops (FIFO, classes, start and
 *                  finish, shared reads), parsing, output buffer, backpressure, writes
 *   resp_server.c  the listener, the check handle and the tick, INFO, start and stop
 * The layering, top down: server -> conn -> write -> engine -> view. Calls against it
 * (an op finishing, a connection queued for the check handle) go through the few
 * functions declared at the end.
 *
 * Single-threaded: the node's loop thread only. Ownership: the server owns its
 * connections (freed in conn_closed), a connection owns its ops and MULTI queue, an op
 * owns its arguments once resp_op_own_args copied them, and its prepared reply.
 *
 * Sections: limits and types | error texts | views | engine types | shared txn types |
 * small helpers | cross-file functions.
 */
#ifndef CC_API_RESP_INTERNAL_H
#define CC_API_RESP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "api/resp_cmdtab.h"
#include "api/resp_proto.h"
#include "api/resp_server.h"
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

/* Concurrency classes (resp_server.c's essay, "Execution order"). */
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

/* The ops waiting in one batch, in arrival order: a doubly linked list through a
 * struct rop_link in each op, one link per batch kind (struct rop's xb_link, rb_link,
 * wb_link), named to the list functions by its offsetof. */
struct rop;
struct rop_link {
    struct rop *prev, *next;
};
struct rop_list {
    struct rop *head, *tail;
    uint32_t n;
};
void rop_list_append(struct rop_list *l, struct rop *op, size_t link_off);
void rop_list_unlink(struct rop_list *l, struct rop *op, size_t link_off);

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
    struct rop_link xb_link;
    bool solo;
    /* K_RMW/K_EXEC: waiting for an in-flight write of a big value to land. */
    struct chain *parked_on;
    struct rop *park_next;
    /* K_READ: the shared ReadIndex round it waits in (struct rbatch). */
    struct rbatch *rb;
    struct rop_link rb_link;
    /* K_DIRECT: the shared write txn it is part of (struct wbatch), and its slice of the
     * txn's ops (and so of its responses). */
    struct wbatch *wb;
    struct rop_link wb_link;
    uint32_t wb_off, wb_n;
};

/* Unconditional writes (plain SET, GETSET, GETDEL, MSET, DEL, ...) started in one loop
 * iteration, from every client, share one Raft entry: a txn without compares whose ops
 * are theirs in arrival order (group commit at the entry level). A batch never writes a
 * key twice (a KV txn may not) and stays under RESP_WBATCH_BYTES_MAX. */
struct wbatch {
    struct rop_list ops; /* waiting, through wb_link */
    uint32_t n_kv;
    size_t bytes;
    bool delivering;
    struct kv_op kv[KV_TXN_OPS_MAX]; /* views into the ops' owned arguments */
};

/* Reads started in one loop iteration share one node_read (one ReadIndex round): it is
 * asked for after all of them arrived, so it is late enough for each. */
struct rbatch {
    struct rop_list ops; /* waiting, through rb_link */
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
    size_t out_mark;       /* where resp_op_out's current reply starts in out (error counting) */
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

/* A remembered expected state of one key after an in-flight txn (resp_view.c, chains). A
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

/* ==== error texts ============================================================================= */

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

/* ==== views (resp_view.c) =====================================================================
 * A view is what the command engine reads and writes through:
 *   - store mode: reads go straight to the local store (after node_read made that safe);
 *     writes are a programmer error (only commands without the write flag run here);
 *   - overlay mode: every key touched is copied into an xkey the first time; writes only
 *     change the copy. At the end the xkeys become one txn: a compare for every key whose
 *     original state was observed (xkey.read), an op for every key written (xkey.dirty).
 * Values returned by resp_xv_get stay valid until the next resp_xv_* call on the same key (store
 * mode: on any key) or resp_xv_free. */

enum {
    RESP__EKEYS = -1949, /* internal: a run touched more than RESP_TXN_KEYS_MAX keys */
    RESP__EWAIT = -1948, /* internal: a key's big value is in flight: park (xview.wait_on) */
};

struct xval {
    bool exists;
    const uint8_t *ptr;
    uint32_t len;
    int64_t lease; /* 0: no TTL; < 0: -ttl_ms of a lease this txn grants ("expiry") */
    int64_t mod;   /* store mode only */
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

/* ==== engine types (resp_engine.c) ============================================================ */

/* One run of the engine: the reply goes to o, keys are read and written through v. */
struct xrun {
    struct resp_server *s;
    struct rconn *c;
    struct xview *v;
    struct resp_out *o;
    const struct resp_cmd_spec *spec;
};

/* SET and GETEX options (resp_set_parse); direct writes parse SET with them too. */
enum { SC_NONE, SC_NX, SC_XX, SC_IFEQ, SC_IFNE };
enum { SE_NONE, SE_EX, SE_PX, SE_EXAT, SE_PXAT, SE_KEEPTTL, SE_PERSIST };

struct setopt {
    uint8_t cond, exp;
    bool get;
    const struct resp_arg *cmp; /* IFEQ / IFNE value */
    int64_t exp_val;
};

/* ==== shared txn types (resp_write.c) ========================================================= */

/* direct_build's work area: one per server (resp_server.db), filled and encoded before
 * any yield. */
struct dbuild {
    struct kv_compare cmps[KV_TXN_CMP_MAX];
    struct kv_op succ[KV_TXN_OPS_MAX];
    struct kv_op fail[KV_TXN_OPS_MAX];
    uint32_t n_cmps, n_succ, n_fail;
    bool txn;
    int64_t ttl_ms;  /* > 0: SET EX/PX, SETEX: the set put gets a private lease (KVTTL) */
    uint16_t ttl_op; /* that put's index (success ops, then failure ops) */
};

/* A shared read-modify-write txn: single-key read-modify-writes started in one loop
 * iteration, run one after another against one overlay (see resp_write.c). */
struct xbatch {
    struct resp_server *s;
    struct xview v; /* freed once proposed */
    struct holds h;
    struct rop_list ops; /* waiting, through xb_link */
    bool delivering;
};

/* ==== small helpers =========================================================================== */

static inline bool resp_arg_is(const struct resp_arg *a, const char *word)
{
    const size_t n = strlen(word);
    return a->len == n && strncasecmp(a->ptr, word, n) == 0;
}

static inline bool resp_bytes_eq(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static inline uint8_t *resp_dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n > 0 ? n : 1);
    if (d != NULL && n > 0) {
        memcpy(d, p, n);
    }
    return d;
}

static inline uint64_t resp_now_ms(const struct resp_server *s)
{
    return uv_now(s->loop);
}

static inline bool resp_is_leader(const struct resp_server *s)
{
    return raft_role(node_raft(s->node)) == RAFT_LEADER;
}

/* 0 when key can be written, else the KV error for it. */
static inline int resp_key_check(const struct resp_arg *k)
{
    if (k->len == 0) {
        return KV_EKEYEMPTY;
    }
    return k->len > KV_KEY_BYTES_MAX ? KV_EKEYTOOBIG : 0;
}

/* A key no store can hold: reads see it missing, writes fail with resp_key_check's error. */
static inline bool resp_key_impossible(const void *key, size_t len)
{
    (void)key;
    return len == 0 || len > KV_KEY_BYTES_MAX;
}

/* ==== cross-file functions ===================================================================
 * Each is defined in the file named above its group; everything else is static there. */

/* resp_view.c: errors as replies. */
void resp_reply_errorf(struct resp_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void resp_reply_not_leader(struct resp_server *s, struct resp_out *o);
void resp_reply_node_error(struct resp_server *s, struct resp_out *o, int rv);
void resp_reply_kv_error(struct resp_out *o, int err);

/* resp_view.c: views. A view and what xv_get returned are owned by the caller's stack
 * frame; resp_xv_free releases what the view copied. */
int resp_store_get(const struct kv *kv, const uint8_t *key, uint32_t len,
                   struct kv_range_resp *resp, bool *exists);
void resp_xv_init(struct xview *v, struct resp_server *s, bool overlay, bool use_chain);
void resp_xv_free(struct xview *v);
int resp_xv_fail(struct xview *v, int err);
struct xkey *resp_xv_find(struct xview *v, const uint8_t *key, uint32_t len);
int resp_xv_get(struct xview *v, const void *key_p, size_t len, struct xval *out);
int resp_xv_set(struct xview *v, const void *key_p, size_t len, bool exists, const void *val,
                size_t val_len, int64_t lease);

/* resp_view.c: chains. The table owns its entries; an op holds links through h. */
struct chain *resp_chain_find(struct resp_server *s, const uint8_t *key, uint32_t len);
void resp_chain_free(struct chain *e);
void resp_chain_unpark(struct rop *op);
void resp_chain_invalidate(struct resp_server *s, const uint8_t *key, uint32_t len);
int resp_chain_hold(struct resp_server *s, struct holds *h, const struct xkey *xk);
void resp_chain_release(struct resp_server *s, struct holds *h, bool ok);

/* resp_engine.c: the engine, and the option parsing direct writes share with it. */
void resp_x_dispatch(struct xrun *x, const struct resp_cmd_spec *spec, uint32_t argc,
                     const struct resp_arg *argv);
bool resp_engine_runs(enum resp_cmd_id id);
bool resp_set_parse(struct resp_out *o, const char *cmd, uint32_t argc, const struct resp_arg *argv,
                    uint32_t from, bool getex, struct setopt *so);
int64_t resp_exp_ttl_ms(uint8_t exp, int64_t val);
bool resp_ttl_ok(struct resp_out *o, const char *cmd, int64_t ttl_ms, int64_t *lease_ttl);
bool resp_delex_parse(struct resp_out *o, uint32_t argc, const struct resp_arg *argv,
                      uint8_t *cond);

/* resp_write.c: starting writes, and the shared txns the check handle proposes. */
void resp_direct_start(struct rop *op);
void resp_wb_issue(struct resp_server *s);
void resp_wb_unlink(struct rop *op);
void resp_rmw_attempt(struct rop *op);
void resp_xb_issue(struct resp_server *s);
void resp_xb_unlink(struct rop *op);
bool resp_rmw_can_join(const struct rop *op);
void resp_exec_read_run(struct rop *op);

/* resp_conn.c: finishing ops, and running connections. */
struct resp_out *resp_op_out(struct rop *op);
void resp_op_finish(struct rop *op, struct resp_out *o);
void resp_op_finish_error(struct rop *op, const char *msg);
void resp_op_drop_reply(struct rop *op);
int resp_op_own_args(struct rop *op);
void resp_on_read_ready(void *arg, int status);
void resp_rb_issue(struct resp_server *s);
void resp_conn_pend(struct rconn *c);
void resp_conn_close(struct rconn *c);
void resp_conn_run(struct rconn *c);
void resp_conn_flush(struct rconn *c);
void resp_conn_update_reading(struct rconn *c);
void resp_conn_expire_ops(struct rconn *c, uint64_t now);

/* resp_server.c: INFO and CLIENT INFO (the engine dispatches them), and the last step
 * of stopping. */
void resp_write_info(struct xrun *x, uint32_t argc, const struct resp_arg *argv);
void resp_write_client_info(struct xrun *x);
void resp_server_maybe_done(struct resp_server *s);

#endif /* CC_API_RESP_INTERNAL_H */
