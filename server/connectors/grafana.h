/* grafana.h — Grafana's webhook contact point payload, read into incident
 * alerts (grafana.c).  Exposed for the unit tests (tests/unit/test_grafana.c);
 * the connector itself is connector_grafana in connectors.c's table.
 *
 * The payload is Grafana's documented webhook notifier format (version "1"):
 * {receiver, status, orgId, alerts[], groupLabels, commonLabels,
 *  commonAnnotations, externalURL, version, groupKey, truncatedAlerts, title,
 *  state, message}, each alert {status, labels, annotations, startsAt,
 *  endsAt, generatorURL, fingerprint, silenceURL, dashboardURL, panelURL,
 *  values, valueString}. */
#ifndef AURORA_GRAFANA_H
#define AURORA_GRAFANA_H

#include <stddef.h>
#include <stdint.h>

#include "incidents.h"

struct cJSON;

#define GRAFANA_MAX_ALERTS 1000    /* per payload; Grafana groups far fewer */
#define GRAFANA_MAX_LABELS 256     /* per labels / annotations object */
#define GRAFANA_FINGERPRINT_MAX 256 /* = the incident store's key limit */
#define GRAFANA_MESSAGE_MAX 8192   /* description/summary + valueString kept */

/* 0 when json is Grafana's webhook payload (what the alerts need to become
 * incidents has the right types); -1 with one line in why otherwise. */
int grafana_payload_check(const struct cJSON *json, char *why, size_t whylen);

/* One element of alerts[] as an incident alert.  The alert's text fields
 * point into the cJSON (keep it alive); fingerprint and message are owned. */
typedef struct {
    incident_alert alert;        /* source "grafana"; delivery_id and index left to the caller */
    char fingerprint[GRAFANA_FINGERPRINT_MAX + 1];
    int fingerprint_computed;    /* 1: the alert had none; derived from its sorted labels */
    char *message;               /* malloc'd, may be NULL */
} grafana_alert;

/* Maps a checked alert: fingerprint (alert.fingerprint, else
 * "labels:<sha256 of the sorted labels>"), state, title (labels.alertname,
 * else annotations.summary, else "Grafana alert"), service (the first of the
 * labels service, service_name, app, application, job, namespace), severity
 * (labels.severity, else labels.priority, normalized), message
 * (annotations.description, else annotations.summary, then valueString),
 * url (generatorURL, else panelURL, else dashboardURL), occurred_at (firing:
 * startsAt; resolved: endsAt, else startsAt).  0, or -1 with why. */
int grafana_alert_map(const struct cJSON *alert, grafana_alert *out, char *why, size_t whylen);
void grafana_alert_free(grafana_alert *g);

/* 1 for the alert Grafana's "Test" button sends (labels exactly
 * alertname=TestAlert, instance=Grafana): it connects, it opens no incident. */
int grafana_is_test_alert(const struct cJSON *alert);

/* Grafana's times (Go's RFC 3339 with optional fractional seconds and a
 * "Z" or ±hh:mm offset) as Unix seconds: 0 and *out, or -1.  Go's zero time
 * ("0001-01-01T00:00:00Z", endsAt of a firing alert) parses to a negative
 * value: callers treat <= 0 as "none". */
int grafana_parse_time(const char *s, int64_t *out);

#endif
