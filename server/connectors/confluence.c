/* confluence.c — Confluence reads (connector guide: Atlassian), Cloud or Data
 * Center as the user connected (atlassian.h):
 *
 *   GET /confluence/page?url=…|id=…   one page: storage format and plain text
 *   GET /confluence/search?cql=…&limit=&cursor=   CQL search, one page of results
 *
 * Page URLs (confluence_url.c) must be on the connected site ("Confluence page
 * URL does not match configured base URL").  A short link (/x/…) is resolved
 * by asking the site with the user's token and following at most two
 * redirects that stay on the site; the guide says Cloud short links cannot
 * be resolved through the API, so when that fails the answer is its "Unable
 * to parse Confluence page ID from URL" with the fix.
 *
 * APIs: Cloud "Confluence REST API v2" GET /wiki/api/v2/pages/{id}
 * ?body-format=storage and v1 GET /wiki/rest/api/search (CQL; cursor in
 * _links.next), through api.atlassian.com/ex/confluence/<cloudId>; Data
 * Center "Confluence Server REST API" GET /rest/api/content/{id}?expand=
 * body.storage,version,space, GET /rest/api/content?spaceKey&title,
 * GET /rest/api/search (start/limit). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "atlassian.h"
#include "confluence.h"
#include "confluence_url.h"
#include "http_client.h"
#include "kit_call.h"
#include "log.h"
#include "router.h"

#define CQL_MAX 8192
#define URL_PARAM_MAX 4096
#define TEXT_MAX (256 * 1024)
#define SEARCH_DEFAULT 25
#define SEARCH_MAX 100
#define CURSOR_MAX 512
#define SHORT_LINK_HOPS 2

#define MSG_UNPARSABLE "Unable to parse Confluence page ID from URL"
#define FIX_UNPARSABLE "Use full page URL instead of short link (Cloud only)"
#define MSG_FOREIGN "Confluence page URL does not match configured base URL"
#define FIX_FOREIGN "Verify the page is from your connected Confluence instance"

/* ---- short links ------------------------------------------------------------------------ */

/* Location of a redirect, made absolute against the site (malloc'd), or NULL. */
static char *absolute_location(const char *loc, const char *site)
{
    if (!loc || !*loc || strlen(loc) > URL_PARAM_MAX)
        return NULL;
    if (!strncmp(loc, "https://", 8) || !strncmp(loc, "http://", 7))
        return strdup(loc);
    if (loc[0] != '/' || loc[1] == '/')
        return NULL;
    /* scheme://authority of the site */
    const char *a = strstr(site, "://");
    if (!a)
        return NULL;
    const char *e = strchr(a + 3, '/');
    size_t n = e ? (size_t)(e - site) : strlen(site);
    char *out = malloc(n + strlen(loc) + 1);
    if (out) {
        memcpy(out, site, n);
        strcpy(out + n, loc);
    }
    return out;
}

/* Follows the short link with the user's token: 0 with u a page (id or
 * DISPLAY), -1 when it did not lead to one (no resp: the caller answers). */
static int resolve_short(const atl_creds *c, const char *url, cfl_url *u)
{
    char *cur = strdup(url);
    int ok = -1;
    for (int hop = 0; cur && hop < SHORT_LINK_HOPS && ok < 0; hop++) {
        static const char *const capture[] = { "location", NULL };
        kit_call_req q = { .provider = "Confluence", .base_url = c->site_url, .url = cur,
                           .bearer = c->token, .capture = capture, .max_attempts = 1,
                           .attempt_timeout_ms = c->timeout_ms, .allow_http = c->allow_http,
                           .allow_address = c->allow_address,
                           .allow_address_ud = c->allow_address_ud, .max_response = 65536 };
        kit_call_resp r;
        (void)kit_call(&q, &r);
        char *next = NULL;
        if (r.status >= 300 && r.status < 400)
            next = absolute_location(http_client_header(&r.http, "location"), c->site_url);
        kit_call_resp_free(&r);
        free(cur);
        cur = NULL;
        if (!next)
            break;
        /* never off the site: the next hop is parsed against it first */
        cfl_url_result pr = confluence_url_parse(next, c->site_url, c->cloud, u);
        if (pr != CFL_URL_OK)
            free(next);
        else if (u->kind == CFL_SHORT_LINK)
            cur = next;
        else {
            free(next);
            ok = 0;
        }
    }
    free(cur);
    return ok;
}

/* ---- page --------------------------------------------------------------------------------- */

static void add_page(cJSON *o, const cJSON *page, const atl_creds *c)
{
    char err[64];
    const char *id = api_json_str(page, "id"), *title = api_json_str(page, "title");
    cJSON_AddStringToObject(o, "id", id ? id : "");
    cJSON_AddStringToObject(o, "title", title && api_check_text(title, "t", 0, 1024, err, sizeof(err)) == 0 ? title : "");
    const char *space = api_json_str(cJSON_GetObjectItemCaseSensitive(page, "space"), "key");
    if (space)
        cJSON_AddStringToObject(o, "space_key", space);
    const char *space_id = api_json_str(page, "spaceId");
    if (space_id)
        cJSON_AddStringToObject(o, "space_id", space_id);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(page, "version"), "number");
    if (cJSON_IsNumber(ver))
        cJSON_AddNumberToObject(o, "version", ver->valuedouble);
    const char *webui = api_json_str(cJSON_GetObjectItemCaseSensitive(page, "_links"), "webui");
    if (webui && webui[0] == '/' && strlen(webui) < 2048) {
        char url[2600];
        size_t n = strlen(c->site_url);
        while (n > 0 && c->site_url[n - 1] == '/')
            n--;
        snprintf(url, sizeof(url), "%.*s%s%s", (int)n, c->site_url,
                 c->cloud && strncmp(webui, "/wiki", 5) ? "/wiki" : "", webui);
        cJSON_AddStringToObject(o, "url", url);
    }
    const char *storage = api_json_str(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(page, "body"), "storage"),
        "value");
    cJSON_AddStringToObject(o, "body_storage", storage ? storage : "");
    char *text = confluence_storage_text(storage ? storage : "", TEXT_MAX);
    cJSON_AddStringToObject(o, "body_text", text ? text : "");
    free(text);
}

static void page_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char url[URL_PARAM_MAX + 2] = "", id[64] = "";
    int have_url = http_query_get(req, "url", url, sizeof(url));
    int have_id = http_query_get(req, "id", id, sizeof(id));
    if (have_url && strlen(url) > URL_PARAM_MAX) {
        http_resp_error(resp, 400, "BAD_REQUEST", "url is longer than %d bytes", URL_PARAM_MAX);
        return;
    }
    if (!have_url == !have_id || (have_url && !url[0])) {
        http_resp_error(resp, 400, "BAD_REQUEST", "send either url (a Confluence page URL) or id");
        return;
    }
    if (have_id && !confluence_page_id_ok(id)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "id must be a page id (1-20 digits)");
        return;
    }
    atl_creds c;
    if (atl_credentials(w, &req->auth, ATL_CONFLUENCE, 0, &c, resp) < 0)
        return;
    cfl_url u;
    memset(&u, 0, sizeof(u));
    if (have_url) {
        cfl_url_result pr = confluence_url_parse(url, c.site_url, c.cloud, &u);
        if (pr == CFL_URL_FOREIGN) {
            http_resp_error(resp, 400, "CONFLUENCE_URL_MISMATCH", MSG_FOREIGN ": " FIX_FOREIGN);
            goto out;
        }
        if (pr == CFL_URL_OK && u.kind == CFL_SHORT_LINK && resolve_short(&c, url, &u) < 0)
            pr = CFL_URL_UNPARSABLE;
        if (pr != CFL_URL_OK) {
            http_resp_error(resp, 400, "CONFLUENCE_URL_UNPARSABLE", MSG_UNPARSABLE ": " FIX_UNPARSABLE);
            goto out;
        }
    } else {
        memcpy(u.page_id, id, strlen(id) + 1); /* checked: at most CFL_PAGE_ID_MAX digits */
    }
    char path[1600];
    cJSON *j = NULL;
    const cJSON *page = NULL;
    if (u.kind == CFL_DISPLAY) {
        char *sk = http_client_escape(u.space_key), *ti = http_client_escape(u.title);
        snprintf(path, sizeof(path), "/rest/api/content?spaceKey=%s&title=%s&expand=body.storage,version,space",
                 sk ? sk : "", ti ? ti : "");
        free(sk);
        free(ti);
    } else if (c.cloud) {
        snprintf(path, sizeof(path), "/wiki/api/v2/pages/%s?body-format=storage", u.page_id);
    } else {
        snprintf(path, sizeof(path), "/rest/api/content/%s?expand=body.storage,version,space", u.page_id);
    }
    int rc = atl_call(w, &req->auth, ATL_CONFLUENCE, &c, "GET", path, NULL, "Reading the Confluence page",
                      &j, resp);
    if (rc == AUR_OK)
        page = u.kind == CFL_DISPLAY ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "results"), 0)
                                     : j;
    if (rc == AUR_NOT_FOUND || (rc == AUR_OK && !cJSON_IsObject(page))) {
        http_resp_error(resp, 404, "CONFLUENCE_PAGE_NOT_FOUND",
                        "no such Confluence page, or the connected account cannot see it");
    } else if (rc == AUR_OK) {
        cJSON *o = cJSON_CreateObject();
        add_page(o, page, &c);
        http_resp_json(resp, 200, o);
    }
    cJSON_Delete(j);
out:
    atl_creds_clear(&c);
}

/* ---- search ------------------------------------------------------------------------------ */

/* A cursor as Confluence hands it out: URL-safe characters only. */
static int cursor_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CURSOR_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("-_.~%=", s[i])))
            return 0;
    return 1;
}

/* The value of param in a _links.next reference, into out; 0 when found. */
static int next_param(const char *next, const char *param, char *out, size_t cap)
{
    const char *q = next ? strchr(next, '?') : NULL;
    size_t pl = strlen(param);
    while (q && *q) {
        q++;
        if (!strncmp(q, param, pl) && q[pl] == '=') {
            const char *v = q + pl + 1, *e = strchr(v, '&');
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n == 0 || n >= cap)
                return -1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        q = strchr(q, '&');
    }
    return -1;
}

static void search_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char cql[CQL_MAX + 2] = "", lim[16] = "", cursor[CURSOR_MAX + 2] = "";
    http_query_get(req, "cql", cql, sizeof(cql));
    http_query_get(req, "limit", lim, sizeof(lim));
    http_query_get(req, "cursor", cursor, sizeof(cursor));
    if (!cql[0] || strlen(cql) > CQL_MAX) {
        http_resp_error(resp, 400, "BAD_REQUEST", "cql is required (at most %d bytes)", CQL_MAX);
        return;
    }
    long limit = SEARCH_DEFAULT;
    if (lim[0]) {
        char *e;
        limit = strtol(lim, &e, 10);
        if (*e || limit < 1 || limit > SEARCH_MAX) {
            http_resp_error(resp, 400, "BAD_REQUEST", "limit must be between 1 and %d", SEARCH_MAX);
            return;
        }
    }
    if (cursor[0] && !cursor_ok(cursor)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "cursor is not one this API handed out");
        return;
    }
    atl_creds c;
    if (atl_credentials(w, &req->auth, ATL_CONFLUENCE, 0, &c, resp) < 0)
        return;
    char *q = http_client_escape(cql);
    size_t cap = strlen(q ? q : "") + CURSOR_MAX + 128;
    char *path = malloc(cap);
    cJSON *j = NULL;
    if (!q || !path) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    snprintf(path, cap, "%s?cql=%s&limit=%ld%s%s%s", c.cloud ? "/wiki/rest/api/search" : "/rest/api/search",
             q, limit, cursor[0] ? (c.cloud ? "&cursor=" : "&start=") : "", cursor, "");
    int rc = atl_call(w, &req->auth, ATL_CONFLUENCE, &c, "GET", path, NULL, "Searching Confluence", &j, resp);
    if (rc == AUR_NOT_FOUND)
        http_resp_error(resp, 502, "CONFLUENCE_ERROR", "Searching Confluence: the search API answered 404");
    if (rc != AUR_OK)
        goto out;
    cJSON *arr = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "results"))
    {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON *src = content ? content : it;
        cJSON *o = cJSON_CreateObject();
        const char *f;
        cJSON_AddStringToObject(o, "id", (f = api_json_str(src, "id")) ? f : "");
        cJSON_AddStringToObject(o, "type", (f = api_json_str(src, "type")) ? f : "");
        cJSON_AddStringToObject(o, "title", (f = api_json_str(src, "title")) ? f : (f = api_json_str(it, "title")) ? f : "");
        f = api_json_str(cJSON_GetObjectItemCaseSensitive(src, "space"), "key");
        if (f)
            cJSON_AddStringToObject(o, "space_key", f);
        f = api_json_str(it, "excerpt");
        char *ex = confluence_storage_text(f ? f : "", 2000);
        cJSON_AddStringToObject(o, "excerpt", ex ? ex : "");
        free(ex);
        f = api_json_str(it, "url");
        if (f && f[0] == '/') {
            char url[2600];
            size_t n = strlen(c.site_url);
            while (n > 0 && c.site_url[n - 1] == '/')
                n--;
            snprintf(url, sizeof(url), "%.*s%s%.2000s", (int)n, c.site_url,
                     c.cloud && strncmp(f, "/wiki", 5) ? "/wiki" : "", f);
            cJSON_AddStringToObject(o, "url", url);
        }
        cJSON_AddItemToArray(arr, o);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "results", arr);
    cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(arr));
    char next[CURSOR_MAX + 1];
    const char *link = api_json_str(cJSON_GetObjectItemCaseSensitive(j, "_links"), "next");
    if (link && next_param(link, c.cloud ? "cursor" : "start", next, sizeof(next)) == 0 && cursor_ok(next))
        cJSON_AddStringToObject(o, "next_cursor", next);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    http_resp_json(resp, 200, o);
out:
    free(q);
    free(path);
    cJSON_Delete(j);
    atl_creds_clear(&c);
}

void confluence_register_routes(void)
{
    router_add_outbound(HTTP_GET, "/confluence/page", ROUTE_AUTH_API, page_route);
    router_add_outbound(HTTP_GET, "/confluence/search", ROUTE_AUTH_API, search_route);
}
