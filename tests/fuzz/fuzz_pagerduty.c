/* fuzz_pagerduty.c — what PagerDuty (or anyone who knows a user's webhook
 * URL, when no signing secret is set) sends to /pagerduty/webhook/{user_id}:
 * the v3 payload reader and the time parser of connectors/pagerduty_webhook.c.
 *
 * Input: the bytes as a request body (parsed as JSON like the kit does), and
 * the same bytes as a time string.
 *
 * Invariants:
 *  - pd_event_parse answers one of its three results; BAD always says why;
 *  - an ALERT has source "pagerduty", a state of the three incident events,
 *    a fingerprint of 1-128 printable ASCII bytes equal to the source id, a
 *    title of 1-4096 bytes, and every optional text within its cap;
 *  - pd_time_parse: an accepted time prints back (RFC 3339, seconds) to the
 *    text's first 19 characters (case aside): no date is normalized into another. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "pagerduty.h"
#include "timefmt.h"

static void check_text(const char *s, size_t max, const char *what)
{
    if (s)
        FUZZ_CHECK(*s && strlen(s) <= max, "%s empty or over %zu bytes", what, max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size);
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (j) {
        pd_event e;
        char why[160] = "";
        int k = pd_event_parse(j, &e, why, sizeof(why));
        FUZZ_CHECK(k == PD_EVENT_BAD || k == PD_EVENT_OTHER || k == PD_EVENT_ALERT, "result %d", k);
        if (k == PD_EVENT_BAD)
            FUZZ_CHECK(why[0] != '\0', "BAD without a reason");
        if (k == PD_EVENT_ALERT) {
            const incident_alert *a = &e.alert;
            FUZZ_CHECK(a->source && !strcmp(a->source, "pagerduty"), "source");
            FUZZ_CHECK(a->state == ALERT_FIRING || a->state == ALERT_ACKNOWLEDGED ||
                           a->state == ALERT_RESOLVED, "state %d", (int)a->state);
            size_t n = a->fingerprint ? strlen(a->fingerprint) : 0;
            FUZZ_CHECK(n >= 1 && n <= 128, "fingerprint length %zu", n);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(a->fingerprint[i] > 0x20 && a->fingerprint[i] < 0x7f,
                           "fingerprint byte 0x%02x", (unsigned char)a->fingerprint[i]);
            FUZZ_CHECK(a->source_alert_id == a->fingerprint, "source id is the incident id");
            check_text(a->title, 4096, "title");
            FUZZ_CHECK(a->title != NULL, "no title");
            check_text(a->service, 4096, "service");
            check_text(a->url, 4096, "url");
            check_text(a->message, 4096, "message");
            check_text(e.priority, 64, "priority");
            check_text(e.urgency, 32, "urgency");
            FUZZ_CHECK(a->occurred_at >= 0, "negative time");
        }
        cJSON_Delete(j);
    }
    int64_t t = pd_time_parse(s);
    if (t) {
        char back[TIME_RFC3339_LEN];
        FUZZ_CHECK(time_rfc3339(t, back) == 0, "time %lld does not print", (long long)t);
        FUZZ_CHECK(!strncasecmp(back, s, 19), "time %s read as %s", s, back); /* RFC 3339: "t" = "T" */
    }
    free(s);
    return 0;
}
