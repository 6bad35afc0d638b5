/* splunk_search.c — SPL, the export stream parser and the export call; see
 * splunk_search.h.
 *
 * Splunk's export endpoint answers a search with one JSON object per line,
 * written as results are found (REST API Reference, search/jobs/export,
 * output_mode=json):
 *   {"preview":false,"offset":0,"result":{"_raw":"…","_time":"…",…}}
 *   {"preview":false,"offset":1,"lastrow":true,"result":{…}}
 *   {"preview":false,"messages":[{"type":"FATAL","text":"…"}]}
 * Preview rows (a transforming search's partial answers) are superseded by
 * the final rows and are not kept.  The stream can be endless (a real-time
 * search) or huge: it is read through http_client's on_body with caps on
 * results, bytes and time, and only the current line is ever buffered. */
#include "splunk_search.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kit_call.h"
#include "secret.h"
#include "store.h"
#include "utf8.h"

/* ---- SPL ------------------------------------------------------------------------------ */

/* 1 if q starts with the word w followed by white space or its end. */
static int starts_with_word(const char *q, const char *w)
{
    size_t n = strlen(w);
    return !strncasecmp(q, w, n) && (q[n] == '\0' || isspace((unsigned char)q[n]));
}

char *splunk_spl(const char *query)
{
    if (!query)
        return NULL;
    while (*query && isspace((unsigned char)*query))
        query++;
    size_t n = strlen(query);
    if (n == 0 || n > SPLUNK_SPL_MAX)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)query; *p; p++)
        if ((*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') || *p == 0x7f)
            return NULL;
    int as_is = query[0] == '|' || starts_with_word(query, "search");
    size_t total = n + (as_is ? 0 : 7) + 1;
    char *out = malloc(total);
    if (out)
        snprintf(out, total, "%s%s", as_is ? "" : "search ", query);
    return out;
}

int splunk_time_ok(const char *t)
{
    if (!t)
        return 0;
    size_t n = strlen(t);
    if (n == 0 || n > SPLUNK_TIME_MAX)
        return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("@:+._-", *p))
            return 0;
    return 1;
}

const char *splunk_cut_name(splunk_cut c)
{
    switch (c) {
    case SPLUNK_CUT_RESULTS:
        return "max_results";
    case SPLUNK_CUT_BYTES:
        return "max_bytes";
    case SPLUNK_CUT_TIME:
        return "timeout";
    default:
        return NULL;
    }
}

/* ---- the stream -------------------------------------------------------------------------- */

void splunk_stream_init(splunk_stream *s, size_t max_results, size_t max_bytes)
{
    memset(s, 0, sizeof(*s));
    s->max_results = max_results;
    s->max_bytes = max_bytes;
    s->results = cJSON_CreateArray();
    s->messages = cJSON_CreateArray();
    if (!s->results || !s->messages)
        s->oom = 1;
}

void splunk_stream_free(splunk_stream *s)
{
    if (!s)
        return;
    cJSON_Delete(s->results);
    cJSON_Delete(s->messages);
    /* the partial line may hold the user's log data: wiped like any answer */
    if (s->line)
        secret_free_n(s->line, s->cap);
    memset(s, 0, sizeof(*s));
}

/* Splunk's message text made safe to hand on: valid UTF-8, no control
 * characters, at most SPLUNK_MESSAGE_TEXT_MAX bytes. */
static char *message_text(const char *t)
{
    size_t n = strlen(t);
    if (n > SPLUNK_MESSAGE_TEXT_MAX)
        n = utf8_complete_prefix(t, SPLUNK_MESSAGE_TEXT_MAX);
    size_t outlen = 0;
    char *out = utf8_sanitize(t, n, &outlen);
    if (!out)
        return NULL;
    for (size_t i = 0; i < outlen; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = ' ';
    return out;
}

static void add_messages(splunk_stream *s, const cJSON *arr)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, arr)
    {
        if (cJSON_GetArraySize(s->messages) >= SPLUNK_MAX_MESSAGES)
            return;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(m, "text");
        if (!cJSON_IsString(text))
            continue;
        char ty[17];
        kit_code_text(cJSON_IsString(type) ? type->valuestring : "INFO", ty, sizeof(ty));
        char *tx = message_text(text->valuestring);
        cJSON *o = cJSON_CreateObject();
        if (!tx || !o || !cJSON_AddStringToObject(o, "type", ty[0] ? ty : "INFO") ||
            !cJSON_AddStringToObject(o, "text", tx)) {
            free(tx);
            cJSON_Delete(o);
            s->oom = 1;
            return;
        }
        free(tx);
        cJSON_AddItemToArray(s->messages, o);
    }
}

int splunk_messages_from(splunk_stream *s, const char *body, size_t len)
{
    if (!body || !len || !s->messages)
        return 0;
    cJSON *j = cJSON_ParseWithLength(body, len);
    int before = cJSON_GetArraySize(s->messages);
    if (cJSON_IsObject(j))
        add_messages(s, cJSON_GetObjectItemCaseSensitive(j, "messages"));
    cJSON_Delete(j);
    return cJSON_GetArraySize(s->messages) > before;
}

/* Keeps one result; 1 when reading should stop. */
static int add_result(splunk_stream *s, cJSON *parent, cJSON *item)
{
    if (s->nresults >= s->max_results) {
        s->cut = SPLUNK_CUT_RESULTS; /* one more exists: the answer is truncated */
        return 1;
    }
    cJSON_DetachItemViaPointer(parent, item);
    cJSON_AddItemToArray(s->results, item);
    s->nresults++;
    return 0;
}

/* One complete line (without its newline); 1 when reading should stop. */
static int parse_line(splunk_stream *s, const char *p, size_t n)
{
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    while (n && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    if (!n)
        return 0;
    cJSON *j = cJSON_ParseWithLength(p, n);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        s->skipped_lines++;
        return 0;
    }
    int stop = 0;
    add_messages(s, cJSON_GetObjectItemCaseSensitive(j, "messages"));
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "preview"))) {
        cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
        cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "results");
        if (cJSON_IsObject(r)) {
            stop = add_result(s, j, r);
        } else if (cJSON_IsArray(rs)) {
            cJSON *it = rs->child;
            while (it && !stop) {
                cJSON *next = it->next;
                if (cJSON_IsObject(it))
                    stop = add_result(s, rs, it);
                it = next;
            }
        }
        if (!stop && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "lastrow"))) {
            s->last_row = 1;
            stop = 1;
        }
    }
    cJSON_Delete(j);
    return stop || s->oom;
}

/* Appends to the partial line (grown by copy-and-wipe, as http_client does
 * for answers: log lines may carry secrets of the user's own). */
static int line_append(splunk_stream *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < s->len + n + 1)
            ncap *= 2;
        char *nl = malloc(ncap);
        if (!nl) {
            s->oom = 1;
            return -1;
        }
        if (s->line) {
            memcpy(nl, s->line, s->len);
            secret_free_n(s->line, s->cap);
        }
        s->line = nl;
        s->cap = ncap;
    }
    memcpy(s->line + s->len, p, n);
    s->len += n;
    s->line[s->len] = '\0';
    return 0;
}

int splunk_stream_feed(splunk_stream *s, const char *data, size_t n)
{
    if (s->oom || s->cut || s->last_row)
        return 1;
    int over = 0;
    if (n > s->max_bytes - s->bytes) {
        /* what fits is read; the line the cap falls in is dropped */
        n = s->max_bytes - s->bytes;
        over = 1;
    }
    s->bytes += n;
    while (n) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (!s->skipping) {
            if (s->len + take > SPLUNK_LINE_MAX) {
                s->skipping = 1; /* too long to be a result we keep */
                s->skipped_lines++;
                s->len = 0;
            } else if (line_append(s, data, take) < 0) {
                return 1;
            }
        }
        if (!nl)
            break;
        if (!s->skipping && parse_line(s, s->line, s->len))
            return 1;
        s->skipping = 0;
        s->len = 0;
        data += take + 1;
        n -= take + 1;
    }
    if (over) {
        s->cut = SPLUNK_CUT_BYTES;
        return 1;
    }
    return 0;
}

void splunk_stream_finish(splunk_stream *s)
{
    if (!s->oom && !s->cut && !s->last_row && !s->skipping && s->len)
        parse_line(s, s->line, s->len);
    s->len = 0;
}

/* ---- the call ----------------------------------------------------------------------------- */

static int on_chunk(const char *data, size_t len, void *ud)
{
    return splunk_stream_feed(ud, data, len);
}

int splunk_export(const splunk_export_req *q, splunk_stream *s, http_client_resp *out)
{
    memset(out, 0, sizeof(*out));
    char *url = kit_url(q->instance_url, "/services/search/jobs/export");
    if (!url || !kit_url_private(url)) {
        free(url);
        snprintf(out->err, sizeof(out->err), "the Splunk URL must be https:// (http only to loopback)");
        return out->code = AUR_E_INVALID;
    }
    const char *const pairs[] = { "search", q->spl, "output_mode", "json",
                                  "earliest_time", q->earliest, "latest_time", q->latest, NULL };
    char *form = http_client_form(pairs);
    char *auth = kit_bearer_header(q->token);
    if (!form || !auth) {
        free(url);
        secret_free(form);
        secret_free(auth);
        snprintf(out->err, sizeof(out->err), "out of memory");
        return out->code = AUR_E_INTERNAL;
    }
    const char *headers[] = { auth, "Accept: application/json",
                              "Content-Type: application/x-www-form-urlencoded", NULL };
    http_client_req r = { .method = "POST",
                          .url = url,
                          .headers = headers,
                          .body = form,
                          .body_len = strlen(form),
                          .timeout_ms = q->timeout_ms,
                          .cacert = q->cacert,
                          .max_response = 64 * 1024, /* an error answer */
                          .on_body = on_chunk,
                          .on_body_ud = s,
                          .allow_address = q->allow_address,
                          .allow_address_ud = q->allow_address_ud };
    int rc = http_client_do(&r, out);
    secret_free(auth);
    secret_free(form);
    free(url);
    int ok_status = out->status >= 200 && out->status < 300;
    if (rc == AUR_OK && ok_status) {
        if (!out->stopped)
            splunk_stream_finish(s);
        if (s->oom) {
            snprintf(out->err, sizeof(out->err), "out of memory");
            return out->code = AUR_E_INTERNAL;
        }
        return AUR_OK;
    }
    if (rc == AUR_E_TIMEOUT && ok_status && s->nresults > 0) {
        /* the results found in time are the answer, marked as cut */
        s->cut = SPLUNK_CUT_TIME;
        return out->code = AUR_OK;
    }
    if (rc == AUR_OK) {
        splunk_messages_from(s, out->body, out->len);
        if (out->status == 401 || out->status == 403)
            return out->code = AUR_E_DENIED;
        return out->code = out->status == 400 ? AUR_E_INVALID : AUR_E_UNAVAILABLE;
    }
    return rc;
}

/* ---- searches in progress ---------------------------------------------------------------- */

/* An organization holds a place only while it has a search running, and
 * each running search counts against SPLUNK_SEARCH_MAX_CONCURRENT: with as
 * many places as that bound can be, an organization under it always finds
 * one. */
#define SEARCH_ORG_SLOTS SPLUNK_SEARCH_CONCURRENT_CAP
static pthread_mutex_t g_search_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char org[STORE_ID_LEN];
    int running;
} g_search_orgs[SEARCH_ORG_SLOTS];
static int g_search_running;

int splunk_search_take(const char *org, long long max_all, long long max_org)
{
    int slot = -1, free_slot = -1, busy = 0;
    if (max_all > SPLUNK_SEARCH_CONCURRENT_CAP)
        max_all = SPLUNK_SEARCH_CONCURRENT_CAP;
    pthread_mutex_lock(&g_search_mu);
    for (int i = 0; i < SEARCH_ORG_SLOTS && slot < 0; i++) {
        if (g_search_orgs[i].running && !strcmp(g_search_orgs[i].org, org))
            slot = i;
        else if (!g_search_orgs[i].running && free_slot < 0)
            free_slot = i;
    }
    if (slot < 0 && free_slot >= 0) {
        slot = free_slot;
        snprintf(g_search_orgs[slot].org, sizeof(g_search_orgs[slot].org), "%s", org);
    }
    if (slot < 0 || g_search_running >= max_all || g_search_orgs[slot].running >= max_org) {
        busy = 1;
    } else {
        g_search_orgs[slot].running++;
        g_search_running++;
    }
    pthread_mutex_unlock(&g_search_mu);
    return busy ? -1 : 0;
}

void splunk_search_give(const char *org)
{
    pthread_mutex_lock(&g_search_mu);
    for (int i = 0; i < SEARCH_ORG_SLOTS; i++)
        if (g_search_orgs[i].running && !strcmp(g_search_orgs[i].org, org)) {
            g_search_orgs[i].running--;
            g_search_running--;
            break;
        }
    pthread_mutex_unlock(&g_search_mu);
}
