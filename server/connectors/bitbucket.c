/* bitbucket.c — Bitbucket Cloud (connector guide: Development Tools >
 * Bitbucket): an OAuth consumer of the user's workspace.
 *
 *   GET|POST /bitbucket/login   authorization URL (302, or JSON for POST);
 *                               503 without BB_OAUTH_CLIENT_ID/_SECRET
 *   GET  /bitbucket/callback    {NEXT_PUBLIC_BACKEND_URL}/bitbucket/callback, the
 *                               consumer's Callback URL: state consumed, code
 *                               exchanged (HTTP Basic client authentication), the
 *                               user read from GET /user, the refresh token stored
 *                               (aurora/orgs/<org>/users/<user>/bitbucket/refresh-token)
 *   GET  /bitbucket/status
 * Disconnect: DELETE /api/connectors/bitbucket (Bitbucket documents no
 * revocation endpoint for OAuth consumers: the grant ends when the user
 * revokes it under Personal settings > App authorizations).
 *
 * Bitbucket's OAuth 2.0 (developer.atlassian.com "OAuth 2.0" for Bitbucket
 * Cloud): bitbucket.org/site/oauth2/{authorize,access_token}, access tokens
 * of two hours, refresh_token grant (a new refresh token in the answer is
 * stored in place of the old one).  Access tokens are cached per (org, user)
 * until shortly before they expire; refreshes of one grant are serialized. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "bitbucket.h"
#include "kit_cache.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secret.h"

#define BB_TOKEN_MAX 4096
#define BB_FIELD_REFRESH "refresh-token"
#define MSG_NOT_CONFIGURED "Bitbucket OAuth credentials not configured"
#define MSG_NOT_CONNECTED "Bitbucket is not connected for this user: connect with Bitbucket first"
#define MSG_EXPIRED "Bitbucket credentials expired: reconnect via the Connectors page"

extern const connector connector_bitbucket;

static const config_def bb_settings[] = {
    { "BB_OAUTH_CLIENT_ID", "bitbucket.client_id", CFG_STRING, NULL,
      "Bitbucket connector: the OAuth consumer's Key (workspace settings > OAuth consumers)", 0 },
    { "BB_OAUTH_CLIENT_SECRET", NULL, CFG_STRING, NULL,
      "Bitbucket connector: the OAuth consumer's Secret", 1 },
    { "NEXT_PUBLIC_BACKEND_URL", "backend_url", CFG_STRING, "http://localhost:5080",
      "public URL of this server as the browser reaches it: OAuth callbacks built from it "
      "(Bitbucket: {NEXT_PUBLIC_BACKEND_URL}/bitbucket/callback)", 0 },
    { "BITBUCKET_AUTHORIZE_URL", "bitbucket.authorize_url", CFG_STRING,
      "https://bitbucket.org/site/oauth2/authorize", "Bitbucket connector: OAuth authorization page", 0 },
    { "BITBUCKET_TOKEN_URL", "bitbucket.token_url", CFG_STRING,
      "https://bitbucket.org/site/oauth2/access_token", "Bitbucket connector: OAuth token endpoint", 0 },
    { "BITBUCKET_API_BASE_URL", "bitbucket.api_base_url", CFG_STRING, "https://api.bitbucket.org/2.0",
      "Bitbucket connector: REST API 2.0 base URL", 0 },
    { NULL },
};

static const kit_oauth_errors bb_oauth_errors = {
    .service = "Bitbucket",
    .timeout = "BITBUCKET_TIMEOUT",
    .unreachable = "BITBUCKET_UNREACHABLE",
    .grant = "BITBUCKET_GRANT_INVALID",
    .denied = "BITBUCKET_OAUTH_CLIENT_INVALID",
    .failed = "BITBUCKET_ERROR",
    .denied_hint = "check BB_OAUTH_CLIENT_ID / BB_OAUTH_CLIENT_SECRET",
    .authorization_failed = "BITBUCKET_AUTHORIZATION_FAILED",
    .redirect_mismatch = "BITBUCKET_REDIRECT_MISMATCH",
};

static const kit_call_errors bb_api_errors = {
    .service = "Bitbucket API", .timeout = "BITBUCKET_TIMEOUT",
    .unreachable = "BITBUCKET_UNREACHABLE", .denied = "BITBUCKET_DENIED", .failed = "BITBUCKET_ERROR",
};

/* Refreshes of one grant are serialized by kit_oauth_refresh (a caller
 * queued behind one takes its answer), so two requests never both spend the
 * same refresh token, and one user's slow refresh holds up nobody else's. */
static kit_cache g_tokens = KIT_CACHE_INIT(1024);

long bb_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_bitbucket); }

const char *bb_api_base(const worker_ctx *w, http_response *resp)
{
    const char *b = server_setting(w->cfg, "BITBUCKET_API_BASE_URL");
    char err[160];
    if (!b || kit_base_url_check(b, 0, err, sizeof(err)) != AUR_OK) {
        if (resp)
            http_resp_error(resp, 500, "BITBUCKET_MISCONFIGURED", "BITBUCKET_API_BASE_URL %s",
                            b ? err : "is not set");
        return NULL;
    }
    return b;
}

static int oauth_client(const worker_ctx *w, kit_oauth_client *c, char *redirect, size_t cap,
                        http_response *resp)
{
    const char *backend = server_setting(w->cfg, "NEXT_PUBLIC_BACKEND_URL");
    if (kit_url_fmt(redirect, cap, backend ? backend : "", "/bitbucket/callback") < 0)
        redirect[0] = '\0';
    *c = (kit_oauth_client){ .provider = BB_ID,
                             .authorize_url = server_setting(w->cfg, "BITBUCKET_AUTHORIZE_URL"),
                             .token_url = server_setting(w->cfg, "BITBUCKET_TOKEN_URL"),
                             .client_id = server_setting(w->cfg, "BB_OAUTH_CLIENT_ID"),
                             .client_secret = server_setting(w->cfg, "BB_OAUTH_CLIENT_SECRET"),
                             .redirect_uri = redirect,
                             .scope = "repository pullrequest account",
                             .basic_auth = 1,
                             .timeout_ms = bb_timeout_ms(w),
                             .errors = &bb_oauth_errors };
    if (c->client_id && c->client_secret && c->authorize_url && c->token_url && redirect[0])
        return 0;
    if (resp)
        http_resp_error(resp, 503, "BITBUCKET_OAUTH_NOT_CONFIGURED",
                        MSG_NOT_CONFIGURED ": set BB_OAUTH_CLIENT_ID and BB_OAUTH_CLIENT_SECRET "
                                           "(and NEXT_PUBLIC_BACKEND_URL) and restart Aurora");
    return -1;
}

/* The access token's cache key: the connection's key_id (kit_cache.h), new
 * at every connect, so that a token of a grant replaced through another
 * replica (whose connect forgets only its own cache) is never found for the
 * new one.  Rows made before key_id: their updated_at.  0 or -1. */
static int access_key(char *key, size_t cap, const char *org, const char *user, const cJSON *md,
                      int64_t updated_at)
{
    return kit_cache_conn_key(key, cap, org, user, "access\n", md, updated_at);
}

static void cache_access(const char *key, const cJSON *tok)
{
    int64_t now = (int64_t)time(NULL), exp = 0;
    char *at = kit_oauth_access_token(tok, BB_TOKEN_MAX, now, &exp);
    if (at)
        kit_cache_put(&g_tokens, key, at, exp, now);
    secret_free(at);
}

/* ---- login and callback ------------------------------------------------------------------- */

static void login_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    kit_oauth_client c;
    char redirect[600];
    if (oauth_client(w, &c, redirect, sizeof(redirect), resp) < 0)
        return;
    char *url = kit_oauth_authorize_url(w, &req->auth, &c, NULL, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", BB_ID);
    kit_oauth_send_url(resp, req->method == HTTP_POST ? 200 : 302, url, o);
    free(url);
}

int bb_scope_missing(const kit_call_resp *r, char *need, size_t cap)
{
    if (cap)
        need[0] = '\0';
    if (r->status != 403)
        return 0;
    cJSON *j = kit_call_json(r);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *msg = api_json_str(e, "message");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(e, "detail"), "required");
    int yes = cJSON_IsArray(req) || (msg && strstr(msg, "privilege scope"));
    const cJSON *first = cJSON_IsArray(req) ? cJSON_GetArrayItem(req, 0) : NULL;
    if (yes && cJSON_IsString(first) && cap) {
        /* a scope name: lower-case letters and ':' only, or nothing */
        size_t n = strspn(first->valuestring, "abcdefghijklmnopqrstuvwxyz:");
        if (n > 0 && n < cap && first->valuestring[n] == '\0')
            snprintf(need, cap, "%s", first->valuestring);
    }
    cJSON_Delete(j);
    return yes;
}

const char *bb_permission_name(const char *scope)
{
    static const char *const names[][2] = {
        { "account", "Account (Read)" },          { "repository", "Repositories (Read)" },
        { "pullrequest", "Pull requests (Read)" }, { "team", "Workspace membership (Read)" },
    };
    for (size_t i = 0; scope && i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(scope, names[i][0]))
            return names[i][1];
    return scope && *scope ? scope : "a permission";
}

/* GET {api}/user with a fresh access token: account fields into md.  0;
 * 1 when the consumer lacks Account (Read), which the guide's consumer
 * (Repositories and Pull requests, Read) does: the user is then not named
 * (md and account untouched); or -1 with resp. */
static int read_user(worker_ctx *w, const char *token, cJSON *md, char *account, size_t cap,
                     http_response *resp)
{
    const char *base = bb_api_base(w, resp);
    char *url = base ? kit_url(base, "/user") : NULL;
    if (!url) {
        if (base)
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    kit_call_req q = { .provider = "Bitbucket", .base_url = base, .url = url, .bearer = token,
                       .attempt_timeout_ms = bb_timeout_ms(w) };
    kit_call_resp r;
    int rc = kit_call(&q, &r);
    free(url);
    char need[32];
    if (rc != AUR_OK && bb_scope_missing(&r, need, sizeof(need))) {
        kit_call_resp_free(&r);
        return 1;
    }
    if (rc != AUR_OK) {
        kit_call_error(&bb_api_errors, &r, "Reading the Bitbucket user", 0, NULL, resp);
        kit_call_resp_free(&r);
        return -1;
    }
    cJSON *j = kit_call_json(&r);
    kit_call_resp_free(&r);
    char err[64];
    static const char *const fields[] = { "username", "display_name", "account_id", "uuid", NULL };
    for (size_t i = 0; fields[i]; i++) {
        const char *v = api_json_str(j, fields[i]);
        if (v && api_check_text(v, fields[i], 1, 255, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(md, fields[i], v);
    }
    const char *acc = api_json_str(md, "username") ? api_json_str(md, "username")
                                                   : api_json_str(md, "account_id");
    cJSON_Delete(j);
    if (!acc) {
        http_resp_error(resp, 502, "BITBUCKET_ERROR", "Bitbucket's /user named no account");
        return -1;
    }
    snprintf(account, cap, "%s", acc);
    return 0;
}

static void callback_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_oauth_client c;
    char redirect[600];
    int configured = oauth_client(w, &c, redirect, sizeof(redirect), NULL) == 0;
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "Bitbucket authorization", c.redirect_uri, &cb, resp) < 0)
        return;
    cJSON *tok = NULL, *md = NULL;
    if (!configured) {
        (void)oauth_client(w, &c, redirect, sizeof(redirect), resp);
        goto out;
    }
    if (connector_secrets_ready(w, resp) < 0)
        goto out;
    oauth_state_info st = cb.st;
    tok = kit_oauth_exchange(w, &c, &cb, "Bitbucket authorization could not be completed", resp);
    if (!tok)
        goto out;
    const char *at = api_json_str(tok, "access_token"), *rt = api_json_str(tok, "refresh_token");
    if (!at || !rt || !*rt || strlen(at) > BB_TOKEN_MAX) {
        http_resp_error(resp, 502, "BITBUCKET_ERROR", "Bitbucket answered without %s",
                        !rt || !*rt ? "a refresh token" : "a usable access token");
        goto out;
    }
    md = cJSON_CreateObject();
    char account[256] = "";
    int who = read_user(w, at, md, account, sizeof(account), resp);
    if (who < 0)
        goto out;
    if (who > 0)
        log_info("bitbucket: the OAuth consumer has no Account (Read) permission: connected "
                 "without the user's name");
    const char *scope = api_json_str(tok, "scopes") ? api_json_str(tok, "scopes") : api_json_str(tok, "scope");
    char err[64];
    cJSON_AddStringToObject(md, "auth", "oauth");
    if (scope && api_check_text(scope, "scope", 1, 512, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "scope", scope);
    char key[2 * STORE_ID_LEN + 80];
    if (kit_cache_add_key_id(md) < 0 ||
        access_key(key, sizeof(key), st.org_id, st.user_id, md, 0) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cannot generate the connection's cache key");
        goto out;
    }
    kit_field f = { BB_FIELD_REFRESH, rt };
    if (kit_connect_store(w, st.org_id, st.user_id, BB_ID, account, &f, 1, md, resp) < 0)
        goto out;
    kit_cache_forget(&g_tokens, st.org_id, st.user_id);
    cache_access(key, tok);
    log_info("bitbucket: user %s (org %s) connected Bitbucket as %s", st.user_id, st.org_id,
             account[0] ? account : "(not named: no Account permission)");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", BB_ID);
    cJSON_AddStringToObject(o, "account", account);
    kit_oauth_connected(w, resp, BB_ID, o);
out:
    kit_oauth_callback_wipe(&cb);
    cJSON_Delete(md);
    secret_json_free(tok);
}

/* ---- access tokens -------------------------------------------------------------------------- */

/* 1 if a failed refresh's answer says the grant itself is gone (invalid_grant,
 * or no refresh token stored), not the consumer's credentials. */
static int refused_grant(const http_response *r)
{
    cJSON *j = cJSON_ParseWithLength(buf_head(&r->body), buf_pending(&r->body));
    const char *code = api_json_str(j, "error_code");
    int yes = code && (!strcmp(code, "BITBUCKET_GRANT_INVALID") ||
                       !strcmp(code, "BITBUCKET_CREDENTIALS_EXPIRED"));
    cJSON_Delete(j);
    return yes;
}

char *bb_access_token(worker_ctx *w, const auth_ctx *who, int force, http_response *resp)
{
    /* The row first, even with a cached token: a disconnect or reconnect
     * through another replica shows there, not in this replica's cache. */
    store_connector row;
    cJSON *md = NULL;
    char *at = NULL;
    if (connector_require_user(who, resp) < 0 ||
        kit_row_load(w, who, BB_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return NULL;
    char key[2 * STORE_ID_LEN + 80];
    int64_t exp = 0;
    if (access_key(key, sizeof(key), who->org_id, who->user_id, md, row.updated_at) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cache key too long");
        goto out;
    }
    if (!force && (at = kit_cache_get(&g_tokens, key, (int64_t)time(NULL), &exp)))
        goto out;
    kit_oauth_client c;
    char redirect[600];
    if (oauth_client(w, &c, redirect, sizeof(redirect), resp) < 0)
        goto out;
    if (!at) {
        http_response scratch;
        memset(&scratch, 0, sizeof(scratch));
        cJSON *tok = kit_oauth_refresh(w, &c, row.secret_ref, NULL, "Bitbucket token refresh failed",
                                       "BITBUCKET_CREDENTIALS_EXPIRED", MSG_EXPIRED, &scratch);
        if (tok) {
            cache_access(key, tok);
            /* from the answer, not the cache: a token about to expire is
             * not cached, and still good for this one call */
            at = kit_oauth_access_token(tok, BB_TOKEN_MAX, (int64_t)time(NULL), &exp);
            if (!at)
                http_resp_error(resp, 502, "BITBUCKET_ERROR", "Bitbucket answered the refresh without an access token");
        } else if (scratch.status == 400 && refused_grant(&scratch)) {
            /* the refresh token is refused (revoked, expired): only a reconnect helps */
            http_resp_error(resp, 401, "BITBUCKET_CREDENTIALS_EXPIRED", MSG_EXPIRED);
        } else {
            resp->status = scratch.status;
            buf_free(&resp->body);
            resp->body = scratch.body;
            memset(&scratch.body, 0, sizeof(scratch.body));
        }
        buf_free(&scratch.body);
        secret_json_free(tok);
    }
out:
    cJSON_Delete(md);
    store_connector_free(&row);
    return at;
}

/* ---- status and disconnect ------------------------------------------------------------------- */

static void bb_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "auth", "username", "display_name", "account_id", "scope", NULL };
    kit_oauth_client c;
    char redirect[600];
    cJSON_AddBoolToObject(out, "oauth_configured", oauth_client(w, &c, redirect, sizeof(redirect), NULL) == 0);
    cJSON_AddStringToObject(out, "callback_url", redirect);
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, BB_ID, keys, out, &row, &md))
        return;
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    bb_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    cJSON_AddStringToObject(o, "provider", BB_ID);
    http_resp_json(resp, 200, o);
}

static void bb_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    kit_cache_forget(&g_tokens, who->org_id, who->user_id);
}

static void bb_register(void)
{
    router_add_outbound(HTTP_GET, "/bitbucket/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_POST, "/bitbucket/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_GET, "/bitbucket/callback", ROUTE_PUBLIC, callback_route);
    router_add(HTTP_GET, "/bitbucket/status", ROUTE_AUTH_API, status_route);
    bb_api_register();
}

const connector connector_bitbucket = {
    .id = BB_ID,
    .name = "Bitbucket",
    .register_routes = bb_register,
    .status = bb_status,
    .disconnected = bb_disconnected,
    .settings = bb_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
