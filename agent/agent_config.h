/* agent_config.h — aurora-agent settings: environment over the optional YAML
 * file named by AURORA_AGENT_CONFIG over built-in defaults (common/config.h),
 * validated and parsed into typed fields. */
#ifndef AURORA_AGENT_CONFIG_H
#define AURORA_AGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cloud.h"
#include "policy.h"
#include "sandbox.h"
#include "token.h"

#define AGENT_DEFAULT_VERSION "aurora-agent-c/0.1.0"

typedef struct {
    /* server URL, split */
    char *url;
    int secure;            /* wss:// */
    char host[256];
    int port;
    char path[1024];       /* path + query, starts with '/' */

    char *token;           /* secret: never log */
    char cluster_id[CLUSTER_ID_LEN + 1];
    char *version;

    char *ca_file;         /* NULL = system store */
    int tls_skip_verify;
    int allow_insecure_ws;

    char *kubectl_path;
    int max_concurrent;
    int command_timeout_max; /* seconds */
    int64_t max_output;      /* bytes */

    int heartbeat_interval;  /* seconds */
    int reconnect_interval;  /* seconds: first reconnect delay (doubles up to reconnect_max) */
    int reconnect_max;       /* seconds */

    agent_policy policy;     /* what the server may run (policy.h) */
    agent_cloud cloud;       /* cloud_exec: enabled, programs (cloud.h) */
    sandbox_config sandbox;  /* cloud_exec sandbox (sandbox.h); strings below */
    char *sandbox_dir, *sandbox_path, *sandbox_uid_range, *sandbox_passthrough;
    char *sandbox_landlock, *sandbox_readonly, *sandbox_deny, *sandbox_ports;
    char *config_file;       /* AURORA_AGENT_CONFIG: never reachable by cloud commands */

    int health_port;         /* 0 = disabled */
    int metrics_port;        /* /metrics: == health_port → same listener; 0 = disabled */
    char *health_bind;
    int shutdown_grace;      /* seconds */

    char *log_level;
    char *log_format;
} agent_config;

/* Loads (AURORA_AGENT_CONFIG names the YAML file, if set) and validates.
 * 0, or -1 with a message in err (never containing the token). */
int agent_config_load(agent_config *ac, char *err, size_t errlen);
void agent_config_free(agent_config *ac);
/* Prints every setting with its default and help text. */
void agent_config_help(FILE *f);

#endif
