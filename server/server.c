/* server.c — one libwebsockets context: HTTPS API + connectors and the WSS
 * agent tunnel on the same port, a worker pool beside it, clean shutdown.
 * Creates the server's parts (pools, tunnel hub, exec context) and hands
 * them down; lws callbacks find them as the context's user data. */
#include "server.h"

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "exec.h"
#include "forward.h"
#include "http_client.h"
#include "instance.h"
#include "periodic.h"
#include "log.h"
#include "proto.h"
#include "registry.h"
#include "router.h"
#include "secrets_config.h"
#include "server_metrics.h"
#include "store.h"
#include "tls_selfsigned.h"
#include "tunnel.h"
#include "worker.h"

struct pss {
    struct http_conn http;
    struct tunnel_conn tun;
};

/* What one running server is made of (the lws context's user data). */
typedef struct {
    workers *pool;
    tunnel_hub *tunnels;
    exec_ctx *exec;
} server_parts;

/* Process-wide: signals are delivered to the process, and their handler
 * can only reach the loop through a global. */
static volatile sig_atomic_t g_stop;
static struct lws_context *g_ctx;

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len);

static struct lws_protocols g_protocols[] = {
    /* Index 0 serves HTTP and agents that ask for no subprotocol (legacy).
     * rx_buffer_size is paid by every idle agent: 16 KiB, and tunnel.c
     * reassembles larger messages from the pieces. */
    { "http", server_callback, sizeof(struct pss), 16384, 0, NULL, 0 },
    { PROTO_SUBPROTOCOL_V2, server_callback, sizeof(struct pss), 16384, 0, NULL, 0 },
    /* Commands forwarded to the replica holding the agent (client side). */
    { FORWARD_PROTOCOL, forward_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* The operations listener (AURORA_OPS_PORT) speaks plain HTTP only: no
 * WebSocket subprotocol, and its upgrade requests are refused. */
static struct lws_protocols g_ops_protocols[] = {
    { "http", server_callback, sizeof(struct pss), 4096, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
static struct lws_vhost *g_ops_vhost;

/* lws binds the vhost's copy of the protocol table: compare names. */
static int is_v2(struct lws *wsi)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);
    return p && p->name && !strcmp(p->name, PROTO_SUBPROTOCOL_V2);
}

static server_parts *parts_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len)
{
    struct pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* WebSocket is only for agents.  This server's agent uses
         * PROTO_PATH; the existing agent (no subprotocol) is accepted on any
         * path, as the existing server does: its chart's default endpoint
         * has none.  The token is checked at ESTABLISHED either way. */
        char uri[64] = "";
        if (g_ops_vhost && lws_get_vhost(wsi) == g_ops_vhost)
            return 1;
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0)
            return 1;
        return strcmp(uri, PROTO_PATH) != 0 && is_v2(wsi);
    }
    case LWS_CALLBACK_ESTABLISHED:
        return tunnel_on_established(parts_of(wsi)->tunnels, wsi, &p->tun, is_v2(wsi));
    case LWS_CALLBACK_RECEIVE:
        return tunnel_on_receive(wsi, &p->tun, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return tunnel_on_writeable(wsi, &p->tun);
    case LWS_CALLBACK_CLOSED:
        tunnel_on_closed(wsi, &p->tun);
        return 0;

    case LWS_CALLBACK_HTTP:
        return http_on_request(wsi, &p->http, in);
    case LWS_CALLBACK_HTTP_BODY:
        return http_on_body(wsi, &p->http, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return http_on_body_done(wsi, &p->http);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_on_writeable(wsi, &p->http);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p)
            http_on_closed(wsi, &p->http);
        return 0;

    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        /* The client side is forward.c's connections to peer replicas.  Their
         * trust anchor may be the deployment's own certificate, issued by a CA
         * the file does not hold: any certificate of the file is an anchor. */
        X509_STORE_set_flags(SSL_CTX_get_cert_store((SSL_CTX *)user), X509_V_FLAG_PARTIAL_CHAIN);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        workers_drain_completions(parts_of(wsi)->pool);
        registry_deliver(parts_of(wsi)->tunnels); /* other replicas' revocations */
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Declared in worker.h for http.c, which does not name the pools yet. */
int workers_submit_pool(worker_pool pool, job_run_fn run, job_done_fn done, void *arg)
{
    server_parts *sv = g_ctx ? lws_context_user(g_ctx) : NULL;
    return sv ? workers_submit(sv->pool, pool, run, done, arg) : -1;
}

/* Worker thread: a job finished, wake the loop to run its done(). */
static void wake_loop(void *ctx) { lws_cancel_service(ctx); }

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_ctx)
        lws_cancel_service(g_ctx);
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_msg(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws: %.*s", (int)n, line);
}

int server_run(server_config *cfg)
{
    char err[512];
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    if (!cfg->plain_http && !getenv("AURORA_TLS_CERT")) {
        int rc = tls_ensure_selfsigned(cfg->tls_cert, cfg->tls_key, NULL, err, sizeof(err));
        if (rc < 0) {
            log_error("%s", err);
            return 1;
        }
        if (rc == 1)
            log_info("created self-signed TLS certificate %s", cfg->tls_cert);
    }

    /* Nothing is connected to a process that is just starting, but other
     * replicas sharing the store hold their own agents: instance_start's
     * sweep resets only the connection rows of instances that are gone. */
    store_t *st = NULL;
    if (store_open(cfg->database_url, &st, err, sizeof(err)) != STORE_OK) {
        log_error("cannot open the state store: %s", err);
        return 1;
    }
    log_info("state store ready (schema version %d)", store_schema_version(st));
    /* Before serving: this process's audit identity, and the rows of dead
     * predecessors closed as interrupted. */
    if (instance_start(st, cfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        store_close(st);
        return 1;
    }
    store_close(st);

    server_metrics_init(AURORA_VERSION);
    http_set_limits(cfg->max_body);
    router_reset();
    modules_register_all();

    server_parts sv = { 0 };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.user = &sv;
    info.port = cfg->port;
    info.iface = cfg->bind;
    info.protocols = g_protocols;
    info.alpn = "http/1.1";
    info.timeout_secs = 30;
    info.max_http_header_data = 16384;
    info.max_http_header_pool = 1024;
    info.ka_time = 60;
    info.ka_probes = 3;
    info.ka_interval = 10;
    if (!cfg->plain_http) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        /* Forwarded commands (forward.c) are lws client connections of
         * this vhost: they verify the peer replica against this. */
        const char *redis = server_setting(cfg, "AURORA_REDIS_URL");
        if (redis && *redis)
            info.client_ssl_ca_filepath = forward_peer_ca(cfg);
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    /* With an operations port the context gets two explicit vhosts: the
     * main one (as info describes it) and a plain-HTTP one for probes and
     * scrapes.  Without, lws's default vhost is the main one. */
    if (cfg->ops_port)
        info.options |= LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    g_ctx = lws_create_context(&info);
    if (g_ctx && cfg->ops_port && !lws_create_vhost(g_ctx, &info)) {
        lws_context_destroy(g_ctx);
        g_ctx = NULL;
    }
    if (!g_ctx) {
        log_error("cannot start the listener on %s:%d (port in use, or bad TLS files %s / %s)",
                  cfg->bind, cfg->port, cfg->tls_cert, cfg->tls_key);
        router_reset();
        return 1;
    }
    if (cfg->ops_port) {
        const char *ops_bind = server_setting(cfg, "AURORA_OPS_BIND");
        struct lws_context_creation_info oi;
        memset(&oi, 0, sizeof(oi));
        oi.vhost_name = "ops";
        oi.port = cfg->ops_port;
        oi.iface = ops_bind && *ops_bind ? ops_bind : cfg->bind;
        oi.protocols = g_ops_protocols;
        oi.timeout_secs = 10;
        g_ops_vhost = lws_create_vhost(g_ctx, &oi);
        if (!g_ops_vhost) {
            log_error("cannot start the operations listener on %s:%d (AURORA_OPS_PORT in use?)",
                      oi.iface, cfg->ops_port);
            lws_context_destroy(g_ctx);
            g_ctx = NULL;
            router_reset();
            return 1;
        }
        http_set_ops_vhost(g_ops_vhost);
        log_info("operations listener (/health, /ready, /metrics) on http://%s:%d", oi.iface,
                 cfg->ops_port);
    }
    /* A secrets backend that cannot be opened only disables what needs it. */
    secrets_config sc;
    secrets_t *secrets = NULL;
    secrets_config_from_server(cfg, &sc);
    if (secrets_open(&sc, &secrets, err, sizeof(err)) != SECRETS_OK) {
        log_error("secrets backend unavailable, connector credentials cannot be used: %s", err);
        secrets = NULL;
    } else {
        log_info("secrets backend: %s", secrets_backend_name(secrets));
    }
    http_client_set_default_ca(server_setting(cfg, "AURORA_OUTBOUND_CA_FILE"));
    /* The pools first (their stores open, no thread yet), then what submits
     * to them, then the threads, whose jobs may reach both. */
    workers_opts wo = { .cfg = cfg, .secrets = secrets, .notify = wake_loop, .notify_arg = g_ctx };
    sv.pool = workers_new(&wo, err, sizeof(err));
    if (sv.pool) {
        tunnel_hub_opts to = { .cfg = cfg, .lws = g_ctx, .pool = sv.pool,
                               .deadline_grace = TUNNEL_DEADLINE_GRACE_S };
        sv.tunnels = tunnel_hub_new(&to);
        sv.exec = sv.tunnels ? exec_ctx_new(cfg, sv.tunnels, sv.pool) : NULL;
        if (!sv.exec)
            snprintf(err, sizeof(err), "out of memory");
    }
    server_metrics_watch_workers(sv.pool);
    if (!sv.exec || workers_start(sv.pool, sv.exec, sv.tunnels, err, sizeof(err)) < 0 ||
        registry_start(cfg, g_ctx, err, sizeof(err)) < 0) {
        log_error("%s", err);
        if (sv.pool)
            workers_stop(sv.pool);
        registry_stop();
        http_client_set_default_ca(NULL);
        lws_context_destroy(g_ctx);
        g_ctx = NULL;
        g_ops_vhost = NULL;
        http_set_ops_vhost(NULL);
        tunnel_hub_free(sv.tunnels);
        exec_ctx_free(sv.exec);
        server_metrics_watch_workers(NULL);
        workers_free(sv.pool);
        secrets_close(secrets);
        router_reset();
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    forward_start(cfg, g_ctx);
    instance_schedule(g_ctx, sv.pool);
    periodic_schedule(g_ctx, sv.pool); /* pollers (periodic.h) */
    log_info("aurora-server listening on %s://%s:%d (%s)", cfg->plain_http ? "http" : "https",
             cfg->bind, cfg->port, cfg->env);

    while (!g_stop)
        if (lws_service(g_ctx, 0) < 0)
            break;

    log_info("shutting down: closing %zu agent session(s)", tunnel_session_count(sv.tunnels));
    tunnel_shutdown(sv.tunnels);
    /* Let the close frames go out, bounded. */
    for (int i = 0; i < 50 && tunnel_session_count(sv.tunnels); i++)
        lws_service(g_ctx, 20);
    periodic_stop();
    workers_stop(sv.pool);
    registry_stop(); /* after the workers: their lookup connections are gone */
    server_metrics_watch_workers(NULL);
    instance_stop(cfg); /* after the last audit completion was written */
    secrets_close(secrets);
    lws_context_destroy(g_ctx);
    g_ctx = NULL;
    g_ops_vhost = NULL;
    http_set_ops_vhost(NULL);
    /* The connections closed by the destruction released what they held. */
    tunnel_hub_free(sv.tunnels);
    exec_ctx_free(sv.exec);
    workers_free(sv.pool);
    router_reset();
    http_module_cleanup();
    http_client_set_default_ca(NULL);
    log_info("stopped");
    return 0;
}
