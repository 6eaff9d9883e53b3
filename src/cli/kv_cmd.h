/* kv_cmd.h -- `conclave kv put|get|del|txn|compact` against a running node's HTTP API
 * (docs/cli.md). argv[0] is "kv". Returns the process exit code: 0 done, 1 the server
 * refused or the exchange failed, 2 usage, 3 could not reach the endpoint (client.h). */
#ifndef CC_CLI_KV_CMD_H
#define CC_CLI_KV_CMD_H

int cli_kv_main(int argc, char **argv);

#endif /* CC_CLI_KV_CMD_H */
