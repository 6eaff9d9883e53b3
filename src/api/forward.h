/* forward.h -- relay an HTTP request to the leader and its answer back (see forward.c). */
#ifndef CC_API_FORWARD_H
#define CC_API_FORWARD_H

#include <uv.h>

#include "api/http.h"

#define FORWARD_ADDR_BYTES 262                  /* "host:port" + NUL */
#define FORWARD_HEADER "X-Conclave-Forwarded" /* set on relayed requests: never relay twice */

/* Sends req to host_port and finishes req with the answer (or a 502/504 JSON error).
 * req must stay unfinished until then; the client going away is handled by http.c. */
void forward_request(uv_loop_t *loop, const char *host_port, struct http_req *req);

#endif
