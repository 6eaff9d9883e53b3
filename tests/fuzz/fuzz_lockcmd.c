/* fuzz_lockcmd.c -- arbitrary bytes through the lease and lock codecs, snapshot
 * decoders and state machines (sm/lease.h, sm/lock.h).
 *
 * What must hold for every input:
 *   - no decoder reads outside its input (ASan), crashes or leaks (LeakSanitizer);
 *   - a command that decodes re-encodes to exactly the input bytes (one encoding per
 *     meaning), and a refusal is one of the module's own error codes;
 *   - a snapshot that decodes re-encodes to exactly the input, passes lock_check, and
 *     has a digest equal to its re-decoded copy's;
 *   - any sequence of commands leaves both tables passing lock_check and
 *     lock_check_leases, every GRANTED token above all earlier ones, and snapshots that
 *     round-trip.
 *
 * Input: byte 0 picks a mode, the rest is its payload.
 *   0  one lease command           1  one lock command
 *   2  lease snapshot image        3  lock snapshot image
 *      (modes 2 and 3: bit 7 of byte 0 recomputes the trailing CRC first, so the
 *       fuzzer reaches the structural checks)
 *   4  an op stream: each op is a few bytes choosing grant / revoke / acquire /
 *      release / cancel / proclaim over small name, owner and lease spaces
 *   5  a raw stream: u8 length, then that many bytes, applied as a lease command
 *      (tag 0x11) or a lock command (anything else)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/le.h"
#include "sm/lease.h"
#include "sm/lock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OPS_MAX 512 /* bounds one input's work */

static void fuzz_lease_cmd(const uint8_t *p, size_t n)
{
    struct lease_cmd c;
    int rv = lease_decode(p, n, &c);
    if (rv != 0) {
        CC_ASSERT(rv <= -2201 && rv >= -2214);
        return;
    }
    uint8_t out[LEASE_CMD_BYTES_MAX];
    size_t m;
    CC_ASSERT(lease_encode(&c, out, sizeof out, &m) == 0);
    CC_ASSERT(m == n && memcmp(out, p, n) == 0);
}

static void fuzz_lock_cmd(const uint8_t *p, size_t n)
{
    struct lock_cmd c;
    int rv = lock_decode(p, n, &c);
    if (rv != 0) {
        CC_ASSERT(rv <= -2301 && rv >= -2323);
        return;
    }
    uint8_t *out = malloc(LOCK_CMD_BYTES_MAX);
    CC_ASSERT(out != NULL);
    size_t m;
    CC_ASSERT(lock_encode(&c, out, LOCK_CMD_BYTES_MAX, &m) == 0);
    CC_ASSERT(m == n && memcmp(out, p, n) == 0);
    free(out);
}

/* A copy of p with the last four bytes set to the CRC-32C of the rest. */
static uint8_t *with_crc(const uint8_t *p, size_t n, bool fix)
{
    uint8_t *q = malloc(n > 0 ? n : 1);
    CC_ASSERT(q != NULL);
    if (n > 0) {
        memcpy(q, p, n);
    }
    if (fix && n >= 4) {
        le_put_u32(q + n - 4, crc32c(0, q, n - 4));
    }
    return q;
}

static void fuzz_lease_snapshot(const uint8_t *p, size_t n, bool fix)
{
    uint8_t *q = with_crc(p, n, fix);
    struct lease_table *t;
    int rv = lease_snapshot_decode(q, n, &t);
    if (rv != 0) {
        CC_ASSERT(rv == LEASE_ECORRUPT || rv == LEASE_EFORMAT || rv == LEASE_ENOMEM);
        CC_ASSERT(t == NULL);
    } else {
        uint8_t *out;
        size_t m;
        CC_ASSERT(lease_snapshot_encode(t, &out, &m) == 0);
        CC_ASSERT(m == n && memcmp(out, q, n) == 0);
        free(out);
        lease_free(t);
    }
    free(q);
}

static void fuzz_lock_snapshot(const uint8_t *p, size_t n, bool fix)
{
    uint8_t *q = with_crc(p, n, fix);
    struct lock_table *t;
    int rv = lock_snapshot_decode(q, n, &t);
    if (rv != 0) {
        CC_ASSERT(rv == LOCK_ECORRUPT || rv == LOCK_EFORMAT || rv == LOCK_ENOMEM);
        CC_ASSERT(t == NULL);
    } else {
        CC_ASSERT(lock_check(t) == 0);
        uint8_t *out;
        size_t m;
        CC_ASSERT(lock_snapshot_encode(t, &out, &m) == 0);
        CC_ASSERT(m == n && memcmp(out, q, n) == 0);
        struct lock_table *u;
        CC_ASSERT(lock_snapshot_decode(out, m, &u) == 0);
        CC_ASSERT(lock_digest(u) == lock_digest(t));
        lock_free(u);
        free(out);
        lock_free(t);
    }
    free(q);
}

/* ---- state machines ----------------------------------------------------- */

struct machine {
    struct lease_table *leases;
    struct lock_table *locks;
    uint64_t index;
    uint64_t last_token;
};

static void check_result(struct machine *m, const struct lock_result *res)
{
    CC_ASSERT(res->err == 0 || res->n_events == 0);
    for (uint32_t i = 0; i < res->n_events; i++) {
        if (res->events[i].type == LOCK_EV_GRANTED) {
            CC_ASSERT(res->events[i].token > m->last_token);
            m->last_token = res->events[i].token;
        }
    }
}

static void lease_cmd(struct machine *m, const uint8_t *cmd, size_t n)
{
    struct lease_result lres;
    uint64_t index = m->index++;
    if (lease_apply(m->leases, cmd, n, index, &lres) == 0 && lres.type != LEASE_CMD_GRANT) {
        struct lock_result res;
        CC_ASSERT(lock_lease_died(m->locks, m->leases, lres.id, lres.items, lres.n_items, index,
                                  &res) == 0);
        check_result(m, &res);
        lock_result_free(&res);
    }
    lease_result_free(&lres);
}

static void lock_cmd(struct machine *m, const uint8_t *cmd, size_t n)
{
    struct lock_result res;
    (void)lock_apply(m->locks, m->leases, cmd, n, m->index++, &res);
    check_result(m, &res);
    lock_result_free(&res);
}

static const char *const NAMES[] = {"a", "b", "rw", "sem"};
static const char *const OWNERS[] = {"x", "y", "z"};

/* One op from up to 4 bytes of p; returns the bytes used. */
static size_t op_stream_step(struct machine *m, const uint8_t *p, size_t n)
{
    uint8_t b[4] = {0};
    size_t used = n < 4 ? n : 4;
    memcpy(b, p, used);
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t len;
    const char *name = NAMES[b[1] % 4];
    const char *owner = OWNERS[(b[1] >> 2) % 3];
    int64_t lease = 1 + (b[1] >> 4) % 6;
    struct lock_cmd c = {.name = (const uint8_t *)name,
                         .name_len = (uint16_t)strlen(name),
                         .owner = (const uint8_t *)owner,
                         .owner_len = 1};
    switch (b[0] % 6) {
    case 0:
        if (lease_encode_grant(lease, LEASE_TTL_MS_MIN, buf, sizeof buf, &len) == 0) {
            lease_cmd(m, buf, len);
        }
        return used;
    case 1:
        if (lease_encode_revoke(lease, buf, sizeof buf, &len) == 0) {
            lease_cmd(m, buf, len);
        }
        return used;
    case 2:
        c.type = LOCK_CMD_ACQUIRE;
        c.kind = (uint8_t)(1 + b[2] % 4);
        c.mode = c.kind == LOCK_KIND_RW ? (uint8_t)(1 + (b[2] >> 2) % 2) : LOCK_MODE_EXCLUSIVE;
        c.limit = c.kind == LOCK_KIND_SEMAPHORE ? 1u + (b[2] >> 3) % 3 : 0;
        c.flags = (b[2] & 0x80) ? LOCK_ACQUIRE_WAIT : 0;
        c.lease = lease;
        c.request_id = 1 + b[3] % 8;
        if (c.kind == LOCK_KIND_ELECTION) {
            c.value = &b[3];
            c.value_len = 1;
        }
        break;
    case 3:
        c.type = LOCK_CMD_RELEASE;
        c.flags = b[2] & LOCK_RELEASE_ALL;
        c.token = m->last_token - (m->last_token > 0 ? b[3] % m->last_token : 0);
        c.token = c.token == 0 ? 1 : c.token;
        break;
    case 4:
        c.type = LOCK_CMD_CANCEL;
        c.request_id = 1 + b[3] % 8;
        break;
    default:
        c.type = LOCK_CMD_PROCLAIM;
        c.token = m->last_token - (m->last_token > 0 ? b[3] % m->last_token : 0);
        c.token = c.token == 0 ? 1 : c.token;
        c.value = &b[2];
        c.value_len = 1;
        break;
    }
    if (lock_encode(&c, buf, sizeof buf, &len) == 0) {
        lock_cmd(m, buf, len);
    }
    return used;
}

static void round_trip_both(struct machine *m)
{
    uint8_t *buf;
    size_t n;
    struct lock_table *u;
    struct lease_table *v;
    CC_ASSERT(lock_snapshot_encode(m->locks, &buf, &n) == 0);
    CC_ASSERT(lock_snapshot_decode(buf, n, &u) == 0);
    free(buf);
    CC_ASSERT(lease_snapshot_encode(m->leases, &buf, &n) == 0);
    CC_ASSERT(lease_snapshot_decode(buf, n, &v) == 0);
    free(buf);
    CC_ASSERT(lock_digest(u) == lock_digest(m->locks));
    CC_ASSERT(lease_digest(v) == lease_digest(m->leases));
    CC_ASSERT(lock_check_leases(u, v) == 0);
    lock_free(u);
    lease_free(v);
}

static void fuzz_machine(const uint8_t *p, size_t n, bool raw)
{
    struct machine m = {.index = 1};
    CC_ASSERT(lease_new(&m.leases) == 0);
    CC_ASSERT(lock_new(&m.locks) == 0);
    size_t off = 0;
    for (unsigned ops = 0; off < n && ops < OPS_MAX; ops++) {
        if (raw) {
            size_t len = p[off++];
            len = len < n - off ? len : n - off;
            if (len > 0 && p[off] == LEASE_CMD_TAG) {
                lease_cmd(&m, p + off, len);
            } else {
                lock_cmd(&m, p + off, len);
            }
            off += len;
        } else {
            off += op_stream_step(&m, p + off, n - off);
        }
        CC_ASSERT(lock_check(m.locks) == 0);
        CC_ASSERT(lock_check_leases(m.locks, m.leases) == 0);
    }
    round_trip_both(&m);
    lock_free(m.locks);
    lease_free(m.leases);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    bool fix = (data[0] & 0x80) != 0;
    switch ((data[0] & 0x7f) % 6) {
    case 0:
        fuzz_lease_cmd(p, n);
        break;
    case 1:
        fuzz_lock_cmd(p, n);
        break;
    case 2:
        fuzz_lease_snapshot(p, n, fix);
        break;
    case 3:
        fuzz_lock_snapshot(p, n, fix);
        break;
    case 4:
        fuzz_machine(p, n, false);
        break;
    default:
        fuzz_machine(p, n, true);
        break;
    }
    return 0;
}
