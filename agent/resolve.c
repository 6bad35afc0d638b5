/* resolve.c — /etc/hosts and a small stub DNS resolver (see resolve.h). */
#include "resolve.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"

#define QTYPE_A 1
#define QTYPE_CNAME 5
#define QTYPE_AAAA 28
#define SLICE_MS 100
#define MAX_ANSWERS 64

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "Name." / "NAME" → "name"; 0, or -1 if it does not fit or is empty */
static int canon_name(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    while (n && in[n - 1] == '.')
        n--;
    if (n == 0 || n >= outlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[n] = '\0';
    return 0;
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

static int add_addr(resolve_addr *out, int n, int max, int family, const void *bin)
{
    if (n >= max)
        return n;
    resolve_addr a;
    a.family = family;
    if (!inet_ntop(family, bin, a.ip, sizeof(a.ip)))
        return n;
    for (int i = 0; i < n; i++)
        if (out[i].family == family && !strcmp(out[i].ip, a.ip))
            return n;
    out[n] = a;
    return n + 1;
}

/* IPv4 first, otherwise in order */
static void order_v4_first(resolve_addr *a, int n)
{
    resolve_addr tmp[RESOLVE_MAX_ADDRS * 2];
    int k = 0;
    if (n > (int)(sizeof(tmp) / sizeof(tmp[0])))
        return;
    for (int i = 0; i < n; i++)
        if (a[i].family == AF_INET)
            tmp[k++] = a[i];
    for (int i = 0; i < n; i++)
        if (a[i].family != AF_INET)
            tmp[k++] = a[i];
    memcpy(a, tmp, sizeof(resolve_addr) * (size_t)n);
}

/* ---- /etc/hosts ---------------------------------------------------------- */

int resolve_hosts_file(const char *path, const char *name, resolve_addr *out, int max)
{
    char want[256];
    if (canon_name(name, want, sizeof(want)) != 0)
        return 0;
    FILE *f = fopen(path ? path : "/etc/hosts", "re");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *ip = strtok_r(line, " \t\r\n", &save);
        if (!ip)
            continue;
        unsigned char bin[sizeof(struct in6_addr)];
        int fam = inet_pton(AF_INET, ip, bin) == 1    ? AF_INET
                  : inet_pton(AF_INET6, ip, bin) == 1 ? AF_INET6
                                                      : 0;
        if (!fam)
            continue;
        for (char *h = strtok_r(NULL, " \t\r\n", &save); h; h = strtok_r(NULL, " \t\r\n", &save)) {
            char c[256];
            if (canon_name(h, c, sizeof(c)) == 0 && !strcmp(c, want)) {
                n = add_addr(out, n, max, fam, bin);
                break;
            }
        }
    }
    fclose(f);
    order_v4_first(out, n);
    return n;
}

/* ---- /etc/resolv.conf ---------------------------------------------------- */

void resolve_read_conf(const char *path, resolv_conf *rc)
{
    memset(rc, 0, sizeof(*rc));
    rc->ndots = 1;
    rc->timeout_s = 5;
    rc->attempts = 2;
    FILE *f = fopen(path ? path : "/etc/resolv.conf", "re");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof(line), f)) {
            if (line[0] == '#' || line[0] == ';')
                continue;
            char *save = NULL;
            char *kw = strtok_r(line, " \t\r\n", &save);
            if (!kw)
                continue;
            if (!strcmp(kw, "nameserver")) {
                char *v = strtok_r(NULL, " \t\r\n", &save);
                resolve_addr a;
                if (v && rc->nns < RESOLVE_MAX_NS && numeric(v, &a))
                    snprintf(rc->nameserver[rc->nns++], sizeof(rc->nameserver[0]), "%s", a.ip);
            } else if (!strcmp(kw, "search") || !strcmp(kw, "domain")) {
                rc->nsearch = 0; /* the last search/domain line wins */
                for (char *d = strtok_r(NULL, " \t\r\n", &save); d;
                     d = strtok_r(NULL, " \t\r\n", &save)) {
                    if (rc->nsearch >= RESOLVE_MAX_SEARCH)
                        break;
                    if (canon_name(d, rc->search[rc->nsearch], sizeof(rc->search[0])) == 0)
                        rc->nsearch++;
                    if (!strcmp(kw, "domain"))
                        break;
                }
            } else if (!strcmp(kw, "options")) {
                for (char *o = strtok_r(NULL, " \t\r\n", &save); o;
                     o = strtok_r(NULL, " \t\r\n", &save)) {
                    if (!strncmp(o, "ndots:", 6))
                        rc->ndots = atoi(o + 6);
                    else if (!strncmp(o, "timeout:", 8))
                        rc->timeout_s = atoi(o + 8);
                    else if (!strncmp(o, "attempts:", 9))
                        rc->attempts = atoi(o + 9);
                }
            }
        }
        fclose(f);
    }
    if (rc->ndots < 0)
        rc->ndots = 0;
    if (rc->ndots > 15)
        rc->ndots = 15;
    if (rc->timeout_s < 1)
        rc->timeout_s = 1;
    if (rc->timeout_s > 30)
        rc->timeout_s = 30;
    if (rc->attempts < 1)
        rc->attempts = 1;
    if (rc->attempts > 5)
        rc->attempts = 5;
    if (rc->nns == 0) {
        snprintf(rc->nameserver[0], sizeof(rc->nameserver[0]), "127.0.0.1");
        rc->nns = 1;
    }
}

/* ---- DNS messages -------------------------------------------------------- */

int resolve_build_query(const char *name, int qtype, uint16_t id, unsigned char *buf,
                        size_t buflen)
{
    char c[256];
    if (canon_name(name, c, sizeof(c)) != 0 || strlen(c) > 253)
        return -1;
    size_t need = 12 + strlen(c) + 2 + 4;
    if (buflen < need)
        return -1;
    memset(buf, 0, 12);
    buf[0] = (unsigned char)(id >> 8);
    buf[1] = (unsigned char)id;
    buf[2] = 0x01; /* RD */
    buf[5] = 1;    /* QDCOUNT */
    size_t off = 12;
    const char *p = c;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0 || l > 63)
            return -1;
        for (size_t i = 0; i < l; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch <= 0x20 || ch >= 0x7f)
                return -1;
        }
        buf[off++] = (unsigned char)l;
        memcpy(buf + off, p, l);
        off += l;
        p += l;
        if (*p == '.')
            p++;
    }
    buf[off++] = 0;
    buf[off++] = (unsigned char)(qtype >> 8);
    buf[off++] = (unsigned char)qtype;
    buf[off++] = 0;
    buf[off++] = 1; /* IN */
    return (int)off;
}

/* Reads a possibly compressed name at *off into out (lowercase, dotted). */
static int read_name(const unsigned char *m, size_t len, size_t *off, char *out, size_t outlen)
{
    size_t pos = *off, k = 0;
    int jumped = 0, hops = 0;
    for (;;) {
        if (pos >= len)
            return -1;
        unsigned char l = m[pos];
        if ((l & 0xc0) == 0xc0) {
            if (pos + 1 >= len || ++hops > 32)
                return -1;
            size_t target = ((size_t)(l & 0x3f) << 8) | m[pos + 1];
            if (!jumped)
                *off = pos + 2;
            jumped = 1;
            pos = target;
            continue;
        }
        if (l & 0xc0)
            return -1;
        if (l == 0) {
            if (!jumped)
                *off = pos + 1;
            break;
        }
        if (pos + 1 + l > len)
            return -1;
        if (k && k + 1 < outlen)
            out[k++] = '.';
        for (size_t i = 0; i < l; i++) {
            if (k + 1 >= outlen)
                return -1;
            out[k++] = (char)tolower(m[pos + 1 + i]);
        }
        pos += 1 + (size_t)l;
    }
    out[k] = '\0';
    return 0;
}

typedef struct {
    char owner[256];
    int type;
    size_t rdoff, rdlen;
} answer;

int resolve_parse_response(const unsigned char *m, size_t len, uint16_t id, const char *name,
                           int qtype, resolve_addr *out, int max, int *truncated)
{
    *truncated = 0;
    if (len < 12)
        return RESOLVE_MALFORMED;
    if (((m[0] << 8) | m[1]) != id || !(m[2] & 0x80) || (m[2] & 0x78))
        return RESOLVE_MALFORMED;
    *truncated = (m[2] & 0x02) != 0;
    int rcode = m[3] & 0x0f;
    int qd = (m[4] << 8) | m[5], an = (m[6] << 8) | m[7];
    char want[256], got[256];
    if (canon_name(name, want, sizeof(want)) != 0)
        return RESOLVE_MALFORMED;
    size_t off = 12;
    if (qd != 1)
        return RESOLVE_MALFORMED;
    if (read_name(m, len, &off, got, sizeof(got)) != 0 || off + 4 > len)
        return RESOLVE_MALFORMED;
    if (strcmp(got, want) || ((m[off] << 8) | m[off + 1]) != qtype || m[off + 3] != 1)
        return RESOLVE_MALFORMED;
    off += 4;
    if (rcode == 3)
        return RESOLVE_NXDOMAIN;
    if (rcode != 0)
        return RESOLVE_SERVFAIL;
    if (*truncated)
        return 0;
    answer *ans = calloc(MAX_ANSWERS, sizeof(answer));
    if (!ans)
        return RESOLVE_SERVFAIL;
    int na = 0;
    for (int i = 0; i < an; i++) {
        answer a;
        if (read_name(m, len, &off, a.owner, sizeof(a.owner)) != 0 || off + 10 > len) {
            free(ans);
            return RESOLVE_MALFORMED;
        }
        a.type = (m[off] << 8) | m[off + 1];
        int cls = (m[off + 2] << 8) | m[off + 3];
        a.rdlen = ((size_t)m[off + 8] << 8) | m[off + 9];
        a.rdoff = off + 10;
        if (a.rdoff + a.rdlen > len) {
            free(ans);
            return RESOLVE_MALFORMED;
        }
        off = a.rdoff + a.rdlen;
        if (cls == 1 && na < MAX_ANSWERS)
            ans[na++] = a;
    }
    /* follow the CNAME chain from the question name */
    char cur[256];
    snprintf(cur, sizeof(cur), "%s", want);
    for (int hop = 0; hop < 16; hop++) {
        int moved = 0;
        for (int i = 0; i < na && !moved; i++) {
            if (ans[i].type == QTYPE_CNAME && !strcmp(ans[i].owner, cur)) {
                size_t o = ans[i].rdoff;
                char target[256];
                if (read_name(m, len, &o, target, sizeof(target)) == 0 && strcmp(target, cur)) {
                    snprintf(cur, sizeof(cur), "%s", target);
                    moved = 1;
                }
            }
        }
        if (!moved)
            break;
    }
    int n = 0;
    for (int i = 0; i < na; i++) {
        if (ans[i].type != qtype || strcmp(ans[i].owner, cur))
            continue;
        if (qtype == QTYPE_A && ans[i].rdlen == 4)
            n = add_addr(out, n, max, AF_INET, m + ans[i].rdoff);
        else if (qtype == QTYPE_AAAA && ans[i].rdlen == 16)
            n = add_addr(out, n, max, AF_INET6, m + ans[i].rdoff);
    }
    free(ans);
    return n;
}

/* ---- transport ------------------------------------------------------------- */

typedef struct {
    const resolve_opts *o;
    int64_t deadline;
} rctx;

static int cancelled(const rctx *c)
{
    return (c->o->cancel && atomic_load(c->o->cancel)) || now_ms() >= c->deadline;
}

static int ns_sockaddr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *sl)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sl = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sl = sizeof(*s6);
        return 0;
    }
    return -1;
}

/* Waits for fd to become ready for ev until until_ms; 1 ready, 0 timeout/cancel. */
static int wait_fd(int fd, short ev, int64_t until_ms, const rctx *c)
{
    for (;;) {
        if (cancelled(c))
            return 0;
        int64_t left = until_ms - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)(left < SLICE_MS ? left : SLICE_MS));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

static int tcp_query(const struct sockaddr_storage *ss, socklen_t sl, const unsigned char *q,
                     int qlen, unsigned char *resp, size_t resplen, int64_t until, const rctx *c)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (connect(fd, (const struct sockaddr *)ss, sl) != 0 && errno != EINPROGRESS)
        goto out;
    if (!wait_fd(fd, POLLOUT, until, c))
        goto out;
    int soerr = 0;
    socklen_t el = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) != 0 || soerr)
        goto out;
    unsigned char out[2 + 600];
    out[0] = (unsigned char)(qlen >> 8);
    out[1] = (unsigned char)qlen;
    memcpy(out + 2, q, (size_t)qlen);
    size_t sent = 0, total = (size_t)qlen + 2;
    while (sent < total) {
        ssize_t w = send(fd, out + sent, total - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, until, c))
            continue;
        goto out;
    }
    unsigned char lenb[2];
    size_t got = 0, want = 2;
    unsigned char *dst = lenb;
    for (int phase = 0; phase < 2; phase++) {
        while (got < want) {
            ssize_t r = recv(fd, dst + got, want - got, 0);
            if (r > 0) {
                got += (size_t)r;
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLIN, until, c))
                continue;
            goto out;
        }
        if (phase == 0) {
            want = ((size_t)lenb[0] << 8) | lenb[1];
            if (want == 0 || want > resplen)
                goto out;
            dst = resp;
            got = 0;
        }
    }
    rc = (int)want;
out:
    close(fd);
    return rc;
}

/* One question to one server.  >=0 addresses, or RESOLVE_* / -100 (no answer). */
#define NO_ANSWER (-100)
static int ask(const char *server, const char *name, int qtype, resolve_addr *out, int max,
               int timeout_ms, const rctx *c)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (ns_sockaddr(server, c->o->port > 0 ? c->o->port : 53, &ss, &sl) != 0)
        return NO_ANSWER;
    uint16_t id = 0;
    if (crypto_random(&id, sizeof(id)) != 0)
        id = (uint16_t)(now_ms() ^ getpid());
    unsigned char q[600];
    int qlen = resolve_build_query(name, qtype, id, q, sizeof(q));
    if (qlen < 0)
        return RESOLVE_MALFORMED;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return NO_ANSWER;
    int rc = NO_ANSWER;
    int64_t until = now_ms() + timeout_ms;
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 || send(fd, q, (size_t)qlen, 0) != qlen)
        goto out;
    unsigned char *resp = malloc(65536);
    if (!resp)
        goto out;
    while (wait_fd(fd, POLLIN, until, c)) {
        ssize_t r = recv(fd, resp, 65536, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            break; /* e.g. ECONNREFUSED: nobody listens there */
        }
        int tc = 0;
        int n = resolve_parse_response(resp, (size_t)r, id, name, qtype, out, max, &tc);
        if (n == RESOLVE_MALFORMED)
            continue; /* not our answer: keep waiting */
        if (tc) {
            int tl = tcp_query(&ss, sl, q, qlen, resp, 65536, until, c);
            n = tl > 0 ? resolve_parse_response(resp, (size_t)tl, id, name, qtype, out, max, &tc)
                       : NO_ANSWER;
        }
        rc = n;
        break;
    }
    free(resp);
out:
    close(fd);
    return rc;
}

/* Asks the servers in turn.  >=0, RESOLVE_NXDOMAIN, or NO_ANSWER/SERVFAIL. */
static int query(const resolv_conf *rc, const char *name, int qtype, resolve_addr *out, int max,
                 const rctx *c)
{
    int last = NO_ANSWER;
    for (int a = 0; a < rc->attempts; a++) {
        for (int s = 0; s < rc->nns; s++) {
            if (cancelled(c))
                return last;
            int r = ask(rc->nameserver[s], name, qtype, out, max, rc->timeout_s * 1000, c);
            if (r >= 0 || r == RESOLVE_NXDOMAIN)
                return r;
            last = r;
        }
    }
    return last;
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
    char c[256];
    if (canon_name(name, c, sizeof(c)) != 0 || strlen(c) > 253) {
        snprintf(err, errlen, "invalid host name");
        return -1;
    }
    int n = resolve_hosts_file(o->hosts_path, c, out, max);
    if (n > 0)
        return n;

    resolv_conf rc;
    resolve_read_conf(o->resolv_path, &rc);
    rctx ctx = {.o = o, .deadline = now_ms() + (o->deadline_ms > 0 ? o->deadline_ms : 15000)};

    /* candidate names: search list before or after the name itself (ndots) */
    char cand[RESOLVE_MAX_SEARCH + 1][256];
    int ncand = 0, dots = 0;
    for (const char *p = c; *p; p++)
        dots += *p == '.';
    int absolute = name[strlen(name) - 1] == '.';
    if (absolute || dots >= rc.ndots)
        snprintf(cand[ncand++], sizeof(cand[0]), "%s", c);
    if (!absolute) {
        for (int i = 0; i < rc.nsearch; i++) {
            size_t cl = strlen(c), sl = strlen(rc.search[i]);
            if (cl + 1 + sl > 253)
                continue;
            memcpy(cand[ncand], c, cl);
            cand[ncand][cl] = '.';
            memcpy(cand[ncand] + cl + 1, rc.search[i], sl + 1);
            ncand++;
        }
        if (dots < rc.ndots)
            snprintf(cand[ncand++], sizeof(cand[0]), "%s", c);
    }

    int saw_failure = 0;
    for (int i = 0; i < ncand; i++) {
        int r = query(&rc, cand[i], QTYPE_A, out, max, &ctx);
        if (r > 0)
            return r;
        if (r == 0) {
            r = query(&rc, cand[i], QTYPE_AAAA, out, max, &ctx);
            if (r > 0)
                return r;
        }
        if (r != 0 && r != RESOLVE_NXDOMAIN)
            saw_failure = 1;
        if (cancelled(&ctx))
            break;
    }
    if (o->cancel && atomic_load(o->cancel))
        snprintf(err, errlen, "resolution of %s cancelled", c);
    else if (saw_failure)
        snprintf(err, errlen, "cannot resolve %s: no answer from the nameservers in %s", c,
                 o->resolv_path ? o->resolv_path : "/etc/resolv.conf");
    else
        snprintf(err, errlen, "cannot resolve %s: no such host", c);
    return -1;
}
