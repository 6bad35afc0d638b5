/* client_addr.c — trusted proxies and the X-Forwarded-For walk; see
 * client_addr.h. */
#include "client_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char MAPPED_PREFIX[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static int blank(char c) { return c == ' ' || c == '\t'; }

/* An IP literal of exactly len bytes into *net (prefix: the full length);
 * an IPv4-mapped IPv6 address becomes its IPv4 address, so that the two
 * spellings lws and proxies use for one client are one address.  0 or -1. */
static int parse_ip(const char *s, size_t len, client_addr_net *net)
{
    char text[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(text))
        return -1;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(net, 0, sizeof(*net));
    if (inet_pton(AF_INET, text, net->addr) == 1) {
        net->prefix = 32;
        return 0;
    }
    unsigned char a6[16];
    if (!memchr(text, ':', len) || inet_pton(AF_INET6, text, a6) != 1)
        return -1;
    if (!memcmp(a6, MAPPED_PREFIX, sizeof(MAPPED_PREFIX))) {
        memcpy(net->addr, a6 + 12, 4);
        net->prefix = 32;
        return 0;
    }
    memcpy(net->addr, a6, 16);
    net->v6 = 1;
    net->prefix = 128;
    return 0;
}

/* 1 when the first prefix bits of a and b agree. */
static int same_prefix(const unsigned char *a, const unsigned char *b, int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, (size_t)whole))
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

static int inside(const client_addr_net *net, const client_addr_net *a)
{
    return net->v6 == a->v6 && same_prefix(net->addr, a->addr, net->prefix);
}

/* One entry of the setting ("addr" or "addr/prefix", blanks trimmed). */
static int parse_entry(const char *s, size_t len, client_addr_net *net, char *err, size_t errlen)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    int written_v6 = memchr(s, ':', alen) != NULL;
    if (parse_ip(s, alen, net) < 0) {
        snprintf(err, errlen, "AURORA_TRUSTED_PROXIES: \"%.*s\" is not an IPv4 or IPv6 address "
                              "or CIDR", (int)len, s);
        return -1;
    }
    if (!slash)
        return 0;
    const char *p = slash + 1;
    size_t plen = len - alen - 1;
    int prefix = 0;
    int max = written_v6 ? 128 : 32;
    int ok = plen >= 1 && plen <= 3;
    for (size_t i = 0; ok && i < plen; i++) {
        ok = p[i] >= '0' && p[i] <= '9';
        prefix = prefix * 10 + (p[i] - '0');
    }
    if (!ok || prefix > max) {
        snprintf(err, errlen, "AURORA_TRUSTED_PROXIES: \"%.*s\": the prefix length must be "
                              "0-%d", (int)len, s, max);
        return -1;
    }
    if (written_v6 && !net->v6) { /* ::ffff:a.b.c.d/n: the IPv4 network it names */
        if (prefix < 96) {
            snprintf(err, errlen, "AURORA_TRUSTED_PROXIES: \"%.*s\": an IPv4-mapped network "
                                  "needs a prefix of at least 96 (or write it as IPv4)",
                     (int)len, s);
            return -1;
        }
        prefix -= 96;
    }
    client_addr_net base = *net;
    memset(base.addr, 0, sizeof(base.addr));
    memcpy(base.addr, net->addr, (size_t)(prefix / 8));
    if (prefix % 8)
        base.addr[prefix / 8] = (unsigned char)(net->addr[prefix / 8] & (0xff << (8 - prefix % 8)));
    if (memcmp(base.addr, net->addr, sizeof(base.addr))) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(base.v6 ? AF_INET6 : AF_INET, base.addr, text, sizeof(text));
        snprintf(err, errlen, "AURORA_TRUSTED_PROXIES: \"%.*s\" has bits set past its prefix "
                              "(the network is %s/%d)", (int)len, s, text, prefix);
        return -1;
    }
    net->prefix = prefix;
    return 0;
}

int client_addr_trust_parse(const char *spec, client_addr_trust *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!spec || !*spec)
        return 0;
    size_t cap = 1;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    out->nets = calloc(cap, sizeof(*out->nets));
    if (!out->nets) {
        snprintf(err, errlen, "AURORA_TRUSTED_PROXIES: out of memory");
        return -1;
    }
    for (const char *p = spec; *p;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && blank(*a))
            a++;
        while (b > a && blank(b[-1]))
            b--;
        if (b > a && parse_entry(a, (size_t)(b - a), &out->nets[out->n++], err, errlen) < 0) {
            client_addr_trust_free(out);
            return -1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

void client_addr_trust_free(client_addr_trust *t)
{
    free(t->nets);
    t->nets = NULL;
    t->n = 0;
}

static int trusted_net(const client_addr_trust *t, const client_addr_net *a)
{
    for (size_t i = 0; i < t->n; i++)
        if (inside(&t->nets[i], a))
            return 1;
    return 0;
}

int client_addr_trusted(const client_addr_trust *t, const char *addr)
{
    client_addr_net a;
    if (!t || !t->n || !addr || parse_ip(addr, strlen(addr), &a) < 0)
        return 0;
    return trusted_net(t, &a);
}

/* One X-Forwarded-For entry (blanks already trimmed): an IP literal, or
 * "a.b.c.d:port", "[v6]", "[v6]:port".  0 or -1. */
static int parse_xff_entry(const char *s, size_t len, client_addr_net *a)
{
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return -1;
        size_t after = len - (size_t)(close - s) - 1;
        if (after && (close[1] != ':' || after < 2 || after > 6 ||
                      strspn(close + 2, "0123456789") < after - 1))
            return -1;
        /* Brackets hold an IPv6 literal ("[1.2.3.4]" is no spelling of
         * anything), an IPv4-mapped one included: a dual-stack proxy writes
         * its IPv4 clients so, and they are the IPv4 client (parse_ip), not
         * a reason to fall back to the proxy's own address. */
        size_t inner = (size_t)(close - s) - 1;
        return memchr(s + 1, ':', inner) && parse_ip(s + 1, inner, a) == 0 ? 0 : -1;
    }
    const char *colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - s) - 1)) { /* IPv4:port */
        size_t after = len - (size_t)(colon - s) - 1;
        if (after < 1 || after > 5 || strspn(colon + 1, "0123456789") < after)
            return -1;
        return parse_ip(s, (size_t)(colon - s), a) == 0 && !a->v6 ? 0 : -1;
    }
    return parse_ip(s, len, a);
}

int client_addr_resolve(const client_addr_trust *t, const char *peer, const char *xff,
                        char *out, size_t cap)
{
    snprintf(out, cap, "%s", peer ? peer : "");
    if (!t || !t->n || !xff || !client_addr_trusted(t, peer))
        return 0;
    size_t len = strnlen(xff, CLIENT_ADDR_XFF_MAX + 1);
    if (len > CLIENT_ADDR_XFF_MAX)
        return 0;
    const char *end = xff + len;
    for (int hop = 0; hop < CLIENT_ADDR_MAX_HOPS && end > xff; hop++) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && blank(*a))
            a++;
        while (b > a && blank(b[-1]))
            b--;
        client_addr_net addr;
        if (parse_xff_entry(a, (size_t)(b - a), &addr) < 0)
            return 0; /* empty or malformed: what is left of it cannot be placed */
        if (!trusted_net(t, &addr)) {
            char text[INET6_ADDRSTRLEN];
            if (!inet_ntop(addr.v6 ? AF_INET6 : AF_INET, addr.addr, text, sizeof(text)))
                return 0;
            snprintf(out, cap, "%s", text);
            return 1;
        }
        end = start > xff ? start - 1 : xff;
    }
    return 0; /* every entry read is a proxy of ours */
}
