/* oauth.h — what every OAuth connector shares: `state` values that are
 * unguessable, bound to the user and provider, single-use and expiring, and
 * the authorization-code exchange. */
#ifndef AURORA_OAUTH_H
#define AURORA_OAUTH_H

#include <stddef.h>

#include "http.h"
#include "worker.h"

#define OAUTH_STATE_TTL 600 /* seconds */

typedef struct {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    char provider[32];
    char redirect_uri[512];
    char extra[512]; /* provider data, e.g. the OVH region */
} oauth_state_info;

/* Creates a state for `who` (stored only as a hash).  out gets 43 URL-safe
 * chars.  -1 with resp filled on store errors. */
int oauth_state_new(worker_ctx *w, const auth_ctx *who, const char *provider,
                    const char *redirect_uri, const char *extra, char out[64],
                    http_response *resp);
/* Consumes a state from a callback: missing, malformed, unknown, reused,
 * expired, issued for another provider, or (when the callback is itself
 * authenticated) for another user -> -1 with a 400 in resp that says which
 * without revealing anything.  Single use even under concurrent callbacks. */
int oauth_state_take(worker_ctx *w, const http_request *req, const char *provider,
                     oauth_state_info *out, http_response *resp);

#endif
