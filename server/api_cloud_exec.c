/* api_cloud_exec.c — run a cloud CLI (gcloud, aws, az, …) through a
 * cluster's tunnel with the caller's connector credentials:
 *
 *   POST /api/cloud_exec {provider, command | args, cluster_id,
 *                         project | account | subscription?, timeout?, max_output?}
 *
 * On an outbound worker (credentials may need a provider round trip): auth,
 * the cluster must belong to the caller's org, the provider must be a
 * connector with a cloud side that the caller has connected; every
 * account/project/subscription selector in argv is found with the
 * connector's argv rules (cloud_argv.h: refused flags, repeats,
 * abbreviations and @file are refused here, 403 CLOUD_ARG_REFUSED / 400
 * CLOUD_ARG_AMBIGUOUS); the connector's prepare() checks each selector and
 * applies its policy (e.g. GCP_PROJECT_DISABLED),
 * rewrites argv and returns short-lived credentials as environment
 * variables.  Then exec.c runs it like kubectl ("cloud_exec" kind, v2
 * agents only: a legacy agent gets 409 AGENT_UNSUPPORTED) and the result or
 * the event stream is exactly kubectl's.  The audit row records argv, never
 * the environment. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "connector.h"
#include "exec.h"
#include "log.h"
#include "router.h"
#include "secret.h"

/* The caller's project / account / subscription, if any (one of them). */
static int parse_target(const cJSON *body, const char **target, http_response *resp)
{
    static const char *const keys[] = { "project", "account", "subscription" };
    *target = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, keys[i]);
        if (!it || cJSON_IsNull(it))
            continue;
        char err[160];
        if (!cJSON_IsString(it) ||
            api_check_text(it->valuestring, keys[i], 1, 255, err, sizeof(err)) < 0) {
            http_resp_error(resp, 400, "BAD_REQUEST", "%s must be a string of 1 to 255 characters",
                            keys[i]);
            return -1;
        }
        if (*target) {
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "give one of project, account or subscription");
            return -1;
        }
        *target = it->valuestring;
    }
    return 0;
}

static void cloud_exec(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    exec_spec *e = NULL;
    cloud_creds creds = { 0 };
    cloud_argv_result scan = { 0 };
    const char *pname = api_json_str(body, "provider");
    const connector *c = connector_find(pname);
    if (!pname || !*pname) {
        http_resp_error(resp, 400, "BAD_REQUEST", "provider is required");
        goto out;
    }
    if (!c || !c->cloud || !c->cloud->prepare || !c->cloud->argv_rules) {
        http_resp_error(resp, 400, "UNKNOWN_PROVIDER", "unknown provider");
        goto out;
    }
    if (connector_require_user(&req->auth, resp) < 0)
        goto out;
    const char *cluster_id = api_json_str(body, "cluster_id");
    if (!cluster_id) {
        http_resp_error(resp, 400, "BAD_REQUEST", "cluster_id is required");
        goto out;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    snprintf(e->kind, sizeof(e->kind), "cloud_exec");
    snprintf(e->program, sizeof(e->program), "%s", c->cloud->program);
    snprintf(e->org_id, sizeof(e->org_id), "%s", req->auth.org_id);
    snprintf(e->user_id, sizeof(e->user_id), "%s", req->auth.user_id);
    e->stream = api_exec_wants_sse(req);
    const char *target;
    if (api_parse_command(body, c->cloud->program, "command", &e->argv, NULL, resp) < 0 || parse_target(body, &target, resp) < 0 ||
        api_exec_parse_limits(w, body, e, resp) < 0)
        goto out;
    int known = api_cluster_known(w, req->auth.org_id, cluster_id, NULL, 0);
    if (known < 0) {
        api_store_error(w, resp);
        goto out;
    }
    if (!known) {
        http_resp_error(resp, 404, "CLUSTER_NOT_FOUND", "cluster not found");
        goto out;
    }
    snprintf(e->cluster_id, sizeof(e->cluster_id), "%s", cluster_id);

    store_connector row;
    int rc = store_connector_get(w->store, req->auth.org_id, req->auth.user_id, c->id, &row);
    store_connector_free(&row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        goto out;
    }
    if (rc != STORE_OK) {
        http_resp_error(resp, 404, "MISSING_CONNECTOR", "%s is not connected", c->id);
        goto out;
    }
    /* Every selector in argv, read as the CLI reads it; what cannot be
     * checked is refused here, the rest is the connector's to check. */
    if (cloud_argv_scan(c->cloud->argv_rules, e->argv.c, (const char *const *)e->argv.v,
                        &scan) < 0) {
        http_resp_error(resp, scan.status, scan.code, "%s", scan.err);
        exec_audit_now(w, e, "refused");
        goto out;
    }
    creds.lifetime = (int)e->timeout + 1; /* timeout is in (0, AURORA_EXEC_MAX_TIMEOUT] */
    if (c->cloud->prepare(w, &req->auth, target, &scan, &e->argv, &creds, resp) < 0) {
        /* Refused by the connector's policy or no credentials: audited too. */
        exec_audit_now(w, e, "refused");
        goto out;
    }
    if (creds.nenv > 0) {
        e->env = calloc((size_t)creds.nenv + 1, sizeof(char *));
        if (!e->env) {
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
            goto out;
        }
        for (int i = 0; i < creds.nenv; i++) {
            e->env[i] = creds.env[i]; /* ownership moves: exec.c wipes them */
            creds.env[i] = NULL;
        }
        e->nenv = creds.nenv;
        creds.nenv = 0;
    }
    if (exec_admit(w, e, resp) < 0)
        goto out;
    log_info("cloud_exec %s for user %s on %s (target %s, %d args)", c->cloud->program,
             req->auth.user_id, e->cluster_id, creds.target[0] ? creds.target : "-", e->argv.c);
    resp->exec = e;
    e = NULL;
out:
    cloud_argv_scan_free(&scan);
    cloud_creds_clear(&creds);
    exec_spec_free(e);
    secret_json_free(body); /* the command line may carry a credential */
}

void api_cloud_exec_register(void)
{
    router_add_outbound(HTTP_POST, "/api/cloud_exec", ROUTE_AUTH_API, cloud_exec);
}
