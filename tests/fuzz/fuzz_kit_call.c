/* fuzz_kit_call.c — what the connector kit reads from a provider's answer
 * (server/connectors/kit_call.c): the Link header, Retry-After and HTTP
 * dates, rate-limit headers, JSON paths to cursors and next URLs, and the
 * query parameter it appends a cursor with.
 *
 * Input: NUL-separated pieces: Link value, context URL, Retry-After value,
 * X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit-Reset, JSON text,
 * JSON path.
 *
 * Invariants:
 *  - kit_link_next answers -1, 0 or 1; on 1 the target is NUL-terminated
 *    within the buffer (a small one too: never overflows) and is a URL
 *    http_client accepts; a value without "next" (any case) never yields 1;
 *  - kit_retry_after_s is -1 or within [0, KIT_WAIT_CAP_S]; for all-digit
 *    values (blanks around) it is the number, capped (compared with a
 *    reference reading); without any digit it is -1;
 *  - a date kit_http_date accepts formats back (IMF-fixdate) to the same time;
 *  - kit_ratelimit_reset_s is -1 or within [0, KIT_WAIT_CAP_S];
 *  - kit_json_path_string returns NULL or a string of the parsed tree;
 *  - a cursor appended to an accepted URL gives an accepted URL (or NULL). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <strings.h>
#include <time.h>

#include "fuzz_util.h"
#include "http_client.h"
#include "kit_call.h"

/* Reference: blanks around, then only digits -> the number capped; else -2
 * (not a plain number: the kit may read it as a date or refuse it). */
static long ref_delta(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= 64)
        return -2;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -2;
        if (x <= KIT_WAIT_CAP_S)
            x = x * 10 + (v[i] - '0');
    }
    return x > KIT_WAIT_CAP_S ? KIT_WAIT_CAP_S : x;
}

static int has_digit(const char *s)
{
    for (; *s; s++)
        if (isdigit((unsigned char)*s))
            return 1;
    return 0;
}

static void check_link(const char *link, const char *ctx, size_t cap)
{
    char *out = malloc(cap);
    if (!out)
        abort();
    int r = kit_link_next(link, *ctx ? ctx : NULL, out, cap);
    FUZZ_CHECK(r >= -1 && r <= 1, "kit_link_next answered %d", r);
    if (r == 1) {
        FUZZ_CHECK(memchr(out, '\0', cap) != NULL, "Link target not terminated");
        FUZZ_CHECK(http_client_url_ok(out, 0), "Link target \"%s\" is not an accepted URL", out);
        /* a quoted rel may spell it with quoted-pairs (RFC 9110 5.6.4:
         * rel="n\ext" is "next"): look for it with the backslashes gone */
        size_t n = strlen(link);
        char *plain = malloc(n + 1);
        if (!plain)
            abort();
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (link[i] != '\\')
                plain[k++] = link[i];
        plain[k] = '\0';
        FUZZ_CHECK(strcasestr(plain, "next") != NULL, "a next link without \"next\" in \"%s\"",
                   link);
        free(plain);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *owned, *p[8] = { "", "", "", "", "", "", "", "" };
    fuzz_split(data, size, p, 8, &owned);
    const char *link = p[0], *ctx = p[1], *ra = p[2];
    time_t now = 1700000000;

    check_link(link, ctx, 8192);
    check_link(link, ctx, 24);

    long w = kit_retry_after_s(ra, now);
    FUZZ_CHECK(w == -1 || (w >= 0 && w <= KIT_WAIT_CAP_S), "Retry-After wait %ld", w);
    long ref = ref_delta(ra);
    if (ref >= 0)
        FUZZ_CHECK(w == ref, "Retry-After \"%s\": %ld, reference %ld", ra, w, ref);
    if (!has_digit(ra))
        FUZZ_CHECK(w == -1, "Retry-After \"%s\" without digits gave %ld", ra, w);

    time_t t = kit_http_date(ra);
    if (t >= 0) {
        struct tm tm;
        char back[64];
        FUZZ_CHECK(gmtime_r(&t, &tm) != NULL, "gmtime");
        strftime(back, sizeof(back), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        FUZZ_CHECK(kit_http_date(back) == t, "date \"%s\" -> %lld does not round-trip via \"%s\"",
                   ra, (long long)t, back);
    }

    /* rate-limit headers as http_client keeps them */
    const char *names[] = { "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Reset" };
    size_t hl = 1;
    for (int i = 0; i < 3; i++)
        hl += strlen(names[i]) + strlen(p[3 + i]) + 2;
    http_client_resp r;
    memset(&r, 0, sizeof(r));
    r.status = size & 1 ? 429 : 200;
    r.headers = malloc(hl);
    if (!r.headers)
        abort();
    size_t k = 0;
    for (int i = 0; i < 3; i++) {
        memcpy(r.headers + k, names[i], strlen(names[i]) + 1);
        k += strlen(names[i]) + 1;
        memcpy(r.headers + k, p[3 + i], strlen(p[3 + i]) + 1);
        k += strlen(p[3 + i]) + 1;
    }
    r.headers[k] = '\0';
    r.headers_len = k;
    long reset = kit_ratelimit_reset_s(&r, now);
    FUZZ_CHECK(reset == -1 || (reset >= 0 && reset <= KIT_WAIT_CAP_S), "reset wait %ld", reset);
    http_client_resp_free(&r);

    cJSON *j = cJSON_Parse(p[6]);
    const char *s = kit_json_path_string(j, p[7]);
    if (s)
        FUZZ_CHECK(j != NULL, "a string from no tree");
    cJSON_Delete(j);

    if (*ctx && http_client_url_ok(ctx, 0)) {
        char *u = kit_url_with_param(ctx, "cursor", ra);
        if (u)
            FUZZ_CHECK(http_client_url_ok(u, 0), "cursor URL \"%s\" refused", u);
        free(u);
    }
    free(owned);
    return 0;
}
