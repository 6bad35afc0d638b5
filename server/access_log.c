/* access_log.c — the access log and the HTTP request metrics; see
 * access_log.h. */
#include "access_log.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "http.h"
#include "log.h"
#include "server_metrics.h"

static int valid_request_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HTTP_REQUEST_ID_MAX)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void access_request_id(http_request *req)
{
    const char *given = http_header_get(req, "x-request-id");
    if (given && valid_request_id(given)) {
        snprintf(req->request_id, sizeof(req->request_id), "%s", given);
        return;
    }
    unsigned char raw[16];
    if (crypto_random_public(raw, sizeof(raw)) != 0)
        memset(raw, 0, sizeof(raw)); /* never fails on Linux; an id of zeros still logs */
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(raw); i++) {
        req->request_id[2 * i] = hex[raw[i] >> 4];
        req->request_id[2 * i + 1] = hex[raw[i] & 15];
    }
    req->request_id[2 * sizeof(raw)] = 0;
}

void access_log_request(const http_request *req, const char *route, int status, double seconds,
                        size_t bytes_out)
{
    const char *method = http_method_name(req->method);
    sm_http(method, route, status, seconds);
    log_field f[] = {
        LOG_STR("method", method),
        LOG_STR("route", route),
        LOG_NUM("status", status),
        LOG_NUM("duration_us", (long long)(seconds * 1e6)),
        LOG_NUM("bytes", (long long)bytes_out),
        LOG_STR("org", req->auth.org_id[0] ? req->auth.org_id : "-"),
        LOG_STR("request_id", req->request_id),
        LOG_STR("peer", req->peer),
        /* Past a trusted proxy (client_addr.h) the socket peer is the proxy:
         * the client it forwarded for, when it is someone else. */
        LOG_STR("client", http_client(req)),
    };
    int n = (int)(sizeof(f) / sizeof(f[0]));
    if (!strcmp(http_client(req), req->peer))
        n--;
    /* Probes and scrapes come every few seconds from every kubelet and
     * Prometheus: they log at debug unless they fail. */
    int quiet = status < 400 && (!strcmp(route, "/health") || !strcmp(route, "/ready") ||
                                 !strcmp(route, "/metrics"));
    if (quiet && !log_enabled(LOG_DEBUG))
        return;
    log_fields(quiet ? LOG_DEBUG : LOG_INFO, "request", f, n);
}

void access_log_register(void) { http_capture_header("x-request-id"); }
