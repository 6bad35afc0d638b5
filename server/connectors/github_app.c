/* github_app.c — the GitHub App's credentials; see github_app.h.
 *
 * Two process-wide caches, each behind its own mutex:
 *  - the credentials read from the secrets backend (private key, webhook
 *    secret): the last value's SHA-256, so an unchanged value is not parsed
 *    again and a changed one (a rotation) replaces the old one;
 *  - installation tokens by installation id.  A mint runs without the lock;
 *    callers that find a mint in flight wait on a condition variable for its
 *    outcome (the token, or the failure, which is handed to those waiters
 *    and then forgotten). */
#include "github_app.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "crypto.h"
#include "jwt.h"
#include "kit_call.h"
#include "kit_oauth.h"
#include "log.h"
#include "secret.h"
#include "secrets.h"
#include "timefmt.h"

#define DEFAULT_REFRESH_S 60
#define BAD_VALUES_REMEMBERED 8   /* distinct unusable values already logged */
#define TOKEN_CACHE_MAX 1024      /* installations with a cached token */
#define TOKEN_MIN_LEFT 30         /* a waiter takes a just-minted token with this much left */
#define TOKEN_MAX_LEN 1024
#define API_MAX_RESPONSE (4 * 1024 * 1024) /* a page of 100 repositories is ~0.6 MiB */

const char *github_cred_state_name(github_cred_state s)
{
    switch (s) {
    case GITHUB_CRED_OK: return "ok";
    case GITHUB_CRED_MISSING: return "missing";
    case GITHUB_CRED_INVALID: return "invalid";
    case GITHUB_CRED_UNAVAILABLE: return "unavailable";
    default: return "unknown";
    }
}

/* ---- URLs ----------------------------------------------------------------------------- */

static void base_setting(const server_config *cfg, const char *name, const char *dflt, char *out,
                         size_t cap)
{
    const char *v = server_setting(cfg, name);
    snprintf(out, cap, "%s", v ? v : dflt);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
}

void github_web_base(const server_config *cfg, char *out, size_t cap)
{
    base_setting(cfg, "GH_BASE_URL", "https://github.com", out, cap);
}

void github_api_base(const server_config *cfg, char *out, size_t cap)
{
    base_setting(cfg, "GH_API_BASE_URL", "https://api.github.com", out, cap);
}

const char *github_app_issuer(const server_config *cfg)
{
    const char *cid = server_setting(cfg, "GITHUB_APP_CLIENT_ID");
    return cid ? cid : server_setting(cfg, "GITHUB_APP_ID");
}

static long timeout_ms(const worker_ctx *w)
{
    return connector_timeout_ms(w, connector_find("github"));
}

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- credentials from the secrets backend ------------------------------------------------ */

typedef struct {
    const char *path;
    const char *what;    /* for logs */
    const char *missing; /* for logs: what its absence means */
    int optional;        /* its absence is a setting, kept while the backend is down */
    github_cred_state state;
    int64_t checked_at; /* monotonic seconds of the last read; 0: never */
    unsigned char digest[32];
    int have_digest;
    EVP_PKEY *key;        /* the private key */
    unsigned char *value; /* the webhook secret */
    size_t len;
    unsigned char bad[BAD_VALUES_REMEMBERED][32];
    size_t nbad;
    int warned_backend; /* the backend's failure was logged (until it answers again) */
} cred;

static pthread_mutex_t g_cred_mu = PTHREAD_MUTEX_INITIALIZER;
static cred g_key = { .path = SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, .what = "private key",
                      .missing = "the GitHub App is unconfigured" };
static cred g_hook = { .path = SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, .what = "webhook secret",
                       .missing = "webhooks verify against GITHUB_APP_WEBHOOK_SECRET only, and "
                                  "are refused without it" };
/* Optional: without it an installation is bound without checking who
 * installed it (github_installer.c). */
static cred g_client = { .path = SECRETS_PATH_GITHUB_APP_CLIENT_SECRET, .what = "client secret",
                         .optional = 1,
                         .missing = "installations are bound without checking on GitHub that "
                                    "the user who installed the App can access them" };

static void cred_drop(cred *c)
{
    EVP_PKEY_free(c->key);
    c->key = NULL;
    if (c->value)
        secret_free_n(c->value, c->len);
    c->value = NULL;
    c->len = 0;
}

/* 1 the first time a bad value is seen (then remembered), 0 after. */
static int first_sighting(cred *c, const unsigned char d[32])
{
    for (size_t i = 0; i < c->nbad && i < BAD_VALUES_REMEMBERED; i++)
        if (!memcmp(c->bad[i], d, 32))
            return 0;
    memcpy(c->bad[c->nbad % BAD_VALUES_REMEMBERED], d, 32);
    c->nbad++;
    return 1;
}

/* Installs a value read from the backend (g_cred_mu held). */
static void cred_take(cred *c, const unsigned char *val, size_t len)
{
    unsigned char d[32];
    crypto_sha256(val, len, d);
    if (c->have_digest && !memcmp(d, c->digest, sizeof(d)))
        return; /* unchanged: keep what was made of it (key, or the verdict) */
    int rotated = c->state == GITHUB_CRED_OK;
    cred_drop(c);
    memcpy(c->digest, d, sizeof(d));
    c->have_digest = 1;
    if (c == &g_key) {
        /* secrets_get NUL-terminates the value. */
        c->key = jwt_rsa_key_load((const char *)val);
        if (!c->key) {
            c->state = GITHUB_CRED_INVALID;
            /* The guide's message (Troubleshooting), once per distinct bad value. */
            if (first_sighting(c, d))
                log_error("Could not deserialize key data: the GitHub App private key at %s is "
                          "not a loadable RSA PEM (stored without its newlines? re-store it with "
                          "file:// or @); the GitHub App is unconfigured until it is fixed",
                          c->path);
            return;
        }
    } else {
        c->value = malloc(len);
        if (!c->value) {
            c->state = GITHUB_CRED_UNAVAILABLE;
            c->have_digest = 0;
            return;
        }
        memcpy(c->value, val, len);
        c->len = len;
    }
    c->state = GITHUB_CRED_OK;
    log_info("github: App %s %s from %s", c->what, rotated ? "changed; now using the new one" : "loaded",
             c->path);
}

/* Re-reads c when due; returns its state. */
static github_cred_state cred_refresh(worker_ctx *w, cred *c, int force)
{
    int64_t every = w->cfg ? server_setting_int(w->cfg, "GITHUB_APP_KEY_REFRESH_S") : 0;
    if (every <= 0)
        every = DEFAULT_REFRESH_S;
    int64_t now = mono_s();
    pthread_mutex_lock(&g_cred_mu);
    int due = force || c->checked_at == 0 || now - c->checked_at >= every;
    github_cred_state st = c->state;
    pthread_mutex_unlock(&g_cred_mu);
    if (!due)
        return st;

    unsigned char *val = NULL;
    size_t len = 0;
    char err[512] = "";
    int rc = w->secrets ? secrets_get(w->secrets, c->path, &val, &len, err, sizeof(err))
                        : SECRETS_E_UNAVAILABLE;
    if (!w->secrets)
        snprintf(err, sizeof(err), "the secrets backend is unavailable");
    pthread_mutex_lock(&g_cred_mu);
    c->checked_at = now ? now : 1;
    if (rc == SECRETS_OK) {
        c->warned_backend = 0;
        cred_take(c, val, len);
    } else if (rc == SECRETS_NOT_FOUND) {
        c->warned_backend = 0;
        if (c->state != GITHUB_CRED_MISSING)
            log_warn("github: no App %s at %s; %s", c->what, c->path, c->missing);
        cred_drop(c);
        c->have_digest = 0;
        c->state = GITHUB_CRED_MISSING;
    } else {
        /* err names backend, operation and path, never a value.  A value
         * already loaded stays in use while the backend is down. */
        if (!c->warned_backend)
            log_warn("github: cannot read the App %s: %s", c->what, err);
        c->warned_backend = 1;
        /* The last answer stands: a value loaded stays in use, and an
         * optional one the backend said is absent stays absent (an
         * installation is not refused for a secret never configured). */
        if (c->state != GITHUB_CRED_OK && !(c->optional && c->state == GITHUB_CRED_MISSING))
            c->state = GITHUB_CRED_UNAVAILABLE;
    }
    st = c->state;
    pthread_mutex_unlock(&g_cred_mu);
    if (val)
        secrets_free(val, len);
    return st;
}

github_cred_state github_app_key_refresh(worker_ctx *w, int force)
{
    return cred_refresh(w, &g_key, force);
}

github_cred_state github_app_key_state(void)
{
    pthread_mutex_lock(&g_cred_mu);
    github_cred_state st = g_key.state;
    pthread_mutex_unlock(&g_cred_mu);
    return st;
}

/* The backend's value at c->path (refreshed when due). */
static github_cred_state backend_value(worker_ctx *w, cred *c, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    github_cred_state st = cred_refresh(w, c, 0);
    if (st != GITHUB_CRED_OK)
        return st;
    pthread_mutex_lock(&g_cred_mu);
    if (c->state == GITHUB_CRED_OK && c->value && (*out = malloc(c->len + 1))) {
        memcpy(*out, c->value, c->len);
        (*out)[c->len] = '\0';
        *len = c->len;
    }
    st = *out ? GITHUB_CRED_OK : GITHUB_CRED_UNAVAILABLE;
    pthread_mutex_unlock(&g_cred_mu);
    return st;
}

/* The value of setting when set, else the backend's value at c->path. */
static github_cred_state setting_or_backend(worker_ctx *w, const char *setting, cred *c,
                                            unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const char *env = server_setting(w->cfg, setting);
    if (env) {
        size_t n = strlen(env);
        if (!(*out = malloc(n + 1)))
            return GITHUB_CRED_UNAVAILABLE;
        memcpy(*out, env, n + 1);
        *len = n;
        return GITHUB_CRED_OK;
    }
    return backend_value(w, c, out, len);
}

github_cred_state github_app_webhook_secret_stored(worker_ctx *w, unsigned char **out,
                                                   size_t *len)
{
    return backend_value(w, &g_hook, out, len);
}

github_cred_state github_app_webhook_secret(worker_ctx *w, unsigned char **out, size_t *len)
{
    return setting_or_backend(w, "GITHUB_APP_WEBHOOK_SECRET", &g_hook, out, len);
}

github_cred_state github_app_client_secret(worker_ctx *w, unsigned char **out, size_t *len)
{
    return setting_or_backend(w, "GITHUB_APP_CLIENT_SECRET", &g_client, out, len);
}

/* ---- App JWT ------------------------------------------------------------------------------ */

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

cJSON *github_app_jwt_claims(const char *iss, int64_t now)
{
    cJSON *c = cJSON_CreateObject();
    if (!c || !iss)
        goto fail;
    int64_t iat = now - GITHUB_APP_JWT_BACKDATE;
    if (!cJSON_AddNumberToObject(c, "iat", (double)iat) ||
        !cJSON_AddNumberToObject(c, "exp", (double)(iat + GITHUB_APP_JWT_LIFETIME)))
        goto fail;
    /* An App ID is a number in GitHub's examples; a client ID ("Iv23…") a string. */
    if (all_digits(iss) && strlen(iss) <= 15 ? !cJSON_AddNumberToObject(c, "iss", strtod(iss, NULL))
                                              : !cJSON_AddStringToObject(c, "iss", iss))
        goto fail;
    return c;
fail:
    cJSON_Delete(c);
    return NULL;
}

char *github_app_jwt_sign(EVP_PKEY *key, const char *iss, int64_t now, char *err, size_t errlen)
{
    cJSON *claims = github_app_jwt_claims(iss, now);
    if (!claims) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char *jwt = jwt_sign_rs256_key(claims, key, NULL, err, errlen);
    cJSON_Delete(claims);
    return jwt;
}

char *github_app_jwt(worker_ctx *w, char *err, size_t errlen)
{
    const char *iss = github_app_issuer(w->cfg);
    if (!iss) {
        snprintf(err, errlen, "GITHUB_APP_ID and GITHUB_APP_CLIENT_ID are not set");
        return NULL;
    }
    github_cred_state st = github_app_key_refresh(w, 0);
    pthread_mutex_lock(&g_cred_mu);
    EVP_PKEY *key = g_key.state == GITHUB_CRED_OK ? g_key.key : NULL;
    if (key)
        EVP_PKEY_up_ref(key); /* a rotation may free the cache's reference meanwhile */
    pthread_mutex_unlock(&g_cred_mu);
    if (!key) {
        if (st == GITHUB_CRED_INVALID)
            snprintf(err, errlen, "Could not deserialize key data: the private key at %s is not a "
                                  "loadable RSA PEM", SECRETS_PATH_GITHUB_APP_PRIVATE_KEY);
        else if (st == GITHUB_CRED_MISSING || st == GITHUB_CRED_OK)
            snprintf(err, errlen, "no GitHub App private key at %s",
                     SECRETS_PATH_GITHUB_APP_PRIVATE_KEY);
        else
            snprintf(err, errlen, "the GitHub App private key cannot be read (secrets backend "
                                  "unavailable)");
        return NULL;
    }
    char *jwt = github_app_jwt_sign(key, iss, (int64_t)time(NULL), err, errlen);
    EVP_PKEY_free(key);
    return jwt;
}

/* ---- calls ------------------------------------------------------------------------------- */

/* GitHub's error "message", printable ASCII only and short, or "". */
static void github_message(const http_client_resp *rp, char *out, size_t cap)
{
    out[0] = '\0';
    cJSON *j = http_client_json(rp);
    const char *m = j ? api_json_str(j, "message") : NULL;
    size_t o = 0;
    for (; m && *m && o + 1 < cap && o < 160; m++)
        if (*m >= 0x20 && *m < 0x7f)
            out[o++] = *m;
    out[o] = '\0';
    cJSON_Delete(j);
}

int github_api_call(worker_ctx *w, const char *method, const char *url, const char *bearer,
                    const char *want_header, http_client_resp *out, github_result *res)
{
    memset(out, 0, sizeof(*out));
    memset(res, 0, sizeof(*res));
    char api[512];
    github_api_base(w->cfg, api, sizeof(api));
    if (!http_client_url_under(url, api)) {
        snprintf(res->err, sizeof(res->err), "refusing a GitHub URL outside GH_API_BASE_URL");
        return res->code = AUR_E_INVALID;
    }
    if (bearer && !kit_url_private(url)) {
        snprintf(res->err, sizeof(res->err), "GH_API_BASE_URL must be https:// (tokens are never "
                 "sent in clear, except to a loopback address)");
        return res->code = AUR_E_INVALID;
    }
    char *authz = NULL;
    size_t alen = 0;
    if (bearer) {
        alen = strlen(bearer) + 32;
        if (!(authz = malloc(alen))) {
            snprintf(res->err, sizeof(res->err), "out of memory");
            return res->code = AUR_E_INTERNAL;
        }
        snprintf(authz, alen, "Authorization: Bearer %s", bearer);
    }
    const char *headers[] = { "Accept: application/vnd.github+json",
                              "X-GitHub-Api-Version: " GITHUB_API_VERSION, authz, NULL };
    int post = !strcmp(method, "POST");
    const char *capture[] = { want_header, NULL };
    http_client_req rq = { .method = method, .url = url, .headers = headers,
                           .body = post ? "" : NULL, .body_len = 0,
                           .timeout_ms = timeout_ms(w), .max_response = API_MAX_RESPONSE,
                           .capture = want_header ? capture : NULL };
    int rc = http_client_do(&rq, out);
    if (authz)
        secret_free_n(authz, alen);
    if (rc < 0) {
        res->code = rc;
        if (rc == AUR_E_TIMEOUT)
            snprintf(res->err, sizeof(res->err), "GitHub did not answer within %ld s",
                     (timeout_ms(w) + 999) / 1000);
        else
            snprintf(res->err, sizeof(res->err), "GitHub is unreachable (%s)", out->err);
        return rc;
    }
    res->status = out->status;
    return AUR_OK;
}

/* Fills res from a non-2xx answer of GitHub to `what`. */
static void status_error(const http_client_resp *rp, const char *what, github_result *res)
{
    char msg[200];
    github_message(rp, msg, sizeof(msg));
    res->status = rp->status;
    if (rp->status == 404)
        res->code = AUR_NOT_FOUND;
    else if (rp->status == 401 || rp->status == 403)
        res->code = AUR_E_DENIED;
    else
        res->code = AUR_E_UNAVAILABLE;
    /* what is short and msg at most 160 bytes: it fits; a cut would be harmless anyway. */
    int n = snprintf(res->err, sizeof(res->err), "%.100s: GitHub answered HTTP %ld%s%.160s", what,
                     rp->status, msg[0] ? ": " : "", msg);
    (void)n;
}

/* ---- installation tokens ---------------------------------------------------------------------- */

typedef struct {
    int64_t id; /* 0: free slot */
    char *token;
    int64_t expires_at;
    int minting;
    int waiters;
    uint64_t gen;       /* mints finished */
    github_result last; /* outcome of the last finished mint */
} token_entry;

static pthread_mutex_t g_tok_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_tok_cv = PTHREAD_COND_INITIALIZER;
static token_entry g_tok[TOKEN_CACHE_MAX];

static void entry_clear_token(token_entry *e)
{
    secret_free(e->token);
    e->token = NULL;
    e->expires_at = 0;
}

/* The entry of id, or a new one (an idle slot is reused, stale tokens first);
 * NULL when every slot is busy.  g_tok_mu held. */
static token_entry *entry_for(int64_t id)
{
    token_entry *victim = NULL;
    for (size_t i = 0; i < TOKEN_CACHE_MAX; i++) {
        token_entry *e = &g_tok[i];
        if (e->id == id)
            return e;
        if (e->minting || e->waiters)
            continue;
        if (!victim || !e->id || (victim->id && e->expires_at < victim->expires_at))
            victim = e;
    }
    if (!victim)
        return NULL;
    entry_clear_token(victim);
    memset(victim, 0, sizeof(*victim));
    victim->id = id;
    return victim;
}

static int mint(worker_ctx *w, int64_t id, char **token, int64_t *expires_at, github_result *res)
{
    char err[256] = "", api[512], url[640];
    char *jwt = github_app_jwt(w, err, sizeof(err));
    if (!jwt) {
        memset(res, 0, sizeof(*res));
        snprintf(res->err, sizeof(res->err), "the GitHub App is not configured: %s", err);
        return res->code = AUR_E_INVALID;
    }
    github_api_base(w->cfg, api, sizeof(api));
    snprintf(url, sizeof(url), "%s/app/installations/%" PRId64 "/access_tokens", api, id);
    http_client_resp rp;
    int rc = github_api_call(w, "POST", url, jwt, NULL, &rp, res);
    secret_free(jwt);
    if (rc < 0)
        return rc;
    if (rp.status != 201 && rp.status != 200) {
        char what[96];
        snprintf(what, sizeof(what), "minting a token for installation %" PRId64, id);
        status_error(&rp, what, res);
        if (rp.status == 401)
            snprintf(res->err + strlen(res->err), sizeof(res->err) - strlen(res->err),
                     " (GitHub refused the App JWT: check GITHUB_APP_ID / GITHUB_APP_CLIENT_ID "
                     "and the private key)");
        http_client_resp_free(&rp);
        return res->code;
    }
    cJSON *j = http_client_json(&rp);
    http_client_resp_free(&rp);
    const char *t = j ? api_json_str(j, "token") : NULL;
    const char *exp = j ? api_json_str(j, "expires_at") : NULL;
    int64_t e = exp ? github_parse_time(exp) : -1;
    if (!kit_oauth_token_ok(t, TOKEN_MAX_LEN) || e <= 0 || !(*token = strdup(t))) {
        secret_json_free(j);
        snprintf(res->err, sizeof(res->err),
                 "GitHub answered the token request without a usable token and expires_at");
        return res->code = AUR_E_UNAVAILABLE;
    }
    *expires_at = e;
    secret_json_free(j);
    return res->code = AUR_OK;
}

int github_app_installation_token(worker_ctx *w, int64_t installation_id, char **token,
                                  github_result *res)
{
    memset(res, 0, sizeof(*res));
    *token = NULL;
    pthread_mutex_lock(&g_tok_mu);
    token_entry *e = entry_for(installation_id);
    if (!e) {
        pthread_mutex_unlock(&g_tok_mu);
        snprintf(res->err, sizeof(res->err), "too many GitHub installations minting at once");
        return res->code = AUR_E_UNAVAILABLE;
    }
    for (;;) {
        int64_t now = (int64_t)time(NULL);
        if (e->token && e->expires_at - GITHUB_TOKEN_REFRESH_MARGIN > now)
            goto hand_out;
        if (!e->minting)
            break;
        uint64_t gen = e->gen;
        e->waiters++;
        while (e->minting && e->gen == gen)
            pthread_cond_wait(&g_tok_cv, &g_tok_mu);
        e->waiters--;
        /* The mint we waited for: its token even if short-lived, or its failure. */
        if (e->gen != gen) {
            if (e->token && e->expires_at - TOKEN_MIN_LEFT > (int64_t)time(NULL))
                goto hand_out;
            if (e->last.code != AUR_OK) {
                *res = e->last;
                pthread_mutex_unlock(&g_tok_mu);
                return res->code;
            }
        }
    }
    e->minting = 1;
    pthread_mutex_unlock(&g_tok_mu);

    char *fresh = NULL;
    int64_t expires_at = 0;
    int rc = mint(w, installation_id, &fresh, &expires_at, res);

    pthread_mutex_lock(&g_tok_mu);
    e->minting = 0; /* e stays this installation's: a minting slot is never reused */
    e->gen++;
    e->last = *res;
    entry_clear_token(e);
    if (rc == AUR_OK && fresh) {
        e->token = strdup(fresh);
        e->expires_at = e->token ? expires_at : 0;
        if (expires_at - GITHUB_TOKEN_REFRESH_MARGIN <= (int64_t)time(NULL))
            log_info("github: token of installation %" PRId64 " expires within %d s; the next "
                     "call mints another", installation_id, GITHUB_TOKEN_REFRESH_MARGIN);
    }
    pthread_cond_broadcast(&g_tok_cv);
    pthread_mutex_unlock(&g_tok_mu);
    if (rc != AUR_OK)
        return rc;
    log_info("github: minted a token for installation %" PRId64, installation_id);
    *token = fresh;
    return AUR_OK;

hand_out:
    *token = strdup(e->token);
    pthread_mutex_unlock(&g_tok_mu);
    if (!*token) {
        snprintf(res->err, sizeof(res->err), "out of memory");
        return res->code = AUR_E_INTERNAL;
    }
    return AUR_OK;
}

void github_app_token_forget(int64_t installation_id)
{
    pthread_mutex_lock(&g_tok_mu);
    for (size_t i = 0; i < TOKEN_CACHE_MAX; i++)
        if (g_tok[i].id == installation_id)
            entry_clear_token(&g_tok[i]);
    pthread_mutex_unlock(&g_tok_mu);
}

/* ---- parsing ----------------------------------------------------------------------------------- */

int64_t github_parse_time(const char *iso)
{
    /* Exactly YYYY-MM-DDTHH:MM:SSZ, as GitHub writes it. */
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (!iso || strlen(iso) != sizeof(shape) - 1)
        return -1;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? (iso[i] < '0' || iso[i] > '9') : iso[i] != shape[i])
            return -1;
    int64_t t; /* real dates only (no Feb 30, no second 60) */
    return time_parse_rfc3339(iso, &t) == 0 && t >= 0 ? t : -1;
}

int github_parse_installation_id(const char *s, int64_t *out)
{
    if (!s || !*s || *s == '0' || strlen(s) > 16 || !all_digits(s))
        return 0;
    long long v = strtoll(s, NULL, 10);
    if (v <= 0 || v > GITHUB_MAX_INSTALLATION_ID)
        return 0;
    *out = v;
    return 1;
}

int github_link_next(const char *link, char *out, size_t cap)
{
    /* <url>; rel="next", <url>; rel="last" — a URL cannot hold '>' unescaped. */
    for (const char *p = link; p && *p;) {
        const char *lt = strchr(p, '<');
        const char *gt = lt ? strchr(lt + 1, '>') : NULL;
        if (!gt)
            return 0;
        const char *end = strchr(gt, ','); /* the parameters of this link end here */
        size_t plen = end ? (size_t)(end - gt) : strlen(gt);
        char params[256];
        snprintf(params, sizeof(params), "%.*s", (int)(plen < sizeof(params) ? plen : sizeof(params) - 1), gt + 1);
        int is_next = 0;
        for (char *q = params; (q = strstr(q, "rel=")) != NULL; q += 4) {
            const char *v = q + 4;
            if (*v == '"')
                v++;
            /* rel may list several types: rel="next last" */
            for (const char *t = v; *t && *t != '"' && *t != ';';) {
                size_t n = strcspn(t, " \";");
                if (n == 4 && !strncmp(t, "next", 4))
                    is_next = 1;
                t += n;
                while (*t == ' ')
                    t++;
            }
        }
        size_t ulen = (size_t)(gt - lt - 1);
        if (is_next) {
            if (ulen == 0 || ulen >= cap)
                return 0;
            for (const char *c = lt + 1; c < gt; c++)
                if (*c == '<' || (unsigned char)*c <= 0x20 || *c == 0x7f)
                    return 0; /* no URL holds these */
            memcpy(out, lt + 1, ulen);
            out[ulen] = '\0';
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}
