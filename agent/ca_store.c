/* ca_store.c — see ca_store.h. */
#include "ca_store.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509.h>

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* A hashed directory has names like 3513523f.0: eight hex digits, '.', a digit. */
static int has_hash_links(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strlen(n) < 10 || n[8] != '.' || n[9] < '0' || n[9] > '9')
            continue;
        found = strspn(n, "0123456789abcdef") == 8;
    }
    closedir(d);
    return found;
}

int agent_ca_store_load_system(SSL_CTX *ctx, char *desc, size_t desc_len)
{
    const char *dir = env_or(X509_get_default_cert_dir_env(), X509_get_default_cert_dir());
    const char *file_env = getenv(X509_get_default_cert_file_env());
    int use_dir = has_hash_links(dir);
    const char *file = file_env && *file_env ? file_env : use_dir ? NULL : X509_get_default_cert_file();
    int n = snprintf(desc, desc_len, "system store:");
    if (use_dir && SSL_CTX_load_verify_dir(ctx, dir) == 1 && n >= 0 && (size_t)n < desc_len)
        n += snprintf(desc + n, desc_len - (size_t)n, " %s (hashed, on demand)", dir);
    else
        use_dir = 0;
    int used_file = file && SSL_CTX_load_verify_file(ctx, file) == 1;
    if (used_file && n >= 0 && (size_t)n < desc_len)
        snprintf(desc + n, desc_len - (size_t)n, " %s (bundle)", file);
    /* a failed load leaves errors queued: they must not be read as the cause
     * of a later TLS failure on this thread */
    ERR_clear_error();
    return use_dir || used_file ? 0 : -1;
}
