/* test_datadog.c — the Datadog connector's pure pieces
 * (server/connectors/datadog.c): the site table (the guide's US1, US3, US5,
 * EU and Datadog's US1-FED and AP1, by code or domain), and the webhook
 * payload → alert mapping over bodies as Datadog's Webhooks integration
 * sends them: its default payload ({"body": "$EVENT_MSG", "last_updated",
 * "event_type", "title": "$EVENT_TITLE", "date", "org": {"id", "name"},
 * "id": "$ID"}) and the recommended "aurora" payload of docs/api.md, with
 * values of the forms Datadog documents ($ALERT_TRANSITION "Triggered",
 * "Re-Triggered", "Warn", "No Data", "Recovered"; $DATE in epoch ms;
 * $TAGS "a:b,c:d"; $ALERT_PRIORITY "P1"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datadog.h"

/* ---- sites ------------------------------------------------------------------------ */

static void expect_site(const char *given, const char *code, const char *domain)
{
    const datadog_site *s = datadog_site_find(given);
    assert_non_null(s);
    assert_string_equal(s->code, code);
    assert_string_equal(s->domain, domain);
}

static void test_sites(void **state)
{
    (void)state;
    /* the guide's table, by code and by domain */
    expect_site("US1", "US1", "datadoghq.com");
    expect_site("US3", "US3", "us3.datadoghq.com");
    expect_site("US5", "US5", "us5.datadoghq.com");
    expect_site("EU", "EU", "datadoghq.eu");
    expect_site("datadoghq.com", "US1", "datadoghq.com");
    expect_site("us3.datadoghq.com", "US3", "us3.datadoghq.com");
    expect_site("us5.datadoghq.com", "US5", "us5.datadoghq.com");
    expect_site("datadoghq.eu", "EU", "datadoghq.eu");
    /* the two more Datadog offers */
    expect_site("US1-FED", "US1-FED", "ddog-gov.com");
    expect_site("us1_fed", "US1-FED", "ddog-gov.com");
    expect_site("ddog-gov.com", "US1-FED", "ddog-gov.com");
    expect_site("AP1", "AP1", "ap1.datadoghq.com");
    expect_site("ap1.datadoghq.com", "AP1", "ap1.datadoghq.com");
    /* how Datadog writes them elsewhere: lower case, EU1, web and API hosts, URLs */
    expect_site("us1", "US1", "datadoghq.com");
    expect_site("eu1", "EU", "datadoghq.eu");
    expect_site("app.datadoghq.eu", "EU", "datadoghq.eu");
    expect_site("api.us3.datadoghq.com", "US3", "us3.datadoghq.com");
    expect_site("https://app.datadoghq.com/", "US1", "datadoghq.com");
    expect_site("DATADOGHQ.COM", "US1", "datadoghq.com");
    /* anything else */
    assert_null(datadog_site_find(NULL));
    assert_null(datadog_site_find(""));
    assert_null(datadog_site_find("US2"));
    assert_null(datadog_site_find("AP2"));
    assert_null(datadog_site_find("evil.example.com"));
    assert_null(datadog_site_find("datadoghq.com.evil.example"));
    assert_null(datadog_site_find("api.datadoghq.com@evil.example"));
    assert_null(datadog_site_find("app.app.datadoghq.com"));
    assert_null(datadog_site_find("http://"));
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(datadog_site_find(longname));
    assert_non_null(strstr(datadog_site_list(), "US1-FED"));
}

/* ---- transitions ------------------------------------------------------------------- */

static void test_transitions(void **state)
{
    (void)state;
    static const char *const firing[] = { "Triggered", "Re-Triggered", "Warn", "Re-Warn",
                                          "No Data", "Re-No Data", "Renotify", "triggered",
                                          "RE_TRIGGERED" };
    for (size_t i = 0; i < sizeof(firing) / sizeof(firing[0]); i++) {
        alert_state st = ALERT_INFO;
        assert_int_equal(datadog_transition_state(firing[i], &st), 1);
        assert_int_equal(st, ALERT_FIRING);
    }
    alert_state st = ALERT_FIRING;
    assert_int_equal(datadog_transition_state("Recovered", &st), 1);
    assert_int_equal(st, ALERT_RESOLVED);
    assert_int_equal(datadog_transition_state("", &st), 0);
    assert_int_equal(datadog_transition_state(NULL, &st), 0);
    assert_int_equal(datadog_transition_state("Muted", &st), 0);
    assert_int_equal(datadog_transition_state("Triggered and then some more words", &st), 0);
}

/* ---- payloads ------------------------------------------------------------------------ */

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

static int check_text(const char *s, char *why, size_t cap)
{
    cJSON *j = cJSON_Parse(s);
    int rc = datadog_payload_check(j, why, cap);
    cJSON_Delete(j);
    return rc;
}

/* The recommended payload of docs/api.md, filled as Datadog fills it. */
#define RECOMMENDED(transition, extra)                                                              \
    "{\"id\":\"7215468812345\",\"title\":\"[P2] [" transition                                       \
    " on {host:web-1}] CPU high on web\",\"body\":\"%%%\\nCPU is 97%% on web-1\\n%%%\","            \
    "\"alert_transition\":\"" transition "\",\"alert_id\":\"4242\",\"aggreg_key\":"                 \
    "\"9bd4ac313a4d1e8fae2482df7b77628\",\"priority\":\"normal\",\"alert_priority\":\"P2\","         \
    "\"date\":\"1764680000000\",\"last_updated\":\"1764680001000\",\"event_type\":"                  \
    "\"query_alert_monitor\",\"hostname\":\"web-1\",\"tags\":\"env:prod,service:checkout,team:a\","  \
    "\"link\":\"https://app.datadoghq.com/event/event?id=7215468812345\",\"org\":{\"id\":\"123\","   \
    "\"name\":\"Acme\"}" extra "}"

static void test_recommended_payload(void **state)
{
    (void)state;
    cJSON *j = parse(RECOMMENDED("Triggered", ""));
    datadog_alert a;
    char why[160];
    assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), 0);
    assert_int_equal(a.state, ALERT_FIRING);
    assert_int_equal(a.state_known, 1);
    assert_string_equal(a.fingerprint, "datadog:agg:9bd4ac313a4d1e8fae2482df7b77628");
    assert_string_equal(a.title, "CPU high on web");
    assert_string_equal(a.service, "checkout");
    assert_string_equal(a.severity, "high"); /* P2 */
    assert_string_equal(a.source_alert_id, "4242");
    assert_non_null(strstr(a.message, "CPU is 97%"));
    assert_string_equal(a.url, "https://app.datadoghq.com/event/event?id=7215468812345");
    assert_int_equal(a.occurred_at, 1764680000); /* ms → s */
    cJSON_Delete(j);

    /* the recovery of the same monitor and group: same fingerprint */
    j = parse(RECOMMENDED("Recovered", ""));
    datadog_alert r;
    assert_int_equal(datadog_map_alert(j, &r, why, sizeof(why)), 0);
    assert_int_equal(r.state, ALERT_RESOLVED);
    assert_string_equal(r.fingerprint, a.fingerprint);
    cJSON_Delete(j);

    /* Warn without a priority: medium */
    j = parse("{\"id\":\"1\",\"title\":\"[Warn] Disk\",\"alert_transition\":\"Warn\","
              "\"alert_id\":\"9\"}");
    assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), 0);
    assert_int_equal(a.state, ALERT_FIRING);
    assert_string_equal(a.severity, "medium");
    cJSON_Delete(j);
}

static void test_default_payload(void **state)
{
    (void)state;
    /* Datadog's default payload: no transition, monitor id or aggregation
     * key; the title tells the state, the priority and the group. */
    const char *fire =
        "{\"body\":\"%%%\\nload high\\n%%%\",\"last_updated\":\"1764680000000\","
        "\"event_type\":\"query_alert_monitor\",\"title\":\"[P1] [Triggered on "
        "{host:db-2,service:orders}] Load high\",\"date\":\"1764680000000\","
        "\"org\":{\"id\":\"123\",\"name\":\"Acme\"},\"id\":\"555\"}";
    const char *recover =
        "{\"body\":\"ok\",\"last_updated\":\"1764680900000\",\"event_type\":\"query_alert_monitor\","
        "\"title\":\"[P1] [Recovered on {host:db-2,service:orders}] Load high\",\"date\":"
        "\"1764680900000\",\"org\":{\"id\":\"123\",\"name\":\"Acme\"},\"id\":\"556\"}";
    datadog_alert a, r;
    char why[160];
    cJSON *j = parse(fire);
    assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), 0);
    cJSON_Delete(j);
    j = parse(recover);
    assert_int_equal(datadog_map_alert(j, &r, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_int_equal(a.state, ALERT_FIRING);
    assert_int_equal(r.state, ALERT_RESOLVED);
    assert_string_equal(a.title, "Load high");
    assert_string_equal(a.severity, "critical"); /* [P1] */
    assert_string_equal(a.service, "orders");    /* from the group */
    assert_string_equal(a.fingerprint, r.fingerprint);
    assert_non_null(strstr(a.fingerprint, "host:db-2"));
    /* another group of the same monitor is another alert */
    j = parse("{\"id\":\"557\",\"title\":\"[P1] [Triggered on {host:db-3,service:orders}] Load "
              "high\"}");
    datadog_alert b;
    assert_int_equal(datadog_map_alert(j, &b, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_string_not_equal(b.fingerprint, a.fingerprint);
}

static void test_monitor_and_scope_fingerprint(void **state)
{
    (void)state;
    datadog_alert a, b, c;
    char why[160];
    cJSON *j = parse("{\"id\":1,\"alert_id\":4242,\"title\":\"x\",\"alert_transition\":"
                     "\"Triggered\",\"alert_scope\":\"host:a\",\"tags\":[\"env:prod\","
                     "\"service:pay\"],\"date\":1764680000}");
    assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_string_equal(a.fingerprint, "datadog:monitor:4242:host:a");
    assert_string_equal(a.source_alert_id, "4242");
    assert_string_equal(a.service, "pay"); /* tags as an array */
    assert_int_equal(a.occurred_at, 1764680000); /* seconds stay seconds */
    j = parse("{\"id\":2,\"alert_id\":\"4242\",\"title\":\"x\",\"alert_transition\":"
              "\"Recovered\",\"alert_scope\":\"host:b\"}");
    assert_int_equal(datadog_map_alert(j, &b, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_string_equal(b.fingerprint, "datadog:monitor:4242:host:b");
    /* an alert_type alone decides when nothing else does */
    j = parse("{\"id\":3,\"title\":\"Deploy done\",\"alert_type\":\"success\"}");
    assert_int_equal(datadog_map_alert(j, &c, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_int_equal(c.state, ALERT_RESOLVED);
    j = parse("{\"id\":4,\"title\":\"Something happened\",\"event_type\":\"event\"}");
    assert_int_equal(datadog_map_alert(j, &c, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_int_equal(c.state_known, 0);
    assert_int_equal(c.state, ALERT_INFO);
    assert_string_equal(c.severity, "unknown");
    assert_string_equal(c.service, "");
    assert_null(c.url);
}

static void test_long_or_odd_fingerprint_is_hashed(void **state)
{
    (void)state;
    char *big = malloc(4000);
    assert_non_null(big);
    int n = snprintf(big, 4000, "{\"id\":\"1\",\"title\":\"t\",\"aggreg_key\":\"");
    memset(big + n, 'k', 600);
    snprintf(big + n + 600, 4000 - (size_t)n - 600, "\"}");
    cJSON *j = parse(big);
    datadog_alert a;
    char why[160];
    assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_int_equal(strncmp(a.fingerprint, "datadog:sha256:", 15), 0);
    assert_int_equal(strlen(a.fingerprint), 15 + 64);
    /* two keys longer than any buffer, differing only in their last byte:
     * hashed whole, never cut into one */
    size_t kn = 20000;
    char *k1 = malloc(kn + 64), *k2 = malloc(kn + 64);
    assert_non_null(k1);
    assert_non_null(k2);
    int m = snprintf(k1, 64, "{\"id\":\"1\",\"title\":\"t\",\"aggreg_key\":\"");
    memset(k1 + m, 'k', kn);
    snprintf(k1 + m + kn, 64, "1\"}");
    memcpy(k2, k1, (size_t)m + kn + 4);
    k2[(size_t)m + kn] = '2';
    datadog_alert x, y;
    j = parse(k1);
    assert_int_equal(datadog_map_alert(j, &x, why, sizeof(why)), 0);
    cJSON_Delete(j);
    j = parse(k2);
    assert_int_equal(datadog_map_alert(j, &y, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_string_not_equal(x.fingerprint, y.fingerprint);
    free(k1);
    free(k2);
    /* a control character would be refused by the incident store: hashed */
    j = parse("{\"id\":\"1\",\"title\":\"t\",\"aggreg_key\":\"a\\u0001b\"}");
    assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), 0);
    cJSON_Delete(j);
    assert_int_equal(strncmp(a.fingerprint, "datadog:sha256:", 15), 0);
    free(big);
}

static void test_not_a_datadog_payload(void **state)
{
    (void)state;
    char why[160];
    assert_int_equal(check_text(RECOMMENDED("Triggered", ""), why, sizeof(why)), 0);
    static const char *const bad[] = {
        "[]",
        "\"x\"",
        "{}",
        "{\"id\":\"1\"}",                                      /* no title */
        "{\"id\":\"1\",\"title\":\"   \"}",                    /* empty title */
        "{\"title\":\"x\"}",                                   /* nothing identifies it */
        "{\"id\":\"1\",\"title\":5}",                          /* wrong types */
        "{\"id\":\"1\",\"title\":\"x\",\"body\":{}}",
        "{\"id\":\"1\",\"title\":\"x\",\"tags\":[1,2]}",
        "{\"id\":\"1\",\"title\":\"x\",\"tags\":{}}",
        "{\"id\":\"1\",\"title\":\"x\",\"org\":\"acme\"}",
        "{\"id\":1.5,\"title\":\"x\"}",
        "{\"id\":[],\"title\":\"x\"}",
        "{\"id\":\"1\",\"title\":\"x\",\"alert_transition\":true}",
        /* a Grafana notification is not a Datadog one */
        "{\"receiver\":\"r\",\"status\":\"firing\",\"alerts\":[],\"title\":\"[FIRING:1] x\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        cJSON *j = cJSON_Parse(bad[i]);
        assert_int_equal(datadog_payload_check(j, why, sizeof(why)), -1);
        assert_true(why[0] != '\0');
        datadog_alert a;
        assert_int_equal(datadog_map_alert(j, &a, why, sizeof(why)), -1);
        cJSON_Delete(j);
    }
    assert_int_equal(datadog_payload_check(NULL, why, sizeof(why)), -1);
    /* null members are the empty variables of a template: accepted */
    assert_int_equal(check_text("{\"id\":\"1\",\"title\":\"x\",\"tags\":null,\"body\":null}", why,
                                sizeof(why)),
                     0);
    /* alert_title stands in for an empty title */
    assert_int_equal(check_text("{\"alert_id\":\"1\",\"title\":\"\",\"alert_title\":\"y\"}", why,
                                sizeof(why)),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sites),
        cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_recommended_payload),
        cmocka_unit_test(test_default_payload),
        cmocka_unit_test(test_monitor_and_scope_fingerprint),
        cmocka_unit_test(test_long_or_odd_fingerprint_is_hashed),
        cmocka_unit_test(test_not_a_datadog_payload),
    };
    return cmocka_run_group_tests_name("datadog", tests, NULL, NULL);
}
