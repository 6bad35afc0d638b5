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

/* The https URL for host, path and query (lws-decoded arguments, each
 * NUL-terminated, query_len bytes in all), every byte outside RFC 3986's
 * unreserved set percent-encoded again (a path's '/' and each argument's
 * first '=' kept).  malloc'd; NULL when host is no host[:port] or memory
 * ran out. */
char *https_redirect_location(const char *host, const char *path, const char *query,
                              size_t query_len);

#endif
