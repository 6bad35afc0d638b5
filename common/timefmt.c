/* timefmt.c — RFC 3339 UTC timestamps; see timefmt.h. */
#include "timefmt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Year 10000 would need a fifth digit: refuse instead of printing a
 * timestamp no parser accepts. */
#define MAX_UNIX_SECONDS INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define MIN_UNIX_SECONDS INT64_C(-62167219200) /* 0000-01-01T00:00:00Z */

int time_rfc3339(int64_t t, char out[TIME_RFC3339_LEN])
{
    out[0] = '\0';
    if (t > MAX_UNIX_SECONDS || t < MIN_UNIX_SECONDS)
        return -1;
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return -1;
    int n = snprintf(out, TIME_RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n != TIME_RFC3339_LEN - 1) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

void time_json_add(cJSON *o, const char *key, int64_t t)
{
    char when[TIME_RFC3339_LEN];
    if (t && time_rfc3339(t, when) == 0)
        cJSON_AddStringToObject(o, key, when);
    else
        cJSON_AddNullToObject(o, key);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int time_parse_rfc3339(const char *s, int64_t *out)
{
    int Y, M, D, h, m, sec;
    if (!s || !out || strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':' || digits(s, 4, &Y) || digits(s + 5, 2, &M) ||
        digits(s + 8, 2, &D) || digits(s + 11, 2, &h) || digits(s + 14, 2, &m) ||
        digits(s + 17, 2, &sec))
        return -1;
    const char *z = s + 19;
    if (strcmp(z, "Z") && strcmp(z, "z") && strcmp(z, "+00:00"))
        return -1;
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || (M == 2 && D == 29 && !leap) || h > 23 ||
        m > 59 || sec > 59)
        return -1;
    /* Days from the civil date (proleptic Gregorian), independent of TZ. */
    int y = Y - (M <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = days * 86400 + h * 3600 + m * 60 + sec;
    return 0;
}
