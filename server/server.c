/* server.c — one libwebsockets context: HTTPS API + connectors and the WSS
 * agent tunnel on the same port, a worker pool beside it, clean shutdown.
 * Creates the server's parts (pools, tunnel hub, exec context) and hands
 * them down; lws callbacks find them as the context's user data. */
#include "server.h"

#include <arpa/inet.h>
#include <ev.h>
#include <libwebsockets.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn_admission.h"
#include "http.h"
#include "listen_share.h"
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
#include "tls_tickets.h"
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

/* lws sends at most tx_packet_size + LWS_PRE + 4 bytes per send() (with 0,
 * rx_buffer_size: 16,404 here), buffering the rest for the next writable
 * pass.  A streamed answer's 64 KiB writes (http.c) then went out as pieces
 * of 16 KiB + 20 bytes: two TLS records each, the second of 20 bytes, and a
 * loop pass per piece.  This lets one send() carry four whole records. */
#define HTTP_TX_PACKET (4 * 16384 - LWS_PRE - 4)

static struct lws_protocols g_protocols[] = {
    /* Index 0 serves HTTP and agents that ask for no subprotocol (legacy).
     * rx_buffer_size is paid by every idle agent: 16 KiB, and tunnel.c
     * reassembles larger messages from the pieces. */
    { "http", server_callback, sizeof(struct pss), 16384, 0, NULL, HTTP_TX_PACKET },
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

/* The ticket key secret, read before the context exists (its TLS setup
 * callback installs the keys). */
static unsigned char g_ticket_secret[TLS_TICKET_SECRET_LEN];
static int g_ticket_period;
static int g_tickets_ok;
/* lws keeps a validity timer per connection by default (a PING after 300 s
 * idle), re-armed on traffic: with 10,000 agents each re-arm is a walk of
 * lws's sorted timer list.  Agents heartbeat and the tunnel's idle sweep
 * drops silent ones, so the vhost's policy turns it off. */
static const uint32_t g_retry_ms[] = { 1000, 3000, 9000 };
static const lws_retry_bo_t g_retry_policy = {
    .retry_ms_table = g_retry_ms,
    .retry_ms_table_count = 3,
    .conceal_count = 3,
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0, /* 0: no validity timer */
    .jitter_percent = 20,
};

/* The event loop: lws's own poll() loop costs O(connections) per round,
 * which at 10,000 agents is milliseconds for every request; with
 * AURORA_EVENT_LOOP=libev (the default) lws runs on this libev loop
 * (epoll).  NULL: lws's poll loop (the setting, or libev's lws plugin
 * missing). */
static struct ev_loop *g_loop;
static ev_timer g_round_timer;

static void round_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void loop_release(void)
{
    if (g_loop)
        ev_loop_destroy(g_loop);
    g_loop = NULL;
}

/* One round of service: waits for something to do, at most timeout_ms
 * when > 0. */
static int service_round(int timeout_ms)
{
    if (!g_loop)
        return lws_service(g_ctx, timeout_ms);
    if (timeout_ms > 0) {
        ev_timer_set(&g_round_timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(g_loop, &g_round_timer);
    }
    ev_run(g_loop, EVRUN_ONCE);
    if (timeout_ms > 0)
        ev_timer_stop(g_loop, &g_round_timer);
    return 0;
}

/* How forwarded commands verify the peer replica (forward_peer), and the
 * file that says whom to trust. */
static forward_peer_mode g_peer_mode;
static const char *g_peer_file;

/* Replaces the trust store of the forwarding client with one of its own:
 * lws filled the context's with the system's CAs, which (peers are reached
 * by IP, with no host name to check) would let any public certificate
 * through.  FORWARD_PEER_CA: the bundle's CAs.  FORWARD_PEER_PINNED: only
 * the first certificate of the file, the one this replica serves, made an
 * anchor on its own by partial-chain trust; the file's other certificates
 * (its issuers) are deliberately left out, or anything they signed would
 * pass too.  Non-zero fails the vhost: better than forwarding unverified. */
static int peer_trust_store(SSL_CTX *ctx)
{
    X509_STORE *store = X509_STORE_new();
    int ok = store != NULL;
    if (ok && g_peer_mode == FORWARD_PEER_CA) {
        ok = X509_STORE_load_locations(store, g_peer_file, NULL) == 1;
    } else if (ok) {
        FILE *f = fopen(g_peer_file, "r");
        X509 *leaf = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
        if (f)
            fclose(f);
        ok = leaf && X509_STORE_add_cert(store, leaf) == 1;
        X509_free(leaf);
        if (ok)
            X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
    }
    if (!ok) {
        X509_STORE_free(store);
        log_error("cannot read %s to verify peer replicas with", g_peer_file);
        return 1;
    }
    SSL_CTX_set_cert_store(ctx, store); /* takes it, frees the old one */
    return 0;
}

/* The main listener when it speaks TLS (it lets plain HTTP in only to
 * redirect it: start_listeners). */
static struct lws_vhost *g_https_vhost;
/* The replicas' listener (AURORA_INTERNAL_PORT): no agent WebSocket on it. */
static struct lws_vhost *g_internal_vhost;

/* A connection of the TLS listener that came in plain text (it is only
 * redirected: https_redirect.c).  The network connection's flag: lws 4.1.6
 * gives an HTTP/2 stream's wsi the vhost's TLS flag whatever the connection
 * under it is. */
static int plain_on_tls_port(struct lws *wsi)
{
    return g_https_vhost && lws_get_vhost(wsi) == g_https_vhost &&
           !lws_is_ssl(lws_get_network_wsi(wsi));
}

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
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        /* wsi is the listener: the operations port is never refused, so
         * probes keep their answers during a storm */
        if (g_ops_vhost && lws_get_vhost(wsi) == g_ops_vhost)
            return 0;
        return conn_admission_filter();
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (!(g_ops_vhost && lws_get_vhost(wsi) == g_ops_vhost))
            conn_admission_begin(wsi);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        conn_admission_over(wsi);
        break;
    case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
        conn_admission_over(wsi); /* the request's headers are in: the handshake is over */
        break;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* WebSocket is only for agents.  This server's agent uses
         * PROTO_PATH; the existing agent (no subprotocol) is accepted on any
         * path, as the existing server does: its chart's default endpoint
         * has none.  The token is checked at ESTABLISHED either way. */
        char uri[64] = "";
        conn_admission_over(wsi);
        if (g_ops_vhost && lws_get_vhost(wsi) == g_ops_vhost)
            return 1;
        if (plain_on_tls_port(wsi))
            return 1; /* ws:// on the TLS port: agents and their tokens use TLS */
        if (g_internal_vhost && lws_get_vhost(wsi) == g_internal_vhost)
            return 1; /* agents dial the main port; the replicas' one serves them nothing */
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0)
            return 1;
        return strcmp(uri, PROTO_PATH) != 0 && is_v2(wsi);
    }
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* No HTTP/2 (ALPN offers http/1.1 only): lws would answer an
         * Upgrade: h2c with 101 and serve the request on streams of its own,
         * in plain text too.  And a plain connection on the TLS port is
         * upgraded to nothing.  -1: lws hangs up. */
        if (plain_on_tls_port(wsi) || (in && !strcasecmp((const char *)in, "h2c")))
            return -1;
        return 0;
    case LWS_CALLBACK_RAW_ADOPT:
        /* a CONNECT request: lws makes the connection a raw socket, which
         * nothing here serves; held, it would only wait for a timeout */
        return -1;
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
        conn_admission_over(wsi);
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

    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        /* the main vhost's server SSL_CTX, made before any connection.
         * An idle agent's TLS read and write buffers (~34 KiB) are given
         * back between records: with 10,000 agents that is most of the
         * memory they would hold. */
        SSL_CTX_set_mode((SSL_CTX *)user, SSL_MODE_RELEASE_BUFFERS);
        if (g_tickets_ok && tls_tickets_install((SSL_CTX *)user, g_ticket_secret,
                                                g_ticket_period) < 0)
            log_warn("TLS session tickets not set up: reconnecting agents do full handshakes");
        return 0;
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        /* The client side is forward.c's connections to peer replicas. */
        return g_peer_mode == FORWARD_PEER_NONE ? 0 : peer_trust_store((SSL_CTX *)user);
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* no tunnel connection is in a callback here: exec frames go out now */
        tunnel_hub_write_now(parts_of(wsi)->tunnels, 1);
        workers_drain_completions(parts_of(wsi)->pool);
        tunnel_hub_write_now(parts_of(wsi)->tunnels, 0);
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

/* Outbound worker: the secrets backend's credential upkeep (secrets_maintain). */
static long secrets_upkeep(worker_ctx *w)
{
    long s = secrets_maintain(w->secrets);
    return s > 0 ? s : PERIODIC_MAX_DELAY_S;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = g_stop ? 2 : 1; /* 2: a second signal, stop without waiting (drain_commands) */
    if (g_ctx)
        lws_cancel_service(g_ctx);
}

/* At the first SIGTERM: new commands are refused (503 SERVER_SHUTTING_DOWN)
 * while the loop keeps serving those already running, and their answers
 * until the client's connection has written their last byte (a slow reader
 * otherwise lost the end of a stream as the server stopped), for at most
 * drain_s seconds or until a second signal; the agent sessions are closed
 * only after, so a rollout of the server does not cut the commands it
 * happens to be running. */
static void drain_commands(exec_ctx *x, int drain_s)
{
    exec_ctx_drain(x);
    int64_t busy = exec_ctx_busy(x);
    if (drain_s <= 0 || busy == 0)
        return;
    log_info("shutting down: draining %lld running command(s), up to %d s (a second signal "
             "stops waiting)",
             (long long)busy, drain_s);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t end_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + (int64_t)drain_s * 1000;
    for (;;) {
        if (g_stop > 1) {
            log_info("shutting down: second signal, %lld command(s) not waited for",
                     (long long)exec_ctx_busy(x));
            return;
        }
        if (exec_ctx_busy(x) == 0) {
            log_info("shutting down: the running commands have ended");
            return;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t left = end_ms - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
        if (left <= 0) {
            log_info("shutting down: %lld command(s) still running after %d s "
                     "(AURORA_SHUTDOWN_DRAIN_S)",
                     (long long)exec_ctx_busy(x), drain_s);
            return;
        }
        if (service_round(left < 200 ? (int)left : 200) < 0)
            return;
    }
}

/* lws writes some of its lines for a client's bad request before any code of
 * ours sees it (an upgrade with a malformed Sec-WebSocket-Protocol: an error
 * line, no access line): anyone could write error lines as fast as they
 * connect.  At most LWS_LOG_LINES a window reach the log; the next line
 * written says how many were left out. */
#define LWS_LOG_LINES 10
#define LWS_LOG_WINDOW_MS 1000
static pthread_mutex_t g_lws_log_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_lws_log_window;
static unsigned g_lws_log_lines, g_lws_log_left_out;

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    unsigned left_out = 0;
    pthread_mutex_lock(&g_lws_log_mu);
    if (now - g_lws_log_window >= LWS_LOG_WINDOW_MS) {
        g_lws_log_window = now;
        g_lws_log_lines = 0;
    }
    int keep = g_lws_log_lines < LWS_LOG_LINES;
    if (keep) {
        g_lws_log_lines++;
        left_out = g_lws_log_left_out;
        g_lws_log_left_out = 0;
    } else {
        g_lws_log_left_out++;
    }
    pthread_mutex_unlock(&g_lws_log_mu);
    if (!keep)
        return;
    if (left_out)
        log_warn("lws: %u more line(s) left out (at most %d a second)", left_out, LWS_LOG_LINES);
    log_msg(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws: %.*s", (int)n, line);
}

/* The address lws is asked to bind.  libwebsockets 4.1 (Debian 12) listens
 * on an IPv6 socket and, given an IPv4 literal such as 127.0.0.1, silently
 * binds in6addr_any: every interface, the opposite of what the operator
 * asked for.  The same address written IPv4-mapped (::ffff:127.0.0.1) is
 * bound exactly and still takes IPv4 connections.  0.0.0.0 stays as it is
 * (all interfaces, both families); names and IPv6 literals pass through. */
static const char *lws_bind_address(const char *bind, char *out, size_t cap)
{
    struct in_addr a;
    if (!bind || !*bind || !strcmp(bind, "0.0.0.0") || inet_pton(AF_INET, bind, &a) != 1)
        return bind;
    snprintf(out, cap, "::ffff:%s", bind);
    return out;
}

/* The listeners of a new context: the main vhost (as info describes it), the
 * replicas' own one on AURORA_INTERNAL_PORT, the shared accept of
 * AURORA_LISTEN_SHARE and the operations vhost.  -1 (logged) when one
 * cannot start; the caller tears the context down. */
static int start_listeners(const server_config *cfg, const struct lws_context_creation_info *info)
{
    /* lws keeps these pointers for the vhosts' lifetime */
    static char bind_internal[64], bind_ops[64];
    char err[512];
    /* The main listener lets a connection that opens in plain text through
     * (not the internal one, which only replicas reach), to send a browser
     * that followed an http:// redirect URI to https (https_redirect.c);
     * such a connection is served nothing else, and no WebSocket. */
    struct lws_context_creation_info mi = *info;
    if (!cfg->plain_http)
        mi.options |= LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT |
                      LWS_SERVER_OPTION_ALLOW_HTTP_ON_HTTPS_LISTENER;
    struct lws_vhost *main_vh = lws_create_vhost(g_ctx, &mi);
    if (!main_vh) {
        log_error("cannot start the listener on %s:%d (port in use, or bad TLS files %s / %s)",
                  cfg->bind, cfg->port, cfg->tls_cert, cfg->tls_key);
        return -1;
    }
    g_https_vhost = cfg->plain_http ? NULL : main_vh;
    http_set_https_vhost(g_https_vhost);
    if (cfg->internal_port) {
        struct lws_context_creation_info ii = *info;
        ii.vhost_name = "internal";
        ii.port = cfg->internal_port;
        ii.iface = lws_bind_address(cfg->bind, bind_internal, sizeof(bind_internal));
        struct lws_vhost *internal_vh = lws_create_vhost(g_ctx, &ii);
        if (!internal_vh) {
            log_error("cannot start the internal listener on %s:%d (AURORA_INTERNAL_PORT in use?)",
                      cfg->bind, cfg->internal_port);
            return -1;
        }
        /* /internal/forward/exec is served here only, not on the main port;
         * no agent WebSocket is accepted here */
        g_internal_vhost = internal_vh;
        http_set_internal_vhost(internal_vh);
        log_info("internal listener (forwarded commands) on %s:%d", cfg->bind, cfg->internal_port);
    }
    if (cfg->listen_share) {
        if (!g_loop) {
            log_error("AURORA_LISTEN_SHARE needs the libev event loop (AURORA_EVENT_LOOP=libev "
                      "and libwebsockets' evlib_ev)");
            return -1;
        }
        if (!main_vh ||
            listen_share_start(g_loop, main_vh, info, cfg->bind, cfg->port, err, sizeof(err)) <
                0) {
            log_error("%s", main_vh ? err : "the main vhost is missing");
            return -1;
        }
        log_info("AURORA_PORT %d is shared (SO_REUSEPORT) with the other processes bound to it",
                 cfg->port);
    }
    if (cfg->ops_port) {
        const char *ops_bind = server_setting(cfg, "AURORA_OPS_BIND");
        struct lws_context_creation_info oi;
        memset(&oi, 0, sizeof(oi));
        oi.vhost_name = "ops";
        oi.port = cfg->ops_port;
        const char *ops_addr = ops_bind && *ops_bind ? ops_bind : cfg->bind;
        oi.iface = lws_bind_address(ops_addr, bind_ops, sizeof(bind_ops));
        oi.protocols = g_ops_protocols;
        oi.timeout_secs = 10;
        g_ops_vhost = lws_create_vhost(g_ctx, &oi);
        if (!g_ops_vhost) {
            log_error("cannot start the operations listener on %s:%d (AURORA_OPS_PORT in use?)",
                      ops_addr, cfg->ops_port);
            return -1;
        }
        http_set_ops_vhost(g_ops_vhost);
        log_info("operations listener (/health, /ready, /metrics) on http://%s:%d", ops_addr,
                 cfg->ops_port);
    }
    return 0;
}

int server_run(server_config *cfg)
{
    char err[512];
    /* The event loop never waits for whoever reads stderr (log.h). */
    log_never_block(1);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    /* Only the default pair: files the operator named (in the environment
     * or the AURORA_CONFIG file) are theirs, never made up here. */
    if (!cfg->plain_http && cfg->tls_selfsigned) {
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
    /* a client must keep taking what it is sent (answers, streams): what is
     * held for one that stops is released when this runs out */
    http_set_send_timeout((int)server_setting_int(cfg, "AURORA_HTTP_SEND_TIMEOUT_S"));
    /* whose X-Forwarded-For names the client (validated at load: cannot fail) */
    if (http_set_trusted_proxies(server_setting(cfg, "AURORA_TRUSTED_PROXIES")) < 0)
        return 1;
    router_reset();
    modules_register_all();

    admission_opts ao = {
        .max_pending = (int)server_setting_int(cfg, "AURORA_MAX_PENDING_HANDSHAKES"),
        .accept_rate = (double)server_setting_int(cfg, "AURORA_ACCEPT_RATE"),
        .handshake_timeout_s = (int)server_setting_int(cfg, "AURORA_HANDSHAKE_TIMEOUT"),
    };
    if (conn_admission_init(&ao) < 0) {
        log_error("out of memory");
        return 1;
    }
    g_tickets_ok = 0;
    if (!cfg->plain_http) {
        char tk[1024];
        const char *tkf = server_setting(cfg, "AURORA_TLS_TICKET_KEY_FILE");
        if (!tkf) {
            snprintf(tk, sizeof(tk), "%s/tls-ticket.key", cfg->data_dir);
            tkf = tk;
        }
        g_ticket_period = (int)server_setting_int(cfg, "AURORA_TLS_TICKET_ROTATE");
        if (tls_ticket_secret_load(tkf, g_ticket_secret, err, sizeof(err)) < 0) {
            log_error("%s", err);
            conn_admission_free();
            return 1;
        }
        g_tickets_ok = 1;
    }

    server_parts sv = { 0 };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.user = &sv;
    /* A shared port's socket is listen_share.c's: the main vhost only
     * adopts what it accepts. */
    info.port = cfg->listen_share ? CONTEXT_PORT_NO_LISTEN_SERVER : cfg->port;
    static char bind_main[64]; /* lws keeps the pointer */
    info.iface = lws_bind_address(cfg->bind, bind_main, sizeof(bind_main));
    info.protocols = g_protocols;
    info.alpn = "http/1.1";
    info.timeout_secs = 30;
    /* lws's default (5 s) equals the idle timeout of Node's HTTP agent and
     * is shorter than a load balancer's: a client or proxy reusing the
     * connection just as the server closes it got a reset. */
    info.keepalive_timeout = (int)server_setting_int(cfg, "AURORA_HTTP_KEEPALIVE_S");
    /* lws reads a connection into this one per-thread buffer, at most
     * pt_serv_buf_size at a time.  Its 4 KiB default cut every 16 KiB TLS
     * record from an agent into four SSL_reads, each a loop pass through
     * lws's parser and tunnel.c.  lws caps a WebSocket read at the
     * protocol's rx_buffer_size (16 KiB) + LWS_PRE and an HTTP read at this
     * size less LWS_PRE: either way a whole record now.  One buffer per
     * service thread: the 10,000th agent costs nothing more. */
    info.pt_serv_buf_size = 16384 + LWS_PRE;
    info.max_http_header_data = 16384;
    info.max_http_header_pool = 1024;
    info.ka_time = 60;
    info.ka_probes = 3;
    info.ka_interval = 10;
    info.retry_and_idle_policy = &g_retry_policy;
    if (!cfg->plain_http) {
        /* Not the system's CAs: the only TLS client here is forward.c's,
         * which verifies peer replicas against a trust store of its own
         * (peer_trust_store) or, without one, not at all.  Loading and
         * parsing ~150 CA certificates cost every start CPU and the
         * process ~1 MiB for nothing. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
        info.ssl_cert_filepath = cfg->tls_cert;
        /* Forwarded commands (forward.c) are lws client connections of
         * this vhost: they verify the peer replica against this. */
        const char *redis = server_setting(cfg, "AURORA_REDIS_URL");
        if (redis && *redis) /* the trust store is built in the callback below */
            g_peer_mode = forward_peer(cfg, &g_peer_file);
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    /* The context gets explicit vhosts: the main one (as info describes
     * it), and when set a plain-HTTP one for probes and scrapes and the
     * replicas' own listener (the main one's copy on AURORA_INTERNAL_PORT).
     * Explicit also when alone: a context whose implicit vhost cannot bind
     * fails as a whole, which read as "no libev" (the fallback below) and
     * leaked inside lws; a vhost that cannot bind fails on its own. */
    info.options |= LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    const char *evl = server_setting(cfg, "AURORA_EVENT_LOOP");
    void *foreign[1] = { NULL };
    if (!evl || !*evl || !strcmp(evl, "libev")) { /* "": the default, as for the other settings */
        g_loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
        if (g_loop) {
            ev_init(&g_round_timer, round_timer_cb);
            foreign[0] = g_loop;
            info.foreign_loops = foreign;
            info.options |= LWS_SERVER_OPTION_LIBEV;
        }
    }
    g_ctx = lws_create_context(&info);
    if (!g_ctx && g_loop) {
        log_warn("the libev event loop is unavailable (libwebsockets' evlib_ev plugin "
                 "missing?): lws's poll loop serves, at O(connections) per round");
        ev_loop_destroy(g_loop);
        g_loop = NULL;
        info.foreign_loops = NULL;
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
        g_ctx = lws_create_context(&info);
    }
    if (!g_ctx)
        log_error("cannot start libwebsockets (its messages above say why)");
    if (!g_ctx || start_listeners(cfg, &info) < 0) {
        listen_share_stop();
        if (g_ctx)
            lws_context_destroy(g_ctx);
        loop_release();
        g_ctx = NULL;
        g_ops_vhost = NULL;
        http_set_ops_vhost(NULL);
        g_https_vhost = NULL;
        http_set_https_vhost(NULL);
        g_internal_vhost = NULL;
        http_set_internal_vhost(NULL);
        router_reset();
        conn_admission_free();
        return 1;
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
        /* a VAULT_TOKEN with a TTL is renewed before it expires */
        if (periodic_add("secrets-upkeep", WORKER_POOL_OUTBOUND, 1, secrets_upkeep) < 0)
            log_error("secrets: no room for the upkeep task: the credentials are not renewed");
    }
    http_client_set_default_ca(server_setting(cfg, "AURORA_OUTBOUND_CA_FILE"));
    /* The pools first (their stores open, no thread yet), then what submits
     * to them, then the threads, whose jobs may reach both. */
    workers_opts wo = { .cfg = cfg, .secrets = secrets, .notify = wake_loop, .notify_arg = g_ctx };
    sv.pool = workers_new(&wo, err, sizeof(err));
    if (sv.pool) {
        tunnel_hub_opts to = { .cfg = cfg, .lws = g_ctx, .pool = sv.pool,
                               .deadline_grace = cfg->deadline_grace_s,
                               .forward = forward_held, .wall_ms = registry_clock_ms };
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
        listen_share_stop();
        lws_context_destroy(g_ctx);
        loop_release();
        g_ctx = NULL;
        g_ops_vhost = NULL;
        http_set_ops_vhost(NULL);
        g_https_vhost = NULL;
        http_set_https_vhost(NULL);
        g_internal_vhost = NULL;
        http_set_internal_vhost(NULL);
        tunnel_hub_free(sv.tunnels);
        exec_ctx_free(sv.exec);
        server_metrics_watch_workers(NULL);
        workers_free(sv.pool);
        secrets_close(secrets);
        router_reset();
        conn_admission_free();
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    conn_admission_start(g_ctx);
    forward_start(cfg, g_ctx, sv.tunnels);
    instance_schedule(g_ctx, sv.pool);
    periodic_schedule(g_ctx, sv.pool); /* pollers (periodic.h) */
    log_info("aurora-server listening on %s://%s:%d (%s)", cfg->plain_http ? "http" : "https",
             cfg->bind, cfg->port, cfg->env);

    while (!g_stop)
        if (service_round(0) < 0)
            break;

    /* New connections go to the processes still bound to a shared port. */
    listen_share_stop();
    drain_commands(sv.exec, cfg->shutdown_drain_s);
    log_info("shutting down: closing %zu agent session(s)", tunnel_session_count(sv.tunnels));
    tunnel_shutdown(sv.tunnels);
    forward_shutdown(); /* and what this replica forwarded to another */
    /* Let the close frames go out, and the answers of the commands just cut
     * (their callers learn that they may have run), bounded: the drain's
     * time is over. */
    for (int i = 0; i < 50 && (tunnel_session_count(sv.tunnels) || exec_ctx_busy(sv.exec)); i++)
        service_round(20);
    periodic_stop();
    exec_ctx_flush_audit(sv.exec); /* the ends still waiting for a start */
    workers_stop(sv.pool);
    registry_stop(); /* after the workers: their lookup connections are gone */
    server_metrics_watch_workers(NULL);
    instance_stop(cfg); /* after the last audit completion was written */
    secrets_close(secrets);
    conn_admission_stop(); /* before its context goes */
    lws_context_destroy(g_ctx);
    loop_release();
    conn_admission_free(); /* after: closing connections end their handshakes */
    g_ctx = NULL;
    g_ops_vhost = NULL;
    http_set_ops_vhost(NULL);
    g_https_vhost = NULL;
    http_set_https_vhost(NULL);
    g_internal_vhost = NULL;
    http_set_internal_vhost(NULL);
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
