/* connectors.c — the connector table, what every connector shares, and the
 * routes that are about connectors in general:
 *   GET    /api/connectors/status          what the caller has connected
 *   DELETE /api/connectors/{connector}     disconnect: the row and every
 *                                          secret under aurora/users/<user>/<connector>/
 * A connector is one file exporting `const connector connector_<id>`; adding
 * one is a declaration and a line in the table below. */
#include "connector.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "log.h"
#include "router.h"
#include "secrets.h"
#include "secret.h"

extern const connector connector_gcp;
extern const connector connector_aws;
extern const connector connector_azure;
extern const connector connector_ovh;

static const connector *const g_connectors[] = {
    &connector_gcp,
    &connector_aws,
    &connector_azure,
    &connector_ovh,
};
#define N_CONNECTORS (sizeof(g_connectors) / sizeof(g_connectors[0]))

const connector *connector_find(const char *id)
{
    if (!id)
        return NULL;
    for (size_t i = 0; i < N_CONNECTORS; i++)
        if (!strcmp(g_connectors[i]->id, id))
            return g_connectors[i];
    return NULL;
}

size_t connector_count(void) { return N_CONNECTORS; }

const connector *connector_at(size_t i) { return i < N_CONNECTORS ? g_connectors[i] : NULL; }

/* ---- cloud credentials ---------------------------------------------------------- */

int cloud_env_name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > CLOUD_MAX_ENV_NAME)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return !(name[0] >= '0' && name[0] <= '9');
}

int cloud_creds_add(cloud_creds *c, const char *name, const char *value)
{
    if (!c || !value || !cloud_env_name_ok(name) || c->nenv >= CLOUD_MAX_ENV ||
        strlen(value) > CLOUD_MAX_ENV_VALUE)
        return -1;
    for (int i = 0; i < c->nenv; i++) {
        size_t nl = strlen(name);
        if (!strncmp(c->env[i], name, nl) && c->env[i][nl] == '=')
            return -1; /* one value per name */
    }
    size_t n = strlen(name) + 1 + strlen(value) + 1;
    char *e = malloc(n);
    if (!e)
        return -1;
    snprintf(e, n, "%s=%s", name, value);
    c->env[c->nenv++] = e;
    return 0;
}

void cloud_creds_clear(cloud_creds *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nenv; i++) {
        secret_free(c->env[i]);
        c->env[i] = NULL;
    }
    c->nenv = 0;
    c->target[0] = '\0';
}

/* ---- shared helpers for connectors ---------------------------------------------------- */

int connector_require_user(const auth_ctx *who, http_response *resp)
{
    if (!who->org_id[0] || !who->user_id[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "connectors belong to a user: send X-User-ID and X-Org-ID");
        return -1;
    }
    return 0;
}

int connector_secrets_ready(worker_ctx *w, http_response *resp)
{
    if (!w->secrets) {
        http_resp_error(resp, 503, "SECRETS_UNAVAILABLE",
                        "the secrets backend is unavailable; connector credentials cannot be used");
        return -1;
    }
    return 0;
}

void connector_secrets_error(int rc, const char *err, http_response *resp)
{
    /* err names backend, operation and path, never a value. */
    log_error("secrets backend: %s", err);
    http_resp_error(resp, 503, "SECRETS_UNAVAILABLE", "secrets backend error (%s), retry later",
                    secrets_strerror(rc));
}

/* Deletes every secret of (user, connector); 0, or -1 with resp filled. */
static int delete_user_secrets(worker_ctx *w, const char *user_id, const char *conn,
                               http_response *resp)
{
    char prefix[SECRETS_MAX_PATH + 2];
    if (secrets_user_path(prefix, sizeof(prefix) - 1, user_id, conn, "x") < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid user id");
        return -1;
    }
    prefix[strlen(prefix) - 1] = '\0'; /* ".../<connector>/" */
    char **paths = NULL;
    size_t n = 0;
    char err[512];
    int rc = secrets_list(w->secrets, prefix, &paths, &n, err, sizeof(err));
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    int out = 0;
    for (size_t i = 0; i < n && !out; i++) {
        rc = secrets_delete(w->secrets, paths[i], err, sizeof(err));
        if (rc != SECRETS_OK && rc != SECRETS_NOT_FOUND) {
            connector_secrets_error(rc, err, resp);
            out = -1;
        }
    }
    secrets_list_free(paths, n);
    return out;
}

/* ---- routes -------------------------------------------------------------------------------- */

static void connectors_status(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *all = o ? cJSON_AddObjectToObject(o, "connectors") : NULL;
    if (!all) {
        cJSON_Delete(o);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    for (size_t i = 0; i < N_CONNECTORS; i++) {
        const connector *c = g_connectors[i];
        cJSON *one = cJSON_AddObjectToObject(all, c->id);
        if (!one)
            continue;
        if (c->status && req->auth.user_id[0])
            c->status(w, &req->auth, one);
        if (!cJSON_GetObjectItemCaseSensitive(one, "connected"))
            cJSON_AddBoolToObject(one, "connected", 0);
        if (!cJSON_GetObjectItemCaseSensitive(one, "name"))
            cJSON_AddStringToObject(one, "name", c->name);
    }
    http_resp_json(resp, 200, o);
}

static void connectors_delete(worker_ctx *w, http_request *req, http_response *resp)
{
    const char *id = http_param(req, "connector");
    const connector *c = connector_find(id);
    if (!c) {
        http_resp_error(resp, 404, "UNKNOWN_CONNECTOR", "unknown connector");
        return;
    }
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    store_connector row;
    int rc = store_connector_get(w->store, req->auth.org_id, req->auth.user_id, c->id, &row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    int existed = rc == STORE_OK;
    store_connector_free(&row);
    /* Secrets first: a row without its secret is harmless, the reverse is not. */
    if (delete_user_secrets(w, req->auth.user_id, c->id, resp) < 0)
        return;
    rc = store_connector_delete(w->store, req->auth.org_id, req->auth.user_id, c->id);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    if (c->disconnected)
        c->disconnected(w, &req->auth);
    log_info("connector %s disconnected for user %s (org %s)", c->id, req->auth.user_id,
             req->auth.org_id);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "connector", c->id);
        cJSON_AddBoolToObject(o, "deleted", existed || rc == STORE_OK);
    }
    http_resp_json(resp, 200, o);
}

void connectors_register(void)
{
    router_add(HTTP_GET, "/api/connectors/status", ROUTE_AUTH_API, connectors_status);
    /* Secrets backends may be remote (Vault, AWS): the outbound pool. */
    router_add_outbound(HTTP_DELETE, "/api/connectors/{connector}", ROUTE_AUTH_API,
                        connectors_delete);
    for (size_t i = 0; i < N_CONNECTORS; i++)
        if (g_connectors[i]->register_routes)
            g_connectors[i]->register_routes();
}
