/* redeem.h -- redeem (coupon) codes that are verified offline, without storage.
 *
 * A code is 16 characters of a 32-letter alphabet without 0/O/1/I
 * ("23456789ABCDEFGHJKLMNPQRSTUVWXYZ"), i.e. 80 bits, shown as XXXX-XXXX-XXXX-XXXX:
 *
 *   campaign (20 bits) | masked serial (24 bits) | check (36 bits)
 *
 *   check  T = HMAC-SHA256(key, "rdm-t" || campaign || serial)  truncated to 36 bits
 *   mask   M = HMAC-SHA256(key, "rdm-m" || campaign || T)       truncated to 24 bits
 *   masked = serial XOR M
 *
 * (the SIV construction: the check is computed first and then keys the mask, so the
 * serial is hidden and every bit of the code is authenticated). The campaign id stays
 * readable -- all codes of a campaign share their first four characters -- so the
 * verifier knows which campaign key to use; each campaign has its own key (e.g.
 * derived by the server from a master key), and a code of campaign A never verifies
 * under campaign B.
 *
 * Guarantees: distinct serials of a campaign give distinct codes (the serial is
 * recovered from the code, so the mapping is injective: collision-free by
 * construction). Without the key, a guessed or altered code passes with probability
 * 2^-36 (1 in 69 billion); in particular every single-character typo and every swap
 * of two neighbours is rejected except with that probability. The check compares in
 * constant time. Verification needs no storage; recording that a code was redeemed
 * (once) is the caller's job (a KV put-if-absent).
 *
 * Ownership: struct redeem is caller-owned and holds an OpenSSL context released by
 * redeem_fini(). One thread at a time per struct. Errors: REDEEM_E* in -2580..-2589.
 */
#ifndef CONCLAVE_SM_IDGEN_REDEEM_H
#define CONCLAVE_SM_IDGEN_REDEEM_H

#include <stddef.h>
#include <stdint.h>

#include "sm/idgen/idmac.h"

#define REDEEM_ALPHABET      "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
#define REDEEM_CODE_CHARS    16u
#define REDEEM_GROUPED_CHARS 19u /* XXXX-XXXX-XXXX-XXXX */
#define REDEEM_CAMPAIGN_BITS 20u
#define REDEEM_SERIAL_BITS   24u
#define REDEEM_CHECK_BITS    36u
#define REDEEM_CAMPAIGN_MAX  ((UINT32_C(1) << REDEEM_CAMPAIGN_BITS) - 1) /* REDEEM_ECAMPAIGN */
#define REDEEM_SERIAL_MAX    ((UINT32_C(1) << REDEEM_SERIAL_BITS) - 1)   /* REDEEM_ESERIAL */
/* Typed input may carry separators; bounds the work on hostile input. */
#define REDEEM_INPUT_CHARS_MAX 64u /* REDEEM_ELENGTH */

_Static_assert(REDEEM_CAMPAIGN_BITS + REDEEM_SERIAL_BITS + REDEEM_CHECK_BITS ==
                   5 * REDEEM_CODE_CHARS,
               "the fields fill the code exactly");

enum {
    REDEEM_EKEY = -2580,      /* key length outside [16, 64] bytes */
    REDEEM_ECAMPAIGN = -2581, /* campaign id above the max, or the code is another campaign's */
    REDEEM_ESERIAL = -2582,   /* serial above REDEEM_SERIAL_MAX */
    REDEEM_ELENGTH = -2583,   /* not 16 code characters (separators aside), or input too long */
    REDEEM_ECHAR = -2584,     /* a character outside the alphabet (0, O, 1, I, ...) */
    REDEEM_EFORGED = -2585,   /* the check does not match: a typo or a forgery */
    REDEEM_ECRYPTO = -2586,   /* OpenSSL failed */
};
const char *redeem_strerror(int rv);

struct redeem {
    struct idmac mac;
    uint32_t campaign;
};

/* 0, REDEEM_EKEY, REDEEM_ECAMPAIGN or REDEEM_ECRYPTO. The key is copied. */
int redeem_init(struct redeem *r, const uint8_t *key, size_t key_len, uint32_t campaign);
void redeem_fini(struct redeem *r);

/* The code of serial (16 characters + NUL). 0, REDEEM_ESERIAL or REDEEM_ECRYPTO. Bulk
 * generation is a loop over serials: no state, so it streams. */
int redeem_make(struct redeem *r, uint32_t serial, char out[REDEEM_CODE_CHARS + 1]);
/* Inserts the hyphens: XXXX-XXXX-XXXX-XXXX + NUL. */
void redeem_group(const char code[REDEEM_CODE_CHARS], char out[REDEEM_GROUPED_CHARS + 1]);

/* Verifies typed input: letters in either case, '-' and ' ' ignored. On 0 sets
 * *serial. REDEEM_ELENGTH, REDEEM_ECHAR, REDEEM_ECAMPAIGN, REDEEM_EFORGED or
 * REDEEM_ECRYPTO. */
int redeem_verify(struct redeem *r, const char *input, size_t n, uint32_t *serial);
/* Which campaign a code claims (keyless; to pick the key). Not a verification. */
int redeem_campaign_of(const char *input, size_t n, uint32_t *campaign);

#endif /* CONCLAVE_SM_IDGEN_REDEEM_H */
