/* env.c -- helpers shared by every env table: error names and path building.
 *
 * Pure: no IO. The error names are a fixed table instead of strerror(), because
 * strerror() may consult the locale and is not guaranteed thread-safe, and because the
 * simulator wants byte-identical output on every host.
 *
 * Sections: errors | paths | reads.
 */
#include "base/env.h"

#include <errno.h>
#include <string.h>

#include "base/assert.h"

/* ---- errors ----------------------------------------------------------------------- */

struct env__errname {
    int code;
    const char *name;
};

static const struct env__errname env__errnames[] = {
    {ENOENT, "no such file or directory"},
    {EEXIST, "file exists"},
    {EIO, "input/output error"},
    {ENOSPC, "no space left on device"},
    {EDQUOT, "disk quota exceeded"},
    {ENAMETOOLONG, "file name too long"},
    {ENOMEM, "out of memory"},
    {EINVAL, "invalid argument"},
    {ENOTDIR, "not a directory"},
    {EISDIR, "is a directory"},
    {EXDEV, "cross-device link"},
    {EBADF, "bad file descriptor"},
    {EROFS, "read-only file system"},
    {EACCES, "permission denied"},
    {EPERM, "operation not permitted"},
    {ENOTEMPTY, "directory not empty"},
    {EMFILE, "too many open files"},
    {ENFILE, "too many open files in system"},
    {EFBIG, "file too large"},
    {EOPNOTSUPP, "operation not supported"},
    {EINTR, "interrupted system call"},
};

const char *env_strerror(int rv)
{
    if (rv == 0) {
        return "success";
    }
    for (size_t i = 0; i < sizeof(env__errnames) / sizeof(env__errnames[0]); i++) {
        if (-rv == env__errnames[i].code) {
            return env__errnames[i].name;
        }
    }
    return "unknown error";
}

/* ---- paths ------------------------------------------------------------------------ */

int env_path_join(char *buf, size_t cap, const char *dir, const char *name)
{
    CC_ASSERT(buf != NULL);
    CC_ASSERT(cap > 0);
    CC_ASSERT(dir != NULL);
    CC_ASSERT(name != NULL);
    size_t n_dir = strlen(dir);
    while (n_dir > 1 && dir[n_dir - 1] == '/') {
        n_dir--;
    }
    const size_t n_name = strlen(name);
    const int need_slash = !(n_dir == 1 && dir[0] == '/');
    if (n_dir + (size_t)need_slash + n_name + 1 > cap) {
        buf[0] = '\0';
        return -ENAMETOOLONG;
    }
    memcpy(buf, dir, n_dir);
    if (need_slash) {
        buf[n_dir] = '/';
    }
    memcpy(buf + n_dir + (size_t)need_slash, name, n_name + 1);
    return 0;
}

int env_path_parent(char *buf, size_t cap, const char *path)
{
    CC_ASSERT(buf != NULL);
    CC_ASSERT(cap > 0);
    CC_ASSERT(path != NULL);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') {
        n--;
    }
    size_t cut = n;
    while (cut > 0 && path[cut - 1] != '/') {
        cut--;
    }
    const char *src = ".";
    size_t len = 1;
    if (cut == 1) {
        src = "/";
    } else if (cut > 1) {
        src = path;
        len = cut - 1;
    }
    if (len + 1 > cap) {
        buf[0] = '\0';
        return -ENAMETOOLONG;
    }
    memcpy(buf, src, len);
    buf[len] = '\0';
    return 0;
}

/* ---- reads ------------------------------------------------------------------------ */

int env_read_exact(struct env *env, struct env_file *f, uint64_t offset, void *buf, size_t n)
{
    size_t got = 0;
    const int rv = env->read_at(env, f, offset, buf, n, &got);
    if (rv != 0) {
        return rv;
    }
    return got == n ? 0 : -EIO;
}
