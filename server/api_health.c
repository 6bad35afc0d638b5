/* api_health.c — liveness for load balancers and the tests. */
#include <cjson/cJSON.h>

#include "http.h"
#include "router.h"
#include "tunnel.h"

static void health(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    http_resp_json(resp, 200, o);
}

void api_health_register(void) { router_add(HTTP_GET, "/health", ROUTE_PUBLIC, health); }
