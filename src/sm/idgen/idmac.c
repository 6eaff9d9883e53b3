/* idmac.c -- HMAC-SHA256 over OpenSSL 3 EVP_MAC (see idmac.h).
 *
 * The context is initialised once with the key and digest; idmac_compute() calls
 * EVP_MAC_init(ctx, NULL, 0, NULL), which OpenSSL documents as "reuse the key already
 * set" (fixed for every provided MAC in 3.0 by openssl#18100), then update and final.
 */
#include "sm/idgen/idmac.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/assert.h"

int idmac_init(struct idmac *m, const uint8_t *key, size_t key_len)
{
    CC_ASSERT(m != NULL);
    m->ctx = NULL;
    if (key == NULL || key_len < IDMAC_KEY_BYTES_MIN || key_len > IDMAC_KEY_BYTES_MAX) {
        return IDMAC_EKEY;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return IDMAC_ECRYPTO;
    }
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (ctx == NULL) {
        return IDMAC_ECRYPTO;
    }
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return IDMAC_ECRYPTO;
    }
    m->ctx = ctx;
    return 0;
}

void idmac_fini(struct idmac *m)
{
    if (m == NULL || m->ctx == NULL) {
        return;
    }
    EVP_MAC_CTX_free(m->ctx);
    m->ctx = NULL;
}

int idmac_compute(struct idmac *m, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                  uint8_t out[IDMAC_OUT_BYTES])
{
    CC_ASSERT(m != NULL);
    CC_ASSERT(m->ctx != NULL);
    CC_ASSERT(a != NULL || a_len == 0);
    CC_ASSERT(b != NULL || b_len == 0);
    EVP_MAC_CTX *ctx = m->ctx;
    size_t n_out = 0;
    if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1) {
        return IDMAC_ECRYPTO;
    }
    if (a_len > 0 && EVP_MAC_update(ctx, a, a_len) != 1) {
        return IDMAC_ECRYPTO;
    }
    if (b_len > 0 && EVP_MAC_update(ctx, b, b_len) != 1) {
        return IDMAC_ECRYPTO;
    }
    if (EVP_MAC_final(ctx, out, &n_out, IDMAC_OUT_BYTES) != 1 || n_out != IDMAC_OUT_BYTES) {
        return IDMAC_ECRYPTO;
    }
    return 0;
}

const char *idmac_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case IDMAC_EKEY:
        return "key length outside [IDMAC_KEY_BYTES_MIN, IDMAC_KEY_BYTES_MAX]";
    case IDMAC_ECRYPTO:
        return "OpenSSL HMAC failed";
    default:
        return "unknown idmac error";
    }
}
