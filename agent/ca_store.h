/* ca_store.h — the system CA store for the tunnel's TLS client, loaded lazily.
 *
 * OpenSSL's default (SSL_CTX_set_default_verify_paths, what libwebsockets
 * calls) parses the whole default bundle file (/usr/lib/ssl/cert.pem, ~140
 * roots) at start-up and keeps every certificate: ~800 KiB of heap in an agent
 * that verifies one server.  A hashed directory (`openssl rehash`, Debian's
 * /etc/ssl/certs) gives the same trust with each root read only when a chain
 * needs it (X509_LOOKUP_hash_dir).  Used when AURORA_CA_FILE is not set. */
#ifndef AURORA_AGENT_CA_STORE_H
#define AURORA_AGENT_CA_STORE_H

#include <openssl/ssl.h>

/* Adds the system store to ctx:
 *   - the hashed directory SSL_CERT_DIR, else OpenSSL's default certificate
 *     directory when it holds hash links (*.0), looked up on demand;
 *   - the bundle file SSL_CERT_FILE when that variable is set (an explicit
 *     choice), else OpenSSL's default bundle only when no hashed directory was
 *     found (then it is parsed at once, as OpenSSL would).
 * Writes what it used into `desc` (for the log).  0, or -1 when neither a
 * directory nor a file could be used. */
int agent_ca_store_load_system(SSL_CTX *ctx, char *desc, size_t desc_len);

#endif
