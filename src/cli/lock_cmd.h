/* lock_cmd.h -- `conclave lock`, `conclave lease` and `conclave elect` (docs/cli.md),
 * built on the C client library (include/conclave/client.h). argv[0] is the command's
 * own name. Each returns the process exit code:
 *
 *   all three      0 done, 1 refused or failed, 2 usage, 3 could not reach any endpoint
 *   lock           CMD's own exit status once it ran (128+N if a signal N ended it),
 *                  126 CMD could not be started, 127 CMD not found,
 *                  LOCK_EXIT_NOT_ACQUIRED when the lock was busy (--wait 0) or --wait ran
 *                  out, LOCK_EXIT_LOST when the lock was lost while CMD ran (CMD was
 *                  terminated)
 *   elect          LOCK_EXIT_LOST when leadership was lost
 */
#ifndef CC_CLI_LOCK_CMD_H
#define CC_CLI_LOCK_CMD_H

#define LOCK_EXIT_NOT_ACQUIRED 75 /* EX_TEMPFAIL: held by someone else; try again later */
#define LOCK_EXIT_LOST         76 /* the lock (or leadership) could no longer be trusted */

int cli_lock_main(int argc, char **argv);
int cli_lease_main(int argc, char **argv);
int cli_elect_main(int argc, char **argv);

#endif /* CC_CLI_LOCK_CMD_H */
