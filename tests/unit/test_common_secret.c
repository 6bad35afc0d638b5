/* test_common_secret.c — wipe-and-free of strings and cJSON trees (common/secret.c).
 * The wipes are observed before the memory is released: after free the bytes
 * are the allocator's, and reading them would itself be a use-after-free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "secret.h"

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void test_wipe_bytes(void **state)
{
    (void)state;
    char b[32];
    memset(b, 'x', sizeof(b));
    secret_wipe(b + 4, 8);
    assert_true(all_zero(b + 4, 8));
    assert_int_equal(b[3], 'x');
    assert_int_equal(b[12], 'x');
    secret_wipe(NULL, 10); /* no-op */
    secret_wipe(b, 0);
    assert_int_equal(b[0], 'x');
}

static void test_free_null_and_strings(void **state)
{
    (void)state;
    secret_free(NULL);
    secret_free_n(NULL, 5);
    secret_json_free(NULL);
    secret_json_wipe(NULL);
    /* ASan reports a leak if either is not freed. */
    secret_free(strdup("client-secret-value"));
    char *raw = malloc(64);
    assert_non_null(raw);
    memset(raw, 'k', 64);
    secret_free_n(raw, 64);
}

static void test_json_tree_wiped(void **state)
{
    (void)state;
    cJSON *t = cJSON_Parse("{\"access_token\":\"ya29.secret\",\"expires_in\":3599,"
                           "\"nested\":{\"refresh_token\":\"1//refresh\",\"list\":[\"a1\",\"b22\",{\"k\":\"v\"}]},"
                           "\"empty\":\"\",\"flag\":true,\"nothing\":null}");
    assert_non_null(t);
    char *at = cJSON_GetObjectItem(t, "access_token")->valuestring;
    cJSON *nested = cJSON_GetObjectItem(t, "nested");
    char *rt = cJSON_GetObjectItem(nested, "refresh_token")->valuestring;
    cJSON *list = cJSON_GetObjectItem(nested, "list");
    char *b = cJSON_GetArrayItem(list, 1)->valuestring;
    char *v = cJSON_GetObjectItem(cJSON_GetArrayItem(list, 2), "k")->valuestring;
    size_t atl = strlen(at), rtl = strlen(rt);
    secret_json_wipe(t);
    assert_true(all_zero(at, atl));
    assert_true(all_zero(rt, rtl));
    assert_true(all_zero(b, 3));
    assert_true(all_zero(v, 1));
    /* numbers and keys are untouched: the tree stays well-formed */
    assert_int_equal(cJSON_GetObjectItem(t, "expires_in")->valueint, 3599);
    assert_non_null(cJSON_GetObjectItem(t, "nested"));
    secret_json_free(t);
}

static void test_json_root_string(void **state)
{
    (void)state;
    cJSON *s = cJSON_CreateString("bare-secret");
    assert_non_null(s);
    char *p = s->valuestring;
    secret_json_wipe(s);
    assert_true(all_zero(p, strlen("bare-secret")));
    secret_json_free(s);
}

/* secret_json_print prints what cJSON_PrintUnformatted prints, whatever the
 * escapes (a control byte takes 6), nesting and numbers. */
static void test_json_print_same_text(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{}", "[]", "\"\"", "{\"a\":\"\\u0001\\u001f\\n\\t\\\"\\\\\"}",
        "{\"n\":-1.2345678901234567e-300,\"m\":[1e308,0,true,false,null,{}],\"k\\b\":\"caf\u00e9\"}",
        "[[[[\"x\"]]],{\"\":\"\"}]",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        cJSON *t = cJSON_Parse(texts[i]);
        assert_non_null(t);
        char *want = cJSON_PrintUnformatted(t);
        char *got = secret_json_print(t);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(want);
        secret_free(got);
        cJSON_Delete(t);
    }
    /* A long string of control bytes: six times its length. */
    char raw[3000];
    memset(raw, 1, sizeof(raw) - 1);
    raw[sizeof(raw) - 1] = '\0';
    cJSON *s = cJSON_CreateString(raw);
    char *got = secret_json_print(s);
    assert_non_null(got);
    assert_int_equal(strlen(got), 6 * (sizeof(raw) - 1) + 2);
    secret_free(got);
    cJSON_Delete(s);
    assert_null(secret_json_print(NULL));
}

/* A NUL decoded into the string at a member path is found; "\\u0000" (a
 * backslash and text), another member's NUL, or no such member are not. */
static void test_json_string_has_nul(void **state)
{
    (void)state;
    static const char *const at[] = { "data", "value", NULL };
    size_t full = 7;
    const char *t = "{\"data\":{\"value\":\"ab\\u0000cd\"}}";
    assert_int_equal(secret_json_string_has_nul(t, strlen(t), at, &full), 1);
    assert_int_equal(full, 5);
    t = "{\"data\":{\"value\":\"ab\\\\u0000cd\",\"note\":\"\\u0000\"}}";
    assert_int_equal(secret_json_string_has_nul(t, strlen(t), at, &full), 0);
    assert_int_equal(full, 0);
    t = "{\"data\":{\"other\":\"\\u0000\"}}";
    assert_int_equal(secret_json_string_has_nul(t, strlen(t), at, &full), 0);
    t = "{\"data\":{\"value\":\"plain\"}}";
    assert_int_equal(secret_json_string_has_nul(t, strlen(t), at, &full), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wipe_bytes),
        cmocka_unit_test(test_free_null_and_strings),
        cmocka_unit_test(test_json_tree_wiped),
        cmocka_unit_test(test_json_root_string),
        cmocka_unit_test(test_json_print_same_text),
        cmocka_unit_test(test_json_string_has_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
