/* cluster_cmd.h -- `conclave cluster status|members|transfer` against a running node's
 * HTTP API (docs/cli.md). argv[0] is "cluster". Returns the process exit code: 0 done,
 * 1 the server refused or the exchange failed, 2 usage, 3 could not reach the endpoint
 * (client.h). */
#ifndef CC_CLI_CLUSTER_CMD_H
#define CC_CLI_CLUSTER_CMD_H

int cli_cluster_main(int argc, char **argv);

#endif /* CC_CLI_CLUSTER_CMD_H */
