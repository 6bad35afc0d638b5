/* agent_config.c — the aurora-agent settings table, loading and validation. */
#include "agent_config.h"

#include <arpa/inet.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "landlock.h"
#include "log.h"
#include "proto.h"

/* Helm values ↔ settings.  The chart (chart/agent/) passes these as environment
 * variables; the same keys may also come from the YAML file named by
 * AURORA_AGENT_CONFIG (environment wins).
 *
 *   Helm value                        environment variable          YAML key
 *   --------------------------------  ----------------------------  ---------------------------
 *   (server URL)                      NEXT_PUBLIC_WEBSOCKET_URL     server.url
 *   (token secret)                    AURORA_AGENT_TOKEN            agent.token
 *   network.reconnectInterval         AURORA_RECONNECT_INTERVAL     network.reconnect_interval
 *     seconds before the first reconnect; doubles (with jitter) per failed
 *     attempt up to AURORA_RECONNECT_MAX (raised to it if smaller)
 *   network.heartbeatInterval         AURORA_HEARTBEAT_INTERVAL     network.heartbeat_interval
 *   network.commandTimeout            AURORA_COMMAND_TIMEOUT_MAX    exec.command_timeout_max
 *     seconds; every command is killed after this long (the server's own
 *     timeout, when shorter, applies first); also the timeout of a command
 *     that arrives without one
 *   monitoring.logging.level          AURORA_LOG_LEVEL              log.level
 *   monitoring.logging.format         AURORA_LOG_FORMAT             log.format
 *   monitoring.metrics.port           AURORA_METRICS_PORT           metrics.port
 *     /metrics listener; unset = the health port (one listener); 0 = off
 *   (health probe port)               AURORA_HEALTH_PORT            health.port
 *   policy.mode                       AURORA_POLICY_MODE            policy.mode
 *   policy.allow  (list → "a,b")      AURORA_POLICY_ALLOW           policy.allow
 *   policy.deny   (list → "a,b")      AURORA_POLICY_DENY            policy.deny
 *   cloudExec.enabled                 AURORA_CLOUD_EXEC             cloud_exec.enabled
 *   cloudExec.programs (list)         AURORA_CLOUD_PROGRAMS         cloud_exec.programs
 *   sandbox.cliEnv (cli → name → value) AURORA_CLOUD_ENV            cloud_exec.env
 *   sandbox.dir                       AURORA_SANDBOX_DIR            sandbox.dir
 *   sandbox.path                      AURORA_SANDBOX_PATH           sandbox.path
 *   sandbox.uidRange                  AURORA_SANDBOX_UID_RANGE      sandbox.uid_range
 *   sandbox.envPassthrough (list)     AURORA_SANDBOX_ENV_PASSTHROUGH sandbox.env_passthrough
 *   sandbox.landlock                  AURORA_SANDBOX_LANDLOCK       sandbox.landlock
 *   sandbox.readOnlyPaths (list)      AURORA_SANDBOX_READONLY_PATHS sandbox.readonly_paths
 *   sandbox.denyPaths (list)          AURORA_SANDBOX_DENY_PATHS     sandbox.deny_paths
 *   sandbox.allowedPorts (list)       AURORA_SANDBOX_ALLOWED_PORTS  sandbox.allowed_ports
 *   sandbox.limits.cpuSeconds         AURORA_SANDBOX_CPU_SECONDS    sandbox.cpu_seconds
 *   sandbox.limits.memoryMB           AURORA_SANDBOX_MEMORY_MB      sandbox.memory_mb
 *   sandbox.limits.openFiles          AURORA_SANDBOX_NOFILE         sandbox.nofile
 *   sandbox.limits.processes          AURORA_SANDBOX_NPROC          sandbox.nproc
 *   sandbox.limits.fileSizeMB         AURORA_SANDBOX_FSIZE_MB       sandbox.fsize_mb
 *   sandbox.uidSeparation (bool)      runs the pod as root with SETUID/SETGID/CHOWN/KILL/
 *                                     DAC_OVERRIDE/FOWNER only, so uidRange takes effect
 *   proxy.https / proxy.http / proxy.noProxy
 *                                     HTTPS_PROXY / HTTP_PROXY / NO_PROXY (standard
 *                                     variables, no YAML key; see proxy.h)
 */
static const config_def defs[] = {
    {"AURORA_AGENT_CONFIG", NULL, CFG_STRING, NULL,
     "Path of an optional YAML file with these settings (environment wins)", 0},
    {"NEXT_PUBLIC_WEBSOCKET_URL", "server.url", CFG_STRING, NULL,
     "Tunnel endpoint, wss://host:port/kubectl-agent (required)", 0},
    {"AURORA_AGENT_TOKEN", "agent.token", CFG_STRING, NULL,
     "Agent token aurora_kubectl_... (required, secret)", 1},
    {"AGENT_VERSION", "agent.version", CFG_STRING, AGENT_DEFAULT_VERSION,
     "Version string sent in register", 0},
    {"AURORA_ALLOW_INSECURE_WS", "server.allow_insecure_ws", CFG_BOOL, "false",
     "Allow a plain ws:// URL (development only)", 0},
    {"AURORA_CA_FILE", "tls.ca_file", CFG_STRING, NULL,
     "PEM bundle used to verify the server certificate, the only CA trusted when set "
     "(default: system store, SSL_CERT_DIR read on demand or SSL_CERT_FILE)", 0},
    {"AURORA_TLS_INSECURE_SKIP_VERIFY", "tls.insecure_skip_verify", CFG_BOOL, "false",
     "Do not verify the server certificate (insecure)", 0},
    {"AURORA_KUBECTL_PATH", "exec.kubectl_path", CFG_STRING, "kubectl",
     "kubectl program, resolved via PATH at exec time", 0},
    {"AURORA_MAX_CONCURRENT", "exec.max_concurrent", CFG_INT, "16",
     "Most commands running at once; beyond it requests get AGENT_BUSY", 0},
    {"AURORA_COMMAND_TIMEOUT_MAX", "exec.command_timeout_max", CFG_INT, "300",
     "Upper bound in seconds on a command's timeout", 0},
    {"AURORA_MAX_OUTPUT", "exec.max_output", CFG_INT, "10485760",
     "Upper bound in bytes on one command's output (stdout+stderr)", 0},
    {"AURORA_HEARTBEAT_INTERVAL", "network.heartbeat_interval", CFG_INT, "30",
     "Seconds between heartbeats; 3 silent intervals drop the tunnel", 0},
    {"AURORA_RECONNECT_INTERVAL", "network.reconnect_interval", CFG_INT, "1",
     "Seconds before the first reconnect; doubles per failed attempt (with jitter)", 0},
    {"AURORA_RECONNECT_MAX", "network.reconnect_max", CFG_INT, "30",
     "Cap in seconds on the reconnect backoff", 0},
    {"AURORA_POLICY_MODE", "policy.mode", CFG_STRING, "readonly",
     "Commands the server may run: readonly | readwrite | custom", 0},
    {"AURORA_POLICY_ALLOW", "policy.allow", CFG_STRING, NULL,
     "custom mode: comma-separated \"verb\" / \"verb subcommand\" entries, \"*\", \"@readonly\"",
     0},
    {"AURORA_POLICY_DENY", "policy.deny", CFG_STRING, NULL,
     "Comma-separated verbs / \"verb subcommand\" always refused (every mode)", 0},
    {"AURORA_CLOUD_EXEC", "cloud_exec.enabled", CFG_STRING, "enabled",
     "cloud_exec (gcloud/aws/az with the server's short-lived credentials): enabled | disabled",
     0},
    {"AURORA_CLOUD_PROGRAMS", "cloud_exec.programs", CFG_STRING, "gcloud,aws,az",
     "Cloud CLIs the server may run: names looked up in AURORA_SANDBOX_PATH, or name=/abs/path",
     0},
    {"AURORA_CLOUD_ENV", "cloud_exec.env", CFG_STRING, NULL,
     "The operator's variables for one cloud CLI, \"cli:NAME=value\" entries separated by "
     "commas (endpoints, proxies, CA bundles: what the server may not set); never logged", 1},
    {"AURORA_SANDBOX_DIR", "sandbox.dir", CFG_STRING, NULL,
     "Where each cloud command's private HOME/TMPDIR is made (default $TMPDIR, else /tmp)", 0},
    {"AURORA_SANDBOX_PATH", "sandbox.path", CFG_STRING, SANDBOX_DEFAULT_PATH,
     "PATH of cloud commands (absolute entries only)", 0},
    {"AURORA_SANDBOX_UID_RANGE", "sandbox.uid_range", CFG_STRING, SANDBOX_DEFAULT_UID_RANGE,
     "Agent running as root: each cloud command runs as its own uid from lo-hi (\"off\": as "
     "the agent's uid)", 0},
    {"AURORA_SANDBOX_ENV_PASSTHROUGH", "sandbox.env_passthrough", CFG_STRING, NULL,
     "Extra agent environment variables cloud commands inherit (comma-separated names)", 0},
    {"AURORA_SANDBOX_LANDLOCK", "sandbox.landlock", CFG_STRING, SANDBOX_DEFAULT_LANDLOCK,
     "Landlock for cloud commands: auto (when the kernel has it) | required (no cloud_exec "
     "without it) | off", 0},
    {"AURORA_SANDBOX_READONLY_PATHS", "sandbox.readonly_paths", CFG_STRING,
     SANDBOX_DEFAULT_READONLY_PATHS,
     "Landlock: the only paths cloud commands read (and execute), comma-separated; add where a "
     "CLI is installed outside them", 0},
    {"AURORA_SANDBOX_DENY_PATHS", "sandbox.deny_paths", CFG_STRING, SANDBOX_DEFAULT_DENY_PATHS,
     "Landlock: paths cloud commands never reach, even inside the read-only paths (the "
     "ServiceAccount token's " SANDBOX_SA_TOKEN_DIR ", the agent's config file and the sandbox "
     "directory always)", 0},
    {"AURORA_SANDBOX_ALLOWED_PORTS", "sandbox.allowed_ports", CFG_STRING,
     SANDBOX_DEFAULT_ALLOWED_PORTS,
     "Landlock (ABI 4+): the TCP ports cloud commands may connect to, comma-separated, or "
     "\"all\" (an egress proxy's port is added)", 0},
    {"AURORA_SANDBOX_CPU_SECONDS", "sandbox.cpu_seconds", CFG_INT, "120",
     "RLIMIT_CPU of a cloud command, seconds (0 = unlimited)", 0},
    {"AURORA_SANDBOX_MEMORY_MB", "sandbox.memory_mb", CFG_INT, "2048",
     "RLIMIT_AS (address space) of a cloud command, MiB (0 = unlimited)", 0},
    {"AURORA_SANDBOX_NOFILE", "sandbox.nofile", CFG_INT, "256",
     "RLIMIT_NOFILE of a cloud command", 0},
    {"AURORA_SANDBOX_NPROC", "sandbox.nproc", CFG_INT, NULL,
     "RLIMIT_NPROC of a cloud command (counts per uid: default 128 with a uid per command, "
     "4096 when commands share the agent's uid; 0 = unlimited)", 0},
    {"AURORA_SANDBOX_FSIZE_MB", "sandbox.fsize_mb", CFG_INT, "64",
     "RLIMIT_FSIZE (largest file a cloud command may write), MiB (0 = unlimited)", 0},
    {"AURORA_HEALTH_PORT", "health.port", CFG_INT, "8080",
     "Port of the /health and /ready HTTP endpoint (0 disables)", 0},
    {"AURORA_METRICS_PORT", "metrics.port", CFG_INT, NULL,
     "Port of the Prometheus /metrics endpoint (default: the health port; 0 disables)", 0},
    {"AURORA_HEALTH_BIND", "health.bind", CFG_STRING, "0.0.0.0",
     "Address the health endpoint binds to", 0},
    {"AURORA_SHUTDOWN_GRACE", "agent.shutdown_grace", CFG_INT, "20",
     "Seconds running commands get to finish on SIGTERM", 0},
    {"AURORA_LOG_LEVEL", "log.level", CFG_STRING, "info", "debug|info|warn|error", 0},
    {"AURORA_LOG_FORMAT", "log.format", CFG_STRING, "text", "text|json", 0},
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

void agent_config_help(FILE *f)
{
    fprintf(f, "Usage: aurora-agent [--help]\n\n"
               "Keeps an outbound WebSocket tunnel to the Aurora server and runs the\n"
               "kubectl and cloud_exec commands it sends. Settings (environment variables; YAML keys\n"
               "in the file named by AURORA_AGENT_CONFIG):\n\n");
    config_print_help(f, defs, NDEFS);
}

static char *dup_or_null(const char *s)
{
    return (s && *s) ? strdup(s) : NULL;
}

/* Splits ws[s]://host[:port][/path] into the config. */
static int parse_url(agent_config *ac, const char *url, char *err, size_t errlen)
{
    const char *p;
    if (!strncmp(url, "wss://", 6)) {
        ac->secure = 1;
        p = url + 6;
    } else if (!strncmp(url, "ws://", 5)) {
        ac->secure = 0;
        p = url + 5;
    } else {
        snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL must start with wss:// (got a %s URL)",
                 strchr(url, ':') ? "non-WebSocket" : "scheme-less");
        return -1;
    }
    const char *host_start = p, *host_end;
    int bracketed = *p == '[';
    if (bracketed) { /* IPv6 literal */
        const char *rb = strchr(p, ']');
        if (!rb) {
            snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: unterminated [IPv6] host");
            return -1;
        }
        host_start = p + 1;
        host_end = rb;
        p = rb + 1;
    } else {
        while (*p && *p != ':' && *p != '/' && *p != '?')
            p++;
        host_end = p;
    }
    size_t hl = (size_t)(host_end - host_start);
    if (hl == 0 || hl >= sizeof(ac->host)) {
        snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: missing or too long host");
        return -1;
    }
    memcpy(ac->host, host_start, hl);
    ac->host[hl] = '\0';
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)ac->host[i];
        if (c <= 0x20 || c == '@' || c == '#' || c >= 0x7f) {
            snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: invalid character in host");
            return -1;
        }
    }
    /* Brackets hold an IPv6 address and nothing else (RFC 3986): the tunnel
     * takes a host with a ':' for one (its Host header, SNI and certificate
     * check), so "[example.com]" would be a name in brackets and a zone id
     * ("[fe80::1%25eth0]") would fail every handshake later. */
    struct in6_addr v6;
    if (bracketed && inet_pton(AF_INET6, ac->host, &v6) != 1) {
        snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: [%.60s] must hold an IPv6 address "
                              "(no zone id; a name or IPv4 address goes without brackets)",
                 ac->host);
        return -1;
    }
    ac->port = ac->secure ? 443 : 80;
    if (*p == ':') {
        p++;
        char *endp;
        long port = strtol(p, &endp, 10);
        if (endp == p || port < 1 || port > 65535) {
            snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: invalid port");
            return -1;
        }
        ac->port = (int)port;
        p = endp;
    }
    if (*p == '\0' || !strcmp(p, "/")) {
        snprintf(ac->path, sizeof(ac->path), "%s", PROTO_PATH);
    } else if (*p == '/') {
        if (strlen(p) >= sizeof(ac->path)) {
            snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: path too long");
            return -1;
        }
        snprintf(ac->path, sizeof(ac->path), "%s", p);
    } else if (*p == '?') {
        snprintf(ac->path, sizeof(ac->path), "%s%s", PROTO_PATH, p);
    } else {
        snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: unexpected text after host");
        return -1;
    }
    for (const char *q = ac->path; *q; q++) {
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q == 0x7f) {
            snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL: invalid character in path");
            return -1;
        }
    }
    return 0;
}

static int int_setting(const config_t *c, const char *env, int64_t lo, int64_t hi, int64_t *out,
                       char *err, size_t errlen)
{
    int64_t v = config_int(c, env);
    if (v < lo || v > hi) {
        snprintf(err, errlen, "%s must be between %lld and %lld", env, (long long)lo,
                 (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

int agent_config_load(agent_config *ac, char *err, size_t errlen)
{
    memset(ac, 0, sizeof(*ac));
    const char *yaml = getenv("AURORA_AGENT_CONFIG");
    if (yaml && !*yaml)
        yaml = NULL;

    config_t c;
    memset(&c, 0, sizeof(c));
    if (config_load(&c, defs, NDEFS, yaml, err, errlen) != 0)
        return -1;

    int rc = -1;
    int64_t v;
    const char *s = config_str(&c, "NEXT_PUBLIC_WEBSOCKET_URL");
    if (!s || !*s) {
        snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL is required (wss://host:port%s)",
                 PROTO_PATH);
        goto out;
    }
    ac->url = strdup(s);
    ac->allow_insecure_ws = config_bool(&c, "AURORA_ALLOW_INSECURE_WS");
    if (!ac->url || parse_url(ac, ac->url, err, errlen) != 0)
        goto out;
    if (!ac->secure && !ac->allow_insecure_ws) {
        snprintf(err, errlen, "NEXT_PUBLIC_WEBSOCKET_URL uses plain ws://; use wss:// or set "
                              "AURORA_ALLOW_INSECURE_WS=true (development only)");
        goto out;
    }

    s = config_str(&c, "AURORA_AGENT_TOKEN");
    if (!s || !*s) {
        snprintf(err, errlen, "AURORA_AGENT_TOKEN is required");
        goto out;
    }
    for (const char *q = s; *q; q++) {
        if ((unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e) {
            snprintf(err, errlen, "AURORA_AGENT_TOKEN contains invalid characters");
            goto out;
        }
    }
    if (strlen(s) > 512) {
        snprintf(err, errlen, "AURORA_AGENT_TOKEN is too long");
        goto out;
    }
    ac->token = strdup(s);
    if (!ac->token)
        goto oom;
    token_cluster_id(ac->token, ac->cluster_id);

    ac->version = dup_or_null(config_str(&c, "AGENT_VERSION"));
    if (!ac->version)
        ac->version = strdup(AGENT_DEFAULT_VERSION);
    ac->ca_file = dup_or_null(config_str(&c, "AURORA_CA_FILE"));
    ac->tls_skip_verify = config_bool(&c, "AURORA_TLS_INSECURE_SKIP_VERIFY");
    if (ac->ca_file) {
        FILE *f = fopen(ac->ca_file, "r");
        if (!f) {
            snprintf(err, errlen, "AURORA_CA_FILE %s cannot be read", ac->ca_file);
            goto out;
        }
        fclose(f);
    }
    ac->kubectl_path = dup_or_null(config_str(&c, "AURORA_KUBECTL_PATH"));
    if (!ac->kubectl_path)
        ac->kubectl_path = strdup("kubectl");

    if (int_setting(&c, "AURORA_MAX_CONCURRENT", 1, 4096, &v, err, errlen))
        goto out;
    ac->max_concurrent = (int)v;
    if (int_setting(&c, "AURORA_COMMAND_TIMEOUT_MAX", 1, 7 * 86400, &v, err, errlen))
        goto out;
    ac->command_timeout_max = (int)v;
    if (int_setting(&c, "AURORA_MAX_OUTPUT", 1, (int64_t)1 << 40, &v, err, errlen))
        goto out;
    ac->max_output = v;
    if (int_setting(&c, "AURORA_HEARTBEAT_INTERVAL", 1, 3600, &v, err, errlen))
        goto out;
    ac->heartbeat_interval = (int)v;
    if (int_setting(&c, "AURORA_RECONNECT_INTERVAL", 1, 3600, &v, err, errlen))
        goto out;
    ac->reconnect_interval = (int)v;
    if (int_setting(&c, "AURORA_RECONNECT_MAX", 1, 3600, &v, err, errlen))
        goto out;
    ac->reconnect_max = (int)v;
    if (ac->reconnect_max < ac->reconnect_interval)
        ac->reconnect_max = ac->reconnect_interval;
    if (int_setting(&c, "AURORA_HEALTH_PORT", 0, 65535, &v, err, errlen))
        goto out;
    ac->health_port = (int)v;
    if (config_str(&c, "AURORA_METRICS_PORT")) {
        if (int_setting(&c, "AURORA_METRICS_PORT", 0, 65535, &v, err, errlen))
            goto out;
        ac->metrics_port = (int)v;
    } else {
        ac->metrics_port = ac->health_port;
    }
    if (agent_policy_init(&ac->policy, config_str(&c, "AURORA_POLICY_MODE"),
                          config_str(&c, "AURORA_POLICY_ALLOW"),
                          config_str(&c, "AURORA_POLICY_DENY"), err, errlen) != 0)
        goto out;
    if (ac->policy.mode != POLICY_CUSTOM && ac->policy.nallow > 0)
        log_warn("config: AURORA_POLICY_ALLOW is ignored: it is only used with "
                 "AURORA_POLICY_MODE=custom (mode is %s)", agent_policy_mode_name(ac->policy.mode));
    ac->sandbox_dir = dup_or_null(config_str(&c, "AURORA_SANDBOX_DIR"));
    ac->sandbox_path = dup_or_null(config_str(&c, "AURORA_SANDBOX_PATH"));
    ac->sandbox_uid_range = dup_or_null(config_str(&c, "AURORA_SANDBOX_UID_RANGE"));
    ac->sandbox_passthrough = dup_or_null(config_str(&c, "AURORA_SANDBOX_ENV_PASSTHROUGH"));
    ac->sandbox_landlock = dup_or_null(config_str(&c, "AURORA_SANDBOX_LANDLOCK"));
    /* an empty list is a list (nothing readable, no port): kept as "" */
    s = config_str(&c, "AURORA_SANDBOX_READONLY_PATHS");
    ac->sandbox_readonly = strdup(s ? s : SANDBOX_DEFAULT_READONLY_PATHS);
    s = config_str(&c, "AURORA_SANDBOX_DENY_PATHS");
    ac->sandbox_deny = strdup(s ? s : SANDBOX_DEFAULT_DENY_PATHS);
    s = config_str(&c, "AURORA_SANDBOX_ALLOWED_PORTS");
    ac->sandbox_ports = strdup(s ? s : SANDBOX_DEFAULT_ALLOWED_PORTS);
    ac->config_file = dup_or_null(yaml);
    if (!ac->sandbox_readonly || !ac->sandbox_deny || !ac->sandbox_ports)
        goto oom;
    if (ac->sandbox_landlock && strcmp(ac->sandbox_landlock, "auto") &&
        strcmp(ac->sandbox_landlock, "required") && strcmp(ac->sandbox_landlock, "off")) {
        snprintf(err, errlen, "AURORA_SANDBOX_LANDLOCK must be auto, required or off");
        goto out;
    }
    {
        uint16_t ports[LL_MAX_PORTS];
        int all = 0;
        if (ll_check_paths(ac->sandbox_readonly, "AURORA_SANDBOX_READONLY_PATHS", err, errlen) ||
            ll_check_paths(ac->sandbox_deny, "AURORA_SANDBOX_DENY_PATHS", err, errlen) ||
            ll_parse_ports(ac->sandbox_ports, ports, &all, err, errlen) < 0)
            goto out;
    }
    ac->sandbox.dir = ac->sandbox_dir;
    ac->sandbox.path = ac->sandbox_path;
    ac->sandbox.uid_range = ac->sandbox_uid_range;
    ac->sandbox.passthrough = ac->sandbox_passthrough;
    ac->sandbox.landlock = ac->sandbox_landlock;
    ac->sandbox.readonly_paths = ac->sandbox_readonly;
    ac->sandbox.deny_paths = ac->sandbox_deny;
    ac->sandbox.allowed_ports = ac->sandbox_ports;
    ac->sandbox.config_file = ac->config_file;
    if (int_setting(&c, "AURORA_SANDBOX_CPU_SECONDS", 0, 86400, &v, err, errlen))
        goto out;
    ac->sandbox.cpu_seconds = v;
    if (int_setting(&c, "AURORA_SANDBOX_MEMORY_MB", 0, 1 << 20, &v, err, errlen))
        goto out;
    if (v > 0 && v < 64) {
        snprintf(err, errlen, "AURORA_SANDBOX_MEMORY_MB must be 0 (unlimited) or at least 64");
        goto out;
    }
    ac->sandbox.memory_mb = v;
    if (int_setting(&c, "AURORA_SANDBOX_NOFILE", 16, 1 << 20, &v, err, errlen))
        goto out;
    ac->sandbox.nofile = v;
    ac->sandbox.nproc = -1;
    if (config_str(&c, "AURORA_SANDBOX_NPROC")) {
        if (int_setting(&c, "AURORA_SANDBOX_NPROC", 0, 1 << 22, &v, err, errlen))
            goto out;
        ac->sandbox.nproc = v;
    }
    if (int_setting(&c, "AURORA_SANDBOX_FSIZE_MB", 0, 1 << 20, &v, err, errlen))
        goto out;
    ac->sandbox.fsize_mb = v;
    if (agent_cloud_init(&ac->cloud, config_str(&c, "AURORA_CLOUD_EXEC"),
                         config_str(&c, "AURORA_CLOUD_PROGRAMS"),
                         config_str(&c, "AURORA_CLOUD_ENV"), ac->sandbox_path, err,
                         errlen) != 0)
        goto out;
    if (int_setting(&c, "AURORA_SHUTDOWN_GRACE", 0, 3600, &v, err, errlen))
        goto out;
    ac->shutdown_grace = (int)v;
    ac->health_bind = dup_or_null(config_str(&c, "AURORA_HEALTH_BIND"));
    if (!ac->health_bind)
        ac->health_bind = strdup("0.0.0.0");

    ac->log_level = dup_or_null(config_str(&c, "AURORA_LOG_LEVEL"));
    if (!ac->log_level)
        ac->log_level = strdup("info");
    ac->log_format = dup_or_null(config_str(&c, "AURORA_LOG_FORMAT"));
    if (!ac->log_format)
        ac->log_format = strdup("text");

    if (!ac->version || !ac->kubectl_path || !ac->health_bind || !ac->log_level ||
        !ac->log_format)
        goto oom;
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    config_free(&c);
    if (rc != 0)
        agent_config_free(ac);
    return rc;
}

void agent_config_free(agent_config *ac)
{
    free(ac->url);
    if (ac->token) {
        /* scrub the secret before giving the memory back */
        volatile char *t = ac->token;
        while (*t)
            *t++ = 0;
        free(ac->token);
    }
    free(ac->version);
    free(ac->ca_file);
    free(ac->kubectl_path);
    free(ac->health_bind);
    free(ac->log_level);
    free(ac->log_format);
    agent_policy_free(&ac->policy);
    agent_cloud_free(&ac->cloud);
    free(ac->sandbox_dir);
    free(ac->sandbox_path);
    free(ac->sandbox_uid_range);
    free(ac->sandbox_passthrough);
    free(ac->sandbox_landlock);
    free(ac->sandbox_readonly);
    free(ac->sandbox_deny);
    free(ac->sandbox_ports);
    free(ac->config_file);
    memset(ac, 0, sizeof(*ac));
}
