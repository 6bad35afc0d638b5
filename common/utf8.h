/* utf8.h — validation and lossy repair of byte strings meant for JSON. */
#ifndef AURORA_UTF8_H
#define AURORA_UTF8_H

#include <stddef.h>

/* 1 if p[0..n) is valid UTF-8 without NUL bytes. */
int utf8_valid(const char *p, size_t n);
/* Copy with every invalid sequence and NUL replaced by U+FFFD; malloc'd, NUL-terminated. */
char *utf8_sanitize(const char *p, size_t n, size_t *outlen);
/* Length of the longest prefix of p[0..n) that does not end inside a
 * multi-byte sequence (so a stream can be cut at a character boundary). */
size_t utf8_complete_prefix(const char *p, size_t n);

#endif
