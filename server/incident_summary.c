/* incident_summary.c — the deterministic summary of a new incident
 * (incident_summary.h). */
#include "incident_summary.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "timefmt.h"
#include "utf8.h"

typedef struct {
    char *out;
    size_t cap, len;
    int full;
} sbuf;

/* Appends n bytes of s; once something does not fit, the buffer is cut at a
 * character boundary and nothing more is added. */
static void put(sbuf *b, const char *s, size_t n)
{
    if (b->full || b->cap == 0)
        return;
    size_t room = b->cap - 1 - b->len;
    if (n > room) {
        n = utf8_complete_prefix(s, room);
        b->full = 1;
    }
    memcpy(b->out + b->len, s, n);
    b->len += n;
    b->out[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static const char *or_default(const char *v, const char *dflt)
{
    return v && *v ? v : dflt;
}

/* The first lines of the message, each cut, then how many were left out. */
static void put_details(sbuf *b, const char *msg)
{
    size_t kept = 0, more = 0;
    const char *p = msg;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        const char *next = eol ? eol + 1 : p + n;
        /* Blank lines carry nothing; lines of spaces neither. */
        size_t lead = 0;
        while (lead < n && (p[lead] == ' ' || p[lead] == '\t'))
            lead++;
        if (lead < n) {
            if (kept < SUMMARY_MESSAGE_LINES) {
                size_t keep = n > SUMMARY_LINE_MAX ? utf8_complete_prefix(p, SUMMARY_LINE_MAX) : n;
                puts_(b, "  ");
                put(b, p, keep);
                puts_(b, keep < n ? "…\n" : "\n");
                kept++;
            } else {
                more++;
            }
        }
        p = next;
    }
    if (more)
        putf(b, "  … %zu more line%s\n", more, more == 1 ? "" : "s");
}

size_t incident_summary(const incident_summary_in *in, char *out, size_t cap)
{
    sbuf b = { out, cap, 0, 0 };
    if (!out || cap == 0)
        return 0;
    out[0] = '\0';
    if (!in)
        return 0;
    char started[TIME_RFC3339_LEN];
    if (time_rfc3339(in->started_at, started) < 0)
        snprintf(started, sizeof(started), "unknown");
    puts_(&b, or_default(in->severity, "unknown"));
    puts_(&b, " ");
    puts_(&b, or_default(in->source, "unknown"));
    puts_(&b, " alert: ");
    puts_(&b, or_default(in->title, "(untitled)"));
    puts_(&b, "\nService: ");
    puts_(&b, or_default(in->service, "(none)"));
    puts_(&b, "\nStarted: ");
    puts_(&b, started);
    puts_(&b, "\nFingerprint: ");
    puts_(&b, or_default(in->fingerprint, "(none)"));
    puts_(&b, "\n");
    if (in->url && *in->url) {
        puts_(&b, "Link: ");
        puts_(&b, in->url);
        puts_(&b, "\n");
    }
    if (in->message && *in->message) {
        puts_(&b, "Details:\n");
        put_details(&b, in->message);
    }
    return b.len;
}
