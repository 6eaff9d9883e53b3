/* machine.c -- the composite state machine: dispatch by tag, one snapshot of all parts.
 * Pure: no IO. Sections: results | lifecycle | apply | snapshot.
 */
#include "sm/machine.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/le.h"
#include "sm/kvcmd.h"

_Static_assert(SM_TAG_KV == KVCMD_FORMAT_VERSION, "a KV command's version byte is its tag");

struct machine {
    struct kv *kv;
    struct members members;
};

static const uint8_t snapshot_magic[4] = {'C', 'S', 'M', '1'};

const char *sm_strerror(int rv)
{
    if (rv <= -2000 && rv > -2100)
        return kv_strerror(rv);
    if (rv <= -2100 && rv > -2120)
        return members_strerror(rv);
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
    memset(res, 0, sizeof(*res));
}

/* ==== lifecycle ============================================================= */

int machine_new(struct machine **out)
{
    struct machine *m = calloc(1, sizeof(*m));
    if (!m)
        return SM_ENOMEM;
    if (kv_new(&m->kv) != 0) {
        free(m);
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
    free(m);
}

struct kv *machine_kv(struct machine *m)
{
    return m->kv;
}

const struct members *machine_members(const struct machine *m)
{
    return &m->members;
}

/* ==== apply ================================================================= */

void machine_apply(struct machine *m, const uint8_t *cmd, size_t n, struct sm_result *res)
{
    memset(res, 0, sizeof(*res));
    if (n == 0) {
        res->err = SM_EUNKNOWNTAG;
        return;
    }
    res->tag = cmd[0];
    switch (cmd[0]) {
    case SM_TAG_KV:
        kv_apply(m->kv, cmd, n, &res->kv);
        res->err = res->kv.err;
        return;
    case SM_TAG_MEMBERS:
        res->err = members_apply(&m->members, cmd, n);
        return;
    default:
        res->err = SM_EUNKNOWNTAG;
        return;
    }
}

/* ==== snapshot ============================================================== */

int machine_snapshot_encode(const struct machine *m, uint8_t **buf, size_t *n)
{
    uint8_t *kv_buf = NULL;
    size_t kv_len = 0;
    int rv = kv_snapshot_encode(m->kv, &kv_buf, &kv_len);
    if (rv != 0)
        return rv;
    uint8_t mem_buf[MEMBERS_SNAPSHOT_BYTES_MAX];
    size_t mem_len = 0;
    rv = members_encode(&m->members, mem_buf, sizeof(mem_buf), &mem_len);
    if (rv != 0)
        goto out;
    size_t total = 4 + 4 + 2 * 9 + kv_len + mem_len;
    uint8_t *out = malloc(total);
    if (!out) {
        rv = SM_ENOMEM;
        goto out;
    }
    memcpy(out, snapshot_magic, 4);
    le_put_u32(out + 4, 2);
    size_t off = 8;
    out[off] = SM_TAG_KV;
    le_put_u64(out + off + 1, kv_len);
    memcpy(out + off + 9, kv_buf, kv_len);
    off += 9 + kv_len;
    out[off] = SM_TAG_MEMBERS;
    le_put_u64(out + off + 1, mem_len);
    memcpy(out + off + 9, mem_buf, mem_len);
    off += 9 + mem_len;
    *buf = out;
    *n = off;
out:
    free(kv_buf);
    return rv;
}

int machine_snapshot_decode(const uint8_t *buf, size_t n, struct machine **out)
{
    struct le_reader r = {.p = buf, .n = n};
    uint64_t n_sections = 0;
    struct machine *m = calloc(1, sizeof(*m));
    if (!m)
        return SM_ENOMEM;
    int rv = SM_ECORRUPT;
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
        uint32_t bit = tag == SM_TAG_KV ? 1u : tag == SM_TAG_MEMBERS ? 2u : 0u;
        if (bit == 0 || (seen & bit)) {
            rv = SM_ECORRUPT; /* unknown or repeated section */
            goto err;
        }
        seen |= bit;
        if (tag == SM_TAG_KV) {
            rv = kv_snapshot_decode(body, (size_t)len, &m->kv);
            if (rv != 0)
                goto err;
        } else {
            rv = members_decode(body, (size_t)len, &m->members);
            if (rv != 0)
                goto err;
        }
    }
    rv = SM_ECORRUPT;
    if (r.off != r.n || !m->kv)
        goto err;
    *out = m;
    return 0;
err:
    machine_free(m);
    return rv;
}

uint64_t machine_digest(const struct machine *m)
{
    uint64_t parts[2] = {kv_digest(m->kv), members_digest(&m->members)};
    return hash_fnv1a64(HASH_FNV_INIT, parts, sizeof(parts));
}
