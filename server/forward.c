/* forward.c — commands run on the replica that holds the cluster's agent;
 * see forward.h. */
#include "forward.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "buf.h"
#include "crypto.h"
#include "exec.h"
#include "log.h"
#include "prom.h"
#include "proto.h"
#include "registry.h"
#include "router.h"
#include "secret.h"
#include "worker.h"

#define FORWARD_PATH "/internal/forward/exec"
#define SECRET_HEADER "x-aurora-forward-secret"
#define MAX_EVENT (4 * 1024 * 1024)   /* one SSE event (a 1 MiB chunk, base64, framing) */
#define MAX_ERROR_BODY (64 * 1024)
/* How long the owner may take to accept the connection and finish the TLS
 * handshake.  A live replica does it in milliseconds; one that is frozen
 * (SIGSTOP, a hung node) or whose pod IP is black-holed never does, while
 * its registration attracts the cluster's commands until its lease lapses:
 * without this each of them waited out libwebsockets' 30 s connection
 * timeout, holding one of the cluster's slots. */
#define CONNECT_DEADLINE_S 5

/* Process-wide: what every forward connection needs, set once at start. */
static struct {
    struct lws_context *ctx;
    int tls;
    int verify; /* the peer's certificate is checked (forward_peer) */
    const char *secret;
    int64_t window;
    double grace_s; /* twice the tunnel's: the owner replica's own deadline answers first */
    prom_family_t *outcomes; /* aurora_forward_commands_total{outcome} */
    tunnel_hub *tunnels; /* this replica's sessions: a retry may run there (again_here) */
    /* Every forward and retry lookup alive (loop thread): forward_shutdown
     * ends those whose caller still waits. */
    struct fwd *fwds;
    struct fwd_again *agains;
    /* what the owner's route accepts of a forwarded command (forward_in):
     * a retry run here reads the body with the same limits (again_here) */
    double max_timeout;
    int64_t max_output;
} F;

/* What a replica gives a failed command's caller, wherever it ends: the
 * tunnel's 502 (AGENT_DISCONNECTED, AGENT_PROTOCOL_ERROR,
 * COMMAND_INTERRUPTED), 503 (AGENT_NOT_CONNECTED, SERVER_SHUTTING_DOWN) and
 * 504 (TIMEOUT) (tunnel.c, and fwd_fail here); exec.c's 429 and 503 output
 * budgets, and before a stream its 409 AGENT_UNSUPPORTED, 429
 * CLUSTER_BUSY, 500 INTERNAL and 503 AUDIT_UNAVAILABLE; the owner's route's
 * 400 BAD_REQUEST and http.c's 400 and 413 BODY_TOO_LARGE (passed on by
 * fwd_error_body, and in an owner's stream when it forwarded a held command
 * on to a third replica).  The owner's answer is another replica's word,
 * or whatever holds the deployment's key and secret at the address
 * registered: a status outside these (101, a 3xx without Location, 999,
 * a negative one) went into the caller's answer as it came. */
static int status_a_replica_gives(int status)
{
    switch (status) {
    case 400: case 409: case 413: case 429: case 500: case 502: case 503: case 504:
        return 1;
    default:
        return 0;
    }
}

#define EC_FORWARD_BAD_STATUS "FORWARD_BAD_STATUS"

static void count_outcome(const char *outcome)
{
    const char *v[] = { outcome };
    if (F.outcomes)
        prom_add(F.outcomes, v, 1);
}

forward_peer_mode forward_peer(const server_config *cfg, const char **file)
{
    *file = NULL;
    if (cfg->plain_http)
        return FORWARD_PEER_NONE;
    const char *ca = server_setting(cfg, "AURORA_INTERNAL_CA_FILE");
    if (ca && *ca) {
        *file = ca;
        return FORWARD_PEER_CA;
    }
    const char *given = server_setting(cfg, "AURORA_TLS_CERT");
    if (given && *given) {
        *file = cfg->tls_cert;
        return FORWARD_PEER_PINNED;
    }
    return FORWARD_PEER_NONE;
}

void forward_start(const server_config *cfg, struct lws_context *ctx, tunnel_hub *tunnels)
{
    F.ctx = ctx;
    F.tunnels = tunnels;
    F.tls = !cfg->plain_http;
    const char *file;
    F.verify = forward_peer(cfg, &file) != FORWARD_PEER_NONE;
    const char *redis = server_setting(cfg, "AURORA_REDIS_URL");
    if (redis && *redis && !F.tls)
        log_warn("AURORA_PLAIN_HTTP with AURORA_REDIS_URL: commands forwarded between replicas, "
                 "their forward secret and cloud credentials cross the pod network in clear text "
                 "to whatever address Redis names; serve TLS in the pods (and share "
                 "AURORA_TLS_CERT or set AURORA_INTERNAL_CA_FILE)");
    else if (redis && *redis && !F.verify)
        log_warn("forwarded commands do not verify the peer replica's certificate: set "
                 "AURORA_INTERNAL_CA_FILE (or give every replica the same AURORA_TLS_CERT), or "
                 "whoever can write to Redis can receive commands and their credentials");
    F.secret = server_setting(cfg, "AURORA_INTERNAL_FORWARD_SECRET");
    F.window = cfg->stream_window > 0 ? cfg->stream_window : 262144;
    F.grace_s = 2.0 * (cfg->deadline_grace_s > 0 ? cfg->deadline_grace_s : TUNNEL_DEADLINE_GRACE_S);
    F.max_timeout = cfg->max_timeout;
    F.max_output = cfg->max_output_stream;
    static const char *const labels[] = { "outcome" };
    F.outcomes = prom_family(PROM_COUNTER, "aurora_forward_commands_total",
                                "Commands this replica forwarded to the replica holding the "
                                "agent, by how they ended (ok, failed, timeout, owner_gone, "
                                "interrupted: the owner's shutdown cut it, "
                                "unreachable, not_connected, cancelled; retried: the owner "
                                "answered that it did not run and another replica, named "
                                "since, was asked once more, its answer counted too; "
                                "retried_here: the same, the agent now held by this replica, "
                                "which ran it: no more counted here)",
                                1, labels, NULL, 0);
}

/* ---- client side (origin, loop thread) ------------------------------------------------ */

typedef struct fwd {
    tunnel_req *req;   /* NULL once ended or abandoned */
    struct lws *wsi;   /* NULL once closed */
    char host[256];
    int port;
    unsigned char *body; /* LWS_PRE + JSON (carries cloud credentials: wiped); kept
                            until the end, for fwd_retry */
    size_t body_len, body_sent;
    int sent_all;      /* the whole body was written */
    int got_output;    /* the owner sent output: the command ran there */
    int retried;       /* this is the one retry (fwd_retry): no other */
    double deadline;   /* monotonic seconds: when the caller's timeout runs out */
    char addr[280];    /* owner_addr as the registry gave it */
    char cluster[160];
    int connecting;    /* inside lws_client_connect_via_info */
    int failed_early;  /* a connection error while connecting */
    int status;        /* the owner's HTTP status, 0 before it answered */
    buf_t in;          /* SSE text not yet parsed, or an error body */
    int64_t outstanding; /* output handed to the sink and not yet consumed */
    int paused;
    double timeout;
    int connected;     /* TCP and TLS done: the request is being sent */
    lws_sorted_usec_list_t sul; /* deadline */
    lws_sorted_usec_list_t connect_sul; /* CONNECT_DEADLINE_S */
    struct fwd *prev, *next; /* F.fwds */
} fwd;

static void fwd_consumed(void *rctx, size_t n);
static void fwd_abandon(void *rctx);
static const tunnel_remote_ops fwd_ops = { fwd_consumed, fwd_abandon };

static void fwd_wipe_body(fwd *f)
{
    if (f->body) {
        OPENSSL_cleanse(f->body, LWS_PRE + f->body_len);
        free(f->body);
        f->body = NULL;
    }
}

static void fwd_free(fwd *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else if (F.fwds == f)
        F.fwds = f->next;
    if (f->next)
        f->next->prev = f->prev;
    lws_sul_cancel(&f->sul);
    lws_sul_cancel(&f->connect_sul);
    fwd_wipe_body(f);
    buf_free(&f->in);
    free(f);
}

static void fwd_kill(fwd *f)
{
    if (f->wsi)
        lws_set_timeout(f->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fwd_retry(fwd *f, tunnel_req *q, const tunnel_result *r);

/* 1 when r says for certain that the command ran nowhere: the owner's
 * AGENT_NOT_CONNECTED, with no output seen (exec_start's refusal, or in its
 * stream requeue_waiting's for a command no agent was sent: its session
 * stepped aside or ended first); its SERVER_SHUTTING_DOWN as the answer's
 * status (admission's refusal); or ours, the owner never reached (no
 * status, the body not all written).  Any other end (a 502 mid-command, the
 * owner's shutdown cutting it, COMMAND_INTERRUPTED, a timeout, a body sent
 * and no answer) may follow a run: never retried.  In a stream a
 * SERVER_SHUTTING_DOWN now says the owner still held it unsent
 * (tunnel_shutdown), but an owner of an earlier version, met during a
 * rollout, ended a running command with it too: not retried either. */
static int fwd_did_not_run(const fwd *f, const tunnel_result *r)
{
    const char *code = r->error_code ? r->error_code : "";
    if (!r->failed || f->got_output)
        return 0;
    if (!f->status)
        return !f->sent_all && !strcmp(code, EC_AGENT_NOT_CONNECTED);
    return !strcmp(code, EC_AGENT_NOT_CONNECTED) ||
           (f->status == 503 && !strcmp(code, EC_SERVER_SHUTTING_DOWN));
}

static void fwd_end(fwd *f, const tunnel_result *r)
{
    tunnel_req *q = f->req;
    f->req = NULL;
    lws_sul_cancel(&f->sul);
    lws_sul_cancel(&f->connect_sul);
    if (!q)
        return;
    if (!f->retried && f->body && fwd_did_not_run(f, r) && fwd_retry(f, q, r) == 0)
        return; /* q's end comes from the retry (or, without one, this end) */
    fwd_wipe_body(f);
    const char *code = r->error_code ? r->error_code : "";
    /* AGENT_NOT_CONNECTED is ours when the owner could not be reached (no
     * HTTP status from it), the owner's when its agent left before the
     * command started there (or while it was queued). */
    count_outcome(!r->failed                                 ? "ok"
                  : !strcmp(code, EC_AGENT_DISCONNECTED)     ? "owner_gone"
                  : !strcmp(code, EC_AGENT_NOT_CONNECTED)    ? (f->status ? "not_connected"
                                                                          : "unreachable")
                  : !strcmp(code, EC_TIMEOUT)                ? "timeout"
                  : !strcmp(code, EC_COMMAND_INTERRUPTED)    ? "interrupted"
                                                             : "failed");
    tunnel_req_remote_end(q, r);
}

static void fwd_fail(fwd *f, int status, const char *code, const char *msg)
{
    tunnel_result r = { .failed = 1, .http_status = status, .return_code = -1, .error = msg,
                        .error_code = code };
    fwd_end(f, &r);
}

static void fwd_consumed(void *rctx, size_t n)
{
    fwd *f = rctx;
    f->outstanding -= (int64_t)n;
    if (f->paused && f->wsi && f->outstanding < F.window / 2) {
        f->paused = 0;
        lws_rx_flow_control(f->wsi, 1);
    }
}

static void fwd_abandon(void *rctx)
{
    fwd *f = rctx;
    if (!f->failed_early) /* a caller that left, not a forward that never started */
        count_outcome("cancelled");
    f->req = NULL; /* freed by tunnel_req_abandon */
    lws_sul_cancel(&f->sul);
    lws_sul_cancel(&f->connect_sul);
    /* Closing the connection is the cancel: the owner's exec sees its
     * client go and cancels at the agent. */
    fwd_kill(f);
    if (!f->wsi && !f->connecting)
        fwd_free(f);
}

static void fwd_deadline(lws_sorted_usec_list_t *sul)
{
    fwd *f = lws_container_of(sul, fwd, sul);
    char msg[160];
    snprintf(msg, sizeof(msg), "the replica holding the agent did not answer within %.0f s",
             f->timeout + F.grace_s);
    fwd_fail(f, 504, EC_TIMEOUT, msg);
    fwd_kill(f);
}

static void fwd_connect_deadline(lws_sorted_usec_list_t *sul)
{
    fwd *f = lws_container_of(sul, fwd, connect_sul);
    if (f->connected || !f->req)
        return;
    char msg[400];
    snprintf(msg, sizeof(msg), "the replica holding the agent (%s:%d) cannot be reached: no "
                               "connection within %d s",
             f->host, f->port, CONNECT_DEADLINE_S);
    fwd_fail(f, 503, EC_AGENT_NOT_CONNECTED, msg);
    fwd_kill(f);
}

/* The owner answered with a status no replica gives (status_a_replica_gives):
 * the caller's answer is 502, and the forwarding replica's log says whom. */
static void fwd_bad_status(fwd *f, double status)
{
    log_warn("forward to %s:%d answered with HTTP status %.0f, which no replica gives for a "
             "command: answered 502 " EC_FORWARD_BAD_STATUS " (a replica of another version, or "
             "not a replica: whatever holds the deployment's key and forward secret there)",
             f->host, f->port, status);
    char text[160];
    snprintf(text, sizeof(text), "the replica holding the agent answered with HTTP status %.0f, "
                                 "which no replica gives",
             status);
    fwd_fail(f, 502, EC_FORWARD_BAD_STATUS, text);
}

/* A count (ms, bytes) from the owner's answer: 0 (not given) unless a number in
 * 0..9e15 (proto.c's bound).  A double outside int64_t's range cast to it
 * is undefined behaviour, and 1e300 is a valid JSON number. */
static int64_t owner_count(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15
               ? (int64_t)v->valuedouble
               : 0;
}

/* One SSE event of the owner's stream. */
static void fwd_event(fwd *f, const char *event, const char *data)
{
    cJSON *d = cJSON_Parse(data);
    if (!d) {
        log_warn("forward to %s:%d: malformed event '%s' dropped", f->host, f->port, event);
        cJSON_Delete(d);
        return;
    }
    if (!strcmp(event, "output")) {
        const char *stream = cJSON_GetStringValue(cJSON_GetObjectItem(d, "stream"));
        int chan = stream && !strcmp(stream, "stderr") ? PROTO_CHAN_STDERR : PROTO_CHAN_STDOUT;
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(d, "text"));
        const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItem(d, "base64"));
        if (!f->got_output) {
            f->got_output = 1;
            fwd_wipe_body(f); /* it ran there: no retry needs the credentials */
        }
        if (text) {
            size_t n = strlen(text);
            f->outstanding += (int64_t)n;
            tunnel_req_remote_data(f->req, chan, (const unsigned char *)text, n);
        } else if (b64) {
            size_t n = 0;
            unsigned char *raw = crypto_base64_decode(b64, strlen(b64), &n);
            if (raw) {
                f->outstanding += (int64_t)n;
                tunnel_req_remote_data(f->req, chan, raw, n);
            }
            free(raw);
        }
        cJSON_Delete(d);
        return;
    }
    if (!strcmp(event, "result") || !strcmp(event, "error")) {
        int failed = !strcmp(event, "error");
        const cJSON *hs = cJSON_GetObjectItem(d, "http_status");
        /* a result's is never read (exec.c answers it 200); an error's
         * must be one a replica gives */
        if (failed && cJSON_IsNumber(hs) &&
            (hs->valuedouble != (double)hs->valueint || !status_a_replica_gives(hs->valueint))) {
            fwd_bad_status(f, hs->valuedouble);
            cJSON_Delete(d);
            return;
        }
        const cJSON *rc = cJSON_GetObjectItem(d, "return_code");
        const cJSON *dur = cJSON_GetObjectItem(d, "duration_ms");
        const cJSON *bytes = cJSON_GetObjectItem(d, "bytes");
        tunnel_result r = {
            .failed = failed,
            .http_status = !failed ? 200 : cJSON_IsNumber(hs) ? hs->valueint : 502,
            .return_code = cJSON_IsNumber(rc) ? rc->valueint : -1,
            .truncated = cJSON_IsTrue(cJSON_GetObjectItem(d, "truncated")),
            .duration_ms = owner_count(dur),
            .bytes = owner_count(bytes),
            .error = cJSON_GetStringValue(cJSON_GetObjectItem(d, "error")),
            .error_code = cJSON_GetStringValue(cJSON_GetObjectItem(d, "error_code")),
        };
        if (!r.error)
            r.error = "";
        fwd_end(f, &r);
    }
    cJSON_Delete(d);
}

/* Parses the complete events in f->in (each ends with a blank line). */
static void fwd_parse(fwd *f)
{
    for (;;) {
        if (!f->req)
            return;
        const char *head = buf_head(&f->in);
        size_t n = buf_pending(&f->in);
        const char *end = n ? memmem(head, n, "\n\n", 2) : NULL;
        if (!end) {
            if (n > MAX_EVENT) {
                fwd_fail(f, 502, EC_AGENT_DISCONNECTED,
                         "the replica holding the agent sent an event too large");
                fwd_kill(f);
            }
            return;
        }
        size_t len = (size_t)(end - head);
        char *ev = malloc(len + 1);
        if (!ev)
            return;
        memcpy(ev, head, len);
        ev[len] = '\0';
        buf_consume(&f->in, len + 2);
        char *event = "message", *data = NULL;
        for (char *line = strtok(ev, "\n"); line; line = strtok(NULL, "\n")) {
            if (!strncmp(line, "event: ", 7))
                event = line + 7;
            else if (!strncmp(line, "data: ", 6))
                data = line + 6;
        }
        if (data)
            fwd_event(f, event, data);
        free(ev);
    }
}

/* The owner refused or could not run it: its JSON error, passed on. */
static void fwd_error_body(fwd *f)
{
    cJSON *d = cJSON_ParseWithLength(buf_head(&f->in), buf_pending(&f->in));
    const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(d, "error_code"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(d, "error"));
    char text[128];
    if (f->status >= 300 && f->status < 400) {
        log_error("forward to %s:%d answered with a redirect (HTTP %d), not followed: "
                  "AURORA_INTERNAL_ADDR must name the replica's own listener", f->host, f->port,
                  f->status);
        snprintf(text, sizeof(text), "the replica holding the agent refused the forwarded "
                                     "command (HTTP %d)", f->status);
        fwd_fail(f, 502, "FORWARD_REFUSED", text);
    } else if (f->status == 401 || f->status == 403 || f->status == 404 || !code) {
        /* A configuration problem between replicas, not the caller's. */
        log_error("forward to %s:%d refused with HTTP %d (%s): check that every replica has "
                  "the same AURORA_INTERNAL_FORWARD_SECRET and AURORA_REDIS_URL",
                  f->host, f->port, f->status, msg ? msg : "no message");
        snprintf(text, sizeof(text), "the replica holding the agent refused the forwarded "
                                     "command (HTTP %d)", f->status);
        fwd_fail(f, 502, "FORWARD_REFUSED", text);
    } else if (!status_a_replica_gives(f->status)) {
        fwd_bad_status(f, f->status);
    } else {
        fwd_fail(f, f->status, code, msg ? msg : "");
    }
    cJSON_Delete(d);
}

static int fwd_write_body(struct lws *wsi, fwd *f)
{
    size_t left = f->body_len - f->body_sent;
    size_t n = left > 16384 ? 16384 : left;
    unsigned char chunk[LWS_PRE + 16384];
    memcpy(chunk + LWS_PRE, f->body + LWS_PRE + f->body_sent, n);
    int last = n == left;
    int rc = lws_write(wsi, chunk + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    if (rc < 0)
        return -1;
    f->body_sent += n;
    if (last) {
        f->sent_all = 1; /* the body stays, wiped at the end, for fwd_retry */
        lws_client_http_body_pending(wsi, 0);
    } else {
        lws_callback_on_writable(wsi);
    }
    return 0;
}

/* The connection is gone (error or close): what was not ended fails. */
static void fwd_gone(struct lws *wsi, fwd *f, const char *why)
{
    f->wsi = NULL;
    lws_set_wsi_user(wsi, NULL);
    if (f->connecting) {
        f->failed_early = 1; /* forward_exec reports it */
        return;
    }
    if (f->req) {
        char msg[640];
        if (!f->status && !f->sent_all) { /* nothing reached the owner */
            snprintf(msg, sizeof(msg), "the replica holding the agent (%s:%d) cannot be reached: %s",
                     f->host, f->port, why);
            fwd_fail(f, 503, EC_AGENT_NOT_CONNECTED, msg);
        } else if (f->status && f->status != 200) {
            fwd_error_body(f);
        } else {
            snprintf(msg, sizeof(msg), "the replica holding the agent went away mid-command (%s)",
                     why);
            fwd_fail(f, 502, EC_AGENT_DISCONNECTED, msg);
        }
    }
    fwd_free(f);
}

int forward_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    fwd *f = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return 1; /* a client protocol only: no agent may ask for it */
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (!f)
            return -1;
        f->connected = 1;
        lws_sul_cancel(&f->connect_sul);
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        char clen[32];
        snprintf(clen, sizeof(clen), "%zu", f->body_len);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)SECRET_HEADER ":",
                                        (const unsigned char *)F.secret, (int)strlen(F.secret), p,
                                        end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"content-type:",
                                        (const unsigned char *)"application/json", 16, p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"accept:",
                                        (const unsigned char *)"text/event-stream", 17, p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"content-length:",
                                        (const unsigned char *)clen, (int)strlen(clen), p, end))
            return -1;
        lws_client_http_body_pending(wsi, 1);
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        if (!f || !f->body || f->sent_all)
            return 0;
        return fwd_write_body(wsi, f);
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        if (f)
            f->status = (int)lws_http_client_http_response(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buffer[LWS_PRE + 8192];
        char *px = buffer + LWS_PRE;
        int lenx = (int)sizeof(buffer) - LWS_PRE;
        return lws_http_client_read(wsi, &px, &lenx) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (!f || !f->req)
            return f ? -1 : 0; /* abandoned: nothing more to read */
        if (f->status != 200) {
            if (buf_pending(&f->in) + len <= MAX_ERROR_BODY)
                buf_append(&f->in, in, len);
            return 0;
        }
        if (buf_append(&f->in, in, len) < 0)
            return -1;
        fwd_parse(f);
        if (f->req && f->outstanding > F.window && !f->paused) {
            f->paused = 1;
            lws_rx_flow_control(wsi, 0);
        }
        return 0;
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        if (f && f->req) {
            if (f->status != 200)
                fwd_error_body(f);
            else
                fwd_fail(f, 502, EC_AGENT_DISCONNECTED,
                         "the replica holding the agent ended the command without a result");
        }
        return -1; /* one command per connection */
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (f) {
            /* lws's reason, bounded (it is not promised to be terminated). */
            char why[128] = "connection error";
            if (in && len)
                snprintf(why, sizeof(why), "%.*s", (int)(len < sizeof(why) ? len : sizeof(why) - 1),
                         (const char *)in);
            fwd_gone(wsi, f, why);
        }
        return 0;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        if (f)
            fwd_gone(wsi, f, "connection closed");
        return 0;
    default:
        break;
    }
    return 0;
}

static char *encode_request(const tunnel_exec_params *p, const char *user_id)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "org_id", p->org_id);
    cJSON_AddStringToObject(o, "user_id", user_id ? user_id : "");
    cJSON_AddStringToObject(o, "cluster_id", p->cluster_id);
    cJSON_AddStringToObject(o, "kind", p->kind ? p->kind : "kubectl");
    cJSON_AddStringToObject(o, "program", p->program ? p->program : "");
    cJSON *a = cJSON_AddArrayToObject(o, "argv");
    for (int i = 0; a && i < p->argv->c; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(p->argv->v[i]));
    if (p->legacy_command)
        cJSON_AddStringToObject(o, "command", p->legacy_command);
    cJSON *env = cJSON_AddArrayToObject(o, "env");
    for (int i = 0; env && i < p->nenv; i++)
        cJSON_AddItemToArray(env, cJSON_CreateString(p->env[i]));
    cJSON_AddNumberToObject(o, "timeout", p->timeout);
    cJSON_AddNumberToObject(o, "max_output", (double)p->max_output);
    /* The credentials and the command line (a --token=… typed into it):
     * printed without outgrown copies, the tree's strings wiped. */
    char *s = secret_json_print(o);
    secret_json_free(o);
    return s;
}

/* A fwd for the replica at owner_addr, not connected, with no request yet;
 * NULL with err. */
static fwd *fwd_new(const char *owner_addr, const char *cluster_id, char *err, size_t errlen)
{
    fwd *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* An IP literal with a port of digits (registry_parse_addr): a name
     * would be resolved on the event loop, "70000" dialled modulo 65536. */
    int rc = strlen(owner_addr) >= sizeof(f->addr) || strlen(cluster_id) >= sizeof(f->cluster)
                 ? -1
                 : registry_parse_addr(owner_addr, f->host, sizeof(f->host), &f->port);
    if (rc < 0) {
        free(f);
        snprintf(err, errlen,
                 rc == -2 ? "the replica holding cluster %s registered an address that is not "
                            "an IP address"
                          : "the replica holding cluster %s registered a bad address",
                 cluster_id);
        return NULL;
    }
    snprintf(f->addr, sizeof(f->addr), "%s", owner_addr);
    snprintf(f->cluster, sizeof(f->cluster), "%s", cluster_id);
    f->next = F.fwds; /* freed with fwd_free from here on */
    if (F.fwds)
        F.fwds->prev = f;
    F.fwds = f;
    return f;
}

/* f, with its body and request (adopted: given back untouched on failure,
 * see fwd_start), connects to its owner.  0; -1 with err, f gone. */
static int fwd_connect(fwd *f, int adopted, char *err, size_t errlen)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = F.ctx;
    /* The API's vhost (TLS client context, this protocol), never the
     * operations listener's (AURORA_OPS_PORT). */
    i.vhost = lws_get_vhost_by_name(F.ctx, "default");
    i.address = f->host;
    i.port = f->port;
    i.path = FORWARD_PATH;
    i.host = f->host;
    i.origin = f->host;
    i.method = "POST";
    i.protocol = FORWARD_PROTOCOL;
    i.local_protocol_name = FORWARD_PROTOCOL;
    i.userdata = f;
    i.pwsi = &f->wsi;
    /* The secret authenticates this replica to the owner; the owner's
     * certificate authenticates it to us, against the deployment's CA
     * (forward_peer): an address planted in Redis then gets neither
     * the secret nor the command.  Peers are reached by pod IP, which a
     * deployment-wide certificate does not name: no host name check. */
    if (F.verify)
        i.ssl_connection = LCCSCF_USE_SSL | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    else if (F.tls)
        i.ssl_connection = LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED |
                           LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_INSECURE |
                           LCCSCF_ALLOW_EXPIRED;
    /* One request, to the address the registry named: lws follows a 3xx by
     * default, asking for the headers again, and the secret and the command
     * (its credentials) went wherever Location said, a host name resolved
     * on the loop.  A redirect is the owner's answer: a refusal
     * (fwd_error_body). */
    i.ssl_connection |= LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
    f->connecting = 1;
    struct lws *wsi = lws_client_connect_via_info(&i);
    f->connecting = 0;
    if (!wsi || f->failed_early) {
        snprintf(err, errlen, "the replica holding the agent of cluster %s (%s) cannot be reached",
                 f->cluster, f->addr);
        /* Nobody was told yet: drop the request without its callbacks
         * (fwd_abandon frees f once no connection is left); one adopted is
         * given back as it came. */
        f->failed_early = 1;
        if (adopted) {
            tunnel_req_set_remote(f->req, NULL, NULL);
            fwd_abandon(f);
        } else {
            tunnel_req_abandon(f->req);
        }
        return -1;
    }
    lws_sul_schedule(F.ctx, 0, &f->sul, fwd_deadline,
                     (lws_usec_t)((f->timeout + F.grace_s) * LWS_USEC_PER_SEC));
    if (!f->connected)
        lws_sul_schedule(F.ctx, 0, &f->connect_sul, fwd_connect_deadline,
                         (lws_usec_t)CONNECT_DEADLINE_S * LWS_USEC_PER_SEC);
    log_info("exec on %s forwarded to the replica at %s", f->cluster, f->addr);
    return 0;
}

/* f's request body: json (a message that may hold credentials, wiped and
 * freed here) after LWS_PRE bytes of room; f->body stays NULL when json is
 * NULL or memory is short. */
static void fwd_set_body(fwd *f, char *json)
{
    if (!json)
        return;
    f->body_len = strlen(json);
    f->body = malloc(LWS_PRE + f->body_len);
    if (f->body)
        memcpy(f->body + LWS_PRE, json, f->body_len);
    proto_free_secret(json);
}

/* forward_exec, or forward_held when adopt is not NULL: that request, not
 * a new one, becomes the forward's (and is given back untouched on failure). */
static tunnel_req *fwd_start(const char *owner_addr, const tunnel_exec_params *p,
                             const char *user_id, const tunnel_sink *sink, void *ctx,
                             tunnel_req *adopt, char *err, size_t errlen)
{
    if (!F.ctx || !F.secret) {
        snprintf(err, errlen, "the agent for cluster %s is not connected", p->cluster_id);
        return NULL;
    }
    fwd *f = fwd_new(owner_addr, p->cluster_id, err, errlen);
    if (!f)
        return NULL;
    f->timeout = p->timeout;
    f->deadline = mono_s() + p->timeout;
    char *json = encode_request(p, user_id);
    fwd_set_body(f, json);
    if (f->body && adopt) {
        tunnel_req_set_remote(adopt, &fwd_ops, f);
        f->req = adopt;
    } else if (f->body) {
        f->req = tunnel_req_remote(sink, ctx, &fwd_ops, f);
    }
    if (!f->req) {
        fwd_free(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tunnel_req *r = f->req;
    return fwd_connect(f, adopt != NULL, err, errlen) == 0 ? r : NULL;
}

/* ---- one retry (origin, loop thread; the lookup on a worker) ----------------------------- */

/* A forward whose owner answered that the command did not run (or that
 * could not reach it): the registry is asked again, and when this replica
 * holds a session of the cluster that takes the command now (the agent
 * reconnected here: the lookup skips our own registration), the command
 * runs on it, as exec_start runs one whose agent is held here (again_here);
 * else when the registry names another replica now the command goes there,
 * once, with the time its caller has left.  Between two replicas that is
 * the window where the cluster's session moved (a legacy one stepped aside
 * for a newer one elsewhere, or dropped and came back on another replica,
 * this one included) after the origin's lookup: the caller would get 503
 * though the cluster takes commands.  The request stays the caller's one tunnel_req, so its end,
 * and the audit row written from it, come once. */
typedef struct fwd_again {
    tunnel_req *req; /* NULL once its caller left (or was answered: forward_shutdown) */
    unsigned char *body; /* f's: LWS_PRE + JSON, wiped */
    size_t body_len;
    double deadline;
    char old_addr[280], cluster[160], addr[280];
    int found;
    tunnel_result first; /* what the caller gets when there is no retry */
    char error[640], code[64];
    int first_status;    /* the first owner's HTTP status (0: not reached) */
    /* This replica's session of the cluster would take it but refused it
     * (its queue full): what a local command gets then (exec_start's 503
     * AGENT_NOT_CONNECTED and the tunnel's message), given instead of the
     * first answer when no other replica runs it. */
    int refused_here;
    char here_error[256];
    struct fwd_again *prev, *next; /* F.agains, once submitted */
} fwd_again;

static void again_free(fwd_again *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else if (F.agains == a)
        F.agains = a->next;
    if (a->next)
        a->next->prev = a->prev;
    if (a->body) {
        OPENSSL_cleanse(a->body, LWS_PRE + a->body_len);
        free(a->body);
    }
    free(a);
}

static void again_consumed(void *rctx, size_t n)
{
    (void)rctx;
    (void)n; /* no output before the retry */
}

static void again_abandon(void *rctx)
{
    fwd_again *a = rctx;
    count_outcome("cancelled");
    a->req = NULL; /* freed by tunnel_req_abandon; a by the lookup's end */
}

static const tunnel_remote_ops again_ops = { again_consumed, again_abandon };

/* The first answer, as it would have been given without the retry; or,
 * when this replica's session refused it, that refusal: it is the caller's
 * answer now (the first one named a replica the agent has left). */
static void again_give_up(fwd_again *a)
{
    const char *code = a->first.error_code ? a->first.error_code : "";
    count_outcome(!strcmp(code, EC_AGENT_NOT_CONNECTED)
                      ? (a->first_status ? "not_connected" : "unreachable")
                      : "failed");
    tunnel_result here = { .failed = 1, .http_status = 503, .return_code = -1,
                           .error = a->here_error, .error_code = EC_AGENT_NOT_CONNECTED };
    tunnel_req *q = a->req;
    a->req = NULL;
    tunnel_req_remote_end(q, a->refused_here ? &here : &a->first);
}

static void again_lookup(worker_ctx *w, void *arg)
{
    (void)w;
    fwd_again *a = arg;
    a->found = registry_lookup(a->cluster, a->addr, sizeof(a->addr)) == 1;
}

/* ---- forwarded bodies ---------------------------------------------------------------------- */

static int str_into(const cJSON *o, const char *key, char *out, size_t cap, int required)
{
    const char *v = api_json_str(o, key);
    if (!v)
        return required ? -1 : 0;
    if (strlen(v) >= cap)
        return -1;
    snprintf(out, cap, "%s", v);
    return 0;
}

/* The strings of a JSON array, copied (NULL-terminated list in *out). */
static int strings_of(const cJSON *arr, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return -1;
    int count = cJSON_GetArraySize(arr);
    char **v = calloc((size_t)count + 1, sizeof(*v));
    if (!v)
        return -1;
    for (int i = 0; i < count; i++) {
        const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(arr, i));
        if (!s || !(v[i] = strdup(s))) {
            for (int j = 0; j < i; j++)
                secret_free(v[j]);
            free(v);
            return -1;
        }
    }
    *out = v;
    *n = count;
    return 0;
}

static void free_strings(char **v, int n)
{
    for (int i = 0; v && i < n; i++)
        secret_free(v[i]);
    free(v);
}

/* A forwarded command's body (encode_request's JSON) into e: its org, user,
 * cluster, kind ("kubectl" or "cloud_exec"), program, argv, command, env,
 * timeout (in (0, max_timeout]) and max_output (in [1, max_output]).  The
 * owner's route (forward_in) and a retry run on this replica (again_here)
 * read it alike.  0; -1 when a field is missing, of the wrong type, too long
 * or out of range (why: what is wrong with the argv, when it is that, else
 * untouched), e then partly filled: exec_spec_free frees and wipes it. */
static int body_command(const cJSON *body, double max_timeout, int64_t max_output, exec_spec *e,
                        char *why, size_t whylen)
{
    char **argv = NULL;
    int argc = 0;
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(body, "timeout");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(body, "max_output");
    const char *command = api_json_str(body, "command");
    int rc = -1;
    if (!str_into(body, "org_id", e->org_id, sizeof(e->org_id), 1) &&
        !str_into(body, "user_id", e->user_id, sizeof(e->user_id), 0) &&
        !str_into(body, "cluster_id", e->cluster_id, sizeof(e->cluster_id), 1) &&
        !str_into(body, "kind", e->kind, sizeof(e->kind), 1) &&
        !str_into(body, "program", e->program, sizeof(e->program), 0) &&
        (!strcmp(e->kind, "kubectl") || !strcmp(e->kind, "cloud_exec")) && cJSON_IsNumber(to) &&
        to->valuedouble > 0 && to->valuedouble <= max_timeout && cJSON_IsNumber(mo) &&
        mo->valuedouble >= 1 && mo->valuedouble <= (double)max_output &&
        strings_of(cJSON_GetObjectItemCaseSensitive(body, "argv"), &argv, &argc) == 0 &&
        argv_from_strings((const char *const *)argv, argc, &e->argv, why, whylen) == 0 &&
        strings_of(cJSON_GetObjectItemCaseSensitive(body, "env"), &e->env, &e->nenv) == 0 &&
        (!command || (e->command = strdup(command)))) {
        e->timeout = to->valuedouble;
        e->max_output = (int64_t)mo->valuedouble;
        rc = 0;
    }
    free_strings(argv, argc);
    return rc;
}

/* a's command on a session of this replica, when one takes it (the same
 * choice as tunnel_exec's for a command of its caller: v2, or the newest
 * legacy session not stepped aside, for kubectl only; held while the agent
 * has no free slot), within left seconds.  Its caller's request becomes
 * that session's: the end, and the one audit row exec.c writes from it,
 * come from there.  0: done (a->req is no longer ours); -1: a->req as it
 * was, and when a session here would take it but refused it (its queue
 * full), a->refused_here with its reason.  The body's copies of the
 * credentials are wiped here. */
static int again_here(fwd_again *a, double left)
{
    if (!F.tunnels)
        return -1;
    cJSON *o = cJSON_ParseWithLength((const char *)a->body + LWS_PRE, a->body_len);
    exec_spec *e = o ? calloc(1, sizeof(*e)) : NULL;
    int rc = -1;
    char err[256] = "";
    if (e && body_command(o, F.max_timeout, F.max_output, e, err, sizeof(err)) == 0) {
        tunnel_exec_params p = { .org_id = e->org_id, .cluster_id = a->cluster,
                                 .user_id = e->user_id[0] ? e->user_id : NULL, .kind = e->kind,
                                 .argv = &e->argv, .legacy_command = e->command,
                                 .timeout = left, .max_output = e->max_output,
                                 .program = e->program[0] ? e->program : NULL,
                                 .env = (const char *const *)e->env, .nenv = e->nenv };
        rc = tunnel_req_run_here(F.tunnels, a->req, &p, err, sizeof(err));
        if (rc == -2) {
            log_warn("exec on %s: the replica at %s did not run it; not run here: %s", a->cluster,
                     a->old_addr, err);
            a->refused_here = 1;
            snprintf(a->here_error, sizeof(a->here_error), "%s", err);
        }
    }
    exec_spec_free(e); /* its copies of the credentials and the command line wiped */
    secret_json_free(o);
    if (rc < 0)
        return -1;
    a->req = NULL; /* the session's now: again_abandon is no longer its */
    log_info("exec on %s: the replica at %s did not run it; this replica holds the agent now: "
             "run here",
             a->cluster, a->old_addr);
    count_outcome("retried_here"); /* the first attempt's; the run is this replica's own */
    return 0;
}

static void again_looked_up(void *arg)
{
    fwd_again *a = arg;
    if (!a->req) { /* the caller left meanwhile */
        again_free(a);
        return;
    }
    /* Whole seconds, as req_forward gives a held command (the replica there
     * may hand it to a legacy agent, whose timeout is an integer). */
    double left = a->deadline - mono_s();
    if (left >= 1 && again_here(a, ceil(left)) == 0) {
        again_free(a);
        return;
    }
    if (!a->found || !strcmp(a->addr, a->old_addr) || left < 1) {
        log_info("exec on %s: the replica at %s did not run it and no other holds the agent "
                 "now%s",
                 a->cluster, a->old_addr, a->found && left < 1 ? " in the time left" : "");
        again_give_up(a);
        again_free(a);
        return;
    }
    left = ceil(left);
    char err[256] = "";
    fwd *f = fwd_new(a->addr, a->cluster, err, sizeof(err));
    cJSON *o = f ? cJSON_ParseWithLength((const char *)a->body + LWS_PRE, a->body_len) : NULL;
    char *json = NULL;
    if (o) {
        cJSON_ReplaceItemInObject(o, "timeout", cJSON_CreateNumber(left));
        json = secret_json_print(o);
        secret_json_free(o);
    }
    fwd_set_body(f, json);
    if (!f || !f->body) {
        log_warn("exec on %s: not retried at the replica at %s: %s", a->cluster, a->addr,
                 f ? "out of memory" : err);
        if (f)
            fwd_free(f);
        again_give_up(a);
        again_free(a);
        return;
    }
    f->retried = 1;
    f->timeout = left;
    f->deadline = a->deadline;
    tunnel_req_set_remote(a->req, &fwd_ops, f);
    f->req = a->req;
    log_info("exec on %s: the replica at %s did not run it; the replica at %s holds the agent "
             "now: retried there",
             a->cluster, a->old_addr, a->addr);
    if (fwd_connect(f, 1, err, sizeof(err)) < 0) {
        log_warn("exec on %s: %s", a->cluster, err);
        again_give_up(a); /* f gave a->req back untouched */
    } else {
        count_outcome("retried"); /* the first attempt's; the retry counts its own */
    }
    again_free(a);
}

/* f's request q ended with r, which says it did not run: looked up again
 * (fwd_again).  0: q is the retry's now (f done with it); -1: q is f's to end. */
static int fwd_retry(fwd *f, tunnel_req *q, const tunnel_result *r)
{
    if (mono_s() + 1 > f->deadline)
        return -1;
    fwd_again *a = calloc(1, sizeof(*a));
    if (!a)
        return -1;
    a->req = q;
    a->deadline = f->deadline;
    a->first_status = f->status;
    snprintf(a->old_addr, sizeof(a->old_addr), "%s", f->addr);
    snprintf(a->cluster, sizeof(a->cluster), "%s", f->cluster);
    snprintf(a->error, sizeof(a->error), "%s", r->error ? r->error : "");
    snprintf(a->code, sizeof(a->code), "%s", r->error_code ? r->error_code : "");
    a->first = *r;
    a->first.error = a->error;
    a->first.error_code = a->code;
    tunnel_req_set_remote(q, &again_ops, a);
    if (workers_submit_pool(WORKER_POOL_STORE, again_lookup, again_looked_up, a) < 0) {
        tunnel_req_set_remote(q, &fwd_ops, f);
        free(a);
        return -1;
    }
    a->next = F.agains;
    if (F.agains)
        F.agains->prev = a;
    F.agains = a;
    /* The body moves to the retry (submitted: the worker reads only the
     * cluster; the body is touched on the loop thread alone). */
    a->body = f->body;
    a->body_len = f->body_len;
    f->body = NULL;
    return 0;
}


tunnel_req *forward_exec(const char *owner_addr, const tunnel_exec_params *p, const char *user_id,
                         const tunnel_sink *sink, void *ctx, char *err, size_t errlen)
{
    return fwd_start(owner_addr, p, user_id, sink, ctx, NULL, err, errlen);
}

int forward_held(const char *owner_addr, const tunnel_exec_params *p, tunnel_req *r)
{
    char err[256] = "";
    if (fwd_start(owner_addr, p, p->user_id, NULL, NULL, r, err, sizeof(err)))
        return 0;
    log_warn("a command held for cluster %s not forwarded: %s", p->cluster_id, err);
    return -1;
}

void forward_shutdown(void)
{
    /* Their callers are answered now, while the loop still runs: at the
     * context's end their connections and ours close in no set order, and
     * a caller then got no answer, or AGENT_DISCONNECTED, and its audit row
     * stayed "started" (the last flush of ends had gone). */
    for (fwd *f = F.fwds, *next; f; f = next) {
        next = f->next;
        if (!f->req)
            continue;
        f->retried = 1; /* no retry now */
        if (!f->status && !f->sent_all)
            fwd_fail(f, 503, EC_SERVER_SHUTTING_DOWN,
                     "the server is shutting down: the command had not reached the replica holding "
                     "the agent and was not run; retry it");
        else /* closing the connection cancels it there, maybe too late */
            fwd_fail(f, 502, EC_COMMAND_INTERRUPTED,
                     "the server shut down while the replica holding the agent ran the command (it "
                     "waits for running commands up to AURORA_SHUTDOWN_DRAIN_S, or until a second "
                     "signal): the command may have run; check before retrying it");
        fwd_kill(f);
    }
    for (fwd_again *a = F.agains; a; a = a->next) {
        if (!a->req)
            continue;
        /* The replica it was sent to did not run it, and it was not sent
         * again: it ran nowhere.  The lookup's end frees a. */
        tunnel_result r = { .failed = 1, .http_status = 503, .return_code = -1,
                            .error_code = EC_SERVER_SHUTTING_DOWN,
                            .error = "the server is shutting down: the command was not run (the "
                                     "replica it was sent to did not run it, and it was not sent "
                                     "again); retry it" };
        tunnel_req *q = a->req;
        a->req = NULL;
        count_outcome("failed");
        tunnel_req_remote_end(q, &r);
    }
}

/* ---- server side (owner) ------------------------------------------------------------------ */

/* 1 when the header carries the deployment's secret. */
static int secret_ok(const char *given)
{
    if (!given || !F.secret)
        return 0;
    return crypto_secret_equal(given, strlen(given), F.secret, strlen(F.secret));
}

/* POST /internal/forward/exec: another replica's command for an agent held
 * here.  It was authenticated, validated, admitted and audited there. */
static void forward_in(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!registry_enabled()) {
        http_resp_error(resp, 404, "NOT_FOUND", "not found");
        return;
    }
    if (!secret_ok(http_header_get(req, SECRET_HEADER))) {
        /* the socket peer: replicas reach each other directly, never
         * through a proxy whose X-Forwarded-For would mean anything */
        log_warn("forwarded command from %s refused: wrong or missing forward secret", req->peer);
        http_resp_error(resp, 401, "UNAUTHORIZED", "a forwarded command needs the deployment's "
                                                   "forward secret");
        return;
    }
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    exec_spec *e = calloc(1, sizeof(*e));
    char why[160] = "";
    if (!e || body_command(body, w->cfg->max_timeout, w->cfg->max_output_stream, e, why,
                           sizeof(why)) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "malformed forwarded command%s%s",
                        why[0] ? ": " : "", why);
        exec_spec_free(e);
        secret_json_free(body);
        return;
    }
    /* The body's copies of the credentials and the command line go with it. */
    secret_json_free(body);
    e->stream = 1;    /* streamed back as it comes, whatever the caller asked */
    e->forwarded = 1; /* audited by the replica the caller reached */
    /* Counted here too: every command of the cluster runs through this
     * replica, whichever one the caller reached. */
    if (exec_admit_forwarded(w, e, resp) < 0) {
        exec_spec_free(e);
        return;
    }
    resp->exec = e;
}

void forward_register(void)
{
    http_capture_header(SECRET_HEADER);
    router_add(HTTP_POST, FORWARD_PATH, ROUTE_PUBLIC, forward_in);
    router_set_internal(FORWARD_PATH);
}
