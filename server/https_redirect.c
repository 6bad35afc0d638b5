/* https_redirect.c — plain HTTP on the HTTPS port (https_redirect.h).
 *
 * The connector guide has users register OAuth redirect URIs such as
 * http://localhost:5080/callback, and those are the server's defaults too,
 * while the server speaks TLS on 5080 unless AURORA_PLAIN_HTTP is set: the
 * provider sent the browser back to a TLS listener in plain HTTP, and the
 * browser saw the connection reset.  The main listener now lets a
 * connection that opens with plain text through (server.c), and this is all
 * such a connection gets: the same URL over https for a browser's GET, a
 * refusal for anything else (an API call or webhook sent over plain HTTP has
 * already shown its credentials to the network; it is answered, not
 * served), and no WebSocket (server.c refuses the upgrade). */
#include "https_redirect.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "http.h"

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Appends s[0, n) with every byte but the unreserved and `keep` encoded. */
static int put_encoded(buf_t *b, const char *s, size_t n, char keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
        if (unreserved(c) || (keep && c == (unsigned char)keep) ? buf_append(b, s + i, 1) < 0
                                                                 : buf_append(b, esc, 3) < 0)
            return -1;
    }
    return 0;
}

char *https_redirect_location(const char *host, const char *path, const char *query,
                              size_t query_len)
{
    if (!http_host_ok(host))
        return NULL;
    buf_t b = { 0 };
    int bad = buf_append_str(&b, "https://") < 0 || buf_append_str(&b, host) < 0 ||
              put_encoded(&b, path && *path ? path : "/", path && *path ? strlen(path) : 1, '/') < 0;
    char sep = '?';
    for (size_t off = 0; !bad && query && off < query_len;) {
        const char *arg = query + off;
        size_t al = strnlen(arg, query_len - off);
        const char *eq = memchr(arg, '=', al);
        size_t nl = eq ? (size_t)(eq - arg) : al;
        bad = buf_append(&b, &sep, 1) < 0 || put_encoded(&b, arg, nl, 0) < 0 ||
              (eq && (buf_append(&b, "=", 1) < 0 || put_encoded(&b, eq + 1, al - nl - 1, 0) < 0));
        sep = '&';
        off += al + 1;
    }
    if (bad) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

void https_redirect_answer(const http_request *req, http_response *resp)
{
    const char *host = http_header_get(req, "host");
    char *url = https_redirect_location(host, req->path, req->query, req->query_len);
    if (!url) {
        http_resp_error(resp, 400, "HTTPS_REQUIRED",
                        "this port speaks HTTPS: send the request to https:// (and a Host "
                        "header naming this server)");
        return;
    }
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_resp_error(resp, 400, "HTTPS_REQUIRED", "this port speaks HTTPS: send the request to %s",
                        url);
        free(url);
        return;
    }
    if (http_resp_add_header(resp, "Location", url) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "location", url);
        http_resp_json(resp, 307, o);
    }
    free(url);
}

/* 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104 (lws names an IPv4 peer of a
 * dual-stack listener that way). */
static int loopback(const char *peer)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!peer)
        return 0;
    if (inet_pton(AF_INET, peer, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, peer, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

int https_redirect_tunneled(const char *peer, const char *forwarded_proto)
{
    if (!forwarded_proto || !loopback(peer))
        return 0;
    const char *v = forwarded_proto;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n == 5 && !strncasecmp(v, "https", 5);
}

void https_redirect_register(void) { http_capture_header("x-forwarded-proto"); }
