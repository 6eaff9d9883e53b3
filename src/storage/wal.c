/* wal.c -- the segmented write-ahead log: writing, syncing, rolling, compaction and
 * recovery (the record codec is in wal_record.c; wal.h has the contract).
 *
 * Invariants (checked where cheap, always relied on):
 *   - w->st is exactly the log that replaying every record written so far yields: its
 *     last index, the term of every entry (as runs of equal terms), the hard state and
 *     the newest snapshot marker. A failed write restores it from w->saved, so memory
 *     never runs ahead of the file.
 *   - The last segment's bytes [0, file_off) are whole records; nothing valid lies
 *     beyond file_off (preallocated zeros, or the file ends there). A failed write is cut
 *     back to file_off before the call returns.
 *   - Every sync point leaves the last segment ending in a SEAL record: wal_sync() writes
 *     one before fdatasync, and a new segment is created with [HARD_STATE] SEAL. So
 *     every acknowledged record has a valid record after it or lies in a non-last
 *     segment, and recovery can tell a torn tail (nothing valid after the bad bytes)
 *     from corruption (something valid after them) without losing acknowledged data.
 *   - Before a new segment is created the old one is cut to file_off and synced, and the
 *     new one is synced with its directory before any record goes into it. Hence every
 *     segment but the last decodes to its exact end, and segment seqs have no gaps.
 *   - The spare (WAL_SPARE_NAME) is never part of the log. It holds zeros only, [0,
 *     spare_off) of them synced, until a roll writes a header into it, syncs it and
 *     renames it to the next segment name; wal_open deletes any spare it finds, so a
 *     crash at any point of its preparation leaves nothing recovery has to judge.
 *   - sealed_off == file_off (nonzero) exactly when the last record written is a SEAL
 *     that wal_write_group() put there; wal_sync() then need not write another.
 *   - A failed fdatasync (or a write error other than ENOSPC) poisons the handle: every
 *     later call returns WAL_EFAILED. Nothing is retried.
 *
 * Sections: types | small helpers | log state | recovery replay | scanning |
 * segments and rolling | spare segments | writing | syncing | compaction | open and
 * close | queries | inspection.
 */
#include "storage/wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/le.h"

/* ---- types ------------------------------------------------------------------------ */

#define WAL_INIT_RECORDS_BYTES 64 /* [HARD_STATE] SEAL at the start of a segment */
#define WAL_SEAL_BYTES         (WAL_RECORD_HEADER_BYTES + 1 + 16)
#define WAL_ZEROS_BYTES        (64u << 10) /* one pwrite of a spare's zero fill */

_Static_assert(WAL_PREPARE_STEP_BYTES % WAL_ZEROS_BYTES == 0, "a step is whole zero writes");
_Static_assert(WAL_SEGMENT_BYTES_MIN / 2 > WAL_HEADER_BYTES + WAL_INIT_RECORDS_BYTES,
               "a spare is prepared only after a segment holds records");

_Static_assert(WAL_RECORD_HEADER_BYTES + 1 + 20 + WAL_SEAL_BYTES <= WAL_INIT_RECORDS_BYTES,
               "initial records fit their buffer");

/* Entries [first_index, next first_index) all have term `term`. */
struct wal__run {
    uint64_t first_index;
    uint64_t term;
};

struct wal__state {
    uint64_t last_index; /* base_index when the log holds no entries */
    uint64_t base_index; /* the entry before the first one in runs[] */
    uint64_t base_term;  /* its term; 0 = unknown */
    struct wal__run *runs;
    uint32_t n_runs;
    uint32_t cap_runs;
    struct raft_hard_state hs;
    bool has_hs;
    uint64_t snap_index;
    uint64_t snap_term;
};

struct wal__seg {
    uint64_t seq;
    uint64_t first_index;
};

struct wal {
    struct env *env;
    char dir[ENV_PATH_MAX];
    uint64_t segment_bytes;
    struct wal__seg *segs; /* live segments, oldest first; the last one is being written */
    uint32_t n_segs;
    uint32_t cap_segs;
    struct env_file *file;  /* the last segment; NULL after a failed roll */
    uint64_t file_off;      /* end of its last whole record */
    uint64_t file_size;     /* its size, preallocation included */
    uint64_t file_init_end; /* end of its initial records: below this it holds no data */
    uint64_t sealed_off;    /* file_off right after a SEAL written by a group; 0 = none */
    bool zero_fill;         /* wal_options.zero_fill */
    struct env_file *spare; /* the spare being zero-filled, or ready; NULL = none */
    uint64_t spare_off;     /* zeros written into it (and synced) so far */
    bool spare_ready;       /* spare_off == segment_bytes: a roll may use it */
    bool spare_failed;      /* a preparation failed: no new one before the next roll */
    struct wal__state st;
    struct wal__state saved; /* st before the write in progress */
    bool dirty;              /* records written since the last seal */
    uint64_t durable_index;
    uint64_t durable_term;
    int failed; /* 0, or the fatal error that poisoned the handle */
    uint8_t *buf;
    size_t buf_cap;
    struct wal_stats stats;
};

/* ---- small helpers ---------------------------------------------------------------- */

static void wal__msg(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void wal__msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    /* The analyzer loses va_start when clang-tidy is given several files at once. */
    vsnprintf(msg, cap, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
}

/* Maps an env error (negative errno) to a WAL code. */
static int wal__env_error(int rv)
{
    CC_ASSERT(rv < 0);
    switch (rv) {
    case -ENOSPC:
    case -EDQUOT:
        return WAL_ENOSPC;
    case -ENOMEM:
        return WAL_ENOMEM;
    case -ENOENT:
        return WAL_ENOENT;
    default:
        return WAL_EIO;
    }
}

static int wal__poison(struct wal *w, int rv)
{
    CC_ASSERT(rv != 0);
    if (w->failed == 0) {
        w->failed = rv;
    }
    return rv;
}

static void wal__segment_name(char *buf, uint64_t seq)
{
    snprintf(buf, WAL_NAME_BYTES, "wal-%016" PRIx64 ".log", seq);
}

static int wal__segment_path(char *buf, const char *dir, uint64_t seq)
{
    char name[WAL_NAME_BYTES];
    wal__segment_name(name, seq);
    return env_path_join(buf, ENV_PATH_MAX, dir, name);
}

static int wal__reserve_buf(struct wal *w, size_t n)
{
    if (n <= w->buf_cap) {
        return 0;
    }
    size_t cap = w->buf_cap ? w->buf_cap : 4096;
    while (cap < n) {
        cap *= 2;
    }
    uint8_t *p = realloc(w->buf, cap);
    if (p == NULL) {
        return WAL_ENOMEM;
    }
    w->buf = p;
    w->buf_cap = cap;
    return 0;
}

/* ---- log state -------------------------------------------------------------------- */

static uint64_t wal__st_term_at(const struct wal__state *st, uint64_t index)
{
    if (index == 0 || index > st->last_index || index < st->base_index) {
        return 0;
    }
    if (index == st->base_index) {
        return st->base_term;
    }
    /* Binary search for the last run starting at or before index. */
    uint32_t lo = 0;
    uint32_t hi = st->n_runs;
    CC_ASSERT(hi > 0);
    while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (st->runs[mid].first_index <= index) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    CC_ASSERT(st->runs[lo].first_index <= index);
    return st->runs[lo].term;
}

static uint64_t wal__st_last_term(const struct wal__state *st)
{
    return wal__st_term_at(st, st->last_index);
}

static int wal__st_reserve(struct wal__state *st, uint64_t n)
{
    if (n <= st->cap_runs) {
        return 0;
    }
    if (n > UINT32_MAX / 2) {
        return WAL_ENOMEM;
    }
    uint32_t cap = st->cap_runs ? st->cap_runs : 16;
    while (cap < n) {
        cap *= 2;
    }
    struct wal__run *r = realloc(st->runs, cap * sizeof(r[0]));
    if (r == NULL) {
        return WAL_ENOMEM;
    }
    st->runs = r;
    st->cap_runs = cap;
    return 0;
}

static void wal__st_copy(struct wal__state *dst, const struct wal__state *src)
{
    CC_ASSERT(dst->cap_runs >= src->n_runs);
    struct wal__run *runs = dst->runs;
    const uint32_t cap = dst->cap_runs;
    *dst = *src;
    dst->runs = runs;
    dst->cap_runs = cap;
    if (src->n_runs > 0) {
        memcpy(dst->runs, src->runs, src->n_runs * sizeof(src->runs[0]));
    }
}

/* Drops entries >= from. */
static void wal__st_truncate(struct wal__state *st, uint64_t from)
{
    CC_ASSERT(from >= 1);
    if (from > st->last_index) {
        return;
    }
    if (from <= st->base_index) {
        /* Below every entry we know (Raft never truncates below a snapshot, but the log
         * must stay well defined): the log restarts after from - 1. */
        st->base_index = from - 1;
        st->base_term = from - 1 == st->snap_index ? st->snap_term : 0;
        st->n_runs = 0;
    } else {
        while (st->n_runs > 0 && st->runs[st->n_runs - 1].first_index >= from) {
            st->n_runs--;
        }
    }
    st->last_index = from - 1;
}

/* A snapshot now covers entries <= index: they leave the log. */
static void wal__st_snapshot(struct wal__state *st, uint64_t index, uint64_t term)
{
    st->snap_index = index;
    st->snap_term = term;
    if (index <= st->base_index) {
        return;
    }
    if (index >= st->last_index) {
        st->n_runs = 0;
        st->last_index = index;
    } else {
        uint32_t k = 0; /* first run that still has entries > index */
        while (k + 1 < st->n_runs && st->runs[k + 1].first_index <= index + 1) {
            k++;
        }
        memmove(st->runs, st->runs + k, (st->n_runs - k) * sizeof(st->runs[0]));
        st->n_runs -= k;
        st->runs[0].first_index = index + 1;
    }
    st->base_index = index;
    st->base_term = term;
}

/* Appends one entry; capacity for one more run must be reserved. */
static void wal__st_append(struct wal__state *st, uint64_t index, uint64_t term)
{
    CC_ASSERT(index == st->last_index + 1);
    if (st->n_runs == 0 || st->runs[st->n_runs - 1].term != term) {
        CC_ASSERT(st->n_runs < st->cap_runs);
        st->runs[st->n_runs].first_index = index;
        st->runs[st->n_runs].term = term;
        st->n_runs++;
    }
    st->last_index = index;
}

/* ---- recovery replay -------------------------------------------------------------- */

/* The log as recovery rebuilds it: entries[0..n) hold indexes base_index + 1 ... */
struct wal__replay {
    struct raft_entry *e;
    uint64_t n;
    uint64_t cap;
    uint64_t base_index;
    uint64_t base_term;
    struct raft_hard_state hs;
    bool has_hs;
    uint64_t snap_index;
    uint64_t snap_term;
    uint64_t n_records;
};

static uint64_t wal__rp_last_index(const struct wal__replay *rp)
{
    return rp->base_index + rp->n;
}

static uint64_t wal__rp_last_term(const struct wal__replay *rp)
{
    return rp->n > 0 ? rp->e[rp->n - 1].term : rp->base_term;
}

/* Frees entries [from, n) and keeps [0, from). */
static void wal__rp_drop_from(struct wal__replay *rp, uint64_t from)
{
    for (uint64_t k = from; k < rp->n; k++) {
        free(rp->e[k].bytes);
    }
    if (from < rp->n) {
        rp->n = from;
    }
}

static void wal__rp_free(struct wal__replay *rp)
{
    wal__rp_drop_from(rp, 0);
    free(rp->e);
    memset(rp, 0, sizeof(*rp));
}

/* Applies one record. Returns 0, WAL_ENOMEM, or WAL_ECORRUPT with *why. */
static int wal__rp_apply(struct wal__replay *rp, const struct wal_record *rec, const char **why)
{
    rp->n_records++;
    switch (rec->type) {
    case WAL_REC_ENTRY: {
        if (rec->entry.index != wal__rp_last_index(rp) + 1) {
            *why = "entry index does not follow the log (a gap or an overlap without a "
                   "truncation)";
            return WAL_ECORRUPT;
        }
        const uint64_t prev = wal__rp_last_term(rp);
        if (prev != 0 && rec->entry.term < prev) {
            *why = "entry term lower than the entry before it";
            return WAL_ECORRUPT;
        }
        if (rp->n == rp->cap) {
            const uint64_t cap = rp->cap ? rp->cap * 2 : 64;
            struct raft_entry *e = realloc(rp->e, (size_t)cap * sizeof(e[0]));
            if (e == NULL) {
                return WAL_ENOMEM;
            }
            memset(e + rp->cap, 0, (size_t)(cap - rp->cap) * sizeof(e[0]));
            rp->e = e;
            rp->cap = cap;
        }
        struct raft_entry *e = &rp->e[rp->n];
        e->term = rec->entry.term;
        e->index = rec->entry.index;
        e->type = rec->entry.type;
        e->n_bytes = rec->entry.n_bytes;
        e->bytes = NULL;
        if (e->n_bytes > 0) {
            e->bytes = malloc(e->n_bytes);
            if (e->bytes == NULL) {
                return WAL_ENOMEM;
            }
            memcpy(e->bytes, rec->entry.bytes, e->n_bytes);
        }
        rp->n++;
        return 0;
    }
    case WAL_REC_HARD_STATE:
        rp->hs = rec->hard_state;
        rp->has_hs = true;
        return 0;
    case WAL_REC_TRUNCATE: {
        const uint64_t from = rec->truncate.from_index;
        if (from > wal__rp_last_index(rp)) {
            return 0;
        }
        if (from > rp->base_index) {
            wal__rp_drop_from(rp, from - rp->base_index - 1);
        } else {
            wal__rp_drop_from(rp, 0);
            rp->base_index = from - 1;
            rp->base_term = from - 1 == rp->snap_index ? rp->snap_term : 0;
        }
        return 0;
    }
    case WAL_REC_SNAPSHOT: {
        const uint64_t index = rec->snapshot.index;
        rp->snap_index = index;
        rp->snap_term = rec->snapshot.term;
        if (index < rp->base_index) {
            return 0;
        }
        if (index == rp->base_index) {
            /* The base came from a segment header written before this snapshot: its
             * term may be that of an uncommitted entry the snapshot replaced. */
            rp->base_term = rec->snapshot.term;
            return 0;
        }
        const uint64_t drop = index - rp->base_index < rp->n ? index - rp->base_index : rp->n;
        for (uint64_t k = 0; k < drop; k++) {
            free(rp->e[k].bytes);
        }
        if (drop > 0 && drop < rp->n) {
            memmove(rp->e, rp->e + drop, (size_t)(rp->n - drop) * sizeof(rp->e[0]));
        }
        rp->n -= drop;
        rp->base_index = index;
        rp->base_term = rec->snapshot.term;
        return 0;
    }
    case WAL_REC_SEAL: {
        const uint64_t term = wal__rp_last_term(rp);
        if (rec->seal.last_index != wal__rp_last_index(rp) ||
            (rec->seal.last_term != 0 && term != 0 && rec->seal.last_term != term)) {
            *why = "seal record disagrees with the log before it";
            return WAL_ECORRUPT;
        }
        return 0;
    }
    default:
        CC_UNREACHABLE();
    }
}

/* ---- scanning --------------------------------------------------------------------- */

struct wal__list {
    uint64_t *seqs;
    uint32_t n;
    uint32_t cap;
    int rv;
};

static int wal__list_cb(void *arg, const char *name)
{
    struct wal__list *l = arg;
    uint64_t seq;
    if (!wal_parse_segment_name(name, &seq)) {
        return 0;
    }
    if (l->n == WAL_SEGMENTS_MAX) {
        l->rv = WAL_ETOOMANY;
        return 1;
    }
    if (l->n == l->cap) {
        const uint32_t cap = l->cap ? l->cap * 2 : 16;
        uint64_t *s = realloc(l->seqs, cap * sizeof(s[0]));
        if (s == NULL) {
            l->rv = WAL_ENOMEM;
            return 1;
        }
        l->seqs = s;
        l->cap = cap;
    }
    l->seqs[l->n++] = seq;
    return 0;
}

static int wal__cmp_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a;
    const uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Lists the segment seqs in dir, sorted. */
static int wal__list_segments(struct env *env, const char *dir, struct wal__list *l)
{
    memset(l, 0, sizeof(*l));
    const int rv = env->list_dir(env, dir, l, wal__list_cb);
    if (rv != 0) {
        free(l->seqs);
        l->seqs = NULL;
        return l->rv != 0 ? l->rv : wal__env_error(rv);
    }
    if (l->n > 1) {
        qsort(l->seqs, l->n, sizeof(l->seqs[0]), wal__cmp_u64);
    }
    return 0;
}

/* First offset in [from, n) where a whole valid record starts, or n. Cheap checks first:
 * preallocated zeros are rejected by the length test alone. */
static size_t wal__find_valid(const uint8_t *buf, size_t from, size_t n)
{
    struct wal_record rec;
    size_t consumed;
    for (size_t p = from; p + WAL_RECORD_HEADER_BYTES + 1 <= n; p++) {
        const uint32_t len = le_get_u32(buf + p);
        if (len == 0 || len > WAL_RECORD_LEN_MAX || len > n - p - WAL_RECORD_HEADER_BYTES) {
            continue;
        }
        if (wal_decode_record(buf + p, n - p, &rec, &consumed) == 0) {
            return p;
        }
    }
    return n;
}

/* Bytes from `from` up to and including the last nonzero byte of buf[0..n). */
static uint64_t wal__nonzero_span(const uint8_t *buf, size_t from, size_t n)
{
    size_t end = n;
    while (end > from && buf[end - 1] == 0) {
        end--;
    }
    return end - from;
}

struct wal__scan {
    struct wal_report *rep;
    struct wal__replay rp;
    uint8_t *buf;
    size_t buf_cap;
    bool last_is_seal;  /* the last segment's final record is a SEAL */
    bool last_has_hs;   /* the last segment holds a HARD_STATE record */
    uint64_t used_last; /* end of whole records in the last usable segment */
};

static int wal__read_file(struct env *env, const char *path, struct wal__scan *sc,
                          uint64_t *size_out)
{
    struct env_file *f = NULL;
    int rv = env->open(env, path, ENV_OPEN_READ, &f);
    if (rv != 0) {
        return wal__env_error(rv);
    }
    uint64_t size = 0;
    rv = env->size(env, f, &size);
    if (rv != 0) {
        rv = wal__env_error(rv);
        goto out;
    }
    if (size > WAL_FILE_BYTES_MAX) {
        rv = WAL_ETOOBIG;
        goto out;
    }
    if (size > sc->buf_cap) {
        uint8_t *p = realloc(sc->buf, (size_t)size);
        if (p == NULL) {
            rv = WAL_ENOMEM;
            goto out;
        }
        sc->buf = p;
        sc->buf_cap = (size_t)size;
    }
    rv = env_read_exact(env, f, 0, sc->buf, (size_t)size);
    if (rv != 0) {
        rv = wal__env_error(rv);
        goto out;
    }
    *size_out = size;
out:
    env->close(env, f);
    return rv;
}

static void wal__report_bad(struct wal__scan *sc, uint32_t k, uint64_t off, uint64_t rec_no)
{
    sc->rep->status = WAL_ECORRUPT;
    sc->rep->has_bad = true;
    sc->rep->bad_segment = k;
    sc->rep->bad_offset = off;
    sc->rep->bad_record = rec_no;
}

/* Replays segment k of n. Returns 0 to go on, 1 to stop (rep->status says why, or the
 * segment was a torn creation), or an error. */
static int wal__scan_segment(struct env *env, const char *dir, struct wal__scan *sc, uint32_t k,
                             uint32_t n, char *msg, size_t msg_cap)
{
    struct wal_report *rep = sc->rep;
    struct wal_segment_info *info = &rep->segments[k];
    const bool last = k + 1 == n;
    char path[ENV_PATH_MAX];
    int rv = env_path_join(path, sizeof(path), dir, info->name);
    if (rv != 0) {
        return WAL_EINVAL;
    }
    uint64_t size = 0;
    rv = wal__read_file(env, path, sc, &size);
    if (rv != 0) {
        wal__msg(msg, msg_cap, "%s: cannot read: %s", path, wal_strerror(rv));
        return rv;
    }
    const uint8_t *buf = sc->buf;
    info->file_bytes = size;

    struct wal_segment_header h;
    rv = wal_decode_segment_header(buf, (size_t)size, &h);
    if (rv == WAL_EVERSION) {
        rep->status = WAL_EVERSION;
        wal__msg(msg, msg_cap,
                 "%s: format version %" PRIu32 " is not supported (this build "
                 "reads version %d)",
                 path, h.version, WAL_FORMAT_VERSION);
        return 1;
    }
    if (rv != 0 || h.seq != info->seq) {
        const size_t found = wal__find_valid(buf, 0, (size_t)size);
        if (last && found == size) {
            /* Created but never finished (its creation was not synced): nothing in it
             * was ever acknowledged. */
            rep->torn_tail = true;
            rep->torn_segment_header = true;
            rep->torn_segment = k;
            rep->torn_offset = 0;
            rep->torn_bytes = wal__nonzero_span(buf, 0, (size_t)size);
            return 1;
        }
        wal__report_bad(sc, k, 0, 0);
        wal__msg(msg, msg_cap,
                 "corrupt WAL segment header in %s at offset 0 (%s) and the "
                 "segment %s; refusing to start",
                 path, rv != 0 ? "bad magic or checksum" : "seq does not match the file name",
                 last ? "holds valid records" : "is not the last one");
        return 1;
    }
    info->header_ok = true;
    info->first_index = h.first_index;
    struct wal__replay *rp = &sc->rp;
    if (k == 0) {
        rp->base_index = h.first_index - 1;
        rp->base_term = h.prev_term;
    } else if (h.first_index != wal__rp_last_index(rp) + 1 ||
               (h.prev_term != 0 && wal__rp_last_term(rp) != 0 &&
                h.prev_term != wal__rp_last_term(rp))) {
        wal__report_bad(sc, k, 0, 0);
        wal__msg(msg, msg_cap,
                 "corrupt WAL: segment %s starts at index %" PRIu64 " (term %" PRIu64
                 ") but the log before it ends at index %" PRIu64 " (term %" PRIu64
                 "); refusing to start",
                 path, h.first_index, h.prev_term, wal__rp_last_index(rp), wal__rp_last_term(rp));
        return 1;
    }

    uint64_t off = WAL_HEADER_BYTES;
    uint64_t rec_no = 0;
    const char *why = NULL;
    bool is_seal = false;
    bool has_hs = false;
    while (off < size) {
        struct wal_record rec;
        size_t consumed = 0;
        rv = wal_decode_record_why(buf + off, (size_t)(size - off), &rec, &consumed, &why);
        if (rv != 0) {
            break;
        }
        rec_no++;
        const char *bad = NULL;
        rv = wal__rp_apply(rp, &rec, &bad);
        if (rv == WAL_ENOMEM) {
            return rv;
        }
        if (rv != 0) {
            wal__report_bad(sc, k, off, rec_no);
            wal__msg(msg, msg_cap,
                     "corrupt WAL record in %s at offset %" PRIu64 " (record %" PRIu64
                     " of that segment): %s; refusing to start",
                     path, off, rec_no, bad);
            return 1;
        }
        info->n_records++;
        if (rec.type == WAL_REC_ENTRY) {
            info->n_entries++;
            if (info->min_entry_index == 0 || rec.entry.index < info->min_entry_index) {
                info->min_entry_index = rec.entry.index;
            }
            if (rec.entry.index > info->max_entry_index) {
                info->max_entry_index = rec.entry.index;
            }
        }
        is_seal = rec.type == WAL_REC_SEAL;
        has_hs = has_hs || rec.type == WAL_REC_HARD_STATE;
        off += consumed;
    }
    info->used_bytes = off;
    sc->last_is_seal = is_seal;
    sc->last_has_hs = has_hs;
    sc->used_last = off;
    if (off == size) {
        return 0;
    }
    const size_t next = wal__find_valid(buf, (size_t)off + 1, (size_t)size);
    if (!last || next < size) {
        wal__report_bad(sc, k, off, rec_no + 1);
        if (next < size) {
            wal__msg(msg, msg_cap,
                     "corrupt WAL record in %s at offset %" PRIu64 " (record %" PRIu64
                     " of that segment): %s; a valid record follows at offset %zu, so "
                     "this is not a torn tail; refusing to start",
                     path, off, rec_no + 1, why, next);
        } else {
            wal__msg(msg, msg_cap,
                     "corrupt WAL record in %s at offset %" PRIu64 " (record %" PRIu64
                     " of that segment): %s; the segment is not the last one, so all "
                     "of it was synced; refusing to start",
                     path, off, rec_no + 1, why);
        }
        return 1;
    }
    const uint64_t torn = wal__nonzero_span(buf, (size_t)off, (size_t)size);
    if (torn > 0) {
        rep->torn_tail = true;
        rep->torn_segment = k;
        rep->torn_offset = off;
        rep->torn_bytes = torn;
    }
    return 0;
}

/* Replays every segment in dir into rep (nothing is changed on disk). Returns 0 when the
 * scan ran to a verdict (rep->status), or an error that stopped it. */
static int wal__scan_dir(struct env *env, const char *dir, struct wal_report *rep,
                         struct wal__scan *sc, char *msg, size_t msg_cap)
{
    memset(rep, 0, sizeof(*rep));
    memset(sc, 0, sizeof(*sc));
    sc->rep = rep;
    struct wal__list l;
    int rv = wal__list_segments(env, dir, &l);
    if (rv != 0) {
        wal__msg(msg, msg_cap, "%s: cannot list the WAL directory: %s", dir, wal_strerror(rv));
        return rv;
    }
    if (l.n > 0) {
        rep->segments = calloc(l.n, sizeof(rep->segments[0]));
        if (rep->segments == NULL) {
            free(l.seqs);
            return WAL_ENOMEM;
        }
    }
    rep->n_segments = l.n;
    for (uint32_t k = 0; k < l.n; k++) {
        rep->segments[k].seq = l.seqs[k];
        wal__segment_name(rep->segments[k].name, l.seqs[k]);
    }
    for (uint32_t k = 0; k + 1 < l.n; k++) {
        if (l.seqs[k + 1] != l.seqs[k] + 1) {
            wal__report_bad(sc, k + 1, 0, 0);
            wal__msg(msg, msg_cap,
                     "corrupt WAL: segments %s and %s are not consecutive (a "
                     "segment file is missing); refusing to start",
                     rep->segments[k].name, rep->segments[k + 1].name);
            free(l.seqs);
            return 0;
        }
    }
    free(l.seqs);
    for (uint32_t k = 0; k < rep->n_segments; k++) {
        rv = wal__scan_segment(env, dir, sc, k, rep->n_segments, msg, msg_cap);
        if (rv < 0) {
            return rv;
        }
        if (rv == 1) {
            break;
        }
    }
    if (rep->status != 0) {
        return 0;
    }
    struct wal__replay *rp = &sc->rp;
    struct wal_recovered *log = &rep->log;
    log->hard_state = rp->hs;
    log->has_hard_state = rp->has_hs;
    log->first_index = rp->base_index + 1;
    log->prev_term = rp->base_term;
    log->last_index = wal__rp_last_index(rp);
    log->last_term = wal__rp_last_term(rp);
    log->snapshot_index = rp->snap_index;
    log->snapshot_term = rp->snap_term;
    log->entries = rp->e;
    log->n_entries = rp->n;
    log->n_segments = rep->n_segments - (rep->torn_segment_header ? 1u : 0u);
    log->n_records = rp->n_records;
    rp->e = NULL;
    rp->n = rp->cap = 0;
    return 0;
}

static void wal__scan_free(struct wal__scan *sc)
{
    wal__rp_free(&sc->rp);
    free(sc->buf);
    sc->buf = NULL;
}

/* ---- segments and rolling --------------------------------------------------------- */

static int wal__segs_push(struct wal *w, uint64_t seq, uint64_t first_index)
{
    if (w->n_segs == w->cap_segs) {
        const uint32_t cap = w->cap_segs ? w->cap_segs * 2 : 16;
        struct wal__seg *s = realloc(w->segs, cap * sizeof(s[0]));
        if (s == NULL) {
            return WAL_ENOMEM;
        }
        w->segs = s;
        w->cap_segs = cap;
    }
    w->segs[w->n_segs].seq = seq;
    w->segs[w->n_segs].first_index = first_index;
    w->n_segs++;
    return 0;
}

/* Encodes a record into buf (which has room). */
static size_t wal__put(uint8_t *buf, size_t cap, const struct wal_record *rec)
{
    size_t n = 0;
    const int rv = wal_encode_record(rec, buf, cap, &n);
    CC_ASSERT(rv == 0);
    return n;
}

static size_t wal__put_seal(uint8_t *buf, size_t cap, const struct wal__state *st)
{
    struct wal_record rec = {.type = WAL_REC_SEAL};
    rec.seal.last_index = st->last_index;
    rec.seal.last_term = wal__st_last_term(st);
    return wal__put(buf, cap, &rec);
}

/* Cuts the current file back to file_off after a failed write. */
static int wal__cut_back(struct wal *w)
{
    const int rv = w->env->truncate(w->env, w->file, w->file_off);
    if (rv != 0) {
        return wal__poison(w, WAL_EIO);
    }
    w->file_size = w->file_off;
    return 0;
}

static void wal__spare_drop(struct wal *w);

/* Makes the ready spare segment seq: writes init[0..n) (header and first records) into
 * it, syncs it, renames it and syncs the directory. Returns 0 (w->file is the new
 * segment), 1 when the spare could not be used and was dropped (nothing of it is in the
 * log: the caller creates the segment another way), or a fatal error. */
static int wal__roll_into_spare(struct wal *w, const char *path, const uint8_t *init, size_t n)
{
    CC_ASSERT(w->spare != NULL);
    CC_ASSERT(w->spare_ready);
    struct env *env = w->env;
    char spare_path[ENV_PATH_MAX];
    int rv = env_path_join(spare_path, sizeof(spare_path), w->dir, WAL_SPARE_NAME);
    if (rv == 0) {
        rv = env->write_at(env, w->spare, 0, init, n);
    }
    if (rv == 0) {
        rv = env->sync(env, w->spare);
    }
    if (rv == 0) {
        rv = env->rename(env, spare_path, path);
    }
    if (rv != 0) {
        /* Still the spare under its own name: never part of the log. */
        w->stats.n_spare_failures++;
        wal__spare_drop(w);
        return 1;
    }
    /* From here on the name may reach the disk with the next directory sync, and the
     * header is durable: this is the segment now. */
    w->file = w->spare;
    w->file_size = w->segment_bytes;
    w->spare = NULL;
    w->spare_ready = false;
    w->spare_off = 0;
    if (env->sync_dir(env, w->dir) != 0) {
        return wal__poison(w, WAL_ESYNC);
    }
    w->stats.n_segments_zeroed++;
    return 0;
}

/* Creates segment path as a new preallocated file holding init[0..n), synced with its
 * directory; sets w->file. */
static int wal__roll_new_file(struct wal *w, const char *path, const uint8_t *init, size_t n)
{
    struct env *env = w->env;
    struct env_file *f = NULL;
    int rv = env->open(env, path, ENV_OPEN_CREATE | ENV_OPEN_TRUNC, &f);
    if (rv != 0) {
        return wal__env_error(rv);
    }
    const uint64_t size = w->segment_bytes > n ? w->segment_bytes : n;
    rv = env->allocate(env, f, 0, size);
    if (rv == 0) {
        rv = env->write_at(env, f, 0, init, n);
    }
    if (rv != 0) {
        /* Nothing in it yet: remove it; the next write tries again. */
        env->close(env, f);
        env->unlink(env, path);
        return wal__env_error(rv);
    }
    rv = env->sync(env, f);
    if (rv == 0) {
        rv = env->sync_dir(env, w->dir);
    }
    if (rv != 0) {
        env->close(env, f);
        return wal__poison(w, WAL_ESYNC);
    }
    w->file = f;
    w->file_size = size;
    return 0;
}

/* Ends the current segment (cut to its records, synced, closed) and starts the next with
 * [HARD_STATE] SEAL describing st, synced together with the directory: in the spare when
 * one is ready, else in a new preallocated file. */
static int wal__roll(struct wal *w, const struct wal__state *st)
{
    struct env *env = w->env;
    int rv;
    if (w->file != NULL) {
        if (w->file_size > w->file_off) {
            rv = env->truncate(env, w->file, w->file_off);
            if (rv != 0) {
                return wal__poison(w, WAL_EIO);
            }
            w->file_size = w->file_off;
        }
        rv = env->sync(env, w->file);
        if (rv != 0) {
            return wal__poison(w, WAL_ESYNC);
        }
        if (w->dirty) {
            w->dirty = false;
            w->durable_index = st->last_index;
            w->durable_term = wal__st_last_term(st);
        }
        env->close(env, w->file);
        w->file = NULL;
    }
    const uint64_t seq = w->n_segs > 0 ? w->segs[w->n_segs - 1].seq + 1 : 1;
    char path[ENV_PATH_MAX];
    rv = wal__segment_path(path, w->dir, seq);
    if (rv != 0) {
        return WAL_EINVAL;
    }
    uint8_t init[WAL_HEADER_BYTES + WAL_INIT_RECORDS_BYTES];
    const struct wal_segment_header h = {
        .version = WAL_FORMAT_VERSION,
        .seq = seq,
        .first_index = st->last_index + 1,
        .prev_term = wal__st_last_term(st),
    };
    wal_encode_segment_header(&h, init);
    size_t n = WAL_HEADER_BYTES;
    if (st->has_hs) {
        struct wal_record rec = {.type = WAL_REC_HARD_STATE};
        rec.hard_state = st->hs;
        n += wal__put(init + n, sizeof(init) - n, &rec);
    }
    n += wal__put_seal(init + n, sizeof(init) - n, st);
    w->sealed_off = 0;
    w->spare_failed = false; /* a new segment: its spare may be tried again */

    rv = 1;
    if (w->spare != NULL && w->spare_ready) {
        rv = wal__roll_into_spare(w, path, init, n);
    } else if (w->spare != NULL) {
        /* Half zeroed: give its space back first; the next one starts later. */
        wal__spare_drop(w);
    }
    if (rv == 1) {
        rv = wal__roll_new_file(w, path, init, n);
    }
    if (rv != 0) {
        return rv;
    }
    rv = wal__segs_push(w, seq, h.first_index);
    if (rv != 0) {
        env->close(env, w->file);
        w->file = NULL;
        return wal__poison(w, rv);
    }
    w->file_off = n;
    w->file_init_end = n;
    w->stats.n_segments_created++;
    return 0;
}

/* ---- spare segments --------------------------------------------------------------- */

static const uint8_t wal__zeros[WAL_ZEROS_BYTES];

/* Closes and removes the spare (a failed unlink leaves a file wal_open deletes). */
static void wal__spare_drop(struct wal *w)
{
    if (w->spare != NULL) {
        w->env->close(w->env, w->spare);
        w->spare = NULL;
    }
    char path[ENV_PATH_MAX];
    if (env_path_join(path, sizeof(path), w->dir, WAL_SPARE_NAME) == 0) {
        (void)w->env->unlink(w->env, path);
    }
    w->spare_off = 0;
    w->spare_ready = false;
}

static int wal__spare_error(int rv)
{
    CC_ASSERT(rv < 0);
    return rv == -ENOSPC || rv == -EDQUOT ? WAL_ENOSPC : rv == -ENOMEM ? WAL_ENOMEM : WAL_EIO;
}

/* One step: zero-fills up to budget_bytes more of the spare (creating it first) and syncs
 * them. A failure drops the spare and blocks new attempts until the next roll. */
static int wal__spare_step(struct wal *w, uint64_t budget_bytes, bool *more)
{
    CC_ASSERT(!w->spare_ready);
    CC_ASSERT(budget_bytes > 0);
    struct env *env = w->env;
    int rv = 0;
    if (w->spare == NULL) {
        char path[ENV_PATH_MAX];
        rv = env_path_join(path, sizeof(path), w->dir, WAL_SPARE_NAME);
        if (rv == 0) {
            rv = env->open(env, path, ENV_OPEN_CREATE | ENV_OPEN_TRUNC, &w->spare);
        }
        if (rv != 0) {
            w->spare = NULL;
            goto err;
        }
        w->spare_off = 0;
    }
    const uint64_t left = w->segment_bytes - w->spare_off;
    const uint64_t end = w->spare_off + (budget_bytes < left ? budget_bytes : left);
    /* Bounded: (end - spare_off) / WAL_ZEROS_BYTES + 1 writes. */
    while (w->spare_off < end) {
        const uint64_t chunk =
            end - w->spare_off < WAL_ZEROS_BYTES ? end - w->spare_off : WAL_ZEROS_BYTES;
        rv = env->write_at(env, w->spare, w->spare_off, wal__zeros, (size_t)chunk);
        if (rv != 0) {
            goto err;
        }
        w->spare_off += chunk;
        w->stats.n_spare_bytes += chunk;
    }
    rv = env->sync(env, w->spare);
    if (rv != 0) {
        goto err;
    }
    w->spare_ready = w->spare_off == w->segment_bytes;
    *more = !w->spare_ready;
    return 0;

err:
    w->stats.n_spare_failures++;
    w->spare_failed = true;
    wal__spare_drop(w);
    *more = false;
    return wal__spare_error(rv);
}

bool wal_prepare_wanted(const struct wal *w)
{
    return w->failed == 0 && w->zero_fill && !w->spare_ready && !w->spare_failed &&
           w->file != NULL && w->file_off >= w->segment_bytes / 2;
}

int wal_prepare(struct wal *w, uint64_t budget_bytes, bool *more)
{
    CC_ASSERT(w != NULL);
    CC_ASSERT(more != NULL);
    *more = false;
    if (w->failed != 0) {
        return WAL_EFAILED;
    }
    if (budget_bytes == 0 || !wal_prepare_wanted(w)) {
        return 0;
    }
    return wal__spare_step(w, budget_bytes, more);
}

/* ---- writing ---------------------------------------------------------------------- */

static size_t wal__entry_record_bytes(const struct raft_entry *e)
{
    return WAL_RECORD_HEADER_BYTES + 1 + WAL_ENTRY_FIXED_BYTES + e->n_bytes;
}

/* Bytes b encodes to at most (a truncation that changes nothing is skipped). */
static uint64_t wal__batch_bytes(const struct wal_batch *b)
{
    uint64_t n = 0;
    if (b->snapshot_index != 0) {
        n += WAL_RECORD_HEADER_BYTES + 1 + 16;
    }
    if (b->truncate_from != 0) {
        n += WAL_RECORD_HEADER_BYTES + 1 + 8;
    }
    for (uint32_t i = 0; i < b->n_entries; i++) {
        n += wal__entry_record_bytes(&b->entries[i]);
    }
    if (b->has_hard_state) {
        n += WAL_RECORD_HEADER_BYTES + 1 + 20;
    }
    return n;
}

/* Encodes b into w->buf from offset `off` on while applying it to w->st. Returns the new
 * end via *n_out, or an error (w->st must then be restored by the caller). */
static int wal__encode_batch(struct wal *w, const struct wal_batch *b, size_t off, size_t *n_out)
{
    struct wal__state *st = &w->st;
    struct wal_record rec;
    if (b->snapshot_index != 0) {
        if (b->snapshot_term == 0) {
            return WAL_EINVAL;
        }
        rec = (struct wal_record){.type = WAL_REC_SNAPSHOT};
        rec.snapshot.index = b->snapshot_index;
        rec.snapshot.term = b->snapshot_term;
        off += wal__put(w->buf + off, w->buf_cap - off, &rec);
        wal__st_snapshot(st, b->snapshot_index, b->snapshot_term);
    }
    if (b->truncate_from != 0 && b->truncate_from <= st->last_index) {
        rec = (struct wal_record){.type = WAL_REC_TRUNCATE};
        rec.truncate.from_index = b->truncate_from;
        off += wal__put(w->buf + off, w->buf_cap - off, &rec);
        wal__st_truncate(st, b->truncate_from);
    }
    for (uint32_t i = 0; i < b->n_entries; i++) {
        const struct raft_entry *e = &b->entries[i];
        if (e->n_bytes > RAFT_ENTRY_BYTES_MAX) {
            return WAL_ETOOBIG;
        }
        const uint64_t prev = wal__st_last_term(st);
        if (e->index != st->last_index + 1 || e->term == 0 || e->type == 0 ||
            (prev != 0 && e->term < prev) || (e->n_bytes > 0 && e->bytes == NULL)) {
            return WAL_EINVAL;
        }
        rec = (struct wal_record){.type = WAL_REC_ENTRY};
        rec.entry.term = e->term;
        rec.entry.index = e->index;
        rec.entry.type = e->type;
        rec.entry.n_bytes = e->n_bytes;
        rec.entry.bytes = e->bytes;
        off += wal__put(w->buf + off, w->buf_cap - off, &rec);
        wal__st_append(st, e->index, e->term);
    }
    if (b->has_hard_state) {
        rec = (struct wal_record){.type = WAL_REC_HARD_STATE};
        rec.hard_state = b->hard_state;
        off += wal__put(w->buf + off, w->buf_cap - off, &rec);
        st->hs = b->hard_state;
        st->has_hs = true;
    }
    *n_out = off;
    return 0;
}

/* Writes bs[0..n), which fit WAL_BATCH_BYTES_MAX together, with one write, atomically:
 * on an error none of them is in the log. With seal, a SEAL closes the write. */
static int wal__write_run(struct wal *w, const struct wal_batch *const *bs, uint32_t n_bs,
                          bool seal)
{
    CC_ASSERT(n_bs > 0);
    uint64_t max_bytes = seal ? WAL_SEAL_BYTES : 0;
    uint64_t runs_needed = (uint64_t)w->st.n_runs + 1;
    for (uint32_t k = 0; k < n_bs; k++) {
        max_bytes += wal__batch_bytes(bs[k]);
        runs_needed += bs[k]->n_entries;
    }
    CC_ASSERT(max_bytes <= WAL_BATCH_BYTES_MAX + WAL_SEAL_BYTES);
    int rv = wal__reserve_buf(w, (size_t)max_bytes);
    if (rv == 0) {
        rv = wal__st_reserve(&w->st, runs_needed);
    }
    if (rv == 0) {
        rv = wal__st_reserve(&w->saved, runs_needed);
    }
    if (rv != 0) {
        return rv;
    }
    wal__st_copy(&w->saved, &w->st);
    size_t n = 0;
    for (uint32_t k = 0; k < n_bs; k++) {
        rv = wal__encode_batch(w, bs[k], n, &n);
        if (rv != 0) {
            goto err_restore;
        }
    }
    if (n == 0) {
        return 0;
    }
    /* Roll when the batches and the seal that will close them do not fit (the seal then
     * always lands in preallocated space). A batch too big for any segment goes into a
     * fresh one, which grows past the bound. */
    if (w->file == NULL ||
        (w->file_off > w->file_init_end && w->file_off + n + WAL_SEAL_BYTES > w->segment_bytes)) {
        rv = wal__roll(w, &w->saved);
        if (rv != 0) {
            goto err_restore;
        }
    }
    if (seal) {
        n += wal__put_seal(w->buf + n, w->buf_cap - n, &w->st);
    }
    rv = w->env->write_at(w->env, w->file, w->file_off, w->buf, n);
    if (rv != 0) {
        rv = wal__env_error(rv);
        const int cut = wal__cut_back(w);
        if (cut != 0) {
            rv = cut;
        } else if (rv != WAL_ENOSPC) {
            rv = wal__poison(w, rv); /* an unexplained write error: trust nothing */
        }
        goto err_restore;
    }
    w->file_off += n;
    if (w->file_off > w->file_size) {
        w->file_size = w->file_off;
    }
    w->dirty = true;
    w->sealed_off = seal ? w->file_off : 0;
    w->stats.n_writes++;
    w->stats.n_bytes += seal ? n - WAL_SEAL_BYTES : n;
    return 0;

err_restore:
    wal__st_copy(&w->st, &w->saved);
    CC_ASSERT(rv != 0);
    return rv;
}

int wal_write(struct wal *w, const struct wal_batch *b)
{
    CC_ASSERT(w != NULL);
    CC_ASSERT(b != NULL);
    CC_ASSERT(b->entries != NULL || b->n_entries == 0);
    if (w->failed != 0) {
        return WAL_EFAILED;
    }
    if (wal__batch_bytes(b) <= WAL_BATCH_BYTES_MAX) {
        return wal__write_run(w, &b, 1, false);
    }
    /* Too big for one atomic write: split the entries; the first piece carries the
     * snapshot marker and truncation, the last one the hard state. */
    struct wal_batch piece = *b;
    piece.n_entries = 0;
    piece.has_hard_state = false;
    uint64_t bytes = wal__batch_bytes(&piece);
    uint32_t start = 0;
    for (uint32_t i = 0; i <= b->n_entries; i++) {
        const bool at_end = i == b->n_entries;
        const uint64_t next = at_end ? 0 : wal__entry_record_bytes(&b->entries[i]);
        if (at_end || bytes + next > WAL_BATCH_BYTES_MAX - (WAL_RECORD_HEADER_BYTES + 21)) {
            piece.entries = b->entries + start;
            piece.n_entries = i - start;
            piece.has_hard_state = at_end && b->has_hard_state;
            piece.hard_state = b->hard_state;
            const struct wal_batch *one = &piece;
            const int rv = wal__write_run(w, &one, 1, false);
            if (rv != 0) {
                return rv;
            }
            piece.snapshot_index = piece.snapshot_term = piece.truncate_from = 0;
            start = i;
            bytes = 0;
        }
        bytes += next;
    }
    return 0;
}

int wal_write_group(struct wal *w, const struct wal_batch *const *bs, uint32_t n, bool seal,
                    uint32_t *n_written)
{
    CC_ASSERT(w != NULL);
    CC_ASSERT(bs != NULL || n == 0);
    CC_ASSERT(n_written != NULL);
    *n_written = 0;
    uint32_t i = 0;
    /* Each pass writes at least one batch or returns, so this runs at most n times. */
    while (i < n) {
        if (w->failed != 0) {
            return WAL_EFAILED;
        }
        CC_ASSERT(bs[i] != NULL);
        CC_ASSERT(bs[i]->entries != NULL || bs[i]->n_entries == 0);
        if (wal__batch_bytes(bs[i]) > WAL_BATCH_BYTES_MAX) {
            const int rv = wal_write(w, bs[i]); /* split into pieces of its own */
            if (rv != 0) {
                return rv;
            }
            *n_written = ++i;
            continue;
        }
        /* The longest run from i on that fits one write and the segment it goes to (the
         * current one, or a fresh one when not even bs[i] fits here), so segments keep to
         * their bound as if the batches had been written one by one. */
        const uint64_t fixed = WAL_SEAL_BYTES + (seal ? WAL_SEAL_BYTES : 0);
        const uint64_t first = wal__batch_bytes(bs[i]);
        uint64_t limit = w->segment_bytes - WAL_HEADER_BYTES - WAL_INIT_RECORDS_BYTES - fixed;
        if (w->file != NULL && w->file_off + first + fixed <= w->segment_bytes) {
            limit = w->segment_bytes - w->file_off - fixed;
        }
        limit = limit < WAL_BATCH_BYTES_MAX ? limit : WAL_BATCH_BYTES_MAX;
        uint32_t j = i + 1; /* bs[i] goes in any case, as wal_write() would put it */
        uint64_t bytes = first;
        while (j < n && bytes + wal__batch_bytes(bs[j]) <= limit) {
            bytes += wal__batch_bytes(bs[j]);
            j++;
        }
        int rv = wal__write_run(w, bs + i, j - i, seal && j == n);
        if (rv == 0) {
            i = j;
            *n_written = i;
            continue;
        }
        if (w->failed != 0) {
            return rv;
        }
        /* Not fatal (disk full, a bad batch): nothing of the run is in the log. Redo it
         * one batch at a time to find exactly which one fails. */
        for (; i < j; i++) {
            rv = wal__write_run(w, bs + i, 1, false);
            if (rv != 0) {
                return rv;
            }
            *n_written = i + 1;
        }
    }
    return 0;
}

int wal_append(struct wal *w, const struct raft_entry *entries, uint32_t n)
{
    const struct wal_batch b = {.entries = entries, .n_entries = n};
    return wal_write(w, &b);
}

int wal_truncate(struct wal *w, uint64_t from_index)
{
    if (from_index == 0) {
        return WAL_EINVAL;
    }
    const struct wal_batch b = {.truncate_from = from_index};
    return wal_write(w, &b);
}

int wal_set_hard_state(struct wal *w, const struct raft_hard_state *hs)
{
    CC_ASSERT(hs != NULL);
    const struct wal_batch b = {.has_hard_state = true, .hard_state = *hs};
    return wal_write(w, &b);
}

int wal_set_snapshot(struct wal *w, uint64_t index, uint64_t term)
{
    if (index == 0 || term == 0) {
        return WAL_EINVAL;
    }
    const struct wal_batch b = {.snapshot_index = index, .snapshot_term = term};
    return wal_write(w, &b);
}

/* ---- syncing ---------------------------------------------------------------------- */

int wal_sync(struct wal *w, uint64_t *durable_index, uint64_t *durable_term)
{
    CC_ASSERT(w != NULL);
    if (w->failed != 0) {
        return WAL_EFAILED;
    }
    if (w->dirty) {
        CC_ASSERT(w->file != NULL);
        int rv;
        if (w->sealed_off != w->file_off) {
            uint8_t seal[WAL_SEAL_BYTES];
            const size_t n = wal__put_seal(seal, sizeof(seal), &w->st);
            rv = w->env->write_at(w->env, w->file, w->file_off, seal, n);
            if (rv != 0) {
                rv = wal__env_error(rv);
                const int cut = wal__cut_back(w);
                if (cut != 0) {
                    return cut;
                }
                return rv == WAL_ENOSPC ? rv : wal__poison(w, rv);
            }
            w->file_off += n;
            if (w->file_off > w->file_size) {
                w->file_size = w->file_off;
            }
        }
        rv = w->env->sync(w->env, w->file);
        if (rv != 0) {
            return wal__poison(w, WAL_ESYNC);
        }
        w->dirty = false;
        w->durable_index = w->st.last_index;
        w->durable_term = wal__st_last_term(&w->st);
        w->stats.n_syncs++;
    }
    if (durable_index != NULL) {
        *durable_index = w->durable_index;
    }
    if (durable_term != NULL) {
        *durable_term = w->durable_term;
    }
    return 0;
}

/* ---- compaction ------------------------------------------------------------------- */

int wal_compact(struct wal *w, uint64_t snapshot_index, uint32_t *n_deleted)
{
    CC_ASSERT(w != NULL);
    if (n_deleted != NULL) {
        *n_deleted = 0;
    }
    if (w->failed != 0) {
        return WAL_EFAILED;
    }
    /* Segment k holds only entries < segs[k + 1].first_index (its live ones: anything
     * it held above that was truncated before the next segment began). Oldest first,
     * one directory sync each, so a crash never leaves a gap in the seqs. */
    uint32_t k = 0;
    int rv = 0;
    while (k + 1 < w->n_segs && w->segs[k + 1].first_index <= snapshot_index + 1) {
        char path[ENV_PATH_MAX];
        rv = wal__segment_path(path, w->dir, w->segs[k].seq);
        if (rv != 0) {
            rv = WAL_EINVAL;
            break;
        }
        rv = w->env->unlink(w->env, path);
        if (rv != 0 && rv != -ENOENT) {
            rv = wal__env_error(rv);
            break;
        }
        rv = w->env->sync_dir(w->env, w->dir);
        if (rv != 0) {
            rv = wal__poison(w, WAL_ESYNC);
            k++;
            break;
        }
        k++;
    }
    if (k > 0) {
        memmove(w->segs, w->segs + k, (w->n_segs - k) * sizeof(w->segs[0]));
        w->n_segs -= k;
        w->stats.n_segments_deleted += k;
    }
    /* Forget the terms of entries the snapshot covers. */
    struct wal__state *st = &w->st;
    if (snapshot_index > st->base_index && snapshot_index < st->last_index) {
        const uint64_t term = wal__st_term_at(st, snapshot_index);
        uint32_t j = 0;
        while (j + 1 < st->n_runs && st->runs[j + 1].first_index <= snapshot_index + 1) {
            j++;
        }
        memmove(st->runs, st->runs + j, (st->n_runs - j) * sizeof(st->runs[0]));
        st->n_runs -= j;
        st->runs[0].first_index = snapshot_index + 1;
        st->base_index = snapshot_index;
        st->base_term = term;
    }
    if (n_deleted != NULL) {
        *n_deleted = k;
    }
    return rv;
}

/* ---- open and close --------------------------------------------------------------- */

void wal_options_default(struct wal_options *o)
{
    CC_ASSERT(o != NULL);
    memset(o, 0, sizeof(*o));
    o->segment_bytes = WAL_SEGMENT_BYTES_DEFAULT;
    o->create = true;
    o->zero_fill = true;
}

void wal_recovered_free(struct wal_recovered *r)
{
    if (r == NULL) {
        return;
    }
    for (uint64_t k = 0; k < r->n_entries; k++) {
        free(r->entries[k].bytes);
    }
    free(r->entries);
    memset(r, 0, sizeof(*r));
}

static int wal__ensure_dir(struct env *env, const char *dir, bool create, char *msg, size_t msg_cap)
{
    if (!create) {
        return 0;
    }
    int rv = env->mkdir(env, dir);
    if (rv == -EEXIST) {
        return 0;
    }
    if (rv == 0) {
        char parent[ENV_PATH_MAX];
        rv = env_path_parent(parent, sizeof(parent), dir);
        if (rv == 0) {
            rv = env->sync_dir(env, parent);
        }
        if (rv == 0) {
            return 0;
        }
    }
    wal__msg(msg, msg_cap, "%s: cannot create the WAL directory: %s", dir, env_strerror(rv));
    return wal__env_error(rv);
}

/* Builds the writer state from the recovered log. */
static int wal__state_from(struct wal__state *st, const struct wal_recovered *log)
{
    memset(st, 0, sizeof(*st));
    st->base_index = log->first_index - 1;
    st->base_term = log->prev_term;
    st->last_index = log->first_index - 1;
    st->hs = log->hard_state;
    st->has_hs = log->has_hard_state;
    st->snap_index = log->snapshot_index;
    st->snap_term = log->snapshot_term;
    for (uint64_t k = 0; k < log->n_entries; k++) {
        const int rv = wal__st_reserve(st, (uint64_t)st->n_runs + 1);
        if (rv != 0) {
            return rv;
        }
        wal__st_append(st, log->entries[k].index, log->entries[k].term);
    }
    return 0;
}

/* Makes the last segment writable again: cut a torn tail, restore the preallocation. */
static int wal__reopen_last(struct wal *w, const struct wal_report *rep, uint64_t used, char *msg,
                            size_t msg_cap)
{
    struct env *env = w->env;
    const struct wal_segment_info *info = &rep->segments[w->n_segs - 1];
    char path[ENV_PATH_MAX];
    int rv = env_path_join(path, sizeof(path), w->dir, info->name);
    if (rv != 0) {
        return WAL_EINVAL;
    }
    rv = env->open(env, path, ENV_OPEN_WRITE, &w->file);
    if (rv != 0) {
        wal__msg(msg, msg_cap, "%s: cannot open for writing: %s", path, env_strerror(rv));
        return wal__env_error(rv);
    }
    w->file_off = used;
    w->file_size = info->file_bytes;
    w->file_init_end = WAL_HEADER_BYTES;
    if (rep->torn_tail && !rep->torn_segment_header) {
        /* Cut the garbage so that no stale bytes can follow new records. */
        rv = env->truncate(env, w->file, used);
        if (rv != 0) {
            return wal__env_error(rv);
        }
        w->file_size = used;
    }
    if (w->file_size < w->segment_bytes) {
        rv = env->allocate(env, w->file, 0, w->segment_bytes);
        if (rv == 0) {
            w->file_size = w->segment_bytes;
        } else if (rv != -ENOSPC && rv != -EDQUOT) {
            return wal__env_error(rv); /* no room to preallocate is fine: writes extend */
        }
    }
    return 0;
}

int wal_open(struct env *env, const char *dir, const struct wal_options *o, struct wal **out,
             struct wal_recovered *rec, char *msg, size_t msg_cap)
{
    CC_ASSERT(env != NULL);
    CC_ASSERT(dir != NULL);
    CC_ASSERT(out != NULL);
    CC_ASSERT(rec != NULL);
    memset(rec, 0, sizeof(*rec));
    wal__msg(msg, msg_cap, "%s", "");
    struct wal_options opts;
    wal_options_default(&opts);
    if (o != NULL) {
        opts = *o;
    }
    if (opts.segment_bytes < WAL_SEGMENT_BYTES_MIN || opts.segment_bytes > WAL_SEGMENT_BYTES_MAX ||
        strlen(dir) + WAL_NAME_BYTES + 1 > ENV_PATH_MAX) {
        return WAL_EINVAL;
    }
    int rv = wal__ensure_dir(env, dir, opts.create, msg, msg_cap);
    if (rv != 0) {
        return rv;
    }
    struct wal *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return WAL_ENOMEM;
    }
    w->env = env;
    w->segment_bytes = opts.segment_bytes;
    w->zero_fill = opts.zero_fill;
    memcpy(w->dir, dir, strlen(dir) + 1);

    /* A spare left by the last run may be half zeroed and its size may be another
     * segment_bytes: never trust it. No directory sync: should the name come back after
     * a crash, the next open deletes it again. */
    char spare_path[ENV_PATH_MAX];
    rv = env_path_join(spare_path, sizeof(spare_path), dir, WAL_SPARE_NAME);
    if (rv == 0) {
        rv = env->unlink(env, spare_path);
        rv = rv == -ENOENT ? 0 : rv;
    }
    if (rv != 0) {
        wal__msg(msg, msg_cap, "%s: cannot remove %s: %s", dir, WAL_SPARE_NAME, env_strerror(rv));
        rv = rv == -ENAMETOOLONG ? WAL_EINVAL : wal__env_error(rv);
        free(w);
        return rv;
    }

    struct wal_report rep;
    struct wal__scan sc;
    rv = wal__scan_dir(env, dir, &rep, &sc, msg, msg_cap);
    if (rv == 0 && rep.status != 0) {
        rv = rep.status;
    }
    if (rv != 0) {
        goto err_after_scan;
    }
    rec->torn_bytes_dropped = rep.torn_tail ? rep.torn_bytes : 0;
    if (rep.torn_segment_header) {
        /* A half-created last segment: nothing in it was acknowledged. */
        char path[ENV_PATH_MAX];
        rv = env_path_join(path, sizeof(path), dir, rep.segments[rep.torn_segment].name);
        if (rv == 0) {
            rv = env->unlink(env, path);
        }
        if (rv == 0) {
            rv = env->sync_dir(env, dir);
        }
        if (rv != 0) {
            rv = rv == -ENAMETOOLONG ? WAL_EINVAL : wal__env_error(rv);
            goto err_after_scan;
        }
        rec->torn_segment_removed = true;
        rep.n_segments--;
    }
    for (uint32_t k = 0; k < rep.n_segments; k++) {
        rv = wal__segs_push(w, rep.segments[k].seq, rep.segments[k].first_index);
        if (rv != 0) {
            goto err_after_scan;
        }
    }
    rv = wal__state_from(&w->st, &rep.log);
    if (rv != 0) {
        goto err_after_scan;
    }
    w->durable_index = w->st.last_index;
    w->durable_term = wal__st_last_term(&w->st);
    if (w->n_segs > 0) {
        rv = wal__reopen_last(w, &rep, sc.used_last, msg, msg_cap);
        if (rv != 0) {
            goto err_after_scan;
        }
        /* Every segment starts with the hard state of its time, so compaction can drop
         * the ones before it; a segment whose creation was torn lost that record. */
        if (!sc.last_has_hs && w->st.has_hs) {
            rv = wal_set_hard_state(w, &w->st.hs);
        }
        /* What we read may have come from a crashed process's page cache: make it
         * durable, and seal it so that its last record is covered like any other. */
        if (!sc.last_is_seal) {
            w->dirty = true;
        }
        if (rv == 0 && w->dirty) {
            rv = wal_sync(w, NULL, NULL);
        } else if (rv == 0 && env->sync(env, w->file) != 0) {
            rv = wal__poison(w, WAL_ESYNC);
        }
        if (rv == 0 && env->sync_dir(env, dir) != 0) {
            rv = wal__poison(w, WAL_ESYNC);
        }
    } else {
        /* A new WAL: its first segment zero-filled at once when asked (like PostgreSQL's
         * initdb), so that the first writes do not pay for unwritten extents either. A
         * failure to zero-fill (disk full) falls back to a preallocated segment. */
        if (w->zero_fill) {
            bool more = false;
            (void)wal__spare_step(w, w->segment_bytes, &more);
            CC_ASSERT(!more);
        }
        rv = wal__roll(w, &w->st);
    }
    if (rv != 0) {
        wal__msg(msg, msg_cap, "%s: cannot make the recovered WAL durable: %s", dir,
                 wal_strerror(rv));
        goto err_after_scan;
    }
    if (rep.torn_tail) {
        wal__msg(msg, msg_cap,
                 "recovered after a torn write: %s %" PRIu64 " unacknowledged "
                 "byte(s) at the end of %s (offset %" PRIu64 ")",
                 rep.torn_segment_header ? "removed a half-created segment with" : "cut",
                 rep.torn_bytes, rep.segments[rep.torn_segment].name, rep.torn_offset);
    }
    *rec = rep.log;
    rec->torn_bytes_dropped = rep.torn_tail ? rep.torn_bytes : 0;
    rec->torn_segment_removed = rep.torn_segment_header;
    rec->n_segments = w->n_segs;
    memset(&rep.log, 0, sizeof(rep.log));
    wal_report_free(&rep);
    wal__scan_free(&sc);
    *out = w;
    return 0;

err_after_scan:
    wal_report_free(&rep);
    wal__scan_free(&sc);
    wal_close(w);
    memset(rec, 0, sizeof(*rec));
    CC_ASSERT(rv != 0);
    return rv;
}

void wal_close(struct wal *w)
{
    if (w == NULL) {
        return;
    }
    if (w->file != NULL) {
        w->env->close(w->env, w->file);
    }
    if (w->spare != NULL) {
        w->env->close(w->env, w->spare); /* the file stays; the next wal_open removes it */
    }
    free(w->segs);
    free(w->st.runs);
    free(w->saved.runs);
    free(w->buf);
    free(w);
}

/* ---- queries ---------------------------------------------------------------------- */

uint64_t wal_last_index(const struct wal *w)
{
    return w->st.last_index;
}

uint64_t wal_last_term(const struct wal *w)
{
    return wal__st_last_term(&w->st);
}

struct env *wal_env(const struct wal *w)
{
    return w->env;
}

uint64_t wal_durable_index(const struct wal *w)
{
    return w->durable_index;
}

uint64_t wal_durable_term(const struct wal *w)
{
    return w->durable_term;
}

uint64_t wal_term_at(const struct wal *w, uint64_t index)
{
    return wal__st_term_at(&w->st, index);
}

void wal_get_stats(const struct wal *w, struct wal_stats *out)
{
    *out = w->stats;
    out->n_segments = w->n_segs;
}

/* ---- inspection ------------------------------------------------------------------- */

int wal_inspect(struct env *env, const char *dir, struct wal_report *rep, char *msg, size_t msg_cap)
{
    CC_ASSERT(env != NULL);
    CC_ASSERT(dir != NULL);
    CC_ASSERT(rep != NULL);
    wal__msg(msg, msg_cap, "%s", "");
    struct wal__scan sc;
    const int rv = wal__scan_dir(env, dir, rep, &sc, msg, msg_cap);
    wal__scan_free(&sc);
    if (rv != 0) {
        wal_report_free(rep);
    }
    return rv;
}

void wal_report_free(struct wal_report *rep)
{
    if (rep == NULL) {
        return;
    }
    free(rep->segments);
    wal_recovered_free(&rep->log);
    memset(rep, 0, sizeof(*rep));
}
