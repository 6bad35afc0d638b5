/* pagerduty.c — PagerDuty (connector guide: Observability Tools > PagerDuty):
 * connect by OAuth 2.0 (Option A) or with a REST API key (Option B), the
 * connection's credential for every PagerDuty call, status.  The read API
 * (incidents, one incident with its alerts, services) is pagerduty_api.c, the
 * Generic Webhooks v3 intake pagerduty_webhook.c.
 *
 *   GET|POST /pagerduty/oauth/login      authorization URL (302, or JSON for POST);
 *                                        404 PAGERDUTY_OAUTH_DISABLED unless
 *                                        NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH=true
 *   GET  /pagerduty/oauth/callback       state consumed, code exchanged (PKCE S256),
 *                                        the user read from GET /users/me, the refresh
 *                                        token stored (aurora/orgs/<org>/users/<uid>/
 *                                        pagerduty/refresh-token)
 *   POST /pagerduty/oauth/refresh        a new access token (rotated refresh token stored)
 *   POST /pagerduty/connect              {api_token, webhook_secret?}: the key validated
 *                                        (GET /users/me; an account-level key, which has
 *                                        no user, by GET /abilities), then stored
 *   POST /pagerduty/webhook-secret       {secret}: the v3 subscription's signing secret
 *   DELETE /pagerduty/webhook-secret     back to unsigned deliveries
 *   GET  /pagerduty/status               the connection and the webhook URL to paste
 * Disconnect: DELETE /api/connectors/pagerduty (an OAuth grant is revoked first).
 *
 * PagerDuty's OAuth (developer docs "Obtaining a User OAuth Token via Code
 * Grant" / "… via PKCE"): identity.pagerduty.com/oauth/{authorize,token},
 * client_secret_post, PKCE S256, access tokens that expire and refresh
 * tokens that rotate on every refresh.  Every endpoint is a setting, so tests
 * point them at local fixtures; credentials only travel over https or to
 * loopback (kit_call, kit_oauth). */
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
#include "kit_cache.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "pagerduty.h"
#include "router.h"
#include "secret.h"
#include "secrets.h"

#define PD_ACCEPT "Accept: application/vnd.pagerduty+json;version=2"
#define MSG_INVALID_TOKEN "Invalid PagerDuty API token"
#define MSG_NOT_CONNECTED "PagerDuty is not connected for this user: connect with an API token or OAuth"

extern const connector connector_pagerduty;

static const config_def pd_settings[] = {
    { "NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH", "pagerduty.oauth_enabled", CFG_BOOL, "false",
      "PagerDuty connector: offer OAuth (Option A); the API token connect works either way", 0 },
    { "PAGERDUTY_CLIENT_ID", "pagerduty.client_id", CFG_STRING, NULL,
      "PagerDuty connector: OAuth client id of the app (Developer Mode > My Apps)", 0 },
    { "PAGERDUTY_CLIENT_SECRET", NULL, CFG_STRING, NULL,
      "PagerDuty connector: OAuth client secret of the app", 1 },
    { "PAGERDUTY_REDIRECT_URI", "pagerduty.redirect_uri", CFG_STRING,
      "http://localhost:5080/pagerduty/oauth/callback",
      "PagerDuty connector: the app's Redirect URL, <API_URL>/pagerduty/oauth/callback", 0 },
    { "PAGERDUTY_OAUTH_SCOPE", "pagerduty.oauth_scope", CFG_STRING, "read",
      "PagerDuty connector: scopes asked for (Classic: read; Scoped OAuth: e.g. "
      "\"incidents.read services.read users.read\")", 0 },
    { "PAGERDUTY_OAUTH_AUTHORIZE_URL", "pagerduty.oauth_authorize_url", CFG_STRING,
      "https://identity.pagerduty.com/oauth/authorize",
      "PagerDuty connector: OAuth authorization endpoint", 0 },
    { "PAGERDUTY_OAUTH_TOKEN_URL", "pagerduty.oauth_token_url", CFG_STRING,
      "https://identity.pagerduty.com/oauth/token", "PagerDuty connector: OAuth token endpoint", 0 },
    { "PAGERDUTY_OAUTH_REVOKE_URL", "pagerduty.oauth_revoke_url", CFG_STRING,
      "https://identity.pagerduty.com/oauth/revoke",
      "PagerDuty connector: OAuth revocation endpoint used on disconnect (empty: none)", 0 },
    { "PAGERDUTY_API_BASE_URL", "pagerduty.api_base_url", CFG_STRING, "https://api.pagerduty.com",
      "PagerDuty connector: REST API base URL", 0 },
    { "PAGERDUTY_WEBHOOK_RATE_LIMIT_PER_MINUTE", "pagerduty.webhook_rate_limit_per_minute",
      CFG_INT, "600", "PagerDuty connector: webhook deliveries accepted per user and minute", 0,
      1, 1000000 },
    { NULL },
};

static const kit_oauth_errors pd_oauth_errors = {
    .service = "PagerDuty",
    .timeout = "PAGERDUTY_TIMEOUT",
    .unreachable = "PAGERDUTY_UNREACHABLE",
    .grant = "PAGERDUTY_GRANT_INVALID",
    .denied = "PAGERDUTY_OAUTH_CLIENT_INVALID",
    .failed = "PAGERDUTY_ERROR",
    .denied_hint = "check PAGERDUTY_CLIENT_ID / PAGERDUTY_CLIENT_SECRET",
    .authorization_failed = "PAGERDUTY_AUTHORIZATION_FAILED",
    .redirect_mismatch = "PAGERDUTY_REDIRECT_MISMATCH",
};

const kit_call_errors pd_api_errors = {
    .service = "PagerDuty API",
    .timeout = "PAGERDUTY_TIMEOUT",
    .unreachable = "PAGERDUTY_UNREACHABLE",
    .denied = "PAGERDUTY_DENIED",
    .failed = "PAGERDUTY_ERROR",
};

/* Access tokens of OAuth connections (PagerDuty's last 30 days; refreshed
 * when KIT_CACHE_MARGIN is left). */
static kit_cache g_tokens = KIT_CACHE_INIT(1024);

/* ---- settings -------------------------------------------------------------------------- */

long pd_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_pagerduty); }

static int oauth_enabled(const worker_ctx *w)
{
    return config_bool(&w->cfg->raw, "NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH");
}

static int oauth_disabled(const worker_ctx *w, http_response *resp)
{
    if (oauth_enabled(w))
        return 0;
    http_resp_error(resp, 404, "PAGERDUTY_OAUTH_DISABLED",
                    "PagerDuty OAuth is not enabled (set NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH=true, "
                    "PAGERDUTY_CLIENT_ID and PAGERDUTY_CLIENT_SECRET and restart Aurora), or connect "
                    "with an API token");
    return 1;
}

/* The OAuth client as configured; 0, or -1 with a 503 in resp when the
 * client id or secret is missing. */
static int oauth_client(const worker_ctx *w, kit_oauth_client *c, http_response *resp)
{
    const char *revoke = server_setting(w->cfg, "PAGERDUTY_OAUTH_REVOKE_URL");
    *c = (kit_oauth_client){ .provider = PD_ID,
                             .authorize_url = server_setting(w->cfg, "PAGERDUTY_OAUTH_AUTHORIZE_URL"),
                             .token_url = server_setting(w->cfg, "PAGERDUTY_OAUTH_TOKEN_URL"),
                             .revoke_url = revoke,
                             .client_id = server_setting(w->cfg, "PAGERDUTY_CLIENT_ID"),
                             .client_secret = server_setting(w->cfg, "PAGERDUTY_CLIENT_SECRET"),
                             .redirect_uri = server_setting(w->cfg, "PAGERDUTY_REDIRECT_URI"),
                             .scope = server_setting(w->cfg, "PAGERDUTY_OAUTH_SCOPE"),
                             .pkce = 1, /* documented for every app type */
                             .basic_auth = 0,
                             .timeout_ms = pd_timeout_ms(w),
                             .errors = &pd_oauth_errors };
    if (c->client_id && c->client_secret && c->authorize_url && c->token_url && c->redirect_uri)
        return 0;
    if (resp)
        http_resp_error(resp, 503, "PAGERDUTY_OAUTH_NOT_CONFIGURED",
                        "PagerDuty OAuth is enabled but not configured: set PAGERDUTY_CLIENT_ID and "
                        "PAGERDUTY_CLIENT_SECRET (and PAGERDUTY_REDIRECT_URI) and restart Aurora");
    return -1;
}

/* The REST API base, checked (https, or loopback for tests); NULL with a 500. */
const char *pd_api_base(const worker_ctx *w, http_response *resp)
{
    const char *b = server_setting(w->cfg, "PAGERDUTY_API_BASE_URL");
    char err[160];
    if (!b || kit_base_url_check(b, 0, err, sizeof(err)) != AUR_OK) {
        http_resp_error(resp, 500, "PAGERDUTY_MISCONFIGURED", "PAGERDUTY_API_BASE_URL %s",
                        b ? err : "is not set");
        return NULL;
    }
    return b;
}

/* ---- REST API calls ---------------------------------------------------------------------- */

static int cred_set(pd_cred *c, int oauth, const char *token)
{
    if (!token || !*token || strlen(token) > PD_TOKEN_MAX)
        return -1;
    snprintf(c->header, sizeof(c->header), oauth ? "Authorization: Bearer %s"
                                                 : "Authorization: Token token=%s", token);
    return 0;
}

void pd_cred_wipe(pd_cred *c) { OPENSSL_cleanse(c, sizeof(*c)); }

void pd_call_init(kit_call_req *q, const char *base, const char *url, const char **headers,
                      const pd_cred *c, long t)
{
    headers[0] = PD_ACCEPT;
    headers[1] = c->header;
    headers[2] = NULL;
    *q = (kit_call_req){ .provider = "PagerDuty API", .base_url = base, .url = url,
                         .headers = headers, .attempt_timeout_ms = t, .deadline_ms = 2 * t,
                         .max_response = 4 * 1024 * 1024 };
}

/* GET base/path: AUR_* with rp filled (kit_call_resp_free it). */
static int api_get(worker_ctx *w, const char *base, const pd_cred *c, const char *url,
                   kit_call_resp *rp)
{
    const char *headers[3];
    kit_call_req q;
    pd_call_init(&q, base, url, headers, c, pd_timeout_ms(w));
    return kit_call(&q, rp);
}

/* GET base/path: AUR_* with rp always filled (also when out of memory), so
 * the caller frees it and reports rp->err on every path. */
int pd_api_get_path(worker_ctx *w, const char *base, const pd_cred *c, const char *path,
                        kit_call_resp *rp)
{
    char *url = kit_url(base, path);
    if (!url) {
        memset(rp, 0, sizeof(*rp));
        rp->code = AUR_E_INTERNAL;
        snprintf(rp->err, sizeof(rp->err), "out of memory");
        return AUR_E_INTERNAL;
    }
    int rc = api_get(w, base, c, url, rp);
    free(url);
    return rc;
}

/* The identity behind a credential, into md ("email", "name", "pd_user_id",
 * "token_type") and account.  0, or -1 with resp: 401 → 400 "Invalid
 * PagerDuty API token". */
static int whoami(worker_ctx *w, const char *base, const pd_cred *c, cJSON *md, char *account,
                  size_t cap, http_response *resp)
{
    kit_call_resp rp;
    int rc = pd_api_get_path(w, base, c, "users/me", &rp);
    if (rc == AUR_E_INVALID && rp.status == 400) {
        /* An account-level key acts for no user: PagerDuty answers /users/me
         * with 400.  /abilities needs nothing but a valid key. */
        kit_call_resp_free(&rp);
        rc = pd_api_get_path(w, base, c, "abilities", &rp);
        if (rc == AUR_OK) {
            kit_call_resp_free(&rp);
            cJSON_AddStringToObject(md, "token_type", "account");
            snprintf(account, cap, "PagerDuty account API key");
            return 0;
        }
    }
    if (rc != AUR_OK) {
        if (rc == AUR_E_DENIED && rp.status == 401)
            http_resp_error(resp, 400, "PAGERDUTY_INVALID_TOKEN",
                            MSG_INVALID_TOKEN ": PagerDuty answered HTTP 401; check the key "
                            "(Integrations > API Access Keys) and that it is not revoked");
        else if (rc == AUR_E_DENIED)
            http_resp_error(resp, 400, "PAGERDUTY_FORBIDDEN",
                            "PagerDuty refused the token (HTTP %ld): it lacks read access", rp.status);
        else if (rc == AUR_E_INTERNAL)
            http_resp_error(resp, 500, "INTERNAL", "%s", rp.err);
        else
            kit_call_error(&pd_api_errors, &rp, "Validating the PagerDuty token", pd_timeout_ms(w),
                           NULL, resp);
        kit_call_resp_free(&rp);
        return -1;
    }
    cJSON *j = kit_call_json(&rp);
    kit_call_resp_free(&rp);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "user");
    const char *id = api_json_str(u, "id"), *email = api_json_str(u, "email"),
               *name = api_json_str(u, "name");
    char err[64];
    if (!id || api_check_text(id, "id", 1, 64, err, sizeof(err)) < 0) {
        cJSON_Delete(j);
        http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty answered /users/me without a user");
        return -1;
    }
    cJSON_AddStringToObject(md, "token_type", "user");
    cJSON_AddStringToObject(md, "pd_user_id", id);
    if (email && api_check_text(email, "email", 1, 254, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "email", email);
    if (name && api_check_text(name, "name", 1, 200, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "name", name);
    snprintf(account, cap, "%s", email && strlen(email) < cap ? email : id);
    cJSON_Delete(j);
    return 0;
}

/* ---- the webhook signing secret across reconnects ----------------------------------------- */

/* A secret as PagerDuty issues them (printable ASCII, no space).  -1 with a 400. */
static int webhook_secret_ok(const char *s, http_response *resp)
{
    size_t n = s ? strlen(s) : 0;
    int ok = n >= 8 && n <= PD_WEBHOOK_SECRET_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f;
    if (!ok)
        http_resp_error(resp, 400, "PAGERDUTY_INVALID_WEBHOOK_SECRET",
                        "webhook_secret must be 8-%d printable characters without spaces (the "
                        "secret PagerDuty shows when the webhook subscription is created)",
                        PD_WEBHOOK_SECRET_MAX);
    return ok ? 0 : -1;
}

/* The signing secret of the current connection (malloc'd, secret_free it) so
 * that connecting again — which replaces every secret of the connection —
 * keeps deliveries signed.  *out NULL when there is none.  -1 with resp when
 * one is configured but cannot be read (never silently drop to unsigned). */
static int webhook_secret_current(worker_ctx *w, const char *org, const char *user, char **out,
                                  http_response *resp)
{
    *out = NULL;
    store_connector row;
    int rc = store_connector_get(w->store, org, user, PD_ID, &row);
    if (rc == STORE_NOT_FOUND)
        return 0;
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const char *ref = api_json_str(cJSON_GetObjectItemCaseSensitive(md, "secret_refs"),
                                   PD_FIELD_WEBHOOK);
    int ret = 0;
    if (ref && *ref) {
        unsigned char *v = NULL;
        size_t len = 0;
        if (kit_secret_get(w, ref, &v, &len, 503, "SECRETS_UNAVAILABLE",
                           "the stored PagerDuty webhook signing secret cannot be read; retry later",
                           resp) < 0) {
            /* Gone from the backend: nothing to carry over. */
            ret = resp->status == 503 ? -1 : 0;
        } else {
            *out = strndup((const char *)v, len);
            secrets_free(v, len);
            if (!*out) {
                http_resp_error(resp, 500, "INTERNAL", "out of memory");
                ret = -1;
            }
        }
    }
    cJSON_Delete(md);
    store_connector_free(&row);
    return ret;
}

/* Writes the connection: credential field first, then the signing secret
 * (new, else carried over).  0, or -1 with resp. */
static int save_connection(worker_ctx *w, const char *org, const char *user, const char *field,
                            const char *credential, const char *new_webhook_secret,
                            const char *account, const cJSON *md, http_response *resp)
{
    char *carried = NULL;
    if (!new_webhook_secret && webhook_secret_current(w, org, user, &carried, resp) < 0)
        return -1;
    const char *ws = new_webhook_secret ? new_webhook_secret : carried;
    kit_field f[2] = { { field, credential }, { PD_FIELD_WEBHOOK, ws } };
    int rc = kit_connect_store(w, org, user, PD_ID, account, f, ws ? 2 : 1, md, resp);
    secret_free(carried);
    return rc;
}

/* ---- POST /pagerduty/connect (Option B) --------------------------------------------------- */

static int token_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n < 8 || n > PD_TOKEN_MAX)
        return 0;
    for (; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
            return 0;
    return 1;
}

static void connect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    const char *base = pd_api_base(w, resp);
    cJSON *body = base ? http_json_body(req, resp) : NULL;
    if (!body)
        return;
    const char *token = api_json_str(body, "api_token");
    if (!token)
        token = api_json_str(body, "token");
    const cJSON *wsj = cJSON_GetObjectItemCaseSensitive(body, "webhook_secret");
    const char *ws = cJSON_IsString(wsj) && *wsj->valuestring ? wsj->valuestring : NULL;
    cJSON *md = NULL;
    pd_cred c;
    memset(&c, 0, sizeof(c));
    if (!token || !*token) {
        http_resp_error(resp, 400, "PAGERDUTY_TOKEN_REQUIRED",
                        "api_token is required (PagerDuty > Integrations > API Access Keys)");
        goto out;
    }
    if (!token_ok(token) || cred_set(&c, 0, token) < 0) {
        http_resp_error(resp, 400, "PAGERDUTY_INVALID_TOKEN",
                        MSG_INVALID_TOKEN ": 8-%d printable characters without spaces expected",
                        PD_TOKEN_MAX);
        goto out;
    }
    if ((wsj && !cJSON_IsString(wsj) && !cJSON_IsNull(wsj)) || (ws && webhook_secret_ok(ws, resp) < 0)) {
        if (resp->status != 400)
            http_resp_error(resp, 400, "PAGERDUTY_INVALID_WEBHOOK_SECRET",
                            "webhook_secret must be a string");
        goto out;
    }
    md = cJSON_CreateObject();
    char account[256];
    if (!md || whoami(w, base, &c, md, account, sizeof(account), resp) < 0)
        goto out;
    cJSON_AddStringToObject(md, "auth", "api_token");
    if (save_connection(w, req->auth.org_id, req->auth.user_id, PD_FIELD_TOKEN, token, ws, account,
                        md, resp) < 0)
        goto out;
    kit_cache_forget(&g_tokens, req->auth.org_id, req->auth.user_id);
    log_info("pagerduty: user %s (org %s) connected with an API token (%s)", req->auth.user_id,
             req->auth.org_id, api_json_str(md, "token_type"));
    cJSON_AddStringToObject(md, "account", account);
    kit_connected_reply(resp, PD_ID, md, NULL);
out:
    pd_cred_wipe(&c);
    cJSON_Delete(md);
    secret_json_free(body); /* it held the token */
}

/* ---- OAuth (Option A) --------------------------------------------------------------------- */

static void login_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || oauth_disabled(w, resp))
        return;
    kit_oauth_client c;
    if (oauth_client(w, &c, resp) < 0)
        return;
    char *url = kit_oauth_authorize_url(w, &req->auth, &c, NULL, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", PD_ID);
    kit_oauth_send_url(resp, req->method == HTTP_POST ? 200 : 302, url, o);
    free(url);
}

/* The access token's cache key: the connection's key_id (kit_cache.h), new
 * at every OAuth connect, so that a token of a grant replaced through
 * another replica (whose callback forgets only its own cache) is never found
 * for the new one.  0, or -1 (no key_id, or too long). */
static int access_key(char *key, size_t cap, const char *org, const char *user, const cJSON *md)
{
    return kit_cache_conn_key(key, cap, org, user, "access\n", md, -1);
}

static void cache_access(const char *key, const cJSON *tok)
{
    int64_t now = (int64_t)time(NULL), exp = 0;
    char *at = kit_oauth_access_token(tok, PD_TOKEN_MAX, now, &exp);
    if (at)
        kit_cache_put(&g_tokens, key, at, exp, now);
    secret_free(at);
}

static void callback_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (oauth_disabled(w, resp))
        return;
    kit_oauth_client c;
    int configured = oauth_client(w, &c, NULL) == 0;
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "PagerDuty authorization", c.redirect_uri, &cb, resp) < 0)
        return;
    cJSON *tok = NULL, *md = NULL;
    pd_cred cred;
    memset(&cred, 0, sizeof(cred));
    const char *base = NULL;
    if (!configured) {
        (void)oauth_client(w, &c, resp);
        goto out;
    }
    if (connector_secrets_ready(w, resp) < 0 || !(base = pd_api_base(w, resp)))
        goto out;
    oauth_state_info st = cb.st;
    tok = kit_oauth_exchange(w, &c, &cb, "PagerDuty authorization could not be completed", resp);
    if (!tok)
        goto out;
    const char *at = api_json_str(tok, "access_token"), *rt = api_json_str(tok, "refresh_token");
    if (!rt || !*rt || cred_set(&cred, 1, at) < 0) {
        http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty answered without %s",
                        !rt || !*rt ? "a refresh token" : "a usable access token");
        goto out;
    }
    md = cJSON_CreateObject();
    char account[256];
    if (!md || whoami(w, base, &cred, md, account, sizeof(account), resp) < 0)
        goto out;
    const char *scope = api_json_str(tok, "scope");
    char err[64];
    cJSON_AddStringToObject(md, "auth", "oauth");
    if (scope && api_check_text(scope, "scope", 1, 512, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "scope", scope);
    int64_t ei = kit_oauth_expires_in(tok);
    if (ei)
        cJSON_AddNumberToObject(md, "access_token_expires_at", (double)((int64_t)time(NULL) + ei));
    char key[2 * STORE_ID_LEN + 80];
    if (kit_cache_add_key_id(md) < 0 ||
        access_key(key, sizeof(key), st.org_id, st.user_id, md) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cannot generate the connection's cache key");
        goto out;
    }
    if (save_connection(w, st.org_id, st.user_id, PD_FIELD_REFRESH, rt, NULL, account, md,
                        resp) < 0)
        goto out;
    kit_cache_forget(&g_tokens, st.org_id, st.user_id);
    cache_access(key, tok);
    log_info("pagerduty: user %s (org %s) connected PagerDuty by OAuth", st.user_id, st.org_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", PD_ID);
    cJSON_AddStringToObject(o, "account", account);
    cJSON_AddStringToObject(o, "auth", "oauth");
    kit_oauth_connected(w, resp, PD_ID, o);
out:
    kit_oauth_callback_wipe(&cb);
    pd_cred_wipe(&cred);
    cJSON_Delete(md);
    secret_json_free(tok);
}

/* A fresh access token of an OAuth connection (cached, else refreshed:
 * PagerDuty rotates the refresh token, kit_oauth_refresh stores the new
 * one).  Malloc'd (secret_free it) or NULL with resp. */
static char *oauth_access(worker_ctx *w, const auth_ctx *who, store_connector *row, cJSON *md,
                          int force, http_response *resp)
{
    char key[2 * STORE_ID_LEN + 80];
    int64_t now = (int64_t)time(NULL), exp = 0;
    /* A row made before key_id gets one here; it is saved with the
     * refreshed token's expiry, below (a cached token cannot be under it). */
    if ((!api_json_str(md, KIT_CACHE_KEY_ID) && kit_cache_add_key_id(md) < 0) ||
        access_key(key, sizeof(key), who->org_id, who->user_id, md) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cache key too long");
        return NULL;
    }
    char *at = force ? NULL : kit_cache_get(&g_tokens, key, now, NULL);
    if (at)
        return at;
    kit_oauth_client c;
    if (oauth_disabled(w, resp) || oauth_client(w, &c, resp) < 0)
        return NULL;
    cJSON *tok = kit_oauth_refresh(w, &c, row->secret_ref, NULL, "PagerDuty token refresh failed",
                                   "PAGERDUTY_NOT_CONNECTED",
                                   "the PagerDuty refresh token is no longer stored; connect again",
                                   resp);
    if (!tok)
        return NULL;
    at = kit_oauth_access_token(tok, PD_TOKEN_MAX, now, &exp);
    if (!at) {
        secret_json_free(tok);
        http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty answered the refresh without an "
                                                      "access token");
        return NULL;
    }
    kit_cache_put(&g_tokens, key, at, exp, now);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "access_token_expires_at");
    cJSON_AddNumberToObject(md, "access_token_expires_at", (double)exp);
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (kit_row_save_meta(w, row, md, &scratch) < 0)
        log_warn("pagerduty: saving the token expiry of user %s failed", who->user_id);
    buf_free(&scratch.body);
    secret_json_free(tok);
    return at;
}

static void refresh_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || oauth_disabled(w, resp) ||
        connector_secrets_ready(w, resp) < 0)
        return;
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, &req->auth, PD_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return;
    const char *auth = api_json_str(md, "auth");
    if (!auth || strcmp(auth, "oauth") != 0) {
        http_resp_error(resp, 400, "PAGERDUTY_NOT_OAUTH",
                        "this PagerDuty connection uses an API token; there is nothing to refresh");
    } else {
        char *at = oauth_access(w, &req->auth, &row, md, 1, resp);
        if (at) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddBoolToObject(o, "refreshed", 1);
            cJSON_AddStringToObject(o, "provider", PD_ID);
            cJSON_AddStringToObject(o, "account", row.account);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(md, "access_token_expires_at");
            if (cJSON_IsNumber(e))
                api_add_time(o, "access_token_expires_at", (int64_t)e->valuedouble);
            http_resp_json(resp, 200, o);
        }
        secret_free(at);
    }
    cJSON_Delete(md);
    store_connector_free(&row);
}

/* ---- the caller's credential for the read API ------------------------------------------------ */

/* 0 with c set, or -1 with resp (not connected, secret gone, refresh failed). */
int pd_caller_cred(worker_ctx *w, const auth_ctx *who, pd_cred *c, http_response *resp)
{
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return -1;
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, who, PD_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    const char *auth = api_json_str(md, "auth");
    int rc = -1;
    if (auth && !strcmp(auth, "oauth")) {
        char *at = oauth_access(w, who, &row, md, 0, resp);
        rc = at && cred_set(c, 1, at) == 0 ? 0 : -1;
        if (at && rc < 0)
            http_resp_error(resp, 502, "PAGERDUTY_ERROR", "PagerDuty access token too long");
        secret_free(at);
    } else {
        unsigned char *v = NULL;
        size_t len = 0;
        if (kit_secret_get(w, row.secret_ref, &v, &len, 400, "PAGERDUTY_NOT_CONNECTED",
                           "the PagerDuty API token is no longer stored; connect again", resp) == 0) {
            /* What connect stored was checked; a value changed in the backend
             * since (longer than the cap, a NUL, a line break: another header)
             * is refused, never cut to size and sent. */
            char tok[PD_TOKEN_MAX + 1];
            int ok = len <= PD_TOKEN_MAX;
            if (ok) {
                memcpy(tok, v, len);
                tok[len] = '\0';
                ok = strlen(tok) == len && token_ok(tok) && cred_set(c, 0, tok) == 0;
            }
            OPENSSL_cleanse(tok, sizeof(tok));
            secrets_free(v, len);
            if (ok)
                rc = 0;
            else
                http_resp_error(resp, 500, "PAGERDUTY_CONNECTION_CORRUPT",
                                "the stored PagerDuty API token is not a token; connect again");
        }
    }
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

/* PagerDuty refused a credential it took before (a revoked grant or key):
 * a cached access token is dropped so the next call refreshes it. */
void pd_forget_if_refused(const auth_ctx *who, long status)
{
    if (status == 401)
        kit_cache_forget(&g_tokens, who->org_id, who->user_id);
}

/* ---- the webhook signing secret ------------------------------------------------------------- */

static void webhook_secret_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    store_connector row;
    cJSON *md, *body = NULL;
    if (kit_row_load(w, &req->auth, PD_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return;
    cJSON *refs = cJSON_GetObjectItemCaseSensitive(md, "secret_refs");
    if (!cJSON_IsObject(refs))
        refs = cJSON_AddObjectToObject(md, "secret_refs");
    const char *old = api_json_str(refs, PD_FIELD_WEBHOOK);
    char err[512];
    if (req->method == HTTP_DELETE) {
        char be[32];
        const char *path;
        if (old && secrets_ref_parse(old, be, sizeof(be), &path) == 0) {
            int rc = secrets_delete(w->secrets, path, err, sizeof(err));
            if (rc != SECRETS_OK && rc != SECRETS_NOT_FOUND) {
                connector_secrets_error(rc, err, resp);
                goto out;
            }
        }
        cJSON_DeleteItemFromObjectCaseSensitive(refs, PD_FIELD_WEBHOOK);
        if (kit_row_save_meta(w, &row, md, resp) < 0)
            goto out;
        log_info("pagerduty: user %s (org %s) removed the webhook signing secret",
                 req->auth.user_id, req->auth.org_id);
    } else {
        body = http_json_body(req, resp);
        if (!body)
            goto out;
        const char *s = api_json_str(body, "secret");
        if (!s)
            s = api_json_str(body, "webhook_secret");
        if (webhook_secret_ok(s, resp) < 0)
            goto out;
        char ref[512];
        if (kit_secret_put(w, req->auth.org_id, req->auth.user_id, PD_ID, PD_FIELD_WEBHOOK, s, ref,
                           sizeof(ref), resp) < 0)
            goto out;
        cJSON_DeleteItemFromObjectCaseSensitive(refs, PD_FIELD_WEBHOOK);
        cJSON_AddStringToObject(refs, PD_FIELD_WEBHOOK, ref);
        if (kit_row_save_meta(w, &row, md, resp) < 0)
            goto out;
        log_info("pagerduty: user %s (org %s) set the webhook signing secret", req->auth.user_id,
                 req->auth.org_id);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", PD_ID);
    cJSON_AddBoolToObject(o, "webhook_signed", req->method != HTTP_DELETE);
    http_resp_json(resp, 200, o);
out:
    secret_json_free(body);
    cJSON_Delete(md);
    store_connector_free(&row);
}

/* ---- status ----------------------------------------------------------------------------------- */

static void add_webhook_fields(worker_ctx *w, const auth_ctx *who, const char *host, cJSON *out)
{
    char path[200], url[760];
    snprintf(path, sizeof(path), "/pagerduty/webhook/%s", who->user_id);
    /* A user connected in several organizations: the URL must say which
     * (kit_tenant.h answers 409 otherwise). */
    char orgs[2][STORE_ID_LEN];
    size_t norgs = 0;
    if (store_user_orgs(w->store, who->user_id, PD_ID, 1, orgs, 2, &norgs) == STORE_OK && norgs > 1)
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "?org_id=%s", who->org_id);
    cJSON_AddStringToObject(out, "webhook_path", path);
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (pub && strlen(pub) < 500) {
        size_t n = strlen(pub);
        while (n > 0 && pub[n - 1] == '/')
            n--;
        snprintf(url, sizeof(url), "%.*s%s", (int)n, pub, path);
    } else if (host) {
        snprintf(url, sizeof(url), "https://%s%s", host, path);
    } else {
        return;
    }
    cJSON_AddStringToObject(out, "webhook_url", url);
}

static void pd_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "auth", "token_type", "email", "scope", NULL };
    cJSON_AddBoolToObject(out, "oauth_enabled", oauth_enabled(w));
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, PD_ID, keys, out, &row, &md))
        return;
    /* "name" in a status object is the connector's (the console's title): the
     * PagerDuty user's name goes out as user_name */
    const char *user_name = api_json_str(md, "name");
    if (user_name)
        cJSON_AddStringToObject(out, "user_name", user_name);
    const cJSON *refs = cJSON_GetObjectItemCaseSensitive(md, "secret_refs");
    cJSON_AddBoolToObject(out, "webhook_signed", api_json_str(refs, PD_FIELD_WEBHOOK) != NULL);
    add_webhook_fields(w, who, NULL, out);
    cJSON_Delete(md);
    store_connector_free(&row);
}

/* The Host header when it is a plain host[:port] (it is echoed back). */
static const char *request_host(const http_request *req)
{
    const char *h = http_header_get(req, "host");
    size_t n = h ? strlen(h) : 0;
    if (n == 0 || n > 255)
        return NULL;
    for (const char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == ':' || *p == '[' || *p == ']'))
            return NULL;
    return h;
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    pd_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "connected")) &&
        !cJSON_GetObjectItemCaseSensitive(o, "webhook_url")) {
        cJSON *tmp = cJSON_CreateObject();
        add_webhook_fields(w, &req->auth, request_host(req), tmp);
        cJSON *u = cJSON_DetachItemFromObjectCaseSensitive(tmp, "webhook_url");
        if (u)
            cJSON_AddItemToObject(o, "webhook_url", u);
        cJSON_Delete(tmp);
    }
    cJSON_AddStringToObject(o, "provider", PD_ID);
    http_resp_json(resp, 200, o);
}

/* ---- disconnect ------------------------------------------------------------------------------- */

static void pd_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row)
{
    (void)who;
    cJSON *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    const char *auth = api_json_str(md, "auth");
    kit_oauth_client c;
    if (auth && !strcmp(auth, "oauth") && row->secret_ref[0] && oauth_client(w, &c, NULL) == 0 &&
        c.revoke_url) {
        unsigned char *rt = NULL;
        size_t len = 0;
        http_response scratch;
        memset(&scratch, 0, sizeof(scratch));
        if (kit_secret_get(w, row->secret_ref, &rt, &len, 404, "GONE", "gone", &scratch) == 0) {
            char *tok = strndup((const char *)rt, len);
            secrets_free(rt, len);
            if (tok && kit_oauth_revoke(&c, tok, "refresh_token") == 0)
                log_info("pagerduty: OAuth grant of %s revoked at PagerDuty", row->account);
            else
                log_warn("pagerduty: revoking the OAuth grant of %s failed; the token is deleted "
                         "here anyway", row->account);
            secret_free(tok);
        }
        buf_free(&scratch.body);
    }
    cJSON_Delete(md);
}

static void pd_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    kit_cache_forget(&g_tokens, who->org_id, who->user_id);
}

/* ---- table -------------------------------------------------------------------------------------- */

static void pd_register(void)
{
    router_add_outbound(HTTP_POST, "/pagerduty/connect", ROUTE_AUTH_API, connect_route);
    router_add_outbound(HTTP_GET, "/pagerduty/oauth/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_POST, "/pagerduty/oauth/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_GET, "/pagerduty/oauth/callback", ROUTE_PUBLIC, callback_route);
    router_add_outbound(HTTP_POST, "/pagerduty/oauth/refresh", ROUTE_AUTH_API, refresh_route);
    router_add_outbound(HTTP_POST, "/pagerduty/webhook-secret", ROUTE_AUTH_API, webhook_secret_route);
    router_add_outbound(HTTP_DELETE, "/pagerduty/webhook-secret", ROUTE_AUTH_API,
                        webhook_secret_route);
    router_add(HTTP_GET, "/pagerduty/status", ROUTE_AUTH_API, status_route);
    pagerduty_api_register();
    pagerduty_webhook_register();
}

const connector connector_pagerduty = {
    .id = PD_ID,
    .name = "PagerDuty",
    .register_routes = pd_register,
    .status = pd_status,
    .cloud = NULL,
    .disconnected = pd_disconnected,
    .disconnecting = pd_disconnecting,
    .settings = pd_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
    .redirect_setting = "PAGERDUTY_REDIRECT_URI",
};
