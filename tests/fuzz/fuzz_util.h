/* fuzz_util.h — small helpers shared by the libFuzzer targets (header-only:
 * each target is one translation unit linked on its own).
 *
 * A failed invariant calls fuzz_fail(), which prints what broke and aborts:
 * libFuzzer then saves the input as a crash artifact. */
#ifndef AURORA_FUZZ_UTIL_H
#define AURORA_FUZZ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn, format(printf, 1, 2))) static inline void fuzz_fail(const char *fmt,
                                                                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond))                                                                           \
            fuzz_fail(__VA_ARGS__);                                                            \
    } while (0)

/* The input as a NUL-terminated string (it may hold NULs of its own). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Splits the input at NUL bytes into at most max strings (pieces beyond max
 * are dropped).  The strings point into *owned (free it); returns their
 * count (at least 1: an empty input is one empty string). */
static inline int fuzz_split(const uint8_t *data, size_t size, char **out, int max,
                             char **owned)
{
    char *s = fuzz_strndup(data, size);
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || s[i] == '\0') {
            out[n++] = s + start;
            start = i + 1;
        }
    }
    *owned = s;
    return n;
}

/* ---- JSON strings, read independently of cJSON and of common/json_text.c ----
 *
 * Every JSON string the code acts on must be the whole string the peer sent:
 * cJSON ends a decoded string at a "\u0000" (or a raw NUL), silently cutting
 * an argv element or an id.  fuzz_json_check_strings() decodes the length of
 * every string literal of a text cJSON accepted (keys and values, in text
 * order) and compares it with what cJSON's tree holds (same order). */

static inline int fuzz_hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15)
            return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* Decoded UTF-8 length of the literal starting after the quote at t[*i];
 * leaves *i on the closing quote.  -1 when the literal is not one cJSON
 * accepts (then the caller gives up: the text was refused anyway). */
static inline long fuzz_json_literal_len(const char *t, size_t len, size_t *i)
{
    long n = 0;
    for (size_t k = *i + 1; k < len; k++) {
        if (t[k] == '"') {
            *i = k;
            return n;
        }
        if (t[k] != '\\') {
            n++;
            continue;
        }
        if (k + 1 >= len)
            return -1;
        if (t[k + 1] != 'u') {
            n++;
            k++;
            continue;
        }
        unsigned cp;
        if (k + 5 >= len || fuzz_hex4(t + k + 2, &cp) < 0)
            return -1;
        k += 5;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair: 4 bytes */
            unsigned lo;
            if (k + 6 >= len || t[k + 1] != '\\' || t[k + 2] != 'u' ||
                fuzz_hex4(t + k + 3, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            k += 6;
            n += 4;
        } else {
            n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
        }
    }
    return -1;
}

typedef struct {
    long len[512];
    int n, overflow;
} fuzz_json_lens;

static inline void fuzz_json_collect(const char *t, size_t len, fuzz_json_lens *l)
{
    l->n = 0;
    l->overflow = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] != '"')
            continue;
        long n = fuzz_json_literal_len(t, len, &i);
        if (n < 0 || l->n >= (int)(sizeof(l->len) / sizeof(l->len[0]))) {
            l->overflow = 1;
            return;
        }
        l->len[l->n++] = n;
    }
}

#ifdef cJSON__h
static inline void fuzz_json_walk(const cJSON *o, const fuzz_json_lens *l, int *k,
                                  const char *what)
{
    for (const cJSON *it = o->child; it; it = it->next) {
        if (it->string) {
            FUZZ_CHECK(*k < l->n, "%s: more strings in the tree than in the text", what);
            FUZZ_CHECK((long)strlen(it->string) == l->len[*k],
                       "%s: key \"%s\" is %zu bytes, %ld in the text (cut at a NUL)", what,
                       it->string, strlen(it->string), l->len[*k]);
            (*k)++;
        }
        if (cJSON_IsString(it)) {
            FUZZ_CHECK(*k < l->n, "%s: more strings in the tree than in the text", what);
            FUZZ_CHECK((long)strlen(it->valuestring) == l->len[*k],
                       "%s: string \"%s\" is %zu bytes, %ld in the text (cut at a NUL)", what,
                       it->valuestring, strlen(it->valuestring), l->len[*k]);
            (*k)++;
        }
        if (it->child)
            fuzz_json_walk(it, l, k, what);
    }
}

/* root: what cJSON made of text (an accepted request body or frame). */
static inline void fuzz_json_check_strings(const cJSON *root, const char *t, size_t len,
                                           const char *what)
{
    fuzz_json_lens *l = malloc(sizeof(*l));
    if (!l)
        abort();
    fuzz_json_collect(t, len, l);
    if (!l->overflow) {
        int k = 0;
        if (cJSON_IsString(root)) {
            FUZZ_CHECK(l->n >= 1 && (long)strlen(root->valuestring) == l->len[0],
                       "%s: top-level string cut", what);
            k = 1;
        }
        fuzz_json_walk(root, l, &k, what);
        FUZZ_CHECK(k == l->n, "%s: %d strings in the tree, %d in the text", what, k, l->n);
    }
    free(l);
}
#endif

#endif
