/* id_cmd.h -- `conclave id ...`: the distributed ID service of a running node over its
 * HTTP API (docs/id.md, "HTTP API and CLI"). argv[0] is "id". Returns the process exit
 * code: 0 done, 1 the server refused or the exchange failed, 2 usage, 3 could not reach
 * the endpoint (client.h). */
#ifndef CC_CLI_ID_CMD_H
#define CC_CLI_ID_CMD_H

int cli_id_main(int argc, char **argv);

#endif /* CC_CLI_ID_CMD_H */
