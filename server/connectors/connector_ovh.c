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
 *                               secrets backend (aurora/users/<uid>/ovh/refresh-token)
 *   POST …/refresh              new access token from the stored refresh
 *                               token (stores the rotated refresh token)
 * Status and disconnect: GET /api/connectors/status, DELETE /api/connectors/ovh.
 *
 * No cloud_exec: OVH's OAuth2 access tokens are for the OVH API; the CLIs an
 * agent would run (openstack, ovhcloud) authenticate with OpenStack or
 * application-key credentials, which this flow does not produce. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "http_client.h"
#include "log.h"
#include "oauth.h"
#include "router.h"
#include "secrets.h"

#define OVH_ID "ovh"
#define OVH_SCOPE "all"

typedef struct {
    const char *id;   /* "eu" */
    const char *up;   /* "EU" */
    const char *auth; /* default OAuth2 base */
    const char *api;  /* default API base */
} ovh_region;

static const ovh_region g_regions[] = {
    { "eu", "EU", "https://www.ovh.com/auth", "https://eu.api.ovh.com/1.0" },
    { "ca", "CA", "https://ca.ovh.com/auth", "https://ca.api.ovh.com/1.0" },
    { "us", "US", "https://us.ovhcloud.com/auth", "https://api.us.ovhcloud.com/1.0" },
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

static void endpoint(const worker_ctx *w, const ovh_region *r, const char *what, const char *dflt,
                     const char *suffix, char *out, size_t cap)
{
    const char *b = rsetting(w, r, what);
    snprintf(out, cap, "%s", b ? b : dflt);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    snprintf(out + n, cap - n, "%s", suffix);
}

static long timeout_ms(const worker_ctx *w)
{
    int64_t t = server_setting_int(w->cfg, "AURORA_PROVIDER_TIMEOUT_MS");
    return t > 0 ? (long)t : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
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

/* Client id and secret set, redirect URI https; 0, or -1 with the guide's
 * message in resp.  *redirect gets the configured URI. */
static int region_ready(const worker_ctx *w, const ovh_region *r, const char **redirect,
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
    *redirect = ru;
    return 0;
}

static void token_error(const worker_ctx *w, const oauth_result *res, const char *what,
                        http_response *resp)
{
    if (res->code == AUR_E_TIMEOUT)
        http_resp_error(resp, 504, "OVH_TIMEOUT", "%s: OVH did not answer within %ld s", what,
                        (timeout_ms(w) + 999) / 1000);
    else if (res->status == 0)
        http_resp_error(resp, 502, "OVH_UNREACHABLE", "%s: OVH is unreachable (%s)", what, res->err);
    else if (res->status >= 400 && res->status < 500)
        http_resp_error(resp, 400,
                        !strcmp(res->error, "invalid_grant") ? "OVH_GRANT_INVALID"
                                                             : "OVH_INVALID_CREDENTIALS",
                        "%s: OVH refused (HTTP %ld%s%s)", what, res->status,
                        res->error[0] ? ", " : "", res->error);
    else
        http_resp_error(resp, 502, "OVH_ERROR", "%s: OVH answered HTTP %ld", what, res->status);
}

/* ---- initiate ------------------------------------------------------------------------ */

static void initiate(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!enabled(w, resp) || connector_require_user(&req->auth, resp) < 0)
        return;
    char region_q[64] = "", given[1024] = "";
    cJSON *body = NULL;
    int is_post = req->method == HTTP_POST;
    if (is_post && buf_pending(&req->body) > 0) {
        body = http_json_body(req, resp);
        if (!body)
            return;
        const char *r = api_json_str(body, "region"), *g = api_json_str(body, "redirect_uri");
        snprintf(region_q, sizeof(region_q), "%s", r ? r : "");
        snprintf(given, sizeof(given), "%s", g ? g : "");
    }
    if (!region_q[0])
        http_query_get(req, "region", region_q, sizeof(region_q));
    if (!given[0])
        http_query_get(req, "redirect_uri", given, sizeof(given));
    cJSON_Delete(body);
    const ovh_region *r = region_find(region_q, resp);
    const char *redirect = NULL;
    if (!r || region_ready(w, r, &redirect, resp) < 0)
        return;
    if (given[0] && strcmp(given, redirect) != 0) {
        http_resp_error(resp, 400, "OVH_INVALID_REDIRECT_URI",
                        "Invalid redirect_uri: it must equal OVH_%s_REDIRECT_URI exactly", r->up);
        return;
    }
    char state[64], authz[1024];
    if (oauth_state_new(w, &req->auth, OVH_ID, redirect, r->id, state, resp) < 0)
        return;
    endpoint(w, r, "AUTH_BASE", r->auth, "/oauth2/authorize", authz, sizeof(authz));
    char *e_client = http_client_escape(rsetting(w, r, "CLIENT_ID"));
    char *e_redirect = http_client_escape(redirect);
    char url[4096];
    int n = -1;
    if (e_client && e_redirect)
        n = snprintf(url, sizeof(url),
                     "%s?response_type=code&client_id=%s&redirect_uri=%s&scope=%s&state=%s", authz,
                     e_client, e_redirect, OVH_SCOPE, state);
    free(e_client);
    free(e_redirect);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        http_resp_error(resp, 500, "INTERNAL", "authorization URL too long");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "authorization_url", url);
    cJSON_AddStringToObject(o, "region", r->id);
    cJSON_AddStringToObject(o, "provider", OVH_ID);
    http_resp_json(resp, is_post ? 200 : 302, o);
    if (!is_post)
        http_resp_add_header(resp, "location", url);
    http_resp_add_header(resp, "cache-control", "no-store");
}

/* ---- the account behind a token ---------------------------------------------------------- */

/* GET <api>/me with the token; *nic gets the account's nichandle.  0 or -1
 * with resp filled. */
static int whoami(worker_ctx *w, const ovh_region *r, const char *token, char *nic, size_t cap,
                  http_response *resp)
{
    char url[1024];
    endpoint(w, r, "API_BASE", r->api, "/me", url, sizeof(url));
    size_t hl = strlen(token) + 32;
    char *authz = malloc(hl);
    if (!authz) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    snprintf(authz, hl, "Authorization: Bearer %s", token);
    const char *headers[] = { authz, "Accept: application/json", NULL };
    http_client_req rq = { .method = "GET", .url = url, .headers = headers,
                           .timeout_ms = timeout_ms(w), .max_response = 256 * 1024 };
    http_client_resp rp;
    int rc = http_client_do(&rq, &rp);
    secret_free_n(authz, hl);
    if (rc < 0) {
        if (rp.code == AUR_E_TIMEOUT)
            http_resp_error(resp, 504, "OVH_TIMEOUT", "OVH API did not answer within %ld s",
                            (timeout_ms(w) + 999) / 1000);
        else
            http_resp_error(resp, 502, "OVH_UNREACHABLE", "OVH API is unreachable (%s)", rp.err);
        return -1;
    }
    if (rp.status < 200 || rp.status > 299) {
        http_resp_error(resp, 502, rp.status == 401 || rp.status == 403 ? "OVH_API_DENIED"
                                                                          : "OVH_ERROR",
                        "OVH API answered HTTP %ld to /me with the new token", rp.status);
        http_client_resp_free(&rp);
        return -1;
    }
    cJSON *j = http_client_json(&rp);
    http_client_resp_free(&rp);
    const char *n = j ? api_json_str(j, "nichandle") : NULL;
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

/* ---- callback -------------------------------------------------------------------------- */

static void callback(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!enabled(w, resp) || oauth_callback_auth(w, req, resp) < 0)
        return;
    char error[128] = "", code[4096] = "";
    int has_error = http_query_get(req, "error", error, sizeof(error)) && error[0];
    oauth_state_info st;
    int state_ok = oauth_state_take(w, req, OVH_ID, &st, resp) == 0; /* single use, always */
    if (has_error) {
        char clean[128];
        size_t o = 0;
        for (const char *p = error; *p && o + 1 < sizeof(clean); p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')
                clean[o++] = *p;
        clean[o] = '\0';
        http_resp_error(resp, 400, "OVH_AUTHORIZATION_FAILED", "OVH authorization failed: %s", clean);
        return;
    }
    if (!state_ok)
        return;
    const ovh_region *r = region_find(st.extra, resp);
    const char *redirect = NULL;
    if (!r || region_ready(w, r, &redirect, resp) < 0)
        return;
    if (strcmp(st.redirect_uri, redirect) != 0) {
        http_resp_error(resp, 400, "OVH_INVALID_REDIRECT_URI",
                        "Invalid redirect_uri: OVH_%s_REDIRECT_URI changed since the connection "
                        "started; start again", r->up);
        return;
    }
    if (!http_query_get(req, "code", code, sizeof(code)) || !code[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST", "the OVH callback has no authorization code");
        return;
    }
    if (connector_secrets_ready(w, resp) < 0)
        return;
    char url[1024];
    endpoint(w, r, "AUTH_BASE", r->auth, "/oauth2/token", url, sizeof(url));
    oauth_code_exchange x = { .token_url = url,
                              .client_id = rsetting(w, r, "CLIENT_ID"),
                              .client_secret = rsetting(w, r, "CLIENT_SECRET"),
                              .code = code,
                              .redirect_uri = st.redirect_uri };
    oauth_result res;
    cJSON *tok = oauth_exchange_code(w, &x, &res);
    OPENSSL_cleanse(code, sizeof(code));
    if (!tok) {
        log_warn("ovh: code exchange (%s) failed: %s", r->id, res.err);
        token_error(w, &res, "OVH authorization could not be completed", resp);
        return;
    }
    const char *at = api_json_str(tok, "access_token"), *rt = api_json_str(tok, "refresh_token");
    char nic[160], path[SECRETS_MAX_PATH + 1], ref[512], err[512];
    if (!at || !*at || !rt || !*rt) {
        http_resp_error(resp, 502, "OVH_ERROR", "OVH answered without %s",
                        !at || !*at ? "an access token" : "a refresh token");
        goto out;
    }
    if (whoami(w, r, at, nic, sizeof(nic), resp) < 0)
        goto out;
    if (secrets_user_path(path, sizeof(path), st.user_id, OVH_ID, "refresh-token") < 0 ||
        secrets_ref(w->secrets, path, ref, sizeof(ref)) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid user id");
        goto out;
    }
    int rc = secrets_put(w->secrets, path, rt, strlen(rt), err, sizeof(err));
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        goto out;
    }
    int64_t now = (int64_t)time(NULL);
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(tok, "expires_in");
    const char *scope = api_json_str(tok, "scope");
    store_connector c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", st.org_id);
    snprintf(c.user_id, sizeof(c.user_id), "%s", st.user_id);
    snprintf(c.connector, sizeof(c.connector), "%s", OVH_ID);
    snprintf(c.account, sizeof(c.account), "%s", nic);
    snprintf(c.secret_ref, sizeof(c.secret_ref), "%s", ref);
    snprintf(c.status, sizeof(c.status), "active");
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "region", r->id);
    cJSON_AddStringToObject(md, "nichandle", nic);
    cJSON_AddStringToObject(md, "scope", scope ? scope : OVH_SCOPE);
    if (cJSON_IsNumber(ei))
        cJSON_AddNumberToObject(md, "access_token_expires_at", (double)(now + (int64_t)ei->valuedouble));
    c.metadata_json = cJSON_PrintUnformatted(md);
    c.created_at = c.updated_at = now;
    rc = c.metadata_json ? store_connector_upsert(w->store, &c) : STORE_ERR;
    free(c.metadata_json);
    if (rc != STORE_OK) {
        cJSON_Delete(md);
        api_store_error(w, resp);
        goto out;
    }
    log_info("ovh: user %s of %s connected OVH account (%s)", st.user_id, st.org_id, r->id);
    cJSON_AddBoolToObject(md, "connected", 1);
    cJSON_AddStringToObject(md, "provider", OVH_ID);
    cJSON_AddStringToObject(md, "account", nic);
    http_resp_json(resp, 302, md);
    {
        char loc[1200];
        snprintf(loc, sizeof(loc), "%s/connectors?provider=ovh&status=connected",
                 w->cfg->frontend_url ? w->cfg->frontend_url : "");
        http_resp_add_header(resp, "location", loc);
    }
out:
    secret_json_free(tok);
}

/* ---- refresh ------------------------------------------------------------------------- */

static void refresh(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!enabled(w, resp) || connector_require_user(&req->auth, resp) < 0 ||
        connector_secrets_ready(w, resp) < 0)
        return;
    store_connector c;
    memset(&c, 0, sizeof(c));
    int rc = store_connector_get(w->store, req->auth.org_id, req->auth.user_id, OVH_ID, &c);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "MISSING_CONNECTOR",
                        "ovh is not connected for this user: start with …/ovh/oauth2/initiate");
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    unsigned char *val = NULL;
    size_t vlen = 0;
    cJSON *tok = NULL;
    cJSON *md = c.metadata_json ? cJSON_Parse(c.metadata_json) : NULL;
    const char *rname = md ? api_json_str(md, "region") : NULL;
    const ovh_region *r = rname ? region_find(rname, resp) : NULL;
    const char *redirect = NULL, *path = NULL;
    char be[32], err[512], url[1024];
    if (!r) {
        if (!rname)
            http_resp_error(resp, 500, "OVH_CONNECTION_CORRUPT",
                            "the stored OVH connection is invalid; connect again");
        goto out;
    }
    if (region_ready(w, r, &redirect, resp) < 0)
        goto out;
    if (secrets_ref_parse(c.secret_ref, be, sizeof(be), &path) < 0) {
        http_resp_error(resp, 500, "OVH_CONNECTION_CORRUPT",
                        "the stored OVH connection is invalid; connect again");
        goto out;
    }
    rc = secrets_get(w->secrets, path, &val, &vlen, err, sizeof(err));
    if (rc == SECRETS_NOT_FOUND) {
        http_resp_error(resp, 400, "OVH_NOT_CONNECTED",
                        "the OVH refresh token is no longer stored; connect OVH again");
        goto out;
    }
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        goto out;
    }
    endpoint(w, r, "AUTH_BASE", r->auth, "/oauth2/token", url, sizeof(url));
    const char *form[] = { "grant_type", "refresh_token", "refresh_token", (const char *)val,
                           "client_id", rsetting(w, r, "CLIENT_ID"),
                           "client_secret", rsetting(w, r, "CLIENT_SECRET"), NULL };
    oauth_result res;
    tok = oauth_token_post(w, url, form, NULL, &res);
    if (!tok) {
        log_warn("ovh: refresh (%s) for %s failed: %s", r->id, req->auth.user_id, res.err);
        token_error(w, &res, "OVH token refresh failed", resp);
        goto out;
    }
    const char *at = api_json_str(tok, "access_token"), *nrt = api_json_str(tok, "refresh_token");
    if (!at || !*at) {
        http_resp_error(resp, 502, "OVH_ERROR", "OVH answered the refresh without an access token");
        goto out;
    }
    if (nrt && *nrt && (strlen(nrt) != vlen || memcmp(nrt, val, vlen))) {
        rc = secrets_put(w->secrets, path, nrt, strlen(nrt), err, sizeof(err));
        if (rc != SECRETS_OK) {
            connector_secrets_error(rc, err, resp);
            goto out;
        }
    }
    int64_t now = (int64_t)time(NULL);
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(tok, "expires_in");
    if (cJSON_IsNumber(ei)) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "access_token_expires_at");
        cJSON_AddNumberToObject(md, "access_token_expires_at", (double)(now + (int64_t)ei->valuedouble));
    }
    char *mj = cJSON_PrintUnformatted(md);
    if (mj) {
        free(c.metadata_json);
        c.metadata_json = mj;
        c.updated_at = now;
        if (store_connector_upsert(w->store, &c) != STORE_OK)
            log_warn("ovh: could not record the refresh: %s", store_errmsg(w->store));
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "refreshed", 1);
    cJSON_AddStringToObject(o, "provider", OVH_ID);
    cJSON_AddStringToObject(o, "region", r->id);
    cJSON_AddStringToObject(o, "account", c.account);
    if (cJSON_IsNumber(ei))
        cJSON_AddNumberToObject(o, "expires_in", ei->valuedouble);
    http_resp_json(resp, 200, o);
out:
    secret_json_free(tok);
    if (val)
        secrets_free(val, vlen);
    cJSON_Delete(md);
    store_connector_free(&c);
}

/* ---- status -------------------------------------------------------------------------- */

static void ovh_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    int on = config_bool(&w->cfg->raw, "NEXT_PUBLIC_ENABLE_OVH");
    cJSON_AddBoolToObject(out, "enabled", on);
    store_connector c;
    memset(&c, 0, sizeof(c));
    int rc = store_connector_get(w->store, who->org_id, who->user_id, OVH_ID, &c);
    if (rc != STORE_OK) {
        cJSON_AddBoolToObject(out, "connected", 0);
        if (rc != STORE_NOT_FOUND) {
            cJSON_AddStringToObject(out, "error", "state store unavailable");
            log_error("ovh status: %s", store_errmsg(w->store));
        }
        return;
    }
    cJSON_AddBoolToObject(out, "connected", on && !strcmp(c.status, "active"));
    cJSON_AddStringToObject(out, "account", c.account);
    cJSON_AddStringToObject(out, "status", c.status);
    cJSON *md = c.metadata_json ? cJSON_Parse(c.metadata_json) : NULL;
    const char *region = md ? api_json_str(md, "region") : NULL;
    if (region)
        cJSON_AddStringToObject(out, "region", region);
    const cJSON *exp = md ? cJSON_GetObjectItemCaseSensitive(md, "access_token_expires_at") : NULL;
    if (cJSON_IsNumber(exp))
        api_add_time(out, "access_token_expires_at", (int64_t)exp->valuedouble);
    cJSON_Delete(md);
    api_add_time(out, "connected_at", c.created_at);
    api_add_time(out, "updated_at", c.updated_at);
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
};
