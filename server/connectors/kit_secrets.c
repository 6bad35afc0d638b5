/* kit_secrets.c — credential storage and connection rows; see kit_secrets.h. */
#include "kit_secrets.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "connector.h"
#include "kit_oauth.h"
#include "log.h"
#include "secrets.h"

#define REF_MAX 512
#define KEY_REFS "secret_refs"

int kit_secret_put(worker_ctx *w, const char *org, const char *user, const char *conn,
                   const char *field, const char *value, char *ref, size_t refcap,
                   http_response *resp)
{
    char path[SECRETS_MAX_PATH + 1], err[512];
    if (connector_secrets_ready(w, resp) < 0)
        return -1;
    if (secrets_user_path(path, sizeof(path), org, user, conn, field) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid organization or user id");
        return -1;
    }
    if (secrets_ref(w->secrets, path, ref, refcap) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "secret reference too long");
        return -1;
    }
    int rc = secrets_put(w->secrets, path, value, strlen(value), err, sizeof(err));
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    return 0;
}

int kit_secret_get(worker_ctx *w, const char *ref, unsigned char **val, size_t *len,
                   int missing_status, const char *missing_code, const char *missing_msg,
                   http_response *resp)
{
    char be[32], err[512];
    const char *path = NULL;
    *val = NULL;
    *len = 0;
    if (connector_secrets_ready(w, resp) < 0)
        return -1;
    if (secrets_ref_parse(ref, be, sizeof(be), &path) < 0) {
        http_resp_error(resp, 500, "CONNECTION_CORRUPT",
                        "the stored connection names no valid secret; connect again");
        return -1;
    }
    int rc = secrets_get(w->secrets, path, val, len, err, sizeof(err));
    if (rc == SECRETS_NOT_FOUND) {
        http_resp_error(resp, missing_status, missing_code, "%s", missing_msg);
        return -1;
    }
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    return 0;
}

int kit_secret_replace(worker_ctx *w, const char *ref, const char *value, char *err,
                       size_t errlen)
{
    char be[32];
    const char *path = NULL;
    if (!w->secrets || secrets_ref_parse(ref, be, sizeof(be), &path) < 0) {
        snprintf(err, errlen, "no secrets backend or no valid reference");
        return SECRETS_E_INVALID;
    }
    return secrets_put(w->secrets, path, value, strlen(value), err, errlen);
}

/* ---- which paths belong to a connection ----------------------------------------- */

/* 1 if path lies in (org, user)'s folder for conn: the org-scoped one, or
 * the one rows written before issue 10 reference. */
static int owned_path(const char *path, const char *org, const char *user, const char *conn)
{
    char mine[SECRETS_MAX_PATH + 1], legacy[SECRETS_MAX_PATH + 1];
    if (secrets_user_prefix(mine, sizeof(mine), org, user, conn) == 0 &&
        !strncmp(path, mine, strlen(mine)))
        return 1;
    int n = snprintf(legacy, sizeof(legacy), SECRETS_ROOT "users/%s/%s/", user, conn);
    return n > 0 && (size_t)n < sizeof(legacy) && !strchr(user, '/') &&
           !strncmp(path, legacy, (size_t)n);
}

/* Adds the path of ref to list (if owned and new). */
static void paths_add(char ***list, size_t *n, const char *ref, const auth_ctx *who,
                      const char *conn)
{
    char be[32];
    const char *path = NULL;
    if (!ref || !*ref || secrets_ref_parse(ref, be, sizeof(be), &path) < 0)
        return;
    if (!owned_path(path, who->org_id, who->user_id, conn)) {
        log_warn("%s: a connection row references a secret outside its folder; not deleted", conn);
        return;
    }
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*list)[i], path))
            return;
    char **nl = realloc(*list, (*n + 1) * sizeof(char *));
    if (!nl)
        return;
    *list = nl;
    if ((nl[*n] = strdup(path)))
        (*n)++;
}

/* The paths a row references: secret_ref and metadata secret_refs. */
static void row_paths(const store_connector *row, const auth_ctx *who, const char *conn,
                      char ***list, size_t *n)
{
    if (!row)
        return;
    paths_add(list, n, row->secret_ref, who, conn);
    cJSON *md = row->metadata_json ? cJSON_Parse(row->metadata_json) : NULL;
    const cJSON *it, *refs = md ? cJSON_GetObjectItemCaseSensitive(md, KEY_REFS) : NULL;
    cJSON_ArrayForEach(it, refs)
        if (cJSON_IsString(it))
            paths_add(list, n, it->valuestring, who, conn);
    cJSON_Delete(md);
}

/* Deletes each path of list except those in keep; 0 or -1 with resp. */
static int delete_paths(worker_ctx *w, char **list, size_t n, char *const *keep, size_t nkeep,
                        http_response *resp)
{
    char err[512];
    for (size_t i = 0; i < n; i++) {
        int kept = 0;
        for (size_t k = 0; k < nkeep && !kept; k++)
            kept = !strcmp(list[i], keep[k]);
        if (kept)
            continue;
        int rc = secrets_delete(w->secrets, list[i], err, sizeof(err));
        if (rc != SECRETS_OK && rc != SECRETS_NOT_FOUND) {
            connector_secrets_error(rc, err, resp);
            return -1;
        }
    }
    return 0;
}

/* Every path of the connection: listed under the org-scoped prefix, plus
 * the row's references.  0 or -1 with resp. */
static int connection_paths(worker_ctx *w, const auth_ctx *who, const char *conn,
                            const store_connector *row, char ***list, size_t *n,
                            http_response *resp)
{
    char prefix[SECRETS_MAX_PATH + 1], err[512];
    *list = NULL;
    *n = 0;
    if (secrets_user_prefix(prefix, sizeof(prefix), who->org_id, who->user_id, conn) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "invalid organization or user id");
        return -1;
    }
    int rc = secrets_list(w->secrets, prefix, list, n, err, sizeof(err));
    if (rc != SECRETS_OK) {
        connector_secrets_error(rc, err, resp);
        return -1;
    }
    row_paths(row, who, conn, list, n);
    return 0;
}

int kit_secrets_delete_connection(worker_ctx *w, const auth_ctx *who, const char *conn,
                                  const store_connector *row, http_response *resp)
{
    char **list;
    size_t n;
    if (connection_paths(w, who, conn, row, &list, &n, resp) < 0)
        return -1;
    int rc = delete_paths(w, list, n, NULL, 0, resp);
    secrets_list_free(list, n);
    return rc;
}

/* ---- credential connect ------------------------------------------------------------ */

/* A row whose secrets a failed reconnect could not put back: not active
 * (kit_row_load, kit_status and the pollers see it as not connected) until
 * the user connects again. */
#define STATUS_RECONNECT "needs_reconnect"

/* What one field's path held before the connect wrote it. */
typedef struct {
    char path[SECRETS_MAX_PATH + 1];
    unsigned char *val; /* NULL: nothing was there */
    size_t len;
} prior_value;

/* 1 if path holds what p says it held before (after a write that failed:
 * a remote backend may have applied it before the error). */
static int still_prior(worker_ctx *w, const prior_value *p)
{
    unsigned char *v = NULL;
    size_t len = 0;
    char err[512];
    int rc = secrets_get(w->secrets, p->path, &v, &len, err, sizeof(err));
    int same = p->val ? rc == SECRETS_OK && len == p->len && !memcmp(v, p->val, len)
                      : rc == SECRETS_NOT_FOUND;
    if (v)
        secrets_free(v, len);
    return same;
}

/* Puts back what the first n fields' paths held (deletes what was not
 * there).  A path the old row references that cannot be put back leaves
 * that connection a mix of old and new fields: the row is marked
 * STATUS_RECONNECT and resp says so.  Anything else left over lies in the
 * connection's folder, swept by its next connect or its disconnect. */
static void undo_connect(worker_ctx *w, const auth_ctx *who, const char *conn,
                         const prior_value *prior, size_t n, store_connector *old, int have_old,
                         http_response *resp)
{
    char **refd = NULL, err[512];
    size_t nrefd = 0;
    int lost = 0;
    if (have_old)
        row_paths(old, who, conn, &refd, &nrefd);
    for (size_t i = 0; i < n; i++) {
        int rc = prior[i].val ? secrets_put(w->secrets, prior[i].path, prior[i].val, prior[i].len,
                                            err, sizeof(err))
                              : secrets_delete(w->secrets, prior[i].path, err, sizeof(err));
        if (rc == SECRETS_OK || (!prior[i].val && rc == SECRETS_NOT_FOUND) ||
            still_prior(w, &prior[i]))
            continue;
        log_error("%s: a failed connect could not put back %s: %s", conn, prior[i].path, err);
        for (size_t k = 0; k < nrefd && !lost; k++)
            lost = !strcmp(refd[k], prior[i].path);
    }
    secrets_list_free(refd, nrefd);
    if (!lost)
        return;
    snprintf(old->status, sizeof(old->status), STATUS_RECONNECT);
    if (store_connector_upsert(w->store, old) != STORE_OK)
        log_error("%s: connection of user %s (org %s) holds a mix of old and new secrets and "
                  "could not be marked %s: %s", conn, who->user_id, who->org_id, STATUS_RECONNECT,
                  store_errmsg(w->store));
    else
        log_warn("%s: connection of user %s (org %s) marked %s: its previous secrets could not "
                 "be put back", conn, who->user_id, who->org_id, STATUS_RECONNECT);
    http_resp_error(resp, 503, "SECRETS_UNAVAILABLE",
                    "secrets backend error: the previous connection could not be kept, connect "
                    "again when the backend is back");
}

int kit_connect_store(worker_ctx *w, const char *org, const char *user, const char *conn,
                      const char *account, const kit_field *fields, size_t nfields,
                      const cJSON *md, http_response *resp)
{
    auth_ctx who = { .authenticated = 1 };
    snprintf(who.org_id, sizeof(who.org_id), "%s", org);
    snprintf(who.user_id, sizeof(who.user_id), "%s", user);
    store_connector row = { 0 }, old = { 0 };
    cJSON *stored = md ? cJSON_Duplicate(md, 1) : cJSON_CreateObject();
    cJSON *refs = stored ? cJSON_AddObjectToObject(stored, KEY_REFS) : NULL;
    char **keep = calloc(nfields + 1, sizeof(char *));
    prior_value *prior = calloc(nfields + 1, sizeof(*prior));
    size_t nkeep = 0, written = 0;
    int ret = -1;
    kit_oauth_pause *paused = NULL;
    if (!refs || !keep || !prior) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    int have_old = store_connector_get(w->store, org, user, conn, &old) == STORE_OK;
    /* A refresh of the previous grant under way ends first: the refresh
     * token it rotates would otherwise be written over the new grant's
     * (same secret path), leaving the new connection on the old grant. */
    if (have_old && old.secret_ref[0])
        paused = kit_oauth_refresh_pause(NULL, old.secret_ref, conn);
    /* The fields go to the paths the previous connection's are at: what
     * they hold is read first, to be put back if a write or the row fails
     * (a reconnect is all or nothing: never the new api-key beside the old
     * app-key).  A read that fails ends the connect before any write. */
    if (nfields > 0 && connector_secrets_ready(w, resp) < 0)
        goto out;
    for (size_t i = 0; i < nfields; i++) {
        char err[512];
        if (secrets_user_path(prior[i].path, sizeof(prior[i].path), org, user, conn,
                              fields[i].field) < 0) {
            http_resp_error(resp, 400, "BAD_REQUEST", "invalid organization or user id");
            goto out;
        }
        int rc = have_old ? secrets_get(w->secrets, prior[i].path, &prior[i].val, &prior[i].len,
                                        err, sizeof(err))
                          : SECRETS_NOT_FOUND;
        if (rc != SECRETS_OK && rc != SECRETS_NOT_FOUND) {
            connector_secrets_error(rc, err, resp);
            goto out;
        }
    }
    for (size_t i = 0; i < nfields; i++) {
        char ref[REF_MAX], be[32];
        const char *path;
        written = i + 1; /* a failed write may have landed all the same */
        if (kit_secret_put(w, org, user, conn, fields[i].field, fields[i].value, ref, sizeof(ref),
                           resp) < 0)
            goto out;
        cJSON_AddStringToObject(refs, fields[i].field, ref);
        if (i == 0)
            snprintf(row.secret_ref, sizeof(row.secret_ref), "%s", ref);
        if (secrets_ref_parse(ref, be, sizeof(be), &path) == 0 && (keep[nkeep] = strdup(path)))
            nkeep++;
    }
    snprintf(row.org_id, sizeof(row.org_id), "%s", org);
    snprintf(row.user_id, sizeof(row.user_id), "%s", user);
    snprintf(row.connector, sizeof(row.connector), "%s", conn);
    snprintf(row.account, sizeof(row.account), "%.255s", account ? account : "");
    snprintf(row.status, sizeof(row.status), "active");
    char *text = cJSON_PrintUnformatted(stored);
    if (!text) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        goto out;
    }
    row.metadata_json = text; /* freed with row */
    if (store_connector_upsert(w->store, &row) != STORE_OK) {
        api_store_error(w, resp);
        goto out;
    }
    ret = 0;
    /* One credential at a time: what the connection stored before goes,
     * once the row names the new one (deleting first would break the old
     * connection if the row could not be written).  Best effort: what stays
     * lies in the connection's folder, deleted by its next connect or its
     * disconnect. */
    char **list = NULL;
    size_t n = 0;
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (w->secrets && (nfields > 0 || (have_old && old.secret_ref[0])) &&
        (connection_paths(w, &who, conn, have_old ? &old : NULL, &list, &n, &scratch) < 0 ||
         delete_paths(w, list, n, keep, nkeep, &scratch) < 0))
        log_warn("%s: the previous secrets of user %s (org %s) stay until the next connect or "
                 "disconnect", conn, user, org);
    buf_free(&scratch.body);
    secrets_list_free(list, n);
out:
    if (ret < 0 && written > 0)
        undo_connect(w, &who, conn, prior, written, &old, have_old, resp);
    kit_oauth_refresh_resume(paused);
    for (size_t i = 0; i < nkeep; i++)
        free(keep[i]);
    free(keep);
    for (size_t i = 0; prior && i < nfields; i++)
        if (prior[i].val)
            secrets_free(prior[i].val, prior[i].len);
    free(prior);
    cJSON_Delete(stored);
    store_connector_free(&old);
    store_connector_free(&row);
    return ret;
}

/* ---- rows ------------------------------------------------------------------------------ */

int kit_row_load(worker_ctx *w, const auth_ctx *who, const char *conn, store_connector *row,
                 cJSON **md, const char *not_connected_msg, http_response *resp)
{
    *md = NULL;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, conn, row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return -1;
    }
    if (rc != STORE_OK || strcmp(row->status, "active") != 0) {
        if (rc == STORE_OK)
            store_connector_free(row);
        http_resp_error(resp, 404, "MISSING_CONNECTOR", "%s", not_connected_msg);
        return -1;
    }
    *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    if (!cJSON_IsObject(*md)) {
        cJSON_Delete(*md);
        *md = cJSON_CreateObject();
    }
    if (!*md) {
        store_connector_free(row);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    return 0;
}

int kit_row_save_meta(worker_ctx *w, store_connector *row, const cJSON *md, http_response *resp)
{
    char *s = cJSON_PrintUnformatted(md);
    if (!s) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    free(row->metadata_json);
    row->metadata_json = s;
    int rc = store_connector_update_meta(w->store, row);
    if (rc == STORE_NOT_FOUND) {
        /* disconnected meanwhile (a refresh or an event that was under way) */
        http_resp_error(resp, 404, "MISSING_CONNECTOR", "%s is not connected", row->connector);
        return -1;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    return 0;
}

int kit_status(worker_ctx *w, const auth_ctx *who, const char *conn, const char *const *keys,
               cJSON *out, store_connector *row, cJSON **md)
{
    *md = NULL;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, conn, row);
    if (rc != STORE_OK) {
        cJSON_AddBoolToObject(out, "connected", 0);
        if (rc != STORE_NOT_FOUND) {
            cJSON_AddStringToObject(out, "error", "state store unavailable");
            log_error("%s status: %s", conn, store_errmsg(w->store));
        }
        return 0;
    }
    cJSON_AddBoolToObject(out, "connected", !strcmp(row->status, "active"));
    cJSON_AddStringToObject(out, "account", row->account);
    cJSON_AddStringToObject(out, "status", row->status);
    *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    if (!cJSON_IsObject(*md)) {
        cJSON_Delete(*md);
        *md = cJSON_CreateObject();
    }
    for (size_t i = 0; keys && keys[i]; i++) {
        const char *v = *md ? api_json_str(*md, keys[i]) : NULL;
        if (v)
            cJSON_AddStringToObject(out, keys[i], v);
    }
    api_add_time(out, "connected_at", row->created_at);
    api_add_time(out, "updated_at", row->updated_at);
    return 1;
}

void kit_connected_reply(http_response *resp, const char *conn, const cJSON *md,
                         const char *const *drop)
{
    cJSON *o = md ? cJSON_Duplicate(md, 1) : cJSON_CreateObject();
    for (size_t i = 0; o && drop && drop[i]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(o, drop[i]);
    if (o) {
        cJSON_AddBoolToObject(o, "connected", 1);
        cJSON_AddStringToObject(o, "provider", conn);
    }
    http_resp_json(resp, 200, o);
}

#define FIRST_ROW_PAGE 200

int kit_first_row(worker_ctx *w, const char *conn,
                  int (*match)(const store_connector *row, const void *arg), const void *arg,
                  char org[STORE_ID_LEN], char user[STORE_ID_LEN])
{
    store_connector_cursor cur = { 0 };
    for (;;) {
        store_connector *rows = NULL;
        size_t n = 0;
        if (store_connector_page(w->store, conn, &cur, FIRST_ROW_PAGE, &rows, &n) != STORE_OK)
            return STORE_ERR;
        int rc = STORE_NOT_FOUND;
        for (size_t i = 0; i < n && rc == STORE_NOT_FOUND; i++) {
            if (strcmp(rows[i].status, "active") || !match(&rows[i], arg))
                continue;
            snprintf(org, STORE_ID_LEN, "%s", rows[i].org_id);
            if (user)
                snprintf(user, STORE_ID_LEN, "%s", rows[i].user_id);
            rc = STORE_OK;
        }
        store_connector_list_free(rows, n);
        if (rc == STORE_OK || n < FIRST_ROW_PAGE)
            return rc;
    }
}

int kit_org_row(worker_ctx *w, const char *org, const char *conn,
                int (*ok)(const cJSON *md), store_connector *row, cJSON **md)
{
    store_connector *rows = NULL;
    size_t n = 0;
    *md = NULL;
    if (store_connector_list(w->store, org, &rows, &n) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_NOT_FOUND;
    /* store_connector_list is oldest first: the first connection made wins */
    for (size_t i = 0; i < n && rc == STORE_NOT_FOUND; i++) {
        if (strcmp(rows[i].connector, conn) || strcmp(rows[i].status, "active"))
            continue;
        cJSON *m = cJSON_Parse(rows[i].metadata_json ? rows[i].metadata_json : "{}");
        if (m && ok(m)) {
            *row = rows[i];
            rows[i].metadata_json = NULL; /* moved to *row */
            *md = m;
            rc = STORE_OK;
        } else {
            cJSON_Delete(m);
        }
    }
    store_connector_list_free(rows, n);
    return rc;
}
