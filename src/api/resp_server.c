/* resp_server.c -- the RESP listener: connections, pipelining, backpressure, and the
 * Redis commands of issue #6 mapped onto the node's Raft-replicated KV store. This file
 * holds the overview below and the listener itself (accepting, the check handle, the
 * timeout tick, start and stop, INFO); the parts live in the files named, which share
 * resp_internal.h.
 *
 * Connections (resp_conn.c). Every parsed command becomes a struct rop in its
 * connection's FIFO; replies leave strictly in FIFO order. A connection stops reading
 * while RESP_CONN_OPS_MAX commands are unanswered or RESP_CONN_OUT_HWM_BYTES of replies
 * wait, and is cut off past RESP_CONN_OUT_BYTES_MAX.
 *
 * Execution order (resp_conn.c). Ops start in FIFO order; an op may start while earlier
 * ones still run only if all of them are of the same concurrent class: reads (READ) with
 * reads, blind single-entry writes (WRITE) with writes. Writes proposed back to back
 * commit in log order; reads started together see at least everything before them.
 * Everything else (read-modify-write, MULTI/EXEC, connection state: BARRIER) waits for
 * the FIFO to drain and holds back what follows, with one exception: pipelined
 * single-key read-modify-writes (INCR x16) join the open shared txn together while all
 * of the connection's running ops wait in it (resp_rmw_can_join). FREE ops (PING, INFO,
 * errors) never wait on data. So a pipeline behaves exactly as if its commands ran one
 * by one, and still batches.
 *
 * Commands, three ways (docs/resp.md has the user's view):
 *   - reads: after node_read() (a batched ReadIndex round, or at once after READONLY),
 *     the command engine (resp_engine.c) runs against the local store;
 *   - blind or conditional single-key writes (SET [NX|XX|IFEQ|IFNE] [GET], SETNX, GETSET,
 *     GETDEL, MSET, MSETNX, DEL, DELEX): one kv command or txn whose conditions the
 *     state machine evaluates at apply time, so they never conflict and never retry
 *     (resp_write.c, direct writes);
 *   - read-modify-write (INCR*, APPEND, SETRANGE, RENAME) and EXEC: the engine runs the
 *     command(s) against an overlay of the store, then proposes ONE txn whose compares
 *     pin every value it read and whose success branch holds every write; a failed
 *     compare means a conflict: rerun, at most RESP_RMW_ATTEMPTS_MAX times (resp_write.c).
 *     Chains (resp_view.c) let read-modify-writes of one key pipeline through the log
 *     instead of conflicting.
 *
 * Sharing (group commit above Raft): what all clients start in one loop iteration is
 * handed to the node together, at the end of the iteration (the check handle, here):
 * linearizable reads share one ReadIndex round (struct rbatch, resp_conn.c),
 * unconditional writes share one txn without compares (struct wbatch), single-key
 * read-modify-writes run one after another against one overlay and share one txn
 * (struct xbatch; both resp_write.c). Anything that proposes on its own proposes the open
 * write batch first, so log order stays arrival order for every connection.
 *
 * Nothing here blocks, and no node callback runs client code re-entrantly: node
 * callbacks only record results; starting further ops, retries and socket writes happen
 * from the server's uv_check handle (a uv_idle keeps the loop from sleeping while
 * connections are pending there).
 *
 * Files: resp_server.c (this) -> resp_conn.c -> resp_write.c -> resp_engine.c ->
 * resp_view.c, each calling down; resp_internal.h lists what crosses files. IDs over RESP
 * (ID.NEXT, ID.SNOWFLAKE) are resp_id.c, started from resp_conn.c.
 *
 * Sections: errors | INFO and CLIENT INFO | server.
 */
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/resp_internal.h"
#include "base/assert.h"

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

/* ==== INFO and CLIENT INFO ==================================================================== */

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
        /* the analyzer misses the va_start above on the second round */
        // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
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

static bool info_wants(uint32_t argc, const struct resp_arg *argv, const char *section,
                       bool is_default)
{
    if (argc <= 1) {
        return is_default;
    }
    for (uint32_t i = 1; i < argc; i++) {
        if (resp_arg_is(&argv[i], section) || resp_arg_is(&argv[i], "all") ||
            resp_arg_is(&argv[i], "everything") ||
            (is_default && resp_arg_is(&argv[i], "default"))) {
            return true;
        }
    }
    return false;
}

void resp_write_info(struct xrun *x, uint32_t argc, const struct resp_arg *argv)
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
              (unsigned long long)((resp_now_ms(s) - s->started_ms) / 1000), raft_id(r),
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

void resp_write_client_info(struct xrun *x)
{
    struct rconn *c = x->c;
    const uint64_t now = resp_now_ms(x->s);
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

/* ==== server ================================================================================= */

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
            resp_conn_run(c);
            resp_conn_flush(c);
        }
    }
    resp_wb_issue(s);
    resp_xb_issue(s);
    resp_rb_issue(s);
    if (s->pending == NULL && s->idle_on) {
        uv_idle_stop(&s->idle);
        s->idle_on = false;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct resp_server *s = t->data;
    const uint64_t now = resp_now_ms(s);
    for (struct rconn *c = s->conns; c != NULL;) {
        struct rconn *next = c->next; /* c may close (leaves the list) */
        if (c->n_running > 0) {
            resp_conn_expire_ops(c, now);
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
    c->created_ms = c->last_ms = resp_now_ms(s);
    if (s->n_conns >= RESP_SERVER_CLIENTS_MAX) {
        c->refused = true;
        s->st.connections_rejected++;
    } else {
        s->n_conns++;
        s->st.connections_total++;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        resp_conn_close(c);
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
        resp_conn_pend(c);
        return;
    }
    resp_conn_update_reading(c);
}

static void server_free(struct resp_server *s)
{
    for (uint32_t b = 0; b < RESP_CHAIN_BUCKETS; b++) {
        while (s->chains[b] != NULL) { /* no op holds a link any more: all freed */
            struct chain *e = s->chains[b];
            s->chains[b] = e->hnext;
            CC_ASSERT(e->refs == 0);
            resp_chain_free(e);
        }
    }
    for (uint32_t i = 0; i < RESP_SCAN_CURSORS_MAX; i++) {
        free(s->cursors[i].key);
    }
    CC_ASSERT(s->rb_open == NULL || s->rb_open->ops.n == 0);
    free(s->rb_open);
    CC_ASSERT(s->wb_open == NULL);
    if (s->xb_open != NULL) { /* every op left it when its connection closed */
        CC_ASSERT(s->xb_open->ops.n == 0);
        resp_xv_free(&s->xb_open->v);
        free(s->xb_open);
    }
    resp_out_free(&s->scratch);
    free(s->db);
    free(s);
}

void resp_server_maybe_done(struct resp_server *s)
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
    resp_server_maybe_done(s);
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
        resp_conn_close(s->conns);
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
