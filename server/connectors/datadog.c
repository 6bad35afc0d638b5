/* datadog.c — the Datadog connector (connector guide: Observability Tools >
 * Datadog): an API key + an application key + a site, and monitor alerts
 * pushed by Datadog's Webhooks integration turned into incidents.
 *
 *   POST /datadog/connect {api_key, app_key, site, webhook_secret?}
 *        site: US1 datadoghq.com, US3 us3.datadoghq.com, US5 us5.datadoghq.com,
 *        EU datadoghq.eu (the guide's), US1-FED ddog-gov.com, AP1
 *        ap1.datadoghq.com (also offered by Datadog); the code or the domain.
 *        Both keys are checked with Datadog before anything is stored:
 *        GET /api/v1/validate (DD-API-KEY: "Check if the API key (not the APP
 *        key) is valid. If invalid, a 403 is returned"), then GET
 *        /api/v1/monitor?page=0&page_size=1 with DD-APPLICATION-KEY too (what
 *        the read API and the guide's setup need: reading monitors).
 *        Keys go to the secrets backend (…/datadog/api-key, …/datadog/app-key),
 *        the site to the row's metadata.
 *   GET  /datadog/status               connection, site and the webhook to set up
 *   POST /datadog/webhook/{user_id}    Datadog's webhook deliveries (public)
 *   GET  /datadog/monitors, /datadog/events   datadog_api.c
 * Disconnect: DELETE /api/connectors/datadog (row and both secrets); the
 * user's webhook URL then answers 404.
 *
 * The webhook (kit_webhook.h): Datadog cannot sign a delivery, so the
 * per-user URL is the credential (KIT_WH_UNSIGNED) and its tenant is
 * kit_tenant_resolve(…, KIT_TENANT_CONNECTED, …): an unknown or
 * disconnected user is a 404.  An optional webhook_secret given at connect
 * (only its SHA-256 kept) must then come as the X-Aurora-Webhook-Secret
 * custom header of every delivery (401 otherwise).  Datadog's body is the user's template filled
 * with $VARIABLES; the recommended one and Datadog's default one are both
 * understood (docs/api.md).  Its $ID is the delivery id (Datadog retries a
 * 5xx up to 5 times with the same $ID: one row).  Per-user rate limit in the
 * store (every replica counts the same window).  Processing (store pool):
 * one delivery → one incident_ingest(). */
#include "datadog.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "crypto.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "kit_tenant.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "secret.h"
#include "utf8.h"

extern const connector connector_datadog;

#define WEBHOOK_MAX_BODY (256 * 1024) /* Datadog's $EVENT_MSG is a few KiB at most */
#define RATE_WINDOW_S 60
#define SWEEP_BATCH 100
#define SWEEP_INTERVAL_S 20
#define WEBHOOK_NAME "aurora" /* the guide's webhook name: monitors say @webhook-aurora */
#define MSG_NOT_CONNECTED "Datadog is not connected for this user: POST /datadog/connect first"
#define MSG_WEBHOOK_UNKNOWN "Unknown webhook user or Datadog not connected"
/* Optional shared secret of the webhook: Datadog cannot sign, but it sends
 * the custom headers the user sets on the webhook. */
#define SECRET_HEADER "x-aurora-webhook-secret"
#define SECRET_HEADER_SHOWN "X-Aurora-Webhook-Secret"
#define SECRET_MIN 24 /* long enough that its stored SHA-256 cannot be searched */
#define SECRET_MAX 256
#define MD_SECRET_HASH "webhook_secret_sha256"

static const config_def datadog_settings[] = {
    { DATADOG_BASE_SETTING, "datadog.base_url", CFG_STRING, NULL,
      "Datadog connector: API base URL used instead of the site's https://api.<site domain> "
      "(a proxy, tests); https unless loopback", 0 },
    { "AURORA_DATADOG_WEBHOOK_RATE_PER_MINUTE", "datadog.webhook_rate_per_minute", CFG_INT, "600",
      "Datadog connector: webhook deliveries accepted per user and minute (then 429 with "
      "Retry-After)", 0, 1, 1000000 },
    { NULL },
};

/* ---- sites ------------------------------------------------------------------------------ */

static const datadog_site g_sites[] = {
    { "US1", "datadoghq.com" },  { "US3", "us3.datadoghq.com" }, { "US5", "us5.datadoghq.com" },
    { "EU", "datadoghq.eu" },    { "US1-FED", "ddog-gov.com" },  { "AP1", "ap1.datadoghq.com" },
};
#define N_SITES (sizeof(g_sites) / sizeof(g_sites[0]))

const char *datadog_site_list(void) { return "US1, US3, US5, EU, US1-FED, AP1"; }

/* Site codes compared without case, '_' read as '-' ("us1_fed"), EU1 as EU. */
static int code_eq(const char *given, const char *code)
{
    for (; *given && *code; given++, code++) {
        char g = *given == '_' ? '-' : (char)toupper((unsigned char)*given);
        if (g != *code)
            return 0;
    }
    return !*given && !*code;
}

const datadog_site *datadog_site_find(const char *name)
{
    if (!name)
        return NULL;
    char n[160];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof(n))
        return NULL;
    memcpy(n, name, len + 1);
    char *p = n;
    if (!strncasecmp(p, "https://", 8))
        p += 8;
    len = strlen(p);
    while (len > 0 && p[len - 1] == '/')
        p[--len] = '\0';
    for (size_t i = 0; i < N_SITES; i++)
        if (code_eq(p, g_sites[i].code))
            return &g_sites[i];
    if (code_eq(p, "EU1"))
        return &g_sites[3];
    /* Datadog names sites by their web host (app.datadoghq.eu) and their
     * APIs by api.<domain>. */
    if (!strncasecmp(p, "app.", 4) || !strncasecmp(p, "api.", 4))
        p += 4;
    for (size_t i = 0; i < N_SITES; i++)
        if (!strcasecmp(p, g_sites[i].domain))
            return &g_sites[i];
    return NULL;
}

int datadog_api_base(const worker_ctx *w, const datadog_site *s, char *out, size_t cap,
                     http_response *resp)
{
    const char *override = server_setting(w->cfg, DATADOG_BASE_SETTING);
    if (override) {
        char why[256];
        if (kit_base_url_check(override, 0, why, sizeof(why)) != AUR_OK ||
            strlen(override) >= cap) {
            log_error("datadog: %s %s", DATADOG_BASE_SETTING, why);
            http_resp_error(resp, 500, "DATADOG_MISCONFIGURED",
                            "%s is not a usable base URL (https, or http to loopback)",
                            DATADOG_BASE_SETTING);
            return -1;
        }
        snprintf(out, cap, "%s", override);
    } else {
        snprintf(out, cap, "https://api.%s", s->domain);
    }
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

long datadog_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_datadog); }

/* ---- keys --------------------------------------------------------------------------------- */

/* An API or application key as Datadog issues them (hex today; letters,
 * digits, '-', '_' and '.' allowed for what may come): they travel in a
 * header, so nothing else. */
static int key_ok(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n < 8 || n > DATADOG_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)k[i]) && k[i] != '-' && k[i] != '_' && k[i] != '.')
            return 0;
    return 1;
}

/* A webhook secret: printable ASCII without spaces (it travels as a header
 * value Datadog sends), SECRET_MIN to SECRET_MAX long. */
static int secret_ok(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n < SECRET_MIN || n > SECRET_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= ' ' || v[i] > '~')
            return 0;
    return 1;
}

static char *header_with(const char *name, const char *value, size_t len)
{
    size_t n = strlen(name) + 2 + len + 1;
    char *h = malloc(n);
    if (h)
        snprintf(h, n, "%s: %.*s", name, (int)len, value);
    return h;
}

void datadog_creds_clear(datadog_creds *c)
{
    if (!c)
        return;
    secret_free(c->api_key_header);
    secret_free(c->app_key_header);
    c->api_key_header = c->app_key_header = NULL;
}

static int read_field(worker_ctx *w, const cJSON *md, const char *field, const char *name,
                      char **header, http_response *resp)
{
    const cJSON *refs = cJSON_GetObjectItemCaseSensitive(md, "secret_refs");
    const char *ref = api_json_str(refs, field);
    unsigned char *val = NULL;
    size_t len = 0;
    if (!ref) {
        http_resp_error(resp, 500, "DATADOG_CONNECTION_CORRUPT",
                        "the stored Datadog connection names no %s; connect again", field);
        return -1;
    }
    if (kit_secret_get(w, ref, &val, &len, 404, "DATADOG_NOT_CONNECTED",
                       "the Datadog keys are no longer stored; connect Datadog again", resp) < 0)
        return -1;
    /* What connect stored was checked; a value changed in the backend since
     * must not put a line break (another header) into the request. */
    char key[DATADOG_KEY_MAX + 1];
    int ok = len <= DATADOG_KEY_MAX;
    if (ok) {
        memcpy(key, val, len);
        key[len] = '\0';
        ok = strlen(key) == len && key_ok(key);
        secret_wipe(key, sizeof(key));
    }
    *header = ok ? header_with(name, (const char *)val, len) : NULL;
    secrets_free(val, len);
    if (!ok) {
        http_resp_error(resp, 500, "DATADOG_CONNECTION_CORRUPT",
                        "the stored Datadog %s is not a key; connect again", field);
        return -1;
    }
    if (!*header) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    return 0;
}

int datadog_creds_load(worker_ctx *w, const auth_ctx *who, datadog_creds *c,
                       http_response *resp)
{
    memset(c, 0, sizeof(*c));
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return -1;
    store_connector row;
    cJSON *md = NULL;
    if (kit_row_load(w, who, DATADOG_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    int rc = -1;
    c->site = datadog_site_find(api_json_str(md, "site"));
    if (!c->site)
        http_resp_error(resp, 500, "DATADOG_CONNECTION_CORRUPT",
                        "the stored Datadog connection has no valid site; connect again");
    else if (datadog_api_base(w, c->site, c->base, sizeof(c->base), resp) == 0 &&
             read_field(w, md, "api-key", "DD-API-KEY", &c->api_key_header, resp) == 0 &&
             read_field(w, md, "app-key", "DD-APPLICATION-KEY", &c->app_key_header, resp) == 0)
        rc = 0;
    if (rc < 0)
        datadog_creds_clear(c);
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

/* ---- connect -------------------------------------------------------------------------------- */

static const kit_call_errors dd_errors = {
    .service = "Datadog API",
    .timeout = "DATADOG_TIMEOUT",
    .unreachable = "DATADOG_UNREACHABLE",
    .denied = "DATADOG_DENIED",
    .failed = "DATADOG_ERROR",
};

/* One GET of a validation call; rc of kit_call, answer in *r (free it). */
static int dd_get(worker_ctx *w, const char *base, const char *path, const char *const *headers,
                  kit_call_resp *r)
{
    char url[DATADOG_URL_MAX + 128];
    long timeout = datadog_timeout_ms(w);
    if (kit_url_fmt(url, sizeof(url), base, "%s", path) < 0) {
        memset(r, 0, sizeof(*r));
        snprintf(r->err, sizeof(r->err), "Datadog API URL too long");
        return r->code = AUR_E_INVALID;
    }
    kit_call_req q = { .provider = "Datadog API", .base_url = base, .url = url,
                       .headers = headers, .attempt_timeout_ms = timeout, .deadline_ms = timeout,
                       .max_response = 1024 * 1024 };
    return kit_call(&q, r);
}

/* 0, or -1 with the guide-level message in resp. */
static int validate_keys(worker_ctx *w, const char *base, const datadog_site *s,
                         const char *api_h, const char *app_h, http_response *resp)
{
    const char *h1[] = { "Accept: application/json", api_h, NULL };
    kit_call_resp r;
    int rc = dd_get(w, base, "/api/v1/validate", h1, &r);
    cJSON *j = rc == AUR_OK ? kit_call_json(&r) : NULL;
    int valid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "valid"));
    cJSON_Delete(j);
    if (rc == AUR_E_DENIED || (rc == AUR_OK && !valid)) {
        http_resp_error(resp, 400, "DATADOG_INVALID_API_KEY",
                        "Invalid Datadog API key for site %s (%s): Datadog refused it "
                        "(HTTP %ld from /api/v1/validate); check the key and that your account "
                        "is on this site", s->code, s->domain, r.status);
        kit_call_resp_free(&r);
        return -1;
    }
    if (rc != AUR_OK) {
        kit_call_error(&dd_errors, &r, "validating the API key", datadog_timeout_ms(w), "", resp);
        kit_call_resp_free(&r);
        return -1;
    }
    kit_call_resp_free(&r);

    const char *h2[] = { "Accept: application/json", api_h, app_h, NULL };
    rc = dd_get(w, base, "/api/v1/monitor?page=0&page_size=1", h2, &r);
    j = rc == AUR_OK ? kit_call_json(&r) : NULL;
    int is_list = cJSON_IsArray(j);
    cJSON_Delete(j);
    if (rc == AUR_E_DENIED) {
        http_resp_error(resp, 400, "DATADOG_INVALID_APP_KEY",
                        "Invalid Datadog application key for site %s (HTTP %ld from "
                        "/api/v1/monitor): check the key, that it belongs to the same "
                        "organization as the API key and that it may read monitors "
                        "(monitors_read)", s->code, r.status);
        kit_call_resp_free(&r);
        return -1;
    }
    if (rc != AUR_OK || !is_list) {
        if (rc == AUR_OK)
            http_resp_error(resp, 502, "DATADOG_ERROR",
                            "Datadog API answered /api/v1/monitor with something that is not a "
                            "monitor list");
        else
            kit_call_error(&dd_errors, &r, "validating the application key",
                           datadog_timeout_ms(w), "", resp);
        kit_call_resp_free(&r);
        return -1;
    }
    kit_call_resp_free(&r);
    return 0;
}

/* <AURORA_PUBLIC_URL or https://<Host>>/datadog/webhook/<user>?org_id=<org>:
 * what the user pastes into Datadog.  Neither known: the path alone.  The
 * org_id keeps the URL working if the user later joins another org. */
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
    snprintf(out, cap, "%s/datadog/webhook/%s?org_id=%s", base, who->user_id, who->org_id);
}

static void add_webhook_hint(const worker_ctx *w, const http_request *req, const auth_ctx *who,
                             const cJSON *md, cJSON *o)
{
    int has_secret = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(md, MD_SECRET_HASH));
    char url[1024];
    webhook_url(w, req, who, url, sizeof(url));
    cJSON *wh = cJSON_AddObjectToObject(o, "webhook");
    if (!wh)
        return;
    cJSON_AddStringToObject(wh, "name", WEBHOOK_NAME);
    cJSON_AddStringToObject(wh, "url", url);
    cJSON_AddStringToObject(wh, "notify", "@webhook-" WEBHOOK_NAME);
    cJSON_AddBoolToObject(wh, "secret_configured", has_secret);
    if (has_secret)
        cJSON_AddStringToObject(wh, "secret_header", SECRET_HEADER_SHOWN);
    cJSON_AddStringToObject(wh, "setup",
                            "Datadog > Integrations > Webhooks > + New: name 'aurora', this URL, "
                            "the payload of docs/api.md (Datadog's default payload also works); "
                            "then add @webhook-aurora to your monitors' notifications");
}

static void connect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    cJSON *md = NULL;
    char *api_h = NULL, *app_h = NULL;
    const char *api_key = api_json_str(body, "api_key");
    const char *app_key = api_json_str(body, "app_key");
    if (!app_key)
        app_key = api_json_str(body, "application_key");
    const char *site_name = api_json_str(body, "site");
    const cJSON *whs = cJSON_GetObjectItemCaseSensitive(body, "webhook_secret");
    if (whs && !cJSON_IsNull(whs) && !secret_ok(cJSON_IsString(whs) ? whs->valuestring : NULL)) {
        http_resp_error(resp, 400, "DATADOG_BAD_WEBHOOK_SECRET",
                        "webhook_secret must be %d-%d printable characters without spaces "
                        "(Datadog sends it as the custom header " SECRET_HEADER_SHOWN ")",
                        SECRET_MIN, SECRET_MAX);
        goto out;
    }
    if (!api_key || !*api_key || !app_key || !*app_key) {
        http_resp_error(resp, 400, "DATADOG_MISSING_FIELD",
                        "api_key and app_key are required (Datadog > Organization Settings > "
                        "API Keys / Application Keys)");
        goto out;
    }
    if (!key_ok(api_key)) {
        http_resp_error(resp, 400, "DATADOG_INVALID_API_KEY",
                        "Invalid Datadog API key: expected the key's 8-256 letters and digits "
                        "as Datadog shows it");
        goto out;
    }
    if (!key_ok(app_key)) {
        http_resp_error(resp, 400, "DATADOG_INVALID_APP_KEY",
                        "Invalid Datadog application key: expected the key's 8-256 letters and "
                        "digits as Datadog shows it");
        goto out;
    }
    const datadog_site *s = datadog_site_find(site_name && *site_name ? site_name : "US1");
    if (!s) {
        char shown[65];
        kit_code_text(site_name, shown, sizeof(shown));
        http_resp_error(resp, 400, "DATADOG_UNKNOWN_SITE",
                        "Unknown Datadog site '%s': use one of %s, or its domain "
                        "(datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, "
                        "ddog-gov.com, ap1.datadoghq.com)", shown, datadog_site_list());
        goto out;
    }
    char base[DATADOG_URL_MAX];
    if (datadog_api_base(w, s, base, sizeof(base), resp) < 0)
        goto out;
    api_h = header_with("DD-API-KEY", api_key, strlen(api_key));
    app_h = header_with("DD-APPLICATION-KEY", app_key, strlen(app_key));
    if (!api_h || !app_h) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    if (validate_keys(w, base, s, api_h, app_h, resp) < 0)
        goto out;
    md = cJSON_CreateObject();
    if (!md) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    cJSON_AddStringToObject(md, "site", s->code);
    cJSON_AddStringToObject(md, "site_domain", s->domain);
    if (cJSON_IsString(whs)) {
        /* Only its digest is kept: the header is compared by digest. */
        char hex[65];
        crypto_sha256_hex(whs->valuestring, strlen(whs->valuestring), hex);
        cJSON_AddStringToObject(md, MD_SECRET_HASH, hex);
    }
    const kit_field fields[] = { { "api-key", api_key }, { "app-key", app_key } };
    if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, DATADOG_ID, s->domain, fields,
                          2, md, resp) < 0)
        goto out;
    log_info("datadog: user %s of %s connected Datadog (site %s)", req->auth.user_id,
             req->auth.org_id, s->code);
    add_webhook_hint(w, req, &req->auth, md, md);
    cJSON_AddStringToObject(md, "api_url", base);
    static const char *const drop[] = { MD_SECRET_HASH, NULL };
    kit_connected_reply(resp, DATADOG_ID, md, drop);
out:
    secret_free(api_h);
    secret_free(app_h);
    cJSON_Delete(md);
    secret_json_free(body); /* it held both keys */
}

/* ---- status --------------------------------------------------------------------------------- */

static void status_fill(worker_ctx *w, const http_request *req, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "site", "site_domain", NULL };
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, DATADOG_ID, keys, out, &row, &md))
        return;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(out, "connected")))
        add_webhook_hint(w, req, who, md, out);
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void datadog_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
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
    cJSON_AddStringToObject(o, "provider", DATADOG_ID);
    http_resp_json(resp, 200, o);
}

/* ---- webhook payload ------------------------------------------------------------------------ */

/* String members a template may carry; each must be a string when present
 * (numbers too for the ids and times, which a template may leave unquoted). */
static const char *const str_fields[] = {
    "title",      "body",           "alert_transition", "aggreg_key",    "priority",
    "alert_priority", "event_type", "hostname",         "link",          "alert_scope",
    "alert_cycle_key", "alert_type", "alert_status",    "text_only_msg", "alert_title",
};
static const char *const id_fields[] = { "id", "alert_id", "date", "last_updated" };

/* The member as text: a string, or an integer written in decimal into buf. */
static const char *text_of(const cJSON *o, const char *key, char *buf, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(it))
        return it->valuestring;
    int64_t v;
    if (buf && api_json_int64(it, &v)) {
        snprintf(buf, cap, "%lld", (long long)v);
        return buf;
    }
    return NULL;
}

static int nonempty(const char *s)
{
    if (!s)
        return 0;
    while (*s == ' ' || *s == '\t')
        s++;
    return *s != '\0';
}

int datadog_payload_check(const cJSON *json, char *why, size_t whylen)
{
    if (!cJSON_IsObject(json)) {
        snprintf(why, whylen, "the body is not a JSON object");
        return -1;
    }
    for (size_t i = 0; i < sizeof(str_fields) / sizeof(str_fields[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(json, str_fields[i]);
        if (it && !cJSON_IsString(it) && !cJSON_IsNull(it)) {
            snprintf(why, whylen, "%s must be a string", str_fields[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof(id_fields) / sizeof(id_fields[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(json, id_fields[i]);
        char buf[32];
        if (it && !cJSON_IsNull(it) && !text_of(json, id_fields[i], buf, sizeof(buf))) {
            snprintf(why, whylen, "%s must be a string or an integer", id_fields[i]);
            return -1;
        }
    }
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(json, "tags");
    if (tags && !cJSON_IsString(tags) && !cJSON_IsNull(tags)) {
        int ok = cJSON_IsArray(tags);
        for (const cJSON *t = ok ? tags->child : NULL; t && ok; t = t->next)
            ok = cJSON_IsString(t);
        if (!ok) {
            snprintf(why, whylen, "tags must be a string or an array of strings");
            return -1;
        }
    }
    const cJSON *org = cJSON_GetObjectItemCaseSensitive(json, "org");
    if (org && !cJSON_IsObject(org) && !cJSON_IsNull(org)) {
        snprintf(why, whylen, "org must be an object");
        return -1;
    }
    const char *title = api_json_str(json, "title");
    if (!nonempty(title))
        title = api_json_str(json, "alert_title");
    if (!nonempty(title)) {
        snprintf(why, whylen, "title ($EVENT_TITLE) is missing or empty");
        return -1;
    }
    char b1[32], b2[32];
    if (!nonempty(text_of(json, "id", b1, sizeof(b1))) &&
        !nonempty(text_of(json, "alert_id", b2, sizeof(b2))) &&
        !nonempty(api_json_str(json, "aggreg_key"))) {
        snprintf(why, whylen, "none of id ($ID), alert_id ($ALERT_ID), aggreg_key ($AGGREG_KEY)");
        return -1;
    }
    return 0;
}

/* Lower-case letters and digits of word, the rest dropped ("Re-No Data" →
 * "renodata"), into out. */
static void squash(const char *word, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = word; p && *p && n + 1 < cap; p++)
        if (isalnum((unsigned char)*p))
            out[n++] = (char)tolower((unsigned char)*p);
    out[n] = '\0';
}

int datadog_transition_state(const char *word, alert_state *out)
{
    /* $ALERT_TRANSITION's values (Datadog's Webhooks integration):
     * Triggered / Re-Triggered, Warn / Re-Warn, No Data / Re-No Data,
     * Renotify, Recovered. */
    static const struct {
        const char *w;
        alert_state st;
    } words[] = {
        { "triggered", ALERT_FIRING }, { "retriggered", ALERT_FIRING }, { "warn", ALERT_FIRING },
        { "rewarn", ALERT_FIRING },    { "warning", ALERT_FIRING },     { "nodata", ALERT_FIRING },
        { "renodata", ALERT_FIRING },  { "renotify", ALERT_FIRING },    { "alert", ALERT_FIRING },
        { "recovered", ALERT_RESOLVED }, { "resolved", ALERT_RESOLVED },
        { "ok", ALERT_RESOLVED },      { "success", ALERT_RESOLVED },
    };
    char s[32];
    if (!word || strlen(word) >= sizeof(s))
        return 0;
    squash(word, s, sizeof(s));
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (!strcmp(s, words[i].w)) {
            *out = words[i].st;
            return 1;
        }
    return 0;
}

/* A title's leading bracket groups: "[P1] [Triggered on {host:a,env:b}] CPU
 * high" → prio "P1", word "Triggered", scope "host:a,env:b", rest "CPU high". */
typedef struct {
    char prio[8], word[32], scope[256];
    const char *rest;
} title_parts;

static void title_parse(const char *title, title_parts *tp)
{
    memset(tp, 0, sizeof(*tp));
    const char *p = title;
    while (*p == ' ')
        p++;
    for (int groups = 0; *p == '[' && groups < 4; groups++) {
        const char *end = strchr(p, ']');
        if (!end)
            break;
        size_t n = (size_t)(end - p - 1);
        const char *in = p + 1;
        if (n >= 2 && n <= 3 && (in[0] == 'P' || in[0] == 'p') && isdigit((unsigned char)in[1]))
            snprintf(tp->prio, sizeof(tp->prio), "%.*s", (int)n, in);
        else if (!tp->word[0]) {
            const char *on = NULL;
            for (const char *q = in; q + 4 <= end; q++)
                if (!strncmp(q, " on ", 4)) {
                    on = q;
                    break;
                }
            size_t wl = on ? (size_t)(on - in) : n;
            if (wl < sizeof(tp->word))
                snprintf(tp->word, sizeof(tp->word), "%.*s", (int)wl, in);
            if (on) {
                const char *sc = on + 4;
                size_t sl = (size_t)(end - sc);
                if (sl >= 2 && sc[0] == '{' && sc[sl - 1] == '}') {
                    sc++;
                    sl -= 2;
                }
                if (sl < sizeof(tp->scope))
                    snprintf(tp->scope, sizeof(tp->scope), "%.*s", (int)sl, sc);
            }
        }
        p = end + 1;
        while (*p == ' ')
            p++;
    }
    tp->rest = p;
}

/* The value of the first "<key>:<value>" item of a Datadog tag list
 * ("env:prod,service:checkout" or an array of such strings). */
static void tag_value(const cJSON *tags, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    size_t kl = strlen(key);
    const cJSON *one = NULL;
    const cJSON *it = cJSON_IsArray(tags) ? tags->child : NULL;
    const char *list = cJSON_IsString(tags) ? tags->valuestring : NULL;
    for (;;) {
        const char *s;
        size_t len;
        if (list) {
            while (*list == ' ' || *list == ',')
                list++;
            if (!*list)
                return;
            const char *c = strchr(list, ',');
            s = list;
            len = c ? (size_t)(c - list) : strlen(list);
            list += len;
        } else {
            if (!it)
                return;
            one = it;
            it = it->next;
            if (!cJSON_IsString(one))
                continue;
            s = one->valuestring;
            len = strlen(s);
        }
        while (len > 0 && s[len - 1] == ' ')
            len--;
        if (len > kl + 1 && !strncmp(s, key, kl) && s[kl] == ':') {
            size_t vl = len - kl - 1;
            if (vl < cap)
                snprintf(out, cap, "%.*s", (int)vl, s + kl + 1);
            return;
        }
    }
}

/* $DATE / $LAST_UPDATED: epoch milliseconds (Datadog's examples), or
 * seconds; anything else 0. */
static int64_t epoch_of(const cJSON *json, const char *key)
{
    char buf[32];
    const char *t = text_of(json, key, buf, sizeof(buf));
    if (!t || !*t || strlen(t) > 16)
        return 0;
    for (const char *p = t; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    long long v = strtoll(t, NULL, 10);
    if (v > 100000000000LL)
        v /= 1000;
    return v > 0 ? (int64_t)v : 0;
}

/* An identifier the incident store accepts as is (text, no control
 * characters, at most INC_KEY_MAX bytes), else its digest. */
static void fingerprint_set(datadog_alert *a, const char *fp)
{
    size_t n = strlen(fp);
    int ok = n < sizeof(a->fingerprint) && utf8_valid(fp, n);
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)fp[i] >= 0x20 && fp[i] != 0x7f;
    if (ok) {
        memcpy(a->fingerprint, fp, n + 1);
        return;
    }
    char hex[65];
    crypto_sha256_hex(fp, n, hex);
    snprintf(a->fingerprint, sizeof(a->fingerprint), "datadog:sha256:%s", hex);
}

static const char *severity_of(const cJSON *json, const title_parts *tp, const char *transition)
{
    const char *candidates[] = { api_json_str(json, "alert_priority"), tp->prio,
                                 api_json_str(json, "priority") };
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        const char *s = nonempty(candidates[i]) ? incident_severity_normalize(candidates[i]) : NULL;
        if (s && strcmp(s, "unknown"))
            return s;
    }
    char t[32];
    squash(transition, t, sizeof(t));
    if (!strcmp(t, "warn") || !strcmp(t, "rewarn") || !strcmp(t, "warning"))
        return "medium";
    const char *type = api_json_str(json, "alert_type");
    if (type && !strcasecmp(type, "error"))
        return "high";
    if (type && !strcasecmp(type, "warning"))
        return "medium";
    if (type && (!strcasecmp(type, "info") || !strcasecmp(type, "success")))
        return "info";
    return "unknown";
}

int datadog_map_alert(const cJSON *json, datadog_alert *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (datadog_payload_check(json, why, whylen) < 0)
        return -1;
    const char *title = api_json_str(json, "title");
    if (!nonempty(title))
        title = api_json_str(json, "alert_title");
    title_parts tp;
    title_parse(title, &tp);
    snprintf(out->title, sizeof(out->title), "%s", nonempty(tp.rest) ? tp.rest : title);

    /* State: $ALERT_TRANSITION, else the title's word (Datadog's default
     * payload has no transition), else $ALERT_TYPE. */
    const char *transition = api_json_str(json, "alert_transition");
    if (!nonempty(transition))
        transition = tp.word;
    out->state = ALERT_INFO;
    out->state_known = datadog_transition_state(transition, &out->state);
    if (!out->state_known) {
        const char *type = api_json_str(json, "alert_type");
        if (type && !strcasecmp(type, "success")) {
            out->state = ALERT_RESOLVED;
            out->state_known = 1;
        } else if (type && (!strcasecmp(type, "error") || !strcasecmp(type, "warning"))) {
            out->state = ALERT_FIRING;
            out->state_known = 1;
        }
    }
    snprintf(out->severity, sizeof(out->severity), "%s", severity_of(json, &tp, transition));

    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(json, "tags");
    tag_value(tags, "service", out->service, sizeof(out->service));
    if (!out->service[0]) {
        const cJSON *scope = cJSON_GetObjectItemCaseSensitive(json, "alert_scope");
        tag_value(scope, "service", out->service, sizeof(out->service));
    }
    if (!out->service[0]) {
        cJSON *sc = cJSON_CreateString(tp.scope);
        tag_value(sc, "service", out->service, sizeof(out->service));
        cJSON_Delete(sc);
    }

    char idbuf[32];
    const char *alert_id = text_of(json, "alert_id", idbuf, sizeof(idbuf));
    if (nonempty(alert_id) && strlen(alert_id) < sizeof(out->source_alert_id))
        snprintf(out->source_alert_id, sizeof(out->source_alert_id), "%s", alert_id);

    /* Fingerprint: the same monitor and group across Triggered and
     * Recovered.  $AGGREG_KEY is Datadog's own "ID to aggregate events
     * belonging together"; else the monitor ($ALERT_ID) and its group
     * ($ALERT_SCOPE, or the title's "on {…}"); else the title without its
     * transition prefix (Datadog's default payload has neither). */
    const char *agg = api_json_str(json, "aggreg_key");
    const char *scope = api_json_str(json, "alert_scope");
    if (!nonempty(scope))
        scope = tp.scope;
    const char *sep = *scope ? ":" : "", *tsep = *tp.scope ? ":" : "";
    size_t cap = strlen(out->title) + strlen(scope) + strlen(tp.scope) +
                 (nonempty(agg) ? strlen(agg) : 0) + 64;
    char *fp = malloc(cap); /* whole: a long key is hashed, never cut */
    if (!fp) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (nonempty(agg))
        snprintf(fp, cap, "datadog:agg:%s", agg);
    else if (out->source_alert_id[0])
        snprintf(fp, cap, "datadog:monitor:%s%s%s", out->source_alert_id, sep, scope);
    else
        snprintf(fp, cap, "datadog:title:%s%s%s", out->title, tsep, tp.scope);
    fingerprint_set(out, fp);
    free(fp);

    out->message = api_json_str(json, "body");
    if (!nonempty(out->message))
        out->message = api_json_str(json, "text_only_msg");
    out->url = api_json_str(json, "link");
    if (!nonempty(out->url))
        out->url = NULL;
    out->occurred_at = epoch_of(json, "date");
    if (!out->occurred_at)
        out->occurred_at = epoch_of(json, "last_updated");
    return 0;
}

/* ---- webhook intake -------------------------------------------------------------------------- */

/* Per-user deliveries per minute, counted in the store (all replicas):
 * 0, or -1 with a 429 (Retry-After) or 503 in resp. */
static int rate_take(worker_ctx *w, const kit_tenant *t, http_response *resp)
{
    int64_t limit = server_setting_int(w->cfg, "AURORA_DATADOG_WEBHOOK_RATE_PER_MINUTE");
    if (limit <= 0)
        limit = 600;
    char key[2 * STORE_ID_LEN + 32];
    snprintf(key, sizeof(key), "datadog-webhook:%s:%s", t->org_id, t->user_id);
    return api_rate_take(w, key, limit, RATE_WINDOW_S,
                         "Datadog webhook deliveries for this user", NULL, resp);
}

/* When the connection has a webhook secret, the delivery must carry it
 * (compared by SHA-256 digest, in constant time).  0, or -1 with a 401 /
 * 503 in resp. */
static int secret_check(worker_ctx *w, const http_request *req, const kit_tenant *t,
                        http_response *resp)
{
    store_connector row;
    int rc = store_connector_get(w->store, t->org_id, t->user_id, DATADOG_ID, &row);
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    cJSON *md = row.metadata_json ? cJSON_Parse(row.metadata_json) : NULL;
    store_connector_free(&row);
    const char *want = api_json_str(md, MD_SECRET_HASH);
    int ok = 1;
    if (want) {
        const char *got = http_header_get(req, SECRET_HEADER);
        char hex[65] = "";
        if (got && strlen(got) <= SECRET_MAX)
            crypto_sha256_hex(got, strlen(got), hex);
        ok = got && hex[0] && crypto_ct_equal(hex, 64, want, strlen(want));
    }
    cJSON_Delete(md);
    if (!ok) {
        http_resp_error(resp, 401, "INVALID_WEBHOOK_SECRET",
                        "Missing or wrong " SECRET_HEADER_SHOWN " header: this Datadog "
                        "connection has a webhook secret (set it in the webhook's custom headers)");
        return -1;
    }
    return 0;
}

static int wh_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out, http_response *resp)
{
    kit_tenant t;
    if (kit_tenant_resolve(w, DATADOG_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_WEBHOOK_UNKNOWN, &t, resp) < 0)
        return -1;
    /* The secret before the rate limit: a sender without it must not use
     * up the user's allowance. */
    if (secret_check(w, req, &t, resp) < 0 || rate_take(w, &t, resp) < 0)
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
    if (datadog_payload_check(json, why, sizeof(why)) < 0) {
        http_resp_error(resp, 400, "DATADOG_BAD_PAYLOAD",
                        "Not a Datadog webhook payload: %s (see the payload in docs/api.md, "
                        "Datadog)", why);
        return -1;
    }
    return 0;
}

static int wh_process(worker_ctx *w, const store_webhook_delivery *d, char *err, size_t errlen)
{
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    datadog_alert m;
    char why[160];
    if (datadog_map_alert(json, &m, why, sizeof(why)) < 0) {
        /* Checked at intake: only a row stored by an older version gets here. */
        log_warn("datadog: delivery %s is not a Datadog payload (%s); ignored", d->id, why);
        cJSON_Delete(json);
        return KIT_WH_IGNORED;
    }
    incident_alert a = {
        .source = DATADOG_ID,
        .delivery_id = d->id,
        .index = 0,
        .source_alert_id = m.source_alert_id[0] ? m.source_alert_id : NULL,
        .fingerprint = m.fingerprint,
        .state = m.state,
        .title = m.title,
        .service = m.service,
        .severity = m.severity,
        .message = m.message,
        .url = m.url,
        .occurred_at = kit_webhook_occurred_at(d, m.occurred_at), /* else its receipt */
        .raw = json,
    };
    incident_outcome o;
    int rc = incident_ingest(w, d->org_id, d->tenant_key[0] ? d->tenant_key : NULL, &a,
                             (int64_t)time(NULL), &o, err, errlen);
    cJSON_Delete(json);
    if (rc < 0)
        return KIT_WH_FAILED;
    static const char *const results[] = { "created", "attached", "unmatched", "duplicate" };
    log_info("datadog: delivery %s (%s) %s%s%s", d->id, d->action[0] ? d->action : "no transition",
             results[o.result], o.incident_id[0] ? " incident " : "", o.incident_id);
    return KIT_WH_PROCESSED;
}

static const kit_webhook_spec datadog_webhook = {
    .connector = DATADOG_ID,
    .max_body = WEBHOOK_MAX_BODY,
    /* Datadog cannot sign: the per-user URL is the credential. */
    .policy = KIT_WH_UNSIGNED,
    .delivery_id_json = "id",
    .event_json = "event_type",
    .action_json = "alert_transition",
    .require_json_object = 1,
    /* Datadog posts JSON unless "Encode as form" is ticked, which the
     * documented setup does not do: a form body is a 415. */
    .content_type = "application/json",
    .keys = wh_keys,
    .check = wh_check,
    .process = wh_process,
};

static void webhook_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &datadog_webhook, req, resp);
}

/* The recovery sweep: a delivery committed right before a crash, or whose
 * processing failed (store busy), is processed here. */
static long webhook_sweep_task(worker_ctx *w)
{
    int done = kit_webhook_process_open(w, &datadog_webhook, SWEEP_BATCH, (int64_t)time(NULL));
    if (done > 0)
        log_info("datadog: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("datadog: webhook recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events(w, DATADOG_ID, req, resp);
}

static void event_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event(w, DATADOG_ID, http_param(req, "event_id"), req, resp);
}

static void datadog_register(void)
{
    router_add_outbound(HTTP_POST, "/datadog/connect", ROUTE_AUTH_API, connect_route);
    router_add(HTTP_GET, "/datadog/status", ROUTE_AUTH_API, status_route);
    datadog_api_register();
    if (kit_webhook_register(&datadog_webhook) < 0)
        return; /* logged; not mounted rather than half-working */
    if (http_capture_header(SECRET_HEADER) < 0) {
        log_error("datadog: cannot capture the %s header; webhook not mounted", SECRET_HEADER);
        return;
    }
    router_add(HTTP_POST, "/datadog/webhook/{user_id}", ROUTE_PUBLIC, webhook_route);
    router_add(HTTP_GET, "/api/datadog/webhook-events", ROUTE_AUTH_API, events_route);
    router_add(HTTP_GET, "/api/datadog/webhook-events/{event_id}", ROUTE_AUTH_API, event_route);
    if (periodic_add("datadog-webhook-sweep", WORKER_POOL_STORE, 0, webhook_sweep_task) < 0)
        log_error("datadog: cannot register the webhook recovery sweep (periodic table full)");
}

const connector connector_datadog = {
    .id = DATADOG_ID,
    .name = "Datadog",
    .register_routes = datadog_register,
    .status = datadog_status,
    .cloud = NULL,
    .settings = datadog_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
