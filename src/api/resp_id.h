/* resp_id.h -- the ID service's Redis commands: ID.NEXT tag [count], ID.SNOWFLAKE [count]
 * (issue #7; docs/resp.md "IDs", docs/id.md).
 *
 * resp_conn.c (the op dispatcher) hands these two commands here instead of to the KV
 * engine. The ids come from the node's ID service (id_api_take(): the same per-tag double
 * buffers, snowflake worker and limits as POST /v1/id/segments/{tag}/next and
 * GET /v1/id/snowflake), so a
 * follower serves them too: no -READONLY redirect, no Raft write per command.
 *
 *   resp_id_start(node, id, argc, argv, done_cb, op)   parse, then take the ids
 *   done_cb(op, rv, ids, n, msg)                      exactly once (maybe inline),
 *                                                      unless resp_id_cancel(node, op)
 *   resp_id_reply(out, rv, ids, n, msg)                writes the reply
 *
 * Replies: count absent or 1 -> an integer; count > 1 -> an array of count integers
 * (increasing within a segment). Errors, in Redis's style:
 *   -ERR value is not an integer or out of range      count is not 1..RESP_ID_COUNT_MAX
 *   -ERR syntax error                                  an argument too many
 *   -ERR unknown tag 'x' ...                           ID.NEXT of a tag never created
 *   -ERR invalid tag ...                               not 1-128 chars of [A-Za-z0-9._:-]
 *   -TRYAGAIN no snowflake worker ...                  no valid worker lease within 3 s
 *   -TRYAGAIN no segment ... / busy / clock rollback   retry later
 *   -ERR ID.NEXT is not allowed in MULTI               (and the EXEC aborts)
 *
 * Ownership: nothing here outlives a call; argv is read during resp_id_start only, the
 * answer's ids and text only during done_cb. Loop thread only.
 */
#ifndef CC_API_RESP_ID_H
#define CC_API_RESP_ID_H

#include <stdint.h>

#include "api/id_api.h"
#include "api/resp_cmdtab.h"
#include "api/resp_proto.h"
#include "node/node.h"

#define RESP_ID_COUNT_MAX 10000u /* ids per command: the HTTP batch limit (id_api.h) */

/* The answer: rv 0 with n ids (borrowed), or rv != 0 (an ID_API_E* or RESP_ID_E*) with
 * msg (borrowed). The same shape as id_api_take()'s callback. */
typedef id_api_take_cb resp_id_done_cb;

/* Errors of the command itself, -1981..-1989 (after resp_cmdtab's -1971..); the ids'
 * own failures are id_api.h's ID_API_E*. resp_id_strerror() names both. */
enum {
    RESP_ID_ESYNTAX = -1981,    /* an argument too many */
    RESP_ID_ENOSERVICE = -1982, /* the node runs no ID service (no HTTP API started) */
    RESP_ID_EMULTI = -1983,     /* inside MULTI: ids cannot be part of a transaction */
};
const char *resp_id_strerror(int rv);

/* Starts ID.NEXT or ID.SNOWFLAKE (id says which; argv[0] is the name); in_multi: the
 * connection is in MULTI (refused). done_cb(arg, ...)
 * follows exactly once, possibly before this returns, unless resp_id_cancel(node, arg). */
void resp_id_start(struct node *node, enum resp_cmd_id id, bool in_multi, uint32_t argc,
                   const struct resp_arg *argv, resp_id_done_cb done_cb, void *arg);

/* Forgets the command started with arg: done_cb will not run. */
void resp_id_cancel(struct node *node, void *arg);

/* Writes the reply of a done_cb's answer: an integer for one id, an array for more, or
 * the error. Returns resp_out_status(o). */
int resp_id_reply(struct resp_out *o, int rv, const int64_t *ids, uint32_t n, const char *msg);

#endif /* CC_API_RESP_ID_H */
