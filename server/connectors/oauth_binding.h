/* oauth_binding.h — ties an OAuth flow started from the web console to the
 * browser that started it (login CSRF).
 *
 * The provider's redirect to a callback carries no Aurora credentials, and
 * the console's session cookie is SameSite=Strict, so it is not sent on that
 * cross-site redirect either.  Without a binding, a user could start a flow,
 * hand the provider's authorize URL to a victim, and get the victim's
 * provider account linked to their own Aurora user.  When a flow starts from
 * a console session (the browser itself calls the login route), the login
 * answer sets a cookie holding a random nonce (SameSite=Lax: browsers send
 * it on the provider's top-level redirect back), the state row keeps only
 * the nonce's SHA-256, and the callback requires the cookie.  One cookie per
 * flow, named after the state, so flows started side by side from one
 * browser do not overwrite each other's.
 *
 * Pure rules only (names, Set-Cookie lines, the comparison); oauth.c applies
 * them and tests/unit/test_oauth_binding.c checks them. */
#ifndef AURORA_OAUTH_BINDING_H
#define AURORA_OAUTH_BINDING_H

#include <stddef.h>
#include <stdint.h>

/* Over HTTPS the __Host- prefix, as for the session cookie: a sibling
 * subdomain cannot plant one. */
#define OAUTH_BINDING_PREFIX "aurora_oauth_"
#define OAUTH_BINDING_PREFIX_SECURE "__Host-aurora_oauth_"
/* Characters of the state's SHA-256 hex in the cookie's name: enough to
 * keep concurrent flows apart; the name is not a secret. */
#define OAUTH_BINDING_NAME_HASH 16
#define OAUTH_BINDING_NAME_MAX 48

/* The cookie name for the flow whose state hashes (hex) to state_hash.
 * 0, or -1 when state_hash is shorter than OAUTH_BINDING_NAME_HASH or cap
 * too small. */
int oauth_binding_cookie_name(const char *state_hash, int secure, char *out, size_t cap);

/* The Set-Cookie value that sets (nonce non-NULL, max_age > 0) or clears
 * (nonce NULL: Max-Age=0) the flow's cookie: Path=/, HttpOnly,
 * SameSite=Lax, Secure unless secure is 0.  0, or -1 when cap is too small
 * or the name cannot be made. */
int oauth_binding_set_cookie(char *out, size_t cap, const char *state_hash, const char *nonce,
                             int64_t max_age, int secure);

enum {
    OAUTH_BINDING_OK = 0,
    OAUTH_BINDING_MISSING = -1,   /* no cookie for this flow: another browser finished it */
    OAUTH_BINDING_MISMATCH = -2,  /* a cookie, but not this flow's nonce */
    OAUTH_BINDING_MALFORMED = -3, /* sent twice or not a nonce */
};

/* Checks a callback's Cookie header (NULL: none) against the flow's stored
 * browser_hash (SHA-256 hex of the nonce).  Compares digests in constant
 * time.  OAUTH_BINDING_*; why (may be NULL) gets a reason for the log. */
int oauth_binding_check(const char *cookie_header, const char *state_hash,
                        const char *browser_hash, int secure, const char **why);

#endif
