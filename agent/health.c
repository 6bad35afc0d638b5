/* health.c — /health and /ready over plain HTTP, served by libwebsockets. */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static int (*is_ready)(void);

typedef struct {
    int status;
    char small[96];
    char *body;      /* small, or malloc'd (metrics) */
    size_t len, off;
} health_pss;

#define WRITE_CHUNK 16384

static void pss_release(health_pss *pss)
{
    if (pss && pss->body && pss->body != pss->small)
        free(pss->body);
    if (pss) {
        pss->body = NULL;
        pss->len = pss->off = 0;
    }
}

/* what this vhost serves: HEALTH_SERVE_* bits kept as the vhost's user pointer */
static int vhost_serves(struct lws *wsi)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);
    void *u = p ? lws_protocol_vh_priv_get(lws_get_vhost(wsi), p) : NULL;
    return u ? *(int *)u : HEALTH_SERVE_PROBES;
}

static int health_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    health_pss *pss = user;
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
                                      *end = hdr + sizeof(hdr) - 1;

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *uri = in ? (const char *)in : "";
        int serves = vhost_serves(wsi);
        const char *ctype = "application/json";
        pss_release(pss);
        pss->body = pss->small;
        if ((serves & HEALTH_SERVE_PROBES) &&
            (!strcmp(uri, "/health") || !strcmp(uri, "/healthz") || !strcmp(uri, "/livez"))) {
            pss->status = HTTP_STATUS_OK;
            snprintf(pss->small, sizeof(pss->small), "{\"status\":\"ok\"}");
        } else if ((serves & HEALTH_SERVE_PROBES) &&
                   (!strcmp(uri, "/ready") || !strcmp(uri, "/readyz"))) {
            int r = is_ready ? is_ready() : 0;
            pss->status = r ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE;
            snprintf(pss->small, sizeof(pss->small), "{\"status\":\"%s\"}",
                     r ? "ready" : "not ready");
        } else if ((serves & HEALTH_SERVE_METRICS) && !strcmp(uri, "/metrics")) {
            size_t n = 0;
            char *m = metrics_render(&n);
            if (m) {
                pss->status = HTTP_STATUS_OK;
                pss->body = m;
                ctype = "text/plain; version=0.0.4; charset=utf-8";
            } else {
                pss->status = HTTP_STATUS_INTERNAL_SERVER_ERROR;
                snprintf(pss->small, sizeof(pss->small), "{\"error\":\"out of memory\"}");
            }
        } else {
            pss->status = HTTP_STATUS_NOT_FOUND;
            snprintf(pss->small, sizeof(pss->small), "{\"error\":\"not found\"}");
        }
        pss->len = strlen(pss->body);
        pss->off = 0;
        if (lws_add_http_common_headers(wsi, (unsigned int)pss->status, ctype, pss->len, &p,
                                        end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end)) {
            pss_release(pss);
            return 1;
        }
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!pss || !pss->body || pss->off >= pss->len)
            break;
        size_t n = pss->len - pss->off;
        if (n > WRITE_CHUNK)
            n = WRITE_CHUNK;
        int final = pss->off + n == pss->len;
        unsigned char *buf = malloc(LWS_PRE + n);
        if (!buf) {
            pss_release(pss);
            return -1;
        }
        memcpy(buf + LWS_PRE, pss->body + pss->off, n);
        int w = lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        free(buf);
        if (w != (int)n) {
            pss_release(pss);
            return 1;
        }
        pss->off += n;
        if (!final) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        pss_release(pss);
        if (lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        pss_release(pss);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols health_protocols[] = {
    {"http", health_cb, sizeof(health_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int agent_health_start(struct lws_context *ctx, const char *bind, int port, int serve,
                       int (*ready)(void))
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    is_ready = ready;
    info.vhost_name = serve & HEALTH_SERVE_PROBES ? "health" : "metrics";
    info.port = port;
    info.protocols = health_protocols;
    if (bind && *bind && strcmp(bind, "0.0.0.0") && strcmp(bind, "::") && strcmp(bind, "*"))
        info.iface = bind;
    if (bind && strchr(bind, '.') && !strchr(bind, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    struct lws_vhost *vh = lws_create_vhost(ctx, &info);
    if (!vh) {
        log_error("health: cannot listen on %s:%d", bind ? bind : "*", port);
        return -1;
    }
    int *u = lws_protocol_vh_priv_zalloc(vh, &health_protocols[0], sizeof(int));
    if (!u) {
        log_error("health: out of memory");
        return -1;
    }
    *u = serve;
    log_info("health: serving %s%s%s on %s:%d", serve & HEALTH_SERVE_PROBES ? "/health, /ready" : "",
             (serve & HEALTH_SERVE_PROBES) && (serve & HEALTH_SERVE_METRICS) ? " and " : "",
             serve & HEALTH_SERVE_METRICS ? "/metrics" : "", bind ? bind : "*", port);
    return 0;
}
