/* store_incidents.h — the incident store: alerts, incidents and the
 * correlation transaction behind incident_ingest() (incidents.h), and the
 * reads/updates of the incident API (api_incidents.c).
 *
 * Same conventions as store.h (STORE_* results, org-scoped reads, Unix
 * seconds).  Callers pass text that already fits the INC_*_MAX caps below
 * and is valid UTF-8 (incidents.c cuts and validates); the store checks it
 * again and refuses what does not fit rather than cutting an identifier. */
#ifndef AURORA_STORE_INCIDENTS_H
#define AURORA_STORE_INCIDENTS_H

#include <stdint.h>

#include "store.h"

/* Bytes (without the NUL) of each stored field. */
#define INC_SOURCE_MAX 32
#define INC_DELIVERY_MAX 160
#define INC_KEY_MAX 256       /* dedup_key, fingerprint, source_alert_id */
#define INC_TITLE_MAX 512
#define INC_SERVICE_MAX 256
#define INC_SEVERITY_MAX 16
#define INC_MESSAGE_MAX 4096
#define INC_URL_MAX 2048
#define INC_SUMMARY_MAX 8192
#define INC_STATE_MAX 16      /* "firing", "resolved", "acknowledged", "info" */
#define INC_STATUS_MAX 16     /* "open", "acknowledged", "resolved", "closed" */

/* One alert to record and correlate.  Text fields are NUL-terminated and
 * within the caps; optional ones may be NULL (stored as '' / NULL). */
typedef struct {
    const char *org_id;
    const char *user_id;         /* NULL: org-wide source */
    const char *source;
    const char *delivery_id;
    int64_t idx;
    const char *dedup_key;       /* NULL: none */
    const char *source_alert_id;
    const char *fingerprint;
    const char *state;           /* "firing" | "resolved" | "acknowledged" | "info" */
    const char *title;
    const char *service;
    const char *service_key;     /* normalized service ('' never matches) */
    const char *severity;        /* normalized (incident_severity_normalize) */
    const char *message;
    const char *url;
    int64_t occurred_at;         /* > 0 */
    int64_t received_at;         /* > 0 */
    const char *raw_json;        /* NULL: none */
} store_alert_in;

/* What a new incident gets when the alert opens one; prepared by the caller
 * (incident_summary.c) before the transaction, used only on CREATED. */
typedef struct {
    const char *incident_id;     /* "inc_…" */
    const char *summary;
    const char *rca_job_id;      /* "rca_…" */
    const char *rca_payload;     /* JSON text of the job */
} store_incident_new;

typedef enum {
    STORE_INGEST_CREATED = 0,
    STORE_INGEST_ATTACHED,
    STORE_INGEST_UNMATCHED,
    STORE_INGEST_DUPLICATE,
} store_ingest_result;

typedef struct {
    store_ingest_result result;
    char incident_id[STORE_ID_LEN]; /* "" when unmatched */
    char alert_id[STORE_ID_LEN];
} store_ingest_out;

/* One transaction, serialized per organization (SQLite: BEGIN IMMEDIATE,
 * the database's write lock; PostgreSQL: the org's row locked FOR NO KEY UPDATE):
 * records the alert (a duplicate changes nothing), correlates it (rules in
 * incidents.h; a service match needs started_at within window_s of
 * occurred_at) and opens, attaches or resolves.  NOT_FOUND: no such
 * organization; ERR: the store failed (nothing was written). */
int store_incident_ingest(store_t *s, const store_alert_in *a, int64_t window_s,
                          const store_incident_new *n, store_ingest_out *out);

/* ---- reads and status changes (api_incidents.c) --------------------------- */

typedef struct {
    char id[STORE_ID_LEN];
    char org_id[STORE_ID_LEN];
    char source[INC_SOURCE_MAX + 1];
    char source_alert_id[INC_KEY_MAX + 1];
    char fingerprint[INC_KEY_MAX + 1];
    char title[INC_TITLE_MAX + 1];
    char service[INC_SERVICE_MAX + 1];
    char severity[INC_SEVERITY_MAX + 1];
    char status[INC_STATUS_MAX + 1];
    int64_t started_at, started_seq, acknowledged_at, resolved_at, closed_at, created_at,
        updated_at, alert_count;
    char summary[INC_SUMMARY_MAX + 1];
} store_incident;

typedef struct {
    char id[STORE_ID_LEN];
    char source[INC_SOURCE_MAX + 1];
    char dedup_key[INC_KEY_MAX + 1];
    char source_alert_id[INC_KEY_MAX + 1];
    char fingerprint[INC_KEY_MAX + 1];
    char state[INC_STATE_MAX + 1];
    char title[INC_TITLE_MAX + 1];
    char service[INC_SERVICE_MAX + 1];
    char severity[INC_SEVERITY_MAX + 1];
    char message[INC_MESSAGE_MAX + 1];
    char url[INC_URL_MAX + 1];
    int64_t occurred_at, received_at, position;
} store_incident_alert;

/* Filters of the list; "" / 0 for none.  The cursor (has_cursor) is the
 * (started_at, started_seq) of the last incident of the previous page. */
typedef struct {
    const char *status;
    const char *source;
    int64_t since, until; /* started_at within [since, until] */
    int has_until;        /* until is a bound (0 is 1970, not "none") */
    int has_cursor;
    int64_t cursor_at, cursor_seq;
} store_incident_filter;

#define INC_LIST_MAX 201 /* the API's 200 and one to look ahead */
#define INC_ALERTS_MAX 500

/* Newest first (started_at DESC, started_seq DESC), at most limit
 * (1..INC_LIST_MAX); *out is malloc'd (free()). */
int store_incident_list(store_t *s, const char *org_id, const store_incident_filter *f, int limit,
                        store_incident **out, size_t *n);
/* NOT_FOUND also for another organization's incident. */
int store_incident_get(store_t *s, const char *org_id, const char *id, store_incident *out);
/* The incident's alerts in the order they were attached, at most limit
 * (1..INC_ALERTS_MAX); *out is malloc'd (free()). */
int store_incident_alerts(store_t *s, const char *org_id, const char *incident_id, int limit,
                          store_incident_alert **out, size_t *n);
/* status "resolved" (from open/acknowledged; already resolved: OK;
 * closed: CONFLICT) or "closed" (from any; sets resolved_at when unset).
 * NOT_FOUND for a missing or foreign incident. */
int store_incident_set_status(store_t *s, const char *org_id, const char *id, const char *status,
                              int64_t now);

#endif
