/* api.h -- the HTTP+JSON API under /v1 (see api.c and docs/API.md). */
#ifndef CC_API_API_H
#define CC_API_API_H

#include <uv.h>

#include "api/http.h"
#include "node/node.h"

struct api;

/* Serves the API for node on http_addr ("127.0.0.1:2379"). On failure msg says why. */
int api_start(uv_loop_t *loop, struct node *node, const char *http_addr,
              struct http_server **srv_out, struct api **api_out, char *msg, size_t msg_cap);
struct resp_server;
/* Adds srv's counters to /metrics (conclave_resp_*). srv must outlive a (serve.c stops
 * the RESP server after api_free). */
void api_set_resp(struct api *a, struct resp_server *srv);
/* After http_server_stop() finished. */
void api_free(struct api *a);

#endif
