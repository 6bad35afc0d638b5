/* listen_share.c — the main port's listener, shared with the other
 * processes bound to it (see listen_share.h). */
#include "listen_share.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn_admission.h"
#include "log.h"
#include "server_metrics.h"

/* Connections taken per readiness of the listener: a storm's backlog is
 * worked off in slices, so requests already in flight keep their turn. */
#define ACCEPTS_PER_WAKEUP 64

/* Out of descriptors or memory, accept fails while the connection stays
 * queued and the socket stays readable: the listener rests this long
 * instead of spinning on the loop. */
#define ACCEPT_REST_S 0.1

static struct {
    int fd;
    ev_io io;
    ev_timer rest;
    struct ev_loop *loop;
    struct lws_vhost *vh;
    int ka_idle, ka_probes, ka_interval;
} L = { .fd = -1 };

/* What lws's own listener sets on an accepted socket: no Nagle (the
 * tunnel's frames are small and latency-bound) and the context's keepalive
 * probes, so a peer that vanished without a FIN is noticed. */
static void tune_accepted(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!L.ka_idle)
        return;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &L.ka_idle, sizeof(L.ka_idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &L.ka_probes, sizeof(L.ka_probes));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &L.ka_interval, sizeof(L.ka_interval));
}

static void rest_over(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_io_start(loop, &L.io);
}

static void on_listener(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(L.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            /* a peer that gave up while queued, or a signal: the next one */
            if (e == ECONNABORTED || e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) /* drained (another process may have taken the rest) */
                return;
            /* EMFILE/ENFILE/ENOBUFS/ENOMEM: the connection stays queued;
             * rest, or the still-readable socket would spin the loop */
            sm_accept_failed(e == EMFILE ? "emfile" : e == ENFILE ? "enfile"
                             : e == ENOBUFS ? "enobufs" : e == ENOMEM ? "enomem" : "other");
            static time_t warned;
            time_t now = time(NULL);
            if (now - warned >= 10) {
                warned = now;
                log_warn("accept on the shared port: %s (pausing accepts %.0f ms)", strerror(e),
                         ACCEPT_REST_S * 1000);
            }
            ev_io_stop(L.loop, &L.io);
            ev_timer_set(&L.rest, ACCEPT_REST_S, 0.);
            ev_timer_start(L.loop, &L.rest);
            return;
        }
        /* The same gate as lws's listener: beyond the cap or the rate the
         * connection is closed before any TLS work. */
        if (conn_admission_filter()) {
            close(fd);
            continue;
        }
        tune_accepted(fd);
        lws_sock_file_fd_type d;
        d.sockfd = fd;
        /* lws closes fd itself when it cannot adopt it. */
        if (!lws_adopt_descriptor_vhost(L.vh, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                                  LWS_ADOPT_ALLOW_SSL, d, NULL, NULL))
            log_warn("a connection on the shared port could not be handed to libwebsockets");
    }
}

/* The socket address to bind: every address of both families for an empty
 * bind or 0.0.0.0 (an IPv6 socket that also takes IPv4), else the literal
 * exactly.  Names are refused: the main listener binds what it is given,
 * and a name could resolve to several addresses. */
static int bind_address(const char *bind_addr, int port, struct sockaddr_storage *sa, socklen_t *len,
                        int *dual)
{
    memset(sa, 0, sizeof(*sa));
    *dual = 0;
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (!bind_addr || !*bind_addr || !strcmp(bind_addr, "0.0.0.0") || !strcmp(bind_addr, "::")) {
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_any;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        *dual = strcmp(bind_addr ? bind_addr : "", "::") != 0;
        return 0;
    }
    if (inet_pton(AF_INET, bind_addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, bind_addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

int listen_share_start(struct ev_loop *loop, struct lws_vhost *vh,
                       const struct lws_context_creation_info *info, const char *bind_addr,
                       int port, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    int dual = 0;
    if (bind_address(bind_addr, port, &sa, &salen, &dual) < 0) {
        snprintf(err, errlen,
                 "AURORA_LISTEN_SHARE: AURORA_BIND must be an IP address (or 0.0.0.0), not %s",
                 bind_addr);
        return -1;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && dual) { /* no IPv6 on this host: IPv4's any address */
        struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
        memset(&sa, 0, sizeof(sa));
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_ANY);
        v4->sin_port = htons((uint16_t)port);
        salen = sizeof(*v4);
        dual = 0;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "AURORA_LISTEN_SHARE: socket: %s", strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) ||
        (!dual && sa.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)) {
        snprintf(err, errlen, "AURORA_LISTEN_SHARE: setsockopt: %s", strerror(errno));
        close(fd);
        return -1;
    }
    /* The kernel caps the backlog at net.core.somaxconn: the fleet's
     * reconnections queue there, not in SYN retries. */
    if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, SOMAXCONN) < 0) {
        snprintf(err, errlen,
                 "cannot listen on %s:%d with SO_REUSEPORT: %s (a process bound without "
                 "AURORA_LISTEN_SHARE holds the port?)",
                 bind_addr && *bind_addr ? bind_addr : "0.0.0.0", port, strerror(errno));
        close(fd);
        return -1;
    }
    L.fd = fd;
    L.loop = loop;
    L.vh = vh;
    L.ka_idle = info->ka_time;
    L.ka_probes = info->ka_probes;
    L.ka_interval = info->ka_interval;
    ev_io_init(&L.io, on_listener, fd, EV_READ);
    ev_init(&L.rest, rest_over);
    ev_io_start(loop, &L.io);
    return 0;
}

void listen_share_stop(void)
{
    if (L.fd < 0)
        return;
    ev_io_stop(L.loop, &L.io);
    ev_timer_stop(L.loop, &L.rest);
    close(L.fd);
    L.fd = -1;
    L.loop = NULL;
    L.vh = NULL;
}
