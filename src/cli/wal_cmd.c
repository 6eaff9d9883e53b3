/* wal_cmd.c -- the `conclave wal` subcommand: check and repair a data directory.
 *
 *   conclave wal check  --data-dir D   read-only report: segments, records, index range,
 *                                      hard state, snapshots, torn tail, corruption
 *   conclave wal repair --data-dir D   cut a torn tail (exactly what the next start would
 *                                      do); refuse anything else
 *
 * Rules: check never writes. repair only ever removes bytes after the last valid record
 * of the last segment (a write that was never acknowledged); when anything valid follows
 * a bad record it changes nothing, explains the options and exits 1, because cutting
 * there could drop acknowledged, committed entries. Results go to stdout, errors to
 * stderr; exit codes are in wal_cmd.h.
 *
 * Sections: usage | arguments | printing | check | repair | dispatch.
 */
#include "cli/wal_cmd.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/env.h"
#include "storage/snap.h"
#include "storage/wal.h"

#define CLI_WAL_EXIT_OK      0
#define CLI_WAL_EXIT_CORRUPT 1
#define CLI_WAL_EXIT_USAGE   2
#define CLI_WAL_SNAPS_SHOWN  64 /* snapshots listed and verified by check */

/* ---- usage ------------------------------------------------------------------------ */

static const char cli_wal_usage_text[] =
    "usage: conclave wal check  --data-dir DIR\n"
    "       conclave wal repair --data-dir DIR\n"
    "\n"
    "check   report the WAL segments, log range, hard state and snapshots in DIR, and any\n"
    "        corruption with its file, byte offset and record number. Changes nothing.\n"
    "        Exit 0 healthy, 1 corrupt, 2 usage or read error.\n"
    "repair  cut a torn tail (a write that was never acknowledged) exactly as the next\n"
    "        start would. Refuses, changing nothing, when a bad record has valid records\n"
    "        after it: those may be acknowledged. Exit 0 done, 1 refused, 2 error.\n"
    "\n"
    "See docs/storage.md.\n";

static const char cli_wal_corrupt_advice[] =
    "\n"
    "A bad record with valid records after it is not a torn write: the records after it\n"
    "may have been acknowledged to clients, so nothing is cut automatically. Options:\n"
    "  1. Copy the directory aside as evidence before doing anything else.\n"
    "  2. Rebuild this node from its peers: stop it, move the data directory away,\n"
    "     start it with an empty directory and add it back to the cluster; the leader\n"
    "     sends it a snapshot and the log. The cluster keeps every committed entry as\n"
    "     long as a majority of nodes is healthy.\n"
    "  3. If this node holds the only copy of the data, do not delete or edit segment\n"
    "     files by hand; keep the directory and restore from a backup.\n";

/* ---- arguments -------------------------------------------------------------------- */

/* Finds --data-dir D or --data-dir=D in argv[2..]; NULL when missing or malformed. */
static const char *cli_wal_data_dir(int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strncmp(argv[i], "--data-dir=", 11) == 0) {
            dir = argv[i] + 11;
        } else {
            fprintf(stderr, "conclave wal: unexpected argument '%s'\n", argv[i]);
            return NULL;
        }
    }
    if (dir == NULL || dir[0] == '\0') {
        fputs("conclave wal: --data-dir DIR is required\n", stderr);
        return NULL;
    }
    return dir;
}

/* ---- printing --------------------------------------------------------------------- */

static void cli_wal_print_segments(const struct wal_report *rep)
{
    printf("segments: %" PRIu32 "\n", rep->n_segments);
    if (rep->n_segments == 0) {
        return;
    }
    printf("  %-26s %12s %9s %9s %23s %21s\n", "file", "first index", "records", "entries",
           "entry indexes", "bytes used / file");
    for (uint32_t k = 0; k < rep->n_segments; k++) {
        const struct wal_segment_info *s = &rep->segments[k];
        if (rep->has_bad && k > rep->bad_segment) {
            printf("  %-26s (not scanned: it follows the corruption)\n", s->name);
            continue;
        }
        char range[48] = "-";
        if (s->n_entries > 0) {
            snprintf(range, sizeof(range), "%" PRIu64 "..%" PRIu64, s->min_entry_index,
                     s->max_entry_index);
        }
        char first[24] = "?";
        if (s->header_ok) {
            snprintf(first, sizeof(first), "%" PRIu64, s->first_index);
        }
        printf("  %-26s %12s %9" PRIu64 " %9" PRIu64 " %23s %10" PRIu64 " / %" PRIu64 "\n", s->name,
               first, s->n_records, s->n_entries, range, s->used_bytes, s->file_bytes);
    }
}

static void cli_wal_print_log(const struct wal_report *rep)
{
    const struct wal_recovered *log = &rep->log;
    if (log->n_entries > 0) {
        printf("log: entries %" PRIu64 "..%" PRIu64 " (%" PRIu64 "), last term %" PRIu64 "\n",
               log->first_index, log->last_index, log->n_entries, log->last_term);
    } else {
        printf("log: no entries (next index %" PRIu64 ")\n", log->last_index + 1);
    }
    if (log->has_hard_state) {
        printf("hard state: term %" PRIu64 ", vote %" PRIu32 ", commit %" PRIu64 "\n",
               log->hard_state.term, log->hard_state.vote, log->hard_state.commit);
    } else {
        printf("hard state: none\n");
    }
    if (log->snapshot_index != 0) {
        printf("snapshot marker: index %" PRIu64 ", term %" PRIu64 "\n", log->snapshot_index,
               log->snapshot_term);
    }
}

/* Lists and verifies the snapshots. Returns the number of corrupt ones; the newest valid
 * index goes to *newest (0 if none). */
static uint32_t cli_wal_print_snapshots(struct env *env, const char *dir, uint64_t *newest)
{
    struct snap_info list[CLI_WAL_SNAPS_SHOWN];
    uint32_t n = 0;
    *newest = 0;
    int rv = snap_list(env, dir, list, CLI_WAL_SNAPS_SHOWN, &n);
    if (rv == SNAP_ETOOMANY) {
        printf("snapshots: more than %d; only the newest are checked\n", CLI_WAL_SNAPS_SHOWN);
        n = CLI_WAL_SNAPS_SHOWN;
    } else if (rv != 0) {
        printf("snapshots: cannot list: %s\n", snap_strerror(rv));
        return 0;
    }
    printf("snapshots: %" PRIu32 "\n", n);
    uint32_t n_bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct raft_snapshot s;
        char why[SNAP_MSG_BYTES];
        rv = snap_load(env, dir, list[i].name, &s, why, sizeof(why));
        if (rv == 0) {
            printf("  %s  index %" PRIu64 ", term %" PRIu64 ", %" PRIu64 " bytes, %" PRIu32
                   " servers: ok\n",
                   list[i].name, s.index, s.term, s.n_bytes, s.config.n_servers);
            if (*newest == 0) {
                *newest = s.index;
            }
            snap_free(&s);
        } else {
            printf("  %s  CORRUPT (%s)\n", list[i].name, why);
            n_bad++;
        }
    }
    return n_bad;
}

/* ---- check ------------------------------------------------------------------------ */

static int cli_wal_check(const char *dir)
{
    struct env *env = env_posix();
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    int rv = wal_inspect(env, dir, &rep, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "conclave wal check: %s\n", msg[0] ? msg : wal_strerror(rv));
        return CLI_WAL_EXIT_USAGE;
    }
    printf("data dir: %s\n", dir);
    cli_wal_print_segments(&rep);
    if (rep.status == 0) {
        cli_wal_print_log(&rep);
    }
    uint64_t newest = 0;
    const uint32_t n_bad_snaps = cli_wal_print_snapshots(env, dir, &newest);
    if (rep.torn_tail) {
        printf("torn tail: %" PRIu64 " byte(s) at offset %" PRIu64 " of %s were never "
               "acknowledged; the next start (or `conclave wal repair`) removes them\n",
               rep.torn_bytes, rep.torn_offset, rep.segments[rep.torn_segment].name);
    }
    int exit_code = CLI_WAL_EXIT_OK;
    if (rep.status != 0) {
        printf("status: CORRUPT: %s\n", msg);
        fputs(cli_wal_corrupt_advice, stdout);
        exit_code = CLI_WAL_EXIT_CORRUPT;
    } else if (rep.n_segments > 0 && rep.log.first_index > newest + 1) {
        printf("status: CORRUPT: the log starts at index %" PRIu64 " but the newest valid "
               "snapshot covers only up to %" PRIu64 ": entries in between are missing\n",
               rep.log.first_index, newest);
        fputs(cli_wal_corrupt_advice, stdout);
        exit_code = CLI_WAL_EXIT_CORRUPT;
    } else if (n_bad_snaps > 0) {
        printf("status: CORRUPT: %" PRIu32 " snapshot file(s) fail their checks; a start "
               "falls back to an older valid snapshot\n",
               n_bad_snaps);
        exit_code = CLI_WAL_EXIT_CORRUPT;
    } else {
        printf("status: healthy\n");
    }
    wal_report_free(&rep);
    return exit_code;
}

/* ---- repair ----------------------------------------------------------------------- */

static int cli_wal_repair(const char *dir)
{
    struct env *env = env_posix();
    struct wal_report rep;
    char msg[WAL_MSG_BYTES];
    int rv = wal_inspect(env, dir, &rep, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "conclave wal repair: %s\n", msg[0] ? msg : wal_strerror(rv));
        return CLI_WAL_EXIT_USAGE;
    }
    if (rep.status != 0) {
        printf("conclave wal repair: refusing to change anything.\n  %s\n", msg);
        fputs(cli_wal_corrupt_advice, stdout);
        wal_report_free(&rep);
        return CLI_WAL_EXIT_CORRUPT;
    }
    if (!rep.torn_tail) {
        printf("nothing to repair: %s holds no torn tail and no corruption\n", dir);
        wal_report_free(&rep);
        return CLI_WAL_EXIT_OK;
    }
    /* Preallocate like the segments already there, so the files keep their shape. */
    struct wal_options o;
    wal_options_default(&o);
    o.create = false;
    uint64_t biggest = WAL_SEGMENT_BYTES_MIN;
    for (uint32_t k = 0; k < rep.n_segments; k++) {
        if (rep.segments[k].file_bytes > biggest) {
            biggest = rep.segments[k].file_bytes;
        }
    }
    o.segment_bytes = biggest < WAL_SEGMENT_BYTES_MAX ? biggest : WAL_SEGMENT_BYTES_MAX;
    wal_report_free(&rep);
    struct wal *w = NULL;
    struct wal_recovered rec;
    rv = wal_open(env, dir, &o, &w, &rec, msg, sizeof(msg));
    if (rv != 0) {
        fprintf(stderr, "conclave wal repair: %s: %s\n", wal_strerror(rv), msg);
        return rv == WAL_ECORRUPT ? CLI_WAL_EXIT_CORRUPT : CLI_WAL_EXIT_USAGE;
    }
    printf("repaired: %s\n", msg);
    printf("log: entries %" PRIu64 "..%" PRIu64 ", all acknowledged data kept\n", rec.first_index,
           rec.last_index);
    wal_recovered_free(&rec);
    wal_close(w);
    return CLI_WAL_EXIT_OK;
}

/* ---- dispatch --------------------------------------------------------------------- */

int cli_wal_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        fputs(cli_wal_usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_WAL_EXIT_USAGE : CLI_WAL_EXIT_OK;
    }
    const bool check = strcmp(argv[1], "check") == 0;
    if (!check && strcmp(argv[1], "repair") != 0) {
        fprintf(stderr, "conclave wal: unknown command '%s'\n\n%s", argv[1], cli_wal_usage_text);
        return CLI_WAL_EXIT_USAGE;
    }
    const char *dir = cli_wal_data_dir(argc, argv);
    if (dir == NULL) {
        fputs(cli_wal_usage_text, stderr);
        return CLI_WAL_EXIT_USAGE;
    }
    return check ? cli_wal_check(dir) : cli_wal_repair(dir);
}
