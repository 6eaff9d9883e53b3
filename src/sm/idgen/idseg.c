/* idseg.c -- segment-mode state machine: per-tag max_id, the command codec, snapshots.
 *
 * Layout: s->tags is an array of struct entry sorted by tag bytes (memcmp, shorter
 * first on a tie), found by binary search. Creates insert with memmove: O(n) but rare
 * (tags are configuration), and bounded by IDSEG_TAGS_MAX. Allocation, the hot
 * command, is O(log n) and never allocates.
 *
 * Invariants (the snapshot decoder checks them on input):
 *   - tags strictly increasing, each valid (1..IDSEG_TAG_BYTES_MAX bytes of
 *     [A-Za-z0-9._:-]); n_tags <= IDSEG_TAGS_MAX.
 *   - max_id >= IDSEG_INITIAL_MIN and never decreases; step within its bounds.
 *   - every ALLOC result lies in [old max_id, new max_id), so results never overlap.
 *
 * Sections: byte writer | checks | command codec | results | store | apply |
 * canonical image (digest, snapshot) | errors.
 */
#include "sm/idgen/idseg.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/grow.h"
#include "base/hash.h"
#include "base/le.h"

#define SNAP_MAGIC        "CIDS"
#define SNAP_VERSION      1u
#define SNAP_HEADER_BYTES 9u  /* magic, version, n_tags */
#define SNAP_ENTRY_MIN    42u /* tag_len + 1-byte tag + five 8-byte fields */
#define RESULT_VERSION    1u
#define UPD_F_STEP        0x01u
#define UPD_F_MAX_ID      0x02u

/* ==== byte writer ======================================================== */

/* p == NULL: only count. */
struct wr {
    uint8_t *p;
    size_t n;
};

static void put_u8(struct wr *w, uint8_t v)
{
    if (w->p != NULL) {
        w->p[w->n] = v;
    }
    w->n += 1;
}

static void put_u64(struct wr *w, uint64_t v)
{
    if (w->p != NULL) {
        le_put_u64(w->p + w->n, v);
    }
    w->n += 8;
}

static void put_u32(struct wr *w, uint32_t v)
{
    if (w->p != NULL) {
        le_put_u32(w->p + w->n, v);
    }
    w->n += 4;
}

static void put_raw(struct wr *w, const uint8_t *b, size_t len)
{
    if (w->p != NULL && len > 0) {
        memcpy(w->p + w->n, b, len);
    }
    w->n += len;
}

static bool get_u8(struct le_reader *r, uint8_t *v)
{
    uint64_t x;
    if (!le_read(r, 1, &x)) {
        return false;
    }
    *v = (uint8_t)x;
    return true;
}

static bool get_i64(struct le_reader *r, int64_t *v)
{
    uint64_t x;
    if (!le_read(r, 8, &x)) {
        return false;
    }
    *v = (int64_t)x;
    return true;
}

/* ==== checks ============================================================= */

static bool tag_char_ok(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static int check_tag(const uint8_t *tag, size_t len)
{
    if (len == 0) {
        return IDSEG_ETAGEMPTY;
    }
    if (len > IDSEG_TAG_BYTES_MAX) {
        return IDSEG_ETAGTOOBIG;
    }
    for (size_t i = 0; i < len; i++) {
        if (!tag_char_ok(tag[i])) {
            return IDSEG_ETAGCHAR;
        }
    }
    return 0;
}

static bool step_ok(int64_t step)
{
    return step >= IDSEG_STEP_MIN && step <= IDSEG_STEP_MAX;
}

int idseg_cmd_check(const struct idseg_cmd *cmd)
{
    if (cmd == NULL || cmd->time_ms < 0) {
        return IDSEG_EINVAL;
    }
    int rv = check_tag(cmd->tag, cmd->tag_len);
    if (rv != 0) {
        return rv;
    }
    switch (cmd->type) {
    case IDSEG_CMD_CREATE:
        if (cmd->initial < IDSEG_INITIAL_MIN) {
            return IDSEG_EINITIAL;
        }
        return step_ok(cmd->step) ? 0 : IDSEG_ESTEP;
    case IDSEG_CMD_UPDATE:
        if (!cmd->set_step && !cmd->set_max_id) {
            return IDSEG_EINVAL; /* an update that changes nothing */
        }
        if (cmd->set_step && !step_ok(cmd->step)) {
            return IDSEG_ESTEP;
        }
        if (cmd->set_max_id && cmd->max_id < IDSEG_INITIAL_MIN) {
            return IDSEG_EINITIAL;
        }
        return 0;
    case IDSEG_CMD_ALLOC:
        return (cmd->count < 0 || cmd->count > IDSEG_COUNT_MAX) ? IDSEG_ECOUNT : 0;
    default:
        return IDSEG_EINVAL;
    }
}

/* ==== command codec ====================================================== */

static void w_cmd(struct wr *w, const struct idseg_cmd *cmd)
{
    put_u8(w, IDSEG_MACHINE_TAG);
    put_u8(w, IDSEG_FORMAT_VERSION);
    put_u8(w, cmd->type);
    put_u64(w, (uint64_t)cmd->time_ms);
    put_u8(w, cmd->tag_len);
    put_raw(w, cmd->tag, cmd->tag_len);
    switch (cmd->type) {
    case IDSEG_CMD_CREATE:
        put_u64(w, (uint64_t)cmd->initial);
        put_u64(w, (uint64_t)cmd->step);
        break;
    case IDSEG_CMD_UPDATE:
        put_u8(w,
               (uint8_t)((cmd->set_step ? UPD_F_STEP : 0) | (cmd->set_max_id ? UPD_F_MAX_ID : 0)));
        if (cmd->set_step) {
            put_u64(w, (uint64_t)cmd->step);
        }
        if (cmd->set_max_id) {
            put_u64(w, (uint64_t)cmd->max_id);
        }
        break;
    case IDSEG_CMD_ALLOC:
        put_u64(w, (uint64_t)cmd->count);
        break;
    default:
        CC_UNREACHABLE();
    }
}

int idseg_cmd_encode(const struct idseg_cmd *cmd, uint8_t *buf, size_t cap, size_t *n)
{
    int rv = idseg_cmd_check(cmd);
    if (rv != 0) {
        return rv;
    }
    if (buf == NULL || n == NULL) {
        return IDSEG_EINVAL;
    }
    struct wr w = {NULL, 0};
    w_cmd(&w, cmd);
    CC_ASSERT(w.n <= IDSEG_CMD_BYTES_MAX);
    if (w.n > cap) {
        return IDSEG_EINVAL;
    }
    size_t size = w.n;
    w = (struct wr){buf, 0};
    w_cmd(&w, cmd);
    CC_ASSERT(w.n == size);
    *n = size;
    return 0;
}

/* Copies a tag into cmd; too long a tag is reported by the check (as its own error). */
static int fill_tag(struct idseg_cmd *cmd, const char *tag, size_t tag_len)
{
    if (tag == NULL && tag_len > 0) {
        return IDSEG_EINVAL;
    }
    if (tag_len == 0) {
        return IDSEG_ETAGEMPTY;
    }
    if (tag_len > IDSEG_TAG_BYTES_MAX) {
        return IDSEG_ETAGTOOBIG;
    }
    memcpy(cmd->tag, tag, tag_len);
    cmd->tag_len = (uint8_t)tag_len;
    return 0;
}

int idseg_encode_create(const char *tag, size_t tag_len, int64_t initial, int64_t step,
                        int64_t time_ms, uint8_t *buf, size_t cap, size_t *n)
{
    struct idseg_cmd cmd = {
        .type = IDSEG_CMD_CREATE, .time_ms = time_ms, .initial = initial, .step = step};
    int rv = fill_tag(&cmd, tag, tag_len);
    return rv != 0 ? rv : idseg_cmd_encode(&cmd, buf, cap, n);
}

int idseg_encode_update(const char *tag, size_t tag_len, bool set_step, int64_t step,
                        bool set_max_id, int64_t max_id, int64_t time_ms, uint8_t *buf, size_t cap,
                        size_t *n)
{
    struct idseg_cmd cmd = {.type = IDSEG_CMD_UPDATE,
                            .time_ms = time_ms,
                            .step = set_step ? step : 0,
                            .max_id = set_max_id ? max_id : 0,
                            .set_step = set_step,
                            .set_max_id = set_max_id};
    int rv = fill_tag(&cmd, tag, tag_len);
    return rv != 0 ? rv : idseg_cmd_encode(&cmd, buf, cap, n);
}

int idseg_encode_alloc(const char *tag, size_t tag_len, int64_t count, int64_t time_ms,
                       uint8_t *buf, size_t cap, size_t *n)
{
    struct idseg_cmd cmd = {.type = IDSEG_CMD_ALLOC, .time_ms = time_ms, .count = count};
    int rv = fill_tag(&cmd, tag, tag_len);
    return rv != 0 ? rv : idseg_cmd_encode(&cmd, buf, cap, n);
}

int idseg_cmd_decode(const uint8_t *buf, size_t n, struct idseg_cmd *out)
{
    CC_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    if (buf == NULL || n < 1) {
        return IDSEG_EMALFORMED;
    }
    if (buf[0] != IDSEG_MACHINE_TAG) {
        return IDSEG_EMACHINE;
    }
    if (n > IDSEG_CMD_BYTES_MAX) {
        return IDSEG_EMALFORMED; /* no valid command is longer */
    }
    struct le_reader r = {buf, n, 1};
    uint8_t version, tag_len, flags;
    if (!get_u8(&r, &version)) {
        return IDSEG_EMALFORMED;
    }
    if (version != IDSEG_FORMAT_VERSION) {
        return IDSEG_EFORMAT;
    }
    if (!get_u8(&r, &out->type) || !get_i64(&r, &out->time_ms) || !get_u8(&r, &tag_len) ||
        tag_len > IDSEG_TAG_BYTES_MAX || r.n - r.off < tag_len) {
        return IDSEG_EMALFORMED;
    }
    memcpy(out->tag, buf + r.off, tag_len);
    out->tag_len = tag_len;
    r.off += tag_len;
    bool ok;
    switch (out->type) {
    case IDSEG_CMD_CREATE:
        ok = get_i64(&r, &out->initial) && get_i64(&r, &out->step);
        break;
    case IDSEG_CMD_UPDATE:
        ok = get_u8(&r, &flags) && (flags & ~(UPD_F_STEP | UPD_F_MAX_ID)) == 0;
        if (ok) {
            out->set_step = (flags & UPD_F_STEP) != 0;
            out->set_max_id = (flags & UPD_F_MAX_ID) != 0;
            ok = (!out->set_step || get_i64(&r, &out->step)) &&
                 (!out->set_max_id || get_i64(&r, &out->max_id));
        }
        break;
    case IDSEG_CMD_ALLOC:
        ok = get_i64(&r, &out->count);
        break;
    default:
        ok = false;
        break;
    }
    if (!ok || r.off != r.n) {
        return IDSEG_EMALFORMED;
    }
    return idseg_cmd_check(out);
}

/* ==== results ============================================================ */

void idseg_encode_result(const struct idseg_result *res, uint8_t out[IDSEG_RESULT_BYTES])
{
    CC_ASSERT(res != NULL);
    CC_ASSERT(res->err <= 0);
    out[0] = RESULT_VERSION;
    out[1] = res->type;
    le_put_u32(out + 2, (uint32_t)res->err);
    le_put_u64(out + 6, (uint64_t)res->start);
    le_put_u64(out + 14, (uint64_t)res->end);
    le_put_u64(out + 22, (uint64_t)res->max_id);
    le_put_u64(out + 30, (uint64_t)res->step);
}

int idseg_decode_result(const uint8_t *buf, size_t n, struct idseg_result *out)
{
    CC_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    if (buf == NULL || n != IDSEG_RESULT_BYTES) {
        return IDSEG_EMALFORMED;
    }
    if (buf[0] != RESULT_VERSION) {
        return IDSEG_EFORMAT;
    }
    struct idseg_result r = {
        .type = buf[1],
        .err = (int)(int32_t)le_get_u32(buf + 2),
        .start = (int64_t)le_get_u64(buf + 6),
        .end = (int64_t)le_get_u64(buf + 14),
        .max_id = (int64_t)le_get_u64(buf + 22),
        .step = (int64_t)le_get_u64(buf + 30),
    };
    if (r.err > 0 || r.type > IDSEG_CMD_ALLOC || r.start > r.end ||
        (r.err == 0 && r.type == IDSEG_CMD_ALLOC && r.start < IDSEG_INITIAL_MIN)) {
        return IDSEG_ECORRUPT;
    }
    *out = r;
    return 0;
}

/* ==== store ============================================================== */

struct entry {
    int64_t max_id;
    int64_t step;
    int64_t created_ms;
    int64_t updated_ms;
    uint64_t n_allocs;
    uint8_t tag_len;
    uint8_t tag[IDSEG_TAG_BYTES_MAX];
};

struct idseg {
    struct entry *tags;
    uint32_t n_tags;
    uint32_t cap;
};

int idseg_new(struct idseg **out)
{
    CC_ASSERT(out != NULL);
    *out = calloc(1, sizeof **out);
    return *out != NULL ? 0 : IDSEG_ENOMEM;
}

void idseg_free(struct idseg *s)
{
    if (s == NULL) {
        return;
    }
    free(s->tags);
    free(s);
}

static int tag_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return (a_len > b_len) - (a_len < b_len);
}

/* First index whose tag is >= (tag, len). */
static uint32_t lower_bound(const struct idseg *s, const uint8_t *tag, size_t len)
{
    uint32_t lo = 0, hi = s->n_tags;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct entry *e = &s->tags[mid];
        if (tag_cmp(e->tag, e->tag_len, tag, len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct entry *find(const struct idseg *s, const uint8_t *tag, size_t len)
{
    uint32_t i = lower_bound(s, tag, len);
    if (i < s->n_tags && tag_cmp(s->tags[i].tag, s->tags[i].tag_len, tag, len) == 0) {
        return &s->tags[i];
    }
    return NULL;
}

static void info_of(const struct entry *e, struct idseg_tag_info *out)
{
    memset(out, 0, sizeof *out);
    out->tag_len = e->tag_len;
    memcpy(out->tag, e->tag, e->tag_len);
    out->tag[e->tag_len] = '\0';
    out->max_id = e->max_id;
    out->step = e->step;
    out->created_ms = e->created_ms;
    out->updated_ms = e->updated_ms;
    out->n_allocs = e->n_allocs;
}

int idseg_get(const struct idseg *s, const char *tag, size_t tag_len, struct idseg_tag_info *out)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(out != NULL);
    CC_ASSERT(tag != NULL || tag_len == 0);
    const struct entry *e = find(s, (const uint8_t *)tag, tag_len);
    if (e == NULL) {
        memset(out, 0, sizeof *out);
        return IDSEG_ENOTFOUND;
    }
    info_of(e, out);
    return 0;
}

uint32_t idseg_count(const struct idseg *s)
{
    return s->n_tags;
}

void idseg_at(const struct idseg *s, uint32_t i, struct idseg_tag_info *out)
{
    CC_ASSERT(i < s->n_tags);
    info_of(&s->tags[i], out);
}

uint32_t idseg_lower_bound(const struct idseg *s, const char *tag, size_t tag_len)
{
    CC_ASSERT(tag != NULL || tag_len == 0);
    return lower_bound(s, (const uint8_t *)tag, tag_len);
}

/* ==== apply ============================================================== */

static int apply_create(struct idseg *s, const struct idseg_cmd *c, struct idseg_result *res)
{
    uint32_t i = lower_bound(s, c->tag, c->tag_len);
    if (i < s->n_tags && tag_cmp(s->tags[i].tag, s->tags[i].tag_len, c->tag, c->tag_len) == 0) {
        return IDSEG_EEXISTS;
    }
    if (s->n_tags >= IDSEG_TAGS_MAX) {
        return IDSEG_ETOOMANY;
    }
    void *p = s->tags;
    bool grown = cc_grow(&p, &s->cap, s->n_tags + 1, sizeof(struct entry));
    /* Running out of memory here would make this replica diverge: stop instead. */
    CC_ASSERT(grown);
    s->tags = p;
    memmove(&s->tags[i + 1], &s->tags[i], (size_t)(s->n_tags - i) * sizeof(struct entry));
    struct entry *e = &s->tags[i];
    memset(e, 0, sizeof *e);
    memcpy(e->tag, c->tag, c->tag_len);
    e->tag_len = c->tag_len;
    e->max_id = c->initial;
    e->step = c->step;
    e->created_ms = c->time_ms;
    e->updated_ms = c->time_ms;
    s->n_tags++;
    res->max_id = e->max_id;
    res->step = e->step;
    return 0;
}

static int apply_update(struct idseg *s, const struct idseg_cmd *c, struct idseg_result *res)
{
    struct entry *e = find(s, c->tag, c->tag_len);
    if (e == NULL) {
        return IDSEG_ENOTFOUND;
    }
    if (c->set_max_id && c->max_id < e->max_id) {
        return IDSEG_EBACKWARD;
    }
    if (c->set_step) {
        e->step = c->step;
    }
    if (c->set_max_id) {
        e->max_id = c->max_id;
    }
    e->updated_ms = c->time_ms;
    res->max_id = e->max_id;
    res->step = e->step;
    return 0;
}

static int apply_alloc(struct idseg *s, const struct idseg_cmd *c, struct idseg_result *res)
{
    struct entry *e = find(s, c->tag, c->tag_len);
    if (e == NULL) {
        return IDSEG_ENOTFOUND;
    }
    int64_t count = c->count != 0 ? c->count : e->step;
    CC_ASSERT(count >= 1);
    if (e->max_id > INT64_MAX - count) {
        return IDSEG_EEXHAUSTED;
    }
    res->start = e->max_id;
    res->end = e->max_id + count;
    e->max_id = res->end;
    e->updated_ms = c->time_ms;
    e->n_allocs++;
    res->max_id = e->max_id;
    res->step = e->step;
    return 0;
}

int idseg_apply(struct idseg *s, const uint8_t *cmd, size_t n, struct idseg_result *res)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(res != NULL);
    memset(res, 0, sizeof *res);
    struct idseg_cmd c;
    int rv = idseg_cmd_decode(cmd, n, &c);
    if (rv == 0) {
        res->type = c.type;
        switch (c.type) {
        case IDSEG_CMD_CREATE:
            rv = apply_create(s, &c, res);
            break;
        case IDSEG_CMD_UPDATE:
            rv = apply_update(s, &c, res);
            break;
        case IDSEG_CMD_ALLOC:
            rv = apply_alloc(s, &c, res);
            break;
        default:
            CC_UNREACHABLE();
        }
    }
    if (rv != 0) {
        uint8_t type =
            rv == IDSEG_EMALFORMED || rv == IDSEG_EMACHINE || rv == IDSEG_EFORMAT ? 0 : c.type;
        memset(res, 0, sizeof *res);
        res->type = type;
    }
    res->err = rv;
    return rv;
}

/* ==== canonical image ==================================================== */

static void w_entry(struct wr *w, const struct entry *e)
{
    put_u8(w, e->tag_len);
    put_raw(w, e->tag, e->tag_len);
    put_u64(w, (uint64_t)e->max_id);
    put_u64(w, (uint64_t)e->step);
    put_u64(w, (uint64_t)e->created_ms);
    put_u64(w, (uint64_t)e->updated_ms);
    put_u64(w, e->n_allocs);
}

static void w_image(struct wr *w, const struct idseg *s)
{
    put_raw(w, (const uint8_t *)SNAP_MAGIC, 4);
    put_u8(w, SNAP_VERSION);
    put_u32(w, s->n_tags);
    for (uint32_t i = 0; i < s->n_tags; i++) {
        w_entry(w, &s->tags[i]);
    }
}

uint64_t idseg_digest(const struct idseg *s)
{
    CC_ASSERT(s != NULL);
    uint64_t h = HASH_FNV_INIT;
    uint8_t b[8];
    le_put_u32(b, s->n_tags);
    h = hash_fnv1a64(h, b, 4);
    for (uint32_t i = 0; i < s->n_tags; i++) {
        const struct entry *e = &s->tags[i];
        uint8_t buf[1 + IDSEG_TAG_BYTES_MAX + 40];
        struct wr w = {buf, 0};
        w_entry(&w, e);
        h = hash_fnv1a64(h, buf, w.n);
    }
    return h;
}

int idseg_snapshot_encode(const struct idseg *s, uint8_t **buf, size_t *n)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(buf != NULL);
    CC_ASSERT(n != NULL);
    struct wr w = {NULL, 0};
    w_image(&w, s);
    size_t size = w.n + 4;
    uint8_t *p = malloc(size);
    if (p == NULL) {
        return IDSEG_ENOMEM;
    }
    w = (struct wr){p, 0};
    w_image(&w, s);
    CC_ASSERT(w.n + 4 == size);
    le_put_u32(p + w.n, crc32c(0, p, w.n));
    *buf = p;
    *n = size;
    return 0;
}

int idseg_snapshot_decode(const uint8_t *buf, size_t n, struct idseg **out)
{
    CC_ASSERT(out != NULL);
    *out = NULL;
    if (buf == NULL || n < SNAP_HEADER_BYTES + 4 || memcmp(buf, SNAP_MAGIC, 4) != 0 ||
        crc32c(0, buf, n - 4) != le_get_u32(buf + n - 4)) {
        return IDSEG_ECORRUPT;
    }
    if (buf[4] != SNAP_VERSION) {
        return IDSEG_EFORMAT;
    }
    uint32_t n_tags = le_get_u32(buf + 5);
    struct le_reader r = {buf, n - 4, SNAP_HEADER_BYTES};
    /* Refuse counts the bytes cannot hold before allocating for them. */
    if (n_tags > IDSEG_TAGS_MAX || n_tags > (r.n - r.off) / SNAP_ENTRY_MIN) {
        return IDSEG_ECORRUPT;
    }
    struct idseg *s;
    int rv = idseg_new(&s);
    if (rv != 0) {
        return rv;
    }
    if (n_tags > 0) {
        s->tags = calloc(n_tags, sizeof(struct entry));
        if (s->tags == NULL) {
            idseg_free(s);
            return IDSEG_ENOMEM;
        }
        s->cap = n_tags;
    }
    for (uint32_t i = 0; i < n_tags; i++) {
        struct entry *e = &s->tags[i];
        uint64_t n_allocs;
        if (!get_u8(&r, &e->tag_len) || e->tag_len == 0 || e->tag_len > IDSEG_TAG_BYTES_MAX ||
            r.n - r.off < e->tag_len) {
            goto err_corrupt;
        }
        memcpy(e->tag, buf + r.off, e->tag_len);
        r.off += e->tag_len;
        if (!get_i64(&r, &e->max_id) || !get_i64(&r, &e->step) || !get_i64(&r, &e->created_ms) ||
            !get_i64(&r, &e->updated_ms) || !le_read(&r, 8, &n_allocs)) {
            goto err_corrupt;
        }
        e->n_allocs = n_allocs;
        if (check_tag(e->tag, e->tag_len) != 0 || e->max_id < IDSEG_INITIAL_MIN ||
            !step_ok(e->step) || e->created_ms < 0 || e->updated_ms < 0) {
            goto err_corrupt;
        }
        if (i > 0 && tag_cmp(s->tags[i - 1].tag, s->tags[i - 1].tag_len, e->tag, e->tag_len) >= 0) {
            goto err_corrupt;
        }
        s->n_tags = i + 1;
    }
    if (r.off != r.n) {
        goto err_corrupt;
    }
    *out = s;
    return 0;

err_corrupt:
    idseg_free(s);
    return IDSEG_ECORRUPT;
}

/* ==== errors ============================================================= */

const char *idseg_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case IDSEG_EINVAL:
        return "invalid argument";
    case IDSEG_ENOMEM:
        return "out of memory";
    case IDSEG_EMALFORMED:
        return "malformed idseg command or result";
    case IDSEG_EMACHINE:
        return "command is not for the idseg state machine (byte 0 is not 0x13)";
    case IDSEG_EFORMAT:
        return "unsupported idseg format version";
    case IDSEG_ETAGEMPTY:
        return "tag is empty";
    case IDSEG_ETAGTOOBIG:
        return "tag exceeds IDSEG_TAG_BYTES_MAX";
    case IDSEG_ETAGCHAR:
        return "tag may only contain A-Z a-z 0-9 . _ : -";
    case IDSEG_ETOOMANY:
        return "IDSEG_TAGS_MAX tags exist";
    case IDSEG_ESTEP:
        return "step outside [IDSEG_STEP_MIN, IDSEG_STEP_MAX]";
    case IDSEG_ECOUNT:
        return "count outside [0, IDSEG_COUNT_MAX]";
    case IDSEG_EINITIAL:
        return "initial value or max_id below IDSEG_INITIAL_MIN";
    case IDSEG_EEXISTS:
        return "tag already exists";
    case IDSEG_ENOTFOUND:
        return "tag not found";
    case IDSEG_EEXHAUSTED:
        return "tag's id space is exhausted (max_id would pass INT64_MAX)";
    case IDSEG_EBACKWARD:
        return "max_id may only grow";
    case IDSEG_ECORRUPT:
        return "idseg snapshot or result is corrupt";
    default:
        return "unknown idseg error";
    }
}
