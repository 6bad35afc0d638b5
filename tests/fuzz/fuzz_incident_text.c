/* fuzz_incident_text.c — what a monitoring provider's alert text goes
 * through in the incident core (server/incident_normalize.c,
 * server/incident_summary.c): bounded display copies, service keys,
 * severity words and the summary.
 *
 * Input: byte 0 the output capacity (1..1024 via two bytes: byte 0 and
 * byte 1), byte 2 flags (bit 0: keep newlines), then the text.
 *
 * Invariants:
 *  - incident_text_copy: the result is shorter than the capacity, its
 *    length is the one returned, valid UTF-8, no control character (other
 *    than '\n' and '\t' when kept), no leading or trailing white space;
 *  - incident_service_key: shorter than the capacity, valid UTF-8, only
 *    [a-z0-9-] and non-ASCII bytes, no empty word ('-' first, last or
 *    twice in a row);
 *  - incident_severity_normalize: one of the six words;
 *  - incident_summary: shorter than the capacity, length returned, valid
 *    UTF-8, the same bytes when made twice. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "incident_normalize.h"
#include "incident_summary.h"
#include "incidents.h"
#include "utf8.h"

static void check_copy(const char *s, size_t cap, int keep)
{
    char *out = malloc(cap);
    FUZZ_CHECK(out, "oom");
    long n = incident_text_copy(s, out, cap, keep);
    FUZZ_CHECK(n >= 0 && (size_t)n < cap && strlen(out) == (size_t)n, "copy length %ld cap %zu",
               n, cap);
    FUZZ_CHECK(utf8_valid(out, (size_t)n), "copy is not UTF-8");
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_CHECK(c >= 0x20 || (keep && (c == '\n' || c == '\t')), "control byte %02x", c);
        FUZZ_CHECK(c != 0x7f, "DEL kept");
    }
    if (n > 0) {
        FUZZ_CHECK(!strchr(" \n\t", out[0]) && !strchr(" \n\t", out[n - 1]), "untrimmed copy");
    }
    free(out);
}

static void check_key(const char *s, size_t cap)
{
    char *out = malloc(cap);
    FUZZ_CHECK(out, "oom");
    size_t n = incident_service_key(s, out, cap);
    FUZZ_CHECK(n < cap && strlen(out) == n, "key length %zu cap %zu", n, cap);
    FUZZ_CHECK(utf8_valid(out, n), "key is not UTF-8");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c >= 0x80,
                   "key byte %02x", c);
    }
    if (n > 0)
        FUZZ_CHECK(out[0] != '-' && out[n - 1] != '-' && !strstr(out, "--"), "empty word: %s",
                   out);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t cap = ((size_t)data[0] << 8 | data[1]) % 1024 + 1;
    int keep = data[2] & 1;
    char *s = fuzz_strndup(data + 3, size - 3);
    check_copy(s, cap, keep);
    check_key(s, cap);
    const char *sev = incident_severity_normalize(s);
    static const char *const words[] = { "critical", "high", "medium", "low", "info", "unknown" };
    int known = 0;
    for (size_t i = 0; i < 6; i++)
        known |= !strcmp(sev, words[i]);
    FUZZ_CHECK(known, "severity %s", sev);

    /* The summary from cleaned text, as incidents.c makes it. */
    char title[513], message[4097];
    incident_text_copy(s, title, sizeof(title), 0);
    incident_text_copy(s, message, sizeof(message), 1);
    incident_summary_in in = { .title = title, .source = "grafana", .service = title,
                               .severity = sev, .fingerprint = "fp", .url = NULL,
                               .message = message, .started_at = (int64_t)cap * 86400 };
    char *a = malloc(cap), *b = malloc(cap);
    FUZZ_CHECK(a && b, "oom");
    size_t na = incident_summary(&in, a, cap), nb = incident_summary(&in, b, cap);
    FUZZ_CHECK(na < cap && strlen(a) == na, "summary length %zu cap %zu", na, cap);
    FUZZ_CHECK(na == nb && !memcmp(a, b, na), "summary not deterministic");
    FUZZ_CHECK(utf8_valid(a, na), "summary is not UTF-8");
    free(a);
    free(b);
    free(s);
    return 0;
}
