/* test_oauth_binding.c — the browser binding of console-started OAuth flows
 * (server/connectors/oauth_binding.c): the cookie's name per flow (with the
 * __Host- prefix over HTTPS), its Set-Cookie line (SameSite=Lax, so that the
 * provider's top-level redirect back carries it; cleared with Max-Age=0),
 * and the callback's check against hostile Cookie headers: missing, another
 * flow's nonce, the right nonce under another flow's name, sent twice,
 * wrong length or alphabet, the plain-HTTP name over HTTPS, and a stored
 * binding that is not a hash.  The nonces and their hashes are made here
 * with OpenSSL's SHA-256 directly, not through the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "oauth_binding.h"

/* Two flows' state hashes (any 64 hex digits) and two nonces (43 base64url). */
#define HASH_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HASH_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define NONCE_A "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE"
#define NONCE_B "ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210_-ZyXwV"

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_cookie_name(void **state)
{
    (void)state;
    char n[OAUTH_BINDING_NAME_MAX];
    assert_int_equal(oauth_binding_cookie_name(HASH_A, 0, n, sizeof(n)), 0);
    assert_string_equal(n, "aurora_oauth_0123456789abcdef");
    assert_int_equal(oauth_binding_cookie_name(HASH_A, 1, n, sizeof(n)), 0);
    assert_string_equal(n, "__Host-aurora_oauth_0123456789abcdef");
    /* too short a hash, no hash, no room */
    assert_int_equal(oauth_binding_cookie_name("0123", 0, n, sizeof(n)), -1);
    assert_int_equal(oauth_binding_cookie_name(NULL, 0, n, sizeof(n)), -1);
    assert_int_equal(oauth_binding_cookie_name(HASH_A, 1, n, 10), -1);
}

static void test_set_cookie(void **state)
{
    (void)state;
    char c[256];
    assert_int_equal(oauth_binding_set_cookie(c, sizeof(c), HASH_A, NONCE_A, 600, 1), 0);
    assert_string_equal(c, "__Host-aurora_oauth_0123456789abcdef=" NONCE_A
                           "; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure");
    assert_int_equal(oauth_binding_set_cookie(c, sizeof(c), HASH_A, NONCE_A, 600, 0), 0);
    assert_string_equal(c, "aurora_oauth_0123456789abcdef=" NONCE_A
                           "; Path=/; Max-Age=600; HttpOnly; SameSite=Lax");
    /* clearing */
    assert_int_equal(oauth_binding_set_cookie(c, sizeof(c), HASH_A, NULL, 600, 1), 0);
    assert_string_equal(c, "__Host-aurora_oauth_0123456789abcdef=; Path=/; Max-Age=0; HttpOnly;"
                           " SameSite=Lax; Secure");
    assert_int_equal(oauth_binding_set_cookie(c, 20, HASH_A, NONCE_A, 600, 1), -1);
    assert_int_equal(oauth_binding_set_cookie(c, sizeof(c), "short", NONCE_A, 600, 1), -1);
}

static int check(const char *header, const char *state_hash, const char *nonce, int secure)
{
    char bh[65];
    sha256_hex(nonce, bh);
    const char *why = "unset";
    int k = oauth_binding_check(header, state_hash, bh, secure, &why);
    if (k == OAUTH_BINDING_OK)
        assert_null(why);
    else
        assert_non_null(why);
    return k;
}

static void test_check_accepts_its_cookie(void **state)
{
    (void)state;
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=" NONCE_A, HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_OK);
    assert_int_equal(check("aurora_oauth_0123456789abcdef=" NONCE_A, HASH_A, NONCE_A, 0),
                     OAUTH_BINDING_OK);
    /* among other cookies: the session, another flow's, another app's */
    assert_int_equal(check("theme=dark; __Host-aurora_session=" NONCE_B
                           "; __Host-aurora_oauth_fedcba9876543210=" NONCE_B
                           ";  __Host-aurora_oauth_0123456789abcdef = " NONCE_A " ;x",
                           HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_OK);
}

static void test_check_refuses(void **state)
{
    (void)state;
    /* no header, no cookie of this flow */
    assert_int_equal(check(NULL, HASH_A, NONCE_A, 1), OAUTH_BINDING_MISSING);
    assert_int_equal(check("", HASH_A, NONCE_A, 1), OAUTH_BINDING_MISSING);
    assert_int_equal(check("__Host-aurora_session=" NONCE_A, HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MISSING);
    /* the right nonce under another flow's name: that flow's cookie, not ours */
    assert_int_equal(check("__Host-aurora_oauth_fedcba9876543210=" NONCE_A, HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MISSING);
    /* over HTTPS the plain name does not count (a plain-HTTP page could plant it) */
    assert_int_equal(check("aurora_oauth_0123456789abcdef=" NONCE_A, HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MISSING);
    /* the attacker's own flow cookie value, under this flow's name */
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=" NONCE_B, HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MISMATCH);
    /* sent twice (one planted beside ours): ambiguous, refused */
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=" NONCE_A
                           "; __Host-aurora_oauth_0123456789abcdef=" NONCE_A,
                           HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MALFORMED);
    /* not a nonce: short, long, bad alphabet, empty */
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=abc", HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MALFORMED);
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=" NONCE_A "A", HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MALFORMED);
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCdE",
                           HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MALFORMED);
    assert_int_equal(check("__Host-aurora_oauth_0123456789abcdef=", HASH_A, NONCE_A, 1),
                     OAUTH_BINDING_MALFORMED);
    /* a stored binding that is not a hash, or no state hash */
    const char *why = NULL;
    assert_int_equal(oauth_binding_check("__Host-aurora_oauth_0123456789abcdef=" NONCE_A, HASH_A,
                                         "abc", 1, &why),
                     OAUTH_BINDING_MALFORMED);
    assert_int_equal(oauth_binding_check("x=y", NULL, HASH_B, 1, NULL), OAUTH_BINDING_MALFORMED);
    /* an oversized header of look-alike names */
    static char big[65536];
    size_t o = 0;
    while (o + 64 < sizeof(big))
        o += (size_t)snprintf(big + o, sizeof(big) - o, "__Host-aurora_oauth_0123456789abcde=x; ");
    assert_int_equal(check(big, HASH_A, NONCE_A, 1), OAUTH_BINDING_MISSING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_name),
        cmocka_unit_test(test_set_cookie),
        cmocka_unit_test(test_check_accepts_its_cookie),
        cmocka_unit_test(test_check_refuses),
    };
    return cmocka_run_group_tests_name("oauth_binding", tests, NULL, NULL);
}
