/* connector_aws.c — AWS: IAM role with External ID, assumed over STS.
 *
 * Aurora's own credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
 * optionally AWS_SESSION_TOKEN) sign every STS call (SigV4, service "sts",
 * region AWS_DEFAULT_REGION, endpoint AWS_STS_ENDPOINT or
 * https://sts.<region>.amazonaws.com).
 *
 *   GET  /aws/onboarding   Aurora's account id (STS GetCallerIdentity), the
 *                          organization's External ID (created once, shared by
 *                          every replica through store_org_setting_create) and
 *                          the trust policy to paste into the customer's role
 *   POST /aws/connect      {role_arn, region?}: AssumeRole once to prove the
 *                          trust policy works, then store the connection
 * Status and disconnect are the generic GET /api/connectors/status and
 * DELETE /api/connectors/aws (which also drops the cached credentials).
 *
 * cloud_exec for `aws`: prepare() hands the agent short-lived credentials of
 * the assumed role (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_EC2_METADATA_DISABLED=true,
 * AWS_PAGER=).  Sessions are as short as the command allows: 15 minutes
 * (AWS's minimum) unless its timeout asks more, up to the role's
 * MaxSessionDuration.  Assumed-role credentials are cached per (org, user,
 * role) and handed to a command only while they outlive its timeout (and
 * not within 5 minutes of their expiry); the cache is shared by the
 * outbound workers (mutex) and wiped when entries are dropped and at exit.
 *
 * The credential cache, the connection row and the settings table are the
 * connector kit's (kit_cache.h, kit_secrets.h).
 *
 * Nothing here stores a secret: the role ARN and the External ID are not
 * secrets (the customer pastes both into IAM), the temporary credentials live
 * only in memory. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "crypto.h"
#include "http_client.h"
#include "kit_cache.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"

#define AWS_ID "aws"
#define AWS_EXTERNAL_ID_KEY "aws_external_id"
/* AssumeRole's DurationSeconds: AWS's minimum, a role's default (and least)
 * MaxSessionDuration, AWS's maximum.  A command's session covers its timeout
 * plus AWS_SESSION_SLACK (the way to the agent and the CLI's start); a new
 * one lasts AWS_SESSION_REUSE more, so that the commands that follow within
 * that time reuse it. */
#define AWS_SESSION_MIN 900
#define AWS_SESSION_ROLE_DEFAULT 3600
#define AWS_SESSION_MAX 43200
#define AWS_SESSION_SLACK 60
#define AWS_SESSION_REUSE 300
#define MSG_NO_ACCOUNT "Unable to determine Aurora's AWS account ID"
#define MSG_CANNOT_ASSUME "Aurora cannot assume this role"

extern const connector connector_aws;

/* Aurora's own keys (AWS_ACCESS_KEY_ID, …) stay in the server's table: the
 * aws_secrets_manager backend uses them too. */
static const config_def aws_settings[] = {
    { "AWS_DEFAULT_REGION", "aws.default_region", CFG_STRING, "us-east-1", "AWS connector: region of Aurora's STS calls and default region of cloud commands", 0 },
    { "AWS_STS_ENDPOINT", "aws.sts_endpoint", CFG_STRING, NULL, "AWS connector: STS endpoint override (default https://sts.<region>.amazonaws.com)", 0 },
    { "AWS_CLI_ENDPOINT_URLS", "aws.cli_endpoint_urls", CFG_STRING, NULL, "AWS connector: the only --endpoint-url values a cloud_exec may give (comma-separated, exact; default none)", 0 },
    { NULL },
};

/* ---- small helpers ---------------------------------------------------------- */

static long timeout_ms(const worker_ctx *w)
{
    return connector_timeout_ms(w, &connector_aws);
}

static int have_creds(const server_config *c)
{
    return c->aws_access_key_id && *c->aws_access_key_id && c->aws_secret_access_key &&
           *c->aws_secret_access_key;
}

static const char *region_of(const server_config *c)
{
    const char *r = server_setting(c, "AWS_DEFAULT_REGION");
    return r ? r : "us-east-1";
}

static int region_valid(const char *r)
{
    size_t n = strlen(r);
    if (n < 2 || n > 32)
        return 0;
    for (const char *p = r; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

static void sts_url(const server_config *c, char *out, size_t cap)
{
    const char *e = server_setting(c, "AWS_STS_ENDPOINT");
    if (e)
        snprintf(out, cap, "%s", e);
    else
        snprintf(out, cap, "https://sts.%s.amazonaws.com/", region_of(c));
}

/* Text of the first <tag>…</tag> in xml (entities &amp; &lt; &gt; &quot;
 * &apos; decoded) into out; 1 if found. */
static int xml_text(const char *xml, const char *tag, char *out, size_t cap)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = xml ? strstr(xml, open) : NULL;
    if (!a || !cap)
        return 0;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b)
        return 0;
    size_t o = 0;
    static const struct { const char *ent; char c; } ents[] = {
        { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' }
    };
    while (a < b) {
        char ch = *a;
        size_t adv = 1;
        if (ch == '&')
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t l = strlen(ents[i].ent);
                if ((size_t)(b - a) >= l && !strncmp(a, ents[i].ent, l)) {
                    ch = ents[i].c;
                    adv = l;
                    break;
                }
            }
        if (o + 1 >= cap) {
            out[0] = '\0';
            return 0; /* never a cut value */
        }
        out[o++] = ch;
        a += adv;
    }
    out[o] = '\0';
    return 1;
}

/* "2026-11-29T02:46:25.576635Z" / "…:25Z" -> Unix seconds, 0 if unparseable. */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y, mo, d, h, mi, se;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t;
}

/* ---- STS ------------------------------------------------------------------- */

enum { STS_OK = 0, STS_NOCREDS, STS_TIMEOUT, STS_UNREACHABLE, STS_HTTP };

typedef struct {
    int kind;
    long status;
    char code[64];   /* AWS error code ("AccessDenied", …) */
    char detail[256]; /* transport error (host and port at most) */
} sts_result;

static void parse_sts_error(const http_client_resp *r, sts_result *res)
{
    char code[128] = "";
    if (r->body && xml_text(r->body, "Code", code, sizeof(code))) {
        kit_code_text(code, res->code, sizeof(res->code));
        return;
    }
    /* The AWS JSON protocol shape: {"__type": "[ns#]AccessDenied", "message": …}. */
    cJSON *j = http_client_json(r);
    const char *t = j ? api_json_str(j, "__type") : NULL;
    if (!t && j)
        t = api_json_str(j, "code");
    if (t) {
        const char *hash = strrchr(t, '#');
        kit_code_text(hash ? hash + 1 : t, res->code, sizeof(res->code));
    }
    cJSON_Delete(j);
    if (!res->code[0])
        snprintf(res->code, sizeof(res->code), "HTTP%ld", r->status);
}

/* AWS Query APIs answer throttling as HTTP 400 with a <Code>: retried like a 5xx. */
static int sts_throttled(const http_client_resp *answer)
{
    sts_result res = { 0 };
    parse_sts_error(answer, &res);
    return !strcmp(res.code, "Throttling") || !strcmp(res.code, "ThrottlingException") ||
           !strcmp(res.code, "RequestLimitExceeded");
}

/* One STS Query API call signed with Aurora's credentials, through kit_call
 * (5xx and throttling retried once, the whole call within
 * AURORA_PROVIDER_TIMEOUT_MS).  On STS_OK, resp holds the 2xx answer
 * (kit_call_resp_free it). */
static int sts_call(worker_ctx *w, const char *const *pairs, kit_call_resp *resp,
                    sts_result *res)
{
    const server_config *c = w->cfg;
    memset(res, 0, sizeof(*res));
    memset(resp, 0, sizeof(*resp));
    if (!have_creds(c))
        return res->kind = STS_NOCREDS;
    char url[512], sigv4[128], *tokhdr = NULL;
    sts_url(c, url, sizeof(url));
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:sts", region_of(c));
    size_t upl = strlen(c->aws_access_key_id) + strlen(c->aws_secret_access_key) + 2;
    char *userpwd = malloc(upl);
    char *body = http_client_form(pairs);
    const char *headers[4] = { "Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                               "Accept: text/xml", NULL, NULL };
    int session = c->aws_session_token && *c->aws_session_token;
    size_t tokl = session ? strlen(c->aws_session_token) + 32 : 0;
    if (session && (tokhdr = malloc(tokl)) != NULL) {
        snprintf(tokhdr, tokl, "X-Amz-Security-Token: %s", c->aws_session_token);
        headers[2] = tokhdr;
    }
    if (userpwd && body && (tokhdr || !session)) {
        snprintf(userpwd, upl, "%s:%s", c->aws_access_key_id, c->aws_secret_access_key);
        kit_call_req q = { .provider = "AWS STS", .base_url = url, .url = url, .headers = headers,
                           .body = body, .body_len = strlen(body), .retry_safe = 1,
                           .retry_if = sts_throttled, .max_attempts = 2,
                           .attempt_timeout_ms = timeout_ms(w), .deadline_ms = timeout_ms(w),
                           .aws_sigv4 = sigv4, .userpwd = userpwd };
        kit_call(&q, resp);
    } else {
        resp->code = AUR_E_INTERNAL;
        snprintf(resp->http.err, sizeof(resp->http.err), "out of memory");
    }
    res->status = resp->status;
    if (resp->code == AUR_OK) {
        res->kind = STS_OK;
    } else if (resp->status == 0) {
        res->kind = resp->code == AUR_E_TIMEOUT ? STS_TIMEOUT : STS_UNREACHABLE;
        snprintf(res->detail, sizeof(res->detail), "%s", resp->http.err[0] ? resp->http.err : resp->err);
    } else {
        res->kind = STS_HTTP;
        parse_sts_error(&resp->http, res);
    }
    if (res->kind != STS_OK)
        kit_call_resp_free(resp);
    secret_free_n(userpwd, upl);
    secret_free(tokhdr);
    secret_free(body);
    return res->kind;
}

/* Fills resp for a failed STS call; `what` is the guide's message. */
static void sts_error(worker_ctx *w, http_response *resp, const sts_result *res, const char *what)
{
    switch (res->kind) {
    case STS_NOCREDS:
        http_resp_error(resp, 503, "AWS_NOT_CONFIGURED",
                        "%s: Aurora's AWS credentials are not configured (set AWS_ACCESS_KEY_ID "
                        "and AWS_SECRET_ACCESS_KEY)", what);
        return;
    case STS_TIMEOUT:
        http_resp_error(resp, 504, "AWS_STS_TIMEOUT", "%s: AWS STS did not answer within %ld s",
                        what, (timeout_ms(w) + 999) / 1000);
        return;
    case STS_UNREACHABLE:
        http_resp_error(resp, 502, "AWS_STS_UNREACHABLE", "%s: AWS STS is unreachable (%s)", what,
                        res->detail);
        return;
    default:
        break;
    }
    if (!strcmp(res->code, "AccessDenied") || !strcmp(res->code, "AccessDeniedException"))
        http_resp_error(resp, 400, "AWS_ASSUME_ROLE_DENIED",
                        "%s: AWS STS answered AccessDenied. Verify trust policy has correct "
                        "Aurora Account ID and External ID", what);
    else if (!strcmp(res->code, "InvalidClientTokenId") ||
             !strcmp(res->code, "SignatureDoesNotMatch") || !strcmp(res->code, "ExpiredToken") ||
             !strcmp(res->code, "UnrecognizedClientException"))
        http_resp_error(resp, 502, "AWS_CREDENTIALS_INVALID",
                        "%s: AWS STS rejected Aurora's own credentials (%s); check "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", what, res->code);
    else
        http_resp_error(resp, 502, "AWS_STS_ERROR", "%s: AWS STS answered HTTP %ld (%s)", what,
                        res->status, res->code);
}

/* ---- Aurora's own account id (cached for the process) ----------------------- */

static pthread_mutex_t g_acct_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_acct[16];
static char g_acct_key[160]; /* the access key id it belongs to */

static int account_id(worker_ctx *w, char out[16], http_response *resp)
{
    const server_config *c = w->cfg;
    if (have_creds(c)) {
        pthread_mutex_lock(&g_acct_mu);
        int hit = g_acct[0] && !strcmp(g_acct_key, c->aws_access_key_id);
        if (hit)
            memcpy(out, g_acct, 16);
        pthread_mutex_unlock(&g_acct_mu);
        if (hit)
            return 0;
    }
    const char *pairs[] = { "Action", "GetCallerIdentity", "Version", "2011-06-15", NULL };
    kit_call_resp r;
    sts_result res;
    if (sts_call(w, pairs, &r, &res) != STS_OK) {
        log_warn("aws: GetCallerIdentity failed (kind %d, HTTP %ld, %s%s)", res.kind, res.status,
                 res.code, res.detail);
        sts_error(w, resp, &res, MSG_NO_ACCOUNT);
        if (res.kind == STS_HTTP && resp->status == 400) /* AccessDenied on our own identity */
            http_resp_error(resp, 502, "AWS_ACCOUNT_ID_UNAVAILABLE",
                            MSG_NO_ACCOUNT ": AWS STS answered %s", res.code);
        return -1;
    }
    char acct[64] = "";
    int ok = xml_text(r.http.body, "Account", acct, sizeof(acct)) && strlen(acct) == 12 &&
             strspn(acct, "0123456789") == 12;
    kit_call_resp_free(&r);
    if (!ok) {
        http_resp_error(resp, 502, "AWS_ACCOUNT_ID_UNAVAILABLE",
                        MSG_NO_ACCOUNT ": AWS STS answer has no account id");
        return -1;
    }
    memcpy(out, acct, 13);
    pthread_mutex_lock(&g_acct_mu);
    memcpy(g_acct, acct, 13);
    snprintf(g_acct_key, sizeof(g_acct_key), "%s", c->aws_access_key_id);
    pthread_mutex_unlock(&g_acct_mu);
    return 0;
}

/* ---- the organization's External ID ----------------------------------------- */

static int external_id(worker_ctx *w, const char *org_id, char *out, size_t cap,
                       http_response *resp)
{
    int rc = store_org_setting_get(w->store, org_id, AWS_EXTERNAL_ID_KEY, out, cap);
    if (rc == STORE_OK)
        return 0;
    if (rc != STORE_NOT_FOUND) {
        api_store_error(w, resp);
        return -1;
    }
    unsigned char rnd[20];
    char hex[41];
    if (crypto_random(rnd, sizeof(rnd)) != 0) {
        http_resp_error(resp, 500, "INTERNAL", "random number generator failed");
        return -1;
    }
    crypto_hex(rnd, sizeof(rnd), hex);
    rc = store_org_setting_create(w->store, org_id, AWS_EXTERNAL_ID_KEY, hex);
    if (rc != STORE_OK && rc != STORE_CONFLICT) {
        api_store_error(w, resp);
        return -1;
    }
    /* CONFLICT: another request or replica created one first; use theirs. */
    if (store_org_setting_get(w->store, org_id, AWS_EXTERNAL_ID_KEY, out, cap) != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    if (rc == STORE_OK)
        log_info("aws: External ID created for organization %s", org_id);
    return 0;
}

/* ---- role ARNs ------------------------------------------------------------------ */

/* arn:<partition>:iam::<12 digits>:role/<path/>name; account gets the digits. */
static int role_arn_valid(const char *arn, char account[13])
{
    static const char *const parts[] = { "arn:aws:iam::", "arn:aws-cn:iam::",
                                         "arn:aws-us-gov:iam::" };
    size_t n = strlen(arn);
    if (n > 2048)
        return 0;
    const char *p = NULL;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && !p; i++)
        if (!strncmp(arn, parts[i], strlen(parts[i])))
            p = arn + strlen(parts[i]);
    if (!p || strspn(p, "0123456789") != 12 || strncmp(p + 12, ":role/", 6))
        return 0;
    memcpy(account, p, 12);
    account[12] = '\0';
    const char *rest = p + 18, *name = strrchr(rest, '/');
    name = name ? name + 1 : rest;
    size_t nl = strlen(name);
    if (nl < 1 || nl > 64)
        return 0;
    const char *prev = NULL;
    for (const char *q = rest; *q; q++) {
        char ch = *q;
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 strchr("+=,.@_-/", ch) != NULL;
        if (!ok || (ch == '/' && (q == rest || (prev && *prev == '/'))))
            return 0;
        prev = q;
    }
    return 1;
}

/* RoleSessionName: aurora-<user> in [\w+=,.@-], 2..64 chars. */
static void session_name(const char *user_id, char out[65])
{
    int o = snprintf(out, 65, "aurora-");
    for (const char *p = user_id; *p && o < 64; p++) {
        char ch = *p;
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 strchr("+=,.@_-", ch) != NULL;
        out[o++] = ok ? ch : '-';
    }
    out[o] = '\0';
}

/* ---- assumed-role credential cache ---------------------------------------------- */

typedef struct aws_creds {
    char akid[256];
    char secret[256];
    char *token; /* malloc'd */
    int64_t expires_at;
} aws_creds;

static kit_cache g_creds = KIT_CACHE_INIT(4096);

static void creds_wipe(aws_creds *c)
{
    secret_free(c->token);
    OPENSSL_cleanse(c, sizeof(*c));
}

static void cache_key(char *out, size_t cap, const char *org, const char *user, const char *role)
{
    kit_cache_key(out, cap, org, user, role);
}

/* A still-fresh entry into *out (token malloc'd); 1 on a hit.  Cached as
 * "<akid>\n<secret>\n<token>". */
static int cache_get(const char *key, int64_t now, aws_creds *out)
{
    char *v = kit_cache_get(&g_creds, key, now, &out->expires_at);
    char *nl1 = v ? strchr(v, '\n') : NULL, *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
    int hit = 0;
    if (nl2 && (size_t)(nl1 - v) < sizeof(out->akid) &&
        (size_t)(nl2 - nl1 - 1) < sizeof(out->secret) && (out->token = strdup(nl2 + 1))) {
        memcpy(out->akid, v, (size_t)(nl1 - v));
        out->akid[nl1 - v] = '\0';
        memcpy(out->secret, nl1 + 1, (size_t)(nl2 - nl1 - 1));
        out->secret[nl2 - nl1 - 1] = '\0';
        hit = 1;
    }
    secret_free(v);
    return hit;
}

static void cache_put(const char *key, const aws_creds *c, int64_t now)
{
    size_t n = strlen(c->akid) + strlen(c->secret) + strlen(c->token) + 3;
    char *v = malloc(n);
    if (!v)
        return;
    snprintf(v, n, "%s\n%s\n%s", c->akid, c->secret, c->token);
    kit_cache_put(&g_creds, key, v, c->expires_at, now);
    secret_free_n(v, n);
}

static void cache_forget(const char *org, const char *user)
{
    kit_cache_forget(&g_creds, org, user);
}

/* AssumeRole for a session of `seconds` (AWS_SESSION_MIN..AWS_SESSION_MAX);
 * on success *out holds the credentials (caller wipes).  Past the 1 h every
 * role allows, a role whose MaxSessionDuration is shorter answers
 * ValidationError: the session is then asked for 1 h. */
static int assume_role(worker_ctx *w, const char *user_id, const char *role_arn, const char *ext,
                       int seconds, aws_creds *out, char *assumed_arn, size_t acap,
                       http_response *resp)
{
    char sess[65], dur[16];
    session_name(user_id, sess);
    const char *pairs[] = { "Action", "AssumeRole", "Version", "2011-06-15", "RoleArn", role_arn,
                            "RoleSessionName", sess, "ExternalId", ext, "DurationSeconds", dur,
                            NULL };
    kit_call_resp r;
    sts_result res;
    memset(out, 0, sizeof(*out));
    if (seconds < AWS_SESSION_MIN)
        seconds = AWS_SESSION_MIN;
    if (seconds > AWS_SESSION_MAX)
        seconds = AWS_SESSION_MAX;
    snprintf(dur, sizeof(dur), "%d", seconds);
    int rc = sts_call(w, pairs, &r, &res);
    if (rc != STS_OK && seconds > AWS_SESSION_ROLE_DEFAULT && res.kind == STS_HTTP &&
        res.status == 400 && !strcmp(res.code, "ValidationError")) {
        log_info("aws: %s allows no %d s session; asking for %d s", role_arn, seconds,
                 AWS_SESSION_ROLE_DEFAULT);
        snprintf(dur, sizeof(dur), "%d", AWS_SESSION_ROLE_DEFAULT);
        rc = sts_call(w, pairs, &r, &res);
    }
    if (rc != STS_OK) {
        log_warn("aws: AssumeRole of %s failed (kind %d, HTTP %ld, %s%s)", role_arn, res.kind,
                 res.status, res.code, res.detail);
        sts_error(w, resp, &res, MSG_CANNOT_ASSUME);
        return -1;
    }
    char exp[64] = "";
    size_t tcap = r.http.len + 1;
    out->token = malloc(tcap);
    int ok = out->token && xml_text(r.http.body, "AccessKeyId", out->akid, sizeof(out->akid)) &&
             xml_text(r.http.body, "SecretAccessKey", out->secret, sizeof(out->secret)) &&
             xml_text(r.http.body, "SessionToken", out->token, tcap) &&
             xml_text(r.http.body, "Expiration", exp, sizeof(exp)) && out->akid[0] && out->secret[0] &&
             out->token[0];
    if (assumed_arn && !xml_text(r.http.body, "Arn", assumed_arn, acap))
        assumed_arn[0] = '\0';
    kit_call_resp_free(&r);
    if (!ok) {
        creds_wipe(out);
        http_resp_error(resp, 502, "AWS_STS_ERROR",
                        MSG_CANNOT_ASSUME ": AWS STS answer has no credentials");
        return -1;
    }
    int64_t now = (int64_t)time(NULL), e = parse_iso8601(exp);
    /* Unparseable or absurd expiry: assume the shortest session AWS grants. */
    out->expires_at = (e > now && e <= now + 43200) ? e : now + 900;
    return 0;
}

/* ---- routes ------------------------------------------------------------------------ */

static cJSON *trust_policy(const char *account, const char *ext)
{
    char principal[64];
    snprintf(principal, sizeof(principal), "arn:aws:iam::%s:root", account);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "Version", "2012-10-17");
    cJSON *stmts = cJSON_AddArrayToObject(doc, "Statement");
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "Effect", "Allow");
    cJSON *pr = cJSON_AddObjectToObject(st, "Principal");
    cJSON_AddStringToObject(pr, "AWS", principal);
    cJSON_AddStringToObject(st, "Action", "sts:AssumeRole");
    cJSON *cond = cJSON_AddObjectToObject(st, "Condition");
    cJSON *se = cJSON_AddObjectToObject(cond, "StringEquals");
    cJSON_AddStringToObject(se, "sts:ExternalId", ext);
    cJSON_AddItemToArray(stmts, st);
    return doc;
}

static void onboarding(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!req->auth.org_id[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST", "an organization is required (X-Org-ID)");
        return;
    }
    char acct[16], ext[128];
    if (account_id(w, acct, resp) < 0)
        return;
    if (external_id(w, req->auth.org_id, ext, sizeof(ext), resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "aurora_account_id", acct);
    cJSON_AddStringToObject(o, "external_id", ext);
    cJSON_AddItemToObject(o, "trust_policy", trust_policy(acct, ext));
    cJSON_AddStringToObject(o, "role_name", "AuroraRole");
    cJSON_AddStringToObject(o, "region", region_of(w->cfg));
    http_resp_json(resp, 200, o);
}

static void connect_role(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *arn = api_json_str(body, "role_arn");
    const char *region = api_json_str(body, "region");
    char acct[13], err[160], ext[128], assumed[512] = "";
    aws_creds cr;
    memset(&cr, 0, sizeof(cr));
    if (api_check_text(arn, "role_arn", 1, 2048, err, sizeof(err)) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", err);
        goto out;
    }
    if (!role_arn_valid(arn, acct)) {
        http_resp_error(resp, 400, "AWS_INVALID_ROLE_ARN",
                        "role_arn must look like arn:aws:iam::<12-digit account id>:role/<name>");
        goto out;
    }
    if (region && !region_valid(region)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "region must look like us-east-1");
        goto out;
    }
    if (external_id(w, req->auth.org_id, ext, sizeof(ext), resp) < 0)
        goto out;
    if (assume_role(w, req->auth.user_id, arn, ext, AWS_SESSION_MIN, &cr, assumed,
                    sizeof(assumed), resp) < 0)
        goto out;

    if (strlen(arn) >= sizeof(((store_connector *)0)->account)) {
        http_resp_error(resp, 400, "AWS_INVALID_ROLE_ARN", "role_arn is longer than %zu characters",
                        sizeof(((store_connector *)0)->account) - 1);
        goto out;
    }
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "role_arn", arn);
    cJSON_AddStringToObject(md, "account_id", acct);
    cJSON_AddStringToObject(md, "region", region ? region : region_of(w->cfg));
    cJSON_AddStringToObject(md, "external_id_setting", AWS_EXTERNAL_ID_KEY);
    if (assumed[0])
        cJSON_AddStringToObject(md, "assumed_role_arn", assumed);
    /* Nothing secret to store: the row is the connection. */
    if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, AWS_ID, arn, NULL, 0, md,
                          resp) < 0) {
        cJSON_Delete(md);
        goto out;
    }
    int64_t now = (int64_t)time(NULL);
    /* The proof-of-access credentials serve the first command too. */
    char key[2400];
    cache_forget(req->auth.org_id, req->auth.user_id);
    cache_key(key, sizeof(key), req->auth.org_id, req->auth.user_id, arn);
    cache_put(key, &cr, now);
    log_info("aws: user %s of %s connected role in account %s", req->auth.user_id,
             req->auth.org_id, acct);

    static const char *const internal[] = { "external_id_setting", NULL };
    kit_connected_reply(resp, AWS_ID, md, internal);
    cJSON_Delete(md);
out:
    creds_wipe(&cr);
    cJSON_Delete(body);
}

/* After DELETE /api/connectors/aws: the role's cached credentials go too. */
static void aws_disconnected(worker_ctx *w, const auth_ctx *who)
{
    (void)w;
    cache_forget(who->org_id, who->user_id);
}

static void aws_register(void)
{
    router_add_outbound(HTTP_GET, "/aws/onboarding", ROUTE_AUTH_API, onboarding);
    router_add_outbound(HTTP_POST, "/aws/connect", ROUTE_AUTH_API, connect_role);
}

/* ---- status ---------------------------------------------------------------------- */

static void aws_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    static const char *const keys[] = { "account_id", "region", "assumed_role_arn", NULL };
    store_connector c;
    cJSON *md;
    if (!kit_status(w, who, AWS_ID, keys, out, &c, &md))
        return;
    cJSON_Delete(md);
    store_connector_free(&c);
}

/* ---- cloud_exec -------------------------------------------------------------------- */

/* What an aws command may select, and how each is checked (cloud_argv.h
 * reads the argv like aws-cli's argparse, which accepts unambiguous
 * prefixes: `--prof x` is --profile, `--endpoint x` is --endpoint-url —
 * checked with aws-cli 1.45; an abbreviation of these is refused):
 *
 *   --profile           refused: the connected role is the only identity (a
 *                       profile could name other keys or a credential_process)
 *   --endpoint-url      only a URL listed in AWS_CLI_ENDPOINT_URLS (exactly,
 *                       a trailing '/' aside), default none: the signed
 *                       requests and their answers would go elsewhere
 *   sts assume-role, assume-role-with-saml, assume-role-with-web-identity,
 *   assume-root, get-session-token, get-federation-token
 *                       refused: they mint other credentials and print them
 *   --region            free; the account is the role's whatever the region
 * The request's `account` must be the role's account.  ARNs of other
 * accounts' resources in arguments are the resource owners' to authorise. */
static const cloud_flag aws_flags[] = {
    { .name = "--profile", .kind = CLOUD_FLAG_REFUSE,
      .why = "the connected IAM role is the only identity commands run as" },
    { .name = "--endpoint-url", .kind = CLOUD_FLAG_SELECT, .dest = "endpoint URL" },
    /* aws-cli's global flags that take a value */
    { .name = "--region" }, { .name = "--output" }, { .name = "--query" },
    { .name = "--ca-bundle" }, { .name = "--cli-read-timeout" },
    { .name = "--cli-connect-timeout" }, { .name = "--color" },
    { .name = "--cli-binary-format" }, { .name = "--cli-input-json" },
    { .name = "--cli-input-yaml" },
    { .name = NULL },
};
#define WHY_AWS_MINT "it mints other credentials and prints them; the connector hands out the role's"
static const cloud_cmd aws_cmds[] = {
    { .words = "sts assume-role", .why = WHY_AWS_MINT },
    { .words = "sts assume-role-with-saml", .why = WHY_AWS_MINT },
    { .words = "sts assume-role-with-web-identity", .why = WHY_AWS_MINT },
    { .words = "sts assume-root", .why = WHY_AWS_MINT },
    { .words = "sts get-session-token", .why = WHY_AWS_MINT },
    { .words = "sts get-federation-token", .why = WHY_AWS_MINT },
    { .words = NULL },
};
static const cloud_cli aws_argv = {
    .program = "aws", .flags = aws_flags, .cmds = aws_cmds, .abbrev = 1,
};

/* 1 if url is listed in AWS_CLI_ENDPOINT_URLS (comma-separated). */
static int endpoint_allowed(const worker_ctx *w, const char *url)
{
    const char *list = server_setting(w->cfg, "AWS_CLI_ENDPOINT_URLS");
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/')
        ul--;
    for (const char *p = list; p && *p;) {
        p += strspn(p, ", ");
        size_t n = strcspn(p, ", ");
        size_t m = n;
        while (m > 0 && p[m - 1] == '/')
            m--;
        if (m && m == ul && !strncmp(p, url, m))
            return 1;
        p += n;
    }
    return 0;
}

static int aws_check_selectors(const worker_ctx *w, const cloud_argv_result *scan,
                               http_response *resp)
{
    for (int i = 0; i < scan->n; i++) {
        const cloud_selector *s = &scan->sel[i];
        if (!strcmp(s->dest, "endpoint URL") && !endpoint_allowed(w, s->value)) {
            char shown[80];
            cloud_argv_shown(s->value, shown, sizeof(shown));
            http_resp_error(resp, 403, "AWS_ENDPOINT_NOT_ALLOWED",
                            "--endpoint-url %s is not allowed: the role's signed requests go only "
                            "to AWS (an operator may list private endpoints in "
                            "AWS_CLI_ENDPOINT_URLS)",
                            shown);
            return -1;
        }
    }
    return 0;
}

static int aws_prepare(worker_ctx *w, const auth_ctx *who, const char *target,
                       const cloud_argv_result *scan, argv_t *argv, cloud_creds *out,
                       http_response *resp)
{
    (void)argv;
    if (aws_check_selectors(w, scan, resp) < 0)
        return -1;
    store_connector c;
    cJSON *md;
    if (kit_row_load(w, who, AWS_ID, &c, &md,
                     "aws is not connected for this user: connect an IAM role first "
                     "(POST /aws/connect)",
                     resp) < 0)
        return -1;
    char acct[13] = "", region[40] = "", ext[128];
    int ret = -1;
    aws_creds cr;
    memset(&cr, 0, sizeof(cr));
    if (!role_arn_valid(c.account, acct)) {
        http_resp_error(resp, 500, "AWS_CONNECTION_CORRUPT",
                        "the stored AWS connection is invalid; connect the role again");
        goto out;
    }
    const char *r = api_json_str(md, "region");
    snprintf(region, sizeof(region), "%s", r && region_valid(r) ? r : region_of(w->cfg));
    if (target && *target && strcmp(target, acct) != 0) {
        http_resp_error(resp, 403, "AWS_ACCOUNT_NOT_CONNECTED",
                        "AWS account %.64s is not connected: the connected role (%s) belongs to "
                        "account %s", target, c.account, acct);
        goto out;
    }
    int64_t now = (int64_t)time(NULL);
    char key[2400];
    cache_key(key, sizeof(key), who->org_id, who->user_id, c.account);
    /* Credentials that expire while the command may still run are not
     * handed out; a new session covers it, and a little more for reuse. */
    int64_t need = (int64_t)(out->lifetime > 0 ? out->lifetime : 0) + AWS_SESSION_SLACK;
    int hit = cache_get(key, now, &cr);
    if (hit && cr.expires_at - now < need) {
        creds_wipe(&cr);
        hit = 0;
    }
    if (!hit) {
        if (external_id(w, who->org_id, ext, sizeof(ext), resp) < 0)
            goto out;
        int64_t want = need + AWS_SESSION_REUSE;
        if (assume_role(w, who->user_id, c.account, ext,
                        want > AWS_SESSION_MAX ? AWS_SESSION_MAX : (int)want, &cr, NULL, 0,
                        resp) < 0)
            goto out;
        cache_put(key, &cr, now);
    }
    const char *env[] = { "AWS_ACCESS_KEY_ID", cr.akid, "AWS_SECRET_ACCESS_KEY", cr.secret,
                          "AWS_SESSION_TOKEN", cr.token, "AWS_DEFAULT_REGION", region,
                          "AWS_REGION", region, "AWS_EC2_METADATA_DISABLED", "true",
                          "AWS_PAGER", "", NULL };
    if (cloud_creds_set(out, env, resp) < 0)
        goto out;
    snprintf(out->target, sizeof(out->target), "%s", acct);
    ret = 0;
out:
    creds_wipe(&cr);
    cJSON_Delete(md);
    store_connector_free(&c);
    return ret;
}

static const cloud_provider aws_cloud = {
    .program = "aws",
    .argv_rules = &aws_argv,
    .prepare = aws_prepare,
};

const connector connector_aws = {
    .id = AWS_ID,
    .name = "Amazon Web Services",
    .register_routes = aws_register,
    .status = aws_status,
    .cloud = &aws_cloud,
    .disconnected = aws_disconnected,
    .settings = aws_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
