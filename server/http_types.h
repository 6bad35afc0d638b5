/* http_types.h — the request and response as API handlers, the router and
 * auth see them.  A leaf: it names no function, so http.h, router.h and
 * auth.h can each depend on it without depending on one another. */
#ifndef AURORA_HTTP_TYPES_H
#define AURORA_HTTP_TYPES_H

#include <stddef.h>

#include "buf.h"
#include "store.h"

typedef enum {
    HTTP_GET,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_HEAD,
    HTTP_OTHER
} http_method;

#define HTTP_MAX_PARAMS 6
#define HTTP_REQUEST_ID_MAX 128

typedef struct {
    char *name; /* lowercase */
    char *value;
} http_header;

/* Who is calling, filled by auth before the handler runs. */
typedef struct {
    int authenticated;
    int internal; /* trusted backend via X-Internal-Secret */
    int session;  /* web console session cookie (console_session.h) */
    /* session: the SHA-256 hex of its id (its key in the store, never the
     * id), so what it starts (an OAuth flow) can end with it */
    char session_hash[65];
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    char key_id[STORE_ID_LEN];
} auth_ctx;

typedef struct {
    http_method method;
    char *path;  /* as received (lws already %-decoded it) */
    char *query;      /* lws-decoded "name=value" arguments, each NUL-terminated, back to
                         back (query_len bytes in all), each name once, no control
                         character (http.c refuses the rest); use http_query_get */
    size_t query_len;
    http_header *headers;
    size_t nheaders;
    buf_t body;
    const char *param_names[HTTP_MAX_PARAMS];
    char *params[HTTP_MAX_PARAMS];
    int nparams;
    char peer[64];   /* the socket peer: what connected (loopback and allow-list checks) */
    char client[64]; /* whom the request is from: the peer, or past a trusted proxy the
                        X-Forwarded-For client (client_addr.h); names, never grants */
    char request_id[HTTP_REQUEST_ID_MAX + 1]; /* access_log.h; returned as X-Request-ID */
    auth_ctx auth;
} http_request;

struct exec_spec;

typedef struct http_response {
    int status;
    const char *content_type; /* static string */
    buf_t body;
    /* Room for the console's answers: six security headers, cache-control
     * and the ETag (a seventh header was dropped without a word). */
    http_header extra[10];
    int nextra;
    /* Deferred command execution (exec.c runs it on the loop). */
    struct exec_spec *exec;
    /* Runs on the loop thread before the response is written (e.g. close the
     * tunnels of a revoked token, then patch the body with the count). */
    void (*on_loop)(struct http_response *resp, void *arg);
    void *on_loop_arg;
} http_response;

#endif
