/* resolve.h — host name → addresses without glibc's NSS, so a fully static
 * agent resolves names at run time.  c-ares (Debian's libc-ares) does the
 * work: /etc/hosts first, then DNS A and AAAA queries over UDP (TCP when the
 * answer is truncated) to the nameservers of /etc/resolv.conf, with its
 * search list, ndots, timeout and attempts.
 * Blocking: call it off the event loop (tunnel.c runs it on its own thread). */
#ifndef AURORA_AGENT_RESOLVE_H
#define AURORA_AGENT_RESOLVE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>

#define RESOLVE_MAX_ADDRS 8

typedef struct {
    int family;                    /* AF_INET or AF_INET6 */
    char ip[INET6_ADDRSTRLEN];     /* numeric text */
} resolve_addr;

typedef struct {
    const char *resolv_path;  /* default /etc/resolv.conf */
    int hosts_from_env;       /* tests: the hosts file named by $CARES_HOSTS, not /etc/hosts */
    int port;                 /* DNS port, default 53 (tests use another) */
    int deadline_ms;          /* whole resolution, default 15000 */
    atomic_int *cancel;       /* when set non-zero, give up soon (may be NULL) */
} resolve_opts;

/* Resolves name (a numeric address is returned as is).  Returns the number of
 * addresses, without duplicates: the IPv4 ones when there are any, else the
 * IPv6 ones; or -1 with a message in err ("… no such host", "… no answer from
 * the nameservers …", "… cancelled", "invalid host name"). */
int agent_resolve(const char *name, const resolve_opts *o, resolve_addr *out, int max,
                  char *err, size_t errlen);

#endif
