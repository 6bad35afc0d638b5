/* oauth_binding.c — the browser binding of console-started OAuth flows; see
 * oauth_binding.h. */
#include "oauth_binding.h"

#include <stdio.h>
#include <string.h>

#include "console_cookie.h"
#include "crypto.h"

int oauth_binding_cookie_name(const char *state_hash, int secure, char *out, size_t cap)
{
    if (!state_hash || strnlen(state_hash, OAUTH_BINDING_NAME_HASH) < OAUTH_BINDING_NAME_HASH)
        return -1;
    int n = snprintf(out, cap, "%s%.*s", secure ? OAUTH_BINDING_PREFIX_SECURE : OAUTH_BINDING_PREFIX,
                     OAUTH_BINDING_NAME_HASH, state_hash);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int oauth_binding_set_cookie(char *out, size_t cap, const char *state_hash, const char *nonce,
                             int64_t max_age, int secure)
{
    char name[OAUTH_BINDING_NAME_MAX];
    if (oauth_binding_cookie_name(state_hash, secure, name, sizeof(name)) < 0)
        return -1;
    /* Lax, not Strict: the callback is a top-level GET navigation from the
     * provider's site, on which browsers send Lax cookies and never Strict
     * ones.  Nothing else reads this cookie. */
    int n = snprintf(out, cap, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax%s", name,
                     nonce ? nonce : "", (long long)(nonce && max_age > 0 ? max_age : 0),
                     secure ? "; Secure" : "");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int oauth_binding_check(const char *cookie_header, const char *state_hash,
                        const char *browser_hash, int secure, const char **why)
{
    const char *ignored;
    if (!why)
        why = &ignored;
    char name[OAUTH_BINDING_NAME_MAX];
    if (!browser_hash || strlen(browser_hash) != 64 ||
        oauth_binding_cookie_name(state_hash, secure, name, sizeof(name)) < 0) {
        *why = "the flow's binding is not well formed";
        return OAUTH_BINDING_MALFORMED;
    }
    char nonce[CONSOLE_SESSION_ID_LEN + 1];
    int k = console_cookie_find(cookie_header, name, nonce, sizeof(nonce), why);
    if (k == CONSOLE_COOKIE_MALFORMED)
        return OAUTH_BINDING_MALFORMED;
    if (k == CONSOLE_COOKIE_ABSENT) {
        *why = "the browser sent no cookie for this flow";
        return OAUTH_BINDING_MISSING;
    }
    char got[65];
    crypto_sha256_hex(nonce, strlen(nonce), got);
    explicit_bzero(nonce, sizeof(nonce));
    if (!crypto_ct_equal(got, 64, browser_hash, 64)) {
        *why = "the browser's cookie is not this flow's";
        return OAUTH_BINDING_MISMATCH;
    }
    *why = NULL;
    return OAUTH_BINDING_OK;
}
