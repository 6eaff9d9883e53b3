/* prng.h -- deterministic pseudo-random numbers: xoshiro256** seeded by splitmix64.
 *
 * The simulator reproduces a whole cluster run from one seed (STYLE.md rule 14), so
 * every random choice in core code draws from a caller-owned `struct prng` passed in
 * explicitly. There is no global state; two generators seeded alike produce the same
 * stream on every platform. Not for secrets: use OpenSSL's RAND_bytes for those.
 */
#ifndef CC_BASE_PRNG_H
#define CC_BASE_PRNG_H

#include <stdbool.h>
#include <stdint.h>

/* Denominator of prng_chance(): probabilities are given in parts per million. */
#define PRNG_PER_MILLION UINT32_C(1000000)

/* Generator state. Owned and embedded by the caller; never all zero once seeded. */
struct prng {
    uint64_t s[4];
};

/* Seeds p from any 64-bit value (0 included). */
void prng_seed(struct prng *p, uint64_t seed);

/* Next 64 uniformly distributed bits. */
uint64_t prng_next(struct prng *p);

/* Uniform integer in [0, n), without modulo bias. Requires n > 0. */
uint64_t prng_below(struct prng *p, uint64_t n);

/* True with probability per_million / 1e6. Requires per_million <= PRNG_PER_MILLION. */
bool prng_chance(struct prng *p, uint32_t per_million);

#endif /* CC_BASE_PRNG_H */
