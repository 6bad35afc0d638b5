/* tls_tickets.h — TLS session tickets whose keys survive a restart.
 *
 * OpenSSL encrypts session tickets with keys it draws at random when the
 * context is made, so a restarted server can decrypt none of the tickets
 * its agents hold: every agent of a fleet that reconnects after a restart
 * pays a full handshake, at the moment the server can least afford it.
 * Here the keys are derived from a secret kept in a file (created 0600 on
 * first run) and from the period of time they serve: the same secret gives
 * the same keys after a restart, each period gets a new key (rotation),
 * and tickets of the previous period are still accepted, and renewed.
 * A stolen secret decrypts recorded sessions' tickets: docs/security.md. */
#ifndef AURORA_TLS_TICKETS_H
#define AURORA_TLS_TICKETS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_TICKET_SECRET_LEN 32

typedef struct {
    unsigned char name[16]; /* in the clear in each ticket: picks the key */
    unsigned char aes[32];  /* AES-256-CBC */
    unsigned char hmac[32]; /* HMAC-SHA256 */
} tls_ticket_key;

/* The period `now` falls in. */
uint64_t tls_ticket_epoch(int64_t now, int period_s);
/* The keys of one period (deterministic; pure). */
void tls_ticket_key_derive(const unsigned char secret[TLS_TICKET_SECRET_LEN], uint64_t epoch,
                           tls_ticket_key *out);
/* Reads the secret file (64 hex digits), or creates it (0600) when it does
 * not exist.  0, or -1 with err. */
int tls_ticket_secret_load(const char *path, unsigned char secret[TLS_TICKET_SECRET_LEN],
                           char *err, size_t errlen);
/* Makes ctx (a server context) issue and accept tickets under these keys
 * (one ticket per handshake).  The secret is copied; one set per process. */
int tls_tickets_install(SSL_CTX *ctx, const unsigned char secret[TLS_TICKET_SECRET_LEN],
                        int period_s);

/* The clock the keys are chosen by (tests move it; NULL: time()). */
void tls_tickets_set_clock(int64_t (*now)(void));

#endif
