/* router.h — the one small registration interface every API module and
 * connector uses: a method, a path pattern with {params}, an auth level and a
 * handler that runs on a worker thread. */
#ifndef AURORA_ROUTER_H
#define AURORA_ROUTER_H

#include "http_types.h"
#include "worker.h"

typedef enum {
    ROUTE_PUBLIC = 0,    /* no auth (health, webhooks that verify their own signature) */
    ROUTE_AUTH_API,      /* API key, or internal secret + X-User-ID + X-Org-ID */
    ROUTE_AUTH_INTERNAL, /* internal secret only (the trusted backend) */
} route_auth;

typedef void (*route_handler)(worker_ctx *w, http_request *req, http_response *resp);

typedef struct route route;

/* Pattern: "/api/clusters/{cluster_id}/kubectl".  Returns -1 on a bad pattern
 * or when the table is full.  The handler runs in the store pool. */
int router_add(http_method m, const char *pattern, route_auth auth, route_handler h);
/* Same, for handlers that call providers over the network (outbound pool). */
int router_add_outbound(http_method m, const char *pattern, route_auth auth, route_handler h);
/* Same, in the given pool (e.g. WORKER_POOL_PROBE). */
int router_add_pool(worker_pool pool, http_method m, const char *pattern, route_auth auth,
                    route_handler h);
/* A public route whose handler runs on the event-loop thread itself, with w
 * NULL: for answers that must not depend on the workers (liveness).  The
 * handler must not block nor touch the store. */
int router_add_loop(http_method m, const char *pattern, route_handler h);

/* Which routes the listener a request came in on has: with an ops
 * listener, the ops routes are there and nowhere else; with an internal
 * listener, the replicas' routes are there and it has nothing else.  -1:
 * that listener does not exist (no split); 0/1: the request is not/is on it. */
typedef struct {
    int on_ops;
    int on_internal;
} router_view;

/* Loop thread (pure, no I/O): finds the route the view has and fills req's
 * params; NULL with resp filled (404/405) when none matches.  A route the
 * view lacks is absent: no 405 names its methods (which would tell that an
 * ops or internal path exists to a caller of the main port). */
const route *router_match(http_request *req, http_response *resp, router_view v);
worker_pool router_pool(const route *r);
/* 1 for a router_add_loop route: http.c runs it with router_run(NULL, …). */
int router_on_loop(const route *r);
/* Worker thread (the loop, w NULL, for router_add_loop routes): authenticate,
 * then run the handler (or fill 401). */
void router_run(worker_ctx *w, const route *r, http_request *req, http_response *resp);

/* The organization a public request on the outbound pool is for, when the
 * request itself names it (an OAuth callback's state: oauth.h,
 * oauth_callback_org): 1 with org filled, else 0.  Read before the handler
 * runs, so it must consume nothing: a job parked over its organization's
 * share runs again from the start, resolved again. */
typedef int (*route_tenant_fn)(worker_ctx *w, const http_request *req, char org[STORE_ID_LEN]);
/* Installs the resolver (NULL: none; router_reset clears it).  router_run
 * then has such a request take a place under that organization's share of
 * the outbound pool (AURORA_OUTBOUND_PER_ORG) before its handler, as an
 * authenticated request does; one it names no organization for runs
 * uncounted (webhooks: their only slow call is the operator's secrets
 * backend, and the path's user is not proven before the signature is). */
void router_set_public_tenant(route_tenant_fn fn);

/* Operations routes (/health, /ready, /metrics): with AURORA_OPS_PORT they
 * answer only on that listener, and only they answer there. */
void router_set_ops(const char *pattern);
int router_is_ops(const route *r);

/* Routes between replicas (/internal/forward/exec): with AURORA_INTERNAL_PORT
 * they answer only on that listener, the main one 404s them (an Ingress
 * that passes the path never reaches them); without it, on the main one. */
void router_set_internal(const char *pattern);
int router_is_internal(const route *r);

/* The route's pattern as registered ("/api/clusters/{cluster_id}/kubectl"):
 * what the access log and the metrics name a request by, so that ids in
 * paths never become log fields or metric labels. */
const char *router_pattern(const route *r);

/* Calls fn for every registered route, in registration order (the OpenAPI
 * check and `aurora-server admin routes`). */
typedef void (*route_visit)(http_method m, const char *pattern, route_auth auth, void *arg);
void router_foreach(route_visit fn, void *arg);

/* Every module that has routes lists its registration function in
 * server/modules.c; adding a module is one line there. */
void modules_register_all(void);
void router_reset(void);

#endif
