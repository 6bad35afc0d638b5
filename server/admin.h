/* admin.h — `aurora-server admin …`: operator commands on the store. */
#ifndef AURORA_ADMIN_H
#define AURORA_ADMIN_H

#include <stdio.h>

#include "server_config.h"

/* argv[0] is the command (argv of `aurora-server admin <command> …` from
 * <command> on).  cfg NULL: the settings are loaded once the command line
 * parsed (so --help and usage errors touch nothing).  Returns the exit
 * status (cli.h): 0 done, 1 failed, 2 usage. */
int admin_main(const server_config *cfg, int argc, char **argv);
void admin_usage(FILE *f);

#endif
