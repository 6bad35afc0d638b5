/* crypto.h — small helpers over OpenSSL: randomness, SHA-256, base64,
 * constant-time comparison. */
#ifndef AURORA_CRYPTO_H
#define AURORA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* Cryptographically secure random bytes; 0 on success. */
int crypto_random(void *buf, size_t n);
/* The same generator's bytes taken from a pool per thread, for what is not
 * secret once made: identifiers, retry jitter, WebSocket mask keys.  Never
 * for keys, tokens, nonces or anything that must stay unknown: those take
 * crypto_random.  0 on success. */
int crypto_random_public(void *buf, size_t n);
/* out gets 64 lowercase hex chars + NUL. */
void crypto_sha256_hex(const void *data, size_t n, char out[65]);
void crypto_sha256(const void *data, size_t n, unsigned char out[32]);
void crypto_hex(const void *data, size_t n, char *out /* 2n+1 */);
/* The value of one hex digit (either case), -1 for anything else. */
int crypto_hex_digit(int c);
/* URL-safe alphabet, no padding.  Returns chars written (excl. NUL) or 0 if
 * outcap is too small.  outcap must hold 4*ceil(n/3)+1. */
size_t crypto_base64url(const void *in, size_t n, char *out, size_t outcap);
/* Standard alphabet with padding; malloc'd, NUL-terminated; NULL on OOM. */
char *crypto_base64(const void *in, size_t n);
/* Decodes standard or URL-safe base64 (padding optional); malloc'd; NULL on bad input. */
unsigned char *crypto_base64_decode(const char *in, size_t inlen, size_t *outlen);
/* 1 if equal; time depends only on the lengths. */
int crypto_ct_equal(const void *a, size_t alen, const void *b, size_t blen);
/* 1 if equal; compares SHA-256 digests, so the time taken tells nothing about
 * either value, not even its length.  For a secret a caller presents against
 * the one kept (API keys, bearer tokens, CSRF tokens). */
int crypto_secret_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
