/* jira.c — Jira reads and comments (connector guide: Atlassian), Cloud or
 * Data Center as the user connected (atlassian.h):
 *
 *   GET  /jira/search?jql=…&max=&fields=   JQL search over as many pages as `max` needs
 *   GET  /jira/issue/{key}                 one issue: description and recent comments as text
 *   POST /jira/issue/{key}/comment {body}  a comment — Full Access tier only
 *
 * The permission tier the user chose (PUT /jira/permissions: Read Only or Full
 * Access) is enforced here, by one gate every call goes through before any
 * request leaves: reads on both tiers, writes on Full Access only.
 *
 * APIs: Cloud "Jira Cloud platform REST API v3" — GET /rest/api/3/search/jql
 * (nextPageToken), GET /rest/api/3/issue/{key}, POST …/comment with an
 * Atlassian Document Format body — through api.atlassian.com/ex/jira/<cloudId>;
 * Data Center "Jira Server REST API v2" — GET /rest/api/2/search (startAt,
 * maxResults, total), /rest/api/2/issue/{key}, POST …/comment {"body": text}. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "atlassian.h"
#include "buf.h"
#include "http_client.h"
#include "jira.h"
#include "log.h"
#include "router.h"
#include "utf8.h"

#define JQL_MAX 8192
#define FIELDS_MAX 512
#define SEARCH_DEFAULT 50
#define SEARCH_MAX 1000
#define PAGE_MAX 100
#define KEY_MAX 64
#define COMMENT_MAX 32000 /* Jira's own limit is 32767 characters */
#define TEXT_MAX (128 * 1024)
#define ADF_DEPTH 32
#define COMMENTS_SHOWN 20
#define DEFAULT_FIELDS "summary,status,assignee,priority,issuetype,updated"

/* ---- the tier gate ------------------------------------------------------------------------- */

typedef enum { JIRA_READ = 0, JIRA_WRITE = 1 } jira_access;

/* Every Jira call passes here first: 0, or -1 with a 403 in resp. */
static int jira_gate(const atl_creds *c, jira_access want, http_response *resp)
{
    if (want == JIRA_READ || c->tier == ATL_TIER_FULL)
        return 0;
    http_resp_error(resp, 403, "JIRA_READ_ONLY",
                    "Jira is connected with the Read Only permission tier: this action needs Full "
                    "Access (choose it under Connectors > Atlassian, or PUT /jira/permissions "
                    "{\"tier\": \"full_access\"})");
    return -1;
}

/* Credentials and the gate: 0, or -1 with resp (c cleared). */
static int jira_open(worker_ctx *w, const http_request *req, jira_access want, atl_creds *c,
                     http_response *resp)
{
    if (atl_credentials(w, &req->auth, ATL_JIRA, 0, c, resp) < 0)
        return -1;
    if (jira_gate(c, want, resp) < 0) {
        atl_creds_clear(c);
        return -1;
    }
    return 0;
}

static int key_ok(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n < 3 || n > KEY_MAX || !(k[0] >= 'A' && k[0] <= 'Z'))
        return 0;
    size_t i = 1;
    while (i < n && ((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
        i++;
    if (i == n || k[i] != '-' || i + 1 == n)
        return 0;
    for (i++; i < n; i++)
        if (k[i] < '0' || k[i] > '9')
            return 0;
    return 1;
}

/* ---- Atlassian Document Format → text ---------------------------------------------------------- */

static void adf_walk(const cJSON *n, buf_t *b, int depth)
{
    if (!cJSON_IsObject(n) || depth > ADF_DEPTH || buf_pending(b) > TEXT_MAX)
        return;
    const char *type = api_json_str(n, "type");
    if (!type)
        return;
    if (!strcmp(type, "text")) {
        const char *t = api_json_str(n, "text");
        if (t)
            buf_append_str(b, t);
        return;
    }
    if (!strcmp(type, "hardBreak")) {
        buf_append_str(b, "\n");
        return;
    }
    if (!strcmp(type, "mention") || !strcmp(type, "emoji")) {
        const char *t = api_json_str(cJSON_GetObjectItemCaseSensitive(n, "attrs"), "text");
        if (t)
            buf_append_str(b, t);
        return;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, "content")) adf_walk(c, b, depth + 1);
    static const char *const blocks[] = { "paragraph", "heading", "listItem", "codeBlock",
                                          "blockquote", "rule", "tableRow", "panel", NULL };
    for (size_t i = 0; blocks[i]; i++)
        if (!strcmp(type, blocks[i])) {
            size_t len = buf_pending(b);
            if (len && buf_head(b)[len - 1] != '\n')
                buf_append_str(b, "\n");
            break;
        }
}

/* A description or comment body as text: ADF (v3) walked, a string (v2) as is. */
static char *body_text(const cJSON *v)
{
    buf_t b;
    buf_init(&b);
    if (cJSON_IsString(v))
        buf_append_str(&b, v->valuestring);
    else
        adf_walk(v, &b, 0);
    size_t n = buf_pending(&b);
    while (n > 0 && buf_head(&b)[n - 1] == '\n')
        n--;
    if (n > TEXT_MAX)
        n = utf8_complete_prefix(buf_head(&b), TEXT_MAX);
    char *out = strndup(buf_head(&b), n);
    buf_free(&b);
    return out;
}

/* {"type": "doc", "version": 1, "content": [paragraphs]}: one paragraph per
 * line of text (ADF has no newline in a text node). */
static cJSON *adf_doc(const char *text)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "type", "doc");
    cJSON_AddNumberToObject(doc, "version", 1);
    cJSON *content = cJSON_AddArrayToObject(doc, "content");
    const char *p = text;
    for (;;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        cJSON *para = cJSON_CreateObject();
        cJSON_AddStringToObject(para, "type", "paragraph");
        if (n > 0) {
            cJSON *pc = cJSON_AddArrayToObject(para, "content");
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "type", "text");
            char *line = strndup(p, n);
            cJSON_AddStringToObject(t, "text", line ? line : "");
            free(line);
            cJSON_AddItemToArray(pc, t);
        }
        cJSON_AddItemToArray(content, para);
        if (!e)
            break;
        p = e + 1;
    }
    return doc;
}

/* ---- issues ------------------------------------------------------------------------------------- */

static void add_name(cJSON *o, const char *key, const cJSON *obj, const char *field)
{
    const char *v = api_json_str(obj, field);
    if (v)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *issue_summary(const cJSON *is, const atl_creds *c)
{
    const char *key = api_json_str(is, "key");
    if (!key_ok(key))
        return NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(is, "fields");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    add_name(o, "id", is, "id");
    add_name(o, "summary", f, "summary");
    add_name(o, "status", cJSON_GetObjectItemCaseSensitive(f, "status"), "name");
    add_name(o, "issuetype", cJSON_GetObjectItemCaseSensitive(f, "issuetype"), "name");
    add_name(o, "priority", cJSON_GetObjectItemCaseSensitive(f, "priority"), "name");
    add_name(o, "assignee", cJSON_GetObjectItemCaseSensitive(f, "assignee"), "displayName");
    add_name(o, "updated", f, "updated");
    char url[1200];
    size_t n = strlen(c->site_url);
    while (n > 0 && c->site_url[n - 1] == '/')
        n--;
    snprintf(url, sizeof(url), "%.*s/browse/%s", (int)n, c->site_url, key);
    cJSON_AddStringToObject(o, "url", url);
    return o;
}

static int fields_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FIELDS_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == ',' || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

static void search_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char jql[JQL_MAX + 2] = "", max_s[16] = "", fields[FIELDS_MAX + 2] = "";
    http_query_get(req, "jql", jql, sizeof(jql));
    http_query_get(req, "max", max_s, sizeof(max_s));
    http_query_get(req, "fields", fields, sizeof(fields));
    if (!jql[0] || strlen(jql) > JQL_MAX) {
        http_resp_error(resp, 400, "BAD_REQUEST", "jql is required (at most %d bytes)", JQL_MAX);
        return;
    }
    long max = SEARCH_DEFAULT;
    if (max_s[0]) {
        char *e;
        max = strtol(max_s, &e, 10);
        if (*e || max < 1 || max > SEARCH_MAX) {
            http_resp_error(resp, 400, "BAD_REQUEST", "max must be between 1 and %d", SEARCH_MAX);
            return;
        }
    }
    if (fields[0] && !fields_ok(fields)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "fields must be a comma-separated list of field ids");
        return;
    }
    atl_creds c;
    if (jira_open(w, req, JIRA_READ, &c, resp) < 0)
        return;
    char *q = http_client_escape(jql);
    cJSON *arr = cJSON_CreateArray();
    char token[1024] = "";
    long start = 0;
    int truncated = 0, failed = 0, pages = 0;
    size_t cap = (q ? strlen(q) : 0) + 2048 + 3 * sizeof(token); /* an escaped nextPageToken */
    char *path = malloc(cap);
    while (q && path && !failed) {
        long want = max - cJSON_GetArraySize(arr);
        if (want <= 0)
            break;
        long page = want < PAGE_MAX ? want : PAGE_MAX;
        char *tok = token[0] ? http_client_escape(token) : NULL;
        if (c.cloud)
            snprintf(path, cap, "/rest/api/3/search/jql?jql=%s&maxResults=%ld&fields=%s%s%s", q, page,
                     fields[0] ? fields : DEFAULT_FIELDS, tok ? "&nextPageToken=" : "", tok ? tok : "");
        else
            snprintf(path, cap, "/rest/api/2/search?jql=%s&startAt=%ld&maxResults=%ld&fields=%s", q, start,
                     page, fields[0] ? fields : DEFAULT_FIELDS);
        free(tok);
        cJSON *j = NULL;
        int rc = atl_call(w, &req->auth, ATL_JIRA, &c, "GET", path, NULL, "Searching Jira", &j, resp);
        if (rc != AUR_OK) {
            if (rc == AUR_NOT_FOUND)
                http_resp_error(resp, 502, "JIRA_ERROR", "Searching Jira: the search API answered 404");
            failed = 1;
            break;
        }
        const cJSON *issues = cJSON_GetObjectItemCaseSensitive(j, "issues"), *it;
        int got = cJSON_GetArraySize(issues);
        cJSON_ArrayForEach(it, issues)
        {
            if (cJSON_GetArraySize(arr) >= max)
                break;
            cJSON *o = issue_summary(it, &c);
            if (o)
                cJSON_AddItemToArray(arr, o);
        }
        pages++;
        int more;
        if (c.cloud) {
            const char *next = api_json_str(j, "nextPageToken");
            more = next && *next && strlen(next) < sizeof(token) &&
                   !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "isLast")) && strcmp(next, token);
            if (more)
                snprintf(token, sizeof(token), "%s", next);
        } else {
            int64_t total = 0;
            (void)api_json_int64(cJSON_GetObjectItemCaseSensitive(j, "total"), &total);
            start += got;
            more = got > 0 && start < total;
        }
        cJSON_Delete(j);
        if (!more || got == 0)
            break;
        if (cJSON_GetArraySize(arr) >= max) {
            truncated = 1;
            break;
        }
        if (pages >= SEARCH_MAX / 10) {
            truncated = 1;
            break;
        }
    }
    if (!failed) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(arr));
        cJSON_AddItemToObject(o, "issues", arr);
        arr = NULL;
        cJSON_AddBoolToObject(o, "truncated", truncated);
        http_resp_json(resp, 200, o);
    }
    cJSON_Delete(arr);
    free(q);
    free(path);
    atl_creds_clear(&c);
}

static void issue_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *key = http_param(req, "key");
    if (!key_ok(key)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "not a Jira issue key (PROJECT-123)");
        return;
    }
    atl_creds c;
    if (jira_open(w, req, JIRA_READ, &c, resp) < 0)
        return;
    char path[256];
    snprintf(path, sizeof(path),
             "/rest/api/%d/issue/%s?fields=summary,status,description,assignee,reporter,priority,"
             "issuetype,created,updated,labels,comment",
             c.cloud ? 3 : 2, key);
    cJSON *j = NULL;
    int rc = atl_call(w, &req->auth, ATL_JIRA, &c, "GET", path, NULL, "Reading the Jira issue", &j, resp);
    if (rc == AUR_NOT_FOUND)
        http_resp_error(resp, 404, "JIRA_ISSUE_NOT_FOUND", "no such Jira issue, or the connected account cannot see it");
    if (rc == AUR_OK) {
        cJSON *o = issue_summary(j, &c);
        if (!o) {
            http_resp_error(resp, 502, "JIRA_ERROR", "Jira answered an issue without a key");
        } else {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "fields");
            char *d = body_text(cJSON_GetObjectItemCaseSensitive(f, "description"));
            cJSON_AddStringToObject(o, "description", d ? d : "");
            free(d);
            add_name(o, "reporter", cJSON_GetObjectItemCaseSensitive(f, "reporter"), "displayName");
            add_name(o, "created", f, "created");
            cJSON *labels = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(f, "labels"), 1);
            cJSON_AddItemToObject(o, "labels", cJSON_IsArray(labels) ? labels : cJSON_CreateArray());
            if (!cJSON_IsArray(labels))
                cJSON_Delete(labels);
            cJSON *comments = cJSON_AddArrayToObject(o, "comments");
            const cJSON *all = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f, "comment"), "comments");
            int n = cJSON_GetArraySize(all);
            for (int i = n > COMMENTS_SHOWN ? n - COMMENTS_SHOWN : 0; i < n; i++) {
                const cJSON *cm = cJSON_GetArrayItem(all, i);
                cJSON *x = cJSON_CreateObject();
                add_name(x, "id", cm, "id");
                add_name(x, "author", cJSON_GetObjectItemCaseSensitive(cm, "author"), "displayName");
                add_name(x, "created", cm, "created");
                char *t = body_text(cJSON_GetObjectItemCaseSensitive(cm, "body"));
                cJSON_AddStringToObject(x, "body", t ? t : "");
                free(t);
                cJSON_AddItemToArray(comments, x);
            }
            http_resp_json(resp, 200, o);
        }
    }
    cJSON_Delete(j);
    atl_creds_clear(&c);
}

static void comment_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *key = http_param(req, "key");
    if (!key_ok(key)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "not a Jira issue key (PROJECT-123)");
        return;
    }
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *text = api_json_str(body, "body");
    atl_creds c;
    memset(&c, 0, sizeof(c));
    cJSON *j = NULL;
    char *payload = NULL;
    /* multi-line text is fine (one paragraph per line); only size and UTF-8 are checked */
    if (!text || !*text || strlen(text) > COMMENT_MAX || !utf8_valid(text, strlen(text))) {
        http_resp_error(resp, 400, "BAD_REQUEST", "body must be the comment's text (1-%d bytes)", COMMENT_MAX);
        goto out;
    }
    if (jira_open(w, req, JIRA_WRITE, &c, resp) < 0)
        goto out;
    cJSON *pb = cJSON_CreateObject();
    if (c.cloud)
        cJSON_AddItemToObject(pb, "body", adf_doc(text));
    else
        cJSON_AddStringToObject(pb, "body", text);
    payload = cJSON_PrintUnformatted(pb);
    cJSON_Delete(pb);
    char path[160];
    snprintf(path, sizeof(path), "/rest/api/%d/issue/%s/comment", c.cloud ? 3 : 2, key);
    int rc = payload ? atl_call(w, &req->auth, ATL_JIRA, &c, "POST", path, payload,
                                "Commenting on the Jira issue", &j, resp)
                     : AUR_E_INTERNAL;
    if (rc == AUR_NOT_FOUND)
        http_resp_error(resp, 404, "JIRA_ISSUE_NOT_FOUND", "no such Jira issue, or the connected account cannot see it");
    else if (rc == AUR_OK) {
        log_info("jira: comment added to %s by user %s", key, req->auth.user_id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", key);
        add_name(o, "id", j, "id");
        add_name(o, "created", j, "created");
        http_resp_json(resp, 201, o);
    } else if (!payload)
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
out:
    free(payload);
    cJSON_Delete(j);
    cJSON_Delete(body);
    atl_creds_clear(&c);
}

void jira_register_routes(void)
{
    router_add_outbound(HTTP_GET, "/jira/search", ROUTE_AUTH_API, search_route);
    router_add_outbound(HTTP_GET, "/jira/issue/{key}", ROUTE_AUTH_API, issue_route);
    router_add_outbound(HTTP_POST, "/jira/issue/{key}/comment", ROUTE_AUTH_API, comment_route);
}
