/* grafana.c — Grafana alerting (connector guide: Observability Tools >
 * Grafana), on the connector kit's inbound webhooks (kit_webhook.h) and the
 * incident core (incidents.h).
 *
 *   POST /grafana/alerts/webhook/{user_id}[?org_id=]  Grafana's webhook contact
 *                          point (no API key: the per-user URL is the
 *                          credential; PUT too, the contact point's other
 *                          HTTP method).  The first accepted delivery — usually
 *                          the contact point's "Test" — connects the user.
 *   GET  /grafana/status   connected, the webhook URL to paste, last delivery
 *   POST /grafana/disconnect  deactivates: the row is kept with status
 *                          "disabled", deliveries are refused 403
 *                          GRAFANA_DISCONNECTED (nothing stored)
 *   POST /grafana/reconnect   active again; the same URL works unchanged
 *   POST|DELETE /grafana/signing-secret  optional HMAC secret (below)
 *   DELETE /api/connectors/grafana  the generic disconnect deletes the row;
 *                          the .disconnected hook puts it back "disabled",
 *                          so both ways deactivate and neither forgets the
 *                          tenant (kit_tenant.c: a row pins the organization)
 *   GET  /api/grafana/events[/{event_id}]  the organization's stored deliveries
 *
 * Intake order (worker thread): tenant (kit_tenant_resolve, a member without
 * a row will do; 400 for a malformed id, 404 unknown, both before anything
 * else is read) → size cap (GRAFANA_WEBHOOK_MAX_BODY, 413) → the user's
 * signing secret, if any (the kit checks the HMAC: 401) → disconnected? 403
 * (with a secret, only once the signature verified) →
 * Grafana's shape (400) → per-user rate limit, counted only for deliveries
 * that passed the signature (GRAFANA_WEBHOOK_RATE_LIMIT_PER_MINUTE, 429 with
 * Retry-After) → the organization's alert budget
 * (GRAFANA_WEBHOOK_ALERTS_PER_MINUTE, 429), not taken by a redelivery (the
 * kit's admit) → connect on first delivery → the kit
 * commits the raw body → 200 → processing: one incident_ingest() per element
 * of alerts[], in order (grafana.h says how each field is mapped).
 *
 * Grafana sends no delivery id: the kit keys a delivery on the SHA-256 of its
 * body, so a retried or replayed body is a duplicate (200, nothing stored,
 * no alert budget taken).
 * A repeat notification of an unchanged group is the same bytes and is
 * likewise not counted twice.
 *
 * Signature (optional, per user): POST /grafana/signing-secret stores a
 * secret in the secrets backend (aurora/orgs/<org>/users/<user>/grafana/
 * webhook-secret); from then on every delivery must carry Grafana's HMAC
 * Signature (contact point > Optional settings > HMAC Signature: that
 * secret, the header X-Grafana-Alerting-Signature, or Grafana's
 * X-Grafana-Alert-Signature when that field is left empty), checked by the kit in
 * constant time, 401 otherwise.  With the contact point's Timestamp Header
 * set to X-Grafana-Alerting-Timestamp, Grafana signs "<unix seconds>:<body>"
 * and sends the seconds in that header: the kit then checks that signature
 * and a ±5 minute window, so a captured delivery cannot be replayed later.
 * {"require_timestamp": true} with the secret refuses deliveries signed
 * over the body alone (what a capture from before the header was set is).
 * DELETE /grafana/signing-secret goes back to unsigned; the generic DELETE
 * /api/connectors/grafana deletes it with the connection's other secrets. */
#include "grafana.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "buf.h"
#include "connector.h"
#include "crypto.h"
#include "kit_secrets.h"
#include "kit_tenant.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "secrets.h"
#include "server_config.h"
#include "timefmt.h"

#define GF_ID "grafana"
#define WEBHOOK_PATH "/grafana/alerts/webhook/"
#define SWEEP_BATCH 100
#define SWEEP_INTERVAL_S 20
#define RATE_WINDOW_S 60
#define TIME_MAX_S 253402300799LL /* 9999-12-31T23:59:59Z, the incident store's limit */
#define MAX_ORGS_SHOWN 8
#define SECRET_FIELD "webhook-secret"
#define SECRET_MIN 16 /* bytes of a signing secret: at least 128 bits of a random string */
/* The contact point's Timestamp Header to set: headers are captured by name at
 * start-up (http_capture_header), so the name is fixed, not the user's choice. */
#define TIMESTAMP_HEADER "X-Grafana-Alerting-Timestamp"
#define META_TS_REQUIRED "timestamp_required"
#define REPLAY_WINDOW_S 300
#define MSG_DISCONNECTED                                                                           \
    "The Grafana connection of this user is disconnected in Aurora: alerts are rejected until "   \
    "it is reconnected (Reconnect in Aurora, or POST /grafana/reconnect); the contact point "     \
    "needs no change"

/* ---- payload: shape ----------------------------------------------------------------------- */

static int why_fail(char *why, size_t whylen, const char *fmt, const char *a, int i)
{
    if (why && whylen) {
        if (i >= 0) {
            char tmp[200];
            snprintf(tmp, sizeof(tmp), fmt, a);
            snprintf(why, whylen, "alerts[%d]: %s", i, tmp);
        } else {
            snprintf(why, whylen, fmt, a);
        }
    }
    return -1;
}

/* An object whose members are all strings (labels, annotations); absent is fine
 * unless required. */
static int string_map_ok(const cJSON *o, int required)
{
    if (!o)
        return !required;
    if (!cJSON_IsObject(o) || cJSON_GetArraySize(o) > GRAFANA_MAX_LABELS)
        return 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        if (!cJSON_IsString(it) || !it->string)
            return 0;
    }
    return 1;
}

static int optional_string_ok(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsString(v) || cJSON_IsNull(v);
}

static int status_ok(const char *s)
{
    return s && (!strcmp(s, "firing") || !strcmp(s, "resolved"));
}

/* Printable ASCII, 1..max bytes (a provider id kept as a store key). */
static int key_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int alert_check(const cJSON *a, int i, char *why, size_t whylen)
{
    if (!cJSON_IsObject(a))
        return why_fail(why, whylen, "%s", "not an object", i);
    if (!status_ok(api_json_str(a, "status")))
        return why_fail(why, whylen, "%s", "status must be \"firing\" or \"resolved\"", i);
    if (!string_map_ok(cJSON_GetObjectItemCaseSensitive(a, "labels"), 1))
        return why_fail(why, whylen, "%s", "labels must be an object of strings", i);
    if (!string_map_ok(cJSON_GetObjectItemCaseSensitive(a, "annotations"), 0))
        return why_fail(why, whylen, "%s", "annotations must be an object of strings", i);
    static const char *const strings[] = { "fingerprint", "generatorURL", "silenceURL",
                                           "dashboardURL", "panelURL", "valueString",
                                           "startsAt", "endsAt" };
    for (size_t k = 0; k < sizeof(strings) / sizeof(strings[0]); k++)
        if (!optional_string_ok(a, strings[k]))
            return why_fail(why, whylen, "%s must be a string", strings[k], i);
    const char *fp = api_json_str(a, "fingerprint");
    if (fp && *fp && !key_ok(fp, GRAFANA_FINGERPRINT_MAX))
        return why_fail(why, whylen, "%s", "fingerprint must be 1-256 printable ASCII characters",
                        i);
    int64_t t;
    const char *starts = api_json_str(a, "startsAt");
    if (starts && *starts && grafana_parse_time(starts, &t) < 0)
        return why_fail(why, whylen, "%s", "startsAt is not an RFC 3339 time", i);
    const char *ends = api_json_str(a, "endsAt");
    if (ends && *ends && grafana_parse_time(ends, &t) < 0)
        return why_fail(why, whylen, "%s", "endsAt is not an RFC 3339 time", i);
    return 0;
}

int grafana_payload_check(const cJSON *json, char *why, size_t whylen)
{
    if (!cJSON_IsObject(json))
        return why_fail(why, whylen, "%s", "the body is not a JSON object", -1);
    const cJSON *alerts = cJSON_GetObjectItemCaseSensitive(json, "alerts");
    if (!cJSON_IsArray(alerts))
        return why_fail(why, whylen, "%s",
                        "not a Grafana webhook payload: alerts[] is missing (Grafana's webhook "
                        "contact point sends receiver, status, alerts[], …)",
                        -1);
    int n = cJSON_GetArraySize(alerts);
    if (n < 1 || n > GRAFANA_MAX_ALERTS)
        return why_fail(why, whylen, "%s", "alerts[] must hold 1 to 1000 alerts", -1);
    if (!status_ok(api_json_str(json, "status")))
        return why_fail(why, whylen, "%s", "status must be \"firing\" or \"resolved\"", -1);
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(json, "version");
    if (version && !cJSON_IsString(version))
        return why_fail(why, whylen, "%s", "version must be a string", -1);
    static const char *const maps[] = { "groupLabels", "commonLabels", "commonAnnotations" };
    for (size_t k = 0; k < sizeof(maps) / sizeof(maps[0]); k++)
        if (!string_map_ok(cJSON_GetObjectItemCaseSensitive(json, maps[k]), 0))
            return why_fail(why, whylen, "%s must be an object of strings", maps[k], -1);
    int i = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, alerts)
    {
        if (alert_check(a, i, why, whylen) < 0)
            return -1;
        i++;
    }
    return 0;
}

/* ---- payload: times -------------------------------------------------------------------------- */

int grafana_parse_time(const char *s, int64_t *out)
{
    /* "YYYY-MM-DDTHH:MM:SS" [".digits"] ("Z" | ±HH:MM) */
    size_t n = s ? strlen(s) : 0;
    if (n < 20 || n > 64)
        return -1;
    char base[21];
    memcpy(base, s, 19);
    base[19] = 'Z';
    base[20] = '\0';
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        const char *d = p;
        while (isdigit((unsigned char)*p))
            p++;
        if (p == d || p - d > 9)
            return -1;
    }
    int64_t offset = 0;
    if (!strcmp(p, "Z") || !strcmp(p, "z")) {
        offset = 0;
    } else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && isdigit((unsigned char)p[1]) &&
               isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
               isdigit((unsigned char)p[5])) {
        int hh = (p[1] - '0') * 10 + (p[2] - '0'), mm = (p[4] - '0') * 10 + (p[5] - '0');
        if (hh > 23 || mm > 59)
            return -1;
        offset = (int64_t)(hh * 3600 + mm * 60) * (p[0] == '+' ? 1 : -1);
    } else {
        return -1;
    }
    int64_t t;
    if (time_parse_rfc3339(base, &t) < 0)
        return -1;
    *out = t - offset; /* local time minus its offset from UTC */
    return 0;
}

/* ---- payload: mapping ------------------------------------------------------------------------ */

static const char *label(const cJSON *a, const char *key)
{
    const char *v = api_json_str(cJSON_GetObjectItemCaseSensitive(a, "labels"), key);
    return v && *v ? v : NULL;
}

static const char *annotation(const cJSON *a, const char *key)
{
    const char *v = api_json_str(cJSON_GetObjectItemCaseSensitive(a, "annotations"), key);
    return v && *v ? v : NULL;
}

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* "labels:" + SHA-256 of the labels sorted by name, each "name\0value\0":
 * the same label set always gives the same value, whatever their order. */
static int fingerprint_from_labels(const cJSON *labels, char out[GRAFANA_FINGERPRINT_MAX + 1])
{
    const char *names[GRAFANA_MAX_LABELS];
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, labels)
    {
        if (n >= GRAFANA_MAX_LABELS)
            return -1;
        names[n++] = it->string;
    }
    qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
    buf_t b = BUF_INIT;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *v = api_json_str(labels, names[i]);
        rc = buf_append(&b, names[i], strlen(names[i]) + 1) < 0 ||
                     buf_append(&b, v ? v : "", strlen(v ? v : "") + 1) < 0
                 ? -1
                 : 0;
    }
    if (rc == 0) {
        char hex[65];
        crypto_sha256_hex(b.data ? b.data : "", b.len, hex);
        snprintf(out, GRAFANA_FINGERPRINT_MAX + 1, "labels:%s", hex);
    }
    buf_free(&b);
    return rc;
}

static char *build_message(const cJSON *a)
{
    const char *text = annotation(a, "description");
    if (!text)
        text = annotation(a, "summary");
    const char *values = api_json_str(a, "valueString");
    if (values && !*values)
        values = NULL;
    if (!text && !values)
        return NULL;
    size_t tl = text ? strlen(text) : 0, vl = values ? strlen(values) : 0;
    if (tl > GRAFANA_MESSAGE_MAX)
        tl = GRAFANA_MESSAGE_MAX; /* the store cuts again at a UTF-8 boundary */
    if (vl > GRAFANA_MESSAGE_MAX - tl)
        vl = GRAFANA_MESSAGE_MAX - tl;
    char *m = malloc(tl + vl + 2);
    if (!m)
        return NULL;
    size_t o = 0;
    memcpy(m, text ? text : "", tl);
    o += tl;
    if (tl && vl)
        m[o++] = '\n';
    memcpy(m + o, values ? values : "", vl);
    m[o + vl] = '\0';
    return m;
}

int grafana_alert_map(const cJSON *a, grafana_alert *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (alert_check(a, 0, why, whylen) < 0)
        return -1;
    incident_alert *ia = &out->alert;
    ia->source = GF_ID;
    const char *fp = api_json_str(a, "fingerprint");
    if (fp && *fp) {
        snprintf(out->fingerprint, sizeof(out->fingerprint), "%s", fp);
    } else {
        if (fingerprint_from_labels(cJSON_GetObjectItemCaseSensitive(a, "labels"),
                                    out->fingerprint) < 0)
            return why_fail(why, whylen, "%s", "out of memory", -1);
        out->fingerprint_computed = 1;
    }
    ia->fingerprint = out->fingerprint;
    ia->source_alert_id = out->fingerprint;
    int resolved = !strcmp(api_json_str(a, "status"), "resolved");
    ia->state = resolved ? ALERT_RESOLVED : ALERT_FIRING;

    ia->title = label(a, "alertname");
    if (!ia->title)
        ia->title = annotation(a, "summary");
    if (!ia->title)
        ia->title = "Grafana alert";
    static const char *const service_labels[] = { "service", "service_name", "app",
                                                  "application", "job", "namespace" };
    for (size_t k = 0; k < sizeof(service_labels) / sizeof(service_labels[0]) && !ia->service;
         k++)
        ia->service = label(a, service_labels[k]);
    const char *sev = label(a, "severity");
    ia->severity = incident_severity_normalize(sev ? sev : label(a, "priority"));
    out->message = build_message(a);
    ia->message = out->message;
    static const char *const urls[] = { "generatorURL", "panelURL", "dashboardURL" };
    for (size_t k = 0; k < sizeof(urls) / sizeof(urls[0]) && !ia->url; k++) {
        const char *u = api_json_str(a, urls[k]);
        ia->url = u && *u ? u : NULL;
    }
    int64_t starts = 0, ends = 0;
    const char *s = api_json_str(a, "startsAt"), *e = api_json_str(a, "endsAt");
    if (!s || grafana_parse_time(s, &starts) < 0 || starts <= 0)
        starts = 0;
    if (!e || grafana_parse_time(e, &ends) < 0 || ends <= 0)
        ends = 0;
    /* A resolution happened at endsAt (the incident's resolved_at); a firing
     * alert at startsAt (the incident's started_at).  0: the time of ingest. */
    ia->occurred_at = resolved && ends > 0 ? ends : starts;
    if (ia->occurred_at > TIME_MAX_S)
        ia->occurred_at = 0;
    ia->raw = a;
    return 0;
}

void grafana_alert_free(grafana_alert *g)
{
    if (!g)
        return;
    free(g->message);
    g->message = NULL;
}

int grafana_is_test_alert(const cJSON *a)
{
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(a, "labels");
    const char *name = api_json_str(labels, "alertname"), *inst = api_json_str(labels, "instance");
    return cJSON_GetArraySize(labels) == 2 && name && inst && !strcmp(name, "TestAlert") &&
           !strcmp(inst, "Grafana");
}

/* ---- the connector row ----------------------------------------------------------------------- */

/* Writes the user's row with status and one metadata time set to now
 * (connected_at kept from before when there is one).  meta_from: metadata to
 * start from when the row is gone (the generic DELETE removed it), else NULL. */
static int row_put(worker_ctx *w, const char *org_id, const char *user_id, const char *status,
                   const char *time_key, const char *meta_from)
{
    store_connector row;
    int rc = store_connector_get(w->store, org_id, user_id, GF_ID, &row);
    if (rc == STORE_ERR)
        return -1;
    int existed = rc == STORE_OK;
    if (!existed) {
        memset(&row, 0, sizeof(row));
        snprintf(row.org_id, sizeof(row.org_id), "%s", org_id);
        snprintf(row.user_id, sizeof(row.user_id), "%s", user_id);
        snprintf(row.connector, sizeof(row.connector), "%s", GF_ID);
    }
    cJSON *meta = cJSON_Parse(existed && row.metadata_json ? row.metadata_json
                              : meta_from                   ? meta_from
                                                            : "{}");
    if (!cJSON_IsObject(meta)) {
        cJSON_Delete(meta);
        meta = cJSON_CreateObject();
    }
    int64_t now = (int64_t)time(NULL);
    if (meta && !cJSON_GetObjectItemCaseSensitive(meta, "connected_at"))
        cJSON_AddNumberToObject(meta, "connected_at", (double)now);
    if (meta && time_key) {
        cJSON_DeleteItemFromObjectCaseSensitive(meta, time_key);
        cJSON_AddNumberToObject(meta, time_key, (double)now);
    }
    char *text = meta ? cJSON_PrintUnformatted(meta) : NULL;
    cJSON_Delete(meta);
    if (!text) {
        if (existed)
            store_connector_free(&row);
        return -1;
    }
    free(row.metadata_json);
    row.metadata_json = text;
    snprintf(row.status, sizeof(row.status), "%s", status);
    snprintf(row.account, sizeof(row.account), "webhook");
    rc = store_connector_upsert(w->store, &row);
    store_connector_free(&row);
    return rc == STORE_OK ? 0 : -1;
}

static int64_t meta_time(const char *meta_json, const char *key)
{
    cJSON *m = meta_json ? cJSON_Parse(meta_json) : NULL;
    int64_t t = 0;
    if (!api_json_int64(cJSON_GetObjectItemCaseSensitive(m, key), &t))
        t = 0;
    cJSON_Delete(m);
    return t;
}

/* ---- intake callbacks ------------------------------------------------------------------------ */

/* 1 when the user's deliveries of this minute are over the limit (429 in
 * resp), -1 on a store failure (503 in resp), else 0 (one slot taken; its
 * window in *window, 0 when no limit applies). */
static int rate_limited(worker_ctx *w, const kit_tenant *t, http_response *resp,
                        int64_t *window)
{
    *window = 0;
    int64_t limit = server_setting_int(w->cfg, "GRAFANA_WEBHOOK_RATE_LIMIT_PER_MINUTE");
    if (limit <= 0)
        return 0;
    char key[2 * STORE_ID_LEN + 32];
    snprintf(key, sizeof(key), "grafana-webhook:%s:%s", t->org_id, t->user_id);
    if (api_rate_take(w, key, limit, RATE_WINDOW_S, "Grafana webhook deliveries for this user",
                      window, resp) == 0)
        return 0;
    return resp->status == 429 ? 1 : -1;
}

/* The work a delivery makes is per alert, not per delivery: each of up to
 * GRAFANA_MAX_ALERTS is one store transaction on a store worker and may
 * open an incident with its RCA job (1000 alerts with distinct services:
 * 1000 incidents and jobs, ~7 s of one of the 4 store workers on a 2-core
 * test machine).  Counted per delivery only, one URL at 120 deliveries a
 * minute opened 120,000 incidents a minute and held every store worker.
 * So the alerts are counted too, per organization: incidents and RCA jobs
 * are the organization's, and a budget per user (the URL names one) gave
 * an organization of k members, or whoever holds k members' URLs, k
 * budgets.  1 when this delivery's alerts would go over
 * GRAFANA_WEBHOOK_ALERTS_PER_MINUTE (429 in resp), -1 on a store failure
 * (503), else 0 (its alerts taken, and named in *cost: the kit gives them
 * back if the commit stores nothing). */
static int alerts_limited(worker_ctx *w, const kit_tenant *t, const cJSON *json,
                          kit_wh_cost *cost, http_response *resp)
{
    int64_t limit = server_setting_int(w->cfg, "GRAFANA_WEBHOOK_ALERTS_PER_MINUTE");
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(json, "alerts"));
    if (limit <= 0 || n <= 0)
        return 0;
    char key[sizeof(cost->key)];
    snprintf(key, sizeof(key), "grafana-alerts:%s", t->org_id);
    int64_t now = (int64_t)time(NULL), start = now - now % RATE_WINDOW_S;
    int allowed = 0;
    if (store_rate_take_n(w->store, key, start, limit, n, start - RATE_WINDOW_S, &allowed) !=
        STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    if (allowed) {
        memcpy(cost->key, key, sizeof(cost->key));
        cost->window_start = start;
        cost->n = n;
        return 0;
    }
    char retry[24];
    snprintf(retry, sizeof(retry), "%lld", (long long)(start + RATE_WINDOW_S - now));
    http_resp_error(resp, 429, "RATE_LIMITED",
                    "too many Grafana alerts for this organization (limit %lld alerts per minute "
                    "over its members' webhook URLs, this delivery has %d; "
                    "GRAFANA_WEBHOOK_ALERTS_PER_MINUTE); retry in %s s",
                    (long long)limit, n, retry);
    http_resp_add_header(resp, "retry-after", retry);
    return 1;
}

/* The user's optional signing secret (POST /grafana/signing-secret): when set,
 * every delivery must carry Grafana's HMAC (the kit answers 401 otherwise);
 * when not, deliveries are accepted unsigned (KIT_WH_SIGNED_IF_CONFIGURED). */
static int add_signing_secret(worker_ctx *w, const kit_tenant *t, kit_wh_keys *out,
                              http_response *resp)
{
    store_connector row;
    int rc = store_connector_get(w->store, t->org_id, t->user_id, GF_ID, &row);
    if (rc == STORE_NOT_FOUND)
        return 0;
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    char ref[sizeof(row.secret_ref)];
    snprintf(ref, sizeof(ref), "%s", row.secret_ref);
    int require_ts = meta_time(row.metadata_json, META_TS_REQUIRED) > 0;
    store_connector_free(&row);
    if (!ref[0])
        return 0;
    out->require_timestamp = require_ts;
    unsigned char *val = NULL;
    size_t len = 0;
    /* A reference whose secret is gone: refuse (503) rather than accept
     * unsigned what the user asked to be signed. */
    if (kit_secret_get(w, ref, &val, &len, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                       "the Grafana signing secret is missing from the secrets backend; set it "
                       "again (POST /grafana/signing-secret)",
                       resp) < 0)
        return -1;
    rc = kit_wh_keys_add(out, val, len);
    secrets_free(val, len);
    if (rc < 0) {
        http_resp_error(resp, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                        "the stored Grafana signing secret is unusable; set it again");
        return -1;
    }
    return 0;
}

static int webhook_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out,
                        http_response *resp)
{
    kit_tenant t;
    if (kit_tenant_resolve(w, GF_ID, req, http_param(req, "user_id"), KIT_TENANT_MEMBER, NULL,
                           &t, resp) < 0)
        return -1;
    int64_t cap = server_setting_int(w->cfg, "GRAFANA_WEBHOOK_MAX_BODY");
    if (cap > 0 && (int64_t)req->body.len > cap) {
        http_resp_error(resp, 413, "PAYLOAD_TOO_LARGE",
                        "Grafana webhook body over %lld bytes (GRAFANA_WEBHOOK_MAX_BODY)",
                        (long long)cap);
        return -1;
    }
    if (t.has_row && add_signing_secret(w, &t, out, resp) < 0)
        return -1;
    /* Disconnected: refused here only when the URL is the credential (no
     * secret).  With a secret only a delivery the kit verified is told so
     * (admit refuses it): a forged one gets the same 401 as for any user. */
    if (t.has_row && !t.connected && out->nsecrets == 0) {
        http_resp_error(resp, 403, "GRAFANA_DISCONNECTED", "%s", MSG_DISCONNECTED);
        return -1;
    }
    snprintf(out->org_id, sizeof(out->org_id), "%s", t.org_id);
    snprintf(out->tenant_key, sizeof(out->tenant_key), "%s", t.user_id);
    return 0;
}

/* Grafana's shape. */
static int webhook_check(worker_ctx *w, const http_request *req, const cJSON *json,
                         http_response *resp)
{
    (void)w;
    (void)req;
    char why[256];
    if (grafana_payload_check(json, why, sizeof(why)) < 0) {
        http_resp_error(resp, 400, "INVALID_GRAFANA_PAYLOAD", "%s", why);
        return -1;
    }
    return 0;
}

/* The limits, then "Aurora auto-connects when it receives the test
 * webhook": the first accepted delivery creates the user's active row.  A
 * redelivery (Grafana retrying a notification already stored) counts as a
 * delivery but takes no alerts: it stores nothing and opens nothing, and
 * must be acknowledged even once the organization's budget is spent. */
static int webhook_admit(worker_ctx *w, const http_request *req, const cJSON *json,
                         const store_webhook_delivery *d, int redelivery, kit_wh_cost *cost,
                         http_response *resp)
{
    (void)d;
    kit_tenant t;
    if (kit_tenant_resolve(w, GF_ID, req, http_param(req, "user_id"), KIT_TENANT_MEMBER, NULL,
                           &t, resp) < 0)
        return -1;
    /* Disconnected since keys ran, or a signing user's (keys left that to
     * after the signature). */
    if (t.has_row && !t.connected) {
        http_resp_error(resp, 403, "GRAFANA_DISCONNECTED", "%s", MSG_DISCONNECTED);
        return -1;
    }
    /* Counted after the signature (the kit verified it before admit): forged
     * posts cannot spend a signing user's allowance. */
    int64_t window = 0;
    if (rate_limited(w, &t, resp, &window))
        return -1;
    if (!redelivery && alerts_limited(w, &t, json, cost, resp)) {
        /* Not let in: the delivery's slot is given back, so a refused big
         * delivery does not also spend the small ones' allowance. */
        char key[2 * STORE_ID_LEN + 32];
        snprintf(key, sizeof(key), "grafana-webhook:%s:%s", t.org_id, t.user_id);
        if (window && store_rate_give_back(w->store, key, window) != STORE_OK)
            log_warn("grafana: giving back a delivery slot: %s", store_errmsg(w->store));
        return -1;
    }
    if (!t.has_row) {
        if (row_put(w, t.org_id, t.user_id, "active", NULL, NULL) < 0) {
            api_store_error(w, resp);
            return -1;
        }
        log_info("grafana: connected on first delivery for user %s (org %s)", t.user_id,
                 t.org_id);
    }
    return 0;
}

/* ---- processing ------------------------------------------------------------------------------ */

static int webhook_process(worker_ctx *w, const store_webhook_delivery *d, char *err,
                           size_t errlen)
{
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    char why[256];
    if (grafana_payload_check(json, why, sizeof(why)) < 0) {
        /* Checked before it was stored: only a row written by something else. */
        snprintf(err, errlen, "not a Grafana payload: %s", why);
        cJSON_Delete(json);
        return KIT_WH_IGNORED;
    }
    int64_t now = (int64_t)time(NULL);
    int out = KIT_WH_IGNORED, idx = 0, created = 0, attached = 0, unmatched = 0;
    int64_t truncated = 0;
    if (api_json_int64(cJSON_GetObjectItemCaseSensitive(json, "truncatedAlerts"), &truncated) &&
        truncated > 0)
        log_warn("grafana: delivery %s: Grafana left out %lld alerts of this group (the contact "
                 "point's Max Alerts); they reach Aurora only when they change state",
                 d->id, (long long)truncated);
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(json, "alerts"))
    {
        int i = idx++;
        if (grafana_is_test_alert(a)) {
            log_info("grafana: test notification from contact point '%.64s' (user %s, org %s)",
                     api_json_str(json, "receiver") ? api_json_str(json, "receiver") : "?",
                     d->tenant_key, d->org_id);
            continue;
        }
        grafana_alert g;
        if (grafana_alert_map(a, &g, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s", why);
            out = KIT_WH_FAILED;
            break;
        }
        g.alert.delivery_id = d->id;
        g.alert.index = i;
        g.alert.occurred_at = kit_webhook_occurred_at(d, g.alert.occurred_at); /* no startsAt */
        incident_outcome res;
        int rc = incident_ingest(w, d->org_id, d->tenant_key[0] ? d->tenant_key : NULL, &g.alert,
                                 now, &res, err, errlen);
        if (rc == 0 && res.result == INGEST_UNMATCHED)
            log_info("grafana: %s of alert %s (fingerprint %s%s) %s: recorded, skipped "
                     "(delivery %s)",
                     g.alert.state == ALERT_FIRING ? "firing copy" : "resolution", g.alert.title,
                     g.fingerprint,
                     g.fingerprint_computed ? ", from its labels" : "",
                     g.alert.state == ALERT_FIRING ? "repeats an instance already resolved"
                                                   : "matched no incident",
                     d->id);
        created += rc == 0 && res.result == INGEST_CREATED;
        attached += rc == 0 && res.result == INGEST_ATTACHED;
        unmatched += rc == 0 && res.result == INGEST_UNMATCHED;
        grafana_alert_free(&g);
        if (rc < 0) {
            out = KIT_WH_FAILED; /* kept; the sweep retries, earlier alerts are duplicates then */
            break;
        }
        out = KIT_WH_PROCESSED;
    }
    if (out == KIT_WH_PROCESSED)
        log_info("grafana: delivery %s: %d alerts, %d new incidents, %d attached, %d unmatched",
                 d->id, idx, created, attached, unmatched);
    cJSON_Delete(json);
    return out;
}

static const kit_webhook_spec grafana_webhook = {
    .connector = GF_ID,
    /* The per-user URL is the credential (guide: no API key); a user who set
     * a signing secret gets Grafana's HMAC checked: hex HMAC-SHA256 in
     * X-Grafana-Alerting-Signature of the raw body, or, when the contact
     * point's Timestamp Header is set, of "<seconds>:<body>" (grafana/alerting
     * http/hmac.go) with the seconds within the replay window. */
    .policy = KIT_WH_SIGNED_IF_CONFIGURED,
    .signature_header = "x-grafana-alerting-signature",
    /* What Grafana sends when the contact point's Header field is left empty
     * (its form shows the name above as a placeholder only): grafana/alerting
     * http/hmac.go, defaultHeaderName. */
    .signature_header_alt = "x-grafana-alert-signature",
    .encoding = KIT_WH_HEX,
    .signed_template = "{ts}:{body}",
    .timestamp_header = "x-grafana-alerting-timestamp",
    .timestamp_optional = 1,
    .replay_window_s = REPLAY_WINDOW_S,
    .event_json = "status", /* "firing" / "resolved": the group's status */
    .content_type = "application/json",
    .require_json_object = 1,
    .keys = webhook_keys,
    .check = webhook_check,
    .admit = webhook_admit,
    .process = webhook_process,
};

/* ---- recovery sweep -------------------------------------------------------------------------- */

/* A delivery committed just before a crash, or whose processing failed (the
 * store was down), is processed here: at start-up, then every
 * SWEEP_INTERVAL_S. */
static long webhook_sweep_task(worker_ctx *w)
{
    int done = kit_webhook_process_open(w, &grafana_webhook, SWEEP_BATCH, (int64_t)time(NULL));
    if (done > 0)
        log_info("grafana: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("grafana: webhook recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

/* ---- status ---------------------------------------------------------------------------------- */

static void add_status(worker_ctx *w, const auth_ctx *who, const http_request *req, cJSON *out)
{
    cJSON_AddBoolToObject(out, "webhook_based", 1);
    /* The URL to paste: ?org_id= when the user acts in several organizations. */
    char orgs[MAX_ORGS_SHOWN][STORE_ID_LEN];
    size_t norgs = 0;
    if (store_user_orgs(w->store, who->user_id, NULL, 0, orgs, MAX_ORGS_SHOWN, &norgs) != STORE_OK)
        norgs = 0;
    char path[512];
    snprintf(path, sizeof(path), WEBHOOK_PATH "%s%s%s", who->user_id,
             norgs > 1 ? "?org_id=" : "", norgs > 1 ? who->org_id : "");
    cJSON_AddStringToObject(out, "webhook_path", path);
    char base[512], url[1100];
    if (api_public_base(w, req, base, sizeof(base)) == 0) {
        snprintf(url, sizeof(url), "%s%s", base, path);
        cJSON_AddStringToObject(out, "webhook_url", url);
    } else {
        cJSON_AddNullToObject(out, "webhook_url");
    }

    store_connector row;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, GF_ID, &row);
    if (rc == STORE_ERR) {
        cJSON_AddStringToObject(out, "error", "state store unavailable");
        log_error("grafana status: %s", store_errmsg(w->store));
        return;
    }
    int have = rc == STORE_OK, active = have && !strcmp(row.status, "active");
    cJSON_AddBoolToObject(out, "connected", active);
    cJSON_AddStringToObject(out, "status",
                            !have ? "not_connected" : active ? "active" : "disabled");
    time_json_add(out, "connected_at", have ? meta_time(row.metadata_json, "connected_at") : 0);
    time_json_add(out, "disconnected_at",
                  have && !active ? meta_time(row.metadata_json, "disconnected_at") : 0);
    int signed_ = have && row.secret_ref[0];
    cJSON_AddBoolToObject(out, "signing_secret_configured", signed_);
    /* What to put in the contact point's Timestamp Header, and whether a
     * delivery without it is refused. */
    cJSON_AddStringToObject(out, "timestamp_header", TIMESTAMP_HEADER);
    cJSON_AddBoolToObject(out, META_TS_REQUIRED,
                          signed_ && meta_time(row.metadata_json, META_TS_REQUIRED) > 0);
    if (have)
        store_connector_free(&row);
    int64_t count = 0, last = 0;
    if (store_webhook_tenant_stats(w->store, who->org_id, GF_ID, who->user_id, &count, &last) !=
        STORE_OK)
        log_error("grafana status: %s", store_errmsg(w->store));
    time_json_add(out, "last_delivery_at", last);
    cJSON_AddNumberToObject(out, "deliveries", (double)count);
}

static void grafana_status(worker_ctx *w, const auth_ctx *who, cJSON *out)
{
    add_status(w, who, NULL, out);
}

/* ---- routes ---------------------------------------------------------------------------------- */

static void webhook_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &grafana_webhook, req, resp);
}

static void status_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    add_status(w, &req->auth, req, o);
    http_resp_json(resp, 200, o);
}

static void set_status_route(worker_ctx *w, http_request *req, http_response *resp, int active)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return;
    const auth_ctx *who = &req->auth;
    store_connector row;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, GF_ID, &row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    if (rc == STORE_OK)
        store_connector_free(&row);
    else if (!active) {
        http_resp_error(resp, 404, "NOT_CONNECTED",
                        "Grafana is not connected: nothing to disconnect");
        return;
    }
    if (row_put(w, who->org_id, who->user_id, active ? "active" : "disabled",
                active ? "reconnected_at" : "disconnected_at", NULL) < 0) {
        api_store_error(w, resp);
        return;
    }
    log_info("grafana: %s for user %s (org %s)", active ? "reconnected" : "disconnected",
             who->user_id, who->org_id);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "connector", GF_ID);
        add_status(w, who, req, o);
    }
    http_resp_json(resp, 200, o);
}

static void disconnect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    set_status_route(w, req, resp, 0);
}

static void reconnect_route(worker_ctx *w, http_request *req, http_response *resp)
{
    set_status_route(w, req, resp, 1);
}

/* Writes the row (active when new) with the given secret reference ("" to
 * clear) and whether deliveries must be timestamped, keeping its status and
 * history. */
static int row_set_ref(worker_ctx *w, const auth_ctx *who, const char *ref, int require_ts)
{
    store_connector row;
    int rc = store_connector_get(w->store, who->org_id, who->user_id, GF_ID, &row);
    if (rc == STORE_ERR)
        return -1;
    char status[sizeof(row.status)] = "active";
    if (rc == STORE_OK) {
        snprintf(status, sizeof(status), "%s", row.status);
        store_connector_free(&row);
    }
    if (row_put(w, who->org_id, who->user_id, status, NULL, NULL) < 0 ||
        store_connector_get(w->store, who->org_id, who->user_id, GF_ID, &row) != STORE_OK)
        return -1;
    snprintf(row.secret_ref, sizeof(row.secret_ref), "%s", ref);
    cJSON *meta = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    if (!cJSON_IsObject(meta)) {
        cJSON_Delete(meta);
        meta = cJSON_CreateObject();
    }
    char *text = NULL;
    if (meta) {
        cJSON_DeleteItemFromObjectCaseSensitive(meta, META_TS_REQUIRED);
        if (require_ts)
            cJSON_AddNumberToObject(meta, META_TS_REQUIRED, 1);
        text = cJSON_PrintUnformatted(meta);
        cJSON_Delete(meta);
    }
    if (!text) {
        store_connector_free(&row);
        return -1;
    }
    free(row.metadata_json);
    row.metadata_json = text;
    rc = store_connector_upsert(w->store, &row);
    store_connector_free(&row);
    return rc == STORE_OK ? 0 : -1;
}

/* POST /grafana/signing-secret {"secret": "…", "require_timestamp": bool}:
 * the secret the user also set under the contact point's HMAC Signature
 * settings; require_timestamp (default false) once its Timestamp Header is
 * set too. */
static void secret_put_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *secret = api_json_str(body, "secret");
    size_t n = secret ? strlen(secret) : 0;
    int ok = n >= SECRET_MIN && n <= KIT_WH_SECRET_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)secret[i] > 0x20 && (unsigned char)secret[i] < 0x7f;
    if (!ok) {
        cJSON_Delete(body);
        http_resp_error(resp, 400, "INVALID_SECRET",
                        "secret must be %d to %d printable ASCII characters without spaces",
                        SECRET_MIN, KIT_WH_SECRET_MAX);
        return;
    }
    const cJSON *req_ts = cJSON_GetObjectItemCaseSensitive(body, "require_timestamp");
    if (req_ts && !cJSON_IsBool(req_ts)) {
        cJSON_Delete(body);
        http_resp_error(resp, 400, "INVALID_SECRET",
                        "require_timestamp must be true or false (true once the contact "
                        "point's Timestamp Header is " TIMESTAMP_HEADER ")");
        return;
    }
    int require_ts = cJSON_IsTrue(req_ts);
    char ref[512];
    int rc = kit_secret_put(w, req->auth.org_id, req->auth.user_id, GF_ID, SECRET_FIELD, secret,
                            ref, sizeof(ref), resp);
    cJSON_Delete(body); /* cJSON_Delete frees the copy of the secret (not wiped: cJSON's) */
    if (rc < 0)
        return;
    if (row_set_ref(w, &req->auth, ref, require_ts) < 0) {
        api_store_error(w, resp);
        return;
    }
    log_info("grafana: signing secret set for user %s (org %s)", req->auth.user_id,
             req->auth.org_id);
    cJSON *o = cJSON_CreateObject();
    if (o)
        add_status(w, &req->auth, req, o);
    http_resp_json(resp, 200, o);
}

/* DELETE /grafana/signing-secret: deliveries are accepted unsigned again. */
static void secret_delete_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0 || connector_secrets_ready(w, resp) < 0)
        return;
    store_connector row;
    int rc = store_connector_get(w->store, req->auth.org_id, req->auth.user_id, GF_ID, &row);
    if (rc == STORE_ERR) {
        api_store_error(w, resp);
        return;
    }
    if (rc == STORE_OK) {
        /* The only secret of this connection: delete them all, then the reference. */
        rc = kit_secrets_delete_connection(w, &req->auth, GF_ID, &row, resp);
        store_connector_free(&row);
        if (rc < 0)
            return;
        if (row_set_ref(w, &req->auth, "", 0) < 0) {
            api_store_error(w, resp);
            return;
        }
    }
    cJSON *o = cJSON_CreateObject();
    if (o)
        add_status(w, &req->auth, req, o);
    http_resp_json(resp, 200, o);
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events(w, GF_ID, req, resp);
}

static void event_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event(w, GF_ID, http_param(req, "event_id"), req, resp);
}

/* ---- DELETE /api/connectors/grafana: deactivate, keep the row ------------------------------ */

/* connectors.c calls disconnecting (row still there) then, on the same
 * worker thread, deletes the row and calls disconnected: the row's metadata
 * is carried across so the row comes back "disabled" with its history. */
static _Thread_local char *t_saved_meta;
static _Thread_local int t_had_row;
static _Thread_local char t_saved_who[2 * STORE_ID_LEN + 2]; /* "<org>/<user>" of that row */

static void who_key(const auth_ctx *who, char out[2 * STORE_ID_LEN + 2])
{
    snprintf(out, 2 * STORE_ID_LEN + 2, "%s/%s", who->org_id, who->user_id);
}

static void grafana_disconnecting(worker_ctx *w, const auth_ctx *who, const store_connector *row)
{
    (void)w;
    free(t_saved_meta);
    t_saved_meta = row && row->metadata_json ? strdup(row->metadata_json) : NULL;
    t_had_row = 1;
    who_key(who, t_saved_who);
}

static void grafana_disconnected(worker_ctx *w, const auth_ctx *who)
{
    char key[2 * STORE_ID_LEN + 2];
    who_key(who, key);
    /* Only the row disconnecting saw (a failed earlier disconnect may have
     * left another user's mark on this thread). */
    if (t_had_row && !strcmp(key, t_saved_who) &&
        row_put(w, who->org_id, who->user_id, "disabled", "disconnected_at", t_saved_meta) < 0)
        log_error("grafana: keeping the disconnected row of user %s (org %s) failed: %s",
                  who->user_id, who->org_id, store_errmsg(w->store));
    free(t_saved_meta);
    t_saved_meta = NULL;
    t_had_row = 0;
}

static void grafana_register(void)
{
    if (kit_webhook_register(&grafana_webhook) < 0)
        return; /* logged; not mounted rather than half-working */
    /* Outbound pool: an optional signing secret comes from the secrets backend.
     * The contact point's "HTTP Method" may be set to PUT: same delivery. */
    router_add_outbound(HTTP_POST, "/grafana/alerts/webhook/{user_id}", ROUTE_PUBLIC,
                        webhook_route);
    router_add_outbound(HTTP_PUT, "/grafana/alerts/webhook/{user_id}", ROUTE_PUBLIC,
                        webhook_route);
    router_add_outbound(HTTP_POST, "/grafana/signing-secret", ROUTE_AUTH_API, secret_put_route);
    router_add_outbound(HTTP_DELETE, "/grafana/signing-secret", ROUTE_AUTH_API,
                        secret_delete_route);
    router_add(HTTP_GET, "/grafana/status", ROUTE_AUTH_API, status_route);
    router_add(HTTP_POST, "/grafana/disconnect", ROUTE_AUTH_API, disconnect_route);
    router_add(HTTP_POST, "/grafana/reconnect", ROUTE_AUTH_API, reconnect_route);
    router_add(HTTP_GET, "/api/grafana/events", ROUTE_AUTH_API, events_route);
    router_add(HTTP_GET, "/api/grafana/events/{event_id}", ROUTE_AUTH_API, event_route);
    if (periodic_add("grafana-webhook-sweep", WORKER_POOL_STORE, 0, webhook_sweep_task) < 0)
        log_error("grafana: cannot register the webhook recovery sweep (periodic table full)");
}

/* Grafana's settings, declared here only. */
static const config_def grafana_settings[] = {
    { "GRAFANA_WEBHOOK_MAX_BODY", "grafana.webhook_max_body", CFG_INT, "1048576", "Grafana connector: largest webhook body accepted (bytes; AURORA_MAX_BODY still applies)", 0, 1024, 67108864 },
    { "GRAFANA_WEBHOOK_RATE_LIMIT_PER_MINUTE", "grafana.webhook_rate_limit_per_minute", CFG_INT, "120", "Grafana connector: webhook deliveries accepted per user and minute (more get 429 with Retry-After)", 0, 1, 1000000 },
    { "GRAFANA_WEBHOOK_ALERTS_PER_MINUTE", "grafana.webhook_alerts_per_minute", CFG_INT, "2000", "Grafana connector: alerts (elements of alerts[]) accepted per organization and minute, counted over the deliveries to all its members' webhook URLs: each may open an incident and an RCA job (a delivery that would go over gets 429 with Retry-After; at least 1000, the most one delivery may hold)", 0, 1000, 1000000 },
    { NULL },
};

const connector connector_grafana = {
    .id = GF_ID,
    .name = "Grafana",
    .register_routes = grafana_register,
    .status = grafana_status,
    .cloud = NULL,
    .settings = grafana_settings,
    .disconnecting = grafana_disconnecting,
    .disconnected = grafana_disconnected,
};
