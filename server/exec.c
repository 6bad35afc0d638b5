/* exec.c — glue between an HTTP transaction and a tunnel request; see exec.h. */
#include "exec.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "argv_redact.h"
#include "buf.h"
#include "crypto.h"
#include "forward.h"
#include "instance.h"
#include "log.h"
#include "periodic.h"
#include "server_metrics.h"
#include "sse_output.h"
#include "proto.h"
#include "audit_starts.h"
#include "registry.h"
#include "tunnel.h"
#include "utf8.h"
#include "worker.h"
#include "secret.h"

/* JSON mode: output up to this size may stay at the agent until the command
 * ends and cross the tunnel with exec_end (tunnel_exec_params.hold_output).
 * Most kubectl answers are smaller: one trip through both event loops and
 * both TLS legs instead of two.  The result is the same either way. */
#define EXEC_HOLD_OUTPUT (64 * 1024)

/* SSE mode: output is encoded into the client's stream only while less than
 * SSE_AHEAD of it waits there (the threshold below which a v2 agent gets
 * credit back), SSE_PIECE at a time.  JSON escapes make up to 6 bytes of
 * one, so the stream never holds more than about 64 + 6 × 32 KiB for a client
 * however far behind it is.  The rest waits raw (held_chunk), charged to the
 * output budgets: for a v2 agent at most its window, since credit follows
 * the encoding; for a legacy agent, which sends a command's whole output in
 * one message (up to AURORA_LEGACY_MAX_FRAME), all of it. */
#define SSE_AHEAD (64 * 1024)
#define SSE_PIECE (32 * 1024)

/* SSE mode: output received and not yet encoded, in arrival order.  Its
 * allocation is what is charged. */
typedef struct held_chunk {
    struct held_chunk *next;
    int channel;
    size_t off, len;
    unsigned char data[];
} held_chunk;

/* JSON mode: one channel's captured output.  Grown by hand (not buf_t) so
 * that what is allocated is exactly what is charged to the output budget. */
typedef struct {
    char *data;
    size_t len, cap;
} capture;

struct exec_ctx {
    exec_limits *limits;
    tunnel_hub *tunnels;
    workers *pool;
    /* Audit starts of concurrent commands share a commit, and the ends of
     * finished commands ride in it (audit_starts.h).  An end no start took
     * within AUDIT_END_DELAY_MS is written by a flush job: one timer armed
     * at a time (loop thread), one flush job queued at a time. */
    audit_starts *starts;
    struct lws_context *lws; /* the loop's, for the timer; NULL: flush at once */
    lws_sorted_usec_list_t flush_sul;
    int flush_armed;         /* loop thread only */
    _Atomic int flush_queued;
    _Atomic int draining; /* exec_ctx_drain: new commands are refused */
    int64_t answers; /* loop thread: answers not yet written whole (answer_hold) */
};

typedef struct {
    http_txn *txn; /* NULL once the client is gone */
    exec_ctx *ctx;
    exec_spec *spec;
    tunnel_req *req;
    capture out, err;   /* JSON mode: captured output, capped at max_output */
    exec_budget budget; /* JSON mode: what out and err are charged; SSE: held */
    int64_t bytes;  /* all output bytes seen */
    int truncated;
    int64_t uncredited; /* SSE: bytes handed to the client not yet credited */
    sse_output_stream sse_out; /* SSE: characters cut between chunks, held back */
    held_chunk *held, *held_tail; /* SSE: output waiting to be encoded */
    int ended;        /* SSE: the command ended (audited); the client still drains */
    char *final_event; /* SSE: the result/error event, sent once held is empty */
    int final_failed;  /* SSE: it is an error event */
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

/* Ends the store failed to write (down, locked, breaker open) wait in the
 * queue (audit_starts.h); this retries them when no command's start or end
 * comes to carry them. */
#define AUDIT_END_RETRY_S 5

static long audit_retry_run(worker_ctx *w)
{
    if (w->exec && audit_starts_stats_now(w->exec->starts).ends_waiting)
        audit_starts_flush_ends(w->exec->starts, w->store);
    return AUDIT_END_RETRY_S;
}

exec_ctx *exec_ctx_new(const server_config *cfg, tunnel_hub *tunnels, workers *pool)
{
    exec_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->limits = exec_limits_new(cfg->output_budget, cfg->org_output_budget, cfg->max_per_cluster);
    if (!x->limits) {
        free(x);
        return NULL;
    }
    x->starts = audit_starts_new();
    if (!x->starts) {
        exec_limits_free(x->limits);
        free(x);
        return NULL;
    }
    x->tunnels = tunnels;
    x->pool = pool;
    x->lws = tunnels ? tunnel_hub_lws(tunnels) : NULL;
    /* Once per process: periodic_add ignores a name already registered (the
     * run uses its worker's exec context, not this one). */
    if (periodic_add("audit-ends-retry", WORKER_POOL_STORE, AUDIT_END_RETRY_S,
                     audit_retry_run) < 0)
        log_error("exec: no periodic task slot left: audit completions the store failed "
                  "are retried only when another command starts or ends");
    return x;
}

void exec_ctx_free(exec_ctx *x)
{
    if (!x)
        return;
    audit_starts_free(x->starts); /* logs the ends never written */
    exec_limits_free(x->limits);
    free(x);
}

exec_limits *exec_ctx_limits(exec_ctx *x) { return x->limits; }

void exec_ctx_drain(exec_ctx *x) { x->draining = 1; }

int exec_ctx_draining(const exec_ctx *x) { return x && x->draining; }

int64_t exec_ctx_busy(exec_ctx *x)
{
    exec_usage u;
    exec_limits_usage(x->limits, "", &u, NULL, 0, NULL);
    return u.server_commands + x->answers;
}

void exec_spec_free(exec_spec *e)
{
    if (!e)
        return;
    exec_limits_slot_release(&e->slot);
    exec_spec_wipe_env(e);
    argv_free(&e->argv); /* wiped: a --token=… typed into the command */
    secret_free(e->command);
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
        secret_free(clean); /* redacted below, in the tree */
    }
    /* A credential typed into the command line stays out of the row, which
     * every member of the org can read (argv_redact.h). */
    argv_redact_array(a);
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
    snprintf(a->instance_id, sizeof(a->instance_id), "%s", instance_id());
}

void exec_audit_now(worker_ctx *w, const exec_spec *e, const char *outcome)
{
    sm_command(e->kind, outcome, 0);
    store_audit a;
    fill_audit(&a, e, outcome);
    a.ended_at = a.at;
    /* A store failure keeps the row to be written again (audit_starts.h). */
    if (w->exec)
        audit_starts_write_final(w->exec->starts, w->store, &a);
    else if (store_audit_insert(w->store, &a) != STORE_OK)
        log_error("audit insert failed: %s", store_errmsg(w->store));
    free(a.argv_json);
}

/* Worker: writes the ends no start has taken (audit_starts.h). */
static void audit_flush_run(worker_ctx *w, void *arg)
{
    exec_ctx *x = arg;
    x->flush_queued = 0; /* ends from now on queue the next flush */
    audit_starts_flush_ends(x->starts, w->store);
}

/* Loop thread: queues the flush job unless one is queued.  If the queue is
 * full the ends wait for the next start, flush or retry (or exec_ctx_free,
 * which logs them); a row never completed stays "started" and is closed as
 * interrupted once this instance is gone: never lost. */
static void audit_flush_submit(exec_ctx *x)
{
    if (x->flush_queued)
        return;
    x->flush_queued = 1;
    if (workers_submit(x->pool, WORKER_POOL_STORE, audit_flush_run, NULL, x) < 0) {
        x->flush_queued = 0;
        log_error("audit completions delayed (worker queue full)");
    }
}

static void audit_flush_timer(lws_sorted_usec_list_t *sul)
{
    exec_ctx *x = lws_container_of(sul, exec_ctx, flush_sul);
    x->flush_armed = 0;
    if (audit_starts_stats_now(x->starts).ends_waiting)
        audit_flush_submit(x);
}

void exec_ctx_flush_audit(exec_ctx *x)
{
    if (!x)
        return;
    if (x->flush_armed) {
        lws_sul_cancel(&x->flush_sul);
        x->flush_armed = 0;
    }
    if (audit_starts_stats_now(x->starts).ends_waiting)
        audit_flush_submit(x);
}

/* How long a finished command's end waits for the next command's start to
 * carry it into the same commit before it is written on its own.  Short: the
 * row says "started" until then, and a server stopping flushes at once
 * (exec_ctx_flush_audit). */
#define AUDIT_END_DELAY_MS 20

/* Loop thread: the command's final audit outcome, written on a worker. */
static void audit_submit(const exec_spec *e, const char *outcome, int rc, int64_t bytes,
                         int64_t duration_ms)
{
    /* The replica that forwarded it counts it and writes its record. */
    if (e->forwarded)
        return;
    sm_command(e->kind, outcome, (double)duration_ms / 1000.0);
    sm_output_bytes(e->kind, bytes > 0 ? (size_t)bytes : 0);
    exec_ctx *x = e->ctx;
    if (e->audit_id) {
        store_audit_end end;
        memset(&end, 0, sizeof(end));
        snprintf(end.org_id, sizeof(end.org_id), "%s", e->org_id);
        snprintf(end.outcome, sizeof(end.outcome), "%s", outcome);
        end.id = e->audit_id;
        end.return_code = rc;
        end.bytes_out = bytes;
        end.duration_ms = duration_ms;
        end.ended_at = (int64_t)time(NULL);
        if (audit_starts_add_end(x->starts, &end) != 0) {
            log_error("audit record %lld: completion lost (out of memory): outcome %s",
                      (long long)e->audit_id, outcome);
            return;
        }
    } else {
        /* No "started" row (every command here was admitted with one, so
         * this is a safety net): its one row goes the ends' way, kept if
         * the store fails it. */
        store_audit a;
        fill_audit(&a, e, outcome);
        a.return_code = rc;
        a.bytes_out = bytes;
        a.duration_ms = duration_ms;
        a.ended_at = a.at;
        int queued = a.argv_json && audit_starts_add_final(x->starts, &a) == 0;
        free(a.argv_json);
        if (!queued) {
            log_error("audit record lost (out of memory): org %s cluster %s outcome %s",
                      e->org_id, e->cluster_id, outcome);
            return;
        }
    }
    if (!x->lws) {
        audit_flush_submit(x);
    } else if (!x->flush_armed) {
        x->flush_armed = 1;
        lws_sul_schedule(x->lws, 0, &x->flush_sul, audit_flush_timer,
                         AUDIT_END_DELAY_MS * LWS_US_PER_MS);
    }
}

static const char *outcome_of(const tunnel_result *r)
{
    if (r->failed)
        return r->error_code && !strcmp(r->error_code, EC_TIMEOUT) ? "timeout"
             : r->error_code && !strcmp(r->error_code, EC_AGENT_DISCONNECTED) ? "agent_disconnected"
             /* queued for its agent, which went before sending it: it never ran */
             : r->error_code && !strcmp(r->error_code, EC_AGENT_NOT_CONNECTED) ? "agent_not_connected"
             : r->error_code && !strcmp(r->error_code, EC_CLUSTER_BUSY) ? "cluster_busy"
             /* the server's shutdown closed the session: the agent had it (it may
              * have run, as for a server that died under it), or it was still
              * queued here (it did not run) */
             : r->error_code && !strcmp(r->error_code, EC_COMMAND_INTERRUPTED) ? "interrupted"
             : r->error_code && !strcmp(r->error_code, EC_SERVER_SHUTTING_DOWN) ? "server_shutting_down"
             : "failed";
    if (r->error_code && !strcmp(r->error_code, EC_TIMEOUT))
        return "timeout";
    if (r->error_code && !strcmp(r->error_code, EC_CANCELLED))
        return "cancelled";
    if (r->error_code && !strcmp(r->error_code, EC_OUTPUT_LIMIT))
        return "truncated";
    if (r->error_code && !strcmp(r->error_code, "POLICY_DENIED"))
        return "policy_denied";
    return r->return_code == 0 ? "ok" : "failed";
}

/* ---- result building --------------------------------------------------------- */

static void add_text(cJSON *o, const char *key, const char *p, size_t n)
{
    char *clean = utf8_sanitize(p, n, NULL);
    cJSON_AddStringToObject(o, key, clean ? clean : "");
    free(clean);
}

static const char *capture_head(const capture *c) { return c->data ? c->data : ""; }

/* The agent's error text kept in a result.  A legacy agent's is its
 * command's whole stderr (up to AURORA_LEGACY_MAX_FRAME), a v2 agent's up to
 * a control message (1 MiB), and neither max_output nor a budget counts it:
 * JSON-escaped (up to 6 bytes of one) in an SSE result event it outgrew
 * what a stream may hold (2 MiB, http.c), so the stream was closed and the
 * caller never got its result, and until then the event sat uncounted.
 * 6 times this, plus what a stream holds of output, stays under 2 MiB. */
#define AGENT_ERROR_MAX (256 * 1024)

static cJSON *result_json(exec_run *x, const tunnel_result *r, int with_output)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    size_t elen = r->error ? strlen(r->error) : 0;
    int error_cut = elen > AGENT_ERROR_MAX;
    if (error_cut) /* between characters */
        elen = utf8_complete_prefix(r->error, AGENT_ERROR_MAX);
    int truncated = x->truncated || r->truncated || error_cut;
    const char *code = r->error_code;
    if (!code && truncated)
        code = EC_OUTPUT_LIMIT;
    cJSON_AddBoolToObject(o, "success", !r->failed && r->return_code == 0);
    if (with_output) {
        add_text(o, "output", capture_head(&x->out), x->out.len);
        if (!utf8_valid(capture_head(&x->out), x->out.len)) {
            char *b64 = crypto_base64(capture_head(&x->out), x->out.len);
            if (b64)
                cJSON_AddStringToObject(o, "output_base64", b64);
            free(b64);
        }
    }
    /* error: the agent's/server's message, then the command's stderr. */
    buf_t e = BUF_INIT;
    if (elen)
        buf_append(&e, r->error, elen);
    if (with_output && x->err.len) {
        if (buf_pending(&e))
            buf_append(&e, "\n", 1);
        buf_append(&e, capture_head(&x->err), x->err.len);
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

/* Every way an exec ends comes through here: the captured output, its
 * budget and the cluster slot (with the spec) are returned together. */
static void run_free(exec_run *x)
{
    free(x->out.data);
    free(x->err.data);
    while (x->held) {
        held_chunk *c = x->held;
        x->held = c->next;
        free(c);
    }
    free(x->final_event);
    exec_limits_release(&x->budget);
    exec_spec_free(x->spec);
    free(x);
}

/* A command's answer handed to its client's connection (a JSON body, the
 * end of a stream) is the command's until the connection has written its
 * last byte or the client is gone (the txn's end, http_txn_hold): the
 * command's slot is released when it ends, and a server that drains
 * (exec_ctx_busy) stopped with a stream's end still queued for a client
 * that reads slowly, cutting it.  A JSON answer is also charged to the
 * output budgets (json_hold_answer). */
typedef struct {
    exec_ctx *x;
    exec_budget budget;
} answer_hold;

static void answer_release(void *arg)
{
    answer_hold *a = arg;
    exec_limits_release(&a->budget);
    a->x->answers--;
    free(a);
}

/* x's answer, now in t, counted until t ends; NULL when out of memory (not
 * counted: a server that drains may cut it). */
static answer_hold *hold_answer(exec_run *x, http_txn *t)
{
    answer_hold *a = calloc(1, sizeof(*a));
    if (!a) {
        log_error("exec on %s for org %s: answer not counted (out of memory)",
                  x->spec->cluster_id, x->spec->org_id);
        return NULL;
    }
    a->x = x->ctx;
    a->x->answers++;
    http_txn_hold(t, answer_release, a);
    return a;
}

/* ---- JSON mode ------------------------------------------------------------------ */

/* Makes room in c for n more bytes (len + n never exceeds max_output: the
 * caller cut n), charging the growth to the budgets before allocating it.
 * 0, an EXEC_BUDGET_* code, or -1 when out of memory. */
static int capture_room(exec_run *x, capture *c, size_t n)
{
    size_t need = c->len + n;
    if (need <= c->cap)
        return 0;
    size_t limit = (size_t)x->spec->max_output;
    size_t grow = c->cap / 2 > 4096 ? c->cap / 2 : 4096;
    size_t cap = c->cap + grow;
    if (cap < need)
        cap = need;
    if (cap > limit)
        cap = limit > need ? limit : need;
    int rc = exec_limits_reserve(x->ctx->limits, &x->budget, x->spec->org_id,
                                 (int64_t)(cap - c->cap));
    if (rc != EXEC_BUDGET_OK)
        return rc;
    char *p = realloc(c->data, cap);
    if (!p)
        return -1; /* stays charged until the exec ends: an over-count, never an under-count */
    c->data = p;
    c->cap = cap;
    return 0;
}

/* The output does not fit the budget.  Design: output is charged as it
 * arrives rather than reserving max_output up front, because most commands
 * print a few kilobytes under a default cap of 10 MiB: reserving the cap
 * would refuse dozens of small concurrent commands to keep memory that is
 * never used.  The price is that a command can only be refused once its
 * output outgrows what is left, after it started; it is then cancelled at
 * the agent and the caller gets 429 (its organization's budget) or 503 (the
 * server's) telling it to stream instead.  Failing it at once, rather than
 * pausing it until memory frees up, gives its memory back to the commands
 * still running, so concurrent large outputs cannot wait on each other. */
/* What both modes do when output does not fit: the command is stopped at
 * the agent, logged and audited; u gets the budget's numbers for the
 * caller's error.  by: what exhausted it, for the log ("" or a phrase and a
 * space). */
static void cancel_over_budget(exec_run *x, int org, exec_usage *u, const char *by)
{
    if (x->req) {
        tunnel_req_abandon(x->req);
        x->req = NULL;
    }
    exec_limits_usage(x->ctx->limits, x->spec->org_id, u, NULL, 0, NULL);
    log_warn("exec on %s for org %s cancelled: %s output budget exhausted %safter %lld bytes",
             x->spec->cluster_id, x->spec->org_id, org ? "organization" : "server", by,
             (long long)x->bytes);
    audit_submit(x->spec, org ? "org_output_budget" : "server_output_budget", -1, x->bytes,
                 now_ms() - x->started_ms);
}

static void json_fail_budget(exec_run *x, int which)
{
    int org = which == EXEC_BUDGET_ORG;
    exec_usage u;
    cancel_over_budget(x, org, &u, "");
    if (x->txn) {
        http_txn *t = x->txn;
        http_txn_detach(t);
        http_resp_error(http_txn_response(t), org ? 429 : 503,
                        org ? EC_ORG_OUTPUT_BUDGET : EC_SERVER_OUTPUT_BUDGET,
                        "the command was cancelled after %lld bytes of output: %s memory for "
                        "buffered (JSON-mode) results is in use (%lld of %lld bytes, %s). Stream "
                        "large outputs with 'Accept: text/event-stream' (not buffered, not "
                        "counted), ask for a smaller max_output, or retry when other commands "
                        "have finished",
                        (long long)x->bytes,
                        org ? "the organization's" : "the server's",
                        (long long)(org ? u.org_bytes : u.server_bytes),
                        (long long)(org ? u.org_budget : u.server_budget),
                        org ? "AURORA_EXEC_ORG_OUTPUT_BUDGET" : "AURORA_EXEC_OUTPUT_BUDGET");
        hold_answer(x, t);
        http_txn_respond(t);
    }
    run_free(x);
}

static void json_on_data(void *ctx, int channel, const unsigned char *p, size_t n)
{
    exec_run *x = ctx;
    x->bytes += (int64_t)n;
    size_t have = x->out.len + x->err.len;
    size_t room = (int64_t)have >= x->spec->max_output ? 0 : (size_t)(x->spec->max_output - (int64_t)have);
    size_t take = n < room ? n : room;
    if (take < n)
        x->truncated = 1;
    capture *dst = channel == PROTO_CHAN_STDERR ? &x->err : &x->out;
    if (take) {
        int rc = capture_room(x, dst, take);
        if (rc > 0) {
            json_fail_budget(x, rc); /* frees x */
            return;
        }
        if (rc < 0) {
            x->truncated = 1;
        } else {
            memcpy(dst->data + dst->len, p, take);
            dst->len += take;
        }
    }
    /* Captured or dropped, the bytes have left the window. */
    if (x->req)
        tunnel_req_consumed(x->req, n);
}

/* The answer built from the capture (JSON escapes make up to 6 bytes of one,
 * plus output_base64) stays in memory until the client has taken it, maybe
 * long after the command and its capture are gone: it is charged, at its
 * actual size, until the txn frees it.  It is charged whatever the budgets
 * say: it exists already, and refusing a command whose output fitted its
 * caps because of how its answer is encoded would make max_output a lie.
 * Over the budget, new output is refused until enough answers are taken or
 * their clients dropped (AURORA_HTTP_SEND_TIMEOUT_S), so what a tenant's
 * unread answers hold stays bounded by the budget and the encoding. */
static void json_hold_answer(exec_run *x, http_txn *t)
{
    const buf_t *body = &http_txn_response(t)->body;
    answer_hold *a = hold_answer(x, t);
    if (a)
        exec_limits_charge(x->ctx->limits, &a->budget, x->spec->org_id, (int64_t)body->cap);
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
        /* Charged before the capture is released: both exist until then. */
        json_hold_answer(x, t);
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
    /* A stream whose command ended was audited then; its client left while
     * the output it had not taken yet was still held. */
    if (!x->ended)
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
    if (x->uncredited && http_txn_stream_pending(x->txn) < SSE_AHEAD) {
        tunnel_req_consumed(x->req, (size_t)x->uncredited);
        x->uncredited = 0;
    }
}

/* Encodes p[0..n) into the stream, SSE_PIECE at a time, while less than
 * SSE_AHEAD waits there; returns how many bytes it took. */
static size_t sse_encode(exec_run *x, int channel, const unsigned char *p, size_t n)
{
    buf_t *out = x->txn ? http_txn_stream_buf(x->txn) : NULL;
    if (!out)
        return n; /* no client to encode for: nothing to hold either */
    size_t done = 0;
    while (done < n && buf_pending(out) < SSE_AHEAD) {
        size_t k = n - done < SSE_PIECE ? n - done : SSE_PIECE;
        /* Out of memory: the piece is lost, the stream stays consistent. */
        if (sse_output_chunk(out, &x->sse_out, channel, p + done, k) < 0)
            log_error("exec on %s: %zu bytes of output lost (out of memory)",
                      x->spec->cluster_id, k);
        done += k;
    }
    if (done) {
        x->uncredited += (int64_t)done;
        http_txn_stream_flush(x->txn);
    }
    return done;
}

/* Keeps p[0..n) raw until the client catches up, charged to the budgets.
 * 0, an EXEC_BUDGET_* code, or -1 when out of memory. */
static int sse_hold(exec_run *x, int channel, const unsigned char *p, size_t n)
{
    int64_t cost = (int64_t)(sizeof(held_chunk) + n);
    int rc = exec_limits_reserve(x->ctx->limits, &x->budget, x->spec->org_id, cost);
    if (rc != EXEC_BUDGET_OK)
        return rc;
    held_chunk *c = malloc(sizeof(held_chunk) + n);
    if (!c) {
        exec_limits_unreserve(&x->budget, cost);
        return -1;
    }
    c->next = NULL;
    c->channel = channel;
    c->off = 0;
    c->len = n;
    memcpy(c->data, p, n);
    if (x->held_tail)
        x->held_tail->next = c;
    else
        x->held = c;
    x->held_tail = c;
    return 0;
}

/* The stream's end: what the encoder held back, then the result (or error)
 * event built when the command ended.  Frees x. */
static void sse_finish(exec_run *x)
{
    http_txn *t = x->txn;
    if (t) {
        buf_t *out = http_txn_stream_buf(t);
        if (out)
            sse_output_finish(out, &x->sse_out);
        const char *ev = x->final_event      ? x->final_event
                         : x->final_failed ? "event: error\ndata: {}\n\n"
                                           : "event: result\ndata: {}\n\n";
        http_txn_stream_write(t, ev, strlen(ev));
        hold_answer(x, t); /* what the stream still holds, its end included */
        http_txn_detach(t);
        http_txn_stream_end(t);
    }
    run_free(x);
}

/* Encodes held output as far as the client lets it; once nothing is held
 * and the command has ended, ends the stream.  1 when x was freed. */
static int sse_pump(exec_run *x)
{
    while (x->held) {
        held_chunk *c = x->held;
        c->off += sse_encode(x, c->channel, c->data + c->off, c->len - c->off);
        if (c->off < c->len)
            break; /* the client is behind */
        x->held = c->next;
        if (!x->held)
            x->held_tail = NULL;
        exec_limits_unreserve(&x->budget, (int64_t)(sizeof(held_chunk) + c->len));
        free(c);
    }
    if (x->held || !x->ended)
        return 0;
    sse_finish(x);
    return 1;
}

/* The output waiting for this stream's client does not fit the budgets (see
 * json_fail_budget for why failing beats waiting): the command is cancelled
 * and the stream ends with an error event; what was held is dropped.  Frees x. */
static void sse_fail_budget(exec_run *x, int which)
{
    int org = which == EXEC_BUDGET_ORG;
    exec_usage u;
    cancel_over_budget(x, org, &u, "by a stream's unread output ");
    char msg[640];
    snprintf(msg, sizeof(msg),
             "the command was cancelled after %lld bytes of output: the output waiting for this "
             "stream's reader (all of a legacy agent's answer, which arrives at once) does not "
             "fit %s memory for held output (%lld of %lld bytes in use, %s). Read the stream as "
             "it comes, ask for a smaller max_output, upgrade the agent to aurora-tunnel.v2 "
             "(its output waits at the agent), or retry when other commands have finished",
             (long long)x->bytes, org ? "the organization's" : "the server's",
             (long long)(org ? u.org_bytes : u.server_bytes),
             (long long)(org ? u.org_budget : u.server_budget),
             org ? "AURORA_EXEC_ORG_OUTPUT_BUDGET" : "AURORA_EXEC_OUTPUT_BUDGET");
    tunnel_result r = { .failed = 1, .http_status = org ? 429 : 503, .return_code = -1,
                        .error = msg,
                        .error_code = org ? EC_ORG_OUTPUT_BUDGET : EC_SERVER_OUTPUT_BUDGET };
    http_txn *t = x->txn;
    if (t) {
        cJSON *o = result_json(x, &r, 0);
        if (o)
            cJSON_AddNumberToObject(o, "http_status", r.http_status);
        sse_event(t, "error", o);
        hold_answer(x, t);
        http_txn_detach(t);
        http_txn_stream_end(t);
    }
    run_free(x);
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
    /* Straight into the stream when the client keeps up (the common case:
     * no copy); behind held output, in order. */
    size_t done = x->held ? 0 : sse_encode(x, channel, p, n);
    if (done < n) {
        int rc = sse_hold(x, channel, p + done, n - done);
        if (rc != 0) {
            sse_fail_budget(x, rc > 0 ? rc : EXEC_BUDGET_SERVER); /* frees x */
            return;
        }
    }
    sse_maybe_credit(x);
}

static void sse_on_drain(void *ctx, size_t pending)
{
    (void)pending;
    exec_run *x = ctx;
    if (sse_pump(x))
        return;
    sse_maybe_credit(x);
}

static void sse_on_end(void *ctx, const tunnel_result *r)
{
    exec_run *x = ctx;
    x->req = NULL;
    x->ended = 1;
    x->final_failed = r->failed;
    audit_submit(x->spec, outcome_of(r), r->return_code, x->bytes,
                 r->duration_ms ? r->duration_ms : now_ms() - x->started_ms);
    /* Built now, sent after the output still held (sse_pump). */
    cJSON *o = result_json(x, r, 0);
    if (r->failed && o)
        cJSON_AddNumberToObject(o, "http_status", r->http_status);
    char *data = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    buf_t b = BUF_INIT;
    if (buf_printf(&b, "event: %s\ndata: %s\n\n", r->failed ? "error" : "result",
                   data ? data : "{}") == 0)
        x->final_event = buf_detach(&b, NULL);
    buf_free(&b);
    free(data);
    sse_pump(x);
}

static const tunnel_sink sse_sink = { sse_on_data, sse_on_end };
static const http_stream_ops sse_http_ops = { sse_on_drain, on_client_gone };

/* ---- admission (worker) ------------------------------------------------------------ */

/* The cluster's slot: 0; -1 with 429 CLUSTER_BUSY in resp; -2 with 503
 * SERVER_SHUTTING_DOWN once the server drains (exec_ctx_drain).  Checked
 * after the slot is taken: exec_ctx_drain sets the flag before it counts
 * the slots, so either this sees the flag or the drain sees the slot. */
static int take_slot(worker_ctx *w, exec_spec *e, http_response *resp)
{
    assert(w->exec);
    e->ctx = w->exec;
    int running = 0;
    if (exec_limits_slot_acquire(e->ctx->limits, &e->slot, e->org_id, e->cluster_id, &running) ==
        0) {
        if (!e->ctx->draining)
            return 0;
        exec_limits_slot_release(&e->slot);
        http_resp_error(resp, 503, EC_SERVER_SHUTTING_DOWN,
                        "the server is shutting down: the command was not run; retry it (another "
                        "replica, or this one once restarted, takes it)");
        return -2;
    }
    http_resp_error(resp, 429, EC_CLUSTER_BUSY,
                    "cluster %s already has %d commands running or queued, the most allowed "
                    "(AURORA_EXEC_MAX_PER_CLUSTER); retry when some have finished",
                    e->cluster_id, running);
    return -1;
}

int exec_admit_forwarded(worker_ctx *w, exec_spec *e, http_response *resp)
{
    return take_slot(w, e, resp) < 0 ? -1 : 0; /* counted and audited where the caller is */
}

int exec_admit(worker_ctx *w, exec_spec *e, http_response *resp)
{
    int slot = take_slot(w, e, resp);
    if (slot < 0) {
        if (slot == -1)
            exec_audit_now(w, e, "cluster_busy"); /* a shutdown's refusal gets no row, as
                                                     AUDIT_UNAVAILABLE: its caller is told */
        return -1;
    }
    /* The row exists before the command is sent: a crash from here on
     * leaves it "started", and a later sweep closes it as interrupted.
     * Commands admitted at the same moment share the commit. */
    store_audit a;
    fill_audit(&a, e, "started");
    int have_argv = a.argv_json != NULL;
    char why[256] = "out of memory";
    int rc = have_argv ? audit_starts_write(e->ctx->starts, w->store, &a, why, sizeof(why))
                       : STORE_ERR;
    free(a.argv_json);
    if (rc != STORE_OK) {
        exec_limits_slot_release(&e->slot);
        log_error("audit: cannot write the record of a command on %s for org %s, not running it: "
                  "%s",
                  e->cluster_id, e->org_id, why);
        http_resp_error(resp, 503, EC_AUDIT_UNAVAILABLE,
                        "the command was not run: its audit record could not be written; retry "
                        "later");
        return -1;
    }
    e->audit_id = a.id;
    /* Another replica may hold the agent: asked here, off the loop. */
    if (registry_lookup(e->cluster_id, e->owner_addr, sizeof(e->owner_addr)) <= 0)
        e->owner_addr[0] = '\0';
    return 0;
}

/* ---- start ------------------------------------------------------------------------ */

void exec_never_sent(exec_spec *e)
{
    /* Without this the row admission committed would say "started" for as
     * long as this instance lives: the sweep closes only rows of instances
     * that are gone. */
    audit_submit(e, "client_gone", -1, 0, 0);
    exec_spec_free(e);
}

int exec_start(http_txn *t, exec_spec *e)
{
    assert(e->ctx); /* admitted: exec_admit tied it to the server's context */
    exec_run *x = calloc(1, sizeof(*x));
    if (!x) {
        http_resp_error(http_txn_response(t), 500, "INTERNAL", "out of memory");
        exec_spec_free(e);
        return -1;
    }
    x->txn = t;
    x->ctx = e->ctx;
    x->spec = e;
    x->started_ms = now_ms();
    tunnel_exec_params p = { .org_id = e->org_id, .cluster_id = e->cluster_id,
                             .user_id = e->user_id, .kind = e->kind,
                             .argv = &e->argv, .legacy_command = e->command,
                             .timeout = e->timeout, .max_output = e->max_output,
                             .hold_output = e->stream ? 0 : EXEC_HOLD_OUTPUT,
                             .program = e->program[0] ? e->program : NULL,
                             .env = (const char *const *)e->env, .nenv = e->nenv };
    char err[256];
    /* Only legacy agents are connected here: they run kubectl and nothing
     * else.  Another replica the registry names may hold a v2 agent of the
     * cluster (the C agent replacing the Python one): it decides there. */
    if (strcmp(e->kind, "kubectl") != 0 && !e->owner_addr[0] &&
        tunnel_cluster_supports(x->ctx->tunnels, e->org_id, e->cluster_id, e->kind) ==
            TUNNEL_UNSUPPORTED) {
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
    x->req = tunnel_exec(x->ctx->tunnels, &p, e->stream ? &sse_sink : &json_sink, x, err,
                         sizeof(err));
    if (!x->req && e->owner_addr[0]) /* the agent is held by another replica */
        x->req = forward_exec(e->owner_addr, &p, e->user_id, e->stream ? &sse_sink : &json_sink,
                              x, err, sizeof(err));
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
    log_field lf[] = { LOG_STR("kind", e->kind), LOG_STR("program", e->program),
                       LOG_STR("cluster", e->cluster_id), LOG_STR("org", e->org_id),
                       LOG_STR("user", e->user_id), LOG_NUM("args", e->argv.c),
                       LOG_STR("request_id", http_txn_request(t)->request_id) };
    log_fields(LOG_INFO, "exec started", lf, (int)(sizeof(lf) / sizeof(lf[0])));
    return 0;
}
