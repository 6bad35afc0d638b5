/* api_util.c — helpers shared by the API handlers. */
#include "api_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "utf8.h"

const char *api_json_str(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

int api_check_text(const char *s, const char *field, size_t min, size_t max, char *err,
                   size_t errlen)
{
    if (!s) {
        snprintf(err, errlen, "%s is required", field);
        return -1;
    }
    size_t n = strlen(s);
    if (n < min || n > max) {
        snprintf(err, errlen, "%s must be %zu to %zu characters", field, min, max);
        return -1;
    }
    if (!utf8_valid(s, n)) {
        snprintf(err, errlen, "%s must be valid UTF-8", field);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "%s must not contain control characters", field);
            return -1;
        }
    return 0;
}

void api_store_error(worker_ctx *w, http_response *resp)
{
    log_error("store error: %s", store_errmsg(w->store));
    http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
}

void api_add_time(cJSON *o, const char *key, int64_t t)
{
    if (t)
        cJSON_AddNumberToObject(o, key, (double)t);
    else
        cJSON_AddNullToObject(o, key);
}

int api_cluster_known(worker_ctx *w, const char *org_id, const char *cluster_id, char *name,
                      size_t namecap)
{
    if (!cluster_id || strncmp(cluster_id, "cluster-", 8) || strlen(cluster_id) >= STORE_CLUSTER_ID_LEN)
        return 0;
    store_connection c;
    int rc = store_connection_get(w->store, org_id, cluster_id, &c);
    if (rc == STORE_OK) {
        if (name)
            snprintf(name, namecap, "%s", c.cluster_name);
        return 1;
    }
    if (rc == STORE_ERR)
        return -1;
    store_agent_token *list = NULL;
    size_t n = 0;
    if (store_agent_token_list(w->store, org_id, &list, &n) != STORE_OK)
        return -1;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        if (!strcmp(list[i].cluster_id, cluster_id)) {
            found = 1;
            if (name)
                snprintf(name, namecap, "%s", list[i].cluster_name);
        }
    free(list);
    return found;
}
