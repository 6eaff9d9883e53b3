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

#include <jansson.h>

#include "api/api.h"
#include "api/resp_server.h"
#include "cli/client.h"
#include "node/node.h"

#define SERVE_DEFAULT_HTTP "127.0.0.1:2479"
#define SERVE_DEFAULT_PEER "127.0.0.1:2480"

static const char serve_usage[] =
    "usage: conclave serve [flags]\n"
    "  --id N                 this member's id (default 1)\n"
    "  --name NAME            this member's name (default node<ID>)\n"
    "  --data-dir DIR         WAL and snapshots (default ./conclave-data)\n"
    "  --http HOST:PORT       client API (default " SERVE_DEFAULT_HTTP ")\n"
    "  --peer HOST:PORT       Raft peer traffic (default " SERVE_DEFAULT_PEER ")\n"
    "  --resp HOST:PORT|off   Redis protocol (RESP) listener (default " RESP_SERVER_DEFAULT_ADDR ";\n"
    "                         if the default port is taken the node runs without it)\n"
    "  --initial-cluster NAME=PEER,...  the founding members, etcd style; ids are the\n"
    "                         positions in the list (1, 2, ...), this node is --name\n"
    "  --member ID,NAME,PEER,HTTP   a founding member; repeat for each (include this one)\n"
    "  --join                 start empty and wait to be added (POST /v1/cluster/members\n"
    "                         on the cluster first; list its members with --member)\n"
    "  --heartbeat-ms N       Raft tick = heartbeat interval (default 100; alias --tick-ms)\n"
    "  --election-ticks N     election timeout in ticks (default 10)\n"
    "  --election-timeout-ms N  election timeout in ms (rounded to whole ticks)\n"
    "  --log-format text|json   log lines on stderr (default text)\n"
    "  --log-level debug|info|warn|error  (default info)\n"
    "  --snapshot-every N     applied entries between snapshots (default 100000)\n"
    "  --snapshot-encode child|loop  a fork()ed child encodes and writes each snapshot, so\n"
    "                         the loop never stalls for it (default child), or the loop\n"
    "                         encodes it (needs no second copy of changed memory)\n"
    "  --follower-wal-writes inline|thread  a follower writes and syncs its WAL on the loop\n"
    "                         thread when the storage thread is idle (default inline; the\n"
    "                         ack waits for that write anyway) or always on the thread\n"
    "  --compact-retain N     keep the newest N revisions of history, compact older ones\n"
    "                         automatically (default 100000; 0 = only POST /v1/compact)\n"
    "  --test-stale-reads     TEST ONLY: serve linearizable reads without ReadIndex (unsafe)\n"
    "  --test-fsync-delay-file F   TEST ONLY: while F holds N, every fsync sleeps N ms first\n"
    "  --test-clock-offset-file F  TEST ONLY: the wall clock is shifted by the signed ms in F\n"
    "example (3 nodes; run each with its own --name, --data-dir, --http and --peer):\n"
    "  conclave serve --name n1 --data-dir d1 --http 127.0.0.1:2479 --peer 127.0.0.1:2480 \\\n"
    "    --initial-cluster n1=127.0.0.1:2480,n2=127.0.0.1:2482,n3=127.0.0.1:2484\n"
    "  (scripts/cluster.sh up does exactly this)\n";

/* ==== flags =================================================================== */

static bool parse_u64(const char *s, uint64_t *out)
{
    return client_parse_u64(s, 0, INT64_MAX, out);
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

/* --initial-cluster n1=HOST:PORT,n2=HOST:PORT: member i (1-based) gets id i. HTTP
 * addresses are not part of it: each leader publishes what it knows into the member
 * directory, and a node always knows its own. */
static bool parse_initial_cluster(const char *spec, struct node_config *c)
{
    char buf[RAFT_SERVERS_MAX * (NODE_NAME_BYTES + NODE_ADDR_BYTES + 2)];
    if (strlen(spec) >= sizeof(buf))
        return false;
    memcpy(buf, spec, strlen(spec) + 1);
    char *save = NULL;
    c->n_members = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq || eq == t || !eq[1] || c->n_members >= RAFT_SERVERS_MAX ||
            (size_t)(eq - t) >= NODE_NAME_BYTES || strlen(eq + 1) >= NODE_ADDR_BYTES)
            return false;
        struct node_member *m = &c->members[c->n_members];
        memset(m, 0, sizeof(*m));
        m->id = c->n_members + 1;
        snprintf(m->name, sizeof(m->name), "%.*s", (int)(eq - t), t);
        snprintf(m->peer_addr, sizeof(m->peer_addr), "%s", eq + 1);
        c->n_members++;
    }
    return c->n_members > 0;
}

/* ==== logging ==================================================================== */

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

struct serve_log {
    bool json;
    int min_level;
    uint32_t id;
};

/* Node and transport lines carry no level; their first word tells. */
static int line_level(const char *line)
{
    if (strncmp(line, "fatal", 5) == 0)
        return LOG_ERROR;
    if (strstr(line, "cannot ") || strstr(line, " not saved") || strstr(line, " refused"))
        return LOG_WARN;
    return LOG_INFO;
}

static void serve_log_line(void *arg, const char *line)
{
    const struct serve_log *l = arg;
    int level = line_level(line);
    if (level < l->min_level)
        return;
    if (!l->json) {
        fprintf(stderr, "conclave[%u] %s: %s\n", l->id, log_level_names[level], line);
        return;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    json_t *j = json_pack("{s:f, s:s, s:I, s:s}", "ts", (double)tv.tv_sec + tv.tv_usec / 1e6,
                          "level", log_level_names[level], "node", (json_int_t)l->id, "msg", line);
    char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (out)
        fprintf(stderr, "%s\n", out);
    free(out);
    json_decref(j);
}

/* ==== signals ================================================================== */

struct serve_state {
    uv_loop_t *loop;
    struct node *node;
    struct http_server *http;
    struct api *api;
    struct resp_server *resp; /* NULL: --resp off, or the default port was taken */
    uv_signal_t sigint, sigterm;
    int n_signals;
};

static void on_http_stopped(void *arg)
{
    struct serve_state *s = arg;
    api_free(s->api);
    s->api = NULL;
    if (s->resp) { /* cancels its node callbacks: before node_stop */
        resp_server_stop(s->resp, NULL, NULL);
        s->resp = NULL;
    }
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
    char resp_addr[NODE_ADDR_BYTES] = RESP_SERVER_DEFAULT_ADDR;
    bool resp_given = false;
    char name[NODE_NAME_BYTES] = "";
    static struct serve_log log = {.min_level = LOG_INFO};
    bool have_initial_cluster = false, have_member_flags = false, id_given = false;
    uint64_t election_ms = 0;
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
        if (strcmp(f, "--join") == 0) {
            c.join = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "conclave serve: %s needs a value\n\n%s", f, serve_usage);
            return 2;
        }
        i++;
        if (strcmp(f, "--id") == 0 && parse_u64(v, &num) && num > 0 && num <= UINT32_MAX) {
            c.id = (uint32_t)num;
            id_given = true;
        } else if (strcmp(f, "--initial-cluster") == 0) {
            if (have_member_flags || !parse_initial_cluster(v, &c)) {
                fprintf(stderr, "conclave serve: bad --initial-cluster '%s' (want "
                                "NAME=HOST:PORT,... with at most %d members, and not together "
                                "with --member)\n", v, RAFT_SERVERS_MAX);
                return 2;
            }
            have_initial_cluster = true;
        } else if (strcmp(f, "--name") == 0 && strlen(v) < sizeof(name)) {
            snprintf(name, sizeof(name), "%s", v);
        } else if (strcmp(f, "--data-dir") == 0 && strlen(v) < sizeof(c.data_dir)) {
            snprintf(c.data_dir, sizeof(c.data_dir), "%s", v);
        } else if (strcmp(f, "--http") == 0 && strlen(v) < sizeof(http_addr)) {
            snprintf(http_addr, sizeof(http_addr), "%s", v);
        } else if (strcmp(f, "--peer") == 0 && strlen(v) < sizeof(peer_addr)) {
            snprintf(peer_addr, sizeof(peer_addr), "%s", v);
        } else if (strcmp(f, "--resp") == 0 && strlen(v) < sizeof(resp_addr)) {
            snprintf(resp_addr, sizeof(resp_addr), "%s", v);
            resp_given = true;
        } else if (strcmp(f, "--member") == 0) {
            have_member_flags = true;
            if (have_initial_cluster || c.n_members >= RAFT_SERVERS_MAX ||
                !parse_member(v, &c.members[c.n_members])) {
                fprintf(stderr, "conclave serve: bad --member '%s' (want ID,NAME,PEER,HTTP; at "
                                "most %d members)\n", v, RAFT_SERVERS_MAX);
                return 2;
            }
            c.n_members++;
        } else if ((strcmp(f, "--tick-ms") == 0 || strcmp(f, "--heartbeat-ms") == 0) &&
                   parse_u64(v, &num) && num >= 1 && num <= 10000) {
            c.tick_ms = (uint32_t)num;
        } else if (strcmp(f, "--election-timeout-ms") == 0 && parse_u64(v, &num) && num >= 1 &&
                   num <= 600000) {
            election_ms = num;
        } else if (strcmp(f, "--log-format") == 0 &&
                   (strcmp(v, "text") == 0 || strcmp(v, "json") == 0)) {
            log.json = strcmp(v, "json") == 0;
        } else if (strcmp(f, "--log-level") == 0 && (strcmp(v, "debug") == 0 ||
                   strcmp(v, "info") == 0 || strcmp(v, "warn") == 0 || strcmp(v, "error") == 0)) {
            for (int k = 0; k < 4; k++)
                if (strcmp(v, log_level_names[k]) == 0)
                    log.min_level = k;
        } else if (strcmp(f, "--election-ticks") == 0 && parse_u64(v, &num) && num >= 3 &&
                   num <= 1000) {
            c.election_ticks = (uint32_t)num;
        } else if (strcmp(f, "--snapshot-every") == 0 && parse_u64(v, &num)) {
            c.snapshot_every = num;
        } else if (strcmp(f, "--follower-wal-writes") == 0 &&
                   (strcmp(v, "inline") == 0 || strcmp(v, "thread") == 0)) {
            c.wal_inline_when_following = strcmp(v, "inline") == 0;
        } else if (strcmp(f, "--snapshot-encode") == 0 &&
                   (strcmp(v, "child") == 0 || strcmp(v, "loop") == 0)) {
            c.snapshot_in_child = strcmp(v, "child") == 0;
        } else if (strcmp(f, "--compact-retain") == 0 && parse_u64(v, &num) &&
                   num <= INT64_MAX / 2) {
            c.compact_retain_revisions = num;
        } else if (strcmp(f, "--test-fsync-delay-file") == 0 ||
                   strcmp(f, "--test-clock-offset-file") == 0) {
            /* TEST ONLY (tests/chaos): src/base/env_posix.c reads the variable at first use */
            const bool fsync = strcmp(f, "--test-fsync-delay-file") == 0;
            setenv(fsync ? "CONCLAVE_TEST_FSYNC_DELAY_FILE" : "CONCLAVE_TEST_CLOCK_OFFSET_FILE",
                   v, 1);
            fprintf(stderr, "conclave serve: %s: TEST ONLY: %s the number of ms in %s\n", f,
                    fsync ? "every fsync first sleeps" : "the wall clock is shifted by", v);
        } else {
            fprintf(stderr, "conclave serve: bad flag or value: %s %s\n\n%s", f, v, serve_usage);
            return 2;
        }
    }
    if (election_ms > 0) {
        uint64_t ticks = (election_ms + c.tick_ms / 2) / c.tick_ms;
        if (ticks < 3 || ticks > 1000) {
            fprintf(stderr, "conclave serve: --election-timeout-ms %llu is %llu ticks of %u ms; "
                            "it must be 3-1000 ticks\n", (unsigned long long)election_ms,
                    (unsigned long long)ticks, c.tick_ms);
            return 2;
        }
        c.election_ticks = (uint32_t)ticks;
    }
    if (have_initial_cluster && !id_given) { /* our id is our position in the list */
        c.id = 0;
        for (uint32_t i = 0; i < c.n_members; i++)
            if (name[0] && strcmp(c.members[i].name, name) == 0)
                c.id = c.members[i].id;
        if (c.id == 0) {
            fprintf(stderr, "conclave serve: --name '%s' is not in --initial-cluster\n", name);
            return 2;
        }
    }
    if (c.join && c.n_members > 0) { /* a joining node lists the existing members */
        bool listed = false;
        for (uint32_t i = 0; i < c.n_members; i++)
            listed = listed || c.members[i].id == c.id;
        if (!listed && c.n_members < RAFT_SERVERS_MAX) {
            struct node_member *m = &c.members[c.n_members++];
            memset(m, 0, sizeof(*m));
            m->id = c.id;
            snprintf(m->name, sizeof(m->name), "%s", name[0] ? name : "joiner");
            snprintf(m->peer_addr, sizeof(m->peer_addr), "%s", peer_addr);
            snprintf(m->http_addr, sizeof(m->http_addr), "%s", http_addr);
        }
    }
    if (c.join && c.n_members < 2) {
        fprintf(stderr, "conclave serve: --join needs the existing members (--member or "
                        "--initial-cluster) and an --id given by POST /v1/cluster/members\n");
        return 2;
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
    /* explicit --http/--peer win over the member list for our own listeners; with
     * --initial-cluster (no HTTP addresses) our own HTTP address is --http */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--http") == 0 || !self->http_addr[0])
            snprintf(self->http_addr, sizeof(self->http_addr), "%s", http_addr);
        if (strcmp(argv[i], "--peer") == 0)
            snprintf(self->peer_addr, sizeof(self->peer_addr), "%s", peer_addr);
    }
    log.id = c.id;
    c.log_cb = serve_log_line;
    c.log_arg = &log;

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
    if (strcmp(resp_addr, "off") != 0) {
        rv = resp_server_start(s.loop, s.node, resp_addr, &s.resp, msg, sizeof(msg));
        if (rv != 0 && resp_given) {
            fprintf(stderr, "conclave serve: cannot serve RESP on %s: %s\n", resp_addr, msg);
            return 1;
        }
        if (rv != 0)
            fprintf(stderr, "conclave serve: warning: no RESP listener (%s); pass --resp "
                            "HOST:PORT or --resp off\n", msg);
        else
            fprintf(stderr, "conclave: node %u serving RESP (redis-cli -p %d) on %s\n", c.id,
                    resp_server_bound_port(s.resp), resp_addr);
        if (rv == 0)
            api_set_resp(s.api, s.resp);
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
