/* health.c — /health and /ready over plain HTTP, served by libwebsockets. */
#include "health.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

static int (*is_ready)(void);

typedef struct {
    int status;
    char body[96];
    size_t len;
} health_pss;

static int health_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    health_pss *pss = user;
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
                                      *end = hdr + sizeof(hdr) - 1;

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *uri = in ? (const char *)in : "";
        if (!strcmp(uri, "/health") || !strcmp(uri, "/healthz") || !strcmp(uri, "/livez")) {
            pss->status = HTTP_STATUS_OK;
            snprintf(pss->body, sizeof(pss->body), "{\"status\":\"ok\"}");
        } else if (!strcmp(uri, "/ready") || !strcmp(uri, "/readyz")) {
            int r = is_ready ? is_ready() : 0;
            pss->status = r ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE;
            snprintf(pss->body, sizeof(pss->body), "{\"status\":\"%s\"}",
                     r ? "ready" : "not ready");
        } else {
            pss->status = HTTP_STATUS_NOT_FOUND;
            snprintf(pss->body, sizeof(pss->body), "{\"error\":\"not found\"}");
        }
        pss->len = strlen(pss->body);
        if (lws_add_http_common_headers(wsi, (unsigned int)pss->status, "application/json",
                                        pss->len, &p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!pss || !pss->len)
            break;
        unsigned char body[LWS_PRE + sizeof(pss->body)];
        memcpy(body + LWS_PRE, pss->body, pss->len);
        if (lws_write(wsi, body + LWS_PRE, pss->len, LWS_WRITE_HTTP_FINAL) != (int)pss->len)
            return 1;
        pss->len = 0;
        if (lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols health_protocols[] = {
    {"http", health_cb, sizeof(health_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int agent_health_start(struct lws_context *ctx, const char *bind, int port, int (*ready)(void))
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    is_ready = ready;
    info.vhost_name = "health";
    info.port = port;
    info.protocols = health_protocols;
    if (bind && *bind && strcmp(bind, "0.0.0.0") && strcmp(bind, "::") && strcmp(bind, "*"))
        info.iface = bind;
    if (bind && strchr(bind, '.') && !strchr(bind, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (!lws_create_vhost(ctx, &info)) {
        log_error("health: cannot listen on %s:%d", bind ? bind : "*", port);
        return -1;
    }
    log_info("health: serving /health and /ready on %s:%d", bind ? bind : "*", port);
    return 0;
}
