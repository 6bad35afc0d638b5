/* rca_cli.h — `aurora-server rca …`: operators watch (or drain) the RCA
 * outbox from a shell, on the same store the server uses. */
#ifndef AURORA_RCA_CLI_H
#define AURORA_RCA_CLI_H

#include <stdio.h>

#include "server_config.h"

/* argv[0] is the command; cfg NULL: loaded once the command line parsed.
 * Returns the exit status (cli.h). */
int rca_cli_main(const server_config *cfg, int argc, char **argv);
void rca_cli_usage(FILE *f);

#endif
