/* msgcodec.c -- encode and decode Raft peer messages and the frames around them (the
 * layout is documented in msgcodec.h; keep the two in step).
 *
 * Invariants:
 *   - The decoder reads only through struct msgcodec__rd, whose every read first checks
 *     the bytes left; a count from the wire is compared with its limit before it is
 *     used for anything (indexing scratch, slicing buf).
 *   - Encoder and decoder apply one set of form rules (msgcodec__check_*), so whatever
 *     we encode a peer will accept, and whatever we accept re-encodes to the same bytes.
 *   - Nothing here allocates, does IO or keeps state between calls.
 *
 * Sections: errors | cursors | form rules | size | encode | decode | equality | frames.
 */
#include "node/msgcodec.h"

#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/le.h"

/* ---- errors ----------------------------------------------------------------------- */

const char *msgcodec_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case MSGCODEC_ETRUNCATED:
        return "message truncated";
    case MSGCODEC_ETRAILING:
        return "trailing bytes after the message";
    case MSGCODEC_ETYPE:
        return "unknown message type";
    case MSGCODEC_ETOOMANY:
        return "more entries than RAFT_APPEND_ENTRIES_MAX";
    case MSGCODEC_ETOOBIG:
        return "entry larger than RAFT_ENTRY_BYTES_MAX or chunk larger than "
               "MSGCODEC_CHUNK_BYTES_MAX";
    case MSGCODEC_EENTRYTYPE:
        return "unknown entry type";
    case MSGCODEC_ECONFIG:
        return "invalid configuration in snapshot";
    case MSGCODEC_EBOOL:
        return "boolean field neither 0 nor 1";
    case MSGCODEC_ENOSPC:
        return "encode buffer too small";
    case MSGCODEC_EINVAL:
        return "invalid message (NULL data with a nonzero length)";
    case MSGCODEC_EMAGIC:
        return "bad frame magic";
    case MSGCODEC_EVERSION:
        return "unsupported frame version";
    case MSGCODEC_EKIND:
        return "unknown frame kind";
    case MSGCODEC_ERESERVED:
        return "nonzero reserved frame field";
    case MSGCODEC_EFRAMETOOBIG:
        return "frame payload longer than MSGCODEC_PAYLOAD_BYTES_MAX";
    case MSGCODEC_ECRC:
        return "frame payload CRC mismatch";
    case MSGCODEC_EHELLO:
        return "HELLO with sender id 0";
    default:
        return "unknown msgcodec error";
    }
}

/* ---- cursors ------------------------------------------------------------------------ */

struct msgcodec__rd {
    const uint8_t *p;
    size_t left;
};

static bool msgcodec__rd_u8(struct msgcodec__rd *r, uint8_t *v)
{
    if (r->left < 1) {
        return false;
    }
    *v = r->p[0];
    r->p += 1;
    r->left -= 1;
    return true;
}

static bool msgcodec__rd_u32(struct msgcodec__rd *r, uint32_t *v)
{
    if (r->left < 4) {
        return false;
    }
    *v = le_get_u32(r->p);
    r->p += 4;
    r->left -= 4;
    return true;
}

static bool msgcodec__rd_u64(struct msgcodec__rd *r, uint64_t *v)
{
    if (r->left < 8) {
        return false;
    }
    *v = le_get_u64(r->p);
    r->p += 8;
    r->left -= 8;
    return true;
}

/* Takes n bytes as a view into the input; NULL view for n == 0. */
static bool msgcodec__rd_bytes(struct msgcodec__rd *r, size_t n, const uint8_t **v)
{
    if (r->left < n) {
        return false;
    }
    *v = n > 0 ? r->p : NULL;
    r->p += n;
    r->left -= n;
    return true;
}

/* Booleans: truncation and a non-canonical byte are different errors. */
static int msgcodec__rd_bool(struct msgcodec__rd *r, bool *v)
{
    uint8_t b;
    if (!msgcodec__rd_u8(r, &b)) {
        return MSGCODEC_ETRUNCATED;
    }
    if (b > 1) {
        return MSGCODEC_EBOOL;
    }
    *v = b == 1;
    return 0;
}

/* The writer never checks space: callers size the buffer with msgcodec_payload_size()
 * first, and the assert catches a mismatch between the two. */
struct msgcodec__wr {
    uint8_t *p;
    uint8_t *end;
};

static void msgcodec__wr_u8(struct msgcodec__wr *w, uint8_t v)
{
    CC_ASSERT(w->end - w->p >= 1);
    w->p[0] = v;
    w->p += 1;
}

static void msgcodec__wr_u32(struct msgcodec__wr *w, uint32_t v)
{
    CC_ASSERT(w->end - w->p >= 4);
    le_put_u32(w->p, v);
    w->p += 4;
}

static void msgcodec__wr_u64(struct msgcodec__wr *w, uint64_t v)
{
    CC_ASSERT(w->end - w->p >= 8);
    le_put_u64(w->p, v);
    w->p += 8;
}

static void msgcodec__wr_bytes(struct msgcodec__wr *w, const uint8_t *b, size_t n)
{
    CC_ASSERT((size_t)(w->end - w->p) >= n);
    if (n > 0) {
        memcpy(w->p, b, n);
        w->p += n;
    }
}

/* ---- form rules (shared by encode and decode) -------------------------------------- */

static int msgcodec__check_type(uint8_t type)
{
    return type >= 1 && type <= RAFT_MSG_TYPE_MAX ? 0 : MSGCODEC_ETYPE;
}

static int msgcodec__check_entry(const struct raft_entry *e)
{
    if (e->type < RAFT_ENTRY_COMMAND || e->type > RAFT_ENTRY_CONFIG) {
        return MSGCODEC_EENTRYTYPE;
    }
    if (e->n_bytes > RAFT_ENTRY_BYTES_MAX) {
        return MSGCODEC_ETOOBIG;
    }
    return 0;
}

/* ---- size --------------------------------------------------------------------------- */

static uint64_t msgcodec__config_size(const struct raft_config *c)
{
    return 4 + (uint64_t)c->n_servers * 5;
}

uint64_t msgcodec_payload_size(const struct raft_msg *m)
{
    CC_ASSERT(m != NULL);
    uint64_t n = MSGCODEC_HEAD_BYTES;
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        return n + 17;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        return n + 1;
    case RAFT_MSG_APPEND:
        n = MSGCODEC_APPEND_FIXED_BYTES;
        for (uint32_t i = 0; i < m->append.n_entries; i++) {
            n += MSGCODEC_ENTRY_FIXED_BYTES + (uint64_t)m->append.entries[i].n_bytes;
        }
        return n;
    case RAFT_MSG_APPEND_RESP:
        return n + 25;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        return n + 16;
    case RAFT_MSG_SNAPSHOT:
        return MSGCODEC_SNAPSHOT_FIXED_BYTES + msgcodec__config_size(&m->snapshot.config) +
               m->snapshot.n_bytes;
    case RAFT_MSG_SNAPSHOT_RESP:
        return n + 17;
    case RAFT_MSG_TIMEOUT_NOW:
        return n;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        return n + 20;
    default:
        return n; /* unknown type: encode refuses it, so any answer is fine */
    }
}

uint32_t msgcodec_append_fit(const struct raft_msg *m, uint64_t cap)
{
    CC_ASSERT(m != NULL);
    CC_ASSERT(m->type == RAFT_MSG_APPEND);
    uint64_t n = MSGCODEC_APPEND_FIXED_BYTES;
    if (n > cap) {
        return 0;
    }
    uint32_t k = 0;
    while (k < m->append.n_entries) {
        n += MSGCODEC_ENTRY_FIXED_BYTES + (uint64_t)m->append.entries[k].n_bytes;
        if (n > cap) {
            break;
        }
        k++;
    }
    return k;
}

/* ---- encode ------------------------------------------------------------------------- */

/* Everything the decoder would refuse, plus NULL data behind nonzero lengths. */
int msgcodec_check(const struct raft_msg *m)
{
    int rv = msgcodec__check_type(m->type);
    if (rv != 0) {
        return rv;
    }
    if (m->type == RAFT_MSG_APPEND) {
        const struct raft_msg_append *a = &m->append;
        if (a->n_entries > RAFT_APPEND_ENTRIES_MAX) {
            return MSGCODEC_ETOOMANY;
        }
        if (a->n_entries > 0 && a->entries == NULL) {
            return MSGCODEC_EINVAL;
        }
        for (uint32_t i = 0; i < a->n_entries; i++) {
            rv = msgcodec__check_entry(&a->entries[i]);
            if (rv != 0) {
                return rv;
            }
            if (a->entries[i].n_bytes > 0 && a->entries[i].bytes == NULL) {
                return MSGCODEC_EINVAL;
            }
        }
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        const struct raft_msg_snapshot *s = &m->snapshot;
        /* raft_config_encode() holds the config rules (ids, roles, duplicates) */
        uint8_t tmp[RAFT_CONFIG_BYTES_MAX];
        size_t n_tmp;
        if (raft_config_encode(&s->config, tmp, sizeof(tmp), &n_tmp) != 0) {
            return MSGCODEC_ECONFIG;
        }
        if (s->n_bytes > MSGCODEC_CHUNK_BYTES_MAX) {
            return MSGCODEC_ETOOBIG;
        }
        if (s->n_bytes > 0 && s->bytes == NULL) {
            return MSGCODEC_EINVAL;
        }
    }
    return 0;
}

static void msgcodec__encode_body(const struct raft_msg *m, struct msgcodec__wr *w)
{
    msgcodec__wr_u8(w, m->type);
    msgcodec__wr_u32(w, m->from);
    msgcodec__wr_u32(w, m->to);
    msgcodec__wr_u64(w, m->term);
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        msgcodec__wr_u64(w, m->vote.last_log_index);
        msgcodec__wr_u64(w, m->vote.last_log_term);
        msgcodec__wr_u8(w, m->vote.transfer ? 1 : 0);
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        msgcodec__wr_u8(w, m->vote_resp.granted ? 1 : 0);
        break;
    case RAFT_MSG_APPEND:
        msgcodec__wr_u64(w, m->append.prev_index);
        msgcodec__wr_u64(w, m->append.prev_term);
        msgcodec__wr_u64(w, m->append.commit);
        msgcodec__wr_u32(w, m->append.n_entries);
        for (uint32_t i = 0; i < m->append.n_entries; i++) {
            const struct raft_entry *e = &m->append.entries[i];
            msgcodec__wr_u64(w, e->term);
            msgcodec__wr_u64(w, e->index);
            msgcodec__wr_u8(w, e->type);
            msgcodec__wr_u32(w, e->n_bytes);
            msgcodec__wr_bytes(w, e->bytes, e->n_bytes);
        }
        break;
    case RAFT_MSG_APPEND_RESP:
        msgcodec__wr_u8(w, m->append_resp.reject ? 1 : 0);
        msgcodec__wr_u64(w, m->append_resp.index);
        msgcodec__wr_u64(w, m->append_resp.hint_index);
        msgcodec__wr_u64(w, m->append_resp.hint_term);
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        msgcodec__wr_u64(w, m->heartbeat.commit);
        msgcodec__wr_u64(w, m->heartbeat.round);
        break;
    case RAFT_MSG_SNAPSHOT: {
        msgcodec__wr_u64(w, m->snapshot.index);
        msgcodec__wr_u64(w, m->snapshot.term);
        size_t n_config = 0;
        const int rv =
            raft_config_encode(&m->snapshot.config, w->p, (size_t)(w->end - w->p), &n_config);
        CC_ASSERT(rv == 0); /* checked valid, and sized by msgcodec_payload_size() */
        w->p += n_config;
        msgcodec__wr_u64(w, m->snapshot.n_total);
        msgcodec__wr_u64(w, m->snapshot.offset);
        msgcodec__wr_u32(w, m->snapshot.n_bytes);
        msgcodec__wr_bytes(w, m->snapshot.bytes, m->snapshot.n_bytes);
        break;
    }
    case RAFT_MSG_SNAPSHOT_RESP:
        msgcodec__wr_u64(w, m->snapshot_resp.index);
        msgcodec__wr_u64(w, m->snapshot_resp.offset);
        msgcodec__wr_u8(w, m->snapshot_resp.done ? 1 : 0);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        msgcodec__wr_u64(w, m->read.read_id);
        msgcodec__wr_u64(w, m->read.index);
        msgcodec__wr_u32(w, (uint32_t)m->read.status);
        break;
    default:
        CC_UNREACHABLE();
    }
}

int msgcodec_encode(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *n_out)
{
    CC_ASSERT(m != NULL);
    CC_ASSERT(buf != NULL || cap == 0);
    CC_ASSERT(n_out != NULL);
    int rv = msgcodec_check(m);
    if (rv != 0) {
        goto err;
    }
    const uint64_t n = msgcodec_payload_size(m);
    if (n > cap) {
        rv = MSGCODEC_ENOSPC;
        goto err;
    }
    struct msgcodec__wr w = {buf, buf + n};
    msgcodec__encode_body(m, &w);
    CC_ASSERT(w.p == w.end);
    *n_out = (size_t)n;
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

/* ---- decode ------------------------------------------------------------------------- */

/* Reads one field or leaves with ETRUNCATED. */
#define MSGCODEC__GET(call)           \
    do {                              \
        if (!(call)) {                \
            rv = MSGCODEC_ETRUNCATED; \
            goto err;                 \
        }                             \
    } while (0)

#define MSGCODEC__TRY(call) \
    do {                    \
        rv = (call);        \
        if (rv != 0) {      \
            goto err;       \
        }                   \
    } while (0)

static int msgcodec__decode_append(struct msgcodec__rd *r, struct raft_msg *m,
                                   struct msgcodec_scratch *scratch)
{
    int rv;
    struct raft_msg_append *a = &m->append;
    MSGCODEC__GET(msgcodec__rd_u64(r, &a->prev_index));
    MSGCODEC__GET(msgcodec__rd_u64(r, &a->prev_term));
    MSGCODEC__GET(msgcodec__rd_u64(r, &a->commit));
    MSGCODEC__GET(msgcodec__rd_u32(r, &a->n_entries));
    if (a->n_entries > RAFT_APPEND_ENTRIES_MAX) {
        rv = MSGCODEC_ETOOMANY;
        goto err;
    }
    a->entries = a->n_entries > 0 ? scratch->entries : NULL;
    for (uint32_t i = 0; i < a->n_entries; i++) {
        struct raft_entry *e = &scratch->entries[i];
        MSGCODEC__GET(msgcodec__rd_u64(r, &e->term));
        MSGCODEC__GET(msgcodec__rd_u64(r, &e->index));
        MSGCODEC__GET(msgcodec__rd_u8(r, &e->type));
        MSGCODEC__GET(msgcodec__rd_u32(r, &e->n_bytes));
        MSGCODEC__TRY(msgcodec__check_entry(e));
        const uint8_t *bytes;
        MSGCODEC__GET(msgcodec__rd_bytes(r, e->n_bytes, &bytes));
        /* the view is read-only in spirit: struct raft_entry has no const pointer */
        e->bytes = (uint8_t *)(uintptr_t)bytes;
    }
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

static int msgcodec__decode_snapshot(struct msgcodec__rd *r, struct raft_msg *m)
{
    int rv;
    struct raft_msg_snapshot *s = &m->snapshot;
    MSGCODEC__GET(msgcodec__rd_u64(r, &s->index));
    MSGCODEC__GET(msgcodec__rd_u64(r, &s->term));
    uint32_t n_servers;
    const uint8_t *config = r->p;
    MSGCODEC__GET(msgcodec__rd_u32(r, &n_servers));
    if (n_servers > RAFT_SERVERS_MAX) {
        rv = MSGCODEC_ECONFIG;
        goto err;
    }
    const uint8_t *servers;
    MSGCODEC__GET(msgcodec__rd_bytes(r, (size_t)n_servers * 5, &servers));
    (void)servers;
    if (raft_config_decode(&s->config, config, 4 + (size_t)n_servers * 5) != 0) {
        rv = MSGCODEC_ECONFIG;
        goto err;
    }
    MSGCODEC__GET(msgcodec__rd_u64(r, &s->n_total));
    MSGCODEC__GET(msgcodec__rd_u64(r, &s->offset));
    MSGCODEC__GET(msgcodec__rd_u32(r, &s->n_bytes));
    if (s->n_bytes > MSGCODEC_CHUNK_BYTES_MAX) {
        rv = MSGCODEC_ETOOBIG;
        goto err;
    }
    const uint8_t *bytes;
    MSGCODEC__GET(msgcodec__rd_bytes(r, s->n_bytes, &bytes));
    s->bytes = (uint8_t *)(uintptr_t)bytes;
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int msgcodec_decode(const uint8_t *buf, size_t n, struct raft_msg *m,
                    struct msgcodec_scratch *scratch)
{
    CC_ASSERT(buf != NULL || n == 0);
    CC_ASSERT(m != NULL);
    CC_ASSERT(scratch != NULL);
    int rv;
    struct msgcodec__rd r = {buf, n};
    memset(m, 0, sizeof(*m));
    MSGCODEC__GET(msgcodec__rd_u8(&r, &m->type));
    MSGCODEC__TRY(msgcodec__check_type(m->type));
    MSGCODEC__GET(msgcodec__rd_u32(&r, &m->from));
    MSGCODEC__GET(msgcodec__rd_u32(&r, &m->to));
    MSGCODEC__GET(msgcodec__rd_u64(&r, &m->term));
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->vote.last_log_index));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->vote.last_log_term));
        MSGCODEC__TRY(msgcodec__rd_bool(&r, &m->vote.transfer));
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        MSGCODEC__TRY(msgcodec__rd_bool(&r, &m->vote_resp.granted));
        break;
    case RAFT_MSG_APPEND:
        MSGCODEC__TRY(msgcodec__decode_append(&r, m, scratch));
        break;
    case RAFT_MSG_APPEND_RESP:
        MSGCODEC__TRY(msgcodec__rd_bool(&r, &m->append_resp.reject));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->append_resp.index));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->append_resp.hint_index));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->append_resp.hint_term));
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->heartbeat.commit));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->heartbeat.round));
        break;
    case RAFT_MSG_SNAPSHOT:
        MSGCODEC__TRY(msgcodec__decode_snapshot(&r, m));
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->snapshot_resp.index));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->snapshot_resp.offset));
        MSGCODEC__TRY(msgcodec__rd_bool(&r, &m->snapshot_resp.done));
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP: {
        uint32_t status;
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->read.read_id));
        MSGCODEC__GET(msgcodec__rd_u64(&r, &m->read.index));
        MSGCODEC__GET(msgcodec__rd_u32(&r, &status));
        m->read.status = (int32_t)status;
        break;
    }
    default:
        CC_UNREACHABLE(); /* msgcodec__check_type() passed */
    }
    if (r.left != 0) {
        rv = MSGCODEC_ETRAILING;
        goto err;
    }
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

/* ---- equality ----------------------------------------------------------------------- */

static bool msgcodec__bytes_equal(const uint8_t *a, const uint8_t *b, uint64_t n)
{
    return n == 0 || memcmp(a, b, (size_t)n) == 0;
}

static bool msgcodec__config_equal(const struct raft_config *a, const struct raft_config *b)
{
    if (a->n_servers != b->n_servers) {
        return false;
    }
    if (a->n_servers > RAFT_SERVERS_MAX) {
        return true; /* invalid alike; nothing safe to compare beyond the count */
    }
    for (uint32_t i = 0; i < a->n_servers; i++) {
        if (a->servers[i].id != b->servers[i].id || a->servers[i].role != b->servers[i].role) {
            return false;
        }
    }
    return true;
}

bool msgcodec_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    CC_ASSERT(a != NULL);
    CC_ASSERT(b != NULL);
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term) {
        return false;
    }
    switch (a->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        return a->vote.last_log_index == b->vote.last_log_index &&
               a->vote.last_log_term == b->vote.last_log_term &&
               a->vote.transfer == b->vote.transfer;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        return a->vote_resp.granted == b->vote_resp.granted;
    case RAFT_MSG_APPEND:
        if (a->append.prev_index != b->append.prev_index ||
            a->append.prev_term != b->append.prev_term || a->append.commit != b->append.commit ||
            a->append.n_entries != b->append.n_entries) {
            return false;
        }
        for (uint32_t i = 0; i < a->append.n_entries; i++) {
            const struct raft_entry *x = &a->append.entries[i];
            const struct raft_entry *y = &b->append.entries[i];
            if (x->term != y->term || x->index != y->index || x->type != y->type ||
                x->n_bytes != y->n_bytes ||
                !msgcodec__bytes_equal(x->bytes, y->bytes, x->n_bytes)) {
                return false;
            }
        }
        return true;
    case RAFT_MSG_APPEND_RESP:
        return a->append_resp.reject == b->append_resp.reject &&
               a->append_resp.index == b->append_resp.index &&
               a->append_resp.hint_index == b->append_resp.hint_index &&
               a->append_resp.hint_term == b->append_resp.hint_term;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        return a->heartbeat.commit == b->heartbeat.commit &&
               a->heartbeat.round == b->heartbeat.round;
    case RAFT_MSG_SNAPSHOT:
        return a->snapshot.index == b->snapshot.index && a->snapshot.term == b->snapshot.term &&
               msgcodec__config_equal(&a->snapshot.config, &b->snapshot.config) &&
               a->snapshot.n_total == b->snapshot.n_total &&
               a->snapshot.offset == b->snapshot.offset &&
               a->snapshot.n_bytes == b->snapshot.n_bytes &&
               msgcodec__bytes_equal(a->snapshot.bytes, b->snapshot.bytes, a->snapshot.n_bytes);
    case RAFT_MSG_SNAPSHOT_RESP:
        return a->snapshot_resp.index == b->snapshot_resp.index &&
               a->snapshot_resp.offset == b->snapshot_resp.offset &&
               a->snapshot_resp.done == b->snapshot_resp.done;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        return a->read.read_id == b->read.read_id && a->read.index == b->read.index &&
               a->read.status == b->read.status;
    default:
        return true; /* TIMEOUT_NOW and unknown types: the head is everything */
    }
}

/* ---- frames ------------------------------------------------------------------------- */

void msgcodec_header_encode(uint8_t *out, uint8_t kind, const uint8_t *payload,
                            uint32_t payload_len)
{
    CC_ASSERT(out != NULL);
    CC_ASSERT(payload != NULL || payload_len == 0);
    CC_ASSERT(payload_len <= MSGCODEC_PAYLOAD_BYTES_MAX);
    le_put_u32(out, MSGCODEC_MAGIC);
    out[4] = MSGCODEC_VERSION;
    out[5] = kind;
    out[6] = 0;
    out[7] = 0;
    le_put_u32(out + 8, payload_len);
    le_put_u32(out + 12, crc32c(0, payload, payload_len));
}

int msgcodec_header_decode(const uint8_t *buf, struct msgcodec_header *h)
{
    CC_ASSERT(buf != NULL);
    CC_ASSERT(h != NULL);
    int rv;
    if (le_get_u32(buf) != MSGCODEC_MAGIC) {
        rv = MSGCODEC_EMAGIC;
        goto err;
    }
    h->version = buf[4];
    h->kind = buf[5];
    h->payload_len = le_get_u32(buf + 8);
    h->crc = le_get_u32(buf + 12);
    if (h->version != MSGCODEC_VERSION) {
        rv = MSGCODEC_EVERSION;
        goto err;
    }
    if (h->kind != MSGCODEC_KIND_HELLO && h->kind != MSGCODEC_KIND_RAFT) {
        rv = MSGCODEC_EKIND;
        goto err;
    }
    if (buf[6] != 0 || buf[7] != 0) {
        rv = MSGCODEC_ERESERVED;
        goto err;
    }
    if (h->payload_len > MSGCODEC_PAYLOAD_BYTES_MAX) {
        rv = MSGCODEC_EFRAMETOOBIG;
        goto err;
    }
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int msgcodec_payload_check(const struct msgcodec_header *h, const uint8_t *payload)
{
    CC_ASSERT(h != NULL);
    CC_ASSERT(payload != NULL || h->payload_len == 0);
    return crc32c(0, payload, h->payload_len) == h->crc ? 0 : MSGCODEC_ECRC;
}

int msgcodec_frame_encode_raft(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *n_out)
{
    CC_ASSERT(m != NULL);
    CC_ASSERT(n_out != NULL);
    int rv;
    if (cap < MSGCODEC_HEADER_BYTES) {
        rv = MSGCODEC_ENOSPC;
        goto err;
    }
    /* sized before encoding, so an oversize APPEND costs no copying */
    rv = msgcodec_check(m);
    if (rv != 0) {
        goto err;
    }
    if (msgcodec_payload_size(m) > MSGCODEC_PAYLOAD_BYTES_MAX) {
        rv = MSGCODEC_EFRAMETOOBIG;
        goto err;
    }
    size_t n = 0;
    rv = msgcodec_encode(m, buf + MSGCODEC_HEADER_BYTES, cap - MSGCODEC_HEADER_BYTES, &n);
    if (rv != 0) {
        goto err;
    }
    msgcodec_header_encode(buf, MSGCODEC_KIND_RAFT, buf + MSGCODEC_HEADER_BYTES, (uint32_t)n);
    *n_out = MSGCODEC_HEADER_BYTES + n;
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int msgcodec_frame_encode_hello(const struct msgcodec_hello *h, uint8_t *buf, size_t cap,
                                size_t *n_out)
{
    CC_ASSERT(h != NULL);
    CC_ASSERT(n_out != NULL);
    int rv;
    if (h->id == 0) {
        rv = MSGCODEC_EHELLO;
        goto err;
    }
    if (cap < MSGCODEC_HEADER_BYTES + MSGCODEC_HELLO_BYTES) {
        rv = MSGCODEC_ENOSPC;
        goto err;
    }
    uint8_t *p = buf + MSGCODEC_HEADER_BYTES;
    le_put_u32(p, h->id);
    le_put_u64(p + 4, h->cluster_id);
    msgcodec_header_encode(buf, MSGCODEC_KIND_HELLO, p, MSGCODEC_HELLO_BYTES);
    *n_out = MSGCODEC_HEADER_BYTES + MSGCODEC_HELLO_BYTES;
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}

int msgcodec_hello_decode(const uint8_t *payload, size_t n, struct msgcodec_hello *h)
{
    CC_ASSERT(payload != NULL || n == 0);
    CC_ASSERT(h != NULL);
    if (n < MSGCODEC_HELLO_BYTES) {
        return MSGCODEC_ETRUNCATED;
    }
    if (n > MSGCODEC_HELLO_BYTES) {
        return MSGCODEC_ETRAILING;
    }
    h->id = le_get_u32(payload);
    h->cluster_id = le_get_u64(payload + 4);
    return h->id != 0 ? 0 : MSGCODEC_EHELLO;
}

int msgcodec_frame_decode(const uint8_t *buf, size_t n, struct msgcodec_frame *f,
                          struct msgcodec_scratch *scratch)
{
    CC_ASSERT(buf != NULL || n == 0);
    CC_ASSERT(f != NULL);
    CC_ASSERT(scratch != NULL);
    int rv;
    struct msgcodec_header h;
    memset(f, 0, sizeof(*f));
    if (n < MSGCODEC_HEADER_BYTES) {
        rv = MSGCODEC_ETRUNCATED;
        goto err;
    }
    MSGCODEC__TRY(msgcodec_header_decode(buf, &h));
    if (n - MSGCODEC_HEADER_BYTES < h.payload_len) {
        rv = MSGCODEC_ETRUNCATED;
        goto err;
    }
    if (n - MSGCODEC_HEADER_BYTES > h.payload_len) {
        rv = MSGCODEC_ETRAILING;
        goto err;
    }
    const uint8_t *payload = buf + MSGCODEC_HEADER_BYTES;
    MSGCODEC__TRY(msgcodec_payload_check(&h, payload));
    f->kind = h.kind;
    if (h.kind == MSGCODEC_KIND_HELLO) {
        MSGCODEC__TRY(msgcodec_hello_decode(payload, h.payload_len, &f->hello));
    } else {
        MSGCODEC__TRY(msgcodec_decode(payload, h.payload_len, &f->msg, scratch));
    }
    return 0;
err:
    CC_ASSERT(rv != 0);
    return rv;
}
