/* connector_gcp.c — Google Cloud Platform, as the connector guide
 * (Cloud Providers > GCP) describes it.
 *
 * Option A, service account key:
 *   POST /gcp/service-account          body: the key file itself, or {"key": {…}}
 *     validates the key, signs an RS256 JWT (iss = client_email, scope
 *     cloud-platform, aud = token_uri), exchanges it at the key's token_uri
 *     (jwt-bearer grant), lists projects (Cloud Resource Manager v1
 *     projects.list, every page), stores the key in the secrets backend
 *     (aurora/users/<user>/gcp/service-account-key) and the connector row
 *     (account = client_email, metadata = projects, root, default_project).
 *   GET  /gcp/projects
 *   POST /gcp/projects/{project_id}/enable | disable | root
 *   DELETE /api/connectors/gcp          (connectors.c: row and secrets)
 * Option B, OAuth 2.0:
 *   GET /login (also /gcp/login)        302 to GCP_AUTH_URL with CLIENT_ID, state, …
 *   GET /callback?code&state            state check, code exchange, refresh
 *                                       token to the secrets backend
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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "secret.h"
#include "api_util.h"
#include "connector.h"
#include "http_client.h"
#include "json_text.h"
#include "jwt.h"
#include "log.h"
#include "oauth.h"
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
#define EC_DISABLED "GCP_PROJECT_DISABLED"
#define EC_MISSING "MISSING_CONNECTOR"
#define TOKEN_CACHE_MAX 1024
#define TOKEN_REFRESH_MARGIN 300 /* seconds before expiry a cached token is replaced */
#define MAX_PROJECT_ID 128

/* ---- settings ------------------------------------------------------------------ */

static const char *setting(worker_ctx *w, const char *name, const char *def)
{
    const char *v = w->cfg ? server_setting(w->cfg, name) : NULL;
    return v ? v : def;
}

static long provider_timeout_ms(worker_ctx *w)
{
    long t = w->cfg ? (long)server_setting_int(w->cfg, "AURORA_PROVIDER_TIMEOUT_MS") : 0;
    return t > 0 ? t : 15000;
}

/* ---- token cache (per org+user, thread-safe) -------------------------------------- */

typedef struct {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    int64_t row_version; /* the connector row's updated_at: a new key invalidates */
    int64_t expires_at;
    char *token;
} cached_token;

static pthread_mutex_t g_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cached_token g_cache[TOKEN_CACHE_MAX];

static void cache_entry_clear(cached_token *c)
{
    secret_free(c->token);
    memset(c, 0, sizeof(*c));
}

/* Copies a valid token into out (malloc'd) or returns NULL. */
static char *cache_get(const char *org, const char *user, int64_t version, int64_t now)
{
    char *out = NULL;
    pthread_mutex_lock(&g_cache_mu);
    for (int i = 0; i < TOKEN_CACHE_MAX; i++) {
        cached_token *c = &g_cache[i];
        if (c->token && !strcmp(c->org_id, org) && !strcmp(c->user_id, user)) {
            if (c->row_version == version && c->expires_at - TOKEN_REFRESH_MARGIN > now)
                out = strdup(c->token);
            else
                cache_entry_clear(c);
            break;
        }
    }
    pthread_mutex_unlock(&g_cache_mu);
    return out;
}

static void cache_put(const char *org, const char *user, int64_t version, const char *token,
                      int64_t expires_at)
{
    pthread_mutex_lock(&g_cache_mu);
    cached_token *slot = NULL, *oldest = NULL;
    for (int i = 0; i < TOKEN_CACHE_MAX && !slot; i++) {
        cached_token *c = &g_cache[i];
        if (c->token && !strcmp(c->org_id, org) && !strcmp(c->user_id, user))
            slot = c;
        else if (!c->token && !oldest)
            oldest = c;
    }
    if (!slot && !oldest) { /* full: replace the one that expires first */
        oldest = &g_cache[0];
        for (int i = 1; i < TOKEN_CACHE_MAX; i++)
            if (g_cache[i].expires_at < oldest->expires_at)
                oldest = &g_cache[i];
    }
    if (!slot)
        slot = oldest;
    cache_entry_clear(slot);
    slot->token = strdup(token);
    if (slot->token) {
        snprintf(slot->org_id, sizeof(slot->org_id), "%s", org);
        snprintf(slot->user_id, sizeof(slot->user_id), "%s", user);
        slot->row_version = version;
        slot->expires_at = expires_at;
    }
    pthread_mutex_unlock(&g_cache_mu);
}

static void cache_drop(const char *org, const char *user)
{
    pthread_mutex_lock(&g_cache_mu);
    for (int i = 0; i < TOKEN_CACHE_MAX; i++)
        if (g_cache[i].token && !strcmp(g_cache[i].org_id, org) &&
            !strcmp(g_cache[i].user_id, user))
            cache_entry_clear(&g_cache[i]);
    pthread_mutex_unlock(&g_cache_mu);
}

/* ---- errors ---------------------------------------------------------------------------- */

typedef struct {
    int status;
    const char *code;
    char msg[400];
} gcp_err;

static int fail(gcp_err *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(gcp_err *e, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->status = status;
    e->code = code;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static void resp_err(http_response *resp, const gcp_err *e)
{
    http_resp_error(resp, e->status, e->code, "%s", e->msg);
}

/* ---- token endpoint ---------------------------------------------------------------------- */

/* The URL the key's assertion is exchanged at: the test override, or the
 * key's own token_uri if it is https on an allowed host. */
static int token_uri_for(worker_ctx *w, const jwt_sa_key *k, char *out, size_t cap, gcp_err *e)
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
        return fail(e, 400, "GCP_KEY_MALFORMED",
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
    return fail(e, 400, "GCP_KEY_MALFORMED",
                MSG_MALFORMED ": token_uri host is not an allowed Google token endpoint");
}

static int token_from_response(cJSON *j, char **token, int64_t *expires_at, gcp_err *e)
{
    const char *at = api_json_str(j, "access_token");
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    if (!at || !*at || strlen(at) > CLOUD_MAX_ENV_VALUE - 1)
        return fail(e, 502, "GCP_CREDENTIAL_REFRESH_FAILED",
                    MSG_REFRESH ": the token endpoint returned no usable access_token");
    double secs = cJSON_IsNumber(ei) && ei->valuedouble > 0 && ei->valuedouble < 86400 * 7
                      ? ei->valuedouble
                      : 3600;
    *token = strdup(at);
    if (!*token)
        return fail(e, 500, "INTERNAL", "out of memory");
    *expires_at = (int64_t)time(NULL) + (int64_t)secs;
    return 0;
}

static int refresh_error(const oauth_result *r, long timeout_ms, gcp_err *e)
{
    if (r->code == AUR_E_TIMEOUT)
        return fail(e, 504, "GCP_CREDENTIAL_REFRESH_FAILED",
                    MSG_REFRESH ": the token endpoint did not answer within %.1f s",
                    timeout_ms / 1000.0);
    if (r->status == 0)
        return fail(e, 502, "GCP_CREDENTIAL_REFRESH_FAILED",
                    MSG_REFRESH ": the token endpoint could not be reached (%s)", r->err);
    return fail(e, 400, "GCP_CREDENTIAL_REFRESH_FAILED",
                MSG_REFRESH ": the service account may be disabled or the key revoked — create a "
                            "new key (token endpoint answered HTTP %ld%s%s)",
                r->status, r->error[0] ? ", " : "", r->error);
}

/* Signs the assertion and exchanges it: *token (malloc'd, wipe it) on 0. */
static int sa_mint(worker_ctx *w, const jwt_sa_key *k, char **token, int64_t *expires_at,
                   gcp_err *e)
{
    char uri[1024];
    if (token_uri_for(w, k, uri, sizeof(uri), e) < 0)
        return -1;
    int64_t now = (int64_t)time(NULL);
    cJSON *claims = cJSON_CreateObject();
    if (!claims)
        return fail(e, 500, "INTERNAL", "out of memory");
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
    if (!jwt)
        return fail(e, 400, "GCP_KEY_MALFORMED", MSG_MALFORMED ": %s", err);
    const char *form[] = { "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                           "assertion", jwt, NULL };
    oauth_result r;
    cJSON *j = oauth_token_post(w, uri, form, NULL, &r);
    secret_free(jwt);
    if (!j) {
        log_warn("gcp: token exchange for %s failed: %s", k->client_email, r.err);
        return refresh_error(&r, provider_timeout_ms(w), e);
    }
    int rc = token_from_response(j, token, expires_at, e);
    secret_json_free(j);
    return rc;
}

/* OAuth connection: refresh grant with CLIENT_ID / CLIENT_SECRET. */
static int oauth_mint(worker_ctx *w, const char *refresh_token, char **token, int64_t *expires_at,
                      gcp_err *e)
{
    const char *cid = setting(w, "CLIENT_ID", NULL), *csec = setting(w, "CLIENT_SECRET", NULL);
    if (!cid || !csec)
        return fail(e, 503, "OAUTH_NOT_CONFIGURED",
                    "GCP OAuth is not configured: set CLIENT_ID and CLIENT_SECRET");
    const char *form[] = { "grant_type",    "refresh_token", "refresh_token", refresh_token,
                           "client_id",     cid,             "client_secret", csec,
                           NULL };
    oauth_result r;
    cJSON *j = oauth_token_post(w, setting(w, "GCP_TOKEN_URL", DEFAULT_TOKEN_URI), form, NULL, &r);
    if (!j) {
        log_warn("gcp: OAuth refresh failed: %s", r.err);
        return refresh_error(&r, provider_timeout_ms(w), e);
    }
    int rc = token_from_response(j, token, expires_at, e);
    secret_json_free(j);
    return rc;
}

/* ---- projects.list ---------------------------------------------------------------------- */

/* Appends every project of every page to arr ([{id, name, enabled}]). */
static int list_projects(worker_ctx *w, const char *token, cJSON *arr, gcp_err *e)
{
    const char *base = setting(w, "GCP_CRM_URL", "https://cloudresourcemanager.googleapis.com");
    int64_t max_pages = w->cfg ? server_setting_int(w->cfg, "GCP_MAX_PROJECT_PAGES") : 100;
    if (max_pages <= 0)
        max_pages = 100;
    size_t alen = strlen("Authorization: Bearer ") + strlen(token) + 1;
    char *authz = malloc(alen);
    if (!authz)
        return fail(e, 500, "INTERNAL", "out of memory");
    snprintf(authz, alen, "Authorization: Bearer %s", token);
    const char *headers[] = { authz, "Accept: application/json", NULL };
    char page_token[1024] = "";
    int rc = 0;
    for (int64_t page = 0;; page++) {
        if (page >= max_pages) {
            log_warn("gcp: projects.list stopped after %lld pages", (long long)max_pages);
            break;
        }
        char url[2048];
        char *pt = page_token[0] ? http_client_escape(page_token) : NULL;
        snprintf(url, sizeof(url), "%s/v1/projects%s%s", base, pt ? "?pageToken=" : "",
                 pt ? pt : "");
        free(pt);
        http_client_req rq = { .method = "GET", .url = url, .headers = headers,
                               .timeout_ms = provider_timeout_ms(w), .max_response = 4 << 20 };
        http_client_resp rp;
        if (http_client_do(&rq, &rp) < 0) {
            rc = rp.code == AUR_E_TIMEOUT ? fail(e, 504, "GCP_PROJECTS_FAILED",
                                     "Listing projects failed: Cloud Resource Manager did not "
                                     "answer within %.1f s",
                                     provider_timeout_ms(w) / 1000.0)
                              : fail(e, 502, "GCP_PROJECTS_FAILED",
                                     "Listing projects failed: %s", rp.err);
            break;
        }
        if (rp.status == 403) {
            http_client_resp_free(&rp);
            rc = fail(e, 400, "GCP_NO_PROJECTS",
                      MSG_NO_PROJECTS ": grant at least roles/viewer on the target project "
                                      "(Cloud Resource Manager API answered 403; is it enabled?)");
            break;
        }
        if (rp.status != 200) {
            long st = rp.status;
            http_client_resp_free(&rp);
            rc = fail(e, 502, "GCP_PROJECTS_FAILED",
                      "Listing projects failed: Cloud Resource Manager answered HTTP %ld", st);
            break;
        }
        cJSON *j = http_client_json(&rp);
        http_client_resp_free(&rp);
        if (!j) {
            rc = fail(e, 502, "GCP_PROJECTS_FAILED",
                      "Listing projects failed: the answer is not a JSON object");
            break;
        }
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "projects"), *p;
        cJSON_ArrayForEach(p, ps)
        {
            const char *id = api_json_str(p, "projectId");
            const char *name = api_json_str(p, "name");
            const char *state = api_json_str(p, "lifecycleState");
            if (!id || !*id || strlen(id) > MAX_PROJECT_ID)
                continue;
            if (state && strcmp(state, "ACTIVE") != 0)
                continue; /* DELETE_REQUESTED projects cannot be investigated */
            cJSON *o = cJSON_CreateObject();
            if (!o)
                continue;
            cJSON_AddStringToObject(o, "id", id);
            /* commands may name a project by number: kept to check those too */
            const char *num = api_json_str(p, "projectNumber");
            if (num && *num && strlen(num) <= 32 && strspn(num, "0123456789") == strlen(num))
                cJSON_AddStringToObject(o, "number", num);
            cJSON_AddStringToObject(o, "name", name ? name : id);
            cJSON_AddBoolToObject(o, "enabled", 1);
            cJSON_AddItemToArray(arr, o);
        }
        const char *next = api_json_str(j, "nextPageToken");
        if (next && *next && strlen(next) < sizeof(page_token)) {
            snprintf(page_token, sizeof(page_token), "%s", next);
            cJSON_Delete(j);
            continue;
        }
        cJSON_Delete(j);
        break;
    }
    secret_free(authz);
    return rc;
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
    int rc = store_connector_get(w->store, who->org_id, who->user_id, GCP_ID, row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    if (rc != STORE_OK) {
        http_resp_error(resp, 404, EC_MISSING, "gcp is not connected");
        return -1;
    }
    *meta = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    if (!*meta || !cJSON_IsObject(*meta)) {
        cJSON_Delete(*meta);
        *meta = cJSON_CreateObject();
    }
    if (!*meta) {
        store_connector_free(row);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    return 0;
}

static int save_meta(worker_ctx *w, store_connector *row, const cJSON *meta, http_response *resp)
{
    char *s = cJSON_PrintUnformatted(meta);
    if (!s) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    free(row->metadata_json);
    row->metadata_json = s;
    int rc = store_connector_upsert(w->store, row);
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    return 0;
}

static cJSON *projects_view(const store_connector *row, const cJSON *meta)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "connector", GCP_ID);
    cJSON_AddStringToObject(o, "account", row->account);
    const char *auth = api_json_str(meta, "auth");
    cJSON_AddStringToObject(o, "auth", auth ? auth : "service_account");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(meta, "projects");
    cJSON_AddItemToObject(o, "projects", ps ? cJSON_Duplicate(ps, 1) : cJSON_CreateArray());
    const char *root = api_json_str(meta, "root"), *def = api_json_str(meta, "default_project");
    if (root)
        cJSON_AddStringToObject(o, "root", root);
    else
        cJSON_AddNullToObject(o, "root");
    if (def)
        cJSON_AddStringToObject(o, "default_project", def);
    else
        cJSON_AddNullToObject(o, "default_project");
    return o;
}

/* ---- secrets ------------------------------------------------------------------------------ */

static int put_secret(worker_ctx *w, const char *user_id, const char *field, const char *val,
                      char *ref, size_t refcap, http_response *resp)
{
    char path[SECRETS_MAX_PATH + 1], err[512];
    if (secrets_user_path(path, sizeof(path), user_id, GCP_ID, field) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid user id");
        return -1;
    }
    int rc = secrets_put(w->secrets, path, val, strlen(val), err, sizeof(err));
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    if (secrets_ref(w->secrets, path, ref, refcap) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "secret reference too long");
        return -1;
    }
    return 0;
}

/* The secret value (malloc'd, NUL-terminated; free with secrets_free). */
static int get_secret(worker_ctx *w, const char *user_id, const char *field, unsigned char **val,
                      size_t *len, http_response *resp)
{
    char path[SECRETS_MAX_PATH + 1], err[512];
    if (connector_secrets_ready(w, resp) < 0)
        return -1;
    if (secrets_user_path(path, sizeof(path), user_id, GCP_ID, field) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid user id");
        return -1;
    }
    int rc = secrets_get(w->secrets, path, val, len, err, sizeof(err));
    if (rc == SECRETS_NOT_FOUND) {
        http_resp_error(resp, 404, EC_MISSING,
                        "gcp credentials are missing from the secrets backend; connect again");
        return -1;
    }
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    return 0;
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
    gcp_err e;
    char *token = NULL;
    int64_t expires_at = 0;
    cJSON *meta = NULL, *projects = NULL;
    store_connector old = { 0 }, row = { 0 };
    cJSON *old_meta = NULL;
    if (sa_mint(w, &key, &token, &expires_at, &e) < 0) {
        resp_err(resp, &e);
        goto out;
    }
    meta = cJSON_CreateObject();
    projects = meta ? cJSON_AddArrayToObject(meta, "projects") : NULL;
    if (!projects) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    if (list_projects(w, token, projects, &e) < 0) {
        resp_err(resp, &e);
        goto out;
    }
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

    snprintf(row.org_id, sizeof(row.org_id), "%s", who->org_id);
    snprintf(row.user_id, sizeof(row.user_id), "%s", who->user_id);
    snprintf(row.connector, sizeof(row.connector), GCP_ID);
    snprintf(row.account, sizeof(row.account), "%s", key.client_email);
    snprintf(row.status, sizeof(row.status), "active");
    /* The key file as uploaded goes to the secrets backend, nowhere else. */
    if (put_secret(w, who->user_id, FIELD_SA_KEY, text, row.secret_ref, sizeof(row.secret_ref),
                   resp) < 0)
        goto out;
    {
        /* An OAuth refresh token of an earlier connection is replaced. */
        char path[SECRETS_MAX_PATH + 1], serr[256];
        if (secrets_user_path(path, sizeof(path), who->user_id, GCP_ID, FIELD_REFRESH) == 0)
            (void)secrets_delete(w->secrets, path, serr, sizeof(serr));
    }
    if (save_meta(w, &row, meta, resp) < 0)
        goto out;
    /* The fresh token serves the first commands. */
    store_connector saved;
    if (store_connector_get(w->store, who->org_id, who->user_id, GCP_ID, &saved) == STORE_OK) {
        cache_put(who->org_id, who->user_id, saved.updated_at, token, expires_at);
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
    const char *cid = setting(w, "CLIENT_ID", NULL), *csec = setting(w, "CLIENT_SECRET", NULL);
    if (!cid || !csec) {
        http_resp_error(resp, 503, "OAUTH_NOT_CONFIGURED",
                        "GCP OAuth is not configured: set CLIENT_ID and CLIENT_SECRET in the "
                        "server environment (.env) and restart");
        return;
    }
    const char *redirect = setting(w, "GCP_REDIRECT_URI", "http://localhost:5080/callback");
    char state[64];
    if (oauth_state_new(w, &req->auth, GCP_ID, redirect, NULL, state, resp) < 0)
        return;
    char *e_cid = http_client_escape(cid), *e_red = http_client_escape(redirect);
    char *e_scope = http_client_escape(setting(w, "GCP_OAUTH_SCOPES", SCOPE_CLOUD));
    const char *auth_url = setting(w, "GCP_AUTH_URL", "https://accounts.google.com/o/oauth2/v2/auth");
    buf_t u = BUF_INIT;
    if (e_cid && e_red && e_scope)
        buf_printf(&u,
                   "%s%sclient_id=%s&redirect_uri=%s&response_type=code&scope=%s&state=%s"
                   "&access_type=offline&prompt=consent&include_granted_scopes=true",
                   auth_url, strchr(auth_url, '?') ? "&" : "?", e_cid, e_red, e_scope, state);
    free(e_cid);
    free(e_red);
    free(e_scope);
    if (!buf_pending(&u)) {
        buf_free(&u);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "authorization_url", buf_head(&u));
    http_resp_json(resp, 302, o);
    http_resp_add_header(resp, "location", buf_head(&u));
    http_resp_add_header(resp, "cache-control", "no-store");
    buf_free(&u);
}

static void gcp_callback(worker_ctx *w, http_request *req, http_response *resp)
{
    if (oauth_callback_auth(w, req, resp) < 0)
        return;
    oauth_state_info st;
    if (oauth_state_take(w, req, GCP_ID, &st, resp) < 0)
        return;
    char perr[128] = "", code[2048] = "";
    if (http_query_get(req, "error", perr, sizeof(perr)) && perr[0]) {
        for (char *p = perr; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
                *p = '?';
        http_resp_error(resp, 400, "OAUTH_DENIED", "GCP authorization failed: %s", perr);
        return;
    }
    if (!http_query_get(req, "code", code, sizeof(code)) || !code[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST", "No authorization code provided");
        return;
    }
    const char *redirect = setting(w, "GCP_REDIRECT_URI", "http://localhost:5080/callback");
    if (strcmp(st.redirect_uri, redirect) != 0) {
        OPENSSL_cleanse(code, sizeof(code));
        http_resp_error(resp, 400, "REDIRECT_URI_MISMATCH",
                        "Redirect URI mismatch: the connection was started with another redirect "
                        "URI; it must match %s exactly",
                        redirect);
        return;
    }
    const char *cid = setting(w, "CLIENT_ID", NULL), *csec = setting(w, "CLIENT_SECRET", NULL);
    if (!cid || !csec) {
        OPENSSL_cleanse(code, sizeof(code));
        http_resp_error(resp, 503, "OAUTH_NOT_CONFIGURED",
                        "GCP OAuth is not configured: set CLIENT_ID and CLIENT_SECRET");
        return;
    }
    if (connector_secrets_ready(w, resp) < 0)
        return;
    oauth_code_exchange x = { .token_url = setting(w, "GCP_TOKEN_URL", DEFAULT_TOKEN_URI),
                              .client_id = cid, .client_secret = csec, .code = code,
                              .redirect_uri = st.redirect_uri };
    oauth_result r;
    cJSON *tok = oauth_exchange_code(w, &x, &r);
    OPENSSL_cleanse(code, sizeof(code));
    if (!tok) {
        log_warn("gcp: OAuth code exchange failed: %s", r.err);
        if (!strcmp(r.error, "redirect_uri_mismatch"))
            http_resp_error(resp, 400, "REDIRECT_URI_MISMATCH",
                            "Redirect URI mismatch: ensure the redirect URI in GCP Console "
                            "exactly matches %s",
                            st.redirect_uri);
        else if (r.code == AUR_E_TIMEOUT)
            http_resp_error(resp, 504, "OAUTH_EXCHANGE_FAILED",
                            "GCP token exchange failed: the token endpoint did not answer within "
                            "%.1f s",
                            provider_timeout_ms(w) / 1000.0);
        else
            http_resp_error(resp, 502, "OAUTH_EXCHANGE_FAILED", "GCP token exchange failed%s%s",
                            r.error[0] ? ": " : "", r.error);
        return;
    }
    const char *refresh = api_json_str(tok, "refresh_token");
    const char *access = api_json_str(tok, "access_token");
    if (!refresh || !*refresh) {
        secret_json_free(tok);
        http_resp_error(resp, 502, "OAUTH_EXCHANGE_FAILED",
                        "GCP returned no refresh token; remove Aurora's access in your Google "
                        "account settings and connect again");
        return;
    }
    /* Account to show: the id_token's email when Google sent one. */
    char account[256] = "gcp-oauth-user";
    cJSON *claims = jwt_unverified_claims(api_json_str(tok, "id_token"));
    const char *email = claims ? api_json_str(claims, "email") : NULL;
    const char *sub = claims ? api_json_str(claims, "sub") : NULL;
    if ((email && *email) || (sub && *sub))
        snprintf(account, sizeof(account), "%.255s", email && *email ? email : sub);
    cJSON_Delete(claims);

    auth_ctx who = { .authenticated = 1 };
    snprintf(who.org_id, sizeof(who.org_id), "%s", st.org_id);
    snprintf(who.user_id, sizeof(who.user_id), "%s", st.user_id);
    cJSON *meta = cJSON_CreateObject();
    cJSON *projects = meta ? cJSON_AddArrayToObject(meta, "projects") : NULL;
    store_connector row = { 0 };
    if (!projects) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    /* Best effort: a user who can list no project can still connect. */
    gcp_err e;
    if (access && list_projects(w, access, projects, &e) < 0)
        log_warn("gcp: projects.list after OAuth failed: %s", e.msg);
    cJSON_AddStringToObject(meta, "auth", "oauth");
    cJSON_AddNullToObject(meta, "root");
    cJSON *first = cJSON_GetArrayItem(projects, 0);
    const char *fid = first ? api_json_str(first, "id") : NULL;
    if (fid)
        cJSON_AddStringToObject(meta, "default_project", fid);
    else
        cJSON_AddNullToObject(meta, "default_project");
    snprintf(row.org_id, sizeof(row.org_id), "%s", who.org_id);
    snprintf(row.user_id, sizeof(row.user_id), "%s", who.user_id);
    snprintf(row.connector, sizeof(row.connector), GCP_ID);
    snprintf(row.account, sizeof(row.account), "%s", account);
    snprintf(row.status, sizeof(row.status), "active");
    if (put_secret(w, who.user_id, FIELD_REFRESH, refresh, row.secret_ref, sizeof(row.secret_ref),
                   resp) < 0)
        goto out;
    {
        char path[SECRETS_MAX_PATH + 1], serr[256];
        if (secrets_user_path(path, sizeof(path), who.user_id, GCP_ID, FIELD_SA_KEY) == 0)
            (void)secrets_delete(w->secrets, path, serr, sizeof(serr));
    }
    if (save_meta(w, &row, meta, resp) < 0)
        goto out;
    cache_drop(who.org_id, who.user_id);
    log_info("gcp: OAuth connection for user %s (org %s)", who.user_id, who.org_id);
    cJSON *o = projects_view(&row, meta);
    if (o)
        cJSON_AddBoolToObject(o, "connected", 1);
    http_resp_json(resp, 302, o);
    {
        char loc[1200];
        const char *fe = w->cfg && w->cfg->frontend_url ? w->cfg->frontend_url : "";
        snprintf(loc, sizeof(loc), "%s/connectors?provider=gcp&status=connected", fe);
        http_resp_add_header(resp, "location", loc);
    }
out:
    secret_json_free(tok);
    cJSON_Delete(meta);
    store_connector_free(&row);
}

/* ---- cloud_exec ------------------------------------------------------------------------------------ */

/* What a gcloud command may select, and how each is checked
 * (cloud_argv.h reads the argv; gcp_check_selectors decides):
 *
 *   --project, --billing-project      a project of the connection that is
 *   projects <verb> PROJECT           enabled, by id or number (a connection
 *   billing projects <verb> PROJECT   that lists no project — OAuth without
 *                                     Resource Manager access — has nothing
 *                                     disabled and is not restricted)
 *   projects/<p>, <sa>@<p>.iam.gserviceaccount.com anywhere in an argument
 *                                     (resource names, URIs, service
 *                                     accounts): refused when <p> is a
 *                                     disabled project of the connection;
 *                                     other projects (public images, a
 *                                     shared VPC host) stay usable
 *   --account, --impersonate-service-account, --access-token-file,
 *   --configuration, auth login, auth activate-service-account
 *                                     refused: the connector chooses the
 *                                     identity (and a configuration could
 *                                     hold another project)
 *   --flags-file                      refused: flags read from a file are
 *                                     not checked
 * gcloud accepts no abbreviated flags ("--proj=x" is an error: checked with
 * gcloud 528).  The value flags below are gcloud's global flags and those of
 * the projects commands, so that their values are not taken for project
 * ids; after any other flag written as `--flag value`, the value is checked
 * as if it were a project (use `--flag=value`). */
#define WHY_GCP_IDENTITY "the GCP connector chooses the identity commands run as"
static const cloud_flag gcloud_flags[] = {
    { .name = "--project", .kind = CLOUD_FLAG_SELECT, .dest = "project", .primary = 1 },
    { .name = "--billing-project", .kind = CLOUD_FLAG_SELECT, .dest = "billing project" },
    { .name = "--account", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_IDENTITY },
    { .name = "--impersonate-service-account", .kind = CLOUD_FLAG_REFUSE,
      .why = WHY_GCP_IDENTITY },
    { .name = "--access-token-file", .kind = CLOUD_FLAG_REFUSE, .why = WHY_GCP_IDENTITY },
    { .name = "--configuration", .kind = CLOUD_FLAG_REFUSE,
      .why = "a named configuration could hold another account or project" },
    { .name = "--flags-file", .kind = CLOUD_FLAG_REFUSE,
      .why = "flags read from a file cannot be checked; give them in the command" },
    /* gcloud-wide flags that take a value */
    { .name = "--flatten" }, { .name = "--format" }, { .name = "--verbosity" },
    { .name = "--trace-token" }, { .name = "--filter" }, { .name = "--limit" },
    { .name = "--page-size" }, { .name = "--sort-by" },
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
    { .words = NULL },
};
static const cloud_ref gcloud_refs[] = {
    { .prefix = "projects/", .dest = "project" },
    { .suffix = ".iam.gserviceaccount.com", .dest = "project" },
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
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "the request names project %.128s but the command says --project=%.128s",
                        target, in_argv);
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
    token = cache_get(who->org_id, who->user_id, row.updated_at, now);
    if (!token) {
        const char *auth = api_json_str(meta, "auth");
        int oauth = auth && !strcmp(auth, "oauth");
        unsigned char *val = NULL;
        size_t len = 0;
        if (get_secret(w, who->user_id, oauth ? FIELD_REFRESH : FIELD_SA_KEY, &val, &len, resp) < 0)
            goto out;
        gcp_err e;
        int rc;
        if (oauth) {
            rc = oauth_mint(w, (const char *)val, &token, &expires_at, &e);
        } else {
            jwt_sa_key key;
            char err[256];
            if (jwt_sa_key_parse((const char *)val, len, &key, err, sizeof(err)) < 0)
                rc = fail(&e, 400, "GCP_KEY_MALFORMED", MSG_MALFORMED ": %s", err);
            else
                rc = sa_mint(w, &key, &token, &expires_at, &e);
            jwt_sa_key_free(&key);
        }
        secrets_free(val, len);
        if (rc < 0) {
            resp_err(resp, &e);
            goto out;
        }
        cache_put(who->org_id, who->user_id, row.updated_at, token, expires_at);
    }

    char flag[MAX_PROJECT_ID + 16];
    snprintf(flag, sizeof(flag), "--project=%s", project);
    if (!in_argv && argv_insert_flag(argv, flag) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "too many arguments");
        goto out;
    }
    if (cloud_creds_add(out, "CLOUDSDK_AUTH_ACCESS_TOKEN", token) < 0 ||
        cloud_creds_add(out, "CLOUDSDK_CORE_PROJECT", project) < 0 ||
        cloud_creds_add(out, "CLOUDSDK_CORE_DISABLE_PROMPTS", "1") < 0 ||
        cloud_creds_add(out, "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true") < 0 ||
        cloud_creds_add(out, "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true") < 0 ||
        cloud_creds_add(out, "CLOUDSDK_SURVEY_DISABLE_PROMPTS", "true") < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cannot build the command environment");
        goto out;
    }
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
    int rc = store_connector_get(w->store, who->org_id, who->user_id, GCP_ID, &row);
    if (rc != STORE_OK) {
        cJSON_AddBoolToObject(out, "connected", 0);
        if (rc == STORE_ERR)
            cJSON_AddStringToObject(out, "error", "state store unavailable");
        return;
    }
    cJSON *meta = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    cJSON_AddBoolToObject(out, "connected", 1);
    cJSON_AddStringToObject(out, "account", row.account);
    const char *auth = meta ? api_json_str(meta, "auth") : NULL;
    cJSON_AddStringToObject(out, "auth", auth ? auth : "service_account");
    int n = 0, enabled = 0;
    const cJSON *p, *plist = meta ? cJSON_GetObjectItemCaseSensitive(meta, "projects") : NULL;
    cJSON_ArrayForEach(p, plist)
    {
        n++;
        enabled += project_enabled(p);
    }
    cJSON_AddNumberToObject(out, "projects", n);
    cJSON_AddNumberToObject(out, "enabled_projects", enabled);
    const char *root = meta ? api_json_str(meta, "root") : NULL;
    const char *def = meta ? api_json_str(meta, "default_project") : NULL;
    if (root)
        cJSON_AddStringToObject(out, "root", root);
    else
        cJSON_AddNullToObject(out, "root");
    if (def)
        cJSON_AddStringToObject(out, "default_project", def);
    else
        cJSON_AddNullToObject(out, "default_project");
    api_add_time(out, "connected_at", row.created_at);
    api_add_time(out, "updated_at", row.updated_at);
    cJSON_Delete(meta);
    store_connector_free(&row);
}

static void gcp_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    cache_drop(who->org_id, who->user_id);
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
};
