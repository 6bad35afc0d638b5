/* kit_oauth.c — the OAuth 2.0 authorization-code flow; see kit_oauth.h. */
#include "kit_oauth.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "buf.h"
#include "connector.h"
#include "crypto.h"
#include "http_client.h"
#include "jwt.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "log.h"

/* ---- token endpoint -------------------------------------------------------------------- */

cJSON *kit_oauth_token_post(const char *url, const char *const *form, const char *basic_auth,
                            long timeout_ms, oauth_result *res)
{
    memset(res, 0, sizeof(*res));
    char *body = http_client_form(form);
    if (!body) {
        snprintf(res->err, sizeof(res->err), "out of memory");
        res->code = AUR_E_INTERNAL;
        return NULL;
    }
    char authz[1024] = "";
    const char *headers[4] = { "Content-Type: application/x-www-form-urlencoded",
                               "Accept: application/json", NULL, NULL };
    const char *refuse = !kit_url_private(url)
                             ? "the token endpoint must be https:// (client credentials are never "
                               "sent in clear, except to a loopback address)"
                             : NULL;
    if (basic_auth && !refuse) {
        char *b64 = crypto_base64(basic_auth, strlen(basic_auth));
        if (b64 && snprintf(authz, sizeof(authz), "Authorization: Basic %s", b64) < (int)sizeof(authz))
            headers[2] = authz;
        else /* never send the request without the client's authentication */
            refuse = "the client id and secret are too long for HTTP Basic authentication";
        secret_free(b64);
    }
    if (refuse) {
        secret_wipe(authz, sizeof(authz));
        secret_free(body);
        snprintf(res->err, sizeof(res->err), "%s", refuse);
        res->code = AUR_E_INVALID;
        return NULL;
    }
    http_client_req rq = { .method = "POST", .url = url, .headers = headers, .body = body,
                           .body_len = strlen(body), .timeout_ms = timeout_ms,
                           .max_response = 256 * 1024 };
    http_client_resp rp;
    int rc = http_client_do(&rq, &rp);
    secret_free(body);
    OPENSSL_cleanse(authz, sizeof(authz));
    if (rc < 0) {
        res->code = rp.code;
        snprintf(res->err, sizeof(res->err), "%s", rp.err);
        return NULL;
    }
    res->status = rp.status;
    cJSON *j = http_client_json(&rp);
    http_client_resp_free(&rp);
    /* printable, bounded: it is echoed in messages */
    kit_code_text(j ? api_json_str(j, "error") : NULL, res->error, sizeof(res->error));
    if (rp.status < 200 || rp.status > 299) {
        snprintf(res->err, sizeof(res->err), "token endpoint answered HTTP %ld%s%s", rp.status,
                 res->error[0] ? ": " : "", res->error);
        /* 4xx: the grant, client or code was refused; 5xx and the rest: the provider's trouble */
        res->code = rp.status >= 400 && rp.status < 500 ? AUR_E_DENIED : AUR_E_UNAVAILABLE;
        secret_json_free(j);
        return NULL;
    }
    if (!j) {
        snprintf(res->err, sizeof(res->err), "token endpoint answer is not a JSON object");
        res->code = AUR_E_INTERNAL;
        return NULL;
    }
    /* Every flow's tokens come through here, also those a connector reads
     * itself (refresh tokens, Slack's, Azure's, GCP's): a token that could
     * put CR/LF or other bytes into a later Authorization header, or into
     * the stored secret, is no answer.  The token is never in the message. */
    static const char *const names[] = { "access_token", "refresh_token" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *t = api_json_str(j, names[i]);
        /* "" is as absent: each connector decides about a missing token */
        if (t && *t && !kit_oauth_token_ok(t, SIZE_MAX)) {
            snprintf(res->err, sizeof(res->err),
                     "token endpoint answered with a %s that is not a usable token (bytes other"
                     " than printable ASCII without blanks)",
                     names[i]);
            res->code = AUR_E_UNAVAILABLE;
            secret_json_free(j);
            return NULL;
        }
    }
    return j;
}

void kit_oauth_error(const kit_oauth_client *c, const oauth_result *r, const char *what,
                     http_response *resp)
{
    const kit_oauth_errors *e = c->errors;
    if (r->status == 0 || r->code == AUR_E_TIMEOUT || r->status >= 500 || r->status < 400) {
        /* no answer, or the provider's trouble: worded as every provider call */
        kit_call_errors ce = { .service = e->service, .failed = e->failed,
                               .timeout = e->timeout, .unreachable = e->unreachable };
        kit_answer_error(&ce, r->code == AUR_E_TIMEOUT ? 0 : r->status, r->code, r->err, what,
                         c->timeout_ms, NULL, resp);
    } else if (!strcmp(r->error, "redirect_uri_mismatch")) {
        http_resp_error(resp, 400, e->redirect_mismatch,
                        "Redirect URI mismatch: ensure the redirect URI registered with %s exactly "
                        "matches %s",
                        e->service, c->redirect_uri ? c->redirect_uri : "");
    } else {
        /* a refused grant is the user's to redo: the client hint would send
         * the operator to settings that are fine */
        int grant = !strcmp(r->error, "invalid_grant");
        const char *hint = grant ? (e->grant_hint ? e->grant_hint : KIT_OAUTH_GRANT_HINT)
                                 : e->denied_hint;
        http_resp_error(resp, 400, grant ? e->grant : e->denied, "%s: %s refused (HTTP %ld%s%s)%s%s",
                        what, e->service, r->status, r->error[0] ? ", " : "", r->error,
                        hint ? " — " : "", hint ? hint : "");
    }
}

/* ---- login ----------------------------------------------------------------------------- */

/* "&name=<escaped value>" onto u; 0 or -1 (OOM). */
static int add_param(buf_t *u, const char *name, const char *value)
{
    char *e = http_client_escape(value ? value : "");
    if (!e)
        return -1;
    buf_printf(u, "&%s=%s", name, e);
    free(e);
    return 0;
}

char *kit_oauth_authorize_url(worker_ctx *w, const auth_ctx *who, const kit_oauth_client *c,
                              const char *extra, http_response *resp)
{
    char verifier[64] = "", challenge[64] = "", state[64];
    unsigned char raw[32];
    if (c->pkce) {
        unsigned char sum[32];
        if (crypto_random(raw, sizeof(raw)) != 0 ||
            crypto_base64url(raw, sizeof(raw), verifier, sizeof(verifier)) != KIT_PKCE_VERIFIER_LEN) {
            OPENSSL_cleanse(raw, sizeof(raw));
            http_resp_error(resp, 500, "INTERNAL", "cannot generate a PKCE verifier");
            return NULL;
        }
        crypto_sha256(verifier, KIT_PKCE_VERIFIER_LEN, sum);
        crypto_base64url(sum, sizeof(sum), challenge, sizeof(challenge));
        OPENSSL_cleanse(verifier, sizeof(verifier));
    }
    /* The verifier rides with the state, masked by it (oauth.h), so the
     * callback that consumes the state, on any replica, gets it back, and
     * the store alone never holds it. */
    int rc = oauth_state_new_pkce(w, who, c->provider, c->redirect_uri, extra,
                                  c->pkce ? raw : NULL, state, resp);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (rc < 0)
        return NULL;
    buf_t u = BUF_INIT;
    buf_printf(&u, "%s%cresponse_type=code", c->authorize_url,
               strchr(c->authorize_url, '?') ? '&' : '?');
    int bad = add_param(&u, "client_id", c->client_id) || add_param(&u, "redirect_uri", c->redirect_uri) ||
              add_param(&u, "scope", c->scope) || add_param(&u, "state", state);
    if (c->pkce && !bad) {
        buf_printf(&u, "&code_challenge=%s&code_challenge_method=S256", challenge);
    }
    if (c->extra_params && *c->extra_params && !bad)
        buf_printf(&u, "&%s", c->extra_params);
    char *url = NULL;
    if (!bad && buf_pending(&u) && (url = malloc(buf_pending(&u) + 1))) {
        memcpy(url, buf_head(&u), buf_pending(&u));
        url[buf_pending(&u)] = '\0';
    }
    buf_free(&u);
    if (!url)
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
    return url;
}

void kit_oauth_send_url(http_response *resp, int status, const char *url, cJSON *o)
{
    if (!o)
        o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "authorization_url", url);
    http_resp_json(resp, status, o);
    if (status == 302)
        http_resp_add_header(resp, "location", url);
    http_resp_add_header(resp, "cache-control", "no-store");
}

/* ---- callback --------------------------------------------------------------------------- */

/* The first upper-case word followed by digits in desc ("AADSTS50011") into out. */
static void provider_error_code(const char *desc, char *out, size_t cap)
{
    out[0] = '\0';
    for (const char *p = desc; p && *p; p++) {
        if (!(*p >= 'A' && *p <= 'Z') || (p > desc && ((p[-1] >= 'A' && p[-1] <= 'Z') ||
                                                       (p[-1] >= '0' && p[-1] <= '9'))))
            continue;
        const char *q = p;
        while (*q >= 'A' && *q <= 'Z')
            q++;
        const char *d = q;
        while (*d >= '0' && *d <= '9')
            d++;
        if (q - p >= 3 && d - q >= 3 && (size_t)(d - p) < cap) {
            memcpy(out, p, (size_t)(d - p));
            out[d - p] = '\0';
            return;
        }
    }
}

int kit_oauth_callback_take(worker_ctx *w, http_request *req, const kit_oauth_client *c,
                            const char *label, const char *current_redirect,
                            kit_oauth_callback *cb, http_response *resp)
{
    memset(cb, 0, sizeof(*cb));
    if (oauth_callback_auth(w, req, resp) < 0)
        return -1;
    char error[128] = "", desc[512] = "";
    int has_error = http_query_get(req, "error", error, sizeof(error)) && error[0];
    /* Consumed even when the provider reports an error: single use. */
    const char *providers[] = { c->provider, c->also_provider, NULL };
    int state_ok = oauth_state_take_any(w, req, providers, &cb->st, resp) == 0;
    if (has_error) {
        char clean[128], code[32];
        size_t o = 0;
        for (const char *p = error; *p && o + 1 < sizeof(clean); p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')
                clean[o++] = *p;
        clean[o] = '\0';
        http_query_get(req, "error_description", desc, sizeof(desc));
        provider_error_code(desc, code, sizeof(code));
        http_resp_error(resp, 400, c->errors->authorization_failed, "%s failed: %s%s%s", label,
                        clean, code[0] ? ": " : "", code);
        kit_oauth_callback_wipe(cb);
        return -1;
    }
    if (!state_ok)
        return -1;
    /* PKCE is c's: a state of also_provider never carries a verifier. */
    if (c->pkce && !strcmp(cb->st.provider, c->provider)) {
        /* the masked verifier is the first part of the state's data */
        char state[128] = "", v[64] = "";
        int bad = strlen(cb->st.extra) < KIT_PKCE_VERIFIER_LEN ||
                  !http_query_get(req, "state", state, sizeof(state)) ||
                  oauth_pkce_unmask(state, cb->st.extra, v) < 0;
        if (!bad)
            memcpy(cb->verifier, v, KIT_PKCE_VERIFIER_LEN + 1);
        OPENSSL_cleanse(state, sizeof(state));
        OPENSSL_cleanse(v, sizeof(v));
        if (bad) {
            http_resp_error(resp, 400, "OAUTH_STATE_INVALID",
                            "OAuth state was issued without PKCE; start the connection again");
            return -1;
        }
        memmove(cb->st.extra, cb->st.extra + KIT_PKCE_VERIFIER_LEN,
                strlen(cb->st.extra + KIT_PKCE_VERIFIER_LEN) + 1);
    }
    if (!http_query_get(req, "code", cb->code, sizeof(cb->code)) || !cb->code[0]) {
        kit_oauth_callback_wipe(cb);
        http_resp_error(resp, 400, "BAD_REQUEST", "No authorization code provided");
        return -1;
    }
    return current_redirect ? kit_oauth_redirect_check(c, cb, current_redirect, resp) : 0;
}

int kit_oauth_redirect_check(const kit_oauth_client *c, kit_oauth_callback *cb,
                             const char *current, http_response *resp)
{
    if (current && !strcmp(cb->st.redirect_uri, current))
        return 0;
    kit_oauth_callback_wipe(cb);
    http_resp_error(resp, 400, c->errors->redirect_mismatch,
                    "Redirect URI mismatch: the connection was started with another redirect URI "
                    "(the setting changed); start again with %s",
                    current ? current : "the configured one");
    return -1;
}

void kit_oauth_callback_wipe(kit_oauth_callback *cb)
{
    OPENSSL_cleanse(cb->code, sizeof(cb->code));
    OPENSSL_cleanse(cb->verifier, sizeof(cb->verifier));
}

/* "<id>:<secret>" for HTTP Basic (RFC 6749 2.3.1: each form-encoded). */
static char *basic_pair(const kit_oauth_client *c)
{
    char *id = http_client_escape(c->client_id), *sec = http_client_escape(c->client_secret);
    char *out = NULL;
    if (id && sec && (out = malloc(strlen(id) + strlen(sec) + 2)))
        sprintf(out, "%s:%s", id, sec);
    free(id);
    secret_free(sec);
    return out;
}

/* A token request with the client's credentials, posted or in Basic auth. */
static cJSON *client_post(const kit_oauth_client *c, const char *url, const char **form,
                          size_t nform, oauth_result *res)
{
    char *basic = NULL;
    if (c->basic_auth) {
        basic = basic_pair(c);
        if (!basic) {
            memset(res, 0, sizeof(*res));
            res->code = AUR_E_INTERNAL;
            snprintf(res->err, sizeof(res->err), "out of memory");
            return NULL;
        }
    } else {
        form[nform++] = "client_id";
        form[nform++] = c->client_id;
        form[nform++] = "client_secret";
        form[nform++] = c->client_secret;
    }
    form[nform] = NULL;
    cJSON *j = kit_oauth_token_post(url, form, basic, c->timeout_ms, res);
    secret_free(basic);
    return j;
}

cJSON *kit_oauth_exchange(worker_ctx *w, const kit_oauth_client *c, kit_oauth_callback *cb,
                          const char *what, http_response *resp)
{
    (void)w;
    const char *form[16] = { "grant_type", "authorization_code", "code", cb->code,
                             "redirect_uri", cb->st.redirect_uri,
                             "code_verifier", cb->verifier[0] ? cb->verifier : NULL };
    oauth_result r;
    cJSON *tok = client_post(c, c->token_url, form, 8, &r);
    kit_oauth_callback_wipe(cb);
    if (!tok) {
        log_warn("%s: code exchange failed: %s", c->provider, r.err);
        kit_oauth_error(c, &r, what, resp);
    }
    return tok;
}

/* ---- refresh: one at a time per grant ------------------------------------------------------ */

/* Refreshes of one stored refresh token are serialized: providers that
 * rotate refresh tokens (PagerDuty, Bitbucket, Azure AD, OVH…) retire the
 * token a refresh presents, so a second refresh running at the same time
 * with the same token is refused (invalid_grant) although the connection
 * is fine.  Callers that queued behind a refresh take its outcome (its
 * answer without the refresh token, or its failure) instead of refreshing
 * again; it is kept only while somebody waits.  One entry per grant in use
 * (no striping: other grants' refreshes never wait for this one). */
typedef struct grant_flight {
    unsigned char ref[32];       /* SHA-256 of the secret reference */
    int busy;                    /* a refresh (or a disconnect) holds the grant */
    int users;                   /* callers holding or waiting for it */
    unsigned char what[32];      /* which refresh ended last: refresh_what */
    int64_t done_ms;             /* when it ended; 0: nothing kept */
    cJSON *tok;                  /* its answer (no refresh token), or NULL: r */
    oauth_result r;
    /* A rotated refresh token the secrets backend did not take (the
     * provider has retired the stored one): SHA-256 of the token it
     * replaces, and the token, used and stored again at the next refresh
     * while the stored one is still the retired one. */
    unsigned char pend_old[32];
    char *pend_new;
    struct grant_flight *next;
} grant_flight;

static pthread_mutex_t g_flights_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_flights_cv = PTHREAD_COND_INITIALIZER;
static grant_flight *g_flights;

/* Waits until the grant secret_ref names is free and takes it (conn: the
 * disconnect of that connector, which says in the log when it has to wait,
 * or NULL).  NULL when out of memory. */
/* waiter: who would wait (logged once when the grant is busy: a refresh
 * behind another of the same grant, or a disconnect or reconnect behind a
 * refresh), e.g. "pagerduty: a token refresh". */
static grant_flight *grant_take(const char *secret_ref, const char *waiter)
{
    unsigned char ref[32];
    crypto_sha256(secret_ref, strlen(secret_ref), ref);
    pthread_mutex_lock(&g_flights_mu);
    grant_flight *g = g_flights;
    while (g && memcmp(g->ref, ref, sizeof(ref)))
        g = g->next;
    if (!g && (g = calloc(1, sizeof(*g)))) {
        memcpy(g->ref, ref, sizeof(ref));
        g->next = g_flights;
        g_flights = g;
    }
    if (g && g->busy)
        log_info("%s waits for the token refresh under way to end", waiter);
    if (g) {
        g->users++;
        while (g->busy)
            pthread_cond_wait(&g_flights_cv, &g_flights_mu);
        g->busy = 1;
    }
    pthread_mutex_unlock(&g_flights_mu);
    return g;
}

static void refresh_outcome_drop(grant_flight *g);

/* Gives g back: the next waiter takes it; the kept outcome goes when nobody
 * waits, the entry too unless it keeps a rotated token. */
static void grant_give(grant_flight *g)
{
    pthread_mutex_lock(&g_flights_mu);
    g->busy = 0;
    if (--g->users == 0) {
        refresh_outcome_drop(g);
        if (!g->pend_new) {
            grant_flight **pp = &g_flights;
            while (*pp != g)
                pp = &(*pp)->next;
            *pp = g->next;
            free(g);
        }
    }
    pthread_cond_broadcast(&g_flights_cv);
    pthread_mutex_unlock(&g_flights_mu);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* SHA-256 of what a refresh asks for: the grant (secret_ref), where and by
 * which client (a token URL per Azure tenant), the scope.  A kept outcome
 * answers only callers asking the same. */
static void refresh_what(const kit_oauth_client *c, const char *secret_ref, const char *scope,
                         unsigned char out[32])
{
    const char *parts[] = { secret_ref, c->token_url, c->client_id, scope };
    unsigned char each[4][32];
    for (size_t i = 0; i < 4; i++)
        crypto_sha256(parts[i] ? parts[i] : "", parts[i] ? strlen(parts[i]) : 0, each[i]);
    crypto_sha256(each, sizeof(each), out);
}

/* Forgets the rotated token kept for want of storing it (g held). */
static void refresh_pending_drop(grant_flight *s)
{
    secret_free(s->pend_new);
    s->pend_new = NULL;
    memset(s->pend_old, 0, sizeof(s->pend_old));
}

/* Forgets the kept outcome (g held, or g_flights_mu with nobody on it). */
static void refresh_outcome_drop(grant_flight *s)
{
    secret_json_free(s->tok);
    s->tok = NULL;
    s->done_ms = 0;
    memset(s->what, 0, sizeof(s->what));
    memset(&s->r, 0, sizeof(s->r));
}

/* The refresh grant itself (s held): *tok or r.  A refused
 * refresh whose token is no longer the stored one (another replica
 * rotated it meanwhile) is tried once more with the stored one.  0, or -1
 * with resp (no refresh token stored). */
static int refresh_grant(worker_ctx *w, grant_flight *s, const kit_oauth_client *c,
                         const char *secret_ref, const char *scope, const char *missing_code,
                         const char *missing_msg, cJSON **out, oauth_result *r,
                         http_response *resp)
{
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        unsigned char *rt = NULL;
        size_t len = 0;
        if (kit_secret_get(w, secret_ref, &rt, &len, 400, missing_code, missing_msg, resp) < 0) {
            /* the connection was removed (elsewhere): its kept token goes too,
             * not kept until exit; a backend error (503) keeps it */
            if (resp->status == 400)
                refresh_pending_drop(s);
            return attempt ? 0 : -1; /* a retry's token gone: the first refusal stands */
        }
        int used_pending = 0;
        if (s->pend_new) {
            unsigned char sum[32];
            crypto_sha256(rt, len, sum);
            if (!CRYPTO_memcmp(sum, s->pend_old, sizeof(sum))) {
                /* still the token the provider retired: the one it gave instead */
                unsigned char *p = (unsigned char *)strdup(s->pend_new);
                if (p) {
                    secrets_free(rt, len);
                    rt = p;
                    len = strlen(s->pend_new);
                    used_pending = 1;
                }
            } else {
                refresh_pending_drop(s); /* stored anew meanwhile (a reconnect) */
            }
        }
        const char *form[16] = { "grant_type", "refresh_token", "refresh_token",
                                 (const char *)rt, "scope", scope };
        oauth_result now;
        cJSON *tok = client_post(c, c->token_url, form, 6, &now);
        if (tok) {
            const char *nrt = api_json_str(tok, "refresh_token");
            int pending = s->pend_new != NULL;
            if (nrt && *nrt && (strlen(nrt) != len || CRYPTO_memcmp(nrt, rt, len) != 0)) {
                /* Rotated: the old one is dead at the provider; keep the new one. */
                char err[512];
                if (kit_secret_replace(w, secret_ref, nrt, err, sizeof(err)) == SECRETS_OK) {
                    if (pending)
                        refresh_pending_drop(s);
                } else {
                    log_error("%s: could not store the rotated refresh token (kept in memory "
                              "until it can be): %s", c->provider, err);
                    /* what the backend still holds is the retired one: the
                     * stored token's sum, kept as it was when pending */
                    unsigned char old[32];
                    if (pending)
                        memcpy(old, s->pend_old, sizeof(old));
                    else
                        crypto_sha256(rt, len, old);
                    refresh_pending_drop(s);
                    if ((s->pend_new = strdup(nrt)))
                        memcpy(s->pend_old, old, sizeof(old));
                }
            } else if (pending) {
                /* the provider kept the token: store it again */
                char err[512];
                if (kit_secret_replace(w, secret_ref, s->pend_new, err, sizeof(err)) == SECRETS_OK)
                    refresh_pending_drop(s);
            }
            secrets_free(rt, len);
            *out = tok;
            return 0;
        }
        if (!attempt)
            *r = now;
        int refused = now.status >= 400 && now.status < 500 && now.code != AUR_E_TIMEOUT;
        if (refused && used_pending) {
            /* the token kept in memory is refused too: nothing better left */
            refresh_pending_drop(s);
            refused = 0;
        }
        unsigned char *cur = NULL;
        size_t clen = 0;
        int changed = 0;
        if (refused && !attempt) {
            http_response scratch;
            memset(&scratch, 0, sizeof(scratch));
            if (kit_secret_get(w, secret_ref, &cur, &clen, 400, "GONE", "gone", &scratch) == 0)
                changed = clen != len || CRYPTO_memcmp(cur, rt, len) != 0;
            buf_free(&scratch.body);
            secrets_free(cur, clen);
        }
        secrets_free(rt, len);
        if (!changed)
            return 0;
        log_info("%s: the refresh token was replaced while a refresh ran elsewhere; refreshing "
                 "with the stored one", c->provider);
    }
}

cJSON *kit_oauth_refresh(worker_ctx *w, const kit_oauth_client *c, const char *secret_ref,
                         const char *scope, const char *what, const char *missing_code,
                         const char *missing_msg, http_response *resp)
{
    return kit_oauth_refresh_r(w, c, secret_ref, scope, what, missing_code, missing_msg, NULL,
                               resp);
}

cJSON *kit_oauth_refresh_r(worker_ctx *w, const kit_oauth_client *c, const char *secret_ref,
                           const char *scope, const char *what, const char *missing_code,
                           const char *missing_msg, oauth_result *out_r, http_response *resp)
{
    if (out_r)
        memset(out_r, 0, sizeof(*out_r));
    int64_t asked = mono_ms();
    char waiter[96];
    snprintf(waiter, sizeof(waiter), "%s: a token refresh", c->provider);
    grant_flight *s = grant_take(secret_ref, waiter);
    if (!s) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return NULL;
    }
    cJSON *tok = NULL;
    oauth_result r;
    memset(&r, 0, sizeof(r));
    int missing = 0;
    unsigned char ask[32];
    refresh_what(c, secret_ref, scope, ask);
    if (s->done_ms && s->done_ms >= asked && !memcmp(s->what, ask, sizeof(ask))) {
        /* a refresh of this grant ended while this caller waited: its outcome */
        r = s->r;
        if (s->tok && !(tok = cJSON_Duplicate(s->tok, 1))) {
            r.code = AUR_E_INTERNAL;
            snprintf(r.err, sizeof(r.err), "out of memory");
        }
    } else {
        missing = refresh_grant(w, s, c, secret_ref, scope, missing_code, missing_msg, &tok, &r,
                                resp) < 0;
        refresh_outcome_drop(s);
        if (!missing && (!tok || (s->tok = cJSON_Duplicate(tok, 1)))) {
            secret_json_free(cJSON_DetachItemFromObjectCaseSensitive(s->tok, "refresh_token"));
            memcpy(s->what, ask, sizeof(ask));
            s->r = r;
            s->done_ms = mono_ms();
        }
    }
    grant_give(s); /* the outcome stays only for those waiting */
    if (!tok && !missing) {
        log_warn("%s: refresh failed: %s", c->provider, r.err);
        kit_oauth_error(c, &r, what, resp);
        if (out_r)
            *out_r = r;
    }
    return tok;
}

struct kit_oauth_pause {
    grant_flight *g;
};

kit_oauth_pause *kit_oauth_refresh_pause(worker_ctx *w, const char *secret_ref,
                                         const char *conn)
{
    kit_oauth_pause *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    char waiter[96];
    snprintf(waiter, sizeof(waiter), "%s: the disconnect", conn ? conn : "connector");
    if (!(p->g = grant_take(secret_ref, waiter))) {
        free(p);
        return NULL;
    }
    grant_flight *g = p->g;
    if (w && g->pend_new) {
        /* The live refresh token is the one kept in memory, the stored one
         * retired: store it, so that the disconnect revokes the grant in
         * use rather than a token the provider has already retired. */
        unsigned char *rt = NULL, sum[32];
        size_t len = 0;
        char err[512];
        http_response scratch;
        memset(&scratch, 0, sizeof(scratch));
        if (kit_secret_get(w, secret_ref, &rt, &len, 404, "GONE", "gone", &scratch) == 0) {
            crypto_sha256(rt, len, sum);
            if (!CRYPTO_memcmp(sum, g->pend_old, sizeof(sum)) &&
                kit_secret_replace(w, secret_ref, g->pend_new, err, sizeof(err)) != SECRETS_OK)
                log_error("%s: could not store the rotated refresh token kept in memory before "
                          "the disconnect; the grant may stay valid at the provider: %s",
                          conn ? conn : "connector", err);
        }
        secrets_free(rt, len);
        buf_free(&scratch.body);
    }
    /* no caller takes a token of a grant being deleted, nor a kept rotated one */
    refresh_outcome_drop(g);
    refresh_pending_drop(g);
    return p;
}

void kit_oauth_refresh_resume(kit_oauth_pause *p)
{
    if (!p)
        return;
    grant_give(p->g);
    free(p);
}

#define KIT_OAUTH_MAX_EXPIRES_IN (86400 * 7)

int64_t kit_oauth_expires_in(const cJSON *tok)
{
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(tok, "expires_in");
    /* Azure AD v1 endpoints and ADFS send it as a string ("3599"): digits
     * only, at most 7 of them (no sign, space, fraction or overflow) */
    if (cJSON_IsString(ei) && ei->valuestring) {
        const char *s = ei->valuestring;
        size_t n = strspn(s, "0123456789");
        if (!n || s[n] || n > 7)
            return 0;
        int64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v = v * 10 + (s[i] - '0');
        return v > 0 && v <= KIT_OAUTH_MAX_EXPIRES_IN ? v : 0;
    }
    /* range first: casting a huge or non-finite double is undefined */
    return cJSON_IsNumber(ei) && ei->valuedouble > 0 && ei->valuedouble <= KIT_OAUTH_MAX_EXPIRES_IN
               ? (int64_t)ei->valuedouble
               : 0;
}

int kit_oauth_token_ok(const char *t, size_t max_len)
{
    if (!t || !*t)
        return 0;
    size_t n = 0;
    for (; t[n]; n++)
        if (n >= max_len || (unsigned char)t[n] <= 0x20 || (unsigned char)t[n] >= 0x7f)
            return 0; /* it goes into a header */
    return 1;
}

int kit_oauth_scope_listed(const char *list, const char *scope)
{
    size_t n = scope ? strlen(scope) : 0;
    if (!list || !n)
        return 0;
    for (const char *p = list; *p;) {
        size_t w = strcspn(p, " ");
        if (w == n && !memcmp(p, scope, n))
            return 1;
        p += w;
        p += strspn(p, " ");
    }
    return 0;
}

int kit_oauth_scope_granted(const cJSON *tok, const char *scope)
{
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(tok, "scope");
    if (!sc)
        return 1;
    return cJSON_IsString(sc) && kit_oauth_scope_listed(sc->valuestring, scope);
}

char *kit_oauth_access_token(const cJSON *tok, size_t max_len, int64_t now, int64_t *expires_at)
{
    const char *at = api_json_str(tok, "access_token");
    if (!kit_oauth_token_ok(at, max_len))
        return NULL;
    int64_t secs = kit_oauth_expires_in(tok);
    *expires_at = now + (secs ? secs : 3600);
    return strdup(at);
}

int kit_oauth_revoke(const kit_oauth_client *c, const char *token, const char *hint)
{
    if (!c->revoke_url || !token || !*token)
        return -1;
    const char *form[16] = { "token", token, "token_type_hint", hint };
    oauth_result r;
    cJSON *j = client_post(c, c->revoke_url, form, 4, &r);
    if (!j && r.status >= 200 && r.status < 300)
        return 0; /* an empty 200 is the usual answer */
    if (!j) {
        log_warn("%s: revoking the grant failed: %s", c->provider, r.err);
        return -1;
    }
    secret_json_free(j);
    return 0;
}

/* 1 when st's user already has an OAuth connection of c->provider whose
 * account could be the one tok was issued to (the id_token's email or sub;
 * a token that names none could be anyone's). */
static int grant_in_use(worker_ctx *w, const kit_oauth_client *c, const oauth_state_info *st,
                        const cJSON *tok)
{
    store_connector row;
    if (!w->store || store_connector_get(w->store, st->org_id, st->user_id, c->provider, &row) !=
                         STORE_OK)
        return 0;
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const char *auth = api_json_str(md, "auth");
    int in_use = 0;
    if (auth && !strcmp(auth, "oauth")) {
        cJSON *claims = jwt_unverified_claims(api_json_str(tok, "id_token"));
        const char *email = api_json_str(claims, "email"), *sub = api_json_str(claims, "sub");
        const char *who = email && *email ? email : sub && *sub ? sub : NULL;
        in_use = !who || !strcmp(row.account, who);
        cJSON_Delete(claims);
    }
    cJSON_Delete(md);
    store_connector_free(&row);
    return in_use;
}

void kit_oauth_revoke_refused(worker_ctx *w, const kit_oauth_client *c,
                              const oauth_state_info *st, const cJSON *tok)
{
    const char *rt = api_json_str(tok, "refresh_token");
    const char *at = api_json_str(tok, "access_token");
    int refresh = rt && *rt;
    const char *token = refresh ? rt : at;
    if (!tok || !c->revoke_url || !token || !*token)
        return;
    if (grant_in_use(w, c, st, tok)) {
        log_info("%s: refused grant of user %s (org %s) not revoked: it is the grant of the "
                 "connection in place", c->provider, st->user_id, st->org_id);
        return;
    }
    kit_oauth_client bounded = *c;
    if (bounded.timeout_ms <= 0 || bounded.timeout_ms > KIT_OAUTH_REFUSED_REVOKE_MS)
        bounded.timeout_ms = KIT_OAUTH_REFUSED_REVOKE_MS;
    if (kit_oauth_revoke(&bounded, token, refresh ? "refresh_token" : "access_token") == 0)
        log_info("%s: refused grant of user %s (org %s) revoked at the provider", c->provider,
                 st->user_id, st->org_id);
    else
        log_warn("%s: could not revoke the refused grant of user %s (org %s): it stays valid at "
                 "the provider until the user removes Aurora's access there", c->provider,
                 st->user_id, st->org_id);
}

void kit_oauth_connected(worker_ctx *w, http_response *resp, const char *conn, cJSON *o)
{
    if (!o)
        o = cJSON_CreateObject();
    if (o)
        cJSON_AddBoolToObject(o, "connected", 1);
    http_resp_json(resp, 302, o);
    char loc[1200];
    snprintf(loc, sizeof(loc), "%s/connectors?provider=%s&status=connected",
             w->cfg && w->cfg->frontend_url ? w->cfg->frontend_url : "", conn);
    http_resp_add_header(resp, "location", loc);
}

int kit_oauth_finish(worker_ctx *w, const kit_oauth_callback *cb, const char *conn,
                     const char *field, const char *account, const cJSON *tok, cJSON *md,
                     cJSON *shown, http_response *resp)
{
    const char *rt = api_json_str(tok, "refresh_token");
    int64_t ei = kit_oauth_expires_in(tok);
    if (!rt || !*rt) {
        cJSON_Delete(shown);
        http_resp_error(resp, 502, "OAUTH_NO_REFRESH_TOKEN", "%s answered without a refresh token",
                        conn);
        return -1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(md, "access_token_expires_at");
    if (ei)
        cJSON_AddNumberToObject(md, "access_token_expires_at", (double)((int64_t)time(NULL) + ei));
    kit_field f = { field, rt };
    if (kit_connect_store(w, cb->st.org_id, cb->st.user_id, conn, account, &f, 1, md, resp) < 0) {
        cJSON_Delete(shown);
        return -1;
    }
    if (!shown && (shown = cJSON_Duplicate(md, 1))) {
        cJSON_AddStringToObject(shown, "provider", conn);
        cJSON_AddStringToObject(shown, "account", account);
    }
    kit_oauth_connected(w, resp, conn, shown);
    return 0;
}
