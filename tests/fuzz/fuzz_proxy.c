/* fuzz_proxy.c — the agent's proxy settings (agent/proxy.c): HTTPS_PROXY /
 * HTTP_PROXY URLs and the NO_PROXY list come from the pod's environment and
 * decide where the tunnel (and its credentials) goes.
 *
 * Input: byte 0 selects the function; for NO_PROXY the next two bytes are the
 * port, then "host\0no_proxy".
 *
 * Invariants:
 *  - agent_proxy_parse never crashes or leaks; on success the host is
 *    non-empty and made of host characters, the port is 1..65535, the
 *    display form is exactly http://host:port (no credentials) and the
 *    credentials are user:password without control characters; on failure
 *    nothing stays allocated and the message does not depend on the
 *    credentials (so it cannot repeat them);
 *  - agent_proxy_bypassed: "*" bypasses everything; a list only gains
 *    bypasses when entries are appended; matching ignores letter case; a
 *    name bypassed by a domain entry has its subdomains bypassed too. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "proxy.h"

/* The userinfo of a URL as written ("user:pass" before the last '@' of the
 * authority), or NULL. */
static char *raw_userinfo(const char *url)
{
    const char *s = strstr(url, "://");
    s = s ? s + 3 : url;
    size_t alen = strcspn(s, "/?#");
    const char *at = NULL;
    for (const char *q = s; q < s + alen; q++)
        if (*q == '@')
            at = q;
    return at ? strndup(s, (size_t)(at - s)) : NULL;
}

/* Each letter and digit moved to its neighbour in the same class, so the
 * rewritten text is as long as before and has its punctuation and control
 * characters in the same places; percent escapes are left alone. */
static char rotate_alnum(char c)
{
    if (c >= 'a' && c <= 'z')
        return c == 'z' ? 'a' : (char)(c + 1);
    if (c >= 'A' && c <= 'Z')
        return c == 'Z' ? 'A' : (char)(c + 1);
    if (c >= '0' && c <= '9')
        return c == '9' ? '0' : (char)(c + 1);
    return c;
}

/* A failed parse's message must not depend on the credentials: parsing the
 * same URL with its userinfo's letters and digits rotated has to fail with
 * the very same text.  (Searching the message for the credentials instead
 * flags credentials that merely occur in the fixed wording, like "assword"
 * in "user:password".) */
static void check_error_ignores_credentials(const char *url, const char *err)
{
    char *other = strdup(url);
    FUZZ_CHECK(other != NULL, "out of memory");
    char *s = strstr(other, "://");
    s = s ? s + 3 : other;
    size_t alen = strcspn(s, "/?#");
    char *at = NULL;
    for (char *q = s; q < s + alen; q++)
        if (*q == '@')
            at = q;
    for (char *q = s; at && q < at; q++) {
        if (*q == '%') { /* a %XX escape stays as it is: it may spell anything */
            for (int k = 0; k < 2 && q + 1 < at; k++)
                q++;
            continue;
        }
        *q = rotate_alnum(*q);
    }
    agent_proxy p;
    char err2[200] = "";
    int rc = agent_proxy_parse(&p, other, err2, sizeof(err2));
    if (rc == 0)
        agent_proxy_free(&p);
    FUZZ_CHECK(rc != 0, "rewriting the credentials made a bad proxy URL good");
    FUZZ_CHECK(!strcmp(err, err2), "error message \"%s\" depends on the credentials (\"%s\")",
               err, err2);
    free(other);
}

static void check_parse(const char *url)
{
    agent_proxy p;
    char err[200] = "";
    char *ui = raw_userinfo(url);
    if (agent_proxy_parse(&p, url, err, sizeof(err)) == 0) {
        FUZZ_CHECK(p.use == 1, "parsed proxy not in use");
        size_t hl = strlen(p.host);
        FUZZ_CHECK(hl > 0 && hl < sizeof(p.host), "proxy host of %zu bytes", hl);
        for (size_t i = 0; i < hl; i++) {
            unsigned char c = (unsigned char)p.host[i];
            FUZZ_CHECK(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':',
                       "proxy host holds 0x%02x", c);
        }
        FUZZ_CHECK(p.port >= 1 && p.port <= 65535, "proxy port %d", p.port);
        char want[300];
        snprintf(want, sizeof(want), strchr(p.host, ':') ? "http://[%s]:%d" : "http://%s:%d",
                 p.host, p.port);
        FUZZ_CHECK(!strcmp(p.display, want), "display form \"%s\" is not \"%s\"", p.display,
                   want);
        if (p.userinfo) {
            FUZZ_CHECK(strchr(p.userinfo, ':') && p.userinfo[0] != ':',
                       "credentials without user:password");
            for (const char *c = p.userinfo; *c; c++)
                FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f,
                           "control character in credentials");
        } else {
            FUZZ_CHECK(!ui, "credentials in the URL were dropped");
        }
        agent_proxy_free(&p);
        FUZZ_CHECK(p.userinfo == NULL && p.use == 0, "agent_proxy_free left state behind");
    } else {
        FUZZ_CHECK(err[0], "agent_proxy_parse failed without a message");
        FUZZ_CHECK(p.userinfo == NULL, "failed parse kept the credentials");
        if (ui)
            check_error_ignores_credentials(url, err);
    }
    free(ui);
}

static int is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

/* A plain host name (what a domain entry can match). */
static int plain_name(const char *h)
{
    if (!*h || *h == '.' || strlen(h) > 200 || is_ip(h))
        return 0;
    for (const char *c = h; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '-'))
            return 0;
    return 1;
}

static void check_no_proxy(const char *host, const char *no_proxy, int port)
{
    int by = agent_proxy_bypassed(no_proxy, host, port);
    FUZZ_CHECK(by == 0 || by == 1, "agent_proxy_bypassed returned %d", by);
    FUZZ_CHECK(agent_proxy_bypassed(no_proxy, host, port) == by, "not deterministic");

    size_t nl = strlen(no_proxy);
    char *more = malloc(nl + 16);
    FUZZ_CHECK(more != NULL, "out of memory");
    memcpy(more, no_proxy, nl);
    memcpy(more + nl, ",*", 3);
    FUZZ_CHECK(agent_proxy_bypassed(more, host, port), "\"*\" appended did not bypass");
    memcpy(more + nl, ",x.invalid", 11);
    FUZZ_CHECK(!by || agent_proxy_bypassed(more, host, port), "appending an entry removed a bypass");
    free(more);

    char *upper = strdup(host);
    FUZZ_CHECK(upper != NULL, "out of memory");
    for (char *c = upper; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    FUZZ_CHECK(agent_proxy_bypassed(no_proxy, upper, port) == by,
               "letter case of host \"%s\" changed the decision", host);
    free(upper);

    if (by && plain_name(host) && !is_ip(host)) {
        size_t hl = strlen(host);
        char *sub = malloc(hl + 8);
        FUZZ_CHECK(sub != NULL, "out of memory");
        memcpy(sub, "sub.", 4);
        memcpy(sub + 4, host, hl + 1);
        if (!is_ip(sub))
            FUZZ_CHECK(agent_proxy_bypassed(no_proxy, sub, port),
                       "%s bypassed but its subdomain %s is not", host, sub);
        free(sub);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        char *url = fuzz_strndup(data + 1, size - 1);
        check_parse(url);
        free(url);
        return 0;
    }
    if (size < 3)
        return 0;
    int port = (data[1] << 8 | data[2]) % 65536;
    char *parts[2];
    char *owned = NULL;
    int n = fuzz_split(data + 3, size - 3, parts, 2, &owned);
    check_no_proxy(parts[0], n > 1 ? parts[1] : "", port);
    free(owned);
    return 0;
}
