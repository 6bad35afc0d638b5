/* api_incident_alerts.c — POST /internal/incidents/alerts: one normalized
 * alert from the trusted backend (X-Internal-Secret + X-Org-ID), for
 * sources that have no connector here and for the investigation service.
 * It goes through incident_ingest() like a connector's alert: the same
 * checks, idempotency (delivery_id + index, or dedup_key) and correlation.
 *
 * Strict: unknown members, wrong types and out-of-range values are a 400
 * naming the member; nothing is stored then. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api_incidents.h"
#include "api_util.h"
#include "incidents.h"
#include "log.h"
#include "router.h"
#include "timefmt.h"

/* Alerts of one grouped payload a caller may number. */
#define ALERT_INDEX_MAX 100000

static const char *const known_members[] = {
    "source", "delivery_id", "index",   "dedup_key", "source_alert_id", "fingerprint", "state",
    "title",  "service",     "severity", "message",  "url",             "occurred_at", "raw",
};

static int is_known(const char *name)
{
    for (size_t i = 0; i < sizeof(known_members) / sizeof(known_members[0]); i++)
        if (!strcmp(name, known_members[i]))
            return 1;
    return 0;
}

/* An optional string member: NULL when absent or null; -1 with a 400 when
 * it is another type. */
static int opt_str(const cJSON *body, const char *key, const char **out, http_response *resp)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, key);
    *out = NULL;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsString(it)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be a string", key);
        return -1;
    }
    *out = it->valuestring;
    return 0;
}

static int parse_state(const char *s, alert_state *out)
{
    static const struct {
        const char *name;
        alert_state st;
    } states[] = { { "firing", ALERT_FIRING },
                   { "resolved", ALERT_RESOLVED },
                   { "acknowledged", ALERT_ACKNOWLEDGED },
                   { "info", ALERT_INFO } };
    for (size_t i = 0; s && i < sizeof(states) / sizeof(states[0]); i++)
        if (!strcmp(s, states[i].name)) {
            *out = states[i].st;
            return 0;
        }
    return -1;
}

static const char *result_name(ingest_result r)
{
    switch (r) {
    case INGEST_CREATED:
        return "created";
    case INGEST_ATTACHED:
        return "attached";
    case INGEST_UNMATCHED:
        return "unmatched";
    case INGEST_DUPLICATE:
        return "duplicate";
    }
    return "unknown";
}

/* The body as an incident_alert (pointers into body); -1 with a 400. */
static int parse_alert(const cJSON *body, incident_alert *a, http_response *resp)
{
    memset(a, 0, sizeof(*a));
    const cJSON *m;
    cJSON_ArrayForEach(m, body)
    {
        if (!m->string || !is_known(m->string)) {
            http_resp_error(resp, 400, "BAD_REQUEST", "unknown member %.64s",
                            m->string ? m->string : "");
            return -1;
        }
    }
    const char *state = NULL, *occurred = NULL;
    if (opt_str(body, "source", &a->source, resp) || opt_str(body, "delivery_id", &a->delivery_id, resp) ||
        opt_str(body, "dedup_key", &a->dedup_key, resp) ||
        opt_str(body, "source_alert_id", &a->source_alert_id, resp) ||
        opt_str(body, "fingerprint", &a->fingerprint, resp) || opt_str(body, "state", &state, resp) ||
        opt_str(body, "title", &a->title, resp) || opt_str(body, "service", &a->service, resp) ||
        opt_str(body, "severity", &a->severity, resp) ||
        opt_str(body, "message", &a->message, resp) || opt_str(body, "url", &a->url, resp) ||
        opt_str(body, "occurred_at", &occurred, resp))
        return -1;
    if (!state || parse_state(state, &a->state) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "state must be firing, resolved, acknowledged or info");
        return -1;
    }
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(body, "index");
    int64_t index = 0;
    if (idx && !cJSON_IsNull(idx) &&
        (!api_json_int64(idx, &index) || index < 0 || index > ALERT_INDEX_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "index must be an integer between 0 and %d",
                        ALERT_INDEX_MAX);
        return -1;
    }
    a->index = (int)index;
    if (occurred && (time_parse_rfc3339(occurred, &a->occurred_at) < 0 || a->occurred_at <= 0)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "occurred_at must be an RFC 3339 time (2026-12-02T15:04:05Z)");
        return -1;
    }
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(body, "raw");
    if (raw && !cJSON_IsNull(raw) && !cJSON_IsObject(raw)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "raw must be an object");
        return -1;
    }
    a->raw = raw && cJSON_IsObject(raw) ? raw : NULL;
    return 0;
}


void incidents_alert_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!req->auth.org_id[0]) {
        http_resp_error(resp, 400, "ORG_REQUIRED", "Organization context required: send X-Org-ID");
        return;
    }
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    incident_alert a;
    char err[256];
    const char *user = req->auth.user_id[0] ? req->auth.user_id : NULL;
    if (parse_alert(body, &a, resp) < 0)
        goto out;
    if (incident_alert_check(req->auth.org_id, user, &a, err, sizeof(err)) < 0) {
        /* "incident: <field> …": the field, without the module's prefix. */
        const char *msg = strncmp(err, "incident: ", 10) ? err : err + 10;
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", msg);
        goto out;
    }
    incident_outcome o;
    if (incident_ingest(w, req->auth.org_id, user, &a, (int64_t)time(NULL), &o, err,
                        sizeof(err)) < 0) {
        log_error("internal alert intake: %s", err);
        http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
        goto out;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "result", result_name(o.result));
    cJSON_AddStringToObject(r, "alert_id", o.alert_id);
    if (o.incident_id[0])
        cJSON_AddStringToObject(r, "incident_id", o.incident_id);
    else
        cJSON_AddNullToObject(r, "incident_id");
    http_resp_json(resp, o.result == INGEST_CREATED ? 201 : 200, r);
out:
    cJSON_Delete(body);
}
