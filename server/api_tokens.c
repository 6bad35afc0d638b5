/* api_tokens.c — agent tokens: create (shown once), list (preview only),
 * revoke (closes the live tunnel at once). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "log.h"
#include "registry.h"
#include "router.h"
#include "secret.h"
#include "token.h"
#include "tunnel.h"

#define UNINSTALL_HINT "helm uninstall aurora-kubectl-agent --namespace aurora"
/* The existing service's defaults and messages, which its web frontend shows. */
#define DEFAULT_CLUSTER_NAME "Unnamed Cluster"
#define MSG_TOKEN_CREATED "Token created successfully. Save this token - it will only be shown once!"
#define MSG_TOKEN_REVOKED "Token revoked successfully"
/* Its frontend shows this to copy; the agent may live in any namespace. */
#define DELETE_COMMAND "helm uninstall aurora-kubectl-agent -n <your-namespace>"
/* The longest ?token= worth looking up (an agent token is AGENT_TOKEN_LEN). */
#define MAX_TOKEN_FILTER 256

static const char *token_status(const store_agent_token *t, int64_t now)
{
    if (t->revoked_at)
        return "revoked";
    if (t->expires_at && t->expires_at <= now)
        return "expired";
    return "active";
}

/* Per user, over every replica (counted in the store), in fixed windows
 * like the existing service's limiter: 5 per minute and 20 per hour by
 * default.  A request takes a slot of each window or none.  1 with a 429
 * (Retry-After: when the full window ends) or a 503 in resp when refused. */
typedef struct {
    int64_t window;
    const char *per;
} rate_window;
static const rate_window windows[] = { { 60, "minute" }, { 3600, "hour" } };
enum { N = sizeof(windows) / sizeof(windows[0]) };

/* One key per window length: a minute and an hour can start at the same second. */
static void rate_key(char *out, size_t cap, size_t i, const char *user_id)
{
    snprintf(out, cap, "agent_tokens/%s:%s", windows[i].per, user_id);
}

/* A request that took its slots but made no token (a failure after the
 * check) gives them back: it must not count against the user. */
static void token_rate_refund(worker_ctx *w, const char *user_id, int64_t now)
{
    for (size_t i = 0; i < N; i++) {
        char key[STORE_ID_LEN + 32];
        rate_key(key, sizeof(key), i, user_id);
        if (store_rate_give_back(w->store, key, now - now % windows[i].window) != STORE_OK)
            log_error("token rate limit: giving a slot back failed: %s", store_errmsg(w->store));
    }
}

static int token_rate_limited(worker_ctx *w, const char *user_id, int64_t now,
                              http_response *resp)
{
    const int limit[N] = { w->cfg->token_rate_limit_minute, w->cfg->token_rate_limit };
    char key[N][STORE_ID_LEN + 32];
    for (size_t k = 0; k < N; k++)
        rate_key(key[k], sizeof(key[k]), k, user_id);
    int64_t taken[N];
    size_t ntaken = 0, i;
    int refused = 0, failed = 0;
    for (i = 0; i < N && !refused && !failed; i++) {
        int64_t start = now - now % windows[i].window;
        int allowed = 0;
        if (store_rate_take(w->store, key[i], start, limit[i], start - windows[i].window,
                            &allowed) != STORE_OK)
            failed = 1;
        else if (allowed)
            taken[ntaken++] = start;
        else
            refused = 1;
    }
    if (!refused && !failed)
        return 0;
    /* The slots already taken for this request go back: a refused request
     * must not count against the user. */
    for (size_t k = 0; k < ntaken; k++)
        if (store_rate_give_back(w->store, key[k], taken[k]) != STORE_OK)
            failed = 1;
    if (failed) {
        api_store_error(w, resp);
        return 1;
    }
    size_t r = i - 1; /* the window that refused */
    char retry[24];
    snprintf(retry, sizeof(retry), "%lld",
             (long long)(now - now % windows[r].window + windows[r].window - now));
    http_resp_add_header(resp, "retry-after", retry);
    http_resp_error(resp, 429, "RATE_LIMITED",
                    "too many agent tokens created (limit %d per %s); try again in %s s",
                    limit[r], windows[r].per, retry);
    return 1;
}

/* The tunnel URL and a ready install line for the agent's chart
 * (chart/agent): `helm upgrade --install` serves a first install and a
 * rotation alike.  Without a usable public URL (no AURORA_PUBLIC_URL and a
 * Host header that is not a plain host) both are null. */
static void add_install_hints(worker_ctx *w, const http_request *req, const char *tok, cJSON *o)
{
    char base[512], ws[600], cmd[1800];
    if (api_public_base(w, req, base, sizeof(base)) < 0) {
        cJSON_AddNullToObject(o, "ws_url");
        cJSON_AddNullToObject(o, "helm_command");
        return;
    }
    int https = !strncmp(base, "https://", 8);
    snprintf(ws, sizeof(ws), "%s://%s/kubectl-agent", https ? "wss" : "ws",
             base + (https ? 8 : 7));
    cJSON_AddStringToObject(o, "ws_url", ws);
    snprintf(cmd, sizeof(cmd),
             "helm upgrade --install aurora-kubectl-agent ./chart/agent --namespace aurora "
             "--create-namespace --set-string aurora.backendUrl=%s --set-string "
             "aurora.wsEndpoint=%s --set-string aurora.agentToken=%s",
             base, ws, tok);
    cJSON_AddStringToObject(o, "helm_command", cmd);
    secret_wipe(cmd, sizeof(cmd)); /* it holds the token */
}

static void create_token(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!req->auth.user_id[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST", "a user is required to create tokens");
        return;
    }
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    store_agent_token t;
    memset(&t, 0, sizeof(t));
    const cJSON *jname = cJSON_GetObjectItemCaseSensitive(body, "cluster_name");
    const char *name = api_json_str(body, "cluster_name");
    const char *notes = api_json_str(body, "notes");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(body, "expires_days");
    char err[160];
    const cJSON *jnotes = cJSON_GetObjectItemCaseSensitive(body, "notes");
    const cJSON *jcluster = cJSON_GetObjectItemCaseSensitive(body, "cluster_id");
    if ((jname && !cJSON_IsNull(jname) && !cJSON_IsString(jname)) ||
        (jnotes && !cJSON_IsNull(jnotes) && !cJSON_IsString(jnotes)) ||
        (jcluster && !cJSON_IsNull(jcluster) && !cJSON_IsString(jcluster))) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be a string",
                        jname && !cJSON_IsNull(jname) && !cJSON_IsString(jname) ? "cluster_name"
                        : jnotes && !cJSON_IsNull(jnotes) && !cJSON_IsString(jnotes)
                            ? "notes"
                            : "cluster_id");
        goto out;
    }
    /* Rotation: another token for a cluster the org already has, so that
     * the cluster keeps its id, connection row, audit history and policy;
     * the old token stays valid until it is revoked on its own. */
    const char *rotate = cJSON_IsString(jcluster) ? jcluster->valuestring : NULL;
    store_agent_token prev;
    if (rotate) {
        if (api_check_chars(rotate, "cluster_id", 1, STORE_CLUSTER_ID_LEN - 1, err, sizeof(err)) <
            0) {
            http_resp_error(resp, 400, "BAD_REQUEST", "%s", err);
            goto out;
        }
        int rc = store_agent_token_latest(w->store, req->auth.org_id, rotate, &prev);
        if (rc == STORE_NOT_FOUND) {
            /* Another org's cluster reads exactly like one that does not exist. */
            http_resp_error(resp, 404, "CLUSTER_NOT_FOUND", "no cluster %s in this organization",
                            rotate);
            goto out;
        }
        if (rc != STORE_OK) {
            api_store_error(w, resp);
            goto out;
        }
        if (!name || !name[strspn(name, " \t\r\n")])
            name = prev.cluster_name;
    }
    /* As the existing service: no name (or only blanks) is "Unnamed Cluster". */
    if (!name || !name[strspn(name, " \t\r\n")])
        name = DEFAULT_CLUSTER_NAME;
    if (api_check_chars(name, "cluster_name", 1, 100, err, sizeof(err)) < 0 ||
        (notes && api_check_chars(notes, "notes", 0, 500, err, sizeof(err)) < 0)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", err);
        goto out;
    }
    if (exp && !cJSON_IsNull(exp) &&
        (!cJSON_IsNumber(exp) || exp->valuedouble < 1 || exp->valuedouble > 3650 ||
         exp->valuedouble != (double)(int)exp->valuedouble)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "expires_days must be a whole number from 1 to 3650");
        goto out;
    }
    int64_t now = (int64_t)time(NULL);
    if (token_rate_limited(w, req->auth.user_id, now, resp))
        goto out;
    char tok[AGENT_TOKEN_LEN + 1], hash[65];
    if (token_new_agent(tok) < 0) {
        token_rate_refund(w, req->auth.user_id, now);
        http_resp_error(resp, 500, "INTERNAL", "random number generator failed");
        goto out;
    }
    token_hash(tok, hash);
    snprintf(t.org_id, sizeof(t.org_id), "%s", req->auth.org_id);
    snprintf(t.created_by, sizeof(t.created_by), "%s", req->auth.user_id);
    if (rotate)
        snprintf(t.cluster_id, sizeof(t.cluster_id), "%s", rotate);
    else
        token_cluster_id(tok, t.cluster_id);
    snprintf(t.cluster_name, sizeof(t.cluster_name), "%s", name);
    snprintf(t.notes, sizeof(t.notes), "%s", notes ? notes : "");
    token_preview(tok, t.preview);
    t.expires_at = (exp && cJSON_IsNumber(exp)) ? now + (int64_t)exp->valuedouble * 86400 : 0;
    if (store_agent_token_create(w->store, &t, hash) != STORE_OK) {
        secret_wipe(tok, sizeof(tok));
        api_store_error(w, resp);
        token_rate_refund(w, req->auth.user_id, now);
        goto out;
    }
    log_field lf[] = { LOG_STR("token_id", t.id), LOG_STR("cluster", t.cluster_id),
                       LOG_STR("org", t.org_id), LOG_STR("user", t.created_by),
                       LOG_STR("rotation", rotate ? "true" : "false") };
    log_fields(LOG_INFO, "agent token created", lf, (int)(sizeof(lf) / sizeof(lf[0])));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "success", 1);
    cJSON_AddStringToObject(o, "token", tok);
    cJSON_AddStringToObject(o, "token_id", t.id);
    cJSON_AddStringToObject(o, "cluster_id", t.cluster_id);
    cJSON_AddStringToObject(o, "cluster_name", t.cluster_name);
    cJSON_AddStringToObject(o, "preview", t.preview);
    cJSON_AddStringToObject(o, "token_preview", t.preview);
    api_add_time(o, "created_at", t.created_at);
    api_add_time(o, "expires_at", t.expires_at);
    cJSON_AddStringToObject(o, "message", MSG_TOKEN_CREATED);
    cJSON_AddStringToObject(o, "note", "This token is shown once; store it in the agent's Secret.");
    cJSON_AddBoolToObject(o, "rotated", rotate != NULL);
    add_install_hints(w, req, tok, o);
    memset(tok, 0, sizeof(tok));
    http_resp_json(resp, 201, o);
out:
    cJSON_Delete(body);
}

static void list_tokens(worker_ctx *w, http_request *req, http_response *resp)
{
    store_agent_token *list = NULL;
    size_t n = 0;
    if (store_agent_token_list(w->store, req->auth.org_id, &list, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
    for (size_t i = 0; i < n; i++) {
        const store_agent_token *t = &list[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", t->id);
        cJSON_AddStringToObject(e, "cluster_id", t->cluster_id);
        cJSON_AddStringToObject(e, "cluster_name", t->cluster_name);
        cJSON_AddStringToObject(e, "notes", t->notes);
        cJSON_AddStringToObject(e, "preview", t->preview);
        cJSON_AddStringToObject(e, "token_preview", t->preview);
        cJSON_AddStringToObject(e, "created_by", t->created_by);
        api_add_time(e, "created_at", t->created_at);
        api_add_time(e, "last_connected_at", t->last_connected_at);
        api_add_time(e, "expires_at", t->expires_at);
        api_add_time(e, "revoked_at", t->revoked_at);
        cJSON_AddStringToObject(e, "status", token_status(t, now));
        cJSON_AddItemToArray(arr, e);
    }
    free(list);
    http_resp_json(resp, 200, o);
}

/* Runs on the loop after the revocation is committed: close live tunnels. */
typedef struct {
    tunnel_hub *tunnels;
    char org_id[STORE_ID_LEN], cluster_id[STORE_CLUSTER_ID_LEN], token_id[STORE_ID_LEN];
    char cluster_name[STORE_CLUSTER_NAME_LEN];
    int whole_cluster;
} close_arg;

static void close_on_loop(http_response *resp, void *arg)
{
    close_arg *c = arg;
    tunnel_note_revocation(c->tunnels);
    int n = tunnel_close_sessions(c->tunnels, c->org_id, c->cluster_id,
                                  c->whole_cluster ? NULL : c->token_id, "Token revoked");
    /* The other replicas close the sessions they hold, at once. */
    registry_publish_close(c->org_id, c->cluster_id, c->whole_cluster ? NULL : c->token_id,
                           "Token revoked");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, c->whole_cluster ? "deleted" : "revoked", 1);
    if (!c->whole_cluster)
        cJSON_AddStringToObject(o, "token_id", c->token_id);
    cJSON_AddStringToObject(o, "cluster_id", c->cluster_id);
    cJSON_AddStringToObject(o, "cluster_name", c->cluster_name);
    cJSON_AddNumberToObject(o, "disconnected", n);
    cJSON_AddStringToObject(o, "uninstall_hint", UNINSTALL_HINT);
    cJSON_AddStringToObject(o, "delete_command", DELETE_COMMAND);
    cJSON_AddStringToObject(o, "message", MSG_TOKEN_REVOKED);
    http_resp_json(resp, 200, o);
    free(c);
}

static int schedule_close(worker_ctx *w, http_response *resp, const char *org,
                          const char *cluster, const char *cluster_name, const char *token_id)
{
    close_arg *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->tunnels = w->tunnels;
    snprintf(c->org_id, sizeof(c->org_id), "%s", org);
    snprintf(c->cluster_id, sizeof(c->cluster_id), "%s", cluster);
    snprintf(c->cluster_name, sizeof(c->cluster_name), "%s", cluster_name);
    if (token_id)
        snprintf(c->token_id, sizeof(c->token_id), "%s", token_id);
    c->whole_cluster = token_id == NULL;
    resp->on_loop = close_on_loop;
    resp->on_loop_arg = c;
    resp->status = 200;
    return 0;
}

static void revoke_token(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *id = http_param(req, "token_id");
    store_agent_token t;
    int rc = store_agent_token_get(w->store, req->auth.org_id, id, &t);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "TOKEN_NOT_FOUND", "agent token not found");
        return;
    }
    if (rc != STORE_OK ||
        (rc = store_agent_token_revoke(w->store, req->auth.org_id, id, (int64_t)time(NULL))) ==
            STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    log_info("agent token %s (cluster %s) revoked", t.id, t.cluster_id);
    if (schedule_close(w, resp, req->auth.org_id, t.cluster_id, t.cluster_name, t.id) < 0)
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
}

/* The body listed on a worker, and where to find the live sessions. */
typedef struct {
    cJSON *body;
    tunnel_hub *tunnels;
} sessions_arg;

static void connections_add_sessions(http_response *resp, void *arg)
{
    sessions_arg *a = arg;
    cJSON *o = a->body;
    tunnel_hub *tunnels = a->tunnels;
    free(a);
    const char *org = cJSON_GetStringValue(cJSON_GetObjectItem(o, "org_id"));
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "connections"))
    {
        cJSON *sessions = cJSON_AddArrayToObject(c, "sessions");
        const char *cluster = cJSON_GetStringValue(cJSON_GetObjectItem(c, "cluster_id"));
        if (sessions && org && cluster)
            tunnel_describe_sessions(tunnels, org, cluster, sessions);
    }
    cJSON_DeleteItemFromObject(o, "org_id");
    http_resp_json(resp, 200, o);
}

/* ?token=<agent token>: the existing frontend polls with the token it just
 * created until its agent connects.  Only the token's id is kept (in
 * token_id); a token that is malformed, unknown or another org's matches
 * nothing, exactly like one no agent has used yet.  0, or -1 with resp. */
static int token_filter(worker_ctx *w, http_request *req, char *token_id, size_t cap,
                        http_response *resp)
{
    token_id[0] = '\0';
    char tok[MAX_TOKEN_FILTER + 2];
    if (!http_query_get(req, "token", tok, sizeof(tok)) || !tok[0])
        return 0; /* as the existing service: an empty token filters nothing */
    if (strlen(tok) > MAX_TOKEN_FILTER) {
        secret_wipe(tok, sizeof(tok));
        http_resp_error(resp, 400, "BAD_REQUEST", "token is too long");
        return -1;
    }
    snprintf(token_id, cap, "-"); /* matches no row */
    int out = 0;
    if (token_agent_well_formed(tok)) {
        char hash[65];
        token_hash(tok, hash);
        store_agent_token t;
        int rc = store_agent_token_lookup_hash(w->store, hash, &t);
        if (rc == STORE_ERR) {
            api_store_error(w, resp);
            out = -1;
        } else if (rc == STORE_OK && !strcmp(t.org_id, req->auth.org_id)) {
            snprintf(token_id, cap, "%s", t.id);
        }
    }
    secret_wipe(tok, sizeof(tok));
    return out;
}

static void list_connections(worker_ctx *w, http_request *req, http_response *resp)
{
    char only_token[STORE_ID_LEN];
    if (token_filter(w, req, only_token, sizeof(only_token), resp) < 0)
        return;
    store_connection *list = NULL;
    size_t n = 0;
    if (store_connection_list(w->store, req->auth.org_id, &list, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "org_id", req->auth.org_id); /* removed on the loop */
    cJSON *arr = cJSON_AddArrayToObject(o, "connections");
    for (size_t i = 0; i < n; i++) {
        const store_connection *c = &list[i];
        if (only_token[0] && strcmp(c->token_id, only_token))
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "cluster_id", c->cluster_id);
        cJSON_AddStringToObject(e, "cluster_name", c->cluster_name);
        cJSON_AddStringToObject(e, "agent_version", c->agent_version);
        cJSON_AddStringToObject(e, "protocol", c->protocol);
        api_add_time(e, "connected_at", c->connected_at);
        api_add_time(e, "last_heartbeat", c->last_heartbeat);
        api_add_time(e, "disconnected_at", c->disconnected_at);
        cJSON_AddNumberToObject(e, "agents", c->connected);
        /* status keeps the existing service's two values (its frontend
         * knows no other): a cluster with no agent left is "stale" there
         * too.  connected tells the two kinds of stale apart. */
        int live = c->connected > 0;
        int fresh = live && now - c->last_heartbeat <= w->cfg->stale_after;
        cJSON_AddStringToObject(e, "status", fresh ? "active" : "stale");
        cJSON_AddBoolToObject(e, "connected", live);
        cJSON_AddItemToArray(arr, e);
    }
    free(list);
    /* The live sessions (replicas, their policy and load) are known only to
     * the event loop: finish the body there. */
    sessions_arg *a = malloc(sizeof(*a));
    if (!a) {
        cJSON_Delete(o);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    a->body = o;
    a->tunnels = w->tunnels;
    resp->status = 200;
    resp->on_loop = connections_add_sessions;
    resp->on_loop_arg = a;
}

static void delete_connection(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *cluster = http_param(req, "cluster_id");
    char name[STORE_CLUSTER_NAME_LEN] = "";
    int known = api_cluster_known(w, req->auth.org_id, cluster, name, sizeof(name));
    if (known < 0) {
        api_store_error(w, resp);
        return;
    }
    if (!known) {
        http_resp_error(resp, 404, "CLUSTER_NOT_FOUND", "cluster %s not found", cluster);
        return;
    }
    int n = 0;
    if (store_agent_token_revoke_cluster(w->store, req->auth.org_id, cluster, (int64_t)time(NULL),
                                         &n) == STORE_ERR ||
        store_connection_delete(w->store, req->auth.org_id, cluster) == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    log_info("connection %s deleted, %d token(s) revoked", cluster, n);
    if (schedule_close(w, resp, req->auth.org_id, cluster, name, NULL) < 0)
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
}

void api_tokens_register(void)
{
    router_add(HTTP_POST, "/api/kubectl/tokens", ROUTE_AUTH_API, create_token);
    router_add(HTTP_GET, "/api/kubectl/tokens", ROUTE_AUTH_API, list_tokens);
    router_add(HTTP_DELETE, "/api/kubectl/tokens/{token_id}", ROUTE_AUTH_API, revoke_token);
    router_add(HTTP_GET, "/api/kubectl/connections", ROUTE_AUTH_API, list_connections);
    router_add(HTTP_DELETE, "/api/kubectl/connections/{cluster_id}", ROUTE_AUTH_API,
               delete_connection);
}
