/* proxy.c — HTTPS_PROXY / HTTP_PROXY / NO_PROXY (see proxy.h). */
#include "proxy.h"
#include "secret.h"
#include "crypto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_USERINFO 90 /* libwebsockets keeps at most this much (base64 in 128 bytes) */

void agent_proxy_free(agent_proxy *p)
{
    secret_free(p->userinfo);
    memset(p, 0, sizeof(*p));
}

/* percent-decodes [s, s+n) into a new string; NULL on bad escapes / NUL / OOM */
static char *pct_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            o[k++] = s[i];
            continue;
        }
        int a = i + 2 < n ? crypto_hex_digit((unsigned char)s[i + 1]) : -1;
        int b = i + 2 < n ? crypto_hex_digit((unsigned char)s[i + 2]) : -1;
        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
            o[k] = '\0';
            secret_free(o);
            return NULL;
        }
        o[k++] = (char)(a * 16 + b);
        i += 2;
    }
    o[k] = '\0';
    return o;
}

int agent_proxy_parse(agent_proxy *p, const char *url, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    char trimmed[1024];
    const char *s = url;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t tl = strlen(s);
    while (tl && (s[tl - 1] == ' ' || s[tl - 1] == '\t' || s[tl - 1] == '\r' ||
                  s[tl - 1] == '\n'))
        tl--;
    if (tl >= sizeof(trimmed)) {
        snprintf(err, errlen, "proxy URL too long");
        return -1;
    }
    memcpy(trimmed, s, tl);
    trimmed[tl] = '\0';
    s = trimmed;
    const char *sep = strstr(s, "://");
    if (sep) {
        size_t sl = (size_t)(sep - s);
        if (!(sl == 4 && !strncasecmp(s, "http", 4))) {
            snprintf(err, errlen, "proxy URL scheme %.*s:// is not supported (use http://)",
                     (int)(sl < 16 ? sl : 16), s);
            return -1;
        }
        s = sep + 3;
    }
    /* authority ends at '/', '?', '#' or the end */
    size_t alen = strcspn(s, "/?#");
    const char *auth_end = s + alen;
    const char *at = NULL;
    for (const char *q = s; q < auth_end; q++)
        if (*q == '@')
            at = q; /* the last '@' separates userinfo from the host */
    const char *hp = s;
    if (at) {
        size_t ul = (size_t)(at - s);
        p->userinfo = pct_decode(s, ul);
        if (!p->userinfo) {
            snprintf(err, errlen, "proxy URL: malformed credentials");
            return -1;
        }
        if (strlen(p->userinfo) > MAX_USERINFO || !strchr(p->userinfo, ':') ||
            p->userinfo[0] == ':') {
            int too_long = strlen(p->userinfo) > MAX_USERINFO;
            agent_proxy_free(p);
            snprintf(err, errlen, too_long ? "proxy URL: credentials longer than %d characters"
                                           : "proxy URL: credentials must be user:password",
                     MAX_USERINFO);
            return -1;
        }
        for (const char *q = p->userinfo; *q; q++) {
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                agent_proxy_free(p);
                snprintf(err, errlen, "proxy URL: control characters in credentials");
                return -1;
            }
        }
        hp = at + 1;
    }
    const char *host_s, *host_e, *rest;
    if (*hp == '[') {
        host_s = hp + 1;
        host_e = memchr(host_s, ']', (size_t)(auth_end - host_s));
        if (!host_e) {
            agent_proxy_free(p);
            snprintf(err, errlen, "proxy URL: unterminated [IPv6] host");
            return -1;
        }
        rest = host_e + 1;
    } else {
        host_s = hp;
        host_e = memchr(hp, ':', (size_t)(auth_end - hp));
        if (!host_e)
            host_e = auth_end;
        rest = host_e;
    }
    size_t hl = (size_t)(host_e - host_s);
    if (hl == 0 || hl >= sizeof(p->host)) {
        agent_proxy_free(p);
        snprintf(err, errlen, "proxy URL: missing or too long host");
        return -1;
    }
    memcpy(p->host, host_s, hl);
    p->host[hl] = '\0';
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)p->host[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':')) {
            agent_proxy_free(p);
            snprintf(err, errlen, "proxy URL: invalid character in host");
            return -1;
        }
    }
    p->port = 80;
    if (rest < auth_end) {
        if (*rest != ':' || rest + 1 == auth_end) {
            agent_proxy_free(p);
            snprintf(err, errlen, "proxy URL: invalid port");
            return -1;
        }
        long port = 0;
        for (const char *q = rest + 1; q < auth_end; q++) {
            if (!isdigit((unsigned char)*q) || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535) {
            agent_proxy_free(p);
            snprintf(err, errlen, "proxy URL: invalid port");
            return -1;
        }
        p->port = (int)port;
    }
    snprintf(p->display, sizeof(p->display), strchr(p->host, ':') ? "http://[%s]:%d"
                                                                   : "http://%s:%d",
             p->host, p->port);
    p->use = 1;
    memset(trimmed, 0, sizeof(trimmed));
    return 0;
}

/* ---- NO_PROXY ---------------------------------------------------------------- */

static int parse_ip(const char *s, unsigned char *bin, int *fam)
{
    if (inet_pton(AF_INET, s, bin) == 1) {
        *fam = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, s, bin) == 1) {
        *fam = AF_INET6;
        return 1;
    }
    return 0;
}

static int in_cidr(const unsigned char *ip, int fam, const char *cidr)
{
    char net[64];
    const char *slash = strchr(cidr, '/');
    size_t nl = (size_t)(slash - cidr);
    if (nl >= sizeof(net))
        return 0;
    memcpy(net, cidr, nl);
    net[nl] = '\0';
    unsigned char nb[16];
    int nf;
    if (!parse_ip(net, nb, &nf) || nf != fam)
        return 0;
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    int max = fam == AF_INET ? 32 : 128;
    if (*end || end == slash + 1 || bits < 0 || bits > max)
        return 0;
    for (long b = 0; b < bits; b++) {
        int mask = 0x80 >> (b % 8);
        if ((ip[b / 8] & mask) != (nb[b / 8] & mask))
            return 0;
    }
    return 1;
}

static int entry_matches(const char *e, const char *host, int port)
{
    char ent[300];
    snprintf(ent, sizeof(ent), "%s", e);
    if (!strcmp(ent, "*"))
        return 1;
    /* split an optional :port ("[v6]:port", "host:port"; a bare IPv6 has several ':') */
    int eport = 0;
    char *h = ent;
    if (ent[0] == '[') {
        char *rb = strchr(ent, ']');
        if (!rb)
            return 0;
        *rb = '\0';
        h = ent + 1;
        if (rb[1] == ':')
            eport = atoi(rb + 2);
    } else {
        char *c1 = strchr(ent, ':');
        if (c1 && !strchr(c1 + 1, ':')) {
            *c1 = '\0';
            eport = atoi(c1 + 1);
        }
    }
    if (eport && eport != port)
        return 0;
    unsigned char hb[16];
    int hf;
    if (parse_ip(host, hb, &hf)) {
        if (strchr(h, '/'))
            return in_cidr(hb, hf, h);
        unsigned char eb[16];
        int ef;
        return parse_ip(h, eb, &ef) && ef == hf &&
               !memcmp(eb, hb, hf == AF_INET ? 4 : 16);
    }
    /* domain: "example.com", ".example.com", "*.example.com" */
    if (!strncmp(h, "*.", 2))
        h++;
    if (*h == '.')
        h++;
    size_t el = strlen(h);
    while (el && h[el - 1] == '.')
        h[--el] = '\0';
    if (!el)
        return 0;
    size_t hl = strlen(host);
    while (hl && host[hl - 1] == '.')
        hl--;
    if (hl == el && !strncasecmp(host, h, el))
        return 1;
    return hl > el && host[hl - el - 1] == '.' && !strncasecmp(host + hl - el, h, el);
}

int agent_proxy_bypassed(const char *no_proxy, const char *host, int port)
{
    if (!no_proxy || !host)
        return 0;
    const char *p = no_proxy;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if (e > p) {
            char ent[300];
            size_t n = (size_t)(e - p);
            if (n < sizeof(ent)) {
                memcpy(ent, p, n);
                ent[n] = '\0';
                if (entry_matches(ent, host, port))
                    return 1;
            }
        }
        p = e;
    }
    return 0;
}

static const char *env_first(const char *const *names, const char **which)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            *which = names[i];
            return v;
        }
    }
    return NULL;
}

int agent_proxy_from_env(agent_proxy *p, const char *target_host, int target_port, int secure,
                         char *err, size_t errlen)
{
    static const char *const https_vars[] = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                             "http_proxy", NULL};
    static const char *const http_vars[] = {"HTTP_PROXY", "http_proxy", NULL};
    static const char *const no_vars[] = {"NO_PROXY", "no_proxy", NULL};
    memset(p, 0, sizeof(*p));
    const char *which = NULL, *nwhich = NULL;
    const char *url = env_first(secure ? https_vars : http_vars, &which);
    if (!url)
        return 0;
    const char *np = env_first(no_vars, &nwhich);
    if (np && agent_proxy_bypassed(np, target_host, target_port)) {
        p->bypass = nwhich;
        p->source = which;
        return 0;
    }
    char e[200];
    if (agent_proxy_parse(p, url, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "%s: %s", which, e);
        return -1;
    }
    p->source = which;
    return 0;
}
