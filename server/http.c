/* http.c — request assembly, asynchronous dispatch and response writing on
 * the lws event loop; see http.h. */
#include "http.h"
#include "https_redirect.h"

#include <ctype.h>
#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "access_log.h"
#include "client_addr.h"
#include "console_static.h"
#include "log.h"
#include "router.h"
#include "secret.h"
#include "server_metrics.h"
#include "worker.h"
#include "json_members.h"
#include "json_text.h"
#include "utf8.h"

#define WRITE_CHUNK (32 * 1024)
/* A streamed answer's write: one HTTP/1.1 chunk, "<hex>\r\n<data>\r\n", of
 * four TLS records (16 KiB each) exactly when that much is pending.  32 KiB of
 * data plus the chunk's 8 bytes of framing made three records, the last of 8
 * bytes, each sealed and written (a system call) like a full one. */
#define STREAM_WRITE (4 * 16384)
#define STREAM_CHUNK_DATA (STREAM_WRITE - 8) /* "fff8\r\n" + data + "\r\n" */
/* Custom headers modules register at start (auth: 3; the webhook kit: up to 4
 * per connector).  Only the ones a request carries are copied, and every copied
 * value lives in lws's header buffer first, so a larger list costs a lookup per
 * name and request, never more memory per request. */
#define MAX_CAPTURED 128
/* Longest registrable name; lws matches custom names with their ':'. */
#define CAPTURED_NAME_MAX 64
/* No header value can be longer than lws's whole header buffer
 * (max_http_header_data in server.c), so none is ever cut or dropped. */
#define HEADER_VALUE_MAX (16384 + 1)
/* A Content-Length of at most 18 digits fits in int64_t, and lws (which reads
 * the header into a 32-byte buffer and atoll()s it) frames the body exactly as
 * we do. */
#define CONTENT_LENGTH_MAX_DIGITS 18
/* What a streamed answer may have waiting for its client.  Its writer (exec.c)
 * stays far below: it encodes more only while less than 64 KiB is pending,
 * at most 32 KiB of output (192 KiB of JSON escapes) at a time.  A stream
 * that still gets here has a writer that ignores the backlog, and the client
 * is dropped rather than the buffer grown without bound. */
#define STREAM_MAX_PENDING (2 * 1024 * 1024)

struct exec_spec;
void exec_spec_free(struct exec_spec *e);                    /* exec.c */
int exec_start(http_txn *t, struct exec_spec *e);           /* exec.c */
void exec_never_sent(struct exec_spec *e);                   /* exec.c */

enum txn_state { TXN_RECEIVING, TXN_PROCESSING, TXN_WRITING, TXN_STREAMING, TXN_DONE };

struct http_txn {
    struct lws *wsi; /* NULL once the connection is gone */
    struct http_conn *conn; /* wsi's, while wsi is set */
    enum txn_state state;
    int job_pending;
    http_request req;
    http_response resp;
    const struct route *route;
    int headers_sent;
    int close_after; /* answer with Connection: close, then close */
    long long body_expected; /* Content-Length */
    int body_completions;    /* LWS_CALLBACK_HTTP_BODY_COMPLETION seen */
    int stream_ended;
    int final_chunk_sent;
    const char *stream_ctype;
    int stream_status;
    buf_t out;
    const http_stream_ops *ops;
    void *ops_ctx;
    double started;   /* sm_now() when the request line arrived */
    size_t bytes_out; /* body bytes written (access log) */
    int logged;       /* the access log line is written once */
    int console;      /* answered by console_static.c (logged as route "console") */
    /* The send deadline (arm_send_deadline): armed while the client has
     * bytes to take, re-armed at most once a second as it takes them. */
    int deadline_armed;
    time_t deadline_at; /* monotonic second it was last armed */
    /* What the answer is charged to (http_txn_hold), given back once. */
    void (*hold_release)(void *arg);
    void *hold_arg;
};

static void log_txn(http_txn *t, int status);

static int64_t g_max_body = 1 << 20;
static int g_send_timeout_s = 60;
static struct lws_vhost *g_ops_vhost;

void http_set_ops_vhost(struct lws_vhost *v) { g_ops_vhost = v; }

int http_host_ok(const char *h)
{
    size_t n = h ? strlen(h) : 0;
    if (n == 0 || n > 255)
        return 0;
    size_t i = 0;
    if (h[0] == '[') { /* an IPv6 literal: hex digits, ':' and '.' up to its ']' */
        for (i = 1; i < n && h[i] != ']'; i++)
            if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else { /* a name or IPv4 address: letters, digits, '-' and '.', not first */
        for (; i < n && h[i] != ':'; i++)
            if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
                return 0;
        if (i == 0 || h[0] == '.' || h[0] == '-')
            return 0;
    }
    if (i == n)
        return 1;
    if (h[i] != ':' || i + 1 == n || n - i - 1 > 5) /* ":port", 1 to 5 digits */
        return 0;
    for (i++; i < n; i++)
        if (!isdigit((unsigned char)h[i]))
            return 0;
    return 1;
}

static struct lws_vhost *g_https_vhost;
void http_set_https_vhost(struct lws_vhost *v) { g_https_vhost = v; }
static struct lws_vhost *g_internal_vhost;
void http_set_internal_vhost(struct lws_vhost *v) { g_internal_vhost = v; }
static char *g_captured[MAX_CAPTURED];
static int g_ncaptured;

void http_set_limits(int64_t max_body) { g_max_body = max_body; }

void http_set_send_timeout(int seconds) { g_send_timeout_s = seconds > 0 ? seconds : 60; }

/* RFC 9110 token characters: what a header name is made of. */
static int is_token_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

int http_capture_header(const char *name)
{
    /* Registration happens at start: a header silently not captured would make
     * its route answer as if every client left it out, so say why, loudly. */
    if (!name || !is_token_name(name) || strlen(name) > CAPTURED_NAME_MAX) {
        log_error("http: cannot capture header \"%s\": not a header name of 1-%d token "
                  "characters", name ? name : "(null)", CAPTURED_NAME_MAX);
        return -1;
    }
    for (int i = 0; i < g_ncaptured; i++)
        if (!strcasecmp(g_captured[i], name))
            return 0;
    if (g_ncaptured >= MAX_CAPTURED) {
        log_error("http: cannot capture header \"%s\": already %d captured headers (raise "
                  "MAX_CAPTURED in server/http.c)", name, MAX_CAPTURED);
        return -1;
    }
    char *s = strdup(name);
    if (!s) {
        log_error("http: cannot capture header \"%s\": out of memory", name);
        return -1;
    }
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    g_captured[g_ncaptured++] = s;
    return 0;
}

/* AURORA_TRUSTED_PROXIES, parsed (read on the loop thread only, set before
 * the listeners start). */
static client_addr_trust g_trust;

int http_set_trusted_proxies(const char *spec)
{
    char err[256];
    client_addr_trust t;
    if (client_addr_trust_parse(spec, &t, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    client_addr_trust_free(&g_trust);
    g_trust = t;
    if (t.n)
        log_info("requests from %zu trusted proxy network(s) (AURORA_TRUSTED_PROXIES) are "
                 "attributed to their X-Forwarded-For client", t.n);
    return 0;
}

void http_module_cleanup(void)
{
    client_addr_trust_free(&g_trust);
    for (int i = 0; i < g_ncaptured; i++)
        free(g_captured[i]);
    g_ncaptured = 0;
}

/* ---- request accessors ---------------------------------------------------- */

const char *http_client(const http_request *r)
{
    return r->client[0] ? r->client : r->peer;
}

const char *http_header_get(const http_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (!strcasecmp(r->headers[i].name, name))
            return r->headers[i].value;
    return NULL;
}

const char *http_param(const http_request *r, const char *name)
{
    /* param_names hold the pattern segment, "{name}". */
    size_t nl = strlen(name);
    for (int i = 0; i < r->nparams; i++) {
        const char *pn = r->param_names[i];
        if (pn[0] == '{' && !strncmp(pn + 1, name, nl) && pn[nl + 1] == '}' && !pn[nl + 2])
            return r->params[i];
    }
    return NULL;
}

int http_query_get(const http_request *r, const char *name, char *out, size_t cap)
{
    if (!r->query || !cap)
        return 0;
    /* r->query holds lws's already %-decoded "name=value" arguments, each
     * NUL-terminated, back to back: decoding again would turn a literal
     * "%25" into something else, and splitting on '&' would break on a
     * decoded "%26". */
    size_t nl = strlen(name);
    for (size_t off = 0; off < r->query_len;) {
        const char *arg = r->query + off;
        size_t al = strlen(arg);
        if (al > nl && !strncmp(arg, name, nl) && arg[nl] == '=') {
            snprintf(out, cap, "%s", arg + nl + 1);
            return 1;
        }
        off += al + 1;
    }
    return 0;
}

const char *http_method_name(http_method m)
{
    static const char *n[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "OTHER" };
    return n[m];
}

/* ---- response helpers ----------------------------------------------------- */

void http_resp_json(http_response *resp, int status, cJSON *obj)
{
    buf_free(&resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    char *s = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!s) {
        resp->status = 500;
        buf_append_str(&resp->body, "{\"error\":\"out of memory\",\"error_code\":\"INTERNAL\"}");
        return;
    }
    /* The printout becomes the body as it is: no second copy of a large
     * result at once, and the body is exactly its size (what exec.c charges
     * to the output budgets while it waits for the client). */
    size_t n = strlen(s);
    resp->body.data = s;
    resp->body.len = n;
    resp->body.off = 0;
    resp->body.cap = n + 1;
}

void http_resp_error(http_response *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote what the client sent (a path, a route parameter) as
     * lws %-decoded it: "%FF" would put a byte that is not UTF-8 into the
     * JSON text, which a strict reader refuses whole (RFC 8259 8.1). */
    char *clean = NULL;
    const char *text = msg;
    if (!utf8_valid(msg, strlen(msg))) {
        clean = utf8_sanitize(msg, strlen(msg), NULL);
        text = clean ? clean : "(message not valid UTF-8)";
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", text);
        cJSON_AddStringToObject(o, "error_code", code);
    }
    free(clean);
    http_resp_json(resp, status, o);
}

int http_resp_add_header(http_response *resp, const char *name, const char *value)
{
    if (resp->nextra >= (int)(sizeof(resp->extra) / sizeof(resp->extra[0])))
        return -1;
    http_header *h = &resp->extra[resp->nextra];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return -1;
    }
    resp->nextra++;
    return 0;
}

cJSON *http_json_body(const http_request *req, http_response *resp)
{
    const char *text = buf_head(&req->body);
    size_t len = buf_pending(&req->body);
    if (len == 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "request body must be a JSON object");
        return NULL;
    }
    /* cJSON would decode "\u0000" into a C string, where it ends the string:
     * "a\u0000b" would silently become "a" (a key as much as a value). */
    if (json_text_has_nul(text, len)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "request body: JSON strings must not contain NUL (\\u0000)");
        return NULL;
    }
    /* Counted before parsing: the tree, not the text, is what a body of
     * many tiny values ([0,0,...]) makes expensive. */
    if (json_text_values(text, len) > HTTP_JSON_MAX_VALUES) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "request body holds more than %d JSON values", HTTP_JSON_MAX_VALUES);
        return NULL;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    /* One object and nothing after it but white space. */
    while (o && end < text + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!o || !cJSON_IsObject(o) || end != text + len) {
        cJSON_Delete(o);
        http_resp_error(resp, 400, "BAD_REQUEST", "request body is not a valid JSON object");
        return NULL;
    }
    /* cJSON's lookups find a repeated member's first value, most other
     * readers its last: a proxy in front would see another command than
     * the one run (json_members.h). */
    char name[64];
    int rep = json_repeated_member(o, name, sizeof(name));
    if (rep != 0) {
        cJSON_Delete(o);
        if (rep < 0)
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
        else
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "request body: member \"%s\" appears more than once in one object",
                            name);
        return NULL;
    }
    return o;
}

/* ---- transaction lifetime ------------------------------------------------- */

http_request *http_txn_request(http_txn *t) { return &t->req; }
http_response *http_txn_response(http_txn *t) { return &t->resp; }

void http_request_release(http_request *r)
{
    free(r->path);
    free(r->query);
    /* Authorization (API keys, agent tokens), the forward and internal
     * secrets: header values are wiped like bodies. */
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        secret_free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    /* Bodies carry client secrets, keys and tokens: leave nothing behind. */
    if (r->body.data)
        explicit_bzero(r->body.data, r->body.cap);
    buf_free(&r->body);
}

static void txn_free(http_txn *t)
{
    http_request_release(&t->req);
    buf_free(&t->resp.body);
    for (int i = 0; i < t->resp.nextra; i++) {
        free(t->resp.extra[i].name);
        free(t->resp.extra[i].value);
    }
    if (t->resp.exec)
        exec_spec_free(t->resp.exec);
    buf_free(&t->out);
    if (t->hold_release)
        t->hold_release(t->hold_arg); /* the body it was charged for is gone */
    free(t);
}

/* Frees the txn once neither the connection, a job nor an exec refers to it. */
static void txn_maybe_free(http_txn *t)
{
    if (!t->wsi && !t->job_pending && !t->ops)
        txn_free(t);
}

int http_request_add_header(http_request *r, const char *name, const char *value)
{
    http_header *n = realloc(r->headers, sizeof(http_header) * (r->nheaders + 1));
    if (!n)
        return -1;
    r->headers = n;
    n[r->nheaders].name = strdup(name);
    n[r->nheaders].value = strdup(value);
    if (!n[r->nheaders].name || !n[r->nheaders].value) {
        free(n[r->nheaders].name);
        secret_free(n[r->nheaders].value);
        return -1;
    }
    for (char *p = n[r->nheaders].name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->nheaders++;
    return 0;
}

/* Whether a copied value of len bytes holds a NUL: lws keeps one inside a
 * header value, and as a C string the value ends there ("Bearer
 * <key>\0<anything>" was read as the key alone) where a proxy reads all of
 * it.  RFC 9110 5.5: reject it.  (A bare CR lws drops, a LF ends the line.) */
static int value_cut(const char *val, int len)
{
    return strlen(val) != (size_t)len;
}

/* Copies every standard header lws parsed plus the registered custom ones,
 * an empty one included (an empty X-Org-ID is malformed, not absent).
 * 0, -1 (out of memory), or -2 when a value holds a NUL. */
static int copy_headers(struct lws *wsi, http_request *r)
{
    char *val = malloc(HEADER_VALUE_MAX);
    if (!val)
        return -1;
    int rc = 0;
    for (int tok = 0; tok < WSI_TOKEN_COUNT && rc == 0; tok++) {
        const unsigned char *nm = lws_token_to_string((enum lws_token_indexes)tok);
        if (!nm || !*nm || nm[0] == ':' || tok == WSI_TOKEN_HTTP_URI_ARGS)
            continue;
        char name[64];
        snprintf(name, sizeof(name), "%s", (const char *)nm);
        size_t nl = strlen(name);
        if (nl && name[nl - 1] == ':')
            name[nl - 1] = '\0';
        if (!name[0] || strchr(name, ' '))
            continue; /* method tokens like "get " are not headers (check_target reads them) */
        int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)tok);
        if (len <= 0)
            continue;
        int got = len < HEADER_VALUE_MAX
                      ? lws_hdr_copy(wsi, val, HEADER_VALUE_MAX, (enum lws_token_indexes)tok)
                      : -1;
        if (got < 0) {
            rc = -1;
            break;
        }
        rc = value_cut(val, got) ? -2 : http_request_add_header(r, name, val);
    }
    for (int i = 0; i < g_ncaptured && rc == 0; i++) {
        char cname[CAPTURED_NAME_MAX + 2];
        snprintf(cname, sizeof(cname), "%s:", g_captured[i]);
        int nlen = (int)strlen(cname);
        int len = lws_hdr_custom_length(wsi, cname, nlen);
        if (len < 0)
            continue;
        int got = len < HEADER_VALUE_MAX
                      ? lws_hdr_custom_copy(wsi, val, HEADER_VALUE_MAX, cname, nlen)
                      : -1;
        if (got < 0) {
            rc = -1;
            break;
        }
        rc = value_cut(val, got) ? -2 : http_request_add_header(r, g_captured[i], val);
    }
    explicit_bzero(val, HEADER_VALUE_MAX); /* held the last header copied */
    free(val);
    return rc;
}

/* Whom the request is from (client_addr.h).  X-Forwarded-For is read only
 * from a trusted peer; lws keeps each repeated line as one more fragment and
 * lws_hdr_copy joins them with commas, in order: one list, as RFC 9110 reads
 * repeated list headers.  A value longer than the walk reads is not copied. */
static void resolve_client(struct lws *wsi, http_request *r)
{
    char xff[CLIENT_ADDR_XFF_MAX + 1];
    const char *v = NULL;
    if (client_addr_trusted(&g_trust, r->peer)) {
        int len = lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR);
        if (len > 0 && len <= CLIENT_ADDR_XFF_MAX &&
            lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) >= 0)
            v = xff;
    }
    client_addr_resolve(&g_trust, r->peer, v, r->client, sizeof(r->client));
}

static http_method method_of(int m)
{
    switch (m) {
    case LWSHUMETH_GET: return HTTP_GET;
    case LWSHUMETH_POST: return HTTP_POST;
    case LWSHUMETH_PUT: return HTTP_PUT;
    case LWSHUMETH_PATCH: return HTTP_PATCH;
    case LWSHUMETH_DELETE: return HTTP_DELETE;
    case LWSHUMETH_OPTIONS: return HTTP_OPTIONS;
    case LWSHUMETH_HEAD: return HTTP_HEAD;
    default: return HTTP_OTHER;
    }
}

/* ---- request framing ---------------------------------------------------------
 *
 * Where the body ends must be beyond doubt: if we and a proxy in front of us
 * (or lws and us) could read the same bytes as different requests, a client
 * could smuggle a request past the proxy's checks, or into another client's
 * connection.  So a request whose framing is anything but one plain
 * Content-Length is refused, and the connection closed after the answer: what
 * follows on it cannot be trusted to be a request boundary. */

/* Headers that mean one thing: a second copy is either a mistake or an attempt
 * to have two readers of the request disagree. */
static const struct {
    enum lws_token_indexes tok;
    const char *name;
} g_singular[] = {
    { WSI_TOKEN_HTTP_CONTENT_LENGTH, "Content-Length" },
    { WSI_TOKEN_HTTP_TRANSFER_ENCODING, "Transfer-Encoding" },
    { WSI_TOKEN_HTTP_AUTHORIZATION, "Authorization" },
    { WSI_TOKEN_HOST, "Host" },
    { WSI_TOKEN_HTTP_CONTENT_TYPE, "Content-Type" },
};

/* How many times the request carried header tok: lws keeps each repeat as one
 * more fragment of the header (lws_hdr_copy would join them with commas). */
static int header_count(struct lws *wsi, enum lws_token_indexes tok)
{
    int n = 0;
    char probe[1];
    /* A fragment of length 0 (an empty value) exists when a 1-byte copy of it
     * succeeds; a missing one fails. */
    while (n < 64 && (lws_hdr_fragment_length(wsi, tok, n) > 0 ||
                      lws_hdr_copy_fragment(wsi, probe, sizeof(probe), tok, n) == 0))
        n++;
    return n;
}

/* 1*DIGIT, nothing else: no sign, no space or tab, no list, no hex. */
static int parse_content_length(const char *s, long long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONTENT_LENGTH_MAX_DIGITS)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* NULL when the framing is sound (*clen: the body length, 0 when there is no
 * Content-Length); otherwise the error code, with the reason in why. */
static const char *check_framing(struct lws *wsi, long long *clen, char *why, size_t whylen)
{
    *clen = 0;
    for (size_t i = 0; i < sizeof(g_singular) / sizeof(g_singular[0]); i++)
        if (header_count(wsi, g_singular[i].tok) > 1) {
            snprintf(why, whylen, "header %s must appear at most once", g_singular[i].name);
            return "DUPLICATE_HEADER";
        }
    int has_cl = header_count(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    if (header_count(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        /* lws 4.1 does not decode a chunked request body: it would hand us
         * the raw chunks, or (on a GET) read them as the next request. */
        snprintf(why, whylen, has_cl ? "a request must not carry both Content-Length and "
                                       "Transfer-Encoding"
                                     : "Transfer-Encoding is not supported: send the body "
                                       "with a Content-Length");
        return "UNSUPPORTED_TRANSFER_ENCODING";
    }
    if (has_cl) {
        char v[CONTENT_LENGTH_MAX_DIGITS + 2];
        if (lws_hdr_copy_fragment(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH, 0) < 0 ||
            parse_content_length(v, clen) < 0) {
            snprintf(why, whylen, "Content-Length must be a decimal number of at most %d digits",
                     CONTENT_LENGTH_MAX_DIGITS);
            return "INVALID_CONTENT_LENGTH";
        }
    }
    return NULL;
}

/* ---- request target (path and query) ----------------------------------------
 *
 * lws 4.1.6 decodes the target before any callback of ours (lws_parse_urldecode):
 *  - "%00" fails the parse: lws closes the connection without an answer;
 *  - a "%" not followed by two hex digits: lws answers its own 403 HTML page;
 *  - an unencoded '&' or ';' ends a fragment, in the path as in the query, and
 *    the two leave no trace of which it was;
 *  - a decoded CR or LF ends the request line: what follows is read as a
 *    header line;
 *  - "%00" right after a '/' cuts the path short, unnoticed;
 *  - '+' becomes a space, and an encoded '=' in an argument name becomes '_'.
 * The first two never reach us (see docs/security.md).  For the rest, anything
 * another reader of the same URL (a proxy, the provider that built a callback
 * URL) could take differently from us is refused rather than guessed. */

/* Whether fragment i of header tok exists (an empty one included). */
static int fragment_exists(struct lws *wsi, enum lws_token_indexes tok, int i)
{
    char probe[1];
    return lws_hdr_fragment_length(wsi, tok, i) > 0 ||
           lws_hdr_copy_fragment(wsi, probe, sizeof(probe), tok, i) == 0;
}

/* Copies lws's decoded query arguments into r->query, each NUL-terminated,
 * back to back; empty ones ("a=1&&b=2", a bare "?") are dropped.  lws_hdr_copy
 * would join them with ',' (and its total length leaves no room for ours). */
static int copy_query(struct lws *wsi, http_request *r)
{
    int qlen = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (qlen <= 0)
        return 0;
    /* Every argument's length plus its NUL: at most the total length (which
     * counts one separator between two fragments) plus one. */
    size_t cap = (size_t)qlen + 2, used = 0;
    r->query = malloc(cap);
    if (!r->query)
        return -1;
    for (int i = 0; fragment_exists(wsi, WSI_TOKEN_HTTP_URI_ARGS, i); i++) {
        int fl = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (fl == 0)
            continue;
        /* lws makes an empty last argument ("?", "?a=1&") a "/", like an empty
         * path; a real "/" argument would be refused anyway (no '='). */
        char probe[2];
        if (fl == 1 && !fragment_exists(wsi, WSI_TOKEN_HTTP_URI_ARGS, i + 1) &&
            lws_hdr_copy_fragment(wsi, probe, sizeof(probe), WSI_TOKEN_HTTP_URI_ARGS, i) == 1 &&
            probe[0] == '/')
            continue;
        if (used + (size_t)fl + 1 > cap ||
            lws_hdr_copy_fragment(wsi, r->query + used, (int)(cap - used),
                                  WSI_TOKEN_HTTP_URI_ARGS, i) != fl)
            return -1;
        used += (size_t)fl + 1;
    }
    r->query_len = used;
    return 0;
}

static int has_control_char(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* The request line's URI token: the one of the method lws matched. */
static const enum lws_token_indexes g_uri_tokens[] = {
    WSI_TOKEN_GET_URI,    WSI_TOKEN_POST_URI,   WSI_TOKEN_OPTIONS_URI, WSI_TOKEN_PUT_URI,
    WSI_TOKEN_PATCH_URI,  WSI_TOKEN_DELETE_URI, WSI_TOKEN_HEAD_URI,    WSI_TOKEN_CONNECT,
};

/* No route reads more than a handful of arguments; the repeat check below
 * compares each with every earlier one, so their number is bounded. */
#define MAX_QUERY_ARGS 64

int http_query_check(const char *query, size_t len, char *why, size_t whylen)
{
    int nargs = 0;
    for (size_t off = 0; off < len;) {
        const char *arg = query + off;
        if (++nargs > MAX_QUERY_ARGS) {
            snprintf(why, whylen, "too many query arguments (at most %d)", MAX_QUERY_ARGS);
            return -1;
        }
        size_t al = strnlen(arg, len - off);
        const char *eq = memchr(arg, '=', al);
        if (has_control_char(arg, al)) {
            snprintf(why, whylen, "query arguments must not contain control characters");
            return -1;
        }
        /* "id=1;2" reaches us as "id=1" and "2": ';' separates like '&' in lws,
         * where RFC 3986 and WHATWG read one argument "1;2". */
        if (!eq || eq == arg) {
            snprintf(why, whylen, "malformed query: each argument must be name=value (a ';' "
                                  "separates arguments: encode it as %%3B)");
            return -1;
        }
        size_t nl = (size_t)(eq - arg);
        /* One reader takes the first copy, another the last: refuse both. */
        for (size_t o2 = 0; o2 < off;) {
            const char *prev = query + o2;
            if (!strncmp(prev, arg, nl + 1)) {
                int printable = nl <= 64;
                for (size_t i = 0; i < nl && printable; i++)
                    printable = arg[i] > 0x20 && arg[i] < 0x7f;
                snprintf(why, whylen, "query argument \"%.*s\" must appear at most once",
                         printable ? (int)nl : 3, printable ? arg : "...");
                return -1;
            }
            o2 += strlen(prev) + 1;
        }
        off += al + 1;
    }
    return 0;
}

/* 0 when the request line was read whole: lws ends it at a decoded CR or LF
 * ("%0A"), reads what follows as a header line (one the client hid in the
 * URL from any proxy) and never sees the HTTP version.  1 for an HTTP/1.1
 * request, 0 for HTTP/1.0. */
static int check_version(struct lws *wsi)
{
    char v[16];
    if (fragment_exists(wsi, WSI_TOKEN_HTTP, 1) ||
        lws_hdr_copy_fragment(wsi, v, sizeof(v), WSI_TOKEN_HTTP, 0) < 0)
        return -1;
    return !strcmp(v, "HTTP/1.1") ? 1 : !strcmp(v, "HTTP/1.0") ? 0 : -1;
}

/* 0 when the decoded path and query mean one thing; otherwise -1 with why. */
static int check_target(struct lws *wsi, const http_request *r, char *why, size_t whylen)
{
    for (size_t i = 0; i < sizeof(g_uri_tokens) / sizeof(g_uri_tokens[0]); i++) {
        if (fragment_exists(wsi, g_uri_tokens[i], 1)) {
            /* lws hands us the path up to the ';' or '&' and drops the rest. */
            snprintf(why, whylen, "the path must not contain an unencoded ';' or '&' "
                                  "(encode them as %%3B and %%26)");
            return -1;
        }
        /* A "%00" right after a '/' or "/." slips through lws's check and
         * cuts the path short; the fragment's length counts what follows. */
        int fl = lws_hdr_fragment_length(wsi, g_uri_tokens[i], 0);
        if (fl <= 0)
            continue;
        char *p = malloc((size_t)fl + 1);
        int cut = !p || lws_hdr_copy_fragment(wsi, p, fl + 1, g_uri_tokens[i], 0) != fl ||
                  strlen(p) != (size_t)fl;
        free(p);
        if (cut) {
            snprintf(why, whylen, "the path must not contain NUL (%%00)");
            return -1;
        }
    }
    if (has_control_char(r->path, strlen(r->path))) {
        snprintf(why, whylen, "the path must not contain control characters");
        return -1;
    }
    return http_query_check(r->query, r->query_len, why, whylen);
}

/* ---- dispatch to the worker pool ------------------------------------------- */

static void job_run(worker_ctx *w, void *arg)
{
    http_txn *t = arg;
    router_run(w, t->route, &t->req, &t->resp);
}

static void respond_now(http_txn *t)
{
    t->state = TXN_WRITING;
    if (t->wsi)
        lws_callback_on_writable(t->wsi);
}

static void job_done(void *arg)
{
    http_txn *t = arg;
    t->job_pending = 0;
    if (t->resp.on_loop)
        t->resp.on_loop(&t->resp, t->resp.on_loop_arg);
    if (!t->wsi) {
        if (t->resp.exec) { /* admitted, audited as started, never to be sent */
            exec_never_sent(t->resp.exec);
            t->resp.exec = NULL;
        }
        log_txn(t, 0); /* the client left while the job ran */
        txn_maybe_free(t);
        return;
    }
    if (t->resp.exec) {
        struct exec_spec *e = t->resp.exec;
        t->resp.exec = NULL;
        if (exec_start(t, e) == 0)
            return; /* exec.c now drives the response */
        /* exec_start filled t->resp with the error */
    }
    respond_now(t);
}

static void dispatch(http_txn *t)
{
    t->state = TXN_PROCESSING;
    /* Our own timers (exec deadlines) govern from here; lws must not drop the
     * connection while a worker or the agent is busy. */
    lws_set_timeout(t->wsi, NO_PENDING_TIMEOUT, 0);
    int on_internal = g_internal_vhost && lws_get_vhost(t->wsi) == g_internal_vhost;
    /* The web console's pages and files (compiled in, no I/O): answered here,
     * on the main listener only; every other path goes to the route table. */
    if (!(g_ops_vhost && lws_get_vhost(t->wsi) == g_ops_vhost) && !on_internal &&
        console_static_serve(&t->req, &t->resp)) {
        t->console = 1;
        respond_now(t);
        return;
    }
    /* The other listeners' routes are absent here: an ops route answers on
     * the ops listener only, and the replicas' route (before any header of
     * it, the forward secret, is read) on theirs only, which serves nothing
     * else (no API, console or probe): only the server's own pods are meant
     * to reach it, whatever the edge in front of the main port lets through. */
    router_view view = {
        .on_ops = g_ops_vhost ? lws_get_vhost(t->wsi) == g_ops_vhost : -1,
        .on_internal = g_internal_vhost ? on_internal : -1,
    };
    t->route = router_match(&t->req, &t->resp, view);
    if (!t->route) {
        respond_now(t);
        return;
    }
    if (router_on_loop(t->route)) { /* e.g. liveness: answered whatever the workers do */
        router_run(NULL, t->route, &t->req, &t->resp);
        respond_now(t);
        return;
    }
    if (workers_submit_pool(router_pool(t->route), job_run, job_done, t) < 0) {
        http_resp_error(&t->resp, 503, "SERVER_BUSY", "server is overloaded, retry later");
        respond_now(t);
        return;
    }
    t->job_pending = 1;
}

int http_on_request(struct lws *wsi, struct http_conn *c, const char *uri)
{
    if (c->txn) { /* a previous transaction never finished: refuse pipelining */
        return -1;
    }
    http_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    c->txn = t;
    t->conn = c;
    t->wsi = wsi;
    t->started = sm_now();
    char *uriptr = NULL;
    int urilen = 0;
    int m = lws_http_get_uri_and_method(wsi, &uriptr, &urilen);
    t->req.method = method_of(m);
    t->req.path = strdup(uri ? uri : "/");
    lws_get_peer_simple(wsi, t->req.peer, sizeof(t->req.peer));
    resolve_client(wsi, &t->req);
    long long clen = 0;
    char why[160];
    const char *bad = check_framing(wsi, &clen, why, sizeof(why));
    if (bad) {
        access_request_id(&t->req); /* headers not read: a fresh id */
        log_warn("refused request from %s: %s", http_client(&t->req), why);
        t->close_after = 1;
        http_resp_error(&t->resp, 400, bad, "%s", why);
        respond_now(t);
        return 0;
    }
    int hdrs = t->req.path && copy_query(wsi, &t->req) == 0 ? copy_headers(wsi, &t->req) : -1;
    if (hdrs == -2) {
        /* What a proxy made of the rest of the request is unknown: closed after. */
        access_request_id(&t->req);
        log_warn("refused request from %s: a header value holds a NUL byte",
                 http_client(&t->req));
        t->close_after = 1;
        http_resp_error(&t->resp, 400, "BAD_REQUEST",
                        "header values must not contain NUL");
        respond_now(t);
        return 0;
    }
    if (hdrs < 0) {
        t->close_after = 1;
        http_resp_error(&t->resp, 500, "INTERNAL", "out of memory");
        respond_now(t);
        return 0;
    }
    access_request_id(&t->req);
    if (clen > g_max_body) {
        t->close_after = 1;
        http_resp_error(&t->resp, 413, "BODY_TOO_LARGE", "request body exceeds %lld bytes",
                        (long long)g_max_body);
        respond_now(t);
        return 0;
    }
    /* lws reads up to 100 MiB of body after a POST, PUT or PATCH without a
     * Content-Length: after our answer the connection would only swallow
     * what comes next. */
    if (!header_count(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) &&
        (t->req.method == HTTP_POST || t->req.method == HTTP_PUT || t->req.method == HTTP_PATCH))
        t->close_after = 1;
    int version = check_version(wsi);
    int cut = version < 0;
    if (cut)
        snprintf(why, sizeof(why), "malformed request line (a CR or LF, encoded or not, in "
                                   "the path or query, or no HTTP/1.x version)");
    /* RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400.
     * A proxy in front chooses its route by Host; one that forwards such a
     * request (or fills in a default) and a server that serves it may then
     * disagree on which site was asked for. */
    int no_host = version == 1 && !header_count(wsi, WSI_TOKEN_HOST);
    if (no_host)
        snprintf(why, sizeof(why), "an HTTP/1.1 request must carry a Host header");
    if (cut || no_host || check_target(wsi, &t->req, why, sizeof(why)) < 0) {
        log_warn("refused request from %s: %s", http_client(&t->req), why);
        http_resp_error(&t->resp, 400, "BAD_REQUEST", "%s", why);
        /* A body stays unread; a cut request line leaves lws reading the
         * request as HTTP/1.0, whose connection it closes. */
        if (clen > 0 || cut || no_host)
            t->close_after = 1;
        respond_now(t);
        return 0;
    }
    /* the network connection's TLS: an HTTP/2 stream's wsi has the vhost's */
    if (g_https_vhost && lws_get_vhost(wsi) == g_https_vhost &&
        !lws_is_ssl(lws_get_network_wsi(wsi)) &&
        !https_redirect_tunneled(t->req.peer, http_header_get(&t->req, "x-forwarded-proto"))) {
        /* plain HTTP on the TLS port: the same URL over https, nothing served
         * (but from a TLS tunnel on this host: served, https_redirect.h) */
        https_redirect_answer(&t->req, &t->resp);
        t->close_after = 1;
        respond_now(t);
        return 0;
    }
    if (clen > 0) {
        t->body_expected = clen;
        t->state = TXN_RECEIVING;
        /* The whole body in one allocation (clen is within the limit): a
         * growing buffer would free earlier copies of keys and credentials
         * without the wipe txn_free gives the last one. */
        if (buf_reserve(&t->req.body, (size_t)clen) < 0) {
            t->close_after = 1;
            http_resp_error(&t->resp, 500, "INTERNAL", "out of memory");
            respond_now(t);
        }
        return 0; /* wait for the body */
    }
    dispatch(t);
    return 0;
}

int http_on_body(struct lws *wsi, struct http_conn *c, const void *in, size_t len)
{
    http_txn *t = c->txn;
    if (!t || t->state != TXN_RECEIVING)
        return 0; /* body of a request already answered (413): discard */
    if ((int64_t)(buf_pending(&t->req.body) + len) > g_max_body) {
        t->close_after = 1;
        http_resp_error(&t->resp, 413, "BODY_TOO_LARGE", "request body exceeds %lld bytes",
                        (long long)g_max_body);
        respond_now(t);
        return 0;
    }
    if (buf_append(&t->req.body, in, len) < 0) {
        http_resp_error(&t->resp, 500, "INTERNAL", "out of memory");
        respond_now(t);
    }
    return 0;
}

int http_on_body_done(struct lws *wsi, struct http_conn *c)
{
    http_txn *t = c->txn;
    /* With a request pipelined behind another in its buffer, lws 4.1.6 reports
     * the end of a body again and again without reading further (and, for the
     * pipelined request, the end of a body it never delivered): the event loop
     * spins on it, starving every other connection, until this one closes
     * (stopping rx flow does not break the loop).  So on a repeat: an answer
     * already being written is finished and the connection closed; otherwise
     * the connection is closed now.  Pipelining behind a request with a body
     * is not supported (pipelined GETs are: lws handles them). */
    if (!t || t->body_completions++) {
        if (t && t->state == TXN_WRITING) {
            t->close_after = 1;
            return 0;
        }
        log_warn("closing the connection of %s: request pipelined behind a body, "
                 "not supported", t ? http_client(&t->req) : "a client");
        return -1;
    }
    if (t->state != TXN_RECEIVING)
        return 0;
    if ((long long)buf_pending(&t->req.body) != t->body_expected) {
        t->close_after = 1;
        http_resp_error(&t->resp, 400, "BAD_REQUEST",
                        "request body ended after %zu of %lld bytes (pipelined requests are "
                        "not supported)", buf_pending(&t->req.body), t->body_expected);
        respond_now(t);
        return 0;
    }
    dispatch(t);
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

/* The send deadline.  dispatch() turns lws's timeouts off (exec deadlines
 * govern while a command runs); from then on nothing would ever drop a
 * client that stops reading an answer, and what the server holds for it (a
 * JSON result, a stream's pending events, the output still to encode) would
 * stay as long as its TCP connection does.  So while the client has bytes
 * to take, it must take some every AURORA_HTTP_SEND_TIMEOUT_S: each write
 * (lws asks for one only once the socket took the previous one) re-arms the
 * deadline, and when it expires lws closes the connection, which gives
 * everything back (http_on_closed).  A stream with nothing pending (a
 * command that prints nothing for a while) has no deadline.  Re-armed at
 * most once a second: lws keeps timeouts in a sorted list. */
static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void arm_send_deadline(http_txn *t)
{
    if (!t->wsi)
        return;
    time_t now = mono_s();
    if (t->deadline_armed && t->deadline_at == now)
        return;
    lws_set_timeout(t->wsi, PENDING_TIMEOUT_HTTP_CONTENT, g_send_timeout_s);
    t->deadline_armed = 1;
    t->deadline_at = now;
}

static void clear_send_deadline(http_txn *t)
{
    if (!t->wsi || !t->deadline_armed)
        return;
    lws_set_timeout(t->wsi, NO_PENDING_TIMEOUT, 0);
    t->deadline_armed = 0;
}

/* One write of either kind (a fixed answer's chunk, a streamed chunk), with
 * slack for the chunk framing. */
_Static_assert(STREAM_WRITE >= WRITE_CHUNK, "the buffer is sized by the larger write");
static unsigned char g_wbuf[LWS_PRE + STREAM_WRITE + 64];

/* Builds the header block at g_wbuf + LWS_PRE; its end in *pp.  0 or -1. */
static int build_headers(struct lws *wsi, http_txn *t, int status, const char *ctype,
                         lws_filepos_t clen, int chunked, unsigned char **pp)
{
    unsigned char *start = g_wbuf + LWS_PRE, *p = start, *end = g_wbuf + sizeof(g_wbuf) - 1;
    if (lws_add_http_common_headers(wsi, (unsigned int)status, ctype, clen, &p, end))
        return -1;
    if (chunked) {
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"transfer-encoding:",
                                        (const unsigned char *)"chunked", 7, &p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"x-accel-buffering:",
                                        (const unsigned char *)"no", 2, &p, end))
            return -1;
    }
    if (t->req.request_id[0] &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-request-id:",
                                    (const unsigned char *)t->req.request_id,
                                    (int)strlen(t->req.request_id), &p, end))
        return -1;
    if (t->close_after &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                    (const unsigned char *)"close", 5, &p, end))
        return -1;
    /* Defaults a route may set otherwise: a JSON answer is never sniffed
     * into something a browser renders, and an API answer (tokens, audit
     * rows, command output) is kept in no cache, the browser's included:
     * streams too (they carry command output; no-cache would let a cache
     * store it).  The console sets its own. */
    int has_nosniff = 0, has_cache = 0;
    for (int i = 0; i < t->resp.nextra; i++) {
        has_nosniff |= !strcasecmp(t->resp.extra[i].name, "x-content-type-options");
        has_cache |= !strcasecmp(t->resp.extra[i].name, "cache-control");
    }
    if ((!has_nosniff && lws_add_http_header_by_name(wsi,
                                                     (const unsigned char *)"x-content-type-options:",
                                                     (const unsigned char *)"nosniff", 7, &p, end)) ||
        (!has_cache && lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                                   (const unsigned char *)"no-store", 8, &p, end)))
        return -1;
    for (int i = 0; i < t->resp.nextra; i++) {
        char nm[96];
        snprintf(nm, sizeof(nm), "%s:", t->resp.extra[i].name);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)nm,
                                        (const unsigned char *)t->resp.extra[i].value,
                                        (int)strlen(t->resp.extra[i].value), &p, end))
            return -1;
    }
    if (lws_finalize_http_header(wsi, &p, end))
        return -1;
    *pp = p;
    return 0;
}

static int write_headers(struct lws *wsi, http_txn *t, int status, const char *ctype,
                         lws_filepos_t clen, int chunked)
{
    unsigned char *start = g_wbuf + LWS_PRE, *p;
    if (build_headers(wsi, t, status, ctype, clen, chunked, &p) < 0)
        return -1;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) != (int)(p - start))
        return -1;
    t->headers_sent = 1;
    return 0;
}

/* A small answer goes out whole: headers and body in one write, so one TLS
 * record, one syscall and no second trip through the event loop (a kubectl
 * result is typically a few hundred bytes).  1 when done this way, 0 when
 * the answer does not fit (the caller writes it in steps), -1 on error. */
static int write_fixed_whole(struct lws *wsi, http_txn *t, const char *ctype)
{
    http_response *r = &t->resp;
    unsigned char *start = g_wbuf + LWS_PRE, *p;
    size_t n = buf_pending(&r->body);
    if (n > WRITE_CHUNK / 2)
        return 0;
    if (build_headers(wsi, t, r->status, ctype, (lws_filepos_t)n, 0, &p) < 0)
        return -1;
    if ((size_t)(g_wbuf + sizeof(g_wbuf) - p) < n)
        return 0; /* unusually many headers: in steps */
    memcpy(p, buf_head(&r->body), n);
    size_t total = (size_t)(p - start) + n;
    /* Written as headers: lws then does not count these bytes against the
     * Content-Length it tracks (it would take the header bytes for body). */
    if (lws_write(wsi, start, total, LWS_WRITE_HTTP_HEADERS) != (int)total)
        return -1;
    t->headers_sent = 1;
    t->bytes_out += n;
    buf_consume(&r->body, n);
    return 1;
}

/* The access log line and metrics of a transaction, once.  status 0: the
 * client left before the answer was complete (logged as 499). */
static void log_txn(http_txn *t, int status)
{
    if (t->logged)
        return;
    t->logged = 1;
    access_log_request(&t->req,
                       t->route ? router_pattern(t->route) : t->console ? "console" : "unmatched",
                       status ? status : 499, sm_now() - t->started, t->bytes_out);
}

/* Finishes the transaction; returns what the lws callback must return. */
static int finish(struct lws *wsi, struct http_conn *c, http_txn *t)
{
    log_txn(t, t->state == TXN_STREAMING ? t->stream_status : t->resp.status);
    /* lws may still hold the end of the answer for a client that stopped
     * reading: that connection, too, must not stay forever. */
    if (lws_partial_buffered(wsi))
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, g_send_timeout_s);
    int close_conn = t->close_after;
    c->txn = NULL;
    t->wsi = NULL;
    t->state = TXN_DONE;
    if (t->ops) { /* exec is done with us by now; make sure */
        t->ops = NULL;
    }
    txn_maybe_free(t);
    if (close_conn)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int write_fixed(struct lws *wsi, struct http_conn *c, http_txn *t)
{
    http_response *r = &t->resp;
    if (!t->headers_sent) {
        if (!r->status)
            r->status = 500;
        const char *ctype = r->content_type ? r->content_type : "application/json";
        if (t->req.method == HTTP_HEAD) {
            /* The headers GET would send, Content-Length included, and no
             * body (RFC 9110 9.3.2). */
            if (write_headers(wsi, t, r->status, ctype, (lws_filepos_t)buf_pending(&r->body),
                              0) < 0)
                return -1;
            buf_reset(&r->body);
            return finish(wsi, c, t);
        }
        int whole = write_fixed_whole(wsi, t, ctype);
        if (whole < 0)
            return -1;
        if (whole)
            return finish(wsi, c, t);
        if (write_headers(wsi, t, r->status, ctype, (lws_filepos_t)buf_pending(&r->body), 0) < 0)
            return -1;
        if (buf_pending(&r->body) == 0)
            return finish(wsi, c, t);
        arm_send_deadline(t);
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t n = buf_pending(&r->body);
    if (n > WRITE_CHUNK)
        n = WRITE_CHUNK;
    memcpy(g_wbuf + LWS_PRE, buf_head(&r->body), n);
    int last = n == buf_pending(&r->body);
    if (lws_write(wsi, g_wbuf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
        return -1;
    t->bytes_out += n;
    buf_consume(&r->body, n);
    if (last)
        return finish(wsi, c, t);
    arm_send_deadline(t);
    lws_callback_on_writable(wsi);
    return 0;
}

static int write_stream(struct lws *wsi, struct http_conn *c, http_txn *t)
{
    if (!t->headers_sent) {
        if (write_headers(wsi, t, t->stream_status, t->stream_ctype, LWS_ILLEGAL_HTTP_CONTENT_LEN,
                          1) < 0)
            return -1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t n = buf_pending(&t->out);
    if (n) {
        if (n > STREAM_CHUNK_DATA)
            n = STREAM_CHUNK_DATA;
        unsigned char *p = g_wbuf + LWS_PRE;
        int hl = sprintf((char *)p, "%zx\r\n", n);
        memcpy(p + hl, buf_head(&t->out), n);
        memcpy(p + hl + n, "\r\n", 2);
        size_t total = (size_t)hl + n + 2;
        if (lws_write(wsi, p, total, LWS_WRITE_HTTP) < (int)total)
            return -1;
        t->bytes_out += n;
        buf_consume(&t->out, n);
        if (t->ops && t->ops->on_drain)
            t->ops->on_drain(t->ops_ctx, buf_pending(&t->out));
        /* The client took the previous write: progress.  While it has more
         * to take (here, or lws's unsent part of this chunk), it is timed;
         * lws asks for the next write once its part is out. */
        if (buf_pending(&t->out) || t->stream_ended || lws_partial_buffered(wsi)) {
            arm_send_deadline(t);
            lws_callback_on_writable(wsi);
        } else {
            clear_send_deadline(t); /* everything taken: an idle stream waits freely */
        }
        return 0;
    }
    if (t->stream_ended && !t->final_chunk_sent) {
        memcpy(g_wbuf + LWS_PRE, "0\r\n\r\n", 5);
        if (lws_write(wsi, g_wbuf + LWS_PRE, 5, LWS_WRITE_HTTP_FINAL) < 5)
            return -1;
        t->final_chunk_sent = 1;
        return finish(wsi, c, t);
    }
    clear_send_deadline(t);
    return 0;
}

int http_on_writeable(struct lws *wsi, struct http_conn *c)
{
    http_txn *t = c->txn;
    if (!t)
        return 0;
    if (t->state == TXN_WRITING)
        return write_fixed(wsi, c, t);
    if (t->state == TXN_STREAMING)
        return write_stream(wsi, c, t);
    return 0;
}

void http_on_closed(struct lws *wsi, struct http_conn *c)
{
    http_txn *t = c->txn;
    if (!t)
        return;
    /* A handler still running on a worker writes req.auth: log when its
     * job comes back (job_done), not now. */
    if (!t->job_pending)
        log_txn(t, 0);
    c->txn = NULL;
    t->wsi = NULL;
    if (t->ops && t->ops->on_close) {
        const http_stream_ops *ops = t->ops;
        t->ops = NULL;
        ops->on_close(t->ops_ctx);
    }
    txn_maybe_free(t);
}

/* ---- used by exec.c --------------------------------------------------------- */

void http_txn_attach(http_txn *t, const http_stream_ops *ops, void *ctx)
{
    t->ops = ops;
    t->ops_ctx = ctx;
}

void http_txn_detach(http_txn *t)
{
    t->ops = NULL;
    t->ops_ctx = NULL;
    txn_maybe_free(t);
}

void http_txn_respond(http_txn *t)
{
    if (!t->wsi) {
        txn_maybe_free(t);
        return;
    }
    /* exec.c answers from the tunnel's callbacks and timers, never from a
     * callback of the client's own connection: the answer is written now,
     * unless lws still holds some of that connection's output.  Waiting for
     * WRITEABLE instead costs a loop pass and two epoll_ctl calls on the
     * path of every command.  t may be freed by the time this returns. */
    struct lws *wsi = t->wsi;
    if (t->conn && t->conn->txn == t && !lws_partial_buffered(wsi)) {
        t->state = TXN_WRITING;
        if (write_fixed(wsi, t->conn, t) < 0) /* as a -1 from WRITEABLE would */
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    respond_now(t);
}

int http_txn_stream_begin(http_txn *t, int status, const char *content_type,
                          const http_stream_ops *ops, void *ctx)
{
    t->state = TXN_STREAMING;
    t->stream_status = status;
    t->stream_ctype = content_type;
    http_txn_attach(t, ops, ctx);
    if (t->wsi)
        lws_callback_on_writable(t->wsi);
    return 0;
}

/* Bytes were added to the stream: the client has something to take. */
static int stream_added(http_txn *t)
{
    if (buf_pending(&t->out) > STREAM_MAX_PENDING) {
        log_error("closing the stream of %s: %zu bytes wait for the client, more than the %d "
                  "a stream may hold", http_client(&t->req), buf_pending(&t->out),
                  STREAM_MAX_PENDING);
        buf_free(&t->out);
        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return -1;
    }
    if (!t->deadline_armed) /* only the client's progress re-arms it */
        arm_send_deadline(t);
    lws_callback_on_writable(t->wsi);
    return 0;
}

int http_txn_stream_write(http_txn *t, const void *p, size_t n)
{
    if (!t->wsi || buf_append(&t->out, p, n) < 0)
        return -1;
    return stream_added(t);
}

size_t http_txn_stream_pending(const http_txn *t) { return buf_pending(&t->out); }

buf_t *http_txn_stream_buf(http_txn *t) { return t->wsi ? &t->out : NULL; }

void http_txn_stream_flush(http_txn *t)
{
    if (t->wsi && buf_pending(&t->out))
        stream_added(t);
}

void http_txn_hold(http_txn *t, void (*release)(void *arg), void *arg)
{
    t->hold_release = release;
    t->hold_arg = arg;
}

void http_txn_stream_end(http_txn *t)
{
    t->stream_ended = 1;
    if (t->wsi)
        lws_callback_on_writable(t->wsi);
}
