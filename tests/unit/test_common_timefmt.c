/* test_common_timefmt.c — RFC 3339 UTC times in JSON (common/timefmt.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "timefmt.h"

/* Vectors computed independently with Python's
 * datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"). */
static const struct {
    int64_t t;
    const char *s;
} vectors[] = {
    { 0, "1970-01-01T00:00:00Z" },
    { 951782400, "2000-02-29T00:00:00Z" },
    { 1709164800, "2024-02-29T00:00:00Z" },
    { 1798848000, "2027-01-02T00:00:00Z" },
    { 253402300799, "9999-12-31T23:59:59Z" },
    { -1, "1969-12-31T23:59:59Z" },
};

static void test_format_and_parse_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char out[TIME_RFC3339_LEN];
        assert_int_equal(time_rfc3339(vectors[i].t, out), 0);
        assert_string_equal(out, vectors[i].s);
        int64_t back = 42;
        assert_int_equal(time_parse_rfc3339(vectors[i].s, &back), 0);
        assert_int_equal(back, vectors[i].t);
    }
    int64_t t;
    assert_int_equal(time_parse_rfc3339("2024-02-29T00:00:00+00:00", &t), 0);
    assert_int_equal(t, 1709164800);
}

static void test_out_of_range_and_garbage(void **state)
{
    (void)state;
    char out[TIME_RFC3339_LEN];
    assert_int_equal(time_rfc3339(INT64_C(253402300800), out), -1); /* year 10000 */
    assert_string_equal(out, "");
    assert_int_equal(time_rfc3339(INT64_MIN, out), -1);
    static const char *const bad[] = {
        "", "2024-02-29", "2024-02-29T00:00:00", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:60Z",
        "2024-01-01 00:00:00Z", "2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00Zjunk",
        "20x4-01-01T00:00:00Z", "1900-02-29T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t = 7;
        assert_int_equal(time_parse_rfc3339(bad[i], &t), -1);
        assert_int_equal(t, 7);
    }
    assert_int_equal(time_parse_rfc3339(NULL, NULL), -1);
}

static void test_json_add(void **state)
{
    (void)state;
    cJSON *o = cJSON_CreateObject();
    time_json_add(o, "set", 1709164800);
    time_json_add(o, "unset", 0);
    time_json_add(o, "absurd", INT64_C(999999999999999));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "set")), "2024-02-29T00:00:00Z");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "unset")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "absurd")));
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_parse_vectors),
        cmocka_unit_test(test_out_of_range_and_garbage),
        cmocka_unit_test(test_json_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
