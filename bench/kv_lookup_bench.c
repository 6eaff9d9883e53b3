/* kv_lookup_bench.c -- exact-key lookup cost in the MVCC store (src/sm/kv.c): what the
 * hash index beside the AVL tree buys (docs/kv.md, "Exact lookups").
 *
 *   make build/bench/kv_lookup_bench   (make bench runs it at 100k and 1M keys)
 *   build/bench/kv_lookup_bench [n_keys [n_lookups [reps]]]     (default 100000 1000000 5)
 *
 * Builds a store of n_keys keys shaped like redis-benchmark's ("key:%012u", 3-byte
 * values), inserted in scattered order, then times through the public API only:
 *   get-hit   kv_range() of one existing key (the exact-lookup path plus copying the
 *             result out), keys drawn uniformly at random;
 *   get-miss  kv_range() of keys that do not exist (same shape, other numbers);
 *   put-over  kv_apply() of a PUT that overwrites an existing key (the path the Raft
 *             leader profile showed), n_lookups / 10 of them per repetition, decode and
 *             result building included.
 * Each row is the best of `reps` repetitions in ns per operation (the machine is
 * shared: the minimum is the least disturbed run). The lookup order is fixed by a
 * seeded generator, so runs before and after a change see the same sequence.
 * Memory: heap bytes in use (glibc mallinfo2) per key after the build, the index included.
 * The slowest single put of the build shows the largest pause (an index resize).
 *
 * Times are CPU time of this thread (see now_ns). Not core code: it reads the clock directly. Exit
 * status 0, 1 on any error.
 */
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/prng.h"
#include "sm/kv.h"
#include "sm/kvcmd.h"

#define KLB_KEY_BYTES 16u /* "key:" + 12 digits, as redis-benchmark -r */
#define KLB_N_MAX     10000000u

/* This thread's CPU time, not wall time: the benchmark machines are shared, and time
 * spent waiting for a core is not the store's cost (other processes still share the
 * caches). */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Heap in use: small chunks plus mmap'd blocks (a large table is one of those). */
static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void make_key(uint8_t *out, uint64_t i)
{
    char tmp[KLB_KEY_BYTES + 1];
    snprintf(tmp, sizeof tmp, "key:%012" PRIu64, i);
    memcpy(out, tmp, KLB_KEY_BYTES);
}

static int put_key(struct kv *kv, const uint8_t *key, const char *val)
{
    struct kv_put_req req = {.key = key,
                             .key_len = KLB_KEY_BYTES,
                             .value = (const uint8_t *)val,
                             .value_len = (uint32_t)strlen(val)};
    uint8_t *buf;
    size_t n;
    int rv = kvcmd_encode_put(&req, &buf, &n);
    if (rv != 0) {
        return rv;
    }
    struct kv_result res;
    rv = kv_apply(kv, buf, n, &res);
    kv_result_free(&res);
    free(buf);
    return rv;
}

/* Times n exact gets of keys[idx[i]]; returns ns per get, or -1 when one found the
 * wrong number of keys. */
static double time_gets(const struct kv *kv, const uint8_t *keys, const uint32_t *idx, uint32_t n,
                        uint32_t want)
{
    double t0 = now_ns();
    for (uint32_t i = 0; i < n; i++) {
        struct kv_range_req req = {.key = keys + (size_t)idx[i] * KLB_KEY_BYTES,
                                   .key_len = KLB_KEY_BYTES};
        struct kv_range_resp resp;
        if (kv_range(kv, &req, &resp) != 0 || resp.n_kvs != want) {
            kv_range_resp_free(&resp);
            return -1;
        }
        kv_range_resp_free(&resp);
    }
    return (now_ns() - t0) / n;
}

int main(int argc, char **argv)
{
    uint32_t n_keys = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 100000u;
    uint32_t n_lookups = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 1000000u;
    uint32_t reps = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 5u;
    if (n_keys == 0 || n_keys > KLB_N_MAX || n_lookups < 10 || reps == 0 || reps > 100) {
        fprintf(stderr, "usage: kv_lookup_bench [n_keys<=%u [n_lookups>=10 [reps<=100]]]\n",
                KLB_N_MAX);
        return 1;
    }
    uint8_t *hit = malloc((size_t)n_keys * KLB_KEY_BYTES);
    uint8_t *miss = malloc((size_t)n_keys * KLB_KEY_BYTES);
    uint32_t *idx = malloc((size_t)n_lookups * sizeof *idx);
    struct kv *kv = NULL;
    if (hit == NULL || miss == NULL || idx == NULL || kv_new(&kv) != 0) {
        fprintf(stderr, "kv_lookup_bench: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < n_keys; i++) {
        make_key(hit + (size_t)i * KLB_KEY_BYTES, 2 * (uint64_t)i);      /* even: stored */
        make_key(miss + (size_t)i * KLB_KEY_BYTES, 2 * (uint64_t)i + 1); /* odd: absent */
    }
    struct prng p;
    prng_seed(&p, 20240917);
    for (uint32_t i = 0; i < n_lookups; i++) {
        idx[i] = (uint32_t)prng_below(&p, n_keys);
    }

    size_t heap0 = heap_bytes();
    double t0 = now_ns(), worst_ns = 0;
    for (uint32_t i = 0; i < n_keys; i++) {
        uint32_t k = (uint32_t)(((uint64_t)i * 2654435761u) % n_keys); /* scattered */
        double tp = now_ns();
        if (put_key(kv, hit + (size_t)k * KLB_KEY_BYTES, "xyz") != 0) {
            fprintf(stderr, "kv_lookup_bench: put failed\n");
            return 1;
        }
        tp = now_ns() - tp;
        worst_ns = tp > worst_ns ? tp : worst_ns;
    }
    double build_ns = (now_ns() - t0) / n_keys;
    size_t heap1 = heap_bytes();
    struct kv_stats st;
    kv_stats(kv, &st);
    if (st.n_keys_live != n_keys) {
        fprintf(stderr,
                "kv_lookup_bench: %" PRIu64 " live keys, want %u (is 2654435761 "
                "coprime with n_keys?)\n",
                st.n_keys_live, n_keys);
        return 1;
    }

    double best_hit = 1e18, best_miss = 1e18, best_put = 1e18;
    uint32_t n_puts = n_lookups / 10;
    for (uint32_t r = 0; r < reps; r++) {
        double h = time_gets(kv, hit, idx, n_lookups, 1);
        double m = time_gets(kv, miss, idx, n_lookups, 0);
        if (h < 0 || m < 0) {
            fprintf(stderr, "kv_lookup_bench: a get returned the wrong keys\n");
            return 1;
        }
        best_hit = h < best_hit ? h : best_hit;
        best_miss = m < best_miss ? m : best_miss;
        double tp = now_ns();
        for (uint32_t i = 0; i < n_puts; i++) {
            if (put_key(kv, hit + (size_t)idx[(r * n_puts + i) % n_lookups] * KLB_KEY_BYTES,
                        "abc") != 0) {
                fprintf(stderr, "kv_lookup_bench: overwrite failed\n");
                return 1;
            }
        }
        double pn = (now_ns() - tp) / n_puts;
        best_put = pn < best_put ? pn : best_put;
    }
    printf("kv_lookup_bench: %u keys, %u lookups x %u reps (best)\n", n_keys, n_lookups, reps);
    printf("  build      %8.1f ns/put (new keys); slowest put %.2f ms\n", build_ns, worst_ns / 1e6);
    printf("  get-hit    %8.1f ns/lookup\n", best_hit);
    printf("  get-miss   %8.1f ns/lookup\n", best_miss);
    printf("  put-over   %8.1f ns/put (%u per rep)\n", best_put, n_puts);
    printf("  heap       %8.1f B/key after build\n", (double)(heap1 - heap0) / n_keys);
    kv_free(kv);
    free(hit);
    free(miss);
    free(idx);
    return 0;
}
