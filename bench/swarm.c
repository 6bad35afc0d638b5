/* swarm.c — a load generator: thousands of simulated agents in one process.
 *
 * Each simulated agent opens a WSS connection to the server's /kubectl-agent
 * with the real agent's handshake (Authorization: Bearer <token>,
 * X-Cluster-ID from common/token.c, the aurora-tunnel.v2 subprotocol or none
 * for the legacy dialect), sends `register` after `connected`, heartbeats
 * every --heartbeat seconds and answers every command with a fixed small
 * output, as /bin/echo would.  Reconnects use the real agent's backoff
 * (agent/backoff.c) or a fixed interval (the storm case).
 *
 * All agents share one lws context and one service thread, so the cost per
 * agent is a TLS connection plus the small struct below: the server, not the
 * client, is what a bench measures.  Every --report-interval seconds one line
 *   t=<s> connected=<n> connecting=<n> handshake_failures=<n> closes=<n> commands=<n>
 *   resumed=<n> full=<n> heartbeats=<n> heartbeat_acks=<n> heartbeats_unanswered=<n>
 *   hb_ack_ms=<n>,<n>,... (acks under 1, 2, 4, ... ms; the last: slower, or late:
 *   the answer to a heartbeat that was no longer the latest) cpu_s=<s>
 * goes to stdout, then a summary line at the end (--duration, SIGINT, SIGTERM).
 */
#include <errno.h>
#include <getopt.h>
#include <ev.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

#include "backoff.h"
#include "proto.h"
#include "token.h"

#define SWARM_VERSION "swarm"
#define TICK_MS 20
#define STABLE_MS 10000 /* as the agent: a connection up this long resets the backoff */
#define ANSWER "swarm\n"
#define MAX_RX (PROTO_MAX_CONTROL + 1)

/* One queued outgoing frame; LWS_PRE bytes of headroom precede the payload. */
typedef struct out_frame {
    struct out_frame *next;
    size_t len;
    int binary;
    unsigned char data[]; /* LWS_PRE + len */
} out_frame;

typedef enum { A_IDLE, A_CONNECTING, A_OPEN, A_CONNECTED } agent_state;

/* Kept small: thousands of these live at once. */
typedef struct {
    const char *token; /* points into the tokens file buffer */
    char cluster_id[CLUSTER_ID_LEN + 1];
    unsigned char state;
    unsigned char v2;
    unsigned short close_code;
    struct lws *wsi;
    out_frame *outq, *outq_tail;
    char *rx; /* only while a message arrives in fragments */
    size_t rx_len;
    int64_t next_connect_ms; /* when A_IDLE; -1: not scheduled */
    int64_t next_hb_ms;
    /* Heartbeats sent and acks received on this connection (acks come in
     * order), and when the latest heartbeat went: an ack is timed only when
     * it answers the latest one, so a late ack is never taken for the
     * answer to the heartbeat after it. */
    long hb_sent, hb_acked;
    int64_t hb_sent_ms;
    int64_t connected_at_ms;
    agent_backoff bo;
    SSL_SESSION *tls_session; /* the last ticket the server gave, offered on reconnect */
} sim_agent;

static struct {
    int v2;
    int heartbeat_s;
    int fixed_ms; /* 0: the agent's backoff */
    double connect_rate;
    double duration_s;
    double report_s;
    const char *url;
    const char *ca;
    char host[256];
    char path[256];
    int port;
    int tls;
    int procs;  /* processes sharing the agents (each its own lws context) */
    int resume; /* offer the last TLS session on reconnect, as the agent does */
} opt = {.v2 = 1, .heartbeat_s = 30, .connect_rate = 0, .duration_s = 0, .report_s = 1,
         .procs = 1, .resume = 1};

/* Heartbeat acks by how long they took: bucket k holds those under 2^k ms,
 * the last one everything slower and every late one (the answer to a
 * heartbeat that was no longer the latest). */
#define HB_BUCKETS 16

typedef struct {
    long connected, connecting, handshake_failures, closes, commands;
    long heartbeats, heartbeat_acks;
    /* a heartbeat still without its ack when the next one was due: what the
     * agent's own silence timer (three intervals) would start to count */
    long heartbeats_unanswered;
    long hb_ack_ms[HB_BUCKETS];
    long silent_ends; /* connections that ended with no error or close callback */
    long max_connected;
    long full_handshakes, resumed_handshakes; /* TLS: a session ticket offered and taken */
    long tickets;                             /* sessions the server gave and we kept */
    double all_connected_s;   /* first time every agent was connected; -1 before */
    long rss_at_all_kib;      /* swarm RSS at that moment */
    long rss_base_kib;
    int done;                 /* a --procs child: its last counters are in */
} swarm_stats;

/* One process's counters; with --procs N each child's live in a shared
 * mapping that the parent sums for its report lines. */
static swarm_stats own_stats = {.all_connected_s = -1};
static swarm_stats *st = &own_stats;

static sim_agent *agents;
static sim_agent *connecting_now; /* inside lws_client_connect_via_info */
static int nagents;
static struct lws_context *ctx;
static struct lws_vhost *vhost;
static volatile sig_atomic_t stop_req;
static int64_t t0_ms;
static int64_t next_report_ms;
static int64_t last_report_ms = -1;
static long rss_base_kib;
static lws_sorted_usec_list_t sul_tick;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6)) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* ---- outgoing queue ----------------------------------------------------------- */

static void outq_free(sim_agent *a)
{
    while (a->outq) {
        out_frame *f = a->outq;
        a->outq = f->next;
        free(f);
    }
    a->outq_tail = NULL;
}

static void push_frame(sim_agent *a, const void *data, size_t len, int binary)
{
    out_frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (!f)
        return;
    f->next = NULL;
    f->len = len;
    f->binary = binary;
    memcpy(f->data + LWS_PRE, data, len);
    if (a->outq_tail)
        a->outq_tail->next = f;
    else
        a->outq = f;
    a->outq_tail = f;
    if (a->wsi)
        lws_callback_on_writable(a->wsi);
}

/* Takes ownership of json (an encoder's result; NULL on OOM is dropped). */
static void push_text(sim_agent *a, char *json)
{
    if (!json)
        return;
    push_frame(a, json, strlen(json), 0);
    free(json);
}

/* ---- connection life ---------------------------------------------------------- */

static void connect_agent(sim_agent *a)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = ctx;
    i.vhost = vhost;
    i.address = opt.host;
    i.port = opt.port;
    i.path = opt.path;
    i.host = opt.host;
    i.origin = NULL;
    i.protocol = opt.v2 ? PROTO_SUBPROTOCOL_V2 : NULL; /* legacy: no subprotocol header */
    i.local_protocol_name = "swarm";
    i.alpn = "http/1.1";
    i.opaque_user_data = a;
    if (opt.tls)
        i.ssl_connection = LCCSCF_USE_SSL;
    a->state = A_CONNECTING;
    a->next_connect_ms = -1;
    a->close_code = 0;
    a->v2 = 0;
    st->connecting++;
    a->wsi = NULL;
    /* a->wsi is set from the result, not through pwsi: a failure reported
     * synchronously (CONNECTION_ERROR inside this call) leaves it NULL */
    connecting_now = a;
    struct lws *w = lws_client_connect_via_info(&i);
    connecting_now = NULL;
    if (a->state != A_CONNECTING)
        return; /* already failed inside the call: on_gone() rescheduled it */
    if (w) {
        a->wsi = w;
    } else {
        /* refused before any callback (e.g. out of fds): count and retry */
        st->connecting--;
        st->handshake_failures++;
        a->state = A_IDLE;
        a->next_connect_ms = now_ms() + (opt.fixed_ms ? opt.fixed_ms : agent_backoff_next_ms(&a->bo));
    }
}

/* The connection is gone (failed handshake or closed): schedule the next
 * attempt the way the real agent does (agent/tunnel.c on_disconnect). */
static void on_gone(sim_agent *a, int handshake_failed)
{
    if (a->state == A_IDLE)
        return;
    int64_t now = now_ms();
    if (a->state == A_CONNECTED)
        st->connected--;
    else
        st->connecting--;
    if (handshake_failed)
        st->handshake_failures++;
    else
        st->closes++;
    int was_up = a->state == A_CONNECTED;
    int64_t up_ms = was_up ? now - a->connected_at_ms : 0;
    a->state = A_IDLE;
    a->wsi = NULL;
    a->hb_sent = a->hb_acked = 0; /* lost with the connection: `closes` counts it */
    outq_free(a);
    free(a->rx);
    a->rx = NULL;
    a->rx_len = 0;
    int64_t delay;
    if (opt.fixed_ms)
        delay = opt.fixed_ms;
    else if (a->close_code == PROTO_CLOSE_POLICY)
        delay = agent_backoff_cap_ms(&a->bo);
    else {
        if (was_up && up_ms >= STABLE_MS)
            agent_backoff_reset(&a->bo);
        delay = agent_backoff_next_ms(&a->bo);
    }
    a->next_connect_ms = stop_req ? -1 : now + delay;
}

/* ---- incoming messages -------------------------------------------------------- */

static void answer_exec(sim_agent *a, uint32_t id)
{
    unsigned char frame[PROTO_DATA_HDR + sizeof(ANSWER) - 1];
    proto_data_header(frame, PROTO_CHAN_STDOUT, id);
    memcpy(frame + PROTO_DATA_HDR, ANSWER, sizeof(ANSWER) - 1);
    push_frame(a, frame, sizeof(frame), 1);
    push_text(a, proto_enc_exec_end(id, 0, NULL, NULL, 0, 0, (int64_t)sizeof(ANSWER) - 1));
}

static void handle_text(sim_agent *a, const char *data, size_t len)
{
    proto_msg m;
    char err[256];
    memset(&m, 0, sizeof(m));
    if (proto_decode(data, len, &m, err, sizeof(err)) != 0)
        return;
    switch (m.type) {
    case MSG_CONNECTED:
        if (a->state != A_OPEN)
            break;
        if (m.protocol == 2)
            a->v2 = 1;
        a->state = A_CONNECTED;
        a->connected_at_ms = now_ms();
        a->hb_sent = a->hb_acked = 0;
        a->next_hb_ms = a->connected_at_ms + (int64_t)opt.heartbeat_s * 1000;
        st->connecting--;
        st->connected++;
        if (st->connected > st->max_connected)
            st->max_connected = st->connected;
        push_text(a, proto_enc_register(a->cluster_id, SWARM_VERSION, a->v2 ? 2 : 1, 16));
        break;
    case MSG_EXEC:
        st->commands++;
        answer_exec(a, m.id);
        break;
    case MSG_KUBECTL_COMMAND:
        st->commands++;
        push_text(a, proto_enc_command_response(m.command_id, 1, ANSWER, sizeof(ANSWER) - 1,
                                                NULL, 0));
        break;
    case MSG_HEARTBEAT_ACK:
        st->heartbeat_acks++;
        if (a->hb_acked < a->hb_sent) {
            int k = HB_BUCKETS - 1; /* an earlier one's: later than the interval */
            if (++a->hb_acked == a->hb_sent) {
                int64_t took = now_ms() - a->hb_sent_ms;
                k = 0;
                while (k < HB_BUCKETS - 1 && took >= ((int64_t)1 << k))
                    k++;
            }
            st->hb_ack_ms[k]++;
        }
        break;
    default: /* credit, cancel (the answer is already sent) */
        break;
    }
    proto_msg_free(&m);
}

static void on_receive(sim_agent *a, struct lws *wsi, const char *in, size_t len)
{
    int first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    if (lws_frame_is_binary(wsi))
        return;
    if (first && final) { /* the usual case: no copy */
        handle_text(a, in, len);
        return;
    }
    if (first) {
        free(a->rx);
        a->rx = NULL;
        a->rx_len = 0;
    }
    if (a->rx_len + len <= MAX_RX) {
        char *n = realloc(a->rx, a->rx_len + len + 1);
        if (n) {
            memcpy(n + a->rx_len, in, len);
            a->rx = n;
            a->rx_len += len;
        }
    }
    if (final) {
        if (a->rx)
            handle_text(a, a->rx, a->rx_len);
        free(a->rx);
        a->rx = NULL;
        a->rx_len = 0;
    }
}

/* ---- TLS session resumption ---------------------------------------------------- */

/* lws 4.1 keeps no client sessions: the swarm does what agent/tunnel.c does,
 * with one session per simulated agent.  OpenSSL hands each new session
 * (a TLS 1.3 ticket) to tls_new_session; when the agent's next handshake
 * starts, tls_info offers it.  The SSL finds its agent through ex_data,
 * set on first sight. */
static int ssl_agent_idx = -1;

static sim_agent *agent_of_ssl(SSL *ssl)
{
    sim_agent *a = SSL_get_ex_data(ssl, ssl_agent_idx);
    if (a)
        return a;
    if (connecting_now && !connecting_now->wsi) {
        a = connecting_now; /* the handshake starts within the connect call */
    } else {
        for (int k = 0; k < nagents && !a; k++)
            if (agents[k].state == A_CONNECTING && agents[k].wsi &&
                lws_get_ssl(agents[k].wsi) == ssl)
                a = &agents[k];
    }
    if (a)
        SSL_set_ex_data(ssl, ssl_agent_idx, a);
    return a;
}

static int tls_new_session(SSL *ssl, SSL_SESSION *sess);

static void tls_info(const SSL *cssl, int where, int ret)
{
    (void)ret;
    SSL *ssl = (SSL *)cssl;
    if (where & SSL_CB_HANDSHAKE_START) {
        /* lws may reset the context's cache mode after its setup callback:
         * make sure new sessions reach tls_new_session */
        SSL_CTX *c = SSL_get_SSL_CTX(ssl);
        if (opt.resume && SSL_CTX_get_session_cache_mode(c) !=
                              (SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE)) {
            SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT |
                                                  SSL_SESS_CACHE_NO_INTERNAL_STORE);
            SSL_CTX_sess_set_new_cb(c, tls_new_session);
        }
        sim_agent *a = agent_of_ssl(ssl);
        /* a copy again: a handshake that fails (the server refused the
         * connection) marks the session it offered not resumable */
        SSL_SESSION *offer = opt.resume && a && a->tls_session ? SSL_SESSION_dup(a->tls_session)
                                                               : NULL;
        if (offer) {
            SSL_set_session(ssl, offer);
            SSL_SESSION_free(offer); /* the SSL holds its own reference */
        }
    } else if (where & SSL_CB_HANDSHAKE_DONE) {
        if (SSL_session_reused(ssl))
            st->resumed_handshakes++;
        else
            st->full_handshakes++;
    }
}

static int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    sim_agent *a = opt.resume ? agent_of_ssl(ssl) : NULL;
    /* A copy: the session OpenSSL passes is the connection's own, which it
     * marks not resumable when the connection ends without a TLS shutdown
     * (the server was killed: exactly when it is needed). */
    SSL_SESSION *copy = a ? SSL_SESSION_dup(sess) : NULL;
    if (!copy)
        return 0;
    if (a->tls_session)
        SSL_SESSION_free(a->tls_session);
    a->tls_session = copy;
    st->tickets++;
    return 0; /* OpenSSL keeps (and frees) its own reference */
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

static int swarm_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS) {
        SSL_CTX *c = user; /* the client vhost's context */
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c, tls_new_session);
        SSL_CTX_set_info_callback(c, tls_info);
        return 0;
    }
    sim_agent *a = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (!a)
        return 0;
    /* a late callback of an agent's previous connection */
    if (a->wsi && wsi != a->wsi && reason != LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        char auth[128];
        snprintf(auth, sizeof(auth), "Bearer %s", a->token);
        if (add_header(wsi, "authorization:", auth, p, end) ||
            add_header(wsi, "x-cluster-id:", a->cluster_id, p, end))
            return -1;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (a->state == A_CONNECTING)
            a->state = A_OPEN;
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        on_receive(a, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        out_frame *f = a->outq;
        if (!f)
            return 0;
        int n = lws_write(wsi, f->data + LWS_PRE, f->len,
                          f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < (int)f->len)
            return -1;
        a->outq = f->next;
        if (!a->outq)
            a->outq_tail = NULL;
        free(f);
        if (a->outq)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *b = in;
            a->close_code = (unsigned short)((b[0] << 8) | b[1]);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        on_gone(a, 1);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* a connection that ended without CONNECTION_ERROR or CLOSED (lws
         * drops some early failures silently): without this the agent would
         * stay "connecting" for ever */
        if (wsi == a->wsi && a->state != A_IDLE) {
            st->silent_ends++;
            on_gone(a, a->state != A_CONNECTED);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        /* closed before `connected` (e.g. the server refused the token with
         * 1008 after the upgrade) counts as a failed handshake too */
        on_gone(a, a->state != A_CONNECTED);
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols swarm_protocols[] = {
    {"swarm", swarm_cb, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- the timer: connects, heartbeats, reports ---------------------------------- */

/* User + system CPU seconds of a process (0: this one) so far. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), pid ? "/proc/%d/stat" : "/proc/self/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, stime = 0;
    /* fields after the command: state ppid pgrp session tty tpgid flags minflt
     * cminflt majflt cmajflt utime stime */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) != 2)
        return 0;
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

static pid_t *kids; /* --procs: the children */

static void print_report(double t, const swarm_stats *s, double cpu)
{
    char hist[HB_BUCKETS * 21 + 1];
    size_t used = 0;
    for (int k = 0; k < HB_BUCKETS; k++)
        used += (size_t)snprintf(hist + used, sizeof(hist) - used, "%s%ld", k ? "," : "",
                                 s->hb_ack_ms[k]);
    printf("t=%.1f connected=%ld connecting=%ld handshake_failures=%ld closes=%ld commands=%ld "
           "resumed=%ld full=%ld heartbeats=%ld heartbeat_acks=%ld heartbeats_unanswered=%ld "
           "hb_ack_ms=%s cpu_s=%.2f\n",
           t, s->connected, s->connecting, s->handshake_failures, s->closes, s->commands,
           s->resumed_handshakes, s->full_handshakes, s->heartbeats, s->heartbeat_acks,
           s->heartbeats_unanswered, hist, cpu);
    fflush(stdout);
}

static int quiet; /* a --procs child: the parent reports */

static void report(int64_t now)
{
    last_report_ms = now;
    if (!quiet)
        print_report((double)(now - t0_ms) / 1000.0, st, proc_cpu_s(0));
}

static void tick(lws_sorted_usec_list_t *sul)
{
    int64_t now = now_ms();
    for (int k = 0; k < nagents; k++) {
        sim_agent *a = &agents[k];
        if (a->state == A_IDLE && a->next_connect_ms >= 0 && now >= a->next_connect_ms &&
            !stop_req)
            connect_agent(a);
        else if (a->state == A_CONNECTED && now >= a->next_hb_ms) {
            if (a->hb_acked < a->hb_sent) /* the last one went a whole interval unanswered */
                st->heartbeats_unanswered++;
            push_text(a, proto_enc_heartbeat(a->cluster_id));
            st->heartbeats++;
            a->hb_sent++;
            a->hb_sent_ms = now;
            a->next_hb_ms = now + (int64_t)opt.heartbeat_s * 1000;
        }
    }
    if (st->all_connected_s < 0 && st->connected == nagents) {
        st->all_connected_s = (double)(now - t0_ms) / 1000.0;
        st->rss_at_all_kib = rss_kib();
        if (!quiet) {
            printf("all_connected t=%.2f\n", st->all_connected_s);
            fflush(stdout);
        }
    }
    if (now >= next_report_ms) {
        report(now);
        next_report_ms += (int64_t)(opt.report_s * 1000);
    }
    if (opt.duration_s > 0 && now - t0_ms >= (int64_t)(opt.duration_s * 1000))
        stop_req = 1;
    if (stop_req) {
        lws_cancel_service(ctx);
        return;
    }
    lws_sul_schedule(ctx, 0, sul, tick, (lws_usec_t)TICK_MS * 1000);
}

static void on_signal(int sig)
{
    (void)sig;
    stop_req = 1;
}

/* ---- setup -------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aurora-swarm --url wss://127.0.0.1:PORT/kubectl-agent --tokens FILE\n"
            "         [--ca FILE] [--dialect v2|legacy] [--heartbeat S]\n"
            "         [--reconnect backoff|fixed:MS] [--connect-rate N] [--duration S]\n"
            "         [--report-interval S] [--procs N] [--no-resume]\n"
            "One simulated agent per token (one per line).  --connect-rate: new agents\n"
            "per second in the initial ramp (0: all at once).  --duration 0: until\n"
            "SIGINT/SIGTERM.  --procs N: N processes share the agents (one lws\n"
            "context and core each).  --no-resume: a full TLS handshake every time\n"
            "(default: offer the last session, as the agent does).\n");
}

static int parse_url(const char *url)
{
    const char *p;
    if (!strncmp(url, "wss://", 6)) {
        opt.tls = 1;
        p = url + 6;
    } else if (!strncmp(url, "ws://", 5)) {
        p = url + 5;
    } else {
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hl);
    size_t nl = colon ? (size_t)(colon - p) : hl;
    if (nl == 0 || nl >= sizeof(opt.host))
        return -1;
    memcpy(opt.host, p, nl);
    opt.host[nl] = '\0';
    opt.port = colon ? atoi(colon + 1) : (opt.tls ? 443 : 80);
    if (opt.port <= 0 || opt.port > 65535)
        return -1;
    snprintf(opt.path, sizeof(opt.path), "%s", slash ? slash : PROTO_PATH);
    return 0;
}

/* Reads one token per line; the buffer stays alive (agents point into it). */
static int load_tokens(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "swarm: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        fprintf(stderr, "swarm: cannot read %s\n", path);
        return -1;
    }
    fclose(f);
    buf[size] = '\0';
    int cap = 0;
    for (char *s = buf; *s; s++)
        cap += *s == '\n';
    agents = calloc((size_t)cap + 1, sizeof(*agents));
    if (!agents)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '#')
            continue;
        if (!token_agent_well_formed(line)) {
            fprintf(stderr, "swarm: line %d of %s is not an agent token\n", nagents + 1, path);
            return -1;
        }
        sim_agent *a = &agents[nagents++];
        a->token = line;
        token_cluster_id(line, a->cluster_id);
        a->next_connect_ms = -1;
    }
    return nagents > 0 ? 0 : -1;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "swarm: cannot raise the open file limit: %s\n", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (long)rl.rlim_cur < (long)nagents + 64)
        fprintf(stderr, "swarm: open file limit %ld is below %d agents\n", (long)rl.rlim_cur,
                nagents);
}

static int parse_args(int argc, char **argv, const char **tokens)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"tokens", required_argument, NULL, 't'},
        {"ca", required_argument, NULL, 'c'},
        {"dialect", required_argument, NULL, 'd'},
        {"heartbeat", required_argument, NULL, 'H'},
        {"reconnect", required_argument, NULL, 'r'},
        {"connect-rate", required_argument, NULL, 'R'},
        {"duration", required_argument, NULL, 'D'},
        {"report-interval", required_argument, NULL, 'i'},
        {"procs", required_argument, NULL, 'P'},
        {"no-resume", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u':
            opt.url = optarg;
            break;
        case 't':
            *tokens = optarg;
            break;
        case 'c':
            opt.ca = optarg;
            break;
        case 'd':
            if (!strcmp(optarg, "v2"))
                opt.v2 = 1;
            else if (!strcmp(optarg, "legacy"))
                opt.v2 = 0;
            else
                return -1;
            break;
        case 'H':
            opt.heartbeat_s = atoi(optarg);
            if (opt.heartbeat_s <= 0)
                return -1;
            break;
        case 'r':
            if (!strcmp(optarg, "backoff"))
                opt.fixed_ms = 0;
            else if (!strncmp(optarg, "fixed:", 6) && atoi(optarg + 6) > 0)
                opt.fixed_ms = atoi(optarg + 6);
            else
                return -1;
            break;
        case 'R': /* "N" or "N/s" */
            opt.connect_rate = strtod(optarg, NULL);
            if (opt.connect_rate < 0)
                return -1;
            break;
        case 'D':
            opt.duration_s = strtod(optarg, NULL);
            break;
        case 'i':
            opt.report_s = strtod(optarg, NULL);
            if (opt.report_s < 0.05)
                return -1;
            break;
        case 'P':
            opt.procs = atoi(optarg);
            if (opt.procs < 1 || opt.procs > 64)
                return -1;
            break;
        case 'N':
            opt.resume = 0;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (!opt.url || !*tokens || optind != argc || parse_url(opt.url) != 0)
        return -1;
    return 0;
}

/* lws's default per-connection validity timer (a PING after 300 s idle) is
 * re-armed on traffic, an insertion into its sorted timer list that walks
 * every connection's entry: off, the agents heartbeat. */
static const uint32_t retry_ms[] = {1000, 3000, 9000};
static const lws_retry_bo_t retry_policy = {
    .retry_ms_table = retry_ms,
    .retry_ms_table_count = 3,
    .conceal_count = 3,
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
    .jitter_percent = 20,
};

static void print_summary(const swarm_stats *s, long rss_now, double cpu_s)
{
    long rss_all = s->rss_at_all_kib > 0 ? s->rss_at_all_kib : rss_now;
    long peak = s->max_connected > 0 ? s->max_connected : 1;
    printf("summary agents=%d dialect=%s reconnect=%s procs=%d max_connected=%ld "
           "all_connected_s=%.2f handshake_failures=%ld closes=%ld commands=%ld heartbeats=%ld "
           "heartbeat_acks=%ld heartbeats_unanswered=%ld silent_ends=%ld full_handshakes=%ld "
           "resumed_handshakes=%ld tickets=%ld "
           "swarm_rss_kib=%ld swarm_rss_per_agent_kib=%.1f swarm_cpu_s=%.2f\n",
           nagents, opt.v2 ? "v2" : "legacy", opt.fixed_ms ? "fixed" : "backoff", opt.procs,
           s->max_connected, s->all_connected_s, s->handshake_failures, s->closes, s->commands,
           s->heartbeats, s->heartbeat_acks, s->heartbeats_unanswered, s->silent_ends, s->full_handshakes,
           s->resumed_handshakes, s->tickets, rss_now, (double)(rss_all - s->rss_base_kib) / (double)peak,
           cpu_s);
    fflush(stdout);
}

/* This process's agents on one lws context until stopped. */
static int run_agents(void)
{
    ssl_agent_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = swarm_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    /* libev (epoll), as the server: lws's poll() loop costs O(connections)
     * per round, which for thousands of agents is the swarm's own limit */
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    void *foreign[1] = {loop};
    if (loop) {
        info.foreign_loops = foreign;
        info.options |= LWS_SERVER_OPTION_LIBEV;
    }
    ctx = lws_create_context(&info);
    if (!ctx && loop) { /* libwebsockets' evlib_ev plugin missing: poll */
        ev_loop_destroy(loop);
        loop = NULL;
        info.foreign_loops = NULL;
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
        ctx = lws_create_context(&info);
    }
    if (!ctx) {
        fprintf(stderr, "swarm: cannot create the lws context\n");
        return 1;
    }
    info.vhost_name = "swarm";
    info.retry_and_idle_policy = &retry_policy;
    if (opt.ca)
        info.client_ssl_ca_filepath = opt.ca;
    vhost = lws_create_vhost(ctx, &info);
    if (!vhost) {
        fprintf(stderr, "swarm: cannot create the client vhost (TLS setup failed?)\n");
        lws_context_destroy(ctx);
        return 1;
    }

    rss_base_kib = rss_kib();
    st->rss_base_kib = rss_base_kib;
    t0_ms = now_ms();
    next_report_ms = t0_ms;
    for (int k = 0; k < nagents; k++) {
        agent_backoff_init(&agents[k].bo, 1, 30); /* the agent's defaults */
        agents[k].next_connect_ms =
            t0_ms + (opt.connect_rate > 0 ? (int64_t)(k * 1000.0 / opt.connect_rate) : 0);
    }
    lws_sul_schedule(ctx, 0, &sul_tick, tick, 0);
    while (!stop_req) {
        if (loop)
            ev_run(loop, EVRUN_ONCE);
        else if (lws_service(ctx, 0) < 0)
            break;
    }

    int64_t end = now_ms();
    if (end - last_report_ms >= 100) /* the state at the end, unless just reported */
        report(end);
    st->rss_at_all_kib = st->rss_at_all_kib > 0 ? st->rss_at_all_kib : rss_kib();
    if (!quiet)
        print_summary(st, rss_kib(), proc_cpu_s(0));
    lws_sul_cancel(&sul_tick);
    lws_context_destroy(ctx);
    if (loop)
        ev_loop_destroy(loop);
    for (int k = 0; k < nagents; k++) {
        outq_free(&agents[k]);
        free(agents[k].rx);
        if (agents[k].tls_session)
            SSL_SESSION_free(agents[k].tls_session);
    }
    return 0;
}

/* --procs N: N children, child i the agents k with k % N == i, each its own
 * lws context (one core each); their counters live in a shared mapping and
 * this process prints the sums. */
static int run_procs(void)
{
    int n = opt.procs;
    swarm_stats *shared = mmap(NULL, sizeof(*shared) * (size_t)n, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    kids = calloc((size_t)n, sizeof(*kids));
    if (shared == MAP_FAILED || !kids) {
        fprintf(stderr, "swarm: cannot set up %d processes\n", n);
        return 1;
    }
    int total = nagents;
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        shared[i] = (swarm_stats){.all_connected_s = -1};
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "swarm: fork: %s\n", strerror(errno));
            stop_req = 1;
            n = i;
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* the parent killed: stop too */
            int mine = 0;
            for (int k = i; k < total; k += opt.procs)
                agents[mine++] = agents[k];
            nagents = mine;
            opt.connect_rate /= opt.procs;
            st = &shared[i];
            quiet = 1;
            int rc = run_agents();
            st->done = 1;
            _exit(rc);
        }
        kids[i] = pid;
    }
    int64_t t0 = now_ms(), next = t0;
    swarm_stats sum;
    long max_connected = 0;
    double all_s = -1;
    for (;;) {
        int64_t now = now_ms();
        memset(&sum, 0, sizeof(sum));
        double cpu = 0;
        int done = 0;
        for (int i = 0; i < n; i++) {
            swarm_stats *c = &shared[i];
            sum.connected += c->connected;
            sum.connecting += c->connecting;
            sum.handshake_failures += c->handshake_failures;
            sum.closes += c->closes;
            sum.commands += c->commands;
            sum.heartbeats += c->heartbeats;
            sum.heartbeat_acks += c->heartbeat_acks;
            sum.heartbeats_unanswered += c->heartbeats_unanswered;
            for (int k = 0; k < HB_BUCKETS; k++)
                sum.hb_ack_ms[k] += c->hb_ack_ms[k];
            sum.silent_ends += c->silent_ends;
            sum.full_handshakes += c->full_handshakes;
            sum.resumed_handshakes += c->resumed_handshakes;
            sum.tickets += c->tickets;
            sum.rss_base_kib += c->rss_base_kib;
            sum.rss_at_all_kib += c->rss_at_all_kib;
            cpu += proc_cpu_s(kids[i]);
            done += c->done || waitpid(kids[i], NULL, WNOHANG) == kids[i];
        }
        if (sum.connected > max_connected)
            max_connected = sum.connected;
        if (all_s < 0 && sum.connected == total) {
            all_s = (double)(now - t0) / 1000.0;
            printf("all_connected t=%.2f\n", all_s);
            fflush(stdout);
        }
        if (now >= next || stop_req || done == n) {
            print_report((double)(now - t0) / 1000.0, &sum, cpu);
            next += (int64_t)(opt.report_s * 1000);
        }
        if (stop_req || done == n || (opt.duration_s > 0 && now - t0 >= (int64_t)(opt.duration_s * 1000))) {
            for (int i = 0; i < n; i++)
                kill(kids[i], SIGTERM);
            long rss = 0;
            for (int i = 0; i < n; i++) {
                char path[64], line[256];
                snprintf(path, sizeof(path), "/proc/%d/status", (int)kids[i]);
                FILE *f = fopen(path, "r");
                while (f && fgets(line, sizeof(line), f))
                    if (!strncmp(line, "VmRSS:", 6))
                        rss += strtol(line + 6, NULL, 10);
                if (f)
                    fclose(f);
            }
            struct rusage ru;
            for (int i = 0; i < n; i++)
                waitpid(kids[i], NULL, 0);
            getrusage(RUSAGE_CHILDREN, &ru);
            double cpu_all = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                             (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
            sum.max_connected = max_connected;
            sum.all_connected_s = all_s;
            nagents = total;
            print_summary(&sum, rss, cpu_all);
            return 0;
        }
        usleep(20 * 1000);
    }
}

int main(int argc, char **argv)
{
    const char *tokens = NULL;
    if (parse_args(argc, argv, &tokens) != 0) {
        usage(stderr);
        return 2;
    }
    if (load_tokens(tokens) != 0) {
        fprintf(stderr, "swarm: no agent tokens in %s\n", tokens);
        return 2;
    }
    raise_nofile(); /* before the context: lws sizes its fd table from the limit */
    /* a bench that dies without stopping us must not leave thousands of
     * agents retrying against nothing */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lws_set_log_level(LLL_ERR, NULL);
    if (opt.procs > 1 && nagents >= opt.procs)
        return run_procs();
    opt.procs = 1;
    return run_agents();
}
