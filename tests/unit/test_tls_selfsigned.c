/* test_tls_selfsigned.c — the first-run self-signed pair (server/tls_selfsigned.c):
 * the private key is 0600 and a file of its own whatever was at its path
 * before (a key file left world-readable by an interrupted run, a symbolic
 * link elsewhere), no temporary file is left behind, and the pair loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls_selfsigned.h"

typedef struct {
    char dir[64];
    char cert[128], key[128];
} paths;

static int setup(void **state)
{
    paths *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    snprintf(p->dir, sizeof(p->dir), "/tmp/aurora-test-selfsigned-XXXXXX");
    if (!mkdtemp(p->dir)) {
        free(p);
        return -1;
    }
    snprintf(p->cert, sizeof(p->cert), "%s/tls/server.crt", p->dir);
    snprintf(p->key, sizeof(p->key), "%s/tls/server.key", p->dir);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    paths *p = *state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", p->dir);
    int rc = system(cmd);
    free(p);
    return rc == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static char *read_file(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The key is a regular file (not a link), 0600, and the certificate's key. */
static void assert_private_pair(const paths *p)
{
    struct stat st;
    assert_int_equal(lstat(p->key, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *kf = fopen(p->key, "r"), *cf = fopen(p->cert, "r");
    assert_non_null(kf);
    assert_non_null(cf);
    EVP_PKEY *k = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    X509 *c = PEM_read_X509(cf, NULL, NULL, NULL);
    fclose(kf);
    fclose(cf);
    assert_non_null(k);
    assert_non_null(c);
    assert_int_equal(X509_check_private_key(c, k), 1);
    X509_free(c);
    EVP_PKEY_free(k);
}

/* Only server.crt and server.key in the directory: no temporary file. */
static void assert_no_leftovers(const paths *p)
{
    char d[160];
    snprintf(d, sizeof(d), "%s/tls", p->dir);
    DIR *dh = opendir(d);
    assert_non_null(dh);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dh))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (strcmp(e->d_name, "server.crt") && strcmp(e->d_name, "server.key"))
            fail_msg("left in %s: %s", d, e->d_name);
        n++;
    }
    closedir(dh);
    assert_int_equal(n, 2);
}

static void test_first_run_makes_a_private_pair(void **state)
{
    paths *p = *state;
    char err[256] = "";
    assert_int_equal(tls_ensure_selfsigned(p->cert, p->key, NULL, err, sizeof(err)), 1);
    assert_private_pair(p);
    assert_no_leftovers(p);
    /* Both there: nothing is made again. */
    assert_int_equal(tls_ensure_selfsigned(p->cert, p->key, NULL, err, sizeof(err)), 0);
}

/* A run that stopped after writing the key (or an operator's copy) left a
 * key file readable by everyone, without a certificate: the new key must
 * not be written into that file, keeping its mode. */
static void test_an_earlier_world_readable_key_file_is_replaced(void **state)
{
    paths *p = *state;
    char d[160];
    snprintf(d, sizeof(d), "%s/tls", p->dir);
    assert_int_equal(mkdir(d, 0700), 0);
    write_file(p->key, "stale\n", 0644);
    char err[256] = "";
    assert_int_equal(tls_ensure_selfsigned(p->cert, p->key, NULL, err, sizeof(err)), 1);
    assert_private_pair(p);
    assert_no_leftovers(p);
}

/* A link at the key's path: the key is not written through it into the
 * file it names (elsewhere, readable by others). */
static void test_a_link_at_the_key_path_is_not_followed(void **state)
{
    paths *p = *state;
    char d[160], outside[160];
    snprintf(d, sizeof(d), "%s/tls", p->dir);
    snprintf(outside, sizeof(outside), "%s/elsewhere", p->dir);
    assert_int_equal(mkdir(d, 0700), 0);
    write_file(outside, "not a key\n", 0644);
    assert_int_equal(symlink(outside, p->key), 0);
    char err[256] = "";
    assert_int_equal(tls_ensure_selfsigned(p->cert, p->key, NULL, err, sizeof(err)), 1);
    assert_string_equal(read_file(outside), "not a key\n");
    assert_private_pair(p);
    assert_no_leftovers(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_run_makes_a_private_pair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_earlier_world_readable_key_file_is_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_link_at_the_key_path_is_not_followed, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
