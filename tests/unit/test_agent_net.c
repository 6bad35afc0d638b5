/* test_agent_net.c — the agent's egress proxy settings (agent/proxy.c), its
 * NSS-free resolver (agent/resolve.c: /etc/hosts, resolv.conf, DNS messages,
 * and a real exchange with a small DNS server on loopback, UDP and TCP) and
 * the metrics exposition (agent/metrics.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* ---- hosts / resolv.conf ------------------------------------------------------ */

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

static void test_hosts_file(void **state)
{
    const char *p = write_tmp("hosts", "# comment\n"
                                       "::1 localhost ip6-localhost\n"
                                       "127.0.0.1\tlocalhost\n"
                                       "10.1.2.3 Aurora.TEST aurora # trailing\n"
                                       "bogus line here\n"
                                       "10.1.2.4 other\n"
                                       "fd00::5 aurora.test\n");
    resolve_addr a[8];
    int n = resolve_hosts_file(p, "localhost", a, 8);
    assert_int_equal(n, 2);
    assert_string_equal(a[0].ip, "127.0.0.1"); /* IPv4 first */
    assert_string_equal(a[1].ip, "::1");
    n = resolve_hosts_file(p, "aurora.test.", a, 8);
    assert_int_equal(n, 2);
    assert_string_equal(a[0].ip, "10.1.2.3");
    assert_string_equal(a[1].ip, "fd00::5");
    assert_int_equal(resolve_hosts_file(p, "AURORA", a, 8), 1);
    assert_int_equal(resolve_hosts_file(p, "nothere", a, 8), 0);
    assert_int_equal(resolve_hosts_file("/nonexistent/hosts", "localhost", a, 8), 0);
    assert_int_equal(resolve_hosts_file(p, "localhost", a, 1), 1);
}

static void test_resolv_conf(void **state)
{
    resolv_conf rc;
    resolve_read_conf("/nonexistent/resolv.conf", &rc);
    assert_int_equal(rc.nns, 1);
    assert_string_equal(rc.nameserver[0], "127.0.0.1");
    assert_int_equal(rc.ndots, 1);
    assert_int_equal(rc.timeout_s, 5);
    assert_int_equal(rc.attempts, 2);

    const char *p = write_tmp("resolv.conf",
                              "# kube\n"
                              "domain ignored.example\n"
                              "search prod.svc.cluster.local svc.cluster.local cluster.local\n"
                              "nameserver 10.96.0.10\n"
                              "nameserver bogus\n"
                              "nameserver fd00::a\n"
                              "nameserver 10.0.0.2\n"
                              "nameserver 10.0.0.3\n"
                              "options ndots:5 timeout:1 attempts:9 rotate\n");
    resolve_read_conf(p, &rc);
    assert_int_equal(rc.nns, 3);
    assert_string_equal(rc.nameserver[0], "10.96.0.10");
    assert_string_equal(rc.nameserver[1], "fd00::a");
    assert_string_equal(rc.nameserver[2], "10.0.0.2");
    assert_int_equal(rc.nsearch, 3);
    assert_string_equal(rc.search[0], "prod.svc.cluster.local");
    assert_int_equal(rc.ndots, 5);
    assert_int_equal(rc.timeout_s, 1);
    assert_int_equal(rc.attempts, 5);
}

/* ---- DNS messages ------------------------------------------------------------- */

/* builds a response to query q (qlen bytes): rcode, flags, and answer records */
typedef struct {
    const char *owner; /* NULL: pointer to the question name */
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

static size_t make_response(const unsigned char *q, size_t qlen, int rcode, int tc,
                            const rr *ans, int nans, unsigned char *out)
{
    memcpy(out, q, qlen);
    out[2] = (unsigned char)(0x80 | 0x01 | (tc ? 0x02 : 0)); /* QR RD [TC] */
    out[3] = (unsigned char)(0x80 | rcode);                  /* RA */
    out[6] = 0;
    out[7] = (unsigned char)nans;
    size_t k = qlen;
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

static void test_dns_messages(void **state)
{
    unsigned char q[600], r[1500];
    int ql = resolve_build_query("Aurora.Example.", 1, 0x1234, q, sizeof(q));
    assert_true(ql > 12);
    assert_int_equal(q[0], 0x12);
    assert_int_equal(q[1], 0x34);
    assert_int_equal(q[12], 6);
    assert_memory_equal(q + 13, "aurora", 6);
    assert_int_equal(resolve_build_query("a..b", 1, 1, q, sizeof(q)), -1);
    char longlabel[80];
    memset(longlabel, 'x', 64);
    longlabel[64] = '\0';
    assert_int_equal(resolve_build_query(longlabel, 1, 1, q, sizeof(q)), -1);
    assert_int_equal(resolve_build_query("", 1, 1, q, sizeof(q)), -1);
    assert_int_equal(resolve_build_query("bad name", 1, 1, q, sizeof(q)), -1);

    ql = resolve_build_query("aurora.example", 1, 0x1234, q, sizeof(q));
    static const unsigned char ip1[4] = {10, 0, 0, 1}, ip2[4] = {10, 0, 0, 2},
                               ipx[4] = {6, 6, 6, 6};
    resolve_addr a[8];
    int tc;
    /* A records, one duplicated, one for another name (ignored) */
    rr simple[] = {{NULL, 1, ip1, 4, NULL}, {NULL, 1, ip2, 4, NULL}, {NULL, 1, ip1, 4, NULL},
                   {"evil.example", 1, ipx, 4, NULL}};
    size_t rl = make_response(q, (size_t)ql, 0, 0, simple, 4, r);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc), 2);
    assert_string_equal(a[0].ip, "10.0.0.1");
    assert_string_equal(a[1].ip, "10.0.0.2");
    assert_int_equal(tc, 0);
    /* wrong id, wrong question, truncated packet */
    assert_int_equal(resolve_parse_response(r, rl, 0x4321, "aurora.example", 1, a, 8, &tc),
                     RESOLVE_MALFORMED);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "other.example", 1, a, 8, &tc),
                     RESOLVE_MALFORMED);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 28, a, 8, &tc),
                     RESOLVE_MALFORMED);
    assert_int_equal(resolve_parse_response(r, rl - 3, 0x1234, "aurora.example", 1, a, 8, &tc),
                     RESOLVE_MALFORMED);
    assert_int_equal(resolve_parse_response(q, (size_t)ql, 0x1234, "aurora.example", 1, a, 8,
                                            &tc),
                     RESOLVE_MALFORMED); /* a query, not a response */
    /* CNAME chain */
    rr chain[] = {{"x.cdn.example", 1, ip2, 4, NULL},
                  {NULL, 5, NULL, 0, "edge.example"},
                  {"edge.example", 5, NULL, 0, "x.cdn.example"},
                  {"edge.example", 1, ipx, 4, NULL}};
    rl = make_response(q, (size_t)ql, 0, 0, chain, 4, r);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc), 1);
    assert_string_equal(a[0].ip, "10.0.0.2");
    /* CNAME loop: nothing */
    rr loop[] = {{NULL, 5, NULL, 0, "b.example"}, {"b.example", 5, NULL, 0, "aurora.example"}};
    rl = make_response(q, (size_t)ql, 0, 0, loop, 2, r);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc), 0);
    /* rcodes, TC */
    rl = make_response(q, (size_t)ql, 3, 0, NULL, 0, r);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc),
                     RESOLVE_NXDOMAIN);
    rl = make_response(q, (size_t)ql, 2, 0, NULL, 0, r);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc),
                     RESOLVE_SERVFAIL);
    rl = make_response(q, (size_t)ql, 0, 1, NULL, 0, r);
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc), 0);
    assert_int_equal(tc, 1);
    /* a compression pointer loop in an answer */
    rl = make_response(q, (size_t)ql, 0, 0, simple, 1, r);
    r[ql] = 0xc0;
    r[ql + 1] = (unsigned char)ql;
    assert_int_equal(resolve_parse_response(r, rl, 0x1234, "aurora.example", 1, a, 8, &tc),
                     RESOLVE_MALFORMED);
    /* AAAA */
    ql = resolve_build_query("aurora.example", 28, 7, q, sizeof(q));
    static const unsigned char ip6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
    rr six[] = {{NULL, 28, ip6, 16, NULL}};
    rl = make_response(q, (size_t)ql, 0, 0, six, 1, r);
    assert_int_equal(resolve_parse_response(r, rl, 7, "aurora.example", 28, a, 8, &tc), 1);
    assert_string_equal(a[0].ip, "fd00::5");
}

/* ---- a DNS server on loopback --------------------------------------------------- */

typedef struct {
    int udp, tcp, port;
    atomic_int stop;
    atomic_int udp_queries, tcp_queries;
    char names[32][128]; /* questions seen, in order */
    atomic_int nnames;
    pthread_t thr;
} dns_server;

/* answers: "svc.corp.example" A 10.9.8.7 over UDP; "big.example" only over
 * TCP (UDP answer truncated); "slow.example" never; everything else NXDOMAIN */
static void dns_answer(dns_server *s, const unsigned char *q, size_t ql, int over_tcp,
                       unsigned char *out, size_t *outl)
{
    char name[128] = "";
    size_t k = 12, n = 0;
    while (k < ql && q[k] && n + 64 < sizeof(name)) {
        if (n)
            name[n++] = '.';
        memcpy(name + n, q + k + 1, q[k]);
        n += q[k];
        k += 1 + q[k];
    }
    name[n] = '\0';
    int qtype = k + 2 < ql ? q[k + 2] : 0;
    int i = atomic_fetch_add(&s->nnames, 1);
    if (i < 32)
        snprintf(s->names[i], sizeof(s->names[i]), "%.100s/%d/%s", name, qtype,
                 over_tcp ? "tcp" : "udp");
    static const unsigned char ip[4] = {10, 9, 8, 7}, ip2[4] = {10, 9, 8, 6};
    rr a[] = {{NULL, 1, ip, 4, NULL}}, b[] = {{NULL, 1, ip2, 4, NULL}};
    *outl = 0;
    if (!strcmp(name, "slow.example"))
        return;
    if (!strcmp(name, "svc.corp.example") && qtype == 1)
        *outl = make_response(q, ql, 0, 0, a, 1, out);
    else if (!strcmp(name, "svc.corp.example"))
        *outl = make_response(q, ql, 0, 0, NULL, 0, out);
    else if (!strcmp(name, "big.example") && qtype == 1)
        *outl = over_tcp ? make_response(q, ql, 0, 0, b, 1, out)
                         : make_response(q, ql, 0, 1, NULL, 0, out);
    else
        *outl = make_response(q, ql, 3, 0, NULL, 0, out);
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
                size_t ol;
                dns_answer(s, buf, (size_t)r, 0, out, &ol);
                if (ol)
                    sendto(s->udp, out, ol, 0, (struct sockaddr *)&from, fl);
            }
        }
        if (p[1].revents) {
            int c = accept(s->tcp, NULL, NULL);
            if (c < 0)
                continue;
            unsigned char lb[2];
            if (recv(c, lb, 2, MSG_WAITALL) == 2) {
                size_t l = ((size_t)lb[0] << 8) | lb[1];
                if (l <= sizeof(buf) && recv(c, buf, l, MSG_WAITALL) == (ssize_t)l) {
                    atomic_fetch_add(&s->tcp_queries, 1);
                    size_t ol;
                    dns_answer(s, buf, l, 1, out + 2, &ol);
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
    assert_int_equal(bind(s->tcp, (struct sockaddr *)&a, sizeof(a)), 0); /* same port */
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

static void test_resolver_over_loopback(void **state)
{
    dns_server s;
    dns_start(&s);
    const char *hosts = write_tmp("hosts2", "10.1.1.1 pinned.example\n");
    char hosts_path[160];
    snprintf(hosts_path, sizeof(hosts_path), "%s", hosts);
    const char *resolv = write_tmp("resolv2", "nameserver 127.0.0.1\n"
                                              "search corp.example\n"
                                              "options ndots:1 timeout:1 attempts:1\n");
    resolve_opts o = {.hosts_path = hosts_path, .resolv_path = resolv, .port = s.port,
                      .deadline_ms = 5000};
    resolve_addr a[8];
    char err[256];

    /* /etc/hosts wins, no query */
    assert_int_equal(agent_resolve("pinned.example", &o, a, 8, err, sizeof(err)), 1);
    assert_string_equal(a[0].ip, "10.1.1.1");
    assert_int_equal(atomic_load(&s.udp_queries), 0);
    /* numeric */
    assert_int_equal(agent_resolve("192.0.2.7", &o, a, 8, err, sizeof(err)), 1);
    assert_string_equal(a[0].ip, "192.0.2.7");

    /* "svc" has fewer dots than ndots (1): the search list comes first */
    assert_int_equal(agent_resolve("svc", &o, a, 8, err, sizeof(err)), 1);
    assert_string_equal(a[0].ip, "10.9.8.7");
    assert_string_equal(s.names[0], "svc.corp.example/1/udp");

    /* truncated over UDP: asked again over TCP */
    atomic_store(&s.nnames, 0);
    assert_int_equal(agent_resolve("big.example", &o, a, 8, err, sizeof(err)), 1);
    assert_string_equal(a[0].ip, "10.9.8.6");
    assert_string_equal(s.names[0], "big.example/1/udp");
    assert_string_equal(s.names[1], "big.example/1/tcp");
    assert_int_equal(atomic_load(&s.tcp_queries), 1);

    /* NXDOMAIN everywhere: the name as is, then with the search domain */
    atomic_store(&s.nnames, 0);
    assert_int_equal(agent_resolve("nope.example", &o, a, 8, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no such host"));
    assert_string_equal(s.names[0], "nope.example/1/udp");
    assert_string_equal(s.names[1], "nope.example.corp.example/1/udp");
    /* absolute name: no search */
    atomic_store(&s.nnames, 0);
    assert_int_equal(agent_resolve("svc.", &o, a, 8, err, sizeof(err)), -1);
    assert_int_equal(atomic_load(&s.nnames), 1);

    /* no answer at all: bounded by timeout × attempts */
    assert_int_equal(agent_resolve("slow.example", &o, a, 8, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no answer"));

    /* cancellation cuts it short */
    atomic_int cancel = 1;
    o.cancel = &cancel;
    assert_int_equal(agent_resolve("slow.example", &o, a, 8, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cancelled"));
    dns_stop(&s);

    /* nobody listening: fails quickly (ICMP port unreachable) */
    o.cancel = NULL;
    assert_int_equal(agent_resolve("svc", &o, a, 8, err, sizeof(err)), -1);
    assert_int_equal(agent_resolve("bad name", &o, a, 8, err, sizeof(err)), -1);
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

static int cleanup(void **state)
{
    static const char *const files[] = {"hosts", "resolv.conf", "hosts2", "resolv2"};
    if (!tmpdir[0])
        return 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[160];
        snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_parse),
        cmocka_unit_test(test_proxy_parse_errors),
        cmocka_unit_test(test_no_proxy),
        cmocka_unit_test(test_proxy_from_env),
        cmocka_unit_test(test_hosts_file),
        cmocka_unit_test(test_resolv_conf),
        cmocka_unit_test(test_dns_messages),
        cmocka_unit_test(test_resolver_over_loopback),
        cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests_name("agent_net", tests, NULL, cleanup);
}
