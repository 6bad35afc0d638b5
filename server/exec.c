/* exec.c — glue between an HTTP transaction and a tunnel request; see exec.h. */
#include "exec.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "crypto.h"
#include "log.h"
#include "proto.h"
#include "tunnel.h"
#include "utf8.h"
#include "worker.h"
#include "secret.h"

typedef struct {
    http_txn *txn; /* NULL once the client is gone */
    exec_spec *spec;
    tunnel_req *req;
    buf_t out, err; /* JSON mode: captured output, capped */
    int64_t bytes;  /* all output bytes seen */
    int truncated;
    int64_t uncredited; /* SSE: bytes handed to the client not yet credited */
    int64_t started_ms;
} exec_run;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void exec_spec_wipe_env(exec_spec *e)
{
    for (int i = 0; e->env && i < e->nenv; i++) {
        secret_free(e->env[i]);
    }
    free(e->env);
    e->env = NULL;
    e->nenv = 0;
}

void exec_spec_free(exec_spec *e)
{
    if (!e)
        return;
    exec_spec_wipe_env(e);
    argv_free(&e->argv);
    free(e->command);
    free(e);
}

/* ---- audit ------------------------------------------------------------------ */

static char *argv_json(const exec_spec *e)
{
    cJSON *a = cJSON_CreateArray();
    if (!a)
        return NULL;
    /* The program run ("kubectl", "gcloud", …); never the environment. */
    cJSON_AddItemToArray(a, cJSON_CreateString(e->program[0] ? e->program : e->kind));
    for (int i = 0; i < e->argv.c; i++) {
        char *clean = utf8_sanitize(e->argv.v[i], strlen(e->argv.v[i]), NULL);
        cJSON_AddItemToArray(a, cJSON_CreateString(clean ? clean : ""));
        free(clean);
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static void fill_audit(store_audit *a, const exec_spec *e, const char *outcome)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->org_id, sizeof(a->org_id), "%s", e->org_id);
    snprintf(a->user_id, sizeof(a->user_id), "%s", e->user_id);
    snprintf(a->cluster_id, sizeof(a->cluster_id), "%s", e->cluster_id);
    snprintf(a->kind, sizeof(a->kind), "%s", e->kind);
    snprintf(a->outcome, sizeof(a->outcome), "%s", outcome);
    a->return_code = -1;
    a->at = (int64_t)time(NULL);
    a->argv_json = argv_json(e);
}

void exec_audit_now(store_t *st, const exec_spec *e, const char *outcome)
{
    store_audit a;
    fill_audit(&a, e, outcome);
    if (store_audit_insert(st, &a) != STORE_OK)
        log_error("audit insert failed: %s", store_errmsg(st));
    free(a.argv_json);
}

static void audit_run(worker_ctx *w, void *arg)
{
    store_audit *a = arg;
    if (store_audit_insert(w->store, a) != STORE_OK)
        log_error("audit insert failed: %s", store_errmsg(w->store));
}

static void audit_done(void *arg)
{
    store_audit *a = arg;
    free(a->argv_json);
    free(a);
}

static void audit_submit(const exec_spec *e, const char *outcome, int rc, int64_t bytes,
                         int64_t duration_ms)
{
    store_audit *a = malloc(sizeof(*a));
    if (!a)
        return;
    fill_audit(a, e, outcome);
    a->return_code = rc;
    a->bytes_out = bytes;
    a->duration_ms = duration_ms;
    if (workers_submit(audit_run, audit_done, a) < 0) {
        log_error("audit record dropped (worker queue full): org %s cluster %s", e->org_id,
                  e->cluster_id);
        audit_done(a);
    }
}

static const char *outcome_of(const tunnel_result *r)
{
    if (r->failed)
        return r->error_code && !strcmp(r->error_code, EC_TIMEOUT) ? "timeout"
             : r->error_code && !strcmp(r->error_code, EC_AGENT_DISCONNECTED) ? "agent_disconnected"
             : "failed";
    if (r->error_code && !strcmp(r->error_code, EC_TIMEOUT))
        return "timeout";
    if (r->error_code && !strcmp(r->error_code, EC_CANCELLED))
        return "cancelled";
    if (r->error_code && !strcmp(r->error_code, EC_OUTPUT_LIMIT))
        return "truncated";
    return r->return_code == 0 ? "ok" : "failed";
}

/* ---- result building --------------------------------------------------------- */

static void add_text(cJSON *o, const char *key, const char *p, size_t n)
{
    char *clean = utf8_sanitize(p, n, NULL);
    cJSON_AddStringToObject(o, key, clean ? clean : "");
    free(clean);
}

static cJSON *result_json(exec_run *x, const tunnel_result *r, int with_output)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int truncated = x->truncated || r->truncated;
    const char *code = r->error_code;
    if (!code && truncated)
        code = EC_OUTPUT_LIMIT;
    cJSON_AddBoolToObject(o, "success", !r->failed && r->return_code == 0);
    if (with_output) {
        add_text(o, "output", buf_head(&x->out), buf_pending(&x->out));
        if (!utf8_valid(buf_head(&x->out), buf_pending(&x->out))) {
            char *b64 = crypto_base64(buf_head(&x->out), buf_pending(&x->out));
            if (b64)
                cJSON_AddStringToObject(o, "output_base64", b64);
            free(b64);
        }
    }
    /* error: the agent's/server's message, then the command's stderr. */
    buf_t e = BUF_INIT;
    if (r->error && *r->error)
        buf_append_str(&e, r->error);
    if (with_output && buf_pending(&x->err)) {
        if (buf_pending(&e))
            buf_append(&e, "\n", 1);
        buf_append(&e, buf_head(&x->err), buf_pending(&x->err));
    }
    add_text(o, "error", buf_head(&e), buf_pending(&e));
    buf_free(&e);
    cJSON_AddNumberToObject(o, "return_code", r->return_code);
    cJSON_AddBoolToObject(o, "truncated", truncated);
    cJSON_AddNumberToObject(o, "duration_ms",
                            (double)(r->duration_ms ? r->duration_ms : now_ms() - x->started_ms));
    cJSON_AddNumberToObject(o, "bytes", (double)x->bytes);
    if (code)
        cJSON_AddStringToObject(o, "error_code", code);
    else
        cJSON_AddNullToObject(o, "error_code");
    return o;
}

static void run_free(exec_run *x)
{
    buf_free(&x->out);
    buf_free(&x->err);
    exec_spec_free(x->spec);
    free(x);
}

/* ---- JSON mode ------------------------------------------------------------------ */

static void json_on_data(void *ctx, int channel, const unsigned char *p, size_t n)
{
    exec_run *x = ctx;
    x->bytes += (int64_t)n;
    size_t have = buf_pending(&x->out) + buf_pending(&x->err);
    size_t room = (int64_t)have >= x->spec->max_output ? 0 : (size_t)(x->spec->max_output - (int64_t)have);
    size_t take = n < room ? n : room;
    if (take < n)
        x->truncated = 1;
    buf_t *dst = channel == PROTO_CHAN_STDERR ? &x->err : &x->out;
    if (take && buf_append(dst, p, take) < 0)
        x->truncated = 1;
    /* Captured or dropped, the bytes have left the window. */
    if (x->req)
        tunnel_req_consumed(x->req, n);
}

static void json_on_end(void *ctx, const tunnel_result *r)
{
    exec_run *x = ctx;
    x->req = NULL;
    audit_submit(x->spec, outcome_of(r), r->return_code, x->bytes,
                 r->duration_ms ? r->duration_ms : now_ms() - x->started_ms);
    if (x->txn) {
        http_txn *t = x->txn;
        http_txn_detach(t);
        http_response *resp = http_txn_response(t);
        cJSON *o = result_json(x, r, 1);
        http_resp_json(resp, r->failed ? r->http_status : 200, o);
        http_txn_respond(t);
    }
    run_free(x);
}

static void on_client_gone(void *ctx)
{
    exec_run *x = ctx;
    x->txn = NULL;
    if (x->req) {
        tunnel_req_abandon(x->req);
        x->req = NULL;
    }
    audit_submit(x->spec, "client_gone", -1, x->bytes, now_ms() - x->started_ms);
    run_free(x);
}

static const tunnel_sink json_sink = { json_on_data, json_on_end };
static const http_stream_ops json_http_ops = { NULL, on_client_gone };

/* ---- SSE mode -------------------------------------------------------------------- */

static void sse_event(http_txn *t, const char *event, cJSON *data)
{
    char *s = data ? cJSON_PrintUnformatted(data) : NULL;
    cJSON_Delete(data);
    buf_t b = BUF_INIT;
    buf_printf(&b, "event: %s\ndata: %s\n\n", event, s ? s : "{}");
    free(s);
    http_txn_stream_write(t, buf_head(&b), buf_pending(&b));
    buf_free(&b);
}

static void sse_maybe_credit(exec_run *x)
{
    if (!x->req || !x->txn)
        return;
    /* Credit only what the client has actually taken: while the socket
     * backs up, the agent runs out of window and the command blocks. */
    if (x->uncredited && http_txn_stream_pending(x->txn) < 64 * 1024) {
        tunnel_req_consumed(x->req, (size_t)x->uncredited);
        x->uncredited = 0;
    }
}

static void sse_on_data(void *ctx, int channel, const unsigned char *p, size_t n)
{
    exec_run *x = ctx;
    int64_t before = x->bytes;
    x->bytes += (int64_t)n;
    if (before >= x->spec->max_output) {
        x->truncated = 1;
        if (x->req)
            tunnel_req_consumed(x->req, n);
        return;
    }
    if (x->bytes > x->spec->max_output) {
        x->truncated = 1;
        if (x->req)
            tunnel_req_consumed(x->req, (size_t)(x->bytes - x->spec->max_output));
        n = (size_t)(x->spec->max_output - before);
    }
    cJSON *d = cJSON_CreateObject();
    if (d) {
        cJSON_AddStringToObject(d, "stream", channel == PROTO_CHAN_STDERR ? "stderr" : "stdout");
        if (utf8_valid((const char *)p, n)) {
            char *txt = malloc(n + 1);
            if (txt) {
                memcpy(txt, p, n);
                txt[n] = '\0';
                cJSON_AddStringToObject(d, "text", txt);
                free(txt);
            }
        } else {
            char *b64 = crypto_base64(p, n);
            if (b64)
                cJSON_AddStringToObject(d, "base64", b64);
            free(b64);
        }
    }
    x->uncredited += (int64_t)n;
    sse_event(x->txn, "output", d);
    sse_maybe_credit(x);
}

static void sse_on_drain(void *ctx, size_t pending)
{
    (void)pending;
    sse_maybe_credit(ctx);
}

static void sse_on_end(void *ctx, const tunnel_result *r)
{
    exec_run *x = ctx;
    x->req = NULL;
    audit_submit(x->spec, outcome_of(r), r->return_code, x->bytes,
                 r->duration_ms ? r->duration_ms : now_ms() - x->started_ms);
    if (x->txn) {
        http_txn *t = x->txn;
        cJSON *o = result_json(x, r, 0);
        if (r->failed && o)
            cJSON_AddNumberToObject(o, "http_status", r->http_status);
        sse_event(t, r->failed ? "error" : "result", o);
        http_txn_detach(t);
        http_txn_stream_end(t);
    }
    run_free(x);
}

static const tunnel_sink sse_sink = { sse_on_data, sse_on_end };
static const http_stream_ops sse_http_ops = { sse_on_drain, on_client_gone };

/* ---- start ------------------------------------------------------------------------ */

int exec_start(http_txn *t, exec_spec *e)
{
    exec_run *x = calloc(1, sizeof(*x));
    if (!x) {
        http_resp_error(http_txn_response(t), 500, "INTERNAL", "out of memory");
        exec_spec_free(e);
        return -1;
    }
    x->txn = t;
    x->spec = e;
    x->started_ms = now_ms();
    tunnel_exec_params p = { .org_id = e->org_id, .cluster_id = e->cluster_id, .kind = e->kind,
                             .argv = &e->argv, .legacy_command = e->command,
                             .timeout = e->timeout, .max_output = e->max_output,
                             .program = e->program[0] ? e->program : NULL,
                             .env = (const char *const *)e->env, .nenv = e->nenv };
    char err[256];
    if (strcmp(e->kind, "kubectl") != 0 &&
        tunnel_cluster_supports(e->org_id, e->cluster_id, e->kind) == TUNNEL_UNSUPPORTED) {
        /* Only legacy agents are connected: they run kubectl and nothing else. */
        audit_submit(e, "agent_unsupported", -1, 0, 0);
        http_resp_error(http_txn_response(t), 409, "AGENT_UNSUPPORTED",
                        "the agent of cluster %s is too old to run %s commands; upgrade it to the "
                        "aurora-tunnel.v2 agent",
                        e->cluster_id, e->kind);
        x->spec = NULL;
        free(x);
        exec_spec_free(e);
        return -1;
    }
    /* Attach before sending so every callback finds the txn wired up. */
    if (e->stream)
        http_txn_attach(t, &sse_http_ops, x);
    else
        http_txn_attach(t, &json_http_ops, x);
    x->req = tunnel_exec(&p, e->stream ? &sse_sink : &json_sink, x, err, sizeof(err));
    /* The frame (or the tunnel's own copy of it) now holds the credentials. */
    exec_spec_wipe_env(e);
    if (!x->req) {
        http_txn_detach(t);
        audit_submit(e, "agent_not_connected", -1, 0, 0);
        http_resp_error(http_txn_response(t), 503, EC_AGENT_NOT_CONNECTED, "%s", err);
        run_free(x);
        return -1;
    }
    if (e->stream)
        http_txn_stream_begin(t, 200, "text/event-stream", &sse_http_ops, x);
    log_info("exec %s%s%s on %s for org %s (%d args)", e->kind, e->program[0] ? " " : "",
             e->program, e->cluster_id, e->org_id, e->argv.c);
    return 0;
}
