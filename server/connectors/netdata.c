/* netdata.c — Netdata Cloud with an API token (Authorization: Bearer).
 *
 *   POST /netdata/connect   {api_token}: checked with GET <NETDATA_API_BASE_URL>/api/v2/spaces
 *                           (the spaces the token's user belongs to), then
 *                           stored in the secrets backend
 *                           (aurora/orgs/<org>/users/<uid>/netdata/api-token)
 *   GET  /netdata/spaces    the spaces, live
 *   GET  /netdata/spaces/{space_id}/rooms   GET /api/v2/spaces/{id}/rooms
 *   GET  /netdata/spaces/{space_id}/rooms/{room_id}/nodes
 *                           POST /api/v3/spaces/{s}/rooms/{r}/nodes (the room's nodes)
 *   GET|POST /netdata/webhook/{user_id}   Netdata's alert notifications (netdata_webhook.h)
 *   GET  /netdata/status    the connection (also in GET /api/connectors/status)
 * Disconnect: DELETE /api/connectors/netdata (row and token).
 *
 * Netdata Cloud's API (learn.netdata.cloud, "Netdata APIs" and "API
 * Tokens"): tokens are Bearer tokens created under the user's settings (the
 * guide: Space settings > API tokens) and never expire, so one that Netdata
 * refuses (401/403) was revoked or lacks the scope ("scope:all").  The base
 * URL is a setting (NETDATA_API_BASE_URL) for tests and on-premises Netdata
 * Cloud deployments; credentials go only over https (or to loopback). */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "connector.h"
#include "http_client.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "log.h"
#include "netdata_webhook.h"
#include "router.h"
#include "secrets.h"

#define NETDATA_ID "netdata"
#define NETDATA_TOKEN_MAX 4096
#define NETDATA_MAX_ITEMS 500 /* spaces or rooms kept from one answer */
#define NETDATA_ID_MAX 64
#define NETDATA_WEBHOOK_SECRET_MIN 16
#define NETDATA_WEBHOOK_SECRET_MAX 256

#define MSG_AUTH \
    "Authentication failed: the Netdata Cloud API token is invalid, revoked or lacks scope:all " \
    "(create one under Space settings > API tokens)"
#define MSG_NOT_CONNECTED "Netdata is not connected for this user: POST /netdata/connect first"

extern const connector connector_netdata;

static const config_def netdata_settings[] = {
    { "NETDATA_API_BASE_URL", "netdata.api_base_url", CFG_STRING, "https://app.netdata.cloud", "Netdata connector: Netdata Cloud base URL (<base>/api/v2/spaces); https unless loopback", 0 },
    { "NETDATA_WEBHOOK_RATE_LIMIT_MINUTE", "netdata.webhook_rate_limit_minute", CFG_INT, "600", "Netdata connector: most webhook notifications accepted per user and minute (more: 429)", 0, 1, 1000000 },
    { NULL },
};

static const kit_call_errors netdata_errors = {
    .service = "Netdata Cloud",
    .timeout = "NETDATA_TIMEOUT",
    .unreachable = "NETDATA_UNREACHABLE",
    .denied = "NETDATA_AUTH_FAILED",
    .failed = "NETDATA_ERROR",
};

/* The configured base; NULL with a 503 when the setting is unusable. */
static const char *api_base(const worker_ctx *w, http_response *resp)
{
    const char *b = server_setting(w->cfg, "NETDATA_API_BASE_URL");
    char why[200];
    if (!b || kit_base_url_check(b, 0, why, sizeof(why)) != AUR_OK) {
        http_resp_error(resp, 503, "NETDATA_NOT_CONFIGURED", "NETDATA_API_BASE_URL %s",
                        b ? why : "is not set");
        return NULL;
    }
    return b;
}

/* 1 if s is a Netdata id (a UUID, or the like): [A-Za-z0-9_-], 1..64. */
static int id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NETDATA_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* GET <base><path> with the token; the JSON answer (any type) or NULL with
 * resp filled.  `auth_status`: 400 for a token being connected, 502 for a
 * stored one. */
static cJSON *netdata_call(worker_ctx *w, const char *base, const char *path, const char *token,
                           const char *json_body, const char *what, int auth_status,
                           http_response *resp)
{
    char *url = kit_url(base, path);
    if (!url) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return NULL;
    }
    long timeout = connector_timeout_ms(w, &connector_netdata);
    const char *headers[] = { "Accept: application/json",
                              json_body ? "Content-Type: application/json" : NULL, NULL };
    /* A POST here is a read (the nodes query): safe to send again. */
    kit_call_req q = { .provider = "Netdata Cloud", .base_url = base, .url = url,
                       .headers = headers, .bearer = token, .body = json_body,
                       .body_len = json_body ? strlen(json_body) : 0, .retry_safe = 1,
                       .attempt_timeout_ms = timeout, .deadline_ms = timeout,
                       .max_response = 2 * 1024 * 1024 };
    kit_call_resp rp;
    int rc = kit_call(&q, &rp);
    free(url);
    cJSON *j = NULL;
    if (rc == AUR_E_DENIED)
        http_resp_error(resp, auth_status, "NETDATA_AUTH_FAILED", MSG_AUTH " (HTTP %ld)", rp.status);
    else if (rc != AUR_OK)
        kit_call_error(&netdata_errors, &rp, what, timeout, "", resp);
    else if (!(j = kit_call_json(&rp)))
        http_resp_error(resp, 502, "NETDATA_ERROR", "%s: Netdata Cloud answered something that is not JSON", what);
    kit_call_resp_free(&rp);
    return j;
}

static cJSON *netdata_get(worker_ctx *w, const char *base, const char *path, const char *token,
                          const char *what, int auth_status, http_response *resp)
{
    return netdata_call(w, base, path, token, NULL, what, auth_status, resp);
}

/* [{id, name, slug?, description?}] from an answer that is such a list
 * (spaces and rooms look alike); NULL with a 502 when it is not a list. */
static cJSON *id_name_list(const cJSON *answer, const char *what, http_response *resp)
{
    if (!cJSON_IsArray(answer)) {
        http_resp_error(resp, 502, "NETDATA_ERROR", "%s: Netdata Cloud's answer is not a list", what);
        return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, answer)
    {
        const char *id = api_json_str(it, "id"), *name = api_json_str(it, "name");
        char err[64];
        if (!id_ok(id) || !name || api_check_text(name, "name", 0, 256, err, sizeof(err)) < 0)
            continue;
        if (n++ >= NETDATA_MAX_ITEMS)
            break;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "name", name);
        const char *slug = api_json_str(it, "slug"), *desc = api_json_str(it, "description");
        if (slug && api_check_text(slug, "slug", 1, 256, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(o, "slug", slug);
        if (desc && api_check_text(desc, "description", 0, 1024, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(o, "description", desc);
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

static int token_ok(const char *t, size_t min, size_t max)
{
    size_t n = t ? strlen(t) : 0;
    if (n < min || n > max)
        return 0;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

/* The webhook URL's path for `who`: it names the organization too, so it
 * stays unambiguous when the user later joins another one (kit_tenant.h). */
static void webhook_path(char *out, size_t cap, const auth_ctx *who)
{
    snprintf(out, cap, "/netdata/webhook/%s?org_id=%s", who->user_id, who->org_id);
}

/* ---- POST /netdata/connect ------------------------------------------------------------------ */

static void netdata_connect(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *token = api_json_str(body, "api_token");
    if (!token)
        token = api_json_str(body, "token");
    /* Optional: Netdata's webhook challenge secret and Bearer token (netdata_webhook.h) */
    const char *whsec = api_json_str(body, "webhook_secret");
    cJSON *answer = NULL, *spaces = NULL, *md = NULL;
    const char *base = NULL;
    if (!token) {
        http_resp_error(resp, 400, "BAD_REQUEST", "api_token is required");
        goto out;
    }
    if (!token_ok(token, 1, NETDATA_TOKEN_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "api_token must be 1-%d printable characters without spaces",
                        NETDATA_TOKEN_MAX);
        goto out;
    }
    if (cJSON_GetObjectItemCaseSensitive(body, "webhook_secret") &&
        !token_ok(whsec, NETDATA_WEBHOOK_SECRET_MIN, NETDATA_WEBHOOK_SECRET_MAX)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "webhook_secret must be %d-%d printable characters without spaces",
                        NETDATA_WEBHOOK_SECRET_MIN, NETDATA_WEBHOOK_SECRET_MAX);
        goto out;
    }
    if (!(base = api_base(w, resp)) ||
        !(answer = netdata_get(w, base, "/api/v2/spaces", token, "Netdata connect", 400, resp)) ||
        !(spaces = id_name_list(answer, "Netdata connect", resp)))
        goto out;
    md = cJSON_CreateObject();
    int n = cJSON_GetArraySize(spaces);
    const char *first = n ? api_json_str(cJSON_GetArrayItem(spaces, 0), "name") : NULL;
    char account[300];
    snprintf(account, sizeof(account), "%s", first ? first : "Netdata Cloud");
    cJSON_AddNumberToObject(md, "space_count", n);
    cJSON_AddItemToObject(md, "spaces", spaces);
    spaces = NULL;
    cJSON_AddBoolToObject(md, "webhook_secret_configured", whsec != NULL);
    kit_field f[2] = { { "api-token", token }, { "webhook-secret", whsec } };
    if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, NETDATA_ID, account, f,
                          whsec ? 2 : 1, md, resp) < 0)
        goto out;
    char path[200];
    webhook_path(path, sizeof(path), &req->auth);
    cJSON_AddStringToObject(md, "webhook_path", path);
    const char *host = http_header_get(req, "host");
    if (http_host_ok(host)) {
        char url[480];
        snprintf(url, sizeof(url), "https://%s%s", host, path);
        cJSON_AddStringToObject(md, "webhook_url", url);
    }
    log_info("netdata: user %s of %s connected Netdata Cloud (%d spaces)", req->auth.user_id,
             req->auth.org_id, n);
    kit_connected_reply(resp, NETDATA_ID, md, NULL);
out:
    cJSON_Delete(answer);
    cJSON_Delete(spaces);
    cJSON_Delete(md);
    if (token) /* the request body held the token */
        OPENSSL_cleanse((void *)token, strlen(token));
    if (whsec)
        OPENSSL_cleanse((void *)whsec, strlen(whsec));
    cJSON_Delete(body);
}

/* ---- read API ------------------------------------------------------------------------------ */

/* The caller's token (secrets_free it) and the base; 0, or -1 with resp filled. */
static int token_load(worker_ctx *w, const auth_ctx *who, unsigned char **tok, size_t *len,
                      const char **base, http_response *resp)
{
    *tok = NULL;
    if (connector_require_user(who, resp) < 0 || connector_secrets_ready(w, resp) < 0 ||
        !(*base = api_base(w, resp)))
        return -1;
    store_connector row;
    cJSON *md;
    if (kit_row_load(w, who, NETDATA_ID, &row, &md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    int rc = kit_secret_get(w, row.secret_ref, tok, len, 409, "NETDATA_NOT_CONNECTED",
                            "the Netdata token is no longer stored; connect Netdata again", resp);
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

static void list_reply(worker_ctx *w, http_request *req, const char *path, const char *key,
                       const char *what, http_response *resp)
{
    unsigned char *tok;
    size_t len = 0;
    const char *base;
    if (token_load(w, &req->auth, &tok, &len, &base, resp) < 0)
        return;
    cJSON *answer = netdata_get(w, base, path, (const char *)tok, what, 502, resp);
    secrets_free(tok, len);
    cJSON *list = answer ? id_name_list(answer, what, resp) : NULL;
    cJSON_Delete(answer);
    if (!list)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(list));
    cJSON_AddItemToObject(o, key, list);
    http_resp_json(resp, 200, o);
}

static void netdata_spaces(worker_ctx *w, http_request *req, http_response *resp)
{
    list_reply(w, req, "/api/v2/spaces", "spaces", "Netdata spaces", resp);
}

static void netdata_rooms(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *space = http_param(req, "space_id");
    if (!id_ok(space)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "space_id must be a Netdata space id");
        return;
    }
    char path[128];
    snprintf(path, sizeof(path), "/api/v2/spaces/%s/rooms", space);
    list_reply(w, req, path, "rooms", "Netdata rooms", resp);
}

/* {"nodes": [{"nd": id, "nm": name, "state": …}]} (the room nodes query) as
 * [{id, name, state?}]; NULL with a 502 when it is not that shape. */
static cJSON *node_list(const cJSON *answer, http_response *resp)
{
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(answer, "nodes");
    if (!cJSON_IsArray(nodes)) {
        http_resp_error(resp, 502, "NETDATA_ERROR", "Netdata nodes: the answer has no node list");
        return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, nodes)
    {
        const char *id = api_json_str(it, "nd"), *name = api_json_str(it, "nm");
        const char *state = api_json_str(it, "state");
        char err[64];
        if (!id_ok(id) || !name || api_check_text(name, "name", 0, 256, err, sizeof(err)) < 0)
            continue;
        if (n++ >= NETDATA_MAX_ITEMS)
            break;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "name", name);
        if (state && api_check_text(state, "state", 1, 32, err, sizeof(err)) == 0)
            cJSON_AddStringToObject(o, "state", state);
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

/* GET /netdata/spaces/{space_id}/rooms/{room_id}/nodes: the nodes of a room
 * (POST /api/v3/spaces/{s}/rooms/{r}/nodes {"scope":{"nodes":[]}}, the query
 * Netdata's Terraform provider makes). */
static void netdata_nodes(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *space = http_param(req, "space_id"), *room = http_param(req, "room_id");
    if (!id_ok(space) || !id_ok(room)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "space_id and room_id must be Netdata ids");
        return;
    }
    unsigned char *tok;
    size_t len = 0;
    const char *base;
    if (token_load(w, &req->auth, &tok, &len, &base, resp) < 0)
        return;
    char path[200];
    snprintf(path, sizeof(path), "/api/v3/spaces/%s/rooms/%s/nodes", space, room);
    cJSON *answer = netdata_call(w, base, path, (const char *)tok, "{\"scope\":{\"nodes\":[]}}",
                                 "Netdata nodes", 502, resp);
    secrets_free(tok, len);
    cJSON *list = answer ? node_list(answer, resp) : NULL;
    cJSON_Delete(answer);
    if (!list)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(list));
    cJSON_AddItemToObject(o, "nodes", list);
    http_resp_json(resp, 200, o);
}

/* ---- status -------------------------------------------------------------------------------- */

static void netdata_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    store_connector c;
    cJSON *md;
    if (!kit_status(w, who, NETDATA_ID, NULL, out, &c, &md))
        return;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(md, "space_count");
    if (cJSON_IsNumber(n))
        cJSON_AddNumberToObject(out, "space_count", n->valuedouble);
    /* The URL to paste in Netdata (Space settings > Alerts & Notifications >
     * Webhook), under this server's public address. */
    char path[200];
    webhook_path(path, sizeof(path), who);
    cJSON_AddStringToObject(out, "webhook_path", path);
    cJSON_AddBoolToObject(out, "webhook_secret_configured",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(md, "webhook_secret_configured")));
    cJSON_Delete(md);
    store_connector_free(&c);
}

static void netdata_status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    netdata_status(w, &req->auth, o);
    if (!cJSON_GetObjectItemCaseSensitive(o, "connected"))
        cJSON_AddBoolToObject(o, "connected", 0);
    http_resp_json(resp, 200, o);
}

static void netdata_register(void)
{
    router_add_outbound(HTTP_POST, "/netdata/connect", ROUTE_AUTH_API, netdata_connect);
    router_add_outbound(HTTP_GET, "/netdata/spaces", ROUTE_AUTH_API, netdata_spaces);
    router_add_outbound(HTTP_GET, "/netdata/spaces/{space_id}/rooms", ROUTE_AUTH_API,
                        netdata_rooms);
    router_add_outbound(HTTP_GET, "/netdata/spaces/{space_id}/rooms/{room_id}/nodes",
                        ROUTE_AUTH_API, netdata_nodes);
    router_add(HTTP_GET, "/netdata/status", ROUTE_AUTH_API, netdata_status_route);
    netdata_webhook_register();
}

const connector connector_netdata = {
    .id = NETDATA_ID,
    .name = "Netdata",
    .register_routes = netdata_register,
    .status = netdata_status,
    .cloud = NULL,
    .settings = netdata_settings,
    .timeout_ms = CONNECTOR_TIMEOUT_MS,
};
