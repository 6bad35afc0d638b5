/* test_common_err.c — the shared error codes (common/err.h) and the module
 * enums that alias them: a code crosses store → API or secrets → connector
 * without translation, so the aliases must stay the same values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "err.h"
#include "secrets.h"
#include "store.h"

static void test_names_and_statuses(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *name;
        int http;
    } rows[] = {
        { AUR_OK, "OK", 200 },           { AUR_NOT_FOUND, "NOT_FOUND", 404 },
        { AUR_CONFLICT, "CONFLICT", 409 }, { AUR_E_INVALID, "INVALID", 400 },
        { AUR_E_UNAVAILABLE, "UNAVAILABLE", 503 }, { AUR_E_DENIED, "DENIED", 403 },
        { AUR_E_INTEGRITY, "INTEGRITY", 500 }, { AUR_E_INTERNAL, "INTERNAL", 500 },
        { AUR_E_TIMEOUT, "TIMEOUT", 504 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_string_equal(aur_err_name(rows[i].code), rows[i].name);
        assert_int_equal(aur_err_http_status(rows[i].code), rows[i].http);
    }
    assert_string_equal(aur_err_name(42), "UNKNOWN");
    assert_int_equal(aur_err_http_status(-42), 500);
}

static void test_module_aliases(void **state)
{
    (void)state;
    /* successes and non-failures are >= 0, failures < 0, in every module */
    assert_int_equal(STORE_OK, AUR_OK);
    assert_int_equal(STORE_NOT_FOUND, AUR_NOT_FOUND);
    assert_int_equal(STORE_CONFLICT, AUR_CONFLICT);
    assert_true(STORE_ERR < 0);
    assert_int_equal(aur_err_http_status(STORE_ERR), 503);
    assert_int_equal(SECRETS_OK, AUR_OK);
    assert_int_equal(SECRETS_NOT_FOUND, AUR_NOT_FOUND);
    assert_int_equal(SECRETS_E_INVALID, AUR_E_INVALID);
    assert_int_equal(SECRETS_E_UNAVAILABLE, AUR_E_UNAVAILABLE);
    assert_int_equal(SECRETS_E_DENIED, AUR_E_DENIED);
    assert_int_equal(SECRETS_E_INTEGRITY, AUR_E_INTEGRITY);
    assert_int_equal(SECRETS_E_OTHER, AUR_E_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_statuses),
        cmocka_unit_test(test_module_aliases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
