/* json_bytes.h -- bytes in the API's JSON: text when they can be, base64 when not.
 *
 * Keys and values are arbitrary bytes. A field is a JSON string when the bytes are UTF-8
 * without NUL ("key": "a/b"), else "<name>_base64" holds their standard base64
 * ("key_base64": "AP8="). GET /v1/kv, watch events and txn responses all use this shape
 * (docs/API.md); the etcd paths (/v3) always use base64 under the plain name.
 */
#ifndef CC_API_JSON_BYTES_H
#define CC_API_JSON_BYTES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm/kv.h"

/* Standard base64 (with padding) of p[0, n) as a JSON string; NULL on allocation failure. */
json_t *json_bytes_base64(const uint8_t *p, size_t n);

/* Sets obj[name] (UTF-8 text without NUL) or obj[name + "_base64"] (other bytes). p may be
 * NULL when n is 0. */
void json_bytes_set(json_t *obj, const char *name, const uint8_t *p, size_t n);

/* {key, value (unless !with_value), create_revision, mod_revision, version, lease}: the
 * shape of GET /v1/kv/{key}. NULL on allocation failure. */
json_t *json_bytes_kv(const struct kv_kv *kv, bool with_value);

#endif /* CC_API_JSON_BYTES_H */
