/* pagerduty.h — what the PagerDuty connector's two files share:
 * pagerduty.c (connect by OAuth or API token, the read API, status) and
 * pagerduty_webhook.c (Generic Webhooks v3 intake and processing), plus the
 * payload mapper its unit test drives. */
#ifndef AURORA_PAGERDUTY_H
#define AURORA_PAGERDUTY_H

#include <stddef.h>
#include <stdint.h>

#include "incidents.h"
#include "worker.h"

struct cJSON;

#define PD_ID "pagerduty"
/* Secret fields under aurora/orgs/<org>/users/<user>/pagerduty/ */
#define PD_FIELD_TOKEN "api-token"         /* Option B: a REST API key */
#define PD_FIELD_REFRESH "refresh-token"   /* Option A: the OAuth grant */
#define PD_FIELD_WEBHOOK "webhook-secret"  /* the v3 subscription's signing secret */
#define PD_WEBHOOK_SECRET_MAX 256          /* PagerDuty's are 64 characters */

/* ---- webhook payloads (pagerduty_webhook.c) ----------------------------------------- */

/* One v3 webhook payload read as an alert.  Pointers point into the parsed
 * payload (valid while it lives), except severity_word. */
typedef struct {
    incident_alert alert;     /* source "pagerduty", fingerprint = incident id, state, title… */
    const char *event_type;   /* event.event_type */
    const char *event_id;     /* event.id */
    const char *priority;     /* data.priority.summary ("P1"…) or NULL */
    const char *urgency;      /* data.urgency ("high", "low") or NULL */
} pd_event;

enum { PD_EVENT_BAD = -1, PD_EVENT_OTHER = 0, PD_EVENT_ALERT = 1 };

/* Reads root as a Generic Webhooks v3 payload:
 *   PD_EVENT_ALERT  incident.triggered / .acknowledged / .resolved with an
 *                   incident in event.data (id, title): out filled
 *   PD_EVENT_OTHER  a well-formed v3 event of another type (incident.annotated,
 *                   pagey.ping, service.updated…): out->event_type/_id set
 *   PD_EVENT_BAD    not v3's shape (why says what is missing; no payload text).
 * out->alert.delivery_id, .index and .raw are left for the caller. */
int pd_event_parse(const struct cJSON *root, pd_event *out, char *why, size_t whylen);

/* "2020-10-02T18:45:22.169Z" (PagerDuty's ISO 8601, UTC, optional
 * fraction) as Unix seconds, or 0 when it is not that. */
int64_t pd_time_parse(const char *s);

/* The severity word to hand to the incident core: the incident's priority
 * when it names a known level (P1…P5), else its urgency, else NULL. */
const char *pd_severity_word(const pd_event *e);

/* ---- between the two files -------------------------------------------------------------- */

/* Mounts the webhook and its events API, registers the recovery sweep. */
void pagerduty_webhook_register(void);

#endif
