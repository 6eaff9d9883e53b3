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
 *   CONCLAVE_TEST_ID_CLOCK = 1  TEST ONLY: POST /v1/id/test/clock shifts the clock the
 *                               snowflake and order generators read (rollback tests)
 *
 * Errors: negative ID_API_E* in -1931..-1939; id_api_strerror() names them.
 */
#ifndef CC_API_ID_API_H
#define CC_API_ID_API_H

#include <stddef.h>

#include "api/http.h"

enum {
    ID_API_ENOMEM = -1931,  /* allocation failed */
    ID_API_ECONFIG = -1932, /* a bad CONCLAVE_SNOWFLAKE_ROLLBACK value */
};
const char *id_api_strerror(int rv);

struct api;
struct id_api;

/* Sets up the ID service for api a (its loop and node). Returns 0 or an ID_API_E*
 * with the reason in msg. The server secret (<data-dir>/id-secret) is loaded or
 * created here; when that fails the keyed generators answer 503 and say why, the rest
 * of the service works. */
int id_api_init(struct api *a, struct id_api **out, char *msg, size_t msg_cap);
void id_api_fini(struct id_api *ia);

/* Requests whose path starts with "/v1/id/" and "/s/". */
/* POST /v1/shorturl {"url"}: an alias of POST /v1/id/short. */
void id_api_shorturl(struct id_api *ia, struct http_req *req);
void id_api_route(struct id_api *ia, struct http_req *req);
void id_api_redirect(struct id_api *ia, struct http_req *req);

#endif /* CC_API_ID_API_H */
