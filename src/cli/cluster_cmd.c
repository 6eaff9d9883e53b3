/* cluster_cmd.c -- `conclave cluster`: status, members and leadership transfer.
 *
 *   conclave cluster status            GET  /v1/cluster/members from the endpoint, then
 *                                      GET  /v1/cluster/status from every member
 *   conclave cluster members           GET  /v1/cluster/members
 *   conclave cluster add NAME --peer HOST:PORT [--http HOST:PORT] [--learner] [--id N]
 *                                      POST /v1/cluster/members
 *   conclave cluster promote NAME      POST /v1/cluster/members/NAME/promote
 *   conclave cluster remove NAME       DELETE /v1/cluster/members/NAME
 *   conclave cluster transfer [ID]     POST /v1/cluster/leader/transfer, then wait (at
 *                                      most CLUSTER_TRANSFER_WAIT_MS) until the
 *                                      endpoint sees the new leader
 *
 * `status` for people is one aligned row per member, each from that member's own
 * status, so split views (two leaders in different terms, a lagging applied index) show;
 * a member that does not answer within CLUSTER_MEMBER_TIMEOUT_MS is a row saying so,
 * not a failure. With `-o json` every verb prints the endpoint's reply verbatim (for
 * status: the endpoint's own status object). Member counts are bounded by
 * RAFT_SERVERS_MAX, so the table is fixed-size.
 *
 * Sections: limits | usage | table | verbs | dispatch.
 */
#include "cli/cluster_cmd.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/assert.h"
#include "cli/client.h"
#include "raft/raft.h"

/* ---- limits ------------------------------------------------------------------------ */

/* Per member in `status`: one dead member must not stall the table for the whole
 * deadline. */
#define CLUSTER_MEMBER_TIMEOUT_MS 2000u
/* Transfer confirmation: a few election timeouts of the default 100 ms x 10 ticks. */
#define CLUSTER_TRANSFER_WAIT_MS 5000u
#define CLUSTER_POLL_MS          100u                   /* between status polls while waiting */
#define CLUSTER_COLS             8                      /* status table columns */
#define CLUSTER_CELL_BYTES       CLIENT_ENDPOINT_BYTES  /* widest cell: an address */
#define CLUSTER_ROWS_MAX         (RAFT_SERVERS_MAX + 1) /* header + one per member */

_Static_assert(CLUSTER_POLL_MS < CLUSTER_TRANSFER_WAIT_MS, "at least one poll");

/* ---- usage ------------------------------------------------------------------------- */

static const char cluster_usage_text[] =
    "usage: conclave cluster <verb> [args] [global flags]\n"
    "\n"
    "verbs:\n"
    "  status           one row per member: name, role, leader, term, commit, applied\n"
    "  members          the members: id, name, role, peer and HTTP addresses\n"
    "  add NAME --peer HOST:PORT [--http HOST:PORT] [--learner] [--id N]\n"
    "                   add a member (a voter unless --learner); then start it with\n"
    "                   `conclave serve --join --id <printed id> ...`\n"
    "  promote NAME     make a learner a voter (refused until it has caught up)\n"
    "  remove NAME      remove a member (the leader too: the others elect a new one)\n"
    "  transfer [ID]    hand leadership to member ID (default: the most up-to-date\n"
    "                   voter) and wait until it leads; --no-wait returns at once\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage, 3 cannot connect.\n"
    "See docs/cli.md.\n";

static int cluster_usage_error(const char *verb, const char *msg, const char *arg)
{
    fprintf(stderr, "conclave cluster %s: ", verb);
    fprintf(stderr, msg, arg);
    fprintf(stderr, "\n\n%s", cluster_usage_text);
    return CLIENT_EXIT_USAGE;
}

/* Parses a 2xx reply as a JSON object. On failure prints why and returns NULL. */
static json_t *cluster_reply_json(const char *what, const struct client_response *resp)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
    if (j && json_is_object(j))
        return j;
    json_decref(j);
    fprintf(stderr, "%s: the server's reply is not a JSON object (%s): %.200s\n", what, jerr.text,
            (const char *)resp->body);
    return NULL;
}

/* ---- table ------------------------------------------------------------------------- */

struct cluster_table {
    char cells[CLUSTER_ROWS_MAX][CLUSTER_COLS][CLUSTER_CELL_BYTES];
    int n_rows;
    int n_cols;
};

static void cluster_cell(struct cluster_table *t, int row, int col, const char *text)
{
    CC_ASSERT(row >= 0 && row < CLUSTER_ROWS_MAX);
    CC_ASSERT(col >= 0 && col < t->n_cols);
    snprintf(t->cells[row][col], CLUSTER_CELL_BYTES, "%s", text);
}

/* A JSON value as a cell: strings as they are, integers in decimal, null as "-". */
static void cluster_cell_json(struct cluster_table *t, int row, int col, json_t *v)
{
    char num[24];
    if (json_is_string(v)) {
        cluster_cell(t, row, col, json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" PRId64, (int64_t)json_integer_value(v));
        cluster_cell(t, row, col, num);
    } else {
        cluster_cell(t, row, col, "-");
    }
}

static void cluster_table_print(const struct cluster_table *t)
{
    size_t width[CLUSTER_COLS] = {0};
    for (int r = 0; r < t->n_rows; r++)
        for (int c = 0; c < t->n_cols; c++) {
            size_t n = strlen(t->cells[r][c]);
            width[c] = n > width[c] ? n : width[c];
        }
    for (int r = 0; r < t->n_rows; r++) {
        for (int c = 0; c < t->n_cols; c++) {
            if (c + 1 < t->n_cols)
                printf("%-*s  ", (int)width[c], t->cells[r][c]);
            else
                printf("%s\n", t->cells[r][c]); /* no trailing blanks */
        }
    }
}

/* ---- verbs ------------------------------------------------------------------------- */

/* GETs a path from the endpoint; a 2xx reply's JSON object, or NULL and *rv set (the
 * failure is printed). With -o json the body is printed and *json_printed set. */
static json_t *cluster_get(const struct client_cli *cli, const char *what, const char *target,
                           bool print_json, int *rv)
{
    struct client_request req = {.method = "GET", .target = target};
    struct client_response resp;
    *rv = client_cli_call(cli, what, &req, &resp);
    if (*rv != CLIENT_EXIT_OK)
        return NULL;
    if (print_json) {
        client_cli_print_body(&resp);
        client_response_free(&resp);
        return NULL;
    }
    json_t *j = cluster_reply_json(what, &resp);
    client_response_free(&resp);
    if (!j)
        *rv = CLIENT_EXIT_FAIL;
    return j;
}

static int cluster_cmd_status(const struct client_cli *cli)
{
    const char *what = "conclave cluster status";
    int rv = 0;
    if (cli->json) {
        cluster_get(cli, what, "/v1/cluster/status", true, &rv);
        return rv;
    }
    json_t *m = cluster_get(cli, what, "/v1/cluster/members", false, &rv);
    if (!m)
        return rv;
    static struct cluster_table t; /* ~20 KiB: off the stack */
    memset(&t, 0, sizeof(t));
    t.n_cols = CLUSTER_COLS;
    const char *head[CLUSTER_COLS] = {"NAME",   "ID",   "ENDPOINT", "ROLE",
                                      "LEADER", "TERM", "COMMIT",   "APPLIED"};
    for (int c = 0; c < CLUSTER_COLS; c++)
        cluster_cell(&t, 0, c, head[c]);
    t.n_rows = 1;
    char notes[RAFT_SERVERS_MAX][CLIENT_ERRMSG_BYTES + CLUSTER_CELL_BYTES];
    int n_notes = 0;
    json_t *members = json_object_get(m, "members");
    for (size_t i = 0; i < json_array_size(members); i++) {
        json_t *mem = json_array_get(members, i);
        if (t.n_rows >= CLUSTER_ROWS_MAX)
            break; /* more members than Raft allows: not a server we understand */
        int r = t.n_rows++;
        const char *addr = json_string_value(json_object_get(mem, "http_addr"));
        cluster_cell_json(&t, r, 0, json_object_get(mem, "name"));
        cluster_cell_json(&t, r, 1, json_object_get(mem, "id"));
        cluster_cell(&t, r, 2, addr && addr[0] ? addr : "-");
        for (int c = 3; c < CLUSTER_COLS; c++)
            cluster_cell(&t, r, c, "-");
        char msg[CLIENT_ERRMSG_BYTES] = "no HTTP address known";
        struct client_response resp = {0};
        int st = CLIENT_EINVAL;
        if (addr && addr[0]) {
            struct client_opts o = {.timeout_ms = cli->timeout_ms < CLUSTER_MEMBER_TIMEOUT_MS
                                                      ? cli->timeout_ms
                                                      : CLUSTER_MEMBER_TIMEOUT_MS};
            struct client_request req = {.method = "GET", .target = "/v1/cluster/status"};
            st = client_do(addr, &o, &req, &resp, msg, sizeof(msg));
            if (st == 0 && resp.status / 100 != 2)
                client_error_line(&resp, msg, sizeof(msg));
        }
        bool answered = st == 0 && resp.status / 100 == 2;
        json_t *s = answered ? json_loadb((const char *)resp.body, resp.body_len, 0, NULL) : NULL;
        client_response_free(&resp);
        if (!json_is_object(s)) {
            if (answered)
                snprintf(msg, sizeof(msg), "the status reply is not a JSON object");
            cluster_cell(&t, r, 3, st == 0 ? "error" : "unreachable");
            snprintf(notes[n_notes++], sizeof(notes[0]), "%s (%s): %s", t.cells[r][0],
                     t.cells[r][2], msg);
            json_decref(s);
            continue;
        }
        cluster_cell_json(&t, r, 3, json_object_get(s, "role"));
        cluster_cell_json(&t, r, 4, json_object_get(s, "leader"));
        cluster_cell_json(&t, r, 5, json_object_get(s, "term"));
        cluster_cell_json(&t, r, 6, json_object_get(s, "commit_index"));
        cluster_cell_json(&t, r, 7, json_object_get(s, "applied_index"));
        json_decref(s);
    }
    json_decref(m);
    cluster_table_print(&t);
    fflush(stdout);
    for (int k = 0; k < n_notes; k++)
        fprintf(stderr, "%s: %s\n", what, notes[k]);
    return CLIENT_EXIT_OK;
}

static int cluster_cmd_members(const struct client_cli *cli)
{
    const char *what = "conclave cluster members";
    int rv = 0;
    json_t *m = cluster_get(cli, what, "/v1/cluster/members", cli->json, &rv);
    if (!m)
        return rv;
    static struct cluster_table t;
    memset(&t, 0, sizeof(t));
    t.n_cols = 5;
    const char *head[] = {"ID", "NAME", "ROLE", "PEER", "HTTP"};
    const char *keys[] = {"id", "name", "role", "peer_addr", "http_addr"};
    for (int c = 0; c < t.n_cols; c++)
        cluster_cell(&t, 0, c, head[c]);
    t.n_rows = 1;
    json_t *members = json_object_get(m, "members");
    for (size_t i = 0; i < json_array_size(members); i++) {
        json_t *mem = json_array_get(members, i);
        if (t.n_rows >= CLUSTER_ROWS_MAX)
            break;
        for (int c = 0; c < t.n_cols; c++)
            cluster_cell_json(&t, t.n_rows, c, json_object_get(mem, keys[c]));
        t.n_rows++;
    }
    json_decref(m);
    cluster_table_print(&t);
    return CLIENT_EXIT_OK;
}

static void cluster_sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int cluster_cmd_transfer(const struct client_cli *cli, uint32_t to, bool wait)
{
    const char *what = "conclave cluster transfer";
    char body[32] = "";
    if (to != 0)
        snprintf(body, sizeof(body), "{\"to\":%" PRIu32 "}", to);
    struct client_request req = {.method = "POST",
                                 .target = "/v1/cluster/leader/transfer",
                                 .content_type = to ? "application/json" : NULL,
                                 .body = body,
                                 .body_len = strlen(body)};
    struct client_response resp;
    int rv = client_cli_call(cli, what, &req, &resp);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    int64_t target = (int64_t)json_integer_value(json_object_get(j, "transferring_to"));
    json_decref(j);
    if (cli->json)
        client_cli_print_body(&resp);
    client_response_free(&resp);
    if (!wait || target <= 0) {
        if (!cli->json)
            printf("OK transferring leadership to %" PRId64 "\n", target);
        return CLIENT_EXIT_OK;
    }
    /* The 202 only says the leader started handing over (Raft thesis §3.10): the target
     * still has to win an election. Watch the endpoint until it names the new leader. */
    uint32_t waited_ms = 0;
    for (; waited_ms < CLUSTER_TRANSFER_WAIT_MS; waited_ms += CLUSTER_POLL_MS) {
        cluster_sleep_ms(CLUSTER_POLL_MS);
        struct client_opts o = {.timeout_ms = CLUSTER_MEMBER_TIMEOUT_MS};
        struct client_request sreq = {.method = "GET", .target = "/v1/cluster/status"};
        struct client_response sresp;
        if (client_do(cli->endpoint, &o, &sreq, &sresp, NULL, 0) != 0)
            continue; /* the endpoint may be busy electing; try again */
        json_t *s = sresp.status == 200
                        ? json_loadb((const char *)sresp.body, sresp.body_len, 0, NULL)
                        : NULL;
        client_response_free(&sresp);
        if (json_integer_value(json_object_get(s, "leader_id")) == target) {
            if (!cli->json) {
                const char *name = json_string_value(json_object_get(s, "leader"));
                printf("OK leader is now %s (id %" PRId64 "), term %" PRId64 "\n",
                       name ? name : "?", target,
                       (int64_t)json_integer_value(json_object_get(s, "term")));
            }
            json_decref(s);
            return CLIENT_EXIT_OK;
        }
        json_decref(s);
    }
    fprintf(stderr,
            "%s: asked member %" PRId64 " to take over, but %s does not see it "
            "leading after %u ms; check `conclave cluster status`\n",
            what, target, cli->endpoint, CLUSTER_TRANSFER_WAIT_MS);
    return CLIENT_EXIT_FAIL;
}

static const char *json_str_or(json_t *j, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(j, key));
    return v ? v : dflt;
}

/* add / promote / remove: one request, then one line (or the JSON reply). */
static int cluster_cmd_change(const struct client_cli *cli, const char *what, const char *method,
                              const char *target, const char *body)
{
    struct client_request req = {.method = method,
                                 .target = target,
                                 .content_type = body ? "application/json" : NULL,
                                 .body = body,
                                 .body_len = body ? strlen(body) : 0};
    struct client_response resp;
    int rv = client_cli_call(cli, what, &req, &resp);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json) {
        client_cli_print_body(&resp);
    } else {
        json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        printf("OK %s %s (id %" PRId64 ", role %s, peer %s, http %s)\n", what + 17,
               json_str_or(j, "name", "?"), (int64_t)json_integer_value(json_object_get(j, "id")),
               json_str_or(j, "role", "?"), json_str_or(j, "peer_addr", "?"),
               json_str_or(j, "http_addr", ""));
        json_decref(j);
    }
    client_response_free(&resp);
    return CLIENT_EXIT_OK;
}

/* `add NAME --peer A [--http A] [--learner] [--id N]`: argv from the verb on. */
static int cluster_cmd_add(const struct client_cli *cli, int argc, char **argv)
{
    const char *name = NULL, *peer = NULL, *http = "";
    bool learner = false;
    unsigned long long id = 0;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--peer") == 0 && v) {
            peer = v;
            i++;
        } else if (strcmp(argv[i], "--http") == 0 && v) {
            http = v;
            i++;
        } else if (strcmp(argv[i], "--id") == 0 && v) {
            char *end = NULL;
            id = strtoull(v, &end, 10);
            if (v[0] < '0' || v[0] > '9' || *end || id == 0 || id > UINT32_MAX)
                return cluster_usage_error("add", "--id must be 1..4294967295, not '%s'", v);
            i++;
        } else if (strcmp(argv[i], "--learner") == 0) {
            learner = true;
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            return cluster_usage_error("add", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!name || !peer)
        return cluster_usage_error("add", "%s", "needs NAME and --peer HOST:PORT");
    json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "peer_addr", peer, "http_addr",
                          http, "role", learner ? "learner" : "voter");
    if (b && id)
        json_object_set_new(b, "id", json_integer((json_int_t)id));
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body) {
        fprintf(stderr, "conclave cluster add: out of memory\n");
        return CLIENT_EXIT_FAIL;
    }
    int rv = cluster_cmd_change(cli, "conclave cluster add", "POST", "/v1/cluster/members", body);
    free(body);
    return rv;
}

static int cluster_cmd_by_name(const struct client_cli *cli, const char *verb, const char *name)
{
    char esc[3 * 64 + 1];
    char target[sizeof(esc) + 64];
    if (strlen(name) > 63)
        return cluster_usage_error(verb, "member names are at most 63 characters: '%s'", name);
    client_escape(name, strlen(name), false, esc, sizeof(esc));
    bool promote = strcmp(verb, "promote") == 0;
    snprintf(target, sizeof(target), "/v1/cluster/members/%s%s", esc, promote ? "/promote" : "");
    return cluster_cmd_change(cli, promote ? "conclave cluster promote" : "conclave cluster remove",
                              promote ? "POST" : "DELETE", target, NULL);
}

/* ---- dispatch ---------------------------------------------------------------------- */

int cli_cluster_main(int argc, char **argv)
{
    struct client_cli cli;
    char err[CLIENT_ERRMSG_BYTES];
    if (client_cli_init(&cli, "conclave cluster", &argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "conclave cluster: %s\n\n%s", err, cluster_usage_text);
        return CLIENT_EXIT_USAGE;
    }
    if (argc < 2) {
        fputs(cluster_usage_text, stderr);
        return CLIENT_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "add") == 0)
        return cluster_cmd_add(&cli, argc, argv);
    bool wait = true;
    const char *pos = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(cluster_usage_text, stdout);
            return CLIENT_EXIT_OK;
        } else if (strcmp(argv[i], "--no-wait") == 0 && strcmp(verb, "transfer") == 0) {
            wait = false;
        } else if (strcmp(argv[i], "--") != 0 && !pos && argv[i][0] != '-') {
            pos = argv[i];
        } else if (strcmp(argv[i], "--") != 0) {
            return cluster_usage_error(verb, "unexpected argument '%s'", argv[i]);
        }
    }
    if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "help") == 0) {
        fputs(cluster_usage_text, stdout);
        return CLIENT_EXIT_OK;
    }
    if (strcmp(verb, "transfer") == 0) {
        char *end = NULL;
        unsigned long long id = pos ? strtoull(pos, &end, 10) : 0;
        if (pos && (pos[0] < '0' || pos[0] > '9' || *end || id == 0 || id > UINT32_MAX))
            return cluster_usage_error(verb, "ID must be a member id (1..4294967295), not '%s'",
                                       pos);
        return cluster_cmd_transfer(&cli, (uint32_t)id, wait);
    }
    if (strcmp(verb, "promote") == 0 || strcmp(verb, "remove") == 0) {
        if (!pos)
            return cluster_usage_error(verb, "%s", "needs the member's NAME");
        return cluster_cmd_by_name(&cli, verb, pos);
    }
    if (pos)
        return cluster_usage_error(verb, "unexpected argument '%s'", pos);
    if (strcmp(verb, "status") == 0)
        return cluster_cmd_status(&cli);
    if (strcmp(verb, "members") == 0)
        return cluster_cmd_members(&cli);
    fprintf(stderr, "conclave cluster: unknown verb '%s'\n\n%s", verb, cluster_usage_text);
    return CLIENT_EXIT_USAGE;
}
