/* bitbucket.h — shared by bitbucket.c (OAuth consumer, tokens, status) and
 * bitbucket_api.c (repositories and pull requests). */
#ifndef AURORA_BITBUCKET_H
#define AURORA_BITBUCKET_H

#include <stddef.h>

#include "connector.h"
#include "kit_call.h"

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

/* 1 when r is Bitbucket's 403 for a token without a scope the call needs
 * ("Your credentials lack one or more required privilege scopes.", with
 * error.detail.required): the first required scope into need ("" if not
 * named).  0 for any other answer. */
int bb_scope_missing(const kit_call_resp *r, char *need, size_t cap);
/* The consumer permission (as Bitbucket's settings page names it) that
 * grants scope: "Account (Read)" for account, … ; scope itself otherwise. */
const char *bb_permission_name(const char *scope);

#endif
