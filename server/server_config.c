/* server_config.c — settings table, resolution and the production check. */
#include "server_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const config_def server_defs[] = {
    { "AURORA_ENV", "env", CFG_STRING, "development", "development | production (enables the startup check)", 0 },
    { "AURORA_DATA_DIR", "server.data_dir", CFG_STRING, "./data", "directory for the SQLite file, TLS material and keys", 0 },
    { "AURORA_BIND", "server.bind", CFG_STRING, "0.0.0.0", "listen address", 0 },
    { "AURORA_PORT", "server.port", CFG_INT, "5080", "HTTPS + WSS port (API, connectors, /kubectl-agent)", 0 },
    { "DATABASE_URL", "database.url", CFG_STRING, NULL, "state store; default sqlite://<data_dir>/aurora.db", 1 },
    { "AURORA_DB_STATEMENT_TIMEOUT_MS", "database.statement_timeout_ms", CFG_INT, "5000", "longest a state-store statement may take, lock waits included (ms); past it the call fails and the API answers 503 STORE_UNAVAILABLE", 0 },
    { "AURORA_DB_CONNECT_TIMEOUT_MS", "database.connect_timeout_ms", CFG_INT, "5000", "longest a (re)connection to PostgreSQL may take, authentication included (ms)", 0 },
    { "AURORA_TLS_CERT", "tls.cert", CFG_STRING, NULL, "PEM certificate; default: self-signed, created on first run", 0 },
    { "AURORA_TLS_KEY", "tls.key", CFG_STRING, NULL, "PEM private key for AURORA_TLS_CERT", 0 },
    { "AURORA_PLAIN_HTTP", "tls.plain_http", CFG_BOOL, "false", "serve plain HTTP/WS (only behind a TLS-terminating ingress)", 0 },
    { "AURORA_TLS_TERMINATED_BY_PROXY", "tls.terminated_by_proxy", CFG_BOOL, "false", "states that a proxy terminates TLS (required for plain HTTP in production)", 0 },
    { "INTERNAL_API_SECRET", "internal_api_secret", CFG_STRING, DEV_INTERNAL_SECRET, "shared secret of the trusted backend (X-Internal-Secret)", 1 },
    { "FRONTEND_URL", "frontend_url", CFG_STRING, "http://localhost:3000", "user-facing Aurora URL", 0 },
    { "AURORA_WORKERS", "server.workers", CFG_INT, "4", "worker threads for state-store work", 0 },
    { "AURORA_OUTBOUND_WORKERS", "server.outbound_workers", CFG_INT, "8", "worker threads for calls to providers (OAuth, token exchange)", 0 },
    { "AURORA_MAX_BODY", "server.max_body", CFG_INT, "1048576", "largest accepted HTTP request body (bytes)", 0 },
    { "AURORA_LEGACY_MAX_FRAME", "tunnel.legacy_max_frame", CFG_INT, "33554432", "largest frame from a legacy agent (bytes)", 0 },
    { "AURORA_EXEC_DEFAULT_TIMEOUT", "exec.default_timeout", CFG_INT, "60", "command timeout when the caller gives none (s)", 0 },
    { "AURORA_EXEC_MAX_TIMEOUT", "exec.max_timeout", CFG_INT, "3600", "largest timeout a caller may ask (s)", 0 },
    { "AURORA_EXEC_DEFAULT_MAX_OUTPUT", "exec.default_max_output", CFG_INT, "10485760", "output cap when the caller gives none (bytes)", 0 },
    { "AURORA_EXEC_MAX_OUTPUT_JSON", "exec.max_output_json", CFG_INT, "67108864", "largest output cap for a buffered JSON result (bytes)", 0 },
    { "AURORA_EXEC_MAX_OUTPUT_STREAM", "exec.max_output_stream", CFG_INT, "1073741824", "largest output cap for a streamed (SSE) result (bytes)", 0 },
    { "AURORA_EXEC_OUTPUT_BUDGET", "exec.output_budget", CFG_INT, "268435456", "memory for buffered JSON-mode results of all commands at once (bytes); a command whose output does not fit is cancelled with 503 SERVER_OUTPUT_BUDGET_EXCEEDED (streamed output is not counted)", 0 },
    { "AURORA_EXEC_ORG_OUTPUT_BUDGET", "exec.org_output_budget", CFG_INT, "67108864", "the same budget per organization; over it: 429 ORG_OUTPUT_BUDGET_EXCEEDED", 0 },
    { "AURORA_EXEC_MAX_PER_CLUSTER", "exec.max_per_cluster", CFG_INT, "128", "commands running or queued per cluster; more get 429 CLUSTER_BUSY", 0 },
    { "AURORA_INSTANCE_LEASE", "server.instance_lease", CFG_INT, "60", "seconds after which a replica that stopped renewing its lease is taken for dead and its running commands are audited as interrupted", 0 },
    { "AURORA_STREAM_WINDOW", "tunnel.window", CFG_INT, "262144", "per-command flow-control window (bytes)", 0 },
    { "AURORA_TOKEN_RATE_LIMIT", "tokens.rate_limit_per_hour", CFG_INT, "20", "agent tokens a user may create per hour", 0 },
    { "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE", "tokens.rate_limit_per_minute", CFG_INT, "5", "agent tokens a user may create per minute", 0 },
    { "AURORA_STALE_AFTER", "tunnel.stale_after", CFG_INT, "180", "seconds without heartbeat before a connection is 'stale'", 0 },
    { "AURORA_AGENT_IDLE_TIMEOUT", "tunnel.idle_timeout", CFG_INT, "200", "drop an agent that sent nothing for this long (s)", 0 },
    { "AURORA_LOG_LEVEL", "log.level", CFG_STRING, "info", "debug | info | warn | error", 0 },
    { "AURORA_LOG_FORMAT", "log.format", CFG_STRING, "text", "text | json", 0 },
    { "SECRETS_BACKEND", "secrets.backend", CFG_STRING, "local", "where connector credentials live: local | vault | aws_secrets_manager", 0 },
    { "AURORA_MASTER_KEY", NULL, CFG_STRING, NULL, "local backend: AES-256 master key (64 hex chars or base64); else the key file", 1 },
    { "AURORA_MASTER_KEY_FILE", "secrets.master_key_file", CFG_STRING, NULL, "local backend: master key file, created 0600 on first run; default <data_dir>/master.key", 0 },
    { "VAULT_ADDR", "secrets.vault.addr", CFG_STRING, NULL, "vault backend: https://vault.example:8200", 0 },
    { "VAULT_TOKEN", NULL, CFG_STRING, NULL, "vault backend: token (VAULT_AUTH_METHOD=token)", 1 },
    { "VAULT_AUTH_METHOD", "secrets.vault.auth_method", CFG_STRING, "token", "vault backend: token | kubernetes", 0 },
    { "VAULT_K8S_ROLE", "secrets.vault.k8s_role", CFG_STRING, NULL, "vault backend: Kubernetes auth role", 0 },
    { "VAULT_K8S_JWT_PATH", "secrets.vault.k8s_jwt_path", CFG_STRING, "/var/run/secrets/kubernetes.io/serviceaccount/token", "vault backend: service-account JWT for Kubernetes auth", 0 },
    { "VAULT_KV_MOUNT", "secrets.vault.kv_mount", CFG_STRING, "aurora", "vault backend: KV v2 mount (aurora/<path> is read at <mount>/data/<prefix><path>)", 0 },
    { "VAULT_PREFIX", "secrets.vault.prefix", CFG_STRING, NULL, "vault backend: folder inside the mount", 0 },
    { "VAULT_CACERT", "secrets.vault.cacert", CFG_STRING, NULL, "vault backend: CA bundle for VAULT_ADDR", 0 },
    { "AWS_SM_REGION", "secrets.aws.region", CFG_STRING, NULL, "aws_secrets_manager backend: region", 0 },
    { "AWS_SM_ENDPOINT", "secrets.aws.endpoint", CFG_STRING, NULL, "aws_secrets_manager backend: endpoint override (default https://secretsmanager.<region>.amazonaws.com)", 0 },
    { "AWS_ACCESS_KEY_ID", NULL, CFG_STRING, NULL, "Aurora's own AWS access key id (AWS connector STS calls; aws_secrets_manager backend)", 1 },
    { "AWS_SECRET_ACCESS_KEY", NULL, CFG_STRING, NULL, "Aurora's own AWS secret access key (AWS connector; aws_secrets_manager backend)", 1 },
    { "AWS_SESSION_TOKEN", NULL, CFG_STRING, NULL, "aws_secrets_manager backend: session token of temporary credentials", 1 },
    /* connectors: outbound calls to providers */
    { "AURORA_OUTBOUND_CA_FILE", "connectors.ca_file", CFG_STRING, NULL, "CA bundle for calls to providers (default: system store)", 0 },
    { "AURORA_PROVIDER_TIMEOUT_MS", "connectors.timeout_ms", CFG_INT, "15000", "time limit of one call to a provider (ms)", 0 },
    { "AURORA_OAUTH_STATE_TTL", "connectors.oauth_state_ttl", CFG_INT, "600", "lifetime of an OAuth state value (s)", 0 },
    /* GCP (connector guide: Cloud Providers > GCP) */
    { "CLIENT_ID", "gcp.client_id", CFG_STRING, NULL, "GCP OAuth client id (Option B: OAuth 2.0)", 0 },
    { "CLIENT_SECRET", NULL, CFG_STRING, NULL, "GCP OAuth client secret", 1 },
    { "GCP_REDIRECT_URI", "gcp.redirect_uri", CFG_STRING, "http://localhost:5080/callback", "GCP OAuth redirect URI; must equal the one registered in the GCP console exactly", 0 },
    { "GCP_AUTH_URL", "gcp.auth_url", CFG_STRING, "https://accounts.google.com/o/oauth2/v2/auth", "GCP OAuth authorization endpoint", 0 },
    { "GCP_TOKEN_URL", "gcp.token_url", CFG_STRING, "https://oauth2.googleapis.com/token", "GCP OAuth token endpoint (authorization code and refresh)", 0 },
    { "GCP_OAUTH_SCOPES", "gcp.oauth_scopes", CFG_STRING, "openid email https://www.googleapis.com/auth/cloud-platform", "scopes asked for in the GCP OAuth flow", 0 },
    { "GCP_CRM_URL", "gcp.crm_url", CFG_STRING, "https://cloudresourcemanager.googleapis.com", "Cloud Resource Manager base URL (v1 projects.list)", 0 },
    { "GCP_MAX_PROJECT_PAGES", "gcp.max_project_pages", CFG_INT, "100", "most projects.list pages read when connecting", 0 },
    { "GCP_ALLOWED_TOKEN_HOSTS", "gcp.allowed_token_hosts", CFG_STRING, "oauth2.googleapis.com,accounts.google.com", "hosts a service account key's token_uri may name (https only)", 0 },
    { "GCP_TOKEN_URI_OVERRIDE", "gcp.token_uri_override", CFG_STRING, NULL, "tests: replaces every service account key's token_uri", 0 },
    { "GCP_CLOUDSDK_ENDPOINT_OVERRIDES", "gcp.cloudsdk_endpoint_overrides", CFG_STRING, NULL, "tests: name=url,… passed to gcloud as CLOUDSDK_API_ENDPOINT_OVERRIDES_<NAME>", 0 },
    /* AWS, Azure, OVH connectors (connector guide: Cloud Providers > AWS, Azure, OVH Cloud) */
    { "AWS_DEFAULT_REGION", "aws.default_region", CFG_STRING, "us-east-1", "AWS connector: region of Aurora's STS calls and default region of cloud commands", 0 },
    { "AWS_STS_ENDPOINT", "aws.sts_endpoint", CFG_STRING, NULL, "AWS connector: STS endpoint override (default https://sts.<region>.amazonaws.com)", 0 },
    { "AWS_CLI_ENDPOINT_URLS", "aws.cli_endpoint_urls", CFG_STRING, NULL, "AWS connector: the only --endpoint-url values a cloud_exec may give (comma-separated, exact; default none)", 0 },
    { "AZURE_LOGIN_BASE", "azure.login_base", CFG_STRING, "https://login.microsoftonline.com", "Azure connector: Microsoft identity platform base URL (<base>/<tenant>/oauth2/v2.0/{authorize,token})", 0 },
    { "AZURE_MANAGEMENT_BASE", "azure.management_base", CFG_STRING, "https://management.azure.com", "Azure connector: Azure Resource Manager base URL", 0 },
    { "AZURE_REDIRECT_URI", "azure.redirect_uri", CFG_STRING, "http://localhost:5080/azure/callback", "Azure connector: OAuth redirect URI; must equal the App registration's exactly", 0 },
    { "AZURE_CLIENT_ID", "azure.client_id", CFG_STRING, NULL, "Azure connector: application (client) id of the App registration used by GET /azure/login", 0 },
    { "AZURE_CLIENT_SECRET", NULL, CFG_STRING, NULL, "Azure connector: client secret of that App registration", 1 },
    { "AZURE_TENANT_ID", "azure.tenant_id", CFG_STRING, NULL, "Azure connector: directory (tenant) id for GET /azure/login (default: organizations)", 0 },
    { "AZURE_MAX_SUBSCRIPTION_PAGES", "azure.max_subscription_pages", CFG_INT, "20", "Azure connector: most subscription list pages read when connecting", 0 },
    { "NEXT_PUBLIC_ENABLE_OVH", "ovh.enabled", CFG_BOOL, "false", "OVH connector: enable its routes (else 'OVH connector not enabled')", 0 },
    { "OVH_EU_CLIENT_ID", "ovh.eu.client_id", CFG_STRING, NULL, "OVH connector: EU OAuth2 client id", 0 },
    { "OVH_EU_CLIENT_SECRET", NULL, CFG_STRING, NULL, "OVH connector: EU OAuth2 client secret", 1 },
    { "OVH_EU_REDIRECT_URI", "ovh.eu.redirect_uri", CFG_STRING, NULL, "OVH connector: EU callback URL (https only), e.g. https://<host>/ovh_api/ovh/oauth2/callback", 0 },
    { "OVH_EU_AUTH_BASE", "ovh.eu.auth_base", CFG_STRING, "https://www.ovh.com/auth", "OVH connector: EU OAuth2 base (<base>/oauth2/authorize, <base>/oauth2/token)", 0 },
    { "OVH_EU_API_BASE", "ovh.eu.api_base", CFG_STRING, "https://eu.api.ovh.com/1.0", "OVH connector: EU API base (GET <base>/me)", 0 },
    { "OVH_CA_CLIENT_ID", "ovh.ca.client_id", CFG_STRING, NULL, "OVH connector: CA OAuth2 client id", 0 },
    { "OVH_CA_CLIENT_SECRET", NULL, CFG_STRING, NULL, "OVH connector: CA OAuth2 client secret", 1 },
    { "OVH_CA_REDIRECT_URI", "ovh.ca.redirect_uri", CFG_STRING, NULL, "OVH connector: CA callback URL (https only)", 0 },
    { "OVH_CA_AUTH_BASE", "ovh.ca.auth_base", CFG_STRING, "https://ca.ovh.com/auth", "OVH connector: CA OAuth2 base", 0 },
    { "OVH_CA_API_BASE", "ovh.ca.api_base", CFG_STRING, "https://ca.api.ovh.com/1.0", "OVH connector: CA API base", 0 },
    { "OVH_US_CLIENT_ID", "ovh.us.client_id", CFG_STRING, NULL, "OVH connector: US OAuth2 client id", 0 },
    { "OVH_US_CLIENT_SECRET", NULL, CFG_STRING, NULL, "OVH connector: US OAuth2 client secret", 1 },
    { "OVH_US_REDIRECT_URI", "ovh.us.redirect_uri", CFG_STRING, NULL, "OVH connector: US callback URL (https only)", 0 },
    { "OVH_US_AUTH_BASE", "ovh.us.auth_base", CFG_STRING, "https://us.ovhcloud.com/auth", "OVH connector: US OAuth2 base", 0 },
    { "OVH_US_API_BASE", "ovh.us.api_base", CFG_STRING, "https://api.us.ovhcloud.com/1.0", "OVH connector: US API base", 0 },
    /* GitHub connector (connector guide: Communication Tools > GitHub; connectors/github.c) */
    { "GITHUB_AUTH_MODE", "github.auth_mode", CFG_STRING, "app", "GitHub connector: app | oauth | hybrid (which connect actions users are offered)", 0 },
    { "GITHUB_APP_ID", "github.app_id", CFG_STRING, NULL, "GitHub App: numeric App ID (JWT issuer when GITHUB_APP_CLIENT_ID is unset)", 0 },
    { "GITHUB_APP_CLIENT_ID", "github.app_client_id", CFG_STRING, NULL, "GitHub App: client ID (Iv23l…), the App JWT's issuer", 0 },
    { "NEXT_PUBLIC_GITHUB_APP_SLUG", "github.app_slug", CFG_STRING, NULL, "GitHub App: URL slug (install URL <GH_BASE_URL>/apps/<slug>/installations/new)", 0 },
    { "GITHUB_APP_WEBHOOK_URL", "github.app_webhook_url", CFG_STRING, NULL, "GitHub App: <API_URL>/github/webhook, as registered on the App", 0 },
    { "GITHUB_APP_SETUP_URL", "github.app_setup_url", CFG_STRING, NULL, "GitHub App: <API_URL>/github/app/install/callback, as registered on the App", 0 },
    { "GITHUB_APP_WEBHOOK_SECRET", NULL, CFG_STRING, NULL, "GitHub App: webhook secret (else read from aurora/system/github-app/webhook-secret)", 1 },
    { "GITHUB_APP_WEBHOOK_SECRET_PREVIOUS", NULL, CFG_STRING, NULL, "GitHub App: the webhook secret being rotated out, also accepted until unset", 1 },
    { "GITHUB_APP_KEY_REFRESH_S", "github.app_key_refresh_s", CFG_INT, "60", "GitHub App: the private key and webhook secret are re-read from the secrets backend at most this often (s)", 0 },
    { "GITHUB_MAX_REPO_PAGES", "github.max_repo_pages", CFG_INT, "10", "GitHub connector: most pages (100 repositories each) read per repository listing", 0 },
    { "GH_OAUTH_CLIENT_ID", "github.oauth_client_id", CFG_STRING, NULL, "GitHub OAuth App client id (GITHUB_AUTH_MODE oauth or hybrid)", 0 },
    { "GH_OAUTH_CLIENT_SECRET", NULL, CFG_STRING, NULL, "GitHub OAuth App client secret", 1 },
    { "GH_BASE_URL", "github.base_url", CFG_STRING, "https://github.com", "GitHub web base URL (GitHub Enterprise Server: https://<host>)", 0 },
    { "GH_API_BASE_URL", "github.api_base_url", CFG_STRING, "https://api.github.com", "GitHub REST API base URL (GitHub Enterprise Server: https://<host>/api/v3)", 0 },
};
#define NDEFS (sizeof(server_defs) / sizeof(server_defs[0]))

void server_config_help(FILE *f)
{
    fprintf(f, "Settings (environment variable, YAML key via AURORA_CONFIG=<file>, default):\n");
    config_print_help(f, server_defs, NDEFS);
}

static int in_range(char *err, size_t errlen, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi) {
        snprintf(err, errlen, "%s must be between %lld and %lld", name, (long long)lo,
                 (long long)hi);
        return 0;
    }
    return 1;
}

int server_config_load(server_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (config_load(&c->raw, server_defs, NDEFS, getenv("AURORA_CONFIG"), err, errlen) < 0)
        return -1;
    config_t *r = &c->raw;
    c->env = config_str(r, "AURORA_ENV");
    c->data_dir = config_str(r, "AURORA_DATA_DIR");
    c->bind = config_str(r, "AURORA_BIND");
    c->port = (int)config_int(r, "AURORA_PORT");
    c->plain_http = config_bool(r, "AURORA_PLAIN_HTTP");
    c->tls_terminated_by_proxy = config_bool(r, "AURORA_TLS_TERMINATED_BY_PROXY");
    c->internal_secret = config_str(r, "INTERNAL_API_SECRET");
    c->frontend_url = config_str(r, "FRONTEND_URL");
    c->workers = (int)config_int(r, "AURORA_WORKERS");
    c->outbound_workers = (int)config_int(r, "AURORA_OUTBOUND_WORKERS");
    c->max_body = config_int(r, "AURORA_MAX_BODY");
    c->legacy_max_frame = config_int(r, "AURORA_LEGACY_MAX_FRAME");
    c->default_timeout = (int)config_int(r, "AURORA_EXEC_DEFAULT_TIMEOUT");
    c->max_timeout = (int)config_int(r, "AURORA_EXEC_MAX_TIMEOUT");
    c->default_max_output = config_int(r, "AURORA_EXEC_DEFAULT_MAX_OUTPUT");
    c->max_output_json = config_int(r, "AURORA_EXEC_MAX_OUTPUT_JSON");
    c->max_output_stream = config_int(r, "AURORA_EXEC_MAX_OUTPUT_STREAM");
    c->stream_window = config_int(r, "AURORA_STREAM_WINDOW");
    c->output_budget = config_int(r, "AURORA_EXEC_OUTPUT_BUDGET");
    c->org_output_budget = config_int(r, "AURORA_EXEC_ORG_OUTPUT_BUDGET");
    c->max_per_cluster = (int)config_int(r, "AURORA_EXEC_MAX_PER_CLUSTER");
    c->instance_lease = (int)config_int(r, "AURORA_INSTANCE_LEASE");
    c->token_rate_limit = (int)config_int(r, "AURORA_TOKEN_RATE_LIMIT");
    c->token_rate_limit_minute = (int)config_int(r, "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE");
    c->stale_after = (int)config_int(r, "AURORA_STALE_AFTER");
    c->agent_idle_timeout = (int)config_int(r, "AURORA_AGENT_IDLE_TIMEOUT");
    c->log_level = config_str(r, "AURORA_LOG_LEVEL");
    c->log_format = config_str(r, "AURORA_LOG_FORMAT");
    c->secrets_backend = config_str(r, "SECRETS_BACKEND");
    c->master_key = config_str(r, "AURORA_MASTER_KEY");
    c->master_key_file = config_str(r, "AURORA_MASTER_KEY_FILE");
    c->vault_addr = config_str(r, "VAULT_ADDR");
    c->vault_token = config_str(r, "VAULT_TOKEN");
    c->vault_auth_method = config_str(r, "VAULT_AUTH_METHOD");
    c->vault_k8s_role = config_str(r, "VAULT_K8S_ROLE");
    c->vault_k8s_jwt_path = config_str(r, "VAULT_K8S_JWT_PATH");
    c->vault_kv_mount = config_str(r, "VAULT_KV_MOUNT");
    c->vault_prefix = config_str(r, "VAULT_PREFIX");
    c->vault_cacert = config_str(r, "VAULT_CACERT");
    c->aws_sm_region = config_str(r, "AWS_SM_REGION");
    c->aws_sm_endpoint = config_str(r, "AWS_SM_ENDPOINT");
    c->aws_access_key_id = config_str(r, "AWS_ACCESS_KEY_ID");
    c->aws_secret_access_key = config_str(r, "AWS_SECRET_ACCESS_KEY");
    c->aws_session_token = config_str(r, "AWS_SESSION_TOKEN");

    if (strcmp(c->env, "development") && strcmp(c->env, "production")) {
        snprintf(err, errlen, "AURORA_ENV must be 'development' or 'production'");
        goto fail;
    }
    if (!in_range(err, errlen, "AURORA_PORT", c->port, 0, 65535) ||
        !in_range(err, errlen, "AURORA_WORKERS", c->workers, 1, 256) ||
        !in_range(err, errlen, "AURORA_OUTBOUND_WORKERS", c->outbound_workers, 1, 256) ||
        !in_range(err, errlen, "AURORA_MAX_BODY", c->max_body, 1024, 1 << 30) ||
        !in_range(err, errlen, "AURORA_LEGACY_MAX_FRAME", c->legacy_max_frame, 65536, 1 << 30) ||
        !in_range(err, errlen, "AURORA_EXEC_MAX_TIMEOUT", c->max_timeout, 1, 86400) ||
        !in_range(err, errlen, "AURORA_EXEC_DEFAULT_TIMEOUT", c->default_timeout, 1, c->max_timeout) ||
        !in_range(err, errlen, "AURORA_EXEC_MAX_OUTPUT_JSON", c->max_output_json, 1024, 1LL << 32) ||
        !in_range(err, errlen, "AURORA_EXEC_MAX_OUTPUT_STREAM", c->max_output_stream, 1024, 1LL << 40) ||
        !in_range(err, errlen, "AURORA_EXEC_DEFAULT_MAX_OUTPUT", c->default_max_output, 1024, c->max_output_json) ||
        !in_range(err, errlen, "AURORA_STREAM_WINDOW", c->stream_window, 65536, 64 << 20) ||
        !in_range(err, errlen, "AURORA_EXEC_OUTPUT_BUDGET", c->output_budget, 65536, 1LL << 40) ||
        !in_range(err, errlen, "AURORA_EXEC_ORG_OUTPUT_BUDGET", c->org_output_budget, 65536, c->output_budget) ||
        !in_range(err, errlen, "AURORA_EXEC_MAX_PER_CLUSTER", c->max_per_cluster, 1, 100000) ||
        !in_range(err, errlen, "AURORA_INSTANCE_LEASE", c->instance_lease, 3, 3600) ||
        !in_range(err, errlen, "AURORA_TOKEN_RATE_LIMIT", c->token_rate_limit, 1, 100000) ||
        !in_range(err, errlen, "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE", c->token_rate_limit_minute, 1,
                  100000) ||
        !in_range(err, errlen, "AURORA_STALE_AFTER", c->stale_after, 10, 86400) ||
        !in_range(err, errlen, "AURORA_AGENT_IDLE_TIMEOUT", c->agent_idle_timeout, 10, 86400) ||
        !in_range(err, errlen, "AURORA_DB_STATEMENT_TIMEOUT_MS", config_int(r, "AURORA_DB_STATEMENT_TIMEOUT_MS"), 100, 3600000) ||
        !in_range(err, errlen, "AURORA_DB_CONNECT_TIMEOUT_MS", config_int(r, "AURORA_DB_CONNECT_TIMEOUT_MS"), 100, 600000) ||
        !in_range(err, errlen, "AURORA_PROVIDER_TIMEOUT_MS", config_int(r, "AURORA_PROVIDER_TIMEOUT_MS"), 100, 600000) ||
        !in_range(err, errlen, "AURORA_OAUTH_STATE_TTL", config_int(r, "AURORA_OAUTH_STATE_TTL"), 1, 86400) ||
        !in_range(err, errlen, "GCP_MAX_PROJECT_PAGES", config_int(r, "GCP_MAX_PROJECT_PAGES"), 1, 10000))
        goto fail;

    /* A result at the JSON cap must be able to fit an organization's budget. */
    if (c->max_output_json > c->org_output_budget) {
        snprintf(err, errlen,
                 "AURORA_EXEC_MAX_OUTPUT_JSON (%lld) must not exceed "
                 "AURORA_EXEC_ORG_OUTPUT_BUDGET (%lld): a JSON result at the cap could never "
                 "be buffered; raise the budget or lower the cap",
                 (long long)c->max_output_json, (long long)c->org_output_budget);
        goto fail;
    }

    const char *db = config_str(r, "DATABASE_URL");
    if (db && *db)
        snprintf(c->db_url_buf, sizeof(c->db_url_buf), "%s", db);
    else
        snprintf(c->db_url_buf, sizeof(c->db_url_buf), "sqlite://%s/aurora.db", c->data_dir);
    c->database_url = c->db_url_buf;

    const char *cert = config_str(r, "AURORA_TLS_CERT"), *key = config_str(r, "AURORA_TLS_KEY");
    if ((cert && !key) || (!cert && key)) {
        snprintf(err, errlen, "AURORA_TLS_CERT and AURORA_TLS_KEY must be given together");
        goto fail;
    }
    if (cert) {
        snprintf(c->cert_buf, sizeof(c->cert_buf), "%s", cert);
        snprintf(c->key_buf, sizeof(c->key_buf), "%s", key);
    } else {
        snprintf(c->cert_buf, sizeof(c->cert_buf), "%s/tls/server.crt", c->data_dir);
        snprintf(c->key_buf, sizeof(c->key_buf), "%s/tls/server.key", c->data_dir);
    }
    c->tls_cert = c->cert_buf;
    c->tls_key = c->key_buf;
    return 0;
fail:
    config_free(&c->raw);
    return -1;
}

int server_config_check_production(const server_config *c, char *err, size_t errlen)
{
    if (strcmp(c->env, "production") != 0)
        return 0;
    const char *s = c->internal_secret;
    if (!s || !*s || !strcmp(s, DEV_INTERNAL_SECRET)) {
        snprintf(err, errlen, "AURORA_ENV=production: INTERNAL_API_SECRET is missing or left at "
                              "the development default; set a rotated secret");
        return -1;
    }
    if (strlen(s) < 32) {
        snprintf(err, errlen, "AURORA_ENV=production: INTERNAL_API_SECRET is too short "
                              "(at least 32 characters, e.g. openssl rand -hex 32)");
        return -1;
    }
    if (c->plain_http && !c->tls_terminated_by_proxy) {
        snprintf(err, errlen, "AURORA_ENV=production: TLS is off (AURORA_PLAIN_HTTP=true); set "
                              "AURORA_TLS_TERMINATED_BY_PROXY=true if an ingress terminates TLS");
        return -1;
    }
    return 0;
}

void server_config_free(server_config *c) { config_free(&c->raw); }

const char *server_setting(const server_config *c, const char *env)
{
    const char *v = config_str(&c->raw, env);
    return v && *v ? v : NULL;
}

int64_t server_setting_int(const server_config *c, const char *env)
{
    return config_int(&c->raw, env);
}
