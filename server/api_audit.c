/* api_audit.c — the command audit log, read back.
 *
 *   GET /api/audit?cluster_id=&user_id=&outcome=&since=&until=&limit=&cursor=
 *
 * Organization-scoped like every other read: the caller's org only, so
 * another org's cluster id filters down to nothing.  since/until take RFC
 * 3339 times or Unix seconds; `until` is exclusive.  Newest first; a page
 * ends with next_cursor ("<at>.<id>" of its last row) when more rows match,
 * else null.  The same filters are `aurora-server admin audit` (admin.c),
 * and AURORA_AUDIT_RETENTION_DAYS prunes old rows (checked hourly). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_audit.h"
#include "api_util.h"
#include "http.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "server_config.h"
#include "timefmt.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 500
#define CURSOR_MAX 48

static int bad(http_response *resp, const char *msg)
{
    http_resp_error(resp, 400, "BAD_REQUEST", "%s", msg);
    return -1;
}

/* RFC 3339, or Unix seconds as plain digits. */
static int parse_time(const char *v, int64_t *out)
{
    if (api_parse_count(v, out) == 0)
        return 0;
    return time_parse_rfc3339(v, out) < 0 || *out < 0 ? -1 : 0;
}

/* An id-like filter: what ids, user ids and outcomes are made of. */
static int id_chars(const char *v)
{
    if (!*v)
        return 0;
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p == '@'))
            return 0;
    return 1;
}

typedef struct {
    char cluster[STORE_CLUSTER_ID_LEN], user[STORE_ID_LEN], outcome[32];
} filter_text;

static int parse_filter(http_request *req, store_audit_filter *f, filter_text *ft,
                        http_response *resp)
{
    char v[CURSOR_MAX + 1];
    int r;
    memset(f, 0, sizeof(*f));
    struct {
        const char *name;
        char *out;
        size_t cap;
        const char **slot;
    } ids[] = {
        { "cluster_id", ft->cluster, sizeof(ft->cluster), &f->cluster_id },
        { "user_id", ft->user, sizeof(ft->user), &f->user_id },
        { "outcome", ft->outcome, sizeof(ft->outcome), &f->outcome },
    };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if ((r = api_query_arg(req, ids[i].name, ids[i].out, ids[i].cap, resp)) < 0)
            return -1;
        if (!r)
            continue;
        if (!id_chars(ids[i].out)) {
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "%s must be an id (letters, digits, _ - . @)", ids[i].name);
            return -1;
        }
        *ids[i].slot = ids[i].out;
    }
    if ((r = api_query_arg(req, "since", v, sizeof(v), resp)) < 0)
        return -1;
    if (r && parse_time(v, &f->since) < 0)
        return bad(resp, "since must be an RFC 3339 time or Unix seconds");
    if ((r = api_query_arg(req, "until", v, sizeof(v), resp)) < 0)
        return -1;
    if (r && parse_time(v, &f->until) < 0)
        return bad(resp, "until must be an RFC 3339 time or Unix seconds");
    if (f->since && f->until && f->until < f->since)
        return bad(resp, "until must not be before since");
    f->limit = PAGE_DEFAULT;
    if ((r = api_query_arg(req, "limit", v, sizeof(v), resp)) < 0)
        return -1;
    int64_t lim;
    if (r && (api_parse_count(v, &lim) < 0 || lim < 1 || lim > PAGE_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "limit must be an integer between 1 and %d",
                        PAGE_MAX);
        return -1;
    }
    if (r)
        f->limit = (int)lim;
    if ((r = api_query_arg(req, "cursor", v, sizeof(v), resp)) < 0)
        return -1;
    if (r) {
        char *dot = strchr(v, '.');
        if (!dot)
            return bad(resp, "cursor is not one this API returned");
        *dot = '\0';
        if (api_parse_count(v, &f->before_at) < 0 || api_parse_count(dot + 1, &f->before_id) < 0)
            return bad(resp, "cursor is not one this API returned");
    }
    return 0;
}

static cJSON *entry_json(const store_audit *a)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "id", (double)a->id);
    cJSON_AddStringToObject(e, "cluster_id", a->cluster_id);
    cJSON_AddStringToObject(e, "user_id", a->user_id);
    cJSON_AddStringToObject(e, "kind", a->kind);
    /* Stored as the JSON array the command ran with (never its environment). */
    cJSON *argv = a->argv_json ? cJSON_Parse(a->argv_json) : NULL;
    if (!cJSON_IsArray(argv)) {
        cJSON_Delete(argv);
        argv = cJSON_CreateArray();
    }
    cJSON_AddItemToObject(e, "argv", argv);
    cJSON_AddStringToObject(e, "outcome", a->outcome);
    if (a->return_code >= 0)
        cJSON_AddNumberToObject(e, "return_code", a->return_code);
    else
        cJSON_AddNullToObject(e, "return_code");
    cJSON_AddNumberToObject(e, "bytes_out", (double)a->bytes_out);
    cJSON_AddNumberToObject(e, "duration_ms", (double)a->duration_ms);
    api_add_time(e, "at", a->at);
    api_add_time(e, "ended_at", a->ended_at);
    cJSON_AddStringToObject(e, "instance_id", a->instance_id);
    return e;
}

/* The JSON page of rows: every row but the extra one fetched to learn
 * whether a next page exists.  Shared with `admin audit`. */
cJSON *api_audit_page(const store_audit *rows, size_t n, int limit)
{
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "entries");
    for (size_t i = 0; i < shown; i++)
        cJSON_AddItemToArray(arr, entry_json(&rows[i]));
    if (n > shown && shown > 0) {
        char cursor[CURSOR_MAX + 1];
        snprintf(cursor, sizeof(cursor), "%lld.%lld", (long long)rows[shown - 1].at,
                 (long long)rows[shown - 1].id);
        cJSON_AddStringToObject(o, "next_cursor", cursor);
    } else {
        cJSON_AddNullToObject(o, "next_cursor");
    }
    return o;
}

static void list_audit(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!req->auth.org_id[0]) {
        http_resp_error(resp, 400, "ORG_REQUIRED", "Organization context required");
        return;
    }
    store_audit_filter f;
    filter_text ft;
    if (parse_filter(req, &f, &ft, resp) < 0)
        return;
    f.org_id = req->auth.org_id;
    int limit = f.limit;
    f.limit = limit + 1; /* one more than asked: is there a next page? */
    store_audit *rows = NULL;
    size_t n = 0;
    if (store_audit_query(w->store, &f, &rows, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    http_resp_json(resp, 200, api_audit_page(rows, n, limit));
    store_audit_list_free(rows, n);
}

/* Hourly: rows older than the retention go, in batches. */
static long prune(worker_ctx *w)
{
    int64_t days = server_setting_int(w->cfg, "AURORA_AUDIT_RETENTION_DAYS");
    if (days <= 0)
        return PERIODIC_MAX_DELAY_S;
    int64_t before = (int64_t)time(NULL) - days * 86400, deleted = 0;
    if (store_audit_prune(w->store, before, 1000, &deleted) != STORE_OK)
        log_error("audit retention: %s", store_errmsg(w->store));
    else if (deleted)
        log_info("audit retention: %lld record(s) older than %lld days deleted",
                 (long long)deleted, (long long)days);
    return PERIODIC_MAX_DELAY_S;
}

void api_audit_register(void)
{
    router_add(HTTP_GET, "/api/audit", ROUTE_AUTH_API, list_audit);
    periodic_add("audit-retention", WORKER_POOL_STORE, 60, prune);
}
