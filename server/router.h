/* router.h — the one small registration interface every API module and
 * connector uses: a method, a path pattern with {params}, an auth level and a
 * handler that runs on a worker thread. */
#ifndef AURORA_ROUTER_H
#define AURORA_ROUTER_H

#include "http.h"
#include "worker.h"

typedef enum {
    ROUTE_PUBLIC = 0,    /* no auth (health, webhooks that verify their own signature) */
    ROUTE_AUTH_API,      /* API key, or internal secret + X-User-ID + X-Org-ID */
    ROUTE_AUTH_INTERNAL, /* internal secret only (the trusted backend) */
} route_auth;

typedef void (*route_handler)(worker_ctx *w, http_request *req, http_response *resp);

/* Pattern: "/api/clusters/{cluster_id}/kubectl".  Returns -1 on a bad pattern
 * or when the table is full. */
int router_add(http_method m, const char *pattern, route_auth auth, route_handler h);

/* Worker thread: match, authenticate, run the handler (or fill 401/404/405). */
void router_dispatch(worker_ctx *w, http_request *req, http_response *resp);

/* Every module that has routes lists its registration function in
 * server/modules.c; adding a module is one line there. */
void modules_register_all(void);
void router_reset(void);

#endif
