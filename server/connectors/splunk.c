/* splunk.c — Splunk Cloud or Enterprise over its REST API (management port,
 * 8089), with an API token (Authorization: Bearer).
 *
 *   POST /splunk/connect    {instance_url, token}: the URL must name its port
 *                           (https://your-splunk:8089); the token is checked
 *                           with GET /services/authentication/current-context
 *                           (whose user must hold the search capability), then
 *                           stored in the secrets backend
 *                           (aurora/orgs/<org>/users/<uid>/splunk/token)
 *   POST /splunk/search     {query, earliest_time?, latest_time?, max_results?}:
 *                           POST /services/search/jobs/export, streamed and
 *                           capped (splunk_search.h)
 *   GET  /splunk/indexes    GET /services/data/indexes?output_mode=json&count=N
 *   GET  /splunk/sourcetypes the "| metadata type=sourcetypes" search, streamed
 *   GET  /splunk/status     the connection (also in GET /api/connectors/status)
 * Disconnect: DELETE /api/connectors/splunk (row and token).
 *
 * The guide's troubleshooting messages are the answers: "Authentication
 * failed" (401/403 from Splunk), "Connection refused" (nothing listens at
 * the URL's host and port), "No results" (a search that found nothing, with
 * the hint about the role's default indexes).
 *
 * The instance URL is the user's: the token goes only over https (plain
 * http only to loopback, and loopback only when SPLUNK_ALLOW_LOOPBACK is
 * set — tests, a Splunk on the same host), never to link-local, unspecified
 * or multicast addresses written as literals (cloud metadata endpoints). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_util.h"
#include "connector.h"
#include "http_client.h"
#include "kit_addr.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secrets.h"
#include "splunk_search.h"

#define SPLUNK_ID "splunk"
#define SPLUNK_URL_MAX 512
#define SPLUNK_TOKEN_MAX 8192
#define SPLUNK_MAX_INDEXES 1000

#define MSG_AUTH "Authentication failed: the token may be expired or the user lacks the search capability"
#define MSG_REFUSED "Connection refused: verify the URL includes port 8089 and is reachable from Aurora"
#define MSG_NO_RESULTS "No results"
#define MSG_NO_RESULTS_HINT \
    "Check that the role has the correct indexes in \"Indexes searched by default\" " \
    "(Splunk: Settings > Roles > <role> > Indexes)"
#define MSG_NOT_CONNECTED "Splunk is not connected for this user: POST /splunk/connect first"

extern const connector connector_splunk;

static const config_def splunk_settings[] = {
    { "SPLUNK_ALLOW_LOOPBACK", "splunk.allow_loopback", CFG_BOOL, "false", "Splunk connector: accept instance URLs on loopback (127.0.0.0/8, ::1, localhost; plain http allowed there) — tests or a Splunk on this host", 0 },
    { "SPLUNK_CA_FILE", "splunk.ca_file", CFG_STRING, NULL, "Splunk connector: CA bundle for instance certificates (Splunk's management port often has its own CA); unset: AURORA_OUTBOUND_CA_FILE or the system store", 0 },
    { "SPLUNK_SEARCH_MAX_RESULTS", "splunk.search_max_results", CFG_INT, "1000", "Splunk connector: most results one search returns (a request may ask for fewer)", 0, 1, 100000 },
    { "SPLUNK_SEARCH_MAX_BYTES", "splunk.search_max_bytes", CFG_INT, "4194304", "Splunk connector: most bytes of the export stream read per search", 0, 4096, 67108864 },
    { "SPLUNK_SEARCH_MAX_CONCURRENT", "splunk.search_max_concurrent", CFG_INT, "4", "Splunk connector: searches running at once on this server (each holds an outbound worker up to SPLUNK_SEARCH_TIMEOUT_MS); more: 429", 0, 1, SPLUNK_SEARCH_CONCURRENT_CAP },
    { "SPLUNK_SEARCH_MAX_PER_ORG", "splunk.search_max_per_org", CFG_INT, "2", "Splunk connector: searches one organization runs at once on this server; more: 429", 0, 1, 256 },
    { "SPLUNK_SEARCH_TIMEOUT_MS", "splunk.search_timeout_ms", CFG_INT, "60000", "Splunk connector: time limit of one search (ms); results found by then are returned, marked truncated", 0, 500, 600000 },
    { NULL },
};

static long call_timeout_ms(const worker_ctx *w)
{
    return connector_timeout_ms(w, &connector_splunk);
}

static const char *ca_file(const worker_ctx *w)
{
    return server_setting(w->cfg, "SPLUNK_CA_FILE");
}

/* ---- the instance URL -------------------------------------------------------------------- */

/* 1 if the URL's authority ends with an explicit ":<port>" (the guide:
 * "https://your-splunk:8089"; Splunk's REST API is not on 443). */
static int has_explicit_port(const char *url)
{
    const char *a = strstr(url, "://");
    if (!a)
        return 0;
    a += 3;
    const char *end = a + strcspn(a, "/?#");
    const char *colon = NULL;
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(end - a));
        colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        for (const char *p = a; p < end; p++)
            if (*p == ':')
                colon = p;
    }
    if (!colon || colon + 1 >= end)
        return 0;
    for (const char *p = colon + 1; p < end; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

/* The instance URL as the connector accepts it; 0, or -1 with a 400 in resp. */
static int instance_url_check(const worker_ctx *w, const char *url, http_response *resp)
{
    char why[256];
    http_client_url u;
    if (!url || strlen(url) > SPLUNK_URL_MAX || http_client_url_parse(url, 0, &u) < 0 ||
        kit_base_url_check(url, 1, why, sizeof(why)) != AUR_OK) {
        http_resp_error(resp, 400, "SPLUNK_INVALID_URL",
                        "instance_url must be your Splunk management URL, e.g. "
                        "https://your-splunk:8089 (no user name, query or fragment)");
        return -1;
    }
    if (!has_explicit_port(url)) {
        http_resp_error(resp, 400, "SPLUNK_INVALID_URL",
                        "instance_url must include the management port, e.g. https://your-splunk:8089");
        return -1;
    }
    /* kit_addr.h: private ranges are fine, an on-premises Splunk lives there */
    kit_addr_kind kind = kit_addr_host(u.host);
    if (kind == KIT_ADDR_FORBIDDEN) {
        http_resp_error(resp, 400, "SPLUNK_INVALID_URL",
                        "instance_url names an address no Splunk instance has (link-local, "
                        "cloud metadata, unspecified or multicast)");
        return -1;
    }
    if (kind == KIT_ADDR_LOOPBACK && !config_bool(&w->cfg->raw, "SPLUNK_ALLOW_LOOPBACK")) {
        http_resp_error(resp, 400, "SPLUNK_INVALID_URL",
                        "instance_url is on loopback, which this server does not allow "
                        "(SPLUNK_ALLOW_LOOPBACK)");
        return -1;
    }
    if (strcmp(u.scheme, "https") != 0 && kind != KIT_ADDR_LOOPBACK) {
        http_resp_error(resp, 400, "SPLUNK_INVALID_URL",
                        "instance_url must be https:// (Splunk's REST API on port 8089 uses TLS): "
                        "the token is never sent in clear");
        return -1;
    }
    return 0;
}

/* ---- errors ---------------------------------------------------------------------------- */

/* The answer for a call that failed: the guide's messages where they apply.
 * `auth_status`: the HTTP status for "Authentication failed" (400 when the
 * user just typed the token, 502 for a stored one Splunk no longer takes). */
static void call_failed(int code, const http_client_resp *h, const char *what, long timeout_ms,
                        int auth_status, http_response *resp)
{
    if (code == AUR_E_DENIED || h->status == 401 || h->status == 403) {
        http_resp_error(resp, auth_status, "SPLUNK_AUTH_FAILED", MSG_AUTH " (HTTP %ld)", h->status);
        return;
    }
    if (h->address_refused) {
        http_resp_error(resp, 400, "SPLUNK_INVALID_URL",
                        "%s: instance_url resolves to an address Aurora does not connect to "
                        "(loopback, link-local, unspecified or multicast)", what);
        return;
    }
    if (h->status == 0 && h->os_errno == ECONNREFUSED) {
        http_resp_error(resp, 502, "SPLUNK_CONNECTION_REFUSED", MSG_REFUSED);
        return;
    }
    if (h->status == 0 && code == AUR_E_TIMEOUT) {
        http_resp_error(resp, 504, "SPLUNK_TIMEOUT", "%s: Splunk did not answer within %ld s", what,
                        (timeout_ms + 999) / 1000);
        return;
    }
    if (h->status == 0) {
        /* curl's message names host and port at most */
        http_resp_error(resp, 502, "SPLUNK_UNREACHABLE",
                        "%s: Splunk is unreachable (%s): verify the URL includes port 8089 and is "
                        "reachable from Aurora", what, h->err);
        return;
    }
    http_resp_error(resp, 502, "SPLUNK_ERROR", "%s: Splunk answered HTTP %ld", what, h->status);
}

/* ---- the connection ------------------------------------------------------------------------ */

typedef struct {
    char url[SPLUNK_URL_MAX + 1];
    unsigned char *token; /* secrets_free */
    size_t token_len;
} splunk_conn;

static void conn_free(splunk_conn *c)
{
    if (c->token)
        secrets_free(c->token, c->token_len);
    c->token = NULL;
}

/* The caller's stored connection; 0, or -1 with resp filled. */
static int conn_load(worker_ctx *w, const auth_ctx *who, splunk_conn *c, http_response *resp)
{
    memset(c, 0, sizeof(*c));
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return -1;
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, who, SPLUNK_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    const char *url = api_json_str(md, "instance_url");
    int rc = -1;
    if (!url || strlen(url) > SPLUNK_URL_MAX)
        http_resp_error(resp, 500, "SPLUNK_CONNECTION_CORRUPT",
                        "the stored Splunk connection is invalid; connect again");
    else if (instance_url_check(w, url, resp) == 0 &&
             kit_secret_get(w, row.secret_ref, &c->token, &c->token_len, 409,
                            "SPLUNK_NOT_CONNECTED",
                            "the Splunk token is no longer stored; connect Splunk again", resp) == 0) {
        snprintf(c->url, sizeof(c->url), "%s", url);
        rc = 0;
    }
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

/* ---- POST /splunk/connect ------------------------------------------------------------------- */

/* 1 if the current-context content lists the capability (or lists none:
 * a Splunk that does not say is given the benefit of the doubt). */
static int has_capability(const cJSON *content, const char *cap)
{
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(content, "capabilities");
    if (!cJSON_IsArray(caps))
        return 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, caps)
    {
        if (cJSON_IsString(it) && !strcmp(it->valuestring, cap))
            return 1;
    }
    return 0;
}

static int token_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > SPLUNK_TOKEN_MAX)
        return 0;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

static void splunk_connect(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *url = api_json_str(body, "instance_url");
    const char *token = api_json_str(body, "token");
    if (!token)
        token = api_json_str(body, "api_token");
    cJSON *md = NULL, *j = NULL;
    char *probe = NULL, base[SPLUNK_URL_MAX + 1];
    if (!url || !token) {
        http_resp_error(resp, 400, "BAD_REQUEST", "instance_url and token are required");
        goto out;
    }
    if (!token_ok(token)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "token must be 1-%d printable characters without spaces", SPLUNK_TOKEN_MAX);
        goto out;
    }
    if (instance_url_check(w, url, resp) < 0)
        goto out;
    snprintf(base, sizeof(base), "%s", url);
    for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    probe = kit_url(base, "/services/authentication/current-context?output_mode=json");
    int allow_lo = config_bool(&w->cfg->raw, "SPLUNK_ALLOW_LOOPBACK");
    long timeout = call_timeout_ms(w);
    const char *headers[] = { "Accept: application/json", NULL };
    kit_call_req q = { .provider = "Splunk", .base_url = base, .url = probe, .headers = headers,
                       .bearer = token, .attempt_timeout_ms = timeout, .deadline_ms = timeout,
                       .max_attempts = 2, .max_response = 256 * 1024, .cacert = ca_file(w),
                       .allow_address = kit_addr_allow, .allow_address_ud = &allow_lo };
    kit_call_resp rp;
    int rc = probe ? kit_call(&q, &rp) : AUR_E_INTERNAL;
    if (!probe) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    if (rc != AUR_OK) {
        call_failed(rc, &rp.http, "Splunk connect", timeout, 400, resp);
        kit_call_resp_free(&rp);
        goto out;
    }
    j = kit_call_json(&rp);
    kit_call_resp_free(&rp);
    const cJSON *entry = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entry"), 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(entry, "content");
    const char *user = api_json_str(content, "username");
    char err[96];
    if (!cJSON_IsObject(content) || !user ||
        api_check_text(user, "username", 1, 256, err, sizeof(err)) < 0) {
        http_resp_error(resp, 502, "SPLUNK_ERROR",
                        "Splunk connect: the answer of /services/authentication/current-context "
                        "names no user (is this a Splunk management port?)");
        goto out;
    }
    if (!has_capability(content, "search")) {
        http_resp_error(resp, 400, "SPLUNK_AUTH_FAILED",
                        "Authentication failed: the token's user '%s' lacks the search capability "
                        "(give its role the search capability)", user);
        goto out;
    }
    md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "instance_url", base);
    cJSON_AddStringToObject(md, "username", user);
    kit_field f = { "token", token };
    if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, SPLUNK_ID, user, &f, 1, md,
                          resp) < 0)
        goto out;
    log_info("splunk: user %s of %s connected Splunk as %s", req->auth.user_id, req->auth.org_id,
             user);
    kit_connected_reply(resp, SPLUNK_ID, md, NULL);
out:
    free(probe);
    cJSON_Delete(j);
    cJSON_Delete(md);
    if (token) /* the request body held the token */
        OPENSSL_cleanse((void *)token, strlen(token));
    cJSON_Delete(body);
}

/* ---- searches -------------------------------------------------------------------------- */

static size_t setting_size(const worker_ctx *w, const char *name)
{
    int64_t v = server_setting_int(w->cfg, name);
    return v > 0 ? (size_t)v : 1;
}

/* Takes a place for org (splunk_search_take); 0, or -1 with a 429 in resp. */
static int search_begin(const worker_ctx *w, const char *org, http_response *resp)
{
    int64_t max_all = server_setting_int(w->cfg, "SPLUNK_SEARCH_MAX_CONCURRENT");
    int64_t max_org = server_setting_int(w->cfg, "SPLUNK_SEARCH_MAX_PER_ORG");
    if (splunk_search_take(org, (long long)max_all, (long long)max_org) == 0)
        return 0;
    http_resp_add_header(resp, "retry-after", "5");
    http_resp_error(resp, 429, "SPLUNK_BUSY",
                    "too many Splunk searches in progress (SPLUNK_SEARCH_MAX_PER_ORG %lld, "
                    "SPLUNK_SEARCH_MAX_CONCURRENT %lld); retry when one has finished",
                    (long long)max_org, (long long)max_all);
    return -1;
}

/* Runs spl for the caller (org: its organization, for the concurrency
 * bound) and fills `s` (already initialised).  0, or -1 with resp filled. */
static int run_search(worker_ctx *w, const char *org, const splunk_conn *c, const char *spl,
                      const char *earliest, const char *latest, splunk_stream *s,
                      http_response *resp)
{
    if (search_begin(w, org, resp) < 0)
        return -1;
    long timeout = (long)server_setting_int(w->cfg, "SPLUNK_SEARCH_TIMEOUT_MS");
    int allow_lo = config_bool(&w->cfg->raw, "SPLUNK_ALLOW_LOOPBACK");
    splunk_export_req q = { .instance_url = c->url, .token = (const char *)c->token, .spl = spl,
                            .earliest = earliest, .latest = latest, .timeout_ms = timeout,
                            .cacert = ca_file(w), .allow_address = kit_addr_allow,
                            .allow_address_ud = &allow_lo };
    http_client_resp h;
    int rc = splunk_export(&q, s, &h);
    splunk_search_give(org);
    if (rc == AUR_OK) {
        http_client_resp_free(&h);
        return 0;
    }
    if (h.status == 400) {
        const cJSON *m = cJSON_GetArrayItem(s->messages, 0);
        const char *text = m ? api_json_str(m, "text") : NULL;
        http_resp_error(resp, 400, "SPLUNK_SEARCH_INVALID", "Splunk refused the search%s%s",
                        text ? ": " : "", text ? text : "");
    } else if (rc == AUR_E_TIMEOUT && h.status >= 200 && h.status < 300) {
        http_resp_error(resp, 504, "SPLUNK_TIMEOUT",
                        "Splunk search: no result within %ld s (SPLUNK_SEARCH_TIMEOUT_MS)",
                        (timeout + 999) / 1000);
    } else if (rc == AUR_E_INTERNAL) {
        http_resp_error(resp, 500, "INTERNAL", "Splunk search: out of memory");
    } else {
        call_failed(rc, &h, "Splunk search", timeout, 502, resp);
    }
    http_client_resp_free(&h);
    return -1;
}

/* 1 if Splunk's messages say the search itself failed. */
static int search_failed(const splunk_stream *s, const char **text)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, s->messages)
    {
        const char *ty = api_json_str(m, "type");
        if (ty && (!strcmp(ty, "FATAL") || !strcmp(ty, "ERROR"))) {
            *text = api_json_str(m, "text");
            return 1;
        }
    }
    return 0;
}

/* The answer of a search: its results (moved out of s), caps, messages, and
 * the guide's "No results" when it found nothing. */
static void search_reply(splunk_stream *s, const char *spl, http_response *resp)
{
    const char *failure = NULL;
    if (s->nresults == 0 && !s->cut && search_failed(s, &failure)) {
        http_resp_error(resp, 400, "SPLUNK_SEARCH_FAILED", "Splunk search failed: %s",
                        failure ? failure : "");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    cJSON_AddStringToObject(o, "search", spl);
    cJSON_AddNumberToObject(o, "count", (double)s->nresults);
    cJSON_AddItemToObject(o, "results", s->results);
    s->results = NULL;
    cJSON_AddBoolToObject(o, "truncated", s->cut != SPLUNK_CUT_NONE);
    if (s->cut)
        cJSON_AddStringToObject(o, "truncated_by", splunk_cut_name(s->cut));
    cJSON_AddNumberToObject(o, "bytes_read", (double)s->bytes);
    if (s->skipped_lines)
        cJSON_AddNumberToObject(o, "skipped_lines", (double)s->skipped_lines);
    cJSON_AddItemToObject(o, "messages", s->messages);
    s->messages = NULL;
    if (s->nresults == 0 && !s->cut) {
        cJSON_AddStringToObject(o, "message", MSG_NO_RESULTS);
        cJSON_AddStringToObject(o, "hint", MSG_NO_RESULTS_HINT);
    }
    http_resp_json(resp, 200, o);
}

/* max_results of a request: absent = the setting; 1..setting. */
static int read_max_results(const worker_ctx *w, const cJSON *body, size_t *out,
                            http_response *resp)
{
    size_t cap = setting_size(w, "SPLUNK_SEARCH_MAX_RESULTS");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "max_results");
    int64_t v;
    if (!m) {
        *out = cap;
        return 0;
    }
    if (!api_json_int64(m, &v) || v < 1 || (uint64_t)v > cap) {
        http_resp_error(resp, 400, "BAD_REQUEST", "max_results must be an integer from 1 to %zu",
                        cap);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static void splunk_search_route(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *query = api_json_str(body, "query");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "earliest_time");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(body, "latest_time");
    const char *earliest = api_json_str(body, "earliest_time");
    const char *latest = api_json_str(body, "latest_time");
    size_t max_results = 0;
    char *spl = NULL;
    splunk_conn c = { .token = NULL };
    splunk_stream s;
    int have_stream = 0;
    if (!query) {
        http_resp_error(resp, 400, "BAD_REQUEST", "query (SPL) is required");
        goto out;
    }
    if (!(spl = splunk_spl(query))) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "query must be 1-%d characters of SPL without control characters",
                        SPLUNK_SPL_MAX);
        goto out;
    }
    if ((e && !splunk_time_ok(earliest)) || (l && !splunk_time_ok(latest))) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "earliest_time and latest_time must be Splunk time modifiers "
                        "(\"-24h\", \"-15m@m\", \"now\", epoch seconds), at most %d characters",
                        SPLUNK_TIME_MAX);
        goto out;
    }
    if (read_max_results(w, body, &max_results, resp) < 0 || conn_load(w, &req->auth, &c, resp) < 0)
        goto out;
    splunk_stream_init(&s, max_results, setting_size(w, "SPLUNK_SEARCH_MAX_BYTES"));
    have_stream = 1;
    if (run_search(w, req->auth.org_id, &c, spl, earliest ? earliest : "-24h",
                   latest ? latest : "now", &s, resp) < 0)
        goto out;
    search_reply(&s, spl, resp);
out:
    if (have_stream)
        splunk_stream_free(&s);
    conn_free(&c);
    free(spl);
    cJSON_Delete(body);
}

/* GET /splunk/sourcetypes[?index=<name>&earliest_time=-7d] */
static void splunk_sourcetypes(worker_ctx *w, http_request *req, http_response *resp)
{
    char index[128] = "", earliest[SPLUNK_TIME_MAX + 2] = "";
    int has_index = http_query_get(req, "index", index, sizeof(index));
    int has_earliest = http_query_get(req, "earliest_time", earliest, sizeof(earliest));
    if (has_index) {
        size_t n = strlen(index);
        int ok = n > 0 && n <= 80;
        for (size_t i = 0; i < n && ok; i++)
            ok = (index[i] >= 'a' && index[i] <= 'z') || (index[i] >= '0' && index[i] <= '9') ||
                 index[i] == '_' || index[i] == '-' || index[i] == '*';
        if (!ok) {
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "index must be a Splunk index name ([a-z0-9_-], '*' as a wildcard)");
            return;
        }
    }
    if (has_earliest && !splunk_time_ok(earliest)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "earliest_time must be a Splunk time modifier");
        return;
    }
    splunk_conn c;
    if (conn_load(w, &req->auth, &c, resp) < 0)
        return;
    char spl[256];
    snprintf(spl, sizeof(spl), "| metadata type=sourcetypes%s%s", has_index ? " index=" : "",
             has_index ? index : "");
    splunk_stream s;
    splunk_stream_init(&s, setting_size(w, "SPLUNK_SEARCH_MAX_RESULTS"),
                       setting_size(w, "SPLUNK_SEARCH_MAX_BYTES"));
    if (run_search(w, req->auth.org_id, &c, spl, has_earliest ? earliest : "-7d", "now", &s,
                   resp) == 0) {
        /* {sourcetype, totalCount, firstTime, lastTime, recentTime} per row */
        cJSON *list = cJSON_CreateArray();
        const cJSON *r;
        cJSON_ArrayForEach(r, s.results)
        {
            const char *st = api_json_str(r, "sourcetype");
            if (!st)
                continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "sourcetype", st);
            const char *tc = api_json_str(r, "totalCount"), *lt = api_json_str(r, "lastTime");
            if (tc)
                cJSON_AddNumberToObject(o, "total_count", strtod(tc, NULL));
            if (lt)
                cJSON_AddNumberToObject(o, "last_time", strtod(lt, NULL));
            cJSON_AddItemToArray(list, o);
        }
        cJSON_Delete(s.results);
        s.results = list;
        search_reply(&s, spl, resp);
    }
    splunk_stream_free(&s);
    conn_free(&c);
}

/* ---- GET /splunk/indexes ------------------------------------------------------------------------ */

static void add_number(cJSON *o, const char *key, const cJSON *content, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(content, field);
    if (cJSON_IsNumber(v))
        cJSON_AddNumberToObject(o, key, v->valuedouble);
    else if (cJSON_IsString(v) && v->valuestring[0])
        cJSON_AddNumberToObject(o, key, strtod(v->valuestring, NULL));
}

static void splunk_indexes(worker_ctx *w, http_request *req, http_response *resp)
{
    char count_q[16] = "";
    long count = 100;
    if (http_query_get(req, "count", count_q, sizeof(count_q))) {
        char *end = NULL;
        count = strtol(count_q, &end, 10);
        if (!end || *end || count < 1 || count > SPLUNK_MAX_INDEXES) {
            http_resp_error(resp, 400, "BAD_REQUEST", "count must be an integer from 1 to %d",
                            SPLUNK_MAX_INDEXES);
            return;
        }
    }
    splunk_conn c;
    if (conn_load(w, &req->auth, &c, resp) < 0)
        return;
    char path[96];
    snprintf(path, sizeof(path), "/services/data/indexes?output_mode=json&count=%ld", count);
    char *url = kit_url(c.url, path);
    long timeout = call_timeout_ms(w);
    int allow_lo = config_bool(&w->cfg->raw, "SPLUNK_ALLOW_LOOPBACK");
    const char *headers[] = { "Accept: application/json", NULL };
    kit_call_req q = { .provider = "Splunk", .base_url = c.url, .url = url, .headers = headers,
                       .bearer = (const char *)c.token, .attempt_timeout_ms = timeout,
                       .deadline_ms = timeout, .max_attempts = 2, .max_response = 4 * 1024 * 1024,
                       .cacert = ca_file(w), .allow_address = kit_addr_allow,
                       .allow_address_ud = &allow_lo };
    kit_call_resp rp;
    int built = url != NULL;
    int rc = built ? kit_call(&q, &rp) : AUR_E_INTERNAL;
    free(url);
    conn_free(&c);
    if (!built) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    if (rc != AUR_OK) {
        call_failed(rc, &rp.http, "Splunk indexes", timeout, 502, resp);
        kit_call_resp_free(&rp);
        return;
    }
    cJSON *j = kit_call_json(&rp);
    kit_call_resp_free(&rp);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entry");
    if (!cJSON_IsArray(entries)) {
        cJSON_Delete(j);
        http_resp_error(resp, 502, "SPLUNK_ERROR", "Splunk indexes: the answer has no entry list");
        return;
    }
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "indexes");
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, entries)
    {
        const char *name = api_json_str(e, "name");
        char err[64];
        if (!name || api_check_text(name, "name", 1, 256, err, sizeof(err)) < 0 || n >= count)
            continue;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "name", name);
        const char *dt = api_json_str(content, "datatype");
        if (dt && strlen(dt) < 32)
            cJSON_AddStringToObject(it, "datatype", dt);
        add_number(it, "total_event_count", content, "totalEventCount");
        add_number(it, "current_size_mb", content, "currentDBSizeMB");
        const cJSON *dis = cJSON_GetObjectItemCaseSensitive(content, "disabled");
        if (cJSON_IsBool(dis))
            cJSON_AddBoolToObject(it, "disabled", cJSON_IsTrue(dis));
        cJSON_AddItemToArray(list, it);
        n++;
    }
    cJSON_AddNumberToObject(o, "count", n);
    if (n == 0) {
        cJSON_AddStringToObject(o, "message", MSG_NO_RESULTS);
        cJSON_AddStringToObject(o, "hint", MSG_NO_RESULTS_HINT);
    }
    cJSON_Delete(j);
    http_resp_json(resp, 200, o);
}

/* ---- status -------------------------------------------------------------------------------- */

static void splunk_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "instance_url", "username", NULL };
    store_connector c;
    cJSON *md;
    if (!kit_status(w, who, SPLUNK_ID, keys, out, &c, &md))
        return;
    cJSON_Delete(md);
    store_connector_free(&c);
}

static void splunk_status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    splunk_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    http_resp_json(resp, 200, o);
}

static void splunk_register(void)
{
    router_add_outbound(HTTP_POST, "/splunk/connect", ROUTE_AUTH_API, splunk_connect);
    router_add_outbound(HTTP_POST, "/splunk/search", ROUTE_AUTH_API, splunk_search_route);
    router_add_outbound(HTTP_GET, "/splunk/indexes", ROUTE_AUTH_API, splunk_indexes);
    router_add_outbound(HTTP_GET, "/splunk/sourcetypes", ROUTE_AUTH_API, splunk_sourcetypes);
    router_add(HTTP_GET, "/splunk/status", ROUTE_AUTH_API, splunk_status_route);
}

const connector connector_splunk = {
    .id = SPLUNK_ID,
    .name = "Splunk",
    .register_routes = splunk_register,
    .status = splunk_status,
    .cloud = NULL,
    .settings = splunk_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
