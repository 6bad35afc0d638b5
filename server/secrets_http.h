/* secrets_http.h — the one outbound HTTP call the remote secrets backends
 * need (libcurl, blocking, bounded in time and size).  Private to the
 * secrets backends; bodies may carry secret values, so the response buffer
 * is wiped when released and nothing here logs. */
#ifndef AURORA_SECRETS_HTTP_H
#define AURORA_SECRETS_HTTP_H

#include <stddef.h>

/* Largest response body read (a Vault or AWS answer for one 64 KiB value,
 * base64-encoded and wrapped in JSON, is far below this). */
#define SHTTP_MAX_RESPONSE (1024 * 1024)

typedef struct {
    const char *method;         /* "GET", "POST", "DELETE", "LIST", … */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
    const char *body;           /* NULL: no body */
    size_t body_len;
    long timeout_ms;            /* whole request, connect included */
    const char *cacert;         /* CA bundle file, NULL: system store */
    const char *aws_sigv4;      /* "aws:amz:<region>:<service>" to sign, else NULL */
    const char *userpwd;        /* "<access key id>:<secret key>" with aws_sigv4 */
} shttp_req;

typedef struct {
    long status;   /* HTTP status; 0 when no answer came back */
    char *body;    /* NUL-terminated, malloc'd (or NULL) */
    size_t len;
    char err[256]; /* transport error when shttp_do() returns -1 */
    int timed_out; /* the transport error was the timeout: retrying would
                      only multiply the wait */
} shttp_resp;

/* 0 when the server answered (any status), -1 on a transport failure
 * (refused, timed out, TLS, oversized answer) with out->err set. */
int shttp_do(const shttp_req *req, shttp_resp *out);
void shttp_resp_free(shttp_resp *r);

/* Milliseconds to sleep before retry number `attempt` (1, 2, …): exponential
 * with jitter, as the AWS SDKs do. */
long shttp_backoff_ms(int attempt);
void shttp_sleep_ms(long ms);

#endif
