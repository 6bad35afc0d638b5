/* connectors.c — the connector table, what every connector shares, and the
 * routes that are about connectors in general:
 *   GET    /api/connectors/status          what the caller has connected
 *   DELETE /api/connectors/{connector}     disconnect: the row, every secret
 *                                          under aurora/orgs/<org>/users/<user>/<connector>/
 *                                          and those the row references
 * A connector is one file exporting `const connector connector_<id>`; adding
 * one is a declaration and a line in the table below.  Its settings come
 * with it (connector.settings), merged here into the server's table. */
#include "connector.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "log.h"
#include "oauth.h"
#include "periodic.h"
#include "router.h"
#include "secrets.h"
#include "secret.h"

extern const connector connector_gcp;
extern const connector connector_aws;
extern const connector connector_azure;
extern const connector connector_ovh;
extern const connector connector_github;
extern const connector connector_pagerduty;
extern const connector connector_datadog;
extern const connector connector_netdata;
extern const connector connector_splunk;
extern const connector connector_grafana;
extern const connector connector_sentry;
extern const connector connector_newrelic;
extern const connector connector_bitbucket;
extern const connector connector_slack;
extern const connector connector_google_chat;
extern const connector connector_atlassian;
extern const connector connector_confluence;
extern const connector connector_jira;

static const connector *const g_connectors[] = {
    &connector_gcp,
    &connector_aws,
    &connector_azure,
    &connector_ovh,
    &connector_github,
    &connector_pagerduty,
    &connector_datadog,
    &connector_netdata,
    &connector_splunk,
    &connector_grafana,
    &connector_sentry,
    &connector_newrelic,
    &connector_bitbucket,
    &connector_slack,
    &connector_google_chat,
    &connector_atlassian,
    &connector_confluence,
    &connector_jira,
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

/* ---- settings ---------------------------------------------------------------------- */

#define MAX_SETTINGS 512

static pthread_mutex_t g_defs_mu = PTHREAD_MUTEX_INITIALIZER;
static config_def g_defs[MAX_SETTINGS];
static size_t g_ndefs;
static const config_def *g_built_from; /* the server table g_defs was built from */
static size_t g_built_n;

static int defs_add(const config_def *d, const char *owner, char *err, size_t errlen)
{
    for (size_t i = 0; i < g_ndefs; i++)
        if (!strcmp(g_defs[i].env, d->env)) {
            snprintf(err, errlen, "setting %s is declared twice (again by %s)", d->env, owner);
            return -1;
        }
    if (g_ndefs >= MAX_SETTINGS) {
        snprintf(err, errlen, "more than %d settings", MAX_SETTINGS);
        return -1;
    }
    g_defs[g_ndefs++] = *d;
    return 0;
}

const config_def *connector_config_defs(const config_def *server, size_t nserver, size_t *n,
                                        char *err, size_t errlen)
{
    const config_def *out = g_defs;
    pthread_mutex_lock(&g_defs_mu);
    if (g_built_from == server && g_built_n == nserver && g_ndefs) {
        /* Built already: a loaded config_t points here, never rewrite it. */
        *n = g_ndefs;
        pthread_mutex_unlock(&g_defs_mu);
        return out;
    }
    g_ndefs = 0;
    g_built_from = NULL;
    for (size_t i = 0; i < nserver && out; i++)
        if (defs_add(&server[i], "the server", err, errlen) < 0)
            out = NULL;
    for (size_t c = 0; c < N_CONNECTORS && out; c++)
        for (const config_def *d = g_connectors[c]->settings; d && d->env && out; d++)
            if (defs_add(d, g_connectors[c]->id, err, errlen) < 0)
                out = NULL;
    *n = out ? g_ndefs : 0;
    if (out) {
        g_built_from = server;
        g_built_n = nserver;
    } else {
        g_ndefs = 0;
    }
    pthread_mutex_unlock(&g_defs_mu);
    return out;
}

long connector_timeout_ms(const worker_ctx *w, const connector *c)
{
    int64_t t = w && w->cfg ? server_setting_int(w->cfg, "AURORA_PROVIDER_TIMEOUT_MS") : 0;
    if (t > 0)
        return (long)t;
    return c && c->timeout_ms > 0 ? c->timeout_ms : CONNECTOR_TIMEOUT_MS;
}

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

int cloud_creds_set(cloud_creds *c, const char *const *pairs, http_response *resp)
{
    for (size_t i = 0; pairs[i]; i += 2)
        if (cloud_creds_add(c, pairs[i], pairs[i + 1]) < 0) {
            cloud_creds_clear(c);
            http_resp_error(resp, 500, "INTERNAL", "cannot build the command environment");
            return -1;
        }
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
        const char *redirect = c->redirect_setting && w->cfg ? server_setting(w->cfg, c->redirect_setting) : NULL;
        if (redirect && !cJSON_GetObjectItemCaseSensitive(one, "redirect_uri"))
            cJSON_AddStringToObject(one, "redirect_uri", redirect);
        /* the connector's own name, whatever its status callback added
         * (pages title the card and the dialog with it) */
        cJSON_DeleteItemFromObjectCaseSensitive(one, "name");
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
    /* A token refresh of this connection under way ends first: the refresh
     * token it rotates would otherwise be written back after the delete. */
    kit_oauth_pause *paused = existed && row.secret_ref[0]
                                  ? kit_oauth_refresh_pause(w, row.secret_ref, c->id)
                                  : NULL;
    if (existed && c->disconnecting)
        c->disconnecting(w, &req->auth, &row);
    /* Secrets first: a row without its secret is harmless, the reverse is not. */
    rc = kit_secrets_delete_connection(w, &req->auth, c->id, existed ? &row : NULL, resp);
    store_connector_free(&row);
    if (rc == 0) {
        rc = store_connector_delete(w->store, req->auth.org_id, req->auth.user_id, c->id);
        if (rc == STORE_ERR)
            api_store_error(w, resp);
        else if (c->disconnected)
            c->disconnected(w, &req->auth);
    } else {
        rc = STORE_ERR;
    }
    kit_oauth_refresh_resume(paused);
    if (rc == STORE_ERR)
        return;
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
    /* OAuth callbacks (no API key: the browser comes back from the provider)
     * count under the organization of the flow their state names, before
     * the code exchange: one organization's callbacks to a token endpoint
     * that hangs cannot hold every outbound worker. */
    router_set_public_tenant(oauth_callback_org);
    /* Expired OAuth states went only when someone made a new one. */
    if (periodic_add("oauth-state-prune", WORKER_POOL_STORE, 60, oauth_state_prune_task) < 0)
        log_error("cannot register the OAuth state prune");
}
