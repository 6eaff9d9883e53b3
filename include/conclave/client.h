/* conclave/client.h -- the C client library for Conclave (libconclave-client.a,
 * pkg-config name `conclave`; docs/client.md has the guide and an example program).
 *
 * What it offers: keys (put, get, delete), leases (grant, keepalive, revoke), segment
 * ids from a local double buffer (cc_id_next), and distributed locks and elections whose hold is watched by a renewal thread that tells
 * the holder, through lost_cb, the moment the lock can no longer be trusted.
 *
 * Endpoints. A client knows one or more nodes ("h1:2479,h2:2479,h3:2479"). Any node
 * serves any request (a follower forwards writes to the leader itself). When a node
 * cannot be reached, or answers 503 no_leader (which proves it did nothing), the
 * request goes to the next endpoint; the one that answered is tried first next time.
 *
 * Errors. Every function returns 0 or a negative CC_E* code (below); cc_strerror()
 * names it and cc_last_error() gives the detail of the calling thread's last failure
 * (the server's own message where there was one). Results go through out-params.
 *
 * Thread safety. A cc_client may be used from any number of threads at once. A cc_lock
 * handle's getters (cc_lock_token, cc_lock_valid, ...) may be called from any thread,
 * also from lost_cb; cc_lock_release / cc_election_resign / cc_election_proclaim must
 * not run concurrently with each other on the same handle, and never from lost_cb.
 * Every lock must be released before its client is freed.
 *
 * THE WATCHDOG RULE. Every held lock has a renewal thread that sends
 * POST /v1/lease/{id}/keepalive every ttl/3 and records, on CLOCK_MONOTONIC, the time
 * each successful keepalive was SENT (before connecting). The server answers a
 * keepalive only after it confirmed its leadership, and then sets the lease's deadline
 * to at least (its now + ttl), its now being later than our send. So the lease cannot
 * expire before  last_success_send + ttl  and the lock is trusted until
 *
 *     valid_until = last_success_send + ttl - margin,   margin = max(ttl/10, 50 ms)
 *
 * (margin configurable in cc_options). cc_lock_valid() is exactly `now < valid_until`.
 * When renewals have failed until valid_until is reached, lost_cb(lock, arg) is called
 * once, on the renewal thread, and renewing stops: that is before the server can have
 * expired the lease, never after. A keepalive answered 404 or 410 (the lease is gone)
 * calls lost_cb at once. Once the lock is not valid it never becomes valid again.
 *
 * Clock assumption: the client's and the server's clocks run at rates that differ by
 * less than margin/ttl (10% by default, far above real quartz drift); nothing is
 * assumed about their offsets, since only durations measured on one machine are
 * compared. A stopped process (SIGSTOP, a VM pause) cannot run lost_cb in time; it runs
 * when the process continues, and cc_lock_valid() is false from the bound on. For
 * that case, and for the time between lost_cb and the end of your work, pass the
 * fencing token (cc_lock_token) to the protected resource (docs/locks.md).
 *
 * Ownership: cc_client_new and cc_lock_acquire hand out handles that the caller frees
 * with cc_client_free and cc_lock_release (which also frees the handle). Strings passed
 * in are copied. cc_kv_get's *value is malloc'd and freed by the caller with free().
 */
#ifndef CONCLAVE_CLIENT_H
#define CONCLAVE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits (the server's own; refused here before anything is sent) -------------- */

#define CC_ENDPOINTS_MAX        16u         /* CC_EENDPOINTS: nodes one client knows */
#define CC_KEY_BYTES_MAX        4096u       /* CC_EKEYTOOBIG */
#define CC_VALUE_BYTES_MAX      1043392u    /* CC_EVALUETOOBIG: a kv value */
#define CC_LOCK_NAME_BYTES_MAX  256u        /* CC_ENAMETOOBIG; names hold no '/' */
#define CC_LOCK_OWNER_BYTES_MAX 128u        /* CC_EOWNERTOOBIG */
#define CC_LOCK_VALUE_BYTES_MAX 1024u       /* CC_ELOCKVALUETOOBIG: an election value */
#define CC_TTL_MS_MIN           500u        /* CC_ETTL below / above */
#define CC_TTL_MS_MAX           2592000000u /* 30 days */
#define CC_MARGIN_MS_MIN        50u         /* the default margin's floor */

#define CC_WAIT_FOREVER (-1) /* wait_ms: queue until granted */

/* ---- errors (range -3101..-3199) ---------------------------------------------------- */

enum {
    CC_EINVAL = -3101,           /* bad argument (detail in cc_last_error) */
    CC_ENOMEM = -3102,           /* out of memory */
    CC_EUNREACHABLE = -3103,     /* no endpoint could be reached */
    CC_ETIMEDOUT = -3104,        /* no complete answer in time; a write may have happened */
    CC_EPROTO = -3105,           /* malformed answer */
    CC_EUNAVAILABLE = -3106,     /* 503: no leader, leader changed, overloaded; retry */
    CC_EUNKNOWN = -3107,         /* 502/504: a write's outcome is unknown */
    CC_ENOTFOUND = -3108,        /* 404: no such key, lease or lock */
    CC_EGONE = -3109,            /* 410: the lease expired, or the revision was compacted */
    CC_EBUSY = -3110,            /* the lock is held and wait_ms was 0 */
    CC_ELOCKTIMEOUT = -3111,     /* not granted within wait_ms */
    CC_ENOTHOLDER = -3112,       /* release/proclaim: this owner and token do not hold it */
    CC_ECONFLICT = -3113,        /* other 409: the lock exists with another kind */
    CC_ELIMIT = -3114,           /* 413/414/429: a server limit */
    CC_EBADREQUEST = -3115,      /* 400: the server refused the request as malformed */
    CC_ELOST = -3116,            /* the lock can no longer be trusted (see the rule above) */
    CC_ETHREAD = -3117,          /* could not start the renewal thread */
    CC_ESERVER = -3118,          /* another server error (500) */
    CC_EENDPOINTS = -3119,       /* more than CC_ENDPOINTS_MAX endpoints */
    CC_EKEYTOOBIG = -3120,       /* key over CC_KEY_BYTES_MAX */
    CC_EVALUETOOBIG = -3121,     /* value over CC_VALUE_BYTES_MAX */
    CC_ENAMETOOBIG = -3122,      /* lock name over CC_LOCK_NAME_BYTES_MAX */
    CC_EOWNERTOOBIG = -3123,     /* owner over CC_LOCK_OWNER_BYTES_MAX */
    CC_ELOCKVALUETOOBIG = -3124, /* election value over CC_LOCK_VALUE_BYTES_MAX */
    CC_ETTL = -3125,             /* ttl_ms outside CC_TTL_MS_MIN..CC_TTL_MS_MAX */
    CC_EMARGIN = -3126,          /* lock_margin_ms above ttl/2: nothing left to renew in */
};

/* A static string for any code (0: "success"). */
const char *cc_strerror(int rv);

/* The calling thread's detail of its last failed call ("" if none); valid until that
 * thread's next call into the library. */
const char *cc_last_error(void);

/* ---- client --------------------------------------------------------------------------- */

typedef struct cc_client cc_client;

struct cc_options {
    uint32_t request_timeout_ms; /* one exchange, connect included; 0: 15000 */
    uint32_t connect_timeout_ms; /* one connect attempt; 0: 3000 */
    uint32_t lock_margin_ms;     /* watchdog safety margin; 0: max(ttl/10, 50) */
};

/* endpoints_csv: "HOST:PORT[,HOST:PORT...]" ("http://" and "[v6]:port" accepted).
 * opts may be NULL (defaults). On success *out is a new client (cc_client_free). */
int cc_client_new(const char *endpoints_csv, const struct cc_options *opts, cc_client **out);

/* NULL-safe. Every lock of the client must have been released. */
void cc_client_free(cc_client *c);

/* ---- keys ----------------------------------------------------------------------------- */

/* Sets key (a NUL-terminated string, 1..CC_KEY_BYTES_MAX bytes) to value_len bytes.
 * lease: 0, or a lease id the key dies with. revision: NULL or the new revision. */
int cc_kv_put(cc_client *c, const char *key, const void *value, size_t value_len, int64_t lease,
              int64_t *revision);

/* Reads key (linearizable). *value: malloc'd, NUL-terminated (not counted in
 * *value_len), freed by the caller. mod_revision may be NULL. CC_ENOTFOUND if absent. */
int cc_kv_get(cc_client *c, const char *key, uint8_t **value, size_t *value_len,
              int64_t *mod_revision);

/* Deletes key; deleted (may be NULL) says whether it existed (0 or 1). */
int cc_kv_del(cc_client *c, const char *key, int64_t *deleted);

/* ---- leases --------------------------------------------------------------------------- */

int cc_lease_grant(cc_client *c, int64_t ttl_ms, int64_t *id);
/* One renewal. CC_ENOTFOUND / CC_EGONE: the lease is gone. ttl_ms may be NULL. */
int cc_lease_keepalive(cc_client *c, int64_t id, int64_t *ttl_ms);
/* Ends the lease now: its keys are deleted and its locks released. */
int cc_lease_revoke(cc_client *c, int64_t id);

/* ---- locks ---------------------------------------------------------------------------- */

typedef struct cc_lock cc_lock;

/* Called once, on the renewal thread, when the lock stops being trustworthy. It may
 * read the handle (cc_lock_token...) but must not release it. Keep it short. */
typedef void (*cc_lock_lost_cb)(cc_lock *lock, void *arg);

/* Acquires the mutex `name` (1..256 bytes, no '/') for `owner` (NULL: a fresh
 * "host:pid:random" id), with a lease of ttl_ms made for this hold. wait_ms: 0 tries
 * once (CC_EBUSY), > 0 queues (FIFO) for at most that long (CC_ELOCKTIMEOUT), or
 * CC_WAIT_FOREVER. Waits beyond the server's 10 s per request are made of several
 * requests; a 503 or an unreachable node in between is retried while time is left.
 * A grant whose lease died before it could be confirmed (this process was paused) is
 * given back and the wait goes on; CC_ELOCKTIMEOUT once the wait is over, CC_ELOST
 * with wait_ms 0. Either way the caller does not hold the lock.
 * On success *out holds the lock, valid now, with its renewal thread running; lost_cb
 * (may be NULL) is called if it stops being valid. A handle is one hold: acquiring the
 * same name again, even with the same owner, waits for it (not reentrant). */
int cc_lock_acquire(cc_client *c, const char *name, const char *owner, int64_t ttl_ms,
                    int64_t wait_ms, cc_lock_lost_cb lost_cb, void *lost_arg, cc_lock **out);

uint64_t cc_lock_token(const cc_lock *l); /* the fencing token of this hold */
int64_t cc_lock_lease(const cc_lock *l);  /* the lease the hold lives on */
const char *cc_lock_name(const cc_lock *l);
const char *cc_lock_owner(const cc_lock *l);
/* now < last_success_send + ttl - margin, and no 404/410 seen. */
bool cc_lock_valid(const cc_lock *l);
/* Milliseconds the lock stays valid without another successful renewal (0: not valid). */
uint64_t cc_lock_valid_ms(const cc_lock *l);

/* Stops the renewal thread, releases the hold (owner and token checked by the server)
 * and revokes its lease, then frees the handle (always, whatever the result). Returns
 * 0, CC_ELOST if the lock had been lost (the release was still attempted), or the
 * error of the release request (the lease then expires by itself within ttl). */
int cc_lock_release(cc_lock *l);

/* ---- elections (the same machinery on /v1/election/{name}) ----------------------------- */

/* Campaigns for leadership of `name` with `value` (NULL: ""), waiting like
 * cc_lock_acquire. The handle is a lock: the token and watchdog work the same way. */
int cc_election_campaign(cc_client *c, const char *name, const char *owner, const char *value,
                         int64_t ttl_ms, int64_t wait_ms, cc_lock_lost_cb lost_cb, void *lost_arg,
                         cc_lock **out);
/* Changes the leader's value. CC_ENOTHOLDER if no longer the leader. */
int cc_election_proclaim(cc_lock *l, const char *value);
/* Resigns (cc_lock_release on an election handle); frees the handle. */
int cc_election_resign(cc_lock *l);

/* ---- ids: a local segment buffer (Tinyid-client style; docs/client.md "IDs") ---------- *
 *
 * cc_id_next hands out segment-mode ids of `tag` from memory. The client holds two
 * segments per tag, fetched from the cluster with POST /v1/id/segments/{tag}/alloc (one
 * Raft write, max_id += count, so no other node or client ever gets them). A background
 * thread (started on first use, one per client) fetches the next segment once the
 * current one is 20% used, or when what is left would last less than two fetch times;
 * the size adapts: rate x CC_ID_SEGMENT_MS, within CC_ID_STEP_MIN..CC_ID_STEP_MAX (the
 * first fetch takes the tag's own step). A call that finds both segments empty waits for
 * the fetch (at most request_timeout_ms).
 *
 * Guarantees: no id is handed out twice, by any client or node, across restarts of
 * either (a range the server committed is never committed again; an unused rest is a
 * gap). One client's ids of a tag increase strictly in the order it hands them out, over
 * all its threads: it fetches one segment at a time, and each commits above the last.
 * Thread-safe; one mutex per client guards the buffers. */

#define CC_ID_TAG_BYTES_MAX 128u      /* CC_EINVAL: 1..128 chars of [A-Za-z0-9._:-] */
#define CC_ID_TAGS_MAX      64u       /* CC_ELIMIT: tags one client buffers */
#define CC_ID_SEGMENT_MS    10000u    /* a segment is sized to last this long */
#define CC_ID_STEP_MIN      100       /* ids per fetch, at least */
#define CC_ID_STEP_MAX      10000000  /* ids per fetch, at most (the server allows 1e8) */

/* The next id of tag (created beforehand: CC_ENOTFOUND otherwise). */
int cc_id_next(cc_client *c, const char *tag, int64_t *out);

struct cc_id_stats {
    uint64_t served;       /* ids handed out by this client */
    uint64_t fetches;      /* segments fetched */
    uint64_t fetch_errors; /* fetches that failed (retried in the background) */
    uint64_t empty_waits;  /* calls that found both segments empty after the first fetch */
    int64_t last_step;     /* size of the last segment asked for */
    int64_t remaining;     /* ids held now, both segments */
};
/* This client's counters for tag (CC_ENOTFOUND: never asked for here). */
int cc_id_stats(cc_client *c, const char *tag, struct cc_id_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* CONCLAVE_CLIENT_H */
