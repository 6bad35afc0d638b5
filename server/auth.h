/* auth.h — who is calling: API keys, or the trusted backend's internal secret. */
#ifndef AURORA_AUTH_H
#define AURORA_AUTH_H

#include "http_types.h"
#include "worker.h"

/* Fills req->auth.  On failure fills resp (401) and returns -1.
 * internal_only: accept only X-Internal-Secret (X-User-ID/X-Org-ID optional). */
int auth_authenticate(worker_ctx *w, http_request *req, int internal_only, http_response *resp);
/* 1 if s is a user or org id the server accepts: 1..STORE_ID_MAX characters
 * of [A-Za-z0-9._@-] (the existing Aurora's UUIDs, this server's own ids). */
int auth_id_valid(const char *s);

#endif
