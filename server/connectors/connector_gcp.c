/* connector_gcp.c — Google Cloud Platform, as the connector guide
 * (Cloud Providers > GCP) describes it.
 *
 * Option A, service account key:
 *   POST /gcp/service-account          body: the key file itself, or {"key": {…}}
 *     validates the key, signs an RS256 JWT (iss = client_email, scope
 *     cloud-platform, aud = token_uri), exchanges it at the key's token_uri
 *     (jwt-bearer grant), lists projects (Cloud Resource Manager v1
 *     projects.list, every page), stores the key in the secrets backend
 *     (aurora/orgs/<org>/users/<user>/gcp/service-account-key) and the connector row
 *     (account = client_email, metadata = projects, root, default_project).
 *   GET  /gcp/projects
 *   POST /gcp/projects/{project_id}/enable | disable | root
 *   DELETE /api/connectors/gcp          (connectors.c: row and secrets)
 * Option B, OAuth 2.0:
 *   GET /login (also /gcp/login)        302 to GCP_AUTH_URL with CLIENT_ID, state, …
 *   GET /callback?code&state            state check, code exchange, refresh
 *                                       token to the secrets backend
 *   (the flow is the connector kit's, kit_oauth.h: PKCE S256, which Google
 *   supports, and on DELETE /api/connectors/gcp, or a callback refused
 *   after the code exchange, the grant is revoked at GCP_REVOKE_URL)
 * cloud_exec (program gcloud): prepare() picks the project (per-call
 * override → root → the key's project_id; a disabled one is refused with
 * GCP_PROJECT_DISABLED), mints an access token (cached per user until five
 * minutes before it expires), injects --project and hands gcloud the token
 * as CLOUDSDK_AUTH_ACCESS_TOKEN.
 *
 * SSRF: an uploaded key chooses its token_uri, so only https URLs on port
 * 443 of a host in GCP_ALLOWED_TOKEN_HOSTS are called, the host as curl's
 * URL parser sees it (http_client.h) (GCP_TOKEN_URI_OVERRIDE, for tests,
 * replaces the key's token_uri altogether). */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "secret.h"
#include "api_util.h"
#include "connector.h"
#include "crypto.h"
#include "http_client.h"
#include "json_text.h"
#include "jwt.h"
#include "kit_cache.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secrets.h"

#define GCP_ID "gcp"
#define SCOPE_CLOUD "https://www.googleapis.com/auth/cloud-platform"
#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define FIELD_SA_KEY "service-account-key"
#define FIELD_REFRESH "oauth-refresh-token"
#define MSG_MALFORMED "Service account key is malformed"
#define MSG_REFRESH "Credential refresh failed"
#define MSG_NO_PROJECTS "No accessible projects"
#define MSG_API_DISABLED "API not enabled"
#define EC_DISABLED "GCP_PROJECT_DISABLED"
#define EC_MISSING "MISSING_CONNECTOR"
#define MAX_PROJECT_ID 128
#define MSG_NOT_CONNECTED "gcp is not connected"

extern const connector connector_gcp;

static const config_def gcp_settings[] = {
    { "CLIENT_ID", "gcp.client_id", CFG_STRING, NULL, "GCP OAuth client id (Option B: OAuth 2.0)", 0 },
    { "CLIENT_SECRET", NULL, CFG_STRING, NULL, "GCP OAuth client secret", 1 },
    { "GCP_REDIRECT_URI", "gcp.redirect_uri", CFG_STRING, "http://localhost:5080/callback", "GCP OAuth redirect URI; must equal the one registered in the GCP console exactly", 0 },
    { "GCP_AUTH_URL", "gcp.auth_url", CFG_STRING, "https://accounts.google.com/o/oauth2/v2/auth", "GCP OAuth authorization endpoint", 0 },
    { "GCP_TOKEN_URL", "gcp.token_url", CFG_STRING, "https://oauth2.googleapis.com/token", "GCP OAuth token endpoint (authorization code and refresh)", 0 },
    { "GCP_OAUTH_SCOPES", "gcp.oauth_scopes", CFG_STRING, "openid email https://www.googleapis.com/auth/cloud-platform", "scopes asked for in the GCP OAuth flow", 0 },
    { "GCP_CRM_URL", "gcp.crm_url", CFG_STRING, "https://cloudresourcemanager.googleapis.com", "Cloud Resource Manager base URL (v1 projects.list)", 0 },
    { "GCP_MAX_PROJECT_PAGES", "gcp.max_project_pages", CFG_INT, "100", "most projects.list pages read when connecting", 0, 1, 10000 },
    { "GCP_ALLOWED_TOKEN_HOSTS", "gcp.allowed_token_hosts", CFG_STRING, "oauth2.googleapis.com,accounts.google.com", "hosts a service account key's token_uri may name (https only)", 0 },
    { "GCP_TOKEN_URI_OVERRIDE", "gcp.token_uri_override", CFG_STRING, NULL, "tests: replaces every service account key's token_uri", 0 },
    { "GCP_CLOUDSDK_ENDPOINT_OVERRIDES", "gcp.cloudsdk_endpoint_overrides", CFG_STRING, NULL, "tests: name=url,… passed to gcloud as CLOUDSDK_API_ENDPOINT_OVERRIDES_<NAME>", 0 },
    { "GCP_REVOKE_URL", "gcp.revoke_url", CFG_STRING, "https://oauth2.googleapis.com/revoke", "GCP OAuth revocation endpoint: a disconnect, and a sign-in refused after the code exchange, revoke the grant there", 0 },
    { NULL },
};

/* Token requests for the key (jwt-bearer) and the OAuth refresh. */
static const kit_oauth_errors refresh_errors = {
    .service = "Google's token endpoint",
    .timeout = "GCP_CREDENTIAL_REFRESH_FAILED",
    .unreachable = "GCP_CREDENTIAL_REFRESH_FAILED",
    .grant = "GCP_CREDENTIAL_REFRESH_FAILED",
    .denied = "GCP_CREDENTIAL_REFRESH_FAILED",
    .failed = "GCP_CREDENTIAL_REFRESH_FAILED",
    .denied_hint = "the service account may be disabled or the key revoked: create a new key",
    /* Google answers invalid_grant to an assertion signed by a deleted key */
    .grant_hint = "the service account may be disabled or the key revoked: create a new key",
    .authorization_failed = "OAUTH_DENIED",
    .redirect_mismatch = "REDIRECT_URI_MISMATCH",
};
/* The OAuth sign-in (Option B). */
static const kit_oauth_errors signin_errors = {
    .service = "Google's token endpoint",
    .timeout = "OAUTH_EXCHANGE_FAILED",
    .unreachable = "OAUTH_EXCHANGE_FAILED",
    .grant = "OAUTH_EXCHANGE_FAILED",
    .denied = "OAUTH_EXCHANGE_FAILED",
    .failed = "OAUTH_EXCHANGE_FAILED",
    .authorization_failed = "OAUTH_DENIED",
    .redirect_mismatch = "REDIRECT_URI_MISMATCH",
};

/* ---- settings ------------------------------------------------------------------ */

static const char *setting(worker_ctx *w, const char *name, const char *def)
{
    const char *v = w->cfg ? server_setting(w->cfg, name) : NULL;
    return v ? v : def;
}

static long provider_timeout_ms(worker_ctx *w)
{
    return connector_timeout_ms(w, &connector_gcp);
}

/* The OAuth client of CLIENT_ID (Option B), errors as `errors`. */
static kit_oauth_client oauth_client(worker_ctx *w, const kit_oauth_errors *errors)
{
    return (kit_oauth_client){
        .provider = GCP_ID,
        .authorize_url = setting(w, "GCP_AUTH_URL", "https://accounts.google.com/o/oauth2/v2/auth"),
        .token_url = setting(w, "GCP_TOKEN_URL", DEFAULT_TOKEN_URI),
        .revoke_url = setting(w, "GCP_REVOKE_URL", NULL),
        .client_id = setting(w, "CLIENT_ID", NULL),
        .client_secret = setting(w, "CLIENT_SECRET", NULL),
        .redirect_uri = setting(w, "GCP_REDIRECT_URI", "http://localhost:5080/callback"),
        .scope = setting(w, "GCP_OAUTH_SCOPES", SCOPE_CLOUD),
        .extra_params = "access_type=offline&prompt=consent&include_granted_scopes=true",
        .pkce = 1,
        .timeout_ms = provider_timeout_ms(w),
        .errors = errors,
    };
}

/* ---- token cache: per org+user, keyed by the row version (a new key invalidates) ---- */

static kit_cache g_tokens = KIT_CACHE_INIT(1024);

/* The token cache's key: the connection's key_id (metadata), a random id
 * new at every connect, so that a token minted with a replaced key or grant
 * (by a command in flight during the upload, or on another replica) is
 * never found for the new one.  The row's updated_at was the key: whole
 * seconds, the same for two uploads within one.  Rows made before key_id:
 * updated_at still. */
#define META_KEY_ID KIT_CACHE_KEY_ID

static void version_key(char *out, size_t cap, const char *org, const char *user,
                        const cJSON *meta, int64_t updated_at)
{
    kit_cache_conn_key(out, cap, org, user, "", meta, updated_at);
}

/* ---- errors ---------------------------------------------------------------------------- */

/* resp gets the error; -1, so that `return fail(…)` ends a step. */
static int fail(http_response *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(http_response *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_resp_error(resp, status, code, "%s", msg);
    return -1;
}

/* ---- token endpoint ---------------------------------------------------------------------- */

/* The URL the key's assertion is exchanged at: the test override, or the
 * key's own token_uri if it is https on an allowed host. */
static int token_uri_for(worker_ctx *w, const jwt_sa_key *k, char *out, size_t cap,
                         http_response *resp)
{
    const char *ovr = setting(w, "GCP_TOKEN_URI_OVERRIDE", NULL);
    if (ovr) {
        snprintf(out, cap, "%s", ovr);
        return 0;
    }
    const char *uri = k->token_uri ? k->token_uri : DEFAULT_TOKEN_URI;
    /* Parsed as curl will fetch it (http_client.h): the host compared is the
     * host connected to.  Google's token endpoints serve on 443 only. */
    http_client_url u;
    if (http_client_url_parse(uri, 1, &u) < 0 || u.port != 443)
        return fail(resp, 400, "GCP_KEY_MALFORMED",
                    MSG_MALFORMED ": token_uri must be an https URL of Google's token endpoint");
    const char *allowed = setting(w, "GCP_ALLOWED_TOKEN_HOSTS",
                                  "oauth2.googleapis.com,accounts.google.com");
    char list[1024];
    snprintf(list, sizeof(list), "%s", allowed);
    char *save = NULL;
    for (char *h = strtok_r(list, ", ", &save); h; h = strtok_r(NULL, ", ", &save))
        if (!strcasecmp(h, u.host)) {
            snprintf(out, cap, "%s", uri);
            return 0;
        }
    log_warn("gcp: refused a service account key whose token_uri host is not allowed");
    return fail(resp, 400, "GCP_KEY_MALFORMED",
                MSG_MALFORMED ": token_uri host is not an allowed Google token endpoint");
}

/* The access token of a token answer j (consumed) into *token; 0, or -1 with resp. */
static int take_token(cJSON *j, int64_t now, char **token, int64_t *expires_at,
                      http_response *resp)
{
    *token = j ? kit_oauth_access_token(j, CLOUD_MAX_ENV_VALUE - 1, now, expires_at) : NULL;
    if (j && !*token)
        http_resp_error(resp, 502, "GCP_CREDENTIAL_REFRESH_FAILED",
                        MSG_REFRESH ": the token endpoint returned no usable access_token");
    secret_json_free(j);
    return *token ? 0 : -1;
}

/* Signs the assertion and exchanges it: *token (malloc'd, wipe it) on 0,
 * else -1 with resp filled. */
static int sa_mint(worker_ctx *w, const jwt_sa_key *k, char **token, int64_t *expires_at,
                   http_response *resp)
{
    char uri[1024];
    if (token_uri_for(w, k, uri, sizeof(uri), resp) < 0)
        return -1;
    int64_t now = (int64_t)time(NULL);
    cJSON *claims = cJSON_CreateObject();
    if (!claims) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    cJSON_AddStringToObject(claims, "iss", k->client_email);
    cJSON_AddStringToObject(claims, "scope", SCOPE_CLOUD);
    /* aud is the key's own token_uri (what Google checks), even when a test
     * override routes the request elsewhere. */
    cJSON_AddStringToObject(claims, "aud", k->token_uri ? k->token_uri : DEFAULT_TOKEN_URI);
    cJSON_AddNumberToObject(claims, "iat", (double)now);
    cJSON_AddNumberToObject(claims, "exp", (double)(now + 3600));
    char err[160];
    char *jwt = jwt_sign_rs256(claims, k->private_key, k->private_key_id, err, sizeof(err));
    cJSON_Delete(claims);
    if (!jwt) {
        http_resp_error(resp, 400, "GCP_KEY_MALFORMED", MSG_MALFORMED ": %s", err);
        return -1;
    }
    const char *form[] = { "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                           "assertion", jwt, NULL };
    oauth_result r;
    kit_oauth_client c = oauth_client(w, &refresh_errors);
    cJSON *j = kit_oauth_token_post(uri, form, NULL, c.timeout_ms, &r);
    secret_free(jwt);
    if (!j) {
        log_warn("gcp: token exchange for %s failed: %s", k->client_email, r.err);
        kit_oauth_error(&c, &r, MSG_REFRESH, resp);
    }
    return take_token(j, now, token, expires_at, resp);
}

/* OAuth connection: refresh grant with CLIENT_ID / CLIENT_SECRET. */
static int oauth_mint(worker_ctx *w, const char *secret_ref, char **token, int64_t *expires_at,
                      http_response *resp)
{
    kit_oauth_client c = oauth_client(w, &refresh_errors);
    if (!c.client_id || !c.client_secret) {
        http_resp_error(resp, 503, "OAUTH_NOT_CONFIGURED",
                        "GCP OAuth is not configured: set CLIENT_ID and CLIENT_SECRET");
        return -1;
    }
    cJSON *j = kit_oauth_refresh(w, &c, secret_ref, NULL, MSG_REFRESH, EC_MISSING,
                                 "gcp credentials are missing from the secrets backend; connect again",
                                 resp);
    return take_token(j, (int64_t)time(NULL), token, expires_at, resp);
}

/* ---- projects.list ---------------------------------------------------------------------- */

static const kit_call_errors crm_errors = { .service = "Cloud Resource Manager",
                                            .failed = "GCP_PROJECTS_FAILED" };

/* The project list a connection keeps: it is stored in the row and read by
 * every cloud_exec, so a hostile or broken answer (up to 4 MiB a page, up to
 * GCP_MAX_PROJECT_PAGES pages) must not make it hundreds of megabytes.
 * Google's project names have at most 30 characters. */
#define MAX_PROJECTS 10000
#define MAX_PROJECT_NAME 256

typedef struct {
    cJSON *arr;
    int n;
    int capped;
} project_list;

/* One page's ACTIVE projects into the list; 0, or -1 when the page is not a
 * JSON object. */
static int add_projects(const kit_call_resp *r, void *ctx)
{
    project_list *pl = ctx;
    cJSON *arr = pl->arr;
    cJSON *j = kit_call_json(r);
    const cJSON *ps = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "projects") : NULL;
    const cJSON *p;
    cJSON_ArrayForEach(p, ps)
    {
        const char *id = api_json_str(p, "projectId");
        const char *name = api_json_str(p, "name");
        const char *state = api_json_str(p, "lifecycleState");
        if (!id || !*id || strlen(id) > MAX_PROJECT_ID)
            continue;
        if (state && strcmp(state, "ACTIVE") != 0)
            continue; /* DELETE_REQUESTED projects cannot be investigated */
        if (pl->n >= MAX_PROJECTS) {
            pl->capped = 1;
            break;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o)
            continue;
        cJSON_AddStringToObject(o, "id", id);
        /* commands may name a project by number: kept to check those too */
        const char *num = api_json_str(p, "projectNumber");
        if (num && *num && strlen(num) <= 32 && strspn(num, "0123456789") == strlen(num))
            cJSON_AddStringToObject(o, "number", num);
        cJSON_AddStringToObject(o, "name", name && strlen(name) <= MAX_PROJECT_NAME ? name : id);
        cJSON_AddBoolToObject(o, "enabled", 1);
        cJSON_AddItemToArray(arr, o);
        pl->n++;
    }
    int ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

/* 1 if a Google API error answer says the API itself is not enabled for the
 * credentials' project (google.rpc.ErrorInfo reason SERVICE_DISABLED, or the
 * older errors[].reason accessNotConfigured), which is not a missing role. */
static int api_not_enabled(const kit_call_resp *r)
{
    cJSON *j = kit_call_json(r);
    const cJSON *e = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
    int hit = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(e, "details"))
    {
        const char *reason = api_json_str(d, "reason");
        if (reason && !strcmp(reason, "SERVICE_DISABLED"))
            hit = 1;
    }
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(e, "errors"))
    {
        const char *reason = api_json_str(d, "reason");
        if (reason && !strcmp(reason, "accessNotConfigured"))
            hit = 1;
    }
    cJSON_Delete(j);
    return hit;
}

/* Appends every project of every page to arr ([{id, name, enabled}]):
 * projects.list through the kit pager (nextPageToken sent back as
 * pageToken, never off GCP_CRM_URL, at most GCP_MAX_PROJECT_PAGES pages),
 * at most MAX_PROJECTS of them, names longer than MAX_PROJECT_NAME replaced
 * by the id. */
static int list_projects(worker_ctx *w, const char *token, cJSON *arr, http_response *resp)
{
    const char *base = setting(w, "GCP_CRM_URL", "https://cloudresourcemanager.googleapis.com");
    int64_t max_pages = w->cfg ? server_setting_int(w->cfg, "GCP_MAX_PROJECT_PAGES") : 100;
    char *url = kit_url(base, "/v1/projects");
    const char *headers[] = { "Accept: application/json", NULL };
    long timeout = provider_timeout_ms(w);
    kit_call_req q = { .provider = "Cloud Resource Manager", .base_url = base, .url = url,
                       .headers = headers, .bearer = token, .attempt_timeout_ms = timeout,
                       .deadline_ms = timeout, .max_response = 4 << 20 };
    kit_pager_cfg pc = { .style = KIT_PAGE_CURSOR, .cursor_field = "nextPageToken",
                         .cursor_param = "pageToken",
                         .max_pages = max_pages > 0 ? (int)max_pages : 100 };
    kit_walk wk;
    project_list pl = { .arr = arr, .n = cJSON_GetArraySize(arr) };
    int rc = kit_pager_walk(&q, &pc, add_projects, &pl, &wk);
    free(url);
    if (rc == AUR_OK && pl.capped)
        log_warn("gcp: projects.list gave more than %d projects; the first %d are kept",
                 MAX_PROJECTS, MAX_PROJECTS);
    if (rc == AUR_OK && wk.capped)
        log_warn("gcp: projects.list stopped after %d pages", wk.pages);
    else if (wk.bad_page)
        fail(resp, 502, "GCP_PROJECTS_FAILED", "Listing projects failed: the answer is not a JSON object");
    else if (wk.refused)
        fail(resp, 502, "GCP_PROJECTS_FAILED", "Listing projects failed: %s", wk.err);
    else if (wk.last.status == 403 && api_not_enabled(&wk.last))
        fail(resp, 400, "GCP_API_NOT_ENABLED",
             MSG_API_DISABLED ": the Cloud Resource Manager API is disabled for the project of "
                              "these credentials; enable the required APIs in GCP Console "
                              "(Cloud Resource Manager, Compute Engine, Cloud Logging, Cloud "
                              "Monitoring)");
    else if (wk.last.status == 403)
        fail(resp, 400, "GCP_NO_PROJECTS",
             MSG_NO_PROJECTS ": grant at least roles/viewer on the target project "
                             "(Cloud Resource Manager API answered 403; is it enabled?)");
    else if (rc != AUR_OK)
        kit_call_error(&crm_errors, &wk.last, "Listing projects failed", timeout, NULL, resp);
    kit_walk_free(&wk);
    return rc == AUR_OK ? 0 : -1;
}

/* ---- metadata ------------------------------------------------------------------------- */

static cJSON *find_project(const cJSON *meta, const char *id)
{
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(meta, "projects");
    cJSON *p;
    cJSON_ArrayForEach(p, ps)
    {
        const char *pid = api_json_str(p, "id");
        if (pid && !strcmp(pid, id))
            return p;
    }
    return NULL;
}

static int project_enabled(const cJSON *p)
{
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(p, "enabled");
    return !cJSON_IsFalse(en);
}

/* The project a command names, by id or by number (gcloud takes either). */
static cJSON *find_project_ref(const cJSON *meta, const char *ref)
{
    cJSON *p = find_project(meta, ref);
    if (p)
        return p;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(meta, "projects");
    cJSON_ArrayForEach(p, ps)
    {
        const char *num = api_json_str(p, "number");
        if (num && !strcmp(num, ref))
            return p;
    }
    return NULL;
}

/* Keeps the user's choices (disabled projects, root) across a re-upload. */
static void carry_over(const cJSON *old_meta, cJSON *meta)
{
    if (!old_meta)
        return;
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(meta, "projects"))
    {
        const cJSON *op = find_project(old_meta, api_json_str(p, "id"));
        if (op && !project_enabled(op))
            cJSON_ReplaceItemInObjectCaseSensitive(p, "enabled", cJSON_CreateFalse());
    }
    const char *root = api_json_str(old_meta, "root");
    cJSON *np = root ? find_project(meta, root) : NULL;
    if (np && project_enabled(np))
        cJSON_ReplaceItemInObjectCaseSensitive(meta, "root", cJSON_CreateString(root));
}

static int load_row(worker_ctx *w, const auth_ctx *who, store_connector *row, cJSON **meta,
                    http_response *resp)
{
    return kit_row_load(w, who, GCP_ID, row, meta, MSG_NOT_CONNECTED, resp);
}

static int save_meta(worker_ctx *w, store_connector *row, const cJSON *meta, http_response *resp)
{
    return kit_row_save_meta(w, row, meta, resp);
}

/* "auth" (default service_account), "root" and "default_project" (null when unset) of meta into o. */
static void add_choices(cJSON *o, const cJSON *meta)
{
    static const char *const keys[] = { "root", "default_project" };
    const char *auth = meta ? api_json_str(meta, "auth") : NULL;
    cJSON_AddStringToObject(o, "auth", auth ? auth : "service_account");
    for (size_t i = 0; i < 2; i++) {
        const char *v = meta ? api_json_str(meta, keys[i]) : NULL;
        cJSON_AddItemToObject(o, keys[i], v ? cJSON_CreateString(v) : cJSON_CreateNull());
    }
}

static cJSON *projects_view(const store_connector *row, const cJSON *meta)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "connector", GCP_ID);
    cJSON_AddStringToObject(o, "account", row->account);
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(meta, "projects");
    cJSON_AddItemToObject(o, "projects", ps ? cJSON_Duplicate(ps, 1) : cJSON_CreateArray());
    add_choices(o, meta);
    return o;
}

/* ---- POST /gcp/service-account --------------------------------------------------------------- */

/* The key file's text from the body: the key itself, or {"key": {…}} /
 * {"key": "<json text>"}.  malloc'd (wipe it); NULL on OOM. */
static char *key_text(const http_request *req)
{
    const char *b = buf_head(&req->body);
    size_t n = buf_pending(&req->body);
    cJSON *o = n ? cJSON_ParseWithLength(b, n) : NULL;
    char *out = NULL;
    const cJSON *k = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "key") : NULL;
    if (k && cJSON_IsObject(k)) {
        out = cJSON_PrintUnformatted(k);
    } else if (k && cJSON_IsString(k)) {
        out = strdup(k->valuestring);
    } else {
        out = malloc(n + 1);
        if (out) {
            memcpy(out, b, n);
            out[n] = '\0';
        }
    }
    secret_json_wipe(o);
    cJSON_Delete(o);
    return out;
}

static void gcp_service_account(worker_ctx *w, http_request *req, http_response *resp)
{
    const auth_ctx *who = &req->auth;
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    /* The key is parsed here, not by http_json_body: apply its NUL rule. */
    if (json_text_has_nul(buf_head(&req->body), buf_pending(&req->body))) {
        http_resp_error(resp, 400, "GCP_KEY_MALFORMED",
                        MSG_MALFORMED ": it holds a NUL byte or a \\u0000 escape");
        return;
    }
    char *text = key_text(req);
    if (!text) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    jwt_sa_key key;
    char err[256];
    if (jwt_sa_key_parse(text, strlen(text), &key, err, sizeof(err)) < 0) {
        secret_free(text);
        http_resp_error(resp, 400, "GCP_KEY_MALFORMED",
                        MSG_MALFORMED ": %s — verify the JSON file is complete and private_key "
                                      "is a valid PEM",
                        err);
        return;
    }
    char *token = NULL;
    int64_t expires_at = 0;
    cJSON *meta = NULL, *projects = NULL;
    store_connector old = { 0 }, row = { 0 };
    cJSON *old_meta = NULL;
    if (sa_mint(w, &key, &token, &expires_at, resp) < 0)
        goto out;
    meta = cJSON_CreateObject();
    projects = meta ? cJSON_AddArrayToObject(meta, "projects") : NULL;
    if (!projects) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    if (list_projects(w, token, projects, resp) < 0)
        goto out;
    if (cJSON_GetArraySize(projects) == 0) {
        http_resp_error(resp, 400, "GCP_NO_PROJECTS",
                        MSG_NO_PROJECTS ": grant at least roles/viewer on the target project");
        goto out;
    }
    cJSON_AddStringToObject(meta, "auth", "service_account");
    cJSON_AddNullToObject(meta, "root");
    if (key.project_id)
        cJSON_AddStringToObject(meta, "default_project", key.project_id);
    else
        cJSON_AddNullToObject(meta, "default_project");
    if (store_connector_get(w->store, who->org_id, who->user_id, GCP_ID, &old) == STORE_OK)
        old_meta = cJSON_Parse(old.metadata_json ? old.metadata_json : "{}");
    carry_over(old_meta, meta);
    if (kit_cache_add_key_id(meta) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }

    snprintf(row.org_id, sizeof(row.org_id), "%s", who->org_id);
    snprintf(row.user_id, sizeof(row.user_id), "%s", who->user_id);
    snprintf(row.connector, sizeof(row.connector), GCP_ID);
    snprintf(row.account, sizeof(row.account), "%s", key.client_email);
    /* The key file as uploaded goes to the secrets backend, nowhere else;
     * an OAuth refresh token of an earlier connection is replaced. */
    kit_field f = { FIELD_SA_KEY, text };
    if (kit_connect_store(w, who->org_id, who->user_id, GCP_ID, key.client_email, &f, 1, meta,
                          resp) < 0)
        goto out;
    /* The fresh token serves the first commands. */
    store_connector saved;
    if (store_connector_get(w->store, who->org_id, who->user_id, GCP_ID, &saved) == STORE_OK) {
        char ck[256];
        version_key(ck, sizeof(ck), who->org_id, who->user_id, meta, saved.updated_at);
        kit_cache_forget(&g_tokens, who->org_id, who->user_id);
        kit_cache_put(&g_tokens, ck, token, expires_at, (int64_t)time(NULL));
        store_connector_free(&saved);
    }
    log_info("gcp: service account %s connected for user %s (org %s), %d project(s)",
             key.client_email, who->user_id, who->org_id, cJSON_GetArraySize(projects));
    cJSON *o = projects_view(&row, meta);
    if (o)
        cJSON_AddBoolToObject(o, "connected", 1);
    http_resp_json(resp, 200, o);
out:
    secret_free(token);
    secret_free(text);
    jwt_sa_key_free(&key);
    cJSON_Delete(meta);
    cJSON_Delete(old_meta);
    store_connector_free(&old);
    store_connector_free(&row);
}

/* ---- project management ------------------------------------------------------------------------ */

static void gcp_projects(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    store_connector row;
    cJSON *meta;
    if (load_row(w, &req->auth, &row, &meta, resp) < 0)
        return;
    http_resp_json(resp, 200, projects_view(&row, meta));
    cJSON_Delete(meta);
    store_connector_free(&row);
}

static void project_action(worker_ctx *w, http_request *req, http_response *resp,
                           const char *action)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    const char *pid = http_param(req, "project_id");
    store_connector row;
    cJSON *meta;
    if (load_row(w, &req->auth, &row, &meta, resp) < 0)
        return;
    cJSON *p = pid ? find_project(meta, pid) : NULL;
    if (!p) {
        http_resp_error(resp, 404, "PROJECT_NOT_FOUND",
                        "project %.128s is not among the connection's projects", pid ? pid : "");
        goto out;
    }
    const char *root = api_json_str(meta, "root");
    if (!strcmp(action, "root")) {
        if (!project_enabled(p)) {
            http_resp_error(resp, 409, EC_DISABLED,
                            "project %s is disabled; enable it before pinning it as root", pid);
            goto out;
        }
        if (!cJSON_ReplaceItemInObjectCaseSensitive(meta, "root", cJSON_CreateString(pid)))
            cJSON_AddStringToObject(meta, "root", pid);
    } else {
        int enable = !strcmp(action, "enable");
        cJSON_ReplaceItemInObjectCaseSensitive(p, "enabled", cJSON_CreateBool(enable));
        /* Disabling the root unpins it: commands must not land on it. */
        if (!enable && root && !strcmp(root, pid))
            cJSON_ReplaceItemInObjectCaseSensitive(meta, "root", cJSON_CreateNull());
    }
    if (save_meta(w, &row, meta, resp) < 0)
        goto out;
    cJSON *o = projects_view(&row, meta);
    const char *def = api_json_str(meta, "default_project");
    const cJSON *dp = def ? find_project(meta, def) : NULL;
    if (o && def && dp && !project_enabled(dp) && !api_json_str(meta, "root"))
        cJSON_AddStringToObject(o, "warning",
                                "the key's default project is disabled and no root is pinned: "
                                "pin an enabled project as root or commands without --project "
                                "are refused");
    http_resp_json(resp, 200, o);
out:
    cJSON_Delete(meta);
    store_connector_free(&row);
}

static void gcp_enable(worker_ctx *w, http_request *req, http_response *resp)
{
    project_action(w, req, resp, "enable");
}
static void gcp_disable(worker_ctx *w, http_request *req, http_response *resp)
{
    project_action(w, req, resp, "disable");
}
static void gcp_root(worker_ctx *w, http_request *req, http_response *resp)
{
    project_action(w, req, resp, "root");
}

/* ---- OAuth ------------------------------------------------------------------------------------- */

static void gcp_login(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_oauth_client c = oauth_client(w, &signin_errors);
    if (!c.client_id || !c.client_secret) {
        http_resp_error(resp, 503, "OAUTH_NOT_CONFIGURED",
                        "GCP OAuth is not configured: set CLIENT_ID and CLIENT_SECRET in the "
                        "server environment (.env) and restart");
        return;
    }
    char *url = kit_oauth_authorize_url(w, &req->auth, &c, NULL, resp);
    if (!url)
        return;
    kit_oauth_send_url(resp, 302, url, NULL);
    free(url);
}

static void gcp_callback(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_oauth_client c = oauth_client(w, &signin_errors);
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "GCP authorization", c.redirect_uri, &cb, resp) < 0)
        return;
    cJSON *tok = NULL, *meta = NULL;
    store_connector row = { 0 };
    int connected = 0;
    if (!c.client_id || !c.client_secret) {
        http_resp_error(resp, 503, "OAUTH_NOT_CONFIGURED",
                        "GCP OAuth is not configured: set CLIENT_ID and CLIENT_SECRET");
        goto out;
    }
    if (connector_secrets_ready(w, resp) < 0)
        goto out;
    tok = kit_oauth_exchange(w, &c, &cb, "GCP token exchange failed", resp);
    if (!tok)
        goto out;
    /* Google's consent screen lets the user untick scopes and still grants
     * the rest: without cloud-platform the connection was stored as
     * connected and every command then failed with 403 (found in review).
     * Checked when the flow asked for it (GCP_OAUTH_SCOPES may ask for
     * another); nothing is stored. */
    if (kit_oauth_scope_listed(c.scope, SCOPE_CLOUD) &&
        !kit_oauth_scope_granted(tok, SCOPE_CLOUD)) {
        log_warn("gcp: OAuth grant for user %s (org %s) lacks the cloud-platform scope",
                 cb.st.user_id, cb.st.org_id);
        http_resp_error(resp, 400, "GCP_SCOPE_NOT_GRANTED",
                        "Cloud Platform access was not granted: every GCP command needs it. "
                        "Connect again and, on Google's consent screen, allow Aurora to see, edit, "
                        "configure and delete your Google Cloud data (" SCOPE_CLOUD ")");
        goto out;
    }
    const char *refresh = api_json_str(tok, "refresh_token");
    const char *access = api_json_str(tok, "access_token");
    if (!refresh || !*refresh) {
        http_resp_error(resp, 502, "OAUTH_EXCHANGE_FAILED",
                        "GCP returned no refresh token; remove Aurora's access in your Google "
                        "account settings and connect again");
        goto out;
    }
    /* Account to show: the id_token's email when Google sent one. */
    char account[256] = "gcp-oauth-user";
    cJSON *claims = jwt_unverified_claims(api_json_str(tok, "id_token"));
    const char *email = claims ? api_json_str(claims, "email") : NULL;
    const char *sub = claims ? api_json_str(claims, "sub") : NULL;
    if ((email && *email) || (sub && *sub))
        snprintf(account, sizeof(account), "%.255s", email && *email ? email : sub);
    cJSON_Delete(claims);

    meta = cJSON_CreateObject();
    cJSON *projects = meta ? cJSON_AddArrayToObject(meta, "projects") : NULL;
    if (!projects) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    /* Best effort: a user who can list no project can still connect. */
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (access && list_projects(w, access, projects, &scratch) < 0)
        log_warn("gcp: projects.list after OAuth failed: %.*s", (int)buf_pending(&scratch.body),
                 buf_head(&scratch.body));
    buf_free(&scratch.body);
    cJSON_AddStringToObject(meta, "auth", "oauth");
    cJSON_AddNullToObject(meta, "root");
    if (kit_cache_add_key_id(meta) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    cJSON *first = cJSON_GetArrayItem(projects, 0);
    const char *fid = first ? api_json_str(first, "id") : NULL;
    if (fid)
        cJSON_AddStringToObject(meta, "default_project", fid);
    else
        cJSON_AddNullToObject(meta, "default_project");
    snprintf(row.account, sizeof(row.account), "%s", account);
    if (kit_oauth_finish(w, &cb, GCP_ID, FIELD_REFRESH, account, tok, meta,
                         projects_view(&row, meta), resp) < 0)
        goto out;
    connected = 1;
    kit_cache_forget(&g_tokens, cb.st.org_id, cb.st.user_id);
    log_info("gcp: OAuth connection for user %s (org %s)", cb.st.user_id, cb.st.org_id);
out:
    /* refused after Google issued tokens: not left valid there */
    if (!connected)
        kit_oauth_revoke_refused(w, &c, &cb.st, tok);
    kit_oauth_callback_wipe(&cb);
    secret_json_free(tok);
    cJSON_Delete(meta);
    store_connector_free(&row);
}

/* Before DELETE /api/connectors/gcp removes it: an OAuth grant is revoked
 * at Google, so the refresh token is dead even if a copy survived. */
static void gcp_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row)
{
    cJSON *meta = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    const char *auth = meta ? api_json_str(meta, "auth") : NULL;
    kit_oauth_client c = oauth_client(w, &signin_errors);
    unsigned char *rt = NULL;
    size_t len = 0;
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (auth && !strcmp(auth, "oauth") && c.revoke_url &&
        kit_secret_get(w, row->secret_ref, &rt, &len, 404, EC_MISSING, "gone", &scratch) == 0 &&
        kit_oauth_revoke(&c, (const char *)rt, "refresh_token") == 0)
        log_info("gcp: OAuth grant of user %s (org %s) revoked", who->user_id, who->org_id);
    buf_free(&scratch.body);
    secrets_free(rt, len);
    cJSON_Delete(meta);
}

/* ---- cloud_exec ------------------------------------------------------------------------------------ */

/* What a gcloud command may select, and how each is checked
 * (cloud_argv.h reads the argv; gcp_check_selectors decides):
 *
 *   --project, --billing-project,     a project of the connection that is
 *   --host-project (shared VPC)       enabled, by id or number (a connection
 *   projects <verb> PROJECT           that lists no project — OAuth without
 *   billing [accounts] projects <verb> PROJECT   Resource Manager access —
 *   compute shared-vpc <verb> PROJECT has nothing disabled and is not
 *                                     restricted); shared-vpc's PROJECT_ID is
 *                                     args.project: the later of it and
 *                                     --project wins
 *   projects/<p>, <sa>@<p>.iam.gserviceaccount.com anywhere in an argument
 *   (resource names, URIs, service    refused when <p> is a disabled
 *   accounts); --<anything>-project   project of the connection; other
 *   (--image-project, --kms-project,  projects (public images, a shared
 *   --target-project, …)              VPC host) stay usable
 *   --account, --impersonate-service-account, --access-token-file,
 *   --credential-file-override (hidden), --configuration, auth login,
 *   auth activate-service-account
 *                                     refused: the connector chooses the
 *                                     identity (and a configuration could
 *                                     hold another project)
 *   --region, --location, --zone,     a '/', '?', '#' or '\\' in the value
 *   locations/<l>, regions/<r>,       is refused: gcloud builds regional
 *   zones/<z> in any argument         API hosts from them
 *                                     (https://<region>-aiplatform.googleapis.com/),
 *                                     so the host would end there and the
 *                                     token go to it (checked with gcloud 528)
 *   --universe-domain (hidden)        refused: every API host becomes
 *                                     <api>.<domain>, and the bearer token
 *                                     goes there (checked with gcloud 528)
 *   --flags-file                      refused: flags read from a file are
 *                                     not checked
 *   compute ssh, scp, config-ssh,     refused, with their flags --ssh-flag,
 *   connect-to-serial-port, diagnose  --scp-flag, --ssh-key-file,
 *   routes, tpus tpu-vm|queued-       --strict-host-key-checking, --plain,
 *   resources ssh|scp, cloud-shell    --ssh-config-file (every command):
 *   ssh|scp, app instances ssh|scp,   they run a local ssh/scp client, and
 *   workstations ssh (any release     its options (--ssh-flag, or anything
 *   track)                            after `--`: -oProxyCommand=…) run a
 *                                     local command in the sandbox with the
 *                                     token in its environment; config-ssh
 *                                     writes ssh configs.  A remote shell
 *                                     (keys pushed into project metadata,
 *                                     no terminal) is not what cloud_exec
 *                                     is for, so the commands go, not only
 *                                     the flags (gcloud 528's surface)
 * gcloud accepts no abbreviated flags ("--proj=x" is an error: checked with
 * gcloud 528).  The value flags below are gcloud's global flags and those of
 * the projects commands, so that their values are not taken for project
 * ids; after any other flag written as `--flag value`, the value is checked
 * as if it were a project (use `--flag=value`). */
#define WHY_GCP_IDENTITY "the GCP connector chooses the identity commands run as"
#define WHY_GCP_SSH                                                                      \
    "it runs a local ssh or scp client, whose options can run any local command with the " \
    "connection's token; cloud_exec runs cloud API commands, not remote shells"
static const cloud_flag gcloud_flags[] = {
    { .name = "--project", .kind = CLOUD_FLAG_SELECT, .dest = "project", .primary = 1 },
    { .name = "--billing-project", .kind = CLOUD_FLAG_SELECT, .dest = "billing project" },
    { .name = "--host-project", .kind = CLOUD_FLAG_SELECT, .dest = "host project" },
    /* --image-project, --kms-project, --target-project, …: another project the
     * command reaches, checked like projects/<id> (gcloud 528 has ~90 of them) */
    { .name = "--*-project", .kind = CLOUD_FLAG_REFER, .dest = "project" },
    { .name = "--account", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_IDENTITY },
    { .name = "--impersonate-service-account", .kind = CLOUD_FLAG_REFUSE,
      .why = WHY_GCP_IDENTITY },
    { .name = "--access-token-file", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_IDENTITY },
    { .name = "--credential-file-override", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_IDENTITY },
    { .name = "--universe-domain", .kind = CLOUD_FLAG_REFUSE,
      .why = "it sends the connection's token to the API hosts of another domain" },
    { .name = "--configuration", .kind = CLOUD_FLAG_REFUSE,
      .why = "a named configuration could hold another account or project" },
    { .name = "--flags-file", .kind = CLOUD_FLAG_REFUSE,
      .why = "flags read from a file cannot be checked; give them in the command" },
    /* the ssh commands' (refused below too): wherever they stand */
    { .name = "--ssh-flag", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_SSH },
    { .name = "--scp-flag", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_SSH },
    { .name = "--ssh-key-file", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_SSH },
    { .name = "--strict-host-key-checking", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_SSH },
    { .name = "--plain", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_SSH },
    { .name = "--ssh-config-file", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_SSH },
    /* gcloud-wide flags that take a value */
    { .name = "--flatten" }, { .name = "--format" }, { .name = "--verbosity" },
    { .name = "--trace-token" }, { .name = "--filter" }, { .name = "--limit" },
    { .name = "--page-size" }, { .name = "--sort-by" },
    /* regional API hosts are built from these (ai, ml-engine, run:
     * https://<region>-<api>.googleapis.com/; artifacts, pubsub lite,
     * resource-manager tags, gkemulticloud: --location / --zone) */
    { .name = "--region", .host_part = 1 }, { .name = "--location", .host_part = 1 },
    { .name = "--zone", .host_part = 1 },
    /* the projects and billing projects commands' own */
    { .name = "--member" }, { .name = "--role" }, { .name = "--condition" },
    { .name = "--condition-from-file" }, { .name = "--name" }, { .name = "--labels" },
    { .name = "--update-labels" }, { .name = "--remove-labels" }, { .name = "--folder" },
    { .name = "--organization" }, { .name = "--tags" }, { .name = "--recommend" },
    { .name = "--billing-account" }, { .name = "--query" },
    { .name = NULL },
};
static const cloud_cmd gcloud_cmds[] = {
    { .words = "auth login", .why = WHY_GCP_IDENTITY },
    { .words = "auth activate-service-account", .why = WHY_GCP_IDENTITY },
    /* matched wherever they stand among the positionals: alpha/beta too */
    { .words = "compute ssh", .why = WHY_GCP_SSH },
    { .words = "compute scp", .why = WHY_GCP_SSH },
    { .words = "compute config-ssh", .why = WHY_GCP_SSH },
    { .words = "compute connect-to-serial-port", .why = WHY_GCP_SSH },
    { .words = "diagnose routes", .why = WHY_GCP_SSH },
    { .words = "tpu-vm ssh", .why = WHY_GCP_SSH },
    { .words = "tpu-vm scp", .why = WHY_GCP_SSH },
    { .words = "queued-resources ssh", .why = WHY_GCP_SSH },
    { .words = "queued-resources scp", .why = WHY_GCP_SSH },
    { .words = "cloud-shell ssh", .why = WHY_GCP_SSH },
    { .words = "cloud-shell scp", .why = WHY_GCP_SSH },
    { .words = "app instances ssh", .why = WHY_GCP_SSH },
    { .words = "app instances scp", .why = WHY_GCP_SSH },
    { .words = "workstations ssh", .why = WHY_GCP_SSH },
    { .words = "projects add-iam-policy-binding", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects delete", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects describe", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects get-ancestors", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects get-ancestors-iam-policy", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects get-iam-policy", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects move", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects remove-iam-policy-binding", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects set-iam-policy", .kind = CLOUD_CMD_SELECT, .dest = "project",
      .keep_last = 1 /* POLICY_FILE */ },
    { .words = "projects undelete", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "projects update", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "billing projects describe", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "billing projects link", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "billing projects unlink", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "accounts projects link", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "accounts projects unlink", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    /* PROJECT_ID here shares args.project with --project: the later one wins,
     * so `gcloud --project=a compute shared-vpc enable b` enables b */
    { .words = "shared-vpc enable", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "shared-vpc disable", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "shared-vpc get-host-project", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "shared-vpc list-associated-resources", .kind = CLOUD_CMD_SELECT,
      .dest = "project" },
    { .words = "associated-projects add", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "associated-projects remove", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = "associated-projects list", .kind = CLOUD_CMD_SELECT, .dest = "project" },
    { .words = NULL },
};
static const cloud_ref gcloud_refs[] = {
    { .prefix = "projects/", .dest = "project" },
    { .suffix = ".iam.gserviceaccount.com", .dest = "project" },
    /* and from the location of a resource name */
    { .prefix = "locations/", .host_part = 1 }, { .prefix = "regions/", .host_part = 1 },
    { .prefix = "zones/", .host_part = 1 },
    { .prefix = NULL, .suffix = NULL },
};
static const cloud_cli gcp_gcloud_argv = {
    .program = "gcloud", .flags = gcloud_flags, .cmds = gcloud_cmds, .refs = gcloud_refs,
};

/* 0 if the project a caller named may be used (see the table above), else
 * -1 with a 403 in resp.  `what` says where it was named. */
static int check_named_project(const cJSON *meta, const char *ref, const char *what,
                               http_response *resp)
{
    char shown[80];
    cloud_argv_shown(ref, shown, sizeof(shown));
    const cJSON *p = find_project_ref(meta, ref);
    if (p && !project_enabled(p)) {
        http_resp_error(resp, 403, EC_DISABLED,
                        "project %s (%s) is disabled in Aurora; enable it in the GCP connector to "
                        "run commands against it",
                        shown, what);
        return -1;
    }
    if (!p && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(meta, "projects")) > 0) {
        http_resp_error(resp, 403, "GCP_PROJECT_NOT_CONNECTED",
                        "project %s (%s) is not one of the GCP connection's projects; connect a "
                        "key that can see it, or name an enabled project (GET /gcp/projects)",
                        shown, what);
        return -1;
    }
    return 0;
}

/* Every selector the scan found, against the connection's projects. */
static int gcp_check_selectors(const cJSON *meta, const cloud_argv_result *scan,
                               http_response *resp)
{
    for (int i = 0; i < scan->n; i++) {
        const cloud_selector *s = &scan->sel[i];
        if (s->source != CLOUD_SEL_EMBEDDED) {
            if (check_named_project(meta, s->value, s->what, resp) < 0)
                return -1;
            continue;
        }
        const cJSON *p = find_project_ref(meta, s->value);
        if (p && !project_enabled(p)) {
            char shown[80];
            cloud_argv_shown(s->value, shown, sizeof(shown));
            http_resp_error(resp, 403, EC_DISABLED,
                            "project %s (named in %s) is disabled in Aurora; enable it in the GCP "
                            "connector to run commands against it",
                            shown, s->what);
            return -1;
        }
    }
    return 0;
}

/* Inserts arg before a "--" (or at the end). */
static int argv_insert_flag(argv_t *a, const char *arg)
{
    int at = a->c;
    for (int i = 0; i < a->c; i++)
        if (!strcmp(a->v[i], "--")) {
            at = i;
            break;
        }
    if (a->c + 1 > ARGV_MAX_ARGS)
        return -1;
    char **nv = realloc(a->v, sizeof(char *) * (size_t)(a->c + 2));
    if (!nv)
        return -1;
    a->v = nv;
    char *dup = strdup(arg);
    if (!dup)
        return -1;
    memmove(&a->v[at + 1], &a->v[at], sizeof(char *) * (size_t)(a->c - at + 1));
    a->v[at] = dup;
    a->c++;
    return 0;
}

static int gcp_prepare(worker_ctx *w, const auth_ctx *who, const char *target,
                       const cloud_argv_result *scan, argv_t *argv, cloud_creds *out,
                       http_response *resp)
{
    store_connector row;
    cJSON *meta = NULL;
    char *token = NULL;
    int result = -1;
    if (load_row(w, who, &row, &meta, resp) < 0)
        return -1;
    /* Which project: per-call override (the request's project, or --project
     * in the command) → root preference → the key's project_id. */
    if (gcp_check_selectors(meta, scan, resp) < 0)
        goto out;
    const cloud_selector *named = cloud_argv_primary(scan, "project");
    const char *in_argv = named ? named->value : NULL;
    if (target && *target && in_argv && strcmp(target, in_argv) != 0) {
        char shown_t[80], shown_a[80];
        cloud_argv_shown(target, shown_t, sizeof(shown_t));
        cloud_argv_shown(in_argv, shown_a, sizeof(shown_a));
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "the request names project %s but the command says --project=%s",
                        shown_t, shown_a);
        goto out;
    }
    const char *root = api_json_str(meta, "root"), *def = api_json_str(meta, "default_project");
    const char *project = NULL, *source = NULL;
    if (in_argv)
        project = in_argv, source = "override";
    else if (target && *target)
        project = target, source = "override";
    else if (root)
        project = root, source = "root";
    else if (def)
        project = def, source = "default";
    if (!project) {
        http_resp_error(resp, 400, "GCP_NO_PROJECT",
                        "no project to run in: pin a root project or pass a project");
        goto out;
    }
    if (strlen(project) > MAX_PROJECT_ID) {
        http_resp_error(resp, 400, "BAD_REQUEST", "project id too long");
        goto out;
    }
    /* Named by the caller: one of the connection's enabled projects (argv
     * selectors were checked above).  Chosen here: not a disabled one. */
    if (!in_argv && !strcmp(source, "override") &&
        check_named_project(meta, project, "the request's project", resp) < 0)
        goto out;
    const cJSON *p = find_project_ref(meta, project);
    if (p && !project_enabled(p)) {
        if (!strcmp(source, "default"))
            http_resp_error(resp, 403, EC_DISABLED,
                            "project %s (the service account key's default project) is disabled "
                            "in Aurora and no root project is pinned: pin an enabled project as "
                            "root (POST /gcp/projects/{project_id}/root) or pass a project",
                            project);
        else
            http_resp_error(resp, 403, EC_DISABLED,
                            "project %s is disabled in Aurora; enable it in the GCP connector to "
                            "run commands against it",
                            project);
        goto out;
    }

    /* Credentials. */
    int64_t now = (int64_t)time(NULL), expires_at = 0;
    char ck[256];
    version_key(ck, sizeof(ck), who->org_id, who->user_id, meta, row.updated_at);
    token = kit_cache_get(&g_tokens, ck, now, NULL);
    if (!token) {
        const char *auth = api_json_str(meta, "auth");
        int rc;
        if (auth && !strcmp(auth, "oauth")) {
            rc = oauth_mint(w, row.secret_ref, &token, &expires_at, resp);
        } else {
            unsigned char *val = NULL;
            size_t len = 0;
            if (kit_secret_get(w, row.secret_ref, &val, &len, 404, EC_MISSING,
                               "gcp credentials are missing from the secrets backend; connect again",
                               resp) < 0)
                goto out;
            jwt_sa_key key;
            char err[256];
            rc = jwt_sa_key_parse((const char *)val, len, &key, err, sizeof(err));
            if (rc < 0)
                http_resp_error(resp, 400, "GCP_KEY_MALFORMED", MSG_MALFORMED ": %s", err);
            else
                rc = sa_mint(w, &key, &token, &expires_at, resp);
            jwt_sa_key_free(&key);
            secrets_free(val, len);
        }
        if (rc < 0)
            goto out;
        kit_cache_forget(&g_tokens, who->org_id, who->user_id);
        kit_cache_put(&g_tokens, ck, token, expires_at, now);
    }

    char flag[MAX_PROJECT_ID + 16];
    snprintf(flag, sizeof(flag), "--project=%s", project);
    if (!in_argv && argv_insert_flag(argv, flag) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "too many arguments");
        goto out;
    }
    const char *env[] = { "CLOUDSDK_AUTH_ACCESS_TOKEN", token, "CLOUDSDK_CORE_PROJECT", project,
                          "CLOUDSDK_CORE_DISABLE_PROMPTS", "1",
                          "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true",
                          "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true",
                          "CLOUDSDK_SURVEY_DISABLE_PROMPTS", "true", NULL };
    if (cloud_creds_set(out, env, resp) < 0)
        goto out;
    /* Tests point gcloud at fixtures: name=url,… */
    const char *ovr = setting(w, "GCP_CLOUDSDK_ENDPOINT_OVERRIDES", NULL);
    if (ovr) {
        char list[2048];
        snprintf(list, sizeof(list), "%s", ovr);
        char *save = NULL;
        for (char *it = strtok_r(list, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(it, '=');
            if (!eq)
                continue;
            *eq = '\0';
            char name[160];
            snprintf(name, sizeof(name), "CLOUDSDK_API_ENDPOINT_OVERRIDES_%s", it);
            for (char *c = name; *c; c++)
                if (*c >= 'a' && *c <= 'z')
                    *c = (char)(*c - 'a' + 'A');
            if (cloud_creds_add(out, name, eq + 1) < 0)
                log_warn("gcp: endpoint override %s ignored", name);
        }
    }
    snprintf(out->target, sizeof(out->target), "%s", project);
    result = 0;
out:
    secret_free(token);
    cJSON_Delete(meta);
    store_connector_free(&row);
    return result;
}

static const cloud_provider gcp_cloud = { .program = "gcloud",
                                           .argv_rules = &gcp_gcloud_argv,
                                           .prepare = gcp_prepare };

/* ---- status, registration ----------------------------------------------------------------------------- */

static void gcp_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    store_connector row;
    cJSON *meta;
    if (!kit_status(w, who, GCP_ID, NULL, out, &row, &meta))
        return;
    int n = 0, enabled = 0;
    const cJSON *p, *plist = meta ? cJSON_GetObjectItemCaseSensitive(meta, "projects") : NULL;
    cJSON_ArrayForEach(p, plist)
    {
        n++;
        enabled += project_enabled(p);
    }
    cJSON_AddNumberToObject(out, "projects", n);
    cJSON_AddNumberToObject(out, "enabled_projects", enabled);
    add_choices(out, meta);
    cJSON_Delete(meta);
    store_connector_free(&row);
}

static void gcp_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    kit_cache_forget(&g_tokens, who->org_id, who->user_id);
}

static void gcp_register(void)
{
    router_add_outbound(HTTP_POST, "/gcp/service-account", ROUTE_AUTH_API, gcp_service_account);
    router_add(HTTP_GET, "/gcp/projects", ROUTE_AUTH_API, gcp_projects);
    router_add(HTTP_POST, "/gcp/projects/{project_id}/enable", ROUTE_AUTH_API, gcp_enable);
    router_add(HTTP_POST, "/gcp/projects/{project_id}/disable", ROUTE_AUTH_API, gcp_disable);
    router_add(HTTP_POST, "/gcp/projects/{project_id}/root", ROUTE_AUTH_API, gcp_root);
    router_add(HTTP_GET, "/login", ROUTE_AUTH_API, gcp_login);
    router_add(HTTP_GET, "/gcp/login", ROUTE_AUTH_API, gcp_login);
    router_add_outbound(HTTP_GET, "/callback", ROUTE_PUBLIC, gcp_callback);
    router_add_outbound(HTTP_GET, "/gcp/callback", ROUTE_PUBLIC, gcp_callback);
}

const connector connector_gcp = {
    .id = GCP_ID,
    .name = "Google Cloud Platform",
    .register_routes = gcp_register,
    .status = gcp_status,
    .cloud = &gcp_cloud,
    .disconnected = gcp_disconnected,
    .disconnecting = gcp_disconnecting,
    .settings = gcp_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
    .redirect_setting = "GCP_REDIRECT_URI",
};
