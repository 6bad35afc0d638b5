/* oauth.h — what every OAuth connector shares: `state` values that are
 * unguessable, bound to the user and provider, single-use and expiring, and
 * the authorization-code exchange. */
#ifndef AURORA_OAUTH_H
#define AURORA_OAUTH_H

#include "secret.h" /* token responses are released with secret_json_free */
#include <stddef.h>

#include "http.h"
#include "http_client.h"
#include "worker.h"

#define OAUTH_STATE_TTL 600 /* seconds; AURORA_OAUTH_STATE_TTL overrides */

typedef struct {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    char provider[32];
    char redirect_uri[512];
    char extra[512]; /* provider data, e.g. the OVH region */
    char started_via[16]; /* "session", "internal", "api_key" (how the flow was started) */
    char console_session[65]; /* the starting console session's hash, or "" (store.h) */
} oauth_state_info;

/* Creates a state for `who` (stored only as a hash).  out gets 43 URL-safe
 * chars.  -1 with resp filled on store errors. */
int oauth_state_new(worker_ctx *w, const auth_ctx *who, const char *provider,
                    const char *redirect_uri, const char *extra, char out[64],
                    http_response *resp);
/* As oauth_state_new, for a flow with PKCE: the verifier's 32 random bytes
 * ride with the state, masked by the state itself (which the store never
 * holds), as the first OAUTH_PKCE_MASKED_LEN characters of extra. */
#define OAUTH_PKCE_MASKED_LEN 43
int oauth_state_new_pkce(worker_ctx *w, const auth_ctx *who, const char *provider,
                         const char *redirect_uri, const char *extra,
                         const unsigned char *verifier_raw, char out[64], http_response *resp);
/* The verifier (base64url, 43 chars) back from the state a callback carries
 * and the masked value its row kept; 0, or -1 if malformed. */
int oauth_pkce_unmask(const char *state, const char *masked, char verifier[64]);
/* Consumes a state from a callback: missing, malformed, unknown, reused,
 * expired, issued for another provider, (when the callback is itself
 * authenticated) for another user, not bound to this browser
 * (oauth_binding.h), or started from a console session that has ended
 * since -> -1 with a 400 in resp that says which without revealing
 * anything.  Single use even under concurrent callbacks. */
int oauth_state_take(worker_ctx *w, const http_request *req, const char *provider,
                     oauth_state_info *out, http_response *resp);
/* The same for a callback that ends flows of several providers (GitHub's
 * /github/callback: the OAuth App's sign-in and the App's installer check);
 * providers is NULL-terminated, out->provider says whose state it was. */
int oauth_state_take_any(worker_ctx *w, const http_request *req, const char *const *providers,
                         oauth_state_info *out, http_response *resp);
/* The caller a follow-on flow of st is started for (oauth_state_new): the same
 * user, started the same way, so it is held to the same binding (a console
 * flow gets a cookie of its own in the browser that finished st, and ends
 * with the same console session). */
void oauth_state_who(const oauth_state_info *st, auth_ctx *who);
/* For a callback route registered ROUTE_PUBLIC (the provider redirects a
 * browser there): when the request carries credentials anyway (API key or
 * internal secret), authenticate them so oauth_state_take can check the
 * user.  0 (authenticated or no credentials), -1 with a 401 in resp. */
int oauth_callback_auth(worker_ctx *w, http_request *req, http_response *resp);
/* The organization whose flow a public request's `state` names, read
 * without taking the state (router_set_public_tenant, installed by
 * connectors_register): a callback then counts under that organization's
 * share of the outbound pool before its code exchange, which may wait on a
 * provider that never answers (a self-hosted base URL).  1 with org filled
 * for a well-formed state of a flow still to finish; 0 otherwise (no state,
 * or unknown, used, expired: the callback fails at once, holding no place). */
int oauth_callback_org(worker_ctx *w, const http_request *req, char org[STORE_ID_LEN]);
/* The periodic task (connectors_register): deletes states a day past their
 * expiry, so the table shrinks when nobody starts a flow too; returns the
 * seconds until the next run. */
long oauth_state_prune_task(worker_ctx *w);

/* ---- token endpoint (outbound pool only: these block) ----------------------- */

typedef struct {
    long status;      /* HTTP status of the token endpoint; 0 if none */
    int code;         /* aur_err: AUR_OK, or AUR_E_TIMEOUT (no answer within
                         AURORA_PROVIDER_TIMEOUT_MS), AUR_E_DENIED (4xx: grant, code or
                         client refused), AUR_E_UNAVAILABLE (unreachable, 5xx),
                         AUR_E_INVALID (bad URL), AUR_E_INTERNAL (OOM, not JSON) */
    char error[128];  /* the OAuth "error" field, e.g. "invalid_grant", "redirect_uri_mismatch" */
    char err[384];    /* one line for logs and messages; never a token or secret */
} oauth_result;

/* POSTs form (NULL-terminated name/value pairs; NULL values skipped),
 * form-encoded, to token_url; basic_auth "id:secret" adds HTTP Basic auth
 * (else NULL).  Returns the 2xx JSON object (free with
 * secret_json_free), or NULL with res filled. */
struct cJSON *oauth_token_post(worker_ctx *w, const char *token_url, const char *const *form,
                               const char *basic_auth, oauth_result *res);

typedef struct {
    const char *token_url;
    const char *client_id;
    const char *client_secret;
    const char *code;
    const char *redirect_uri;  /* must equal the one sent to the authorization URL */
    const char *code_verifier; /* PKCE, or NULL */
} oauth_code_exchange;

/* grant_type=authorization_code with client_id/client_secret in the body. */
struct cJSON *oauth_exchange_code(worker_ctx *w, const oauth_code_exchange *x, oauth_result *res);

#endif
