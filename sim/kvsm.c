/* kvsm.c -- toy key-value state machine for the simulator (see kvsm.h).
 *
 * Invariants: applied_index only moves by one per kvsm_apply()/kvsm_skip();
 * digest after index i is FNV-1a over the digest after i-1 and a fixed-width
 * record of what index i did, so equal digests at equal indexes mean equal
 * histories (up to hash collisions). Every integer is encoded little endian
 * with explicit widths, so images are byte-identical across hosts.
 *
 * Command layout:  u8 kind | u8 key | i64 arg | (CAS only) i64 arg2
 * Snapshot layout: "KVS1" | u64 applied | u64 digest | u64 n_mutations |
 *                  KEYS x (i64 value, u64 version) |
 *                  RECENT_MAX x (u64 index, u32 key, i64 value) |
 *                  u64 FNV-1a checksum of everything before it
 *
 * Sections: codec helpers | commands | apply | snapshot.
 */
#include "kvsm.h"

#include <string.h>

#include "base/assert.h"
#include "base/hash.h"

#define KVSM_MAGIC 0x3153564bu /* "KVS1" little endian */

_Static_assert(KVSM_SNAPSHOT_BYTES == 436, "kvsm snapshot layout changed: update kvsm.c");

/* ---- codec helpers ------------------------------------------------------- */

static void kvsm_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t kvsm_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void kvsm_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t kvsm_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t kvsm_fold(uint64_t digest, const uint64_t *words, size_t n)
{
    uint8_t buf[8];
    for (size_t i = 0; i < n; i++) {
        kvsm_put64(buf, words[i]);
        digest = hash_fnv1a64(digest, buf, sizeof(buf));
    }
    return digest;
}

const char *kvsm_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case KVSM_EINVAL:
        return "malformed command";
    case KVSM_EORDER:
        return "entry applied out of order";
    case KVSM_ECORRUPT:
        return "snapshot image is corrupt";
    default:
        return "unknown kvsm error";
    }
}

/* ---- commands ------------------------------------------------------------ */

int kvsm_cmd_encode(const struct kvsm_cmd *c, uint8_t *buf, size_t cap, size_t *n_out)
{
    size_t n = c->kind == KVSM_CAS ? 18 : 10;
    if ((c->kind != KVSM_PUT && c->kind != KVSM_CAS) || c->key >= KVSM_KEYS || cap < n)
        return KVSM_EINVAL;
    buf[0] = c->kind;
    buf[1] = (uint8_t)c->key;
    kvsm_put64(buf + 2, (uint64_t)c->arg);
    if (c->kind == KVSM_CAS)
        kvsm_put64(buf + 10, (uint64_t)c->arg2);
    *n_out = n;
    return 0;
}

int kvsm_cmd_decode(struct kvsm_cmd *c, const uint8_t *buf, size_t n)
{
    if (n < 10 || buf == NULL)
        return KVSM_EINVAL;
    c->kind = buf[0];
    c->key = buf[1];
    if (c->key >= KVSM_KEYS)
        return KVSM_EINVAL;
    if ((c->kind == KVSM_PUT && n != 10) || (c->kind == KVSM_CAS && n != 18) ||
        (c->kind != KVSM_PUT && c->kind != KVSM_CAS))
        return KVSM_EINVAL;
    c->arg = (int64_t)kvsm_get64(buf + 2);
    c->arg2 = c->kind == KVSM_CAS ? (int64_t)kvsm_get64(buf + 10) : 0;
    return 0;
}

/* ---- apply --------------------------------------------------------------- */

void kvsm_init(struct kvsm *kv)
{
    memset(kv, 0, sizeof(*kv));
    for (uint32_t k = 0; k < KVSM_KEYS; k++)
        kv->values[k] = KVSM_ABSENT;
    kv->digest = HASH_FNV_INIT;
}

static void kvsm_mutate(struct kvsm *kv, uint64_t index, uint32_t key, int64_t value)
{
    kv->values[key] = value;
    kv->versions[key]++;
    kv->recent[kv->n_mutations % KVSM_RECENT_MAX] =
        (struct kvsm_mutation){.index = index, .key = key, .value = value};
    kv->n_mutations++;
}

int kvsm_apply(struct kvsm *kv, uint64_t index, const uint8_t *cmd, size_t n, int64_t *result)
{
    struct kvsm_cmd c;
    if (index != kv->applied_index + 1)
        return KVSM_EORDER;
    int rv = kvsm_cmd_decode(&c, cmd, n);
    if (rv != 0)
        return rv;
    int64_t res = 0;
    if (c.kind == KVSM_PUT) {
        kvsm_mutate(kv, index, c.key, c.arg);
    } else if (kv->values[c.key] == c.arg) {
        kvsm_mutate(kv, index, c.key, c.arg2);
        res = 1;
    }
    const uint64_t rec[6] = {index,           c.kind,           c.key,
                             (uint64_t)c.arg, (uint64_t)c.arg2, (uint64_t)res};
    kv->digest = kvsm_fold(kv->digest, rec, 6);
    kv->applied_index = index;
    *result = res;
    return 0;
}

int kvsm_skip(struct kvsm *kv, uint64_t index)
{
    if (index != kv->applied_index + 1)
        return KVSM_EORDER;
    const uint64_t rec[2] = {index, 0};
    kv->digest = kvsm_fold(kv->digest, rec, 2);
    kv->applied_index = index;
    return 0;
}

int64_t kvsm_get(const struct kvsm *kv, uint32_t key)
{
    CC_ASSERT(key < KVSM_KEYS);
    return kv->values[key];
}

/* ---- snapshot ------------------------------------------------------------ */

int kvsm_snapshot_encode(const struct kvsm *kv, uint8_t *buf, size_t cap, size_t *n_out)
{
    if (cap < KVSM_SNAPSHOT_BYTES)
        return KVSM_EINVAL;
    uint8_t *p = buf;
    kvsm_put32(p, KVSM_MAGIC);
    p += 4;
    kvsm_put64(p, kv->applied_index);
    kvsm_put64(p + 8, kv->digest);
    kvsm_put64(p + 16, kv->n_mutations);
    p += 24;
    for (uint32_t k = 0; k < KVSM_KEYS; k++, p += 16) {
        kvsm_put64(p, (uint64_t)kv->values[k]);
        kvsm_put64(p + 8, kv->versions[k]);
    }
    for (uint32_t i = 0; i < KVSM_RECENT_MAX; i++, p += 20) {
        kvsm_put64(p, kv->recent[i].index);
        kvsm_put32(p + 8, kv->recent[i].key);
        kvsm_put64(p + 12, (uint64_t)kv->recent[i].value);
    }
    kvsm_put64(p, hash_fnv1a64(HASH_FNV_INIT, buf, (size_t)(p - buf)));
    p += 8;
    CC_ASSERT((size_t)(p - buf) == KVSM_SNAPSHOT_BYTES);
    *n_out = KVSM_SNAPSHOT_BYTES;
    return 0;
}

int kvsm_snapshot_decode(struct kvsm *kv, const uint8_t *buf, size_t n)
{
    struct kvsm t;
    if (n != KVSM_SNAPSHOT_BYTES || buf == NULL || kvsm_get32(buf) != KVSM_MAGIC)
        return KVSM_ECORRUPT;
    if (kvsm_get64(buf + n - 8) != hash_fnv1a64(HASH_FNV_INIT, buf, n - 8))
        return KVSM_ECORRUPT;
    const uint8_t *p = buf + 4;
    t.applied_index = kvsm_get64(p);
    t.digest = kvsm_get64(p + 8);
    t.n_mutations = kvsm_get64(p + 16);
    p += 24;
    for (uint32_t k = 0; k < KVSM_KEYS; k++, p += 16) {
        t.values[k] = (int64_t)kvsm_get64(p);
        t.versions[k] = kvsm_get64(p + 8);
    }
    for (uint32_t i = 0; i < KVSM_RECENT_MAX; i++, p += 20) {
        t.recent[i].index = kvsm_get64(p);
        t.recent[i].key = kvsm_get32(p + 8);
        t.recent[i].value = (int64_t)kvsm_get64(p + 12);
        if (t.recent[i].key >= KVSM_KEYS)
            return KVSM_ECORRUPT;
    }
    *kv = t;
    return 0;
}
