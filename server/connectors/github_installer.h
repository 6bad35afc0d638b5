/* github_installer.h — who may bind a GitHub App installation to an Aurora
 * organization.
 *
 * GitHub's post-install redirect (the App's Setup URL) carries the
 * installation id as a plain query parameter: anyone can type one.  The
 * state proves which Aurora user came back, not that this user installed
 * that installation.  With the App's OAuth client secret configured
 * (GITHUB_APP_CLIENT_SECRET, else aurora/system/github-app/client-secret),
 * an installation the organization does not hold yet is bound only once
 * GitHub confirms it: the browser is sent through the App's user
 * authorization (GitHub's web flow; a user who has authorized the App before
 * comes straight back) to the App's Callback URL, /github/callback, and the
 * signed-in GitHub user must own the installation's account: the
 * installation is among GET /user/installations of that user's token, and
 * its account is that user (GET /user) or an organization the user is an
 * admin of (GET /user/memberships/orgs/{org}, the App's Members: read).
 * The token is used for these reads only, then revoked, never stored.
 *
 * Without the secret an installation is bound as the redirect says, and a
 * warning names the setting (the connector guide's setup has no client
 * secret; docs/security.md keeps the residual, and the one of flows the
 * frontend starts, which carry no browser binding). */
#ifndef AURORA_GITHUB_INSTALLER_H
#define AURORA_GITHUB_INSTALLER_H

#include <stdint.h>

#include "http_types.h"
#include "kit_oauth.h"
#include "oauth.h"
#include "worker.h"

/* The state provider of the installer check (oauth_state.provider). */
#define GITHUB_INSTALLER_PROVIDER "github-app-user"
/* Most pages (100 installations each) of GET /user/installations read. */
#define GITHUB_INSTALLER_MAX_PAGES 10

/* Whether /github/callback takes installer states at all: the App is
 * offered (GITHUB_AUTH_MODE app or hybrid) and has a client id.  Memory only. */
int github_installer_offered(const worker_ctx *w);

/* Whether an installation must be checked: 1 (the client secret is there), 0
 * (it is not set anywhere), -1 with a 503 in resp (the secrets backend does
 * not answer: refusing is safer than binding unchecked).  Outbound pool. */
int github_installer_configured(worker_ctx *w, http_response *resp);

/* From the install callback: starts the check of installation `id` for the
 * user of st (a new state of GITHUB_INSTALLER_PROVIDER, bound as st was) and
 * answers 302 to GitHub's authorize page. */
void github_installer_start(worker_ctx *w, const oauth_state_info *st, int64_t id,
                            const char *action, http_response *resp);

/* /github/callback with an installer state (taken already): exchanges the
 * code, checks the signed-in user owns installation `id`'s account and binds
 * it; 403 GITHUB_INSTALLATION_NOT_YOURS if not.  Wipes cb. */
void github_installer_callback(worker_ctx *w, kit_oauth_callback *cb, http_response *resp);

/* Binds installation id (fetched with the App JWT) to st's organization and
 * answers the browser (github.c). */
void github_installation_bind(worker_ctx *w, const oauth_state_info *st, int64_t id,
                              const char *action, http_response *resp);

#endif
