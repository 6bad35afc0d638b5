/* datadog_api.c — the Datadog connector's read API (outbound pool; the
 * caller's stored keys, site or AURORA_DATADOG_BASE_URL):
 *
 *   GET /datadog/monitors?name=&tags=&monitor_tags=&group_states=&page=&page_size=
 *       Datadog "Get all monitor details" (GET /api/v1/monitor): one page of
 *       monitors (page from 0, page_size 1–1000, default 100) with the same
 *       filters; next_page is null after a short page.
 *   GET /datadog/events?from=&to=&query=&limit=&cursor=
 *       Datadog "Get a list of events" (GET /api/v2/events): the events of a
 *       time window (filter[from] / filter[to]: "now-1h", ISO 8601 or epoch
 *       milliseconds; default the last hour), newest first, up to limit (1–1000,
 *       default 100) over as many pages (page[limit] at most 100) as that
 *       takes (meta.page.after → page[cursor]), at most EVENTS_PAGES_MAX,
 *       ending at a page that adds no event; next_cursor continues.
 * Every URL stays under the configured base (kit_call's confinement: a
 * hostile cursor cannot send the keys elsewhere); answers are bounded. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "connector.h"
#include "datadog.h"
#include "kit_call.h"
#include "log.h"
#include "router.h"

#define MONITOR_PAGE_MAX 1000 /* Datadog's page_size limit */
#define MONITOR_PAGE_DEFAULT 100
#define EVENTS_LIMIT_MAX 1000
#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_PAGE 100
/* Pages one request walks: twice what the largest limit needs in full
 * pages; a Datadog answering short pages gets next_cursor to go on with. */
#define EVENTS_PAGES_MAX (2 * ((EVENTS_LIMIT_MAX + EVENTS_PAGE - 1) / EVENTS_PAGE))
#define CURSOR_MAX 1024
#define MAX_RESPONSE (8 * 1024 * 1024)

static const kit_call_errors api_errors = {
    .service = "Datadog API",
    .timeout = "DATADOG_TIMEOUT",
    .unreachable = "DATADOG_UNREACHABLE",
    .denied = "DATADOG_DENIED",
    .failed = "DATADOG_ERROR",
};

/* A query argument: absent (0), or present and acceptable (1) — at most max
 * bytes of printable ASCII from `extra` beyond letters and digits — else -1
 * with a 400 naming it. */
static int arg(const http_request *req, const char *name, char *out, size_t cap,
               const char *extra, http_response *resp)
{
    int got = http_query_get(req, name, out, cap);
    if (got <= 0) {
        out[0] = '\0';
        return 0;
    }
    size_t n = strlen(out);
    int ok = n > 0 && n + 1 < cap;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)out[i]) || (out[i] != '\0' && strchr(extra, out[i]));
    if (!ok) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s is not valid (at most %zu characters of "
                        "letters, digits and \"%s\")", name, cap - 2, extra);
        return -1;
    }
    return 1;
}

static int int_arg(const http_request *req, const char *name, long lo, long hi, long def,
                   long *out, http_response *resp)
{
    char buf[16];
    int got = arg(req, name, buf, sizeof(buf), "", resp);
    if (got < 0)
        return -1;
    *out = def;
    if (!got)
        return 0;
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end || v < lo || v > hi) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be an integer from %ld to %ld", name,
                        lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* url with name=value added (value encoded); frees url.  NULL on OOM. */
static char *with(char *url, const char *name, const char *value)
{
    if (!url || !value || !*value)
        return url;
    char *u = kit_url_with_param(url, name, value);
    free(url);
    return u;
}

static void copy_item(cJSON *to, const cJSON *from, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(from, key);
    if (it)
        cJSON_AddItemToObject(to, key, cJSON_Duplicate(it, 1));
}

/* ---- monitors ------------------------------------------------------------------------------ */

static cJSON *monitor_summary(const cJSON *m)
{
    static const char *const keys[] = { "id",      "name", "type",          "query",
                                        "message", "tags", "overall_state", "priority",
                                        "created", "modified" };
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < sizeof(keys) / sizeof(keys[0]); i++)
        copy_item(o, m, keys[i]);
    return o;
}

static void monitors_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char name[258], tags[514], mtags[514], states[66];
    long page, size;
    if (arg(req, "name", name, sizeof(name), " -_.:/*()[]#@,'", resp) < 0 ||
        arg(req, "tags", tags, sizeof(tags), "-_.:/,*", resp) < 0 ||
        arg(req, "monitor_tags", mtags, sizeof(mtags), "-_.:/,*", resp) < 0 ||
        arg(req, "group_states", states, sizeof(states), " ,", resp) < 0 ||
        int_arg(req, "page", 0, 100000, 0, &page, resp) < 0 ||
        int_arg(req, "page_size", 1, MONITOR_PAGE_MAX, MONITOR_PAGE_DEFAULT, &size, resp) < 0)
        return;
    datadog_creds c;
    if (datadog_creds_load(w, &req->auth, &c, resp) < 0)
        return;
    char num[24], sz[24];
    snprintf(num, sizeof(num), "%ld", page);
    snprintf(sz, sizeof(sz), "%ld", size);
    char *url = kit_url(c.base, "/api/v1/monitor");
    url = with(url, "name", name);
    url = with(url, "tags", tags);
    url = with(url, "monitor_tags", mtags);
    url = with(url, "group_states", states);
    url = with(url, "page", num);
    url = with(url, "page_size", sz);
    if (!url) {
        datadog_creds_clear(&c);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    const char *headers[] = { "Accept: application/json", c.api_key_header, c.app_key_header,
                              NULL };
    long timeout = datadog_timeout_ms(w);
    kit_call_req q = { .provider = "Datadog API", .base_url = c.base, .url = url,
                       .headers = headers, .attempt_timeout_ms = timeout,
                       .max_response = MAX_RESPONSE };
    kit_call_resp r;
    int rc = kit_call(&q, &r);
    datadog_creds_clear(&c);
    free(url);
    cJSON *j = rc == AUR_OK ? kit_call_json(&r) : NULL;
    if (rc != AUR_OK || !cJSON_IsArray(j)) {
        if (rc == AUR_OK)
            http_resp_error(resp, 502, "DATADOG_ERROR",
                            "Datadog API answered /api/v1/monitor without a monitor list");
        else
            kit_call_error(&api_errors, &r, "listing monitors", timeout, "", resp);
        cJSON_Delete(j);
        kit_call_resp_free(&r);
        return;
    }
    kit_call_resp_free(&r);
    cJSON *o = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(o, "monitors");
    const cJSON *m;
    int n = 0;
    cJSON_ArrayForEach(m, j)
    {
        if (n >= size) /* never more than asked, whatever came back */
            break;
        if (cJSON_IsObject(m)) {
            cJSON_AddItemToArray(list, monitor_summary(m));
            n++;
        }
    }
    cJSON_AddNumberToObject(o, "page", (double)page);
    cJSON_AddNumberToObject(o, "page_size", (double)size);
    cJSON_AddNumberToObject(o, "count", n);
    if (cJSON_GetArraySize(j) >= size)
        cJSON_AddNumberToObject(o, "next_page", (double)(page + 1));
    else
        cJSON_AddNullToObject(o, "next_page");
    cJSON_Delete(j);
    http_resp_json(resp, 200, o);
}

/* ---- events ----------------------------------------------------------------------------------- */

static cJSON *event_summary(const cJSON *e)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "attributes");
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(at, "attributes");
    cJSON *o = cJSON_CreateObject();
    copy_item(o, e, "id");
    copy_item(o, at, "timestamp");
    copy_item(o, at, "message");
    copy_item(o, at, "tags");
    static const char *const more[] = { "title", "status", "priority", "service",
                                        "aggregation_key", "source_type_name" };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
        copy_item(o, inner, more[i]);
    return o;
}

/* One page of events into list, every one of them: the page asked for no
 * more than is still wanted, and an answer with more (its cursor after them
 * all) must not lose the rest, which no cursor could reach again.  The next
 * cursor into after ("" when none); *progress 0 when the page added no
 * event.  0, or -1 when the page is not an event list or its cursor is
 * unusable. */
static int events_page(const kit_call_resp *page, cJSON *list, long *n, char *after, size_t cap,
                       int *progress)
{
    long before = *n;
    cJSON *j = kit_call_json(page);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    const char *next = kit_json_path_string(j, "meta.page.after");
    if (!cJSON_IsArray(data) || (next && strlen(next) >= cap)) {
        cJSON_Delete(j);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, data)
    {
        if (cJSON_IsObject(e)) {
            cJSON_AddItemToArray(list, event_summary(e));
            (*n)++;
        }
    }
    /* A page with a cursor but nothing taken from it (empty, or no event
     * objects: a hostile or broken answer) would never end the walk: it
     * ends it, its cursor kept only when the page had entries. */
    snprintf(after, cap, "%s", next && cJSON_GetArraySize(data) > 0 ? next : "");
    if (*n == before)
        *progress = 0;
    cJSON_Delete(j);
    return 0;
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char from[66], to[66], query[1026], cursor[CURSOR_MAX + 2];
    long limit;
    if (arg(req, "from", from, sizeof(from), "-+:._", resp) < 0 ||
        arg(req, "to", to, sizeof(to), "-+:._", resp) < 0 ||
        arg(req, "query", query, sizeof(query), " -_.:/,*()\"'@#!<>=[]{}", resp) < 0 ||
        arg(req, "cursor", cursor, sizeof(cursor), "-_=+/.", resp) < 0 ||
        int_arg(req, "limit", 1, EVENTS_LIMIT_MAX, EVENTS_LIMIT_DEFAULT, &limit, resp) < 0)
        return;
    datadog_creds c;
    if (datadog_creds_load(w, &req->auth, &c, resp) < 0)
        return;
    char *first = kit_url(c.base, "/api/v2/events");
    first = with(first, "filter[query]", query);
    first = with(first, "filter[from]", from[0] ? from : "now-1h");
    first = with(first, "filter[to]", to[0] ? to : "now");
    first = with(first, "sort", "-timestamp");
    cJSON *list = cJSON_CreateArray();
    if (!first || !list) {
        free(first);
        cJSON_Delete(list);
        datadog_creds_clear(&c);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    const char *headers[] = { "Accept: application/json", c.api_key_header, c.app_key_header,
                              NULL };
    long timeout = datadog_timeout_ms(w);
    /* Datadog's cursor pagination (meta.page.after → page[cursor]), walked
     * here rather than by kit_pager: a walk must start from the caller's
     * cursor, and the kit's pager adds each cursor to the first URL.  Each
     * page asks for no more than is still wanted, and every event of a page
     * is kept (a Datadog that answers more than asked included), so the
     * cursor returned skips nothing. */
    long n = 0;
    int pages = 0, failed = 0, progress = 1;
    while (!failed && progress && n < limit && pages < EVENTS_PAGES_MAX &&
           (pages == 0 || cursor[0])) {
        char psize[24];
        long want = limit - n < EVENTS_PAGE ? limit - n : (long)EVENTS_PAGE;
        snprintf(psize, sizeof(psize), "%ld", want);
        char *url = kit_url_with_param(first, "page[limit]", psize);
        if (url && cursor[0])
            url = with(url, "page[cursor]", cursor);
        if (!url) {
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
            failed = 1;
            break;
        }
        kit_call_req q = { .provider = "Datadog API", .base_url = c.base, .url = url,
                           .headers = headers, .attempt_timeout_ms = timeout,
                           .max_response = MAX_RESPONSE };
        kit_call_resp r;
        int rc = kit_call(&q, &r);
        free(url);
        if (rc != AUR_OK) {
            kit_call_error(&api_errors, &r, "listing events", timeout, "", resp);
            failed = 1;
        } else if (events_page(&r, list, &n, cursor, sizeof(cursor), &progress) < 0) {
            http_resp_error(resp, 502, "DATADOG_ERROR",
                            "Datadog API answered /api/v2/events without an event list");
            failed = 1;
        }
        kit_call_resp_free(&r);
        pages++;
    }
    datadog_creds_clear(&c);
    free(first);
    if (failed) {
        cJSON_Delete(list);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "events", list);
    cJSON_AddNumberToObject(o, "count", (double)n);
    cJSON_AddNumberToObject(o, "pages", pages);
    cJSON_AddStringToObject(o, "from", from[0] ? from : "now-1h");
    cJSON_AddStringToObject(o, "to", to[0] ? to : "now");
    if (cursor[0])
        cJSON_AddStringToObject(o, "next_cursor", cursor);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    http_resp_json(resp, 200, o);
}

void datadog_api_register(void)
{
    router_add_outbound(HTTP_GET, "/datadog/monitors", ROUTE_AUTH_API, monitors_route);
    router_add_outbound(HTTP_GET, "/datadog/events", ROUTE_AUTH_API, events_route);
}
