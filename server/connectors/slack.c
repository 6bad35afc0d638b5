/* slack.c — Slack (connector guide: Slack): OAuth 2.0 (v2, bot token) for a
 * workspace, the channel incidents are posted to, status, disconnect.
 *
 *   GET|POST /slack/login     authorization URL (302, or JSON for POST) with the
 *                             bot scopes of the guide; 503 "Slack OAuth credentials
 *                             not configured" without SLACK_CLIENT_ID/_SECRET
 *   GET  /slack/callback      the browser comes back from Slack: state consumed, the
 *                             code exchanged at oauth.v2.access (Slack answers HTTP
 *                             200 {"ok": false, "error": "bad_redirect_uri"} for its
 *                             refusals: passed on with the guide's fix), the bot
 *                             token stored (aurora/orgs/<org>/users/<user>/slack/
 *                             bot-token), the workspace (team) kept in the row
 *   GET  /slack/status        the connection, the channel, the Events URL to paste
 * Disconnect: DELETE /api/connectors/slack (auth.revoke first, best effort, unless
 *                             the workspace is still connected by another row).
 * Channels and chat notifications: slack_api.c; the Events API: slack_events.c.
 *
 * Slack's documents: "Installing with OAuth" (oauth/v2/authorize,
 * oauth.v2.access), the auth.revoke method.  Every endpoint is a setting. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secret.h"
#include "secrets.h"
#include "slack.h"

#define MSG_NOT_CONFIGURED "Slack OAuth credentials not configured"
#define SLACK_SCOPES "chat:write,channels:read,channels:history,channels:join,app_mentions:read,users:read"

extern const connector connector_slack;

static const config_def slack_settings[] = {
    { "SLACK_CLIENT_ID", "slack.client_id", CFG_STRING, NULL,
      "Slack connector: the app's Client ID (Basic Information)", 0 },
    { "SLACK_CLIENT_SECRET", NULL, CFG_STRING, NULL,
      "Slack connector: the app's Client Secret (Basic Information)", 1 },
    { "SLACK_SIGNING_SECRET", NULL, CFG_STRING, NULL,
      "Slack connector: the app's Signing Secret: every Events API request must be signed "
      "with it", 1 },
    { "SLACK_REDIRECT_URI", "slack.redirect_uri", CFG_STRING,
      "http://localhost:5080/slack/callback",
      "Slack connector: the Redirect URL registered under OAuth & Permissions", 0 },
    { "SLACK_AUTHORIZE_URL", "slack.authorize_url", CFG_STRING,
      "https://slack.com/oauth/v2/authorize", "Slack connector: OAuth v2 authorization page", 0 },
    { "SLACK_TOKEN_URL", "slack.token_url", CFG_STRING, "https://slack.com/api/oauth.v2.access",
      "Slack connector: OAuth v2 token method (oauth.v2.access)", 0 },
    { "SLACK_API_BASE_URL", "slack.api_base_url", CFG_STRING, "https://slack.com/api",
      "Slack connector: Web API base URL", 0 },
    { NULL },
};

static const kit_oauth_errors slack_oauth_errors = {
    .service = "Slack",
    .timeout = "SLACK_TIMEOUT",
    .unreachable = "SLACK_UNREACHABLE",
    .grant = "SLACK_GRANT_INVALID",
    .denied = "SLACK_OAUTH_CLIENT_INVALID",
    .failed = "SLACK_ERROR",
    .denied_hint = "check SLACK_CLIENT_ID / SLACK_CLIENT_SECRET",
    .authorization_failed = "SLACK_AUTHORIZATION_FAILED",
    .redirect_mismatch = "SLACK_REDIRECT_MISMATCH",
};

const kit_call_errors slack_api_errors = {
    .service = "Slack API",
    .timeout = "SLACK_TIMEOUT",
    .unreachable = "SLACK_UNREACHABLE",
    .denied = "SLACK_DENIED",
    .failed = "SLACK_ERROR",
};

long slack_timeout_ms(const worker_ctx *w) { return connector_timeout_ms(w, &connector_slack); }

const char *slack_api_base(const worker_ctx *w, http_response *resp)
{
    const char *b = server_setting(w->cfg, "SLACK_API_BASE_URL");
    char err[160];
    if (!b || kit_base_url_check(b, 0, err, sizeof(err)) != AUR_OK) {
        if (resp)
            http_resp_error(resp, 500, "SLACK_MISCONFIGURED", "SLACK_API_BASE_URL %s",
                            b ? err : "is not set");
        return NULL;
    }
    return b;
}

int slack_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 2 || n > SLACK_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* The OAuth client as configured; 0, or -1 with a 503 in resp. */
static int oauth_client(const worker_ctx *w, kit_oauth_client *c, http_response *resp)
{
    *c = (kit_oauth_client){ .provider = SLACK_ID,
                             .authorize_url = server_setting(w->cfg, "SLACK_AUTHORIZE_URL"),
                             .token_url = server_setting(w->cfg, "SLACK_TOKEN_URL"),
                             .client_id = server_setting(w->cfg, "SLACK_CLIENT_ID"),
                             .client_secret = server_setting(w->cfg, "SLACK_CLIENT_SECRET"),
                             .redirect_uri = server_setting(w->cfg, "SLACK_REDIRECT_URI"),
                             .scope = SLACK_SCOPES,
                             .timeout_ms = slack_timeout_ms(w),
                             .errors = &slack_oauth_errors };
    if (c->client_id && c->client_secret && c->authorize_url && c->token_url && c->redirect_uri)
        return 0;
    if (resp)
        http_resp_error(resp, 503, "SLACK_OAUTH_NOT_CONFIGURED",
                        MSG_NOT_CONFIGURED ": set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET in .env "
                                           "and restart Aurora");
    return -1;
}

/* ---- connection rows ------------------------------------------------------------------ */

static int is_team(const store_connector *row, const void *team_id)
{
    return !strcmp(row->account, team_id);
}

int slack_team_org(worker_ctx *w, const char *team_id, char org[STORE_ID_LEN])
{
    if (!slack_id_ok(team_id))
        return STORE_NOT_FOUND;
    /* Oldest first: a workspace connected in two organizations belongs to
     * the first (installing the app needs the workspace's consent both times). */
    return kit_first_row(w, SLACK_ID, is_team, team_id, org, NULL);
}

static int has_channel(const cJSON *md)
{
    return slack_id_ok(api_json_str(md, "channel_id"));
}

int slack_org_connection(worker_ctx *w, const char *org, store_connector *row, cJSON **md)
{
    return kit_org_row(w, org, SLACK_ID, has_channel, row, md);
}

char *slack_bot_token(worker_ctx *w, const store_connector *row, http_response *resp)
{
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    unsigned char *v = NULL;
    size_t len = 0;
    int rc = kit_secret_get(w, row->secret_ref, &v, &len, 404, "MISSING_CONNECTOR",
                            "Slack's bot token is missing: connect Slack again",
                            resp ? resp : &scratch);
    buf_free(&scratch.body);
    if (rc < 0)
        return NULL;
    char *t = strndup((const char *)v, len);
    secrets_free(v, len);
    return t;
}

/* ---- OAuth ------------------------------------------------------------------------------ */

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
    cJSON_AddStringToObject(o, "provider", SLACK_ID);
    kit_oauth_send_url(resp, req->method == HTTP_POST ? 200 : 302, url, o);
    free(url);
}

/* Slack's refusal of the code exchange ({"ok": false, "error": e}), with the
 * guide's fix where it names one. */
static void slack_oauth_refused(const char *e, http_response *resp)
{
    if (!strcmp(e, "bad_redirect_uri"))
        http_resp_error(resp, 400, "SLACK_REDIRECT_MISMATCH",
                        "Slack refused the authorization: bad_redirect_uri — Redirect URL must "
                        "match exactly in Slack App settings (OAuth & Permissions > Redirect "
                        "URLs must contain SLACK_REDIRECT_URI)");
    else if (!strcmp(e, "invalid_client_id") || !strcmp(e, "bad_client_secret"))
        http_resp_error(resp, 400, "SLACK_OAUTH_CLIENT_INVALID",
                        "Slack refused the authorization: %s — check SLACK_CLIENT_ID and "
                        "SLACK_CLIENT_SECRET", e);
    else if (!strcmp(e, "invalid_code") || !strcmp(e, "code_already_used") ||
             !strcmp(e, "code_expired"))
        http_resp_error(resp, 400, "SLACK_GRANT_INVALID",
                        "Slack refused the authorization: %s — start the connection again", e);
    else
        http_resp_error(resp, 502, "SLACK_ERROR", "Slack refused the authorization: %s", e);
}

/* A Slack error code as received: short and printable, else "unknown". */
static const char *slack_error_word(const char *e)
{
    if (!e || !*e || strlen(e) > 60)
        return "unknown";
    for (const char *p = e; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return "unknown";
    return e;
}

static void callback_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_oauth_client c;
    int configured = oauth_client(w, &c, NULL) == 0;
    kit_oauth_callback cb;
    if (kit_oauth_callback_take(w, req, &c, "Slack authorization", c.redirect_uri, &cb, resp) < 0)
        return;
    cJSON *tok = NULL, *md = NULL;
    if (!configured) {
        (void)oauth_client(w, &c, resp);
        goto out;
    }
    if (connector_secrets_ready(w, resp) < 0)
        goto out;
    oauth_state_info st = cb.st;
    tok = kit_oauth_exchange(w, &c, &cb, "Slack authorization could not be completed", resp);
    if (!tok)
        goto out;
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tok, "ok"))) {
        slack_oauth_refused(slack_error_word(api_json_str(tok, "error")), resp);
        goto out;
    }
    const char *at = api_json_str(tok, "access_token");
    const cJSON *team = cJSON_GetObjectItemCaseSensitive(tok, "team");
    const char *team_id = api_json_str(team, "id"), *team_name = api_json_str(team, "name");
    const char *bot = api_json_str(tok, "bot_user_id"), *app = api_json_str(tok, "app_id");
    const char *scope = api_json_str(tok, "scope");
    if (!at || strncmp(at, "xoxb-", 5) || strlen(at) > SLACK_TOKEN_MAX || !slack_id_ok(team_id)) {
        http_resp_error(resp, 502, "SLACK_ERROR",
                        "Slack answered without a bot token (xoxb-) and a workspace: is the app "
                        "given Bot Token Scopes?");
        goto out;
    }
    md = cJSON_CreateObject();
    char err[64];
    cJSON_AddStringToObject(md, "auth", "oauth");
    cJSON_AddStringToObject(md, "team_id", team_id);
    if (team_name && api_check_text(team_name, "team", 1, 255, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "team_name", team_name);
    if (slack_id_ok(bot))
        cJSON_AddStringToObject(md, "bot_user_id", bot);
    if (slack_id_ok(app))
        cJSON_AddStringToObject(md, "app_id", app);
    if (scope && api_check_text(scope, "scope", 1, 512, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "scope", scope);
    /* Reconnecting keeps the incidents channel chosen before (same workspace). */
    store_connector prev;
    if (store_connector_get(w->store, st.org_id, st.user_id, SLACK_ID, &prev) == STORE_OK) {
        cJSON *pm = cJSON_Parse(prev.metadata_json ? prev.metadata_json : "{}");
        const char *ch = api_json_str(pm, "channel_id"), *chn = api_json_str(pm, "channel_name");
        if (!strcmp(prev.account, team_id) && slack_id_ok(ch)) {
            cJSON_AddStringToObject(md, "channel_id", ch);
            if (chn)
                cJSON_AddStringToObject(md, "channel_name", chn);
        }
        cJSON_Delete(pm);
        store_connector_free(&prev);
    }
    kit_field f = { SLACK_FIELD_TOKEN, at };
    if (kit_connect_store(w, st.org_id, st.user_id, SLACK_ID, team_id, &f, 1, md, resp) < 0)
        goto out;
    log_info("slack: user %s (org %s) connected Slack workspace %s", st.user_id, st.org_id,
             team_id);
    slack_events_adopt(w, team_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", SLACK_ID);
    cJSON_AddStringToObject(o, "team_id", team_id);
    if (team_name)
        cJSON_AddStringToObject(o, "team_name", api_json_str(md, "team_name") ? team_name : "");
    kit_oauth_connected(w, resp, SLACK_ID, o);
out:
    kit_oauth_callback_wipe(&cb);
    cJSON_Delete(md);
    secret_json_free(tok);
}

/* ---- status ------------------------------------------------------------------------------ */

static void slack_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "team_id", "team_name", "bot_user_id", "app_id", "scope",
                                        "channel_id", "channel_name", NULL };
    kit_oauth_client c;
    cJSON_AddBoolToObject(out, "oauth_configured", oauth_client(w, &c, NULL) == 0);
    cJSON_AddBoolToObject(out, "signing_secret_configured",
                          server_setting(w->cfg, "SLACK_SIGNING_SECRET") != NULL);
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, SLACK_ID, keys, out, &row, &md))
        return;
    cJSON_AddBoolToObject(out, "channel_chosen", slack_id_ok(api_json_str(md, "channel_id")));
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    slack_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    cJSON_AddStringToObject(o, "provider", SLACK_ID);
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (pub) {
        size_t n = strlen(pub);
        while (n > 0 && pub[n - 1] == '/')
            n--;
        char url[600];
        snprintf(url, sizeof(url), "%.*s/slack/events", (int)n, pub);
        cJSON_AddStringToObject(o, "events_url", url);
    }
    cJSON_AddStringToObject(o, "events_path", "/slack/events");
    cJSON_AddStringToObject(o, "redirect_uri",
                            server_setting(w->cfg, "SLACK_REDIRECT_URI")
                                ? server_setting(w->cfg, "SLACK_REDIRECT_URI")
                                : "");
    http_resp_json(resp, 200, o);
}

/* ---- disconnect -------------------------------------------------------------------------- */

struct other_install {
    const char *team, *org, *user;
};

static int is_other_install(const store_connector *row, const void *arg)
{
    const struct other_install *o = arg;
    return !strcmp(row->account, o->team) &&
           (strcmp(row->org_id, o->org) || strcmp(row->user_id, o->user));
}

static void slack_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row)
{
    (void)who;
    /* Slack has one bot user, and one bot token, per app and workspace:
     * another organization (or user) that installed the app in the same
     * workspace holds it too, and auth.revoke deactivates that bot user.
     * The last connection of the workspace revokes; the others only forget. */
    struct other_install o = { row->account, row->org_id, row->user_id };
    char org[STORE_ID_LEN];
    int rc = kit_first_row(w, SLACK_ID, is_other_install, &o, org, NULL);
    if (rc != STORE_NOT_FOUND) {
        if (rc == STORE_OK)
            log_info("slack: workspace %s is still connected elsewhere: its bot token is not "
                     "revoked, only deleted here", row->account);
        else
            log_warn("slack: could not tell whether workspace %s is connected elsewhere: its "
                     "bot token is not revoked, only deleted here", row->account);
        return;
    }
    char *token = row->secret_ref[0] ? slack_bot_token(w, row, NULL) : NULL;
    if (!token)
        return;
    kit_call_resp r;
    cJSON *ans = NULL;
    char serr[64];
    if (slack_call(w, token, "auth.revoke", NULL, NULL, 1, &r, &ans, serr) == AUR_OK)
        log_info("slack: bot token of workspace %s revoked at Slack", row->account);
    else
        log_warn("slack: revoking the bot token of workspace %s failed (%s); it is deleted here "
                 "anyway", row->account, serr[0] ? serr : r.err);
    kit_call_resp_free(&r);
    cJSON_Delete(ans);
    secret_free(token);
}

/* ---- table ------------------------------------------------------------------------------- */

static void slack_register(void)
{
    router_add_outbound(HTTP_GET, "/slack/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_POST, "/slack/login", ROUTE_AUTH_API, login_route);
    router_add_outbound(HTTP_GET, "/slack/callback", ROUTE_PUBLIC, callback_route);
    router_add(HTTP_GET, "/slack/status", ROUTE_AUTH_API, status_route);
    slack_api_register();
    slack_events_register();
}

const connector connector_slack = {
    .id = SLACK_ID,
    .name = "Slack",
    .register_routes = slack_register,
    .status = slack_status,
    .disconnecting = slack_disconnecting,
    .settings = slack_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
    .redirect_setting = "SLACK_REDIRECT_URI",
};
