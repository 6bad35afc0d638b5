/* sse_sink.c — the reading end of bench/bigout_bench.py: decodes the server's
 * text/event-stream (as curl writes it, HTTP chunking removed) from stdin and
 * SHA-256s the stdout bytes, in C, so that at hundreds of MiB/s the client is
 * not what the benchmark measures.
 *
 * Each `output` event's data is {"stream":"stdout"|"stderr","text":"<JSON
 * string>"} or {"stream":…,"base64":"<base64>"} (docs/api.md); the JSON
 * string is unescaped here (all JSON escapes, \uXXXX with surrogate pairs).
 * Prints one JSON line: {"bytes":N,"sha256":"…","stderr_bytes":N,"text":N,
 * "base64":N,"result":<the result event's data or null>,"errors":[<error
 * events' data>…],"bad":"<first decoding problem or empty>"}.
 * Built by the bench itself: cc -O2 sse_sink.c -lcrypto. */
#define _GNU_SOURCE /* memmem */
#include <openssl/evp.h>
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

/* Unescapes the JSON string starting after its opening quote at s (ends
 * before e).  Returns the decoded length in tmp, or -1. */
static long unescape(const char *s, const char *e, const char **end)
{
    size_t need = (size_t)(e - s);
    if (need > tmp_cap) {
        tmp = realloc(tmp, need);
        tmp_cap = need;
    }
    unsigned char *o = tmp;
    while (s < e) {
        const char *q = memchr(s, '"', (size_t)(e - s));
        const char *bs = memchr(s, '\\', (size_t)((q ? q : e) - s));
        const char *stop = bs ? bs : q;
        if (!stop)
            return -1;
        memcpy(o, s, (size_t)(stop - s));
        o += stop - s;
        s = stop;
        if (*s == '"') {
            *end = s + 1;
            return (long)(o - tmp);
        }
        if (s + 1 >= e)
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
            if (e - s < 4 || hex4(s, &cp) < 0)
                return -1;
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (e - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) < 0 ||
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
    return -1;
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
            len = unescape(p + 7, e, &end);
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

int main(void)
{
    md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    size_t cap = 4 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - len < (1 << 20)) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(0, buf + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *sep = memmem(buf + start, len - start, "\n\n", 2);
            if (!sep)
                break;
            char *blk = buf + start;
            size_t blen = (size_t)(sep - blk);
            start = (size_t)(sep - buf) + 2;
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
        memmove(buf, buf + start, len - start);
        len -= start;
    }
    if (len)
        fail("stream ended inside an event");
    unsigned char dg[32];
    unsigned dl = 0;
    EVP_DigestFinal_ex(md, dg, &dl);
    printf("{\"bytes\":%llu,\"sha256\":\"", out_bytes);
    for (unsigned i = 0; i < dl; i++)
        printf("%02x", dg[i]);
    printf("\",\"stderr_bytes\":%llu,\"text\":%llu,\"base64\":%llu,\"result\":%s,\"errors\":[%s],"
           "\"bad\":\"%s\"}\n",
           err_bytes, n_text, n_b64, result ? result : "null", errors ? errors : "", bad);
    return 0;
}
