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
 * goes to stdout, then a summary line at the end (--duration, SIGINT, SIGTERM).
 */
#include <errno.h>
#include <getopt.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
    int64_t connected_at_ms;
    agent_backoff bo;
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
} opt = {.v2 = 1, .heartbeat_s = 30, .connect_rate = 0, .duration_s = 0, .report_s = 1};

static struct {
    long connected, connecting, handshake_failures, closes, commands;
    long heartbeats, heartbeat_acks;
    long silent_ends; /* connections that ended with no error or close callback */
    long max_connected;
    double all_connected_s;   /* first time every agent was connected; -1 before */
    long rss_at_all_kib;      /* swarm RSS at that moment */
} st = {.all_connected_s = -1};

static sim_agent *agents;
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
    st.connecting++;
    a->wsi = NULL;
    /* a->wsi is set from the result, not through pwsi: a failure reported
     * synchronously (CONNECTION_ERROR inside this call) leaves it NULL */
    struct lws *w = lws_client_connect_via_info(&i);
    if (a->state != A_CONNECTING)
        return; /* already failed inside the call: on_gone() rescheduled it */
    if (w) {
        a->wsi = w;
    } else {
        /* refused before any callback (e.g. out of fds): count and retry */
        st.connecting--;
        st.handshake_failures++;
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
        st.connected--;
    else
        st.connecting--;
    if (handshake_failed)
        st.handshake_failures++;
    else
        st.closes++;
    int was_up = a->state == A_CONNECTED;
    int64_t up_ms = was_up ? now - a->connected_at_ms : 0;
    a->state = A_IDLE;
    a->wsi = NULL;
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
        a->next_hb_ms = a->connected_at_ms + (int64_t)opt.heartbeat_s * 1000;
        st.connecting--;
        st.connected++;
        if (st.connected > st.max_connected)
            st.max_connected = st.connected;
        push_text(a, proto_enc_register(a->cluster_id, SWARM_VERSION, a->v2 ? 2 : 1, 16));
        break;
    case MSG_EXEC:
        st.commands++;
        answer_exec(a, m.id);
        break;
    case MSG_KUBECTL_COMMAND:
        st.commands++;
        push_text(a, proto_enc_command_response(m.command_id, 1, ANSWER, sizeof(ANSWER) - 1,
                                                NULL, 0));
        break;
    case MSG_HEARTBEAT_ACK:
        st.heartbeat_acks++;
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

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

static int swarm_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
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
            st.silent_ends++;
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

static void report(int64_t now)
{
    double t = (double)(now - t0_ms) / 1000.0;
    last_report_ms = now;
    printf("t=%.1f connected=%ld connecting=%ld handshake_failures=%ld closes=%ld commands=%ld\n",
           t, st.connected, st.connecting, st.handshake_failures, st.closes, st.commands);
    fflush(stdout);
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
            push_text(a, proto_enc_heartbeat(a->cluster_id));
            st.heartbeats++;
            a->next_hb_ms = now + (int64_t)opt.heartbeat_s * 1000;
        }
    }
    if (st.all_connected_s < 0 && st.connected == nagents) {
        st.all_connected_s = (double)(now - t0_ms) / 1000.0;
        st.rss_at_all_kib = rss_kib();
        printf("all_connected t=%.2f\n", st.all_connected_s);
        fflush(stdout);
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
            "         [--report-interval S]\n"
            "One simulated agent per token (one per line).  --connect-rate: new agents\n"
            "per second in the initial ramp (0: all at once).  --duration 0: until\n"
            "SIGINT/SIGTERM.\n");
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
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lws_set_log_level(LLL_ERR, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = swarm_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "swarm: cannot create the lws context\n");
        return 1;
    }
    info.vhost_name = "swarm";
    if (opt.ca)
        info.client_ssl_ca_filepath = opt.ca;
    vhost = lws_create_vhost(ctx, &info);
    if (!vhost) {
        fprintf(stderr, "swarm: cannot create the client vhost (TLS setup failed?)\n");
        lws_context_destroy(ctx);
        return 1;
    }

    rss_base_kib = rss_kib();
    t0_ms = now_ms();
    next_report_ms = t0_ms;
    for (int k = 0; k < nagents; k++) {
        agent_backoff_init(&agents[k].bo, 1, 30); /* the agent's defaults */
        agents[k].next_connect_ms =
            t0_ms + (opt.connect_rate > 0 ? (int64_t)(k * 1000.0 / opt.connect_rate) : 0);
    }
    lws_sul_schedule(ctx, 0, &sul_tick, tick, 0);
    while (!stop_req)
        if (lws_service(ctx, 0) < 0)
            break;

    int64_t end = now_ms();
    if (end - last_report_ms >= 100) /* the state at the end, unless just reported */
        report(end);
    long rss_now = rss_kib();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    long rss_all = st.rss_at_all_kib > 0 ? st.rss_at_all_kib : rss_now;
    long peak = st.max_connected > 0 ? st.max_connected : 1;
    printf("summary agents=%d dialect=%s reconnect=%s max_connected=%ld all_connected_s=%.2f "
           "handshake_failures=%ld closes=%ld commands=%ld heartbeats=%ld heartbeat_acks=%ld "
           "silent_ends=%ld swarm_rss_kib=%ld swarm_rss_per_agent_kib=%.1f swarm_cpu_s=%.2f\n",
           nagents, opt.v2 ? "v2" : "legacy", opt.fixed_ms ? "fixed" : "backoff",
           st.max_connected, st.all_connected_s, st.handshake_failures, st.closes, st.commands,
           st.heartbeats, st.heartbeat_acks, st.silent_ends, rss_now,
           (double)(rss_all - rss_base_kib) / (double)peak, cpu_s);
    fflush(stdout);
    lws_sul_cancel(&sul_tick);
    lws_context_destroy(ctx);
    for (int k = 0; k < nagents; k++) {
        outq_free(&agents[k]);
        free(agents[k].rx);
    }
    return 0;
}
