/* bitbucket.h — shared by bitbucket.c (OAuth consumer, tokens, status) and
 * bitbucket_api.c (repositories and pull requests). */
#ifndef AURORA_BITBUCKET_H
#define AURORA_BITBUCKET_H

#include "connector.h"

struct cJSON;

#define BB_ID "bitbucket"

long bb_timeout_ms(const worker_ctx *w);
/* BITBUCKET_API_BASE_URL, checked; NULL with a 500 in resp. */
const char *bb_api_base(const worker_ctx *w, http_response *resp);
/* The caller's access token (malloc'd; secret_free it): cached, or
 * refreshed with the stored refresh token (force: always; after a 401).
 * NULL with resp: 404 MISSING_CONNECTOR, 401 BITBUCKET_CREDENTIALS_EXPIRED
 * when Bitbucket refuses the refresh token, 502/504 when it fails. */
char *bb_access_token(worker_ctx *w, const auth_ctx *who, int force, http_response *resp);
void bb_api_register(void);

#endif
