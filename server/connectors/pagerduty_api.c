/* pagerduty_api.c — the PagerDuty read API the investigation uses (REST API
 * v2, api.pagerduty.com or PAGERDUTY_API_BASE_URL), with the caller's own
 * connection (API key or OAuth access token, pagerduty.c):
 *
 *   GET /pagerduty/incidents       ?status=triggered,acknowledged,resolved&since&until&
 *                                  service_id&max=1..1000: newest first, offset pages of
 *                                  100 while PagerDuty answers "more": true
 *   GET /pagerduty/incidents/{id}  the incident and its 25 newest alerts (summary,
 *                                  severity, body.details: what the monitoring tool sent)
 *   GET /pagerduty/services        ?max
 *
 * Answers carry the fields the RCA reads, copied by name from PagerDuty's
 * (never the whole object); filters are checked against their sets and
 * charsets and URL-encoded. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "kit_call.h"
#include "pagerduty.h"
#include "router.h"

#define PD_PAGE 100 /* PagerDuty's largest page (limit) */
#define PD_MAX_ITEMS 1000
#define PD_ALERTS_SHOWN 25

/* Copies the named members (strings, numbers, booleans) of src into a new object. */
static cJSON *pick(const cJSON *src, const char *const *keys)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, keys[i]);
        if (cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v))
            cJSON_AddItemToObject(o, keys[i], cJSON_Duplicate(v, 0));
    }
    return o;
}

/* A reference ({id, summary}) member of src, as {id, summary}. */
static void pick_ref(cJSON *dst, const cJSON *src, const char *key)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(src, key);
    if (!cJSON_IsObject(r))
        return;
    static const char *const keys[] = { "id", "summary", NULL };
    cJSON_AddItemToObject(dst, key, pick(r, keys));
}

static cJSON *slim_incident(const cJSON *in)
{
    static const char *const keys[] = { "id", "incident_number", "title", "description", "status",
                                        "urgency", "incident_key", "created_at", "updated_at",
                                        "last_status_change_at", "html_url", NULL };
    cJSON *o = pick(in, keys);
    pick_ref(o, in, "service");
    pick_ref(o, in, "priority");
    pick_ref(o, in, "escalation_policy");
    return o;
}

static cJSON *slim_service(const cJSON *in)
{
    static const char *const keys[] = { "id", "name", "description", "status", "html_url",
                                        "created_at", NULL };
    return pick(in, keys);
}

static cJSON *slim_alert(const cJSON *in)
{
    static const char *const keys[] = { "id", "summary", "status", "severity", "alert_key",
                                        "created_at", "html_url", NULL };
    cJSON *o = pick(in, keys);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(in, "body");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(body, "details");
    if (details && !cJSON_IsNull(details))
        cJSON_AddItemToObject(o, "details", cJSON_Duplicate(details, 1));
    return o;
}

typedef struct {
    const char *field;              /* "incidents", "services" */
    cJSON *(*slim)(const cJSON *);
    cJSON *out;                     /* array */
    int max;
} collect;

static int collect_page(const kit_call_resp *page, void *arg)
{
    collect *c = arg;
    cJSON *j = kit_call_json(page);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, c->field);
    if (!cJSON_IsArray(items)) {
        cJSON_Delete(j);
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        if (cJSON_GetArraySize(c->out) >= c->max)
            break;
        if (cJSON_IsObject(it))
            cJSON_AddItemToArray(c->out, c->slim(it));
    }
    cJSON_Delete(j);
    return 0;
}

/* ?max= (1..PD_MAX_ITEMS, default def); -1 with a 400. */
static int max_param(http_request *req, int def, http_response *resp)
{
    char v[16];
    if (http_query_get(req, "max", v, sizeof(v)) <= 0)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > PD_MAX_ITEMS) {
        http_resp_error(resp, 400, "BAD_REQUEST", "max must be 1-%d", PD_MAX_ITEMS);
        return -1;
    }
    return (int)n;
}

/* Walks url's offset pages into {field: [...], "truncated": bool}. */
static void list_walk(worker_ctx *w, http_request *req, const char *base, char *url,
                      const char *field, cJSON *(*slim)(const cJSON *), int max,
                      http_response *resp)
{
    pd_cred c;
    memset(&c, 0, sizeof(c));
    if (pd_caller_cred(w, &req->auth, &c, resp) < 0) {
        free(url);
        return;
    }
    const char *headers[3];
    kit_call_req q;
    pd_call_init(&q, base, url, headers, &c, pd_timeout_ms(w));
    int limit = max < PD_PAGE ? max : PD_PAGE;
    kit_pager_cfg cfg = { .style = KIT_PAGE_OFFSET, .page_param = "offset", .limit_param = "limit",
                          .limit = limit, .items_field = field, .more_field = "more",
                          .max_pages = (max + limit - 1) / limit };
    collect col = { .field = field, .slim = slim, .out = cJSON_CreateArray(), .max = max };
    kit_walk wk;
    int rc = kit_pager_walk(&q, &cfg, collect_page, &col, &wk);
    pd_cred_wipe(&c);
    free(url);
    if (rc != AUR_OK) {
        if (wk.bad_page)
            http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty answered a page without %s",
                            field);
        else if (wk.refused)
            http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty named a next page elsewhere");
        else
            kit_call_error(&pd_api_errors, &wk.last, NULL, pd_timeout_ms(w), NULL, resp);
        pd_forget_if_refused(&req->auth, wk.last.status);
        cJSON_Delete(col.out);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, field, col.out);
        cJSON_AddBoolToObject(o, "truncated", wk.capped || cJSON_GetArraySize(col.out) >= max);
        http_resp_json(resp, 200, o);
    }
    kit_walk_free(&wk);
}

/* A query value made of [A-Za-z0-9:.+-] (PagerDuty ids, ISO 8601 times). */
static int plain_value(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == ':' || *s == '.' || *s == '+' || *s == '-'))
            return 0;
    return 1;
}

/* url with name=value added (url consumed); NULL on OOM. */
static char *with(char *url, const char *name, const char *value)
{
    char *n = url ? kit_url_with_param(url, name, value) : NULL;
    free(url);
    return n;
}

static void incidents_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *base = pd_api_base(w, resp);
    int max = base ? max_param(req, 100, resp) : -1;
    if (max < 0)
        return;
    char *url = kit_url(base, "incidents");
    /* Buffers larger than any valid value: a longer one arrives cut and is
     * then refused by its length check, never used cut. */
    char status[256] = "", since[256] = "", until[256] = "", svc[256] = "";
    http_query_get(req, "status", status, sizeof(status));
    if (status[0]) {
        char *save = NULL;
        for (char *s = strtok_r(status, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (strcmp(s, "triggered") && strcmp(s, "acknowledged") && strcmp(s, "resolved")) {
                free(url);
                http_resp_error(resp, 400, "BAD_REQUEST",
                                "status must be a comma-separated list of triggered, acknowledged, "
                                "resolved");
                return;
            }
            url = with(url, "statuses[]", s);
        }
    }
    struct { const char *q, *p; char *v; size_t cap, max; } f[] = {
        { "since", "since", since, sizeof(since), 40 },
        { "until", "until", until, sizeof(until), 40 },
        { "service_id", "service_ids[]", svc, sizeof(svc), 32 },
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        int n = http_query_get(req, f[i].q, f[i].v, f[i].cap);
        if (n == 0 || (n > 0 && !f[i].v[0]))
            continue;
        if (n < 0 || !plain_value(f[i].v, f[i].max)) {
            free(url);
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "%s must be a PagerDuty id or an ISO 8601 time", f[i].q);
            return;
        }
        url = with(url, f[i].p, f[i].v);
    }
    url = with(url, "sort_by", "created_at:desc");
    if (!url) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    list_walk(w, req, base, url, "incidents", slim_incident, max, resp);
}

static void services_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *base = pd_api_base(w, resp);
    int max = base ? max_param(req, 100, resp) : -1;
    if (max < 0)
        return;
    char *url = kit_url(base, "services");
    if (!url) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    list_walk(w, req, base, url, "services", slim_service, max, resp);
}

static void incident_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *id = http_param(req, "id");
    const char *base = pd_api_base(w, resp);
    if (!base)
        return;
    if (!id || !plain_value(id, 32) || strchr(id, ':') || strchr(id, '.') || strchr(id, '+')) {
        http_resp_error(resp, 400, "BAD_REQUEST", "not a PagerDuty incident id");
        return;
    }
    pd_cred c;
    memset(&c, 0, sizeof(c));
    if (pd_caller_cred(w, &req->auth, &c, resp) < 0)
        return;
    char path[96];
    snprintf(path, sizeof(path), "incidents/%s", id);
    kit_call_resp rp;
    int rc = pd_api_get_path(w, base, &c, path, &rp);
    cJSON *j = rc == AUR_OK ? kit_call_json(&rp) : NULL;
    const cJSON *inc = cJSON_GetObjectItemCaseSensitive(j, "incident");
    if (rc == AUR_NOT_FOUND)
        http_resp_error(resp, 404, "PAGERDUTY_INCIDENT_NOT_FOUND", "PagerDuty incident %s not found",
                        id);
    else if (rc == AUR_E_INTERNAL)
        http_resp_error(resp, 500, "INTERNAL", "%s", rp.err);
    else if (rc != AUR_OK)
        kit_call_error(&pd_api_errors, &rp, NULL, pd_timeout_ms(w), NULL, resp);
    else if (!cJSON_IsObject(inc))
        http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty answered without an incident");
    pd_forget_if_refused(&req->auth, rp.status);
    kit_call_resp_free(&rp);
    if (rc != AUR_OK || !cJSON_IsObject(inc)) {
        cJSON_Delete(j);
        pd_cred_wipe(&c);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "incident", slim_incident(inc));
    cJSON_Delete(j);
    /* Its alerts (what the RCA reads: the monitoring tool's own summary and
     * details); best effort, the incident alone is still an answer. */
    snprintf(path, sizeof(path), "incidents/%s/alerts?limit=%d&sort_by=created_at:desc", id,
             PD_ALERTS_SHOWN);
    rc = pd_api_get_path(w, base, &c, path, &rp);
    cJSON *alerts = cJSON_AddArrayToObject(o, "alerts");
    if (rc == AUR_OK) {
        j = kit_call_json(&rp);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "alerts"), *it;
        cJSON_ArrayForEach(it, arr)
        {
            if (cJSON_GetArraySize(alerts) >= PD_ALERTS_SHOWN)
                break;
            if (cJSON_IsObject(it))
                cJSON_AddItemToArray(alerts, slim_alert(it));
        }
        cJSON_Delete(j);
    } else {
        cJSON_AddStringToObject(o, "alerts_error", rp.err);
    }
    kit_call_resp_free(&rp);
    pd_cred_wipe(&c);
    http_resp_json(resp, 200, o);
}

void pagerduty_api_register(void)
{
    router_add_outbound(HTTP_GET, "/pagerduty/incidents", ROUTE_AUTH_API, incidents_route);
    router_add_outbound(HTTP_GET, "/pagerduty/incidents/{id}", ROUTE_AUTH_API, incident_route);
    router_add_outbound(HTTP_GET, "/pagerduty/services", ROUTE_AUTH_API, services_route);
}
