/* fuzz_grafana.c — what a Grafana contact point (or anyone who knows a
 * webhook URL) sends, as the Grafana connector reads it
 * (server/connectors/grafana.c): the payload shape check, the mapping of
 * every alert, Go's RFC 3339 times.
 *
 * Input: the request body (JSON), also given whole to grafana_parse_time.
 *
 * Invariants:
 *  - a payload grafana_payload_check accepts maps alert by alert (a check
 *    that passes and a mapping that fails would leave a stored delivery
 *    failing forever);
 *  - every mapped alert has a fingerprint of 1..256 printable ASCII bytes
 *    (the incident store's key rule), "labels:" + 64 hex when computed; a
 *    non-empty title; a message of at most GRAFANA_MESSAGE_MAX + 1 bytes;
 *    occurred_at in [0, 9999-12-31T23:59:59Z]; source "grafana";
 *  - an accepted time has the "YYYY-MM-DDTHH:MM:SS" form (RFC 3339 also
 *    allows a "t"), and the same text without its fraction reads the same. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "grafana.h"

static void check_time(const char *s)
{
    int64_t t = 0;
    if (grafana_parse_time(s, &t) < 0)
        return;
    FUZZ_CHECK(strlen(s) >= 20 && s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't') &&
                   s[13] == ':' && s[16] == ':',
               "accepted time %s is not RFC 3339", s);
    if (s[19] == '.') {
        const char *rest = s + 20;
        while (*rest >= '0' && *rest <= '9')
            rest++;
        char plain[80];
        snprintf(plain, sizeof(plain), "%.19s%s", s, rest);
        int64_t u = -1;
        FUZZ_CHECK(grafana_parse_time(plain, &u) == 0 && u == t,
                   "fraction changes the time: %s vs %s", s, plain);
    }
}

static void check_alert(const cJSON *a)
{
    grafana_alert g;
    char why[256];
    FUZZ_CHECK(grafana_alert_map(a, &g, why, sizeof(why)) == 0,
               "an accepted payload's alert does not map: %s", why);
    size_t n = strlen(g.alert.fingerprint);
    FUZZ_CHECK(n >= 1 && n <= GRAFANA_FINGERPRINT_MAX, "fingerprint length %zu", n);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(g.alert.fingerprint[i] > 0x20 && g.alert.fingerprint[i] < 0x7f,
                   "fingerprint byte %d", g.alert.fingerprint[i]);
    if (g.fingerprint_computed)
        FUZZ_CHECK(n == 7 + 64 && !strncmp(g.alert.fingerprint, "labels:", 7),
                   "computed fingerprint %s", g.alert.fingerprint);
    FUZZ_CHECK(g.alert.title && *g.alert.title, "empty title");
    FUZZ_CHECK(!g.alert.message || strlen(g.alert.message) <= GRAFANA_MESSAGE_MAX + 1,
               "message of %zu bytes", strlen(g.alert.message));
    FUZZ_CHECK(g.alert.occurred_at >= 0 && g.alert.occurred_at <= 253402300799LL,
               "occurred_at %lld", (long long)g.alert.occurred_at);
    FUZZ_CHECK(!strcmp(g.alert.source, "grafana"), "source %s", g.alert.source);
    const char *starts = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "startsAt"));
    check_time(starts ? starts : "");
    grafana_alert_free(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size);
    check_time(s);
    cJSON *json = cJSON_ParseWithLength(s, size);
    char why[256];
    if (grafana_payload_check(json, why, sizeof(why)) == 0) {
        const cJSON *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(json, "alerts"))
        {
            check_alert(a);
            (void)grafana_is_test_alert(a);
        }
    }
    cJSON_Delete(json);
    free(s);
    return 0;
}
