/* kit_oauth.h — the connector kit's OAuth 2.0 authorization-code flow
 * (RFC 6749, PKCE RFC 7636, revocation RFC 7009), owned once for every
 * connector that signs users in at a provider:
 *
 *   login     kit_oauth_authorize_url: a state bound to the caller (oauth.h),
 *             scopes, PKCE S256 when the provider supports it (the verifier
 *             is kept with the state, single-use, never sent to the browser)
 *   callback  kit_oauth_callback_take: the state consumed (always, even when
 *             the provider reports an error), the provider's error and a
 *             missing code reported, the redirect URI still the configured one
 *   exchange  kit_oauth_exchange: client_secret_post or HTTP Basic
 *   refresh   kit_oauth_refresh: the refresh token read through the row's
 *             reference; a rotated one is stored in its place
 *   expiry    kit_oauth_access_token: access token and when it expires
 *   revoke    kit_oauth_revoke: on disconnect, where the provider has an endpoint
 *   errors    kit_oauth_error: a token-endpoint failure as the error codes the
 *             connector guide names (kit_oauth_errors)
 *
 * Everything that calls the provider blocks: outbound pool only. */
#ifndef AURORA_KIT_OAUTH_H
#define AURORA_KIT_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "oauth.h"
#include "worker.h"

struct cJSON;

#define KIT_PKCE_VERIFIER_LEN 43 /* base64url of 32 random bytes */

/* An invalid_grant (the user's grant revoked or expired, or a spent code)
 * is the user's to redo, not the client settings' to check. */
#define KIT_OAUTH_GRANT_HINT "the authorization has expired or was revoked: reconnect via the " \
                             "Connectors page"

/* How a connector names token-endpoint failures (codes of the connector
 * guide).  Messages: "<what>: <service> did not answer within N s", "… is
 * unreachable (<detail>)", "… refused (HTTP n, <error>) — <grant_hint>" for invalid_grant,
 * "… refused (HTTP n, <error>)[ — <denied_hint>]" for the other 4xx,
 * "… answered HTTP n". */
typedef struct {
    const char *service;     /* "OVH", "Azure sign-in (Microsoft identity platform)" */
    const char *timeout;     /* 504 */
    const char *unreachable; /* 502: no answer */
    const char *grant;       /* 400: invalid_grant (code or refresh token revoked/expired) */
    const char *denied;      /* 400: any other 4xx (client or credentials refused) */
    const char *failed;      /* 502: 5xx and the rest */
    const char *denied_hint; /* appended to a 4xx message but invalid_grant's, or NULL
                                (invalid_client, unauthorized_client: the operator's client) */
    const char *grant_hint;  /* appended to an invalid_grant message; NULL: KIT_OAUTH_GRANT_HINT */
    const char *authorization_failed; /* 400: the provider's ?error= on the callback */
    const char *redirect_mismatch;    /* 400: redirect URI changed or refused */
} kit_oauth_errors;

/* One provider, as configured for this request. */
typedef struct {
    const char *provider;      /* the state's provider: the connector id */
    const char *also_provider; /* a second provider whose states the callback also ends, or
                                  NULL (GitHub's /github/callback: the App's installer check);
                                  the callback's cb->st.provider says which one it was;
                                  its states carry no PKCE verifier */
    const char *authorize_url;
    const char *token_url;
    const char *revoke_url;    /* NULL: the provider has no revocation endpoint */
    const char *client_id;
    const char *client_secret;
    const char *redirect_uri;
    const char *scope;         /* space-separated */
    const char *extra_params;  /* appended to the authorization URL as is ("a=b&c=d"), or NULL */
    int pkce;                  /* the provider supports PKCE: S256 */
    int basic_auth;            /* client_secret_basic; else client_secret_post */
    long timeout_ms;           /* connector_timeout_ms */
    const kit_oauth_errors *errors;
} kit_oauth_client;

/* POSTs form (NULL-terminated name/value pairs, NULL values skipped) to
 * url; basic_auth "id:secret" adds HTTP Basic auth.  The 2xx JSON object
 * (secret_json_free it) or NULL with res filled. */
struct cJSON *kit_oauth_token_post(const char *url, const char *const *form,
                                   const char *basic_auth, long timeout_ms, oauth_result *res);

/* ---- login ------------------------------------------------------------------------- */

/* The authorization URL for `who` (malloc'd): a new state bound to who,
 * c->provider, c->redirect_uri and extra (connector data returned by the
 * callback, e.g. a region).  NULL with resp filled. */
char *kit_oauth_authorize_url(worker_ctx *w, const auth_ctx *who, const kit_oauth_client *c,
                              const char *extra, http_response *resp);
/* Answers with url: `status` (302 adds Location) and a JSON body
 * {authorization_url, …fields of o} (o is consumed; may be NULL). */
void kit_oauth_send_url(http_response *resp, int status, const char *url, struct cJSON *o);

/* ---- callback ----------------------------------------------------------------------- */

typedef struct {
    oauth_state_info st;                      /* st.extra: the connector's extra */
    char code[4096];
    char verifier[KIT_PKCE_VERIFIER_LEN + 1]; /* "" without PKCE */
} kit_oauth_callback;

/* The callback up to the code exchange: credentials checked when sent
 * (oauth_callback_auth), the state consumed, the provider's ?error=
 * reported as 400 errors->authorization_failed "<label> failed: <error>"
 * (with an "AADSTS…"-style code from error_description when there is one),
 * then a state failure (400 OAUTH_STATE_INVALID), a missing code (400 "No
 * authorization code provided"), a state issued for another redirect URI
 * than current_redirect (400 errors->redirect_mismatch; NULL: the connector
 * checks it itself with kit_oauth_redirect_check once it knows which one).
 * 0 or -1 with resp. */
int kit_oauth_callback_take(worker_ctx *w, http_request *req, const kit_oauth_client *c,
                            const char *label, const char *current_redirect,
                            kit_oauth_callback *cb, http_response *resp);
/* 0 if the state was issued for redirect URI `current`, else -1 with a 400
 * errors->redirect_mismatch in resp (and cb wiped). */
int kit_oauth_redirect_check(const kit_oauth_client *c, kit_oauth_callback *cb,
                             const char *current, http_response *resp);
/* Wipes the code and verifier. */
void kit_oauth_callback_wipe(kit_oauth_callback *cb);

/* Exchanges cb's code (redirect URI: the state's) at c->token_url.  The
 * token answer (secret_json_free it), or NULL with resp filled
 * (kit_oauth_error with `what`).  Wipes cb. */
struct cJSON *kit_oauth_exchange(worker_ctx *w, const kit_oauth_client *c, kit_oauth_callback *cb,
                                 const char *what, http_response *resp);

/* refresh_token grant with the refresh token secret_ref names (scope: NULL
 * or the scope to ask for).  A new refresh token in the answer replaces the
 * stored one (rotation).  One refresh per secret_ref at a time in this
 * process: callers that waited behind one take its outcome (its answer
 * without the refresh token, or its failure).  A refused refresh whose
 * token was replaced meanwhile (another replica rotated it) is tried once
 * with the stored one.  A rotated refresh token the secrets backend does
 * not take is kept in this process and sent (and stored) at the next
 * refresh while the backend still holds the retired one.  The token answer
 * or NULL with resp filled:
 * missing secret -> 400 missing_code "<missing_msg>". */
struct cJSON *kit_oauth_refresh(worker_ctx *w, const kit_oauth_client *c, const char *secret_ref,
                                const char *scope, const char *what, const char *missing_code,
                                const char *missing_msg, http_response *resp);
/* kit_oauth_refresh that also gives, when it fails, the token endpoint's
 * answer in *r (status 0 when there was none, nor a secret), for a
 * connector whose provider words a refusal its own way (Atlassian). */
struct cJSON *kit_oauth_refresh_r(worker_ctx *w, const kit_oauth_client *c, const char *secret_ref,
                                  const char *scope, const char *what, const char *missing_code,
                                  const char *missing_msg, oauth_result *r, http_response *resp);

/* Holds kit_oauth_refresh of secret_ref off while a connection's
 * credentials are deleted (conn: named in the log when it has to wait): a
 * refresh under way ends first, so the refresh token it rotates is deleted
 * with the rest instead of written back after the disconnect; later ones
 * find the secret gone.  With w, a rotated refresh token kept in memory
 * (the backend refused it) is stored first, while the stored one is still
 * the retired one: a disconnect then revokes the live grant.  NULL when out
 * of memory (nothing held).  Pair with
 * kit_oauth_refresh_resume, and call no kit_oauth_refresh of that grant in
 * between. */
typedef struct kit_oauth_pause kit_oauth_pause;
kit_oauth_pause *kit_oauth_refresh_pause(worker_ctx *w, const char *secret_ref,
                                         const char *conn);
void kit_oauth_refresh_resume(kit_oauth_pause *p); /* NULL: nothing */

/* 1 when t is a token fit for an "Authorization: Bearer" header: 1 to
 * max_len bytes, each printable ASCII other than the blank (0x21-0x7e),
 * else 0 (NULL too).  Wider than RFC 6750's b64token on purpose: it keeps
 * out what could end or split a header (CR, LF, NUL, blanks, controls,
 * non-ASCII) and refuses no provider's format (Google ya29. and 1//,
 * Slack xox?-, JWTs of Atlassian and Azure, PagerDuty pdus+_, GitHub). */
int kit_oauth_token_ok(const char *t, size_t max_len);
/* 1 when scope is one of the space-separated words of list (NULL: 0). */
int kit_oauth_scope_listed(const char *list, const char *scope);
/* 1 when a token answer grants scope: its "scope" lists it, or it has no
 * "scope" (RFC 6749 5.1: then the grant is what was asked).  Providers
 * with granular consent (Google) let the user untick a scope and still
 * answer 200 with the rest. */
int kit_oauth_scope_granted(const struct cJSON *tok, const char *scope);
/* The access token of a token answer (malloc'd copy, secret_free it) and
 * its expiry (now + expires_in; 3600 s when absent or absurd, at most a
 * week).  NULL when there is none, it is longer than max_len or it is
 * not kit_oauth_token_ok. */
/* The answer's expires_in in seconds when it is a sane lifetime (0 < s <=
 * 7 days), a JSON number or a string of digits ("3599", as Azure AD v1 and
 * ADFS send it), else 0 (absent, negative, absurd, not a plain number). */
int64_t kit_oauth_expires_in(const struct cJSON *tok);
char *kit_oauth_access_token(const struct cJSON *tok, size_t max_len, int64_t now,
                             int64_t *expires_at);

/* RFC 7009: POST token (and token_type_hint) to c->revoke_url.  0 when the
 * provider accepted it (2xx), else -1 (logged; never fatal to a disconnect). */
int kit_oauth_revoke(const kit_oauth_client *c, const char *token, const char *hint);

/* A callback that got tokens (tok, the code exchange's answer; NULL:
 * nothing to do) and then refused the connection (a scope not granted, no
 * refresh token, a setup step or the store failing): dropping the tokens
 * here would leave the grant valid at the provider while the user is told
 * "refused".  The refresh token (else the access token) is revoked at
 * c->revoke_url, waiting KIT_OAUTH_REFUSED_REVOKE_MS at most, since the
 * refusal is answered after it.  Not when st's user already holds an OAuth
 * connection of c->provider for the same account (the id_token's email or
 * sub; unknown counts as the same): Google keeps one grant per account and
 * client, so the revocation would end the connection in place too.  A
 * failure is logged; the caller's answer stays what it was.  Outbound pool. */
#define KIT_OAUTH_REFUSED_REVOKE_MS 5000
void kit_oauth_revoke_refused(worker_ctx *w, const kit_oauth_client *c,
                              const oauth_state_info *st, const struct cJSON *tok);

/* A failed token request as resp (see kit_oauth_errors). */
void kit_oauth_error(const kit_oauth_client *c, const oauth_result *r, const char *what,
                     http_response *resp);

/* The end of a callback that got a grant: the refresh token of tok stored
 * as the connection's one credential (field), the row written (account, md
 * plus "access_token_expires_at"), the browser sent on (kit_oauth_connected)
 * with `shown` (consumed; NULL: a copy of md with "provider" and
 * "account").  md stays the caller's.  0, or -1 with resp filled. */
int kit_oauth_finish(worker_ctx *w, const kit_oauth_callback *cb, const char *conn,
                     const char *field, const char *account, const struct cJSON *tok,
                     struct cJSON *md, struct cJSON *shown, http_response *resp);

/* The browser's end of a connected callback: 302 to
 * FRONTEND_URL/connectors?provider=<id>&status=connected with body o
 * (consumed) plus {"connected": true}. */
void kit_oauth_connected(worker_ctx *w, http_response *resp, const char *conn, struct cJSON *o);

#endif
