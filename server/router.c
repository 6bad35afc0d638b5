/* router.c — route table, matching with {params}, auth, dispatch. */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "http.h"
#include "log.h"

#define MAX_ROUTES 256
#define MAX_SEGS 12

struct route {
    http_method method;
    worker_pool pool;
    char *pattern;
    char *work; /* strdup'd pattern the segs point into */
    char *segs[MAX_SEGS];
    int nsegs;
    route_auth auth;
    route_handler handler;
    int on_loop;
    int ops;      /* router_set_ops */
    int internal; /* router_set_internal */
};

static route g_routes[MAX_ROUTES];
static int g_nroutes;
static route_tenant_fn g_public_tenant; /* router_set_public_tenant */

static int split(char *s, char **segs, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (n >= max)
            return -1;
        segs[n++] = tok;
    }
    return n;
}

static int add(http_method m, const char *pattern, route_auth auth, route_handler h,
               worker_pool pool, int on_loop)
{
    if (g_nroutes >= MAX_ROUTES || pattern[0] != '/')
        return -1;
    route *r = &g_routes[g_nroutes];
    r->pattern = strdup(pattern);
    char *work = strdup(pattern);
    if (!r->pattern || !work) {
        free(r->pattern);
        free(work);
        return -1;
    }
    r->work = work;
    int n = split(work, r->segs, MAX_SEGS);
    int nparams = 0;
    for (int i = 0; i < n; i++)
        if (r->segs[i][0] == '{')
            nparams++;
    if (n < 0 || nparams > HTTP_MAX_PARAMS) {
        free(r->pattern);
        free(work);
        return -1;
    }
    r->nsegs = n;
    r->method = m;
    r->auth = auth;
    r->handler = h;
    r->pool = pool;
    r->on_loop = on_loop;
    r->ops = r->internal = 0; /* a slot router_reset freed keeps its flags */
    g_nroutes++;
    return 0;
}

int router_add(http_method m, const char *pattern, route_auth auth, route_handler h)
{
    return add(m, pattern, auth, h, WORKER_POOL_STORE, 0);
}

int router_add_outbound(http_method m, const char *pattern, route_auth auth, route_handler h)
{
    return add(m, pattern, auth, h, WORKER_POOL_OUTBOUND, 0);
}

int router_add_pool(worker_pool pool, http_method m, const char *pattern, route_auth auth,
                    route_handler h)
{
    if (pool < 0 || pool >= WORKER_POOLS)
        return -1;
    return add(m, pattern, auth, h, pool, 0);
}

int router_add_loop(http_method m, const char *pattern, route_handler h)
{
    /* Public only: authentication reads the store. */
    return add(m, pattern, ROUTE_PUBLIC, h, WORKER_POOL_STORE, 1);
}

worker_pool router_pool(const route *r) { return r->pool; }

int router_on_loop(const route *r) { return r->on_loop; }

const char *router_pattern(const route *r) { return r->pattern; }

void router_set_ops(const char *pattern)
{
    for (int i = 0; i < g_nroutes; i++)
        if (!strcmp(g_routes[i].pattern, pattern))
            g_routes[i].ops = 1;
}

int router_is_ops(const route *r) { return r->ops; }

void router_set_internal(const char *pattern)
{
    for (int i = 0; i < g_nroutes; i++)
        if (!strcmp(g_routes[i].pattern, pattern))
            g_routes[i].internal = 1;
}

int router_is_internal(const route *r) { return r->internal; }

void router_foreach(route_visit fn, void *arg)
{
    for (int i = 0; i < g_nroutes; i++)
        fn(g_routes[i].method, g_routes[i].pattern, g_routes[i].auth, arg);
}

void router_set_public_tenant(route_tenant_fn fn) { g_public_tenant = fn; }

void router_reset(void)
{
    g_public_tenant = NULL;
    for (int i = 0; i < g_nroutes; i++) {
        free(g_routes[i].pattern);
        free(g_routes[i].work);
    }
    g_nroutes = 0;
}

static int match(const route *r, char **segs, int n, http_request *req)
{
    if (r->nsegs != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (r->segs[i][0] != '{' && strcmp(r->segs[i], segs[i]))
            return 0;
    for (int i = 0; i < n; i++) {
        if (r->segs[i][0] != '{')
            continue;
        req->param_names[req->nparams] = r->segs[i]; /* "{name}" form; see http_param */
        req->params[req->nparams] = strdup(segs[i]);
        if (!req->params[req->nparams])
            return -1;
        req->nparams++;
    }
    return 1;
}

/* Appends m to a comma-separated method list, once. */
static void add_allowed(char *list, size_t cap, http_method m)
{
    const char *name = http_method_name(m);
    size_t nl = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += nl)
        if ((p == list || p[-1] == ' ') && (p[nl] == ',' || !p[nl]))
            return;
    size_t len = strlen(list);
    snprintf(list + len, cap - len, "%s%s", len ? ", " : "", name);
}

static int in_view(const route *r, router_view v)
{
    if (v.on_ops >= 0 && r->ops != v.on_ops)
        return 0;
    if (v.on_internal >= 0 && r->internal != v.on_internal)
        return 0;
    return 1;
}

const route *router_match(http_request *req, http_response *resp, router_view v)
{
    char *path = strdup(req->path);
    char *segs[MAX_SEGS + 1];
    if (!path) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return NULL;
    }
    int n = split(path, segs, MAX_SEGS);
    int path_known = 0;
    char allow[96] = ""; /* the path's methods, for a 405's Allow header */
    const route *found = NULL;
    for (int i = 0; n >= 0 && i < g_nroutes && !found; i++) {
        const route *r = &g_routes[i];
        if (!in_view(r, v))
            continue;
        int saved = req->nparams;
        int m = match(r, segs, n, req);
        if (m < 0) {
            free(path);
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
            return NULL;
        }
        if (!m)
            continue;
        if (r->method != req->method) {
            path_known = 1;
            add_allowed(allow, sizeof(allow), r->method);
            for (int k = saved; k < req->nparams; k++)
                free(req->params[k]);
            req->nparams = saved;
            continue;
        }
        found = r;
    }
    free(path);
    if (!found) {
        if (path_known) {
            http_resp_error(resp, 405, "METHOD_NOT_ALLOWED", "method %s not allowed on %s",
                            http_method_name(req->method), req->path);
            http_resp_add_header(resp, "allow", allow);
        } else {
            http_resp_error(resp, 404, "NOT_FOUND", "no such route");
        }
    }
    return found;
}

/* A place under org's share of the outbound pool (worker.h): 1 to run the
 * handler, 0 when the job is parked (it runs again from the start, once one
 * of org's places frees: authenticated or resolved again). */
static int share_place(worker_ctx *w, const char *org)
{
    int limit = workers_share_limit(w->cfg->outbound_workers, w->cfg->outbound_per_org);
    return workers_share_enter(w, org, limit);
}

/* A public request on the outbound pool that names its organization (an
 * OAuth callback's state) takes a place under it first: callbacks carry no
 * API key, and one organization's users finishing flows against a token
 * endpoint that never answers held every outbound worker.  Nothing is
 * resolved without a limit (no store read for nothing). */
static int public_share_place(worker_ctx *w, const http_request *req)
{
    if (!g_public_tenant ||
        workers_share_limit(w->cfg->outbound_workers, w->cfg->outbound_per_org) <= 0)
        return 1;
    char org[STORE_ID_LEN];
    if (!g_public_tenant(w, req, org))
        return 1; /* none named: runs uncounted, as before */
    return share_place(w, org);
}

void router_run(worker_ctx *w, const route *found, http_request *req, http_response *resp)
{
    int outbound = w && w->cfg && found->pool == WORKER_POOL_OUTBOUND;
    if (found->auth == ROUTE_PUBLIC) {
        if (outbound && !public_share_place(w, req))
            return; /* parked */
        found->handler(w, req, resp);
        return; /* (the request is logged by access_log.c once answered) */
    }
    if (auth_authenticate(w, req, found->auth == ROUTE_AUTH_INTERNAL, resp) == 0) {
        /* within its organization's share of the pool */
        if (outbound && !share_place(w, req->auth.org_id))
            return; /* parked */
        found->handler(w, req, resp);
        return;
    }
    /* RFC 9110 15.5.2: a 401 names the scheme it wants.  Only for the
     * credentials the router checks: a webhook refusing a signature (its
     * own 401) has no bearer scheme to offer. */
    if (resp->status == 401)
        http_resp_add_header(resp, "www-authenticate", "Bearer realm=\"aurora\"");
}
