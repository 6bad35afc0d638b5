/* resolve.c — host names through c-ares, waited for with poll (see resolve.h).
 *
 * c-ares reads /etc/hosts and /etc/resolv.conf itself and never goes through
 * NSS, so the static agent opens no nsswitch.conf and loads no libnss_*.
 * Two of its defaults are changed for that and for predictability:
 *   - lookups "fb" (hosts file, then DNS) is set explicitly: left unset, c-ares
 *     reads /etc/nsswitch.conf, /etc/host.conf and /etc/svc.conf to decide;
 *   - ARES_FLAG_NOALIASES: no $HOSTALIASES file; the agent resolves from
 *     /etc/hosts and /etc/resolv.conf only;
 *   - resolv.conf's timeout: and attempts: are passed in (read_retry_options).
 * A and AAAA are asked together (as glibc does); the IPv4 addresses are kept
 * when there are any, else the IPv6 ones, as before: the tunnel rotates
 * through the list on reconnects, and a pod network without IPv6 would fail
 * every other attempt.  So no RFC 6724 sorting either (it would open a socket
 * per address to find its source address). */
#include "resolve.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define DEFAULT_DEADLINE_MS 15000
#define SLICE_MS 100 /* how often a wait looks at the cancel flag */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int numeric(const char *name, resolve_addr *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, name, buf) == 1) {
        a->family = AF_INET;
        inet_ntop(AF_INET, buf, a->ip, sizeof(a->ip));
        return 1;
    }
    if (inet_pton(AF_INET6, name, buf) == 1) {
        a->family = AF_INET6;
        inet_ntop(AF_INET6, buf, a->ip, sizeof(a->ip));
        return 1;
    }
    return 0;
}

/* What can go into a DNS question: printable ASCII without spaces, labels of
 * 1..63 bytes, at most 253 bytes (plus an optional final dot).  Checked here
 * so that a bad name gets a clear error instead of an odd query. */
static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (c <= 0x20 || c >= 0x7f || ++label > 63) {
            return 0;
        }
    }
    return 1;
}

static int option_value(const char *v, int lo, int hi)
{
    long n = strtol(v, NULL, 10);
    return n < lo ? lo : n > hi ? hi : (int)n;
}

/* glibc's "options timeout:N attempts:N", which Kubernetes' dnsConfig writes:
 * c-ares reads them itself only from 1.23 on, and Debian 12 ships 1.18, which
 * knows just its own retrans:/retry:.  So these two are read here (the last
 * one wins), with glibc's defaults (5 s, 2) and limits (30 s, 5). */
static void read_retry_options(const char *path, int *timeout_s, int *attempts)
{
    *timeout_s = 5;
    *attempts = 2;
    FILE *f = fopen(path, "re");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof(line), f)) {
            char *save = NULL;
            char *kw = strtok_r(line, " \t\r\n", &save);
            if (!kw || strcmp(kw, "options"))
                continue;
            for (char *opt = strtok_r(NULL, " \t\r\n", &save); opt;
                 opt = strtok_r(NULL, " \t\r\n", &save)) {
                if (!strncmp(opt, "timeout:", 8))
                    *timeout_s = option_value(opt + 8, 1, 30);
                else if (!strncmp(opt, "attempts:", 9))
                    *attempts = option_value(opt + 9, 1, 5);
            }
        }
        fclose(f);
    }
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status = ARES_ENOTINITIALIZED;

static void lib_init(void)
{
    lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

typedef struct {
    int done, status, n, max;
    resolve_addr *out;
} lookup;

static void add_addr(lookup *l, int family, const void *bin)
{
    if (l->n >= l->max)
        return;
    resolve_addr a;
    a.family = family;
    if (!inet_ntop(family, bin, a.ip, sizeof(a.ip)))
        return;
    for (int i = 0; i < l->n; i++)
        if (l->out[i].family == family && !strcmp(l->out[i].ip, a.ip))
            return;
    l->out[l->n++] = a;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    lookup *l = arg;
    l->done = 1;
    l->status = status;
    if (status == ARES_SUCCESS && ai) {
        for (int pass = 0; pass < 2 && l->n == 0; pass++) {
            int family = pass == 0 ? AF_INET : AF_INET6;
            for (const struct ares_addrinfo_node *nd = ai->nodes; nd; nd = nd->ai_next) {
                if (nd->ai_family != family || !nd->ai_addr)
                    continue;
                if (family == AF_INET)
                    add_addr(l, family, &((const struct sockaddr_in *)nd->ai_addr)->sin_addr);
                else
                    add_addr(l, family, &((const struct sockaddr_in6 *)nd->ai_addr)->sin6_addr);
            }
        }
    }
    if (ai)
        ares_freeaddrinfo(ai);
}

/* Runs the channel until the lookup ends, the deadline passes or cancel is
 * set.  0 when the lookup ended, 1 cancelled, 2 deadline, 3 poll failed
 * (its errno in *poll_errno). */
static int run_channel(ares_channel ch, const lookup *l, int64_t deadline, atomic_int *cancel,
                       int *poll_errno)
{
    while (!l->done) {
        if (cancel && atomic_load(cancel))
            return 1;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 2;
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* bit i: socks[i] wants to read, bit 16 + i: to write (ares_getsock(3);
         * shifted here as unsigned: its ARES_GETSOCK_WRITABLE macro shifts an
         * int by 31 for the last socket) */
        unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd p[ARES_GETSOCK_MAXNUM];
        nfds_t np = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = (short)(((bits >> i) & 1u ? POLLIN : 0) |
                               ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u ? POLLOUT : 0));
            if (ev)
                p[np++] = (struct pollfd){.fd = socks[i], .events = ev};
        }
        int64_t slice = left < SLICE_MS ? left : SLICE_MS;
        struct timeval maxtv = {.tv_sec = slice / 1000, .tv_usec = (slice % 1000) * 1000}, tv;
        struct timeval *t = ares_timeout(ch, &maxtv, &tv);
        int wait = (int)(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
        int r = poll(p, np, wait);
        if (r < 0 && errno != EINTR) {
            *poll_errno = errno;
            return 3;
        }
        if (r <= 0) {
            ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
            continue;
        }
        for (nfds_t i = 0; i < np; i++) {
            short re = p[i].revents;
            if (!re)
                continue;
            ares_process_fd(ch, re & (POLLIN | POLLERR | POLLHUP) ? p[i].fd : ARES_SOCKET_BAD,
                            re & (POLLOUT | POLLERR | POLLHUP) ? p[i].fd : ARES_SOCKET_BAD);
        }
    }
    return 0;
}

int agent_resolve(const char *name, const resolve_opts *o, resolve_addr *out, int max,
                  char *err, size_t errlen)
{
    resolve_opts defaults;
    memset(&defaults, 0, sizeof(defaults));
    if (!o)
        o = &defaults;
    if (max <= 0) {
        snprintf(err, errlen, "no room for addresses");
        return -1;
    }
    if (numeric(name, &out[0]))
        return 1;
    if (!valid_name(name)) {
        snprintf(err, errlen, "invalid host name");
        return -1;
    }
    pthread_once(&lib_once, lib_init);
    if (lib_status != ARES_SUCCESS) {
        snprintf(err, errlen, "cannot start c-ares: %s", ares_strerror(lib_status));
        return -1;
    }

    const char *conf = o->resolv_path ? o->resolv_path : "/etc/resolv.conf";
    struct ares_options opt;
    memset(&opt, 0, sizeof(opt));
    int mask = ARES_OPT_LOOKUPS | ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    opt.lookups = (char *)"fb";
    opt.flags = ARES_FLAG_NOALIASES;
    int timeout_s, attempts;
    read_retry_options(conf, &timeout_s, &attempts);
    opt.timeout = timeout_s * 1000;
    opt.tries = attempts;
    if (o->resolv_path) {
        mask |= ARES_OPT_RESOLVCONF;
        opt.resolvconf_path = (char *)o->resolv_path;
    }
    if (o->port > 0 && o->port < 65536) {
        mask |= ARES_OPT_UDP_PORT | ARES_OPT_TCP_PORT;
        opt.udp_port = opt.tcp_port = (unsigned short)o->port;
    }
    ares_channel ch;
    int rc = ares_init_options(&ch, &opt, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "cannot resolve %s: cannot set up the resolver from %s: %s", name,
                 conf, ares_strerror(rc));
        return -1;
    }

    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT | (o->hosts_from_env ? ARES_AI_ENVHOSTS : 0);
    lookup l = {.out = out, .max = max};
    int deadline_ms = o->deadline_ms > 0 ? o->deadline_ms : DEFAULT_DEADLINE_MS;
    ares_getaddrinfo(ch, name, NULL, &hints, on_addrinfo, &l);
    int poll_errno = 0;
    int stopped = run_channel(ch, &l, now_ms() + deadline_ms, o->cancel, &poll_errno);
    if (!l.done)
        ares_cancel(ch); /* runs on_addrinfo with ARES_ECANCELLED */
    ares_destroy(ch);

    if (!stopped && l.status == ARES_SUCCESS && l.n > 0)
        return l.n;
    if (stopped == 1)
        snprintf(err, errlen, "resolution of %s cancelled", name);
    else if (stopped == 2)
        snprintf(err, errlen, "cannot resolve %s: no answer from the nameservers in %s within %d ms",
                 name, conf, deadline_ms);
    else if (stopped == 3)
        snprintf(err, errlen, "cannot resolve %s: poll: %s", name, strerror(poll_errno));
    else if (l.status == ARES_SUCCESS || l.status == ARES_ENOTFOUND || l.status == ARES_ENODATA)
        snprintf(err, errlen, "cannot resolve %s: no such host", name);
    else
        snprintf(err, errlen, "cannot resolve %s: no answer from the nameservers in %s (%s)", name,
                 conf, ares_strerror(l.status));
    return -1;
}
