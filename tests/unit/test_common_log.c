/* test_common_log.c — leveled one-line logging (common/log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

/* Captures what the logger writes to stderr. */
static int saved_fd = -1;
static int pipe_rd = -1;

static void capture_start(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    saved_fd = dup(STDERR_FILENO);
    assert_true(saved_fd >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    pipe_rd = p[0];
}

/* Returns the captured text (malloc'd). */
static char *capture_end(void)
{
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    char *out = calloc(1, 65536 + 1);
    assert_non_null(out);
    ssize_t n = read(pipe_rd, out, 65536);
    close(pipe_rd);
    if (n < 0)
        n = 0;
    out[n] = '\0';
    return out;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A reader that stopped reading: with log_never_block the call returns at
 * once (alarm: a hang would kill the test, not pass it), the line is
 * counted as dropped, and the first line after the pipe is read again is
 * led by one that says how many were dropped. */
static void test_never_block_drops_and_reports(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 16384) >= 16384);
    /* Fill it: writes that would block now fail instead, then blocking again. */
    int fl = fcntl(p[1], F_GETFL);
    assert_int_equal(fcntl(p[1], F_SETFL, fl | O_NONBLOCK), 0);
    char fill[512];
    memset(fill, 'x', sizeof(fill));
    size_t filled = 0;
    ssize_t w;
    while ((w = write(p[1], fill, sizeof(fill))) > 0)
        filled += (size_t)w;
    assert_true(filled > 0);
    assert_int_equal(fcntl(p[1], F_SETFL, fl), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);

    unsigned long long before = log_lines_dropped();
    log_never_block(1);
    alarm(30);
    log_info("lost one");
    log_warn("lost two");
    alarm(0);
    assert_int_equal(log_lines_dropped() - before, 2);

    /* Read what was there; the next line gets through after the report. */
    char *got = calloc(1, 65536 + 1);
    assert_non_null(got);
    size_t n = 0;
    while (n < filled) {
        ssize_t r = read(p[0], got, 65536);
        assert_true(r > 0);
        n += (size_t)r;
    }
    log_info("after the gap");
    log_info("and the next");
    dup2(saved, STDERR_FILENO);
    close(saved);
    log_never_block(0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    ssize_t r = read(p[0], got, 65536);
    close(p[0]);
    assert_true(r > 0);
    got[r] = '\0';
    assert_int_equal(count_lines(got), 3);
    const char *rep = strstr(got, "2 log line(s) dropped: stderr was not being read dropped=2\n");
    const char *after = strstr(got, "after the gap");
    assert_non_null(rep);
    assert_non_null(after);
    assert_true(rep < after);
    assert_non_null(strstr(got, " warn  ut: 2 log line(s)"));
    assert_null(strstr(got, "lost"));
    assert_int_equal(log_lines_dropped() - before, 2);
    free(got);
}

static int setup(void **state)
{
    return log_setup("ut", "info", "text");
}

static void test_level_names(void **state)
{
    assert_int_equal(log_level_from_name("debug"), LOG_DEBUG);
    assert_int_equal(log_level_from_name("INFO"), LOG_INFO);
    assert_int_equal(log_level_from_name("warn"), LOG_WARN);
    assert_int_equal(log_level_from_name("warning"), LOG_WARN);
    assert_int_equal(log_level_from_name("Error"), LOG_ERROR);
    assert_int_equal(log_level_from_name("trace"), -1);
    assert_int_equal(log_level_from_name(""), -1);
    assert_int_equal(log_level_from_name(NULL), -1);
    assert_int_equal(log_setup(NULL, "loud", NULL), -1);
    assert_int_equal(log_setup(NULL, NULL, "xml"), -1);
    assert_int_equal(log_setup(NULL, NULL, NULL), 0);
}

static void test_level_filter(void **state)
{
    assert_int_equal(log_setup("ut", "warn", "text"), 0);
    assert_false(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    capture_start();
    log_debug("dbg %d", 1);
    log_info("inf %d", 2);
    log_warn("wrn %d", 3);
    log_error("err %d", 4);
    char *out = capture_end();
    assert_null(strstr(out, "dbg"));
    assert_null(strstr(out, "inf 2"));
    assert_non_null(strstr(out, "wrn 3"));
    assert_non_null(strstr(out, "err 4"));
    assert_int_equal(count_lines(out), 2);
    free(out);

    assert_int_equal(log_setup(NULL, "debug", NULL), 0);
    capture_start();
    log_debug("dbg %s", "on");
    out = capture_end();
    assert_non_null(strstr(out, "dbg on"));
    free(out);
}

static void test_text_format(void **state)
{
    assert_int_equal(log_setup("agent", "info", "text"), 0);
    capture_start();
    log_info("hello\nworld\r!");
    char *out = capture_end();
    /* One line: "<ts> info  agent: hello world !" */
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, " info "));
    assert_non_null(strstr(out, "agent: hello world !\n"));
    assert_int_equal(out[4], '-');
    assert_int_equal(out[10], 'T');
    assert_non_null(strchr(out, 'Z'));
    free(out);
}

static void test_json_format(void **state)
{
    assert_int_equal(log_setup("server", "info", "json"), 0);
    capture_start();
    log_warn("quote \" backslash \\ tab \t ctl \x01 nl \n end");
    char *out = capture_end();
    assert_int_equal(count_lines(out), 1);
    cJSON *o = cJSON_Parse(out);
    if (!o)
        fail_msg("not JSON: %s", out);
    assert_string_equal(cJSON_GetObjectItem(o, "level")->valuestring, "warn");
    assert_string_equal(cJSON_GetObjectItem(o, "component")->valuestring, "server");
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring,
                        "quote \" backslash \\ tab \t ctl \x01 nl   end");
    assert_true(cJSON_IsString(cJSON_GetObjectItem(o, "ts")));
    cJSON_Delete(o);
    free(out);
    log_setup(NULL, NULL, "text");
}

static void test_long_messages(void **state)
{
    char *big = malloc(10000);
    assert_non_null(big);
    /* Every char needs escaping: the line is cut but stays valid JSON. */
    memset(big, '"', 9999);
    big[9999] = '\0';
    assert_int_equal(log_setup(NULL, "info", "json"), 0);
    capture_start();
    log_info("%s", big);
    char *out = capture_end();
    assert_int_equal(count_lines(out), 1);
    cJSON *o = cJSON_Parse(out);
    if (!o)
        fail_msg("long line is not JSON (%zu bytes)", strlen(out));
    const char *msg = cJSON_GetObjectItem(o, "msg")->valuestring;
    assert_true(strlen(msg) > 1000);
    cJSON_Delete(o);
    free(out);

    memset(big, 1, 9999);
    capture_start();
    log_info("%s", big);
    out = capture_end();
    o = cJSON_Parse(out);
    assert_non_null(o);
    cJSON_Delete(o);
    free(out);

    /* Text mode: cut, still one line. */
    log_setup(NULL, NULL, "text");
    memset(big, 'x', 9999);
    capture_start();
    log_error("%s", big);
    out = capture_end();
    assert_int_equal(count_lines(out), 1);
    assert_true(strlen(out) < 4096);
    free(out);
    free(big);
}

/* JSON lines are valid UTF-8 whatever the text holds: a stray byte, an
 * overlong or cut sequence becomes U+FFFD, a valid character is kept, and a
 * message cut at its buffer's end mid-character is not left with half of
 * it (log pipelines drop or choke on lines that are not UTF-8). */
static void test_json_stays_utf8(void **state)
{
    (void)state;
    assert_int_equal(log_setup(NULL, "info", "json"), 0);
    log_field f[] = { { .key = "peer", .str = "\xc0\xaf-\xe2\x82" } };
    capture_start();
    log_fields(LOG_INFO, "bad \xff ok caf\xc3\xa9 cut \xe2\x82", f, 1);
    char *out = capture_end();
    size_t n = strlen(out);
    assert_true(n > 0 && out[n - 1] == '\n');
    assert_true(utf8_valid(out, n));
    cJSON *o = cJSON_Parse(out);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring,
                        "bad \xef\xbf\xbd ok caf\xc3\xa9 cut \xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(cJSON_GetObjectItem(o, "peer")->valuestring,
                        "\xef\xbf\xbd\xef\xbf\xbd-\xef\xbf\xbd\xef\xbf\xbd");
    cJSON_Delete(o);
    free(out);

    /* 3,000 two-byte characters after one ASCII byte: the message buffer
     * (2,048) and the line (4,096) both end inside a character */
    char big[1 + 3000 * 2 + 1];
    big[0] = 'a';
    for (int i = 0; i < 3000; i++)
        memcpy(big + 1 + 2 * i, "\xc3\xa9", 2);
    big[sizeof(big) - 1] = '\0';
    capture_start();
    log_info("%s", big);
    out = capture_end();
    n = strlen(out);
    assert_int_equal(count_lines(out), 1);
    assert_true(utf8_valid(out, n));
    o = cJSON_Parse(out);
    assert_non_null(o);
    cJSON_Delete(o);
    free(out);
}

/* Structured fields: JSON properties beside msg (numbers as numbers), or
 * key=value after the text message, quoted so that a value cannot forge
 * another field. */
static void test_fields(void **state)
{
    assert_int_equal(log_setup("server", "info", "json"), 0);
    log_field f[] = { LOG_STR("route", "/api/x/{id}"), LOG_NUM("status", 404),
                      LOG_STR("odd", "a\"b\nc"), LOG_STR("none", NULL) };
    capture_start();
    log_fields(LOG_INFO, "request", f, 4);
    char *out = capture_end();
    assert_int_equal(count_lines(out), 1);
    cJSON *o = cJSON_Parse(out);
    if (!o)
        fail_msg("not JSON: %s", out);
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring, "request");
    assert_string_equal(cJSON_GetObjectItem(o, "route")->valuestring, "/api/x/{id}");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "status")));
    assert_int_equal(cJSON_GetObjectItem(o, "status")->valueint, 404);
    assert_string_equal(cJSON_GetObjectItem(o, "odd")->valuestring, "a\"b\nc");
    assert_string_equal(cJSON_GetObjectItem(o, "none")->valuestring, "");
    cJSON_Delete(o);
    free(out);

    log_setup(NULL, NULL, "text");
    log_field g[] = { LOG_STR("route", "/health"), LOG_NUM("status", 200),
                      LOG_STR("peer", "x status=500"), LOG_STR("q", "a\"b") };
    capture_start();
    log_fields(LOG_INFO, "request", g, 4);
    out = capture_end();
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "request route=/health status=200 peer=\"x status=500\" "
                                "q=\"a\\\"b\"\n"));
    free(out);

    /* Many long values: cut, but one line of valid JSON. */
    char big[3000];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    log_field h[] = { LOG_STR("a", big), LOG_STR("b", big), LOG_NUM("c", 1) };
    assert_int_equal(log_setup(NULL, NULL, "json"), 0);
    capture_start();
    log_fields(LOG_WARN, "long", h, 3);
    out = capture_end();
    assert_int_equal(count_lines(out), 1);
    o = cJSON_Parse(out);
    assert_non_null(o);
    cJSON_Delete(o);
    free(out);
    log_setup(NULL, NULL, "text");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_level_names, setup),
        cmocka_unit_test_setup(test_level_filter, setup),
        cmocka_unit_test_setup(test_text_format, setup),
        cmocka_unit_test_setup(test_json_format, setup),
        cmocka_unit_test_setup(test_long_messages, setup),
        cmocka_unit_test_setup(test_json_stays_utf8, setup),
        cmocka_unit_test_setup(test_fields, setup),
        cmocka_unit_test_setup(test_never_block_drops_and_reports, setup),
    };
    return cmocka_run_group_tests_name("common_log", tests, NULL, NULL);
}
