/* sentry_payload.c — Sentry's integration-platform webhook payloads as
 * alerts for the incident core (sentry.h).  Shapes, from Sentry's docs
 * (docs.sentry.io/integrations/integration-platform/webhooks/issues/ and
 * …/errors/):
 *   issue: {"action": "created"|"resolved"|"assigned"|"archived"|"ignored"|
 *           "unresolved", "data": {"issue": {"id", "shortId", "title", "culprit",
 *           "level", "status", "firstSeen", "lastSeen", "web_url", "permalink",
 *           "metadata": {"type", "value"}, "project": {"id", "slug", "name"}}}}
 *   error: {"action": "created", "data": {"error": {"event_id", "issue_id",
 *           "title", "culprit", "level", "datetime", "web_url", "project",
 *           "exception": {"values": [{"type", "value", "stacktrace":
 *           {"frames": [{"function", "filename", "abs_path", "module",
 *           "lineno"}, …]}}]}}}}
 * Every value is hostile: ids are checked, text is bounded, control
 * characters never reach the message. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "api_util.h"
#include "sentry.h"
#include "timefmt.h"

#define LINE_MAX_CHARS 200 /* one line of the excerpt */

/* Appends text to out (at *n, capped), control characters as spaces (unless
 * raw: our own line breaks) and at most max bytes of it, never cutting a
 * UTF-8 sequence. */
static void put_text(char *out, size_t cap, size_t *n, const char *text, size_t max, int raw)
{
    if (!text || *n + 1 >= cap)
        return;
    size_t room = cap - 1 - *n;
    if (max > room)
        max = room;
    size_t len = strlen(text);
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--; /* text[len] is a continuation byte: cut before its lead */
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        out[(*n)++] = !raw && (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
    }
    out[*n] = '\0';
}

static void put(char *out, size_t cap, size_t *n, const char *text, size_t max)
{
    put_text(out, cap, n, text, max, 0);
}

/* A line break and the frame prefix. */
static void put_break(char *out, size_t cap, size_t *n, const char *sep)
{
    put_text(out, cap, n, sep, strlen(sep), 1);
}

/* A scalar as text: strings as they are, integral numbers in decimal. */
static const char *scalar(const cJSON *v, char *buf, size_t cap)
{
    int64_t i;
    if (cJSON_IsString(v) && v->valuestring)
        return v->valuestring;
    if (cJSON_IsNumber(v) && api_json_int64(v, &i)) {
        snprintf(buf, cap, "%lld", (long long)i);
        return buf;
    }
    return NULL;
}

size_t sentry_stack_excerpt(const cJSON *exception, char *out, size_t cap, int max_frames)
{
    size_t n = 0;
    if (!out || cap == 0)
        return 0;
    out[0] = '\0';
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(exception, "values");
    int nv = cJSON_IsArray(values) ? cJSON_GetArraySize(values) : 0;
    if (nv <= 0)
        return 0;
    /* Sentry lists chained exceptions oldest first: the last is the one raised. */
    const cJSON *ex = cJSON_GetArrayItem(values, nv - 1);
    const char *type = api_json_str(ex, "type"), *value = api_json_str(ex, "value");
    put(out, cap, &n, type ? type : "Error", LINE_MAX_CHARS / 2);
    if (value) {
        put(out, cap, &n, ": ", 2);
        put(out, cap, &n, value, LINE_MAX_CHARS);
    }
    const cJSON *frames =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ex, "stacktrace"),
                                         "frames");
    int nf = cJSON_IsArray(frames) ? cJSON_GetArraySize(frames) : 0;
    /* Frames are oldest call first: the innermost (where it failed) is last. */
    for (int i = nf - 1, shown = 0; i >= 0 && shown < max_frames; i--, shown++) {
        const cJSON *f = cJSON_GetArrayItem(frames, i);
        if (!cJSON_IsObject(f))
            continue;
        const char *fn = api_json_str(f, "function");
        const char *file = api_json_str(f, "filename");
        if (!file)
            file = api_json_str(f, "abs_path");
        if (!file)
            file = api_json_str(f, "module");
        char num[32];
        const char *line = scalar(cJSON_GetObjectItemCaseSensitive(f, "lineno"), num, sizeof(num));
        put_break(out, cap, &n, "\n  at ");
        put(out, cap, &n, fn ? fn : "?", LINE_MAX_CHARS / 2);
        put(out, cap, &n, " (", 2);
        put(out, cap, &n, file ? file : "?", LINE_MAX_CHARS / 2);
        if (line) {
            put(out, cap, &n, ":", 1);
            put(out, cap, &n, line, 20);
        }
        put(out, cap, &n, ")", 1);
    }
    return n;
}

/* Sentry's times ("2019-08-19T20:58:37.391000Z"): fractions dropped. */
static int64_t sentry_time(const char *s)
{
    char buf[32];
    int64_t t = 0;
    if (!s || strlen(s) < 19 || strlen(s) >= sizeof(buf))
        return 0;
    memcpy(buf, s, 19);
    snprintf(buf + 19, sizeof(buf) - 19, "Z");
    return time_parse_rfc3339(buf, &t) == 0 && t > 0 ? t : 0;
}

/* Printable ASCII id of 1–64 characters into out; -1 otherwise. */
static int id_text(const cJSON *v, char *out, size_t cap)
{
    char buf[32];
    const char *s = scalar(v, buf, sizeof(buf));
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 64 || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return -1;
    memcpy(out, s, n + 1);
    return 0;
}

static int issue_state(const char *action, alert_state *st)
{
    if (!strcmp(action, "created") || !strcmp(action, "unresolved"))
        *st = ALERT_FIRING;
    else if (!strcmp(action, "resolved"))
        *st = ALERT_RESOLVED;
    else if (!strcmp(action, "assigned"))
        *st = ALERT_ACKNOWLEDGED;
    else if (!strcmp(action, "ignored") || !strcmp(action, "archived"))
        *st = ALERT_INFO;
    else
        return 0;
    return 1;
}

static int from_issue(const char *action, const cJSON *issue, sentry_alert *out, char *err,
                      size_t errlen)
{
    if (!cJSON_IsObject(issue) ||
        id_text(cJSON_GetObjectItemCaseSensitive(issue, "id"), out->issue_id,
                sizeof(out->issue_id)) < 0) {
        snprintf(err, errlen, "data.issue.id is missing or not an id");
        return -1;
    }
    alert_state st;
    if (!issue_state(action, &st))
        return 0; /* an action Sentry may add later: stored, not processed */
    const char *title = api_json_str(issue, "title");
    const cJSON *project = cJSON_GetObjectItemCaseSensitive(issue, "project");
    const char *svc = api_json_str(project, "slug");
    if (!svc)
        svc = api_json_str(project, "name");
    size_t n = 0;
    put(out->service, sizeof(out->service), &n, svc ? svc : "", sizeof(out->service));
    const char *culprit = api_json_str(issue, "culprit");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(issue, "metadata");
    const char *mtype = api_json_str(meta, "type"), *mvalue = api_json_str(meta, "value");
    n = 0;
    if (mtype || mvalue) {
        put(out->message, sizeof(out->message), &n, mtype ? mtype : "Error", LINE_MAX_CHARS / 2);
        if (mvalue) {
            put(out->message, sizeof(out->message), &n, ": ", 2);
            put(out->message, sizeof(out->message), &n, mvalue, LINE_MAX_CHARS * 4);
        }
    }
    if (culprit && *culprit) {
        if (n)
            put_break(out->message, sizeof(out->message), &n, "\n");
        put(out->message, sizeof(out->message), &n, "  at ", 5);
        put(out->message, sizeof(out->message), &n, culprit, LINE_MAX_CHARS);
    }
    const char *last = api_json_str(issue, "lastSeen");
    char stamp[40];
    if (id_text(cJSON_GetObjectItemCaseSensitive(issue, "lastSeen"), stamp, sizeof(stamp)) < 0)
        stamp[0] = '\0';
    snprintf(out->dedup_key, sizeof(out->dedup_key), "%s:%s%s%s", out->issue_id, action,
             stamp[0] ? ":" : "", stamp);
    const char *url = api_json_str(issue, "web_url");
    if (!url)
        url = api_json_str(issue, "permalink");
    out->a.state = st;
    out->a.title = title && *title ? title : (culprit && *culprit ? culprit : "Sentry issue");
    out->a.severity = api_json_str(issue, "level");
    out->a.url = url;
    out->a.occurred_at = !strcmp(action, "created") ? sentry_time(api_json_str(issue, "firstSeen"))
                         : st == ALERT_FIRING       ? sentry_time(last)
                                                    : 0;
    out->a.raw = issue;
    return 1;
}

static int from_error(const char *action, const cJSON *e, sentry_alert *out, char *err,
                      size_t errlen)
{
    char event_id[72];
    if (!cJSON_IsObject(e) ||
        id_text(cJSON_GetObjectItemCaseSensitive(e, "issue_id"), out->issue_id,
                sizeof(out->issue_id)) < 0) {
        snprintf(err, errlen, "data.error.issue_id is missing or not an id");
        return -1;
    }
    if (id_text(cJSON_GetObjectItemCaseSensitive(e, "event_id"), event_id, sizeof(event_id)) < 0) {
        snprintf(err, errlen, "data.error.event_id is missing or not an id");
        return -1;
    }
    if (strcmp(action, "created"))
        return 0; /* Sentry documents "created" only */
    char pbuf[32];
    const char *svc = scalar(cJSON_GetObjectItemCaseSensitive(e, "project"), pbuf, sizeof(pbuf));
    size_t n = 0;
    put(out->service, sizeof(out->service), &n, svc ? svc : "", sizeof(out->service));
    n = sentry_stack_excerpt(cJSON_GetObjectItemCaseSensitive(e, "exception"), out->message,
                             sizeof(out->message), SENTRY_EXCERPT_FRAMES);
    const char *culprit = api_json_str(e, "culprit");
    if (n == 0 && culprit && *culprit) {
        put(out->message, sizeof(out->message), &n, "  at ", 5);
        put(out->message, sizeof(out->message), &n, culprit, LINE_MAX_CHARS);
    }
    snprintf(out->dedup_key, sizeof(out->dedup_key), "%s:error.%s:%s", out->issue_id, action,
             event_id);
    const char *title = api_json_str(e, "title");
    out->a.state = ALERT_FIRING;
    out->a.title = title && *title ? title : (culprit && *culprit ? culprit : "Sentry error");
    out->a.severity = api_json_str(e, "level");
    out->a.url = api_json_str(e, "web_url");
    out->a.occurred_at = sentry_time(api_json_str(e, "datetime"));
    out->a.raw = e;
    return 1;
}

int sentry_alert_from_payload(const char *resource, const char *action, const cJSON *body,
                              sentry_alert *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(body, "data");
    if (!resource || !action || !*action || !cJSON_IsObject(data)) {
        snprintf(err, errlen, "action and data are required");
        return -1;
    }
    out->a.source = SENTRY_ID;
    int rc;
    if (!strcmp(resource, "issue"))
        rc = from_issue(action, cJSON_GetObjectItemCaseSensitive(data, "issue"), out, err, errlen);
    else if (!strcmp(resource, "error"))
        rc = from_error(action, cJSON_GetObjectItemCaseSensitive(data, "error"), out, err, errlen);
    else
        return 0;
    if (rc <= 0)
        return rc;
    out->a.dedup_key = out->dedup_key;
    out->a.source_alert_id = out->issue_id;
    out->a.fingerprint = out->issue_id;
    out->a.service = out->service;
    out->a.message = out->message[0] ? out->message : NULL;
    return 1;
}
