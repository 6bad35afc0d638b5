/* github_oauth.h — the GitHub connector's OAuth fallback (connector guide:
 * GitHub, "Path B — OAuth fallback"): a classic OAuth App signs a user in
 * (github_oauth.c) and a poller keeps that user's repository state
 * (github_poll.c), for deployments that cannot receive webhooks.
 * github.c only registers these routes and merges the status fields. */
#ifndef AURORA_GITHUB_OAUTH_H
#define AURORA_GITHUB_OAUTH_H

#include "connector.h"

struct cJSON;

#define GITHUB_OAUTH_FIELD "access-token" /* the user token's secret field */

/* GET/POST /github/login, GET /github/callback (github_oauth.c) and the
 * poller's routes and periodic task (github_poll.c). */
void github_oauth_register(void);
void github_poll_register(void);
/* Store pool: adds "oauth_connected", "oauth_login" and the poller's
 * summary for `who` to the connector status; returns 1 when connected. */
int github_oauth_status(worker_ctx *w, const auth_ctx *who, struct cJSON *out);
/* connector.disconnecting: revokes the user's grant at GitHub (best effort). */
void github_oauth_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row);

/* GitHub's OAuth errors as the connector guide names them (kit_oauth_errors),
 * for the OAuth App and the GitHub App's user authorization alike; `hint`
 * says which client secret to renew when GitHub refuses it. */
#define GITHUB_KIT_OAUTH_ERRORS(hint)                                                              \
    {                                                                                              \
        .service = "GitHub", .timeout = "GITHUB_TIMEOUT", .unreachable = "GITHUB_UNREACHABLE",     \
        .grant = "GITHUB_BAD_CREDENTIALS", .denied = "GITHUB_BAD_CREDENTIALS",                     \
        .failed = "GITHUB_ERROR", .denied_hint = (hint),                                           \
        .authorization_failed = "GITHUB_OAUTH_FAILED",                                             \
        .redirect_mismatch = "GITHUB_REDIRECT_MISMATCH",                                           \
    }

/* When tok (a code exchange's answer) is GitHub's refusal (HTTP 200 with an
 * "error" field): frees tok, fills resp (400 GITHUB_REDIRECT_MISMATCH naming
 * redirect_uri and redirect_setting, or GITHUB_BAD_CREDENTIALS with
 * secret_hint for refused client credentials) and returns 1; else 0. */
int github_token_refused(struct cJSON *tok, const char *redirect_uri, const char *redirect_setting,
                         const char *secret_hint, http_response *resp);

/* GitHub's revocation of a user's authorization of an app (what = "grant":
 * every token of that user for it) or of one token ("token"): DELETE
 * {GH_API_BASE_URL}/applications/{client_id}/{what}, HTTP Basic client id and
 * secret, {"access_token": token}.  0 when GitHub accepted it, else -1 with
 * err (never a credential).  Outbound pool. */
int github_user_token_revoke(worker_ctx *w, const char *client_id, const char *client_secret,
                             const char *what, const char *token, char *err, size_t errlen);

/* The settings of both files (github.c lists them in its table). */
#define GITHUB_OAUTH_SETTINGS                                                                      \
    { "GH_OAUTH_REDIRECT_URI", "github.oauth_redirect_uri", CFG_STRING, "http://localhost:5080/github/callback", "GitHub OAuth App: callback URL as registered on the OAuth App (<API_URL>/github/callback)", 0 }, \
    { "GH_OAUTH_SCOPES", "github.oauth_scopes", CFG_STRING, "repo read:org workflow", "GitHub OAuth App: scopes asked for (space-separated)", 0 }, \
    { "GITHUB_POLL_INTERVAL_S", "github.poll_interval_s", CFG_INT, "300", "GitHub OAuth poller: seconds between two refreshes of a user's repositories, pull requests and workflow runs", 0, 1, 86400 }, \
    { "GITHUB_POLL_REPOS", "github.poll_repos", CFG_INT, "10", "GitHub OAuth poller: open PRs and recent workflow runs are read for this many most recently pushed repositories", 0, 0, 100 }, \
    { "GITHUB_POLL_MAX_PAGES", "github.poll_max_pages", CFG_INT, "5", "GitHub OAuth poller: most pages (100 repositories each) of GET /user/repos read per refresh", 0, 1, 100 },

#endif
