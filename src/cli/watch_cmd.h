/* watch_cmd.h -- `conclave watch KEY [--prefix] [--from-revision N] [--lease ID]
 * [--count N]`: follows GET /v1/watch/KEY (docs/cli.md, docs/API.md "Watch") and prints
 * one line per change. argv[0] is "watch". Returns the process exit code: 0 when
 * --count events arrived, 1 when the server cut or ended the watch (the message names
 * the revision to resume from) or refused it, 2 usage, 3 could not reach the endpoint. */
#ifndef CC_CLI_WATCH_CMD_H
#define CC_CLI_WATCH_CMD_H

int cli_watch_main(int argc, char **argv);

#endif /* CC_CLI_WATCH_CMD_H */
