/* kit_addr.h — the addresses a user-typed URL may lead the server to
 * (connector kit): one policy for every connector that calls a base URL a
 * user typed (Splunk's instance, a self-hosted Sentry, Atlassian Data
 * Center), judged on the URL's literal host and, through http_client's
 * allow_address, on every address a name resolves to.
 *
 * Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are fine: an
 * on-premises server lives there.  Never allowed, whatever the loopback
 * setting:
 *  - unspecified (0.0.0.0/8, ::: Linux connects them to this host),
 *    multicast and broadcast (224/4 and above, ff00::/8);
 *  - link-local (169.254/16, fe80::/10): 169.254.169.254 is the metadata
 *    service of AWS, GCP, Azure, OCI…;
 *  - the cloud metadata services outside link-local: fd00:ec2::254 (AWS's
 *    IPv6 instance metadata), fd20:ce::254 (GCP's IPv6 metadata server),
 *    168.63.129.16 (Azure's wireserver) and 100.100.100.200 (Alibaba Cloud).
 * IPv4 addresses in IPv6 clothes (::ffff:a.b.c.d, 64:ff9b::a.b.c.d,
 * IPv4-compatible ::a.b.c.d, 6to4 2002:AABB:CCDD::/48, the local-use NAT64
 * prefix 64:ff9b:1::/48 at every prefix length it may use) are judged as
 * the IPv4 address; Teredo (2001::/32) is refused.  Loopback (127/8, ::1, "localhost") is its
 * own kind: each connector allows it only with its setting. */
#ifndef AURORA_KIT_ADDR_H
#define AURORA_KIT_ADDR_H

struct sockaddr;

typedef enum { KIT_ADDR_OK, KIT_ADDR_LOOPBACK, KIT_ADDR_FORBIDDEN } kit_addr_kind;

kit_addr_kind kit_addr_v4(const unsigned char a[4]);
kit_addr_kind kit_addr_v6(const unsigned char a[16]);
/* An AF_INET or AF_INET6 address; any other family is KIT_ADDR_FORBIDDEN. */
kit_addr_kind kit_addr_sockaddr(const struct sockaddr *sa);
/* A URL's host as parsed (http_client_url_parse): a literal address or
 * "localhost"; any other name is KIT_ADDR_OK here and judged once resolved
 * (kit_addr_allow). */
kit_addr_kind kit_addr_host(const char *host);

/* http_client's allow_address: 1 for KIT_ADDR_OK, and for KIT_ADDR_LOOPBACK
 * when ud is a non-NULL int * holding non-zero (the connector's
 * …_ALLOW_LOOPBACK setting). */
int kit_addr_allow(const struct sockaddr *sa, void *ud);

#endif
