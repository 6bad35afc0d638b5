/* test_sentry.c — the Sentry connector's payload mapper and stack excerpt
 * (server/connectors/sentry_payload.c).  Payloads follow the examples of
 * Sentry's integration-platform docs (webhooks/issues/, webhooks/errors/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sentry.h"

static const char *ISSUE_CREATED =
    "{\"action\":\"created\",\"installation\":{\"uuid\":\"eac5a0ae-60ec-418f-9318-46dc5e7e52ec\"},"
    "\"data\":{\"issue\":{\"id\":\"1170820242\",\"shortId\":\"FRONT-END-9\","
    "\"title\":\"Error: Loading chunk 3 failed.\",\"culprit\":\"?(runtime)\",\"level\":\"error\","
    "\"status\":\"unresolved\",\"firstSeen\":\"2019-08-19T20:58:37.391000Z\","
    "\"lastSeen\":\"2019-08-19T20:58:37.391000Z\","
    "\"metadata\":{\"type\":\"Error\",\"value\":\"Loading chunk 3 failed.\"},"
    "\"project\":{\"id\":\"1\",\"name\":\"front-end\",\"slug\":\"front-end\"},"
    "\"web_url\":\"https://sentry.io/organizations/test-org/issues/1170820242/\"}},"
    "\"actor\":{\"type\":\"application\",\"id\":\"sentry\",\"name\":\"Sentry\"}}";

static const char *ERROR_CREATED =
    "{\"action\":\"created\",\"actor\":{\"id\":\"sentry\",\"name\":\"Sentry\",\"type\":\"application\"},"
    "\"data\":{\"error\":{\"culprit\":\"?(runner)\",\"datetime\":\"2019-08-19T20:58:37.391000Z\","
    "\"event_id\":\"bb78c1407cea4519aa397afc059c793d\",\"issue_id\":\"1170820242\","
    "\"level\":\"error\",\"project\":1,\"title\":\"ReferenceError: blooopy is not defined\","
    "\"web_url\":\"https://sentry.io/organizations/test-org/issues/1170820242/events/bb78/\","
    "\"exception\":{\"values\":[{\"type\":\"ReferenceError\",\"value\":\"blooopy is not defined\","
    "\"stacktrace\":{\"frames\":["
    "{\"abs_path\":\"https://null.jsbin.com/runner\",\"filename\":\"/runner\",\"function\":\"runner\",\"lineno\":3},"
    "{\"filename\":\"/runner\",\"function\":\"sendReport\",\"lineno\":11},"
    "{\"abs_path\":\"https://static.jsbin.com/js/prod/runner-4.1.7.min.js\",\"function\":\"?\",\"lineno\":1}"
    "]}}]}}}}";

static int map(const char *resource, const char *json, sentry_alert *out, cJSON **keep)
{
    char err[160];
    *keep = cJSON_Parse(json);
    assert_non_null(*keep);
    const char *action = cJSON_GetObjectItemCaseSensitive(*keep, "action")->valuestring;
    return sentry_alert_from_payload(resource, action, *keep, out, err, sizeof(err));
}

static void issue_created_is_firing(void **state)
{
    (void)state;
    sentry_alert sa;
    cJSON *j;
    assert_int_equal(map("issue", ISSUE_CREATED, &sa, &j), 1);
    assert_int_equal(sa.a.state, ALERT_FIRING);
    assert_string_equal(sa.a.source, "sentry");
    assert_string_equal(sa.a.fingerprint, "1170820242");
    assert_string_equal(sa.a.source_alert_id, "1170820242");
    assert_string_equal(sa.a.dedup_key, "1170820242:created:2019-08-19T20:58:37.391000Z");
    assert_string_equal(sa.a.title, "Error: Loading chunk 3 failed.");
    assert_string_equal(sa.a.service, "front-end");
    assert_string_equal(sa.a.severity, "error");
    assert_string_equal(sa.a.url, "https://sentry.io/organizations/test-org/issues/1170820242/");
    assert_string_equal(sa.a.message, "Error: Loading chunk 3 failed.\n  at ?(runtime)");
    assert_int_equal(sa.a.occurred_at, 1566248317); /* 2019-08-19T20:58:37Z */
    assert_null(sa.a.delivery_id);
    cJSON_Delete(j);
}

static void issue_actions_map_to_states(void **state)
{
    (void)state;
    static const struct {
        const char *action;
        int rc;
        alert_state st;
    } cases[] = {
        { "created", 1, ALERT_FIRING },     { "unresolved", 1, ALERT_FIRING },
        { "resolved", 1, ALERT_RESOLVED },  { "assigned", 1, ALERT_ACKNOWLEDGED },
        { "ignored", 1, ALERT_INFO },       { "archived", 1, ALERT_INFO },
        { "escalating_new_thing", 0, ALERT_FIRING },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *j = cJSON_Parse(ISSUE_CREATED);
        cJSON_ReplaceItemInObjectCaseSensitive(j, "action", cJSON_CreateString(cases[i].action));
        cJSON *issue = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "issue");
        cJSON_DeleteItemFromObject(issue, "lastSeen");
        sentry_alert sa;
        char err[128];
        int rc = sentry_alert_from_payload("issue", cases[i].action, j, &sa, err, sizeof(err));
        assert_int_equal(rc, cases[i].rc);
        if (rc == 1) {
            assert_int_equal(sa.a.state, cases[i].st);
            char want[96];
            snprintf(want, sizeof(want), "1170820242:%s", cases[i].action);
            assert_string_equal(sa.a.dedup_key, want); /* no lastSeen: issue + action */
            if (cases[i].st != ALERT_FIRING)
                assert_int_equal(sa.a.occurred_at, 0); /* now */
        }
        cJSON_Delete(j);
    }
}

static void error_created_carries_the_stack(void **state)
{
    (void)state;
    sentry_alert sa;
    cJSON *j;
    assert_int_equal(map("error", ERROR_CREATED, &sa, &j), 1);
    assert_int_equal(sa.a.state, ALERT_FIRING);
    assert_string_equal(sa.a.fingerprint, "1170820242");
    assert_string_equal(sa.a.dedup_key, "1170820242:error.created:bb78c1407cea4519aa397afc059c793d");
    assert_string_equal(sa.a.title, "ReferenceError: blooopy is not defined");
    assert_string_equal(sa.a.service, "1"); /* the error payload names the project by id */
    /* Innermost frame first (Sentry lists the oldest call first). */
    assert_string_equal(sa.a.message,
                        "ReferenceError: blooopy is not defined\n"
                        "  at ? (https://static.jsbin.com/js/prod/runner-4.1.7.min.js:1)\n"
                        "  at sendReport (/runner:11)\n"
                        "  at runner (/runner:3)");
    assert_int_equal(sa.a.occurred_at, 1566248317);
    cJSON_Delete(j);
}

static void stack_excerpt_is_bounded(void **state)
{
    (void)state;
    /* 50 frames, a control character, a long multi-byte value. */
    cJSON *ex = cJSON_CreateObject();
    cJSON *values = cJSON_AddArrayToObject(ex, "values");
    cJSON *first = cJSON_CreateObject();
    cJSON_AddStringToObject(first, "type", "Cause");
    cJSON_AddItemToArray(values, first);
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "type", "ValueError\nInjected: yes");
    char big[1200];
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* é */
    big[sizeof(big) - 2] = '\0';
    cJSON_AddStringToObject(v, "value", big);
    cJSON *frames = cJSON_AddArrayToObject(cJSON_AddObjectToObject(v, "stacktrace"), "frames");
    for (int i = 0; i < 50; i++) {
        cJSON *f = cJSON_CreateObject();
        char fn[32];
        snprintf(fn, sizeof(fn), "f%d", i);
        cJSON_AddStringToObject(f, "function", fn);
        cJSON_AddStringToObject(f, "module", "app.mod");
        cJSON_AddNumberToObject(f, "lineno", i);
        cJSON_AddItemToArray(frames, f);
    }
    cJSON_AddItemToArray(values, v);
    char out[SENTRY_MESSAGE_MAX];
    size_t n = sentry_stack_excerpt(ex, out, sizeof(out), SENTRY_EXCERPT_FRAMES);
    assert_int_equal(n, strlen(out));
    assert_true(n < sizeof(out));
    assert_non_null(strstr(out, "ValueError Injected: yes: ")); /* the last value is the raised one */
    assert_null(strstr(out, "Cause"));
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, SENTRY_EXCERPT_FRAMES);
    assert_non_null(strstr(out, "\n  at f49 (app.mod:49)"));
    assert_null(strstr(out, "f41 "));
    /* Every cap, down to 1 byte: NUL-terminated, never a cut UTF-8 sequence. */
    for (size_t cap = 1; cap < 300; cap++) {
        char small[300];
        memset(small, 'x', sizeof(small));
        size_t m = sentry_stack_excerpt(ex, small, cap, 3);
        assert_true(m < cap);
        assert_int_equal(small[m], '\0');
        for (size_t i = 0; i < m; i++)
            assert_true(small[i] == '\n' || (unsigned char)small[i] >= 0x20);
        if (m > 0 && ((unsigned char)small[m - 1] & 0xE0) == 0xC0)
            fail_msg("cut inside a UTF-8 sequence at cap %zu", cap);
    }
    /* No exception at all. */
    assert_int_equal(sentry_stack_excerpt(NULL, out, sizeof(out), 8), 0);
    assert_string_equal(out, "");
    cJSON_Delete(ex);
}

static void malformed_payloads_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *resource, *json;
    } bad[] = {
        { "issue", "{\"action\":\"created\"}" },
        { "issue", "{\"action\":\"created\",\"data\":[]}" },
        { "issue", "{\"action\":\"created\",\"data\":{\"issue\":{}}}" },
        { "issue", "{\"action\":\"created\",\"data\":{\"issue\":{\"id\":\"1 2\"}}}" },
        { "issue", "{\"action\":\"created\",\"data\":{\"issue\":{\"id\":true}}}" },
        { "issue", "{\"action\":\"created\",\"data\":{\"issue\":{\"id\":1.5}}}" },
        { "issue", "{\"action\":\"\",\"data\":{\"issue\":{\"id\":\"1\"}}}" },
        { "error", "{\"action\":\"created\",\"data\":{\"error\":{\"event_id\":\"ab\"}}}" },
        { "error", "{\"action\":\"created\",\"data\":{\"error\":{\"issue_id\":\"1\"}}}" },
        { "error", "{\"action\":\"created\",\"data\":{\"issue\":{\"id\":\"1\"}}}" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *j = cJSON_Parse(bad[i].json);
        const cJSON *a = cJSON_GetObjectItem(j, "action");
        sentry_alert sa;
        char err[128] = "";
        int rc = sentry_alert_from_payload(bad[i].resource, cJSON_IsString(a) ? a->valuestring : NULL,
                                           j, &sa, err, sizeof(err));
        if (rc != -1)
            fail_msg("case %zu: %d", i, rc);
        assert_true(err[0] != '\0');
        cJSON_Delete(j);
    }
    /* A numeric issue id is an id. */
    cJSON *j = cJSON_Parse("{\"action\":\"resolved\",\"data\":{\"issue\":{\"id\":42}}}");
    sentry_alert sa;
    char err[64];
    assert_int_equal(sentry_alert_from_payload("issue", "resolved", j, &sa, err, sizeof(err)), 1);
    assert_string_equal(sa.a.fingerprint, "42");
    assert_string_equal(sa.a.title, "Sentry issue");
    assert_null(sa.a.message);
    cJSON_Delete(j);
}

static void other_resources_are_stored_only(void **state)
{
    (void)state;
    const char *json = "{\"action\":\"created\",\"data\":{\"comment\":\"adding a comment\","
                       "\"project_slug\":\"sentry\",\"comment_id\":1234,\"issue_id\":100}}";
    cJSON *j = cJSON_Parse(json);
    sentry_alert sa;
    char err[64];
    assert_int_equal(sentry_alert_from_payload("comment", "created", j, &sa, err, sizeof(err)), 0);
    assert_int_equal(sentry_alert_from_payload("installation", "created", j, &sa, err, sizeof(err)), 0);
    assert_int_equal(sentry_alert_from_payload("metric_alert", "critical", j, &sa, err, sizeof(err)), 0);
    cJSON_Delete(j);
}

static void ids_and_slugs(void **state)
{
    (void)state;
    assert_true(sentry_slug_ok("acme-co"));
    assert_true(sentry_slug_ok("a_1"));
    assert_false(sentry_slug_ok("Acme"));
    assert_false(sentry_slug_ok("-acme"));
    assert_false(sentry_slug_ok("acme co"));
    assert_false(sentry_slug_ok("acme/../x"));
    assert_false(sentry_slug_ok(""));
    assert_false(sentry_slug_ok(NULL));
    char long_slug[80];
    memset(long_slug, 'a', sizeof(long_slug) - 1);
    long_slug[sizeof(long_slug) - 1] = '\0';
    assert_false(sentry_slug_ok(long_slug));
    assert_true(sentry_numeric_id_ok("1170820242"));
    assert_false(sentry_numeric_id_ok("12a"));
    assert_false(sentry_numeric_id_ok("123456789012345678901"));
    assert_false(sentry_numeric_id_ok(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issue_created_is_firing),
        cmocka_unit_test(issue_actions_map_to_states),
        cmocka_unit_test(error_created_carries_the_stack),
        cmocka_unit_test(stack_excerpt_is_bounded),
        cmocka_unit_test(malformed_payloads_are_refused),
        cmocka_unit_test(other_resources_are_stored_only),
        cmocka_unit_test(ids_and_slugs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
