/* serve.c -- `conclave serve`: parse flags, start a node and its HTTP API, run the loop.
 *
 * With no flags it is a single-node cluster on 127.0.0.1 with data in ./conclave-data,
 * the embedded default a newcomer runs first (DESIGN "Surfaces"). A multi-node cluster
 * lists every founding member with --member on every node (see docs/API.md).
 *
 * SIGINT/SIGTERM stop the HTTP server and the node cleanly; a second signal exits at
 * once. Sections: flags | signals | run.
 */
#include "cli/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api/api.h"
#include "node/node.h"

#define SERVE_DEFAULT_HTTP "127.0.0.1:7379"
#define SERVE_DEFAULT_PEER "127.0.0.1:7380"

static const char serve_usage[] =
    "usage: conclave serve [flags]\n"
    "  --id N                 this member's id (default 1)\n"
    "  --name NAME            this member's name (default node<ID>)\n"
    "  --data-dir DIR         WAL and snapshots (default ./conclave-data)\n"
    "  --http HOST:PORT       client API (default " SERVE_DEFAULT_HTTP ")\n"
    "  --peer HOST:PORT       Raft peer traffic (default " SERVE_DEFAULT_PEER ")\n"
    "  --member ID,NAME,PEER,HTTP   a founding member; repeat for each (include this one)\n"
    "  --tick-ms N            Raft tick (default 100)\n"
    "  --election-ticks N     election timeout in ticks (default 10)\n"
    "  --snapshot-every N     applied entries between snapshots (default 10000)\n"
    "  --test-stale-reads     TEST ONLY: serve linearizable reads without ReadIndex (unsafe)\n"
    "example (3 nodes, run each with its own --id, --data-dir, --http and --peer):\n"
    "  conclave serve --id 1 --data-dir d1 --http 127.0.0.1:7379 --peer 127.0.0.1:7380 \\\n"
    "    --member 1,n1,127.0.0.1:7380,127.0.0.1:7379 \\\n"
    "    --member 2,n2,127.0.0.1:7382,127.0.0.1:7381 \\\n"
    "    --member 3,n3,127.0.0.1:7384,127.0.0.1:7383\n";

/* ==== flags =================================================================== */

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (!s || !*s)
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != 0)
        return false;
    *out = v;
    return true;
}

static bool parse_member(const char *spec, struct node_member *m)
{
    char buf[4 * NODE_ADDR_BYTES];
    if (strlen(spec) >= sizeof(buf))
        return false;
    memcpy(buf, spec, strlen(spec) + 1); /* length checked above */
    char *fields[4];
    char *save = NULL;
    int k = 0;
    for (char *t = strtok_r(buf, ",", &save); t && k < 4; t = strtok_r(NULL, ",", &save))
        fields[k++] = t;
    uint64_t id = 0;
    if (k != 4 || !parse_u64(fields[0], &id) || id == 0 || id > UINT32_MAX ||
        strlen(fields[1]) >= NODE_NAME_BYTES || strlen(fields[2]) >= NODE_ADDR_BYTES ||
        strlen(fields[3]) >= NODE_ADDR_BYTES)
        return false;
    m->id = (uint32_t)id;
    snprintf(m->name, sizeof(m->name), "%s", fields[1]);
    snprintf(m->peer_addr, sizeof(m->peer_addr), "%s", fields[2]);
    snprintf(m->http_addr, sizeof(m->http_addr), "%s", fields[3]);
    return true;
}

/* ==== signals ================================================================== */

struct serve_state {
    uv_loop_t *loop;
    struct node *node;
    struct http_server *http;
    struct api *api;
    uv_signal_t sigint, sigterm;
    int n_signals;
};

static void on_http_stopped(void *arg)
{
    struct serve_state *s = arg;
    api_free(s->api);
    s->api = NULL;
    node_stop(s->node);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct serve_state *s = h->data;
    if (++s->n_signals > 1) {
        fprintf(stderr, "conclave: second signal, exiting now\n");
        exit(1);
    }
    fprintf(stderr, "conclave: %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    http_server_stop(s->http, on_http_stopped, s);
}

/* ==== run ======================================================================= */

int cli_serve_main(int argc, char **argv)
{
    struct node_config c;
    node_config_default(&c);
    char http_addr[NODE_ADDR_BYTES] = SERVE_DEFAULT_HTTP;
    char peer_addr[NODE_ADDR_BYTES] = SERVE_DEFAULT_PEER;
    char name[NODE_NAME_BYTES] = "";
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t num = 0;
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) {
            fputs(serve_usage, stdout);
            return 0;
        }
        if (strcmp(f, "--test-stale-reads") == 0) {
            c.test_stale_reads = true;
            fprintf(stderr, "conclave serve: --test-stale-reads: reads are NOT linearizable\n");
            continue;
        }
        if (!v) {
            fprintf(stderr, "conclave serve: %s needs a value\n\n%s", f, serve_usage);
            return 2;
        }
        i++;
        if (strcmp(f, "--id") == 0 && parse_u64(v, &num) && num > 0 && num <= UINT32_MAX) {
            c.id = (uint32_t)num;
        } else if (strcmp(f, "--name") == 0 && strlen(v) < sizeof(name)) {
            snprintf(name, sizeof(name), "%s", v);
        } else if (strcmp(f, "--data-dir") == 0 && strlen(v) < sizeof(c.data_dir)) {
            snprintf(c.data_dir, sizeof(c.data_dir), "%s", v);
        } else if (strcmp(f, "--http") == 0 && strlen(v) < sizeof(http_addr)) {
            snprintf(http_addr, sizeof(http_addr), "%s", v);
        } else if (strcmp(f, "--peer") == 0 && strlen(v) < sizeof(peer_addr)) {
            snprintf(peer_addr, sizeof(peer_addr), "%s", v);
        } else if (strcmp(f, "--member") == 0) {
            if (c.n_members >= RAFT_SERVERS_MAX || !parse_member(v, &c.members[c.n_members])) {
                fprintf(stderr, "conclave serve: bad --member '%s' (want ID,NAME,PEER,HTTP; at "
                                "most %d members)\n", v, RAFT_SERVERS_MAX);
                return 2;
            }
            c.n_members++;
        } else if (strcmp(f, "--tick-ms") == 0 && parse_u64(v, &num) && num >= 1 && num <= 10000) {
            c.tick_ms = (uint32_t)num;
        } else if (strcmp(f, "--election-ticks") == 0 && parse_u64(v, &num) && num >= 3 &&
                   num <= 1000) {
            c.election_ticks = (uint32_t)num;
        } else if (strcmp(f, "--snapshot-every") == 0 && parse_u64(v, &num)) {
            c.snapshot_every = num;
        } else {
            fprintf(stderr, "conclave serve: bad flag or value: %s %s\n\n%s", f, v, serve_usage);
            return 2;
        }
    }
    if (c.n_members == 0) { /* a single-node cluster of just us */
        c.members[0].id = c.id;
        snprintf(c.members[0].name, sizeof(c.members[0].name), "%s",
                 name[0] ? name : "node1");
        snprintf(c.members[0].peer_addr, sizeof(c.members[0].peer_addr), "%s", peer_addr);
        snprintf(c.members[0].http_addr, sizeof(c.members[0].http_addr), "%s", http_addr);
        c.n_members = 1;
    }
    struct node_member *self = NULL;
    for (uint32_t i = 0; i < c.n_members; i++)
        if (c.members[i].id == c.id)
            self = &c.members[i];
    if (!self) {
        fprintf(stderr, "conclave serve: --id %u is not among the --member entries\n", c.id);
        return 2;
    }
    if (name[0])
        snprintf(self->name, sizeof(self->name), "%s", name);
    /* explicit --http/--peer win over the member list for our own listeners */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--http") == 0)
            snprintf(self->http_addr, sizeof(self->http_addr), "%s", http_addr);
        if (strcmp(argv[i], "--peer") == 0)
            snprintf(self->peer_addr, sizeof(self->peer_addr), "%s", peer_addr);
    }

    signal(SIGPIPE, SIG_IGN);
    struct serve_state s = {.loop = uv_default_loop()};
    char msg[512] = "";
    int rv = node_start(s.loop, &c, &s.node, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "conclave serve: cannot start: %s\n", msg);
        return 1;
    }
    rv = api_start(s.loop, s.node, self->http_addr, &s.http, &s.api, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "conclave serve: cannot serve HTTP on %s: %s\n", self->http_addr, msg);
        return 1;
    }
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    fprintf(stderr,
            "conclave: node %u (%s) serving HTTP on http://%s, peers on %s, data in %s\n"
            "  try: curl -X PUT http://%s/v1/kv/hello -d world && "
            "curl http://%s/v1/kv/hello?raw=true\n",
            c.id, self->name, self->http_addr, self->peer_addr, c.data_dir, self->http_addr,
            self->http_addr);
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);
    return 0;
}
