/* tunnel.c — the agent's WebSocket client and protocol state machine. */
#include "tunnel.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "buf.h"
#include "ca_store.h"
#include "cloud.h"
#include "crypto.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "peer_text.h"
#include "policy.h"
#include "proto.h"
#include "proxy.h"
#include "resolve.h"
#include "runner.h"
#include "secret.h"
#include "tls_resume.h"
#include "ws_frame.h"

#define STABLE_MS 10000      /* a connection up this long resets the backoff */
#define TICK_MS 1000
#define TICK_SHUTDOWN_MS 100
#define CLOSE_WAIT_MS 5000   /* after sending our close frame */
#define SHUTDOWN_SLACK_MS 10000 /* beyond the grace: cancelled jobs' exec_end must be out */
#define RX_BUFFER 65536
/* One WRITEABLE pass writes at most this much (on_writeable). */
#define WRITE_PASS_FRAMES 16
#define WRITE_PASS_BYTES (128 * 1024)
/* Small frames queued together are framed into one buffer and written at
 * once: one TLS record, one write here and one record for the server to
 * read, instead of one each.  The size of a TLS record's payload. */
#define WRITE_BATCH 16384

/* Host name resolution runs on its own thread (resolve.h is blocking). */
typedef struct {
    pthread_t thr;
    int started;
    atomic_int done;
    atomic_int cancel;
    char name[256];
    resolve_addr addrs[RESOLVE_MAX_ADDRS];
    int n;
    char err[256];
} tunnel_resolver;

struct agent_tunnel {
    const agent_config *cfg;
    agent_runner *runner;    /* runs what the server sends */
    agent_outq *outq;        /* what goes out, drained by WRITEABLE */
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws *wsi;
    int connecting;          /* an attempt or a connection is live (wsi may be set) */
    int established;         /* WebSocket handshake done */
    int got_connected;       /* server's `connected` received */
    int v2;
    int64_t window;          /* initial per-request window */
    uint64_t gen, gen_counter;
    int64_t last_rx, next_hb, connected_at;
    int close_code;
    char close_reason[128];
    agent_backoff bo;
    lws_sorted_usec_list_t sul_connect, sul_tick;
    buf_t rx;
    int rx_binary, rx_skip;
    int close_1009;          /* oversized message: nothing more read is acted on, close
                              * from WRITEABLE (end_for_1009) */
    int rx_paused;           /* reading stopped: the outgoing queue is backlogged */
    int64_t last_drain;      /* while paused: frames last written (the server reads) */
    unsigned pauses;         /* this connection's, for log_sparingly */
    unsigned refused;        /* requests refused on this connection (refusal_logged) */
    int64_t refusal_window;  /* refusal_logged: its window's start */
    unsigned refusal_lines;  /* and the lines logged in it */
    unsigned ignored;        /* messages dropped or ignored on this connection */

    atomic_int stop_req;     /* signals seen */
    int shutting;
    int64_t shutdown_at;
    int cancelled_all;
    int closing;
    int64_t closing_at;
    int killing;
    int done;

    /* Names this process to the server across its reconnections (register's
     * "instance", with "connection" counting them): a server still holding
     * an older connection of it, silently dead, closes that one. */
    char instance[33];
    int64_t connections;

    agent_proxy proxy;       /* egress proxy decision (proxy.h) */
    int resolving;           /* a resolver thread runs for this attempt */
    unsigned addr_rr;        /* rotates through the resolved addresses */
    tunnel_resolver rs;
};

static void rx_wipe(agent_tunnel *t);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A server may send requests to refuse (or garbage) as fast as the socket
 * takes them: 2.6 million warnings in 20 s in a review.  Garbage and
 * ignored messages are logged for the first few of a connection, then every
 * 1000th, with the count (as the server's log_sparingly). */
static int log_sparingly(unsigned *count)
{
    ++*count;
    return *count <= 5 || *count % 1000 == 0;
}

/* Refusals (a policy denial, a full agent, shutting down) are events an
 * operator looks for, at any time of a connection's life: limited in time
 * rather than in count, REFUSAL_LINES per REFUSAL_WINDOW_MS, each line with
 * the connection's count so that the ones left out are accounted for. */
#define REFUSAL_LINES 10
#define REFUSAL_WINDOW_MS 1000
static int refusal_logged(agent_tunnel *t)
{
    int64_t now = now_ms();
    t->refused++;
    if (now - t->refusal_window >= REFUSAL_WINDOW_MS) {
        t->refusal_window = now;
        t->refusal_lines = 0;
    }
    return t->refusal_lines++ < REFUSAL_LINES;
}

static void request_write(agent_tunnel *t)
{
    if (t->wsi && t->established)
        lws_callback_on_writable(t->wsi);
}

static void send_control(agent_tunnel *t, char *json)
{
    if (!json) {
        log_error("tunnel: out of memory encoding a message");
        return;
    }
    agent_outq_push_text(t->outq, json, t->gen, 1);
    free(json);
    request_write(t);
}

/* Drops the live connection from the event loop without waiting for it. */
static void kill_connection(agent_tunnel *t)
{
    if (t->wsi && !t->killing) {
        t->killing = 1;
        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/* ---- reading follows the outgoing queue ------------------------------------ */

/* Every answer the agent queues (a refusal, a command's output, a legacy
 * response) is caused by a message the server sent.  While the queue is
 * backlogged (outq.h: the server is not taking what the agent writes) no
 * more messages are read: what is in the socket stays there, the server's
 * writes block on TCP, and the agent's memory stays bounded however fast the
 * server sends.  Reading resumes once the queue has drained.  Called after
 * each message and after each write pass; the paused connection's liveness
 * is the tick's silence watchdog (a server that never drains it is dropped
 * like a silent one). */
static void rx_flow_update(agent_tunnel *t)
{
    int pause = agent_outq_backlogged(t->outq);
    if (pause == t->rx_paused)
        return;
    t->rx_paused = pause;
    metrics_reading_paused(pause);
    int64_t now = now_ms();
    if (pause) {
        t->last_drain = now;
        if (log_sparingly(&t->pauses))
            log_info("tunnel: %zu bytes wait for the server to read them; no more requests "
                     "are read until they drain (%u pause%s on this connection)",
                     agent_outq_bytes(t->outq), t->pauses, t->pauses == 1 ? "" : "s");
    } else {
        /* nothing was read while paused: that silence was ours */
        t->last_rx = now;
        log_debug("tunnel: the server read the backlog; reading requests again");
    }
    if (t->wsi && t->established)
        lws_rx_flow_control(t->wsi, !pause);
}

/* ---- connect / disconnect -------------------------------------------------- */

static void connect_now(lws_sorted_usec_list_t *sul);

static void schedule_connect(agent_tunnel *t, int64_t delay_ms)
{
    lws_sul_schedule(t->ctx, 0, &t->sul_connect, connect_now, (lws_usec_t)delay_ms * 1000);
}

static void on_disconnect(agent_tunnel *t, const char *why)
{
    if (!t->connecting)
        return;
    int64_t now = now_ms();
    int was_up = t->got_connected;
    int64_t up_ms = t->connected_at ? now - t->connected_at : 0;

    t->connecting = 0;
    t->wsi = NULL;
    t->established = 0;
    t->got_connected = 0;
    metrics_state_set(MS_DISCONNECTED);
    t->killing = 0;
    t->closing = 0;
    rx_wipe(t);
    agent_runner_drop(t->runner, t->gen);
    agent_outq_reset(t->outq, 0); /* nothing is accepted until the next connection */
    /* The backlog went with the connection: nothing is held back now (the
     * next connection starts reading, new_session). */
    t->rx_paused = 0;
    metrics_reading_paused(0);

    if (t->shutting) {
        log_info("tunnel: closed (%s)", why);
        t->done = 1;
        return;
    }
    int64_t delay;
    if (t->close_code == PROTO_CLOSE_POLICY) {
        delay = agent_backoff_cap_ms(&t->bo);
        log_error("tunnel: server refused the agent token (1008 %s); retrying in %.1fs",
                  t->close_reason[0] ? t->close_reason : "policy violation", delay / 1000.0);
    } else {
        if (was_up && up_ms >= STABLE_MS)
            agent_backoff_reset(&t->bo);
        delay = agent_backoff_next_ms(&t->bo);
        if (t->close_code)
            log_warn("tunnel: closed by server (%d%s%s); reconnecting in %.1fs", t->close_code,
                     t->close_reason[0] ? " " : "", t->close_reason, delay / 1000.0);
        else
            log_warn("tunnel: %s; reconnecting in %.1fs", why, delay / 1000.0);
    }
    t->connected_at = 0;
    t->close_code = 0;
    t->close_reason[0] = '\0';
    metrics_reconnect();
    schedule_connect(t, delay);
}

/* ---- a server named by an IPv6 literal, over TLS ---------------------------
 * libwebsockets 4.1 takes the TLS name (the SNI and the certificate's name
 * check) from the Host header, cut at its first ':'.  For an IPv6 literal
 * the Host header RFC 3986/9110 ask for, "[::1]:8443", gives "[", and the
 * bare "::1" sent before gave "": an empty name, which OpenSSL takes as "no
 * name to check", so any certificate the CA signed was accepted.  At the
 * start of each handshake (before the ClientHello is written) the
 * connection's SNI is cleared (RFC 6066: an IP literal is never sent as SNI)
 * and the certificate is checked against the address (its IP SAN).  The
 * name lws set ("[", which nothing matches) is dropped only once the
 * address check is in place: should that fail, so does the handshake. */
static int g_tunnel_ex_idx = -1;
static void (*g_info_next)(const SSL *, int, int);

static void tls_name_on_info(const SSL *cssl, int where, int ret)
{
    SSL *ssl = (SSL *)cssl;
    if (where & SSL_CB_HANDSHAKE_START) {
        const agent_tunnel *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_tunnel_ex_idx);
        if (t && strchr(t->cfg->host, ':')) {
            SSL_set_tlsext_host_name(ssl, NULL);
            if (!t->cfg->tls_skip_verify) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
                if (X509_VERIFY_PARAM_set1_ip_asc(vp, t->cfg->host) == 1)
                    X509_VERIFY_PARAM_set1_host(vp, NULL, 0);
            }
        }
    }
    if (g_info_next)
        g_info_next(cssl, where, ret);
}

/* After tls_resume_attach: its info callback is called on from ours. */
static void tls_name_attach(SSL_CTX *ctx, agent_tunnel *t)
{
    if (g_tunnel_ex_idx < 0)
        g_tunnel_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX_set_ex_data(ctx, g_tunnel_ex_idx, t);
    void (*cur)(const SSL *, int, int) = SSL_CTX_get_info_callback(ctx);
    if (cur != tls_name_on_info) {
        g_info_next = cur;
        SSL_CTX_set_info_callback(ctx, tls_name_on_info);
    }
}

/* Opens the WebSocket to ip (the server's address, or the proxy's when one is
 * used: the proxy then resolves the server's name itself). */
static void connect_to(agent_tunnel *t, const char *ip)
{
    const agent_config *c = t->cfg;
    /* The host as a URI writes it: an IPv6 literal (the only host holding a
     * ':', agent_config) in brackets, in Host, in the proxy's CONNECT line
     * (lws writes i.address there) and in the log. */
    int v6 = strchr(c->host, ':') != NULL;
    char authority[300];
    snprintf(authority, sizeof(authority), "%s%s%s", v6 ? "[" : "", c->host, v6 ? "]" : "");
    char hosthdr[310];
    if (c->port == (c->secure ? 443 : 80))
        snprintf(hosthdr, sizeof(hosthdr), "%s", authority);
    else
        snprintf(hosthdr, sizeof(hosthdr), "%s:%d", authority, c->port);

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = t->ctx;
    i.vhost = t->vh;
    /* The numeric address goes to the socket (no name lookup inside lws, so
     * no NSS in a static binary); the name stays in Host, SNI and the
     * certificate check (lws takes those from i.host; an IPv6 literal's
     * are set by tls_name_on_info). */
    i.address = t->proxy.use ? authority : ip;
    i.port = c->port;
    i.path = c->path;
    i.host = hosthdr;
    i.origin = NULL;
    i.protocol = PROTO_SUBPROTOCOL_V2;
    i.local_protocol_name = PROTO_SUBPROTOCOL_V2;
    i.alpn = "http/1.1";
    i.pwsi = &t->wsi;
    i.opaque_user_data = t;
    /* A 3xx answer to the upgrade is a failed attempt, never followed:
     * libwebsockets would open the Location, any host, and send it the
     * handshake headers again (the token in Authorization).  The tunnel
     * endpoint never redirects an agent; an ingress or a single sign-on
     * gate in front of it that does must not get the token sent on. */
    i.ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
    if (c->secure) {
        i.ssl_connection |= LCCSCF_USE_SSL;
        if (c->tls_skip_verify)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_INSECURE | LCCSCF_ALLOW_EXPIRED;
    }
    if (t->proxy.use) {
        /* "user:pass@ip:port" (lws sends Proxy-Authorization: basic …) */
        char spec[400];
        const char *ui = t->proxy.userinfo ? t->proxy.userinfo : "";
        if (strchr(ip, ':'))
            snprintf(spec, sizeof(spec), "%s%s[%s]:%d", ui, *ui ? "@" : "", ip, t->proxy.port);
        else
            snprintf(spec, sizeof(spec), "%s%s%s:%d", ui, *ui ? "@" : "", ip, t->proxy.port);
        int bad = lws_set_proxy(t->vh, spec) != 0;
        memset(spec, 0, sizeof(spec));
        if (bad) {
            on_disconnect(t, "the proxy setting was refused by libwebsockets");
            return;
        }
        log_info("tunnel: connecting to %s://%s:%d%s through the proxy %s (%s)",
                 c->secure ? "wss" : "ws", authority, c->port, c->path, t->proxy.display, ip);
    } else if (strcmp(ip, c->host)) {
        log_info("tunnel: connecting to %s://%s:%d%s (%s)", c->secure ? "wss" : "ws", authority,
                 c->port, c->path, ip);
    } else {
        log_info("tunnel: connecting to %s://%s:%d%s", c->secure ? "wss" : "ws", authority,
                 c->port, c->path);
    }
    metrics_state_set(MS_CONNECTING);
    t->last_rx = now_ms();
    if (!lws_client_connect_via_info(&i))
        on_disconnect(t, "connection attempt failed");
}

static void *resolve_main(void *arg)
{
    agent_tunnel *t = arg;
    resolve_opts o;
    memset(&o, 0, sizeof(o));
    o.cancel = &t->rs.cancel;
    t->rs.n = agent_resolve(t->rs.name, &o, t->rs.addrs, RESOLVE_MAX_ADDRS, t->rs.err,
                            sizeof(t->rs.err));
    atomic_store(&t->rs.done, 1);
    if (t->ctx)
        lws_cancel_service(t->ctx);
    return NULL;
}

static void resolve_join(agent_tunnel *t)
{
    if (t->rs.started) {
        pthread_join(t->rs.thr, NULL);
        t->rs.started = 0;
    }
}

/* On the loop: the resolver finished → connect, or fail this attempt. */
static void check_resolution(agent_tunnel *t)
{
    if (!t->resolving || !atomic_load(&t->rs.done))
        return;
    resolve_join(t);
    t->resolving = 0;
    if (t->shutting)
        return;
    if (t->rs.n <= 0) {
        char why[320];
        snprintf(why, sizeof(why), "%s",
                 t->rs.err[0] ? t->rs.err : "cannot resolve the host name");
        on_disconnect(t, why);
        return;
    }
    const resolve_addr *a = &t->rs.addrs[t->addr_rr++ % (unsigned)t->rs.n];
    log_debug("tunnel: %s resolved to %d address%s, using %s", t->rs.name, t->rs.n,
              t->rs.n == 1 ? "" : "es", a->ip);
    connect_to(t, a->ip);
}

/* A new connection generation: the queue takes frames of this one only. */
static void new_session(agent_tunnel *t)
{
    t->gen = ++t->gen_counter;
    agent_outq_reset(t->outq, t->gen);
    t->close_code = 0;
    t->close_reason[0] = '\0';
    t->established = t->got_connected = t->killing = t->closing = t->close_1009 = 0;
    t->rx_paused = 0; /* a new connection reads; the queue was reset with it */
    metrics_reading_paused(0);
    t->pauses = t->refused = t->ignored = t->refusal_lines = 0;
    t->refusal_window = 0;
    t->v2 = 0;
    t->window = PROTO_DEFAULT_WINDOW;
    t->connecting = 1;
    t->last_rx = now_ms();
}

static void connect_now(lws_sorted_usec_list_t *sul)
{
    agent_tunnel *t = lws_container_of(sul, agent_tunnel, sul_connect);
    if (t->shutting || t->connecting)
        return;
    new_session(t);

    /* the name to resolve: the proxy's when one is used, else the server's */
    const char *name = t->proxy.use ? t->proxy.host : t->cfg->host;
    unsigned char bin[16];
    if (inet_pton(AF_INET, name, bin) == 1 || inet_pton(AF_INET6, name, bin) == 1) {
        connect_to(t, name);
        return;
    }
    snprintf(t->rs.name, sizeof(t->rs.name), "%s", name);
    t->rs.n = 0;
    t->rs.err[0] = '\0';
    atomic_store(&t->rs.done, 0);
    atomic_store(&t->rs.cancel, 0);
    metrics_state_set(MS_RESOLVING);
    if (pthread_create(&t->rs.thr, NULL, resolve_main, t) != 0) {
        on_disconnect(t, "cannot start the resolver thread");
        return;
    }
    t->rs.started = 1;
    t->resolving = 1;
}

/* ---- incoming messages ----------------------------------------------------- */

static void reply_exec_end(agent_tunnel *t, uint32_t id, int rc, const char *error,
                           const char *code)
{
    send_control(t, proto_enc_exec_end(id, rc, error, code, 0, 0, 0));
}

static void reply_legacy(agent_tunnel *t, const char *command_id, const char *error, int rc)
{
    char *json = proto_enc_command_response(command_id, 0, "", 0, error, rc);
    if (json) {
        agent_outq_push_text(t->outq, json, t->gen, 0);
        free(json);
        request_write(t);
    }
}

static void reply_run_result(agent_tunnel *t, uint32_t id, metrics_kind k, agent_run_result r)
{
    switch (r) {
    case RUN_STARTED:
        break;
    case RUN_BUSY: {
        char err[96];
        snprintf(err, sizeof(err), "agent busy: %d commands already running",
                 t->cfg->max_concurrent);
        if (refusal_logged(t))
            log_warn("exec id=%u refused: %s (%u refusals on this connection)", id, err,
                     t->refused);
        metrics_command(k, MR_BUSY, -1);
        reply_exec_end(t, id, 1, err, EC_BUSY);
        break;
    }
    case RUN_SHUTTING_DOWN:
        if (refusal_logged(t))
            log_info("exec id=%u refused: agent shutting down (%u refusals on this connection)",
                     id, t->refused);
        metrics_command(k, MR_SHUTTING_DOWN, -1);
        reply_exec_end(t, id, 1, "agent shutting down", EC_SHUTTING_DOWN);
        break;
    case RUN_DUPLICATE: {
        /* Answered, or the server's request waits for its own deadline
         * (and takes the running command's end for its own); the running
         * command goes on and still ends with its exec_end.  The refusal
         * goes on the control lane: ahead of that command's queued output. */
        char err[96];
        snprintf(err, sizeof(err), "id %u is already running on this connection", id);
        if (refusal_logged(t))
            log_warn("exec id=%u refused: that id is already running (%u refusals on this "
                     "connection)", id, t->refused);
        metrics_command(k, MR_BAD_REQUEST, -1);
        reply_exec_end(t, id, 1, err, EC_BAD_REQUEST);
        break;
    }
    case RUN_FAILED:
        metrics_command(k, MR_SPAWN_FAILED, -1);
        reply_exec_end(t, id, 127, "agent could not start the command", EC_SPAWN_FAILED);
        break;
    }
}

/* kind cloud_exec: the agent's cloud policy (cloud.h), then the sandbox.
 * Never logs env values; only the program, the verb and variable names. */
static void handle_cloud_exec(agent_tunnel *t, proto_msg *m)
{
    const agent_cloud *c = &t->cfg->cloud;
    agent_policy_decision d;
    if (!agent_cloud_check(c, m->program, m->argv.c, (const char *const *)m->argv.v, m->env,
                           m->nenv, &d)) {
        if (refusal_logged(t))
            log_warn("exec id=%u cloud_exec refused: %s (%u refusals on this connection)", m->id,
                     d.reason, t->refused);
        metrics_policy_denial();
        metrics_command(MK_CLOUD_EXEC, MR_POLICY_DENIED, -1);
        reply_exec_end(t, m->id, POLICY_DENIED_RC, d.reason, EC_POLICY_DENIED);
        return;
    }
    char *path = agent_cloud_path(c, m->program);
    if (!path) {
        char err[200];
        snprintf(err, sizeof(err), "%s is not installed on this agent (not found in %.100s)",
                 m->program, c->search_path ? c->search_path : "");
        if (refusal_logged(t))
            log_warn("exec id=%u cloud_exec: %s (%u refusals on this connection)", m->id, err,
                     t->refused);
        metrics_command(MK_CLOUD_EXEC, MR_SPAWN_FAILED, -1);
        reply_exec_end(t, m->id, 127, err, EC_SPAWN_FAILED);
        return;
    }
    agent_run_result r = agent_runner_exec_cloud(t->runner, t->gen, m->id, path,
                                                 agent_cloud_profile(c, m->program), &m->argv,
                                                 m->env, m->nenv, m->timeout, m->max_output,
                                                 t->window, m->hold_output);
    free(path);
    reply_run_result(t, m->id, MK_CLOUD_EXEC, r);
}

static void handle_exec(agent_tunnel *t, proto_msg *m)
{
    if (m->id == 0) {
        if (log_sparingly(&t->ignored))
            log_warn("tunnel: exec without an id dropped (%u messages ignored on this connection)",
                     t->ignored);
        return;
    }
    if (m->kind && !strcmp(m->kind, PROTO_KIND_CLOUD_EXEC)) {
        handle_cloud_exec(t, m);
        return;
    }
    if (m->kind && strcmp(m->kind, "kubectl") != 0) { /* absent kind means kubectl */
        char err[128], kind[64];
        snprintf(err, sizeof(err), "unsupported kind \"%s\"",
                 agent_peer_text(kind, sizeof(kind), m->kind));
        if (refusal_logged(t))
            log_warn("exec id=%u refused: %s (%u refusals on this connection)", m->id, err,
                     t->refused);
        metrics_command(metrics_kind_of(m->kind), MR_BAD_REQUEST, -1);
        reply_exec_end(t, m->id, 1, err, EC_BAD_REQUEST);
        return;
    }
    agent_policy_decision d;
    if (!agent_policy_check(&t->cfg->policy, m->argv.c, (const char *const *)m->argv.v, &d)) {
        if (refusal_logged(t))
            log_warn("exec id=%u refused by the %s policy: %s (%u refusals on this connection)",
                     m->id, agent_policy_mode_name(t->cfg->policy.mode), d.reason, t->refused);
        metrics_policy_denial();
        metrics_command(MK_KUBECTL, MR_POLICY_DENIED, -1);
        reply_exec_end(t, m->id, POLICY_DENIED_RC, d.reason, EC_POLICY_DENIED);
        return;
    }
    agent_run_result r = agent_runner_exec(t->runner, t->gen, m->id, &m->argv, m->timeout,
                                           m->max_output, t->window, m->hold_output);
    reply_run_result(t, m->id, MK_KUBECTL, r);
}

static void handle_legacy(agent_tunnel *t, proto_msg *m)
{
    const char *cid = m->command_id ? m->command_id : "";
    char shown[80]; /* for log lines; the response echoes cid as sent */
    agent_peer_text(shown, sizeof(shown), cid);
    char err[256];
    argv_t a;
    memset(&a, 0, sizeof(a));
    if (!m->command || argv_tokenize(m->command, &a, err, sizeof(err)) != 0) {
        if (!m->command)
            snprintf(err, sizeof(err), "missing command");
        if (refusal_logged(t))
            log_warn("command %s refused: %s (%u refusals on this connection)", shown, err,
                     t->refused);
        reply_legacy(t, cid, err, 1);
        metrics_command(MK_KUBECTL, MR_BAD_REQUEST, -1);
        return;
    }
    argv_strip_leading(&a, "kubectl");
    agent_policy_decision d;
    if (!agent_policy_check(&t->cfg->policy, a.c, (const char *const *)a.v, &d)) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s: %s", EC_POLICY_DENIED, d.reason);
        if (refusal_logged(t))
            log_warn("command %s refused by the %s policy: %s (%u refusals on this connection)",
                     shown, agent_policy_mode_name(t->cfg->policy.mode), d.reason, t->refused);
        metrics_policy_denial();
        metrics_command(MK_KUBECTL, MR_POLICY_DENIED, -1);
        reply_legacy(t, cid, msg, POLICY_DENIED_RC);
        argv_free(&a);
        return;
    }
    agent_run_result r = agent_runner_legacy(t->runner, t->gen, cid, &a, m->timeout);
    if (r == RUN_BUSY) {
        if (refusal_logged(t))
            log_warn("command %s refused: agent busy (%u refusals on this connection)", shown,
                     t->refused);
        metrics_command(MK_KUBECTL, MR_BUSY, -1);
        reply_legacy(t, cid, "agent busy: too many commands running", 1);
    } else if (r == RUN_SHUTTING_DOWN) {
        metrics_command(MK_KUBECTL, MR_SHUTTING_DOWN, -1);
        reply_legacy(t, cid, "agent shutting down", 1);
    } else if (r != RUN_STARTED) {
        metrics_command(MK_KUBECTL, MR_SPAWN_FAILED, -1);
        reply_legacy(t, cid, "agent could not start the command", 1);
    }
    argv_free(&a);
}

/* register, plus the agent's command policy and cloud_exec settings so the
 * server can show them (servers ignore keys they do not know) */
static char *encode_register(agent_tunnel *t)
{
    char *base = proto_enc_register(t->cfg->cluster_id, t->cfg->version, t->v2 ? 2 : 1,
                                    t->cfg->max_concurrent);
    if (!base)
        return NULL;
    cJSON *o = cJSON_Parse(base);
    cJSON *pol = agent_policy_json(&t->cfg->policy);
    cJSON *cloud = agent_cloud_json(&t->cfg->cloud);
    char *out = NULL;
    if (o && pol && cJSON_AddItemToObject(o, "policy", pol)) {
        pol = NULL;
        /* what cloud_exec this agent runs and how it is isolated (cloud.h) */
        if (cloud && cJSON_AddItemToObject(o, "cloud_exec", cloud))
            cloud = NULL;
        if (t->instance[0]) {
            cJSON_AddStringToObject(o, "instance", t->instance);
            cJSON_AddNumberToObject(o, "connection", (double)++t->connections);
        }
        out = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(cloud);
    cJSON_Delete(pol);
    cJSON_Delete(o);
    if (!out)
        return base;
    free(base);
    return out;
}

static void handle_connected(agent_tunnel *t, proto_msg *m, struct lws *wsi)
{
    if (t->got_connected) {
        if (log_sparingly(&t->ignored))
            log_info("tunnel: repeated connected message ignored (%u messages ignored on this "
                     "connection)", t->ignored);
        return;
    }
    t->got_connected = 1;
    t->connected_at = now_ms();
    if (m->protocol == 2)
        t->v2 = 1;
    if (m->window > 0)
        t->window = m->window;
    char id[80], name[128];
    log_info("tunnel: connected as %s (%s), dialect %s, window %lld",
             agent_peer_text(id, sizeof(id), m->cluster_id ? m->cluster_id : t->cfg->cluster_id),
             m->cluster_name ? agent_peer_text(name, sizeof(name), m->cluster_name) : "unnamed",
             t->v2 ? "v2" : "legacy", (long long)t->window);
    /* A rotated token keeps its cluster's first id on the server; the
     * agent still names itself by its own token in the handshake. */
    if (m->cluster_id && strcmp(m->cluster_id, t->cfg->cluster_id) != 0)
        log_info("tunnel: this token was issued for cluster %s (its own id is %s)", id,
                 t->cfg->cluster_id);
    send_control(t, encode_register(t));
    metrics_connected();
    metrics_state_set(MS_CONNECTED);
    t->next_hb = now_ms() + (int64_t)t->cfg->heartbeat_interval * 1000;
    (void)wsi;
}

/* A malformed exec that still names a usable id gets BAD_REQUEST; anything
 * else malformed is only logged (the decoder keeps nothing on failure, so the
 * id is looked up here). */
static void handle_malformed(agent_tunnel *t, const char *data, size_t len, const char *err)
{
    uint32_t id = 0;
    cJSON *root = cJSON_ParseWithLength(data, len);
    const cJSON *type = root ? cJSON_GetObjectItemCaseSensitive(root, "type") : NULL;
    const cJSON *idj = root ? cJSON_GetObjectItemCaseSensitive(root, "id") : NULL;
    if (cJSON_IsString(type) && type->valuestring && !strcmp(type->valuestring, "exec") &&
        cJSON_IsNumber(idj) && idj->valuedouble >= 1 && idj->valuedouble <= 4294967295.0 &&
        idj->valuedouble == (double)(uint32_t)idj->valuedouble)
        id = (uint32_t)idj->valuedouble;
    secret_json_wipe(root); /* a malformed exec may still carry credentials */
    cJSON_Delete(root);
    if (id) {
        if (refusal_logged(t))
            log_warn("exec id=%u malformed: %s (%u refusals on this connection)", id, err,
                     t->refused);
        reply_exec_end(t, id, 1, err, EC_BAD_REQUEST);
        return;
    }
    if (log_sparingly(&t->ignored))
        log_warn("tunnel: malformed message dropped: %s (%u messages ignored on this connection)",
                 err, t->ignored);
}

static void handle_text(agent_tunnel *t, struct lws *wsi, const char *data, size_t len)
{
    proto_msg m;
    char err[256];
    memset(&m, 0, sizeof(m));
    if (proto_decode(data, len, &m, err, sizeof(err)) != 0) {
        handle_malformed(t, data, len, err);
        return;
    }
    switch (m.type) {
    case MSG_CONNECTED:
        handle_connected(t, &m, wsi);
        break;
    case MSG_HEARTBEAT_ACK:
        log_debug("tunnel: heartbeat_ack");
        break;
    case MSG_EXEC:
        handle_exec(t, &m);
        break;
    case MSG_CANCEL:
        if (agent_runner_cancel(t->runner, t->gen, m.id) == 0)
            log_info("exec id=%u: cancel requested", m.id);
        else if (log_sparingly(&t->ignored))
            log_info("tunnel: cancel for id %u that is not running (ignored; %u messages ignored "
                     "on this connection)", m.id, t->ignored);
        break;
    case MSG_CREDIT:
        if (agent_runner_credit(t->runner, t->gen, m.id, m.bytes) != 0)
            log_debug("tunnel: credit for id %u that is not running (ignored)", m.id);
        break;
    case MSG_KUBECTL_COMMAND:
        handle_legacy(t, &m);
        break;
    default:
        if (log_sparingly(&t->ignored)) {
            char type[64];
            log_info("tunnel: ignoring message of type \"%s\" (%u messages ignored on this "
                     "connection)", agent_peer_text(type, sizeof(type), m.type_name), t->ignored);
        }
        break;
    }
    proto_msg_free(&m);
}

/* ---- shutdown, timers ------------------------------------------------------ */

static void tick(lws_sorted_usec_list_t *sul);

static void begin_shutdown(agent_tunnel *t)
{
    t->shutting = 1;
    t->shutdown_at = now_ms();
    agent_runner_set_shutting_down(t->runner);
    lws_sul_cancel(&t->sul_connect);
    int active = agent_runner_active(t->runner);
    log_info("shutdown requested; %d command%s running, grace %ds", active,
             active == 1 ? "" : "s", t->cfg->shutdown_grace);
    if (!t->connecting || !t->established) {
        /* nothing can be delivered: stop now (jobs are dropped on close) */
        atomic_store(&t->rs.cancel, 1);
        if (t->wsi)
            kill_connection(t);
        else
            t->connecting = 0;
        t->done = 1;
        return;
    }
    lws_sul_schedule(t->ctx, 0, &t->sul_tick, tick, (lws_usec_t)TICK_SHUTDOWN_MS * 1000);
}

static void shutdown_step(agent_tunnel *t, int64_t now)
{
    if (!t->wsi || !t->established) {
        t->done = 1;
        return;
    }
    int64_t grace_end = t->shutdown_at + (int64_t)t->cfg->shutdown_grace * 1000;
    int active = agent_runner_active(t->runner);
    if (active > 0 && !t->cancelled_all && (now >= grace_end || atomic_load(&t->stop_req) > 1)) {
        log_warn("%s, cancelling %d running command%s",
                 now >= grace_end ? "shutdown grace over" : "second stop signal", active,
                 active == 1 ? "" : "s");
        agent_runner_cancel_all(t->runner);
        t->cancelled_all = 1;
    }
    if (active == 0 && agent_outq_empty(t->outq) && !t->closing) {
        log_info("all commands finished; closing the tunnel");
        t->closing = 1;
        t->closing_at = now;
        request_write(t);
    }
    if ((t->closing && now >= t->closing_at + CLOSE_WAIT_MS) ||
        now >= grace_end + SHUTDOWN_SLACK_MS) {
        log_warn("tunnel did not close in time; dropping it");
        kill_connection(t);
    }
}

static void tick(lws_sorted_usec_list_t *sul)
{
    agent_tunnel *t = lws_container_of(sul, agent_tunnel, sul_tick);
    int64_t now = now_ms();
    agent_runner_reap(t->runner);
    check_resolution(t);
    rx_flow_update(t);
    if (t->wsi && t->established) {
        int64_t silence = (int64_t)t->cfg->heartbeat_interval * 3 * 1000;
        /* While reading is paused the server's messages wait unread: what
         * shows it is there is its taking our frames.  One that takes
         * nothing is dropped as silent, and its backlog with it. */
        int64_t heard = t->last_rx;
        if (t->rx_paused && t->last_drain > heard)
            heard = t->last_drain;
        if (now - heard > silence && !t->killing) {
            log_warn("tunnel: nothing heard from the server for %ds; reconnecting",
                     t->cfg->heartbeat_interval * 3);
            kill_connection(t);
        } else if (t->got_connected && now >= t->next_hb) {
            send_control(t, proto_enc_heartbeat(t->cfg->cluster_id));
            log_debug("tunnel: heartbeat sent");
            t->next_hb = now + (int64_t)t->cfg->heartbeat_interval * 1000;
        }
    }
    if (t->shutting)
        shutdown_step(t, now);
    if (!t->done)
        lws_sul_schedule(t->ctx, 0, &t->sul_tick, tick,
                         (lws_usec_t)(t->shutting ? TICK_SHUTDOWN_MS : TICK_MS) * 1000);
}

static int write_frames(agent_tunnel *t, struct lws *wsi);

/* Event-loop side of agent_tunnel_wake / request_stop. */
static void on_wakeup(agent_tunnel *t)
{
    agent_runner_reap(t->runner);
    check_resolution(t);
    int stops = atomic_load(&t->stop_req);
    if (stops > 0 && !t->shutting)
        begin_shutdown(t);
    else if (stops > 1 && t->shutting && !t->done)
        shutdown_step(t, now_ms());
    if (agent_outq_empty(t->outq))
        return;
    /* Frames pushed by a job thread (a command's output, its exec_end) are
     * written from here, outside every callback of the connection, when
     * nothing of it is left in lws's buffer: asking for WRITEABLE first
     * costs a poll and a loop pass per wake-up.  Closing goes through
     * WRITEABLE, which sends the close frame after the queue. */
    if (t->wsi && t->established && !t->closing && !t->close_1009 && !t->killing &&
        !lws_partial_buffered(t->wsi)) {
        if (write_frames(t, t->wsi) < 0) {
            kill_connection(t);
            return;
        }
        rx_flow_update(t);
        if (agent_outq_empty(t->outq))
            return;
    }
    request_write(t);
}

/* ---- the libwebsockets protocol callback ---------------------------------- */

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

/* Frames first, and the small frames queued right after it (a command's
 * last output and its exec_end, a burst of short lines), into one buffer,
 * and writes them with one lws_write.  Takes first; adds the frames written to
 * *frames and their payload bytes to *bytes.  0, or -1 when the write
 * failed or no masking key could be drawn. */
static int write_batch(agent_tunnel *t, struct lws *wsi, agent_frame *first, int *frames,
                       size_t *bytes)
{
    /* only the loop thread writes: one buffer, LWS_PRE of headroom for lws */
    static unsigned char batch[LWS_PRE + WRITE_BATCH];
    unsigned char *out = batch + LWS_PRE;
    size_t used = 0;
    agent_frame *f = first;
    while (f) {
        size_t n = ws_frame_encode(out + used, agent_frame_data(f), f->len,
                                   f->binary ? WS_OPCODE_BINARY : WS_OPCODE_TEXT);
        *bytes += f->len;
        agent_frame_free(f);
        if (!n)
            return -1;
        used += n;
        ++*frames;
        size_t room = WRITE_BATCH - used;
        /* a frame of up to 125 bytes has a 6-byte header, longer ones 8
         * (none of 64 KiB and more fits): what the next may carry */
        f = NULL;
        if (*frames < WRITE_PASS_FRAMES && room > 8)
            f = agent_outq_pop_upto(t->outq, room - (room - 6 < 126 ? 6 : 8));
    }
    return lws_write(wsi, out, used, LWS_WRITE_RAW) == (int)used ? 0 : -1;
}

/* Writes queued frames while the socket takes them, bounded so that reads
 * are served between passes.  The number of frames written, -1 if a write
 * failed (the connection must go). */
static int write_frames(agent_tunnel *t, struct lws *wsi)
{
    int wrote = 0;
    size_t bytes = 0;
    agent_frame *f;
    /* lws_send_pipe_choked is a poll(): asked only when a frame is waiting */
    while (wrote < WRITE_PASS_FRAMES && bytes < WRITE_PASS_BYTES &&
           (wrote == 0 || (!agent_outq_empty(t->outq) && !lws_send_pipe_choked(wsi))) &&
           (f = agent_outq_pop(t->outq))) {
        size_t flen = f->len;
        int rc;
        if (ws_frame_head_len(flen) + flen <= WRITE_BATCH) {
            int n = 0;
            rc = write_batch(t, wsi, f, &n, &bytes);
            wrote += n;
        } else {
            rc = ws_frame_write(wsi, agent_frame_data(f), flen,
                                f->binary ? WS_OPCODE_BINARY : WS_OPCODE_TEXT);
            agent_frame_free(f);
            wrote++;
            bytes += flen;
        }
        if (rc != 0) {
            log_warn("tunnel: write failed");
            return -1;
        }
    }
    if (wrote && t->rx_paused)
        t->last_drain = now_ms();
    return wrote;
}

/* Hands lws the close frame to send (status, reason): -1 for WRITEABLE to return. */
static int close_with(struct lws *wsi, enum lws_close_status status, const char *reason)
{
    lws_close_reason(wsi, status, (unsigned char *)reason, strlen(reason));
    return -1;
}

static int on_writeable(agent_tunnel *t, struct lws *wsi)
{
    if (wsi != t->wsi)
        return 0;
    if (t->close_1009)
        return close_with(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
    /* Frames queued together (a command's output and its exec_end) go out
     * in one pass while the socket takes them: a loop pass and a poll cycle
     * per frame saved. */
    int wrote = write_frames(t, wsi);
    if (wrote < 0)
        return -1;
    rx_flow_update(t);
    if (wrote) {
        /* A push into the emptied queue wakes the loop (on_wakeup), so only
         * frames still queued, or the close still to send, need another pass. */
        if (t->closing || !agent_outq_empty(t->outq))
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (t->closing)
        return close_with(wsi, LWS_CLOSE_STATUS_NORMAL, "agent shutting down");
    return 0;
}

/* Control messages may carry cloud_exec credentials (exec env): the receive
 * buffer is zeroed, not just reset, once a message is handled. */
static void rx_wipe(agent_tunnel *t)
{
    /* the buffer is reserved once for the largest message (agent_tunnel_start),
     * so it never moves: what was written is [0, len) */
    if (t->rx.data && t->rx.len)
        explicit_bzero(t->rx.data, t->rx.len);
    buf_reset(&t->rx);
}

/* A message over the control limit: the server misbehaves, or the stream
 * lost its framing and what follows is no longer the messages it seems to
 * be.  The connection is over from here, not from when its close is done
 * (the next WRITEABLE, which a peer that does not read can put off until
 * the silence watchdog): lws 4.1 delivers the rest of its read buffer first,
 * requests the server wrote right behind the message among it.  So nothing
 * read from now on is acted on (rx_fragment), no command starts and nothing
 * more is answered (on_writeable sends the close, nothing queued).  Commands
 * already running for this connection are stopped now, as the connection's
 * end would (agent_runner_drop: killed, no answer): their output can no
 * longer reach the server, and they were asked for on a stream now known to
 * be broken, so letting them run on only does work in the cluster that no
 * one sees.  Its queued answers go too; the next connection starts clean
 * (new_session). */
static void end_for_1009(agent_tunnel *t)
{
    t->close_1009 = 1;
    agent_runner_drop(t->runner, t->gen);
    agent_outq_reset(t->outq, 0);
}

/* One fragment of a message from the server (first / final: its place in
 * the message; binary: the message's opcode), from RECEIVE or a unit test
 * (wsi NULL). */
static void rx_fragment(agent_tunnel *t, struct lws *wsi, void *in, size_t len, int first,
                        int final, int binary)
{
    if (t->close_1009) {
        /* Decided to close (end_for_1009): whatever follows in the stream,
         * in this read or the next, is dropped unread, and wiped (it may
         * carry credentials).  last_rx is not renewed: a peer that streams
         * on rather than take the close is dropped as silent. */
        explicit_bzero(in, len);
        return;
    }
    t->last_rx = now_ms();
    if (first) {
        rx_wipe(t);
        t->rx_binary = binary;
        t->rx_skip = 0;
    }
    if (!t->rx_binary && !t->rx_skip) {
        if (buf_pending(&t->rx) + len > PROTO_MAX_CONTROL) {
            /* Closing from inside RECEIVE (returning -1) crashes lws 4.1's
             * client parser mid-message, so drop the rest of the message and
             * close from the next WRITEABLE instead. */
            log_warn("tunnel: message larger than %d bytes; closing with 1009",
                     PROTO_MAX_CONTROL);
            rx_wipe(t);
            t->rx_skip = 1;
            end_for_1009(t);
            if (wsi)
                lws_callback_on_writable(wsi);
            return;
        }
        if (buf_append(&t->rx, in, len) != 0) {
            log_error("tunnel: out of memory receiving a message; dropped");
            rx_wipe(t);
            t->rx_skip = 1;
        }
        /* the text may carry cloud_exec credentials: keep one copy only */
        explicit_bzero(in, len);
    }
    if (!final)
        return;
    if (t->rx_binary) {
        if (log_sparingly(&t->ignored))
            log_info("tunnel: binary frame from the server ignored (%u messages ignored on this "
                     "connection)", t->ignored);
    } else if (!t->rx_skip) {
        handle_text(t, wsi, buf_head(&t->rx), buf_pending(&t->rx));
    }
    rx_wipe(t);
    rx_flow_update(t); /* the answers to this message may have filled the queue */
}

static int on_receive(agent_tunnel *t, struct lws *wsi, void *in, size_t len)
{
    rx_fragment(t, wsi, in, len, lws_is_first_fragment(wsi), lws_is_final_fragment(wsi),
                lws_frame_is_binary(wsi));
    return 0;
}

/* The tunnel a callback is for: the connection's opaque pointer (set when it
 * is opened), else the vhost's user pointer (vhost-wide callbacks such as
 * EVENT_WAIT_CANCELLED run on a stand-in wsi bound to the vhost only). */
static agent_tunnel *tunnel_of(struct lws *wsi)
{
    agent_tunnel *t = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    struct lws_vhost *vh = wsi && !t ? lws_get_vhost(wsi) : NULL;
    return t ? t : vh ? lws_vhost_user(vh) : NULL;
}

static int tunnel_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    agent_tunnel *t = tunnel_of(wsi);
    if (!t)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS: {
        /* the vhost has LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS: AURORA_CA_FILE
         * alone, else the system store without parsing the whole bundle */
        char desc[300];
        /* an idle tunnel keeps no 34 KiB of TLS record buffers */
        SSL_CTX_set_mode((SSL_CTX *)user, SSL_MODE_RELEASE_BUFFERS);
        tls_resume_attach((SSL_CTX *)user); /* reconnections resume the session */
        tls_name_attach((SSL_CTX *)user, t);
        if (t->cfg->ca_file || !t->cfg->secure || t->cfg->tls_skip_verify)
            return 0;
        if (agent_ca_store_load_system(user, desc, sizeof(desc)) != 0)
            log_warn("tunnel: no system CA store found (SSL_CERT_DIR, SSL_CERT_FILE or "
                     "OpenSSL's default): the server certificate cannot be verified; set "
                     "AURORA_CA_FILE");
        else
            log_debug("tunnel: CA %s", desc);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        char auth[600];
        snprintf(auth, sizeof(auth), "Bearer %s", t->cfg->token);
        int bad = add_header(wsi, "authorization:", auth, p, end) ||
                  add_header(wsi, "x-cluster-id:", t->cfg->cluster_id, p, end);
        memset(auth, 0, sizeof(auth));
        if (bad) {
            log_error("tunnel: handshake headers do not fit");
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        /* the response headers are still available here (not at ESTABLISHED) */
        char proto[64] = "";
        if (lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) > 0 &&
            !strcmp(proto, PROTO_SUBPROTOCOL_V2))
            t->v2 = 1;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        if (wsi != t->wsi && t->wsi)
            return 0;
        t->wsi = wsi;
        t->established = 1;
        t->last_rx = now_ms();
        log_info("tunnel: WebSocket established (%s%s); waiting for connected",
                 t->v2 ? PROTO_SUBPROTOCOL_V2 : "no subprotocol: legacy",
                 lws_get_ssl(wsi) && tls_resume_last_resumed() ? ", TLS session resumed" : "");
        if (!agent_outq_empty(t->outq))
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (wsi != t->wsi)
            return 0;
        return on_receive(t, wsi, in, len);
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        /* After end_for_1009 a pong is no more hearing from the server than
         * a message is (rx_fragment): a peer that never reads, so that the
         * close cannot be written, and sends pongs (unsolicited ones are
         * allowed) would otherwise hold the connection open for ever. */
        if (wsi == t->wsi && !t->close_1009)
            t->last_rx = now_ms();
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(t, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *b = in;
        if (wsi == t->wsi && len >= 2) {
            t->close_code = (b[0] << 8) | b[1];
            size_t rl = len - 2, k = 0;
            for (size_t x = 0; x < rl && k + 1 < sizeof(t->close_reason); x++) {
                unsigned char ch = b[2 + x];
                t->close_reason[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
            }
            t->close_reason[k] = '\0';
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[200];
        snprintf(why, sizeof(why), "connection failed: %.160s",
                 in ? (const char *)in : "unknown error");
        on_disconnect(t, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        on_disconnect(t, "connection closed");
        return 0;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        /* Before the upgrade the connection is an HTTP client's: an attempt
         * whose handshake gets no answer in lws's time (a hung server behind
         * a proxy or a balancer), or whose socket dies while it waits, ends
         * here, not in CONNECTION_ERROR. */
        if (wsi == t->wsi)
            on_disconnect(t, "the server did not answer the WebSocket handshake");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* The last word on every connection: if none of the callbacks above
         * told us it ended, it has all the same (t->wsi must never outlive
         * it, and an attempt that ends unseen is never retried). */
        if (wsi == t->wsi)
            on_disconnect(t, "connection lost");
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        on_wakeup(t);
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols tunnel_protocols[] = {
    {PROTO_SUBPROTOCOL_V2, tunnel_cb, 0, RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- public ---------------------------------------------------------------- */

agent_tunnel *agent_tunnel_new(const agent_config *cfg, agent_runner *runner, agent_outq *outq)
{
    agent_tunnel *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cfg = cfg;
    t->runner = runner;
    t->outq = outq;
    t->window = PROTO_DEFAULT_WINDOW;
    atomic_init(&t->stop_req, 0);
    atomic_init(&t->rs.done, 0);
    atomic_init(&t->rs.cancel, 0);
    buf_init(&t->rx);
    unsigned char id[16];
    if (crypto_random(id, sizeof(id)) == 0)
        crypto_hex(id, sizeof(id), t->instance);
    else
        log_warn("tunnel: no randomness for an instance id; a reconnection cannot replace a "
                 "dead connection at once");
    return t;
}

int agent_tunnel_start(agent_tunnel *t, struct lws_context *ctx)
{
    const agent_config *cfg = t->cfg;
    t->ctx = ctx;
    if (buf_reserve(&t->rx, PROTO_MAX_CONTROL + 1) != 0) {
        log_error("tunnel: out of memory");
        return -1;
    }
    agent_backoff_init(&t->bo, cfg->reconnect_interval, cfg->reconnect_max);
    metrics_state_set(MS_DISCONNECTED);

    char err[300];
    if (agent_proxy_from_env(&t->proxy, cfg->host, cfg->port, cfg->secure, err, sizeof(err))) {
        log_error("tunnel: %s", err);
        return -1;
    }
    if (t->proxy.use)
        log_info("tunnel: egress proxy %s from %s%s", t->proxy.display, t->proxy.source,
                 t->proxy.userinfo ? " (with basic authentication)" : "");
    else if (t->proxy.bypass)
        log_info("tunnel: %s is set but %s lists %s: connecting directly", t->proxy.source,
                 t->proxy.bypass, cfg->host);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.vhost_name = "tunnel";
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = tunnel_protocols;
    info.user = t; /* tunnel_of() */
    /* no OS store loaded by lws (the whole bundle, parsed at once): the
     * LOAD_EXTRA_CLIENT_VERIFY_CERTS callback adds it lazily (ca_store.h) */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    if (cfg->ca_file)
        info.client_ssl_ca_filepath = cfg->ca_file;
    /* libwebsockets would take a proxy from http_proxy by itself, ignoring
     * NO_PROXY: hide it while the vhost is created (the proxy is set per
     * connection with lws_set_proxy; children already have their environment). */
    char *saved = getenv("http_proxy");
    saved = saved ? strdup(saved) : NULL;
    unsetenv("http_proxy");
    t->vh = lws_create_vhost(ctx, &info);
    if (saved) {
        setenv("http_proxy", saved, 1);
        memset(saved, 0, strlen(saved));
        free(saved);
    }
    if (!t->vh) {
        log_error("tunnel: cannot create the client vhost (TLS setup failed?)");
        return -1;
    }
    if (cfg->secure && cfg->tls_skip_verify)
        log_warn("tunnel: AURORA_TLS_INSECURE_SKIP_VERIFY=true: the server certificate is NOT "
                 "verified; anyone on the path can impersonate the server and run commands "
                 "in this cluster");
    if (!cfg->secure)
        log_warn("tunnel: plain ws:// (AURORA_ALLOW_INSECURE_WS=true): the token and all "
                 "traffic travel unencrypted");
    schedule_connect(t, 0);
    lws_sul_schedule(ctx, 0, &t->sul_tick, tick, (lws_usec_t)TICK_MS * 1000);
    return 0;
}

void agent_tunnel_request_stop(agent_tunnel *t)
{
    atomic_fetch_add(&t->stop_req, 1);
    if (t->ctx)
        lws_cancel_service(t->ctx);
}

void agent_tunnel_wake(agent_tunnel *t)
{
    if (t->ctx)
        lws_cancel_service(t->ctx);
}

int agent_tunnel_done(agent_tunnel *t)
{
    return t->done;
}

int agent_tunnel_ready(agent_tunnel *t)
{
    return t->wsi && t->established && t->got_connected && !t->shutting;
}

void agent_tunnel_teardown(agent_tunnel *t)
{
    if (!t)
        return;
    t->shutting = 1;
    t->done = 1;
    atomic_store(&t->rs.cancel, 1);
    resolve_join(t);
    t->resolving = 0;
    if (t->ctx) {
        lws_sul_cancel(&t->sul_connect);
        lws_sul_cancel(&t->sul_tick);
    }
}

void agent_tunnel_free(agent_tunnel *t)
{
    if (!t)
        return;
    rx_wipe(t);
    buf_free(&t->rx);
    agent_proxy_free(&t->proxy);
    free(t);
    tls_resume_forget();
}

/* ---- without a server (unit tests) ------------------------------------------ */

uint64_t agent_tunnel_begin_session(agent_tunnel *t)
{
    new_session(t);
    return t->gen;
}

void agent_tunnel_handle_message(agent_tunnel *t, const char *data, size_t len)
{
    handle_text(t, NULL, data, len);
    rx_flow_update(t);
}

void agent_tunnel_after_write(agent_tunnel *t)
{
    rx_flow_update(t);
}

int agent_tunnel_rx_paused(agent_tunnel *t)
{
    return t->rx_paused;
}

void agent_tunnel_receive(agent_tunnel *t, void *data, size_t len, int first, int final,
                          int binary)
{
    rx_fragment(t, NULL, data, len, first, final, binary);
}
