/* test_netdata.c — Netdata Cloud webhook notifications
 * (server/connectors/netdata_webhook.c): which payload is which, how each
 * becomes an incident alert, and the challenge response.  Payloads follow
 * learn.netdata.cloud (Centralized Cloud Notifications > Webhook); the
 * challenge vector was computed with the documentation's own Python recipe
 * (hmac.new(secret, crc_token, sha256), base64), not with this code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netdata_webhook.h"

static const char ALERT_CRITICAL[] =
    "{\"message\":\"Critical: system.cpu on web-1\",\"alert\":\"10min_cpu_usage\","
    "\"info\":\"average CPU utilization over the last 10 minutes\",\"chart\":\"system.cpu\","
    "\"context\":\"system.cpu\",\"space\":\"Production\",\"Rooms\":{\"All nodes\":"
    "\"https://app.netdata.cloud/spaces/p/rooms/all\"},\"family\":\"cpu\",\"class\":\"Utilization\","
    "\"severity\":\"critical\",\"date\":\"2026-12-02T12:00:00Z\",\"duration\":\"1m\","
    "\"additional_active_critical_alerts\":0,\"additional_active_warning_alerts\":1,"
    "\"alert_url\":\"https://app.netdata.cloud/alerts/1\"}";

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

static void test_kinds(void **state)
{
    (void)state;
    struct {
        const char *json;
        netdata_payload_kind kind;
    } cases[] = {
        { ALERT_CRITICAL, NETDATA_PAYLOAD_ALERT },
        { "{\"alarm\":\"disk_space\",\"severity\":\"warning\"}", NETDATA_PAYLOAD_ALERT }, /* older name */
        { "{\"alert\":\"x\",\"severity\":\"CLEAR\"}", NETDATA_PAYLOAD_ALERT },
        { "{\"message\":\"node down\",\"url\":\"https://app.netdata.cloud/n\",\"host\":\"db-1\","
          "\"severity\":\"critical\",\"status\":{\"reachable\":false,\"text\":\"unreachable\"}}",
          NETDATA_PAYLOAD_REACHABILITY },
        { "{\"message\":\"Test\",\"title\":\"Test notification\",\"token\":\"abc\"}",
          NETDATA_PAYLOAD_TEST },
        { "{\"alert\":\"x\",\"severity\":\"bogus\"}", NETDATA_PAYLOAD_UNKNOWN },
        { "{\"alert\":\"\",\"severity\":\"critical\"}", NETDATA_PAYLOAD_UNKNOWN },
        { "{\"alert\":5,\"severity\":\"critical\"}", NETDATA_PAYLOAD_UNKNOWN },
        { "{\"host\":\"h\",\"status\":{\"reachable\":\"no\"}}", NETDATA_PAYLOAD_UNKNOWN },
        { "{}", NETDATA_PAYLOAD_UNKNOWN },
        { "[1]", NETDATA_PAYLOAD_UNKNOWN },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *j = parse(cases[i].json);
        assert_int_equal(netdata_payload_kind_of(j), cases[i].kind);
        cJSON_Delete(j);
    }
    assert_int_equal(netdata_payload_kind_of(NULL), NETDATA_PAYLOAD_UNKNOWN);
}

static void test_alert_fires_then_clears(void **state)
{
    (void)state;
    cJSON *j = parse(ALERT_CRITICAL);
    netdata_alert fire;
    assert_int_equal(netdata_alert_from(j, "whd_1", &fire), 0);
    const incident_alert *a = &fire.alert;
    assert_string_equal(a->source, "netdata");
    assert_string_equal(a->delivery_id, "whd_1");
    assert_int_equal(a->state, ALERT_FIRING);
    assert_string_equal(a->severity, "critical");
    assert_string_equal(a->title, "Critical: system.cpu on web-1");
    assert_string_equal(a->message, "average CPU utilization over the last 10 minutes");
    assert_string_equal(a->url, "https://app.netdata.cloud/alerts/1");
    assert_string_equal(a->service, "system.cpu");
    assert_int_equal(a->occurred_at, 1796212800); /* 2026-12-02T12:00:00Z */
    assert_ptr_equal(a->raw, j);

    /* the clear of the same alert has the same fingerprint */
    cJSON_ReplaceItemInObjectCaseSensitive(j, "severity", cJSON_CreateString("clear"));
    cJSON_ReplaceItemInObjectCaseSensitive(j, "message", cJSON_CreateString("Cleared"));
    netdata_alert clear;
    assert_int_equal(netdata_alert_from(j, "whd_2", &clear), 0);
    assert_int_equal(clear.alert.state, ALERT_RESOLVED);
    assert_string_equal(clear.alert.fingerprint, fire.alert.fingerprint);

    /* another alert, chart or space is another fingerprint */
    cJSON_ReplaceItemInObjectCaseSensitive(j, "chart", cJSON_CreateString("system.load"));
    netdata_alert other;
    assert_int_equal(netdata_alert_from(j, "whd_3", &other), 0);
    assert_string_not_equal(other.alert.fingerprint, fire.alert.fingerprint);
    cJSON_Delete(j);

    /* warning fires too; a missing message titles it with the alert name */
    j = parse("{\"alarm\":\"disk_space_usage\",\"severity\":\"warning\",\"date\":\"not a date\"}");
    netdata_alert w;
    assert_int_equal(netdata_alert_from(j, "whd_4", &w), 0);
    assert_int_equal(w.alert.state, ALERT_FIRING);
    assert_string_equal(w.alert.severity, "medium");
    assert_string_equal(w.alert.title, "disk_space_usage");
    assert_int_equal(w.alert.occurred_at, 0); /* "now" */
    assert_null(w.alert.url);
    cJSON_Delete(j);
}

static void test_reachability(void **state)
{
    (void)state;
    cJSON *down = parse("{\"message\":\"db-1 is unreachable\",\"url\":\"https://app.netdata.cloud/n\","
                        "\"host\":\"db-1\",\"severity\":\"critical\",\"status\":{\"reachable\":false,"
                        "\"text\":\"unreachable\"}}");
    cJSON *up = parse("{\"host\":\"db-1\",\"severity\":\"info\",\"status\":{\"reachable\":true,"
                      "\"text\":\"reachable\"}}");
    netdata_alert d, u;
    assert_int_equal(netdata_alert_from(down, "whd_5", &d), 0);
    assert_int_equal(netdata_alert_from(up, "whd_6", &u), 0);
    assert_int_equal(d.alert.state, ALERT_FIRING);
    assert_int_equal(u.alert.state, ALERT_RESOLVED);
    assert_string_equal(d.alert.fingerprint, u.alert.fingerprint);
    assert_string_equal(d.alert.service, "db-1");
    assert_string_equal(u.alert.title, "db-1 is reachable");
    assert_string_equal(d.alert.message, "unreachable");
    cJSON_Delete(down);
    cJSON_Delete(up);

    cJSON *test = parse("{\"message\":\"Test\",\"title\":\"Test notification\",\"token\":\"abc\"}");
    netdata_alert t;
    assert_int_equal(netdata_alert_from(test, "whd_7", &t), -1); /* stored, not an incident */
    cJSON_Delete(test);
}

/* Long fields are cut to the buffers, never overflow them. */
static void test_long_fields(void **state)
{
    (void)state;
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, 'q', 4999);
    big[4999] = '\0';
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "alert", big);
    cJSON_AddStringToObject(j, "message", big);
    cJSON_AddStringToObject(j, "space", big);
    cJSON_AddStringToObject(j, "severity", "critical");
    netdata_alert a;
    assert_int_equal(netdata_alert_from(j, "whd_8", &a), 0);
    assert_int_equal(strlen(a.alert.title), sizeof(a.title) - 1);
    assert_int_equal(strlen(a.alert.fingerprint), sizeof(a.fingerprint) - 1);
    cJSON_Delete(j);
    free(big);
}

static void test_crc_response(void **state)
{
    (void)state;
    char out[NETDATA_RESPONSE_TOKEN_LEN];
    const char *secret = "YOUR_CHALLENGE_SECRET";
    assert_int_equal(netdata_crc_response(secret, strlen(secret), "crc-token-123", out), 0);
    assert_string_equal(out, "sha256=+Yx2AwCv6bhXPBBxJRtzmKFccNejrcdR/hwJKjdeEik=");
    assert_int_equal(netdata_crc_response(secret, 0, "x", out), -1);
    assert_int_equal(netdata_crc_response(secret, strlen(secret), NULL, out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_alert_fires_then_clears),
        cmocka_unit_test(test_reachability),
        cmocka_unit_test(test_long_fields),
        cmocka_unit_test(test_crc_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
