/* fuzz_datadog.c — what reaches the Datadog connector from outside
 * (server/connectors/datadog.c): a webhook body (the user's template as
 * Datadog fills it: anyone holding the URL may post anything) and a site
 * name from a connect request.
 *
 * Input: the bytes, parsed as JSON for the payload check and mapping, and
 * as a string for the site and transition lookups.
 *
 * Invariants:
 *  - datadog_map_alert accepts exactly what datadog_payload_check accepts,
 *    and a refusal says why;
 *  - an accepted payload maps to what incident_ingest takes as is: a
 *    fingerprint of 1..256 bytes starting "datadog:", valid UTF-8 without
 *    control characters; a non-empty title; a severity of the normalized
 *    set; a state of the enum;
 *  - a site found is one of the table's (its code finds itself again). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datadog.h"
#include "fuzz_util.h"
#include "utf8.h"

static int severity_ok(const char *s)
{
    static const char *const set[] = { "critical", "high", "medium", "low", "info", "unknown" };
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
        if (!strcmp(s, set[i]))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    char why[160] = "", why2[160] = "";
    int checked = datadog_payload_check(j, why, sizeof(why));
    datadog_alert a;
    int mapped = datadog_map_alert(j, &a, why2, sizeof(why2));
    FUZZ_CHECK(checked == mapped, "check %d but map %d", checked, mapped);
    if (checked < 0) {
        FUZZ_CHECK(why[0] && why2[0], "a refusal without a reason");
    } else {
        size_t n = strlen(a.fingerprint);
        FUZZ_CHECK(n > 8 && n <= 256 && !strncmp(a.fingerprint, "datadog:", 8),
                   "fingerprint of %zu bytes: %.40s", n, a.fingerprint);
        FUZZ_CHECK(utf8_valid(a.fingerprint, n), "fingerprint not UTF-8");
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)a.fingerprint[i] >= 0x20 && a.fingerprint[i] != 0x7f,
                       "control character in the fingerprint");
        FUZZ_CHECK(a.title[0], "empty title");
        FUZZ_CHECK(severity_ok(a.severity), "severity %s", a.severity);
        FUZZ_CHECK(a.state >= ALERT_FIRING && a.state <= ALERT_INFO, "state %d", (int)a.state);
        FUZZ_CHECK(a.state_known || a.state == ALERT_INFO, "unknown state not info");
    }
    cJSON_Delete(j);

    char *s = fuzz_strndup(data, size);
    const datadog_site *site = datadog_site_find(s);
    if (site)
        FUZZ_CHECK(datadog_site_find(site->code) == site && datadog_site_find(site->domain) == site,
                   "site %s does not find itself", site->code);
    alert_state st = ALERT_INFO;
    if (datadog_transition_state(s, &st))
        FUZZ_CHECK(st == ALERT_FIRING || st == ALERT_RESOLVED, "transition to %d", (int)st);
    free(s);
    return 0;
}
