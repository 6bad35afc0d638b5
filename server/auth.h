/* auth.h — who is calling: API keys, or the trusted backend's internal secret. */
#ifndef AURORA_AUTH_H
#define AURORA_AUTH_H

#include "http_types.h"
#include "worker.h"

/* Fills req->auth.  On failure fills resp (401) and returns -1.
 * internal_only: accept only X-Internal-Secret (X-User-ID/X-Org-ID optional). */
int auth_authenticate(worker_ctx *w, http_request *req, int internal_only, http_response *resp);

#endif
