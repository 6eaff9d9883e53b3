/* simfs.c -- in-memory, fault-injecting filesystem behind the env table (see simfs.h for
 * the model).
 *
 * Invariants:
 *   - An inode's current image equals its durable image with its pending ops applied in
 *     order. sync() applies the ops to the durable image and clears them; simfs_crash()
 *     applies a random prefix (the last kept write possibly torn) and clears them.
 *   - The current namespace equals the durable namespace with the pending directory ops
 *     applied in order. Directory ops are per parent directory, and a rename must stay
 *     in one directory, so applying the ops of one directory (sync_dir) or any prefix of
 *     all of them (a crash) always yields a consistent namespace.
 *   - A handle stays valid until a crash bumps the epoch; a stale handle fails with -EIO
 *     and is never dereferenced beyond its own struct, so inodes can be collected.
 *   - Nothing depends on addresses or the wall clock: inode ids are counters, listings
 *     are sorted with strcmp.
 *
 * Sections: types | byte images | namespaces | inodes and ops | space | env callbacks |
 * crash | public API.
 */
#include "simfs.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/prng.h"

/* ---- types ------------------------------------------------------------------------ */

enum simfs_op_kind { SIMFS_OP_WRITE = 1, SIMFS_OP_RESIZE = 2 };

struct simfs_op {
    uint8_t kind;
    uint64_t off;  /* WRITE: offset; RESIZE: new size */
    uint64_t n;    /* WRITE: length */
    uint8_t *data; /* WRITE: owned copy */
};

struct simfs_image {
    uint8_t *p;
    uint64_t n;
    uint64_t cap;
};

struct simfs_inode {
    uint64_t id;
    struct simfs_image cur;
    struct simfs_image dur;
    struct simfs_op *ops;
    uint32_t n_ops;
    uint32_t cap_ops;
    uint32_t n_open;
};

#define SIMFS_DIR_INO (-1) /* a namespace entry that is a directory */

struct simfs_dirent {
    char *path;
    int64_t ino; /* index into fs->inodes, or SIMFS_DIR_INO */
};

struct simfs_ns {
    struct simfs_dirent *e;
    uint32_t n;
    uint32_t cap;
};

enum simfs_dirop_kind { SIMFS_DIROP_LINK = 1, SIMFS_DIROP_UNLINK, SIMFS_DIROP_RENAME };

struct simfs_dirop {
    uint8_t kind;
    char *parent;
    char *a; /* LINK/UNLINK: the name; RENAME: from */
    char *b; /* RENAME: to */
    int64_t ino;
};

struct simfs {
    struct env env;
    pthread_mutex_t mu;
    struct prng prng;
    struct simfs_faults faults;
    uint32_t fail_next_syncs;
    uint64_t epoch;
    uint64_t next_inode_id;
    uint64_t now_ms;
    struct simfs_inode *inodes[SIMFS_FILES_MAX]; /* NULL = free slot */
    struct simfs_ns cur;
    struct simfs_ns dur;
    struct simfs_dirop *dirops;
    uint32_t n_dirops;
    uint32_t cap_dirops;
    struct simfs_stats stats;
};

struct env_file {
    struct simfs_inode *ino;
    uint64_t epoch;
    bool writable;
};

static void *simfs__xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    CC_ASSERT(q != NULL);
    return q;
}

static char *simfs__xstrdup(const char *s)
{
    const size_t n = strlen(s) + 1;
    char *d = simfs__xrealloc(NULL, n);
    memcpy(d, s, n);
    return d;
}

static struct simfs *simfs__of(struct env *env)
{
    return env->impl;
}

/* ---- byte images ------------------------------------------------------------------ */

static void simfs__image_resize(struct simfs_image *im, uint64_t n)
{
    if (n > im->cap) {
        uint64_t cap = im->cap ? im->cap : 256;
        while (cap < n) {
            cap *= 2;
        }
        CC_ASSERT(cap <= SIZE_MAX);
        im->p = simfs__xrealloc(im->p, (size_t)cap);
        im->cap = cap;
    }
    if (n > im->n) {
        memset(im->p + im->n, 0, (size_t)(n - im->n));
    }
    im->n = n;
}

static void simfs__image_write(struct simfs_image *im, uint64_t off, const uint8_t *d, uint64_t n)
{
    if (off + n > im->n) {
        simfs__image_resize(im, off + n);
    }
    if (n > 0) {
        memcpy(im->p + off, d, (size_t)n);
    }
}

static void simfs__image_copy(struct simfs_image *dst, const struct simfs_image *src)
{
    dst->n = 0;
    simfs__image_resize(dst, src->n);
    if (src->n > 0) {
        memcpy(dst->p, src->p, (size_t)src->n);
    }
}

/* ---- namespaces ------------------------------------------------------------------- */

static bool simfs__is_root(const char *path)
{
    return strcmp(path, ".") == 0 || strcmp(path, "/") == 0 || path[0] == '\0';
}

static void simfs__parent(const char *path, char *buf)
{
    const int rv = env_path_parent(buf, ENV_PATH_MAX, path);
    CC_ASSERT(rv == 0);
}

static int64_t simfs__ns_find(const struct simfs_ns *ns, const char *path)
{
    for (uint32_t i = 0; i < ns->n; i++) {
        if (strcmp(ns->e[i].path, path) == 0) {
            return i;
        }
    }
    return -1;
}

static void simfs__ns_add(struct simfs_ns *ns, const char *path, int64_t ino)
{
    CC_ASSERT(simfs__ns_find(ns, path) < 0);
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 16;
        ns->e = simfs__xrealloc(ns->e, ns->cap * sizeof(ns->e[0]));
    }
    ns->e[ns->n].path = simfs__xstrdup(path);
    ns->e[ns->n].ino = ino;
    ns->n++;
}

static void simfs__ns_remove_at(struct simfs_ns *ns, uint32_t i)
{
    free(ns->e[i].path);
    ns->e[i] = ns->e[ns->n - 1];
    ns->n--;
}

static void simfs__ns_clear(struct simfs_ns *ns)
{
    for (uint32_t i = 0; i < ns->n; i++) {
        free(ns->e[i].path);
    }
    ns->n = 0;
}

static void simfs__ns_copy(struct simfs_ns *dst, const struct simfs_ns *src)
{
    simfs__ns_clear(dst);
    for (uint32_t i = 0; i < src->n; i++) {
        simfs__ns_add(dst, src->e[i].path, src->e[i].ino);
    }
}

static bool simfs__dir_exists(const struct simfs_ns *ns, const char *path)
{
    if (simfs__is_root(path)) {
        return true;
    }
    const int64_t i = simfs__ns_find(ns, path);
    return i >= 0 && ns->e[i].ino == SIMFS_DIR_INO;
}

static void simfs__ns_apply(struct simfs_ns *ns, const struct simfs_dirop *op)
{
    const int64_t i = simfs__ns_find(ns, op->a);
    switch (op->kind) {
    case SIMFS_DIROP_LINK:
        if (i < 0) {
            simfs__ns_add(ns, op->a, op->ino);
        } else {
            ns->e[i].ino = op->ino;
        }
        break;
    case SIMFS_DIROP_UNLINK:
        if (i >= 0) {
            simfs__ns_remove_at(ns, (uint32_t)i);
        }
        break;
    case SIMFS_DIROP_RENAME:
        if (i >= 0) {
            const int64_t ino = ns->e[i].ino;
            simfs__ns_remove_at(ns, (uint32_t)i);
            const int64_t j = simfs__ns_find(ns, op->b);
            if (j >= 0) {
                simfs__ns_remove_at(ns, (uint32_t)j);
            }
            simfs__ns_add(ns, op->b, ino);
        }
        break;
    default:
        CC_UNREACHABLE();
    }
}

static void simfs__dirop_free(struct simfs_dirop *op)
{
    free(op->parent);
    free(op->a);
    free(op->b);
}

/* Applies the oldest k pending directory ops to the durable namespace and drops them. */
static void simfs__dirops_commit_prefix(struct simfs *fs, uint32_t k)
{
    CC_ASSERT(k <= fs->n_dirops);
    for (uint32_t i = 0; i < k; i++) {
        simfs__ns_apply(&fs->dur, &fs->dirops[i]);
        simfs__dirop_free(&fs->dirops[i]);
    }
    if (k > 0 && k < fs->n_dirops) {
        memmove(fs->dirops, fs->dirops + k, (fs->n_dirops - k) * sizeof(fs->dirops[0]));
    }
    fs->n_dirops -= k;
}

static void simfs__dirop_push(struct simfs *fs, uint8_t kind, const char *a, const char *b,
                              int64_t ino)
{
    if (fs->n_dirops == SIMFS_DIROPS_MAX) {
        simfs__dirops_commit_prefix(fs, SIMFS_DIROPS_MAX / 2); /* writeback */
    }
    if (fs->n_dirops == fs->cap_dirops) {
        fs->cap_dirops = fs->cap_dirops ? fs->cap_dirops * 2 : 16;
        fs->dirops = simfs__xrealloc(fs->dirops, fs->cap_dirops * sizeof(fs->dirops[0]));
    }
    char parent[ENV_PATH_MAX];
    simfs__parent(a, parent);
    struct simfs_dirop *op = &fs->dirops[fs->n_dirops++];
    op->kind = kind;
    op->parent = simfs__xstrdup(parent);
    op->a = simfs__xstrdup(a);
    op->b = b ? simfs__xstrdup(b) : NULL;
    op->ino = ino;
    simfs__ns_apply(&fs->cur, op);
}

/* ---- inodes and ops --------------------------------------------------------------- */

static void simfs__op_apply(struct simfs_image *im, const struct simfs_op *op)
{
    if (op->kind == SIMFS_OP_WRITE) {
        simfs__image_write(im, op->off, op->data, op->n);
    } else {
        simfs__image_resize(im, op->off);
    }
}

static void simfs__ops_commit_prefix(struct simfs_inode *ino, uint32_t k)
{
    CC_ASSERT(k <= ino->n_ops);
    for (uint32_t i = 0; i < k; i++) {
        simfs__op_apply(&ino->dur, &ino->ops[i]);
        free(ino->ops[i].data);
    }
    if (k > 0 && k < ino->n_ops) {
        memmove(ino->ops, ino->ops + k, (ino->n_ops - k) * sizeof(ino->ops[0]));
    }
    ino->n_ops -= k;
}

static void simfs__ops_drop(struct simfs_inode *ino)
{
    for (uint32_t i = 0; i < ino->n_ops; i++) {
        free(ino->ops[i].data);
    }
    ino->n_ops = 0;
}

/* Records op (taking ownership of data) and applies it to the current image. */
static void simfs__op_push(struct simfs_inode *ino, uint8_t kind, uint64_t off, uint64_t n,
                           uint8_t *data)
{
    if (ino->n_ops == SIMFS_OPS_MAX) {
        simfs__ops_commit_prefix(ino, SIMFS_OPS_MAX / 2); /* writeback */
    }
    if (ino->n_ops == ino->cap_ops) {
        ino->cap_ops = ino->cap_ops ? ino->cap_ops * 2 : 8;
        ino->ops = simfs__xrealloc(ino->ops, ino->cap_ops * sizeof(ino->ops[0]));
    }
    struct simfs_op *op = &ino->ops[ino->n_ops++];
    op->kind = kind;
    op->off = off;
    op->n = n;
    op->data = data;
    simfs__op_apply(&ino->cur, op);
}

static void simfs__inode_free(struct simfs_inode *ino)
{
    simfs__ops_drop(ino);
    free(ino->ops);
    free(ino->cur.p);
    free(ino->dur.p);
    free(ino);
}

static int64_t simfs__inode_new(struct simfs *fs)
{
    for (int64_t i = 0; i < SIMFS_FILES_MAX; i++) {
        if (fs->inodes[i] == NULL) {
            struct simfs_inode *ino = simfs__xrealloc(NULL, sizeof(*ino));
            memset(ino, 0, sizeof(*ino));
            ino->id = fs->next_inode_id++;
            fs->inodes[i] = ino;
            return i;
        }
    }
    return -1;
}

/* The inode a path names in the current namespace, or NULL. */
static struct simfs_inode *simfs__lookup(struct simfs *fs, const char *path)
{
    const int64_t i = simfs__ns_find(&fs->cur, path);
    if (i < 0 || fs->cur.e[i].ino == SIMFS_DIR_INO) {
        return NULL;
    }
    return fs->inodes[fs->cur.e[i].ino];
}

static bool simfs__ns_refs(const struct simfs_ns *ns, int64_t ino)
{
    for (uint32_t i = 0; i < ns->n; i++) {
        if (ns->e[i].ino == ino) {
            return true;
        }
    }
    return false;
}

/* Frees inodes that no name (current, durable or pending) and no handle reaches. */
static void simfs__gc(struct simfs *fs)
{
    for (int64_t i = 0; i < SIMFS_FILES_MAX; i++) {
        struct simfs_inode *ino = fs->inodes[i];
        if (ino == NULL || ino->n_open > 0 || simfs__ns_refs(&fs->cur, i) ||
            simfs__ns_refs(&fs->dur, i)) {
            continue;
        }
        bool pending = false;
        for (uint32_t k = 0; k < fs->n_dirops && !pending; k++) {
            pending = fs->dirops[k].kind == SIMFS_DIROP_LINK && fs->dirops[k].ino == i;
        }
        if (!pending) {
            simfs__inode_free(ino);
            fs->inodes[i] = NULL;
        }
    }
}

/* ---- space ------------------------------------------------------------------------ */

static uint64_t simfs__used(struct simfs *fs)
{
    uint64_t used = 0;
    for (int64_t i = 0; i < SIMFS_FILES_MAX; i++) {
        const struct simfs_inode *ino = fs->inodes[i];
        if (ino != NULL && (ino->n_open > 0 || simfs__ns_refs(&fs->cur, i))) {
            used += ino->cur.n;
        }
    }
    return used;
}

/* How many bytes the file may grow by before the disk is full. */
static uint64_t simfs__room(struct simfs *fs)
{
    if (fs->faults.capacity_bytes == 0) {
        return UINT64_MAX;
    }
    const uint64_t used = simfs__used(fs);
    return used >= fs->faults.capacity_bytes ? 0 : fs->faults.capacity_bytes - used;
}

/* ---- env callbacks ---------------------------------------------------------------- */

/* Validates a handle under the lock: -EIO when a crash made it stale. */
static int simfs__check(struct simfs *fs, struct env_file *f, bool write)
{
    CC_ASSERT(f != NULL);
    if (f->epoch != fs->epoch) {
        return -EIO;
    }
    if (write && !f->writable) {
        return -EBADF;
    }
    return 0;
}

static int simfs_open(struct env *env, const char *path, int flags, struct env_file **out)
{
    struct simfs *fs = simfs__of(env);
    CC_ASSERT(path != NULL);
    CC_ASSERT(out != NULL);
    if (strlen(path) >= ENV_PATH_MAX) {
        return -ENAMETOOLONG;
    }
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    const int64_t at = simfs__ns_find(&fs->cur, path);
    int64_t slot;
    if (at >= 0) {
        slot = fs->cur.e[at].ino;
        if (slot == SIMFS_DIR_INO) {
            rv = -EISDIR;
            goto out;
        }
        if ((flags & ENV_OPEN_CREATE) && (flags & ENV_OPEN_EXCL)) {
            rv = -EEXIST;
            goto out;
        }
    } else {
        char parent[ENV_PATH_MAX];
        simfs__parent(path, parent);
        if (!(flags & ENV_OPEN_CREATE) || !simfs__dir_exists(&fs->cur, parent)) {
            rv = -ENOENT;
            goto out;
        }
        slot = simfs__inode_new(fs);
        if (slot < 0) {
            rv = -ENOSPC;
            goto out;
        }
        simfs__dirop_push(fs, SIMFS_DIROP_LINK, path, NULL, slot);
    }
    struct simfs_inode *ino = fs->inodes[slot];
    struct env_file *f = simfs__xrealloc(NULL, sizeof(*f));
    f->ino = ino;
    f->epoch = fs->epoch;
    f->writable = (flags & (ENV_OPEN_WRITE | ENV_OPEN_CREATE | ENV_OPEN_TRUNC)) != 0;
    ino->n_open++;
    if ((flags & ENV_OPEN_TRUNC) && ino->cur.n > 0) {
        simfs__op_push(ino, SIMFS_OP_RESIZE, 0, 0, NULL);
    }
    *out = f;
out:
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_close(struct env *env, struct env_file *f)
{
    struct simfs *fs = simfs__of(env);
    CC_ASSERT(f != NULL);
    pthread_mutex_lock(&fs->mu);
    if (f->epoch == fs->epoch) {
        CC_ASSERT(f->ino->n_open > 0);
        f->ino->n_open--;
        if (f->ino->n_open == 0) {
            simfs__gc(fs);
        }
    }
    pthread_mutex_unlock(&fs->mu);
    free(f);
    return 0;
}

static int simfs_read_at(struct env *env, struct env_file *f, uint64_t offset, void *buf, size_t n,
                         size_t *n_read)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = simfs__check(fs, f, false);
    if (rv == 0) {
        const struct simfs_image *im = &f->ino->cur;
        size_t got = 0;
        if (offset < im->n) {
            got = (size_t)(im->n - offset < n ? im->n - offset : n);
            memcpy(buf, im->p + offset, got);
        }
        *n_read = got;
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_write_at(struct env *env, struct env_file *f, uint64_t offset, const void *buf,
                          size_t n)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = simfs__check(fs, f, true);
    if (rv != 0 || n == 0) {
        goto out;
    }
    struct simfs_inode *ino = f->ino;
    uint64_t len = n;
    if (offset + n > ino->cur.n) {
        const uint64_t room = simfs__room(fs);
        if (room != UINT64_MAX && offset + n > ino->cur.n + room) {
            /* A short write, then ENOSPC: the prefix that fits lands. */
            const uint64_t limit = ino->cur.n + room;
            len = limit > offset ? limit - offset : 0;
            rv = -ENOSPC;
        }
    }
    if (len > 0) {
        uint8_t *copy = simfs__xrealloc(NULL, (size_t)len);
        memcpy(copy, buf, (size_t)len);
        simfs__op_push(ino, SIMFS_OP_WRITE, offset, len, copy);
        fs->stats.n_writes++;
        fs->stats.n_bytes_written += len;
    }
out:
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

/* One injected sync failure? Consumes the deterministic queue first. */
static bool simfs__sync_fails(struct simfs *fs)
{
    if (fs->faults.sync_eio_per_million > 0 &&
        prng_chance(&fs->prng, fs->faults.sync_eio_per_million)) {
        return true;
    }
    if (fs->fail_next_syncs > 0) {
        fs->fail_next_syncs--;
        return true;
    }
    return false;
}

static int simfs_sync(struct env *env, struct env_file *f)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = simfs__check(fs, f, false);
    if (rv == 0) {
        struct simfs_inode *ino = f->ino;
        if (simfs__sync_fails(fs)) {
            /* fsyncgate: some writes reach the disk, the rest are marked clean and
             * remain only in the page cache (the current image). */
            simfs__ops_commit_prefix(ino, (uint32_t)prng_below(&fs->prng, ino->n_ops + 1u));
            simfs__ops_drop(ino);
            fs->stats.n_sync_failures++;
            rv = -EIO;
        } else {
            simfs__ops_commit_prefix(ino, ino->n_ops);
            fs->stats.n_syncs++;
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_truncate(struct env *env, struct env_file *f, uint64_t size)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = simfs__check(fs, f, true);
    if (rv == 0) {
        struct simfs_inode *ino = f->ino;
        if (size > ino->cur.n && size - ino->cur.n > simfs__room(fs)) {
            rv = -ENOSPC;
        } else if (size != ino->cur.n) {
            simfs__op_push(ino, SIMFS_OP_RESIZE, size, 0, NULL);
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_allocate(struct env *env, struct env_file *f, uint64_t offset, uint64_t n)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = simfs__check(fs, f, true);
    if (rv == 0) {
        struct simfs_inode *ino = f->ino;
        const uint64_t end = offset + n;
        if (end > ino->cur.n) {
            if (end - ino->cur.n > simfs__room(fs)) {
                rv = -ENOSPC; /* posix_fallocate reserves all or nothing */
            } else {
                simfs__op_push(ino, SIMFS_OP_RESIZE, end, 0, NULL);
            }
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_size(struct env *env, struct env_file *f, uint64_t *size_out)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = simfs__check(fs, f, false);
    if (rv == 0) {
        *size_out = f->ino->cur.n;
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_rename(struct env *env, const char *from, const char *to)
{
    struct simfs *fs = simfs__of(env);
    char pa[ENV_PATH_MAX];
    char pb[ENV_PATH_MAX];
    if (strlen(from) >= ENV_PATH_MAX || strlen(to) >= ENV_PATH_MAX) {
        return -ENAMETOOLONG;
    }
    simfs__parent(from, pa);
    simfs__parent(to, pb);
    if (strcmp(pa, pb) != 0) {
        return -EXDEV; /* the model keeps every directory op inside one directory */
    }
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    const int64_t i = simfs__ns_find(&fs->cur, from);
    const int64_t j = simfs__ns_find(&fs->cur, to);
    if (i < 0) {
        rv = -ENOENT;
    } else if (fs->cur.e[i].ino == SIMFS_DIR_INO || (j >= 0 && fs->cur.e[j].ino == SIMFS_DIR_INO)) {
        rv = -EISDIR;
    } else if (strcmp(from, to) != 0) {
        simfs__dirop_push(fs, SIMFS_DIROP_RENAME, from, to, 0);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_unlink(struct env *env, const char *path)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    const int64_t i = simfs__ns_find(&fs->cur, path);
    if (i < 0) {
        rv = -ENOENT;
    } else if (fs->cur.e[i].ino == SIMFS_DIR_INO) {
        rv = -EISDIR;
    } else {
        simfs__dirop_push(fs, SIMFS_DIROP_UNLINK, path, NULL, 0);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_mkdir(struct env *env, const char *path)
{
    struct simfs *fs = simfs__of(env);
    if (strlen(path) >= ENV_PATH_MAX) {
        return -ENAMETOOLONG;
    }
    char parent[ENV_PATH_MAX];
    simfs__parent(path, parent);
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    if (simfs__is_root(path) || simfs__ns_find(&fs->cur, path) >= 0) {
        rv = -EEXIST;
    } else if (!simfs__dir_exists(&fs->cur, parent)) {
        rv = -ENOENT;
    } else {
        simfs__dirop_push(fs, SIMFS_DIROP_LINK, path, NULL, SIMFS_DIR_INO);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs_sync_dir(struct env *env, const char *path)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    if (!simfs__dir_exists(&fs->cur, path)) {
        rv = -ENOENT;
        goto out;
    }
    const bool fail = simfs__sync_fails(fs);
    /* Make this directory's ops durable, in order; a failing sync commits a prefix. */
    uint32_t budget = fail ? (uint32_t)prng_below(&fs->prng, fs->n_dirops + 1u) : fs->n_dirops;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < fs->n_dirops; i++) {
        struct simfs_dirop *op = &fs->dirops[i];
        if (strcmp(op->parent, path) == 0 && budget > 0) {
            budget--;
            simfs__ns_apply(&fs->dur, op);
            simfs__dirop_free(op);
        } else {
            fs->dirops[keep++] = *op;
        }
    }
    fs->n_dirops = keep;
    simfs__gc(fs);
    if (fail) {
        fs->stats.n_sync_failures++;
        rv = -EIO;
    } else {
        fs->stats.n_sync_dirs++;
    }
out:
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int simfs__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int simfs_list_dir(struct env *env, const char *path, void *arg, env_list_cb cb)
{
    struct simfs *fs = simfs__of(env);
    CC_ASSERT(cb != NULL);
    pthread_mutex_lock(&fs->mu);
    if (!simfs__dir_exists(&fs->cur, path)) {
        pthread_mutex_unlock(&fs->mu);
        return -ENOENT;
    }
    /* Collect names under the lock, call back without it (cb may use the env). */
    char **names = NULL;
    uint32_t n = 0;
    char parent[ENV_PATH_MAX];
    for (uint32_t i = 0; i < fs->cur.n; i++) {
        simfs__parent(fs->cur.e[i].path, parent);
        if (strcmp(parent, path) != 0) {
            continue;
        }
        const char *slash = strrchr(fs->cur.e[i].path, '/');
        names = simfs__xrealloc(names, (n + 1) * sizeof(names[0]));
        names[n++] = simfs__xstrdup(slash ? slash + 1 : fs->cur.e[i].path);
    }
    pthread_mutex_unlock(&fs->mu);
    if (n > 1) {
        qsort(names, n, sizeof(names[0]), simfs__cmp_str);
    }
    int rv = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (rv == 0) {
            rv = cb(arg, names[i]);
        }
        free(names[i]);
    }
    free(names);
    return rv;
}

static uint64_t simfs_mono_ms(struct env *env);

static uint64_t simfs_mono_us(struct env *env)
{
    return simfs_mono_ms(env) * 1000u;
}

static uint64_t simfs_mono_ms(struct env *env)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    const uint64_t now = fs->now_ms;
    pthread_mutex_unlock(&fs->mu);
    return now;
}

static uint64_t simfs_wall_ms(struct env *env)
{
    return SIMFS_WALL_BASE_MS + simfs_mono_ms(env);
}

static int simfs_random_bytes(struct env *env, void *buf, size_t n)
{
    struct simfs *fs = simfs__of(env);
    pthread_mutex_lock(&fs->mu);
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)prng_next(&fs->prng);
    }
    pthread_mutex_unlock(&fs->mu);
    return 0;
}

/* ---- crash ------------------------------------------------------------------------ */

/* Keeps a random prefix of ino's unsynced ops; the write after it may land torn (a
 * prefix of its bytes), as a power cut in the middle of that write would leave it. */
static void simfs__crash_inode(struct simfs *fs, struct simfs_inode *ino)
{
    const uint32_t k = (uint32_t)prng_below(&fs->prng, ino->n_ops + 1u);
    for (uint32_t i = 0; i < k; i++) {
        simfs__op_apply(&ino->dur, &ino->ops[i]);
    }
    if (k < ino->n_ops) {
        const struct simfs_op *next = &ino->ops[k];
        if (next->kind == SIMFS_OP_WRITE && next->n > 1 &&
            prng_chance(&fs->prng, fs->faults.torn_write_per_million)) {
            const uint64_t part = 1 + prng_below(&fs->prng, next->n - 1);
            simfs__image_write(&ino->dur, next->off, next->data, part);
        }
    }
    simfs__ops_drop(ino);
    simfs__image_copy(&ino->cur, &ino->dur);
    ino->n_open = 0;
}

static void simfs__crash_locked(struct simfs *fs)
{
    simfs__dirops_commit_prefix(fs, (uint32_t)prng_below(&fs->prng, fs->n_dirops + 1u));
    for (uint32_t i = 0; i < fs->n_dirops; i++) {
        simfs__dirop_free(&fs->dirops[i]);
    }
    fs->n_dirops = 0;
    for (int64_t i = 0; i < SIMFS_FILES_MAX; i++) {
        struct simfs_inode *ino = fs->inodes[i];
        if (ino == NULL) {
            continue;
        }
        if (simfs__ns_refs(&fs->dur, i)) {
            simfs__crash_inode(fs, ino);
        } else {
            simfs__inode_free(ino);
            fs->inodes[i] = NULL;
        }
    }
    simfs__ns_copy(&fs->cur, &fs->dur);
    fs->epoch++;
    fs->stats.n_crashes++;
}

/* ---- public API ------------------------------------------------------------------- */

static const struct env simfs__table = {
    .impl = NULL,
    .open = simfs_open,
    .close = simfs_close,
    .read_at = simfs_read_at,
    .write_at = simfs_write_at,
    .sync = simfs_sync,
    .truncate = simfs_truncate,
    .allocate = simfs_allocate,
    .size = simfs_size,
    .rename = simfs_rename,
    .unlink = simfs_unlink,
    .mkdir = simfs_mkdir,
    .sync_dir = simfs_sync_dir,
    .list_dir = simfs_list_dir,
    .mono_ms = simfs_mono_ms,
    .mono_us = simfs_mono_us,
    .wall_ms = simfs_wall_ms,
    .random_bytes = simfs_random_bytes,
};

int simfs_new(uint64_t seed, struct simfs **out)
{
    CC_ASSERT(out != NULL);
    struct simfs *fs = calloc(1, sizeof(*fs));
    if (fs == NULL) {
        return -ENOMEM;
    }
    if (pthread_mutex_init(&fs->mu, NULL) != 0) {
        free(fs);
        return -ENOMEM;
    }
    fs->env = simfs__table;
    fs->env.impl = fs;
    prng_seed(&fs->prng, seed);
    fs->faults.torn_write_per_million = PRNG_PER_MILLION / 2;
    fs->now_ms = SIMFS_START_MS;
    fs->next_inode_id = 1;
    *out = fs;
    return 0;
}

void simfs_free(struct simfs *fs)
{
    if (fs == NULL) {
        return;
    }
    for (int64_t i = 0; i < SIMFS_FILES_MAX; i++) {
        if (fs->inodes[i] != NULL) {
            simfs__inode_free(fs->inodes[i]);
        }
    }
    for (uint32_t i = 0; i < fs->n_dirops; i++) {
        simfs__dirop_free(&fs->dirops[i]);
    }
    free(fs->dirops);
    simfs__ns_clear(&fs->cur);
    simfs__ns_clear(&fs->dur);
    free(fs->cur.e);
    free(fs->dur.e);
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}

struct env *simfs_env(struct simfs *fs)
{
    CC_ASSERT(fs != NULL);
    return &fs->env;
}

int simfs_clone(struct simfs *fs, uint64_t seed, struct simfs **out)
{
    struct simfs *c = NULL;
    int rv = simfs_new(seed, &c);
    if (rv != 0) {
        return rv;
    }
    pthread_mutex_lock(&fs->mu);
    c->faults = fs->faults;
    c->now_ms = fs->now_ms;
    c->next_inode_id = fs->next_inode_id;
    c->stats = fs->stats;
    for (int64_t i = 0; i < SIMFS_FILES_MAX; i++) {
        const struct simfs_inode *src = fs->inodes[i];
        if (src == NULL) {
            continue;
        }
        struct simfs_inode *dst = simfs__xrealloc(NULL, sizeof(*dst));
        memset(dst, 0, sizeof(*dst));
        dst->id = src->id;
        simfs__image_copy(&dst->cur, &src->cur);
        simfs__image_copy(&dst->dur, &src->dur);
        for (uint32_t k = 0; k < src->n_ops; k++) {
            const struct simfs_op *op = &src->ops[k];
            uint8_t *data = NULL;
            if (op->kind == SIMFS_OP_WRITE) {
                data = simfs__xrealloc(NULL, (size_t)op->n);
                memcpy(data, op->data, (size_t)op->n);
            }
            /* Copied as is: the cloned current image already has the op applied. */
            if (dst->n_ops == dst->cap_ops) {
                dst->cap_ops = dst->cap_ops ? dst->cap_ops * 2 : 8;
                dst->ops = simfs__xrealloc(dst->ops, dst->cap_ops * sizeof(dst->ops[0]));
            }
            dst->ops[dst->n_ops++] = (struct simfs_op){op->kind, op->off, op->n, data};
        }
        c->inodes[i] = dst;
    }
    simfs__ns_copy(&c->cur, &fs->cur);
    simfs__ns_copy(&c->dur, &fs->dur);
    for (uint32_t k = 0; k < fs->n_dirops; k++) {
        const struct simfs_dirop *op = &fs->dirops[k];
        if (c->n_dirops == c->cap_dirops) {
            c->cap_dirops = c->cap_dirops ? c->cap_dirops * 2 : 16;
            c->dirops = simfs__xrealloc(c->dirops, c->cap_dirops * sizeof(c->dirops[0]));
        }
        c->dirops[c->n_dirops++] =
            (struct simfs_dirop){op->kind, simfs__xstrdup(op->parent), simfs__xstrdup(op->a),
                                 op->b ? simfs__xstrdup(op->b) : NULL, op->ino};
    }
    pthread_mutex_unlock(&fs->mu);
    *out = c;
    return 0;
}

void simfs_set_faults(struct simfs *fs, const struct simfs_faults *faults)
{
    CC_ASSERT(faults->sync_eio_per_million <= PRNG_PER_MILLION);
    CC_ASSERT(faults->torn_write_per_million <= PRNG_PER_MILLION);
    pthread_mutex_lock(&fs->mu);
    fs->faults = *faults;
    pthread_mutex_unlock(&fs->mu);
}

void simfs_fail_next_syncs(struct simfs *fs, uint32_t n)
{
    pthread_mutex_lock(&fs->mu);
    fs->fail_next_syncs = n;
    pthread_mutex_unlock(&fs->mu);
}

void simfs_crash(struct simfs *fs)
{
    pthread_mutex_lock(&fs->mu);
    simfs__crash_locked(fs);
    pthread_mutex_unlock(&fs->mu);
}

int simfs_flip_bit(struct simfs *fs, const char *path, uint64_t offset, unsigned bit)
{
    CC_ASSERT(bit < 8);
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    struct simfs_inode *ino = simfs__lookup(fs, path);
    if (ino == NULL) {
        rv = -ENOENT;
    } else if (offset >= ino->cur.n && offset >= ino->dur.n) {
        rv = -EINVAL;
    } else {
        if (offset < ino->cur.n) {
            ino->cur.p[offset] ^= (uint8_t)(1u << bit);
        }
        if (offset < ino->dur.n) {
            ino->dur.p[offset] ^= (uint8_t)(1u << bit);
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

int simfs_zero_range(struct simfs *fs, const char *path, uint64_t offset, uint64_t n)
{
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    struct simfs_inode *ino = simfs__lookup(fs, path);
    if (ino == NULL) {
        rv = -ENOENT;
    } else if (offset > ino->cur.n) {
        rv = -EINVAL;
    } else {
        struct simfs_image *ims[2] = {&ino->cur, &ino->dur};
        for (int k = 0; k < 2; k++) {
            if (offset < ims[k]->n) {
                const uint64_t end = offset + n < ims[k]->n ? offset + n : ims[k]->n;
                memset(ims[k]->p + offset, 0, (size_t)(end - offset));
            }
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

int simfs_set_size(struct simfs *fs, const char *path, uint64_t size)
{
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    struct simfs_inode *ino = simfs__lookup(fs, path);
    if (ino == NULL) {
        rv = -ENOENT;
    } else {
        simfs__ops_drop(ino);
        simfs__image_resize(&ino->cur, size);
        simfs__image_copy(&ino->dur, &ino->cur);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

bool simfs_exists(struct simfs *fs, const char *path)
{
    pthread_mutex_lock(&fs->mu);
    const bool yes = simfs__is_root(path) || simfs__ns_find(&fs->cur, path) >= 0;
    pthread_mutex_unlock(&fs->mu);
    return yes;
}

int simfs_file_size(struct simfs *fs, const char *path, uint64_t *size_out)
{
    pthread_mutex_lock(&fs->mu);
    int rv = 0;
    const struct simfs_inode *ino = simfs__lookup(fs, path);
    if (ino == NULL) {
        rv = -ENOENT;
    } else {
        *size_out = ino->cur.n;
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

uint64_t simfs_used_bytes(struct simfs *fs)
{
    pthread_mutex_lock(&fs->mu);
    const uint64_t used = simfs__used(fs);
    pthread_mutex_unlock(&fs->mu);
    return used;
}

void simfs_get_stats(struct simfs *fs, struct simfs_stats *out)
{
    pthread_mutex_lock(&fs->mu);
    *out = fs->stats;
    pthread_mutex_unlock(&fs->mu);
}

void simfs_advance_ms(struct simfs *fs, uint64_t ms)
{
    pthread_mutex_lock(&fs->mu);
    fs->now_ms += ms;
    pthread_mutex_unlock(&fs->mu);
}
