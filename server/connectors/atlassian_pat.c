/* atlassian_pat.c — Atlassian Data Center (connector guide: Atlassian >
 * Option B): a product connected with its base URL and a Personal Access
 * Token, validated before it is stored.
 *
 *   POST /atlassian/connect   {product: "confluence"|"jira", base_url, pat, allow_http?}
 *                             or {products: [{product, base_url, pat, allow_http?}, …]}
 *                             (both products at once: every one is validated
 *                             before any is stored)
 *
 * Validation (Bearer PAT, as Atlassian's "Using Personal Access Tokens"
 * describes): Confluence GET {base}/rest/api/user/current, Jira GET
 * {base}/rest/api/2/myself.  A refusal is the guide's "Failed to validate
 * Confluence PAT" / "Failed to validate Jira PAT".
 *
 * The base URL is typed by a user: https:// unless allow_http is true (then
 * stored with the row, and the PAT travels in clear by the user's choice),
 * no user name, query or fragment, and never an address no Atlassian server
 * has — link-local (169.254.169.254 is the cloud metadata service), the
 * other cloud metadata addresses, unspecified, multicast (kit_addr.h) —
 * judged on the literal and on every address the name resolves to
 * (http_client's allow_address: kit_addr_allow); loopback only with
 * ATLASSIAN_DC_ALLOW_LOOPBACK (tests, an instance on this host).  Private
 * ranges are fine: that is where an on-premises instance lives. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_util.h"
#include "atlassian_internal.h"
#include "http_client.h"
#include "kit_addr.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secret.h"

#define MAX_PRODUCTS 2

/* ---- the base URL ------------------------------------------------------------------------ */

void *atl_dc_allow_loopback(const worker_ctx *w)
{
    static int yes = 1, no = 0;
    return config_bool(&w->cfg->raw, "ATLASSIAN_DC_ALLOW_LOOPBACK") ? &yes : &no;
}

/* The base URL as the connector accepts it, without trailing slashes, into
 * out.  0, or -1 with a 400 in resp. */
static int base_url_check(const worker_ctx *w, const char *name, const char *url, int allow_http,
                          char *out, size_t cap, http_response *resp)
{
    char why[200];
    http_client_url u;
    size_t n = url ? strlen(url) : 0;
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (!url || n == 0 || n > ATL_URL_MAX || n >= cap) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL",
                        "%s base_url is required: e.g. https://%s.yourcompany.com (at most %d "
                        "characters)", name, !strcmp(name, "Jira") ? "jira" : "confluence",
                        ATL_URL_MAX);
        return -1;
    }
    memcpy(out, url, n);
    out[n] = '\0';
    if (http_client_url_parse(out, 0, &u) < 0 || kit_base_url_check(out, 1, why, sizeof(why)) != AUR_OK) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL",
                        "%s base_url must be an http(s):// URL without user name, password, query "
                        "or fragment, e.g. https://%s.yourcompany.com", name,
                        !strcmp(name, "Jira") ? "jira" : "confluence");
        return -1;
    }
    kit_addr_kind kind = kit_addr_host(u.host);
    if (kind == KIT_ADDR_FORBIDDEN) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL",
                        "%s base_url names an address no %s server has (link-local, cloud "
                        "metadata, unspecified or multicast)", name, name);
        return -1;
    }
    if (kind == KIT_ADDR_LOOPBACK && !*(int *)atl_dc_allow_loopback(w)) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL",
                        "%s base_url is on loopback, which this server does not allow "
                        "(ATLASSIAN_DC_ALLOW_LOOPBACK)", name);
        return -1;
    }
    if (strcmp(u.scheme, "https") != 0 && !allow_http) {
        http_resp_error(resp, 400, "ATLASSIAN_HTTPS_REQUIRED",
                        "%s base_url must be https:// (the PAT would travel in clear); to use "
                        "plain http anyway, send \"allow_http\": true", name);
        return -1;
    }
    return 0;
}

/* ---- validating the PAT --------------------------------------------------------------------- */

static const kit_call_errors dc_errors = {
    .service = "Atlassian Data Center",
    .timeout = "ATLASSIAN_TIMEOUT",
    .unreachable = "ATLASSIAN_UNREACHABLE",
    .denied = "ATLASSIAN_ERROR",
    .failed = "ATLASSIAN_ERROR",
};

static int pat_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n < 8 || n > ATL_TOKEN_MAX)
        return 0;
    for (; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
            return 0;
    return 1;
}

/* One product to connect, as the body named it. */
typedef struct {
    atl_product p;
    const char *pat;
    int allow_http;
    char base[ATL_URL_MAX + 1];
    char account[256];
    cJSON *md;
} dc_item;

static void invalid_pat(atl_product p, long status, http_response *resp)
{
    http_resp_error(resp, 400, p == ATL_JIRA ? "JIRA_PAT_INVALID" : "CONFLUENCE_PAT_INVALID",
                    "Failed to validate %s PAT: Verify PAT is valid and not expired (%s answered "
                    "HTTP %ld)", atl_product_name(p), atl_product_name(p), status);
}

/* The identity the PAT acts as, into it->account and it->md.  0, or -1 with resp. */
static int validate(worker_ctx *w, dc_item *it, http_response *resp)
{
    const char *name = atl_product_name(it->p);
    char *url = kit_url(it->base, it->p == ATL_JIRA ? "/rest/api/2/myself" : "/rest/api/user/current");
    if (!url) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    long t = connector_timeout_ms(w, atl_product_connector(it->p));
    const char *headers[] = { "Accept: application/json", NULL };
    kit_call_req q = { .provider = name, .base_url = it->base, .url = url, .headers = headers,
                       .bearer = it->pat, .attempt_timeout_ms = t, .deadline_ms = t,
                       .max_attempts = 2, .max_response = 256 * 1024,
                       .allow_address = kit_addr_allow,
                       .allow_address_ud = atl_dc_allow_loopback(w), .allow_http = it->allow_http };
    kit_call_resp r;
    int rc = kit_call(&q, &r);
    free(url);
    char what[96];
    snprintf(what, sizeof(what), "Validating the %s PAT", name);
    if (rc != AUR_OK) {
        if (r.http.address_refused)
            http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL",
                            "%s base_url resolves to an address Aurora does not connect to "
                            "(link-local, unspecified, multicast, or loopback when not allowed)",
                            name);
        else if (rc == AUR_E_DENIED)
            invalid_pat(it->p, r.status, resp);
        else if (rc == AUR_NOT_FOUND)
            http_resp_error(resp, 400, "ATLASSIAN_NOT_FOUND",
                            "%s: no %s REST API at base_url (HTTP %ld): check the URL, including "
                            "any context path (e.g. https://%s.yourcompany.com)", what, name,
                            r.status, it->p == ATL_JIRA ? "jira" : "confluence");
        else if (rc == AUR_E_INVALID && r.status == 0)
            http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL", "%s", r.err);
        else if (rc == AUR_E_INTERNAL && r.status == 0)
            http_resp_error(resp, 500, "INTERNAL", "%s", r.err);
        else
            kit_call_error(&dc_errors, &r, what, t, NULL, resp);
        kit_call_resp_free(&r);
        return -1;
    }
    cJSON *j = kit_call_json(&r);
    kit_call_resp_free(&r);
    const char *display = api_json_str(j, "displayName");
    const char *user = api_json_str(j, it->p == ATL_JIRA ? "name" : "username");
    const char *type = api_json_str(j, "type");
    char err[80];
    /* Confluence answers an unauthenticated /user/current with the anonymous user. */
    if (!cJSON_IsObject(j) || (type && !strcmp(type, "anonymous")) ||
        ((!display || api_check_text(display, "displayName", 1, 200, err, sizeof(err)) < 0) &&
         (!user || api_check_text(user, "name", 1, 200, err, sizeof(err)) < 0))) {
        cJSON_Delete(j);
        invalid_pat(it->p, 200, resp);
        return -1;
    }
    if (user && api_check_text(user, "name", 1, 200, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(it->md, "user_name", user);
    if (display && api_check_text(display, "displayName", 1, 200, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(it->md, "display_name", display);
    snprintf(it->account, sizeof(it->account), "%s", display && api_json_str(it->md, "display_name")
                                                          ? display
                                                          : api_json_str(it->md, "user_name"));
    cJSON_Delete(j);
    return 0;
}

/* ---- the body --------------------------------------------------------------------------------- */

static int parse_item(worker_ctx *w, const cJSON *o, dc_item *it, http_response *resp)
{
    if (!cJSON_IsObject(o)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "each product must be an object {product, base_url, pat}");
        return -1;
    }
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(o, "product");
    if (!cJSON_IsString(pj) || atl_product_parse(pj->valuestring, &it->p) < 0) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_PRODUCT",
                        "product must be \"confluence\" or \"jira\"");
        return -1;
    }
    if (atl_product_disabled(w, it->p, resp))
        return -1;
    const char *name = atl_product_name(it->p);
    const cJSON *uj = cJSON_GetObjectItemCaseSensitive(o, "base_url");
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(o, "pat");
    const cJSON *hj = cJSON_GetObjectItemCaseSensitive(o, "allow_http");
    if (hj && !cJSON_IsBool(hj) && !cJSON_IsNull(hj)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "allow_http must be true or false");
        return -1;
    }
    it->allow_http = cJSON_IsTrue(hj);
    if (!cJSON_IsString(tj) || !pat_ok(tj->valuestring)) {
        http_resp_error(resp, 400, "ATLASSIAN_PAT_REQUIRED",
                        "pat must be the %s Personal Access Token (8-%d printable characters "
                        "without spaces; %s: profile > Personal Access Tokens > Create token)",
                        name, ATL_TOKEN_MAX, name);
        return -1;
    }
    it->pat = tj->valuestring;
    if (uj && !cJSON_IsString(uj)) {
        http_resp_error(resp, 400, "ATLASSIAN_INVALID_URL", "%s base_url must be a string", name);
        return -1;
    }
    return base_url_check(w, name, uj ? uj->valuestring : NULL, it->allow_http, it->base,
                          sizeof(it->base), resp);
}

/* The tier a reconnected Jira keeps (the user chose it before). */
static atl_jira_tier current_tier(worker_ctx *w, const auth_ctx *who)
{
    store_connector row;
    atl_jira_tier t = ATL_TIER_READ;
    if (store_connector_get(w->store, who->org_id, who->user_id, "jira", &row) == STORE_OK) {
        cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
        t = atl_tier_of(md);
        cJSON_Delete(md);
        store_connector_free(&row);
    }
    return t;
}

static void connect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    dc_item items[MAX_PRODUCTS];
    memset(items, 0, sizeof(items));
    size_t n = 0;
    cJSON *out = NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "products");
    if (!cJSON_IsObject(body)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "the body must be a JSON object");
        goto done;
    }
    if (list) {
        int k = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
        if (k < 1 || k > MAX_PRODUCTS) {
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "products must be a list of 1-2 {product, base_url, pat, allow_http?}");
            goto done;
        }
        for (int i = 0; i < k; i++) {
            items[n].md = cJSON_CreateObject();
            if (parse_item(w, cJSON_GetArrayItem(list, i), &items[n], resp) < 0) {
                n++;
                goto done;
            }
            n++;
        }
        if (n == 2 && items[0].p == items[1].p) {
            http_resp_error(resp, 400, "BAD_REQUEST", "each product may be named once");
            goto done;
        }
    } else {
        items[0].md = cJSON_CreateObject();
        n = 1;
        if (parse_item(w, body, &items[0], resp) < 0)
            goto done;
    }
    /* validate first, store after: a refused PAT leaves nothing behind */
    for (size_t i = 0; i < n; i++)
        if (!items[i].md || validate(w, &items[i], resp) < 0)
            goto done;
    out = cJSON_CreateObject();
    cJSON *arr = out ? cJSON_AddArrayToObject(out, "products") : NULL;
    if (!arr) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        dc_item *it = &items[i];
        cJSON_AddStringToObject(it->md, "mode", "data_center");
        cJSON_AddStringToObject(it->md, "base_url", it->base);
        cJSON_AddStringToObject(it->md, "site_url", it->base);
        cJSON_AddBoolToObject(it->md, "allow_http", it->allow_http);
        if (it->p == ATL_JIRA)
            cJSON_AddStringToObject(it->md, "tier", atl_tier_name(current_tier(w, &req->auth)));
        kit_field f = { ATL_FIELD_PAT, it->pat };
        if (kit_connect_store(w, req->auth.org_id, req->auth.user_id, atl_product_id(it->p),
                              it->account, &f, 1, it->md, resp) < 0)
            goto done;
        log_info("atlassian: user %s (org %s) connected %s Data Center (%s)", req->auth.user_id,
                 req->auth.org_id, atl_product_name(it->p), it->base);
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "product", atl_product_id(it->p));
            cJSON_AddStringToObject(o, "mode", "data_center");
            cJSON_AddStringToObject(o, "site_url", it->base);
            cJSON_AddStringToObject(o, "account", it->account);
            cJSON_AddBoolToObject(o, "allow_http", it->allow_http);
            if (it->p == ATL_JIRA)
                cJSON_AddStringToObject(o, "tier", api_json_str(it->md, "tier"));
            cJSON_AddItemToArray(arr, o);
        }
    }
    /* A product that moved from Cloud to Data Center may leave the grant unused. */
    atl_grant_release_if_unused(w, &req->auth);
    cJSON_AddBoolToObject(out, "connected", 1);
    cJSON_AddStringToObject(out, "provider", ATL_ID);
    cJSON_AddStringToObject(out, "mode", "data_center");
    http_resp_json(resp, 200, out);
    out = NULL;
done:
    for (size_t i = 0; i < MAX_PRODUCTS; i++)
        cJSON_Delete(items[i].md);
    cJSON_Delete(out);
    secret_json_free(body); /* it held the PATs */
}

void atl_pat_register(void)
{
    router_add_outbound(HTTP_POST, "/atlassian/connect", ROUTE_AUTH_API, connect_route);
}
