/* slack.h — the Slack connector's files share this (slack.c: connection,
 * OAuth, channel; slack_api.c: Web API calls and chat notifications;
 * slack_events.c: the Events API endpoint). */
#ifndef AURORA_SLACK_H
#define AURORA_SLACK_H

#include "connector.h"
#include "kit_call.h"
#include "store.h"

#define SLACK_ID "slack"
#define SLACK_FIELD_TOKEN "bot-token"
#define SLACK_TOKEN_MAX 512
#define SLACK_ID_MAX 32 /* team, channel, user ids: [A-Z0-9] */

extern const kit_call_errors slack_api_errors;

long slack_timeout_ms(const worker_ctx *w);
/* SLACK_API_BASE_URL, checked; NULL (with a 500 in resp when resp) when unusable. */
const char *slack_api_base(const worker_ctx *w, http_response *resp);
/* 1 if s is a Slack id (team T…, channel C…/G…, user U…/W…, bot B…). */
int slack_id_ok(const char *s);

/* The organization's Slack connection that posts incidents (oldest active
 * row with a channel chosen); *md is its metadata (cJSON_Delete it).
 * STORE_OK, STORE_NOT_FOUND, STORE_ERR. */
int slack_org_connection(worker_ctx *w, const char *org, store_connector *row,
                         struct cJSON **md);
/* The organization whose connection has Slack team team_id. */
int slack_team_org(worker_ctx *w, const char *team_id, char org[STORE_ID_LEN]);
/* The bot token the row references (malloc'd; secret_free), or NULL with
 * resp filled (resp may be NULL). */
char *slack_bot_token(worker_ctx *w, const store_connector *row, http_response *resp);

/* One Web API method (POST JSON when json_body, else GET with query).
 * Slack answers HTTP 200 {"ok": false, "error": "…"} for its errors: those
 * come back as AUR_E_DENIED (auth errors) or AUR_E_INVALID with the error
 * in slack_error.  On AUR_OK *out is the answer (cJSON_Delete it).  The
 * raw kit_call result is in r (kit_call_resp_free it). */
int slack_call(worker_ctx *w, const char *token, const char *method, const char *query,
               const char *json_body, int max_attempts, kit_call_resp *r, struct cJSON **out,
               char slack_error[64]);

void slack_api_register(void);    /* channels routes, chat spec */
void slack_events_register(void); /* POST /slack/events, events API, sweep */
/* After a connect: the deliveries of team_id stored before it was known. */
void slack_events_adopt(worker_ctx *w, const char *team_id);

#endif
