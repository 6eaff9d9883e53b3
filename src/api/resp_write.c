/* resp_write.c -- how RESP writes become Raft entries.
 *
 * Direct writes: commands whose every condition the state machine can evaluate at apply
 * time (SET [NX|XX|IFEQ|IFNE] [GET] [EX|PX], SETNX, SETEX, PSETEX, GETSET, GETDEL, MSET,
 * MSETNX, DEL, UNLINK, DELEX) become one kv command or txn: no read first, nothing to
 * retry, and concurrent ones never conflict. Unconditional ones started in one loop
 * iteration, from every client, share one txn without compares (struct wbatch).
 *
 * Read-modify-write (INCR*, APPEND, SETRANGE, RENAME, ...) and EXEC: the engine runs the
 * command(s) against an overlay view, the reply is prepared, and ONE txn is proposed
 * whose compares pin every value read (mod_revision, or for a chained key its expected
 * value, resp_view.c) and whose success branch holds every write. A failed compare is a
 * conflict: run again, at most RESP_RMW_ATTEMPTS_MAX times. An outcome that writes
 * nothing is confirmed by a linearizable read and a rerun. Single-key read-modify-writes
 * started in one loop iteration run one after another against one overlay and share one
 * txn (struct xbatch).
 *
 * Invariants: log order is arrival order (anything that proposes on its own first
 * proposes the open write batch, resp_wb_issue); a shared write txn never writes a key
 * twice; the chain links an op or batch holds are released once, when its txn applied
 * or failed; node callbacks only record results and finish ops, retries run from the
 * check handle.
 *
 * Sections: direct writes | shared write txns | read-modify-write and EXEC | shared
 * read-modify-write txns | the proposal callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/resp_internal.h"
#include "base/assert.h"

/* ==== direct writes =========================================================================
 * Commands whose every condition the state machine can evaluate at apply time become one
 * kv command: no read first, nothing to retry, and concurrent ones never conflict. */

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
            later = resp_bytes_eq(argv[i].ptr, argv[i].len, argv[j].ptr, argv[j].len);
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

/* Builds the command for op into *cmd. Returns true, or false after writing the reply
 * (bad arguments: the op is then answered). */
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
        if (op->spec->id == RESP_CMD_SET && !resp_set_parse(o, "set", argc, argv, 3, false, &so)) {
            return false;
        }
        so.get = so.get || op->spec->id == RESP_CMD_GETSET;
        if (op->spec->id == RESP_CMD_SETNX) {
            so.cond = SC_NX;
        }
        if ((krv = resp_key_check(&argv[1])) != 0) {
            break;
        }
        if (argv[2].len > KV_VALUE_BYTES_MAX) {
            krv = KV_EVALUETOOBIG;
            break;
        }
        if (so.exp != SE_NONE) { /* op_class sends only EX and PX here */
            CC_ASSERT(so.exp == SE_EX || so.exp == SE_PX);
            if (!resp_ttl_ok(o, "set", resp_exp_ttl_ms(so.exp, so.exp_val), &b->ttl_ms)) {
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
            resp_reply_errorf(o, "invalid expire time in '%s' command", op->spec->name);
            return false;
        }
        if ((krv = resp_key_check(&argv[1])) != 0) {
            break;
        }
        if (argv[3].len > KV_VALUE_BYTES_MAX) {
            krv = KV_EVALUETOOBIG;
            break;
        }
        if (!resp_ttl_ok(o, op->spec->name, seconds ? n * 1000 : n, &b->ttl_ms)) {
            return false;
        }
        db_put(&b->succ[b->n_succ++], &argv[1], &argv[3], false);
        op->dw = DW_OK;
        break;
    }
    case RESP_CMD_GETDEL:
        if (resp_key_impossible(argv[1].ptr, argv[1].len)) {
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
            krv = resp_key_check(&argv[i]);
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
            resp_reply_errorf(o,
                              "%s of more than %u distinct keys does not fit one Raft transaction",
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
            resp_reply_errorf(o,
                              "%s of more than %u distinct keys does not fit one Raft transaction",
                              op->spec->name, (unsigned)KV_TXN_OPS_MAX);
            return false;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (!resp_key_impossible(argv[idx[i]].ptr, argv[idx[i]].len)) {
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
        if (!resp_delex_parse(o, argc, argv, &cond)) {
            return false;
        }
        if (resp_key_impossible(argv[1].ptr, argv[1].len)) {
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
        resp_reply_kv_error(o, krv);
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
        if (resp_bytes_eq(k, kl, key, len)) {
            return true;
        }
    }
    return false;
}

void resp_wb_unlink(struct rop *op)
{
    CC_ASSERT(op->wb != NULL);
    rop_list_unlink(&op->wb->ops, op, offsetof(struct rop, wb_link));
    op->wb = NULL;
}

static void on_wb_applied(void *arg, int status, const struct sm_result *res)
{
    struct wbatch *w = arg;
    w->delivering = true;    /* an answer may close a connection: its other ops leave w */
    while (w->ops.head != NULL) { /* each round answers (and unlinks) one, in txn order */
        struct rop *op = w->ops.head;
        resp_wb_unlink(op);
        CC_ASSERT(op->wait == W_PROPOSE);
        op->wait = W_NONE;
        direct_reply(op, status, res, op->wb_off, op->wb_n);
    }
    free(w);
}

/* Proposes the open shared write txn (the check handle does at the end of every loop
 * iteration, and so does anything that proposes on its own, to keep log order = arrival
 * order). */
void resp_wb_issue(struct resp_server *s)
{
    struct wbatch *w = s->wb_open;
    if (w == NULL) {
        return;
    }
    s->wb_open = NULL;
    if (w->ops.n == 0 || s->stopping) { /* every op left (or is leaving): nothing to write */
        while (w->ops.head != NULL) {
            resp_wb_unlink(w->ops.head);
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
        resp_wb_issue(s);
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
    rop_list_append(&w->ops, op, offsetof(struct rop, wb_link));
    op->kind = K_DIRECT;
    op->wait = W_PROPOSE;
    op->started_ms = resp_now_ms(s);
    resp_conn_pend(op->c); /* the check handle proposes the batch */
    return true;
}

void resp_direct_start(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    if (!resp_is_leader(s)) {
        struct resp_out *o = resp_op_out(op);
        resp_reply_not_leader(s, o);
        resp_op_finish(op, o);
        return;
    }
    if (resp_op_own_args(op) != 0) { /* the ops below may be proposed after this call */
        resp_op_finish_error(op, "out of memory");
        return;
    }
    struct dbuild *b = s->db; /* one per server: built and encoded before any yield */
    struct resp_out *eo = resp_op_out(op);
    if (!direct_build(op, eo, b)) {
        resp_op_finish(op, eo);
        return;
    }
    /* the keys change under any chain that expected otherwise */
    for (uint32_t i = 0; i < b->n_succ; i++) {
        const struct kv_op *x = &b->succ[i];
        if (x->type == KV_OP_PUT) {
            resp_chain_invalidate(s, x->put.key, x->put.key_len);
        } else if (x->type == KV_OP_DELETE) {
            resp_chain_invalidate(s, x->del.key, x->del.key_len);
        }
    }
    for (uint32_t i = 0; i < b->n_fail; i++) {
        if (b->fail[i].type == KV_OP_PUT) {
            resp_chain_invalidate(s, b->fail[i].put.key, b->fail[i].put.key_len);
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
        struct resp_out *o = resp_op_out(op);
        resp_reply_kv_error(o, rv);
        resp_op_finish(op, o);
        return;
    }
    resp_wb_issue(s); /* what arrived before this command goes into the log before it */
    op->kind = K_DIRECT;
    op->wait = W_PROPOSE;
    op->started_ms = resp_now_ms(s);
    rv = node_propose(s->node, cmd, n, on_applied, op);
    free(cmd);
    if (rv != 0) {
        op->wait = W_NONE;
        struct resp_out *o = resp_op_out(op);
        resp_reply_node_error(s, o, rv);
        resp_op_finish(op, o);
        return;
    }
    s->st.proposals++;
}

/* op's reply from a result: its own (off 0, every response) or its slice of a shared
 * txn's responses. */
static void direct_reply(struct rop *op, int status, const struct sm_result *res, uint32_t off,
                         uint32_t n)
{
    struct resp_out *o = resp_op_out(op);
    struct resp_server *s = op->c->s;
    if (res != NULL && res->err != 0) {
        resp_reply_kv_error(o, res->err);
        resp_op_finish(op, o);
        return;
    }
    if (status != 0 || res == NULL) {
        resp_reply_node_error(s, o, status != 0 ? status : NODE_EUNKNOWN);
        resp_op_finish(op, o);
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
    resp_op_finish(op, o);
}

static void direct_done(struct rop *op, int status, const struct sm_result *res)
{
    direct_reply(op, status, res, 0, res != NULL && res->err == 0 ? res->kv.n_responses : 0);
}

/* ==== read-modify-write and EXEC ===========================================================
 * resp_rmw_attempt runs the command (or EXEC's queue) against an overlay of the local store,
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
        if (resp_store_get(node_kv(s->node), w[i].key, w[i].key_len, &r, &exists) != 0) {
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

/* Finishes op with the bytes prepared in op->reply. */
static void op_finish_prepared(struct rop *op)
{
    uint8_t *bytes = op->reply;
    const size_t len = op->reply_len;
    op->reply = NULL;
    op->reply_len = 0;
    struct resp_out *o = resp_op_out(op);
    resp_out_raw(o, bytes, len);
    free(bytes);
    resp_op_finish(op, o);
}

static void rmw_fail_view(struct rop *op, int err)
{
    if (err == RESP__EKEYS) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "%s touches too many keys (one transaction reads at most %u and writes at "
                 "most %u)",
                 op->spec->name, (unsigned)KV_TXN_CMP_MAX, (unsigned)KV_TXN_OPS_MAX);
        resp_op_finish_error(op, msg);
    } else {
        resp_op_finish_error(op, "out of memory");
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

/* Remembers what the txn of view v will leave in each key it writes (resp_view.c, chains). */
static void xtxn_hold(struct resp_server *s, struct holds *h, const struct xview *v)
{
    CC_ASSERT(h->n_held == 0);
    h->held = calloc(v->n > 0 ? v->n : 1, sizeof(struct chain *));
    for (uint32_t i = 0; i < v->n; i++) {
        const struct xkey *k = &v->k[i];
        if (k->dirty && k->cur_lease < 0) {
            resp_chain_invalidate(s, k->key, k->key_len); /* its lease id is known only at apply */
        } else if (k->dirty && (h->held == NULL || resp_chain_hold(s, h, k) != 0)) {
            resp_chain_invalidate(s, k->key, k->key_len); /* no memory: no chain, still correct */
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
        resp_op_finish_error(op, "reply exceeds the client output buffer limit");
        return false;
    }
    size_t len = 0;
    const uint8_t *bytes = resp_out_data(so, &len);
    resp_op_drop_reply(op);
    op->reply = resp_dup_bytes(bytes, len);
    if (op->reply == NULL) {
        resp_op_finish_error(op, "out of memory");
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
        resp_op_finish_error(op, msg);
        return;
    }
    resp_op_drop_reply(op);
    op->confirm = false;
    op->solo = true;
    op->retry = true; /* run again from the check handle, not inside the node's apply */
    resp_conn_pend(op->c);
}

/* ---- shared read-modify-write txns -----------------------------------------------------
 * Read-modify-writes started in one loop iteration, from every client, run one after
 * the other against ONE overlay and become one txn: what a later one read includes what
 * an earlier one wrote, exactly as if they had run one by one at the txn's point in the
 * log. A conflict fails them all; each then runs again alone. */

#define RESP_XBATCH_KEYS_MAX 48u /* keys of one shared txn: inside KV_TXN_CMP_MAX */
_Static_assert(RESP_XBATCH_KEYS_MAX + 2 <= KV_TXN_CMP_MAX, "a shared txn fits its compares");

void resp_xb_unlink(struct rop *op)
{
    CC_ASSERT(op->xb != NULL);
    rop_list_unlink(&op->xb->ops, op, offsetof(struct rop, xb_link));
    op->xb = NULL;
}

static void on_xb_applied(void *arg, int status, const struct sm_result *res)
{
    struct xbatch *xb = arg;
    struct resp_server *s = xb->s;
    const bool applied = status == 0 && res != NULL && res->err == 0;
    const bool ok = applied && res->kv.succeeded;
    resp_chain_release(s, &xb->h, ok);
    xb->delivering = true;
    while (xb->ops.head != NULL) { /* each round answers (and unlinks) one, in txn order */
        struct rop *op = xb->ops.head;
        resp_xb_unlink(op);
        CC_ASSERT(op->wait == W_PROPOSE);
        op->wait = W_NONE;
        if (ok) {
            op_finish_prepared(op);
        } else if (applied) {
            rmw_conflict(op);
        } else {
            resp_op_drop_reply(op);
            struct resp_out *o = resp_op_out(op);
            if (res != NULL && res->err != 0) {
                resp_reply_kv_error(o, res->err);
            } else {
                resp_reply_node_error(s, o, status != 0 ? status : NODE_EUNKNOWN);
            }
            resp_op_finish(op, o);
        }
    }
    free(xb);
}

/* Proposes the open shared read-modify-write txn (from the check handle). */
void resp_xb_issue(struct resp_server *s)
{
    struct xbatch *xb = s->xb_open;
    if (xb == NULL) {
        return;
    }
    s->xb_open = NULL;
    if (xb->ops.n == 0 || s->stopping || xb->v.err != 0 || xv_dirty(&xb->v) == 0) {
        /* nothing to propose together: what is left runs alone (an outcome that writes
         * nothing is confirmed by a read there) */
        while (xb->ops.head != NULL) {
            struct rop *op = xb->ops.head;
            resp_xb_unlink(op);
            op->wait = W_NONE;
            resp_op_drop_reply(op);
            op->solo = true;
            op->retry = !s->stopping;
            resp_conn_pend(op->c);
        }
        resp_xv_free(&xb->v);
        free(xb);
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = xtxn_build(&xb->v, NULL, 0, &cmd, &n);
    if (rv == 0) {
        xtxn_hold(s, &xb->h, &xb->v);
        resp_xv_free(&xb->v);
        rv = node_propose(s->node, cmd, n, on_xb_applied, xb);
        free(cmd);
        if (rv == 0) {
            s->st.proposals++;
            return;
        }
    } else {
        resp_xv_free(&xb->v);
    }
    struct sm_result fake = {.tag = SM_TAG_KV, .err = rv};
    on_xb_applied(xb, rv, rv <= -2000 && rv >= -2099 ? &fake : NULL);
}

/* Pipelined read-modify-writes of one connection (INCR x16) may join the open shared
 * txn together: run one after the other against its overlay, they are exactly the
 * commands run one by one, and they commit or conflict as one. op (queued, not started)
 * may start while the connection's earlier ops run only if every one of those waits in
 * the open txn, op will join it too (room, no big value in flight on its key), and op is
 * a single-key read-modify-write. After a conflict the connection's ops run again one
 * at a time, from its head, so a retry never reorders them. */
#define RESP_RMW_JOIN_RUNNING_MAX 64u /* bounds the scan below */

bool resp_rmw_can_join(const struct rop *op)
{
    const struct rconn *c = op->c;
    const struct resp_server *s = c->s;
    const struct xbatch *xb = s->xb_open;
    if (op->spec == NULL || c->multi || s->stopping || xb == NULL || xb->v.err != 0 ||
        xb->v.n + 2 > RESP_XBATCH_KEYS_MAX || c->n_running > RESP_RMW_JOIN_RUNNING_MAX) {
        return false;
    }
    switch (op->spec->id) {
    case RESP_CMD_INCR:
    case RESP_CMD_DECR:
    case RESP_CMD_INCRBY:
    case RESP_CMD_DECRBY:
    case RESP_CMD_INCRBYFLOAT:
    case RESP_CMD_APPEND:
    case RESP_CMD_SETRANGE:
        break;
    default:
        return false;
    }
    uint32_t in_xb = 0;
    for (const struct rop *e = c->head; e != NULL && e != op; e = e->next) {
        if (e->state == OP_RUNNING) {
            if (e->xb != xb || e->retry) {
                return false;
            }
            in_xb++;
        }
    }
    if (in_xb != c->n_running) {
        return false;
    }
    const struct resp_arg *k = &op->a.argv[1];
    if (resp_xv_find((struct xview *)&xb->v, (const uint8_t *)k->ptr, (uint32_t)k->len) != NULL) {
        return true;
    }
    if (resp_key_impossible(k->ptr, k->len)) {
        return true;
    }
    const struct chain *e =
        resp_chain_find((struct resp_server *)s, (const uint8_t *)k->ptr, (uint32_t)k->len);
    return e == NULL || !e->opaque; /* else it would park, out of the txn */
}

/* Runs op (a single-key read-modify-write) in the open shared txn. */
static void rmw_batched(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    const struct resp_arg *k = &op->a.argv[1]; /* every RMW command reads its first key */
    struct xbatch *xb = s->xb_open;
    if (xb != NULL && (xb->v.n + 2 > RESP_XBATCH_KEYS_MAX || xb->v.err != 0)) {
        resp_xb_issue(s);
        xb = NULL;
    }
    if (xb == NULL || resp_xv_find(&xb->v, (const uint8_t *)k->ptr, (uint32_t)k->len) == NULL) {
        struct chain *e = resp_key_impossible(k->ptr, k->len)
                              ? NULL
                              : resp_chain_find(s, (const uint8_t *)k->ptr, (uint32_t)k->len);
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
            resp_rmw_attempt(op);
            return;
        }
        xb->s = s;
        resp_xv_init(&xb->v, s, true, true);
        s->xb_open = xb;
    }
    struct resp_out *so = &s->scratch;
    resp_out_clear(so);
    resp_out_set_proto(so, resp_out_proto(&c->out));
    struct xrun x = {.s = s, .c = c, .v = &xb->v, .o = so};
    resp_x_dispatch(&x, op->spec, op->a.argc, op->a.argv);
    if (!op_prepare_reply(op, so)) {
        resp_xv_fail(&xb->v, RESP_SERVER_ENOMEM); /* its writes may be in the view: run apart */
        return;
    }
    op->xb = xb;
    rop_list_append(&xb->ops, op, offsetof(struct rop, xb_link));
    op->wait = W_PROPOSE;
    op->started_ms = resp_now_ms(s);
    resp_conn_pend(c); /* the check handle proposes the batch */
}

void resp_rmw_attempt(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    CC_ASSERT(op->kind == K_RMW || op->kind == K_EXEC);
    CC_ASSERT(op->wait == W_NONE);
    CC_ASSERT(op->h.n_held == 0);
    op->retry = false;
    if (!resp_is_leader(s)) {
        struct resp_out *o = resp_op_out(op);
        resp_reply_not_leader(s, o);
        resp_op_finish(op, o);
        return;
    }
    if (op->kind == K_RMW && !op->confirm && !op->solo) {
        rmw_batched(op);
        return;
    }
    if (op->kind == K_EXEC && op->confirm && watch_changed(s, op->watch, op->n_watch)) {
        struct resp_out *o = resp_op_out(op);
        resp_out_null_array(o);
        resp_op_finish(op, o);
        return;
    }
    struct xview v;
    resp_xv_init(&v, s, true, !op->confirm);
    struct resp_out *so = &s->scratch;
    resp_out_clear(so);
    resp_out_set_proto(so, resp_out_proto(&c->out));
    struct xrun x = {.s = s, .c = c, .v = &v, .o = so};
    if (op->kind == K_EXEC) {
        resp_out_array(so, op->n_mq);
        for (uint32_t i = 0; i < op->n_mq; i++) {
            resp_x_dispatch(&x, op->mq[i].spec, op->mq[i].a.argc, op->mq[i].a.argv);
        }
    } else {
        resp_x_dispatch(&x, op->spec, op->a.argc, op->a.argv);
    }
    if (v.err == RESP__EWAIT) { /* park until that write lands, then run again */
        op->parked_on = v.wait_on;
        op->park_next = v.wait_on->waiters;
        v.wait_on->waiters = op;
        resp_xv_free(&v);
        return;
    }
    if (v.err != 0) {
        const int err = v.err;
        resp_xv_free(&v);
        rmw_fail_view(op, err);
        return;
    }
    if (!op_prepare_reply(op, so)) {
        resp_xv_free(&v);
        return;
    }
    uint32_t n_read = 0;
    for (uint32_t i = 0; i < v.n; i++) {
        n_read += v.k[i].read;
    }
    if (xv_dirty(&v) == 0) {
        /* Nothing to write: the reply stands if what it read was confirmed current. */
        resp_xv_free(&v);
        if (op->confirm || (n_read == 0 && op->n_watch == 0)) {
            op_finish_prepared(op);
            return;
        }
        op->confirm = true;
        op->wait = W_READ;
        op->started_ms = resp_now_ms(s);
        s->st.reads++;
        const int rv = node_read(s->node, true, resp_on_read_ready, op);
        if (rv != 0) {
            op->wait = W_NONE;
            resp_op_drop_reply(op);
            struct resp_out *o = resp_op_out(op);
            resp_reply_node_error(s, o, rv);
            resp_op_finish(op, o);
        }
        return;
    }
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = xtxn_build(&v, op->watch, op->n_watch, &cmd, &n);
    if (rv == RESP__EKEYS || rv == RESP_SERVER_ENOMEM) {
        resp_xv_free(&v);
        rmw_fail_view(op, rv);
        return;
    }
    if (rv != 0) {
        resp_xv_free(&v);
        resp_op_drop_reply(op);
        struct resp_out *o = resp_op_out(op);
        resp_reply_kv_error(o, rv);
        resp_op_finish(op, o);
        return;
    }
    xtxn_hold(s, &op->h, &v);
    resp_xv_free(&v);
    op->wait = W_PROPOSE;
    op->started_ms = resp_now_ms(s);
    rv = node_propose(s->node, cmd, n, on_applied, op);
    free(cmd);
    if (rv != 0) {
        op->wait = W_NONE;
        resp_chain_release(s, &op->h, false);
        resp_op_drop_reply(op);
        struct resp_out *o = resp_op_out(op);
        resp_reply_node_error(s, o, rv);
        resp_op_finish(op, o);
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
        resp_chain_release(s, &op->h, true);
        op_finish_prepared(op);
        return;
    }
    resp_chain_release(s, &op->h, false);
    if (!applied) {
        resp_op_drop_reply(op);
        struct resp_out *o = resp_op_out(op);
        if (res != NULL && res->err != 0) {
            resp_reply_kv_error(o, res->err);
        } else {
            resp_reply_node_error(s, o, status != 0 ? status : NODE_EUNKNOWN);
        }
        resp_op_finish(op, o);
        return;
    }
    /* The compares failed: a WATCHed key changed (EXEC answers nil), or something read
     * changed under us (run again). */
    const struct kv_result *r = &res->kv;
    for (uint32_t i = 0; i < op->n_watch && i < r->n_responses; i++) {
        const struct kv_range_resp *rr = &r->responses[i].range;
        const int64_t mod = rr->n_kvs > 0 ? rr->kvs[0].mod_revision : 0;
        if (mod != op->watch[i].mod) {
            resp_op_drop_reply(op);
            struct resp_out *o = resp_op_out(op);
            resp_out_null_array(o);
            resp_op_finish(op, o);
            return;
        }
    }
    rmw_conflict(op);
}

/* An EXEC whose queue writes nothing: after the read, check WATCH and run it all against
 * the store. */
void resp_exec_read_run(struct rop *op)
{
    struct rconn *c = op->c;
    struct resp_server *s = c->s;
    struct resp_out *o = resp_op_out(op);
    if (watch_changed(s, op->watch, op->n_watch)) {
        resp_out_null_array(o);
        resp_op_finish(op, o);
        return;
    }
    struct xview v;
    resp_xv_init(&v, s, false, false);
    struct xrun x = {.s = s, .c = c, .v = &v, .o = o};
    resp_out_array(o, op->n_mq);
    for (uint32_t i = 0; i < op->n_mq; i++) {
        resp_x_dispatch(&x, op->mq[i].spec, op->mq[i].a.argc, op->mq[i].a.argv);
    }
    resp_xv_free(&v);
    resp_op_finish(op, o);
}

/* ---- the proposal callback ------------------------------------------------------------------- */

/* node_propose's callback for an op proposed alone (a direct write, or a read-modify-write
 * or EXEC txn). */
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
