/* jwt_verify.h — verifies a JWT signed by someone else with RS256 against a
 * certificate set published at a URL (Google Chat's event tokens, and any
 * issuer that publishes keys the same way).
 *
 * What is accepted, and nothing else:
 *   - a compact JWS of three base64url parts (no padding), at most
 *     JWT_VERIFY_MAX_TOKEN bytes;
 *   - a header whose "alg" is exactly "RS256" ("none", HS256, ES256, … are
 *     refused before any key is looked at: RFC 8725 §2.1, §3.1), whose "kid"
 *     names a key of the set, with no "crit" extension (RFC 7515 §4.1.11);
 *   - an RSASSA-PKCS1-v1_5 / SHA-256 signature by that key (RSA, at least
 *     2048 bits), checked before any claim is read;
 *   - claims iss == expected issuer, aud == expected audience (a string, or
 *     an array holding it), exp in the future, iat and nbf (when present) not
 *     in the future, each within a small clock skew.
 *
 * The certificate set: fetched from its URL (https, or loopback http for a
 * test fixture), either Google's x509 map {"<kid>": "-----BEGIN
 * CERTIFICATE-----…"} or a JWKS {"keys": [{"kty":"RSA","kid","n","e"}]}.
 * Kept by kid for the answer's Cache-Control max-age, bounded to
 * [JWT_CERTS_MIN_AGE_S, JWT_CERTS_MAX_AGE_S]; an unknown kid fetches the set
 * again at most once per refetch interval (a stream of forged kids cannot
 * make us hammer the publisher); a set that cannot be fetched again keeps
 * serving its known keys up to JWT_CERTS_STALE_S past expiry.  One fetch
 * at a time, made without the lock: while it runs, a token whose key is
 * known is verified at once, and one with no usable key waits for that
 * fetch and takes its outcome instead of fetching again.
 *
 * Blocking (a fetch): worker threads only. */
#ifndef AURORA_JWT_VERIFY_H
#define AURORA_JWT_VERIFY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define JWT_VERIFY_MAX_TOKEN (16 * 1024)
#define JWT_VERIFY_DEFAULT_SKEW_S 60
#define JWT_CERTS_MAX_KEYS 32
#define JWT_CERTS_KID_MAX 128
#define JWT_CERTS_MIN_AGE_S 60          /* max-age below this (or absent: DEFAULT) */
#define JWT_CERTS_DEFAULT_AGE_S 3600    /* no max-age in the answer */
#define JWT_CERTS_MAX_AGE_S 86400       /* a longer max-age is read as a day */
#define JWT_CERTS_STALE_S 86400         /* known keys kept while the publisher is down */
#define JWT_CERTS_DEFAULT_REFETCH_S 30  /* unknown kid: at most one fetch per interval */
#define JWT_CERTS_MAX_DOC (256 * 1024)

struct jwt_cert_key;

/* One cached certificate set (static storage, JWT_CERTS_INIT). */
typedef struct jwt_certs {
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* a fetch ended */
    struct jwt_cert_key *keys;
    size_t nkeys;
    char url[1024];       /* where keys came from: another URL starts afresh */
    int64_t expires_at;   /* keys are fresh until then */
    int64_t fetched_at;   /* last successful fetch */
    int64_t attempted_at; /* last fetch attempt (success or not) */
    unsigned long fetches; /* attempts so far (tests, logs) */
    int fetching;          /* a fetch is under way (made without mu) */
    unsigned long ended;   /* fetches ended so far */
    int last_failed;       /* the last fetch failed: last_err says why */
    char last_err[256];
} jwt_certs;

#define JWT_CERTS_INIT                                                                             \
    { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, "", 0, 0, 0, 0, 0, 0, 0, "" }

/* How the set is fetched: the body (malloc'd, NUL-terminated) and the
 * Cache-Control header ("" when none).  0, or -1 with one line in err. */
typedef int (*jwt_certs_fetch_fn)(const char *url, long timeout_ms, char **body, size_t *len,
                                  char *cache_control, size_t cc_cap, char *err, size_t errlen);

typedef struct {
    const char *certs_url;    /* required */
    const char *issuer;       /* required */
    const char *audience;     /* required */
    int64_t now;              /* Unix seconds */
    int skew_s;               /* 0: JWT_VERIFY_DEFAULT_SKEW_S */
    int refetch_min_s;        /* 0: JWT_CERTS_DEFAULT_REFETCH_S */
    long timeout_ms;          /* one fetch; 0: 10 s */
    jwt_certs_fetch_fn fetch; /* NULL: an HTTP GET (http_client) */
} jwt_verify_opts;

typedef enum {
    JWT_OK = 0,
    JWT_MALFORMED,         /* not a compact JWS, bad base64url/JSON, too long */
    JWT_BAD_ALG,           /* alg is not RS256 (none, HS256, …), or crit present */
    JWT_UNKNOWN_KID,       /* no kid, or no key of the set has it */
    JWT_BAD_SIGNATURE,
    JWT_BAD_ISSUER,
    JWT_BAD_AUDIENCE,
    JWT_EXPIRED,           /* exp missing or past */
    JWT_NOT_YET_VALID,     /* iat or nbf in the future */
    JWT_CERTS_UNAVAILABLE, /* the set could not be fetched (and no usable copy) */
} jwt_verify_result;

/* A short name for logs and error codes ("malformed", "bad_alg", …). */
const char *jwt_verify_result_name(jwt_verify_result r);

/* Verifies token; on JWT_OK *claims (may be NULL to skip) gets the claims
 * object (cJSON_Delete it).  err gets one line for anything else (never the
 * token). */
jwt_verify_result jwt_verify_rs256(jwt_certs *set, const char *token, const jwt_verify_opts *o,
                                   struct cJSON **claims, char *err, size_t errlen);

/* ---- the pieces, for tests and other verifiers ------------------------------- */

/* Replaces the set with the keys of doc (either format) fetched from url,
 * fresh for max_age_s (already bounded by the caller) from now.  0, or -1
 * with err (the set is left as it was). */
int jwt_certs_load(jwt_certs *set, const char *url, const char *doc, size_t len,
                   long max_age_s, int64_t now, char *err, size_t errlen);
/* Number of keys the set holds. */
size_t jwt_certs_count(jwt_certs *set);
/* Drops every key (and the fetch history). */
void jwt_certs_clear(jwt_certs *set);
/* Cache-Control's max-age in seconds, bounded to [JWT_CERTS_MIN_AGE_S,
 * JWT_CERTS_MAX_AGE_S]; JWT_CERTS_DEFAULT_AGE_S when absent or unreadable;
 * JWT_CERTS_MIN_AGE_S for no-store / no-cache. */
long jwt_cache_max_age(const char *cache_control);

#endif
