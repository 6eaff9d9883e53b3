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

/* Sends one request of our own (JSON body, copied) to host_port and calls cb exactly
 * once with the HTTP status, or 502/504 when there was no answer (usually from the
 * loop later; if the address lookup cannot even start, before this returns).
 * Returns 0, or -1 (bad address, no memory) without calling cb. */
typedef void (*forward_done_cb)(void *arg, int http_status);
int forward_call(uv_loop_t *loop, const char *host_port, const char *method, const char *path,
                 const void *body, size_t body_len, forward_done_cb cb, void *arg);

#endif
