/* console_cookie.c — cookie, CSRF, Origin and expiry rules of console
 * sessions (console_cookie.h). */
#include "console_cookie.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

const char *console_cookie_name(int secure)
{
    return secure ? CONSOLE_COOKIE_NAME_SECURE : CONSOLE_COOKIE_NAME;
}

int console_cookie_find(const char *header, const char *name, char *out, size_t cap,
                        const char **why)
{
    const size_t nl = strlen(name);
    const char *ignored;
    if (!why)
        why = &ignored;
    *why = NULL;
    if (cap)
        out[0] = '\0';
    if (!header)
        return CONSOLE_COOKIE_ABSENT;
    int found = 0;
    /* RFC 6265 5.4: "name=value" pairs separated by ';' (and white space).
     * A pair without '=' or with another name is someone else's. */
    for (const char *p = header; *p;) {
        while (*p == ';' || is_ows(*p))
            p++;
        const char *start = p;
        while (*p && *p != ';')
            p++;
        const char *end = p;
        while (end > start && is_ows(end[-1]))
            end--;
        const char *eq = memchr(start, '=', (size_t)(end - start));
        if (!eq)
            continue;
        const char *ne = eq;
        while (ne > start && is_ows(ne[-1]))
            ne--;
        if ((size_t)(ne - start) != nl || memcmp(start, name, nl) != 0)
            continue;
        const char *v = eq + 1;
        while (v < end && is_ows(*v))
            v++;
        size_t vl = (size_t)(end - v);
        if (found) {
            *why = "the cookie is sent more than once";
            return CONSOLE_COOKIE_MALFORMED;
        }
        found = 1;
        if (vl != CONSOLE_SESSION_ID_LEN) {
            *why = "the cookie is not one of ours (wrong length)";
            return CONSOLE_COOKIE_MALFORMED;
        }
        for (size_t i = 0; i < vl; i++)
            if (!is_b64url(v[i])) {
                *why = "the cookie is not one of ours (bad character)";
                return CONSOLE_COOKIE_MALFORMED;
            }
        if (cap <= vl) {
            *why = "no room for the cookie's value";
            return CONSOLE_COOKIE_MALFORMED;
        }
        memcpy(out, v, vl);
        out[vl] = '\0';
    }
    return found ? CONSOLE_COOKIE_FOUND : CONSOLE_COOKIE_ABSENT;
}

int console_cookie_session(const char *header, int secure, char *out, size_t cap,
                           const char **why)
{
    return console_cookie_find(header, console_cookie_name(secure), out, cap, why);
}

int console_random_token(char out[CONSOLE_SESSION_ID_LEN + 1])
{
    unsigned char raw[32];
    if (crypto_random(raw, sizeof(raw)) != 0)
        return -1;
    size_t n = crypto_base64url(raw, sizeof(raw), out, CONSOLE_SESSION_ID_LEN + 2);
    explicit_bzero(raw, sizeof(raw));
    return n == CONSOLE_SESSION_ID_LEN ? 0 : -1;
}

int console_set_cookie(char *out, size_t cap, const char *value, int64_t max_age, int secure)
{
    int n = snprintf(out, cap, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
                     console_cookie_name(secure), value ? value : "",
                     (long long)(value && max_age > 0 ? max_age : 0), secure ? "; Secure" : "");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int console_csrf_matches(const char *sent, const char *want)
{
    if (!sent || !want || !*sent || !*want)
        return 0;
    return crypto_secret_equal(sent, strlen(sent), want, strlen(want));
}

int console_url_origin(const char *url, char *out, size_t cap)
{
    if (!url)
        return -1;
    size_t skip;
    if (!strncasecmp(url, "https://", 8))
        skip = 8;
    else if (!strncasecmp(url, "http://", 7))
        skip = 7;
    else
        return -1;
    const char *host = url + skip;
    size_t hl = strcspn(host, "/?#");
    if (hl == 0 || skip + hl >= cap)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-:[]", host[i]))
            return -1;
    for (size_t i = 0; i < skip + hl; i++)
        out[i] = (char)tolower((unsigned char)url[i]);
    out[skip + hl] = '\0';
    return 0;
}

int console_origin_allowed(const char *origin, const char *const *allowed, size_t n)
{
    char o[300];
    if (!origin || console_url_origin(origin, o, sizeof(o)) < 0 || strlen(o) != strlen(origin))
        return 0; /* "null", a path after the host, or not http(s) */
    for (size_t i = 0; i < n; i++)
        if (allowed[i] && !strcmp(o, allowed[i]))
            return 1;
    return 0;
}

void console_peer_bucket(const char *peer, char *out, size_t cap)
{
    if (!cap)
        return;
    unsigned char a6[16];
    struct in_addr a4;
    const char *p = peer ? peer : "";
    if (!strncasecmp(p, "::ffff:", 7) && inet_pton(AF_INET, p + 7, &a4) == 1) {
        snprintf(out, cap, "%s", p + 7);
        return;
    }
    char text[INET6_ADDRSTRLEN];
    if (strchr(p, ':') && inet_pton(AF_INET6, p, a6) == 1) {
        memset(a6 + 8, 0, 8);
        if (inet_ntop(AF_INET6, a6, text, sizeof(text))) {
            snprintf(out, cap, "%s/64", text);
            return;
        }
    }
    snprintf(out, cap, "%s", p);
}

int64_t console_session_deadline(int64_t expires_at, int64_t last_seen, int64_t idle)
{
    if (idle <= 0)
        return expires_at;
    int64_t idle_end = last_seen > INT64_MAX - idle ? INT64_MAX : last_seen + idle;
    return idle_end < expires_at ? idle_end : expires_at;
}

int console_session_alive(int64_t expires_at, int64_t last_seen, int64_t idle, int64_t now)
{
    return now < console_session_deadline(expires_at, last_seen, idle);
}
