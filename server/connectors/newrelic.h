/* newrelic.h — what the New Relic connector's files share (newrelic.c:
 * connect, status, the NerdGraph call, webhook intake and processing;
 * newrelic_api.c: the read API; newrelic_poll.c: issue polling) and the pure
 * parts its unit tests reach (key/region checks, GraphQL request encoding,
 * the issue → alert mapping). */
#ifndef AURORA_NEWRELIC_H
#define AURORA_NEWRELIC_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "incidents.h"
#include "worker.h"

struct cJSON;

#define NEWRELIC_ID "newrelic"
#define NEWRELIC_URL_MAX 512
#define NEWRELIC_KEY_MAX 128     /* bytes of a User API key ("NRAK-" + 27 today) */
#define NEWRELIC_ISSUE_ID_MAX 128 /* an issue id is a UUID; room for what may come */
#define NEWRELIC_MAX_RESPONSE (4 * 1024 * 1024)

/* ---- pure checks (unit tested) ------------------------------------------------ */

/* "US"/"EU" in any case; NULL/"" is US.  Returns "US" or "EU", NULL otherwise. */
const char *newrelic_region_find(const char *name);
/* A User API key: "NRAK-" then 20-123 letters and digits (it travels in a header). */
int newrelic_user_key_ok(const char *key);
/* A license (ingest) key: exactly 40 characters — New Relic's original 40 hex
 * digits, or the newer form ending in "NRAL" (36 hex + "NRAL"); EU keys start
 * with "eu01xx".  Letters and digits only, in any case. */
int newrelic_license_key_ok(const char *key);
/* A numeric account id that fits GraphQL's Int (1..2147483647), from a
 * string of digits or a JSON number; 0 when not one. */
int64_t newrelic_account_id(const struct cJSON *v);
/* The POST body {"query": query, "variables": vars} (vars may be NULL: {}),
 * malloc'd; every user text is a variable, never spliced into query. */
char *newrelic_graphql_body(const char *query, const struct cJSON *vars);

/* ---- issue → alert -------------------------------------------------------------
 * Both the webhook (the user's workflow template: New Relic's default payload
 * and the recommended one of docs/api.md) and the poller (NerdGraph's
 * AiIssuesIssue) describe an issue; the mapping is the same. */
typedef struct {
    char issue_id[NEWRELIC_ISSUE_ID_MAX + 1];
    char state[16];         /* ACTIVATED, CREATED, CLOSED, ACKNOWLEDGED ("" unknown) */
    alert_state alert;      /* firing / resolved / acknowledged / info */
    char title[512];
    char service[128];
    char severity[32];      /* incident_severity_normalize of the priority */
    char message[1024];
    const char *url;        /* issueUrl / issuePageUrl (points into the JSON) */
    int64_t occurred_at;    /* createdAt (s), 0 when none */
    char dedup_key[NEWRELIC_ISSUE_ID_MAX + 32]; /* "<issueId>:<state>" */
} newrelic_issue;

/* 0, or -1 with a reason in why when json is not an issue payload. */
int newrelic_issue_check(const struct cJSON *json, char *why, size_t whylen);
int newrelic_issue_map(const struct cJSON *json, newrelic_issue *out, char *why, size_t whylen);
/* ACTIVATED/CREATED → firing, ACKNOWLEDGED → acknowledged, CLOSED → resolved;
 * 0 for another word. */
int newrelic_state_map(const char *state, alert_state *out);
/* One incident_ingest of a mapped issue (webhook and poller alike: the
 * dedup key "<issueId>:<state>" makes the second path a duplicate).
 * 0, or -1 with err. */
int newrelic_ingest(worker_ctx *w, const char *org_id, const char *user_id,
                    const char *delivery_id, const newrelic_issue *is, const struct cJSON *raw,
                    ingest_result *result, char *err, size_t errlen);

/* ---- the caller's connection ------------------------------------------------------ */
typedef struct {
    char endpoint[NEWRELIC_URL_MAX]; /* the region's NerdGraph URL (or its override) */
    char region[4];
    int64_t account_id;
    char *key_header; /* "API-Key: NRAK-…", malloc'd; wiped by newrelic_creds_clear */
} newrelic_creds;

/* The region's NerdGraph endpoint: AURORA_NEWRELIC_<REGION>_GRAPHQL_URL.
 * 0, or -1 with a 500 in resp when the setting is unusable. */
int newrelic_endpoint(const worker_ctx *w, const char *region, char *out, size_t cap,
                      http_response *resp);
int newrelic_creds_load(worker_ctx *w, const auth_ctx *who, newrelic_creds *c,
                        http_response *resp);
/* The same from a stored row (the poller: no request). */
int newrelic_creds_from_row(worker_ctx *w, const store_connector *row, newrelic_creds *c,
                            char *err, size_t errlen);
void newrelic_creds_clear(newrelic_creds *c);

/* One NerdGraph call.  *data: the answer's "data" object (free it).
 * Errors → resp: 401/403 → 502 NEWRELIC_INVALID_API_KEY ("Invalid API key");
 * GraphQL errors without data → 400 NEWRELIC_QUERY_ERROR (the first message,
 * bounded), transport → 502/504.  0 or -1. */
int newrelic_graphql(worker_ctx *w, const newrelic_creds *c, const char *query,
                     const struct cJSON *vars, struct cJSON **data, http_response *resp);

/* newrelic_api.c: up to `pages` pages of aiIssues issues (incidents: 1)
 * in [start_ms, end_ms) with the given states (a JSON array, NULL: all)
 * appended to items (at most 1000); the cursor to go on with in next ("" at
 * the end).  0, or -1 with resp filled. */
int newrelic_issues_fetch(worker_ctx *w, const newrelic_creds *c, int incidents,
                          const struct cJSON *states, int64_t start_ms, int64_t end_ms,
                          const char *cursor, int pages, struct cJSON *items, char *next,
                          size_t nextcap, http_response *resp);
void newrelic_api_register(void);  /* newrelic_api.c */
void newrelic_poll_register(void); /* newrelic_poll.c */
long newrelic_timeout_ms(const worker_ctx *w);

#endif
