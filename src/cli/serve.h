/* serve.h -- `conclave serve` (see serve.c). */
#ifndef CC_CLI_SERVE_H
#define CC_CLI_SERVE_H

int cli_serve_main(int argc, char **argv);

#endif
