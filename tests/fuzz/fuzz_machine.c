/* fuzz_machine.c -- arbitrary bytes as a state machine snapshot image and as commands.
 *
 * Checks: machine_snapshot_decode() never crashes or leaks and either refuses or yields a
 * machine whose re-encoding decodes to the same digest; the same bytes applied as a
 * command to a fresh machine never crash, and a refused member command changes nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "sm/machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    return 0;
}
