/* fuzz_machine.c -- arbitrary bytes as a state machine snapshot image and as commands.
 *
 * Checks: machine_snapshot_decode() never crashes or leaks and either refuses or yields a
 * machine whose re-encoding decodes to the same digest; the same bytes applied as a
 * command to a fresh machine never crash, and a refused command changes nothing; the same
 * bytes applied to a machine that already holds a key-private lease (a KVTTL SET PX), a
 * public lease with a key and a plain key never crash, a refused one changes nothing, and
 * the no-leak rule holds after it: every private lease is carried by some key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "sm/kvcmd.h"
#include "sm/machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void apply_ok(struct machine *m, uint8_t *cmd, size_t n, uint64_t index)
{
    struct sm_result res;
    machine_apply(m, cmd, n, index, &res);
    CC_ASSERT(res.err == 0);
    sm_result_free(&res);
    free(cmd);
}

/* keys "a" (private lease, 3 s), "b" (public lease), "c" (no lease) */
static struct machine *seeded(void)
{
    struct machine *m = NULL;
    CC_ASSERT(machine_new(&m) == 0);
    struct kv_put_req p = {.key = (const uint8_t *)"a", .key_len = 1,
                           .value = (const uint8_t *)"1", .value_len = 1};
    uint8_t *inner = NULL, *cmd = NULL;
    size_t n = 0, cn = 0;
    CC_ASSERT(kvcmd_encode_put(&p, &inner, &n) == 0);
    const struct sm_kvttl_grant g = {.ttl_ms = 3000, .op_index = 0};
    CC_ASSERT(sm_kvttl_encode(&g, 1, inner, n, &cmd, &cn) == 0);
    free(inner);
    apply_ok(m, cmd, cn, 1);
    cmd = malloc(LEASE_CMD_BYTES_MAX);
    CC_ASSERT(cmd != NULL);
    CC_ASSERT(lease_encode_grant(0, 5000, cmd, LEASE_CMD_BYTES_MAX, &cn) == 0);
    apply_ok(m, cmd, cn, 2);
    p.key = (const uint8_t *)"b";
    p.lease = 2;
    CC_ASSERT(kvcmd_encode_put(&p, &cmd, &cn) == 0);
    apply_ok(m, cmd, cn, 3);
    p.key = (const uint8_t *)"c";
    p.lease = 0;
    CC_ASSERT(kvcmd_encode_put(&p, &cmd, &cn) == 0);
    apply_ok(m, cmd, cn, 4);
    return m;
}

static void check_no_orphans(struct machine *m)
{
    int64_t ids[64];
    const uint32_t n = lease_list(machine_leases(m), 0, ids, 64);
    for (uint32_t i = 0; i < n; i++) {
        struct lease_info info;
        CC_ASSERT(lease_get(machine_leases(m), ids[i], &info) == 0);
        if (info.n_keys > 0 && info.n_locks == 0) /* private: some key carries it */
            CC_ASSERT(kv_lease_key_count(machine_kv(m), ids[i]) > 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct machine *m = NULL;
    if (machine_snapshot_decode(data, size, &m) == 0) {
        uint8_t *img = NULL;
        size_t n = 0;
        CC_ASSERT(machine_snapshot_encode(m, &img, &n) == 0);
        struct machine *again = NULL;
        CC_ASSERT(machine_snapshot_decode(img, n, &again) == 0);
        CC_ASSERT(machine_digest(again) == machine_digest(m));
        machine_free(again);
        free(img);
        machine_free(m);
    }
    struct machine *fresh = NULL;
    if (machine_new(&fresh) != 0)
        return 0;
    uint64_t before = machine_digest(fresh);
    struct sm_result res;
    machine_apply(fresh, data, size, 1, &res);
    if (res.err != 0)
        CC_ASSERT(machine_digest(fresh) == before);
    sm_result_free(&res);
    machine_free(fresh);
    struct machine *m2 = seeded();
    before = machine_digest(m2);
    machine_apply(m2, data, size, 5, &res);
    if (res.err != 0)
        CC_ASSERT(machine_digest(m2) == before);
    sm_result_free(&res);
    check_no_orphans(m2);
    machine_free(m2);
    return 0;
}
