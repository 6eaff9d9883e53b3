/* main.c -- the `conclave` command: find the subcommand, run it, return its exit code.
 *
 * Layout: exit codes | usage | subcommands (version, help, serve) | dispatch table | main.
 * Each subcommand is `static int cli_cmd_<name>(int argc, char **argv)`, where argv[0]
 * is the subcommand's own name, and returns the process exit code. Results go to
 * stdout; errors and diagnostics go to stderr, so scripts can pipe the one safely.
 *
 * This file only dispatches. As the CLI grows (kv, lock, id, svc, cfg, txn, cluster,
 * log, gateway) each area moves to src/cli/<area>.c and gets
 * a row in the table below.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cluster_cmd.h"
#include "cli/id_cmd.h"
#include "cli/kv_cmd.h"
#include "cli/lock_cmd.h"
#include "cli/serve.h"
#include "cli/wal_cmd.h"
#include "cli/watch_cmd.h"

#ifndef CONCLAVE_VERSION
#define CONCLAVE_VERSION "0.1.0-dev"
#endif

/* ---- exit codes ------------------------------------------------------------------- */

#define CLI_EXIT_OK          0
#define CLI_EXIT_USAGE       2 /* bad command line */

/* ---- usage ------------------------------------------------------------------------ */

static const char cli_usage_text[] =
    "usage: conclave <command> [args]\n"
    "\n"
    "commands:\n"
    "  serve     run a Conclave node (serve --help for flags)\n"
    "  wal       check or repair a data directory: wal check|repair --data-dir DIR\n"
    "  kv        put, get, del, txn, compact against a running node (kv --help)\n"
    "  cluster   status, members, leadership transfer (cluster --help)\n"
    "  version   print the version\n"
    "  help      print this help\n"
    "\n"
    "The Raft core is also exercised by the simulator: build/conclave-sim --help\n";

/* ---- subcommands ------------------------------------------------------------------ */

static int cli_cmd_version(int argc, char **argv)
{
    printf("conclave %s\n", CONCLAVE_VERSION);
    return CLI_EXIT_OK;
}

static int cli_cmd_help(int argc, char **argv)
{
    fputs(cli_usage_text, stdout);
    return CLI_EXIT_OK;
}

/* ---- dispatch table --------------------------------------------------------------- */

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct cli_command cli_commands[] = {
    {"serve", cli_serve_main}, {"version", cli_cmd_version}, {"--version", cli_cmd_version},
    {"help", cli_cmd_help},   {"-h", cli_cmd_help},         {"--help", cli_cmd_help},
    {"wal", cli_wal_main},
    {"kv", cli_kv_main},
    {"cluster", cli_cluster_main},
    {"lock", cli_lock_main}, {"lease", cli_lease_main}, {"elect", cli_elect_main},
    {"id", cli_id_main},
    {"watch", cli_watch_main},
};

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(cli_usage_text, stderr);
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(cli_commands) / sizeof(cli_commands[0]); i++) {
        if (strcmp(argv[1], cli_commands[i].name) == 0) {
            return cli_commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "conclave: unknown command '%s'\n\n%s", argv[1], cli_usage_text);
    return CLI_EXIT_USAGE;
}
