/* github_app.h — the GitHub App's credentials, shared by the GitHub connector
 * (github.c) and, later, its webhooks:
 *
 *  - the App private key, read from the secrets backend at
 *    aurora/system/github-app/private-key and the webhook secret
 *    (GITHUB_APP_WEBHOOK_SECRET, else aurora/system/github-app/webhook-secret),
 *    each re-read at most every GITHUB_APP_KEY_REFRESH_S seconds and swapped
 *    when its digest changes, so a rotation takes effect without a restart;
 *  - the App JWT (RS256, iat 60 s in the past, exp 10 min after iat);
 *  - installation access tokens, minted with the JWT and kept in memory until
 *    5 minutes before they expire, one mint in flight per installation;
 *  - the URLs of GitHub (GH_BASE_URL, GH_API_BASE_URL: GitHub Enterprise
 *    Server is https://<host> and https://<host>/api/v3).
 *
 * Everything here may block on the secrets backend or GitHub: outbound pool
 * only, except the *_state() readers (memory only).  Nothing here logs a key,
 * a JWT or a token. */
#ifndef AURORA_GITHUB_APP_H
#define AURORA_GITHUB_APP_H

#include <stddef.h>
#include <stdint.h>

#include "http_client.h"
#include "store.h"
#include "worker.h"

struct evp_pkey_st;

#define GITHUB_APP_JWT_BACKDATE 60   /* iat this far in the past (clock drift) */
#define GITHUB_APP_JWT_LIFETIME 600  /* exp - iat; GitHub's maximum is 10 minutes */
#define GITHUB_TOKEN_REFRESH_MARGIN 300 /* a token is minted again this long before expiry */
#define GITHUB_MAX_INSTALLATION_ID 9007199254740991LL /* 2^53-1: GitHub ids are JSON numbers */
#define GITHUB_API_VERSION "2022-11-28"

/* Where a credential stands (as last read; GITHUB_CRED_UNKNOWN before the
 * first read). */
typedef enum {
    GITHUB_CRED_UNKNOWN = 0,
    GITHUB_CRED_OK,
    GITHUB_CRED_MISSING,     /* nothing stored / not set */
    GITHUB_CRED_INVALID,     /* stored but unusable (a PEM without its newlines, …) */
    GITHUB_CRED_UNAVAILABLE, /* the secrets backend did not answer */
} github_cred_state;

const char *github_cred_state_name(github_cred_state s);

/* ---- URLs ------------------------------------------------------------------- */

/* GH_BASE_URL / GH_API_BASE_URL without trailing '/' into out. */
void github_web_base(const server_config *cfg, char *out, size_t cap);
void github_api_base(const server_config *cfg, char *out, size_t cap);

/* ---- the App's identity and key ---------------------------------------------- */

/* The JWT issuer: GITHUB_APP_CLIENT_ID (GitHub's current recommendation),
 * else GITHUB_APP_ID; NULL when neither is set. */
const char *github_app_issuer(const server_config *cfg);

/* Re-reads the private key when the last read is older than
 * GITHUB_APP_KEY_REFRESH_S (force: now).  A value that is not a loadable RSA
 * key logs "Could not deserialize key data" once per distinct value. */
github_cred_state github_app_key_refresh(worker_ctx *w, int force);
/* As last read, without I/O (status callbacks). */
github_cred_state github_app_key_state(void);

/* The claims of an App JWT issued at `now` ({"iat","exp","iss"}); an issuer
 * of digits only is written as a number (the App ID), anything else as a
 * string (the client ID).  NULL on OOM. */
struct cJSON *github_app_jwt_claims(const char *iss, int64_t now);
/* RS256 App JWT with `key`; malloc'd, NULL with err. */
char *github_app_jwt_sign(struct evp_pkey_st *key, const char *iss, int64_t now, char *err,
                          size_t errlen);
/* A fresh App JWT with the current key (refreshed when due); malloc'd
 * (release with secret_free), or NULL with err naming what is missing. */
char *github_app_jwt(worker_ctx *w, char *err, size_t errlen);

/* ---- webhook secret ------------------------------------------------------------ */

/* The current webhook secret (refreshed when due): *out malloc'd, release
 * with secret_free_n(*out, *len).  GITHUB_CRED_OK or why not. */
github_cred_state github_app_webhook_secret(worker_ctx *w, unsigned char **out, size_t *len);
/* The secrets backend's webhook secret (aurora/system/github-app/webhook-secret)
 * alone, whether GITHUB_APP_WEBHOOK_SECRET is set or not; the same way. */
github_cred_state github_app_webhook_secret_stored(worker_ctx *w, unsigned char **out,
                                                   size_t *len);
/* The App's OAuth client secret (GITHUB_APP_CLIENT_SECRET, else
 * aurora/system/github-app/client-secret), the same way: it lets the install
 * callback check the installer on GitHub (github_installer.h). */
github_cred_state github_app_client_secret(worker_ctx *w, unsigned char **out, size_t *len);

/* ---- calls to GitHub -------------------------------------------------------------- */

typedef struct {
    long status;   /* GitHub's HTTP status; 0 when none */
    int code;      /* aur_err: AUR_OK, AUR_E_INVALID (App not configured), AUR_NOT_FOUND,
                      AUR_E_DENIED (401/403), AUR_E_TIMEOUT, AUR_E_UNAVAILABLE, AUR_E_INTERNAL */
    char err[320]; /* one line for logs and answers; never a credential */
} github_result;

/* GETs or POSTs url (which must lie under GH_API_BASE_URL) with GitHub's
 * headers and "Authorization: Bearer <bearer>" (NULL: none).  want_header as
 * in http_client_req.  AUR_OK when GitHub answered (any status). */
int github_api_call(worker_ctx *w, const char *method, const char *url, const char *bearer,
                    const char *want_header, http_client_resp *out, github_result *res);

/* An installation access token valid for at least a little while: from the
 * cache, else minted (POST /app/installations/{id}/access_tokens with the
 * App JWT).  Concurrent callers for one installation share one mint; a
 * failed mint is not remembered.  *token malloc'd (secret_free).
 * AUR_OK, or the failure in res. */
int github_app_installation_token(worker_ctx *w, int64_t installation_id, char **token,
                                  github_result *res);
/* Drops a cached token (GitHub refused it, or the installation is gone). */
void github_app_token_forget(int64_t installation_id);

/* The rel="next" target of an RFC 8288 Link header (GitHub's pagination)
 * into out; 1 if found (and it fits), 0 if not. */
int github_link_next(const char *link, char *out, size_t cap);
/* "2016-07-11T22:14:10Z" -> Unix seconds; -1 if malformed. */
int64_t github_parse_time(const char *iso);
/* 1 if s is a GitHub installation id: 1..GITHUB_MAX_INSTALLATION_ID in
 * decimal digits without sign or leading zero; *out gets it. */
int github_parse_installation_id(const char *s, int64_t *out);

/* ---- shared by github.c and github_webhook.c ---------------------------------------- */

struct cJSON;
/* 1 if s is 1..max bytes of [A-Za-z0-9] and the characters in extra. */
int github_name_ok(const char *s, size_t max, const char *extra);
/* 1 if full is "owner/repo", each part 1..100 bytes of GitHub's name
 * alphabet ([A-Za-z0-9-_.]). */
int github_full_name_ok(const char *full);
/* GitHub's installation object (REST answer or a webhook's "installation")
 * -> g's description (account, selection, permissions and events rebuilt
 * from checked parts, never stored as received; suspended_at).  0, or -1
 * with what is wrong in why. */
int github_installation_from_json(const struct cJSON *j, int64_t id,
                                  store_github_installation *g, char *why, size_t cap);

/* Webhooks (github_webhook.c): mounts POST /github/webhook and the events
 * API, and registers the recovery sweep (called from github.c's routes). */
void github_webhook_register(void);
/* Assigns the deliveries of installation_id kept without an organization
 * (it is bound now), and processes them; how many, -1 on a store error
 * (the webhook sweep retries). */
int github_webhook_adopt(worker_ctx *w, int64_t installation_id);
/* Which secrets verify deliveries now (GITHUB_HOOK_SRC_* bits: a value too
 * long or empty is ignored; the backend's as last read, refreshed when due);
 * *differ: 1 when GITHUB_APP_WEBHOOK_SECRET and the backend's are both set
 * and differ.  Never a value.  Outbound pool (may read the backend). */
#define GITHUB_HOOK_SRC_SETTING 1u  /* GITHUB_APP_WEBHOOK_SECRET */
#define GITHUB_HOOK_SRC_BACKEND 2u  /* aurora/system/github-app/webhook-secret */
#define GITHUB_HOOK_SRC_PREVIOUS 4u /* GITHUB_APP_WEBHOOK_SECRET_PREVIOUS */
unsigned github_webhook_secret_sources(worker_ctx *w, int *differ);

#endif
