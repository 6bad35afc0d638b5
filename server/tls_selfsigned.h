/* tls_selfsigned.h — first-run self-signed certificate for the embedded default. */
#ifndef AURORA_TLS_SELFSIGNED_H
#define AURORA_TLS_SELFSIGNED_H

#include <stddef.h>

/* If cert_path does not exist, creates an EC P-256 key (mode 0600) and a
 * self-signed certificate for localhost, 127.0.0.1 and ::1 (plus `hostname`
 * when not NULL), valid 10 years.  Creates the parent directory.  Returns 1 if
 * created, 0 if it already existed, -1 with err on failure. */
int tls_ensure_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
                          char *err, size_t errlen);

#endif
