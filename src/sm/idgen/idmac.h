/* idmac.h -- HMAC-SHA256 with one key, for the keyed ID generators (orderno, redeem,
 * shorturl, and the Feistel permutation they share).
 *
 * A thin wrapper over OpenSSL 3's EVP_MAC. The key is set once (idmac_init); each
 * idmac_compute() re-initialises the context with the same key, which reuses the
 * precomputed inner and outer pads (about 6x faster than the one-shot HMAC(), which
 * fetches the algorithm and hashes the key every time).
 *
 * Errors: 0, IDMAC_EKEY (key length outside [IDMAC_KEY_BYTES_MIN, IDMAC_KEY_BYTES_MAX]),
 * IDMAC_ECRYPTO (OpenSSL failed: allocation or provider trouble). idmac_strerror()
 * names them. Range -2501..-2509 (idgen owns -2500..-2599 of the sm/ 2000s).
 *
 * Ownership and threads: struct idmac is embedded by its owner and holds one
 * EVP_MAC_CTX, freed by idmac_fini() (safe on a zeroed or finished idmac). The key
 * bytes are copied into OpenSSL's context; the caller's buffer may go after init.
 * idmac_compute() mutates the context: one thread at a time per idmac.
 */
#ifndef CONCLAVE_SM_IDGEN_IDMAC_H
#define CONCLAVE_SM_IDGEN_IDMAC_H

#include <stddef.h>
#include <stdint.h>

/* 128 bits: below that a brute-forced key forges every code. */
#define IDMAC_KEY_BYTES_MIN 16u /* IDMAC_EKEY */
/* One SHA-256 block; longer keys are hashed down by HMAC anyway. */
#define IDMAC_KEY_BYTES_MAX 64u /* IDMAC_EKEY */
#define IDMAC_OUT_BYTES     32u /* SHA-256 output */

enum {
    IDMAC_EKEY = -2501,    /* key length outside [IDMAC_KEY_BYTES_MIN, IDMAC_KEY_BYTES_MAX] */
    IDMAC_ECRYPTO = -2502, /* OpenSSL failed (allocation, provider) */
};
const char *idmac_strerror(int rv);

struct idmac {
    void *ctx; /* EVP_MAC_CTX *, NULL when not initialised */
};

/* Sets the key. Returns 0, IDMAC_EKEY or IDMAC_ECRYPTO; on error m is zeroed. */
int idmac_init(struct idmac *m, const uint8_t *key, size_t key_len);
void idmac_fini(struct idmac *m);

/* out = HMAC-SHA256(key, a || b); b may be NULL when b_len is 0. Returns 0 or
 * IDMAC_ECRYPTO. */
int idmac_compute(struct idmac *m, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                  uint8_t out[IDMAC_OUT_BYTES]);

#endif /* CONCLAVE_SM_IDGEN_IDMAC_H */
