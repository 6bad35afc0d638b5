/* tls_selfsigned.c — create a self-signed certificate with OpenSSL 3. */
#include "tls_selfsigned.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"

static int mkdir_parent(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return (mkdir(dir, 0700) < 0 && errno != EEXIST) ? -1 : 0;
}

/* "<path>.tmp-<12 hex>": beside path, so that rename() replaces it. */
static int tmp_name(const char *path, char *out, size_t cap)
{
    unsigned char rnd[6];
    char hex[13];
    if (crypto_random(rnd, sizeof(rnd)) < 0)
        return -1;
    crypto_hex(rnd, sizeof(rnd), hex);
    int n = snprintf(out, cap, "%s.tmp-%s", path, hex);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* A new file, never an existing one or a link: `mode` less the umask. */
static FILE *create_private(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e;
    }
    return f;
}

/* Flushed, on disk and closed: 0, or -1 with errno. */
static int finish_file(FILE *f)
{
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    errno = e;
    return bad ? -1 : 0;
}

/* fsync of the directory holding path, so that a rename survives a crash. */
static void sync_dir_of(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

int tls_ensure_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
                          char *err, size_t errlen)
{
    if (access(cert_path, F_OK) == 0 && access(key_path, F_OK) == 0)
        return 0;
    if (mkdir_parent(cert_path) < 0 || mkdir_parent(key_path) < 0) {
        snprintf(err, errlen, "cannot create directory for %s: %s", cert_path, strerror(errno));
        return -1;
    }
    int rc = -1;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    FILE *kf = NULL, *cf = NULL;
    char ktmp[1100], ctmp[1100];
    if (!pkey || !cert)
        goto ssl_fail;
    unsigned char serial[16];
    if (crypto_random(serial, sizeof(serial)) < 0)
        goto ssl_fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert))) {
        BN_free(bn);
        goto ssl_fail;
    }
    BN_free(bn);
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600);
    X509_set_pubkey(cert, pkey);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Aurora", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(cert, name);
    char san[512];
    snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1,IP:::1%s%s",
             hostname && *hostname ? ",DNS:" : "", hostname && *hostname ? hostname : "");
    if (add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        add_ext(cert, NID_key_usage, "critical,digitalSignature,keyCertSign") < 0 ||
        add_ext(cert, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(cert, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(cert, NID_subject_alt_name, san) < 0)
        goto ssl_fail;
    if (!X509_sign(cert, pkey, EVP_sha256()))
        goto ssl_fail;

    /* Each file is written whole under a name of its own (O_EXCL, never
     * through a link, the key 0600 from its creation) and renamed into
     * place, the certificate last: a crash leaves either no certificate
     * (the next start makes both again) or a complete pair, never a
     * truncated file the server cannot load, and an earlier key file (its
     * mode, a symbolic link) is replaced, never written into. */
    if (tmp_name(key_path, ktmp, sizeof(ktmp)) < 0 || tmp_name(cert_path, ctmp, sizeof(ctmp)) < 0) {
        snprintf(err, errlen, "cannot write %s: path too long or no randomness", key_path);
        goto out;
    }
    if (!(kf = create_private(ktmp, 0600))) {
        snprintf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
        goto out;
    }
    if (!PEM_write_PrivateKey(kf, pkey, NULL, NULL, 0, NULL, NULL))
        goto ssl_fail;
    if (!(cf = create_private(ctmp, 0644))) { /* public: the umask decides */
        snprintf(err, errlen, "cannot write %s: %s", cert_path, strerror(errno));
        goto out;
    }
    if (!PEM_write_X509(cf, cert))
        goto ssl_fail;
    rc = 1;
    goto out;
ssl_fail: {
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "creating self-signed certificate failed: %s",
             why ? why : "unknown error");
}
out:
    if (kf && finish_file(kf) != 0 && rc == 1) {
        snprintf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
        rc = -1;
    }
    if (cf && finish_file(cf) != 0 && rc == 1) {
        snprintf(err, errlen, "cannot write %s: %s", cert_path, strerror(errno));
        rc = -1;
    }
    if (rc == 1 && rename(ktmp, key_path) != 0) {
        snprintf(err, errlen, "cannot install %s: %s", key_path, strerror(errno));
        rc = -1;
    }
    if (rc == 1 && rename(ctmp, cert_path) != 0) {
        snprintf(err, errlen, "cannot install %s: %s", cert_path, strerror(errno));
        rc = -1;
    }
    if (rc == 1) {
        sync_dir_of(key_path);
        sync_dir_of(cert_path);
    }
    if (kf)
        unlink(ktmp); /* gone already when renamed */
    if (cf)
        unlink(ctmp);
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return rc;
}
