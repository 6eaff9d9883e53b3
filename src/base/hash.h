/* hash.h -- FNV-1a 64-bit, for hash tables and cheap fingerprints (state digests in
 * the simulator). Not collision resistant: never use it where an adversary picks
 * the input and a collision matters; use OpenSSL's SHA-256 there.
 *
 * Chains: hash_fnv1a64(hash_fnv1a64(HASH_FNV_INIT, a, na), b, nb) hashes a||b.
 * Vectors: "" -> 0xcbf29ce484222325, "a" -> 0xaf63dc4c8601ec8c.
 */
#ifndef CC_BASE_HASH_H
#define CC_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_INIT  UINT64_C(0xcbf29ce484222325) /* FNV-1a 64 offset basis */
#define HASH_FNV_PRIME UINT64_C(0x00000100000001b3) /* FNV 64 prime */

/* Extends h over n bytes at p. p may be NULL only when n is 0. */
static inline uint64_t hash_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= HASH_FNV_PRIME;
    }
    return h;
}

#endif /* CC_BASE_HASH_H */
