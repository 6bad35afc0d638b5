/* console_session.c — sign-in, sign-out and the cookie check of the web
 * console (console_session.h); the pure rules are in console_cookie.c, the
 * SQL in store_console.c. */
#include "console_session.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "auth.h"
#include "console_cookie.h"
#include "crypto.h"
#include "http.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "store_console.h"
#include "token.h"

#define SESSION_PATH "/api/console/session"
/* An API key is 54 characters; anything much longer is not one. */
#define API_KEY_INPUT_MAX 256
#define SIGNIN_WINDOW_S 60
#define CONSOLE_SIGNIN_RATE_PREFIX "console-signin/minute:"
#define PRUNE_EVERY_S 300

static int64_t ttl_s(const worker_ctx *w)
{
    return server_setting_int(w->cfg, "AURORA_CONSOLE_SESSION_TTL");
}

static int64_t idle_s(const worker_ctx *w)
{
    return server_setting_int(w->cfg, "AURORA_CONSOLE_SESSION_IDLE");
}

/* Secure unless the browser talks plain HTTP to this very listener. */
int console_cookie_secure(const worker_ctx *w)
{
    if (!w->cfg)
        return 1;
    return !w->cfg->plain_http || w->cfg->tls_terminated_by_proxy;
}

static void session_id_hash(const char *id, char hash[65])
{
    crypto_sha256_hex(id, strlen(id), hash);
}

/* The session id the request's cookie carries: CONSOLE_COOKIE_* (why: the
 * reason when malformed). */
static int cookie_of(const worker_ctx *w, const http_request *req,
                     char id[CONSOLE_SESSION_ID_LEN + 1], const char **why)
{
    return console_cookie_session(http_header_get(req, "cookie"), console_cookie_secure(w), id,
                                  CONSOLE_SESSION_ID_LEN + 1, why);
}

/* Looks the session of the request's cookie up (and, when touch, marks it
 * used).
 * STORE_OK with *c, STORE_NOT_FOUND (resp: 400, or 401 with code: UNAUTHORIZED
 * where the cookie stands for credentials, NO_SESSION on the public session
 * routes, which never ask for credentials), or STORE_ERR (resp: 503). */
static int live_session(worker_ctx *w, const http_request *req, store_console_session *c,
                        char hash[65], const char *code, int touch, http_response *resp)
{
    char id[CONSOLE_SESSION_ID_LEN + 1];
    const char *why = NULL;
    int k = cookie_of(w, req, id, &why);
    if (k == CONSOLE_COOKIE_MALFORMED) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", why);
        return STORE_NOT_FOUND;
    }
    if (k == CONSOLE_COOKIE_ABSENT) {
        http_resp_error(resp, 401, code, "no console session (sign in)");
        return STORE_NOT_FOUND;
    }
    session_id_hash(id, hash);
    explicit_bzero(id, sizeof(id));
    int rc = touch ? store_console_session_use(w->store, hash, (int64_t)time(NULL), idle_s(w), c)
                   : store_console_session_peek(w->store, hash, (int64_t)time(NULL), idle_s(w), c);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return STORE_ERR;
    }
    if (rc != STORE_OK) {
        http_resp_error(resp, 401, code,
                        "console session expired, signed out or unknown (sign in again)");
        return STORE_NOT_FOUND;
    }
    return STORE_OK;
}

/* The origins a cookie-authenticated write may come from: this server as
 * the browser reached it (scheme and Host) and AURORA_PUBLIC_URL's. */
static int origin_ok(const worker_ctx *w, const http_request *req)
{
    const char *origin = http_header_get(req, "origin");
    if (!origin)
        return 1; /* no Origin (older browsers): the CSRF token decides alone */
    char self[300] = "", pub[300] = "", url[300];
    const char *host = http_header_get(req, "host");
    if (host && strlen(host) < 256) {
        snprintf(url, sizeof(url), "%s://%s", console_cookie_secure(w) ? "https" : "http", host);
        if (console_url_origin(url, self, sizeof(self)) < 0)
            self[0] = '\0';
    }
    const char *p = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (!p || console_url_origin(p, pub, sizeof(pub)) < 0)
        pub[0] = '\0';
    const char *allowed[] = { self[0] ? self : NULL, pub[0] ? pub : NULL };
    return console_origin_allowed(origin, allowed, 2);
}

static int is_safe_method(http_method m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS;
}

/* Writes made with the cookie: the session's CSRF token in X-CSRF-Token
 * (a page of another site cannot read it) and, when sent, our Origin.
 * 0, or -1 with a 403 in resp. */
static int csrf_check(const worker_ctx *w, const http_request *req, const store_console_session *c,
                      http_response *resp)
{
    if (is_safe_method(req->method))
        return 0;
    if (!console_csrf_matches(http_header_get(req, "x-csrf-token"), c->csrf_token)) {
        log_warn("refused a console write from %s: missing or wrong X-CSRF-Token",
                 http_client(req));
        http_resp_error(resp, 403, "CSRF_FAILED",
                        "a write with the console session must carry its X-CSRF-Token");
        return -1;
    }
    if (!origin_ok(w, req)) {
        log_warn("refused a console write from %s: Origin is not this server", http_client(req));
        http_resp_error(resp, 403, "CSRF_FAILED", "the request's Origin is not this server");
        return -1;
    }
    return 0;
}

/* The console marks its timer-driven refreshes (X-Aurora-Poll: 1): they
 * are authenticated like any request but do not count as use, so an open
 * tab that only polls still reaches the idle timeout. */
static int background_request(const http_request *req)
{
    const char *v = http_header_get(req, "x-aurora-poll");
    return v && !strcmp(v, "1");
}

int console_session_authenticate(worker_ctx *w, const http_request *req, auth_ctx *a,
                                 http_response *resp)
{
    char id[CONSOLE_SESSION_ID_LEN + 1];
    if (cookie_of(w, req, id, NULL) == CONSOLE_COOKIE_ABSENT)
        return 0;
    explicit_bzero(id, sizeof(id));
    store_console_session c;
    char hash[65];
    if (live_session(w, req, &c, hash, "UNAUTHORIZED", 0, resp) != STORE_OK ||
        csrf_check(w, req, &c, resp) < 0)
        return -1;
    /* Use only once the CSRF check passed: a write another site's page
     * makes the browser send (refused above) must not keep the session
     * alive past its idle timeout. */
    if (!background_request(req) &&
        store_console_session_mark_used(w->store, hash, (int64_t)time(NULL), idle_s(w), &c) ==
            STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    snprintf(a->org_id, sizeof(a->org_id), "%s", c.org_id);
    snprintf(a->user_id, sizeof(a->user_id), "%s", c.user_id);
    snprintf(a->key_id, sizeof(a->key_id), "%s", c.key_id);
    snprintf(a->session_hash, sizeof(a->session_hash), "%s", hash);
    a->session = 1;
    return 1;
}

int console_session_live(worker_ctx *w, const char *id_hash, const char *org_id,
                         const char *user_id, http_response *resp)
{
    store_console_session c;
    int rc = store_console_session_peek(w->store, id_hash, (int64_t)time(NULL), idle_s(w), &c);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    return rc == STORE_OK && !strcmp(c.org_id, org_id) && !strcmp(c.user_id, user_id);
}

/* ---- the three routes ---------------------------------------------------------------------- */

static void session_body(const worker_ctx *w, const store_console_session *c, int status,
                         http_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "csrf_token", c->csrf_token);
    api_add_time(o, "expires_at", c->expires_at);
    api_add_time(o, "idle_expires_at",
                 console_session_deadline(c->expires_at, c->last_seen_at, idle_s(w)));
    cJSON_AddStringToObject(o, "user_id", c->user_id);
    cJSON_AddStringToObject(o, "org_id", c->org_id);
    cJSON_AddStringToObject(o, "auth", c->key_id[0] ? "api_key" : "internal_secret");
    if (c->key_id[0])
        cJSON_AddStringToObject(o, "key_id", c->key_id);
    http_resp_json(resp, status, o);
    /* Holds the CSRF token: no cache keeps it. */
    http_resp_add_header(resp, "cache-control", "no-store");
}

/* One slot of the client's failed sign-ins for this minute (its address, or
 * its IPv6 /64; past a trusted proxy, the client it forwarded for:
 * client_addr.h): taken after a wrong API key, or before a backend-secret
 * sign-in, which gives it back when it succeeds or the store fails.  0 (taken: *window set), or -1 with 429/503. */
static int signin_slot(worker_ctx *w, const http_request *req, int by_key, char *key,
                       size_t cap, int64_t *window, http_response *resp)
{
    char bucket[80];
    console_peer_bucket(http_client(req), bucket, sizeof(bucket));
    /* The backend's attempts count apart: behind a proxy not listed in
     * AURORA_TRUSTED_PROXIES every client shares its address, and wrong API
     * keys from anyone must not make the trusted backend's sign-ins 429. */
    snprintf(key, cap, CONSOLE_SIGNIN_RATE_PREFIX "%s%s", by_key ? "" : "backend/", bucket);
    int64_t limit = server_setting_int(w->cfg, "AURORA_CONSOLE_SIGNIN_LIMIT");
    if (api_rate_take(w, key, limit, SIGNIN_WINDOW_S, "failed sign-ins from this address",
                      window, resp) == 0)
        return 0;
    if (resp->status == 429)
        log_warn("console sign-in from %s refused: %lld failed attempts this minute",
                 http_client(req), (long long)limit);
    return -1;
}

/* Who the sign-in speaks for: the trusted backend's headers, or the JSON
 * body's API key.  0 with a filled, or -1 with resp filled. */
static int signin_identity(worker_ctx *w, http_request *req, auth_ctx *a, http_response *resp)
{
    if (http_header_get(req, "x-internal-secret")) {
        /* auth_authenticate reads req->auth; the session copies it. */
        if (auth_authenticate(w, req, 0, resp) < 0)
            return -1;
        *a = req->auth;
        return 0;
    }
    memset(a, 0, sizeof(*a));
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return -1;
    const char *key = api_json_str(body, "api_key");
    int rc = -1;
    if (!key || !*key || strlen(key) > API_KEY_INPUT_MAX)
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "body must be {\"api_key\": \"<API key>\"} (at most %d characters)",
                        API_KEY_INPUT_MAX);
    else
        rc = auth_api_key(w, key, a, resp);
    cJSON_Delete(body);
    return rc;
}

/* A sign-in is a cross-site request forgery target too ("login CSRF": a
 * page of another site signs the victim's browser into the attacker's
 * account, whose console then records what the victim types).  A browser
 * says where a request comes from: Origin must be ours when sent, and
 * Sec-Fetch-Site, when sent, same-origin (or "none": typed by the user).
 * The API key form also has to be JSON, which no HTML form can send
 * cross-site without a CORS preflight this server never grants.
 * 0, or -1 with resp filled. */
static int signin_request_ok(const worker_ctx *w, const http_request *req, int api_key,
                             http_response *resp)
{
    const char *site = http_header_get(req, "sec-fetch-site");
    if (!origin_ok(w, req) ||
        (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)) {
        log_warn("refused a console sign-in from %s: sent from another site", http_client(req));
        http_resp_error(resp, 403, "CSRF_FAILED",
                        "a console sign-in must come from this server's own pages");
        return -1;
    }
    if (api_key) {
        const char *ct = http_header_get(req, "content-type");
        size_t n = strlen("application/json");
        if (!ct || strncasecmp(ct, "application/json", n) != 0 ||
            (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ')) {
            http_resp_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE",
                            "sign in with Content-Type: application/json and "
                            "{\"api_key\": \"<API key>\"}");
            return -1;
        }
    }
    return 0;
}

/* The session the request's cookie still names, if any, ends: a sign-in
 * always starts a fresh one (no fixation, and no orphan rows left behind
 * by a browser that signs in again). */
static int end_previous_session(worker_ctx *w, const http_request *req, http_response *resp)
{
    char id[CONSOLE_SESSION_ID_LEN + 1], hash[65];
    if (cookie_of(w, req, id, NULL) != CONSOLE_COOKIE_FOUND)
        return 0;
    session_id_hash(id, hash);
    explicit_bzero(id, sizeof(id));
    if (store_console_session_delete(w->store, hash) == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    return 0;
}

static void session_create(worker_ctx *w, http_request *req, http_response *resp)
{
    int64_t now = (int64_t)time(NULL), window = 0;
    char rate_key[128];
    int by_key = !http_header_get(req, "x-internal-secret");
    if (signin_request_ok(w, req, by_key, resp) < 0)
        return;
    auth_ctx a;
    if (by_key) {
        /* The key is checked first and a right one always signs in: failed
         * attempts from a shared address (a NAT, an office) must not lock
         * the rightful user out.  Only failures take a slot; once the
         * address has used them all, its attempts get 429 without an
         * answer about the key. */
        if (signin_identity(w, req, &a, resp) < 0) {
            /* A store failure (503) is not the caller's failed attempt. */
            if (resp->status < 500)
                (void)signin_slot(w, req, 1, rate_key, sizeof(rate_key), &window, resp);
            log_warn("console sign-in from %s failed (%d)", http_client(req), resp->status);
            return;
        }
    } else {
        /* The backend's secret: slot first, as before any shared-secret check. */
        if (signin_slot(w, req, 0, rate_key, sizeof(rate_key), &window, resp) < 0)
            return;
        int ok = signin_identity(w, req, &a, resp) == 0;
        /* The slot stays taken only for the caller's failed attempt (a
         * wrong secret, a malformed header): a store failure (503) is not
         * one, and kept, a failing store used the backend's limit up and
         * its sign-ins stayed 429 after the store came back (found in
         * review). */
        if ((ok || resp->status >= 500) &&
            store_rate_give_back(w->store, rate_key, window) != STORE_OK)
            log_error("console sign-in: giving the rate-limit slot back failed: %s",
                      store_errmsg(w->store));
        if (!ok) {
            log_warn("console sign-in from %s failed (%d)", http_client(req), resp->status);
            return;
        }
    }
    if (end_previous_session(w, req, resp) < 0)
        return;
    char id[CONSOLE_SESSION_ID_LEN + 1], hash[65];
    store_console_session c;
    memset(&c, 0, sizeof(c));
    if (console_random_token(id) < 0 || console_random_token(c.csrf_token) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "no randomness for a session id");
        return;
    }
    session_id_hash(id, hash);
    snprintf(c.org_id, sizeof(c.org_id), "%s", a.org_id);
    snprintf(c.user_id, sizeof(c.user_id), "%s", a.user_id);
    snprintf(c.key_id, sizeof(c.key_id), "%s", a.key_id);
    c.created_at = c.last_seen_at = now;
    c.expires_at = now + ttl_s(w);
    if (store_console_session_create(w->store, hash, &c) != STORE_OK) {
        explicit_bzero(id, sizeof(id));
        api_store_error(w, resp);
        return;
    }
    char cookie[256];
    console_set_cookie(cookie, sizeof(cookie), id, ttl_s(w), console_cookie_secure(w));
    explicit_bzero(id, sizeof(id));
    log_info("console session started for user %s in org %s from %s", c.user_id, c.org_id,
             http_client(req));
    session_body(w, &c, 201, resp);
    http_resp_add_header(resp, "set-cookie", cookie);
    explicit_bzero(cookie, sizeof(cookie));
}

static void session_get(worker_ctx *w, http_request *req, http_response *resp)
{
    store_console_session c;
    char hash[65];
    /* The console's check at the session's end (X-Aurora-Poll) must not be
     * what keeps an unattended session alive. */
    if (live_session(w, req, &c, hash, "NO_SESSION", !background_request(req), resp) != STORE_OK)
        return;
    session_body(w, &c, 200, resp);
}

static void clear_cookie(const worker_ctx *w, http_response *resp)
{
    char cookie[160];
    console_set_cookie(cookie, sizeof(cookie), NULL, 0, console_cookie_secure(w));
    http_resp_add_header(resp, "set-cookie", cookie);
}

/* Sign-out: the row goes and the browser is told to drop the cookie.  A
 * live session's sign-out is a write like any other (CSRF token); one that
 * already ended is only cleared away. */
static void session_delete(worker_ctx *w, http_request *req, http_response *resp)
{
    char id[CONSOLE_SESSION_ID_LEN + 1], hash[65];
    const char *why = NULL;
    int k = cookie_of(w, req, id, &why);
    if (k == CONSOLE_COOKIE_MALFORMED) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", why);
        clear_cookie(w, resp);
        return;
    }
    if (k == CONSOLE_COOKIE_FOUND) {
        explicit_bzero(id, sizeof(id));
        store_console_session c;
        /* not marked used: a refused sign-out (CSRF) is no use either */
        int rc = live_session(w, req, &c, hash, "NO_SESSION", 0, resp);
        if (rc == STORE_ERR)
            return;
        if (rc == STORE_OK && csrf_check(w, req, &c, resp) < 0)
            return;
        rc = store_console_session_delete(w->store, hash);
        if (rc == STORE_ERR) {
            api_store_error(w, resp);
            return;
        }
    }
    buf_reset(&resp->body);
    resp->status = 204;
    resp->content_type = "application/json";
    clear_cookie(w, resp);
}

/* The periodic task: rows no request can use any more. */
static long prune(worker_ctx *w)
{
    int64_t n = 0;
    int64_t now = (int64_t)time(NULL);
    if (store_console_session_prune(w->store, now, idle_s(w), &n) != STORE_OK)
        log_error("pruning console sessions failed: %s", store_errmsg(w->store));
    else if (n > 0)
        log_info("console sessions: %lld ended session(s) deleted", (long long)n);
    /* Each address that ever failed a sign-in left a counter row: an
     * attacker with many addresses must not grow the table for good. */
    if (store_console_signin_forget(w->store, CONSOLE_SIGNIN_RATE_PREFIX,
                                    now - now % SIGNIN_WINDOW_S, &n) != STORE_OK)
        log_error("pruning console sign-in counters failed: %s", store_errmsg(w->store));
    return PRUNE_EVERY_S;
}

void console_session_register(void)
{
    http_capture_header("x-csrf-token");
    http_capture_header("sec-fetch-site");
    http_capture_header("x-aurora-poll");
    router_add(HTTP_POST, SESSION_PATH, ROUTE_PUBLIC, session_create);
    router_add(HTTP_GET, SESSION_PATH, ROUTE_PUBLIC, session_get);
    router_add(HTTP_DELETE, SESSION_PATH, ROUTE_PUBLIC, session_delete);
    periodic_add("console-session-prune", WORKER_POOL_STORE, 60, prune);
}
