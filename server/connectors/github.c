/* github.c — the GitHub connector (connector guide: Communication Tools >
 * GitHub), App path.  Credentials, JWT and installation tokens are in
 * github_app.c; this file has the routes and the status.
 *
 * GITHUB_AUTH_MODE = app (default) | oauth | hybrid picks the connect actions
 * offered.  Every GitHub URL is built from GH_API_BASE_URL (calls) or
 * GH_BASE_URL (what users are shown), so GitHub Enterprise Server works
 * (https://<host>/api/v3 and https://<host>).
 *
 * Routes:
 *   GET /github/status                    which connect actions to offer, with the App
 *                                         install URL (state bound to the caller)
 *   GET /github/app/install               302 to that install URL
 *   GET /github/app/install/callback      GitHub's post-install redirect (the App's Setup
 *                                         URL): state checked, the installation fetched
 *                                         with the App JWT and stored for the state's org
 *   GET /api/github/installations         the caller org's installations
 *   GET /api/github/installations/{installation_id}/repositories
 *                                         repositories through the installation token
 * Webhooks (POST /github/webhook) and their events API are in
 * github_webhook.c.  Status: GET /api/connectors/status ("github").  The OAuth fallback
 * (/github/login, /github/callback, the repository poller and its
 * /api/github/repos|pulls|workflow-runs) is in github_oauth.c and
 * github_poll.c; this file registers it and merges its status. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "github_app.h"
#include "github_installer.h"
#include "github_oauth.h" /* OAuth fallback and poller: github_oauth.c, github_poll.c */
#include "http_client.h"
#include "kit_call.h"
#include "log.h"
#include "oauth.h"
#include "router.h"
#include "secret.h"

#define GH_ID "github"
#define STATE_PROVIDER "github-app" /* oauth_state provider of an App install */
#define MSG_STATE_MISSING "GitHub App install URL is missing the required state parameter"
#define MSG_OAUTH_UNCONFIGURED "Failed to initiate GitHub OAuth"
#define MAX_PERMISSIONS 64
#define MAX_EVENTS 128
#define MAX_NAME 64
#define DEFAULT_REPO_PAGES 10
#define INSTALLATION_REPOS_MAX 1000 /* repositories shown per installation */

typedef enum { MODE_APP, MODE_OAUTH, MODE_HYBRID, MODE_INVALID } auth_mode;

static auth_mode mode_of(const worker_ctx *w)
{
    const char *m = server_setting(w->cfg, "GITHUB_AUTH_MODE");
    if (!m || !strcasecmp(m, "app"))
        return MODE_APP;
    if (!strcasecmp(m, "oauth"))
        return MODE_OAUTH;
    if (!strcasecmp(m, "hybrid"))
        return MODE_HYBRID;
    return MODE_INVALID;
}

static const char *mode_name(auth_mode m)
{
    static const char *const names[] = { "app", "oauth", "hybrid", "invalid" };
    return names[m];
}

static int mode_invalid(const worker_ctx *w, http_response *resp)
{
    if (mode_of(w) != MODE_INVALID)
        return 0;
    http_resp_error(resp, 500, "GITHUB_AUTH_MODE_INVALID",
                    "GITHUB_AUTH_MODE must be app, oauth or hybrid");
    return 1;
}

/* ---- App configuration ------------------------------------------------------------------------ */

static int slug_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 100)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

/* What stops the App path, "" when nothing; key_io: re-read the key (may
 * block: outbound pool), else its last known state. */
static void app_problem(worker_ctx *w, int key_io, char *out, size_t cap)
{
    out[0] = '\0';
    char web[512], api[512];
    github_web_base(w->cfg, web, sizeof(web));
    github_api_base(w->cfg, api, sizeof(api));
    github_cred_state k = key_io ? github_app_key_refresh(w, 0) : github_app_key_state();
    char why[256];
    if (kit_base_url_check(web, 0, why, sizeof(why)) < 0 ||
        kit_base_url_check(api, 0, why, sizeof(why)) < 0)
        snprintf(out, cap, "GH_BASE_URL / GH_API_BASE_URL: %s", why);
    else if (!github_app_issuer(w->cfg))
        snprintf(out, cap, "GITHUB_APP_ID / GITHUB_APP_CLIENT_ID are not set");
    else if (!slug_ok(server_setting(w->cfg, "NEXT_PUBLIC_GITHUB_APP_SLUG")))
        snprintf(out, cap, "NEXT_PUBLIC_GITHUB_APP_SLUG is not set (or not a URL slug)");
    else if (k == GITHUB_CRED_INVALID)
        snprintf(out, cap, "Could not deserialize key data: the private key at %s is not a "
                           "loadable RSA PEM (stored without its newlines?)",
                 SECRETS_PATH_GITHUB_APP_PRIVATE_KEY);
    else if (k == GITHUB_CRED_MISSING)
        snprintf(out, cap, "no GitHub App private key at %s", SECRETS_PATH_GITHUB_APP_PRIVATE_KEY);
    else if (k == GITHUB_CRED_UNAVAILABLE)
        snprintf(out, cap, "the secrets backend holding the GitHub App private key is unavailable");
}

static int oauth_configured(const worker_ctx *w)
{
    return server_setting(w->cfg, "GH_OAUTH_CLIENT_ID") &&
           server_setting(w->cfg, "GH_OAUTH_CLIENT_SECRET");
}

/* {GH_BASE_URL}/apps/<slug>/installations/new?state=… for `who`; 0, or -1
 * with resp filled. */
static int install_url(worker_ctx *w, const auth_ctx *who, char *out, size_t cap,
                       http_response *resp)
{
    char state[64], web[512];
    const char *setup = server_setting(w->cfg, "GITHUB_APP_SETUP_URL");
    if (oauth_state_new(w, who, STATE_PROVIDER, setup, NULL, state, resp) < 0)
        return -1;
    github_web_base(w->cfg, web, sizeof(web));
    int n = snprintf(out, cap, "%s/apps/%s/installations/new?state=%s", web,
                     server_setting(w->cfg, "NEXT_PUBLIC_GITHUB_APP_SLUG"), state);
    if (n < 0 || (size_t)n >= cap) {
        http_resp_error(resp, 500, "INTERNAL", "install URL too long (GH_BASE_URL)");
        return -1;
    }
    return 0;
}

/* ---- GET /github/status ------------------------------------------------------------------------ */

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || mode_invalid(w, resp))
        return;
    auth_mode m = mode_of(w);
    int want_app = m != MODE_OAUTH, want_oauth = m != MODE_APP;
    char problem[320], web[512], api[512], url[1024];
    app_problem(w, 1, problem, sizeof(problem));
    github_web_base(w->cfg, web, sizeof(web));
    github_api_base(w->cfg, api, sizeof(api));

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", GH_ID);
    cJSON_AddStringToObject(o, "auth_mode", mode_name(m));
    cJSON_AddStringToObject(o, "github_url", web);
    cJSON_AddStringToObject(o, "api_url", api);
    cJSON *actions = cJSON_AddArrayToObject(o, "actions");
    if (want_app) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "action", "app_install");
        cJSON_AddStringToObject(a, "label", "Install GitHub App");
        cJSON_AddBoolToObject(a, "recommended", 1);
        cJSON_AddBoolToObject(a, "available", !problem[0]);
        if (problem[0]) {
            cJSON_AddStringToObject(a, "error", problem);
        } else if (req->auth.session) {
            /* The console reads this on every view of its GitHub page: a
             * state (and, for a session, a browser-binding cookie) per view
             * would pile up.  Its button goes to the route that makes one. */
            cJSON_AddStringToObject(a, "install_url", "/github/app/install");
        } else {
            if (install_url(w, &req->auth, url, sizeof(url), resp) < 0) {
                cJSON_Delete(a);
                cJSON_Delete(o);
                return;
            }
            cJSON_AddStringToObject(a, "install_url", url);
        }
        cJSON_AddItemToArray(actions, a);
    }
    if (want_oauth) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "action", "oauth");
        cJSON_AddStringToObject(a, "label", "Connect via OAuth");
        cJSON_AddBoolToObject(a, "recommended", m == MODE_OAUTH);
        cJSON_AddBoolToObject(a, "available", oauth_configured(w));
        if (!oauth_configured(w))
            cJSON_AddStringToObject(a, "error", MSG_OAUTH_UNCONFIGURED
                                    ": GH_OAUTH_CLIENT_ID / GH_OAUTH_CLIENT_SECRET are empty "
                                    "(GITHUB_AUTH_MODE=oauth or hybrid); set them and restart");
        cJSON_AddItemToArray(actions, a);
    }
    cJSON *app = cJSON_AddObjectToObject(o, "app");
    cJSON_AddBoolToObject(app, "enabled", want_app);
    cJSON_AddBoolToObject(app, "configured", !problem[0]);
    cJSON_AddStringToObject(app, "private_key", github_cred_state_name(github_app_key_state()));
    if (problem[0])
        cJSON_AddStringToObject(app, "error", problem);
    const char *hook_url = server_setting(w->cfg, "GITHUB_APP_WEBHOOK_URL");
    const char *setup_url = server_setting(w->cfg, "GITHUB_APP_SETUP_URL");
    /* For comparing with the App's settings page (Setup URL, Webhook URL). */
    if (setup_url)
        cJSON_AddStringToObject(app, "setup_url", setup_url);
    if (hook_url)
        cJSON_AddStringToObject(app, "webhook_url", hook_url);
    if (want_app) {
        /* Webhooks need it; the status says whether it can be read. */
        unsigned char *hook = NULL;
        size_t hlen = 0;
        github_cred_state hs = github_app_webhook_secret(w, &hook, &hlen);
        if (hook)
            secret_free_n(hook, hlen);
        cJSON_AddStringToObject(app, "webhook_secret", github_cred_state_name(hs));
        cJSON_AddStringToObject(app, "webhook_secret_source",
                                server_setting(w->cfg, "GITHUB_APP_WEBHOOK_SECRET")
                                    ? "GITHUB_APP_WEBHOOK_SECRET"
                                    : SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET);
        /* Every secret that verifies deliveries: both the setting and the
         * backend's do when both are set, so naming one would hide a stale
         * copy that still verifies.  Names only, never a value. */
        int differ = 0;
        unsigned srcs = github_webhook_secret_sources(w, &differ);
        cJSON *names = cJSON_AddArrayToObject(app, "webhook_secret_sources");
        if (srcs & GITHUB_HOOK_SRC_SETTING)
            cJSON_AddItemToArray(names, cJSON_CreateString("GITHUB_APP_WEBHOOK_SECRET"));
        if (srcs & GITHUB_HOOK_SRC_BACKEND)
            cJSON_AddItemToArray(names, cJSON_CreateString(SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET));
        if (srcs & GITHUB_HOOK_SRC_PREVIOUS)
            cJSON_AddItemToArray(names, cJSON_CreateString("GITHUB_APP_WEBHOOK_SECRET_PREVIOUS"));
        cJSON_AddBoolToObject(app, "webhook_secrets_differ", differ);
        /* Whether an installation is checked on GitHub before it is bound. */
        unsigned char *cs = NULL;
        size_t clen = 0;
        github_cred_state ss = github_app_client_secret(w, &cs, &clen);
        if (cs)
            secret_free_n(cs, clen);
        cJSON_AddStringToObject(app, "installer_check",
                                ss == GITHUB_CRED_OK && clen > 0
                                    ? (github_installer_offered(w) ? "on" : "misconfigured")
                                : ss == GITHUB_CRED_OK || ss == GITHUB_CRED_MISSING ? "off"
                                                                                    : "unavailable");
        cJSON_AddStringToObject(app, "client_secret_source",
                                server_setting(w->cfg, "GITHUB_APP_CLIENT_SECRET")
                                    ? "GITHUB_APP_CLIENT_SECRET"
                                    : SECRETS_PATH_GITHUB_APP_CLIENT_SECRET);
    }
    cJSON *oa = cJSON_AddObjectToObject(o, "oauth");
    cJSON_AddBoolToObject(oa, "enabled", want_oauth);
    cJSON_AddBoolToObject(oa, "configured", oauth_configured(w));
    http_resp_json(resp, 200, o);
    http_resp_add_header(resp, "cache-control", "no-store");
}

/* ---- GET /github/app/install ---------------------------------------------------------------------- */

static void install_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || mode_invalid(w, resp))
        return;
    if (mode_of(w) == MODE_OAUTH) {
        http_resp_error(resp, 404, "GITHUB_APP_DISABLED",
                        "the GitHub App is not offered (GITHUB_AUTH_MODE=oauth)");
        return;
    }
    char problem[320], url[1024];
    app_problem(w, 1, problem, sizeof(problem));
    if (problem[0]) {
        http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED", "GitHub App is not configured: %s",
                        problem);
        return;
    }
    if (install_url(w, &req->auth, url, sizeof(url), resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "install_url", url);
    http_resp_json(resp, 302, o);
    http_resp_add_header(resp, "location", url);
    http_resp_add_header(resp, "cache-control", "no-store");
}

/* ---- the installation as GitHub describes it ------------------------------------------------------ */

int github_name_ok(const char *s, size_t max, const char *extra)
{
    if (!s || !*s || strlen(s) > max)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s)))
            return 0;
    return 1;
}

int github_full_name_ok(const char *full)
{
    const char *slash = full ? strchr(full, '/') : NULL;
    if (!slash || slash == full || (size_t)(slash - full) > 100 ||
        !github_name_ok(slash + 1, 100, "-_."))
        return 0;
    char owner[128];
    snprintf(owner, sizeof(owner), "%.*s", (int)(slash - full), full);
    return github_name_ok(owner, 100, "-_.");
}

/* GitHub's installation object -> g (permissions and events rebuilt from
 * checked parts, never stored as received).  0, or -1 with what is wrong. */
int github_installation_from_json(const cJSON *j, int64_t id, store_github_installation *g,
                                  char *why, size_t cap)
{
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *acct = cJSON_GetObjectItemCaseSensitive(j, "account");
    const char *login = acct ? api_json_str(acct, "login") : NULL;
    const char *type = acct ? api_json_str(acct, "type") : NULL;
    const char *sel = api_json_str(j, "repository_selection");
    const cJSON *perms = cJSON_GetObjectItemCaseSensitive(j, "permissions");
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(j, "events");
    const cJSON *susp = cJSON_GetObjectItemCaseSensitive(j, "suspended_at");
    int64_t got_id;
    if (!api_json_int64(jid, &got_id) || got_id != id) {
        snprintf(why, cap, "its id is not the one asked for");
        return -1;
    }
    if (!github_name_ok(login, 100, "-_.") || !github_name_ok(type, 31, "")) {
        snprintf(why, cap, "its account has no valid login or type");
        return -1;
    }
    if (sel && strcmp(sel, "all") && strcmp(sel, "selected")) {
        snprintf(why, cap, "unknown repository_selection");
        return -1;
    }
    snprintf(g->account_login, sizeof(g->account_login), "%s", login);
    snprintf(g->account_type, sizeof(g->account_type), "%s", type);
    snprintf(g->repository_selection, sizeof(g->repository_selection), "%s", sel ? sel : "");
    g->suspended_at = 0;
    if (cJSON_IsString(susp) && (g->suspended_at = github_parse_time(susp->valuestring)) <= 0) {
        snprintf(why, cap, "unreadable suspended_at");
        return -1;
    }
    cJSON *p = cJSON_CreateObject(), *e = cJSON_CreateArray();
    int n = 0, bad = !p || !e;
    const cJSON *it;
    const cJSON *perm_list = cJSON_IsObject(perms) ? perms : NULL;
    const cJSON *event_list = cJSON_IsArray(events) ? events : NULL;
    cJSON_ArrayForEach(it, perm_list)
    {
        if (++n > MAX_PERMISSIONS || !github_name_ok(it->string, MAX_NAME, "_") ||
            !cJSON_IsString(it) ||
            (strcmp(it->valuestring, "read") && strcmp(it->valuestring, "write") &&
             strcmp(it->valuestring, "admin"))) {
            bad = 1;
            break;
        }
        cJSON_AddStringToObject(p, it->string, it->valuestring);
    }
    n = 0;
    cJSON_ArrayForEach(it, event_list)
    {
        if (++n > MAX_EVENTS || !cJSON_IsString(it) ||
            !github_name_ok(it->valuestring, MAX_NAME, "_")) {
            bad = 1;
            break;
        }
        cJSON_AddItemToArray(e, cJSON_CreateString(it->valuestring));
    }
    if (!bad) {
        g->permissions_json = cJSON_PrintUnformatted(p);
        g->events_json = cJSON_PrintUnformatted(e);
        bad = !g->permissions_json || !g->events_json;
    }
    cJSON_Delete(p);
    cJSON_Delete(e);
    if (bad) {
        store_github_installation_free(g);
        snprintf(why, cap, "malformed permissions or events");
        return -1;
    }
    return 0;
}

/* ---- GET /github/app/install/callback ------------------------------------------------------------- */

static void redirect_frontend(worker_ctx *w, http_response *resp, cJSON *body, const char *status)
{
    char loc[1200];
    snprintf(loc, sizeof(loc), "%s/connectors?provider=github&status=%s",
             w->cfg->frontend_url ? w->cfg->frontend_url : "", status);
    http_resp_json(resp, 302, body);
    http_resp_add_header(resp, "location", loc);
}

static void install_callback(worker_ctx *w, http_request *req, http_response *resp)
{
    if (oauth_callback_auth(w, req, resp) < 0)
        return;
    char probe[8], action[32] = "", idq[64] = "";
    /* The guide's message: the Setup URL registered on the App is not this
     * route, or the install was not started from Aurora (no state). */
    if (!http_query_get(req, "state", probe, sizeof(probe)) || !probe[0]) {
        http_resp_error(resp, 400, "GITHUB_APP_STATE_MISSING", MSG_STATE_MISSING);
        return;
    }
    if (mode_invalid(w, resp))
        return;
    if (mode_of(w) == MODE_OAUTH) {
        http_resp_error(resp, 404, "GITHUB_APP_DISABLED",
                        "the GitHub App is not offered (GITHUB_AUTH_MODE=oauth)");
        return;
    }
    oauth_state_info st;
    if (oauth_state_take(w, req, STATE_PROVIDER, &st, resp) < 0) /* single use, always */
        return;
    http_query_get(req, "setup_action", action, sizeof(action));
    if (action[0] && strcmp(action, "install") && strcmp(action, "update") &&
        strcmp(action, "request")) {
        http_resp_error(resp, 400, "BAD_REQUEST", "setup_action must be install, update or request");
        return;
    }
    if (!strcmp(action, "request")) {
        /* An org owner must approve the install first; GitHub sends no
         * installation id yet, the installation event will. */
        log_info("github: user %s of %s requested an App installation (awaiting owner approval)",
                 st.user_id, st.org_id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "connected", 0);
        cJSON_AddStringToObject(o, "setup_action", "request");
        redirect_frontend(w, resp, o, "requested");
        return;
    }
    int64_t id = 0;
    if (!http_query_get(req, "installation_id", idq, sizeof(idq)) ||
        !github_parse_installation_id(idq, &id)) {
        http_resp_error(resp, 400, "GITHUB_BAD_INSTALLATION_ID",
                        "installation_id must be a positive integer of at most 16 digits");
        return;
    }
    /* An org updating an installation it already holds needs no proof. */
    store_github_installation held;
    int rc = store_github_installation_get(w->store, st.org_id, id, &held);
    if (rc == STORE_OK) {
        store_github_installation_free(&held);
    } else if (rc != STORE_NOT_FOUND) {
        api_store_error(w, resp);
        return;
    } else {
        /* The id in this URL is only what the browser brought back: anyone
         * can type one.  With the App's client secret, GitHub tells whether
         * the user who installed can access it (github_installer.c). */
        int check = github_installer_configured(w, resp);
        if (check < 0)
            return;
        if (check) {
            github_installer_start(w, &st, id, action[0] ? action : "install", resp);
            return;
        }
        log_warn("github: installation %" PRId64 " is bound to org %s without checking on GitHub "
                 "that user %s can access it (GITHUB_APP_CLIENT_SECRET is not set)",
                 id, st.org_id, st.user_id);
    }
    github_installation_bind(w, &st, id, action[0] ? action : "install", resp);
}

void github_installation_bind(worker_ctx *w, const oauth_state_info *st, int64_t id,
                              const char *action, http_response *resp)
{
    char err[256], api[512], url[640];
    char *jwt = github_app_jwt(w, err, sizeof(err));
    if (!jwt) {
        http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED", "GitHub App is not configured: %s",
                        err);
        return;
    }
    github_api_base(w->cfg, api, sizeof(api));
    snprintf(url, sizeof(url), "%s/app/installations/%" PRId64, api, id);
    http_client_resp rp;
    github_result res;
    int rc = github_api_call(w, "GET", url, jwt, NULL, &rp, &res);
    secret_free(jwt);
    if (rc < 0) {
        http_resp_error(resp, rc == AUR_E_TIMEOUT ? 504 : 502,
                        rc == AUR_E_TIMEOUT ? "GITHUB_TIMEOUT" : "GITHUB_UNREACHABLE", "%s", res.err);
        return;
    }
    if (rp.status != 200) {
        long s = rp.status;
        http_client_resp_free(&rp);
        if (s == 404)
            http_resp_error(resp, 400, "GITHUB_INSTALLATION_NOT_FOUND",
                            "GitHub does not know installation %" PRId64 " of this App", id);
        else if (s == 401)
            http_resp_error(resp, 502, "GITHUB_APP_JWT_REFUSED",
                            "GitHub refused the App JWT (HTTP 401): check GITHUB_APP_ID / "
                            "GITHUB_APP_CLIENT_ID and the private key");
        else
            http_resp_error(resp, 502, "GITHUB_ERROR",
                            "GitHub answered HTTP %ld to the installation lookup", s);
        return;
    }
    cJSON *j = http_client_json(&rp);
    http_client_resp_free(&rp);
    store_github_installation g;
    memset(&g, 0, sizeof(g));
    char why[128] = "not a JSON object";
    if (!j || github_installation_from_json(j, id, &g, why, sizeof(why)) < 0) {
        cJSON_Delete(j);
        http_resp_error(resp, 502, "GITHUB_ERROR", "GitHub's description of installation %" PRId64
                        " is unusable: %s", id, why);
        return;
    }
    cJSON_Delete(j);
    g.installation_id = id;
    snprintf(g.org_id, sizeof(g.org_id), "%s", st->org_id);
    snprintf(g.installed_by, sizeof(g.installed_by), "%s", st->user_id);
    rc = store_github_installation_upsert(w->store, &g);
    if (rc == STORE_CONFLICT) {
        log_warn("github: installation %" PRId64 " is already bound to another organization; "
                 "refused for %s", id, st->org_id);
        http_resp_error(resp, 409, "GITHUB_INSTALLATION_CLAIMED",
                        "this GitHub App installation is connected to another Aurora organization");
    } else if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "ORG_NOT_FOUND", "organization not found");
    } else if (rc != STORE_OK) {
        api_store_error(w, resp);
    } else {
        log_info("github: installation_id %" PRId64 " (%s %s, %s) connected to org %s by user %s",
                 id, g.account_type, g.account_login, action, st->org_id,
                 st->user_id);
        /* Deliveries that arrived before this binding (installation.created
         * usually does) were kept without an organization: they are this
         * org's now, and processed. */
        if (github_webhook_adopt(w, id) < 0)
            log_warn("github: assigning earlier webhook deliveries failed; the next recovery "
                     "sweep retries");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "connected", 1);
        cJSON_AddStringToObject(o, "provider", GH_ID);
        cJSON_AddNumberToObject(o, "installation_id", (double)id);
        cJSON_AddStringToObject(o, "account", g.account_login);
        redirect_frontend(w, resp, o, "connected");
    }
    store_github_installation_free(&g);
}

/* ---- read API ------------------------------------------------------------------------------------- */

static cJSON *installation_json(const worker_ctx *w, const store_github_installation *g)
{
    char web[512], manage[900];
    github_web_base(w->cfg, web, sizeof(web));
    if (!strcmp(g->account_type, "Organization"))
        snprintf(manage, sizeof(manage), "%s/organizations/%s/settings/installations/%" PRId64, web,
                 g->account_login, g->installation_id);
    else
        snprintf(manage, sizeof(manage), "%s/settings/installations/%" PRId64, web,
                 g->installation_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "installation_id", (double)g->installation_id);
    cJSON_AddStringToObject(o, "account_login", g->account_login);
    cJSON_AddStringToObject(o, "account_type", g->account_type);
    cJSON_AddStringToObject(o, "repository_selection", g->repository_selection);
    cJSON *p = cJSON_Parse(g->permissions_json), *e = cJSON_Parse(g->events_json);
    cJSON_AddItemToObject(o, "permissions", p ? p : cJSON_CreateObject());
    cJSON_AddItemToObject(o, "events", e ? e : cJSON_CreateArray());
    cJSON_AddBoolToObject(o, "suspended", g->suspended_at != 0);
    api_add_time(o, "suspended_at", g->suspended_at);
    cJSON_AddBoolToObject(o, "pending", g->pending);
    cJSON_AddBoolToObject(o, "removed", g->removed_at != 0);
    api_add_time(o, "removed_at", g->removed_at);
    cJSON_AddStringToObject(o, "installed_by", g->installed_by);
    cJSON_AddStringToObject(o, "manage_url", manage);
    api_add_time(o, "created_at", g->created_at);
    api_add_time(o, "updated_at", g->updated_at);
    /* What the webhooks told (installation, installation_repositories);
     * .../repositories asks GitHub itself. */
    store_github_repository *repos = NULL;
    size_t n = 0;
    cJSON *arr = cJSON_AddArrayToObject(o, "repositories");
    if (store_github_repository_list(w->store, g->org_id, g->installation_id,
                                     INSTALLATION_REPOS_MAX, &repos, &n) == STORE_OK) {
        for (size_t i = 0; i < n; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "id", (double)repos[i].repository_id);
            cJSON_AddStringToObject(r, "full_name", repos[i].full_name);
            cJSON_AddBoolToObject(r, "private", repos[i].is_private);
            api_add_time(r, "added_at", repos[i].added_at);
            cJSON_AddItemToArray(arr, r);
        }
        cJSON_AddBoolToObject(o, "repositories_truncated", n >= INSTALLATION_REPOS_MAX);
        free(repos);
    } else {
        log_error("github: listing repositories of installation %" PRId64 ": %s",
                  g->installation_id, store_errmsg(w->store));
    }
    return o;
}

/* ---- pending permission updates ------------------------------------------------------------ */

/* GitHub applies an App's changed permissions to an installation only once
 * its owner accepts them (then installation.new_permissions_accepted comes);
 * no event says that the App asked.  Until then the App's own permissions
 * (GET /app) exceed the installation's: that installation is pending.  The
 * App's permissions are read at most every GITHUB_APP_PERMISSIONS_REFRESH_S
 * (a failure too, which keeps the last copy read), by one caller at a time: listings that find the copy stale
 * while a read is under way use the stale copy rather than each asking GitHub
 * (a burst of listings would otherwise be a burst of App-JWT calls, each
 * holding a worker for up to the provider timeout when GitHub is slow). */

static pthread_mutex_t g_app_perms_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_app_perms;       /* JSON object text of the App's permissions; NULL: unknown */
static int64_t g_app_perms_at;  /* when GET /app last answered or failed (0: never) */
static int g_app_perms_reading; /* a caller is reading GET /app now */

static int perm_rank(const cJSON *v)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    if (!s || !*s || !strcmp(s, "none"))
        return 0;
    if (!strcmp(s, "write"))
        return 2;
    if (!strcmp(s, "admin"))
        return 3;
    return 1; /* read (or a level GitHub adds later) */
}

/* 1 if the App asks for a permission, or a level of one, that the
 * installation has not been granted. */
static int permissions_pending(const cJSON *app, const cJSON *inst)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, app)
    {
        if (p->string && perm_rank(p) > perm_rank(cJSON_GetObjectItemCaseSensitive(inst, p->string)))
            return 1;
    }
    return 0;
}

/* The App's permissions (caller cJSON_Deletes), or NULL when they cannot be
 * read now (no App configured, GitHub unreachable or refusing). */
static cJSON *app_permissions(worker_ctx *w)
{
    int64_t now = (int64_t)time(NULL);
    int64_t ttl = server_setting_int(w->cfg, "GITHUB_APP_PERMISSIONS_REFRESH_S");
    pthread_mutex_lock(&g_app_perms_mu);
    int fresh = g_app_perms_at && now - g_app_perms_at < (ttl > 0 ? ttl : 60);
    int use_copy = fresh || g_app_perms_reading;
    cJSON *cached = use_copy && g_app_perms ? cJSON_Parse(g_app_perms) : NULL;
    if (!use_copy)
        g_app_perms_reading = 1;
    pthread_mutex_unlock(&g_app_perms_mu);
    if (use_copy)
        return cached; /* NULL while the first read is under way: not checked this time */
    char err[256], api[512], url[640];
    cJSON *perms = NULL;
    char *jwt = github_app_jwt(w, err, sizeof(err));
    if (jwt) {
        github_api_base(w->cfg, api, sizeof(api));
        snprintf(url, sizeof(url), "%s/app", api);
        http_client_resp rp;
        github_result res;
        int rc = github_api_call(w, "GET", url, jwt, NULL, &rp, &res);
        secret_free(jwt);
        if (rc < 0) {
            log_warn("github: reading the App's permissions failed (%s); pending permission "
                     "updates are checked against the last copy read, if any", res.err);
        } else {
            cJSON *j = rp.status == 200 ? http_client_json(&rp) : NULL;
            perms = j ? cJSON_DetachItemFromObjectCaseSensitive(j, "permissions") : NULL;
            cJSON_Delete(j);
            if (!cJSON_IsObject(perms)) {
                log_warn("github: GET /app answered HTTP %ld without the App's permissions; "
                         "pending permission updates are checked against the last copy read, "
                         "if any", rp.status);
                cJSON_Delete(perms);
                perms = NULL;
            }
            http_client_resp_free(&rp);
        }
    }
    char *text = perms ? cJSON_PrintUnformatted(perms) : NULL;
    pthread_mutex_lock(&g_app_perms_mu);
    if (text) {
        free(g_app_perms);
        g_app_perms = text;
    } else if (g_app_perms) {
        /* A failed read keeps the last copy GitHub gave (an App's permissions
         * change rarely; checking against them beats checking nothing until
         * the next read), and is tried again only after the refresh time. */
        perms = cJSON_Parse(g_app_perms);
    }
    g_app_perms_at = (int64_t)time(NULL); /* fresh from the answer, not the ask */
    g_app_perms_reading = 0;
    pthread_mutex_unlock(&g_app_perms_mu);
    return perms;
}

/* Sets each listed installation's pending flag from the App's permissions. */
static void sync_pending(worker_ctx *w, store_github_installation *list, size_t n)
{
    if (n == 0 || mode_of(w) == MODE_OAUTH)
        return;
    cJSON *app = app_permissions(w);
    if (!app)
        return;
    for (size_t i = 0; i < n; i++) {
        if (list[i].removed_at)
            continue;
        cJSON *have = cJSON_Parse(list[i].permissions_json ? list[i].permissions_json : "{}");
        int want = permissions_pending(app, have);
        cJSON_Delete(have);
        if (want == (list[i].pending != 0))
            continue;
        if (store_github_installation_set(w->store, list[i].org_id, list[i].installation_id,
                                          STORE_GH_PENDING, want) != STORE_OK)
            continue;
        list[i].pending = want;
        if (want)
            log_info("github: installation %" PRId64 " (%s) has not accepted the App's new "
                     "permissions: pending its owner's approval", list[i].installation_id,
                     list[i].account_login);
    }
    cJSON_Delete(app);
}

static void installations_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    store_github_installation *list = NULL;
    size_t n = 0;
    if (store_github_installation_list(w->store, req->auth.org_id, &list, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    sync_pending(w, list, n);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "installations");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, installation_json(w, &list[i]));
    store_github_installation_list_free(list, n);
    http_resp_json(resp, 200, o);
}

/* Appends the checked fields of one page's repositories to out; -1 if the
 * page is not GitHub's shape. */
static int add_repos(const worker_ctx *w, const cJSON *page, cJSON *out, int64_t *total)
{
    char web[512], html[900];
    github_web_base(w->cfg, web, sizeof(web));
    const cJSON *repos = cJSON_GetObjectItemCaseSensitive(page, "repositories");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(page, "total_count");
    if (!cJSON_IsArray(repos))
        return -1;
    int64_t count;
    if (api_json_int64(tc, &count) && count >= 0)
        *total = count;
    const cJSON *r;
    cJSON_ArrayForEach(r, repos)
    {
        const cJSON *rid = cJSON_GetObjectItemCaseSensitive(r, "id");
        const char *full = api_json_str(r, "full_name");
        if (!cJSON_IsNumber(rid) || !github_full_name_ok(full))
            return -1;
        const char *slash = strchr(full, '/');
        char owner[128];
        snprintf(owner, sizeof(owner), "%.*s", (int)(slash - full), full);
        const char *branch = api_json_str(r, "default_branch");
        /* Shown to users: built from GH_BASE_URL, not taken from the answer. */
        snprintf(html, sizeof(html), "%s/%s", web, full);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", rid->valuedouble);
        cJSON_AddStringToObject(o, "full_name", full);
        cJSON_AddStringToObject(o, "name", slash + 1);
        cJSON_AddStringToObject(o, "owner", owner);
        cJSON_AddBoolToObject(o, "private", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "private")));
        cJSON_AddBoolToObject(o, "archived", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "archived")));
        if (branch && github_name_ok(branch, 255, "-_./"))
            cJSON_AddStringToObject(o, "default_branch", branch);
        cJSON_AddStringToObject(o, "html_url", html);
        cJSON_AddItemToArray(out, o);
    }
    return 0;
}

static void token_error(const github_result *res, http_response *resp)
{
    switch (res->code) {
    case AUR_E_INVALID:
        http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED", "%s", res->err);
        break;
    case AUR_NOT_FOUND:
        http_resp_error(resp, 404, "GITHUB_INSTALLATION_GONE", "%s", res->err);
        break;
    case AUR_E_TIMEOUT:
        http_resp_error(resp, 504, "GITHUB_TIMEOUT", "%s", res->err);
        break;
    case AUR_E_DENIED:
        http_resp_error(resp, 502, "GITHUB_DENIED", "%s", res->err);
        break;
    default: /* an answer that made no sense, or none at all */
        http_resp_error(resp, 502, res->status ? "GITHUB_ERROR" : "GITHUB_UNREACHABLE", "%s",
                        res->err);
    }
}

static void repositories_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    int64_t id = 0;
    if (!github_parse_installation_id(http_param(req, "installation_id"), &id)) {
        http_resp_error(resp, 400, "GITHUB_BAD_INSTALLATION_ID",
                        "installation_id must be a positive integer of at most 16 digits");
        return;
    }
    store_github_installation g;
    int rc = store_github_installation_get(w->store, req->auth.org_id, id, &g);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "GITHUB_INSTALLATION_NOT_FOUND",
                        "no GitHub installation %" PRId64 " in this organization", id);
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    int64_t suspended = g.suspended_at;
    store_github_installation_free(&g);
    if (suspended) {
        http_resp_error(resp, 409, "GITHUB_INSTALLATION_SUSPENDED",
                        "GitHub installation %" PRId64 " is suspended; unsuspend it in GitHub", id);
        return;
    }
    char *token = NULL;
    github_result res;
    if (github_app_installation_token(w, id, &token, &res) != AUR_OK) {
        log_warn("github: installation %" PRId64 ": %s", id, res.err);
        token_error(&res, resp);
        return;
    }
    int64_t max_pages = server_setting_int(w->cfg, "GITHUB_MAX_REPO_PAGES");
    if (max_pages <= 0)
        max_pages = DEFAULT_REPO_PAGES;
    char api[512], url[2048];
    github_api_base(w->cfg, api, sizeof(api));
    snprintf(url, sizeof(url), "%s/installation/repositories?per_page=100", api);
    cJSON *o = cJSON_CreateObject();
    cJSON *repos = cJSON_AddArrayToObject(o, "repositories");
    int64_t total = -1, pages = 0;
    int more = 1, failed = 0;
    while (more && pages < max_pages) {
        http_client_resp rp;
        if (github_api_call(w, "GET", url, token, "Link", &rp, &res) < 0) {
            token_error(&res, resp);
            failed = 1;
            break;
        }
        pages++;
        if (rp.status != 200) {
            if (rp.status == 401)
                github_app_token_forget(id); /* revoked or expired early: mint next time */
            http_resp_error(resp, 502, rp.status == 401 || rp.status == 403 ? "GITHUB_DENIED"
                                                                              : "GITHUB_ERROR",
                            "GitHub answered HTTP %ld to the repository listing", rp.status);
            http_client_resp_free(&rp);
            failed = 1;
            break;
        }
        cJSON *page = http_client_json(&rp);
        int bad = !page || add_repos(w, page, repos, &total) < 0;
        cJSON_Delete(page);
        char next[2048];
        const char *link = http_client_header(&rp, "Link");
        more = link && github_link_next(link, next, sizeof(next));
        http_client_resp_free(&rp);
        if (bad) {
            http_resp_error(resp, 502, "GITHUB_ERROR", "GitHub's repository listing is unusable");
            failed = 1;
            break;
        }
        if (more && !http_client_url_under(next, api)) {
            /* The token goes wherever the next page is: only to GH_API_BASE_URL. */
            log_warn("github: installation %" PRId64 ": a next-page link outside GH_API_BASE_URL "
                     "was not followed", id);
            cJSON_AddStringToObject(o, "warning", "a next-page link outside GH_API_BASE_URL was "
                                                  "not followed");
            more = 0;
            break;
        }
        if (more)
            snprintf(url, sizeof(url), "%s", next);
    }
    secret_free(token);
    if (failed) {
        cJSON_Delete(o);
        return;
    }
    cJSON_AddNumberToObject(o, "installation_id", (double)id);
    cJSON_AddNumberToObject(o, "total_count",
                            (double)(total >= 0 ? total : cJSON_GetArraySize(repos)));
    cJSON_AddNumberToObject(o, "pages", (double)pages);
    cJSON_AddBoolToObject(o, "truncated", more);
    http_resp_json(resp, 200, o);
}

/* ---- GET /api/connectors/status ---------------------------------------------------------------------- */

static void github_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    auth_mode m = mode_of(w);
    char problem[320];
    app_problem(w, 0, problem, sizeof(problem)); /* store pool: the key's last known state */
    cJSON_AddStringToObject(out, "auth_mode", mode_name(m));
    cJSON_AddBoolToObject(out, "app_configured", m != MODE_OAUTH && m != MODE_INVALID && !problem[0]);
    cJSON_AddStringToObject(out, "private_key", github_cred_state_name(github_app_key_state()));
    if (problem[0] && m != MODE_OAUTH)
        cJSON_AddStringToObject(out, "app_error", problem);
    cJSON_AddBoolToObject(out, "oauth_configured", oauth_configured(w));
    store_github_installation *list = NULL;
    size_t n = 0;
    if (store_github_installation_list(w->store, who->org_id, &list, &n) != STORE_OK) {
        cJSON_AddStringToObject(out, "error", "state store unavailable");
        log_error("github status: %s", store_errmsg(w->store));
        return;
    }
    size_t active = 0, suspended = 0, pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (list[i].suspended_at)
            suspended++;
        else
            active++;
        if (list[i].pending)
            pending++;
    }
    store_github_installation_list_free(list, n);
    cJSON_AddBoolToObject(out, "connected", active > 0);
    cJSON_AddNumberToObject(out, "installations", (double)n);
    cJSON_AddNumberToObject(out, "suspended", (double)suspended);
    cJSON_AddNumberToObject(out, "pending", (double)pending);
    /* OAuth fallback (github_oauth.c): a user token also counts as connected. */
    if (github_oauth_status(w, who, out) && m != MODE_APP)
        cJSON_ReplaceItemInObjectCaseSensitive(out, "connected", cJSON_CreateBool(1));
}

static void github_register(void)
{
    router_add_outbound(HTTP_GET, "/github/status", ROUTE_AUTH_API, status_route);
    router_add_outbound(HTTP_GET, "/github/app/install", ROUTE_AUTH_API, install_route);
    router_add_outbound(HTTP_GET, "/github/app/install/callback", ROUTE_PUBLIC, install_callback);
    /* outbound: compares the App's permissions (GET /app) with each installation's */
    router_add_outbound(HTTP_GET, "/api/github/installations", ROUTE_AUTH_API,
                        installations_route);
    github_webhook_register(); /* POST /github/webhook, GET /api/github/events[/{id}] */
    router_add_outbound(HTTP_GET, "/api/github/installations/{installation_id}/repositories",
                        ROUTE_AUTH_API, repositories_route);
    /* OAuth fallback: github_oauth.c, github_poll.c */
    github_oauth_register();
    github_poll_register();
}

/* GitHub's settings (connector guide: GitHub), declared here only. */
static const config_def github_settings[] = {
    { "GITHUB_AUTH_MODE", "github.auth_mode", CFG_STRING, "app", "GitHub connector: app | oauth | hybrid (which connect actions users are offered)", 0 },
    { "GITHUB_APP_ID", "github.app_id", CFG_STRING, NULL, "GitHub App: numeric App ID (JWT issuer when GITHUB_APP_CLIENT_ID is unset)", 0 },
    { "GITHUB_APP_CLIENT_ID", "github.app_client_id", CFG_STRING, NULL, "GitHub App: client ID (Iv23l…), the App JWT's issuer", 0 },
    { "NEXT_PUBLIC_GITHUB_APP_SLUG", "github.app_slug", CFG_STRING, NULL, "GitHub App: URL slug (install URL <GH_BASE_URL>/apps/<slug>/installations/new)", 0 },
    { "GITHUB_APP_WEBHOOK_URL", "github.app_webhook_url", CFG_STRING, NULL, "GitHub App: <API_URL>/github/webhook, as registered on the App", 0 },
    { "GITHUB_APP_SETUP_URL", "github.app_setup_url", CFG_STRING, NULL, "GitHub App: <API_URL>/github/app/install/callback, as registered on the App", 0 },
    { "GITHUB_APP_WEBHOOK_SECRET", NULL, CFG_STRING, NULL, "GitHub App: webhook secret (else read from aurora/system/github-app/webhook-secret)", 1 },
    { "GITHUB_APP_CLIENT_SECRET", NULL, CFG_STRING, NULL, "GitHub App: client secret (else read from aurora/system/github-app/client-secret); when there is one, an installation is connected only once GitHub confirms that the user who installed it can access it", 1 },
    { "GITHUB_APP_CALLBACK_URL", "github.app_callback_url", CFG_STRING, NULL, "GitHub App: <API_URL>/github/callback, its Callback URL as registered on the App (default: derived from GITHUB_APP_SETUP_URL, else AURORA_PUBLIC_URL)", 0 },
    { "GITHUB_APP_WEBHOOK_SECRET_PREVIOUS", NULL, CFG_STRING, NULL, "GitHub App: the webhook secret being rotated out, also accepted until unset", 1 },
    { "GITHUB_APP_KEY_REFRESH_S", "github.app_key_refresh_s", CFG_INT, "60", "GitHub App: the private key and webhook secret are re-read from the secrets backend at most this often (s)", 0, 1, 86400 },
    { "GITHUB_APP_PERMISSIONS_REFRESH_S", "github.app_permissions_refresh_s", CFG_INT, "60", "GitHub App: the App's own permissions (GET /app), compared with each installation's to flag those pending an owner's approval, are re-read at most this often (s)", 0, 1, 86400 },
    { "GITHUB_MAX_REPO_PAGES", "github.max_repo_pages", CFG_INT, "10", "GitHub connector: most pages (100 repositories each) read per repository listing", 0, 1, 100 },
    { "GH_OAUTH_CLIENT_ID", "github.oauth_client_id", CFG_STRING, NULL, "GitHub OAuth App client id (GITHUB_AUTH_MODE oauth or hybrid)", 0 },
    { "GH_OAUTH_CLIENT_SECRET", NULL, CFG_STRING, NULL, "GitHub OAuth App client secret", 1 },
    { "GH_BASE_URL", "github.base_url", CFG_STRING, "https://github.com", "GitHub web base URL (GitHub Enterprise Server: https://<host>)", 0 },
    { "GH_API_BASE_URL", "github.api_base_url", CFG_STRING, "https://api.github.com", "GitHub REST API base URL (GitHub Enterprise Server: https://<host>/api/v3)", 0 },
    GITHUB_OAUTH_SETTINGS /* github_oauth.h */
    { NULL },
};

const connector connector_github = {
    .id = GH_ID,
    .name = "GitHub",
    .register_routes = github_register,
    .status = github_status,
    .cloud = NULL,
    .settings = github_settings,
    .disconnecting = github_oauth_disconnecting, /* github_oauth.c: revoke the OAuth grant */
    .timeout_ms = 15000,
    .redirect_setting = "GH_OAUTH_REDIRECT_URI",
};
