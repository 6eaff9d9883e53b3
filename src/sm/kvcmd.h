/* kvcmd.h -- the binary codec for KV commands (what goes through Raft) and KV results
 * (what a leader sends back to the follower that forwarded a write).
 *
 * Wire format, little-endian, fixed-width integers; `bytes` is u32 length + bytes:
 *
 *   command  = u8 KVCMD_FORMAT_VERSION, u8 type (enum kv_cmd_type), body
 *   PUT      = u8 flags (1 prev_kv, 2 ignore_value, 4 ignore_lease), i64 lease,
 *              bytes key, bytes value
 *   DELETE   = u8 flags (1 prefix, 2 prev_kv), bytes key, bytes range_end
 *   RANGE    = u8 flags (1 prefix, 2 keys_only, 4 count_only), i64 limit, i64 revision,
 *              bytes key, bytes range_end
 *   TXN      = u16 n_compares, u16 n_success, u16 n_failure, compares, ops
 *     compare  = u8 target, u8 op, bytes key, then bytes value (VALUE) or i64 number
 *     op       = u8 kv_op_type, then the PUT / DELETE / RANGE body
 *   COMPACT  = i64 revision
 *
 * Decoding is strict: unknown flag bits, unknown enums and trailing bytes are
 * KV_EMALFORMED, so a given meaning has exactly one encoding. Every encoder validates
 * its request against the limits in kv.h first and returns that limit's error, so
 * what an encoder produces always decodes.
 *
 * Ownership: encoders malloc *buf, which the caller frees with free(). kvcmd_decode()
 * borrows: out's pointers point into buf (and into out itself), so buf must outlive
 * out; it never allocates. kvcmd_decode_result() copies: the result owns its memory
 * (kv_result_free) and buf may go.
 */
#ifndef CONCLAVE_SM_KVCMD_H
#define CONCLAVE_SM_KVCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm/kv.h"

#define KVCMD_FORMAT_VERSION   1u  /* first byte of every command; others are KV_EFORMAT */
#define KVCMD_RESULT_VERSION   1u  /* first byte of every encoded result */
#define KVCMD_PUT_HEADER_BYTES 19u /* version, type, flags, lease, key and value lengths */

/* A decoded command. The txn arrays point into cmp_buf/op_buf, so a struct kvcmd is
 * large (tens of KiB): keep it off small stacks. */
struct kvcmd {
    uint8_t type; /* enum kv_cmd_type */
    union {
        struct kv_put_req put;
        struct kv_delete_req del;
        struct kv_range_req range;
        struct kv_txn_req txn;
        int64_t compact_revision;
    };
    struct kv_compare cmp_buf[KV_TXN_CMP_MAX];
    struct kv_op op_buf[2 * KV_TXN_OPS_MAX];
};

int kvcmd_encode_put(const struct kv_put_req *req, uint8_t **buf, size_t *n);
int kvcmd_encode_delete(const struct kv_delete_req *req, uint8_t **buf, size_t *n);
int kvcmd_encode_range(const struct kv_range_req *req, uint8_t **buf, size_t *n);
int kvcmd_encode_txn(const struct kv_txn_req *req, uint8_t **buf, size_t *n);
int kvcmd_encode_compact(int64_t revision, uint8_t **buf, size_t *n);

/* Decodes and validates one command. Returns 0, KV_EMALFORMED, KV_EFORMAT,
 * KV_ECMDTOOBIG or the error of the first limit the command breaks. */
int kvcmd_decode(const uint8_t *buf, size_t n, struct kvcmd *out);

/* The static checks kvcmd_decode() and the encoders run (the store's dynamic checks,
 * such as revisions and key existence, happen at apply). */
int kvcmd_check_put(const struct kv_put_req *req);
int kvcmd_check_delete(const struct kv_delete_req *req);
int kvcmd_check_range(const struct kv_range_req *req);
int kvcmd_check_txn(const struct kv_txn_req *req);
int kvcmd_check_compact(int64_t revision); /* >= 1 */

/* ---- key spans ------------------------------------------------------------
 * The one place that interprets (key, range_end, prefix) by the rules in kv.h, shared
 * by the txn duplicate-key check here and by every scan in kv.c. Views borrow the
 * request's bytes. */
enum kvcmd_span_kind {
    KVCMD_SPAN_KEY = 1,    /* exactly key */
    KVCMD_SPAN_RANGE = 2,  /* [key, end) */
    KVCMD_SPAN_FROM = 3,   /* [key, +inf) */
    KVCMD_SPAN_PREFIX = 4, /* keys starting with key (empty key: all keys) */
};
struct kvcmd_span {
    uint8_t kind; /* enum kvcmd_span_kind */
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *end; /* RANGE only */
    uint32_t end_len;
};
void kvcmd_span_make(const uint8_t *key, uint32_t key_len, const uint8_t *range_end,
                     uint32_t range_end_len, bool prefix, struct kvcmd_span *out);
/* memcmp order, shorter first on a tie: <0, 0, >0. */
int kvcmd_key_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len);
/* For a key k >= s->key: true once k is beyond the span, so a scan in key order that
 * starts at s->key can stop. */
bool kvcmd_span_past(const struct kvcmd_span *s, const uint8_t *k, uint32_t k_len);
bool kvcmd_span_contains(const struct kvcmd_span *s, const uint8_t *k, uint32_t k_len);

/* Include events when encoding a result (a forwarded write's client seldom needs
 * them; a watch relay does). */
#define KVCMD_RESULT_EVENTS 1u

/* Encodes res (responses always, events with KVCMD_RESULT_EVENTS). */
int kvcmd_encode_result(const struct kv_result *res, unsigned flags, uint8_t **buf, size_t *n);
/* Decodes into out, which then owns copies of everything (kv_result_free). Returns 0,
 * KV_EMALFORMED, KV_EFORMAT or KV_ENOMEM; out is zeroed on error. Allocation is
 * bounded by a small multiple of n, whatever the counts in buf claim. */
int kvcmd_decode_result(const uint8_t *buf, size_t n, struct kv_result *out);

#endif /* CONCLAVE_SM_KVCMD_H */
