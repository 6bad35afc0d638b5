/* incidents.c — incident_ingest(): checks and bounds one alert from a
 * connector, prepares what a new incident would get (id, summary, RCA job
 * payload) and hands everything to the store's correlation transaction
 * (store_incidents.c).
 *
 * Identifiers (source, delivery_id, fingerprint, dedup_key,
 * source_alert_id) are refused when too long or not text: cutting one would
 * make two different alerts the same.  Display text (title, service,
 * message) is cut at a UTF-8 boundary and cleaned of control characters;
 * a url that is not http(s) or too long is dropped (it is shown as a link).
 */
#include "incidents.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "incident_normalize.h"
#include "incident_summary.h"
#include "log.h"
#include "server_config.h"
#include "store_incidents.h"
#include "timefmt.h"
#include "token.h"
#include "utf8.h"

/* The latest time accepted from a provider (9999-12-31T23:59:59Z). */
#define INCIDENT_TIME_MAX 253402300799LL

static int fail(char *err, size_t errlen, const char *fmt, const char *field)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, field);
    return -1;
}

/* An identifier: present (when required), at most max bytes, UTF-8 text
 * without control characters. */
static int check_id(const char *field, const char *v, size_t max, int required, char *err,
                    size_t errlen)
{
    if (!v || !*v)
        return required ? fail(err, errlen, "incident: %s is required", field) : 0;
    size_t n = strlen(v);
    if (n > max)
        return fail(err, errlen, "incident: %s is too long", field);
    if (!utf8_valid(v, n))
        return fail(err, errlen, "incident: %s is not valid UTF-8", field);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return fail(err, errlen, "incident: %s contains control characters", field);
    return 0;
}

/* Connector ids: lower-case letters, digits, '_' and '-'. */
static int check_source(const char *v, char *err, size_t errlen)
{
    if (!v || !*v)
        return fail(err, errlen, "incident: %s is required", "source");
    size_t n = strlen(v);
    if (n > INC_SOURCE_MAX)
        return fail(err, errlen, "incident: %s is too long", "source");
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_' ||
              v[i] == '-'))
            return fail(err, errlen, "incident: %s must be a connector id", "source");
    return 0;
}

static const char *state_name(alert_state st)
{
    switch (st) {
    case ALERT_FIRING:
        return "firing";
    case ALERT_RESOLVED:
        return "resolved";
    case ALERT_ACKNOWLEDGED:
        return "acknowledged";
    case ALERT_INFO:
        return "info";
    }
    return NULL;
}

/* A link is kept only when it is http(s) and fits. */
static void copy_url(const char *url, char *out, size_t cap)
{
    out[0] = '\0';
    if (!url || strlen(url) >= cap || !utf8_valid(url, strlen(url)))
        return;
    if (strncmp(url, "https://", 8) && strncmp(url, "http://", 7))
        return;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '<' || *p == '>')
            return;
    memcpy(out, url, strlen(url) + 1);
}

/* The alert's JSON as stored: compact, valid UTF-8, at most
 * INCIDENT_RAW_MAX bytes; larger documents are replaced by a marker (a cut
 * JSON document would not parse).  NULL raw: NULL.  -1 on no memory. */
static int raw_text(const cJSON *raw, char **out)
{
    *out = NULL;
    if (!raw)
        return 0;
    char *txt = cJSON_PrintUnformatted(raw);
    if (!txt)
        return -1;
    size_t n = strlen(txt);
    if (!utf8_valid(txt, n)) {
        char *clean = utf8_sanitize(txt, n, &n);
        cJSON_free(txt);
        if (!clean)
            return -1;
        txt = clean;
    } else {
        char *copy = strdup(txt);
        cJSON_free(txt);
        if (!copy)
            return -1;
        txt = copy;
    }
    if (n > INCIDENT_RAW_MAX) {
        free(txt);
        char marker[96];
        snprintf(marker, sizeof(marker), "{\"aurora_truncated\":true,\"bytes\":%zu}", n);
        txt = strdup(marker);
        if (!txt)
            return -1;
    }
    *out = txt;
    return 0;
}

/* The job handed to the investigation service (docs/rca-outbox.md). */
static char *rca_payload(const char *incident_id, const char *org_id, const store_alert_in *a,
                         const char *summary)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *inc = cJSON_AddObjectToObject(o, "incident");
    if (!o || !inc) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(inc, "id", incident_id);
    cJSON_AddStringToObject(inc, "org_id", org_id);
    cJSON_AddStringToObject(inc, "source", a->source);
    cJSON_AddStringToObject(inc, "title", a->title);
    cJSON_AddStringToObject(inc, "service", a->service);
    cJSON_AddStringToObject(inc, "severity", a->severity);
    cJSON_AddStringToObject(inc, "fingerprint", a->fingerprint);
    cJSON_AddStringToObject(inc, "source_alert_id", a->source_alert_id);
    cJSON_AddStringToObject(inc, "url", a->url);
    time_json_add(inc, "started_at", a->occurred_at);
    cJSON_AddStringToObject(o, "summary", summary);
    cJSON_AddStringToObject(o, "message", a->message);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

/* Display copies of one alert's text (heap: the message is 4 KiB). */
typedef struct {
    char title[INC_TITLE_MAX + 1];
    char service[INC_SERVICE_MAX + 1];
    char service_key[INC_SERVICE_MAX + 1];
    char message[INC_MESSAGE_MAX + 1];
    char url[INC_URL_MAX + 1];
    char summary[INC_SUMMARY_MAX + 1];
} alert_text;

static int64_t correlation_window(const worker_ctx *w)
{
    int64_t v = w && w->cfg ? server_setting_int(w->cfg, "AURORA_INCIDENT_CORRELATION_WINDOW_S")
                            : 0;
    return v > 0 ? v : INCIDENT_CORRELATION_WINDOW_DEFAULT;
}

int incident_alert_check(const char *org_id, const char *user_id, const incident_alert *a,
                         char *err, size_t errlen)
{
    if (!a)
        return fail(err, errlen, "incident: %s", "missing argument");
    if (check_id("org_id", org_id, STORE_ID_MAX, 1, err, errlen) ||
        check_id("user_id", user_id, STORE_ID_MAX, 0, err, errlen) ||
        check_source(a->source, err, errlen) ||
        check_id("delivery_id", a->delivery_id, INC_DELIVERY_MAX, 1, err, errlen) ||
        check_id("dedup_key", a->dedup_key, INC_KEY_MAX, 0, err, errlen) ||
        check_id("source_alert_id", a->source_alert_id, INC_KEY_MAX, 0, err, errlen) ||
        check_id("fingerprint", a->fingerprint, INC_KEY_MAX, 1, err, errlen))
        return -1;
    if (!state_name(a->state))
        return fail(err, errlen, "incident: %s is not a known alert state", "state");
    if (a->index < 0)
        return fail(err, errlen, "incident: %s is negative", "index");
    if (a->occurred_at < 0 || a->occurred_at > INCIDENT_TIME_MAX)
        return fail(err, errlen, "incident: %s is out of range", "occurred_at");
    int visible = 0;
    for (const char *p = a->title; p && *p && !visible; p++)
        visible = (unsigned char)*p > 0x20 && *p != 0x7f;
    if (!visible)
        return fail(err, errlen, "incident: %s is required", "title");
    return 0;
}

int incident_ingest(worker_ctx *w, const char *org_id, const char *user_id,
                    const incident_alert *a, int64_t now, incident_outcome *out, char *err,
                    size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (out)
        memset(out, 0, sizeof(*out));
    if (!w || !w->store || !a || !out)
        return fail(err, errlen, "incident: %s", "missing argument");
    if (incident_alert_check(org_id, user_id, a, err, errlen) < 0)
        return -1;
    if (now <= 0)
        now = (int64_t)time(NULL);

    alert_text *t = calloc(1, sizeof(*t));
    if (!t)
        return fail(err, errlen, "incident: %s", "out of memory");
    int rc = -1;
    char *raw = NULL, *payload = NULL;
    if (incident_text_copy(a->title, t->title, sizeof(t->title), 0) < 0 ||
        incident_text_copy(a->service, t->service, sizeof(t->service), 0) < 0 ||
        incident_text_copy(a->message, t->message, sizeof(t->message), 1) < 0) {
        fail(err, errlen, "incident: %s", "out of memory");
        goto done;
    }
    if (!t->title[0]) {
        fail(err, errlen, "incident: %s is required", "title");
        goto done;
    }
    incident_service_key(t->service, t->service_key, sizeof(t->service_key));
    copy_url(a->url, t->url, sizeof(t->url));
    if (raw_text(a->raw, &raw) < 0) {
        fail(err, errlen, "incident: %s", "out of memory");
        goto done;
    }

    store_alert_in in = {
        .org_id = org_id,
        .user_id = user_id && *user_id ? user_id : NULL,
        .source = a->source,
        .delivery_id = a->delivery_id,
        .idx = a->index,
        .dedup_key = a->dedup_key && *a->dedup_key ? a->dedup_key : NULL,
        .source_alert_id = a->source_alert_id ? a->source_alert_id : "",
        .fingerprint = a->fingerprint,
        .state = state_name(a->state),
        .title = t->title,
        .service = t->service,
        .service_key = t->service_key,
        .severity = incident_severity_normalize(a->severity),
        .message = t->message,
        .url = t->url,
        .occurred_at = a->occurred_at > 0 ? a->occurred_at : now,
        .received_at = now,
        .raw_json = raw,
    };
    char incident_id[STORE_ID_LEN], job_id[STORE_ID_LEN];
    if (id_generate("inc_", incident_id, sizeof(incident_id)) < 0 ||
        id_generate("rca_", job_id, sizeof(job_id)) < 0) {
        fail(err, errlen, "incident: %s", "cannot generate an id");
        goto done;
    }
    incident_summary_in sum = { .title = in.title,
                                .source = in.source,
                                .service = in.service,
                                .severity = in.severity,
                                .fingerprint = in.fingerprint,
                                .url = in.url,
                                .message = in.message,
                                .started_at = in.occurred_at };
    incident_summary(&sum, t->summary, sizeof(t->summary));
    payload = rca_payload(incident_id, org_id, &in, t->summary);
    if (!payload) {
        fail(err, errlen, "incident: %s", "out of memory");
        goto done;
    }
    store_incident_new fresh = { .incident_id = incident_id,
                                 .summary = t->summary,
                                 .rca_job_id = job_id,
                                 .rca_payload = payload };
    store_ingest_out so;
    int src = store_incident_ingest(w->store, &in, correlation_window(w), &fresh, &so);
    if (src != STORE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "incident: %s", store_errmsg(w->store));
        goto done;
    }
    static const ingest_result map[] = {
        [STORE_INGEST_CREATED] = INGEST_CREATED,
        [STORE_INGEST_ATTACHED] = INGEST_ATTACHED,
        [STORE_INGEST_UNMATCHED] = INGEST_UNMATCHED,
        [STORE_INGEST_DUPLICATE] = INGEST_DUPLICATE,
    };
    out->result = map[so.result];
    memcpy(out->incident_id, so.incident_id, sizeof(out->incident_id));
    memcpy(out->alert_id, so.alert_id, sizeof(out->alert_id));
    if (so.result == STORE_INGEST_UNMATCHED && a->state == ALERT_FIRING)
        log_info("incident: %s firing alert %s repeats an instance already resolved (recorded, "
                 "skipped)", a->source, so.alert_id);
    else if (so.result == STORE_INGEST_UNMATCHED)
        log_info("incident: %s %s alert %s matched no incident (recorded, skipped)", a->source,
                 in.state, so.alert_id);
    else if (so.result == STORE_INGEST_CREATED)
        log_info("incident: %s opened from %s alert %s", so.incident_id, a->source, so.alert_id);
    rc = 0;
done:
    free(raw);
    cJSON_free(payload);
    free(t);
    return rc;
}
