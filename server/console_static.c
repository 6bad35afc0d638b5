/* console_static.c — the console's pages and files (console_static.h). */
#include "console_static.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "console_assets.h"
#include "crypto.h"
#include "http.h"

#define ASSET_PREFIX "/console/"
#define ID_SEGMENT_MAX 128

/* Strong validators: the first 16 bytes of each file's SHA-256, quoted.
 * Computed once; the files never change while the binary runs. */
typedef char etag_t[2 + 32 + 1];
static etag_t *g_etags;
static pthread_once_t g_etags_once = PTHREAD_ONCE_INIT;

static void etags_compute(void)
{
    etag_t *e = calloc(console_assets_count ? console_assets_count : 1, sizeof(etag_t));
    if (!e)
        return; /* served without validators */
    for (unsigned i = 0; i < console_assets_count; i++) {
        unsigned char h[32];
        crypto_sha256(console_assets[i].data, console_assets[i].size, h);
        e[i][0] = '"';
        crypto_hex(h, 16, e[i] + 1);
        e[i][33] = '"';
        e[i][34] = '\0';
    }
    g_etags = e;
}

static int asset_index(const char *name)
{
    for (unsigned i = 0; i < console_assets_count; i++)
        if (!strcmp(console_assets[i].name, name))
            return (int)i;
    return -1;
}

/* One path segment of an id in a page route (/clusters/{id}): the ids the
 * API hands out, nothing that could mean another path. */
static int id_segment(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ID_SEGMENT_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

static int is_page_exact(const char *path);

/* A page's path, also with one trailing slash ("/connectors/", as people
 * type it or a proxy rewrites it): the page's script reads its location
 * with the slash dropped. */
int console_is_page(const char *path)
{
    size_t n = strlen(path);
    if (n > 1 && path[n - 1] == '/' && path[n - 2] != '/') {
        char trimmed[256];
        if (n >= sizeof(trimmed))
            return 0;
        memcpy(trimmed, path, n - 1);
        trimmed[n - 1] = '\0';
        return is_page_exact(trimmed);
    }
    return is_page_exact(path);
}

static int is_page_exact(const char *path)
{
    static const char *const pages[] = { "/",     "/connectors", "/clusters", "/run",
                                         "/audit", "/incidents",  "/signin" };
    static const char *const with_id[] = { "/clusters/", "/incidents/" };
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        if (!strcmp(path, pages[i]))
            return 1;
    for (size_t i = 0; i < sizeof(with_id) / sizeof(with_id[0]); i++) {
        size_t n = strlen(with_id[i]);
        if (!strncmp(path, with_id[i], n) && id_segment(path + n))
            return 1;
    }
    return 0;
}

const char *console_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".ico", "image/x-icon" },
        { ".json", "application/json" },
        { ".txt", "text/plain; charset=utf-8" },
        { ".woff2", "font/woff2" },
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcasecmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* Cross-Origin-Opener-Policy: a console page opened by another site's page
 * is put in a browsing context group of its own, so the opener's window
 * reference goes dead (it could otherwise navigate the signed-in console
 * to a look-alike later, or count its frames).  "same-origin-allow-popups",
 * not "same-origin": the console's own OAuth popups go through this
 * server's login route and the provider's pages (no COOP), and under
 * "same-origin" the console lost the popup at once (the refusal of a login
 * route is read from it).  The page the popup lands on
 * (/connectors?provider=…) is served without COOP: with it the popup,
 * back from the provider, would be cut off from the console that opened
 * it.  That page hands its result to a console opener and closes, or
 * moves itself to /connectors (which has COOP) when no console page opened
 * it (app.js), so no other site's window keeps a hold there either. */
static int oauth_landing(const http_request *req)
{
    char v[8] = "";
    /* app.js's test exactly: the path as the callback redirects to it and
     * a non-empty provider. */
    return !strcmp(req->path, "/connectors") && http_query_get(req, "provider", v, sizeof(v)) == 1 &&
           v[0] != '\0';
}

static void security_headers(http_response *resp, int coop)
{
    http_resp_add_header(resp, "content-security-policy", CONSOLE_CSP);
    http_resp_add_header(resp, "x-content-type-options", "nosniff");
    http_resp_add_header(resp, "x-frame-options", "DENY");
    http_resp_add_header(resp, "referrer-policy", "same-origin");
    /* No other site's page loads these as a script, style or image. */
    http_resp_add_header(resp, "cross-origin-resource-policy", "same-origin");
    if (coop)
        http_resp_add_header(resp, "cross-origin-opener-policy", "same-origin-allow-popups");
}

/* Does If-None-Match (a list of entity tags, or "*") name etag? */
static int etag_listed(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!strncmp(p, "W/", 2))
            p += 2; /* weak comparison (RFC 9110 13.1.2) */
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if ((n == 1 && *p == '*') || (n == el && !strncmp(p, etag, el)))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

static void serve_asset(const http_request *req, http_response *resp, int idx, int coop)
{
    const console_asset *a = &console_assets[idx];
    pthread_once(&g_etags_once, etags_compute);
    buf_reset(&resp->body);
    security_headers(resp, coop);
    /* No long caching: the names carry no version, so a browser asks again
     * and gets a 304 while the file is unchanged. */
    http_resp_add_header(resp, "cache-control", "no-cache");
    resp->content_type = console_content_type(a->name);
    if (g_etags) {
        http_resp_add_header(resp, "etag", g_etags[idx]);
        if (etag_listed(http_header_get(req, "if-none-match"), g_etags[idx])) {
            resp->status = 304;
            return;
        }
    }
    resp->status = 200;
    if (buf_append(&resp->body, a->data, a->size) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
    }
}

int console_static_serve(const http_request *req, http_response *resp)
{
    /* HEAD gets GET's status and headers (http.c sends no body for it). */
    if ((req->method != HTTP_GET && req->method != HTTP_HEAD) || !req->path)
        return 0;
    const char *path = req->path;
    int idx;
    if (console_is_page(path)) {
        idx = asset_index("index.html");
    } else if (!strcmp(path, "/favicon.ico")) {
        /* Browsers ask for it on their own on any page without an icon link
         * (a JSON error of /callback, an API answer opened in a tab): the
         * console's icon, not a 404 in the access log and the devtools. */
        idx = asset_index("favicon.svg");
    } else if (!strncmp(path, ASSET_PREFIX, strlen(ASSET_PREFIX))) {
        /* Only a compiled-in file's exact name: no directory, nothing
         * relative, nothing read from disk — there is nothing to traverse. */
        idx = asset_index(path + strlen(ASSET_PREFIX));
    } else {
        return 0;
    }
    if (idx < 0) {
        http_resp_error(resp, 404, "NOT_FOUND", "no such console file");
        security_headers(resp, 1);
        return 1;
    }
    serve_asset(req, resp, idx, !oauth_landing(req));
    return 1;
}
