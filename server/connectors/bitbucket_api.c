/* bitbucket_api.c — Bitbucket Cloud reads as the connected user (REST API
 * 2.0, developer.atlassian.com/cloud/bitbucket/rest):
 *
 *   GET /bitbucket/workspaces?max=                         GET /workspaces
 *   GET /bitbucket/repositories?workspace=&max=            GET /repositories/{workspace}?role=member
 *   GET /bitbucket/repositories/{workspace}/{repo_slug}/pullrequests?state=&max=
 *   GET /bitbucket/repositories/{workspace}/{repo_slug}/pullrequests/{id}
 *
 * Lists are Bitbucket's paged responses ({values, next}): the `next` URL is
 * followed while more is wanted, and only when it lies under
 * BITBUCKET_API_BASE_URL (kit_call refuses anything else: the token never
 * leaves for a host an answer names).  A 401 refreshes the token once. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "bitbucket.h"
#include "http_client.h"
#include "kit_call.h"
#include "log.h"
#include "router.h"
#include "secret.h"

#define BB_MAX_DEFAULT 100
#define BB_MAX 1000
#define BB_PAGELEN 50
#define BB_NAME_MAX 128

static const kit_call_errors bb_errors = {
    .service = "Bitbucket API", .timeout = "BITBUCKET_TIMEOUT",
    .unreachable = "BITBUCKET_UNREACHABLE", .denied = "BITBUCKET_DENIED", .failed = "BITBUCKET_ERROR",
};

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > BB_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return 0;
    return strcmp(s, ".") && strcmp(s, "..");
}

/* GET url with the caller's token, retried once with a fresh token on 401.
 * AUR_OK with *json; AUR_NOT_FOUND (resp untouched); else resp filled. */
static int bb_get(worker_ctx *w, const auth_ctx *who, const char *base, const char *url, char **token,
                  cJSON **json, http_response *resp)
{
    *json = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!*token && !(*token = bb_access_token(w, who, attempt > 0, resp)))
            return AUR_E_DENIED;
        kit_call_req q = { .provider = "Bitbucket", .base_url = base, .url = url, .bearer = *token,
                           .attempt_timeout_ms = bb_timeout_ms(w), .max_response = 8 * 1024 * 1024 };
        kit_call_resp r;
        char need[32];
        int rc = kit_call(&q, &r);
        if (r.status == 401 && attempt == 0) {
            kit_call_resp_free(&r);
            secret_free(*token);
            *token = NULL;
            continue;
        }
        if (rc == AUR_OK) {
            *json = kit_call_json(&r);
            if (!cJSON_IsObject(*json)) {
                cJSON_Delete(*json);
                *json = NULL;
                http_resp_error(resp, 502, "BITBUCKET_ERROR", "Bitbucket answered something that is not a JSON object");
                rc = AUR_E_INTERNAL;
            }
        } else if (r.status == 404) {
            rc = AUR_NOT_FOUND;
        } else if (rc == AUR_E_INVALID && r.status == 0) {
            http_resp_error(resp, 502, "BITBUCKET_ERROR",
                            "Bitbucket named a next page outside BITBUCKET_API_BASE_URL: not followed");
        } else if (r.status == 401) {
            http_resp_error(resp, 401, "BITBUCKET_CREDENTIALS_EXPIRED",
                            "Bitbucket credentials expired: reconnect via the Connectors page");
        } else if (bb_scope_missing(&r, need, sizeof(need))) {
            /* the guide's consumer: Repositories and Pull requests (Read) */
            if (!strcmp(need, "account"))
                http_resp_error(resp, 403, "BITBUCKET_SCOPE_MISSING",
                                "The Bitbucket OAuth consumer lacks the Account (Read) permission "
                                "this needs: add it to the consumer and reconnect, or name the "
                                "workspace (/bitbucket/repositories?workspace=<slug>)");
            else
                http_resp_error(resp, 403, "BITBUCKET_SCOPE_MISSING",
                                "The Bitbucket OAuth consumer lacks the %s permission this needs "
                                "(the guide's: Repositories (Read), Pull requests (Read)): add it "
                                "to the consumer and reconnect", bb_permission_name(need));
        } else {
            kit_call_error(&bb_errors, &r, "Reading Bitbucket", 0, NULL, resp);
        }
        kit_call_resp_free(&r);
        return rc;
    }
    return AUR_E_DENIED;
}

typedef cJSON *(*item_fn)(const cJSON *v);

/* Pages of {values, next} from first until max items; {<key>: [...], count, truncated}. */
static void list_pages(worker_ctx *w, http_request *req, const char *path, const char *key, long max,
                       item_fn fn, http_response *resp)
{
    const char *base = bb_api_base(w, resp);
    if (!base)
        return;
    char *url = kit_url(base, path);
    char *token = NULL;
    cJSON *arr = cJSON_CreateArray();
    int truncated = 0, ok = 1, pages = 0;
    while (url) {
        cJSON *j = NULL;
        int rc = bb_get(w, &req->auth, base, url, &token, &j, resp);
        free(url);
        url = NULL;
        if (rc == AUR_NOT_FOUND)
            http_resp_error(resp, 404, "BITBUCKET_NOT_FOUND", "no such Bitbucket workspace or repository, or no access to it");
        if (rc != AUR_OK) {
            ok = 0;
            break;
        }
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "values"))
        {
            if (cJSON_GetArraySize(arr) >= max) {
                truncated = 1;
                break;
            }
            cJSON *o = fn(v);
            if (o)
                cJSON_AddItemToArray(arr, o);
        }
        const char *next = api_json_str(j, "next");
        if (next && *next && !truncated) {
            if (cJSON_GetArraySize(arr) >= max)
                truncated = 1;
            else if (++pages < 100)
                url = strdup(next);
            else
                truncated = 1;
        }
        cJSON_Delete(j);
    }
    if (ok) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(arr));
        cJSON_AddItemToObject(o, key, arr);
        arr = NULL;
        cJSON_AddBoolToObject(o, "truncated", truncated);
        http_resp_json(resp, 200, o);
    }
    cJSON_Delete(arr);
    secret_free(token);
}

static int max_param(http_request *req, long *max, http_response *resp)
{
    char s[16] = "";
    *max = BB_MAX_DEFAULT;
    if (http_query_get(req, "max", s, sizeof(s)) && s[0]) {
        char *e;
        *max = strtol(s, &e, 10);
        if (*e || *max < 1 || *max > BB_MAX) {
            http_resp_error(resp, 400, "BAD_REQUEST", "max must be between 1 and %d", BB_MAX);
            return -1;
        }
    }
    return 0;
}

static void add_str(cJSON *o, const char *key, const cJSON *from, const char *field)
{
    const char *v = api_json_str(from, field);
    if (v)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static const char *html_link(const cJSON *v)
{
    return api_json_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "links"), "html"), "href");
}

static cJSON *workspace_item(const cJSON *v)
{
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(v, "workspace");
    const cJSON *src = ws ? ws : v;
    cJSON *o = cJSON_CreateObject();
    add_str(o, "slug", src, "slug");
    add_str(o, "name", src, "name");
    add_str(o, "uuid", src, "uuid");
    return o;
}

static cJSON *repo_item(const cJSON *v)
{
    cJSON *o = cJSON_CreateObject();
    add_str(o, "full_name", v, "full_name");
    add_str(o, "slug", v, "slug");
    add_str(o, "name", v, "name");
    cJSON_AddBoolToObject(o, "is_private", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "is_private")));
    add_str(o, "updated_on", v, "updated_on");
    add_str(o, "main_branch", cJSON_GetObjectItemCaseSensitive(v, "mainbranch"), "name");
    const char *h = html_link(v);
    if (h)
        cJSON_AddStringToObject(o, "html_url", h);
    return o;
}

static cJSON *pr_item(const cJSON *v)
{
    cJSON *o = cJSON_CreateObject();
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
    if (cJSON_IsNumber(id))
        cJSON_AddNumberToObject(o, "id", id->valuedouble);
    add_str(o, "title", v, "title");
    add_str(o, "state", v, "state");
    add_str(o, "author", cJSON_GetObjectItemCaseSensitive(v, "author"), "display_name");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "source"), "branch");
    const cJSON *dst = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "destination"), "branch");
    add_str(o, "source_branch", src, "name");
    add_str(o, "destination_branch", dst, "name");
    add_str(o, "created_on", v, "created_on");
    add_str(o, "updated_on", v, "updated_on");
    const char *h = html_link(v);
    if (h)
        cJSON_AddStringToObject(o, "html_url", h);
    return o;
}

static void workspaces_route(worker_ctx *w, http_request *req, http_response *resp)
{
    long max;
    if (max_param(req, &max, resp) < 0)
        return;
    char path[64];
    snprintf(path, sizeof(path), "/workspaces?pagelen=%d", BB_PAGELEN);
    list_pages(w, req, path, "workspaces", max, workspace_item, resp);
}

static void repos_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char ws[BB_NAME_MAX + 2] = "";
    long max;
    http_query_get(req, "workspace", ws, sizeof(ws));
    if (!name_ok(ws)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "workspace must be a workspace slug ([A-Za-z0-9._-], 1-128)");
        return;
    }
    if (max_param(req, &max, resp) < 0)
        return;
    char path[256];
    snprintf(path, sizeof(path), "/repositories/%s?role=member&pagelen=%d", ws, BB_PAGELEN);
    list_pages(w, req, path, "repositories", max, repo_item, resp);
}

/* workspace and repo_slug of the path: 0, or -1 with a 400. */
static int repo_params(http_request *req, const char **ws, const char **slug, http_response *resp)
{
    *ws = http_param(req, "workspace");
    *slug = http_param(req, "repo_slug");
    if (!name_ok(*ws) || !name_ok(*slug)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "workspace and repo_slug must be [A-Za-z0-9._-], 1-128");
        return -1;
    }
    return 0;
}

static void prs_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *ws, *slug;
    long max;
    if (repo_params(req, &ws, &slug, resp) < 0 || max_param(req, &max, resp) < 0)
        return;
    char state[16] = "";
    http_query_get(req, "state", state, sizeof(state));
    static const char *const states[] = { "", "OPEN", "MERGED", "DECLINED", "SUPERSEDED", NULL };
    int ok = 0;
    for (size_t i = 0; states[i]; i++)
        ok |= !strcmp(state, states[i]);
    if (!ok) {
        http_resp_error(resp, 400, "BAD_REQUEST", "state must be OPEN, MERGED, DECLINED or SUPERSEDED");
        return;
    }
    char path[512];
    snprintf(path, sizeof(path), "/repositories/%s/%s/pullrequests?pagelen=%d%s%s", ws, slug, BB_PAGELEN,
             state[0] ? "&state=" : "", state);
    list_pages(w, req, path, "pullrequests", max, pr_item, resp);
}

static void pr_route(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *ws, *slug, *id = http_param(req, "id");
    if (repo_params(req, &ws, &slug, resp) < 0)
        return;
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 12 || strspn(id, "0123456789") != n) {
        http_resp_error(resp, 400, "BAD_REQUEST", "id must be a pull request number");
        return;
    }
    const char *base = bb_api_base(w, resp);
    if (!base)
        return;
    char path[512];
    snprintf(path, sizeof(path), "/repositories/%s/%s/pullrequests/%s", ws, slug, id);
    char *url = kit_url(base, path), *token = NULL;
    cJSON *j = NULL;
    int rc = url ? bb_get(w, &req->auth, base, url, &token, &j, resp) : AUR_E_INTERNAL;
    if (rc == AUR_NOT_FOUND)
        http_resp_error(resp, 404, "BITBUCKET_NOT_FOUND", "no such pull request, or no access to it");
    else if (rc == AUR_OK) {
        cJSON *o = pr_item(j);
        add_str(o, "description", j, "description");
        const cJSON *cc = cJSON_GetObjectItemCaseSensitive(j, "comment_count");
        if (cJSON_IsNumber(cc))
            cJSON_AddNumberToObject(o, "comment_count", cc->valuedouble);
        http_resp_json(resp, 200, o);
    } else if (!url)
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
    free(url);
    cJSON_Delete(j);
    secret_free(token);
}

void bb_api_register(void)
{
    router_add_outbound(HTTP_GET, "/bitbucket/workspaces", ROUTE_AUTH_API, workspaces_route);
    router_add_outbound(HTTP_GET, "/bitbucket/repositories", ROUTE_AUTH_API, repos_route);
    router_add_outbound(HTTP_GET, "/bitbucket/repositories/{workspace}/{repo_slug}/pullrequests",
                        ROUTE_AUTH_API, prs_route);
    router_add_outbound(HTTP_GET, "/bitbucket/repositories/{workspace}/{repo_slug}/pullrequests/{id}",
                        ROUTE_AUTH_API, pr_route);
}
