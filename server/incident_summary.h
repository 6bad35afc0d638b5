/* incident_summary.h — the text a new incident is summarized with (shown by
 * the API, handed to the investigation service in its RCA job). */
#ifndef AURORA_INCIDENT_SUMMARY_H
#define AURORA_INCIDENT_SUMMARY_H

#include <stddef.h>
#include <stdint.h>

/* Lines of the message/stack kept, and bytes of each. */
#define SUMMARY_MESSAGE_LINES 20
#define SUMMARY_LINE_MAX 240

/* What the summary is made of: already bounded, display-safe text
 * (incident_text_copy); NULL or "" for absent fields. */
typedef struct {
    const char *title;
    const char *source;
    const char *service;
    const char *severity;
    const char *fingerprint;
    const char *url;
    const char *message; /* may hold newlines: the first lines are kept */
    int64_t started_at;
} incident_summary_in;

/* Deterministic text (same input, same bytes), at most cap-1 bytes, cut at a
 * UTF-8 boundary:
 *   <severity> <source> alert: <title>
 *   Service: <service | (none)>
 *   Started: <RFC 3339>
 *   Fingerprint: <fingerprint>
 *   Link: <url>                       (only when set)
 *   Details:                          (only when there is a message)
 *     <first SUMMARY_MESSAGE_LINES non-empty lines, each cut>
 *     … <n> more lines
 * Returns the length. */
size_t incident_summary(const incident_summary_in *in, char *out, size_t cap);

#endif
