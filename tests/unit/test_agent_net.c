/* test_agent_net.c — the agent's egress proxy settings (agent/proxy.c), its
 * NSS-free resolver (agent/resolve.c, c-ares: the hosts file, resolv.conf's
 * search list and ndots, and real exchanges with a small DNS server on
 * loopback over UDP and TCP, including bad answers and silence) and the
 * metrics exposition (agent/metrics.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "proxy.h"
#include "resolve.h"

/* ---- proxy URLs ------------------------------------------------------------- */

static void test_proxy_parse(void **state)
{
    agent_proxy p;
    char err[200];
    assert_int_equal(agent_proxy_parse(&p, "http://proxy.corp:3128", err, sizeof(err)), 0);
    assert_int_equal(p.use, 1);
    assert_string_equal(p.host, "proxy.corp");
    assert_int_equal(p.port, 3128);
    assert_null(p.userinfo);
    assert_string_equal(p.display, "http://proxy.corp:3128");
    agent_proxy_free(&p);

    assert_int_equal(agent_proxy_parse(&p, "10.0.0.1:8080", err, sizeof(err)), 0);
    assert_string_equal(p.host, "10.0.0.1");
    assert_int_equal(p.port, 8080);
    agent_proxy_free(&p);

    assert_int_equal(agent_proxy_parse(&p, "HTTP://proxy/", err, sizeof(err)), 0);
    assert_int_equal(p.port, 80);
    agent_proxy_free(&p);

    assert_int_equal(agent_proxy_parse(&p, "http://[fd00::1]:3128/", err, sizeof(err)), 0);
    assert_string_equal(p.host, "fd00::1");
    assert_int_equal(p.port, 3128);
    assert_string_equal(p.display, "http://[fd00::1]:3128");
    agent_proxy_free(&p);

    /* credentials: percent-decoded, the last '@' ends them, never displayed */
    assert_int_equal(agent_proxy_parse(&p, "http://us%65r:p%40ss:w@rd@proxy:3128", err,
                                       sizeof(err)), 0);
    assert_string_equal(p.userinfo, "user:p@ss:w@rd");
    assert_string_equal(p.host, "proxy");
    assert_null(strstr(p.display, "ss"));
    agent_proxy_free(&p);
}

static void expect_proxy_error(const char *url, const char *needle)
{
    agent_proxy p;
    char err[200] = "";
    if (agent_proxy_parse(&p, url, err, sizeof(err)) == 0) {
        agent_proxy_free(&p);
        fail_msg("proxy URL %s accepted", url);
    }
    if (!strstr(err, needle))
        fail_msg("error '%s' for %s does not mention '%s'", err, url, needle);
    assert_null(strstr(err, "s3cret"));
    assert_null(p.userinfo);
}

static void test_proxy_parse_errors(void **state)
{
    expect_proxy_error("https://proxy:3128", "not supported");
    expect_proxy_error("socks5://proxy:1080", "not supported");
    expect_proxy_error("http://:3128", "host");
    expect_proxy_error("http://proxy:0", "port");
    expect_proxy_error("http://proxy:99999", "port");
    expect_proxy_error("http://proxy:12ab", "port");
    expect_proxy_error("http://proxy:", "port");
    expect_proxy_error("http://user@proxy:3128", "user:password");
    expect_proxy_error("http://u:s3cret%zz@proxy:3128", "credentials");
    expect_proxy_error("http://u:s3cret%00@proxy:3128", "credentials");
    expect_proxy_error("http://[::1:3128", "IPv6");
    expect_proxy_error("http://pro xy:3128", "invalid character");
    char longcred[300];
    snprintf(longcred, sizeof(longcred), "http://user:s3cret%0200d@proxy:1", 7);
    expect_proxy_error(longcred, "longer than");
}

static void test_no_proxy(void **state)
{
    static const struct {
        const char *list, *host;
        int port, want;
    } c[] = {
        {"*", "anything.example", 443, 1},
        {"example.com", "example.com", 443, 1},
        {"example.com", "api.example.com", 443, 1},
        {"example.com", "badexample.com", 443, 0},
        {".example.com", "api.example.com", 443, 1},
        {".example.com", "example.com", 443, 1},
        {"*.example.com", "a.b.example.com", 443, 1},
        {"EXAMPLE.com.", "api.Example.COM", 443, 1},
        {"example.com:8443", "example.com", 8443, 1},
        {"example.com:8443", "example.com", 443, 0},
        {"foo, bar ,example.com", "example.com", 1, 1},
        {"foo bar", "bar", 1, 1},
        {"10.0.0.0/8", "10.1.2.3", 443, 1},
        {"10.0.0.0/8", "11.1.2.3", 443, 0},
        {"10.0.0.0/8", "ten.example", 443, 0},
        {"127.0.0.1", "127.0.0.1", 5080, 1},
        {"127.0.0.1:5080", "127.0.0.1", 5080, 1},
        {"127.0.0.1:5080", "127.0.0.1", 5081, 0},
        {"::1", "::1", 443, 1},
        {"[::1]:443", "::1", 443, 1},
        {"fd00::/8", "fd12::1", 443, 1},
        {"fd00::/8", "fe80::1", 443, 0},
        {"", "example.com", 443, 0},
        {",,", "example.com", 443, 0},
        {"localhost", "127.0.0.1", 443, 0},
        {"10.0.0.0/99", "10.0.0.1", 443, 0},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        int got = agent_proxy_bypassed(c[i].list, c[i].host, c[i].port);
        if (got != c[i].want)
            fail_msg("NO_PROXY=\"%s\" host %s:%d: expected %d, got %d", c[i].list, c[i].host,
                     c[i].port, c[i].want, got);
    }
}

static void clear_proxy_env(void)
{
    const char *v[] = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY",
                       "no_proxy"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        unsetenv(v[i]);
}

static void test_proxy_from_env(void **state)
{
    agent_proxy p;
    char err[200];
    clear_proxy_env();
    assert_int_equal(agent_proxy_from_env(&p, "aurora.example", 443, 1, err, sizeof(err)), 0);
    assert_int_equal(p.use, 0);

    setenv("http_proxy", "http://h:1", 1);
    assert_int_equal(agent_proxy_from_env(&p, "aurora.example", 443, 1, err, sizeof(err)), 0);
    assert_int_equal(p.use, 1); /* HTTP_PROXY is the fallback for wss */
    assert_string_equal(p.source, "http_proxy");
    agent_proxy_free(&p);

    setenv("HTTPS_PROXY", "http://u:s3cret@s:2", 1);
    assert_int_equal(agent_proxy_from_env(&p, "aurora.example", 443, 1, err, sizeof(err)), 0);
    assert_string_equal(p.host, "s");
    assert_string_equal(p.source, "HTTPS_PROXY");
    assert_string_equal(p.userinfo, "u:s3cret");
    agent_proxy_free(&p);

    /* ws:// only looks at HTTP_PROXY */
    assert_int_equal(agent_proxy_from_env(&p, "aurora.example", 80, 0, err, sizeof(err)), 0);
    assert_string_equal(p.host, "h");
    agent_proxy_free(&p);

    setenv("no_proxy", ".example", 1);
    assert_int_equal(agent_proxy_from_env(&p, "aurora.example", 443, 1, err, sizeof(err)), 0);
    assert_int_equal(p.use, 0);
    assert_string_equal(p.bypass, "no_proxy");
    agent_proxy_free(&p);

    setenv("HTTPS_PROXY", "ftp://u:s3cret@s:2", 1);
    unsetenv("no_proxy");
    assert_int_equal(agent_proxy_from_env(&p, "aurora.example", 443, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "HTTPS_PROXY"));
    assert_null(strstr(err, "s3cret"));
    clear_proxy_env();
}

/* ---- the resolver (c-ares) against a DNS server on loopback ---------------------- */

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *content)
{
    static char path[160];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/agent-net-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
    }
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

/* an answer record: owner NULL means "the question name" (a pointer to it) */
typedef struct {
    const char *owner;
    int type;
    const unsigned char *rdata;
    int rdlen;
    const char *cname; /* CNAME target as a name */
} rr;

static size_t put_name(unsigned char *b, const char *name)
{
    size_t k = 0;
    const char *p = name;
    while (*p) {
        const char *d = strchr(p, '.');
        size_t l = d ? (size_t)(d - p) : strlen(p);
        b[k++] = (unsigned char)l;
        memcpy(b + k, p, l);
        k += l;
        p += l;
        if (*p == '.')
            p++;
    }
    b[k++] = 0;
    return k;
}

/* A response to the query q whose question ends at qend: its header and
 * question, the flags QR RD RA [TC], rcode, and the answer records. */
static size_t make_response(const unsigned char *q, size_t qend, int rcode, int tc,
                            const rr *ans, int nans, unsigned char *out)
{
    memcpy(out, q, qend);
    out[2] = (unsigned char)(0x80 | 0x01 | (tc ? 0x02 : 0));
    out[3] = (unsigned char)(0x80 | rcode);
    out[4] = 0;
    out[5] = 1;
    out[6] = 0;
    out[7] = (unsigned char)nans;
    memset(out + 8, 0, 4); /* no authority, no additional records */
    size_t k = qend;
    for (int i = 0; i < nans; i++) {
        if (ans[i].owner) {
            k += put_name(out + k, ans[i].owner);
        } else {
            out[k++] = 0xc0;
            out[k++] = 12;
        }
        out[k++] = 0;
        out[k++] = (unsigned char)ans[i].type;
        out[k++] = 0;
        out[k++] = 1;
        memset(out + k, 0, 4);
        out[k + 3] = 60;
        k += 4;
        if (ans[i].cname) {
            unsigned char nb[300];
            size_t nl = put_name(nb, ans[i].cname);
            out[k++] = 0;
            out[k++] = (unsigned char)nl;
            memcpy(out + k, nb, nl);
            k += nl;
        } else {
            out[k++] = 0;
            out[k++] = (unsigned char)ans[i].rdlen;
            memcpy(out + k, ans[i].rdata, (size_t)ans[i].rdlen);
            k += (size_t)ans[i].rdlen;
        }
    }
    return k;
}

typedef struct {
    int udp, tcp, port;
    atomic_int stop;
    atomic_int udp_queries, tcp_queries;
    char names[64][128]; /* questions seen, in order: "name/qtype/udp|tcp" */
    atomic_int nnames;
    unsigned char held[512]; /* dual.example's A answer, sent after the AAAA one */
    size_t heldlen;
    int dual_aaaa_sent; /* the AAAA answer went out before any A question */
    pthread_t thr;
} dns_server;

static void send_to(int fd, const void *b, size_t l, const struct sockaddr_in *to)
{
    if (sendto(fd, b, l, 0, (const struct sockaddr *)to, sizeof(*to)) != (ssize_t)l)
        fprintf(stderr, "test DNS server: sendto failed\n");
}

/* The zone:
 *   svc.corp.example   A 10.9.8.7
 *   big.example        A 10.9.8.6, over TCP only (the UDP answer is truncated)
 *   slow.example       never answered
 *   dual.example       A 10.0.0.1 and AAAA fd00::1; the A answer comes last
 *   six.example        AAAA fd00::5 only
 *   alias.example      CNAME edge.example, A 10.0.0.2; plus an A 6.6.6.6 for
 *                      evil.example in the same answer (not on the chain)
 *   many.example       20 A records 10.0.1.1 … 10.0.1.20
 *   noise.example      A 10.0.0.3, after junk: a short packet, a wrong id,
 *                      another question with the right id
 *   badrr.example      an answer record cut short (its length runs past the end)
 *   ptrloop.example    an answer whose owner name is a pointer to itself
 *   fail.example       SERVFAIL
 *   everything else    NXDOMAIN
 * Returns the length of the reply in out (0: none, or already sent). */
static size_t dns_answer(dns_server *s, const unsigned char *q, size_t ql, int over_tcp,
                         const struct sockaddr_in *from, unsigned char *out)
{
    char name[128] = "";
    size_t k = 12, n = 0;
    while (k < ql && q[k] && q[k] < 64 && k + 1 + q[k] < ql && n + 65 < sizeof(name)) {
        if (n)
            name[n++] = '.';
        memcpy(name + n, q + k + 1, q[k]);
        n += q[k];
        k += 1 + q[k];
    }
    name[n] = '\0';
    if (k + 5 > ql)
        return 0;
    int qtype = (q[k + 1] << 8) | q[k + 2];
    size_t qend = k + 5;
    int i = atomic_load(&s->nnames);
    if (i < 64) {
        snprintf(s->names[i], sizeof(s->names[i]), "%.100s/%d/%s", name, qtype,
                 over_tcp ? "tcp" : "udp");
        atomic_store(&s->nnames, i + 1);
    }

    static const unsigned char svc_ip[4] = {10, 9, 8, 7}, big_ip[4] = {10, 9, 8, 6},
                               dual4[4] = {10, 0, 0, 1}, edge_ip[4] = {10, 0, 0, 2},
                               noise_ip[4] = {10, 0, 0, 3}, evil_ip[4] = {6, 6, 6, 6};
    static const unsigned char dual6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
                               six6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
    int is_a = qtype == 1, is_aaaa = qtype == 28;
    if (!strcmp(name, "slow.example"))
        return 0;
    if (!strcmp(name, "svc.corp.example")) {
        rr a[] = {{NULL, 1, svc_ip, 4, NULL}};
        return make_response(q, qend, 0, 0, a, is_a, out);
    }
    if (!strcmp(name, "big.example")) {
        rr a[] = {{NULL, 1, big_ip, 4, NULL}};
        if (is_a && !over_tcp)
            return make_response(q, qend, 0, 1, NULL, 0, out);
        return make_response(q, qend, 0, 0, a, is_a, out);
    }
    if (!strcmp(name, "dual.example") && from) {
        if (is_a) {
            rr a[] = {{NULL, 1, dual4, 4, NULL}};
            if (s->dual_aaaa_sent) /* asked in the other order: answer at once */
                return make_response(q, qend, 0, 0, a, 1, out);
            s->heldlen = make_response(q, qend, 0, 0, a, 1, s->held);
            return 0;
        }
        rr six[] = {{NULL, 28, dual6, 16, NULL}};
        size_t l = make_response(q, qend, 0, 0, six, is_aaaa, out);
        send_to(s->udp, out, l, from);
        s->dual_aaaa_sent = !s->heldlen;
        if (s->heldlen)
            send_to(s->udp, s->held, s->heldlen, from);
        s->heldlen = 0;
        return 0;
    }
    if (!strcmp(name, "six.example")) {
        rr six[] = {{NULL, 28, six6, 16, NULL}};
        return make_response(q, qend, 0, 0, six, is_aaaa, out);
    }
    if (!strcmp(name, "alias.example")) {
        rr chain[] = {{"evil.example", 1, evil_ip, 4, NULL},
                      {NULL, 5, NULL, 0, "edge.example"},
                      {"edge.example", 1, edge_ip, 4, NULL}};
        return is_a ? make_response(q, qend, 0, 0, chain, 3, out)
                    : make_response(q, qend, 0, 0, chain + 1, 1, out);
    }
    if (!strcmp(name, "many.example")) {
        static unsigned char ips[20][4];
        rr a[20];
        for (int j = 0; j < 20; j++) {
            ips[j][0] = 10, ips[j][1] = 0, ips[j][2] = 1, ips[j][3] = (unsigned char)(j + 1);
            a[j] = (rr){NULL, 1, ips[j], 4, NULL};
        }
        return make_response(q, qend, 0, 0, a, is_a ? 20 : 0, out);
    }
    if (!strcmp(name, "noise.example") && from) {
        rr a[] = {{NULL, 1, noise_ip, 4, NULL}};
        send_to(s->udp, "\x12\x34\x81\x80\x00", 5, from);            /* shorter than a header */
        size_t l = make_response(q, qend, 0, 0, a, is_a, out);
        out[0] ^= 0x5a;                                              /* another id */
        send_to(s->udp, out, l, from);
        unsigned char other[512];
        memcpy(other, q, 12);
        size_t ol = 12 + put_name(other + 12, "evil.example");
        memcpy(other + ol, q + qend - 4, 4);
        ol = make_response(other, ol + 4, 0, 0, a, is_a, out);       /* another question */
        send_to(s->udp, out, ol, from);
        return make_response(q, qend, 0, 0, a, is_a, out);
    }
    if (!strcmp(name, "badrr.example")) {
        rr a[] = {{NULL, 1, svc_ip, 4, NULL}};
        size_t l = make_response(q, qend, 0, 0, a, 1, out);
        return l - 3; /* rdlength says 4, one byte is left */
    }
    if (!strcmp(name, "ptrloop.example")) {
        rr a[] = {{NULL, 1, svc_ip, 4, NULL}};
        size_t l = make_response(q, qend, 0, 0, a, 1, out);
        out[qend] = 0xc0; /* the owner name points at itself */
        out[qend + 1] = (unsigned char)qend;
        return l;
    }
    if (!strcmp(name, "fail.example"))
        return make_response(q, qend, 2, 0, NULL, 0, out);
    return make_response(q, qend, 3, 0, NULL, 0, out);
}

static void *dns_main(void *arg)
{
    dns_server *s = arg;
    unsigned char buf[1500], out[1500];
    while (!atomic_load(&s->stop)) {
        struct pollfd p[2] = {{.fd = s->udp, .events = POLLIN}, {.fd = s->tcp, .events = POLLIN}};
        if (poll(p, 2, 50) <= 0)
            continue;
        if (p[0].revents) {
            struct sockaddr_in from;
            socklen_t fl = sizeof(from);
            ssize_t r = recvfrom(s->udp, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
            if (r > 12) {
                atomic_fetch_add(&s->udp_queries, 1);
                size_t ol = dns_answer(s, buf, (size_t)r, 0, &from, out);
                if (ol)
                    send_to(s->udp, out, ol, &from);
            }
        }
        if (p[1].revents) {
            int c = accept(s->tcp, NULL, NULL);
            if (c < 0)
                continue;
            struct timeval tv = {.tv_sec = 2};
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            unsigned char lb[2];
            if (recv(c, lb, 2, MSG_WAITALL) == 2) {
                size_t l = ((size_t)lb[0] << 8) | lb[1];
                if (l <= sizeof(buf) && recv(c, buf, l, MSG_WAITALL) == (ssize_t)l) {
                    atomic_fetch_add(&s->tcp_queries, 1);
                    size_t ol = dns_answer(s, buf, l, 1, NULL, out + 2);
                    out[0] = (unsigned char)(ol >> 8);
                    out[1] = (unsigned char)ol;
                    if (ol)
                        send(c, out, ol + 2, MSG_NOSIGNAL);
                }
            }
            close(c);
        }
    }
    return NULL;
}

static void dns_start(dns_server *s)
{
    memset(s, 0, sizeof(*s));
    /* UDP and TCP on one port, as a nameserver listens: the kernel picks a
     * free UDP port, which another program may hold for TCP — then pick
     * again rather than fail the test. */
    int bound = 0;
    for (int attempt = 0; attempt < 64 && !bound; attempt++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s->udp = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(s->udp >= 0);
        assert_int_equal(bind(s->udp, (struct sockaddr *)&a, sizeof(a)), 0);
        socklen_t al = sizeof(a);
        getsockname(s->udp, (struct sockaddr *)&a, &al);
        s->port = ntohs(a.sin_port);
        s->tcp = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(s->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        bound = bind(s->tcp, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (!bound) {
            close(s->tcp);
            close(s->udp);
        }
    }
    assert_true(bound);
    assert_int_equal(listen(s->tcp, 8), 0);
    assert_int_equal(pthread_create(&s->thr, NULL, dns_main, s), 0);
}

static void dns_stop(dns_server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thr, NULL);
    close(s->udp);
    close(s->tcp);
}

static void dns_forget(dns_server *s)
{
    atomic_store(&s->nnames, 0);
    atomic_store(&s->udp_queries, 0);
    atomic_store(&s->tcp_queries, 0);
}

/* the index of entry among the questions seen, or -1 */
static int dns_seen(dns_server *s, const char *entry)
{
    int n = atomic_load(&s->nnames);
    for (int i = 0; i < n && i < 64; i++)
        if (!strcmp(s->names[i], entry))
            return i;
    return -1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* resolves name, expecting failure with needle in the error; returns the ms it took */
static int64_t expect_resolve_error(const char *name, const resolve_opts *o, const char *needle)
{
    resolve_addr a[RESOLVE_MAX_ADDRS];
    char err[512] = "";
    int64_t t0 = mono_ms();
    int n = agent_resolve(name, o, a, RESOLVE_MAX_ADDRS, err, sizeof(err));
    int64_t took = mono_ms() - t0;
    if (n != -1)
        fail_msg("%s resolved (%d addresses, the first %s)", name, n, n > 0 ? a[0].ip : "-");
    if (!strstr(err, needle))
        fail_msg("error '%s' for %s does not mention '%s'", err, name, needle);
    return took;
}

static void expect_resolves_to(const char *name, const resolve_opts *o, const char *ip)
{
    resolve_addr a[RESOLVE_MAX_ADDRS];
    char err[512] = "";
    int n = agent_resolve(name, o, a, RESOLVE_MAX_ADDRS, err, sizeof(err));
    if (n != 1)
        fail_msg("%s: expected 1 address (%s), got %d (%s; first %s)", name, ip, n, err,
                 n > 0 ? a[0].ip : "-");
    assert_string_equal(a[0].ip, ip);
}

/* resolv_std waits 10 s for an answer: the tests that use it expect one
 * from the DNS thread of this process, which on a loaded machine may wait
 * seconds for a CPU (timeout:1 gave it one second).  resolv_short
 * (timeout:1) is for the test of the waits themselves. */
static char resolv_std[160], resolv_short[160], resolv_slow[160], resolv_ndots2[160];

static void write_resolv_confs(void)
{
    snprintf(resolv_std, sizeof(resolv_std), "%s",
             write_tmp("resolv.conf", "# test\n"
                                      "nameserver 127.0.0.1\n"
                                      "search corp.example\n"
                                      "options ndots:1 timeout:10 attempts:1\n"));
    snprintf(resolv_short, sizeof(resolv_short), "%s",
             write_tmp("resolv-short.conf", "nameserver 127.0.0.1\n"
                                            "search corp.example\n"
                                            "options ndots:1 timeout:1 attempts:1\n"));
    snprintf(resolv_slow, sizeof(resolv_slow), "%s",
             write_tmp("resolv-slow.conf", "nameserver 127.0.0.1\n"
                                           "options timeout:5 attempts:3\n"));
    snprintf(resolv_ndots2, sizeof(resolv_ndots2), "%s",
             write_tmp("resolv-ndots2.conf", "nameserver 127.0.0.1\n"
                                             "search corp.example\n"
                                             "options ndots:2 timeout:10 attempts:1\n"));
}

/* /etc/hosts comes first (here the file named by $CARES_HOSTS): no DNS question
 * for a name it has; IPv4 kept when there is one; names compare without case */
static void test_resolver_hosts_file(void **state)
{
    write_resolv_confs();
    setenv("CARES_HOSTS",
           write_tmp("hosts", "# comment\n"
                              "::1 localhost ip6-localhost\n"
                              "127.0.0.1\tlocalhost\n"
                              "10.1.2.3 Aurora.TEST aurora # trailing\n"
                              "bogus line here\n"
                              "10.1.2.4 other\n"
                              "fd00::5 aurora.test v6only.test\n"
                              "10.1.2.3 aurora.test\n"),
           1);
    dns_server s;
    dns_start(&s);
    resolve_opts o = {.resolv_path = resolv_std, .hosts_from_env = 1, .port = s.port,
                      .deadline_ms = 20000};
    resolve_addr a[RESOLVE_MAX_ADDRS];
    char err[256];
    expect_resolves_to("localhost", &o, "127.0.0.1");
    expect_resolves_to("aurora.test", &o, "10.1.2.3"); /* once, though listed twice */
    expect_resolves_to("AURORA.test", &o, "10.1.2.3");
    expect_resolves_to("aurora", &o, "10.1.2.3");      /* an alias */
    expect_resolves_to("other", &o, "10.1.2.4");
    expect_resolves_to("v6only.test", &o, "fd00::5");
    assert_int_equal(agent_resolve("aurora.test", &o, a, 1, err, sizeof(err)), 1);
    assert_int_equal(atomic_load(&s.udp_queries), 0);
    assert_int_equal(atomic_load(&s.tcp_queries), 0);

    /* not in the file: asked of DNS */
    expect_resolve_error("nothere.test", &o, "no such host");
    assert_true(dns_seen(&s, "nothere.test/1/udp") >= 0);
    expect_resolves_to("svc.corp.example", &o, "10.9.8.7");

    /* no $HOSTALIASES file: /etc/hosts and resolv.conf only */
    setenv("HOSTALIASES", write_tmp("aliases", "svcalias svc.corp.example\n"), 1);
    expect_resolve_error("svcalias", &o, "no such host");
    unsetenv("HOSTALIASES");

    /* a missing hosts file is no error: DNS answers */
    setenv("CARES_HOSTS", "/nonexistent/hosts", 1);
    expect_resolves_to("svc.corp.example", &o, "10.9.8.7");
    dns_stop(&s);
    unsetenv("CARES_HOSTS");
}

static void test_resolver_dns(void **state)
{
    write_resolv_confs();
    setenv("CARES_HOSTS", write_tmp("hosts-empty", "127.0.0.1 localhost\n"), 1);
    dns_server s;
    dns_start(&s);
    resolve_opts o = {.resolv_path = resolv_std, .hosts_from_env = 1, .port = s.port,
                      .deadline_ms = 20000};
    resolve_addr a[RESOLVE_MAX_ADDRS];
    char err[256];

    /* numeric: as is, nothing asked */
    expect_resolves_to("192.0.2.7", &o, "192.0.2.7");
    expect_resolves_to("::1", &o, "::1");
    assert_int_equal(atomic_load(&s.udp_queries), 0);

    /* "svc" has fewer dots than ndots (1): the search list first */
    expect_resolves_to("svc", &o, "10.9.8.7");
    assert_int_equal(dns_seen(&s, "svc.corp.example/1/udp"), 0);

    /* ndots:2: "svc.corp" (one dot) also gets the search list first ... */
    dns_forget(&s);
    resolve_opts o2 = o;
    o2.resolv_path = resolv_ndots2;
    expect_resolve_error("svc.corp", &o2, "no such host");
    assert_int_equal(dns_seen(&s, "svc.corp.corp.example/1/udp"), 0);
    assert_true(dns_seen(&s, "svc.corp/1/udp") > 0);
    /* ... which with ndots:1 is asked as is first */
    dns_forget(&s);
    expect_resolve_error("svc.corp", &o, "no such host");
    assert_int_equal(dns_seen(&s, "svc.corp/1/udp"), 0);
    assert_true(dns_seen(&s, "svc.corp.corp.example/1/udp") > 0);

    /* NXDOMAIN everywhere: the name as is, then with the search domain */
    dns_forget(&s);
    expect_resolve_error("nope.example", &o, "no such host");
    assert_int_equal(dns_seen(&s, "nope.example/1/udp"), 0);
    assert_true(dns_seen(&s, "nope.example.corp.example/1/udp") > 0);
    /* an absolute name: no search */
    dns_forget(&s);
    expect_resolve_error("svc.", &o, "no such host");
    assert_true(dns_seen(&s, "svc/1/udp") >= 0);
    assert_int_equal(dns_seen(&s, "svc.corp.example/1/udp"), -1);

    /* truncated over UDP: asked again over TCP */
    dns_forget(&s);
    expect_resolves_to("big.example", &o, "10.9.8.6");
    assert_int_equal(dns_seen(&s, "big.example/1/udp"), 0);
    assert_true(dns_seen(&s, "big.example/1/tcp") > 0);
    assert_true(atomic_load(&s.tcp_queries) >= 1);

    /* A and AAAA: the IPv4 address is kept, even when it arrives last */
    dns_forget(&s);
    expect_resolves_to("dual.example", &o, "10.0.0.1");
    assert_true(dns_seen(&s, "dual.example/28/udp") >= 0);
    /* only AAAA: the IPv6 address */
    expect_resolves_to("six.example", &o, "fd00::5");
    /* a CNAME chain; an A record for a name off the chain is not taken */
    expect_resolves_to("alias.example", &o, "10.0.0.2");
    /* more addresses than room: max of them, no overflow */
    assert_int_equal(agent_resolve("many.example", &o, a, RESOLVE_MAX_ADDRS, err, sizeof(err)),
                     RESOLVE_MAX_ADDRS);
    assert_string_equal(a[0].ip, "10.0.1.1");
    assert_string_equal(a[RESOLVE_MAX_ADDRS - 1].ip, "10.0.1.8");
    assert_int_equal(agent_resolve("many.example", &o, a, 3, err, sizeof(err)), 3);
    assert_int_equal(agent_resolve("many.example", &o, a, 0, err, sizeof(err)), -1);
    dns_stop(&s);
    unsetenv("CARES_HOSTS");
}

/* Every bad answer: a clear error, and the resolver answers the next question. */
static void test_resolver_bad_answers(void **state)
{
    write_resolv_confs();
    setenv("CARES_HOSTS", write_tmp("hosts-empty", "127.0.0.1 localhost\n"), 1);
    dns_server s;
    dns_start(&s);
    resolve_opts o = {.resolv_path = resolv_std, .hosts_from_env = 1, .port = s.port,
                      .deadline_ms = 20000};

    /* junk before the answer (short packet, wrong id, another question) is ignored */
    expect_resolves_to("noise.example", &o, "10.0.0.3");
    /* a record cut short, a compression pointer loop: refused as misformatted */
    expect_resolve_error("badrr.example", &o, "Misformatted");
    expect_resolves_to("svc.corp.example", &o, "10.9.8.7");
    expect_resolve_error("ptrloop.example", &o, "Misformatted");
    expect_resolves_to("svc.corp.example", &o, "10.9.8.7");
    /* SERVFAIL: no answer */
    expect_resolve_error("fail.example", &o, "no answer from the nameservers");
    expect_resolves_to("svc.corp.example", &o, "10.9.8.7");
    /* names that cannot be asked */
    expect_resolve_error("bad name", &o, "invalid host name");
    expect_resolve_error("a..b", &o, "invalid host name");
    expect_resolve_error(".", &o, "invalid host name");
    expect_resolve_error("", &o, "invalid host name");
    char longlabel[80], longname[300];
    memset(longlabel, 'x', 64);
    longlabel[64] = '\0';
    expect_resolve_error(longlabel, &o, "invalid host name");
    memset(longname, 'a', sizeof(longname));
    for (size_t i = 50; i < 254; i += 51)
        longname[i] = '.';
    longname[254] = '\0';
    expect_resolve_error(longname, &o, "invalid host name");
    expect_resolve_error("nul\x01.example", &o, "invalid host name");
    expect_resolves_to("svc.corp.example", &o, "10.9.8.7");
    dns_stop(&s);
    unsetenv("CARES_HOSTS");
}

static void *cancel_later(void *arg)
{
    struct timespec ts = {.tv_nsec = 200 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

/* Every wait is bounded: by resolv.conf's timeout × attempts, by the deadline,
 * by the cancel flag. */
static void test_resolver_bounds(void **state)
{
    write_resolv_confs();
    setenv("CARES_HOSTS", write_tmp("hosts-empty", "127.0.0.1 localhost\n"), 1);
    dns_server s;
    dns_start(&s);
    /* The deadline is far (the other tests' 20 s): it is not what ends these
     * waits, and the answer of the DNS thread of this process (the missing
     * resolv.conf below) may wait seconds for a CPU on a loaded machine. */
    resolve_opts o = {.resolv_path = resolv_short, .hosts_from_env = 1, .port = s.port,
                      .deadline_ms = 20000};

    /* never answered: timeout:1 attempts:1 (not the deadline) */
    int64_t took = expect_resolve_error("slow.example", &o, "no answer from the nameservers");
    assert_true(took >= 900 && took < 15000);

    /* the deadline comes first (timeout:5 attempts:3 would take 35 s) */
    resolve_opts slow = o;
    slow.resolv_path = resolv_slow;
    slow.deadline_ms = 400;
    took = expect_resolve_error("slow.example", &slow, "within 400 ms");
    assert_true(took >= 350 && took < 15000);

    /* cancelled while waiting (as agent_tunnel_teardown does) */
    atomic_int cancel = 0;
    slow.cancel = &cancel;
    slow.deadline_ms = 20000;
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, cancel_later, &cancel), 0);
    took = expect_resolve_error("slow.example", &slow, "cancelled");
    pthread_join(thr, NULL);
    assert_true(took < 10000); /* not the 20 s deadline */
    /* already cancelled: nothing asked */
    dns_forget(&s);
    took = expect_resolve_error("svc.corp.example", &slow, "cancelled");
    assert_true(took < 4000); /* not one 5 s try */

    /* a missing resolv.conf: nameserver 127.0.0.1 (here on the test port) */
    resolve_opts none = o;
    none.resolv_path = "/nonexistent/resolv.conf";
    expect_resolves_to("svc.corp.example", &none, "10.9.8.7");

    /* nobody listening: an error within timeout × attempts (c-ares 1.18 does not
     * always fail at once on ICMP port unreachable: with two queries on one
     * socket the error can reach the other query's send) */
    dns_stop(&s);
    took = expect_resolve_error("svc.corp.example", &o, "no answer from the nameservers");
    assert_true(took < 15000); /* not the deadline */
    unsetenv("CARES_HOSTS");
}

/* ---- metrics ------------------------------------------------------------------- */

static void test_metrics_render(void **state)
{
    metrics_init("v\"1\n", "readonly");
    metrics_state_set(MS_CONNECTED);
    metrics_connected();
    metrics_reconnect();
    metrics_command(MK_KUBECTL, MR_SUCCESS, 40);
    metrics_command(MK_KUBECTL, MR_SUCCESS, 400);
    metrics_command(MK_KUBECTL, metrics_result_of("TIMEOUT", 124), 500000);
    metrics_command(MK_KUBECTL, metrics_result_of("POLICY_DENIED", 126), -1);
    metrics_command(metrics_kind_of("weird"), MR_BAD_REQUEST, -1);
    metrics_policy_denial();
    metrics_in_flight(2);
    metrics_in_flight(-1);
    metrics_bytes(1, 1000);
    metrics_bytes(2, 24);
    /* paused twice (a repeat while paused is one pause), resumed, paused again */
    metrics_reading_paused(1);
    metrics_reading_paused(1);
    metrics_reading_paused(0);
    metrics_reading_paused(1);
    size_t n = 0;
    char *t = metrics_render(&n);
    assert_non_null(t);
    assert_int_equal(strlen(t), n);
    static const char *const want[] = {
        "# TYPE aurora_agent_connected gauge\naurora_agent_connected 1\n",
        "aurora_agent_info{version=\"v_1_\",policy_mode=\"readonly\"} 1\n",
        "aurora_agent_connection_state{state=\"connected\"} 1\n",
        "aurora_agent_connection_state{state=\"resolving\"} 0\n",
        "aurora_agent_connects_total 1\n",
        "aurora_agent_reconnects_total 1\n",
        "aurora_agent_commands_total{kind=\"kubectl\",result=\"success\"} 2\n",
        "aurora_agent_commands_total{kind=\"kubectl\",result=\"timeout\"} 1\n",
        "aurora_agent_commands_total{kind=\"kubectl\",result=\"policy_denied\"} 1\n",
        "aurora_agent_commands_total{kind=\"other\",result=\"bad_request\"} 1\n",
        "# TYPE aurora_agent_command_duration_seconds histogram\n",
        "aurora_agent_command_duration_seconds_bucket{kind=\"kubectl\",le=\"0.05\"} 1\n",
        "aurora_agent_command_duration_seconds_bucket{kind=\"kubectl\",le=\"0.5\"} 2\n",
        "aurora_agent_command_duration_seconds_bucket{kind=\"kubectl\",le=\"300\"} 2\n",
        "aurora_agent_command_duration_seconds_bucket{kind=\"kubectl\",le=\"+Inf\"} 3\n",
        "aurora_agent_command_duration_seconds_count{kind=\"kubectl\"} 3\n",
        "aurora_agent_command_duration_seconds_sum{kind=\"kubectl\"} 500.440\n",
        "aurora_agent_commands_in_flight 1\n",
        "aurora_agent_output_bytes_total{channel=\"stdout\"} 1000\n",
        "aurora_agent_output_bytes_total{channel=\"stderr\"} 24\n",
        "aurora_agent_policy_denials_total 1\n",
        "# TYPE aurora_agent_reading_paused gauge\naurora_agent_reading_paused 1\n",
        "# TYPE aurora_agent_reading_pauses_total counter\naurora_agent_reading_pauses_total 2\n",
        "# HELP process_resident_memory_bytes",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(t, want[i]))
            fail_msg("metrics lack [%s]:\n%s", want[i], t);
    /* every sample line belongs to a declared metric family */
    char *save = NULL;
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        assert_true(line[0] == '#' || !strncmp(line, "aurora_agent_", 13) ||
                    !strncmp(line, "process_", 8));
    free(t);
}

/* Removes every file write_tmp made, by listing the directory: a list of
 * names kept here missed resolv-short.conf, so each run left its directory
 * behind. */
static int cleanup(void **state)
{
    if (!tmpdir[0])
        return 0;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char path[160];
            snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    if (rmdir(tmpdir) != 0) {
        fprintf(stderr, "cleanup: rmdir %s: %s\n", tmpdir, strerror(errno));
        return -1; /* the group's teardown fails: something was left */
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_parse),
        cmocka_unit_test(test_proxy_parse_errors),
        cmocka_unit_test(test_no_proxy),
        cmocka_unit_test(test_proxy_from_env),
        cmocka_unit_test(test_resolver_hosts_file),
        cmocka_unit_test(test_resolver_dns),
        cmocka_unit_test(test_resolver_bad_answers),
        cmocka_unit_test(test_resolver_bounds),
        cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests_name("agent_net", tests, NULL, cleanup);
}
