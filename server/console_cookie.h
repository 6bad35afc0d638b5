/* console_cookie.h — the pure rules of the console's cookie session: reading
 * the session cookie out of a Cookie header, the Set-Cookie line, the CSRF
 * token comparison, the Origin check and the expiry arithmetic.  No I/O, no
 * store: console_session.c and auth.c apply them; tests/unit checks them. */
#ifndef AURORA_CONSOLE_COOKIE_H
#define AURORA_CONSOLE_COOKIE_H

#include <stddef.h>
#include <stdint.h>

/* Over HTTPS the cookie carries the __Host- prefix: browsers then accept it
 * only with Secure, Path=/ and no Domain, so a sibling subdomain (or a
 * plain-HTTP page of this host) cannot plant a session cookie of its own
 * beside ours.  Plain-HTTP mode (development) cannot use the prefix. */
#define CONSOLE_COOKIE_NAME "aurora_session"
#define CONSOLE_COOKIE_NAME_SECURE "__Host-aurora_session"
/* base64url of 32 random bytes, no padding */
#define CONSOLE_SESSION_ID_LEN 43
#define CONSOLE_CSRF_LEN 43

enum {
    CONSOLE_COOKIE_ABSENT = 0,    /* no session cookie */
    CONSOLE_COOKIE_FOUND = 1,     /* out holds its value */
    CONSOLE_COOKIE_MALFORMED = -1 /* present but not one well-formed value (why says how) */
};

/* The session cookie's name: CONSOLE_COOKIE_NAME_SECURE when secure. */
const char *console_cookie_name(int secure);

/* Finds the session cookie (console_cookie_name(secure)) in a Cookie
 * header value (NULL: no header).  Other
 * cookies are skipped whatever they hold (browsers send every cookie of the
 * host, other ports' applications included).  Ours must appear once and be
 * exactly CONSOLE_SESSION_ID_LEN base64url characters: a second copy (a
 * cookie planted for a sub-path or by a sibling host) makes the request
 * ambiguous and is refused rather than guessed at.  out: at least
 * CONSOLE_SESSION_ID_LEN + 1 bytes. */
int console_cookie_session(const char *header, int secure, char *out, size_t cap,
                           const char **why);
/* The same rules for the cookie called `name` (the OAuth flows' browser
 * binding, connectors/oauth_binding.h, uses them too). */
int console_cookie_find(const char *header, const char *name, char *out, size_t cap,
                        const char **why);

/* A new random session id or CSRF token (CONSOLE_SESSION_ID_LEN chars + NUL). */
int console_random_token(char out[CONSOLE_SESSION_ID_LEN + 1]);

/* The Set-Cookie value (named console_cookie_name(secure)) that sets (value non-NULL, max_age > 0) or clears
 * (value NULL: empty value, Max-Age=0) the session cookie: Path=/,
 * HttpOnly, SameSite=Strict, and Secure unless secure is 0 (plain-HTTP
 * mode).  0, or -1 when cap is too small. */
int console_set_cookie(char *out, size_t cap, const char *value, int64_t max_age, int secure);

/* 1 when the X-CSRF-Token a request sent equals the session's token.
 * Compares digests in constant time; NULL or empty never matches. */
int console_csrf_matches(const char *sent, const char *want);

/* The origin ("scheme://host[:port]", lowercase) of an absolute http(s)
 * URL, path dropped.  0, or -1 when url is not one. */
int console_url_origin(const char *url, char *out, size_t cap);
/* 1 when an Origin header value names one of the allowed origins (each as
 * console_url_origin gives it; NULL entries skipped): case-insensitive,
 * exact otherwise.  "null" and anything that is not an origin never match. */
int console_origin_allowed(const char *origin, const char *const *allowed, size_t n);

/* Whose failed sign-ins a peer address counts against: an IPv4 address
 * (also written IPv4-mapped, "::ffff:a.b.c.d") is itself; an IPv6 address
 * is its /64, which one subscriber usually holds whole, so that hopping
 * between its addresses buys no extra attempts.  Anything else is kept
 * as given (cut to fit).  Always NUL-terminated. */
void console_peer_bucket(const char *peer, char *out, size_t cap);

/* Expiry: a session lives until its absolute expires_at and while it is
 * used at least every idle seconds.  1 if alive at now. */
int console_session_alive(int64_t expires_at, int64_t last_seen, int64_t idle, int64_t now);
/* When it ends if not used again: the earlier of expires_at and
 * last_seen + idle (saturating, never overflowing). */
int64_t console_session_deadline(int64_t expires_at, int64_t last_seen, int64_t idle);

#endif
