/* resp_cmdtab.c -- the static Redis command table and the COMMAND replies built from it.
 *
 * PLEASE KEEP THE TABLES SORTED: cmdtab[] by name, each subcommand array by the part
 * after '|'. Lookups are binary searches over them; test_resp_cmdtab checks the order,
 * that every id appears exactly once, and that key positions agree with key specs.
 * Names are lowercase ASCII, compared with the request's bytes case-insensitively.
 *
 * The data mirrors Redis 7's command JSON files (src/commands/) (arity, flags, key specs, docs),
 * with two Conclave choices: DELEX and SET take the Redis 8.4 value conditions IFEQ / IFNE (not the
 * digest ones), and READONLY / READWRITE describe serializable follower reads instead of Redis
 * Cluster replicas.
 *
 * Recursion: the reply writers recurse over the static tables only (subcommands one
 * level deep, argument trees at most RESP__ARG_DEPTH_MAX deep), never over input.
 *
 * Sections: argument trees | key specs | the table | lookup | errors | COMMAND replies.
 */
#include "api/resp_cmdtab.h"

#include <stdio.h>
#include <string.h>

#include "base/assert.h"

#define N(a)                     ((uint8_t)(sizeof(a) / sizeof((a)[0])))
#define RESP__ARG_DEPTH_MAX      4
#define RESP__ERR_ARGS_BYTES     128 /* Redis's cap on echoed arguments in errors */
#define RESP__CONTAINER_NAME_MAX 32

/* ---- argument trees -------------------------------------------------------------------- */

#define A(n, t)                                                 \
    {                                                           \
        .name = (n), .type = RESP_ARG_##t, .key_spec_index = -1 \
    }
#define A_KEY(n, ks)                                              \
    {                                                             \
        .name = (n), .type = RESP_ARG_KEY, .key_spec_index = (ks) \
    }
#define A_KEYS(n, ks)                                                                          \
    {                                                                                          \
        .name = (n), .type = RESP_ARG_KEY, .key_spec_index = (ks), .flags = RESP_ARGF_MULTIPLE \
    }
#define A_OPT(n, t)                                                                          \
    {                                                                                        \
        .name = (n), .type = RESP_ARG_##t, .key_spec_index = -1, .flags = RESP_ARGF_OPTIONAL \
    }
#define A_TOK(n, t, tok)                                                        \
    {                                                                           \
        .name = (n), .type = RESP_ARG_##t, .key_spec_index = -1, .token = (tok) \
    }
#define A_TOK_OPT(n, t, tok)                                                     \
    {                                                                            \
        .name = (n), .type = RESP_ARG_##t, .key_spec_index = -1, .token = (tok), \
        .flags = RESP_ARGF_OPTIONAL                                              \
    }
#define A_PURE(n, tok)                                                                 \
    {                                                                                  \
        .name = (n), .type = RESP_ARG_PURE_TOKEN, .key_spec_index = -1, .token = (tok) \
    }
#define A_GROUP(n, t, fl, arr)                                                                   \
    {                                                                                            \
        .name = (n), .type = RESP_ARG_##t, .key_spec_index = -1, .flags = (fl), .n_sub = N(arr), \
        .sub = (arr)                                                                             \
    }

static const struct resp_argspec args_key[] = {A_KEY("key", 0)};
static const struct resp_argspec args_keys[] = {A_KEYS("key", 0)};
static const struct resp_argspec args_key_value[] = {A_KEY("key", 0), A("value", STRING)};

static const struct resp_argspec set_condition[] = {
    A_PURE("nx", "NX"),
    A_PURE("xx", "XX"),
    {.name = "ifeq-value",
     .type = RESP_ARG_STRING,
     .key_spec_index = -1,
     .token = "IFEQ",
     .since = "8.4.0"},
    {.name = "ifne-value",
     .type = RESP_ARG_STRING,
     .key_spec_index = -1,
     .token = "IFNE",
     .since = "8.4.0"},
};
static const struct resp_argspec set_expiration[] = {
    A_TOK("seconds", INTEGER, "EX"),
    A_TOK("milliseconds", INTEGER, "PX"),
    {.name = "unix-time-seconds",
     .type = RESP_ARG_UNIX_TIME,
     .key_spec_index = -1,
     .token = "EXAT",
     .since = "6.2.0"},
    {.name = "unix-time-milliseconds",
     .type = RESP_ARG_UNIX_TIME,
     .key_spec_index = -1,
     .token = "PXAT",
     .since = "6.2.0"},
    {.name = "keepttl",
     .type = RESP_ARG_PURE_TOKEN,
     .key_spec_index = -1,
     .token = "KEEPTTL",
     .since = "6.0.0"},
};
static const struct resp_argspec args_set[] = {
    A_KEY("key", 0),
    A("value", STRING),
    {.name = "condition",
     .type = RESP_ARG_ONEOF,
     .key_spec_index = -1,
     .since = "2.6.12",
     .flags = RESP_ARGF_OPTIONAL,
     .n_sub = N(set_condition),
     .sub = set_condition},
    {.name = "get",
     .type = RESP_ARG_PURE_TOKEN,
     .key_spec_index = -1,
     .token = "GET",
     .since = "6.2.0",
     .flags = RESP_ARGF_OPTIONAL},
    A_GROUP("expiration", ONEOF, RESP_ARGF_OPTIONAL, set_expiration),
};
static const struct resp_argspec args_setex[] = {A_KEY("key", 0), A("seconds", INTEGER),
                                                 A("value", STRING)};
static const struct resp_argspec args_psetex[] = {A_KEY("key", 0), A("milliseconds", INTEGER),
                                                  A("value", STRING)};
static const struct resp_argspec getex_expiration[] = {
    A_TOK("seconds", INTEGER, "EX"),
    A_TOK("milliseconds", INTEGER, "PX"),
    A_TOK("unix-time-seconds", UNIX_TIME, "EXAT"),
    A_TOK("unix-time-milliseconds", UNIX_TIME, "PXAT"),
    A_PURE("persist", "PERSIST"),
};
static const struct resp_argspec args_getex[] = {
    A_KEY("key", 0),
    A_GROUP("expiration", ONEOF, RESP_ARGF_OPTIONAL, getex_expiration),
};
static const struct resp_argspec mset_data[] = {A_KEY("key", 0), A("value", STRING)};
static const struct resp_argspec args_mset[] = {
    A_GROUP("data", BLOCK, RESP_ARGF_MULTIPLE, mset_data),
};
static const struct resp_argspec args_getrange[] = {A_KEY("key", 0), A("start", INTEGER),
                                                    A("end", INTEGER)};
static const struct resp_argspec args_setrange[] = {A_KEY("key", 0), A("offset", INTEGER),
                                                    A("value", STRING)};
static const struct resp_argspec args_incrby[] = {A_KEY("key", 0), A("increment", INTEGER)};
static const struct resp_argspec args_decrby[] = {A_KEY("key", 0), A("decrement", INTEGER)};
static const struct resp_argspec args_incrbyfloat[] = {A_KEY("key", 0), A("increment", DOUBLE)};
static const struct resp_argspec delex_condition[] = {
    A_TOK("ifeq-value", STRING, "IFEQ"),
    A_TOK("ifne-value", STRING, "IFNE"),
};
static const struct resp_argspec args_delex[] = {
    A_KEY("key", 0),
    A_GROUP("condition", ONEOF, RESP_ARGF_OPTIONAL, delex_condition),
};
static const struct resp_argspec args_rename[] = {A_KEY("key", 0), A_KEY("newkey", 1)};
static const struct resp_argspec args_scan[] = {
    A("cursor", INTEGER),
    A_TOK_OPT("pattern", PATTERN, "MATCH"),
    A_TOK_OPT("count", INTEGER, "COUNT"),
};
static const struct resp_argspec args_keys_pattern[] = {A("pattern", PATTERN)};
static const struct resp_argspec expire_condition[] = {
    A_PURE("nx", "NX"),
    A_PURE("xx", "XX"),
    A_PURE("gt", "GT"),
    A_PURE("lt", "LT"),
};
#define EXPIRE_CONDITION                                                                     \
    {                                                                                        \
        .name = "condition", .type = RESP_ARG_ONEOF, .key_spec_index = -1, .since = "7.0.0", \
        .flags = RESP_ARGF_OPTIONAL, .n_sub = N(expire_condition), .sub = expire_condition   \
    }
static const struct resp_argspec args_expire[] = {A_KEY("key", 0), A("seconds", INTEGER),
                                                  EXPIRE_CONDITION};
static const struct resp_argspec args_pexpire[] = {A_KEY("key", 0), A("milliseconds", INTEGER),
                                                   EXPIRE_CONDITION};
static const struct resp_argspec args_expireat[] = {
    A_KEY("key", 0), A("unix-time-seconds", UNIX_TIME), EXPIRE_CONDITION};
static const struct resp_argspec args_pexpireat[] = {
    A_KEY("key", 0), A("unix-time-milliseconds", UNIX_TIME), EXPIRE_CONDITION};
static const struct resp_argspec args_ping[] = {A_OPT("message", STRING)};
static const struct resp_argspec args_echo[] = {A("message", STRING)};
static const struct resp_argspec hello_auth[] = {A("username", STRING), A("password", STRING)};
static const struct resp_argspec hello_arguments[] = {
    A("protover", INTEGER),
    {.name = "auth",
     .type = RESP_ARG_BLOCK,
     .key_spec_index = -1,
     .token = "AUTH",
     .flags = RESP_ARGF_OPTIONAL,
     .n_sub = N(hello_auth),
     .sub = hello_auth},
    A_TOK_OPT("clientname", STRING, "SETNAME"),
};
static const struct resp_argspec args_hello[] = {
    A_GROUP("arguments", BLOCK, RESP_ARGF_OPTIONAL, hello_arguments),
};
static const struct resp_argspec args_auth[] = {
    {.name = "username",
     .type = RESP_ARG_STRING,
     .key_spec_index = -1,
     .since = "6.0.0",
     .flags = RESP_ARGF_OPTIONAL},
    A("password", STRING),
};
static const struct resp_argspec args_select[] = {A("index", INTEGER)};
static const struct resp_argspec args_id_next[] = {A("tag", STRING), A_OPT("count", INTEGER)};
static const struct resp_argspec args_id_snowflake[] = {A_OPT("count", INTEGER)};
static const struct resp_argspec args_client_setname[] = {A("connection-name", STRING)};
static const struct resp_argspec args_info[] = {
    {.name = "section",
     .type = RESP_ARG_STRING,
     .key_spec_index = -1,
     .flags = RESP_ARGF_OPTIONAL | RESP_ARGF_MULTIPLE},
};
static const struct resp_argspec args_command_names[] = {
    {.name = "command-name",
     .type = RESP_ARG_STRING,
     .key_spec_index = -1,
     .flags = RESP_ARGF_OPTIONAL | RESP_ARGF_MULTIPLE},
};

/* ---- key specs ------------------------------------------------------------------------- */

#define KS(f, idx, last, step)                                                         \
    {                                                                                  \
        .flags = (f), .index = (idx), .lastkey = (last), .keystep = (step), .limit = 0 \
    }
#define F(x) RESP_KSF_##x

static const struct resp_keyspec ks_ro[] = {KS(F(RO), 1, 0, 1)};
static const struct resp_keyspec ks_ro_access[] = {KS(F(RO) | F(ACCESS), 1, 0, 1)};
static const struct resp_keyspec ks_ro_all[] = {KS(F(RO), 1, -1, 1)};
static const struct resp_keyspec ks_ro_access_all[] = {KS(F(RO) | F(ACCESS), 1, -1, 1)};
static const struct resp_keyspec ks_rw_access_update[] = {
    KS(F(RW) | F(ACCESS) | F(UPDATE), 1, 0, 1)};
static const struct resp_keyspec ks_rw_access_delete[] = {
    KS(F(RW) | F(ACCESS) | F(DELETE), 1, 0, 1)};
static const struct resp_keyspec ks_rw_update[] = {KS(F(RW) | F(UPDATE), 1, 0, 1)};
static const struct resp_keyspec ks_rw_insert[] = {KS(F(RW) | F(INSERT), 1, 0, 1)};
static const struct resp_keyspec ks_rw_delete[] = {KS(F(RW) | F(DELETE), 1, 0, 1)};
static const struct resp_keyspec ks_ow_insert[] = {KS(F(OW) | F(INSERT), 1, 0, 1)};
static const struct resp_keyspec ks_ow_update[] = {KS(F(OW) | F(UPDATE), 1, 0, 1)};
static const struct resp_keyspec ks_ow_update_pairs[] = {KS(F(OW) | F(UPDATE), 1, -1, 2)};
static const struct resp_keyspec ks_ow_insert_pairs[] = {KS(F(OW) | F(INSERT), 1, -1, 2)};
static const struct resp_keyspec ks_rm_delete_all[] = {KS(F(RM) | F(DELETE), 1, -1, 1)};
static const struct resp_keyspec ks_rename[] = {KS(F(RW) | F(ACCESS) | F(DELETE), 1, 0, 1),
                                                KS(F(OW) | F(UPDATE), 2, 0, 1)};

/* ---- the table ------------------------------------------------------------------------- */

#define KEYSPECS(a)   .n_keyspecs = N(a), .keyspecs = (a)
#define ARGS(a)       .n_args = N(a), .args = (a)
#define KEYS(f, l, s) .first_key = (f), .last_key = (l), .key_step = (s)
#define CF(x)         RESP_CMDF_##x
#define ACL(x)        RESP_ACL_##x

/* Flags shared by the connection-level commands Redis lets run at any time. */
#define CONN_ALWAYS \
    (CF(NOSCRIPT) | CF(LOADING) | CF(STALE) | CF(FAST) | CF(NO_AUTH) | CF(ALLOW_BUSY))
#define TXN_FLAGS (CF(NOSCRIPT) | CF(LOADING) | CF(STALE) | CF(FAST) | CF(ALLOW_BUSY))

static const struct resp_cmd_spec client_subs[] = {
    {.name = "client|getname",
     .id = RESP_CMD_CLIENT_GETNAME,
     .arity = 2,
     .flags = CF(NOSCRIPT) | CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns the name of the connection.",
     .since = "2.6.9",
     .group = "connection",
     .complexity = "O(1)"},
    {.name = "client|help",
     .id = RESP_CMD_CLIENT_HELP,
     .arity = 2,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns helpful text about the different subcommands.",
     .since = "5.0.0",
     .group = "connection",
     .complexity = "O(1)"},
    {.name = "client|id",
     .id = RESP_CMD_CLIENT_ID,
     .arity = 2,
     .flags = CF(NOSCRIPT) | CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns the unique client ID of the connection.",
     .since = "5.0.0",
     .group = "connection",
     .complexity = "O(1)"},
    {.name = "client|info",
     .id = RESP_CMD_CLIENT_INFO,
     .arity = 2,
     .flags = CF(NOSCRIPT) | CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns information about the connection.",
     .since = "6.2.0",
     .group = "connection",
     .complexity = "O(1)"},
    {.name = "client|setname",
     .id = RESP_CMD_CLIENT_SETNAME,
     .arity = 3,
     .flags = CF(NOSCRIPT) | CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Sets the connection name.",
     .since = "2.6.9",
     .group = "connection",
     .complexity = "O(1)",
     ARGS(args_client_setname)},
};

static const struct resp_cmd_spec command_subs[] = {
    {.name = "command|count",
     .id = RESP_CMD_COMMAND_COUNT,
     .arity = 2,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns a count of commands.",
     .since = "2.8.13",
     .group = "server",
     .complexity = "O(1)"},
    {.name = "command|docs",
     .id = RESP_CMD_COMMAND_DOCS,
     .arity = -2,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns documentary information about one, multiple or all commands.",
     .since = "7.0.0",
     .group = "server",
     .complexity = "O(N) where N is the number of commands to look up",
     ARGS(args_command_names)},
    {.name = "command|help",
     .id = RESP_CMD_COMMAND_HELP,
     .arity = 2,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns helpful text about the different subcommands.",
     .since = "5.0.0",
     .group = "server",
     .complexity = "O(1)"},
    {.name = "command|info",
     .id = RESP_CMD_COMMAND_INFO,
     .arity = -2,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns information about one, multiple or all commands.",
     .since = "2.8.13",
     .group = "server",
     .complexity = "O(N) where N is the number of commands to look up",
     ARGS(args_command_names)},
};

static const struct resp_cmd_spec cmdtab[] = {
    {.name = "append",
     .id = RESP_CMD_APPEND,
     .arity = 3,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Appends a string to the value of a key. Creates the key if it doesn't exist.",
     .since = "2.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_insert),
     ARGS(args_key_value)},
    {.name = "auth",
     .id = RESP_CMD_AUTH,
     .arity = -2,
     .flags = CONN_ALWAYS,
     .acl = ACL(CONNECTION),
     .summary = "Authenticates the connection.",
     .since = "1.0.0",
     .group = "connection",
     .complexity = "O(N) where N is the number of passwords defined for the user",
     ARGS(args_auth)},
    {.name = "client",
     .id = RESP_CMD_CLIENT,
     .arity = -2,
     .summary = "A container for client connection commands.",
     .since = "2.4.0",
     .group = "connection",
     .complexity = "Depends on subcommand.",
     .n_subs = N(client_subs),
     .subs = client_subs},
    {.name = "command",
     .id = RESP_CMD_COMMAND,
     .arity = -1,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(CONNECTION),
     .summary = "Returns detailed information about all commands.",
     .since = "2.8.13",
     .group = "server",
     .complexity = "O(N) where N is the total number of Redis commands",
     .n_subs = N(command_subs),
     .subs = command_subs},
    {.name = "dbsize",
     .id = RESP_CMD_DBSIZE,
     .arity = 1,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     .summary = "Returns the number of keys in the database.",
     .since = "1.0.0",
     .group = "server",
     .complexity = "O(1)"},
    {.name = "decr",
     .id = RESP_CMD_DECR,
     .arity = 2,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Decrements the integer value of a key by one. Uses 0 as initial value if the "
                "key doesn't exist.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_key)},
    {.name = "decrby",
     .id = RESP_CMD_DECRBY,
     .arity = 3,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Decrements a number from the integer value of a key. Uses 0 as initial value "
                "if the key doesn't exist.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_decrby)},
    {.name = "del",
     .id = RESP_CMD_DEL,
     .arity = -2,
     .flags = CF(WRITE),
     .acl = ACL(KEYSPACE),
     KEYS(1, -1, 1),
     .summary = "Deletes one or more keys.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(N) where N is the number of keys that will be removed.",
     KEYSPECS(ks_rm_delete_all),
     ARGS(args_keys)},
    {.name = "delex",
     .id = RESP_CMD_DELEX,
     .arity = -2,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Conditionally removes the specified key based on value comparison.",
     .since = "8.4.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_delete),
     ARGS(args_delex)},
    {.name = "discard",
     .id = RESP_CMD_DISCARD,
     .arity = 1,
     .flags = TXN_FLAGS,
     .acl = ACL(TRANSACTION),
     .summary = "Discards a transaction.",
     .since = "2.0.0",
     .group = "transactions",
     .complexity = "O(N), when N is the number of queued commands"},
    {.name = "echo",
     .id = RESP_CMD_ECHO,
     .arity = 2,
     .flags = CF(LOADING) | CF(STALE) | CF(FAST),
     .acl = ACL(CONNECTION),
     .summary = "Returns the given string.",
     .since = "1.0.0",
     .group = "connection",
     .complexity = "O(1)",
     ARGS(args_echo)},
    {.name = "exec",
     .id = RESP_CMD_EXEC,
     .arity = 1,
     .flags = CF(NOSCRIPT) | CF(LOADING) | CF(STALE) | CF(SKIP_SLOWLOG),
     .acl = ACL(TRANSACTION),
     .summary = "Executes all commands in a transaction.",
     .since = "1.2.0",
     .group = "transactions",
     .complexity = "Depends on commands in the transaction"},
    {.name = "exists",
     .id = RESP_CMD_EXISTS,
     .arity = -2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, -1, 1),
     .summary = "Determines whether one or more keys exist.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(N) where N is the number of keys to check.",
     KEYSPECS(ks_ro_all),
     ARGS(args_keys)},
    {.name = "expire",
     .id = RESP_CMD_EXPIRE,
     .arity = -3,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Sets the expiration time of a key in seconds.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_update),
     ARGS(args_expire)},
    {.name = "expireat",
     .id = RESP_CMD_EXPIREAT,
     .arity = -3,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Sets the expiration time of a key to a Unix timestamp.",
     .since = "1.2.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_update),
     ARGS(args_expireat)},
    {.name = "expiretime",
     .id = RESP_CMD_EXPIRETIME,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Returns the expiration time of a key as a Unix timestamp.",
     .since = "7.0.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_ro_access),
     ARGS(args_key)},
    {.name = "get",
     .id = RESP_CMD_GET,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Returns the string value of a key.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_ro_access),
     ARGS(args_key)},
    {.name = "getdel",
     .id = RESP_CMD_GETDEL,
     .arity = 2,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Returns the string value of a key after deleting the key.",
     .since = "6.2.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_delete),
     ARGS(args_key)},
    {.name = "getex",
     .id = RESP_CMD_GETEX,
     .arity = -2,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Returns the string value of a key after setting its expiration time.",
     .since = "6.2.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_getex)},
    {.name = "getrange",
     .id = RESP_CMD_GETRANGE,
     .arity = 4,
     .flags = CF(READONLY),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Returns a substring of the string stored at a key.",
     .since = "2.4.0",
     .group = "string",
     .complexity = "O(N) where N is the length of the returned string.",
     KEYSPECS(ks_ro_access),
     ARGS(args_getrange)},
    {.name = "getset",
     .id = RESP_CMD_GETSET,
     .arity = 3,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Returns the previous string value of a key after setting it to a new value.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_key_value)},
    {.name = "hello",
     .id = RESP_CMD_HELLO,
     .arity = -1,
     .flags = CONN_ALWAYS,
     .acl = ACL(CONNECTION),
     .summary = "Handshakes with the Redis server.",
     .since = "6.0.0",
     .group = "connection",
     .complexity = "O(1)",
     ARGS(args_hello)},
    /* Conclave's ID service (docs/id.md, docs/resp.md): not keys, so no key specs. */
    {.name = "id.next",
     .id = RESP_CMD_ID_NEXT,
     .arity = -2,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(FAST),
     .summary = "Returns the next ids of a segment tag from this node's double buffer "
                "(Conclave; an integer, or an array with count > 1).",
     .since = "7.2.0",
     .group = "generic",
     .complexity = "O(N) where N is count (1 by default, at most 10000).",
     ARGS(args_id_next)},
    {.name = "id.snowflake",
     .id = RESP_CMD_ID_SNOWFLAKE,
     .arity = -1,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(FAST),
     .summary = "Returns snowflake ids under this node's leased worker id (Conclave; an "
                "integer, or an array with count > 1).",
     .since = "7.2.0",
     .group = "generic",
     .complexity = "O(N) where N is count (1 by default, at most 10000).",
     ARGS(args_id_snowflake)},
    {.name = "incr",
     .id = RESP_CMD_INCR,
     .arity = 2,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Increments the integer value of a key by one. Uses 0 as initial value if the "
                "key doesn't exist.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_key)},
    {.name = "incrby",
     .id = RESP_CMD_INCRBY,
     .arity = 3,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Increments the integer value of a key by a number. Uses 0 as initial value if "
                "the key doesn't exist.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_incrby)},
    {.name = "incrbyfloat",
     .id = RESP_CMD_INCRBYFLOAT,
     .arity = 3,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Increment the floating point value of a key by a number. Uses 0 as initial "
                "value if the key doesn't exist.",
     .since = "2.6.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_incrbyfloat)},
    {.name = "info",
     .id = RESP_CMD_INFO,
     .arity = -1,
     .flags = CF(LOADING) | CF(STALE),
     .acl = ACL(DANGEROUS),
     .summary = "Returns information and statistics about the server.",
     .since = "1.0.0",
     .group = "server",
     .complexity = "O(1)",
     ARGS(args_info)},
    {.name = "keys",
     .id = RESP_CMD_KEYS,
     .arity = 2,
     .flags = CF(READONLY),
     .acl = ACL(KEYSPACE) | ACL(DANGEROUS),
     .summary = "Returns all key names that match a pattern.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(N) with N being the number of keys in the database",
     ARGS(args_keys_pattern)},
    {.name = "mget",
     .id = RESP_CMD_MGET,
     .arity = -2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, -1, 1),
     .summary = "Atomically returns the string values of one or more keys.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(N) where N is the number of keys to retrieve.",
     KEYSPECS(ks_ro_access_all),
     ARGS(args_keys)},
    {.name = "mset",
     .id = RESP_CMD_MSET,
     .arity = -3,
     .flags = CF(WRITE) | CF(DENYOOM),
     .acl = ACL(STRING),
     KEYS(1, -1, 2),
     .summary = "Atomically creates or modifies the string values of one or more keys.",
     .since = "1.0.1",
     .group = "string",
     .complexity = "O(N) where N is the number of keys to set.",
     KEYSPECS(ks_ow_update_pairs),
     ARGS(args_mset)},
    {.name = "msetnx",
     .id = RESP_CMD_MSETNX,
     .arity = -3,
     .flags = CF(WRITE) | CF(DENYOOM),
     .acl = ACL(STRING),
     KEYS(1, -1, 2),
     .summary = "Atomically modifies the string values of one or more keys only when all keys "
                "don't exist.",
     .since = "1.0.1",
     .group = "string",
     .complexity = "O(N) where N is the number of keys to set.",
     KEYSPECS(ks_ow_insert_pairs),
     ARGS(args_mset)},
    {.name = "multi",
     .id = RESP_CMD_MULTI,
     .arity = 1,
     .flags = TXN_FLAGS,
     .acl = ACL(TRANSACTION),
     .summary = "Starts a transaction.",
     .since = "1.2.0",
     .group = "transactions",
     .complexity = "O(1)"},
    {.name = "persist",
     .id = RESP_CMD_PERSIST,
     .arity = 2,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Removes the expiration time of a key.",
     .since = "2.2.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_update),
     ARGS(args_key)},
    {.name = "pexpire",
     .id = RESP_CMD_PEXPIRE,
     .arity = -3,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Sets the expiration time of a key in milliseconds.",
     .since = "2.6.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_update),
     ARGS(args_pexpire)},
    {.name = "pexpireat",
     .id = RESP_CMD_PEXPIREAT,
     .arity = -3,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Sets the expiration time of a key to a Unix milliseconds timestamp.",
     .since = "2.6.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_update),
     ARGS(args_pexpireat)},
    {.name = "pexpiretime",
     .id = RESP_CMD_PEXPIRETIME,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Returns the expiration time of a key as a Unix milliseconds timestamp.",
     .since = "7.0.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_ro_access),
     ARGS(args_key)},
    {.name = "ping",
     .id = RESP_CMD_PING,
     .arity = -1,
     .flags = CF(FAST),
     .acl = ACL(CONNECTION),
     .summary = "Returns the server's liveliness response.",
     .since = "1.0.0",
     .group = "connection",
     .complexity = "O(1)",
     ARGS(args_ping)},
    {.name = "psetex",
     .id = RESP_CMD_PSETEX,
     .arity = 4,
     .flags = CF(WRITE) | CF(DENYOOM),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Sets both string value and expiration time in milliseconds of a key. The key "
                "is created if it doesn't exist.",
     .since = "2.6.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_ow_update),
     ARGS(args_psetex)},
    {.name = "pttl",
     .id = RESP_CMD_PTTL,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Returns the expiration time in milliseconds of a key.",
     .since = "2.6.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_ro_access),
     ARGS(args_key)},
    {.name = "quit",
     .id = RESP_CMD_QUIT,
     .arity = -1,
     .flags = CONN_ALWAYS,
     .acl = ACL(CONNECTION),
     .summary = "Closes the connection.",
     .since = "1.0.0",
     .group = "connection",
     .complexity = "O(1)"},
    {.name = "readonly",
     .id = RESP_CMD_READONLY,
     .arity = 1,
     .flags = CF(LOADING) | CF(STALE) | CF(FAST),
     .acl = ACL(CONNECTION),
     .summary = "Lets the connection serve reads from the local node's state (serializable, "
                "possibly stale) instead of linearizable reads.",
     .since = "3.0.0",
     .group = "cluster",
     .complexity = "O(1)"},
    {.name = "readwrite",
     .id = RESP_CMD_READWRITE,
     .arity = 1,
     .flags = CF(LOADING) | CF(STALE) | CF(FAST),
     .acl = ACL(CONNECTION),
     .summary = "Returns the connection to linearizable reads (the default).",
     .since = "3.0.0",
     .group = "cluster",
     .complexity = "O(1)"},
    {.name = "rename",
     .id = RESP_CMD_RENAME,
     .arity = 3,
     .flags = CF(WRITE),
     .acl = ACL(KEYSPACE),
     KEYS(1, 2, 1),
     .summary = "Renames a key and overwrites the destination.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_rename),
     ARGS(args_rename)},
    {.name = "scan",
     .id = RESP_CMD_SCAN,
     .arity = -2,
     .flags = CF(READONLY),
     .acl = ACL(KEYSPACE),
     .summary = "Iterates over the key names in the database.",
     .since = "2.8.0",
     .group = "generic",
     .complexity = "O(1) for every call. O(N) for a complete iteration, including enough "
                   "command calls for the cursor to return back to 0. N is the number of "
                   "elements inside the collection.",
     ARGS(args_scan)},
    {.name = "select",
     .id = RESP_CMD_SELECT,
     .arity = 2,
     .flags = CF(LOADING) | CF(STALE) | CF(FAST),
     .acl = ACL(CONNECTION),
     .summary = "Changes the selected database.",
     .since = "1.0.0",
     .group = "connection",
     .complexity = "O(1)",
     ARGS(args_select)},
    {.name = "set",
     .id = RESP_CMD_SET,
     .arity = -3,
     .flags = CF(WRITE) | CF(DENYOOM),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Sets the string value of a key, ignoring its type. The key is created if it "
                "doesn't exist.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_rw_access_update),
     ARGS(args_set)},
    {.name = "setex",
     .id = RESP_CMD_SETEX,
     .arity = 4,
     .flags = CF(WRITE) | CF(DENYOOM),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Sets the string value and expiration time of a key. Creates the key if it "
                "doesn't exist.",
     .since = "2.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_ow_update),
     ARGS(args_setex)},
    {.name = "setnx",
     .id = RESP_CMD_SETNX,
     .arity = 3,
     .flags = CF(WRITE) | CF(DENYOOM) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Set the string value of a key only when the key doesn't exist.",
     .since = "1.0.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_ow_insert),
     ARGS(args_key_value)},
    {.name = "setrange",
     .id = RESP_CMD_SETRANGE,
     .arity = 4,
     .flags = CF(WRITE) | CF(DENYOOM),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Overwrites a part of a string value with another by an offset. Creates the "
                "key if it doesn't exist.",
     .since = "2.2.0",
     .group = "string",
     .complexity = "O(1), not counting the time taken to copy the new string in place.",
     KEYSPECS(ks_rw_update),
     ARGS(args_setrange)},
    {.name = "strlen",
     .id = RESP_CMD_STRLEN,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(STRING),
     KEYS(1, 1, 1),
     .summary = "Returns the length of a string value.",
     .since = "2.2.0",
     .group = "string",
     .complexity = "O(1)",
     KEYSPECS(ks_ro),
     ARGS(args_key)},
    {.name = "ttl",
     .id = RESP_CMD_TTL,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Returns the expiration time in seconds of a key.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_ro_access),
     ARGS(args_key)},
    {.name = "type",
     .id = RESP_CMD_TYPE,
     .arity = 2,
     .flags = CF(READONLY) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, 1, 1),
     .summary = "Determines the type of value stored at a key.",
     .since = "1.0.0",
     .group = "generic",
     .complexity = "O(1)",
     KEYSPECS(ks_ro),
     ARGS(args_key)},
    {.name = "unlink",
     .id = RESP_CMD_UNLINK,
     .arity = -2,
     .flags = CF(WRITE) | CF(FAST),
     .acl = ACL(KEYSPACE),
     KEYS(1, -1, 1),
     .summary = "Asynchronously deletes one or more keys.",
     .since = "4.0.0",
     .group = "generic",
     .complexity = "O(1) for each key removed regardless of its size.",
     KEYSPECS(ks_rm_delete_all),
     ARGS(args_keys)},
    {.name = "unwatch",
     .id = RESP_CMD_UNWATCH,
     .arity = 1,
     .flags = TXN_FLAGS,
     .acl = ACL(TRANSACTION),
     .summary = "Forgets about watched keys of a transaction.",
     .since = "2.2.0",
     .group = "transactions",
     .complexity = "O(1)"},
    {.name = "watch",
     .id = RESP_CMD_WATCH,
     .arity = -2,
     .flags = TXN_FLAGS,
     .acl = ACL(TRANSACTION),
     KEYS(1, -1, 1),
     .summary = "Monitors changes to keys to determine the execution of a transaction.",
     .since = "2.2.0",
     .group = "transactions",
     .complexity = "O(1) for every key.",
     KEYSPECS(ks_ro_all),
     ARGS(args_keys)},
};

size_t resp_cmdtab_count(void)
{
    return sizeof(cmdtab) / sizeof(cmdtab[0]);
}

const struct resp_cmd_spec *resp_cmdtab_at(size_t i)
{
    CC_ASSERT(i < resp_cmdtab_count());
    return &cmdtab[i];
}

/* ---- lookup ---------------------------------------------------------------------------- */

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Orders the request bytes s[0, n), lowercased, against the table name t (NUL-ended). */
static int name_cmp(const char *s, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char a = lower((unsigned char)s[i]);
        const unsigned char b = (unsigned char)t[i];
        if (b == '\0') {
            return 1; /* s is longer */
        }
        if (a != b) {
            return a < b ? -1 : 1;
        }
    }
    return t[n] == '\0' ? 0 : -1;
}

/* The part of a table name the binary search orders by: after '|' for subcommands. */
static const char *search_name(const struct resp_cmd_spec *c)
{
    const char *bar = strchr(c->name, '|');
    return bar != NULL ? bar + 1 : c->name;
}

static const struct resp_cmd_spec *bsearch_spec(const struct resp_cmd_spec *tab, size_t count,
                                                const char *name, size_t len)
{
    size_t lo = 0, hi = count;
    while (lo < hi) { /* halves every round */
        const size_t mid = lo + (hi - lo) / 2;
        const int c = name_cmp(name, len, search_name(&tab[mid]));
        if (c == 0) {
            return &tab[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

const struct resp_cmd_spec *resp_cmdtab_lookup(const char *name, size_t len)
{
    return bsearch_spec(cmdtab, resp_cmdtab_count(), name, len);
}

const struct resp_cmd_spec *resp_cmdtab_lookup_sub(const struct resp_cmd_spec *parent,
                                                   const char *name, size_t len)
{
    if (parent->n_subs == 0) {
        return NULL;
    }
    return bsearch_spec(parent->subs, parent->n_subs, name, len);
}

const struct resp_cmd_spec *resp_cmdtab_lookup_fullname(const char *name, size_t len)
{
    const char *bar = memchr(name, '|', len);
    if (bar == NULL) {
        return resp_cmdtab_lookup(name, len);
    }
    const struct resp_cmd_spec *parent = resp_cmdtab_lookup(name, (size_t)(bar - name));
    if (parent == NULL) {
        return NULL;
    }
    return resp_cmdtab_lookup_sub(parent, bar + 1, len - (size_t)(bar - name) - 1);
}

bool resp_cmdtab_arity_ok(const struct resp_cmd_spec *spec, uint32_t argc)
{
    if (spec->arity > 0) {
        return argc == (uint32_t)spec->arity;
    }
    return argc >= (uint32_t)(-spec->arity);
}

/* ---- errors ---------------------------------------------------------------------------- */

const char *resp_cmdtab_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case RESP_CMDTAB_EUNKNOWN:
        return "unknown command";
    case RESP_CMDTAB_ENOSUB:
        return "unknown subcommand";
    case RESP_CMDTAB_EARITY:
        return "wrong number of arguments";
    default:
        return "unknown resp_cmdtab error";
    }
}

/* Bytes printf's %s would print of an argument: Redis formats its arguments as C
 * strings, so a NUL ends them. */
static int cstr_len(const struct resp_arg *a, size_t cap)
{
    const char *nul = memchr(a->ptr, '\0', a->len);
    size_t n = nul != NULL ? (size_t)(nul - a->ptr) : a->len;
    if (n > cap) {
        n = cap;
    }
    return (int)n;
}

int resp_cmdtab_err_unknown(struct resp_out *o, uint32_t argc, const struct resp_arg *argv)
{
    CC_ASSERT(argc >= 1);
    /* Redis: "'%.*s' " per argument while fewer than 128 bytes were written, each cut
     * to what is left of the 128. */
    char args[RESP__ERR_ARGS_BYTES + 8 + RESP__ERR_ARGS_BYTES];
    size_t alen = 0;
    for (uint32_t i = 1; i < argc && alen < RESP__ERR_ARGS_BYTES; i++) {
        const int n = cstr_len(&argv[i], RESP__ERR_ARGS_BYTES - alen);
        const int w = snprintf(args + alen, sizeof(args) - alen, "'%.*s' ", n, argv[i].ptr);
        CC_ASSERT(w == n + 3 && (size_t)w < sizeof(args) - alen);
        alen += (size_t)w;
    }
    args[alen] = '\0';
    return resp_out_errorf(o, "unknown command '%.*s', with args beginning with: %s",
                           cstr_len(&argv[0], 128), argv[0].ptr, args);
}

int resp_cmdtab_err_subcommand(struct resp_out *o, const struct resp_arg *cmd,
                               const struct resp_arg *sub)
{
    char upper[RESP__CONTAINER_NAME_MAX];
    const int n = cstr_len(cmd, sizeof(upper) - 1);
    for (int i = 0; i < n; i++) {
        char c = cmd->ptr[i];
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        upper[i] = c;
    }
    upper[n] = '\0';
    return resp_out_errorf(o, "unknown subcommand '%.*s'. Try %s HELP.", cstr_len(sub, 128),
                           sub->ptr, upper);
}

int resp_cmdtab_err_arity(struct resp_out *o, const struct resp_cmd_spec *spec)
{
    return resp_out_errorf(o, "wrong number of arguments for '%s' command", spec->name);
}

int resp_cmdtab_resolve(struct resp_out *o, uint32_t argc, const struct resp_arg *argv,
                        const struct resp_cmd_spec **spec)
{
    CC_ASSERT(argc >= 1);
    *spec = NULL;
    const struct resp_cmd_spec *c = resp_cmdtab_lookup(argv[0].ptr, argv[0].len);
    if (c == NULL) {
        if (o != NULL) {
            resp_cmdtab_err_unknown(o, argc, argv);
        }
        return RESP_CMDTAB_EUNKNOWN;
    }
    if (c->n_subs > 0 && argc > 1) { /* Redis's lookupCommandLogic: one level deep */
        const struct resp_cmd_spec *sub = resp_cmdtab_lookup_sub(c, argv[1].ptr, argv[1].len);
        if (sub == NULL) {
            if (o != NULL) {
                resp_cmdtab_err_subcommand(o, &argv[0], &argv[1]);
            }
            return RESP_CMDTAB_ENOSUB;
        }
        c = sub;
    }
    *spec = c;
    if (!resp_cmdtab_arity_ok(c, argc)) {
        if (o != NULL) {
            resp_cmdtab_err_arity(o, c);
        }
        return RESP_CMDTAB_EARITY;
    }
    return 0;
}

/* ---- COMMAND replies ------------------------------------------------------------------- */

struct flag_name {
    uint32_t bit;
    const char *name;
};

/* In Redis's reply order (addReplyFlagsForCommand). */
static const struct flag_name cmd_flag_names[] = {
    {RESP_CMDF_WRITE, "write"},
    {RESP_CMDF_READONLY, "readonly"},
    {RESP_CMDF_DENYOOM, "denyoom"},
    {RESP_CMDF_ADMIN, "admin"},
    {RESP_CMDF_NOSCRIPT, "noscript"},
    {RESP_CMDF_LOADING, "loading"},
    {RESP_CMDF_STALE, "stale"},
    {RESP_CMDF_SKIP_SLOWLOG, "skip_slowlog"},
    {RESP_CMDF_FAST, "fast"},
    {RESP_CMDF_NO_AUTH, "no_auth"},
    {RESP_CMDF_ALLOW_BUSY, "allow_busy"},
};

/* In Redis's ACLCommandCategories order. */
static const struct flag_name acl_names[] = {
    {RESP_ACL_KEYSPACE, "@keyspace"},
    {RESP_ACL_READ, "@read"},
    {RESP_ACL_WRITE, "@write"},
    {RESP_ACL_STRING, "@string"},
    {RESP_ACL_ADMIN, "@admin"},
    {RESP_ACL_FAST, "@fast"},
    {RESP_ACL_SLOW, "@slow"},
    {RESP_ACL_DANGEROUS, "@dangerous"},
    {RESP_ACL_CONNECTION, "@connection"},
    {RESP_ACL_TRANSACTION, "@transaction"},
};

static const struct flag_name ks_flag_names[] = {
    {RESP_KSF_RO, "RO"},         {RESP_KSF_RW, "RW"},         {RESP_KSF_OW, "OW"},
    {RESP_KSF_RM, "RM"},         {RESP_KSF_ACCESS, "access"}, {RESP_KSF_UPDATE, "update"},
    {RESP_KSF_INSERT, "insert"}, {RESP_KSF_DELETE, "delete"},
};

static const struct flag_name arg_flag_names[] = {
    {RESP_ARGF_OPTIONAL, "optional"},
    {RESP_ARGF_MULTIPLE, "multiple"},
    {RESP_ARGF_MULTIPLE_TOKEN, "multiple_token"},
};

static const char *const arg_type_names[] = {
    [RESP_ARG_STRING] = "string",         [RESP_ARG_INTEGER] = "integer",
    [RESP_ARG_DOUBLE] = "double",         [RESP_ARG_KEY] = "key",
    [RESP_ARG_PATTERN] = "pattern",       [RESP_ARG_UNIX_TIME] = "unix-time",
    [RESP_ARG_PURE_TOKEN] = "pure-token", [RESP_ARG_ONEOF] = "oneof",
    [RESP_ARG_BLOCK] = "block",
};

/* A set of status strings, one per bit of `bits` that `names` knows. */
static int write_flag_set(struct resp_out *o, uint32_t bits, const struct flag_name *names,
                          size_t n_names)
{
    uint64_t count = 0;
    for (size_t i = 0; i < n_names; i++) {
        count += (bits & names[i].bit) != 0;
    }
    resp_out_set(o, count);
    for (size_t i = 0; i < n_names; i++) {
        if (bits & names[i].bit) {
            resp_out_simple(o, names[i].name);
        }
    }
    return resp_out_status(o);
}

/* Redis's setImplicitACLCategories. */
static uint32_t acl_categories(const struct resp_cmd_spec *c)
{
    uint32_t acl = c->acl;
    if (c->flags & RESP_CMDF_WRITE) {
        acl |= RESP_ACL_WRITE;
    }
    if (c->flags & RESP_CMDF_READONLY) {
        acl |= RESP_ACL_READ;
    }
    if (c->flags & RESP_CMDF_ADMIN) {
        acl |= RESP_ACL_ADMIN | RESP_ACL_DANGEROUS;
    }
    if (c->flags & RESP_CMDF_FAST) {
        acl |= RESP_ACL_FAST;
    }
    if (!(acl & RESP_ACL_FAST)) {
        acl |= RESP_ACL_SLOW;
    }
    return acl;
}

static void write_keyspecs(struct resp_out *o, const struct resp_cmd_spec *c)
{
    resp_out_array(o, c->n_keyspecs);
    for (uint8_t i = 0; i < c->n_keyspecs; i++) {
        const struct resp_keyspec *k = &c->keyspecs[i];
        resp_out_map(o, 3);
        resp_out_bulk_cstr(o, "flags");
        write_flag_set(o, k->flags, ks_flag_names,
                       sizeof(ks_flag_names) / sizeof(ks_flag_names[0]));
        resp_out_bulk_cstr(o, "begin_search");
        resp_out_map(o, 2);
        resp_out_bulk_cstr(o, "type");
        resp_out_bulk_cstr(o, "index");
        resp_out_bulk_cstr(o, "spec");
        resp_out_map(o, 1);
        resp_out_bulk_cstr(o, "index");
        resp_out_int(o, k->index);
        resp_out_bulk_cstr(o, "find_keys");
        resp_out_map(o, 2);
        resp_out_bulk_cstr(o, "type");
        resp_out_bulk_cstr(o, "range");
        resp_out_bulk_cstr(o, "spec");
        resp_out_map(o, 3);
        resp_out_bulk_cstr(o, "lastkey");
        resp_out_int(o, k->lastkey);
        resp_out_bulk_cstr(o, "keystep");
        resp_out_int(o, k->keystep);
        resp_out_bulk_cstr(o, "limit");
        resp_out_int(o, k->limit);
    }
}

/* One command's COMMAND INFO entry (addReplyCommandInfo). depth 0 = top level. */
static int write_info_one(struct resp_out *o, const struct resp_cmd_spec *c, int depth)
{
    CC_ASSERT(depth <= 1);
    resp_out_array(o, 10);
    resp_out_bulk_cstr(o, c->name);
    resp_out_int(o, c->arity);
    write_flag_set(o, c->flags, cmd_flag_names, sizeof(cmd_flag_names) / sizeof(cmd_flag_names[0]));
    resp_out_int(o, c->first_key);
    resp_out_int(o, c->last_key);
    resp_out_int(o, c->key_step);
    write_flag_set(o, acl_categories(c), acl_names, sizeof(acl_names) / sizeof(acl_names[0]));
    resp_out_set(o, 0); /* tips */
    write_keyspecs(o, c);
    if (c->n_subs == 0) {
        resp_out_set(o, 0);
    } else {
        resp_out_array(o, c->n_subs);
        for (uint8_t i = 0; i < c->n_subs; i++) {
            write_info_one(o, &c->subs[i], depth + 1);
        }
    }
    return resp_out_status(o);
}

static void write_args(struct resp_out *o, const struct resp_argspec *args, uint8_t n, int depth)
{
    CC_ASSERT(depth < RESP__ARG_DEPTH_MAX);
    resp_out_array(o, n);
    for (uint8_t i = 0; i < n; i++) {
        const struct resp_argspec *a = &args[i];
        const bool is_key = a->type == RESP_ARG_KEY;
        const bool is_group = a->type == RESP_ARG_ONEOF || a->type == RESP_ARG_BLOCK;
        CC_ASSERT(is_group == (a->n_sub > 0));
        const uint64_t m = 2 + (uint64_t)is_key + (a->token != NULL) + (a->since != NULL) +
                           (a->flags != 0) + (uint64_t)is_group;
        resp_out_map(o, m);
        resp_out_bulk_cstr(o, "name");
        resp_out_bulk_cstr(o, a->name);
        resp_out_bulk_cstr(o, "type");
        resp_out_bulk_cstr(o, arg_type_names[a->type]);
        if (is_key) {
            resp_out_bulk_cstr(o, "key_spec_index");
            resp_out_int(o, a->key_spec_index);
        }
        if (a->token != NULL) {
            resp_out_bulk_cstr(o, "token");
            resp_out_bulk_cstr(o, a->token);
        }
        if (a->since != NULL) {
            resp_out_bulk_cstr(o, "since");
            resp_out_bulk_cstr(o, a->since);
        }
        if (a->flags != 0) {
            resp_out_bulk_cstr(o, "flags");
            write_flag_set(o, a->flags, arg_flag_names,
                           sizeof(arg_flag_names) / sizeof(arg_flag_names[0]));
        }
        if (is_group) {
            resp_out_bulk_cstr(o, "arguments");
            write_args(o, a->sub, a->n_sub, depth + 1);
        }
    }
}

/* One command's COMMAND DOCS value (addReplyCommandDocs). */
static int write_docs_one(struct resp_out *o, const struct resp_cmd_spec *c, int depth)
{
    CC_ASSERT(depth <= 1);
    const uint64_t m = 3 + (c->complexity != NULL) + (c->n_args > 0) + (c->n_subs > 0);
    resp_out_map(o, m);
    resp_out_bulk_cstr(o, "summary");
    resp_out_bulk_cstr(o, c->summary);
    resp_out_bulk_cstr(o, "since");
    resp_out_bulk_cstr(o, c->since);
    resp_out_bulk_cstr(o, "group");
    resp_out_bulk_cstr(o, c->group);
    if (c->complexity != NULL) {
        resp_out_bulk_cstr(o, "complexity");
        resp_out_bulk_cstr(o, c->complexity);
    }
    if (c->n_args > 0) {
        resp_out_bulk_cstr(o, "arguments");
        write_args(o, c->args, c->n_args, 0);
    }
    if (c->n_subs > 0) {
        resp_out_bulk_cstr(o, "subcommands");
        resp_out_map(o, c->n_subs);
        for (uint8_t i = 0; i < c->n_subs; i++) {
            resp_out_bulk_cstr(o, c->subs[i].name);
            write_docs_one(o, &c->subs[i], depth + 1);
        }
    }
    return resp_out_status(o);
}

int resp_cmdtab_write_command(struct resp_out *o)
{
    resp_out_array(o, resp_cmdtab_count());
    for (size_t i = 0; i < resp_cmdtab_count(); i++) {
        write_info_one(o, &cmdtab[i], 0);
    }
    return resp_out_status(o);
}

int resp_cmdtab_write_count(struct resp_out *o)
{
    return resp_out_int(o, (int64_t)resp_cmdtab_count());
}

int resp_cmdtab_write_info(struct resp_out *o, uint32_t n, const struct resp_arg *names)
{
    if (n == 0) {
        return resp_cmdtab_write_command(o);
    }
    resp_out_array(o, n);
    for (uint32_t i = 0; i < n; i++) {
        const struct resp_cmd_spec *c = resp_cmdtab_lookup_fullname(names[i].ptr, names[i].len);
        if (c == NULL) {
            resp_out_null(o);
        } else {
            write_info_one(o, c, 0);
        }
    }
    return resp_out_status(o);
}

int resp_cmdtab_write_docs(struct resp_out *o, uint32_t n, const struct resp_arg *names)
{
    if (n == 0) {
        resp_out_map(o, resp_cmdtab_count());
        for (size_t i = 0; i < resp_cmdtab_count(); i++) {
            resp_out_bulk_cstr(o, cmdtab[i].name);
            write_docs_one(o, &cmdtab[i], 0);
        }
        return resp_out_status(o);
    }
    const struct resp_out_defer d = resp_out_defer(o);
    uint64_t found = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct resp_cmd_spec *c = resp_cmdtab_lookup_fullname(names[i].ptr, names[i].len);
        if (c != NULL) {
            resp_out_bulk_cstr(o, c->name);
            write_docs_one(o, c, 0);
            found++;
        }
    }
    return resp_out_defer_map(o, d, found);
}
