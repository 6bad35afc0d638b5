/* api_health.c — liveness (/health) and readiness (/ready) for load
 * balancers, Kubernetes probes and the tests.
 *
 * /health answers on the event loop itself and looks at nothing else: a 200
 * means exactly "the loop is alive", the one thing a liveness probe should
 * restart the process for.  A stalled database, busy workers or a slow
 * provider never fail it (a restart would not cure them, and killing a
 * replica that still serves its agents' sessions would only make it worse).
 *
 * /ready says whether this replica can serve the API, i.e. whether its state
 * store answers: it reads the schema version (a real table, so a SQLite file
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
#include <stdint.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "router.h"

#define READY_REUSE_MS 1000

static struct {
    pthread_mutex_t mu;
    int64_t checked_at_ms; /* 0: never */
    int ok;
    int ever_failed;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

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

/* Probe pool: a store read within the store's deadlines, or the result of
 * one that finished less than READY_REUSE_MS ago. */
static int store_answers(worker_ctx *w)
{
    pthread_mutex_lock(&R.mu);
    int64_t now = mono_ms();
    if (R.checked_at_ms && now - R.checked_at_ms < READY_REUSE_MS) {
        int ok = R.ok;
        pthread_mutex_unlock(&R.mu);
        return ok;
    }
    pthread_mutex_unlock(&R.mu);

    int ok = store_schema_version(w->store) >= 0;

    pthread_mutex_lock(&R.mu);
    /* Transitions only: a probe every few seconds must not flood the log. */
    if (!ok && (R.ok || !R.ever_failed))
        log_warn("readiness: the state store does not answer: %s", store_errmsg(w->store));
    else if (ok && !R.ok && R.ever_failed)
        log_info("readiness: the state store answers again");
    R.ever_failed |= !ok;
    R.ok = ok;
    R.checked_at_ms = mono_ms();
    pthread_mutex_unlock(&R.mu);
    return ok;
}

static void ready(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    if (store_answers(w)) {
        cJSON_AddStringToObject(o, "status", "ready");
        cJSON_AddStringToObject(o, "store", "ok");
        http_resp_json(resp, 200, o);
        return;
    }
    cJSON_AddStringToObject(o, "status", "unavailable");
    cJSON_AddStringToObject(o, "store", "unavailable");
    cJSON_AddStringToObject(o, "error", "state store unavailable");
    cJSON_AddStringToObject(o, "error_code", "STORE_UNAVAILABLE");
    http_resp_json(resp, 503, o);
}

void api_health_register(void)
{
    router_add_loop(HTTP_GET, "/health", health);
    router_add_pool(WORKER_POOL_PROBE, HTTP_GET, "/ready", ROUTE_PUBLIC, ready);
}
