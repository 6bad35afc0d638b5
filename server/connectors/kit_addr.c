/* kit_addr.c — the addresses a user-typed URL may lead to; see kit_addr.h. */
#include "kit_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Cloud metadata services at addresses that are not link-local. */
static const unsigned char META_V4[][4] = {
    { 168, 63, 129, 16 },   /* Azure wireserver */
    { 100, 100, 100, 200 }, /* Alibaba Cloud metadata */
};
static const unsigned char META_V6[][16] = {
    /* fd00:ec2::254: AWS instance metadata (IPv6) */
    { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54 },
    /* fd20:ce::254: GCP metadata server (IPv6) */
    { 0xfd, 0x20, 0x00, 0xce, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54 },
};

kit_addr_kind kit_addr_v4(const unsigned char a[4])
{
    if (a[0] == 127)
        return KIT_ADDR_LOOPBACK;
    if (a[0] == 0 || (a[0] == 169 && a[1] == 254) || a[0] >= 224)
        return KIT_ADDR_FORBIDDEN;
    for (size_t i = 0; i < sizeof(META_V4) / sizeof(META_V4[0]); i++)
        if (!memcmp(a, META_V4[i], 4))
            return KIT_ADDR_FORBIDDEN;
    return KIT_ADDR_OK;
}

/* The worse of two kinds (forbidden, then loopback, then ok). */
static kit_addr_kind worse(kit_addr_kind x, kit_addr_kind y)
{
    if (x == KIT_ADDR_FORBIDDEN || y == KIT_ADDR_FORBIDDEN)
        return KIT_ADDR_FORBIDDEN;
    return x == KIT_ADDR_LOOPBACK || y == KIT_ADDR_LOOPBACK ? KIT_ADDR_LOOPBACK : KIT_ADDR_OK;
}

/* An address of the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215): the
 * operator picks the prefix length inside it (/48, /56, /64 or /96, RFC
 * 6052 §2.2: the IPv4 bytes skip byte 8), which the address does not say,
 * so every place the IPv4 address may sit is judged and the worst wins.  A
 * place whose first byte is 0 is not one the address uses (the zeros
 * around a /96 embedding; 0/8 is no translated destination). */
static kit_addr_kind nat64_local(const unsigned char a[16])
{
    static const unsigned char at[4][4] = {
        { 6, 7, 9, 10 },   /* /48 */
        { 7, 9, 10, 11 },  /* /56 */
        { 9, 10, 11, 12 }, /* /64 */
        { 12, 13, 14, 15 } /* /96 */
    };
    kit_addr_kind k = KIT_ADDR_OK;
    int seen = 0;
    for (size_t i = 0; i < 4; i++) {
        unsigned char v4[4] = { a[at[i][0]], a[at[i][1]], a[at[i][2]], a[at[i][3]] };
        if (v4[0] == 0)
            continue;
        seen = 1;
        k = worse(k, kit_addr_v4(v4));
    }
    return seen ? k : KIT_ADDR_FORBIDDEN; /* only 0.x.y.z: "this host" */
}

kit_addr_kind kit_addr_v6(const unsigned char a[16])
{
    static const unsigned char zero[16] = { 0 };
    static const unsigned char one[16] = { [15] = 1 };
    static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
    static const unsigned char nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
    static const unsigned char nat64_lu[6] = { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 };
    if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12))
        return kit_addr_v4(a + 12); /* an IPv4 address in IPv6 clothes */
    if (!memcmp(a, one, 16))
        return KIT_ADDR_LOOPBACK;
    if (!memcmp(a, zero, 16) || a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
        return KIT_ADDR_FORBIDDEN;
    if (!memcmp(a, zero, 12))
        return kit_addr_v4(a + 12); /* IPv4-compatible ::a.b.c.d (::/96) */
    if (a[0] == 0x20 && a[1] == 0x02)
        return kit_addr_v4(a + 2); /* 6to4 2002:AABB:CCDD::/48 */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0)
        return KIT_ADDR_FORBIDDEN; /* Teredo 2001::/32: a relay to an IPv4 host */
    if (!memcmp(a, nat64_lu, 6))
        return nat64_local(a);
    for (size_t i = 0; i < sizeof(META_V6) / sizeof(META_V6[0]); i++)
        if (!memcmp(a, META_V6[i], 16))
            return KIT_ADDR_FORBIDDEN;
    return KIT_ADDR_OK;
}

kit_addr_kind kit_addr_sockaddr(const struct sockaddr *sa)
{
    if (!sa)
        return KIT_ADDR_FORBIDDEN;
    if (sa->sa_family == AF_INET)
        return kit_addr_v4(
            (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return kit_addr_v6(((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr);
    return KIT_ADDR_FORBIDDEN;
}

kit_addr_kind kit_addr_host(const char *host)
{
    unsigned char a[16];
    if (!host)
        return KIT_ADDR_FORBIDDEN;
    if (!strcasecmp(host, "localhost") || !strcasecmp(host, "localhost."))
        return KIT_ADDR_LOOPBACK;
    if (inet_pton(AF_INET, host, a) == 1)
        return kit_addr_v4(a);
    if (inet_pton(AF_INET6, host, a) == 1)
        return kit_addr_v6(a);
    return KIT_ADDR_OK;
}

int kit_addr_allow(const struct sockaddr *sa, void *ud)
{
    const int *allow_loopback = ud;
    kit_addr_kind k = kit_addr_sockaddr(sa);
    return k == KIT_ADDR_OK || (k == KIT_ADDR_LOOPBACK && allow_loopback && *allow_loopback);
}
