/* auth.h — who is calling: API keys, the trusted backend's internal secret,
 * or the web console's session cookie (console_session.h). */
#ifndef AURORA_AUTH_H
#define AURORA_AUTH_H

#include "http_types.h"
#include "worker.h"

/* Fills req->auth.  On failure fills resp (401) and returns -1.
 * internal_only: accept only X-Internal-Secret (X-User-ID/X-Org-ID optional).
 * Otherwise X-Internal-Secret, else Authorization: Bearer <API key>, else
 * the console session cookie (with its CSRF check on writes: 403). */
int auth_authenticate(worker_ctx *w, http_request *req, int internal_only, http_response *resp);
/* 1 if s is a user or org id the server accepts: 1..STORE_ID_MAX characters
 * of [A-Za-z0-9._@-] (the existing Aurora's UUIDs, this server's own ids). */
int auth_id_valid(const char *s);
/* The API key's org, user and key id into a (nothing else of a is set);
 * -1 with a 401 (unknown or revoked key) or 503 in resp. */
int auth_api_key(worker_ctx *w, const char *key, auth_ctx *a, http_response *resp);

#endif
