/* feistel.h -- a keyed permutation of [0, a*b): a mixed-radix Feistel network.
 *
 * orderno (decimal middle digits) and shorturl (base62 codes) need a bijection of a
 * domain that is not a power of two. Writing x = L*b + R with L in [0,a) and R in
 * [0,b), one round maps (L, R) to (R, (L + F(round, R)) mod a) and swaps the two radices;
 * after an even number of rounds the radices are back to (a, b). Every round is
 * invertible whatever F is, so the whole network is a permutation of exactly [0, a*b):
 * no cycle-walking is needed (this is the structure of NIST SP 800-38G FF1, with the
 * same 10 rounds). F is HMAC-SHA256 over a domain header (a, b, caller tweak), the
 * round number and R, reduced mod the current radix; the bias of a 64-bit value mod a
 * radix below 2^40 is under 2^-24, far below anything observable.
 *
 * Security note: small domains are weak for any format-preserving cipher; SP 800-38G
 * rev 1 asks for a domain of at least one million, and callers enforce that
 * (FEISTEL_DOMAIN_MIN is asserted).
 *
 * Contracts (asserted): a, b >= 2; a*b >= FEISTEL_DOMAIN_MIN; a*b <= 2^62 (so sums of
 * two residues never overflow); x < a*b; tweak_len <= FEISTEL_TWEAK_BYTES_MAX.
 * Errors: 0 or the idmac error of a failed HMAC. The idmac is borrowed.
 */
#ifndef CONCLAVE_SM_IDGEN_FEISTEL_H
#define CONCLAVE_SM_IDGEN_FEISTEL_H

#include <stddef.h>
#include <stdint.h>

#include "sm/idgen/idmac.h"

#define FEISTEL_ROUNDS          10u /* even: the radices come back to (a, b) */
#define FEISTEL_TWEAK_BYTES_MAX 32u
#define FEISTEL_DOMAIN_MIN      1000000u /* SP 800-38G rev 1 minimum domain */
#define FEISTEL_DOMAIN_MAX      (UINT64_C(1) << 62)

_Static_assert(FEISTEL_ROUNDS % 2 == 0, "an odd round count would swap the radices");

/* *y = E(x) over [0, a*b), keyed by m and tweak. */
int feistel_encrypt(struct idmac *m, const uint8_t *tweak, size_t tweak_len, uint64_t a, uint64_t b,
                    uint64_t x, uint64_t *y);
/* *x = E^-1(y). */
int feistel_decrypt(struct idmac *m, const uint8_t *tweak, size_t tweak_len, uint64_t a, uint64_t b,
                    uint64_t y, uint64_t *x);

#endif /* CONCLAVE_SM_IDGEN_FEISTEL_H */
