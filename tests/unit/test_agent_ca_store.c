/* test_agent_ca_store.c — the agent's system CA store (agent/ca_store.c): a
 * hashed directory is looked up on demand (nothing parsed at load, the root
 * read when a chain is verified), a bundle named by SSL_CERT_FILE is parsed at
 * once, and with neither the load fails.  The certificate is made here with
 * OpenSSL's API and named by OpenSSL's subject hash, not by the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca_store.h"

static char dir[64], empty_dir[64], bundle[128], hashed[128];
static X509 *cert;

static X509 *self_signed(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"ca-store test", -1,
                               -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    EVP_PKEY_free(key);
    return x;
}

static void write_pem(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/ca-store-XXXXXX");
    strcpy(empty_dir, "/tmp/ca-store-empty-XXXXXX");
    if (!mkdtemp(dir) || !mkdtemp(empty_dir))
        return -1;
    cert = self_signed();
    snprintf(hashed, sizeof(hashed), "%s/%08lx.0", dir, X509_subject_name_hash(cert));
    snprintf(bundle, sizeof(bundle), "%s/bundle.pem", empty_dir);
    return cert ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(hashed);
    unlink(bundle);
    rmdir(dir);
    rmdir(empty_dir);
    X509_free(cert);
    return 0;
}

static int store_count(SSL_CTX *ctx)
{
    return sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx)));
}

static int verifies(SSL_CTX *ctx)
{
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(ctx), cert, NULL);
    int ok = X509_verify_cert(vc);
    X509_STORE_CTX_free(vc);
    return ok == 1;
}

static void test_hashed_dir_is_read_on_demand(void **state)
{
    (void)state;
    write_pem(hashed);
    setenv("SSL_CERT_DIR", dir, 1);
    unsetenv("SSL_CERT_FILE");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char desc[300];
    assert_int_equal(agent_ca_store_load_system(ctx, desc, sizeof(desc)), 0);
    assert_non_null(strstr(desc, "(hashed, on demand)"));
    assert_null(strstr(desc, "bundle"));
    assert_int_equal(store_count(ctx), 0); /* nothing parsed yet */
    assert_true(verifies(ctx));
    assert_int_equal(store_count(ctx), 1); /* the one root, when the chain needed it */
    SSL_CTX_free(ctx);
    unlink(hashed);
}

static void test_named_bundle_is_parsed_at_once(void **state)
{
    (void)state;
    write_pem(bundle);
    setenv("SSL_CERT_DIR", empty_dir, 1); /* no hash links there */
    setenv("SSL_CERT_FILE", bundle, 1);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char desc[300];
    assert_int_equal(agent_ca_store_load_system(ctx, desc, sizeof(desc)), 0);
    assert_non_null(strstr(desc, "(bundle)"));
    assert_null(strstr(desc, "hashed"));
    assert_int_equal(store_count(ctx), 1);
    assert_true(verifies(ctx));
    SSL_CTX_free(ctx);
    unlink(bundle);
}

static void test_nothing_usable_fails(void **state)
{
    (void)state;
    setenv("SSL_CERT_DIR", empty_dir, 1);
    setenv("SSL_CERT_FILE", "/nonexistent/bundle.pem", 1);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char desc[300];
    assert_int_equal(agent_ca_store_load_system(ctx, desc, sizeof(desc)), -1);
    assert_false(verifies(ctx));
    SSL_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashed_dir_is_read_on_demand),
        cmocka_unit_test(test_named_bundle_is_parsed_at_once),
        cmocka_unit_test(test_nothing_usable_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
