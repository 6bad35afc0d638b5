/* server_config.h — the server's settings (environment > YAML > defaults). */
#ifndef AURORA_SERVER_CONFIG_H
#define AURORA_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

typedef struct {
    config_t raw;
    const char *env;          /* AURORA_ENV: development | production */
    const char *data_dir;
    const char *bind;
    int port;
    int ops_port; /* /health, /ready, /metrics on their own listener; 0: on port */
    int listen_share;  /* port bound with SO_REUSEPORT by several processes (listen_share.h) */
    int internal_port; /* this process's own listener for forwarded commands; 0: none */
    const char *database_url; /* resolved: default sqlite file in data_dir */
    const char *tls_cert;
    const char *tls_key;
    int tls_selfsigned;       /* neither AURORA_TLS_CERT nor AURORA_TLS_KEY set (env or file):
                                 the default pair in the data directory, made when missing */
    int plain_http;           /* serve without TLS (behind a TLS-terminating proxy) */
    int tls_terminated_by_proxy;
    const char *internal_secret;
    const char *frontend_url;
    int workers;
    int outbound_workers;
    int outbound_per_org; /* AURORA_OUTBOUND_PER_ORG: 0 automatic (worker.h) */
    int64_t max_body;
    int64_t legacy_max_frame;
    int64_t assembly_budget; /* big agent messages assembled at once (tunnel.c) */
    int default_timeout;
    int max_timeout;
    int64_t default_max_output;
    int64_t max_output_json;
    int64_t max_output_stream;
    int64_t stream_window;
    int64_t output_budget;         /* buffered JSON-mode output, all commands (exec_limits.h) */
    int64_t org_output_budget; /* the same per organization */
    int max_per_cluster;           /* commands running or queued per cluster */
    int deadline_grace_s;          /* past a command's timeout, wait this for the agent */
    int shutdown_drain_s;          /* at SIGTERM, running commands may end within this */
    int instance_lease;            /* seconds (instance.h) */
    int token_rate_limit;     /* agent tokens per user per hour */
    int token_rate_limit_minute; /* agent tokens per user per minute */
    int stale_after;          /* seconds without heartbeat before "stale" */
    int agent_idle_timeout;   /* drop an agent silent for this long */
    const char *log_level;
    const char *log_format;
    /* secrets backend (secrets.h; mapped by secrets_config_from_server) */
    const char *secrets_backend;      /* SECRETS_BACKEND: local | vault | aws_secrets_manager */
    const char *master_key;           /* AURORA_MASTER_KEY (secret) */
    const char *master_key_file;      /* AURORA_MASTER_KEY_FILE; NULL: <data_dir>/master.key */
    const char *vault_addr;
    const char *vault_token;          /* secret */
    const char *vault_auth_method;    /* token | kubernetes */
    const char *vault_k8s_role;
    const char *vault_k8s_jwt_path;
    const char *vault_kv_mount;
    const char *vault_prefix;
    const char *vault_cacert;
    const char *aws_sm_region;
    const char *aws_sm_endpoint;
    const char *aws_access_key_id;     /* secret */
    const char *aws_secret_access_key; /* secret */
    const char *aws_session_token;     /* secret */
    const char *aws_role_arn;                /* AWS_ROLE_ARN (web identity, EKS IRSA) */
    const char *aws_web_identity_token_file; /* AWS_WEB_IDENTITY_TOKEN_FILE */
    const char *aws_role_session_name;       /* AWS_ROLE_SESSION_NAME */
    const char *aws_sm_sts_endpoint;         /* AWS_SM_STS_ENDPOINT */
    char db_url_buf[1024];
    char cert_buf[1024];
    char key_buf[1024];
} server_config;

#define DEV_INTERNAL_SECRET "dev-internal-secret-change-me"

/* Loads and validates.  Returns 0, or -1 with a message in err. */
int server_config_load(server_config *c, char *err, size_t errlen);
/* The production startup check: -1 with err when AURORA_ENV=production and the
 * internal secret is missing/default/short, or TLS is off without
 * AURORA_TLS_TERMINATED_BY_PROXY=true. */
int server_config_check_production(const server_config *c, char *err, size_t errlen);
void server_config_free(server_config *c);
/* Any setting of the table by its environment name (connectors read their
 * own settings this way): NULL when unset or empty. */
const char *server_setting(const server_config *c, const char *env);
int64_t server_setting_int(const server_config *c, const char *env);
void server_config_help(FILE *f);

#endif
