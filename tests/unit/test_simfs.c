/* test_simfs.c -- unit tests for sim/simfs, the fault-injecting in-memory filesystem.
 *
 * The storage tests trust simfs to model a disk faithfully, so its own rules are pinned
 * here: synced data survives a crash; unsynced writes survive as a prefix (the last one
 * possibly torn) and nothing else; names are durable only after sync_dir; a failed fsync
 * can lose data that a later "successful" fsync does not bring back (fsyncgate); ENOSPC
 * writes the prefix that fits; stale handles fail; one seed gives one outcome.
 *
 * Sections: helpers | files | crashes | directories | faults | corruption | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "base/env.h"
#include "simfs.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define OK(expr) assert_int_equal((expr), 0)

static struct simfs *new_fs(uint64_t seed)
{
    struct simfs *fs;
    OK(simfs_new(seed, &fs));
    return fs;
}

static struct env_file *create(struct simfs *fs, const char *path)
{
    struct env *env = simfs_env(fs);
    struct env_file *f = NULL;
    OK(env->open(env, path, ENV_OPEN_CREATE, &f));
    return f;
}

/* Reads the whole current file into buf (cap bytes); returns its size. */
static size_t slurp(struct simfs *fs, const char *path, uint8_t *buf, size_t cap)
{
    struct env *env = simfs_env(fs);
    struct env_file *f = NULL;
    OK(env->open(env, path, ENV_OPEN_READ, &f));
    size_t n = 0;
    OK(env->read_at(env, f, 0, buf, cap, &n));
    OK(env->close(env, f));
    return n;
}

static int count_cb(void *arg, const char *name)
{
    (*(int *)arg)++;
    return 0;
}

/* ---- files ------------------------------------------------------------------------ */

static void test_read_write(void **state)
{
    struct simfs *fs = new_fs(1);
    struct env *env = simfs_env(fs);
    struct env_file *f = create(fs, "a");
    OK(env->write_at(env, f, 0, "hello", 5));
    OK(env->write_at(env, f, 10, "world", 5)); /* a hole reads as zeros */
    uint64_t size;
    OK(env->size(env, f, &size));
    assert_int_equal(size, 15);
    uint8_t buf[32];
    size_t n;
    OK(env->read_at(env, f, 0, buf, sizeof(buf), &n));
    assert_int_equal(n, 15);
    assert_memory_equal(buf, "hello\0\0\0\0\0world", 15);
    OK(env->read_at(env, f, 100, buf, sizeof(buf), &n));
    assert_int_equal(n, 0);
    OK(env->truncate(env, f, 3));
    OK(env->allocate(env, f, 0, 64));
    OK(env->size(env, f, &size));
    assert_int_equal(size, 64);
    OK(env->close(env, f));
    assert_int_equal(env->open(env, "missing", ENV_OPEN_READ, &f), -ENOENT);
    assert_int_equal(env->open(env, "a", ENV_OPEN_CREATE | ENV_OPEN_EXCL, &f), -EEXIST);
    OK(env->open(env, "a", ENV_OPEN_READ, &f));
    assert_int_equal(env->write_at(env, f, 0, "x", 1), -EBADF);
    OK(env->close(env, f));
    assert_int_equal(env->open(env, "nodir/a", ENV_OPEN_CREATE, &f), -ENOENT);
    simfs_free(fs);
}

/* ---- crashes ---------------------------------------------------------------------- */

static void test_synced_survives_crash(void **state)
{
    for (uint64_t seed = 1; seed <= 50; seed++) {
        struct simfs *fs = new_fs(seed);
        struct env *env = simfs_env(fs);
        struct env_file *f = create(fs, "/f");
        OK(env->write_at(env, f, 0, "durable", 7));
        OK(env->sync(env, f));
        OK(env->sync_dir(env, "/"));
        OK(env->write_at(env, f, 7, "-maybe", 6));
        simfs_crash(fs);
        /* the old handle is stale */
        assert_int_equal(env->write_at(env, f, 0, "x", 1), -EIO);
        assert_int_equal(env->sync(env, f), -EIO);
        OK(env->close(env, f));
        uint8_t buf[32];
        const size_t n = slurp(fs, "/f", buf, sizeof(buf));
        assert_true(n >= 7 && n <= 13);
        assert_memory_equal(buf, "durable-maybe", n); /* a prefix, maybe torn */
        simfs_free(fs);
    }
}

/* Unsynced writes survive as a prefix in order, the last one maybe torn; across seeds
 * every outcome shows up. */
static void test_unsynced_prefix(void **state)
{
    bool seen_none = false, seen_all = false, seen_torn = false;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct simfs *fs = new_fs(seed);
        struct env *env = simfs_env(fs);
        struct env_file *f = create(fs, "/f");
        OK(env->sync_dir(env, "/"));
        OK(env->sync(env, f));
        for (int i = 0; i < 4; i++) {
            OK(env->write_at(env, f, (uint64_t)i * 8, "ABCDEFGH", 8));
        }
        simfs_crash(fs);
        uint8_t buf[64];
        const size_t n = slurp(fs, "/f", buf, sizeof(buf));
        assert_true(n <= 32);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(buf[k], "ABCDEFGH"[k % 8]);
        }
        seen_none |= n == 0;
        seen_all |= n == 32;
        seen_torn |= n % 8 != 0;
        OK(env->close(env, f));
        simfs_free(fs);
    }
    assert_true(seen_none);
    assert_true(seen_all);
    assert_true(seen_torn);
}

static void test_deterministic(void **state)
{
    uint8_t out[2][64];
    size_t n[2];
    for (int run = 0; run < 2; run++) {
        struct simfs *fs = new_fs(42);
        struct env *env = simfs_env(fs);
        struct env_file *f = create(fs, "/f");
        OK(env->sync_dir(env, "/"));
        for (int i = 0; i < 8; i++) {
            OK(env->write_at(env, f, (uint64_t)i * 8, "01234567", 8));
        }
        simfs_crash(fs);
        n[run] = slurp(fs, "/f", out[run], sizeof(out[run]));
        OK(env->close(env, f));
        simfs_free(fs);
    }
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(out[0], out[1], n[0]);
}

/* ---- directories ------------------------------------------------------------------ */

static void test_names_need_sync_dir(void **state)
{
    bool lost = false, kept = false;
    for (uint64_t seed = 1; seed <= 100; seed++) {
        struct simfs *fs = new_fs(seed);
        struct env *env = simfs_env(fs);
        OK(env->mkdir(env, "/d"));
        assert_int_equal(env->mkdir(env, "/d"), -EEXIST);
        assert_int_equal(env->mkdir(env, "/x/y"), -ENOENT);
        OK(env->sync_dir(env, "/"));
        struct env_file *f = create(fs, "/d/synced");
        OK(env->sync(env, f));
        OK(env->close(env, f));
        OK(env->sync_dir(env, "/d"));
        f = create(fs, "/d/old");
        OK(env->close(env, f));
        OK(env->sync_dir(env, "/d"));
        f = create(fs, "/d/unsynced");
        OK(env->sync(env, f)); /* its data is durable, its name is not */
        OK(env->close(env, f));
        /* rename: after the crash exactly one of the two names exists */
        OK(env->rename(env, "/d/old", "/d/new"));
        simfs_crash(fs);
        assert_true(simfs_exists(fs, "/d/synced"));
        assert_true(simfs_exists(fs, "/d/old") != simfs_exists(fs, "/d/new"));
        lost |= !simfs_exists(fs, "/d/unsynced");
        kept |= simfs_exists(fs, "/d/unsynced");
        int n = 0;
        OK(env->list_dir(env, "/d", &n, count_cb));
        assert_true(n >= 2 && n <= 3);
        simfs_free(fs);
    }
    assert_true(lost);
    assert_true(kept);
}

static int collect_cb(void *arg, const char *name)
{
    char *out = arg;
    strcat(out, name);
    strcat(out, ",");
    return 0;
}

static void test_list_sorted_and_unlink(void **state)
{
    struct simfs *fs = new_fs(3);
    struct env *env = simfs_env(fs);
    OK(env->mkdir(env, "/d"));
    const char *names[] = {"/d/c", "/d/a", "/d/b"};
    for (int i = 0; i < 3; i++) {
        OK(env->close(env, create(fs, names[i])));
    }
    OK(env->unlink(env, "/d/b"));
    assert_int_equal(env->unlink(env, "/d/b"), -ENOENT);
    char out[64] = "";
    OK(env->list_dir(env, "/d", out, collect_cb));
    assert_string_equal(out, "a,c,");
    assert_int_equal(env->list_dir(env, "/nope", out, collect_cb), -ENOENT);
    assert_int_equal(env->rename(env, "/d/a", "/other"), -EXDEV);
    simfs_free(fs);
}

/* ---- faults ----------------------------------------------------------------------- */

/* fsyncgate: after a failed sync, a later sync "succeeds" but the lost pages stay lost. */
static void test_failed_sync_loses_data(void **state)
{
    bool lost = false;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        struct simfs *fs = new_fs(seed);
        struct env *env = simfs_env(fs);
        struct env_file *f = create(fs, "/f");
        OK(env->sync_dir(env, "/"));
        OK(env->write_at(env, f, 0, "payload!", 8));
        simfs_fail_next_syncs(fs, 1);
        assert_int_equal(env->sync(env, f), -EIO);
        OK(env->sync(env, f)); /* "success" */
        uint8_t buf[16];
        assert_int_equal(slurp(fs, "/f", buf, sizeof(buf)), 8); /* the cache still has it */
        simfs_crash(fs);
        lost |= slurp(fs, "/f", buf, sizeof(buf)) < 8;
        struct simfs_stats st;
        simfs_get_stats(fs, &st);
        assert_int_equal(st.n_sync_failures, 1);
        OK(env->close(env, f));
        simfs_free(fs);
    }
    assert_true(lost);
}

static void test_enospc(void **state)
{
    struct simfs *fs = new_fs(5);
    struct env *env = simfs_env(fs);
    struct simfs_faults faults = {0};
    faults.capacity_bytes = 100;
    simfs_set_faults(fs, &faults);
    struct env_file *f = create(fs, "/f");
    uint8_t buf[150];
    memset(buf, 'z', sizeof(buf));
    assert_int_equal(env->write_at(env, f, 0, buf, sizeof(buf)), -ENOSPC);
    uint64_t size;
    OK(env->size(env, f, &size));
    assert_int_equal(size, 100); /* the prefix that fit */
    assert_int_equal(simfs_used_bytes(fs), 100);
    OK(env->write_at(env, f, 0, buf, 50)); /* overwriting needs no space */
    OK(env->truncate(env, f, 40));
    assert_int_equal(env->allocate(env, f, 0, 200), -ENOSPC); /* all or nothing */
    OK(env->size(env, f, &size));
    assert_int_equal(size, 40);
    OK(env->allocate(env, f, 0, 100));
    OK(env->write_at(env, f, 60, buf, 40)); /* inside the allocation */
    OK(env->close(env, f));
    OK(env->unlink(env, "/f"));
    assert_int_equal(simfs_used_bytes(fs), 0);
    simfs_free(fs);
}

/* ---- corruption ------------------------------------------------------------------- */

static void test_corruption_helpers(void **state)
{
    struct simfs *fs = new_fs(6);
    struct env *env = simfs_env(fs);
    struct env_file *f = create(fs, "/f");
    OK(env->write_at(env, f, 0, "abcdef", 6));
    OK(env->sync(env, f));
    OK(env->sync_dir(env, "/"));
    OK(env->close(env, f));
    OK(simfs_flip_bit(fs, "/f", 0, 0)); /* 'a' ^ 1 == '`' */
    OK(simfs_zero_range(fs, "/f", 4, 10));
    assert_int_equal(simfs_flip_bit(fs, "/f", 6, 0), -EINVAL);
    assert_int_equal(simfs_flip_bit(fs, "/nope", 0, 0), -ENOENT);
    struct simfs *c;
    OK(simfs_clone(fs, 9, &c));
    OK(simfs_set_size(fs, "/f", 3));
    simfs_crash(fs); /* the changes are durable, as a disk's own would be */
    uint8_t buf[16];
    assert_int_equal(slurp(fs, "/f", buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "`bc", 3);
    /* the clone is independent */
    assert_int_equal(slurp(c, "/f", buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "`bcd\0\0", 6);
    uint64_t size;
    OK(simfs_file_size(c, "/f", &size));
    assert_int_equal(size, 6);
    simfs_free(c);
    simfs_free(fs);
}

static void test_clock_and_random(void **state)
{
    struct simfs *a = new_fs(7);
    struct simfs *b = new_fs(7);
    struct env *ea = simfs_env(a);
    struct env *eb = simfs_env(b);
    assert_int_equal(ea->mono_ms(ea), SIMFS_START_MS);
    simfs_advance_ms(a, 250);
    assert_int_equal(ea->mono_ms(ea), SIMFS_START_MS + 250);
    assert_int_equal(ea->wall_ms(ea), SIMFS_WALL_BASE_MS + SIMFS_START_MS + 250);
    uint8_t ra[16], rb[16];
    OK(ea->random_bytes(ea, ra, sizeof(ra)));
    OK(eb->random_bytes(eb, rb, sizeof(rb)));
    assert_memory_equal(ra, rb, sizeof(ra));
    simfs_free(a);
    simfs_free(b);
}

/* ---- main ------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_synced_survives_crash),
        cmocka_unit_test(test_unsynced_prefix),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_names_need_sync_dir),
        cmocka_unit_test(test_list_sorted_and_unlink),
        cmocka_unit_test(test_failed_sync_loses_data),
        cmocka_unit_test(test_enospc),
        cmocka_unit_test(test_corruption_helpers),
        cmocka_unit_test(test_clock_and_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
