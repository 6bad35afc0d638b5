/* pagerduty.h — what the PagerDuty connector's files share: pagerduty.c
 * (connect by OAuth or API token, credentials, status), pagerduty_api.c (the
 * read API) and pagerduty_webhook.c (Generic Webhooks v3 intake and
 * processing), plus the payload mapper its unit test drives. */
#ifndef AURORA_PAGERDUTY_H
#define AURORA_PAGERDUTY_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "incidents.h"
#include "kit_call.h"
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

/* ---- between the files -------------------------------------------------------------------- */

#define PD_TOKEN_MAX 512 /* longest API key or access token taken */

/* How one REST request authenticates: "Authorization: Token token=<key>" (an
 * API key) or "Authorization: Bearer <access token>" (OAuth).  Wipe it. */
typedef struct {
    char header[PD_TOKEN_MAX + 40];
} pd_cred;

/* pagerduty.c: the connection's credential, the API base, calls. */
extern const kit_call_errors pd_api_errors; /* PAGERDUTY_TIMEOUT / _UNREACHABLE / _DENIED / _ERROR */
long pd_timeout_ms(const worker_ctx *w);
/* PAGERDUTY_API_BASE_URL, checked (https, or loopback); NULL with a 500. */
const char *pd_api_base(const worker_ctx *w, http_response *resp);
/* The caller's credential (API key, or a fresh OAuth access token): 0, or
 * -1 with resp (404 MISSING_CONNECTOR, secret gone, refresh failed). */
int pd_caller_cred(worker_ctx *w, const auth_ctx *who, pd_cred *c, http_response *resp);
void pd_cred_wipe(pd_cred *c);
/* A GET to url under base with PagerDuty's Accept header and c; headers
 * (3 slots) must outlive q. */
void pd_call_init(kit_call_req *q, const char *base, const char *url, const char **headers,
                  const pd_cred *c, long timeout_ms);
/* GET base/path: an AUR_* code with rp always filled (kit_call_resp_free it). */
int pd_api_get_path(worker_ctx *w, const char *base, const pd_cred *c, const char *path,
                    kit_call_resp *rp);
/* A 401 from PagerDuty: the caller's cached access token is dropped. */
void pd_forget_if_refused(const auth_ctx *who, long status);

/* pagerduty_api.c: GET /pagerduty/incidents, /incidents/{id}, /services. */
void pagerduty_api_register(void);
/* pagerduty_webhook.c: the webhook and its events API, the recovery sweep. */
void pagerduty_webhook_register(void);

#endif
