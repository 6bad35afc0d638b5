/* secrets_config.h — the server's settings (server_config) as the secrets
 * layer's configuration (secrets.h), so secrets.c stays free of the
 * server's config table. */
#ifndef AURORA_SECRETS_CONFIG_H
#define AURORA_SECRETS_CONFIG_H

#include "secrets.h"
#include "server_config.h"

/* Fills *out from c; the strings stay owned by c. */
void secrets_config_from_server(const server_config *c, secrets_config *out);

#endif
