/* crypto.c — randomness, hashing and encoding helpers over OpenSSL. */
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int crypto_random(void *buf, size_t n)
{
    if (n > (size_t)0x7fffffff)
        return -1;
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

/* OpenSSL 3.0's RAND_bytes costs ~19 us a call here whatever the length (its
 * CTR-DRBG sets up its cipher context again on every call), and the server
 * paid that twice per command: a request id and an audit id.  Bytes that are
 * made public anyway come from a pool per thread instead, filled 256 bytes
 * at a time from the same generator: one call per sixteen request ids.
 *
 * A forked child must not hand out what its parent will: every fork (but not
 * posix_spawn's, whose child only execs) moves the generation on, and a pool
 * of an older generation is refilled before use.  A byte handed out is wiped
 * from the pool: it is never handed out twice. */
static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void) { atomic_fetch_add(&fork_generation, 1); }
static void atfork_register(void) { pthread_atfork(NULL, NULL, on_fork_child); }

int crypto_random_public(void *buf, size_t n)
{
    static _Thread_local unsigned char pool[256];
    static _Thread_local size_t used = sizeof(pool);
    static _Thread_local unsigned pool_generation;
    if (n > sizeof(pool) / 4)
        return crypto_random(buf, n); /* big draws gain nothing from a pool */
    pthread_once(&atfork_once, atfork_register);
    unsigned gen = atomic_load(&fork_generation);
    if (gen != pool_generation || sizeof(pool) - used < n) {
        if (crypto_random(pool, sizeof(pool)) != 0)
            return -1;
        used = 0;
        pool_generation = gen;
    }
    memcpy(buf, pool + used, n);
    explicit_bzero(pool + used, n);
    used += n;
    return 0;
}

/* OpenSSL 3 looks EVP_sha256() up in its provider tables (under a global
 * lock) on every digest; fetched once, the digest skips that: API keys and
 * agent tokens are hashed on every request. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL); }

void crypto_sha256(const void *data, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    pthread_once(&sha256_once, sha256_fetch);
    if (EVP_Digest(data, n, out, &len, sha256_md ? sha256_md : EVP_sha256(), NULL) != 1)
        memset(out, 0, 32); /* never a stored key's hash: a lookup fails closed */
}

int crypto_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void crypto_hex(const void *data, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void crypto_sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    crypto_sha256(data, n, md);
    crypto_hex(md, 32, out);
}

static size_t b64_core(const void *in, size_t n, char *out, size_t outcap, const char *alpha,
                       int pad)
{
    const unsigned char *p = in;
    size_t need = ((n + 2) / 3) * 4 + 1;
    if (outcap < need)
        return 0;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = alpha[v >> 18 & 63];
        out[o++] = alpha[v >> 12 & 63];
        out[o++] = alpha[v >> 6 & 63];
        out[o++] = alpha[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
        out[o++] = alpha[v >> 18 & 63];
        out[o++] = alpha[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = alpha[v >> 6 & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t crypto_base64url(const void *in, size_t n, char *out, size_t outcap)
{
    return b64_core(in, n, out, outcap,
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 0);
}

char *crypto_base64(const void *in, size_t n)
{
    size_t cap = ((n + 2) / 3) * 4 + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    b64_core(in, n, out, cap,
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 1);
    return out;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

unsigned char *crypto_base64_decode(const char *in, size_t inlen, size_t *outlen)
{
    while (inlen && in[inlen - 1] == '=')
        inlen--;
    if (inlen % 4 == 1)
        return NULL;
    unsigned char *out = malloc(inlen / 4 * 3 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < inlen; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = o;
    return out;
}

int crypto_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return 0;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

int crypto_secret_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    unsigned char da[32], db[32];
    crypto_sha256(a, alen, da);
    crypto_sha256(b, blen, db);
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}
