/* secrets_config.c — server_config -> secrets_config. */
#include "secrets_config.h"

#include <string.h>

void secrets_config_from_server(const server_config *c, secrets_config *out)
{
    memset(out, 0, sizeof(*out));
    out->backend = c->secrets_backend;
    out->data_dir = c->data_dir;
    out->master_key = c->master_key;
    out->master_key_file = c->master_key_file;
    out->vault_addr = c->vault_addr;
    out->vault_token = c->vault_token;
    out->vault_auth_method = c->vault_auth_method;
    out->vault_k8s_role = c->vault_k8s_role;
    out->vault_k8s_jwt_path = c->vault_k8s_jwt_path;
    out->vault_kv_mount = c->vault_kv_mount;
    out->vault_prefix = c->vault_prefix;
    out->vault_cacert = c->vault_cacert;
    out->aws_region = c->aws_sm_region;
    out->aws_endpoint = c->aws_sm_endpoint;
    out->aws_access_key_id = c->aws_access_key_id;
    out->aws_secret_access_key = c->aws_secret_access_key;
    out->aws_session_token = c->aws_session_token;
    out->aws_role_arn = c->aws_role_arn;
    out->aws_web_identity_token_file = c->aws_web_identity_token_file;
    out->aws_role_session_name = c->aws_role_session_name;
    out->aws_sts_endpoint = c->aws_sm_sts_endpoint;
    int64_t ms = server_setting_int(c, "AURORA_SECRETS_TIMEOUT_MS");
    out->timeout_ms = ms > 0 ? (long)ms : SECRETS_DEFAULT_TIMEOUT_MS;
    /* The server lists one connection's folder at a time, on a worker the
     * other routes share: a bound sized for that (the CLI's whole-store
     * listings take the default, secrets_cli.c). */
    out->list_max_paths = SECRETS_LIST_MAX_PATHS_SERVER;
}
