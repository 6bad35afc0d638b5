/* newrelic_api.c — the New Relic connector's read API (ROUTE_AUTH_API,
 * outbound pool), every call a NerdGraph query with the user's text passed
 * as GraphQL VARIABLES (never spliced into the query document):
 *
 *   POST /newrelic/nrql {query, account_id?}       NRQL → {"results": […]}
 *   GET  /newrelic/issues?state=&priority=&since=&until=&cursor=&pages=
 *   GET  /newrelic/incidents?(same)
 *        aiIssues { issues|incidents(cursor, filter: {states}, timeWindow) },
 *        nextCursor followed up to `pages` (1-5) pages, at most 1000 items;
 *        priority (CRITICAL, HIGH, MEDIUM, LOW) filtered on our side
 *   GET  /newrelic/entities?query=&cursor=         entitySearch(query:)
 *   GET  /newrelic/accounts                        actor { accounts { id name } }
 *
 * Answers are bounded (NEWRELIC_MAX_RESPONSE per call); GraphQL errors map
 * to 400 NEWRELIC_QUERY_ERROR / 502 (newrelic_graphql). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "kit_call.h"
#include "log.h"
#include "newrelic.h"
#include "router.h"

#define NRQL_MAX 4096
#define CURSOR_MAX 1024
#define ENTITY_QUERY_MAX 1024
#define PAGES_MAX 5
#define ITEMS_MAX 1000
#define DEFAULT_WINDOW_S 86400

/* A query argument of at most cap-1 printable ASCII bytes: 0 absent, 1
 * present, -1 with a 400. */
static int arg(const http_request *req, const char *name, char *out, size_t cap,
               http_response *resp)
{
    int got = http_query_get(req, name, out, cap);
    if (got <= 0) {
        out[0] = '\0';
        return 0;
    }
    size_t n = strlen(out);
    int ok = n > 0 && n + 1 < cap;
    for (size_t i = 0; ok && i < n; i++)
        ok = out[i] >= ' ' && out[i] <= '~';
    if (!ok) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "%s is not valid (1 to %zu printable characters)", name, cap - 2);
        return -1;
    }
    return 1;
}

/* An epoch time argument in seconds or milliseconds → milliseconds. */
static int time_arg(const http_request *req, const char *name, int64_t def_ms, int64_t *out,
                    http_response *resp)
{
    char buf[24];
    int got = arg(req, name, buf, sizeof(buf), resp);
    if (got < 0)
        return -1;
    *out = def_ms;
    if (!got)
        return 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (*end || v <= 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be epoch seconds or milliseconds",
                        name);
        return -1;
    }
    *out = v < 100000000000LL ? (int64_t)v * 1000 : (int64_t)v;
    return 0;
}

/* Comma-separated words, each one of allowed (case-insensitive), into an
 * upper-case JSON array (*out, NULL when absent).  0, or -1 with a 400. */
static int words_arg(const http_request *req, const char *name, const char *const *allowed,
                     cJSON **out, http_response *resp)
{
    char buf[256];
    *out = NULL;
    int got = arg(req, name, buf, sizeof(buf), resp);
    if (got <= 0)
        return got;
    cJSON *arr = cJSON_CreateArray();
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (!strcasecmp(t, allowed[i])) {
                cJSON_AddItemToArray(arr, cJSON_CreateString(allowed[i]));
                found = 1;
            }
        if (!found) {
            char list[128] = "";
            for (size_t i = 0; allowed[i]; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                         allowed[i]);
            http_resp_error(resp, 400, "BAD_REQUEST", "%s: each value must be one of %s", name,
                            list);
            cJSON_Delete(arr);
            return -1;
        }
    }
    *out = arr;
    return 0;
}

static const cJSON *account_of(const cJSON *data)
{
    return kit_json_path(data, "actor.account");
}

/* ---- NRQL ---------------------------------------------------------------------------------------- */

static const char *const Q_NRQL =
    "query($id: Int!, $nrql: Nrql!) { actor { account(id: $id) { nrql(query: $nrql) { results } } } }";

static void nrql_route(worker_ctx *w, http_request *req, http_response *resp)
{
    newrelic_creds c;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    if (newrelic_creds_load(w, &req->auth, &c, resp) < 0) {
        cJSON_Delete(body);
        return;
    }
    cJSON *vars = NULL, *data = NULL;
    const char *q = api_json_str(body, "query");
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(body, "account_id");
    int64_t account = acc && !cJSON_IsNull(acc) ? newrelic_account_id(acc) : c.account_id;
    if (!q || !*q || strlen(q) > NRQL_MAX) {
        http_resp_error(resp, 400, "BAD_REQUEST", "query must be an NRQL string of 1 to %d bytes",
                        NRQL_MAX);
        goto out;
    }
    if (!account) {
        http_resp_error(resp, 400, "NEWRELIC_INVALID_ACCOUNT_ID",
                        "account_id must be a numeric New Relic Account ID");
        goto out;
    }
    vars = cJSON_CreateObject();
    cJSON_AddNumberToObject(vars, "id", (double)account);
    cJSON_AddStringToObject(vars, "nrql", q);
    if (newrelic_graphql(w, &c, Q_NRQL, vars, &data, resp) < 0)
        goto out;
    const cJSON *a = account_of(data);
    if (!cJSON_IsObject(a)) {
        http_resp_error(resp, 404, "NEWRELIC_ACCOUNT_NOT_FOUND",
                        "Account not found: the API key has no access to account %lld",
                        (long long)account);
        goto out;
    }
    const cJSON *results = kit_json_path(a, "nrql.results");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "account_id", (double)account);
    cJSON_AddItemToObject(o, "results",
                          cJSON_IsArray(results) ? cJSON_Duplicate(results, 1)
                                                 : cJSON_CreateArray());
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(data);
    cJSON_Delete(vars);
    cJSON_Delete(body);
    newrelic_creds_clear(&c);
}

/* ---- issues and incidents ------------------------------------------------------------------------ */

typedef struct {
    const char *field;   /* "issues" / "incidents" */
    const char *query;
    const char *const *states;
} list_kind;

static const char *const ISSUE_STATES[] = { "ACTIVATED", "CREATED", "ACKNOWLEDGED", "CLOSED",
                                            NULL };
static const char *const INCIDENT_STATES[] = { "CREATED", "CLOSED", NULL };
static const char *const PRIORITIES[] = { "CRITICAL", "HIGH", "MEDIUM", "LOW", NULL };

static const list_kind K_ISSUES = {
    "issues",
    "query($id: Int!, $cursor: String, $filter: AiIssuesFilterIssues, $tw: TimeWindowInput) "
    "{ actor { account(id: $id) { aiIssues { issues(cursor: $cursor, filter: $filter, "
    "timeWindow: $tw) { issues { issueId title priority state entityNames entityGuids "
    "description sources createdAt activatedAt updatedAt closedAt acknowledgedAt "
    "totalIncidents } nextCursor } } } } }",
    ISSUE_STATES,
};
static const list_kind K_INCIDENTS = {
    "incidents",
    "query($id: Int!, $cursor: String, $filter: AiIssuesFilterIncidents, $tw: TimeWindowInput) "
    "{ actor { account(id: $id) { aiIssues { incidents(cursor: $cursor, filter: $filter, "
    "timeWindow: $tw) { incidents { incidentId title priority state entityNames entityGuids "
    "description createdAt updatedAt closedAt } nextCursor } } } } }",
    INCIDENT_STATES,
};

/* Up to `pages` pages of issues (or incidents) into items; the cursor to
 * go on with in next ("" at the end).  0, or -1 with resp filled. */
int newrelic_issues_fetch(worker_ctx *w, const newrelic_creds *c, int incidents,
                          const cJSON *states, int64_t start_ms, int64_t end_ms,
                          const char *cursor, int pages, cJSON *items, char *next, size_t nextcap,
                          http_response *resp)
{
    const list_kind *k = incidents ? &K_INCIDENTS : &K_ISSUES;
    snprintf(next, nextcap, "%s", cursor ? cursor : "");
    for (int page = 0; page < pages; page++) {
        cJSON *vars = cJSON_CreateObject();
        cJSON_AddNumberToObject(vars, "id", (double)c->account_id);
        if (next[0])
            cJSON_AddStringToObject(vars, "cursor", next);
        if (states) {
            cJSON *f = cJSON_AddObjectToObject(vars, "filter");
            cJSON_AddItemToObject(f, "states", cJSON_Duplicate(states, 1));
        }
        cJSON *tw = cJSON_AddObjectToObject(vars, "tw");
        cJSON_AddNumberToObject(tw, "startTime", (double)start_ms);
        cJSON_AddNumberToObject(tw, "endTime", (double)end_ms);
        cJSON *data = NULL;
        int rc = newrelic_graphql(w, c, k->query, vars, &data, resp);
        cJSON_Delete(vars);
        if (rc < 0)
            return -1;
        const cJSON *a = account_of(data);
        char path[64];
        snprintf(path, sizeof(path), "aiIssues.%s", k->field);
        const cJSON *block = kit_json_path(a, path);
        if (!cJSON_IsObject(a) || !cJSON_IsObject(block)) {
            http_resp_error(resp, cJSON_IsObject(a) ? 502 : 404,
                            cJSON_IsObject(a) ? "NEWRELIC_ERROR" : "NEWRELIC_ACCOUNT_NOT_FOUND",
                            cJSON_IsObject(a) ? "NerdGraph answered without %s"
                                              : "Account not found (%s)", k->field);
            cJSON_Delete(data);
            return -1;
        }
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(block, k->field);
        for (const cJSON *it = cJSON_IsArray(list) ? list->child : NULL; it; it = it->next)
            if (cJSON_IsObject(it) && cJSON_GetArraySize(items) < ITEMS_MAX)
                cJSON_AddItemToArray(items, cJSON_Duplicate(it, 1));
        const char *nc = api_json_str(block, "nextCursor");
        snprintf(next, nextcap, "%s", nc && strlen(nc) < nextcap && strlen(nc) <= CURSOR_MAX ? nc
                                                                                           : "");
        cJSON_Delete(data);
        if (!next[0] || cJSON_GetArraySize(items) >= ITEMS_MAX)
            break;
    }
    return 0;
}

static void list_route(worker_ctx *w, http_request *req, http_response *resp, int incidents)
{
    const list_kind *k = incidents ? &K_INCIDENTS : &K_ISSUES;
    cJSON *states = NULL, *prios = NULL, *items = NULL;
    char cursor[CURSOR_MAX + 2], pages_s[8], next[CURSOR_MAX + 2];
    int64_t now_ms = (int64_t)time(NULL) * 1000, since, until;
    newrelic_creds c;
    memset(&c, 0, sizeof(c));
    if (words_arg(req, "state", k->states, &states, resp) < 0 ||
        words_arg(req, "priority", PRIORITIES, &prios, resp) < 0 ||
        time_arg(req, "since", now_ms - DEFAULT_WINDOW_S * 1000LL, &since, resp) < 0 ||
        time_arg(req, "until", now_ms, &until, resp) < 0 ||
        arg(req, "cursor", cursor, sizeof(cursor), resp) < 0 ||
        arg(req, "pages", pages_s, sizeof(pages_s), resp) < 0)
        goto out;
    int pages = pages_s[0] ? atoi(pages_s) : 1;
    if (pages < 1 || pages > PAGES_MAX || since >= until) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        pages < 1 || pages > PAGES_MAX ? "pages must be 1 to 5"
                                                       : "since must be before until");
        goto out;
    }
    if (newrelic_creds_load(w, &req->auth, &c, resp) < 0)
        goto out;
    items = cJSON_CreateArray();
    if (newrelic_issues_fetch(w, &c, incidents, states, since, until, cursor, pages, items, next,
                              sizeof(next), resp) < 0)
        goto out;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, k->field);
    for (cJSON *it = items->child; it; it = it->next) {
        const char *p = api_json_str(it, "priority");
        int keep = !prios;
        for (const cJSON *q = prios ? prios->child : NULL; q && !keep; q = q->next)
            keep = p && !strcasecmp(p, q->valuestring);
        if (keep)
            cJSON_AddItemToArray(arr, cJSON_Duplicate(it, 1));
    }
    if (next[0])
        cJSON_AddStringToObject(o, "next_cursor", next);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(items);
    cJSON_Delete(states);
    cJSON_Delete(prios);
    newrelic_creds_clear(&c);
}

static void issues_route(worker_ctx *w, http_request *req, http_response *resp)
{
    list_route(w, req, resp, 0);
}

static void incidents_route(worker_ctx *w, http_request *req, http_response *resp)
{
    list_route(w, req, resp, 1);
}

/* ---- entities and accounts ---------------------------------------------------------------------- */

static const char *const Q_ENTITIES =
    "query($q: String!, $cursor: String) { actor { entitySearch(query: $q) { count "
    "results(cursor: $cursor) { entities { guid name entityType type domain accountId } "
    "nextCursor } } } }";
static const char *const Q_ACCOUNTS = "{ actor { accounts { id name } } }";

static void entities_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char q[ENTITY_QUERY_MAX + 2], cursor[CURSOR_MAX + 2];
    int got = arg(req, "query", q, sizeof(q), resp);
    if (got < 0 || arg(req, "cursor", cursor, sizeof(cursor), resp) < 0)
        return;
    if (!got) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "query is required: an entity search query, e.g. name LIKE 'checkout'");
        return;
    }
    newrelic_creds c;
    if (newrelic_creds_load(w, &req->auth, &c, resp) < 0)
        return;
    cJSON *vars = cJSON_CreateObject(), *data = NULL;
    cJSON_AddStringToObject(vars, "q", q);
    if (cursor[0])
        cJSON_AddStringToObject(vars, "cursor", cursor);
    if (newrelic_graphql(w, &c, Q_ENTITIES, vars, &data, resp) == 0) {
        const cJSON *es = kit_json_path(data, "actor.entitySearch");
        const cJSON *list = kit_json_path(es, "results.entities");
        const char *nc = kit_json_path_string(es, "results.nextCursor");
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "entities");
        for (const cJSON *it = cJSON_IsArray(list) ? list->child : NULL; it; it = it->next)
            if (cJSON_IsObject(it) && cJSON_GetArraySize(arr) < ITEMS_MAX)
                cJSON_AddItemToArray(arr, cJSON_Duplicate(it, 1));
        const cJSON *count = cJSON_GetObjectItemCaseSensitive(es, "count");
        if (cJSON_IsNumber(count))
            cJSON_AddNumberToObject(o, "count", count->valuedouble);
        if (nc && *nc && strlen(nc) <= CURSOR_MAX)
            cJSON_AddStringToObject(o, "next_cursor", nc);
        else
            cJSON_AddNullToObject(o, "next_cursor");
        http_resp_json(resp, 200, o);
    }
    cJSON_Delete(data);
    cJSON_Delete(vars);
    newrelic_creds_clear(&c);
}

static void accounts_route(worker_ctx *w, http_request *req, http_response *resp)
{
    newrelic_creds c;
    if (newrelic_creds_load(w, &req->auth, &c, resp) < 0)
        return;
    cJSON *data = NULL;
    if (newrelic_graphql(w, &c, Q_ACCOUNTS, NULL, &data, resp) == 0) {
        const cJSON *list = kit_json_path(data, "actor.accounts");
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "accounts");
        for (const cJSON *it = cJSON_IsArray(list) ? list->child : NULL; it; it = it->next) {
            int64_t id = newrelic_account_id(cJSON_GetObjectItemCaseSensitive(it, "id"));
            const char *name = api_json_str(it, "name");
            if (!id || cJSON_GetArraySize(arr) >= ITEMS_MAX)
                continue;
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)id);
            cJSON_AddStringToObject(a, "name", name ? name : "");
            cJSON_AddItemToArray(arr, a);
        }
        http_resp_json(resp, 200, o);
    }
    cJSON_Delete(data);
    newrelic_creds_clear(&c);
}

void newrelic_api_register(void)
{
    router_add_outbound(HTTP_POST, "/newrelic/nrql", ROUTE_AUTH_API, nrql_route);
    router_add_outbound(HTTP_GET, "/newrelic/issues", ROUTE_AUTH_API, issues_route);
    router_add_outbound(HTTP_GET, "/newrelic/incidents", ROUTE_AUTH_API, incidents_route);
    router_add_outbound(HTTP_GET, "/newrelic/entities", ROUTE_AUTH_API, entities_route);
    router_add_outbound(HTTP_GET, "/newrelic/accounts", ROUTE_AUTH_API, accounts_route);
}
