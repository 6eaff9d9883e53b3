/* watch_cmd.c -- `conclave watch`: follow a key or a prefix over GET /v1/watch/{key}.
 *
 *   conclave watch KEY [--prefix] [--from-revision N] [--lease ID] [--count N]
 *
 * The body is a Server-Sent Events stream (docs/API.md "Watch"), parsed by cli/sse.c;
 * this file prints, for people, one line per change:
 *
 *   7 PUT key = value            a put at revision 7
 *   7 DELETE key                 a delete at revision 7 (a txn's changes share it)
 *   12 SNAPSHOT key = value      from_revision was compacted: the state at 12, per key
 *   LEASE 5 revoked (revision 13)
 *
 * Bookmarks (progress) print nothing. With -o json every SSE event is one line,
 * {"event":..,"id":N|null,"data":{..}}, bookmarks included. An `error` event (the server
 * cut a watch that fell behind) goes to stderr with the revision to resume from, exit 1.
 * --count N exits 0 after N put/delete/snapshot events. A silent server is given up on
 * after --timeout-ms (default 15 s; the server sends a bookmark every 5 s).
 *
 * Invariants: one event is held at a time, bounded by SSE_EVENT_BYTES_MAX;
 * stdout is flushed after every event, so a pipe sees each at once.
 *
 * Sections: limits | usage | SSE parsing | rendering | run.
 */
#include "cli/watch_cmd.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "cli/client.h"
#include "cli/sse.h"
#include "sm/kv.h"

/* ---- limits ------------------------------------------------------------------------ */

_Static_assert(sizeof("/v1/watch/") + 3 * (size_t)KV_KEY_BYTES_MAX + 128 <= CLIENT_TARGET_BYTES_MAX,
               "an escaped longest key and every query flag fit in one target");

/* body_cb stop values (positive: client_stream returns them) */
enum { WC_STOP_COUNT = 1, WC_STOP_ERROR = 2, WC_STOP_BROKEN = 3 };

/* ---- usage ------------------------------------------------------------------------- */

static const char watch_usage_text[] =
    "usage: conclave watch KEY [--prefix] [--from-revision N] [--lease ID] [--count N]\n"
    "                          [global flags]\n"
    "\n"
    "Prints every change to KEY (with --prefix: to every key starting with KEY; an empty\n"
    "KEY with --prefix watches everything) as it is committed, one line per change:\n"
    "  REV PUT key = value | REV DELETE key | REV SNAPSHOT key = value | LEASE ID type\n"
    "\n"
    "  --from-revision N  start at revision N (history); if N was compacted, the\n"
    "                     current state comes first as SNAPSHOT lines\n"
    "  --lease ID         also report when lease ID is revoked or expires\n"
    "  --count N          exit 0 after N change events (revisions or snapshots)\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "\n"
    "Exit status: 0 --count reached, 1 the watch was cut, ended or refused (the message\n"
    "says where to resume), 2 usage, 3 cannot connect. See docs/cli.md.\n";

/* ---- SSE parsing ------------------------------------------------------------------- */

struct wc {
    const struct client_cli *cli;
    uint64_t count_max; /* 0: no limit */
    uint64_t n_changes; /* put/delete/snapshot events seen */
    int64_t last_id;    /* the last id: field seen, -1 before any */
    struct sse_parser sse;
};

static int wc_event(void *arg, const char *event, const char *id, const char *data,
                    size_t data_len);

/* client_stream's body callback: the SSE parser calls wc_event per event. */
static int wc_body(void *arg, const uint8_t *bytes, size_t n)
{
    struct wc *w = arg;
    int rv = sse_feed(&w->sse, bytes, n);
    if (rv == SSE_STOP_TOOBIG) {
        fprintf(stderr, "conclave watch: an event is over %u bytes or memory ran out\n",
                (unsigned)SSE_EVENT_BYTES_MAX);
        return WC_STOP_BROKEN;
    }
    return rv;
}

/* ---- rendering --------------------------------------------------------------------- */

static int64_t wc_i64(json_t *o, const char *name)
{
    return (int64_t)json_integer_value(json_object_get(o, name));
}

/* Renders one parsed event for people. Returns 0 or a stop value. */
static int wc_render(struct wc *w, const char *event, json_t *data)
{
    int64_t rev = wc_i64(data, "revision");
    if (strcmp(event, "put") == 0 || strcmp(event, "delete") == 0) {
        json_t *evs = json_object_get(data, "events");
        for (size_t i = 0; i < json_array_size(evs); i++) {
            json_t *e = json_array_get(evs, i);
            const char *type = json_string_value(json_object_get(e, "type"));
            if (type && strcmp(type, "delete") == 0) {
                printf("%" PRId64 " DELETE ", rev);
                client_print_field(e, "key", true);
            } else {
                json_t *kv = json_object_get(e, "kv");
                printf("%" PRId64 " PUT ", rev);
                client_print_field(kv, "key", true);
                fputs(" = ", stdout);
                client_print_field(kv, "value", true);
            }
            putchar('\n');
        }
    } else if (strcmp(event, "snapshot") == 0) {
        json_t *kvs = json_object_get(data, "kvs");
        if (json_array_size(kvs) == 0)
            printf("%" PRId64 " SNAPSHOT (no keys)\n", rev);
        for (size_t i = 0; i < json_array_size(kvs); i++) {
            json_t *kv = json_array_get(kvs, i);
            printf("%" PRId64 " SNAPSHOT ", rev);
            client_print_field(kv, "key", true);
            fputs(" = ", stdout);
            client_print_field(kv, "value", true);
            putchar('\n');
        }
    } else if (strcmp(event, "lease") == 0) {
        const char *type = json_string_value(json_object_get(data, "type"));
        printf("LEASE %" PRId64 " %s (revision %" PRId64 ")\n", wc_i64(data, "lease"),
               type ? type : "?", rev);
    }
    return 0;
}

static int wc_event(void *arg, const char *event, const char *id, const char *data,
                    size_t data_len)
{
    struct wc *w = arg;
    if (id) {
        int64_t n = strtoll(id, NULL, 10);
        if (n >= 0)
            w->last_id = n;
    }
    json_error_t jerr;
    json_t *j = json_loadb(data, data_len, 0, &jerr);
    if (!j) {
        fprintf(stderr, "conclave watch: the server sent an event that is not JSON (%s)\n",
                jerr.text);
        return WC_STOP_BROKEN;
    }
    if (strcmp(event, "error") == 0) {
        json_t *err = json_object_get(j, "error");
        const char *msg = json_string_value(json_object_get(err, "message"));
        const char *code = json_string_value(json_object_get(err, "code"));
        fprintf(stderr,
                "conclave watch: the server ended the watch: %s (%s); resume with "
                "--from-revision %" PRId64 "\n",
                msg ? msg : "?", code ? code : "?", wc_i64(j, "resume_revision"));
        if (w->cli->json) {
            char *s = json_dumps(j, JSON_COMPACT);
            if (s)
                printf("{\"event\":\"error\",\"id\":null,\"data\":%s}\n", s);
            free(s);
        }
        json_decref(j);
        return WC_STOP_ERROR;
    }
    int rv = 0;
    if (w->cli->json) {
        json_t *line = json_object();
        json_object_set_new(line, "event", json_string(event));
        json_object_set_new(line, "id", id ? json_integer(w->last_id) : json_null());
        json_object_set_new(line, "data", j); /* takes j */
        char *s = json_dumps(line, JSON_COMPACT);
        json_decref(line);
        if (s)
            puts(s);
        free(s);
    } else {
        rv = wc_render(w, event, j);
        json_decref(j);
    }
    fflush(stdout);
    if (strcmp(event, "put") == 0 || strcmp(event, "delete") == 0 ||
        strcmp(event, "snapshot") == 0) {
        w->n_changes++;
        if (rv == 0 && w->count_max > 0 && w->n_changes >= w->count_max)
            rv = WC_STOP_COUNT;
    }
    return rv;
}

/* ---- run --------------------------------------------------------------------------- */

int cli_watch_main(int argc, char **argv)
{
    struct client_cli cli;
    char err[CLIENT_ERRMSG_BYTES];
    if (client_cli_init(&cli, "conclave watch", &argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "conclave watch: %s\n\n%s", err, watch_usage_text);
        return CLIENT_EXIT_USAGE;
    }
    const char *key = NULL;
    bool prefix = false, flags_done = false;
    uint64_t from = 0, lease = 0, count = 0;
    bool has_from = false, has_lease = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!flags_done && strcmp(s, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (flags_done || s[0] != '-') {
            if (key) {
                fprintf(stderr, "conclave watch: unexpected argument '%s'\n\n%s", s,
                        watch_usage_text);
                return CLIENT_EXIT_USAGE;
            }
            key = s;
            continue;
        }
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(watch_usage_text, stdout);
            return CLIENT_EXIT_OK;
        }
        if (strcmp(s, "--prefix") == 0) {
            prefix = true;
            continue;
        }
        uint64_t *num = strcmp(s, "--from-revision") == 0 ? &from
                        : strcmp(s, "--lease") == 0       ? &lease
                        : strcmp(s, "--count") == 0       ? &count
                                                          : NULL;
        if (!num) {
            fprintf(stderr,
                    "conclave watch: unknown flag '%s' (a key that starts with '-' goes after "
                    "`--`)\n\n%s",
                    s, watch_usage_text);
            return CLIENT_EXIT_USAGE;
        }
        if (!client_parse_u64(i + 1 < argc ? argv[i + 1] : NULL, 0, INT64_MAX, num) || *num == 0) {
            fprintf(stderr, "conclave watch: %s wants a number >= 1\n", s);
            return CLIENT_EXIT_USAGE;
        }
        has_from |= num == &from;
        has_lease |= num == &lease;
        i++;
    }
    if (!key || (!key[0] && !prefix && !has_lease)) {
        fprintf(stderr, "conclave watch: %s\n\n%s",
                key ? "the key is empty (an empty prefix needs --prefix)" : "missing KEY",
                watch_usage_text);
        return CLIENT_EXIT_USAGE;
    }
    size_t key_len = strlen(key);
    if (key_len > KV_KEY_BYTES_MAX) {
        fprintf(stderr, "conclave watch: the key is %zu bytes; the limit is %u\n", key_len,
                (unsigned)KV_KEY_BYTES_MAX);
        return CLIENT_EXIT_FAIL;
    }
    char target[CLIENT_TARGET_BYTES_MAX];
    size_t t = 10;
    memcpy(target, "/v1/watch/", t);
    t += client_escape(key, key_len, true, target + t, sizeof(target) - t);
    char sep = '?';
    if (prefix) {
        t += (size_t)snprintf(target + t, sizeof(target) - t, "%cprefix=true", sep);
        sep = '&';
    }
    if (has_from) {
        t +=
            (size_t)snprintf(target + t, sizeof(target) - t, "%cfrom_revision=%" PRIu64, sep, from);
        sep = '&';
    }
    if (has_lease)
        t += (size_t)snprintf(target + t, sizeof(target) - t, "%clease=%" PRIu64, sep, lease);
    CC_ASSERT(t < sizeof(target)); /* _Static_assert above */

    struct wc w = {.cli = &cli, .count_max = count, .last_id = has_from ? (int64_t)from - 1 : -1};
    w.sse.event_cb = wc_event;
    w.sse.arg = &w;
    struct client_request req = {.method = "GET", .target = target};
    struct client_opts opts = {.timeout_ms = cli.timeout_ms};
    struct client_response resp;
    const char *ep = cli.endpoint;
    int rv = 0;
    for (uint32_t i = 0; i < cli.n_endpoints; i++) { /* next node only while none answered */
        ep = cli.endpoints[i];
        rv = client_stream(ep, &opts, &req, &resp, wc_body, &w, err, sizeof(err));
        if (rv >= 0 || !client_error_is_unreachable(rv) || i + 1 == cli.n_endpoints)
            break;
        fprintf(stderr, "conclave watch: cannot reach %s (%s); trying %s\n", ep, err,
                cli.endpoints[i + 1]);
    }
    sse_free(&w.sse); /* an event cut off by the end of the stream is dropped */
    char resume[64] = "";
    if (w.last_id >= 0)
        snprintf(resume, sizeof(resume), "; resume with --from-revision %" PRId64, w.last_id + 1);
    if (rv == WC_STOP_COUNT)
        return CLIENT_EXIT_OK;
    if (rv > 0)
        return CLIENT_EXIT_FAIL; /* printed by the parser */
    if (rv < 0 && client_error_is_unreachable(rv)) {
        fprintf(stderr, "conclave watch: cannot reach Conclave at %s: %s\n", ep, err);
        return CLIENT_EXIT_UNREACHABLE;
    }
    if (rv < 0) {
        fprintf(stderr, "conclave watch: %s: %s%s\n", ep, err, resume);
        return CLIENT_EXIT_FAIL;
    }
    if (resp.status / 100 != 2) {
        char line[CLIENT_ERRMSG_BYTES];
        client_error_line(&resp, line, sizeof(line));
        client_response_free(&resp);
        fprintf(stderr, "conclave watch: %s\n", line);
        return CLIENT_EXIT_FAIL;
    }
    fprintf(stderr, "conclave watch: the server ended the stream%s\n", resume);
    return CLIENT_EXIT_FAIL;
}
