/* client.h -- what the client subcommands (kv, cluster) share: a tiny blocking HTTP/1.1
 * client for the /v1 API (docs/API.md), endpoint and global-flag handling, and the
 * mapping of failures to exit codes and messages (docs/cli.md).
 *
 * One request is one TCP connection ("Connection: close"): the CLI makes a handful of
 * calls per run, so keep-alive would buy nothing and cost a connection pool. Every call
 * is bounded: a connect timeout, an overall deadline, and a response size limit.
 *
 * Ownership: struct client_response owns its body (malloc'd) until
 * client_response_free(); everything else is caller-owned and only read.
 * Errors are negative ints in the client range (-3001...) with client_strerror() and a
 * caller buffer for detail. There is no shared state: concurrent calls on distinct
 * structs are fine.
 *
 * Sections: limits | errors | exit codes | endpoint | escaping | exchange | cli glue.
 */
#ifndef CC_CLI_CLIENT_H
#define CC_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ------------------------------------------------------------------------ */

/* CLIENT_ETOOBIG: one response body. A full range page is at most KV_RESULT_BYTES_MAX
 * (64 MiB) of keys and values, which JSON and base64 grow by about 4/3, plus per-key
 * fields. (Values full of control characters, which JSON escapes six-fold, can exceed
 * it: read those with --limit.) */
#define CLIENT_RESPONSE_BYTES_MAX (128u << 20)
/* Request target (path + query): the server's HTTP_URL_BYTES_MAX, beyond which it would
 * answer 414 anyway. */
#define CLIENT_TARGET_BYTES_MAX   (16u << 10)
#define CLIENT_ENDPOINT_BYTES     262u  /* "host:port" + NUL, as HTTP_ADDR_BYTES_MAX */
#define CLIENT_CONTENT_TYPE_BYTES 128u  /* response Content-Type kept (truncated beyond) */
#define CLIENT_ERRMSG_BYTES       512u  /* detail buffers used by the CLI glue */
#define CLIENT_CONNECT_TIMEOUT_MS 3000u /* per connect attempt: a dead host, not a slow one */
/* The whole exchange: above the server's 10 s write timeout, so a slow write gets the
 * server's 504 (outcome unknown) rather than a client-side guess. */
#define CLIENT_TIMEOUT_MS_DEFAULT 15000u
#define CLIENT_TIMEOUT_MS_MAX     3600000u /* --timeout-ms ceiling: an hour */
#define CLIENT_DEFAULT_ENDPOINT   "127.0.0.1:2479"
#define CLIENT_ENDPOINT_ENV       "CONCLAVE_ENDPOINT"

_Static_assert(CLIENT_CONNECT_TIMEOUT_MS <= CLIENT_TIMEOUT_MS_DEFAULT,
               "a connect attempt fits in the default deadline");
_Static_assert(CLIENT_TIMEOUT_MS_DEFAULT <= CLIENT_TIMEOUT_MS_MAX, "default within range");

/* ---- errors ------------------------------------------------------------------------ */

enum {
    CLIENT_EINVAL = -3001,       /* bad argument (a malformed endpoint: errmsg says how) */
    CLIENT_ERESOLVE = -3002,     /* the host name does not resolve */
    CLIENT_EREFUSED = -3003,     /* connection refused: nothing listens there */
    CLIENT_ECONNECT = -3004,     /* connect failed otherwise (unreachable, reset...) */
    CLIENT_ECONNTIMEOUT = -3005, /* connect did not finish in time */
    CLIENT_ETIMEDOUT = -3006,    /* connected, but no complete response by the deadline */
    CLIENT_EIO = -3007,          /* send or receive failed after connecting */
    CLIENT_EPROTO = -3008,       /* malformed response, or closed before it was complete */
    CLIENT_ETOOBIG = -3009,      /* response body over the limit (CLIENT_RESPONSE_BYTES_MAX) */
    CLIENT_ENOMEM = -3010,       /* allocation failed */
};
const char *client_strerror(int rv);

/* True for the failures that mean "did not reach a server" (nothing was sent). */
bool client_error_is_unreachable(int rv);

/* ---- exit codes (docs/cli.md) ------------------------------------------------------ */

#define CLIENT_EXIT_OK          0
#define CLIENT_EXIT_FAIL        1 /* the server said no, or the exchange failed midway */
#define CLIENT_EXIT_USAGE       2 /* bad command line */
#define CLIENT_EXIT_UNREACHABLE 3 /* could not connect to the endpoint */

/* ---- endpoint ---------------------------------------------------------------------- */

/* Splits "HOST:PORT", "[V6]:PORT" or "http://HOST:PORT[/]" into host and port (both
 * NUL-terminated, IPv6 without brackets). Returns 0 or CLIENT_EINVAL with a reason in
 * errmsg. https:// is refused: the API speaks plain HTTP. */
int client_endpoint_split(const char *endpoint, char *host, size_t host_cap, char *port,
                          size_t port_cap, char *errmsg, size_t errmsg_cap);

/* ---- escaping ---------------------------------------------------------------------- */

/* Percent-encodes n bytes (any bytes, NUL included) into out: unreserved characters
 * (A-Z a-z 0-9 - . _ ~) stay, and '/' too when keep_slash (keys in paths read better
 * that way; the server decodes the whole path). Everything else becomes %XX (upper-case
 * hex). Requires out_cap >= 3 * n + 1; writes a NUL; returns the length written. */
size_t client_escape(const void *bytes, size_t n, bool keep_slash, char *out, size_t out_cap);

/* Decodes standard base64 (as the server writes `*_base64` fields) into out, which holds
 * at least n / 4 * 3 + 3 bytes; stops at '='. Returns the byte count, or -1 at a
 * character outside the alphabet. */
long client_b64_decode(const char *s, size_t n, uint8_t *out);

/* Writes p to stdout with C escapes for backslash, newline, tab and control bytes, and
 * for bytes >= 0x80 unless keep_utf8: one value stays on one line. */
void client_print_escaped(const uint8_t *p, size_t n, bool keep_utf8);

/* Prints obj's field `name` (a JSON string: as is, or escaped with keep_utf8 when
 * escape_text) or else `name`_base64 (decoded, escaped; printed raw if it does not
 * decode). Returns false when neither field is there. */
struct json_t;
bool client_print_field(struct json_t *obj, const char *name, bool escape_text);

/* ---- exchange ---------------------------------------------------------------------- */

struct client_request {
    const char *method;       /* "GET", "PUT", ... */
    const char *target;       /* path and query, already escaped; < CLIENT_TARGET_BYTES_MAX */
    const char *content_type; /* NULL: no Content-Type header */
    const void *body;         /* body_len bytes; may hold NUL */
    size_t body_len;
};

struct client_opts {
    uint32_t timeout_ms;         /* whole exchange, connect included; > 0 */
    uint32_t connect_timeout_ms; /* per address tried; 0 = CLIENT_CONNECT_TIMEOUT_MS */
    size_t response_bytes_max;   /* 0 = CLIENT_RESPONSE_BYTES_MAX; never above it */
};

struct client_response {
    int status;                                   /* HTTP status code */
    char content_type[CLIENT_CONTENT_TYPE_BYTES]; /* "" when absent */
    uint8_t *body; /* malloc'd, NUL-terminated (not counted in body_len); owned */
    size_t body_len;
};

/* Sends req to endpoint ("HOST:PORT") and reads the whole response. PUT and POST always
 * carry Content-Length; other methods only when they have a body. Any status counts as
 * success here: 0 means a complete response is in *resp (free it with
 * client_response_free). On failure *resp is left empty (safe to free) and errmsg says
 * what happened. */
int client_do(const char *endpoint, const struct client_opts *opts,
              const struct client_request *req, struct client_response *resp, char *errmsg,
              size_t errmsg_cap);

/* Frees the body; the struct may be reused. NULL-safe. */
void client_response_free(struct client_response *resp);

/* ---- streaming exchange (watch) ---------------------------------------------------- */

/* Called with each piece of a 2xx response body as it arrives (chunked framing removed;
 * pieces split anywhere). A positive return stops the exchange. */
typedef int (*client_body_cb)(void *arg, const uint8_t *bytes, size_t n);

/* Like client_do, for an endless body (Server-Sent Events): connect, send and the
 * response head must complete within opts->timeout_ms; then a 2xx body goes to body_cb
 * piece by piece for as long as bytes keep coming, opts->timeout_ms now being the
 * longest silence allowed (a watch sends a bookmark every few seconds). A non-2xx
 * response is read whole into *resp (bounded as in client_do; free it) and returns 0
 * with resp->status set. For a 2xx, resp->status and content_type are set and the body
 * stays empty. Returns 0 (the server ended the body, or a non-2xx), body_cb's positive
 * value, or a CLIENT_E* code with errmsg set (then *resp is empty). */
int client_stream(const char *endpoint, const struct client_opts *opts,
                  const struct client_request *req, struct client_response *resp,
                  client_body_cb body_cb, void *arg, char *errmsg, size_t errmsg_cap);

/* ---- cli glue ---------------------------------------------------------------------- */

/* A decimal number of the command line: digits only (no sign, no spaces), within
 * [min, max] (max at most INT64_MAX, so it fits every JSON integer). */
bool client_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#define CLIENT_GLOBAL_FLAGS_USAGE                                                         \
    "global flags (anywhere after the command; `--` ends flags):\n"                       \
    "  --endpoint HOST:PORT[,HOST:PORT...]  nodes' HTTP addresses, tried in order until\n" \
    "                        one answers (default: $" CLIENT_ENDPOINT_ENV ", else\n"      \
    "                        " CLIENT_DEFAULT_ENDPOINT ")\n"                              \
    "  -o json|text          json: print the server's JSON reply verbatim\n"              \
    "                        (default: text, for people)\n"                               \
    "  --timeout-ms N        give up after N ms (default 15000)\n"

/* Nodes one --endpoint list may name ("H1:P1,H2:P2"). */
#define CLIENT_CLI_ENDPOINTS_MAX 16u

/* The global flags of one run. */
struct client_cli {
    const char *prog;                     /* "conclave kv", for messages */
    char endpoint[CLIENT_ENDPOINT_BYTES]; /* the first of endpoints: where requests go first */
    char endpoints[CLIENT_CLI_ENDPOINTS_MAX][CLIENT_ENDPOINT_BYTES]; /* the whole list */
    uint32_t n_endpoints;                 /* >= 1 */
    bool json;                            /* -o json */
    uint32_t timeout_ms;                  /* --timeout-ms */
};

/* Takes the global flags out of argv[1..] (argv[0], the command name, stays; parsing
 * stops at "--", which stays), compacting argv and *argc. Returns 0, or
 * CLIENT_EXIT_USAGE with the problem in errmsg. */
int client_cli_init(struct client_cli *cli, const char *prog, int *argc, char **argv, char *errmsg,
                    size_t errmsg_cap);

/* Runs one request against cli->endpoint and returns an exit code. When a node of the
 * --endpoint list cannot be reached (nothing was sent: connect refused or timed out), the
 * request goes to the next one; a request that reached a node is never re-sent (a
 * write might apply twice). CLIENT_EXIT_OK: a
 * 2xx response is in *resp (the caller frees it). Otherwise the failure has been
 * printed to stderr, prefixed with what (e.g. "conclave kv get"), and *resp is empty:
 * the server's error message for a non-2xx (CLIENT_EXIT_FAIL), "cannot reach
 * Conclave at ..." (CLIENT_EXIT_UNREACHABLE), or what went wrong midway
 * (CLIENT_EXIT_FAIL). */
int client_cli_call(const struct client_cli *cli, const char *what,
                    const struct client_request *req, struct client_response *resp);

/* Formats a non-2xx response as one line for people: the server's error message with
 * its status and code ("key not found (404 key_not_found)"), or for a body that is not
 * Conclave's JSON error, the status and the start of the body made printable. */
void client_error_line(const struct client_response *resp, char *out, size_t out_cap);

/* Prints a JSON body verbatim to stdout, adding a final newline if it lacks one. */
void client_cli_print_body(const struct client_response *resp);

#endif /* CC_CLI_CLIENT_H */
