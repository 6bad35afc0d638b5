/* secrets_aws_sts.c — STS AssumeRoleWithWebIdentity for the AWS Secrets
 * Manager backend (secrets_aws_sts.h).
 *
 * https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html:
 * query API, POST / with the form Action=AssumeRoleWithWebIdentity
 * &Version=2011-06-15&RoleArn=&RoleSessionName=&WebIdentityToken=
 * &DurationSeconds=, NOT signed (the token is the proof of identity), answered
 * in XML: AssumeRoleWithWebIdentityResult/Credentials/{AccessKeyId,
 * SecretAccessKey, SessionToken, Expiration (ISO 8601, UTC)}, errors as
 * ErrorResponse/Error/{Code, Message}.  5xx, throttling and
 * IDPCommunicationError (STS could not reach the cluster's OIDC issuer) are
 * retried with backoff.  The token and the form holding it are wiped after
 * the call; an STS message that quotes any 16 characters of the token is
 * dropped, and the Code and Message of an error are made printable
 * (secrets_printable: they reach the log).
 */
#include "secrets_aws_sts.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "secrets.h"

#define STS_ATTEMPTS 4
#define STS_DURATION_S 3600
#define WEB_IDENTITY_TOKEN_MAX 20000 /* STS's limit on WebIdentityToken */
#define KEY_MAX 256

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int fits(int n, size_t cap)
{
    return n >= 0 && (size_t)n < cap;
}

/* The text between <tag> and </tag>, cut to cap; "" when absent. */
static void xml_field(const char *body, const char *tag, char *out, size_t cap)
{
    char open[40], close[40];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    out[0] = '\0';
    const char *a = body ? strstr(body, open) : NULL;
    const char *b = a ? strstr(a, close) : NULL;
    if (!a || !b)
        return;
    a += strlen(open);
    snprintf(out, cap, "%.*s", (int)(b - a), a);
}

/* The pieces of the token an error message may not quote: any run of this
 * many of its characters (fewer say nothing about it; more would let a cut
 * or partial echo through). */
#define TOKEN_PIECE 16
/* STS's messages are a sentence; one longer is dropped unread (the search
 * below is quadratic). */
#define MESSAGE_SEARCH_MAX 2048

/* Whether text[0..n) holds the token or any TOKEN_PIECE characters of it.
 * STS may quote the token it refused, whole or in part, and a JWT's first
 * ~200 characters are its header and claims (issuer, namespace, service
 * account): searched in the whole message, before it is cut for the error. */
static int quotes_token(const char *text, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    if (tl <= TOKEN_PIECE)
        return memmem(text, n, tok, tl) != NULL;
    for (size_t i = 0; i + TOKEN_PIECE <= n; i++)
        if (memmem(tok, tl, text + i, TOKEN_PIECE))
            return 1;
    return 0;
}

/* The <Message> of an STS error body into out (cut to cap), "" when absent,
 * longer than MESSAGE_SEARCH_MAX, or quoting the token. */
static void sts_message(const char *body, const char *tok, char *out, size_t cap)
{
    out[0] = '\0';
    const char *a = body ? strstr(body, "<Message>") : NULL;
    const char *b = a ? strstr(a, "</Message>") : NULL;
    if (!a || !b)
        return;
    a += strlen("<Message>");
    size_t n = (size_t)(b - a);
    if (n > MESSAGE_SEARCH_MAX || quotes_token(a, n, tok))
        return;
    snprintf(out, cap, "%.*s", (int)n, a);
}

/* application/x-www-form-urlencoded value: unreserved characters kept. */
static int form_append(char *out, size_t cap, size_t *len, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    int n = snprintf(out + *len, cap - *len, "%s%s=", *len ? "&" : "", name);
    if (!fits(n, cap - *len))
        return -1;
    *len += (size_t)n;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*len + 4 > cap)
            return -1;
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[(*len)++] = (char)*p;
        } else {
            out[(*len)++] = '%';
            out[(*len)++] = hex[*p >> 4];
            out[(*len)++] = hex[*p & 15];
        }
    }
    out[*len] = '\0';
    return 0;
}

/* "2026-12-03T08:40:00Z", with optional fractional seconds and a "+00:00"
 * suffix (STS answers UTC). */
static int parse_expiration(const char *s, time_t *out)
{
    struct tm tm = { 0 };
    int used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &used) != 6)
        return -1;
    s += used;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++)
            ;
    if (strcmp(s, "Z") && strcmp(s, "+00:00"))
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = t;
    return 0;
}

/* The web identity token, read fresh (the kubelet rotates the file).  A
 * malloc'd string wiped by the caller with secret_free_n(, cap), or NULL
 * with err set. */
static char *read_token(const char *path, size_t *cap, char *err, size_t errlen)
{
    const char *why = "";
    char *tok = secrets_read_token_file(path, WEB_IDENTITY_TOKEN_MAX, cap, &why);
    if (!tok)
        say(err, errlen, "web identity: the token file AWS_WEB_IDENTITY_TOKEN_FILE=%s is %s",
            path, why);
    return tok;
}

static int sts_denied(long status, const char *code)
{
    return !strcmp(code, "AccessDenied") || !strcmp(code, "InvalidIdentityToken") ||
           !strcmp(code, "ExpiredTokenException") || !strcmp(code, "IDPRejectedClaim") ||
           !strcmp(code, "MalformedPolicyDocument") || !strcmp(code, "RegionDisabledException") ||
           status == 401 || status == 403;
}


static int sts_retryable(long status, const char *code)
{
    return status >= 500 || !strcmp(code, "Throttling") || !strcmp(code, "ThrottlingException") ||
           !strcmp(code, "RequestLimitExceeded") || !strcmp(code, "IDPCommunicationError") ||
           !strcmp(code, "ServiceUnavailable");
}

/* The form of one call (wiped by the caller: it holds the token). */
static char *build_form(const aws_web_identity *w, const char *tok, size_t *cap, size_t *len)
{
    *cap = 3 * (strlen(tok) + strlen(w->role_arn) + strlen(w->session_name)) + 256;
    char *form = malloc(*cap);
    char dur[16];
    snprintf(dur, sizeof(dur), "%d", STS_DURATION_S);
    *len = 0;
    if (form && form_append(form, *cap, len, "Action", "AssumeRoleWithWebIdentity") == 0 &&
        form_append(form, *cap, len, "Version", "2011-06-15") == 0 &&
        form_append(form, *cap, len, "RoleArn", w->role_arn) == 0 &&
        form_append(form, *cap, len, "RoleSessionName", w->session_name) == 0 &&
        form_append(form, *cap, len, "WebIdentityToken", tok) == 0 &&
        form_append(form, *cap, len, "DurationSeconds", dur) == 0)
        return form;
    if (form)
        secret_free_n(form, *cap);
    return NULL;
}

/* The credentials of a 200 answer into *out. */
static int parse_answer(const char *body, aws_creds *out, time_t *expiry, char *err, size_t errlen)
{
    char *id = calloc(1, KEY_MAX), *key = calloc(1, KEY_MAX);
    char *stok = calloc(1, sizeof(out->session_token));
    char exp[64];
    int rc = SECRETS_OK;
    if (!id || !key || !stok) {
        say(err, errlen, "out of memory");
        rc = SECRETS_E_OTHER;
    } else {
        xml_field(body, "AccessKeyId", id, KEY_MAX);
        xml_field(body, "SecretAccessKey", key, KEY_MAX);
        xml_field(body, "SessionToken", stok, sizeof(out->session_token));
        xml_field(body, "Expiration", exp, sizeof(exp));
        /* A ':' would split libcurl's USERPWD; a token filling the buffer
         * may have been cut. */
        if (!id[0] || strchr(id, ':') || strlen(id) + 1 >= KEY_MAX || !key[0] ||
            strlen(key) + 1 >= KEY_MAX || !stok[0] ||
            strlen(stok) + 1 >= sizeof(out->session_token) || parse_expiration(exp, expiry) < 0 ||
            !fits(snprintf(out->userpwd, sizeof(out->userpwd), "%s:%s", id, key),
                  sizeof(out->userpwd))) {
            say(err, errlen, "web identity: unexpected STS AssumeRoleWithWebIdentity answer "
                             "(credentials or Expiration missing or malformed)");
            rc = SECRETS_E_OTHER;
        } else {
            snprintf(out->session_token, sizeof(out->session_token), "%s", stok);
        }
    }
    if (id)
        secret_free_n(id, KEY_MAX);
    if (key)
        secret_free_n(key, KEY_MAX);
    if (stok)
        secret_free_n(stok, sizeof(out->session_token));
    return rc;
}

int aws_sts_assume_web_identity(const aws_web_identity *w, aws_creds *out, time_t *expiry, char *err,
                                size_t errlen)
{
    memset(out, 0, sizeof(*out));
    size_t tokcap = 0;
    char *tok = read_token(w->token_file, &tokcap, err, errlen);
    if (!tok)
        return SECRETS_E_DENIED;
    size_t formcap = 0, flen = 0;
    char *form = build_form(w, tok, &formcap, &flen);
    if (!form) {
        secret_free_n(tok, tokcap);
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    const char *hdrs[] = { "Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL };
    http_client_req req = { .method = "POST",
                            .url = w->sts_url,
                            .headers = hdrs,
                            .body = form,
                            .body_len = flen,
                            .timeout_ms = w->timeout_ms };
    http_client_resp r;
    int rc = SECRETS_E_UNAVAILABLE;
    for (int attempt = 1; attempt <= STS_ATTEMPTS; attempt++) {
        if (attempt > 1)
            http_client_sleep_ms(http_client_backoff_ms(attempt - 1));
        if (http_client_do(&req, &r) < 0) {
            say(err, errlen, "web identity: STS at %s unreachable: %s", w->sts_url, r.err);
            rc = SECRETS_E_UNAVAILABLE;
            if (r.code == AUR_E_TIMEOUT) /* one timeout is the most a caller waits */
                break;
            continue;
        }
        if (r.status == 200) {
            rc = SECRETS_OK;
            break;
        }
        char code[96], message[200];
        xml_field(r.body, "Code", code, sizeof(code));
        sts_message(r.body, tok, message, sizeof(message));
        http_client_resp_free(&r);
        if (quotes_token(code, strlen(code), tok))
            code[0] = '\0';
        /* Both go into the error, and from there into the log: STS's text,
         * its Code as much as its Message. */
        secrets_printable(code);
        secrets_printable(message);
        int retry = sts_retryable(r.status, code);
        rc = retry ? SECRETS_E_UNAVAILABLE : sts_denied(r.status, code) ? SECRETS_E_DENIED : SECRETS_E_OTHER;
        say(err, errlen,
            "web identity: STS AssumeRoleWithWebIdentity for role %s refused: HTTP %ld %s%s%s%s",
            w->role_arn, r.status, code[0] ? code : "error", message[0] ? " (" : "", message,
            message[0] ? ")" : "");
        if (!retry)
            break;
    }
    secret_free_n(form, formcap);
    secret_free_n(tok, tokcap);
    if (rc != SECRETS_OK)
        return rc;
    rc = parse_answer(r.body, out, expiry, err, errlen);
    http_client_resp_free(&r); /* wipes the body */
    if (rc != SECRETS_OK)
        OPENSSL_cleanse(out, sizeof(*out));
    return rc;
}
