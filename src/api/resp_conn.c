/* resp_conn.c -- one RESP client connection: the commands that change its state, its
 * ops, and its socket.
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
 * Ops start in FIFO order, by concurrency class (resp_server.c's essay): op_class
 * assigns it, op_can_start applies it, op_start sends each op its way (at once, a read,
 * a direct write, a read-modify-write, an ID, a connection command). Linearizable reads
 * started in one loop iteration share one ReadIndex round (struct rbatch).
 *
 * Invariants: exactly one of op_start, a node callback, the timeout scan or the
 * connection closing answers an op; a closing connection cancels every node callback
 * of its ops before its memory goes (conn_closed); work per call is bounded (resp_conn_run
 * starts or parses at most 4 * RESP_CONN_OPS_MAX times, the rest waits for the check
 * handle).
 *
 * Sections: argument lists | connection commands | ops | connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/resp_id.h"
#include "api/resp_internal.h"
#include "base/assert.h"
#include "base/grow.h"

/* ==== argument lists ========================================================================== */

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
        resp_reply_errorf(o, "client name is too long (the limit is %u bytes)",
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
    return resp_arg_is(user, "default");
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
            o = resp_op_out(op);
            resp_out_error(o, "Protocol version is not an integer or out of range");
            resp_op_finish(op, o);
            return;
        }
        if (ver < 2 || ver > 3) {
            o = resp_op_out(op);
            resp_out_error(o, "-NOPROTO unsupported protocol version");
            resp_op_finish(op, o);
            return;
        }
    }
    const struct resp_arg *name = NULL;
    for (uint32_t j = 2; j < argc; j++) {
        const bool more1 = j + 1 < argc, more2 = j + 2 < argc;
        if (resp_arg_is(&argv[j], "AUTH") && more2) {
            if (!auth_ok(&argv[j + 1])) {
                o = resp_op_out(op);
                resp_out_error(o, "-WRONGPASS invalid username-password pair or user is "
                                  "disabled.");
                resp_op_finish(op, o);
                return;
            }
            j += 2;
        } else if (resp_arg_is(&argv[j], "SETNAME") && more1) {
            name = &argv[j + 1];
            j++;
        } else {
            o = resp_op_out(op);
            resp_reply_errorf(o, "Syntax error in HELLO option '%.*s'",
                              (int)(argv[j].len > 64 ? 64 : argv[j].len), argv[j].ptr);
            resp_op_finish(op, o);
            return;
        }
    }
    if (name != NULL) {
        o = resp_op_out(op);
        if (!client_name_ok(o, name)) {
            resp_op_finish(op, o);
            return;
        }
        set_client_name(c, name);
    }
    resp_out_set_proto(&c->out, (int)ver); /* the reply already speaks the new version */
    o = resp_op_out(op);
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
    resp_out_bulk_cstr(o, resp_is_leader(c->s) ? "master" : "replica");
    resp_out_bulk_cstr(o, "modules");
    resp_out_array(o, 0);
    resp_op_finish(op, o);
}

static void cmd_auth(struct rop *op)
{
    struct resp_out *o = resp_op_out(op);
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
    resp_op_finish(op, o);
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
    struct resp_out *o = resp_op_out(op);
    if (!resp_engine_runs(op->spec->id)) {
        resp_out_error(o, "Command not allowed inside a transaction");
        c->multi_dirty = true;
    } else if (c->n_mq >= RESP_MULTI_QUEUED_MAX ||
               c->mq_bytes + rargs_bytes(op->a.argc, op->a.argv) > RESP_MULTI_BYTES_MAX) {
        resp_reply_errorf(o,
                          "too many commands queued in MULTI (the limit is %u commands, %u bytes)",
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
    resp_op_finish(op, o);
}

static void cmd_watch(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (c->n_watch + (op->a.argc - 1) > RESP_WATCH_KEYS_MAX) {
        struct resp_out *o = resp_op_out(op);
        resp_reply_errorf(o, "too many WATCHed keys (the limit is %u per connection)",
                          (unsigned)RESP_WATCH_KEYS_MAX);
        resp_op_finish(op, o);
        return;
    }
    if (resp_op_own_args(op) != 0) {
        resp_op_finish_error(op, "out of memory");
        return;
    }
    op->kind = K_WATCH;
    op->wait = W_READ;
    op->started_ms = resp_now_ms(s);
    s->st.reads += !c->readonly;
    const int rv = node_read(s->node, !c->readonly, resp_on_read_ready, op);
    if (rv != 0) {
        op->wait = W_NONE;
        struct resp_out *o = resp_op_out(op);
        resp_reply_node_error(s, o, rv);
        resp_op_finish(op, o);
    }
}

static void watch_record(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_out *o = resp_op_out(op);
    if (c->watch == NULL) {
        c->watch = calloc(RESP_WATCH_KEYS_MAX, sizeof(*c->watch));
    }
    for (uint32_t i = 1; i < op->a.argc && c->watch != NULL; i++) {
        const struct resp_arg *k = &op->a.argv[i];
        bool dup = false;
        for (uint32_t j = 0; j < c->n_watch && !dup; j++) {
            dup = resp_bytes_eq(c->watch[j].key, c->watch[j].key_len, k->ptr, k->len);
        }
        if (dup || resp_key_impossible(k->ptr, k->len)) {
            continue; /* the first WATCH of a key pins it; an impossible key never changes */
        }
        struct kv_range_resp r;
        bool exists = false;
        uint8_t *kc = resp_dup_bytes(k->ptr, k->len);
        if (kc == NULL || resp_store_get(node_kv(c->s->node), (const uint8_t *)k->ptr,
                                         (uint32_t)k->len, &r, &exists) != 0) {
            free(kc);
            resp_out_error(o, "out of memory");
            resp_op_finish(op, o);
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
    resp_op_finish(op, o);
}

static void cmd_exec(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    struct resp_out *o;
    if (!c->multi) {
        o = resp_op_out(op);
        resp_out_error(o, "EXEC without MULTI");
        resp_op_finish(op, o);
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
        o = resp_op_out(op);
        resp_out_error(o, "-EXECABORT Transaction discarded because of previous errors.");
        resp_op_finish(op, o);
        return;
    }
    op->kind = K_EXEC;
    for (uint32_t i = 0; i < op->n_mq; i++) {
        op->exec_write = op->exec_write || (op->mq[i].spec->flags & RESP_CMDF_WRITE) != 0;
    }
    if (op->exec_write) {
        resp_rmw_attempt(op);
        return;
    }
    if (c->readonly) {
        resp_exec_read_run(op);
        return;
    }
    op->wait = W_READ;
    op->started_ms = resp_now_ms(s);
    s->st.reads++;
    const int rv = node_read(s->node, true, resp_on_read_ready, op);
    if (rv != 0) {
        op->wait = W_NONE;
        o = resp_op_out(op);
        resp_reply_node_error(s, o, rv);
        resp_op_finish(op, o);
    }
}

/* ==== ops ====================================================================================
 * An op lives from the moment its command is parsed until its reply moved into the
 * connection's output buffer. Exactly one of these answers it: op_start (at once), a
 * node callback, the timeout scan, or nothing because the connection closed (then
 * resp_conn_close cancelled its node callback and conn_closed frees it). */

/* SET with KEEPTTL, EXAT or PXAT reads the key or the clock before it writes: it runs in
 * the engine (read-modify-write); every other SET is a direct write. */
static bool set_needs_engine(uint32_t argc, const struct resp_arg *argv)
{
    for (uint32_t j = 3; j < argc; j++) {
        if (resp_arg_is(&argv[j], "KEEPTTL") || resp_arg_is(&argv[j], "EXAT") ||
            resp_arg_is(&argv[j], "PXAT")) {
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

int resp_op_own_args(struct rop *op)
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
 * is out, else into the server's scratch encoder (resp_op_finish copies it into the op). */
struct resp_out *resp_op_out(struct rop *op)
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
    resp_conn_close(c);
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

/* op's reply is complete in o (from resp_op_out). */
void resp_op_finish(struct rop *op, struct resp_out *o)
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
            op->reply = resp_dup_bytes(bytes, len);
            if (op->reply == NULL) {
                resp_conn_close(c);
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
    resp_conn_pend(c);
}

/* Forgets a prepared reply (an error or nil replaces it). */
void resp_op_drop_reply(struct rop *op)
{
    CC_ASSERT(op->state != OP_DONE); /* a finished op's reply counts in deferred_bytes */
    free(op->reply);
    op->reply = NULL;
    op->reply_len = 0;
}

void resp_op_finish_error(struct rop *op, const char *msg)
{
    resp_op_drop_reply(op);
    struct resp_out *o = resp_op_out(op);
    resp_out_error(o, msg);
    resp_op_finish(op, o);
}

static bool op_can_start(const struct rconn *c, const struct rop *op)
{
    if (c->n_running == 0 || op->cls == CLS_FREE) {
        return true;
    }
    if (op->cls == CLS_BARRIER && c->running_cls == CLS_BARRIER) {
        return resp_rmw_can_join(op); /* pipelined INCRs share one txn */
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
        resp_reply_node_error(s, o, status);
    }
}

/* A read command against the store, now. */
static void read_run(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_out *o = resp_op_out(op);
    struct xview v;
    resp_xv_init(&v, c->s, false, false);
    struct xrun x = {.s = c->s, .c = c, .v = &v, .o = o};
    resp_x_dispatch(&x, op->spec, op->a.argc, op->a.argv);
    resp_xv_free(&v);
    resp_op_finish(op, o);
}

static void read_start(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (c->readonly) {
        read_run(op);
        return;
    }
    if (resp_op_own_args(op) != 0) {
        resp_op_finish_error(op, "out of memory");
        return;
    }
    if (s->rb_open == NULL && (s->rb_open = calloc(1, sizeof(*s->rb_open))) == NULL) {
        resp_op_finish_error(op, "out of memory");
        return;
    }
    struct rbatch *b = s->rb_open;
    op->kind = K_READ;
    op->wait = W_READ;
    op->started_ms = resp_now_ms(s);
    op->rb = b;
    rop_list_append(&b->ops, op, offsetof(struct rop, rb_link));
    resp_conn_pend(c); /* the check handle asks for the round */
}

void rop_list_append(struct rop_list *l, struct rop *op, size_t link_off)
{
    struct rop_link *k = (struct rop_link *)((char *)op + link_off);
    k->prev = l->tail;
    k->next = NULL;
    if (l->tail != NULL) {
        ((struct rop_link *)((char *)l->tail + link_off))->next = op;
    } else {
        l->head = op;
    }
    l->tail = op;
    l->n++;
}

void rop_list_unlink(struct rop_list *l, struct rop *op, size_t link_off)
{
    CC_ASSERT(l->n > 0);
    struct rop_link *k = (struct rop_link *)((char *)op + link_off);
    if (k->prev != NULL) {
        ((struct rop_link *)((char *)k->prev + link_off))->next = k->next;
    } else {
        l->head = k->next;
    }
    if (k->next != NULL) {
        ((struct rop_link *)((char *)k->next + link_off))->prev = k->prev;
    } else {
        l->tail = k->prev;
    }
    k->prev = k->next = NULL;
    l->n--;
}

static void rb_unlink(struct rop *op)
{
    CC_ASSERT(op->rb != NULL);
    rop_list_unlink(&op->rb->ops, op, offsetof(struct rop, rb_link));
    op->rb = NULL;
}

static void on_rb_ready(void *arg, int status)
{
    struct rbatch *b = arg;
    b->delivering = true;    /* an answer may close a connection: its other ops leave b */
    while (b->ops.head != NULL) { /* each round answers (and unlinks) one */
        struct rop *op = b->ops.head;
        rb_unlink(op);
        CC_ASSERT(op->wait == W_READ);
        op->wait = W_NONE;
        if (status != 0) {
            struct resp_out *o = resp_op_out(op);
            reply_read_error(op->c->s, o, status);
            resp_op_finish(op, o);
        } else {
            read_run(op);
        }
    }
    free(b);
}

/* Asks for one ReadIndex round for every read collected since the last one. */
void resp_rb_issue(struct resp_server *s)
{
    struct rbatch *b = s->rb_open;
    if (b == NULL) {
        return;
    }
    s->rb_open = NULL;
    if (b->ops.n == 0) {
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
        resp_wb_issue(s);
        if (op->wait == W_NONE) {
            return; /* the proposal failed and answered it */
        }
    }
    if (op->xb != NULL) {
        /* its writes stay in the shared txn: later ones in it computed from them */
        struct xbatch *xb = op->xb;
        resp_xb_unlink(op);
        if (xb->ops.n == 0 && !xb->delivering && xb != s->xb_open) { /* nobody waits for it */
            node_cancel(s->node, xb);
            resp_chain_release(s, &xb->h, false);
            free(xb);
        }
    } else if (op->wb != NULL) {
        struct wbatch *w = op->wb;
        resp_wb_unlink(op);
        if (w->ops.n == 0 && !w->delivering && w != s->wb_open) { /* nobody waits for it */
            node_cancel(s->node, w);
            free(w);
        }
    } else if (op->rb != NULL) {
        struct rbatch *b = op->rb;
        rb_unlink(op);
        if (b->ops.n == 0 && b != s->rb_open && !b->delivering) { /* nobody waits for it */
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

void resp_on_read_ready(void *arg, int status)
{
    struct rop *op = arg;
    struct rconn *c = op->c;
    CC_ASSERT(op->wait == W_READ);
    op->wait = W_NONE;
    if (status != 0) {
        resp_chain_release(c->s, &op->h, false);
        resp_op_drop_reply(op);
        struct resp_out *o = resp_op_out(op);
        reply_read_error(c->s, o, status);
        resp_op_finish(op, o);
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
            resp_exec_read_run(op);
            return;
        }
        op->retry = true; /* the confirming read of a txn that wrote nothing */
        resp_conn_pend(c);
        return;
    case K_RMW:
        op->retry = true;
        resp_conn_pend(c);
        return;
    default:
        CC_UNREACHABLE();
    }
}

/* ID.NEXT / ID.SNOWFLAKE (resp_id.h): the answer may come inline or from the ID service. */
static void on_id_done(void *arg, int rv, const int64_t *ids, uint32_t n, const char *msg)
{
    struct rop *op = arg;
    CC_ASSERT(op->wait == W_ID);
    op->wait = W_NONE;
    struct resp_out *o = resp_op_out(op);
    resp_id_reply(o, rv, ids, n, msg);
    resp_op_finish(op, o);
}

static void id_start(struct rop *op)
{
    struct rconn *c = op->c;
    c->multi_dirty = c->multi_dirty || c->multi; /* refused in MULTI: EXEC aborts */
    op->wait = W_ID;
    op->started_ms = resp_now_ms(c->s);
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
    c->last_ms = resp_now_ms(c->s);
    if (op->spec == NULL) {
        struct resp_out *o = resp_op_out(op);
        if (op->a.argc == 0) { /* the protocol error op: answer, then close */
            resp_reply_errorf(o, "%s", resp_parser_errmsg(&c->p));
        } else {
            const struct resp_cmd_spec *spec = NULL;
            resp_cmdtab_resolve(o, op->a.argc, op->a.argv, &spec);
            c->multi_dirty = c->multi_dirty || c->multi;
        }
        resp_op_finish(op, o);
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
        o = resp_op_out(op);
        if (client_name_ok(o, &op->a.argv[2])) {
            set_client_name(c, &op->a.argv[2]);
            resp_out_ok(o);
        }
        resp_op_finish(op, o);
        return;
    case RESP_CMD_READONLY:
    case RESP_CMD_READWRITE:
        c->readonly = id == RESP_CMD_READONLY;
        o = resp_op_out(op);
        resp_out_ok(o);
        resp_op_finish(op, o);
        return;
    case RESP_CMD_QUIT:
        o = resp_op_out(op);
        resp_out_ok(o);
        resp_op_finish(op, o);
        return;
    case RESP_CMD_MULTI:
        o = resp_op_out(op);
        if (c->multi) {
            resp_out_error(o, "MULTI calls can not be nested");
        } else {
            c->multi = true;
            resp_out_ok(o);
        }
        resp_op_finish(op, o);
        return;
    case RESP_CMD_DISCARD:
        o = resp_op_out(op);
        if (!c->multi) {
            resp_out_error(o, "DISCARD without MULTI");
        } else {
            conn_discard(c);
            conn_unwatch(c);
            resp_out_ok(o);
        }
        resp_op_finish(op, o);
        return;
    case RESP_CMD_UNWATCH:
        conn_unwatch(c);
        o = resp_op_out(op);
        resp_out_ok(o);
        resp_op_finish(op, o);
        return;
    case RESP_CMD_WATCH:
        if (c->multi) {
            o = resp_op_out(op);
            resp_out_error(o, "WATCH inside MULTI is not allowed");
            resp_op_finish(op, o);
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
        resp_direct_start(op);
        return;
    default:
        if (resp_op_own_args(op) != 0) {
            resp_op_finish_error(op, "out of memory");
            return;
        }
        op->kind = K_RMW;
        resp_rmw_attempt(op);
        return;
    }
}

/* A new op for a parsed command (argv are parser views until resp_op_own_args). */
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
void resp_conn_expire_ops(struct rconn *c, uint64_t now)
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
        resp_chain_release(s, &op->h, false);
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
        resp_op_finish_error(op, msg); /* may free op and others: rescan from the head */
    }
}

/* ==== connections ============================================================================ */

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking while connections are pending */
}

/* Queues c for the check handle: run it (start ops, parse, retry) and flush it. */
void resp_conn_pend(struct rconn *c)
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
void resp_conn_update_reading(struct rconn *c)
{
    const bool want = conn_can_parse(c) && !c->stalled && c->next_start == NULL;
    if (want && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
        if (!c->reading) {
            resp_conn_close(c);
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
        resp_conn_close(c);
    }
}

/* Starts what may start, then parses and starts new commands while the limits allow. */
void resp_conn_run(struct rconn *c)
{
    if (c->closing) {
        return;
    }
    if (c->head != NULL && c->head->retry) {
        resp_rmw_attempt(c->head);
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
            resp_conn_close(c);
            return;
        }
        if (op->spec != NULL && op->spec->id == RESP_CMD_QUIT) {
            c->draining = true; /* nothing after QUIT is read */
        }
        if (c->next_start == op && op_can_start(c, op)) {
            op_start(op); /* argv views are valid until the next resp_parser_* call */
        } else if (resp_op_own_args(op) != 0) {
            resp_conn_close(c);
            return;
        }
    }
    if (c->next_start != NULL) {
        c->stalled = true;
    }
    if (round == 4 * RESP_CONN_OPS_MAX) {
        c->stalled = true;
        resp_conn_pend(c);
    }
    if (!c->closing) {
        resp_conn_update_reading(c);
    }
}

static void conn_maybe_drained(struct rconn *c)
{
    size_t queued = 0;
    resp_out_data(&c->out, &queued);
    if (c->draining && !c->closing && c->n_ops == 0 && !c->writing && queued == 0) {
        resp_conn_close(c);
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
        resp_conn_close(c);
        return;
    }
    resp_conn_pend(c);
}

void resp_conn_flush(struct rconn *c)
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
            resp_conn_pend(c); /* room again: parse what waits */
        }
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        resp_conn_close(c);
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
        resp_conn_close(c);
    }
}

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
    resp_server_maybe_done(s);
}

/* Ends a connection now: forgets every pending node callback, then closes the socket
 * (memory goes in conn_closed). Safe to call twice and from inside any callback. */
void resp_conn_close(struct rconn *c)
{
    if (c->closing) {
        return;
    }
    struct resp_server *s = c->s;
    c->closing = true;
    for (struct rop *op = c->head; op != NULL; op = op->next) {
        op_cancel_wait(s, op);
        resp_chain_release(s, &op->h, false);
        resp_chain_unpark(op);
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
        resp_conn_run(c);
        resp_conn_pend(c);
        return;
    }
    if (nread < 0) { /* EOF or an error: the client is gone (Redis closes at once too) */
        resp_conn_close(c);
        return;
    }
    if (nread == 0) {
        return;
    }
    resp_parser_commit(&c->p, (size_t)nread);
    c->stalled = true; /* bytes to parse */
    resp_conn_run(c);
    resp_conn_pend(c);
}
