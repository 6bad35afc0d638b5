/* sse_sink.c — the reading end of bench/bigout_bench.py: makes the HTTPS
 * request itself (--connect PORT CAFILE REQUEST-FILE: the request's bytes, sent
 * as they are to 127.0.0.1:PORT, the certificate checked against CAFILE) or
 * reads a stream curl writes on stdin, decodes the server's text/event-stream
 * and SHA-256s the stdout bytes, in C, so that at hundreds of MiB/s the
 * client is not what the benchmark measures.
 *
 * Each `output` event's data is {"stream":"stdout"|"stderr","text":"<JSON
 * string>"} or {"stream":…,"base64":"<base64>"} (docs/api.md); the JSON
 * string is unescaped here (all JSON escapes, \uXXXX with surrogate pairs).
 * Prints one JSON line: {"bytes":N,"sha256":"…","stderr_bytes":N,"text":N,
 * "base64":N,"result":<the result event's data or null>,"errors":[<error
 * events' data>…],"bad":"<first decoding problem or empty>","status":<HTTP
 * status, 0 on stdin>}.  --raw: stdin's bytes hashed as they are (the
 * generator run directly, for the side-by-side row).
 * Built by the bench itself: cc -O2 sse_sink.c -lssl -lcrypto. */
#define _POSIX_C_SOURCE 200809L /* strndup, getaddrinfo */
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <strings.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static EVP_MD_CTX *md;
static unsigned long long out_bytes, err_bytes, n_text, n_b64;
static char bad[256];
static char *result;
static char *errors;
static size_t errors_len;
static unsigned char *tmp;
static size_t tmp_cap;

static void fail(const char *what)
{
    if (!bad[0])
        snprintf(bad, sizeof(bad), "%s", what);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        *v = *v << 4 | (unsigned)h;
    }
    return 0;
}

static size_t put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12); o[1] = (unsigned char)(0x80 | (cp >> 6 & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18); o[1] = (unsigned char)(0x80 | (cp >> 12 & 63));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 63)); o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* Unescapes the JSON string that starts after its opening quote at s and
 * whose closing quote is at q.  Returns the decoded length in tmp, or -1.
 * Linear: each byte is looked at by one memchr for '\\' and one for '"' (a
 * quote not escaped before q is malformed). */
static long unescape(const char *s, const char *q)
{
    size_t need = (size_t)(q - s);
    if (need > tmp_cap) {
        tmp = realloc(tmp, need);
        tmp_cap = need;
    }
    unsigned char *o = tmp;
    while (s < q) {
        const char *bs = memchr(s, '\\', (size_t)(q - s));
        const char *stop = bs ? bs : q;
        if (memchr(s, '"', (size_t)(stop - s)))
            return -1;
        memcpy(o, s, (size_t)(stop - s));
        o += stop - s;
        s = stop;
        if (s == q)
            break;
        if (s + 1 >= q)
            return -1;
        char c = s[1];
        s += 2;
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (q - s < 4 || hex4(s, &cp) < 0)
                return -1;
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (q - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            o += put_utf8(o, cp);
            break;
        }
        default:
            return -1;
        }
    }
    return (long)(o - tmp);
}

static void append_error(const char *d, size_t n)
{
    errors = realloc(errors, errors_len + n + 2);
    if (errors_len)
        errors[errors_len++] = ',';
    memcpy(errors + errors_len, d, n);
    errors_len += n;
    errors[errors_len] = 0;
}

static void on_event(const char *ev, size_t evlen, const char *d, size_t n)
{
    const char *e = d + n;
    if (evlen == 6 && !memcmp(ev, "output", 6)) {
        static const char so[] = "{\"stream\":\"stdout\",\"";
        static const char se[] = "{\"stream\":\"stderr\",\"";
        int is_err;
        if (n > sizeof(so) && !memcmp(d, so, sizeof(so) - 1))
            is_err = 0;
        else if (n > sizeof(se) && !memcmp(d, se, sizeof(se) - 1))
            is_err = 1;
        else {
            fail("output event of an unexpected shape");
            return;
        }
        const char *p = d + sizeof(so) - 1;
        long len;
        const char *end = NULL;
        if (!strncmp(p, "text\":\"", 7)) {
            /* the data is {"stream":…,"text":"…"}: the string's closing
             * quote is the event's last byte but one */
            if (e - (p + 7) < 2 || e[-2] != '"' || e[-1] != '}') {
                fail("output event: bad JSON string");
                return;
            }
            len = unescape(p + 7, e - 2);
            end = e - 1;
            n_text++;
        } else if (!strncmp(p, "base64\":\"", 9)) {
            const char *b = p + 9;
            const char *q = memchr(b, '"', (size_t)(e - b));
            if (!q || (q - b) % 4) {
                fail("bad base64");
                return;
            }
            size_t need = (size_t)(q - b) / 4 * 3;
            if (need > tmp_cap) {
                tmp = realloc(tmp, need);
                tmp_cap = need;
            }
            len = EVP_DecodeBlock(tmp, (const unsigned char *)b, (int)(q - b));
            if (len >= 0 && q - b >= 1 && q[-1] == '=')
                len--;
            if (len >= 0 && q - b >= 2 && q[-2] == '=')
                len--;
            end = q + 1;
            n_b64++;
        } else {
            fail("output event without text or base64");
            return;
        }
        if (len < 0 || !end || end + 1 != e || *end != '}') {
            fail("output event: bad JSON string");
            return;
        }
        if (is_err)
            err_bytes += (unsigned long long)len;
        else {
            EVP_DigestUpdate(md, tmp, (size_t)len);
            out_bytes += (unsigned long long)len;
        }
    } else if (evlen == 6 && !memcmp(ev, "result", 6)) {
        free(result);
        result = strndup(d, n);
    } else if (evlen == 5 && !memcmp(ev, "error", 5)) {
        append_error(d, n);
    } else {
        fail("unknown event");
    }
}

/* The first "\n\n" in p[0..n).  A newline is rare in the stream (JSON
 * escapes the output's own), so memchr, which skips long runs fast, finds
 * it quicker than memmem. */
static char *blank_line(char *p, size_t n)
{
    char *end = p + n;
    while (end - p >= 2) {
        char *nl = memchr(p, '\n', (size_t)(end - p - 1));
        if (!nl)
            return NULL;
        if (nl[1] == '\n')
            return nl;
        p = nl + 1;
    }
    return NULL;
}

/* The event stream, as it arrives: appended to sse and every whole event
 * handled. */
static char *sse;
static size_t sse_len, sse_cap;

static void feed_sse(const char *p, size_t n)
{
    if (sse_cap - sse_len < n) {
        while (sse_cap - sse_len < n)
            sse_cap = sse_cap ? sse_cap * 2 : 4 << 20;
        sse = realloc(sse, sse_cap);
        if (!sse) {
            fprintf(stderr, "sse_sink: out of memory\n");
            exit(1);
        }
    }
    /* only what is new, and the byte before it, can complete a "\n\n" */
    size_t scan = sse_len ? sse_len - 1 : 0;
    memcpy(sse + sse_len, p, n);
    sse_len += n;
    size_t start = 0;
    for (;;) {
        if (scan < start)
            scan = start;
        char *sep = blank_line(sse + scan, sse_len - scan);
        if (!sep)
            break;
        char *blk = sse + start;
        size_t blen = (size_t)(sep - blk);
        start = (size_t)(sep - sse) + 2;
        if (!blen || blk[0] == ':')
            continue;
        /* "event: X\ndata: D" (our server writes one data line) */
        char *nl = memchr(blk, '\n', blen);
        if (blen < 7 || memcmp(blk, "event: ", 7) || !nl ||
            (size_t)(blk + blen - nl) < 7 || memcmp(nl + 1, "data: ", 6)) {
            fail("event block of an unexpected shape");
            continue;
        }
        on_event(blk + 7, (size_t)(nl - blk - 7), nl + 7, (size_t)(blk + blen - nl - 7));
    }
    memmove(sse, sse + start, sse_len - start);
    sse_len -= start;
}

/* ---- --connect: the HTTPS request itself, no curl ---------------------------
 * curl writes what it decrypts to a pipe 16 KiB at a time, and this process
 * reads it back: on a 2-core machine the two took more CPU than the server.
 * Here one blocking client reads the TLS stream with OpenSSL's read-ahead
 * (records taken from the socket many at a time), takes the response head,
 * undoes HTTP/1.1 chunking and hands the events to feed_sse. */
static int http_status;
static enum { HEAD, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILER, DONE } http_state = HEAD;
static char line[16384];
static size_t line_len;
static size_t chunk_left;

/* One line of the head or of the chunk framing, without its CRLF, or -1
 * while it is incomplete.  Consumes from *p. */
static int take_line(const char **p, const char *e)
{
    while (*p < e) {
        char c = *(*p)++;
        if (c == '\n') {
            if (line_len && line[line_len - 1] == '\r')
                line_len--;
            line[line_len] = 0;
            return 0;
        }
        if (line_len + 1 >= sizeof(line)) {
            fail("HTTP line too long");
            line_len = 0;
        }
        line[line_len++] = c;
    }
    return -1;
}

static int chunked;

static void feed_http(const char *p, size_t n)
{
    const char *e = p + n;
    while (p < e && http_state != DONE) {
        switch (http_state) {
        case HEAD:
            if (take_line(&p, e) < 0)
                return;
            if (!http_status) {
                if (sscanf(line, "HTTP/1.1 %d", &http_status) != 1) {
                    fail("no HTTP status line");
                    http_status = -1;
                }
            } else if (!line_len) {
                if (!chunked)
                    fail("response is not chunked");
                http_state = CHUNK_SIZE;
            } else if (!strncasecmp(line, "transfer-encoding:", 18) && strstr(line, "chunked")) {
                chunked = 1;
            }
            line_len = 0;
            break;
        case CHUNK_SIZE: {
            if (take_line(&p, e) < 0)
                return;
            char *end = NULL;
            unsigned long long size = strtoull(line, &end, 16);
            if (end == line) {
                fail("bad chunk size");
                http_state = DONE;
                break;
            }
            line_len = 0;
            chunk_left = (size_t)size;
            http_state = size ? CHUNK_DATA : TRAILER;
            break;
        }
        case CHUNK_DATA: {
            size_t take = (size_t)(e - p) < chunk_left ? (size_t)(e - p) : chunk_left;
            feed_sse(p, take);
            p += take;
            chunk_left -= take;
            if (!chunk_left)
                http_state = CHUNK_CRLF;
            break;
        }
        case CHUNK_CRLF:
            if (take_line(&p, e) < 0)
                return;
            if (line_len)
                fail("chunk not followed by CRLF");
            line_len = 0;
            http_state = CHUNK_SIZE;
            break;
        case TRAILER:
            if (take_line(&p, e) < 0)
                return;
            if (!line_len)
                http_state = DONE;
            line_len = 0;
            break;
        case DONE:
            break;
        }
    }
}

static int run_https(const char *port, const char *cafile, const char *reqfile)
{
    FILE *f = fopen(reqfile, "rb");
    if (!f) {
        perror(reqfile);
        return -1;
    }
    static char req[1 << 16];
    size_t reqlen = fread(req, 1, sizeof(req), f);
    int whole = feof(f) && !ferror(f);
    fclose(f);
    if (!whole) {
        fprintf(stderr, "%s: unreadable, or larger than %zu bytes\n", reqfile, sizeof(req));
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    if (getaddrinfo("127.0.0.1", port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        perror("connect");
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    int rc = -1;
    SSL *ssl = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto out;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
        goto out;
    SSL_CTX_set_read_ahead(ctx, 1);
    ssl = SSL_new(ctx);
    if (!ssl)
        goto out;
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1 || SSL_write(ssl, req, (int)reqlen) != (int)reqlen)
        goto out;
    static char in[1 << 18];
    for (;;) {
        int r = SSL_read(ssl, in, sizeof(in));
        if (r <= 0)
            break;
        feed_http(in, (size_t)r);
        if (http_state == DONE)
            break;
    }
    if (http_state != DONE)
        fail(http_status == 200 ? "stream ended before its last chunk" : "HTTP status not 200");
    rc = 0;
out:
    if (rc)
        ERR_print_errors_fp(stderr);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    if (argc == 5 && !strcmp(argv[1], "--connect")) {
        if (run_https(argv[2], argv[3], argv[4]) != 0)
            fail("could not make the request");
    } else if (argc == 2 && !strcmp(argv[1], "--raw")) {
        /* the direct row: the generator's bytes as they are, hashed */
        static char in[1 << 18];
        ssize_t r;
        while ((r = read(0, in, sizeof(in))) > 0) {
            EVP_DigestUpdate(md, in, (size_t)r);
            out_bytes += (unsigned long long)r;
        }
    } else if (argc == 1) {
        static char in[1 << 18];
        ssize_t r;
        while ((r = read(0, in, sizeof(in))) > 0)
            feed_sse(in, (size_t)r);
    } else {
        fprintf(stderr, "usage: sse_sink [--connect PORT CAFILE REQUEST-FILE | --raw] (else the "
                        "stream on stdin)\n");
        return 2;
    }
    if (sse_len)
        fail("stream ended inside an event");
    unsigned char dg[32];
    unsigned dl = 0;
    EVP_DigestFinal_ex(md, dg, &dl);
    printf("{\"bytes\":%llu,\"sha256\":\"", out_bytes);
    for (unsigned i = 0; i < dl; i++)
        printf("%02x", dg[i]);
    printf("\",\"stderr_bytes\":%llu,\"text\":%llu,\"base64\":%llu,\"result\":%s,\"errors\":[%s],"
           "\"bad\":\"%s\",\"status\":%d}\n",
           err_bytes, n_text, n_b64, result ? result : "null", errors ? errors : "", bad,
           http_status);
    return 0;
}
