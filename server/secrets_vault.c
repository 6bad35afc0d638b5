/* secrets_vault.c — HashiCorp Vault KV version 2 as a secrets backend.
 *
 * HTTP API used (Vault's documented endpoints):
 *   POST   /v1/<mount>/data/<path>      {"data":{"value":…}}   create or update
 *   GET    /v1/<mount>/data/<path>                              read latest version
 *   DELETE /v1/<mount>/metadata/<path>                          delete every version
 *   LIST   /v1/<mount>/metadata/<dir>/                          keys ("x", "sub/")
 *   POST   /v1/auth/kubernetes/login    {"role","jwt"}          Kubernetes auth
 * with the token in X-Vault-Token.
 *
 * Path mapping: the logical path aurora/<rest> lives at <VAULT_PREFIX><rest>
 * inside the KV mount VAULT_KV_MOUNT (default "aurora", prefix empty), which
 * is exactly where the guide's `vault kv put aurora/system/github-app/…`
 * writes.  The value is the field "value" of the secret, as `vault kv put
 * <path> value=@file.pem` stores it; bytes that are not UTF-8 text are
 * stored base64-encoded with "encoding":"base64" beside them, so a PEM stays
 * readable in Vault's UI and CLI.
 *
 * Auth: VAULT_TOKEN, or Kubernetes (the pod's service-account JWT exchanged
 * for a token at login, renewed by logging in again when its lease is near
 * its end or Vault answers 403).  A VAULT_TOKEN with a TTL is looked up
 * (GET /v1/auth/token/lookup-self) by the periodic upkeep (secrets_maintain)
 * and renewed (POST /v1/auth/token/renew-self) once half its TTL is spent;
 * one Vault will not renew (not renewable, at its maximum TTL) is logged
 * with the time it expires.
 *
 * Failures: 403 → DENIED, 404 → NOT_FOUND, 429/5xx and transport errors →
 * UNAVAILABLE after two retries with backoff (a timeout is not retried: the
 * caller waits at most one timeout).  Vault's error strings are
 * passed on (they name paths and policies, never values).
 */
#include "secrets.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "breaker.h"
#include "crypto.h"
#include "http_client.h"
#include "log.h"
#include "utf8.h"

#define VAULT_ATTEMPTS 3
#define JWT_MAX 16384
#define LIST_MAX_DEPTH 16
#define DEFAULT_JWT_PATH "/var/run/secrets/kubernetes.io/serviceaccount/token"
#define UPKEEP_MIN_S 5      /* the token's upkeep runs at most this often */
#define UPKEEP_MAX_S 3600   /* ... and at least this often */
#define UPKEEP_RETRY_S 30   /* after a lookup or renewal Vault did not answer */
#define UPKEEP_REFUSED_S 600 /* after Vault refused the token its own lookup */

typedef struct {
    pthread_mutex_t mu; /* guards token and token_expiry */
    char addr[512];
    char mount[128];
    char prefix[260]; /* "" or "folder/…/" */
    char cacert[1024];
    int k8s;
    char role[128];
    char jwt_path[1024];
    char token[2048];
    time_t token_expiry; /* 0: does not expire (or unknown) */
    long timeout_ms;
    size_t list_max; /* a listing's bound (secrets_config.list_max_paths; list_dir) */
    breaker *breaker; /* fails calls fast while Vault does not answer (breaker.h) */
    /* Kubernetes logins tried so far (read without the lock by a caller about
     * to wait for one) and how the last one ended: callers that queued behind
     * a login that failed take its answer instead of each trying in turn,
     * which against a silent Vault would cost one timeout per caller. */
    atomic_uint logins;
    int last_login_rc;
    char last_login_err[300];
    /* the token's upkeep (vault_maintain: one run at a time) */
    time_t warned_expiry; /* the expiry time last logged as one no renewal moves */
    char warned_at[48];   /* ... as logged */
    int refused_logged;   /* Vault refuses the token: logged once until it takes it again */
    int static_logged;    /* a token without TTL: logged once */
} vault_t;

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copies s without leading/trailing slashes into out. */
static int trim_slashes(const char *s, char *out, size_t cap)
{
    while (s && *s == '/')
        s++;
    size_t n = s ? strlen(s) : 0;
    while (n && s[n - 1] == '/')
        n--;
    if (n >= cap)
        return -1;
    memcpy(out, s ? s : "", n);
    out[n] = '\0';
    return 0;
}

static int seg_chars_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '/' || *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static void vault_close(void *impl)
{
    vault_t *v = impl;
    if (!v)
        return;
    OPENSSL_cleanse(v->token, sizeof(v->token));
    breaker_put(v->breaker);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

static int vault_open(const secrets_config *cfg, void **impl, char *err, size_t errlen)
{
    *impl = NULL;
    const char *addr = cfg->vault_addr;
    if (!addr || !*addr) {
        say(err, errlen, "VAULT_ADDR is not set");
        return SECRETS_E_INVALID;
    }
    if (!http_client_url_ok(addr, 0)) {
        say(err, errlen, "VAULT_ADDR must be an http:// or https:// url (no user name or password)");
        return SECRETS_E_INVALID;
    }
    vault_t *v = calloc(1, sizeof(*v));
    if (!v) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    pthread_mutex_init(&v->mu, NULL);
    int rc = SECRETS_OK;
    size_t alen = strlen(addr);
    while (alen && addr[alen - 1] == '/')
        alen--;
    char prefix[256];
    if (alen >= sizeof(v->addr)) {
        say(err, errlen, "VAULT_ADDR is too long");
        rc = SECRETS_E_INVALID;
    } else if (trim_slashes(cfg->vault_kv_mount && *cfg->vault_kv_mount ? cfg->vault_kv_mount
                                                                         : "aurora",
                            v->mount, sizeof(v->mount)) < 0 ||
               !v->mount[0] || !seg_chars_ok(v->mount) || strstr(v->mount, "..")) {
        say(err, errlen, "VAULT_KV_MOUNT must be a mount path of A-Z a-z 0-9 / _ - .");
        rc = SECRETS_E_INVALID;
    } else if (cfg->vault_cacert && strlen(cfg->vault_cacert) >= sizeof(v->cacert)) {
        say(err, errlen, "VAULT_CACERT is too long");
        rc = SECRETS_E_INVALID;
    } else if (trim_slashes(cfg->vault_prefix, prefix, sizeof(prefix)) < 0 ||
               !seg_chars_ok(prefix) || strstr(prefix, "..") || strstr(prefix, "//")) {
        say(err, errlen, "VAULT_PREFIX must be a folder path of A-Z a-z 0-9 / _ - .");
        rc = SECRETS_E_INVALID;
    }
    if (rc == SECRETS_OK) {
        memcpy(v->addr, addr, alen);
        v->addr[alen] = '\0';
        snprintf(v->prefix, sizeof(v->prefix), "%s%s", prefix, prefix[0] ? "/" : "");
        snprintf(v->cacert, sizeof(v->cacert), "%s", cfg->vault_cacert ? cfg->vault_cacert : "");
        v->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : SECRETS_DEFAULT_TIMEOUT_MS;
        v->list_max = cfg->list_max_paths ? cfg->list_max_paths : SECRETS_LIST_MAX_PATHS;
        /* Shared by every handle on this address; a probe may take one
         * timeout and the retries' backoff. */
        char label[600];
        snprintf(label, sizeof(label), "Vault at %s", v->addr);
        v->breaker = breaker_get(BREAKER_SECRETS, v->addr, label, (int)v->timeout_ms + 5000);
        const char *method = cfg->vault_auth_method && *cfg->vault_auth_method
                                 ? cfg->vault_auth_method
                                 : "token";
        if (!strcmp(method, "kubernetes")) {
            v->k8s = 1;
            if (!cfg->vault_k8s_role || !*cfg->vault_k8s_role ||
                strlen(cfg->vault_k8s_role) >= sizeof(v->role)) {
                say(err, errlen, "VAULT_AUTH_METHOD=kubernetes needs VAULT_K8S_ROLE");
                rc = SECRETS_E_INVALID;
            } else {
                snprintf(v->role, sizeof(v->role), "%s", cfg->vault_k8s_role);
                snprintf(v->jwt_path, sizeof(v->jwt_path), "%s",
                         cfg->vault_k8s_jwt_path && *cfg->vault_k8s_jwt_path
                             ? cfg->vault_k8s_jwt_path
                             : DEFAULT_JWT_PATH);
            }
        } else if (!strcmp(method, "token")) {
            if (!cfg->vault_token || !*cfg->vault_token ||
                strlen(cfg->vault_token) >= sizeof(v->token)) {
                say(err, errlen, "VAULT_AUTH_METHOD=token needs VAULT_TOKEN");
                rc = SECRETS_E_INVALID;
            } else {
                snprintf(v->token, sizeof(v->token), "%s", cfg->vault_token);
            }
        } else {
            say(err, errlen, "VAULT_AUTH_METHOD must be token or kubernetes");
            rc = SECRETS_E_INVALID;
        }
    }
    if (rc != SECRETS_OK) {
        vault_close(v);
        return rc;
    }
    *impl = v;
    return SECRETS_OK;
}

/* ---- HTTP ------------------------------------------------------------------ */

/* "HTTP 403: permission denied" from Vault's {"errors":[…]}. */
static void describe(const http_client_resp *r, char *err, size_t errlen)
{
    char msg[200] = "";
    cJSON *j = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors");
    cJSON *e;
    size_t o = 0;
    cJSON_ArrayForEach(e, errs)
    {
        if (cJSON_IsString(e) && o + 3 < sizeof(msg)) {
            int n = snprintf(msg + o, sizeof(msg) - o, "%s%s", o ? "; " : "", e->valuestring);
            o = n < 0 ? o : (o + (size_t)n < sizeof(msg) ? o + (size_t)n : sizeof(msg) - 1);
        }
    }
    cJSON_Delete(j);
    secrets_printable(msg); /* the answer comes from the network */
    say(err, errlen, "Vault answered HTTP %ld%s%s", r->status, msg[0] ? ": " : "", msg);
}

static int map_status(long status)
{
    if (status >= 200 && status < 300)
        return SECRETS_OK;
    if (status == 404)
        return SECRETS_NOT_FOUND;
    if (status == 401 || status == 403)
        return SECRETS_E_DENIED;
    if (status == 429 || status >= 500)
        return SECRETS_E_UNAVAILABLE;
    return SECRETS_E_OTHER;
}

/* One request with retries of what may pass (429, 5xx, transport).
 * SECRETS_OK with *resp filled for 2xx; the body is released otherwise.
 * deadline (secrets_mono_ms; 0: none) ends the attempts and the backoff between
 * them early: each attempt waits at most what is left of it. */
static int send_with_retries(vault_t *v, const char *method, const char *url, const char *token,
                             const char *body, size_t body_len, long long deadline,
                             http_client_resp *resp, char *err, size_t errlen)
{
    char tokhdr[2100];
    const char *hdrs[3] = { "Content-Type: application/json", NULL, NULL };
    if (token) {
        snprintf(tokhdr, sizeof(tokhdr), "X-Vault-Token: %s", token);
        hdrs[1] = tokhdr;
    }
    http_client_req req = { .method = method,
                      .url = url,
                      .headers = hdrs,
                      .body = body,
                      .body_len = body_len,
                      .timeout_ms = v->timeout_ms,
                      .cacert = v->cacert[0] ? v->cacert : NULL };
    int rc = SECRETS_E_UNAVAILABLE, probe = 0, reached = 0, unreached = 0;
    char why[192];
    if (!breaker_admit(v->breaker, &probe, why, sizeof(why))) {
        say(err, errlen, "Vault at %s %s", v->addr, why);
        memset(resp, 0, sizeof(*resp));
        OPENSSL_cleanse(tokhdr, sizeof(tokhdr));
        return SECRETS_E_UNAVAILABLE;
    }
    for (int attempt = 1; attempt <= VAULT_ATTEMPTS; attempt++) {
        int next = secrets_next_attempt(attempt, deadline, v->timeout_ms, &req.timeout_ms);
        if (next == 0)
            break; /* err holds the last attempt's failure */
        if (next < 0) {
            say(err, errlen, "Vault at %s: no time left for the request", v->addr);
            break;
        }
        if (http_client_do(&req, resp) < 0) {
            say(err, errlen, "Vault at %s unreachable: %s", v->addr, resp->err);
            rc = SECRETS_E_UNAVAILABLE;
            /* A wait cut short by the deadline says nothing of whether Vault
             * answers: the breaker is not told it does not. */
            if (!(resp->code == AUR_E_TIMEOUT && req.timeout_ms < v->timeout_ms))
                unreached |= resp->unreached;
            if (resp->code == AUR_E_TIMEOUT)
                break;
            continue;
        }
        reached = 1;
        rc = map_status(resp->status);
        if (rc == SECRETS_OK)
            break;
        describe(resp, err, errlen);
        http_client_resp_free(resp);
        if (rc != SECRETS_E_UNAVAILABLE)
            break;
    }
    /* Any HTTP answer (a 503 of a sealed Vault included) is Vault answering. */
    /* A certificate it refused, an oversized answer: Vault is there, the
     * breaker learns nothing (and its callers keep the real reason). */
    breaker_report(v->breaker, probe,
                   reached     ? BREAKER_REACHED
                   : unreached ? BREAKER_UNREACHABLE
                               : BREAKER_NOT_ASKED,
                   reached ? NULL : err);
    OPENSSL_cleanse(tokhdr, sizeof(tokhdr));
    return rc;
}

/* Kubernetes auth: exchanges the service-account JWT for a Vault token.
 * Called with v->mu held. */
static int k8s_login(vault_t *v, char *err, size_t errlen)
{
    size_t jwtcap = 0;
    const char *why = "";
    char *jwt = secrets_read_token_file(v->jwt_path, JWT_MAX, &jwtcap, &why);
    if (!jwt) {
        say(err, errlen, "Kubernetes auth: the service-account token %s is %s", v->jwt_path, why);
        return strcmp(why, "out of memory") ? SECRETS_E_DENIED : SECRETS_E_OTHER;
    }
    cJSON *body = cJSON_CreateObject();
    char *text = NULL;
    if (body && cJSON_AddStringToObject(body, "role", v->role) &&
        cJSON_AddStringToObject(body, "jwt", jwt))
        text = secret_json_print(body); /* no outgrown copies of the JWT left freed */
    /* The JWT is a credential: wiped from every copy made here. */
    cJSON *jw = cJSON_GetObjectItemCaseSensitive(body, "jwt");
    if (jw && jw->valuestring)
        OPENSSL_cleanse(jw->valuestring, strlen(jw->valuestring));
    cJSON_Delete(body);
    secret_free_n(jwt, jwtcap);
    if (!text) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    char url[700];
    snprintf(url, sizeof(url), "%s/v1/auth/kubernetes/login", v->addr);
    http_client_resp r;
    char detail[300];
    int rc = send_with_retries(v, "POST", url, NULL, text, strlen(text), 0, &r, detail,
                               sizeof(detail));
    secret_free(text);
    if (rc != SECRETS_OK) {
        /* Vault answers a bad role or JWT with 400 or 403. */
        say(err, errlen, "Kubernetes auth login (role %s) failed: %s", v->role, detail);
        return rc == SECRETS_E_OTHER ? SECRETS_E_DENIED : rc;
    }
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    cJSON *auth = cJSON_GetObjectItemCaseSensitive(j, "auth");
    cJSON *tok = cJSON_GetObjectItemCaseSensitive(auth, "client_token");
    cJSON *lease = cJSON_GetObjectItemCaseSensitive(auth, "lease_duration");
    if (cJSON_IsString(tok) && tok->valuestring[0] &&
        strlen(tok->valuestring) < sizeof(v->token)) {
        snprintf(v->token, sizeof(v->token), "%s", tok->valuestring);
        double secs = cJSON_IsNumber(lease) ? lease->valuedouble : 0;
        /* Log in again at 90 % of the lease rather than at its edge. */
        v->token_expiry = secs > 0 ? time(NULL) + (time_t)(secs * 0.9) : 0;
        OPENSSL_cleanse(tok->valuestring, strlen(tok->valuestring));
    } else {
        say(err, errlen, "Kubernetes auth login: answer without auth.client_token");
        rc = SECRETS_E_OTHER;
    }
    cJSON_Delete(j);
    http_client_resp_free(&r);
    return rc;
}

/* Copies the current token (logging in first when needed) into tok, and
 * into *gen the number of logins when it was handed out.  refused: the
 * generation of a token Vault has just refused (NULL: none), so a login is
 * needed unless another caller has logged in since; then its token, or its
 * failure, is this caller's too: callers holding a revoked token log in
 * once between them, not once each. */
static int current_token(vault_t *v, char *tok, size_t cap, unsigned *gen, const unsigned *refused,
                         char *err, size_t errlen)
{
    int rc = SECRETS_OK;
    unsigned seen = refused ? *refused : atomic_load(&v->logins);
    pthread_mutex_lock(&v->mu);
    int stale = !v->token[0] || (v->token_expiry && time(NULL) >= v->token_expiry);
    if (v->k8s && (refused || stale)) {
        if (atomic_load(&v->logins) != seen && (v->last_login_rc != SECRETS_OK || !stale)) {
            /* A login ended while this call waited (or since its token was
             * refused): its answer. */
            rc = v->last_login_rc;
            if (rc != SECRETS_OK)
                say(err, errlen, "%s", v->last_login_err);
        } else {
            OPENSSL_cleanse(v->token, sizeof(v->token));
            v->token[0] = '\0';
            rc = k8s_login(v, err, errlen);
            v->last_login_rc = rc;
            snprintf(v->last_login_err, sizeof(v->last_login_err), "%s", rc ? err : "");
            atomic_fetch_add(&v->logins, 1);
        }
    }
    if (rc == SECRETS_OK)
        snprintf(tok, cap, "%s", v->token);
    *gen = atomic_load(&v->logins);
    pthread_mutex_unlock(&v->mu);
    return rc;
}

/* An authenticated KV call on /v1/<mount>/<kind>/<inside path>; deadline as
 * send_with_retries'. */
static int kv_call(vault_t *v, const char *method, const char *kind, const char *inside,
                   const char *body, size_t body_len, long long deadline, http_client_resp *resp,
                   char *err, size_t errlen)
{
    char url[1200], tok[2048];
    int n = snprintf(url, sizeof(url), "%s/v1/%s/%s/%s", v->addr, v->mount, kind, inside);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        say(err, errlen, "url too long");
        return SECRETS_E_INVALID;
    }
    unsigned gen = 0;
    int rc = current_token(v, tok, sizeof(tok), &gen, NULL, err, errlen);
    int sent = rc == SECRETS_OK; /* else the login itself failed: nothing to refresh */
    if (sent)
        rc = send_with_retries(v, method, url, tok, body, body_len, deadline, resp, err, errlen);
    /* A Kubernetes-auth token may have been revoked or expired early: one
     * fresh login, one more try. */
    if (sent && rc == SECRETS_E_DENIED && v->k8s) {
        char e2[300];
        unsigned refused = gen;
        if (current_token(v, tok, sizeof(tok), &gen, &refused, e2, sizeof(e2)) == SECRETS_OK)
            rc = send_with_retries(v, method, url, tok, body, body_len, deadline, resp, err,
                                   errlen);
    }
    OPENSSL_cleanse(tok, sizeof(tok));
    return rc;
}

/* ---- the token's upkeep (VAULT_TOKEN) ------------------------------------------ */

static long upkeep_clamp(double s)
{
    return s < UPKEEP_MIN_S ? UPKEEP_MIN_S : s > UPKEEP_MAX_S ? UPKEEP_MAX_S : (long)s;
}

/* /v1/auth/token/<what> with the token; SECRETS_OK with the answer's JSON. */
static int token_self(vault_t *v, const char *method, const char *what, cJSON **out, char *err,
                      size_t errlen)
{
    char url[700], tok[2048];
    snprintf(url, sizeof(url), "%s/v1/auth/token/%s", v->addr, what);
    pthread_mutex_lock(&v->mu);
    snprintf(tok, sizeof(tok), "%s", v->token);
    pthread_mutex_unlock(&v->mu);
    http_client_resp r;
    const char *body = strcmp(method, "GET") ? "{}" : NULL;
    int rc = send_with_retries(v, method, url, tok, body, body ? strlen(body) : 0, 0, &r, err,
                               errlen);
    OPENSSL_cleanse(tok, sizeof(tok));
    *out = NULL;
    if (rc != SECRETS_OK)
        return rc;
    *out = cJSON_ParseWithLength(r.body, r.len);
    /* Both answers name the token again: renew-self's auth.client_token,
     * lookup-self's data.id.  Wiped here, as the callers free the tree. */
    cJSON *auth = cJSON_GetObjectItemCaseSensitive(*out, "auth");
    cJSON *ct = cJSON_GetObjectItemCaseSensitive(auth, "client_token");
    if (cJSON_IsString(ct))
        OPENSSL_cleanse(ct->valuestring, strlen(ct->valuestring));
    cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(*out, "data"), "id");
    if (cJSON_IsString(id))
        OPENSSL_cleanse(id->valuestring, strlen(id->valuestring));
    OPENSSL_cleanse(r.body, r.len);
    http_client_resp_free(&r);
    if (!*out) {
        say(err, errlen, "Vault's answer to %s is not JSON", what);
        return SECRETS_E_OTHER;
    }
    return SECRETS_OK;
}

static double num_of(const cJSON *o, const char *key)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(n) ? n->valuedouble : 0;
}

/* Logs, once per expiry time, that the token ends then whatever happens:
 * at Vault's expire_time (lookup-self) when it gives one, else in ttl s. */
static void warn_expiry(vault_t *v, const cJSON *expire_time, double ttl, const char *why)
{
    char when[48] = "";
    const char *vt = cJSON_GetStringValue(expire_time);
    if (vt && strlen(vt) < sizeof(when)) {
        snprintf(when, sizeof(when), "%s", vt);
        secrets_printable(when); /* Vault's text */
        if (!strcmp(when, v->warned_at))
            return;
    } else {
        time_t at = time(NULL) + (time_t)ttl;
        if (v->warned_expiry && labs((long)(at - v->warned_expiry)) <= UPKEEP_MIN_S)
            return;
        v->warned_expiry = at;
        struct tm tm;
        gmtime_r(&at, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    snprintf(v->warned_at, sizeof(v->warned_at), "%s", when);
    log_warn("secrets: Vault at %s: VAULT_TOKEN %s: it expires at %s (in %.0f s), and every "
             "secrets call fails from then on; give the server a renewable (or periodic) token "
             "or a new one before then",
             v->addr, why, when, ttl);
}

/* A VAULT_TOKEN with a TTL expired unnoticed: nothing renewed it, and every
 * call failed DENIED from then on.  Looked up each run; renewed once half
 * its TTL (its period, or the TTL it was created with) is spent, which
 * leaves the other half for retries while Vault is away. */
static long vault_maintain(void *impl)
{
    vault_t *v = impl;
    if (v->k8s)
        return 0; /* logs in again near the end of each lease (current_token) */
    cJSON *j = NULL;
    char err[300];
    int rc = token_self(v, "GET", "lookup-self", &j, err, sizeof(err));
    if (rc == SECRETS_E_DENIED) {
        if (!v->refused_logged)
            log_error("secrets: Vault at %s refuses VAULT_TOKEN its own lookup (%s): it expired "
                      "or was revoked (then every secrets call fails until the server is given "
                      "a valid token), or its policies lack Vault's default policy "
                      "(auth/token/lookup-self and renew-self): then it is never renewed",
                      v->addr, err);
        v->refused_logged = 1;
        return UPKEEP_REFUSED_S;
    }
    if (rc != SECRETS_OK) {
        log_warn("secrets: cannot look VAULT_TOKEN up at %s (%s); trying again in %d s", v->addr,
                 err, UPKEEP_RETRY_S);
        cJSON_Delete(j);
        return UPKEEP_RETRY_S;
    }
    v->refused_logged = 0;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    double ttl = num_of(data, "ttl");
    double period = num_of(data, "period");
    if (period <= 0)
        period = num_of(data, "creation_ttl");
    int renewable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "renewable"));
    const cJSON *expire_time = cJSON_GetObjectItemCaseSensitive(data, "expire_time");
    /* ttl 0 is also a token in its last second (whole seconds): only one
     * without an expiry time nor a TTL to begin with never expires */
    int expires = ttl > 0 || period > 0 || cJSON_IsString(expire_time);
    if (!renewable && expires)
        warn_expiry(v, expire_time, ttl, "is not renewable");
    cJSON_Delete(j);
    if (!expires) {
        if (!v->static_logged)
            log_info("secrets: Vault at %s: VAULT_TOKEN has no TTL (it does not expire)", v->addr);
        v->static_logged = 1;
        return UPKEEP_MAX_S;
    }
    if (!renewable)
        return upkeep_clamp(ttl / 2);
    if (period > 0 && ttl > period / 2)
        return upkeep_clamp(ttl - period / 2); /* not half spent yet */
    rc = token_self(v, "POST", "renew-self", &j, err, sizeof(err));
    if (rc != SECRETS_OK) {
        long retry = upkeep_clamp(ttl / 4 < UPKEEP_RETRY_S ? ttl / 4 : UPKEEP_RETRY_S);
        log_warn("secrets: renewing VAULT_TOKEN at %s failed (%s); it expires in %.0f s; trying "
                 "again in %ld s",
                 v->addr, err, ttl, retry);
        cJSON_Delete(j);
        return retry;
    }
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(j, "auth");
    double lease = num_of(auth, "lease_duration");
    cJSON_Delete(j);
    if (lease <= 0) {
        log_warn("secrets: Vault at %s renewed VAULT_TOKEN without a lease duration; looking it "
                 "up again in %d s", v->addr, UPKEEP_RETRY_S);
        return UPKEEP_RETRY_S;
    }
    log_info("secrets: Vault at %s renewed VAULT_TOKEN for %.0f s", v->addr, lease);
    if (period > 0 && lease < period) {
        /* cut short: its maximum TTL; when exactly, Vault says */
        if (token_self(v, "GET", "lookup-self", &j, err, sizeof(err)) != SECRETS_OK)
            j = NULL;
        data = cJSON_GetObjectItemCaseSensitive(j, "data");
        warn_expiry(v, cJSON_GetObjectItemCaseSensitive(data, "expire_time"), lease,
                    "reached its maximum TTL");
        cJSON_Delete(j);
    }
    return upkeep_clamp(lease / 2);
}

/* aurora/<rest> -> <prefix><rest> */
static int inside_path(const vault_t *v, const char *path, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", v->prefix, path + strlen(SECRETS_ROOT));
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- operations --------------------------------------------------------------- */

static int vault_put(void *impl, const char *path, const unsigned char *val, size_t len, char *err,
                     size_t errlen)
{
    vault_t *v = impl;
    char inside[600];
    if (inside_path(v, path, inside, sizeof(inside)) < 0) {
        say(err, errlen, "path too long");
        return SECRETS_E_INVALID;
    }
    int text = utf8_valid((const char *)val, len);
    char *b64 = NULL, *copy = NULL;
    const char *value;
    if (text) {
        /* Not NUL-terminated by the caller: a terminated copy for cJSON. */
        copy = malloc(len + 1);
        if (copy) {
            memcpy(copy, val, len);
            copy[len] = '\0';
        }
        value = copy;
    } else {
        value = b64 = crypto_base64(val, len);
    }
    cJSON *root = cJSON_CreateObject(), *data = cJSON_CreateObject(), *item = NULL;
    char *body = NULL;
    if (value && root && data) {
        cJSON_AddItemToObject(root, "data", data);
        data = NULL;
        cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
        item = cJSON_AddStringToObject(d, "value", value);
        if (item && (text || cJSON_AddStringToObject(d, "encoding", "base64")))
            body = secret_json_print(root); /* cJSON's printer frees outgrown copies unwiped */
    }
    if (item && item->valuestring)
        OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
    cJSON_Delete(root);
    cJSON_Delete(data);
    if (copy) {
        secret_free_n(copy, len);
    }
    secret_free(b64);
    if (!body) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    http_client_resp r;
    size_t blen = strlen(body);
    int rc = kv_call(v, "POST", "data", inside, body, blen, 0, &r, err, errlen);
    secret_free_n(body, blen);
    if (rc == SECRETS_OK)
        http_client_resp_free(&r);
    /* NOT_FOUND on a write: the mount does not exist. */
    if (rc == SECRETS_NOT_FOUND) {
        say(err, errlen, "Vault has no KV v2 mount \"%s\" (HTTP 404)", v->mount);
        rc = SECRETS_E_OTHER;
    }
    return rc;
}

static int vault_get(void *impl, const char *path, unsigned char **val, size_t *len, char *err,
                     size_t errlen)
{
    vault_t *v = impl;
    char inside[600];
    if (inside_path(v, path, inside, sizeof(inside)) < 0) {
        say(err, errlen, "path too long");
        return SECRETS_E_INVALID;
    }
    http_client_resp r;
    int rc = kv_call(v, "GET", "data", inside, NULL, 0, 0, &r, err, errlen);
    if (rc != SECRETS_OK) {
        if (rc == SECRETS_NOT_FOUND)
            say(err, errlen, "no secret at this path (never written, or its latest version "
                             "deleted)");
        return rc;
    }
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    cJSON *outer = cJSON_GetObjectItemCaseSensitive(j, "data");
    cJSON *data = cJSON_GetObjectItemCaseSensitive(outer, "data");
    cJSON *value = cJSON_GetObjectItemCaseSensitive(data, "value");
    cJSON *enc = cJSON_GetObjectItemCaseSensitive(data, "encoding");
    static const char *const value_at[] = { "data", "data", "value", NULL };
    size_t full = 0;
    if (!j || !cJSON_IsObject(outer)) {
        say(err, errlen, "unexpected answer from Vault");
        rc = SECRETS_E_OTHER;
    } else if (!data || cJSON_IsNull(data)) {
        /* The latest version was deleted (soft delete): nothing to read. */
        say(err, errlen, "the latest version was deleted");
        rc = SECRETS_NOT_FOUND;
    } else if (!cJSON_IsString(value)) {
        say(err, errlen, "the secret has no string field \"value\" (write it with "
                         "`vault kv put <path> value=@file`)");
        rc = SECRETS_E_OTHER;
    } else if (secret_json_string_has_nul(r.body, r.len, value_at, &full)) {
        /* cJSON's string ends at the NUL: what follows would be lost. */
        say(err, errlen, "field \"value\" holds a NUL character (\\u0000), which cannot be "
                         "returned whole (write it with `vault kv put <path> value=<base64> "
                         "encoding=base64`)");
        rc = SECRETS_E_OTHER;
    } else if (cJSON_IsString(enc) && !strcmp(enc->valuestring, "base64")) {
        size_t n = 0;
        unsigned char *raw =
            crypto_base64_decode(value->valuestring, strlen(value->valuestring), &n);
        if (!raw) {
            say(err, errlen, "field \"value\" is marked base64 but is not");
            rc = SECRETS_E_OTHER;
        } else {
            unsigned char *out = malloc(n + 1);
            if (out) {
                memcpy(out, raw, n);
                out[n] = '\0';
                *val = out;
                *len = n;
            } else {
                say(err, errlen, "out of memory");
                rc = SECRETS_E_OTHER;
            }
            secret_free_n(raw, n);
        }
    } else {
        size_t n = strlen(value->valuestring);
        unsigned char *out = malloc(n + 1);
        if (out) {
            memcpy(out, value->valuestring, n + 1);
            *val = out;
            *len = n;
        } else {
            say(err, errlen, "out of memory");
            rc = SECRETS_E_OTHER;
        }
    }
    if (cJSON_IsString(value))
        OPENSSL_cleanse(value->valuestring, full ? full : strlen(value->valuestring));
    cJSON_Delete(j);
    http_client_resp_free(&r);
    return rc;
}

static int vault_del(void *impl, const char *path, char *err, size_t errlen)
{
    vault_t *v = impl;
    char inside[600];
    if (inside_path(v, path, inside, sizeof(inside)) < 0) {
        say(err, errlen, "path too long");
        return SECRETS_E_INVALID;
    }
    http_client_resp r;
    int rc = kv_call(v, "DELETE", "metadata", inside, NULL, 0, 0, &r, err, errlen);
    if (rc == SECRETS_OK)
        http_client_resp_free(&r);
    return rc;
}

typedef struct {
    vault_t *v;
    int (*add)(void *, const char *);
    void *ctx;
    size_t requests, max_requests; /* LIST requests made, and allowed */
    size_t keys, max_keys;         /* names read (folders and filtered ones too), and allowed */
    long long deadline;            /* secrets_mono_ms by which the whole listing ends */
    long deadline_ms;              /* ... as a duration, for the error */
    size_t skipped;                /* names no secret path may hold (name_ok) */
} lister;

/* Whether a name of Vault's LIST answer is one Aurora could have written:
 * one segment of the characters a secret path may hold (secrets.c:
 * secrets_path_valid), a folder's with one '/' at its end, not "." or "..".
 * A folder's name goes into the next LIST's URL: as it came, a '?' or '#'
 * set that request's query or cut its path, a '%' sent an escape Vault
 * decodes ("%2e%2e" into ".."), "./" listed the same folder again (curl
 * drops the dot segment) down to the depth bound, a '/' inside skipped a
 * level, and a control character reached the request line. */
static int name_ok(const char *k)
{
    size_t n = strlen(k);
    if (n && k[n - 1] == '/')
        n--;
    if (n == 0 || (n == 1 && k[0] == '.') || (n == 2 && k[0] == '.' && k[1] == '.'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '=' || c == '.' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

/* The listing's error once its deadline has passed. */
static int list_late(const lister *ls, const char *dir, char *err, size_t errlen)
{
    say(err, errlen,
        "listing stopped: not done within %ld ms (%zu LIST requests made; Vault answers slowly), "
        "at %s",
        ls->deadline_ms, ls->requests, dir);
    return SECRETS_E_UNAVAILABLE;
}

/* LISTs the folder dir ("" or "a/b/") and everything below it whose name
 * starts with partial (only filtered at the top level).  The walk is
 * bounded in depth, in requests, in names read and in time, whatever Vault
 * answers: a tree that is merely wide (thousands of folders, each request
 * well within the timeout) or a Vault answering each LIST slowly would
 * otherwise hold the calling worker, and the memory of every name, for as
 * long as Vault keeps answering. */
static int list_dir(lister *ls, const char *dir, const char *partial, int depth, char *err,
                    size_t errlen)
{
    if (depth > LIST_MAX_DEPTH) {
        say(err, errlen, "folders nested too deep under %s", dir);
        return SECRETS_E_OTHER;
    }
    if (ls->requests >= ls->max_requests) {
        say(err, errlen, "listing stopped: more than %zu LIST requests (folders) needed, at %s",
            ls->max_requests, dir);
        return SECRETS_E_OTHER;
    }
    if (secrets_mono_ms() >= ls->deadline)
        return list_late(ls, dir, err, errlen);
    ls->requests++;
    http_client_resp r;
    int rc = kv_call(ls->v, "LIST", "metadata", dir, NULL, 0, ls->deadline, &r, err, errlen);
    if (rc == SECRETS_NOT_FOUND) /* an empty folder does not exist in Vault */
        return SECRETS_OK;
    if (rc != SECRETS_OK)
        return rc == SECRETS_E_UNAVAILABLE && secrets_mono_ms() >= ls->deadline
                   ? list_late(ls, dir, err, errlen)
                   : rc;
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    http_client_resp_free(&r);
    cJSON *keys = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"),
                                                   "keys");
    if (!cJSON_IsArray(keys)) {
        cJSON_Delete(j);
        say(err, errlen, "unexpected LIST answer from Vault");
        return SECRETS_E_OTHER;
    }
    ls->keys += (size_t)cJSON_GetArraySize(keys);
    if (ls->keys > ls->max_keys) {
        cJSON_Delete(j);
        say(err, errlen, "listing stopped: more than %zu names in Vault's LIST answers, at %s",
            ls->max_keys, dir);
        return SECRETS_E_OTHER;
    }
    size_t plen = strlen(ls->v->prefix);
    cJSON *k;
    cJSON_ArrayForEach(k, keys)
    {
        if (!cJSON_IsString(k) || strncmp(k->valuestring, partial, strlen(partial)) != 0)
            continue;
        /* Skipped, not refused: no path Aurora reads is in or under it,
         * and the rest of the folder (someone else's data in the mount
         * too) still lists. */
        if (!name_ok(k->valuestring)) {
            ls->skipped++;
            continue;
        }
        char child[700];
        int n = snprintf(child, sizeof(child), "%s%s", dir, k->valuestring);
        if (n < 0 || (size_t)n >= sizeof(child))
            continue;
        size_t klen = strlen(k->valuestring);
        if (klen && k->valuestring[klen - 1] == '/') {
            rc = list_dir(ls, child, "", depth + 1, err, errlen);
        } else if (!strncmp(child, ls->v->prefix, plen)) {
            char logical[800];
            snprintf(logical, sizeof(logical), SECRETS_ROOT "%s", child + plen);
            if (ls->add(ls->ctx, logical) < 0) {
                say(err, errlen, "out of memory");
                rc = SECRETS_E_OTHER;
            }
        }
        if (rc != SECRETS_OK)
            break;
    }
    cJSON_Delete(j);
    return rc;
}

static int vault_list(void *impl, const char *prefix, int (*add)(void *, const char *), void *ctx,
                      char *err, size_t errlen)
{
    vault_t *v = impl;
    char inside[600];
    int n = snprintf(inside, sizeof(inside), "%s%s", v->prefix, prefix + strlen(SECRETS_ROOT));
    if (n < 0 || (size_t)n >= sizeof(inside)) {
        say(err, errlen, "prefix too long");
        return SECRETS_E_INVALID;
    }
    /* Folder part (LISTed) and the start of a name within it (filtered). */
    char *slash = strrchr(inside, '/');
    char dir[600], partial[600];
    size_t dlen = slash ? (size_t)(slash - inside) + 1 : 0;
    memcpy(dir, inside, dlen);
    dir[dlen] = '\0';
    snprintf(partial, sizeof(partial), "%s", inside + dlen);
    /* Every folder in Vault holds at least one secret (an empty one does
     * not exist), so a listing within its bound of paths needs no more
     * requests than that, except for long chains of single folders; the
     * names read are its paths, its folders and what partial filters out. */
    lister ls = { .v = v, .add = add, .ctx = ctx, .max_requests = v->list_max,
                  .max_keys = 4 * v->list_max,
                  .deadline_ms = secrets_list_deadline_ms(v->timeout_ms, v->list_max) };
    ls.deadline = secrets_mono_ms() + ls.deadline_ms;
    int rc = list_dir(&ls, dir, partial, 0, err, errlen);
    if (ls.skipped) /* not the names themselves: Vault's text, of any length */
        log_warn("secrets: Vault at %s: listing %s: %zu names no secret path may hold were skipped",
                 v->addr, prefix, ls.skipped);
    return rc;
}

const secrets_backend secrets_backend_vault = {
    .name = "vault",
    .open = vault_open,
    .close = vault_close,
    .put = vault_put,
    .get = vault_get,
    .del = vault_del,
    .list = vault_list,
    .maintain = vault_maintain,
};
