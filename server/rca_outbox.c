/* rca_outbox.c — the outbox routes of the investigation service, under the
 * internal secret (docs/rca-outbox.md):
 *
 *   POST /internal/rca/jobs/claim      {max, lease_s}        → {jobs: [...]}
 *   POST /internal/rca/jobs/{id}/ack   {claim_token}         → {id, status: done}
 *   POST /internal/rca/jobs/{id}/nack  {claim_token, error}  → {id, status, next_attempt_at}
 *   GET  /internal/rca/jobs?status=&after=&limit=             → {jobs: [...]} (no tokens)
 *   GET  /internal/rca/jobs/{id}                              → the job
 *
 * Delivery is at-least-once: a job whose lease expires is handed out again
 * (another claim token; the old one can no longer ack), so the consumer
 * makes its work idempotent by job id (one job per incident). */
#include "rca_outbox.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "crypto.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "timefmt.h"

#define RCA_MAX_ATTEMPTS_DEFAULT 8
#define RCA_BACKOFF_DEFAULT_S 30
#define RCA_BACKOFF_MAX_DEFAULT_S 3600
#define RCA_LIST_DEFAULT 100
#define RCA_LIST_LIMIT 1000

static int64_t setting(const server_config *cfg, const char *env, int64_t dflt)
{
    int64_t v = cfg ? server_setting_int(cfg, env) : 0;
    return v > 0 ? v : dflt;
}

store_rca_policy rca_policy(const server_config *cfg)
{
    store_rca_policy p = {
        .max_attempts = (int)setting(cfg, "AURORA_RCA_MAX_ATTEMPTS", RCA_MAX_ATTEMPTS_DEFAULT),
        .backoff_s = setting(cfg, "AURORA_RCA_BACKOFF_S", RCA_BACKOFF_DEFAULT_S),
        .backoff_max_s = setting(cfg, "AURORA_RCA_BACKOFF_MAX_S", RCA_BACKOFF_MAX_DEFAULT_S),
    };
    if (p.backoff_max_s < p.backoff_s)
        p.backoff_max_s = p.backoff_s;
    return p;
}

cJSON *rca_job_json(const store_rca_job *j, const char *claim_token)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "incident_id", j->incident_id);
    cJSON_AddStringToObject(o, "org_id", j->org_id);
    cJSON_AddStringToObject(o, "source_type", j->source_type);
    cJSON_AddStringToObject(o, "status", j->status);
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    time_json_add(o, "created_at", j->created_at);
    time_json_add(o, "claimed_at", j->claimed_at);
    time_json_add(o, "lease_until", j->lease_until);
    time_json_add(o, "next_attempt_at", !strcmp(j->status, "pending") ? j->next_attempt_at : 0);
    time_json_add(o, "acked_at", j->acked_at);
    if (j->last_error[0])
        cJSON_AddStringToObject(o, "last_error", j->last_error);
    else
        cJSON_AddNullToObject(o, "last_error");
    if (claim_token)
        cJSON_AddStringToObject(o, "claim_token", claim_token);
    cJSON *payload = j->payload ? cJSON_Parse(j->payload) : NULL;
    cJSON_AddItemToObject(o, "payload", payload ? payload : cJSON_CreateObject());
    return o;
}

int rca_claim_hash(const char *token, char out[65])
{
    if (!token || strlen(token) != RCA_CLAIM_TOKEN_LEN || strncmp(token, "rcl_", 4))
        return -1;
    for (const char *p = token + 4; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return -1;
    crypto_sha256_hex(token, strlen(token), out);
    return 0;
}

static int new_token(char token[RCA_CLAIM_TOKEN_LEN + 1], char hash[65])
{
    unsigned char raw[32];
    if (crypto_random(raw, sizeof(raw)) != 0)
        return -1;
    memcpy(token, "rcl_", 4);
    crypto_hex(raw, sizeof(raw), token + 4);
    memset(raw, 0, sizeof(raw));
    crypto_sha256_hex(token, RCA_CLAIM_TOKEN_LEN, hash);
    return 0;
}

int rca_claim_json(store_t *s, const server_config *cfg, int max, int64_t lease_s, int64_t now,
                   cJSON **jobs, char *err, size_t errlen)
{
    *jobs = NULL;
    if (max < 1 || max > RCA_CLAIM_MAX) {
        snprintf(err, errlen, "max must be between 1 and %d", RCA_CLAIM_MAX);
        return STORE_ERR;
    }
    char (*tokens)[RCA_CLAIM_TOKEN_LEN + 1] = calloc((size_t)max, sizeof(*tokens));
    char (*hashes)[65] = calloc((size_t)max, sizeof(*hashes));
    int rc = STORE_ERR;
    store_rca_job *got = NULL;
    size_t n = 0;
    if (!tokens || !hashes) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < max; i++)
        if (new_token(tokens[i], hashes[i]) < 0) {
            snprintf(err, errlen, "cannot generate a claim token");
            goto out;
        }
    store_rca_policy pol = rca_policy(cfg);
    rc = store_rca_claim(s, now, lease_s, &pol, (const char(*)[65])hashes, (size_t)max, &got, &n);
    if (rc != STORE_OK) {
        snprintf(err, errlen, "%s", store_errmsg(s));
        goto out;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *j = rca_job_json(&got[i], tokens[i]);
        if (!j) {
            cJSON_Delete(arr);
            arr = NULL;
            break;
        }
        cJSON_AddItemToArray(arr, j);
    }
    if (!arr) {
        /* The jobs stay claimed until their lease ends: nothing is lost. */
        snprintf(err, errlen, "out of memory");
        rc = STORE_ERR;
        goto out;
    }
    *jobs = arr;
out:
    store_rca_jobs_free(got, n);
    if (tokens)
        memset(tokens, 0, (size_t)max * sizeof(*tokens));
    free(tokens);
    free(hashes);
    return rc;
}

/* ---- routes ---------------------------------------------------------------------- */

/* An optional integer member within [lo, hi]; dflt when absent.  -1 with a
 * 400 in resp. */
static int body_int(const cJSON *body, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                    int64_t *out, http_response *resp)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, key);
    if (!it || cJSON_IsNull(it)) {
        *out = dflt;
        return 0;
    }
    if (!api_json_int64(it, out) || *out < lo || *out > hi) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be an integer between %lld and %lld",
                        key, (long long)lo, (long long)hi);
        return -1;
    }
    return 0;
}

static void claim_route(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    int64_t max, lease;
    if (body_int(body, "max", 1, RCA_CLAIM_MAX, RCA_CLAIM_DEFAULT, &max, resp) < 0 ||
        body_int(body, "lease_s", 10, RCA_LEASE_MAX_S, RCA_LEASE_DEFAULT_S, &lease, resp) < 0) {
        cJSON_Delete(body);
        return;
    }
    cJSON_Delete(body);
    cJSON *jobs = NULL;
    char err[256];
    if (rca_claim_json(w->store, w->cfg, (int)max, lease, (int64_t)time(NULL), &jobs, err,
                       sizeof(err)) != STORE_OK) {
        log_error("rca claim: %s", err);
        http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
        return;
    }
    if (cJSON_GetArraySize(jobs) > 0)
        log_info("rca: %d job(s) claimed by %s", cJSON_GetArraySize(jobs), http_client(req));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "jobs", jobs);
    http_resp_json(resp, 200, o);
}

/* The job id of the path and the claim token of the body: 0, or -1 with a
 * 400/404 in resp. */
static int job_and_token(http_request *req, const cJSON *body, const char **id, char hash[65],
                         http_response *resp)
{
    *id = http_param(req, "id");
    char err[128];
    if (!*id || api_check_text(*id, "job id", 1, STORE_ID_MAX, err, sizeof(err)) < 0) {
        http_resp_error(resp, 404, "NOT_FOUND", "no such job");
        return -1;
    }
    const char *token = api_json_str(body, "claim_token");
    if (!token) {
        http_resp_error(resp, 400, "BAD_REQUEST", "claim_token is required");
        return -1;
    }
    if (rca_claim_hash(token, hash) < 0) {
        http_resp_error(resp, 409, "CLAIM_MISMATCH",
                        "claim token does not match this job's current claim");
        return -1;
    }
    return 0;
}

static void finish_error(worker_ctx *w, int rc, http_response *resp)
{
    if (rc == STORE_NOT_FOUND)
        http_resp_error(resp, 404, "NOT_FOUND", "no such job");
    else if (rc == STORE_CONFLICT)
        http_resp_error(resp, 409, "CLAIM_MISMATCH", "%s", store_errmsg(w->store));
    else
        api_store_error(w, resp);
}

static void ack_route(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *id;
    char hash[65];
    if (job_and_token(req, body, &id, hash, resp) < 0)
        goto out;
    int rc = store_rca_ack(w->store, id, hash, (int64_t)time(NULL));
    if (rc != STORE_OK) {
        finish_error(w, rc, resp);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", "done");
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(body);
}

static void nack_route(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *id;
    char hash[65];
    if (job_and_token(req, body, &id, hash, resp) < 0)
        goto out;
    const cJSON *jerr = cJSON_GetObjectItemCaseSensitive(body, "error");
    const char *error = api_json_str(body, "error");
    char why[128];
    if ((jerr && !cJSON_IsNull(jerr) && !error) ||
        (error && api_check_text(error, "error", 0, RCA_ERROR_MAX, why, sizeof(why)) < 0)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "error must be a string of at most %d bytes without control characters",
                        RCA_ERROR_MAX);
        goto out;
    }
    store_rca_policy pol = rca_policy(w->cfg);
    char status[RCA_STATUS_LEN];
    int64_t next = 0;
    int rc = store_rca_nack(w->store, id, hash, error, (int64_t)time(NULL), &pol, status, &next);
    if (rc != STORE_OK) {
        finish_error(w, rc, resp);
        goto out;
    }
    if (!strcmp(status, "dead"))
        log_warn("rca: job %s is dead after %d attempts", id, pol.max_attempts);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", status);
    time_json_add(o, "next_attempt_at", next);
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(body);
}

/* ?name= as an integer in [lo, hi]; dflt when absent.  -1 with a 400. */
static int query_int(http_request *req, const char *name, int64_t lo, int64_t hi, int64_t dflt,
                     int64_t *out, http_response *resp)
{
    char v[24];
    *out = dflt;
    if (!http_query_get(req, name, v, sizeof(v)))
        return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!v[0] || *end || strlen(v) >= sizeof(v) - 1 || x < lo || x > hi) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be an integer between %lld and %lld",
                        name, (long long)lo, (long long)hi);
        return -1;
    }
    *out = x;
    return 0;
}

static void list_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char status[16] = "";
    int has_status = http_query_get(req, "status", status, sizeof(status));
    if (has_status && strcmp(status, "pending") && strcmp(status, "claimed") &&
        strcmp(status, "done") && strcmp(status, "dead")) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "status must be pending, claimed, done or dead");
        return;
    }
    int64_t after, limit;
    if (query_int(req, "after", 0, INT64_MAX - 1, 0, &after, resp) < 0 ||
        query_int(req, "limit", 1, RCA_LIST_LIMIT, RCA_LIST_DEFAULT, &limit, resp) < 0)
        return;
    store_rca_job *jobs = NULL;
    size_t n = 0;
    if (store_rca_list(w->store, has_status ? status : NULL, after, (int)limit, &jobs, &n) !=
        STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    int64_t counts[4];
    if (store_rca_counts(w->store, counts) != STORE_OK) {
        store_rca_jobs_free(jobs, n);
        api_store_error(w, resp);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "jobs");
    int64_t last = after;
    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(arr, rca_job_json(&jobs[i], NULL));
        last = jobs[i].list_seq;
    }
    /* The cursor of the next page (or of the next poll: jobs created later). */
    char cursor[24];
    snprintf(cursor, sizeof(cursor), "%lld", (long long)last);
    cJSON_AddStringToObject(o, "next_after", cursor);
    cJSON *c = cJSON_AddObjectToObject(o, "counts");
    cJSON_AddNumberToObject(c, "pending", (double)counts[0]);
    cJSON_AddNumberToObject(c, "claimed", (double)counts[1]);
    cJSON_AddNumberToObject(c, "done", (double)counts[2]);
    cJSON_AddNumberToObject(c, "dead", (double)counts[3]);
    store_rca_jobs_free(jobs, n);
    http_resp_json(resp, 200, o);
}

static void get_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *id = http_param(req, "id");
    char err[128];
    if (!id || api_check_text(id, "job id", 1, STORE_ID_MAX, err, sizeof(err)) < 0) {
        http_resp_error(resp, 404, "NOT_FOUND", "no such job");
        return;
    }
    store_rca_job j;
    int rc = store_rca_get(w->store, id, &j);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "NOT_FOUND", "no such job");
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    cJSON *o = rca_job_json(&j, NULL);
    store_rca_job_free(&j);
    http_resp_json(resp, 200, o);
}

/* Jobs written without a list number by an older build (it numbered them
 * when listing; rows from before the upgrade, or of an older replica during
 * a rolling one) are not listed until numbered: numbered here, at start and
 * then every minute, so that the list routes only read.  A run that finds
 * none writes nothing. */
#define RCA_NUMBER_EVERY_S 60

static long number_task(worker_ctx *w)
{
    size_t n = 0;
    if (store_rca_number_unlisted(w->store, &n) != STORE_OK)
        log_warn("rca: numbering jobs of an older build failed: %s", store_errmsg(w->store));
    else if (n)
        log_info("rca: %zu job(s) written by an older build numbered for the list", n);
    /* a full batch: more may be waiting */
    return n >= RCA_NUMBER_BATCH ? 1 : RCA_NUMBER_EVERY_S;
}

void rca_outbox_register_routes(void)
{
    if (periodic_add("rca-number", WORKER_POOL_STORE, 0, number_task) < 0)
        log_error("rca: cannot schedule the numbering of older builds' jobs");
    router_add(HTTP_POST, "/internal/rca/jobs/claim", ROUTE_AUTH_INTERNAL, claim_route);
    router_add(HTTP_POST, "/internal/rca/jobs/{id}/ack", ROUTE_AUTH_INTERNAL, ack_route);
    router_add(HTTP_POST, "/internal/rca/jobs/{id}/nack", ROUTE_AUTH_INTERNAL, nack_route);
    router_add(HTTP_GET, "/internal/rca/jobs", ROUTE_AUTH_INTERNAL, list_route);
    router_add(HTTP_GET, "/internal/rca/jobs/{id}", ROUTE_AUTH_INTERNAL, get_route);
}
