/* datadog.h — what the Datadog connector's two files share (datadog.c:
 * connect, status, webhook intake and processing; datadog_api.c: the read
 * API), and the pure parts its unit tests reach (site table, payload
 * mapping). */
#ifndef AURORA_DATADOG_H
#define AURORA_DATADOG_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "incidents.h"
#include "worker.h"

struct cJSON;

#define DATADOG_ID "datadog"
#define DATADOG_BASE_SETTING "AURORA_DATADOG_BASE_URL"
#define DATADOG_URL_MAX 512
#define DATADOG_KEY_MAX 256 /* bytes of an API or application key */

/* One Datadog site: the guide's four plus US1-FED and AP1. */
typedef struct {
    const char *code;   /* "US1", "EU", "US1-FED", … */
    const char *domain; /* "datadoghq.com": the API is https://api.<domain> */
} datadog_site;

/* The site named by its code ("US1", "us1", "US1_FED") or its domain, with
 * or without the "app." / "api." host of it and an https:// scheme
 * ("datadoghq.eu", "app.datadoghq.eu", "https://api.us3.datadoghq.com/");
 * NULL when it is none of them. */
const datadog_site *datadog_site_find(const char *name);
/* "US1, US3, US5, EU, US1-FED, AP1": for messages. */
const char *datadog_site_list(void);
/* The API base of a site: AURORA_DATADOG_BASE_URL when set (tests, a
 * proxy), else https://api.<domain>.  0, or -1 with a 500 in resp when the
 * setting is not a usable base URL (https unless loopback). */
int datadog_api_base(const worker_ctx *w, const datadog_site *s, char *out, size_t cap,
                     http_response *resp);

/* The caller's connection, ready for calls: base URL and both keys (wiped
 * by datadog_creds_clear).  0, or -1 with resp filled (404 not connected,
 * 503 secrets backend). */
typedef struct {
    char base[DATADOG_URL_MAX];
    const datadog_site *site;
    char *api_key_header; /* "DD-API-KEY: …", malloc'd */
    char *app_key_header; /* "DD-APPLICATION-KEY: …", malloc'd */
} datadog_creds;
int datadog_creds_load(worker_ctx *w, const auth_ctx *who, datadog_creds *c,
                       http_response *resp);
void datadog_creds_clear(datadog_creds *c);
long datadog_timeout_ms(const worker_ctx *w);

/* ---- webhook payload → alert ---------------------------------------------------------
 * Datadog's webhook body is the template the user typed, filled with
 * $VARIABLES (docs/api.md, Datadog: the recommended "aurora" payload and
 * Datadog's default payload are both understood). */

#define DATADOG_FP_MAX 257 /* INC_KEY_MAX + 1: longer ones are hashed */

typedef struct {
    alert_state state;
    int state_known;                /* 0: nothing said fire or recover (recorded as info) */
    char fingerprint[DATADOG_FP_MAX];
    char title[512];                /* $EVENT_TITLE without its "[P1] [Triggered on …]" prefix */
    char service[128];              /* the "service:" tag, "" when none */
    char severity[32];              /* incident_severity_normalize's word */
    char source_alert_id[64];       /* $ALERT_ID (the monitor), "" when none */
    const char *message;            /* $EVENT_MSG / $TEXT_ONLY_MSG (points into the JSON) */
    const char *url;                /* $LINK (points into the JSON) */
    int64_t occurred_at;            /* $DATE / $LAST_UPDATED (s), 0 when none */
} datadog_alert;

/* 0, or -1 with a reason in why when the body is not a Datadog webhook
 * payload (no title, a field of the wrong type, nothing to identify the
 * alert by): the intake's 400, nothing stored. */
int datadog_payload_check(const struct cJSON *json, char *why, size_t whylen);
/* Maps a checked payload; -1 with why as above. */
int datadog_map_alert(const struct cJSON *json, datadog_alert *out, char *why, size_t whylen);
/* $ALERT_TRANSITION (or the title's "[Triggered]" word) → state; 0 when
 * it is not a word Datadog uses. */
int datadog_transition_state(const char *word, alert_state *out);

/* datadog_api.c: GET /datadog/monitors and GET /datadog/events. */
void datadog_api_register(void);

#endif
