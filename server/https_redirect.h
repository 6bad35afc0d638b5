/* https_redirect.h — what a plain-HTTP request on the HTTPS port gets. */
#ifndef AURORA_HTTPS_REDIRECT_H
#define AURORA_HTTPS_REDIRECT_H

#include <stddef.h>

#include "http_types.h"

/* Fills resp for a request that reached the TLS listener in plain text: a
 * GET or HEAD is sent to the same path and query over https (307, Location
 * built from its Host header); any other method, or a Host that is no
 * host[:port], gets 400 HTTPS_REQUIRED. */
void https_redirect_answer(const http_request *req, http_response *resp);

/* 1 when a plain-HTTP request on the TLS port was sent by a TLS tunnel or
 * proxy on this host: the peer is a loopback address and the request says
 * X-Forwarded-Proto: https (forwarded_proto, NULL when absent).  The guide
 * has users run `ngrok http 5080` (or cloudflared) for local development:
 * such a tunnel ends TLS at its edge and sends the request on in plain text
 * over loopback, with the browser's Host, so a redirect to https://<Host>/…
 * would only loop back through the tunnel.  The plain hop never left the
 * host, so the request is served as if it had come in over TLS.  Anything
 * else keeps https_redirect_answer. */
int https_redirect_tunneled(const char *peer, const char *forwarded_proto);

/* Captures X-Forwarded-Proto (modules.c). */
void https_redirect_register(void);

/* The https URL for host, path and query (lws-decoded arguments, each
 * NUL-terminated, query_len bytes in all), every byte outside RFC 3986's
 * unreserved set percent-encoded again (a path's '/' and each argument's
 * first '=' kept).  malloc'd; NULL when host is no host[:port] or memory
 * ran out. */
char *https_redirect_location(const char *host, const char *path, const char *query,
                              size_t query_len);

#endif
