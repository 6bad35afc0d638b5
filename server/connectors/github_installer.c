/* github_installer.c — the check that the Aurora user who comes back from
 * installing the GitHub App can access that installation on GitHub; see
 * github_installer.h.  GitHub's documents followed: "Generating a user access
 * token for a GitHub App" (web application flow: GET {GH_BASE_URL}/login/
 * oauth/authorize, POST {GH_BASE_URL}/login/oauth/access_token, which answers
 * a refused code as HTTP 200 {"error": …}) and REST "List app installations
 * accessible to the user access token" (GET /user/installations, Link
 * pagination). */
#include "github_installer.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "github_app.h"
#include "github_oauth.h"
#include "http_client.h"
#include "log.h"
#include "secret.h"

#define MAX_USER_TOKEN_LEN 1024
#define SETUP_SUFFIX "/github/app/install/callback"
#define CALLBACK_SUFFIX "/github/callback"
#define MSG_SECRET_HINT                                                                            \
    "generate a new client secret on the App's settings page and store it as "                   \
    "GITHUB_APP_CLIENT_SECRET (or at " SECRETS_PATH_GITHUB_APP_CLIENT_SECRET ")"

static const kit_oauth_errors installer_errors = {
    .service = "GitHub",
    .timeout = "GITHUB_TIMEOUT",
    .unreachable = "GITHUB_UNREACHABLE",
    .grant = "GITHUB_BAD_CREDENTIALS",
    .denied = "GITHUB_BAD_CREDENTIALS",
    .failed = "GITHUB_ERROR",
    .denied_hint = MSG_SECRET_HINT,
    .authorization_failed = "GITHUB_OAUTH_FAILED",
    .redirect_mismatch = "GITHUB_REDIRECT_MISMATCH",
};

int github_installer_offered(const worker_ctx *w)
{
    const char *mode = server_setting(w->cfg, "GITHUB_AUTH_MODE");
    const char *id = server_setting(w->cfg, "GITHUB_APP_CLIENT_ID");
    return (!mode || strcasecmp(mode, "oauth") != 0) && id && *id;
}

static void backend_down(http_response *resp)
{
    http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED",
                    "cannot read the GitHub App's client secret (" SECRETS_PATH_GITHUB_APP_CLIENT_SECRET
                    "): the secrets backend did not answer; the installation was not connected");
}

int github_installer_configured(worker_ctx *w, http_response *resp)
{
    unsigned char *sec = NULL;
    size_t len = 0;
    github_cred_state st = github_app_client_secret(w, &sec, &len);
    if (sec)
        secret_free_n(sec, len);
    if (st == GITHUB_CRED_OK && len > 0)
        return 1;
    if (st == GITHUB_CRED_MISSING || st == GITHUB_CRED_OK) /* not set, or set empty */
        return 0;
    backend_down(resp);
    return -1;
}

/* The App's Callback URL as the guide registers it: GITHUB_APP_CALLBACK_URL,
 * else <API_URL>/github/callback, API_URL taken from GITHUB_APP_SETUP_URL
 * (<API_URL>/github/app/install/callback) or AURORA_PUBLIC_URL.  0, or -1
 * when none is set. */
static int callback_url(const worker_ctx *w, char *out, size_t cap)
{
    const char *set = server_setting(w->cfg, "GITHUB_APP_CALLBACK_URL");
    if (set && *set)
        return snprintf(out, cap, "%s", set) < (int)cap ? 0 : -1;
    const char *setup = server_setting(w->cfg, "GITHUB_APP_SETUP_URL");
    size_t n = setup ? strlen(setup) : 0, sl = strlen(SETUP_SUFFIX);
    if (n > sl && !strcmp(setup + n - sl, SETUP_SUFFIX))
        return snprintf(out, cap, "%.*s" CALLBACK_SUFFIX, (int)(n - sl), setup) < (int)cap ? 0 : -1;
    const char *pub = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (pub && *pub) {
        size_t pl = strlen(pub);
        while (pl > 0 && pub[pl - 1] == '/')
            pl--;
        return snprintf(out, cap, "%.*s" CALLBACK_SUFFIX, (int)pl, pub) < (int)cap ? 0 : -1;
    }
    return -1;
}

/* The App as an OAuth client, URLs in the caller's buffers; with `secret`,
 * the client secret too (release with secret_free_n(*secret, *slen)).  0,
 * or -1 with resp filled. */
static int installer_client(worker_ctx *w, kit_oauth_client *c, char *authz, char *token,
                            char *redirect, size_t cap, unsigned char **secret, size_t *slen,
                            http_response *resp)
{
    char web[512];
    github_web_base(w->cfg, web, sizeof(web));
    snprintf(authz, cap, "%s/login/oauth/authorize", web);
    snprintf(token, cap, "%s/login/oauth/access_token", web);
    if (callback_url(w, redirect, cap) < 0) {
        http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED",
                        "the GitHub App's Callback URL is unknown: set GITHUB_APP_CALLBACK_URL "
                        "(<API_URL>/github/callback, as registered on the App) or "
                        "GITHUB_APP_SETUP_URL");
        return -1;
    }
    memset(c, 0, sizeof(*c));
    c->provider = GITHUB_INSTALLER_PROVIDER;
    c->authorize_url = authz;
    c->token_url = token;
    c->client_id = server_setting(w->cfg, "GITHUB_APP_CLIENT_ID");
    c->redirect_uri = redirect;
    c->timeout_ms = connector_timeout_ms(w, connector_find("github"));
    c->errors = &installer_errors;
    if (!secret)
        return 0;
    github_cred_state st = github_app_client_secret(w, secret, slen);
    if (st == GITHUB_CRED_OK && *slen > 0) {
        c->client_secret = (const char *)*secret;
        return 0;
    }
    if (*secret)
        secret_free_n(*secret, *slen);
    *secret = NULL;
    if (st == GITHUB_CRED_OK || st == GITHUB_CRED_MISSING)
        http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED",
                        "the GitHub App's client secret is no longer set (GITHUB_APP_CLIENT_SECRET "
                        "or " SECRETS_PATH_GITHUB_APP_CLIENT_SECRET "); install the App again");
    else
        backend_down(resp);
    return -1;
}

/* "<id>:<action>", the state's extra. */
static int parse_extra(const char *extra, int64_t *id, char *action, size_t cap)
{
    const char *colon = strchr(extra, ':');
    char idq[32];
    if (!colon || (size_t)(colon - extra) >= sizeof(idq))
        return -1;
    memcpy(idq, extra, (size_t)(colon - extra));
    idq[colon - extra] = '\0';
    if (!github_parse_installation_id(idq, id) ||
        (strcmp(colon + 1, "install") && strcmp(colon + 1, "update")))
        return -1;
    snprintf(action, cap, "%s", colon + 1);
    return 0;
}

void github_installer_start(worker_ctx *w, const oauth_state_info *st, int64_t id,
                            const char *action, http_response *resp)
{
    kit_oauth_client c;
    char authz[640], token[640], redirect[640], extra[64];
    if (installer_client(w, &c, authz, token, redirect, sizeof(authz), NULL, NULL, resp) < 0)
        return;
    snprintf(extra, sizeof(extra), "%" PRId64 ":%s", id, action);
    auth_ctx who;
    oauth_state_who(st, &who);
    char *url = kit_oauth_authorize_url(w, &who, &c, extra, resp);
    if (!url)
        return;
    log_info("github: installation %" PRId64 " for org %s: asking GitHub whether user %s can "
             "access it",
             id, st->org_id, st->user_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "Sign in to GitHub to confirm the installation");
    cJSON_AddNumberToObject(o, "installation_id", (double)id);
    kit_oauth_send_url(resp, 302, url, o);
    free(url);
}

/* Whether installation id is among those the user token can access:
 * 1 yes, 0 no, -1 with resp filled. */
static int user_can_access(worker_ctx *w, const char *token, int64_t id, http_response *resp)
{
    char api[512], url[2048];
    github_api_base(w->cfg, api, sizeof(api));
    snprintf(url, sizeof(url), "%s/user/installations?per_page=100", api);
    for (int page = 0; page < GITHUB_INSTALLER_MAX_PAGES; page++) {
        http_client_resp rp;
        github_result res;
        int rc = github_api_call(w, "GET", url, token, "Link", &rp, &res);
        if (rc < 0) {
            http_resp_error(resp, rc == AUR_E_TIMEOUT ? 504 : 502,
                            rc == AUR_E_TIMEOUT ? "GITHUB_TIMEOUT" : "GITHUB_UNREACHABLE", "%s",
                            res.err);
            return -1;
        }
        if (rp.status != 200) {
            long s = rp.status;
            http_client_resp_free(&rp);
            http_resp_error(resp, 502, s == 401 || s == 403 ? "GITHUB_DENIED" : "GITHUB_ERROR",
                            "GitHub answered HTTP %ld to the signed-in user's installation listing",
                            s);
            return -1;
        }
        cJSON *j = http_client_json(&rp);
        cJSON *list = j ? cJSON_GetObjectItemCaseSensitive(j, "installations") : NULL;
        if (!cJSON_IsArray(list)) {
            cJSON_Delete(j);
            http_client_resp_free(&rp);
            http_resp_error(resp, 502, "GITHUB_ERROR",
                            "GitHub's listing of the signed-in user's installations is unusable");
            return -1;
        }
        int found = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, list)
        {
            int64_t got;
            if (api_json_int64(cJSON_GetObjectItemCaseSensitive(it, "id"), &got) && got == id)
                found = 1;
        }
        cJSON_Delete(j);
        char next[2048];
        const char *link = http_client_header(&rp, "Link");
        int more = link && github_link_next(link, next, sizeof(next));
        http_client_resp_free(&rp);
        if (found)
            return 1;
        /* The user's token goes only to GH_API_BASE_URL. */
        if (!more || !http_client_url_under(next, api))
            return 0;
        snprintf(url, sizeof(url), "%s", next);
    }
    log_warn("github: the signed-in user's installations span more than %d pages; the rest were "
             "not read",
             GITHUB_INSTALLER_MAX_PAGES);
    return 0;
}

void github_installer_callback(worker_ctx *w, kit_oauth_callback *cb, http_response *resp)
{
    oauth_state_info st = cb->st;
    int64_t id = 0;
    char action[16];
    if (parse_extra(st.extra, &id, action, sizeof(action)) < 0) {
        kit_oauth_callback_wipe(cb);
        http_resp_error(resp, 400, "OAUTH_STATE_INVALID",
                        "OAuth state carries no installation; install the GitHub App again");
        return;
    }
    kit_oauth_client c;
    char authz[640], tokurl[640], redirect[640];
    unsigned char *secret = NULL;
    size_t slen = 0;
    if (installer_client(w, &c, authz, tokurl, redirect, sizeof(authz), &secret, &slen, resp) < 0) {
        kit_oauth_callback_wipe(cb);
        return;
    }
    if (kit_oauth_redirect_check(&c, cb, redirect, resp) < 0) {
        secret_free_n(secret, slen);
        return;
    }
    cJSON *tok = kit_oauth_exchange(w, &c, cb, "GitHub sign-in", resp);
    secret_free_n(secret, slen);
    if (!tok || github_token_refused(tok, redirect, "GITHUB_APP_CALLBACK_URL", MSG_SECRET_HINT, resp))
        return;
    int64_t exp = 0;
    char *token = kit_oauth_access_token(tok, MAX_USER_TOKEN_LEN, (int64_t)time(NULL), &exp);
    secret_json_free(tok);
    if (!token) {
        http_resp_error(resp, 502, "GITHUB_ERROR", "Invalid response from GitHub (no access token)");
        return;
    }
    int ok = user_can_access(w, token, id, resp);
    secret_free(token);
    if (ok < 0)
        return;
    if (!ok) {
        log_warn("github: installation %" PRId64 " refused for org %s: the GitHub account user %s "
                 "signed in with cannot access it",
                 id, st.org_id, st.user_id);
        http_resp_error(resp, 403, "GITHUB_INSTALLATION_NOT_YOURS",
                        "the GitHub account you signed in with cannot access installation %" PRId64
                        " of this App: sign in as a GitHub user of the account it is installed on",
                        id);
        return;
    }
    log_info("github: GitHub confirmed that user %s can access installation %" PRId64, st.user_id,
             id);
    github_installation_bind(w, &st, id, action, resp);
}
