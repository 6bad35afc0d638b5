/* server.h — the lws context serving HTTPS and WSS on one port. */
#ifndef AURORA_SERVER_H
#define AURORA_SERVER_H

#include "server_config.h"

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int server_run(server_config *cfg);

#endif
