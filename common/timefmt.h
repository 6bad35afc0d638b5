/* timefmt.h — the one way times appear in JSON: RFC 3339 in UTC, whole
 * seconds, "Z" suffix ("2026-12-02T15:04:05Z").  Browsers' Date, Python's
 * datetime.fromisoformat (3.11+) and every ISO-8601 parser read it. */
#ifndef AURORA_TIMEFMT_H
#define AURORA_TIMEFMT_H

#include <stdint.h>

#define TIME_RFC3339_LEN 21 /* "YYYY-MM-DDTHH:MM:SSZ" + NUL */

/* 0 and out filled, or -1 for a time outside years 0000..9999. */
int time_rfc3339(int64_t unix_seconds, char out[TIME_RFC3339_LEN]);
struct cJSON;
/* Adds key: t formatted as above, or null when t == 0 (or out of range). */
void time_json_add(struct cJSON *o, const char *key, int64_t t);
/* Parses exactly that form (and a "+00:00" suffix); 0 and *out, or -1. */
int time_parse_rfc3339(const char *s, int64_t *out);

#endif
