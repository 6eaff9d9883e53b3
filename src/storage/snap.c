/* snap.c -- snapshot files: codec, atomic save, newest-valid load, pruning (snap.h has
 * the format and the contract).
 *
 * Invariants:
 *   - A file named snap-*.snap is only ever created by rename() of a fully written and
 *     fdatasync'ed temp file, and the directory is fsync'ed after the rename; so a name
 *     either is absent or refers to a whole file, unless the disk itself corrupts it,
 *     which the CRCs catch.
 *   - Nothing returned by the loaders has failed a check: the header CRC is verified
 *     before any length in it is used, the trailer CRC before the payload is handed out,
 *     and the name must agree with the header.
 *   - Temp files (*.snap.tmp) are never read.
 *
 * Sections: errors | helpers | codec | save | list | load | prune.
 */
#include "storage/snap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/le.h"

#define SNAP_MAGIC_BYTES 8
#define SNAP_TMP_SUFFIX  ".tmp"

static const uint8_t snap__magic[SNAP_MAGIC_BYTES] = {'C', 'N', 'C', 'L', 'S', 'N', 'A', 'P'};

/* ---- errors ----------------------------------------------------------------------- */

const char *snap_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case SNAP_ECORRUPT:
        return "snapshot corrupt";
    case SNAP_ENOENT:
        return "no snapshot";
    case SNAP_EIO:
        return "snapshot input/output error";
    case SNAP_ESYNC:
        return "snapshot fsync failed (fatal)";
    case SNAP_ENOSPC:
        return "no space left for the snapshot";
    case SNAP_ENOMEM:
        return "out of memory";
    case SNAP_EINVAL:
        return "invalid snapshot argument";
    case SNAP_ETOOBIG:
        return "snapshot larger than SNAP_PAYLOAD_BYTES_MAX";
    case SNAP_ETOOMANY:
        return "too many snapshot files";
    case SNAP_EVERSION:
        return "snapshot has an unknown format version";
    default:
        return "unknown snapshot error";
    }
}

/* ---- helpers ---------------------------------------------------------------------- */

static void snap__msg(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void snap__msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

/* Appends to msg (keeps what is there). */
static void snap__msg_add(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void snap__msg_add(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg == NULL || cap == 0) {
        return;
    }
    const size_t used = strnlen(msg, cap);
    if (used + 1 >= cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + used, cap - used, fmt, ap);
    va_end(ap);
}

static int snap__env_error(int rv)
{
    CC_ASSERT(rv < 0);
    switch (rv) {
    case -ENOSPC:
    case -EDQUOT:
        return SNAP_ENOSPC;
    case -ENOMEM:
        return SNAP_ENOMEM;
    case -ENOENT:
        return SNAP_ENOENT;
    default:
        return SNAP_EIO;
    }
}

static void snap__name(char *buf, uint64_t index, uint64_t term)
{
    snprintf(buf, SNAP_NAME_BYTES, "snap-%016" PRIx64 "-%016" PRIx64 ".snap", index, term);
}

static bool snap__parse_hex16(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        const char c = p[i];
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else {
            return false;
        }
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

bool snap_parse_name(const char *name, uint64_t *index, uint64_t *term)
{
    CC_ASSERT(name != NULL);
    uint64_t i;
    uint64_t t;
    if (strlen(name) != SNAP_NAME_BYTES - 1 || memcmp(name, "snap-", 5) != 0 || name[21] != '-' ||
        memcmp(name + 38, ".snap", 5) != 0 || !snap__parse_hex16(name + 5, &i) ||
        !snap__parse_hex16(name + 22, &t) || i == 0 || t == 0) {
        return false;
    }
    if (index != NULL) {
        *index = i;
    }
    if (term != NULL) {
        *term = t;
    }
    return true;
}

static bool snap__is_tmp_name(const char *name)
{
    const size_t n = strlen(name);
    const size_t k = strlen(SNAP_TMP_SUFFIX);
    return n == SNAP_NAME_BYTES - 1 + k && memcmp(name, "snap-", 5) == 0 &&
           memcmp(name + n - k, SNAP_TMP_SUFFIX, k) == 0;
}

/* ---- codec ------------------------------------------------------------------------ */

int snap_encode_header(const struct raft_snapshot *s, uint8_t *buf, size_t cap, size_t *n_out)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(buf != NULL);
    CC_ASSERT(n_out != NULL);
    if (s->index == 0 || s->term == 0 || (s->n_bytes > 0 && s->bytes == NULL)) {
        return SNAP_EINVAL;
    }
    if (s->n_bytes > SNAP_PAYLOAD_BYTES_MAX) {
        return SNAP_ETOOBIG;
    }
    if (cap < SNAP_HEADER_BYTES_MAX) {
        return SNAP_EINVAL;
    }
    size_t n_config = 0;
    if (raft_config_encode(&s->config, buf + SNAP_HEADER_FIXED_BYTES, RAFT_CONFIG_BYTES_MAX,
                           &n_config) != 0) {
        return SNAP_EINVAL;
    }
    memcpy(buf, snap__magic, SNAP_MAGIC_BYTES);
    le_put_u32(buf + 8, SNAP_FORMAT_VERSION);
    le_put_u32(buf + 12, (uint32_t)n_config);
    le_put_u64(buf + 16, s->index);
    le_put_u64(buf + 24, s->term);
    le_put_u64(buf + 32, s->n_bytes);
    const size_t n = SNAP_HEADER_FIXED_BYTES + n_config;
    le_put_u32(buf + n, crc32c(0, buf, n));
    *n_out = n + 4;
    return 0;
}

int snap_decode(const uint8_t *buf, size_t n, struct snap_view *out, const char **why)
{
    CC_ASSERT(buf != NULL || n == 0);
    CC_ASSERT(out != NULL);
    const char *dummy;
    if (why == NULL) {
        why = &dummy;
    }
    if (n < SNAP_HEADER_FIXED_BYTES + 4 + SNAP_TRAILER_BYTES) {
        *why = "file shorter than a snapshot header";
        return SNAP_ECORRUPT;
    }
    if (memcmp(buf, snap__magic, SNAP_MAGIC_BYTES) != 0) {
        *why = "bad magic";
        return SNAP_ECORRUPT;
    }
    const uint32_t n_config = le_get_u32(buf + 12);
    if (n_config > RAFT_CONFIG_BYTES_MAX) {
        *why = "configuration length out of range";
        return SNAP_ECORRUPT;
    }
    const size_t header = SNAP_HEADER_FIXED_BYTES + n_config;
    if (n < header + 4 + SNAP_TRAILER_BYTES) {
        *why = "file shorter than its header";
        return SNAP_ECORRUPT;
    }
    if (crc32c(0, buf, header) != le_get_u32(buf + header)) {
        *why = "header checksum mismatch";
        return SNAP_ECORRUPT;
    }
    if (le_get_u32(buf + 8) != SNAP_FORMAT_VERSION) {
        *why = "unknown format version";
        return SNAP_EVERSION;
    }
    const uint64_t index = le_get_u64(buf + 16);
    const uint64_t term = le_get_u64(buf + 24);
    const uint64_t n_bytes = le_get_u64(buf + 32);
    if (index == 0 || term == 0) {
        *why = "index or term 0";
        return SNAP_ECORRUPT;
    }
    if (n_bytes > SNAP_PAYLOAD_BYTES_MAX || n_bytes != n - header - 4 - SNAP_TRAILER_BYTES) {
        *why = "file size does not match the payload length (truncated or extended)";
        return SNAP_ECORRUPT;
    }
    if (crc32c(0, buf, n - SNAP_TRAILER_BYTES) != le_get_u32(buf + n - SNAP_TRAILER_BYTES)) {
        *why = "checksum mismatch";
        return SNAP_ECORRUPT;
    }
    memset(out, 0, sizeof(*out));
    if (raft_config_decode(&out->config, buf + SNAP_HEADER_FIXED_BYTES, n_config) != 0) {
        *why = "invalid configuration";
        return SNAP_ECORRUPT;
    }
    out->index = index;
    out->term = term;
    out->n_bytes = n_bytes;
    out->bytes = n_bytes > 0 ? buf + header + 4 : NULL;
    return 0;
}

/* ---- save ------------------------------------------------------------------------- */

int snap_save(struct env *env, const char *dir, const struct raft_snapshot *s, char *msg,
              size_t msg_cap)
{
    CC_ASSERT(env != NULL);
    CC_ASSERT(dir != NULL);
    CC_ASSERT(s != NULL);
    snap__msg(msg, msg_cap, "%s", "");
    uint8_t header[SNAP_HEADER_BYTES_MAX];
    size_t n_header = 0;
    int rv = snap_encode_header(s, header, sizeof(header), &n_header);
    if (rv != 0) {
        return rv;
    }
    char name[SNAP_NAME_BYTES];
    char path[ENV_PATH_MAX];
    char tmp[ENV_PATH_MAX];
    snap__name(name, s->index, s->term);
    if (env_path_join(path, sizeof(path), dir, name) != 0 ||
        snprintf(tmp, sizeof(tmp), "%s%s", path, SNAP_TMP_SUFFIX) >= (int)sizeof(tmp)) {
        return SNAP_EINVAL;
    }

    struct env_file *f = NULL;
    rv = env->open(env, tmp, ENV_OPEN_CREATE | ENV_OPEN_TRUNC, &f);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: cannot create: %s", tmp, env_strerror(rv));
        return snap__env_error(rv);
    }
    uint8_t trailer[SNAP_TRAILER_BYTES];
    le_put_u32(trailer, crc32c(crc32c(0, header, n_header), s->bytes, (size_t)s->n_bytes));
    rv = env->write_at(env, f, 0, header, n_header);
    if (rv == 0 && s->n_bytes > 0) {
        rv = env->write_at(env, f, n_header, s->bytes, (size_t)s->n_bytes);
    }
    if (rv == 0) {
        rv = env->write_at(env, f, n_header + s->n_bytes, trailer, sizeof(trailer));
    }
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: write failed: %s", tmp, env_strerror(rv));
        rv = snap__env_error(rv);
        goto err_after_open;
    }
    if (env->sync(env, f) != 0) {
        snap__msg(msg, msg_cap, "%s: fdatasync failed", tmp);
        rv = SNAP_ESYNC;
        goto err_after_open;
    }
    env->close(env, f);
    f = NULL;
    rv = env->rename(env, tmp, path);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "rename %s -> %s failed: %s", tmp, path, env_strerror(rv));
        rv = snap__env_error(rv);
        goto err_after_open;
    }
    if (env->sync_dir(env, dir) != 0) {
        snap__msg(msg, msg_cap, "%s: directory fsync failed after renaming %s", dir, name);
        return SNAP_ESYNC;
    }
    return 0;

err_after_open:
    if (f != NULL) {
        env->close(env, f);
    }
    env->unlink(env, tmp); /* best effort: readers ignore temp files anyway */
    CC_ASSERT(rv != 0);
    return rv;
}

/* ---- list ------------------------------------------------------------------------- */

struct snap__list {
    struct snap_info *snaps;
    uint32_t n_snaps;
    uint32_t cap_snaps;
    char (*tmps)[SNAP_NAME_BYTES + 8];
    uint32_t n_tmps;
    bool want_tmps;
    int rv;
};

static int snap__list_cb(void *arg, const char *name)
{
    struct snap__list *l = arg;
    uint64_t index;
    uint64_t term;
    if (snap_parse_name(name, &index, &term)) {
        if (l->n_snaps == l->cap_snaps) {
            l->rv = SNAP_ETOOMANY;
            return 1;
        }
        struct snap_info *si = &l->snaps[l->n_snaps++];
        snprintf(si->name, sizeof(si->name), "%s", name);
        si->index = index;
        si->term = term;
    } else if (l->want_tmps && snap__is_tmp_name(name) && l->n_tmps < SNAP_FILES_MAX) {
        snprintf(l->tmps[l->n_tmps++], SNAP_NAME_BYTES + 8, "%s", name);
    }
    return 0;
}

static int snap__cmp_newest_first(const void *a, const void *b)
{
    const struct snap_info *x = a;
    const struct snap_info *y = b;
    if (x->index != y->index) {
        return x->index > y->index ? -1 : 1;
    }
    return (x->term < y->term) - (x->term > y->term);
}

static int snap__list(struct env *env, const char *dir, struct snap__list *l)
{
    const int rv = env->list_dir(env, dir, l, snap__list_cb);
    if (l->rv != 0) {
        return l->rv;
    }
    if (rv != 0) {
        return snap__env_error(rv);
    }
    if (l->n_snaps > 1) {
        qsort(l->snaps, l->n_snaps, sizeof(l->snaps[0]), snap__cmp_newest_first);
    }
    return 0;
}

int snap_list(struct env *env, const char *dir, struct snap_info *out, uint32_t cap,
              uint32_t *n_out)
{
    CC_ASSERT(out != NULL || cap == 0);
    CC_ASSERT(n_out != NULL);
    struct snap__list l = {.snaps = out, .cap_snaps = cap};
    *n_out = 0;
    const int rv = snap__list(env, dir, &l);
    if (rv == 0) {
        *n_out = l.n_snaps;
    }
    return rv;
}

/* ---- load ------------------------------------------------------------------------- */

int snap_load(struct env *env, const char *dir, const char *name, struct raft_snapshot *out,
              char *msg, size_t msg_cap)
{
    CC_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    uint64_t name_index;
    uint64_t name_term;
    char path[ENV_PATH_MAX];
    if (!snap_parse_name(name, &name_index, &name_term) ||
        env_path_join(path, sizeof(path), dir, name) != 0) {
        return SNAP_EINVAL;
    }
    struct env_file *f = NULL;
    int rv = env->open(env, path, ENV_OPEN_READ, &f);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: cannot open: %s", name, env_strerror(rv));
        return snap__env_error(rv);
    }
    uint8_t *buf = NULL;
    uint64_t size = 0;
    rv = env->size(env, f, &size);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: cannot stat: %s", name, env_strerror(rv));
        rv = snap__env_error(rv);
        goto out;
    }
    if (size > SNAP_PAYLOAD_BYTES_MAX + SNAP_HEADER_BYTES_MAX + SNAP_TRAILER_BYTES) {
        snap__msg(msg, msg_cap, "%s: %" PRIu64 " bytes is over the snapshot size limit", name,
                  size);
        rv = SNAP_ECORRUPT;
        goto out;
    }
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL) {
        rv = SNAP_ENOMEM;
        goto out;
    }
    rv = env_read_exact(env, f, 0, buf, (size_t)size);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: read failed: %s", name, env_strerror(rv));
        rv = snap__env_error(rv);
        goto out;
    }
    struct snap_view v;
    const char *why = NULL;
    rv = snap_decode(buf, (size_t)size, &v, &why);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: %s", name, why);
        goto out;
    }
    if (v.index != name_index || v.term != name_term) {
        snap__msg(msg, msg_cap, "%s: header says index %" PRIu64 " term %" PRIu64, name, v.index,
                  v.term);
        rv = SNAP_ECORRUPT;
        goto out;
    }
    out->index = v.index;
    out->term = v.term;
    out->config = v.config;
    out->n_bytes = v.n_bytes;
    /* Keep only the payload: slide it to the front and shrink the buffer. */
    const size_t off = v.bytes != NULL ? (size_t)(v.bytes - buf) : 0;
    memmove(buf, buf + off, (size_t)v.n_bytes);
    uint8_t *shrunk = realloc(buf, v.n_bytes > 0 ? (size_t)v.n_bytes : 1);
    out->bytes = shrunk != NULL ? shrunk : buf;
    buf = NULL;
out:
    free(buf);
    env->close(env, f);
    return rv;
}

int snap_load_latest(struct env *env, const char *dir, struct raft_snapshot *out,
                     struct snap_info *info, char *msg, size_t msg_cap)
{
    CC_ASSERT(env != NULL);
    CC_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    snap__msg(msg, msg_cap, "%s", "");
    struct snap__list l = {.cap_snaps = SNAP_FILES_MAX};
    l.snaps = calloc(SNAP_FILES_MAX, sizeof(l.snaps[0]));
    if (l.snaps == NULL) {
        return SNAP_ENOMEM;
    }
    int rv = snap__list(env, dir, &l);
    if (rv != 0) {
        snap__msg(msg, msg_cap, "%s: cannot list snapshots: %s", dir, snap_strerror(rv));
        goto out;
    }
    rv = l.n_snaps == 0 ? SNAP_ENOENT : SNAP_ECORRUPT;
    for (uint32_t i = 0; i < l.n_snaps; i++) {
        char why[256] = "";
        const int r = snap_load(env, dir, l.snaps[i].name, out, why, sizeof(why));
        if (r == SNAP_ENOMEM) {
            rv = r;
            break;
        }
        if (r != 0) {
            snap__msg_add(msg, msg_cap, "skipped corrupt snapshot %s; ", why);
            continue;
        }
        /* The rename that published it may not be durable yet if the writer crashed
         * between rename and directory sync; make it so before anyone relies on it. */
        if (env->sync_dir(env, dir) != 0) {
            snap_free(out);
            rv = SNAP_ESYNC;
            break;
        }
        if (info != NULL) {
            *info = l.snaps[i];
        }
        rv = 0;
        break;
    }
out:
    free(l.snaps);
    return rv;
}

void snap_free(struct raft_snapshot *s)
{
    if (s == NULL) {
        return;
    }
    free(s->bytes);
    memset(s, 0, sizeof(*s));
}

/* ---- prune ------------------------------------------------------------------------ */

int snap_prune(struct env *env, const char *dir, uint32_t keep_n, uint32_t *n_removed)
{
    CC_ASSERT(env != NULL);
    CC_ASSERT(dir != NULL);
    if (n_removed != NULL) {
        *n_removed = 0;
    }
    if (keep_n == 0) {
        return SNAP_EINVAL;
    }
    struct snap__list l = {.cap_snaps = SNAP_FILES_MAX, .want_tmps = true};
    l.snaps = calloc(SNAP_FILES_MAX, sizeof(l.snaps[0]));
    l.tmps = calloc(SNAP_FILES_MAX, sizeof(l.tmps[0]));
    int rv = SNAP_ENOMEM;
    if (l.snaps == NULL || l.tmps == NULL) {
        goto out;
    }
    rv = snap__list(env, dir, &l);
    if (rv != 0) {
        goto out;
    }
    uint32_t removed = 0;
    char path[ENV_PATH_MAX];
    for (uint32_t i = keep_n; i < l.n_snaps && rv == 0; i++) {
        rv = env_path_join(path, sizeof(path), dir, l.snaps[i].name);
        if (rv == 0) {
            rv = env->unlink(env, path);
        }
        removed += rv == 0;
    }
    for (uint32_t i = 0; i < l.n_tmps && rv == 0; i++) {
        rv = env_path_join(path, sizeof(path), dir, l.tmps[i]);
        if (rv == 0) {
            rv = env->unlink(env, path);
        }
        removed += rv == 0;
    }
    if (rv != 0) {
        rv = snap__env_error(rv);
    }
    if (removed > 0 && env->sync_dir(env, dir) != 0 && rv == 0) {
        rv = SNAP_ESYNC;
    }
    if (n_removed != NULL) {
        *n_removed = removed;
    }
out:
    free(l.snaps);
    free(l.tmps);
    return rv;
}
