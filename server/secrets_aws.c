/* secrets_aws.c — AWS Secrets Manager as a secrets backend.
 *
 * JSON 1.1 protocol: POST / to https://secretsmanager.<AWS_SM_REGION>.amazonaws.com
 * (or AWS_SM_ENDPOINT) with X-Amz-Target: secretsmanager.<Action>, signed
 * with SigV4 by libcurl (CURLOPT_AWS_SIGV4 "aws:amz:<region>:secretsmanager").
 * Actions: PutSecretValue (falling back to CreateSecret for a new name),
 * GetSecretValue, DeleteSecret with ForceDeleteWithoutRecovery, ListSecrets
 * with a "name" prefix filter.
 *
 * The secret's name is the logical path (aurora/system/github-app/…), as
 * in the guide's `aws secretsmanager create-secret --name …`.  UTF-8 text is
 * a SecretString (what `--secret-string file://key.pem` stores, newlines
 * and all); other bytes are a SecretBinary.
 *
 * Throttling (ThrottlingException and friends), 5xx answers and transport
 * errors are retried with exponential backoff and jitter; every attempt of
 * one put carries the same ClientRequestToken, so a retried write is applied
 * once.  A name AWS is still deleting (ForceDeleteWithoutRecovery works in
 * the background: "marked for deletion") is waited for before a write, up to
 * DELETION_WAITS times, and reads as not found.  A listing (ListSecrets,
 * page after page) has a deadline as a whole (secrets_list_deadline_ms),
 * each page's wait and retries cut to what is left of it.  The error type
 * (__type) and AWS's message are passed on: they name the secret and the
 * denied action, never the value.
 *
 * Credentials: static keys (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * [/ AWS_SESSION_TOKEN]) when set; else web identity, the AWS SDKs' chain
 * entry that EKS IRSA feeds (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE):
 * an STS AssumeRoleWithWebIdentity (secrets_aws_sts.c) to
 * https://sts.<AWS_SM_REGION>.amazonaws.com or AWS_SM_STS_ENDPOINT, with the
 * token read from the file at every refresh (the kubelet rotates it).  The
 * temporary credentials are cached in the backend object, shared by every
 * worker thread: read and replaced under a mutex, copied to the caller's
 * stack for one call and wiped after it.  They are refreshed 5 minutes
 * before their Expiration (if STS fails then, the still-valid ones serve on
 * and STS is tried again 30 s later), and once more when AWS answers a call
 * with ExpiredToken / InvalidClientTokenId (revoked, clock skew).  Neither
 * the token nor the credentials are ever put into an error message.
 */
#include "secrets.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "breaker.h"
#include "crypto.h"
#include "http_client.h"
#include "secrets_aws_sts.h"
#include "utf8.h"

#define AWS_ATTEMPTS 4
#define LIST_PAGES_MAX 1000

#define STS_REFRESH_AHEAD_S 300
#define STS_RETRY_PAUSE_S 30

typedef struct {
    char endpoint[512];
    char sigv4[128]; /* "aws:amz:<region>:secretsmanager" */
    long timeout_ms;
    size_t list_max;  /* a listing's bound (secrets_config.list_max_paths): sets its deadline */
    int web_identity; /* 0: static keys in creds, never changed after open */
    /* web identity */
    char role_arn[2048];
    char token_file[1024];
    char session_name[65];
    char sts_url[512];
    pthread_mutex_t mu;  /* guards creds, expiry, generation when web_identity */
    aws_creds creds;     /* static keys, or the cached temporary credentials */
    time_t expiry;       /* 0: none cached */
    unsigned generation; /* bumped at every refresh */
    time_t retry_after;  /* after a failed refresh ahead of expiry: no new try before */
    /* Refreshes tried so far (read without the lock by a caller about to
     * wait for it), and how the last one failed: the callers that queued
     * behind a refresh STS did not answer share its answer rather than each
     * waiting out its own timeout. */
    atomic_uint attempts;
    int last_rc;
    char last_err[300];
    breaker *breaker; /* fails calls fast while the endpoint does not answer (breaker.h) */
} aws_t;

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void aws_close(void *impl)
{
    aws_t *a = impl;
    if (!a)
        return;
    if (a->web_identity)
        pthread_mutex_destroy(&a->mu);
    breaker_put(a->breaker);
    secret_free_n(a, sizeof(*a));
}

static int region_ok(const char *r)
{
    if (!r || !*r || strlen(r) > 40)
        return 0;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return 0;
    return 1;
}

/* RoleSessionName: [\w+=,.@-]{2,64}. */
static int session_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len < 2 || len > 64)
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
              strchr("_+=,.@-", *n)))
            return 0;
    return 1;
}

static int fits(int n, size_t cap)
{
    return n >= 0 && (size_t)n < cap;
}

static int aws_open(const secrets_config *cfg, void **impl, char *err, size_t errlen)
{
    *impl = NULL;
    if (!region_ok(cfg->aws_region)) {
        say(err, errlen, "AWS_SM_REGION must be set to an AWS region (e.g. us-east-1)");
        return SECRETS_E_INVALID;
    }
    const char *id = cfg->aws_access_key_id, *key = cfg->aws_secret_access_key;
    int have_id = id && *id, have_key = key && *key;
    const char *role = cfg->aws_role_arn, *tokfile = cfg->aws_web_identity_token_file;
    int web = !have_id && !have_key && role && *role && tokfile && *tokfile;
    if (!web && (!have_id || !have_key)) {
        if (have_id || have_key)
            say(err, errlen, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set "
                             "(or neither, to use web identity)");
        else
            say(err, errlen, "aws_secrets_manager needs credentials: set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY (static keys), or AWS_ROLE_ARN and "
                             "AWS_WEB_IDENTITY_TOKEN_FILE (web identity, e.g. EKS IRSA)");
        return SECRETS_E_INVALID;
    }
    /* libcurl splits USERPWD at the first ':'; an id never holds one. */
    if (!web && strchr(id, ':')) {
        say(err, errlen, "AWS_ACCESS_KEY_ID is malformed");
        return SECRETS_E_INVALID;
    }
    const char *ep = cfg->aws_endpoint;
    if (ep && *ep && !http_client_url_ok(ep, 0)) {
        say(err, errlen, "AWS_SM_ENDPOINT must be an http:// or https:// url (no user name or password)");
        return SECRETS_E_INVALID;
    }
    const char *sts = cfg->aws_sts_endpoint;
    if (web && sts && *sts && !http_client_url_ok(sts, 0)) {
        say(err, errlen, "AWS_SM_STS_ENDPOINT must be an http:// or https:// url (no user name or password)");
        return SECRETS_E_INVALID;
    }
    const char *session = cfg->aws_role_session_name && *cfg->aws_role_session_name
                              ? cfg->aws_role_session_name
                              : "aurora-server";
    if (web && !session_name_ok(session)) {
        say(err, errlen, "AWS_ROLE_SESSION_NAME must be 2-64 characters of letters, digits and _+=,.@-");
        return SECRETS_E_INVALID;
    }
    aws_t *a = calloc(1, sizeof(*a));
    if (!a) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    int ok = ep && *ep ? fits(snprintf(a->endpoint, sizeof(a->endpoint), "%s", ep), sizeof(a->endpoint))
                       : fits(snprintf(a->endpoint, sizeof(a->endpoint),
                                       "https://secretsmanager.%s.amazonaws.com", cfg->aws_region),
                              sizeof(a->endpoint));
    snprintf(a->sigv4, sizeof(a->sigv4), "aws:amz:%s:secretsmanager", cfg->aws_region);
    if (web) {
        a->web_identity = 1;
        ok = ok && fits(snprintf(a->role_arn, sizeof(a->role_arn), "%s", role), sizeof(a->role_arn));
        ok = ok && fits(snprintf(a->token_file, sizeof(a->token_file), "%s", tokfile),
                        sizeof(a->token_file));
        snprintf(a->session_name, sizeof(a->session_name), "%s", session);
        ok = ok && (sts && *sts ? fits(snprintf(a->sts_url, sizeof(a->sts_url), "%s", sts),
                                       sizeof(a->sts_url))
                                : fits(snprintf(a->sts_url, sizeof(a->sts_url),
                                                "https://sts.%s.amazonaws.com", cfg->aws_region),
                                       sizeof(a->sts_url)));
        pthread_mutex_init(&a->mu, NULL);
    } else {
        ok = ok && fits(snprintf(a->creds.userpwd, sizeof(a->creds.userpwd), "%s:%s", id, key),
                        sizeof(a->creds.userpwd));
        ok = ok && fits(snprintf(a->creds.session_token, sizeof(a->creds.session_token), "%s",
                                 cfg->aws_session_token ? cfg->aws_session_token : ""),
                        sizeof(a->creds.session_token));
    }
    if (!ok) {
        aws_close(a);
        say(err, errlen, "AWS settings too long");
        return SECRETS_E_INVALID;
    }
    a->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : SECRETS_DEFAULT_TIMEOUT_MS;
    a->list_max = cfg->list_max_paths ? cfg->list_max_paths : SECRETS_LIST_MAX_PATHS;
    /* Shared by every handle on this endpoint; a probe may take one timeout
     * and the retries' backoff. */
    char label[600];
    snprintf(label, sizeof(label), "AWS Secrets Manager at %s", a->endpoint);
    a->breaker = breaker_get(BREAKER_SECRETS, a->endpoint, label, (int)a->timeout_ms + 5000);
    *impl = a;
    return SECRETS_OK;
}

/* ---- calls -------------------------------------------------------------------- */

typedef struct {
    char type[96]; /* error __type without its namespace, "" on success */
    char message[200];
} aws_error;

/* The text between <tag> and </tag> in an XML error body (signature and
 * credential errors come back in the query protocol's XML). */
static void xml_field(const char *body, const char *tag, char *out, size_t cap)
{
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = body ? strstr(body, open) : NULL;
    const char *b = a ? strstr(a, close) : NULL;
    if (!a || !b)
        return;
    a += strlen(open);
    snprintf(out, cap, "%.*s", (int)(b - a), a);
}

/* The endpoint's text goes into errors, and from there into the log: its
 * type as much as its message is made printable (secrets_printable). */
static void parse_error(const http_client_resp *r, aws_error *e)
{
    if (r->body && r->body[0] == '<') {
        xml_field(r->body, "Code", e->type, sizeof(e->type));
        xml_field(r->body, "Message", e->message, sizeof(e->message));
        secrets_printable(e->type);
        secrets_printable(e->message);
        return;
    }
    cJSON *j = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "__type");
    cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(j, "Message");
    const char *type = cJSON_IsString(t) ? t->valuestring : "";
    const char *hash = strrchr(type, '#'); /* "com.amazonaws…#ThrottlingException" */
    snprintf(e->type, sizeof(e->type), "%s", hash ? hash + 1 : type);
    snprintf(e->message, sizeof(e->message), "%s", cJSON_IsString(m) ? m->valuestring : "");
    secrets_printable(e->type);
    secrets_printable(e->message);
    cJSON_Delete(j);
}

static int is_throttle(const char *type)
{
    return !strcmp(type, "ThrottlingException") || !strcmp(type, "TooManyRequestsException") ||
           !strcmp(type, "RequestLimitExceeded") || !strcmp(type, "LimitExceededException") ||
           !strcmp(type, "RequestThrottled") || !strcmp(type, "ServiceUnavailable");
}

static int map_error(long status, const char *type)
{
    if (!strcmp(type, "ResourceNotFoundException"))
        return SECRETS_NOT_FOUND;
    if (is_throttle(type) || status >= 500 || !strcmp(type, "InternalServiceError"))
        return SECRETS_E_UNAVAILABLE;
    if (status == 401 || status == 403 || !strcmp(type, "AccessDeniedException") ||
        !strcmp(type, "UnrecognizedClientException") ||
        !strcmp(type, "InvalidSignatureException") || !strcmp(type, "IncompleteSignature") ||
        !strcmp(type, "ExpiredTokenException") || !strcmp(type, "MissingAuthenticationToken") ||
        !strcmp(type, "InvalidClientTokenId") || !strcmp(type, "SignatureDoesNotMatch"))
        return SECRETS_E_DENIED;
    if (!strcmp(type, "DecryptionFailure"))
        return SECRETS_E_INTEGRITY;
    return SECRETS_E_OTHER;
}

/* ---- web identity ----------------------------------------------------------------- */

/* New credentials from STS (secrets_aws_sts.c) into the cache.  Called with
 * a->mu held: one refresh at a time, the other threads wait for its result. */
static int sts_refresh(aws_t *a, char *err, size_t errlen)
{
    aws_web_identity w = { .role_arn = a->role_arn,
                           .token_file = a->token_file,
                           .session_name = a->session_name,
                           .sts_url = a->sts_url,
                           .timeout_ms = a->timeout_ms };
    aws_creds c;
    time_t expiry = 0;
    int rc = aws_sts_assume_web_identity(&w, &c, &expiry, err, errlen);
    if (rc == SECRETS_OK) {
        a->creds = c;
        a->expiry = expiry;
        a->retry_after = 0;
        a->generation++;
    }
    OPENSSL_cleanse(&c, sizeof(c));
    return rc;
}

/* Which credentials a call was handed: their generation, and the number of
 * refreshes tried by then. */
typedef struct {
    unsigned gen;
    unsigned tries;
} creds_ticket;

/* The credentials one call signs with, copied to *out (the caller wipes
 * it).  Web identity: refreshed first when none are cached, when they
 * expire within STS_REFRESH_AHEAD_S, or when `stale` names the ones AWS
 * just refused (another thread may have refreshed since: then its
 * credentials are taken as they are, or, when that refresh failed, its
 * failure: the callers holding refused credentials ask STS once between
 * them, not once each, one timeout after the other). */
static int creds_get(aws_t *a, aws_creds *out, creds_ticket *t, const creds_ticket *stale,
                     char *err, size_t errlen)
{
    if (!a->web_identity) {
        *out = a->creds;
        t->gen = t->tries = 0;
        return SECRETS_OK;
    }
    int rc = SECRETS_OK;
    unsigned seen = atomic_load(&a->attempts);
    pthread_mutex_lock(&a->mu);
    time_t now = time(NULL);
    int forced = stale && stale->gen == a->generation;
    int valid = a->expiry != 0 && now < a->expiry;
    if (forced && atomic_load(&a->attempts) != stale->tries && a->last_rc != SECRETS_OK) {
        /* A refresh tried since the refused credentials were handed out
         * left them in place: STS failed it just now. */
        say(err, errlen, "%s", a->last_err);
        rc = a->last_rc;
    } else if (!valid && !forced && atomic_load(&a->attempts) != seen &&
               a->last_rc == SECRETS_E_UNAVAILABLE) {
        /* STS did not answer the refresh this call waited for: its answer. */
        say(err, errlen, "%s", a->last_err);
        rc = a->last_rc;
    } else if (forced || !valid ||
               (now + STS_REFRESH_AHEAD_S >= a->expiry && now >= a->retry_after)) {
        rc = sts_refresh(a, err, errlen);
        a->last_rc = rc;
        snprintf(a->last_err, sizeof(a->last_err), "%s", rc == SECRETS_OK ? "" : err);
        atomic_fetch_add(&a->attempts, 1);
        /* A failed refresh ahead of expiry keeps the credentials that are
         * still good, and is tried again after a pause rather than by every
         * call (each would wait for STS under the lock). */
        if (rc != SECRETS_OK && valid && !forced) {
            a->retry_after = now + STS_RETRY_PAUSE_S;
            rc = SECRETS_OK;
        }
    }
    if (rc == SECRETS_OK) {
        *out = a->creds;
        t->gen = a->generation;
        t->tries = atomic_load(&a->attempts);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static int creds_refused(const char *type)
{
    return !strcmp(type, "ExpiredTokenException") || !strcmp(type, "ExpiredToken") ||
           !strcmp(type, "InvalidClientTokenId") || !strcmp(type, "UnrecognizedClientException");
}

/* One action, with retries, signed with the credentials *c.  SECRETS_OK with
 * *resp filled on HTTP 200; otherwise e gets AWS's error type.  deadline
 * (secrets_mono_ms; 0: none) ends the attempts and the backoff between them
 * early: each attempt waits at most what is left of it. */
static int call_with(aws_t *a, const aws_creds *c, const char *action, const char *body,
                     long long deadline, http_client_resp *resp, aws_error *e, char *err,
                     size_t errlen)
{
    char target[96], tokhdr[2100];
    snprintf(target, sizeof(target), "X-Amz-Target: secretsmanager.%s", action);
    const char *hdrs[4] = { "Content-Type: application/x-amz-json-1.1", target, NULL, NULL };
    if (c->session_token[0]) {
        snprintf(tokhdr, sizeof(tokhdr), "X-Amz-Security-Token: %s", c->session_token);
        hdrs[2] = tokhdr;
    }
    http_client_req req = { .method = "POST",
                      .url = a->endpoint,
                      .headers = hdrs,
                      .body = body,
                      .body_len = strlen(body),
                      .timeout_ms = a->timeout_ms,
                      .aws_sigv4 = a->sigv4,
                      .userpwd = c->userpwd };
    int rc = SECRETS_E_UNAVAILABLE, probe = 0, reached = 0, unreached = 0;
    char why[192];
    if (!breaker_admit(a->breaker, &probe, why, sizeof(why))) {
        memset(e, 0, sizeof(*e));
        memset(resp, 0, sizeof(*resp));
        say(err, errlen, "AWS Secrets Manager at %s %s", a->endpoint, why);
        if (c->session_token[0])
            OPENSSL_cleanse(tokhdr, sizeof(tokhdr));
        return SECRETS_E_UNAVAILABLE;
    }
    for (int attempt = 1; attempt <= AWS_ATTEMPTS; attempt++) {
        memset(e, 0, sizeof(*e));
        int next = secrets_next_attempt(attempt, deadline, a->timeout_ms, &req.timeout_ms);
        if (next == 0)
            break; /* err holds the last attempt's failure */
        if (next < 0) {
            say(err, errlen, "AWS Secrets Manager at %s: no time left for the request",
                a->endpoint);
            break;
        }
        if (http_client_do(&req, resp) < 0) {
            say(err, errlen, "AWS Secrets Manager at %s unreachable: %s", a->endpoint, resp->err);
            rc = SECRETS_E_UNAVAILABLE;
            /* A wait cut short by the deadline says nothing of whether the
             * endpoint answers: the breaker is not told it does not. */
            if (!(resp->code == AUR_E_TIMEOUT && req.timeout_ms < a->timeout_ms))
                unreached |= resp->unreached;
            if (resp->code == AUR_E_TIMEOUT) /* one timeout is the most a caller waits */
                break;
            continue;
        }
        reached = 1;
        if (resp->status == 200) {
            rc = SECRETS_OK;
            break;
        }
        parse_error(resp, e);
        rc = map_error(resp->status, e->type);
        say(err, errlen, "%s: HTTP %ld %s%s%s%s", action, resp->status,
            e->type[0] ? e->type : "error", e->message[0] ? " (" : "", e->message,
            e->message[0] ? ")" : "");
        http_client_resp_free(resp);
        if (rc != SECRETS_E_UNAVAILABLE)
            break;
        if (is_throttle(e->type) && attempt == AWS_ATTEMPTS)
            say(err, errlen, "%s: throttled by AWS (%s) after %d attempts", action, e->type,
                AWS_ATTEMPTS);
    }
    /* Any HTTP answer (throttling and 5xx included) is the endpoint answering. */
    /* A certificate it refused, an oversized answer: the endpoint is there,
     * the breaker learns nothing (and its callers keep the real reason). */
    breaker_report(a->breaker, probe,
                   reached     ? BREAKER_REACHED
                   : unreached ? BREAKER_UNREACHABLE
                               : BREAKER_NOT_ASKED,
                   reached ? NULL : err);
    if (c->session_token[0])
        OPENSSL_cleanse(tokhdr, sizeof(tokhdr));
    return rc;
}

/* One action: credentials taken (or refreshed) for it, and with web
 * identity refreshed once more when AWS refuses them as expired or
 * unknown; deadline as call_with's (a refresh from STS is not cut to it:
 * it is shared with the other callers waiting for it). */
static int call(aws_t *a, const char *action, const char *body, long long deadline,
                http_client_resp *resp, aws_error *e, char *err, size_t errlen)
{
    aws_error local;
    if (!e)
        e = &local;
    memset(e, 0, sizeof(*e));
    aws_creds c;
    creds_ticket t = { 0, 0 };
    int rc = creds_get(a, &c, &t, NULL, err, errlen);
    if (rc == SECRETS_OK)
        rc = call_with(a, &c, action, body, deadline, resp, e, err, errlen);
    if (rc == SECRETS_E_DENIED && a->web_identity && creds_refused(e->type)) {
        creds_ticket refused = t;
        rc = creds_get(a, &c, &t, &refused, err, errlen);
        if (rc == SECRETS_OK)
            rc = call_with(a, &c, action, body, deadline, resp, e, err, errlen);
    }
    OPENSSL_cleanse(&c, sizeof(c));
    return rc;
}

/* A version-4 UUID (ClientRequestToken: 32-64 characters). */
static int uuid4(char out[37])
{
    unsigned char b[16];
    if (crypto_random(b, sizeof(b)) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[33];
    crypto_hex(b, sizeof(b), hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 0;
}

/* The JSON body of PutSecretValue / CreateSecret.  Wiped by the caller. */
static char *value_body(const char *id_field, const char *path, const char *token,
                        const unsigned char *val, size_t len)
{
    int text = utf8_valid((const char *)val, len);
    char *value = NULL;
    if (text) {
        value = malloc(len + 1);
        if (value) {
            memcpy(value, val, len);
            value[len] = '\0';
        }
    } else {
        value = crypto_base64(val, len); /* blob members travel base64-encoded */
    }
    if (!value)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *item = NULL;
    char *body = NULL;
    if (o && cJSON_AddStringToObject(o, id_field, path) &&
        cJSON_AddStringToObject(o, "ClientRequestToken", token) &&
        (item = cJSON_AddStringToObject(o, text ? "SecretString" : "SecretBinary", value)))
        body = secret_json_print(o); /* cJSON's printer frees outgrown copies unwiped */
    if (item && item->valuestring)
        OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
    cJSON_Delete(o);
    secret_free(value);
    return body;
}

static void free_body(char *body)
{
    secret_free(body);
}

/* AWS has yet to finish deleting the name (ForceDeleteWithoutRecovery
 * deletes in the background): "marked for deletion" on a write,
 * "scheduled for deletion" on a create. */
static int deletion_pending(const aws_error *e)
{
    return !strcmp(e->type, "InvalidRequestException") && strstr(e->message, "for deletion");
}

/* Waits for a deletion still under way before a write (250 ms doubling:
 * 3.75 s in all), as AWS asks of a caller that deletes a secret and writes
 * the name again at once (a disconnect followed by a reconnect). */
#define DELETION_WAITS 4

static int aws_put(void *impl, const char *path, const unsigned char *val, size_t len, char *err,
                   size_t errlen)
{
    aws_t *a = impl;
    char token[37];
    if (uuid4(token) < 0) {
        say(err, errlen, "no randomness");
        return SECRETS_E_OTHER;
    }
    /* Updating is the common case; a new name falls back to creating it,
     * and a creator that lost a race to another creator updates after all. */
    int waits = 0;
    for (int round = 0; round < 2; round++) {
        char *body = value_body("SecretId", path, token, val, len);
        if (!body) {
            say(err, errlen, "out of memory");
            return SECRETS_E_OTHER;
        }
        http_client_resp r;
        aws_error e;
        int rc = call(a, "PutSecretValue", body, 0, &r, &e, err, errlen);
        free_body(body);
        if (rc == SECRETS_OK) {
            http_client_resp_free(&r);
            return SECRETS_OK;
        }
        if (deletion_pending(&e) && waits < DELETION_WAITS) {
            http_client_sleep_ms(250L << waits++);
            round--;
            continue;
        }
        if (rc != SECRETS_NOT_FOUND)
            return rc;
        body = value_body("Name", path, token, val, len);
        if (!body) {
            say(err, errlen, "out of memory");
            return SECRETS_E_OTHER;
        }
        rc = call(a, "CreateSecret", body, 0, &r, &e, err, errlen);
        free_body(body);
        if (rc == SECRETS_OK) {
            http_client_resp_free(&r);
            return SECRETS_OK;
        }
        if (deletion_pending(&e) && waits < DELETION_WAITS) {
            http_client_sleep_ms(250L << waits++);
            round--;
            continue;
        }
        if (strcmp(e.type, "ResourceExistsException") != 0)
            return rc;
    }
    return SECRETS_E_OTHER;
}

static int aws_get(void *impl, const char *path, unsigned char **val, size_t *len, char *err,
                   size_t errlen)
{
    aws_t *a = impl;
    cJSON *req = cJSON_CreateObject();
    char *body = req && cJSON_AddStringToObject(req, "SecretId", path) ? cJSON_PrintUnformatted(req)
                                                                         : NULL;
    cJSON_Delete(req);
    if (!body) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    http_client_resp r;
    aws_error e;
    int rc = call(a, "GetSecretValue", body, 0, &r, &e, err, errlen);
    free(body);
    /* Deleted, or scheduled for deletion: nothing to read. */
    if (rc != SECRETS_OK && deletion_pending(&e))
        rc = SECRETS_NOT_FOUND;
    if (rc != SECRETS_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "SecretString");
    cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "SecretBinary");
    static const char *const string_at[] = { "SecretString", NULL };
    unsigned char *out = NULL;
    size_t n = 0, full = 0;
    if (cJSON_IsString(s) && secret_json_string_has_nul(r.body, r.len, string_at, &full)) {
        /* cJSON's string ends at the NUL: what follows would be lost. */
        say(err, errlen, "SecretString holds a NUL character (\\u0000), which cannot be "
                         "returned whole (store such a value as SecretBinary)");
        rc = SECRETS_E_OTHER;
    } else if (cJSON_IsString(s)) {
        n = strlen(s->valuestring);
        if ((out = malloc(n + 1)))
            memcpy(out, s->valuestring, n + 1);
    } else if (cJSON_IsString(b)) {
        unsigned char *raw = crypto_base64_decode(b->valuestring, strlen(b->valuestring), &n);
        if (raw && (out = malloc(n + 1))) {
            memcpy(out, raw, n);
            out[n] = '\0';
        }
        if (raw) {
            secret_free_n(raw, n);
        } else {
            say(err, errlen, "SecretBinary is not base64");
            rc = SECRETS_E_OTHER;
        }
    } else {
        say(err, errlen, "answer holds neither SecretString nor SecretBinary");
        rc = SECRETS_E_OTHER;
    }
    if (rc == SECRETS_OK && !out) {
        say(err, errlen, "out of memory");
        rc = SECRETS_E_OTHER;
    }
    if (rc == SECRETS_OK) {
        *val = out;
        *len = n;
    }
    if (cJSON_IsString(s))
        OPENSSL_cleanse(s->valuestring, full ? full : strlen(s->valuestring));
    if (cJSON_IsString(b))
        OPENSSL_cleanse(b->valuestring, strlen(b->valuestring));
    cJSON_Delete(j);
    http_client_resp_free(&r);
    return rc;
}

static int aws_del(void *impl, const char *path, char *err, size_t errlen)
{
    aws_t *a = impl;
    cJSON *req = cJSON_CreateObject();
    char *body = NULL;
    /* Without recovery window: a deleted credential must not linger for
     * 7-30 days, and the name must be reusable at once. */
    if (req && cJSON_AddStringToObject(req, "SecretId", path) &&
        cJSON_AddTrueToObject(req, "ForceDeleteWithoutRecovery"))
        body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    http_client_resp r;
    int rc = call(a, "DeleteSecret", body, 0, &r, NULL, err, errlen);
    free(body);
    if (rc == SECRETS_OK)
        http_client_resp_free(&r);
    return rc;
}

/* The listing's error once its deadline has passed. */
static int list_late(long deadline_ms, int pages, char *err, size_t errlen)
{
    say(err, errlen,
        "listing stopped: not done within %ld ms (%d ListSecrets pages requested; AWS answers "
        "slowly)",
        deadline_ms, pages);
    return SECRETS_E_UNAVAILABLE;
}

/* ListSecrets page after page, bounded in pages (LIST_PAGES_MAX), in paths
 * (add's -1) and in time, whatever the endpoint answers: one answering
 * each page just under the timeout would otherwise hold the calling worker
 * for one timeout per page (secrets_list_deadline_ms). */
static int aws_list(void *impl, const char *prefix, int (*add)(void *, const char *), void *ctx,
                    char *err, size_t errlen)
{
    aws_t *a = impl;
    char *next = NULL;
    long deadline_ms = secrets_list_deadline_ms(a->timeout_ms, a->list_max);
    long long deadline = secrets_mono_ms() + deadline_ms;
    for (int page = 0; page < LIST_PAGES_MAX; page++) {
        if (secrets_mono_ms() >= deadline) {
            free(next);
            return list_late(deadline_ms, page, err, errlen);
        }
        cJSON *req = cJSON_CreateObject();
        cJSON *filters = NULL, *f = NULL, *vals = NULL;
        char *body = NULL;
        int ok = req && cJSON_AddNumberToObject(req, "MaxResults", 100) != NULL;
        /* "name" filters match a case-sensitive prefix of the name. */
        if (ok && *prefix) {
            ok = (filters = cJSON_AddArrayToObject(req, "Filters")) && (f = cJSON_CreateObject());
            if (ok) {
                cJSON_AddItemToArray(filters, f);
                ok = cJSON_AddStringToObject(f, "Key", "name") &&
                     (vals = cJSON_AddArrayToObject(f, "Values"));
            }
            if (ok) {
                cJSON *pv = cJSON_CreateString(prefix);
                ok = pv != NULL;
                if (ok)
                    cJSON_AddItemToArray(vals, pv);
            }
        }
        if (ok && next)
            ok = cJSON_AddStringToObject(req, "NextToken", next) != NULL;
        if (ok)
            body = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        free(next);
        next = NULL;
        if (!body) {
            say(err, errlen, "out of memory");
            return SECRETS_E_OTHER;
        }
        http_client_resp r;
        int rc = call(a, "ListSecrets", body, deadline, &r, NULL, err, errlen);
        free(body);
        if (rc != SECRETS_OK)
            return rc == SECRETS_E_UNAVAILABLE && secrets_mono_ms() >= deadline
                       ? list_late(deadline_ms, page + 1, err, errlen)
                       : rc;
        cJSON *j = cJSON_ParseWithLength(r.body, r.len);
        http_client_resp_free(&r);
        cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "SecretList");
        cJSON *nt = cJSON_GetObjectItemCaseSensitive(j, "NextToken");
        if (!j || (list && !cJSON_IsArray(list))) {
            cJSON_Delete(j);
            say(err, errlen, "unexpected ListSecrets answer");
            return SECRETS_E_OTHER;
        }
        cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "Name");
            if (cJSON_IsString(name) && add(ctx, name->valuestring) < 0) {
                cJSON_Delete(j);
                say(err, errlen, "out of memory");
                return SECRETS_E_OTHER;
            }
        }
        int more = cJSON_IsString(nt) && nt->valuestring[0];
        if (more)
            next = strdup(nt->valuestring);
        cJSON_Delete(j);
        if (more && !next) {
            say(err, errlen, "out of memory");
            return SECRETS_E_OTHER;
        }
        if (!more)
            return SECRETS_OK;
    }
    free(next);
    say(err, errlen, "more than %d pages of secrets", LIST_PAGES_MAX);
    return SECRETS_E_OTHER;
}

const secrets_backend secrets_backend_aws = {
    .name = "aws_secrets_manager",
    .open = aws_open,
    .close = aws_close,
    .put = aws_put,
    .get = aws_get,
    .del = aws_del,
    .list = aws_list,
};
