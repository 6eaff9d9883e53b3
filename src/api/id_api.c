/* id_api.c -- the distributed ID service over HTTP (docs/id.md "HTTP API and CLI").
 *
 * The generators are the pure modules of sm/idgen; this file gives them a clock,
 * randomness, a key, the cluster, and an HTTP face:
 *
 *   POST /v1/id/segments {"tag","initial","step"}     create a tag (Raft, leader)
 *   GET  /v1/id/segments[?after=&limit=]              list tags
 *   GET|PUT /v1/id/segments/{tag}                     show / update step or max_id
 *   POST /v1/id/segments/{tag}/next?count=N           ids from THIS node's double buffer
 *   POST /v1/id/segments/{tag}/alloc {"count"}        leader: one ALLOC, returns [start,end)
 *   GET  /v1/id/snowflake?count=N, /snowflake/status  ids under a leased worker id
 *   GET  /v1/id/uuid?version=4|7&count=N              RFC 9562 UUIDs
 *   GET  /v1/id/trace[?parent=&span=&index=]          trace id, span id, W3C traceparent
 *   POST /v1/id/orders {"biz_type","count"}, GET /v1/id/orders/{number}
 *   POST /v1/id/redeem/{campaign} {"count"}, GET|POST /v1/id/redeem/{campaign}/{code}
 *   POST /v1/id/short {"url"}, GET /s/{code} (302)
 *   POST /v1/id/internal/{lease|keepalive|claim|reserve|release|fingerprint}
 *
 * Who talks to the leader. node_propose() only works on the leader. Requests that are
 * one replicated write (create, update, short, redeem use) are proposed here on the
 * leader and relayed whole to the leader by a follower (api_respond_node_error). The
 * node's own background work -- segment fetches, the worker lease, claims and
 * reservations -- always goes through a small HTTP client (idrpc) to the leader's
 * internal endpoints, also on the leader itself (over loopback): one code path, and
 * a follower gets the answer's body ([start, end), the lease id), which forward_call()
 * does not return. The internal endpoints are ordinary leader-side handlers.
 *
 * Segments. One struct id_tagbuf per tag on this node wraps an idbuf (sm/idgen/idbuf.h):
 * requests take ids from it; when idbuf_fetch_due() says so, an ALLOC goes to the leader;
 * requests that find both segments empty wait in the tag's FIFO (bounded, with a
 * deadline) until the fetch lands. A restart loses the buffers: the unused rest of the
 * old ranges is abandoned, never reissued.
 *
 * Snowflake. The node leases a worker id from the cluster: a lease (TTL
 * ID_SF_TTL_MS, renewed every TTL/3 by ReadIndex-confirmed keepalives on the leader) and a
 * key /conclave/idgen/workers/W created with that lease only if absent (a kv txn). The
 * key dies with the lease, so a crashed node's worker id is recycled after the TTL. The
 * generator issues ids only
 *   - while the lease is valid locally: the send time of the last successful renewal
 *     plus TTL minus ID_SF_MARGIN_MS (the leader counts from when it received it, later);
 *   - up to the committed ceiling (snowflake.h rule 2): the node writes the ceiling to
 *     /conclave/idgen/floors/W, guarded by "workers/W still carries my lease", renewed
 *     at half the window. The floor key has no lease on purpose: it must outlive the
 *     holder, because the next holder of W starts above it (snowflake.h rule 1).
 * A clock behind the last timestamp by more than the tolerance is a rollback: with
 * CONCLAVE_SNOWFLAKE_ROLLBACK=new-worker (default) the node releases W and claims
 * another whose floor is behind its clock; refuse answers 503; wait raises the tolerance
 * to SNOWFLAKE_TOLERANCE_MS_MAX and holds requests until the clock catches up.
 *
 * Keys. Order numbers, redeem codes and short codes are keyed by the server secret
 * <data-dir>/id-secret (32 bytes from RAND_bytes, mode 0600, created on first start).
 * Every node of a cluster must hold the same file. A node publishes the secret's
 * fingerprint (put-if-absent) and refuses the keyed generators with 503 when its own
 * differs: different keys would let two nodes give two orders one number.
 *
 * Lifetimes. Every request answered later is a struct id_op (in ia->ops): parked in a
 * queue, waiting for an idrpc, or with a node callback pending (arg = the op). The tick
 * answers ops past their deadline; id_op_finish() undoes whichever of those it is. The
 * state is freed when id_api_fini() ran and the last timer and connection closed.
 *
 * Sections: limits and types | small helpers | secret and keys | idrpc (HTTP client)
 * | ops | segment buffers | segment endpoints | leader-side internal endpoints |
 * snowflake | uuid and trace | orders | redeem | short urls | tick | routing | init.
 */
#include "api/id_api.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "api/forward.h"
#include "base/assert.h"
#include "base/env.h"
#include "node/lease_timer.h"
#include "sm/idgen/idbuf.h"
#include "sm/idgen/idmac.h"
#include "sm/idgen/idseg.h"
#include "sm/idgen/orderno.h"
#include "sm/idgen/redeem.h"
#include "sm/idgen/shorturl.h"
#include "sm/idgen/snowflake.h"
#include "sm/idgen/traceid.h"
#include "sm/idgen/uuid.h"
#include "sm/kvcmd.h"
#include "sm/lease.h"

/* ==== limits and types ===================================================== */

#define ID_PREFIX       "/v1/id/"
#define ID_SHORT_PREFIX "/s/"

/* Per request. A segment or snowflake batch of 10k ids is ~200 KB of JSON; larger
 * batches belong to a client-side buffer (the C client), not one response. */
#define ID_COUNT_MAX        10000u /* 400 bad_count */
#define ID_UUID_COUNT_MAX   1000u  /* 400 bad_count */
#define ID_ORDER_COUNT_MAX  1000u  /* 400 bad_count */
#define ID_REDEEM_COUNT_MAX 10000u /* 400 bad_count: ~20k HMACs, ~20 ms of the loop */
#define ID_LIST_MAX         1000u  /* tags per GET /v1/id/segments page */
/* Node-wide bounds. */
#define ID_TAGBUFS_MAX 1024u /* tag buffers held; idle ones are evicted (a gap, no reuse) */
#define ID_OPS_MAX     4096u /* requests answered later; beyond: 503 busy */
#define ID_RPCS_MAX    256u  /* idrpc connections in flight; beyond: the caller retries */
/* Time. */
#define ID_TICK_MS        50u    /* deadlines, fetch retries, lease upkeep */
#define ID_WAIT_MS        3000u  /* a parked request gives up: 503 (below forward's 15 s) */
#define ID_OP_MS          10000u /* a leader-side proposal gives up: 504 (API_WRITE_TIMEOUT_MS) */
#define ID_RPC_TIMEOUT_MS 5000u  /* one idrpc exchange */
#define ID_RPC_BODY_MAX   (256u << 10) /* an idrpc answer (they are tiny) */
#define ID_FP_RETRY_MS    1000u  /* fingerprint check retry */
/* Snowflake worker lease. */
#define ID_SF_TTL_MS        10000 /* a crashed node's worker id returns after this */
#define ID_SF_MARGIN_MS     1500  /* local validity ends this long before the TTL would */
#define ID_SF_RETRY_MS      200   /* after a failed grant/claim */
#define ID_SF_AVOID         8u    /* worker ids remembered as unusable (floor ahead) */
#define ID_SF_WORKERS_SCAN  1024u /* keys read to pick a free worker id */
#define ID_SF_IDLE_MS       10000 /* no request for this long: stop renewing the ceiling */
/* No snowflake request for this long: give the worker id back and let the lease lapse
 * (claimed again on the next request). CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS overrides it
 * (0: keep it for the life of the process). */
#define ID_SF_RELEASE_MS_DEFAULT 300000
#define ID_SF_RELEASE_MS_MIN     1000 /* below it: ID_API_ECONFIG (a claim per request) */
/* Secret and inputs. */
#define ID_SECRET_BYTES 32u
#define ID_SECRET_FILE  "id-secret"
#define ID_URL_BYTES_MAX 2048u /* 400 bad_url: what browsers and proxies reliably carry */
#define ID_TEST_CLOCK_MS_MAX (INT64_C(86400000)) /* test clock offset: +-1 day */

#define ID_KEY_WORKERS "/conclave/idgen/workers/"
#define ID_KEY_FLOORS  "/conclave/idgen/floors/"
#define ID_KEY_SHORT   "/conclave/idgen/short/"
#define ID_KEY_REDEEMED "/conclave/idgen/redeemed/"
#define ID_KEY_FP      "/conclave/idgen/secret-fingerprint"

_Static_assert(ID_SF_MARGIN_MS * 3 < ID_SF_TTL_MS, "renewals every TTL/3 stay within margin");
_Static_assert(ID_SF_TTL_MS >= LEASE_TTL_MS_MIN, "the worker lease TTL is a valid TTL");
_Static_assert(ID_WAIT_MS < ID_RPC_TIMEOUT_MS + ID_OP_MS, "parked waits end before rpcs");
_Static_assert(ID_COUNT_MAX <= IDSEG_COUNT_MAX, "one request fits one ALLOC");
_Static_assert(ID_SF_WORKERS_SCAN >= (1u << SNOWFLAKE_WORKER_BITS_DEFAULT),
               "one scan sees every worker id of the default layout");
_Static_assert(ID_REDEEM_COUNT_MAX <= IDSEG_COUNT_MAX, "a redeem batch is one ALLOC");

enum id_rollback { ID_RB_NEW_WORKER = 0, ID_RB_REFUSE = 1, ID_RB_WAIT = 2 };
static const char *const id_rollback_names[] = {"new-worker", "refuse", "wait"};

struct id_api;
struct id_op;
struct idrpc;

typedef void (*idrpc_cb)(struct id_api *ia, void *arg, int status, json_t *body);

/* One HTTP exchange with the leader (see idrpc). */
struct idrpc {
    struct id_api *ia;
    idrpc_cb cb; /* NULL once cancelled */
    void *arg;
    struct idrpc *prev, *next; /* ia->rpcs */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uv_getaddrinfo_t gai;
    char *out;
    size_t out_len;
    http_parser parser;
    http_parser_settings settings;
    char *body;
    size_t body_len, body_cap;
    bool complete;
    bool done;
    int n_open; /* handles and the lookup still holding the rpc */
};

struct id_queue {
    struct id_op *head, *tail;
    uint32_t n;
};

enum id_op_kind {
    ID_OP_NEXT = 1,  /* segment ids; waits in a tag queue */
    ID_OP_ORDER,     /* order numbers; waits in a tag queue */
    ID_OP_SHORT,     /* short url: an id from a tag queue, then a kv txn */
    ID_OP_SNOWFLAKE, /* waits in the snowflake queue */
    ID_OP_REDEEM,    /* redeem codes: an ALLOC (and maybe a CREATE) by idrpc */
    ID_OP_PROPOSE,   /* a leader-side proposal or read: node callback pending */
};

/* A request answered later. Owned by ia->ops; freed by id_op_finish(). An HTTP request
 * (req) or an id_api_take() (req NULL, answered through cb). */
struct id_op {
    struct id_api *ia;
    struct http_req *req;
    id_api_take_cb cb;           /* req == NULL: the taker's callback */
    void *cb_arg;
    bool cancelled;              /* id_api_cancel() ran: out of every queue, freed by the tick */
    struct id_op *prev, *next;   /* ia->ops */
    struct id_op *q_prev, *q_next;
    struct id_queue *q;          /* the queue it waits in, or NULL */
    struct id_tagbuf *tb;        /* ID_OP_NEXT/ORDER/SHORT */
    struct idrpc *rpc;           /* in flight for this op */
    bool node_pending;           /* a node callback with arg = this op may come */
    uint8_t kind;                /* enum id_op_kind */
    uint8_t sub;                 /* ID_OP_PROPOSE: enum id_prop */
    uint64_t deadline_ms;        /* mono */
    uint32_t count, n_have;
    int64_t *ids;                /* count slots */
    bool ranges;                 /* ID_OP_NEXT: answer as [start, end) ranges */
    /* kind-specific */
    struct orderno_date date;
    unsigned biz;
    uint32_t campaign;
    bool created;                /* ID_OP_REDEEM: the tag was created for it */
    int64_t lease, worker, num;  /* internal endpoints */
    char *text;                  /* url (short), code (redeem use), tag (segments) */
    size_t text_len;
};

/* The node's buffer for one segment tag. */
struct id_tagbuf {
    struct id_tagbuf *prev, *next; /* ia->tagbufs, most recently used first */
    char tag[IDSEG_TAG_BYTES_MAX + 1];
    size_t tag_len;
    struct idbuf buf;
    struct id_queue waiters;
    struct idrpc *rpc;     /* the ALLOC (or CREATE) in flight */
    bool first_fetch;      /* no fetch yet: ask for the tag's own step (count 0) */
    bool autocreate;       /* orders and short urls create their tag on demand */
    int64_t create_step;
    bool creating;         /* the rpc in flight is a CREATE */
    uint64_t n_rpc_fail;
};

enum id_sf_phase { SF_OFF = 0, SF_STARTING, SF_READY };
static const char *const id_sf_phase_names[] = {"off", "starting", "ready"};

struct id_sf {
    uint8_t phase;
    uint8_t policy; /* enum id_rollback */
    int64_t lease;  /* 0: none */
    uint64_t lease_valid_until_ms; /* mono; issue only before it */
    uint64_t next_keepalive_ms;    /* mono */
    uint64_t sent_ms;              /* mono send time of the grant/keepalive in flight */
    struct idrpc *lease_rpc;       /* grant or keepalive in flight */
    int64_t worker;                /* -1: none */
    int64_t claiming;              /* worker id of the claim in flight, -1: none */
    struct idrpc *claim_rpc;
    struct idrpc *reserve_rpc;
    int64_t reserve_ceiling_ms;
    struct snowflake gen;
    int64_t floor_ms; /* what the claim read */
    uint64_t retry_at_ms;
    uint64_t last_request_ms;      /* mono: ceilings are renewed while requests come */
    uint64_t release_idle_ms;      /* idle this long: release worker and lease (0: never) */
    uint64_t n_idle_releases;
    int64_t avoid[ID_SF_AVOID]; /* workers whose floor was ahead of our clock */
    uint32_t avoid_next;
    struct id_queue waiters;
    char last_error[160];
    uint64_t n_claims, n_rollbacks, n_new_workers, n_lease_lapses, n_issued, n_waits;
};

struct id_api {
    struct api *api;
    uv_loop_t *loop;
    struct node *node;
    struct env *env;
    uv_timer_t tick;
    uv_timer_t sf_timer; /* EWAIT retries: the ms the generator asked for */
    bool closing;
    uint32_t n_refs; /* open timers + idrpcs: freed at 0 once closing */
    /* ops and connections */
    struct id_op *ops;
    uint32_t n_ops;
    struct idrpc *rpcs;
    uint32_t n_rpcs;
    /* secret and keyed generators */
    bool secret_ok;
    char secret_err[200];
    uint8_t secret[ID_SECRET_BYTES];
    char fingerprint[17];
    int fp_state; /* 0 unknown, 1 matches the cluster's, -1 differs */
    struct idrpc *fp_rpc;
    uint64_t fp_retry_ms;
    struct orderno orderno;
    struct shorturl shorturl;
    /* clocks */
    bool test_clock;
    bool test_clock_frozen;
    int64_t test_clock_offset_ms;
    int64_t test_clock_frozen_ms;
    /* segment buffers */
    struct id_tagbuf *tagbufs;
    uint32_t n_tagbufs;
    /* stateless generators */
    struct uuid_v7 v7;
    struct traceid_gen trace;
    /* snowflake */
    struct id_sf sf;
    /* counters */
    uint64_t n_alloc_rpcs, n_alloc_rpc_fail, n_ids_served;
};

const char *id_api_strerror(int rv)
{
    switch (rv) {
    case 0: return "ok";
    case ID_API_ENOMEM: return "out of memory";
    case ID_API_ECONFIG: return "bad ID service configuration";
    case ID_API_ENOTFOUND: return "no such segment tag";
    case ID_API_EUNAVAILABLE: return "no ids available in time; retry";
    case ID_API_EBUSY: return "too many ID requests waiting; retry";
    case ID_API_EROLLBACK: return "clock rollback";
    case ID_API_ESTOPPED: return "the ID service is stopping";
    case ID_API_EFAILED: return "ID request failed";
    case ID_API_ECOUNT: return "count out of range";
    default: return "unknown id_api error";
    }
}

/* ==== small helpers ========================================================== */

static uint64_t id_mono_ms(struct id_api *ia) { return ia->env->mono_ms(ia->env); }

/* Unix ms for generators: the env clock, shifted by the test offset when enabled. */
static int64_t id_wall_ms(struct id_api *ia)
{
    if (ia->test_clock_frozen)
        return ia->test_clock_frozen_ms;
    return (int64_t)ia->env->wall_ms(ia->env) + ia->test_clock_offset_ms;
}

static void id_log(struct id_api *ia, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void id_log(struct id_api *ia, const char *fmt, ...)
{
    const struct node_config *c = node_get_config(ia->node);
    if (!c->log_cb)
        return;
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->log_cb(c->log_arg, line);
}

static bool id_is_leader(struct id_api *ia)
{
    return raft_role(node_raft(ia->node)) == RAFT_LEADER;
}

/* The JSON body as an object, or a 400 answered (and NULL). An empty body is {}. */
static json_t *id_body(struct http_req *req)
{
    if (req->body_len == 0)
        return json_object();
    json_error_t jerr;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        http_respond_error(req, 400, "bad_json", "body must be a JSON object: %s (line %d, column %d)",
                           j ? "not an object" : jerr.text, jerr.line, jerr.column);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* An optional integer field in [lo, hi]: true with *out (or the default when absent);
 * false when present but not such an integer. */
static bool id_json_int(json_t *j, const char *name, int64_t lo, int64_t hi, int64_t dflt,
                        int64_t *out)
{
    json_t *v = json_object_get(j, name);
    if (!v) {
        *out = dflt;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* ?count=N in [1, max], default 1. false: a 400 was answered. */
static bool id_query_count(struct http_req *req, uint32_t max, uint32_t *out)
{
    uint64_t v = 1;
    int rv = http_query_u64(req, "count", &v);
    if (rv == HTTP_EBADVALUE || v < 1 || v > max) {
        http_respond_error(req, 400, "bad_count", "count must be an integer in 1..%u", max);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static bool id_tag_ok(const char *tag, size_t n)
{
    if (n == 0 || n > IDSEG_TAG_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = tag[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int idseg_err_status(int err)
{
    switch (err) {
    case IDSEG_ENOTFOUND: return 404;
    case IDSEG_EEXISTS:
    case IDSEG_EBACKWARD:
    case IDSEG_ETOOMANY:
    case IDSEG_EEXHAUSTED: return 409;
    case IDSEG_ENOMEM: return 503;
    default: return 400;
    }
}

static const char *idseg_err_code(int err)
{
    switch (err) {
    case IDSEG_ENOTFOUND: return "tag_not_found";
    case IDSEG_EEXISTS: return "tag_exists";
    case IDSEG_EBACKWARD: return "max_id_backward";
    case IDSEG_ETOOMANY: return "too_many_tags";
    case IDSEG_EEXHAUSTED: return "tag_exhausted";
    case IDSEG_ESTEP: return "bad_step";
    case IDSEG_ECOUNT: return "bad_count";
    case IDSEG_EINITIAL: return "bad_initial";
    case IDSEG_ETAGEMPTY:
    case IDSEG_ETAGTOOBIG:
    case IDSEG_ETAGCHAR: return "bad_tag";
    default: return "id_error";
    }
}

static void id_respond_idseg_error(struct http_req *req, int err)
{
    http_respond_error(req, idseg_err_status(err), idseg_err_code(err), "%s", idseg_strerror(err));
}

static void id_hex(const uint8_t *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = 0;
}

/* ==== secret and keys ========================================================= */

/* Reads <data-dir>/id-secret, or creates it (O_EXCL, mode 0600, fsync'd with its
 * directory) with RAND_bytes. false with ia->secret_err set on any failure. This is
 * start-up IO in the API layer, outside the pure cores, like the node's own files. */
static bool id_secret_load(struct id_api *ia)
{
    const char *dir = node_get_config(ia->node)->data_dir;
    char path[ENV_PATH_MAX];
    if (env_path_join(path, sizeof(path), dir, ID_SECRET_FILE) != 0) {
        snprintf(ia->secret_err, sizeof(ia->secret_err), "data directory path too long");
        return false;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        uint8_t fresh[ID_SECRET_BYTES];
        if (RAND_bytes(fresh, sizeof(fresh)) != 1) {
            snprintf(ia->secret_err, sizeof(ia->secret_err), "RAND_bytes failed");
            return false;
        }
        int wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (wfd >= 0) {
            ssize_t w = write(wfd, fresh, sizeof(fresh));
            bool ok = w == (ssize_t)sizeof(fresh) && fsync(wfd) == 0;
            close(wfd);
            if (!ok) {
                unlink(path);
                snprintf(ia->secret_err, sizeof(ia->secret_err), "cannot write %.120s", path);
                return false;
            }
            int dfd = open(dir, O_RDONLY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            id_log(ia, "id: created the server secret %s (copy it to every node of the cluster)",
                   path);
        }
        fd = open(path, O_RDONLY | O_CLOEXEC); /* also when another process won the race */
    }
    if (fd < 0) {
        snprintf(ia->secret_err, sizeof(ia->secret_err), "cannot open %.120s: %.60s", path,
                 strerror(errno));
        return false;
    }
    struct stat st;
    ssize_t r = -1;
    if (fstat(fd, &st) == 0 && st.st_size == (off_t)ID_SECRET_BYTES)
        r = read(fd, ia->secret, ID_SECRET_BYTES);
    close(fd);
    if (r != (ssize_t)ID_SECRET_BYTES) {
        snprintf(ia->secret_err, sizeof(ia->secret_err), "%.120s must hold exactly %u bytes", path,
                 ID_SECRET_BYTES);
        return false;
    }
    if ((st.st_mode & 077) != 0)
        id_log(ia, "id: warning: %s is readable by others (mode %o); chmod 600 it", path,
               (unsigned)(st.st_mode & 0777));
    return true;
}

/* out = HMAC-SHA256(secret, label || extra): one subkey per purpose, so no generator's
 * key is another's. */
static int id_subkey(struct id_api *ia, const char *label, const uint8_t *extra, size_t extra_len,
                     uint8_t out[IDMAC_OUT_BYTES])
{
    struct idmac m;
    int rv = idmac_init(&m, ia->secret, ID_SECRET_BYTES);
    if (rv == 0)
        rv = idmac_compute(&m, (const uint8_t *)label, strlen(label), extra, extra_len, out);
    idmac_fini(&m);
    return rv;
}

static void id_keys_init(struct id_api *ia)
{
    uint8_t k[IDMAC_OUT_BYTES];
    ia->secret_ok = id_secret_load(ia);
    if (!ia->secret_ok)
        return;
    int rv = id_subkey(ia, "conclave/idgen/fingerprint/v1", NULL, 0, k);
    if (rv == 0)
        id_hex(k, 8, ia->fingerprint);
    if (rv == 0 && (rv = id_subkey(ia, "conclave/idgen/orderno/v1", NULL, 0, k)) == 0)
        rv = orderno_init(&ia->orderno, k, sizeof(k), ORDERNO_MIDDLE_DIGITS_DEFAULT);
    if (rv == 0 && (rv = id_subkey(ia, "conclave/idgen/shorturl/v1", NULL, 0, k)) == 0)
        rv = shorturl_init(&ia->shorturl, k, sizeof(k), SHORTURL_LEN_MIN_DEFAULT);
    if (rv != 0) {
        ia->secret_ok = false;
        snprintf(ia->secret_err, sizeof(ia->secret_err), "keyed generators: %s",
                 idmac_strerror(rv));
    }
    memset(k, 0, sizeof(k));
}

static void id_keys_fini(struct id_api *ia)
{
    orderno_fini(&ia->orderno);
    shorturl_fini(&ia->shorturl);
    memset(ia->secret, 0, sizeof(ia->secret));
}

/* The keyed endpoints need the secret, and the cluster's agreement that it is the same
 * everywhere. false: a 503 was answered. */
static bool id_keys_ready(struct id_api *ia, struct http_req *req)
{
    if (!ia->secret_ok) {
        http_respond_error(req, 503, "secret_unavailable", "the server secret is unusable: %s",
                           ia->secret_err);
        return false;
    }
    if (ia->fp_state < 0) {
        http_respond_error(req, 503, "secret_mismatch",
                           "this node's %s differs from the cluster's (fingerprint %s): copy the "
                           "file from another node and restart", ID_SECRET_FILE, ia->fingerprint);
        return false;
    }
    if (ia->fp_state == 0) {
        http_respond_error(req, 503, "secret_unconfirmed",
                           "the cluster has not yet confirmed this node's secret; retry");
        return false;
    }
    return true;
}

/* ==== idrpc: a small HTTP client for calls to the leader ======================== */
/* One connection per call ("Connection: close"), FORWARD_HEADER set so a node that is
 * no longer leader answers 503 instead of relaying. The callback runs exactly once
 * with the HTTP status (0: no answer: unreachable, timeout, malformed) and the body
 * parsed as JSON (NULL if it is not), unless the call was cancelled (idrpc_cancel) or
 * the service is closing. Each call holds a reference on ia until its handles closed. */

static void id_unref(struct id_api *ia);

static void idrpc_release(struct idrpc *r)
{
    if (--r->n_open > 0)
        return;
    struct id_api *ia = r->ia;
    if (r->prev)
        r->prev->next = r->next;
    else
        ia->rpcs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    ia->n_rpcs--;
    free(r->out);
    free(r->body);
    free(r);
    id_unref(ia);
}

static void idrpc_on_closed(uv_handle_t *h) { idrpc_release(h->data); }

static void idrpc_finish(struct idrpc *r, int status)
{
    if (!r->done) {
        r->done = true;
        idrpc_cb cb = r->cb;
        r->cb = NULL;
        if (cb && !r->ia->closing) {
            json_t *j = NULL;
            if (status != 0 && r->body_len > 0)
                j = json_loadb(r->body, r->body_len, 0, NULL);
            cb(r->ia, r->arg, status, j);
            json_decref(j);
        }
    }
    if (!uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, idrpc_on_closed);
    if (!uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, idrpc_on_closed);
}

/* The callback will not run; the exchange ends on its own. NULL-safe. */
static void idrpc_cancel(struct idrpc *r)
{
    if (r)
        r->cb = NULL;
}

static int idrpc_on_body(http_parser *p, const char *at, size_t n)
{
    struct idrpc *r = p->data;
    if (r->body_len + n > ID_RPC_BODY_MAX)
        return 1;
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + n)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return 1;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    return 0;
}

static int idrpc_on_complete(http_parser *p)
{
    ((struct idrpc *)p->data)->complete = true;
    return 0;
}

static void idrpc_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void idrpc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct idrpc *r = s->data;
    if (nread > 0 && !r->done) {
        size_t used = http_parser_execute(&r->parser, &r->settings, buf->base, (size_t)nread);
        if (r->parser.http_errno != HPE_OK || used != (size_t)nread)
            idrpc_finish(r, 0);
        else if (r->complete)
            idrpc_finish(r, (int)r->parser.status_code);
    } else if (nread < 0 && !r->done) {
        http_parser_execute(&r->parser, &r->settings, NULL, 0);
        idrpc_finish(r, r->complete ? (int)r->parser.status_code : 0);
    }
    free(buf->base);
}

static void idrpc_on_written(uv_write_t *w, int status)
{
    if (status != 0)
        idrpc_finish(w->data, 0);
}

static void idrpc_on_connected(uv_connect_t *c, int status)
{
    struct idrpc *r = c->data;
    if (r->done)
        return;
    if (status != 0) {
        idrpc_finish(r, 0);
        return;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    r->write.data = r;
    if (uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, idrpc_on_written) != 0 ||
        uv_read_start((uv_stream_t *)&r->tcp, idrpc_on_alloc, idrpc_on_read) != 0)
        idrpc_finish(r, 0);
}

static void idrpc_on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct idrpc *r = g->data;
    if (!r->done) {
        r->connect.data = r;
        if (status != 0 || !ai || uv_tcp_connect(&r->connect, &r->tcp, ai->ai_addr,
                                                 idrpc_on_connected) != 0)
            idrpc_finish(r, 0);
    }
    uv_freeaddrinfo(ai);
    idrpc_release(r);
}

static void idrpc_on_timeout(uv_timer_t *t) { idrpc_finish(t->data, 0); }

/* The leader's HTTP address, or NULL when none is known (an election is running, or
 * the leader has not published its address yet). */
static const char *id_leader_addr(struct id_api *ia)
{
    uint32_t leader = raft_leader(node_raft(ia->node));
    const struct node_member *m = leader ? node_member(ia->node, leader) : NULL;
    return m && m->http_addr[0] ? m->http_addr : NULL;
}

/* POSTs body (taken, may be NULL for {}) to path on the leader. Returns the call, or
 * NULL (no leader known, limit, no memory) without calling cb. */
static struct idrpc *idrpc_post(struct id_api *ia, const char *path, json_t *body, idrpc_cb cb,
                                void *arg)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    const char *addr = id_leader_addr(ia);
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    char host[FORWARD_ADDR_BYTES], port[16];
    struct idrpc *r = NULL;
    if (ia->closing || !colon || (size_t)(colon - addr) >= sizeof(host) ||
        strlen(colon + 1) >= sizeof(port) || ia->n_rpcs >= ID_RPCS_MAX ||
        (body && !text) || !(r = calloc(1, sizeof(*r))))
        goto fail;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    size_t host_len = strlen(host);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') { /* [v6]:port */
        memmove(host, host + 1, host_len - 2);
        host[host_len - 2] = 0;
    }
    snprintf(port, sizeof(port), "%s", colon + 1);
    const char *payload = text ? text : "{}";
    size_t cap = strlen(path) + strlen(addr) + strlen(payload) + 200;
    if (!(r->out = malloc(cap)))
        goto fail;
    int n = snprintf(r->out, cap,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s: 1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     path, addr, FORWARD_HEADER, strlen(payload), payload);
    if (n < 0 || (size_t)n >= cap)
        goto fail;
    r->out_len = (size_t)n;
    free(text);
    text = NULL;
    r->ia = ia;
    r->cb = cb;
    r->arg = arg;
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    http_parser_settings_init(&r->settings);
    r->settings.on_body = idrpc_on_body;
    r->settings.on_message_complete = idrpc_on_complete;
    uv_tcp_init(ia->loop, &r->tcp);
    uv_timer_init(ia->loop, &r->timer);
    r->tcp.data = r->timer.data = r->gai.data = r;
    r->n_open = 3; /* tcp, timer, lookup */
    r->next = ia->rpcs;
    if (ia->rpcs)
        ia->rpcs->prev = r;
    ia->rpcs = r;
    ia->n_rpcs++;
    ia->n_refs++;
    uv_timer_start(&r->timer, idrpc_on_timeout, ID_RPC_TIMEOUT_MS, 0);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(ia->loop, &r->gai, idrpc_on_resolved, host, port, &hints) != 0) {
        r->cb = NULL; /* the contract: no callback when NULL is returned */
        idrpc_finish(r, 0);
        idrpc_release(r);
        return NULL;
    }
    return r;
fail:
    if (r)
        free(r->out);
    free(r);
    free(text);
    return NULL;
}

/* An integer field of an idrpc answer, or dflt. */
static int64_t id_jint(json_t *j, const char *name, int64_t dflt)
{
    json_t *v = j ? json_object_get(j, name) : NULL;
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* ==== ops ======================================================================== */

static void id_queue_push(struct id_queue *q, struct id_op *o)
{
    CC_ASSERT(o->q == NULL);
    o->q = q;
    o->q_next = NULL;
    o->q_prev = q->tail;
    if (q->tail)
        q->tail->q_next = o;
    else
        q->head = o;
    q->tail = o;
    q->n++;
}

static void id_queue_remove(struct id_op *o)
{
    struct id_queue *q = o->q;
    if (!q)
        return;
    if (o->q_prev)
        o->q_prev->q_next = o->q_next;
    else
        q->head = o->q_next;
    if (o->q_next)
        o->q_next->q_prev = o->q_prev;
    else
        q->tail = o->q_prev;
    q->n--;
    o->q = NULL;
    o->q_prev = o->q_next = NULL;
}

/* Releases o after its request was answered (or the client went away). */
static void id_op_finish(struct id_op *o)
{
    struct id_api *ia = o->ia;
    id_queue_remove(o);
    idrpc_cancel(o->rpc);
    if (o->node_pending)
        node_cancel(ia->node, o);
    if (o->prev)
        o->prev->next = o->next;
    else
        ia->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
    ia->n_ops--;
    free(o->ids);
    free(o->text);
    free(o);
}

static void id_op_on_gone(struct http_req *req, void *arg)
{
    http_respond(req, 499, NULL, NULL, 0); /* finishes req; nobody reads it */
    id_op_finish(arg);
}

/* A new op for req, answered by ID_WAIT_MS (parked) or ID_OP_MS (proposals); with
 * count > 0 it has room for count ids. NULL: a 503 was answered. */
static struct id_op *id_op_new(struct id_api *ia, struct http_req *req, uint8_t kind,
                               uint32_t count)
{
    struct id_op *o = NULL;
    if (ia->n_ops >= ID_OPS_MAX) {
        if (req)
            http_respond_error(req, 503, "busy", "%u ID requests are already waiting here; retry",
                               ID_OPS_MAX);
        return NULL;
    }
    if (!(o = calloc(1, sizeof(*o))) || (count > 0 && !(o->ids = calloc(count, sizeof(int64_t))))) {
        free(o);
        if (req)
            http_respond_error(req, 503, "no_memory", "out of memory");
        return NULL;
    }
    o->ia = ia;
    o->req = req;
    o->kind = kind;
    o->count = count;
    o->deadline_ms = id_mono_ms(ia) + (kind == ID_OP_PROPOSE ? ID_OP_MS : ID_WAIT_MS);
    o->next = ia->ops;
    if (ia->ops)
        ia->ops->prev = o;
    ia->ops = o;
    ia->n_ops++;
    if (req)
        http_req_on_close(req, id_op_on_gone, o);
    return o;
}

/* The ID_API_E* an id_api_take() caller gets for an HTTP error code. */
static int id_code_rv(int status, const char *code)
{
    if (strcmp(code, "tag_not_found") == 0)
        return ID_API_ENOTFOUND;
    if (strcmp(code, "busy") == 0)
        return ID_API_EBUSY;
    if (strcmp(code, "clock_rollback") == 0)
        return ID_API_EROLLBACK;
    if (strcmp(code, "shutting_down") == 0)
        return ID_API_ESTOPPED;
    if (strcmp(code, "bad_count") == 0)
        return ID_API_ECOUNT;
    if (status == 503 || status == 504)
        return ID_API_EUNAVAILABLE;
    return ID_API_EFAILED;
}

/* Answers o with an error and finishes it: an HTTP error for a request, the callback
 * (after o is gone, so the callback may do anything) for an id_api_take(). */
static void id_op_fail(struct id_op *o, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void id_op_fail(struct id_op *o, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (o->req) {
        http_respond_verror(o->req, status, code, fmt, ap);
        va_end(ap);
        id_op_finish(o);
        return;
    }
    char msg[HTTP_ERRMSG_BYTES];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    id_api_take_cb cb = o->cancelled ? NULL : o->cb;
    void *arg = o->cb_arg;
    id_op_finish(o);
    if (cb)
        cb(arg, id_code_rv(status, code), NULL, 0, msg);
}

/* An id_api_take() op has its ids: the callback, then o is freed. */
static void id_op_deliver(struct id_op *o)
{
    CC_ASSERT(o->req == NULL);
    CC_ASSERT(o->n_have == o->count);
    id_api_take_cb cb = o->cancelled ? NULL : o->cb;
    o->cancelled = true; /* a cancel from inside the callback must not count it */
    id_queue_remove(o);
    if (cb)
        cb(o->cb_arg, 0, o->ids, o->count, NULL);
    id_op_finish(o);
}

static void id_op_timeout(struct id_op *o)
{
    struct id_api *ia = o->ia;
    switch (o->kind) {
    case ID_OP_NEXT:
    case ID_OP_ORDER:
    case ID_OP_SHORT:
        if (o->node_pending)
            id_op_fail(o, 504, "write_timeout",
                               "not applied within %u ms; the write may or may not take effect",
                               ID_OP_MS);
        else
            id_op_fail(o, 503, "segment_unavailable",
                               "no segment of tag '%s' arrived within %u ms (is there a leader?)",
                               o->tb ? o->tb->tag : "?", ID_WAIT_MS);
        return;
    case ID_OP_SNOWFLAKE:
        id_op_fail(o, 503, "worker_unavailable",
                           "no valid snowflake worker within %u ms: %s", ID_WAIT_MS,
                           ia->sf.last_error[0] ? ia->sf.last_error : "still starting");
        break;
    case ID_OP_REDEEM:
        id_op_fail(o, 503, "unavailable",
                           "the leader did not allocate serials within %u ms; retry", ID_WAIT_MS);
        break;
    default:
        id_op_fail(o, 504, "write_timeout",
                           "not applied within %u ms; the write may or may not take effect",
                           ID_OP_MS);
        break;
    }
}

/* A node callback's status other than success, answered like api.c does. */
static void id_respond_node_status(struct http_req *req, int status)
{
    if (status == NODE_EUNKNOWN)
        http_respond_error(req, 504, "outcome_unknown", "%s", node_strerror(status));
    else if (status == NODE_ELOST)
        http_respond_error(req, 503, "leader_changed",
                           "leadership changed before the write committed; it was not applied, retry");
    else if (status == RAFT_ENOTLEADER || status == RAFT_ESTEPPEDDOWN || status == NODE_ENOTLEADER)
        http_respond_error(req, 503, "no_leader", "no leader could confirm it (%s); retry",
                           status == NODE_ENOTLEADER ? node_strerror(status) : raft_strerror(status));
    else
        http_respond_error(req, 503, "unavailable", "%s", node_strerror(status));
}

/* ==== segment buffers =========================================================== */

static void id_order_filled(struct id_op *o);
static void id_short_filled(struct id_op *o);

static void tagbuf_unlink(struct id_api *ia, struct id_tagbuf *tb)
{
    if (tb->prev)
        tb->prev->next = tb->next;
    else
        ia->tagbufs = tb->next;
    if (tb->next)
        tb->next->prev = tb->prev;
    tb->prev = tb->next = NULL;
}

static void tagbuf_push_front(struct id_api *ia, struct id_tagbuf *tb)
{
    tb->prev = NULL;
    tb->next = ia->tagbufs;
    if (ia->tagbufs)
        ia->tagbufs->prev = tb;
    ia->tagbufs = tb;
}

/* Frees a buffer with no waiters; an ALLOC in flight is forgotten (its range is lost:
 * a gap, never a reuse). */
static void tagbuf_free(struct id_api *ia, struct id_tagbuf *tb)
{
    CC_ASSERT(tb->waiters.n == 0);
    idrpc_cancel(tb->rpc);
    tagbuf_unlink(ia, tb);
    ia->n_tagbufs--;
    free(tb);
}

static void tagbuf_pump(struct id_api *ia, struct id_tagbuf *tb);

/* The buffer of tag, made if needed (evicting the least recently used idle one at the
 * limit); most recently used first, so hot tags are found at once. NULL: every buffer
 * is busy, or no memory. */
static struct id_tagbuf *tagbuf_get(struct id_api *ia, const char *tag, size_t tag_len,
                                    bool autocreate, int64_t create_step)
{
    for (struct id_tagbuf *tb = ia->tagbufs; tb; tb = tb->next) {
        if (tb->tag_len == tag_len && memcmp(tb->tag, tag, tag_len) == 0) {
            if (tb != ia->tagbufs) {
                tagbuf_unlink(ia, tb);
                tagbuf_push_front(ia, tb);
            }
            return tb;
        }
    }
    struct id_tagbuf *tb = NULL;
    if (ia->n_tagbufs >= ID_TAGBUFS_MAX) {
        for (struct id_tagbuf *t = ia->tagbufs; t; t = t->next)
            if (t->waiters.n == 0 && !t->rpc)
                tb = t; /* the last idle one is the least recently used */
        if (!tb)
            return NULL;
        tagbuf_unlink(ia, tb); /* reused in place: its unserved ids are abandoned */
        ia->n_tagbufs--;
        memset(tb, 0, sizeof(*tb));
    } else if (!(tb = calloc(1, sizeof(*tb)))) {
        return NULL;
    }
    CC_ASSERT(tag_len <= IDSEG_TAG_BYTES_MAX);
    memcpy(tb->tag, tag, tag_len);
    tb->tag_len = tag_len;
    tb->autocreate = autocreate;
    tb->create_step = create_step;
    struct idbuf_config c;
    idbuf_config_default(&c);
    struct idseg_tag_info info;
    const struct idseg *s = machine_idseg(node_machine(ia->node));
    if (idseg_get(s, tag, tag_len, &info) == 0) /* the tag's step seeds the rate-less step */
        c.step_initial = info.step < c.step_min   ? c.step_min
                         : info.step > c.step_max ? c.step_max
                                                  : info.step;
    /* The first fetch asks for the tag's own step (ALLOC 0), before any request is
     * counted: a first batch request must not pass for a sustained rate. */
    tb->first_fetch = true;
    int rv = idbuf_init(&tb->buf, &c, (int64_t)id_mono_ms(ia));
    CC_ASSERT(rv == 0);
    tagbuf_push_front(ia, tb);
    ia->n_tagbufs++;
    tagbuf_pump(ia, tb);
    return tb;
}

/* Takes ids for o until it has count or the buffer is empty. */
static bool id_op_fill(struct id_op *o, struct idbuf *b, int64_t now)
{
    for (uint32_t guard = 0; o->n_have < o->count && guard <= o->count; guard++) {
        int64_t start = 0, n = 0;
        if (idbuf_take(b, now, (int64_t)(o->count - o->n_have), &start, &n) != 0)
            return false;
        for (int64_t k = 0; k < n; k++)
            o->ids[o->n_have++] = start + k;
    }
    return o->n_have == o->count;
}

static void id_next_filled(struct id_op *o)
{
    if (!o->req) {
        o->ia->n_ids_served += o->count;
        id_op_deliver(o);
        return;
    }
    json_t *j = json_object();
    json_object_set_new(j, "tag", json_stringn(o->tb->tag, o->tb->tag_len));
    json_object_set_new(j, "count", json_integer(o->count));
    if (o->ranges) {
        json_t *arr = json_array();
        for (uint32_t i = 0; i < o->count;) {
            uint32_t k = i + 1;
            while (k < o->count && o->ids[k] == o->ids[k - 1] + 1)
                k++;
            int64_t end = o->ids[k - 1] + 1;
            json_array_append_new(arr, json_pack("[I,I]", (json_int_t)o->ids[i], (json_int_t)end));
            i = k;
        }
        json_object_set_new(j, "ranges", arr);
    } else {
        json_t *arr = json_array();
        for (uint32_t i = 0; i < o->count; i++)
            json_array_append_new(arr, json_integer(o->ids[i]));
        json_object_set_new(j, "ids", arr);
    }
    o->ia->n_ids_served += o->count;
    http_respond_json(o->req, 200, j);
    id_op_finish(o);
}

/* o has all its ids: answer it (or go on to its next step). */
static void id_op_filled(struct id_op *o)
{
    if (o->kind == ID_OP_NEXT)
        id_next_filled(o);
    else if (o->kind == ID_OP_ORDER)
        id_order_filled(o);
    else
        id_short_filled(o);
}

/* Serves the waiters in order while ids last. */
static void tagbuf_serve(struct id_api *ia, struct id_tagbuf *tb)
{
    int64_t now = (int64_t)id_mono_ms(ia);
    for (uint32_t guard = 0; tb->waiters.head && guard < ID_OPS_MAX; guard++) {
        struct id_op *o = tb->waiters.head;
        if (!id_op_fill(o, &tb->buf, now))
            break;
        id_queue_remove(o);
        id_op_filled(o);
    }
}

static void tagbuf_fail_waiters(struct id_tagbuf *tb, int status, const char *code,
                                const char *msg)
{
    for (uint32_t guard = 0; tb->waiters.head && guard < ID_OPS_MAX; guard++) {
        struct id_op *o = tb->waiters.head;
        id_op_fail(o, status, code, "tag '%s': %s", tb->tag, msg);
    }
}

static const char *id_jerr_code(json_t *j)
{
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    return c ? c : "";
}

static const char *id_jerr_msg(json_t *j)
{
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    return m ? m : "no answer from the leader";
}

static void tagbuf_on_created(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_tagbuf *tb = arg;
    tb->rpc = NULL;
    tb->creating = false;
    if (status == 201 || status == 200 || (status == 409 && strcmp(id_jerr_code(body), "tag_exists") == 0)) {
        tb->first_fetch = true; /* the tick fetches after the failed ALLOC's retry_ms */
    } else if (status >= 400 && status < 500) {
        tagbuf_fail_waiters(tb, status, id_jerr_code(body), id_jerr_msg(body));
        tagbuf_free(ia, tb);
        return;
    }
    tagbuf_pump(ia, tb);
}

static void tagbuf_on_alloc(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_tagbuf *tb = arg;
    int64_t now = (int64_t)id_mono_ms(ia);
    tb->rpc = NULL;
    if (status == 200) {
        int rv = idbuf_fetch_done(&tb->buf, now, id_jint(body, "start", 0), id_jint(body, "end", 0));
        tb->first_fetch = false;
        if (rv != 0)
            id_log(ia, "id: tag %s: the leader's range was refused: %s", tb->tag, idbuf_strerror(rv));
        tagbuf_serve(ia, tb);
    } else {
        idbuf_fetch_failed(&tb->buf, now);
        ia->n_alloc_rpc_fail++;
        tb->n_rpc_fail++;
        bool not_found = status == 404 && strcmp(id_jerr_code(body), "tag_not_found") == 0;
        if (not_found && tb->autocreate) {
            json_t *j = json_pack("{s:s, s:I, s:I}", "tag", tb->tag, "initial", (json_int_t)1,
                                  "step", (json_int_t)tb->create_step);
            tb->creating = true;
            tb->rpc = idrpc_post(ia, "/v1/id/segments", j, tagbuf_on_created, tb);
            if (!tb->rpc)
                tb->creating = false;
            return;
        }
        if (status >= 400 && status < 500) {
            tagbuf_fail_waiters(tb, status, id_jerr_code(body), id_jerr_msg(body));
            tagbuf_free(ia, tb);
            return;
        }
        /* no answer or 5xx: the waiters keep waiting; the tick retries after retry_ms */
    }
    tagbuf_pump(ia, tb);
}

/* Starts a fetch when the buffer says one is due. */
static void tagbuf_pump(struct id_api *ia, struct id_tagbuf *tb)
{
    int64_t count = 0;
    if (tb->rpc || ia->closing || !idbuf_fetch_due(&tb->buf, (int64_t)id_mono_ms(ia), &count))
        return;
    if (tb->first_fetch)
        count = 0;
    char path[sizeof(ID_PREFIX) + IDSEG_TAG_BYTES_MAX + 32];
    snprintf(path, sizeof(path), ID_PREFIX "segments/%s/alloc", tb->tag);
    ia->n_alloc_rpcs++;
    tb->rpc = idrpc_post(ia, path, json_pack("{s:I}", "count", (json_int_t)count),
                         tagbuf_on_alloc, tb);
    if (!tb->rpc) {
        idbuf_fetch_failed(&tb->buf, (int64_t)id_mono_ms(ia));
        ia->n_alloc_rpc_fail++;
    }
}

/* Serves o (count ids of tb) now, or parks it in order behind earlier waiters. */
static void tagbuf_request(struct id_api *ia, struct id_tagbuf *tb, struct id_op *o)
{
    o->tb = tb;
    if (tb->waiters.n == 0 && id_op_fill(o, &tb->buf, (int64_t)id_mono_ms(ia))) {
        id_op_filled(o);
    } else {
        id_queue_push(&tb->waiters, o);
    }
    tagbuf_pump(ia, tb);
}

/* ==== leader-side proposals ========================================================= */

enum id_prop {
    PROP_CREATE = 1, /* idseg CREATE */
    PROP_UPDATE,     /* idseg UPDATE */
    PROP_ALLOC,      /* idseg ALLOC (internal: a node's buffer fetch) */
    PROP_GRANT,      /* lease GRANT for a worker lease */
    PROP_KEEPALIVE,  /* node_lease_keepalive */
    PROP_CLAIM,      /* txn: workers/W with my lease, if absent; read floors/W */
    PROP_RESERVE,    /* txn: floors/W = ceiling, if workers/W carries my lease */
    PROP_RELEASE,    /* txn: delete workers/W, if it carries my lease */
    PROP_FP,         /* txn: the secret fingerprint, put-if-absent */
    PROP_SHORT,      /* txn: short/<code> = url, put-if-absent */
    PROP_REDEEM_USE, /* txn: redeemed/<campaign>/<serial>, put-if-absent */
    PROP_READ_TAG,   /* node_read, then show one tag */
    PROP_READ_LIST,  /* node_read, then list tags */
    PROP_READ_SHORT, /* node_read, then redirect */
};

static int64_t id_parse_i64(const uint8_t *p, uint32_t n)
{
    int64_t v = 0;
    for (uint32_t i = 0; i < n && i < 19; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static json_t *id_tag_json(const struct idseg_tag_info *t)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "tag", t->tag, "max_id",
                     (json_int_t)t->max_id, "step", (json_int_t)t->step, "created_ms",
                     (json_int_t)t->created_ms, "updated_ms", (json_int_t)t->updated_ms, "allocs",
                     (json_int_t)t->n_allocs);
}

static void id_short_applied(struct id_op *o, const struct kv_result *kv);
static void id_redeem_use_applied(struct id_op *o, const struct kv_result *kv);

/* The kv part of a txn proposal's answer. */
static void id_txn_applied(struct id_op *o, const struct sm_result *res)
{
    const struct kv_result *kv = &res->kv;
    json_t *j = json_object();
    if (o->sub == PROP_CLAIM) {
        bool claimed = kv->succeeded;
        const struct kv_range_resp *w = kv->n_responses >= 2 && !kv->succeeded
                                            ? &kv->responses[0].range : NULL;
        if (w && w->n_kvs == 1 && w->kvs[0].lease == o->lease)
            claimed = true; /* a retried claim of ours */
        const struct kv_range_resp *f = kv->n_responses >= 2 ? &kv->responses[1].range : NULL;
        int64_t floor_ms = f && f->n_kvs == 1 ? id_parse_i64(f->kvs[0].value, f->kvs[0].value_len) : 0;
        json_object_set_new(j, "worker", json_integer(o->worker));
        json_object_set_new(j, "claimed", json_boolean(claimed));
        json_object_set_new(j, "floor_ms", json_integer(floor_ms));
        if (w && w->n_kvs == 1)
            json_object_set_new(j, "holder_lease", json_integer(w->kvs[0].lease));
    } else if (o->sub == PROP_RESERVE) {
        json_object_set_new(j, "committed", json_boolean(kv->succeeded));
    } else if (o->sub == PROP_RELEASE) {
        json_object_set_new(j, "released", json_boolean(kv->succeeded));
    } else if (o->sub == PROP_FP) {
        const struct kv_range_resp *f = kv->n_responses >= 1 && !kv->succeeded
                                            ? &kv->responses[0].range : NULL;
        bool match = kv->succeeded;
        if (f && f->n_kvs == 1) {
            match = f->kvs[0].value_len == o->text_len &&
                    memcmp(f->kvs[0].value, o->text, o->text_len) == 0;
            json_object_set_new(j, "stored", json_stringn((const char *)f->kvs[0].value,
                                                          f->kvs[0].value_len));
        }
        json_object_set_new(j, "match", json_boolean(match));
    } else if (o->sub == PROP_SHORT) {
        json_decref(j);
        id_short_applied(o, kv);
        return;
    } else {
        json_decref(j);
        id_redeem_use_applied(o, kv);
        return;
    }
    http_respond_json(o->req, 200, j);
    id_op_finish(o);
}

static void id_on_applied(void *arg, int status, const struct sm_result *res)
{
    struct id_op *o = arg;
    o->node_pending = false;
    if (status != 0 && !(res && res->err)) {
        id_respond_node_status(o->req, status);
        id_op_finish(o);
        return;
    }
    CC_ASSERT(res != NULL);
    if (res->err) {
        if (res->tag == SM_TAG_IDSEG) {
            id_respond_idseg_error(o->req, res->err);
        } else {
            int st = res->err == LEASE_ENOTFOUND ? 404 : 409;
            http_respond_error(o->req, st, res->err == LEASE_ENOTFOUND ? "lease_not_found" : "refused",
                               "%s", sm_strerror(res->err));
        }
        id_op_finish(o);
        return;
    }
    json_t *j = NULL;
    int code = 200;
    switch (o->sub) {
    case PROP_CREATE:
    case PROP_UPDATE:
        code = o->sub == PROP_CREATE ? 201 : 200;
        j = json_pack("{s:s, s:I, s:I}", "tag", o->text, "max_id", (json_int_t)res->idseg.max_id,
                      "step", (json_int_t)res->idseg.step);
        break;
    case PROP_ALLOC:
        j = json_pack("{s:s, s:I, s:I, s:I, s:I}", "tag", o->text, "start",
                      (json_int_t)res->idseg.start, "end", (json_int_t)res->idseg.end, "max_id",
                      (json_int_t)res->idseg.max_id, "step", (json_int_t)res->idseg.step);
        break;
    case PROP_GRANT:
        j = json_pack("{s:I, s:I}", "lease", (json_int_t)res->lease.id, "ttl_ms",
                      (json_int_t)res->lease.ttl_ms);
        break;
    default:
        id_txn_applied(o, res);
        return;
    }
    http_respond_json(o->req, code, j);
    id_op_finish(o);
}

/* Proposes cmd (borrowed) for op o, on the leader. On failure answers and finishes o. */
static void id_op_propose(struct id_op *o, const uint8_t *cmd, size_t n)
{
    int rv = node_propose(o->ia->node, cmd, n, id_on_applied, o);
    if (rv != 0) {
        id_respond_node_status(o->req, rv);
        id_op_finish(o);
        return;
    }
    o->node_pending = true;
}

/* Leader-only requests: a follower relays the whole request (or answers 503 to a
 * relayed one). true: go on here. Call before making an op. */
static bool id_leader_or_forward(struct id_api *ia, struct http_req *req)
{
    if (id_is_leader(ia))
        return true;
    api_respond_node_error(ia->api, req, NODE_ENOTLEADER);
    return false;
}

/* A proposal op with a copy of text (the tag, the url, ...). NULL: answered. */
static struct id_op *id_prop_op(struct id_api *ia, struct http_req *req, uint8_t sub,
                                const char *text, size_t text_len)
{
    struct id_op *o = id_op_new(ia, req, ID_OP_PROPOSE, 0);
    if (!o)
        return NULL;
    o->sub = sub;
    if (text) {
        if (!(o->text = malloc(text_len + 1))) {
            http_respond_error(req, 503, "no_memory", "out of memory");
            id_op_finish(o);
            return NULL;
        }
        memcpy(o->text, text, text_len);
        o->text[text_len] = 0;
        o->text_len = text_len;
    }
    return o;
}

/* A txn of one compare and up to two ops per branch, proposed for o. */
static void id_op_propose_txn(struct id_op *o, const struct kv_compare *cmp, const struct kv_op *succ,
                              uint32_t n_succ, const struct kv_op *fail, uint32_t n_fail)
{
    struct kv_txn_req t = {.compares = cmp, .n_compares = 1, .success = succ, .n_success = n_succ,
                           .failure = fail, .n_failure = n_fail};
    uint8_t *cmd = NULL;
    size_t n = 0;
    int rv = kvcmd_encode_txn(&t, &cmd, &n);
    if (rv != 0) {
        http_respond_error(o->req, 400, "kv_error", "%s", kv_strerror(rv));
        id_op_finish(o);
        return;
    }
    id_op_propose(o, cmd, n);
    free(cmd);
}

/* ==== segment endpoints ============================================================ */

/* POST /v1/id/segments {"tag", "initial" (default 1), "step" (default 1000)} */
static void seg_create(struct id_api *ia, struct http_req *req)
{
    json_t *j = id_body(req);
    if (!j)
        return;
    const char *tag = json_string_value(json_object_get(j, "tag"));
    size_t tag_len = tag ? json_string_length(json_object_get(j, "tag")) : 0;
    int64_t initial = 0, step = 0;
    if (!tag || !id_tag_ok(tag, tag_len)) {
        http_respond_error(req, 400, "bad_tag", "\"tag\" must be 1-%u characters of [A-Za-z0-9._:-]",
                           IDSEG_TAG_BYTES_MAX);
    } else if (!id_json_int(j, "initial", IDSEG_INITIAL_MIN, INT64_MAX, 1, &initial)) {
        http_respond_error(req, 400, "bad_initial", "\"initial\" must be an integer >= %d",
                           IDSEG_INITIAL_MIN);
    } else if (!id_json_int(j, "step", IDSEG_STEP_MIN, IDSEG_STEP_MAX, IDBUF_STEP_INITIAL_DEFAULT,
                            &step)) {
        http_respond_error(req, 400, "bad_step", "\"step\" must be an integer in %d..%d",
                           IDSEG_STEP_MIN, IDSEG_STEP_MAX);
    } else if (id_leader_or_forward(ia, req)) {
        uint8_t cmd[IDSEG_CMD_BYTES_MAX];
        size_t n = 0;
        int rv = idseg_encode_create(tag, tag_len, initial, step, id_wall_ms(ia), cmd, sizeof(cmd), &n);
        struct id_op *o = rv == 0 ? id_prop_op(ia, req, PROP_CREATE, tag, tag_len) : NULL;
        if (rv != 0)
            id_respond_idseg_error(req, rv);
        else if (o)
            id_op_propose(o, cmd, n);
    }
    json_decref(j);
}

/* PUT /v1/id/segments/{tag} {"step"?, "max_id"?} */
static void seg_update(struct id_api *ia, struct http_req *req, const char *tag, size_t tag_len)
{
    json_t *j = id_body(req);
    if (!j)
        return;
    int64_t step = 0, max_id = 0;
    bool has_step = json_object_get(j, "step") != NULL;
    bool has_max = json_object_get(j, "max_id") != NULL;
    if (!id_json_int(j, "step", IDSEG_STEP_MIN, IDSEG_STEP_MAX, 0, &step)) {
        http_respond_error(req, 400, "bad_step", "\"step\" must be an integer in %d..%d",
                           IDSEG_STEP_MIN, IDSEG_STEP_MAX);
    } else if (!id_json_int(j, "max_id", 1, INT64_MAX, 0, &max_id)) {
        http_respond_error(req, 400, "bad_max_id", "\"max_id\" must be a positive integer");
    } else if (!has_step && !has_max) {
        http_respond_error(req, 400, "bad_request", "give \"step\" and/or \"max_id\"");
    } else if (id_leader_or_forward(ia, req)) {
        uint8_t cmd[IDSEG_CMD_BYTES_MAX];
        size_t n = 0;
        int rv = idseg_encode_update(tag, tag_len, has_step, step, has_max, max_id, id_wall_ms(ia),
                                     cmd, sizeof(cmd), &n);
        struct id_op *o = rv == 0 ? id_prop_op(ia, req, PROP_UPDATE, tag, tag_len) : NULL;
        if (rv != 0)
            id_respond_idseg_error(req, rv);
        else if (o)
            id_op_propose(o, cmd, n);
    }
    json_decref(j);
}

/* POST /v1/id/segments/{tag}/alloc {"count"}: leader only; what a node's buffer asks. */
static void seg_alloc(struct id_api *ia, struct http_req *req, const char *tag, size_t tag_len)
{
    json_t *j = id_body(req);
    if (!j)
        return;
    int64_t count = 0;
    if (!id_json_int(j, "count", 0, IDSEG_COUNT_MAX, 0, &count)) {
        http_respond_error(req, 400, "bad_count", "\"count\" must be an integer in 0..%d (0: the "
                           "tag's step)", IDSEG_COUNT_MAX);
    } else if (id_leader_or_forward(ia, req)) {
        uint8_t cmd[IDSEG_CMD_BYTES_MAX];
        size_t n = 0;
        int rv = idseg_encode_alloc(tag, tag_len, count, id_wall_ms(ia), cmd, sizeof(cmd), &n);
        struct id_op *o = rv == 0 ? id_prop_op(ia, req, PROP_ALLOC, tag, tag_len) : NULL;
        if (rv != 0)
            id_respond_idseg_error(req, rv);
        else if (o)
            id_op_propose(o, cmd, n);
    }
    json_decref(j);
}

static json_t *tagbuf_json(struct id_api *ia, const struct id_tagbuf *tb)
{
    int64_t now = (int64_t)id_mono_ms(ia);
    const struct idbuf *b = &tb->buf;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:i}", "remaining",
                     (json_int_t)idbuf_remaining(b), "served", (json_int_t)b->n_served,
                     "fetches", (json_int_t)b->n_fetches, "empty_cold", (json_int_t)b->n_empty_cold,
                     "empty_dry", (json_int_t)b->n_empty_dry, "last_step", (json_int_t)b->last_step,
                     "rate_per_s", idbuf_rate_per_ms(b, now) * 1000.0, "fetching", b->fetching,
                     "waiting", (int)tb->waiters.n);
}

static void id_on_read(void *arg, int status)
{
    struct id_op *o = arg;
    struct id_api *ia = o->ia;
    o->node_pending = false;
    if (status != 0) {
        id_respond_node_status(o->req, status);
        id_op_finish(o);
        return;
    }
    if (o->sub == PROP_READ_SHORT) {
        char key[sizeof(ID_KEY_SHORT) + SHORTURL_LEN_MAX + 1];
        snprintf(key, sizeof(key), ID_KEY_SHORT "%s", o->text);
        struct kv_range_req r = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
        struct kv_range_resp resp;
        int rv = kv_range(node_kv(ia->node), &r, &resp);
        if (rv != 0) {
            http_respond_error(o->req, 500, "kv_error", "%s", kv_strerror(rv));
        } else if (resp.n_kvs == 0) {
            http_respond_error(o->req, 404, "short_not_found", "no short url '%s'", o->text);
        } else {
            char url[ID_URL_BYTES_MAX + 1];
            uint32_t n = resp.kvs[0].value_len < ID_URL_BYTES_MAX ? resp.kvs[0].value_len
                                                                  : ID_URL_BYTES_MAX;
            memcpy(url, resp.kvs[0].value, n);
            url[n] = 0;
            if (http_respond_header(o->req, "Location", url) != 0) {
                http_respond_error(o->req, 500, "bad_stored_url", "the stored url is not a header value");
            } else {
                json_t *j = json_pack("{s:s, s:s}", "code", o->text, "url", url);
                http_respond_json(o->req, 302, j);
            }
        }
        if (rv == 0)
            kv_range_resp_free(&resp);
        id_op_finish(o);
        return;
    }
    const struct idseg *s = machine_idseg(node_machine(ia->node));
    if (o->sub == PROP_READ_LIST) {
        uint32_t i = o->text ? idseg_lower_bound(s, o->text, o->text_len) : 0;
        json_t *arr = json_array();
        struct idseg_tag_info t;
        uint32_t total = idseg_count(s);
        for (uint32_t k = 0; i < total && k < (uint32_t)o->num; i++) {
            idseg_at(s, i, &t);
            if (o->text && t.tag_len == o->text_len && memcmp(t.tag, o->text, o->text_len) == 0)
                continue; /* ?after= is exclusive */
            json_array_append_new(arr, id_tag_json(&t));
            k++;
        }
        json_t *j = json_pack("{s:o, s:b}", "tags", arr, "more", i < total);
        http_respond_json(o->req, 200, j);
        id_op_finish(o);
        return;
    }
    struct idseg_tag_info t;
    if (idseg_get(s, o->text, o->text_len, &t) != 0) {
        http_respond_error(o->req, 404, "tag_not_found", "no tag '%s'", o->text);
    } else {
        json_t *j = id_tag_json(&t);
        for (struct id_tagbuf *tb = ia->tagbufs; tb; tb = tb->next)
            if (tb->tag_len == o->text_len && memcmp(tb->tag, o->text, o->text_len) == 0)
                json_object_set_new(j, "buffer", tagbuf_json(ia, tb));
        http_respond_json(o->req, 200, j);
    }
    id_op_finish(o);
}

/* A linearizable read (ReadIndex), then id_on_read does o->sub. */
static void id_op_read(struct id_op *o)
{
    int rv = node_read(o->ia->node, true, id_on_read, o);
    if (rv != 0) {
        id_respond_node_status(o->req, rv);
        id_op_finish(o);
        return;
    }
    o->node_pending = true;
}

/* GET /v1/id/segments/{tag} */
static void seg_get(struct id_api *ia, struct http_req *req, const char *tag, size_t tag_len)
{
    struct id_op *o = id_prop_op(ia, req, PROP_READ_TAG, tag, tag_len);
    if (o)
        id_op_read(o);
}

/* GET /v1/id/segments?after=TAG&limit=N: tags in byte order, after TAG (exclusive). */
static void seg_list(struct id_api *ia, struct http_req *req)
{
    uint64_t limit = ID_LIST_MAX;
    char after[IDSEG_TAG_BYTES_MAX + 1];
    size_t after_len = 0;
    int rv = http_query_get(req, "after", after, sizeof(after), &after_len);
    if (http_query_u64(req, "limit", &limit) == HTTP_EBADVALUE || limit < 1 ||
        limit > ID_LIST_MAX) {
        http_respond_error(req, 400, "bad_limit", "limit must be an integer in 1..%u", ID_LIST_MAX);
        return;
    }
    if (rv != 0 && rv != HTTP_ENOTFOUND) {
        http_respond_error(req, 400, "bad_after", "after must be a tag");
        return;
    }
    struct id_op *o = id_prop_op(ia, req, PROP_READ_LIST, rv == 0 && after_len ? after : NULL,
                                 after_len);
    if (!o)
        return;
    o->num = (int64_t)limit;
    id_op_read(o);
}

/* POST /v1/id/segments/{tag}/next?count=N[&ranges=true] */
static void seg_next(struct id_api *ia, struct http_req *req, const char *tag, size_t tag_len)
{
    uint32_t count = 0;
    if (!id_query_count(req, ID_COUNT_MAX, &count))
        return;
    struct id_tagbuf *tb = tagbuf_get(ia, tag, tag_len, false, 0);
    if (!tb) {
        http_respond_error(req, 503, "busy", "all %u tag buffers of this node are in use; retry",
                           ID_TAGBUFS_MAX);
        return;
    }
    struct id_op *o = id_op_new(ia, req, ID_OP_NEXT, count);
    if (!o)
        return;
    bool ranges = false;
    o->ranges = http_query_bool(req, "ranges", &ranges) == 0 && ranges;
    tagbuf_request(ia, tb, o);
}

/* ==== leader-side internal endpoints ================================================ */
/* POST /v1/id/internal/{op}: what the nodes' background work asks the leader. Plain
 * JSON in and out; a follower relays them like any write. */

static void id_on_keepalive(void *arg, int status, int64_t ttl_ms)
{
    struct id_op *o = arg;
    o->node_pending = false;
    if (status == 0) {
        http_respond_json(o->req, 200, json_pack("{s:I, s:I}", "lease", (json_int_t)o->lease,
                                                 "ttl_ms", (json_int_t)ttl_ms));
    } else if (status == LEASE_TIMER_ENOTFOUND || status == LEASE_TIMER_EEXPIRED) {
        http_respond_error(o->req, 404, "lease_not_found", "lease %" PRId64 ": %s", o->lease,
                           status == LEASE_TIMER_EEXPIRED ? "expired" : "not found");
    } else {
        id_respond_node_status(o->req, status);
    }
    id_op_finish(o);
}

static void id_worker_keys(int64_t worker, char wkey[64], char fkey[64])
{
    snprintf(wkey, 64, ID_KEY_WORKERS "%04" PRId64, worker);
    snprintf(fkey, 64, ID_KEY_FLOORS "%04" PRId64, worker);
}

static void internal_route(struct id_api *ia, struct http_req *req, const char *what)
{
    if (req->method != HTTP_POST) {
        http_respond_error(req, 405, "bad_method", "use POST on /v1/id/internal/%s", what);
        return;
    }
    json_t *j = id_body(req);
    if (!j)
        return;
    struct snowflake_layout l;
    snowflake_layout_default(&l);
    int64_t worker_max = (int64_t)snowflake_worker_max(&l);
    int64_t ttl = 0, lease = 0, worker = 0, ceiling = 0;
    bool ok_lease = id_json_int(j, "lease", 1, INT64_MAX, 0, &lease) && lease >= 1;
    bool ok_worker = id_json_int(j, "worker", 0, worker_max, -1, &worker) && worker >= 0;
    const char *fp = json_string_value(json_object_get(j, "fingerprint"));
    const char *node_name = json_string_value(json_object_get(j, "node"));
    bool is_lease = strcmp(what, "lease") == 0, is_keepalive = strcmp(what, "keepalive") == 0;
    bool is_claim = strcmp(what, "claim") == 0, is_reserve = strcmp(what, "reserve") == 0;
    bool is_release = strcmp(what, "release") == 0, is_fp = strcmp(what, "fingerprint") == 0;
    if (is_lease && !(id_json_int(j, "ttl_ms", LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX, 0, &ttl) &&
                      ttl > 0)) {
        http_respond_error(req, 400, "bad_ttl", "\"ttl_ms\" must be in %d..%lld", LEASE_TTL_MS_MIN,
                           (long long)LEASE_TTL_MS_MAX);
    } else if ((is_keepalive || is_claim || is_reserve || is_release) && !ok_lease) {
        http_respond_error(req, 400, "bad_lease", "\"lease\" must be a lease id >= 1");
    } else if ((is_claim || is_reserve || is_release) && !ok_worker) {
        http_respond_error(req, 400, "bad_worker", "\"worker\" must be in 0..%" PRId64, worker_max);
    } else if (is_reserve && !(id_json_int(j, "ceiling_ms", 1, INT64_MAX, 0, &ceiling) && ceiling > 0)) {
        http_respond_error(req, 400, "bad_ceiling", "\"ceiling_ms\" must be a positive Unix ms");
    } else if (is_fp && (!fp || strlen(fp) != 16)) {
        http_respond_error(req, 400, "bad_fingerprint", "\"fingerprint\" must be 16 hex digits");
    } else if (!is_lease && !is_keepalive && !is_claim && !is_reserve && !is_release && !is_fp) {
        http_respond_error(req, 404, "not_found", "no internal ID endpoint '%s'", what);
    } else if (id_leader_or_forward(ia, req)) {
        uint8_t sub = is_lease ? PROP_GRANT : is_keepalive ? PROP_KEEPALIVE : is_claim ? PROP_CLAIM
                      : is_reserve ? PROP_RESERVE : is_release ? PROP_RELEASE : PROP_FP;
        struct id_op *o = id_prop_op(ia, req, sub, is_fp ? fp : NULL, is_fp ? strlen(fp) : 0);
        if (!o) {
            json_decref(j);
            return;
        }
        o->lease = lease;
        o->worker = worker;
        char wkey[64], fkey[64], val[NODE_NAME_BYTES + 64];
        id_worker_keys(worker, wkey, fkey);
        struct kv_compare cmp = {.key = (const uint8_t *)wkey, .key_len = (uint32_t)strlen(wkey),
                                 .target = KV_CMP_LEASE, .op = KV_CMP_EQUAL, .number = lease};
        struct kv_op succ[2], fail[2];
        memset(succ, 0, sizeof(succ));
        memset(fail, 0, sizeof(fail));
        if (is_lease) {
            uint8_t cmd[LEASE_CMD_BYTES_MAX];
            size_t n = 0;
            int rv = lease_encode_grant(0, ttl, cmd, sizeof(cmd), &n);
            CC_ASSERT(rv == 0);
            id_op_propose(o, cmd, n);
        } else if (is_keepalive) {
            int rv = node_lease_keepalive(ia->node, lease, id_on_keepalive, o);
            if (rv != 0) {
                id_respond_node_status(req, rv);
                id_op_finish(o);
            } else {
                o->node_pending = true;
            }
        } else if (is_claim) {
            snprintf(val, sizeof(val), "node=%s lease=%" PRId64, node_name ? node_name : "?", lease);
            cmp.target = KV_CMP_CREATE;
            cmp.number = 0;
            succ[0].type = KV_OP_PUT;
            succ[0].put = (struct kv_put_req){.key = (const uint8_t *)wkey,
                                              .key_len = (uint32_t)strlen(wkey),
                                              .value = (const uint8_t *)val,
                                              .value_len = (uint32_t)strlen(val), .lease = lease};
            succ[1].type = KV_OP_RANGE;
            succ[1].range = (struct kv_range_req){.key = (const uint8_t *)fkey,
                                                  .key_len = (uint32_t)strlen(fkey)};
            fail[0].type = KV_OP_RANGE;
            fail[0].range = (struct kv_range_req){.key = (const uint8_t *)wkey,
                                                  .key_len = (uint32_t)strlen(wkey)};
            fail[1] = succ[1];
            id_op_propose_txn(o, &cmp, succ, 2, fail, 2);
        } else if (is_reserve) {
            snprintf(val, sizeof(val), "%" PRId64, ceiling);
            succ[0].type = KV_OP_PUT;
            succ[0].put = (struct kv_put_req){.key = (const uint8_t *)fkey,
                                              .key_len = (uint32_t)strlen(fkey),
                                              .value = (const uint8_t *)val,
                                              .value_len = (uint32_t)strlen(val)};
            id_op_propose_txn(o, &cmp, succ, 1, fail, 0);
        } else if (is_release) {
            succ[0].type = KV_OP_DELETE;
            succ[0].del = (struct kv_delete_req){.key = (const uint8_t *)wkey,
                                                 .key_len = (uint32_t)strlen(wkey)};
            id_op_propose_txn(o, &cmp, succ, 1, fail, 0);
        } else {
            const char *k = ID_KEY_FP;
            cmp = (struct kv_compare){.key = (const uint8_t *)k, .key_len = (uint32_t)strlen(k),
                                      .target = KV_CMP_CREATE, .op = KV_CMP_EQUAL, .number = 0};
            succ[0].type = KV_OP_PUT;
            succ[0].put = (struct kv_put_req){.key = (const uint8_t *)k,
                                              .key_len = (uint32_t)strlen(k),
                                              .value = (const uint8_t *)o->text,
                                              .value_len = (uint32_t)o->text_len};
            fail[0].type = KV_OP_RANGE;
            fail[0].range = (struct kv_range_req){.key = (const uint8_t *)k,
                                                  .key_len = (uint32_t)strlen(k)};
            id_op_propose_txn(o, &cmp, succ, 1, fail, 1);
        }
    }
    json_decref(j);
}

/* ==== snowflake ====================================================================== */

static void sf_pump(struct id_api *ia);
static void sf_serve(struct id_api *ia);

static void sf_error(struct id_api *ia, const char *what, int status, json_t *body)
{
    snprintf(ia->sf.last_error, sizeof(ia->sf.last_error), "%s: %s (HTTP %d)", what,
             status ? id_jerr_msg(body) : "no answer from the leader", status);
}

static bool sf_lease_valid(const struct id_sf *sf, uint64_t now)
{
    return sf->lease != 0 && now < sf->lease_valid_until_ms;
}

static void sf_avoid(struct id_sf *sf, int64_t worker)
{
    sf->avoid[sf->avoid_next++ % ID_SF_AVOID] = worker;
}

/* Stops using the worker id; with release, deletes its key (guarded by our lease) so
 * it returns to the pool now rather than when the lease dies. Our committed ceiling
 * stays in floors/W: the next holder starts above every id we issued. */
static void sf_drop_worker(struct id_api *ia, bool release)
{
    struct id_sf *sf = &ia->sf;
    if (sf->worker >= 0 && release && sf->lease) {
        (void)idrpc_post(ia, ID_PREFIX "internal/release",
                         json_pack("{s:I, s:I}", "worker", (json_int_t)sf->worker, "lease",
                                   (json_int_t)sf->lease),
                         NULL, NULL);
    }
    if (sf->reserve_rpc) {
        idrpc_cancel(sf->reserve_rpc);
        sf->reserve_rpc = NULL;
        snowflake_reserve_end(&sf->gen, sf->reserve_ceiling_ms, false);
    }
    sf->worker = -1;
}

static void sf_drop_lease(struct id_api *ia)
{
    struct id_sf *sf = &ia->sf;
    sf_drop_worker(ia, false); /* the key dies with the lease */
    idrpc_cancel(sf->lease_rpc);
    idrpc_cancel(sf->claim_rpc);
    sf->lease_rpc = sf->claim_rpc = NULL;
    sf->claiming = -1;
    sf->lease = 0;
    sf->lease_valid_until_ms = 0;
}

static void sf_on_lease(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_sf *sf = &ia->sf;
    uint64_t now = id_mono_ms(ia);
    bool grant = arg == NULL;
    sf->lease_rpc = NULL;
    if (status == 200) {
        int64_t ttl = id_jint(body, "ttl_ms", 0);
        if (grant)
            sf->lease = id_jint(body, "lease", 0);
        /* counted from when we sent it: the leader's countdown starts later */
        if (ttl > ID_SF_MARGIN_MS)
            sf->lease_valid_until_ms = sf->sent_ms + (uint64_t)(ttl - ID_SF_MARGIN_MS);
        sf->next_keepalive_ms = sf->sent_ms + (uint64_t)(ttl > 0 ? ttl : ID_SF_TTL_MS) / 3;
    } else if (!grant && status == 404) {
        sf->n_lease_lapses++;
        sf_error(ia, "worker lease lost", status, body);
        id_log(ia, "id: snowflake worker lease %" PRId64 " is gone; worker %" PRId64
                   " abandoned, claiming a new one", sf->lease, sf->worker);
        sf_drop_lease(ia);
    } else {
        sf_error(ia, grant ? "worker lease grant" : "worker lease keepalive", status, body);
        if (grant)
            sf->retry_at_ms = now + ID_SF_RETRY_MS;
        else
            sf->next_keepalive_ms = now + ID_SF_RETRY_MS;
    }
    sf_pump(ia);
    sf_serve(ia);
}

static void sf_on_claim(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_sf *sf = &ia->sf;
    int64_t w = sf->claiming;
    sf->claim_rpc = NULL;
    sf->claiming = -1;
    if (status == 200 && json_is_true(json_object_get(body, "claimed"))) {
        int64_t floor_ms = id_jint(body, "floor_ms", 0);
        struct snowflake_config c;
        snowflake_config_default(&c);
        c.worker_id = (uint64_t)w;
        c.floor_ms = floor_ms;
        c.tolerance_ms = sf->policy == ID_RB_WAIT ? SNOWFLAKE_TOLERANCE_MS_MAX
                                                  : SNOWFLAKE_TOLERANCE_MS_DEFAULT;
        int rv = snowflake_init(&sf->gen, &c);
        CC_ASSERT(rv == 0);
        sf->worker = w;
        sf->floor_ms = floor_ms;
        sf->n_claims++;
        id_log(ia, "id: snowflake worker %" PRId64 " claimed with lease %" PRId64
                   " (floor %" PRId64 ")", w, sf->lease, floor_ms);
        if (sf->policy == ID_RB_NEW_WORKER && floor_ms > id_wall_ms(ia) + c.tolerance_ms) {
            /* its last holder reserved past our clock: a rollback at start-up */
            sf->n_rollbacks++;
            sf->n_new_workers++;
            sf_avoid(sf, w);
            snprintf(sf->last_error, sizeof(sf->last_error),
                     "worker %" PRId64 "'s floor is %" PRId64 " ms ahead of our clock", w,
                     floor_ms - id_wall_ms(ia));
            sf_drop_worker(ia, true);
        }
    } else if (status == 200) {
        sf_avoid(sf, w); /* held by another node: our view of the keys was stale */
    } else if (status == 404 && strcmp(id_jerr_code(body), "lease_not_found") == 0) {
        sf_error(ia, "worker claim", status, body);
        sf_drop_lease(ia);
    } else {
        sf_error(ia, "worker claim", status, body);
        sf->retry_at_ms = id_mono_ms(ia) + ID_SF_RETRY_MS;
    }
    sf_pump(ia);
    sf_serve(ia);
}

static void sf_on_reserve(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_sf *sf = &ia->sf;
    sf->reserve_rpc = NULL;
    bool committed = status == 200 && json_is_true(json_object_get(body, "committed"));
    snowflake_reserve_end(&sf->gen, sf->reserve_ceiling_ms, committed);
    if (status == 200 && !committed) {
        /* workers/W no longer carries our lease: it is not ours any more */
        snprintf(sf->last_error, sizeof(sf->last_error),
                 "worker %" PRId64 " is no longer held by lease %" PRId64, sf->worker, sf->lease);
        sf_drop_worker(ia, false);
    } else if (!committed) {
        sf_error(ia, "ceiling reservation", status, body);
    }
    sf_pump(ia);
    sf_serve(ia);
}

/* The lowest worker id that is free in this node's view of the keys, whose floor is
 * not ahead of our clock, and that we did not just find unusable. -1: none. */
static int64_t sf_pick_worker(struct id_api *ia)
{
    struct snowflake_layout l;
    snowflake_layout_default(&l);
    uint64_t max = snowflake_worker_max(&l);
    uint8_t *busy = calloc(max + 1, 1);
    if (!busy)
        return -1;
    int64_t wall = id_wall_ms(ia);
    const char *prefixes[2] = {ID_KEY_WORKERS, ID_KEY_FLOORS};
    for (int p = 0; p < 2; p++) {
        struct kv_range_req r = {.key = (const uint8_t *)prefixes[p],
                                 .key_len = (uint32_t)strlen(prefixes[p]), .prefix = true,
                                 .limit = ID_SF_WORKERS_SCAN};
        struct kv_range_resp resp;
        if (kv_range(node_kv(ia->node), &r, &resp) != 0)
            continue;
        for (uint32_t i = 0; i < resp.n_kvs; i++) {
            const struct kv_kv *kv = &resp.kvs[i];
            int64_t w = id_parse_i64(kv->key + r.key_len, kv->key_len - r.key_len);
            if (w < 0 || (uint64_t)w > max)
                continue;
            if (p == 0 || id_parse_i64(kv->value, kv->value_len) > wall)
                busy[w] = 1;
        }
        kv_range_resp_free(&resp);
    }
    for (uint32_t i = 0; i < ID_SF_AVOID; i++)
        if (ia->sf.avoid[i] >= 0 && (uint64_t)ia->sf.avoid[i] <= max)
            busy[ia->sf.avoid[i]] = 1;
    int64_t pick = -1;
    for (uint64_t w = 0; w <= max && pick < 0; w++)
        if (!busy[w])
            pick = (int64_t)w;
    free(busy);
    return pick;
}

/* Moves the worker lease, the claim and the reservation forward; called by the tick,
 * by each answer and by requests. Never blocks: each step is one idrpc at most. */
static void sf_pump(struct id_api *ia)
{
    struct id_sf *sf = &ia->sf;
    if (sf->phase == SF_OFF || ia->closing)
        return;
    uint64_t now = id_mono_ms(ia);
    if (sf->release_idle_ms > 0 && sf->waiters.n == 0 &&
        now >= sf->last_request_ms + sf->release_idle_ms) {
        /* Lazy worker: nobody asked for a while. Give W back now (our ceiling stays in
         * floors/W) and stop renewing: the lease lapses after its TTL. The next request
         * leases and claims again (docs/id.md, "what the first call costs"). */
        id_log(ia, "id: snowflake idle for %" PRIu64 " ms: worker %" PRId64 " released",
               now - sf->last_request_ms, sf->worker);
        sf_drop_worker(ia, true);
        sf_drop_lease(ia);
        sf->n_idle_releases++;
        sf->phase = SF_OFF;
        return;
    }
    if (sf->lease == 0) {
        if (!sf->lease_rpc && now >= sf->retry_at_ms) {
            sf->sent_ms = now;
            sf->lease_rpc = idrpc_post(ia, ID_PREFIX "internal/lease",
                                       json_pack("{s:I}", "ttl_ms", (json_int_t)ID_SF_TTL_MS),
                                       sf_on_lease, NULL);
            if (!sf->lease_rpc) {
                sf->retry_at_ms = now + ID_SF_RETRY_MS;
                snprintf(sf->last_error, sizeof(sf->last_error), "no leader known");
            }
        }
        sf->phase = SF_STARTING;
        return;
    }
    if (!sf->lease_rpc && now >= sf->next_keepalive_ms) {
        sf->sent_ms = now;
        sf->lease_rpc = idrpc_post(ia, ID_PREFIX "internal/keepalive",
                                   json_pack("{s:I}", "lease", (json_int_t)sf->lease),
                                   sf_on_lease, ia /* non-NULL: a keepalive */);
        if (!sf->lease_rpc)
            sf->next_keepalive_ms = now + ID_SF_RETRY_MS;
    }
    if (sf->worker < 0) {
        sf->phase = SF_STARTING;
        if (!sf->claim_rpc && now >= sf->retry_at_ms && sf_lease_valid(sf, now)) {
            int64_t w = sf_pick_worker(ia);
            if (w < 0) {
                snprintf(sf->last_error, sizeof(sf->last_error), "no free worker id");
                sf->retry_at_ms = now + 1000;
                return;
            }
            sf->claiming = w;
            sf->claim_rpc = idrpc_post(ia, ID_PREFIX "internal/claim",
                                       json_pack("{s:I, s:I, s:s}", "worker", (json_int_t)w,
                                                 "lease", (json_int_t)sf->lease, "node",
                                                 node_self(ia->node)->name),
                                       sf_on_claim, NULL);
            if (!sf->claim_rpc) {
                sf->claiming = -1;
                sf->retry_at_ms = now + ID_SF_RETRY_MS;
            }
        }
        return;
    }
    /* Ceilings are written while ids are asked for: an idle node does not put a Raft
     * write behind every half window, and its next request waits one round trip. */
    bool busy = sf->waiters.n > 0 || now < sf->last_request_ms + ID_SF_IDLE_MS;
    int64_t ceiling = 0;
    if (!sf->reserve_rpc && busy && sf_lease_valid(sf, now) &&
        snowflake_reserve_begin(&sf->gen, id_wall_ms(ia), &ceiling)) {
        sf->reserve_ceiling_ms = ceiling;
        sf->reserve_rpc = idrpc_post(ia, ID_PREFIX "internal/reserve",
                                     json_pack("{s:I, s:I, s:I}", "worker",
                                               (json_int_t)sf->worker, "lease",
                                               (json_int_t)sf->lease, "ceiling_ms",
                                               (json_int_t)ceiling),
                                     sf_on_reserve, NULL);
        if (!sf->reserve_rpc)
            snowflake_reserve_end(&sf->gen, ceiling, false);
    }
    sf->phase = sf->gen.reserved_ms > sf->floor_ms && sf_lease_valid(sf, now) ? SF_READY
                                                                              : SF_STARTING;
}

static void sf_on_timer(uv_timer_t *t) { sf_serve(t->data); }

enum { SF_FILLED = 0, SF_PARK = 1, SF_ANSWERED = 2 };

/* Issues ids for o. SF_FILLED, SF_PARK (wait for the worker, the reservation or the
 * clock), or SF_ANSWERED (an error was answered; o is finished). */
static int sf_fill(struct id_api *ia, struct id_op *o)
{
    struct id_sf *sf = &ia->sf;
    uint64_t now = id_mono_ms(ia);
    if (sf->worker < 0)
        return SF_PARK;
    if (!sf_lease_valid(sf, now)) {
        snprintf(sf->last_error, sizeof(sf->last_error),
                 "worker lease %" PRId64 " not renewed in time; not issuing", sf->lease);
        return SF_PARK;
    }
    int64_t wall = id_wall_ms(ia);
    for (uint32_t guard = 0; o->n_have < o->count && guard <= o->count; guard++) {
        uint32_t n = 0;
        int64_t wait_ms = 0;
        int rv = snowflake_next_batch(&sf->gen, wall, (uint64_t *)o->ids + o->n_have,
                                      o->count - o->n_have, &n, &wait_ms);
        if (rv == 0) {
            o->n_have += n;
            continue;
        }
        if (rv == SNOWFLAKE_EWAIT) {
            sf->n_waits++;
            if (!uv_is_active((uv_handle_t *)&ia->sf_timer))
                uv_timer_start(&ia->sf_timer, sf_on_timer, (uint64_t)wait_ms, 0);
            return SF_PARK;
        }
        if (rv == SNOWFLAKE_ERESERVE)
            return SF_PARK; /* sf_pump proposes the ceiling; its answer serves us */
        if (rv == SNOWFLAKE_EROLLBACK) {
            sf->n_rollbacks++;
            int64_t behind = sf->gen.last_ms - wall;
            snprintf(sf->last_error, sizeof(sf->last_error),
                     "clock rollback of %" PRId64 " ms on worker %" PRId64, behind, sf->worker);
            if (sf->policy == ID_RB_NEW_WORKER) {
                id_log(ia, "id: %s: taking a fresh worker id", sf->last_error);
                sf->n_new_workers++;
                sf_avoid(sf, sf->worker);
                sf_drop_worker(ia, true);
                return SF_PARK;
            }
            id_op_fail(o, 503, "clock_rollback",
                       "the clock is %" PRId64 " ms behind the last id of worker %" PRId64
                       " (tolerance %" PRId64 " ms, policy %s); retry later",
                       behind, sf->worker, sf->gen.tolerance_ms, id_rollback_names[sf->policy]);
            return SF_ANSWERED;
        }
        id_op_fail(o, 500, "snowflake_error", "%s", snowflake_strerror(rv));
        return SF_ANSWERED;
    }
    return o->n_have == o->count ? SF_FILLED : SF_PARK;
}

static void sf_respond(struct id_api *ia, struct id_op *o)
{
    if (!o->req) {
        ia->sf.n_issued += o->count;
        id_op_deliver(o);
        return;
    }
    json_t *arr = json_array();
    for (uint32_t i = 0; i < o->count; i++)
        json_array_append_new(arr, json_integer(o->ids[i]));
    ia->sf.n_issued += o->count;
    http_respond_json(o->req, 200, json_pack("{s:I, s:I, s:o}", "worker", (json_int_t)ia->sf.worker,
                                             "count", (json_int_t)o->count, "ids", arr));
    id_op_finish(o);
}

/* Serves the waiting snowflake requests in order. */
static void sf_serve(struct id_api *ia)
{
    for (uint32_t guard = 0; ia->sf.waiters.head && guard < ID_OPS_MAX; guard++) {
        struct id_op *o = ia->sf.waiters.head;
        int rv = sf_fill(ia, o);
        if (rv == SF_PARK)
            break;
        if (rv == SF_FILLED) {
            id_queue_remove(o);
            sf_respond(ia, o);
        }
    }
    if (ia->sf.waiters.head)
        sf_pump(ia);
}

/* Serves snowflake op o now, or parks it behind earlier ones. */
static void sf_submit(struct id_api *ia, struct id_op *o)
{
    ia->sf.last_request_ms = id_mono_ms(ia);
    if (ia->sf.phase == SF_OFF) {
        ia->sf.phase = SF_STARTING; /* the worker is leased on first use */
        sf_pump(ia);
    }
    if (ia->sf.waiters.n == 0) {
        int rv = sf_fill(ia, o);
        if (rv == SF_FILLED) {
            sf_respond(ia, o);
            return;
        }
        if (rv == SF_ANSWERED)
            return;
    }
    id_queue_push(&ia->sf.waiters, o);
    sf_pump(ia);
}

/* GET /v1/id/snowflake?count=N */
static void sf_request(struct id_api *ia, struct http_req *req)
{
    uint32_t count = 0;
    if (!id_query_count(req, ID_COUNT_MAX, &count))
        return;
    struct id_op *o = id_op_new(ia, req, ID_OP_SNOWFLAKE, count);
    if (o)
        sf_submit(ia, o);
}

/* GET /v1/id/snowflake/status: this node's worker, lease and ceiling. */
static void sf_status(struct id_api *ia, struct http_req *req)
{
    struct id_sf *sf = &ia->sf;
    uint64_t now = id_mono_ms(ia);
    struct snowflake_layout l;
    snowflake_layout_default(&l);
    json_t *j = json_object();
    json_object_set_new(j, "phase", json_string(id_sf_phase_names[sf->phase]));
    json_object_set_new(j, "policy", json_string(id_rollback_names[sf->policy]));
    json_object_set_new(j, "worker", sf->worker >= 0 ? json_integer(sf->worker) : json_null());
    json_object_set_new(j, "lease", sf->lease ? json_integer(sf->lease) : json_null());
    json_object_set_new(j, "lease_valid_ms",
                        json_integer(sf_lease_valid(sf, now)
                                         ? (json_int_t)(sf->lease_valid_until_ms - now) : 0));
    json_object_set_new(j, "floor_ms", json_integer(sf->floor_ms));
    json_object_set_new(j, "reserved_ms", json_integer(sf->worker >= 0 ? sf->gen.reserved_ms : 0));
    json_object_set_new(j, "last_ms", json_integer(sf->worker >= 0 ? sf->gen.last_ms : 0));
    json_object_set_new(j, "clock_ms", json_integer(id_wall_ms(ia)));
    json_object_set_new(j, "tolerance_ms", json_integer(sf->policy == ID_RB_WAIT
                                                            ? SNOWFLAKE_TOLERANCE_MS_MAX
                                                            : SNOWFLAKE_TOLERANCE_MS_DEFAULT));
    json_object_set_new(j, "layout", json_pack("{s:I, s:i, s:i, s:i}", "epoch_ms",
                                               (json_int_t)l.epoch_ms, "timestamp_bits",
                                               l.timestamp_bits, "worker_bits", l.worker_bits,
                                               "sequence_bits", l.sequence_bits));
    json_object_set_new(j, "issued", json_integer((json_int_t)sf->n_issued));
    json_object_set_new(j, "claims", json_integer((json_int_t)sf->n_claims));
    json_object_set_new(j, "rollbacks", json_integer((json_int_t)sf->n_rollbacks));
    json_object_set_new(j, "new_workers", json_integer((json_int_t)sf->n_new_workers));
    json_object_set_new(j, "lease_losses", json_integer((json_int_t)sf->n_lease_lapses));
    json_object_set_new(j, "idle_releases", json_integer((json_int_t)sf->n_idle_releases));
    json_object_set_new(j, "release_idle_ms", json_integer((json_int_t)sf->release_idle_ms));
    json_object_set_new(j, "waiting", json_integer(sf->waiters.n));
    json_object_set_new(j, "last_error", json_string(sf->last_error));
    http_respond_json(req, 200, j);
}

/* ==== uuid and trace ================================================================= */

/* GET /v1/id/uuid?version=4|7&count=N */
static void id_uuid(struct id_api *ia, struct http_req *req)
{
    uint64_t version = 4;
    uint32_t count = 0;
    if (http_query_u64(req, "version", &version) == HTTP_EBADVALUE || (version != 4 && version != 7)) {
        http_respond_error(req, 400, "bad_version", "version must be 4 or 7");
        return;
    }
    if (!id_query_count(req, ID_UUID_COUNT_MAX, &count))
        return;
    json_t *arr = json_array();
    int64_t now = id_wall_ms(ia);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t rnd[UUID_V4_RANDOM_BYTES];
        struct uuid u;
        char text[UUID_TEXT_LEN + 1];
        if (RAND_bytes(rnd, version == 4 ? UUID_V4_RANDOM_BYTES : UUID_V7_RANDOM_BYTES) != 1) {
            json_decref(arr);
            http_respond_error(req, 503, "no_randomness", "RAND_bytes failed");
            return;
        }
        if (version == 4) {
            uuid_v4(rnd, &u);
        } else if (uuid_v7_next(&ia->v7, now, rnd, &u) != 0) {
            json_decref(arr);
            http_respond_error(req, 500, "clock", "the clock is outside the UUIDv7 range");
            return;
        }
        uuid_format(&u, text);
        json_array_append_new(arr, json_string(text));
    }
    http_respond_json(req, 200, json_pack("{s:i, s:o}", "version", (int)version, "uuids", arr));
}

/* GET /v1/id/trace                          a new trace, root span "0"
 * GET /v1/id/trace?parent=TRACEPARENT|TRACEID[&span=S][&index=K]
 *                                           the K-th child (default 1) of span S
 *                                           (default "0") in that trace */
static void id_trace(struct id_api *ia, struct http_req *req)
{
    char parent[TRACEPARENT_LEN + 64], span[TRACEID_SPAN_LEN_MAX + 1] = "0";
    char child[TRACEID_SPAN_LEN_MAX + 1];
    size_t parent_len = 0, span_len = 1, child_len = 0;
    uint64_t index = 1;
    struct traceid t;
    int rv = http_query_get(req, "parent", parent, sizeof(parent), &parent_len);
    if (rv == HTTP_ETOOLONG || rv == HTTP_EBADVALUE) {
        http_respond_error(req, 400, "bad_parent", "parent must be a W3C traceparent or a 32-hex trace id");
        return;
    }
    bool have_parent = rv == 0;
    if (have_parent) {
        struct traceparent tp;
        if (parent_len == TRACEID_HEX_LEN) {
            rv = traceid_parse_hex(parent, parent_len, &t);
        } else {
            rv = traceparent_parse(parent, parent_len, &tp);
            t = tp.trace_id;
        }
        if (rv != 0) {
            http_respond_error(req, 400, "bad_parent", "parent: %s", traceid_strerror(rv));
            return;
        }
        rv = http_query_get(req, "span", span, sizeof(span), &span_len);
        if (rv == HTTP_ENOTFOUND) {
            memcpy(span, "0", 2);
            span_len = 1;
        } else if (rv != 0 || traceid_span_check(span, span_len, NULL) != 0) {
            http_respond_error(req, 400, "bad_span", "span must look like 0, 0.1 or 0.2.1");
            return;
        }
        if (http_query_u64(req, "index", &index) == HTTP_EBADVALUE || index < 1 ||
            index > TRACEID_SPAN_INDEX_MAX) {
            http_respond_error(req, 400, "bad_index", "index must be in 1..%u", TRACEID_SPAN_INDEX_MAX);
            return;
        }
        rv = traceid_span_child(span, span_len, (uint32_t)index, child, sizeof(child), &child_len);
        if (rv != 0) {
            http_respond_error(req, 400, "bad_span", "child of %s: %s", span, traceid_strerror(rv));
            return;
        }
    } else {
        rv = traceid_next(&ia->trace, id_wall_ms(ia), &t);
        if (rv != 0) {
            http_respond_error(req, 500, "clock", "%s", traceid_strerror(rv));
            return;
        }
        memcpy(child, "0", 2);
        child_len = 1;
    }
    char hex[TRACEID_HEX_LEN + 1], tp_text[TRACEPARENT_LEN + 1], sofa[TRACEID_SOFA_LEN_MAX + 1];
    char pid_hex[17];
    uint64_t w3c = traceid_span_w3c_id(&t, child, child_len);
    traceid_format_hex(&t, hex);
    if (traceparent_format(&t, w3c, TRACEPARENT_FLAG_SAMPLED, tp_text) != 0) {
        http_respond_error(req, 400, "bad_parent", "the trace id is all zeros");
        return;
    }
    snprintf(pid_hex, sizeof(pid_hex), "%016" PRIx64, w3c);
    json_t *j = json_pack("{s:s, s:s#, s:s, s:s}", "trace_id", hex, "span_id", child, child_len,
                          "parent_id", pid_hex, "traceparent", tp_text);
    struct traceid_parts parts;
    traceid_parts(&t, &parts);
    if (parts.sequence >= TRACEID_SEQ_MIN && parts.sequence <= TRACEID_SEQ_MAX &&
        parts.unix_ms <= TRACEID_MS_MAX) {
        traceid_format_sofa(&t, sofa);
        json_object_set_new(j, "sofa_trace_id", json_string(sofa));
    }
    if (have_parent)
        json_object_set_new(j, "parent_span_id", json_stringn(span, span_len));
    http_respond_json(req, 200, j);
}

/* ==== orders ========================================================================= */

#define ID_ORDER_TAG_STEP 1000 /* the first segment of a day's order tag */

static void id_date_text(const struct orderno_date *d, char out[16])
{
    snprintf(out, 16, "%04u-%02u-%02u", (unsigned)d->year, (unsigned)d->month, (unsigned)d->day);
}

/* POST /v1/id/orders {"biz_type": 0..99, "count": 1..1000}: the day (UTC) and type's
 * next numbers, from the segment tag order:YYYYMMDD:TT (created on first use). */
static void order_create(struct id_api *ia, struct http_req *req)
{
    if (!id_keys_ready(ia, req))
        return;
    json_t *j = id_body(req);
    if (!j)
        return;
    int64_t biz = 0, count = 0;
    bool ok_biz = id_json_int(j, "biz_type", 0, ORDERNO_BIZ_MAX, -1, &biz) && biz >= 0;
    bool ok_count = id_json_int(j, "count", 1, ID_ORDER_COUNT_MAX, 1, &count);
    json_decref(j);
    struct orderno_date date;
    if (!ok_biz) {
        http_respond_error(req, 400, "bad_biz_type", "\"biz_type\" must be an integer in 0..%u",
                           ORDERNO_BIZ_MAX);
        return;
    }
    if (!ok_count) {
        http_respond_error(req, 400, "bad_count", "\"count\" must be an integer in 1..%u",
                           ID_ORDER_COUNT_MAX);
        return;
    }
    if (orderno_date_from_unix_ms(id_wall_ms(ia), 0, &date) != 0) {
        http_respond_error(req, 500, "clock", "the clock is outside the order number dates");
        return;
    }
    char tag[32];
    snprintf(tag, sizeof(tag), "order:%04u%02u%02u:%02u", (unsigned)date.year,
             (unsigned)date.month, (unsigned)date.day, (unsigned)biz);
    struct id_tagbuf *tb = tagbuf_get(ia, tag, strlen(tag), true, ID_ORDER_TAG_STEP);
    if (!tb) {
        http_respond_error(req, 503, "busy", "all tag buffers of this node are in use; retry");
        return;
    }
    struct id_op *o = id_op_new(ia, req, ID_OP_ORDER, (uint32_t)count);
    if (!o)
        return;
    o->date = date;
    o->biz = (unsigned)biz;
    tagbuf_request(ia, tb, o);
}

static void id_order_filled(struct id_op *o)
{
    struct id_api *ia = o->ia;
    json_t *arr = json_array();
    for (uint32_t i = 0; i < o->count; i++) {
        char num[ORDERNO_LEN_MAX + 1];
        size_t n = 0;
        int rv = orderno_make(&ia->orderno, &o->date, o->biz, (uint64_t)(o->ids[i] - 1), num,
                              sizeof(num), &n);
        if (rv != 0) {
            json_decref(arr);
            http_respond_error(o->req, rv == ORDERNO_ESEQ ? 409 : 500,
                               rv == ORDERNO_ESEQ ? "orders_exhausted" : "order_error",
                               "%s", orderno_strerror(rv));
            id_op_finish(o);
            return;
        }
        json_array_append_new(arr, json_stringn(num, n));
    }
    char date[16];
    id_date_text(&o->date, date);
    http_respond_json(o->req, 200, json_pack("{s:s, s:i, s:o}", "date", date, "biz_type",
                                             (int)o->biz, "orders", arr));
    id_op_finish(o);
}

/* GET /v1/id/orders/{number}: keyless checks, then the date, type and sequence. */
static void order_open(struct id_api *ia, struct http_req *req, const char *num, size_t n)
{
    int rv = orderno_check(num, n, ORDERNO_MIDDLE_DIGITS_DEFAULT);
    if (rv != 0) {
        http_respond_error(req, rv == ORDERNO_ECHECK ? 422 : 400,
                           rv == ORDERNO_ECHECK ? "bad_check_digit" : "bad_order_number", "%s",
                           orderno_strerror(rv));
        return;
    }
    if (!id_keys_ready(ia, req))
        return;
    struct orderno_date d;
    unsigned biz = 0;
    uint64_t seq = 0;
    rv = orderno_open(&ia->orderno, num, n, &d, &biz, &seq);
    if (rv != 0) {
        http_respond_error(req, 422, "bad_order_number", "%s", orderno_strerror(rv));
        return;
    }
    char date[16];
    id_date_text(&d, date);
    http_respond_json(req, 200, json_pack("{s:b, s:s#, s:s, s:i, s:I}", "valid", 1, "order", num, n,
                                          "date", date, "biz_type", (int)biz, "seq",
                                          (json_int_t)seq));
}

/* ==== redeem codes ==================================================================== */

/* The campaign's key: HMAC(secret, label || campaign), so each campaign has its own. */
static int redeem_open(struct id_api *ia, uint32_t campaign, struct redeem *r)
{
    uint8_t k[IDMAC_OUT_BYTES];
    uint8_t c[4] = {(uint8_t)(campaign >> 24), (uint8_t)(campaign >> 16), (uint8_t)(campaign >> 8),
                    (uint8_t)campaign};
    int rv = id_subkey(ia, "conclave/idgen/redeem/v1", c, sizeof(c), k);
    if (rv == 0)
        rv = redeem_init(r, k, sizeof(k), campaign);
    memset(k, 0, sizeof(k));
    return rv;
}

static void redeem_on_alloc(struct id_api *ia, void *arg, int status, json_t *body);

static void redeem_alloc(struct id_api *ia, struct id_op *o)
{
    char path[96];
    snprintf(path, sizeof(path), ID_PREFIX "segments/redeem:%u/alloc", o->campaign);
    o->rpc = idrpc_post(ia, path, json_pack("{s:I}", "count", (json_int_t)o->count),
                        redeem_on_alloc, o);
    /* NULL (no leader known): the tick answers 503 at the deadline */
}

static void redeem_on_created(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_op *o = arg;
    o->rpc = NULL;
    if (status == 201 || (status == 409 && strcmp(id_jerr_code(body), "tag_exists") == 0)) {
        redeem_alloc(ia, o);
    } else if (status >= 400 && status < 500) {
        http_respond_error(o->req, status, id_jerr_code(body), "%s", id_jerr_msg(body));
        id_op_finish(o);
    }
}

static void redeem_on_alloc(struct id_api *ia, void *arg, int status, json_t *body)
{
    struct id_op *o = arg;
    o->rpc = NULL;
    if (status == 404 && strcmp(id_jerr_code(body), "tag_not_found") == 0 && !o->created) {
        char tag[32];
        snprintf(tag, sizeof(tag), "redeem:%u", o->campaign);
        o->created = true;
        o->rpc = idrpc_post(ia, ID_PREFIX "segments",
                            json_pack("{s:s, s:I, s:I}", "tag", tag, "initial", (json_int_t)1,
                                      "step", (json_int_t)1),
                            redeem_on_created, o);
        return;
    }
    if (status != 200) {
        if (status >= 400 && status < 500) {
            http_respond_error(o->req, status, id_jerr_code(body), "%s", id_jerr_msg(body));
            id_op_finish(o);
        }
        return; /* no answer or 5xx: the deadline answers 503 */
    }
    int64_t start = id_jint(body, "start", 0), end = id_jint(body, "end", 0);
    if (start < 1 || end - start != (int64_t)o->count || end - 1 > (int64_t)REDEEM_SERIAL_MAX + 1) {
        http_respond_error(o->req, 409, "campaign_exhausted",
                           "campaign %u has no %u serials left below %u", o->campaign, o->count,
                           REDEEM_SERIAL_MAX + 1);
        id_op_finish(o);
        return;
    }
    struct redeem r;
    int rv = redeem_open(ia, o->campaign, &r);
    json_t *arr = json_array();
    for (int64_t id = start; rv == 0 && id < end; id++) {
        char code[REDEEM_CODE_CHARS + 1], grouped[REDEEM_GROUPED_CHARS + 1];
        rv = redeem_make(&r, (uint32_t)(id - 1), code);
        if (rv == 0) {
            redeem_group(code, grouped);
            json_array_append_new(arr, json_string(grouped));
        }
    }
    redeem_fini(&r);
    if (rv != 0) {
        json_decref(arr);
        http_respond_error(o->req, 500, "redeem_error", "%s", redeem_strerror(rv));
    } else {
        http_respond_json(o->req, 200, json_pack("{s:I, s:I, s:o}", "campaign",
                                                 (json_int_t)o->campaign, "first_serial",
                                                 (json_int_t)(start - 1), "codes", arr));
    }
    id_op_finish(o);
}

static bool redeem_campaign(struct http_req *req, const char *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    bool ok = n >= 1 && n <= 7;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok || v > REDEEM_CAMPAIGN_MAX) {
        http_respond_error(req, 400, "bad_campaign", "campaign must be an integer in 0..%u",
                           REDEEM_CAMPAIGN_MAX);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* POST /v1/id/redeem/{campaign} {"count"}: count fresh codes (one ALLOC of serials). */
static void redeem_issue(struct id_api *ia, struct http_req *req, uint32_t campaign)
{
    if (!id_keys_ready(ia, req))
        return;
    json_t *j = id_body(req);
    if (!j)
        return;
    int64_t count = 0;
    bool ok = id_json_int(j, "count", 1, ID_REDEEM_COUNT_MAX, 1, &count);
    json_decref(j);
    if (!ok) {
        http_respond_error(req, 400, "bad_count", "\"count\" must be an integer in 1..%u",
                           ID_REDEEM_COUNT_MAX);
        return;
    }
    struct id_op *o = id_op_new(ia, req, ID_OP_REDEEM, 0);
    if (!o)
        return;
    o->count = (uint32_t)count;
    o->campaign = campaign;
    redeem_alloc(ia, o);
}

/* GET /v1/id/redeem/{campaign}/{code}: offline verification.
 * POST: verification, then the redemption is recorded once (put-if-absent). */
static void redeem_check(struct id_api *ia, struct http_req *req, uint32_t campaign,
                         const char *code, size_t n)
{
    if (!id_keys_ready(ia, req))
        return;
    struct redeem r;
    uint32_t serial = 0;
    int rv = redeem_open(ia, campaign, &r);
    if (rv == 0)
        rv = redeem_verify(&r, code, n, &serial);
    redeem_fini(&r);
    if (rv == REDEEM_ELENGTH || rv == REDEEM_ECHAR) {
        http_respond_error(req, 400, "bad_code", "%s", redeem_strerror(rv));
        return;
    }
    if (rv == REDEEM_ECAMPAIGN || rv == REDEEM_EFORGED) {
        http_respond_error(req, 422, rv == REDEEM_ECAMPAIGN ? "wrong_campaign" : "invalid_code",
                           "%s", redeem_strerror(rv));
        return;
    }
    if (rv != 0) {
        http_respond_error(req, 500, "redeem_error", "%s", redeem_strerror(rv));
        return;
    }
    if (req->method == HTTP_GET || req->method == HTTP_HEAD) {
        http_respond_json(req, 200, json_pack("{s:b, s:I, s:I}", "valid", 1, "campaign",
                                              (json_int_t)campaign, "serial", (json_int_t)serial));
        return;
    }
    if (!id_leader_or_forward(ia, req))
        return;
    char key[sizeof(ID_KEY_REDEEMED) + 32], val[32];
    snprintf(key, sizeof(key), ID_KEY_REDEEMED "%u/%u", campaign, serial);
    snprintf(val, sizeof(val), "%" PRId64, id_wall_ms(ia));
    struct id_op *o = id_prop_op(ia, req, PROP_REDEEM_USE, NULL, 0);
    if (!o)
        return;
    o->campaign = campaign;
    o->num = serial;
    struct kv_compare cmp = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key),
                             .target = KV_CMP_CREATE, .op = KV_CMP_EQUAL, .number = 0};
    struct kv_op succ = {.type = KV_OP_PUT};
    succ.put = (struct kv_put_req){.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key),
                                   .value = (const uint8_t *)val, .value_len = (uint32_t)strlen(val)};
    id_op_propose_txn(o, &cmp, &succ, 1, NULL, 0);
}

static void id_redeem_use_applied(struct id_op *o, const struct kv_result *kv)
{
    if (kv->succeeded)
        http_respond_json(o->req, 200, json_pack("{s:b, s:I, s:I}", "redeemed", 1, "campaign",
                                                 (json_int_t)o->campaign, "serial",
                                                 (json_int_t)o->num));
    else
        http_respond_error(o->req, 409, "already_redeemed",
                           "campaign %u serial %" PRId64 " was redeemed before", o->campaign, o->num);
    id_op_finish(o);
}

/* ==== short urls ====================================================================== */

#define ID_SHORT_TAG      "shorturl"
#define ID_SHORT_TAG_STEP 100

static bool short_url_ok(const char *u, size_t n)
{
    bool scheme = (n > 7 && strncasecmp(u, "http://", 7) == 0) ||
                  (n > 8 && strncasecmp(u, "https://", 8) == 0);
    if (!scheme || n > ID_URL_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return false; /* no spaces or controls: it becomes a Location header */
    return true;
}

/* POST /v1/id/short {"url"}: on the leader, an id from the "shorturl" tag, its code
 * (a keyed bijection), and short/<code> = url put-if-absent. */
static void short_create(struct id_api *ia, struct http_req *req)
{
    if (!id_keys_ready(ia, req))
        return;
    json_t *j = id_body(req);
    if (!j)
        return;
    json_t *u = json_object_get(j, "url");
    const char *url = json_string_value(u);
    size_t url_len = url ? json_string_length(u) : 0;
    if (!url || !short_url_ok(url, url_len)) {
        json_decref(j);
        http_respond_error(req, 400, "bad_url",
                           "\"url\" must be an http:// or https:// URL of at most %u bytes "
                           "without spaces or control characters", ID_URL_BYTES_MAX);
        return;
    }
    if (!id_leader_or_forward(ia, req)) {
        json_decref(j);
        return;
    }
    struct id_tagbuf *tb = tagbuf_get(ia, ID_SHORT_TAG, strlen(ID_SHORT_TAG), true,
                                      ID_SHORT_TAG_STEP);
    struct id_op *o = tb ? id_op_new(ia, req, ID_OP_SHORT, 1) : NULL;
    if (!tb)
        http_respond_error(req, 503, "busy", "all tag buffers of this node are in use; retry");
    if (o && !(o->text = malloc(url_len + 1))) {
        http_respond_error(req, 503, "no_memory", "out of memory");
        id_op_finish(o);
        o = NULL;
    }
    if (o) {
        memcpy(o->text, url, url_len);
        o->text[url_len] = 0;
        o->text_len = url_len;
        tagbuf_request(ia, tb, o);
    }
    json_decref(j);
}

static void id_short_filled(struct id_op *o)
{
    struct id_api *ia = o->ia;
    char code[SHORTURL_LEN_MAX + 1];
    size_t n = 0;
    int rv = shorturl_encode(&ia->shorturl, (uint64_t)o->ids[0], code, &n);
    if (rv != 0) {
        http_respond_error(o->req, 500, "short_error", "%s", shorturl_strerror(rv));
        id_op_finish(o);
        return;
    }
    if (!id_is_leader(ia)) {
        http_respond_error(o->req, 503, "leader_changed", "leadership moved; retry");
        id_op_finish(o);
        return;
    }
    char key[sizeof(ID_KEY_SHORT) + SHORTURL_LEN_MAX + 1];
    snprintf(key, sizeof(key), ID_KEY_SHORT "%s", code);
    o->num = o->ids[0];
    o->kind = ID_OP_PROPOSE;
    o->sub = PROP_SHORT;
    o->deadline_ms = id_mono_ms(ia) + ID_OP_MS;
    struct kv_compare cmp = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key),
                             .target = KV_CMP_CREATE, .op = KV_CMP_EQUAL, .number = 0};
    struct kv_op succ = {.type = KV_OP_PUT};
    succ.put = (struct kv_put_req){.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key),
                                   .value = (const uint8_t *)o->text,
                                   .value_len = (uint32_t)o->text_len};
    id_op_propose_txn(o, &cmp, &succ, 1, NULL, 0);
}

static void id_short_applied(struct id_op *o, const struct kv_result *kv)
{
    struct id_api *ia = o->ia;
    char code[SHORTURL_LEN_MAX + 1];
    size_t n = 0;
    if (!kv->succeeded || shorturl_encode(&ia->shorturl, (uint64_t)o->num, code, &n) != 0) {
        /* only a changed secret can make a fresh id's code collide: never overwrite */
        http_respond_error(o->req, 500, "code_collision",
                           "short code of id %" PRId64 " is taken (was the secret changed?)", o->num);
        id_op_finish(o);
        return;
    }
    json_t *j = json_pack("{s:s, s:s}", "code", code, "url", o->text);
    const char *host = http_req_header(o->req, "Host");
    if (host && strlen(host) < 300) {
        char link[400];
        snprintf(link, sizeof(link), "http://%s/s/%s", host, code);
        json_object_set_new(j, "short_url", json_string(link));
    }
    http_respond_json(o->req, 201, j);
    id_op_finish(o);
}

/* GET /s/{code}: 302 to the stored url (linearizable read). */
void id_api_redirect(struct id_api *ia, struct http_req *req)
{
    const char *code = req->path + strlen(ID_SHORT_PREFIX);
    size_t n = req->path_len - strlen(ID_SHORT_PREFIX);
    bool ok = n >= SHORTURL_LEN_MIN_DEFAULT && n <= SHORTURL_LEN_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = strchr(SHORTURL_ALPHABET, code[i]) != NULL && code[i] != 0;
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_respond_error(req, 405, "bad_method", "use GET on /s/{code}");
    } else if (!ok) {
        http_respond_error(req, 400, "bad_code", "a short code is %u-%u characters of [0-9A-Za-z]",
                           SHORTURL_LEN_MIN_DEFAULT, SHORTURL_LEN_MAX);
    } else {
        struct id_op *o = id_prop_op(ia, req, PROP_READ_SHORT, code, n);
        if (o)
            id_op_read(o);
    }
}

/* ==== tick =============================================================================== */

static void fp_on_answer(struct id_api *ia, void *arg, int status, json_t *body)
{
    ia->fp_rpc = NULL;
    if (status != 200) {
        ia->fp_retry_ms = id_mono_ms(ia) + ID_FP_RETRY_MS;
        return;
    }
    bool match = json_is_true(json_object_get(body, "match"));
    ia->fp_state = match ? 1 : -1;
    if (!match)
        id_log(ia, "id: this node's %s (fingerprint %s) differs from the cluster's (%s): order "
                   "numbers, redeem codes and short urls are refused here until it matches",
               ID_SECRET_FILE, ia->fingerprint,
               json_string_value(json_object_get(body, "stored"))
                   ? json_string_value(json_object_get(body, "stored"))
                   : "?");
}

static void id_on_tick(uv_timer_t *t)
{
    struct id_api *ia = t->data;
    uint64_t now = id_mono_ms(ia);
    struct id_op *next = NULL;
    for (struct id_op *o = ia->ops; o; o = next) {
        next = o->next; /* callbacks may cancel ops, which only marks them: next stays */
        if (o->cancelled)
            id_op_finish(o);
        else if (now >= o->deadline_ms)
            id_op_timeout(o); /* frees o only: next stays valid */
    }
    struct id_tagbuf *tnext = NULL;
    for (struct id_tagbuf *tb = ia->tagbufs; tb; tb = tnext) {
        tnext = tb->next;
        tagbuf_pump(ia, tb);
    }
    if (ia->sf.phase != SF_OFF) {
        sf_pump(ia);
        sf_serve(ia);
    }
    if (ia->secret_ok && ia->fp_state == 0 && !ia->fp_rpc && now >= ia->fp_retry_ms) {
        ia->fp_rpc = idrpc_post(ia, ID_PREFIX "internal/fingerprint",
                                json_pack("{s:s}", "fingerprint", ia->fingerprint), fp_on_answer,
                                NULL);
        if (!ia->fp_rpc)
            ia->fp_retry_ms = now + ID_FP_RETRY_MS;
    }
}

/* ==== routing ============================================================================ */

/* The next path segment of *rest (without '/'), advancing past it. */
static bool id_segment(const char **rest, size_t *rest_len, const char **seg, size_t *seg_len)
{
    if (*rest_len == 0)
        return false;
    const char *slash = memchr(*rest, '/', *rest_len);
    *seg = *rest;
    *seg_len = slash ? (size_t)(slash - *rest) : *rest_len;
    *rest += *seg_len + (slash ? 1 : 0);
    *rest_len -= *seg_len + (slash ? 1 : 0);
    return true;
}

static bool id_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static void id_bad_method(struct http_req *req, const char *allowed)
{
    http_respond_error(req, 405, "bad_method", "use %s on %.*s", allowed, (int)req->path_raw_len,
                       req->path_raw);
}

static void route_segments(struct id_api *ia, struct http_req *req, const char *rest,
                           size_t rest_len)
{
    const char *tag = NULL, *verb = NULL;
    size_t tag_len = 0, verb_len = 0;
    if (!id_segment(&rest, &rest_len, &tag, &tag_len)) {
        if (req->method == HTTP_GET)
            seg_list(ia, req);
        else if (req->method == HTTP_POST)
            seg_create(ia, req);
        else
            id_bad_method(req, "GET or POST");
        return;
    }
    if (!id_tag_ok(tag, tag_len)) {
        http_respond_error(req, 400, "bad_tag", "a tag is 1-%u characters of [A-Za-z0-9._:-]",
                           IDSEG_TAG_BYTES_MAX);
        return;
    }
    char t[IDSEG_TAG_BYTES_MAX + 1];
    memcpy(t, tag, tag_len);
    t[tag_len] = 0;
    bool has_verb = id_segment(&rest, &rest_len, &verb, &verb_len);
    if (rest_len != 0 || (has_verb && !id_is(verb, verb_len, "next") &&
                          !id_is(verb, verb_len, "alloc"))) {
        http_respond_error(req, 404, "not_found", "no such endpoint; see docs/id.md");
    } else if (!has_verb) {
        if (req->method == HTTP_GET || req->method == HTTP_HEAD)
            seg_get(ia, req, t, tag_len);
        else if (req->method == HTTP_PUT)
            seg_update(ia, req, t, tag_len);
        else
            id_bad_method(req, "GET or PUT");
    } else if (req->method != HTTP_POST) {
        id_bad_method(req, "POST");
    } else if (id_is(verb, verb_len, "next")) {
        seg_next(ia, req, t, tag_len);
    } else {
        seg_alloc(ia, req, t, tag_len);
    }
}

/* POST /v1/id/test/clock: TEST ONLY (CONCLAVE_TEST_ID_CLOCK=1). Shifts the clock the
 * generators read:
 *   {"offset_ms": X}                  the env clock plus X, running
 *   {"behind_ms": X, "freeze": bool}  X ms behind the snowflake worker's last timestamp
 *                                     now; running, or frozen there (freeze: true) */
static void id_test_clock(struct id_api *ia, struct http_req *req)
{
    if (!ia->test_clock) {
        http_respond_error(req, 404, "not_found",
                           "the test clock is off (start the server with CONCLAVE_TEST_ID_CLOCK=1)");
        return;
    }
    json_t *j = id_body(req);
    if (!j)
        return;
    int64_t off = 0, behind = 0;
    bool has_behind = json_object_get(j, "behind_ms") != NULL;
    if (!id_json_int(j, "offset_ms", -ID_TEST_CLOCK_MS_MAX, ID_TEST_CLOCK_MS_MAX, 0, &off) ||
        !id_json_int(j, "behind_ms", 0, ID_TEST_CLOCK_MS_MAX, 0, &behind)) {
        http_respond_error(req, 400, "bad_offset", "offsets must be within +-%" PRId64 " ms",
                           ID_TEST_CLOCK_MS_MAX);
    } else if (has_behind && ia->sf.worker < 0) {
        http_respond_error(req, 409, "no_worker", "behind_ms needs a snowflake worker");
    } else {
        int64_t raw = (int64_t)ia->env->wall_ms(ia->env);
        ia->test_clock_frozen = false;
        ia->test_clock_offset_ms = has_behind ? ia->sf.gen.last_ms - behind - raw : off;
        if (has_behind && json_is_true(json_object_get(j, "freeze"))) {
            ia->test_clock_frozen = true;
            ia->test_clock_frozen_ms = ia->sf.gen.last_ms - behind;
        }
        id_log(ia, "id: TEST clock offset now %" PRId64 " ms%s", ia->test_clock_offset_ms,
               ia->test_clock_frozen ? " (frozen)" : "");
        http_respond_json(req, 200, json_pack("{s:I, s:I, s:b}", "offset_ms",
                                              (json_int_t)ia->test_clock_offset_ms, "clock_ms",
                                              (json_int_t)id_wall_ms(ia), "frozen",
                                              ia->test_clock_frozen));
    }
    json_decref(j);
}

/* POST /v1/shorturl (issue #7's path): the same as POST /v1/id/short. */
void id_api_shorturl(struct id_api *ia, struct http_req *req)
{
    if (req->method == HTTP_POST)
        short_create(ia, req);
    else
        id_bad_method(req, "POST");
}

void id_api_route(struct id_api *ia, struct http_req *req)
{
    const char *rest = req->path + strlen(ID_PREFIX), *seg = NULL, *arg = NULL;
    size_t rest_len = req->path_len - strlen(ID_PREFIX), seg_len = 0, arg_len = 0;
    if (strlen(rest) != rest_len) {
        http_respond_error(req, 400, "bad_path", "the path holds a NUL byte");
        return;
    }
    if (!id_segment(&rest, &rest_len, &seg, &seg_len)) {
        http_respond_error(req, 404, "not_found", "no such endpoint: %.*s; see docs/id.md",
                           (int)req->path_raw_len, req->path_raw);
        return;
    }
    bool has_arg = id_segment(&rest, &rest_len, &arg, &arg_len);
    bool get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    bool post = req->method == HTTP_POST;
    if (id_is(seg, seg_len, "segments")) {
        route_segments(ia, req, arg ? arg : rest, arg ? arg_len + (rest_len ? rest_len + 1 : 0) : 0);
    } else if (id_is(seg, seg_len, "snowflake") && !has_arg) {
        get ? sf_request(ia, req) : id_bad_method(req, "GET");
    } else if (id_is(seg, seg_len, "snowflake") && id_is(arg, arg_len, "status") && !rest_len) {
        get ? sf_status(ia, req) : id_bad_method(req, "GET");
    } else if (id_is(seg, seg_len, "uuid") && !has_arg) {
        get ? id_uuid(ia, req) : id_bad_method(req, "GET");
    } else if (id_is(seg, seg_len, "trace") && !has_arg) {
        get ? id_trace(ia, req) : id_bad_method(req, "GET");
    } else if (id_is(seg, seg_len, "orders") && !has_arg) {
        post ? order_create(ia, req) : id_bad_method(req, "POST");
    } else if (id_is(seg, seg_len, "orders") && !rest_len) {
        get ? order_open(ia, req, arg, arg_len) : id_bad_method(req, "GET");
    } else if (id_is(seg, seg_len, "redeem") && has_arg) {
        uint32_t campaign = 0;
        const char *code = NULL;
        size_t code_len = 0;
        bool has_code = id_segment(&rest, &rest_len, &code, &code_len);
        if (rest_len != 0)
            http_respond_error(req, 404, "not_found", "use /v1/id/redeem/{campaign}[/{code}]");
        else if (!redeem_campaign(req, arg, arg_len, &campaign))
            return;
        else if (!has_code)
            post ? redeem_issue(ia, req, campaign) : id_bad_method(req, "POST");
        else if (get || post)
            redeem_check(ia, req, campaign, code, code_len);
        else
            id_bad_method(req, "GET or POST");
    } else if (id_is(seg, seg_len, "short") && !has_arg) {
        post ? short_create(ia, req) : id_bad_method(req, "POST");
    } else if (id_is(seg, seg_len, "internal") && has_arg && !rest_len) {
        char what[32];
        snprintf(what, sizeof(what), "%.*s", (int)(arg_len < 31 ? arg_len : 31), arg);
        internal_route(ia, req, what);
    } else if (id_is(seg, seg_len, "test") && id_is(arg, arg_len, "clock") && !rest_len) {
        post ? id_test_clock(ia, req) : id_bad_method(req, "POST");
    } else {
        http_respond_error(req, 404, "not_found", "no such endpoint: %s %.*s; see docs/id.md",
                           http_method_name(req->method), (int)req->path_raw_len, req->path_raw);
    }
}

/* ==== other front ends: id_api_take ======================================================= */

void id_api_take(struct id_api *ia, const char *tag, size_t tag_len, uint32_t count,
                 id_api_take_cb cb, void *arg)
{
    CC_ASSERT(ia != NULL);
    CC_ASSERT(cb != NULL);
    _Static_assert(ID_API_TAKE_COUNT_MAX == ID_COUNT_MAX, "the same batch limit as HTTP");
    char msg[200];
    if (count < 1 || count > ID_COUNT_MAX) {
        snprintf(msg, sizeof(msg), "count must be an integer in 1..%u", ID_COUNT_MAX);
        cb(arg, ID_API_ECOUNT, NULL, 0, msg);
        return;
    }
    if (ia->closing) {
        cb(arg, ID_API_ESTOPPED, NULL, 0, "the server is stopping");
        return;
    }
    if (tag && !id_tag_ok(tag, tag_len)) {
        snprintf(msg, sizeof(msg), "a tag is 1-%u characters of [A-Za-z0-9._:-]",
                 IDSEG_TAG_BYTES_MAX);
        cb(arg, ID_API_EFAILED, NULL, 0, msg);
        return;
    }
    struct id_tagbuf *tb = NULL;
    if (tag && !(tb = tagbuf_get(ia, tag, tag_len, false, 0))) {
        snprintf(msg, sizeof(msg), "all %u tag buffers of this node are in use; retry",
                 ID_TAGBUFS_MAX);
        cb(arg, ID_API_EBUSY, NULL, 0, msg);
        return;
    }
    struct id_op *o = id_op_new(ia, NULL, tag ? ID_OP_NEXT : ID_OP_SNOWFLAKE, count);
    if (!o) {
        snprintf(msg, sizeof(msg), "%u ID requests are already waiting here (or no memory); retry",
                 ID_OPS_MAX);
        cb(arg, ID_API_EBUSY, NULL, 0, msg);
        return;
    }
    o->cb = cb;
    o->cb_arg = arg;
    if (tb)
        tagbuf_request(ia, tb, o);
    else
        sf_submit(ia, o);
}

void id_api_cancel(struct id_api *ia, void *arg)
{
    for (struct id_op *o = ia->ops; o; o = o->next) {
        if (o->req == NULL && o->cb_arg == arg && !o->cancelled) {
            id_queue_remove(o); /* freed by the tick: a caller may be walking ia->ops */
            o->cancelled = true;
        }
    }
}

/* Which id_api serves which node: RESP servers find theirs here. A handful of nodes
 * per process at most (one in production, a few in tests). */
#define ID_REGISTRY_MAX 64u
static pthread_mutex_t id_registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const struct node *node;
    struct id_api *ia;
} id_registry[ID_REGISTRY_MAX];

static void id_registry_set(const struct node *node, struct id_api *ia)
{
    pthread_mutex_lock(&id_registry_mu);
    for (uint32_t i = 0; i < ID_REGISTRY_MAX; i++) {
        if (ia && id_registry[i].node == NULL) {
            id_registry[i].node = node;
            id_registry[i].ia = ia;
            break;
        }
        if (!ia && id_registry[i].node == node) {
            id_registry[i].node = NULL;
            id_registry[i].ia = NULL;
        }
    }
    pthread_mutex_unlock(&id_registry_mu);
}

struct id_api *id_api_of(const struct node *node)
{
    struct id_api *ia = NULL;
    pthread_mutex_lock(&id_registry_mu);
    for (uint32_t i = 0; i < ID_REGISTRY_MAX && !ia; i++)
        if (id_registry[i].node == node)
            ia = id_registry[i].ia;
    pthread_mutex_unlock(&id_registry_mu);
    return ia;
}

/* ==== init ================================================================================ */

static void id_unref(struct id_api *ia)
{
    CC_ASSERT(ia->n_refs > 0);
    if (--ia->n_refs == 0 && ia->closing)
        free(ia);
}

static void id_on_timer_closed(uv_handle_t *h) { id_unref(h->data); }

int id_api_init(struct api *a, struct id_api **out, char *msg, size_t msg_cap)
{
    const char *policy = getenv("CONCLAVE_SNOWFLAKE_ROLLBACK");
    int pol = ID_RB_NEW_WORKER;
    if (policy && *policy) {
        pol = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(policy, id_rollback_names[i]) == 0)
                pol = i;
        if (pol < 0) {
            snprintf(msg, msg_cap, "CONCLAVE_SNOWFLAKE_ROLLBACK must be new-worker, refuse or "
                                   "wait, not '%s'", policy);
            return ID_API_ECONFIG;
        }
    }
    const char *idle = getenv("CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS");
    uint64_t release_ms = ID_SF_RELEASE_MS_DEFAULT;
    if (idle && *idle) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(idle, &end, 10);
        if (errno || *end || idle[0] == '-' || (v != 0 && v < ID_SF_RELEASE_MS_MIN) ||
            v > UINT32_MAX) {
            snprintf(msg, msg_cap, "CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS must be 0 or %d..%u ms, "
                                   "not '%s'", ID_SF_RELEASE_MS_MIN, UINT32_MAX, idle);
            return ID_API_ECONFIG;
        }
        release_ms = v;
    }
    struct id_api *ia = calloc(1, sizeof(*ia));
    if (!ia) {
        snprintf(msg, msg_cap, "out of memory");
        return ID_API_ENOMEM;
    }
    ia->api = a;
    ia->loop = a->loop;
    ia->node = a->node;
    ia->env = env_posix();
    const char *tc = getenv("CONCLAVE_TEST_ID_CLOCK");
    ia->test_clock = tc && strcmp(tc, "1") == 0;
    ia->sf.policy = (uint8_t)pol;
    ia->sf.release_idle_ms = release_ms;
    ia->sf.worker = -1;
    ia->sf.claiming = -1;
    for (uint32_t i = 0; i < ID_SF_AVOID; i++)
        ia->sf.avoid[i] = -1;
    uuid_v7_init(&ia->v7);
    /* the trace id's IPv4: this node's HTTP host when it is one, else loopback */
    uint32_t ip = 0x7f000001u;
    char host[NODE_ADDR_BYTES];
    snprintf(host, sizeof(host), "%s", node_self(a->node)->http_addr);
    char *colon = strrchr(host, ':');
    unsigned char ipb[4];
    if (colon) {
        *colon = 0;
        if (uv_inet_pton(AF_INET, host, ipb) == 0)
            ip = (uint32_t)ipb[0] << 24 | (uint32_t)ipb[1] << 16 | (uint32_t)ipb[2] << 8 | ipb[3];
    }
    traceid_gen_init(&ia->trace, ip, (uint32_t)getpid());
    id_keys_init(ia);
    if (!ia->secret_ok)
        id_log(ia, "id: keyed generators disabled: %s", ia->secret_err);
    if (ia->test_clock)
        id_log(ia, "id: TEST ONLY: POST /v1/id/test/clock may shift the ID clock");
    uv_timer_init(ia->loop, &ia->tick);
    uv_timer_init(ia->loop, &ia->sf_timer);
    ia->tick.data = ia->sf_timer.data = ia;
    ia->n_refs = 2;
    uv_timer_start(&ia->tick, id_on_tick, ID_TICK_MS, ID_TICK_MS);
    id_registry_set(ia->node, ia);
    *out = ia;
    return 0;
}

void id_api_fini(struct id_api *ia)
{
    if (!ia)
        return;
    ia->closing = true;
    id_registry_set(ia->node, NULL);
    struct id_op *o_next = NULL;
    for (struct id_op *o = ia->ops; o; o = o_next) {
        o_next = o->next; /* HTTP: normally none, the server finished every request */
        id_op_fail(o, 503, "shutting_down", "the server is stopping");
    }
    struct id_tagbuf *t_next = NULL;
    for (struct id_tagbuf *tb = ia->tagbufs; tb; tb = t_next) {
        t_next = tb->next;
        tagbuf_free(ia, tb);
    }
    for (struct idrpc *r = ia->rpcs; r; r = r->next) {
        r->cb = NULL;
        if (!r->done)
            idrpc_finish(r, 0); /* closes its handles; it frees itself from the loop */
    }
    id_keys_fini(ia);
    uv_close((uv_handle_t *)&ia->tick, id_on_timer_closed);
    uv_close((uv_handle_t *)&ia->sf_timer, id_on_timer_closed);
}
