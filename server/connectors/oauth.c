/* oauth.c — OAuth state values and the authorization-code exchange; see
 * oauth.h.  A state is 32 random bytes, base64url (43 chars); only its
 * SHA-256 is stored, with who asked, for which provider and redirect URI,
 * and an expiry (the connector kit, kit_oauth.c, builds the flow on these).  Taking it is one conditional UPDATE in the store, so it is
 * single-use even when two callbacks (or two replicas) race.  A flow the
 * console starts is also tied to its browser (oauth_binding.h). */
#include "oauth.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "auth.h"
#include "config.h"
#include "connector.h"
#include "console_cookie.h"
#include "console_session.h"
#include "kit_oauth.h"
#include "crypto.h"
#include "log.h"
#include "oauth_binding.h"

#define STATE_LEN 43
#define EC_STATE "OAUTH_STATE_INVALID"

static int64_t state_ttl(const worker_ctx *w)
{
    int64_t ttl = w->cfg ? server_setting_int(w->cfg, "AURORA_OAUTH_STATE_TTL") : 0;
    return ttl > 0 ? ttl : OAUTH_STATE_TTL;
}

/* The PKCE verifier is never stored as it is: the state row holds its 32
 * raw bytes XORed with SHA-256("aurora-pkce-v1\0" || state), base64url.
 * Only the state's own SHA-256 is stored (another input), so the row alone
 * does not give the verifier back; the callback, which holds the state,
 * does, on any replica. */
static void pkce_pad(const char *state, unsigned char pad[32])
{
    static const char dom[] = "aurora-pkce-v1";
    unsigned char in[sizeof(dom) + STATE_LEN];
    size_t sl = strnlen(state, STATE_LEN);
    memcpy(in, dom, sizeof(dom)); /* with its NUL */
    memcpy(in + sizeof(dom), state, sl);
    crypto_sha256(in, sizeof(dom) + sl, pad);
    OPENSSL_cleanse(in, sizeof(in));
}

/* raw32 XOR pad(state), base64url into out (OAUTH_PKCE_MASKED_LEN + 1); 0 or -1. */
static int pkce_mask(const char *state, const unsigned char *raw32, char *out, size_t cap)
{
    unsigned char m[32], pad[32];
    pkce_pad(state, pad);
    for (int i = 0; i < 32; i++)
        m[i] = raw32[i] ^ pad[i];
    int ok = crypto_base64url(m, sizeof(m), out, cap) == OAUTH_PKCE_MASKED_LEN;
    OPENSSL_cleanse(m, sizeof(m));
    OPENSSL_cleanse(pad, sizeof(pad));
    return ok ? 0 : -1;
}

int oauth_pkce_unmask(const char *state, const char *masked, char verifier[64])
{
    size_t n = 0;
    unsigned char *m = crypto_base64_decode(masked, OAUTH_PKCE_MASKED_LEN, &n);
    unsigned char pad[32];
    int rc = -1;
    verifier[0] = '\0';
    if (m && n == 32) {
        pkce_pad(state, pad);
        for (int i = 0; i < 32; i++)
            m[i] ^= pad[i];
        rc = crypto_base64url(m, 32, verifier, 64) == OAUTH_PKCE_MASKED_LEN ? 0 : -1;
        OPENSSL_cleanse(pad, sizeof(pad));
    }
    if (m) {
        OPENSSL_cleanse(m, n);
        free(m);
    }
    return rc;
}

int oauth_state_new(worker_ctx *w, const auth_ctx *who, const char *provider,
                    const char *redirect_uri, const char *extra, char out[64],
                    http_response *resp)
{
    return oauth_state_new_pkce(w, who, provider, redirect_uri, extra, NULL, out, resp);
}

int oauth_state_new_pkce(worker_ctx *w, const auth_ctx *who, const char *provider,
                         const char *redirect_uri, const char *extra,
                         const unsigned char *verifier_raw, char out[64], http_response *resp)
{
    unsigned char raw[32];
    out[0] = '\0';
    if (!who->org_id[0] || !who->user_id[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "an OAuth connection belongs to a user: send X-User-ID and X-Org-ID");
        return -1;
    }
    if (crypto_random(raw, sizeof(raw)) != 0 ||
        crypto_base64url(raw, sizeof(raw), out, 64) != STATE_LEN) {
        OPENSSL_cleanse(raw, sizeof(raw));
        http_resp_error(resp, 500, "INTERNAL", "cannot generate an OAuth state");
        return -1;
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    char hash[65], masked[64] = "";
    crypto_sha256_hex(out, STATE_LEN, hash);
    if (verifier_raw && pkce_mask(out, verifier_raw, masked, sizeof(masked)) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "cannot generate an OAuth state");
        out[0] = '\0';
        return -1;
    }
    store_oauth_state st;
    memset(&st, 0, sizeof(st));
    snprintf(st.org_id, sizeof(st.org_id), "%s", who->org_id);
    snprintf(st.user_id, sizeof(st.user_id), "%s", who->user_id);
    /* extra: the masked verifier (fixed length) first, then the connector's */
    if (snprintf(st.provider, sizeof(st.provider), "%s", provider) >= (int)sizeof(st.provider) ||
        snprintf(st.redirect_uri, sizeof(st.redirect_uri), "%s", redirect_uri ? redirect_uri : "") >=
            (int)sizeof(st.redirect_uri) ||
        snprintf(st.extra, sizeof(st.extra), "%s%s", masked, extra ? extra : "") >=
            (int)sizeof(st.extra)) {
        http_resp_error(resp, 500, "INTERNAL", "OAuth state data too long");
        out[0] = '\0';
        return -1;
    }
    snprintf(st.started_via, sizeof(st.started_via), "%s",
             who->session ? "session" : who->internal ? "internal" : "api_key");
    /* ...and which session: the flow ends with it (state_session_ended). */
    if (who->session)
        snprintf(st.console_session, sizeof(st.console_session), "%s", who->session_hash);
    /* The browser itself asked (console session): tie the flow to it. */
    char nonce[CONSOLE_SESSION_ID_LEN + 1] = "";
    if (who->session) {
        if (console_random_token(nonce) != 0) {
            http_resp_error(resp, 500, "INTERNAL", "cannot generate an OAuth state");
            out[0] = '\0';
            return -1;
        }
        crypto_sha256_hex(nonce, strlen(nonce), st.browser_hash);
    }
    int64_t ttl = state_ttl(w);
    st.expires_at = (int64_t)time(NULL) + ttl;
    int rc = store_oauth_state_create(w->store, hash, &st);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "ORG_NOT_FOUND", "organization not found");
        out[0] = '\0';
    } else if (rc != STORE_OK) {
        api_store_error(w, resp);
        out[0] = '\0';
    } else if (nonce[0]) {
        char cookie[256];
        if (oauth_binding_set_cookie(cookie, sizeof(cookie), hash, nonce, ttl,
                                     console_cookie_secure(w)) < 0 ||
            http_resp_add_header(resp, "set-cookie", cookie) < 0) {
            http_resp_error(resp, 500, "INTERNAL", "cannot tie the OAuth flow to this browser");
            out[0] = '\0';
            rc = STORE_ERR;
        }
        OPENSSL_cleanse(cookie, sizeof(cookie));
    }
    OPENSSL_cleanse(nonce, sizeof(nonce));
    return rc == STORE_OK ? 0 : -1;
}

static int state_well_formed(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
        if (n > STATE_LEN)
            return 0;
    }
    return n == STATE_LEN;
}

static int bad_state(http_response *resp, const char *msg)
{
    http_resp_error(resp, 400, EC_STATE, "%s", msg);
    return -1;
}

/* Login CSRF (oauth_binding.h).  The state's user is the one who started
 * the flow; the callback must show that the browser finishing it is that
 * user's:
 *  - a callback carrying credentials was matched to the state's user already
 *    (the frontend forwarding it with the user's identity): accepted;
 *  - a flow the console started must end in the browser that started it
 *    (the flow's cookie);
 *  - a flow started with an API key cannot be tied to any browser, and an
 *    API key is what any user holds: refused, or anyone could hand a victim
 *    the provider's URL of a flow they started;
 *  - a flow the trusted frontend started (X-Internal-Secret) is accepted, as
 *    the frontend's documented flow sends the provider straight here, unless
 *    AURORA_OAUTH_REQUIRE_BOUND_CALLBACK (then the frontend must forward the
 *    callback with the user's credentials).
 * The state is consumed already: a refused callback cannot be retried with
 * the same URL.  1 when refused (resp filled), else 0. */
static int binding_refused(worker_ctx *w, const http_request *req, const char *provider,
                           const char *state_hash, const store_oauth_state *st,
                           http_response *resp)
{
    int secure = console_cookie_secure(w);
    if (st->browser_hash[0]) {
        /* The flow is over either way: its cookie goes. */
        char clear[256];
        if (oauth_binding_set_cookie(clear, sizeof(clear), state_hash, NULL, 0, secure) == 0)
            http_resp_add_header(resp, "set-cookie", clear);
    }
    if (req->auth.authenticated)
        return 0;
    if (st->browser_hash[0]) {
        const char *why = NULL;
        if (oauth_binding_check(http_header_get(req, "cookie"), state_hash, st->browser_hash,
                                secure, &why) == OAUTH_BINDING_OK)
            return 0;
        log_warn("OAuth callback for %s refused (user %s of %s started it from the console): %s",
                 provider, st->user_id, st->org_id, why ? why : "binding check failed");
        bad_state(resp, "OAuth state was issued to another browser: finish the connection in the"
                        " browser that started it, with the console open at the callback URL's"
                        " address");
        return 1;
    }
    if (!strcmp(st->started_via, "api_key")) {
        log_warn("OAuth callback for %s refused: user %s of %s started the flow with an API key and"
                 " the callback carries no credentials",
                 provider, st->user_id, st->org_id);
        bad_state(resp, "OAuth flow was started with an API key, which ties it to no browser: start"
                        " the connection from the Aurora console or the frontend, or send the"
                        " callback with that user's credentials");
        return 1;
    }
    if (!w->cfg || !config_bool(&w->cfg->raw, "AURORA_OAUTH_REQUIRE_BOUND_CALLBACK"))
        return 0;
    log_warn("OAuth callback for %s refused: the flow was started without a console session"
             " and the callback carries no credentials (AURORA_OAUTH_REQUIRE_BOUND_CALLBACK)",
             provider);
    bad_state(resp, "OAuth callback is not tied to the user who started the connection: start it"
                    " from the Aurora console in this browser, or send the callback with the"
                    " user's credentials (AURORA_OAUTH_REQUIRE_BOUND_CALLBACK=true)");
    return 1;
}

/* A flow started from a console session finishes only while that session
 * lives.  The callback is a provider's redirect that carries no Aurora
 * credentials, so without this a flow started before sign-out, the idle
 * timeout, the key's revocation or the user's removal still stored the
 * connector and its secret for whoever holds the provider's URL (found in
 * review).  Sign-out and revocation also delete the session's unfinished
 * states (store); this covers the rest (idle, TTL) and any state left
 * behind.  States made before migration 20 name no session.  1 when
 * refused (resp filled), -1 on a store error (resp filled), else 0. */
static int state_session_ended(worker_ctx *w, const char *provider, const store_oauth_state *st,
                               http_response *resp)
{
    if (!st->console_session[0])
        return 0;
    int live = console_session_live(w, st->console_session, st->org_id, st->user_id, resp);
    if (live < 0)
        return -1;
    if (live)
        return 0;
    log_warn("OAuth callback for %s refused: user %s of %s started the flow from a console session"
             " that has ended",
             provider, st->user_id, st->org_id);
    bad_state(resp, "OAuth flow was started from a console session that has ended (signed out,"
                    " timed out, its API key revoked or its user removed): sign in to the console"
                    " again and start the connection again");
    return 1;
}

int oauth_state_take(worker_ctx *w, const http_request *req, const char *provider,
                     oauth_state_info *out, http_response *resp)
{
    const char *one[] = { provider, NULL };
    return oauth_state_take_any(w, req, one, out, resp);
}

static int provider_listed(const char *const *providers, const char *p)
{
    for (; *providers; providers++)
        if (!strcmp(*providers, p))
            return 1;
    return 0;
}

int oauth_state_take_any(worker_ctx *w, const http_request *req, const char *const *providers,
                         oauth_state_info *out, http_response *resp)
{
    memset(out, 0, sizeof(*out));
    char state[128] = "";
    if (!http_query_get(req, "state", state, sizeof(state)) || !state[0])
        return bad_state(resp, "OAuth state is missing");
    if (!state_well_formed(state))
        return bad_state(resp, "OAuth state is malformed");
    char hash[65];
    crypto_sha256_hex(state, strlen(state), hash);
    int64_t now = (int64_t)time(NULL);
    store_oauth_state st;
    int rc = store_oauth_state_consume(w->store, hash, now, &st);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    if (rc == STORE_NOT_FOUND) {
        int64_t used_at = 0, expires_at = 0;
        rc = store_oauth_state_status(w->store, hash, &used_at, &expires_at);
        if (rc == STORE_ERR) {
            api_store_error(w, resp);
            return -1;
        }
        if (rc == STORE_NOT_FOUND)
            return bad_state(resp, "OAuth state is unknown (or the console session that started"
                                   " it has ended); start the connection again");
        if (used_at)
            return bad_state(resp, "OAuth state was already used; start the connection again");
        return bad_state(resp, "OAuth state has expired; start the connection again");
    }
    if (!provider_listed(providers, st.provider))
        return bad_state(resp, "OAuth state was issued for another provider");
    const char *provider = st.provider;
    if (req->auth.authenticated &&
        (strcmp(req->auth.org_id, st.org_id) || strcmp(req->auth.user_id, st.user_id))) {
        log_warn("OAuth callback for %s with a state issued to another user", provider);
        return bad_state(resp, "OAuth state was issued to another user");
    }
    if (binding_refused(w, req, provider, hash, &st, resp) ||
        state_session_ended(w, provider, &st, resp) != 0)
        return -1;
    snprintf(out->org_id, sizeof(out->org_id), "%s", st.org_id);
    snprintf(out->user_id, sizeof(out->user_id), "%s", st.user_id);
    snprintf(out->provider, sizeof(out->provider), "%s", st.provider);
    snprintf(out->redirect_uri, sizeof(out->redirect_uri), "%s", st.redirect_uri);
    snprintf(out->extra, sizeof(out->extra), "%s", st.extra);
    snprintf(out->started_via, sizeof(out->started_via), "%s", st.started_via);
    snprintf(out->console_session, sizeof(out->console_session), "%s", st.console_session);
    return 0;
}

void oauth_state_who(const oauth_state_info *st, auth_ctx *who)
{
    memset(who, 0, sizeof(*who));
    snprintf(who->org_id, sizeof(who->org_id), "%s", st->org_id);
    snprintf(who->user_id, sizeof(who->user_id), "%s", st->user_id);
    who->session = !strcmp(st->started_via, "session");
    who->internal = !strcmp(st->started_via, "internal");
    /* the same session: the follow-on flow ends with it too */
    snprintf(who->session_hash, sizeof(who->session_hash), "%s", st->console_session);
    /* "api_key" (or a state from before migration 16): neither, so the
     * follow-on flow is refused at a callback without the user's credentials
     * as its first part was. */
}

int oauth_callback_auth(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!http_header_get(req, "authorization") && !http_header_get(req, "x-internal-secret"))
        return 0;
    return auth_authenticate(w, req, 0, resp);
}

int oauth_callback_org(worker_ctx *w, const http_request *req, char org[STORE_ID_LEN])
{
    char state[128] = "", hash[65];
    org[0] = '\0';
    if (!w || !w->store || !http_query_get(req, "state", state, sizeof(state)) ||
        !state_well_formed(state))
        return 0;
    crypto_sha256_hex(state, strlen(state), hash);
    OPENSSL_cleanse(state, sizeof(state));
    /* A store error counts nothing: oauth_state_take meets it too and
     * answers it at once. */
    return store_oauth_state_org(w->store, hash, (int64_t)time(NULL), org) == STORE_OK && org[0];
}

#define OAUTH_PRUNE_EVERY_S 600

long oauth_state_prune_task(worker_ctx *w)
{
    int64_t n = 0;
    if (store_oauth_state_prune(w->store, (int64_t)time(NULL), &n) != STORE_OK)
        log_error("pruning OAuth states failed: %s", store_errmsg(w->store));
    else if (n > 0)
        log_info("OAuth states: %lld expired state(s) deleted", (long long)n);
    return OAUTH_PRUNE_EVERY_S;
}

/* ---- token endpoint -------------------------------------------------------------------- */

cJSON *oauth_token_post(worker_ctx *w, const char *token_url, const char *const *form,
                        const char *basic_auth, oauth_result *res)
{
    return kit_oauth_token_post(token_url, form, basic_auth, connector_timeout_ms(w, NULL), res);
}

cJSON *oauth_exchange_code(worker_ctx *w, const oauth_code_exchange *x, oauth_result *res)
{
    const char *form[] = { "grant_type",    "authorization_code",
                           "code",          x->code,
                           "redirect_uri",  x->redirect_uri,
                           "client_id",     x->client_id,
                           "client_secret", x->client_secret,
                           "code_verifier", x->code_verifier,
                           NULL };
    return oauth_token_post(w, x->token_url, form, NULL, res);
}

