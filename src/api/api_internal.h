/* api_internal.h -- what the API's source files share: the api object and the pending
 * request ("op") machinery. Not for use outside src/api/.
 *
 * An op is one answered-later request: created by api_op_new() (starts its timeout and
 * watches for the client going away), finished by exactly one api_op_done() after the
 * request was answered. Node callbacks check o->finished first: a timeout or a vanished
 * client may have answered already.
 */
#ifndef CC_API_API_INTERNAL_H
#define CC_API_API_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api/http.h"
#include "base/histogram.h"
#include "node/node.h"
#include "sm/members.h"

#define API_WRITE_TIMEOUT_MS 10000 /* a write unanswered by then: 504, outcome unknown */
#define API_READ_TIMEOUT_MS 5000   /* a ReadIndex round unanswered by then: 503 */
#define API_PUBLISH_MS 1000        /* how often the leader checks the member directory */
#define API_TICK_MS 100            /* the API's housekeeping timer (lock waits renew) */
_Static_assert(API_PUBLISH_MS % API_TICK_MS == 0, "publish on whole ticks");
#define API_COMPACT_SLACK_REVISIONS 1000 /* auto-compact only when it drops this many */

#define API_PATH_CLASSES 13 /* metrics.c: path_class_names */

struct api {
    uv_loop_t *loop;
    struct node *node;
    uint64_t n_requests;
    uv_timer_t publish_timer; /* members_api_publish_tick */
    bool publishing;          /* a directory update from the tick is in flight */
    bool compacting;          /* an automatic compaction is in flight */
    uint64_t n_auto_compactions;
    /* per path class (metrics.c): requests by status class, and latency */
    uint64_t http_by_code[API_PATH_CLASSES][5]; /* 1xx..5xx */
    struct hist http_latency[API_PATH_CLASSES];
    bool closing;             /* api_free ran: free once the timer and calls are done */
    bool timer_closed;
    uint32_t n_calls;         /* forward_call()s in flight, each holding a */
    struct id_api *ids;       /* id_api.c: /v1/id/ and /s/ (docs/id.md) */
    struct watch_hub *watch;  /* watch.c: GET /v1/watch/ streams */
    struct resp_server *resp; /* its counters in /metrics; NULL without --resp */
    /* lock_api.c */
    struct op *lock_waiters;  /* queued acquires on this node */
    uint64_t next_request_id;
    uint64_t n_ticks;
    struct abandoned_grant *abandoned; /* timed-out waits whose grant may still come */
    uint32_t n_abandoned;
    /* elect_observe.c: GET /v1/election/{name}/observe streams */
    struct eobserver *observers;
    uint32_t n_observers;
};
/* A forward_call holding a returned: frees a if it was the last thing api_free waits for. */
void api_call_finished(struct api *a);

enum op_kind { OP_PUT, OP_DELETE, OP_GET, OP_TXN, OP_COMPACT, OP_MEMBER, OP_LOCK, OP_LEASE };

struct op {
    struct api *api;
    struct http_req *req;
    enum op_kind kind;
    uv_timer_t timer;
    bool finished; /* the request has been answered */
    bool timer_closed;
    /* GET parameters, kept for the read callback */
    uint8_t *key;
    uint32_t key_len;
    bool prefix, raw, keys_only, count_only;
    uint64_t limit;
    int64_t revision;
    /* OP_MEMBER: the change in progress */
    struct members_entry member;
    int member_op; /* enum raft_change_op */
    /* OP_LOCK / OP_LEASE (lock_api.c); the lock name is in key/key_len */
    uint8_t *aux; /* owner, then value (freed with the op) */
    uint16_t owner_len, value_len;
    uint8_t lock_kind, lock_mode, lock_flags;
    uint32_t lock_limit;
    int64_t lease;
    int64_t ttl_ms;
    bool lease_implicit; /* we granted the lease for this request: revoke it on failure */
    bool waiting;        /* queued: in api->lock_waiters, woken by a GRANTED event */
    bool acquiring;      /* an ACQUIRE is proposed (or lazily waiting), result not yet back */
    uint64_t request_id;
    uint64_t deadline_ms; /* uv_now() by which a queued acquire gives up */
    uint64_t renewed_ms;  /* implicit lease: when the last keepalive was sent */
    struct op *wait_prev, *wait_next;
};

struct op *api_op_new(struct api *a, struct http_req *req, enum op_kind kind);
void api_op_done(struct op *o);
/* Answers a node/raft error; NODE_ENOTLEADER forwards the request to the leader. */
void api_respond_node_error(struct api *a, struct http_req *req, int rv);

/* metrics.c: GET /metrics, and the access-log hook that counts every request */
void api_metrics(struct api *a, struct http_req *req);
void api_metrics_observe(void *arg, const struct http_access *e);

/* lock_api.c: leases, locks and elections (docs/locks.md) */
struct abandoned_grant;
int lock_api_init(struct api *a);
void lock_api_fini(struct api *a);
void lock_api_forget(struct op *o); /* api_op_done: leave the waiter list */
void lock_api_tick(struct api *a);  /* renews the leases of waiting acquires */
void lock_api_route(struct api *a, struct http_req *req); /* /v1/lease, /v1/lock, /v1/election */

/* elect_observe.c: election observe streams (fed by lock_api.c's node observer) */
struct eobserver;
void elect_observe_start(struct api *a, struct http_req *req, const char *name, size_t len);
void elect_observe_applied(struct api *a, const struct sm_result *res);
void elect_observe_reset(struct api *a);
void elect_observe_tick(struct api *a); /* keepalive comments */
void elect_observe_fini(struct api *a);

/* v3_api.c: etcd 3.4 JSON gateway paths /v3/kv/put|range|deleterange */
void v3_api_route(struct api *a, struct http_req *req);

/* members_api.c */
void members_api_add(struct api *a, struct http_req *req);
void members_api_remove(struct api *a, struct http_req *req, const char *name);
void members_api_promote(struct api *a, struct http_req *req, const char *name);
void members_api_publish(struct api *a, struct http_req *req, const char *name);
void members_api_publish_tick(struct api *a);

#endif /* CC_API_API_INTERNAL_H */
