/* test_console_session.c — the web console's session rules and storage:
 *  - console_cookie.c: the session cookie read out of hostile Cookie
 *    headers (duplicates, oversized, wrong length or alphabet, look-alike
 *    names, other applications' cookies), the Set-Cookie line, the CSRF
 *    comparison, the Origin check, the expiry arithmetic and the sign-in
 *    rate-limit bucket of a peer address;
 *  - console_static.c: which paths are console pages, content types;
 *  - store_console.c on a SQLite file and on a throwaway PostgreSQL server
 *    (pg_harness.h): only the hash is stored, expiry (absolute and idle),
 *    use marks the session, sign-out, a revoked or deleted key or a removed
 *    member ends the session, the prune deletes exactly the dead rows, and
 *    old sign-in counters are forgotten; sign-out and revocation delete the
 *    OAuth flows the session started and did not finish; a deleted
 *    organization (or removed user) named again by the backend does not
 *    bring its sessions back; the per-key cap reads an index and holds
 *    under concurrent sign-ins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "console_cookie.h"
#include "console_static.h"
#include "crypto.h"
#include "db.h"
#include "pg_harness.h"
#include "store.h"
#include "store_console.h"
#include "token.h"

#define STORE_PLACE_DB "aurora_console"
#include "store_place.h"

/* 43 base64url characters: the shape of a session id */
#define SID "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE"

/* ---- cookie parsing ------------------------------------------------------------------------ */

static int parse(const char *header, char *out)
{
    return console_cookie_session(header, 0, out, CONSOLE_SESSION_ID_LEN + 1, NULL);
}

static void test_cookie_found(void **state)
{
    (void)state;
    char v[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(strlen(SID), CONSOLE_SESSION_ID_LEN);
    assert_int_equal(parse("aurora_session=" SID, v), CONSOLE_COOKIE_FOUND);
    assert_string_equal(v, SID);
    /* among other cookies, with the white space browsers and proxies add */
    assert_int_equal(parse("theme=dark; aurora_session=" SID "; lang=en", v), CONSOLE_COOKIE_FOUND);
    assert_string_equal(v, SID);
    assert_int_equal(parse("  aurora_session = " SID " ;", v), CONSOLE_COOKIE_FOUND);
    assert_string_equal(v, SID);
    /* other applications' cookies of this host hold anything: skipped */
    assert_int_equal(parse("x=\"quoted, with; semicolons\"; junk; =; ==; aurora_session=" SID, v),
                     CONSOLE_COOKIE_FOUND);
    assert_string_equal(v, SID);
}

static void test_cookie_absent(void **state)
{
    (void)state;
    char v[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(parse(NULL, v), CONSOLE_COOKIE_ABSENT);
    assert_int_equal(parse("", v), CONSOLE_COOKIE_ABSENT);
    assert_int_equal(parse(";;; ;", v), CONSOLE_COOKIE_ABSENT);
    assert_int_equal(parse("theme=dark", v), CONSOLE_COOKIE_ABSENT);
    /* look-alike names are someone else's cookie */
    assert_int_equal(parse("Aurora_Session=" SID, v), CONSOLE_COOKIE_ABSENT);
    assert_int_equal(parse("aurora_session2=" SID, v), CONSOLE_COOKIE_ABSENT);
    assert_int_equal(parse("xaurora_session=" SID, v), CONSOLE_COOKIE_ABSENT);
    assert_int_equal(parse("aurora_sessio=" SID, v), CONSOLE_COOKIE_ABSENT);
    /* the name without '=' is not a pair */
    assert_int_equal(parse("aurora_session", v), CONSOLE_COOKIE_ABSENT);
    assert_string_equal(v, "");
}

static void test_cookie_hostile(void **state)
{
    (void)state;
    char v[CONSOLE_SESSION_ID_LEN + 1];
    const char *why = NULL;
    /* two copies (e.g. one planted by a sibling host for Path=/api) */
    assert_int_equal(console_cookie_session("aurora_session=" SID "; aurora_session=" SID, 0, v,
                                            sizeof(v), &why),
                     CONSOLE_COOKIE_MALFORMED);
    assert_non_null(why);
    assert_non_null(strstr(why, "more than once"));
    assert_int_equal(parse("aurora_session=" SID ", aurora_session=" SID, v),
                     CONSOLE_COOKIE_MALFORMED); /* joined by a proxy with a comma */
    /* wrong length, empty, oversized */
    assert_int_equal(parse("aurora_session=", v), CONSOLE_COOKIE_MALFORMED);
    assert_int_equal(parse("aurora_session=abc", v), CONSOLE_COOKIE_MALFORMED);
    assert_int_equal(parse("aurora_session=" SID "A", v), CONSOLE_COOKIE_MALFORMED);
    char big[20000];
    memcpy(big, "aurora_session=", 15);
    memset(big + 15, 'A', sizeof(big) - 16);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse(big, v), CONSOLE_COOKIE_MALFORMED);
    /* right length, outside the alphabet */
    assert_int_equal(parse("aurora_session=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCdE", v),
                     CONSOLE_COOKIE_MALFORMED);
    assert_int_equal(parse("aurora_session=\"AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbC\"", v),
                     CONSOLE_COOKIE_MALFORMED);
    assert_int_equal(parse("aurora_session=AbCdEfGhIjKlMnOpQrStUvWxYz01234567 9-_AbCdE", v),
                     CONSOLE_COOKIE_MALFORMED);
    assert_int_equal(parse("aurora_session=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbC\x01", v),
                     CONSOLE_COOKIE_MALFORMED);
    assert_string_equal(v, "");
    /* a malformed copy spoils a good one, whichever comes first */
    assert_int_equal(parse("aurora_session=x; aurora_session=" SID, v), CONSOLE_COOKIE_MALFORMED);
    assert_int_equal(parse("aurora_session=" SID "; aurora_session=x", v), CONSOLE_COOKIE_MALFORMED);
    /* too small an output buffer is refused, never overrun */
    char small[10];
    assert_int_equal(console_cookie_session("aurora_session=" SID, 0, small, sizeof(small), NULL),
                     CONSOLE_COOKIE_MALFORMED);
}

/* Over HTTPS only the __Host- cookie counts: one without the prefix (which a
 * sibling host or a plain-HTTP page could have set) is somebody else's. */
static void test_cookie_host_prefix(void **state)
{
    (void)state;
    char v[CONSOLE_SESSION_ID_LEN + 1];
    assert_string_equal(console_cookie_name(1), "__Host-aurora_session");
    assert_string_equal(console_cookie_name(0), "aurora_session");
    assert_int_equal(console_cookie_session("__Host-aurora_session=" SID, 1, v, sizeof(v), NULL),
                     CONSOLE_COOKIE_FOUND);
    assert_string_equal(v, SID);
    assert_int_equal(console_cookie_session("aurora_session=" SID, 1, v, sizeof(v), NULL),
                     CONSOLE_COOKIE_ABSENT);
    assert_int_equal(console_cookie_session("__Host-aurora_session=" SID, 0, v, sizeof(v), NULL),
                     CONSOLE_COOKIE_ABSENT);
    assert_int_equal(console_cookie_session("aurora_session=x; __Host-aurora_session=" SID, 1, v,
                                            sizeof(v), NULL),
                     CONSOLE_COOKIE_FOUND);
    assert_int_equal(console_cookie_session("__Host-aurora_session=" SID
                                            "; __Host-aurora_session=" SID,
                                            1, v, sizeof(v), NULL),
                     CONSOLE_COOKIE_MALFORMED);
}

static void test_random_tokens(void **state)
{
    (void)state;
    char a[CONSOLE_SESSION_ID_LEN + 1], b[CONSOLE_SESSION_ID_LEN + 1], v[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(console_random_token(a), 0);
    assert_int_equal(console_random_token(b), 0);
    assert_int_equal(strlen(a), CONSOLE_SESSION_ID_LEN);
    assert_string_not_equal(a, b);
    /* what the server makes, it reads back */
    char h[80];
    snprintf(h, sizeof(h), "aurora_session=%s", a);
    assert_int_equal(parse(h, v), CONSOLE_COOKIE_FOUND);
    assert_string_equal(v, a);
}

static void test_set_cookie(void **state)
{
    (void)state;
    char c[200];
    assert_int_equal(console_set_cookie(c, sizeof(c), SID, 28800, 1), 0);
    assert_string_equal(c, "__Host-aurora_session=" SID
                           "; Path=/; Max-Age=28800; HttpOnly; SameSite=Strict; Secure");
    assert_int_equal(console_set_cookie(c, sizeof(c), SID, 60, 0), 0);
    assert_string_equal(c, "aurora_session=" SID "; Path=/; Max-Age=60; HttpOnly; SameSite=Strict");
    assert_int_equal(console_set_cookie(c, sizeof(c), NULL, 0, 1), 0);
    assert_string_equal(c,
                        "__Host-aurora_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure");
    assert_int_equal(console_set_cookie(c, 20, SID, 60, 1), -1);
}

/* ---- CSRF and Origin -------------------------------------------------------------------------- */

static void test_csrf_compare(void **state)
{
    (void)state;
    assert_true(console_csrf_matches(SID, SID));
    assert_false(console_csrf_matches(NULL, SID));
    assert_false(console_csrf_matches("", SID));
    assert_false(console_csrf_matches(SID, ""));
    assert_false(console_csrf_matches(SID, NULL));
    assert_false(console_csrf_matches("", ""));
    assert_false(console_csrf_matches(SID "x", SID));
    assert_false(console_csrf_matches("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdF", SID));
    /* case matters in a token */
    assert_false(console_csrf_matches("abCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE", SID));
}

static void test_origin(void **state)
{
    (void)state;
    char o[300];
    assert_int_equal(console_url_origin("https://Aurora.Example.com/some/path?x#y", o, sizeof(o)), 0);
    assert_string_equal(o, "https://aurora.example.com");
    assert_int_equal(console_url_origin("http://127.0.0.1:5080", o, sizeof(o)), 0);
    assert_string_equal(o, "http://127.0.0.1:5080");
    assert_int_equal(console_url_origin("https://[::1]:5080/", o, sizeof(o)), 0);
    assert_string_equal(o, "https://[::1]:5080");
    assert_int_equal(console_url_origin("ftp://x", o, sizeof(o)), -1);
    assert_int_equal(console_url_origin("https://", o, sizeof(o)), -1);
    assert_int_equal(console_url_origin("https://a b", o, sizeof(o)), -1);
    assert_int_equal(console_url_origin("https://user@host", o, sizeof(o)), -1);
    assert_int_equal(console_url_origin("https://aurora.example.com", o, 10), -1);

    const char *allowed[] = { "https://localhost:5080", NULL, "https://aurora.example.com" };
    assert_true(console_origin_allowed("https://localhost:5080", allowed, 3));
    assert_true(console_origin_allowed("HTTPS://LOCALHOST:5080", allowed, 3));
    assert_true(console_origin_allowed("https://aurora.example.com", allowed, 3));
    assert_false(console_origin_allowed("http://localhost:5080", allowed, 3));   /* scheme */
    assert_false(console_origin_allowed("https://localhost:5081", allowed, 3));  /* port */
    assert_false(console_origin_allowed("https://localhost", allowed, 3));
    assert_false(console_origin_allowed("https://evil.example", allowed, 3));
    assert_false(console_origin_allowed("https://localhost:5080.evil.example", allowed, 3));
    assert_false(console_origin_allowed("https://localhost:5080/", allowed, 3)); /* not an origin */
    assert_false(console_origin_allowed("null", allowed, 3));
    assert_false(console_origin_allowed("", allowed, 3));
    assert_false(console_origin_allowed(NULL, allowed, 3));
    assert_false(console_origin_allowed("https://localhost:5080", allowed, 0));
}

/* ---- expiry arithmetic ------------------------------------------------------------------------ */

static void test_expiry(void **state)
{
    (void)state;
    /* signed in at 1000, 8 h absolute, 30 min idle */
    int64_t exp = 1000 + 28800, idle = 1800;
    assert_true(console_session_alive(exp, 1000, idle, 1000));
    assert_true(console_session_alive(exp, 1000, idle, 1000 + 1799));
    assert_false(console_session_alive(exp, 1000, idle, 1000 + 1800)); /* idle, to the second */
    assert_int_equal(console_session_deadline(exp, 1000, idle), 2800);
    /* used just before the idle end: alive again for a full idle period */
    assert_true(console_session_alive(exp, 2799, idle, 2799 + 1799));
    /* but never beyond the absolute end, however recently used */
    assert_true(console_session_alive(exp, exp - 1, idle, exp - 1));
    assert_false(console_session_alive(exp, exp - 1, idle, exp));
    assert_int_equal(console_session_deadline(exp, exp - 10, idle), exp);
    /* no overflow with extreme values */
    assert_int_equal(console_session_deadline(INT64_MAX, INT64_MAX - 5, 1800), INT64_MAX);
    assert_true(console_session_alive(INT64_MAX, INT64_MAX - 5, 1800, INT64_MAX - 1));
    /* an idle of 0 (not configurable, but safe): the absolute end alone */
    assert_int_equal(console_session_deadline(exp, 1000, 0), exp);
}

/* ---- sign-in rate-limit buckets ----------------------------------------------------------- */

static void test_peer_bucket(void **state)
{
    (void)state;
    char b[80];
    console_peer_bucket("203.0.113.7", b, sizeof(b));
    assert_string_equal(b, "203.0.113.7");
    console_peer_bucket("::ffff:203.0.113.7", b, sizeof(b));
    assert_string_equal(b, "203.0.113.7"); /* the same client over a dual-stack socket */
    console_peer_bucket("::FFFF:127.0.0.1", b, sizeof(b));
    assert_string_equal(b, "127.0.0.1");
    /* every address of one /64 is one bucket */
    console_peer_bucket("2001:db8:1:2:aaaa:bbbb:cccc:dddd", b, sizeof(b));
    assert_string_equal(b, "2001:db8:1:2::/64");
    char b2[80];
    console_peer_bucket("2001:db8:1:2::1", b2, sizeof(b2));
    assert_string_equal(b, b2);
    console_peer_bucket("2001:db8:1:3::1", b2, sizeof(b2));
    assert_string_not_equal(b, b2);
    console_peer_bucket("::1", b, sizeof(b));
    assert_string_equal(b, "::/64");
    /* not an address: kept as given, cut to fit */
    console_peer_bucket("unix-socket", b, sizeof(b));
    assert_string_equal(b, "unix-socket");
    console_peer_bucket(NULL, b, sizeof(b));
    assert_string_equal(b, "");
    char tiny[6];
    console_peer_bucket("2001:db8:1:2::1", tiny, sizeof(tiny));
    assert_int_equal(strlen(tiny), 5);
}

/* ---- pages and content types ------------------------------------------------------------------- */

static void test_pages(void **state)
{
    (void)state;
    static const char *const yes[] = { "/",          "/connectors",     "/clusters",
                                       "/clusters/cluster-0123456789abcdef",
                                       "/run",       "/audit",          "/incidents",
                                       "/incidents/inc_0a1b2c",           "/signin",
                                       /* one trailing slash, as typed */
                                       "/connectors/", "/clusters/cluster-0123456789abcdef/",
                                       "/signin/" };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(console_is_page(yes[i]));
    static const char *const no[] = { "",           "/connectors//",   "/clusters//",
                                      "/clusters/a/b", "/clusters/..", "/clusters/.",
                                      "/incidents/a%2fb", "/login",    "/callback",
                                      "/health",    "/api/me",         "/console",
                                      "/console/app.js", "/signin/x",  "//",
                                      "/audit?x" };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(console_is_page(no[i]));
    char longid[200] = "/clusters/";
    memset(longid + 10, 'a', 150);
    longid[160] = '\0';
    assert_false(console_is_page(longid));
    assert_string_equal(console_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(console_content_type("app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(console_content_type("app.css"), "text/css; charset=utf-8");
    assert_string_equal(console_content_type("logo.svg"), "image/svg+xml");
    assert_string_equal(console_content_type("README"), "application/octet-stream");
    assert_string_equal(console_content_type("x.exe"), "application/octet-stream");
}

/* ---- the store ------------------------------------------------------------------------------- */

typedef struct {
    store_t *s;
    store_place at; /* its database (store_place.h) */
    char org[STORE_ID_LEN];
    char user[STORE_ID_LEN];
    char key_id[STORE_ID_LEN];
} fixture;

static void init_fixture(fixture *f)
{
    char err[256] = "";
    if (store_open(f->at.url, &f->s, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    store_org o;
    assert_int_equal(store_org_create(f->s, "acme", &o), STORE_OK);
    memcpy(f->org, o.id, sizeof(f->org));
    store_user u;
    assert_int_equal(store_user_create(f->s, f->org, "ops@acme.test", "admin", &u), STORE_OK);
    memcpy(f->user, u.id, sizeof(f->user));
    char key[API_KEY_LEN + 1], hash[65], preview[TOKEN_PREVIEW_LEN];
    assert_int_equal(token_new_api_key(key), 0);
    token_hash(key, hash);
    token_preview(key, preview);
    store_api_key k;
    assert_int_equal(store_api_key_create(f->s, f->org, f->user, "console", hash, preview, &k),
                     STORE_OK);
    memcpy(f->key_id, k.id, sizeof(f->key_id));
}

static int setup_file(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_sqlite(&f->at, "console");
    init_fixture(f);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_pg(&f->at);
    init_fixture(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    store_place_remove(&f->at);
    free(f);
    return 0;
}

#define T0 1793613600LL
#define TTL 28800
#define IDLE 1800

/* A session of the fixture's key (or of the backend, key_id "") created at
 * `at`; hash gets the SHA-256 hex of a fresh id. */
static void new_session(fixture *f, const char *key_id, int64_t at, char hash[65], char *csrf)
{
    char id[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(console_random_token(id), 0);
    crypto_sha256_hex(id, strlen(id), hash);
    store_console_session c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", f->org);
    snprintf(c.user_id, sizeof(c.user_id), "%s", f->user);
    snprintf(c.key_id, sizeof(c.key_id), "%s", key_id);
    assert_int_equal(console_random_token(c.csrf_token), 0);
    if (csrf)
        strcpy(csrf, c.csrf_token);
    c.created_at = c.last_seen_at = at;
    c.expires_at = at + TTL;
    assert_int_equal(store_console_session_create(f->s, hash, &c), STORE_OK);
}

static void test_store_session_life(void **state)
{
    fixture *f = *state;
    char h[65], csrf[CONSOLE_CSRF_LEN + 1];
    new_session(f, f->key_id, T0, h, csrf);
    store_console_session c;
    assert_int_equal(store_console_session_use(f->s, h, T0 + 10, IDLE, &c), STORE_OK);
    assert_string_equal(c.org_id, f->org);
    assert_string_equal(c.user_id, f->user);
    assert_string_equal(c.key_id, f->key_id);
    assert_string_equal(c.csrf_token, csrf);
    assert_int_equal(c.created_at, T0);
    assert_int_equal(c.last_seen_at, T0 + 10);
    assert_int_equal(c.expires_at, T0 + TTL);
    /* used at T0+10: alive until T0+10+IDLE, not a second more */
    assert_int_equal(store_console_session_use(f->s, h, T0 + 10 + IDLE - 1, IDLE, &c), STORE_OK);
    assert_int_equal(c.last_seen_at, T0 + 10 + IDLE - 1);
    assert_int_equal(store_console_session_use(f->s, h, T0 + 10 + 2 * IDLE - 1, IDLE, &c),
                     STORE_NOT_FOUND);
    /* a hash of no session, a malformed one */
    char other[65];
    crypto_sha256_hex("forged", 6, other);
    assert_int_equal(store_console_session_use(f->s, other, T0, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_use(f->s, "not-a-hash", T0, IDLE, &c), STORE_ERR);
    assert_int_equal(store_console_session_use(f->s, csrf, T0, IDLE, &c), STORE_ERR);
}

static void test_store_absolute_expiry(void **state)
{
    fixture *f = *state;
    char h[65];
    new_session(f, f->key_id, T0, h, NULL);
    store_console_session c;
    /* used every IDLE/2 seconds, it still ends at T0 + TTL */
    int64_t t = T0;
    for (; t < T0 + TTL; t += IDLE / 2)
        assert_int_equal(store_console_session_use(f->s, h, t, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_use(f->s, h, T0 + TTL - 1, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_use(f->s, h, T0 + TTL, IDLE, &c), STORE_NOT_FOUND);
}

static void test_store_delete(void **state)
{
    fixture *f = *state;
    char h1[65], h2[65];
    new_session(f, f->key_id, T0, h1, NULL);
    new_session(f, f->key_id, T0, h2, NULL);
    assert_int_equal(store_console_session_delete(f->s, h1), STORE_OK);
    assert_int_equal(store_console_session_delete(f->s, h1), STORE_NOT_FOUND);
    store_console_session c;
    assert_int_equal(store_console_session_use(f->s, h1, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
    /* the other session of the same key is untouched */
    assert_int_equal(store_console_session_use(f->s, h2, T0 + 1, IDLE, &c), STORE_OK);
}

/* Signing in again and again with one key (no cookie sent back) must not
 * grow the table: past STORE_CONSOLE_SESSIONS_MAX live sessions of the same
 * key, a new one ends the least recently used; the backend's sessions of
 * the same user are counted apart. */
static void test_store_sessions_per_key_are_capped(void **state)
{
    fixture *f = *state;
    enum { EXTRA = 5, N = STORE_CONSOLE_SESSIONS_MAX + EXTRA };
    static char h[N][65];
    char hb[65];
    new_session(f, "", T0, hb, NULL);
    for (int i = 0; i < N; i++)
        new_session(f, f->key_id, T0 + i, h[i], NULL);
    store_console_session c;
    int64_t now = T0 + N;
    for (int i = 0; i < EXTRA; i++)
        assert_int_equal(store_console_session_peek(f->s, h[i], now, IDLE, &c), STORE_NOT_FOUND);
    for (int i = EXTRA; i < N; i++)
        assert_int_equal(store_console_session_peek(f->s, h[i], now, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_peek(f->s, hb, now, IDLE, &c), STORE_OK);
    /* the one used last stays when the next sign-in comes */
    assert_int_equal(store_console_session_use(f->s, h[EXTRA], now, IDLE, &c), STORE_OK);
    char fresh[65];
    new_session(f, f->key_id, now, fresh, NULL);
    assert_int_equal(store_console_session_peek(f->s, h[EXTRA], now, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_peek(f->s, h[EXTRA + 1], now, IDLE, &c),
                     STORE_NOT_FOUND);
    assert_int_equal(store_console_session_peek(f->s, fresh, now, IDLE, &c), STORE_OK);
    /* the backend's sessions of the user have their own cap */
    for (int i = 0; i < STORE_CONSOLE_SESSIONS_MAX; i++)
        new_session(f, "", now + 1, h[i], NULL);
    assert_int_equal(store_console_session_peek(f->s, hb, now + 1, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_peek(f->s, fresh, now + 1, IDLE, &c), STORE_OK);
}

/* Sign-ins of one key at the same moment (two replicas, two workers) must
 * not get past the cap between one's trimming and its insert: each racer
 * has its own store handle, all start together, and after every round the
 * key holds at most STORE_CONSOLE_SESSIONS_MAX rows. */
enum { RACERS = 4, RACE_ROUNDS = 30 };

typedef struct {
    fixture *f;
    store_t *s;
    pthread_barrier_t *start;
    int64_t at;
    int rc;
} racer;

static void *race_sign_in(void *arg)
{
    racer *r = arg;
    char id[CONSOLE_SESSION_ID_LEN + 1], hash[65];
    store_console_session c;
    memset(&c, 0, sizeof(c));
    r->rc = STORE_ERR;
    if (console_random_token(id) < 0 || console_random_token(c.csrf_token) < 0)
        return NULL;
    crypto_sha256_hex(id, strlen(id), hash);
    snprintf(c.org_id, sizeof(c.org_id), "%s", r->f->org);
    snprintf(c.user_id, sizeof(c.user_id), "%s", r->f->user);
    snprintf(c.key_id, sizeof(c.key_id), "%s", r->f->key_id);
    c.created_at = c.last_seen_at = r->at;
    c.expires_at = r->at + TTL;
    pthread_barrier_wait(r->start);
    r->rc = store_console_session_create(r->s, hash, &c);
    return NULL;
}

static long long key_rows(fixture *f)
{
    long long n = -1;
    if (store_place_is_pg(&f->at)) {
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM console_sessions WHERE key_id = '%s'",
                 f->key_id);
        assert_int_equal(pg_sql(&g_pg, f->at.db, sql, &n), 0);
        return n;
    }
    char path[96];
    snprintf(path, sizeof(path), "%s/store.db", f->at.dir);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT COUNT(*) FROM console_sessions WHERE key_id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, f->key_id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_store_session_cap_holds_under_concurrent_sign_ins(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < STORE_CONSOLE_SESSIONS_MAX; i++) {
        char h[65];
        new_session(f, f->key_id, T0, h, NULL);
    }
    racer r[RACERS];
    pthread_barrier_t start;
    for (int i = 0; i < RACERS; i++) {
        char err[256] = "";
        r[i].f = f;
        r[i].start = &start;
        if (store_open(f->at.url, &r[i].s, err, sizeof(err)) != STORE_OK)
            fail_msg("store_open: %s", err);
    }
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_t th[RACERS];
        assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
        for (int i = 0; i < RACERS; i++) {
            r[i].at = T0 + 1 + round;
            assert_int_equal(pthread_create(&th[i], NULL, race_sign_in, &r[i]), 0);
        }
        for (int i = 0; i < RACERS; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            if (r[i].rc != STORE_OK)
                fail_msg("round %d: a racing sign-in failed: %s", round, store_errmsg(r[i].s));
        }
        pthread_barrier_destroy(&start);
        long long n = key_rows(f);
        if (n != STORE_CONSOLE_SESSIONS_MAX)
            fail_msg("round %d: the key holds %lld sessions (cap %d)", round, n,
                     STORE_CONSOLE_SESSIONS_MAX);
    }
    for (int i = 0; i < RACERS; i++)
        store_close(r[i].s);
}

static void test_store_revoked_key_ends_sessions(void **state)
{
    fixture *f = *state;
    char h[65], hb[65];
    new_session(f, f->key_id, T0, h, NULL);
    new_session(f, "", T0, hb, NULL); /* the backend's: the membership backs it */
    store_console_session c;
    assert_int_equal(store_console_session_use(f->s, h, T0 + 1, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_use(f->s, hb, T0 + 1, IDLE, &c), STORE_OK);
    assert_int_equal(store_api_key_revoke(f->s, f->org, f->key_id, T0 + 2), STORE_OK);
    assert_int_equal(store_console_session_use(f->s, h, T0 + 3, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_use(f->s, hb, T0 + 3, IDLE, &c), STORE_OK);
    /* the prune deletes the revoked key's row, keeps the live one */
    int64_t n = -1;
    assert_int_equal(store_console_session_prune(f->s, T0 + 4, IDLE, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_console_session_delete(f->s, h), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_delete(f->s, hb), STORE_OK);
}

static void test_store_key_of_another_org(void **state)
{
    fixture *f = *state;
    /* a row naming a key of another org (never made by the server, but the
     * lookup must not trust it) is no session */
    store_org o2;
    assert_int_equal(store_org_create(f->s, "other", &o2), STORE_OK);
    char h[65];
    new_session(f, f->key_id, T0, h, NULL);
    store_console_session c;
    char id[CONSOLE_SESSION_ID_LEN + 1], h2[65];
    assert_int_equal(console_random_token(id), 0);
    crypto_sha256_hex(id, strlen(id), h2);
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", o2.id);
    snprintf(c.user_id, sizeof(c.user_id), "%s", f->user);
    snprintf(c.key_id, sizeof(c.key_id), "%s", f->key_id);
    strcpy(c.csrf_token, "t");
    c.created_at = c.last_seen_at = T0;
    c.expires_at = T0 + TTL;
    assert_int_equal(store_console_session_create(f->s, h2, &c), STORE_OK);
    assert_int_equal(store_console_session_use(f->s, h2, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_use(f->s, h, T0 + 1, IDLE, &c), STORE_OK);
    assert_string_equal(c.org_id, f->org);
}

static void test_store_removed_user_ends_sessions(void **state)
{
    fixture *f = *state;
    char h[65], hb[65];
    new_session(f, f->key_id, T0, h, NULL);
    new_session(f, "", T0, hb, NULL);
    int keys = 0;
    assert_int_equal(store_user_remove(f->s, f->org, f->user, &keys), STORE_OK);
    assert_int_equal(keys, 1);
    store_console_session c;
    assert_int_equal(store_console_session_use(f->s, h, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_use(f->s, hb, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
}

/* A backend session (no key: the membership alone backs it) of a removed
 * user must not come back when the backend names the user again: the
 * removal deletes it (it came back until the next prune). */
static void test_store_removed_user_named_again_stays_out(void **state)
{
    fixture *f = *state;
    char hb[65];
    new_session(f, "", T0, hb, NULL);
    assert_int_equal(store_user_remove(f->s, f->org, f->user, NULL), STORE_OK);
    assert_int_equal(store_identity_provision(f->s, f->org, f->user, "backend", NULL), STORE_OK);
    store_console_session c;
    assert_int_equal(store_console_session_peek(f->s, hb, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_delete(f->s, hb), STORE_NOT_FOUND);
}

/* An organization deleted and made again with the same id (the backend
 * provisions whatever X-Org-ID it names) starts without sessions: the old
 * backend session came back to life with the new membership until the
 * next prune (found in review).  Other organizations' sessions stay. */
static void test_store_deleted_org_ends_its_sessions(void **state)
{
    fixture *f = *state;
    char h[65], hb[65], other[65];
    new_session(f, f->key_id, T0, h, NULL);
    new_session(f, "", T0, hb, NULL);
    /* another org's backend session, of the same user id */
    assert_int_equal(store_identity_provision(f->s, "org-other", f->user, "backend", NULL),
                     STORE_OK);
    char id[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(console_random_token(id), 0);
    crypto_sha256_hex(id, strlen(id), other);
    store_console_session c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "org-other");
    snprintf(c.user_id, sizeof(c.user_id), "%s", f->user);
    strcpy(c.csrf_token, "t");
    c.created_at = c.last_seen_at = T0;
    c.expires_at = T0 + TTL;
    assert_int_equal(store_console_session_create(f->s, other, &c), STORE_OK);

    assert_int_equal(store_org_delete(f->s, f->org), STORE_OK);
    assert_int_equal(store_identity_provision(f->s, f->org, f->user, "backend", NULL), STORE_OK);
    assert_int_equal(store_console_session_peek(f->s, hb, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_peek(f->s, h, T0 + 1, IDLE, &c), STORE_NOT_FOUND);
    /* gone with the organization, not left for the prune */
    assert_int_equal(store_console_session_delete(f->s, hb), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_delete(f->s, h), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_peek(f->s, other, T0 + 1, IDLE, &c), STORE_OK);
    assert_string_equal(c.org_id, "org-other");
}

/* A state of the fixture's user started from console session `session`
 * ("" : not from the console); hash gets the state's hash. */
static void new_flow(fixture *f, const char *session, char hash[65])
{
    char v[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(console_random_token(v), 0);
    crypto_sha256_hex(v, strlen(v), hash);
    store_oauth_state st;
    memset(&st, 0, sizeof(st));
    snprintf(st.org_id, sizeof(st.org_id), "%s", f->org);
    snprintf(st.user_id, sizeof(st.user_id), "%s", f->user);
    snprintf(st.provider, sizeof(st.provider), "gcp");
    snprintf(st.started_via, sizeof(st.started_via), "%s", session[0] ? "session" : "api_key");
    snprintf(st.console_session, sizeof(st.console_session), "%s", session);
    st.expires_at = (int64_t)time(NULL) + 600;
    assert_int_equal(store_oauth_state_create(f->s, hash, &st), STORE_OK);
}

/* STORE_OK when the flow of state hash h can still be finished (consumes it). */
static int take_flow(fixture *f, const char *h, store_oauth_state *got)
{
    return store_oauth_state_consume(f->s, h, (int64_t)time(NULL), got);
}

/* Sign-out deletes, with the session, the flows it started and did not
 * finish: their callback carries no credentials to refuse. */
static void test_store_sign_out_ends_its_flows(void **state)
{
    fixture *f = *state;
    char h[65], h2[65], mine[65], spent[65], others[65], keyed[65];
    new_session(f, f->key_id, T0, h, NULL);
    new_session(f, f->key_id, T0, h2, NULL);
    new_flow(f, h, mine);
    new_flow(f, h, spent);
    new_flow(f, h2, others);
    new_flow(f, "", keyed);
    store_oauth_state got;
    assert_int_equal(take_flow(f, spent, &got), STORE_OK); /* finished before the sign-out */
    assert_string_equal(got.console_session, h);
    assert_string_equal(got.started_via, "session");
    assert_int_equal(store_console_session_delete(f->s, h), STORE_OK);
    int64_t used = 0, exp = 0;
    assert_int_equal(store_oauth_state_status(f->s, mine, &used, &exp), STORE_NOT_FOUND);
    assert_int_equal(take_flow(f, mine, &got), STORE_NOT_FOUND);
    /* a finished flow stays what it was ("already used") */
    assert_int_equal(store_oauth_state_status(f->s, spent, &used, &exp), STORE_OK);
    assert_true(used > 0);
    /* another session's flow and a flow started with the key are not its */
    assert_int_equal(take_flow(f, others, &got), STORE_OK);
    assert_string_equal(got.console_session, h2);
    assert_int_equal(take_flow(f, keyed, &got), STORE_OK);
    assert_string_equal(got.console_session, "");
    /* a hash that is not one is refused, not stored */
    store_oauth_state bad;
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.org_id, sizeof(bad.org_id), "%s", f->org);
    snprintf(bad.user_id, sizeof(bad.user_id), "%s", f->user);
    snprintf(bad.provider, sizeof(bad.provider), "gcp");
    snprintf(bad.console_session, sizeof(bad.console_session), "not-a-hash");
    bad.expires_at = (int64_t)time(NULL) + 600;
    char bh[65];
    crypto_sha256_hex("bad", 3, bh);
    assert_int_equal(store_oauth_state_create(f->s, bh, &bad), STORE_ERR);
}

/* Revoking a key deletes, in its transaction, the unfinished flows its
 * console sessions started; a backend session's flows of the same user,
 * another key's, and the flows started with the key itself stay. */
static void test_store_revoked_key_ends_its_flows(void **state)
{
    fixture *f = *state;
    char key[API_KEY_LEN + 1], kh[65], preview[TOKEN_PREVIEW_LEN];
    assert_int_equal(token_new_api_key(key), 0);
    token_hash(key, kh);
    token_preview(key, preview);
    store_api_key k2;
    assert_int_equal(store_api_key_create(f->s, f->org, f->user, "second", kh, preview, &k2),
                     STORE_OK);
    char h[65], hb[65], hk2[65], a[65], b[65], c2[65], keyed[65];
    new_session(f, f->key_id, T0, h, NULL);
    new_session(f, "", T0, hb, NULL);
    new_session(f, k2.id, T0, hk2, NULL);
    new_flow(f, h, a);
    new_flow(f, hb, b);
    new_flow(f, hk2, c2);
    new_flow(f, "", keyed);
    assert_int_equal(store_api_key_revoke(f->s, f->org, f->key_id, T0 + 1), STORE_OK);
    store_oauth_state got;
    assert_int_equal(take_flow(f, a, &got), STORE_NOT_FOUND);
    int64_t used = 0, exp = 0;
    assert_int_equal(store_oauth_state_status(f->s, a, &used, &exp), STORE_NOT_FOUND);
    assert_int_equal(take_flow(f, b, &got), STORE_OK);
    assert_int_equal(take_flow(f, c2, &got), STORE_OK);
    assert_int_equal(take_flow(f, keyed, &got), STORE_OK);
    /* revoking again, or a key of another org: the answers they had */
    assert_int_equal(store_api_key_revoke(f->s, f->org, f->key_id, T0 + 2), STORE_OK);
    assert_int_equal(store_api_key_revoke(f->s, "org_nope", k2.id, T0 + 2), STORE_NOT_FOUND);
    /* no transaction left open: the store still writes */
    new_flow(f, hk2, a);
    assert_int_equal(take_flow(f, a, &got), STORE_OK);
}

/* Marking a session used once its request passed its checks does not
 * bring back one that ended meanwhile. */
static void test_store_mark_used_keeps_ended_sessions_ended(void **state)
{
    fixture *f = *state;
    char h[65];
    new_session(f, f->key_id, T0, h, NULL);
    store_console_session c;
    assert_int_equal(store_console_session_peek(f->s, h, T0 + 5, IDLE, &c), STORE_OK);
    assert_int_equal(c.last_seen_at, T0);
    /* peek marks nothing */
    assert_int_equal(store_console_session_peek(f->s, h, T0 + IDLE, IDLE, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_peek(f->s, h, T0 + IDLE - 1, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_mark_used(f->s, h, T0 + 10, IDLE, &c), STORE_OK);
    assert_int_equal(c.last_seen_at, T0 + 10);
    assert_int_equal(store_console_session_peek(f->s, h, T0 + 10 + IDLE - 1, IDLE, &c), STORE_OK);
    /* read alive, ended (idle) before the mark: stays ended */
    assert_int_equal(store_console_session_mark_used(f->s, h, T0 + 10 + IDLE, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_peek(f->s, h, T0 + 10 + IDLE, IDLE, &c),
                     STORE_NOT_FOUND);
    assert_int_equal(store_console_session_mark_used(f->s, "not-a-hash", T0, IDLE, &c), STORE_ERR);
}

/* The per-key cap's DELETE (store_console_session_create) reads the
 * sessions of one key through console_sessions_key_idx, not the table. */
static void test_store_sessions_per_key_index(void **state)
{
    fixture *f = *state;
    if (store_place_is_pg(&f->at)) {
        /* PostgreSQL's planner may prefer a scan of a table this small: the
         * index is there, on those columns */
        long long n = -1;
        assert_int_equal(pg_sql(&g_pg, f->at.db,
                                "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema()"
                                " AND tablename = 'console_sessions'"
                                " AND indexname = 'console_sessions_key_idx'"
                                " AND indexdef LIKE '%(org_id, user_id, key_id)'",
                                &n),
                         0);
        assert_int_equal(n, 1);
        return;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/store.db", f->at.dir);
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "EXPLAIN QUERY PLAN DELETE FROM console_sessions"
                                        " WHERE org_id = 'o' AND user_id = 'u' AND key_id = 'k'"
                                        " AND id_hash NOT IN (SELECT id_hash FROM console_sessions"
                                        " WHERE org_id = 'o' AND user_id = 'u' AND key_id = 'k'"
                                        " ORDER BY last_seen_at DESC, created_at DESC, id_hash"
                                        " LIMIT 19)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    int indexed = 0, scans = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(st, 3);
        print_message("cap plan: %s\n", detail ? detail : "");
        indexed += detail && strstr(detail, "console_sessions_key_idx") != NULL;
        scans += detail && !strncmp(detail, "SCAN", 4) && !strstr(detail, "INDEX");
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_int_equal(indexed, 2); /* the DELETE and its subquery */
    assert_int_equal(scans, 0);
}

static void test_store_prune(void **state)
{
    fixture *f = *state;
    char live[65], idle[65], expired[65];
    new_session(f, f->key_id, T0, live, NULL);
    new_session(f, f->key_id, T0, idle, NULL);
    new_session(f, f->key_id, T0 - TTL, expired, NULL);
    store_console_session c;
    int64_t now = T0 + IDLE + 5;
    assert_int_equal(store_console_session_use(f->s, live, T0 + 10, IDLE, &c), STORE_OK);
    int64_t n = -1;
    assert_int_equal(store_console_session_prune(f->s, now, IDLE, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_console_session_delete(f->s, idle), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_delete(f->s, expired), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_use(f->s, live, now, IDLE, &c), STORE_OK);
    assert_int_equal(store_console_session_prune(f->s, now, IDLE, &n), STORE_OK);
    assert_int_equal(n, 0);
}

static void test_store_bad_input(void **state)
{
    fixture *f = *state;
    char h[65];
    crypto_sha256_hex("x", 1, h);
    store_console_session c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", f->org);
    snprintf(c.user_id, sizeof(c.user_id), "%s", f->user);
    strcpy(c.csrf_token, "t");
    c.expires_at = T0;
    assert_int_equal(store_console_session_create(f->s, "plaintext-id", &c), STORE_ERR);
    assert_int_equal(store_console_session_create(f->s, NULL, &c), STORE_ERR);
    c.org_id[0] = '\0';
    assert_int_equal(store_console_session_create(f->s, h, &c), STORE_ERR);
    snprintf(c.org_id, sizeof(c.org_id), "%s", f->org);
    c.csrf_token[0] = '\0';
    assert_int_equal(store_console_session_create(f->s, h, &c), STORE_ERR);
    strcpy(c.csrf_token, "t");
    assert_int_equal(store_console_session_create(f->s, h, &c), STORE_OK);
    /* the same id twice is a conflict, not a second row */
    assert_int_equal(store_console_session_create(f->s, h, &c), STORE_CONFLICT);
}

static void test_store_signin_counters_forgotten(void **state)
{
    fixture *f = *state;
    int allowed = 0;
    /* two addresses that failed in an old minute, one in this minute, and
     * another limiter's counter */
    assert_int_equal(store_rate_take(f->s, "console-signin/minute:192.0.2.1", T0 - 120, 10, 0,
                                     &allowed), STORE_OK);
    assert_int_equal(store_rate_take(f->s, "console-signin/minute:192.0.2.2", T0 - 60, 10, 0,
                                     &allowed), STORE_OK);
    assert_int_equal(store_rate_take(f->s, "console-signin/minute:192.0.2.3", T0, 10, 0, &allowed),
                     STORE_OK);
    assert_int_equal(store_rate_take(f->s, "agent_tokens/minute:usr_x", T0 - 120, 10, 0, &allowed),
                     STORE_OK);
    int64_t n = -1;
    assert_int_equal(store_console_signin_forget(f->s, "console-signin/minute:", T0, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_console_signin_forget(f->s, "console-signin/minute:", T0, &n), STORE_OK);
    assert_int_equal(n, 0);
    /* this minute's counter is still there: one more slot, not a fresh limit */
    assert_int_equal(store_rate_take(f->s, "console-signin/minute:192.0.2.3", T0, 2, 0, &allowed),
                     STORE_OK);
    assert_int_equal(allowed, 1);
    assert_int_equal(store_rate_take(f->s, "console-signin/minute:192.0.2.3", T0, 2, 0, &allowed),
                     STORE_OK);
    assert_int_equal(allowed, 0);
    /* another limiter's rows are not touched (its own take forgets them) */
    assert_int_equal(store_rate_take(f->s, "agent_tokens/minute:usr_x", T0 - 120, 1, 0, &allowed),
                     STORE_OK);
    assert_int_equal(allowed, 0);
    /* a prefix with LIKE wildcards is refused, not widened */
    assert_int_equal(store_console_signin_forget(f->s, "console%", T0, &n), STORE_ERR);
    assert_int_equal(store_console_signin_forget(f->s, "console_signin", T0, &n), STORE_ERR);
    assert_int_equal(store_console_signin_forget(f->s, "", T0, &n), STORE_ERR);
}

#define BOTH(t)                                                                                    \
    { "file/" #t, t, setup_file, teardown, NULL }, { "postgres/" #t, t, setup_pg, teardown, NULL }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_found),
        cmocka_unit_test(test_cookie_absent),
        cmocka_unit_test(test_cookie_hostile),
        cmocka_unit_test(test_cookie_host_prefix),
        cmocka_unit_test(test_random_tokens),
        cmocka_unit_test(test_set_cookie),
        cmocka_unit_test(test_csrf_compare),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_peer_bucket),
        cmocka_unit_test(test_pages),
        BOTH(test_store_session_life),
        BOTH(test_store_absolute_expiry),
        BOTH(test_store_delete),
        BOTH(test_store_sessions_per_key_are_capped),
        BOTH(test_store_session_cap_holds_under_concurrent_sign_ins),
        BOTH(test_store_revoked_key_ends_sessions),
        BOTH(test_store_key_of_another_org),
        BOTH(test_store_removed_user_ends_sessions),
        BOTH(test_store_removed_user_named_again_stays_out),
        BOTH(test_store_deleted_org_ends_its_sessions),
        BOTH(test_store_sign_out_ends_its_flows),
        BOTH(test_store_revoked_key_ends_its_flows),
        BOTH(test_store_mark_used_keeps_ended_sessions_ended),
        BOTH(test_store_sessions_per_key_index),
        BOTH(test_store_prune),
        BOTH(test_store_bad_input),
        BOTH(test_store_signin_counters_forgotten),
    };
    return cmocka_run_group_tests_name("console_session", tests, store_place_group_setup,
                                       store_place_group_teardown);
}
