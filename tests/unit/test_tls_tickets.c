/* test_tls_tickets.c — session ticket keys from a persisted secret
 * (server/tls_tickets.c): derivation, the secret file, and real TLS 1.3
 * handshakes in memory: resumed with the same secret (a restart), across
 * one rotation (renewed), not after two, not with another secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls_selfsigned.h"
#include "tls_tickets.h"

#define PERIOD 3600

static char dir[] = "/tmp/aurora-test-tickets-XXXXXX";
static char cert[256], key[256];

static int setup_all(void **state)
{
    (void)state;
    char err[256];
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    return tls_ensure_selfsigned(cert, key, NULL, err, sizeof(err)) < 0 ? -1 : 0;
}

static int teardown_all(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_epoch(void **state)
{
    (void)state;
    assert_int_equal(tls_ticket_epoch(0, PERIOD), 0);
    assert_int_equal(tls_ticket_epoch(PERIOD - 1, PERIOD), 0);
    assert_int_equal(tls_ticket_epoch(PERIOD, PERIOD), 1);
    assert_int_equal(tls_ticket_epoch(-5, PERIOD), 0);
    assert_int_equal(tls_ticket_epoch(100, 0), 0);
}

static void test_derive(void **state)
{
    (void)state;
    unsigned char s1[TLS_TICKET_SECRET_LEN], s2[TLS_TICKET_SECRET_LEN];
    memset(s1, 0x11, sizeof(s1));
    memset(s2, 0x11, sizeof(s2));
    s2[31] = 0x12;
    tls_ticket_key a, b, c, d;
    tls_ticket_key_derive(s1, 7, &a);
    tls_ticket_key_derive(s1, 7, &b);
    tls_ticket_key_derive(s1, 8, &c);
    tls_ticket_key_derive(s2, 7, &d);
    assert_memory_equal(&a, &b, sizeof(a)); /* deterministic: a restart finds the same keys */
    assert_memory_not_equal(a.name, c.name, sizeof(a.name)); /* each period its own */
    assert_memory_not_equal(a.aes, c.aes, sizeof(a.aes));
    assert_memory_not_equal(a.name, d.name, sizeof(a.name)); /* each secret its own */
    assert_memory_not_equal(a.hmac, d.hmac, sizeof(a.hmac));
    assert_memory_not_equal(a.aes, a.hmac, sizeof(a.aes)); /* independent parts */
}

static void test_secret_file(void **state)
{
    (void)state;
    char path[300], err[256];
    unsigned char s1[TLS_TICKET_SECRET_LEN], s2[TLS_TICKET_SECRET_LEN];
    snprintf(path, sizeof(path), "%s/ticket.key", dir);
    unlink(path);
    assert_int_equal(tls_ticket_secret_load(path, s1, err, sizeof(err)), 0); /* created */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 65);
    assert_int_equal(tls_ticket_secret_load(path, s2, err, sizeof(err)), 0); /* read back */
    assert_memory_equal(s1, s2, sizeof(s1));

    static const char *bad[] = { "", "abc\n", ("zz" "00112233445566778899aabbccddeeff00112233445566778899aabbccdd\n"),
                                 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        err[0] = '\0';
        assert_int_equal(tls_ticket_secret_load(path, s2, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "hex digits"));
    }
    FILE *f = fopen(path, "w");
    fputs("00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\n", f);
    fclose(f);
    assert_int_equal(tls_ticket_secret_load(path, s2, err, sizeof(err)), 0);
    assert_int_equal(s2[0], 0x00);
    assert_int_equal(s2[10], 0xaa);
    assert_int_equal(s2[31], 0xff);
    char missing_dir[300];
    snprintf(missing_dir, sizeof(missing_dir), "%s/nope/ticket.key", dir);
    assert_int_equal(tls_ticket_secret_load(missing_dir, s2, err, sizeof(err)), -1);
}

static int64_t fake_now;
static int64_t fake_clock(void) { return fake_now; }

static SSL_CTX *server_ctx(const unsigned char secret[TLS_TICKET_SECRET_LEN])
{
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    assert_non_null(s);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(s, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(tls_tickets_install(s, secret, PERIOD), 0);
    return s;
}

/* One TLS 1.3 handshake in memory, offering `offer`; then a byte from the
 * server, which makes the client read the ticket.  Returns whether the
 * session was resumed; *got: the client's session afterwards. */
static int handshake(SSL_CTX *sctx, SSL_SESSION *offer, SSL_SESSION **got)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (offer) { /* a copy, as the agent offers (the original stays resumable) */
        SSL_SESSION *o = SSL_SESSION_dup(offer);
        assert_int_equal(SSL_set_session(c, o), 1);
        SSL_SESSION_free(o);
    }
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 20 && !(cdone && sdone); i++) {
        if (!cdone)
            cdone = SSL_do_handshake(c) == 1;
        if (!sdone)
            sdone = SSL_do_handshake(s) == 1;
    }
    assert_true(cdone && sdone);
    assert_int_equal(SSL_write(s, "x", 1), 1);
    char b;
    assert_int_equal(SSL_read(c, &b, 1), 1);
    int reused = SSL_session_reused(c);
    assert_int_equal(SSL_session_reused(s), reused);
    /* a copy, as the agent keeps: SSL_free without a TLS shutdown marks the
     * connection's own session not resumable */
    *got = SSL_SESSION_dup(SSL_get0_session(c));
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    return reused;
}

static void test_resumption_across_restart_and_rotation(void **state)
{
    (void)state;
    unsigned char secret[TLS_TICKET_SECRET_LEN], other[TLS_TICKET_SECRET_LEN];
    memset(secret, 0x42, sizeof(secret));
    memset(other, 0x43, sizeof(other));
    tls_tickets_set_clock(fake_clock);
    fake_now = 10 * PERIOD + 5;

    SSL_CTX *s1 = server_ctx(secret);
    SSL_SESSION *sess = NULL, *next = NULL;
    assert_int_equal(handshake(s1, NULL, &sess), 0); /* a full handshake, a ticket */
    SSL_CTX_free(s1);

    /* "restarted": a new context with the same secret takes the ticket */
    SSL_CTX *s2 = server_ctx(secret);
    assert_int_equal(handshake(s2, sess, &next), 1);
    SSL_SESSION_free(next);

    /* next period: the previous key still decrypts; the ticket is renewed */
    fake_now += PERIOD;
    assert_int_equal(handshake(s2, sess, &next), 1);
    /* two periods on: the old key is gone, a full handshake */
    fake_now += PERIOD;
    SSL_SESSION *stale = NULL;
    assert_int_equal(handshake(s2, sess, &stale), 0);
    SSL_SESSION_free(stale);
    SSL_CTX_free(s2);

    /* another secret (a new key file): no resumption, but the handshake works */
    SSL_CTX *s3 = server_ctx(other);
    SSL_SESSION *fresh = NULL;
    assert_int_equal(handshake(s3, next, &fresh), 0);
    SSL_SESSION_free(fresh);
    SSL_CTX_free(s3);
    SSL_SESSION_free(next);
    SSL_SESSION_free(sess);
    tls_tickets_set_clock(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch),
        cmocka_unit_test(test_derive),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_resumption_across_restart_and_rotation),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
