/* fuzz_sentry.c — the Sentry webhook payload mapper and stack excerpt
 * (server/connectors/sentry_payload.c): what a Sentry integration (or
 * whoever holds a user's client secret) posts to /sentry/webhook/{user_id}.
 *
 * Input: byte 0 picks the resource (bit 0: issue / error) and the excerpt's
 * capacity (1..128 bytes), then a JSON document.
 *
 * Invariants:
 *  - a mapped payload (1) has a fingerprint of 1-64 printable bytes equal to
 *    its source_alert_id, a dedup key starting with "<fingerprint>:", a title,
 *    and message/service without control characters (message: '\n' only as
 *    its own line breaks) within their buffers;
 *  - the excerpt always fits the capacity, ends with its NUL at the length
 *    returned and holds no control character but '\n'. */
#include <cjson/cJSON.h>
#include <string.h>

#include "fuzz_util.h"
#include "sentry.h"

static void clean(const char *s, size_t cap, int newline_ok, const char *what)
{
    size_t n = strnlen(s, cap);
    FUZZ_CHECK(n < cap, "%s not terminated within its buffer", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        FUZZ_CHECK(!(c < 0x20 || c == 0x7F) || (newline_ok && c == '\n'),
                   "%s holds control character 0x%02x", what, c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *resource = (data[0] & 1) ? "error" : "issue";
    size_t cap = (size_t)(data[0] >> 1) + 1;
    cJSON *j = cJSON_ParseWithLength((const char *)data + 1, size - 1);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "action");
    sentry_alert sa;
    char err[160];
    int rc = sentry_alert_from_payload(resource, cJSON_IsString(a) ? a->valuestring : "created",
                                       j, &sa, err, sizeof(err));
    FUZZ_CHECK(rc >= -1 && rc <= 1, "result %d", rc);
    if (rc == 1) {
        size_t n = strlen(sa.a.fingerprint);
        FUZZ_CHECK(n >= 1 && n <= 64, "fingerprint length %zu", n);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(sa.a.fingerprint[i] > ' ' && sa.a.fingerprint[i] <= '~',
                       "fingerprint byte 0x%02x", (unsigned char)sa.a.fingerprint[i]);
        FUZZ_CHECK(!strcmp(sa.a.fingerprint, sa.a.source_alert_id), "fingerprint != issue id");
        FUZZ_CHECK(!strncmp(sa.a.dedup_key, sa.a.fingerprint, n) && sa.a.dedup_key[n] == ':',
                   "dedup key %s does not start with the issue id", sa.a.dedup_key);
        FUZZ_CHECK(sa.a.title != NULL, "no title");
        clean(sa.service, sizeof(sa.service), 0, "service");
        clean(sa.message, sizeof(sa.message), 1, "message");
    } else if (rc < 0) {
        FUZZ_CHECK(err[0] != '\0', "refused without a reason");
    }
    char out[129];
    memset(out, 'Z', sizeof(out));
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "exception");
    size_t m = sentry_stack_excerpt(ex ? ex : j, out, cap, 8);
    FUZZ_CHECK(m < cap && out[m] == '\0', "excerpt length %zu, cap %zu", m, cap);
    clean(out, cap, 1, "excerpt");
    cJSON_Delete(j);
    return 0;
}
