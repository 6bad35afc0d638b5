/* atlassian_call.c — one Confluence or Jira REST call with the connection's
 * credentials (atlassian.h, atl_call): the base URL rule, the Cloud token
 * refreshed once on a 401, and Atlassian's answers as the guide's errors. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "atlassian.h"
#include "kit_call.h"
#include "log.h"

#define ATL_RESPONSE_MAX (8 * 1024 * 1024)

static const kit_call_errors confluence_errors = {
    .service = "Confluence", .timeout = "CONFLUENCE_TIMEOUT",
    .unreachable = "CONFLUENCE_UNREACHABLE", .failed = "CONFLUENCE_ERROR",
};
static const kit_call_errors jira_errors = {
    .service = "Jira", .timeout = "JIRA_TIMEOUT", .unreachable = "JIRA_UNREACHABLE",
    .failed = "JIRA_ERROR",
};

static int once(atl_creds *c, const char *method, const char *path, const char *body,
                kit_call_resp *r)
{
    const char *json_headers[] = { "Content-Type: application/json", "Accept: application/json",
                                   NULL };
    const char *accept[] = { "Accept: application/json", NULL };
    char *url = strncmp(path, "http", 4) ? kit_url(c->api_base, path) : strdup(path);
    memset(r, 0, sizeof(*r));
    if (!url) {
        r->code = AUR_E_INVALID;
        snprintf(r->err, sizeof(r->err), "the request is not under the product's base URL");
        return r->code;
    }
    kit_call_req q = {
        .provider = "Atlassian",
        .base_url = c->api_base,
        .method = method,
        .url = url,
        .headers = body ? json_headers : accept,
        .bearer = c->token,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .attempt_timeout_ms = c->timeout_ms,
        .max_response = ATL_RESPONSE_MAX,
        .allow_address = c->allow_address,
        .allow_address_ud = c->allow_address_ud,
        .allow_http = c->allow_http,
    };
    int rc = kit_call(&q, r);
    free(url);
    return rc;
}

/* Atlassian's own message of a 400 (errorMessages[0], errors{…}, message):
 * user-facing text about the query, bounded and printable. */
static void first_message(const kit_call_resp *r, char *out, size_t cap)
{
    out[0] = '\0';
    cJSON *j = kit_call_json(r);
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "errorMessages"), 0);
    const char *s = cJSON_IsString(m) ? m->valuestring : NULL;
    if (!s) {
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors");
        s = cJSON_IsObject(errs) && errs->child && cJSON_IsString(errs->child)
                ? errs->child->valuestring
                : api_json_str(j, "message");
    }
    char why[64];
    if (s && api_check_text(s, "message", 1, 300, why, sizeof(why)) == 0)
        snprintf(out, cap, "%s", s);
    cJSON_Delete(j);
}

int atl_call(worker_ctx *w, const auth_ctx *who, atl_product p, atl_creds *c,
             const char *method, const char *path, const char *json_body, const char *what,
             cJSON **json, http_response *resp)
{
    *json = NULL;
    const char *P = p == ATL_JIRA ? "JIRA" : "CONFLUENCE";
    const char *name = atl_product_name(p);
    kit_call_resp r;
    int rc = once(c, method, path, json_body, &r);
    if (r.status == 401 && c->cloud) {
        /* The access token died before its time (revoked, rotated): once more
         * with a fresh one. */
        kit_call_resp_free(&r);
        atl_creds_clear(c);
        if (atl_credentials(w, who, p, 1, c, resp) < 0)
            return AUR_E_DENIED;
        rc = once(c, method, path, json_body, &r);
    }
    if (rc == AUR_OK) {
        if (r.http.len > 0) {
            *json = kit_call_json(&r);
            if (!*json) {
                http_resp_error(resp, 502, p == ATL_JIRA ? "JIRA_ERROR" : "CONFLUENCE_ERROR",
                                "%s: %s answered something that is not JSON", what, name);
                rc = AUR_E_INTERNAL;
            }
        }
    } else if (r.status == 404) {
        rc = AUR_NOT_FOUND;
    } else if (r.status == 401) {
        http_resp_error(resp, 401, p == ATL_JIRA ? "JIRA_CREDENTIALS_EXPIRED"
                                                 : "CONFLUENCE_CREDENTIALS_EXPIRED",
                        "%s credentials expired: Reconnect via the Connectors page", name);
    } else if (r.status == 403) {
        http_resp_error(resp, 403, p == ATL_JIRA ? "JIRA_FORBIDDEN" : "CONFLUENCE_FORBIDDEN",
                        "%s: %s refused it (HTTP 403): the connected account has no permission",
                        what, name);
    } else if (r.status == 400) {
        char m[320];
        first_message(&r, m, sizeof(m));
        http_resp_error(resp, 400, p == ATL_JIRA ? "JIRA_BAD_REQUEST" : "CONFLUENCE_BAD_REQUEST",
                        "%s: %s refused the request%s%s", what, name, m[0] ? ": " : "", m);
    } else {
        kit_call_error(p == ATL_JIRA ? &jira_errors : &confluence_errors, &r, what, c->timeout_ms,
                       NULL, resp);
    }
    if (rc < 0 && rc != AUR_E_DENIED)
        log_warn("%s: %s %s failed: %s", P, method, what, r.err);
    kit_call_resp_free(&r);
    return rc;
}
