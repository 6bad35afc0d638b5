/* test_http_client_stream.c — http_client's streamed bodies (on_body) and
 * the errno of a failed connect, against a tiny HTTP/1.1 server forked by
 * the test on 127.0.0.1 (it answers by path; nothing else is contacted):
 *   /chunks     200, chunked, the body in odd-sized chunks
 *   /forever    200, chunked, lines without end (until the client leaves)
 *   /denied     401 with a JSON body
 *   /stall      200, one chunk, then silence
 *   /big        200, Content-Length, 3 MiB (over the default response cap)
 * Requests without on_body must behave exactly as before.
 * And an HTTP proxy (forked too, on 127.0.0.1) that records each request
 * line it gets (a CONNECT's target) and tunnels CONNECTs, answering any
 * other request itself: a request with allow_address goes through it only
 * to an address allow_address judged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_client.h"

static pid_t g_server = -1;
static int g_port;

/* ---- the server (child process) ---------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int chunk(int fd, const char *data, size_t n)
{
    char head[32];
    int h = snprintf(head, sizeof(head), "%zx\r\n", n);
    return write_all(fd, head, (size_t)h) || write_all(fd, data, n) || write_all(fd, "\r\n", 2);
}

static const char CHUNKED[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

static void serve_one(int fd)
{
    char req[8192];
    size_t got = 0;
    while (got < sizeof(req) - 1) {
        ssize_t k = recv(fd, req + got, sizeof(req) - 1 - got, 0);
        if (k <= 0)
            return;
        got += (size_t)k;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    if (!strncmp(req, "GET /chunks ", 12)) {
        static const char body[] = "{\"a\":1}\n{\"b\":2}\n{\"c\":\"third line\"}\n";
        static const size_t sizes[] = { 1, 2, 7, 3, 11, 64 };
        write_all(fd, CHUNKED, strlen(CHUNKED));
        size_t off = 0, n = strlen(body);
        for (size_t i = 0; off < n; i = (i + 1) % 6) {
            size_t take = sizes[i] < n - off ? sizes[i] : n - off;
            if (chunk(fd, body + off, take))
                return;
            off += take;
            usleep(2000); /* separate reads on the client side */
        }
        write_all(fd, "0\r\n\r\n", 5);
    } else if (!strncmp(req, "GET /forever ", 13)) {
        write_all(fd, CHUNKED, strlen(CHUNKED));
        char line[64];
        for (long i = 0;; i++) {
            int n = snprintf(line, sizeof(line), "{\"offset\":%ld}\n", i);
            if (chunk(fd, line, (size_t)n))
                return; /* the client left */
        }
    } else if (!strncmp(req, "GET /denied ", 12)) {
        static const char r[] = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                                "Content-Length: 25\r\nConnection: close\r\n\r\n"
                                "{\"messages\":[\"no entry\"]}";
        write_all(fd, r, strlen(r));
    } else if (!strncmp(req, "GET /stall ", 11)) {
        write_all(fd, CHUNKED, strlen(CHUNKED));
        chunk(fd, "{\"first\":1}\n", 12);
        char b;
        (void)recv(fd, &b, 1, 0); /* silence until the client's timeout closes the connection */
    } else if (!strncmp(req, "GET /big ", 9)) {
        size_t n = 3u << 20;
        char head[160];
        int h = snprintf(head, sizeof(head),
                         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", n);
        write_all(fd, head, (size_t)h);
        char buf[4096];
        memset(buf, 'z', sizeof(buf));
        for (size_t off = 0; off < n; off += sizeof(buf))
            if (write_all(fd, buf, sizeof(buf)))
                return;
    } else {
        static const char r[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        write_all(fd, r, strlen(r));
    }
}

/* ---- the proxy (child process) ----------------------------------------------------------- */

static pid_t g_proxy = -1;
static int g_proxy_port;
static int g_proxy_log = -1; /* read end: one request line per proxied request */

static void relay(int a, int b)
{
    char buf[16384];
    struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
    for (;;) {
        if (poll(p, 2, 15000) <= 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = recv(p[i].fd, buf, sizeof(buf), 0);
            if (k <= 0 || write_all(p[1 - i].fd, buf, (size_t)k))
                return;
        }
    }
}

static void proxy_one(int fd, int log_fd)
{
    char req[8192] = "";
    size_t got = 0;
    while (got < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t k = recv(fd, req + got, sizeof(req) - 1 - got, 0);
        if (k <= 0)
            return;
        got += (size_t)k;
        req[got] = '\0';
    }
    char *eol = strstr(req, "\r\n");
    if (!eol)
        return;
    *eol = '\n';
    (void)!write(log_fd, req, (size_t)(eol + 1 - req)); /* one line: atomic on a pipe */
    *eol = '\0';
    char host[256];
    int port;
    if (sscanf(req, "CONNECT %255[^ ] ", host) != 1) {
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
                                "via-proxy";
        write_all(fd, r, strlen(r));
        return;
    }
    char *colon = strrchr(host, ':');
    if (!colon)
        return;
    *colon = '\0';
    port = atoi(colon + 1);
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return;
    int up = socket(res->ai_family, SOCK_STREAM, 0);
    if (up < 0 || connect(up, res->ai_addr, res->ai_addrlen) < 0) {
        freeaddrinfo(res);
        static const char r[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
        write_all(fd, r, strlen(r));
        return;
    }
    freeaddrinfo(res);
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (write_all(fd, ok, strlen(ok)) == 0)
        relay(fd, up);
    close(up);
}

static int proxy_start(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), pfd[2];
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0 || pipe(pfd) < 0)
        return -1;
    g_proxy_port = ntohs(a.sin_port);
    g_proxy = fork();
    if (g_proxy < 0)
        return -1;
    if (g_proxy == 0) {
        close(pfd[0]);
        for (;;) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0)
                continue;
            if (fork() == 0) {
                close(ls);
                proxy_one(fd, pfd[1]);
                close(fd);
                _exit(0);
            }
            close(fd);
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        }
    }
    close(ls);
    close(pfd[1]);
    g_proxy_log = pfd[0];
    return fcntl(g_proxy_log, F_SETFL, O_NONBLOCK);
}

static void proxy_stop(void)
{
    if (g_proxy > 0) {
        kill(g_proxy, SIGKILL);
        waitpid(g_proxy, NULL, 0);
    }
    if (g_proxy_log >= 0)
        close(g_proxy_log);
}

/* The request lines the proxy got since the last call (it writes each
 * before answering: every request answered is in). */
static const char *proxy_seen(void)
{
    static char seen[4096];
    ssize_t k = read(g_proxy_log, seen, sizeof(seen) - 1);
    seen[k > 0 ? k : 0] = '\0';
    return seen;
}

static int group_setup(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0)
        return -1;
    g_port = ntohs(a.sin_port);
    g_server = fork();
    if (g_server < 0)
        return -1;
    if (g_server == 0) {
        for (;;) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0)
                continue;
            pid_t p = fork(); /* one process per connection: /stall must not block others */
            if (p == 0) {
                close(ls);
                serve_one(fd);
                close(fd);
                _exit(0);
            }
            close(fd);
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        }
    }
    close(ls);
    return proxy_start();
}

static int group_teardown(void **state)
{
    (void)state;
    proxy_stop();
    if (g_server > 0) {
        kill(g_server, SIGKILL);
        waitpid(g_server, NULL, 0);
    }
    return 0;
}

static char *url(const char *path)
{
    static char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d%s", g_port, path);
    return u;
}

/* ---- the client side ------------------------------------------------------------------------- */

typedef struct {
    char buf[1 << 16];
    size_t len;
    int calls;
    size_t stop_after; /* 0: never stop */
} collector;

static int collect(const char *data, size_t n, void *ud)
{
    collector *c = ud;
    c->calls++;
    size_t room = sizeof(c->buf) - 1 - c->len;
    size_t take = n < room ? n : room;
    memcpy(c->buf + c->len, data, take);
    c->len += take;
    c->buf[c->len] = '\0';
    return c->stop_after && c->len >= c->stop_after ? 1 : 0;
}

static void test_stream_in_chunks(void **state)
{
    (void)state;
    collector c = { .len = 0 };
    http_client_req q = { .url = url("/chunks"), .timeout_ms = 10000, .on_body = collect,
                          .on_body_ud = &c };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.stopped, 0);
    assert_null(r.body); /* handed over, not buffered */
    assert_int_equal(r.len, 0);
    assert_string_equal(c.buf, "{\"a\":1}\n{\"b\":2}\n{\"c\":\"third line\"}\n");
    assert_true(c.calls >= 2);
    http_client_resp_free(&r);
}

/* A stream without end: the callback's "enough" ends it at once, as success. */
static void test_stream_stopped_by_callback(void **state)
{
    (void)state;
    collector c = { .stop_after = 10000 };
    http_client_req q = { .url = url("/forever"), .timeout_ms = 10000, .on_body = collect,
                          .on_body_ud = &c };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.stopped, 1);
    assert_true(c.len >= 10000 && c.len < 10000 + 65536);
    assert_memory_equal(c.buf, "{\"offset\":0}\n{\"offset\":1}\n", 26);
    http_client_resp_free(&r);
}

/* An error status is buffered for the caller; the callback never sees it. */
static void test_error_status_buffered(void **state)
{
    (void)state;
    collector c = { .len = 0 };
    http_client_req q = { .url = url("/denied"), .timeout_ms = 10000, .on_body = collect,
                          .on_body_ud = &c };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_int_equal(r.status, 401);
    assert_int_equal(c.calls, 0);
    assert_non_null(r.body);
    assert_string_equal(r.body, "{\"messages\":[\"no entry\"]}");
    http_client_resp_free(&r);
}

/* A stream cut by the timeout: AUR_E_TIMEOUT, with the status and what came.
 * The timeout is also how long the server (a process forked per connection)
 * has to send the status and the first chunk: the others' 10 s, not less. */
static void test_stream_cut_by_timeout(void **state)
{
    (void)state;
    collector c = { .len = 0 };
    http_client_req q = { .url = url("/stall"), .timeout_ms = 10000, .on_body = collect,
                          .on_body_ud = &c };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_E_TIMEOUT);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.stopped, 0);
    assert_string_equal(c.buf, "{\"first\":1}\n");
    http_client_resp_free(&r);
}

/* The streamed body is the callback's to bound, not max_response's; without
 * on_body the cap applies exactly as before. */
static void test_max_response_only_without_stream(void **state)
{
    (void)state;
    collector c = { .stop_after = 0 };
    size_t total = 0;
    http_client_req q = { .url = url("/big"), .timeout_ms = 20000, .max_response = 1024,
                          .on_body = collect, .on_body_ud = &c };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    total = c.len; /* the collector keeps 64 KiB; it was called for all 3 MiB */
    assert_true(total == sizeof(c.buf) - 1);
    assert_true(c.calls > 3 * 1024 / 64);
    http_client_resp_free(&r);

    http_client_req plain = { .url = url("/big"), .timeout_ms = 20000, .max_response = 1024 };
    assert_int_equal(http_client_do(&plain, &r), AUR_E_UNAVAILABLE);
    assert_non_null(strstr(r.err, "larger than 1024"));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.os_errno, 0);
    http_client_resp_free(&r);

    http_client_req whole = { .url = url("/chunks"), .timeout_ms = 10000 };
    assert_int_equal(http_client_do(&whole, &r), AUR_OK);
    assert_string_equal(r.body, "{\"a\":1}\n{\"b\":2}\n{\"c\":\"third line\"}\n");
    assert_int_equal(r.stopped, 0);
    http_client_resp_free(&r);
}

/* Nothing listens: ECONNREFUSED is reported as such. */
static void test_refused_errno(void **state)
{
    (void)state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    /* bound, never listening: the port is ours and refuses (at once; the
     * timeout is only there for a broken build, so a loaded machine cannot
     * turn the refusal into a timeout) */
    http_client_req q = { .url = u, .timeout_ms = 20000 };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.os_errno, ECONNREFUSED);
    http_client_resp_free(&r);
    close(s);
}

/* allow_address sees every resolved address before a connection is opened. */
typedef struct {
    int calls, allow;
    int family;
} addr_policy;

static int policy(const struct sockaddr *sa, void *ud)
{
    addr_policy *p = ud;
    p->calls++;
    p->family = sa->sa_family;
    return p->allow;
}

static void test_allow_address(void **state)
{
    (void)state;
    addr_policy deny = { .allow = 0 };
    http_client_req q = { .url = url("/chunks"), .timeout_ms = 10000, .allow_address = policy,
                          .allow_address_ud = &deny };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_E_INVALID);
    assert_int_equal(r.address_refused, 1);
    assert_int_equal(r.status, 0);
    assert_true(deny.calls >= 1);
    assert_int_equal(deny.family, AF_INET);
    assert_non_null(strstr(r.err, "not allowed"));
    http_client_resp_free(&r);

    /* a name is judged by what it resolves to: curl resolves *.localhost to loopback */
    char named[128];
    snprintf(named, sizeof(named), "http://aurora-test.localhost:%d/chunks", g_port);
    addr_policy deny2 = { .allow = 0 };
    q.url = named;
    q.allow_address_ud = &deny2;
    assert_int_equal(http_client_do(&q, &r), AUR_E_INVALID);
    assert_true(deny2.calls >= 1);
    http_client_resp_free(&r);

    addr_policy allow = { .allow = 1 };
    q.url = url("/chunks");
    q.allow_address_ud = &allow;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.address_refused, 0);
    assert_int_equal(allow.calls, 1);
    assert_string_equal(r.body, "{\"a\":1}\n{\"b\":2}\n{\"c\":\"third line\"}\n");
    http_client_resp_free(&r);
}

/* curl follows https_proxy / http_proxy from the environment: through a
 * proxy it never resolves the URL's host, so allow_address judged only the
 * proxy's address and the proxy went wherever the URL said.  A request with
 * allow_address is resolved and judged first, and the proxy asked to
 * CONNECT to the judged address; one without goes through it as before. */
static int only_the_proxy(const struct sockaddr *sa, void *ud)
{
    (void)ud;
    return sa->sa_family == AF_INET &&
           ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port) == g_proxy_port;
}

static void test_allow_address_through_a_proxy(void **state)
{
    (void)state;
    char proxy[64], named[128], want[128];
    snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", g_proxy_port);
    snprintf(named, sizeof(named), "http://localhost:%d/chunks", g_port);
    setenv("http_proxy", proxy, 1);
    setenv("https_proxy", proxy, 1);
    setenv("HTTPS_PROXY", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    (void)proxy_seen();

    /* the host's every address refused (the proxy's is allowed): no request
     * reaches the proxy */
    http_client_req q = { .url = named, .timeout_ms = 10000, .allow_address = only_the_proxy };
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_E_INVALID);
    assert_int_equal(r.address_refused, 1);
    assert_int_equal(r.status, 0);
    http_client_resp_free(&r);
    assert_string_equal(proxy_seen(), "");

    /* allowed: the proxy is asked for the judged address, never the name */
    addr_policy allow = { .allow = 1 };
    q.allow_address = policy;
    q.allow_address_ud = &allow;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"a\":1}\n{\"b\":2}\n{\"c\":\"third line\"}\n");
    http_client_resp_free(&r);
    const char *seen = proxy_seen();
    snprintf(want, sizeof(want), "CONNECT 127.0.0.1:%d HTTP/1.1\n", g_port);
    char want6[128];
    snprintf(want6, sizeof(want6), "CONNECT [::1]:%d HTTP/1.1\n", g_port);
    print_message("proxy saw: %s", seen);
    assert_true(!strcmp(seen, want) || !strcmp(seen, want6));

    /* no allow_address (an operator's URL): through the proxy as before */
    http_client_req plain = { .url = named, .timeout_ms = 10000 };
    assert_int_equal(http_client_do(&plain, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "via-proxy");
    http_client_resp_free(&r);
    snprintf(want, sizeof(want), "GET %s HTTP/1.1\n", named);
    assert_string_equal(proxy_seen(), want);

    unsetenv("http_proxy");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_in_chunks),
        cmocka_unit_test(test_stream_stopped_by_callback),
        cmocka_unit_test(test_error_status_buffered),
        cmocka_unit_test(test_stream_cut_by_timeout),
        cmocka_unit_test(test_max_response_only_without_stream),
        cmocka_unit_test(test_refused_errno),
        cmocka_unit_test(test_allow_address),
        cmocka_unit_test(test_allow_address_through_a_proxy),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
