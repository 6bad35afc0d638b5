/* test_incidents.c — the incident core: incident_ingest() and its
 * correlation transaction (server/incidents.c, server/store_incidents.c),
 * severity words and service keys (incident_normalize.c) and the summary
 * (incident_summary.c).
 *
 * The store tests run twice: on a fresh SQLite file (WAL, real locking) and
 * on a fresh schema of a throwaway PostgreSQL server (pg_harness.h).  What
 * was stored is read back through the database engine directly (db.h), so
 * the assertions see the rows and views (grafana_alerts, rca_jobs), not
 * what the code under test reports.
 *
 * The Grafana cases follow the connector guide's table "How Aurora Processes
 * Grafana Webhooks" (/work/shared/seed/connectors.md), one test per row.
 * Their payloads are in Grafana's documented webhook format (Alerting →
 * contact points → webhook: receiver, status, alerts[] with status, labels,
 * annotations, startsAt, endsAt, generatorURL, fingerprint, …); the
 * test's own small mapper turns each element of alerts[] into one
 * incident_alert, as the Grafana connector does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connector.h"
#include "db.h"
#include "incident_normalize.h"
#include "incident_summary.h"
#include "incidents.h"
#include "kit_webhook.h"
#include "pg_harness.h"
#include "sentry.h"
#include "store.h"
#include "store_incidents.h"
#include "timefmt.h"

#define STORE_PLACE_DB "aurora_incidents"
#include "store_place.h"

/* 2026-11-02T10:00:00Z */
#define T0 1793613600LL
#define DAY 86400LL

/* ---- fixtures ---------------------------------------------------------------- */

typedef struct {
    store_t *s;
    worker_ctx w;
    store_place at; /* its database (store_place.h) */
    char org[STORE_ID_LEN];
    int delivery; /* next delivery number */
} fixture;

static store_t *open_store(const char *url)
{
    store_t *s = NULL;
    char err[256] = "";
    if (store_open(url, &s, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    return s;
}

static void init_fixture(fixture *f)
{
    f->s = open_store(f->at.url);
    f->w.store = f->s;
    store_org o;
    assert_int_equal(store_org_create(f->s, "acme", &o), STORE_OK);
    memcpy(f->org, o.id, sizeof(f->org));
}

static int setup_file(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_sqlite(&f->at, "incidents");
    init_fixture(f);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_pg(&f->at);
    init_fixture(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    db_set_limits(0, 0); /* a failed test may have left short ones */
    store_close(f->s);
    store_place_remove(&f->at);
    free(f);
    return 0;
}

/* ---- reading what was stored (through the engine, not the store) ------------- */

/* The single integer a query returns. */
static int64_t sql_int(fixture *f, const char *sql, const char *arg)
{
    const db_engine *eng = db_engine_for(f->at.url);
    assert_non_null(eng);
    db_t *db = NULL;
    char err[256];
    assert_int_equal(eng->open(f->at.url, &db, err, sizeof(err)), DB_OK);
    db_param p[] = { DB_P_TEXT(arg) };
    db_result r;
    if (eng->query(db, sql, p, arg ? 1 : 0, &r) != DB_OK)
        fail_msg("%s: %s", sql, eng->errmsg(db));
    assert_int_equal(r.nrows, 1);
    const char *v = db_cell(&r, 0, 0);
    int64_t out = v ? strtoll(v, NULL, 10) : -1;
    db_result_free(&r);
    eng->close(db);
    return out;
}

/* One text cell ("" for NULL) into out. */
static void sql_text(fixture *f, const char *sql, const char *arg, char *out, size_t cap)
{
    const db_engine *eng = db_engine_for(f->at.url);
    db_t *db = NULL;
    char err[256];
    assert_int_equal(eng->open(f->at.url, &db, err, sizeof(err)), DB_OK);
    db_param p[] = { DB_P_TEXT(arg) };
    db_result r;
    if (eng->query(db, sql, p, arg ? 1 : 0, &r) != DB_OK)
        fail_msg("%s: %s", sql, eng->errmsg(db));
    assert_int_equal(r.nrows, 1);
    const char *v = db_cell(&r, 0, 0);
    snprintf(out, cap, "%s", v ? v : "");
    db_result_free(&r);
    eng->close(db);
}

static int64_t count_incidents(fixture *f)
{
    return sql_int(f, "SELECT COUNT(*) FROM incidents WHERE org_id = ?", f->org);
}

static int64_t count_jobs(fixture *f)
{
    return sql_int(f, "SELECT COUNT(*) FROM rca_jobs WHERE org_id = ?", f->org);
}

static void incident_status(fixture *f, const char *id, char *out, size_t cap)
{
    sql_text(f, "SELECT status FROM incidents WHERE id = ?", id, out, cap);
}

/* ---- Grafana's webhook format and the test's mapper ------------------------ */

typedef struct {
    const char *status; /* "firing" | "resolved" */
    const char *fingerprint;
    const char *alertname;
    const char *service;
    int64_t starts_at, ends_at;
} graf_alert;

/* A grouped notification as Grafana sends it to a webhook contact point. */
static char *grafana_payload(const graf_alert *a, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    int firing = 0;
    for (size_t i = 0; i < n; i++)
        firing += !strcmp(a[i].status, "firing");
    cJSON_AddStringToObject(o, "receiver", "aurora");
    cJSON_AddStringToObject(o, "status", firing ? "firing" : "resolved");
    cJSON_AddNumberToObject(o, "orgId", 1);
    cJSON *arr = cJSON_AddArrayToObject(o, "alerts");
    for (size_t i = 0; i < n; i++) {
        cJSON *al = cJSON_CreateObject();
        char starts[TIME_RFC3339_LEN], ends[TIME_RFC3339_LEN], url[128];
        time_rfc3339(a[i].starts_at, starts);
        if (a[i].ends_at)
            time_rfc3339(a[i].ends_at, ends);
        else
            snprintf(ends, sizeof(ends), "0001-01-01T00:00:00Z");
        cJSON_AddStringToObject(al, "status", a[i].status);
        cJSON *labels = cJSON_AddObjectToObject(al, "labels");
        cJSON_AddStringToObject(labels, "alertname", a[i].alertname);
        cJSON_AddStringToObject(labels, "service", a[i].service);
        cJSON_AddStringToObject(labels, "severity", "critical");
        cJSON *ann = cJSON_AddObjectToObject(al, "annotations");
        cJSON_AddStringToObject(ann, "summary", "threshold crossed");
        cJSON_AddStringToObject(ann, "description", "value above 90% for 5m\nsecond line");
        cJSON_AddStringToObject(al, "startsAt", starts);
        cJSON_AddStringToObject(al, "endsAt", ends);
        snprintf(url, sizeof(url), "https://grafana.example/alerting/grafana/%s/view",
                 a[i].alertname);
        cJSON_AddStringToObject(al, "generatorURL", url);
        cJSON_AddStringToObject(al, "fingerprint", a[i].fingerprint);
        cJSON_AddStringToObject(al, "silenceURL", "https://grafana.example/alerting/silence/new");
        cJSON_AddItemToArray(arr, al);
    }
    cJSON_AddItemToObject(o, "groupLabels", cJSON_CreateObject());
    cJSON_AddItemToObject(o, "commonLabels", cJSON_CreateObject());
    cJSON_AddItemToObject(o, "commonAnnotations", cJSON_CreateObject());
    cJSON_AddStringToObject(o, "externalURL", "https://grafana.example/");
    cJSON_AddStringToObject(o, "version", "1");
    cJSON_AddStringToObject(o, "groupKey", "{}:{alertname=\"HighCPU\"}");
    cJSON_AddNumberToObject(o, "truncatedAlerts", 0);
    cJSON_AddStringToObject(o, "title", firing ? "[FIRING]" : "[RESOLVED]");
    cJSON_AddStringToObject(o, "state", firing ? "alerting" : "ok");
    cJSON_AddStringToObject(o, "message", "");
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Processes one Grafana delivery alert by alert; outcomes in order. */
static size_t deliver_grafana(fixture *f, const char *body, incident_outcome *out, size_t max)
{
    char delivery[32];
    snprintf(delivery, sizeof(delivery), "whd_test%04d", ++f->delivery);
    cJSON *doc = cJSON_Parse(body);
    assert_non_null(doc);
    const cJSON *alerts = cJSON_GetObjectItemCaseSensitive(doc, "alerts");
    size_t n = 0;
    const cJSON *al;
    cJSON_ArrayForEach(al, alerts)
    {
        assert_true(n < max);
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(al, "labels");
        const cJSON *ann = cJSON_GetObjectItemCaseSensitive(al, "annotations");
        int resolved = !strcmp(jstr(al, "status"), "resolved");
        int64_t t = 0;
        assert_int_equal(time_parse_rfc3339(jstr(al, resolved ? "endsAt" : "startsAt"), &t), 0);
        incident_alert ia = {
            .source = "grafana",
            .delivery_id = delivery,
            .index = (int)n,
            .source_alert_id = jstr(al, "fingerprint"),
            .fingerprint = jstr(al, "fingerprint"),
            .state = resolved ? ALERT_RESOLVED : ALERT_FIRING,
            .title = jstr(labels, "alertname"),
            .service = jstr(labels, "service"),
            .severity = jstr(labels, "severity"),
            .message = jstr(ann, "description"),
            .url = jstr(al, "generatorURL"),
            .occurred_at = t,
            .raw = al,
        };
        char err[256] = "";
        if (incident_ingest(&f->w, f->org, "usr_grafana", &ia, t + 5, &out[n], err,
                            sizeof(err)) != 0)
            fail_msg("incident_ingest: %s", err);
        n++;
    }
    cJSON_Delete(doc);
    return n;
}

static size_t grafana(fixture *f, const graf_alert *a, size_t n, incident_outcome *out)
{
    char *body = grafana_payload(a, n);
    size_t got = deliver_grafana(f, body, out, 16);
    cJSON_free(body);
    assert_int_equal(got, n);
    return got;
}

/* ---- the guide's Grafana table: one test per row ----------------------------- */

/* "Single alert fires then resolves: matched by fingerprint, resolution
 * grouped with original incident". */
static void test_grafana_fire_then_resolve(void **state)
{
    fixture *f = *state;
    incident_outcome o[2];
    graf_alert fire = { "firing", "fp-cpu-1", "HighCPU", "checkout", T0, 0 };
    grafana(f, &fire, 1, &o[0]);
    assert_int_equal(o[0].result, INGEST_CREATED);
    assert_int_equal(
        sql_int(f, "SELECT COUNT(*) FROM rca_jobs WHERE incident_id = ?", o[0].incident_id), 1);
    char st[16];
    incident_status(f, o[0].incident_id, st, sizeof(st));
    assert_string_equal(st, "open");

    graf_alert res = { "resolved", "fp-cpu-1", "HighCPU", "checkout", T0, T0 + 600 };
    grafana(f, &res, 1, &o[1]);
    assert_int_equal(o[1].result, INGEST_ATTACHED);
    assert_string_equal(o[1].incident_id, o[0].incident_id);
    incident_status(f, o[0].incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(sql_int(f, "SELECT resolved_at FROM incidents WHERE id = ?", o[0].incident_id),
                     T0 + 600);
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", o[0].incident_id),
                     2);
    assert_int_equal(count_incidents(f), 1);
    assert_int_equal(count_jobs(f), 1);
    /* Both alerts are rows of grafana_alerts, attached to the incident. */
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM grafana_alerts WHERE incident_id = ?",
                             o[0].incident_id),
                     2);
}

/* "Multiple alerts in one webhook: each fingerprint is processed
 * independently; correlated alerts attach to an existing incident,
 * uncorrelated ones create a new incident and RCA". */
static void test_grafana_multiple_alerts_one_webhook(void **state)
{
    fixture *f = *state;
    incident_outcome o[3];
    graf_alert group[] = {
        { "firing", "fp-a", "HighCPU", "checkout", T0, 0 },
        { "firing", "fp-b", "HighLatency", "Checkout Service", T0 + 30, 0 }, /* similar service */
        { "firing", "fp-c", "DiskFull", "payments", T0 + 40, 0 },             /* unrelated */
    };
    grafana(f, group, 3, o);
    assert_int_equal(o[0].result, INGEST_CREATED);
    assert_int_equal(o[1].result, INGEST_ATTACHED);
    assert_string_equal(o[1].incident_id, o[0].incident_id);
    assert_int_equal(o[2].result, INGEST_CREATED);
    assert_string_not_equal(o[2].incident_id, o[0].incident_id);
    assert_int_equal(count_incidents(f), 2);
    assert_int_equal(count_jobs(f), 2);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM rca_jobs WHERE source_type = 'grafana'"
                                " AND status = 'pending' AND org_id = ?",
                             f->org),
                     2);
    /* A later alert of an already-seen fingerprint attaches to its incident. */
    incident_outcome again;
    graf_alert refire = { "firing", "fp-c", "DiskFull", "payments", T0 + 300, 0 };
    grafana(f, &refire, 1, &again);
    assert_int_equal(again.result, INGEST_ATTACHED);
    assert_string_equal(again.incident_id, o[2].incident_id);
}

/* "Partial resolution (some firing, some resolved): each alert handled
 * independently by its status". */
static void test_grafana_partial_resolution(void **state)
{
    fixture *f = *state;
    incident_outcome o[2], p[2], q;
    graf_alert both[] = {
        { "firing", "fp-a", "HighCPU", "checkout", T0, 0 },
        { "firing", "fp-b", "HighLatency", "checkout", T0 + 10, 0 },
    };
    grafana(f, both, 2, o);
    assert_int_equal(o[0].result, INGEST_CREATED);
    assert_int_equal(o[1].result, INGEST_ATTACHED);
    const char *inc = o[0].incident_id;
    graf_alert partial[] = {
        { "resolved", "fp-a", "HighCPU", "checkout", T0, T0 + 600 },
        { "firing", "fp-b", "HighLatency", "checkout", T0 + 10, 0 },
    };
    grafana(f, partial, 2, p);
    assert_int_equal(p[0].result, INGEST_ATTACHED);
    assert_int_equal(p[1].result, INGEST_ATTACHED);
    assert_string_equal(p[0].incident_id, inc);
    assert_string_equal(p[1].incident_id, inc);
    char st[16];
    incident_status(f, inc, st, sizeof(st));
    assert_string_equal(st, "open"); /* fp-b still firing */
    graf_alert last = { "resolved", "fp-b", "HighLatency", "checkout", T0 + 10, T0 + 900 };
    grafana(f, &last, 1, &q);
    assert_int_equal(q.result, INGEST_ATTACHED);
    incident_status(f, inc, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(count_incidents(f), 1);
    assert_int_equal(count_jobs(f), 1);
}

/* "Same alert re-fires weeks later: new incident created; resolution
 * matches newest by started_at DESC". */
static void test_grafana_refire_weeks_later(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c, d;
    graf_alert fire1 = { "firing", "fp-mem", "HighMemory", "search", T0, 0 };
    graf_alert res1 = { "resolved", "fp-mem", "HighMemory", "search", T0, T0 + 300 };
    grafana(f, &fire1, 1, &a);
    grafana(f, &res1, 1, &b);
    assert_int_equal(a.result, INGEST_CREATED);
    assert_string_equal(b.incident_id, a.incident_id);

    graf_alert fire2 = { "firing", "fp-mem", "HighMemory", "search", T0 + 21 * DAY, 0 };
    grafana(f, &fire2, 1, &c);
    assert_int_equal(c.result, INGEST_CREATED);
    assert_string_not_equal(c.incident_id, a.incident_id);
    graf_alert res2 = { "resolved", "fp-mem", "HighMemory", "search", T0 + 21 * DAY,
                        T0 + 21 * DAY + 120 };
    grafana(f, &res2, 1, &d);
    assert_int_equal(d.result, INGEST_ATTACHED);
    assert_string_equal(d.incident_id, c.incident_id); /* the newest */
    char st[16];
    incident_status(f, c.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", a.incident_id),
                     2);
    assert_int_equal(count_incidents(f), 2);
    assert_int_equal(count_jobs(f), 2);
}

/* "No matching incident for resolution: logged and skipped; alert still
 * persisted in grafana_alerts". */
static void test_grafana_resolution_without_match(void **state)
{
    fixture *f = *state;
    incident_outcome o;
    graf_alert res = { "resolved", "fp-ghost", "Ghost", "nowhere", T0, T0 + 60 };
    grafana(f, &res, 1, &o);
    assert_int_equal(o.result, INGEST_UNMATCHED);
    assert_string_equal(o.incident_id, "");
    assert_true(strncmp(o.alert_id, "alr_", 4) == 0);
    assert_int_equal(count_incidents(f), 0);
    assert_int_equal(count_jobs(f), 0);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM grafana_alerts WHERE id = ?"
                                " AND incident_id IS NULL AND status = 'resolved'",
                             o.alert_id),
                     1);
    /* The raw alert is kept with it. */
    char raw[512];
    sql_text(f, "SELECT payload FROM grafana_alerts WHERE id = ?", o.alert_id, raw, sizeof(raw));
    assert_non_null(strstr(raw, "\"fingerprint\":\"fp-ghost\""));
}

/* "Labels change mid-incident: fingerprint changes, so resolution won't
 * match". */
static void test_grafana_labels_change_mid_incident(void **state)
{
    fixture *f = *state;
    incident_outcome a, b;
    graf_alert fire = { "firing", "fp-labels-v1", "HighCPU", "checkout", T0, 0 };
    grafana(f, &fire, 1, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    /* Same rule, a label edited: Grafana computes another fingerprint. */
    graf_alert res = { "resolved", "fp-labels-v2", "HighCPU", "checkout", T0, T0 + 600 };
    grafana(f, &res, 1, &b);
    assert_int_equal(b.result, INGEST_UNMATCHED);
    char st[16];
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "open");
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", a.incident_id),
                     1);
}

/* ---- idempotency ---------------------------------------------------------------- */

static incident_alert plain_alert(const char *delivery, int index, const char *fp, alert_state st)
{
    incident_alert a = {
        .source = "sentry",
        .delivery_id = delivery,
        .index = index,
        .fingerprint = fp,
        .source_alert_id = fp,
        .state = st,
        .title = "TypeError: x is undefined",
        .service = "web",
        .severity = "error",
        .message = "Traceback\n  at f (app.js:1)",
        .occurred_at = T0,
    };
    return a;
}

static void ingest_ok(fixture *f, const incident_alert *a, incident_outcome *o)
{
    char err[256] = "";
    if (incident_ingest(&f->w, f->org, NULL, a, T0 + 1, o, err, sizeof(err)) != 0)
        fail_msg("incident_ingest: %s", err);
}

/* The kit may process a delivery twice (at-least-once): nothing changes. */
static void test_duplicate_delivery(void **state)
{
    fixture *f = *state;
    incident_outcome a, b;
    incident_alert al = plain_alert("whd_dup", 0, "issue-1", ALERT_FIRING);
    ingest_ok(f, &al, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    ingest_ok(f, &al, &b);
    assert_int_equal(b.result, INGEST_DUPLICATE);
    assert_string_equal(b.alert_id, a.alert_id);
    assert_string_equal(b.incident_id, a.incident_id);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM incident_alerts WHERE org_id = ?", f->org),
                     1);
    assert_int_equal(count_jobs(f), 1);
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", a.incident_id),
                     1);
    /* Another index of the same delivery is another alert. */
    incident_alert second = plain_alert("whd_dup", 1, "issue-1", ALERT_FIRING);
    ingest_ok(f, &second, &b);
    assert_int_equal(b.result, INGEST_ATTACHED);
}

/* Sentry's de-duplication by org + issue + action: dedup_key. */
static void test_dedup_key(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c;
    incident_alert first = plain_alert("whd_s1", 0, "4242", ALERT_FIRING);
    first.dedup_key = "4242:created";
    ingest_ok(f, &first, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    incident_alert again = plain_alert("whd_s2", 0, "4242", ALERT_FIRING); /* new delivery id */
    again.dedup_key = "4242:created";
    ingest_ok(f, &again, &b);
    assert_int_equal(b.result, INGEST_DUPLICATE);
    assert_string_equal(b.alert_id, a.alert_id);
    incident_alert resolved = plain_alert("whd_s3", 0, "4242", ALERT_RESOLVED);
    resolved.dedup_key = "4242:resolved";
    ingest_ok(f, &resolved, &c);
    assert_int_equal(c.result, INGEST_ATTACHED);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM sentry_events WHERE org_id = ?", f->org), 2);
    /* The same key in another organization is not a duplicate. */
    store_org other;
    assert_int_equal(store_org_create(f->s, "other", &other), STORE_OK);
    char err[256];
    incident_outcome d;
    assert_int_equal(incident_ingest(&f->w, other.id, NULL, &again, T0 + 1, &d, err, sizeof(err)),
                     0);
    assert_int_equal(d.result, INGEST_CREATED);
}

/* ---- correlation rules ---------------------------------------------------------- */

/* Deliveries are processed in parallel and retried: a resolution may be
 * processed before its firing alert.  It matches nothing then; the firing
 * alert adopts it and the incident ends resolved.  A resolution from before
 * the alert (an earlier instance) is not adopted. */
static void test_resolution_before_firing(void **state)
{
    fixture *f = *state;
    incident_outcome r, a;
    incident_alert old = plain_alert("whd_old", 0, "fp-late", ALERT_RESOLVED);
    old.occurred_at = T0 - 86400;
    ingest_ok(f, &old, &r);
    assert_int_equal(r.result, INGEST_UNMATCHED);
    incident_alert res = plain_alert("whd_res", 0, "fp-late", ALERT_RESOLVED);
    res.occurred_at = T0 + 60;
    ingest_ok(f, &res, &r);
    assert_int_equal(r.result, INGEST_UNMATCHED);
    incident_alert fire = plain_alert("whd_fire", 0, "fp-late", ALERT_FIRING);
    ingest_ok(f, &fire, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    char st[32];
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", a.incident_id), 2);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM incident_alerts WHERE incident_id IS NULL"
                                " AND org_id = ?", f->org),
                     1); /* the day-old resolution stays unmatched */
    assert_int_equal(count_jobs(f), 1);
}

/* A fingerprint recurs (the same rule and labels fire again later): the
 * resolution of its second instance, processed before that instance's
 * firing alert, must not land on the first (already resolved) incident,
 * which would leave the second one open for ever. */
static void test_recurring_resolution_before_firing(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c, d;
    incident_alert fire1 = plain_alert("whd_rf1", 0, "fp-flap", ALERT_FIRING);
    ingest_ok(f, &fire1, &a);
    incident_alert res1 = plain_alert("whd_rr1", 0, "fp-flap", ALERT_RESOLVED);
    res1.occurred_at = T0 + 300;
    ingest_ok(f, &res1, &b);
    assert_int_equal(b.result, INGEST_ATTACHED);
    char st[32];
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    /* the second instance: its resolution is processed first */
    incident_alert res2 = plain_alert("whd_rr2", 0, "fp-flap", ALERT_RESOLVED);
    res2.occurred_at = T0 + DAY + 300;
    ingest_ok(f, &res2, &c);
    assert_int_equal(c.result, INGEST_UNMATCHED);
    incident_alert fire2 = plain_alert("whd_rf2", 0, "fp-flap", ALERT_FIRING);
    fire2.occurred_at = T0 + DAY;
    ingest_ok(f, &fire2, &d);
    assert_int_equal(d.result, INGEST_CREATED);
    incident_status(f, d.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", a.incident_id),
                     2);
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", d.incident_id),
                     2);
    /* a resolution repeated for the first instance changes neither */
    incident_alert again = plain_alert("whd_rr1b", 0, "fp-flap", ALERT_RESOLVED);
    again.occurred_at = T0 + 300;
    ingest_ok(f, &again, &b);
    incident_status(f, d.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(count_incidents(f), 2);
}

/* A resolution of an earlier instance processed late (its delivery was
 * retried) while the alert fires again: it ended before the open
 * incident's alert started, so it does not resolve that incident. */
static void test_late_resolution_of_earlier_instance(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c;
    char st[32];
    incident_alert fire1 = plain_alert("whd_er1", 0, "fp-early", ALERT_FIRING);
    ingest_ok(f, &fire1, &a);
    incident_alert res1 = plain_alert("whd_er2", 0, "fp-early", ALERT_RESOLVED);
    res1.occurred_at = T0 + 300;
    ingest_ok(f, &res1, &b);
    incident_alert fire2 = plain_alert("whd_er3", 0, "fp-early", ALERT_FIRING);
    fire2.occurred_at = T0 + 900;
    ingest_ok(f, &fire2, &b);
    assert_int_equal(b.result, INGEST_CREATED);
    /* another copy of the first resolution, processed now */
    incident_alert late = plain_alert("whd_er4", 0, "fp-early", ALERT_RESOLVED);
    late.occurred_at = T0 + 300;
    ingest_ok(f, &late, &c);
    assert_int_equal(c.result, INGEST_UNMATCHED);
    incident_status(f, b.incident_id, st, sizeof(st));
    assert_string_equal(st, "open");
    /* its own resolution still resolves it */
    incident_alert res2 = plain_alert("whd_er5", 0, "fp-early", ALERT_RESOLVED);
    res2.occurred_at = T0 + 1200;
    ingest_ok(f, &res2, &c);
    assert_string_equal(c.incident_id, b.incident_id);
    incident_status(f, b.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
}

/* The same flapping alert, both instances in one incident: the second
 * instance's firing alert attached to the still open incident before the
 * first instance's resolution was processed (deliveries in parallel).  That
 * resolution ends the first instance only: the incident stays open while
 * the second fires, and the second's own resolution resolves it. */
static void test_late_resolution_inside_the_incident_of_both(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c;
    char st[32];
    incident_alert fire1 = plain_alert("whd_eb1", 0, "fp-both", ALERT_FIRING);
    ingest_ok(f, &fire1, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    incident_alert fire2 = plain_alert("whd_eb2", 0, "fp-both", ALERT_FIRING);
    fire2.occurred_at = T0 + 900;
    ingest_ok(f, &fire2, &b);
    assert_int_equal(b.result, INGEST_ATTACHED);
    assert_string_equal(b.incident_id, a.incident_id);
    /* the first instance's resolution, processed now */
    incident_alert res1 = plain_alert("whd_eb3", 0, "fp-both", ALERT_RESOLVED);
    res1.occurred_at = T0 + 300;
    ingest_ok(f, &res1, &c);
    assert_string_equal(c.incident_id, a.incident_id);
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "open"); /* the second instance still fires */
    /* its own resolution resolves it */
    incident_alert res2 = plain_alert("whd_eb4", 0, "fp-both", ALERT_RESOLVED);
    res2.occurred_at = T0 + 1200;
    ingest_ok(f, &res2, &c);
    assert_int_equal(c.result, INGEST_ATTACHED);
    assert_string_equal(c.incident_id, a.incident_id);
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    assert_int_equal(sql_int(f, "SELECT resolved_at FROM incidents WHERE id = ?", a.incident_id),
                     T0 + 1200);
}

/* ---- through the Sentry connector's processing ------------------------------ */

struct spec_pick {
    const char *name;
    const kit_webhook_spec *spec;
};

static void take_spec(const kit_webhook_spec *spec, void *arg)
{
    struct spec_pick *p = arg;
    if (!strcmp(spec->connector, p->name))
        p->spec = spec;
}

/* The webhook spec a connector registers (its routes registered once). */
static const kit_webhook_spec *webhook_spec(const connector *c, const char *name)
{
    struct spec_pick p = { name, NULL };
    kit_webhook_foreach(take_spec, &p);
    if (!p.spec) {
        c->register_routes();
        kit_webhook_foreach(take_spec, &p);
    }
    assert_non_null(p.spec);
    return p.spec;
}

static const kit_webhook_spec *sentry_spec(void)
{
    return webhook_spec(&connector_sentry, "sentry");
}

/* A delivery stored as the intake stores it and received at `received`
 * (the store's clock, set back). */
static void store_delivery(fixture *f, const char *connector, const char *event,
                           const char *action, const char *body, int64_t received,
                           char id[STORE_ID_LEN])
{
    store_webhook_delivery d = { .verified = 1 };
    snprintf(d.org_id, sizeof(d.org_id), "%s", f->org);
    snprintf(d.connector, sizeof(d.connector), "%s", connector);
    snprintf(d.delivery_id, sizeof(d.delivery_id), "req-%d", ++f->delivery);
    snprintf(d.event, sizeof(d.event), "%s", event);
    snprintf(d.action, sizeof(d.action), "%s", action);
    assert_int_equal(store_webhook_insert(f->s, &d, body, strlen(body), 0), STORE_OK);
    memcpy(id, d.id, STORE_ID_LEN);
    const db_engine *eng = db_engine_for(f->at.url);
    db_t *db = NULL;
    char err[256];
    assert_int_equal(eng->open(f->at.url, &db, err, sizeof(err)), DB_OK);
    db_param p[] = { DB_P_INT(received), DB_P_TEXT(id) };
    int64_t changed = 0;
    if (eng->exec(db, "UPDATE webhook_deliveries SET received_at = ? WHERE id = ?", p, 2,
                  &changed) != DB_OK)
        fail_msg("setting received_at: %s", eng->errmsg(db));
    assert_int_equal(changed, 1);
    eng->close(db);
}

/* An issue delivery of Sentry's documented shape. */
static void sentry_issue(fixture *f, const char *action, int64_t first_seen, int64_t last_seen,
                         int64_t received, char id[STORE_ID_LEN])
{
    char first[TIME_RFC3339_LEN], last[TIME_RFC3339_LEN], body[512];
    assert_int_equal(time_rfc3339(first_seen, first), 0);
    assert_int_equal(time_rfc3339(last_seen, last), 0);
    snprintf(body, sizeof(body),
             "{\"action\":\"%s\",\"data\":{\"issue\":{\"id\":\"5150\","
             "\"title\":\"TypeError: x is undefined\",\"level\":\"error\","
             "\"firstSeen\":\"%s\",\"lastSeen\":\"%s\",\"project\":{\"slug\":\"web\"}}}}",
             action, first, last);
    store_delivery(f, "sentry", "issue", action, body, received, id);
}

static void test_sentry_late_resolution_dated_by_delivery(void **state)
{
    fixture *f = *state;
    const kit_webhook_spec *spec = sentry_spec();
    int64_t now = (int64_t)time(NULL);
    char created[STORE_ID_LEN], resolved[STORE_ID_LEN], regressed[STORE_ID_LEN], st[32];
    sentry_issue(f, "created", now - 3600, now - 3600, now - 3600, created);
    sentry_issue(f, "resolved", now - 3600, now - 3000, now - 1800, resolved);
    sentry_issue(f, "unresolved", now - 3600, now - 600, now - 600, regressed);
    assert_int_equal(kit_webhook_process(&f->w, spec, created, now), KIT_WH_PROCESSED);
    assert_int_equal(kit_webhook_process(&f->w, spec, regressed, now), KIT_WH_PROCESSED);
    char incident[STORE_ID_LEN];
    sql_text(f, "SELECT id FROM incidents WHERE org_id = ?", f->org, incident, sizeof(incident));
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE id = ?", incident), 2);
    /* the resolution of 30 minutes ago, processed now */
    assert_int_equal(kit_webhook_process(&f->w, spec, resolved, now), KIT_WH_PROCESSED);
    incident_status(f, incident, st, sizeof(st));
    assert_string_equal(st, "open"); /* the regression still fires */
    assert_int_equal(sql_int(f, "SELECT occurred_at FROM incident_alerts WHERE org_id = ?"
                                " AND state = 'resolved'",
                             f->org),
                     now - 1800);
}

/* The same for every connector whose payload may carry no time: a firing
 * and a resolution of one alert, neither dated, the resolution received 30
 * minutes ago and retried only now, after a newer firing (received 10
 * minutes ago) was processed.  Dated by processing, the stale resolution
 * would end the newer instance; dated by its delivery it precedes it. */
extern const connector connector_datadog, connector_netdata, connector_pagerduty,
    connector_newrelic, connector_grafana;

static void test_undated_late_resolution_dated_by_delivery(void **state)
{
    fixture *f = *state;
    static const struct {
        const connector *c;
        const char *name, *firing, *resolved;
    } cases[] = {
        { &connector_datadog, "datadog", "{\"id\":1,\"alert_id\":4242,\"title\":\"Load high\","
          "\"alert_transition\":\"Triggered\",\"alert_scope\":\"host:a\"}",
          "{\"id\":2,\"alert_id\":4242,\"title\":\"Load high\","
          "\"alert_transition\":\"Recovered\",\"alert_scope\":\"host:a\"}" },
        { &connector_netdata, "netdata", "{\"alert\":\"10min_cpu_usage\",\"chart\":"
          "\"system.cpu\",\"space\":\"Production\",\"severity\":\"critical\"}",
          "{\"alert\":\"10min_cpu_usage\",\"chart\":\"system.cpu\",\"space\":\"Production\","
          "\"severity\":\"clear\"}" },
        { &connector_pagerduty, "pagerduty",
          "{\"event\":{\"id\":\"E1\",\"event_type\":\"incident.triggered\",\"data\":"
          "{\"id\":\"P1\",\"type\":\"incident\",\"title\":\"Bump\"}}}",
          "{\"event\":{\"id\":\"E2\",\"event_type\":\"incident.resolved\",\"data\":"
          "{\"id\":\"P1\",\"type\":\"incident\",\"title\":\"Bump\"}}}" },
        { &connector_newrelic, "newrelic",
          "{\"issueId\":\"abc\",\"title\":\"Latency\",\"state\":\"ACTIVATED\"}",
          "{\"issueId\":\"abc\",\"title\":\"Latency\",\"state\":\"CLOSED\"}" },
        { &connector_grafana, "grafana",
          "{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":"
          "{\"alertname\":\"High CPU\"}}]}",
          "{\"status\":\"resolved\",\"alerts\":[{\"status\":\"resolved\",\"labels\":"
          "{\"alertname\":\"High CPU\"}}]}" },
    };
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const kit_webhook_spec *spec = webhook_spec(cases[i].c, cases[i].name);
        char firing[STORE_ID_LEN], resolved[STORE_ID_LEN], incident[STORE_ID_LEN], st[32];
        store_delivery(f, cases[i].name, "", "", cases[i].resolved, now - 1800,
                       resolved);
        store_delivery(f, cases[i].name, "", "", cases[i].firing, now - 600, firing);
        assert_int_equal(kit_webhook_process(&f->w, spec, firing, now), KIT_WH_PROCESSED);
        sql_text(f, "SELECT incident_id FROM incident_alerts WHERE delivery_id = ?", firing,
                 incident, sizeof(incident));
        assert_int_equal(kit_webhook_process(&f->w, spec, resolved, now), KIT_WH_PROCESSED);
        incident_status(f, incident, st, sizeof(st));
        if (strcmp(st, "open") != 0)
            fail_msg("%s: a late undated resolution ended the newer instance (%s)",
                     cases[i].name, st);
        assert_int_equal(sql_int(f, "SELECT occurred_at FROM incident_alerts WHERE delivery_id = ?",
                                 firing),
                         now - 600);
        assert_int_equal(sql_int(f, "SELECT occurred_at FROM incident_alerts WHERE delivery_id = ?",
                                 resolved),
                         now - 1800);
    }
}

/* A firing notification of an instance already resolved, processed after
 * its resolution (Grafana repeats a group's still-firing alerts with the
 * same startsAt; deliveries are processed in parallel and retried): it is
 * recorded but neither opens an incident nor keeps one open.  The
 * resolution must have happened after that start: within one second it is
 * a new instance. */
static void test_late_firing_copy_after_resolution(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c;
    char st[32];
    incident_alert fire = plain_alert("whd_lf1", 0, "fp-rep", ALERT_FIRING);
    ingest_ok(f, &fire, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    incident_alert res = plain_alert("whd_lr1", 0, "fp-rep", ALERT_RESOLVED);
    res.occurred_at = T0 + 300;
    ingest_ok(f, &res, &b);
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    incident_alert copy = plain_alert("whd_lf2", 0, "fp-rep", ALERT_FIRING); /* same start */
    ingest_ok(f, &copy, &c);
    assert_int_equal(c.result, INGEST_UNMATCHED);
    assert_int_equal(count_incidents(f), 1);
    assert_int_equal(count_jobs(f), 1);
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");

    /* inside an incident still open for another fingerprint */
    incident_alert x = plain_alert("whd_lx1", 0, "fp-x", ALERT_FIRING);
    x.occurred_at = T0 + DAY;
    ingest_ok(f, &x, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    incident_alert y = plain_alert("whd_ly1", 0, "fp-y", ALERT_FIRING);
    y.occurred_at = T0 + DAY + 10;
    ingest_ok(f, &y, &b);
    assert_string_equal(b.incident_id, a.incident_id);
    incident_alert xres = plain_alert("whd_lx2", 0, "fp-x", ALERT_RESOLVED);
    xres.occurred_at = T0 + DAY + 300;
    ingest_ok(f, &xres, &c);
    assert_string_equal(c.incident_id, a.incident_id);
    incident_alert xcopy = plain_alert("whd_lx3", 0, "fp-x", ALERT_FIRING);
    xcopy.occurred_at = T0 + DAY;
    ingest_ok(f, &xcopy, &c);
    assert_int_equal(c.result, INGEST_UNMATCHED);
    incident_alert yres = plain_alert("whd_ly2", 0, "fp-y", ALERT_RESOLVED);
    yres.occurred_at = T0 + DAY + 400;
    ingest_ok(f, &yres, &c);
    assert_string_equal(c.incident_id, a.incident_id);
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "resolved");
    /* a new instance (a later start) still opens an incident */
    incident_alert again = plain_alert("whd_lx4", 0, "fp-x", ALERT_FIRING);
    again.occurred_at = T0 + 2 * DAY;
    ingest_ok(f, &again, &c);
    assert_int_equal(c.result, INGEST_CREATED);
    assert_int_equal(count_incidents(f), 3);
    /* fired, resolved and fired again within one second: a new instance */
    incident_alert q1 = plain_alert("whd_lq1", 0, "fp-quick", ALERT_FIRING);
    q1.occurred_at = T0 + 3 * DAY;
    ingest_ok(f, &q1, &a);
    incident_alert q2 = plain_alert("whd_lq2", 0, "fp-quick", ALERT_RESOLVED);
    q2.occurred_at = T0 + 3 * DAY;
    ingest_ok(f, &q2, &b);
    assert_string_equal(b.incident_id, a.incident_id);
    incident_alert q3 = plain_alert("whd_lq3", 0, "fp-quick", ALERT_FIRING);
    q3.occurred_at = T0 + 3 * DAY;
    ingest_ok(f, &q3, &c);
    assert_int_equal(c.result, INGEST_CREATED);
}

/* Fingerprints are each provider's own ids: a PagerDuty resolution whose
 * incident id equals a Sentry issue's fingerprint resolves nothing. */
static void test_fingerprint_scoped_by_source(void **state)
{
    fixture *f = *state;
    incident_outcome a, b;
    incident_alert fire = plain_alert("whd_src1", 0, "P123", ALERT_FIRING);
    ingest_ok(f, &fire, &a);
    assert_int_equal(a.result, INGEST_CREATED);
    incident_alert other = plain_alert("whd_src2", 0, "P123", ALERT_RESOLVED);
    other.source = "pagerduty";
    other.service = "billing"; /* no service match either */
    ingest_ok(f, &other, &b);
    assert_int_equal(b.result, INGEST_UNMATCHED);
    char st[32];
    incident_status(f, a.incident_id, st, sizeof(st));
    assert_string_equal(st, "open");
}


/* A fingerprint match needs only an open incident; a service match needs
 * the window (AURORA_INCIDENT_CORRELATION_WINDOW_S, default 3600 s). */
static void test_window_and_service(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c, d;
    incident_alert first = plain_alert("whd_w1", 0, "fp-1", ALERT_FIRING);
    first.severity = "warning";
    ingest_ok(f, &first, &a);
    incident_alert late_same_fp = plain_alert("whd_w2", 0, "fp-1", ALERT_FIRING);
    late_same_fp.occurred_at = T0 + 5 * DAY;
    ingest_ok(f, &late_same_fp, &b);
    assert_int_equal(b.result, INGEST_ATTACHED);
    assert_string_equal(b.incident_id, a.incident_id);
    incident_alert near_service = plain_alert("whd_w3", 0, "fp-2", ALERT_FIRING);
    near_service.occurred_at = T0 + INCIDENT_CORRELATION_WINDOW_DEFAULT;
    near_service.service = "WEB svc";
    near_service.severity = "P1";
    ingest_ok(f, &near_service, &c);
    assert_int_equal(c.result, INGEST_ATTACHED);
    assert_string_equal(c.incident_id, a.incident_id);
    incident_alert far_service = plain_alert("whd_w4", 0, "fp-3", ALERT_FIRING);
    far_service.occurred_at = T0 + INCIDENT_CORRELATION_WINDOW_DEFAULT + 1;
    ingest_ok(f, &far_service, &d);
    assert_int_equal(d.result, INGEST_CREATED);
    /* No service never matches by service. */
    incident_alert noservice1 = plain_alert("whd_w5", 0, "fp-4", ALERT_FIRING);
    noservice1.service = NULL;
    incident_alert noservice2 = plain_alert("whd_w6", 0, "fp-5", ALERT_FIRING);
    noservice2.service = "";
    ingest_ok(f, &noservice1, &a);
    ingest_ok(f, &noservice2, &b);
    assert_int_equal(a.result, INGEST_CREATED);
    assert_int_equal(b.result, INGEST_CREATED);
    /* Severity: the most severe firing alert wins. */
    char sev[16];
    sql_text(f, "SELECT severity FROM incidents WHERE id = ?", c.incident_id, sev, sizeof(sev));
    assert_string_equal(sev, "critical");
}

/* Acknowledgements and info attach but never open an incident. */
static void test_acknowledge_and_info(void **state)
{
    fixture *f = *state;
    incident_outcome a, b, c, d;
    incident_alert ack_first = plain_alert("whd_a0", 0, "pd-1", ALERT_ACKNOWLEDGED);
    ingest_ok(f, &ack_first, &a);
    assert_int_equal(a.result, INGEST_UNMATCHED);
    incident_alert fire = plain_alert("whd_a1", 0, "pd-1", ALERT_FIRING);
    ingest_ok(f, &fire, &b);
    assert_int_equal(b.result, INGEST_CREATED);
    incident_alert ack = plain_alert("whd_a2", 0, "pd-1", ALERT_ACKNOWLEDGED);
    ingest_ok(f, &ack, &c);
    assert_int_equal(c.result, INGEST_ATTACHED);
    char st[16];
    incident_status(f, b.incident_id, st, sizeof(st));
    assert_string_equal(st, "acknowledged");
    incident_alert info = plain_alert("whd_a3", 0, "pd-1", ALERT_INFO);
    ingest_ok(f, &info, &d);
    assert_int_equal(d.result, INGEST_ATTACHED);
    incident_status(f, b.incident_id, st, sizeof(st));
    assert_string_equal(st, "acknowledged");
    /* An acknowledged incident is still open for correlation. */
    incident_alert refire = plain_alert("whd_a4", 0, "pd-1", ALERT_FIRING);
    ingest_ok(f, &refire, &d);
    assert_int_equal(d.result, INGEST_ATTACHED);
    assert_int_equal(count_incidents(f), 1);
}

/* ---- concurrency ------------------------------------------------------------------- */

#define RACERS 8

typedef struct {
    fixture *f;
    pthread_barrier_t *go;
    int n;
    int rc;
    incident_outcome out;
    char err[256];
} racer;

static void *race_main(void *p)
{
    racer *r = p;
    store_t *s = NULL;
    char err[256];
    if (store_open(r->f->at.url, &s, err, sizeof(err)) != STORE_OK) {
        r->rc = -2;
        pthread_barrier_wait(r->go);
        return NULL;
    }
    worker_ctx w = { .store = s };
    char delivery[32];
    snprintf(delivery, sizeof(delivery), "whd_race%d", r->n);
    incident_alert a = plain_alert(delivery, 0, "fp-race", ALERT_FIRING);
    pthread_barrier_wait(r->go);
    r->rc = incident_ingest(&w, r->f->org, NULL, &a, T0 + 1, &r->out, r->err, sizeof(r->err));
    store_close(s);
    return NULL;
}

/* Several workers ingesting the same fingerprint at once open one
 * incident with one RCA job (the per-org lock). */
static void test_concurrent_same_fingerprint(void **state)
{
    fixture *f = *state;
    /* Each racer's handle waits up to a minute for the write lock, not the
     * default 5 s: the last of them waits for every other's commit and
     * fsync, however slow the disk the other tests share. */
    db_set_limits(60000, 0);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    racer r[RACERS];
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i] = (racer){ .f = f, .go = &go, .n = i };
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    /* Every racer is joined before any check: a failed check leaves the
     * test, and a racer still running would write into its dead frame. */
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    db_set_limits(0, 0);
    int created = 0, attached = 0;
    for (int i = 0; i < RACERS; i++) {
        if (r[i].rc != 0)
            fail_msg("racer %d: %d %s", i, r[i].rc, r[i].err);
        created += r[i].out.result == INGEST_CREATED;
        attached += r[i].out.result == INGEST_ATTACHED;
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(created, 1);
    assert_int_equal(attached, RACERS - 1);
    assert_int_equal(count_incidents(f), 1);
    assert_int_equal(count_jobs(f), 1);
    for (int i = 1; i < RACERS; i++)
        assert_string_equal(r[i].out.incident_id, r[0].out.incident_id);
    assert_int_equal(sql_int(f, "SELECT alert_count FROM incidents WHERE org_id = ?", f->org),
                     RACERS);
    /* Positions are 1..RACERS, each once. */
    assert_int_equal(sql_int(f, "SELECT COUNT(DISTINCT incident_pos) FROM incident_alerts"
                                " WHERE org_id = ?",
                             f->org),
                     RACERS);
}

/* PostgreSQL: the org lock serializes correlation, and only correlation.
 * While another transaction holds it (as an ingest does), a webhook
 * delivery of the same org is still persisted (its foreign-key check is
 * not blocked), and an ingest waits — here until the statement deadline,
 * so it fails instead of hanging.  Once the lock is gone, ingest works. */
static void test_pg_org_lock_scope(void **state)
{
    fixture *f = *state;
    const db_engine *eng = db_engine_for(f->at.url);
    db_t *holder = NULL;
    char err[256];
    assert_int_equal(eng->open(f->at.url, &holder, err, sizeof(err)), DB_OK);
    assert_int_equal(eng->exec(holder, "BEGIN", NULL, 0, NULL), DB_OK);
    db_param p[] = { DB_P_TEXT(f->org) };
    db_result r;
    assert_int_equal(
        eng->query(holder, "SELECT id FROM orgs WHERE id = ? FOR NO KEY UPDATE", p, 1, &r), DB_OK);
    assert_int_equal(r.nrows, 1);
    db_result_free(&r);

    store_webhook_delivery d = { 0 };
    snprintf(d.org_id, sizeof(d.org_id), "%s", f->org);
    snprintf(d.connector, sizeof(d.connector), "grafana");
    snprintf(d.tenant_key, sizeof(d.tenant_key), "usr_1");
    snprintf(d.delivery_id, sizeof(d.delivery_id), "lock-scope-1");
    d.verified = 1;
    assert_int_equal(store_webhook_insert(f->s, &d, "{}", 2, 0), STORE_OK);

    /* 1.5 s for the waiter only, whose calls are to time out: the handles
     * opened for the calls that must succeed (the fixture's, the checks',
     * the holder's) keep the usual limits, as a PostgreSQL round trip on a
     * loaded machine may take longer than that.  Not less: the waiter's own
     * store_open (its ~20 statements) must succeed under it. */
    db_set_limits(1500, 0); /* for the handle opened next */
    store_t *waiter = open_store(f->at.url);
    db_set_limits(0, 0);
    worker_ctx w = { .store = waiter };
    incident_alert a = plain_alert("whd_lock", 0, "fp-lock", ALERT_FIRING);
    incident_outcome o;
    assert_int_equal(incident_ingest(&w, f->org, NULL, &a, T0, &o, err, sizeof(err)), -1);
    assert_int_equal(count_incidents(f), 0);

    assert_int_equal(eng->exec(holder, "ROLLBACK", NULL, 0, NULL), DB_OK);
    eng->close(holder);
    assert_int_equal(incident_ingest(&f->w, f->org, NULL, &a, T0, &o, err, sizeof(err)), 0);
    assert_int_equal(o.result, INGEST_CREATED);

    /* A manual close takes the same lock: it waits for an ingest in flight
     * (here: times out while the holder keeps the lock) and changes nothing. */
    assert_int_equal(eng->open(f->at.url, &holder, err, sizeof(err)), DB_OK);
    assert_int_equal(eng->exec(holder, "BEGIN", NULL, 0, NULL), DB_OK);
    assert_int_equal(
        eng->query(holder, "SELECT id FROM orgs WHERE id = ? FOR NO KEY UPDATE", p, 1, &r), DB_OK);
    db_result_free(&r);
    assert_int_equal(store_incident_set_status(waiter, f->org, o.incident_id, "closed", T0 + 5),
                     STORE_ERR);
    char st[32];
    incident_status(f, o.incident_id, st, sizeof(st));
    assert_string_equal(st, "open");
    assert_int_equal(eng->exec(holder, "ROLLBACK", NULL, 0, NULL), DB_OK);
    eng->close(holder);
    assert_int_equal(store_incident_set_status(f->s, f->org, o.incident_id, "closed", T0 + 5),
                     STORE_OK);
    incident_status(f, o.incident_id, st, sizeof(st));
    assert_string_equal(st, "closed");
    store_close(waiter);
}

/* ---- invalid input ----------------------------------------------------------------- */

static void expect_invalid(fixture *f, const char *org, const incident_alert *a, const char *want)
{
    char err[256] = "";
    incident_outcome o;
    assert_int_equal(incident_ingest(&f->w, org, NULL, a, T0, &o, err, sizeof(err)), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not name \"%s\"", err, want);
    assert_int_equal(o.result, 0);
    assert_string_equal(o.alert_id, "");
}

static void test_invalid_input(void **state)
{
    fixture *f = *state;
    char longid[INC_KEY_MAX + 2];
    memset(longid, 'k', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    incident_alert a;

    a = plain_alert("whd_x", 0, "fp", ALERT_FIRING);
    a.source = NULL;
    expect_invalid(f, f->org, &a, "source is required");
    a.source = "Graf ana";
    expect_invalid(f, f->org, &a, "source must be a connector id");
    a = plain_alert(NULL, 0, "fp", ALERT_FIRING);
    expect_invalid(f, f->org, &a, "delivery_id is required");
    a = plain_alert("whd_\xff", 0, "fp", ALERT_FIRING);
    expect_invalid(f, f->org, &a, "delivery_id is not valid UTF-8");
    a = plain_alert("whd_x", 0, "", ALERT_FIRING);
    expect_invalid(f, f->org, &a, "fingerprint is required");
    a = plain_alert("whd_x", 0, longid, ALERT_FIRING);
    a.source_alert_id = "x";
    expect_invalid(f, f->org, &a, "fingerprint is too long");
    a = plain_alert("whd_x", 0, "fp\n1", ALERT_FIRING);
    a.source_alert_id = "x";
    expect_invalid(f, f->org, &a, "fingerprint contains control characters");
    a = plain_alert("whd_x", 0, "fp", ALERT_FIRING);
    a.source_alert_id = longid;
    expect_invalid(f, f->org, &a, "source_alert_id is too long");
    a = plain_alert("whd_x", 0, "fp", ALERT_FIRING);
    a.dedup_key = longid;
    expect_invalid(f, f->org, &a, "dedup_key is too long");
    a = plain_alert("whd_x", -1, "fp", ALERT_FIRING);
    expect_invalid(f, f->org, &a, "index is negative");
    a = plain_alert("whd_x", 0, "fp", (alert_state)42);
    expect_invalid(f, f->org, &a, "state");
    a = plain_alert("whd_x", 0, "fp", ALERT_FIRING);
    a.title = NULL;
    expect_invalid(f, f->org, &a, "title is required");
    a.title = " \n\t ";
    expect_invalid(f, f->org, &a, "title is required");
    a = plain_alert("whd_x", 0, "fp", ALERT_FIRING);
    a.occurred_at = -5;
    expect_invalid(f, f->org, &a, "occurred_at");
    a = plain_alert("whd_x", 0, "fp", ALERT_FIRING);
    expect_invalid(f, NULL, &a, "org_id is required");
    expect_invalid(f, "org_missing", &a, "organization not found");
    char err[64];
    incident_outcome o;
    assert_int_equal(incident_ingest(NULL, f->org, NULL, &a, T0, &o, err, sizeof(err)), -1);
    assert_int_equal(incident_ingest(&f->w, f->org, NULL, NULL, T0, &o, err, sizeof(err)), -1);
    assert_int_equal(incident_ingest(&f->w, f->org, NULL, &a, T0, NULL, err, sizeof(err)), -1);
    /* Nothing was stored by any of these. */
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM incident_alerts", NULL), 0);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM incidents", NULL), 0);
}

/* Display text is bounded and cleaned; unsafe links are dropped. */
static void test_text_bounds(void **state)
{
    fixture *f = *state;
    size_t big = 100 * 1024;
    char *title = malloc(big + 1);
    assert_non_null(title);
    memset(title, 'T', big);
    memcpy(title + 510, "\xc3\xa9\xc3\xa9", 4); /* é across the 512-byte cut */
    title[big] = '\0';
    incident_alert a = plain_alert("whd_t", 0, "fp-t", ALERT_FIRING);
    a.title = title;
    a.url = "javascript:alert(1)";
    a.service = "svc\x01name";
    incident_outcome o;
    ingest_ok(f, &a, &o);
    assert_int_equal(o.result, INGEST_CREATED);
    assert_int_equal(sql_int(f, "SELECT LENGTH(title) FROM incidents WHERE id = ?", o.incident_id),
                     store_place_is_pg(&f->at) ? 511 : 511); /* 510 'T' + one é (2 bytes = 1 char) */
    char v[64];
    sql_text(f, "SELECT url FROM incident_alerts WHERE id = ?", o.alert_id, v, sizeof(v));
    assert_string_equal(v, "");
    sql_text(f, "SELECT service FROM incidents WHERE id = ?", o.incident_id, v, sizeof(v));
    assert_string_equal(v, "svc name");
    sql_text(f, "SELECT service_key FROM incidents WHERE id = ?", o.incident_id, v, sizeof(v));
    assert_string_equal(v, "name");
    free(title);
}

/* A title (or message) behind a long run of blanks and control characters
 * passes the check (it has visible text) and must still be kept: the copy
 * looked at a prefix twice the cap and found only blanks there, so the
 * ingest failed as if the store were down and the webhook was retried for
 * ever (and a Grafana group's later alerts never got in). */
static void test_text_after_long_blank_run(void **state)
{
    fixture *f = *state;
    size_t lead = 4 * (INC_TITLE_MAX + 1), mlead = 4 * (INC_MESSAGE_MAX + 1);
    char *title = malloc(lead + 16), *msg = malloc(mlead + 16);
    assert_non_null(title);
    assert_non_null(msg);
    for (size_t i = 0; i < lead; i++)
        title[i] = i % 3 ? ' ' : '\x01';
    snprintf(title + lead, 16, "Disk full");
    memset(msg, '\n', mlead);
    snprintf(msg + mlead, 16, "on /var");
    incident_alert a = plain_alert("whd_blank", 0, "fp-blank", ALERT_FIRING);
    a.title = title;
    a.message = msg;
    incident_outcome o;
    ingest_ok(f, &a, &o);
    assert_int_equal(o.result, INGEST_CREATED);
    char v[64];
    sql_text(f, "SELECT title FROM incidents WHERE id = ?", o.incident_id, v, sizeof(v));
    assert_string_equal(v, "Disk full");
    sql_text(f, "SELECT message FROM incident_alerts WHERE id = ?", o.alert_id, v, sizeof(v));
    assert_string_equal(v, "on /var");
    free(title);
    free(msg);
}

/* ---- pure functions ------------------------------------------------------------------ */

static void test_severity_normalize(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "P1", "critical" },     { "critical", "critical" }, { "ERROR", "critical" },
        { "fatal", "critical" },  { " Sev1 ", "critical" },   { "p2", "high" },
        { "High", "high" },       { "major", "high" },        { "warning", "medium" },
        { "P3", "medium" },       { "medium", "medium" },     { "low", "low" },
        { "P5", "low" },          { "minor", "low" },         { "info", "info" },
        { "debug", "info" },      { "OK", "info" },           { "", "unknown" },
        { "bogus", "unknown" },   { "criticalcriticalcritical", "unknown" },
        { "crit\xff", "unknown" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(incident_severity_normalize(cases[i][0]), cases[i][1]);
    assert_string_equal(incident_severity_normalize(NULL), "unknown");
}

static void test_service_key(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "Checkout Service", "checkout" }, { "checkout-svc", "checkout" },
        { "CHECKOUT", "checkout" },         { "checkout_service", "checkout" },
        { "checkout-api", "checkout-api" }, { "  api / Gateway  ", "api-gateway" },
        { "service", "service" },           { "", "" },
        { "--", "" },                       { "Zürich-DB", "z\xc3\xbcrich-db" },
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        incident_service_key(cases[i][0], out, sizeof(out));
        assert_string_equal(out, cases[i][1]);
    }
    assert_int_equal(incident_service_key(NULL, out, sizeof(out)), 0);
    /* Bounded: cut between words. */
    char small[8];
    incident_service_key("alpha beta gamma", small, sizeof(small));
    assert_string_equal(small, "alpha");
    /* Invalid UTF-8 is repaired before the words are cut: still whole words
     * (fuzz_incident_text found a key ending in '-'). */
    char cut[17];
    size_t n = incident_service_key("z\x03\xc3\x89\x89\x1f\x89\x89\x03\x89\x89\x89", cut, sizeof(cut));
    assert_int_equal(n, strlen(cut));
    assert_true(n > 0 && cut[n - 1] != '-' && cut[0] != '-');
    assert_null(strstr(cut, "--"));
}

static void test_summary(void **state)
{
    (void)state;
    char out[1024];
    incident_summary_in in = {
        .title = "HighCPU",
        .source = "grafana",
        .service = "checkout",
        .severity = "critical",
        .fingerprint = "fp-1",
        .url = "https://grafana.example/x",
        .message = "line one\n\n   \nline two",
        .started_at = T0,
    };
    size_t n = incident_summary(&in, out, sizeof(out));
    assert_string_equal(out, "critical grafana alert: HighCPU\n"
                             "Service: checkout\n"
                             "Started: 2026-11-02T10:00:00Z\n"
                             "Fingerprint: fp-1\n"
                             "Link: https://grafana.example/x\n"
                             "Details:\n"
                             "  line one\n"
                             "  line two\n");
    assert_int_equal(n, strlen(out));
    /* Deterministic. */
    char again[1024];
    incident_summary(&in, again, sizeof(again));
    assert_string_equal(out, again);

    /* No service/url/message; many and long lines are bounded. */
    incident_summary_in bare = { .title = "T", .source = "sentry", .severity = "low",
                                 .fingerprint = "f", .started_at = T0 };
    incident_summary(&bare, out, sizeof(out));
    assert_string_equal(out, "low sentry alert: T\nService: (none)\n"
                             "Started: 2026-11-02T10:00:00Z\nFingerprint: f\n");
    char msg[40 * 400];
    size_t m = 0;
    for (int i = 0; i < 30; i++) {
        memset(msg + m, 'a' + (i % 26), 300);
        m += 300;
        msg[m++] = '\n';
    }
    msg[m] = '\0';
    bare.message = msg;
    char big[16384];
    incident_summary(&bare, big, sizeof(big));
    assert_non_null(strstr(big, "  … 10 more lines\n"));
    /* Each kept line: 2 spaces + 240 bytes + "…". */
    const char *first = strstr(big, "Details:\n") + strlen("Details:\n");
    const char *eol = strchr(first, '\n');
    assert_int_equal(eol - first, 2 + SUMMARY_LINE_MAX + (int)strlen("…"));
    /* A small buffer: cut, still a string. */
    char tiny[16];
    assert_int_equal(incident_summary(&in, tiny, sizeof(tiny)), 15);
    assert_string_equal(tiny, "critical grafan");
}

#define BOTH(t)                                                                                    \
    { "file/" #t, t, setup_file, teardown, NULL }, { "postgres/" #t, t, setup_pg, teardown, NULL }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_severity_normalize),
        cmocka_unit_test(test_service_key),
        cmocka_unit_test(test_summary),
        BOTH(test_grafana_fire_then_resolve),
        BOTH(test_grafana_multiple_alerts_one_webhook),
        BOTH(test_grafana_partial_resolution),
        BOTH(test_grafana_refire_weeks_later),
        BOTH(test_grafana_resolution_without_match),
        BOTH(test_grafana_labels_change_mid_incident),
        BOTH(test_duplicate_delivery),
        BOTH(test_dedup_key),
        BOTH(test_fingerprint_scoped_by_source),
        BOTH(test_resolution_before_firing),
        BOTH(test_recurring_resolution_before_firing),
        BOTH(test_late_firing_copy_after_resolution),
        BOTH(test_late_resolution_of_earlier_instance),
        BOTH(test_late_resolution_inside_the_incident_of_both),
        BOTH(test_sentry_late_resolution_dated_by_delivery),
        BOTH(test_undated_late_resolution_dated_by_delivery),
        BOTH(test_window_and_service),
        BOTH(test_acknowledge_and_info),
        BOTH(test_concurrent_same_fingerprint),
        BOTH(test_invalid_input),
        BOTH(test_text_bounds),
        BOTH(test_text_after_long_blank_run),
        { "postgres/test_pg_org_lock_scope", test_pg_org_lock_scope, setup_pg, teardown, NULL },
    };
    return cmocka_run_group_tests_name("incidents", tests, store_place_group_setup,
                                       store_place_group_teardown);
}
