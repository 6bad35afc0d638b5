/* http_client.h — blocking outbound HTTP(S) for everything the server calls
 * (secrets backends, connectors talking to providers), over libcurl.
 *
 * Runs on worker threads only (the outbound pool for provider calls), never
 * on the event loop.  Every request is bounded: a total timeout (connect
 * included), a response size cap, only http:// and https:// URLs, no
 * redirects followed.  Nothing here logs: request and response bodies may
 * carry credentials, so response buffers are wiped when released.
 *
 * Base URLs of providers are settings (server_config.h: GCP_*_URL, …) so a
 * test points a connector at a local fixture; connectors build their URLs
 * from those, never from hard-coded hosts. */
#ifndef AURORA_HTTP_CLIENT_H
#define AURORA_HTTP_CLIENT_H

#include "err.h"
#include "secret.h" /* secret_free for forms and bodies that carry secrets */
#include <stddef.h>

struct cJSON;
struct sockaddr;

/* Default cap on a response body (a Vault or AWS answer for one 64 KiB
 * value, a page of projects, a token response are far below this). */
#define HTTP_CLIENT_MAX_RESPONSE (1024 * 1024)
#define HTTP_CLIENT_DEFAULT_TIMEOUT_MS 10000

typedef struct {
    const char *method;         /* "GET", "POST", "DELETE", "LIST", …; NULL: GET, or POST with a body */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
    const char *body;           /* NULL: no body */
    size_t body_len;
    long timeout_ms;            /* whole request, connect included; 0: default */
    const char *cacert;         /* CA bundle file; NULL: http_client_set_default_ca() or system store */
    const char *aws_sigv4;      /* "aws:amz:<region>:<service>" to sign, else NULL */
    const char *userpwd;        /* "<access key id>:<secret key>" with aws_sigv4 */
    size_t max_response;        /* 0: HTTP_CLIENT_MAX_RESPONSE */
    int https_only;             /* refuse http:// (credentials on the wire) */
    const char *const *capture; /* response headers to keep (names, any case), NULL-terminated;
                                   at most HTTP_CLIENT_MAX_CAPTURE; NULL: none */
    /* Streamed body (a provider that streams results, e.g. Splunk's
     * search/jobs/export): when set, the body of a 2xx answer is handed to
     * on_body piece by piece as it arrives, in chunks of any size, and is
     * neither buffered nor bounded by max_response (the callback keeps its
     * own caps).  Any other status is buffered into out->body as usual, for
     * the caller's error handling.  on_body returns 0 to go on reading, else
     * the transfer stops there: http_client_do then returns AUR_OK with
     * out->stopped set.  NULL: the whole body is buffered. */
    int (*on_body)(const char *data, size_t len, void *ud);
    void *on_body_ud;
    /* Every address a connection is about to be opened to, after name
     * resolution (so a host name that resolves to a refused address is
     * caught, not only literal ones): returns 1 to allow it.  A refused
     * address is not connected to; when none is left the request fails with
     * AUR_E_INVALID and out->address_refused.  NULL: every address (for URLs
     * the operator configured).  For URLs a user typed (a Splunk instance).
     * With it the host is resolved and judged before the request and the
     * connection pinned to an allowed address, also through a proxy from
     * the environment (https_proxy, …: its CONNECT names that address);
     * the proxy's own address is judged too. */
    int (*allow_address)(const struct sockaddr *sa, void *ud);
    void *allow_address_ud;
} http_client_req;

/* Response headers kept on request (Retry-After, ETag, Link, rate-limit
 * headers, …): bounded because every byte comes from the peer.  A header
 * sent several times is joined with ", " (RFC 9110 5.3: right for list
 * headers such as Link; a repeated single-value header becomes unparseable,
 * which its parser treats as absent).  A value longer than
 * HTTP_CLIENT_MAX_HEADER_VALUE, or with a control character, is dropped
 * whole rather than cut: a cut Link header would name another URL. */
#define HTTP_CLIENT_MAX_CAPTURE 16
#define HTTP_CLIENT_MAX_HEADER_NAME 64
#define HTTP_CLIENT_MAX_HEADER_VALUE 4096

typedef struct {
    long status;   /* HTTP status; 0 when no answer came back */
    char *body;    /* NUL-terminated, malloc'd (or NULL) */
    size_t len;
    int code;      /* aur_err (common/err.h), also the return value of http_client_do */
    char err[256]; /* one line when code < 0 */
    char *headers; /* captured headers, "name\0value\0…" (read with http_client_header) */
    size_t headers_len;
    int stopped;   /* on_body asked to stop reading (a streamed answer cut short on purpose) */
    int os_errno;  /* a transport failure's errno (ECONNREFUSED: nothing listens there), else 0 */
    int address_refused; /* allow_address refused the address connected to (see above) */
    int unreached; /* the failure says the server did not answer: no connection, a timeout,
                      the connection reset or closed without an answer (not a TLS
                      handshake that failed, e.g. a certificate refused or plain HTTP
                      where TLS was expected, an oversized answer, a bad URL); for
                      breakers (breaker.h) */
} http_client_resp;

/* AUR_OK when the server answered (any status), else a negative aur_err with
 * out->err set: AUR_E_INVALID for a URL or scheme the client refuses,
 * AUR_E_TIMEOUT when the whole request ran out of time (retrying would only
 * multiply the wait), AUR_E_INTERNAL for out of memory, AUR_E_UNAVAILABLE for
 * every other transport failure (refused, TLS, reset, oversized answer).
 * The message names host and port at most, never a body.  With on_body,
 * status is also set when the transfer failed after the answer's status
 * line (a stream cut by the timeout or the peer): what on_body received
 * until then is the caller's to keep or drop. */
int http_client_do(const http_client_req *req, http_client_resp *out);
void http_client_resp_free(http_client_resp *r);
/* The value of a header named in req.capture (name compared without case),
 * or NULL when the answer did not carry it (or it was dropped, see above).
 * Valid until http_client_resp_free. */
const char *http_client_header(const http_client_resp *r, const char *name);

/* The response body as a JSON object (NULL if it is not one). */
struct cJSON *http_client_json(const http_client_resp *r);

/* CA bundle used when a request names none (AURORA_OUTBOUND_CA_FILE);
 * call once at startup, before workers run.  NULL: the system store. */
void http_client_set_default_ca(const char *cafile);

/* Milliseconds to sleep before retry number `attempt` (1, 2, …): exponential
 * with jitter, as the AWS SDKs do. */
long http_client_backoff_ms(int attempt);
void http_client_sleep_ms(long ms);

/* ---- URL helpers ------------------------------------------------------------ */

/* URLs are parsed by curl's URL API (CURLU), and http_client_do() fetches
 * that same parse: a check made with these functions sees what curl will
 * connect to (backslashes, percent-encoded or numeric hosts, "@" tricks).
 * Refused: anything but http:// and https:// (https only when https_only),
 * a URL curl rejects, spaces or control characters, and any user name,
 * password or login options in the URL (curl would send them). */
typedef struct {
    char scheme[8]; /* "http" or "https" */
    char host[256]; /* lowercase; an IPv6 literal without brackets;
                       percent-encoding and numeric IPv4 forms resolved as
                       curl does ("0x7f.1" -> 127.0.0.1); a trailing dot kept
                       (it changes how the name resolves) */
    int port;       /* explicit, or the scheme's default */
} http_client_url;

/* 0 and *out filled, or -1 when the URL is refused. */
int http_client_url_parse(const char *url, int https_only, http_client_url *out);
/* 1 if url is acceptable (see above). */
int http_client_url_ok(const char *url, int https_only);
/* The host (as http_client_url.host) into out; 0 or -1. */
int http_client_url_host(const char *url, char *out, size_t cap);
/* 1 if url has base's scheme, host and port and its path is base's path or
 * below it (whole segments: /v1 covers /v1/x, not /v10). */
int http_client_url_under(const char *url, const char *base);
/* Percent-encodes s (RFC 3986 unreserved kept); malloc'd, NULL on OOM. */
char *http_client_escape(const char *s);
/* "k1=v1&k2=v2" from NULL-terminated pairs {k1, v1, k2, v2, NULL}; values
 * that are NULL are skipped.  malloc'd; release with secret_free
 * when it may carry a secret. */
char *http_client_form(const char *const *pairs);

#endif
