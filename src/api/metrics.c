/* metrics.c -- GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * What: Raft (term, leadership, commit/applied, leader changes), the node's counters,
 * the KV revision, HTTP requests by path class and status class with a latency
 * histogram per path class (fed by the server's access-log hook, so every answered
 * request counts, errors included), the WAL fsync latency histogram (timed on the
 * storage thread), per peer the send-queue depth, drops and connection state, and the
 * RESP listener's counters (resp_server.h) when there is one.
 *
 * Path classes keep the label set small and fixed: a key never becomes a label.
 * Sections: path classes | text buffer | exposition.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/resp_server.h"

/* ==== path classes ========================================================== */

static const char *const path_class_names[API_PATH_CLASSES] = {
    "/v1/kv",    "/v1/txn",   "/v1/compact",  "/v1/cluster", "/metrics",
    "health",    "other",     "/v1/watch",    "/v1/lock",    "/v1/lease",
    "/v1/election", "/v1/id", "/v3/lease"};

static bool starts(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

static unsigned path_class(const char *p, size_t n)
{
    if (starts(p, n, "/v1/kv/") || starts(p, n, "/v3/kv/"))
        return 0;
    if (starts(p, n, "/v1/txn"))
        return 1;
    if (starts(p, n, "/v1/compact"))
        return 2;
    if (starts(p, n, "/v1/cluster"))
        return 3;
    if (starts(p, n, "/metrics"))
        return 4;
    if (starts(p, n, "/healthz") || starts(p, n, "/readyz"))
        return 5;
    if (starts(p, n, "/v1/watch"))
        return 7;
    if (starts(p, n, "/v1/lock") || starts(p, n, "/v3/lock/"))
        return 8;
    if (starts(p, n, "/v1/lease"))
        return 9;
    if (starts(p, n, "/v1/election"))
        return 10;
    if (starts(p, n, "/v1/id/") || starts(p, n, "/v1/shorturl") || starts(p, n, "/s/"))
        return 11;
    if (starts(p, n, "/v3/lease/") || starts(p, n, "/v3/kv/lease"))
        return 12;
    return 6;
}

void api_metrics_observe(void *arg, const struct http_access *e)
{
    struct api *a = arg;
    unsigned c = path_class(e->path_raw, e->path_raw_len);
    unsigned code = e->status >= 100 && e->status < 600 ? (unsigned)e->status / 100 - 1 : 4;
    a->http_by_code[c][code]++;
    hist_observe(&a->http_latency[c], e->duration_us);
}

/* ==== text buffer =========================================================== */

struct text {
    char *p;
    size_t len, cap;
    bool oom;
};

static void put(struct text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t need = n < 0 ? 0 : t->len + (size_t)n + 1;
    if (n >= 0 && need > t->cap) {
        size_t cap = t->cap ? t->cap : 8192;
        while (cap < need)
            cap *= 2;
        char *np = realloc(t->p, cap);
        if (np) {
            t->p = np;
            t->cap = cap;
        }
    }
    if (n < 0 || need > t->cap)
        t->oom = true;
    else
        t->len += (size_t)vsnprintf(t->p + t->len, t->cap - t->len, fmt, again);
    va_end(again);
}

static void put_hist(struct text *t, const char *name, const char *labels, const struct hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        cum += h->counts[i];
        put(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
            (double)hist_bounds_us[i] / 1e6, (unsigned long long)cum);
    }
    cum += h->counts[HIST_BUCKETS];
    put(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    put(t, "%s_sum%s%s%s %g\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (double)h->sum_us / 1e6);
    put(t, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (unsigned long long)h->n);
}

/* ==== exposition ============================================================ */

static void gauge(struct text *t, const char *name, const char *help, const char *type,
                  unsigned long long v)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

static void put_resp(struct text *t, const struct resp_server *srv)
{
    struct resp_server_stats rs;
    resp_server_get_stats(srv, &rs);
    gauge(t, "conclave_resp_commands_total", "RESP commands answered.", "counter",
          rs.commands_total);
    gauge(t, "conclave_resp_errors_total", "RESP error replies.", "counter", rs.errors_total);
    gauge(t, "conclave_resp_connections_total", "RESP connections accepted.", "counter",
          rs.connections_total);
    gauge(t, "conclave_resp_connections_rejected_total",
          "RESP connections refused at the client limit.", "counter", rs.connections_rejected);
    gauge(t, "conclave_resp_protocol_errors_total",
          "RESP connections closed for a malformed request.", "counter", rs.protocol_errors);
    gauge(t, "conclave_resp_output_overflows_total",
          "RESP clients cut off at the output buffer limit.", "counter", rs.output_overflows);
    gauge(t, "conclave_resp_rmw_retries_total",
          "RESP read-modify-write attempts lost to a conflict and retried.", "counter",
          rs.rmw_retries);
    gauge(t, "conclave_resp_proposals_total", "Raft entries proposed for RESP commands.",
          "counter", rs.proposals);
    gauge(t, "conclave_resp_reads_total", "ReadIndex rounds asked for by RESP reads.",
          "counter", rs.reads);
    gauge(t, "conclave_resp_clients", "RESP clients connected.", "gauge",
          rs.clients_connected);
}

void api_metrics(struct api *a, struct http_req *req)
{
    struct raft *r = node_raft(a->node);
    struct node_stats s;
    node_get_stats(a->node, &s);
    struct storage_stats st;
    node_storage_stats(a->node, &st);
    struct text t = {0};
    gauge(&t, "conclave_raft_term", "Current Raft term.", "gauge", raft_term(r));
    gauge(&t, "conclave_raft_is_leader", "1 if this node is the leader.", "gauge",
          raft_role(r) == RAFT_LEADER);
    gauge(&t, "conclave_raft_commit_index", "Highest log index known committed.", "gauge",
          raft_commit(r));
    gauge(&t, "conclave_raft_applied_index", "Highest log index applied here.", "gauge",
          raft_applied(r));
    gauge(&t, "conclave_leader_changes_total", "Times the known leader changed.", "counter",
          s.leader_changes);
    gauge(&t, "conclave_proposals_total", "Commands proposed on this node.", "counter",
          s.proposals);
    gauge(&t, "conclave_reads_total", "Linearizable reads started.", "counter", s.reads);
    gauge(&t, "conclave_loop_stalls_total",
          "Ticks 4 or more tick intervals apart: the event loop was held up (each is logged "
          "with its length).", "counter", s.loop_stalls);
    gauge(&t, "conclave_lazy_proposals_total",
          "Entries nobody waits on soon (lock queue joins) proposed with the next proposal, "
          "or alone after 2 ms.", "counter", s.lazy_proposals);
    gauge(&t, "conclave_lazy_proposals_alone_total",
          "Lazy entries that found no proposal to share a sync with within 2 ms.", "counter",
          s.lazy_alone);
    gauge(&t, "conclave_storage_batches_total", "WAL batches submitted.", "counter",
          s.storage_batches);
    gauge(&t, "conclave_storage_syncs_total", "fdatasyncs that sealed WAL batches.", "counter",
          st.n_syncs);
    gauge(&t, "conclave_storage_full", "1 while the WAL waits for disk space (ENOSPC).",
          "gauge", node_storage_full(a->node));
    gauge(&t, "conclave_wal_inline_backoffs_total",
          "Follower WAL writes on the loop thread slower than 20 ms (writes went back to the "
          "storage thread for 10 s).", "counter", s.inline_backoffs);
    gauge(&t, "conclave_snapshots_taken_total", "State machine snapshots written.", "counter",
          s.snapshots_taken);
    gauge(&t, "conclave_snapshots_installed_total", "Snapshots received from a leader.",
          "counter", s.snapshots_installed);
    gauge(&t, "conclave_auto_compactions_total", "Compactions proposed by retention.",
          "counter", a->n_auto_compactions);
    put(&t, "# HELP conclave_kv_revision Current KV store revision.\n"
            "# TYPE conclave_kv_revision gauge\nconclave_kv_revision %lld\n",
        (long long)kv_revision(node_kv(a->node)));

    put(&t, "# HELP conclave_wal_fsync_seconds WAL fdatasync latency.\n"
            "# TYPE conclave_wal_fsync_seconds histogram\n");
    put_hist(&t, "conclave_wal_fsync_seconds", "", &st.sync_us);

    put(&t, "# HELP conclave_http_requests_total HTTP requests answered, by path class and "
            "status class.\n# TYPE conclave_http_requests_total counter\n");
    for (unsigned c = 0; c < API_PATH_CLASSES; c++)
        for (unsigned k = 0; k < 5; k++)
            if (a->http_by_code[c][k])
                put(&t, "conclave_http_requests_total{path=\"%s\",code=\"%uxx\"} %llu\n",
                    path_class_names[c], k + 1, (unsigned long long)a->http_by_code[c][k]);
    put(&t, "# HELP conclave_http_request_seconds HTTP request latency (last request byte to "
            "answer), by path class.\n# TYPE conclave_http_request_seconds histogram\n");
    for (unsigned c = 0; c < API_PATH_CLASSES; c++) {
        if (a->http_latency[c].n == 0)
            continue;
        char labels[64];
        snprintf(labels, sizeof(labels), "path=\"%s\"", path_class_names[c]);
        put_hist(&t, "conclave_http_request_seconds", labels, &a->http_latency[c]);
    }

    put(&t, "# HELP conclave_peer_queue_bytes Bytes queued to a peer (send queue depth).\n"
            "# TYPE conclave_peer_queue_bytes gauge\n");
    const struct raft_config *c = raft_config(r);
    for (uint32_t i = 0; i < c->n_servers; i++) {
        struct transport_peer_stats ps;
        if (c->servers[i].id == raft_id(r) || node_peer_stats(a->node, c->servers[i].id, &ps))
            continue;
        put(&t, "conclave_peer_queue_bytes{peer=\"%u\"} %llu\n", c->servers[i].id,
            (unsigned long long)ps.queue_bytes);
        put(&t, "conclave_peer_queue_frames{peer=\"%u\"} %u\n", c->servers[i].id,
            ps.queue_frames);
        put(&t, "conclave_peer_frames_dropped_total{peer=\"%u\"} %llu\n", c->servers[i].id,
            (unsigned long long)ps.frames_dropped);
        put(&t, "conclave_peer_connected{peer=\"%u\"} %d\n", c->servers[i].id, ps.connected);
    }
    if (a->resp)
        put_resp(&t, a->resp);
    if (t.oom) {
        free(t.p);
        http_respond_error(req, 503, "no_memory", "out of memory rendering metrics");
        return;
    }
    http_respond(req, 200, "text/plain; version=0.0.4", t.p, t.len);
    free(t.p);
}
