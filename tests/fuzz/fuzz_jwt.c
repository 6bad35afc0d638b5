/* fuzz_jwt.c — RS256 verification of tokens someone else signed
 * (server/jwt_verify.c): Google Chat's event tokens arrive in the
 * Authorization header of a public route, and the certificate set is what a
 * publisher answers.  The first input byte picks what the rest is:
 *   0: a token, verified against a JWKS holding key k2 (jwt_vectors.h, made
 *      by jose, not by us) at a time inside the vector token's lifetime;
 *   1: a certificate set document (either format), loaded, then the vector
 *      token verified against it;
 *   2: a Cache-Control header.
 *
 * Invariants checked on every input:
 *  - a token is accepted only when its signing input (header.payload) is
 *    exactly the vector's: no other text verifies, however it is encoded
 *    (nobody here holds k2's private key, so anything else would be a
 *    forgery or a parsing confusion), and the claims handed back are the
 *    vector's issuer;
 *  - a refusal carries a message and no claims;
 *  - a loaded set holds at most JWT_CERTS_MAX_KEYS keys, and a failed load
 *    leaves the set as it was;
 *  - max-age stays within [JWT_CERTS_MIN_AGE_S, JWT_CERTS_MAX_AGE_S]. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_verify.h"
#include "fuzz_util.h"
#include "../unit/jwt_vectors.h"

#define CERTS_URL "https://certs.example/jwks"

static const char *g_doc;

static int serve_doc(const char *url, long timeout_ms, char **body, size_t *len, char *cc,
                     size_t cc_cap, char *err, size_t errlen)
{
    (void)url;
    (void)timeout_ms;
    if (!g_doc) {
        snprintf(err, errlen, "no document");
        return -1;
    }
    *body = strdup(g_doc);
    FUZZ_CHECK(*body != NULL, "out of memory");
    *len = strlen(g_doc);
    snprintf(cc, cc_cap, "max-age=3600");
    return 0;
}

static jwt_verify_result verify(jwt_certs *set, const char *token)
{
    jwt_verify_opts o = { .certs_url = CERTS_URL, .issuer = ISS, .audience = AUD, .now = T0,
                          .fetch = serve_doc };
    char err[256] = "";
    cJSON *claims = NULL;
    jwt_verify_result r = jwt_verify_rs256(set, token, &o, &claims, err, sizeof(err));
    if (r == JWT_OK) {
        const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
        FUZZ_CHECK(cJSON_IsString(iss) && !strcmp(iss->valuestring, ISS),
                   "accepted claims without the issuer");
    } else {
        FUZZ_CHECK(claims == NULL, "a refusal (%s) handed back claims", jwt_verify_result_name(r));
        FUZZ_CHECK(err[0] != '\0', "a refusal (%s) without a message", jwt_verify_result_name(r));
    }
    cJSON_Delete(claims);
    return r;
}

/* header.payload of a compact token: the bytes its signature covers. */
static size_t signing_input(const char *token)
{
    const char *last = strrchr(token, '.');
    return last ? (size_t)(last - token) : strlen(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = fuzz_strndup(data + 1, size - 1);
    static jwt_certs set = JWT_CERTS_INIT;
    jwt_certs_clear(&set);
    switch (data[0] % 3) {
    case 0: {
        g_doc = V_JWKS;
        if (verify(&set, text) == JWT_OK) {
            size_t n = signing_input(V_JWKS_K2);
            FUZZ_CHECK(signing_input(text) == n && !memcmp(text, V_JWKS_K2, n),
                       "a token other than the vector verified: %s", text);
        }
        break;
    }
    case 1: {
        char err[256] = "";
        g_doc = V_JWKS;
        FUZZ_CHECK(jwt_certs_load(&set, CERTS_URL, V_JWKS, strlen(V_JWKS), 3600, T0, err,
                                  sizeof(err)) == 0,
                   "the vector set does not load: %s", err);
        size_t before = jwt_certs_count(&set);
        if (jwt_certs_load(&set, CERTS_URL, text, size - 1, 3600, T0, err, sizeof(err)) == 0) {
            FUZZ_CHECK(jwt_certs_count(&set) <= JWT_CERTS_MAX_KEYS, "%zu keys loaded",
                       jwt_certs_count(&set));
        } else {
            FUZZ_CHECK(err[0] != '\0', "a refused set without a message");
            FUZZ_CHECK(jwt_certs_count(&set) == before, "a refused set changed the keys");
        }
        g_doc = NULL; /* the set as loaded, never fetched again */
        (void)verify(&set, V_JWKS_K2);
        break;
    }
    default: {
        long age = jwt_cache_max_age(text);
        FUZZ_CHECK(age >= JWT_CERTS_MIN_AGE_S && age <= JWT_CERTS_MAX_AGE_S,
                   "max-age %ld for \"%s\"", age, text);
        break;
    }
    }
    jwt_certs_clear(&set);
    free(text);
    return 0;
}
