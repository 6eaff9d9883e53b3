/* client.c -- the C client library's core: the client handle, errors, requests with
 * endpoint failover, keys and leases (include/conclave/client.h; docs/client.md).
 *
 * Every request is one cli/client.h exchange (one connection, bounded by a deadline).
 * Failover moves to the next endpoint only when the failure proves that nothing was
 * done: the endpoint could not be reached, or it answered 503 no_leader. Any other
 * answer, error or not, is the answer. The endpoint that answered becomes the first
 * one tried next time (an atomic index: the client has no lock).
 *
 * Invariants: the client is immutable after cc_client_new except `preferred` and
 * `n_locks` (atomics), so any number of threads may share it. The detail buffer is
 * per thread.
 *
 * Sections: errors | client | requests | keys | leases.
 */
#include "client/client_internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "sm/kv.h"
#include "sm/lease.h"
#include "sm/lock.h"

_Static_assert(CC_KEY_BYTES_MAX == KV_KEY_BYTES_MAX, "the server's key limit");
_Static_assert(CC_VALUE_BYTES_MAX == KV_VALUE_BYTES_MAX, "the server's value limit");
_Static_assert(CC_LOCK_NAME_BYTES_MAX == LOCK_NAME_BYTES_MAX, "the server's name limit");
_Static_assert(CC_LOCK_OWNER_BYTES_MAX == LOCK_OWNER_BYTES_MAX, "the server's owner limit");
_Static_assert(CC_LOCK_VALUE_BYTES_MAX == LOCK_VALUE_BYTES_MAX, "the server's value limit");
_Static_assert(CC_TTL_MS_MIN == LEASE_TTL_MS_MIN, "the server's ttl floor");
_Static_assert(CC_TTL_MS_MAX == LEASE_TTL_MS_MAX, "the server's ttl ceiling");
_Static_assert(sizeof("/v1/kv/") + 3 * (size_t)CC_KEY_BYTES_MAX + 64 <= CLIENT_TARGET_BYTES_MAX,
               "an escaped longest key and a query fit one target");

/* ---- errors ------------------------------------------------------------------------- */

static _Thread_local char cc__detail[CC_DETAIL_BYTES];

const char *cc_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case CC_EINVAL:
        return "invalid argument";
    case CC_ENOMEM:
        return "out of memory";
    case CC_EUNREACHABLE:
        return "no endpoint could be reached";
    case CC_ETIMEDOUT:
        return "no complete answer in time";
    case CC_EPROTO:
        return "malformed answer";
    case CC_EUNAVAILABLE:
        return "the cluster is unavailable (no leader or overloaded); retry";
    case CC_EUNKNOWN:
        return "the outcome of the write is unknown";
    case CC_ENOTFOUND:
        return "not found";
    case CC_EGONE:
        return "gone (lease expired or revision compacted)";
    case CC_EBUSY:
        return "the lock is held by someone else";
    case CC_ELOCKTIMEOUT:
        return "the lock was not granted within the wait";
    case CC_ENOTHOLDER:
        return "not the holder (owner and token do not match)";
    case CC_ECONFLICT:
        return "conflict (the lock exists with another kind or mode)";
    case CC_ELIMIT:
        return "a server limit was reached";
    case CC_EBADREQUEST:
        return "the server refused the request as malformed";
    case CC_ELOST:
        return "the lock was lost (its lease can no longer be trusted)";
    case CC_ETHREAD:
        return "cannot start the renewal thread";
    case CC_ESERVER:
        return "server error";
    case CC_EENDPOINTS:
        return "too many endpoints";
    case CC_EKEYTOOBIG:
        return "key too long";
    case CC_EVALUETOOBIG:
        return "value too large";
    case CC_ENAMETOOBIG:
        return "lock name too long";
    case CC_EOWNERTOOBIG:
        return "owner too long";
    case CC_ELOCKVALUETOOBIG:
        return "election value too long";
    case CC_ETTL:
        return "ttl out of range";
    case CC_EMARGIN:
        return "safety margin above half the ttl";
    default:
        return "unknown conclave client error";
    }
}

const char *cc_last_error(void)
{
    return cc__detail;
}

void cc__set_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cc__detail, sizeof(cc__detail), fmt, ap);
    va_end(ap);
}

void cc__clear_detail(void)
{
    cc__detail[0] = '\0';
}

uint64_t cc__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- client ------------------------------------------------------------------------- */

static int cc__transport_default(void *arg, const char *endpoint, const struct client_opts *opts,
                                 const struct client_request *req, struct client_response *resp,
                                 char *errmsg, size_t errmsg_cap)
{
    (void)arg;
    return client_do(endpoint, opts, req, resp, errmsg, errmsg_cap);
}

void cc__set_transport(cc_client *c, cc_transport_fn fn, void *arg)
{
    CC_ASSERT(c != NULL && fn != NULL);
    c->transport = fn;
    c->transport_arg = arg;
}

int cc_client_new(const char *endpoints_csv, const struct cc_options *opts, cc_client **out)
{
    cc__clear_detail();
    if (!endpoints_csv || !out) {
        cc__set_detail("endpoints and out are required");
        return CC_EINVAL;
    }
    cc_client *c = calloc(1, sizeof(*c));
    if (!c)
        return CC_ENOMEM;
    c->request_timeout_ms =
        opts && opts->request_timeout_ms ? opts->request_timeout_ms : CC_REQUEST_TIMEOUT_MS_DEFAULT;
    c->connect_timeout_ms =
        opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : CC_CONNECT_TIMEOUT_MS_DEFAULT;
    c->lock_margin_ms = opts ? opts->lock_margin_ms : 0;
    c->transport = cc__transport_default;
    int rv = 0;
    const char *p = endpoints_csv;
    size_t total = strlen(endpoints_csv);
    for (size_t guard = 0; guard <= total; guard++) { /* one endpoint per pass */
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == 0 || n >= CLIENT_ENDPOINT_BYTES) {
            cc__set_detail("endpoint %u in '%s' is %s", c->n_endpoints + 1, endpoints_csv,
                           n == 0 ? "empty" : "too long");
            rv = CC_EINVAL;
            goto err;
        }
        if (c->n_endpoints == CC_ENDPOINTS_MAX) {
            cc__set_detail("more than %u endpoints", CC_ENDPOINTS_MAX);
            rv = CC_EENDPOINTS;
            goto err;
        }
        char *e = malloc(n + 1);
        if (!e) {
            rv = CC_ENOMEM;
            goto err;
        }
        memcpy(e, p, n);
        e[n] = '\0';
        c->endpoints[c->n_endpoints++] = e;
        char host[CLIENT_ENDPOINT_BYTES], port[8], why[CC_DETAIL_BYTES];
        if (client_endpoint_split(e, host, sizeof(host), port, sizeof(port), why, sizeof(why))) {
            cc__set_detail("%s", why);
            rv = CC_EINVAL;
            goto err;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = c;
    return 0;
err:
    cc_client_free(c);
    CC_ASSERT(rv != 0);
    return rv;
}

void cc_client_free(cc_client *c)
{
    if (!c)
        return;
    CC_ASSERT(atomic_load(&c->n_locks) == 0); /* every lock released first */
    cc__ids_free(atomic_load(&c->ids));
    for (uint32_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c);
}

/* ---- requests ----------------------------------------------------------------------- */

/* The "code" of a Conclave JSON error body, into out ("" if none). */
static void cc__error_code(const struct client_response *resp, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *j =
        resp->body_len ? json_loadb((const char *)resp->body, resp->body_len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    if (code)
        snprintf(out, cap, "%s", code);
    json_decref(j);
}

static int cc__map_client_error(int rv)
{
    switch (rv) {
    case CLIENT_ETIMEDOUT:
        return CC_ETIMEDOUT;
    case CLIENT_EIO:
        return CC_EUNKNOWN;
    case CLIENT_EPROTO:
    case CLIENT_ETOOBIG:
        return CC_EPROTO;
    case CLIENT_ENOMEM:
        return CC_ENOMEM;
    case CLIENT_EINVAL:
        return CC_EINVAL;
    default:
        return client_error_is_unreachable(rv) ? CC_EUNREACHABLE : CC_EPROTO;
    }
}

int cc__request_raw(cc_client *c, const struct client_request *req, uint32_t timeout_ms,
                    struct client_response *resp)
{
    CC_ASSERT(c != NULL && c->n_endpoints > 0);
    CC_ASSERT(req != NULL && resp != NULL);
    CC_ASSERT(timeout_ms > 0);
    memset(resp, 0, sizeof(*resp));
    uint64_t deadline = cc__mono_ms() + timeout_ms;
    uint32_t n = c->n_endpoints;
    uint32_t first = atomic_load(&c->preferred) % n;
    int last = CC_EUNREACHABLE;
    char msg[CC_DETAIL_BYTES] = "";
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = (first + i) % n;
        uint64_t now = cc__mono_ms();
        if (now >= deadline) {
            last = i == 0 ? CC_ETIMEDOUT : last;
            break;
        }
        struct client_opts o = {.timeout_ms = (uint32_t)(deadline - now),
                                .connect_timeout_ms = c->connect_timeout_ms};
        int rv = c->transport(c->transport_arg, c->endpoints[idx], &o, req, resp, msg, sizeof(msg));
        if (rv == 0) {
            char code[64] = "";
            if (resp->status == 503 && i + 1 < n)
                cc__error_code(resp, code, sizeof(code));
            if (strcmp(code, "no_leader") == 0) {
                cc__set_detail("%s: no leader known there", c->endpoints[idx]);
                client_response_free(resp);
                memset(resp, 0, sizeof(*resp));
                last = CC_EUNAVAILABLE;
                continue;
            }
            atomic_store(&c->preferred, idx);
            return 0;
        }
        cc__set_detail("%s: %s", c->endpoints[idx], msg);
        last = cc__map_client_error(rv);
        if (last != CC_EUNREACHABLE)
            return last; /* reached it, and it went wrong midway: not safe to resend */
    }
    if (last == CC_EUNREACHABLE && n > 1)
        cc__set_detail("none of the %u endpoints could be reached (last: %s)", n, msg);
    return last;
}

int cc__request(cc_client *c, const char *method, const char *target, const char *body,
                uint32_t timeout_ms, struct client_response *resp)
{
    CC_ASSERT(method != NULL && target != NULL);
    struct client_request req = {.method = method,
                                 .target = target,
                                 .content_type = body ? "application/json" : NULL,
                                 .body = body,
                                 .body_len = body ? strlen(body) : 0};
    return cc__request_raw(c, &req, timeout_ms, resp);
}

int cc__status_error(const struct client_response *resp)
{
    CC_ASSERT(resp != NULL);
    char line[CC_DETAIL_BYTES], code[64];
    client_error_line(resp, line, sizeof(line));
    cc__set_detail("%s", line);
    cc__error_code(resp, code, sizeof(code));
    switch (resp->status) {
    case 400:
        return CC_EBADREQUEST;
    case 404:
        return CC_ENOTFOUND;
    case 409:
        return strcmp(code, "lock_busy") == 0      ? CC_EBUSY
               : strcmp(code, "lock_timeout") == 0 ? CC_ELOCKTIMEOUT
               : strcmp(code, "not_holder") == 0   ? CC_ENOTHOLDER
                                                   : CC_ECONFLICT;
    case 410:
        return CC_EGONE;
    case 413:
    case 414:
    case 429:
        return CC_ELIMIT;
    case 502:
    case 504:
        return CC_EUNKNOWN;
    case 503:
        return CC_EUNAVAILABLE;
    default:
        return CC_ESERVER;
    }
}

json_t *cc__reply_json(const struct client_response *resp)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
    if (j && json_is_object(j))
        return j;
    json_decref(j);
    cc__set_detail("the server's answer is not a JSON object: %s", jerr.text);
    return NULL;
}

/* One request whose 2xx answer is a JSON object: *out (caller decrefs) or an error. */
static int cc__call_json(cc_client *c, const char *method, const char *target, const char *body,
                         json_t **out)
{
    struct client_response resp;
    int rv = cc__request(c, method, target, body, c->request_timeout_ms, &resp);
    if (rv != 0)
        return rv;
    if (resp.status / 100 != 2) {
        rv = cc__status_error(&resp);
        client_response_free(&resp);
        return rv;
    }
    *out = cc__reply_json(&resp);
    client_response_free(&resp);
    return *out ? 0 : CC_EPROTO;
}

static int64_t cc__json_i64(json_t *j, const char *name)
{
    return (int64_t)json_integer_value(json_object_get(j, name));
}

void cc__make_owner(char *out, size_t cap)
{
    CC_ASSERT(cap > CC_LOCK_OWNER_BYTES_MAX);
    char host[64] = "host";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        r = cc__mono_ms() * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)getpid();
    if (fd >= 0)
        close(fd);
    snprintf(out, cap, "%s:%ld:%016" PRIx64, host, (long)getpid(), r);
}

void cc__escape_segment(const char *s, char *out, size_t out_cap)
{
    client_escape(s, strlen(s), false, out, out_cap);
}

/* ---- keys --------------------------------------------------------------------------- */

static int cc__check_key(const char *key)
{
    if (!key || !key[0]) {
        cc__set_detail("the key is empty");
        return CC_EINVAL;
    }
    if (strlen(key) > CC_KEY_BYTES_MAX) {
        cc__set_detail("the key is %zu bytes; the limit is %u", strlen(key), CC_KEY_BYTES_MAX);
        return CC_EKEYTOOBIG;
    }
    return 0;
}

/* "/v1/kv/<escaped key>" into t (CLIENT_TARGET_BYTES_MAX). */
static void cc__kv_target(const char *key, char *t)
{
    size_t n = (size_t)snprintf(t, CLIENT_TARGET_BYTES_MAX, "/v1/kv/");
    client_escape(key, strlen(key), true, t + n, CLIENT_TARGET_BYTES_MAX - n);
}

int cc_kv_put(cc_client *c, const char *key, const void *value, size_t value_len, int64_t lease,
              int64_t *revision)
{
    CC_ASSERT(c != NULL);
    cc__clear_detail();
    int rv = cc__check_key(key);
    if (rv != 0)
        return rv;
    if (value_len > CC_VALUE_BYTES_MAX) {
        cc__set_detail("the value is %zu bytes; the limit is %u", value_len, CC_VALUE_BYTES_MAX);
        return CC_EVALUETOOBIG;
    }
    if (lease < 0 || (!value && value_len > 0)) {
        cc__set_detail("bad lease or value");
        return CC_EINVAL;
    }
    char *t = malloc(CLIENT_TARGET_BYTES_MAX);
    if (!t)
        return CC_ENOMEM;
    cc__kv_target(key, t);
    if (lease > 0) {
        size_t n = strlen(t);
        snprintf(t + n, CLIENT_TARGET_BYTES_MAX - n, "?lease=%" PRId64, lease);
    }
    struct client_request req = {.method = "PUT",
                                 .target = t,
                                 .content_type = "application/octet-stream",
                                 .body = value_len ? value : "",
                                 .body_len = value_len};
    struct client_response resp;
    rv = cc__request_raw(c, &req, c->request_timeout_ms, &resp);
    if (rv == 0 && resp.status / 100 != 2) {
        rv = cc__status_error(&resp);
    } else if (rv == 0) {
        json_t *j = cc__reply_json(&resp);
        rv = j ? 0 : CC_EPROTO;
        if (j && revision)
            *revision = cc__json_i64(j, "revision");
        json_decref(j);
    }
    client_response_free(&resp);
    free(t);
    return rv;
}

static int cc__b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Decodes standard base64 (as the server writes it) into a malloc'd, NUL-terminated
 * buffer. Returns 0, CC_EPROTO (bad input) or CC_ENOMEM. */
static int cc__b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = malloc(n / 4 * 3 + 4);
    if (!buf)
        return CC_ENOMEM;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        int v = cc__b64_value(s[i]);
        if (v < 0) {
            free(buf);
            cc__set_detail("bad base64 in the answer");
            return CC_EPROTO;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[k++] = (uint8_t)(acc >> bits);
        }
    }
    buf[k] = '\0';
    *out = buf;
    *out_len = k;
    return 0;
}

int cc_kv_get(cc_client *c, const char *key, uint8_t **value, size_t *value_len,
              int64_t *mod_revision)
{
    CC_ASSERT(c != NULL && value != NULL && value_len != NULL);
    cc__clear_detail();
    *value = NULL;
    *value_len = 0;
    int rv = cc__check_key(key);
    if (rv != 0)
        return rv;
    char *t = malloc(CLIENT_TARGET_BYTES_MAX);
    if (!t)
        return CC_ENOMEM;
    cc__kv_target(key, t);
    json_t *j = NULL;
    rv = cc__call_json(c, "GET", t, NULL, &j);
    free(t);
    if (rv != 0)
        return rv;
    json_t *v = json_object_get(j, "value");
    json_t *b = json_object_get(j, "value_base64");
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        uint8_t *buf = malloc(n + 1);
        if (!buf) {
            rv = CC_ENOMEM;
        } else {
            memcpy(buf, json_string_value(v), n);
            buf[n] = '\0';
            *value = buf;
            *value_len = n;
        }
    } else if (json_is_string(b)) {
        rv = cc__b64_decode(json_string_value(b), json_string_length(b), value, value_len);
    } else {
        cc__set_detail("the answer has no value");
        rv = CC_EPROTO;
    }
    if (rv == 0 && mod_revision)
        *mod_revision = cc__json_i64(j, "mod_revision");
    json_decref(j);
    return rv;
}

int cc_kv_del(cc_client *c, const char *key, int64_t *deleted)
{
    CC_ASSERT(c != NULL);
    cc__clear_detail();
    int rv = cc__check_key(key);
    if (rv != 0)
        return rv;
    char *t = malloc(CLIENT_TARGET_BYTES_MAX);
    if (!t)
        return CC_ENOMEM;
    cc__kv_target(key, t);
    json_t *j = NULL;
    rv = cc__call_json(c, "DELETE", t, NULL, &j);
    free(t);
    if (rv == 0 && deleted)
        *deleted = cc__json_i64(j, "deleted");
    json_decref(j);
    return rv;
}

/* ---- leases ------------------------------------------------------------------------- */

int cc_lease_grant(cc_client *c, int64_t ttl_ms, int64_t *id)
{
    CC_ASSERT(c != NULL && id != NULL);
    cc__clear_detail();
    if (ttl_ms < CC_TTL_MS_MIN || ttl_ms > (int64_t)CC_TTL_MS_MAX) {
        cc__set_detail("ttl_ms %" PRId64 " is outside %u..%u", ttl_ms, CC_TTL_MS_MIN,
                       CC_TTL_MS_MAX);
        return CC_ETTL;
    }
    char body[64];
    snprintf(body, sizeof(body), "{\"ttl_ms\":%" PRId64 "}", ttl_ms);
    json_t *j = NULL;
    int rv = cc__call_json(c, "POST", "/v1/lease", body, &j);
    if (rv == 0) {
        *id = cc__json_i64(j, "id");
        if (*id <= 0) {
            cc__set_detail("the answer has no lease id");
            rv = CC_EPROTO;
        }
    }
    json_decref(j);
    return rv;
}

int cc_lease_keepalive(cc_client *c, int64_t id, int64_t *ttl_ms)
{
    CC_ASSERT(c != NULL);
    cc__clear_detail();
    if (id <= 0) {
        cc__set_detail("lease ids are positive");
        return CC_EINVAL;
    }
    char t[64];
    snprintf(t, sizeof(t), "/v1/lease/%" PRId64 "/keepalive", id);
    json_t *j = NULL;
    int rv = cc__call_json(c, "POST", t, NULL, &j);
    if (rv == 0 && ttl_ms)
        *ttl_ms = cc__json_i64(j, "ttl_ms");
    json_decref(j);
    return rv;
}

int cc_lease_revoke(cc_client *c, int64_t id)
{
    CC_ASSERT(c != NULL);
    cc__clear_detail();
    if (id <= 0) {
        cc__set_detail("lease ids are positive");
        return CC_EINVAL;
    }
    char t[64];
    snprintf(t, sizeof(t), "/v1/lease/%" PRId64, id);
    json_t *j = NULL;
    int rv = cc__call_json(c, "DELETE", t, NULL, &j);
    json_decref(j);
    return rv;
}
