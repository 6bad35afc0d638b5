/* kit_secrets.h — the connector kit's credential storage and connection rows.
 *
 * Every secret a connector keeps (client secret, refresh token, service
 * account key, API key) goes to the secrets backend at
 * aurora/orgs/<org>/users/<user>/<connector>/<field> (secrets_user_path);
 * the connection row (store_connector) holds references only: the main
 * field's in secret_ref, every field's in its metadata "secret_refs"
 * ({field: "<backend>:<path>"}).  Values are read back through the
 * reference, so rows written before the paths became org-scoped
 * (aurora/users/<user>/…) keep working.
 *
 * Blocking (secrets backends may be remote): outbound pool only, except
 * kit_row_load and kit_status, which read the store only.  On a store
 * worker the backend refuses every call (secrets_forbid_on_this_thread). */
#ifndef AURORA_KIT_SECRETS_H
#define AURORA_KIT_SECRETS_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "worker.h"

struct cJSON;

/* One secret field of a credential connect. */
typedef struct {
    const char *field; /* path segment: "client-secret", "api-key", … */
    const char *value; /* NUL-terminated text */
} kit_field;

/* Writes value at (org, user, connector, field) and puts its reference in
 * ref.  0, or -1 with resp filled (400 for ids that make no path, 503
 * SECRETS_UNAVAILABLE). */
int kit_secret_put(worker_ctx *w, const char *org, const char *user, const char *conn,
                   const char *field, const char *value, char *ref, size_t refcap,
                   http_response *resp);
/* Reads the value a row's reference names (malloc'd, NUL-terminated;
 * release with secrets_free).  Nothing there: -1 with `missing_status`
 * `missing_code` and missing_msg in resp (the caller says how to recover). */
int kit_secret_get(worker_ctx *w, const char *ref, unsigned char **val, size_t *len,
                   int missing_status, const char *missing_code, const char *missing_msg,
                   http_response *resp);
/* Replaces the value ref names (a rotated refresh token).  SECRETS_* code. */
int kit_secret_replace(worker_ctx *w, const char *ref, const char *value, char *err,
                       size_t errlen);

/* An API-key / credential connect, after the provider accepted the
 * credential (validate first, store after): every field is written to the
 * secrets backend, the row is written with `account`, metadata md (copied;
 * "secret_refs" added) and the first field's reference, then every other
 * secret of the connection is deleted (one credential at a time: a client
 * secret replaces a refresh token and the reverse; best effort, what stays
 * goes with the next connect or the disconnect).  All or nothing: when a
 * write or the row fails, what the fields' paths held before is put back
 * (read before the first write), so a reconnect leaves the previous
 * connection whole; if that cannot be done for a path its row references,
 * the row is marked "needs_reconnect" (not active) and the 503 says so.
 * nfields may be 0 (a connection that stores no secret, e.g. an assumed
 * IAM role).  0, or -1 with resp filled. */
int kit_connect_store(worker_ctx *w, const char *org, const char *user, const char *conn,
                      const char *account, const kit_field *fields, size_t nfields,
                      const struct cJSON *md, http_response *resp);

/* Deletes every secret of (who, conn): everything under the org-scoped
 * prefix and every path row (may be NULL) references under that user's
 * folder for conn (the org-scoped one or the former aurora/users/<user>/<conn>/).
 * 0, or -1 with resp filled. */
int kit_secrets_delete_connection(worker_ctx *w, const auth_ctx *who, const char *conn,
                                  const store_connector *row, http_response *resp);

/* The answer to a credential connect: 200 with a copy of md (minus the keys
 * in drop, NULL ended; may be NULL) plus "connected": true and "provider". */
void kit_connected_reply(http_response *resp, const char *conn, const struct cJSON *md,
                         const char *const *drop);

/* ---- connection rows --------------------------------------------------------- */

/* The active row of (who, conn) and its metadata (*md: an object, never
 * NULL on success; cJSON_Delete it).  No active row: -1 with 404
 * MISSING_CONNECTOR and not_connected_msg. */
int kit_row_load(worker_ctx *w, const auth_ctx *who, const char *conn, store_connector *row,
                 struct cJSON **md, const char *not_connected_msg, http_response *resp);
/* Writes row's metadata_json from md (and updated_at) onto the stored row;
 * a row deleted meanwhile (a disconnect while a refresh or event was under
 * way) stays deleted: -1 with 404 MISSING_CONNECTOR. */
int kit_row_save_meta(worker_ctx *w, store_connector *row, const struct cJSON *md,
                      http_response *resp);

/* The organization's connection of conn that a background sender uses (a
 * chat connector's notifications): the oldest active row, of any user,
 * whose metadata passes ok (e.g. "a channel is chosen").  STORE_OK with
 * *row (store_connector_free it) and *md (cJSON_Delete it),
 * STORE_NOT_FOUND, or STORE_ERR. */
int kit_org_row(worker_ctx *w, const char *org, const char *conn,
                int (*ok)(const struct cJSON *md), store_connector *row, struct cJSON **md);

/* The oldest active row of conn in any organization that match accepts
 * (an event naming a workspace or a space finds its organization this way).
 * Every row is looked at, a page at a time.  STORE_OK with org (and user
 * when not NULL), STORE_NOT_FOUND, or STORE_ERR. */
int kit_first_row(worker_ctx *w, const char *conn,
                  int (*match)(const store_connector *row, const void *arg), const void *arg,
                  char org[STORE_ID_LEN], char user[STORE_ID_LEN]);

/* The common part of a connector's status: "connected" (an active row),
 * "account", "status", the metadata fields named in keys (strings, NULL
 * ended; may be NULL), "connected_at", "updated_at".  Returns 1 with *row
 * and *md (an object) for the connector to add more (free both), else 0
 * (no row, or the store failed: "error" added). */
int kit_status(worker_ctx *w, const auth_ctx *who, const char *conn, const char *const *keys,
               struct cJSON *out, store_connector *row, struct cJSON **md);

#endif
