/* machine.c -- the composite state machine: dispatch by tag, lease deaths across kv and
 * locks, one snapshot of all parts. Pure: no IO, no clock.
 * Sections: errors | results | lifecycle | apply | snapshot.
 */
#include "sm/machine.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/le.h"
#include "sm/kvcmd.h"

_Static_assert(SM_TAG_KV == KVCMD_FORMAT_VERSION, "a KV command's version byte is its tag");
_Static_assert(SM_TAG_LEASE == LEASE_CMD_TAG, "lease tag");
_Static_assert(SM_TAG_LOCK == LOCK_CMD_TAG, "lock tag");
_Static_assert(SM_TAG_IDSEG == IDSEG_MACHINE_TAG, "idseg tag");

struct machine {
    struct kv *kv;
    struct members members;
    struct lease_table *leases;
    struct lock_table *locks;
    struct idseg *ids;
    struct kvcmd *scratch; /* decoded KV command, for the lease check (large: heap) */
};

static const uint8_t snapshot_magic[4] = {'C', 'S', 'M', '1'};

/* ==== errors ================================================================ */

const char *sm_strerror(int rv)
{
    if (rv <= -2000 && rv > -2100)
        return kv_strerror(rv);
    if (rv <= -2100 && rv > -2120)
        return members_strerror(rv);
    if (rv <= -2200 && rv > -2280)
        return lease_strerror(rv);
    if (rv <= -2300 && rv > -2400)
        return lock_strerror(rv);
    if (rv <= -2500 && rv > -2600)
        return idseg_strerror(rv);
    switch (rv) {
    case 0: return "ok";
    case SM_EUNKNOWNTAG: return "command for an unknown state machine";
    case SM_ECORRUPT: return "state machine snapshot is corrupt";
    case SM_ENOMEM: return "out of memory";
    default: return "unknown state machine error";
    }
}

/* ==== results =============================================================== */

void sm_result_free(struct sm_result *res)
{
    kv_result_free(&res->kv);
    lease_result_free(&res->lease);
    lock_result_free(&res->lock);
    memset(res, 0, sizeof(*res));
}

/* ==== lifecycle ============================================================= */

static struct machine *machine_alloc(void)
{
    struct machine *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->scratch = malloc(sizeof(*m->scratch));
    if (!m->scratch) {
        free(m);
        return NULL;
    }
    return m;
}

int machine_new(struct machine **out)
{
    struct machine *m = machine_alloc();
    if (!m)
        return SM_ENOMEM;
    if (kv_new(&m->kv) != 0 || lease_new(&m->leases) != 0 || lock_new(&m->locks) != 0 ||
        idseg_new(&m->ids) != 0) {
        machine_free(m);
        return SM_ENOMEM;
    }
    *out = m;
    return 0;
}

void machine_free(struct machine *m)
{
    if (!m)
        return;
    kv_free(m->kv);
    if (m->leases)
        lease_free(m->leases);
    if (m->locks)
        lock_free(m->locks);
    if (m->ids)
        idseg_free(m->ids);
    free(m->scratch);
    free(m);
}

struct kv *machine_kv(struct machine *m) { return m->kv; }
const struct members *machine_members(const struct machine *m) { return &m->members; }
const struct lease_table *machine_leases(const struct machine *m) { return m->leases; }
const struct lock_table *machine_locks(const struct machine *m) { return m->locks; }
const struct idseg *machine_idseg(const struct machine *m) { return m->ids; }

/* ==== apply ================================================================= */

static int check_put_lease(const struct machine *m, const struct kv_put_req *p)
{
    if (p->lease == 0 || p->ignore_lease || lease_exists(m->leases, p->lease))
        return 0;
    return LEASE_ENOTFOUND;
}

static int check_ops_leases(const struct machine *m, const struct kv_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (ops[i].type == KV_OP_PUT && check_put_lease(m, &ops[i].put) != 0)
            return LEASE_ENOTFOUND;
    return 0;
}

/* etcd's rule: a put may only name a lease that exists (whichever txn branch runs). A
 * command that does not decode is left to kv_apply, which reports it. */
static int check_kv_leases(struct machine *m, const uint8_t *cmd, size_t n)
{
    if (kvcmd_decode(cmd, n, m->scratch) != 0)
        return 0;
    const struct kvcmd *c = m->scratch;
    if (c->type == KV_CMD_PUT)
        return check_put_lease(m, &c->put);
    if (c->type == KV_CMD_TXN) {
        int rv = check_ops_leases(m, c->txn.success, c->txn.n_success);
        return rv ? rv : check_ops_leases(m, c->txn.failure, c->txn.n_failure);
    }
    return 0;
}

static void apply_lease(struct machine *m, const uint8_t *cmd, size_t n, uint64_t index,
                        struct sm_result *res)
{
    res->err = lease_apply(m->leases, cmd, n, index, &res->lease);
    if (res->err != 0 || (res->lease.type != LEASE_CMD_REVOKE && res->lease.type != LEASE_CMD_EXPIRE))
        return;
    /* The lease is gone: its keys go in one revision, its locks pass to the next waiters. */
    kv_delete_by_lease(m->kv, res->lease.id, false, &res->kv);
    lock_lease_died(m->locks, m->leases, res->lease.id, res->lease.items, res->lease.n_items,
                    index, &res->lock);
}

void machine_apply(struct machine *m, const uint8_t *cmd, size_t n, uint64_t index,
                   struct sm_result *res)
{
    memset(res, 0, sizeof(*res));
    res->index = index;
    if (n == 0) {
        res->err = SM_EUNKNOWNTAG;
        return;
    }
    res->tag = cmd[0];
    switch (cmd[0]) {
    case SM_TAG_KV:
        res->err = check_kv_leases(m, cmd, n);
        if (res->err != 0) {
            res->kv.err = res->err;
            return;
        }
        kv_apply(m->kv, cmd, n, &res->kv);
        res->err = res->kv.err;
        return;
    case SM_TAG_MEMBERS:
        res->err = members_apply(&m->members, cmd, n);
        return;
    case SM_TAG_LEASE:
        apply_lease(m, cmd, n, index, res);
        return;
    case SM_TAG_LOCK:
        res->err = lock_apply(m->locks, m->leases, cmd, n, index, &res->lock);
        return;
    case SM_TAG_IDSEG:
        res->err = idseg_apply(m->ids, cmd, n, &res->idseg);
        return;
    default:
        res->err = SM_EUNKNOWNTAG;
        return;
    }
}

/* ==== snapshot ============================================================== */

struct section {
    uint8_t tag;
    uint8_t *buf;
    size_t len;
};

int machine_snapshot_encode(const struct machine *m, uint8_t **buf, size_t *n)
{
    struct section s[5] = {{SM_TAG_KV, NULL, 0}, {SM_TAG_MEMBERS, NULL, 0},
                           {SM_TAG_LEASE, NULL, 0}, {SM_TAG_LOCK, NULL, 0},
                           {SM_TAG_IDSEG, NULL, 0}};
    int rv = kv_snapshot_encode(m->kv, &s[0].buf, &s[0].len);
    if (rv == 0) {
        s[1].buf = malloc(MEMBERS_SNAPSHOT_BYTES_MAX);
        rv = s[1].buf ? members_encode(&m->members, s[1].buf, MEMBERS_SNAPSHOT_BYTES_MAX,
                                       &s[1].len)
                      : SM_ENOMEM;
    }
    if (rv == 0)
        rv = lease_snapshot_encode(m->leases, &s[2].buf, &s[2].len);
    if (rv == 0)
        rv = lock_snapshot_encode(m->locks, &s[3].buf, &s[3].len);
    if (rv == 0)
        rv = idseg_snapshot_encode(m->ids, &s[4].buf, &s[4].len);
    size_t total = 8;
    for (int i = 0; i < 5; i++)
        total += 9 + s[i].len;
    uint8_t *out = rv == 0 ? malloc(total) : NULL;
    if (rv == 0 && !out)
        rv = SM_ENOMEM;
    if (rv == 0) {
        memcpy(out, snapshot_magic, 4);
        le_put_u32(out + 4, 5);
        size_t off = 8;
        for (int i = 0; i < 5; i++) {
            out[off] = s[i].tag;
            le_put_u64(out + off + 1, s[i].len);
            if (s[i].len)
                memcpy(out + off + 9, s[i].buf, s[i].len);
            off += 9 + s[i].len;
        }
        *buf = out;
        *n = off;
    }
    for (int i = 0; i < 5; i++)
        free(s[i].buf);
    return rv;
}

static int decode_section(struct machine *m, uint64_t tag, const uint8_t *body, size_t len)
{
    switch (tag) {
    case SM_TAG_KV: return kv_snapshot_decode(body, len, &m->kv);
    case SM_TAG_MEMBERS: return members_decode(body, len, &m->members);
    case SM_TAG_LEASE:
        lease_free(m->leases);
        m->leases = NULL;
        return lease_snapshot_decode(body, len, &m->leases);
    case SM_TAG_LOCK:
        lock_free(m->locks);
        m->locks = NULL;
        return lock_snapshot_decode(body, len, &m->locks);
    case SM_TAG_IDSEG:
        idseg_free(m->ids);
        m->ids = NULL;
        return idseg_snapshot_decode(body, len, &m->ids);
    default: return SM_ECORRUPT;
    }
}

static uint32_t tag_bit(uint64_t tag)
{
    switch (tag) {
    case SM_TAG_KV: return 1u;
    case SM_TAG_MEMBERS: return 2u;
    case SM_TAG_LEASE: return 4u;
    case SM_TAG_LOCK: return 8u;
    case SM_TAG_IDSEG: return 16u;
    default: return 0;
    }
}

int machine_snapshot_decode(const uint8_t *buf, size_t n, struct machine **out)
{
    struct le_reader r = {.p = buf, .n = n};
    uint64_t n_sections = 0;
    struct machine *m = machine_alloc();
    if (!m)
        return SM_ENOMEM;
    int rv = SM_ENOMEM;
    if (lease_new(&m->leases) != 0 || lock_new(&m->locks) != 0 || idseg_new(&m->ids) != 0)
        goto err;
    rv = SM_ECORRUPT;
    if (n < 8 || memcmp(buf, snapshot_magic, 4) != 0) {
        /* An image from before the composite format is a bare KV snapshot. */
        rv = kv_snapshot_decode(buf, n, &m->kv);
        if (rv != 0)
            goto err;
        *out = m;
        return 0;
    }
    r.off = 4;
    if (!le_read(&r, 4, &n_sections) || n_sections == 0 || n_sections > 8)
        goto err;
    uint32_t seen = 0; /* bit per tag seen: a section may appear once */
    for (uint64_t i = 0; i < n_sections; i++) {
        uint64_t tag = 0, len = 0;
        rv = SM_ECORRUPT;
        if (!le_read(&r, 1, &tag) || !le_read(&r, 8, &len) || r.n - r.off < len)
            goto err;
        const uint8_t *body = r.p + r.off;
        r.off += (size_t)len;
        uint32_t bit = tag_bit(tag);
        if (bit == 0 || (seen & bit))
            goto err; /* unknown or repeated section */
        seen |= bit;
        rv = decode_section(m, tag, body, (size_t)len);
        if (rv != 0)
            goto err;
    }
    rv = SM_ECORRUPT;
    if (r.off != r.n || !m->kv || !m->leases || !m->locks || !m->ids)
        goto err;
    if (lock_check_leases(m->locks, m->leases) != 0)
        goto err; /* every hold and wait must name a live lease */
    *out = m;
    return 0;
err:
    machine_free(m);
    return rv;
}

uint64_t machine_digest(const struct machine *m)
{
    uint64_t parts[5] = {kv_digest(m->kv), members_digest(&m->members), lease_digest(m->leases),
                         lock_digest(m->locks), idseg_digest(m->ids)};
    return hash_fnv1a64(HASH_FNV_INIT, parts, sizeof(parts));
}
