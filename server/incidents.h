/* incidents.h — alerts in, incidents out: the one entry point every
 * monitoring connector (Grafana, Sentry, PagerDuty, Datadog, New Relic, …)
 * calls from its webhook's `process` callback (or its poller), and the
 * incident store behind GET /api/incidents.
 *
 * A connector turns one provider payload into one or more incident_alert
 * (Grafana's grouped payload: one per element of alerts[]) and calls
 * incident_ingest() for each, in order.  One call, one store transaction:
 *
 *   record the alert (idempotent: the same (delivery_id, index) — or the
 *   same (org, source, dedup_key) when dedup_key is set — is a duplicate
 *   and changes nothing, so the kit's at-least-once processing is safe)
 *   → correlate:
 *       firing:   a copy of an instance already resolved (a firing alert of
 *                 the same source, fingerprint and start time is in an
 *                 incident with a resolution of it after it) → recorded
 *                 with no incident (INGEST_UNMATCHED); else
 *                 the newest (started_at DESC) OPEN incident of the org
 *                 that has an alert with the same fingerprint (and source), or whose
 *                 service is similar and which started within the
 *                 correlation window → attach; none → open a new incident,
 *                 with a generated summary and exactly one RCA job in the
 *                 outbox (rca_jobs, source_type = the alert's source);
 *       resolved: the newest incident (any status) that has a firing alert
 *                 with the same fingerprint, started no later than the
 *                 resolution, not yet resolved in it (a fingerprint
 *                 recurs: one instance's resolution is not another's)
 *                 → attach the resolution (and
 *                 resolve the incident when none of its fingerprints is
 *                 still firing: a firing alert is ended only by a
 *                 resolution after it that happened no earlier than it
 *                 started); none → recorded with no incident, logged
 *                 and skipped (never opens an incident);
 *       acknowledged / info: attach like resolved, never open.
 *
 * Correlation of one organization is serialized in the store (two replicas
 * processing alerts with the same fingerprint at once open one incident).
 * Every text field is copied and bounded by the store (longer text is cut
 * at a UTF-8 boundary; the raw JSON is capped at INCIDENT_RAW_MAX).
 */
#ifndef AURORA_INCIDENTS_H
#define AURORA_INCIDENTS_H

#include <stdint.h>

#include "store.h"
#include "worker.h"

struct cJSON;

#define INCIDENT_RAW_MAX (64 * 1024)  /* bytes of one alert's JSON kept */
#define INCIDENT_ID_LEN STORE_ID_LEN  /* "inc_" + hex */
/* AURORA_INCIDENT_CORRELATION_WINDOW_S when unset: a firing alert joins an
 * open incident of a similar service (incident_normalize.h) that started at
 * most this many seconds before or after it. */
#define INCIDENT_CORRELATION_WINDOW_DEFAULT 3600

typedef enum {
    ALERT_FIRING = 0,
    ALERT_RESOLVED,
    ALERT_ACKNOWLEDGED,
    ALERT_INFO, /* e.g. a Sentry comment: recorded, attached if it matches, never opens */
} alert_state;

typedef struct {
    const char *source;         /* connector id: "grafana", "sentry", "pagerduty", … (required) */
    const char *delivery_id;    /* the kit's delivery row id (whd_…) or a poller's own
                                   stable id, e.g. "newrelic-poll:<issueId>:<state>" (required) */
    int index;                  /* position in a grouped payload (0 otherwise) */
    const char *dedup_key;      /* optional: unique per (org, source), e.g. Sentry's
                                   "<issue_id>:<action>"; a repeat is a duplicate */
    const char *source_alert_id;/* the provider's id of the alert/issue/incident */
    const char *fingerprint;    /* same alert instance across fire and resolve (required;
                                   Grafana's fingerprint, Sentry's issue id, PD's incident id…) */
    alert_state state;
    const char *title;          /* required */
    const char *service;        /* may be NULL or "" */
    const char *severity;       /* "critical", "high", "medium", "low", "info" (else "unknown") */
    const char *message;        /* description / first lines of the stack; may be NULL */
    const char *url;            /* link back to the provider; may be NULL */
    int64_t occurred_at;        /* provider's start/occurrence time; 0: now */
    const struct cJSON *raw;    /* this alert's JSON, stored with it; may be NULL */
} incident_alert;

typedef enum {
    INGEST_CREATED = 0,  /* a new incident (and its one RCA job) */
    INGEST_ATTACHED,     /* attached to an existing incident */
    INGEST_UNMATCHED,    /* resolution/ack/info with no incident, or a late copy of a
                            resolved firing alert: recorded, skipped */
    INGEST_DUPLICATE,    /* already recorded: nothing changed */
} ingest_result;

typedef struct {
    ingest_result result;
    char incident_id[INCIDENT_ID_LEN]; /* "" for UNMATCHED */
    char alert_id[STORE_ID_LEN];
} incident_outcome;

/* org_id: the delivery's organization; user_id: whose connector received it
 * (may be NULL for org-wide sources).  0, or -1 with one line in err (no
 * secret) when the store failed or the alert is invalid (the kit then keeps
 * the delivery as failed and retries it). */
int incident_ingest(worker_ctx *w, const char *org_id, const char *user_id,
                    const incident_alert *a, int64_t now, incident_outcome *out, char *err,
                    size_t errlen);

/* The checks incident_ingest() makes before touching the store (for a
 * caller that must tell bad input, 4xx, from a store failure, 5xx): 0, or
 * -1 with one line in err. */
int incident_alert_check(const char *org_id, const char *user_id, const incident_alert *a,
                         char *err, size_t errlen);

/* Maps a provider's severity/priority word to the normalized set above
 * (case-insensitive: "P1"/"critical"/"error"/"fatal" → critical, …). */
const char *incident_severity_normalize(const char *provider_value);

/* Registers the incident and outbox routes (modules.c). */
void incidents_register_routes(void);

#endif
