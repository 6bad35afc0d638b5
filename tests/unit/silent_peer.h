/* silent_peer.h — a backend that stalls, under the test's control: a
 * loopback listener whose connections the kernel completes but nobody
 * answers until the test says so.  Stands in for a secrets backend (Vault,
 * AWS Secrets Manager) that accepts connections and never replies; the
 * answer the test finally writes is a plain HTTP response it composes
 * itself.  Header-only, like proc_harness.h. */
#ifndef AURORA_TEST_SILENT_PEER_H
#define AURORA_TEST_SILENT_PEER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    char url[64]; /* http://127.0.0.1:<port> */
} silent_peer;

static inline int silent_peer_open(silent_peer *p)
{
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (p->fd < 0 || bind(p->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(p->fd, 64) != 0 || getsockname(p->fd, (struct sockaddr *)&sa, &sl) != 0 ||
        fcntl(p->fd, F_SETFL, O_NONBLOCK) != 0)
        return -1;
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    return 0;
}

/* Waits (up to ms) until a connection is pending.  1 when one is. */
static inline int silent_peer_wait_connection(silent_peer *p, int ms)
{
    struct pollfd pf = { .fd = p->fd, .events = POLLIN };
    return poll(&pf, 1, ms) == 1;
}

/* Answers one accepted connection c with `response` once its request
 * headers have arrived (a client that already gave up gets it too,
 * harmlessly: no SIGPIPE), then closes it.  The wait for the headers is as
 * long as the tests' other waits: a client thread on a loaded machine may
 * send its request seconds after the kernel completed its connection (5 s
 * was a guess at that).  A client that gave up has sent them already, or
 * its closed end ends the wait. */
static inline void silent_peer_answer(int c, const char *response)
{
    char buf[8192];
    size_t got = 0;
    struct pollfd pf = { .fd = c, .events = POLLIN };
    while (got < sizeof(buf) - 1 && poll(&pf, 1, 20000) == 1) {
        ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        /* the end of the headers, or not HTTP at all (a TLS ClientHello) */
        if (strstr(buf, "\r\n\r\n") || buf[0] < 'A' || buf[0] > 'Z')
            break;
    }
    for (size_t off = 0, total = strlen(response); off < total;) {
        ssize_t w = send(c, response + off, total - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(c);
}

/* Accepts every connection made so far and answers each with `response`
 * (silent_peer_answer).  The number of connections. */
static inline int silent_peer_answer_all(silent_peer *p, const char *response)
{
    int n = 0;
    for (int c; (c = accept(p->fd, NULL, NULL)) >= 0; n++)
        silent_peer_answer(c, response);
    return n;
}

static inline void silent_peer_close(silent_peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

#endif
