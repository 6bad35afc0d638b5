/* http_client.c — blocking HTTP(S) requests over libcurl; see http_client.h.
 * Runs on worker threads, never on the event loop: every request has a
 * total timeout and a response size cap. */
#include "http_client.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "crypto.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static int curl_ok;
static char *g_default_ca;

/* curl_global_init is not thread-safe: once, whichever thread comes first. */
static void init_curl(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

void http_client_set_default_ca(const char *cafile)
{
    free(g_default_ca);
    g_default_ca = cafile && *cafile ? strdup(cafile) : NULL;
}

typedef struct {
    char *data;
    size_t len, cap, max;
    int overflow;
    /* streaming (http_client_req.on_body): 2xx bodies go there */
    CURL *curl;
    int (*on_body)(const char *data, size_t len, void *ud);
    void *on_body_ud;
    int stopped;
    /* allow_address (http_client_req) */
    int (*allow_address)(const struct sockaddr *sa, void *ud);
    void *allow_address_ud;
    int address_refused;
    /* the address the connection is pinned to (already allowed) */
    int pinned;
    struct sockaddr_storage pin;
} sink;

/* The same host address (the port aside). */
static int same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)(const void *)a)->sin_addr,
                       &((const struct sockaddr_in *)(const void *)b)->sin_addr,
                       sizeof(struct in_addr));
    if (a->sa_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                       &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr,
                       sizeof(struct in6_addr));
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION, set only for requests with allow_address:
 * curl names each resolved address before connecting to it. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    sink *s = ud;
    if (purpose == CURLSOCKTYPE_IPCXN &&
        !(s->pinned && same_addr(&a->addr, (const struct sockaddr *)&s->pin)) &&
        !s->allow_address(&a->addr, s->allow_address_ud)) {
        s->address_refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (s->on_body) {
        /* curl calls this for the final answer's body only, after its
         * status line: the status is known here. */
        long status = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (n && s->on_body(p, n, s->on_body_ud) != 0) {
                s->stopped = 1;
                return 0; /* ends the transfer; reported as AUR_OK + stopped */
            }
            return n;
        }
    }
    if (s->len + n > s->max) {
        s->overflow = 1;
        return 0; /* aborts the transfer */
    }
    if (s->len + n + 1 > s->cap) {
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < s->len + n + 1)
            ncap *= 2;
        char *nd = malloc(ncap);
        if (!nd)
            return 0;
        /* Grown by copy-and-wipe rather than realloc, which could leave a
         * copy of a secret behind in freed memory. */
        if (s->data) {
            memcpy(nd, s->data, s->len);
            secret_free_n(s->data, s->cap);
        }
        s->data = nd;
        s->cap = ncap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* ---- URLs: one parser for the check and the fetch --------------------------
 *
 * Every URL is parsed by curl's URL API (CURLU) with the same flags, and
 * http_client_do() hands curl that very parse (CURLOPT_CURLU): a host check
 * made here sees the host curl connects to, whatever the URL's tricks
 * (userinfo, backslashes, percent-encoded or numeric hosts, fragments). */

#define URL_PARSE_FLAGS 0u /* curl's defaults: only the schemes it supports, no guessing */

/* Syntax that curl would accept but no configured or provider URL has:
 * exactly "http://" or "https://" (any case) then an authority, and no
 * control characters or spaces anywhere. */
static int url_shape_ok(const char *url, int https_only)
{
    if (!url)
        return 0;
    const char *rest;
    if (!strncasecmp(url, "https://", 8))
        rest = url + 8;
    else if (!https_only && !strncasecmp(url, "http://", 7))
        rest = url + 7;
    else
        return 0;
    if (!*rest || *rest == '/' || *rest == '\\' || *rest == ':' || *rest == '?' || *rest == '#')
        return 0;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* A CURLU for url (caller frees), NULL when the URL is refused. */
static CURLU *url_parse(const char *url, int https_only, http_client_url *res)
{
    http_client_url local, *out = res ? res : &local; /* every rule runs, wanted or not */
    memset(out, 0, sizeof(*out));
    if (!url_shape_ok(url, https_only))
        return NULL;
    pthread_once(&curl_once, init_curl);
    CURLU *u = curl_url();
    if (!u)
        return NULL;
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pw = NULL, *opts = NULL;
    int ok = curl_url_set(u, CURLUPART_URL, url, URL_PARSE_FLAGS) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    /* Credentials in a URL would be sent as Basic auth: none of ours has any,
     * and "user@host" is the classic way to make a URL look like another. */
    if (ok && (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
               curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK ||
               curl_url_get(u, CURLUPART_OPTIONS, &opts, 0) == CURLUE_OK))
        ok = 0;
    if (ok && strcasecmp(scheme, "https") != 0 && (https_only || strcasecmp(scheme, "http") != 0))
        ok = 0;
    if (ok) {
        snprintf(out->scheme, sizeof(out->scheme), "%s", scheme);
        for (char *c = out->scheme; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        /* "[::1]" -> "::1".  A trailing dot stays: "host." skips the hosts
         * file and search domains, so it may not be the host "host" is. */
        const char *h = host;
        size_t n = strlen(h);
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
        if (n == 0 || n >= sizeof(out->host)) {
            ok = 0;
        } else {
            for (size_t i = 0; i < n; i++)
                out->host[i] = (char)tolower((unsigned char)h[i]);
            out->host[n] = '\0';
            char *end = NULL;
            long pn = strtol(port, &end, 10);
            ok = end && !*end && pn > 0 && pn < 65536;
            out->port = (int)pn;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(pw);
    curl_free(opts);
    if (!ok) {
        curl_url_cleanup(u);
        return NULL;
    }
    return u;
}

int http_client_url_parse(const char *url, int https_only, http_client_url *out)
{
    CURLU *u = url_parse(url, https_only, out);
    if (!u)
        return -1;
    curl_url_cleanup(u);
    return 0;
}

int http_client_url_ok(const char *url, int https_only)
{
    return http_client_url_parse(url, https_only, NULL) == 0;
}

int http_client_url_host(const char *url, char *out, size_t cap)
{
    http_client_url u;
    if (!cap || http_client_url_parse(url, 0, &u) < 0 || strlen(u.host) >= cap)
        return -1;
    memcpy(out, u.host, strlen(u.host) + 1);
    return 0;
}

/* The path of a parsed URL (malloc'd by curl), NULL on failure. */
static char *url_path(const char *url)
{
    CURLU *u = url_parse(url, 0, NULL);
    char *path = NULL;
    if (u && curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        path = NULL;
    curl_url_cleanup(u);
    return path;
}

int http_client_url_under(const char *url, const char *base)
{
    http_client_url a, b;
    if (http_client_url_parse(url, 0, &a) < 0 || http_client_url_parse(base, 0, &b) < 0)
        return 0;
    if (strcmp(a.scheme, b.scheme) || strcmp(a.host, b.host) || a.port != b.port)
        return 0;
    char *pa = url_path(url), *pb = url_path(base);
    int ok = 0;
    if (pa && pb) {
        size_t n = strlen(pb);
        while (n > 0 && pb[n - 1] == '/')
            n--; /* "/" and "/v1/" as prefixes: "" and "/v1" */
        /* a whole leading path segment: /v1 covers /v1 and /v1/x, not /v10 */
        /* curl has already resolved dot segments ("/v1/../x" is "/x") */
        ok = !strncmp(pa, pb, n) && (pa[n] == '\0' || pa[n] == '/');
    }
    curl_free(pa);
    curl_free(pb);
    return ok;
}

/* ---- captured response headers ---------------------------------------------- */

/* 1 if v can be kept: no control characters (a peer's CR or NUL must not reach
 * a caller that may copy the value into a request header or a log line). */
static int header_value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

/* The headers of the last answer named in `names` into out->headers. */
static int capture_headers(CURL *c, const char *const *names, http_client_resp *out)
{
    size_t count = 0, cap = 1;
    while (names[count] && count < HTTP_CLIENT_MAX_CAPTURE) {
        cap += HTTP_CLIENT_MAX_HEADER_NAME + 1 + HTTP_CLIENT_MAX_HEADER_VALUE + 1;
        count++;
    }
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = names[i];
        size_t nl = strlen(name);
        struct curl_header *h = NULL;
        if (nl == 0 || nl > HTTP_CLIENT_MAX_HEADER_NAME ||
            curl_easy_header(c, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
            continue;
        size_t amount = h->amount, start = k;
        memcpy(buf + k, name, nl + 1);
        k += nl + 1;
        size_t vstart = k;
        int keep = amount <= HTTP_CLIENT_MAX_CAPTURE;
        for (size_t j = 0; j < amount && keep; j++) {
            if (curl_easy_header(c, name, j, CURLH_HEADER, -1, &h) != CURLHE_OK || !h->value) {
                keep = 0;
                break;
            }
            size_t vl = strlen(h->value), sep = k > vstart ? 2 : 0;
            if (!header_value_ok(h->value, vl) || k - vstart + sep + vl > HTTP_CLIENT_MAX_HEADER_VALUE) {
                keep = 0;
                break;
            }
            if (sep) {
                memcpy(buf + k, ", ", 2);
                k += 2;
            }
            memcpy(buf + k, h->value, vl);
            k += vl;
        }
        if (keep)
            buf[k++] = '\0';
        else
            k = start; /* dropped whole, never cut */
    }
    buf[k] = '\0';
    out->headers = buf;
    out->headers_len = k;
    return 0;
}

const char *http_client_header(const http_client_resp *r, const char *name)
{
    if (!r || !r->headers || !name)
        return NULL;
    size_t k = 0;
    while (k < r->headers_len) {
        const char *n = r->headers + k;
        const char *v = n + strlen(n) + 1;
        if (!strcasecmp(n, name))
            return v;
        k = (size_t)(v + strlen(v) + 1 - r->headers);
    }
    return NULL;
}

/* Request header lines carry credentials (Authorization, X-Amz-Security-Token,
 * X-Vault-Token): curl's copies are wiped before they are freed. */
static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *n = l; n; n = n->next)
        if (n->data)
            secret_wipe(n->data, strlen(n->data));
    curl_slist_free_all(l);
}

/* ---- pinning (requests with allow_address) -------------------------------------------------
 * curl follows https_proxy / http_proxy / ALL_PROXY from the environment:
 * through a proxy it never resolves the URL's host (the proxy does), so the
 * only address allow_address would see is the proxy's, and a user-typed base
 * URL would reach whatever the proxy reaches.  So the host is resolved here
 * first, by curl (same resolver, same timeout, same handling of names such
 * as *.localhost) on a handle that uses no proxy and opens no socket: every
 * address it would connect to is judged, and the request is pinned to the
 * first allowed one with CURLOPT_CONNECT_TO, which curl uses both for a
 * direct connection and as the target of a proxy's CONNECT (an HTTP proxy is
 * switched to tunnel mode for it, even for http://). */
typedef struct {
    int (*allow)(const struct sockaddr *sa, void *ud);
    void *ud;
    int seen, found;
    struct sockaddr_storage addr;
} pin_probe;

static curl_socket_t probe_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    pin_probe *p = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    p->seen++;
    if (!p->found && (a->family == AF_INET || a->family == AF_INET6) &&
        a->addrlen <= sizeof(p->addr) && p->allow(&a->addr, p->ud)) {
        memcpy(&p->addr, &a->addr, a->addrlen);
        p->found = 1;
    }
    return CURL_SOCKET_BAD; /* never connected here: curl offers the next address */
}

/* 0 with *to ("::<address>:", for CURLOPT_CONNECT_TO) and *pin, or the
 * request's aur_err with out filled. */
static int pin_address(const http_client_req *req, CURLU *url, long timeout,
                       struct curl_slist **to, struct sockaddr_storage *pin,
                       http_client_resp *out)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(out->err, sizeof(out->err), "out of memory");
        return out->code = AUR_E_INTERNAL;
    }
    pin_probe p = { .allow = req->allow_address, .ud = req->allow_address_ud };
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_CURLU, url);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* the URL's own host, whatever the environment */
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, req->https_only ? "https" : "http,https");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000L);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, probe_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &p);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (!p.found) {
        if (p.seen) {
            snprintf(out->err, sizeof(out->err), "the host's address is not allowed");
            out->address_refused = 1;
            return out->code = AUR_E_INVALID;
        }
        snprintf(out->err, sizeof(out->err), "%s",
                 curl_err[0] ? curl_err : curl_easy_strerror(rc));
        out->code = rc == CURLE_OPERATION_TIMEDOUT ? AUR_E_TIMEOUT : AUR_E_UNAVAILABLE;
        out->unreached = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_RESOLVE_HOST;
        return out->code;
    }
    char ip[INET6_ADDRSTRLEN], line[INET6_ADDRSTRLEN + 8];
    const void *bytes = p.addr.ss_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)&p.addr)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)&p.addr)->sin6_addr;
    if (!inet_ntop(p.addr.ss_family, bytes, ip, sizeof(ip))) {
        snprintf(out->err, sizeof(out->err), "the host's address is not allowed");
        out->address_refused = 1;
        return out->code = AUR_E_INVALID;
    }
    /* empty host and port: any request (no redirect is followed); empty
     * connect-to port: the URL's */
    snprintf(line, sizeof(line), p.addr.ss_family == AF_INET6 ? "::[%s]:" : "::%s:", ip);
    if (!(*to = curl_slist_append(NULL, line))) {
        snprintf(out->err, sizeof(out->err), "out of memory");
        return out->code = AUR_E_INTERNAL;
    }
    *pin = p.addr;
    return 0;
}

int http_client_do(const http_client_req *req, http_client_resp *out)
{
    memset(out, 0, sizeof(*out));
    pthread_once(&curl_once, init_curl);
    if (!curl_ok) {
        snprintf(out->err, sizeof(out->err), "libcurl initialization failed");
        return out->code = AUR_E_INTERNAL;
    }
    CURLU *url = url_parse(req->url, req->https_only, NULL);
    if (!url) {
        snprintf(out->err, sizeof(out->err), "%s",
                 req->https_only ? "URL must be https://host… (no user name or password)"
                                 : "URL must be http:// or https://host… (no user name or "
                                   "password)");
        return out->code = AUR_E_INVALID;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        curl_url_cleanup(url);
        snprintf(out->err, sizeof(out->err), "out of memory");
        return out->code = AUR_E_INTERNAL;
    }
    sink sk = { .max = req->max_response ? req->max_response : HTTP_CLIENT_MAX_RESPONSE,
                .curl = c, .on_body = req->on_body, .on_body_ud = req->on_body_ud,
                .allow_address = req->allow_address,
                .allow_address_ud = req->allow_address_ud };
    char curl_err[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL, *h2;
    int ok = 1;
    for (size_t i = 0; req->headers && req->headers[i] && ok; i++) {
        /* A CR or LF would end the header line and start another one
         * (values such as an ETag come from a peer or a cache). */
        if (strpbrk(req->headers[i], "\r\n")) {
            slist_wipe_free(hdrs);
            curl_easy_cleanup(c);
            curl_url_cleanup(url);
            snprintf(out->err, sizeof(out->err), "request header with a line break refused");
            return out->code = AUR_E_INVALID;
        }
        if ((h2 = curl_slist_append(hdrs, req->headers[i])))
            hdrs = h2;
        else
            ok = 0;
    }
    /* No "Expect:" removal header: libcurl 7.88 lists it among the SigV4
     * signed headers without sending it, and AWS rejects the signature.
     * (libcurl only sends Expect: 100-continue above 1 MiB anyway.) */
    if (!ok) {
        slist_wipe_free(hdrs);
        curl_easy_cleanup(c);
        curl_url_cleanup(url);
        snprintf(out->err, sizeof(out->err), "out of memory");
        return out->code = AUR_E_INTERNAL;
    }
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
    const char *ca = req->cacert && *req->cacert ? req->cacert : g_default_ca;
    /* The parse that was checked is the one fetched. */
    curl_easy_setopt(c, CURLOPT_CURLU, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, req->https_only ? "https" : "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "aurora-server");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sk);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    struct curl_slist *connect_to = NULL;
    if (req->allow_address) {
        int64_t t0 = mono_ms();
        if (pin_address(req, url, timeout, &connect_to, &sk.pin, out) < 0) {
            slist_wipe_free(hdrs);
            curl_easy_cleanup(c);
            curl_url_cleanup(url);
            return out->code;
        }
        sk.pinned = 1;
        /* the resolution was part of the request's time */
        long spent = (long)(mono_ms() - t0);
        if (spent >= timeout)
            spent = timeout - 1;
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout - spent);
        curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &sk);
    }
    if (ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    if (req->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    if (req->method && !strcmp(req->method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* else curl waits for the body a HEAD never gets */
    else if (req->method && strcmp(req->method, req->body ? "POST" : "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->aws_sigv4) {
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, req->aws_sigv4);
        curl_easy_setopt(c, CURLOPT_USERPWD, req->userpwd);
    }

    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK && sk.stopped)
        rc = CURLE_OK; /* the caller had what it wanted */
    if (rc != CURLE_OK && req->on_body)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status); /* a stream cut short */
    if (rc != CURLE_OK) {
        /* curl's messages name host and port, never headers or bodies. */
        if (sk.overflow)
            snprintf(out->err, sizeof(out->err), "response larger than %zu bytes", sk.max);
        else if (sk.address_refused)
            snprintf(out->err, sizeof(out->err), "the host's address is not allowed");
        else
            snprintf(out->err, sizeof(out->err), "%s",
                     curl_err[0] ? curl_err : curl_easy_strerror(rc));
        out->code = rc == CURLE_OPERATION_TIMEDOUT ? AUR_E_TIMEOUT : AUR_E_UNAVAILABLE;
        out->unreached = !sk.overflow && !sk.address_refused &&
                         (rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
                          rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SEND_ERROR ||
                          rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING);
        if (sk.address_refused && rc == CURLE_COULDNT_CONNECT) {
            out->code = AUR_E_INVALID; /* not a transient failure: retrying changes nothing */
            out->address_refused = 1;
        }
        long os_errno = 0;
        if (curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK)
            out->os_errno = (int)os_errno;
        if (sk.data) {
            secret_free_n(sk.data, sk.cap);
        }
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        out->stopped = sk.stopped;
        out->body = sk.data;
        out->len = sk.len;
        if (req->capture && capture_headers(c, req->capture, out) < 0) {
            http_client_resp_free(out);
            out->status = 0;
            snprintf(out->err, sizeof(out->err), "out of memory");
            out->code = AUR_E_INTERNAL;
        }
    }
    /* The USERPWD copy inside the handle is libcurl's; the handle is freed. */
    slist_wipe_free(hdrs);
    curl_easy_cleanup(c);
    curl_slist_free_all(connect_to);
    curl_url_cleanup(url);
    return out->code;
}

void http_client_resp_free(http_client_resp *r)
{
    if (!r)
        return;
    if (r->body) {
        secret_free_n(r->body, r->len);
    }
    r->body = NULL;
    r->len = 0;
    free(r->headers);
    r->headers = NULL;
    r->headers_len = 0;
}

cJSON *http_client_json(const http_client_resp *r)
{
    if (!r || !r->body || !r->len)
        return NULL;
    cJSON *o = cJSON_ParseWithLength(r->body, r->len);
    if (o && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

long http_client_backoff_ms(int attempt)
{
    long base = 100L << (attempt > 5 ? 5 : attempt - 1);
    unsigned short r = 0;
    (void)crypto_random_public(&r, sizeof(r));
    return base / 2 + (long)(r % (unsigned)(base / 2 + 1)); /* [base/2, base] */
}

void http_client_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

char *http_client_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = malloc(n * 3 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            o[k++] = (char)*p;
        } else {
            o[k++] = '%';
            o[k++] = hex[*p >> 4];
            o[k++] = hex[*p & 15];
        }
    }
    o[k] = '\0';
    return o;
}

char *http_client_form(const char *const *pairs)
{
    /* Sized up front and filled in place: values are often secrets, and a
     * growing buffer would leave copies of them in freed memory. */
    size_t total = 1;
    for (size_t i = 0; pairs[i]; i += 2)
        if (pairs[i + 1])
            total += 3 * (strlen(pairs[i]) + strlen(pairs[i + 1])) + 2;
    char *out = malloc(total);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; pairs[i]; i += 2) {
        if (!pairs[i + 1])
            continue;
        char *ek = http_client_escape(pairs[i]), *ev = http_client_escape(pairs[i + 1]);
        if (!ek || !ev) {
            free(ek);
            secret_free(ev);
            secret_free_n(out, k);
            return NULL;
        }
        k += (size_t)snprintf(out + k, total - k, "%s%s=%s", k ? "&" : "", ek, ev);
        free(ek);
        secret_free(ev);
    }
    out[k] = '\0';
    return out;
}
