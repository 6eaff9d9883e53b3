/* feistel.c -- mixed-radix Feistel permutation (see feistel.h for the construction).
 *
 * Round function input: header || round (1 byte) || R (8 bytes, LE), where header =
 * "cfst" || a (8) || b (8) || tweak_len (1) || tweak. Binding a and b into every round
 * keeps the permutations of different domains independent under one key.
 */
#include "sm/idgen/feistel.h"

#include <string.h>

#include "base/assert.h"
#include "base/le.h"

#define HEADER_BYTES_MAX (4u + 8u + 8u + 1u + FEISTEL_TWEAK_BYTES_MAX)

struct header {
    uint8_t b[HEADER_BYTES_MAX];
    size_t n;
};

static void header_make(struct header *h, const uint8_t *tweak, size_t tweak_len, uint64_t a,
                        uint64_t b)
{
    CC_ASSERT(tweak_len <= FEISTEL_TWEAK_BYTES_MAX);
    CC_ASSERT(tweak != NULL || tweak_len == 0);
    memcpy(h->b, "cfst", 4);
    le_put_u64(h->b + 4, a);
    le_put_u64(h->b + 12, b);
    h->b[20] = (uint8_t)tweak_len;
    if (tweak_len > 0) {
        memcpy(h->b + 21, tweak, tweak_len);
    }
    h->n = 21 + tweak_len;
}

static void check_domain(uint64_t a, uint64_t b)
{
    CC_ASSERT(a >= 2);
    CC_ASSERT(b >= 2);
    CC_ASSERT(a <= FEISTEL_DOMAIN_MAX / b);
    CC_ASSERT(a * b >= FEISTEL_DOMAIN_MIN);
}

/* F(round, r) mod modulus. */
static int round_f(struct idmac *m, const struct header *h, unsigned round, uint64_t r,
                   uint64_t modulus, uint64_t *out)
{
    uint8_t in[9];
    uint8_t mac[IDMAC_OUT_BYTES];
    in[0] = (uint8_t)round;
    le_put_u64(in + 1, r);
    int rv = idmac_compute(m, h->b, h->n, in, sizeof in, mac);
    if (rv != 0) {
        return rv;
    }
    *out = le_get_u64(mac) % modulus;
    return 0;
}

int feistel_encrypt(struct idmac *m, const uint8_t *tweak, size_t tweak_len, uint64_t a, uint64_t b,
                    uint64_t x, uint64_t *y)
{
    check_domain(a, b);
    CC_ASSERT(x < a * b);
    struct header h;
    header_make(&h, tweak, tweak_len, a, b);
    uint64_t left = x / b, right = x % b;
    uint64_t m_left = a, m_right = b;
    for (unsigned i = 0; i < FEISTEL_ROUNDS; i++) {
        uint64_t f;
        int rv = round_f(m, &h, i, right, m_left, &f);
        if (rv != 0) {
            return rv;
        }
        uint64_t new_right = (left + f) % m_left; /* both < m_left <= 2^62: no overflow */
        left = right;
        right = new_right;
        uint64_t t = m_left;
        m_left = m_right;
        m_right = t;
    }
    CC_ASSERT(m_left == a);
    CC_ASSERT(left < a);
    CC_ASSERT(right < b);
    *y = left * b + right;
    return 0;
}

int feistel_decrypt(struct idmac *m, const uint8_t *tweak, size_t tweak_len, uint64_t a, uint64_t b,
                    uint64_t y, uint64_t *x)
{
    check_domain(a, b);
    CC_ASSERT(y < a * b);
    struct header h;
    header_make(&h, tweak, tweak_len, a, b);
    uint64_t left = y / b, right = y % b;
    uint64_t m_left = a, m_right = b; /* radices after the last round */
    for (unsigned k = 0; k < FEISTEL_ROUNDS; k++) {
        unsigned i = FEISTEL_ROUNDS - 1 - k;
        /* Round i turned (L, R) with radices (m_right, m_left) into (R, (L + F) mod
         * m_right); undo it. */
        uint64_t modulus = m_right;
        uint64_t f;
        int rv = round_f(m, &h, i, left, modulus, &f);
        if (rv != 0) {
            return rv;
        }
        uint64_t old_left = (right + modulus - f) % modulus;
        right = left;
        left = old_left;
        uint64_t t = m_left;
        m_left = m_right;
        m_right = t;
    }
    CC_ASSERT(m_left == a);
    *x = left * b + right;
    return 0;
}
