/* machine.c -- the composite state machine: dispatch by tag, lease deaths across kv and
 * locks, key-private leases (KVTTL, machine.h), one snapshot of all parts. Pure: no IO,
 * no clock.
 *
 * Private leases need no state of their own: a lease is private when it carries a
 * LEASE_ITEM_KEY item (only KVTTL grants attach one), so the lease snapshot already
 * holds the mark and the digest covers it. After a kv change the previous lease of each
 * changed key is read from kv history (revision - 1, always readable: compaction never
 * passes the current revision), which is how an overwrite, delete or rename finds the
 * lease it orphaned; that lookup is skipped while no lease exists at all.
 *
 * Sections: errors | results | lifecycle | kvttl codec | apply | snapshot.
 */
#include "sm/machine.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/grow.h"
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
    case SM_EMALFORMED: return "kvttl command is malformed or names no fitting put";
    case SM_EFORMAT: return "kvttl command format version not supported";
    case SM_EGRANTS: return "kvttl command has no grant or too many grants";
    default: return "unknown state machine error";
    }
}

/* ==== results =============================================================== */

void sm_result_free(struct sm_result *res)
{
    kv_result_free(&res->kv);
    lease_result_free(&res->lease);
    lock_result_free(&res->lock);
    free(res->lease_changes);
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

/* ==== kvttl codec =========================================================== */

static int check_grant_ttl(int64_t ttl_ms)
{
    if (ttl_ms < LEASE_TTL_MS_MIN)
        return LEASE_ETTLSHORT;
    return ttl_ms > LEASE_TTL_MS_MAX ? LEASE_ETTLLONG : 0;
}

/* The static rules shared by encoder and decoder. */
static int check_grants(const struct sm_kvttl_grant *g, uint32_t n_grants)
{
    if (n_grants == 0 || n_grants > SM_KVTTL_GRANTS_MAX)
        return SM_EGRANTS;
    for (uint32_t i = 0; i < n_grants; i++) {
        int rv = check_grant_ttl(g[i].ttl_ms);
        if (rv != 0)
            return rv;
        if (g[i].op_index >= 2 * KV_TXN_OPS_MAX || (i > 0 && g[i].op_index <= g[i - 1].op_index))
            return SM_EMALFORMED; /* one meaning, one encoding: ascending, distinct */
    }
    return 0;
}

int sm_kvttl_encode(const struct sm_kvttl_grant *grants, uint32_t n_grants, const uint8_t *kv_cmd,
                    size_t kv_len, uint8_t **buf, size_t *n)
{
    int rv = check_grants(grants, n_grants);
    if (rv != 0)
        return rv;
    if (kv_cmd == NULL || kv_len == 0)
        return SM_EMALFORMED;
    const size_t head = SM_KVTTL_HEADER_BYTES + (size_t)n_grants * SM_KVTTL_GRANT_BYTES;
    uint8_t *out = malloc(head + kv_len);
    if (!out)
        return SM_ENOMEM;
    out[0] = SM_TAG_KVTTL;
    out[1] = SM_KVTTL_FORMAT_VERSION;
    out[2] = (uint8_t)n_grants;
    size_t off = SM_KVTTL_HEADER_BYTES;
    for (uint32_t i = 0; i < n_grants; i++) {
        le_put_u64(out + off, (uint64_t)grants[i].ttl_ms);
        out[off + 8] = (uint8_t)grants[i].op_index;
        out[off + 9] = (uint8_t)(grants[i].op_index >> 8);
        off += SM_KVTTL_GRANT_BYTES;
    }
    memcpy(out + off, kv_cmd, kv_len);
    *buf = out;
    *n = head + kv_len;
    return 0;
}

int sm_kvttl_decode(const uint8_t *buf, size_t n, struct sm_kvttl *out)
{
    struct le_reader r = {.p = buf, .n = n};
    uint64_t tag = 0, version = 0, count = 0;
    if (!le_read(&r, 1, &tag) || tag != SM_TAG_KVTTL || !le_read(&r, 1, &version))
        return SM_EMALFORMED;
    if (version != SM_KVTTL_FORMAT_VERSION)
        return SM_EFORMAT;
    if (!le_read(&r, 1, &count))
        return SM_EMALFORMED;
    if (count == 0 || count > SM_KVTTL_GRANTS_MAX)
        return SM_EGRANTS;
    out->n_grants = (uint32_t)count;
    for (uint32_t i = 0; i < out->n_grants; i++) {
        uint64_t ttl = 0, idx = 0;
        if (!le_read(&r, 8, &ttl) || !le_read(&r, 2, &idx))
            return SM_EMALFORMED;
        out->grants[i] = (struct sm_kvttl_grant){.ttl_ms = (int64_t)ttl, .op_index = (uint16_t)idx};
    }
    int rv = check_grants(out->grants, out->n_grants);
    if (rv != 0)
        return rv;
    if (r.off >= r.n)
        return SM_EMALFORMED; /* no kv command */
    out->kv_cmd = buf + r.off;
    out->kv_len = n - r.off;
    return 0;
}

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

static int check_decoded_leases(const struct machine *m, const struct kvcmd *c)
{
    if (c->type == KV_CMD_PUT)
        return check_put_lease(m, &c->put);
    if (c->type == KV_CMD_TXN) {
        int rv = check_ops_leases(m, c->txn.success, c->txn.n_success);
        return rv ? rv : check_ops_leases(m, c->txn.failure, c->txn.n_failure);
    }
    return 0;
}

/* etcd's rule: a put may only name a lease that exists (whichever txn branch runs). A
 * command that does not decode is left to kv_apply, which reports it. */
static int check_kv_leases(struct machine *m, const uint8_t *cmd, size_t n)
{
    if (kvcmd_decode(cmd, n, m->scratch) != 0)
        return 0;
    return check_decoded_leases(m, m->scratch);
}

/* Allocation failure while applying aborts (see lease.h: a half-applied entry would
 * make this replica diverge silently; a restarted one replays its log). */
static void note_change(struct sm_result *res, uint32_t *cap, int64_t id, int64_t ttl_ms,
                        bool granted)
{
    if (!cc_grow((void **)&res->lease_changes, cap, res->n_lease_changes + 1,
                 sizeof(*res->lease_changes)))
        abort();
    res->lease_changes[res->n_lease_changes++] =
        (struct sm_lease_change){.id = id, .ttl_ms = ttl_ms, .granted = granted};
}

static bool lease_is_private(const struct lease_table *t, int64_t id)
{
    struct lease_info info;
    return id != 0 && lease_get(t, id, &info) == 0 && info.n_keys > 0;
}

/* The no-leak rule (machine.h): after a kv change, revoke each private lease a changed
 * key carried before and no key carries now; move key items along renames. Bounded by
 * the command's events (the store reports each key's previous lease with its event). */
static void fix_private_leases(struct machine *m, uint64_t index, struct sm_result *res,
                               uint32_t *cap)
{
    const struct kv_result *kr = &res->kv;
    if (kr->err != 0 || kr->n_events == 0 || lease_count(m->leases) == 0)
        return;
    int64_t *prev = calloc(kr->n_events, sizeof(*prev));
    if (!prev)
        abort();
    /* 1. Which private leases did changed keys leave? Decided before any item moves. */
    for (uint32_t i = 0; i < kr->n_events; i++) {
        const struct kv_event *e = &kr->events[i];
        const int64_t cur = e->type == KV_EVENT_PUT ? e->kv.lease : 0;
        const int64_t was = e->prev_lease;
        prev[i] = (was != cur && lease_is_private(m->leases, was)) ? was : 0;
    }
    /* 2. A key that now carries a private lease is one of its items (RENAME moves it). */
    for (uint32_t i = 0; i < kr->n_events; i++) {
        const struct kv_event *e = &kr->events[i];
        if (e->type == KV_EVENT_PUT && e->kv.lease != 0 && lease_is_private(m->leases, e->kv.lease))
            (void)lease_attach(m->leases, e->kv.lease, LEASE_ITEM_KEY, e->kv.key, e->kv.key_len);
    }
    /* 3. Detach the keys that left; a private lease no key carries dies now. */
    for (uint32_t i = 0; i < kr->n_events; i++) {
        const int64_t id = prev[i];
        const struct kv_event *e = &kr->events[i];
        if (id == 0 || !lease_exists(m->leases, id))
            continue;
        (void)lease_detach(m->leases, id, LEASE_ITEM_KEY, e->kv.key, e->kv.key_len);
        struct lease_info info;
        if (kv_lease_key_count(m->kv, id) != 0 || lease_get(m->leases, id, &info) != 0 ||
            info.n_locks != 0)
            continue; /* still carried, or a lock holds it: it expires as usual */
        uint8_t cmd[LEASE_CMD_BYTES_MAX];
        size_t n = 0;
        struct lease_result lr;
        CC_ASSERT(lease_encode_revoke(id, cmd, sizeof(cmd), &n) == 0);
        CC_ASSERT(lease_apply(m->leases, cmd, n, index, &lr) == 0);
        lease_result_free(&lr);
        note_change(res, cap, id, info.ttl_ms, false);
    }
    free(prev);
}

/* The put op_index names in c, when a grant may use it (a put without a lease). */
static struct kv_put_req *kvttl_put(struct kvcmd *c, uint32_t op_index)
{
    struct kv_put_req *p = NULL;
    if (c->type == KV_CMD_PUT) {
        p = op_index == 0 ? &c->put : NULL;
    } else if (c->type == KV_CMD_TXN) {
        /* kvcmd_decode: success ops fill op_buf from the front, failure ops the middle */
        CC_ASSERT(c->txn.success == c->op_buf);
        CC_ASSERT(c->txn.failure == c->op_buf + KV_TXN_OPS_MAX);
        struct kv_op *op = NULL;
        if (op_index < c->txn.n_success)
            op = &c->op_buf[op_index];
        else if (op_index - c->txn.n_success < c->txn.n_failure)
            op = &c->op_buf[KV_TXN_OPS_MAX + (op_index - c->txn.n_success)];
        p = op != NULL && op->type == KV_OP_PUT ? &op->put : NULL;
    }
    return p != NULL && p->lease == 0 && !p->ignore_lease ? p : NULL;
}

static void apply_kvttl(struct machine *m, const uint8_t *cmd, size_t n, uint64_t index,
                        struct sm_result *res, uint32_t *cap)
{
    struct sm_kvttl t;
    res->err = sm_kvttl_decode(cmd, n, &t);
    if (res->err == 0)
        res->err = kvcmd_decode(t.kv_cmd, t.kv_len, m->scratch);
    struct kvcmd *c = m->scratch;
    struct kv_put_req *puts[SM_KVTTL_GRANTS_MAX];
    for (uint32_t i = 0; i < t.n_grants && res->err == 0; i++) {
        puts[i] = kvttl_put(c, t.grants[i].op_index);
        if (puts[i] == NULL)
            res->err = SM_EMALFORMED;
    }
    if (res->err == 0)
        res->err = check_decoded_leases(m, c);
    const int64_t base = lease_next_id(m->leases);
    if (res->err == 0 && lease_count(m->leases) + t.n_grants > LEASE_COUNT_MAX)
        res->err = LEASE_EFULL;
    if (res->err == 0 && (base <= 0 || base > INT64_MAX - (int64_t)(t.n_grants - 1)))
        res->err = LEASE_EIDSPACE;
    if (res->err != 0) {
        res->kv.err = res->err;
        return;
    }
    /* Every check passed: the lease ids are what GRANT(0) would allocate, in order. */
    for (uint32_t i = 0; i < t.n_grants; i++)
        puts[i]->lease = base + (int64_t)i;
    uint8_t *inner = NULL;
    size_t inner_n = 0;
    int rv = c->type == KV_CMD_PUT ? kvcmd_encode_put(&c->put, &inner, &inner_n)
                                   : kvcmd_encode_txn(&c->txn, &inner, &inner_n);
    if (rv == KV_ENOMEM)
        abort();
    CC_ASSERT(rv == 0); /* it decoded, and a lease id changes no limit */
    kv_apply(m->kv, inner, inner_n, &res->kv);
    free(inner);
    res->err = res->kv.err;
    if (res->err != 0)
        return;
    for (uint32_t i = 0; i < t.n_grants; i++) {
        const bool ran = c->type == KV_CMD_PUT ||
                         (t.grants[i].op_index < c->txn.n_success) == res->kv.succeeded;
        if (!ran)
            continue; /* its branch did not run: no lease */
        uint8_t g[LEASE_CMD_BYTES_MAX];
        size_t gn = 0;
        struct lease_result lr;
        CC_ASSERT(lease_encode_grant(puts[i]->lease, t.grants[i].ttl_ms, g, sizeof(g), &gn) == 0);
        CC_ASSERT(lease_apply(m->leases, g, gn, index, &lr) == 0);
        lease_result_free(&lr);
        /* the private mark; cannot fail on a fresh lease with a valid key */
        CC_ASSERT(lease_attach(m->leases, puts[i]->lease, LEASE_ITEM_KEY, puts[i]->key,
                               puts[i]->key_len) == 0);
        note_change(res, cap, puts[i]->lease, t.grants[i].ttl_ms, true);
    }
    fix_private_leases(m, index, res, cap);
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
    uint32_t cap = 0; /* of res->lease_changes */
    switch (cmd[0]) {
    case SM_TAG_KV:
        res->err = check_kv_leases(m, cmd, n);
        if (res->err != 0) {
            res->kv.err = res->err;
            return;
        }
        kv_apply(m->kv, cmd, n, &res->kv);
        res->err = res->kv.err;
        fix_private_leases(m, index, res, &cap);
        return;
    case SM_TAG_KVTTL:
        apply_kvttl(m, cmd, n, index, res, &cap);
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
