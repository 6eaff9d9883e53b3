/* elect_observe.c -- GET /v1/election/{name}/observe: a Server-Sent Events stream of an
 * election's leader, as etcd's Observe (docs/locks.md, "Elections").
 *
 * The stream opens with the current leader, read after a ReadIndex round (so it is never
 * older than what the caller could already have seen), then sends an event every time the
 * applied state's leader changes: a new holder (new token), a proclaimed value, or no
 * leader at all (resigned, lease expired or revoked). Any node serves it from its own
 * applied state: events arrive in log order, and a follower's stream is as current as its
 * log. Several changes inside one applied entry show as their end state, as in etcd.
 *
 * Each observer remembers the last leader it sent (token + value) and is compared after
 * every applied lock or lease command, and after a snapshot install; the work per apply is
 * O(observers), bounded by ELECT_OBSERVERS_MAX. A comment line every
 * ELECT_OBSERVE_PING_MS keeps proxies from timing the stream out and finds dead clients.
 *
 * Event shape (one JSON object per "leader" event):
 *   id: <sequence within this stream, from 1>
 *   event: leader
 *   data: {"name":N,"leader":{"owner","token","value","lease"}|null,"revision":R}
 *
 * Sections: types | events | lifecycle | hooks.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "base/assert.h"
#include "sm/lock.h"

/* Streams open at once on one node; one more gets 503 observers_full. */
#define ELECT_OBSERVERS_MAX 1024u
#define ELECT_OBSERVE_PING_MS 10000u

/* ==== types ================================================================= */

struct eobserver {
    struct eobserver *prev, *next; /* api->observers */
    struct api *api;
    struct http_req *req;
    bool began;         /* the stream head and first event went out */
    bool has_leader;    /* what was sent last */
    uint64_t token;
    uint16_t value_len;
    uint16_t name_len;
    uint64_t seq;       /* SSE id of the last event */
    uint64_t pinged_ms; /* uv_now() of the last byte sent */
    uint8_t name[LOCK_NAME_BYTES_MAX];
    uint8_t value[LOCK_VALUE_BYTES_MAX];
};

/* ==== events ================================================================ */

static void observer_unlink(struct eobserver *o)
{
    struct api *a = o->api;
    if (o->prev)
        o->prev->next = o->next;
    else
        a->observers = o->next;
    if (o->next)
        o->next->prev = o->prev;
    CC_ASSERT(a->n_observers > 0);
    a->n_observers--;
}

/* Ends the stream and frees the observer (also for a client that went away). */
static void observer_end(struct eobserver *o)
{
    observer_unlink(o);
    struct http_req *req = o->req;
    free(o);
    http_stream_end(req);
}

/* The election's leader now, as the applied state has it: false when nobody leads. */
static bool current_leader(struct api *a, const struct eobserver *o, struct lock_party *out)
{
    struct lock_info info;
    const struct lock_table *t = machine_locks(node_machine(a->node));
    if (lock_get(t, o->name, o->name_len, &info) != 0 || info.kind != LOCK_KIND_ELECTION ||
        info.n_holders == 0)
        return false;
    lock_info_holder(&info, 0, out);
    return true;
}

/* Sends the leader event if the leader differs from the last one sent (always for the
 * first). Returns false when the stream had to end (client too slow or gone). */
static bool observer_refresh(struct eobserver *o)
{
    struct api *a = o->api;
    struct lock_party p;
    bool has = current_leader(a, o, &p);
    if (has && !p.value)
        p.value = (const uint8_t *)""; /* no value: compare and print it as "" */
    if (o->began && has == o->has_leader &&
        (!has || (p.token == o->token && p.value_len == o->value_len &&
                  memcmp(p.value, o->value, p.value_len) == 0)))
        return true;
    json_t *j = json_object();
    json_object_set_new(j, "name", json_stringn((const char *)o->name, o->name_len));
    if (has) {
        json_t *l = json_object();
        json_object_set_new(l, "owner", json_stringn((const char *)p.owner, p.owner_len));
        json_object_set_new(l, "token", json_integer((json_int_t)p.token));
        json_object_set_new(l, "value", json_stringn((const char *)p.value, p.value_len));
        json_object_set_new(l, "lease", json_integer(p.lease));
        json_object_set_new(j, "leader", l);
    } else {
        json_object_set_new(j, "leader", json_null());
    }
    json_object_set_new(j, "revision", json_integer(kv_revision(node_kv(a->node))));
    char *data = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!data)
        return false;
    size_t cap = strlen(data) + 64;
    char *ev = malloc(cap);
    int n = ev ? snprintf(ev, cap, "id: %llu\nevent: leader\ndata: %s\n\n",
                          (unsigned long long)(o->seq + 1), data)
               : -1;
    free(data);
    if (n < 0 || (size_t)n >= cap || http_stream_write(o->req, ev, (size_t)n) != 0) {
        free(ev);
        return false;
    }
    free(ev);
    o->seq++;
    o->began = true;
    o->pinged_ms = uv_now(a->loop);
    o->has_leader = has;
    o->token = has ? p.token : 0;
    o->value_len = has ? p.value_len : 0;
    if (has && p.value_len)
        memcpy(o->value, p.value, p.value_len);
    return true;
}

/* Every observer compared with the applied state; those that cannot take an event end. */
static void refresh_all(struct api *a)
{
    struct eobserver *o = a->observers;
    while (o) {
        struct eobserver *next = o->next;
        if (o->began && !observer_refresh(o))
            observer_end(o);
        o = next;
    }
}

/* ==== lifecycle ============================================================= */

/* The client left. A begun stream ends now; one still waiting for its first read is
 * answered (which only frees the request) and left for on_first_read to free. */
static void on_client_gone(struct http_req *req, void *arg)
{
    struct eobserver *o = arg;
    if (o->began) {
        observer_end(o);
        return;
    }
    observer_unlink(o);
    o->req = NULL;
    http_respond(req, 499, NULL, NULL, 0);
}

static void on_first_read(void *arg, int status)
{
    struct eobserver *o = arg;
    if (!o->req) { /* unlinked and answered already: the client left or the server stops */
        free(o);
        return;
    }
    if (status != 0) {
        struct http_req *req = o->req;
        observer_unlink(o);
        free(o);
        http_respond_error(req, 503, "read_failed", "cannot confirm the current leader: %s",
                           node_strerror(status));
        return;
    }
    http_respond_header(o->req, "Cache-Control", "no-cache");
    http_respond_header(o->req, "X-Accel-Buffering", "no");
    if (http_stream_begin(o->req, 200, "text/event-stream") != 0 || !observer_refresh(o))
        observer_end(o);
}

void elect_observe_start(struct api *a, struct http_req *req, const char *name, size_t len)
{
    CC_ASSERT(len > 0 && len <= LOCK_NAME_BYTES_MAX);
    if (a->n_observers >= ELECT_OBSERVERS_MAX) {
        http_respond_error(req, 503, "observers_full",
                           "this node already streams %u election observers "
                           "(ELECT_OBSERVERS_MAX); try another node",
                           ELECT_OBSERVERS_MAX);
        return;
    }
    struct eobserver *o = calloc(1, sizeof(*o));
    if (!o) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        return;
    }
    o->api = a;
    o->req = req;
    o->name_len = (uint16_t)len;
    memcpy(o->name, name, len);
    o->next = a->observers;
    if (a->observers)
        a->observers->prev = o;
    a->observers = o;
    a->n_observers++;
    if (http_req_on_close(req, on_client_gone, o) != 0) {
        observer_unlink(o);
        free(o);
        http_respond(req, 499, NULL, NULL, 0); /* only frees: the client is gone */
        return;
    }
    int rv = node_read(a->node, true, on_first_read, o);
    if (rv != 0)
        on_first_read(o, rv);
}

/* ==== hooks ================================================================= */

void elect_observe_applied(struct api *a, const struct sm_result *res)
{
    if (a->observers && (res->tag == SM_TAG_LOCK || res->tag == SM_TAG_LEASE))
        refresh_all(a);
}

void elect_observe_reset(struct api *a)
{
    refresh_all(a);
}

void elect_observe_tick(struct api *a)
{
    uint64_t now = uv_now(a->loop);
    struct eobserver *o = a->observers;
    while (o) {
        struct eobserver *next = o->next;
        if (o->began && now >= o->pinged_ms + ELECT_OBSERVE_PING_MS) {
            static const char ping[] = ": ping\n\n";
            if (http_stream_write(o->req, ping, sizeof(ping) - 1) != 0)
                observer_end(o);
            else
                o->pinged_ms = now;
        }
        o = next;
    }
}

/* Server stop: every stream ends; one still in its first read is answered and left for
 * the read's callback (node_stop reports every pending read) to free. */
void elect_observe_fini(struct api *a)
{
    while (a->observers) {
        struct eobserver *o = a->observers;
        if (o->began) {
            observer_end(o);
            continue;
        }
        struct http_req *req = o->req;
        observer_unlink(o);
        o->req = NULL;
        http_respond_error(req, 503, "shutting_down", "the server is stopping");
    }
}
