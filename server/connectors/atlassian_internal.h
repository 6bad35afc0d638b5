/* atlassian_internal.h — what atlassian.c (Cloud OAuth, credentials),
 * atlassian_pat.c (Data Center PAT connect) and atlassian_products.c (the
 * confluence and jira rows, the Jira tier) share.  Not for confluence.c /
 * jira.c: they use atlassian.h only. */
#ifndef AURORA_ATLASSIAN_INTERNAL_H
#define AURORA_ATLASSIAN_INTERNAL_H

#include <sys/socket.h>

#include "atlassian.h"
#include "connector.h"

struct cJSON;

#define ATL_ID "atlassian"       /* the Cloud grant's row */
#define ATL_URL_MAX 400          /* a Data Center base URL */
#define ATL_TOKEN_MAX 8192       /* an access token or a PAT */
#define ATL_FIELD_REFRESH "refresh-token"
#define ATL_FIELD_PAT "pat"

extern const connector connector_atlassian;
extern const connector connector_confluence;
extern const connector connector_jira;

/* "confluence" / "jira": the product's connector id. */
const char *atl_product_id(atl_product p);
/* 0 and *p for "confluence" / "jira", else -1. */
int atl_product_parse(const char *s, atl_product *p);
const connector *atl_product_connector(atl_product p);
/* NEXT_PUBLIC_ENABLE_CONFLUENCE / NEXT_PUBLIC_ENABLE_JIRA. */
int atl_product_enabled(const worker_ctx *w, atl_product p);
/* 1 with a 404 <P>_DISABLED in resp when the product is not enabled. */
int atl_product_disabled(const worker_ctx *w, atl_product p, http_response *resp);

/* Drops the cached Cloud access token of who. */
void atl_forget_tokens(const auth_ctx *who);

/* ATLASSIAN_DC_ALLOW_LOOPBACK as a static int for allow_address_ud (Data
 * Center: a user-typed base URL is judged by kit_addr_allow). */
void *atl_dc_allow_loopback(const worker_ctx *w);
void atl_pat_register(void);

/* The Jira tier of a row's metadata ("tier": "read_only" | "full_access"). */
atl_jira_tier atl_tier_of(const struct cJSON *md);
const char *atl_tier_name(atl_jira_tier t);

/* Fills out with the status of product p's row (mode, site_url, scopes,
 * tier…); for GET /api/connectors/status and GET /atlassian/status. */
void atl_product_status(worker_ctx *w, const auth_ctx *who, atl_product p, struct cJSON *out);
/* The Cloud grant's status (site, scopes, products using it). */
void atl_grant_status(worker_ctx *w, const auth_ctx *who, struct cJSON *out);
/* Removes the Cloud grant (row and secrets) when no product row uses it any
 * more.  Best effort (logged). */
void atl_grant_release_if_unused(worker_ctx *w, const auth_ctx *who);
/* Removes one connection row and its secrets; 0, or -1 with resp. */
int atl_remove_row(worker_ctx *w, const auth_ctx *who, const char *conn, http_response *resp);

#endif
