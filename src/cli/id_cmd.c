/* id_cmd.c -- `conclave id`: segment ids, snowflake ids, UUIDs, trace ids, order numbers,
 * redeem codes and short urls over the HTTP API (docs/id.md "HTTP API and CLI").
 *
 *   conclave id segment create TAG [--initial N] [--step N]   POST /v1/id/segments
 *   conclave id segment get TAG                               GET  /v1/id/segments/TAG
 *   conclave id segment update TAG [--step N] [--max-id N]    PUT  /v1/id/segments/TAG
 *   conclave id segment next TAG [-n N]   (or: id next TAG)   POST /v1/id/segments/TAG/next
 *   conclave id snowflake [-n N]                              GET  /v1/id/snowflake
 *   conclave id uuid [-v 4|7] [-n N]                          GET  /v1/id/uuid
 *   conclave id trace [--parent TP] [--span S] [--index K]    GET  /v1/id/trace
 *   conclave id order --biz T [-n N]                          POST /v1/id/orders
 *   conclave id redeem issue CAMPAIGN [-n N]                  POST /v1/id/redeem/CAMPAIGN
 *   conclave id redeem verify|use CAMPAIGN CODE               GET|POST /v1/id/redeem/C/CODE
 *   conclave id short URL                                     POST /v1/id/short
 *
 * One request per run (client.h). Text output prints what a script wants line by line
 * (one id, number or code per line); `-o json` prints the server's reply verbatim.
 *
 * Sections: usage | arguments | requests | verbs | dispatch.
 */
#include "cli/id_cmd.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "cli/client.h"

/* ---- usage ------------------------------------------------------------------------- */

#define ID_CMD_POS_MAX  2u   /* positional arguments of any verb */
#define ID_CMD_PATH_MAX 1024 /* request targets here: a tag or a code, escaped */

enum {
    IDF_COUNT = 1 << 0,
    IDF_INITIAL = 1 << 1,
    IDF_STEP = 1 << 2,
    IDF_MAXID = 1 << 3,
    IDF_VERSION = 1 << 4,
    IDF_BIZ = 1 << 5,
    IDF_PARENT = 1 << 6,
    IDF_SPAN = 1 << 7,
    IDF_INDEX = 1 << 8,
};

struct id_args {
    const char *pos[ID_CMD_POS_MAX];
    unsigned n_pos;
    unsigned flags; /* IDF_* given */
    uint64_t count, initial, step, max_id, version, biz, index;
    const char *parent, *span;
};

struct id_verb {
    const char *area; /* first word */
    const char *verb; /* second word, or NULL */
    unsigned n_pos;
    unsigned flags_allowed;
    const char *usage;
    int (*run)(const struct client_cli *cli, const struct id_args *a);
};

static const char id_usage_text[] =
    "usage: conclave id <verb> [args] [global flags]\n"
    "\n"
    "verbs:\n"
    "  segment create TAG [--initial N] [--step N]   a segment tag (Leaf's biz_tag)\n"
    "  segment get TAG                               its max_id, step and this node's buffer\n"
    "  segment update TAG [--step N] [--max-id N]    change the step or raise max_id\n"
    "  segment next TAG [-n N]                       N ids from the node's buffer\n"
    "  next TAG [-n N]                               the same\n"
    "  snowflake [-n N]                              N snowflake ids\n"
    "  uuid [-v 4|7] [-n N]                          N UUIDs (default v4)\n"
    "  trace [--parent TRACEPARENT] [--span S] [--index K]\n"
    "                                                a trace id, or span S's K-th child\n"
    "  order --biz TYPE [-n N]                       N order numbers of business TYPE\n"
    "  redeem issue CAMPAIGN [-n N]                  N redeem codes\n"
    "  redeem verify CAMPAIGN CODE                   check a code offline\n"
    "  redeem use CAMPAIGN CODE                      redeem a code (once)\n"
    "  short URL                                     a short code that redirects to URL\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage, 3 cannot connect.\n"
    "See docs/id.md.\n";

/* ---- arguments --------------------------------------------------------------------- */

static int id_usage_error(const struct id_verb *v, const char *fmt, const char *arg)
{
    fprintf(stderr, "conclave id %s%s%s: ", v->area, v->verb ? " " : "", v->verb ? v->verb : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\nusage: %s\n\n" CLIENT_GLOBAL_FLAGS_USAGE, v->usage);
    return CLIENT_EXIT_USAGE;
}

struct id_flag {
    const char *name, *alias;
    unsigned bit;
    size_t num_off; /* offsetof the uint64_t field, or 0 for a string flag */
};

static const struct id_flag id_flags[] = {
    {"--count", "-n", IDF_COUNT, offsetof(struct id_args, count)},
    {"--initial", NULL, IDF_INITIAL, offsetof(struct id_args, initial)},
    {"--step", NULL, IDF_STEP, offsetof(struct id_args, step)},
    {"--max-id", NULL, IDF_MAXID, offsetof(struct id_args, max_id)},
    {"--version", "-v", IDF_VERSION, offsetof(struct id_args, version)},
    {"--biz", "--biz-type", IDF_BIZ, offsetof(struct id_args, biz)},
    {"--index", NULL, IDF_INDEX, offsetof(struct id_args, index)},
    {"--parent", NULL, IDF_PARENT, 0},
    {"--span", NULL, IDF_SPAN, 0},
};

/* Parses argv[first..]: positionals and the verb's flags. 0, CLIENT_EXIT_USAGE
 * (printed), or -1 when help was printed. */
static int id_parse_args(const struct id_verb *v, int argc, char **argv, int first,
                         struct id_args *a)
{
    memset(a, 0, sizeof(*a));
    bool flags_done = false;
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        if (!flags_done && strcmp(s, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (flags_done || s[0] != '-' || s[1] == '\0') {
            if (a->n_pos >= v->n_pos)
                return id_usage_error(v, "unexpected argument '%s'", s);
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            printf("usage: %s\n\n" CLIENT_GLOBAL_FLAGS_USAGE, v->usage);
            return -1;
        }
        const struct id_flag *f = NULL;
        for (size_t k = 0; k < sizeof(id_flags) / sizeof(id_flags[0]); k++)
            if (strcmp(s, id_flags[k].name) == 0 ||
                (id_flags[k].alias && strcmp(s, id_flags[k].alias) == 0))
                f = &id_flags[k];
        if (!f || !(v->flags_allowed & f->bit))
            return id_usage_error(v, "unknown flag '%s'", s);
        const char *val = i + 1 < argc ? argv[++i] : NULL;
        if (!val)
            return id_usage_error(v, "%s wants a value", s);
        a->flags |= f->bit;
        if (f->num_off == 0) {
            if (f->bit == IDF_PARENT)
                a->parent = val;
            else
                a->span = val;
        } else if (!client_parse_u64(val, 0, INT64_MAX, (uint64_t *)((char *)a + f->num_off))) {
            return id_usage_error(v, "%s wants a decimal number", s);
        }
    }
    if (a->n_pos < v->n_pos)
        return id_usage_error(v, "%s", "missing arguments");
    return 0;
}

/* ---- requests ---------------------------------------------------------------------- */

/* Sends method target [body] and returns the exit code; on 0, *out is the reply as a
 * JSON object (caller decrefs) unless -o json printed it verbatim (*out NULL). */
static int id_call(const struct client_cli *cli, const char *what, const char *method,
                   const char *target, json_t *body, json_t **out)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct client_request req = {.method = method,
                                 .target = target,
                                 .content_type = text ? "application/json" : NULL,
                                 .body = text,
                                 .body_len = text ? strlen(text) : 0};
    struct client_response resp;
    *out = NULL;
    int rv = client_cli_call(cli, what, &req, &resp);
    free(text);
    if (rv != CLIENT_EXIT_OK)
        return rv;
    if (cli->json) {
        client_cli_print_body(&resp);
    } else {
        json_error_t jerr;
        json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, &jerr);
        if (!j || !json_is_object(j)) {
            fprintf(stderr, "%s: the server's reply is not a JSON object (%s)\n", what, jerr.text);
            json_decref(j);
            rv = CLIENT_EXIT_FAIL;
        } else {
            *out = j;
        }
    }
    client_response_free(&resp);
    return rv;
}

/* Prints each element of j[name] on its own line (numbers or strings). */
static void id_print_lines(json_t *j, const char *name)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(j, name), i, x) {
        if (json_is_integer(x))
            printf("%" JSON_INTEGER_FORMAT "\n", json_integer_value(x));
        else if (json_is_string(x))
            printf("%s\n", json_string_value(x));
    }
}

static void id_target(char *buf, const char *prefix, const char *word, const char *suffix)
{
    char esc[3 * 256 + 1];
    size_t n = strlen(word) < 256 ? strlen(word) : 256;
    client_escape(word, n, false, esc, sizeof(esc));
    int w = snprintf(buf, ID_CMD_PATH_MAX, "%s%s%s", prefix, esc, suffix);
    CC_ASSERT(w > 0 && w < ID_CMD_PATH_MAX);
}

/* ---- verbs ------------------------------------------------------------------------- */

static int id_seg_create(const struct client_cli *cli, const struct id_args *a)
{
    json_t *body = json_pack("{s:s}", "tag", a->pos[0]);
    if (a->flags & IDF_INITIAL)
        json_object_set_new(body, "initial", json_integer((json_int_t)a->initial));
    if (a->flags & IDF_STEP)
        json_object_set_new(body, "step", json_integer((json_int_t)a->step));
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id segment create", "POST", "/v1/id/segments", body, &j);
    if (j)
        printf("OK tag %s max_id %" JSON_INTEGER_FORMAT " step %" JSON_INTEGER_FORMAT "\n",
               a->pos[0], json_integer_value(json_object_get(j, "max_id")),
               json_integer_value(json_object_get(j, "step")));
    json_decref(j);
    return rv;
}

static int id_seg_get(const struct client_cli *cli, const struct id_args *a)
{
    char t[ID_CMD_PATH_MAX];
    id_target(t, "/v1/id/segments/", a->pos[0], "");
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id segment get", "GET", t, NULL, &j);
    if (j) {
        printf("tag %s\nmax_id %" JSON_INTEGER_FORMAT "\nstep %" JSON_INTEGER_FORMAT
               "\nallocs %" JSON_INTEGER_FORMAT "\n",
               json_string_value(json_object_get(j, "tag")),
               json_integer_value(json_object_get(j, "max_id")),
               json_integer_value(json_object_get(j, "step")),
               json_integer_value(json_object_get(j, "allocs")));
        json_t *b = json_object_get(j, "buffer");
        if (b)
            printf("buffer remaining %" JSON_INTEGER_FORMAT " served %" JSON_INTEGER_FORMAT
                   " fetches %" JSON_INTEGER_FORMAT "\n",
                   json_integer_value(json_object_get(b, "remaining")),
                   json_integer_value(json_object_get(b, "served")),
                   json_integer_value(json_object_get(b, "fetches")));
    }
    json_decref(j);
    return rv;
}

static int id_seg_update(const struct client_cli *cli, const struct id_args *a)
{
    char t[ID_CMD_PATH_MAX];
    id_target(t, "/v1/id/segments/", a->pos[0], "");
    json_t *body = json_object();
    if (a->flags & IDF_STEP)
        json_object_set_new(body, "step", json_integer((json_int_t)a->step));
    if (a->flags & IDF_MAXID)
        json_object_set_new(body, "max_id", json_integer((json_int_t)a->max_id));
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id segment update", "PUT", t, body, &j);
    if (j)
        printf("OK tag %s max_id %" JSON_INTEGER_FORMAT " step %" JSON_INTEGER_FORMAT "\n",
               a->pos[0], json_integer_value(json_object_get(j, "max_id")),
               json_integer_value(json_object_get(j, "step")));
    json_decref(j);
    return rv;
}

static int id_seg_next(const struct client_cli *cli, const struct id_args *a)
{
    char t[ID_CMD_PATH_MAX], suffix[48];
    snprintf(suffix, sizeof(suffix), "/next?count=%" PRIu64, a->flags & IDF_COUNT ? a->count : 1);
    id_target(t, "/v1/id/segments/", a->pos[0], suffix);
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id next", "POST", t, NULL, &j);
    if (j)
        id_print_lines(j, "ids");
    json_decref(j);
    return rv;
}

static int id_snowflake(const struct client_cli *cli, const struct id_args *a)
{
    char t[64];
    snprintf(t, sizeof(t), "/v1/id/snowflake?count=%" PRIu64, a->flags & IDF_COUNT ? a->count : 1);
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id snowflake", "GET", t, NULL, &j);
    if (j)
        id_print_lines(j, "ids");
    json_decref(j);
    return rv;
}

static int id_uuid(const struct client_cli *cli, const struct id_args *a)
{
    char t[96];
    snprintf(t, sizeof(t), "/v1/id/uuid?version=%" PRIu64 "&count=%" PRIu64,
             a->flags & IDF_VERSION ? a->version : 4, a->flags & IDF_COUNT ? a->count : 1);
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id uuid", "GET", t, NULL, &j);
    if (j)
        id_print_lines(j, "uuids");
    json_decref(j);
    return rv;
}

static int id_trace(const struct client_cli *cli, const struct id_args *a)
{
    char t[ID_CMD_PATH_MAX] = "/v1/id/trace";
    if (a->parent) {
        char tp[ID_CMD_PATH_MAX], sp[ID_CMD_PATH_MAX];
        id_target(tp, "?parent=", a->parent, "");
        id_target(sp, "&span=", a->span ? a->span : "0", "");
        int w = snprintf(t, sizeof(t), "/v1/id/trace%.300s%.300s&index=%" PRIu64, tp, sp,
                         a->flags & IDF_INDEX ? a->index : 1);
        CC_ASSERT(w > 0 && w < (int)sizeof(t));
    } else if (a->span || (a->flags & IDF_INDEX)) {
        fprintf(stderr, "conclave id trace: --span and --index need --parent\n");
        return CLIENT_EXIT_USAGE;
    }
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id trace", "GET", t, NULL, &j);
    if (j) {
        const char *keys[] = {"trace_id", "span_id", "parent_id", "traceparent", "sofa_trace_id"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (json_string_value(json_object_get(j, keys[i])))
                printf("%s %s\n", keys[i], json_string_value(json_object_get(j, keys[i])));
    }
    json_decref(j);
    return rv;
}

static int id_order(const struct client_cli *cli, const struct id_args *a)
{
    if (!(a->flags & IDF_BIZ)) {
        fprintf(stderr, "conclave id order: --biz TYPE (0-99) is required\n");
        return CLIENT_EXIT_USAGE;
    }
    json_t *body = json_pack("{s:I, s:I}", "biz_type", (json_int_t)a->biz, "count",
                             (json_int_t)(a->flags & IDF_COUNT ? a->count : 1));
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id order", "POST", "/v1/id/orders", body, &j);
    if (j)
        id_print_lines(j, "orders");
    json_decref(j);
    return rv;
}

static int id_redeem_issue(const struct client_cli *cli, const struct id_args *a)
{
    char t[ID_CMD_PATH_MAX];
    id_target(t, "/v1/id/redeem/", a->pos[0], "");
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id redeem issue", "POST", t,
                     json_pack("{s:I}", "count", (json_int_t)(a->flags & IDF_COUNT ? a->count : 1)),
                     &j);
    if (j)
        id_print_lines(j, "codes");
    json_decref(j);
    return rv;
}

static int id_redeem_code(const struct client_cli *cli, const struct id_args *a, bool use)
{
    char t[ID_CMD_PATH_MAX], camp[ID_CMD_PATH_MAX];
    id_target(camp, "/v1/id/redeem/", a->pos[0], "/");
    id_target(t, camp, a->pos[1], "");
    json_t *j = NULL;
    int rv = id_call(cli, use ? "conclave id redeem use" : "conclave id redeem verify",
                     use ? "POST" : "GET", t, NULL, &j);
    if (j)
        printf("%s campaign %" JSON_INTEGER_FORMAT " serial %" JSON_INTEGER_FORMAT "\n",
               use ? "redeemed" : "valid", json_integer_value(json_object_get(j, "campaign")),
               json_integer_value(json_object_get(j, "serial")));
    json_decref(j);
    return rv;
}

static int id_redeem_verify(const struct client_cli *cli, const struct id_args *a)
{
    return id_redeem_code(cli, a, false);
}

static int id_redeem_use(const struct client_cli *cli, const struct id_args *a)
{
    return id_redeem_code(cli, a, true);
}

static int id_short(const struct client_cli *cli, const struct id_args *a)
{
    json_t *j = NULL;
    int rv = id_call(cli, "conclave id short", "POST", "/v1/id/short",
                     json_pack("{s:s}", "url", a->pos[0]), &j);
    if (j) {
        const char *link = json_string_value(json_object_get(j, "short_url"));
        printf("%s\n", link ? link : json_string_value(json_object_get(j, "code")));
    }
    json_decref(j);
    return rv;
}

static const struct id_verb id_verbs[] = {
    {"segment", "create", 1, IDF_INITIAL | IDF_STEP,
     "conclave id segment create TAG [--initial N] [--step N]", id_seg_create},
    {"segment", "get", 1, 0, "conclave id segment get TAG", id_seg_get},
    {"segment", "update", 1, IDF_STEP | IDF_MAXID,
     "conclave id segment update TAG [--step N] [--max-id N]", id_seg_update},
    {"segment", "next", 1, IDF_COUNT, "conclave id segment next TAG [-n N]", id_seg_next},
    {"next", NULL, 1, IDF_COUNT, "conclave id next TAG [-n N]", id_seg_next},
    {"snowflake", NULL, 0, IDF_COUNT, "conclave id snowflake [-n N]", id_snowflake},
    {"uuid", NULL, 0, IDF_COUNT | IDF_VERSION, "conclave id uuid [-v 4|7] [-n N]", id_uuid},
    {"trace", NULL, 0, IDF_PARENT | IDF_SPAN | IDF_INDEX,
     "conclave id trace [--parent TRACEPARENT] [--span S] [--index K]", id_trace},
    {"order", NULL, 0, IDF_BIZ | IDF_COUNT, "conclave id order --biz TYPE [-n N]", id_order},
    {"redeem", "issue", 1, IDF_COUNT, "conclave id redeem issue CAMPAIGN [-n N]", id_redeem_issue},
    {"redeem", "verify", 2, 0, "conclave id redeem verify CAMPAIGN CODE", id_redeem_verify},
    {"redeem", "use", 2, 0, "conclave id redeem use CAMPAIGN CODE", id_redeem_use},
    {"short", NULL, 1, 0, "conclave id short URL", id_short},
};

/* ---- dispatch ---------------------------------------------------------------------- */

int cli_id_main(int argc, char **argv)
{
    struct client_cli cli;
    char err[CLIENT_ERRMSG_BYTES];
    if (client_cli_init(&cli, "conclave id", &argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "conclave id: %s\n\n%s", err, id_usage_text);
        return CLIENT_EXIT_USAGE;
    }
    if (argc < 2) {
        fputs(id_usage_text, stderr);
        return CLIENT_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(id_usage_text, stdout);
        return CLIENT_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(id_verbs) / sizeof(id_verbs[0]); i++) {
        const struct id_verb *v = &id_verbs[i];
        if (strcmp(argv[1], v->area) != 0)
            continue;
        if (v->verb && (argc < 3 || strcmp(argv[2], v->verb) != 0))
            continue;
        struct id_args a;
        int rv = id_parse_args(v, argc, argv, v->verb ? 3 : 2, &a);
        if (rv != 0)
            return rv < 0 ? CLIENT_EXIT_OK : rv;
        return v->run(&cli, &a);
    }
    fprintf(stderr, "conclave id: unknown verb '%s%s%s'\n\n%s", argv[1], argc > 2 ? " " : "",
            argc > 2 ? argv[2] : "", id_usage_text);
    return CLIENT_EXIT_USAGE;
}
