/* test_github_app.c — the GitHub App's pure pieces (server/connectors/
 * github_app.c): the App JWT's header and claims as GitHub documents them
 * ("Generating a JSON Web Token for a GitHub App": RS256, iat 60 s in the
 * past, exp at most 10 minutes, iss the client ID or App ID), its
 * signature checked with OpenSSL's verifier, base64url without padding
 * (RFC 4648 §5 vectors), and the parsers for GitHub's timestamps,
 * installation ids and Link pagination headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "github_app.h"
#include "jwt.h"

/* ---- base64url ------------------------------------------------------------------ */

static void expect_b64url(const void *in, size_t n, const char *want)
{
    char out[64];
    size_t got = crypto_base64url(in, n, out, sizeof(out));
    assert_int_equal(got, strlen(want));
    assert_string_equal(out, want);
    char *j = jwt_b64url(in, n);
    assert_non_null(j);
    assert_string_equal(j, want);
    free(j);
    if (n) { /* and back */
        size_t dn = 0;
        unsigned char *d = crypto_base64_decode(want, strlen(want), &dn);
        assert_non_null(d);
        assert_int_equal(dn, n);
        assert_memory_equal(d, in, n);
        free(d);
    }
}

static void test_base64url(void **state)
{
    /* RFC 4648 §10 vectors, without their padding */
    expect_b64url("", 0, "");
    expect_b64url("f", 1, "Zg");
    expect_b64url("fo", 2, "Zm8");
    expect_b64url("foo", 3, "Zm9v");
    expect_b64url("foob", 4, "Zm9vYg");
    expect_b64url("fooba", 5, "Zm9vYmE");
    expect_b64url("foobar", 6, "Zm9vYmFy");
    /* the two characters where base64url differs from base64 ('+' '/') */
    const unsigned char minus_under[] = { 0xfb, 0xff };
    expect_b64url(minus_under, 2, "-_8");
    const unsigned char all62[] = { 0xf8 };
    expect_b64url(all62, 1, "-A");
    /* a JWT header as it goes on the wire */
    const char *h = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    expect_b64url(h, strlen(h), "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9");
    /* too small an output buffer is refused, not cut */
    char small[4];
    assert_int_equal(crypto_base64url("foob", 4, small, sizeof(small)), 0);
}

/* ---- App JWT ------------------------------------------------------------------------ */

static cJSON *decode_part(const char *p, size_t n)
{
    size_t dn = 0;
    unsigned char *d = crypto_base64_decode(p, n, &dn);
    assert_non_null(d);
    cJSON *j = cJSON_ParseWithLength((const char *)d, dn);
    free(d);
    assert_non_null(j);
    return j;
}

static void test_jwt_claims(void **state)
{
    cJSON *c = github_app_jwt_claims("Iv23liAbc", 1700000000);
    assert_non_null(c);
    char *s = cJSON_PrintUnformatted(c);
    /* client ID: a string issuer; iat 60 s back; exp 600 s after iat */
    assert_string_equal(s, "{\"iat\":1699999940,\"exp\":1700000540,\"iss\":\"Iv23liAbc\"}");
    free(s);
    cJSON_Delete(c);
    c = github_app_jwt_claims("424242", 1700000000);
    s = cJSON_PrintUnformatted(c);
    /* App ID: a number, as in GitHub's examples */
    assert_string_equal(s, "{\"iat\":1699999940,\"exp\":1700000540,\"iss\":424242}");
    free(s);
    cJSON_Delete(c);
    assert_null(github_app_jwt_claims(NULL, 1700000000));
    assert_int_equal(GITHUB_APP_JWT_LIFETIME, 600); /* GitHub's maximum */
}

static void test_jwt_sign_and_verify(void **state)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    assert_non_null(key);
    char err[128];
    char *jwt = github_app_jwt_sign(key, "Iv23liAbc", 1700000000, err, sizeof(err));
    assert_non_null(jwt);
    assert_null(strchr(jwt, '='));
    assert_null(strchr(jwt, '+'));
    assert_null(strchr(jwt, '/'));
    const char *d1 = strchr(jwt, '.'), *d2 = strrchr(jwt, '.');
    assert_true(d1 && d2 && d1 < d2);
    /* header: exactly RS256 / JWT, no kid */
    assert_memory_equal(jwt, "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.", (size_t)(d1 - jwt) + 1);
    cJSON *h = decode_part(jwt, (size_t)(d1 - jwt));
    assert_string_equal(cJSON_GetObjectItem(h, "alg")->valuestring, "RS256");
    assert_null(cJSON_GetObjectItem(h, "kid"));
    cJSON_Delete(h);
    cJSON *c = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_int_equal((int64_t)cJSON_GetObjectItem(c, "iat")->valuedouble, 1699999940);
    assert_int_equal((int64_t)cJSON_GetObjectItem(c, "exp")->valuedouble, 1700000540);
    assert_string_equal(cJSON_GetObjectItem(c, "iss")->valuestring, "Iv23liAbc");
    cJSON_Delete(c);
    /* the signature: RSASSA-PKCS1-v1_5 SHA-256 over "header.claims" */
    size_t sl = 0;
    unsigned char *sig = crypto_base64_decode(d2 + 1, strlen(d2 + 1), &sl);
    assert_int_equal(sl, 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    /* another key does not verify it */
    EVP_MD_CTX_free(md);
    EVP_PKEY *other = EVP_RSA_gen(2048);
    md = EVP_MD_CTX_new(); /* a fresh context: OpenSSL 3.0 may keep the first key on re-init */
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, other), 1);
    assert_int_not_equal(EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(other);
    free(sig);
    free(jwt);
    /* the key is not consumed: it signs again */
    jwt = github_app_jwt_sign(key, "1", 1700000000, err, sizeof(err));
    assert_non_null(jwt);
    free(jwt);
    assert_null(github_app_jwt_sign(NULL, "1", 1700000000, err, sizeof(err)));
    EVP_PKEY_free(key);
}

static void test_pem_without_newlines_is_refused(void **state)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    char *d;
    long n = BIO_get_mem_data(b, &d);
    char *pem = strndup(d, (size_t)n);
    EVP_PKEY *k = jwt_rsa_key_load(pem);
    assert_non_null(k);
    EVP_PKEY_free(k);
    /* the shell-string mistake of the guide: newlines become spaces */
    for (char *p = pem; *p; p++)
        if (*p == '\n')
            *p = ' ';
    assert_null(jwt_rsa_key_load(pem));
    assert_null(jwt_rsa_key_load(""));
    free(pem);
    BIO_free(b);
    EVP_PKEY_free(key);
}

/* ---- parsers ------------------------------------------------------------------------- */

static void test_parse_time(void **state)
{
    assert_int_equal(github_parse_time("2016-07-11T22:14:10Z"), 1468275250);
    assert_int_equal(github_parse_time("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(github_parse_time("2016-02-29T00:00:00Z"), 1456704000); /* leap day */
    const char *bad[] = { "", "2016-07-11T22:14:10", "2016-07-11 22:14:10Z", "2016-7-11T22:14:10Z",
                          "2016-07-11T22:14:10.000Z", "2016-07-11T22:14:10+00:00", " 016-07-11T22:14:10Z",
                          "+016-07-11T22:14:10Z", "2016-13-11T22:14:10Z", "2016-07-11T24:14:10Z",
                          "2016-07-11T22:14:10Zx", "2016-02-30T00:00:00Z", "2016-07-11T22:14:60Z",
                          "2015-02-29T00:00:00Z", NULL };
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(github_parse_time(bad[i]), -1);
    assert_int_equal(github_parse_time(NULL), -1);
}

static void test_parse_installation_id(void **state)
{
    int64_t v = 0;
    assert_true(github_parse_installation_id("1", &v));
    assert_int_equal(v, 1);
    assert_true(github_parse_installation_id("56789012", &v));
    assert_int_equal(v, 56789012);
    assert_true(github_parse_installation_id("9007199254740991", &v));
    assert_int_equal(v, GITHUB_MAX_INSTALLATION_ID);
    const char *bad[] = { "", "0", "00", "01", "-1", "+1", " 1", "1 ", "1e3", "0x1", "abc",
                          "9007199254740992", "12345678901234567", "1.0", NULL };
    for (size_t i = 0; bad[i]; i++)
        assert_false(github_parse_installation_id(bad[i], &v));
    assert_false(github_parse_installation_id(NULL, &v));
}

static void test_link_next(void **state)
{
    char out[256];
    const char *gh = "<https://api.github.com/installation/repositories?per_page=100&page=2>; rel=\"next\", "
                     "<https://api.github.com/installation/repositories?per_page=100&page=5>; rel=\"last\"";
    assert_true(github_link_next(gh, out, sizeof(out)));
    assert_string_equal(out, "https://api.github.com/installation/repositories?per_page=100&page=2");
    /* next after others, unquoted, several relation types */
    assert_true(github_link_next("<http://h/a?page=1>; rel=\"prev\", <http://h/a?page=3>; rel=next",
                                 out, sizeof(out)));
    assert_string_equal(out, "http://h/a?page=3");
    assert_true(github_link_next("<http://h/x>; rel=\"next last\"", out, sizeof(out)));
    assert_string_equal(out, "http://h/x");
    /* none, or not quite */
    assert_false(github_link_next("<http://h/a?page=1>; rel=\"prev\", <http://h/a?page=9>; rel=\"last\"",
                                  out, sizeof(out)));
    assert_false(github_link_next("<http://h/a>; rel=\"nextpage\"", out, sizeof(out)));
    assert_false(github_link_next("", out, sizeof(out)));
    assert_false(github_link_next("http://h/a; rel=\"next\"", out, sizeof(out)));
    assert_false(github_link_next("<http://h/a; rel=\"next\"", out, sizeof(out)));
    assert_false(github_link_next("<>; rel=\"next\"", out, sizeof(out)));
    /* found by fuzz_github: a '<' inside the target */
    assert_false(github_link_next("<<http://h/b>; rel=next", out, sizeof(out)));
    assert_false(github_link_next("<http://h/a b>; rel=next", out, sizeof(out)));
    /* too long for out: refused, not cut */
    char tiny[8];
    assert_false(github_link_next("<http://h/abcdef>; rel=\"next\"", tiny, sizeof(tiny)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_jwt_claims),
        cmocka_unit_test(test_jwt_sign_and_verify),
        cmocka_unit_test(test_pem_without_newlines_is_refused),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_parse_installation_id),
        cmocka_unit_test(test_link_next),
    };
    return cmocka_run_group_tests_name("github_app", tests, NULL, NULL);
}
