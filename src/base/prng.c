/* prng.c -- xoshiro256** (Blackman & Vigna, 2018) seeded with splitmix64.
 *
 * Why these: xoshiro256** is small, fast, passes BigCrush, and its output is fully
 * specified, so a seed printed by a failing simulation replays bit-for-bit anywhere.
 * splitmix64 turns one 64-bit seed into four well-mixed state words; it is a bijection
 * of its counter, so at most one of the four words can be zero and the state is never
 * the all-zero fixed point xoshiro must avoid.
 *
 * Pure: no globals, no IO, no clock. Sections: seeding | next | bounded draws.
 */
#include "base/prng.h"

#include "base/assert.h"

/* ---- seeding ---------------------------------------------------------------------- */

static uint64_t prng__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void prng_seed(struct prng *p, uint64_t seed)
{
    CC_ASSERT(p != NULL);
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        p->s[i] = prng__splitmix64(&x);
    }
    CC_ASSERT((p->s[0] | p->s[1] | p->s[2] | p->s[3]) != 0);
}

/* ---- next ------------------------------------------------------------------------- */

static inline uint64_t prng__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t prng_next(struct prng *p)
{
    CC_ASSERT(p != NULL);
    uint64_t *s = p->s;
    const uint64_t result = prng__rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = prng__rotl(s[3], 45);
    return result;
}

/* ---- bounded draws ---------------------------------------------------------------- */

uint64_t prng_below(struct prng *p, uint64_t n)
{
    CC_ASSERT(n > 0);
    /* Reject the lowest (2^64 mod n) values so the rest split evenly into n buckets.
     * The rejected share is below 1/2 for any n, so the expected number of draws is
     * under 2 and a long run of rejections is astronomically unlikely. */
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
        const uint64_t r = prng_next(p);
        if (r >= threshold) {
            return r % n;
        }
    }
}

bool prng_chance(struct prng *p, uint32_t per_million)
{
    CC_ASSERT(per_million <= PRNG_PER_MILLION);
    return prng_below(p, PRNG_PER_MILLION) < per_million;
}
