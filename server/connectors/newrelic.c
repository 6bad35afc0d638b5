/* newrelic.c — the New Relic connector (connector guide: Observability
 * Tools > New Relic): a User API key (NRAK-…), a numeric account id and a
 * region, every call through the region's one NerdGraph endpoint
 * (POST …/graphql with the API-Key header), and New Relic's workflow
 * webhooks turned into incidents.
 *
 *   POST /newrelic/connect {api_key, account_id, region "US"|"EU", license_key?}
 *        checked with NerdGraph before anything is stored:
 *        { actor { user { email } account(id: $id) { id name } } }
 *        → "Invalid API key" / "Account not found" (with the EU hint).
 *        Keys go to the secrets backend (…/newrelic/api-key, …/license-key),
 *        account id and region to the row's metadata.
 *   GET  /newrelic/status               connection and the webhook to set up
 *   POST /newrelic/disconnect           alias of DELETE /api/connectors/newrelic
 *   POST /newrelic/webhook/{user_id}    workflow webhook deliveries (public)
 *   newrelic_api.c: NRQL, issues, incidents, entities, accounts
 *   newrelic_poll.c: POST /newrelic/poll-issues and the periodic poller
 *
 * The webhook (kit_webhook.h): New Relic destinations do not sign, so the
 * per-user URL is the credential (KIT_WH_UNSIGNED); its tenant is
 * kit_tenant_resolve(…, KIT_TENANT_CONNECTED, …) (unknown or disconnected
 * user: 404).  The body is the user's workflow template: New Relic's default
 * template and the recommended one (docs/api.md) are both understood.  No
 * delivery id is sent: an identical body is the same delivery (SHA-256).
 * Processing: one delivery → one incident_ingest() with fingerprint = issue
 * id and dedup key "<issueId>:<state>", the same as the poller's, so an issue
 * seen both ways is recorded once. */
#include "newrelic.h"

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
#include "kit_secrets.h"
#include "kit_tenant.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "secret.h"
#include "utf8.h"

extern const connector connector_newrelic;

#define WEBHOOK_MAX_BODY (256 * 1024)
#define RATE_WINDOW_S 60
#define SWEEP_BATCH 100
#define SWEEP_INTERVAL_S 20
#define MSG_NOT_CONNECTED "New Relic is not connected for this user: POST /newrelic/connect first"
#define MSG_WEBHOOK_UNKNOWN "Unknown webhook user or New Relic not connected"
#define EU_HINT                                                                                   \
    "; if your account is on the EU data center, select region \"EU\" "                           \
    "(https://api.eu.newrelic.com/graphql)"

static const config_def newrelic_settings[] = {
    { "AURORA_NEWRELIC_US_GRAPHQL_URL", "newrelic.us_graphql_url", CFG_STRING,
      "https://api.newrelic.com/graphql",
      "New Relic connector: NerdGraph endpoint of the US region (a proxy, tests); https unless "
      "loopback", 0 },
    { "AURORA_NEWRELIC_EU_GRAPHQL_URL", "newrelic.eu_graphql_url", CFG_STRING,
      "https://api.eu.newrelic.com/graphql",
      "New Relic connector: NerdGraph endpoint of the EU region (a proxy, tests); https unless "
      "loopback", 0 },
    { "AURORA_NEWRELIC_WEBHOOK_RATE_PER_MINUTE", "newrelic.webhook_rate_per_minute", CFG_INT,
      "600", "New Relic connector: webhook deliveries accepted per user and minute (then 429 "
      "with Retry-After)", 0, 1, 1000000 },
    { "AURORA_NEWRELIC_POLL_INTERVAL_S", "newrelic.poll_interval_s", CFG_INT, "0",
      "New Relic connector: seconds between two polls of every connection's open issues "
      "(0: no periodic poll; POST /newrelic/poll-issues still works)", 0, 0, 86400 },
    { "AURORA_NEWRELIC_POLL_CONNECTIONS", "newrelic.poll_connections", CFG_INT, "50",
      "New Relic connector: connections polled per tick", 0, 1, 1000 },
    { NULL },
};

long newrelic_timeout_ms(const worker_ctx *w)
{
    return connector_timeout_ms(w, &connector_newrelic);
}

/* ---- pure checks ------------------------------------------------------------------ */

const char *newrelic_region_find(const char *name)
{
    if (!name || !*name || !strcasecmp(name, "US"))
        return "US";
    if (!strcasecmp(name, "EU"))
        return "EU";
    return NULL;
}

static int alnum_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return 0;
    return 1;
}

int newrelic_user_key_ok(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    return n >= 25 && n <= NEWRELIC_KEY_MAX && !strncmp(key, "NRAK-", 5) &&
           alnum_run(key + 5, n - 5);
}

int newrelic_license_key_ok(const char *key)
{
    return key && strlen(key) == 40 && alnum_run(key, 40);
}

int64_t newrelic_account_id(const cJSON *v)
{
    int64_t id = 0;
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        size_t n = strlen(s);
        if (n == 0 || n > 10)
            return 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)s[i]))
                return 0;
            id = id * 10 + (s[i] - '0');
        }
    } else if (!api_json_int64(v, &id)) {
        return 0;
    }
    return id >= 1 && id <= 2147483647 ? id : 0;
}

char *newrelic_graphql_body(const char *query, const cJSON *vars)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *v = vars ? cJSON_Duplicate(vars, 1) : cJSON_CreateObject();
    char *out = NULL;
    if (o && v && cJSON_AddStringToObject(o, "query", query)) {
        cJSON_AddItemToObject(o, "variables", v);
        v = NULL;
        out = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(v);
    cJSON_Delete(o);
    return out;
}

/* ---- endpoint and credentials -------------------------------------------------------- */

int newrelic_endpoint(const worker_ctx *w, const char *region, char *out, size_t cap,
                      http_response *resp)
{
    char name[64];
    snprintf(name, sizeof(name), "AURORA_NEWRELIC_%s_GRAPHQL_URL", region);
    const char *url = server_setting(w->cfg, name);
    char why[256] = "is not set";
    if (!url || kit_base_url_check(url, 0, why, sizeof(why)) != AUR_OK || !kit_url_private(url) ||
        strlen(url) >= cap) {
        log_error("newrelic: %s %s", name, why);
        http_resp_error(resp, 500, "NEWRELIC_MISCONFIGURED",
                        "%s is not a usable NerdGraph URL (https, or http to loopback)", name);
        return -1;
    }
    snprintf(out, cap, "%s", url);
    return 0;
}

static char *key_header(const char *key, size_t len)
{
    size_t n = sizeof("API-Key: ") + len;
    char *h = malloc(n);
    if (h)
        snprintf(h, n, "API-Key: %.*s", (int)len, key);
    return h;
}

void newrelic_creds_clear(newrelic_creds *c)
{
    if (!c)
        return;
    secret_free(c->key_header);
    c->key_header = NULL;
}

/* Fills c from a row's metadata; 0, or -1 with resp filled. */
static int creds_from_md(worker_ctx *w, const cJSON *md, newrelic_creds *c, http_response *resp)
{
    const char *region = newrelic_region_find(api_json_str(md, "region"));
    c->account_id = newrelic_account_id(cJSON_GetObjectItemCaseSensitive(md, "account_id"));
    const char *ref = api_json_str(cJSON_GetObjectItemCaseSensitive(md, "secret_refs"), "api-key");
    if (!region || !c->account_id || !ref) {
        http_resp_error(resp, 500, "NEWRELIC_CONNECTION_CORRUPT",
                        "the stored New Relic connection is incomplete; connect again");
        return -1;
    }
    snprintf(c->region, sizeof(c->region), "%s", region);
    if (newrelic_endpoint(w, region, c->endpoint, sizeof(c->endpoint), resp) < 0)
        return -1;
    unsigned char *val = NULL;
    size_t len = 0;
    if (kit_secret_get(w, ref, &val, &len, 404, "NEWRELIC_NOT_CONNECTED",
                       "the New Relic API key is no longer stored; connect New Relic again",
                       resp) < 0)
        return -1;
    /* Checked at connect; a value changed in the backend since must not put
     * a line break (another header) into the request. */
    char key[NEWRELIC_KEY_MAX + 1];
    int ok = len <= NEWRELIC_KEY_MAX;
    if (ok) {
        memcpy(key, val, len);
        key[len] = '\0';
        ok = strlen(key) == len && newrelic_user_key_ok(key);
        secret_wipe(key, sizeof(key));
    }
    c->key_header = ok ? key_header((const char *)val, len) : NULL;
    secrets_free(val, len);
    if (!ok || !c->key_header) {
        http_resp_error(resp, 500, "NEWRELIC_CONNECTION_CORRUPT",
                        "the stored New Relic API key is not a User API key; connect again");
        return -1;
    }
    return 0;
}

int newrelic_creds_load(worker_ctx *w, const auth_ctx *who, newrelic_creds *c,
                        http_response *resp)
{
    memset(c, 0, sizeof(*c));
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return -1;
    store_connector row;
    cJSON *md = NULL;
    if (kit_row_load(w, who, NEWRELIC_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    int rc = creds_from_md(w, md, c, resp);
    if (rc < 0)
        newrelic_creds_clear(c);
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

int newrelic_creds_from_row(worker_ctx *w, const store_connector *row, newrelic_creds *c,
                            char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    cJSON *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    http_response r;
    memset(&r, 0, sizeof(r));
    int rc = creds_from_md(w, md, c, &r);
    if (rc < 0) {
        snprintf(err, errlen, "connection unusable (HTTP %d)", r.status);
        newrelic_creds_clear(c);
    }
    buf_free(&r.body);
    cJSON_Delete(md);
    return rc;
}

/* ---- NerdGraph -------------------------------------------------------------------------- */

static const kit_call_errors nr_errors = {
    .service = "New Relic NerdGraph",
    .timeout = "NEWRELIC_TIMEOUT",
    .unreachable = "NEWRELIC_UNREACHABLE",
    .denied = "NEWRELIC_INVALID_API_KEY",
    .failed = "NEWRELIC_ERROR",
};

/* 1 when a GraphQL error's path names the account field (NerdGraph: the
 * key cannot see that account). */
static int account_error(const cJSON *errors)
{
    for (const cJSON *e = cJSON_IsArray(errors) ? errors->child : NULL; e; e = e->next) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(e, "path");
        for (const cJSON *p = cJSON_IsArray(path) ? path->child : NULL; p; p = p->next)
            if (cJSON_IsString(p) && !strcmp(p->valuestring, "account"))
                return 1;
    }
    return 0;
}

/* The first GraphQL error's message, printable ASCII only, bounded. */
static void first_error(const cJSON *errors, char *out, size_t cap, const char **klass)
{
    const cJSON *e = cJSON_IsArray(errors) ? errors->child : NULL;
    const char *m = api_json_str(e, "message");
    *klass = api_json_str(cJSON_GetObjectItemCaseSensitive(e, "extensions"), "errorClass");
    size_t n = 0;
    for (const char *p = m; p && *p && n + 1 < cap && n < 200; p++)
        out[n++] = (*p >= ' ' && *p <= '~') ? *p : ' ';
    out[n] = '\0';
    if (!n)
        snprintf(out, cap, "unspecified error");
}

static int auth_error(const char *klass, const char *msg)
{
    return (klass && (!strcmp(klass, "UNAUTHENTICATED") || !strcmp(klass, "UNAUTHORIZED"))) ||
           strcasestr(msg, "api key") != NULL;
}

/* The call itself; rc of kit_call, *r the answer (free it). */
static int nr_post(worker_ctx *w, const newrelic_creds *c, const char *body, kit_call_resp *r)
{
    long timeout = newrelic_timeout_ms(w);
    const char *headers[] = { "Content-Type: application/json", "Accept: application/json",
                              c->key_header, NULL };
    kit_call_req q = { .provider = "New Relic NerdGraph", .base_url = c->endpoint,
                       .method = "POST", .url = c->endpoint, .headers = headers,
                       .body = body, .body_len = strlen(body),
                       /* queries only: sending one again changes nothing */
                       .retry_safe = 1, .attempt_timeout_ms = timeout, .deadline_ms = timeout,
                       .max_response = NEWRELIC_MAX_RESPONSE };
    return kit_call(&q, r);
}

int newrelic_graphql(worker_ctx *w, const newrelic_creds *c, const char *query,
                     const cJSON *vars, cJSON **data, http_response *resp)
{
    *data = NULL;
    char *body = newrelic_graphql_body(query, vars);
    if (!body) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    kit_call_resp r;
    int rc = nr_post(w, c, body, &r);
    free(body);
    cJSON *j = (rc == AUR_OK || r.status >= 400) ? kit_call_json(&r) : NULL;
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(j, "errors");
    char msg[256] = "";
    const char *klass = NULL;
    if (cJSON_IsArray(errors) && cJSON_GetArraySize(errors) > 0)
        first_error(errors, msg, sizeof(msg), &klass);
    int ret = -1;
    if (r.status == 401 || r.status == 403 || (msg[0] && auth_error(klass, msg))) {
        http_resp_error(resp, 502, "NEWRELIC_INVALID_API_KEY",
                        "Invalid API key: New Relic refused the stored User API key (it must "
                        "start with NRAK- and belong to a user with read access); connect again");
    } else if (rc != AUR_OK) {
        kit_call_error(&nr_errors, &r, "calling NerdGraph", newrelic_timeout_ms(w), "", resp);
    } else if (!cJSON_IsObject(j)) {
        http_resp_error(resp, 502, "NEWRELIC_ERROR", "NerdGraph answered with something that is "
                                                     "not a GraphQL response");
    } else {
        /* Any GraphQL error fails the call: NerdGraph answers a refused
         * NRQL or an account the key cannot see with the field null and an
         * error, and a partial answer would read as "no results". */
        cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(j, "data");
        if (msg[0] && account_error(errors)) {
            http_resp_error(resp, 404, "NEWRELIC_ACCOUNT_NOT_FOUND",
                            "Account not found: the API key has no access to the requested "
                            "account (%s)", msg);
            cJSON_Delete(d);
        } else if (msg[0]) {
            http_resp_error(resp, 400, "NEWRELIC_QUERY_ERROR", "New Relic refused the query: %s",
                            msg);
            cJSON_Delete(d);
        } else if (!cJSON_IsObject(d)) {
            http_resp_error(resp, 502, "NEWRELIC_ERROR", "NerdGraph answered without data");
            cJSON_Delete(d);
        } else {
            *data = d;
            ret = 0;
        }
    }
    cJSON_Delete(j);
    kit_call_resp_free(&r);
    return ret;
}

/* ---- connect ------------------------------------------------------------------------------ */

static const char *const Q_VALIDATE =
    "query($id: Int!) { actor { user { email } account(id: $id) { id name } } }";

/* The key and the account, checked with NerdGraph; the account's name in
 * name.  0, or -1 with the guide's message in resp. */
static int validate(worker_ctx *w, const newrelic_creds *c, char *name, size_t cap,
                    http_response *resp)
{
    cJSON *vars = cJSON_CreateObject();
    cJSON_AddNumberToObject(vars, "id", (double)c->account_id);
    char *body = newrelic_graphql_body(Q_VALIDATE, vars);
    cJSON_Delete(vars);
    if (!body) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    kit_call_resp r;
    int rc = nr_post(w, c, body, &r);
    free(body);
    cJSON *j = (rc == AUR_OK || r.status >= 400) ? kit_call_json(&r) : NULL;
    char msg[256] = "";
    const char *klass = NULL;
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(j, "errors");
    if (cJSON_IsArray(errors) && cJSON_GetArraySize(errors) > 0)
        first_error(errors, msg, sizeof(msg), &klass);
    const cJSON *actor = kit_json_path(j, "data.actor");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(actor, "user");
    const cJSON *account = cJSON_GetObjectItemCaseSensitive(actor, "account");
    int ret = -1;
    if (r.status == 401 || r.status == 403 || (msg[0] && auth_error(klass, msg)) ||
        (rc == AUR_OK && cJSON_IsObject(j) && !cJSON_IsObject(user) && !cJSON_IsObject(account))) {
        http_resp_error(resp, 400, "NEWRELIC_INVALID_API_KEY",
                        "Invalid API key: ensure the key starts with NRAK- and belongs to a user "
                        "with read access to APM, Infrastructure, Logs, and Alerts (region %s%s)",
                        c->region, !strcmp(c->region, "US") ? EU_HINT : "");
    } else if (rc != AUR_OK) {
        kit_call_error(&nr_errors, &r, "validating the API key", newrelic_timeout_ms(w), "",
                       resp);
    } else if (!cJSON_IsObject(account) ||
               newrelic_account_id(cJSON_GetObjectItemCaseSensitive(account, "id")) !=
                   c->account_id) {
        http_resp_error(resp, 400, "NEWRELIC_ACCOUNT_NOT_FOUND",
                        "Account not found: verify the Account ID %lld is correct and the API "
                        "key has access to that account%s", (long long)c->account_id,
                        !strcmp(c->region, "US") ? EU_HINT : "");
    } else {
        const char *n = api_json_str(account, "name");
        snprintf(name, cap, "%s", n && utf8_valid(n, strlen(n)) ? n : "");
        ret = 0;
    }
    cJSON_Delete(j);
    kit_call_resp_free(&r);
    return ret;
}

/* <AURORA_PUBLIC_URL or https://<Host>>/newrelic/webhook/<user>?org_id=<org>. */
static void webhook_url(const worker_ctx *w, const http_request *req, const auth_ctx *who,
                        char *out, size_t cap)
{
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    const char *host = req ? http_header_get(req, "host") : NULL;
    char base[512] = "";
    if (pub && strlen(pub) < sizeof(base)) {
        snprintf(base, sizeof(base), "%s", pub);
    } else if (host && *host && strlen(host) < 256) {
        int ok = 1;
        for (const char *p = host; *p && ok; p++)
            ok = isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':' || *p == '[' ||
                 *p == ']';
        if (ok)
            snprintf(base, sizeof(base), "https://%s", host);
    }
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        base[--n] = '\0';
    snprintf(out, cap, "%s/newrelic/webhook/%s?org_id=%s", base, who->user_id, who->org_id);
}

static void add_webhook_hint(const worker_ctx *w, const http_request *req, const auth_ctx *who,
                             cJSON *o)
{
    char url[1024];
    webhook_url(w, req, who, url, sizeof(url));
    cJSON *wh = cJSON_AddObjectToObject(o, "webhook");
    if (!wh)
        return;
    cJSON_AddStringToObject(wh, "url", url);
    cJSON_AddStringToObject(wh, "setup",
                            "New Relic > Alerts > Destinations > Webhook with this URL; then a "
                            "Workflow notifying it (the payload of docs/api.md, New Relic; the "
                            "default payload template also works)");
}

static void connect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    newrelic_creds c;
    memset(&c, 0, sizeof(c));
    cJSON *md = NULL;
    const char *api_key = api_json_str(body, "api_key");
    const cJSON *lk = cJSON_GetObjectItemCaseSensitive(body, "license_key");
    const char *license = cJSON_IsString(lk) && *lk->valuestring ? lk->valuestring : NULL;
    const cJSON *rg = cJSON_GetObjectItemCaseSensitive(body, "region");
    const char *region = newrelic_region_find(cJSON_IsString(rg) ? rg->valuestring : NULL);
    if (!api_key || !*api_key) {
        http_resp_error(resp, 400, "NEWRELIC_MISSING_FIELD",
                        "api_key is required: a User API key (NRAK-…) from one.newrelic.com > "
                        "Administration > API keys");
        goto out;
    }
    if (!newrelic_user_key_ok(api_key)) {
        http_resp_error(resp, 400, "NEWRELIC_INVALID_API_KEY",
                        "Invalid API key: ensure the key starts with NRAK- (a User key, not a "
                        "License or Browser key)");
        goto out;
    }
    c.account_id = newrelic_account_id(cJSON_GetObjectItemCaseSensitive(body, "account_id"));
    if (!c.account_id) {
        http_resp_error(resp, 400, "NEWRELIC_INVALID_ACCOUNT_ID",
                        "account_id must be your numeric New Relic Account ID (e.g. 1234567)");
        goto out;
    }
    if (!region || (rg && !cJSON_IsString(rg) && !cJSON_IsNull(rg))) {
        http_resp_error(resp, 400, "NEWRELIC_UNKNOWN_REGION",
                        "region must be \"US\" or \"EU\" (the data center of your account)");
        goto out;
    }
    if ((lk && !cJSON_IsNull(lk) && !cJSON_IsString(lk)) ||
        (license && !newrelic_license_key_ok(license))) {
        http_resp_error(resp, 400, "NEWRELIC_INVALID_LICENSE_KEY",
                        "license_key must be the 40-character License (ingest) key, or left out");
        goto out;
    }
    snprintf(c.region, sizeof(c.region), "%s", region);
    if (newrelic_endpoint(w, region, c.endpoint, sizeof(c.endpoint), resp) < 0)
        goto out;
    c.key_header = key_header(api_key, strlen(api_key));
    if (!c.key_header) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    char name[256];
    if (validate(w, &c, name, sizeof(name), resp) < 0)
        goto out;
    md = cJSON_CreateObject();
    if (!md) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    char account[32];
    snprintf(account, sizeof(account), "%lld", (long long)c.account_id);
    cJSON_AddStringToObject(md, "account_id", account);
    cJSON_AddStringToObject(md, "account_name", name);
    cJSON_AddStringToObject(md, "region", region);
    cJSON_AddBoolToObject(md, "license_key_set", license != NULL);
    const kit_field fields[] = { { "api-key", api_key }, { "license-key", license } };
    if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, NEWRELIC_ID, account, fields,
                          license ? 2 : 1, md, resp) < 0)
        goto out;
    log_info("newrelic: user %s of %s connected New Relic account %s (%s)", req->auth.user_id,
             req->auth.org_id, account, region);
    add_webhook_hint(w, req, &req->auth, md);
    cJSON_AddStringToObject(md, "graphql_url", c.endpoint);
    kit_connected_reply(resp, NEWRELIC_ID, md, NULL);
out:
    newrelic_creds_clear(&c);
    cJSON_Delete(md);
    secret_json_free(body); /* it held the keys */
}

/* ---- status and disconnect ----------------------------------------------------------------- */

static void status_fill(worker_ctx *w, const http_request *req, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "account_id", "account_name", "region", NULL };
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, NEWRELIC_ID, keys, out, &row, &md))
        return;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(out, "connected")))
        add_webhook_hint(w, req, who, out);
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void newrelic_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    status_fill(w, NULL, who, out);
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    status_fill(w, req, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    cJSON_AddStringToObject(o, "provider", NEWRELIC_ID);
    http_resp_json(resp, 200, o);
}

static void disconnect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    store_connector row;
    memset(&row, 0, sizeof(row));
    int rc = store_connector_get(w->store, req->auth.org_id, req->auth.user_id, NEWRELIC_ID, &row);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "MISSING_CONNECTOR", "%s", MSG_NOT_CONNECTED);
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    if (kit_secrets_delete_connection(w, &req->auth, NEWRELIC_ID, &row, resp) == 0) {
        if (store_connector_delete(w->store, req->auth.org_id, req->auth.user_id, NEWRELIC_ID) !=
            STORE_OK) {
            api_store_error(w, resp);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddBoolToObject(o, "disconnected", 1);
            cJSON_AddStringToObject(o, "provider", NEWRELIC_ID);
            http_resp_json(resp, 200, o);
        }
    }
    store_connector_free(&row);
}

/* ---- issue payload → alert ----------------------------------------------------------------- */

/* A member that a template may write as a string or as an array of strings
 * ({{ json annotations.title }} vs {{ json annotations.title.[0] }}): the
 * string, or the array's items joined with ", ", into out. */
static const char *text_or_list(const cJSON *o, const char *key, char *out, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    out[0] = '\0';
    if (cJSON_IsString(it)) {
        snprintf(out, cap, "%s", it->valuestring);
    } else if (cJSON_IsArray(it)) {
        size_t n = 0;
        for (const cJSON *e = it->child; e && n + 1 < cap; e = e->next) {
            if (!cJSON_IsString(e) || !*e->valuestring)
                continue;
            int k = snprintf(out + n, cap - n, "%s%s", n ? ", " : "", e->valuestring);
            if (k < 0 || (size_t)k >= cap - n)
                break;
            n += (size_t)k;
        }
    }
    /* a cut may have split a UTF-8 sequence: drop the partial tail */
    size_t len = strlen(out);
    while (len > 0 && !utf8_valid(out, len))
        out[--len] = '\0';
    return out[0] ? out : NULL;
}

/* The first string of a string-or-array member. */
static const char *first_of(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsArray(it))
        it = it->child;
    return cJSON_IsString(it) && *it->valuestring ? it->valuestring : NULL;
}

/* The issue id: "issueId" (the recommended template, NerdGraph) or "id"
 * (New Relic's default template: "id": {{ json issueId }}). */
static const char *issue_id_of(const cJSON *json)
{
    const char *id = api_json_str(json, "issueId");
    return id ? id : api_json_str(json, "id");
}

static int id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > NEWRELIC_ISSUE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("-_.:", id[i]))
            return 0;
    return 1;
}

int newrelic_state_map(const char *state, alert_state *out)
{
    if (!state)
        return 0;
    if (!strcasecmp(state, "ACTIVATED") || !strcasecmp(state, "CREATED"))
        *out = ALERT_FIRING;
    else if (!strcasecmp(state, "ACKNOWLEDGED"))
        *out = ALERT_ACKNOWLEDGED;
    else if (!strcasecmp(state, "CLOSED"))
        *out = ALERT_RESOLVED;
    else
        return 0;
    return 1;
}

int newrelic_issue_check(const cJSON *json, char *why, size_t whylen)
{
    if (!cJSON_IsObject(json)) {
        snprintf(why, whylen, "the body is not a JSON object");
        return -1;
    }
    static const char *const strs[] = { "issueId", "id", "state", "priority", "issueUrl",
                                        "issuePageUrl" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(json, strs[i]);
        if (it && !cJSON_IsString(it) && !cJSON_IsNull(it)) {
            snprintf(why, whylen, "%s must be a string", strs[i]);
            return -1;
        }
    }
    if (!id_ok(issue_id_of(json))) {
        snprintf(why, whylen, "issueId (or id: {{ json issueId }}) is missing or not an issue id");
        return -1;
    }
    alert_state st;
    const char *state = api_json_str(json, "state");
    if (!state || !newrelic_state_map(state, &st)) {
        snprintf(why, whylen, "state must be ACTIVATED, CREATED, ACKNOWLEDGED or CLOSED");
        return -1;
    }
    char t[8];
    if (!text_or_list(json, "title", t, sizeof(t)) &&
        !text_or_list(json, "issueTitle", t, sizeof(t))) {
        snprintf(why, whylen, "title ({{ json annotations.title.[0] }}) is missing");
        return -1;
    }
    return 0;
}

/* Epoch milliseconds (New Relic's createdAt) or seconds → seconds. */
static int64_t epoch_s(const cJSON *json, const char *key)
{
    int64_t v = 0;
    if (!api_json_int64(cJSON_GetObjectItemCaseSensitive(json, key), &v) || v <= 0)
        return 0;
    return v > 100000000000LL ? v / 1000 : v;
}

int newrelic_issue_map(const cJSON *json, newrelic_issue *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (newrelic_issue_check(json, why, whylen) < 0)
        return -1;
    snprintf(out->issue_id, sizeof(out->issue_id), "%s", issue_id_of(json));
    const char *state = api_json_str(json, "state");
    newrelic_state_map(state, &out->alert);
    for (size_t i = 0; state[i] && i + 1 < sizeof(out->state); i++)
        out->state[i] = (char)toupper((unsigned char)state[i]);
    if (!text_or_list(json, "title", out->title, sizeof(out->title)))
        text_or_list(json, "issueTitle", out->title, sizeof(out->title));
    /* service: the recommended template's "service" (accumulations.tag.service),
     * else the first impacted entity (default template: impactedEntities;
     * NerdGraph: entityNames). */
    const char *svc = first_of(json, "service");
    if (!svc)
        svc = first_of(json, "impactedEntities");
    if (!svc)
        svc = first_of(json, "entityNames");
    if (svc && utf8_valid(svc, strlen(svc)) && strlen(svc) < sizeof(out->service))
        snprintf(out->service, sizeof(out->service), "%s", svc);
    const char *prio = api_json_str(json, "priority");
    snprintf(out->severity, sizeof(out->severity), "%s",
             prio && *prio ? incident_severity_normalize(prio) : "unknown");
    if (!text_or_list(json, "description", out->message, sizeof(out->message)))
        text_or_list(json, "alertConditionNames", out->message, sizeof(out->message));
    out->url = api_json_str(json, "issueUrl");
    if (!out->url)
        out->url = api_json_str(json, "issuePageUrl");
    out->occurred_at = epoch_s(json, "createdAt");
    if (!out->occurred_at)
        out->occurred_at = epoch_s(json, "activatedAt");
    snprintf(out->dedup_key, sizeof(out->dedup_key), "%s:%s", out->issue_id, out->state);
    return 0;
}

int newrelic_ingest(worker_ctx *w, const char *org_id, const char *user_id,
                    const char *delivery_id, const newrelic_issue *is, const cJSON *raw,
                    ingest_result *result, char *err, size_t errlen)
{
    incident_alert a = {
        .source = NEWRELIC_ID,
        .delivery_id = delivery_id,
        .index = 0,
        .dedup_key = is->dedup_key,
        .source_alert_id = is->issue_id,
        .fingerprint = is->issue_id,
        .state = is->alert,
        .title = is->title,
        .service = is->service,
        .severity = is->severity,
        .message = is->message[0] ? is->message : NULL,
        .url = is->url,
        .occurred_at = is->occurred_at,
        .raw = raw,
    };
    incident_outcome o;
    if (incident_ingest(w, org_id, user_id, &a, (int64_t)time(NULL), &o, err, errlen) < 0)
        return -1;
    if (result)
        *result = o.result;
    static const char *const results[] = { "created", "attached", "unmatched", "duplicate" };
    log_info("newrelic: issue %s (%s) via %s: %s%s%s", is->issue_id, is->state, delivery_id,
             results[o.result], o.incident_id[0] ? " incident " : "", o.incident_id);
    return 0;
}

/* ---- webhook intake -------------------------------------------------------------------------- */

/* Per-user deliveries per minute, counted in the store (all replicas). */
static int rate_take(worker_ctx *w, const kit_tenant *t, http_response *resp)
{
    int64_t limit = server_setting_int(w->cfg, "AURORA_NEWRELIC_WEBHOOK_RATE_PER_MINUTE");
    if (limit <= 0)
        limit = 600;
    char key[2 * STORE_ID_LEN + 32];
    snprintf(key, sizeof(key), "newrelic-webhook:%s:%s", t->org_id, t->user_id);
    return api_rate_take(w, key, limit, RATE_WINDOW_S,
                         "New Relic webhook deliveries for this user", NULL, resp);
}

static int wh_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out, http_response *resp)
{
    kit_tenant t;
    if (kit_tenant_resolve(w, NEWRELIC_ID, req, http_param(req, "user_id"),
                           KIT_TENANT_CONNECTED, MSG_WEBHOOK_UNKNOWN, &t, resp) < 0 ||
        rate_take(w, &t, resp) < 0)
        return -1;
    snprintf(out->org_id, sizeof(out->org_id), "%s", t.org_id);
    snprintf(out->tenant_key, sizeof(out->tenant_key), "%s", t.user_id);
    return 0;
}

static int wh_check(worker_ctx *w, const http_request *req, const cJSON *json,
                    http_response *resp)
{
    (void)w;
    (void)req;
    char why[160];
    if (newrelic_issue_check(json, why, sizeof(why)) < 0) {
        http_resp_error(resp, 400, "NEWRELIC_BAD_PAYLOAD",
                        "Not a New Relic workflow payload: %s (see the payload template in "
                        "docs/api.md, New Relic)", why);
        return -1;
    }
    return 0;
}

static int wh_process(worker_ctx *w, const store_webhook_delivery *d, char *err, size_t errlen)
{
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    newrelic_issue is;
    char why[160];
    if (newrelic_issue_map(json, &is, why, sizeof(why)) < 0) {
        log_warn("newrelic: delivery %s is not an issue payload (%s); ignored", d->id, why);
        cJSON_Delete(json);
        return KIT_WH_IGNORED;
    }
    is.occurred_at = kit_webhook_occurred_at(d, is.occurred_at); /* no createdAt */
    int rc = newrelic_ingest(w, d->org_id, d->tenant_key[0] ? d->tenant_key : NULL, d->id, &is,
                             json, NULL, err, errlen);
    cJSON_Delete(json);
    return rc < 0 ? KIT_WH_FAILED : KIT_WH_PROCESSED;
}

static const kit_webhook_spec newrelic_webhook = {
    .connector = NEWRELIC_ID,
    .max_body = WEBHOOK_MAX_BODY,
    /* New Relic destinations do not sign: the per-user URL is the credential. */
    .policy = KIT_WH_UNSIGNED,
    .action_json = "state",
    .require_json_object = 1,
    .content_type = "application/json",
    .keys = wh_keys,
    .check = wh_check,
    .process = wh_process,
};

static void webhook_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &newrelic_webhook, req, resp);
}

/* The recovery sweep: a delivery committed right before a crash, or whose
 * processing failed, is processed here. */
static long webhook_sweep_task(worker_ctx *w)
{
    int done = kit_webhook_process_open(w, &newrelic_webhook, SWEEP_BATCH, (int64_t)time(NULL));
    if (done > 0)
        log_info("newrelic: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("newrelic: webhook recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events(w, NEWRELIC_ID, req, resp);
}

static void newrelic_register(void)
{
    router_add_outbound(HTTP_POST, "/newrelic/connect", ROUTE_AUTH_API, connect_route);
    router_add(HTTP_GET, "/newrelic/status", ROUTE_AUTH_API, status_route);
    /* Deletes the connection's secrets: the backend may be remote. */
    router_add_outbound(HTTP_POST, "/newrelic/disconnect", ROUTE_AUTH_API, disconnect_route);
    newrelic_api_register();
    newrelic_poll_register();
    if (kit_webhook_register(&newrelic_webhook) < 0)
        return; /* logged; not mounted rather than half-working */
    router_add(HTTP_POST, "/newrelic/webhook/{user_id}", ROUTE_PUBLIC, webhook_route);
    router_add(HTTP_GET, "/api/newrelic/webhook-events", ROUTE_AUTH_API, events_route);
    if (periodic_add("newrelic-webhook-sweep", WORKER_POOL_STORE, 0, webhook_sweep_task) < 0)
        log_error("newrelic: cannot register the webhook recovery sweep (periodic table full)");
}

const connector connector_newrelic = {
    .id = NEWRELIC_ID,
    .name = "New Relic",
    .register_routes = newrelic_register,
    .status = newrelic_status,
    .cloud = NULL,
    .settings = newrelic_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
