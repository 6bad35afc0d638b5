/* kit_call.c — provider calls for connectors: retries with backoff honouring
 * the provider's wait hints, ETag conditional GETs, pagination that never
 * leaves the configured base URL.  See kit_call.h. */
#include "kit_call.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* Response headers the kit reads; a caller's extra names come after them. */
static const char *const KIT_HEADERS[] = {
    "Retry-After",      "ETag",           "Link",
    "Date",             "Content-Type",   "X-RateLimit-Remaining",
    "X-RateLimit-Reset", "RateLimit-Remaining", "RateLimit-Reset",
};
#define KIT_NHEADERS (sizeof(KIT_HEADERS) / sizeof(KIT_HEADERS[0]))

#define KIT_URL_MAX 8192    /* a next-page URL longer than this is refused */
#define KIT_CURSOR_MAX 2048 /* a longer cursor is refused */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- parsers ------------------------------------------------------------------ */

static int take_lit(const char **p, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n))
        return 0;
    *p += n;
    return 1;
}

/* exactly n digits */
static int take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return 0;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

static int take_word(const char **p, const char *const *words, int nwords)
{
    for (int i = 0; i < nwords; i++)
        if (take_lit(p, words[i]))
            return i;
    return -1;
}

static const char *const MONTHS[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const DAYS[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const DAYS_LONG[] = { "Monday", "Tuesday",  "Wednesday", "Thursday",
                                         "Friday", "Saturday", "Sunday" };

static int take_time(const char **p, struct tm *tm)
{
    return take_digits(p, 2, &tm->tm_hour) && take_lit(p, ":") &&
           take_digits(p, 2, &tm->tm_min) && take_lit(p, ":") && take_digits(p, 2, &tm->tm_sec);
}

/* RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms
 * a recipient must accept. */
time_t kit_http_date(const char *v)
{
    if (!v)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = v;
    int ok = 0;
    if (take_word(&p, DAYS_LONG, 7) >= 0) { /* Sunday, 06-Nov-94 08:49:37 GMT */
        int yy = 0;
        ok = take_lit(&p, ", ") && take_digits(&p, 2, &tm.tm_mday) && take_lit(&p, "-") &&
             (tm.tm_mon = take_word(&p, MONTHS, 12)) >= 0 && take_lit(&p, "-") &&
             take_digits(&p, 2, &yy) && take_lit(&p, " ") && take_time(&p, &tm) &&
             take_lit(&p, " GMT") && !*p;
        /* two-digit years: the most recent past year with those digits
         * (RFC 9110 says >50 years ahead means the past; 1970 is the floor) */
        tm.tm_year = yy < 70 ? yy + 100 : yy;
    } else if (take_word(&p, DAYS, 7) >= 0) {
        if (take_lit(&p, ", ")) { /* Sun, 06 Nov 1994 08:49:37 GMT */
            int year = 0;
            ok = take_digits(&p, 2, &tm.tm_mday) && take_lit(&p, " ") &&
                 (tm.tm_mon = take_word(&p, MONTHS, 12)) >= 0 && take_lit(&p, " ") &&
                 take_digits(&p, 4, &year) && take_lit(&p, " ") && take_time(&p, &tm) &&
                 take_lit(&p, " GMT") && !*p;
            tm.tm_year = year - 1900;
        } else if (take_lit(&p, " ")) { /* Sun Nov  6 08:49:37 1994 */
            int year = 0;
            ok = (tm.tm_mon = take_word(&p, MONTHS, 12)) >= 0 && take_lit(&p, " ");
            if (ok && *p == ' ') {
                p++;
                ok = take_digits(&p, 1, &tm.tm_mday);
            } else if (ok) {
                ok = take_digits(&p, 2, &tm.tm_mday);
            }
            ok = ok && take_lit(&p, " ") && take_time(&p, &tm) && take_lit(&p, " ") &&
                 take_digits(&p, 4, &year) && !*p;
            tm.tm_year = year - 1900;
        }
    }
    if (!ok || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60 || tm.tm_year < 70)
        return -1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : t;
}

/* Leading and trailing blanks off, into out (cap bytes); 0 or -1 if too long. */
static int trimmed(const char *v, char *out, size_t cap)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}

/* Non-negative decimal integer, digits only (no sign, no blanks); -1 if not.
 * Values beyond `cap` are `cap`. */
static long digits_value(const char *s, long cap)
{
    if (!*s)
        return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        if (v <= cap)
            v = v * 10 + (*p - '0');
    }
    return v > cap ? cap : v;
}

static long clamp_wait(long long s)
{
    return s < 0 ? 0 : s > KIT_WAIT_CAP_S ? KIT_WAIT_CAP_S : (long)s;
}

long kit_retry_after_s(const char *value, time_t now)
{
    char v[64];
    if (!value || trimmed(value, v, sizeof(v)) < 0 || !*v)
        return -1;
    if (isdigit((unsigned char)v[0]))
        return digits_value(v, KIT_WAIT_CAP_S);
    time_t t = kit_http_date(v);
    return t < 0 ? -1 : clamp_wait((long long)t - (long long)now);
}

/* A header's value as a non-negative integer, -1 when absent or not one. */
static long header_number(const http_client_resp *r, const char *name, long cap)
{
    const char *h = http_client_header(r, name);
    char v[32];
    if (!h || trimmed(h, v, sizeof(v)) < 0)
        return -1;
    return digits_value(v, cap);
}

#define EPOCH_FLOOR 1000000000L /* 2001-09-09: smaller reset values are delta seconds */

/* Seconds until the limit resets per X-RateLimit-Reset or RateLimit-Reset,
 * whatever the remaining count; -1 when neither is usable. */
static long reset_in_s(const http_client_resp *r, time_t now)
{
    long x = header_number(r, "X-RateLimit-Reset", 0x7fffffffL);
    if (x >= 0)
        return x < EPOCH_FLOOR ? clamp_wait(x) : clamp_wait((long long)x - (long long)now);
    long d = header_number(r, "RateLimit-Reset", KIT_WAIT_CAP_S);
    return d >= 0 ? d : -1;
}

long kit_ratelimit_reset_s(const http_client_resp *r, time_t now)
{
    if (header_number(r, "X-RateLimit-Remaining", 0x7fffffffL) == 0 &&
        header_number(r, "X-RateLimit-Reset", 0x7fffffffL) >= 0)
        return reset_in_s(r, now);
    long d = header_number(r, "RateLimit-Reset", KIT_WAIT_CAP_S);
    if (d >= 0 && (header_number(r, "RateLimit-Remaining", 0x7fffffffL) == 0 || r->status == 429))
        return d;
    return -1;
}

/* "now" for the provider's wait hints: its Date header when it sent one (its
 * reset times are on its clock), else ours. */
static time_t provider_now(const http_client_resp *r)
{
    time_t d = kit_http_date(http_client_header(r, "Date"));
    return d >= 0 ? d : time(NULL);
}

/* ---- Link header (RFC 8288) ----------------------------------------------------- */

static int is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ows(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

/* A token or quoted-string (escapes undone) into out; 0 or -1. */
static int take_param_value(const char **p, char *out, size_t cap)
{
    size_t k = 0;
    if (**p == '"') {
        (*p)++;
        for (;;) {
            char c = **p;
            if (!c)
                return -1; /* unterminated */
            (*p)++;
            if (c == '"')
                break;
            if (c == '\\') {
                c = **p;
                if (!c)
                    return -1;
                (*p)++;
            }
            if (k + 1 >= cap)
                return -1;
            out[k++] = c;
        }
    } else {
        while (is_tchar((unsigned char)**p)) {
            if (k + 1 >= cap)
                return -1;
            out[k++] = *(*p)++;
        }
        if (!k)
            return -1;
    }
    out[k] = '\0';
    return 0;
}

/* 1 if the space-separated relation list names `rel` (case-insensitive). */
static int rel_has(const char *list, const char *rel)
{
    size_t n = strlen(rel);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && !strncasecmp(p, rel, n))
            return 1;
        p = e;
    }
    return 0;
}

/* target resolved against context (curl's reference resolution) into out. */
static int resolve_url(const char *target, size_t tlen, const char *context, char *out, size_t cap)
{
    char *t = strndup(target, tlen);
    if (!t)
        return -1;
    int rc = -1;
    CURLU *u = curl_url();
    char *full = NULL;
    if (u && (!context || curl_url_set(u, CURLUPART_URL, context, 0) == CURLUE_OK) &&
        curl_url_set(u, CURLUPART_URL, t, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK && strlen(full) < cap &&
        http_client_url_ok(full, 0)) {
        memcpy(out, full, strlen(full) + 1);
        rc = 0;
    }
    curl_free(full);
    curl_url_cleanup(u);
    free(t);
    return rc;
}

/* The rel="next" target of a Link value (not resolved): 1 with *target and
 * *tlen, 0 none, -1 malformed. */
static int link_next_target(const char *link, const char **target_out, size_t *tlen_out)
{
    if (!link)
        return 0;
    const char *p = link;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return 0;
        if (*p != '<')
            return -1;
        const char *target = ++p;
        while (*p && *p != '>')
            p++;
        if (*p != '>')
            return -1;
        size_t tlen = (size_t)(p - target);
        p++;
        int next = 0, no_results = 0;
        for (;;) {
            skip_ows(&p);
            if (*p != ';')
                break;
            p++;
            skip_ows(&p);
            char name[32], value[HTTP_CLIENT_MAX_HEADER_VALUE + 1] = "";
            size_t k = 0;
            while (is_tchar((unsigned char)*p)) {
                if (k + 1 >= sizeof(name))
                    return -1;
                name[k++] = *p++;
            }
            name[k] = '\0';
            if (!k)
                return -1;
            skip_ows(&p);
            if (*p == '=') {
                p++;
                skip_ows(&p);
                if (take_param_value(&p, value, sizeof(value)) < 0)
                    return -1;
            }
            if (!strcasecmp(name, "rel"))
                next |= rel_has(value, "next");
            else if (!strcasecmp(name, "results")) /* Sentry: is that rel="next" real */
                no_results = !strcasecmp(value, "false");
        }
        if (*p && *p != ',')
            return -1;
        if (next) {
            if (no_results)
                return 0;
            if (tlen == 0 || tlen >= KIT_URL_MAX)
                return -1;
            *target_out = target;
            *tlen_out = tlen;
            return 1;
        }
    }
}

int kit_link_next(const char *link, const char *context_url, char *out, size_t cap)
{
    const char *target = NULL;
    size_t tlen = 0;
    int r = link_next_target(link, &target, &tlen);
    if (r <= 0)
        return r;
    return resolve_url(target, tlen, context_url, out, cap) < 0 ? -1 : 1;
}

/* ---- JSON paths ------------------------------------------------------------------ */

const cJSON *kit_json_path(const cJSON *root, const char *path)
{
    if (!root || !path || !*path)
        return root;
    const cJSON *cur = root;
    const char *p = path;
    for (int depth = 0; cur && *p; depth++) {
        if (depth >= 16)
            return NULL;
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char seg[128];
        if (n == 0 || n >= sizeof(seg))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (cJSON_IsArray(cur)) {
            long idx = digits_value(seg, 1L << 20);
            cur = idx < 0 ? NULL : cJSON_GetArrayItem(cur, (int)idx);
        } else {
            cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
        }
        p += n;
        if (*p == '.' && !*++p)
            return NULL; /* trailing dot */
    }
    return cur;
}

const char *kit_json_path_string(const cJSON *root, const char *path)
{
    const cJSON *v = kit_json_path(root, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- URLs -------------------------------------------------------------------------- */

char *kit_url(const char *base, const char *path)
{
    if (!base || !path)
        return NULL;
    size_t bn = strlen(base);
    while (bn > 0 && base[bn - 1] == '/')
        bn--;
    while (*path == '/')
        path++;
    size_t pn = strlen(path);
    char *u = malloc(bn + 1 + pn + 1);
    if (!u)
        return NULL;
    memcpy(u, base, bn);
    u[bn] = '/';
    memcpy(u + bn + 1, path, pn + 1);
    if (!http_client_url_under(u, base)) {
        free(u);
        return NULL;
    }
    return u;
}

int kit_url_fmt(char *out, size_t cap, const char *base, const char *fmt, ...)
{
    size_t bn = base ? strlen(base) : 0;
    while (bn > 0 && base[bn - 1] == '/')
        bn--;
    if (!cap || bn >= cap)
        goto too_long;
    if (bn)
        memcpy(out, base, bn);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + bn, cap - bn, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - bn)
        goto too_long;
    return 0;
too_long:
    if (cap)
        out[0] = '\0';
    return -1;
}

char *kit_url_with_param(const char *url, const char *name, const char *value)
{
    if (!url || !name || !*name || !value)
        return NULL;
    size_t n = strlen(name) + 1 + strlen(value) + 1;
    char *pair = malloc(n);
    if (!pair)
        return NULL;
    snprintf(pair, n, "%s=%s", name, value);
    CURLU *u = curl_url();
    char *full = NULL, *out = NULL;
    /* URLENCODE with APPENDQUERY: everything after the first '=' is encoded */
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_QUERY, pair, CURLU_APPENDQUERY | CURLU_URLENCODE) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK)
        out = strdup(full);
    curl_free(full);
    curl_url_cleanup(u);
    free(pair);
    return out;
}

int kit_url_private(const char *url)
{
    http_client_url u;
    if (!url || http_client_url_parse(url, 0, &u) < 0)
        return 0;
    if (!strcmp(u.scheme, "https"))
        return 1;
    struct in_addr a4;
    return !strcmp(u.host, "localhost") || !strcmp(u.host, "::1") ||
           (inet_pton(AF_INET, u.host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
}

int kit_base_url_check(const char *url, int allow_http, char *err, size_t errlen)
{
    http_client_url u;
    if (!url || !*url || http_client_url_parse(url, 0, &u) < 0) {
        snprintf(err, errlen, "must be an http(s):// URL without user name or password");
        return AUR_E_INVALID;
    }
    CURLU *cu = curl_url();
    char *query = NULL, *frag = NULL;
    int extra = 1;
    if (cu && curl_url_set(cu, CURLUPART_URL, url, 0) == CURLUE_OK)
        extra = curl_url_get(cu, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
                curl_url_get(cu, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK;
    curl_free(query);
    curl_free(frag);
    curl_url_cleanup(cu);
    if (extra) {
        snprintf(err, errlen, "must not carry a query or a fragment");
        return AUR_E_INVALID;
    }
    /* credentials travel to the base: in clear only to this host, or when the
     * operator says so */
    if (!allow_http && !kit_url_private(url)) {
        snprintf(err, errlen, "must be https:// (plain http only to a loopback address)");
        return AUR_E_INVALID;
    }
    return AUR_OK;
}

/* ---- the call ------------------------------------------------------------------------ */

static int fail(kit_call_resp *resp, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(kit_call_resp *resp, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->err, sizeof(resp->err), fmt, ap);
    va_end(ap);
    return resp->code = code;
}

static int method_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)m[i]))
            return 0;
    return 1;
}

/* RFC 9110 9.2.2: sending these again has the effect of sending them once. */
static int idempotent(const char *m)
{
    static const char *const ok[] = { "GET", "HEAD", "OPTIONS", "PUT", "DELETE" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(m, ok[i]))
            return 1;
    return 0;
}

/* An entity tag safe to send back: visible ASCII, bounded. */
static int etag_ok(const char *e)
{
    size_t n = strlen(e);
    if (n == 0 || n >= KIT_ETAG_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)e[i] < 0x21 || (unsigned char)e[i] > 0x7e)
            return 0;
    return 1;
}

/* What one answer means for the loop. */
typedef enum { ANSWER_DONE, ANSWER_RETRY, ANSWER_RATE_LIMITED } answer_kind;

/* Classifies the answer in resp->http (status set); fills resp->code and the
 * rate-limit fields; *hint_s = the provider's wait (-1: none). */
static answer_kind classify(kit_call_resp *resp, int sent_etag, long *hint_s)
{
    const http_client_resp *h = &resp->http;
    long st = h->status;
    time_t now = provider_now(h);
    long ra = kit_retry_after_s(http_client_header(h, "Retry-After"), now);
    long reset = kit_ratelimit_reset_s(h, now);
    resp->status = st;
    resp->rl_remaining = header_number(h, "X-RateLimit-Remaining", 0x7fffffffL);
    if (resp->rl_remaining < 0)
        resp->rl_remaining = header_number(h, "RateLimit-Remaining", 0x7fffffffL);
    resp->rl_reset_s = reset_in_s(h, now);
    const char *et = http_client_header(h, "ETag");
    if (et && etag_ok(et))
        snprintf(resp->etag, sizeof(resp->etag), "%s", et);
    *hint_s = ra >= 0 ? ra : reset;

    if (st >= 200 && st < 300) {
        resp->code = AUR_OK;
        return ANSWER_DONE;
    }
    if (st == 304 && sent_etag) {
        resp->code = AUR_OK;
        resp->not_modified = 1;
        return ANSWER_DONE;
    }
    /* GitHub answers its primary limit with 403 + X-RateLimit-Remaining: 0
     * and its secondary limits with 403 + Retry-After. */
    if (st == 429 || (st == 403 && (ra >= 0 || reset >= 0))) {
        resp->code = AUR_E_UNAVAILABLE;
        return ANSWER_RATE_LIMITED;
    }
    if (st == 408 || st == 504) {
        resp->code = AUR_E_TIMEOUT;
        return ANSWER_RETRY;
    }
    if (st >= 500 && st != 501 && st < 600) {
        resp->code = AUR_E_UNAVAILABLE;
        return ANSWER_RETRY;
    }
    if (st == 404 || st == 410)
        resp->code = AUR_NOT_FOUND;
    else if (st == 409 || st == 412)
        resp->code = AUR_CONFLICT;
    else if (st == 401 || st == 403)
        resp->code = AUR_E_DENIED;
    else if (st == 400 || st == 405 || (st >= 413 && st <= 415) || st == 422 ||
             (st >= 300 && st < 400))
        resp->code = AUR_E_INVALID;
    else
        resp->code = AUR_E_INTERNAL;
    return ANSWER_DONE;
}

int kit_call(const kit_call_req *req, kit_call_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_s = resp->rl_remaining = resp->rl_reset_s = -1;
    const char *prov = req->provider && *req->provider ? req->provider : "provider";
    if (!req->base_url || !http_client_url_ok(req->base_url, req->https_only))
        return fail(resp, AUR_E_INVALID, "%s: the configured base URL is not a valid %s URL", prov,
                    req->https_only ? "https://" : "http(s)://");
    if (!req->url || !http_client_url_ok(req->url, req->https_only) ||
        !http_client_url_under(req->url, req->base_url))
        return fail(resp, AUR_E_INVALID, "%s: URL is not under the configured base URL", prov);
    if (!kit_url_private(req->url) && !(req->allow_http && !req->https_only))
        return fail(resp, AUR_E_INVALID,
                    "%s: the configured base URL must be https:// (credentials are never sent "
                    "in clear, except to a loopback address)", prov);
    const char *method = req->method ? req->method : req->body ? "POST" : "GET";
    if (!method_ok(method))
        return fail(resp, AUR_E_INVALID, "%s: invalid HTTP method", prov);
    char host[256] = "";
    (void)http_client_url_host(req->url, host, sizeof(host));

    /* request headers: the caller's, then If-None-Match */
    const char *headers[KIT_CALL_MAX_EXTRA_HEADERS + 3];
    size_t nh = 0;
    for (; req->headers && req->headers[nh]; nh++)
        if (nh >= KIT_CALL_MAX_EXTRA_HEADERS)
            return fail(resp, AUR_E_INVALID, "%s: too many request headers", prov);
    if (nh)
        memcpy(headers, req->headers, nh * sizeof(headers[0]));
    char inm[KIT_ETAG_MAX + 32];
    int sent_etag = req->etag && *req->etag;
    if (sent_etag) {
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            return fail(resp, AUR_E_INVALID, "%s: an ETag applies to GET and HEAD only", prov);
        if (!etag_ok(req->etag))
            return fail(resp, AUR_E_INVALID, "%s: cached ETag is malformed", prov);
        snprintf(inm, sizeof(inm), "If-None-Match: %s", req->etag);
        headers[nh++] = inm;
    }

    /* response headers to keep: the kit's, then the caller's */
    const char *capture[HTTP_CLIENT_MAX_CAPTURE + 1];
    size_t nc = 0;
    for (; nc < KIT_NHEADERS; nc++)
        capture[nc] = KIT_HEADERS[nc];
    for (size_t i = 0; req->capture && req->capture[i]; i++) {
        if (nc >= HTTP_CLIENT_MAX_CAPTURE)
            return fail(resp, AUR_E_INVALID, "%s: too many response headers to capture", prov);
        capture[nc++] = req->capture[i];
    }
    capture[nc] = NULL;
    char *bearer = NULL; /* wiped before returning, below */
    if (req->bearer && !(bearer = kit_bearer_header(req->bearer)))
        return fail(resp, AUR_E_INTERNAL, "%s: out of memory", prov);
    if (bearer)
        headers[nh++] = bearer;
    headers[nh] = NULL;

    int may_retry = idempotent(method) || req->retry_safe;
    int max = req->max_attempts > 0 ? req->max_attempts : KIT_CALL_DEFAULT_ATTEMPTS;
    if (max > KIT_CALL_MAX_ATTEMPTS)
        max = KIT_CALL_MAX_ATTEMPTS;
    long total = req->deadline_ms > 0 ? req->deadline_ms : KIT_CALL_DEFAULT_DEADLINE_MS;
    long per = req->attempt_timeout_ms > 0 ? req->attempt_timeout_ms
                                           : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
    long long deadline = now_ms() + total;

    answer_kind kind = ANSWER_DONE;
    long hint = -1;
    int transport = 0; /* the last attempt got no answer */
    for (int attempt = 1;; attempt++) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            /* only after a wait that ended at the deadline's edge */
            secret_free(bearer);
            return fail(resp, AUR_E_TIMEOUT, "%s: %s did not answer within %ld s", prov, host,
                        (total + 999) / 1000);
        }
        http_client_req hr = { .method = method,
                               .url = req->url,
                               .headers = headers,
                               .body = req->body,
                               .body_len = req->body_len,
                               .timeout_ms = per < left ? per : (long)left,
                               .cacert = req->cacert,
                               .max_response = req->max_response,
                               .https_only = req->https_only,
                               .capture = capture,
                               .aws_sigv4 = req->aws_sigv4,
                               .userpwd = req->userpwd,
                               .allow_address = req->allow_address,
                               .allow_address_ud = req->allow_address_ud };
        http_client_resp_free(&resp->http);
        resp->not_modified = 0;
        resp->etag[0] = '\0';
        resp->attempts = attempt;
        int rc = http_client_do(&hr, &resp->http);
        hint = -1;
        if (rc < 0) {
            transport = 1;
            resp->status = 0;
            resp->code = rc;
            /* a refused request or no memory: sending it again changes nothing */
            kind = rc == AUR_E_INVALID || rc == AUR_E_INTERNAL ? ANSWER_DONE : ANSWER_RETRY;
        } else {
            transport = 0;
            kind = classify(resp, sent_etag, &hint);
            if (kind == ANSWER_DONE && resp->code != AUR_OK && req->retry_if &&
                req->retry_if(&resp->http)) {
                resp->code = AUR_E_UNAVAILABLE;
                kind = ANSWER_RETRY;
            }
        }
        if (kind == ANSWER_DONE || !may_retry || attempt >= max)
            break;
        long long wait = hint >= 0 ? (long long)hint * 1000 : http_client_backoff_ms(attempt);
        if (wait >= deadline - now_ms())
            break; /* a wait past the deadline: say so now rather than sleep */
        http_client_sleep_ms((long)wait);
    }

    secret_free(bearer);
    if (hint >= 0 && kind != ANSWER_DONE)
        resp->retry_after_s = hint;
    if (resp->code == AUR_OK)
        return AUR_OK;
    if (transport)
        return fail(resp, resp->code, "%s: %s (%d attempt%s)", prov, resp->http.err,
                    resp->attempts, resp->attempts == 1 ? "" : "s");
    if (kind == ANSWER_RATE_LIMITED && hint >= 0)
        return fail(resp, resp->code,
                    "%s: rate limited, retry after %ld s (HTTP %ld from %s, %d attempt%s)", prov,
                    hint, resp->status, host, resp->attempts, resp->attempts == 1 ? "" : "s");
    if (kind == ANSWER_RATE_LIMITED)
        return fail(resp, resp->code, "%s: rate limited (HTTP %ld from %s, %d attempt%s)", prov,
                    resp->status, host, resp->attempts, resp->attempts == 1 ? "" : "s");
    if (kind == ANSWER_RETRY)
        return fail(resp, resp->code, "%s: HTTP %ld from %s (%d attempt%s)", prov, resp->status,
                    host, resp->attempts, resp->attempts == 1 ? "" : "s");
    return fail(resp, resp->code, "%s: HTTP %ld from %s", prov, resp->status, host);
}

void kit_call_resp_free(kit_call_resp *resp)
{
    if (resp)
        http_client_resp_free(&resp->http);
}

long kit_poll_delay_s(const kit_call_resp *resp, long interval_s, long calls_per_cycle)
{
    long long d = interval_s > 0 ? interval_s : 0;
    if (resp->retry_after_s > d)
        d = resp->retry_after_s;
    long need = calls_per_cycle > 0 ? calls_per_cycle : 1;
    if (resp->rl_remaining >= 0 && resp->rl_remaining < need && resp->rl_reset_s > d)
        d = resp->rl_reset_s;
    return clamp_wait(d);
}

void kit_answer_error(const kit_call_errors *e, long status, int code, const char *detail,
                      const char *what, long timeout_ms, const char *suffix, http_response *resp)
{
    const char *sep = what && *what ? ": " : "";
    what = what ? what : "";
#define OR_FAILED(c) ((c) ? (c) : e->failed)
    if (status == 0 && code == AUR_E_TIMEOUT)
        http_resp_error(resp, 504, OR_FAILED(e->timeout), "%s%s%s did not answer within %ld s",
                        what, sep, e->service, (timeout_ms + 999) / 1000);
    else if (status == 0)
        http_resp_error(resp, 502, OR_FAILED(e->unreachable), "%s%s%s is unreachable (%s)", what,
                        sep, e->service, detail ? detail : "");
    else
        http_resp_error(resp, 502, status == 401 || status == 403 ? OR_FAILED(e->denied) : e->failed,
                        "%s%s%s answered HTTP %ld%s", what, sep, e->service, status,
                        suffix ? suffix : "");
#undef OR_FAILED
}

void kit_call_error(const kit_call_errors *e, const kit_call_resp *r, const char *what,
                    long timeout_ms, const char *suffix, http_response *resp)
{
    kit_answer_error(e, r->status, r->code, r->http.err[0] ? r->http.err : r->err, what,
                     timeout_ms, suffix, resp);
}

char *kit_bearer_header(const char *token)
{
    size_t n = strlen("Authorization: Bearer ") + strlen(token) + 1;
    char *h = malloc(n);
    if (h)
        snprintf(h, n, "Authorization: Bearer %s", token);
    return h;
}

void kit_code_text(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = in; p && *p && o + 1 < cap; p++)
        if (isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-')
            out[o++] = *p;
    if (cap)
        out[o] = '\0';
}

cJSON *kit_call_json(const kit_call_resp *resp)
{
    if (!resp || !resp->http.body || !resp->http.len)
        return NULL;
    return cJSON_ParseWithLength(resp->http.body, resp->http.len);
}

/* ---- pagination ------------------------------------------------------------------- */

static int pager_fail(kit_pager *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pager_fail(kit_pager *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    p->failed = 1;
    free(p->next_url);
    p->next_url = NULL;
    return AUR_E_INVALID;
}

/* first_url + the page (NUMBER) or offset (OFFSET) `n` and the page size. */
static char *numbered_url(const kit_pager *p, long n)
{
    char num[24], lim[24];
    snprintf(num, sizeof(num), "%ld", n);
    snprintf(lim, sizeof(lim), "%d", p->cfg.limit);
    char *with_limit = p->cfg.limit_param
                           ? kit_url_with_param(p->first_url, p->cfg.limit_param, lim)
                           : strdup(p->first_url);
    if (!with_limit)
        return NULL;
    char *u = kit_url_with_param(with_limit, p->cfg.page_param, num);
    free(with_limit);
    return u;
}

int kit_pager_init(kit_pager *p, const kit_pager_cfg *cfg, const kit_call_req *first)
{
    memset(p, 0, sizeof(*p));
    p->cfg = *cfg;
    p->req = *first;
    const char *why = NULL;
    switch (cfg->style) {
    case KIT_PAGE_LINK:
        break;
    case KIT_PAGE_CURSOR:
        if (!cfg->cursor_field || !*cfg->cursor_field || !cfg->cursor_param || !*cfg->cursor_param)
            why = "a cursor pager needs cursor_field and cursor_param";
        break;
    case KIT_PAGE_BODY_URL:
        if (!cfg->cursor_field || !*cfg->cursor_field)
            why = "a body-URL pager needs cursor_field";
        break;
    case KIT_PAGE_NUMBER:
    case KIT_PAGE_OFFSET:
        if (!cfg->page_param || !*cfg->page_param || cfg->limit <= 0)
            why = "a page/offset pager needs page_param and a limit";
        break;
    default:
        why = "unknown pagination style";
    }
    if (!why && (!first->url || !first->base_url ||
                 !http_client_url_under(first->url, first->base_url)))
        why = "URL is not under the configured base URL";
    if (why) {
        snprintf(p->err, sizeof(p->err), "%s: %s",
                 first->provider ? first->provider : "provider", why);
        p->failed = 1;
        return AUR_E_INVALID;
    }
    if (p->cfg.max_pages <= 0)
        p->cfg.max_pages = KIT_PAGE_DEFAULT_MAX;
    if (p->cfg.max_pages > KIT_PAGE_HARD_MAX)
        p->cfg.max_pages = KIT_PAGE_HARD_MAX;
    if (p->cfg.style == KIT_PAGE_NUMBER)
        p->offset = cfg->first_page > 0 ? cfg->first_page : 1;
    p->first_url = strdup(first->url);
    if (p->first_url)
        p->next_url = cfg->style == KIT_PAGE_NUMBER || cfg->style == KIT_PAGE_OFFSET
                          ? numbered_url(p, p->offset)
                          : strdup(p->first_url);
    if (!p->first_url || !p->next_url) {
        snprintf(p->err, sizeof(p->err), "out of memory");
        p->failed = 1;
        return AUR_E_INTERNAL;
    }
    return AUR_OK;
}

/* A next-page reference from a provider into out: resolved against the
 * page's URL, or — relative_to_base and a path-absolute reference — joined
 * to the base (gateways such as api.atlassian.com/ex/confluence/<cloudid>
 * answer with site paths).  0 or -1. */
static int next_reference(const kit_pager *p, const char *ref, size_t len, const char *cur,
                          char *out, size_t cap)
{
    if (p->cfg.relative_to_base && len > 0 && ref[0] == '/' && (len < 2 || ref[1] != '/')) {
        char *path = strndup(ref, len);
        char *u = path ? kit_url(p->req.base_url, path) : NULL;
        int ok = u && strlen(u) < cap && http_client_url_ok(u, 0);
        if (ok)
            memcpy(out, u, strlen(u) + 1);
        free(u);
        free(path);
        return ok ? 0 : -1;
    }
    return resolve_url(ref, len, cur, out, cap);
}

/* The next URL after the page in resp, or NULL with p->next_url NULL (last
 * page) or p->failed set. */
static void pager_advance(kit_pager *p, const kit_call_resp *resp, const char *cur)
{
    const char *prov = p->req.provider ? p->req.provider : "provider";
    char *next = NULL;
    if (resp->not_modified)
        return; /* the first page is unchanged: so is what the caller has */
    if (p->cfg.style == KIT_PAGE_LINK) {
        char *buf = malloc(KIT_URL_MAX);
        if (!buf) {
            pager_fail(p, "out of memory");
            return;
        }
        const char *target = NULL;
        size_t tlen = 0;
        int r = link_next_target(http_client_header(&resp->http, "Link"), &target, &tlen);
        if (r > 0 && next_reference(p, target, tlen, cur, buf, KIT_URL_MAX) < 0)
            r = -1;
        if (r < 0) {
            free(buf);
            pager_fail(p, "%s: malformed Link header in a page answer", prov);
            return;
        }
        next = r ? buf : NULL;
        if (!r)
            free(buf);
    } else {
        cJSON *j = kit_call_json(resp);
        if (p->cfg.style == KIT_PAGE_BODY_URL) {
            const char *u = kit_json_path_string(j, p->cfg.cursor_field);
            if (u && *u) {
                char *buf = malloc(KIT_URL_MAX);
                if (!buf || strlen(u) >= KIT_URL_MAX ||
                    next_reference(p, u, strlen(u), cur, buf, KIT_URL_MAX) < 0) {
                    free(buf);
                    cJSON_Delete(j);
                    pager_fail(p, "%s: malformed next page URL in a page answer", prov);
                    return;
                }
                next = buf;
            }
        } else if (p->cfg.style == KIT_PAGE_CURSOR) {
            const char *c = kit_json_path_string(j, p->cfg.cursor_field);
            if (c && strlen(c) > KIT_CURSOR_MAX) {
                cJSON_Delete(j);
                pager_fail(p, "%s: next-page cursor longer than %d bytes", prov, KIT_CURSOR_MAX);
                return;
            }
            if (c && *c)
                next = kit_url_with_param(p->first_url, p->cfg.cursor_param, c);
            if (c && *c && !next) {
                cJSON_Delete(j);
                pager_fail(p, "out of memory");
                return;
            }
            if (next && !strcmp(next, cur)) { /* the same cursor again: it would never end */
                free(next);
                next = NULL;
            }
        } else {
            const cJSON *items = kit_json_path(j, p->cfg.items_field);
            if (!cJSON_IsArray(items)) {
                cJSON_Delete(j);
                pager_fail(p, "%s: page answer has no item list", prov);
                return;
            }
            int n = cJSON_GetArraySize(items);
            const cJSON *more = p->cfg.more_field ? kit_json_path(j, p->cfg.more_field) : NULL;
            if (n >= p->cfg.limit && !cJSON_IsFalse(more)) {
                p->offset += p->cfg.style == KIT_PAGE_NUMBER ? 1 : n;
                if (!(next = numbered_url(p, p->offset))) {
                    cJSON_Delete(j);
                    pager_fail(p, "out of memory");
                    return;
                }
            }
        }
        cJSON_Delete(j);
    }
    if (next && (strlen(next) >= KIT_URL_MAX || !http_client_url_under(next, p->req.base_url))) {
        free(next);
        pager_fail(p, "%s: next page URL is outside the configured base URL; not followed", prov);
        return;
    }
    p->next_url = next;
}

int kit_pager_next(kit_pager *p, kit_call_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_s = resp->rl_remaining = resp->rl_reset_s = -1;
    if (p->failed) {
        snprintf(resp->err, sizeof(resp->err), "%s", p->err);
        return resp->code = AUR_E_INVALID;
    }
    if (!p->next_url)
        return resp->code = AUR_NOT_FOUND;
    if (p->pages >= p->cfg.max_pages) {
        p->capped = 1;
        free(p->next_url);
        p->next_url = NULL;
        return resp->code = AUR_NOT_FOUND;
    }
    char *cur = p->next_url;
    p->next_url = NULL;
    p->req.url = cur;
    if (p->pages > 0)
        p->req.etag = NULL; /* an ETag is the first page's */
    int rc = kit_call(&p->req, resp);
    if (rc == AUR_OK) {
        p->pages++;
        pager_advance(p, resp, cur);
    }
    p->req.url = NULL;
    free(cur);
    return rc;
}

void kit_pager_free(kit_pager *p)
{
    if (!p)
        return;
    free(p->first_url);
    free(p->next_url);
    p->first_url = p->next_url = NULL;
}

int kit_pager_walk(const kit_call_req *first, const kit_pager_cfg *cfg,
                   int (*each)(const kit_call_resp *page, void *arg), void *arg, kit_walk *w)
{
    memset(w, 0, sizeof(*w));
    kit_pager p;
    if ((w->code = kit_pager_init(&p, cfg, first)) != AUR_OK) {
        /* the first URL (a configuration matter): reported as a failed call */
        w->last.code = w->code;
        snprintf(w->last.err, sizeof(w->last.err), "%s", p.err);
        kit_pager_free(&p);
        return w->code;
    }
    int rc;
    while ((rc = kit_pager_next(&p, &w->last)) == AUR_OK) {
        if (each(&w->last, arg) < 0) {
            w->bad_page = 1;
            rc = AUR_E_INVALID;
            break;
        }
        kit_call_resp_free(&w->last);
    }
    if (rc == AUR_NOT_FOUND && w->last.status == 0 && !p.failed)
        rc = AUR_OK; /* no more pages */
    if (p.failed && !w->bad_page) {
        w->refused = 1;
        snprintf(w->err, sizeof(w->err), "%s", p.err);
    }
    w->pages = p.pages;
    w->capped = p.capped;
    kit_pager_free(&p);
    return w->code = rc;
}

void kit_walk_free(kit_walk *w)
{
    if (w)
        kit_call_resp_free(&w->last);
}
