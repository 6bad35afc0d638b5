/* jwt.c — RS256 signing and service account keys; see jwt.h. */
#include "jwt.h"

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "secret.h"

char *jwt_b64url(const void *p, size_t n)
{
    size_t cap = 4 * ((n + 2) / 3) + 1;
    char *o = malloc(cap);
    if (!o)
        return NULL;
    if (n == 0) {
        o[0] = '\0';
        return o;
    }
    if (crypto_base64url(p, n, o, cap) == 0) {
        free(o);
        return NULL;
    }
    return o;
}

EVP_PKEY *jwt_rsa_key_load(const char *pem)
{
    if (!pem || !*pem)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)strlen(pem));
    if (!b)
        return NULL;
    /* No passphrase callback: an encrypted key is refused, never prompted for. */
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
    BIO_free(b);
    ERR_clear_error();
    if (k && EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int jwt_pem_rsa_ok(const char *pem)
{
    EVP_PKEY *k = jwt_rsa_key_load(pem);
    int ok = k != NULL;
    EVP_PKEY_free(k);
    return ok;
}

char *jwt_sign_rs256(const cJSON *claims, const char *pem, const char *kid, char *err,
                     size_t errlen)
{
    EVP_PKEY *key = jwt_rsa_key_load(pem);
    if (!key) {
        snprintf(err, errlen, "private key is not a valid RSA PEM");
        return NULL;
    }
    char *out = jwt_sign_rs256_key(claims, key, kid, err, errlen);
    EVP_PKEY_free(key);
    return out;
}

char *jwt_sign_rs256_key(const cJSON *claims, EVP_PKEY *key, const char *kid, char *err,
                         size_t errlen)
{
    char *out = NULL, *hjson = NULL, *cjson = NULL, *h64 = NULL, *c64 = NULL, *s64 = NULL;
    char *input = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = NULL;
    if (!key || !claims) {
        snprintf(err, errlen, "no key or claims");
        return NULL;
    }
    cJSON *h = cJSON_CreateObject();
    if (!h)
        goto oom;
    cJSON_AddStringToObject(h, "alg", "RS256");
    cJSON_AddStringToObject(h, "typ", "JWT");
    if (kid && *kid)
        cJSON_AddStringToObject(h, "kid", kid);
    hjson = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    cjson = cJSON_PrintUnformatted(claims);
    if (!hjson || !cjson)
        goto oom;
    h64 = jwt_b64url(hjson, strlen(hjson));
    c64 = jwt_b64url(cjson, strlen(cjson));
    if (!h64 || !c64)
        goto oom;
    size_t ilen = strlen(h64) + 1 + strlen(c64);
    input = malloc(ilen + 1);
    if (!input)
        goto oom;
    snprintf(input, ilen + 1, "%s.%s", h64, c64);
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, ilen) != 1)
        goto sslfail;
    sig = malloc(siglen);
    if (!sig)
        goto oom;
    if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, ilen) != 1)
        goto sslfail;
    s64 = jwt_b64url(sig, siglen);
    if (!s64)
        goto oom;
    size_t olen = ilen + 1 + strlen(s64);
    out = malloc(olen + 1);
    if (!out)
        goto oom;
    snprintf(out, olen + 1, "%s.%s", input, s64);
    goto done;
sslfail:
    ERR_clear_error();
    snprintf(err, errlen, "signing failed");
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    EVP_MD_CTX_free(md);
    free(hjson);
    free(cjson);
    free(h64);
    free(c64);
    free(s64);
    free(input);
    free(sig);
    return out;
}

cJSON *jwt_unverified_claims(const char *jwt)
{
    if (!jwt)
        return NULL;
    const char *a = strchr(jwt, '.');
    const char *b = a ? strchr(a + 1, '.') : NULL;
    if (!b || b == a + 1)
        return NULL;
    size_t n = 0;
    unsigned char *raw = crypto_base64_decode(a + 1, (size_t)(b - a - 1), &n);
    if (!raw)
        return NULL;
    cJSON *o = cJSON_ParseWithLength((const char *)raw, n);
    free(raw);
    if (o && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

void jwt_sa_key_free(jwt_sa_key *k)
{
    if (!k)
        return;
    free(k->client_email);
    secret_free(k->private_key);
    free(k->private_key_id);
    free(k->token_uri);
    free(k->project_id);
    memset(k, 0, sizeof(*k));
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) && it->valuestring && *it->valuestring ? it->valuestring : NULL;
}

int jwt_sa_key_parse(const char *json, size_t len, jwt_sa_key *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *end = NULL;
    cJSON *o = json && len ? cJSON_ParseWithLengthOpts(json, len, &end, 0) : NULL;
    int rc = -1;
    if (!o) {
        snprintf(err, errlen, "the key is not complete JSON");
        return -1;
    }
    for (; end && end < json + len; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            snprintf(err, errlen, "the key has data after the JSON object");
            goto out;
        }
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "the key is not a JSON object");
        goto out;
    }
    const char *type = str_of(o, "type");
    if (!type || strcmp(type, "service_account") != 0) {
        snprintf(err, errlen, "\"type\" must be \"service_account\"");
        goto out;
    }
    const char *email = str_of(o, "client_email"), *pk = str_of(o, "private_key");
    if (!email) {
        snprintf(err, errlen, "\"client_email\" is missing");
        goto out;
    }
    if (strlen(email) > 250 || !strchr(email, '@')) {
        snprintf(err, errlen, "\"client_email\" is not an email address");
        goto out;
    }
    if (!pk) {
        snprintf(err, errlen, "\"private_key\" is missing");
        goto out;
    }
    if (!jwt_pem_rsa_ok(pk)) {
        snprintf(err, errlen, "\"private_key\" is not a valid PEM RSA private key");
        goto out;
    }
    const char *tu = str_of(o, "token_uri"), *pid = str_of(o, "project_id");
    const char *kid = str_of(o, "private_key_id");
    out->client_email = strdup(email);
    out->private_key = strdup(pk);
    out->token_uri = tu ? strdup(tu) : NULL;
    out->project_id = pid ? strdup(pid) : NULL;
    out->private_key_id = kid ? strdup(kid) : NULL;
    if (!out->client_email || !out->private_key || (tu && !out->token_uri) ||
        (pid && !out->project_id) || (kid && !out->private_key_id)) {
        jwt_sa_key_free(out);
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    secret_json_wipe(o);
    cJSON_Delete(o);
    return rc;
}
