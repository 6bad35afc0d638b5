/* jwt_verify.c — RS256 verification against a cached certificate set; see
 * jwt_verify.h. */
#include "jwt_verify.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "http_client.h"

#define MIN_RSA_BITS 2048

struct jwt_cert_key {
    char kid[JWT_CERTS_KID_MAX + 1];
    EVP_PKEY *key;
};

static const char *const g_names[] = {
    "ok", "malformed", "bad_alg", "unknown_kid", "bad_signature", "bad_issuer",
    "bad_audience", "expired", "not_yet_valid", "certs_unavailable",
};

const char *jwt_verify_result_name(jwt_verify_result r)
{
    return (unsigned)r < sizeof(g_names) / sizeof(g_names[0]) ? g_names[r] : "unknown";
}

/* ---- the certificate set ----------------------------------------------------------- */

static void keys_free(struct jwt_cert_key *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        EVP_PKEY_free(k[i].key);
    free(k);
}

static int kid_ok(const char *kid)
{
    size_t n = kid ? strlen(kid) : 0;
    if (n == 0 || n > JWT_CERTS_KID_MAX)
        return 0;
    for (; *kid; kid++)
        if ((unsigned char)*kid < 0x21 || (unsigned char)*kid > 0x7e)
            return 0;
    return 1;
}

/* An RSA public key of a usable size, else NULL (k freed). */
static EVP_PKEY *rsa_only(EVP_PKEY *k)
{
    if (k && (EVP_PKEY_base_id(k) != EVP_PKEY_RSA || EVP_PKEY_get_bits(k) < MIN_RSA_BITS)) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static EVP_PKEY *key_from_cert_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, (int)strlen(pem));
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = x ? X509_get_pubkey(x) : NULL;
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    return rsa_only(k);
}

static BIGNUM *bn_b64url(const char *s)
{
    if (!s || !*s || strlen(s) > 2048)
        return NULL;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return NULL;
    size_t n = 0;
    unsigned char *raw = crypto_base64_decode(s, strlen(s), &n);
    BIGNUM *bn = raw && n ? BN_bin2bn(raw, (int)n, NULL) : NULL;
    free(raw);
    return bn;
}

/* A JWKS RSA key (RFC 7517 §4, RFC 7518 §6.3.1): n and e. */
static EVP_PKEY *key_from_jwk(const cJSON *j)
{
    BIGNUM *n = bn_b64url(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "n")));
    BIGNUM *e = bn_b64url(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "e")));
    EVP_PKEY *k = NULL;
    OSSL_PARAM_BLD *bld = n && e ? OSSL_PARAM_BLD_new() : NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) &&
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) && EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        k = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    ERR_clear_error();
    return rsa_only(k);
}

static int add_key(struct jwt_cert_key *keys, size_t *n, const char *kid, EVP_PKEY *k, char *err,
                   size_t errlen)
{
    if (!k) {
        snprintf(err, errlen, "key %.40s is not a usable RSA key (%d bits at least)", kid,
                 MIN_RSA_BITS);
        return -1;
    }
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(keys[i].kid, kid)) {
            EVP_PKEY_free(k);
            snprintf(err, errlen, "kid %.40s appears twice", kid);
            return -1;
        }
    if (*n >= JWT_CERTS_MAX_KEYS) {
        EVP_PKEY_free(k);
        snprintf(err, errlen, "more than %d keys", JWT_CERTS_MAX_KEYS);
        return -1;
    }
    snprintf(keys[*n].kid, sizeof(keys[*n].kid), "%s", kid);
    keys[(*n)++].key = k;
    return 0;
}

/* The keys of a document in either format; 0 or -1 with err.  Any bad
 * entry refuses the whole document: a publisher answering garbage is not a
 * set to half-trust. */
static int parse_doc(const char *doc, size_t len, struct jwt_cert_key **out, size_t *nout,
                     char *err, size_t errlen)
{
    *out = NULL;
    *nout = 0;
    if (!doc || len == 0 || len > JWT_CERTS_MAX_DOC) {
        snprintf(err, errlen, "certificate set is empty or larger than %d bytes",
                 JWT_CERTS_MAX_DOC);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(doc, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(err, errlen, "certificate set is not a JSON object");
        return -1;
    }
    struct jwt_cert_key *keys = calloc(JWT_CERTS_MAX_KEYS, sizeof(*keys));
    size_t n = 0;
    int rc = keys ? 0 : -1;
    if (!keys)
        snprintf(err, errlen, "out of memory");
    const cJSON *jwks = cJSON_GetObjectItemCaseSensitive(root, "keys");
    if (rc == 0 && cJSON_IsArray(jwks)) {
        const cJSON *j;
        cJSON_ArrayForEach(j, jwks) {
            const char *kty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "kty"));
            const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "kid"));
            const char *use = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "use"));
            const char *alg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "alg"));
            /* Keys for something else (encryption, another algorithm) are
             * skipped, not refused: a JWKS may publish several kinds. */
            if (!kty || strcmp(kty, "RSA") || (use && strcmp(use, "sig")) ||
                (alg && strcmp(alg, "RS256")))
                continue;
            if (!kid_ok(kid)) {
                snprintf(err, errlen, "a JWKS key has no usable kid");
                rc = -1;
                break;
            }
            if ((rc = add_key(keys, &n, kid, key_from_jwk(j), err, errlen)) < 0)
                break;
        }
    } else if (rc == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, root) {
            if (!kid_ok(c->string) || !cJSON_IsString(c) ||
                strncmp(c->valuestring, "-----BEGIN CERTIFICATE-----", 27) != 0) {
                snprintf(err, errlen, "certificate set entries must be {kid: PEM certificate}");
                rc = -1;
                break;
            }
            if ((rc = add_key(keys, &n, c->string, key_from_cert_pem(c->valuestring), err,
                              errlen)) < 0)
                break;
        }
    }
    cJSON_Delete(root);
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "certificate set holds no RSA signing key");
        rc = -1;
    }
    if (rc < 0) {
        keys_free(keys, n);
        return -1;
    }
    *out = keys;
    *nout = n;
    return 0;
}

static void set_replace_locked(jwt_certs *set, struct jwt_cert_key *keys, size_t n, const char *url)
{
    keys_free(set->keys, set->nkeys);
    set->keys = keys;
    set->nkeys = n;
    snprintf(set->url, sizeof(set->url), "%s", url);
}

int jwt_certs_load(jwt_certs *set, const char *url, const char *doc, size_t len, long max_age_s,
                   int64_t now, char *err, size_t errlen)
{
    struct jwt_cert_key *keys;
    size_t n;
    if (parse_doc(doc, len, &keys, &n, err, errlen) < 0)
        return -1;
    pthread_mutex_lock(&set->mu);
    set_replace_locked(set, keys, n, url);
    set->fetched_at = set->attempted_at = now;
    set->expires_at = now + max_age_s;
    pthread_mutex_unlock(&set->mu);
    return 0;
}

size_t jwt_certs_count(jwt_certs *set)
{
    pthread_mutex_lock(&set->mu);
    size_t n = set->nkeys;
    pthread_mutex_unlock(&set->mu);
    return n;
}

void jwt_certs_clear(jwt_certs *set)
{
    pthread_mutex_lock(&set->mu);
    set_replace_locked(set, NULL, 0, "");
    set->expires_at = set->fetched_at = set->attempted_at = 0;
    set->fetches = 0;
    pthread_mutex_unlock(&set->mu);
}

long jwt_cache_max_age(const char *cc)
{
    if (!cc)
        return JWT_CERTS_DEFAULT_AGE_S;
    long age = -1;
    const char *p = cc;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',')
            p++;
        size_t n = (size_t)(p - tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
            n--;
        if ((n == 8 && !strncasecmp(tok, "no-store", 8)) || (n == 8 && !strncasecmp(tok, "no-cache", 8)))
            return JWT_CERTS_MIN_AGE_S;
        if (n > 8 && !strncasecmp(tok, "max-age=", 8)) {
            const char *d = tok + 8, *end = tok + n;
            if (d < end && *d == '"' && end[-1] == '"' && end - d >= 2) {
                d++;
                end--;
            }
            long v = 0;
            int ok = d < end;
            for (; ok && d < end; d++) {
                if (!isdigit((unsigned char)*d)) {
                    ok = 0;
                    break;
                }
                v = v > JWT_CERTS_MAX_AGE_S ? v : v * 10 + (*d - '0');
            }
            if (ok)
                age = v;
        }
    }
    if (age < 0)
        return JWT_CERTS_DEFAULT_AGE_S;
    return age < JWT_CERTS_MIN_AGE_S ? JWT_CERTS_MIN_AGE_S
                                     : age > JWT_CERTS_MAX_AGE_S ? JWT_CERTS_MAX_AGE_S : age;
}

/* The default fetch: GET over http_client (https, or http to loopback). */
static int http_fetch(const char *url, long timeout_ms, char **body, size_t *len, char *cc,
                      size_t cc_cap, char *err, size_t errlen)
{
    http_client_url u;
    if (http_client_url_parse(url, 0, &u) < 0 ||
        (strcmp(u.scheme, "https") && strcmp(u.host, "127.0.0.1") && strcmp(u.host, "::1") &&
         strcmp(u.host, "localhost"))) {
        snprintf(err, errlen, "certificate URL must be https (http only to loopback)");
        return -1;
    }
    static const char *const capture[] = { "Cache-Control", NULL };
    static const char *const headers[] = { "Accept: application/json", NULL };
    http_client_req q = { .method = "GET", .url = url, .headers = headers,
                          .timeout_ms = timeout_ms, .max_response = JWT_CERTS_MAX_DOC,
                          .capture = capture };
    http_client_resp r;
    int rc = http_client_do(&q, &r);
    if (rc != AUR_OK || r.status != 200) {
        if (rc != AUR_OK)
            snprintf(err, errlen, "certificate set: %s", r.err);
        else
            snprintf(err, errlen, "certificate set: HTTP %ld from %s", r.status, u.host);
        http_client_resp_free(&r);
        return -1;
    }
    const char *h = http_client_header(&r, "Cache-Control");
    snprintf(cc, cc_cap, "%s", h ? h : "");
    *body = r.body;
    *len = r.len;
    r.body = NULL;
    http_client_resp_free(&r);
    return 0;
}

/* Fetches the set, the lock released meanwhile (a publisher that hangs
 * until the timeout must not hold every verifier behind it: they take the
 * known keys, or wait on cv for this fetch's outcome, see key_for).  Called
 * and returns with the lock held.  0 or -1 with err. */
static int fetch_locked(jwt_certs *set, const jwt_verify_opts *o, char *err, size_t errlen)
{
    char *body = NULL, cc[512] = "";
    size_t len = 0;
    set->attempted_at = o->now;
    set->fetches++;
    set->fetching = 1;
    pthread_mutex_unlock(&set->mu);
    jwt_certs_fetch_fn fn = o->fetch ? o->fetch : http_fetch;
    struct jwt_cert_key *keys = NULL;
    size_t n = 0;
    int rc = fn(o->certs_url, o->timeout_ms > 0 ? o->timeout_ms : 10000, &body, &len, cc,
                sizeof(cc), err, errlen);
    if (rc == 0) {
        rc = parse_doc(body, len, &keys, &n, err, errlen);
        free(body);
    }
    pthread_mutex_lock(&set->mu);
    /* set->url is still o->certs_url: key_for changes it only between fetches */
    if (rc == 0) {
        set_replace_locked(set, keys, n, o->certs_url);
        set->fetched_at = o->now;
        set->expires_at = o->now + jwt_cache_max_age(cc);
    }
    set->fetching = 0;
    set->ended++;
    set->last_failed = rc < 0;
    snprintf(set->last_err, sizeof(set->last_err), "%s", rc < 0 ? err : "");
    pthread_cond_broadcast(&set->cv);
    return rc < 0 ? -1 : 0;
}

static EVP_PKEY *find_locked(const jwt_certs *set, const char *kid)
{
    for (size_t i = 0; i < set->nkeys; i++)
        if (!strcmp(set->keys[i].kid, kid))
            return set->keys[i].key;
    return NULL;
}

/* The key for kid (a reference: EVP_PKEY_free it), fetching the set when it
 * is missing, expired, or lacks kid (rate limited).  NULL with *why. */
static EVP_PKEY *key_for(jwt_certs *set, const char *kid, const jwt_verify_opts *o,
                         jwt_verify_result *why, char *err, size_t errlen)
{
    int refetch = o->refetch_min_s > 0 ? o->refetch_min_s : JWT_CERTS_DEFAULT_REFETCH_S;
    pthread_mutex_lock(&set->mu);
    /* the setting changed: nothing carries over (once a fetch of the old URL ended) */
    while (set->fetching && strcmp(set->url, o->certs_url) != 0)
        pthread_cond_wait(&set->cv, &set->mu);
    if (strcmp(set->url, o->certs_url) != 0) {
        set_replace_locked(set, NULL, 0, o->certs_url);
        set->expires_at = set->fetched_at = set->attempted_at = 0;
    }
    int failed = 0;
    char ferr[256] = "";
    unsigned long ended = set->ended;
    EVP_PKEY *k;
    for (int fetched = 0;;) {
        k = find_locked(set, kid);
        /* Expired or never fetched: fetch (a failure is retried a second
         * later at the earliest, whatever the traffic).  Unknown kid: the
         * publisher may have rotated; ask again, at most once per interval. */
        int want = ((set->nkeys == 0 || o->now >= set->expires_at) &&
                    (set->attempted_at == 0 || o->now - set->attempted_at >= 1)) ||
                   (!k && o->now - set->attempted_at >= refetch);
        if (fetched || !want)
            break;
        if (set->fetching) {
            /* another verifier is fetching: a known key serves meanwhile
             * (as it would if that fetch failed); else its outcome */
            if (k && set->nkeys > 0 && o->now < set->expires_at + JWT_CERTS_STALE_S)
                break;
            while (set->fetching)
                pthread_cond_wait(&set->cv, &set->mu);
            if (set->ended != ended) {
                failed = set->last_failed;
                snprintf(ferr, sizeof(ferr), "%s", set->last_err);
                k = find_locked(set, kid);
                break;
            }
            continue;
        }
        fetched = 1;
        failed = fetch_locked(set, o, ferr, sizeof(ferr)) < 0;
    }
    int usable = set->nkeys > 0 && o->now < set->expires_at + JWT_CERTS_STALE_S;
    if (k && usable)
        EVP_PKEY_up_ref(k);
    else
        k = NULL;
    if (!k) {
        if (!usable && (failed || set->nkeys == 0)) {
            *why = JWT_CERTS_UNAVAILABLE;
            snprintf(err, errlen, "signing keys unavailable%s%s", ferr[0] ? ": " : "", ferr);
        } else {
            *why = JWT_UNKNOWN_KID;
            snprintf(err, errlen, "no published key has this kid");
        }
    }
    pthread_mutex_unlock(&set->mu);
    return k;
}

/* ---- the token ---------------------------------------------------------------------- */

static int b64url_part(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_')
            return 0;
    return n % 4 != 1; /* no base64 text has that length */
}

static cJSON *json_part(const char *p, size_t n)
{
    size_t len = 0;
    unsigned char *raw = crypto_base64_decode(p, n, &len);
    cJSON *j = raw ? cJSON_ParseWithLength((const char *)raw, len) : NULL;
    free(raw);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

/* A NumericDate claim (RFC 7519 §2): a finite number; 1 with *v, 0 when
 * absent, -1 when present but not a number. */
static int num_claim(const cJSON *c, const char *name, double *v)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c, name);
    if (!j)
        return 0;
    if (!cJSON_IsNumber(j) || j->valuedouble != j->valuedouble || j->valuedouble > 1e15 ||
        j->valuedouble < -1e15)
        return -1;
    *v = j->valuedouble;
    return 1;
}

static int aud_matches(const cJSON *aud, const char *want)
{
    if (cJSON_IsString(aud))
        return !strcmp(aud->valuestring, want);
    if (!cJSON_IsArray(aud))
        return 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, aud) if (cJSON_IsString(a) && !strcmp(a->valuestring, want)) return 1;
    return 0;
}

static jwt_verify_result fail(jwt_verify_result r, char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return r;
}

jwt_verify_result jwt_verify_rs256(jwt_certs *set, const char *token, const jwt_verify_opts *o,
                                   cJSON **claims, char *err, size_t errlen)
{
    if (claims)
        *claims = NULL;
    if (!o || !o->certs_url || !o->issuer || !o->audience)
        return fail(JWT_MALFORMED, err, errlen, "verifier not configured");
    size_t n = token ? strnlen(token, JWT_VERIFY_MAX_TOKEN + 1) : 0;
    if (n == 0 || n > JWT_VERIFY_MAX_TOKEN)
        return fail(JWT_MALFORMED, err, errlen, "token missing or too long");
    const char *d1 = memchr(token, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token)))
        return fail(JWT_MALFORMED, err, errlen, "not a compact JWS (three parts)");
    size_t hn = (size_t)(d1 - token), pn = (size_t)(d2 - d1 - 1), sn = n - (size_t)(d2 + 1 - token);
    /* An empty signature is what alg "none" carries: say so, not "malformed". */
    if (!b64url_part(token, hn) || !b64url_part(d1 + 1, pn))
        return fail(JWT_MALFORMED, err, errlen, "header or payload is not base64url");
    cJSON *hdr = json_part(token, hn);
    if (!hdr)
        return fail(JWT_MALFORMED, err, errlen, "header is not a JSON object");
    const char *alg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(hdr, "alg"));
    const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(hdr, "kid"));
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(hdr, "typ");
    jwt_verify_result r = JWT_OK;
    if (!alg || strcmp(alg, "RS256") != 0)
        r = fail(JWT_BAD_ALG, err, errlen, "alg must be RS256");
    else if (cJSON_GetObjectItemCaseSensitive(hdr, "crit"))
        r = fail(JWT_BAD_ALG, err, errlen, "crit header parameters are not supported");
    else if (typ && (!cJSON_IsString(typ) || strcasecmp(typ->valuestring, "JWT")))
        r = fail(JWT_MALFORMED, err, errlen, "typ must be JWT");
    else if (!kid_ok(kid))
        r = fail(JWT_UNKNOWN_KID, err, errlen, "header has no usable kid");
    else if (!b64url_part(d2 + 1, sn))
        r = fail(JWT_MALFORMED, err, errlen, "signature is not base64url");
    char kidbuf[JWT_CERTS_KID_MAX + 1] = "";
    if (r == JWT_OK)
        snprintf(kidbuf, sizeof(kidbuf), "%s", kid);
    cJSON_Delete(hdr);
    if (r != JWT_OK)
        return r;

    EVP_PKEY *key = key_for(set, kidbuf, o, &r, err, errlen);
    if (!key)
        return r;
    size_t siglen = 0;
    unsigned char *sig = crypto_base64_decode(d2 + 1, sn, &siglen);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = sig && md && siglen == (size_t)EVP_PKEY_get_size(key) &&
             EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, sig, siglen, (const unsigned char *)token, (size_t)(d2 - token)) == 1;
    EVP_MD_CTX_free(md);
    free(sig);
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (!ok)
        return fail(JWT_BAD_SIGNATURE, err, errlen, "signature does not verify");

    cJSON *c = json_part(d1 + 1, pn);
    if (!c)
        return fail(JWT_MALFORMED, err, errlen, "payload is not a JSON object");
    int skew = o->skew_s > 0 ? o->skew_s : JWT_VERIFY_DEFAULT_SKEW_S;
    double exp = 0, iat = 0, nbf = 0;
    int he = num_claim(c, "exp", &exp), hi = num_claim(c, "iat", &iat),
        hb = num_claim(c, "nbf", &nbf);
    const char *iss = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "iss"));
    if (!iss || strcmp(iss, o->issuer) != 0)
        r = fail(JWT_BAD_ISSUER, err, errlen, "unexpected issuer");
    else if (!aud_matches(cJSON_GetObjectItemCaseSensitive(c, "aud"), o->audience))
        r = fail(JWT_BAD_AUDIENCE, err, errlen, "audience is not this endpoint");
    else if (he <= 0 || hi < 0 || hb < 0)
        r = fail(he == 0 ? JWT_EXPIRED : JWT_MALFORMED, err, errlen,
                 he == 0 ? "exp missing" : "a time claim is not a number");
    else if ((double)o->now >= exp + skew)
        r = fail(JWT_EXPIRED, err, errlen, "token expired");
    else if ((hi && iat > (double)o->now + skew) || (hb && nbf > (double)o->now + skew))
        r = fail(JWT_NOT_YET_VALID, err, errlen, "token not valid yet (iat/nbf in the future)");
    if (r != JWT_OK || !claims)
        cJSON_Delete(c);
    else
        *claims = c;
    return r;
}
