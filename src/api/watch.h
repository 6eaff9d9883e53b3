/* watch.h -- the watch hub: GET /v1/watch/{key} as a Server-Sent Events stream of the
 * key's (or the prefix's) puts and deletes, with revisions, progress bookmarks, a
 * snapshot when the asked-for history is compacted, and lease-death notices
 * (docs/API.md, "Watch").
 *
 * One hub per node, registered as a node observer (node_observe): it sees every applied
 * command of this node, so followers serve watches from their own apply. Watchers
 * asking for the same key (or the same prefix) share one group: an applied command is
 * matched against the groups once (an index by exact key and by prefix length, never a
 * scan of all watchers) and serialized once per group; each watcher then only copies
 * the shared bytes to its stream.
 *
 * Per watcher:  READING -> (SNAPSHOT ->) CATCHUP -> LIVE, any of them -> CUT -> closed
 *   READING   a linearizable read (node_read) fixes "now" before the stream starts
 *   SNAPSHOT  from_revision is compacted: the range's current state is read in pages
 *             at one revision R and sent as ONE `snapshot` event with id R
 *   CATCHUP   history replay (kv_history_since) in bounded steps, paced by the queue
 *   LIVE      events arrive from the hub's fan-out of applied commands
 *   CUT       the watcher fell behind (its queue over WATCH_QUEUE_BYTES_MAX): nothing
 *             more is queued, a final `error` event names the revision to resume from,
 *             the stream ends once that is written
 * A snapshot install (node reset) sends every watcher back to CATCHUP from its next
 * revision (or to SNAPSHOT if that is compacted in the new state).
 *
 * The index, the SSE builders and the queue below are pure (no IO, no node) and are
 * exported for tests/unit/test_watch.c; the hub itself lives in watch.c.
 *
 * Errors are negative WATCH_E* codes in -1921..-1929 (api/ ranges: http -1901, watch
 * -1921, id -1931, resp server -1941, resp codec -1951);
 * watch_strerror() names them. Ownership is written at each declaration.
 */
#ifndef CC_API_WATCH_H
#define CC_API_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "api/http.h"
#include "node/node.h"
#include "sm/kv.h"

/* ---- limits (each has its own error or documented effect) -------------------------- */

#define WATCH_PATH_PREFIX "/v1/watch/"
/* WATCH_ETOOMANY (503): open watches on one node. Each holds a connection, so the HTTP
 * server's connection limit times its pipeline depth bounds them anyway; this keeps the
 * per-event fan-out and the progress sweep bounded well below that. */
#define WATCH_WATCHERS_MAX 8192u
/* Watches per connection. A watch is a request that is never answered until it ends,
 * so it keeps its pipeline slot: http.c already stops reading a connection that holds
 * pipeline_max unanswered requests. Named here so the bound is written down. */
#define WATCH_PER_CONN_MAX HTTP_PIPELINE_MAX
/* WATCH_EKEYTOOBIG (414): a watched key or prefix, as any key. */
#define WATCH_KEY_BYTES_MAX KV_KEY_BYTES_MAX
/* A `progress` bookmark with the current revision goes to every idle watcher this
 * often: clients learn how far they are, and proxies see traffic. */
#define WATCH_PROGRESS_MS 5000u
/* WATCH_ESLOW: bytes one watcher may have queued (beyond what the HTTP stream buffer
 * already holds) before a live event cuts it. An event larger than this is still
 * accepted by an empty queue, so one big transaction cannot cut a reading client. */
#define WATCH_QUEUE_BYTES_MAX (4u << 20)
/* WATCH_EMEMORY: all queued event bytes of the hub together. Past it, a live event
 * cuts every watcher that has a backlog, and no catch-up or snapshot step starts. */
#define WATCH_BUF_BYTES_TOTAL_MAX (256u << 20)
/* One http_stream_write; its limit is the stream buffer (HTTP_EINVAL above it). */
#define WATCH_WRITE_PIECE_BYTES (64u << 10)
/* Changes examined by one catch-up step of one watcher (kv_history_since budget). */
#define WATCH_HISTORY_BUDGET 1024u
/* A catch-up step stops at the next revision boundary after this many bytes. */
#define WATCH_CATCHUP_STEP_BYTES (256u << 10)
/* A catch-up step runs only while the watcher's queue is below this: history is sent
 * as fast as the client reads it, never faster. */
#define WATCH_CATCHUP_QUEUE_BYTES (64u << 10)
/* Keys read per snapshot step (one kv_range page). */
#define WATCH_SNAPSHOT_PAGE_KEYS 1000u
/* WATCH_ESNAPTOOBIG: one snapshot event. The client is told the revision to read the
 * range at (GET ...?prefix=true&revision=R, paged) and to watch from R+1. */
#define WATCH_SNAPSHOT_BYTES_MAX (64u << 20)
/* WATCH_ESNAPRETRY: a snapshot being read at revision R restarts when R is compacted
 * meanwhile; after this many restarts the watcher is cut. */
#define WATCH_SNAPSHOT_RESTARTS_MAX 8u
/* The work timer: how often blocked watchers (stream buffer full) are retried. Work
 * that made progress runs again on the next loop iteration. */
#define WATCH_TICK_MS 10u
/* Watchers given a step per tick (round robin): bounds one tick's work. */
#define WATCH_TICK_WATCHERS_MAX 256u
/* A cut watcher whose client does not read its final error within this long is ended
 * without it (the stream then simply ends; its last id is still a valid resume point). */
#define WATCH_CUT_DRAIN_MS 30000u
/* The linearizable read that starts a watch: unanswered by then, 503. */
#define WATCH_READ_TIMEOUT_MS 5000u

_Static_assert(WATCH_WRITE_PIECE_BYTES <= HTTP_STREAM_BUFFER_BYTES_MAX,
               "a piece must fit the stream buffer or http_stream_write refuses it");
_Static_assert(WATCH_CATCHUP_QUEUE_BYTES + WATCH_CATCHUP_STEP_BYTES < WATCH_QUEUE_BYTES_MAX,
               "a watcher that just caught up has room for live events");
_Static_assert(WATCH_QUEUE_BYTES_MAX <= WATCH_BUF_BYTES_TOTAL_MAX, "one queue fits the total");
_Static_assert(WATCH_SNAPSHOT_BYTES_MAX <= WATCH_BUF_BYTES_TOTAL_MAX,
               "one snapshot fits the total");
_Static_assert(WATCH_SNAPSHOT_PAGE_KEYS <= KV_RANGE_LIMIT_MAX, "a page is one kv_range");
_Static_assert(WATCH_PROGRESS_MS < HTTP_IDLE_TIMEOUT_MS, "bookmarks keep a quiet stream alive");
_Static_assert(WATCH_CUT_DRAIN_MS <= HTTP_IDLE_TIMEOUT_MS, "a stalled cut ends before http's");

/* ---- errors ------------------------------------------------------------------------ */

enum {
    WATCH_EINVAL = -1921,      /* bad argument */
    WATCH_ENOMEM = -1922,      /* allocation failed */
    WATCH_ETOOMANY = -1923,    /* WATCH_WATCHERS_MAX open watches */
    WATCH_EKEYTOOBIG = -1924,  /* key over WATCH_KEY_BYTES_MAX */
    WATCH_ESLOW = -1925,       /* queue over WATCH_QUEUE_BYTES_MAX: cut */
    WATCH_EMEMORY = -1926,     /* hub over WATCH_BUF_BYTES_TOTAL_MAX: cut */
    WATCH_ESNAPTOOBIG = -1927, /* snapshot over WATCH_SNAPSHOT_BYTES_MAX */
    WATCH_ESNAPRETRY = -1928,  /* WATCH_SNAPSHOT_RESTARTS_MAX restarts */
};
const char *watch_strerror(int rv);

/* ---- the hub ----------------------------------------------------------------------- */

struct watch_hub;

/* Creates the hub and registers it with node_observe. Returns 0, WATCH_ENOMEM or
 * NODE_EFULL (no observer slot); on error *out is NULL (handles still close from the
 * loop). The hub is freed by watch_hub_free, after the HTTP server stopped. */
int watch_hub_new(uv_loop_t *loop, struct node *node, struct watch_hub **out);

/* Ends every watch still open, unregisters from the node and frees the hub once its
 * timers closed (from the loop). */
void watch_hub_free(struct watch_hub *h);

/* Serves one request whose decoded path starts with WATCH_PATH_PREFIX. Takes req: it is
 * finished by the hub (an error response, or the stream's end). */
void watch_request(struct watch_hub *h, struct http_req *req);

struct watch_stats {
    uint32_t n_watchers; /* open now, any state */
    uint32_t n_groups;   /* distinct watched keys, prefixes and leases */
    uint64_t started;    /* watches accepted */
    uint64_t events;     /* put/delete SSE events queued, all watchers */
    uint64_t fanouts;    /* group serializations of applied commands */
    uint64_t snapshots;  /* snapshot events sent */
    uint64_t cut;        /* watchers cut for falling behind */
    uint64_t resets;     /* snapshot installs seen */
    uint64_t buf_bytes;  /* event bytes held now */
};
void watch_hub_stats(const struct watch_hub *h, struct watch_stats *out);

/* ---- pure parts: intrusive lists --------------------------------------------------- */

struct watch_link {
    struct watch_link *prev, *next; /* circular; a lone link points to itself */
};

/* ---- pure parts: the group index ----------------------------------------------------
 * Groups keyed by (kind, bytes): an exact key, a prefix, or a lease id (8 bytes, little
 * endian). Matching a key finds its exact group and the groups of each of its prefixes
 * by one pass over the key (FNV-1a extended byte by byte), probing only the prefix
 * lengths some group has: O(key length + matches), whatever the number of groups. */

enum watch_kind { WATCH_KIND_KEY = 1, WATCH_KIND_PREFIX = 2, WATCH_KIND_LEASE = 3 };

struct watch_group {
    struct watch_group *hash_next;
    uint64_t hash;
    uint32_t refs; /* holders (watchers); the group is freed at 0 */
    uint8_t kind;  /* enum watch_kind */
    /* What kv_history_since / kv_range read for this group (key kinds): [rkey, rend)
     * in kv.h's range rules, rend_len 0 meaning the single key rkey. Owned. */
    uint8_t *rkey;
    uint32_t rkey_len;
    uint8_t *rend;
    uint32_t rend_len;
    /* The hub's: LIVE watchers (key kinds) or started watchers (lease), and the events
     * of the command being fanned out. */
    struct watch_link members;
    uint32_t n_members;
    uint32_t *evs;
    uint32_t n_evs, cap_evs;
    bool touched;
    uint32_t key_len;
    uint8_t key[]; /* the key, prefix or lease id bytes */
};

struct watch_index {
    struct watch_group **buckets;
    uint32_t n_buckets; /* power of two */
    uint32_t n_groups;
    uint32_t n_prefix_groups;
    uint32_t *prefix_len_count; /* [WATCH_KEY_BYTES_MAX + 1]: prefix groups by length */
};

/* 0 or WATCH_ENOMEM. Free with watch_index_fini (groups must all be unref'd). */
int watch_index_init(struct watch_index *ix);
void watch_index_fini(struct watch_index *ix);
/* The group (kind, bytes) or NULL. */
struct watch_group *watch_index_find(const struct watch_index *ix, uint8_t kind,
                                     const uint8_t *bytes, uint32_t len);
/* Finds or creates the group and takes a reference. 0, WATCH_ENOMEM, WATCH_EINVAL (bad
 * kind, a KEY group with no bytes, a lease with len != 8) or WATCH_EKEYTOOBIG. */
int watch_index_ref(struct watch_index *ix, uint8_t kind, const uint8_t *bytes, uint32_t len,
                    struct watch_group **out);
/* Drops a reference; the last one frees the group. */
void watch_index_unref(struct watch_index *ix, struct watch_group *g);
/* Calls match_cb for the KEY group of key (if any) and every PREFIX group that is a
 * prefix of it (the empty prefix included), each once, prefixes shortest first and the
 * exact group last. match_cb must not add or remove groups. */
typedef void (*watch_match_cb)(void *arg, struct watch_group *g);
void watch_index_match(const struct watch_index *ix, const uint8_t *key, uint32_t key_len,
                       watch_match_cb match_cb, void *arg);

/* ---- pure parts: SSE bytes --------------------------------------------------------------
 * A watch_buf holds the bytes of one or more complete SSE events. It is reference
 * counted (shared by every watcher of a group) and its allocation is counted in *acct
 * (may be NULL) while it lives. */

struct watch_buf {
    uint32_t refs;
    uint64_t *acct;
    size_t n, cap;
    uint8_t bytes[];
};

/* A new buffer holding nothing, refs 1. NULL on allocation failure. */
struct watch_buf *watch_buf_new(size_t cap, uint64_t *acct);
/* Appends; may move *b (realloc). false on allocation failure (*b unchanged). */
bool watch_buf_append(struct watch_buf **b, const void *p, size_t n);
void watch_buf_ref(struct watch_buf *b);
void watch_buf_unref(struct watch_buf *b); /* NULL-safe */

/* One revision's changes as one SSE event, built in three calls:
 *   id: <R>\nevent: <put|delete: the first change's type>\ndata: {"revision":R,"events":[
 *   {"type":"put","kv":{...}} | {"type":"delete","key":...,"mod_revision":R}, ...
 *   ]}\n\n
 * Keys and values are JSON strings when UTF-8 without NUL, else key_base64 /
 * value_base64. Each returns false on allocation failure. */
bool watch_sse_rev_begin(struct watch_buf **b, int64_t rev, uint8_t first_type);
bool watch_sse_rev_add(struct watch_buf **b, const struct kv_event *ev, bool first);
bool watch_sse_rev_end(struct watch_buf **b);
/* One key-value as the snapshot event and GET show it (no leading comma). */
bool watch_sse_kv(struct watch_buf **b, const struct kv_kv *kv);
/* "id: <id>\n" (when id >= 0) "event: <event>\ndata: <compact JSON of data>\n\n". Takes
 * data (decref'd, may be NULL: then false). */
bool watch_sse_json(struct watch_buf **b, int64_t id, const char *event, json_t *data);

/* ---- pure parts: the per-watcher queue ---------------------------------------------- */

struct watch_queue {
    struct watch_buf **bufs; /* referenced; [head, head + n) */
    uint32_t head, n, cap;
    size_t off;   /* bytes of bufs[head] already written */
    size_t bytes; /* unwritten bytes queued */
};

/* Queues b (takes a new reference). false on allocation failure. */
bool watch_queue_push(struct watch_queue *q, struct watch_buf *b);
/* The next unwritten bytes (within one buffer); false when empty. */
bool watch_queue_peek(const struct watch_queue *q, const uint8_t **p, size_t *n);
/* The unwritten bytes of the i-th queued buffer (0: the head, from its offset); false
 * past the end. For gathering several small events into one write. */
bool watch_queue_peek_at(const struct watch_queue *q, uint32_t i, const uint8_t **p, size_t *n);
/* Marks n bytes from peek as written (n <= what peek returned). */
void watch_queue_consume(struct watch_queue *q, size_t n);
void watch_queue_clear(struct watch_queue *q); /* drops every reference, frees the array */

/* Whether a live event of n bytes may join a queue with `queued` bytes while the hub
 * holds `total`: 0 (yes), WATCH_ESLOW or WATCH_EMEMORY (cut the watcher). An empty
 * queue always takes it: a watcher that keeps up is never cut. */
int watch_admit(size_t queued, size_t n, uint64_t total);

#endif /* CC_API_WATCH_H */
