/* api_incidents.c — the incident API (docs/api.md, "Incidents"):
 *
 *   GET  /api/incidents?status=&source=&since=&until=&limit=&cursor=
 *   GET  /api/incidents/{id}                  the incident with its alerts
 *   POST /api/incidents/{id}/resolve
 *   POST /api/incidents/{id}/close
 *   POST /internal/incidents/alerts           one normalized alert (trusted backend,
 *                                             X-Org-ID), for sources without a connector
 *
 * Every read and change is scoped to the caller's organization: another
 * organization's incident answers 404 like a missing one.  Registers the
 * RCA outbox routes too (rca_outbox.c): incidents_register_routes() is the
 * module's one entry in modules.c. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_incidents.h"
#include "api_util.h"
#include "incidents.h"
#include "log.h"
#include "rca_outbox.h"
#include "router.h"
#include "store_incidents.h"
#include "timefmt.h"

#define LIST_DEFAULT 50
#define LIST_MAX (INC_LIST_MAX - 1)
#define ALERTS_DEFAULT 100
/* "<started_at>.<started_seq>": two int64 and a dot. */
#define CURSOR_MAX 41

static const char *const statuses[] = { "open", "acknowledged", "resolved", "closed" };

static cJSON *incident_json(const store_incident *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->id);
    cJSON_AddStringToObject(o, "source", x->source);
    cJSON_AddStringToObject(o, "source_alert_id", x->source_alert_id);
    cJSON_AddStringToObject(o, "fingerprint", x->fingerprint);
    cJSON_AddStringToObject(o, "title", x->title);
    cJSON_AddStringToObject(o, "service", x->service);
    cJSON_AddStringToObject(o, "severity", x->severity);
    cJSON_AddStringToObject(o, "status", x->status);
    api_add_time(o, "started_at", x->started_at);
    api_add_time(o, "acknowledged_at", x->acknowledged_at);
    api_add_time(o, "resolved_at", x->resolved_at);
    api_add_time(o, "closed_at", x->closed_at);
    api_add_time(o, "created_at", x->created_at);
    api_add_time(o, "updated_at", x->updated_at);
    cJSON_AddNumberToObject(o, "alert_count", (double)x->alert_count);
    cJSON_AddStringToObject(o, "summary", x->summary);
    return o;
}

static cJSON *alert_json(const store_incident_alert *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", a->id);
    cJSON_AddNumberToObject(o, "position", (double)a->position);
    cJSON_AddStringToObject(o, "source", a->source);
    cJSON_AddStringToObject(o, "state", a->state);
    cJSON_AddStringToObject(o, "fingerprint", a->fingerprint);
    cJSON_AddStringToObject(o, "source_alert_id", a->source_alert_id);
    if (a->dedup_key[0])
        cJSON_AddStringToObject(o, "dedup_key", a->dedup_key);
    else
        cJSON_AddNullToObject(o, "dedup_key");
    cJSON_AddStringToObject(o, "title", a->title);
    cJSON_AddStringToObject(o, "service", a->service);
    cJSON_AddStringToObject(o, "severity", a->severity);
    cJSON_AddStringToObject(o, "message", a->message);
    if (a->url[0])
        cJSON_AddStringToObject(o, "url", a->url);
    else
        cJSON_AddNullToObject(o, "url");
    api_add_time(o, "occurred_at", a->occurred_at);
    api_add_time(o, "received_at", a->received_at);
    return o;
}

/* ---- query arguments ---------------------------------------------------------------- */

/* ?name= into out (cap bytes); 0 absent, 1 present, -1 with a 400 when the
 * value does not fit (a cut value would be another value). */
static int bad(http_response *resp, const char *msg)
{
    http_resp_error(resp, 400, "BAD_REQUEST", "%s", msg);
    return -1;
}

static int parse_list_query(http_request *req, store_incident_filter *f, char *status,
                            char *source, int *limit, http_response *resp)
{
    char v[64];
    int r;
    memset(f, 0, sizeof(*f));
    if ((r = api_query_arg(req, "status", status, INC_STATUS_MAX + 1, resp)) < 0)
        return -1;
    if (r) {
        int known = 0;
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
            known |= !strcmp(status, statuses[i]);
        if (!known)
            return bad(resp, "status must be open, acknowledged, resolved or closed");
        f->status = status;
    }
    if ((r = api_query_arg(req, "source", source, INC_SOURCE_MAX + 1, resp)) < 0)
        return -1;
    if (r) {
        for (const char *p = source; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
                return bad(resp, "source must be a connector id (a-z 0-9 _ -)");
        if (!source[0])
            return bad(resp, "source must not be empty");
        f->source = source;
    }
    if ((r = api_query_arg(req, "since", v, sizeof(v), resp)) < 0)
        return -1;
    if (r && time_parse_rfc3339(v, &f->since) < 0)
        return bad(resp, "since must be an RFC 3339 time (2026-12-02T15:04:05Z)");
    if ((r = api_query_arg(req, "until", v, sizeof(v), resp)) < 0)
        return -1;
    if (r && time_parse_rfc3339(v, &f->until) < 0)
        return bad(resp, "until must be an RFC 3339 time (2026-12-02T15:04:05Z)");
    f->has_until = r; /* until=1970-01-01T00:00:00Z is 0, and a bound */
    if (f->since < 0 || f->until < 0)
        return bad(resp, "since and until must not be before 1970");
    if (r && f->until < f->since)
        return bad(resp, "until must not be before since");
    *limit = LIST_DEFAULT;
    if ((r = api_query_arg(req, "limit", v, sizeof(v), resp)) < 0)
        return -1;
    int64_t lim;
    if (r && (api_parse_count(v, &lim) < 0 || lim < 1 || lim > LIST_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "limit must be an integer between 1 and %d",
                        LIST_MAX);
        return -1;
    }
    if (r)
        *limit = (int)lim;
    if ((r = api_query_arg(req, "cursor", v, CURSOR_MAX + 1, resp)) < 0)
        return -1;
    if (r) {
        char *dot = strchr(v, '.');
        if (!dot)
            return bad(resp, "cursor is not one this API returned");
        *dot = '\0';
        if (api_parse_count(v, &f->cursor_at) < 0 || api_parse_count(dot + 1, &f->cursor_seq) < 0)
            return bad(resp, "cursor is not one this API returned");
        f->has_cursor = 1;
    }
    return 0;
}

/* ---- routes ----------------------------------------------------------------------------- */

static void list_route(worker_ctx *w, http_request *req, http_response *resp)
{
    store_incident_filter f;
    char status[INC_STATUS_MAX + 1] = "", source[INC_SOURCE_MAX + 1] = "";
    int limit;
    if (parse_list_query(req, &f, status, source, &limit, resp) < 0)
        return;
    store_incident *rows = NULL;
    size_t n = 0;
    /* One more than asked: whether there is a next page. */
    if (store_incident_list(w->store, req->auth.org_id, &f, limit + 1, &rows, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "incidents");
    for (size_t i = 0; i < shown; i++)
        cJSON_AddItemToArray(arr, incident_json(&rows[i]));
    if (n > (size_t)limit && shown > 0) {
        char cursor[CURSOR_MAX + 1];
        snprintf(cursor, sizeof(cursor), "%lld.%lld", (long long)rows[shown - 1].started_at,
                 (long long)rows[shown - 1].started_seq);
        cJSON_AddStringToObject(o, "next_cursor", cursor);
    } else {
        cJSON_AddNullToObject(o, "next_cursor");
    }
    free(rows);
    http_resp_json(resp, 200, o);
}

/* The {id} of the path, or -1 with a 404 (a malformed id names nothing). */
static int path_id(http_request *req, const char **id, http_response *resp)
{
    char err[64];
    *id = http_param(req, "id");
    if (!*id || api_check_text(*id, "id", 1, STORE_ID_MAX, err, sizeof(err)) < 0) {
        http_resp_error(resp, 404, "NOT_FOUND", "incident not found");
        return -1;
    }
    return 0;
}

static void get_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *id;
    if (path_id(req, &id, resp) < 0)
        return;
    char v[16];
    int r = api_query_arg(req, "alerts_limit", v, sizeof(v), resp);
    if (r < 0)
        return;
    int64_t alerts_limit = ALERTS_DEFAULT;
    if (r && (api_parse_count(v, &alerts_limit) < 0 || alerts_limit < 1 ||
              alerts_limit > INC_ALERTS_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "alerts_limit must be an integer between 1 and %d", INC_ALERTS_MAX);
        return;
    }
    store_incident *x = malloc(sizeof(*x));
    if (!x) {
        http_resp_error(resp, 503, "SERVER_BUSY", "out of memory");
        return;
    }
    int rc = store_incident_get(w->store, req->auth.org_id, id, x);
    if (rc != STORE_OK) {
        if (rc == STORE_NOT_FOUND)
            http_resp_error(resp, 404, "NOT_FOUND", "incident not found");
        else
            api_store_error(w, resp);
        free(x);
        return;
    }
    store_incident_alert *alerts = NULL;
    size_t n = 0;
    if (store_incident_alerts(w->store, req->auth.org_id, id, (int)alerts_limit, &alerts, &n) !=
        STORE_OK) {
        free(x);
        api_store_error(w, resp);
        return;
    }
    cJSON *o = incident_json(x);
    cJSON *arr = cJSON_AddArrayToObject(o, "alerts");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, alert_json(&alerts[i]));
    cJSON_AddBoolToObject(o, "alerts_truncated", x->alert_count > (int64_t)n);
    free(alerts);
    free(x);
    http_resp_json(resp, 200, o);
}

static void set_status(worker_ctx *w, http_request *req, http_response *resp, const char *status)
{
    const char *id;
    if (path_id(req, &id, resp) < 0)
        return;
    int rc = store_incident_set_status(w->store, req->auth.org_id, id, status, time(NULL));
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "NOT_FOUND", "incident not found");
        return;
    }
    if (rc == STORE_CONFLICT) {
        http_resp_error(resp, 409, "INCIDENT_CLOSED", "a closed incident cannot be resolved");
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    store_incident *x = malloc(sizeof(*x));
    if (!x || store_incident_get(w->store, req->auth.org_id, id, x) != STORE_OK) {
        free(x);
        api_store_error(w, resp);
        return;
    }
    log_info("incident %s %s by %s", id, status,
             req->auth.user_id[0] ? req->auth.user_id : "the backend");
    http_resp_json(resp, 200, incident_json(x));
    free(x);
}

static void resolve_route(worker_ctx *w, http_request *req, http_response *resp)
{
    set_status(w, req, resp, "resolved");
}

static void close_route(worker_ctx *w, http_request *req, http_response *resp)
{
    set_status(w, req, resp, "closed");
}



void incidents_register_routes(void)
{
    router_add(HTTP_GET, "/api/incidents", ROUTE_AUTH_API, list_route);
    router_add(HTTP_GET, "/api/incidents/{id}", ROUTE_AUTH_API, get_route);
    router_add(HTTP_POST, "/api/incidents/{id}/resolve", ROUTE_AUTH_API, resolve_route);
    router_add(HTTP_POST, "/api/incidents/{id}/close", ROUTE_AUTH_API, close_route);
    router_add(HTTP_POST, "/internal/incidents/alerts", ROUTE_AUTH_INTERNAL,
               incidents_alert_route);
    rca_outbox_register_routes();
}
