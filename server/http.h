/* http.h — what handlers do with a request and a response (the types are in
 * http_types.h), and the transaction object that ties one request on an lws connection to its
 * asynchronous processing.
 *
 * Life of a request: the event loop assembles it (headers, bounded body) into
 * an http_txn, hands it to a worker thread (route match, auth, handler fill an
 * http_response), then back on the loop either writes the response or, for
 * commands, lets exec.c stream into the transaction.  A transaction outlives
 * its connection until no job or exec refers to it. */
#ifndef AURORA_HTTP_H
#define AURORA_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "http_types.h"

struct lws;
struct cJSON;

/* Header value by lowercase name, NULL if absent. */
const char *http_header_get(const http_request *r, const char *name);
const char *http_param(const http_request *r, const char *name);
/* Whom the request is from, for logs and per-client limits: req->client,
 * or the socket peer when nothing resolved it (a request built in code).
 * Never for a right: those look at req->peer. */
const char *http_client(const http_request *r);
/* URL-decoded query argument into out; 1 if found. */
int http_query_get(const http_request *r, const char *name, char *out, size_t cap);
const char *http_method_name(http_method m);
/* 0 when query (arguments as lws decoded them, each NUL-terminated, len bytes
 * in all) reads one way only: every argument "name=value" with a non-empty
 * name, each name once, no control character.  Otherwise -1 and why. */
int http_query_check(const char *query, size_t len, char *why, size_t whylen);

/* Whether a Host header value can be written as the host of a URL: a name
 * or address with an optional port ([v6]:port too), at most 255 bytes,
 * nothing that could end the authority ('/', '@', '\\', '?', '#', blanks). */
int http_host_ok(const char *host);

/* The request's own copies: a header appended (name lowercased; 0, or -1
 * out of memory), and everything it holds (path, query, headers, parameters,
 * body) freed, header values and the body wiped first: they carry API keys,
 * agent tokens and the replicas' shared secrets. */
int http_request_add_header(http_request *r, const char *name, const char *value);
void http_request_release(http_request *r);

/* Response helpers (take ownership of obj). */
void http_resp_json(http_response *resp, int status, struct cJSON *obj);
void http_resp_error(http_response *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int http_resp_add_header(http_response *resp, const char *name, const char *value);

/* The most JSON values (objects, arrays, members' values, elements) a
 * request body may hold: cJSON spends a 64-byte node on each, 36 times the
 * text of "0,", and no API body holds more than a few hundred. */
#define HTTP_JSON_MAX_VALUES 16384

/* Parses the request body as one JSON object (nothing but white space after
 * it); on failure fills resp with 400.  A string (key or value) holding NUL,
 * raw or as \u0000, is refused: as a C string it would be silently cut.  A
 * body of more than HTTP_JSON_MAX_VALUES values is refused before it is
 * parsed. */
struct cJSON *http_json_body(const http_request *req, http_response *resp);

/* The operations listener (AURORA_OPS_PORT), NULL when there is none:
 * requests on it reach only operations routes, and operations routes are
 * reached only on it (router_set_ops). */
struct lws_vhost;
void http_set_ops_vhost(struct lws_vhost *v);
/* The TLS listener that also lets plain-HTTP connections in, only to answer
 * them with https_redirect_answer (server.c); NULL: none. */
void http_set_https_vhost(struct lws_vhost *v);
/* The replicas' listener (AURORA_INTERNAL_PORT), NULL when there is none:
 * while it is set, internal routes (router_set_internal) answer only on it,
 * and it answers nothing else (404; server.c refuses WebSockets there). */
void http_set_internal_vhost(struct lws_vhost *v);

/* ---- transaction (event-loop thread only) -------------------------------- */
typedef struct http_txn http_txn;

typedef struct {
    /* Output was written to the socket; `pending` bytes are still buffered. */
    void (*on_drain)(void *ctx, size_t pending);
    /* The client went away; the txn must not be used after this returns. */
    void (*on_close)(void *ctx);
} http_stream_ops;

http_request *http_txn_request(http_txn *t);
http_response *http_txn_response(http_txn *t);
/* Write resp as a complete response (Content-Length), at once when the
 * socket takes it.  Only from outside the client connection's own callbacks
 * (exec.c: the tunnel's callbacks and timers); t may be freed on return. */
void http_txn_respond(http_txn *t);
/* Chunked streaming response. */
int http_txn_stream_begin(http_txn *t, int status, const char *content_type,
                          const http_stream_ops *ops, void *ctx);
int http_txn_stream_write(http_txn *t, const void *p, size_t n);
size_t http_txn_stream_pending(const http_txn *t);
/* For writers that encode straight into the stream (no copy): its outgoing
 * buffer (NULL once the client is gone); append to it, then call
 * http_txn_stream_flush. */
buf_t *http_txn_stream_buf(http_txn *t);
void http_txn_stream_flush(http_txn *t);
void http_txn_stream_end(http_txn *t);
/* The answer in t is charged somewhere (exec.c: a JSON result, to the output
 * budgets): release(arg) is called once, when t and its answer are freed
 * (written, or the client gone). */
void http_txn_hold(http_txn *t, void (*release)(void *arg), void *arg);
/* exec.c attaches/detaches itself so a closing client can be told. */
void http_txn_attach(http_txn *t, const http_stream_ops *ops, void *ctx);
void http_txn_detach(http_txn *t);

/* ---- lws glue (server.c dispatches these reasons) ------------------------ */
struct http_conn {
    http_txn *txn;
};
int http_on_request(struct lws *wsi, struct http_conn *c, const char *uri);
int http_on_body(struct lws *wsi, struct http_conn *c, const void *in, size_t len);
int http_on_body_done(struct lws *wsi, struct http_conn *c);
int http_on_writeable(struct lws *wsi, struct http_conn *c);
void http_on_closed(struct lws *wsi, struct http_conn *c);
/* Headers captured beyond the standard ones (lowercase, e.g. "x-hub-signature-256"). */
int http_capture_header(const char *name);
void http_set_limits(int64_t max_body);
/* AURORA_TRUSTED_PROXIES (client_addr.h): whose X-Forwarded-For names the
 * client.  0, or -1 (logged) when the list does not parse. */
int http_set_trusted_proxies(const char *spec);
/* AURORA_HTTP_SEND_TIMEOUT_S: how long a client with bytes of an answer
 * waiting may go without taking any before its connection is closed. */
void http_set_send_timeout(int seconds);
void http_module_cleanup(void);

#endif
