/* sentry.c — Sentry (connector guide: Observability Tools > Sentry): an
 * Internal Integration's auth token for the read API, its client secret for
 * the webhooks.
 *
 *   POST /sentry/connect   {org_slug, region: "us"|"eu", base_url?, auth_token,
 *                          client_secret?}: the token is validated against the
 *                          org (GET <base>/api/0/organizations/<slug>/, Bearer),
 *                          its projects listed (…/projects/, Link cursors), then
 *                          both secrets stored (aurora/orgs/<org>/users/<uid>/
 *                          sentry/{auth-token,client-secret}); slug, region,
 *                          base and projects in the row's metadata.
 *                          401/403: "Invalid Sentry auth token or insufficient
 *                          permissions"; 404: "Sentry organization '<slug>' not
 *                          found".  base_url: a self-hosted Sentry (https; loopback
 *                          only with SENTRY_ALLOW_LOOPBACK), which the guide does
 *                          not offer; else the region's SENTRY_{US,EU}_BASE_URL.
 *   GET  /sentry/status    the caller's connection and the webhook URL to paste
 *   POST /sentry/disconnect  alias of DELETE /api/connectors/sentry
 *   POST /sentry/webhook/{user_id}   Sentry's deliveries (kit_webhook.h):
 *                          Sentry-Hook-Signature = hex HMAC-SHA256 of the raw body
 *                          under the client secret; Request-ID the delivery id;
 *                          Sentry-Hook-Resource the event.  issue and error drive
 *                          incidents (incident_ingest); installation, comment,
 *                          event_alert and metric_alert are stored only; any other
 *                          resource is a 400, not stored.  An unknown user, or one
 *                          whose Sentry is not connected: 404.
 *   GET  /api/sentry/events[/{event_id}]   the caller organization's deliveries
 *
 * Sentry-Hook-Timestamp is not checked: Sentry's signature covers the body
 * only, so the header proves nothing and a window on it would stop no replay.
 * Replays are caught instead by the delivery id, by the body (unique_body: a
 * captured body under a fresh Request-ID is a duplicate) and, for incidents,
 * by the alert's dedup key (org + issue + action).  The read API is in
 * sentry_api.c. */
#include "sentry.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "http_client.h"
#include "kit_addr.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "kit_tenant.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "secret.h"
#include "secrets.h"

#define MSG_INVALID_TOKEN "Invalid Sentry auth token or insufficient permissions"
#define MSG_NOT_CONNECTED "Sentry is not connected for this user: POST /sentry/connect first"
#define MSG_WEBHOOK_UNKNOWN "Unknown webhook user or Sentry not connected"
#define SENTRY_MAX_PROJECTS 2000
#define SENTRY_TOKEN_MAX 512
#define SENTRY_WEBHOOK_MAX_BODY (512 * 1024) /* error payloads carry whole stacks */
#define SWEEP_BATCH 100
#define SWEEP_INTERVAL_S 20

static const config_def sentry_settings[] = {
    { "SENTRY_US_BASE_URL", "sentry.us_base_url", CFG_STRING, "https://sentry.io", "Sentry connector: US region web API base (<base>/api/0/…)", 0, 0, 0 },
    { "SENTRY_EU_BASE_URL", "sentry.eu_base_url", CFG_STRING, "https://de.sentry.io", "Sentry connector: EU region web API base (<base>/api/0/…)", 0, 0, 0 },
    { "SENTRY_ALLOW_LOOPBACK", "sentry.allow_loopback", CFG_BOOL, "false", "Sentry connector: accept a self-hosted base_url on loopback (127.0.0.0/8, ::1, localhost; plain http allowed there) — tests or a Sentry on this host", 0, 0, 0 },
    { "SENTRY_WEBHOOK_RATE_PER_MINUTE", "sentry.webhook_rate_per_minute", CFG_INT, "600", "Sentry connector: verified webhook deliveries accepted per user and minute (0: no limit); more get 429", 0, 0, 1000000 },
    { "SENTRY_MAX_PROJECT_PAGES", "sentry.max_project_pages", CFG_INT, "20", "Sentry connector: most project list pages read when connecting (100 projects a page)", 0, 1, 1000 },
    { NULL, NULL, 0, NULL, NULL, 0, 0, 0 },
};

static const kit_call_errors sentry_errors = {
    .service = "Sentry API",
    .timeout = "SENTRY_TIMEOUT",
    .unreachable = "SENTRY_UNREACHABLE",
    .denied = "SENTRY_DENIED",
    .failed = "SENTRY_ERROR",
};

/* ---- small helpers ------------------------------------------------------------- */

int sentry_slug_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > SENTRY_SLUG_MAX || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '_'))
            return 0;
    return 1;
}

int sentry_numeric_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

long sentry_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_sentry); }

/* Printable ASCII without spaces: what a token or a hex secret is made of. */
static int token_text_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return 1;
}

static const char *region_base(const worker_ctx *w, const char *region)
{
    const char *v = server_setting(w->cfg, !strcmp(region, "eu") ? "SENTRY_EU_BASE_URL"
                                                                   : "SENTRY_US_BASE_URL");
    return v ? v : !strcmp(region, "eu") ? "https://de.sentry.io" : "https://sentry.io";
}

/* What an address is to a self-hosted base_url: kit_addr.h (private ranges
 * are fine, a self-hosted Sentry lives there).
 * The URL's host as curl will read it (numeric and percent-encoded forms
 * resolved by http_client_url_parse): a literal address or "localhost";
 * other names are KIT_ADDR_OK here and judged once resolved (kit_addr_allow). */
static kit_addr_kind url_host_kind(const char *url)
{
    http_client_url u;
    if (http_client_url_parse(url, 0, &u) < 0)
        return KIT_ADDR_FORBIDDEN; /* unreadable: the stricter case */
    return kit_addr_host(u.host);
}

static int *allow_loopback_flag(const worker_ctx *w)
{
    static int yes = 1, no = 0;
    return config_bool(&w->cfg->raw, "SENTRY_ALLOW_LOOPBACK") ? &yes : &no;
}

/* The guard of the calls to a connection's base: none for the operator's
 * region settings, kit_addr_allow for a user's self-hosted base. */
static void base_guard(const worker_ctx *w, int custom, kit_call_req *q)
{
    if (custom) {
        q->allow_address = kit_addr_allow;
        q->allow_address_ud = allow_loopback_flag(w);
    }
}

/* The API base of a connection's metadata: its self-hosted base, else its
 * region's setting.  0, or -1 when the stored values are unusable. */
static int md_base(const worker_ctx *w, const cJSON *md, char *out, size_t cap, int *is_custom)
{
    const char *custom = api_json_str(md, "base_url");
    const char *region = api_json_str(md, "region");
    const char *b = custom ? custom : region_base(w, region && !strcmp(region, "eu") ? "eu" : "us");
    if (strlen(b) >= cap)
        return -1;
    /* Accepted on loopback at connect; not once the operator turned that off. */
    kit_addr_kind k = custom ? url_host_kind(custom) : KIT_ADDR_OK;
    if (k == KIT_ADDR_FORBIDDEN || (k == KIT_ADDR_LOOPBACK && !*allow_loopback_flag(w)))
        return -1;
    *is_custom = custom != NULL;
    snprintf(out, cap, "%s", b);
    /* Without trailing slashes: paths are joined with kit_url_fmt. */
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

/* <AURORA_PUBLIC_URL or https://<Host>>/sentry/webhook/<user>[?org_id=…]: the
 * URL the user pastes into Sentry.  Without either, the path alone. */
static void webhook_url(const worker_ctx *w, const http_request *req, const auth_ctx *who,
                        char *out, size_t cap)
{
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    const char *host = req ? http_header_get(req, "host") : NULL;
    char base[512] = "";
    if (pub && strlen(pub) < sizeof(base)) {
        snprintf(base, sizeof(base), "%s", pub);
    } else if (host && strlen(host) < 256) {
        int ok = 1;
        for (const char *p = host; *p && ok; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 *p == '.' || *p == '-' || *p == ':' || *p == '[' || *p == ']';
        if (ok && *host)
            snprintf(base, sizeof(base), "https://%s", host);
    }
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        base[--n] = '\0';
    snprintf(out, cap, "%s/sentry/webhook/%s?org_id=%s", base, who->user_id, who->org_id);
}

/* ---- connect ---------------------------------------------------------------------- */

/* An error answer with the guide's Troubleshooting "Solution" as "hint". */
static void error_with_hint(http_response *resp, int status, const char *code, const char *msg,
                            const char *hint)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", msg);
        cJSON_AddStringToObject(o, "error_code", code);
        cJSON_AddStringToObject(o, "hint", hint);
    }
    http_resp_json(resp, status, o);
}

/* 401/403 → the guide's token message, 404 → its organization message,
 * anything else → the kit's wording. */
static void call_failed(const worker_ctx *w, const kit_call_resp *r, const char *slug,
                        const char *what, http_response *resp)
{
    if (r->http.address_refused) {
        http_resp_error(resp, 400, "SENTRY_INVALID_BASE_URL",
                        "base_url resolves to an address Aurora does not connect to (link-local, "
                        "unspecified, multicast; loopback unless SENTRY_ALLOW_LOOPBACK=true)");
    } else if (r->status == 401 || r->status == 403) {
        error_with_hint(resp, 400, "SENTRY_INVALID_TOKEN", MSG_INVALID_TOKEN,
                        "Verify the token starts with sntrys_ and the Internal Integration grants "
                        "Issue & Event: Read, Project: Read, Organization: Read");
    } else if (r->status == 404) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Sentry organization '%s' not found", slug);
        error_with_hint(resp, 404, "SENTRY_ORG_NOT_FOUND", msg,
                        "Use the slug in your Sentry URL (lowercase, hyphenated), not the display "
                        "name; select EU if your organization is hosted on de.sentry.io");
    } else
        kit_call_error(&sentry_errors, r, NULL, sentry_timeout_ms(w), what, resp);
}

/* GET <base>/api/0/organizations/<slug>/: the organization the token reads.
 * *org (an object) or -1 with resp filled. */
static int fetch_org(worker_ctx *w, const char *base, int custom, const char *slug,
                     const char *token, cJSON **org, http_response *resp)
{
    char url[1024];
    if (kit_url_fmt(url, sizeof(url), base, "/api/0/organizations/%s/", slug) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "base_url is too long");
        return -1;
    }
    const char *headers[] = { "Accept: application/json", NULL };
    long t = sentry_timeout_ms(w);
    kit_call_req q = { .provider = "Sentry API", .base_url = base, .url = url, .headers = headers,
                       .bearer = token, .attempt_timeout_ms = t, .deadline_ms = t,
                       .max_response = 1024 * 1024 };
    base_guard(w, custom, &q);
    kit_call_resp rp;
    int rc = kit_call(&q, &rp);
    cJSON *j = rc == AUR_OK ? kit_call_json(&rp) : NULL;
    if (rc != AUR_OK)
        call_failed(w, &rp, slug, " while reading the organization", resp);
    kit_call_resp_free(&rp);
    if (rc != AUR_OK)
        return -1;
    if (!cJSON_IsObject(j) || !api_json_str(j, "slug")) {
        cJSON_Delete(j);
        http_resp_error(resp, 502, "SENTRY_ERROR", "Sentry API answered an unexpected organization");
        return -1;
    }
    *org = j;
    return 0;
}

/* One page of …/projects/: adds {id, slug, name, platform} of each. */
static int add_projects(const kit_call_resp *page, void *arg)
{
    cJSON *out = arg;
    cJSON *j = kit_call_json(page);
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        const char *id = api_json_str(it, "id"), *slug = api_json_str(it, "slug");
        const char *name = api_json_str(it, "name"), *platform = api_json_str(it, "platform");
        char err[64];
        if (!id || !sentry_numeric_id_ok(id) || !slug ||
            api_check_text(slug, "slug", 1, 100, err, sizeof(err)) < 0)
            continue; /* not a project as documented: left out, not echoed */
        if (cJSON_GetArraySize(out) >= SENTRY_MAX_PROJECTS)
            break;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "id", id);
        cJSON_AddStringToObject(p, "slug", slug);
        if (name && api_check_chars(name, "name", 0, 200, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(p, "name", name);
        if (platform && api_check_text(platform, "platform", 0, 64, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(p, "platform", platform);
        cJSON_AddItemToArray(out, p);
    }
    cJSON_Delete(j);
    return 0;
}

static int list_projects(worker_ctx *w, const char *base, int custom, const char *slug,
                         const char *token, cJSON **out, int *capped, http_response *resp)
{
    char url[1024];
    if (kit_url_fmt(url, sizeof(url), base, "/api/0/organizations/%s/projects/", slug) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "base_url is too long");
        return -1;
    }
    const char *headers[] = { "Accept: application/json", NULL };
    long t = sentry_timeout_ms(w);
    int64_t pages = server_setting_int(w->cfg, "SENTRY_MAX_PROJECT_PAGES");
    kit_call_req q = { .provider = "Sentry API", .base_url = base, .url = url, .headers = headers,
                       .bearer = token, .attempt_timeout_ms = t, .deadline_ms = t,
                       .max_response = 4 * 1024 * 1024 };
    base_guard(w, custom, &q);
    kit_pager_cfg pc = { .style = KIT_PAGE_LINK,
                         .max_pages = pages < 1 ? 20 : pages > 1000 ? 1000 : (int)pages };
    cJSON *projects = cJSON_CreateArray();
    if (!projects) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    kit_walk wk;
    int rc = kit_pager_walk(&q, &pc, add_projects, projects, &wk);
    if (rc == AUR_OK) {
        *capped = wk.capped;
    } else if (wk.bad_page) {
        http_resp_error(resp, 502, "SENTRY_ERROR", "Sentry API answered an unexpected project list");
    } else if (wk.refused) {
        http_resp_error(resp, 502, "SENTRY_ERROR",
                        "Sentry API named a next page outside its base URL; not followed");
    } else {
        call_failed(w, &wk.last, slug, " while listing projects", resp);
    }
    kit_walk_free(&wk);
    if (rc != AUR_OK) {
        cJSON_Delete(projects);
        return -1;
    }
    *out = projects;
    return 0;
}

/* The base a connect goes to: the body's base_url (a self-hosted Sentry) or
 * the region's setting.  0, or -1 with a 400 (500 for a bad setting) in resp. */
static int connect_base(const worker_ctx *w, const char *region, const char *custom, char *out,
                        size_t cap, http_response *resp)
{
    char why[160];
    if (!custom) {
        const char *b = region_base(w, region);
        if (strlen(b) >= cap || kit_base_url_check(b, 0, why, sizeof(why)) < 0) {
            http_resp_error(resp, 500, "SENTRY_MISCONFIGURED", "SENTRY_%s_BASE_URL %s",
                            !strcmp(region, "eu") ? "EU" : "US",
                            strlen(b) >= cap ? "is too long" : why);
            return -1;
        }
        snprintf(out, cap, "%s", b);
    } else {
        if (strlen(custom) >= cap || kit_base_url_check(custom, 0, why, sizeof(why)) < 0 ||
            !kit_url_private(custom)) {
            http_resp_error(resp, 400, "SENTRY_INVALID_BASE_URL",
                            "base_url must be the https:// address of a self-hosted Sentry, "
                            "without credentials, query or fragment");
            return -1;
        }
        /* Loopback (plain http allowed there) is this server itself: only
         * when the operator says so (tests, a Sentry on this host).  A name
         * is judged by what it resolves to, when connecting. */
        kit_addr_kind k = url_host_kind(custom);
        if (k == KIT_ADDR_FORBIDDEN) {
            http_resp_error(resp, 400, "SENTRY_INVALID_BASE_URL",
                            "base_url names an address no Sentry server has (link-local, "
                            "cloud metadata, unspecified or multicast)");
            return -1;
        }
        if (k == KIT_ADDR_LOOPBACK && !*allow_loopback_flag(w)) {
            http_resp_error(resp, 400, "SENTRY_INVALID_BASE_URL",
                            "base_url on loopback is refused unless SENTRY_ALLOW_LOOPBACK=true");
            return -1;
        }
        snprintf(out, cap, "%s", custom);
    }
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

static void connect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *slug = api_json_str(body, "org_slug");
    const char *region = api_json_str(body, "region");
    const char *custom = api_json_str(body, "base_url");
    const char *token = api_json_str(body, "auth_token");
    const char *secret = api_json_str(body, "client_secret");
    cJSON *org = NULL, *projects = NULL, *md = NULL;
    char base[SENTRY_BASE_MAX], hook[1024];
    int capped = 0;
    if (secret && !*secret)
        secret = NULL; /* an empty field is no secret: webhooks stay unconfigured */
    if (custom && !*custom)
        custom = NULL;
    if (!slug || !sentry_slug_ok(slug)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "org_slug must be the slug in your Sentry URL (lowercase, hyphenated, e.g. "
                        "acme-co), not the display name");
        goto out;
    }
    if (!region || !*region)
        region = "us";
    if (strcasecmp(region, "us") && strcasecmp(region, "eu")) {
        http_resp_error(resp, 400, "SENTRY_UNKNOWN_REGION",
                        "region must be \"us\" (sentry.io) or \"eu\" (de.sentry.io)");
        goto out;
    }
    region = !strcasecmp(region, "eu") ? "eu" : "us";
    if (!token || !token_text_ok(token, SENTRY_TOKEN_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "auth_token is required: the sntrys_… token of the Internal Integration");
        goto out;
    }
    if (secret && !token_text_ok(secret, KIT_WH_SECRET_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "client_secret must be the integration's Client Secret (at most %d "
                        "printable characters)", KIT_WH_SECRET_MAX);
        goto out;
    }
    if (connect_base(w, region, custom, base, sizeof(base), resp) < 0 ||
        fetch_org(w, base, custom != NULL, slug, token, &org, resp) < 0 ||
        list_projects(w, base, custom != NULL, slug, token, &projects, &capped, resp) < 0)
        goto out;
    if (capped)
        log_warn("sentry: stopped listing projects of %s after SENTRY_MAX_PROJECT_PAGES pages",
                 slug);
    webhook_url(w, req, &req->auth, hook, sizeof(hook));
    md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "org_slug", slug);
    cJSON_AddStringToObject(md, "region", region);
    if (custom)
        cJSON_AddStringToObject(md, "base_url", base);
    {
        const char *oid = api_json_str(org, "id"), *oname = api_json_str(org, "name");
        char err[64];
        if (oid && sentry_numeric_id_ok(oid))
            cJSON_AddStringToObject(md, "sentry_org_id", oid);
        if (oname && api_check_chars(oname, "name", 1, 200, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(md, "org_name", oname);
    }
    cJSON_AddNumberToObject(md, "project_count", cJSON_GetArraySize(projects));
    cJSON_AddItemToObject(md, "projects", projects);
    projects = NULL;
    cJSON_AddBoolToObject(md, "webhook_secret_configured", secret != NULL);
    cJSON_AddStringToObject(md, "webhook_url", hook);
    kit_field f[2] = { { "auth-token", token }, { "client-secret", secret } };
    if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, SENTRY_ID, slug, f,
                          secret ? 2 : 1, md, resp) < 0)
        goto out;
    log_info("sentry: user %s of %s connected Sentry organization %s (%s%s)", req->auth.user_id,
             req->auth.org_id, slug, custom ? "self-hosted" : region,
             secret ? "" : ", no client secret: webhooks refused");
    kit_connected_reply(resp, SENTRY_ID, md, NULL);
out:
    cJSON_Delete(org);
    cJSON_Delete(projects);
    cJSON_Delete(md);
    /* The request body held the token and the client secret. */
    if (token)
        OPENSSL_cleanse((void *)token, strlen(token));
    if (secret)
        OPENSSL_cleanse((void *)secret, strlen(secret));
    cJSON_Delete(body);
}

/* ---- the connection, for the read API ----------------------------------------------------- */

int sentry_conn_load(worker_ctx *w, const auth_ctx *who, sentry_conn *c, http_response *resp)
{
    memset(c, 0, sizeof(*c));
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return -1;
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, who, SENTRY_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    int rc = -1;
    const char *slug = api_json_str(md, "org_slug");
    unsigned char *tok = NULL;
    size_t len = 0;
    if (!slug || !sentry_slug_ok(slug) || md_base(w, md, c->base, sizeof(c->base), &c->custom) < 0) {
        http_resp_error(resp, 500, "SENTRY_CONNECTION_CORRUPT",
                        "the stored Sentry connection is invalid; connect again");
        goto out;
    }
    snprintf(c->org_slug, sizeof(c->org_slug), "%s", slug);
    c->allow_loopback = *allow_loopback_flag(w);
    if (kit_secret_get(w, row.secret_ref, &tok, &len, 404, "SENTRY_NOT_CONNECTED",
                       "the Sentry auth token is no longer stored; connect Sentry again", resp) < 0)
        goto out;
    c->token = malloc(len + 1);
    if (!c->token) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    memcpy(c->token, tok, len);
    c->token[len] = '\0';
    rc = 0;
out:
    if (tok)
        secrets_free(tok, len);
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

void sentry_conn_free(sentry_conn *c)
{
    if (c && c->token) {
        secret_free(c->token);
        c->token = NULL;
    }
}

/* ---- status, disconnect ---------------------------------------------------------------------- */

static void sentry_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "org_slug", "region", "base_url", "org_name",
                                        "sentry_org_id", NULL };
    char hook[1024];
    webhook_url(w, NULL, who, hook, sizeof(hook));
    store_connector c;
    cJSON *md;
    int on = kit_status(w, who, SENTRY_ID, keys, out, &c, &md);
    /* Shown before connecting too: the guide's step 1 copies it first.  With
     * neither AURORA_PUBLIC_URL nor a request host it is the path; the URL
     * recorded at connect (from the request's host) is better then. */
    const char *at_connect = on ? api_json_str(md, "webhook_url") : NULL;
    cJSON_AddStringToObject(out, "webhook_url",
                            hook[0] == '/' && at_connect ? at_connect : hook);
    if (!on)
        return;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(md, "project_count");
    if (cJSON_IsNumber(n))
        cJSON_AddNumberToObject(out, "project_count", n->valuedouble);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(md, "projects");
    if (cJSON_IsArray(p))
        cJSON_AddItemToObject(out, "projects", cJSON_Duplicate(p, 1));
    const cJSON *configured = cJSON_GetObjectItemCaseSensitive(md, "webhook_secret_configured");
    cJSON_AddBoolToObject(out, "webhook_secret_configured", cJSON_IsTrue(configured));
    cJSON_Delete(md);
    store_connector_free(&c);
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
    sentry_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    char hook[1024];
    webhook_url(w, req, &req->auth, hook, sizeof(hook));
    cJSON_ReplaceItemInObjectCaseSensitive(o, "webhook_url", cJSON_CreateString(hook));
    http_resp_json(resp, 200, o);
}

static void disconnect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    store_connector row;
    int rc = store_connector_get(w->store, req->auth.org_id, req->auth.user_id, SENTRY_ID, &row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    int existed = rc == STORE_OK;
    /* Secrets first (both of them): a row without its secrets is harmless. */
    rc = kit_secrets_delete_connection(w, &req->auth, SENTRY_ID, existed ? &row : NULL, resp);
    if (existed)
        store_connector_free(&row);
    if (rc < 0)
        return;
    rc = store_connector_delete(w->store, req->auth.org_id, req->auth.user_id, SENTRY_ID);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    log_info("connector sentry disconnected for user %s (org %s)", req->auth.user_id,
             req->auth.org_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "connector", SENTRY_ID);
    cJSON_AddBoolToObject(o, "deleted", existed || rc == STORE_OK);
    http_resp_json(resp, 200, o);
}

/* ---- webhooks: intake ---------------------------------------------------------------------- */

/* Resources Sentry's integration platform documents. */
static int resource_known(const char *r)
{
    static const char *const known[] = { "issue",   "error",        "installation",
                                         "comment", "event_alert", "metric_alert" };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(r, known[i]))
            return 1;
    return 0;
}

static int webhook_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out,
                        http_response *resp)
{
    kit_tenant t;
    if (kit_tenant_resolve(w, SENTRY_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_WEBHOOK_UNKNOWN, &t, resp) < 0)
        return -1;
    snprintf(out->org_id, sizeof(out->org_id), "%s", t.org_id);
    snprintf(out->tenant_key, sizeof(out->tenant_key), "%s", t.user_id);
    store_connector row;
    int rc = store_connector_get(w->store, t.org_id, t.user_id, SENTRY_ID, &row);
    if (rc != STORE_OK) {
        if (rc == STORE_NOT_FOUND) { /* disconnected meanwhile */
            http_resp_error(resp, 404, "USER_NOT_FOUND", MSG_WEBHOOK_UNKNOWN);
            return -1;
        }
        api_store_error(w, resp);
        return -1;
    }
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const char *ref = api_json_str(cJSON_GetObjectItemCaseSensitive(md, "secret_refs"),
                                   "client-secret");
    char be[32], err[512];
    const char *path = NULL;
    int out_rc = 0;
    if (ref && w->secrets && secrets_ref_parse(ref, be, sizeof(be), &path) == 0) {
        unsigned char *val = NULL;
        size_t len = 0;
        int s = secrets_get(w->secrets, path, &val, &len, err, sizeof(err));
        if (s == SECRETS_OK) {
            if (kit_wh_keys_add(out, val, len) < 0)
                log_warn("sentry webhook: the stored client secret is empty or too long; ignored");
            secrets_free(val, len);
        } else if (s != SECRETS_NOT_FOUND) {
            /* Not Sentry's fault: a 503 makes its retry worth it. */
            log_error("secrets backend: %s", err);
            http_resp_error(resp, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                            "the secrets backend holding the Sentry client secret is unavailable");
            out_rc = -1;
        }
    } else if (ref && !w->secrets) {
        http_resp_error(resp, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                        "the secrets backend holding the Sentry client secret is unavailable");
        out_rc = -1;
    }
    /* No secret at all: the kit answers 401 "Webhook signing secret not configured". */
    cJSON_Delete(md);
    store_connector_free(&row);
    return out_rc;
}

/* The per-user limit of SENTRY_WEBHOOK_RATE_PER_MINUTE over fixed minutes,
 * counted in the store (the same on every replica).  Called once the
 * signature is verified, so a stranger who knows the URL cannot spend the
 * user's allowance.  Keyed on the resolved tenant, not on the URL's
 * `?org_id=`: with and without it the same user has one budget, not two.
 * 0, or -1 with a 429 (or 503, 404 when disconnected meanwhile) in resp. */
static int webhook_rate(worker_ctx *w, const http_request *req, http_response *resp)
{
    int64_t limit = server_setting_int(w->cfg, "SENTRY_WEBHOOK_RATE_PER_MINUTE");
    if (limit <= 0)
        return 0;
    kit_tenant t;
    if (kit_tenant_resolve(w, SENTRY_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_WEBHOOK_UNKNOWN, &t, resp) < 0)
        return -1;
    char key[STORE_ID_LEN * 2 + 32];
    snprintf(key, sizeof(key), "sentry-webhook:%s:%s", t.org_id, t.user_id);
    return api_rate_take(w, key, limit, 60,
                         "Sentry webhook deliveries for this user (SENTRY_WEBHOOK_RATE_PER_MINUTE)",
                         NULL, resp);
}

static int webhook_check(worker_ctx *w, const http_request *req, const cJSON *json,
                         http_response *resp)
{
    const char *res = http_header_get(req, "sentry-hook-resource");
    if (!res || !*res) {
        http_resp_error(resp, 400, "MISSING_RESOURCE",
                        "Sentry-Hook-Resource header is required");
        return -1;
    }
    if (!resource_known(res)) {
        http_resp_error(resp, 400, "UNKNOWN_RESOURCE",
                        "unknown Sentry-Hook-Resource (issue, error, installation, comment, "
                        "event_alert, metric_alert)");
        return -1;
    }
    const char *action = api_json_str(json, "action");
    if (!action || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(json, "data"))) {
        http_resp_error(resp, 400, "BAD_PAYLOAD",
                        "not a Sentry webhook payload (action and data are required)");
        return -1;
    }
    if (!strcmp(res, "issue") || !strcmp(res, "error")) {
        sentry_alert sa;
        char err[160];
        if (sentry_alert_from_payload(res, action, json, &sa, err, sizeof(err)) < 0) {
            http_resp_error(resp, 400, "BAD_PAYLOAD", "not a Sentry %s payload: %s", res, err);
            return -1;
        }
    }
    return webhook_rate(w, req, resp);
}

/* ---- webhooks: processing ----------------------------------------------------------------- */

/* Error payloads name their project by id, issue payloads by slug: the id
 * is turned into the slug listed at connect, so both correlate on one
 * service name.  Left as it is when the project is not listed. */
static void project_slug_of(worker_ctx *w, const store_webhook_delivery *d, char *service,
                            size_t cap)
{
    if (!sentry_numeric_id_ok(service))
        return;
    store_connector row;
    if (store_connector_get(w->store, d->org_id, d->tenant_key, SENTRY_ID, &row) != STORE_OK)
        return;
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(md, "projects"))
    {
        const char *id = api_json_str(p, "id"), *slug = api_json_str(p, "slug");
        if (id && slug && !strcmp(id, service) && strlen(slug) < cap) {
            snprintf(service, cap, "%s", slug);
            break;
        }
    }
    cJSON_Delete(md);
    store_connector_free(&row);
}

static int webhook_process(worker_ctx *w, const store_webhook_delivery *d, char *err,
                           size_t errlen)
{
    if (strcmp(d->event, "issue") && strcmp(d->event, "error"))
        return KIT_WH_IGNORED; /* installation, comment, alerts: stored only */
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    sentry_alert sa;
    int m = sentry_alert_from_payload(d->event, d->action, json, &sa, err, errlen);
    if (m <= 0) {
        if (m < 0) /* the intake checked it: only a row written by another version */
            log_warn("sentry: delivery %s is not a Sentry %s payload (%s); kept, not processed",
                     d->id, d->event, err);
        cJSON_Delete(json);
        if (err && errlen)
            err[0] = '\0';
        return KIT_WH_IGNORED;
    }
    sa.a.delivery_id = d->id;
    /* A change the payload does not date (resolved, assigned, ignored: the
     * issue carries firstSeen and lastSeen only, the times of its events)
     * is dated by the delivery (a regression must outlive a late resolution). */
    sa.a.occurred_at = kit_webhook_occurred_at(d, sa.a.occurred_at);
    sa.a.severity = incident_severity_normalize(sa.a.severity);
    if (!strcmp(d->event, "error"))
        project_slug_of(w, d, sa.service, sizeof(sa.service));
    incident_outcome o;
    int64_t now = (int64_t)time(NULL);
    int rc = incident_ingest(w, d->org_id, d->tenant_key[0] ? d->tenant_key : NULL, &sa.a, now,
                             &o, err, errlen);
    if (rc == 0) {
        static const char *const what[] = { "opened incident", "attached to incident",
                                            "no matching incident", "duplicate of" };
        log_info("sentry: %s.%s issue %s (delivery %s): %s %s", d->event, d->action, sa.issue_id,
                 d->id, what[o.result], o.incident_id);
    }
    cJSON_Delete(json);
    return rc == 0 ? KIT_WH_PROCESSED : KIT_WH_FAILED;
}

static const kit_webhook_spec sentry_webhook = {
    .connector = SENTRY_ID,
    .max_body = SENTRY_WEBHOOK_MAX_BODY,
    .policy = KIT_WH_SIGNED,
    .signature_header = "sentry-hook-signature",
    .encoding = KIT_WH_HEX,
    .delivery_id_header = "request-id",
    .event_header = "sentry-hook-resource",
    .action_json = "action",
    .content_type = "application/json",
    /* an installation webhook carries the grant code the integration
     * exchanges for its token: not stored */
    .secret_fields = (const char *const[]){ "data.installation.code", NULL },
    .require_json_object = 1,
    /* Sentry signs the body only; its bodies carry ids and times, so two
     * distinct deliveries are never byte-identical, and a replay is. */
    .unique_body = 1,
    .keys = webhook_keys,
    .check = webhook_check,
    .process = webhook_process,
    .msg_not_configured = "Webhook signing secret not configured",
};

/* The recovery sweep: a delivery committed just before a crash, or whose
 * processing failed or found the queue full, is processed here (first at
 * start-up, then every SWEEP_INTERVAL_S). */
static long webhook_sweep_task(worker_ctx *w)
{
    int done = kit_webhook_process_open(w, &sentry_webhook, SWEEP_BATCH, (int64_t)time(NULL));
    if (done > 0)
        log_info("sentry: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("sentry: webhook recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

static void webhook_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &sentry_webhook, req, resp);
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events(w, SENTRY_ID, req, resp);
}

static void event_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event(w, SENTRY_ID, http_param(req, "event_id"), req, resp);
}

static void sentry_register(void)
{
    router_add_outbound(HTTP_POST, "/sentry/connect", ROUTE_AUTH_API, connect_route);
    router_add(HTTP_GET, "/sentry/status", ROUTE_AUTH_API, status_route);
    router_add_outbound(HTTP_POST, "/sentry/disconnect", ROUTE_AUTH_API, disconnect_route);
    sentry_api_register();
    if (kit_webhook_register(&sentry_webhook) < 0)
        return; /* logged; the route is not mounted rather than half-working */
    /* Outbound pool: the client secret comes from the secrets backend. */
    router_add_outbound(HTTP_POST, "/sentry/webhook/{user_id}", ROUTE_PUBLIC, webhook_route);
    router_add(HTTP_GET, "/api/sentry/events", ROUTE_AUTH_API, events_route);
    router_add(HTTP_GET, "/api/sentry/events/{event_id}", ROUTE_AUTH_API, event_route);
    if (periodic_add("sentry-webhook-sweep", WORKER_POOL_STORE, 0, webhook_sweep_task) < 0)
        log_error("sentry: cannot register the webhook recovery sweep (periodic table full)");
}

const connector connector_sentry = {
    .id = SENTRY_ID,
    .name = "Sentry",
    .register_routes = sentry_register,
    .status = sentry_status,
    .cloud = NULL,
    .settings = sentry_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
