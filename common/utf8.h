/* utf8.h — validation and lossy repair of byte strings meant for JSON. */
#ifndef AURORA_UTF8_H
#define AURORA_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at p (n > 0 bytes available): 1 for
 * ASCII other than NUL, 2-4 for a well-formed multi-byte character; 0 for
 * NUL and anything invalid (overlong, surrogate, above U+10FFFF, truncated). */
size_t utf8_seq_len(const unsigned char *p, size_t n);
/* 1 if p[0..n) is valid UTF-8 without NUL bytes. */
int utf8_valid(const char *p, size_t n);
/* Copy with every invalid sequence and NUL replaced by U+FFFD; malloc'd, NUL-terminated. */
char *utf8_sanitize(const char *p, size_t n, size_t *outlen);
/* Length of the longest prefix of p[0..n) that does not end inside a
 * multi-byte sequence (so a stream can be cut at a character boundary). */
size_t utf8_complete_prefix(const char *p, size_t n);

#endif
