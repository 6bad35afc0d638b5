/* fuzz_github.c — the parsers of what GitHub (or whoever answers at
 * GH_API_BASE_URL) and a browser at the install callback send
 * (server/connectors/github_app.c): the Link header's rel="next" target,
 * GitHub's timestamps and installation ids.
 *
 * Input: byte 0 the output capacity for the Link target (1..256), then the
 * text, given to all three parsers.
 *
 * Invariants:
 *  - github_link_next: a found target fits the capacity, is not empty,
 *    holds no '<', '>' or NUL, and "<target>" occurs in the header;
 *  - github_parse_time: a time it accepts prints back to the same text
 *    (YYYY-MM-DDTHH:MM:SSZ): no date is normalized into another;
 *  - github_parse_installation_id: an accepted id is in 1..2^53-1 and prints
 *    back to the same digits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_util.h"
#include "github_app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = (size_t)data[0] % 256 + 1;
    char *s = fuzz_strndup(data + 1, size - 1);
    char out[257];
    memset(out, 'Z', sizeof(out));
    if (github_link_next(s, out, cap)) {
        size_t n = strnlen(out, sizeof(out));
        FUZZ_CHECK(n > 0 && n < cap, "link target length %zu, cap %zu", n, cap);
        FUZZ_CHECK(!strpbrk(out, "<>"), "link target holds '<' or '>': %s", out);
        char *want = malloc(n + 3);
        snprintf(want, n + 3, "<%s>", out);
        FUZZ_CHECK(strstr(s, want) != NULL, "link target %s not in the header", want);
        free(want);
    }
    int64_t t = github_parse_time(s);
    if (t >= 0) {
        time_t tt = (time_t)t;
        struct tm tm;
        char back[32];
        FUZZ_CHECK(gmtime_r(&tt, &tm) && strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%SZ", &tm),
                   "time %" PRId64 " does not print", t);
        FUZZ_CHECK(!strcmp(back, s), "time %s read as %s", s, back);
    }
    int64_t id = 0;
    if (github_parse_installation_id(s, &id)) {
        char back[32];
        snprintf(back, sizeof(back), "%" PRId64, id);
        FUZZ_CHECK(id >= 1 && id <= GITHUB_MAX_INSTALLATION_ID, "id %" PRId64 " out of range", id);
        FUZZ_CHECK(!strcmp(back, s), "id %s read as %s", s, back);
    }
    free(s);
    return 0;
}
