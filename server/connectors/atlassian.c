/* atlassian.c — Atlassian Cloud (connector guide: Atlassian (Confluence +
 * Jira) > Option A) and what every Confluence / Jira call needs
 * (atlassian.h): ONE OAuth 2.0 (3LO) app for both products.
 *
 *   GET|POST /atlassian/login?products=confluence,jira
 *                            authorization URL (302, or 200 JSON for POST):
 *                            audience=api.atlassian.com, prompt=consent, the
 *                            products' scopes plus offline_access (a refresh
 *                            token); a product not enabled: 404
 *   GET  /atlassian/callback state consumed, code exchanged, the site found with
 *                            GET {ATLASSIAN_API_BASE_URL}/oauth/token/accessible-resources
 *                            (the first whose scopes cover every product asked
 *                            for), the refresh token stored once (the
 *                            "atlassian" row), one row per product
 *   POST /atlassian/refresh  {product}: a forced refresh (operator action),
 *                            reports the new expiry, never a token
 *   GET  /atlassian/status   the Cloud grant and both products
 * Data Center (PAT) is atlassian_pat.c; the product rows and the Jira tier
 * atlassian_products.c.
 *
 * Atlassian's 3LO (developer.atlassian.com "OAuth 2.0 (3LO) apps"): no PKCE,
 * client_secret in the token request, access tokens of one hour, rotating
 * refresh tokens (each refresh answers a new one; the old one stops working),
 * API calls through https://api.atlassian.com/ex/{confluence|jira}/<cloudId>.
 * Access tokens are cached per (org, user) until 60 s before they expire;
 * refreshes of one user are serialized, because a second concurrent refresh
 * would present a refresh token the first one just retired. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "atlassian_internal.h"
#include "http_client.h"
#include "kit_addr.h"
#include "kit_cache.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secret.h"
#include "secrets.h"

#define ATL_RT_GONE "ATLASSIAN_REFRESH_TOKEN_GONE" /* kit_oauth_refresh_r: none stored */
#define ATL_REFRESH_MARGIN_S 60   /* an access token is refreshed this long before expiry */
#define ATL_STRIPES 64
#define ATL_MAX_SITES 50

#define MSG_NOT_CONFIGURED "Atlassian OAuth configuration missing"
#define FIX_NOT_CONFIGURED "Set ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET in .env"
#define MSG_NO_ACCESS "You don't have access to this app"
#define FIX_NO_ACCESS "Enable Sharing in the Distribution tab of your Atlassian OAuth app"
#define MSG_SCOPES "Scopes not added to the app"
#define FIX_SCOPES "Add granular Confluence scopes (not classic) in the Permissions tab"
#define MSG_JIRA_SCOPES "Insufficient Jira scopes"
#define FIX_JIRA_SCOPES "Ensure OAuth app has read:jira-work, write:jira-work, and read:jira-user scopes"

static const char *const confluence_scopes[] = { "read:page:confluence", "read:space:confluence",
                                                 "read:user:confluence", "search:confluence", NULL };
static const char *const jira_scopes[] = { "read:jira-work", "write:jira-work", "read:jira-user", NULL };

static const config_def atl_settings[] = {
    { "NEXT_PUBLIC_ENABLE_CONFLUENCE", "atlassian.enable_confluence", CFG_BOOL, "false",
      "Atlassian connector: Confluence may be connected (Cloud or Data Center)", 0 },
    { "NEXT_PUBLIC_ENABLE_JIRA", "atlassian.enable_jira", CFG_BOOL, "false",
      "Atlassian connector: Jira may be connected (Cloud or Data Center)", 0 },
    { "ATLASSIAN_CLIENT_ID", "atlassian.client_id", CFG_STRING, NULL,
      "Atlassian connector: client id of the OAuth 2.0 (3LO) app (Developer Console > Settings)", 0 },
    { "ATLASSIAN_CLIENT_SECRET", NULL, CFG_STRING, NULL,
      "Atlassian connector: client secret of the OAuth 2.0 (3LO) app", 1 },
    { "ATLASSIAN_REDIRECT_URI", "atlassian.redirect_uri", CFG_STRING,
      "http://localhost:5080/atlassian/callback",
      "Atlassian connector: the app's callback URL, <API_URL>/atlassian/callback (the guide's "
      "http://localhost:3000/atlassian/callback when the frontend proxies it to this server)", 0 },
    { "ATLASSIAN_AUTH_URL", "atlassian.auth_url", CFG_STRING, "https://auth.atlassian.com/authorize",
      "Atlassian connector: OAuth 2.0 (3LO) authorization endpoint", 0 },
    { "ATLASSIAN_TOKEN_URL", "atlassian.token_url", CFG_STRING, "https://auth.atlassian.com/oauth/token",
      "Atlassian connector: OAuth 2.0 (3LO) token endpoint", 0 },
    { "ATLASSIAN_API_BASE_URL", "atlassian.api_base_url", CFG_STRING, "https://api.atlassian.com",
      "Atlassian connector: Cloud API gateway (accessible-resources, /ex/confluence/<cloudId>, "
      "/ex/jira/<cloudId>)", 0 },
    { "ATLASSIAN_DC_ALLOW_LOOPBACK", "atlassian.dc_allow_loopback", CFG_BOOL, "false",
      "Atlassian connector: accept Data Center base URLs on loopback (127.0.0.0/8, ::1, "
      "localhost) — tests or an instance on this host", 0 },
    { NULL },
};

static const kit_oauth_errors atl_oauth_errors = {
    .service = "Atlassian",
    .timeout = "ATLASSIAN_TIMEOUT",
    .unreachable = "ATLASSIAN_UNREACHABLE",
    .grant = "ATLASSIAN_GRANT_INVALID",
    .denied = "ATLASSIAN_OAUTH_CLIENT_INVALID",
    .failed = "ATLASSIAN_ERROR",
    .denied_hint = "check ATLASSIAN_CLIENT_ID / ATLASSIAN_CLIENT_SECRET",
    .authorization_failed = "ATLASSIAN_AUTHORIZATION_FAILED",
    .redirect_mismatch = "ATLASSIAN_REDIRECT_MISMATCH",
};

static const kit_call_errors atl_api_errors = {
    .service = "Atlassian API",
    .timeout = "ATLASSIAN_TIMEOUT",
    .unreachable = "ATLASSIAN_UNREACHABLE",
    .denied = "ATLASSIAN_DENIED",
    .failed = "ATLASSIAN_ERROR",
};

/* Access tokens of Cloud grants, stored with their real expiry and a margin
 * of at most ATL_REFRESH_MARGIN_S (see kit_cache_margin). */
static kit_cache g_tokens = KIT_CACHE_INIT(1024);

/* A cache key (access_key): org, user and the grant's key_id. */
#define ATL_KEY_MAX (2 * STORE_ID_LEN + 80)

/* Refreshes are serialized per (org, user) by a striped lock; each stripe
 * remembers its last refresh (by cache key) so a waiter can use it instead
 * of rotating again. */
typedef struct {
    pthread_mutex_t mu;
    char key[ATL_KEY_MAX];
    int64_t done_ms;
} refresh_stripe;
static refresh_stripe g_stripes[ATL_STRIPES];
static pthread_once_t g_stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
    for (int i = 0; i < ATL_STRIPES; i++)
        pthread_mutex_init(&g_stripes[i].mu, NULL);
}

/* The stripe that serializes the refreshes (and grant writes) of who's
 * grants: by org and user, not by cache key, so that a reconnect waits for a
 * refresh of the grant it replaces. */
static refresh_stripe *stripe_of(const auth_ctx *who)
{
    pthread_once(&g_stripes_once, stripes_init);
    char key[2 * STORE_ID_LEN + 4] = "";
    (void)kit_cache_key(key, sizeof(key), who->org_id, who->user_id, "");
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *k = key; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return &g_stripes[h % ATL_STRIPES];
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- products ------------------------------------------------------------------------------ */

const char *atl_product_name(atl_product p) { return p == ATL_JIRA ? "Jira" : "Confluence"; }

const char *atl_product_id(atl_product p) { return p == ATL_JIRA ? "jira" : "confluence"; }

int atl_product_parse(const char *s, atl_product *p)
{
    if (s && !strcmp(s, "confluence"))
        *p = ATL_CONFLUENCE;
    else if (s && !strcmp(s, "jira"))
        *p = ATL_JIRA;
    else
        return -1;
    return 0;
}

const connector *atl_product_connector(atl_product p)
{
    return p == ATL_JIRA ? &connector_jira : &connector_confluence;
}

int atl_product_enabled(const worker_ctx *w, atl_product p)
{
    return config_bool(&w->cfg->raw,
                       p == ATL_JIRA ? "NEXT_PUBLIC_ENABLE_JIRA" : "NEXT_PUBLIC_ENABLE_CONFLUENCE");
}

int atl_product_disabled(const worker_ctx *w, atl_product p, http_response *resp)
{
    if (atl_product_enabled(w, p))
        return 0;
    http_resp_error(resp, 404, p == ATL_JIRA ? "JIRA_DISABLED" : "CONFLUENCE_DISABLED",
                    "%s is not enabled on this server: set %s=true in .env and restart Aurora",
                    atl_product_name(p),
                    p == ATL_JIRA ? "NEXT_PUBLIC_ENABLE_JIRA" : "NEXT_PUBLIC_ENABLE_CONFLUENCE");
    return 1;
}

static void expired(atl_product p, const char *why, http_response *resp)
{
    http_resp_error(resp, 401, p == ATL_JIRA ? "JIRA_CREDENTIALS_EXPIRED" : "CONFLUENCE_CREDENTIALS_EXPIRED",
                    "%s credentials expired: Reconnect via the Connectors page (%s)",
                    atl_product_name(p), why);
}

/* ---- settings ------------------------------------------------------------------------------- */

static long grant_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_atlassian); }

/* The OAuth client as configured; 0, or -1 with a 503 in resp (may be NULL). */
static int oauth_client(const worker_ctx *w, const char *scope, kit_oauth_client *c,
                        http_response *resp)
{
    *c = (kit_oauth_client){ .provider = ATL_ID,
                             .authorize_url = server_setting(w->cfg, "ATLASSIAN_AUTH_URL"),
                             .token_url = server_setting(w->cfg, "ATLASSIAN_TOKEN_URL"),
                             .revoke_url = NULL, /* Atlassian documents none for 3LO */
                             .client_id = server_setting(w->cfg, "ATLASSIAN_CLIENT_ID"),
                             .client_secret = server_setting(w->cfg, "ATLASSIAN_CLIENT_SECRET"),
                             .redirect_uri = server_setting(w->cfg, "ATLASSIAN_REDIRECT_URI"),
                             .scope = scope,
                             .extra_params = "audience=api.atlassian.com&prompt=consent",
                             .pkce = 0,
                             .basic_auth = 0,
                             .timeout_ms = grant_timeout_ms(w),
                             .errors = &atl_oauth_errors };
    if (c->client_id && *c->client_id && c->client_secret && *c->client_secret && c->authorize_url &&
        c->token_url && c->redirect_uri)
        return 0;
    if (resp)
        http_resp_error(resp, 503, "ATLASSIAN_OAUTH_NOT_CONFIGURED",
                        MSG_NOT_CONFIGURED ": " FIX_NOT_CONFIGURED " and restart Aurora");
    return -1;
}

/* The Cloud API gateway, checked; NULL with a 500 in resp. */
static const char *api_base(const worker_ctx *w, http_response *resp)
{
    const char *b = server_setting(w->cfg, "ATLASSIAN_API_BASE_URL");
    char err[160];
    if (!b || kit_base_url_check(b, 0, err, sizeof(err)) != AUR_OK) {
        http_resp_error(resp, 500, "ATLASSIAN_MISCONFIGURED", "ATLASSIAN_API_BASE_URL %s",
                        b ? err : "is not set");
        return NULL;
    }
    return b;
}

/* ---- access tokens ----------------------------------------------------------------------------- */

void atl_forget_tokens(const auth_ctx *who) { kit_cache_forget(&g_tokens, who->org_id, who->user_id); }

static void cache_put(const char *key, const char *at, int64_t exp, int64_t now)
{
    kit_cache_put_margin(&g_tokens, key, at, exp, ATL_REFRESH_MARGIN_S, now);
}

/* The access token's cache key: the grant row's key_id (kit_cache.h), new
 * at every connect, so that a token of a grant replaced through another
 * replica (whose callback forgets only its own cache) is never found for the
 * new one.  Rows made before key_id: their updated_at (they get a key_id at
 * their next refresh).  0 or -1. */
static int access_key(char *key, size_t cap, const auth_ctx *who, const cJSON *md,
                      int64_t updated_at)
{
    return kit_cache_conn_key(key, cap, who->org_id, who->user_id, "access\n", md, updated_at);
}

/* who's Cloud grant row and its metadata: 0, or -1 with resp (401 expired
 * when it is gone). */
static int load_grant(worker_ctx *w, const auth_ctx *who, atl_product p, store_connector *row,
                      cJSON **md, http_response *resp)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s is not connected", atl_product_name(p));
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    int rc = kit_row_load(w, who, ATL_ID, row, md, msg, &scratch);
    int status = scratch.status;
    buf_free(&scratch.body);
    if (rc < 0) {
        if (status == 404)
            expired(p, "the Atlassian Cloud grant is gone", resp);
        else
            api_store_error(w, resp);
    }
    return rc;
}

/* A token request at ATLASSIAN_TOKEN_URL (form, client_secret_post).  The
 * answer or NULL with r filled. */
static cJSON *token_post(const kit_oauth_client *c, const char *const *grant, oauth_result *r)
{
    const char *form[16];
    size_t n = 0;
    for (; grant[n]; n++)
        form[n] = grant[n];
    form[n++] = "client_id";
    form[n++] = c->client_id;
    form[n++] = "client_secret";
    form[n++] = c->client_secret;
    form[n] = NULL;
    return kit_oauth_token_post(c->token_url, form, NULL, c->timeout_ms, r);
}

/* A disconnect that ran during a refresh deleted the grant's secret before
 * the rotated one was written back: the row is gone, so is the new secret,
 * and so is one the kit kept for want of storing it. */
static void drop_if_disconnected(worker_ctx *w, const auth_ctx *who, const char *ref)
{
    store_connector row;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, ATL_ID, &row);
    if (rc == STORE_OK) {
        store_connector_free(&row);
        return;
    }
    char be[32], err[512];
    const char *path;
    if (rc == STORE_NOT_FOUND)
        kit_oauth_refresh_resume(kit_oauth_refresh_pause(NULL, ref, NULL));
    if (rc == STORE_NOT_FOUND && secrets_ref_parse(ref, be, sizeof(be), &path) == 0 &&
        secrets_delete(w->secrets, path, err, sizeof(err)) == SECRETS_OK)
        log_info("atlassian: grant of user %s was removed during a refresh; its new refresh "
                 "token deleted", who->user_id);
}

/* 1 if a failed refresh's answer says no refresh token is stored. */
static int missing_secret(const http_response *r)
{
    cJSON *j = cJSON_ParseWithLength(buf_head(&r->body), buf_pending(&r->body));
    const char *code = api_json_str(j, "error_code");
    int yes = code && !strcmp(code, ATL_RT_GONE);
    cJSON_Delete(j);
    return yes;
}

/* The refresh of who's grant (the lock held).  The access token (secret_free
 * it), *exp and the cache key of the grant refreshed into key (ATL_KEY_MAX:
 * the row read here, which a reconnect may have replaced since the caller's),
 * or NULL with resp. */
static char *refresh_grant(worker_ctx *w, const auth_ctx *who, atl_product p, int64_t *exp,
                           char *key, http_response *resp)
{
    kit_oauth_client c;
    if (oauth_client(w, NULL, &c, resp) < 0)
        return NULL;
    store_connector row;
    cJSON *md;
    if (load_grant(w, who, p, &row, &md, resp) < 0)
        return NULL;
    http_response scratch;
    char *at = NULL;
    /* The kit's refresh: one per grant in this process, a retry with the
     * stored token when another replica rotated it meanwhile, the rotated
     * token stored, or kept in memory when the secrets backend refuses it
     * (the old one is dead at Atlassian). */
    oauth_result r;
    memset(&scratch, 0, sizeof(scratch));
    cJSON *tok = kit_oauth_refresh_r(w, &c, row.secret_ref, NULL, "Atlassian token refresh failed",
                                     ATL_RT_GONE, "the refresh token is no longer stored", &r,
                                     &scratch);
    if (!tok) {
        /* Atlassian refuses a revoked, expired or retired refresh token with
         * 403 unauthorized_client (invalid_grant elsewhere); a 401 or
         * invalid_client is this server's client id/secret, not the user's grant. */
        int client = r.status == 401 || !strcmp(r.error, "invalid_client");
        if (r.status >= 400 && r.status < 500 && r.code != AUR_E_TIMEOUT && !client) {
            log_warn("atlassian: refresh for user %s (org %s) refused: %s", who->user_id,
                     who->org_id, r.err);
            char code[64];
            kit_code_text(r.error, code, sizeof(code));
            char why[160];
            snprintf(why, sizeof(why), "Atlassian refused the refresh: HTTP %ld%s%s", r.status,
                     code[0] ? ", " : "", code);
            expired(p, why, resp);
        } else if (!r.status && scratch.status == 400 && missing_secret(&scratch)) {
            expired(p, "the refresh token is no longer stored", resp);
        } else {
            resp->status = scratch.status;
            buf_free(&resp->body);
            resp->body = scratch.body;
            memset(&scratch.body, 0, sizeof(scratch.body));
        }
        buf_free(&scratch.body);
        goto out;
    }
    buf_free(&scratch.body);
    /* a disconnect of a product that released the grant meanwhile */
    drop_if_disconnected(w, who, row.secret_ref);
    int64_t now = (int64_t)time(NULL);
    at = kit_oauth_access_token(tok, ATL_TOKEN_MAX, now, exp);
    if (!at) {
        http_resp_error(resp, 502, "ATLASSIAN_ERROR", "Atlassian answered the refresh without an access token");
        goto out;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(md, "access_token_expires_at");
    cJSON_AddNumberToObject(md, "access_token_expires_at", (double)*exp);
    /* A row made before key_id gets one, saved with the expiry. */
    int added = !api_json_str(md, KIT_CACHE_KEY_ID) && kit_cache_add_key_id(md) == 0;
    memset(&scratch, 0, sizeof(scratch));
    if (kit_row_save_meta(w, &row, md, &scratch) < 0) {
        log_warn("atlassian: saving the token expiry of user %s failed", who->user_id);
        if (added) /* not stored: the row's key is still its updated_at */
            cJSON_DeleteItemFromObjectCaseSensitive(md, KIT_CACHE_KEY_ID);
    }
    buf_free(&scratch.body);
    char k[ATL_KEY_MAX];
    if (access_key(k, sizeof(k), who, md, row.updated_at) == 0)
        memcpy(key, k, sizeof(k));
out:
    secret_json_free(tok);
    cJSON_Delete(md);
    store_connector_free(&row);
    return at;
}

/* who's Cloud access token: cached, else refreshed (one refresh at a time per
 * user; force: the product answered 401).  *rotated: this call refreshed.
 * Malloc'd (secret_free it) or NULL with resp. */
static char *cloud_access(worker_ctx *w, const auth_ctx *who, atl_product p, int force,
                          int64_t *exp, int *rotated, http_response *resp)
{
    char key[ATL_KEY_MAX];
    *rotated = 0;
    /* The grant's row first, even with a cached token: a reconnect or a
     * disconnect through another replica shows there, not in this cache. */
    store_connector row;
    cJSON *md;
    if (load_grant(w, who, p, &row, &md, resp) < 0)
        return NULL;
    int keyed = access_key(key, sizeof(key), who, md, row.updated_at);
    cJSON_Delete(md);
    store_connector_free(&row);
    if (keyed < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cache key too long");
        return NULL;
    }
    int64_t now = (int64_t)time(NULL);
    char *at = force ? NULL : kit_cache_get(&g_tokens, key, now, exp);
    if (at)
        return at;
    refresh_stripe *s = stripe_of(who);
    int64_t asked = mono_ms();
    pthread_mutex_lock(&s->mu);
    /* Another request's refresh ended while this one waited: its token is
     * newer than the one this caller saw refused, so use it. */
    int recent = !strcmp(s->key, key) && s->done_ms >= asked;
    if (!force || recent)
        at = kit_cache_get(&g_tokens, key, (int64_t)time(NULL), exp);
    if (!at) {
        at = refresh_grant(w, who, p, exp, key, resp);
        if (at) {
            cache_put(key, at, *exp, (int64_t)time(NULL));
            snprintf(s->key, sizeof(s->key), "%s", key);
            s->done_ms = mono_ms();
            *rotated = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return at;
}

/* ---- atl_credentials ------------------------------------------------------------------------------- */

void atl_creds_clear(atl_creds *c)
{
    if (!c)
        return;
    secret_free(c->token);
    c->token = NULL;
}

/* atl_credentials, plus what POST /atlassian/refresh reports: whether this
 * call rotated the grant and the access token's expiry (Cloud). */
static int credentials(worker_ctx *w, const auth_ctx *who, atl_product p, int force_refresh,
                       atl_creds *out, int *rotated, int64_t *exp, http_response *resp)
{
    memset(out, 0, sizeof(*out));
    *rotated = 0;
    *exp = 0;
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return -1;
    store_connector row;
    cJSON *md;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s is not connected", atl_product_name(p));
    if (kit_row_load(w, who, atl_product_id(p), &row, &md, msg, resp) < 0)
        return -1;
    int ret = -1;
    const char *mode = api_json_str(md, "mode");
    const char *site = api_json_str(md, "site_url");
    out->timeout_ms = connector_timeout_ms(w, atl_product_connector(p));
    out->tier = p == ATL_JIRA ? atl_tier_of(md) : ATL_TIER_READ;
    snprintf(out->site_url, sizeof(out->site_url), "%s", site ? site : "");
    if (mode && !strcmp(mode, "data_center")) {
        const char *base = api_json_str(md, "base_url");
        unsigned char *v = NULL;
        size_t len = 0;
        if (!base || strlen(base) >= sizeof(out->api_base)) {
            http_resp_error(resp, 500, "INTERNAL", "the %s connection has no base URL; reconnect",
                            atl_product_name(p));
            goto out;
        }
        if (kit_secret_get(w, row.secret_ref, &v, &len, 401,
                           p == ATL_JIRA ? "JIRA_CREDENTIALS_EXPIRED" : "CONFLUENCE_CREDENTIALS_EXPIRED",
                           p == ATL_JIRA ? "Jira credentials expired: Reconnect via the Connectors page"
                                         : "Confluence credentials expired: Reconnect via the Connectors page",
                           resp) < 0)
            goto out;
        out->token = strndup((const char *)v, len);
        secrets_free(v, len);
        if (!out->token) {
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
            goto out;
        }
        snprintf(out->api_base, sizeof(out->api_base), "%s", base);
        out->cloud = 0;
        out->allow_http = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(md, "allow_http"));
        out->allow_address = kit_addr_allow;
        out->allow_address_ud = atl_dc_allow_loopback(w);
        ret = 0;
    } else if (mode && !strcmp(mode, "cloud")) {
        const char *cloud_id = api_json_str(md, "cloud_id");
        const char *gw = api_base(w, resp);
        if (!gw)
            goto out;
        if (!cloud_id || kit_url_fmt(out->api_base, sizeof(out->api_base), gw, "/ex/%s/%s",
                                     atl_product_id(p), cloud_id) < 0) {
            http_resp_error(resp, 500, "INTERNAL", "the %s connection has no usable site; reconnect",
                            atl_product_name(p));
            goto out;
        }
        out->token = cloud_access(w, who, p, force_refresh, exp, rotated, resp);
        if (!out->token)
            goto out;
        out->cloud = 1;
        ret = 0;
    } else {
        http_resp_error(resp, 500, "INTERNAL", "the %s connection is of an unknown kind; reconnect",
                        atl_product_name(p));
    }
out:
    if (ret < 0)
        atl_creds_clear(out);
    cJSON_Delete(md);
    store_connector_free(&row);
    return ret;
}

int atl_credentials(worker_ctx *w, const auth_ctx *who, atl_product p, int force_refresh,
                    atl_creds *out, http_response *resp)
{
    int rotated;
    int64_t exp;
    return credentials(w, who, p, force_refresh, out, &rotated, &exp, resp);
}

/* ---- login -------------------------------------------------------------------------------------------- */

/* The products a login asks for ("confluence,jira"; absent: every enabled
 * one), each enabled.  mask bit p.  0, or -1 with resp. */
static int parse_products(const worker_ctx *w, const char *list, unsigned *mask, http_response *resp)
{
    *mask = 0;
    if (!list || !*list) {
        for (int p = 0; p < 2; p++)
            if (atl_product_enabled(w, (atl_product)p))
                *mask |= 1u << p;
        if (!*mask) {
            http_resp_error(resp, 404, "ATLASSIAN_DISABLED",
                            "Neither Confluence nor Jira is enabled on this server: set "
                            "NEXT_PUBLIC_ENABLE_CONFLUENCE=true and/or NEXT_PUBLIC_ENABLE_JIRA=true "
                            "in .env and restart Aurora");
            return -1;
        }
        return 0;
    }
    if (strlen(list) > 64) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT", "products must be confluence, jira or both");
        return -1;
    }
    char buf[80];
    snprintf(buf, sizeof(buf), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        atl_product p;
        if (atl_product_parse(t, &p) < 0) {
            http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT",
                            "products must be confluence, jira or both (comma-separated)");
            return -1;
        }
        if (atl_product_disabled(w, p, resp))
            return -1;
        *mask |= 1u << p;
    }
    if (!*mask) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT", "products must be confluence, jira or both");
        return -1;
    }
    return 0;
}

static void mask_text(unsigned mask, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", mask & 1 ? "confluence" : "", mask == 3 ? "," : "",
             mask & 2 ? "jira" : "");
}

static void scope_text(unsigned mask, char *out, size_t cap)
{
    out[0] = '\0';
    for (int p = 0; p < 2; p++)
        if (mask & (1u << p))
            for (const char *const *s = p == ATL_JIRA ? jira_scopes : confluence_scopes; *s; s++)
                snprintf(out + strlen(out), cap - strlen(out), "%s ", *s);
    snprintf(out + strlen(out), cap - strlen(out), "offline_access");
}

static void login_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    char list[80] = "";
    int has_list = http_query_get(req, "products", list, sizeof(list)) != 0;
    cJSON *body = NULL;
    if (!has_list && req->method == HTTP_POST && req->body.len > 0) {
        body = http_json_body(req, resp);
        if (!body)
            return;
        const cJSON *pj = cJSON_GetObjectItemCaseSensitive(body, "products");
        if (cJSON_IsString(pj) && strlen(pj->valuestring) < sizeof(list)) {
            snprintf(list, sizeof(list), "%s", pj->valuestring);
        } else if (cJSON_IsArray(pj) && cJSON_GetArraySize(pj) <= 2) {
            const cJSON *it;
            cJSON_ArrayForEach(it, pj)
            {
                if (!cJSON_IsString(it) || strlen(it->valuestring) > 16)
                    break;
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         list[0] ? "," : "", it->valuestring);
            }
            if (it) {
                cJSON_Delete(body);
                http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT",
                                "products must be [\"confluence\"], [\"jira\"] or both");
                return;
            }
        } else if (pj || !cJSON_IsObject(body)) {
            cJSON_Delete(body);
            http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT",
                            "products must be confluence, jira or both");
            return;
        }
        cJSON_Delete(body);
        if (pj && !list[0]) {
            http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT", "products must not be empty");
            return;
        }
        has_list = list[0] != '\0'; /* {} : every enabled product, as without a body */
    } else if (has_list && !list[0]) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT", "products must not be empty");
        return;
    }
    unsigned mask;
    if (parse_products(w, has_list ? list : NULL, &mask, resp) < 0)
        return;
    char scope[512], extra[32];
    scope_text(mask, scope, sizeof(scope));
    mask_text(mask, extra, sizeof(extra));
    kit_oauth_client c;
    if (oauth_client(w, scope, &c, resp) < 0)
        return;
    char *url = kit_oauth_authorize_url(w, &req->auth, &c, extra, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", ATL_ID);
    cJSON *arr = cJSON_AddArrayToObject(o, "products");
    for (int p = 0; p < 2; p++)
        if (mask & (1u << p))
            cJSON_AddItemToArray(arr, cJSON_CreateString(atl_product_id((atl_product)p)));
    kit_oauth_send_url(resp, req->method == HTTP_POST ? 200 : 302, url, o);
    free(url);
}

/* ---- callback ------------------------------------------------------------------------------------------ */

/* The provider's own refusals, as the guide words them. */
static int known_refusal(const char *error, const char *desc, http_response *resp)
{
    if ((error && !strcmp(error, "access_denied")) || (desc && strstr(desc, "don't have access"))) {
        http_resp_error(resp, 400, "ATLASSIAN_ACCESS_DENIED",
                        MSG_NO_ACCESS ": " FIX_NO_ACCESS
                        " (Distribution status Sharing), or approve the consent screen");
        return 1;
    }
    if ((error && (!strcmp(error, "unauthorized_client") || !strcmp(error, "invalid_scope"))) ||
        (desc && strstr(desc, "scope does not match"))) {
        http_resp_error(resp, 400, "ATLASSIAN_SCOPES_NOT_ADDED", MSG_SCOPES ": " FIX_SCOPES
                        " (Confluence API > Add granular scopes; Jira platform REST API: "
                        "read:jira-work, write:jira-work, read:jira-user)");
        return 1;
    }
    return 0;
}

static int has_all(const cJSON *scopes, const char *const *want)
{
    for (; *want; want++) {
        int found = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, scopes)
        {
            if (cJSON_IsString(s) && !strcmp(s->valuestring, *want))
                found = 1;
        }
        if (!found)
            return 0;
    }
    return 1;
}

/* Which requested products a site's scopes cover (mask bits). */
static unsigned covered(const cJSON *site, unsigned mask)
{
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(site, "scopes");
    unsigned got = 0;
    if (!cJSON_IsArray(sc))
        return 0;
    if ((mask & 1) && has_all(sc, confluence_scopes))
        got |= 1;
    if ((mask & 2) && has_all(sc, jira_scopes))
        got |= 2;
    return got;
}

static int site_ok(const cJSON *s)
{
    const char *id = api_json_str(s, "id"), *url = api_json_str(s, "url");
    char err[160];
    if (!id || !url || strlen(id) > 64 || strlen(url) > 300 || !*id)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            return 0;
    return kit_base_url_check(url, 0, err, sizeof(err)) == AUR_OK;
}

/* The site to connect: the first whose scopes cover every requested product.
 * NULL with resp (no site, or the scopes fall short — the guide's messages). */
static const cJSON *pick_site(const cJSON *sites, unsigned mask, http_response *resp)
{
    const cJSON *best = NULL, *s;
    unsigned best_got = 0;
    int n = 0;
    cJSON_ArrayForEach(s, sites)
    {
        if (++n > ATL_MAX_SITES)
            break;
        if (!site_ok(s))
            continue;
        unsigned got = covered(s, mask);
        if (got == mask)
            return s;
        if (!best || __builtin_popcount(got) > __builtin_popcount(best_got)) {
            best = s;
            best_got = got;
        }
    }
    if (!best) {
        http_resp_error(resp, 400, "ATLASSIAN_NO_SITE",
                        "Atlassian granted access to no site: choose a Confluence or Jira Cloud "
                        "site on the consent screen and connect again");
        return NULL;
    }
    if ((mask & 1) && !(best_got & 1)) {
        http_resp_error(resp, 400, "ATLASSIAN_SCOPES_NOT_ADDED",
                        MSG_SCOPES ": " FIX_SCOPES " (read:page:confluence, read:space:confluence, "
                        "read:user:confluence, search:confluence), then connect again");
        return NULL;
    }
    http_resp_error(resp, 400, "JIRA_INSUFFICIENT_SCOPES", MSG_JIRA_SCOPES ": " FIX_JIRA_SCOPES
                    ", then connect again");
    return NULL;
}

/* The scopes of the site that matter to product p, as a new array. */
static cJSON *product_scopes(const cJSON *site, atl_product p)
{
    cJSON *a = cJSON_CreateArray();
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(site, "scopes"))
    {
        if (!cJSON_IsString(s) || strlen(s->valuestring) > 100)
            continue;
        if (strstr(s->valuestring, p == ATL_JIRA ? "jira" : "confluence"))
            cJSON_AddItemToArray(a, cJSON_CreateString(s->valuestring));
    }
    return a;
}

static void site_md(cJSON *md, const cJSON *site)
{
    const char *name = api_json_str(site, "name");
    char err[80];
    cJSON_AddStringToObject(md, "mode", "cloud");
    cJSON_AddStringToObject(md, "cloud_id", api_json_str(site, "id"));
    cJSON_AddStringToObject(md, "site_url", api_json_str(site, "url"));
    if (name && api_check_text(name, "name", 1, 200, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "site_name", name);
}

/* The site list of a fresh access token; NULL with resp. */
static cJSON *accessible_resources(worker_ctx *w, const char *gw, const char *at, http_response *resp)
{
    char *url = kit_url(gw, "/oauth/token/accessible-resources");
    if (!url) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return NULL;
    }
    long t = grant_timeout_ms(w);
    const char *headers[] = { "Accept: application/json", NULL };
    kit_call_req q = { .provider = "Atlassian API", .base_url = gw, .url = url, .headers = headers,
                       .bearer = at, .attempt_timeout_ms = t, .deadline_ms = 2 * t,
                       .max_response = 1024 * 1024 };
    kit_call_resp r;
    cJSON *j = NULL;
    if (kit_call(&q, &r) != AUR_OK)
        kit_call_error(&atl_api_errors, &r, "Finding your Atlassian site", t, NULL, resp);
    else if (!cJSON_IsArray(j = kit_call_json(&r))) {
        cJSON_Delete(j);
        j = NULL;
        http_resp_error(resp, 502, "ATLASSIAN_ERROR",
                        "Atlassian answered accessible-resources without a site list");
    }
    kit_call_resp_free(&r);
    free(url);
    return j;
}

/* The product row of a Cloud connection (no secret of its own: the grant's). */
static int save_product(worker_ctx *w, const char *org, const char *user, atl_product p,
                        const cJSON *site, http_response *resp)
{
    cJSON *md = cJSON_CreateObject();
    if (!md) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    site_md(md, site);
    cJSON_AddItemToObject(md, "scopes", product_scopes(site, p));
    if (p == ATL_JIRA) {
        store_connector row;
        atl_jira_tier t = ATL_TIER_READ;
        if (store_connector_get(w->store, org, user, "jira", &row) == STORE_OK) {
            cJSON *old = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
            t = atl_tier_of(old);
            cJSON_Delete(old);
            store_connector_free(&row);
        }
        cJSON_AddStringToObject(md, "tier", atl_tier_name(t));
    }
    int rc = kit_connect_store(w, org, user, atl_product_id(p), api_json_str(site, "url"), NULL, 0,
                               md, resp);
    cJSON_Delete(md);
    return rc;
}

static void callback_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_oauth_client c;
    int configured = oauth_client(w, NULL, &c, NULL) == 0;
    char error[128] = "", desc[512] = "";
    http_query_get(req, "error", error, sizeof(error));
    http_query_get(req, "error_description", desc, sizeof(desc));
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "Atlassian authorization", c.redirect_uri, &cb, resp) < 0) {
        if (error[0] && resp->status == 400)
            (void)known_refusal(error, desc, resp);
        return;
    }
    cJSON *tok = NULL, *sites = NULL, *gmd = NULL;
    char *at = NULL;
    oauth_state_info st = cb.st;
    const char *gw = NULL;
    unsigned mask = 0;
    if (!configured) {
        (void)oauth_client(w, NULL, &c, resp);
        goto out;
    }
    if (connector_secrets_ready(w, resp) < 0 || !(gw = api_base(w, resp)))
        goto out;
    /* the products the login asked for, each still enabled */
    if (parse_products(w, st.extra, &mask, resp) < 0)
        goto out;
    const char *grant[] = { "grant_type", "authorization_code", "code", cb.code, "redirect_uri",
                            st.redirect_uri, NULL };
    oauth_result r;
    tok = token_post(&c, grant, &r);
    kit_oauth_callback_wipe(&cb);
    if (!tok) {
        log_warn("atlassian: code exchange failed: %s", r.err);
        if (r.status < 400 || r.status >= 500 || !known_refusal(r.error, NULL, resp))
            kit_oauth_error(&c, &r, "Atlassian authorization could not be completed", resp);
        goto out;
    }
    int64_t now = (int64_t)time(NULL), exp = 0;
    at = kit_oauth_access_token(tok, ATL_TOKEN_MAX, now, &exp);
    const char *rt = api_json_str(tok, "refresh_token");
    if (!at || !rt || !*rt) {
        http_resp_error(resp, 502, "ATLASSIAN_ERROR",
                        "Atlassian answered without %s (the app must allow offline_access)",
                        at ? "a refresh token" : "an access token");
        goto out;
    }
    if (!(sites = accessible_resources(w, gw, at, resp)))
        goto out;
    const cJSON *site = pick_site(sites, mask, resp);
    if (!site)
        goto out;
    /* the grant: its refresh token, stored once */
    gmd = cJSON_CreateObject();
    if (!gmd) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    site_md(gmd, site);
    const char *scope = api_json_str(tok, "scope");
    char err[64];
    if (scope && api_check_text(scope, "scope", 1, 1000, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(gmd, "scope", scope);
    cJSON_AddNumberToObject(gmd, "access_token_expires_at", (double)exp);
    auth_ctx who = { .authenticated = 1 };
    snprintf(who.org_id, sizeof(who.org_id), "%s", st.org_id);
    snprintf(who.user_id, sizeof(who.user_id), "%s", st.user_id);
    char key[ATL_KEY_MAX];
    if (kit_cache_add_key_id(gmd) < 0 || access_key(key, sizeof(key), &who, gmd, 0) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cannot generate the connection's cache key");
        goto out;
    }
    /* Under the refresh lock: a refresh of the previous grant in flight
     * would otherwise store its rotated token over this grant's. */
    refresh_stripe *stripe = stripe_of(&who);
    pthread_mutex_lock(&stripe->mu);
    kit_field f = { ATL_FIELD_REFRESH, rt };
    int stored = kit_connect_store(w, st.org_id, st.user_id, ATL_ID, api_json_str(site, "url"), &f,
                                   1, gmd, resp);
    if (stored == 0) {
        atl_forget_tokens(&who);
        cache_put(key, at, exp, now);
        snprintf(stripe->key, sizeof(stripe->key), "%s", key);
        stripe->done_ms = mono_ms();
    }
    pthread_mutex_unlock(&stripe->mu);
    if (stored < 0)
        goto out;
    /* the products: those asked for, and a Cloud one not asked for that the
     * new grant still covers on the same site; another would be left on a
     * refresh token that no longer exists, so it goes */
    unsigned keep = mask | covered(site, 3);
    for (int p = 0; p < 2; p++) {
        const char *id = atl_product_id((atl_product)p);
        if (mask & (1u << p)) {
            if (save_product(w, st.org_id, st.user_id, (atl_product)p, site, resp) < 0)
                goto out;
            continue;
        }
        store_connector row;
        if (store_connector_get(w->store, st.org_id, st.user_id, id, &row) != STORE_OK)
            continue;
        cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
        const char *mode = api_json_str(md, "mode"), *cid = api_json_str(md, "cloud_id");
        int cloud = mode && !strcmp(mode, "cloud");
        int same = cid && !strcmp(cid, api_json_str(site, "id"));
        cJSON_Delete(md);
        store_connector_free(&row);
        if (!cloud)
            continue;
        if (same && (keep & (1u << p))) {
            if (save_product(w, st.org_id, st.user_id, (atl_product)p, site, resp) < 0)
                goto out;
        } else if (atl_remove_row(w, &who, id, resp) < 0) {
            goto out;
        } else {
            log_info("atlassian: %s of user %s removed: the new grant does not cover it", id,
                     st.user_id);
        }
    }
    log_info("atlassian: user %s (org %s) connected Atlassian Cloud (%s) for %s", st.user_id,
             st.org_id, api_json_str(site, "url"), st.extra);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", ATL_ID);
    cJSON_AddStringToObject(o, "mode", "cloud");
    cJSON_AddStringToObject(o, "site_url", api_json_str(site, "url"));
    if (api_json_str(gmd, "site_name"))
        cJSON_AddStringToObject(o, "site_name", api_json_str(gmd, "site_name"));
    cJSON *arr = cJSON_AddArrayToObject(o, "products");
    for (int p = 0; p < 2; p++)
        if (mask & (1u << p))
            cJSON_AddItemToArray(arr, cJSON_CreateString(atl_product_id((atl_product)p)));
    kit_oauth_connected(w, resp, ATL_ID, o);
out:
    kit_oauth_callback_wipe(&cb);
    secret_free(at);
    cJSON_Delete(gmd);
    cJSON_Delete(sites);
    secret_json_free(tok);
}

/* ---- refresh (operator action) ------------------------------------------------------------------------ */

static void refresh_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(body, "product");
    atl_product p;
    int ok = cJSON_IsObject(body) && cJSON_IsString(pj) && atl_product_parse(pj->valuestring, &p) == 0;
    cJSON_Delete(body);
    if (!ok) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT",
                        "body must be {\"product\": \"confluence\"|\"jira\"}");
        return;
    }
    /* the same path as every Confluence / Jira call, forced */
    atl_creds cr;
    int rotated;
    int64_t exp;
    if (credentials(w, &req->auth, p, 1, &cr, &rotated, &exp, resp) < 0)
        return;
    if (!cr.cloud) {
        atl_creds_clear(&cr);
        http_resp_error(resp, 400, "ATLASSIAN_NOT_OAUTH",
                        "%s is connected with a Data Center PAT; there is nothing to refresh",
                        atl_product_name(p));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", ATL_ID);
    cJSON_AddStringToObject(o, "product", atl_product_id(p));
    cJSON_AddStringToObject(o, "mode", "cloud");
    cJSON_AddStringToObject(o, "site_url", cr.site_url);
    cJSON_AddStringToObject(o, "api_base", cr.api_base);
    if (p == ATL_JIRA)
        cJSON_AddStringToObject(o, "tier", atl_tier_name(cr.tier));
    cJSON_AddBoolToObject(o, "refreshed", 1);
    /* false: another request's refresh, which ended while this one waited, was used */
    cJSON_AddBoolToObject(o, "rotated", rotated);
    api_add_time(o, "access_token_expires_at", exp);
    atl_creds_clear(&cr);
    http_resp_json(resp, 200, o);
}

/* ---- status ------------------------------------------------------------------------------------------------ */

void atl_grant_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "mode", "site_url", "site_name", "cloud_id", "scope", NULL };
    kit_oauth_client c;
    cJSON_AddBoolToObject(out, "oauth_configured", oauth_client(w, NULL, &c, NULL) == 0);
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, ATL_ID, keys, out, &row, &md))
        return;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(md, "access_token_expires_at");
    if (cJSON_IsNumber(e))
        api_add_time(out, "access_token_expires_at", (int64_t)e->valuedouble);
    cJSON *arr = cJSON_AddArrayToObject(out, "products");
    for (int p = 0; p < 2; p++) {
        store_connector pr;
        if (store_connector_get(w->store, who->org_id, who->user_id, atl_product_id((atl_product)p),
                                &pr) != STORE_OK)
            continue;
        cJSON *pmd = cJSON_Parse(pr.metadata_json ? pr.metadata_json : "{}");
        const char *mode = api_json_str(pmd, "mode");
        if (mode && !strcmp(mode, "cloud"))
            cJSON_AddItemToArray(arr, cJSON_CreateString(atl_product_id((atl_product)p)));
        cJSON_Delete(pmd);
        store_connector_free(&pr);
    }
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void atl_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    atl_grant_status(w, who, out);
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON *cloud = cJSON_AddObjectToObject(o, "cloud");
    atl_grant_status(w, &req->auth, cloud);
    int any = 0;
    for (int p = 0; p < 2; p++) {
        cJSON *po = cJSON_AddObjectToObject(o, atl_product_id((atl_product)p));
        atl_product_status(w, &req->auth, (atl_product)p, po);
        if (!cJSON_GetObjectItemCaseSensitive(po, "connected"))
            cJSON_AddBoolToObject(po, "connected", 0);
        any |= cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(po, "connected"));
    }
    if (!cJSON_GetObjectItemCaseSensitive(cloud, "connected"))
        cJSON_AddBoolToObject(cloud, "connected", 0);
    cJSON_AddStringToObject(o, "provider", ATL_ID);
    cJSON_AddBoolToObject(o, "connected", any);
    http_resp_json(resp, 200, o);
}

/* ---- disconnect ------------------------------------------------------------------------------------------------ */

/* DELETE /api/connectors/atlassian: the grant went; every product goes with it. */
static void atl_disconnected(worker_ctx *w, const auth_ctx *who)
{
    atl_forget_tokens(who);
    for (int p = 0; p < 2; p++) {
        http_response scratch;
        memset(&scratch, 0, sizeof(scratch));
        if (atl_remove_row(w, who, atl_product_id((atl_product)p), &scratch) < 0)
            log_warn("atlassian: removing %s of user %s failed (HTTP %d)",
                     atl_product_id((atl_product)p), who->user_id, scratch.status);
        buf_free(&scratch.body);
    }
}

/* ---- table -------------------------------------------------------------------------------------------------------- */

static void atl_register(void)
{
    router_add_outbound(HTTP_GET, "/atlassian/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_POST, "/atlassian/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_GET, "/atlassian/callback", ROUTE_PUBLIC, callback_route);
    router_add_outbound(HTTP_POST, "/atlassian/refresh", ROUTE_AUTH_API, refresh_route);
    router_add(HTTP_GET, "/atlassian/status", ROUTE_AUTH_API, status_route);
    atl_pat_register();
}

const connector connector_atlassian = {
    .id = ATL_ID,
    .name = "Atlassian",
    .register_routes = atl_register,
    .status = atl_status,
    .cloud = NULL,
    .disconnected = atl_disconnected,
    .disconnecting = NULL, /* no revocation endpoint for 3LO grants */
    .settings = atl_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
    .redirect_setting = "ATLASSIAN_REDIRECT_URI",
};
