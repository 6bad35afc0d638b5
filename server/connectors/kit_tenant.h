/* kit_tenant.h — the tenant of a per-user webhook URL (connector kit).
 *
 * Monitoring tools (Grafana, Datadog, PagerDuty, New Relic, Sentry) post to
 * /<provider>/…/webhook/{user_id}: the URL names a user, and the user's
 * organization must be found from it.  User ids are one namespace per
 * organization, so the same id may act in several; this is the one place
 * that decides which, the same way for every connector:
 *
 *  1. `?org_id=<id>` on the URL (the webhook URL the connector shows carries
 *     it when the user is in several organizations) picks the organization;
 *     the user must be a member of it and, when connected rows are needed,
 *     have an active row there;
 *  2. else the organizations where the user has an active row of the
 *     connector: exactly one is the tenant;
 *  3. with KIT_TENANT_MEMBER (Grafana connects on its first delivery) and no
 *     row anywhere: the organizations the user is a member of: exactly one
 *     is the tenant.
 *
 * Answers (resp filled, -1 returned): 400 INVALID_USER_ID for an id that is
 * not 1–64 chars of [A-Za-z0-9._@-]; 404 USER_NOT_FOUND for a user unknown
 * here (or not connected: KIT_TENANT_CONNECTED, with the connector's own
 * message when given); 409 AMBIGUOUS_TENANT when several organizations
 * qualify and the URL does not say which; 503 STORE_UNAVAILABLE when the
 * store fails.  The same 404 for "no such user" and "no such row": the URL
 * must not reveal which user ids exist. */
#ifndef AURORA_KIT_TENANT_H
#define AURORA_KIT_TENANT_H

#include "http.h"
#include "store.h"
#include "worker.h"

typedef enum {
    KIT_TENANT_CONNECTED = 0, /* an active connector row is required */
    KIT_TENANT_MEMBER = 1,    /* a member without a row will do (connect on first delivery) */
} kit_tenant_need;

typedef struct {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    int connected; /* 1: the user has an active row of the connector in org_id */
    int has_row;   /* 1: a row exists in org_id (active or not) */
} kit_tenant;

/* user_id is the path parameter as received.  not_found_msg: the 404's
 * message (NULL: "Unknown webhook user or connector not connected"). */
int kit_tenant_resolve(worker_ctx *w, const char *connector, const http_request *req,
                       const char *user_id, kit_tenant_need need, const char *not_found_msg,
                       kit_tenant *out, http_response *resp);

#endif
