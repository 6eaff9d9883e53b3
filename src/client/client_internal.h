/* client_internal.h -- what the files of the C client library (src/client/) share, and
 * the two hooks the CLI and the unit tests use: a raw request with endpoint failover
 * (cc__request: the CLI prints the server's JSON verbatim with it) and an injectable
 * transport (cc__set_transport: the watchdog test answers requests without a server).
 *
 * Ownership: struct cc_client owns its endpoint strings. cc__request fills a
 * struct client_response that the caller frees with client_response_free().
 */
#ifndef CC_CLIENT_INTERNAL_H
#define CC_CLIENT_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/client.h"
#include "conclave/client.h"

#define CC_REQUEST_TIMEOUT_MS_DEFAULT CLIENT_TIMEOUT_MS_DEFAULT
#define CC_CONNECT_TIMEOUT_MS_DEFAULT CLIENT_CONNECT_TIMEOUT_MS
#define CC_DETAIL_BYTES               CLIENT_ERRMSG_BYTES

/* One exchange with one endpoint; client_do's contract (cli/client.h). */
typedef int (*cc_transport_fn)(void *arg, const char *endpoint, const struct client_opts *opts,
                               const struct client_request *req, struct client_response *resp,
                               char *errmsg, size_t errmsg_cap);

struct cc_client {
    char *endpoints[CC_ENDPOINTS_MAX]; /* owned, each a valid "HOST:PORT" */
    uint32_t n_endpoints;
    atomic_uint preferred; /* index of the endpoint that answered last */
    uint32_t request_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t lock_margin_ms; /* 0: the default per ttl */
    cc_transport_fn transport;
    void *transport_arg;
    atomic_uint n_locks; /* live cc_lock handles */
    struct cc_ids *_Atomic ids; /* idbuf.c: made on the first cc_id_next, freed with c */
};

/* idbuf.c: stops the refill thread (waits for a fetch in flight) and frees the buffers.
 * NULL-safe. */
struct cc_ids;
void cc__ids_free(struct cc_ids *ids);

/* Replaces client_do (tests). Call before any request; arg is borrowed. */
void cc__set_transport(cc_client *c, cc_transport_fn fn, void *arg);

/* Sends one request, trying the endpoints from the preferred one on: on an unreachable
 * endpoint, or a 503 no_leader from any but the last, the next one. timeout_ms bounds
 * the whole call. Returns 0 with *resp holding the answer (any status; free it), or a
 * CC_E* code with the detail set and *resp empty. body: NULL or a JSON text. */
int cc__request(cc_client *c, const char *method, const char *target, const char *body,
                uint32_t timeout_ms, struct client_response *resp);
/* The same for any request (a binary body, another content type). */
int cc__request_raw(cc_client *c, const struct client_request *req, uint32_t timeout_ms,
                    struct client_response *resp);

/* The CC_E* code for a non-2xx answer (detail set to the server's message). */
int cc__status_error(const struct client_response *resp);

/* Parses resp's body as a JSON object; NULL (detail set) if it is not one. */
json_t *cc__reply_json(const struct client_response *resp);

/* printf into the calling thread's detail buffer (cc_last_error). */
void cc__set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cc__clear_detail(void);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t cc__mono_ms(void);

/* A fresh owner id, "host:pid:16 hex digits", into out (cap >= CC_LOCK_OWNER_BYTES_MAX+1). */
void cc__make_owner(char *out, size_t cap);

/* Percent-escapes a lock name or lease id path segment; name must already be checked. */
void cc__escape_segment(const char *s, char *out, size_t out_cap);

#endif /* CC_CLIENT_INTERNAL_H */
