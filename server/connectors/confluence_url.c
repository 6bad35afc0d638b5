/* confluence_url.c — page URLs and storage-format text (confluence_url.h).
 * Pure functions: everything is bounded by the input and the output caps. */
#include "confluence_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "utf8.h"
#include "crypto.h"

/* ---- URLs ----------------------------------------------------------------------- */

typedef struct {
    char scheme[8];
    char host[256];
    int port;
    const char *path; /* into the caller's string: up to query/fragment */
    size_t path_len;
    const char *query; /* after '?', up to '#'; NULL without */
    size_t query_len;
} url_parts;

static int split(const char *u, url_parts *p)
{
    memset(p, 0, sizeof(*p));
    const char *s = strstr(u, "://");
    if (!s || s - u >= (long)sizeof(p->scheme) || s == u)
        return -1;
    for (const char *c = u; c < s; c++)
        p->scheme[c - u] = (char)tolower((unsigned char)*c);
    if (strcmp(p->scheme, "https") && strcmp(p->scheme, "http"))
        return -1;
    const char *a = s + 3, *end = a;
    while (*end && *end != '/' && *end != '?' && *end != '#')
        end++;
    if (memchr(a, '@', (size_t)(end - a)))
        return -1; /* user info: never part of a page URL */
    const char *colon = NULL;
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(end - a));
        if (!rb)
            return -1;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(a, ':', (size_t)(end - a));
    }
    const char *host_end = colon ? colon : end;
    if (host_end == a || host_end - a >= (long)sizeof(p->host))
        return -1;
    for (const char *c = a; c < host_end; c++)
        p->host[c - a] = (char)tolower((unsigned char)*c);
    p->port = !strcmp(p->scheme, "https") ? 443 : 80;
    if (colon) {
        if (colon + 1 == end || end - colon > 6)
            return -1;
        int port = 0;
        for (const char *c = colon + 1; c < end; c++) {
            if (!isdigit((unsigned char)*c))
                return -1;
            port = port * 10 + (*c - '0');
        }
        if (port < 1 || port > 65535)
            return -1;
        p->port = port;
    }
    p->path = end;
    const char *q = end;
    while (*q && *q != '?' && *q != '#')
        q++;
    p->path_len = (size_t)(q - end);
    if (*q == '?') {
        p->query = q + 1;
        const char *f = strchr(p->query, '#');
        p->query_len = f ? (size_t)(f - p->query) : strlen(p->query);
    }
    return 0;
}

int confluence_page_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CFL_PAGE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Percent-decodes s[0..n) ('+' as a space when plus) into out (cap bytes
 * with the NUL).  -1 when it does not fit, is malformed or is not UTF-8
 * text without control characters. */
static int decode(const char *s, size_t n, int plus, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = crypto_hex_digit(s[i + 1]), l = crypto_hex_digit(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = h * 16 + l;
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return utf8_valid(out, o) ? 0 : -1;
}

/* The next path segment of [*p, end): its start and length; *p moves past it. */
static int segment(const char **p, const char *end, const char **seg, size_t *len)
{
    if (*p >= end || **p != '/')
        return 0;
    const char *s = *p + 1, *e = s;
    while (e < end && *e != '/')
        e++;
    *seg = s;
    *len = (size_t)(e - s);
    *p = e;
    return 1;
}

static int seg_is(const char *seg, size_t len, const char *word)
{
    return len == strlen(word) && !memcmp(seg, word, len);
}

static int copy_id(const char *seg, size_t len, char *out)
{
    if (len == 0 || len > CFL_PAGE_ID_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)seg[i]))
            return -1;
    memcpy(out, seg, len);
    out[len] = '\0';
    return 0;
}

/* pageId=<digits> among the query's parameters. */
static int query_page_id(const url_parts *u, char *out)
{
    const char *q = u->query, *end = q ? q + u->query_len : NULL;
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        if ((size_t)(pe - q) > 7 && !memcmp(q, "pageId=", 7))
            return copy_id(q + 7, (size_t)(pe - q - 7), out);
        q = amp ? amp + 1 : end;
    }
    return -1;
}

cfl_url_result confluence_url_parse(const char *url, const char *site_url, int cloud, cfl_url *out)
{
    memset(out, 0, sizeof(*out));
    url_parts u, s;
    if (!url || !site_url || split(url, &u) < 0 || split(site_url, &s) < 0)
        return CFL_URL_FOREIGN;
    if (strcmp(u.scheme, s.scheme) || strcmp(u.host, s.host) || u.port != s.port)
        return CFL_URL_FOREIGN;
    /* Under the site's path (a Data Center context path such as /confluence). */
    size_t pre = s.path_len;
    while (pre > 0 && s.path[pre - 1] == '/')
        pre--;
    if (u.path_len < pre || memcmp(u.path, s.path, pre) ||
        (u.path_len > pre && u.path[pre] != '/'))
        return CFL_URL_FOREIGN;
    const char *p = u.path + pre, *end = u.path + u.path_len;
    const char *seg;
    size_t len;
    if (cloud) {
        if (!segment(&p, end, &seg, &len) || !seg_is(seg, len, "wiki"))
            return CFL_URL_UNPARSABLE;
    }
    if (!segment(&p, end, &seg, &len))
        return CFL_URL_UNPARSABLE;
    if (seg_is(seg, len, "spaces")) {
        /* spaces/<KEY>/pages/[edit-v2/]<id>[/<title>] */
        const char *key;
        size_t klen;
        if (!segment(&p, end, &key, &klen) || klen == 0 || !segment(&p, end, &seg, &len) ||
            !seg_is(seg, len, "pages") || !segment(&p, end, &seg, &len))
            return CFL_URL_UNPARSABLE;
        if ((seg_is(seg, len, "edit-v2") || seg_is(seg, len, "edit")) &&
            !segment(&p, end, &seg, &len))
            return CFL_URL_UNPARSABLE;
        if (copy_id(seg, len, out->page_id) < 0)
            return CFL_URL_UNPARSABLE;
        (void)decode(key, klen, 0, out->space_key, sizeof(out->space_key));
        out->kind = CFL_PAGE_ID;
        return CFL_URL_OK;
    }
    if (seg_is(seg, len, "pages")) {
        if (!segment(&p, end, &seg, &len))
            return CFL_URL_UNPARSABLE;
        if (seg_is(seg, len, "viewpage.action") || seg_is(seg, len, "editpage.action")) {
            if (query_page_id(&u, out->page_id) < 0)
                return CFL_URL_UNPARSABLE;
            out->kind = CFL_PAGE_ID;
            return CFL_URL_OK;
        }
        if (copy_id(seg, len, out->page_id) == 0) { /* /wiki/pages/<id> */
            out->kind = CFL_PAGE_ID;
            return CFL_URL_OK;
        }
        return CFL_URL_UNPARSABLE;
    }
    if (seg_is(seg, len, "x")) {
        if (!segment(&p, end, &seg, &len) || len == 0 || len > CFL_SHORT_MAX)
            return CFL_URL_UNPARSABLE;
        for (size_t i = 0; i < len; i++)
            if (!isalnum((unsigned char)seg[i]) && seg[i] != '-' && seg[i] != '_')
                return CFL_URL_UNPARSABLE;
        memcpy(out->short_code, seg, len);
        out->short_code[len] = '\0';
        out->kind = CFL_SHORT_LINK;
        return CFL_URL_OK;
    }
    if (seg_is(seg, len, "display") && !cloud) {
        const char *key, *title;
        size_t klen, tlen;
        if (!segment(&p, end, &key, &klen) || !segment(&p, end, &title, &tlen) || klen == 0 ||
            tlen == 0 || decode(key, klen, 0, out->space_key, sizeof(out->space_key)) < 0 ||
            decode(title, tlen, 1, out->title, sizeof(out->title)) < 0)
            return CFL_URL_UNPARSABLE;
        out->kind = CFL_DISPLAY;
        return CFL_URL_OK;
    }
    return CFL_URL_UNPARSABLE;
}

/* ---- storage format → text --------------------------------------------------------- */

static const struct {
    const char *name;
    const char *text;
} entities[] = {
    { "amp", "&" },   { "lt", "<" },     { "gt", ">" },      { "quot", "\"" },
    { "apos", "'" },  { "nbsp", " " },   { "ndash", "\xe2\x80\x93" }, { "mdash", "\xe2\x80\x94" },
    { "hellip", "\xe2\x80\xa6" }, { "rsquo", "\xe2\x80\x99" }, { "lsquo", "\xe2\x80\x98" },
    { "rdquo", "\xe2\x80\x9d" }, { "ldquo", "\xe2\x80\x9c" },
};

/* Appends the UTF-8 encoding of code point cp. */
static void put_cp(buf_t *b, unsigned long cp)
{
    char t[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (char)(0xF0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(b, t, n);
}

/* An entity at s (after '&'): appended and its length (to ';') returned, or 0. */
static size_t entity(const char *s, buf_t *b)
{
    const char *semi = memchr(s, ';', strnlen(s, 12));
    if (!semi)
        return 0;
    size_t n = (size_t)(semi - s);
    if (n > 1 && s[0] == '#') {
        char *e;
        unsigned long cp = (s[1] == 'x' || s[1] == 'X') ? strtoul(s + 2, &e, 16)
                                                        : strtoul(s + 1, &e, 10);
        if (e != semi)
            return 0;
        put_cp(b, cp);
        return n + 1;
    }
    for (size_t i = 0; i < sizeof(entities) / sizeof(entities[0]); i++)
        if (strlen(entities[i].name) == n && !memcmp(s, entities[i].name, n)) {
            buf_append(b, entities[i].text, strlen(entities[i].text));
            return n + 1;
        }
    return 0;
}

static int block_tag(const char *name, size_t n)
{
    static const char *const blocks[] = { "p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4",
                                          "h5", "h6", "pre", "blockquote", "table", "ul", "ol",
                                          "hr", "ac:structured-macro", "ac:task", NULL };
    for (size_t i = 0; blocks[i]; i++)
        if (strlen(blocks[i]) == n && !strncasecmp(name, blocks[i], n))
            return 1;
    return 0;
}

static void newline(buf_t *b)
{
    size_t n = buf_pending(b);
    const char *h = buf_head(b);
    /* one line break per block boundary, none at the start */
    if (n == 0 || h[n - 1] == '\n')
        return;
    buf_append(b, "\n", 1);
}

char *confluence_storage_text(const char *x, size_t max)
{
    buf_t b;
    buf_init(&b);
    size_t n = strlen(x);
    for (size_t i = 0; i < n && buf_pending(&b) < max + 8;) {
        if (!strncmp(x + i, "<![CDATA[", 9)) {
            const char *e = strstr(x + i + 9, "]]>");
            size_t len = e ? (size_t)(e - (x + i + 9)) : n - i - 9;
            buf_append(&b, x + i + 9, len);
            i += 9 + len + (e ? 3 : 0);
        } else if (x[i] == '<') {
            const char *gt = strchr(x + i, '>');
            if (!gt)
                break;
            const char *name = x + i + 1;
            if (*name == '/')
                name++;
            size_t nl = 0;
            while (name + nl < gt && !isspace((unsigned char)name[nl]) && name[nl] != '/' &&
                   name[nl] != '>')
                nl++;
            if (block_tag(name, nl))
                newline(&b);
            i = (size_t)(gt - x) + 1;
        } else if (x[i] == '&') {
            size_t used = entity(x + i + 1, &b);
            if (!used)
                buf_append(&b, "&", 1);
            i += 1 + used;
        } else {
            size_t j = i;
            while (j < n && x[j] != '<' && x[j] != '&')
                j++;
            buf_append(&b, x + i, j - i);
            i = j;
        }
    }
    /* invalid bytes from the source stay out of JSON answers: repaired
     * first (one byte becomes three), cut to max after */
    const char *h = buf_head(&b);
    size_t len = buf_pending(&b);
    char *fixed = NULL;
    if (!utf8_valid(h, len)) {
        fixed = utf8_sanitize(h, len, &len);
        if (!fixed) {
            buf_free(&b);
            return NULL;
        }
        h = fixed;
    }
    while (len > 0 && (*h == '\n' || *h == ' ')) {
        h++;
        len--;
    }
    if (len > max)
        len = utf8_complete_prefix(h, max);
    while (len > 0 && (h[len - 1] == '\n' || h[len - 1] == ' '))
        len--;
    char *out = malloc(len + 1);
    if (out) {
        memcpy(out, h, len);
        out[len] = '\0';
    }
    free(fixed);
    buf_free(&b);
    return out;
}
