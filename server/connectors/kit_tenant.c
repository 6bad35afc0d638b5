/* kit_tenant.c — which organization a per-user webhook URL belongs to
 * (kit_tenant.h explains the rules). */
#include "kit_tenant.h"

#include <string.h>

#include "auth.h"
#include "log.h"

#define TENANT_MAX_ORGS 8 /* enough to tell "one" from "several" */
#define DEFAULT_NOT_FOUND "Unknown webhook user or connector not connected"

static int store_failed(worker_ctx *w, http_response *resp)
{
    log_error("webhook tenant: store: %s", store_errmsg(w->store));
    http_resp_error(resp, 503, "STORE_UNAVAILABLE", "the store is unavailable; retry later");
    return -1;
}

static int not_found(const char *msg, http_response *resp)
{
    http_resp_error(resp, 404, "USER_NOT_FOUND", "%s", msg ? msg : DEFAULT_NOT_FOUND);
    return -1;
}

/* Fills the row flags of out for its org_id. */
static int read_row(worker_ctx *w, const char *connector, kit_tenant *out)
{
    store_connector row;
    int rc = store_connector_get(w->store, out->org_id, out->user_id, connector, &row);
    if (rc == STORE_NOT_FOUND)
        return 0;
    if (rc != STORE_OK)
        return -1;
    out->has_row = 1;
    out->connected = strcmp(row.status, "active") == 0;
    store_connector_free(&row);
    return 0;
}

int kit_tenant_resolve(worker_ctx *w, const char *connector, const http_request *req,
                       const char *user_id, kit_tenant_need need, const char *not_found_msg,
                       kit_tenant *out, http_response *resp)
{
    memset(out, 0, sizeof(*out));
    if (!user_id || !auth_id_valid(user_id)) {
        http_resp_error(resp, 400, "INVALID_USER_ID",
                        "the webhook URL's user id must be 1-64 characters of [A-Za-z0-9._@-]");
        return -1;
    }
    memcpy(out->user_id, user_id, strlen(user_id) + 1);

    /* Larger than an id: a longer value arrives cut at 255 bytes and is
     * then refused by auth_id_valid, never taken as its first 64. */
    char wanted[256] = "";
    int q = http_query_get(req, "org_id", wanted, sizeof(wanted));
    if (q > 0 && !auth_id_valid(wanted)) {
        http_resp_error(resp, 400, "INVALID_ORG_ID",
                        "org_id must be 1-64 characters of [A-Za-z0-9._@-]");
        return -1;
    }
    if (q > 0) {
        store_member m;
        int rc = store_member_get(w->store, wanted, user_id, &m);
        if (rc == STORE_NOT_FOUND)
            return not_found(not_found_msg, resp);
        if (rc != STORE_OK)
            return store_failed(w, resp);
        memcpy(out->org_id, wanted, strlen(wanted) + 1);
        if (read_row(w, connector, out) < 0)
            return store_failed(w, resp);
        if (need == KIT_TENANT_CONNECTED && !out->connected)
            return not_found(not_found_msg, resp);
        return 0;
    }

    char orgs[TENANT_MAX_ORGS][STORE_ID_LEN];
    size_t n = 0;
    /* Rows pin the tenant: a disconnected Grafana row keeps its org (the
     * connector then refuses the delivery) rather than falling back to
     * membership and connecting the user somewhere else. */
    if (store_user_orgs(w->store, user_id, connector, need == KIT_TENANT_CONNECTED, orgs,
                        TENANT_MAX_ORGS, &n) != STORE_OK)
        return store_failed(w, resp);
    if (n == 0 && need == KIT_TENANT_MEMBER &&
        store_user_orgs(w->store, user_id, NULL, 0, orgs, TENANT_MAX_ORGS, &n) != STORE_OK)
        return store_failed(w, resp);
    if (n == 0)
        return not_found(not_found_msg, resp);
    if (n > 1) {
        http_resp_error(resp, 409, "AMBIGUOUS_TENANT",
                        "user '%s' belongs to several organizations: add ?org_id=<organization> "
                        "to the webhook URL", user_id);
        return -1;
    }
    memcpy(out->org_id, orgs[0], strlen(orgs[0]) + 1);
    if (read_row(w, connector, out) < 0)
        return store_failed(w, resp);
    if (need == KIT_TENANT_CONNECTED && !out->connected)
        return not_found(not_found_msg, resp);
    return 0;
}
