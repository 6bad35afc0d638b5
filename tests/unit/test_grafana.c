/* test_grafana.c — Grafana's webhook payload read into incident alerts
 * (server/connectors/grafana.c): the shape check, the field mapping, the
 * fingerprint computed from labels when an alert has none, the test
 * notification, and Go's RFC 3339 times.  Payloads follow Grafana's
 * documented webhook contact point format (the docs' example, with its
 * "+02:00" startsAt); expected times and the label digest were computed with
 * Python's datetime and hashlib, not with the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grafana.h"

/* Grafana's documented example payload (two alerts), trimmed of nothing. */
static const char *const DOC_EXAMPLE =
    "{\"receiver\":\"My Super Webhook\",\"status\":\"firing\",\"orgId\":1,\"alerts\":["
    "{\"status\":\"firing\",\"labels\":{\"alertname\":\"High memory usage\",\"team\":\"blue\","
    "\"zone\":\"us-1\"},\"annotations\":{\"description\":\"The system has high memory usage\","
    "\"runbook_url\":\"https://myrunbook.com/runbook/1234\",\"summary\":\"This alert was "
    "triggered for zone us-1\"},\"startsAt\":\"2021-10-12T09:51:03.157076+02:00\","
    "\"endsAt\":\"0001-01-01T00:00:00Z\",\"generatorURL\":\"https://play.grafana.org/alerting/"
    "1afz29v7z/edit\",\"fingerprint\":\"c6eadffa33fcdf37\",\"silenceURL\":\"https://"
    "play.grafana.org/alerting/silence/new\",\"dashboardURL\":\"\",\"panelURL\":\"\","
    "\"values\":{\"B\":44.23943737541908,\"C\":1},\"valueString\":\"[ var='B' labels={} "
    "value=44.23943737541908 ], [ var='C' labels={} value=1 ]\"},"
    "{\"status\":\"resolved\",\"labels\":{\"alertname\":\"High CPU usage\",\"team\":\"blue\","
    "\"zone\":\"eu-1\",\"severity\":\"warning\",\"job\":\"node\"},\"annotations\":{\"summary\":"
    "\"CPU high in eu-1\"},\"startsAt\":\"2021-10-12T09:56:03.157076+02:00\",\"endsAt\":"
    "\"2021-10-12T10:00:03.157076+02:00\",\"generatorURL\":\"https://play.grafana.org/"
    "alerting/d1rdpdv7k/edit\",\"fingerprint\":\"bc97ff14869b13e3\",\"silenceURL\":\"\","
    "\"dashboardURL\":\"\",\"panelURL\":\"\",\"values\":null,\"valueString\":\"\"}],"
    "\"groupLabels\":{},\"commonLabels\":{\"team\":\"blue\"},\"commonAnnotations\":{},"
    "\"externalURL\":\"https://play.grafana.org/\",\"version\":\"1\",\"groupKey\":\"{}:{}\","
    "\"truncatedAlerts\":0,\"title\":\"[FIRING:2]  (blue)\",\"state\":\"alerting\","
    "\"message\":\"**Firing**\"}";

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

static const cJSON *alert_at(const cJSON *payload, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(payload, "alerts"), i);
}

/* ---- times -------------------------------------------------------------------------- */

static void test_parse_time(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(grafana_parse_time("2021-10-12T09:51:03.157076+02:00", &t), 0);
    assert_int_equal(t, 1634025063);
    assert_int_equal(grafana_parse_time("2026-12-02T15:04:05Z", &t), 0);
    assert_int_equal(t, 1796223845);
    assert_int_equal(grafana_parse_time("2024-02-29T23:30:00.123456789-05:30", &t), 0);
    assert_int_equal(t, 1709269200);
    assert_int_equal(grafana_parse_time("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    /* Go's zero time: parses, to a value callers take as "none" */
    assert_int_equal(grafana_parse_time("0001-01-01T00:00:00Z", &t), 0);
    assert_true(t < 0);
    static const char *const bad[] = {
        "", "yesterday", "2021-10-12", "2021-10-12T09:51:03", "2021-10-12T09:51:03.Z",
        "2021-10-12T09:51:03.1234567890Z", "2021-10-12T09:51:03+2:00", "2021-10-12T09:51:03+24:00",
        "2021-10-12T09:51:03+02:60", "2021-13-12T09:51:03Z", "2021-02-30T09:51:03Z",
        "2021-10-12 09:51:03Z", "2021-10-12T09:51:03Zjunk", "2021-10-12T09:51:03.5+02:00x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(grafana_parse_time(bad[i], &t), -1);
    assert_int_equal(grafana_parse_time(NULL, &t), -1);
}

/* ---- shape ---------------------------------------------------------------------------- */

static void test_check_accepts_documented_payload(void **state)
{
    (void)state;
    cJSON *j = parse(DOC_EXAMPLE);
    char why[256] = "";
    assert_int_equal(grafana_payload_check(j, why, sizeof(why)), 0);
    cJSON_Delete(j);
}

static void expect_refused(const char *body, const char *needle)
{
    cJSON *j = cJSON_Parse(body);
    char why[256] = "";
    assert_int_equal(grafana_payload_check(j, why, sizeof(why)), -1);
    if (!strstr(why, needle))
        fail_msg("why \"%s\" lacks \"%s\" (body %s)", why, needle, body);
    cJSON_Delete(j);
}

static void test_check_refuses_other_shapes(void **state)
{
    (void)state;
    expect_refused("[1,2]", "not a JSON object");
    expect_refused("{}", "alerts[] is missing");
    /* legacy (pre-unified) Grafana alerting webhook */
    expect_refused("{\"title\":\"t\",\"ruleId\":1,\"state\":\"alerting\",\"evalMatches\":[]}",
                   "alerts[] is missing");
    expect_refused("{\"status\":\"firing\",\"alerts\":[]}", "1 to 1000");
    expect_refused("{\"status\":\"firing\",\"alerts\":{}}", "alerts[] is missing");
    expect_refused("{\"status\":\"pending\",\"alerts\":[{\"status\":\"firing\",\"labels\":{}}]}",
                   "status must be");
    expect_refused("{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\"}]}", "labels");
    expect_refused("{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":"
                   "{\"a\":1}}]}",
                   "labels");
    expect_refused("{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{},"
                   "\"annotations\":[]}]}",
                   "annotations");
    expect_refused("{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{}},"
                   "{\"status\":\"firing\",\"labels\":{},\"fingerprint\":7}]}",
                   "alerts[1]: fingerprint must be a string");
    expect_refused("{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{},"
                   "\"fingerprint\":\"a b\"}]}",
                   "printable");
    expect_refused("{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{},"
                   "\"startsAt\":\"now\"}]}",
                   "startsAt");
    expect_refused("{\"status\":\"firing\",\"version\":1,\"alerts\":[{\"status\":\"firing\","
                   "\"labels\":{}}]}",
                   "version");
    expect_refused("{\"status\":\"firing\",\"commonLabels\":{\"x\":[]},\"alerts\":[{\"status\":"
                   "\"firing\",\"labels\":{}}]}",
                   "commonLabels");
    /* more alerts than any Grafana group */
    char *big = malloc(64 + 40 * (GRAFANA_MAX_ALERTS + 1));
    assert_non_null(big);
    size_t o = (size_t)sprintf(big, "{\"status\":\"firing\",\"alerts\":[");
    for (int i = 0; i <= GRAFANA_MAX_ALERTS; i++)
        o += (size_t)sprintf(big + o, "%s{\"status\":\"firing\",\"labels\":{}}", i ? "," : "");
    sprintf(big + o, "]}");
    expect_refused(big, "1 to 1000");
    free(big);
}

/* ---- mapping --------------------------------------------------------------------------- */

static void test_map_documented_alerts(void **state)
{
    (void)state;
    cJSON *j = parse(DOC_EXAMPLE);
    grafana_alert g;
    char why[256];
    assert_int_equal(grafana_alert_map(alert_at(j, 0), &g, why, sizeof(why)), 0);
    assert_string_equal(g.alert.source, "grafana");
    assert_string_equal(g.alert.fingerprint, "c6eadffa33fcdf37");
    assert_false(g.fingerprint_computed);
    assert_int_equal(g.alert.state, ALERT_FIRING);
    assert_string_equal(g.alert.title, "High memory usage");
    assert_null(g.alert.service); /* team/zone are not service labels */
    assert_string_equal(g.alert.severity, "unknown");
    assert_string_equal(g.alert.message,
                        "The system has high memory usage\n[ var='B' labels={} "
                        "value=44.23943737541908 ], [ var='C' labels={} value=1 ]");
    assert_string_equal(g.alert.url, "https://play.grafana.org/alerting/1afz29v7z/edit");
    assert_int_equal(g.alert.occurred_at, 1634025063); /* startsAt */
    assert_ptr_equal(g.alert.raw, alert_at(j, 0));
    grafana_alert_free(&g);

    assert_int_equal(grafana_alert_map(alert_at(j, 1), &g, why, sizeof(why)), 0);
    assert_int_equal(g.alert.state, ALERT_RESOLVED);
    assert_string_equal(g.alert.fingerprint, "bc97ff14869b13e3");
    assert_string_equal(g.alert.service, "node");       /* labels.job */
    assert_string_equal(g.alert.severity, "medium");     /* "warning" normalized */
    assert_string_equal(g.alert.message, "CPU high in eu-1"); /* summary, no valueString */
    assert_int_equal(g.alert.occurred_at, 1634025603);  /* endsAt: when it resolved */
    grafana_alert_free(&g);
    cJSON_Delete(j);
}

static void test_map_fallbacks(void **state)
{
    (void)state;
    grafana_alert g;
    char why[256];
    /* no alertname: the summary; service label priority; priority as severity */
    cJSON *a = parse("{\"status\":\"firing\",\"labels\":{\"namespace\":\"prod\",\"app\":\"web\","
                     "\"service_name\":\"checkout\",\"priority\":\"P1\"},\"annotations\":"
                     "{\"summary\":\"Checkout slow\"},\"panelURL\":\"https://g/p\","
                     "\"dashboardURL\":\"https://g/d\",\"fingerprint\":\"\"}");
    assert_int_equal(grafana_alert_map(a, &g, why, sizeof(why)), 0);
    assert_string_equal(g.alert.title, "Checkout slow");
    assert_string_equal(g.alert.service, "checkout");
    assert_string_equal(g.alert.severity, "critical");
    assert_string_equal(g.alert.url, "https://g/p");
    assert_int_equal(g.alert.occurred_at, 0); /* no startsAt: the time of ingest */
    assert_true(g.fingerprint_computed);      /* "" is no fingerprint */
    grafana_alert_free(&g);
    cJSON_Delete(a);
    /* nothing at all */
    a = parse("{\"status\":\"resolved\",\"labels\":{},\"endsAt\":\"0001-01-01T00:00:00Z\","
              "\"startsAt\":\"2026-12-02T15:04:05Z\"}");
    assert_int_equal(grafana_alert_map(a, &g, why, sizeof(why)), 0);
    assert_string_equal(g.alert.title, "Grafana alert");
    assert_null(g.alert.message);
    assert_null(g.alert.url);
    assert_int_equal(g.alert.occurred_at, 1796223845); /* Go's zero endsAt: startsAt */
    grafana_alert_free(&g);
    cJSON_Delete(a);
    /* a hostile alert is refused by the mapper too */
    a = parse("{\"status\":\"firing\",\"labels\":{\"a\":{}}}");
    assert_int_equal(grafana_alert_map(a, &g, why, sizeof(why)), -1);
    grafana_alert_free(&g);
    cJSON_Delete(a);
}

static void test_fingerprint_from_sorted_labels(void **state)
{
    (void)state;
    grafana_alert g1, g2;
    char why[256];
    cJSON *a = parse("{\"status\":\"firing\",\"labels\":{\"severity\":\"warning\",\"alertname\":"
                     "\"HighCPU\",\"service\":\"api\"}}");
    cJSON *b = parse("{\"status\":\"resolved\",\"labels\":{\"service\":\"api\",\"alertname\":"
                     "\"HighCPU\",\"severity\":\"warning\"}}");
    assert_int_equal(grafana_alert_map(a, &g1, why, sizeof(why)), 0);
    assert_int_equal(grafana_alert_map(b, &g2, why, sizeof(why)), 0);
    assert_true(g1.fingerprint_computed);
    /* sha256 of "alertname\0HighCPU\0service\0api\0severity\0warning\0" (Python hashlib) */
    assert_string_equal(g1.fingerprint,
                        "labels:3f1d65ec84d80e6d11bda953cdd2293aa009be6f6798fca5b05e50ff89f59cd9");
    assert_string_equal(g1.fingerprint, g2.fingerprint);
    grafana_alert_free(&g1);
    grafana_alert_free(&g2);
    cJSON_Delete(b);
    /* a label changed: another fingerprint */
    b = parse("{\"status\":\"resolved\",\"labels\":{\"service\":\"api\",\"alertname\":"
              "\"HighCPU\",\"severity\":\"critical\"}}");
    assert_int_equal(grafana_alert_map(a, &g1, why, sizeof(why)), 0);
    assert_int_equal(grafana_alert_map(b, &g2, why, sizeof(why)), 0);
    assert_string_not_equal(g1.fingerprint, g2.fingerprint);
    grafana_alert_free(&g1);
    grafana_alert_free(&g2);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void test_message_is_bounded(void **state)
{
    (void)state;
    size_t n = GRAFANA_MESSAGE_MAX * 2;
    char *desc = malloc(n + 1);
    assert_non_null(desc);
    memset(desc, 'd', n);
    desc[n] = '\0';
    cJSON *a = parse("{\"status\":\"firing\",\"labels\":{},\"valueString\":\"v=1\"}");
    cJSON *ann = cJSON_AddObjectToObject(a, "annotations");
    cJSON_AddStringToObject(ann, "description", desc);
    grafana_alert g;
    char why[256];
    assert_int_equal(grafana_alert_map(a, &g, why, sizeof(why)), 0);
    assert_true(strlen(g.alert.message) <= GRAFANA_MESSAGE_MAX + 1);
    assert_int_equal(g.alert.message[0], 'd');
    grafana_alert_free(&g);
    cJSON_Delete(a);
    free(desc);
}

static void test_test_notification(void **state)
{
    (void)state;
    cJSON *a = parse("{\"status\":\"firing\",\"labels\":{\"alertname\":\"TestAlert\","
                     "\"instance\":\"Grafana\"},\"annotations\":{\"summary\":\"Notification "
                     "test\"}}");
    assert_true(grafana_is_test_alert(a));
    cJSON_Delete(a);
    a = parse("{\"status\":\"firing\",\"labels\":{\"alertname\":\"TestAlert\","
              "\"instance\":\"Grafana\",\"service\":\"real\"}}");
    assert_false(grafana_is_test_alert(a));
    cJSON_Delete(a);
    a = parse("{\"status\":\"firing\",\"labels\":{\"alertname\":\"TestAlert\"}}");
    assert_false(grafana_is_test_alert(a));
    cJSON_Delete(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_check_accepts_documented_payload),
        cmocka_unit_test(test_check_refuses_other_shapes),
        cmocka_unit_test(test_map_documented_alerts),
        cmocka_unit_test(test_map_fallbacks),
        cmocka_unit_test(test_fingerprint_from_sorted_labels),
        cmocka_unit_test(test_message_is_bounded),
        cmocka_unit_test(test_test_notification),
    };
    return cmocka_run_group_tests_name("grafana", tests, NULL, NULL);
}
