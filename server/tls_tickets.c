/* tls_tickets.c — session ticket keys derived from a persisted secret (see
 * tls_tickets.h). */
#include "tls_tickets.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "secret.h"
#include "crypto.h"
#include "log.h"

uint64_t tls_ticket_epoch(int64_t now, int period_s)
{
    if (period_s <= 0 || now < 0)
        return 0;
    return (uint64_t)now / (uint64_t)period_s;
}

/* HKDF-Expand-like: block i = HMAC(secret, label || epoch || i); three
 * blocks give the name, the AES key and the HMAC key, each independent. */
void tls_ticket_key_derive(const unsigned char secret[TLS_TICKET_SECRET_LEN], uint64_t epoch,
                           tls_ticket_key *out)
{
    static const char label[] = "aurora tls ticket key v1";
    unsigned char msg[sizeof(label) - 1 + 8 + 1];
    unsigned char block[3][32];
    memcpy(msg, label, sizeof(label) - 1);
    for (int i = 0; i < 8; i++)
        msg[sizeof(label) - 1 + i] = (unsigned char)(epoch >> (56 - 8 * i));
    for (int b = 0; b < 3; b++) {
        unsigned int len = 32;
        msg[sizeof(msg) - 1] = (unsigned char)(b + 1);
        HMAC(EVP_sha256(), secret, TLS_TICKET_SECRET_LEN, msg, sizeof(msg), block[b], &len);
    }
    memcpy(out->name, block[0], sizeof(out->name));
    memcpy(out->aes, block[1], sizeof(out->aes));
    memcpy(out->hmac, block[2], sizeof(out->hmac));
    secret_wipe(block, sizeof(block));
}

int tls_ticket_secret_load(const char *path, unsigned char secret[TLS_TICKET_SECRET_LEN],
                           char *err, size_t errlen)
{
    char text[2 * TLS_TICKET_SECRET_LEN + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* first run: a new secret, written where only this user reads it */
        if (RAND_bytes(secret, TLS_TICKET_SECRET_LEN) != 1) {
            snprintf(err, errlen, "no randomness for the TLS ticket secret");
            return -1;
        }
        for (int i = 0; i < TLS_TICKET_SECRET_LEN; i++)
            snprintf(text + 2 * i, 3, "%02x", secret[i]);
        text[2 * TLS_TICKET_SECRET_LEN] = '\n';
        int w = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int ok = w >= 0 && write(w, text, 2 * TLS_TICKET_SECRET_LEN + 1) ==
                               2 * TLS_TICKET_SECRET_LEN + 1;
        if (w >= 0 && (close(w) != 0 || !ok))
            ok = 0;
        secret_wipe(text, sizeof(text));
        if (!ok) {
            snprintf(err, errlen, "cannot create the TLS ticket key file %s: %s", path,
                     strerror(errno));
            unlink(path);
            return -1;
        }
        return 0;
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot read the TLS ticket key file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && (sb.st_mode & 077))
        log_warn("TLS ticket key file %s is readable by others: chmod 600 it", path);
    ssize_t n = read(fd, text, sizeof(text));
    close(fd);
    int ok = n >= 2 * TLS_TICKET_SECRET_LEN &&
             (n == 2 * TLS_TICKET_SECRET_LEN || text[2 * TLS_TICKET_SECRET_LEN] == '\n' ||
              text[2 * TLS_TICKET_SECRET_LEN] == '\r');
    for (int i = 0; ok && i < TLS_TICKET_SECRET_LEN; i++) {
        int hi = crypto_hex_digit(text[2 * i]), lo = crypto_hex_digit(text[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        if (ok)
            secret[i] = (unsigned char)(hi << 4 | lo);
    }
    secret_wipe(text, sizeof(text));
    if (!ok) {
        snprintf(err, errlen, "%s must hold %d hex digits (a TLS ticket secret)", path,
                 2 * TLS_TICKET_SECRET_LEN);
        return -1;
    }
    return 0;
}

/* One server per process: the callback finds the secret here. */
static unsigned char g_secret[TLS_TICKET_SECRET_LEN];
static int g_period_s;

static int64_t wall_clock(void) { return (int64_t)time(NULL); }
static int64_t (*g_clock)(void) = wall_clock;

void tls_tickets_set_clock(int64_t (*now)(void)) { g_clock = now ? now : wall_clock; }

static int set_keys(const tls_ticket_key *k, const unsigned char *iv, EVP_CIPHER_CTX *cctx,
                    EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_CTX_set_params(hctx, params))
        return 0;
    return enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)
               : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv);
}

/* OpenSSL's ticket key callback: 1 = keys set, 2 = accepted but issue a
 * fresh ticket (an older key), 0 = unknown key (full handshake), <0 error. */
static int ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    uint64_t now = tls_ticket_epoch(g_clock(), g_period_s);
    tls_ticket_key k;
    int rc = 0;
    if (enc) {
        tls_ticket_key_derive(g_secret, now, &k);
        memcpy(key_name, k.name, sizeof(k.name));
        rc = RAND_bytes(iv, EVP_MAX_IV_LENGTH) == 1 && set_keys(&k, iv, cctx, hctx, 1) ? 1 : -1;
    } else {
        /* this period, the previous one, and the next (another replica's
         * clock a little ahead) */
        uint64_t tries[3] = { now, now ? now - 1 : now, now + 1 };
        for (int i = 0; i < 3; i++) {
            tls_ticket_key_derive(g_secret, tries[i], &k);
            if (!CRYPTO_memcmp(key_name, k.name, sizeof(k.name))) {
                rc = set_keys(&k, iv, cctx, hctx, 0) ? (tries[i] == now ? 1 : 2) : -1;
                break;
            }
        }
    }
    secret_wipe(&k, sizeof(k));
    return rc;
}

int tls_tickets_install(SSL_CTX *ctx, const unsigned char secret[TLS_TICKET_SECRET_LEN],
                        int period_s)
{
    memcpy(g_secret, secret, TLS_TICKET_SECRET_LEN);
    g_period_s = period_s;
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    /* one ticket per handshake is all an agent keeps (OpenSSL's default: 2) */
    SSL_CTX_set_num_tickets(ctx, 1);
    /* a ticket outlives its key period by at most one more period */
    SSL_CTX_set_timeout(ctx, 2L * period_s);
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) == 1 ? 0 : -1;
}
