/* incident_normalize.c — severity words, service keys and bounded text
 * copies of the incident core (incident_normalize.h, incidents.h). */
#include "incident_normalize.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "incidents.h"
#include "utf8.h"

typedef struct {
    const char *word;
    const char *severity;
} severity_word;

/* Providers' words, case-insensitive.  Sentry levels (fatal, error,
 * warning, info, debug), PagerDuty priorities (P1…P5) and urgencies,
 * Datadog priorities and alert types, Grafana/Prometheus severity labels,
 * New Relic priorities (CRITICAL, HIGH, MEDIUM, LOW), Netdata statuses. */
static const severity_word severity_words[] = {
    { "critical", "critical" }, { "crit", "critical" },     { "fatal", "critical" },
    { "error", "critical" },    { "err", "critical" },      { "emergency", "critical" },
    { "emerg", "critical" },    { "alert", "critical" },    { "disaster", "critical" },
    { "p1", "critical" },       { "sev1", "critical" },     { "sev-1", "critical" },
    { "sev0", "critical" },     { "p0", "critical" },       { "s1", "critical" },
    { "high", "high" },         { "major", "high" },        { "severe", "high" },
    { "p2", "high" },           { "sev2", "high" },         { "sev-2", "high" },
    { "s2", "high" },           { "medium", "medium" },     { "moderate", "medium" },
    { "warning", "medium" },    { "warn", "medium" },       { "average", "medium" },
    { "p3", "medium" },         { "sev3", "medium" },       { "sev-3", "medium" },
    { "s3", "medium" },         { "low", "low" },           { "minor", "low" },
    { "p4", "low" },            { "p5", "low" },            { "sev4", "low" },
    { "sev-4", "low" },         { "sev5", "low" },          { "s4", "low" },
    { "info", "info" },         { "informational", "info" }, { "information", "info" },
    { "notice", "info" },       { "debug", "info" },        { "ok", "info" },
    { "clear", "info" },        { "none", "info" },
};

const char *incident_severity_normalize(const char *provider_value)
{
    if (!provider_value)
        return "unknown";
    /* Surrounding spaces are ignored; anything longer than a word is not one. */
    while (*provider_value == ' ' || *provider_value == '\t')
        provider_value++;
    size_t n = strlen(provider_value);
    while (n > 0 && (provider_value[n - 1] == ' ' || provider_value[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 16)
        return "unknown";
    for (size_t i = 0; i < sizeof(severity_words) / sizeof(severity_words[0]); i++)
        if (strlen(severity_words[i].word) == n &&
            strncasecmp(provider_value, severity_words[i].word, n) == 0)
            return severity_words[i].severity;
    return "unknown";
}

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static int generic_word(const char *w, size_t n)
{
    return (n == 7 && !strncmp(w, "service", 7)) || (n == 3 && !strncmp(w, "svc", 3)) ||
           (n == 3 && !strncmp(w, "srv", 3));
}

/* Appends the words of service (valid UTF-8; generic words skipped when
 * skip_generic).  A word longer than the word buffer is cut at a character
 * boundary; a word that does not fit in out ends the key, so the key is
 * always whole words joined by '-'. */
static size_t build_key(const char *service, char *out, size_t cap, int skip_generic)
{
    size_t len = 0;
    const char *p = service;
    char word[257];
    while (*p) {
        while (*p && !is_word_byte((unsigned char)*p))
            p++;
        size_t n = 0;
        while (*p && is_word_byte((unsigned char)*p)) {
            if (n < sizeof(word) - 1) {
                unsigned char c = (unsigned char)*p;
                word[n++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            }
            p++;
        }
        n = utf8_complete_prefix(word, n);
        if (n == 0 || (skip_generic && generic_word(word, n)))
            continue;
        size_t need = n + (len ? 1 : 0);
        if (len + need >= cap)
            break;
        if (len)
            out[len++] = '-';
        memcpy(out + len, word, n);
        len += n;
    }
    out[len] = '\0';
    return len;
}

size_t incident_service_key(const char *service, char *out, size_t cap)
{
    if (!out || cap == 0)
        return 0;
    out[0] = '\0';
    if (!service)
        return 0;
    /* Words are cut only at character boundaries, so valid input gives a
     * valid key; other input is repaired first (U+FFFD is a word byte). */
    char *fixed = NULL;
    size_t slen = strlen(service);
    if (!utf8_valid(service, slen)) {
        fixed = utf8_sanitize(service, slen, NULL);
        if (!fixed)
            return 0;
        service = fixed;
    }
    size_t len = build_key(service, out, cap, 1);
    if (len == 0) /* "service" alone is still a name */
        len = build_key(service, out, cap, 0);
    free(fixed);
    return len;
}

long incident_text_copy(const char *src, char *out, size_t cap, int keep_newlines)
{
    if (!out || cap == 0)
        return -1;
    out[0] = '\0';
    if (!src)
        return 0;
    /* Leading blanks and control characters all end up trimmed: skip them
     * before the window below, or a long run of them would leave nothing
     * of a title that does have text. */
    while (*src && ((unsigned char)*src <= 0x20 || *src == 0x7f))
        src++;
    size_t slen = strlen(src);
    /* Only as much input as can end up in out (U+FFFD is 3 bytes for 1). */
    size_t take = slen < cap * 2 ? slen : cap * 2;
    size_t clean_len = 0;
    char *clean = utf8_sanitize(src, take, &clean_len);
    if (!clean)
        return -1;
    for (size_t i = 0; i < clean_len; i++) {
        unsigned char c = (unsigned char)clean[i];
        if ((c < 0x20 && !(keep_newlines && (c == '\n' || c == '\t'))) || c == 0x7f)
            clean[i] = ' ';
    }
    size_t start = 0;
    while (start < clean_len && (clean[start] == ' ' || clean[start] == '\n' || clean[start] == '\t'))
        start++;
    size_t n = clean_len - start;
    if (n > cap - 1)
        n = utf8_complete_prefix(clean + start, cap - 1);
    while (n > 0 && (clean[start + n - 1] == ' ' || clean[start + n - 1] == '\n' ||
                     clean[start + n - 1] == '\t'))
        n--;
    memcpy(out, clean + start, n);
    out[n] = '\0';
    free(clean);
    return (long)n;
}
