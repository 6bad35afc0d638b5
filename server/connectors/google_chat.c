/* google_chat.c — Google Chat (connector guide: Communication > Google Chat):
 * hybrid authentication.  A user signs in once with Google OAuth to create
 * the incidents space in their Workspace; a service account (the Chat app,
 * "Aurora") sends every message after that, so notifications appear as the
 * app, not as a person.  Without the service account key, messages go out
 * with the user's own OAuth token and the status says so.
 *
 *   GET|POST /google-chat/login     authorization URL (302, or JSON for POST);
 *                                   503 "Google Chat OAuth credentials not
 *                                   configured" without client id/secret
 *   GET  /google-chat/callback      state consumed, code exchanged, the space
 *                                   created (spaces.create, user token), the
 *                                   Chat app added to it (spaces.members.create
 *                                   users/app) when the service account is set,
 *                                   the refresh token stored, the space name
 *                                   kept in the connection row → 302 to
 *                                   FRONTEND_URL/connectors?provider=google_chat
 *   GET  /google-chat/status        the connection, identity, URLs to configure
 *   POST /google-chat/events        google_chat_events.c
 *   GET  /api/google_chat/events[/{id}]  stored events (kit read API)
 * Disconnect: DELETE /api/connectors/google_chat (the grant revoked first).
 * A callback refused after the code exchange revokes its grant too.
 *
 * Google's OAuth 2.0 for web server apps (developers.google.com/identity/
 * protocols/oauth2/web-server): access_type=offline and prompt=consent so a
 * refresh token comes back, client_secret_post, PKCE S256.  Every endpoint
 * is a setting so tests point them at local fixtures. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "google_chat.h"
#include "jwt.h"
#include "kit_cache.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secret.h"
#include "secrets.h"

static const config_def gchat_settings[] = {
    { "GOOGLE_CHAT_CLIENT_ID", "google_chat.client_id", CFG_STRING, NULL,
      "Google Chat connector: OAuth client id (APIs & Services > Credentials, Web application)", 0 },
    { "GOOGLE_CHAT_CLIENT_SECRET", NULL, CFG_STRING, NULL,
      "Google Chat connector: OAuth client secret", 1 },
    { "GOOGLE_CHAT_REDIRECT_URI", "google_chat.redirect_uri", CFG_STRING,
      "http://localhost:5080/google-chat/callback",
      "Google Chat connector: the client's Authorized redirect URI, <API_URL>/google-chat/callback", 0 },
    { "GOOGLE_CHAT_OAUTH_SCOPE", "google_chat.oauth_scope", CFG_STRING,
      "openid email https://www.googleapis.com/auth/chat.spaces.create "
      "https://www.googleapis.com/auth/chat.memberships.app "
      "https://www.googleapis.com/auth/chat.messages.create",
      "Google Chat connector: scopes of the setup sign-in (create the space, add the app; send "
      "messages as the user while no service account key is set)", 0 },
    { "GOOGLE_CHAT_AUTH_URL", "google_chat.auth_url", CFG_STRING,
      "https://accounts.google.com/o/oauth2/v2/auth",
      "Google Chat connector: Google's OAuth authorization endpoint", 0 },
    { "GOOGLE_CHAT_TOKEN_URL", "google_chat.token_url", CFG_STRING,
      "https://oauth2.googleapis.com/token", "Google Chat connector: Google's OAuth token endpoint", 0 },
    { "GOOGLE_CHAT_REVOKE_URL", "google_chat.revoke_url", CFG_STRING,
      "https://oauth2.googleapis.com/revoke",
      "Google Chat connector: revocation endpoint used on disconnect and when a sign-in is "
      "refused after the code exchange (empty: none)", 0 },
    { "GOOGLE_CHAT_API_BASE_URL", "google_chat.api_base_url", CFG_STRING,
      "https://chat.googleapis.com", "Google Chat connector: Chat API base URL", 0 },
    { "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY", NULL, CFG_STRING, NULL,
      "Google Chat connector: the Chat app's service account key, the JSON key file on ONE line "
      "(cat your-key-file.json | jq -c .)", 1 },
    { "GOOGLE_CHAT_SPACE_DISPLAY_NAME", "google_chat.space_display_name", CFG_STRING,
      "Aurora Incidents", "Google Chat connector: name of the incidents space created at setup", 0 },
    { "GOOGLE_CHAT_AUDIENCE", "google_chat.audience", CFG_STRING, NULL,
      "Google Chat connector: the Authentication Audience of the Chat app (default: "
      "AURORA_PUBLIC_URL + /google-chat/events, and FRONTEND_URL + /google-chat/events when "
      "FRONTEND_URL is https: a frontend that forwards the path)", 0 },
    { "GOOGLE_CHAT_CERTS_URL", "google_chat.certs_url", CFG_STRING,
      "https://www.googleapis.com/service_accounts/v1/metadata/x509/chat@system.gserviceaccount.com",
      "Google Chat connector: certificates of tokens issued by chat@system.gserviceaccount.com", 0 },
    { "GOOGLE_CHAT_OIDC_CERTS_URL", "google_chat.oidc_certs_url", CFG_STRING,
      "https://www.googleapis.com/oauth2/v3/certs",
      "Google Chat connector: Google's OIDC keys, for ID tokens (iss accounts.google.com) whose "
      "email is chat@system.gserviceaccount.com", 0 },
    { "GOOGLE_CHAT_CERTS_REFETCH_S", "google_chat.certs_refetch_s", CFG_INT, "30",
      "Google Chat connector: an unknown key id fetches the certificates again at most this often (s)",
      0, 1, 3600 },
    { NULL },
};

static const kit_oauth_errors gchat_oauth_errors = {
    .service = "Google",
    .timeout = "GOOGLE_CHAT_TIMEOUT",
    .unreachable = "GOOGLE_CHAT_UNREACHABLE",
    .grant = "GOOGLE_CHAT_GRANT_INVALID",
    .denied = "GOOGLE_CHAT_OAUTH_CLIENT_INVALID",
    .failed = "GOOGLE_CHAT_ERROR",
    .denied_hint = "check GOOGLE_CHAT_CLIENT_ID / GOOGLE_CHAT_CLIENT_SECRET",
    .authorization_failed = "GOOGLE_CHAT_AUTHORIZATION_FAILED",
    .redirect_mismatch = "GOOGLE_CHAT_BAD_REDIRECT_URI",
};

const kit_call_errors gchat_api_errors = {
    .service = "Google Chat API",
    .timeout = "GOOGLE_CHAT_TIMEOUT",
    .unreachable = "GOOGLE_CHAT_UNREACHABLE",
    .denied = "GOOGLE_CHAT_DENIED",
    .failed = "GOOGLE_CHAT_ERROR",
};

/* Users' access tokens (an hour at Google). */
static kit_cache g_user_tokens = KIT_CACHE_INIT(1024);

/* ---- settings ------------------------------------------------------------------------ */

long gchat_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_google_chat); }

const char *gchat_api_base(const worker_ctx *w, http_response *resp)
{
    const char *b = server_setting(w->cfg, "GOOGLE_CHAT_API_BASE_URL");
    char err[160];
    if (!b || kit_base_url_check(b, 0, err, sizeof(err)) != AUR_OK) {
        if (resp)
            http_resp_error(resp, 500, "GOOGLE_CHAT_MISCONFIGURED", "GOOGLE_CHAT_API_BASE_URL %s",
                            b ? err : "is not set");
        return NULL;
    }
    return b;
}

int gchat_space_name_ok(const char *s)
{
    if (!s || strncmp(s, "spaces/", 7) != 0)
        return 0;
    size_t n = strlen(s + 7);
    if (n == 0 || n > 100)
        return 0;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* The OAuth client as configured: 0, or -1 with the guide's 503. */
static int oauth_client(const worker_ctx *w, kit_oauth_client *c, http_response *resp)
{
    *c = (kit_oauth_client){ .provider = GCHAT_ID,
                             .authorize_url = server_setting(w->cfg, "GOOGLE_CHAT_AUTH_URL"),
                             .token_url = server_setting(w->cfg, "GOOGLE_CHAT_TOKEN_URL"),
                             .revoke_url = server_setting(w->cfg, "GOOGLE_CHAT_REVOKE_URL"),
                             .client_id = server_setting(w->cfg, "GOOGLE_CHAT_CLIENT_ID"),
                             .client_secret = server_setting(w->cfg, "GOOGLE_CHAT_CLIENT_SECRET"),
                             .redirect_uri = server_setting(w->cfg, "GOOGLE_CHAT_REDIRECT_URI"),
                             .scope = server_setting(w->cfg, "GOOGLE_CHAT_OAUTH_SCOPE"),
                             /* offline: a refresh token; consent: again on a reconnect */
                             .extra_params = "access_type=offline&prompt=consent",
                             .pkce = 1,
                             .basic_auth = 0,
                             .timeout_ms = gchat_timeout_ms(w),
                             .errors = &gchat_oauth_errors };
    if (c->client_id && c->client_secret && c->authorize_url && c->token_url && c->redirect_uri &&
        c->scope)
        return 0;
    if (resp)
        http_resp_error(resp, 503, "GOOGLE_CHAT_NOT_CONFIGURED",
                        MSG_GCHAT_NOT_CONFIGURED ": set GOOGLE_CHAT_CLIENT_ID and "
                        "GOOGLE_CHAT_CLIENT_SECRET in .env and restart Aurora");
    return -1;
}

/* ---- connection rows -------------------------------------------------------------------- */

static int is_space(const store_connector *row, const void *space)
{
    cJSON *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    const char *s = api_json_str(md, "space_name");
    int yes = s && !strcmp(s, space);
    cJSON_Delete(md);
    return yes;
}

int gchat_space_org(worker_ctx *w, const char *space, char org[STORE_ID_LEN],
                    char user[STORE_ID_LEN])
{
    if (!gchat_space_name_ok(space))
        return STORE_NOT_FOUND;
    return kit_first_row(w, GCHAT_ID, is_space, space, org, user);
}

static int has_space(const cJSON *md)
{
    return gchat_space_name_ok(api_json_str(md, "space_name"));
}

int gchat_org_connection(worker_ctx *w, const char *org, store_connector *row, cJSON **md)
{
    return kit_org_row(w, org, GCHAT_ID, has_space, row, md);
}

/* The user token's cache key: the connection's key_id (kit_cache.h), new at
 * every connect, so that a token of a grant replaced through another replica
 * (whose callback forgets only its own cache) is never found for the new
 * one.  Rows made before key_id: their updated_at.  0 or -1. */
static int user_token_key(char *key, size_t cap, const char *org, const char *user,
                          const cJSON *md, int64_t updated_at)
{
    return kit_cache_conn_key(key, cap, org, user, "access\n", md, updated_at);
}

static void cache_user_token(const char *key, const cJSON *tok)
{
    int64_t now = (int64_t)time(NULL), exp = 0;
    char *at = kit_oauth_access_token(tok, GCHAT_TOKEN_MAX, now, &exp);
    if (at)
        kit_cache_put(&g_user_tokens, key, at, exp, now);
    secret_free(at);
}

char *gchat_user_token(worker_ctx *w, store_connector *row, const cJSON *md, http_response *resp)
{
    char key[2 * STORE_ID_LEN + 80];
    int64_t now = (int64_t)time(NULL);
    if (user_token_key(key, sizeof(key), row->org_id, row->user_id, md, row->updated_at) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cache key too long");
        return NULL;
    }
    char *at = kit_cache_get(&g_user_tokens, key, now, NULL);
    if (at)
        return at;
    kit_oauth_client c;
    if (oauth_client(w, &c, resp) < 0)
        return NULL;
    cJSON *tok = kit_oauth_refresh(w, &c, row->secret_ref, NULL, "Google token refresh failed",
                                   "GOOGLE_CHAT_NOT_CONNECTED",
                                   "the Google refresh token is no longer stored; connect again",
                                   resp);
    if (!tok)
        return NULL;
    int64_t exp = 0;
    at = kit_oauth_access_token(tok, GCHAT_TOKEN_MAX, now, &exp);
    secret_json_free(tok);
    if (!at) {
        http_resp_error(resp, 502, "GOOGLE_CHAT_ERROR",
                        "Google answered the refresh without an access token");
        return NULL;
    }
    kit_cache_put(&g_user_tokens, key, at, exp, now);
    return at;
}

void gchat_forget_tokens(const char *org, const char *user)
{
    kit_cache_forget(&g_user_tokens, org, user);
}

/* ---- OAuth -------------------------------------------------------------------------------- */

#define CHAT_SCOPE_PREFIX "https://www.googleapis.com/auth/chat."

/* 1 when the grant lacks a Google Chat scope the flow asked for (asked: the
 * space-separated GOOGLE_CHAT_OAUTH_SCOPE), with their names in missing.
 * Google's consent screen lets the user untick scopes and still grants the
 * rest: without chat.spaces.create or chat.memberships.app the setup
 * failed later with a bare 502, and without chat.messages.create every
 * message sent as the user failed after the connection was stored. */
static int chat_scopes_missing(const char *asked, const cJSON *tok, char *missing, size_t cap)
{
    size_t used = 0;
    missing[0] = '\0';
    for (const char *p = asked ? asked : ""; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        char word[256];
        if (n > 0 && n < sizeof(word)) {
            memcpy(word, p, n);
            word[n] = '\0';
            if (!strncmp(word, CHAT_SCOPE_PREFIX, strlen(CHAT_SCOPE_PREFIX)) &&
                !kit_oauth_scope_granted(tok, word)) {
                int w = snprintf(missing + used, cap - used, "%s%s", used ? ", " : "", word);
                if (w > 0 && (size_t)w < cap - used)
                    used += (size_t)w;
            }
        }
        p += n;
    }
    return missing[0] != '\0';
}

static void login_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    kit_oauth_client c;
    if (oauth_client(w, &c, resp) < 0)
        return;
    char *url = kit_oauth_authorize_url(w, &req->auth, &c, NULL, resp);
    if (!url)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", GCHAT_ID);
    kit_oauth_send_url(resp, req->method == HTTP_POST ? 200 : 302, url, o);
    free(url);
}

/* The space this user set up before (a reconnect keeps it), into md. */
static void keep_previous_space(worker_ctx *w, const char *org, const char *user, cJSON *md)
{
    store_connector row;
    if (store_connector_get(w->store, org, user, GCHAT_ID, &row) != STORE_OK)
        return;
    cJSON *old = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    static const char *const keep[] = { "space_name", "space_display_name", "space_uri", NULL };
    if (gchat_space_name_ok(api_json_str(old, "space_name")))
        for (size_t i = 0; keep[i]; i++) {
            const char *v = api_json_str(old, keep[i]);
            if (v)
                cJSON_AddStringToObject(md, keep[i], v);
        }
    cJSON_Delete(old);
    store_connector_free(&row);
}

static void callback_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_oauth_client c;
    int configured = oauth_client(w, &c, NULL) == 0;
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "Google Chat authorization", c.redirect_uri, &cb,
                                resp) < 0)
        return;
    cJSON *tok = NULL, *md = NULL, *claims = NULL;
    char *at = NULL;
    int connected = 0;
    if (!configured) {
        (void)oauth_client(w, &c, resp);
        goto out;
    }
    if (connector_secrets_ready(w, resp) < 0 || !gchat_api_base(w, resp))
        goto out;
    oauth_state_info st = cb.st;
    tok = kit_oauth_exchange(w, &c, &cb, "Google Chat authorization could not be completed", resp);
    if (!tok)
        goto out;
    char missing[512];
    if (chat_scopes_missing(c.scope, tok, missing, sizeof(missing))) {
        log_warn("google_chat: OAuth grant for user %s (org %s) lacks scopes it asked for",
                 st.user_id, st.org_id);
        http_resp_error(resp, 400, "GOOGLE_CHAT_SCOPE_NOT_GRANTED",
                        "Google Chat access was not fully granted (missing: %s). Connect again "
                        "and, on Google's consent screen, allow every Google Chat permission",
                        missing);
        goto out;
    }
    int64_t exp = 0;
    at = kit_oauth_access_token(tok, GCHAT_TOKEN_MAX, (int64_t)time(NULL), &exp);
    const char *rt = api_json_str(tok, "refresh_token");
    if (!at || !rt || !*rt) {
        http_resp_error(resp, 502, "GOOGLE_CHAT_ERROR", "Google answered without %s",
                        at ? "a refresh token (access_type=offline)" : "an access token");
        goto out;
    }
    md = cJSON_CreateObject();
    /* The id_token came straight from Google's token endpoint over TLS: its
     * email names the account for display only. */
    claims = jwt_unverified_claims(api_json_str(tok, "id_token"));
    const char *email = api_json_str(claims, "email");
    char err[256];
    char account[256];
    if (email && api_check_text(email, "email", 3, 254, err, sizeof(err)) == 0) {
        cJSON_AddStringToObject(md, "email", email);
        snprintf(account, sizeof(account), "%s", email);
    } else {
        snprintf(account, sizeof(account), "Google Chat");
    }
    cJSON_AddStringToObject(md, "auth", "oauth");
    keep_previous_space(w, st.org_id, st.user_id, md);
    if (!api_json_str(md, "space_name")) {
        /* spaces.create's requestId makes a retried creation return the
         * same space: one per (org, user) setup. */
        char request_id[2 * STORE_ID_LEN + 16];
        snprintf(request_id, sizeof(request_id), "aurora-%s-%s", st.org_id, st.user_id);
        if (gchat_create_space(w, at, server_setting(w->cfg, "GOOGLE_CHAT_SPACE_DISPLAY_NAME"),
                               request_id, md, resp) < 0)
            goto out;
    }
    const char *space = api_json_str(md, "space_name");
    if (gchat_sa_configured(w)) {
        if (gchat_add_app(w, at, space, err, sizeof(err)) == 0) {
            cJSON_AddBoolToObject(md, "app_member", 1);
        } else {
            /* The connection still works for events; sending as the app
             * will fail until the app is in the space (status says so). */
            log_warn("google_chat: adding the Chat app to %s failed: %s", space, err);
            cJSON_AddBoolToObject(md, "app_member", 0);
            cJSON_AddStringToObject(md, "app_member_error", err);
        }
    }
    char key[2 * STORE_ID_LEN + 80];
    if (kit_cache_add_key_id(md) < 0 ||
        user_token_key(key, sizeof(key), st.org_id, st.user_id, md, 0) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cannot generate the connection's cache key");
        goto out;
    }
    cJSON *shown = cJSON_CreateObject();
    cJSON_AddStringToObject(shown, "provider", GCHAT_ID);
    cJSON_AddStringToObject(shown, "account", account);
    cJSON_AddStringToObject(shown, "space_name", space);
    if (api_json_str(md, "space_display_name"))
        cJSON_AddStringToObject(shown, "space_display_name", api_json_str(md, "space_display_name"));
    if (kit_oauth_finish(w, &cb, GCHAT_ID, GCHAT_FIELD_REFRESH, account, tok, md, shown, resp) < 0)
        goto out;
    connected = 1;
    gchat_forget_tokens(st.org_id, st.user_id);
    cache_user_token(key, tok);
    log_info("google_chat: user %s (org %s) connected Google Chat, space %s", st.user_id,
             st.org_id, space);
    gchat_events_adopt(w, space); /* events that arrived before the space was bound */
out:
    /* refused after Google issued tokens: not left valid there */
    if (!connected)
        kit_oauth_revoke_refused(w, &c, &cb.st, tok);
    kit_oauth_callback_wipe(&cb);
    secret_free(at);
    cJSON_Delete(claims);
    cJSON_Delete(md);
    secret_json_free(tok);
}

/* ---- status -------------------------------------------------------------------------------- */

/* base (trailing slashes dropped) + path into out; 0, or -1 when it does not fit. */
static int url_join(const char *base, const char *path, char *out, size_t cap)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    if (n == 0 || n + strlen(path) >= cap)
        return -1;
    snprintf(out, cap, "%.*s%s", (int)n, base, path);
    return 0;
}

int gchat_event_audiences(const worker_ctx *w, char out[2][GCHAT_AUD_MAX])
{
    const char *a = server_setting(w->cfg, "GOOGLE_CHAT_AUDIENCE");
    if (a && *a) {
        if (strlen(a) >= GCHAT_AUD_MAX)
            return 0;
        snprintf(out[0], GCHAT_AUD_MAX, "%s", a);
        return 1;
    }
    int n = 0;
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (pub && url_join(pub, GCHAT_EVENTS_PATH, out[n], GCHAT_AUD_MAX) == 0)
        n++;
    /* FRONTEND_URL has a default (http://localhost:3000): only an https URL
     * is one Chat can post to. */
    const char *fe = server_setting(w->cfg, "FRONTEND_URL");
    if (fe && !strncasecmp(fe, "https://", 8) &&
        url_join(fe, GCHAT_EVENTS_PATH, out[n], GCHAT_AUD_MAX) == 0 &&
        (n == 0 || strcmp(out[0], out[1])))
        n++;
    return n;
}

static void gchat_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "auth", "email", "space_name", "space_display_name",
                                        "space_uri", "app_member_error", NULL };
    kit_oauth_client c;
    cJSON_AddBoolToObject(out, "oauth_configured", oauth_client(w, &c, NULL) == 0);
    const char *redirect = server_setting(w->cfg, "GOOGLE_CHAT_REDIRECT_URI");
    if (redirect)
        cJSON_AddStringToObject(out, "redirect_uri", redirect);
    /* With GOOGLE_CHAT_AUDIENCE set, the URL is still the public one. */
    const char *aud = server_setting(w->cfg, "GOOGLE_CHAT_AUDIENCE");
    char urls[2][GCHAT_AUD_MAX];
    int n = gchat_event_audiences(w, urls);
    char url[GCHAT_AUD_MAX] = "";
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (aud && *aud) {
        if (pub)
            url_join(pub, GCHAT_EVENTS_PATH, url, sizeof(url));
    } else if (n > 0) {
        snprintf(url, sizeof(url), "%s", urls[0]);
    }
    if (url[0])
        cJSON_AddStringToObject(out, "events_url", url);
    if (n > 0)
        cJSON_AddStringToObject(out, "authentication_audience", urls[0]);
    int sa = gchat_sa_configured(w);
    cJSON_AddStringToObject(out, "identity", sa ? "app" : "user");
    if (!sa) {
        cJSON_AddStringToObject(out, "warning", MSG_GCHAT_AS_USER);
        cJSON_AddStringToObject(out, "hint", MSG_GCHAT_SET_SA);
    }
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, GCHAT_ID, keys, out, &row, &md))
        return;
    const cJSON *member = cJSON_GetObjectItemCaseSensitive(md, "app_member");
    if (cJSON_IsBool(member))
        cJSON_AddBoolToObject(out, "app_member", cJSON_IsTrue(member));
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    gchat_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    cJSON_AddStringToObject(o, "provider", GCHAT_ID);
    http_resp_json(resp, 200, o);
}

/* ---- disconnect ------------------------------------------------------------------------------ */

static void gchat_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row)
{
    (void)who;
    kit_oauth_client c;
    if (!row->secret_ref[0] || oauth_client(w, &c, NULL) < 0 || !c.revoke_url)
        return;
    unsigned char *rt = NULL;
    size_t len = 0;
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (kit_secret_get(w, row->secret_ref, &rt, &len, 404, "GONE", "gone", &scratch) == 0) {
        char *tok = strndup((const char *)rt, len);
        secrets_free(rt, len);
        if (tok && kit_oauth_revoke(&c, tok, "refresh_token") == 0)
            log_info("google_chat: OAuth grant of %s revoked at Google", row->account);
        else
            log_warn("google_chat: revoking the OAuth grant of %s failed; the token is deleted "
                     "here anyway", row->account);
        secret_free(tok);
    }
    buf_free(&scratch.body);
}

static void gchat_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    gchat_forget_tokens(who->org_id, who->user_id);
}

/* ---- table ----------------------------------------------------------------------------------- */

static void gchat_register(void)
{
    router_add_outbound(HTTP_GET, "/google-chat/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_POST, "/google-chat/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_GET, "/google-chat/callback", ROUTE_PUBLIC, callback_route);
    router_add(HTTP_GET, "/google-chat/status", ROUTE_AUTH_API, status_route);
    gchat_events_register();
    gchat_chat_register();
}

const connector connector_google_chat = {
    .id = GCHAT_ID,
    .name = "Google Chat",
    .register_routes = gchat_register,
    .status = gchat_status,
    .cloud = NULL,
    .disconnected = gchat_disconnected,
    .disconnecting = gchat_disconnecting,
    .settings = gchat_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
    .check_settings = gchat_check_settings,
    .redirect_setting = "GOOGLE_CHAT_REDIRECT_URI",
};
