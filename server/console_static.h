/* console_static.h — serving the web console: the single page (index.html)
 * for its routes and the compiled-in files under /console/
 * (console_assets.h), with the security headers of every console answer:
 * a strict Content-Security-Policy (no inline script or style, nothing from
 * another origin), nosniff, no framing, same-origin referrers. */
#ifndef AURORA_CONSOLE_STATIC_H
#define AURORA_CONSOLE_STATIC_H

#include "http_types.h"

#define CONSOLE_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "            \
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "          \
    "base-uri 'none'"

/* Event-loop thread, before the route table (http.c): 1 when the request is
 * the console's (a GET of `/`, a page route or /console/<file>) and resp is
 * filled (200, 304 or 404); 0 when it is not, resp untouched.  Reads only
 * the compiled-in files: no I/O, no store. */
int console_static_serve(const http_request *req, http_response *resp);

/* 1 if path is a page of the single-page app (`/`, /connectors, /clusters,
 * /clusters/{id}, /run, /audit, /incidents, /incidents/{id}, /signin), also
 * with one trailing slash. */
int console_is_page(const char *path);
/* The Content-Type of an asset by its extension (a static string). */
const char *console_content_type(const char *name);

#endif
