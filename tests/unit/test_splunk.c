/* test_splunk.c — the Splunk connector's search logic
 * (server/connectors/splunk_search.c): the SPL a query becomes, Splunk time
 * modifiers, and the parser of search/jobs/export's JSON stream (one object
 * per line, in Splunk's documented output_mode=json shape) fed in every way
 * the network can cut it, with its caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "splunk_search.h"

/* ---- SPL ------------------------------------------------------------------------------ */

static void expect_spl(const char *query, const char *want)
{
    char *s = splunk_spl(query);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void test_spl_prefix(void **state)
{
    (void)state;
    expect_spl("index=main error", "search index=main error");
    expect_spl("  index=main", "search index=main");                 /* leading blanks dropped */
    expect_spl("search index=main", "search index=main");            /* already a search */
    expect_spl("SEARCH index=main", "SEARCH index=main");            /* commands are case-insensitive */
    expect_spl("search", "search");
    expect_spl("| metadata type=sourcetypes", "| metadata type=sourcetypes"); /* generating */
    expect_spl("|tstats count where index=*", "|tstats count where index=*");
    expect_spl("searchable=1", "search searchable=1");               /* a word, not the command */
    expect_spl("index=a\n| stats count by host", "search index=a\n| stats count by host");
    expect_spl("error\tcode=5", "search error\tcode=5");
}

static void test_spl_refused(void **state)
{
    (void)state;
    assert_null(splunk_spl(NULL));
    assert_null(splunk_spl(""));
    assert_null(splunk_spl("   \n "));
    assert_null(splunk_spl("index=main\x01"));
    assert_null(splunk_spl("index=main\x7f"));
    char *big = malloc(SPLUNK_SPL_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', SPLUNK_SPL_MAX);
    big[SPLUNK_SPL_MAX] = '\0';
    char *s = splunk_spl(big); /* exactly the cap: accepted */
    assert_non_null(s);
    free(s);
    big[SPLUNK_SPL_MAX] = 'a';
    big[SPLUNK_SPL_MAX + 1] = '\0';
    assert_null(splunk_spl(big));
    free(big);
}

static void test_time_modifiers(void **state)
{
    (void)state;
    const char *good[] = { "-24h", "-15m@m", "now", "@d", "1700000000", "2026-01-01T00:00:00",
                           "2026-01-01T00:00:00.000+00:00", "rt-5m", NULL };
    for (int i = 0; good[i]; i++)
        assert_true(splunk_time_ok(good[i]));
    const char *bad[] = { "", "-24h | delete", "now&x=1", "-1d\n", "a b", NULL };
    for (int i = 0; bad[i]; i++)
        assert_false(splunk_time_ok(bad[i]));
    assert_false(splunk_time_ok(NULL));
    char long_t[SPLUNK_TIME_MAX + 2];
    memset(long_t, '1', sizeof(long_t) - 1);
    long_t[sizeof(long_t) - 1] = '\0';
    assert_false(splunk_time_ok(long_t));
}

/* ---- the export stream ---------------------------------------------------------------- */

/* Splunk's export answer for three events: a preview row first (as a
 * transforming search sends), a message line, the final rows, lastrow. */
static const char STREAM3[] =
    "{\"preview\":true,\"offset\":0,\"result\":{\"count\":\"1\"}}\n"
    "{\"preview\":false,\"messages\":[{\"type\":\"INFO\",\"text\":\"Your timerange was "
    "substituted\"}]}\n"
    "{\"preview\":false,\"offset\":0,\"result\":{\"_raw\":\"first event\",\"host\":\"web-1\"}}\n"
    "{\"preview\":false,\"offset\":1,\"result\":{\"_raw\":\"second \\u00e9v\\u00e9nement\","
    "\"host\":\"web-2\"}}\r\n"
    "{\"preview\":false,\"offset\":2,\"lastrow\":true,\"result\":{\"_raw\":\"third\","
    "\"host\":\"web-3\"}}\n";

static const char *raw_at(const splunk_stream *s, int i)
{
    const cJSON *r = cJSON_GetArrayItem(s->results, i);
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(r, "_raw");
    return cJSON_IsString(raw) ? raw->valuestring : NULL;
}

static void check_stream3(const splunk_stream *s)
{
    assert_int_equal(s->nresults, 3);
    assert_int_equal(cJSON_GetArraySize(s->results), 3);
    assert_string_equal(raw_at(s, 0), "first event");
    assert_string_equal(raw_at(s, 1), "second \xc3\xa9v\xc3\xa9nement");
    assert_string_equal(raw_at(s, 2), "third");
    assert_true(s->last_row);
    assert_int_equal(s->cut, SPLUNK_CUT_NONE);
    assert_int_equal(cJSON_GetArraySize(s->messages), 1);
    const cJSON *m = cJSON_GetArrayItem(s->messages, 0);
    assert_string_equal(cJSON_GetObjectItem(m, "type")->valuestring, "INFO");
    assert_int_equal(s->skipped_lines, 0);
}

static void test_stream_whole(void **state)
{
    (void)state;
    splunk_stream s;
    splunk_stream_init(&s, 100, 1 << 20);
    assert_int_equal(splunk_stream_feed(&s, STREAM3, strlen(STREAM3)), 1); /* lastrow: stop */
    splunk_stream_finish(&s);
    check_stream3(&s);
    splunk_stream_free(&s);
}

/* Every chunk size from 1 byte up: a line cut anywhere (inside a key, a
 * \u escape, a UTF-8 sequence, between \r and \n) reads the same. */
static void test_stream_any_chunking(void **state)
{
    (void)state;
    size_t n = strlen(STREAM3);
    for (size_t chunk = 1; chunk <= 97; chunk++) {
        splunk_stream s;
        splunk_stream_init(&s, 100, 1 << 20);
        int stop = 0;
        for (size_t off = 0; off < n && !stop; off += chunk)
            stop = splunk_stream_feed(&s, STREAM3 + off, off + chunk > n ? n - off : chunk);
        assert_int_equal(stop, 1);
        splunk_stream_finish(&s);
        check_stream3(&s);
        splunk_stream_free(&s);
    }
}

static void test_stream_last_line_without_newline(void **state)
{
    (void)state;
    const char *data = "{\"preview\":false,\"offset\":0,\"result\":{\"_raw\":\"a\"}}\n"
                       "{\"preview\":false,\"offset\":1,\"result\":{\"_raw\":\"b\"}}";
    splunk_stream s;
    splunk_stream_init(&s, 100, 1 << 20);
    assert_int_equal(splunk_stream_feed(&s, data, strlen(data)), 0);
    assert_int_equal(s.nresults, 1); /* the second line may not be complete yet */
    splunk_stream_finish(&s);        /* the stream ended: it was */
    assert_int_equal(s.nresults, 2);
    assert_string_equal(raw_at(&s, 1), "b");
    splunk_stream_free(&s);
}

/* A stream cut mid-line (the peer went away, or a cap) leaves no half result. */
static void test_stream_truncated_line_dropped(void **state)
{
    (void)state;
    const char *data = "{\"preview\":false,\"offset\":0,\"result\":{\"_raw\":\"a\"}}\n"
                       "{\"preview\":false,\"offset\":1,\"result\":{\"_raw\":\"b";
    splunk_stream s;
    splunk_stream_init(&s, 100, 1 << 20);
    assert_int_equal(splunk_stream_feed(&s, data, strlen(data)), 0);
    splunk_stream_finish(&s); /* not JSON: skipped, counted */
    assert_int_equal(s.nresults, 1);
    assert_int_equal(s.skipped_lines, 1);
    splunk_stream_free(&s);
}

static void test_stream_garbage_and_blank_lines(void **state)
{
    (void)state;
    const char *data = "\n\n   \nnot json\n[1,2]\n\"str\"\n{\"preview\":false,\"result\":\"x\"}\n"
                       "{\"preview\":false,\"offset\":0,\"result\":{\"_raw\":\"ok\"}}\n";
    splunk_stream s;
    splunk_stream_init(&s, 100, 1 << 20);
    assert_int_equal(splunk_stream_feed(&s, data, strlen(data)), 0);
    splunk_stream_finish(&s);
    assert_int_equal(s.nresults, 1);
    assert_string_equal(raw_at(&s, 0), "ok");
    assert_int_equal(s.skipped_lines, 3); /* not an object: "not json", [1,2], "str" */
    splunk_stream_free(&s);
}

/* The results cap: max_results kept; one more arriving marks the answer cut. */
static void test_stream_results_cap(void **state)
{
    (void)state;
    splunk_stream s;
    splunk_stream_init(&s, 2, 1 << 20);
    char line[128];
    int stop = 0, fed = 0;
    for (int i = 0; i < 1000 && !stop; i++, fed++) {
        int n = snprintf(line, sizeof(line),
                         "{\"preview\":false,\"offset\":%d,\"result\":{\"_raw\":\"e%d\"}}\n", i, i);
        stop = splunk_stream_feed(&s, line, (size_t)n);
    }
    assert_int_equal(stop, 1);
    assert_int_equal(fed, 3); /* stopped at the first result over the cap */
    assert_int_equal(s.nresults, 2);
    assert_int_equal(s.cut, SPLUNK_CUT_RESULTS);
    assert_string_equal(splunk_cut_name(s.cut), "max_results");
    /* nothing more is taken after the cap */
    assert_int_equal(splunk_stream_feed(&s, line, strlen(line)), 1);
    assert_int_equal(s.nresults, 2);
    splunk_stream_free(&s);

    /* exactly max_results and then the end: complete, not cut */
    splunk_stream_init(&s, 3, 1 << 20);
    assert_int_equal(splunk_stream_feed(&s, STREAM3, strlen(STREAM3)), 1);
    splunk_stream_finish(&s);
    check_stream3(&s);
    splunk_stream_free(&s);
}

/* The bytes cap: reading stops there, whatever the line lengths; the line
 * the cap falls in is not half-kept. */
static void test_stream_bytes_cap(void **state)
{
    (void)state;
    const char *line = "{\"preview\":false,\"offset\":0,\"result\":{\"_raw\":\"0123456789\"}}\n";
    size_t ll = strlen(line);
    splunk_stream s;
    splunk_stream_init(&s, 1000, ll * 3 + ll / 2); /* room for 3.5 lines */
    int stop = 0, fed = 0;
    for (int i = 0; i < 100000 && !stop; i++, fed++)
        stop = splunk_stream_feed(&s, line, ll);
    assert_int_equal(stop, 1);
    assert_int_equal(fed, 4);
    assert_int_equal(s.nresults, 3);
    assert_int_equal(s.bytes, ll * 3 + ll / 2);
    assert_int_equal(s.cut, SPLUNK_CUT_BYTES);
    assert_string_equal(splunk_cut_name(s.cut), "max_bytes");
    splunk_stream_finish(&s); /* the partial line is not parsed after a cut */
    assert_int_equal(s.nresults, 3);
    splunk_stream_free(&s);

    /* one huge chunk is cut at the cap too */
    size_t big = ll * 50;
    char *buf = malloc(big);
    assert_non_null(buf);
    for (size_t k = 0; k < 50; k++)
        memcpy(buf + k * ll, line, ll);
    splunk_stream_init(&s, 1000, ll * 10);
    assert_int_equal(splunk_stream_feed(&s, buf, big), 1);
    assert_int_equal(s.nresults, 10);
    assert_int_equal(s.bytes, ll * 10);
    assert_int_equal(s.cut, SPLUNK_CUT_BYTES);
    splunk_stream_free(&s);
    free(buf);
}

/* A line longer than SPLUNK_LINE_MAX is dropped without being buffered whole;
 * the lines around it still count. */
static void test_stream_oversized_line(void **state)
{
    (void)state;
    splunk_stream s;
    splunk_stream_init(&s, 100, 8u << 20);
    const char *a = "{\"preview\":false,\"offset\":0,\"result\":{\"_raw\":\"before\"}}\n";
    assert_int_equal(splunk_stream_feed(&s, a, strlen(a)), 0);
    const char *head = "{\"preview\":false,\"offset\":1,\"result\":{\"_raw\":\"";
    assert_int_equal(splunk_stream_feed(&s, head, strlen(head)), 0);
    char chunk[4096];
    memset(chunk, 'x', sizeof(chunk));
    for (size_t k = 0; k < (SPLUNK_LINE_MAX / sizeof(chunk)) + 4; k++)
        assert_int_equal(splunk_stream_feed(&s, chunk, sizeof(chunk)), 0);
    assert_true(s.cap <= 2 * (size_t)SPLUNK_LINE_MAX); /* never grew with the line */
    const char *tail = "\"}}\n{\"preview\":false,\"offset\":2,\"result\":{\"_raw\":\"after\"}}\n";
    assert_int_equal(splunk_stream_feed(&s, tail, strlen(tail)), 0);
    splunk_stream_finish(&s);
    assert_int_equal(s.nresults, 2);
    assert_string_equal(raw_at(&s, 0), "before");
    assert_string_equal(raw_at(&s, 1), "after");
    assert_int_equal(s.skipped_lines, 1);
    splunk_stream_free(&s);
}

/* "results" arrays (older json output) and messages made safe. */
static void test_stream_results_array_and_messages(void **state)
{
    (void)state;
    const char *data =
        "{\"preview\":false,\"init_offset\":0,\"messages\":[{\"type\":\"WARN\",\"text\":"
        "\"line1\\nline2\\u0007\"},{\"type\":\"<b>bad</b>\",\"text\":\"t\"},{\"type\":\"X\"}],"
        "\"results\":[{\"_raw\":\"r1\"},5,{\"_raw\":\"r2\"}]}\n";
    splunk_stream s;
    splunk_stream_init(&s, 100, 1 << 20);
    assert_int_equal(splunk_stream_feed(&s, data, strlen(data)), 0);
    assert_int_equal(s.nresults, 2);
    assert_string_equal(raw_at(&s, 1), "r2");
    assert_int_equal(cJSON_GetArraySize(s.messages), 2); /* the one without text is dropped */
    const cJSON *m0 = cJSON_GetArrayItem(s.messages, 0), *m1 = cJSON_GetArrayItem(s.messages, 1);
    assert_string_equal(cJSON_GetObjectItem(m0, "text")->valuestring, "line1 line2 ");
    assert_string_equal(cJSON_GetObjectItem(m1, "type")->valuestring, "bbadb");
    splunk_stream_free(&s);

    /* an error answer's body (HTTP 400 to a bad search) */
    splunk_stream_init(&s, 10, 1024);
    const char *err = "{\"messages\":[{\"type\":\"FATAL\",\"text\":\"Unknown search command 'frob'.\"}]}";
    assert_int_equal(splunk_messages_from(&s, err, strlen(err)), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(s.messages, 0), "text")->valuestring,
                        "Unknown search command 'frob'.");
    assert_int_equal(splunk_messages_from(&s, "<html>", 6), 0);
    assert_int_equal(splunk_messages_from(&s, NULL, 0), 0);
    splunk_stream_free(&s);

    /* at most SPLUNK_MAX_MESSAGES kept, each at most SPLUNK_MESSAGE_TEXT_MAX bytes */
    splunk_stream_init(&s, 10, 1 << 20);
    char big[SPLUNK_MESSAGE_TEXT_MAX * 2 + 64];
    int k = snprintf(big, sizeof(big), "{\"messages\":[");
    for (int i = 0; i < SPLUNK_MAX_MESSAGES + 5; i++) {
        const char *sep = i ? "," : "";
        if (i == 0) {
            k += snprintf(big + k, sizeof(big) - (size_t)k, "{\"type\":\"INFO\",\"text\":\"");
            memset(big + k, 'y', SPLUNK_MESSAGE_TEXT_MAX + 100);
            k += SPLUNK_MESSAGE_TEXT_MAX + 100;
            k += snprintf(big + k, sizeof(big) - (size_t)k, "\"}");
        } else {
            k += snprintf(big + k, sizeof(big) - (size_t)k, "%s{\"text\":\"m\"}", sep);
        }
    }
    k += snprintf(big + k, sizeof(big) - (size_t)k, "]}\n");
    assert_int_equal(splunk_stream_feed(&s, big, (size_t)k), 0);
    assert_int_equal(cJSON_GetArraySize(s.messages), SPLUNK_MAX_MESSAGES);
    assert_int_equal(strlen(cJSON_GetObjectItem(cJSON_GetArrayItem(s.messages, 0), "text")->valuestring),
                     SPLUNK_MESSAGE_TEXT_MAX);
    splunk_stream_free(&s);
}

/* ---- searches in progress ----------------------------------------------------------- */

/* Under the global bound every organization gets its place, however many
 * organizations search at once (the per-org table had 64 places while the
 * global bound goes to 256: a 65th organization was refused under it). */
static void test_search_places_per_org_and_in_all(void **state)
{
    (void)state;
    const int n = SPLUNK_SEARCH_CONCURRENT_CAP;
    char org[32];
    for (int i = 0; i < n; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        assert_int_equal(splunk_search_take(org, n, 1), 0);
    }
    assert_int_equal(splunk_search_take("org-new", n, 1), -1); /* the global bound */
    assert_int_equal(splunk_search_take("org-7", n + 1, 1), -1); /* org-7's own bound */
    splunk_search_give("org-7");
    assert_int_equal(splunk_search_take("org-new", n, 1), 0); /* org-7's place freed */
    assert_int_equal(splunk_search_take("org-7", n, 1), -1);  /* the global bound again */
    splunk_search_give("org-new");
    for (int i = 0; i < n; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        if (i != 7)
            splunk_search_give(org);
    }
    /* all given back: per-org bound of 2, global of 3 */
    assert_int_equal(splunk_search_take("a", 3, 2), 0);
    assert_int_equal(splunk_search_take("a", 3, 2), 0);
    assert_int_equal(splunk_search_take("a", 3, 2), -1);
    assert_int_equal(splunk_search_take("b", 3, 2), 0);
    assert_int_equal(splunk_search_take("c", 3, 2), -1);
    splunk_search_give("a");
    splunk_search_give("a");
    splunk_search_give("b");
    splunk_search_give("never-took"); /* nothing to give: no effect */
    assert_int_equal(splunk_search_take("c", 1, 1), 0);
    assert_int_equal(splunk_search_take("d", 1, 1), -1);
    splunk_search_give("c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spl_prefix),
        cmocka_unit_test(test_spl_refused),
        cmocka_unit_test(test_time_modifiers),
        cmocka_unit_test(test_stream_whole),
        cmocka_unit_test(test_stream_any_chunking),
        cmocka_unit_test(test_stream_last_line_without_newline),
        cmocka_unit_test(test_stream_truncated_line_dropped),
        cmocka_unit_test(test_stream_garbage_and_blank_lines),
        cmocka_unit_test(test_stream_results_cap),
        cmocka_unit_test(test_stream_bytes_cap),
        cmocka_unit_test(test_stream_oversized_line),
        cmocka_unit_test(test_stream_results_array_and_messages),
        cmocka_unit_test(test_search_places_per_org_and_in_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
