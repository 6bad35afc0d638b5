/* api_exec.c — run kubectl through a cluster's tunnel:
 *   POST /api/clusters/{cluster_id}/kubectl   (API key or internal secret)
 *   POST /internal/kubectl/execute            (the existing backend's route)
 *   GET  /api/exec/usage                      (what the caller's commands hold
 *                                              against the limits of exec_limits.h)
 * Validation and tenancy happen here on a worker; exec.c runs the command. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_util.h"
#include "auth.h"
#include "exec.h"
#include "log.h"
#include "router.h"
#include "secret.h"

int api_exec_wants_sse(const http_request *req)
{
    const char *acc = http_header_get(req, "accept");
    return acc && strcasestr(acc, "text/event-stream") != NULL;
}

/* Fills spec->argv/timeout/max_output from the body; 400 into resp on error. */
static int parse_exec_body(worker_ctx *w, const cJSON *body, exec_spec *e, http_response *resp,
                           const char *command_key)
{
    if (api_parse_command(body, "kubectl", command_key, &e->argv, &e->command, resp) < 0)
        return -1;
    return api_exec_parse_limits(w, body, e, resp);
}

int api_exec_parse_limits(worker_ctx *w, const cJSON *body, exec_spec *e, http_response *resp)
{
    const server_config *cfg = w->cfg;
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(body, "timeout");
    e->timeout = cfg->default_timeout;
    if (to && !cJSON_IsNull(to)) {
        if (!cJSON_IsNumber(to) || !isfinite(to->valuedouble) || to->valuedouble <= 0 ||
            to->valuedouble > cfg->max_timeout) {
            http_resp_error(resp, 400, "BAD_REQUEST", "timeout must be a number of seconds in (0, %d]",
                            cfg->max_timeout);
            return -1;
        }
        e->timeout = to->valuedouble;
    }
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(body, "max_output");
    int64_t cap = e->stream ? cfg->max_output_stream : cfg->max_output_json;
    e->max_output = cfg->default_max_output;
    if (mo && !cJSON_IsNull(mo)) {
        if (!cJSON_IsNumber(mo) || mo->valuedouble < 1 || mo->valuedouble > (double)cap) {
            http_resp_error(resp, 400, "BAD_REQUEST", "max_output must be between 1 and %lld bytes",
                            (long long)cap);
            return -1;
        }
        e->max_output = (int64_t)mo->valuedouble;
    }
    return 0;
}

static void run_exec(worker_ctx *w, http_request *req, http_response *resp, const char *org_id,
                     const char *cluster_id, const cJSON *body, const char *command_key)
{
    exec_spec *e = calloc(1, sizeof(*e));
    if (!e) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    snprintf(e->kind, sizeof(e->kind), "kubectl");
    snprintf(e->org_id, sizeof(e->org_id), "%s", org_id);
    snprintf(e->user_id, sizeof(e->user_id), "%s", req->auth.user_id);
    e->stream = api_exec_wants_sse(req);
    if (parse_exec_body(w, body, e, resp, command_key) < 0) {
        exec_spec_free(e);
        return;
    }
    int known = api_cluster_known(w, org_id, cluster_id, NULL, 0);
    if (known < 0) {
        exec_spec_free(e);
        api_store_error(w, resp);
        return;
    }
    if (!known) {
        /* Another org's cluster gets exactly this answer too. */
        exec_spec_free(e);
        http_resp_error(resp, 404, "CLUSTER_NOT_FOUND", "cluster not found");
        return;
    }
    snprintf(e->cluster_id, sizeof(e->cluster_id), "%s", cluster_id);
    if (exec_admit(w, e, resp) < 0) {
        exec_spec_free(e);
        return;
    }
    resp->exec = e;
}

static void cluster_kubectl(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    run_exec(w, req, resp, req->auth.org_id, http_param(req, "cluster_id"), body, "command");
    secret_json_free(body); /* the command line may carry a credential */
}

/* The org a call of the trusted backend acts in.  With X-Org-ID, that one
 * (the user in the body is then provisioned in it, as a header would be).
 * Without it — the existing backend's kubectl tool sends none — the cluster's
 * own org, but only for a user who is a member of it: the cluster id comes
 * from a model's tool call, and a chat of one org must not reach another's
 * cluster (the existing service compares the user's org with the cluster's).
 * A call naming no user at all is the backend acting for itself.  0, or -1
 * with resp filled; a refused cluster looks exactly like a missing one. */
static int internal_target_org(worker_ctx *w, const auth_ctx *a, const char *cluster, char *org,
                               http_response *resp)
{
    if (a->org_id[0]) {
        snprintf(org, STORE_ID_LEN, "%s", a->org_id);
        if (a->user_id[0] &&
            store_identity_provision(w->store, org, a->user_id, "backend", NULL) != STORE_OK) {
            api_store_error(w, resp);
            return -1;
        }
        return 0;
    }
    int rc = store_cluster_org(w->store, cluster, org);
    if (rc == STORE_OK && a->user_id[0]) {
        store_member m;
        rc = store_member_get(w->store, org, a->user_id, &m);
        if (rc == STORE_NOT_FOUND)
            log_warn("internal execute: user %s is not a member of the organization of %s",
                     a->user_id, cluster);
    }
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    if (rc != STORE_OK) {
        http_resp_error(resp, 404, "CLUSTER_NOT_FOUND", "cluster not found");
        return -1;
    }
    return 0;
}

static void internal_execute(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *cluster = api_json_str(body, "cluster_id");
    const cJSON *juser = cJSON_GetObjectItemCaseSensitive(body, "user_id");
    const char *user = api_json_str(body, "user_id");
    char org[STORE_ID_LEN] = "";
    if (!cluster) {
        http_resp_error(resp, 400, "BAD_REQUEST", "cluster_id is required");
        goto out;
    }
    if ((juser && !cJSON_IsNull(juser) && !user) || (user && !auth_id_valid(user))) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "user_id must be 1-64 characters from A-Z a-z 0-9 . _ - @");
        goto out;
    }
    if (user && req->auth.user_id[0] && strcmp(user, req->auth.user_id)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "user_id differs from X-User-ID");
        goto out;
    }
    if (user && !req->auth.user_id[0])
        snprintf(req->auth.user_id, sizeof(req->auth.user_id), "%s", user);
    if (internal_target_org(w, &req->auth, cluster, org, resp) < 0)
        goto out;
    run_exec(w, req, resp, org, cluster, body, "command");
out:
    secret_json_free(body); /* the command line may carry a credential */
}

/* The caller's organization: its buffered JSON output against its budget
 * and its clusters' command counts.  The trusted backend also sees the
 * server-wide numbers (other tenants' load is not a tenant's business). */
static void exec_usage_route(worker_ctx *w, http_request *req, http_response *resp)
{
    enum { MAX_LISTED = 256 };
    exec_usage u;
    exec_cluster_usage cl[MAX_LISTED];
    size_t n = 0;
    exec_limits_usage(exec_ctx_limits(w->exec), req->auth.org_id, &u, cl, MAX_LISTED, &n);
    cJSON *o = cJSON_CreateObject();
    cJSON *b = cJSON_AddObjectToObject(o, "buffered_output");
    cJSON_AddNumberToObject(b, "bytes", (double)u.org_bytes);
    cJSON_AddNumberToObject(b, "budget", (double)u.org_budget);
    cJSON *arr = cJSON_AddArrayToObject(o, "clusters");
    for (size_t i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "cluster_id", cl[i].cluster_id);
        cJSON_AddNumberToObject(c, "commands", cl[i].commands);
        cJSON_AddItemToArray(arr, c);
    }
    cJSON_AddNumberToObject(o, "max_per_cluster", u.max_per_cluster);
    if (req->auth.internal) {
        cJSON *s = cJSON_AddObjectToObject(o, "server");
        cJSON_AddNumberToObject(s, "buffered_output_bytes", (double)u.server_bytes);
        cJSON_AddNumberToObject(s, "buffered_output_budget", (double)u.server_budget);
        cJSON_AddNumberToObject(s, "commands", (double)u.server_commands);
    }
    http_resp_json(resp, 200, o);
}

void api_exec_register(void)
{
    router_add(HTTP_GET, "/api/exec/usage", ROUTE_AUTH_API, exec_usage_route);
    router_add(HTTP_POST, "/api/clusters/{cluster_id}/kubectl", ROUTE_AUTH_API, cluster_kubectl);
    router_add(HTTP_POST, "/internal/kubectl/execute", ROUTE_AUTH_INTERNAL, internal_execute);
}
