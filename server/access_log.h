/* access_log.h — one log line and one metrics sample per HTTP request,
 * whatever its outcome (also 400/401/404/405/413/429/503 and clients that
 * left), and the request id that ties the line to the client's view. */
#ifndef AURORA_ACCESS_LOG_H
#define AURORA_ACCESS_LOG_H

#include <stddef.h>

#include "http_types.h"

/* The request id: the client's X-Request-ID when it is 1-128 characters of
 * [A-Za-z0-9._-] (anything else could forge log fields or headers), else 32
 * random hex digits.  Written into req->request_id. */
void access_request_id(http_request *req);

/* route: the matched pattern, "console" (the web console's pages and
 * files, console_static.h), or "unmatched"; status 499: the client closed
 * the connection before the answer was complete. */
void access_log_request(const http_request *req, const char *route, int status, double seconds,
                        size_t bytes_out);

/* Captures X-Request-ID (modules.c). */
void access_log_register(void);

#endif
