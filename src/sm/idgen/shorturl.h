/* shorturl.h -- short-URL codes: base62 of a segment id through a keyed bijection.
 *
 * Codes have length SHORTURL_LEN_MIN_DEFAULT (6) and grow one character at a time as
 * the ids grow: length n covers the 62^n ids [S_n, S_n + 62^n), where S_min = 0 and
 * S_{n+1} = S_n + 62^n. Within a length, id - S_n goes through the mixed-radix Feistel
 * permutation of [0, 62^n) (feistel.h, tweaked with n) and is written in base62
 * (0-9A-Za-z). Decoding inverts both steps.
 *
 * Guarantees: encode is a bijection from [0, shorturl_id_max()] onto the codes of
 * lengths min..SHORTURL_LEN_MAX, so two ids never share a code (collision-free by
 * construction, no lookup needed) and every well-formed code decodes to exactly one
 * id. Consecutive ids give unrelated codes, so a code does not reveal its neighbours
 * or how many links exist. It is not a secret: a random code of the current length
 * hits an existing link with probability (links / 62^n); links that must stay private
 * need an access check, not an obscure code.
 *
 * Ownership: struct shorturl is caller-owned and holds an OpenSSL context released by
 * shorturl_fini(). One thread at a time per struct. Errors: SHORTURL_E* in -2590..-2599.
 */
#ifndef CONCLAVE_SM_IDGEN_SHORTURL_H
#define CONCLAVE_SM_IDGEN_SHORTURL_H

#include <stddef.h>
#include <stdint.h>

#include "sm/idgen/idmac.h"

#define SHORTURL_ALPHABET        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define SHORTURL_LEN_MIN_DEFAULT 6u
/* 62^4 = 14.8M is the smallest length whose domain is >= 10^6 (FEISTEL_DOMAIN_MIN). */
#define SHORTURL_LEN_MIN_MIN 4u /* SHORTURL_ECONFIG */
/* 62^10 = 8.4e17 < 2^62 keeps the Feistel arithmetic in 64 bits; about 8.5e17 ids. */
#define SHORTURL_LEN_MAX 10u /* SHORTURL_ERANGE beyond */

enum {
    SHORTURL_EKEY = -2590,    /* key length outside [16, 64] bytes */
    SHORTURL_ECONFIG = -2591, /* min length outside [SHORTURL_LEN_MIN_MIN, SHORTURL_LEN_MAX] */
    SHORTURL_ERANGE = -2592,  /* id above shorturl_id_max() */
    SHORTURL_ELENGTH = -2593, /* code length outside [min length, SHORTURL_LEN_MAX] */
    SHORTURL_ECHAR = -2594,   /* code character outside 0-9A-Za-z */
    SHORTURL_ECRYPTO = -2595, /* OpenSSL failed */
};
const char *shorturl_strerror(int rv);

struct shorturl {
    struct idmac mac;
    unsigned len_min;
};

/* 0, SHORTURL_EKEY, SHORTURL_ECONFIG or SHORTURL_ECRYPTO. The key is copied. */
int shorturl_init(struct shorturl *s, const uint8_t *key, size_t key_len, unsigned len_min);
void shorturl_fini(struct shorturl *s);

/* The largest id this configuration encodes (S_max + 62^SHORTURL_LEN_MAX - 1). */
uint64_t shorturl_id_max(const struct shorturl *s);

/* Writes the code of id and a NUL into out; *n = its length. 0, SHORTURL_ERANGE or
 * SHORTURL_ECRYPTO. */
int shorturl_encode(struct shorturl *s, uint64_t id, char out[SHORTURL_LEN_MAX + 1], size_t *n);
/* The id of a code (case-sensitive). 0, SHORTURL_ELENGTH, SHORTURL_ECHAR or
 * SHORTURL_ECRYPTO. Whether a link exists for the id is the caller's lookup. */
int shorturl_decode(struct shorturl *s, const char *code, size_t n, uint64_t *id);

#endif /* CONCLAVE_SM_IDGEN_SHORTURL_H */
