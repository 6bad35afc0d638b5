/* api_health.c — liveness (/health), readiness (/ready) and metrics
 * (/metrics) for load balancers, Kubernetes probes, Prometheus and tests.
 *
 * /health answers on the event loop itself and looks at nothing else: a 200
 * means exactly "the loop is alive", the one thing a liveness probe should
 * restart the process for.  A stalled database, busy workers or a slow
 * provider never fail it (a restart would not cure them, and killing a
 * replica that still serves its agents' sessions would only make it worse).
 *
 * /ready says whether this replica can serve the API, i.e. whether its state
 * store and its secrets backend answer (each checked the same way; the
 * secrets backend by reading a path no one writes, where "not found" is a
 * healthy answer).  The store check reads the schema version (a real table, so a SQLite file
 * locked by another process counts too) on the one-thread probe pool, so
 * store workers stuck on a stalled database cannot queue it, and the read is
 * bounded by the store's own deadlines (AURORA_DB_STATEMENT_TIMEOUT_MS, and
 * AURORA_DB_CONNECT_TIMEOUT_MS when a reconnect is needed).  A fresh check
 * rather than the outcome of the last API call: an idle replica has no last
 * call, and "no traffic" must not read as "ready".  A result is reused for
 * READY_REUSE_MS so that unauthenticated callers cannot turn /ready into
 * database load. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

#include "exec.h"
#include "http.h"
#include "log.h"
#include "prom.h"
#include "router.h"
#include "secrets.h"

#define READY_REUSE_MS 1000

/* The result of the last check of one dependency. */
typedef struct {
    int64_t checked_at_ms; /* 0: never */
    int ok;
    int ever_failed;
} check_state;

static struct {
    pthread_mutex_t mu;
    check_state store, secrets;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* A path no one writes: reading it exercises the backend end to end
 * (network, authentication, decryption of the store for "local") and a
 * "not found" is a healthy answer. */
#define SECRETS_PROBE_PATH "aurora/system/readiness-probe"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void health(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    http_resp_json(resp, 200, o);
}

/* Probe pool: runs check() within the dependency's own deadlines, or
 * reuses the result of one that finished less than READY_REUSE_MS ago.
 * Transitions are logged, not every probe. */
static int checked(check_state *c, worker_ctx *w, int (*check)(worker_ctx *, char *, size_t),
                   const char *what)
{
    pthread_mutex_lock(&R.mu);
    int64_t now = mono_ms();
    if (c->checked_at_ms && now - c->checked_at_ms < READY_REUSE_MS) {
        int ok = c->ok;
        pthread_mutex_unlock(&R.mu);
        return ok;
    }
    pthread_mutex_unlock(&R.mu);

    char why[384] = "";
    int ok = check(w, why, sizeof(why));

    pthread_mutex_lock(&R.mu);
    if (!ok && (c->ok || !c->ever_failed))
        log_warn("readiness: the %s does not answer: %s", what, why);
    else if (ok && !c->ok && c->ever_failed)
        log_info("readiness: the %s answers again", what);
    c->ever_failed |= !ok;
    c->ok = ok;
    c->checked_at_ms = mono_ms();
    pthread_mutex_unlock(&R.mu);
    return ok;
}

static int store_check(worker_ctx *w, char *why, size_t cap)
{
    if (store_schema_version(w->store) >= 0)
        return 1;
    snprintf(why, cap, "%s", store_errmsg(w->store));
    return 0;
}

static int secrets_check(worker_ctx *w, char *why, size_t cap)
{
    if (!w->secrets) {
        snprintf(why, cap, "the backend could not be opened at start (see the first log lines)");
        return 0;
    }
    unsigned char *v = NULL;
    size_t n = 0;
    int rc = secrets_get(w->secrets, SECRETS_PROBE_PATH, &v, &n, why, cap);
    secrets_free(v, n);
    return rc == SECRETS_OK || rc == SECRETS_NOT_FOUND;
}

static void ready(worker_ctx *w, http_request *req, http_response *resp)
{
    /* Draining at shutdown: new commands are refused, so a load balancer
     * must stop sending them here (the chart's preStop usually took the pod
     * out of the endpoints already). */
    if (exec_ctx_draining(w->exec)) {
        http_resp_error(resp, 503, "SERVER_SHUTTING_DOWN",
                        "this replica is shutting down; send requests to another one");
        return;
    }
    int store_ok = checked(&R.store, w, store_check, "state store");
    int secrets_ok = checked(&R.secrets, w, secrets_check, "secrets backend");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", store_ok && secrets_ok ? "ready" : "unavailable");
    cJSON_AddStringToObject(o, "store", store_ok ? "ok" : "unavailable");
    cJSON_AddStringToObject(o, "secrets", secrets_ok ? "ok" : "unavailable");
    if (store_ok && secrets_ok) {
        http_resp_json(resp, 200, o);
        return;
    }
    cJSON_AddStringToObject(o, "error", !store_ok ? "state store unavailable"
                                                  : "secrets backend unavailable");
    cJSON_AddStringToObject(o, "error_code", !store_ok ? "STORE_UNAVAILABLE"
                                                       : "SECRETS_UNAVAILABLE");
    http_resp_json(resp, 503, o);
}

/* Prometheus text.  On the loop like /health: a scrape must not wait
 * behind busy workers, and rendering only takes short locks. */
static void metrics(worker_ctx *w, http_request *req, http_response *resp)
{
    buf_reset(&resp->body);
    if (prom_render(&resp->body) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

void api_health_register(void)
{
    router_add_loop(HTTP_GET, "/health", health);
    router_add_loop(HTTP_GET, "/metrics", metrics);
    router_add_pool(WORKER_POOL_PROBE, HTTP_GET, "/ready", ROUTE_PUBLIC, ready);
    router_set_ops("/health");
    router_set_ops("/ready");
    router_set_ops("/metrics");
}
