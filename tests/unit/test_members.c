/* test_members.c -- unit tests for sm/members (the replicated member directory) and
 * sm/machine (the composite state machine that dispatches on a command's first byte).
 *
 * Codec round trips, strict decoding (truncation at every offset, trailing bytes, bad
 * tags and versions), the directory's rules (sorted, unique names, MEMBERS_MAX, replace,
 * delete), snapshot round trips of the whole machine (and the legacy bare-KV image),
 * and corrupt snapshot images (every truncation, repeated and unknown sections).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm/kvcmd.h"
#include "sm/machine.h"
#include "sm/members.h"

static struct members_entry entry(uint32_t id, const char *name, const char *peer,
                                  const char *http)
{
    struct members_entry e = {.id = id};
    snprintf(e.name, sizeof(e.name), "%s", name);
    snprintf(e.peer_addr, sizeof(e.peer_addr), "%s", peer);
    snprintf(e.http_addr, sizeof(e.http_addr), "%s", http);
    return e;
}

static int set(struct members *m, struct members_entry e)
{
    uint8_t buf[MEMBERS_CMD_BYTES_MAX];
    size_t n = 0;
    int rv = members_encode_set(&e, buf, sizeof(buf), &n);
    if (rv != 0)
        return rv;
    return members_apply(m, buf, n);
}

static void test_set_find_replace_delete(void **state)
{
    struct members m = {0};
    assert_int_equal(set(&m, entry(3, "n3", "127.0.0.1:3", "127.0.0.1:30")), 0);
    assert_int_equal(set(&m, entry(1, "n1", "127.0.0.1:1", "")), 0);
    assert_int_equal(set(&m, entry(2, "n2", "127.0.0.1:2", "127.0.0.1:20")), 0);
    assert_int_equal(m.n, 3);
    for (uint32_t i = 0; i < m.n; i++)
        assert_int_equal(m.e[i].id, i + 1); /* sorted by id */
    assert_string_equal(members_find(&m, 1)->http_addr, "");
    assert_int_equal(set(&m, entry(1, "n1", "127.0.0.1:1", "127.0.0.1:10")), 0); /* replace */
    assert_int_equal(m.n, 3);
    assert_string_equal(members_find(&m, 1)->http_addr, "127.0.0.1:10");
    assert_int_equal(members_find_name(&m, "n2")->id, 2);
    assert_null(members_find_name(&m, "n9"));
    /* a name held by another id is refused and changes nothing */
    struct members before = m;
    assert_int_equal(set(&m, entry(4, "n2", "127.0.0.1:4", "")), MEMBERS_ENAMETAKEN);
    assert_memory_equal(&before, &m, sizeof(m));
    uint8_t buf[16];
    size_t n = 0;
    assert_int_equal(members_encode_del(2, buf, sizeof(buf), &n), 0);
    assert_int_equal(members_apply(&m, buf, n), 0);
    assert_int_equal(m.n, 2);
    assert_null(members_find(&m, 2));
    assert_int_equal(members_apply(&m, buf, n), 0); /* deleting twice is fine */
    assert_int_equal(members_encode_del(0, buf, sizeof(buf), &n), MEMBERS_EINVAL);
}

static void test_validation(void **state)
{
    struct members m = {0};
    assert_int_equal(set(&m, entry(0, "a", "h:1", "")), MEMBERS_EINVAL);
    assert_int_equal(set(&m, entry(1, "", "h:1", "")), MEMBERS_EINVAL);
    assert_int_equal(set(&m, entry(1, "a b", "h:1", "")), MEMBERS_EINVAL);
    assert_int_equal(set(&m, entry(1, "a/b", "h:1", "")), MEMBERS_EINVAL);
    assert_int_equal(set(&m, entry(1, "a", "", "")), MEMBERS_EINVAL);
    assert_int_equal(set(&m, entry(1, "a", "h 1", "")), MEMBERS_EINVAL);
    assert_int_equal(set(&m, entry(1, "ok-name_1.x", "h:1", "h:2")), 0);
    uint8_t small[8];
    size_t n = 0;
    struct members_entry e = entry(1, "a", "h:1", "");
    assert_int_equal(members_encode_set(&e, small, sizeof(small), &n), MEMBERS_ESPACE);
}

static void test_full(void **state)
{
    struct members m = {0};
    char name[16];
    for (uint32_t i = 1; i <= MEMBERS_MAX; i++) {
        snprintf(name, sizeof(name), "n%u", i);
        assert_int_equal(set(&m, entry(i, name, "h:1", "")), 0);
    }
    assert_int_equal(set(&m, entry(MEMBERS_MAX + 1, "extra", "h:1", "")), MEMBERS_EFULL);
    assert_int_equal(set(&m, entry(1, "n1", "h:2", "")), 0); /* replacing still works */
}

static void test_command_strictness(void **state)
{
    struct members_entry e = entry(7, "n7", "127.0.0.1:7", "127.0.0.1:70");
    uint8_t buf[MEMBERS_CMD_BYTES_MAX + 1];
    size_t n = 0;
    assert_int_equal(members_encode_set(&e, buf, sizeof(buf), &n), 0);
    for (size_t cut = 0; cut < n; cut++) {
        struct members m = {0};
        assert_int_not_equal(members_apply(&m, buf, cut), 0);
        assert_int_equal(m.n, 0);
    }
    struct members m = {0};
    buf[n] = 0;
    assert_int_equal(members_apply(&m, buf, n + 1), MEMBERS_EMALFORMED); /* trailing */
    buf[1] = 9;
    assert_int_equal(members_apply(&m, buf, n), MEMBERS_EFORMAT);
    buf[1] = MEMBERS_FORMAT_VERSION;
    buf[2] = 77;
    assert_int_equal(members_apply(&m, buf, n), MEMBERS_EMALFORMED);
    buf[2] = MEMBERS_SET;
    buf[0] = SM_TAG_KV;
    assert_int_equal(members_apply(&m, buf, n), MEMBERS_EMALFORMED);
    assert_int_equal(m.n, 0);
}

static struct machine *machine_with_data(void)
{
    struct machine *m = NULL;
    assert_int_equal(machine_new(&m), 0);
    struct kv_put_req put = {.key = (const uint8_t *)"k", .key_len = 1,
                             .value = (const uint8_t *)"v", .value_len = 1};
    uint8_t *cmd = NULL;
    size_t n = 0;
    assert_int_equal(kvcmd_encode_put(&put, &cmd, &n), 0);
    struct sm_result res;
    machine_apply(m, cmd, n, 1, &res);
    assert_int_equal(res.tag, SM_TAG_KV);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.kv.revision, 2);
    sm_result_free(&res);
    free(cmd);
    uint8_t buf[MEMBERS_CMD_BYTES_MAX];
    struct members_entry e = entry(2, "n2", "127.0.0.1:2", "127.0.0.1:20");
    assert_int_equal(members_encode_set(&e, buf, sizeof(buf), &n), 0);
    machine_apply(m, buf, n, 2, &res);
    assert_int_equal(res.tag, SM_TAG_MEMBERS);
    assert_int_equal(res.err, 0);
    sm_result_free(&res);
    return m;
}

static void test_machine_dispatch(void **state)
{
    struct machine *m = machine_with_data();
    assert_int_equal(machine_members(m)->n, 1);
    assert_int_equal(kv_revision(machine_kv(m)), 2);
    struct sm_result res;
    uint8_t unknown[] = {0x7f, 1, 2};
    uint64_t before = machine_digest(m);
    machine_apply(m, unknown, sizeof(unknown), 3, &res);
    assert_int_equal(res.err, SM_EUNKNOWNTAG);
    machine_apply(m, unknown, 0, 4, &res);
    assert_int_equal(res.err, SM_EUNKNOWNTAG);
    assert_true(machine_digest(m) == before);
    assert_string_equal(sm_strerror(SM_EUNKNOWNTAG), "command for an unknown state machine");
    assert_string_equal(sm_strerror(MEMBERS_ENAMETAKEN), members_strerror(MEMBERS_ENAMETAKEN));
    machine_free(m);
}

static void test_machine_snapshot(void **state)
{
    struct machine *m = machine_with_data();
    uint8_t *img = NULL;
    size_t n = 0;
    assert_int_equal(machine_snapshot_encode(m, &img, &n), 0);
    struct machine *back = NULL;
    assert_int_equal(machine_snapshot_decode(img, n, &back), 0);
    assert_true(machine_digest(back) == machine_digest(m));
    assert_string_equal(members_find(machine_members(back), 2)->http_addr, "127.0.0.1:20");
    machine_free(back);
    /* every truncation is refused (never a partial machine) */
    for (size_t cut = 0; cut < n; cut++) {
        back = NULL;
        int rv = machine_snapshot_decode(img, cut, &back);
        assert_int_not_equal(rv, 0);
        assert_null(back);
    }
    /* a repeated section and an unknown one */
    uint8_t *twice = malloc(n + 9 + 4);
    memcpy(twice, img, n);
    twice[4] = 6; /* n_sections: one more than written */
    twice[n] = SM_TAG_MEMBERS;
    memset(twice + n + 1, 0, 8);
    twice[n + 1] = 4;
    memset(twice + n + 9, 0, 4);
    assert_int_equal(machine_snapshot_decode(twice, n + 13, &back), SM_ECORRUPT);
    twice[n] = 0x55;
    assert_int_equal(machine_snapshot_decode(twice, n + 13, &back), SM_ECORRUPT);
    free(twice);
    free(img);

    /* a bare KV image (written before the composite format) still loads */
    assert_int_equal(kv_snapshot_encode(machine_kv(m), &img, &n), 0);
    assert_int_equal(machine_snapshot_decode(img, n, &back), 0);
    assert_int_equal(kv_revision(machine_kv(back)), 2);
    assert_int_equal(machine_members(back)->n, 0);
    machine_free(back);
    free(img);
    machine_free(m);
}

static void apply_ok(struct machine *m, const uint8_t *cmd, size_t n, uint64_t index,
                     struct sm_result *res)
{
    machine_apply(m, cmd, n, index, res);
    assert_int_equal(res->err, 0);
}

static void put_with_lease(struct machine *m, const char *key, int64_t lease, uint64_t index,
                           int want)
{
    struct kv_put_req put = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key),
                             .value = (const uint8_t *)"v", .value_len = 1, .lease = lease};
    uint8_t *cmd = NULL;
    size_t n = 0;
    assert_int_equal(kvcmd_encode_put(&put, &cmd, &n), 0);
    struct sm_result res;
    machine_apply(m, cmd, n, index, &res);
    assert_int_equal(res.err, want);
    sm_result_free(&res);
    free(cmd);
}

static void acquire(struct machine *m, const char *owner, int64_t lease, uint64_t req,
                    uint64_t index, struct sm_result *res)
{
    struct lock_cmd c = {.type = LOCK_CMD_ACQUIRE, .kind = LOCK_KIND_MUTEX,
                         .mode = LOCK_MODE_EXCLUSIVE, .flags = LOCK_ACQUIRE_WAIT, .lease = lease,
                         .request_id = req, .name = (const uint8_t *)"L", .name_len = 1,
                         .owner = (const uint8_t *)owner, .owner_len = (uint16_t)strlen(owner)};
    uint8_t buf[LOCK_CMD_BYTES_MAX];
    size_t n = 0;
    assert_int_equal(lock_encode(&c, buf, sizeof(buf), &n), 0);
    apply_ok(m, buf, n, index, res);
}

/* A lease's death deletes its keys (one revision, events for watchers) and hands its
 * lock to the next waiter; puts may only name live leases; all survives a snapshot. */
static void test_lease_death_across_kv_and_locks(void **state)
{
    struct machine *m = NULL;
    assert_int_equal(machine_new(&m), 0);
    uint8_t buf[64];
    size_t n = 0;
    struct sm_result res;
    assert_int_equal(lease_encode_grant(0, 5000, buf, sizeof(buf), &n), 0);
    apply_ok(m, buf, n, 1, &res);
    int64_t l1 = res.lease.id;
    sm_result_free(&res);
    apply_ok(m, buf, n, 2, &res);
    int64_t l2 = res.lease.id;
    sm_result_free(&res);
    assert_true(l1 != l2);
    put_with_lease(m, "a", l1, 3, 0);
    put_with_lease(m, "b", l1, 4, 0);
    put_with_lease(m, "c", 9999, 5, LEASE_ENOTFOUND); /* no such lease: nothing changes */
    assert_int_equal(kv_revision(machine_kv(m)), 3);
    acquire(m, "alice", l1, 1, 6, &res);
    assert_int_equal(res.lock.status, LOCK_GRANTED);
    uint64_t t1 = res.lock.token;
    sm_result_free(&res);
    acquire(m, "bob", l2, 2, 7, &res);
    assert_int_equal(res.lock.status, LOCK_QUEUED);
    sm_result_free(&res);

    /* snapshot in the middle: the copy must behave the same */
    uint8_t *img = NULL;
    size_t img_len = 0;
    assert_int_equal(machine_snapshot_encode(m, &img, &img_len), 0);
    struct machine *copy = NULL;
    assert_int_equal(machine_snapshot_decode(img, img_len, &copy), 0);
    assert_true(machine_digest(copy) == machine_digest(m));
    free(img);

    struct machine *both[2] = {m, copy};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(lease_encode_expire(l1, 1, buf, sizeof(buf), &n), 0);
        apply_ok(both[k], buf, n, 8, &res);
        assert_true(res.lease.expired);
        assert_int_equal(res.kv.n_events, 2); /* a and b, one revision */
        assert_int_equal(kv_revision(machine_kv(both[k])), 4);
        bool lost = false, granted = false;
        for (uint32_t i = 0; i < res.lock.n_events; i++) {
            const struct lock_event *e = &res.lock.events[i];
            lost = lost || (e->type == LOCK_EV_LOST && e->token == t1);
            granted = granted || (e->type == LOCK_EV_GRANTED && e->request_id == 2 &&
                                  e->token > t1);
        }
        assert_true(lost);
        assert_true(granted);
        sm_result_free(&res);
        put_with_lease(both[k], "d", l1, 9, LEASE_ENOTFOUND); /* dead lease */
    }
    assert_true(machine_digest(copy) == machine_digest(m));
    machine_free(copy);
    machine_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_find_replace_delete),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_command_strictness),
        cmocka_unit_test(test_machine_dispatch),
        cmocka_unit_test(test_machine_snapshot),
        cmocka_unit_test(test_lease_death_across_kv_and_locks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
