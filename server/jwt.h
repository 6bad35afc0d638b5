/* jwt.h — the little JWT the server signs itself (RS256 over OpenSSL), and
 * the Google service account key file it signs with.
 *
 * RS256 = RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3); the token is
 * base64url(header) "." base64url(claims) "." base64url(signature), no
 * padding (RFC 7515).  Key material never leaves these functions except as
 * the signature, and every copy made here is wiped. */
#ifndef AURORA_JWT_H
#define AURORA_JWT_H

#include <stddef.h>

struct cJSON;
struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

/* Signs `claims` (a JSON object, serialized as given) with the PEM private
 * key (PKCS#8 "BEGIN PRIVATE KEY" or PKCS#1 "BEGIN RSA PRIVATE KEY"; RSA
 * only).  kid (may be NULL) goes into the header.  Returns a malloc'd
 * token, or NULL with err. */
char *jwt_sign_rs256(const struct cJSON *claims, const char *pem, const char *kid, char *err,
                     size_t errlen);
/* The same with a key already loaded (a key kept in memory between
 * signatures, e.g. the GitHub App's); the key is not consumed. */
char *jwt_sign_rs256_key(const struct cJSON *claims, struct evp_pkey_st *key, const char *kid,
                         char *err, size_t errlen);
/* Loads an unencrypted RSA private key PEM (PKCS#8 or PKCS#1); NULL if it is
 * not one.  Free with EVP_PKEY_free. */
struct evp_pkey_st *jwt_rsa_key_load(const char *pem);
/* 1 if pem is an RSA private key OpenSSL can load, 0 otherwise. */
int jwt_pem_rsa_ok(const char *pem);
/* base64url without padding; malloc'd, NULL on OOM. */
char *jwt_b64url(const void *p, size_t n);
/* The payload of a JWT as a JSON object, NOT verified (only for display of
 * claims the provider handed us directly over TLS, e.g. an id_token email). */
struct cJSON *jwt_unverified_claims(const char *jwt);

/* A Google service account key file ("type": "service_account"). */
typedef struct {
    char *client_email;
    char *private_key;    /* PEM; wiped by jwt_sa_key_free */
    char *private_key_id; /* may be NULL */
    char *token_uri;      /* NULL when the file has none */
    char *project_id;     /* may be NULL */
} jwt_sa_key;

/* Parses and validates: complete JSON object, type service_account,
 * client_email, private_key a loadable RSA PEM.  0, or -1 with err saying
 * what is wrong (never quoting the key). */
int jwt_sa_key_parse(const char *json, size_t len, jwt_sa_key *out, char *err, size_t errlen);
void jwt_sa_key_free(jwt_sa_key *k);

#endif
