/* lock_driver.c -- load generator for bench/lock_bench.py: N client threads loop
 * "acquire a lock, release it" against Conclave, etcd 3.4 or Redis, and count grants.
 *
 *   lock_driver SYSTEM HOST:PORT [--clients N] [--names same|distinct] [--seconds S]
 *               [--prefix P] [--ttl-ms T] [--wait-ms W] [--poll-us U]
 *
 * SYSTEM and what one cycle is (every client has its own keep-alive connection):
 *   conclave      POST /v1/lock/{name} {"owner","lease","wait_ms"} (a waiter queues in the
 *                 server's FIFO), then DELETE /v1/lock/{name} {"owner","token"}. Each
 *                 client grants itself one lease first (POST /v1/lease), reused by every
 *                 acquire, as an etcd client reuses its session lease.
 *   conclave-ttl  the same without "lease": the server makes a lease of ttl_ms for each
 *                 hold (the documented default way), and ends it with the release.
 *   etcd          POST /v3/lock/lock {"name","lease"} (blocks until granted), then
 *                 POST /v3/lock/unlock {"key"}; one lease per client (/v3/lease/grant,
 *                 revoked at the end with /v3/lease/revoke), through the JSON gateway.
 *   redis         SET name owner NX PX ttl; when that answers nil the client sleeps
 *                 --poll-us and tries again (Redis has no queue to wait in). Release is
 *                 the classic compare-and-delete script run with EVAL.
 *   redis-broken  NEGATIVE CONTROL: SET without NX, so every client "gets" the lock at
 *                 once; the exclusion check below must report violations.
 *
 * Checks, on every grant (all clients are threads of this process, so an overlap the
 * servers allowed is visible here): a per-name holder slot is swapped from 0 to the
 * client and must have been 0, and is swapped back before the release is sent
 * ("violations"); Conclave's fencing tokens must grow per name ("token_regressions").
 *
 * Timing: all clients start together after setup (a barrier); a grant counts when its
 * answer arrives before start + S seconds. A client then finishes its cycle (a waiter
 * that is granted later still releases), so the lock is free for the next run. Output:
 * one JSON object on stdout with the counts, grants/s, p50/p99 of the acquire (from
 * sending it to the grant: the wait, under contention) and of the whole cycle, and the
 * client's own CPU time per grant (getrusage), which bounds what the client could
 * drive. Exit 0 when it ran (with or without violations: the caller judges), 1 on a
 * setup or usage error.
 *
 * Bounds: every socket has a 20 s receive/send timeout, every response is at most
 * LD_RESP_MAX bytes, every loop stops at the deadline or after LD_CYCLES_MAX cycles per
 * client, and samples beyond LD_SAMPLES_MAX per client are not kept.
 *
 * Built by bench/lock_bench.py with the system's cc (not part of libconclave).
 * Sections: limits and state | connections | HTTP | RESP | systems | clients | main.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* ---- limits and state ------------------------------------------------------------- */

#define LD_CLIENTS_MAX    256
#define LD_RESP_MAX       (64 * 1024) /* one HTTP response or RESP reply */
#define LD_REQ_MAX        2048
#define LD_NAME_MAX       128
#define LD_SAMPLES_MAX    (1 << 18) /* latency samples kept per client */
#define LD_CYCLES_MAX     10000000L /* per client and run: bounds the loop */
#define LD_RETRY_MAX      1000000L  /* polls or 409 retries within one acquire */
#define LD_IO_TIMEOUT_S   20
#define LD_SECONDS_MAX    600

enum ld_system { LD_CONCLAVE, LD_CONCLAVE_TTL, LD_ETCD, LD_REDIS, LD_REDIS_BROKEN };

struct ld_conn {
    int fd;
    char buf[LD_RESP_MAX + 1]; /* bytes read; +1 for a terminating NUL */
    size_t len;                /* valid bytes in buf */
    size_t used;               /* bytes of buf consumed by the current response */
};

struct ld_client {
    int idx;
    pthread_t thread;
    struct ld_conn conn;
    char name[LD_NAME_MAX];  /* the lock this client uses */
    int slot;                /* index into holders[] */
    char owner[64];
    char lease[32];          /* Conclave or etcd lease id, as text; "" for none */
    long grants, cycles, retries, timeouts, errors, lost;
    double *acq_us, *cyc_us; /* samples, LD_SAMPLES_MAX each */
    size_t n_acq, n_cyc;
    char err[256];           /* the first error seen */
};

static struct {
    enum ld_system system;
    const char *system_name;
    struct sockaddr_in addr;
    char host[64];
    int clients;
    bool same_name;
    double seconds;
    const char *prefix;
    long ttl_ms, wait_ms, poll_us;
    pthread_barrier_t start_barrier;
    double start_us, deadline_us;
    atomic_int holders[LD_CLIENTS_MAX];         /* client idx + 1 holding slot, or 0 */
    atomic_llong last_token[LD_CLIENTS_MAX];    /* newest Conclave token per slot */
    atomic_long violations, token_regressions;
    atomic_int setup_failed;
} g;

/* Keeps the first error of a client: "what: detail" (detail cut to 200 bytes). */
static void ld_seterr(struct ld_client *c, const char *what, const char *detail)
{
    if (c->err[0] == '\0') {
        snprintf(c->err, sizeof(c->err), "%s: %.200s", what, detail);
    }
}

/* ---- connections ------------------------------------------------------------------ */

static int ld_connect(struct ld_conn *cn)
{
    cn->len = cn->used = 0;
    cn->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (cn->fd < 0) {
        return -1;
    }
    int one = 1;
    struct timeval tv = {.tv_sec = LD_IO_TIMEOUT_S};
    setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(cn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(cn->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(cn->fd, (struct sockaddr *)&g.addr, sizeof(g.addr)) != 0) {
        close(cn->fd);
        cn->fd = -1;
        return -1;
    }
    return 0;
}

static int ld_send_all(struct ld_conn *cn, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(cn->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Drops the previous response's bytes, keeping any that followed it. */
static void ld_consume(struct ld_conn *cn)
{
    if (cn->used > 0) {
        memmove(cn->buf, cn->buf + cn->used, cn->len - cn->used);
        cn->len -= cn->used;
        cn->used = 0;
        cn->buf[cn->len] = '\0';
    }
}

/* Reads more bytes into buf; -1 on error, EOF, timeout or a full buffer. */
static int ld_fill(struct ld_conn *cn)
{
    if (cn->len >= LD_RESP_MAX) {
        return -1;
    }
    for (;;) {
        ssize_t r = recv(cn->fd, cn->buf + cn->len, LD_RESP_MAX - cn->len, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        cn->len += (size_t)r;
        cn->buf[cn->len] = '\0';
        return 0;
    }
}

/* ---- HTTP ------------------------------------------------------------------------- */

/* Sends one request and reads its response: returns the status (or -1), with *body
 * pointing at the NUL-terminated body inside cn->buf (valid until the next call). */
static int ld_http(struct ld_conn *cn, const char *method, const char *path, const char *json,
                   const char **body)
{
    char req[LD_REQ_MAX];
    size_t blen = strlen(json);
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, g.host, blen, json);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        return -1;
    }
    ld_consume(cn);
    if (ld_send_all(cn, req, (size_t)n) != 0) {
        return -1;
    }
    char *hend;
    while ((hend = strstr(cn->buf, "\r\n\r\n")) == NULL || cn->len == 0) {
        if (ld_fill(cn) != 0) {
            return -1;
        }
    }
    int status = 0;
    if (sscanf(cn->buf, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    size_t head = (size_t)(hend - cn->buf) + 4;
    const char *cl = strcasestr(cn->buf, "\r\ncontent-length:");
    if (cl != NULL && cl < hend) {
        size_t clen = (size_t)strtoull(cl + 17, NULL, 10);
        if (head + clen > LD_RESP_MAX) {
            return -1;
        }
        while (cn->len < head + clen) {
            if (ld_fill(cn) != 0) {
                return -1;
            }
        }
        /* the body is followed by the next response's bytes, if any: keep them aside */
        cn->used = head + clen;
        static _Thread_local char copy[LD_RESP_MAX + 1];
        memcpy(copy, cn->buf + head, clen);
        copy[clen] = '\0';
        *body = copy;
        return status;
    }
    const char *te = strcasestr(cn->buf, "\r\ntransfer-encoding: chunked");
    if (te == NULL || te > hend) {
        return -1; /* neither framing: not expected from either server */
    }
    /* chunked: decode into a thread-local copy */
    static _Thread_local char dec[LD_RESP_MAX + 1];
    size_t dlen = 0, pos = head;
    for (int chunks = 0; chunks < 4096; chunks++) {
        char *eol;
        while ((eol = strstr(cn->buf + pos, "\r\n")) == NULL) {
            if (ld_fill(cn) != 0) {
                return -1;
            }
        }
        size_t sz = (size_t)strtoull(cn->buf + pos, NULL, 16);
        size_t data = (size_t)(eol - cn->buf) + 2;
        if (data + sz + 2 > LD_RESP_MAX || dlen + sz > LD_RESP_MAX) {
            return -1;
        }
        while (cn->len < data + sz + 2) {
            if (ld_fill(cn) != 0) {
                return -1;
            }
        }
        if (sz == 0) {
            cn->used = data + 2; /* no trailers expected */
            dec[dlen] = '\0';
            *body = dec;
            return status;
        }
        memcpy(dec + dlen, cn->buf + data, sz);
        dlen += sz;
        pos = data + sz + 2;
    }
    return -1;
}

/* Copies the string value of "field" (first occurrence) from a JSON body into out. */
static bool ld_json_str(const char *body, const char *field, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", field);
    const char *p = strstr(body, pat);
    if (p == NULL) {
        return false;
    }
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= cap) {
        return false;
    }
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

/* The integer value of "field" (number or quoted number), or -1. */
static long long ld_json_int(const char *body, const char *field)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", field);
    const char *p = strstr(body, pat);
    if (p == NULL) {
        return -1;
    }
    p += strlen(pat);
    if (*p == '"') {
        p++;
    }
    return strtoll(p, NULL, 10);
}

static void ld_b64(const char *in, char *out, size_t cap)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= (uint32_t)(unsigned char)in[i + 2];
        }
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ---- RESP ------------------------------------------------------------------------- */

/* Sends a command of argc bulk strings; reads one reply. Returns its type byte ('+',
 * '-', ':', '$', or 0 on error) with *num (':' value, '$' length or -1 for nil). */
static char ld_redis(struct ld_conn *cn, int argc, const char *const *argv, long long *num)
{
    char req[LD_REQ_MAX];
    size_t o = (size_t)snprintf(req, sizeof(req), "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        int n = snprintf(req + o, sizeof(req) - o, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
        if (n < 0 || o + (size_t)n >= sizeof(req)) {
            return 0;
        }
        o += (size_t)n;
    }
    ld_consume(cn);
    if (ld_send_all(cn, req, o) != 0) {
        return 0;
    }
    char *eol;
    while ((eol = strstr(cn->buf, "\r\n")) == NULL) {
        if (ld_fill(cn) != 0) {
            return 0;
        }
    }
    char type = cn->buf[0];
    *num = strtoll(cn->buf + 1, NULL, 10);
    size_t end = (size_t)(eol - cn->buf) + 2;
    if (type == '$' && *num >= 0) {
        end += (size_t)*num + 2;
        if (end > LD_RESP_MAX) {
            return 0;
        }
        while (cn->len < end) {
            if (ld_fill(cn) != 0) {
                return 0;
            }
        }
    }
    cn->used = end;
    return type;
}

static const char LD_CAD_SCRIPT[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";

/* ---- systems ---------------------------------------------------------------------- */

static int ld_setup(struct ld_client *c)
{
    const char *body;
    char json[256];
    c->lease[0] = '\0';
    if (g.system == LD_CONCLAVE) {
        snprintf(json, sizeof(json), "{\"ttl_ms\":%ld}", g.ttl_ms);
        int st = ld_http(&c->conn, "POST", "/v1/lease", json, &body);
        long long id = st == 200 ? ld_json_int(body, "id") : -1;
        if (id <= 0) {
            ld_seterr(c, "lease grant failed", st < 0 ? "io" : body);
            return -1;
        }
        snprintf(c->lease, sizeof(c->lease), "%lld", id);
    } else if (g.system == LD_ETCD) {
        snprintf(json, sizeof(json), "{\"TTL\":%ld}", (g.ttl_ms + 999) / 1000);
        int st = ld_http(&c->conn, "POST", "/v3/lease/grant", json, &body);
        if (st != 200 || !ld_json_str(body, "ID", c->lease, sizeof(c->lease))) {
            ld_seterr(c, "lease grant failed", st < 0 ? "io" : body);
            return -1;
        }
    }
    return 0;
}

static void ld_teardown(struct ld_client *c)
{
    const char *body;
    char path[96], json[96];
    if (c->lease[0] == '\0') {
        return;
    }
    if (g.system == LD_CONCLAVE) {
        snprintf(path, sizeof(path), "/v1/lease/%s", c->lease);
        (void)ld_http(&c->conn, "DELETE", path, "", &body);
    } else if (g.system == LD_ETCD) {
        snprintf(json, sizeof(json), "{\"ID\":\"%s\"}", c->lease);
        (void)ld_http(&c->conn, "POST", "/v3/lease/revoke", json, &body);
    }
}

/* One acquire: 1 granted (token or key in *held), 0 not granted before the deadline
 * (redis polling only), -1 error. */
static int ld_acquire(struct ld_client *c, long long *token, char *key, size_t keycap)
{
    const char *body;
    char json[512], path[256];
    switch (g.system) {
    case LD_CONCLAVE:
    case LD_CONCLAVE_TTL:
        snprintf(path, sizeof(path), "/v1/lock/%s", c->name);
        if (g.system == LD_CONCLAVE) {
            snprintf(json, sizeof(json), "{\"owner\":\"%s\",\"lease\":%s,\"wait_ms\":%ld}",
                     c->owner, c->lease, g.wait_ms);
        } else {
            snprintf(json, sizeof(json), "{\"owner\":\"%s\",\"ttl_ms\":%ld,\"wait_ms\":%ld}",
                     c->owner, g.ttl_ms, g.wait_ms);
        }
        for (long r = 0; r < LD_RETRY_MAX; r++) {
            int st = ld_http(&c->conn, "POST", path, json, &body);
            if (st == 200) {
                *token = ld_json_int(body, "token");
                return *token > 0 ? 1 : -1;
            }
            if (st == 409 && strstr(body, "lock_timeout") != NULL) {
                c->timeouts++; /* waited wait_ms: queue again */
                continue;
            }
            ld_seterr(c, "acquire", st < 0 ? "io error" : body);
            return -1;
        }
        return -1;
    case LD_ETCD: {
        char name64[LD_NAME_MAX * 2];
        ld_b64(c->name, name64, sizeof(name64));
        snprintf(json, sizeof(json), "{\"name\":\"%s\",\"lease\":\"%s\"}", name64, c->lease);
        int st = ld_http(&c->conn, "POST", "/v3/lock/lock", json, &body);
        if (st == 200 && ld_json_str(body, "key", key, keycap)) {
            return 1;
        }
        ld_seterr(c, "acquire", st < 0 ? "io error" : body);
        return -1;
    }
    case LD_REDIS:
    case LD_REDIS_BROKEN: {
        char px[32];
        snprintf(px, sizeof(px), "%ld", g.ttl_ms);
        const char *nx[] = {"SET", c->name, c->owner, "NX", "PX", px};
        const char *plain[] = {"SET", c->name, c->owner, "PX", px};
        for (long r = 0; r < LD_RETRY_MAX; r++) {
            long long num = 0;
            char t = g.system == LD_REDIS ? ld_redis(&c->conn, 6, nx, &num)
                                          : ld_redis(&c->conn, 5, plain, &num);
            if (t == '+') {
                return 1;
            }
            if (t != '$' || num != -1) {
                ld_seterr(c, "SET", t == 0 ? "io error" : c->conn.buf);
                return -1;
            }
            if (bench_now_us() >= g.deadline_us) {
                return 0;
            }
            c->retries++;
            if (g.poll_us > 0) {
                usleep((useconds_t)g.poll_us);
            }
        }
        return -1;
    }
    }
    return -1;
}

static int ld_release(struct ld_client *c, long long token, const char *key)
{
    const char *body;
    char json[512], path[256];
    switch (g.system) {
    case LD_CONCLAVE:
    case LD_CONCLAVE_TTL: {
        snprintf(path, sizeof(path), "/v1/lock/%s", c->name);
        snprintf(json, sizeof(json), "{\"owner\":\"%s\",\"token\":%lld}", c->owner, token);
        int st = ld_http(&c->conn, "DELETE", path, json, &body);
        if (st == 200) {
            return 0;
        }
        ld_seterr(c, "release", st < 0 ? "io error" : body);
        return -1;
    }
    case LD_ETCD: {
        snprintf(json, sizeof(json), "{\"key\":\"%s\"}", key);
        int st = ld_http(&c->conn, "POST", "/v3/lock/unlock", json, &body);
        if (st == 200) {
            return 0;
        }
        ld_seterr(c, "release", st < 0 ? "io error" : body);
        return -1;
    }
    case LD_REDIS:
    case LD_REDIS_BROKEN: {
        const char *argv[] = {"EVAL", LD_CAD_SCRIPT, "1", c->name, c->owner};
        long long num = 0;
        char t = ld_redis(&c->conn, 5, argv, &num);
        if (t == ':' && num == 1) {
            return 0;
        }
        if (t == ':' && num == 0) {
            c->lost++; /* not ours any more (expired, or overwritten: broken mode) */
            return 0;
        }
        ld_seterr(c, "EVAL", t == 0 ? "io error" : c->conn.buf);
        return -1;
    }
    }
    return -1;
}

/* ---- clients ---------------------------------------------------------------------- */

static void *ld_client_main(void *arg)
{
    struct ld_client *c = arg;
    bool ok = ld_connect(&c->conn) == 0;
    if (!ok) {
        ld_seterr(c, "connect", strerror(errno));
    } else {
        ok = ld_setup(c) == 0;
    }
    if (!ok) {
        atomic_store(&g.setup_failed, 1);
    }
    pthread_barrier_wait(&g.start_barrier); /* main sets start_us and deadline_us here */
    pthread_barrier_wait(&g.start_barrier);
    if (!ok || atomic_load(&g.setup_failed)) {
        if (c->conn.fd >= 0) {
            ld_teardown(c);
            close(c->conn.fd);
        }
        return NULL;
    }
    const int me = c->idx + 1;
    for (long cyc = 0; cyc < LD_CYCLES_MAX && bench_now_us() < g.deadline_us; cyc++) {
        long long token = 0;
        char key[256] = "";
        double t0 = bench_now_us();
        int got = ld_acquire(c, &token, key, sizeof(key));
        if (got <= 0) {
            if (got < 0) {
                c->errors++;
            }
            break;
        }
        double t1 = bench_now_us();
        int prev = atomic_exchange(&g.holders[c->slot], me);
        if (prev != 0) {
            atomic_fetch_add(&g.violations, 1);
        }
        if (g.system == LD_CONCLAVE || g.system == LD_CONCLAVE_TTL) {
            long long last = atomic_load(&g.last_token[c->slot]);
            if (token <= last) {
                atomic_fetch_add(&g.token_regressions, 1);
            }
            while (token > last &&
                   !atomic_compare_exchange_weak(&g.last_token[c->slot], &last, token)) {
            }
        }
        sched_yield(); /* the critical section: lets an overlapping holder show up */
        /* give the slot back before the release is sent: the next grant may follow it */
        int expect = me;
        if (!atomic_compare_exchange_strong(&g.holders[c->slot], &expect, 0)) {
            atomic_fetch_add(&g.violations, 1);
        }
        int rel = ld_release(c, token, key);
        double t2 = bench_now_us();
        if (t1 <= g.deadline_us) {
            c->grants++;
            if (c->n_acq < LD_SAMPLES_MAX) {
                c->acq_us[c->n_acq++] = t1 - t0;
            }
            if (rel == 0) {
                c->cycles++;
                if (c->n_cyc < LD_SAMPLES_MAX) {
                    c->cyc_us[c->n_cyc++] = t2 - t0;
                }
            }
        }
        if (rel != 0) {
            c->errors++;
            break;
        }
    }
    ld_teardown(c);
    close(c->conn.fd);
    return NULL;
}

/* ---- main ------------------------------------------------------------------------- */

static void ld_usage(void)
{
    fprintf(stderr,
            "usage: lock_driver conclave|conclave-ttl|etcd|redis|redis-broken HOST:PORT\n"
            "       [--clients N] [--names same|distinct] [--seconds S] [--prefix P]\n"
            "       [--ttl-ms T] [--wait-ms W] [--poll-us U]\n");
    exit(1);
}

static double ld_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void ld_parse_args(int argc, char **argv)
{
    if (argc < 3) {
        ld_usage();
    }
    static const char *const names[] = {"conclave", "conclave-ttl", "etcd", "redis",
                                        "redis-broken"};
    g.system_name = argv[1];
    bool found = false;
    for (int i = 0; i < 5; i++) {
        if (strcmp(argv[1], names[i]) == 0) {
            g.system = (enum ld_system)i;
            found = true;
        }
    }
    char *colon = strrchr(argv[2], ':');
    if (!found || colon == NULL || (size_t)(colon - argv[2]) >= sizeof(g.host)) {
        ld_usage();
    }
    memcpy(g.host, argv[2], (size_t)(colon - argv[2]));
    g.addr.sin_family = AF_INET;
    g.addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, g.host, &g.addr.sin_addr) != 1) {
        ld_usage();
    }
    g.clients = 1;
    g.same_name = true;
    g.seconds = 2;
    g.prefix = "bench";
    g.ttl_ms = 10000;
    g.wait_ms = 5000;
    g.poll_us = 1000;
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--clients") == 0) {
            g.clients = atoi(v);
        } else if (strcmp(k, "--names") == 0) {
            g.same_name = strcmp(v, "same") == 0;
        } else if (strcmp(k, "--seconds") == 0) {
            g.seconds = atof(v);
        } else if (strcmp(k, "--prefix") == 0) {
            g.prefix = v;
        } else if (strcmp(k, "--ttl-ms") == 0) {
            g.ttl_ms = atol(v);
        } else if (strcmp(k, "--wait-ms") == 0) {
            g.wait_ms = atol(v);
        } else if (strcmp(k, "--poll-us") == 0) {
            g.poll_us = atol(v);
        } else {
            ld_usage();
        }
    }
    if ((argc - 3) % 2 != 0 || g.clients < 1 || g.clients > LD_CLIENTS_MAX ||
        !(g.seconds > 0 && g.seconds <= LD_SECONDS_MAX) || g.ttl_ms < 1000 ||
        g.wait_ms < 0 || g.poll_us < 0 || strlen(g.prefix) > 64) {
        ld_usage();
    }
}

static void ld_print_quantiles(const char *label, struct ld_client *cs, bool acq)
{
    size_t total = 0;
    for (int i = 0; i < g.clients; i++) {
        total += acq ? cs[i].n_acq : cs[i].n_cyc;
    }
    double *all = malloc((total + 1) * sizeof(double));
    if (all == NULL) {
        printf("\"%s_p50_us\":0,\"%s_p99_us\":0,", label, label);
        return;
    }
    size_t o = 0;
    for (int i = 0; i < g.clients; i++) {
        size_t n = acq ? cs[i].n_acq : cs[i].n_cyc;
        memcpy(all + o, acq ? cs[i].acq_us : cs[i].cyc_us, n * sizeof(double));
        o += n;
    }
    bench_sort(all, total);
    printf("\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f,", label, bench_quantile(all, total, 0.5),
           label, bench_quantile(all, total, 0.99));
    free(all);
}

int main(int argc, char **argv)
{
    ld_parse_args(argc, argv);
    struct ld_client *cs = calloc((size_t)g.clients, sizeof(*cs));
    if (cs == NULL) {
        return 1;
    }
    pthread_barrier_init(&g.start_barrier, NULL, (unsigned)g.clients + 1);
    for (int i = 0; i < g.clients; i++) {
        struct ld_client *c = &cs[i];
        c->idx = i;
        c->conn.fd = -1;
        c->slot = g.same_name ? 0 : i;
        snprintf(c->name, sizeof(c->name), "%s-%d", g.prefix, c->slot);
        snprintf(c->owner, sizeof(c->owner), "w%d-%d", i, (int)getpid());
        c->acq_us = malloc(LD_SAMPLES_MAX * sizeof(double));
        c->cyc_us = malloc(LD_SAMPLES_MAX * sizeof(double));
        if (c->acq_us == NULL || c->cyc_us == NULL ||
            pthread_create(&c->thread, NULL, ld_client_main, c) != 0) {
            fprintf(stderr, "lock_driver: out of memory or threads\n");
            return 1;
        }
    }
    pthread_barrier_wait(&g.start_barrier); /* every client connected and set up */
    double cpu0 = ld_cpu_s();
    g.start_us = bench_now_us();
    g.deadline_us = g.start_us + g.seconds * 1e6;
    pthread_barrier_wait(&g.start_barrier);
    for (int i = 0; i < g.clients; i++) {
        pthread_join(cs[i].thread, NULL);
    }
    double end_us = bench_now_us();
    double cpu = ld_cpu_s() - cpu0;
    long grants = 0, cycles = 0, retries = 0, timeouts = 0, errors = 0, lost = 0;
    const char *first_err = "";
    for (int i = 0; i < g.clients; i++) {
        grants += cs[i].grants;
        cycles += cs[i].cycles;
        retries += cs[i].retries;
        timeouts += cs[i].timeouts;
        errors += cs[i].errors;
        lost += cs[i].lost;
        if (first_err[0] == '\0' && cs[i].err[0] != '\0') {
            first_err = cs[i].err;
        }
    }
    printf("{\"system\":\"%s\",\"clients\":%d,\"names\":\"%s\",\"seconds\":%.3f,"
           "\"drain_s\":%.3f,\"grants\":%ld,\"grants_per_s\":%.1f,\"cycles\":%ld,",
           g.system_name, g.clients, g.same_name ? "same" : "distinct", g.seconds,
           (end_us - g.deadline_us) / 1e6, grants, (double)grants / g.seconds, cycles);
    ld_print_quantiles("acquire", cs, true);
    ld_print_quantiles("cycle", cs, false);
    printf("\"retries\":%ld,\"wait_timeouts\":%ld,\"errors\":%ld,\"lost\":%ld,"
           "\"violations\":%ld,\"token_regressions\":%ld,\"setup_failed\":%d,"
           "\"client_cpu_s\":%.3f,\"client_cpu_us_per_grant\":%.1f,\"first_error\":\"",
           retries, timeouts, errors, lost, atomic_load(&g.violations),
           atomic_load(&g.token_regressions), atomic_load(&g.setup_failed), cpu,
           grants > 0 ? cpu * 1e6 / (double)grants : 0.0);
    for (const char *p = first_err; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            putchar('\\');
        }
        putchar(*p >= 0x20 ? *p : ' ');
    }
    printf("\"}\n");
    for (int i = 0; i < g.clients; i++) {
        free(cs[i].acq_us);
        free(cs[i].cyc_us);
    }
    free(cs);
    return atomic_load(&g.setup_failed) ? 1 : 0;
}
