/* wal_cmd.h -- `conclave wal check|repair --data-dir D`: inspect a node's WAL and
 * snapshots, and cut a torn tail the way recovery would (docs/storage.md, "Repair").
 */
#ifndef CC_CLI_WAL_CMD_H
#define CC_CLI_WAL_CMD_H

/* Exit codes: 0 healthy / repaired, 1 corruption found (nothing changed), 2 usage or IO
 * error. argv[0] is "wal". */
int cli_wal_main(int argc, char **argv);

#endif /* CC_CLI_WAL_CMD_H */
