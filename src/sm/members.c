/* members.c -- the replicated member directory (see members.h). Pure: no IO.
 *
 * Invariants: entries sorted by id, ids unique and nonzero, names unique, every entry
 * passes members_check(). Every mutation is validated in full before anything changes,
 * so a rejected command leaves the directory as it was on every replica.
 *
 * Sections: strings | validation | codec | apply | snapshot.
 */
#include "sm/members.h"

#include <stdio.h>
#include <string.h>

#include "base/hash.h"
#include "base/le.h"

const char *members_strerror(int rv)
{
    switch (rv) {
    case 0: return "ok";
    case MEMBERS_EMALFORMED: return "member command or snapshot is malformed";
    case MEMBERS_EFORMAT: return "member directory format version not supported";
    case MEMBERS_EINVAL: return "invalid member (id 0, or a bad name or address)";
    case MEMBERS_ENAMETAKEN: return "another member already has this name";
    case MEMBERS_EFULL: return "member directory full (MEMBERS_MAX entries)";
    case MEMBERS_ESPACE: return "buffer too small for the member directory";
    default: return "unknown members error";
    }
}

/* ==== validation ============================================================ */

static bool name_ok(const char *s)
{
    size_t len = strnlen(s, MEMBERS_NAME_BYTES);
    if (len == 0 || len >= MEMBERS_NAME_BYTES)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool addr_ok(const char *s, bool may_be_empty)
{
    size_t len = strnlen(s, MEMBERS_ADDR_BYTES);
    if (len >= MEMBERS_ADDR_BYTES || (len == 0 && !may_be_empty))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

int members_check(const struct members_entry *e)
{
    if (e->id == 0 || !name_ok(e->name) || !addr_ok(e->peer_addr, false) ||
        !addr_ok(e->http_addr, true))
        return MEMBERS_EINVAL;
    return 0;
}

/* ==== codec ================================================================= */

static void put_str(uint8_t *buf, size_t *off, const char *s)
{
    uint32_t len = (uint32_t)strlen(s);
    le_put_u32(buf + *off, len);
    memcpy(buf + *off + 4, s, len);
    *off += 4 + len;
}

/* Reads u32 len + bytes into a NUL-terminated string of capacity cap. */
static bool get_str(struct le_reader *r, char *out, size_t cap)
{
    uint64_t len = 0;
    if (!le_read(r, 4, &len) || len >= cap || r->n - r->off < len)
        return false;
    const uint8_t *src = r->p + r->off;
    if (memchr(src, 0, (size_t)len) != NULL)
        return false; /* no embedded NUL */
    snprintf(out, cap, "%.*s", (int)len, (const char *)src);
    r->off += (size_t)len;
    return true;
}

static size_t entry_bytes(const struct members_entry *e)
{
    return 4 + 12 + strlen(e->name) + strlen(e->peer_addr) + strlen(e->http_addr);
}

static void put_entry(uint8_t *buf, size_t *off, const struct members_entry *e)
{
    le_put_u32(buf + *off, e->id);
    *off += 4;
    put_str(buf, off, e->name);
    put_str(buf, off, e->peer_addr);
    put_str(buf, off, e->http_addr);
}

static bool get_entry(struct le_reader *r, struct members_entry *e)
{
    uint64_t id = 0;
    memset(e, 0, sizeof(*e));
    if (!le_read(r, 4, &id))
        return false;
    e->id = (uint32_t)id;
    return get_str(r, e->name, sizeof(e->name)) &&
           get_str(r, e->peer_addr, sizeof(e->peer_addr)) &&
           get_str(r, e->http_addr, sizeof(e->http_addr));
}

int members_encode_set(const struct members_entry *e, uint8_t *buf, size_t cap, size_t *n)
{
    int rv = members_check(e);
    if (rv != 0)
        return rv;
    if (cap < 3 + entry_bytes(e))
        return MEMBERS_ESPACE;
    buf[0] = 0x10; /* SM_TAG_MEMBERS; machine.c asserts they agree */
    buf[1] = MEMBERS_FORMAT_VERSION;
    buf[2] = MEMBERS_SET;
    size_t off = 3;
    put_entry(buf, &off, e);
    *n = off;
    return 0;
}

int members_encode_del(uint32_t id, uint8_t *buf, size_t cap, size_t *n)
{
    if (id == 0)
        return MEMBERS_EINVAL;
    if (cap < 7)
        return MEMBERS_ESPACE;
    buf[0] = 0x10;
    buf[1] = MEMBERS_FORMAT_VERSION;
    buf[2] = MEMBERS_DEL;
    le_put_u32(buf + 3, id);
    *n = 7;
    return 0;
}

/* ==== apply ================================================================= */

const struct members_entry *members_find(const struct members *m, uint32_t id)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (m->e[i].id == id)
            return &m->e[i];
    return NULL;
}

const struct members_entry *members_find_name(const struct members *m, const char *name)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].name, name) == 0)
            return &m->e[i];
    return NULL;
}

static int apply_set(struct members *m, const struct members_entry *e)
{
    int rv = members_check(e);
    if (rv != 0)
        return rv;
    const struct members_entry *named = members_find_name(m, e->name);
    if (named && named->id != e->id)
        return MEMBERS_ENAMETAKEN;
    uint32_t pos = 0;
    while (pos < m->n && m->e[pos].id < e->id)
        pos++;
    if (pos < m->n && m->e[pos].id == e->id) {
        m->e[pos] = *e;
        return 0;
    }
    if (m->n == MEMBERS_MAX)
        return MEMBERS_EFULL;
    memmove(&m->e[pos + 1], &m->e[pos], (m->n - pos) * sizeof(m->e[0]));
    m->e[pos] = *e;
    m->n++;
    return 0;
}

static void apply_del(struct members *m, uint32_t id)
{
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->e[i].id == id) {
            memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(m->e[0]));
            m->n--;
            return;
        }
    }
}

int members_apply(struct members *m, const uint8_t *cmd, size_t n)
{
    struct le_reader r = {.p = cmd, .n = n};
    uint64_t tag = 0, version = 0, type = 0, id = 0;
    if (!le_read(&r, 1, &tag) || tag != 0x10 || !le_read(&r, 1, &version))
        return MEMBERS_EMALFORMED;
    if (version != MEMBERS_FORMAT_VERSION)
        return MEMBERS_EFORMAT;
    if (!le_read(&r, 1, &type))
        return MEMBERS_EMALFORMED;
    if (type == MEMBERS_SET) {
        struct members_entry e;
        if (!get_entry(&r, &e) || r.off != r.n)
            return MEMBERS_EMALFORMED;
        return apply_set(m, &e);
    }
    if (type == MEMBERS_DEL) {
        if (!le_read(&r, 4, &id) || r.off != r.n)
            return MEMBERS_EMALFORMED;
        if (id == 0)
            return MEMBERS_EINVAL;
        apply_del(m, (uint32_t)id);
        return 0;
    }
    return MEMBERS_EMALFORMED;
}

/* ==== snapshot ============================================================== */

int members_encode(const struct members *m, uint8_t *buf, size_t cap, size_t *n)
{
    size_t need = 4;
    for (uint32_t i = 0; i < m->n; i++)
        need += entry_bytes(&m->e[i]);
    if (cap < need)
        return MEMBERS_ESPACE;
    le_put_u32(buf, m->n);
    size_t off = 4;
    for (uint32_t i = 0; i < m->n; i++)
        put_entry(buf, &off, &m->e[i]);
    *n = off;
    return 0;
}

int members_decode(const uint8_t *buf, size_t n, struct members *out)
{
    struct le_reader r = {.p = buf, .n = n};
    uint64_t count = 0;
    memset(out, 0, sizeof(*out));
    if (!le_read(&r, 4, &count) || count > MEMBERS_MAX)
        return MEMBERS_EMALFORMED;
    for (uint32_t i = 0; i < count; i++) {
        struct members_entry e;
        if (!get_entry(&r, &e) || members_check(&e) != 0)
            goto malformed;
        if (i > 0 && e.id <= out->e[i - 1].id)
            goto malformed;
        if (members_find_name(out, e.name))
            goto malformed;
        out->e[out->n++] = e;
    }
    if (r.off != r.n)
        goto malformed;
    return 0;
malformed:
    memset(out, 0, sizeof(*out));
    return MEMBERS_EMALFORMED;
}

uint64_t members_digest(const struct members *m)
{
    uint8_t buf[MEMBERS_SNAPSHOT_BYTES_MAX] = {0};
    size_t n = 0;
    if (members_encode(m, buf, sizeof(buf), &n) != 0)
        return 0;
    return hash_fnv1a64(HASH_FNV_INIT, buf, n);
}
