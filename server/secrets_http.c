/* secrets_http.c — blocking HTTP(S) requests for the remote secrets
 * backends, over libcurl.  Runs on worker threads, never on the event loop:
 * every request has a total timeout and a response size cap. */
#include "secrets_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

/* curl_global_init is not thread-safe: once, whichever thread comes first. */
static void init_curl(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

typedef struct {
    char *data;
    size_t len, cap;
    int overflow;
} sink;

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (s->len + n > SHTTP_MAX_RESPONSE) {
        s->overflow = 1;
        return 0; /* aborts the transfer */
    }
    if (s->len + n + 1 > s->cap) {
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < s->len + n + 1)
            ncap *= 2;
        char *nd = malloc(ncap);
        if (!nd)
            return 0;
        /* Grown by copy-and-wipe rather than realloc, which could leave a
         * copy of a secret behind in freed memory. */
        if (s->data) {
            memcpy(nd, s->data, s->len);
            OPENSSL_cleanse(s->data, s->cap);
            free(s->data);
        }
        s->data = nd;
        s->cap = ncap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

int shttp_do(const shttp_req *req, shttp_resp *out)
{
    memset(out, 0, sizeof(*out));
    pthread_once(&curl_once, init_curl);
    if (!curl_ok) {
        snprintf(out->err, sizeof(out->err), "libcurl initialization failed");
        return -1;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(out->err, sizeof(out->err), "out of memory");
        return -1;
    }
    sink sk = { 0 };
    char curl_err[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL, *h2;
    int ok = 1;
    for (size_t i = 0; req->headers && req->headers[i] && ok; i++) {
        if ((h2 = curl_slist_append(hdrs, req->headers[i])))
            hdrs = h2;
        else
            ok = 0;
    }
    /* No "Expect:" removal header: libcurl 7.88 lists it among the SigV4
     * signed headers without sending it, and AWS rejects the signature.
     * (libcurl only sends Expect: 100-continue above 1 MiB anyway.) */
    if (!ok) {
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(c);
        snprintf(out->err, sizeof(out->err), "out of memory");
        return -1;
    }
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : 10000;
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "aurora-server");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sk);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    if (req->cacert && *req->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, req->cacert);
    if (req->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    if (req->method && strcmp(req->method, req->body ? "POST" : "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->aws_sigv4) {
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, req->aws_sigv4);
        curl_easy_setopt(c, CURLOPT_USERPWD, req->userpwd);
    }

    CURLcode rc = curl_easy_perform(c);
    int result = 0;
    if (rc != CURLE_OK) {
        /* curl's messages name host and port, never headers or bodies. */
        if (sk.overflow)
            snprintf(out->err, sizeof(out->err), "response larger than %d bytes",
                     SHTTP_MAX_RESPONSE);
        else
            snprintf(out->err, sizeof(out->err), "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
        result = -1;
        out->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
        if (sk.data) {
            OPENSSL_cleanse(sk.data, sk.cap);
            free(sk.data);
        }
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        out->body = sk.data;
        out->len = sk.len;
    }
    /* The USERPWD copy inside the handle is libcurl's; the handle is freed. */
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return result;
}

void shttp_resp_free(shttp_resp *r)
{
    if (!r)
        return;
    if (r->body) {
        OPENSSL_cleanse(r->body, r->len);
        free(r->body);
    }
    r->body = NULL;
    r->len = 0;
}

long shttp_backoff_ms(int attempt)
{
    long base = 100L << (attempt > 5 ? 5 : attempt - 1);
    unsigned short r = 0;
    (void)crypto_random(&r, sizeof(r));
    return base / 2 + (long)(r % (unsigned)(base / 2 + 1)); /* [base/2, base] */
}

void shttp_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
