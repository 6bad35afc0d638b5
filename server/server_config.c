/* server_config.c — settings table, resolution and the production check. */
#include "server_config.h"

#include "client_addr.h"
#include "connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const config_def server_defs[] = {
    { "AURORA_ENV", "env", CFG_STRING, "development", "development | production (enables the startup check)", 0 },
    { "AURORA_DATA_DIR", "server.data_dir", CFG_STRING, "./data", "directory for the SQLite file, TLS material and keys", 0 },
    { "AURORA_BIND", "server.bind", CFG_STRING, "0.0.0.0", "listen address", 0 },
    { "AURORA_PORT", "server.port", CFG_INT, "5080", "HTTPS + WSS port (API, connectors, /kubectl-agent)", 0 },
    { "AURORA_OPS_PORT", "server.ops_port", CFG_INT, "0", "serve /health, /ready and /metrics on this separate plain-HTTP port instead of AURORA_PORT (0: on AURORA_PORT)", 0 },
    { "AURORA_OPS_BIND", "server.ops_bind", CFG_STRING, NULL, "listen address of AURORA_OPS_PORT (default: AURORA_BIND)", 0 },
    { "AURORA_LISTEN_SHARE", "server.listen_share", CFG_BOOL, "false", "bind AURORA_PORT with SO_REUSEPORT, so that several aurora-server processes on one host (replicas: PostgreSQL and AURORA_REDIS_URL) share it and its TLS handshakes run on several cores; each process needs its own AURORA_INTERNAL_PORT", 0 },
    { "AURORA_INTERNAL_PORT", "cluster.internal_port", CFG_INT, "0", "a listener of this process alone (same TLS, same API) at which the other replicas reach it, AURORA_INTERNAL_ADDR's port, and the only one serving their forwarded commands (/internal/forward/exec: the main port 404s it); required with AURORA_LISTEN_SHARE; 0: none (forwarded commands on AURORA_PORT)", 0 },
    { "DATABASE_URL", "database.url", CFG_STRING, NULL, "state store; default sqlite://<data_dir>/aurora.db", 1 },
    { "AURORA_DB_STATEMENT_TIMEOUT_MS", "database.statement_timeout_ms", CFG_INT, "5000", "longest a state-store statement may take, lock waits included (ms); past it the call fails and the API answers 503 STORE_UNAVAILABLE", 0 },
    { "AURORA_DB_SYNC", "database.sync", CFG_STRING, "full", "full | normal: SQLite only. full fsyncs every commit (a command's audit row survives a power loss); normal (WAL synchronous=NORMAL) fsyncs at checkpoints: survives a crash of the server, a power loss may drop the last rows; about 0.15 ms less CPU and latency per command", 0 },
    { "AURORA_DB_CONNECT_TIMEOUT_MS", "database.connect_timeout_ms", CFG_INT, "5000", "longest a (re)connection to PostgreSQL may take, authentication included (ms)", 0 },
    { "AURORA_TLS_CERT", "tls.cert", CFG_STRING, NULL, "PEM certificate; default: self-signed, created on first run", 0 },
    { "AURORA_TLS_KEY", "tls.key", CFG_STRING, NULL, "PEM private key for AURORA_TLS_CERT", 0 },
    { "AURORA_PLAIN_HTTP", "tls.plain_http", CFG_BOOL, "false", "serve plain HTTP/WS (only behind a TLS-terminating ingress)", 0 },
    { "AURORA_TLS_TERMINATED_BY_PROXY", "tls.terminated_by_proxy", CFG_BOOL, "false", "states that a proxy terminates TLS (required for plain HTTP in production)", 0 },
    { "INTERNAL_API_SECRET", "internal_api_secret", CFG_STRING, DEV_INTERNAL_SECRET, "shared secret of the trusted backend (X-Internal-Secret)", 1 },
    { "FRONTEND_URL", "frontend_url", CFG_STRING, "http://localhost:3000", "user-facing Aurora URL", 0 },
    { "AURORA_WORKERS", "server.workers", CFG_INT, "4", "worker threads for state-store work", 0 },
    { "AURORA_OUTBOUND_WORKERS", "server.outbound_workers", CFG_INT, "8", "worker threads for calls to providers (OAuth, token exchange)", 0 },
    { "AURORA_OUTBOUND_PER_ORG", "server.outbound_per_org", CFG_INT, "0", "outbound worker threads one organization's authenticated requests and OAuth callbacks (counted under the organization of their state) may hold at once; more wait, off the threads, until one of that organization's calls ends, so that one organization's slow provider calls cannot hold every thread (0: half of AURORA_OUTBOUND_WORKERS rounded up, no limit under 4 threads)", 0 },
    { "AURORA_MAX_BODY", "server.max_body", CFG_INT, "1048576", "largest accepted HTTP request body (bytes)", 0 },
    { "AURORA_WEBHOOK_CLAIM_LEASE_S", "webhooks.claim_lease_s", CFG_INT, "300", "a webhook delivery claimed for processing longer ago than this is taken to belong to a process that died and is processed again (s); processing is idempotent, so a short lease costs only repeated work", 0, 5, 86400 },
    { "AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS", "webhooks.unassigned_retention_days", CFG_INT, "30", "a webhook delivery whose tenant is still unknown after this long (a GitHub ping, an installation never bound, a Slack workspace never connected) is deleted (days; checked by each connector's sweep; 0 keeps them forever)", 0, 0, 36500 },
    { "AURORA_TRUSTED_PROXIES", "server.trusted_proxies", CFG_STRING, NULL, "comma-separated IPv4/IPv6 addresses or CIDRs of the reverse proxies in front of this server (ingress controller, load balancer; 127.0.0.1 for a tunnel such as ngrok on this host): a request whose socket peer is one of them is attributed to the X-Forwarded-For entry its proxies appended (read right to left, past the trusted ones), for the console's sign-in limit and the logs, never for a right; default: nothing trusted (the socket peer is the client)", 0 },
    { "AURORA_PUBLIC_URL", "server.public_url", CFG_STRING, NULL, "public base URL of this server (https://aurora.example.com): the webhook URLs connectors show to users (default: built from the request's Host)", 0 },
    { "AURORA_LEGACY_MAX_FRAME", "tunnel.legacy_max_frame", CFG_INT, "33554432", "largest frame from a legacy agent (bytes)", 0 },
    { "AURORA_AGENT_ASSEMBLY_BUDGET", "tunnel.assembly_budget", CFG_INT, "268435456", "bytes of agent messages larger than 1 MiB (legacy outputs arrive as one message) assembled at once: budget / AURORA_LEGACY_MAX_FRAME messages at a time (at least one); the others' connections stop being read until one ends", 0 },
    { "AURORA_EXEC_DEFAULT_TIMEOUT", "exec.default_timeout", CFG_INT, "60", "command timeout when the caller gives none (s)", 0 },
    { "AURORA_EXEC_MAX_TIMEOUT", "exec.max_timeout", CFG_INT, "3600", "largest timeout a caller may ask (s)", 0 },
    { "AURORA_EXEC_DEFAULT_MAX_OUTPUT", "exec.default_max_output", CFG_INT, "10485760", "output cap when the caller gives none (bytes)", 0 },
    { "AURORA_EXEC_MAX_OUTPUT_JSON", "exec.max_output_json", CFG_INT, "67108864", "largest output cap for a buffered JSON result (bytes)", 0 },
    { "AURORA_EXEC_MAX_OUTPUT_STREAM", "exec.max_output_stream", CFG_INT, "1073741824", "largest output cap for a streamed (SSE) result (bytes)", 0 },
    { "AURORA_EXEC_OUTPUT_BUDGET", "exec.output_budget", CFG_INT, "268435456", "memory for command output held for callers, all commands at once (bytes): JSON-mode captures and answers not yet sent, streamed output waiting for a slow caller; a command whose output does not fit is cancelled with 503 SERVER_OUTPUT_BUDGET_EXCEEDED", 0 },
    { "AURORA_EXEC_ORG_OUTPUT_BUDGET", "exec.org_output_budget", CFG_INT, "67108864", "the same budget per organization; over it: 429 ORG_OUTPUT_BUDGET_EXCEEDED", 0 },
    { "AURORA_EXEC_DEADLINE_GRACE_S", "exec.deadline_grace_s", CFG_INT, "15", "how long past a command's timeout the server waits for the agent's answer before it fails the command itself with 504 TIMEOUT (s): the agent's own timeout answers first, so this covers only an agent that stopped answering; a forwarded command (another replica holds the agent) waits twice this", 0, 1, 3600 },
    { "AURORA_HTTP_SEND_TIMEOUT_S", "server.send_timeout_s", CFG_INT, "60", "how long an answer being sent (a JSON result, a stream's pending events) may wait for its client to take any of it before the connection is closed (s): memory held for a client that stops reading is given back", 0, 1, 3600 },
    { "AURORA_SHUTDOWN_DRAIN_S", "server.shutdown_drain_s", CFG_INT, "10", "at SIGTERM, how long the commands already running may go on before the agent sessions are closed under them (s): new commands are answered 503 SERVER_SHUTTING_DOWN meanwhile, and the server stops as soon as the last one has ended and its answer has been written whole to its client's connection; a second SIGTERM or SIGINT stops waiting; 0: no wait. A command still running then fails with 502 COMMAND_INTERRUPTED (it may have run), one still queued for its agent with 503 SERVER_SHUTTING_DOWN (it did not run)", 0, 0, 3600 },
    { "AURORA_EXEC_MAX_PER_CLUSTER", "exec.max_per_cluster", CFG_INT, "128", "commands running or queued per cluster; more get 429 CLUSTER_BUSY", 0 },
    { "AURORA_AUDIT_RETENTION_DAYS", "audit.retention_days", CFG_INT, "365", "command audit records older than this are deleted (checked hourly; 0 keeps them forever)", 0 },
    { "AURORA_INSTANCE_LEASE", "server.instance_lease", CFG_INT, "60", "seconds after which a replica that stopped renewing its lease is taken for dead and its running commands are audited as interrupted", 0 },
    /* many replicas, one fleet (registry.h, forward.h) */
    { "AURORA_REDIS_URL", "cluster.redis_url", CFG_STRING, NULL, "redis://[[user]:password@]host:port[/db] shared by the replicas: each registers the agent sessions it holds there and hears token revocations of the others; unset: a single replica", 1 },
    { "AURORA_INTERNAL_CA_FILE", "cluster.internal_ca_file", CFG_STRING, NULL, "CA bundle that the replicas' certificates must chain to when one forwards a command to another; default: the peer must present exactly the first certificate of AURORA_TLS_CERT (shared by the replicas); without either the peer is not verified and the server says so at start", 0 },
    { "AURORA_INTERNAL_ADDR", "cluster.internal_addr", CFG_STRING, NULL, "IP:port at which the other replicas reach this one's listener (the pod IP and AURORA_PORT; a name is refused; the port 1-65535 in digits only); required with AURORA_REDIS_URL", 0 },
    { "AURORA_INTERNAL_FORWARD_SECRET", "cluster.forward_secret", CFG_STRING, NULL, "per-deployment secret (at least 32 characters) that a replica presents when it forwards a command to the replica holding the cluster's agent; required with AURORA_REDIS_URL", 1 },
    { "AURORA_REGISTRY_ACCEPT_UNSIGNED", "cluster.registry_accept_unsigned", CFG_BOOL, "false", "take unsigned messages between replicas (aurora:close on Redis) and unsigned registrations (aurora:agents:*, \"<instance> <addr>\"), as replicas of a version that does not sign them publish and register, and register in that form too (beside the signed one), which such replicas read: only while a rolling upgrade from such a version runs, as anyone who may write to Redis can then close any cluster's tunnel and divert its commands; messages and registrations whose signature does not verify are dropped whatever this says", 0 },
    { "AURORA_REGISTRY_LEASE_S", "cluster.registry_lease_s", CFG_INT, "30", "lifetime of an agent session's registration in Redis, renewed every third of it (s); a replica that dies is forgotten after this", 0, 2, 3600 },
    { "AURORA_REGISTRY_TEST_CLOCK_SKEW_MS", "cluster.test_clock_skew_ms", CFG_INT, "0", "tests: added to this replica's wall clock where it ranks legacy connections and times its registrations in Redis (registry_clock_ms, until Redis's clock is read), as a host whose clock runs ahead (or, negative, behind) would read it (ms)", 0, -86400000, 86400000 },
    { "AURORA_STREAM_WINDOW", "tunnel.window", CFG_INT, "262144", "per-command flow-control window (bytes)", 0 },
    { "AURORA_TOKEN_RATE_LIMIT", "tokens.rate_limit_per_hour", CFG_INT, "20", "agent tokens a user may create per hour", 0 },
    { "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE", "tokens.rate_limit_per_minute", CFG_INT, "5", "agent tokens a user may create per minute", 0 },
    { "AURORA_STALE_AFTER", "tunnel.stale_after", CFG_INT, "180", "seconds without heartbeat before a connection is 'stale'", 0 },
    { "AURORA_AGENT_IDLE_TIMEOUT", "tunnel.idle_timeout", CFG_INT, "200", "drop an agent that sent nothing for this long (s)", 0 },
    /* admission of new connections (admission.h) and TLS resumption (tls_tickets.h) */
    { "AURORA_EVENT_LOOP", "server.event_loop", CFG_STRING, "libev", "libev (epoll: a round of the loop costs what is ready, not every connection) | poll (lws's own loop, O(connections) a round); libev falls back to poll when libwebsockets' evlib_ev plugin is missing", 0 },
    { "AURORA_MAX_PENDING_HANDSHAKES", "server.max_pending_handshakes", CFG_INT, "2048", "connections on AURORA_PORT between their accept and their first request at most (each holds ~45 KiB meanwhile); a connection beyond it is closed at accept, before any TLS work, and its client retries with backoff (the ops port is exempt)", 0, 1, 65536 },
    { "AURORA_ACCEPT_RATE", "server.accept_rate", CFG_INT, "0", "new connections a second accepted on AURORA_PORT (burst: one second's worth); more are closed at accept; 0: no limit", 0, 0, 1000000 },
    { "AURORA_HTTP_KEEPALIVE_S", "server.http_keepalive_s", CFG_INT, "65", "how long an idle HTTP/1.1 connection is kept open for the client's next request (s); longer than the idle timeout of what sits in front (load balancers and ingresses use 60 s; Node's HTTP agent 5 s), so that the client, never the server, closes a kept-alive connection: a request written on one the server is closing fails with a reset (a 502 from a proxy)", 0, 1, 3600 },
    { "AURORA_HANDSHAKE_TIMEOUT", "server.handshake_timeout", CFG_INT, "10", "a connection on AURORA_PORT whose TLS handshake and first request's headers are not in after this long is dropped (s)", 0, 1, 300 },
    { "AURORA_TLS_TICKET_KEY_FILE", "tls.ticket_key_file", CFG_STRING, NULL, "secret from which the TLS session ticket keys are derived, created 0600 on first run; default <data_dir>/tls-ticket.key. Kept across restarts, so reconnecting agents resume their TLS sessions", 0 },
    { "AURORA_TLS_TICKET_ROTATE", "tls.ticket_rotate_s", CFG_INT, "86400", "a new ticket key every this many seconds; tickets of the previous period are still accepted (and renewed)", 0, 60, 604800 },
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
    { "AWS_ROLE_ARN", "secrets.aws.role_arn", CFG_STRING, NULL, "aws_secrets_manager backend without static keys: IAM role assumed with the web identity token (EKS IRSA sets it)", 0 },
    { "AWS_WEB_IDENTITY_TOKEN_FILE", "secrets.aws.web_identity_token_file", CFG_STRING, NULL, "aws_secrets_manager backend: file holding the web identity token (EKS IRSA sets it; re-read at every credential refresh, it rotates)", 0 },
    { "AWS_ROLE_SESSION_NAME", "secrets.aws.role_session_name", CFG_STRING, "aurora-server", "aws_secrets_manager backend: session name of the assumed role (CloudTrail shows it)", 0 },
    { "AURORA_SECRETS_TIMEOUT_MS", "secrets.timeout_ms", CFG_INT, "10000", "vault and aws_secrets_manager backends: time limit of one request to the backend (ms); while it does not answer, one call at a time waits this long and the others fail at once", 0, 100, 120000 },
    { "AWS_SM_STS_ENDPOINT", "secrets.aws.sts_endpoint", CFG_STRING, NULL, "aws_secrets_manager backend: STS endpoint of AssumeRoleWithWebIdentity (default https://sts.<AWS_SM_REGION>.amazonaws.com)", 0 },
    /* connectors: what they share (each connector declares its own settings:
     * connector.settings, server/connectors/) */
    { "AURORA_OUTBOUND_CA_FILE", "connectors.ca_file", CFG_STRING, NULL, "CA bundle for calls to providers (default: system store)", 0 },
    { "AURORA_PROVIDER_TIMEOUT_MS", "connectors.timeout_ms", CFG_INT, NULL, "time limit of one call to a provider (ms), every connector; unset: each connector's own default (15000 for GCP, AWS, Azure and OVH)", 0, 100, 600000 },
    /* incidents (incidents.h) */
    { "AURORA_INCIDENT_CORRELATION_WINDOW_S", "incidents.correlation_window_s", CFG_INT, "3600", "a firing alert joins an open incident of a similar service that started at most this long before or after it (s); a fingerprint match needs no window", 0, 1, 2592000 },
    { "AURORA_RCA_MAX_ATTEMPTS", "incidents.rca_max_attempts", CFG_INT, "8", "claims of one RCA job before it is dead (a nack, or a lease that expired, on the last attempt)", 0, 1, 100 },
    { "AURORA_RCA_BACKOFF_S", "incidents.rca_backoff_s", CFG_INT, "30", "delay before a nacked RCA job is claimable again (s); doubles with each attempt", 0, 1, 86400 },
    { "AURORA_RCA_BACKOFF_MAX_S", "incidents.rca_backoff_max_s", CFG_INT, "3600", "longest retry delay of an RCA job (s)", 0, 1, 604800 },
    /* chat notifications (connectors/kit_chat.h) */
    { "AURORA_CHAT_MAX_ATTEMPTS", "chat.max_attempts", CFG_INT, "8", "sends of one chat message (Slack, Google Chat) before it is dead", 0, 1, 100 },
    { "AURORA_CHAT_MAX_PENDING_PER_ORG", "chat.max_pending_per_org", CFG_INT, "1000", "chat replies an organization may have waiting; more are refused with 429", 0, 1, 1000000 },
    { "AURORA_CHAT_POLL_S", "chat.poll_s", CFG_INT, "2", "how often the chat outbox is checked for due messages when it was empty (s)", 0, 1, 300 },
    /* web console sessions (console_session.h) */
    { "AURORA_CONSOLE_SESSION_TTL", "console.session_ttl", CFG_INT, "28800", "a web console session ends this long after sign-in, used or not (s)", 0, 1, 2592000 },
    { "AURORA_CONSOLE_SESSION_IDLE", "console.session_idle", CFG_INT, "1800", "a web console session not used for this long ends (s)", 0, 1, 2592000 },
    { "AURORA_CONSOLE_SIGNIN_LIMIT", "console.signin_limit", CFG_INT, "10", "failed console sign-ins one client address (the socket peer, or past AURORA_TRUSTED_PROXIES the X-Forwarded-For client) may make per minute; more get 429", 0, 1, 100000 },
    { "AURORA_OAUTH_STATE_TTL", "connectors.oauth_state_ttl", CFG_INT, "600", "lifetime of an OAuth state value (s)", 0 },
    { "AURORA_OAUTH_REQUIRE_BOUND_CALLBACK", "connectors.oauth_require_bound_callback", CFG_BOOL, "false", "also refuse OAuth callbacks of flows the frontend started (X-Internal-Secret) unless they carry the user's credentials (console flows are always tied to their browser, API-key flows to their key): closes login CSRF once the frontend forwards callbacks with the user's identity", 0 },
};
#define NDEFS (sizeof(server_defs) / sizeof(server_defs[0]))

void server_config_help(FILE *f)
{
    char err[256];
    size_t n = 0;
    const config_def *defs = connector_config_defs(server_defs, NDEFS, &n, err, sizeof(err));
    fprintf(f, "Settings (environment variable, YAML key via AURORA_CONFIG=<file>, default):\n");
    if (!defs)
        fprintf(f, "  (%s)\n", err);
    config_print_help(f, defs ? defs : server_defs, defs ? n : NDEFS);
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
    size_t ndefs = 0;
    const config_def *defs = connector_config_defs(server_defs, NDEFS, &ndefs, err, errlen);
    if (!defs || config_load(&c->raw, defs, ndefs, getenv("AURORA_CONFIG"), err, errlen) < 0)
        return -1;
    config_t *r = &c->raw;
    c->env = config_str(r, "AURORA_ENV");
    c->data_dir = config_str(r, "AURORA_DATA_DIR");
    c->bind = config_str(r, "AURORA_BIND");
    c->port = (int)config_int(r, "AURORA_PORT");
    c->ops_port = (int)config_int(r, "AURORA_OPS_PORT");
    c->listen_share = config_bool(r, "AURORA_LISTEN_SHARE");
    c->internal_port = (int)config_int(r, "AURORA_INTERNAL_PORT");
    c->plain_http = config_bool(r, "AURORA_PLAIN_HTTP");
    c->tls_terminated_by_proxy = config_bool(r, "AURORA_TLS_TERMINATED_BY_PROXY");
    c->internal_secret = config_str(r, "INTERNAL_API_SECRET");
    c->frontend_url = config_str(r, "FRONTEND_URL");
    c->workers = (int)config_int(r, "AURORA_WORKERS");
    c->outbound_workers = (int)config_int(r, "AURORA_OUTBOUND_WORKERS");
    c->outbound_per_org = (int)config_int(r, "AURORA_OUTBOUND_PER_ORG");
    c->max_body = config_int(r, "AURORA_MAX_BODY");
    c->legacy_max_frame = config_int(r, "AURORA_LEGACY_MAX_FRAME");
    c->assembly_budget = config_int(r, "AURORA_AGENT_ASSEMBLY_BUDGET");
    c->default_timeout = (int)config_int(r, "AURORA_EXEC_DEFAULT_TIMEOUT");
    c->max_timeout = (int)config_int(r, "AURORA_EXEC_MAX_TIMEOUT");
    c->default_max_output = config_int(r, "AURORA_EXEC_DEFAULT_MAX_OUTPUT");
    c->max_output_json = config_int(r, "AURORA_EXEC_MAX_OUTPUT_JSON");
    c->max_output_stream = config_int(r, "AURORA_EXEC_MAX_OUTPUT_STREAM");
    c->stream_window = config_int(r, "AURORA_STREAM_WINDOW");
    c->output_budget = config_int(r, "AURORA_EXEC_OUTPUT_BUDGET");
    c->org_output_budget = config_int(r, "AURORA_EXEC_ORG_OUTPUT_BUDGET");
    c->max_per_cluster = (int)config_int(r, "AURORA_EXEC_MAX_PER_CLUSTER");
    c->deadline_grace_s = (int)config_int(r, "AURORA_EXEC_DEADLINE_GRACE_S");
    c->shutdown_drain_s = (int)config_int(r, "AURORA_SHUTDOWN_DRAIN_S");
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
    c->aws_role_arn = config_str(r, "AWS_ROLE_ARN");
    c->aws_web_identity_token_file = config_str(r, "AWS_WEB_IDENTITY_TOKEN_FILE");
    c->aws_role_session_name = config_str(r, "AWS_ROLE_SESSION_NAME");
    c->aws_sm_sts_endpoint = config_str(r, "AWS_SM_STS_ENDPOINT");

    const char *dbsync = config_str(r, "AURORA_DB_SYNC");
    if (dbsync && strcmp(dbsync, "full") && strcmp(dbsync, "normal")) {
        snprintf(err, errlen, "AURORA_DB_SYNC must be 'full' or 'normal'");
        goto fail;
    }
    /* Read by server.c only to pick the loop: a typo there quietly meant
     * lws's O(connections) poll loop for a fleet sized for epoll. */
    const char *loop = config_str(r, "AURORA_EVENT_LOOP");
    if (loop && *loop && strcmp(loop, "libev") && strcmp(loop, "poll")) {
        snprintf(err, errlen, "AURORA_EVENT_LOOP must be 'libev' or 'poll'");
        goto fail;
    }
    if (strcmp(c->env, "development") && strcmp(c->env, "production")) {
        snprintf(err, errlen, "AURORA_ENV must be 'development' or 'production'");
        goto fail;
    }
    if (!in_range(err, errlen, "AURORA_PORT", c->port, 0, 65535) ||
        !in_range(err, errlen, "AURORA_OPS_PORT", c->ops_port, 0, 65535) ||
        !in_range(err, errlen, "AURORA_INTERNAL_PORT", c->internal_port, 0, 65535) ||
        !in_range(err, errlen, "AURORA_WORKERS", c->workers, 1, 256) ||
        !in_range(err, errlen, "AURORA_OUTBOUND_WORKERS", c->outbound_workers, 1, 256) ||
        !in_range(err, errlen, "AURORA_OUTBOUND_PER_ORG", c->outbound_per_org, 0, 256) ||
        !in_range(err, errlen, "AURORA_MAX_BODY", c->max_body, 1024, 1 << 30) ||
        !in_range(err, errlen, "AURORA_LEGACY_MAX_FRAME", c->legacy_max_frame, 65536, 1 << 30) ||
        !in_range(err, errlen, "AURORA_AGENT_ASSEMBLY_BUDGET", c->assembly_budget, 65536, 1LL << 40) ||
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
        !in_range(err, errlen, "AURORA_OAUTH_STATE_TTL", config_int(r, "AURORA_OAUTH_STATE_TTL"), 1, 86400))
        goto fail;

    /* A typo in the proxies' list would quietly attribute every request to
     * its proxy (or trust the wrong host): refused at start, entry named. */
    client_addr_trust trust;
    if (client_addr_trust_parse(config_str(r, "AURORA_TRUSTED_PROXIES"), &trust, err, errlen) < 0)
        goto fail;
    client_addr_trust_free(&trust);

    /* Each connector's own judgement of its settings (connector.check_settings). */
    for (size_t i = 0; i < connector_count(); i++) {
        const connector *cn = connector_at(i);
        if (cn->check_settings && cn->check_settings(r, err, errlen) < 0)
            goto fail;
    }

    /* A shared port takes every process's connections: the replicas must
     * reach each other somewhere the kernel does not share. */
    if (c->internal_port && (c->internal_port == c->port || c->internal_port == c->ops_port)) {
        snprintf(err, errlen, "AURORA_INTERNAL_PORT must differ from AURORA_PORT and AURORA_OPS_PORT");
        goto fail;
    }
    /* With its own listener, a replica serves forwarded commands there only
     * (the main port 404s them): an address naming another port would make
     * every command forwarded to it fail. */
    if (c->internal_port && !c->listen_share) {
        const char *redis = config_str(r, "AURORA_REDIS_URL");
        const char *addr = config_str(r, "AURORA_INTERNAL_ADDR");
        const char *colon = addr ? strrchr(addr, ':') : NULL;
        if (redis && *redis && colon && atoi(colon + 1) != c->internal_port) {
            snprintf(err, errlen, "AURORA_INTERNAL_ADDR must name AURORA_INTERNAL_PORT (%d): "
                                  "forwarded commands are served on that listener only",
                     c->internal_port);
            goto fail;
        }
    }
    if (c->listen_share) {
        const char *redis = config_str(r, "AURORA_REDIS_URL");
        const char *addr = config_str(r, "AURORA_INTERNAL_ADDR");
        const char *colon = addr ? strrchr(addr, ':') : NULL;
        if (!redis || !*redis) {
            snprintf(err, errlen, "AURORA_LISTEN_SHARE needs AURORA_REDIS_URL: the processes "
                                  "sharing the port are replicas, and a command reaches the "
                                  "one holding its agent through the registry");
            goto fail;
        }
        if (!c->port || !c->internal_port) {
            snprintf(err, errlen, "AURORA_LISTEN_SHARE needs a fixed AURORA_PORT and this "
                                  "process's own AURORA_INTERNAL_PORT");
            goto fail;
        }
        if (colon && atoi(colon + 1) != c->internal_port) {
            snprintf(err, errlen, "with AURORA_LISTEN_SHARE, AURORA_INTERNAL_ADDR must name "
                                  "AURORA_INTERNAL_PORT (%d): a command forwarded to the shared "
                                  "AURORA_PORT could reach any of the processes", c->internal_port);
            goto fail;
        }
    }

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
        c->tls_selfsigned = 1;
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
