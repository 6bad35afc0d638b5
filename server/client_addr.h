/* client_addr.h — who a request comes from when it reaches the server
 * through a reverse proxy (an ingress controller, a load balancer, ngrok on
 * this host): AURORA_TRUSTED_PROXIES and X-Forwarded-For.
 *
 * The socket peer is always the address that connected; a proxy puts the
 * address it received the request from at the right end of X-Forwarded-For,
 * after whatever the request already carried.  So the header is read right
 * to left: entries written by trusted proxies are skipped, and the first
 * entry that is not a trusted proxy is the client.  Everything left of it
 * came from the client itself and proves nothing.
 *
 * The client address names the requester (rate-limit buckets, logs); it
 * never grants anything: loopback checks, the ops and internal listeners and
 * every allow-list stay on the socket peer.  Pure functions: no lws. */
#ifndef AURORA_CLIENT_ADDR_H
#define AURORA_CLIENT_ADDR_H

#include <stddef.h>

/* Longest X-Forwarded-For value read (all its header lines joined); a longer
 * one is ignored whole, as one from an untrusted peer. */
#define CLIENT_ADDR_XFF_MAX 4096
/* Trusted entries skipped at most before the walk gives up (and the socket
 * peer is the client): no real chain of proxies is longer. */
#define CLIENT_ADDR_MAX_HOPS 32
/* Room for any address client_addr_resolve writes (an IPv6 address's text,
 * or the socket peer as lws gives it). */
#define CLIENT_ADDR_LEN 64

typedef struct {
    int v6;                  /* 0: IPv4 (addr[0..3]); 1: IPv6 */
    unsigned char addr[16];  /* network order, bits past prefix zero */
    int prefix;              /* 0-32 or 0-128 */
} client_addr_net;

typedef struct {
    client_addr_net *nets;
    size_t n;
} client_addr_trust;

/* Parses AURORA_TRUSTED_PROXIES: comma-separated IPv4 or IPv6 addresses or
 * CIDRs, blanks around each ignored, empty entries skipped (NULL or "" is
 * an empty list: nothing trusted).  An IPv4-mapped IPv6 entry
 * (::ffff:10.0.0.0/104) is taken as the IPv4 network it names; other IPv6
 * entries never match an IPv4 peer (::/0 is every IPv6 address only).  A
 * CIDR with bits set past its prefix (10.0.0.1/8) is refused: it reads as a
 * mistake.  0, or -1 with err naming the entry (and out left empty). */
int client_addr_trust_parse(const char *spec, client_addr_trust *out, char *err, size_t errlen);
void client_addr_trust_free(client_addr_trust *t);

/* 1 when addr (an IP literal; an IPv4-mapped IPv6 one is its IPv4 address)
 * is inside one of the trusted networks; 0 otherwise, and for anything that
 * is not an IP literal. */
int client_addr_trusted(const client_addr_trust *t, const char *addr);

/* The client address of a request from socket peer `peer` carrying
 * X-Forwarded-For `xff` (NULL: absent; repeated header lines joined with
 * commas, in order), written to out (cap >= CLIENT_ADDR_LEN).
 *
 * When the peer is not trusted (always, with an empty list), or the header
 * is absent, empty, longer than CLIENT_ADDR_XFF_MAX, or the walk meets a
 * malformed entry before an untrusted one, or every entry it reads (at most
 * CLIENT_ADDR_MAX_HOPS) is trusted: the peer itself, copied unchanged.
 * Otherwise the first untrusted entry from the right, as inet_ntop writes
 * it (an IPv4-mapped one as plain IPv4).  An entry is an IP literal, with
 * blanks around it; "a.b.c.d:port", "[v6]" and "[v6]:port" (what some load
 * balancers append) are read as their address.
 * Returns 1 when the address came from the header, 0 when it is the peer. */
int client_addr_resolve(const client_addr_trust *t, const char *peer, const char *xff,
                        char *out, size_t cap);

#endif
