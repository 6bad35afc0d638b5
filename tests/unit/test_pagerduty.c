/* test_pagerduty.c — PagerDuty Generic Webhooks v3 payloads read as alerts
 * (server/connectors/pagerduty_webhook.c: pd_event_parse, pd_time_parse,
 * pd_severity_word).  Payloads in the shape of PagerDuty's "Webhooks v3
 * Overview" examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pagerduty.h"

/* The docs' incident example, with event_type and priority substituted. */
static cJSON *payload(const char *event_type, const char *priority, const char *urgency)
{
    char buf[4096];
    char prio[160] = "";
    if (priority)
        snprintf(prio, sizeof(prio),
                 "\"priority\": {\"id\": \"PSO75BM\", \"summary\": \"%s\", \"type\": "
                 "\"priority_reference\"},", priority);
    snprintf(buf, sizeof(buf),
             "{\"event\": {\"id\": \"5ac64822-4adc-4fda-ade0-410becf0de4f\","
             " \"event_type\": \"%s\", \"resource_type\": \"incident\","
             " \"occurred_at\": \"2020-10-02T18:45:22.169Z\","
             " \"agent\": {\"id\": \"PLH1HKV\", \"type\": \"user_reference\"},"
             " \"client\": {\"name\": \"PagerDuty\"},"
             " \"data\": {\"id\": \"PGR0VU2\", \"type\": \"incident\","
             " \"html_url\": \"https://acme.pagerduty.com/incidents/PGR0VU2\", \"number\": 2,"
             " \"status\": \"triggered\", \"created_at\": \"2020-04-09T15:16:27Z\","
             " \"title\": \"A little bump in the road\","
             " \"service\": {\"id\": \"PF9KMXH\", \"summary\": \"API Service\", \"type\": "
             "\"service_reference\"},"
             " %s \"urgency\": \"%s\", \"resolve_reason\": null}}}",
             event_type, prio, urgency ? urgency : "high");
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    return j;
}

static void triggered_maps_every_field(void **state)
{
    (void)state;
    cJSON *j = payload("incident.triggered", "P1", "high");
    pd_event e;
    char why[160];
    assert_int_equal(pd_event_parse(j, &e, why, sizeof(why)), PD_EVENT_ALERT);
    assert_string_equal(e.event_type, "incident.triggered");
    assert_string_equal(e.event_id, "5ac64822-4adc-4fda-ade0-410becf0de4f");
    assert_string_equal(e.alert.source, "pagerduty");
    assert_int_equal(e.alert.state, ALERT_FIRING);
    assert_string_equal(e.alert.fingerprint, "PGR0VU2");
    assert_string_equal(e.alert.source_alert_id, "PGR0VU2");
    assert_string_equal(e.alert.title, "A little bump in the road");
    assert_string_equal(e.alert.service, "API Service");
    assert_string_equal(e.alert.url, "https://acme.pagerduty.com/incidents/PGR0VU2");
    assert_string_equal(e.alert.severity, "P1");
    /* a trigger starts when the incident was created */
    assert_int_equal(e.alert.occurred_at, 1586445387);
    assert_null(e.alert.message);
    cJSON_Delete(j);
}

static void states_and_times(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        alert_state st;
    } cases[] = { { "incident.acknowledged", ALERT_ACKNOWLEDGED },
                  { "incident.resolved", ALERT_RESOLVED } };
    for (size_t i = 0; i < 2; i++) {
        cJSON *j = payload(cases[i].type, NULL, "low");
        pd_event e;
        char why[160];
        assert_int_equal(pd_event_parse(j, &e, why, sizeof(why)), PD_EVENT_ALERT);
        assert_int_equal(e.alert.state, cases[i].st);
        assert_string_equal(e.alert.fingerprint, "PGR0VU2");
        /* acknowledged / resolved: when that happened (the event's time) */
        assert_int_equal(e.alert.occurred_at, 1601664322);
        assert_string_equal(e.alert.severity, "low");
        cJSON_Delete(j);
    }
}

static void other_events_are_not_alerts(void **state)
{
    (void)state;
    const char *others[] = {
        "{\"event\":{\"id\":\"01BRB6ZP4M6T8ZG4X6BP63ZB9O\",\"event_type\":\"service.updated\","
        "\"resource_type\":\"service\",\"occurred_at\":\"2021-03-02T13:35:11.682Z\",\"agent\":null,"
        "\"client\":null,\"data\":{\"id\":\"PF9KMXH\",\"summary\":\"testing\",\"type\":\"service\"}}}",
        "{\"event\":{\"id\":\"P2LA89X-note\",\"event_type\":\"incident.annotated\",\"data\":"
        "{\"incident\":{\"id\":\"PGR0VU2\"},\"id\":\"P2LA89X\",\"content\":\"hi\",\"type\":"
        "\"incident_note\"}}}",
        ("{\"event\":{\"id\":\"01\",\"event_type\":\"pagey.ping\",\"data\":{\"message\":\"Hello\","
         "\"type\":\"ping\"}}}"),
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        cJSON *j = cJSON_Parse(others[i]);
        pd_event e;
        char why[160];
        assert_int_equal(pd_event_parse(j, &e, why, sizeof(why)), PD_EVENT_OTHER);
        assert_non_null(e.event_type);
        assert_non_null(e.event_id);
        cJSON_Delete(j);
    }
}

static void malformed_payloads(void **state)
{
    (void)state;
    const char *bad[] = {
        "{}",
        "[]",
        "{\"event\": \"incident.triggered\"}",
        "{\"messages\":[{\"event\":\"incident.trigger\"}]}", /* v2 */
        "{\"event\":{\"event_type\":\"incident.triggered\",\"data\":{}}}",
        "{\"event\":{\"id\":\"x\",\"data\":{}}}",
        "{\"event\":{\"id\":\"x\",\"event_type\":\"incident.triggered\"}}",
        "{\"event\":{\"id\":\"x\",\"event_type\":\"incident.triggered\",\"data\":[]}}",
        "{\"event\":{\"id\":\"x y\",\"event_type\":\"incident.triggered\",\"data\":{}}}",
        "{\"event\":{\"id\":7,\"event_type\":\"incident.triggered\",\"data\":{}}}",
        "{\"event\":{\"id\":\"x\",\"event_type\":\"incident.triggered\",\"data\":{\"title\":\"t\"}}}",
        "{\"event\":{\"id\":\"x\",\"event_type\":\"incident.triggered\",\"data\":{\"id\":\"P1\"}}}",
        "{\"event\":{\"id\":\"x\",\"event_type\":\"incident.triggered\",\"data\":{\"id\":\"P1\","
        "\"title\":\"\"}}}",
        "{\"event\":{\"id\":\"x\",\"event_type\":\"incident.resolved\",\"data\":{\"id\":\"P1\","
        "\"title\":\"t\",\"type\":\"incident_note\"}}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        assert_non_null(j);
        pd_event e;
        char why[160] = "";
        assert_int_equal(pd_event_parse(j, &e, why, sizeof(why)), PD_EVENT_BAD);
        assert_true(strlen(why) > 0);
        cJSON_Delete(j);
    }
}

static void severity_from_priority_or_urgency(void **state)
{
    (void)state;
    pd_event e;
    memset(&e, 0, sizeof(e));
    e.priority = "P2";
    e.urgency = "low";
    assert_string_equal(pd_severity_word(&e), "P2");
    e.priority = "SEV-1"; /* an account's own priority names: urgency stands in */
    assert_string_equal(pd_severity_word(&e), "low");
    e.priority = "P9";
    assert_string_equal(pd_severity_word(&e), "low");
    e.priority = NULL;
    e.urgency = "high";
    assert_string_equal(pd_severity_word(&e), "high");
    e.urgency = NULL;
    assert_null(pd_severity_word(&e));
    e.priority = "Urgent";
    assert_string_equal(pd_severity_word(&e), "Urgent");
}

static void times(void **state)
{
    (void)state;
    assert_int_equal(pd_time_parse("2020-10-02T18:45:22.169Z"), 1601664322);
    assert_int_equal(pd_time_parse("2020-04-09T15:16:27Z"), 1586445387);
    assert_int_equal(pd_time_parse("2020-04-09T15:16:27+00:00"), 1586445387);
    assert_int_equal(pd_time_parse("2020-04-09T15:16:27.5+00:00"), 1586445387);
    assert_int_equal(pd_time_parse("2020-04-09T15:16:27+02:00"), 0);
    assert_int_equal(pd_time_parse("2020-04-09T15:16:27."), 0);
    assert_int_equal(pd_time_parse("2020-04-09 15:16:27Z"), 0);
    assert_int_equal(pd_time_parse("yesterday"), 0);
    assert_int_equal(pd_time_parse(""), 0);
    assert_int_equal(pd_time_parse(NULL), 0);
}

static void long_text_refused_not_cut(void **state)
{
    (void)state;
    /* A title beyond the cap is not an incident title PagerDuty sends: refused. */
    size_t n = 5000;
    char *title = malloc(n + 1);
    memset(title, 'a', n);
    title[n] = '\0';
    cJSON *j = payload("incident.triggered", "P3", "high");
    cJSON *data = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "event"), "data");
    cJSON_ReplaceItemInObject(data, "title", cJSON_CreateString(title));
    pd_event e;
    char why[160];
    assert_int_equal(pd_event_parse(j, &e, why, sizeof(why)), PD_EVENT_BAD);
    /* a long service name is dropped, the alert is still read */
    cJSON_ReplaceItemInObject(data, "title", cJSON_CreateString("ok"));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(data, "service"), "summary",
                              cJSON_CreateString(title));
    assert_int_equal(pd_event_parse(j, &e, why, sizeof(why)), PD_EVENT_ALERT);
    assert_null(e.alert.service);
    cJSON_Delete(j);
    free(title);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(triggered_maps_every_field),
        cmocka_unit_test(states_and_times),
        cmocka_unit_test(other_events_are_not_alerts),
        cmocka_unit_test(malformed_payloads),
        cmocka_unit_test(severity_from_priority_or_urgency),
        cmocka_unit_test(times),
        cmocka_unit_test(long_text_refused_not_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
