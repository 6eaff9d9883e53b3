/* resp_id.c -- ID.NEXT and ID.SNOWFLAKE over RESP (resp_id.h; docs/resp.md "IDs").
 *
 * A thin layer: parse the command line the way Redis parses a count (a strict decimal
 * integer), find the node's ID service, and hand the request to id_api_take(), whose
 * callback is the caller's own done_cb (same signature), so no state of ours lives
 * between the command and its answer. Cancelling is id_api_cancel() with the same arg.
 * Everything that makes ids -- buffers, fetches, the worker lease, waiting and its 3 s
 * bound -- is id_api.c's; this file only words the answer in Redis's terms.
 *
 * Sections: errors | parsing | commands | replies.
 */
#include "api/resp_id.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"

_Static_assert(RESP_ID_COUNT_MAX == ID_API_TAKE_COUNT_MAX, "one command is one take");

/* ---- errors ----------------------------------------------------------------------------- */

const char *resp_id_strerror(int rv)
{
    switch (rv) {
    case 0: return "ok";
    case RESP_ID_ESYNTAX: return "syntax error";
    case RESP_ID_ENOSERVICE: return "this node runs no ID service";
    case RESP_ID_EMULTI: return "ID commands are not allowed in MULTI";
    default: return id_api_strerror(rv);
    }
}

/* ---- parsing ---------------------------------------------------------------------------- */

/* A count as Redis's string2ll reads it, then bounded: true with *out in
 * 1..RESP_ID_COUNT_MAX. */
static bool resp_id_count(const struct resp_arg *a, uint32_t *out)
{
    if (a->len == 0 || a->len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < a->len; i++) {
        char c = a->ptr[i];
        if (c < '0' || c > '9' || (i == 0 && c == '0' && a->len > 1))
            return false;
        v = v * 10 + (uint64_t)(c - '0');
        if (v > RESP_ID_COUNT_MAX)
            return false;
    }
    if (v < 1)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* ---- commands --------------------------------------------------------------------------- */

void resp_id_start(struct node *node, enum resp_cmd_id id, bool in_multi, uint32_t argc,
                   const struct resp_arg *argv, resp_id_done_cb done_cb, void *arg)
{
    CC_ASSERT(id == RESP_CMD_ID_NEXT || id == RESP_CMD_ID_SNOWFLAKE);
    CC_ASSERT(done_cb != NULL);
    const bool next = id == RESP_CMD_ID_NEXT;
    const uint32_t first = next ? 2 : 1; /* the count's position */
    CC_ASSERT(argc >= first);            /* the table's arity */
    uint32_t count = 1;
    if (in_multi) {
        done_cb(arg, RESP_ID_EMULTI, NULL, 0, next ? "ID.NEXT" : "ID.SNOWFLAKE");
        return;
    }
    if (argc > first + 1) {
        done_cb(arg, RESP_ID_ESYNTAX, NULL, 0, "syntax error");
        return;
    }
    if (argc == first + 1 && !resp_id_count(&argv[first], &count)) {
        done_cb(arg, ID_API_ECOUNT, NULL, 0, NULL);
        return;
    }
    struct id_api *ia = id_api_of(node);
    if (ia == NULL) {
        done_cb(arg, RESP_ID_ENOSERVICE, NULL, 0, "this node runs no ID service");
        return;
    }
    if (next)
        id_api_take(ia, argv[1].ptr, argv[1].len, count, done_cb, arg);
    else
        id_api_take(ia, NULL, 0, count, done_cb, arg);
}

void resp_id_cancel(struct node *node, void *arg)
{
    struct id_api *ia = id_api_of(node);
    if (ia != NULL)
        id_api_cancel(ia, arg);
}

/* ---- replies ---------------------------------------------------------------------------- */

int resp_id_reply(struct resp_out *o, int rv, const int64_t *ids, uint32_t n, const char *msg)
{
    const char *m = msg ? msg : "";
    switch (rv) {
    case 0:
        CC_ASSERT(n >= 1);
        if (n == 1)
            return resp_out_int(o, ids[0]);
        resp_out_array(o, n);
        for (uint32_t i = 0; i < n; i++)
            resp_out_int(o, ids[i]);
        return resp_out_status(o);
    case ID_API_ECOUNT:
        return resp_out_errorf(o, "value is not an integer or out of range (count must be "
                                  "1..%u)", RESP_ID_COUNT_MAX);
    case RESP_ID_ESYNTAX:
        return resp_out_error(o, "syntax error");
    case RESP_ID_EMULTI:
        return resp_out_errorf(o, "Command not allowed inside a transaction (%s: ids are "
                                  "not part of transactions)", m);
    case ID_API_ENOTFOUND:
        return resp_out_errorf(o, "unknown tag (%s); create it first: POST /v1/id/segments "
                                  "or `conclave id segment create TAG`", m);
    case ID_API_EFAILED:
        if (strstr(m, "characters of") != NULL) /* id_api's bad-tag text */
            return resp_out_errorf(o, "invalid tag: %s", m);
        return resp_out_errorf(o, "%s", m);
    case ID_API_EUNAVAILABLE:
    case ID_API_EBUSY:
    case ID_API_EROLLBACK:
    case ID_API_ESTOPPED:
        return resp_out_errorf(o, "-TRYAGAIN %s", m);
    default:
        return resp_out_errorf(o, "%s: %s", resp_id_strerror(rv), m);
    }
}
