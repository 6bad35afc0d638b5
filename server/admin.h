/* admin.h — `aurora-server admin …`: operator subcommands on the store. */
#ifndef AURORA_ADMIN_H
#define AURORA_ADMIN_H

#include "server_config.h"

int admin_main(const server_config *cfg, int argc, char **argv);
void admin_usage(FILE *f);

#endif
