/* sentry_api.c — what Aurora reads from Sentry during an investigation
 * (connector guide: Sentry, "What Aurora Queries"), with the caller's
 * connection (sentry.c): Authorization: Bearer <auth token> against the
 * connection's base (sentry.io, de.sentry.io or a self-hosted Sentry).
 *
 *   GET  /sentry/issues?query=is:unresolved&statsPeriod=24h|start=&end=
 *                      &project=<id>&environment=&limit=1..100&cursor=
 *        → GET <base>/api/0/organizations/<org>/issues/ (one page; next_cursor
 *          from Sentry's Link header)
 *   GET  /sentry/issues/{issue_id}
 *        → …/organizations/<org>/issues/<id>/ and …/issues/<id>/events/latest/
 *          (the latest event: full stacktrace, breadcrumbs, tags) plus
 *          "stack_excerpt", the first lines of its stack
 *   POST /sentry/discover {fields: [...], query, statsPeriod | start+end,
 *                          project, environment, sort, limit, cursor}
 *        → GET …/organizations/<org>/events/?field=…&field=… (Discover; a
 *          POST here because Aurora's query strings take each name once)
 *
 * Strictly read-only.  Every parameter is checked before it is forwarded
 * (lengths, charsets); answers are capped (SENTRY_API_MAX_RESPONSE) and pages
 * are one at a time. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "kit_addr.h"
#include "kit_call.h"
#include "log.h"
#include "router.h"
#include "sentry.h"

#define SENTRY_API_MAX_RESPONSE (4 * 1024 * 1024)
#define QUERY_MAX 1024
#define FIELD_MAX 200
#define MAX_FIELDS 20
#define DEFAULT_LIMIT 25
#define MAX_LIMIT 100
#define MAX_PROJECTS 20

static const kit_call_errors api_errors = {
    .service = "Sentry API",
    .timeout = "SENTRY_TIMEOUT",
    .unreachable = "SENTRY_UNREACHABLE",
    .denied = "SENTRY_DENIED",
    .failed = "SENTRY_ERROR",
};

/* ---- parameter checks -------------------------------------------------------------- */

static int chars_in(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n < 1 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(extra, s[i])))
            return 0;
    return 1;
}

/* "24h", "14d", "30m", "2w": Sentry's statsPeriod. */
static int period_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 5 || !strchr("smhdw", s[n - 1]))
        return 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Free text (a search query, an environment name): no control characters. */
static int text_ok(const char *s, size_t max)
{
    char err[64];
    return api_check_text(s, "text", 1, max, err, sizeof(err)) == 0;
}

/* One named parameter checked and added to *url (replaced; freed on error).
 * kind: 'q' text, 'p' period, 't' time, 'i' numeric id, 'P' ids "2,3", 'c' cursor,
 * 'e' environment, 's' sort, 'f' field.  0, or -1 with a 400 in resp. */
static int add_param(char **url, const char *name, const char *value, char kind,
                     http_response *resp)
{
    if (!value)
        return 0;
    if (kind == 'P') { /* "2,3": Sentry takes project once per id */
        char one[32];
        const char *p = value;
        for (int n = 0;; n++) {
            size_t len = strcspn(p, ",");
            if (n >= MAX_PROJECTS || len == 0 || len >= sizeof(one)) {
                http_resp_error(resp, 400, "BAD_REQUEST",
                                "%s must be 1-%d numeric project ids separated by commas", name,
                                MAX_PROJECTS);
                return -1;
            }
            memcpy(one, p, len);
            one[len] = '\0';
            if (add_param(url, name, one, 'i', resp) < 0)
                return -1;
            if (!p[len])
                return 0;
            p += len + 1;
        }
    }
    int ok = 0;
    switch (kind) {
    case 'q': ok = text_ok(value, QUERY_MAX); break;
    case 'p': ok = period_ok(value); break;
    case 't': ok = chars_in(value, 40, "-:.TZ+"); break;
    case 'i': ok = sentry_numeric_id_ok(value); break;
    case 'c': ok = chars_in(value, 128, ":._-"); break;
    case 'e': ok = text_ok(value, 64) && !strchr(value, '\n'); break;
    case 's': ok = chars_in(value, 100, "-_.()"); break;
    case 'f': ok = text_ok(value, FIELD_MAX); break;
    }
    if (!ok) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s is not valid", name);
        return -1;
    }
    char *next = kit_url_with_param(*url, name, value);
    if (!next) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    free(*url);
    *url = next;
    return 0;
}

static int limit_of(const char *text, const cJSON *num, int *out, http_response *resp)
{
    int64_t v = DEFAULT_LIMIT;
    if (text && *text) {
        char *end = NULL;
        v = strtoll(text, &end, 10);
        if (!end || *end)
            v = -1;
    } else if (num && !api_json_int64(num, &v)) {
        v = -1;
    }
    if (v < 1 || v > MAX_LIMIT) {
        http_resp_error(resp, 400, "BAD_REQUEST", "limit must be 1-%d", MAX_LIMIT);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* ---- one call ------------------------------------------------------------------------------ */

/* A failed read as this route's answer: the guide's token message on
 * 401/403, not_found (may be NULL: Sentry's wording) on 404, Sentry's own
 * "detail" (checked, bounded) on 400, else the kit's wording. */
static void read_failed(const worker_ctx *w, const kit_call_resp *r, const char *not_found,
                        http_response *resp)
{
    if (r->http.address_refused) {
        http_resp_error(resp, 502, "SENTRY_INVALID_BASE_URL",
                        "the self-hosted base_url now resolves to an address Aurora does not "
                        "connect to (link-local, unspecified, multicast; loopback unless "
                        "SENTRY_ALLOW_LOOPBACK=true)");
    } else if (r->status == 401 || r->status == 403) {
        http_resp_error(resp, 502, "SENTRY_DENIED",
                        "Invalid Sentry auth token or insufficient permissions");
    } else if (r->status == 404 && not_found) {
        http_resp_error(resp, 404, "SENTRY_NOT_FOUND", "%s", not_found);
    } else if (r->status == 400) {
        cJSON *j = kit_call_json(r);
        const char *d = api_json_str(j, "detail");
        char err[64];
        if (d && api_check_chars(d, "detail", 1, 300, err, sizeof(err)) == 0)
            http_resp_error(resp, 400, "SENTRY_BAD_QUERY", "Sentry refused the query: %s", d);
        else
            http_resp_error(resp, 400, "SENTRY_BAD_QUERY", "Sentry refused the query");
        cJSON_Delete(j);
    } else {
        kit_call_error(&api_errors, r, NULL, sentry_timeout_ms(w), NULL, resp);
    }
}

/* GET url with the connection's token; *json the answer, *next_cursor the
 * cursor of Sentry's rel="next" link when it has results ("" otherwise).
 * 0, 1 for a 404 when missing_ok (resp untouched, *json NULL), or -1 with
 * resp filled. */
static int get_json(worker_ctx *w, const sentry_conn *c, const char *url, const char *not_found,
                    int missing_ok, cJSON **json, char *next_cursor, size_t ncap,
                    http_response *resp)
{
    const char *headers[] = { "Accept: application/json", NULL };
    long t = sentry_timeout_ms(w);
    kit_call_req q = { .provider = "Sentry API", .base_url = c->base, .url = url,
                       .headers = headers, .bearer = c->token, .attempt_timeout_ms = t,
                       .deadline_ms = t, .max_response = SENTRY_API_MAX_RESPONSE };
    if (c->custom) { /* the user's self-hosted base: its name may resolve elsewhere since */
        q.allow_address = kit_addr_allow;
        q.allow_address_ud = (void *)&c->allow_loopback;
    }
    kit_call_resp rp;
    int rc = kit_call(&q, &rp);
    *json = NULL;
    if (next_cursor && ncap)
        next_cursor[0] = '\0';
    if (rc != AUR_OK && missing_ok && rp.status == 404) {
        kit_call_resp_free(&rp);
        return 1;
    }
    if (rc != AUR_OK) {
        read_failed(w, &rp, not_found, resp);
        kit_call_resp_free(&rp);
        return -1;
    }
    *json = kit_call_json(&rp);
    if (!*json) {
        kit_call_resp_free(&rp);
        http_resp_error(resp, 502, "SENTRY_ERROR", "Sentry API answered something that is not JSON");
        return -1;
    }
    char next[2048];
    if (next_cursor && kit_link_next(http_client_header(&rp.http, "Link"), url, next,
                                     sizeof(next)) == 1) {
        /* Only the cursor goes back to the caller, never Sentry's URL. */
        const char *p = strstr(next, "cursor=");
        while (p && p != next && p[-1] != '?' && p[-1] != '&')
            p = strstr(p + 1, "cursor=");
        if (p) {
            p += 7;
            size_t n = strcspn(p, "&#");
            if (n < ncap) {
                memcpy(next_cursor, p, n);
                next_cursor[n] = '\0';
                if (!chars_in(next_cursor, 128, ":._-"))
                    next_cursor[0] = '\0';
            }
        }
    }
    kit_call_resp_free(&rp);
    return 0;
}

static char *org_url(const sentry_conn *c, const char *fmt_tail, const char *id)
{
    char path[1024];
    char *u;
    if (id)
        snprintf(path, sizeof(path), "/api/0/organizations/%s/%s/%s/", c->org_slug, fmt_tail, id);
    else
        snprintf(path, sizeof(path), "/api/0/organizations/%s/%s/", c->org_slug, fmt_tail);
    u = kit_url(c->base, path);
    return u;
}

/* ---- GET /sentry/issues ------------------------------------------------------------------- */

static void issues_route(worker_ctx *w, http_request *req, http_response *resp)
{
    static const struct {
        const char *name;
        char kind;
    } params[] = { { "query", 'q' },   { "statsPeriod", 'p' }, { "start", 't' },
                   { "end", 't' },     { "project", 'P' },     { "environment", 'e' },
                   { "sort", 's' },    { "cursor", 'c' } };
    sentry_conn c;
    char *url = NULL;
    cJSON *j = NULL;
    char lim[16] = "", next[160];
    int limit;
    http_query_get(req, "limit", lim, sizeof(lim));
    if (limit_of(lim, NULL, &limit, resp) < 0 || sentry_conn_load(w, &req->auth, &c, resp) < 0)
        return;
    url = org_url(&c, "issues", NULL);
    for (size_t i = 0; url && i < sizeof(params) / sizeof(params[0]); i++) {
        char v[QUERY_MAX + 2];
        int got = http_query_get(req, params[i].name, v, sizeof(v));
        if (got > 0 && add_param(&url, params[i].name, v, params[i].kind, resp) < 0)
            goto out;
    }
    snprintf(lim, sizeof(lim), "%d", limit);
    if (!url || add_param(&url, "limit", lim, 'i', resp) < 0) {
        if (!url)
            http_resp_error(resp, 500, "INTERNAL", "cannot build the Sentry URL");
        goto out;
    }
    if (get_json(w, &c, url, NULL, 0, &j, next, sizeof(next), resp) < 0)
        goto out;
    if (!cJSON_IsArray(j)) {
        http_resp_error(resp, 502, "SENTRY_ERROR", "Sentry API answered an unexpected issue list");
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "org_slug", c.org_slug);
    cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(j));
    cJSON_AddItemToObject(o, "issues", j);
    j = NULL;
    if (next[0])
        cJSON_AddStringToObject(o, "next_cursor", next);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(j);
    free(url);
    sentry_conn_free(&c);
}

/* ---- GET /sentry/issues/{issue_id} ------------------------------------------------------------- */

/* The exception entry of an event (entries[] of type "exception"). */
static const cJSON *event_exception(const cJSON *event)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(event, "entries"))
    {
        const char *type = api_json_str(it, "type");
        if (type && !strcmp(type, "exception"))
            return cJSON_GetObjectItemCaseSensitive(it, "data");
    }
    return cJSON_GetObjectItemCaseSensitive(event, "exception");
}

static void issue_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *id = http_param(req, "issue_id");
    if (!sentry_numeric_id_ok(id)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "issue_id must be a numeric Sentry issue id");
        return;
    }
    sentry_conn c;
    if (sentry_conn_load(w, &req->auth, &c, resp) < 0)
        return;
    char nf[96], tail[64];
    snprintf(nf, sizeof(nf), "Sentry issue '%s' not found", id);
    snprintf(tail, sizeof(tail), "%s/events/latest", id);
    char *iurl = org_url(&c, "issues", id), *eurl = org_url(&c, "issues", tail);
    cJSON *issue = NULL, *event = NULL;
    if (!iurl || !eurl) {
        http_resp_error(resp, 500, "INTERNAL", "cannot build the Sentry URL");
        goto out;
    }
    if (get_json(w, &c, iurl, nf, 0, &issue, NULL, 0, resp) < 0)
        goto out;
    if (!cJSON_IsObject(issue)) {
        http_resp_error(resp, 502, "SENTRY_ERROR", "Sentry API answered an unexpected issue");
        goto out;
    }
    /* An issue whose events aged out of retention has none: latest_event null. */
    if (get_json(w, &c, eurl, NULL, 1, &event, NULL, 0, resp) < 0)
        goto out;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "issue", issue);
    issue = NULL;
    if (cJSON_IsObject(event)) {
        char excerpt[SENTRY_MESSAGE_MAX];
        sentry_stack_excerpt(event_exception(event), excerpt, sizeof(excerpt),
                             SENTRY_EXCERPT_FRAMES);
        cJSON_AddStringToObject(o, "stack_excerpt", excerpt);
        cJSON_AddItemToObject(o, "latest_event", event);
        event = NULL;
    } else {
        cJSON_AddNullToObject(o, "latest_event");
    }
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(issue);
    cJSON_Delete(event);
    free(iurl);
    free(eurl);
    sentry_conn_free(&c);
}

/* ---- POST /sentry/discover ------------------------------------------------------------------- */

static void discover_route(worker_ctx *w, http_request *req, http_response *resp)
{
    static const struct {
        const char *name;
        char kind;
    } params[] = { { "query", 'q' },   { "statsPeriod", 'p' }, { "start", 't' },
                   { "end", 't' },     { "project", 'P' },     { "environment", 'e' },
                   { "sort", 's' },    { "cursor", 'c' } };
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    sentry_conn c = { 0 };
    char *url = NULL, lim[16], next[160];
    cJSON *j = NULL;
    int limit, loaded = 0;
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(body, "fields");
    int nf = cJSON_IsArray(fields) ? cJSON_GetArraySize(fields) : -1;
    if (nf < 1 || nf > MAX_FIELDS) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "fields must be an array of 1-%d Discover fields (e.g. \"title\", "
                        "\"count()\")", MAX_FIELDS);
        goto out;
    }
    if (limit_of(NULL, cJSON_GetObjectItemCaseSensitive(body, "limit"), &limit, resp) < 0 ||
        sentry_conn_load(w, &req->auth, &c, resp) < 0)
        goto out;
    loaded = 1;
    url = org_url(&c, "events", NULL);
    const cJSON *f;
    cJSON_ArrayForEach(f, fields)
    {
        if (!cJSON_IsString(f)) {
            http_resp_error(resp, 400, "BAD_REQUEST", "fields must be strings");
            goto out;
        }
        if (url && add_param(&url, "field", f->valuestring, 'f', resp) < 0)
            goto out;
    }
    for (size_t i = 0; url && i < sizeof(params) / sizeof(params[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, params[i].name);
        char num[MAX_PROJECTS * 24 + 8];
        const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
        int64_t n;
        if (!s && cJSON_IsNumber(v) && api_json_int64(v, &n)) {
            snprintf(num, sizeof(num), "%lld", (long long)n);
            s = num;
        } else if (!s && params[i].kind == 'P' && cJSON_IsArray(v) &&
                   cJSON_GetArraySize(v) >= 1 && cJSON_GetArraySize(v) <= MAX_PROJECTS) {
            /* [2, "3"]: joined, then checked id by id like the query form. */
            size_t used = 0;
            const cJSON *it;
            num[0] = '\0';
            cJSON_ArrayForEach(it, v)
            {
                char one[24] = "";
                if (cJSON_IsNumber(it) && api_json_int64(it, &n))
                    snprintf(one, sizeof(one), "%lld", (long long)n);
                else if (cJSON_IsString(it) && strlen(it->valuestring) < sizeof(one))
                    snprintf(one, sizeof(one), "%s", it->valuestring);
                used += (size_t)snprintf(num + used, sizeof(num) - used, "%s%s", used ? "," : "",
                                         one[0] ? one : "x");
            }
            s = num;
        }
        if (v && !cJSON_IsNull(v) && !s) {
            http_resp_error(resp, 400, "BAD_REQUEST", "%s is not valid", params[i].name);
            goto out;
        }
        if (add_param(&url, params[i].name, s, params[i].kind, resp) < 0)
            goto out;
    }
    snprintf(lim, sizeof(lim), "%d", limit);
    if (!url || add_param(&url, "per_page", lim, 'i', resp) < 0) {
        if (!url)
            http_resp_error(resp, 500, "INTERNAL", "cannot build the Sentry URL");
        goto out;
    }
    if (get_json(w, &c, url, NULL, 0, &j, next, sizeof(next), resp) < 0)
        goto out;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsArray(data)) {
        http_resp_error(resp, 502, "SENTRY_ERROR", "Sentry API answered an unexpected event list");
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "org_slug", c.org_slug);
    cJSON_AddItemToObject(o, "data", cJSON_DetachItemFromObjectCaseSensitive(j, "data"));
    cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(j, "meta");
    if (meta)
        cJSON_AddItemToObject(o, "meta", meta);
    if (next[0])
        cJSON_AddStringToObject(o, "next_cursor", next);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(j);
    free(url);
    if (loaded)
        sentry_conn_free(&c);
    cJSON_Delete(body);
}

void sentry_api_register(void)
{
    router_add_outbound(HTTP_GET, "/sentry/issues", ROUTE_AUTH_API, issues_route);
    router_add_outbound(HTTP_GET, "/sentry/issues/{issue_id}", ROUTE_AUTH_API, issue_route);
    router_add_outbound(HTTP_POST, "/sentry/discover", ROUTE_AUTH_API, discover_route);
}
