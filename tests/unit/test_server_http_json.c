/* test_server_http_json.c — request bodies as JSON (server/http.c:
 * http_json_body, json_text_has_nul): a NUL inside a string, raw or as
 * \u0000, is refused instead of silently cutting the string; nothing may
 * follow the object; no object names a member twice.  Error answers (http_resp_error) are UTF-8 JSON
 * whatever bytes they quote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "json_text.h"
#include "utf8.h"

/* Parses text (len bytes) as a request body; the cJSON tree or NULL, and the
 * response's status in *status (0 when untouched). */
static cJSON *parse(const char *text, size_t len, int *status)
{
    http_request req;
    http_response resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(buf_append(&req.body, text, len), 0);
    cJSON *o = http_json_body(&req, &resp);
    *status = resp.status;
    if (!o) {
        static const char want[] = "\"error_code\":\"BAD_REQUEST\"";
        assert_non_null(memmem(buf_head(&resp.body), buf_pending(&resp.body), want,
                               sizeof(want) - 1));
    }
    buf_free(&req.body);
    buf_free(&resp.body);
    return o;
}

static void expect_refused(const char *text, size_t len)
{
    int status;
    cJSON *o = parse(text, len, &status);
    if (o) {
        cJSON_Delete(o);
        fail_msg("accepted: %.*s", (int)len, text);
    }
    assert_int_equal(status, 400);
}

#define REFUSED(lit) expect_refused(lit, sizeof(lit) - 1)

static void test_nul_escape_refused(void **state)
{
    (void)state;
    REFUSED("{\"a\": \"x\\u0000y\"}");
    REFUSED("{\"a\": \"\\u0000\"}");
    REFUSED("{\"a\": [\"ok\", \"tail\\u0000\"]}");
    REFUSED("{\"a\\u0000b\": 1}");            /* in a key */
    REFUSED("{\"a\": {\"b\": \"\\\\\\u0000\"}}"); /* escaped backslash, then the escape */
    REFUSED("{\"a\": \"raw\0nul\"}");         /* a raw NUL byte */
    REFUSED("{\"a\": 1}\0");
}

static void test_text_that_only_looks_like_nul_accepted(void **state)
{
    (void)state;
    /* An escaped backslash followed by "u0000" is the 6 characters \u0000. */
    const char *t = "{\"a\": \"x\\\\u0000y\", \"c\": \"\\u0001\"}";
    int status;
    cJSON *o = parse(t, strlen(t), &status);
    assert_non_null(o);
    assert_int_equal(status, 0);
    assert_string_equal(cJSON_GetObjectItem(o, "a")->valuestring, "x\\u0000y");
    cJSON_Delete(o);
    /* "\u00001" is NUL then '1': refused, the scanner looks at 4 hex digits. */
    assert_int_equal(json_text_has_nul("\"\\u00001\"", 9), 1);
    assert_int_equal(json_text_has_nul("\"\\u0001\"", 8), 0);
    assert_int_equal(json_text_has_nul("\"\\\\u0000\"", 9), 0);
    /* outside a string there is no escape to decode */
    assert_int_equal(json_text_has_nul("\\u0000", 6), 0);
    /* a quote escaped inside a string does not end it */
    assert_int_equal(json_text_has_nul("\"\\\"\\u0000\"", 10), 1);
    /* truncated escapes */
    assert_int_equal(json_text_has_nul("\"\\u000", 6), 0);
    assert_int_equal(json_text_has_nul("\"\\", 2), 0);
}

static void test_one_object_only(void **state)
{
    (void)state;
    REFUSED("{\"a\": 1} {\"b\": 2}");
    REFUSED("{\"a\": 1}garbage");
    REFUSED("[1, 2]");
    REFUSED("\"str\"");
    REFUSED("");
    int status;
    const char *t = " \r\n{\"a\": 1}\t\r\n ";
    cJSON *o = parse(t, strlen(t), &status);
    assert_non_null(o);
    cJSON_Delete(o);
}

/* An error message quoting what the client sent (lws %-decodes the path:
 * "/x/%FF" holds the byte 0xFF) is still UTF-8 JSON: a byte that is not
 * UTF-8 there made the whole answer unreadable to a strict parser. */
static void test_error_quoting_bytes_that_are_not_utf8(void **state)
{
    (void)state;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    http_resp_error(&resp, 404, "CLUSTER_NOT_FOUND", "cluster %s not found", "c-\xff\xfe(\xc3");
    assert_int_equal(resp.status, 404);
    assert_true(utf8_valid(buf_head(&resp.body), buf_pending(&resp.body)));
    cJSON *o = cJSON_ParseWithLength(buf_head(&resp.body), buf_pending(&resp.body));
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring,
                        "cluster c-\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd not found");
    assert_string_equal(cJSON_GetObjectItem(o, "error_code")->valuestring, "CLUSTER_NOT_FOUND");
    cJSON_Delete(o);
    buf_free(&resp.body);
    /* valid text (non-ASCII too) goes as it is */
    memset(&resp, 0, sizeof(resp));
    http_resp_error(&resp, 400, "BAD_REQUEST", "name %s", "caf\xc3\xa9");
    o = cJSON_ParseWithLength(buf_head(&resp.body), buf_pending(&resp.body));
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring, "name caf\xc3\xa9");
    cJSON_Delete(o);
    buf_free(&resp.body);
}

/* A member named twice in one object is refused at any depth: cJSON reads
 * the first, most readers the last (json_members.h).  Names are compared as
 * JSON compares them, after escapes; case and different objects do not count. */
static void test_repeated_member_refused(void **state)
{
    (void)state;
    REFUSED("{\"command\": \"get pods\", \"command\": \"delete ns prod\"}");
    REFUSED("{\"a\": 1, \"b\": {\"x\": 1, \"x\": 2}}");
    REFUSED("{\"a\": [1, {\"y\": 1, \"z\": 2, \"y\": 3}]}");
    REFUSED("{\"a\": 1, \"\\u0061\": 2}"); /* "a" escaped is "a" */

    /* past the pairwise size: a repeat among many members, first or last */
    char big[64 * 1024];
    size_t o = 0;
    o += (size_t)snprintf(big + o, sizeof(big) - o, "{");
    for (int i = 0; i < 2000; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "\"k%d\": %d,", i, i);
    size_t open_len = o;
    o += (size_t)snprintf(big + o, sizeof(big) - o, "\"k0\": 0}");
    expect_refused(big, o);
    o = open_len;
    o += (size_t)snprintf(big + o, sizeof(big) - o, "\"k1999x\": 0}");
    int status;
    cJSON *ok = parse(big, o, &status); /* 2001 distinct names */
    assert_non_null(ok);
    assert_int_equal(status, 0);
    cJSON_Delete(ok);

    const char *t = "{\"a\": 1, \"A\": 2, \"b\": {\"a\": 3}, \"c\": [{\"a\": 4}, {\"a\": 5}]}";
    ok = parse(t, strlen(t), &status);
    assert_non_null(ok);
    assert_int_equal(status, 0);
    cJSON_Delete(ok);

    /* the answer names the member */
    http_request req;
    http_response resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    const char *dup = "{\"argv\": [], \"argv\": [\"x\"]}";
    assert_int_equal(buf_append(&req.body, dup, strlen(dup)), 0);
    assert_null(http_json_body(&req, &resp));
    static const char want[] = "member \\\"argv\\\" appears more than once";
    assert_non_null(memmem(buf_head(&resp.body), buf_pending(&resp.body), want, sizeof(want) - 1));
    buf_free(&req.body);
    buf_free(&resp.body);
}

/* A body's parse tree costs cJSON a 64-byte node per value, 36 times the
 * text of "0,": a 1 MiB body of [0,0,...] built a 36 MiB tree.  No API
 * body holds more than a few hundred values; HTTP_JSON_MAX_VALUES bound
 * them before anything is parsed. */
static void test_bodies_of_too_many_values_refused(void **state)
{
    (void)state;
    for (int extra = 0; extra <= 1; extra++) {
        /* {"a":[0,0,...]}: the object, the array and n zeros */
        size_t n = HTTP_JSON_MAX_VALUES - 2 + (size_t)extra;
        size_t len = 6 + 2 * n + 1;
        char *t = malloc(len + 1);
        assert_non_null(t);
        memcpy(t, "{\"a\":[", 6);
        for (size_t i = 0; i < n; i++)
            memcpy(t + 6 + 2 * i, i + 1 < n ? "0," : "0]", 2);
        t[len - 1] = '}';
        t[len] = 0;
        int status;
        cJSON *o = parse(t, len, &status);
        if (extra) {
            assert_null(o);
            assert_int_equal(status, 400);
        } else {
            assert_non_null(o);
            assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "a")), (int)n);
            cJSON_Delete(o);
        }
        free(t);
    }
    /* many values inside strings are one value each */
    size_t len = 4 * 1024 * 1024;
    char *t = malloc(len + 1);
    assert_non_null(t);
    memcpy(t, "{\"a\":\"", 6);
    memset(t + 6, ',', len - 8);
    memcpy(t + len - 2, "\"}", 2);
    t[len] = 0;
    int status;
    cJSON *o = parse(t, len, &status);
    assert_non_null(o);
    cJSON_Delete(o);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_escape_refused),
        cmocka_unit_test(test_text_that_only_looks_like_nul_accepted),
        cmocka_unit_test(test_one_object_only),
        cmocka_unit_test(test_error_quoting_bytes_that_are_not_utf8),
        cmocka_unit_test(test_repeated_member_refused),
        cmocka_unit_test(test_bodies_of_too_many_values_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
