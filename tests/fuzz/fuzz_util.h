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

#endif
