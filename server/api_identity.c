/* api_identity.c — GET /api/me: who the server takes the caller to be.
 *
 * Callers are API keys (their own user and org) or the trusted backend
 * naming a user and org in headers, provisioned on first use (auth.c).  This
 * route lets either side check what the server made of a request: the org
 * and membership rows, and who created them ("admin" or "backend"). */
#include <cjson/cJSON.h>

#include "api_util.h"
#include "router.h"

static void me(worker_ctx *w, http_request *req, http_response *resp)
{
    const auth_ctx *a = &req->auth;
    store_org org;
    int rc = store_org_get(w->store, a->org_id, &org);
    if (rc == STORE_NOT_FOUND) {
        /* auth.c provisions or checks the org before any handler runs. */
        http_resp_error(resp, 404, "ORG_NOT_FOUND", "organization not found");
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    store_member m;
    int mrc = STORE_NOT_FOUND;
    if (a->user_id[0] && (mrc = store_member_get(w->store, a->org_id, a->user_id, &m)) == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "user_id", a->user_id);
    cJSON_AddStringToObject(o, "org_id", a->org_id);
    cJSON_AddStringToObject(o, "auth", a->internal  ? "internal_secret"
                                       : a->session ? "console_session"
                                                    : "api_key");
    if (a->key_id[0])
        cJSON_AddStringToObject(o, "key_id", a->key_id);
    cJSON *jo = cJSON_AddObjectToObject(o, "org");
    cJSON_AddStringToObject(jo, "id", org.id);
    cJSON_AddStringToObject(jo, "name", org.name);
    cJSON_AddStringToObject(jo, "created_by", org.created_by);
    api_add_time(jo, "created_at", org.created_at);
    if (mrc == STORE_OK) {
        cJSON *jm = cJSON_AddObjectToObject(o, "membership");
        cJSON_AddStringToObject(jm, "created_by", m.created_by);
        api_add_time(jm, "created_at", m.created_at);
    } else {
        cJSON_AddNullToObject(o, "membership");
    }
    http_resp_json(resp, 200, o);
}

void api_identity_register(void) { router_add(HTTP_GET, "/api/me", ROUTE_AUTH_API, me); }
