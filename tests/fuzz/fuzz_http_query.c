/* fuzz_http_query.c — what the server does with a request's path and query
 * before any handler logic: route matching with {params} (server/router.c,
 * every route of every module registered), the query argument accessor
 * (http_query_get, server/http.c) and its first consumer on a public route,
 * the OAuth callback's `state` check (oauth_state_take, server/connectors/oauth.c,
 * against an empty in-memory store: no state was issued, so every state is
 * refused).
 *
 * Input: byte 0 the method, then the path (up to a NUL), then the query
 * arguments as lws hands them over: "name=value" strings, each
 * NUL-terminated, back to back.
 *
 * Invariants:
 *  - router_match either finds a route of the request's method (params
 *    non-empty, without '/', at most HTTP_MAX_PARAMS, each readable with
 *    http_param) or answers 404/405 with a JSON error; no leak either way;
 *  - http_query_get returns the first "name=" argument's value, truncated to
 *    the buffer and NUL-terminated (compared with a reference reading);
 *  - http_query_check (what http.c lets through to handlers) says why when it
 *    refuses; when it accepts, every argument is "name=value" with a
 *    non-empty name and no control character, and no name repeats, so the
 *    first and the last "name=" argument are one (a reader taking either
 *    agrees with http_query_get);
 *  - oauth_state_take refuses with 400 OAUTH_STATE_INVALID (or 503 when the
 *    store fails) and never fills the caller's state info. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "http.h"
#include "oauth.h"
#include "router.h"
#include "server_config.h"
#include "store.h"
#include "worker.h"

static store_t *g_store;
static server_config g_cfg;
static worker_ctx g_w;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    modules_register_all();
    if (store_open(":memory:", &g_store, err, sizeof(err)) != STORE_OK)
        fuzz_fail("store_open: %s", err);
    g_w.store = g_store;
    g_w.cfg = &g_cfg;
    return 0;
}

/* The reference reading of the query: first argument "name=...". */
static const char *ref_query(const char *q, size_t qlen, const char *name)
{
    size_t nl = strlen(name);
    for (size_t off = 0; off < qlen;) {
        const char *arg = q + off;
        size_t al = strnlen(arg, qlen - off);
        if (al > nl && !memcmp(arg, name, nl) && arg[nl] == '=')
            return arg + nl + 1;
        off += al + 1;
    }
    return NULL;
}

/* The reading of a reader that takes the last "name=..." instead. */
static const char *ref_query_last(const char *q, size_t qlen, const char *name)
{
    const char *last = NULL;
    size_t nl = strlen(name);
    for (size_t off = 0; off < qlen;) {
        const char *arg = q + off;
        size_t al = strnlen(arg, qlen - off);
        if (al > nl && !memcmp(arg, name, nl) && arg[nl] == '=')
            last = arg + nl + 1;
        off += al + 1;
    }
    return last;
}

/* Whether http_query_check's acceptance holds what it promises. */
static void check_query_check(const http_request *req)
{
    char why[160];
    memset(why, 0, sizeof(why));
    if (http_query_check(req->query, req->query_len, why, sizeof(why)) < 0) {
        FUZZ_CHECK(why[0] != '\0', "http_query_check refused without saying why");
        return;
    }
    for (size_t off = 0; off < req->query_len;) {
        const char *arg = req->query + off;
        size_t al = strnlen(arg, req->query_len - off);
        const char *eq = memchr(arg, '=', al);
        FUZZ_CHECK(eq && eq != arg, "accepted an argument without name=");
        for (size_t i = 0; i < al; i++)
            FUZZ_CHECK((unsigned char)arg[i] >= 0x20 && arg[i] != 0x7f,
                       "accepted a control character");
        char name[256];
        size_t nl = (size_t)(eq - arg);
        if (nl < sizeof(name)) {
            memcpy(name, arg, nl);
            name[nl] = '\0';
            FUZZ_CHECK(ref_query_last(req->query, req->query_len, name) == eq + 1,
                       "accepted a repeated argument name");
        }
        off += al + 1;
    }
}

static void check_query(const http_request *req, const char *name, size_t cap)
{
    char out[256];
    memset(out, 'X', sizeof(out));
    const char *want = ref_query(req->query, req->query_len, name);
    int found = http_query_get(req, name, out, cap);
    FUZZ_CHECK(found == (want != NULL), "http_query_get(%s) found %d", name, found);
    if (!found)
        return;
    FUZZ_CHECK(memchr(out, '\0', cap) != NULL, "http_query_get(%s) left no NUL", name);
    FUZZ_CHECK(out[cap] == 'X', "http_query_get(%s) wrote past its buffer", name);
    size_t n = strlen(want) < cap - 1 ? strlen(want) : cap - 1;
    FUZZ_CHECK(strlen(out) == n && !memcmp(out, want, n), "http_query_get(%s) value differs",
               name);
}

static void check_error_body(const http_response *resp, const char *what)
{
    cJSON *j = cJSON_ParseWithLength(buf_head(&resp->body), buf_pending(&resp->body));
    FUZZ_CHECK(j && cJSON_IsString(cJSON_GetObjectItem(j, "error_code")) &&
                   cJSON_IsString(cJSON_GetObjectItem(j, "error")),
               "%s: %d without a JSON error body", what, resp->status);
    cJSON_Delete(j);
}

static void check_route(http_request *req)
{
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    const route *r = router_match(req, &resp, (router_view){ .on_ops = -1, .on_internal = -1 });
    if (r) {
        FUZZ_CHECK(req->nparams >= 0 && req->nparams <= HTTP_MAX_PARAMS, "%d params",
                   req->nparams);
        for (int i = 0; i < req->nparams; i++) {
            const char *pn = req->param_names[i];
            FUZZ_CHECK(req->params[i] && req->params[i][0] && !strchr(req->params[i], '/'),
                       "param %s empty or with a '/'", pn);
            char name[64];
            size_t nl = strlen(pn);
            FUZZ_CHECK(nl >= 3 && nl - 2 < sizeof(name) && pn[0] == '{' && pn[nl - 1] == '}',
                       "param name %s", pn);
            memcpy(name, pn + 1, nl - 2);
            name[nl - 2] = '\0';
            FUZZ_CHECK(http_param(req, name) == req->params[i], "http_param(%s) differs", name);
        }
    } else {
        FUZZ_CHECK(req->nparams == 0, "no route but %d params left", req->nparams);
        FUZZ_CHECK(resp.status == 404 || resp.status == 405 || resp.status == 500,
                   "no route answered %d", resp.status);
        check_error_body(&resp, "router_match");
        /* A 405 names the methods the path has (RFC 9110 15.5.6). */
        int allow = 0;
        for (int i = 0; i < resp.nextra; i++)
            allow |= !strcmp(resp.extra[i].name, "allow") && resp.extra[i].value[0];
        FUZZ_CHECK(resp.status != 405 || allow, "405 without an Allow header");
    }
    for (int i = 0; i < req->nparams; i++)
        free(req->params[i]);
    req->nparams = 0;
    for (int i = 0; i < resp.nextra; i++) {
        free(resp.extra[i].name);
        free(resp.extra[i].value);
    }
    buf_free(&resp.body);
}

static void check_oauth_state(const http_request *req)
{
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    oauth_state_info info;
    memset(&info, 'X', sizeof(info));
    int rc = oauth_state_take(&g_w, req, "gcp", &info, &resp);
    FUZZ_CHECK(rc == -1, "oauth_state_take accepted a state nobody issued");
    FUZZ_CHECK(resp.status == 400 || resp.status == 503, "oauth_state_take answered %d",
               resp.status);
    FUZZ_CHECK(!info.org_id[0] && !info.user_id[0] && !info.redirect_uri[0],
               "oauth_state_take filled the state info of a refused state");
    check_error_body(&resp, "oauth_state_take");
    buf_free(&resp.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    http_request req;
    memset(&req, 0, sizeof(req));
    req.method = (http_method)(data[0] % (HTTP_OTHER + 1));
    data++;
    size--;
    const uint8_t *nul = memchr(data, '\0', size);
    size_t plen = nul ? (size_t)(nul - data) : size;
    req.path = fuzz_strndup(data, plen);
    /* the query as lws gives it: every argument NUL-terminated, the last too */
    size_t qoff = nul ? plen + 1 : size;
    size_t qlen = size - qoff;
    if (qlen > 0) {
        req.query = malloc(qlen + 1);
        FUZZ_CHECK(req.query != NULL, "out of memory");
        memcpy(req.query, data + qoff, qlen);
        if (req.query[qlen - 1] != '\0')
            req.query[qlen++] = '\0';
        req.query_len = qlen;
    }

    check_route(&req);
    check_query_check(&req);
    static const char *const names[] = {"state", "code", "error", "error_description",
                                        "redirect_uri", "tenant_id", "region", "s", ""};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        check_query(&req, names[i], 128);
        check_query(&req, names[i], 1);
    }
    check_oauth_state(&req);

    free(req.path);
    free(req.query);
    return 0;
}
