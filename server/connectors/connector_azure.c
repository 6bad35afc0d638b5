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
 *                         (aurora/users/<uid>/azure/client-secret).
 *   GET  /azure/login     302 to <login>/<tenant|organizations>/oauth2/v2.0/authorize
 *                         for the App registration of AZURE_CLIENT_ID, with an
 *                         OAuth state (oauth.h) bound to the caller
 *   GET  /azure/callback  the redirect (AZURE_REDIRECT_URI, default
 *                         http://localhost:5080/azure/callback): state checked,
 *                         code exchanged, subscriptions listed, refresh token
 *                         stored (aurora/users/<uid>/azure/refresh-token)
 *
 * Status and disconnect: GET /api/connectors/status, DELETE /api/connectors/azure.
 *
 * cloud_exec for `az`: prepare() mints a short-lived Azure Resource Manager
 * access token (client credentials, or the stored refresh token) and hands
 * the agent only that token (AZURE_ACCESS_TOKEN, AZURE_ACCESS_TOKEN_EXPIRES_ON),
 * the subscription (AZURE_SUBSCRIPTION_ID) and tenant (AZURE_TENANT_ID); the
 * client secret and refresh token never leave the server.  Tokens are cached
 * per (org, user, credential) until 5 minutes before they expire. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
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
#include "log.h"
#include "oauth.h"
#include "router.h"
#include "secrets.h"

#define AZ_ID "azure"
#define AZ_SCOPE_APP "https://management.azure.com/.default"
#define AZ_SCOPE_USER "https://management.azure.com/user_impersonation offline_access openid profile"
#define AZ_API_VERSION "2020-01-01"
#define AZ_MAX_SUBSCRIPTIONS 1000
#define AZ_REFRESH_MARGIN 300
#define AZ_CACHE_MAX 4096
#define MSG_NO_SUB "No enabled subscription found"

/* ---- settings and small helpers ----------------------------------------------- */

static long timeout_ms(const worker_ctx *w)
{
    int64_t t = server_setting_int(w->cfg, "AURORA_PROVIDER_TIMEOUT_MS");
    return t > 0 ? (long)t : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
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

/* Base URL without trailing slashes into out. */
static void trim_base(const char *base, char *out, size_t cap)
{
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
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

static void token_url(const worker_ctx *w, const char *tenant, char *out, size_t cap)
{
    char base[512];
    trim_base(login_base(w), base, sizeof(base));
    snprintf(out, cap, "%s/%s/oauth2/v2.0/token", base, tenant);
}

/* Fills resp for a failed token request. */
static void token_error(const worker_ctx *w, const oauth_result *r, const char *what,
                        http_response *resp)
{
    if (r->code == AUR_E_TIMEOUT) {
        http_resp_error(resp, 504, "AZURE_TIMEOUT", "%s: Azure sign-in (Microsoft identity platform) "
                        "did not answer within %ld s", what, (timeout_ms(w) + 999) / 1000);
    } else if (r->status == 0) {
        http_resp_error(resp, 502, "AZURE_UNREACHABLE",
                        "%s: Azure sign-in (Microsoft identity platform) is unreachable (%s)", what,
                        r->err);
    } else if (r->status >= 400 && r->status < 500) {
        const char *code = !strcmp(r->error, "invalid_grant") ? "AZURE_GRANT_INVALID"
                                                              : "AZURE_INVALID_CREDENTIALS";
        http_resp_error(resp, 400, code, "%s: Azure rejected the credentials (HTTP %ld%s%s)", what,
                        r->status, r->error[0] ? ", " : "", r->error);
    } else {
        http_resp_error(resp, 502, "AZURE_LOGIN_ERROR",
                        "%s: Azure sign-in answered HTTP %ld", what, r->status);
    }
}

/* ---- subscriptions ------------------------------------------------------------------ */

static void arm_error_code(const http_client_resp *r, char *out, size_t cap)
{
    out[0] = '\0';
    cJSON *j = http_client_json(r);
    const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
    const char *c = e ? api_json_str(e, "code") : NULL;
    size_t o = 0;
    for (const char *p = c; p && *p && o + 1 < cap; p++)
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
            out[o++] = *p;
    out[o] = '\0';
    cJSON_Delete(j);
}

/* Lists the subscriptions the token sees into *out (array of {id, name,
 * state}).  0, or -1 with resp filled. */
static int list_subscriptions(worker_ctx *w, const char *access_token, cJSON **out,
                              http_response *resp)
{
    char base[512], url[2048];
    trim_base(mgmt_base(w), base, sizeof(base));
    snprintf(url, sizeof(url), "%s/subscriptions?api-version=%s", base, AZ_API_VERSION);
    size_t hl = strlen(access_token) + 32;
    char *authz = malloc(hl);
    cJSON *subs = cJSON_CreateArray();
    if (!authz || !subs) {
        free(authz);
        cJSON_Delete(subs);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    snprintf(authz, hl, "Authorization: Bearer %s", access_token);
    const char *headers[] = { authz, "Accept: application/json", NULL };
    int pages = 0, ret = -1, limit = max_pages(w);
    for (;;) {
        http_client_req rq = { .method = "GET", .url = url, .headers = headers,
                               .timeout_ms = timeout_ms(w), .max_response = 4 * 1024 * 1024 };
        http_client_resp rp;
        if (http_client_do(&rq, &rp) < 0) {
            if (rp.code == AUR_E_TIMEOUT)
                http_resp_error(resp, 504, "AZURE_TIMEOUT",
                                "Azure Resource Manager did not answer within %ld s",
                                (timeout_ms(w) + 999) / 1000);
            else
                http_resp_error(resp, 502, "AZURE_UNREACHABLE",
                                "Azure Resource Manager is unreachable (%s)", rp.err);
            break;
        }
        if (rp.status < 200 || rp.status > 299) {
            char code[64];
            arm_error_code(&rp, code, sizeof(code));
            http_resp_error(resp, 502, rp.status == 401 || rp.status == 403 ? "AZURE_MANAGEMENT_DENIED"
                                                                              : "AZURE_MANAGEMENT_ERROR",
                            "Azure Resource Manager answered HTTP %ld%s%s while listing "
                            "subscriptions", rp.status, code[0] ? " " : "", code);
            http_client_resp_free(&rp);
            break;
        }
        cJSON *j = http_client_json(&rp);
        http_client_resp_free(&rp);
        const cJSON *val = j ? cJSON_GetObjectItemCaseSensitive(j, "value") : NULL;
        if (!cJSON_IsArray(val)) {
            cJSON_Delete(j);
            http_resp_error(resp, 502, "AZURE_MANAGEMENT_ERROR",
                            "Azure Resource Manager answered an unexpected subscription list");
            break;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, val)
        {
            const char *id = api_json_str(it, "subscriptionId");
            const char *name = api_json_str(it, "displayName");
            const char *state = api_json_str(it, "state");
            if (!id || !guid_valid(id) || cJSON_GetArraySize(subs) >= AZ_MAX_SUBSCRIPTIONS)
                continue;
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "id", id);
            cJSON_AddStringToObject(s, "name", name ? name : "");
            cJSON_AddStringToObject(s, "state", state ? state : "");
            cJSON_AddItemToArray(subs, s);
        }
        const char *next = api_json_str(j, "nextLink");
        pages++;
        int follow = 0;
        if (next && *next) {
            /* The bearer token only ever goes to the management host: the
             * nextLink, parsed as curl will fetch it, must lie under the base. */
            if (!http_client_url_under(next, base)) {
                /* Never followed: it would hand the bearer token to another host. */
                cJSON_Delete(j);
                http_resp_error(resp, 502, "AZURE_MANAGEMENT_ERROR",
                                "Azure Resource Manager answered a nextLink outside "
                                "AZURE_MANAGEMENT_BASE; not followed");
                break;
            } else if (pages >= limit) {
                log_warn("azure: stopped listing subscriptions after %d pages", pages);
            } else if (strlen(next) < sizeof(url)) {
                snprintf(url, sizeof(url), "%s", next);
                follow = 1;
            }
        }
        cJSON_Delete(j);
        if (!follow) {
            ret = 0;
            break;
        }
    }
    secret_free_n(authz, hl);
    if (ret < 0) {
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

/* ---- access-token cache ------------------------------------------------------------- */

typedef struct tok_entry {
    char key[STORE_ID_LEN * 2 + 300];
    char *token;
    int64_t expires_at;
    struct tok_entry *next;
} tok_entry;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static tok_entry *g_cache;
static size_t g_n;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void entry_free(tok_entry *e)
{
    secret_free(e->token);
    secret_free_n(e, sizeof(*e));
}

static void cache_wipe_all(void)
{
    pthread_mutex_lock(&g_mu);
    while (g_cache) {
        tok_entry *n = g_cache->next;
        entry_free(g_cache);
        g_cache = n;
    }
    g_n = 0;
    pthread_mutex_unlock(&g_mu);
}

static void cache_init(void) { atexit(cache_wipe_all); }

/* malloc'd copy of a fresh token, or NULL. */
static char *cache_get(const char *key, int64_t now, int64_t *expires_at)
{
    char *tok = NULL;
    pthread_mutex_lock(&g_mu);
    for (tok_entry *e = g_cache; e; e = e->next)
        if (!strcmp(e->key, key)) {
            if (e->expires_at - AZ_REFRESH_MARGIN > now) {
                tok = strdup(e->token);
                *expires_at = e->expires_at;
            }
            break;
        }
    pthread_mutex_unlock(&g_mu);
    return tok;
}

static void cache_put(const char *key, const char *token, int64_t expires_at, int64_t now)
{
    pthread_once(&g_once, cache_init);
    tok_entry *ne = calloc(1, sizeof(*ne));
    if (!ne)
        return;
    snprintf(ne->key, sizeof(ne->key), "%s", key);
    ne->token = strdup(token);
    ne->expires_at = expires_at;
    if (!ne->token) {
        free(ne);
        return;
    }
    pthread_mutex_lock(&g_mu);
    for (tok_entry **pp = &g_cache; *pp;) {
        tok_entry *e = *pp;
        if (!strcmp(e->key, key) || e->expires_at - AZ_REFRESH_MARGIN <= now) {
            *pp = e->next;
            entry_free(e);
            g_n--;
        } else
            pp = &e->next;
    }
    while (g_n >= AZ_CACHE_MAX && g_cache) {
        tok_entry **pp = &g_cache;
        while ((*pp)->next)
            pp = &(*pp)->next;
        entry_free(*pp);
        *pp = NULL;
        g_n--;
    }
    ne->next = g_cache;
    g_cache = ne;
    g_n++;
    pthread_mutex_unlock(&g_mu);
}

static void cache_forget(const char *org, const char *user)
{
    char prefix[STORE_ID_LEN * 2 + 4];
    snprintf(prefix, sizeof(prefix), "%s\n%s\n", org, user);
    size_t pl = strlen(prefix);
    pthread_mutex_lock(&g_mu);
    for (tok_entry **pp = &g_cache; *pp;) {
        tok_entry *e = *pp;
        if (!strncmp(e->key, prefix, pl)) {
            *pp = e->next;
            entry_free(e);
            g_n--;
        } else
            pp = &e->next;
    }
    pthread_mutex_unlock(&g_mu);
}

/* ---- storing a connection ------------------------------------------------------------ */

/* Writes the secret, then the row.  The other kind of credential (client
 * secret vs refresh token) is deleted so only one is ever stored. */
static int save_connection(worker_ctx *w, const char *org, const char *user, const char *auth,
                           const char *account, const char *field, const char *secret,
                           const char *other_field, cJSON *md, http_response *resp)
{
    char path[SECRETS_MAX_PATH + 1], other[SECRETS_MAX_PATH + 1], ref[512], err[512];
    if (secrets_user_path(path, sizeof(path), user, AZ_ID, field) < 0 ||
        secrets_user_path(other, sizeof(other), user, AZ_ID, other_field) < 0 ||
        secrets_ref(w->secrets, path, ref, sizeof(ref)) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid user id");
        return -1;
    }
    int rc = secrets_put(w->secrets, path, secret, strlen(secret), err, sizeof(err));
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    rc = secrets_delete(w->secrets, other, err, sizeof(err));
    if (rc != SECRETS_OK && rc != SECRETS_NOT_FOUND)
        log_warn("azure: could not delete the previous credential: %s", err);
    store_connector c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", org);
    snprintf(c.user_id, sizeof(c.user_id), "%s", user);
    snprintf(c.connector, sizeof(c.connector), "%s", AZ_ID);
    snprintf(c.account, sizeof(c.account), "%.255s", account);
    snprintf(c.secret_ref, sizeof(c.secret_ref), "%s", ref);
    snprintf(c.status, sizeof(c.status), "active");
    cJSON_AddStringToObject(md, "auth", auth);
    c.metadata_json = cJSON_PrintUnformatted(md);
    if (!c.metadata_json) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    c.created_at = c.updated_at = (int64_t)time(NULL);
    rc = store_connector_upsert(w->store, &c);
    free(c.metadata_json);
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    cache_forget(org, user);
    return 0;
}

/* The connection as JSON; a browser callback (302) goes on to the frontend. */
static void connected_json(worker_ctx *w, http_response *resp, const cJSON *md, int status)
{
    cJSON *o = cJSON_Duplicate(md, 1);
    if (o) {
        cJSON_AddBoolToObject(o, "connected", 1);
        cJSON_AddStringToObject(o, "provider", AZ_ID);
    }
    http_resp_json(resp, status, o);
    if (status == 302) {
        char loc[1200];
        snprintf(loc, sizeof(loc), "%s/connectors?provider=azure&status=connected",
                 w->cfg->frontend_url ? w->cfg->frontend_url : "");
        http_resp_add_header(resp, "location", loc);
    }
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
    char err[160], url[1024];
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
    token_url(w, tenant, url, sizeof(url));
    const char *form[] = { "grant_type", "client_credentials", "client_id", client,
                           "client_secret", secret, "scope", AZ_SCOPE_APP, NULL };
    oauth_result r;
    tok = oauth_token_post(w, url, form, NULL, &r);
    if (!tok) {
        log_warn("azure: client-credentials token for client %s failed: %s", client, r.err);
        token_error(w, &r, "Azure service principal login failed", resp);
        goto out;
    }
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
                        "client-secret", secret, "refresh-token", md, resp) < 0)
        goto out;
    /* The token just minted serves the first command. */
    {
        char key[sizeof(((tok_entry *)0)->key)];
        const cJSON *ei = cJSON_GetObjectItemCaseSensitive(tok, "expires_in");
        int64_t now = (int64_t)time(NULL);
        int64_t exp = now + (cJSON_IsNumber(ei) && ei->valuedouble > 0 && ei->valuedouble < 86400
                                 ? (int64_t)ei->valuedouble : 3599);
        snprintf(key, sizeof(key), "%s\n%s\nsp\n%s\n%s", req->auth.org_id, req->auth.user_id,
                 tenant, client);
        cache_put(key, at, exp, now);
    }
    log_info("azure: user %s of %s connected service principal %s (tenant %s)", req->auth.user_id,
             req->auth.org_id, client, tenant);
    connected_json(w, resp, md, 200);
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
    char tenant[256] = "", given[1024] = "", state[64], base[512];
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
    if (oauth_state_new(w, &req->auth, AZ_ID, redirect, tenant, state, resp) < 0)
        return;
    trim_base(login_base(w), base, sizeof(base));
    char *e_client = http_client_escape(server_setting(w->cfg, "AZURE_CLIENT_ID"));
    char *e_redirect = http_client_escape(redirect);
    char *e_scope = http_client_escape(AZ_SCOPE_USER);
    char *e_tenant = http_client_escape(tenant);
    char url[4096];
    int n = -1;
    if (e_client && e_redirect && e_scope && e_tenant)
        n = snprintf(url, sizeof(url),
                     "%s/%s/oauth2/v2.0/authorize?client_id=%s&response_type=code&redirect_uri=%s"
                     "&response_mode=query&scope=%s&state=%s&prompt=select_account",
                     base, e_tenant, e_client, e_redirect, e_scope, state);
    free(e_client);
    free(e_redirect);
    free(e_scope);
    free(e_tenant);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        http_resp_error(resp, 500, "INTERNAL", "authorization URL too long");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "authorization_url", url);
    cJSON_AddStringToObject(o, "provider", AZ_ID);
    http_resp_json(resp, 302, o);
    http_resp_add_header(resp, "location", url);
    http_resp_add_header(resp, "cache-control", "no-store");
}

/* First "AADSTSnnnn" in s into out (the user-facing part of an Azure error). */
static void aadsts_code(const char *s, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = s ? strstr(s, "AADSTS") : NULL;
    if (!p)
        return;
    size_t o = 0;
    for (; *p && o + 1 < cap && ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')); p++)
        out[o++] = *p;
    out[o] = '\0';
}

static void callback(worker_ctx *w, http_request *req, http_response *resp)
{
    if (oauth_callback_auth(w, req, resp) < 0)
        return;
    char error[128] = "", desc[512] = "", code[4096] = "";
    int has_error = http_query_get(req, "error", error, sizeof(error)) && error[0];
    oauth_state_info st;
    /* The state is consumed even when sign-in failed: it is single-use. */
    int state_ok = oauth_state_take(w, req, AZ_ID, &st, resp) == 0;
    if (has_error) {
        char aad[32], clean[128];
        http_query_get(req, "error_description", desc, sizeof(desc));
        aadsts_code(desc, aad, sizeof(aad));
        size_t o = 0;
        for (const char *p = error; *p && o + 1 < sizeof(clean); p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')
                clean[o++] = *p;
        clean[o] = '\0';
        http_resp_error(resp, 400, "AZURE_AUTHORIZATION_FAILED", "Azure sign-in failed: %s%s%s",
                        clean, aad[0] ? ": " : "", aad);
        return;
    }
    if (!state_ok)
        return;
    if (strcmp(st.redirect_uri, redirect_uri(w)) != 0) {
        http_resp_error(resp, 400, "AZURE_REDIRECT_URI_MISMATCH",
                        "Invalid redirect_uri: AZURE_REDIRECT_URI changed since the sign-in "
                        "started; start again");
        return;
    }
    if (!http_query_get(req, "code", code, sizeof(code)) || !code[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST", "the Azure callback has no authorization code");
        return;
    }
    if (app_configured(w, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    char url[1024];
    token_url(w, st.extra, url, sizeof(url));
    oauth_code_exchange x = { .token_url = url,
                              .client_id = server_setting(w->cfg, "AZURE_CLIENT_ID"),
                              .client_secret = server_setting(w->cfg, "AZURE_CLIENT_SECRET"),
                              .code = code,
                              .redirect_uri = st.redirect_uri };
    oauth_result r;
    cJSON *tok = oauth_exchange_code(w, &x, &r), *subs = NULL, *md = NULL, *claims = NULL;
    OPENSSL_cleanse(code, sizeof(code));
    if (!tok) {
        log_warn("azure: code exchange failed: %s", r.err);
        token_error(w, &r, "Azure sign-in could not be completed", resp);
        goto out;
    }
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
    const char *tenant = tid && tenant_valid(tid, 0) ? tid : st.extra;
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
    if (save_connection(w, st.org_id, st.user_id, "oauth", account, "refresh-token", rt,
                        "client-secret", md, resp) < 0)
        goto out;
    log_info("azure: user %s of %s signed in (tenant %s)", st.user_id, st.org_id, tenant);
    connected_json(w, resp, md, 302);
out:
    cJSON_Delete(claims);
    cJSON_Delete(md);
    cJSON_Delete(subs);
    secret_json_free(tok);
}

/* ---- status, disconnect ----------------------------------------------------------------------- */

static void az_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    store_connector c;
    memset(&c, 0, sizeof(c));
    int rc = store_connector_get(w->store, who->org_id, who->user_id, AZ_ID, &c);
    if (rc != STORE_OK) {
        cJSON_AddBoolToObject(out, "connected", 0);
        if (rc != STORE_NOT_FOUND) {
            cJSON_AddStringToObject(out, "error", "state store unavailable");
            log_error("azure status: %s", store_errmsg(w->store));
        }
        return;
    }
    cJSON_AddBoolToObject(out, "connected", !strcmp(c.status, "active"));
    cJSON_AddStringToObject(out, "account", c.account);
    cJSON_AddStringToObject(out, "status", c.status);
    cJSON *md = c.metadata_json ? cJSON_Parse(c.metadata_json) : NULL;
    if (md) {
        static const char *const keys[] = { "auth", "tenant_id", "client_id", "user",
                                            "default_subscription_id" };
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            const char *v = api_json_str(md, keys[i]);
            if (v)
                cJSON_AddStringToObject(out, keys[i], v);
        }
        cJSON *subs = cJSON_DetachItemFromObjectCaseSensitive(md, "subscriptions");
        if (subs)
            cJSON_AddItemToObject(out, "subscriptions", subs);
        cJSON_Delete(md);
    }
    api_add_time(out, "connected_at", c.created_at);
    api_add_time(out, "updated_at", c.updated_at);
    store_connector_free(&c);
}

static void az_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    cache_forget(who->org_id, who->user_id);
}

/* ---- cloud_exec -------------------------------------------------------------------------------- */

/* Mints (or reuses) a management token for the stored credential. */
static char *access_token(worker_ctx *w, const auth_ctx *who, const store_connector *c,
                          const char *auth, const char *tenant, const char *client,
                          int64_t *expires_at, http_response *resp)
{
    char key[sizeof(((tok_entry *)0)->key)];
    int64_t now = (int64_t)time(NULL);
    int oauth = !strcmp(auth, "oauth");
    snprintf(key, sizeof(key), "%s\n%s\n%s\n%s\n%s", who->org_id, who->user_id,
             oauth ? "oauth" : "sp", tenant, client);
    char *tok = cache_get(key, now, expires_at);
    if (tok)
        return tok;
    if (connector_secrets_ready(w, resp) < 0)
        return NULL;
    char be[32], err[512];
    const char *path = NULL;
    if (secrets_ref_parse(c->secret_ref, be, sizeof(be), &path) < 0) {
        http_resp_error(resp, 500, "AZURE_CONNECTION_CORRUPT",
                        "the stored Azure connection is invalid; connect again");
        return NULL;
    }
    unsigned char *val = NULL;
    size_t vlen = 0;
    int rc = secrets_get(w->secrets, path, &val, &vlen, err, sizeof(err));
    if (rc == SECRETS_NOT_FOUND) {
        http_resp_error(resp, 400, "AZURE_NOT_CONNECTED",
                        "the Azure credential is no longer stored; connect Azure again");
        return NULL;
    }
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return NULL;
    }
    char url[1024];
    token_url(w, tenant, url, sizeof(url));
    oauth_result r;
    cJSON *j;
    if (oauth) {
        if (app_configured(w, resp) < 0) {
            secrets_free(val, vlen);
            return NULL;
        }
        const char *form[] = { "grant_type", "refresh_token", "refresh_token", (const char *)val,
                               "client_id", server_setting(w->cfg, "AZURE_CLIENT_ID"),
                               "client_secret", server_setting(w->cfg, "AZURE_CLIENT_SECRET"),
                               "scope", AZ_SCOPE_APP " offline_access", NULL };
        j = oauth_token_post(w, url, form, NULL, &r);
    } else {
        const char *form[] = { "grant_type", "client_credentials", "client_id", client,
                               "client_secret", (const char *)val, "scope", AZ_SCOPE_APP, NULL };
        j = oauth_token_post(w, url, form, NULL, &r);
    }
    secrets_free(val, vlen);
    if (!j) {
        log_warn("azure: token for %s failed: %s", who->user_id, r.err);
        token_error(w, &r, oauth ? "Azure sign-in has expired or was revoked; sign in again"
                                 : "Azure service principal login failed", resp);
        return NULL;
    }
    const char *at = api_json_str(j, "access_token");
    const char *nrt = oauth ? api_json_str(j, "refresh_token") : NULL;
    if (!at || !*at || strlen(at) > CLOUD_MAX_ENV_VALUE) {
        secret_json_free(j);
        http_resp_error(resp, 502, "AZURE_LOGIN_ERROR", "Azure sign-in answered without a usable access token");
        return NULL;
    }
    if (nrt && *nrt) { /* refresh tokens rotate: keep the newest */
        rc = secrets_put(w->secrets, path, nrt, strlen(nrt), err, sizeof(err));
        if (rc != SECRETS_OK)
            log_warn("azure: could not store the rotated refresh token: %s", err);
    }
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    *expires_at = now + (cJSON_IsNumber(ei) && ei->valuedouble > 0 && ei->valuedouble < 86400
                             ? (int64_t)ei->valuedouble : 3599);
    tok = strdup(at);
    if (tok)
        cache_put(key, tok, *expires_at, now);
    secret_json_free(j);
    if (!tok)
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
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
 * az accepts unambiguous prefixes (`--subs X` is --subscription, checked with
 * the real az): an abbreviation of these flags is refused, as is az's
 * "@file" argument indirection.  Its command words always come first. */
#define AZ_SUB "subscription"
#define AZ_PROFILE_SUB(ctx)                                                                       \
    { .name = "--name", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1, .context = ctx }, \
    { .name = "-n", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1, .context = ctx }
static const cloud_flag az_flags[] = {
    AZ_PROFILE_SUB("account set"),
    AZ_PROFILE_SUB("account show"),
    AZ_PROFILE_SUB("account list-locations"),
    AZ_PROFILE_SUB("account get-access-token"),
    { .name = "-s", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1, .context = "account" },
    { .name = "--subscription", .kind = CLOUD_FLAG_SELECT, .dest = AZ_SUB, .primary = 1 },
    /* value shorthands that `az account …` commands share: "-otsv" is -o tsv */
    { .name = "-o", .context = "account" }, { .name = "-g", .context = "account" },
    { .name = "-n", .context = "account" }, { .name = "-t", .context = "account" },
    { .name = NULL },
};
static const cloud_cmd az_cmds[] = {
    { .words = "login", .why = "the Azure connector chooses the identity commands run as" },
    { .words = NULL },
};
static const cloud_ref az_refs[] = {
    { .prefix = "/subscriptions/", .dest = AZ_SUB },
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

/* Every selector the scan found: 0 (*primary: the subscription the command
 * names, or NULL), or -1 with a 403 in resp. */
static int az_check_selectors(const cJSON *subs, const cloud_argv_result *scan,
                              const char **primary, http_response *resp)
{
    *primary = NULL;
    for (int i = 0; i < scan->n; i++) {
        const cloud_selector *s = &scan->sel[i];
        const char *id = NULL;
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
    memset(&c, 0, sizeof(c));
    int rc = store_connector_get(w->store, who->org_id, who->user_id, AZ_ID, &c);
    if (rc == STORE_NOT_FOUND || (rc == STORE_OK && strcmp(c.status, "active"))) {
        if (rc == STORE_OK)
            store_connector_free(&c);
        http_resp_error(resp, 404, "MISSING_CONNECTOR",
                        "azure is not connected for this user: connect a service principal "
                        "(POST /azure/connect) or sign in (GET /azure/login)");
        return -1;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    int ret = -1;
    char *tok = NULL;
    cJSON *md = c.metadata_json ? cJSON_Parse(c.metadata_json) : NULL;
    const char *auth = md ? api_json_str(md, "auth") : NULL;
    const char *tenant = md ? api_json_str(md, "tenant_id") : NULL;
    const char *client = md ? api_json_str(md, "client_id") : NULL;
    const cJSON *subs = md ? cJSON_GetObjectItemCaseSensitive(md, "subscriptions") : NULL;
    if (!auth || !tenant || !client || !cJSON_IsArray(subs)) {
        http_resp_error(resp, 500, "AZURE_CONNECTION_CORRUPT",
                        "the stored Azure connection is invalid; connect again");
        goto out;
    }
    const char *sub, *in_argv;
    if (az_check_selectors(subs, scan, &in_argv, resp) < 0)
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
    tok = access_token(w, who, &c, auth, tenant, client, &exp, resp);
    if (!tok)
        goto out;
    char expbuf[24];
    snprintf(expbuf, sizeof(expbuf), "%lld", (long long)exp);
    if (cloud_creds_add(out, "AZURE_ACCESS_TOKEN", tok) < 0 ||
        cloud_creds_add(out, "AZURE_ACCESS_TOKEN_EXPIRES_ON", expbuf) < 0 ||
        cloud_creds_add(out, "AZURE_SUBSCRIPTION_ID", sub) < 0 ||
        cloud_creds_add(out, "AZURE_TENANT_ID", tenant) < 0 ||
        cloud_creds_add(out, "AZURE_CORE_COLLECT_TELEMETRY", "false") < 0 ||
        cloud_creds_add(out, "AZURE_CORE_NO_COLOR", "true") < 0) {
        cloud_creds_clear(out);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    /* A non-default Resource Manager (sovereign cloud, test fixture): the
     * agent registers it as az's active cloud for this command. */
    char base[512];
    trim_base(mgmt_base(w), base, sizeof(base));
    if (strcmp(base, "https://management.azure.com") != 0) {
        char ov[520];
        snprintf(ov, sizeof(ov), "%s/", base);
        if (cloud_creds_add(out, "AZURE_ARM_ENDPOINT_OVERRIDE", ov) < 0) {
            cloud_creds_clear(out);
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
            goto out;
        }
    }
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
};
