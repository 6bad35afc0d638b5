/* atlassian.h — the Atlassian connection (connector guide: "Atlassian
 * (Confluence + Jira)"), shared by the two products it serves.
 *
 * atlassian.c owns how a user connects and how a call gets its credentials:
 *   - Cloud: ONE OAuth 2.0 (3LO) grant for both products (ATLASSIAN_CLIENT_ID
 *     / _SECRET, /atlassian/login, /atlassian/callback), the site found with
 *     accessible-resources, rotating refresh tokens stored once (the grant
 *     lives in the "atlassian" row; the product rows point at it), access
 *     tokens cached per (org, user) until shortly before they expire;
 *   - Data Center: per product a base URL + Personal Access Token
 *     (/atlassian/connect), validated before it is stored;
 *   - the Jira permission tier (Read Only / Full Access).
 * confluence.c and jira.c own the product APIs and call only what is below.
 *
 * Connector ids: "confluence" and "jira" (one row each: what GET
 * /api/connectors/status shows and DELETE /api/connectors/{id} removes) and
 * "atlassian" (the Cloud grant; removed with the last product using it). */
#ifndef AURORA_ATLASSIAN_H
#define AURORA_ATLASSIAN_H

#include <sys/socket.h>

#include "http.h"
#include "worker.h"

struct cJSON;

typedef enum { ATL_CONFLUENCE = 0, ATL_JIRA = 1 } atl_product;

typedef enum { ATL_TIER_READ = 0, ATL_TIER_FULL = 1 } atl_jira_tier;

typedef struct {
    int cloud;           /* 1: Atlassian Cloud (OAuth 3LO), 0: Data Center (PAT) */
    /* Where the product's REST API lives: Cloud
     * "<ATLASSIAN_API_BASE_URL>/ex/confluence/<cloudId>" (…/ex/jira/<cloudId>),
     * Data Center the configured base URL.  Used as kit_call_req.base_url. */
    char api_base[512];
    /* What the user's page and issue URLs start with: Cloud the site
     * ("https://acme.atlassian.net"), Data Center the base URL. */
    char site_url[512];
    char *token;         /* bearer: OAuth access token or PAT (atl_creds_clear wipes) */
    atl_jira_tier tier;  /* Jira only */
    int allow_http;      /* the Data Center base URL is http:// by the user's explicit choice */
    long timeout_ms;     /* connector_timeout_ms for this product */
    /* Data Center: the base URL was typed by a user, so every address it
     * resolves to is judged (kit_addr_allow: no link-local, cloud metadata,
     * unspecified, multicast; loopback only with ATLASSIAN_DC_ALLOW_LOOPBACK).  Pass both as
     * kit_call_req.allow_address / allow_address_ud, and allow_http as
     * kit_call_req.allow_http.  NULL for Cloud. */
    int (*allow_address)(const struct sockaddr *sa, void *ud);
    void *allow_address_ud;
} atl_creds;

/* The caller's credentials for product p (outbound pool).  A Cloud access
 * token is refreshed when it is within 60 s of expiry, or always when
 * force_refresh (the product API answered 401).  0, or -1 with resp filled:
 * 404 MISSING_CONNECTOR "<Confluence|Jira> is not connected",
 * 401 CONFLUENCE_CREDENTIALS_EXPIRED "Confluence credentials expired" /
 * JIRA_CREDENTIALS_EXPIRED "Jira credentials expired" (refresh refused:
 * reconnect via the Connectors page), 503 SECRETS_UNAVAILABLE, 502/504 when
 * Atlassian's token endpoint fails. */
int atl_credentials(worker_ctx *w, const auth_ctx *who, atl_product p, int force_refresh,
                    atl_creds *out, http_response *resp);
void atl_creds_clear(atl_creds *c);

/* One call to product p's REST API as `who` (outbound pool; atlassian_call.c).
 * c comes from atl_credentials; path is appended to c->api_base (or, when it
 * starts with "http", is a full URL that must be under it).  A 401 on a
 * Cloud token refreshes it once (c is replaced) and retries.  Returns:
 *   AUR_OK         2xx: *json the answer (NULL for an empty body; cJSON_Delete)
 *   AUR_NOT_FOUND  404: resp untouched (the caller names what is missing)
 *   < 0            resp filled: 401 <P>_CREDENTIALS_EXPIRED "<P> credentials
 *                  expired: Reconnect via the Connectors page", 403
 *                  <P>_FORBIDDEN, 400 <P>_BAD_REQUEST with Atlassian's first
 *                  errorMessage (a JQL/CQL syntax error), 502/504 otherwise.
 * `what` starts the messages ("Reading the Confluence page"). */
int atl_call(worker_ctx *w, const auth_ctx *who, atl_product p, atl_creds *c,
             const char *method, const char *path, const char *json_body, const char *what,
             struct cJSON **json, http_response *resp);

/* "Confluence" / "Jira". */
const char *atl_product_name(atl_product p);

#endif
