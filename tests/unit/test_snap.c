/* test_snap.c -- unit tests for storage/snap: round trip, newest-valid loading with
 * fall-back past corrupt files (every flipped bit, every truncation), temp files left by
 * a crash, pruning, a full disk and a failed fsync.
 *
 * All on sim/simfs except a smoke test on env_posix under /tmp. The rule checked
 * throughout: snap_load_latest never returns a corrupt snapshot.
 *
 * Sections: helpers | codec | save and load | corruption | crashes and temp files |
 * prune | disk errors | posix smoke | main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/env.h"
#include "simfs.h"
#include "storage/snap.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define DIR "/data"

#define OK(expr)                                                                   \
    do {                                                                           \
        const int ok_rv_ = (expr);                                                 \
        if (ok_rv_ != 0) {                                                         \
            fail_msg("%s returned %d (%s)", #expr, ok_rv_, snap_strerror(ok_rv_)); \
        }                                                                          \
    } while (0)

/* A snapshot whose payload follows from its index. */
static struct raft_snapshot make_snap(uint64_t index, uint64_t term, uint8_t *buf, size_t n)
{
    struct raft_snapshot s;
    memset(&s, 0, sizeof(s));
    s.index = index;
    s.term = term;
    s.config.n_servers = 3;
    for (uint32_t i = 0; i < 3; i++) {
        s.config.servers[i].id = i + 1;
        s.config.servers[i].role = i < 2 ? RAFT_VOTER : RAFT_LEARNER;
    }
    for (size_t k = 0; k < n; k++) {
        buf[k] = (uint8_t)(index * 7 + k * 13);
    }
    s.n_bytes = n;
    s.bytes = n ? buf : NULL;
    return s;
}

static bool snap_matches(const struct raft_snapshot *got, uint64_t index, uint64_t term, size_t n)
{
    if (got->index != index || got->term != term || got->n_bytes != n ||
        got->config.n_servers != 3 || got->config.servers[2].role != RAFT_LEARNER) {
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        if (got->bytes[k] != (uint8_t)(index * 7 + k * 13)) {
            return false;
        }
    }
    return true;
}

static struct simfs *new_fs(uint64_t seed)
{
    struct simfs *fs;
    OK(simfs_new(seed, &fs));
    OK(simfs_env(fs)->mkdir(simfs_env(fs), DIR));
    OK(simfs_env(fs)->sync_dir(simfs_env(fs), "/"));
    return fs;
}

static void save(struct simfs *fs, uint64_t index, uint64_t term, size_t n)
{
    uint8_t buf[512];
    assert_true(n <= sizeof(buf));
    const struct raft_snapshot s = make_snap(index, term, buf, n);
    char msg[SNAP_MSG_BYTES];
    OK(snap_save(simfs_env(fs), DIR, &s, msg, sizeof(msg)));
}

static void snap_path(char *path, uint64_t index, uint64_t term)
{
    char name[SNAP_NAME_BYTES];
    snprintf(name, sizeof(name), "snap-%016llx-%016llx.snap", (unsigned long long)index,
             (unsigned long long)term);
    OK(env_path_join(path, ENV_PATH_MAX, DIR, name));
}

/* ---- codec ------------------------------------------------------------------------ */

static void test_codec(void **state)
{
    uint8_t payload[100];
    const struct raft_snapshot s = make_snap(42, 7, payload, sizeof(payload));
    uint8_t file[SNAP_HEADER_BYTES_MAX + sizeof(payload) + SNAP_TRAILER_BYTES];
    size_t n_header = 0;
    OK(snap_encode_header(&s, file, sizeof(file), &n_header));
    memcpy(file + n_header, payload, sizeof(payload));
    /* the trailer: crc of everything before it, computed as snap_save does */
    struct simfs *fs = new_fs(1);
    save(fs, 42, 7, sizeof(payload));
    char path[ENV_PATH_MAX];
    snap_path(path, 42, 7);
    uint64_t size;
    OK(simfs_file_size(fs, path, &size));
    assert_int_equal(size, n_header + sizeof(payload) + SNAP_TRAILER_BYTES);
    struct env *env = simfs_env(fs);
    struct env_file *f;
    OK(env->open(env, path, ENV_OPEN_READ, &f));
    OK(env_read_exact(env, f, 0, file, (size_t)size));
    env->close(env, f);
    struct snap_view v;
    OK(snap_decode(file, (size_t)size, &v, NULL));
    assert_int_equal(v.index, 42);
    assert_int_equal(v.term, 7);
    assert_int_equal(v.n_bytes, sizeof(payload));
    assert_memory_equal(v.bytes, payload, sizeof(payload));
    /* every truncation and every extension by a byte is refused */
    for (size_t cut = 0; cut < size; cut++) {
        const char *why = NULL;
        assert_int_equal(snap_decode(file, cut, &v, &why), SNAP_ECORRUPT);
        assert_non_null(why);
    }
    /* bad arguments */
    struct raft_snapshot bad = s;
    bad.index = 0;
    assert_int_equal(snap_encode_header(&bad, file, sizeof(file), &n_header), SNAP_EINVAL);
    bad = s;
    bad.config.servers[1].id = 1; /* duplicate id */
    assert_int_equal(snap_encode_header(&bad, file, sizeof(file), &n_header), SNAP_EINVAL);

    uint64_t i, t;
    assert_true(snap_parse_name("snap-000000000000002a-0000000000000007.snap", &i, &t));
    assert_int_equal(i, 42);
    assert_int_equal(t, 7);
    assert_false(snap_parse_name("snap-000000000000002a-0000000000000007.snap.tmp", &i, &t));
    assert_false(snap_parse_name("snap-000000000000002A-0000000000000007.snap", &i, &t));
    simfs_free(fs);
}

/* ---- save and load ---------------------------------------------------------------- */

static void test_round_trip_newest(void **state)
{
    struct simfs *fs = new_fs(2);
    struct raft_snapshot got;
    char msg[SNAP_MSG_BYTES];
    assert_int_equal(snap_load_latest(simfs_env(fs), DIR, &got, NULL, msg, sizeof(msg)),
                     SNAP_ENOENT);
    save(fs, 10, 1, 100);
    save(fs, 30, 2, 300);
    save(fs, 20, 2, 200);
    save(fs, 30, 3, 0); /* same index, newer term, empty payload */
    struct snap_info info;
    OK(snap_load_latest(simfs_env(fs), DIR, &got, &info, msg, sizeof(msg)));
    assert_true(snap_matches(&got, 30, 3, 0));
    assert_string_equal(info.name, "snap-000000000000001e-0000000000000003.snap");
    assert_string_equal(msg, "");
    snap_free(&got);
    struct snap_info list[8];
    uint32_t n;
    OK(snap_list(simfs_env(fs), DIR, list, 8, &n));
    assert_int_equal(n, 4);
    assert_int_equal(list[0].index, 30);
    assert_int_equal(list[0].term, 3);
    assert_int_equal(list[3].index, 10);
    assert_int_equal(snap_list(simfs_env(fs), DIR, list, 2, &n), SNAP_ETOOMANY);
    simfs_free(fs);
}

/* ---- corruption ------------------------------------------------------------------- */

static void test_corrupt_falls_back_every_bit(void **state)
{
    struct simfs *fs = new_fs(3);
    save(fs, 10, 1, 64);
    save(fs, 20, 2, 64);
    char path[ENV_PATH_MAX];
    snap_path(path, 20, 2);
    uint64_t size;
    OK(simfs_file_size(fs, path, &size));
    for (uint64_t off = 0; off < size; off++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            struct simfs *c;
            OK(simfs_clone(fs, off, &c));
            OK(simfs_flip_bit(c, path, off, bit));
            struct raft_snapshot got;
            char msg[SNAP_MSG_BYTES];
            OK(snap_load_latest(simfs_env(c), DIR, &got, NULL, msg, sizeof(msg)));
            if (!snap_matches(&got, 10, 1, 64)) {
                fail_msg("flip at %llu.%u: did not fall back to the older snapshot",
                         (unsigned long long)off, bit);
            }
            assert_non_null(strstr(msg, "snap-0000000000000014-0000000000000002.snap"));
            snap_free(&got);
            simfs_free(c);
        }
    }
    /* truncated at every length, too */
    for (uint64_t cut = 0; cut < size; cut++) {
        struct simfs *c;
        OK(simfs_clone(fs, cut, &c));
        OK(simfs_set_size(c, path, cut));
        struct raft_snapshot got;
        OK(snap_load_latest(simfs_env(c), DIR, &got, NULL, NULL, 0));
        assert_true(snap_matches(&got, 10, 1, 64));
        snap_free(&got);
        simfs_free(c);
    }
    simfs_free(fs);
}

static void test_all_corrupt(void **state)
{
    struct simfs *fs = new_fs(4);
    save(fs, 10, 1, 64);
    char path[ENV_PATH_MAX];
    snap_path(path, 10, 1);
    OK(simfs_flip_bit(fs, path, 50, 0));
    struct raft_snapshot got;
    char msg[SNAP_MSG_BYTES];
    assert_int_equal(snap_load_latest(simfs_env(fs), DIR, &got, NULL, msg, sizeof(msg)),
                     SNAP_ECORRUPT);
    assert_non_null(strstr(msg, "checksum mismatch"));
    assert_null(got.bytes);
    simfs_free(fs);
}

/* A file renamed to another index is caught by the name check. */
static void test_name_mismatch(void **state)
{
    struct simfs *fs = new_fs(5);
    save(fs, 10, 1, 16);
    char from[ENV_PATH_MAX];
    char to[ENV_PATH_MAX];
    snap_path(from, 10, 1);
    snap_path(to, 99, 1);
    struct env *env = simfs_env(fs);
    OK(env->rename(env, from, to));
    struct raft_snapshot got;
    char msg[SNAP_MSG_BYTES];
    assert_int_equal(snap_load_latest(env, DIR, &got, NULL, msg, sizeof(msg)), SNAP_ECORRUPT);
    assert_non_null(strstr(msg, "header says index 10"));
    simfs_free(fs);
}

/* ---- crashes and temp files ------------------------------------------------------- */

static void test_saved_survives_crash(void **state)
{
    for (uint64_t seed = 1; seed <= 30; seed++) {
        struct simfs *fs = new_fs(seed);
        save(fs, 10, 1, 100);
        simfs_crash(fs);
        struct raft_snapshot got;
        OK(snap_load_latest(simfs_env(fs), DIR, &got, NULL, NULL, 0));
        assert_true(snap_matches(&got, 10, 1, 100));
        snap_free(&got);
        simfs_free(fs);
    }
}

static void test_temp_file_ignored(void **state)
{
    for (uint64_t seed = 1; seed <= 30; seed++) {
        struct simfs *fs = new_fs(seed);
        save(fs, 10, 1, 100);
        /* a newer snapshot was being written when the power went: its temp file, with
         * some random prefix of its bytes, is all that may be left */
        char path[ENV_PATH_MAX];
        char tmp[ENV_PATH_MAX + 8];
        snap_path(path, 20, 2);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        struct env *env = simfs_env(fs);
        struct env_file *f;
        OK(env->open(env, tmp, ENV_OPEN_CREATE, &f));
        uint8_t buf[300];
        const struct raft_snapshot s = make_snap(20, 2, buf, sizeof(buf));
        uint8_t header[SNAP_HEADER_BYTES_MAX];
        size_t n_header;
        OK(snap_encode_header(&s, header, sizeof(header), &n_header));
        OK(env->write_at(env, f, 0, header, n_header));
        OK(env->write_at(env, f, n_header, buf, sizeof(buf)));
        env->close(env, f);
        OK(env->sync_dir(env, DIR));
        simfs_crash(fs);
        struct raft_snapshot got;
        OK(snap_load_latest(env, DIR, &got, NULL, NULL, 0));
        assert_true(snap_matches(&got, 10, 1, 100));
        snap_free(&got);
        uint32_t removed = 0;
        OK(snap_prune(env, DIR, 2, &removed));
        assert_int_equal(removed, 1); /* the temp file */
        assert_false(simfs_exists(fs, tmp));
        simfs_free(fs);
    }
}

/* ---- prune ------------------------------------------------------------------------ */

static void test_prune_keeps_newest(void **state)
{
    struct simfs *fs = new_fs(6);
    for (uint64_t i = 1; i <= 6; i++) {
        save(fs, i * 10, i, 8);
    }
    uint32_t removed;
    assert_int_equal(snap_prune(simfs_env(fs), DIR, 0, &removed), SNAP_EINVAL);
    OK(snap_prune(simfs_env(fs), DIR, 2, &removed));
    assert_int_equal(removed, 4);
    struct snap_info list[8];
    uint32_t n;
    OK(snap_list(simfs_env(fs), DIR, list, 8, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].index, 60);
    assert_int_equal(list[1].index, 50);
    simfs_crash(fs); /* the removals were synced */
    OK(snap_list(simfs_env(fs), DIR, list, 8, &n));
    assert_int_equal(n, 2);
    simfs_free(fs);
}

/* ---- disk errors ------------------------------------------------------------------ */

static void test_enospc_and_sync_error(void **state)
{
    struct simfs *fs = new_fs(7);
    save(fs, 10, 1, 100);
    struct simfs_faults faults = {0};
    faults.capacity_bytes = simfs_used_bytes(fs) + 200;
    simfs_set_faults(fs, &faults);
    uint8_t buf[512];
    struct raft_snapshot s = make_snap(20, 2, buf, sizeof(buf));
    char msg[SNAP_MSG_BYTES];
    assert_int_equal(snap_save(simfs_env(fs), DIR, &s, msg, sizeof(msg)), SNAP_ENOSPC);
    char path[ENV_PATH_MAX];
    char tmp[ENV_PATH_MAX + 8];
    snap_path(path, 20, 2);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_false(simfs_exists(fs, tmp));
    assert_false(simfs_exists(fs, path));
    faults.capacity_bytes = 0;
    simfs_set_faults(fs, &faults);
    simfs_fail_next_syncs(fs, 1);
    assert_int_equal(snap_save(simfs_env(fs), DIR, &s, msg, sizeof(msg)), SNAP_ESYNC);
    assert_false(simfs_exists(fs, path)); /* never published */
    struct raft_snapshot got;
    OK(snap_load_latest(simfs_env(fs), DIR, &got, NULL, NULL, 0));
    assert_true(snap_matches(&got, 10, 1, 100));
    snap_free(&got);
    simfs_free(fs);
}

/* ---- posix smoke ------------------------------------------------------------------ */

static void test_posix_smoke(void **state)
{
    char tmpl[] = "/tmp/conclave-test-snap-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    struct env *env = env_posix();
    uint8_t buf[4096];
    for (uint64_t i = 1; i <= 3; i++) {
        const struct raft_snapshot s = make_snap(i * 100, i, buf, sizeof(buf));
        OK(snap_save(env, dir, &s, NULL, 0));
    }
    struct raft_snapshot got;
    OK(snap_load_latest(env, dir, &got, NULL, NULL, 0));
    assert_true(snap_matches(&got, 300, 3, sizeof(buf)));
    snap_free(&got);
    uint32_t removed;
    OK(snap_prune(env, dir, 1, &removed));
    assert_int_equal(removed, 2);
    OK(snap_prune(env, dir, 1, &removed)); /* nothing left to remove */
    assert_int_equal(removed, 0);
    char path[ENV_PATH_MAX];
    OK(env_path_join(path, sizeof(path), dir, "snap-000000000000012c-0000000000000003.snap"));
    OK(env->unlink(env, path));
    assert_int_equal(rmdir(dir), 0);
}

/* ---- main ------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_round_trip_newest),
        cmocka_unit_test(test_corrupt_falls_back_every_bit),
        cmocka_unit_test(test_all_corrupt),
        cmocka_unit_test(test_name_mismatch),
        cmocka_unit_test(test_saved_survives_crash),
        cmocka_unit_test(test_temp_file_ignored),
        cmocka_unit_test(test_prune_keeps_newest),
        cmocka_unit_test(test_enospc_and_sync_error),
        cmocka_unit_test(test_posix_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
