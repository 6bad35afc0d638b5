/* atlassian_products.c — the "confluence" and "jira" connector rows (what
 * GET /api/connectors/status shows and DELETE /api/connectors/{id} removes)
 * and the Jira permission tier.  The product APIs are confluence.c and
 * jira.c (their routes are registered from here), the connection itself
 * atlassian.c / atlassian_pat.c.
 *
 *   GET /jira/permissions    {tier: "read_only"|"full_access"} (default read_only)
 *   PUT /jira/permissions    {tier}: stored in the jira row's metadata;
 *                            atl_credentials returns it and jira.c enforces it
 *
 * Disconnect: DELETE /api/connectors/confluence (or jira) removes that
 * product; the Cloud grant ("atlassian" row) goes with the last product
 * using it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "api_util.h"
#include "atlassian_internal.h"
#include "confluence.h"
#include "jira.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"

/* ---- the tier ------------------------------------------------------------------------------ */

atl_jira_tier atl_tier_of(const cJSON *md)
{
    const char *t = api_json_str(md, "tier");
    return t && !strcmp(t, "full_access") ? ATL_TIER_FULL : ATL_TIER_READ;
}

const char *atl_tier_name(atl_jira_tier t) { return t == ATL_TIER_FULL ? "full_access" : "read_only"; }

#define MSG_JIRA_NOT_CONNECTED "Jira is not connected"

static void tier_answer(http_response *resp, atl_jira_tier t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "product", "jira");
    cJSON_AddStringToObject(o, "tier", atl_tier_name(t));
    http_resp_json(resp, 200, o);
}

static void permissions_get(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, &req->auth, "jira", &row, &md, MSG_JIRA_NOT_CONNECTED, resp) < 0)
        return;
    tier_answer(resp, atl_tier_of(md));
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void permissions_put(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *t = api_json_str(body, "tier");
    if (!cJSON_IsObject(body) || !t || (strcmp(t, "read_only") && strcmp(t, "full_access"))) {
        cJSON_Delete(body);
        http_resp_error(resp, 400, "JIRA_INVALID_TIER",
                        "tier must be \"read_only\" (Read Only) or \"full_access\" (Full Access)");
        return;
    }
    atl_jira_tier tier = !strcmp(t, "full_access") ? ATL_TIER_FULL : ATL_TIER_READ;
    cJSON_Delete(body);
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, &req->auth, "jira", &row, &md, MSG_JIRA_NOT_CONNECTED, resp) < 0)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(md, "tier");
    cJSON_AddStringToObject(md, "tier", atl_tier_name(tier));
    if (kit_row_save_meta(w, &row, md, resp) == 0) {
        log_info("atlassian: user %s (org %s) set the Jira tier to %s", req->auth.user_id,
                 req->auth.org_id, atl_tier_name(tier));
        tier_answer(resp, tier);
    }
    cJSON_Delete(md);
    store_connector_free(&row);
}

/* ---- status ------------------------------------------------------------------------------------ */

void atl_product_status(worker_ctx *w, const auth_ctx *who, atl_product p, cJSON *out)
{
    static const char *const keys[] = { "mode", "site_url", "site_name", "cloud_id", "base_url",
                                        "display_name", "user_name", NULL };
    cJSON_AddBoolToObject(out, "enabled", atl_product_enabled(w, p));
    store_connector row;
    cJSON *md;
    if (!kit_status(w, who, atl_product_id(p), keys, out, &row, &md))
        return;
    const char *mode = api_json_str(md, "mode");
    if (mode && !strcmp(mode, "data_center"))
        cJSON_AddBoolToObject(out, "allow_http", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(md, "allow_http")));
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(md, "scopes");
    if (cJSON_IsArray(sc))
        cJSON_AddItemToObject(out, "scopes", cJSON_Duplicate(sc, 1));
    if (p == ATL_JIRA)
        cJSON_AddStringToObject(out, "tier", atl_tier_name(atl_tier_of(md)));
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void confluence_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    atl_product_status(w, who, ATL_CONFLUENCE, out);
}

static void jira_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    atl_product_status(w, who, ATL_JIRA, out);
}

/* ---- disconnect ---------------------------------------------------------------------------------- */

int atl_remove_row(worker_ctx *w, const auth_ctx *who, const char *conn, http_response *resp)
{
    store_connector row;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, conn, &row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    int existed = rc == STORE_OK;
    rc = kit_secrets_delete_connection(w, who, conn, existed ? &row : NULL, resp);
    if (existed)
        store_connector_free(&row);
    if (rc < 0)
        return -1;
    if (store_connector_delete(w->store, who->org_id, who->user_id, conn) == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    return 0;
}

/* Whether who's row of conn is a Cloud connection (1), another (0), none (0). */
static int row_is_cloud(worker_ctx *w, const auth_ctx *who, const char *conn, int *err)
{
    store_connector row;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, conn, &row);
    if (rc == STORE_ERR)
        *err = 1;
    if (rc != STORE_OK)
        return 0;
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const char *mode = api_json_str(md, "mode");
    int cloud = mode && !strcmp(mode, "cloud");
    cJSON_Delete(md);
    store_connector_free(&row);
    return cloud;
}

void atl_grant_release_if_unused(worker_ctx *w, const auth_ctx *who)
{
    int err = 0;
    if (row_is_cloud(w, who, "confluence", &err) || row_is_cloud(w, who, "jira", &err) || err)
        return; /* still used (or unknown: keep it rather than strand a product) */
    store_connector row;
    if (store_connector_get(w->store, who->org_id, who->user_id, ATL_ID, &row) != STORE_OK)
        return;
    store_connector_free(&row);
    /* Atlassian documents no revocation endpoint for 3LO grants: the refresh
     * token is deleted here (and expires at Atlassian after 90 days unused);
     * the user can also remove the app at id.atlassian.com > Connected apps. */
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (atl_remove_row(w, who, ATL_ID, &scratch) == 0)
        log_info("atlassian: Cloud grant of user %s (org %s) removed: no product uses it",
                 who->user_id, who->org_id);
    else
        log_warn("atlassian: removing the unused Cloud grant of user %s failed (HTTP %d)",
                 who->user_id, scratch.status);
    buf_free(&scratch.body);
    atl_forget_tokens(who);
}

static void product_disconnected(worker_ctx *w, const auth_ctx *who)
{
    atl_grant_release_if_unused(w, who);
}

/* ---- table ------------------------------------------------------------------------------------------ */

static void confluence_register(void)
{
    confluence_register_routes();
}

static void jira_register(void)
{
    router_add(HTTP_GET, "/jira/permissions", ROUTE_AUTH_API, permissions_get);
    router_add(HTTP_PUT, "/jira/permissions", ROUTE_AUTH_API, permissions_put);
    jira_register_routes();
}

const connector connector_confluence = {
    .id = "confluence",
    .name = "Confluence",
    .register_routes = confluence_register,
    .status = confluence_status,
    .cloud = NULL,
    .disconnected = product_disconnected,
    .settings = NULL, /* one Atlassian app: connector_atlassian declares them */
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};

const connector connector_jira = {
    .id = "jira",
    .name = "Jira",
    .register_routes = jira_register,
    .status = jira_status,
    .cloud = NULL,
    .disconnected = product_disconnected,
    .settings = NULL,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
