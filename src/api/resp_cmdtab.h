/* resp_cmdtab.h -- the table of Redis commands Conclave's RESP front end knows, and
 * the replies that describe it (COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND DOCS).
 *
 * One static, sorted table holds every command of issue #6 as Redis 7 defines it:
 * name, arity (negative = at least that many arguments, the name included), flags
 * (write, readonly, fast, ...), legacy key positions (first, last, step), ACL
 * categories, key specs, and the documentation redis-cli 7 turns into hints (summary,
 * since, group, complexity, the argument tree). Container commands (CLIENT, COMMAND)
 * carry their subcommands, named "client|id" as Redis does.
 *
 * Dispatch: resp_cmdtab_resolve() maps argv to a spec the way Redis's processCommand
 * does (a container with arguments resolves to its subcommand), checks the arity and,
 * when something is wrong, writes Redis's exact error:
 *   -ERR unknown command 'foo', with args beginning with: 'a' 'b'
 *   -ERR unknown subcommand 'x'. Try CLIENT HELP.
 *   -ERR wrong number of arguments for 'get' command
 * The handler then switches on spec->id. Lookups are binary searches over names
 * compared case-insensitively: no per-command linear scan.
 *
 * Pure and IO-free; the table is constant, so everything here is thread-safe. Specs
 * are static: pointers to them stay valid forever.
 *
 * Sections: ids | flags | specs | lookup and errors | COMMAND replies.
 */
#ifndef CC_API_RESP_CMDTAB_H
#define CC_API_RESP_CMDTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/resp_proto.h"

/* ---- ids (one per command and subcommand; the handler's switch) -------------------- */

enum resp_cmd_id {
    RESP_CMD_APPEND = 1,
    RESP_CMD_AUTH,
    RESP_CMD_CLIENT, /* container: never dispatched with arguments */
    RESP_CMD_CLIENT_GETNAME,
    RESP_CMD_CLIENT_HELP,
    RESP_CMD_CLIENT_ID,
    RESP_CMD_CLIENT_INFO,
    RESP_CMD_CLIENT_SETNAME,
    RESP_CMD_COMMAND, /* COMMAND alone: every command's info */
    RESP_CMD_COMMAND_COUNT,
    RESP_CMD_COMMAND_DOCS,
    RESP_CMD_COMMAND_HELP,
    RESP_CMD_COMMAND_INFO,
    RESP_CMD_DBSIZE,
    RESP_CMD_DECR,
    RESP_CMD_DECRBY,
    RESP_CMD_DEL,
    RESP_CMD_DELEX,
    RESP_CMD_DISCARD,
    RESP_CMD_ECHO,
    RESP_CMD_EXEC,
    RESP_CMD_EXISTS,
    RESP_CMD_EXPIRE,
    RESP_CMD_EXPIREAT,
    RESP_CMD_EXPIRETIME,
    RESP_CMD_GET,
    RESP_CMD_GETDEL,
    RESP_CMD_GETEX,
    RESP_CMD_GETRANGE,
    RESP_CMD_GETSET,
    RESP_CMD_HELLO,
    RESP_CMD_ID_NEXT,      /* Conclave: segment ids (resp_id.h) */
    RESP_CMD_ID_SNOWFLAKE, /* Conclave: snowflake ids (resp_id.h) */
    RESP_CMD_INCR,
    RESP_CMD_INCRBY,
    RESP_CMD_INCRBYFLOAT,
    RESP_CMD_INFO,
    RESP_CMD_KEYS,
    RESP_CMD_MGET,
    RESP_CMD_MSET,
    RESP_CMD_MSETNX,
    RESP_CMD_MULTI,
    RESP_CMD_PERSIST,
    RESP_CMD_PEXPIRE,
    RESP_CMD_PEXPIREAT,
    RESP_CMD_PEXPIRETIME,
    RESP_CMD_PING,
    RESP_CMD_PSETEX,
    RESP_CMD_PTTL,
    RESP_CMD_QUIT,
    RESP_CMD_READONLY,
    RESP_CMD_READWRITE,
    RESP_CMD_RENAME,
    RESP_CMD_SCAN,
    RESP_CMD_SELECT,
    RESP_CMD_SET,
    RESP_CMD_SETEX,
    RESP_CMD_SETNX,
    RESP_CMD_SETRANGE,
    RESP_CMD_STRLEN,
    RESP_CMD_TTL,
    RESP_CMD_TYPE,
    RESP_CMD_UNLINK,
    RESP_CMD_UNWATCH,
    RESP_CMD_WATCH,
    RESP_CMD__END /* one past the last id */
};

/* ---- flags ------------------------------------------------------------------------- */

/* Command flags, named in COMMAND replies as Redis names them. */
enum {
    RESP_CMDF_WRITE = 1u << 0,        /* "write": changes data (goes through Raft) */
    RESP_CMDF_READONLY = 1u << 1,     /* "readonly": reads data, changes nothing */
    RESP_CMDF_DENYOOM = 1u << 2,      /* "denyoom": may grow memory */
    RESP_CMDF_ADMIN = 1u << 3,        /* "admin" */
    RESP_CMDF_NOSCRIPT = 1u << 4,     /* "noscript" */
    RESP_CMDF_LOADING = 1u << 5,      /* "loading": allowed while loading */
    RESP_CMDF_STALE = 1u << 6,        /* "stale": allowed on a stale replica */
    RESP_CMDF_SKIP_SLOWLOG = 1u << 7, /* "skip_slowlog" */
    RESP_CMDF_FAST = 1u << 8,         /* "fast": O(1) or O(log N) */
    RESP_CMDF_NO_AUTH = 1u << 9,      /* "no_auth": allowed before AUTH */
    RESP_CMDF_ALLOW_BUSY = 1u << 10,  /* "allow_busy" */
};

/* ACL categories (COMMAND INFO element 7). @read, @write, @admin, @dangerous, @fast
 * and @slow are also implied by the flags, as Redis's setImplicitACLCategories does. */
enum {
    RESP_ACL_KEYSPACE = 1u << 0,
    RESP_ACL_READ = 1u << 1,
    RESP_ACL_WRITE = 1u << 2,
    RESP_ACL_STRING = 1u << 3,
    RESP_ACL_ADMIN = 1u << 4,
    RESP_ACL_FAST = 1u << 5,
    RESP_ACL_SLOW = 1u << 6,
    RESP_ACL_DANGEROUS = 1u << 7,
    RESP_ACL_CONNECTION = 1u << 8,
    RESP_ACL_TRANSACTION = 1u << 9,
};

/* Key-spec flags (Redis 7 key specifications). */
enum {
    RESP_KSF_RO = 1u << 0, /* read-only access to the key */
    RESP_KSF_RW = 1u << 1, /* read-modify-write */
    RESP_KSF_OW = 1u << 2, /* overwrite without reading */
    RESP_KSF_RM = 1u << 3, /* deletes the key */
    RESP_KSF_ACCESS = 1u << 4,
    RESP_KSF_UPDATE = 1u << 5,
    RESP_KSF_INSERT = 1u << 6,
    RESP_KSF_DELETE = 1u << 7,
};

/* Argument types and flags (COMMAND DOCS "arguments"). */
enum resp_arg_type {
    RESP_ARG_STRING,
    RESP_ARG_INTEGER,
    RESP_ARG_DOUBLE,
    RESP_ARG_KEY,
    RESP_ARG_PATTERN,
    RESP_ARG_UNIX_TIME,
    RESP_ARG_PURE_TOKEN,
    RESP_ARG_ONEOF, /* exactly one of sub[] */
    RESP_ARG_BLOCK, /* all of sub[] in order */
};
enum {
    RESP_ARGF_OPTIONAL = 1u << 0,
    RESP_ARGF_MULTIPLE = 1u << 1,
    RESP_ARGF_MULTIPLE_TOKEN = 1u << 2,
};

/* ---- specs ------------------------------------------------------------------------- */

/* Keys begin at argument `index` and run to `lastkey` (relative to index; -1 = the
 * last argument) in steps of `keystep` ("index" begin-search, "range" find-keys). */
struct resp_keyspec {
    uint16_t flags; /* RESP_KSF_* */
    int16_t index;
    int16_t lastkey;
    int16_t keystep;
    int16_t limit;
};

struct resp_argspec {
    const char *name;
    const char *token;              /* the literal keyword before the value, or NULL */
    const char *since;              /* Redis version that added the argument, or NULL */
    const struct resp_argspec *sub; /* ONEOF and BLOCK */
    enum resp_arg_type type;
    uint8_t flags;         /* RESP_ARGF_* */
    int8_t key_spec_index; /* RESP_ARG_KEY only: index into the command's keyspecs */
    uint8_t n_sub;
};

struct resp_cmd_spec {
    const char *name; /* lowercase; "parent|sub" for subcommands */
    const char *summary;
    const char *since;
    const char *group;      /* "string", "generic", "connection", "server", ... */
    const char *complexity; /* or NULL */
    const struct resp_keyspec *keyspecs;
    const struct resp_argspec *args;
    const struct resp_cmd_spec *subs; /* container commands */
    enum resp_cmd_id id;
    int32_t arity;     /* > 0: exactly; < 0: at least -arity (argv[0] included) */
    uint32_t flags;    /* RESP_CMDF_* */
    uint32_t acl;      /* RESP_ACL_* beyond those the flags imply */
    int16_t first_key; /* 0 = no keys */
    int16_t last_key;  /* -1 = the last argument */
    int16_t key_step;
    uint8_t n_keyspecs;
    uint8_t n_args;
    uint8_t n_subs;
};

/* Top-level commands in name order (COMMAND COUNT of them); i < resp_cmdtab_count(). */
size_t resp_cmdtab_count(void);
const struct resp_cmd_spec *resp_cmdtab_at(size_t i);

/* ---- lookup and errors ------------------------------------------------------------- */

enum {
    RESP_CMDTAB_EUNKNOWN = -1971, /* no such command */
    RESP_CMDTAB_ENOSUB = -1972,   /* a container command with an unknown subcommand */
    RESP_CMDTAB_EARITY = -1973,   /* wrong number of arguments */
};
const char *resp_cmdtab_strerror(int rv);

/* A top-level command by name, any case; NULL when unknown. */
const struct resp_cmd_spec *resp_cmdtab_lookup(const char *name, size_t len);

/* A subcommand of parent by its own name ("id" for "client|id"), any case; NULL when
 * unknown or parent has no subcommands. */
const struct resp_cmd_spec *resp_cmdtab_lookup_sub(const struct resp_cmd_spec *parent,
                                                   const char *name, size_t len);

/* "get" or "client|id" (COMMAND INFO / DOCS names), any case; NULL when unknown. */
const struct resp_cmd_spec *resp_cmdtab_lookup_fullname(const char *name, size_t len);

/* Whether argc arguments (name included) satisfy spec's arity. */
bool resp_cmdtab_arity_ok(const struct resp_cmd_spec *spec, uint32_t argc);

/* Resolves argv (argc >= 1) as Redis does: the command, or for a container with more
 * arguments its subcommand; then checks the arity. Returns 0 and *spec, or
 * RESP_CMDTAB_EUNKNOWN / _ENOSUB / _EARITY after writing Redis's error to o (when o is
 * not NULL; *spec is then the resolved command for _EARITY and NULL otherwise). */
int resp_cmdtab_resolve(struct resp_out *o, uint32_t argc, const struct resp_arg *argv,
                        const struct resp_cmd_spec **spec);

/* The error replies on their own (each returns resp_out_status(o)):
 * "-ERR unknown command '<argv0>', with args beginning with: '<a1>' '<a2>' " */
int resp_cmdtab_err_unknown(struct resp_out *o, uint32_t argc, const struct resp_arg *argv);
/* "-ERR unknown subcommand '<sub>'. Try <CMD> HELP." */
int resp_cmdtab_err_subcommand(struct resp_out *o, const struct resp_arg *cmd,
                               const struct resp_arg *sub);
/* "-ERR wrong number of arguments for '<fullname>' command" */
int resp_cmdtab_err_arity(struct resp_out *o, const struct resp_cmd_spec *spec);

/* ---- COMMAND replies (shape of Redis 7, as redis-cli 7 and redis-py parse them) ----- */

/* COMMAND: an array with every top-level command's info (10 elements each: name,
 * arity, flags, first key, last key, step, ACL categories, tips, key specs,
 * subcommands). */
int resp_cmdtab_write_command(struct resp_out *o);
/* COMMAND COUNT: the number of top-level commands. */
int resp_cmdtab_write_count(struct resp_out *o);
/* COMMAND INFO name...: n == 0 is every command; otherwise one element per name, a
 * null for an unknown one. */
int resp_cmdtab_write_info(struct resp_out *o, uint32_t n, const struct resp_arg *names);
/* COMMAND DOCS name...: a map name -> docs (summary, since, group, complexity,
 * arguments, subcommands); n == 0 is every command, unknown names are left out. */
int resp_cmdtab_write_docs(struct resp_out *o, uint32_t n, const struct resp_arg *names);

#endif /* CC_API_RESP_CMDTAB_H */
