/* splunk_search.h — Splunk searches through the REST API's streaming export
 * endpoint (POST <instance>/services/search/jobs/export, output_mode=json),
 * read as it arrives with hard caps: the SPL a query becomes, the parser of
 * the export stream (one JSON object per line, cut anywhere by the network),
 * and the call.  The connector's routes are in splunk.c. */
#ifndef AURORA_SPLUNK_SEARCH_H
#define AURORA_SPLUNK_SEARCH_H

#include <stddef.h>

#include "http_client.h"

struct cJSON;

#define SPLUNK_SPL_MAX 8192          /* a query's length (bytes) */
#define SPLUNK_TIME_MAX 64           /* earliest_time / latest_time */
#define SPLUNK_LINE_MAX (256 * 1024) /* one line of the stream; a longer one is dropped */
#define SPLUNK_MAX_MESSAGES 20       /* Splunk's own messages kept per search */
#define SPLUNK_MESSAGE_TEXT_MAX 512

/* The SPL Splunk runs for a user's query: the query itself when it starts
 * with "|" (a generating command: "| metadata", "| tstats") or already with
 * the "search" command, else "search " + query (the export endpoint, like
 * every search endpoint, runs the text as a pipeline: a bare "index=main
 * error" is not a command).  Leading white space is dropped.  malloc'd;
 * NULL when the query is empty, longer than SPLUNK_SPL_MAX or holds a
 * control character other than tab, CR, LF (or when out of memory). */
char *splunk_spl(const char *query);

/* 1 if t is a time Splunk accepts as earliest_time / latest_time and that
 * is safe to forward: 1..SPLUNK_TIME_MAX characters of [A-Za-z0-9@:+._-]
 * ("-24h", "-15m@m", "now", "@d", epoch seconds, ISO 8601 without blanks). */
int splunk_time_ok(const char *t);

/* Why a stream was cut before its end. */
typedef enum {
    SPLUNK_CUT_NONE = 0,
    SPLUNK_CUT_RESULTS, /* max_results results kept and another one came */
    SPLUNK_CUT_BYTES,   /* max_bytes read */
    SPLUNK_CUT_TIME,    /* the time limit passed (set by splunk_export) */
} splunk_cut;

const char *splunk_cut_name(splunk_cut c); /* "max_results", "max_bytes", "timeout", NULL */

/* The export stream being read.  Lines are split wherever the chunks fall;
 * only the current partial line is buffered (at most SPLUNK_LINE_MAX). */
typedef struct {
    size_t max_results, max_bytes;
    struct cJSON *results;  /* array of the "result" objects (final rows only, no previews) */
    struct cJSON *messages; /* array of {type, text} (Splunk's INFO/WARN/ERROR/FATAL) */
    size_t nresults;
    size_t bytes;           /* bytes fed so far */
    splunk_cut cut;
    int last_row;           /* Splunk said "lastrow": the stream is complete */
    size_t skipped_lines;   /* not JSON objects, or longer than SPLUNK_LINE_MAX */
    int oom;
    char *line;             /* the partial line */
    size_t len, cap;
    int skipping;           /* the current line is too long: dropped up to its newline */
} splunk_stream;

void splunk_stream_init(splunk_stream *s, size_t max_results, size_t max_bytes);
/* Feeds the next n bytes.  0 to go on, 1 when reading should stop: a cap
 * was reached (s->cut), the last row came, or memory ran out (s->oom). */
int splunk_stream_feed(splunk_stream *s, const char *data, size_t n);
/* The stream ended normally: a last line without its newline is parsed. */
void splunk_stream_finish(splunk_stream *s);
void splunk_stream_free(splunk_stream *s);

/* Splunk's messages of an error answer ({"messages":[{"type","text"}]})
 * appended to s->messages; 1 if there was at least one. */
int splunk_messages_from(splunk_stream *s, const char *body, size_t len);

typedef struct {
    const char *instance_url; /* https://host:8089 (http only to loopback) */
    const char *token;        /* Bearer */
    const char *spl;          /* from splunk_spl */
    const char *earliest, *latest; /* NULL: Splunk's defaults */
    long timeout_ms;          /* the whole search, connect included */
    const char *cacert;       /* NULL: the server's default CA */
    int (*allow_address)(const struct sockaddr *sa, void *ud); /* as http_client_req */
    void *allow_address_ud;
} splunk_export_req;

/* Runs the search, results into s (initialised by the caller, with its
 * caps).  Returns AUR_OK when Splunk answered 2xx and the stream was read to
 * its end or to a cap — including the time limit once results came
 * (s->cut = SPLUNK_CUT_TIME) — else an aur_err with *out describing the
 * failure (status, os_errno, err; an error answer's body, whose messages
 * are also added to s).  AUR_E_INVALID: a URL that may not carry the token.
 * Release out with http_client_resp_free. */
int splunk_export(const splunk_export_req *q, splunk_stream *s, http_client_resp *out);

/* Searches in progress on this server: a search holds an outbound worker
 * (shared with every connector) for up to SPLUNK_SEARCH_TIMEOUT_MS, so they
 * are bounded in all (SPLUNK_SEARCH_MAX_CONCURRENT, at most
 * SPLUNK_SEARCH_CONCURRENT_CAP) and per organization
 * (SPLUNK_SEARCH_MAX_PER_ORG).  Every organization with a search running
 * has a place, however many there are under the global bound. */
#define SPLUNK_SEARCH_CONCURRENT_CAP 256
/* Takes a place for org: 0, or -1 when one of the bounds is reached. */
int splunk_search_take(const char *org, long long max_all, long long max_org);
/* Gives back a place splunk_search_take gave org. */
void splunk_search_give(const char *org);

#endif
