/* members_api.c -- membership changes over HTTP: add, promote, remove, and the leader's
 * upkeep of the replicated member directory (sm/members.h).
 *
 *   POST   /v1/cluster/members                  {"name","peer_addr","http_addr","role","id"}
 *   POST   /v1/cluster/members/{name}/promote
 *   DELETE /v1/cluster/members/{name}
 *
 * Order of an add: (1) the directory entry (id, name, addresses) commits, so every
 * node, including the leader about to replicate to it, knows where the new member
 * listens; (2) the configuration change (raft_change, single-server, thesis §4.1)
 * commits; (3) 201. A crash between (1) and (2) leaves a directory entry without a
 * configuration entry; retrying the same add reuses its id. A remove is the reverse:
 * configuration first, then the directory entry goes.
 *
 * Upkeep (members_api_publish_tick, every API_PUBLISH_MS): the leader writes a directory
 * entry for every configuration member it knows from its flags but the directory does
 * not, one at a time. Members added later (or nodes restarted with fewer flags) then
 * still learn every address from the log.
 *
 * Every step answers through the op's timer if it does not finish within
 * API_WRITE_TIMEOUT_MS (504: may or may not have happened).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/forward.h"
#include "raft/raft.h"

/* ==== helpers ============================================================== */

static const char *role_name(int op)
{
    return op == RAFT_ADD_LEARNER ? "learner" : "voter";
}

static void respond_change_error(struct op *o, int rv, const char *what)
{
    int status = rv == RAFT_EBUSY || rv == RAFT_ENOTREADY || rv == NODE_EFULL ? 503
                 : rv == RAFT_ECONFIG || rv == RAFT_ECATCHUP                  ? 409
                 : rv == NODE_ELOST                                           ? 503
                 : rv == NODE_EUNKNOWN                                        ? 504
                                                                              : 500;
    const char *hint = rv == RAFT_EBUSY       ? " (another membership change or a leader transfer is running; retry)"
                       : rv == RAFT_ENOTREADY ? " (the new leader has not committed yet; retry)"
                       : rv == RAFT_ECATCHUP  ? " (the learner has not caught up with the log yet; retry later)"
                                              : "";
    http_respond_error(o->req, status, "member_change_failed", "%s %s: %s%s", what,
                       o->member.name, rv <= -1100 && rv > -1200 ? raft_strerror(rv)
                                                                : node_strerror(rv),
                       hint);
}

static json_t *json_entry(const struct members_entry *e, const char *role)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer(e->id));
    json_object_set_new(j, "name", json_string(e->name));
    json_object_set_new(j, "peer_addr", json_string(e->peer_addr));
    json_object_set_new(j, "http_addr", json_string(e->http_addr));
    json_object_set_new(j, "role", json_string(role));
    return j;
}

static bool leader_or_forward(struct api *a, struct http_req *req)
{
    if (raft_role(node_raft(a->node)) == RAFT_LEADER)
        return true;
    api_respond_node_error(a, req, NODE_ENOTLEADER); /* forwards to the leader */
    return false;
}

/* The smallest id above every id in the configuration and the directory. */
static uint32_t next_free_id(struct api *a)
{
    uint32_t max = 0;
    const struct raft_config *c = raft_config(node_raft(a->node));
    for (uint32_t i = 0; i < c->n_servers; i++)
        if (c->servers[i].id > max)
            max = c->servers[i].id;
    const struct members *d = node_directory(a->node);
    for (uint32_t i = 0; i < d->n; i++)
        if (d->e[i].id > max)
            max = d->e[i].id;
    return max + 1;
}

/* ==== add ================================================================== */

static void on_add_config_applied(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    (void)res;
    if (o->finished)
        return;
    if (status != 0) {
        respond_change_error(o, status, "adding");
    } else {
        http_respond_json(o->req, 201, json_entry(&o->member, role_name(o->member_op)));
    }
    api_op_done(o);
}

static void on_add_directory_applied(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status == 0 && res && res->err != 0)
        status = res->err;
    if (status != 0) {
        if (status <= -2100 && status > -2120)
            http_respond_error(o->req, status == MEMBERS_EFULL ? 507 : 409, "directory_error",
                               "%s", members_strerror(status));
        else
            respond_change_error(o, status, "recording the address of");
        api_op_done(o);
        return;
    }
    int rv = node_change(o->api->node, o->member_op, o->member.id, on_add_config_applied, o);
    if (rv != 0) {
        respond_change_error(o, rv, "adding");
        api_op_done(o);
    }
}

static bool json_str(json_t *j, const char *key, char *out, size_t cap, bool required)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return !required;
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return false;
    snprintf(out, cap, "%s", json_string_value(v));
    return true;
}

/* Strict reconfiguration check (etcd's --strict-reconfig-check): a new voter counts as
 * down until it has caught up, so the voters we heard from recently must still form a
 * quorum of the larger configuration. Otherwise adding it would stall every write (a
 * 1-node cluster adding a second voter needs both). Answers 409 and returns false. */
static bool quorum_survives_add(struct api *a, struct http_req *req)
{
    struct raft *r = node_raft(a->node);
    struct raft_progress_info pi[RAFT_SERVERS_MAX];
    uint32_t n = raft_progress(r, pi, RAFT_SERVERS_MAX);
    uint32_t voters = raft_config_n_voters(raft_config(r)), active = 1; /* the leader */
    for (uint32_t i = 0; i < n; i++)
        if (pi[i].role == RAFT_VOTER && pi[i].id != raft_id(r) && pi[i].recent_active)
            active++;
    uint32_t quorum = (voters + 1) / 2 + 1;
    if (active >= quorum)
        return true;
    http_respond_error(req, 409, "would_lose_quorum",
                       "with a new voter that has not caught up yet, %u of %u voters would be "
                       "reachable, below the quorum of %u; add it with \"role\": \"learner\", "
                       "start it, then promote it",
                       active, voters + 1, quorum);
    return false;
}

void members_api_add(struct api *a, struct http_req *req)
{
    if (!leader_or_forward(a, req))
        return;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        http_respond_error(req, 400, "bad_request",
                           "body must be a JSON object {\"name\", \"peer_addr\", \"http_addr\", "
                           "\"role\": \"voter\"|\"learner\"}%s%s",
                           j ? "" : "; JSON error: ", j ? "" : jerr.text);
        json_decref(j);
        return;
    }
    struct members_entry e = {0};
    char role[16] = "voter";
    json_t *id = json_object_get(j, "id");
    bool ok = json_str(j, "name", e.name, sizeof(e.name), true) &&
              json_str(j, "peer_addr", e.peer_addr, sizeof(e.peer_addr), true) &&
              json_str(j, "http_addr", e.http_addr, sizeof(e.http_addr), false) &&
              json_str(j, "role", role, sizeof(role), false) &&
              (!id || (json_is_integer(id) && json_integer_value(id) > 0 &&
                       json_integer_value(id) <= UINT32_MAX));
    if (id && ok)
        e.id = (uint32_t)json_integer_value(id);
    json_decref(j);
    int change = strcmp(role, "voter") == 0     ? RAFT_ADD_VOTER
                 : strcmp(role, "learner") == 0 ? RAFT_ADD_LEARNER
                                                : 0;
    if (!ok || change == 0) {
        http_respond_error(req, 400, "bad_request",
                           "need name and peer_addr strings (http_addr optional), role "
                           "\"voter\" or \"learner\", id a positive integer if given");
        return;
    }
    /* the same name again: an earlier add that stopped after its directory step */
    const struct raft_config *c = raft_config(node_raft(a->node));
    const struct node_member *known = node_member_by_name(a->node, e.name);
    if (known && raft_config_role(c, known->id) != 0) {
        http_respond_error(req, 409, "member_exists", "%s is already member %u", e.name,
                           known->id);
        return;
    }
    if (e.id == 0)
        e.id = known ? known->id : next_free_id(a);
    if (raft_config_role(c, e.id) != 0) {
        http_respond_error(req, 409, "member_exists", "id %u is already a member", e.id);
        return;
    }
    uint8_t cmd[MEMBERS_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = members_encode_set(&e, cmd, sizeof(cmd), &n);
    if (rv != 0) {
        http_respond_error(req, 400, "bad_member",
                           "%s: names are 1-%u characters of [A-Za-z0-9._-], addresses "
                           "host:port",
                           members_strerror(rv), MEMBERS_NAME_BYTES - 1);
        return;
    }
    if (change == RAFT_ADD_VOTER && !quorum_survives_add(a, req))
        return;
    struct op *o = api_op_new(a, req, OP_MEMBER);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    o->member = e;
    o->member_op = change;
    rv = node_propose(a->node, cmd, n, on_add_directory_applied, o);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

/* ==== promote and remove ====================================================== */

static void on_change_applied(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    (void)res;
    if (o->finished)
        return;
    if (status != 0) {
        respond_change_error(o, status, o->member_op == RAFT_REMOVE ? "removing" : "promoting");
        api_op_done(o);
        return;
    }
    if (o->member_op == RAFT_REMOVE) {
        /* Forget the address too. Best effort: if this fails (we were the removed
         * leader, say) the entry stays, harmless, and a later add may reuse the name. */
        uint8_t cmd[MEMBERS_CMD_BYTES_MAX];
        size_t n = 0;
        if (members_encode_del(o->member.id, cmd, sizeof(cmd), &n) == 0)
            node_propose(o->api->node, cmd, n, NULL, NULL);
    }
    http_respond_json(o->req, 200,
                      json_entry(&o->member, o->member_op == RAFT_REMOVE ? "removed" : "voter"));
    api_op_done(o);
}

static void change_by_name(struct api *a, struct http_req *req, const char *name, int change)
{
    if (!leader_or_forward(a, req))
        return;
    const struct node_member *m = node_member_by_name(a->node, name);
    if (!m || raft_config_role(raft_config(node_raft(a->node)), m->id) == 0) {
        http_respond_error(req, 404, "no_such_member", "no member named '%s'", name);
        return;
    }
    struct op *o = api_op_new(a, req, OP_MEMBER);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    o->member.id = m->id;
    snprintf(o->member.name, sizeof(o->member.name), "%s", m->name);
    snprintf(o->member.peer_addr, sizeof(o->member.peer_addr), "%s", m->peer_addr);
    snprintf(o->member.http_addr, sizeof(o->member.http_addr), "%s", m->http_addr);
    o->member_op = change;
    int rv = node_change(a->node, change, m->id, on_change_applied, o);
    if (rv != 0) {
        if (rv == NODE_ENOTLEADER)
            api_respond_node_error(a, req, rv);
        else
            respond_change_error(o, rv, change == RAFT_REMOVE ? "removing" : "promoting");
        api_op_done(o);
    }
}

void members_api_promote(struct api *a, struct http_req *req, const char *name)
{
    change_by_name(a, req, name, RAFT_PROMOTE);
}

void members_api_remove(struct api *a, struct http_req *req, const char *name)
{
    change_by_name(a, req, name, RAFT_REMOVE);
}

/* ==== directory upkeep ========================================================= */

static void on_publish_done(void *arg, int status, const struct sm_result *res);

/* POST /v1/cluster/members/{name}/publish {"id","peer_addr","http_addr"}: a member
 * tells the leader its own addresses. Only a configuration member may publish, and only
 * under the name the directory already has for its id (no renaming others). */
void members_api_publish(struct api *a, struct http_req *req, const char *name)
{
    if (!leader_or_forward(a, req))
        return;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &jerr);
    json_t *id = j ? json_object_get(j, "id") : NULL;
    struct members_entry e = {0};
    snprintf(e.name, sizeof(e.name), "%s", name);
    bool ok = j && json_is_integer(id) && json_integer_value(id) > 0 &&
              json_integer_value(id) <= UINT32_MAX &&
              json_str(j, "peer_addr", e.peer_addr, sizeof(e.peer_addr), true) &&
              json_str(j, "http_addr", e.http_addr, sizeof(e.http_addr), true);
    if (ok)
        e.id = (uint32_t)json_integer_value(id);
    json_decref(j);
    if (!ok) {
        http_respond_error(req, 400, "bad_request",
                           "body must be {\"id\": N, \"peer_addr\": S, \"http_addr\": S}");
        return;
    }
    const struct members_entry *old = members_find(node_directory(a->node), e.id);
    if (raft_config_role(raft_config(node_raft(a->node)), e.id) == 0 ||
        (old && strcmp(old->name, e.name) != 0)) {
        http_respond_error(req, 409, "not_a_member",
                           "id %u is not a member, or is not named '%s'", e.id, e.name);
        return;
    }
    uint8_t cmd[MEMBERS_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = members_encode_set(&e, cmd, sizeof(cmd), &n);
    if (rv != 0) {
        http_respond_error(req, 400, "bad_member", "%s", members_strerror(rv));
        return;
    }
    struct op *o = api_op_new(a, req, OP_MEMBER);
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    o->member = e;
    o->member_op = 0;
    rv = node_propose(a->node, cmd, n, on_publish_done, o);
    if (rv != 0) {
        api_respond_node_error(a, req, rv);
        api_op_done(o);
    }
}

static void on_publish_done(void *arg, int status, const struct sm_result *res)
{
    struct op *o = arg;
    if (o->finished)
        return;
    if (status == 0 && res && res->err)
        status = res->err;
    if (status == 0)
        http_respond_json(o->req, 200, json_entry(&o->member, "published"));
    else if (status <= -2100 && status > -2120)
        http_respond_error(o->req, 409, "directory_error", "%s", members_strerror(status));
    else
        respond_change_error(o, status, "publishing");
    api_op_done(o);
}

static void on_tick_proposal_applied(void *arg, int status, const struct sm_result *res)
{
    struct api *a = arg;
    (void)status;
    (void)res;
    a->publishing = false;
}

static void on_tick_call_done(void *arg, int http_status)
{
    struct api *a = arg;
    (void)http_status; /* retried on the next tick if it did not take */
    a->publishing = false;
    api_call_finished(a);
}

static bool same_entry(const struct members_entry *d, const struct node_member *m)
{
    return strcmp(d->name, m->name) == 0 && strcmp(d->peer_addr, m->peer_addr) == 0 &&
           strcmp(d->http_addr, m->http_addr) == 0;
}

static void entry_of(const struct node_member *m, struct members_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->id = m->id;
    snprintf(e->name, sizeof(e->name), "%s", m->name);
    snprintf(e->peer_addr, sizeof(e->peer_addr), "%s", m->peer_addr);
    snprintf(e->http_addr, sizeof(e->http_addr), "%s", m->http_addr);
}

static void propose_entry(struct api *a, const struct members_entry *e)
{
    uint8_t cmd[MEMBERS_CMD_BYTES_MAX];
    size_t n = 0;
    if (members_encode_set(e, cmd, sizeof(cmd), &n) != 0)
        return; /* e.g. a flag name the directory does not accept */
    if (node_propose(a->node, cmd, n, on_tick_proposal_applied, a) == 0)
        a->publishing = true;
}

/* One step per tick, at most one request in flight:
 *  1. our own entry (every member): missing or different -> publish it (directly when
 *     leader, else to the leader's HTTP address);
 *  2. (leader) a configuration member the directory lacks -> write what the flags say. */
void members_api_publish_tick(struct api *a)
{
    struct raft *r = node_raft(a->node);
    if (a->publishing || a->closing)
        return;
    const struct raft_config *c = raft_config(r);
    const struct members *d = node_directory(a->node);
    const struct node_member *self = node_self(a->node);
    const struct members_entry *mine = members_find(d, self->id);
    bool leader = raft_role(r) == RAFT_LEADER;
    struct members_entry e;
    if (raft_config_role(c, self->id) != 0 && (!mine || !same_entry(mine, self))) {
        entry_of(self, &e);
        if (leader) {
            propose_entry(a, &e);
            return;
        }
        uint32_t leader_id = raft_leader(r);
        const struct node_member *lm = leader_id ? node_member(a->node, leader_id) : NULL;
        if (!lm || !lm->http_addr[0])
            return; /* wait until the leader has published itself */
        char path[MEMBERS_NAME_BYTES + 64];
        snprintf(path, sizeof(path), "/v1/cluster/members/%s/publish", e.name);
        json_t *j = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)e.id, "peer_addr",
                              e.peer_addr, "http_addr", e.http_addr);
        char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (body && forward_call(a->loop, lm->http_addr, "POST", path, body, strlen(body),
                                 on_tick_call_done, a) == 0) {
            a->publishing = true;
            a->n_calls++;
        }
        free(body);
        return;
    }
    if (!leader)
        return;
    for (uint32_t i = 0; i < c->n_servers; i++) {
        const struct node_member *m = node_member(a->node, c->servers[i].id);
        if (!m || members_find(d, m->id))
            continue;
        entry_of(m, &e);
        propose_entry(a, &e);
        return;
    }
}
