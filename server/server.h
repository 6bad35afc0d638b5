/* server.h — the lws context serving HTTPS and WSS on one port. */
#ifndef AURORA_SERVER_H
#define AURORA_SERVER_H

#ifndef AURORA_VERSION
#define AURORA_VERSION "0.1.0"
#endif

#include "server_config.h"

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int server_run(server_config *cfg);

#endif
