/* kv_cmd.c -- `conclave kv`: put, get, del, txn and compact over the HTTP API.
 *
 *   conclave kv put KEY VALUE|-          PUT    /v1/kv/KEY          (- reads stdin)
 *   conclave kv get KEY [flags]          GET    /v1/kv/KEY[?...]
 *   conclave kv del KEY [--prefix]       DELETE /v1/kv/KEY[?prefix=true]
 *   conclave kv txn FILE|-               POST   /v1/txn             (JSON, docs/API.md)
 *   conclave kv compact REV              POST   /v1/compact
 *
 * Each verb is one request (client.h does the exchange and prints failures). With
 * `-o json` the server's reply goes to stdout verbatim; otherwise it is rendered for
 * people: `get` prints the value's exact bytes (a terminal also gets a final newline),
 * ranges print `key = value` lines, writes print `OK revision N`. Keys and values that
 * the server sends as base64 (not UTF-8, or holding NUL) are printed with \xHH escapes.
 * Inputs are bounded before they are read: a stdin value by KV_VALUE_BYTES_MAX, a txn
 * file by the server's body limit.
 *
 * Sections: limits | usage | arguments | inputs | rendering | verbs | dispatch.
 */
#include "cli/kv_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/http.h"
#include "base/assert.h"
#include "cli/client.h"
#include "sm/kv.h"

/* ---- limits ------------------------------------------------------------------------ */

#define KV_CMD_TXN_BYTES_MAX HTTP_BODY_BYTES_MAX /* a txn file: the server's body limit */
#define KV_CMD_POS_MAX       2                   /* positional arguments of any verb */
#define KV_CMD_READ_BYTES    (64u << 10)         /* one fread from stdin or a file */

_Static_assert(KV_VALUE_BYTES_MAX <= HTTP_BODY_BYTES_MAX, "a largest value fits one body");
_Static_assert(sizeof("/v1/kv/") + 3 * (size_t)KV_KEY_BYTES_MAX + 128 <= CLIENT_TARGET_BYTES_MAX,
               "an escaped longest key and every query flag fit in one target");

/* ---- usage ------------------------------------------------------------------------- */

enum {
    KV_F_PREFIX = 1 << 0,
    KV_F_LIMIT = 1 << 1,
    KV_F_KEYS_ONLY = 1 << 2,
    KV_F_SERIALIZABLE = 1 << 3,
    KV_F_REVISION = 1 << 4,
};

struct kv_args {
    const char *pos[KV_CMD_POS_MAX];
    int n_pos;
    unsigned flags; /* KV_F_* given */
    uint64_t limit;
    uint64_t revision;
};

struct kv_verb {
    const char *name;
    const char *alias;
    const char *usage;
    unsigned flags_allowed;
    int n_pos; /* exactly this many positional arguments */
    int (*run)(const struct client_cli *cli, const struct kv_args *a);
};

static const char kv_usage_text[] =
    "usage: conclave kv <verb> [args] [global flags]\n"
    "\n"
    "verbs:\n"
    "  put KEY VALUE       set KEY to VALUE; VALUE '-' reads the bytes from stdin\n"
    "  get KEY [--prefix] [--limit N] [--keys-only] [--serializable] [--revision N]\n"
    "                      print KEY's value; --prefix: every key starting with KEY\n"
    "  del KEY [--prefix]  delete KEY, or with --prefix every key starting with KEY\n"
    "  txn FILE|-          run a transaction written as JSON (see docs/API.md)\n"
    "  compact REV         forget the history below revision REV\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage, 3 cannot connect.\n"
    "See docs/cli.md.\n";

/* ---- arguments --------------------------------------------------------------------- */

static int kv_usage_error(const struct kv_verb *v, const char *fmt, const char *arg)
{
    fprintf(stderr, "conclave kv %s: ", v->name);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s\n\n" CLIENT_GLOBAL_FLAGS_USAGE, v->usage);
    return CLIENT_EXIT_USAGE;
}

/* Parses argv[2..] for verb v. Returns 0, CLIENT_EXIT_USAGE (printed), or -1 when help
 * was asked for and printed. */
static int kv_parse_args(const struct kv_verb *v, int argc, char **argv, struct kv_args *a)
{
    memset(a, 0, sizeof(*a));
    bool flags_done = false;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (!flags_done && strcmp(s, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (flags_done || s[0] != '-' || s[1] == '\0') { /* "-" is stdin, a positional */
            if (a->n_pos >= v->n_pos)
                return kv_usage_error(v, "unexpected argument '%s'", s);
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            printf("%s\n\n" CLIENT_GLOBAL_FLAGS_USAGE, v->usage);
            return -1;
        }
        unsigned f = strcmp(s, "--prefix") == 0         ? KV_F_PREFIX
                     : strcmp(s, "--limit") == 0        ? KV_F_LIMIT
                     : strcmp(s, "--keys-only") == 0    ? KV_F_KEYS_ONLY
                     : strcmp(s, "--serializable") == 0 ? KV_F_SERIALIZABLE
                     : strcmp(s, "--revision") == 0     ? KV_F_REVISION
                                                        : 0;
        if (f == 0 || !(v->flags_allowed & f))
            return kv_usage_error(v,
                                  "unknown flag '%s' (a key or value that starts with '-' "
                                  "goes after `--`)",
                                  s);
        a->flags |= f;
        if (f == KV_F_LIMIT || f == KV_F_REVISION) {
            const char *num = i + 1 < argc ? argv[++i] : NULL;
            if (!client_parse_u64(num, 0, INT64_MAX, f == KV_F_LIMIT ? &a->limit : &a->revision))
                return kv_usage_error(v, "%s wants a decimal number", s);
        }
    }
    if (a->n_pos < v->n_pos)
        return kv_usage_error(v, "%s", a->n_pos == 0 ? "missing arguments" : "missing an argument");
    return 0;
}

/* Checks a key argument the way the server would, so a bad one fails before a
 * connection. Returns 0, or an exit code with the problem printed. */
static int kv_check_key(const struct kv_verb *v, const char *key, bool prefix)
{
    size_t n = strlen(key);
    if (n == 0 && !prefix)
        return kv_usage_error(v, "%s", "the key is empty (an empty prefix needs --prefix)");
    if (n > KV_KEY_BYTES_MAX) {
        fprintf(stderr, "conclave kv %s: the key is %zu bytes; the limit is %u\n", v->name, n,
                (unsigned)KV_KEY_BYTES_MAX);
        return CLIENT_EXIT_FAIL;
    }
    return 0;
}

/* A request target under construction: "/v1/kv/<escaped key>" and then "?a=b&c=d". */
struct kv_target {
    char buf[CLIENT_TARGET_BYTES_MAX];
    size_t len;
    bool has_query;
};

static void kv_target_key(struct kv_target *t, const char *key)
{
    size_t n = strlen(key);
    CC_ASSERT(n <= KV_KEY_BYTES_MAX);
    memcpy(t->buf, "/v1/kv/", 7);
    t->len = 7 + client_escape(key, n, true, t->buf + 7, sizeof(t->buf) - 7);
    t->has_query = false;
}

/* Appends "name=value" (value is plain: a number or a word). */
static void kv_target_query(struct kv_target *t, const char *name, const char *value)
{
    int n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%c%s=%s", t->has_query ? '&' : '?',
                     name, value);
    CC_ASSERT(n > 0 && (size_t)n < sizeof(t->buf) - t->len); /* _Static_assert above */
    t->len += (size_t)n;
    t->has_query = true;
}

/* ---- inputs ------------------------------------------------------------------------ */

enum { KV_READ_OK = 0, KV_READ_TOOBIG = 1, KV_READ_IO = 2 };

/* Reads all of f, at most max bytes, into a malloc'd buffer (*out, owned by the
 * caller; NUL-terminated, not counted in *len). */
static int kv_read_all(FILE *f, size_t max, uint8_t **out, size_t *len)
{
    size_t cap = KV_CMD_READ_BYTES, n = 0;
    uint8_t *buf = malloc(cap + 1);
    if (!buf)
        return KV_READ_IO;
    for (;;) {
        if (n == cap) {
            if (cap > max)
                break;
            size_t next = cap * 2 > max + 1 ? max + 1 : cap * 2;
            uint8_t *b = realloc(buf, next + 1);
            if (!b) {
                free(buf);
                return KV_READ_IO;
            }
            buf = b;
            cap = next;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return KV_READ_IO;
    }
    if (n > max) {
        free(buf);
        return KV_READ_TOOBIG;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return KV_READ_OK;
}

/* ---- rendering --------------------------------------------------------------------- */

/* Prints a range's kvs as `key = value` lines (`key` lines without with_values), each
 * after lead, then a footer when the server held keys back. The server omits an empty
 * value's field, so with_values, not the field, decides whether " = " is printed. */
static void kv_print_range(json_t *range, const char *lead, bool with_values)
{
    json_t *kvs = json_object_get(range, "kvs");
    for (size_t i = 0; i < json_array_size(kvs); i++) {
        json_t *kv = json_array_get(kvs, i);
        fputs(lead, stdout);
        client_print_field(kv, "key", false);
        if (with_values) {
            fputs(" = ", stdout);
            client_print_field(kv, "value", false);
        }
        putchar('\n');
    }
    if (json_is_true(json_object_get(range, "more")))
        printf("%s(%zu of %" PRId64 " keys, more)\n", lead, json_array_size(kvs),
               (int64_t)json_integer_value(json_object_get(range, "count")));
}

/* Parses a 2xx reply as a JSON object. On failure prints why and returns NULL. */
static json_t *kv_reply_json(const char *what, const struct client_response *resp)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
    if (j && json_is_object(j))
        return j;
    json_decref(j);
    fprintf(stderr, "%s: the server's reply is not a JSON object (%s): %.200s\n", what, jerr.text,
            (const char *)resp->body);
    return NULL;
}

static int64_t kv_json_i64(json_t *obj, const char *name)
{
    return (int64_t)json_integer_value(json_object_get(obj, name));
}

/* ---- verbs ------------------------------------------------------------------------- */

static int kv_cmd_put(const struct client_cli *cli, const struct kv_args *a);
static int kv_cmd_get(const struct client_cli *cli, const struct kv_args *a);
static int kv_cmd_del(const struct client_cli *cli, const struct kv_args *a);
static int kv_cmd_txn(const struct client_cli *cli, const struct kv_args *a);
static int kv_cmd_compact(const struct client_cli *cli, const struct kv_args *a);

static const struct kv_verb kv_verbs[] = {
    {"put", NULL,
     "usage: conclave kv put KEY VALUE\n"
     "       conclave kv put KEY - < FILE    the value is stdin's bytes, exactly\n"
     "Sets KEY and prints the new revision.",
     0, 2, kv_cmd_put},
    {"get", NULL,
     "usage: conclave kv get KEY [--prefix] [--limit N] [--keys-only] [--serializable]\n"
     "                           [--revision N]\n"
     "Prints KEY's value (its exact bytes). --prefix: every key starting with KEY, as\n"
     "`key = value` lines (at most --limit N). --keys-only: keys without values.\n"
     "--serializable: read this node's replica without a leader round (may be stale).\n"
     "--revision N: as of revision N.",
     KV_F_PREFIX | KV_F_LIMIT | KV_F_KEYS_ONLY | KV_F_SERIALIZABLE | KV_F_REVISION, 1, kv_cmd_get},
    {"del", "delete",
     "usage: conclave kv del KEY [--prefix]\n"
     "Deletes KEY (with --prefix: every key starting with KEY) and prints how many.",
     KV_F_PREFIX, 1, kv_cmd_del},
    {"txn", NULL,
     "usage: conclave kv txn FILE|-\n"
     "Runs the transaction in FILE (- for stdin): JSON with compare, success and failure\n"
     "as in docs/API.md. Prints which branch ran and each op's result.",
     0, 1, kv_cmd_txn},
    {"compact", NULL,
     "usage: conclave kv compact REV\n"
     "Forgets the history below revision REV: older revisions can no longer be read.",
     0, 1, kv_cmd_compact},
};

static int kv_cmd_put(const struct client_cli *cli, const struct kv_args *a)
{
    const struct kv_verb *v = &kv_verbs[0];
    const char *key = a->pos[0];
    int rv = kv_check_key(v, key, false);
    if (rv != 0)
        return rv;
    uint8_t *stdin_value = NULL;
    const void *value = a->pos[1];
    size_t value_len = strlen(a->pos[1]);
    if (strcmp(a->pos[1], "-") == 0) {
        int r = kv_read_all(stdin, KV_VALUE_BYTES_MAX, &stdin_value, &value_len);
        if (r != KV_READ_OK) {
            if (r == KV_READ_TOOBIG)
                fprintf(stderr,
                        "conclave kv put: the value on stdin is over the limit of %u "
                        "bytes\n",
                        (unsigned)KV_VALUE_BYTES_MAX);
            else
                fprintf(stderr, "conclave kv put: cannot read the value from stdin\n");
            return CLIENT_EXIT_FAIL;
        }
        value = stdin_value;
    }
    struct kv_target t;
    kv_target_key(&t, key);
    struct client_request req = {.method = "PUT",
                                 .target = t.buf,
                                 .content_type = "application/octet-stream",
                                 .body = value,
                                 .body_len = value_len};
    struct client_response resp;
    rv = client_cli_call(cli, "conclave kv put", &req, &resp);
    free(stdin_value);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json) {
        client_cli_print_body(&resp);
    } else {
        json_t *j = kv_reply_json("conclave kv put", &resp);
        if (!j)
            rv = CLIENT_EXIT_FAIL;
        else
            printf("OK revision %" PRId64 "\n", kv_json_i64(j, "revision"));
        json_decref(j);
    }
    client_response_free(&resp);
    return rv;
}

static int kv_cmd_get(const struct client_cli *cli, const struct kv_args *a)
{
    const struct kv_verb *v = &kv_verbs[1];
    const char *key = a->pos[0];
    bool prefix = a->flags & KV_F_PREFIX;
    bool keys_only = a->flags & KV_F_KEYS_ONLY;
    int rv = kv_check_key(v, key, prefix);
    if (rv != 0)
        return rv;
    /* People get a single value's raw bytes; JSON users and ranges get JSON. */
    bool raw = !cli->json && !prefix && !keys_only;
    struct kv_target t;
    char num[24];
    kv_target_key(&t, key);
    if (prefix)
        kv_target_query(&t, "prefix", "true");
    if (a->flags & KV_F_LIMIT) {
        snprintf(num, sizeof(num), "%" PRIu64, a->limit);
        kv_target_query(&t, "limit", num);
    }
    if (keys_only)
        kv_target_query(&t, "keys_only", "true");
    if (a->flags & KV_F_SERIALIZABLE)
        kv_target_query(&t, "consistency", "serializable");
    if (a->flags & KV_F_REVISION) {
        snprintf(num, sizeof(num), "%" PRIu64, a->revision);
        kv_target_query(&t, "revision", num);
    }
    if (raw)
        kv_target_query(&t, "raw", "true");
    struct client_request req = {.method = "GET", .target = t.buf};
    struct client_response resp;
    rv = client_cli_call(cli, "conclave kv get", &req, &resp);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json) {
        client_cli_print_body(&resp);
    } else if (raw) {
        fwrite(resp.body, 1, resp.body_len, stdout);
        if (isatty(STDOUT_FILENO) && (resp.body_len == 0 || resp.body[resp.body_len - 1] != '\n'))
            putchar('\n'); /* a terminal's prompt should not run on after the value */
    } else {
        json_t *j = kv_reply_json("conclave kv get", &resp);
        if (!j) {
            rv = CLIENT_EXIT_FAIL;
        } else if (prefix) {
            kv_print_range(j, "", !keys_only);
        } else { /* --keys-only on one key: the key, if it exists (else 404 above) */
            client_print_field(j, "key", false);
            putchar('\n');
        }
        json_decref(j);
    }
    client_response_free(&resp);
    return rv;
}

static int kv_cmd_del(const struct client_cli *cli, const struct kv_args *a)
{
    const struct kv_verb *v = &kv_verbs[2];
    bool prefix = a->flags & KV_F_PREFIX;
    int rv = kv_check_key(v, a->pos[0], prefix);
    if (rv != 0)
        return rv;
    struct kv_target t;
    kv_target_key(&t, a->pos[0]);
    if (prefix)
        kv_target_query(&t, "prefix", "true");
    struct client_request req = {.method = "DELETE", .target = t.buf};
    struct client_response resp;
    rv = client_cli_call(cli, "conclave kv del", &req, &resp);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json) {
        client_cli_print_body(&resp);
    } else {
        json_t *j = kv_reply_json("conclave kv del", &resp);
        if (!j) {
            rv = CLIENT_EXIT_FAIL;
        } else {
            int64_t n = kv_json_i64(j, "deleted");
            printf("OK deleted %" PRId64 " key%s, revision %" PRId64 "\n", n, n == 1 ? "" : "s",
                   kv_json_i64(j, "revision"));
        }
        json_decref(j);
    }
    client_response_free(&resp);
    return rv;
}

static void kv_print_txn(json_t *j)
{
    bool ok = json_is_true(json_object_get(j, "succeeded"));
    printf("%s, revision %" PRId64 "\n",
           ok ? "SUCCEEDED: the compares held, ran success"
              : "FAILED: a compare did not hold, ran failure",
           kv_json_i64(j, "revision"));
    json_t *responses = json_object_get(j, "responses");
    for (size_t i = 0; i < json_array_size(responses); i++) {
        json_t *r = json_array_get(responses, i);
        json_t *x;
        if (json_object_get(r, "put")) {
            printf("put: OK\n");
        } else if ((x = json_object_get(r, "delete")) != NULL) {
            printf("delete: %" PRId64 " deleted\n", kv_json_i64(x, "deleted"));
        } else if ((x = json_object_get(r, "get")) != NULL) {
            if (json_array_size(json_object_get(x, "kvs")) == 0)
                printf("get: (no keys)\n");
            kv_print_range(x, "get: ", true);
        }
    }
}

static int kv_cmd_txn(const struct client_cli *cli, const struct kv_args *a)
{
    const char *path = a->pos[0];
    bool from_stdin = strcmp(path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "conclave kv txn: cannot open '%s': %s\n", path, strerror(errno));
        return CLIENT_EXIT_FAIL;
    }
    uint8_t *body = NULL;
    size_t body_len = 0;
    int r = kv_read_all(f, KV_CMD_TXN_BYTES_MAX, &body, &body_len);
    if (!from_stdin)
        fclose(f);
    if (r != KV_READ_OK) {
        if (r == KV_READ_TOOBIG)
            fprintf(stderr,
                    "conclave kv txn: '%s' is over the limit of %u bytes (the server's "
                    "request body limit)\n",
                    path, (unsigned)KV_CMD_TXN_BYTES_MAX);
        else
            fprintf(stderr, "conclave kv txn: cannot read '%s'\n", path);
        return CLIENT_EXIT_FAIL;
    }
    struct client_request req = {.method = "POST",
                                 .target = "/v1/txn",
                                 .content_type = "application/json",
                                 .body = body,
                                 .body_len = body_len};
    struct client_response resp;
    int rv = client_cli_call(cli, "conclave kv txn", &req, &resp);
    free(body);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json) {
        client_cli_print_body(&resp);
    } else {
        json_t *j = kv_reply_json("conclave kv txn", &resp);
        if (j)
            kv_print_txn(j);
        else
            rv = CLIENT_EXIT_FAIL;
        json_decref(j);
    }
    client_response_free(&resp);
    return rv;
}

static int kv_cmd_compact(const struct client_cli *cli, const struct kv_args *a)
{
    const struct kv_verb *v = &kv_verbs[4];
    uint64_t rev = 0;
    if (!client_parse_u64(a->pos[0], 0, INT64_MAX, &rev) || rev == 0)
        return kv_usage_error(v, "REV must be a revision number >= 1, not '%s'", a->pos[0]);
    char body[48];
    int n = snprintf(body, sizeof(body), "{\"revision\":%" PRIu64 "}", rev);
    struct client_request req = {.method = "POST",
                                 .target = "/v1/compact",
                                 .content_type = "application/json",
                                 .body = body,
                                 .body_len = (size_t)n};
    struct client_response resp;
    int rv = client_cli_call(cli, "conclave kv compact", &req, &resp);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json)
        client_cli_print_body(&resp);
    else
        printf("OK compacted: revisions below %" PRIu64 " are gone\n", rev);
    client_response_free(&resp);
    return rv;
}

/* ---- dispatch ---------------------------------------------------------------------- */

int cli_kv_main(int argc, char **argv)
{
    struct client_cli cli;
    char err[CLIENT_ERRMSG_BYTES];
    if (client_cli_init(&cli, "conclave kv", &argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "conclave kv: %s\n\n%s", err, kv_usage_text);
        return CLIENT_EXIT_USAGE;
    }
    if (argc < 2) {
        fputs(kv_usage_text, stderr);
        return CLIENT_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(kv_usage_text, stdout);
        return CLIENT_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(kv_verbs) / sizeof(kv_verbs[0]); i++) {
        const struct kv_verb *v = &kv_verbs[i];
        if (strcmp(argv[1], v->name) != 0 && !(v->alias && strcmp(argv[1], v->alias) == 0))
            continue;
        struct kv_args a;
        int rv = kv_parse_args(v, argc, argv, &a);
        if (rv != 0)
            return rv < 0 ? CLIENT_EXIT_OK : rv;
        return v->run(&cli, &a);
    }
    fprintf(stderr, "conclave kv: unknown verb '%s'\n\n%s", argv[1], kv_usage_text);
    return CLIENT_EXIT_USAGE;
}
