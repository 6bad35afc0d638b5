/* resolve.h — host name → addresses without glibc's NSS, so a fully static
 * agent resolves names at run time: /etc/hosts first, then DNS A (then AAAA)
 * queries over UDP (TCP when the answer is truncated) to the nameservers of
 * /etc/resolv.conf, with its search list, ndots, timeout and attempts.
 * Blocking: call it off the event loop (agent_resolve_async in tunnel.c). */
#ifndef AURORA_AGENT_RESOLVE_H
#define AURORA_AGENT_RESOLVE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RESOLVE_MAX_ADDRS 8
#define RESOLVE_MAX_NS 3
#define RESOLVE_MAX_SEARCH 6

typedef struct {
    int family;                    /* AF_INET or AF_INET6 */
    char ip[INET6_ADDRSTRLEN];     /* numeric text */
} resolve_addr;

typedef struct {
    char nameserver[RESOLVE_MAX_NS][INET6_ADDRSTRLEN];
    int nns;
    char search[RESOLVE_MAX_SEARCH][254];
    int nsearch;
    int ndots;       /* default 1 */
    int timeout_s;   /* per query and server, default 5, capped at 30 */
    int attempts;    /* default 2, capped at 5 */
} resolv_conf;

typedef struct {
    const char *hosts_path;   /* default /etc/hosts */
    const char *resolv_path;  /* default /etc/resolv.conf */
    int port;                 /* DNS port, default 53 (tests use another) */
    int deadline_ms;          /* whole resolution, default 15000 */
    atomic_int *cancel;       /* when set non-zero, give up soon (may be NULL) */
} resolve_opts;

/* Resolves name (a numeric address is returned as is).  Returns the number of
 * addresses (IPv4 before IPv6), or -1 with a message in err. */
int agent_resolve(const char *name, const resolve_opts *o, resolve_addr *out, int max,
                  char *err, size_t errlen);

/* ---- pieces, for tests ---- */
/* Addresses of name in a hosts file; 0 if none. */
int resolve_hosts_file(const char *path, const char *name, resolve_addr *out, int max);
/* Reads resolv.conf (a missing file gives the defaults: nameserver 127.0.0.1). */
void resolve_read_conf(const char *path, resolv_conf *rc);
/* Query for name/qtype with id into buf; its length or -1 (bad name). */
int resolve_build_query(const char *name, int qtype, uint16_t id, unsigned char *buf,
                        size_t buflen);
/* Parses a response to (id, name, qtype).  Returns the number of addresses
 * found (CNAME chains followed), 0 for "no such data", or a negative
 * RESOLVE_* code. *truncated is set when the TC bit is on. */
enum { RESOLVE_NXDOMAIN = -1, RESOLVE_SERVFAIL = -2, RESOLVE_MALFORMED = -3 };
int resolve_parse_response(const unsigned char *msg, size_t len, uint16_t id, const char *name,
                           int qtype, resolve_addr *out, int max, int *truncated);

#endif
