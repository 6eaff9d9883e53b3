/* id_api.h -- the distributed ID service over HTTP: /v1/id/... and the short-URL
 * redirect /s/{code} (docs/id.md, "HTTP API and CLI"; issue #7).
 *
 * api.c owns the routing: every request under "/v1/id/" goes to id_api_route() and
 * every request under "/s/" to id_api_redirect(). api_start() calls id_api_init() and
 * api_free() calls id_api_fini().
 *
 * Ownership: id_api_init() allocates the state; id_api_fini() cancels everything in
 * flight, closes its timers and connections and frees the state once the last handle
 * closed (from the loop, after the call returns). Call it after the HTTP server
 * stopped (so no request is parked here any more) and before node_stop(). Requests
 * handed to the route functions are finished exactly once by this module.
 *
 * Configuration comes from the environment (no serve flag exists for it yet):
 *   CONCLAVE_SNOWFLAKE_ROLLBACK = new-worker (default) | refuse | wait
 *   CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS = N (default 300000; 0 = never): the snowflake
 *                               worker id is leased on the first request and given back
 *                               after N ms without one
 *   CONCLAVE_TEST_ID_CLOCK = 1  TEST ONLY: POST /v1/id/test/clock shifts the clock the
 *                               snowflake and order generators read (rollback tests)
 *
 * Other front ends (RESP: resp_id.c) take ids through id_api_take(): the same buffers,
 * queues, worker lease and limits as the HTTP handlers, answered by a callback instead
 * of an HTTP response. id_api_of() finds the service of a node (one per node).
 *
 * Errors: negative ID_API_E* in -1931..-1939; id_api_strerror() names them.
 */
#ifndef CC_API_ID_API_H
#define CC_API_ID_API_H

#include <stddef.h>
#include <stdint.h>

#include "api/http.h"

enum {
    ID_API_ENOMEM = -1931,  /* allocation failed */
    ID_API_ECONFIG = -1932, /* a bad CONCLAVE_SNOWFLAKE_ROLLBACK value */
    /* id_api_take() results (the HTTP twin of each in parentheses): */
    ID_API_ENOTFOUND = -1933,    /* no such segment tag (404 tag_not_found) */
    ID_API_EUNAVAILABLE = -1934, /* no segment / no valid worker within the wait (503) */
    ID_API_EBUSY = -1935,        /* too many requests or tag buffers waiting (503 busy) */
    ID_API_EROLLBACK = -1936,    /* a clock rollback, refused by policy (503 clock_rollback) */
    ID_API_ESTOPPED = -1937,     /* the service is stopping */
    ID_API_EFAILED = -1938,      /* another failure: the message says which */
    ID_API_ECOUNT = -1939,       /* count outside 1..ID_API_TAKE_COUNT_MAX (400 bad_count) */
};
const char *id_api_strerror(int rv);

struct api;
struct id_api;
struct node;

/* Sets up the ID service for api a (its loop and node). Returns 0 or an ID_API_E*
 * with the reason in msg. The server secret (<data-dir>/id-secret) is loaded or
 * created here; when that fails the keyed generators answer 503 and say why, the rest
 * of the service works. */
int id_api_init(struct api *a, struct id_api **out, char *msg, size_t msg_cap);
void id_api_fini(struct id_api *ia);

/* ---- the entry point for other front ends ---------------------------------------- */

#define ID_API_TAKE_COUNT_MAX 10000u /* ids per id_api_take(): the HTTP batch limit */

/* The answer of one id_api_take(): rv 0 with n ids in ids[0..n) (borrowed: valid during
 * the call only), or rv an ID_API_E* with msg (borrowed) saying why. */
typedef void (*id_api_take_cb)(void *arg, int rv, const int64_t *ids, uint32_t n,
                               const char *msg);

/* Takes count ids: of segment tag `tag` (tag_len bytes) from this node's double buffer,
 * or, with tag NULL, snowflake ids under this node's worker (leased on first use).
 * Exactly one cb(arg, ...) follows -- possibly before this returns -- unless
 * id_api_cancel(ia, arg) ran first. Ids come in the order requests were made (one FIFO
 * per tag, one for snowflake), so one caller's ids increase within a segment. Loop
 * thread only. tag is copied. */
void id_api_take(struct id_api *ia, const char *tag, size_t tag_len, uint32_t count,
                 id_api_take_cb cb, void *arg);
/* Forgets every id_api_take() with this arg: its cb will not run (ids it would have
 * had are abandoned: a gap, never a reuse). */
void id_api_cancel(struct id_api *ia, void *arg);
/* The ID service of node, or NULL (none started, or already finished). Any thread. */
struct id_api *id_api_of(const struct node *node);

/* Requests whose path starts with "/v1/id/" and "/s/". */
/* POST /v1/shorturl {"url"}: an alias of POST /v1/id/short. */
void id_api_shorturl(struct id_api *ia, struct http_req *req);
void id_api_route(struct id_api *ia, struct http_req *req);
void id_api_redirect(struct id_api *ia, struct http_req *req);

#endif /* CC_API_ID_API_H */
