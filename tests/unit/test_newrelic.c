/* test_newrelic.c — the New Relic connector's pure pieces
 * (server/connectors/newrelic.c): region names (the guide's US/EU), User
 * API key and license key formats (NRAK-…; 40 characters as New Relic's
 * "license key" docs describe: 40 hex, or 36 hex + "NRAL"), account ids
 * (GraphQL Int), the GraphQL request body (user text only in "variables"),
 * and the issue → alert mapping over New Relic's default workflow webhook
 * payload ("id": {{ json issueId }}, "issueUrl", "title", "priority",
 * "impactedEntities", "state", "createdAt" in epoch ms, …), the recommended
 * template of docs/api.md and NerdGraph's AiIssuesIssue (title as a list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "newrelic.h"

static void test_regions(void **state)
{
    (void)state;
    assert_string_equal(newrelic_region_find("US"), "US");
    assert_string_equal(newrelic_region_find("eu"), "EU");
    assert_string_equal(newrelic_region_find(NULL), "US");
    assert_string_equal(newrelic_region_find(""), "US");
    assert_null(newrelic_region_find("APAC"));
    assert_null(newrelic_region_find("EU "));
    assert_null(newrelic_region_find("https://api.eu.newrelic.com/graphql"));
}

static void test_keys(void **state)
{
    (void)state;
    assert_true(newrelic_user_key_ok("NRAK-ABCDEFGHIJKLMNOPQRSTUVWXYZ0"));
    assert_false(newrelic_user_key_ok("NRAK-SHORT"));
    assert_false(newrelic_user_key_ok("NRAA-ABCDEFGHIJKLMNOPQRSTUVWXYZ0")); /* admin key form */
    assert_false(newrelic_user_key_ok("nrak-ABCDEFGHIJKLMNOPQRSTUVWXYZ0"));
    assert_false(newrelic_user_key_ok("NRAK-ABCDEFGHIJKLMNOPQRSTUV\r\nX: y"));
    assert_false(newrelic_user_key_ok(NULL));
    assert_true(newrelic_license_key_ok("0123456789abcdef0123456789abcdef01234567"));
    assert_true(newrelic_license_key_ok("eu01xx6789abcdef0123456789abcdef0123NRAL"));
    assert_false(newrelic_license_key_ok("0123456789abcdef0123456789abcdef0123456"));   /* 39 */
    assert_false(newrelic_license_key_ok("0123456789abcdef0123456789abcdef012345678")); /* 41 */
    assert_false(newrelic_license_key_ok("0123456789abcdef0123456789abcdef0123456 "));
}

static int64_t acct(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    int64_t v = newrelic_account_id(j);
    cJSON_Delete(j);
    return v;
}

static void test_account_ids(void **state)
{
    (void)state;
    assert_int_equal(acct("\"1234567\""), 1234567);
    assert_int_equal(acct("1234567"), 1234567);
    assert_int_equal(acct("2147483647"), 2147483647);
    assert_int_equal(acct("2147483648"), 0); /* beyond GraphQL Int */
    assert_int_equal(acct("\"0\""), 0);
    assert_int_equal(acct("\"12a\""), 0);
    assert_int_equal(acct("\"-5\""), 0);
    assert_int_equal(acct("1.5"), 0);
    assert_int_equal(acct("\"\""), 0);
    assert_int_equal(acct("null"), 0);
}

/* Hostile NRQL stays one variable: the query text is ours, unchanged. */
static void test_graphql_variables(void **state)
{
    (void)state;
    const char *q = "query($id: Int!, $nrql: Nrql!) { x }";
    const char *hostile = "SELECT 1\" } } mutation { apiAccessCreateKeys { x } } #\n\\u0000";
    cJSON *vars = cJSON_CreateObject();
    cJSON_AddNumberToObject(vars, "id", 42);
    cJSON_AddStringToObject(vars, "nrql", hostile);
    char *body = newrelic_graphql_body(q, vars);
    cJSON_Delete(vars);
    assert_non_null(body);
    cJSON *j = cJSON_Parse(body);
    free(body);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "query")->valuestring, q);
    const cJSON *v = cJSON_GetObjectItem(j, "variables");
    assert_string_equal(cJSON_GetObjectItem(v, "nrql")->valuestring, hostile);
    assert_int_equal(cJSON_GetObjectItem(v, "id")->valueint, 42);
    assert_int_equal(cJSON_GetArraySize(j), 2);
    cJSON_Delete(j);
    body = newrelic_graphql_body("{ actor { accounts { id } } }", NULL);
    j = cJSON_Parse(body);
    free(body);
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(j, "variables")));
    cJSON_Delete(j);
}

static int map(const char *json, newrelic_issue *is)
{
    cJSON *j = cJSON_Parse(json);
    char why[160];
    int rc = newrelic_issue_map(j, is, why, sizeof(why));
    cJSON_Delete(j);
    return rc;
}

static void test_default_payload(void **state)
{
    (void)state;
    newrelic_issue is;
    assert_int_equal(
        map("{\"id\":\"d1b1f3fd-995a-4066-88ab-8ce4f6960654\","
            "\"issueUrl\":\"https://radar-api.service.newrelic.com/accounts/1/issues/d1b1\","
            "\"title\":\"Memory Used % > 90 on 'checkout'\",\"priority\":\"CRITICAL\","
            "\"impactedEntities\":[\"checkout\",\"db\"],\"totalIncidents\":1,"
            "\"state\":\"ACTIVATED\",\"trigger\":\"STATE_CHANGE\",\"isCorrelated\":false,"
            "\"createdAt\":1700000000123,\"updatedAt\":1700000001000,\"sources\":[\"newrelic\"],"
            "\"alertPolicyNames\":[\"p\"],\"alertConditionNames\":[\"Memory high\"],"
            "\"workflowName\":\"aurora\"}",
            &is),
        0);
    assert_string_equal(is.issue_id, "d1b1f3fd-995a-4066-88ab-8ce4f6960654");
    assert_int_equal(is.alert, ALERT_FIRING);
    assert_string_equal(is.state, "ACTIVATED");
    assert_string_equal(is.title, "Memory Used % > 90 on 'checkout'");
    assert_string_equal(is.service, "checkout");
    assert_string_equal(is.severity, "critical");
    assert_string_equal(is.message, "Memory high");
    assert_non_null(is.url);
    assert_int_equal(is.occurred_at, 1700000000);
    assert_string_equal(is.dedup_key, "d1b1f3fd-995a-4066-88ab-8ce4f6960654:ACTIVATED");
}

static void test_states_and_priorities(void **state)
{
    (void)state;
    static const struct {
        const char *st;
        alert_state want;
        const char *prio, *sev;
    } rows[] = {
        { "CREATED", ALERT_FIRING, "HIGH", "high" },
        { "ACTIVATED", ALERT_FIRING, "MEDIUM", "medium" },
        { "ACKNOWLEDGED", ALERT_ACKNOWLEDGED, "LOW", "low" },
        { "closed", ALERT_RESOLVED, "CRITICAL", "critical" },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"issueId\":\"abc\",\"title\":[\"t1\",\"t2\"],\"state\":\"%s\","
                 "\"priority\":\"%s\",\"service\":[\"svc\"],\"entityNames\":[\"e\"]}",
                 rows[i].st, rows[i].prio);
        newrelic_issue is;
        assert_int_equal(map(json, &is), 0);
        assert_int_equal(is.alert, rows[i].want);
        assert_string_equal(is.severity, rows[i].sev);
        assert_string_equal(is.title, "t1, t2");
        assert_string_equal(is.service, "svc");
    }
    alert_state s;
    assert_int_equal(newrelic_state_map("DEACTIVATED", &s), 0);
}

static void test_not_an_issue(void **state)
{
    (void)state;
    const char *bad[] = {
        "[]",
        "{\"title\":\"x\",\"state\":\"ACTIVATED\"}",                          /* no id */
        "{\"id\":\"a b\",\"title\":\"x\",\"state\":\"ACTIVATED\"}",           /* id charset */
        "{\"id\":\"a\",\"title\":\"x\",\"state\":\"FIRING\"}",                /* unknown state */
        "{\"id\":\"a\",\"title\":\"x\"}",                                     /* no state */
        "{\"id\":\"a\",\"state\":\"ACTIVATED\"}",                             /* no title */
        "{\"id\":7,\"title\":\"x\",\"state\":\"ACTIVATED\"}",                 /* id not a string */
        "{\"id\":\"a\",\"title\":\"x\",\"state\":\"ACTIVATED\",\"priority\":3}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        char why[160] = "";
        assert_int_equal(newrelic_issue_check(j, why, sizeof(why)), -1);
        assert_true(why[0] != '\0');
        cJSON_Delete(j);
    }
    char why[160];
    assert_int_equal(newrelic_issue_check(NULL, why, sizeof(why)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regions),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_account_ids),
        cmocka_unit_test(test_graphql_variables),
        cmocka_unit_test(test_default_payload),
        cmocka_unit_test(test_states_and_priorities),
        cmocka_unit_test(test_not_an_issue),
    };
    return cmocka_run_group_tests_name("newrelic", tests, NULL, NULL);
}
