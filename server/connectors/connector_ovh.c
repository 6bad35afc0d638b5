/* connector_ovh.c — OVH Cloud over OAuth2 (authorization code), per region.
 *
 * Off unless NEXT_PUBLIC_ENABLE_OVH=true: every route then answers 404
 * OVH_NOT_ENABLED "OVH connector not enabled".  Regions eu, ca, us, each with
 * OVH_<REGION>_CLIENT_ID / OVH_<REGION>_CLIENT_SECRET / OVH_<REGION>_REDIRECT_URI
 * (https only: OVH accepts no other callback) and overridable endpoints
 * OVH_<REGION>_AUTH_BASE (<base>/oauth2/authorize, <base>/oauth2/token) and
 * OVH_<REGION>_API_BASE (<base>/me names the account).
 *
 * Routes, under /ovh_api/ovh/oauth2/ (the guide's redirect URI) and the same
 * under /ovh/oauth2/ (the guide's app callback URL):
 *   GET  …/initiate?region=eu   302 to the region's authorization URL (state
 *                               bound to the caller, carrying the region)
 *   POST …/initiate {region}    the same URL as JSON
 *   GET  …/callback             state checked, code exchanged, the account
 *                               read from /me, refresh token stored in the
 *                               secrets backend (aurora/orgs/<org>/users/<uid>/ovh/refresh-token)
 *   POST …/refresh              new access token from the stored refresh
 *                               token (stores the rotated refresh token)
 * Status and disconnect: GET /api/connectors/status, DELETE /api/connectors/ovh.
 *
 * The OAuth flow itself (state, code exchange, refresh with rotation, error
 * mapping) is the connector kit's (kit_oauth.h); OVH documents no PKCE and
 * no revocation endpoint, so neither is used.
 *
 * No cloud_exec: OVH's OAuth2 access tokens are for the OVH API; the CLIs an
 * agent would run (openstack, ovhcloud) authenticate with OpenStack or
 * application-key credentials, which this flow does not produce. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "http_client.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"

#define OVH_ID "ovh"
#define OVH_SCOPE "all"

extern const connector connector_ovh;

/* One region's five settings; its endpoints' defaults are OVH's. */
#define OVH_REGION_SETTINGS(UP, lo, auth_base, api_base)                                          \
    { "OVH_" UP "_CLIENT_ID", "ovh." lo ".client_id", CFG_STRING, NULL,                           \
      "OVH connector: " UP " OAuth2 client id", 0 },                                               \
    { "OVH_" UP "_CLIENT_SECRET", NULL, CFG_STRING, NULL,                                          \
      "OVH connector: " UP " OAuth2 client secret", 1 },                                           \
    { "OVH_" UP "_REDIRECT_URI", "ovh." lo ".redirect_uri", CFG_STRING, NULL,                     \
      "OVH connector: " UP " callback URL (https only), e.g. "                                     \
      "https://<host>/ovh_api/ovh/oauth2/callback", 0 },                                           \
    { "OVH_" UP "_AUTH_BASE", "ovh." lo ".auth_base", CFG_STRING, auth_base,                      \
      "OVH connector: " UP " OAuth2 base (<base>/oauth2/authorize, <base>/oauth2/token)", 0 },     \
    { "OVH_" UP "_API_BASE", "ovh." lo ".api_base", CFG_STRING, api_base,                         \
      "OVH connector: " UP " API base (GET <base>/me)", 0 }

static const config_def ovh_settings[] = {
    { "NEXT_PUBLIC_ENABLE_OVH", "ovh.enabled", CFG_BOOL, "false", "OVH connector: enable its routes (else 'OVH connector not enabled')", 0 },
    OVH_REGION_SETTINGS("EU", "eu", "https://www.ovh.com/auth", "https://eu.api.ovh.com/1.0"),
    OVH_REGION_SETTINGS("CA", "ca", "https://ca.ovh.com/auth", "https://ca.api.ovh.com/1.0"),
    OVH_REGION_SETTINGS("US", "us", "https://us.ovhcloud.com/auth", "https://api.us.ovhcloud.com/1.0"),
    { NULL },
};

typedef struct {
    const char *id; /* "eu" */
    const char *up; /* "EU", in its settings' names (defaults: ovh_settings) */
} ovh_region;

static const ovh_region g_regions[] = { { "eu", "EU" }, { "ca", "CA" }, { "us", "US" } };

static const kit_oauth_errors ovh_errors = {
    .service = "OVH",
    .timeout = "OVH_TIMEOUT",
    .unreachable = "OVH_UNREACHABLE",
    .grant = "OVH_GRANT_INVALID",
    .denied = "OVH_INVALID_CREDENTIALS",
    .failed = "OVH_ERROR",
    .authorization_failed = "OVH_AUTHORIZATION_FAILED",
    .redirect_mismatch = "OVH_INVALID_REDIRECT_URI",
};

/* ---- settings ------------------------------------------------------------------ */

static int enabled(const worker_ctx *w, http_response *resp)
{
    if (!config_bool(&w->cfg->raw, "NEXT_PUBLIC_ENABLE_OVH")) {
        http_resp_error(resp, 404, "OVH_NOT_ENABLED",
                        "OVH connector not enabled (set NEXT_PUBLIC_ENABLE_OVH=true and restart Aurora)");
        return 0;
    }
    return 1;
}

static const char *rsetting(const worker_ctx *w, const ovh_region *r, const char *what)
{
    char name[64];
    snprintf(name, sizeof(name), "OVH_%s_%s", r->up, what);
    return server_setting(w->cfg, name);
}

/* "eu", "EU", "ovh-eu" -> the region; NULL with a 400 in resp. */
static const ovh_region *region_find(const char *name, http_response *resp)
{
    const char *n = name && *name ? name : "eu";
    if (!strncasecmp(n, "ovh-", 4))
        n += 4;
    for (size_t i = 0; i < sizeof(g_regions) / sizeof(g_regions[0]); i++)
        if (!strcasecmp(n, g_regions[i].id))
            return &g_regions[i];
    http_resp_error(resp, 400, "OVH_UNKNOWN_REGION", "unknown OVH region '%.32s' (eu, ca or us)",
                    name);
    return NULL;
}

/* A region's OAuth client, as configured. */
typedef struct {
    kit_oauth_client c;
    char authorize[1024], token[1024];
} ovh_client;

/* Client id and secret set, redirect URI https; 0, or -1 with the guide's
 * message in resp. */
static int region_client(const worker_ctx *w, const ovh_region *r, ovh_client *oc,
                         http_response *resp)
{
    if (!rsetting(w, r, "CLIENT_ID") || !rsetting(w, r, "CLIENT_SECRET")) {
        http_resp_error(resp, 400, "OVH_REGION_NOT_CONFIGURED",
                        "OAuth2 credentials not configured for %s (set OVH_%s_CLIENT_ID and "
                        "OVH_%s_CLIENT_SECRET)", r->id, r->up, r->up);
        return -1;
    }
    const char *ru = rsetting(w, r, "REDIRECT_URI");
    if (!ru || !http_client_url_ok(ru, 1)) {
        http_resp_error(resp, 400, "OVH_INVALID_REDIRECT_URI",
                        "Invalid redirect_uri: OVH requires an HTTPS callback URL; set "
                        "OVH_%s_REDIRECT_URI to https://…/ovh_api/ovh/oauth2/callback (use ngrok "
                        "or cloudflared locally)", r->up);
        return -1;
    }
    const char *auth = rsetting(w, r, "AUTH_BASE");
    kit_url_fmt(oc->authorize, sizeof(oc->authorize), auth, "/oauth2/authorize");
    kit_url_fmt(oc->token, sizeof(oc->token), auth, "/oauth2/token");
    oc->c = (kit_oauth_client){ .provider = OVH_ID,
                                .authorize_url = oc->authorize,
                                .token_url = oc->token,
                                .client_id = rsetting(w, r, "CLIENT_ID"),
                                .client_secret = rsetting(w, r, "CLIENT_SECRET"),
                                .redirect_uri = ru,
                                .scope = OVH_SCOPE,
                                .timeout_ms = connector_timeout_ms(w, &connector_ovh),
                                .errors = &ovh_errors };
    return 0;
}

/* ---- initiate ------------------------------------------------------------------------ */

static void initiate(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!enabled(w, resp) || connector_require_user(&req->auth, resp) < 0)
        return;
    char region_q[64] = "", given[1024] = "";
    int is_post = req->method == HTTP_POST;
    if (is_post && buf_pending(&req->body) > 0) {
        cJSON *body = http_json_body(req, resp);
        if (!body)
            return;
        const char *r = api_json_str(body, "region"), *g = api_json_str(body, "redirect_uri");
        snprintf(region_q, sizeof(region_q), "%s", r ? r : "");
        snprintf(given, sizeof(given), "%s", g ? g : "");
        cJSON_Delete(body);
    }
    if (!region_q[0])
        http_query_get(req, "region", region_q, sizeof(region_q));
    if (!given[0])
        http_query_get(req, "redirect_uri", given, sizeof(given));
    const ovh_region *r = region_find(region_q, resp);
    ovh_client oc;
    if (!r || region_client(w, r, &oc, resp) < 0)
        return;
    if (given[0] && strcmp(given, oc.c.redirect_uri) != 0) {
        http_resp_error(resp, 400, "OVH_INVALID_REDIRECT_URI",
                        "Invalid redirect_uri: it must equal OVH_%s_REDIRECT_URI exactly", r->up);
        return;
    }
    char *url = kit_oauth_authorize_url(w, &req->auth, &oc.c, r->id, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "region", r->id);
    cJSON_AddStringToObject(o, "provider", OVH_ID);
    kit_oauth_send_url(resp, is_post ? 200 : 302, url, o);
    free(url);
}

/* ---- the account behind a token ---------------------------------------------------------- */

static const kit_call_errors ovh_api_errors = {
    .service = "OVH API",
    .timeout = "OVH_TIMEOUT",
    .unreachable = "OVH_UNREACHABLE",
    .denied = "OVH_API_DENIED",
    .failed = "OVH_ERROR",
};

/* GET <api>/me with the token (kit_call: retried on 5xx, never off the
 * region's API base); *nic gets the account's nichandle.  0 or -1 with
 * resp filled. */
static int whoami(worker_ctx *w, const ovh_region *r, const char *token, char *nic, size_t cap,
                  http_response *resp)
{
    const char *base = rsetting(w, r, "API_BASE");
    char *url = kit_url(base, "/me");
    const char *headers[] = { "Accept: application/json", NULL };
    long timeout = connector_timeout_ms(w, &connector_ovh);
    kit_call_req q = { .provider = "OVH API", .base_url = base, .url = url, .headers = headers,
                       .bearer = token, .attempt_timeout_ms = timeout, .deadline_ms = timeout,
                       .max_response = 256 * 1024 };
    kit_call_resp rp;
    int rc = kit_call(&q, &rp);
    free(url);
    cJSON *j = rc == AUR_OK ? kit_call_json(&rp) : NULL;
    if (rc != AUR_OK)
        kit_call_error(&ovh_api_errors, &rp, NULL, timeout, " to /me with the new token", resp);
    kit_call_resp_free(&rp);
    if (rc != AUR_OK)
        return -1;
    const char *n = cJSON_IsObject(j) ? api_json_str(j, "nichandle") : NULL;
    char err[64];
    if (!n || api_check_text(n, "nichandle", 1, 128, err, sizeof(err)) < 0) {
        cJSON_Delete(j);
        http_resp_error(resp, 502, "OVH_ERROR", "OVH API answered /me without an account id");
        return -1;
    }
    snprintf(nic, cap, "%s", n);
    cJSON_Delete(j);
    return 0;
}

/* When the access token of a token answer expires, into md. */
static void note_expiry(cJSON *md, const cJSON *tok, int64_t now)
{
    int64_t ei = kit_oauth_expires_in(tok);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "access_token_expires_at");
    if (ei)
        cJSON_AddNumberToObject(md, "access_token_expires_at", (double)(now + ei));
}

/* ---- callback -------------------------------------------------------------------------- */

static void callback(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!enabled(w, resp))
        return;
    kit_oauth_client any = { .provider = OVH_ID, .errors = &ovh_errors };
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &any, "OVH authorization", NULL, &cb, resp) < 0)
        return;
    const ovh_region *r = region_find(cb.st.extra, resp);
    ovh_client oc;
    cJSON *tok = NULL, *md = NULL;
    if (!r || region_client(w, r, &oc, resp) < 0 ||
        kit_oauth_redirect_check(&oc.c, &cb, oc.c.redirect_uri, resp) < 0 ||
        connector_secrets_ready(w, resp) < 0)
        goto out;
    tok = kit_oauth_exchange(w, &oc.c, &cb, "OVH authorization could not be completed", resp);
    if (!tok)
        goto out;
    const char *at = api_json_str(tok, "access_token"), *rt = api_json_str(tok, "refresh_token");
    char nic[160];
    if (!at || !*at || !rt || !*rt) {
        http_resp_error(resp, 502, "OVH_ERROR", "OVH answered without %s",
                        !at || !*at ? "an access token" : "a refresh token");
        goto out;
    }
    if (whoami(w, r, at, nic, sizeof(nic), resp) < 0)
        goto out;
    const char *scope = api_json_str(tok, "scope");
    md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "region", r->id);
    cJSON_AddStringToObject(md, "nichandle", nic);
    cJSON_AddStringToObject(md, "scope", scope ? scope : OVH_SCOPE);
    if (kit_oauth_finish(w, &cb, OVH_ID, "refresh-token", nic, tok, md, NULL, resp) < 0)
        goto out;
    log_info("ovh: user %s of %s connected OVH account (%s)", cb.st.user_id, cb.st.org_id, r->id);
out:
    kit_oauth_callback_wipe(&cb);
    cJSON_Delete(md);
    secret_json_free(tok);
}

/* ---- refresh ------------------------------------------------------------------------- */

static void refresh(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!enabled(w, resp) || connector_require_user(&req->auth, resp) < 0 ||
        connector_secrets_ready(w, resp) < 0)
        return;
    store_connector c;
    cJSON *md, *tok = NULL;
    if (kit_row_load(w, &req->auth, OVH_ID, &c, &md,
                     "ovh is not connected for this user: start with …/ovh/oauth2/initiate",
                     resp) < 0)
        return;
    const char *rname = api_json_str(md, "region");
    const ovh_region *r = rname ? region_find(rname, resp) : NULL;
    ovh_client oc;
    if (!r) {
        if (!rname)
            http_resp_error(resp, 500, "OVH_CONNECTION_CORRUPT",
                            "the stored OVH connection is invalid; connect again");
        goto out;
    }
    if (region_client(w, r, &oc, resp) < 0)
        goto out;
    tok = kit_oauth_refresh(w, &oc.c, c.secret_ref, NULL, "OVH token refresh failed",
                            "OVH_NOT_CONNECTED",
                            "the OVH refresh token is no longer stored; connect OVH again", resp);
    if (!tok)
        goto out;
    if (!api_json_str(tok, "access_token")) {
        http_resp_error(resp, 502, "OVH_ERROR", "OVH answered the refresh without an access token");
        goto out;
    }
    note_expiry(md, tok, (int64_t)time(NULL));
    if (kit_row_save_meta(w, &c, md, resp) < 0)
        goto out;
    int64_t ei = kit_oauth_expires_in(tok);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "refreshed", 1);
    cJSON_AddStringToObject(o, "provider", OVH_ID);
    cJSON_AddStringToObject(o, "region", r->id);
    cJSON_AddStringToObject(o, "account", c.account);
    if (ei)
        cJSON_AddNumberToObject(o, "expires_in", (double)ei);
    http_resp_json(resp, 200, o);
out:
    secret_json_free(tok);
    cJSON_Delete(md);
    store_connector_free(&c);
}

/* ---- status -------------------------------------------------------------------------- */

static void ovh_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "region", NULL };
    int on = config_bool(&w->cfg->raw, "NEXT_PUBLIC_ENABLE_OVH");
    cJSON_AddBoolToObject(out, "enabled", on);
    /* each configured region's OVH_<REGION>_REDIRECT_URI: the callback to
     * register with that region's OAuth2 client (the console shows it) */
    cJSON *ru = cJSON_AddObjectToObject(out, "redirect_uris");
    for (size_t i = 0; ru && i < sizeof(g_regions) / sizeof(g_regions[0]); i++) {
        const char *v = rsetting(w, &g_regions[i], "REDIRECT_URI");
        if (v)
            cJSON_AddStringToObject(ru, g_regions[i].id, v);
    }
    store_connector c;
    cJSON *md;
    if (!kit_status(w, who, OVH_ID, keys, out, &c, &md))
        return;
    if (!on)
        cJSON_ReplaceItemInObjectCaseSensitive(out, "connected", cJSON_CreateFalse());
    const cJSON *exp = md ? cJSON_GetObjectItemCaseSensitive(md, "access_token_expires_at") : NULL;
    if (cJSON_IsNumber(exp))
        api_add_time(out, "access_token_expires_at", (int64_t)exp->valuedouble);
    cJSON_Delete(md);
    store_connector_free(&c);
}

static void ovh_register(void)
{
    static const char *const prefixes[] = { "/ovh_api/ovh/oauth2", "/ovh/oauth2" };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char p[96];
        snprintf(p, sizeof(p), "%s/initiate", prefixes[i]);
        router_add(HTTP_GET, p, ROUTE_AUTH_API, initiate);
        router_add(HTTP_POST, p, ROUTE_AUTH_API, initiate);
        snprintf(p, sizeof(p), "%s/callback", prefixes[i]);
        router_add_outbound(HTTP_GET, p, ROUTE_PUBLIC, callback);
        snprintf(p, sizeof(p), "%s/refresh", prefixes[i]);
        router_add_outbound(HTTP_POST, p, ROUTE_AUTH_API, refresh);
    }
}

const connector connector_ovh = {
    .id = OVH_ID,
    .name = "OVH Cloud",
    .register_routes = ovh_register,
    .status = ovh_status,
    .cloud = NULL,
    .settings = ovh_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
