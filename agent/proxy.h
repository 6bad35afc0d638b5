/* proxy.h — the egress proxy for the tunnel, from the usual environment:
 * wss:// uses HTTPS_PROXY (or https_proxy), falling back to HTTP_PROXY /
 * http_proxy; ws:// uses HTTP_PROXY / http_proxy.  NO_PROXY / no_proxy lists
 * hosts reached directly: comma-separated; `*` = everything; `example.com` or
 * `.example.com` = that domain and its subdomains; IP addresses and CIDR
 * blocks (for a server given as an IP address); each optionally `:port`.
 * The proxy is an HTTP proxy that the agent asks to CONNECT to the server;
 * `http://user:password@host:port` adds Basic proxy authentication (the
 * password may be percent-encoded).  The credentials are never logged. */
#ifndef AURORA_AGENT_PROXY_H
#define AURORA_AGENT_PROXY_H

#include <stddef.h>

typedef struct {
    int use;                 /* 1: connect through the proxy */
    char host[256];          /* proxy host: name or IP (no brackets) */
    int port;
    char *userinfo;          /* "user:password", decoded; secret; NULL if none */
    char display[300];       /* "http://host:port" without credentials, for logs */
    const char *source;      /* the environment variable it came from */
    const char *bypass;      /* the NO_PROXY variable that bypassed a proxy, or NULL */
} agent_proxy;

/* Decides for the tunnel to target_host:target_port.  0 (p->use says
 * whether to proxy), or -1 with err (a malformed or unsupported proxy URL; err
 * never contains the credentials). */
int agent_proxy_from_env(agent_proxy *p, const char *target_host, int target_port, int secure,
                         char *err, size_t errlen);
/* Parses one proxy URL into p (use = 1).  0 or -1 with err. */
int agent_proxy_parse(agent_proxy *p, const char *url, char *err, size_t errlen);
/* 1 if host:port is excluded by the NO_PROXY list. */
int agent_proxy_bypassed(const char *no_proxy, const char *host, int port);
void agent_proxy_free(agent_proxy *p);

#endif
