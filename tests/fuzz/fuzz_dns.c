/* fuzz_dns.c — DNS answers as the agent's resolver reads them.  The agent
 * resolves its server's name through c-ares, so whoever can answer (or spoof)
 * its DNS queries controls these bytes.  The target is written against
 * c-ares' public API, not against agent/resolve.c's internals, so it holds
 * whatever the agent builds on top of it:
 *
 *  1. ares_parse_a_reply / ares_parse_aaaa_reply on the raw input (the
 *     answer parsers behind every lookup);
 *  2. the whole ares_getaddrinfo path as agent/resolve.c drives it (A and
 *     AAAA queries, CNAME chains; its flags and hints) with a fake nameserver: the
 *     channel's sockets are replaced (ares_set_socket_functions), nothing
 *     reaches the network, and each query (UDP, or TCP after a truncated
 *     answer) is answered with the input for its type: that answer's
 *     12-byte header (the query id patched in), the query's own question,
 *     then the rest of the answer as its records.
 *     Input: 2 bytes big-endian length of the A answer, the A answer, then
 *     the AAAA answer.
 *
 * Invariants: no crash or leak; counts within what was asked; every address
 * has the family and length it claims and formats with inet_ntop.
 *
 * Debian's libcares is not built with coverage instrumentation, so libFuzzer
 * steers by this file's checks only; ASan still sees every buffer the
 * library hands back (and its memcpy/strlen calls). */
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz_util.h"

#define MAX_TTLS 8
#define MAX_QUERIES 8

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        fuzz_fail("ares_library_init failed");
    return 0;
}

/* The library is not instrumented: give libFuzzer an edge per outcome (status
 * and how many addresses) so it keeps inputs that reach new ones. */
volatile int dns_outcome_sink; /* written, never read: keeps the branches */
static void note_outcome(int status, int n)
{
    switch (status) {
    case ARES_SUCCESS: dns_outcome_sink = 1; break;
    case ARES_ENODATA: dns_outcome_sink = 2; break;
    case ARES_EFORMERR: dns_outcome_sink = 3; break;
    case ARES_ESERVFAIL: dns_outcome_sink = 4; break;
    case ARES_ENOTFOUND: dns_outcome_sink = 5; break;
    case ARES_ENOTIMP: dns_outcome_sink = 6; break;
    case ARES_EREFUSED: dns_outcome_sink = 7; break;
    case ARES_EBADRESP: dns_outcome_sink = 8; break;
    case ARES_ECONNREFUSED: dns_outcome_sink = 9; break;
    case ARES_ETIMEOUT: dns_outcome_sink = 10; break;
    case ARES_ENOMEM: dns_outcome_sink = 11; break;
    case ARES_EDESTRUCTION: dns_outcome_sink = 12; break;
    case ARES_ECANCELLED: dns_outcome_sink = 13; break;
    default: dns_outcome_sink = 14; break;
    }
    switch (n) {
    case 0: dns_outcome_sink = 20; break;
    case 1: dns_outcome_sink = 21; break;
    case 2: dns_outcome_sink = 22; break;
    case 3: dns_outcome_sink = 23; break;
    default: dns_outcome_sink = n > 8 ? 25 : 24; break;
    }
}

/* ---- 1. the answer parsers ----------------------------------------------------- */

static void check_hostent(const struct hostent *h, int family, size_t len)
{
    if (!h)
        return;
    FUZZ_CHECK(h->h_name != NULL, "hostent without a name");
    FUZZ_CHECK(h->h_addrtype == family && h->h_length == (int)len,
               "hostent family %d length %d", h->h_addrtype, h->h_length);
    char txt[INET6_ADDRSTRLEN];
    for (int i = 0; h->h_addr_list && h->h_addr_list[i]; i++)
        FUZZ_CHECK(inet_ntop(family, h->h_addr_list[i], txt, sizeof(txt)) != NULL,
                   "address %d does not format", i);
    for (int i = 0; h->h_aliases && h->h_aliases[i]; i++)
        FUZZ_CHECK(strlen(h->h_aliases[i]) < 4096, "alias %d of absurd length", i);
}

static void parse_replies(const uint8_t *data, size_t size)
{
    int alen = size > 65535 ? 65535 : (int)size;

    struct hostent *h = NULL;
    struct ares_addrttl a[MAX_TTLS];
    int na = MAX_TTLS;
    int rc = ares_parse_a_reply(data, alen, &h, a, &na);
    note_outcome(rc, rc == ARES_SUCCESS ? na : 0);
    if (rc == ARES_SUCCESS) {
        FUZZ_CHECK(na >= 0 && na <= MAX_TTLS, "ares_parse_a_reply: %d addresses", na);
        check_hostent(h, AF_INET, sizeof(struct in_addr));
    }
    if (h)
        ares_free_hostent(h);

    h = NULL;
    struct ares_addr6ttl a6[MAX_TTLS];
    int na6 = MAX_TTLS;
    rc = ares_parse_aaaa_reply(data, alen, &h, a6, &na6);
    note_outcome(rc, rc == ARES_SUCCESS ? na6 : 0);
    if (rc == ARES_SUCCESS) {
        FUZZ_CHECK(na6 >= 0 && na6 <= MAX_TTLS, "ares_parse_aaaa_reply: %d addresses", na6);
        check_hostent(h, AF_INET6, sizeof(struct ares_in6_addr));
    }
    if (h)
        ares_free_hostent(h);

    /* addresses only, no hostent (another code path in the parsers) */
    na = MAX_TTLS;
    (void)ares_parse_a_reply(data, alen, NULL, a, &na);
    na6 = MAX_TTLS;
    (void)ares_parse_aaaa_reply(data, alen, NULL, a6, &na6);
}

/* ---- 2. ares_getaddrinfo against a fake nameserver ------------------------------ */

typedef struct {
    unsigned char q[MAX_QUERIES][512]; /* queries the channel sent (without a TCP length) */
    size_t qlen[MAX_QUERIES];
    int over_tcp[MAX_QUERIES];
    int answered[MAX_QUERIES];
    int nq;
    const uint8_t *ans[2]; /* the A and AAAA answers from the input */
    size_t anslen[2];
    ares_socket_t tcp_fd;  /* the channel's TCP socket (a truncated answer moves there) */
    unsigned char *stream; /* what the TCP socket has left to read: length + answer */
    size_t slen, soff;
    int done;
    int status;
} fake_ns;

static ares_socket_t fake_socket(int af, int type, int proto, void *ud)
{
    fake_ns *ns = ud;
    int sv[2];
    /* A real descriptor (c-ares sets options on it), connected to nothing
     * outside this process. */
    if (socketpair(AF_UNIX, type == SOCK_STREAM ? SOCK_STREAM : SOCK_DGRAM, 0, sv) < 0)
        return ARES_SOCKET_BAD;
    close(sv[1]);
    if (type == SOCK_STREAM)
        ns->tcp_fd = sv[0];
    return sv[0];
}

static int fake_close(ares_socket_t s, void *ud)
{
    fake_ns *ns = ud;
    if (s == ns->tcp_fd)
        ns->tcp_fd = ARES_SOCKET_BAD;
    return close(s);
}

static int fake_connect(ares_socket_t s, const struct sockaddr *sa, ares_socklen_t len, void *ud)
{
    return 0;
}

static ares_ssize_t fake_sendv(ares_socket_t s, const struct iovec *iov, int n, void *ud)
{
    fake_ns *ns = ud;
    size_t total = 0;
    unsigned char buf[514];
    for (int i = 0; i < n; i++) {
        size_t k = iov[i].iov_len;
        if (total + k <= sizeof(buf))
            memcpy(buf + total, iov[i].iov_base, k);
        total += k;
    }
    int tcp = s == ns->tcp_fd;
    size_t skip = tcp ? 2 : 0; /* TCP: a 2-byte length before the query */
    if (ns->nq < MAX_QUERIES && total <= sizeof(buf) && total >= skip + 12 &&
        total - skip <= sizeof(ns->q[0])) {
        memcpy(ns->q[ns->nq], buf + skip, total - skip);
        ns->qlen[ns->nq] = total - skip;
        ns->over_tcp[ns->nq] = tcp;
        ns->nq++;
    }
    return (ares_ssize_t)total;
}

/* The answer to query i, malloc'd into *out: the input's answer for the
 * query's type, with the query's id and question in place of its own. */
static size_t answer(fake_ns *ns, int i, unsigned char **out)
{
    const unsigned char *q = ns->q[i];
    size_t qlen = ns->qlen[i];
    int qtype = q[qlen - 4] << 8 | q[qlen - 3]; /* the question ends with type, class */
    int which = qtype == 28 ? 1 : 0;            /* AAAA, else A */
    const uint8_t *a = ns->ans[which];
    size_t alen = ns->anslen[which];
    unsigned char *buf = malloc(alen + qlen + 1);
    if (!buf)
        abort();
    *out = buf;
    if (alen < 12) { /* too short for a header: as it is */
        memcpy(buf, a, alen);
        return alen;
    }
    memcpy(buf, a, 12);
    buf[0] = q[0];
    buf[1] = q[1];
    memcpy(buf + 12, q + 12, qlen - 12); /* the question (no EDNS record is sent) */
    memcpy(buf + qlen, a + 12, alen - 12);
    return alen + qlen - 12;
}

static ares_ssize_t fake_recvfrom(ares_socket_t s, void *dst, size_t len, int flags,
                                  struct sockaddr *from, ares_socklen_t *fromlen, void *ud)
{
    fake_ns *ns = ud;
    int tcp = s == ns->tcp_fd;
    if (tcp && ns->soff < ns->slen) { /* the rest of an answer on the stream */
        size_t k = ns->slen - ns->soff < len ? ns->slen - ns->soff : len;
        memcpy(dst, ns->stream + ns->soff, k);
        ns->soff += k;
        return (ares_ssize_t)k;
    }
    int i = 0;
    while (i < ns->nq && (ns->answered[i] || ns->over_tcp[i] != tcp))
        i++;
    if (i == ns->nq) {
        errno = EAGAIN;
        return -1;
    }
    ns->answered[i] = 1;
    unsigned char *ans;
    size_t n = answer(ns, i, &ans);
    if (tcp) {
        free(ns->stream);
        ns->stream = malloc(n + 2);
        if (!ns->stream)
            abort();
        ns->stream[0] = (unsigned char)(n >> 8);
        ns->stream[1] = (unsigned char)n;
        memcpy(ns->stream + 2, ans, n);
        ns->slen = n + 2;
        ns->soff = 0;
        free(ans);
        return fake_recvfrom(s, dst, len, flags, from, fromlen, ud);
    }
    if (from && fromlen && *fromlen >= (ares_socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(53);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        memcpy(from, &sin, sizeof(sin));
        *fromlen = sizeof(sin);
    }
    size_t k = n < len ? n : len;
    memcpy(dst, ans, k);
    free(ans);
    return (ares_ssize_t)k;
}

static const struct ares_socket_functions fake_funcs = {
    fake_socket, fake_close, fake_connect, fake_recvfrom, fake_sendv};

static void check_addrinfo(const struct ares_addrinfo *ai)
{
    if (!ai)
        return;
    char txt[INET6_ADDRSTRLEN];
    int n = 0;
    for (const struct ares_addrinfo_node *nd = ai->nodes; nd; nd = nd->ai_next, n++) {
        FUZZ_CHECK(n < 10000, "address list does not end");
        FUZZ_CHECK(nd->ai_addr != NULL, "address node without an address");
        if (nd->ai_family == AF_INET) {
            FUZZ_CHECK(nd->ai_addrlen == sizeof(struct sockaddr_in) &&
                           nd->ai_addr->sa_family == AF_INET,
                       "IPv4 node of length %u", (unsigned)nd->ai_addrlen);
            const struct sockaddr_in *sin = (const void *)nd->ai_addr;
            FUZZ_CHECK(inet_ntop(AF_INET, &sin->sin_addr, txt, sizeof(txt)), "IPv4 format");
        } else {
            FUZZ_CHECK(nd->ai_family == AF_INET6 &&
                           nd->ai_addrlen == sizeof(struct sockaddr_in6) &&
                           nd->ai_addr->sa_family == AF_INET6,
                       "node of family %d length %u", nd->ai_family, (unsigned)nd->ai_addrlen);
            const struct sockaddr_in6 *sin6 = (const void *)nd->ai_addr;
            FUZZ_CHECK(inet_ntop(AF_INET6, &sin6->sin6_addr, txt, sizeof(txt)), "IPv6 format");
        }
    }
    for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
        FUZZ_CHECK(c->name && c->alias, "CNAME entry without its names");
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    fake_ns *ns = arg;
    ns->done++;
    ns->status = status;
    FUZZ_CHECK(status == ARES_SUCCESS || !ai || !ai->nodes, "status %d with addresses",
               status);
    int n = 0;
    for (const struct ares_addrinfo_node *nd = ai ? ai->nodes : NULL; nd; nd = nd->ai_next)
        n++;
    note_outcome(status, n);
    check_addrinfo(ai);
    if (getenv("FUZZ_DNS_VERBOSE")) { /* to see what an input resolves to */
        fprintf(stderr, "getaddrinfo: %s\n", ares_strerror(status));
        for (const struct ares_addrinfo_node *nd = ai ? ai->nodes : NULL; nd; nd = nd->ai_next) {
            char txt[INET6_ADDRSTRLEN] = "";
            const void *p = nd->ai_family == AF_INET
                                ? (const void *)&((const struct sockaddr_in *)(const void *)nd->ai_addr)->sin_addr
                                : (const void *)&((const struct sockaddr_in6 *)(const void *)nd->ai_addr)->sin6_addr;
            inet_ntop(nd->ai_family, p, txt, sizeof(txt));
            fprintf(stderr, "  %s ttl %d\n", txt, nd->ai_ttl);
        }
    }
    if (ai)
        ares_freeaddrinfo(ai);
}

static void resolve_through_fake(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t la = (size_t)(data[0] << 8 | data[1]);
    data += 2;
    size -= 2;
    if (la > size)
        la = size;
    fake_ns ns;
    memset(&ns, 0, sizeof(ns));
    ns.tcp_fd = ARES_SOCKET_BAD;
    ns.ans[0] = data;
    ns.anslen[0] = la;
    ns.ans[1] = data + la;
    ns.anslen[1] = size - la;

    struct ares_options o;
    memset(&o, 0, sizeof(o));
    char lookups[] = "b"; /* DNS only: no /etc/hosts */
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES; /* + the agent's flags (resolve.c) */
    o.timeout = 1000;
    o.tries = 1;
    o.ndots = 1;
    o.ndomains = 0;
    o.lookups = lookups;
    ares_channel ch;
    int optmask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS |
                  ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS;
    if (ares_init_options(&ch, &o, optmask) != ARES_SUCCESS)
        fuzz_fail("ares_init_options failed");
    if (ares_set_servers_csv(ch, "127.0.0.1:53") != ARES_SUCCESS)
        fuzz_fail("ares_set_servers_csv failed");
    ares_set_socket_functions(ch, &fake_funcs, &ns);

    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT; /* as agent_resolve asks */
    ares_getaddrinfo(ch, "tunnel.fuzz.example", NULL, &hints, on_addrinfo, &ns);

    /* Let the channel write its queries and read the answers: every socket
     * it watches is ready. */
    for (int round = 0; round < 16 && !ns.done; round++) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        int any = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            int r = (bits >> i) & 1u, w = (bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u;
            if (r || w) {
                ares_process_fd(ch, r ? socks[i] : ARES_SOCKET_BAD, w ? socks[i] : ARES_SOCKET_BAD);
                any = 1;
            }
        }
        if (!any)
            break;
    }
    ares_destroy(ch); /* ends what is still pending (its callback runs) */
    free(ns.stream);
    FUZZ_CHECK(ns.done == 1, "getaddrinfo callback ran %d times", ns.done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_replies(data, size);
    resolve_through_fake(data, size);
    return 0;
}
