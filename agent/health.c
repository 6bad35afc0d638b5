/* health.c — /health and /ready over plain HTTP, served by libwebsockets. */
#include "health.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* These listeners share the agent's one libwebsockets context, whose fd table
 * (LWS_FD_LIMIT in main.c) also holds the tunnel.  lws stops accepting on every
 * listener when that table is nearly full, and by default drops a connection
 * that sends nothing only after 10 s: idle connections from any pod that can
 * reach the port kept kubelet's probes out (and got the agent restarted).
 * So: a connection has HEADER_DEADLINE_S to deliver its request headers (a
 * probe or a scrape sends them at once) and as long between keep-alive
 * requests; and one source address holds at most PER_ADDR_MAX connections, the
 * excess closed at accept, before lws allocates anything for it (kubelet
 * probes come from the node's address, which no pod has). */
#define HEADER_DEADLINE_S 3
#define PER_ADDR_MAX 8
#define TRACKED_MAX 256 /* live connections over all health/metrics listeners */

typedef struct {
    int family; /* AF_INET or AF_INET6; an IPv4-mapped IPv6 peer counts as IPv4 */
    unsigned char addr[16];
} peer_key;

/* the live accepted connections and their peers; the event loop's thread only */
static struct {
    struct lws *wsi;
    peer_key key;
} tracked[TRACKED_MAX];

static int peer_key_of(const struct sockaddr *sa, peer_key *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        k->family = AF_INET;
        memcpy(k->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            k->family = AF_INET;
            memcpy(k->addr, a6->s6_addr + 12, 4);
        } else {
            k->family = AF_INET6;
            memcpy(k->addr, a6->s6_addr, 16);
        }
        return 0;
    }
    return -1;
}

static int peer_count(const peer_key *k, int *free_slot)
{
    int n = 0;
    *free_slot = -1;
    for (int i = 0; i < TRACKED_MAX; i++) {
        if (!tracked[i].wsi) {
            if (*free_slot < 0)
                *free_slot = i;
        } else if (!memcmp(&tracked[i].key, k, sizeof(*k))) {
            n++;
        }
    }
    return n;
}

/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION: nonzero closes the accepted socket */
static int admit_peer(const struct lws_filter_network_conn_args *f)
{
    peer_key k;
    int slot;
    if (!f || peer_key_of((const struct sockaddr *)&f->cli_addr, &k) != 0)
        return 0; /* not IP: nothing to count */
    return peer_count(&k, &slot) >= PER_ADDR_MAX || slot < 0;
}

/* LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: the admitted connection joins
 * its peer's count until LWS_CALLBACK_WSI_DESTROY */
static int track_peer(struct lws *wsi)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    peer_key k;
    int slot;
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) != 0 ||
        peer_key_of((const struct sockaddr *)&ss, &k) != 0)
        return 0;
    if (peer_count(&k, &slot) >= PER_ADDR_MAX || slot < 0)
        return 1;
    tracked[slot].wsi = wsi;
    tracked[slot].key = k;
    return 0;
}

static void untrack_peer(struct lws *wsi)
{
    for (int i = 0; i < TRACKED_MAX; i++)
        if (tracked[i].wsi == wsi)
            tracked[i].wsi = NULL;
}

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
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return admit_peer(user);
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (track_peer(wsi))
            return 1;
        /* until the headers are in; lws's header table timeout
         * (timeout_secs_ah_idle, below) takes over when it attaches one */
        lws_set_timeout(wsi, PENDING_TIMEOUT_ESTABLISH_WITH_SERVER, HEADER_DEADLINE_S);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        untrack_peer(wsi);
        break;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* a WebSocket or h2c upgrade: lws would switch protocols and hold
         * the connection with no deadline.  -1: lws hangs up. */
        return -1;
    case LWS_CALLBACK_RAW_ADOPT:
        /* a CONNECT request, which lws makes a raw socket: the same */
        return -1;
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
    info.timeout_secs_ah_idle = HEADER_DEADLINE_S;
    info.keepalive_timeout = HEADER_DEADLINE_S;
    /* 0.0.0.0 (the default), :: and * mean every address of both families, as
     * the server's AURORA_BIND does: in an IPv6 single-stack cluster kubelet
     * probes the pod's IPv6 address, and an IPv4-only listener failed every
     * probe.  Only a host without IPv6 at all (ipv6.disable=1) gets IPv4 alone. */
    int any = !bind || !*bind || !strcmp(bind, "0.0.0.0") || !strcmp(bind, "::") ||
              !strcmp(bind, "*");
    if (!any)
        info.iface = bind;
    if (any) {
        int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd6 < 0)
            info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        else
            close(fd6);
    } else if (strchr(bind, '.') && !strchr(bind, ':')) {
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    }
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
