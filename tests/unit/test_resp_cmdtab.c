/* test_resp_cmdtab.c -- unit tests for api/resp_cmdtab: the static Redis command table,
 * its lookups, Redis's dispatch errors and the COMMAND replies.
 *
 * The table is checked for order (the binary search depends on it), unique ids,
 * arity that agrees with the argument tree, and key positions that agree with the key
 * specs. Errors are compared byte for byte with Redis's. COMMAND replies are parsed
 * back into a tree and walked the way redis-cli 7 walks COMMAND DOCS (same type
 * expectations, same hint construction), in RESP2 and RESP3; COMMAND INFO GET is also
 * compared byte for byte with Redis 7's reply.
 *
 * Sections: reply tree | table | lookup | errors | COMMAND replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/resp_cmdtab.h"

/* ==== reply tree ========================================================== */

enum rt { RT_SIMPLE, RT_ERROR, RT_INT, RT_BULK, RT_NULL, RT_ARRAY, RT_MAP, RT_SET, RT_BOOL };

/* One parsed reply. Maps keep their 2n elements flattened in kids, like RESP2 arrays. */
struct node {
    enum rt t;
    int64_t i;
    const char *s; /* SIMPLE, ERROR, BULK: points into the reply bytes */
    size_t len;
    size_t n; /* elements (2 x pairs for a map) */
    struct node *kids;
};

static void node_free(struct node *x)
{
    for (size_t k = 0; k < x->n; k++) {
        node_free(&x->kids[k]);
    }
    free(x->kids);
}

static size_t line_end(const char *b, size_t n, size_t off)
{
    for (size_t i = off; i + 1 < n; i++) {
        if (b[i] == '\r' && b[i + 1] == '\n') {
            return i;
        }
    }
    fail_msg("no CRLF after offset %zu", off);
    return 0;
}

/* Parses one reply at b[off]; returns the offset after it. Test input only. */
static size_t parse_node(const char *b, size_t n, size_t off, struct node *x, int depth)
{
    assert_true(depth < 32);
    assert_true(off < n);
    memset(x, 0, sizeof(*x));
    const size_t e = line_end(b, n, off);
    const char c = b[off];
    char num[32];
    assert_true(e - off - 1 < sizeof(num));
    memcpy(num, b + off + 1, e - off - 1);
    num[e - off - 1] = '\0';
    switch (c) {
    case '+':
    case '-':
        x->t = c == '+' ? RT_SIMPLE : RT_ERROR;
        x->s = b + off + 1;
        x->len = e - off - 1;
        return e + 2;
    case ':':
        x->t = RT_INT;
        x->i = strtoll(num, NULL, 10);
        return e + 2;
    case '_':
        x->t = RT_NULL;
        return e + 2;
    case '#':
        x->t = RT_BOOL;
        x->i = num[0] == 't';
        return e + 2;
    case '$': {
        const long long len = strtoll(num, NULL, 10);
        if (len < 0) {
            x->t = RT_NULL;
            return e + 2;
        }
        x->t = RT_BULK;
        x->s = b + e + 2;
        x->len = (size_t)len;
        assert_true(e + 2 + (size_t)len + 2 <= n);
        assert_memory_equal(b + e + 2 + len, "\r\n", 2);
        return e + 2 + (size_t)len + 2;
    }
    case '*':
    case '%':
    case '~': {
        const long long cnt = strtoll(num, NULL, 10);
        if (cnt < 0) {
            x->t = RT_NULL;
            return e + 2;
        }
        x->t = c == '*' ? RT_ARRAY : c == '%' ? RT_MAP : RT_SET;
        x->n = (size_t)cnt * (c == '%' ? 2 : 1);
        x->kids = calloc(x->n + 1, sizeof(*x->kids));
        size_t at = e + 2;
        for (size_t k = 0; k < x->n; k++) {
            at = parse_node(b, n, at, &x->kids[k], depth + 1);
        }
        return at;
    }
    default:
        fail_msg("unexpected reply type byte 0x%02x at %zu", (unsigned char)c, off);
        return 0;
    }
}

/* Parses the whole output of o as exactly one reply and clears o. */
static void parse_out(struct resp_out *o, struct node *x)
{
    size_t n;
    const char *b = (const char *)resp_out_data(o, &n);
    assert_int_equal(resp_out_status(o), 0);
    const size_t end = parse_node(b, n, 0, x, 0);
    assert_int_equal(end, n);
}

static bool is_str(const struct node *x, const char *s)
{
    return (x->t == RT_BULK || x->t == RT_SIMPLE) && x->len == strlen(s) &&
           memcmp(x->s, s, x->len) == 0;
}

/* The value of key in a map (or RESP2 array of pairs), or NULL. */
static const struct node *map_get(const struct node *m, const char *key)
{
    assert_true(m->t == RT_MAP || m->t == RT_ARRAY);
    assert_int_equal(m->n % 2, 0);
    for (size_t k = 0; k < m->n; k += 2) {
        if (is_str(&m->kids[k], key)) {
            return &m->kids[k + 1];
        }
    }
    return NULL;
}

static bool set_has(const struct node *s, const char *item)
{
    for (size_t k = 0; k < s->n; k++) {
        if (is_str(&s->kids[k], item)) {
            return true;
        }
    }
    return false;
}

static struct resp_arg arg(const char *s)
{
    return (struct resp_arg){.ptr = s, .len = strlen(s)};
}

/* ==== table =============================================================== */

static void test_table_sorted_and_ids_unique(void **state)
{
    (void)state;
    int seen[RESP_CMD__END] = {0};
    const size_t n = resp_cmdtab_count();
    assert_true(n >= 50);
    for (size_t i = 0; i < n; i++) {
        const struct resp_cmd_spec *c = resp_cmdtab_at(i);
        if (i > 0) {
            assert_true(strcmp(resp_cmdtab_at(i - 1)->name, c->name) < 0);
        }
        for (const char *p = c->name; *p; p++) {
            /* lowercase, or '.' in Conclave's module-style names (id.next) */
            assert_true((*p >= 'a' && *p <= 'z') || (*p == '.' && p != c->name));
        }
        assert_true(c->id > 0 && c->id < RESP_CMD__END);
        seen[c->id]++;
        for (uint8_t k = 0; k < c->n_subs; k++) {
            const struct resp_cmd_spec *s = &c->subs[k];
            const size_t pl = strlen(c->name);
            assert_int_equal(strncmp(s->name, c->name, pl), 0);
            assert_int_equal(s->name[pl], '|');
            if (k > 0) {
                assert_true(strcmp(c->subs[k - 1].name, s->name) < 0);
            }
            assert_int_equal(s->n_subs, 0);
            assert_true(s->id > 0 && s->id < RESP_CMD__END);
            seen[s->id]++;
        }
    }
    for (int id = 1; id < RESP_CMD__END; id++) {
        if (seen[id] != 1) {
            fail_msg("id %d appears %d times", id, seen[id]);
        }
    }
}

static int arg_words(const struct resp_argspec *a);

/* Fewest words the arguments take (optional ones none, a oneof its shortest branch). */
static int args_min_words(const struct resp_argspec *args, uint8_t n)
{
    int w = 0;
    for (uint8_t i = 0; i < n; i++) {
        if (!(args[i].flags & RESP_ARGF_OPTIONAL)) {
            w += arg_words(&args[i]);
        }
    }
    return w;
}

static int arg_words(const struct resp_argspec *a)
{
    const int tok = a->token != NULL ? 1 : 0;
    switch (a->type) {
    case RESP_ARG_PURE_TOKEN:
        assert_non_null(a->token);
        return 1;
    case RESP_ARG_ONEOF: {
        int best = 1000;
        for (uint8_t i = 0; i < a->n_sub; i++) {
            const int w = arg_words(&a->sub[i]);
            best = w < best ? w : best;
        }
        return tok + best;
    }
    case RESP_ARG_BLOCK:
        return tok + args_min_words(a->sub, a->n_sub);
    default:
        return tok + 1;
    }
}

static bool args_variable(const struct resp_argspec *args, uint8_t n)
{
    for (uint8_t i = 0; i < n; i++) {
        if (args[i].flags & (RESP_ARGF_OPTIONAL | RESP_ARGF_MULTIPLE)) {
            return true;
        }
        if ((args[i].type == RESP_ARG_BLOCK || args[i].type == RESP_ARG_ONEOF) &&
            args_variable(args[i].sub, args[i].n_sub)) {
            return true;
        }
    }
    return false;
}

static void check_args(const struct resp_cmd_spec *c, const struct resp_argspec *args, uint8_t n,
                       int depth)
{
    assert_true(depth < 4);
    for (uint8_t i = 0; i < n; i++) {
        const struct resp_argspec *a = &args[i];
        assert_non_null(a->name);
        const bool group = a->type == RESP_ARG_ONEOF || a->type == RESP_ARG_BLOCK;
        assert_int_equal(group, a->n_sub > 0);
        if (a->type == RESP_ARG_KEY) {
            assert_true(a->key_spec_index >= 0 && a->key_spec_index < c->n_keyspecs);
        }
        if (group) {
            check_args(c, a->sub, a->n_sub, depth + 1);
        }
    }
}

/* Arity agrees with the argument tree; key positions agree with the key specs. */
static void check_spec(const struct resp_cmd_spec *c, bool is_sub)
{
    assert_non_null(c->summary);
    assert_non_null(c->since);
    assert_non_null(c->group);
    assert_true(c->arity != 0);
    assert_false((c->flags & RESP_CMDF_WRITE) && (c->flags & RESP_CMDF_READONLY));
    check_args(c, c->args, c->n_args, 0);
    if (c->n_subs == 0) {
        const int min = 1 + (is_sub ? 1 : 0) + args_min_words(c->args, c->n_args);
        const bool variable = args_variable(c->args, c->n_args);
        if (c->arity > 0) {
            if (variable || min != c->arity) {
                fail_msg("%s: arity %d, arguments say %s%d", c->name, c->arity,
                         variable ? "at least " : "", min);
            }
        } else if (min != -c->arity) {
            fail_msg("%s: arity %d, arguments say at least %d", c->name, c->arity, min);
        } else if (!variable && c->id != RESP_CMD_QUIT) { /* QUIT takes anything */
            fail_msg("%s: arity %d, but its arguments are fixed", c->name, c->arity);
        }
    }
    if (c->first_key == 0) {
        assert_int_equal(c->n_keyspecs, 0);
        assert_int_equal(c->last_key, 0);
        assert_int_equal(c->key_step, 0);
        return;
    }
    assert_true(c->n_keyspecs >= 1);
    assert_int_equal(c->first_key, c->keyspecs[0].index);
    assert_int_equal(c->key_step, c->keyspecs[0].keystep);
    int last = 0;
    for (uint8_t k = 0; k < c->n_keyspecs; k++) {
        const struct resp_keyspec *s = &c->keyspecs[k];
        assert_true(s->keystep >= 1);
        assert_true(__builtin_popcount(
                        s->flags & (RESP_KSF_RO | RESP_KSF_RW | RESP_KSF_OW | RESP_KSF_RM)) == 1);
        if (s->lastkey < 0) {
            last = -1;
        } else if (last >= 0 && s->index + s->lastkey > last) {
            last = s->index + s->lastkey;
        }
    }
    assert_int_equal(c->last_key, last);
    /* reads touch keys read-only, writes do not */
    if (c->flags & RESP_CMDF_READONLY) {
        assert_true(c->keyspecs[0].flags & RESP_KSF_RO);
    }
    if (c->flags & RESP_CMDF_WRITE) {
        assert_false(c->keyspecs[0].flags & RESP_KSF_RO);
    }
}

static void test_table_consistent(void **state)
{
    (void)state;
    for (size_t i = 0; i < resp_cmdtab_count(); i++) {
        const struct resp_cmd_spec *c = resp_cmdtab_at(i);
        check_spec(c, false);
        for (uint8_t k = 0; k < c->n_subs; k++) {
            check_spec(&c->subs[k], true);
        }
    }
    /* spot checks against Redis */
    const struct resp_cmd_spec *c = resp_cmdtab_lookup("mset", 4);
    assert_int_equal(c->arity, -3);
    assert_int_equal(c->first_key, 1);
    assert_int_equal(c->last_key, -1);
    assert_int_equal(c->key_step, 2);
    c = resp_cmdtab_lookup("rename", 6);
    assert_int_equal(c->last_key, 2);
    c = resp_cmdtab_lookup("get", 3);
    assert_int_equal(c->flags, RESP_CMDF_READONLY | RESP_CMDF_FAST);
}

/* ==== lookup ============================================================== */

static void test_lookup(void **state)
{
    (void)state;
    static const char *const names[] = {"get",    "GET",         "gEt",    "Set",
                                        "SETNX",  "incrbyfloat", "append", "watch",
                                        "client", "COMMAND",     "delex"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct resp_cmd_spec *c = resp_cmdtab_lookup(names[i], strlen(names[i]));
        assert_non_null(c);
        assert_int_equal(strcasecmp(c->name, names[i]), 0);
    }
    /* every table name finds itself, upper-cased too */
    for (size_t i = 0; i < resp_cmdtab_count(); i++) {
        const struct resp_cmd_spec *c = resp_cmdtab_at(i);
        char up[32];
        const size_t n = strlen(c->name);
        for (size_t k = 0; k <= n; k++) {
            up[k] = (c->name[k] >= 'a' && c->name[k] <= 'z') ? (char)(c->name[k] - 32) : c->name[k];
        }
        assert_ptr_equal(resp_cmdtab_lookup(up, n), c);
        assert_ptr_equal(resp_cmdtab_lookup_fullname(c->name, n), c);
        for (uint8_t k = 0; k < c->n_subs; k++) {
            const char *sub = strchr(c->subs[k].name, '|') + 1;
            assert_ptr_equal(resp_cmdtab_lookup_sub(c, sub, strlen(sub)), &c->subs[k]);
            assert_ptr_equal(resp_cmdtab_lookup_fullname(c->subs[k].name, strlen(c->subs[k].name)),
                             &c->subs[k]);
        }
    }
    /* near misses */
    static const char *const misses[] = {"",  "ge",   "gett", "g",         "zzz",
                                         "a", "get ", " get", "client|id", "set|x"};
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        assert_null(resp_cmdtab_lookup(misses[i], strlen(misses[i])));
    }
    assert_null(resp_cmdtab_lookup("get\0", 4));
    assert_null(resp_cmdtab_lookup("GE\xc4", 3));
    const struct resp_cmd_spec *client = resp_cmdtab_lookup("client", 6);
    assert_null(resp_cmdtab_lookup_sub(client, "nope", 4));
    assert_null(resp_cmdtab_lookup_sub(resp_cmdtab_lookup("get", 3), "id", 2));
    assert_non_null(resp_cmdtab_lookup_fullname("CLIENT|ID", 9));
    assert_null(resp_cmdtab_lookup_fullname("client|", 7));
    assert_null(resp_cmdtab_lookup_fullname("|id", 3));
    assert_null(resp_cmdtab_lookup_fullname("nope|id", 7));
}

static void test_arity(void **state)
{
    (void)state;
    const struct resp_cmd_spec *get = resp_cmdtab_lookup("get", 3);
    assert_false(resp_cmdtab_arity_ok(get, 1));
    assert_true(resp_cmdtab_arity_ok(get, 2));
    assert_false(resp_cmdtab_arity_ok(get, 3));
    const struct resp_cmd_spec *set = resp_cmdtab_lookup("set", 3);
    assert_false(resp_cmdtab_arity_ok(set, 2));
    assert_true(resp_cmdtab_arity_ok(set, 3));
    assert_true(resp_cmdtab_arity_ok(set, 1000));
}

/* ==== errors ============================================================== */

/* Resolves argv and expects the code and, for errors, Redis's exact reply bytes. */
static void expect_resolve(const char *const *words, uint32_t argc, int code, enum resp_cmd_id id,
                           const char *reply)
{
    struct resp_arg argv[16];
    assert_true(argc <= 16);
    for (uint32_t i = 0; i < argc; i++) {
        argv[i] = arg(words[i]);
    }
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    const struct resp_cmd_spec *spec = (const struct resp_cmd_spec *)1;
    assert_int_equal(resp_cmdtab_resolve(&o, argc, argv, &spec), code);
    size_t n;
    const char *b = (const char *)resp_out_data(&o, &n);
    if (code == 0) {
        assert_non_null(spec);
        assert_int_equal(spec->id, id);
        assert_int_equal(n, 0);
    } else {
        if (n != strlen(reply) || memcmp(b, reply, n) != 0) {
            fail_msg("got \"%.*s\" want \"%s\"", (int)n, b, reply);
        }
        if (code == RESP_CMDTAB_EARITY) {
            assert_int_equal(spec->id, id);
        } else {
            assert_null(spec);
        }
    }
    /* without an encoder: same code, nothing written anywhere */
    assert_int_equal(resp_cmdtab_resolve(NULL, argc, argv, &spec), code);
    resp_out_free(&o);
}

#define W(...)                            \
    ((const char *const[]){__VA_ARGS__}), \
        (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void test_resolve(void **state)
{
    (void)state;
    expect_resolve(W("GET", "k"), 0, RESP_CMD_GET, NULL);
    expect_resolve(W("set", "k", "v", "NX", "PX", "3000"), 0, RESP_CMD_SET, NULL);
    expect_resolve(W("command"), 0, RESP_CMD_COMMAND, NULL);
    expect_resolve(W("COMMAND", "count"), 0, RESP_CMD_COMMAND_COUNT, NULL);
    expect_resolve(W("command", "DOCS", "get", "set"), 0, RESP_CMD_COMMAND_DOCS, NULL);
    expect_resolve(W("client", "SetName", "x"), 0, RESP_CMD_CLIENT_SETNAME, NULL);
    expect_resolve(W("foo", "a", "b"), RESP_CMDTAB_EUNKNOWN, 0,
                   "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n");
    expect_resolve(W("foo"), RESP_CMDTAB_EUNKNOWN, 0,
                   "-ERR unknown command 'foo', with args beginning with: \r\n");
    expect_resolve(W("GET"), RESP_CMDTAB_EARITY, RESP_CMD_GET,
                   "-ERR wrong number of arguments for 'get' command\r\n");
    expect_resolve(W("Get", "a", "b"), RESP_CMDTAB_EARITY, RESP_CMD_GET,
                   "-ERR wrong number of arguments for 'get' command\r\n");
    expect_resolve(W("client"), RESP_CMDTAB_EARITY, RESP_CMD_CLIENT,
                   "-ERR wrong number of arguments for 'client' command\r\n");
    expect_resolve(W("CLIENT", "SETNAME"), RESP_CMDTAB_EARITY, RESP_CMD_CLIENT_SETNAME,
                   "-ERR wrong number of arguments for 'client|setname' command\r\n");
    expect_resolve(W("client", "nope", "x"), RESP_CMDTAB_ENOSUB, 0,
                   "-ERR unknown subcommand 'nope'. Try CLIENT HELP.\r\n");
    expect_resolve(W("Command", "list"), RESP_CMDTAB_ENOSUB, 0,
                   "-ERR unknown subcommand 'list'. Try COMMAND HELP.\r\n");
    /* CR and LF from the client become spaces; a NUL ends an argument (Redis prints C
     * strings) */
    expect_resolve(W("fo\r\no", "a\nb"), RESP_CMDTAB_EUNKNOWN, 0,
                   "-ERR unknown command 'fo  o', with args beginning with: 'a b' \r\n");
    assert_string_equal(resp_cmdtab_strerror(RESP_CMDTAB_ENOSUB), "unknown subcommand");
}

/* Redis echoes at most 128 bytes of the name and about 128 of the arguments. */
static void test_unknown_truncation(void **state)
{
    (void)state;
    char name[300], a1[100], a2[100], a3[100];
    memset(name, 'n', sizeof(name));
    memset(a1, 'x', sizeof(a1));
    memset(a2, 'y', sizeof(a2));
    memset(a3, 'z', sizeof(a3));
    const struct resp_arg argv[] = {{name, sizeof(name)},
                                    {a1, sizeof(a1)},
                                    {a2, sizeof(a2)},
                                    {a3, sizeof(a3)},
                                    {"\0hidden", 7}};
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    assert_int_equal(resp_cmdtab_err_unknown(&o, 5, argv), 0);
    /* 'x'*100 + "' " = 103 < 128, then 'y' cut to 128 - 103 = 25, then stop (131) */
    char want[1024];
    int n = snprintf(want, sizeof(want),
                     "-ERR unknown command '%.128s', with args beginning with: "
                     "'%.100s' '%.25s' \r\n",
                     name, a1, a2);
    size_t len;
    const uint8_t *b = resp_out_data(&o, &len);
    assert_int_equal(len, (size_t)n);
    assert_memory_equal(b, want, len);
    resp_out_clear(&o);
    const struct resp_arg nul[] = {{"x", 1}, {"\0hidden", 7}};
    resp_cmdtab_err_unknown(&o, 2, nul);
    b = resp_out_data(&o, &len);
    static const char want2[] = "-ERR unknown command 'x', with args beginning with: '' \r\n";
    assert_int_equal(len, sizeof(want2) - 1);
    assert_memory_equal(b, want2, len);
    resp_out_free(&o);
}

/* ==== COMMAND replies ===================================================== */

static void test_command_count_and_all(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    resp_cmdtab_write_count(&o);
    struct node x;
    parse_out(&o, &x);
    assert_int_equal(x.t, RT_INT);
    assert_int_equal(x.i, (int64_t)resp_cmdtab_count());
    resp_out_clear(&o);

    for (int proto = 2; proto <= 3; proto++) {
        resp_out_set_proto(&o, proto);
        assert_int_equal(resp_cmdtab_write_command(&o), 0);
        parse_out(&o, &x);
        resp_out_clear(&o);
        assert_int_equal(x.t, RT_ARRAY);
        assert_int_equal(x.n, resp_cmdtab_count());
        for (size_t i = 0; i < x.n; i++) {
            const struct node *e = &x.kids[i];
            const struct resp_cmd_spec *c = resp_cmdtab_at(i);
            assert_int_equal(e->t, RT_ARRAY);
            assert_int_equal(e->n, 10);
            assert_true(is_str(&e->kids[0], c->name));
            assert_int_equal(e->kids[1].i, c->arity);
            assert_int_equal(e->kids[2].t, proto == 3 ? RT_SET : RT_ARRAY);
            assert_int_equal(e->kids[3].i, c->first_key);
            assert_int_equal(e->kids[4].i, c->last_key);
            assert_int_equal(e->kids[5].i, c->key_step);
            assert_true(set_has(&e->kids[6], (c->flags & RESP_CMDF_FAST) ? "@fast" : "@slow"));
            assert_int_equal(e->kids[8].n, c->n_keyspecs);
            assert_int_equal(e->kids[9].n, c->n_subs);
            for (uint8_t k = 0; k < c->n_subs; k++) {
                assert_true(is_str(&e->kids[9].kids[k].kids[0], c->subs[k].name));
            }
        }
        node_free(&x);
    }
    /* writes and reads as Redis does */
    resp_out_set_proto(&o, 2);
    const struct resp_arg names[] = {arg("SET"), arg("nope"), arg("client|setname")};
    resp_cmdtab_write_info(&o, 3, names);
    parse_out(&o, &x);
    resp_out_clear(&o);
    assert_int_equal(x.n, 3);
    const struct node *set = &x.kids[0];
    assert_true(set_has(&set->kids[2], "write"));
    assert_true(set_has(&set->kids[2], "denyoom"));
    assert_false(set_has(&set->kids[2], "readonly"));
    assert_true(set_has(&set->kids[6], "@write"));
    assert_true(set_has(&set->kids[6], "@string"));
    assert_true(set_has(&set->kids[6], "@slow"));
    assert_int_equal(x.kids[1].t, RT_NULL);
    assert_true(is_str(&x.kids[2].kids[0], "client|setname"));
    assert_int_equal(x.kids[2].kids[1].i, 3);
    node_free(&x);
    /* no names: every command */
    resp_cmdtab_write_info(&o, 0, NULL);
    parse_out(&o, &x);
    assert_int_equal(x.n, resp_cmdtab_count());
    node_free(&x);
    resp_out_free(&o);
}

/* Byte for byte what Redis 7 answers to COMMAND INFO GET over RESP2 (with our key-spec
 * array and Redis's flag, category and key-spec wording). */
static void test_command_info_get_exact(void **state)
{
    (void)state;
    static const char want[] =
        "*1\r\n"
        "*10\r\n"
        "$3\r\nget\r\n"
        ":2\r\n"
        "*2\r\n+readonly\r\n+fast\r\n"
        ":1\r\n:1\r\n:1\r\n"
        "*3\r\n+@read\r\n+@string\r\n+@fast\r\n"
        "*0\r\n"
        "*1\r\n"
        "*6\r\n"
        "$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n"
        "$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n"
        "*2\r\n$5\r\nindex\r\n:1\r\n"
        "$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n"
        "*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n"
        "*0\r\n";
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    const struct resp_arg names[] = {arg("get")};
    assert_int_equal(resp_cmdtab_write_info(&o, 1, names), 0);
    size_t n;
    const uint8_t *b = resp_out_data(&o, &n);
    if (n != sizeof(want) - 1 || memcmp(b, want, n) != 0) {
        fail_msg("got:\n%.*s", (int)n, (const char *)b);
    }
    resp_out_free(&o);
}

/* redis-cli's cliAddArgument: the hint text one argument map becomes. */
static void cli_add_argument(char *out, size_t cap, const struct node *a);

static void cli_concat(char *out, size_t cap, const struct node *args, const char *sep)
{
    assert_true(args->t == RT_ARRAY || args->t == RT_SET);
    for (size_t j = 0; j < args->n; j++) {
        cli_add_argument(out, cap, &args->kids[j]);
        if (j + 1 < args->n) {
            strncat(out, sep, cap - strlen(out) - 1);
        }
    }
}

static void cli_add_argument(char *out, size_t cap, const struct node *a)
{
    assert_true(a->t == RT_MAP || a->t == RT_ARRAY);
    char name[64] = "", type[32] = "", token[64] = "", repeat[512] = "";
    bool optional = false, multiple = false, multiple_token = false;
    const struct node *sub = NULL;
    for (size_t i = 0; i < a->n; i += 2) {
        const struct node *k = &a->kids[i], *v = &a->kids[i + 1];
        assert_int_equal(k->t, RT_BULK);
        if (is_str(k, "name")) {
            assert_int_equal(v->t, RT_BULK);
            snprintf(name, sizeof(name), "%.*s", (int)v->len, v->s);
        } else if (is_str(k, "type")) {
            assert_int_equal(v->t, RT_BULK);
            snprintf(type, sizeof(type), "%.*s", (int)v->len, v->s);
        } else if (is_str(k, "token")) {
            assert_int_equal(v->t, RT_BULK);
            snprintf(token, sizeof(token), "%.*s", (int)v->len, v->s);
        } else if (is_str(k, "arguments")) {
            sub = v;
        } else if (is_str(k, "flags")) {
            assert_true(v->t == RT_SET || v->t == RT_ARRAY);
            for (size_t j = 0; j < v->n; j++) {
                assert_int_equal(v->kids[j].t, RT_SIMPLE);
                optional |= is_str(&v->kids[j], "optional");
                multiple |= is_str(&v->kids[j], "multiple");
                multiple_token |= is_str(&v->kids[j], "multiple_token");
            }
        }
    }
    assert_true(name[0] != '\0' && type[0] != '\0'); /* redis-cli strcmp()s both */
    if (strcmp(type, "oneof") == 0) {
        cli_concat(repeat, sizeof(repeat), sub, "|");
    } else if (strcmp(type, "block") == 0) {
        cli_concat(repeat, sizeof(repeat), sub, " ");
    } else if (strcmp(type, "pure-token") != 0) {
        snprintf(repeat, sizeof(repeat), "%s", name);
    }
    char part[1024];
    snprintf(part, sizeof(part), "%s%s%s%s", optional ? "[" : "", token,
             token[0] && strcmp(type, "pure-token") != 0 ? " " : "", repeat);
    strncat(out, part, cap - strlen(out) - 1);
    if (multiple) {
        snprintf(part, sizeof(part), " [%s%s%s ...]", multiple_token ? token : "",
                 multiple_token && token[0] ? " " : "", repeat);
        strncat(out, part, cap - strlen(out) - 1);
    }
    if (optional) {
        strncat(out, "]", cap - strlen(out) - 1);
    }
}

/* Walks COMMAND DOCS as redis-cli 7's cliInitHelp does, asserting what it asserts, and
 * returns the hint line of `want_cmd` in hint (or "" if absent). */
static size_t cli_walk(const struct node *top, const char *want_cmd, char *hint, size_t cap)
{
    assert_true(top->t == RT_MAP || top->t == RT_ARRAY);
    assert_int_equal(top->n % 2, 0);
    size_t entries = 0;
    hint[0] = '\0';
    for (size_t i = 0; i < top->n; i += 2) {
        assert_int_equal(top->kids[i].t, RT_BULK);
        const struct node *specs = &top->kids[i + 1];
        assert_true(specs->t == RT_MAP || specs->t == RT_ARRAY);
        entries++;
        for (size_t j = 0; j < specs->n; j += 2) {
            const struct node *k = &specs->kids[j], *v = &specs->kids[j + 1];
            assert_int_equal(k->t, RT_BULK);
            if (is_str(k, "summary") || is_str(k, "since") || is_str(k, "group")) {
                assert_int_equal(v->t, RT_BULK);
            } else if (is_str(k, "arguments")) {
                assert_int_equal(v->t, RT_ARRAY);
                char params[1024] = "";
                cli_concat(params, sizeof(params), v, " ");
                if (is_str(&top->kids[i], want_cmd)) {
                    snprintf(hint, cap, "%s", params);
                }
            } else if (is_str(k, "subcommands")) {
                assert_true(v->t == RT_MAP || v->t == RT_ARRAY);
                char sub_hint[8];
                entries += cli_walk(v, "", sub_hint, sizeof(sub_hint));
            }
        }
        assert_non_null(map_get(specs, "summary"));
        assert_non_null(map_get(specs, "since"));
        assert_non_null(map_get(specs, "group"));
    }
    return entries;
}

static void test_command_docs_as_redis_cli(void **state)
{
    (void)state;
    static const struct {
        const char *cmd, *hint;
    } hints[] = {
        {"set", "key value [NX|XX|IFEQ ifeq-value|IFNE ifne-value] [GET] [EX seconds|PX "
                "milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]"},
        {"mset", "key value [key value ...]"},
        {"del", "key [key ...]"},
        {"getex", "key [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT "
                  "unix-time-milliseconds|PERSIST]"},
        {"expire", "key seconds [NX|XX|GT|LT]"},
        {"scan", "cursor [MATCH pattern] [COUNT count]"},
        {"hello", "[protover [AUTH username password] [SETNAME clientname]]"},
        {"delex", "key [IFEQ ifeq-value|IFNE ifne-value]"},
        {"info", "[section [section ...]]"},
        {"get", "key"},
    };
    struct resp_out o;
    resp_out_init(&o, RESP_OUT_BYTES_DEFAULT);
    size_t n_entries = 0;
    for (size_t i = 0; i < resp_cmdtab_count(); i++) {
        n_entries += 1 + resp_cmdtab_at(i)->n_subs;
    }
    for (int proto = 2; proto <= 3; proto++) {
        resp_out_set_proto(&o, proto);
        for (size_t h = 0; h < sizeof(hints) / sizeof(hints[0]); h++) {
            assert_int_equal(resp_cmdtab_write_docs(&o, 0, NULL), 0);
            struct node x;
            parse_out(&o, &x);
            resp_out_clear(&o);
            assert_int_equal(x.t, proto == 3 ? RT_MAP : RT_ARRAY);
            char hint[1024];
            assert_int_equal(cli_walk(&x, hints[h].cmd, hint, sizeof(hint)), n_entries);
            if (strcmp(hint, hints[h].hint) != 0) {
                fail_msg("%s: hint \"%s\", want \"%s\"", hints[h].cmd, hint, hints[h].hint);
            }
            node_free(&x);
        }
    }
    /* by name: unknown names left out, subcommands by full name */
    resp_out_set_proto(&o, 2);
    const struct resp_arg names[] = {arg("GET"), arg("nope"), arg("client|id"), arg("")};
    assert_int_equal(resp_cmdtab_write_docs(&o, 4, names), 0);
    struct node x;
    parse_out(&o, &x);
    resp_out_clear(&o);
    assert_int_equal(x.n, 4);
    assert_true(is_str(&x.kids[0], "get"));
    assert_true(is_str(&x.kids[2], "client|id"));
    const struct node *get = &x.kids[1];
    assert_true(is_str(map_get(get, "summary"), "Returns the string value of a key."));
    assert_true(is_str(map_get(get, "since"), "1.0.0"));
    assert_true(is_str(map_get(get, "group"), "string"));
    assert_true(is_str(map_get(get, "complexity"), "O(1)"));
    node_free(&x);
    resp_cmdtab_write_docs(&o, 1, names + 1);
    parse_out(&o, &x);
    assert_int_equal(x.t, RT_ARRAY);
    assert_int_equal(x.n, 0);
    node_free(&x);
    resp_out_free(&o);
}

/* A COMMAND reply that does not fit the output cap fails cleanly (sticky error). */
static void test_command_over_cap(void **state)
{
    (void)state;
    struct resp_out o;
    resp_out_init(&o, 4096);
    assert_int_equal(resp_cmdtab_write_docs(&o, 0, NULL), RESP_EOUTFULL);
    assert_int_equal(resp_cmdtab_write_count(&o), RESP_EOUTFULL);
    resp_out_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_sorted_and_ids_unique),
        cmocka_unit_test(test_table_consistent),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_arity),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_unknown_truncation),
        cmocka_unit_test(test_command_count_and_all),
        cmocka_unit_test(test_command_info_get_exact),
        cmocka_unit_test(test_command_docs_as_redis_cli),
        cmocka_unit_test(test_command_over_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
