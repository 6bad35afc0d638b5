/* github_oauth.c — GitHub's OAuth fallback sign-in (connector guide: GitHub,
 * "Path B — OAuth fallback"; GITHUB_AUTH_MODE oauth or hybrid).
 *
 *   GET  /github/login     302 to {GH_BASE_URL}/login/oauth/authorize (state bound to the
 *   POST /github/login     caller, single use, expiring); POST answers {oauth_url} as the
 *                          existing service's frontend expects.  "Failed to initiate
 *                          GitHub OAuth" when GH_OAUTH_CLIENT_ID/SECRET are empty.
 *   GET  /github/callback  state consumed, code exchanged at
 *                          {GH_BASE_URL}/login/oauth/access_token (Accept: application/json:
 *                          GitHub answers form-encoded otherwise, and reports a refused
 *                          code as HTTP 200 {"error": "bad_verification_code"}), the login
 *                          read from {GH_API_BASE_URL}/user, the token stored in the
 *                          secrets backend (the row keeps its reference and the login), the
 *                          browser sent to FRONTEND_URL/connectors?provider=github&status=connected
 *   disconnect             DELETE /api/connectors/github: the grant revoked at
 *                          DELETE {GH_API_BASE_URL}/applications/{client_id}/grant (Basic
 *                          client_id:client_secret), then the row and secret removed by
 *                          connectors.c.
 * GitHub OAuth App tokens do not expire and come without a refresh token:
 * the access token itself is the stored credential. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "buf.h"
#include "crypto.h"
#include "github_app.h"
#include "github_installer.h"
#include "github_oauth.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"

#define GH_ID "github"
#define MSG_UNCONFIGURED "Failed to initiate GitHub OAuth"
#define MSG_BAD_CREDENTIALS "Bad credentials"
#define MAX_TOKEN_LEN 1024

static const kit_oauth_errors gh_errors = GITHUB_KIT_OAUTH_ERRORS(
    "regenerate the OAuth App's client secret and update GH_OAUTH_CLIENT_SECRET");

static int oauth_mode(const worker_ctx *w)
{
    const char *m = server_setting(w->cfg, "GITHUB_AUTH_MODE");
    return m && (!strcasecmp(m, "oauth") || !strcasecmp(m, "hybrid"));
}

/* The OAuth App as configured; URLs into the caller's buffers.  0, or -1
 * when the client id or secret is empty. */
static int client_of(const worker_ctx *w, kit_oauth_client *c, char *authz, char *token,
                     size_t cap)
{
    char web[512];
    github_web_base(w->cfg, web, sizeof(web));
    snprintf(authz, cap, "%s/login/oauth/authorize", web);
    snprintf(token, cap, "%s/login/oauth/access_token", web);
    memset(c, 0, sizeof(*c));
    c->provider = GH_ID;
    c->authorize_url = authz;
    c->token_url = token;
    c->client_id = server_setting(w->cfg, "GH_OAUTH_CLIENT_ID");
    c->client_secret = server_setting(w->cfg, "GH_OAUTH_CLIENT_SECRET");
    c->redirect_uri = server_setting(w->cfg, "GH_OAUTH_REDIRECT_URI");
    c->scope = server_setting(w->cfg, "GH_OAUTH_SCOPES");
    c->pkce = 0; /* classic OAuth Apps: PKCE is not part of GitHub's documented flow */
    c->basic_auth = 0;
    c->timeout_ms = connector_timeout_ms(w, connector_find(GH_ID));
    c->errors = &gh_errors;
    return c->client_id && *c->client_id && c->client_secret && *c->client_secret ? 0 : -1;
}

static int disabled(const worker_ctx *w, http_response *resp)
{
    if (oauth_mode(w))
        return 0;
    http_resp_error(resp, 404, "GITHUB_OAUTH_DISABLED",
                    "GitHub OAuth is disabled in this deployment (GITHUB_AUTH_MODE=app)");
    return 1;
}

/* ---- GET|POST /github/login ----------------------------------------------------------------- */

static void login_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || disabled(w, resp))
        return;
    kit_oauth_client c;
    char authz[640], token[640];
    if (client_of(w, &c, authz, token, sizeof(authz)) < 0) {
        log_error("github: OAuth login attempted but GH_OAUTH_CLIENT_ID / GH_OAUTH_CLIENT_SECRET "
                  "are empty");
        http_resp_error(resp, 503, "GITHUB_NOT_CONFIGURED",
                        MSG_UNCONFIGURED ": GH_OAUTH_CLIENT_ID / GH_OAUTH_CLIENT_SECRET are empty "
                                         "(GITHUB_AUTH_MODE=oauth or hybrid); set them and restart");
        return;
    }
    char *url = kit_oauth_authorize_url(w, &req->auth, &c, NULL, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "oauth_url", url);
    cJSON_AddStringToObject(o, "message", "Redirect to GitHub for authentication");
    kit_oauth_send_url(resp, req->method == HTTP_POST ? 200 : 302, url, o);
    free(url);
}

/* ---- GET /github/callback ------------------------------------------------------------------- */

/* GitHub's own error code of a 200 token answer, reduced to [a-z_]. */
static void clean_code(const char *e, char *out, size_t cap)
{
    size_t o = 0;
    for (; e && *e && o + 1 < cap; e++)
        if ((*e >= 'a' && *e <= 'z') || *e == '_')
            out[o++] = *e;
    out[o] = '\0';
}

/* GET {api}/user with the new token: the login, or -1 with resp filled. */
static int fetch_login(worker_ctx *w, const char *token, char *login, size_t cap,
                       http_response *resp)
{
    char api[512], authz[MAX_TOKEN_LEN + 32];
    github_api_base(w->cfg, api, sizeof(api));
    char *url = kit_url(api, "user");
    snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
    const char *headers[] = { "Accept: application/vnd.github+json",
                              "X-GitHub-Api-Version: " GITHUB_API_VERSION, authz, NULL };
    kit_call_req rq = { .provider = "GitHub", .base_url = api, .url = url, .headers = headers,
                        .attempt_timeout_ms = connector_timeout_ms(w, connector_find(GH_ID)),
                        .max_attempts = 2, .max_response = 256 * 1024 };
    kit_call_resp rp;
    int rc = url ? kit_call(&rq, &rp) : AUR_E_INTERNAL;
    OPENSSL_cleanse(authz, sizeof(authz));
    free(url);
    if (rc != AUR_OK) {
        if (url)
            log_warn("github: reading the signed-in user failed: %s", rp.err);
        http_resp_error(resp, rc == AUR_E_DENIED ? 400 : 502,
                        rc == AUR_E_DENIED ? "GITHUB_BAD_CREDENTIALS" : "GITHUB_ERROR",
                        rc == AUR_E_DENIED ? MSG_BAD_CREDENTIALS ": GitHub refused the new token"
                                           : "Failed to fetch user information from GitHub");
        if (url)
            kit_call_resp_free(&rp);
        return -1;
    }
    cJSON *j = kit_call_json(&rp);
    kit_call_resp_free(&rp);
    const char *l = j ? api_json_str(j, "login") : NULL;
    if (!github_name_ok(l, 100, "-_.[]")) { /* bots: "name[bot]" */
        cJSON_Delete(j);
        http_resp_error(resp, 502, "GITHUB_ERROR", "Invalid response from GitHub (no usable login)");
        return -1;
    }
    snprintf(login, cap, "%s", l);
    cJSON_Delete(j);
    return 0;
}

int github_token_refused(cJSON *tok, const char *redirect_uri, const char *redirect_setting,
                         const char *secret_hint, http_response *resp)
{
    const char *gh_error = api_json_str(tok, "error");
    if (!gh_error)
        return 0;
    char code[64];
    clean_code(gh_error, code, sizeof(code));
    secret_json_free(tok);
    log_warn("github: OAuth code exchange refused: %s", code);
    if (!strcmp(code, "redirect_uri_mismatch"))
        http_resp_error(resp, 400, "GITHUB_REDIRECT_MISMATCH",
                        "Redirect URI mismatch: the callback URL registered on GitHub must be "
                        "exactly %s (%s)", redirect_uri, redirect_setting);
    else
        http_resp_error(resp, 400, "GITHUB_BAD_CREDENTIALS",
                        MSG_BAD_CREDENTIALS ": GitHub refused the code exchange (%s); %s", code,
                        !strcmp(code, "incorrect_client_credentials") ? secret_hint
                                                                       : "start the connection again");
    return 1;
}

/* /github/callback ends two flows: this file's OAuth App sign-in, and the
 * GitHub App's check of who installed it (github_installer.c), whose
 * registered "Callback URL" the guide points here too.  The state says
 * which one. */
static void callback_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char probe[8];
    int installer = github_installer_offered(w);
    if (!oauth_mode(w) && (!installer || !http_query_get(req, "state", probe, sizeof(probe)))) {
        disabled(w, resp);
        return;
    }
    kit_oauth_client c;
    char authz[640], tokurl[640];
    int configured = client_of(w, &c, authz, tokurl, sizeof(authz)) == 0;
    c.also_provider = installer ? GITHUB_INSTALLER_PROVIDER : NULL;
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "GitHub authorization", NULL, &cb, resp) < 0)
        return;
    if (!strcmp(cb.st.provider, GITHUB_INSTALLER_PROVIDER)) {
        github_installer_callback(w, &cb, resp);
        return;
    }
    if (disabled(w, resp) || kit_oauth_redirect_check(&c, &cb, c.redirect_uri, resp) < 0) {
        kit_oauth_callback_wipe(&cb);
        return;
    }
    if (!configured) {
        kit_oauth_callback_wipe(&cb);
        http_resp_error(resp, 503, "GITHUB_NOT_CONFIGURED",
                        "GitHub integration is not properly configured: " MSG_UNCONFIGURED
                        " (GH_OAUTH_CLIENT_ID / GH_OAUTH_CLIENT_SECRET are empty)");
        return;
    }
    oauth_state_info st = cb.st;
    cJSON *tok = kit_oauth_exchange(w, &c, &cb, MSG_BAD_CREDENTIALS, resp);
    if (!tok ||
        github_token_refused(tok, c.redirect_uri, "GH_OAUTH_REDIRECT_URI",
                             "regenerate the OAuth App's client secret and update "
                             "GH_OAUTH_CLIENT_SECRET",
                             resp))
        return;
    int64_t exp = 0;
    char *token = kit_oauth_access_token(tok, MAX_TOKEN_LEN, (int64_t)time(NULL), &exp);
    const char *scope = api_json_str(tok, "scope");
    char scopes[256] = "";
    if (scope)
        for (size_t i = 0, o = 0; scope[i] && o + 1 < sizeof(scopes); i++)
            if ((scope[i] >= 'a' && scope[i] <= 'z') || scope[i] == ':' || scope[i] == ',' ||
                scope[i] == '_' || scope[i] == ' ')
                scopes[o++] = scope[i], scopes[o] = '\0';
    secret_json_free(tok);
    if (!token) {
        http_resp_error(resp, 502, "GITHUB_ERROR", "Invalid response from GitHub (no access token)");
        return;
    }
    char login[128];
    if (fetch_login(w, token, login, sizeof(login), resp) < 0) {
        secret_free(token);
        return;
    }
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "auth", "oauth");
    cJSON_AddStringToObject(md, "login", login);
    cJSON_AddStringToObject(md, "scopes", scopes);
    kit_field f = { GITHUB_OAUTH_FIELD, token };
    int rc = kit_connect_store(w, st.org_id, st.user_id, GH_ID, login, &f, 1, md, resp);
    secret_free(token);
    cJSON_Delete(md);
    if (rc < 0)
        return;
    log_info("github: OAuth connected GitHub user %s for user %s (org %s)", login, st.user_id,
             st.org_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", GH_ID);
    cJSON_AddStringToObject(o, "account", login);
    cJSON_AddStringToObject(o, "auth", "oauth");
    kit_oauth_connected(w, resp, GH_ID, o);
}

/* ---- disconnect ------------------------------------------------------------------------------ */

int github_user_token_revoke(worker_ctx *w, const char *client_id, const char *client_secret,
                             const char *what, const char *token, char *err, size_t errlen)
{
    char api[512], path[600], basic_h[1200] = "";
    github_api_base(w->cfg, api, sizeof(api));
    char *id = http_client_escape(client_id);
    snprintf(path, sizeof(path), "applications/%s/%s", id ? id : "", what);
    free(id);
    char *url = kit_url(api, path);
    size_t plen = strlen(client_id) + strlen(client_secret) + 2;
    char *pair = malloc(plen);
    char *b64 = NULL;
    if (pair) {
        snprintf(pair, plen, "%s:%s", client_id, client_secret);
        b64 = crypto_base64(pair, strlen(pair));
        secret_free(pair);
    }
    if (b64)
        snprintf(basic_h, sizeof(basic_h), "Authorization: Basic %s", b64);
    secret_free(b64);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "access_token", token);
    char *bs = cJSON_PrintUnformatted(body);
    secret_json_free(body);
    const char *headers[] = { "Accept: application/vnd.github+json",
                              "X-GitHub-Api-Version: " GITHUB_API_VERSION,
                              "Content-Type: application/json", basic_h, NULL };
    int rc = AUR_E_INTERNAL;
    snprintf(err, errlen, "out of memory");
    if (url && bs && basic_h[0]) {
        kit_call_req rq = { .provider = "GitHub", .base_url = api, .method = "DELETE", .url = url,
                            .headers = headers, .body = bs, .body_len = strlen(bs),
                            .attempt_timeout_ms = connector_timeout_ms(w, connector_find(GH_ID)),
                            .max_attempts = 1 };
        kit_call_resp rp;
        rc = kit_call(&rq, &rp);
        snprintf(err, errlen, "%s", rp.err);
        kit_call_resp_free(&rp);
    }
    OPENSSL_cleanse(basic_h, sizeof(basic_h));
    secret_free(bs);
    free(url);
    return rc == AUR_OK ? 0 : -1;
}

void github_oauth_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row)
{
    (void)who;
    kit_oauth_client c;
    char authz[640], tokurl[640];
    if (!row->secret_ref[0] || client_of(w, &c, authz, tokurl, sizeof(authz)) < 0)
        return;
    unsigned char *tok = NULL;
    size_t len = 0;
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (kit_secret_get(w, row->secret_ref, &tok, &len, 404, "GONE", "gone", &scratch) < 0) {
        buf_free(&scratch.body);
        return;
    }
    buf_free(&scratch.body);
    char err[320];
    if (github_user_token_revoke(w, c.client_id, c.client_secret, "grant", (const char *)tok, err,
                                 sizeof(err)) == 0)
        log_info("github: OAuth grant of %s revoked at GitHub", row->account);
    else
        log_warn("github: revoking the OAuth grant of %s failed (%s); the token is deleted "
                 "here anyway", row->account, err);
    secrets_free(tok, len);
}

/* ---- status ------------------------------------------------------------------------------------ */

int github_oauth_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    store_connector row;
    memset(&row, 0, sizeof(row));
    int rc = store_connector_get(w->store, who->org_id, who->user_id, GH_ID, &row);
    int connected = rc == STORE_OK && !strcmp(row.status, "active");
    cJSON_AddBoolToObject(out, "oauth_connected", connected);
    if (connected) {
        cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
        const char *login = md ? api_json_str(md, "login") : NULL;
        cJSON_AddStringToObject(out, "oauth_login", login ? login : row.account);
        const cJSON *poll = md ? cJSON_GetObjectItemCaseSensitive(md, "poll") : NULL;
        const cJSON *at = poll ? cJSON_GetObjectItemCaseSensitive(poll, "polled_at") : NULL;
        if (cJSON_IsNumber(at))
            api_add_time(out, "oauth_polled_at", (int64_t)at->valuedouble);
        cJSON_Delete(md);
    }
    if (rc == STORE_OK)
        store_connector_free(&row);
    return connected;
}

void github_oauth_register(void)
{
    router_add_outbound(HTTP_GET, "/github/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_POST, "/github/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_GET, "/github/callback", ROUTE_PUBLIC, callback_route);
}
