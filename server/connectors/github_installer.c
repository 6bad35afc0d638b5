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

static const kit_oauth_errors installer_errors = GITHUB_KIT_OAUTH_ERRORS(MSG_SECRET_HINT);

int github_installer_offered(const worker_ctx *w)
{
    const char *mode = server_setting(w->cfg, "GITHUB_AUTH_MODE");
    const char *id = server_setting(w->cfg, "GITHUB_APP_CLIENT_ID");
    return (!mode || strcasecmp(mode, "oauth") != 0) && id && *id;
}

/* Reads the App's client secret: 1 with it in *sec (secret_free_n(*sec,
 * *len)), 0 when it is set nowhere (or empty), -1 with a 503 in resp when
 * the secrets backend does not answer (refusing is safer than binding
 * unchecked). */
static int read_client_secret(worker_ctx *w, unsigned char **sec, size_t *len,
                              http_response *resp)
{
    *sec = NULL;
    *len = 0;
    github_cred_state st = github_app_client_secret(w, sec, len);
    if (st == GITHUB_CRED_OK && *len > 0)
        return 1;
    if (*sec)
        secret_free_n(*sec, *len);
    *sec = NULL;
    if (st == GITHUB_CRED_MISSING || st == GITHUB_CRED_OK)
        return 0;
    http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED",
                    "cannot read the GitHub App's client secret (" SECRETS_PATH_GITHUB_APP_CLIENT_SECRET
                    "): the secrets backend did not answer; the installation was not connected");
    return -1;
}

int github_installer_configured(worker_ctx *w, http_response *resp)
{
    unsigned char *sec;
    size_t len;
    int have = read_client_secret(w, &sec, &len, resp);
    if (have <= 0)
        return have;
    secret_free_n(sec, len);
    if (github_installer_offered(w))
        return 1;
    http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED",
                    "the GitHub App's client secret is set but GITHUB_APP_CLIENT_ID is not: "
                    "the installation cannot be checked on GitHub and was not connected");
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
    int have = read_client_secret(w, secret, slen, resp);
    if (have > 0) {
        c->client_secret = (const char *)*secret;
        return 0;
    }
    if (have == 0)
        http_resp_error(resp, 503, "GITHUB_APP_NOT_CONFIGURED",
                        "the GitHub App's client secret is no longer set (GITHUB_APP_CLIENT_SECRET "
                        "or " SECRETS_PATH_GITHUB_APP_CLIENT_SECRET "); install the App again");
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

/* What GitHub says about the signed-in user and the installation. */
typedef struct {
    char login[64]; /* the signed-in GitHub user */
    int64_t user_id;
    char account[64];      /* the installation's account */
    char account_type[16]; /* "User" or "Organization" */
    int64_t account_id;
    int truncated; /* the listing had more pages than were read */
    int silent;    /* a call got no answer from GitHub */
} installer_seen;

/* A login or account name GitHub answered, fit to go into a URL path:
 * github_name_ok's alphabet (bots are "name[bot]"), and not "." or "..". */
static int account_ok(const char *s)
{
    return s && s[0] != '.' && github_name_ok(s, 63, "-_.[]");
}

/* GET url with the user's token; the JSON answer of a 200 (*status 200), or
 * NULL with *status GitHub's other status (resp untouched), or NULL with
 * *status 0 and resp filled when GitHub did not answer. */
static cJSON *user_get(worker_ctx *w, const char *url, const char *token, long *status,
                       char *link, size_t link_cap, http_response *resp)
{
    http_client_resp rp;
    github_result res;
    *status = 0;
    int rc = github_api_call(w, "GET", url, token, link ? "Link" : NULL, &rp, &res);
    if (rc < 0) {
        http_resp_error(resp, rc == AUR_E_TIMEOUT ? 504 : 502,
                        rc == AUR_E_TIMEOUT ? "GITHUB_TIMEOUT" : "GITHUB_UNREACHABLE", "%s", res.err);
        return NULL;
    }
    *status = rp.status;
    cJSON *j = rp.status == 200 ? http_client_json(&rp) : NULL;
    if (link) {
        const char *l = http_client_header(&rp, "Link");
        if (!l || !github_link_next(l, link, link_cap))
            link[0] = '\0';
    }
    http_client_resp_free(&rp);
    return j;
}

static int github_refused(long status, const char *what, http_response *resp)
{
    http_resp_error(resp, 502, status == 401 || status == 403 ? "GITHUB_DENIED" : "GITHUB_ERROR",
                    "GitHub answered HTTP %ld to %s", status, what);
    return -1;
}

/* GET /user: who signed in.  0, or -1 with resp filled. */
static int read_user(worker_ctx *w, const char *token, installer_seen *seen, http_response *resp)
{
    char api[512], url[600];
    github_api_base(w->cfg, api, sizeof(api));
    snprintf(url, sizeof(url), "%s/user", api);
    long status;
    cJSON *j = user_get(w, url, token, &status, NULL, 0, resp);
    if (!status)
        return seen->silent = 1, -1;
    if (status != 200)
        return github_refused(status, "the signed-in user's lookup", resp);
    const char *login = j ? api_json_str(j, "login") : NULL;
    int ok = account_ok(login) && api_json_int64(cJSON_GetObjectItemCaseSensitive(j, "id"), &seen->user_id);
    if (ok)
        snprintf(seen->login, sizeof(seen->login), "%s", login);
    cJSON_Delete(j);
    if (!ok) {
        http_resp_error(resp, 502, "GITHUB_ERROR", "GitHub's description of the signed-in user is unusable");
        return -1;
    }
    return 0;
}

/* Whether installation id is among those the user token can access (then
 * its account goes into seen): 1 yes, 0 no, -1 with resp filled. */
static int find_installation(worker_ctx *w, const char *token, int64_t id, installer_seen *seen,
                             http_response *resp)
{
    char api[512], url[2048], next[2048];
    github_api_base(w->cfg, api, sizeof(api));
    snprintf(url, sizeof(url), "%s/user/installations?per_page=100", api);
    for (int page = 0; page < GITHUB_INSTALLER_MAX_PAGES; page++) {
        long status;
        cJSON *j = user_get(w, url, token, &status, next, sizeof(next), resp);
        if (!status)
            return seen->silent = 1, -1;
        if (status != 200)
            return github_refused(status, "the signed-in user's installation listing", resp);
        cJSON *list = j ? cJSON_GetObjectItemCaseSensitive(j, "installations") : NULL;
        if (!cJSON_IsArray(list)) {
            cJSON_Delete(j);
            http_resp_error(resp, 502, "GITHUB_ERROR",
                            "GitHub's listing of the signed-in user's installations is unusable");
            return -1;
        }
        const cJSON *it, *found = NULL;
        cJSON_ArrayForEach(it, list)
        {
            int64_t got;
            if (api_json_int64(cJSON_GetObjectItemCaseSensitive(it, "id"), &got) && got == id)
                found = it;
        }
        if (found) {
            const cJSON *acct = cJSON_GetObjectItemCaseSensitive(found, "account");
            const char *login = api_json_str(acct, "login"), *type = api_json_str(acct, "type");
            int ok = account_ok(login) && type &&
                     (!strcmp(type, "User") || !strcmp(type, "Organization")) &&
                     api_json_int64(cJSON_GetObjectItemCaseSensitive(acct, "id"), &seen->account_id);
            if (ok) {
                snprintf(seen->account, sizeof(seen->account), "%s", login);
                snprintf(seen->account_type, sizeof(seen->account_type), "%s", type);
            }
            cJSON_Delete(j);
            if (!ok) {
                http_resp_error(resp, 502, "GITHUB_ERROR",
                                "GitHub's description of installation %" PRId64
                                "'s account is unusable",
                                id);
                return -1;
            }
            return 1;
        }
        cJSON_Delete(j);
        /* The user's token goes only to GH_API_BASE_URL. */
        if (!next[0] || !http_client_url_under(next, api))
            return 0;
        snprintf(url, sizeof(url), "%s", next);
    }
    log_warn("github: the signed-in user's installations span more than %d pages; the rest were "
             "not read",
             GITHUB_INSTALLER_MAX_PAGES);
    seen->truncated = 1;
    return 0;
}

/* Whether the signed-in user owns the installation's account: the account
 * itself, or an admin of the organization (GET /user/memberships/orgs/{org},
 * which needs the App's Organization permission Members: read, as the guide
 * sets it).  1 yes, 0 no, -1 with resp filled. */
static int owns_account(worker_ctx *w, const char *token, installer_seen *seen,
                        http_response *resp)
{
    if (!strcmp(seen->account_type, "User"))
        return seen->account_id == seen->user_id;
    char api[512], url[800];
    github_api_base(w->cfg, api, sizeof(api));
    char *org = http_client_escape(seen->account);
    if (!org) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    snprintf(url, sizeof(url), "%s/user/memberships/orgs/%s", api, org);
    free(org);
    long status;
    cJSON *j = user_get(w, url, token, &status, NULL, 0, resp);
    if (!status)
        return seen->silent = 1, -1;
    if (status == 404)
        return 0; /* not a member */
    if (status == 403) {
        http_resp_error(resp, 502, "GITHUB_DENIED",
                        "GitHub refused to tell whether %s is an owner of %s (HTTP 403): give the "
                        "App the Organization permission Members: read, as the connector guide "
                        "sets it, and accept it on the installation",
                        seen->login, seen->account);
        return -1;
    }
    if (status != 200)
        return github_refused(status, "the organization membership lookup", resp);
    const char *state = j ? api_json_str(j, "state") : NULL, *role = j ? api_json_str(j, "role") : NULL;
    /* The organization by its id, not only by the name the URL carried. */
    int64_t org_id = 0;
    const cJSON *o = j ? cJSON_GetObjectItemCaseSensitive(j, "organization") : NULL;
    int same = api_json_int64(cJSON_GetObjectItemCaseSensitive(o, "id"), &org_id) &&
               org_id == seen->account_id;
    int admin = same && state && role && !strcmp(state, "active") && !strcmp(role, "admin");
    cJSON_Delete(j);
    return admin;
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
    if (!tok || github_token_refused(tok, redirect, "GITHUB_APP_CALLBACK_URL", MSG_SECRET_HINT, resp)) {
        secret_free_n(secret, slen);
        return;
    }
    int64_t exp = 0;
    char *token = kit_oauth_access_token(tok, MAX_USER_TOKEN_LEN, (int64_t)time(NULL), &exp);
    secret_json_free(tok);
    if (!token) {
        secret_free_n(secret, slen);
        http_resp_error(resp, 502, "GITHUB_ERROR", "Invalid response from GitHub (no access token)");
        return;
    }
    installer_seen seen;
    memset(&seen, 0, sizeof(seen));
    int ok = read_user(w, token, &seen, resp);
    int found = ok < 0 ? -1 : find_installation(w, token, id, &seen, resp);
    int owner = found <= 0 ? found : owns_account(w, token, &seen, resp);
    /* Used for these reads only: revoked (unless GitHub has just stopped
     * answering, where it would only double the wait), never stored. */
    char err[320];
    if (!seen.silent && github_user_token_revoke(w, c.client_id, c.client_secret, "token", token,
                                                 err, sizeof(err)) < 0)
        log_warn("github: revoking the user token used to check installation %" PRId64
                 " failed (%s); it was not stored here",
                 id, err);
    secret_free(token);
    secret_free_n(secret, slen);
    if (owner < 0)
        return;
    if (!found) {
        log_warn("github: installation %" PRId64 " refused for org %s: GitHub user %s (user %s) "
                 "cannot access it%s",
                 id, st.org_id, seen.login, st.user_id,
                 seen.truncated ? " among the installations read" : "");
        http_resp_error(resp, 403, "GITHUB_INSTALLATION_NOT_YOURS",
                        "the GitHub account %s cannot access installation %" PRId64
                        " of this App%s: sign in to GitHub as an owner of the account it is "
                        "installed on",
                        seen.login, id,
                        seen.truncated ? " (among the first 1000 installations it can see)" : "");
        return;
    }
    if (!owner) {
        log_warn("github: installation %" PRId64 " refused for org %s: GitHub user %s (user %s) is "
                 "not an owner of %s",
                 id, st.org_id, seen.login, st.user_id, seen.account);
        http_resp_error(resp, 403, "GITHUB_INSTALLATION_NOT_YOURS",
                        "the GitHub account %s is not an owner of %s, where installation %" PRId64
                        " is installed: sign in to GitHub as an owner of %s",
                        seen.login, seen.account, id, seen.account);
        return;
    }
    log_info("github: GitHub confirmed that %s (user %s) owns %s, where installation %" PRId64
             " is installed",
             seen.login, st.user_id, seen.account, id);
    github_installation_bind(w, &st, id, action, resp);
}
